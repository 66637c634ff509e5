#!/usr/bin/env bash
# The quickstart: builds Tessera and runs its main job on the embedded default —
# generate a sample warehouse, validate the example configs, backfill the example Join
# (point-in-time-correct training data), then serve it online: `tessera serve` with a local
# Kafka-protocol broker, apply, upload the day before the last, stream the last day, and fetch
# the same checkout online that the backfill computed offline.
#
# usage: scripts/quickstart.sh [--size small|medium|large] [--warehouse DIR] [--offline-only]
set -euo pipefail
cd "$(dirname "$0")/.."
size=small wh=warehouse online=1
while [ $# -gt 0 ]; do
    case "$1" in
    --offline-only) online=0; shift ;;
    --size) size=$2; shift 2 ;;
    --warehouse) wh=$2; shift 2 ;;
    -h|--help) sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
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
echo "Training data: $out/ds=*/ (JSON Lines, one row per checkout)."
if [ "$online" = 0 ]; then
    echo "quickstart: done. Try: $TESSERA --help, $TESSERA backfill --help"
    exit 0
fi

# ---- online: the same Join served by `tessera serve` ----------------------------------------
state=$(mktemp -d /tmp/tessera-quickstart-XXXXXX)
KAFKA_PID= SERVE_PID=
stop_all() {
    for p in $SERVE_PID $KAFKA_PID; do kill -TERM "$p" 2>/dev/null; done
    for p in $SERVE_PID $KAFKA_PID; do
        for _ in $(seq 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$p" 2>/dev/null || true
    done
    rm -rf "$state"
}
trap stop_all EXIT
wait_line() { # FILE PATTERN PID: the first line matching PATTERN (waits <= 20 s)
    for _ in $(seq 200); do
        line=$(grep -m1 "$2" "$1" 2>/dev/null || true)
        [ -n "$line" ] && { echo "$line"; return 0; }
        kill -0 "$3" 2>/dev/null || break
        sleep 0.1
    done
    echo "quickstart: no '$2' from $1:" >&2; cat "${1%.out}.err" >&2; return 1
}
echo
echo "== tessera dev-kafka (a local Kafka-protocol broker) =="
"$TESSERA" dev-kafka --partitions 4 --topic payments.card_txn >"$state/kafka.out" 2>"$state/kafka.err" &
KAFKA_PID=$!
kafka=$(wait_line "$state/kafka.out" . "$KAFKA_PID")
echo "broker at $kafka"
echo
echo "== tessera serve --data-dir $state/data --kafka-bootstrap $kafka =="
"$TESSERA" serve --data-dir "$state/data" --warehouse "$wh" --grpc-port 0 --http-port 0 \
    --kafka-bootstrap "$kafka" >"$state/serve.out" 2>"$state/serve.err" &
SERVE_PID=$!
grpc=$(wait_line "$state/serve.out" '^grpc=' "$SERVE_PID" | cut -d= -f2)
http=$(wait_line "$state/serve.out" '^http=' "$SERVE_PID" | cut -d= -f2)
echo "gRPC at $grpc, HTTP at $http"
export TESSERA_SERVER=$grpc
upto=$(ls "$wh/payments/card_txn" | grep '^ds=' | sort | tail -2 | head -1 | cut -c4-)
echo
echo "== tessera apply -f $conf =="
"$TESSERA" apply -f "$conf"
echo
echo "== tessera upload $conf --ds $upto (batch state as of the start of $last) =="
"$TESSERA" upload "$conf" --ds "$upto" --warehouse "$wh"
echo
echo "== tessera produce --table payments.card_txn --ds $last (stream the last day) =="
"$TESSERA" produce --topic payments.card_txn --table payments.card_txn --ds "$last" \
    --warehouse "$wh" --key-column user_id --bootstrap "$kafka"
n=$(grep -c . <(cat "$wh/payments/card_txn/ds=$last"/* | tail -n +2))
for _ in $(seq 300); do
    got=$(curl -s --max-time 5 "http://$http/metrics" |
        awk '$1 ~ /^tessera_ingest_messages_total/ {s += $2} END {print s + 0}')
    [ "$got" -ge "$n" ] && break
    sleep 0.1
done
echo "consumed $got messages into tiles"
# a checkout from the middle of the streamed day: its features include streamed events
f="$out/ds=$last/part-00000.jsonl"
row=$(sed -n "$(( ($(wc -l <"$f") + 1) / 2 ))p" "$f")
keys=$(echo "$row" | sed 's/^{\("checkout_id":[^,]*,"user_id":[^,]*,"merchant_id":[^,]*,"cart_value":[^,]*\),"ts":\([0-9]*\).*/{\1}/')
ts=$(echo "$row" | sed 's/.*"ts":\([0-9]*\).*/\1/')
echo
echo "== tessera fetch --join payments.checkout_features.v1 --keys '$keys' --at-millis $ts =="
online=$("$TESSERA" fetch --join payments.checkout_features.v1 --keys "$keys" --at-millis "$ts")
echo "$online"
echo
echo "== the backfill's row for the same checkout (offline) =="
echo "$row"
echo
echo "== the same over HTTP: POST http://$http/v1/fetch/join/payments.checkout_features.v1 =="
curl -s --max-time 5 -X POST "http://$http/v1/fetch/join/payments.checkout_features.v1" \
    -d "[$(echo "$keys" | sed "s/}\$/,\"at_millis\":$ts}/")]" | cut -c1-300
echo "..."
# the two feature maps, as printed (same names, order and number formatting)
on_feats=$(echo "$online" | sed 's/.*"features":{//; s/}}$//')
off_feats=$(echo "$row" | sed 's/.*"ds":"[0-9-]*",//; s/}$//')
echo
if [ "$on_feats" = "$off_feats" ]; then
    echo "online == offline: the features fetched online are identical, byte for byte, to the backfill's row."
else
    echo "online and offline differ for this checkout (tests/integration/serve_online.sh compares"
    echo "every value with the tolerance SPEC section 4 allows for doubles and sketches):"
    diff <(echo "$off_feats" | tr ',' '\n') <(echo "$on_feats" | tr ',' '\n') | head -10 || true
fi
echo
echo "quickstart: done. Try: $TESSERA --help, $TESSERA serve --help, docs/serve.md"
