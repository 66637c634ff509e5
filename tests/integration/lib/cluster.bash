# lib/cluster.bash — shared by the cluster_*.sh integration tests: starts a local cluster with
# scripts/local-cluster.sh (etcd, 2 coordinators, N workers, fetcher on loopback, free ports)
# and reads its state through the admin CLI. Source after lib/serve.bash (TMP, pass/fail,
# expect, has, start_broker). Sets CLUSTER_DIR, ETCD, COORD, COORD2, FETCHER, FETCHER_HTTP,
# and WORKER_ADDR[i] / WORKER_PID[i] for i = 1..N, plus <name>_PID for etcd and coordinators.
CLUSTER_DIR="$TMP/cluster"
CLUSTER_UP=0
LC="$TSR_SOURCE_DIR/scripts/local-cluster.sh"
declare -a WORKER_ADDR WORKER_PID

cluster_skip_reason() { # prints why the cluster tests cannot run here, or nothing
    local b
    for b in coordinator/tessera-coordinator worker/tessera-worker fetcher/tessera-fetcher; do
        [ -x "$TSR_BUILD_DIR/$b" ] || { echo "$TSR_BUILD_DIR/$b not built"; return; }
    done
    [ -x /usr/bin/etcd ] || echo "/usr/bin/etcd not installed (scripts/install-deps.sh)"
}

cluster_env() { # reloads the variables from the cluster's env file
    local k v
    while IFS='=' read -r k v; do
        case "$k" in
        etcd) ETCD=$v ;;
        coordinator) COORD=$v ;;
        coordinator2) COORD2=$v ;;
        fetcher) FETCHER=$v ;;
        fetcher_http) FETCHER_HTTP=$v ;;
        etcd_pid) ETCD_PID=$v ;;
        coordinator_pid) COORD_PID=$v ;;
        coordinator2_pid) COORD2_PID=$v ;;
        fetcher_pid) FETCHER_PID=$v ;;
        worker*_pid) WORKER_PID[${k//[!0-9]/}]=$v ;;
        worker*) WORKER_ADDR[${k//[!0-9]/}]=$v ;;
        esac
    done <"$CLUSTER_DIR/cluster.env"
}

cluster_up() { # ARGS... for local-cluster.sh up (after --dir)
    if TESSERA_BUILD_DIR="$TSR_BUILD_DIR" "$LC" up --dir "$CLUSTER_DIR" "$@" >"$TMP/cluster.out" 2>"$TMP/cluster.err"; then
        CLUSTER_UP=1
        cluster_env
        pass "local-cluster.sh up $*"
    else
        fail "local-cluster.sh up $*"
        sed 's/^/    | /' "$TMP/cluster.err" | tail -20
        for f in "$CLUSTER_DIR"/logs/*.log; do echo "    == $f"; tail -5 "$f" | sed 's/^/    | /'; done
        exit 1
    fi
}

cluster_down() {
    [ "$CLUSTER_UP" = 1 ] || return 0
    TESSERA_BUILD_DIR="$TSR_BUILD_DIR" "$LC" down --dir "$CLUSTER_DIR" >/dev/null 2>&1
    CLUSTER_UP=0
}

# Stops the cluster whatever happens (lib/serve.bash's trap stops broker/serve and the dir).
cluster_cleanup() {
    if [ "${fails:-0}" -gt 0 ] && [ -d "$CLUSTER_DIR/logs" ]; then
        local f
        for f in "$CLUSTER_DIR"/logs/*.log; do
            echo "    == last lines of $(basename "$f")"
            tail -n 12 "$f" | cut -c1-300 | sed 's/^/    | /'
        done
        [ -n "${CLUSTER_KEEP_LOGS:-}" ] && cp -r "$CLUSTER_DIR/logs" "$CLUSTER_KEEP_LOGS"
    fi
    cluster_down
    cleanup
}
trap cluster_cleanup EXIT

# partitions_json: `tessera get partitions -o json` from whichever coordinator leads.
partitions_json() {
    "$TESSERA" get partitions -o json --server "$COORD" --timeout-ms 3000 2>/dev/null ||
        "$TESSERA" get partitions -o json --server "$COORD2" --timeout-ms 3000 2>/dev/null
}

# pjq EXPR: evaluates a python expression over P = the partitions JSON list.
pjq() {
    partitions_json | /usr/bin/python3 -c "import json,sys
try: P = json.load(sys.stdin)
except Exception: P = None
print($1 if P is not None else 'ERR')"
}

# wait_caught_up SECONDS: every partition assigned, every streamed one (lag known: >= 0) at lag
# 0 — and some are — for 2 s in a row (batch-only GroupBys report lag -1).
wait_caught_up() {
    local i ok=0 s
    for i in $(seq $(($1 * 10))); do
        s=$(pjq "'ok' if P and all(p['worker'] and p['lag'] <= 0 for p in P) and any(p['lag'] == 0 for p in P) else 'no'")
        if [ "$s" = ok ]; then ok=$((ok + 1)); else ok=0; fi
        [ "$ok" -ge 20 ] && return 0
        sleep 0.1
    done
    return 1
}
