#!/usr/bin/env bash
# Builds (or finds in the cache) the guest kernel and initramfs and prints
# shell assignments for them:
#   eval "$(scripts/guest-linux.sh)"  →  SKIFF_GUEST_KERNEL, SKIFF_GUEST_INITRD, SKIFF_GUEST_CMDLINE
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
kernel_dir=$("$repo/scripts/build-guest-kernel.sh" | tail -n 1)
initramfs_dir=$("$repo/scripts/build-initramfs.sh" | tail -n 1)
# shellcheck source=guest-cmdline.sh
source "$repo/scripts/guest-cmdline.sh"
# Uncompressed: inflating a gzip initramfs is minutes of emulated kernel code
# on a kvm_pvm host (docs/guest-linux.md), and costs nothing worth saving elsewhere.
initrd=$initramfs_dir/initramfs.cpio
printf 'SKIFF_GUEST_KERNEL=%q\n' "$kernel_dir/vmlinux"
printf 'SKIFF_GUEST_INITRD=%q\n' "$initrd"
printf 'SKIFF_GUEST_CMDLINE=%q\n' "$(skiff_guest_cmdline)"
