#!/usr/bin/env bash
# cluster_backfill.sh — backfill jobs in the cluster (issue 5): a real etcd, the coordinator and
# two tessera-workers; `tessera backfill NAME --server COORD` splits the days into shards run by
# both workers, and the output table equals a local `tessera backfill` of the same days row for
# row (each ds partition's rows compared sorted) — also when one worker is killed -9 while its
# shard runs (the coordinator retries the shard on the other worker once the lease is gone).
# Then the same command against `tessera serve`, remote error exit codes, and a SIGTERM of
# the last worker during a shard (prompt drain; the job fails: no worker left). Then jobs across
# a leader failover (a second coordinator): kill -9 of the leader coordinator mid-backfill and
# mid-upload — the new leader resumes the job, `tessera backfill/upload --server A,B` follows it
# there, and the output equals the run without a fault (backfill: the rows of every partition;
# upload: the part files byte for byte, loaded by every owner). Skipped when
# etcd, the cluster binaries or tessera-datagen are absent. Loopback only; every wait bounded;
# only the processes started here are stopped (by PID).
set -u
: "${TESSERA:?TESSERA must point at the tessera binary}"
: "${TSR_BUILD_DIR:?}" "${TSR_SOURCE_DIR:?}"
WORKER=$TSR_BUILD_DIR/worker/tessera-worker
COORD=${TSR_COORDINATOR:-$TSR_BUILD_DIR/coordinator/tessera-coordinator}
GEN=$TSR_BUILD_DIR/benchmarks/tessera-datagen
ETCD_BIN=/usr/bin/etcd
for b in "$WORKER" "$COORD" "$ETCD_BIN" "$GEN"; do
    [ -x "$b" ] || { echo "cluster_backfill: skipped: $b not built/installed"; exit 0; }
done
TMP=$(mktemp -d /tmp/tsr_cluster_backfill.XXXXXX)
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
# same_rows DIR REF: the same ds partitions, each with the same rows (sorted)
same_rows() {
    local a b d
    a=$(cd "$1" 2>/dev/null && ls -d ds=* | tr '\n' ' ')
    b=$(cd "$2" && ls -d ds=* | tr '\n' ' ')
    [ "$a" = "$b" ] || { echo "    | partitions [$a] vs [$b]"; return 1; }
    for d in $b; do
        cmp -s <(sort "$1/$d"/part-*) <(sort "$2/$d"/part-*) || { echo "    | $d differs"; return 1; }
    done
}

JOIN=$TSR_SOURCE_DIR/examples/joins/payments/checkout_features.v1
NAME=payments.checkout_features.v1
WH=$TMP/wh
OUT=$WH/features/payments_checkout_features_v1
S=2024-01-02 E=2024-01-06
"$GEN" --out "$WH" --events 400000 --left 40000 --keys 2000 --days 6 --quiet >/dev/null \
    || { fail "datagen"; exit 1; }

# ---- the reference: a local backfill
t0=$(date +%s%3N)
"$TESSERA" backfill "$JOIN" --start-ds $S --end-ds $E --warehouse "$WH" --quiet >"$TMP/local.out" 2>&1 \
    && pass "local backfill ($(($(date +%s%3N) - t0)) ms)" || { fail "local backfill"; cat "$TMP/local.out"; exit 1; }
mv "$OUT" "$TMP/ref"
nref=$(cat "$TMP/ref"/ds=*/part-* | wc -l)

# ---- etcd, coordinator (a second one joins for the failover part), 2 workers
CP=$(free_port); PP=$(free_port); EP=http://127.0.0.1:$CP
P1=$(free_port); P2=$(free_port)
"$ETCD_BIN" --name t --data-dir "$TMP/etcd" --listen-client-urls "$EP" --advertise-client-urls "$EP" \
    --listen-peer-urls "http://127.0.0.1:$PP" --initial-advertise-peer-urls "http://127.0.0.1:$PP" \
    --initial-cluster "t=http://127.0.0.1:$PP" --heartbeat-interval 10 --election-timeout 100 \
    >"$TMP/etcd.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do curl -s --max-time 1 "$EP/health" | grep -q true && break; sleep 0.1; done
curl -s --max-time 1 "$EP/health" | grep -q true || { fail "etcd did not start"; exit 1; }
start_coord() { # I PORT: coordinator cI on 127.0.0.1:PORT (logs appended)
    "$COORD" --etcd "$EP" --listen "127.0.0.1:$2" --id "c$1" --warehouse "$WH" --lease-ttl 6 --partitions 4 \
        --log-format json >"$TMP/c$1.out" 2>>"$TMP/c$1.err" &
    PIDS+=($!)
    eval "C$1_PID=$!"
}
start_coord 1 "$P1"
C=
for _ in $(seq 100); do C=$(sed -n 's/^grpc=//p' "$TMP/c1.out" 2>/dev/null); [ -n "$C" ] && break; sleep 0.1; done
[ -n "$C" ] || { fail "coordinator did not start"; tail "$TMP/c1.err"; exit 1; }
start_worker() { # I
    "$WORKER" --coordinator "$C,127.0.0.1:$P2" --listen 127.0.0.1:0 --data-dir "$TMP/w$1" --id "w$1" --warehouse "$WH" \
        --log-format json >"$TMP/w$1.out" 2>>"$TMP/w$1.err" &
    PIDS+=($!)
    eval "W$1_PID=$!"
}
start_worker 1
start_worker 2
for i in 1 2; do
    wait_log "$TMP/w$i.err" "registered as w$i" 200 && pass "worker $i registered" \
        || { fail "worker $i did not register"; tail "$TMP/w$i.err"; }
done
for _ in $(seq 50); do "$TESSERA" status --server "$C" --timeout-ms 2000 >/dev/null 2>&1 && break; sleep 0.1; done
"$TESSERA" apply -f "$JOIN" --server "$C" >"$TMP/apply.out" 2>&1 && pass "apply the Join" \
    || { fail "apply"; cat "$TMP/apply.out"; }

# ---- remote errors
"$TESSERA" backfill no.such.config --start-ds $S --end-ds $E --server "$C" >/dev/null 2>"$TMP/err"; rc=$?
[ $rc -eq 3 ] && grep -q "no.such.config" "$TMP/err" && pass "unknown config: exit 3" \
    || { fail "unknown config: exit $rc"; cat "$TMP/err"; }
"$TESSERA" backfill $NAME --start-ds $S --end-ds 2024-01-09 --server "$C" >/dev/null 2>"$TMP/err"; rc=$?
[ $rc -eq 3 ] && grep -q "ds=2024-01-07" "$TMP/err" && pass "missing input partition: exit 3, named" \
    || { fail "missing partition: exit $rc"; cat "$TMP/err"; }
"$TESSERA" backfill $NAME --start-ds $S --end-ds $E --server "$C" --parallelism 2 >/dev/null 2>"$TMP/err"; rc=$?
[ $rc -eq 2 ] && pass "a local-only option with --server: usage error (2)" || fail "local-only option: exit $rc"
[ -d "$OUT" ] && fail "a refused backfill wrote output" || pass "refused backfills wrote nothing"

# ---- a cluster backfill equals the local one
"$TESSERA" backfill $NAME --start-ds $S --end-ds $E --server "$C" --timeout-ms 120000 >"$TMP/bf1.out" 2>"$TMP/bf1.err"; rc=$?
[ $rc -eq 0 ] && grep -q "$nref rows in 5 partitions (4 shards) written to $OUT" "$TMP/bf1.out" \
    && pass "cluster backfill: exit 0, $nref rows, 4 shards" || { fail "cluster backfill: exit $rc"; cat "$TMP/bf1.out" "$TMP/bf1.err"; grep -i "job\|backfill" "$TMP/c1.err" | tail -5; }
sed 's/^/    | /' "$TMP/bf1.out"
for i in 1 2; do
    n=$(grep -c "backfill shard .* rows in" "$TMP/w$i.err")
    [ "$n" -eq 2 ] && pass "worker $i ran 2 shards" || fail "worker $i ran $n shards"
done
same_rows "$OUT" "$TMP/ref" && pass "cluster output equals the local backfill (sorted rows per partition)" \
    || fail "cluster output differs from the local backfill"

# ---- kill -9 of a worker while its shard runs: the shard is retried on the other worker
rm -rf "$OUT"
q1=$(grep -c "queued" "$TMP/w1.err")
d1=$(grep -c "backfill shard .* rows in" "$TMP/w1.err")
"$TESSERA" backfill $NAME --start-ds $S --end-ds $E --server "$C" --timeout-ms 120000 >"$TMP/bf2.out" 2>"$TMP/bf2.err" &
BF=$!
PIDS+=($BF)
for _ in $(seq 200); do [ "$(grep -c "queued" "$TMP/w1.err")" -gt "$q1" ] && break; sleep 0.05; done
sleep 0.3
kill -KILL "$W1_PID"
wait "$W1_PID" 2>/dev/null
d1b=$(grep -c "backfill shard .* rows in" "$TMP/w1.err")
[ "$d1b" -lt $((d1 + 2)) ] && pass "worker 1 killed -9 with a shard unfinished ($((d1b - d1)) of 2 done)" \
    || fail "worker 1 finished both shards before the kill (no retry exercised)"
for _ in $(seq 1200); do kill -0 $BF 2>/dev/null || break; sleep 0.05; done
if kill -0 $BF 2>/dev/null; then fail "backfill still running 60 s after the kill"; rc=99
else wait $BF; rc=$?; fi
[ $rc -eq 0 ] && grep -q "$nref rows in 5 partitions" "$TMP/bf2.out" && pass "backfill with a killed worker: exit 0" \
    || { fail "backfill with a killed worker: exit $rc"; cat "$TMP/bf2.out" "$TMP/bf2.err"; }
grep -q "retrying on w2" "$TMP/c1.err" && pass "the coordinator retried the lost shard on worker 2" \
    || { fail "no retry logged"; grep -i "job" "$TMP/c1.err" | tail -5; }
same_rows "$OUT" "$TMP/ref" && pass "output after the kill equals the local backfill" \
    || fail "output after the kill differs from the local backfill"

# ---- the same command against tessera serve (in-process)
rm -rf "$OUT"
"$TESSERA" serve --data-dir "$TMP/serve" --warehouse "$WH" --grpc-port 0 --http-port -1 \
    >"$TMP/serve.out" 2>"$TMP/serve.err" &
SP=$!
PIDS+=($SP)
G=
for _ in $(seq 200); do G=$(sed -n 's/^grpc=//p' "$TMP/serve.out" 2>/dev/null); [ -n "$G" ] && break; sleep 0.1; done
if [ -z "$G" ]; then fail "serve did not start"; tail "$TMP/serve.err"; else
    "$TESSERA" apply -f "$JOIN" --server "$G" >/dev/null 2>&1 || fail "apply on serve"
    "$TESSERA" backfill $NAME --start-ds $S --end-ds $E --server "$G" --timeout-ms 120000 >"$TMP/bf3.out" 2>"$TMP/bf3.err"; rc=$?
    [ $rc -eq 0 ] && grep -q "$nref rows in 5 partitions (1 shards)" "$TMP/bf3.out" && pass "backfill on tessera serve: exit 0" \
        || { fail "backfill on serve: exit $rc"; cat "$TMP/bf3.out" "$TMP/bf3.err"; }
    sed 's/^/    | /' "$TMP/bf3.out"
    same_rows "$OUT" "$TMP/ref" && pass "serve's output equals the local backfill" || fail "serve's output differs"
    "$TESSERA" backfill no.such.config --start-ds $S --end-ds $E --server "$G" >/dev/null 2>&1; rc=$?
    [ $rc -eq 3 ] && pass "serve: unknown config exit 3" || fail "serve: unknown config exit $rc"
    kill -TERM $SP
    for _ in $(seq 400); do kill -0 $SP 2>/dev/null || break; sleep 0.05; done
    if kill -0 $SP 2>/dev/null; then fail "serve still running 20 s after SIGTERM"
    else wait $SP; rc=$?; [ $rc -eq 0 ] && pass "serve: SIGTERM exit 0" || { fail "serve: exit $rc"; tail -20 "$TMP/serve.err"; }; fi
fi

# ---- SIGTERM of the last worker while its shard runs: it drains promptly; the job fails
q2=$(grep -c "queued" "$TMP/w2.err")
"$TESSERA" backfill $NAME --start-ds $S --end-ds $E --server "$C" --timeout-ms 60000 >"$TMP/bf4.out" 2>"$TMP/bf4.err" &
BF=$!
PIDS+=($BF)
for _ in $(seq 200); do [ "$(grep -c "queued" "$TMP/w2.err")" -gt "$q2" ] && break; sleep 0.05; done
sleep 0.3
t0=$(date +%s%3N)
kill -TERM "$W2_PID"
for _ in $(seq 200); do kill -0 "$W2_PID" 2>/dev/null || break; sleep 0.05; done
if kill -0 "$W2_PID" 2>/dev/null; then fail "worker 2 still running 10 s after SIGTERM during a backfill shard"
else wait "$W2_PID"; rc=$?; [ $rc -eq 0 ] && pass "worker 2 drained during a shard in $(($(date +%s%3N) - t0)) ms (exit 0)" \
    || fail "worker 2: exit $rc"; fi
for _ in $(seq 400); do kill -0 $BF 2>/dev/null || break; sleep 0.05; done
if kill -0 $BF 2>/dev/null; then fail "backfill still running 20 s after the last worker left"
else wait $BF; rc=$?
    [ $rc -eq 1 ] && grep -q "no worker is left" "$TMP/bf4.err" && pass "with no worker left the backfill fails (exit 1), saying so" \
        || { fail "backfill without workers: exit $rc"; cat "$TMP/bf4.err"; }
fi

# ---- jobs across a failover of the leader coordinator (kill -9 mid-backfill, mid-upload)
SLOW=${TSR_TEST_SLOW:-1}     # multiplies the bounds of this part (e.g. 10 for sanitizer builds)
start_coord 2 "$P2"
C2=
for _ in $(seq 100); do C2=$(sed -n 's/^grpc=//p' "$TMP/c2.out" 2>/dev/null); [ -n "$C2" ] && break; sleep 0.1; done
[ -n "$C2" ] || { fail "coordinator 2 did not start"; tail "$TMP/c2.err"; }
wait_log "$TMP/c2.err" "c2" 100 >/dev/null
start_worker 1
start_worker 2
for i in 1 2; do
    for _ in $(seq 200); do [ "$(grep -c "registered as w$i" "$TMP/w$i.err")" -ge 2 ] && break; sleep 0.05; done
done
for _ in $(seq 100); do
    [ "$("$TESSERA" get workers -o json --server "$C" --timeout-ms 2000 2>/dev/null | grep -o '"id"' | wc -l)" -eq 2 ] && break
    sleep 0.1
done
# kill_leader_when_queued LOGS... : once every worker log has a new "queued" line, kill -9 the
# leader (c1 or c2, from the logs) a moment later; sets KILLED (its number)
kill_leader_when_queued() {
    local q=() i f n
    for f in "$TMP/w1.err" "$TMP/w2.err"; do q+=("$(grep -c "queued" "$f")"); done
    for _ in $(seq $((400 * SLOW))); do
        n=0
        i=0
        for f in "$TMP/w1.err" "$TMP/w2.err"; do [ "$(grep -c "queued" "$f")" -gt "${q[$i]}" ] && n=$((n + 1)); i=$((i + 1)); done
        [ $n -eq 2 ] && break
        sleep 0.05
    done
    sleep 0.3
    # the leader: the replica whose log names the highest epoch it leads at
    local e1 e2
    e1=$(grep -o "leader at epoch [0-9]*" "$TMP/c1.err" | awk '{print $4}' | sort -n | tail -1)
    e2=$(grep -o "leader at epoch [0-9]*" "$TMP/c2.err" | awk '{print $4}' | sort -n | tail -1)
    if [ "${e1:-0}" -gt "${e2:-0}" ]; then KILLED=1; else KILLED=2; fi
    kill -KILL "$(eval echo \$C${KILLED}_PID)"
    wait "$(eval echo \$C${KILLED}_PID)" 2>/dev/null
}
strip_time() { sed 's/ in [0-9.]* s$//' "$1"; }
ALL="127.0.0.1:$P1,127.0.0.1:$P2"

rm -rf "$OUT"
dn=$(cat "$TMP/w1.err" "$TMP/w2.err" | grep -c "backfill shard .* rows in")
"$TESSERA" backfill $NAME --start-ds $S --end-ds $E --server "$ALL" --timeout-ms $((120000 * SLOW)) >"$TMP/bf5.out" 2>"$TMP/bf5.err" &
BF=$!
PIDS+=($BF)
kill_leader_when_queued
dk=$(cat "$TMP/w1.err" "$TMP/w2.err" | grep -c "backfill shard .* rows in")
[ "$((dk - dn))" -lt 4 ] && pass "leader c$KILLED killed -9 mid-backfill ($((dk - dn)) of 4 shards done)" \
    || fail "every shard finished before the leader was killed (no resume exercised)"
# once the other replica leads, the killed one is restarted at its address (as an operator
# would; soon, so that the workers' channels to that address are not deep in gRPC's reconnect
# backoff when it must take over in the upload part)
NEW=$((3 - KILLED))
for _ in $(seq $((300 * SLOW))); do grep -q "resuming backfill" "$TMP/c$NEW.err" && break; sleep 0.05; done
start_coord "$KILLED" "$(eval echo \$P$KILLED)"
for _ in $(seq $((1200 * SLOW))); do kill -0 $BF 2>/dev/null || break; sleep 0.05; done
if kill -0 $BF 2>/dev/null; then fail "backfill still running $((60 * SLOW)) s after the leader was killed"; rc=99
else wait $BF; rc=$?; fi
[ $rc -eq 0 ] && [ "$(strip_time "$TMP/bf5.out")" = "$(strip_time "$TMP/bf1.out")" ] \
    && pass "backfill across the leader kill: exit 0, the same summary as without a fault" \
    || { fail "backfill across the leader kill: exit $rc"; cat "$TMP/bf5.out" "$TMP/bf5.err"; }
sed 's/^/    | /' "$TMP/bf5.out"
NEW=$((3 - KILLED))
grep -q "resuming backfill" "$TMP/c$NEW.err" && pass "the new leader c$NEW resumed the backfill job" \
    || { fail "c$NEW did not resume the job"; grep -i "job" "$TMP/c$NEW.err" | tail -5; }
grep -q "following job" "$TMP/bf5.err" && pass "the CLI followed the job to the new leader" \
    || { fail "the CLI did not say it followed the job"; cat "$TMP/bf5.err"; }
same_rows "$OUT" "$TMP/ref" && pass "output after the leader kill equals the local backfill" \
    || fail "output after the leader kill differs from the local backfill"

# upload: with a failover (the workers load the batch for the first time) and without one
# (the same ds again: the same part files)
UDS=2024-01-05
UPL=$WH/_tessera/uploads
"$TESSERA" upload "$JOIN" --ds $UDS --server "$ALL" --timeout-ms $((120000 * SLOW)) >"$TMP/up1.out" 2>"$TMP/up1.err" &
UP=$!
PIDS+=($UP)
kill_leader_when_queued
for _ in $(seq $((1200 * SLOW))); do kill -0 $UP 2>/dev/null || break; sleep 0.05; done
if kill -0 $UP 2>/dev/null; then fail "upload still running $((60 * SLOW)) s after the leader was killed"; rc=99
else wait $UP; rc=$?; fi
NEW=$((3 - KILLED))
[ $rc -eq 0 ] && grep -q "^uploaded $NAME" "$TMP/up1.out" && pass "upload across the leader kill (c$KILLED): exit 0" \
    || { fail "upload across the leader kill: exit $rc"; cat "$TMP/up1.out" "$TMP/up1.err"; grep -i "job" "$TMP/c$NEW.err" | tail -5; }
sed 's/^/    | /' "$TMP/up1.out"
st=$(grep -o "resuming upload [^(]*([a-z]*)" "$TMP/c$NEW.err" | tail -1)
[ -n "$st" ] && pass "the new leader c$NEW resumed the upload job: $st" || fail "c$NEW did not resume the upload"
B=$(( ($(date -ud "$UDS" +%s) + 86400) * 1000 ))
loaded=$("$TESSERA" get partitions -o json --server "$ALL" --timeout-ms 5000 2>/dev/null | /usr/bin/python3 -c "
import json,sys
p=[x for x in json.load(sys.stdin) if x.get('partition',-1)>=0]
print(sum(1 for x in p if int(x.get('batchEndMillis',0))==$B), len(p))")
[ -n "$loaded" ] && [ "${loaded% *}" = "${loaded#* }" ] && pass "every owned partition serves the batch ($loaded)" \
    || fail "not every partition loaded the batch: $loaded"
mv "$UPL" "$TMP/up_failover"
"$TESSERA" upload "$JOIN" --ds $UDS --server "$ALL" --timeout-ms $((120000 * SLOW)) >"$TMP/up2.out" 2>"$TMP/up2.err"; rc=$?
[ $rc -eq 0 ] && [ "$(strip_time "$TMP/up2.out")" = "$(strip_time "$TMP/up1.out")" ] \
    && pass "upload without a fault: the same summary (keys, GroupBys)" \
    || { fail "upload without a fault: exit $rc"; cat "$TMP/up1.out" "$TMP/up2.out" "$TMP/up2.err"; }
nf=$(find "$UPL" -name 'part-*' | wc -l)
diff -r "$UPL" "$TMP/up_failover" >/dev/null && [ "$nf" -gt 0 ] \
    && pass "the part files written across the failover equal those without ($nf files)" \
    || { fail "part files differ"; diff -rq "$UPL" "$TMP/up_failover" | head -5; }

[ $fails -eq 0 ] || { echo "cluster_backfill: $fails failed"; exit 1; }
echo "cluster_backfill: all passed"
