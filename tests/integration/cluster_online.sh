#!/usr/bin/env bash
# cluster_online.sh — issue 5's consistency test through a real cluster (docs/cluster.md):
# scripts/local-cluster.sh starts etcd, two coordinators, 3 workers and a fetcher on loopback;
# `tessera dev-kafka` runs a broker whose topic has 6 partitions. The example Join and the probe
# Join (left rows on hop edges, mid-tile, exactly at event timestamps) are applied to the
# coordinator, day E uploaded as a job of partition shards run by the workers, day E+1 produced
# keyed by user_id. Every feature fetched through the fetcher (gRPC and HTTP) must equal the
# offline backfill: zero mismatches for exact ops, with the keys spread over all 3 workers.
# Then the admin CLI against the cluster, and bad requests.
# Loopback only; every wait bounded; only the processes started here are stopped, by PID.
set -u
: "${TESSERA:?TESSERA must point at the tessera binary}"
: "${TSR_SOURCE_DIR:?}" "${TSR_BUILD_DIR:?}"
GEN="$TSR_BUILD_DIR/benchmarks/tessera-datagen"
PY=/usr/bin/python3
CHECK="$TSR_SOURCE_DIR/tests/integration/online_check.py"
if [ ! -x "$GEN" ]; then echo "cluster_online: skipped: $GEN not built"; exit 0; fi
. "$TSR_SOURCE_DIR/tests/integration/lib/serve.bash"
. "$TSR_SOURCE_DIR/tests/integration/lib/cluster.bash"
why=$(cluster_skip_reason)
if [ -n "$why" ]; then echo "cluster_online: skipped: $why"; exit 0; fi

# ---- data: 10 days from 2024-01-01; upload E = day 8, stream E+1 = day 9 ----------------------
WH="$TMP/wh"
E=2024-01-08 D=2024-01-09
"$GEN" --out "$WH" --events 60000 --left 6000 --keys 400 --days 10 --quiet >/dev/null
$PY "$CHECK" prepare "$WH" "$D" "$TSR_SOURCE_DIR/examples" "$TMP" || { fail "prepare"; exit 1; }
JOIN="$TSR_SOURCE_DIR/examples/joins/payments/checkout_features.v1"
PROBE="$TMP/probe_join.json"
NSTREAM=$(wc -l <"$TMP/stream.jsonl")

start_broker --partitions 6 --topic payments.card_txn
cluster_up --workers 3 --kafka-bootstrap "$BOOTSTRAP" --warehouse "$WH" --lease-ttl 3
export TESSERA_SERVER=$COORD

expect "get workers lists 3" 0 "$TESSERA" get workers
for w in 1 2 3; do has out "worker$w" "worker$w is a member"; done

# ---- apply, upload (a job of partition shards), stream -----------------------------------------
expect "apply the example Join" 0 "$TESSERA" apply -f "$JOIN"
expect "apply the probe Join" 0 "$TESSERA" apply -f "$PROBE"
expect "apply again is unchanged" 0 "$TESSERA" apply -f "$JOIN"
has out "unchanged" "re-apply reports unchanged"
expect "apply through the other coordinator (follower → leader)" 0 "$TESSERA" apply -f "$JOIN" --server "$COORD2"
expect "upload ds=$E (Join: all its parts)" 0 "$TESSERA" upload "$JOIN" --ds "$E" --warehouse "$WH"
expect "upload ds=$E (probe Join)" 0 "$TESSERA" upload "$PROBE" --ds "$E" --warehouse "$WH"
expect "upload of a day the warehouse lacks is NOT_FOUND" 3 "$TESSERA" upload "$JOIN" --ds 2030-01-01 --warehouse "$WH"
expect "produce day $D keyed by user_id" 0 "$TESSERA" produce --topic payments.card_txn \
    --file "$TMP/stream.jsonl" --key-column user_id --bootstrap "$BOOTSTRAP"
wait_caught_up 60 && pass "all partitions caught up" || fail "partitions not caught up in 60 s"

expect "get partitions" 0 "$TESSERA" get partitions --group-by payments.card_txn_features.v1
owners=$(pjq "len({p['worker'] for p in P if p['groupBy'] == 'payments.card_txn_features.v1'})")
[ "$owners" = 3 ] && pass "the streamed GroupBy's 6 partitions are spread over 3 workers" ||
    fail "partitions owned by $owners workers"
busy=$(pjq "len({p['worker'] for p in P if p['events'] > 0})")
[ "$busy" = 3 ] && pass "every worker applied events" || fail "$busy workers applied events"
nparts=$(pjq "len([p for p in P if p['groupBy'] == 'payments.card_txn_features.v1'])")
[ "$nparts" = 6 ] && pass "a streamed GroupBy has its topic's 6 partitions" || fail "$nparts partitions"

# ---- offline truth for day D -------------------------------------------------------------------
expect "backfill the example Join for $D" 0 "$TESSERA" backfill "$JOIN" --start-ds "$D" --end-ds "$D" --warehouse "$WH" --quiet
expect "backfill the probe Join for $D" 0 "$TESSERA" backfill "$PROBE" --start-ds "$D" --end-ds "$D" --warehouse "$WH" --quiet
BF_J="$WH/features/payments_checkout_features_v1/ds=$D"
BF_P="$WH/features/test_probe_join_v1/ds=$D"
CJ=checkout_id,user_id,merchant_id,cart_value

# ---- online through the fetcher == offline -----------------------------------------------------
$PY "$CHECK" keys "$BF_P" "$TMP/probe_keys.jsonl"
$PY "$CHECK" keys "$BF_J" "$TMP/join_keys.jsonl" "$CJ"
expect "fetch the probe Join through the fetcher" 0 "$TESSERA" fetch --join test.probe_join.v1 \
    --keys-file "$TMP/probe_keys.jsonl" --server "$FETCHER"
cp "$TMP/out" "$TMP/probe_grpc.jsonl"
expect "probe Join online == offline through 3 workers" 0 \
    $PY "$CHECK" compare "$BF_P" "$TMP/probe_grpc.jsonl" user_id,merchant_id "$WH"
sed 's/^/    /' "$TMP/out"
expect "fetch the example Join through the fetcher" 0 "$TESSERA" fetch --join payments.checkout_features.v1 \
    --keys-file "$TMP/join_keys.jsonl" --server "$FETCHER"
cp "$TMP/out" "$TMP/join_grpc.jsonl"
expect "example Join (events, entity part, derivations) online == offline through 3 workers" 0 \
    $PY "$CHECK" compare "$BF_J" "$TMP/join_grpc.jsonl" "$CJ" "$WH"
sed 's/^/    /' "$TMP/out"
if [ -n "${FETCHER_HTTP:-}" ]; then
    expect "fetch the example Join over the fetcher's HTTP" 0 $PY "$CHECK" http-fetch "$FETCHER_HTTP" \
        payments.checkout_features.v1 "$TMP/join_keys.jsonl" "$TMP/join_http.jsonl"
    expect "example Join over HTTP == offline" 0 $PY "$CHECK" compare "$BF_J" "$TMP/join_http.jsonl" "$CJ" "$WH"
else
    fail "the fetcher printed no http= address"
fi

# ---- bad requests ------------------------------------------------------------------------------
expect "unknown Join is NOT_FOUND (exit 3)" 3 "$TESSERA" fetch --join no.such.join --keys '{"user_id":"u1"}' --server "$FETCHER"
has err "no.such.join" "NOT_FOUND names the Join"
expect "missing key column fails that part only" 0 "$TESSERA" fetch --join payments.checkout_features.v1 \
    --keys '{"user_id":"u1"}' --server "$FETCHER"
has out '"payments_merchant_txn_features_v1_exception":"missing key column' "part exception names the missing key"

cluster_down
stop_broker
echo "cluster_online: $fails failures"
[ "$fails" -eq 0 ]
