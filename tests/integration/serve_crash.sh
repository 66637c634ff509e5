#!/usr/bin/env bash
# serve_crash.sh — issue 4's crash test: `tessera serve` is killed with SIGKILL twice while it
# streams a day of events from `tessera dev-kafka`, restarted on the same data dir each time,
# and left to catch up. Every fetched feature must then equal the offline backfill (which is
# what a run without the crash serves: serve_online.sh) — no event lost or counted twice,
# because tiles and Kafka offsets are stored in one atomic write batch per partition.
# Loopback only; every wait bounded; only the processes started here are stopped, by PID.
set -u
: "${TESSERA:?TESSERA must point at the tessera binary}"
: "${TSR_SOURCE_DIR:?}" "${TSR_BUILD_DIR:?}"
GEN="$TSR_BUILD_DIR/benchmarks/tessera-datagen"
PY=/usr/bin/python3
CHECK="$TSR_SOURCE_DIR/tests/integration/online_check.py"
if [ ! -x "$GEN" ]; then echo "serve_crash: skipped: $GEN not built"; exit 0; fi
. "$TSR_SOURCE_DIR/tests/integration/lib/serve.bash"

# 4 days, ~100k events a day: upload day 3, stream day 4
WH="$TMP/wh"
E=2024-01-03 D=2024-01-04
"$GEN" --out "$WH" --events 400000 --left 4000 --keys 2000 --days 4 --quiet >/dev/null
$PY "$CHECK" prepare "$WH" "$D" "$TSR_SOURCE_DIR/examples" "$TMP" || { fail "prepare"; exit 1; }
PROBE="$TMP/probe_join.json"
NSTREAM=$(wc -l <"$TMP/stream.jsonl")
start_broker --partitions 4 --topic payments.card_txn
start_serve
export TESSERA_SERVER=$GRPC
expect "apply the probe Join" 0 "$TESSERA" apply -f "$PROBE"
expect "upload ds=$E" 0 "$TESSERA" upload "$PROBE" --ds "$E" --warehouse "$WH"

"$TESSERA" produce --topic payments.card_txn --file "$TMP/stream.jsonl" --key-column user_id \
    --bootstrap "$BOOTSTRAP" >"$TMP/produce.out" 2>&1 &
PRODUCE_PID=$!
# kill -9 twice mid-stream: once some messages are in, again after the restart
for round in 1 2; do
    want=$((round * NSTREAM / 5))
    n=0
    for _ in $(seq 600); do
        n=$(metric tessera_ingest_messages_total)
        [ "$n" -ge "$want" ] && break
        sleep 0.02
    done
    kill -KILL "$SERVE_PID"
    wait "$SERVE_PID" 2>/dev/null
    SERVE_PID=
    echo "    killed serve with SIGKILL after it consumed $n messages (this run)"
    if [ "$n" -gt 0 ] && [ "$n" -lt "$NSTREAM" ]; then pass "round $round: killed mid-stream"; else
        fail "round $round: kill not mid-stream ($n of $NSTREAM consumed)"; fi
    start_serve
done
for _ in $(seq 600); do kill -0 "$PRODUCE_PID" 2>/dev/null || break; sleep 0.1; done
wait "$PRODUCE_PID" && pass "produce finished" || { fail "produce failed"; cat "$TMP/produce.out"; }
# catch up: lag 0 for a second (bounded 60 s)
export TESSERA_SERVER=$GRPC
zero=0
for _ in $(seq 600); do
    lag=$(curl -s --max-time 5 "http://$HTTP/metrics" | awk '$1 ~ /^tessera_consumer_lag/ {s += $2; n++} END {print n ? s : -1}')
    if [ "$lag" = 0 ]; then zero=$((zero + 1)); else zero=0; fi
    [ "$zero" -ge 10 ] && break
    sleep 0.1
done
[ "$zero" -ge 10 ] && pass "caught up after the crashes" || fail "lag still $lag after 60 s"

expect "backfill the probe Join for $D" 0 "$TESSERA" backfill "$PROBE" --start-ds "$D" --end-ds "$D" --warehouse "$WH" --quiet
BF="$WH/features/test_probe_join_v1/ds=$D"
$PY "$CHECK" keys "$BF" "$TMP/keys.jsonl"
expect "fetch after the crashes" 0 "$TESSERA" fetch --join test.probe_join.v1 --keys-file "$TMP/keys.jsonl"
cp "$TMP/out" "$TMP/fetched.jsonl"
expect "after two SIGKILLs online == offline (nothing lost, nothing doubled)" 0 \
    $PY "$CHECK" compare "$BF" "$TMP/fetched.jsonl" user_id,merchant_id "$WH"
sed 's/^/    /' "$TMP/out"
stop_serve "final"
stop_broker
echo "serve_crash: $fails failures"
[ "$fails" -eq 0 ]
