#!/usr/bin/env bash
# The newcomer's first command: installs what is missing, builds Skiff, the
# guest kernel and its initramfs (cached after the first run), and boots the
# guest with its serial console on this terminal. The guest's init prints a
# few lines and reboots, which ends Skiff with status 0.
#
#   scripts/boot-linux.sh [--cpus N] [--memory SIZE] [any other skiff run flag]
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"

"$repo/scripts/install-deps.sh"
# A release build is one static executable (Package.swift): no dynamic loader
# at start (docs/performance.md). The linker warns that glibc's name look-ups
# load the host's NSS modules at run time; they do so in any build, so those
# lines are dropped here.
swift build -c release --static-swift-stdlib --product skiff 2>&1 \
    | { grep -v "in statically linked applications requires at runtime" || true; } >&2
eval "$("$repo/scripts/guest-linux.sh")"

if [ -e /sys/module/kvm_pvm ]; then
    echo "boot-linux: this host's KVM is kvm_pvm (no hardware virtualization): guest kernel code is" >&2
    echo "boot-linux: emulated, so the boot takes minutes here (seconds on hardware KVM)." >&2
fi
exec "$repo/.build/release/skiff" run --kernel "$SKIFF_GUEST_KERNEL" --initrd "$SKIFF_GUEST_INITRD" \
    --cmdline "$SKIFF_GUEST_CMDLINE" --memory 256M "$@"
