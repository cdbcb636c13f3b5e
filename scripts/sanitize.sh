#!/usr/bin/env bash
# Builds the tests with a sanitizer in a build directory of their own and runs them.
#
#   scripts/sanitize.sh address|thread [swift test arguments, e.g. --filter StorageTests]
#   scripts/sanitize.sh address|thread integration   (a representative set of integration
#       tests: firmware boot, virtio-blk, virtio-net, API lifecycle (pause/resume), snapshot,
#       migration, migration without shared storage)
#
# address: ASan (out-of-bounds, use-after-free, leaks are off: Swift's runtime caches
#          look like leaks); scratch path .build-asan.
# thread:  TSan (data races between vCPU threads, the event loop, API and I/O threads);
#          scratch path .build-tsan. Suppressions: scripts/tsan-suppressions.txt.
# Runs everything, like scripts/test.sh (firmware guests, guest Linux), one test at a time.
# SKIFF_TEST_SECCOMP (default log): the --seccomp mode the tests give `skiff run`.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
kind=${1:-}
case "$kind" in
    address) scratch=.build-asan ;;
    thread) scratch=.build-tsan ;;
    *) echo "usage: scripts/sanitize.sh address|thread [swift test arguments]" >&2; exit 2 ;;
esac
shift

"$repo/scripts/build-firmware.sh" >/dev/null
eval "$("$repo/scripts/guest-linux.sh")"
export SKIFF_GUEST_KERNEL SKIFF_GUEST_INITRD SKIFF_GUEST_CMDLINE

if [ "${1:-}" = integration ]; then
    shift
    set -- --filter 'IntegrationTests\.(FirmwareBootTests|VirtioBlockBootTests|VirtioNetBootTests|APILifecycleTests|SnapshotAPITests|MigrationTests|MigrationDiskCopyTests)' "$@"
fi

# A report fails the process that has it; the Swift backtracer would only stall it.
# Reports also go to files (log_path), because the integration tests run the
# sanitized `skiff` as a child process, and a test that stops its VMM with a signal
# or expects it to fail would not notice a report by the exit status alone.
logs=$repo/$scratch/sanitizer-reports
rm -rf "$logs"
mkdir -p "$logs"
export SWIFT_BACKTRACE=enable=no
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0:abort_on_error=1:halt_on_error=1:log_path=$logs/asan}
export TSAN_OPTIONS=${TSAN_OPTIONS:-halt_on_error=1:second_deadlock_stack=1:suppressions=$repo/scripts/tsan-suppressions.txt:log_path=$logs/tsan}

swift build --build-tests --sanitize="$kind" --scratch-path "$scratch"
# The integration tests start the sanitized skiff with `--seccomp log` (through
# scripts/skiff-test-seccomp.sh): under TSan the filters refuse a call of its runtime
# (gettimeofday on a new thread) and its signal handling then fails; under ASan a
# report's own system calls could be refused and hide the report. SeccompFilterTests,
# which prove the filters bite, skip themselves in this mode.
export SKIFF_TEST_SECCOMP=${SKIFF_TEST_SECCOMP:-log}
export SKIFF_SANITIZED_BIN=${SKIFF_BIN:-$(swift build --sanitize="$kind" --scratch-path "$scratch" --show-bin-path)/skiff}
export SKIFF_BIN=$repo/scripts/skiff-test-seccomp.sh
status=0
swift test --skip-build --sanitize="$kind" --scratch-path "$scratch" --no-parallel "$@" || status=$?
if compgen -G "$logs/*" >/dev/null; then
    echo "sanitize.sh: sanitizer reports (in $scratch/sanitizer-reports):" >&2
    for f in "$logs"/*; do echo "== $f" >&2; head -60 "$f" >&2; done
    status=1
fi
exit $status
