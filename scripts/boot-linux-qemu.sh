#!/usr/bin/env bash
# Boot Skiff's guest Linux (scripts/build-guest-kernel.sh + build-initramfs.sh)
# under Debian's QEMU microvm on /dev/kvm: the side-by-side peer for Skiff's
# own boot time. Builds (or reuses from the cache) kernel and initramfs first.
#
# Debian 12 packages (also in scripts/guest-deps.txt): qemu-system-x86
#
# Usage: scripts/boot-linux-qemu.sh [options] [-- extra QEMU arguments]
#   --cpus N            vCPUs (default 1)
#   --memory SIZE       guest RAM, QEMU syntax (default 64M)
#   --kernel FILE       kernel to boot (default: the cached vmlinux, PVH ELF)
#   --bzimage           boot the cached bzImage instead of vmlinux
#   --initrd FILE       initramfs (default: the cached uncompressed
#                       initramfs.cpio: inflating costs minutes of emulated
#                       kernel time on kvm_pvm hosts; "none" for no initrd)
#   --gzip              use the cached initramfs.cpio.gz instead
#   --cmdline STR       replace the whole kernel command line
#   --append STR        add to the test-default command line (guest-cmdline.sh)
#   --disk FILE         attach FILE as a virtio-blk (virtio-mmio) disk
#   --net               attach a virtio-net device on QEMU user networking
#   --monitor SOCK      QEMU monitor on a unix socket (for RIP sampling)
#   --timeout SECONDS   kill QEMU after this long (default 900; exit 124)
#   --quiet-timing      only print the timing summary, not the serial output
# Serial output goes to stdout. At the end it prints, on stderr:
#   boot-linux-qemu: marker=<s> done=<s> exit=<s> status=<qemu exit status>
# (seconds from QEMU start to "SKIFF-INIT: hello", "SKIFF-INIT: done", exit).
# Exit status: QEMU's (0 after the guest's reboot, with -no-reboot), or 124
# on timeout.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=guest-cmdline.sh
source "$here/guest-cmdline.sh"

cpus=1 memory=64M kernel= bzimage=0 initrd= gzip=0 cmdline= append=
disk= net=0 monitor= timeout=900 quiet=0 extra=()
while [ $# -gt 0 ]; do
    case $1 in
        --cpus) cpus=$2; shift ;;
        --memory) memory=$2; shift ;;
        --kernel) kernel=$2; shift ;;
        --bzimage) bzimage=1 ;;
        --initrd) initrd=$2; shift ;;
        --gzip) gzip=1 ;;
        --cmdline) cmdline=$2; shift ;;
        --append) append=$2; shift ;;
        --disk) disk=$2; shift ;;
        --net) net=1 ;;
        --monitor) monitor=$2; shift ;;
        --timeout) timeout=$2; shift ;;
        --quiet-timing) quiet=1 ;;
        --) shift; extra=("$@"); break ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "boot-linux-qemu.sh: unknown argument: $1" >&2; exit 2 ;;
    esac
    shift
done

if [ -z "$kernel" ]; then
    kdir=$("$here/build-guest-kernel.sh" | tail -1)
    if [ $bzimage = 1 ]; then kernel=$kdir/bzImage; else kernel=$kdir/vmlinux; fi
fi
if [ -z "$initrd" ]; then
    idir=$("$here/build-initramfs.sh" | tail -1)
    if [ $gzip = 1 ]; then initrd=$idir/initramfs.cpio.gz; else initrd=$idir/initramfs.cpio; fi
fi
[ -n "$cmdline" ] || cmdline=$(skiff_guest_cmdline)
[ -z "$append" ] || cmdline="$cmdline $append"

args=(-M microvm,acpi=off -enable-kvm -cpu host,-arch-capabilities
      -smp "$cpus" -m "$memory" -nodefaults -no-user-config -display none
      -no-reboot -serial stdio -device i8042 -kernel "$kernel" -append "$cmdline")
[ "$initrd" = none ] || args+=(-initrd "$initrd")
if [ -n "$monitor" ]; then args+=(-monitor "unix:$monitor,server,nowait"); else args+=(-monitor none); fi
if [ -n "$disk" ]; then
    args+=(-drive "id=d0,file=$disk,format=raw,if=none,cache=none" -device virtio-blk-device,drive=d0)
fi
if [ $net = 1 ]; then
    args+=(-netdev user,id=n0 -device virtio-net-device,netdev=n0)
fi
args+=("${extra[@]}")

echo "boot-linux-qemu: qemu-system-x86_64 ${args[*]}" >&2
start=$EPOCHREALTIME
marker=- done=-
elapsed() { awk -v a="$start" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }'; }
statusfile=$(mktemp)
trap 'rm -f "$statusfile"' EXIT
# QEMU's output is read line by line to time the markers.
while IFS= read -r line; do
    line=${line%$'\r'}
    [ $quiet = 1 ] || printf '%s\n' "$line"
    case $line in
        *"SKIFF-INIT: hello from the guest"*) marker=$(elapsed) ;;
        *"SKIFF-INIT: done"*) done=$(elapsed) ;;
    esac
done < <(set +e; timeout --foreground -k 5 "$timeout" qemu-system-x86_64 "${args[@]}" </dev/null 2>&1; echo $? > "$statusfile")
wait $! 2>/dev/null || true
status=$(cat "$statusfile"); status=${status:-1}
echo "boot-linux-qemu: cpus=$cpus memory=$memory marker=$marker done=$done exit=$(elapsed) status=$status" >&2
exit "$status"
