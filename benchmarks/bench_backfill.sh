#!/usr/bin/env bash
# Backfill benchmark (SPEC §8, issue 3): tessera backfill against DuckDB 1.5 computing the same
# point-in-time features in SQL over the same warehouse, in the same run. Prints both wall
# times (median of --runs), peak RSS, the ratio, and whether the outputs agree.
#
# usage: benchmarks/bench_backfill.sh [--size small|medium|large] [--windows w1|w5|w10]
#                                     [--runs N] [--threads N] [--build DIR] [--keep]
#   --windows  w5 (default): windows 1h,1d,7d,30d + lifetime; w1: 30d only; w10: 10 windows.
#   Ops: COUNT SUM AVERAGE MIN MAX LAST over card_txn.amount, left = payments.checkouts.
set -euo pipefail
cd "$(dirname "$0")/.."
size=medium windows=w5 runs=3 threads=2 build=build keep=0
while [ $# -gt 0 ]; do
    case "$1" in
    --size) size=$2; shift 2 ;;
    --windows) windows=$2; shift 2 ;;
    --runs) runs=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    --build) build=$2; shift 2 ;;
    --keep) keep=1; shift ;;
    -h|--help) sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "bench_backfill: unknown option $1" >&2; exit 2 ;;
    esac
done
case "$windows" in
w1) winspec=30d ;;
w5) winspec=1h,1d,7d,30d,life ;;
w10) winspec=1h,2h,6h,12h,1d,2d,7d,14d,30d,life ;;
*) echo "bench_backfill: --windows must be w1, w5 or w10" >&2; exit 2 ;;
esac
conf=benchmarks/configs/bench_join_$windows.v1
prefix="bench_card_txn_${windows}_v1_"
command -v /usr/bin/time >/dev/null || { echo "bench_backfill: /usr/bin/time missing (scripts/install-deps.sh)" >&2; exit 1; }

if [ ! -x "$build/cli/tessera" ] || [ ! -x "$build/benchmarks/tessera-datagen" ]; then
    cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
    cmake --build "$build" -j"$(nproc)" --target tessera tessera-datagen >/dev/null
fi
if [ ! -d benchmarks/duckdb/node_modules/@duckdb/node-api ]; then
    echo "bench_backfill: installing @duckdb/node-api into benchmarks/duckdb (npm registry)" >&2
    (cd benchmarks/duckdb && npm install --no-audit --no-fund --silent)
fi

wh=${TMPDIR:-/tmp}/tessera-bench-$size
if [ ! -f "$wh/.complete" ]; then
    rm -rf "$wh"
    "$build/benchmarks/tessera-datagen" --out "$wh" --size "$size" --quiet >&2
    touch "$wh/.complete"
fi
days=$(ls -d "$wh"/payments/checkouts/ds=* | wc -l)
first=$(ls "$wh"/payments/checkouts | grep '^ds=' | sort | head -1 | cut -c4-)
last=$(ls "$wh"/payments/checkouts | grep '^ds=' | sort | tail -1 | cut -c4-)
events=$(($(cat "$wh"/payments/card_txn/ds=*/*.csv | wc -l) - $(ls "$wh"/payments/card_txn/ds=*/*.csv | wc -l)))
lefts=$(($(cat "$wh"/payments/checkouts/ds=*/*.csv | wc -l) - days))

median() { sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
t_ours=() m_ours=() t_duck=() m_duck=()
peer_out=$(mktemp /tmp/tessera-peer-XXXXXX.jsonl)
trap 'rm -f "$peer_out" "$peer_out.time"' EXIT
for r in $(seq "$runs"); do
    /usr/bin/time -f "%e %M" -o "$peer_out.time" "$build/cli/tessera" backfill "$conf" \
        --start-ds "$first" --end-ds "$last" --warehouse "$wh" --parallelism "$threads" --quiet
    read -r t m < "$peer_out.time"; t_ours+=("$t"); m_ours+=("$m")
    /usr/bin/time -f "%e %M" -o "$peer_out.time" node benchmarks/duckdb/peer.mjs "$wh" "$peer_out" \
        "$first" "$last" "$winspec" "$threads" 2>/dev/null
    read -r t m < "$peer_out.time"; t_duck+=("$t"); m_duck+=("$m")
    echo "run $r: tessera ${t_ours[-1]} s ($((${m_ours[-1]} / 1024)) MiB), duckdb ${t_duck[-1]} s ($((${m_duck[-1]} / 1024)) MiB)" >&2
done
agree=$(node benchmarks/duckdb/compare.mjs "$wh/bench/bench_checkout_${windows}_v1" "$peer_out" "$prefix" || true)
to=$(printf '%s\n' "${t_ours[@]}" | median); td=$(printf '%s\n' "${t_duck[@]}" | median)
mo=$(printf '%s\n' "${m_ours[@]}" | median); md=$(printf '%s\n' "${m_duck[@]}" | median)
echo "backfill benchmark: size=$size windows=$windows ($winspec) events=$events left_rows=$lefts days=$days threads=$threads runs=$runs"
printf '  tessera  median %7.2f s  peak RSS %6d MiB  %10.0f events/s  %9.0f left rows/s\n' "$to" $((${mo%.*} / 1024)) \
    "$(echo "$events / $to" | bc -l)" "$(echo "$lefts / $to" | bc -l)"
printf '  duckdb   median %7.2f s  peak RSS %6d MiB  (baseline, same run)\n' "$td" $((${md%.*} / 1024))
printf '  ratio    duckdb/tessera = %.2fx faster;  RSS tessera/duckdb = %.2f\n' "$(echo "$td / $to" | bc -l)" "$(echo "$mo / $md" | bc -l)"
echo "  $agree"
[ "$keep" = 1 ] || true
