#!/usr/bin/env bash
# coordinator_etcd.sh — two tessera-coordinator replicas on a real etcd (loopback, free ports,
# temp dir, everything stopped by PID): exactly one leads and the other redirects with the
# leader's address; configs applied through the leader; uploads refused with clear errors
# (missing ds partition, no workers); kill -9 of the leader → the other takes over within a
# few seconds (replica lease 1 s) and still holds the configs; a SIGSTOP'd
# leader that resumes after losing its lease refuses calls instead of acting on stale
# leadership (fencing); SIGTERM resigns at once and exits 0. Skipped when /usr/bin/etcd is
# missing.
set -u
ETCD_BIN=/usr/bin/etcd
if [ ! -x "$ETCD_BIN" ]; then echo "SKIP: $ETCD_BIN not found"; exit 0; fi
: "${TSR_BUILD_DIR:=$(cd "$(dirname "$0")/../.." && pwd)/build}"
: "${TSR_SOURCE_DIR:=$(cd "$(dirname "$0")/../.." && pwd)}"
: "${TESSERA:=$TSR_BUILD_DIR/cli/tessera}"
COORD=$TSR_BUILD_DIR/coordinator/tessera-coordinator
TMP=$(mktemp -d /tmp/tsr-coord-XXXXXX)
ETCD_PID= C1_PID= C2_PID=
cleanup() {
    for p in $C1_PID $C2_PID; do kill -0 "$p" 2>/dev/null && kill -CONT "$p" 2>/dev/null && kill -KILL "$p"; done
    [ -n "$ETCD_PID" ] && kill -0 "$ETCD_PID" 2>/dev/null && kill -KILL "$ETCD_PID"
    rm -rf "$TMP"
}
trap cleanup EXIT
fails=0
pass() { echo "ok   - $1"; }
fail() { echo "FAIL - $1"; fails=$((fails + 1)); }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# --- etcd
CP=$(free_port); PP=$(free_port)
EP=http://127.0.0.1:$CP
"$ETCD_BIN" --name t --data-dir "$TMP/etcd" --listen-client-urls "$EP" --advertise-client-urls "$EP" \
    --listen-peer-urls "http://127.0.0.1:$PP" --initial-advertise-peer-urls "http://127.0.0.1:$PP" \
    --initial-cluster "t=http://127.0.0.1:$PP" --heartbeat-interval 10 --election-timeout 100 \
    >"$TMP/etcd.log" 2>&1 &
ETCD_PID=$!
for _ in $(seq 100); do curl -s --max-time 1 "$EP/health" | grep -q true && break; sleep 0.1; done
curl -s --max-time 1 "$EP/health" | grep -q true || { fail "etcd did not start"; tail "$TMP/etcd.log"; exit 1; }
pass "etcd up at $EP"

# --- warehouse: one events table with a partition (configs are validated against it)
WH=$TMP/wh
mkdir -p "$WH/t/ev/ds=2024-01-01"
echo '{"user": "string", "v": "long", "ts": "long"}' >"$WH/t/ev/_schema.json"
printf 'user,v,ts\nu1,1,1704067200000\n' >"$WH/t/ev/ds=2024-01-01/part-0.csv"
gb() { # NAME OP
    cat <<JSON
{"metaData": {"name": "$1", "team": "t", "online": 1}, "sources": [{"events": {"table": "t.ev",
 "query": {"selects": {"user": "user", "v": "v"}, "timeColumn": "ts"}}}], "keyColumns": ["user"],
 "aggregations": [{"inputColumn": "v", "operation": "$2"}]}
JSON
}
gb t.a.v1 SUM >"$TMP/a.json"
gb t.b.v1 COUNT >"$TMP/b.json"
gb t.a.v1 COUNT >"$TMP/a_changed.json"

start_coord() { # N: starts replica N, sets C<N>_PID and C<N> (host:port)
    "$COORD" --etcd "$EP" --listen 127.0.0.1:0 --id "c$1" --warehouse "$WH" --lease-ttl 2 \
        --log-format json >"$TMP/c$1.out" 2>"$TMP/c$1.err" &
    eval "C$1_PID=$!"
    local addr=
    for _ in $(seq 100); do
        addr=$(sed -n 's/^grpc=//p' "$TMP/c$1.out" 2>/dev/null)
        [ -n "$addr" ] && break
        sleep 0.1
    done
    [ -n "$addr" ] || { fail "coordinator $1 did not start"; sed 's/^/    | /' "$TMP/c$1.err"; exit 1; }
    eval "C$1=$addr"
}
leader_of() { # prints 1 or 2: the replica whose Status succeeds (the other redirects)
    "$TESSERA" status --server "$C1" --timeout-ms 2000 >/dev/null 2>&1 && { echo 1; return; }
    "$TESSERA" status --server "$C2" --timeout-ms 2000 >/dev/null 2>&1 && { echo 2; return; }
    echo 0
}
wait_leader() { # EXPECT(1|2|any) TIMEOUT_S: waits for a leader, sets LEADER
    local t0=$(date +%s%N)
    LEADER=0
    for _ in $(seq $(($2 * 10))); do
        LEADER=$(leader_of)
        if [ "$LEADER" != 0 ] && { [ "$1" = any ] || [ "$LEADER" = "$1" ]; }; then
            WAITED_MS=$((($(date +%s%N) - t0) / 1000000))
            return 0
        fi
        sleep 0.1
    done
    return 1
}

start_coord 1
start_coord 2
pass "two replicas listening: $C1 $C2"
wait_leader any 10 || { fail "no leader within 10 s"; sed 's/^/    | /' "$TMP/c1.err" | tail; exit 1; }
L=$LEADER; F=$((3 - L))
LADDR=$(eval echo \$C$L); FADDR=$(eval echo \$C$F)
pass "replica $L leads ($LADDR)"

# the follower redirects (UNAVAILABLE naming the leader); the CLI follows it once and says so
"$TESSERA" status --server "$FADDR" --timeout-ms 2000 >"$TMP/out" 2>"$TMP/err"
rc=$?
if [ $rc -eq 0 ] && grep -qF "$FADDR is not the leader; asking the leader $LADDR" "$TMP/err"; then
    pass "follower names the leader and the CLI asks it (exit 0)"
else fail "follower: exit $rc"; sed 's/^/    | /' "$TMP/err"; fi

# configs through the leader
"$TESSERA" apply -f "$TMP/a.json" -f "$TMP/b.json" --server "$LADDR" >"$TMP/out" 2>"$TMP/err" \
    && grep -q "created groupby t.a.v1" "$TMP/out" && pass "apply two configs" \
    || { fail "apply"; sed 's/^/    | /' "$TMP/out" "$TMP/err"; }
"$TESSERA" apply -f "$TMP/a_changed.json" --server "$LADDR" >"$TMP/out" 2>"$TMP/err"
grep -q "different definition" "$TMP/out" "$TMP/err" && pass "a changed GroupBy definition is refused" \
    || { fail "changed definition accepted"; sed 's/^/    | /' "$TMP/out" "$TMP/err"; }

# uploads: the ds partition must exist; without live workers the GroupBy is not assigned
"$TESSERA" upload t.a.v1 --ds 2024-01-05 --server "$LADDR" --timeout-ms 5000 >"$TMP/out" 2>"$TMP/err"
rc=$?
[ $rc -eq 3 ] && grep -q "ds=2024-01-05 is missing" "$TMP/err" && pass "upload of a missing partition: exit 3 naming it" \
    || { fail "upload missing ds: exit $rc"; sed 's/^/    | /' "$TMP/err"; }
"$TESSERA" upload t.a.v1 --ds 2024-01-01 --server "$LADDR" --timeout-ms 5000 >"$TMP/out" 2>"$TMP/err"
rc=$?
[ $rc -eq 4 ] && grep -q "no live workers" "$TMP/err" && pass "upload without workers: exit 4 (no live workers)" \
    || { fail "upload without workers: exit $rc"; sed 's/^/    | /' "$TMP/err"; }

# kill -9 the leader: the other takes over (replica lease = half of --lease-ttl: 1 s)
kill -KILL "$(eval echo \$C${L}_PID)"
wait "$(eval echo \$C${L}_PID)" 2>/dev/null
eval "C${L}_PID="
t0=$(date +%s%N)
took=
for _ in $(seq 100); do
    if "$TESSERA" status --server "$FADDR" --timeout-ms 2000 >/dev/null 2>&1; then took=$((($(date +%s%N) - t0) / 1000000)); break; fi
    sleep 0.1
done
if [ -n "$took" ]; then pass "replica $F took over ${took} ms after kill -9 of the leader"; else
    fail "replica $F did not take over within 10 s"; sed 's/^/    | /' "$TMP/c$F.err" | tail; fi
"$TESSERA" get configs --server "$FADDR" >"$TMP/out" 2>"$TMP/err"
grep -q "t.a.v1" "$TMP/out" && grep -q "t.b.v1" "$TMP/out" && pass "configs survive the failover" \
    || { fail "configs after failover"; sed 's/^/    | /' "$TMP/out" "$TMP/err"; }

# restart the dead replica: it follows
start_coord "$L"
LADDR2=$(eval echo \$C$L)
sleep 0.5
"$TESSERA" status --server "$LADDR2" --timeout-ms 2000 >"$TMP/out" 2>"$TMP/err"
[ $? -eq 0 ] && grep -qF "is not the leader; asking the leader $FADDR" "$TMP/err" && pass "the restarted replica follows" \
    || { fail "restarted replica"; sed 's/^/    | /' "$TMP/err"; }

# fencing: SIGSTOP the leader past its lease; the other takes over; the resumed one refuses
FPID=$(eval echo \$C${F}_PID)
kill -STOP "$FPID"
if wait_leader "$L" 15; then pass "replica $L took over from the paused leader"; else fail "no takeover from a paused leader"; fi
"$TESSERA" apply -f "$TMP/a.json" --server "$LADDR2" >/dev/null 2>&1
kill -CONT "$FPID"
"$TESSERA" apply -f "$TMP/b.json" --server "$FADDR" --timeout-ms 3000 >"$TMP/out" 2>"$TMP/err"
rc=$?
if grep -qF "$FADDR is not the leader; asking the leader $LADDR2" "$TMP/err"; then
    pass "the resumed old leader refuses and names the new one (exit $rc: $(grep -ho 'not the leader[^"]*' "$TMP/err" | head -1))"
else fail "resumed old leader: exit $rc"; sed 's/^/    | /' "$TMP/out" "$TMP/err"; fi
sleep 0.5
[ "$(leader_of)" = "$L" ] && pass "still exactly one leader after the pause" || fail "leader after resume"

# SIGTERM resigns: the other replica leads at once, exit 0
LPID=$(eval echo \$C${L}_PID)
kill -TERM "$LPID"
for _ in $(seq 100); do kill -0 "$LPID" 2>/dev/null || break; sleep 0.1; done
wait "$LPID"; rc=$?
eval "C${L}_PID="
[ $rc -eq 0 ] && pass "SIGTERM: exit 0" || fail "SIGTERM: exit $rc"
if wait_leader "$F" 5; then pass "replica $F leads ${WAITED_MS} ms after the other resigned"; else fail "no leader after resign"; fi

FPID=$(eval echo \$C${F}_PID)
kill -TERM "$FPID"
for _ in $(seq 100); do kill -0 "$FPID" 2>/dev/null || break; sleep 0.1; done
wait "$FPID"; rc=$?
eval "C${F}_PID="
[ $rc -eq 0 ] && pass "the last replica exits 0 after SIGTERM" || fail "last replica: exit $rc"
if grep -l "AddressSanitizer\|LeakSanitizer\|runtime error" "$TMP"/c*.err >/dev/null 2>&1; then
    fail "sanitizer reports in the coordinators' logs"; grep -h -A5 "Sanitizer\|runtime error" "$TMP"/c*.err | head -30
fi
kill -TERM "$ETCD_PID"; for _ in $(seq 50); do kill -0 "$ETCD_PID" 2>/dev/null || break; sleep 0.1; done
wait "$ETCD_PID" 2>/dev/null; ETCD_PID=
if [ $fails -eq 0 ]; then echo "coordinator_etcd: all passed"; exit 0; fi
echo "coordinator_etcd: $fails failed"; exit 1
