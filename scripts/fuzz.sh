#!/usr/bin/env bash
# Builds the libFuzzer harnesses (Fuzz/, a package of its own) with
# -sanitize=fuzzer,address and runs them from their seed corpus (Fuzz/corpus/TARGET).
#
#   scripts/fuzz.sh [TARGET|all] [SECONDS]   (default: all targets, 30 s each)
#   TARGET: virtqueue qcow2 loader api snapshot migration
#
# New interesting inputs go to Fuzz/.build/corpus/TARGET (kept between runs, not
# committed); a crash, trap, leak, hang (-timeout) or OOM is written to
# Fuzz/crashes/ and makes the script fail. Prints executions, execs/s and coverage.
# FUZZ_SKIP_IF_UNSUPPORTED=1: exit 0, saying so, when the toolchain has no libFuzzer.
# FUZZ_ARGS: more libFuzzer flags (e.g. "-jobs=2 -workers=2").
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
all=(virtqueue qcow2 loader api snapshot migration)
target=${1:-all}
seconds=${2:-30}
if [ "$target" = all ]; then targets=("${all[@]}"); else targets=("$target"); fi
for t in "${targets[@]}"; do
    [[ " ${all[*]} " == *" $t "* ]] || { echo "fuzz.sh: unknown target '$t' (${all[*]})" >&2; exit 2; }
done

# Does this toolchain have libFuzzer (the clang runtime part some packagings leave out)?
probe=$(mktemp -d)
trap 'rm -rf "$probe"' EXIT
printf '@_cdecl("LLVMFuzzerTestOneInput") public func f(_ d: UnsafePointer<UInt8>, _ n: Int) -> CInt { 0 }\n' > "$probe/p.swift"
if ! swiftc -sanitize=fuzzer,address -parse-as-library "$probe/p.swift" -o "$probe/p" >"$probe/log" 2>&1; then
    echo "fuzz.sh: SKIPPED — this Swift toolchain cannot build libFuzzer targets:" >&2
    grep -v 'ld.gold: warning' "$probe/log" | head -5 >&2
    [ "${FUZZ_SKIP_IF_UNSUPPORTED:-0}" = 1 ] && exit 0
    exit 1
fi

cd "$repo/Fuzz"
# -enable-testing: the harnesses reach internal parsers with @testable import.
flags=(-c release -Xswiftc -sanitize=fuzzer,address -Xswiftc -enable-testing)
echo "fuzz.sh: building the harnesses (Fuzz/.build)…"
swift build "${flags[@]}" 2>&1 | grep -v -e 'ld.gold: warning' -e 'warning: Cannot export' | tail -3
bin=$(swift build "${flags[@]}" --show-bin-path)
mkdir -p crashes

status=0
for t in "${targets[@]}"; do
    work=.build/corpus/$t
    log=.build/fuzz-$t.log
    mkdir -p "$work"
    echo "== fuzz-$t: ${seconds}s from Fuzz/corpus/$t"
    # No Swift backtracer: libFuzzer and ASan report, and the backtracer would stall.
    # shellcheck disable=SC2086
    if SWIFT_BACKTRACE=enable=no ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
        "$bin/fuzz-$t" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        -artifact_prefix="crashes/$t-" ${FUZZ_ARGS:-} "$work" "corpus/$t" >"$log" 2>&1; then
        result=ok
    else
        result="FAILED (see Fuzz/$log and Fuzz/crashes/)"
        status=1
    fi
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
    cov=$(grep -Eo 'cov: [0-9]+ ft: [0-9]+' "$log" | tail -1)
    echo "   $result: ${execs:-?} executions, ${rate:-?} execs/s, ${cov:-no coverage line}, corpus $(ls "$work" | wc -l) inputs"
    [ "$result" = ok ] || grep -E -m5 'ERROR|Fatal error|panic|deadly signal|SUMMARY' "$log" | sed 's/^/   /'
done
exit $status
