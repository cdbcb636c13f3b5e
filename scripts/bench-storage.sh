#!/usr/bin/env bash
# Side-by-side storage benchmark: the same workloads through Skiff's storage layer
# (skiff-storage-bench, AsyncDiskEngine on its I/O threads) and through `qemu-img bench`
# (QEMU's block layer, -i native), on the same file, with the same cache mode and
# queue depth. Prints MiB/s and IOPS for both and the ratio Skiff/QEMU.
#
#   scripts/bench-storage.sh [DIR]     DIR holds the scratch image (default: a temp dir)
#
# Environment: SIZE (image size, default 1G), CACHE (none|writeback, default none),
# FORMAT (qcow2|raw, default qcow2), SEQ_COUNT / RAND_COUNT / FRESH_COUNT (requests).
set -euo pipefail

cd "$(dirname "$0")/.."
SIZE=${SIZE:-1G}
CACHE=${CACHE:-none}
FORMAT=${FORMAT:-qcow2}
SEQ_COUNT=${SEQ_COUNT:-1024}
RAND_COUNT=${RAND_COUNT:-20000}
FRESH_COUNT=${FRESH_COUNT:-4000}
# A large step (7919 × 4 KiB, coprime with the image size in clusters) scatters 4 KiB
# requests over the whole image: qemu-img bench has no random mode, but both tools
# take (i × step) mod size as the offset of request i, so the patterns are identical.
RAND_STEP=$((4096 * 7919))

command -v qemu-img >/dev/null || { echo "qemu-img not found (apt-get install qemu-utils)" >&2; exit 1; }
swift build -c release --scratch-path .build-storage-release --product skiff-storage-bench >&2
BENCH=$(swift build -c release --scratch-path .build-storage-release --show-bin-path)/skiff-storage-bench

DIR=${1:-$(mktemp -d)}
IMG="$DIR/bench.$FORMAT"
trap 'rm -f "$IMG"' EXIT
QI=native; [ "$CACHE" = none ] || QI=threads

fresh() { rm -f "$IMG"; qemu-img create -q -f "$FORMAT" "$IMG" "$SIZE"; }
allocated() { fresh; qemu-img bench -q -f "$FORMAT" -t "$CACHE" -i "$QI" -w -c $(( $(numfmt --from=iec "$SIZE") / 1048576 )) -d 4 -s 1M "$IMG" >/dev/null; }

# run NAME STATE COUNT DEPTH BS STEP RW
run() {
    local name=$1 state=$2 count=$3 depth=$4 bs=$5 step=$6 rw=$7
    local wflag=""; [ "$rw" = w ] && wflag="--write"
    local qflag=""; [ "$rw" = w ] && qflag="-w"
    $state
    local ours; ours=$("$BENCH" run --image "$IMG" $wflag --count "$count" --depth "$depth" --size "$bs" --step "$step" --cache "$CACHE")
    $state
    local q; q=$(qemu-img bench -f "$FORMAT" -t "$CACHE" -i "$QI" $qflag -c "$count" -d "$depth" -s "$bs" -S "$step" "$IMG" | sed -n 's/Run completed in \([0-9.]*\) seconds./\1/p')
    local s_secs; s_secs=$(sed -n 's/.*seconds=\([0-9.]*\).*/\1/p' <<<"$ours")
    local bytes=$((count * $(numfmt --from=iec "$bs")))
    awk -v n="$name" -v st="${state}" -v d="$depth" -v c="$count" -v b="$bytes" -v s="$s_secs" -v q="$q" 'BEGIN {
        sm = b / s / 1048576; si = c / s; qm = b / q / 1048576; qi = c / q
        printf "%-22s %-9s %3d | %9.1f %9.0f | %9.1f %9.0f | %5.2f\n", n, st, d, sm, si, qm, qi, sm / qm }'
}

echo "format=$FORMAT cache=$CACHE size=$SIZE aio: skiff=$("$BENCH" 2>&1 | head -0; echo io-threads) qemu=$QI  ($(nproc) CPUs, $(uname -r))"
printf "%-22s %-9s %3s | %9s %9s | %9s %9s | %5s\n" workload image qd "skiff MiB/s" IOPS "qemu MiB/s" IOPS ratio
printf -- "-%.0s" {1..92}; echo
run "seq write 1M"   fresh     "$SEQ_COUNT"   1 1M 1M w
run "seq write 1M"   allocated "$SEQ_COUNT"   1 1M 1M w
run "seq read 1M"    allocated "$SEQ_COUNT"   1 1M 1M r
run "rand read 4K"   allocated "$RAND_COUNT"  1 4K $RAND_STEP r
run "rand read 4K"   allocated "$RAND_COUNT" 32 4K $RAND_STEP r
run "rand write 4K"  fresh     "$FRESH_COUNT" 1 4K $RAND_STEP w
run "rand write 4K"  fresh     "$FRESH_COUNT" 32 4K $RAND_STEP w
run "rand write 4K"  allocated "$RAND_COUNT"  1 4K $RAND_STEP w
run "rand write 4K"  allocated "$RAND_COUNT" 32 4K $RAND_STEP w
