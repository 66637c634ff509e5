#!/usr/bin/env bash
# The quickstart: builds Tessera and runs its main job on the embedded default —
# generate a sample warehouse, validate the example configs, and backfill the example Join
# (point-in-time-correct training data), then show the first rows and where they live.
#
# usage: scripts/quickstart.sh [--size small|medium|large] [--warehouse DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
size=small wh=warehouse
while [ $# -gt 0 ]; do
    case "$1" in
    --size) size=$2; shift 2 ;;
    --warehouse) wh=$2; shift 2 ;;
    -h|--help) sed -n '2,7p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "quickstart: unknown option $1" >&2; exit 2 ;;
    esac
done

jobs=$(nproc 2>/dev/null || echo 2)
echo "== building (build/) =="
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j "$jobs" --target tessera tessera-datagen >/dev/null
TESSERA=build/cli/tessera

echo
echo "== generating a $size sample warehouse in $wh/ =="
if [ -f "$wh/.quickstart-$size" ]; then
    echo "(already there: $wh/.quickstart-$size)"
else
    rm -rf "$wh/payments/card_txn" "$wh/payments/checkouts" "$wh/users/profile_snapshot"
    build/benchmarks/tessera-datagen --out "$wh" --size "$size" --quiet
    touch "$wh/.quickstart-$size"
fi

echo
echo "== tessera validate examples/ =="
"$TESSERA" validate --warehouse "$wh" examples/

conf=examples/joins/payments/checkout_features.v1
echo
echo "== tessera columns $conf =="
"$TESSERA" columns --warehouse "$wh" "$conf"

first=$(ls "$wh/payments/checkouts" | grep '^ds=' | sort | head -1 | cut -c4-)
last=$(ls "$wh/payments/checkouts" | grep '^ds=' | sort | tail -1 | cut -c4-)
echo
echo "== tessera backfill $conf --start-ds $first --end-ds $last =="
"$TESSERA" backfill "$conf" --start-ds "$first" --end-ds "$last" --warehouse "$wh" 2>&1 |
    grep -v '^reading ' || exit 1
out="$wh/features/payments_checkout_features_v1"
echo
echo "== first rows of $out/ds=$last/ =="
head -n 3 "$out/ds=$last"/part-00000.jsonl
echo
echo "quickstart: done. Training data: $out/ds=*/ (JSON Lines, one row per checkout)."
echo "Try: $TESSERA --help, $TESSERA backfill --help"
