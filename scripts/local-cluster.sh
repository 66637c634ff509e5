#!/usr/bin/env bash
# local-cluster.sh — a whole Tessera cluster on loopback for demos and tests (docs/cluster.md):
# etcd, two coordinators, N workers and a fetcher, on free ports, from the binaries of a build
# folder.
#
#   scripts/local-cluster.sh up [--dir D] [--workers N] [--kafka-bootstrap ADDR]
#                               [--warehouse DIR] [--lease-ttl S] [--partitions N]
#   scripts/local-cluster.sh status [--dir D]
#   scripts/local-cluster.sh down [--dir D]
#
# `up` returns once every worker is registered and the fetcher answers, and prints KEY=VALUE
# lines (also kept in D/cluster.env): etcd=, coordinator=, coordinator2=, fetcher=,
# fetcher_http=, worker<i>= and worker<i>_pid= for i = 1..N, and <name>_pid= for the others.
# Logs are in D/logs/. `down` stops exactly the processes `up` started (by PID, checking each
# PID still runs the binary it started), SIGTERM first, SIGKILL after 10 s.
# Binaries: $TESSERA_BUILD_DIR (default build/) — tessera, tessera-coordinator,
# tessera-worker, tessera-fetcher; etcd from $ETCD (default /usr/bin/etcd).
# Extra daemon flags: $TESSERA_WORKER_ARGS and $TESSERA_FETCHER_ARGS (split on spaces), e.g.
# TESSERA_WORKER_ARGS="--rpc-threads 1".
set -u

usage() {
    sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'
}

die() {
    echo "local-cluster: $*" >&2
    exit 1
}

ROOT=$(cd "$(dirname "$0")/.." && pwd)
CMD=${1:-}
[ -n "$CMD" ] || { usage >&2; exit 2; }
shift
case "$CMD" in
-h | --help | help) usage; exit 0 ;;
up | down | status) ;;
*) echo "local-cluster: unknown command '$CMD' (up, down or status)" >&2; exit 2 ;;
esac

DIR=${TMPDIR:-/tmp}/tessera-local-cluster
WORKERS=3
KAFKA=""
WAREHOUSE=""
LEASE_TTL=""
PARTITIONS=""
while [ $# -gt 0 ]; do
    case "$1" in
    --dir) DIR=${2:?--dir needs a value}; shift 2 ;;
    --workers) WORKERS=${2:?--workers needs a value}; shift 2 ;;
    --kafka-bootstrap) KAFKA=${2:?--kafka-bootstrap needs a value}; shift 2 ;;
    --warehouse) WAREHOUSE=${2:?--warehouse needs a value}; shift 2 ;;
    --lease-ttl) LEASE_TTL=${2:?--lease-ttl needs a value}; shift 2 ;;
    --partitions) PARTITIONS=${2:?--partitions needs a value}; shift 2 ;;
    -h | --help) usage; exit 0 ;;
    *) echo "local-cluster: unknown option '$1'" >&2; exit 2 ;;
    esac
done
case "$WORKERS" in '' | *[!0-9]*) die "--workers must be a positive number" ;; esac
[ "$WORKERS" -ge 1 ] && [ "$WORKERS" -le 16 ] || die "--workers must be 1..16"

BUILD=${TESSERA_BUILD_DIR:-$ROOT/build}
case "$BUILD" in /*) ;; *) BUILD=$PWD/$BUILD ;; esac
ETCD=${ETCD:-/usr/bin/etcd}
ENV_FILE=$DIR/cluster.env
PIDS_FILE=$DIR/pids

# A free TCP port on 127.0.0.1 (the kernel's choice; a tiny race with other binders).
free_port() {
    /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# Waits (bounded) until file $1 has a line starting with $2=, prints its value.
wait_line() {
    local file=$1 key=$2 pid=$3 i
    for i in $(seq 1 300); do
        local v
        v=$(grep -m1 "^$key=" "$file" 2>/dev/null | cut -d= -f2-)
        if [ -n "$v" ]; then echo "$v"; return 0; fi
        kill -0 "$pid" 2>/dev/null || return 1
        sleep 0.05
    done
    return 1
}

# start NAME BINARY ARGS...: runs it in the background, logs in $DIR/logs/NAME.*, records PID.
start() {
    local name=$1 bin=$2
    shift 2
    "$bin" "$@" >"$DIR/logs/$name.out" 2>"$DIR/logs/$name.log" </dev/null &
    local pid=$!
    echo "$name $pid $bin" >>"$PIDS_FILE"
    echo "${name}_pid=$pid" >>"$ENV_FILE"
    LAST_PID=$pid
}

# stop_all: SIGTERM every recorded process that still runs its binary, then SIGKILL.
stop_all() {
    [ -f "$PIDS_FILE" ] || return 0
    local alive=() name pid bin
    # reverse order: fetcher, workers, coordinators, etcd
    while read -r name pid bin; do
        if [ -r "/proc/$pid/cmdline" ] && tr '\0' '\n' <"/proc/$pid/cmdline" | head -1 | grep -qF "$bin"; then
            kill -TERM "$pid" 2>/dev/null && alive+=("$pid")
        fi
    done < <(tac "$PIDS_FILE")
    local i
    for i in $(seq 1 100); do
        local left=()
        for pid in "${alive[@]}"; do kill -0 "$pid" 2>/dev/null && left+=("$pid"); done
        alive=("${left[@]}")
        [ ${#alive[@]} -eq 0 ] && break
        sleep 0.1
    done
    for pid in "${alive[@]}"; do
        echo "local-cluster: pid $pid did not stop in 10 s, killing it" >&2
        kill -KILL "$pid" 2>/dev/null
    done
    rm -f "$PIDS_FILE"
}

case "$CMD" in
down)
    [ -f "$PIDS_FILE" ] || { echo "local-cluster: nothing running in $DIR"; exit 0; }
    stop_all
    echo "local-cluster: stopped (logs kept in $DIR/logs)"
    exit 0
    ;;
status)
    [ -f "$PIDS_FILE" ] || { echo "local-cluster: nothing running in $DIR"; exit 1; }
    bad=0
    while read -r name pid bin; do
        if kill -0 "$pid" 2>/dev/null; then echo "$name pid=$pid running"; else
            echo "$name pid=$pid STOPPED"; bad=1; fi
    done <"$PIDS_FILE"
    coord=$(grep -m1 '^coordinator=' "$ENV_FILE" | cut -d= -f2-)
    coord2=$(grep -m1 '^coordinator2=' "$ENV_FILE" | cut -d= -f2-)
    [ -n "$coord" ] && "$BUILD/cli/tessera" get workers --server "$coord" --timeout-ms 3000 2>/dev/null ||
        "$BUILD/cli/tessera" get workers --server "$coord2" --timeout-ms 3000 || bad=1
    exit $bad
    ;;
esac

# ---- up
for b in cli/tessera coordinator/tessera-coordinator worker/tessera-worker fetcher/tessera-fetcher; do
    [ -x "$BUILD/$b" ] || die "$BUILD/$b not found: build first (cmake --build build), or set TESSERA_BUILD_DIR"
done
[ -x "$ETCD" ] || die "etcd not found at $ETCD (scripts/install-deps.sh installs it)"
if [ -f "$PIDS_FILE" ]; then
    die "a cluster is already running in $DIR (scripts/local-cluster.sh down --dir $DIR)"
fi
mkdir -p "$DIR/logs" || die "cannot create $DIR"
rm -rf "$DIR/etcd" "$DIR"/worker*
: >"$ENV_FILE"
: >"$PIDS_FILE"
if [ -n "$WAREHOUSE" ]; then
    case "$WAREHOUSE" in /*) ;; *) WAREHOUSE=$PWD/$WAREHOUSE ;; esac
fi
cleanup_on_fail() {
    echo "local-cluster: start failed; logs in $DIR/logs" >&2
    stop_all
    exit 1
}

# etcd: one member, so raft heartbeats only wake it. At a 10 ms heartbeat the idle etcd made
# ~860 context switches a second, the most of any process of the cluster, every one a wake-up
# competing with fetches on a 2-core machine; at 100 ms and one Go thread (GOMAXPROCS=1) ~340,
# for ~0.5 s more until the member elects itself (measured with 3 workers, docs/cluster.md).
EP=$(free_port); PP=$(free_port)
ETCD_URL=http://127.0.0.1:$EP
GOMAXPROCS=${ETCD_GOMAXPROCS:-1} start etcd "$ETCD" --name tessera --data-dir "$DIR/etcd" \
    --listen-client-urls "$ETCD_URL" --advertise-client-urls "$ETCD_URL" \
    --listen-peer-urls "http://127.0.0.1:$PP" --initial-advertise-peer-urls "http://127.0.0.1:$PP" \
    --initial-cluster "tessera=http://127.0.0.1:$PP" \
    --heartbeat-interval 100 --election-timeout 500
ETCD_PID=$LAST_PID
ok=0
for i in $(seq 1 100); do
    if /usr/bin/python3 -c 'import sys,urllib.request; sys.exit(0 if b"\"health\":\"true\"" in urllib.request.urlopen(sys.argv[1]+"/health",timeout=1).read() else 1)' "$ETCD_URL" 2>/dev/null; then ok=1; break; fi
    kill -0 "$ETCD_PID" 2>/dev/null || break
    sleep 0.1
done
[ $ok -eq 1 ] || { echo "local-cluster: etcd did not become healthy" >&2; cleanup_on_fail; }
echo "etcd=127.0.0.1:$EP" >>"$ENV_FILE"

common=()
read -r -a worker_extra <<<"${TESSERA_WORKER_ARGS:-}"
read -r -a fetcher_extra <<<"${TESSERA_FETCHER_ARGS:-}"
[ -n "$WAREHOUSE" ] && common+=(--warehouse "$WAREHOUSE")
[ -n "$KAFKA" ] && common+=(--kafka-bootstrap "$KAFKA")
cargs=()
[ -n "$LEASE_TTL" ] && cargs+=(--lease-ttl "$LEASE_TTL")
[ -n "$PARTITIONS" ] && cargs+=(--partitions "$PARTITIONS")

# two coordinators
COORDS=()
for c in 1 2; do
    name=coordinator; [ $c -gt 1 ] && name=coordinator$c
    start "$name" "$BUILD/coordinator/tessera-coordinator" --etcd "$ETCD_URL" \
        --listen 127.0.0.1:0 --id "coordinator$c" "${common[@]}" "${cargs[@]}"
    addr=$(wait_line "$DIR/logs/$name.out" grpc "$LAST_PID") || {
        echo "local-cluster: $name did not start" >&2; cleanup_on_fail; }
    echo "$name=$addr" >>"$ENV_FILE"
    COORDS+=("$addr")
done
COORD_LIST=$(IFS=,; echo "${COORDS[*]}")

# workers
for w in $(seq 1 "$WORKERS"); do
    start "worker$w" "$BUILD/worker/tessera-worker" --coordinator "$COORD_LIST" \
        --listen 127.0.0.1:0 --data-dir "$DIR/worker$w" --id "worker$w" "${common[@]}" \
        "${worker_extra[@]}"
    addr=$(wait_line "$DIR/logs/worker$w.out" grpc "$LAST_PID") || {
        echo "local-cluster: worker$w did not start" >&2; cleanup_on_fail; }
    echo "worker$w=$addr" >>"$ENV_FILE"
done

# fetcher
fargs=()
[ -n "$WAREHOUSE" ] && fargs+=(--warehouse "$WAREHOUSE")
start fetcher "$BUILD/fetcher/tessera-fetcher" --coordinator "$COORD_LIST" \
    --listen 127.0.0.1:0 --http-port 0 "${fargs[@]}" "${fetcher_extra[@]}"
FPID=$LAST_PID
addr=$(wait_line "$DIR/logs/fetcher.out" grpc "$FPID") || {
    echo "local-cluster: fetcher did not start" >&2; cleanup_on_fail; }
echo "fetcher=$addr" >>"$ENV_FILE"
http=$(wait_line "$DIR/logs/fetcher.out" http "$FPID") && echo "fetcher_http=$http" >>"$ENV_FILE"

# ready: every worker registered with the leader
ready=0
for i in $(seq 1 200); do
    for c in "${COORDS[@]}"; do
        n=$("$BUILD/cli/tessera" get workers -o json --server "$c" --timeout-ms 1000 2>/dev/null |
            grep -c '"id"')
        if [ "${n:-0}" -ge "$WORKERS" ]; then ready=1; break 2; fi
    done
    sleep 0.1
done
[ $ready -eq 1 ] || { echo "local-cluster: workers did not all register within 20 s" >&2; cleanup_on_fail; }

cat "$ENV_FILE"
