#!/usr/bin/env bash
# tessera-fetcher as a process: flags (usage errors exit 2, --help 0), `grpc=`/`http=` lines
# on stdout once listening, /health 503 and gRPC NOT_SERVING while no coordinator answers
# (nothing to route with), /metrics, JSON log lines on stderr, and SIGTERM drains and exits 0
# within a bound (the routing stream is renewed every 3 s). The cluster end to end (real
# coordinator and workers) is scripts/local-cluster.sh's and test_fetcher's fakes'.
set -euo pipefail
: "${TSR_BUILD_DIR:?}"
F="$TSR_BUILD_DIR/fetcher/tessera-fetcher"
tmp=$(mktemp -d /tmp/tsr-fetcher-cli-XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done; rm -rf "$tmp"; }
trap cleanup EXIT
pass=0 fail=0
check() { local name=$1; shift; if "$@"; then echo "ok   $name"; pass=$((pass + 1)); else echo "FAIL $name"; fail=$((fail + 1)); fi; }

set +e
"$F" --help >"$tmp/help" 2>&1; rc_help=$?
"$F" --listen 127.0.0.1:0 >/dev/null 2>"$tmp/usage"; rc_usage=$?
"$F" --coordinator 127.0.0.1:1 --listen 127.0.0.1:0 --bogus 1 >/dev/null 2>"$tmp/usage2"; rc_usage2=$?
set -e
check "--help exits 0 and shows the flags" test "$rc_help" -eq 0 -a -n "$(grep -e --coordinator "$tmp/help")"
check "missing --coordinator: exit 2" test "$rc_usage" -eq 2
check "it says what is missing" grep -q -- "--coordinator is required" "$tmp/usage"
check "unknown flag: exit 2" test "$rc_usage2" -eq 2

# a coordinator address where nobody listens
"$F" --coordinator 127.0.0.1:1 --listen 127.0.0.1:0 --http-port 0 --log-format json >"$tmp/out" 2>"$tmp/err" &
pid=$!; pids+=("$pid")
for _ in $(seq 100); do grep -q '^http=' "$tmp/out" 2>/dev/null && break; sleep 0.05; done
check "prints grpc=HOST:PORT" grep -Eq '^grpc=127\.0\.0\.1:[0-9]+$' "$tmp/out"
check "prints http=HOST:PORT" grep -Eq '^http=127\.0\.0\.1:[0-9]+$' "$tmp/out"
http=$(sed -n 's/^http=//p' "$tmp/out")
code=$(curl -s -m 5 -o "$tmp/health" -w '%{http_code}' "http://$http/health" || true)
check "/health is 503 without a routing table" test "$code" = 503
check "/health says why" grep -q "no routing table" "$tmp/health"
curl -s -m 5 "http://$http/metrics" >"$tmp/metrics" || true
check "/metrics has the routing epoch (-1: none)" grep -q '^tessera_fetcher_routing_epoch -1' "$tmp/metrics"
code=$(curl -s -m 5 -o "$tmp/fetch" -w '%{http_code}' -X POST -d '[{"user":"u1"}]' "http://$http/v1/fetch/join/t.j" || true)
check "a fetch of an unknown Join is 404" test "$code" = 404
sleep 0.3
check "stderr carries JSON log lines" grep -q '"component":"fetcher"' "$tmp/err"
check "the unreachable coordinator is logged" grep -q "routing stream from 127.0.0.1:1" "$tmp/err"
t0=$(date +%s%N)
kill -TERM "$pid"
rc=0
for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
wait "$pid" || rc=$?
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
check "SIGTERM: exit 0 (${ms} ms)" test "$rc" -eq 0
check "SIGTERM: stopped within 5 s" test "$ms" -lt 5000
check "drain is logged" grep -q "draining" "$tmp/err"

echo "fetcher_cli: $pass passed, $fail failed"
test "$fail" -eq 0
