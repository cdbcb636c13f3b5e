#!/usr/bin/env bash
# Runs every test: installs what is missing, builds the firmware test guests
# and the guest Linux (cached outside the repo), then `swift test`, including
# the KVM integration tests and the Linux acceptance boots.
#
#   scripts/test.sh [swift test arguments, e.g. --filter StorageTests]
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"

"$repo/scripts/install-deps.sh"
"$repo/scripts/build-firmware.sh" >/dev/null
eval "$("$repo/scripts/guest-linux.sh")"
export SKIFF_GUEST_KERNEL SKIFF_GUEST_INITRD SKIFF_GUEST_CMDLINE
# Acceptance tests fail (instead of skipping) when their artefacts are missing.
export SKIFF_REQUIRE_ACCEPTANCE=1

if [ ! -r /dev/kvm ] || [ ! -w /dev/kvm ]; then
    echo "test.sh: /dev/kvm is not usable here: the KVM tests will say they are skipped." >&2
fi
swift build --build-tests
# One test at a time: the KVM tests start VMs that each want the host's cores,
# and timing-sensitive guests (count, Linux) should not fight each other.
swift test --skip-build --no-parallel "$@"

# The release build is what users run (one static executable linked by lld with
# Linker/startup.order; Package.swift): build it and boot the hello guest with it,
# so a broken release link shows here. Only on a full run.
if [ "$#" -eq 0 ]; then
    swift build -c release --static-swift-stdlib --product skiff 2>&1 \
        | { grep -v "in statically linked applications requires at runtime" || true; } | tail -3
    if [ -r /dev/kvm ] && [ -w /dev/kvm ]; then
        hello=$("$repo/.build/release/skiff" run --kernel "$repo/firmware/out/hello.elf" --memory 64M)
        if ! grep -q "Hello from Skiff firmware" <<<"$hello"; then
            echo "test.sh: the release skiff did not boot the hello guest: $hello" >&2
            exit 1
        fi
        echo "test.sh: the release build boots the hello guest"
    else
        echo "test.sh: no usable /dev/kvm: the release build is built but not booted (skipped)" >&2
    fi
fi

# Then every parser's fuzz target briefly from its seed corpus (docs/fuzzing.md), so a
# parser regression shows here; skipped, saying so, where the toolchain has no libFuzzer.
# Only on a full run; SKIFF_FUZZ_SECONDS (per target, default 20) = 0 leaves it out.
fuzz_seconds=${SKIFF_FUZZ_SECONDS:-20}
if [ "$#" -eq 0 ] && [ "$fuzz_seconds" != 0 ]; then
    FUZZ_SKIP_IF_UNSUPPORTED=1 "$repo/scripts/fuzz.sh" all "$fuzz_seconds"
fi
