#!/bin/sh
# bench_online.sh — runs build/benchmarks/bench_fetch RUNS times (default 3) and prints each
# run's SUMMARY line and the median of every figure across the runs.
#
#   benchmarks/bench_online.sh [--runs N] [--build DIR] [bench_fetch options...]
#
# Every run starts its own broker and server in a fresh temp dir (bench_fetch cleans up), so
# runs are independent; the median damps the noise of a shared machine.
set -eu
runs=3
build=build
while [ $# -gt 0 ]; do
    case "$1" in
        --runs) runs=$2; shift 2 ;;
        --build) build=$2; shift 2 ;;
        *) break ;;
    esac
done
bin="$build/benchmarks/bench_fetch"
[ -x "$bin" ] || { echo "bench_online.sh: $bin not built (cmake --build $build)" >&2; exit 2; }
out=$(mktemp "${TMPDIR:-/tmp}/bench_online.XXXXXX")
trap 'rm -f "$out" "$out.run"' EXIT INT TERM
i=1
while [ "$i" -le "$runs" ]; do
    echo "== run $i of $runs" >&2
    "$bin" --quiet "$@" > "$out.run" || { cat "$out.run"; rm -f "$out.run"; exit 1; }
    cat "$out.run"
    grep '^SUMMARY' "$out.run" >> "$out"
    rm -f "$out.run"
    i=$((i + 1))
done
echo "== medians of $runs runs"
# one key=value per line, grouped by key, median per key (keys in first-run order)
awk '{ for (i = 3; i <= NF; i++) { split($i, kv, "="); if (!(kv[1] in seen)) { seen[kv[1]] = 1; order[++n] = kv[1] }
       vals[kv[1]] = vals[kv[1]] " " kv[2] } }
     END { for (j = 1; j <= n; j++) {
             k = order[j]; m = split(substr(vals[k], 2), v, " ")
             for (a = 1; a <= m; a++) for (b = a + 1; b <= m; b++) if (v[b] + 0 < v[a] + 0) { t = v[a]; v[a] = v[b]; v[b] = t }
             printf "%s=%s%s", k, (m % 2 ? v[(m + 1) / 2] : (v[m / 2] + v[m / 2 + 1]) / 2), (j < n ? " " : "\n") } }' "$out"
