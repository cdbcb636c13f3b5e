#!/usr/bin/env bash
# Builds the tests with a sanitizer in a build directory of their own and runs them.
#
#   scripts/sanitize.sh address|thread [swift test arguments, e.g. --filter StorageTests]
#
# address: ASan (out-of-bounds, use-after-free, leaks are off: Swift's runtime caches
#          look like leaks); scratch path .build-asan.
# thread:  TSan (data races between vCPU threads, the event loop, API and I/O threads);
#          scratch path .build-tsan. Suppressions: scripts/tsan-suppressions.txt.
# Runs everything, like scripts/test.sh (firmware guests, guest Linux), one test at a time.
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

# Reports go to stderr and fail the test process; the Swift backtracer would only stall them.
export SWIFT_BACKTRACE=enable=no
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0:abort_on_error=1:halt_on_error=1}
export TSAN_OPTIONS=${TSAN_OPTIONS:-halt_on_error=1:second_deadlock_stack=1:suppressions=$repo/scripts/tsan-suppressions.txt}

swift build --build-tests --sanitize="$kind" --scratch-path "$scratch"
swift test --skip-build --sanitize="$kind" --scratch-path "$scratch" --no-parallel "$@"
