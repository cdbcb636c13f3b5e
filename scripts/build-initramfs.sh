#!/usr/bin/env bash
# Build Skiff's test initramfs: Debian's busybox-static plus
# firmware/linux/initramfs/init, as a cpio "newc" archive, cached outside the
# repository.
#
# Debian 12 packages (also in scripts/guest-deps.txt): busybox-static cpio gzip
#
# Usage: scripts/build-initramfs.sh [--print-dir]
#   The last line printed on stdout is the output directory, holding
#   initramfs.cpio.gz (gzip, the default to boot) and initramfs.cpio (the
#   same archive uncompressed: no inflate in emulated guest kernel code).
#
# Cache: ${SKIFF_CACHE:-~/.cache/skiff}/initramfs/<key>/, key = first 16 hex
# digits of sha256(busybox binary, init, this script).
# Environment: SKIFF_BUSYBOX overrides the busybox binary (must be static).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
busybox=${SKIFF_BUSYBOX:-/bin/busybox}
init=$repo/firmware/linux/initramfs/init
cache=${SKIFF_CACHE:-$HOME/.cache/skiff}/initramfs
print_dir=0
case ${1:-} in
    --print-dir) print_dir=1 ;;
    "") ;;
    *) echo "build-initramfs.sh: unknown argument: $1" >&2; exit 2 ;;
esac

die() { echo "build-initramfs.sh: $*" >&2; exit 1; }
[ -x "$busybox" ] || die "no busybox at $busybox (apt-get install busybox-static)"
[ -f "$init" ] || die "missing $init"
if command -v file >/dev/null && ! file -L "$busybox" | grep -q 'statically linked'; then
    die "$busybox is not statically linked (install busybox-static)"
fi

key=$( { sha256sum < "$busybox"; cat "$init" "${BASH_SOURCE[0]}"; } | sha256sum | cut -c1-16)
out=$cache/$key
if [ $print_dir = 1 ]; then echo "$out"; exit 0; fi
if [ -f "$out/.done" ]; then echo "$out"; exit 0; fi

# Only the applets /init uses (each cpio entry costs emulated kernel time).
applets="sh mount reboot dd md5sum cmp ip ping cat ls grep tr dmesg nc"

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/root/bin" "$stage/root/proc" "$stage/root/sys" "$stage/root/tmp"
cp "$busybox" "$stage/root/bin/busybox"
have=" $("$busybox" --list | tr '\n' ' ') "
for a in $applets; do
    case $have in *" $a "*) ;; *) die "busybox lacks the $a applet" ;; esac
    ln -s busybox "$stage/root/bin/$a"
done
install -m 0755 "$init" "$stage/root/init"
find "$stage/root" -exec touch -h -d @0 {} +

# newc entry by hand, for nodes an unprivileged user cannot mknod.
# args: name mode(octal) rdevmajor rdevminor
newc_entry() {
    local name=$1 mode=$2 maj=$3 min=$4 ino=$5
    local namesize=$(( ${#name} + 1 ))
    printf '070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X' \
        "$ino" $((8#$mode)) 0 0 1 0 0 0 0 "$maj" "$min" "$namesize" 0
    printf '%s\0' "$name"
    local pad=$(( (4 - (110 + namesize) % 4) % 4 ))
    head -c $pad /dev/zero
}
{
    newc_entry dev 040755 0 0 1
    newc_entry dev/console 020600 5 1 2
    newc_entry TRAILER!!! 0 0 0 0
} > "$stage/dev.cpio"
(cd "$stage/root" && find . -mindepth 1 | LC_ALL=C sort | \
    cpio --quiet -o -H newc -R 0:0 --reproducible) > "$stage/root.cpio"

rm -rf "$out.tmp"
mkdir -p "$out.tmp"
cat "$stage/dev.cpio" "$stage/root.cpio" > "$out.tmp/initramfs.cpio"
gzip -n -9 < "$out.tmp/initramfs.cpio" > "$out.tmp/initramfs.cpio.gz"
{
    echo "key: $key"
    echo "busybox: $busybox $("$busybox" | head -1)"
    echo "applets: $applets"
    echo "built: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
} > "$out.tmp/inputs.txt"
touch "$out.tmp/.done"
rm -rf "$out"
mv "$out.tmp" "$out"
echo "$out"
