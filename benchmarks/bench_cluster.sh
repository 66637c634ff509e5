#!/usr/bin/env bash
# bench_cluster.sh — issue 5's cluster benchmarks (docs/benchmarks-cluster.md), each with its
# single-process baseline (`tessera serve`) measured in the same run, on loopback with the real
# binaries (build dir: --build, default build/) and a real etcd (scripts/local-cluster.sh):
#
#   a. fetch: bench_fetch's open-loop FetchJoin phase (same Join of 10 GroupBys x 9 features,
#      same tessera-datagen data, same rate) against `tessera serve` (bench_fetch's own setup)
#      and against a tessera-fetcher in front of 3 workers (bench_fetch --attach: the same
#      setup through the coordinator, events produced keyed by user_id); p50/p99 and the p99
#      ratio cluster/single. Then the floor of that ratio on this machine: bench_hop, an echo
#      server called directly and through a proxy doing nothing but tsr_rpc_call_fanout (the
#      fetcher's path), alternating every second at the same rate; its p99 ratio is what one
#      more hop costs when the fetch itself costs nothing.
#   b. failover (on the cluster of a): kill -9 the worker owning a probe key; times until
#      `tessera get partitions` shows none of its partitions on it (reassigned) and until a
#      FetchJoin of the probe key through the fetcher answers the value it had before the kill.
#   c. upload: a batch GroupBy (COUNT/SUM/AVERAGE of amount, 30d) over a generated table of
#      --upload-keys distinct keys (default 1M, one row each); `tessera upload` time through
#      `tessera serve` (in-process) and through a 3-worker cluster (shards, part files, commit),
#      plus until every partition's owner reports the upload loaded.
#   d. ingest: bench_fetch's ingest phase (--ingest-events events in a fresh topic of
#      --ingest-partitions partitions, produced BEFORE the streaming GroupBy is applied; apply ->
#      all consumed) on `tessera serve` and on clusters of 1, 2, 3 workers (bench_fetch --attach
#      --cpu-pids = the workers): events/s and events per worker CPU-second.
#
#   benchmarks/bench_cluster.sh [--quick] [--runs N] [--parts a,b,c,d] [--build DIR]
#       [--rate R] [--seconds S] [--lease-ttl S] [--upload-keys N] [--ingest-events N]
#       [--ingest-partitions N] [--keep]
#
# --quick: 1 run, 5 s fetch phases, 200k upload keys, 200k ingest events (~2-3 minutes).
# Prints one table (medians over --runs for a and b) and a final `SUMMARY bench_cluster k=v ...`.
# Every process started here is stopped by PID (clusters with local-cluster.sh down, which stops
# exactly what it started); every wait is bounded; the temp dir is removed unless --keep.
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=$ROOT/build
RUNS=3
PARTS=a,b,c,d
RATE=500
SECONDS_F=10
TTL=5
C_TTL=10
UPLOAD_KEYS=1000000
ING_EVENTS=1000000
ING_PARTS=64
KEEP=0
QUICK=0
while [ $# -gt 0 ]; do
    case "$1" in
    --quick) QUICK=1; RUNS=1; SECONDS_F=5; UPLOAD_KEYS=200000; ING_EVENTS=200000; ING_PARTS=16; shift ;;
    --runs) RUNS=$2; shift 2 ;;
    --parts) PARTS=$2; shift 2 ;;
    --build) BUILD=$2; shift 2 ;;
    --rate) RATE=$2; shift 2 ;;
    --seconds) SECONDS_F=$2; shift 2 ;;
    --lease-ttl) TTL=$2; shift 2 ;;
    --upload-keys) UPLOAD_KEYS=$2; shift 2 ;;
    --ingest-events) ING_EVENTS=$2; shift 2 ;;
    --ingest-partitions) ING_PARTS=$2; shift 2 ;;
    --keep) KEEP=1; shift ;;
    -h | --help) sed -n '2,30p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "bench_cluster: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done
case "$BUILD" in /*) ;; *) BUILD=$PWD/$BUILD ;; esac
TESSERA=$BUILD/cli/tessera
GEN=$BUILD/benchmarks/tessera-datagen
HOP=$BUILD/benchmarks/bench_hop
BF=${BENCH_FETCH:-$BUILD/benchmarks/bench_fetch} # e.g. an ASan build of bench_fetch
LC=$ROOT/scripts/local-cluster.sh
PY=/usr/bin/python3
for b in "$TESSERA" "$GEN" "$BF" "$HOP" "$BUILD/worker/tessera-worker" "$BUILD/coordinator/tessera-coordinator" \
    "$BUILD/fetcher/tessera-fetcher"; do
    [ -x "$b" ] || { echo "bench_cluster: $b not built (cmake --build $BUILD)" >&2; exit 2; }
done
[ -x /usr/bin/etcd ] || { echo "bench_cluster: /usr/bin/etcd not installed" >&2; exit 2; }
has() { case ",$PARTS," in *",$1,"*) return 0 ;; esac; return 1; }

TMP=$(mktemp -d "${TMPDIR:-/tmp}/bench_cluster.XXXXXX")
PIDS=""          # processes started here (broker, serve), stopped by PID
CLUSTER_DIR=""   # the running cluster's dir, if any
log() { echo "== $(date -u +%T) $*" >&2; }
stop_pid() { # PID: SIGTERM, wait <= 10 s, SIGKILL
    local p=$1 i
    kill -0 "$p" 2>/dev/null || return 0
    kill -TERM "$p" 2>/dev/null
    for i in $(seq 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$p" 2>/dev/null && kill -KILL "$p" 2>/dev/null
    wait "$p" 2>/dev/null
    PIDS=$(echo "$PIDS" | tr ' ' '\n' | grep -vx "$p" | tr '\n' ' ')
}
cluster_down() {
    [ -n "$CLUSTER_DIR" ] || return 0
    TESSERA_BUILD_DIR=$BUILD "$LC" down --dir "$CLUSTER_DIR" >/dev/null 2>&1
    CLUSTER_DIR=""
}
cleanup() {
    cluster_down
    local p
    for p in $PIDS; do stop_pid "$p"; done
    if [ $KEEP = 1 ]; then echo "bench_cluster: kept $TMP" >&2; else rm -rf "$TMP"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP
die() { echo "bench_cluster: $*" >&2; exit 1; }
now_ms() { date +%s%3N; }

start_broker() { # DIR ARGS...: dev-kafka; sets BROKER_PID, BOOTSTRAP (waits <= 10 s)
    local d=$1
    shift
    "$TESSERA" dev-kafka "$@" >"$d/broker.out" 2>"$d/broker.err" &
    BROKER_PID=$!
    PIDS="$PIDS $BROKER_PID"
    BOOTSTRAP=""
    for _ in $(seq 100); do
        BOOTSTRAP=$(head -n 1 "$d/broker.out" 2>/dev/null)
        [ -n "$BOOTSTRAP" ] && return 0
        sleep 0.1
    done
    die "dev-kafka did not start"
}
start_serve() { # DIR WAREHOUSE BOOTSTRAP: sets SERVE_PID, SERVE (waits <= 30 s)
    "$TESSERA" serve --data-dir "$1/data" --warehouse "$2" --grpc-port 0 --http-port 0 \
        --kafka-bootstrap "$3" >"$1/serve.out" 2>"$1/serve.err" &
    SERVE_PID=$!
    PIDS="$PIDS $SERVE_PID"
    SERVE=""
    for _ in $(seq 300); do
        SERVE=$(sed -n 's/^grpc=//p' "$1/serve.out" 2>/dev/null)
        [ -n "$SERVE" ] && return 0
        kill -0 "$SERVE_PID" 2>/dev/null || break
        sleep 0.1
    done
    tail -5 "$1/serve.err" >&2
    die "tessera serve did not start"
}
cluster_up() { # DIR WORKERS WAREHOUSE BOOTSTRAP: sets COORD (the leader), FETCHER, WPID[i], WADDR[i]
    CLUSTER_DIR=$1/cluster
    TESSERA_BUILD_DIR=$BUILD "$LC" up --dir "$CLUSTER_DIR" --workers "$2" --warehouse "$3" \
        --kafka-bootstrap "$4" --lease-ttl "$TTL" >"$1/cluster.out" 2>"$1/cluster.err" || {
        tail -5 "$1/cluster.err" >&2; CLUSTER_DIR=""; die "local-cluster.sh up failed"; }
    WPID=(); WADDR=()
    local k v
    C1=""; C2=""
    while IFS='=' read -r k v; do
        case "$k" in
        coordinator) C1=$v ;;
        coordinator2) C2=$v ;;
        fetcher) FETCHER=$v ;;
        fetcher_pid) FETCHER_PID=$v ;;
        worker*_pid) WPID[${k//[!0-9]/}]=$v ;;
        worker*) WADDR[${k//[!0-9]/}]=$v ;;
        esac
    done <"$CLUSTER_DIR/cluster.env"
    find_leader
}
find_leader() { # sets COORD = the coordinator that answers admin calls, COORDS = it,the other
    COORD=""
    for _ in $(seq 100); do # the leader answers admin calls; a follower redirects
        for c in $C1 $C2; do
            "$TESSERA" get workers --server "$c" --timeout-ms 1000 >/dev/null 2>&1 && { COORD=$c; break 2; }
        done
        sleep 0.1
    done
    [ -n "$COORD" ] || die "no coordinator leads"
    COORDS="$COORD"
    for c in $C1 $C2; do [ "$c" = "$COORD" ] || COORDS="$COORDS,$c"; done
}
worker_pids_csv() { local IFS=,; echo "${WPID[*]}"; }
partitions_json() { # from whichever coordinator answers (the leader may change under load)
    "$TESSERA" get partitions -o json --server "$COORD" --timeout-ms 2000 2>/dev/null ||
        "$TESSERA" get partitions -o json --server "${COORDS#*,}" --timeout-ms 2000 2>/dev/null
}
# SUMMARY value of key K in file F
sval() { sed -n 's/^SUMMARY .* '"$2"'=\([^ ]*\).*/\1/p' "$1" | tail -1; }
median() { printf '%s\n' "$@" | grep -v '^$' | sort -g | awk '{v[NR]=$1} END {if (NR==0) print "nan"; else if (NR%2) print v[(NR+1)/2]; else print (v[NR/2]+v[NR/2+1])/2}'; }

# The bench Join's data: exactly what bench_fetch's own setup generates.
DAYS=8 EVENTS=200000 KEYS=10000
gen_bench_wh() { # DIR
    "$GEN" --out "$1" --start-ds 2024-01-01 --days $DAYS --events $EVENTS --keys $KEYS \
        --format jsonl --quiet >/dev/null || die "tessera-datagen failed"
}
Q_MS=$(( ($(date -u -d 2024-01-01 +%s) / 86400 + DAYS) * 86400000 )) # end of day DAYS (bench_fetch's q)

# murmur2 partition of a key text (Kafka's default partitioner; common/include/tsr/partition.h)
partition_of() { # KEY N
    $PY - "$1" "$2" <<'PY'
import sys
d = sys.argv[1].encode(); n = int(sys.argv[2]); m = 0x5bd1e995; M = 0xffffffff
h = (0x9747b28c ^ len(d)) & M
for i in range(len(d) // 4):
    k = int.from_bytes(d[4 * i:4 * i + 4], "little")
    k = (k * m) & M; k ^= k >> 24; k = (k * m) & M
    h = (h * m) & M; h ^= k
r = len(d) % 4; b = len(d) & ~3
if r >= 3: h ^= d[b + 2] << 16
if r >= 2: h ^= d[b + 1] << 8
if r >= 1: h ^= d[b]; h = (h * m) & M
h ^= h >> 13; h = (h * m) & M; h ^= h >> 15
print((h & 0x7fffffff) % n)
PY
}

declare -a H_D99 H_V99 H_RATIO A_SERR A_CERR A_SR A_CR A_SCPU A_CCPU A_S50 A_S99 A_C50 A_C99 A_RATIO A_SE99 A_CE99 B_REASSIGN B_SERVED
# ---- a + b ---------------------------------------------------------------------------------
if has a || has b; then
    for run in $(seq 1 "$RUNS"); do
        d=$TMP/a$run
        mkdir -p "$d"
        if has a; then
            log "a: run $run of $RUNS: single process (bench_fetch: tessera serve), FetchJoin $RATE/s for $SECONDS_F s"
            "$BF" --quiet --phases fetch --rate "$RATE" --seconds "$SECONDS_F" --tmp "$d" >"$d/single.txt" 2>"$d/single.err"
            grep -q '^SUMMARY' "$d/single.txt" ||
                { cat "$d/single.txt" "$d/single.err" >&2; die "bench_fetch (single process) failed"; }
            grep -E 'open loop|ratio' "$d/single.txt" | sed 's/^/    single: /' >&2
            A_S50+=("$(sval "$d/single.txt" fetch1_p50_us)"); A_S99+=("$(sval "$d/single.txt" fetch1_p99_us)")
            A_SE99+=("$(sval "$d/single.txt" echo_p99_us)"); A_SR+=("$(sval "$d/single.txt" fetch1_rate)")
        fi
        log "a: run $run: cluster (etcd, 2 coordinators, 3 workers, fetcher; lease TTL $TTL s)"
        gen_bench_wh "$d/wh"
        start_broker "$d" --partitions 6 --topic payments.card_txn
        cluster_up "$d" 3 "$d/wh" "$BOOTSTRAP"
        # bench_fetch --attach: apply + upload through the coordinator, the streamed day produced
        # keyed by user_id, then the same open-loop phase against the fetcher
        "$BF" --quiet --phases fetch --rate "$RATE" --seconds "$SECONDS_F" --tmp "$d" \
            --attach "$FETCHER" --admin "$COORDS" --bootstrap "$BOOTSTRAP" --warehouse "$d/wh" \
            --cpu-pids "$(worker_pids_csv),$FETCHER_PID" >"$d/cluster.txt" 2>"$d/cluster.err"
        # a run with failed calls (e.g. "fetcher overloaded" past saturation) still has figures
        grep -q '^SUMMARY' "$d/cluster.txt" ||
            { cat "$d/cluster.txt" "$d/cluster.err" >&2; die "bench_fetch --attach (cluster) failed"; }
        grep -q 'errors, first' "$d/cluster.err" && grep 'errors, first' "$d/cluster.err" | sed 's/^/    cluster: /' >&2
        if has a; then
            grep -E 'open loop|ratio' "$d/cluster.txt" | sed 's/^/    cluster: /' >&2
            A_C50+=("$(sval "$d/cluster.txt" fetch1_p50_us)"); A_C99+=("$(sval "$d/cluster.txt" fetch1_p99_us)")
            A_CE99+=("$(sval "$d/cluster.txt" echo_p99_us)"); A_CR+=("$(sval "$d/cluster.txt" fetch1_rate)")
            A_SERR+=("$(sval "$d/single.txt" fetch1_errors)"); A_CERR+=("$(sval "$d/cluster.txt" fetch1_errors)")
            A_SCPU+=("$(sval "$d/single.txt" fetch1_cpu_us)"); A_CCPU+=("$(sval "$d/cluster.txt" fetch1_cpu_us)")
            A_RATIO+=("$(echo "${A_C99[-1]} ${A_S99[-1]}" | awk '{printf "%.2f", $1 / $2}')")
        fi
        if has b; then
            # a probe key owned by worker2: its partition (murmur2 mod the topic's 6 partitions)
            pj=$(partitions_json)
            probe=""
            for u in $(seq 0 200); do
                p=$(partition_of "u$u" 6)
                own=$(echo "$pj" | $PY -c "import json,sys; P=json.load(sys.stdin); print([x['worker'] for x in P if x['groupBy']=='bench.fetch_gb_0' and x['partition']==$p][0])")
                [ "$own" = worker2 ] && { probe=u$u; break; }
            done
            [ -n "$probe" ] || die "b: no key of worker2 among u0..u200"
            fetch_probe() { "$TESSERA" fetch --join bench.fetch_join --keys "{\"user_id\":\"$probe\"}" \
                --at-millis "$Q_MS" --server "$FETCHER" --timeout-ms 2000 2>/dev/null; }
            want=$(fetch_probe)
            echo "$want" | grep -q '"Success"' || die "b: probe fetch failed before the kill: $want"
            echo "$want" | grep -q '_exception' && die "b: probe fetch has exceptions before the kill: $want"
            log "b: kill -9 worker2 (pid ${WPID[2]}), probe key $probe (partition $p)"
            kill -KILL "${WPID[2]}"
            t0=$(now_ms); t_re=""; t_ok=""; early=""
            while [ $(( $(now_ms) - t0 )) -lt $(( TTL * 1000 + 60000 )) ]; do
                if [ -z "$t_re" ]; then
                    left=$(partitions_json | $PY -c "import json,sys; P=json.load(sys.stdin); print(len([x for x in P if x['worker'] in ('worker2', None, '')]))" 2>/dev/null)
                    [ "$left" = 0 ] && t_re=$(( $(now_ms) - t0 ))
                fi
                if [ -z "$t_ok" ]; then
                    got=$(fetch_probe)
                    if [ "$got" = "$want" ]; then
                        t_ok=$(( $(now_ms) - t0 ))
                        [ -z "$t_re" ] && [ "$t_ok" -lt 200 ] && early=1
                    fi
                fi
                [ -n "$t_re" ] && [ -n "$t_ok" ] && break
                sleep 0.02
            done
            [ -n "$early" ] && echo "    note: the probe answered right at once after the kill (was it on worker2?)" >&2
            [ -n "$t_re" ] && [ -n "$t_ok" ] || die "b: not recovered within $((TTL + 60)) s (reassigned: ${t_re:-no}, served: ${t_ok:-no})"
            echo "    failover: reassigned after $t_re ms, probe served with its value after $t_ok ms (lease TTL $TTL s)" >&2
            B_REASSIGN+=("$t_re"); B_SERVED+=("$t_ok")
        fi
        cluster_down
        stop_pid "$BROKER_PID"
        if has a; then # the bare hop, on a machine as quiet as the single-process run's
            log "a: run $run: floor: bench_hop (echo direct / through a no-op proxy), $RATE/s for $SECONDS_F s each"
            "$HOP" --rate "$RATE" --seconds "$SECONDS_F" >"$d/hop.txt" 2>"$d/hop.err" ||
                { cat "$d/hop.txt" "$d/hop.err" >&2; die "bench_hop failed"; }
            grep -E 'calls  p50|one more hop' "$d/hop.txt" | sed 's/^ */    hop: /' >&2
            H_D99+=("$(sval "$d/hop.txt" direct_p99_us)"); H_V99+=("$(sval "$d/hop.txt" via_p99_us)")
            H_RATIO+=("$(sval "$d/hop.txt" p99_ratio)")
        fi
        [ $KEEP = 1 ] || rm -rf "$d"
    done
fi

# ---- c: upload of UPLOAD_KEYS keys -----------------------------------------------------------
C_SERVE=""; C_CLUSTER=""; C_LOADED=""
if has c; then
    d=$TMP/c
    mkdir -p "$d/wh/bench/wide_txn/ds=2024-01-01"
    log "c: generating bench.wide_txn: $UPLOAD_KEYS rows, one per key"
    $PY - "$UPLOAD_KEYS" "$d/wh/bench/wide_txn/ds=2024-01-01/part-00000.jsonl" <<'PY'
import sys
n = int(sys.argv[1]); t0 = 1704067200000
with open(sys.argv[2], "w") as f:
    for i in range(n):
        f.write('{"user_id":"k%d","amount":%d.%02d,"ts":%d}\n' % (i, i % 997, i % 100, t0 + (i * 86399000) // n))
PY
    cat >"$d/gb.json" <<'EOF'
{"metaData":{"name":"bench.upload_gb","team":"bench","online":1,"outputNamespace":"bench"},
 "sources":[{"events":{"table":"bench.wide_txn","query":{"selects":{"user_id":"user_id","amount":"amount"},
   "timeColumn":"ts","startPartition":"2024-01-01"}}}],
 "keyColumns":["user_id"],
 "aggregations":[{"inputColumn":"amount","operation":6,"argMap":{},"windows":[{"length":30,"timeUnit":1}]},
                 {"inputColumn":"amount","operation":7,"argMap":{},"windows":[{"length":30,"timeUnit":1}]},
                 {"inputColumn":"amount","operation":8,"argMap":{},"windows":[{"length":30,"timeUnit":1}]}],
 "accuracy":0}
EOF
    start_broker "$d" --partitions 4
    log "c: upload through tessera serve"
    start_serve "$d" "$d/wh" "$BOOTSTRAP"
    "$TESSERA" apply -f "$d/gb.json" --server "$SERVE" >/dev/null || die "c: apply (serve) failed"
    t0=$(now_ms)
    "$TESSERA" upload "$d/gb.json" --ds 2024-01-01 --server "$SERVE" >"$d/up_serve.txt" 2>&1 ||
        { cat "$d/up_serve.txt" >&2; die "c: upload (serve) failed"; }
    C_SERVE=$(( $(now_ms) - t0 ))
    echo "    serve: $(tr '\n' ' ' <"$d/up_serve.txt") -> $C_SERVE ms" >&2
    stop_pid "$SERVE_PID"
    log "c: upload through a 3-worker cluster"
    # a longer lease here: on a loaded 2-vCPU machine a coordinator whose own lease (TTL/2) goes
    # unrenewed for 2/3 of it steps down and fails the running upload ("retry the upload")
    ttl_save=$TTL; TTL=$C_TTL
    cluster_up "$d" 3 "$d/wh" "$BOOTSTRAP"
    TTL=$ttl_save
    "$TESSERA" apply -f "$d/gb.json" --server "$COORD" >/dev/null || die "c: apply (cluster) failed"
    C_TRIES=0
    while :; do # retry what a stepping-down coordinator failed (at most 3 attempts)
        C_TRIES=$((C_TRIES + 1))
        find_leader
        t0=$(now_ms)
        if "$TESSERA" upload --server "$COORD" "$d/gb.json" --ds 2024-01-01 >"$d/up_cluster.txt" 2>&1; then break; fi
        cat "$d/up_cluster.txt" | sed 's/^/    attempt '"$C_TRIES"': /' >&2
        [ $C_TRIES -lt 3 ] || die "c: upload (cluster) failed 3 times"
        sleep 1
    done
    C_CLUSTER=$(( $(now_ms) - t0 ))
    B_MS=$(( ($(date -u -d 2024-01-02 +%s)) * 1000 ))
    # loaded = every partition's owner reports the upload's batch end (KeepAlive, every TTL/3)
    for _ in $(seq 1200); do
        s=$(partitions_json | $PY -c "import json,sys; P=[x for x in json.load(sys.stdin) if x['groupBy']=='bench.upload_gb']; print('ok' if P and all(x.get('batchEndMillis', x.get('batch_end_millis', 0)) == $B_MS for x in P) else 'no')" 2>/dev/null)
        [ "$s" = ok ] && { C_LOADED=$(( $(now_ms) - t0 )); break; }
        sleep 0.05
    done
    echo "    cluster (attempt $C_TRIES, lease TTL $C_TTL s): $(tr '\n' ' ' <"$d/up_cluster.txt") -> $C_CLUSTER ms; every owner reports it loaded after ${C_LOADED:-(not within 60 s)} ms" >&2
    cluster_down
    stop_pid "$BROKER_PID"
    [ $KEEP = 1 ] || rm -rf "$d"
fi

# ---- d: ingest with serve, 1, 2, 3 workers ---------------------------------------------------
declare -A D_EPS D_EPC D_CPU # events/s; per CPU-s until consumed; per CPU-s incl. the deferred flush
if has d; then
    d=$TMP/d
    mkdir -p "$d"
    # the Join setup bench_fetch does before its phases, on a small warehouse (not measured)
    ING=(--quiet --phases ingest --days 2 --events 20000 --keys 1000 --ingest-events "$ING_EVENTS"
        --ingest-partitions "$ING_PARTS" --tmp "$d")
    log "d: ingest $ING_EVENTS events ($ING_PARTS partitions) into tessera serve"
    "$BF" "${ING[@]}" >"$d/serve.txt" 2>"$d/serve.err" || { cat "$d/serve.txt" "$d/serve.err" >&2; die "d: bench_fetch (serve) failed"; }
    grep '^ingest' "$d/serve.txt" | sed 's/^/    serve: /' >&2
    D_EPS[serve]=$(sval "$d/serve.txt" ingest_eps); D_EPC[serve]=$(sval "$d/serve.txt" ingest_eps_per_cpu)
    D_CPU[serve]=$(sval "$d/serve.txt" ingest_eps_per_cpu_all)
    "$GEN" --out "$d/wh" --start-ds 2024-01-01 --days 2 --events 20000 --keys 1000 --format jsonl --quiet >/dev/null ||
        die "tessera-datagen failed"
    for n in 1 2 3; do
        log "d: ingest $ING_EVENTS events ($ING_PARTS partitions) into a cluster of $n worker(s)"
        dd=$d/w$n
        mkdir -p "$dd"
        start_broker "$dd" --partitions "$ING_PARTS" --topic bench.ingest
        cluster_up "$dd" "$n" "$d/wh" "$BOOTSTRAP"
        "$BF" "${ING[@]}" --attach "$FETCHER" --admin "$COORDS" --bootstrap "$BOOTSTRAP" --warehouse "$d/wh" \
            --cpu-pids "$(worker_pids_csv)" >"$dd/out.txt" 2>"$dd/err.txt" ||
            { cat "$dd/out.txt" "$dd/err.txt" >&2; die "d: bench_fetch --attach ($n workers) failed"; }
        grep '^ingest' "$dd/out.txt" | sed "s/^/    $n workers: /" >&2
        D_EPS[$n]=$(sval "$dd/out.txt" ingest_eps); D_EPC[$n]=$(sval "$dd/out.txt" ingest_eps_per_cpu)
        D_CPU[$n]=$(sval "$dd/out.txt" ingest_eps_per_cpu_all)
        cluster_down
        stop_pid "$BROKER_PID"
    done
fi

# ---- table + SUMMARY -------------------------------------------------------------------------
echo
if has a || has b; then
    echo "bench_cluster: $RUNS run(s) of a/b (medians), lease TTL $TTL s, fetch $RATE/s for $SECONDS_F s"
else
    echo "bench_cluster: 1 run of $PARTS"
fi
printf '%-58s %14s %14s %8s\n' "figure" "single" "cluster" "ratio"
S=(SUMMARY bench_cluster)
if has a; then
    s50=$(median "${A_S50[@]}"); s99=$(median "${A_S99[@]}"); c50=$(median "${A_C50[@]}"); c99=$(median "${A_C99[@]}")
    r=$(median "${A_RATIO[@]}")
    printf '%-58s %11.0f us %11.0f us %8s\n' "a. FetchJoin 1 entity $RATE/s open loop: p50" "$s50" "$c50" "$(awk "BEGIN{printf \"%.2f\", $c50/$s50}")"
    printf '%-58s %11.0f us %11.0f us %7sx  (target <= 1.5x; runs: %s)\n' "   p99" "$s99" "$c99" "$r" "${A_RATIO[*]}"
    printf '%-58s %11.0f us %11.0f us\n' "   Health/Check p99 at the same rate (floor)" "$(median "${A_SE99[@]}")" "$(median "${A_CE99[@]}")"
    printf '%-58s %11.0f /s %11.0f /s\n' "   achieved FetchJoin rate" "$(median "${A_SR[@]}")" "$(median "${A_CR[@]}")"
    printf '%-58s %14s %14s\n' "   failed FetchJoins (per run)" "${A_SERR[*]}" "${A_CERR[*]}"
    printf '%-58s %11.0f us %11.0f us\n' "   CPU per FetchJoin (serve; workers + fetcher)" "$(median "${A_SCPU[@]}")" "$(median "${A_CCPU[@]}")"
    hr=$(median "${H_RATIO[@]}")
    printf '%-58s %11.0f us %11.0f us %7sx  (runs: %s)\n' "   floor: an echo direct / through a no-op proxy, p99" "$(median "${H_D99[@]}")" "$(median "${H_V99[@]}")" "$hr" "${H_RATIO[*]}"
    S+=(rate=$RATE single_rate=$(median "${A_SR[@]}") cluster_rate=$(median "${A_CR[@]}")
        single_cpu_us=$(median "${A_SCPU[@]}") cluster_cpu_us=$(median "${A_CCPU[@]}") single_p50_us=$s50 single_p99_us=$s99 cluster_p50_us=$c50 cluster_p99_us=$c99 p99_ratio=$r hop_p99_ratio=$hr)
fi
if has b; then
    re=$(median "${B_REASSIGN[@]}"); sv=$(median "${B_SERVED[@]}")
    printf '%-58s %14s %11s ms   (runs: %s)\n' "b. kill -9 a worker -> its partitions reassigned" "-" "$re" "${B_REASSIGN[*]}"
    printf '%-58s %14s %11s ms   (runs: %s; lease TTL %s s)\n' "   -> a key it owned served with the right value" "-" "$sv" "${B_SERVED[*]}" "$TTL"
    S+=(failover_reassigned_ms=$re failover_served_ms=$sv lease_ttl_s=$TTL)
fi
if has c; then
    printf '%-58s %11s ms %11s ms %8s\n' "c. upload of $UPLOAD_KEYS keys: tessera upload returns" "$C_SERVE" "$C_CLUSTER" "$(awk "BEGIN{printf \"%.2f\", $C_CLUSTER/$C_SERVE}")"
    printf '%-58s %14s %11s ms\n' "   ... and every owner reports it loaded" "-" "${C_LOADED:-nan}"
    S+=(upload_attempts=$C_TRIES upload_keys=$UPLOAD_KEYS upload_serve_ms=$C_SERVE upload_cluster_ms=$C_CLUSTER upload_cluster_loaded_ms=${C_LOADED:-nan})
fi
if has d; then
    echo "d. ingest $ING_EVENTS events, $ING_PARTS partitions (apply -> consumed; cluster: as reported by KeepAlive, every TTL/3):"
    printf '   %-26s %12s %22s %26s\n' "" "events/s" "events/CPU-s consumed" "events/CPU-s incl. flush"
    S+=(ingest_events=$ING_EVENTS)
    for n in serve 1 2 3; do
        label="$n worker(s) (their CPU)"; [ $n = serve ] && label="tessera serve"
        printf '   %-26s %12s %22s %26s\n' "$label" "${D_EPS[$n]}" "${D_EPC[$n]}" "${D_CPU[$n]}"
        k=w$n; [ $n = serve ] && k=serve
        S+=(ingest_${k}_eps=${D_EPS[$n]} ingest_${k}_eps_per_cpu=${D_EPC[$n]} ingest_${k}_eps_per_cpu_all=${D_CPU[$n]})
    done
fi
echo "${S[*]}"
