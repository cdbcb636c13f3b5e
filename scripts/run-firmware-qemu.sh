#!/bin/sh
# Boot one Skiff test guest under Debian's QEMU microvm, the way it was validated.
# Usage: scripts/run-firmware-qemu.sh NAME [extra qemu args...]
#   e.g. scripts/run-firmware-qemu.sh count -append "count.limit=5"
# Environment:
#   ACCEL=kvm|tcg   (default: kvm when /dev/kvm is usable, else tcg)
#   MEM=64M         guest RAM
#   QEMU=qemu-system-x86_64
# The guest powers off through ACPI (microvm's GED sleep control register);
# QEMU then exits with status 0.  -no-reboot turns a reset into an exit too.
set -eu
[ "$#" -ge 1 ] || { echo "usage: $0 NAME [qemu args...]" >&2; exit 2; }
name=$1
shift
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/scripts/build-firmware.sh" "$name"
elf=$root/firmware/out/$name.elf
[ -f "$elf" ] || { echo "$0: no such firmware: $elf" >&2; exit 2; }
accel=${ACCEL:-}
if [ -z "$accel" ]; then
	if [ -w /dev/kvm ]; then accel=kvm; else accel=tcg; fi
fi
if [ "$accel" = kvm ]; then
	set -- -enable-kvm -cpu host,-arch-capabilities "$@"
fi
exec "${QEMU:-qemu-system-x86_64}" -M microvm -m "${MEM:-64M}" \
	-nodefaults -no-user-config -nographic -serial stdio -no-reboot \
	-global virtio-mmio.force-legacy=false \
	-kernel "$elf" "$@"
