#!/usr/bin/env bash
# serve_online.sh — issue 4's consistency and bad-input tests through the real binaries:
# tessera-datagen writes a warehouse; `tessera dev-kafka` runs a broker; `tessera serve` gets
# the example Join (and a probe Join whose left rows sit on hop edges, mid-tile and exactly at
# event timestamps) with `tessera apply`, an upload of day E with `tessera upload`, and day
# E+1's events through `tessera produce`. Every fetched feature (gRPC via `tessera fetch`, and
# HTTP/JSON) must equal the offline backfill of the same Join for day E+1: zero mismatches for
# exact ops. Then: bad messages are counted and skipped without stalling a partition, bad
# fetch requests get NOT_FOUND / INVALID_ARGUMENT with a message, SIGTERM drains and exits 0,
# and a restart resumes from the stored offsets (consumes nothing twice).
# Loopback only; every wait bounded; only the processes started here are stopped, by PID.
set -u
: "${TESSERA:?TESSERA must point at the tessera binary}"
: "${TSR_SOURCE_DIR:?}" "${TSR_BUILD_DIR:?}"
GEN="$TSR_BUILD_DIR/benchmarks/tessera-datagen"
PY=/usr/bin/python3
CHECK="$TSR_SOURCE_DIR/tests/integration/online_check.py"
if [ ! -x "$GEN" ]; then echo "serve_online: skipped: $GEN not built"; exit 0; fi
. "$TSR_SOURCE_DIR/tests/integration/lib/serve.bash"

# ---- data: 10 days from 2024-01-01; upload E = day 8, stream E+1 = day 9 ----------------------
WH="$TMP/wh"
E=2024-01-08 D=2024-01-09
"$GEN" --out "$WH" --events 60000 --left 6000 --keys 400 --days 10 --quiet >/dev/null
$PY "$CHECK" prepare "$WH" "$D" "$TSR_SOURCE_DIR/examples" "$TMP" || { fail "prepare"; exit 1; }
JOIN="$TSR_SOURCE_DIR/examples/joins/payments/checkout_features.v1"
PROBE="$TMP/probe_join.json"
NSTREAM=$(wc -l <"$TMP/stream.jsonl")

start_broker --partitions 3 --topic payments.card_txn
start_serve
export TESSERA_SERVER=$GRPC

# ---- apply, upload, stream ---------------------------------------------------------------------
expect "apply the example Join" 0 "$TESSERA" apply -f "$JOIN"
expect "apply the probe Join" 0 "$TESSERA" apply -f "$PROBE"
expect "apply again is unchanged" 0 "$TESSERA" apply -f "$JOIN"
has out "unchanged" "re-apply reports unchanged"
expect "upload ds=$E (Join: all its parts)" 0 "$TESSERA" upload "$JOIN" --ds "$E" --warehouse "$WH"
expect "upload ds=$E (probe Join)" 0 "$TESSERA" upload "$PROBE" --ds "$E" --warehouse "$WH"
expect "upload of a day the warehouse lacks is NOT_FOUND" 3 "$TESSERA" upload "$JOIN" --ds 2030-01-01 --warehouse "$WH"
has err "ds=2030-01-01 is missing" "the error names the missing partition"
expect "produce day $D" 0 "$TESSERA" produce --topic payments.card_txn --file "$TMP/stream.jsonl" \
    --key-column user_id --bootstrap "$BOOTSTRAP"
wait_consumed "$NSTREAM" && pass "all $NSTREAM messages consumed"

# ---- offline truth for day D -------------------------------------------------------------------
expect "backfill the example Join for $D" 0 "$TESSERA" backfill "$JOIN" --start-ds "$D" --end-ds "$D" --warehouse "$WH" --quiet
expect "backfill the probe Join for $D" 0 "$TESSERA" backfill "$PROBE" --start-ds "$D" --end-ds "$D" --warehouse "$WH" --quiet
BF_J="$WH/features/payments_checkout_features_v1/ds=$D"
BF_P="$WH/features/test_probe_join_v1/ds=$D"
CJ=checkout_id,user_id,merchant_id,cart_value

# ---- online == offline: gRPC (tessera fetch) and HTTP ------------------------------------------
$PY "$CHECK" keys "$BF_P" "$TMP/probe_keys.jsonl"
$PY "$CHECK" keys "$BF_J" "$TMP/join_keys.jsonl" "$CJ"
expect "fetch the probe Join over gRPC" 0 "$TESSERA" fetch --join test.probe_join.v1 --keys-file "$TMP/probe_keys.jsonl"
cp "$TMP/out" "$TMP/probe_grpc.jsonl"
expect "probe Join (hop edges, mid-tile, at events) online == offline over gRPC" 0 \
    $PY "$CHECK" compare "$BF_P" "$TMP/probe_grpc.jsonl" user_id,merchant_id "$WH"
sed 's/^/    /' "$TMP/out"
expect "fetch the example Join over gRPC" 0 "$TESSERA" fetch --join payments.checkout_features.v1 --keys-file "$TMP/join_keys.jsonl"
cp "$TMP/out" "$TMP/join_grpc.jsonl"
expect "example Join (events, entity part, derivations) online == offline over gRPC" 0 \
    $PY "$CHECK" compare "$BF_J" "$TMP/join_grpc.jsonl" "$CJ" "$WH"
sed 's/^/    /' "$TMP/out"
expect "fetch the example Join over HTTP" 0 $PY "$CHECK" http-fetch "$HTTP" payments.checkout_features.v1 "$TMP/join_keys.jsonl" "$TMP/join_http.jsonl"
expect "example Join online == offline over HTTP" 0 $PY "$CHECK" compare "$BF_J" "$TMP/join_http.jsonl" "$CJ" "$WH"
sed 's/^/    /' "$TMP/out"

# ---- FetchGroupBy ------------------------------------------------------------------------------
GB="$TSR_SOURCE_DIR/examples/group_bys/payments/card_txn_features.v1"
expect "a Join's GroupBy is not fetchable as a GroupBy until applied" 3 "$TESSERA" fetch --group-by payments.card_txn_features.v1 --keys '{"user_id":"u1"}'
expect "apply the GroupBy the Join already serves (same definition)" 0 "$TESSERA" apply -f "$GB"
U=$(head -n 1 "$TMP/stream.jsonl" | sed 's/.*"user_id":"\([^"]*\)".*/\1/')
T=$(( $(date -u -d "$D" +%s) * 1000 + 43200000 ))
expect "fetch a GroupBy" 0 "$TESSERA" fetch --group-by payments.card_txn_features.v1 --keys "{\"user_id\":\"$U\"}" --at-millis "$T"
has out '"amount_count_30d"' "GroupBy features are named without the Join prefix"
has out '"status":"Success"' "GroupBy fetch succeeds"

# ---- bad fetch requests ------------------------------------------------------------------------
expect "unknown Join is NOT_FOUND (exit 3)" 3 "$TESSERA" fetch --join no.such.join --keys '{"user_id":"u1"}'
has err "no.such.join" "NOT_FOUND names the Join"
expect "a Join fetched as a GroupBy is NOT_FOUND" 3 "$TESSERA" fetch --group-by payments.checkout_features.v1 --keys '{"user_id":"u1"}'
has err "is a Join" "the error says what the name is"
expect "missing key column fails that part only" 0 "$TESSERA" fetch --join payments.checkout_features.v1 --keys '{"user_id":"u1"}'
has out '"payments_merchant_txn_features_v1_exception":"missing key column' "part exception names the missing key"
has out '"user_payments_card_txn_features_v1_amount_count_30d"' "the other parts are served"
code=$(curl -s -o "$TMP/http.out" -w '%{http_code}' --max-time 5 -X POST "http://$HTTP/v1/fetch/join/payments.checkout_features.v1" -d '[{"user_id": ')
[ "$code" = 400 ] && pass "malformed JSON body: HTTP 400" || fail "malformed JSON body: HTTP $code"
has http.out "invalid JSON" "400 body says what is wrong"
code=$(curl -s -o "$TMP/http.out" -w '%{http_code}' --max-time 5 -X POST "http://$HTTP/v1/fetch/join/nope" -d '[]')
[ "$code" = 404 ] && pass "unknown Join over HTTP: 404" || fail "unknown Join over HTTP: $code"

# ---- bad messages: counted, skipped, never stall a partition -----------------------------------
before=$(metric tessera_ingest_messages_total)
{
    echo '{not json at all'
    echo '[1, 2, 3]'
    echo "{\"txn_id\": \"x1\", \"user_id\": \"u_bad\", \"amount\": \"lots\", \"ts\": $T}"
    echo "{\"txn_id\": \"x2\", \"user_id\": \"u_bad\", \"amount\": 5.0, \"ts\": \"yesterday\"}"
    echo "{\"txn_id\": \"x3\", \"amount\": 5.0, \"ts\": $T}"
    echo "{\"txn_id\": \"x4\", \"user_id\": \"u_sentinel\", \"merchant_id\": \"m1\", \"amount\": 7.5, \"currency\": \"usd\", \"mcc\": 1, \"is_online\": true, \"ts\": $T}"
} >"$TMP/bad.jsonl"
expect "produce bad messages (--raw)" 0 "$TESSERA" produce --raw --topic payments.card_txn --file "$TMP/bad.jsonl" --key-column user_id --bootstrap "$BOOTSTRAP"
wait_consumed $((before + 6)) && pass "bad messages consumed"
bad=$(metric tessera_ingest_bad_messages_total)
[ "$bad" -eq 4 ] && pass "4 malformed messages counted" || fail "tessera_ingest_bad_messages_total = $bad, expected 4"
expect "the good message after them is served" 0 "$TESSERA" fetch --group-by payments.card_txn_features.v1 \
    --keys '{"user_id":"u_sentinel"}' --at-millis $((T + 1))
has out '"amount_count_1d":1' "sentinel event counted"
expect "status" 0 "$TESSERA" status
has out "kafka:payments.card_txn" "status lists the consumer"

# ---- SIGTERM drains; a restart resumes from the stored offsets ---------------------------------
consumed=$(metric tessera_ingest_messages_total)
stop_serve "drain"
start_serve
export TESSERA_SERVER=$GRPC
sleep 2
again=$(metric tessera_ingest_messages_total)
[ "$again" -eq 0 ] && pass "restart consumed nothing twice (stored offsets)" || fail "restart re-consumed $again messages"
expect "fetch after restart" 0 "$TESSERA" fetch --join payments.checkout_features.v1 --keys-file "$TMP/join_keys.jsonl"
cp "$TMP/out" "$TMP/join_grpc2.jsonl"
expect "after restart online == offline" 0 $PY "$CHECK" compare "$BF_J" "$TMP/join_grpc2.jsonl" "$CJ" "$WH"
# the same fetch again: now from the batch and stream record caches, still equal to offline
expect "fetch again (from the record caches)" 0 "$TESSERA" fetch --join payments.checkout_features.v1 --keys-file "$TMP/join_keys.jsonl"
cp "$TMP/out" "$TMP/join_grpc3.jsonl"
expect "from the caches online == offline" 0 $PY "$CHECK" compare "$BF_J" "$TMP/join_grpc3.jsonl" "$CJ" "$WH"
for c in batch stream; do
    hits=$(metric tessera_tile_${c}_cache_hits_total)
    [ "$hits" -gt 0 ] && pass "$c record cache hits: $hits" || fail "tessera_tile_${c}_cache_hits_total = $hits"
done
expect "get joins lists both" 0 "$TESSERA" get joins
has out "test.probe_join.v1" "the registry survived the restart"
stop_serve "final"

stop_broker
echo "serve_online: $fails failures (consumed $consumed messages before the restart)"
[ "$fails" -eq 0 ]
