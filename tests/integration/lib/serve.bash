# lib/serve.bash — shared by the serve_*.sh integration tests: a temp dir, bounded waits, and
# starting/stopping dev-kafka and tessera serve by PID. Source it after setting TESSERA,
# TSR_SOURCE_DIR, TSR_BUILD_DIR.
TMP=$(mktemp -d /tmp/tsr-serve-XXXXXX)
BOOTSTRAP= GRPC= HTTP=
BROKER_PID= SERVE_PID=
cleanup() {
    for p in $SERVE_PID $BROKER_PID; do kill -0 "$p" 2>/dev/null && kill -KILL "$p"; done
    rm -rf "$TMP"
}
trap cleanup EXIT
fails=0
pass() { echo "ok   - $1"; }
fail() { echo "FAIL - $1"; fails=$((fails + 1)); }
# expect NAME WANT_EXIT CMD...: runs CMD, output in $TMP/out and $TMP/err
expect() {
    local name=$1 want=$2
    shift 2
    "$@" >"$TMP/out" 2>"$TMP/err"
    local rc=$?
    if [ "$rc" -eq "$want" ]; then pass "$name (exit $rc)"; else
        fail "$name: exit $rc, expected $want"; sed 's/^/    | /' "$TMP/err" | head -20; fi
}
has() {
    if grep -qF -- "$2" "$TMP/$1"; then pass "$3"; else
        fail "$3: [$2] not in $1"; sed 's/^/    | /' "$TMP/$1" | head -10; fi
}
metric() { # NAME: sum of a metric's samples on /metrics
    curl -s --max-time 5 "http://$HTTP/metrics" | awk -v n="$1" '$1 ~ "^"n"({|$)" {s += $2} END {print s + 0}'
}
start_serve() { # starts tessera serve on DATA, sets SERVE_PID, GRPC, HTTP (waits <= 20 s)
    "$TESSERA" serve --data-dir "$TMP/data" --warehouse "$WH" --grpc-port 0 --http-port 0 \
        --kafka-bootstrap "$BOOTSTRAP" >"$TMP/serve.out" 2>>"$TMP/serve.err" &
    SERVE_PID=$!
    GRPC= HTTP=
    for _ in $(seq 200); do
        GRPC=$(sed -n 's/^grpc=//p' "$TMP/serve.out" 2>/dev/null)
        HTTP=$(sed -n 's/^http=//p' "$TMP/serve.out" 2>/dev/null)
        [ -n "$GRPC" ] && [ -n "$HTTP" ] && break
        kill -0 "$SERVE_PID" 2>/dev/null || break
        sleep 0.1
    done
    if [ -z "$GRPC" ]; then fail "serve did not start"; sed 's/^/    | /' "$TMP/serve.err"; exit 1; fi
}
stop_serve() { # SIGTERM, wait <= 20 s, expect exit 0
    kill -TERM "$SERVE_PID"
    for _ in $(seq 200); do kill -0 "$SERVE_PID" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$SERVE_PID" 2>/dev/null; then fail "$1: serve still running 20 s after SIGTERM"; return; fi
    wait "$SERVE_PID"
    local rc=$?
    SERVE_PID=
    if [ "$rc" -eq 0 ]; then pass "$1: serve exits 0 after SIGTERM"; else fail "$1: serve exit $rc"; fi
}
wait_consumed() { # N: waits <= 60 s until N messages were consumed
    local n
    for _ in $(seq 600); do
        n=$(metric tessera_ingest_messages_total)
        [ "$n" -ge "$1" ] && return 0
        sleep 0.1
    done
    fail "only $n of $1 messages consumed in 60 s"
    return 1
}

start_broker() { # ARGS...: starts dev-kafka, sets BROKER_PID and BOOTSTRAP (waits <= 10 s)
    "$TESSERA" dev-kafka "$@" >"$TMP/broker.out" 2>"$TMP/broker.err" &
    BROKER_PID=$!
    BOOTSTRAP=
    for _ in $(seq 100); do
        BOOTSTRAP=$(head -n 1 "$TMP/broker.out" 2>/dev/null)
        [ -n "$BOOTSTRAP" ] && break
        sleep 0.1
    done
    [ -n "$BOOTSTRAP" ] || { fail "dev-kafka did not start"; exit 1; }
}
stop_broker() {
    kill -TERM "$BROKER_PID"
    for _ in $(seq 100); do kill -0 "$BROKER_PID" 2>/dev/null || break; sleep 0.1; done
    wait "$BROKER_PID" 2>/dev/null
    BROKER_PID=
}
