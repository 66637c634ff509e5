#!/usr/bin/env bash
# kafka_cli.sh — integration test of `tessera dev-kafka`, `tessera produce` and `tessera
# consume`: starts the mock broker in the background, reads its bootstrap line (bounded
# wait), produces a JSON Lines file keyed by a column, consumes it back and compares, checks
# bad-line handling, usage errors and an unreachable broker, then stops the broker with
# SIGTERM by PID and checks it exits 0. Needs $TESSERA; loopback only; every wait bounded.
set -u
: "${TESSERA:?TESSERA must point at the tessera binary}"
TMP=$(mktemp -d)
BROKER_PID=
cleanup() {
    if [ -n "$BROKER_PID" ] && kill -0 "$BROKER_PID" 2>/dev/null; then kill -KILL "$BROKER_PID"; fi
    rm -rf "$TMP"
}
trap cleanup EXIT
fails=0
pass() { echo "ok   - $1"; }
fail() { echo "FAIL - $1"; fails=$((fails + 1)); }
run() {
    local name=$1 want=$2
    shift 2
    "$@" >"$TMP/out" 2>"$TMP/err"
    local rc=$?
    if [ "$rc" -eq "$want" ]; then pass "$name (exit $rc)"; else
        fail "$name: exit $rc, expected $want"; sed 's/^/    | /' "$TMP/err" | head -20; fi
}
has() {
    if grep -qF -- "$2" "$TMP/$1"; then pass "$3"; else
        fail "$3: [$2] not in $1"; sed 's/^/    | /' "$TMP/$1" | head -20; fi
}
# start_broker ARGS...: starts dev-kafka, sets BROKER_PID and BOOTSTRAP (waits <= 10 s).
start_broker() {
    "$TESSERA" dev-kafka "$@" >"$TMP/broker.out" 2>"$TMP/broker.err" &
    BROKER_PID=$!
    BOOTSTRAP=
    for _ in $(seq 100); do
        BOOTSTRAP=$(head -n 1 "$TMP/broker.out" 2>/dev/null)
        [ -n "$BOOTSTRAP" ] && break
        kill -0 "$BROKER_PID" 2>/dev/null || break
        sleep 0.1
    done
}
# stop_broker NAME: SIGTERM, wait <= 10 s, expect exit 0.
stop_broker() {
    kill -TERM "$BROKER_PID"
    for _ in $(seq 100); do kill -0 "$BROKER_PID" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$BROKER_PID" 2>/dev/null; then fail "$1: still running 10 s after SIGTERM"; return; fi
    wait "$BROKER_PID"
    local rc=$?
    BROKER_PID=
    if [ "$rc" -eq 0 ]; then pass "$1: exit 0 after SIGTERM"; else fail "$1: exit $rc after SIGTERM"; fi
}

# ---- help and usage ---------------------------------------------------------------------------
run "--help lists the kafka commands" 0 "$TESSERA" --help
has out "dev-kafka" "--help lists dev-kafka"
has out "produce" "--help lists produce"
run "dev-kafka --help" 0 "$TESSERA" dev-kafka --help
has out "first line of stdout" "dev-kafka --help explains the bootstrap line"
run "produce --help" 0 "$TESSERA" produce --help
run "consume --help" 0 "$TESSERA" consume --help
run "dev-kafka --partitions 0" 2 "$TESSERA" dev-kafka --partitions 0
has err "--partitions must be" "dev-kafka bad partitions says why"
run "dev-kafka --bogus" 2 "$TESSERA" dev-kafka --bogus 1
run "dev-kafka bad topic name" 1 "$TESSERA" dev-kafka --topic "no spaces"
has err "bad topic name" "dev-kafka bad topic says why"
run "produce without --topic" 2 "$TESSERA" produce --file x.jsonl
run "produce without --file" 2 "$TESSERA" produce --topic t
run "consume without --topic" 2 "$TESSERA" consume --max 1
run "produce missing file" 3 "$TESSERA" produce --topic t --file "$TMP/nope.jsonl" --bootstrap 127.0.0.1:1
has err "nope.jsonl" "produce missing file names it"

# ---- an unreachable broker fails with exit 4 within the connect timeout -----------------------
printf '{"a":1}\n' >"$TMP/one.jsonl"
start=$(date +%s)
run "produce to a dead broker" 4 "$TESSERA" produce --topic t --file "$TMP/one.jsonl" --bootstrap 127.0.0.1:1
has err "127.0.0.1:1" "dead broker error names the address"
[ $(( $(date +%s) - start )) -le 15 ] && pass "dead broker fails within 15 s" || fail "dead broker took too long"

# ---- a broker with a 3-partition topic --------------------------------------------------------
start_broker --partitions 3 --topic events
if [ -z "$BOOTSTRAP" ]; then
    fail "dev-kafka printed no bootstrap line in 10 s"; sed 's/^/    | /' "$TMP/broker.err"
    exit 1
fi
case "$BOOTSTRAP" in 127.0.0.1:[0-9]*) pass "bootstrap line $BOOTSTRAP";; *) fail "bootstrap line '$BOOTSTRAP'";; esac

N=500
for i in $(seq 0 $((N - 1))); do
    printf '{"user":"u%d","ts":%d,"amount":%d.5}\n' $((i % 17)) $((1700000000000 + i)) "$i"
done >"$TMP/events.jsonl"
run "produce $N rows keyed by user" 0 "$TESSERA" produce --topic events --file "$TMP/events.jsonl" --bootstrap "$BOOTSTRAP" --key-column user
has out "produced $N messages to topic 'events' (3 partitions)" "produce reports the count"

run "consume them back" 0 "$TESSERA" consume --topic events --bootstrap "$BOOTSTRAP" --from-beginning --max $N --timeout-ms 5000
cp "$TMP/out" "$TMP/consumed.jsonl"
[ "$(wc -l <"$TMP/consumed.jsonl")" -eq $N ] && pass "consumed $N messages" || fail "consumed $(wc -l <"$TMP/consumed.jsonl") messages, expected $N"
# every produced row comes back once, as the message value
/usr/bin/python3 - "$TMP/events.jsonl" "$TMP/consumed.jsonl" >"$TMP/check" 2>&1 <<'PY'
import json, sys
sent = [json.loads(l) for l in open(sys.argv[1])]
got = [json.loads(l) for l in open(sys.argv[2])]
vals = sorted(json.dumps(m["value"], sort_keys=True) for m in got)
want = sorted(json.dumps(r, sort_keys=True) for r in sent)
assert vals == want, "values differ"
part = {}
for m in got:
    assert m["key"] == m["value"]["user"], ("key", m)
    assert part.setdefault(m["key"], m["partition"]) == m["partition"], ("key on two partitions", m)
offs = {}
for m in got:
    offs.setdefault(m["partition"], []).append(m["offset"])
for p, o in offs.items():
    assert sorted(o) == list(range(len(o))), ("offsets not contiguous", p)
assert len(offs) == 3, "all 3 partitions used"
print("checked")
PY
grep -q checked "$TMP/check" && pass "values, keys, key->partition and offsets agree" || { fail "consumed messages differ"; sed 's/^/    | /' "$TMP/check"; }

# bad lines: strict by default (stops at the first), lenient with --max-bad-lines
printf '{"user":"a"}\nnot json\n[1,2]\n{"other":1}\n\n{"user":"b"}\n' >"$TMP/mixed.jsonl"
run "produce stops at the first bad line" 1 "$TESSERA" produce --topic mixed --file "$TMP/mixed.jsonl" --bootstrap "$BOOTSTRAP" --key-column user
has err "mixed.jsonl:2: invalid JSON" "bad line reported as file:line"
run "produce skips bad lines with --max-bad-lines" 0 "$TESSERA" produce --topic mixed2 --file "$TMP/mixed.jsonl" --bootstrap "$BOOTSTRAP" --key-column user --max-bad-lines 10
has err "mixed.jsonl:3: not a JSON object (skipped)" "non-object line reported"
has err "mixed.jsonl:4: key column 'user' is missing (skipped)" "missing key column reported"
has out "produced 2 messages" "good lines were sent"
has out "3 bad lines skipped" "bad lines counted"
run "consume mixed2 from one partition set" 0 "$TESSERA" consume --topic mixed2 --bootstrap "$BOOTSTRAP" --from-beginning --max 2 --timeout-ms 5000
[ "$(wc -l <"$TMP/out")" -eq 2 ] && pass "2 messages in mixed2" || fail "mixed2 has $(wc -l <"$TMP/out") messages"
run "consume unknown partition" 3 "$TESSERA" consume --topic events --bootstrap "$BOOTSTRAP" --partition 9 --max 1 --timeout-ms 100
# TESSERA_KAFKA is the default bootstrap
TESSERA_KAFKA="$BOOTSTRAP" run "produce from stdin with \$TESSERA_KAFKA" 0 "$TESSERA" produce --topic events --file - <"$TMP/one.jsonl"
has out "produced 1 messages" "stdin produce counted"
stop_broker "dev-kafka"

# ---- --port: bootstrap through a fixed port ---------------------------------------------------
PORT=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
start_broker --port "$PORT"
[ "$BOOTSTRAP" = "127.0.0.1:$PORT" ] && pass "--port prints 127.0.0.1:$PORT" || fail "--port printed '$BOOTSTRAP'"
run "produce through --port" 0 "$TESSERA" produce --topic p --file "$TMP/events.jsonl" --bootstrap "$BOOTSTRAP"
has out "(4 partitions)" "auto-created topic has 4 partitions"
run "consume through --port" 0 "$TESSERA" consume --topic p --bootstrap "$BOOTSTRAP" --from-beginning --max $N --timeout-ms 5000
[ "$(wc -l <"$TMP/out")" -eq $N ] && pass "consumed $N through --port" || fail "consumed $(wc -l <"$TMP/out") through --port"
stop_broker "dev-kafka --port"

echo "$fails failed"
[ "$fails" -eq 0 ]
