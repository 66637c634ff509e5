#!/usr/bin/env bash
# worker_cli.sh — the `tessera-worker` daemon's command line: --help, usage errors (exit 2), a
# worker whose coordinator is unreachable still listens and prints grpc=HOST:PORT, keeps its id
# in the data dir across restarts, and drains on SIGTERM with exit 0. The protocol itself is
# tested in tests/unit/test_worker.c against a fake coordinator.
# Loopback only; every wait bounded; only the processes started here are stopped, by PID.
set -u
: "${TSR_BUILD_DIR:?}"
W="$TSR_BUILD_DIR/worker/tessera-worker"
if [ ! -x "$W" ]; then echo "worker_cli: skipped: $W not built"; exit 0; fi
TMP=$(mktemp -d /tmp/tsr_worker_cli.XXXXXX)
fails=0
PID=""
cleanup() {
    [ -n "$PID" ] && kill -KILL "$PID" 2>/dev/null
    rm -rf "$TMP"
}
trap cleanup EXIT
pass() { echo "ok   - $1"; }
fail() { echo "FAIL - $1"; fails=$((fails + 1)); }

"$W" --help >"$TMP/help" 2>&1 && grep -q -- "--coordinator" "$TMP/help" && pass "--help" || fail "--help"
"$W" --listen 127.0.0.1:0 >/dev/null 2>&1; rc=$?
[ $rc -eq 2 ] && pass "missing flags: exit 2" || fail "missing flags: exit $rc"
"$W" --bogus x >/dev/null 2>&1; rc=$?
[ $rc -eq 2 ] && pass "unknown flag: exit 2" || fail "unknown flag: exit $rc"

run_once() { # starts a worker, waits for grpc=, SIGTERM, expects exit 0 within 10 s
    "$W" --coordinator 127.0.0.1:1,127.0.0.1:2 --listen 127.0.0.1:0 --data-dir "$TMP/data" \
        --warehouse "$TMP/wh" --log-format json >"$TMP/out" 2>"$TMP/err" &
    PID=$!
    for _ in $(seq 200); do grep -q '^grpc=' "$TMP/out" 2>/dev/null && break; sleep 0.05; done
    grep -q '^grpc=127.0.0.1:[0-9]*$' "$TMP/out" && pass "prints grpc=HOST:PORT" || fail "no grpc= line"
    sleep 0.5
    kill -TERM "$PID"
    for _ in $(seq 200); do kill -0 "$PID" 2>/dev/null || break; sleep 0.05; done
    if kill -0 "$PID" 2>/dev/null; then
        fail "still running 10 s after SIGTERM"
    else
        wait "$PID"; rc=$?
        [ $rc -eq 0 ] && pass "SIGTERM: exit 0" || fail "SIGTERM: exit $rc"
    fi
    PID=""
    head -1 "$TMP/err" | grep -q '^{"ts":' && pass "JSON log lines" || fail "log is not JSON: $(head -1 "$TMP/err")"
}
run_once
ID1=$(cat "$TMP/data/worker-id" 2>/dev/null)
[ -n "$ID1" ] && pass "worker id kept in the data dir ($ID1)" || fail "no worker-id file"
run_once
ID2=$(cat "$TMP/data/worker-id" 2>/dev/null)
[ "$ID1" = "$ID2" ] && pass "same id after a restart" || fail "id changed: $ID1 -> $ID2"

[ $fails -eq 0 ] || { echo "worker_cli: $fails failed"; exit 1; }
echo "worker_cli: all passed"
