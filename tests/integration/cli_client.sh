#!/usr/bin/env bash
# cli_client.sh — integration test of the `tessera` gRPC client commands as a user runs them,
# without a server: every command's --help, usage errors (exit 2), and a server that is not
# there (exit 4, quickly, naming the address; $TESSERA_SERVER honoured). The commands against a
# live (fake) server are covered by tests/unit/test_cli_client.c. Needs $TESSERA; no network.
set -u
: "${TESSERA:?TESSERA must point at the tessera binary}"
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
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

for c in apply get describe delete status upload fetch; do
    run "$c --help" 0 "$TESSERA" "$c" --help
    has out "usage: tessera $c" "$c --help prints usage"
    has out "--server ADDR" "$c --help documents --server"
done
run "--help lists fetch" 0 "$TESSERA" --help
has out "fetch" "--help lists fetch"

run "apply without -f" 2 "$TESSERA" apply
run "get without kind" 2 "$TESSERA" get
run "get unknown kind" 2 "$TESSERA" get gizmos
run "get -o yaml" 2 "$TESSERA" get joins -o yaml
run "get joins --group-by" 2 "$TESSERA" get joins --group-by x
run "get partitions --group-by without value" 2 "$TESSERA" get partitions --group-by
run "describe without NAME" 2 "$TESSERA" describe
run "delete two names" 2 "$TESSERA" delete a b
run "upload without --ds" 2 "$TESSERA" upload x.v1
run "upload bad --ds" 2 "$TESSERA" upload x.v1 --ds 2024-02-30
run "fetch without name" 2 "$TESSERA" fetch --keys '{"u":1}'
run "fetch --join and --group-by" 2 "$TESSERA" fetch --join a --group-by b --keys '{"u":1}'
run "fetch bad --timeout-ms" 2 "$TESSERA" fetch --join a --keys '{"u":1}' --timeout-ms x

# Nothing listens on port 1 of loopback: UNAVAILABLE → exit 4, well before the deadline.
NOBODY=127.0.0.1:1
start=$(date +%s%N)
run "status, no server" 4 "$TESSERA" status --server $NOBODY --timeout-ms 5000
ms=$(( ($(date +%s%N) - start) / 1000000 ))
if [ "$ms" -lt 5000 ]; then pass "unavailable within the deadline (${ms} ms)"; else
    fail "unavailable took ${ms} ms"; fi
has err "$NOBODY" "the error names the address"
TESSERA_SERVER=$NOBODY run "get via TESSERA_SERVER" 4 "$TESSERA" get configs
has err "server $NOBODY unavailable" "TESSERA_SERVER is used"
run "get workers, no server" 4 "$TESSERA" get workers --server $NOBODY
run "get partitions, no server" 4 "$TESSERA" get partitions --group-by g.v1 --server $NOBODY
run "fetch, no server" 4 "$TESSERA" fetch --join j --keys '{"u":1}' --server $NOBODY
echo '{"metaData":{"name":"a.v1"}}' >"$TMP/a.json"
run "apply, no server" 4 "$TESSERA" apply -f "$TMP/a.json" --server $NOBODY
run "upload, no server" 4 "$TESSERA" upload "$TMP/a.json" --ds 2024-05-01 --server $NOBODY
run "upload, missing file" 3 "$TESSERA" upload "$TMP/none.json" --ds 2024-05-01 --server $NOBODY

echo "cli_client: $fails failure(s)"
[ "$fails" -eq 0 ]
