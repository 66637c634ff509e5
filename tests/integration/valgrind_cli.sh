#!/usr/bin/env bash
# The CLI's main paths run valgrind-clean (memcheck: no invalid access, no definite or indirect
# leak): validate, columns, a Join backfill, a multi-pass GroupBy backfill and an error path.
set -euo pipefail
: "${TESSERA:?}" "${TSR_BUILD_DIR:?}" "${TSR_SOURCE_DIR:?}"
GEN="$TSR_BUILD_DIR/benchmarks/tessera-datagen"
if ! command -v valgrind >/dev/null || [ ! -x "$GEN" ]; then
    echo "valgrind_cli: skipped: valgrind or tessera-datagen missing"
    exit 0
fi
tmp=$(mktemp -d /tmp/tsr-valgrind-XXXXXX)
trap 'rm -rf "$tmp"' EXIT
"$GEN" --out "$tmp/wh" --events 4000 --left 400 --keys 40 --days 3 --quiet >/dev/null
ex="$TSR_SOURCE_DIR/examples"
pass=0 fail=0
run() { # expected-exit-code, args...
    local want=$1; shift
    set +e
    # the programs link jemalloc: memcheck replaces its malloc too (valgrind manual, 2.6.2)
    valgrind -q --soname-synonyms=somalloc=*jemalloc* --leak-check=full \
        --errors-for-leak-kinds=definite,indirect --error-exitcode=99 \
        "$TESSERA" "$@" >/dev/null 2>"$tmp/vg.err"
    local rc=$?
    set -e
    if [ "$rc" -eq "$want" ] && ! grep -q '^==[0-9]*==' "$tmp/vg.err"; then
        echo "ok   tessera $*"; pass=$((pass + 1))
    else
        echo "FAIL tessera $* (exit $rc, wanted $want)"; sed -n '1,30p' "$tmp/vg.err"; fail=$((fail + 1))
    fi
}
run 0 validate --warehouse "$tmp/wh" "$ex"
run 0 columns --warehouse "$tmp/wh" "$ex/joins/payments/checkout_features.v1"
run 0 backfill "$ex/joins/payments/checkout_features.v1" --start-ds 2024-01-01 --end-ds 2024-01-03 --warehouse "$tmp/wh" --quiet
run 0 backfill "$ex/group_bys/payments/card_txn_features.v1" --start-ds 2024-01-02 --end-ds 2024-01-03 --warehouse "$tmp/wh" --quiet --memory-mb 16 --format csv
run 3 backfill "$ex/joins/payments/checkout_features.v1" --start-ds 2024-01-01 --end-ds 2024-01-05 --warehouse "$tmp/wh" --quiet
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
