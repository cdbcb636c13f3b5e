#!/usr/bin/env bash
# Build Skiff's lean guest kernel (a PVH-bootable vmlinux, plus System.map
# and bzImage) from Debian's linux-source-6.1, with the config fragment and
# patches in firmware/linux/, and cache it outside the repository.
#
# Debian 12 packages (also in scripts/guest-deps.txt):
#   build-essential bc bison flex libelf-dev libssl-dev linux-source-6.1 xz-utils
#
# Usage: scripts/build-guest-kernel.sh [--print-dir] [--jobs N]
#   The last line printed on stdout is the output directory, holding
#   vmlinux, bzImage, System.map, config and inputs.txt. --print-dir only
#   prints that directory (built or not) and exits.
#
# Cache (SKIFF_CACHE defaults to ~/.cache/skiff):
#   $SKIFF_CACHE/guest-kernel/<key>/       outputs; key = first 16 hex digits of
#       sha256(source tarball name + size + package version, config fragment,
#       patches, this script)
#   $SKIFF_CACHE/guest-kernel/src-6.1-<k>/ extracted source tree used as the
#       build tree, k = hash(tarball); kept so that a config or patch change
#       rebuilds incrementally (the patches applied to it are kept in
#       .skiff-patches/ and reversed before a different set is applied).
# Environment: SKIFF_LINUX_SOURCE overrides the tarball path.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
tarball=${SKIFF_LINUX_SOURCE:-/usr/src/linux-source-6.1.tar.xz}
cache=${SKIFF_CACHE:-$HOME/.cache/skiff}/guest-kernel
fragment=$repo/firmware/linux/skiff-guest.config
jobs=$(nproc)
print_dir=0

while [ $# -gt 0 ]; do
    case $1 in
        --print-dir) print_dir=1 ;;
        --jobs) jobs=$2; shift ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "build-guest-kernel.sh: unknown argument: $1" >&2; exit 2 ;;
    esac
    shift
done

die() { echo "build-guest-kernel.sh: $*" >&2; exit 1; }

[ -f "$tarball" ] || die "no kernel source at $tarball (apt-get install linux-source-6.1)"
[ -f "$fragment" ] || die "missing $fragment"
shopt -s nullglob
patches=("$repo"/firmware/linux/patches/*.patch)
shopt -u nullglob

pkgver=$(dpkg-query -W -f='${Version}' linux-source-6.1 2>/dev/null || true)
tarball_id="$(basename "$tarball") $(stat -c %s "$tarball") $pkgver"

hash_inputs() {
    # $1 = "full" (everything) or "src" (the pristine source tree)
    {
        echo "tarball: $tarball_id"
        if [ "$1" = full ]; then
            for p in "${patches[@]}"; do echo "patch: $(basename "$p")"; cat "$p"; done
            echo "fragment:"; cat "$fragment"
            echo "script:"; cat "${BASH_SOURCE[0]}"
        fi
    } | sha256sum | cut -c1-16
}

key=$(hash_inputs full)
out=$cache/$key
if [ $print_dir = 1 ]; then echo "$out"; exit 0; fi
if [ -f "$out/.done" ]; then echo "$out"; exit 0; fi

mkdir -p "$cache"
exec 9>"$cache/.lock"
flock 9
if [ -f "$out/.done" ]; then echo "$out"; exit 0; fi

src=$cache/src-6.1-$(hash_inputs src)
extract() {
    echo "== extracting $tarball to $src" >&2
    rm -rf "$src" "$src.tmp"
    mkdir -p "$src.tmp/.skiff-patches"
    tar -xf "$tarball" -C "$src.tmp" --strip-components=1
    touch "$src.tmp/.prepared"
    mv "$src.tmp" "$src"
}
[ -f "$src/.prepared" ] || extract
# Bring the tree to exactly our patch set. Patches already applied in the
# same order and with the same content stay (so their files keep their
# mtimes and make rebuilds only what changed); the rest of the applied ones
# are reversed, newest first, and ours applied from there.
mapfile -t applied < <(cd "$src/.skiff-patches" && ls | sort)
keep=0
while [ $keep -lt ${#applied[@]} ] && [ $keep -lt ${#patches[@]} ] &&
      [ "${applied[$keep]}" = "$(basename "${patches[$keep]}")" ] &&
      cmp -s "${patches[$keep]}" "$src/.skiff-patches/${applied[$keep]}"; do
    keep=$((keep + 1))
done
for ((i = ${#applied[@]} - 1; i >= keep; i--)); do
    a=${applied[$i]}
    echo "== reversing $a" >&2
    if ! patch -d "$src" -p1 -R --quiet < "$src/.skiff-patches/$a" >&2; then
        echo "== cannot reverse $a; starting from a fresh tree" >&2
        extract; keep=0; break
    fi
    rm -f "$src/.skiff-patches/$a"
done
for ((i = keep; i < ${#patches[@]}; i++)); do
    p=${patches[$i]}
    echo "== applying $(basename "$p")" >&2
    patch -d "$src" -p1 --forward --quiet < "$p" >&2 || die "patch $p failed"
    cp "$p" "$src/.skiff-patches/"
done

export ARCH=x86_64
cd "$src"
echo "== configuring (tinyconfig + $(basename "$fragment"))" >&2
make -s tinyconfig >&2
scripts/kconfig/merge_config.sh -n .config "$fragment" >"$src/merge.log" 2>&1 \
    || { cat "$src/merge.log" >&2; die "merge_config.sh failed"; }

# Every option the fragment names must have its requested value.
bad=0
while IFS= read -r line; do
    case $line in
        CONFIG_*=*)
            grep -qxF -- "$line" .config || { echo "config: wanted $line, got: $(grep -E "^(# )?${line%%=*}[= ]" .config || echo unset)" >&2; bad=1; } ;;
        "# CONFIG_"*" is not set")
            opt=${line#\# }; opt=${opt%% *}
            if grep -qE "^$opt=" .config; then echo "config: wanted $opt off, got $(grep -E "^$opt=" .config)" >&2; bad=1; fi ;;
    esac
done < "$fragment"
[ $bad = 0 ] || die "the config fragment does not apply cleanly (see above; $src/merge.log)"

echo "== make -j$jobs vmlinux bzImage in $src" >&2
start=$(date +%s)
make -j"$jobs" vmlinux bzImage >&2 || die "kernel build failed"
echo "== built in $(( $(date +%s) - start )) s" >&2

rm -rf "$out.tmp"
mkdir -p "$out.tmp"
cp vmlinux System.map "$out.tmp/"
cp arch/x86/boot/bzImage "$out.tmp/"
cp .config "$out.tmp/config"
{
    echo "key: $key"
    echo "source: $tarball ($tarball_id)"
    echo "kernel: $(make -s kernelrelease)"
    echo "fragment: $(sha256sum < "$fragment" | cut -c1-16)"
    for p in "${patches[@]}"; do echo "patch: $(basename "$p") $(sha256sum < "$p" | cut -c1-16)"; done
    echo "build-tree: $src"
    echo "built: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
} > "$out.tmp/inputs.txt"
touch "$out.tmp/.done"
rm -rf "$out"
mv "$out.tmp" "$out"
echo "$out"
