#!/usr/bin/env bash
# tessera-datagen is deterministic (same seed -> same bytes, other seed -> other data), writes
# the SPEC §3 layout with schemas, and rejects bad arguments with usage errors (exit 2).
set -euo pipefail
GEN="${TSR_BUILD_DIR:?}/benchmarks/tessera-datagen"
if [ ! -x "$GEN" ]; then
    echo "datagen: skipped: $GEN not built (TESSERA_BUILD_BENCHMARKS=OFF)"
    exit 0
fi
tmp=$(mktemp -d /tmp/tsr-datagen-XXXXXX)
trap 'rm -rf "$tmp"' EXIT
pass=0 fail=0
check() { # name, command...
    local name=$1; shift
    if "$@"; then echo "ok   $name"; pass=$((pass + 1)); else echo "FAIL $name"; fail=$((fail + 1)); fi
}
args=(--events 5000 --left 500 --keys 50 --days 3 --quiet)
"$GEN" --out "$tmp/a" "${args[@]}" >/dev/null
"$GEN" --out "$tmp/b" "${args[@]}" >/dev/null
"$GEN" --out "$tmp/c" "${args[@]}" --seed 7 >/dev/null
"$GEN" --out "$tmp/j" "${args[@]}" --format jsonl >/dev/null
check "same seed gives identical warehouses" diff -r "$tmp/a" "$tmp/b"
check "another seed gives other data" bash -c "! diff -rq '$tmp/a' '$tmp/c' >/dev/null"
for t in payments/card_txn payments/checkouts users/profile_snapshot; do
    check "$t has a schema" test -s "$tmp/a/$t/_schema.json"
    check "$t has 3 partitions" test "$(ls -d "$tmp/a/$t"/ds=* | wc -l)" -eq 3
done
events=$(cat "$tmp"/a/payments/card_txn/ds=*/part-00000.csv | grep -vc '^txn_id,')
check "event count is exact ($events)" test "$events" -eq 5000
jrows=$(cat "$tmp"/j/payments/checkouts/ds=*/part-00000.jsonl | wc -l)
check "jsonl left rows ($jrows)" test "$jrows" -eq 500
check "first ds is 2024-01-01" test -d "$tmp/a/payments/card_txn/ds=2024-01-01"
set +e
"$GEN" --out "$tmp/x" --size huge >/dev/null 2>&1; rc=$?
check "unknown size is a usage error" test "$rc" -eq 2
"$GEN" >/dev/null 2>&1; rc=$?
check "missing --out is a usage error" test "$rc" -eq 2
"$GEN" --help | grep -q 'usage: tessera-datagen'; rc=$?
check "--help prints usage" test "$rc" -eq 0
set -e
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
