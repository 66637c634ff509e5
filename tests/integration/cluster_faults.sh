#!/usr/bin/env bash
# cluster_faults.sh — issue 5's fault tests through a real cluster (docs/cluster.md), all on
# loopback with the real binaries and a real etcd:
#   1. kill -9 a worker while streaming: within one lease TTL (plus this test's polling) its
#      partitions are owned by the others, which load the upload's part files and replay the
#      topic from B; after catch-up every value equals the offline backfill (= the no-fault
#      run): no event lost or doubled.
#   2. coordinator failover: kill -9 the leader; the other replica takes over with a higher
#      epoch and the assignments stay. Then the restarted replica and a SIGSTOPped leader: the
#      paused leader loses its lease, and when it resumes its writes carrying the old epoch are
#      rejected (it steps down).
#   3. etcd stopped: fetches keep working from the fetcher's cached routing table; when etcd
#      returns the cluster answers admin calls again.
# Every wait bounded; only the processes started here are stopped, by PID.
set -u
: "${TESSERA:?TESSERA must point at the tessera binary}"
: "${TSR_SOURCE_DIR:?}" "${TSR_BUILD_DIR:?}"
GEN="$TSR_BUILD_DIR/benchmarks/tessera-datagen"
PY=/usr/bin/python3
CHECK="$TSR_SOURCE_DIR/tests/integration/online_check.py"
if [ ! -x "$GEN" ]; then echo "cluster_faults: skipped: $GEN not built"; exit 0; fi
. "$TSR_SOURCE_DIR/tests/integration/lib/serve.bash"
. "$TSR_SOURCE_DIR/tests/integration/lib/cluster.bash"
why=$(cluster_skip_reason)
if [ -n "$why" ]; then echo "cluster_faults: skipped: $why"; exit 0; fi
TTL=3
EXTRA_PIDS=""
trap 'for p in $EXTRA_PIDS; do kill -0 $p 2>/dev/null && kill -KILL $p; done; cluster_cleanup' EXIT

now_ms() { date +%s%3N; }
# etcd_leader: the id in /tessera/leader (through etcd's JSON gateway), or "" when none.
etcd_leader() {
    $PY - "http://$ETCD" <<'PY' 2>/dev/null
import base64, json, sys, urllib.request
req = urllib.request.Request(sys.argv[1] + "/v3/kv/range", method="POST",
      data=json.dumps({"key": base64.b64encode(b"/tessera/leader").decode()}).encode())
r = json.load(urllib.request.urlopen(req, timeout=2))
kvs = r.get("kvs") or []
print(json.loads(base64.b64decode(kvs[0]["value"]))["id"] if kvs else "")
PY
}
wait_leader_not() { # ID SECONDS: waits until a leader other than ID holds the key; prints it
    local l
    for _ in $(seq $(($2 * 20))); do
        l=$(etcd_leader)
        [ -n "$l" ] && [ "$l" != "$1" ] && { echo "$l"; return 0; }
        sleep 0.05
    done
    return 1
}

# 4 days, ~50k events a day: upload day 3, stream day 4
WH="$TMP/wh"
E=2024-01-03 D=2024-01-04
"$GEN" --out "$WH" --events 200000 --left 3000 --keys 1500 --days 4 --quiet >/dev/null
$PY "$CHECK" prepare "$WH" "$D" "$TSR_SOURCE_DIR/examples" "$TMP" || { fail "prepare"; exit 1; }
PROBE="$TMP/probe_join.json"
NSTREAM=$(wc -l <"$TMP/stream.jsonl")
start_broker --partitions 6 --topic payments.card_txn
cluster_up --workers 3 --kafka-bootstrap "$BOOTSTRAP" --warehouse "$WH" --lease-ttl $TTL
export TESSERA_SERVER=$COORD
expect "apply the probe Join" 0 "$TESSERA" apply -f "$PROBE"
expect "upload ds=$E" 0 "$TESSERA" upload "$PROBE" --ds "$E" --warehouse "$WH"
expect "backfill the probe Join for $D" 0 "$TESSERA" backfill "$PROBE" --start-ds "$D" --end-ds "$D" --warehouse "$WH" --quiet
BF="$WH/features/test_probe_join_v1/ds=$D"
$PY "$CHECK" keys "$BF" "$TMP/keys.jsonl"
check_exact() { # NAME: fetch through the fetcher, compare with the backfill
    expect "$1: fetch" 0 "$TESSERA" fetch --join test.probe_join.v1 --keys-file "$TMP/keys.jsonl" --server "$FETCHER"
    cp "$TMP/out" "$TMP/fetched.jsonl"
    expect "$1: online == offline" 0 $PY "$CHECK" compare "$BF" "$TMP/fetched.jsonl" user_id,merchant_id "$WH"
    sed 's/^/    /' "$TMP/out"
}

# ---- 1. kill -9 a worker while streaming --------------------------------------------------------
"$TESSERA" produce --topic payments.card_txn --file "$TMP/stream.jsonl" --key-column user_id \
    --bootstrap "$BOOTSTRAP" >"$TMP/produce.out" 2>&1 &
PRODUCE_PID=$!
EXTRA_PIDS="$EXTRA_PIDS $PRODUCE_PID"
n=0
for _ in $(seq 600); do
    n=$(pjq "sum(p['events'] for p in P)")
    [ "$n" != ERR ] && [ "$n" -ge $((NSTREAM / 4)) ] && break
    sleep 0.05
done
owned=$(pjq "len([p for p in P if p['worker'] == 'worker2'])")
kill -KILL "${WORKER_PID[2]}"
t0=$(now_ms)
echo "    killed worker2 (owning $owned partitions) after $n events were applied"
[ "$n" != ERR ] && [ "$n" -lt "$NSTREAM" ] && pass "worker killed mid-stream" || fail "kill not mid-stream ($n of $NSTREAM)"
moved=0
for _ in $(seq $((TTL * 40))); do
    left=$(pjq "len([p for p in P if p['worker'] in ('worker2', None)])")
    [ "$left" = 0 ] && { moved=1; break; }
    sleep 0.05
done
t1=$(now_ms)
echo "    worker2's partitions owned by others $((t1 - t0)) ms after the kill (lease TTL ${TTL} s)"
[ $moved = 1 ] && [ $((t1 - t0)) -le $((TTL * 1000 + 1000)) ] && pass "partitions reassigned within one lease TTL (+1 s polling)" ||
    fail "partitions not reassigned within the TTL ($((t1 - t0)) ms, moved=$moved)"
for _ in $(seq 600); do kill -0 "$PRODUCE_PID" 2>/dev/null || break; sleep 0.1; done
wait "$PRODUCE_PID" && pass "produce finished" || { fail "produce failed"; cat "$TMP/produce.out"; }
wait_caught_up 90 && pass "caught up after the worker's death" || fail "not caught up in 90 s"
t2=$(now_ms)
echo "    caught up $((t2 - t0)) ms after the kill"
check_exact "after kill -9 of a worker"
workers=$(pjq "len({p['worker'] for p in P})")
[ "$workers" = 2 ] && pass "2 workers own everything" || fail "$workers owners"

# ---- 2. coordinator failover ---------------------------------------------------------------------
leader=$(etcd_leader)
case "$leader" in coordinator1) LPID=$COORD_PID OTHER=$COORD2 ;; coordinator2) LPID=$COORD2_PID OTHER=$COORD ;;
*) fail "no leader in etcd ('$leader')"; exit 1 ;; esac
before=$(pjq "sorted((p['groupBy'], p['partition'], p['worker']) for p in P)")
kill -KILL "$LPID"
t0=$(now_ms)
newl=$(wait_leader_not "$leader" $((TTL * 3))) && pass "$newl took over from $leader in $(( $(now_ms) - t0 )) ms" ||
    fail "no new leader within $((TTL * 3)) s"
export TESSERA_SERVER=$OTHER
after=""
for _ in $(seq 100); do
    after=$(pjq "sorted((p['groupBy'], p['partition'], p['worker']) for p in P)")
    [ "$after" != ERR ] && break
    sleep 0.1
done
[ "$before" = "$after" ] && pass "assignments unchanged across the failover" || fail "assignments changed across the failover"
check_exact "after coordinator failover"

# restart the killed replica, then pause the new leader past its lease
case "$leader" in coordinator1) NAME=coordinator ;; *) NAME=coordinator2 ;; esac
"$TSR_BUILD_DIR/coordinator/tessera-coordinator" --etcd "http://$ETCD" --listen 127.0.0.1:0 --id "$leader" \
    --warehouse "$WH" --kafka-bootstrap "$BOOTSTRAP" --lease-ttl $TTL >"$CLUSTER_DIR/logs/coordinator3.out" 2>"$CLUSTER_DIR/logs/coordinator3.log" &
C3=$!
EXTRA_PIDS="$EXTRA_PIDS $C3"
case "$newl" in coordinator1) NPID=$COORD_PID ;; *) NPID=$COORD2_PID ;; esac
sleep 1
kill -STOP "$NPID"
t0=$(now_ms)
back=$(wait_leader_not "$newl" $((TTL * 3))) && pass "paused leader $newl replaced by $back in $(( $(now_ms) - t0 )) ms" ||
    fail "paused leader not replaced"
kill -CONT "$NPID"
sleep $((TTL))
log="$CLUSTER_DIR/logs/$( [ "$newl" = coordinator1 ] && echo coordinator || echo coordinator2 ).log"
grep -qiE "step(ping|s|ped)? down|lost leadership|not the leader" "$log" &&
    pass "the resumed old leader's writes with the old epoch were rejected: it stepped down" ||
    { fail "the resumed old leader did not report stepping down"; tail -5 "$log" | sed 's/^/    | /'; }
[ "$(etcd_leader)" = "$back" ] && pass "leadership stays with $back" || fail "leader is now $(etcd_leader)"
check_exact "after the paused leader resumed"

# ---- 3. etcd stopped -----------------------------------------------------------------------------
kill -STOP "$ETCD_PID"
check_exact "with etcd stopped"
kill -CONT "$ETCD_PID"
ok=0
for _ in $(seq 100); do
    n=$("$TESSERA" get workers -o json --timeout-ms 2000 2>/dev/null | grep -c '"id"')
    [ "${n:-0}" -ge 2 ] && { ok=1; break; }
    sleep 0.2
done
if [ $ok = 1 ]; then pass "admin calls answer again once etcd is back"; else
    fail "cluster did not recover after etcd returned"
    "$TESSERA" get workers --timeout-ms 2000 2>&1 | sed 's/^/    | /'
    for f in "$CLUSTER_DIR"/logs/coordinator*.log; do
        echo "    == $f"; tail -n 8 "$f" | sed 's/^/    | /'; done
fi
# workers whose leases ran out while etcd was paused withdraw their partitions, register again
# and reload them: recovered = every partition owned again and every value exact again
# (checked every 2 s for up to 60 s)
recovered=0
t0=$(now_ms)
for _ in $(seq 30); do
    if [ "$(pjq "'ok' if P and all(p['worker'] for p in P) else 'no'")" = ok ] &&
        "$TESSERA" fetch --join test.probe_join.v1 --keys-file "$TMP/keys.jsonl" --server "$FETCHER" >"$TMP/fetched.jsonl" 2>/dev/null &&
        $PY "$CHECK" compare "$BF" "$TMP/fetched.jsonl" user_id,merchant_id "$WH" >"$TMP/cmp.out" 2>&1; then
        recovered=1
        break
    fi
    sleep 2
done
if [ $recovered = 1 ]; then
    pass "after etcd returned: every partition owned and every value exact again ($(( $(now_ms) - t0 )) ms)"
    sed 's/^/    /' "$TMP/cmp.out"
else
    fail "after etcd returned: not recovered within 60 s"
    tail -n 5 "$TMP/cmp.out" | sed 's/^/    | /'
fi

kill -TERM "$C3" 2>/dev/null
cluster_down
stop_broker
echo "cluster_faults: $fails failures"
[ "$fails" -eq 0 ]
