#!/usr/bin/env bash
# cluster_worker.sh — tessera-worker against the real coordinator on a real etcd (issue 5):
# two workers register and split a GroupBy's 4 partitions; `tessera upload` runs as shards on
# both (part files under the warehouse), the commit makes each load its partitions' files; a
# worker killed with -9 loses its lease and the survivor takes every partition (and reloads
# their part files) within the lease TTL plus a margin. Checked through the workers' JSON logs.
# Skipped when etcd or the coordinator binary is absent (the coordinator is built by its own
# branch). Loopback only; every wait bounded; only the processes started here are stopped.
set -u
: "${TESSERA:?TESSERA must point at the tessera binary}"
: "${TSR_BUILD_DIR:?}"
WORKER=$TSR_BUILD_DIR/worker/tessera-worker
COORD=${TSR_COORDINATOR:-$TSR_BUILD_DIR/coordinator/tessera-coordinator}
ETCD_BIN=/usr/bin/etcd
for b in "$WORKER" "$COORD" "$ETCD_BIN"; do
    [ -x "$b" ] || { echo "cluster_worker: skipped: $b not built/installed"; exit 0; }
done
TMP=$(mktemp -d /tmp/tsr_cluster_worker.XXXXXX)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill -0 "$p" 2>/dev/null && kill -KILL "$p" && wait "$p" 2>/dev/null; done
    rm -rf "$TMP"
}
trap cleanup EXIT
fails=0
pass() { echo "ok   - $1"; }
fail() { echo "FAIL - $1"; fails=$((fails + 1)); }
free_port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_log() { # FILE PATTERN TRIES(50 ms): 0 when the pattern appears
    for _ in $(seq "$3"); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.05; done
    return 1
}

CP=$(free_port); PP=$(free_port); EP=http://127.0.0.1:$CP
"$ETCD_BIN" --name t --data-dir "$TMP/etcd" --listen-client-urls "$EP" --advertise-client-urls "$EP" \
    --listen-peer-urls "http://127.0.0.1:$PP" --initial-advertise-peer-urls "http://127.0.0.1:$PP" \
    --initial-cluster "t=http://127.0.0.1:$PP" --heartbeat-interval 10 --election-timeout 100 \
    >"$TMP/etcd.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do curl -s --max-time 1 "$EP/health" | grep -q true && break; sleep 0.1; done
curl -s --max-time 1 "$EP/health" | grep -q true || { fail "etcd did not start"; exit 1; }

WH=$TMP/wh
mkdir -p "$WH/t/ev/ds=2024-01-01"
echo '{"user": "string", "v": "long", "ts": "long"}' >"$WH/t/ev/_schema.json"
{ echo 'user,v,ts'; for i in $(seq 0 999); do echo "u$((i % 100)),$i,$((1704067200000 + i * 1000))"; done; } \
    >"$WH/t/ev/ds=2024-01-01/part-0.csv"
cat >"$TMP/a.json" <<JSON
{"metaData": {"name": "t.a.v1", "team": "t", "online": 1}, "sources": [{"events": {"table": "t.ev",
 "query": {"selects": {"user": "user", "v": "v"}, "timeColumn": "ts"}}}], "keyColumns": ["user"],
 "aggregations": [{"inputColumn": "v", "operation": "SUM"}]}
JSON

"$COORD" --etcd "$EP" --listen 127.0.0.1:0 --id c1 --warehouse "$WH" --lease-ttl 2 --partitions 4 \
    --log-format json >"$TMP/c1.out" 2>"$TMP/c1.err" &
PIDS+=($!)
C=
for _ in $(seq 100); do C=$(sed -n 's/^grpc=//p' "$TMP/c1.out"); [ -n "$C" ] && break; sleep 0.1; done
[ -n "$C" ] || { fail "coordinator did not start"; tail "$TMP/c1.err"; exit 1; }
for i in 1 2; do
    "$WORKER" --coordinator "$C" --listen 127.0.0.1:0 --data-dir "$TMP/w$i" --id "w$i" --warehouse "$WH" \
        --log-format json >"$TMP/w$i.out" 2>"$TMP/w$i.err" &
    PIDS+=($!)
    eval "W${i}_PID=$!"
done
for i in 1 2; do
    wait_log "$TMP/w$i.err" "registered as w$i" 200 && pass "worker $i registered" \
        || { fail "worker $i did not register"; tail "$TMP/w$i.err"; }
done
for _ in $(seq 50); do "$TESSERA" status --server "$C" --timeout-ms 2000 >/dev/null 2>&1 && break; sleep 0.1; done
"$TESSERA" apply -f "$TMP/a.json" --server "$C" >"$TMP/apply.out" 2>&1 && pass "apply" \
    || { fail "apply"; cat "$TMP/apply.out"; }
for i in 1 2; do
    wait_log "$TMP/w$i.err" "t.a.v1: 2 partitions gained" 200 && pass "worker $i owns 2 of 4 partitions" \
        || { fail "worker $i: no partitions"; tail "$TMP/w$i.err"; }
done
"$TESSERA" upload t.a.v1 --ds 2024-01-01 --server "$C" --timeout-ms 30000 >"$TMP/upload.out" 2>&1 \
    && grep -q "100 keys" "$TMP/upload.out" && pass "upload of 100 keys as shards" \
    || { fail "upload"; cat "$TMP/upload.out"; }
n=$(ls "$WH"/_tessera/uploads/t.a.v1/*/part-*.tsu 2>/dev/null | wc -l)
[ "$n" -eq 4 ] && pass "4 part files" || fail "$n part files"
for i in 1 2; do
    wait_log "$TMP/w$i.err" "loaded upload B=1704153600000 of 2 partitions: 50 keys" 200 \
        && pass "worker $i loaded its 2 partitions (50 keys)" || { fail "worker $i did not load"; tail "$TMP/w$i.err"; }
done

t0=$(date +%s%3N)
kill -KILL "$W1_PID"
wait "$W1_PID" 2>/dev/null
if wait_log "$TMP/w2.err" "t.a.v1: 2 partitions gained (4 owned)" 200; then
    pass "worker 2 owns every partition $(($(date +%s%3N) - t0)) ms after worker 1 was killed (lease TTL 2 s)"
else
    fail "worker 2 did not take over in 10 s"; tail "$TMP/w2.err"
fi
grep -q "loaded upload B=1704153600000 of 4 partitions: 100 keys" "$TMP/w2.err" \
    && pass "worker 2 loaded the part files of all 4 partitions" || fail "worker 2 did not reload"

kill -TERM "$W2_PID"
for _ in $(seq 200); do kill -0 "$W2_PID" 2>/dev/null || break; sleep 0.05; done
if kill -0 "$W2_PID" 2>/dev/null; then fail "worker 2 still running 10 s after SIGTERM"
else wait "$W2_PID"; rc=$?; [ $rc -eq 0 ] && pass "worker 2: SIGTERM exit 0" || fail "worker 2: exit $rc"; fi

[ $fails -eq 0 ] || { echo "cluster_worker: $fails failed"; exit 1; }
echo "cluster_worker: all passed"
