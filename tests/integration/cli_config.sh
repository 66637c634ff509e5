#!/usr/bin/env bash
# cli_config.sh — integration test of `tessera validate` and `tessera columns` on the examples
# and on small bad configs written into a temp dir. Prints one line per check; exits 1 if any
# check failed. Needs $TESSERA (set by CMake) and $TSR_SOURCE_DIR; no network, a few seconds.
set -u
: "${TESSERA:?TESSERA must point at the tessera binary}"
SRC="${TSR_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}"
EX="$SRC/examples"
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
fails=0
pass() { echo "ok   - $1"; }
fail() { echo "FAIL - $1"; fails=$((fails + 1)); }

# run NAME EXPECTED_RC CMD...: runs CMD capturing stdout/stderr in $TMP/out, $TMP/err.
run() {
    local name=$1 want=$2
    shift 2
    "$@" >"$TMP/out" 2>"$TMP/err"
    local rc=$?
    if [ "$rc" -eq "$want" ]; then pass "$name (exit $rc)"; else
        fail "$name: exit $rc, expected $want"; sed 's/^/    | /' "$TMP/err" | head -20; fi
}
# has FILE PATTERN NAME: asserts a fixed string appears in out/err.
has() {
    if grep -qF -- "$2" "$TMP/$1"; then pass "$3"; else
        fail "$3: [$2] not in $1"; sed 's/^/    | /' "$TMP/$1" | head -20; fi
}
# has_re FILE REGEX NAME
has_re() {
    if grep -qE -- "$2" "$TMP/$1"; then pass "$3"; else
        fail "$3: /$2/ not in $1"; sed 's/^/    | /' "$TMP/$1" | head -20; fi
}

# ---- help, version, usage errors --------------------------------------------------------------
run "--help" 0 "$TESSERA" --help
has out "validate" "--help lists validate"
has out "columns" "--help lists columns"
run "--version" 0 "$TESSERA" --version
has out "tessera " "--version prints the version"
has out "malloc: ${TSR_MALLOC:?set by ctest}" "--version names the malloc the build links ($TSR_MALLOC)"
run "help validate" 0 "$TESSERA" help validate
has out "usage: tessera validate" "help validate prints usage"
run "validate --help" 0 "$TESSERA" validate --help
has out "--warehouse" "validate --help documents --warehouse"
run "columns --help" 0 "$TESSERA" columns --help
has out "-o table|json" "columns --help documents -o"
run "no command" 2 "$TESSERA"
run "unknown command" 2 "$TESSERA" frobnicate
has err "unknown command 'frobnicate'" "unknown command is named"
run "validate without CONF" 2 "$TESSERA" validate
run "bad --dialect" 2 "$TESSERA" validate --dialect spark "$EX"
run "unknown option" 2 "$TESSERA" columns --bogus "$EX"
run "columns -o xml" 2 "$TESSERA" columns -o xml "$EX/joins/payments/checkout_features.v1"

# ---- the examples ---------------------------------------------------------------------------
run "validate examples/" 0 "$TESSERA" validate "$EX"
has out "ok $EX/joins/payments/checkout_features.v1 (Join payments.checkout_features.v1)" "example join is valid"
has out "(GroupBy payments.card_txn_features.v1)" "example temporal GroupBy is valid"
has out "(GroupBy users.user_profile.v1)" "example entity GroupBy is valid"
has out "4 configs: 4 ok, 0 invalid" "validate summary counts the examples"
run "validate examples with --warehouse" 0 "$TESSERA" validate --warehouse "$EX/warehouse" "$EX"

run "columns GroupBy (no schema)" 0 "$TESSERA" columns "$EX/group_bys/payments/card_txn_features.v1"
has_re out '^user_id +any$' "key type is any without a schema"
has_re out '^amount_count_1h +long$' "COUNT is long"
has_re out '^amount_sum_7d_by_currency +' "bucketed column name"
run "columns GroupBy --warehouse" 0 "$TESSERA" columns --warehouse "$EX/warehouse" \
    "$EX/group_bys/payments/card_txn_features.v1"
has_re out '^user_id +string$' "key typed from _schema.json"
has_re out '^amount_sum_7d +double$' "SUM of double is double"
has_re out '^merchant_id_last5_7d +list<string>$' "LAST_K is list<input>"
has_re out '^amount_approx_percentile_30d +list<double>$' "APPROX_PERCENTILE is list<double>"
has_re out '^amount_sum_7d_by_currency +map<string,double>$' "buckets wrap the output in a map"
head -3 "$TMP/out" | tr -s ' ' | paste -sd' ' >"$TMP/first3"
has first3 "user_id string ds string amount_count_1h long" "GroupBy columns start with keys, ds"

run "columns Join --warehouse" 0 "$TESSERA" columns --warehouse "$EX/warehouse" "$EX/joins/payments/checkout_features.v1"
head -6 "$TMP/out" | awk '{print $1}' | paste -sd' ' >"$TMP/left"
has left "checkout_id user_id merchant_id cart_value ts ds" "Join columns: left, ts, ds first"
has_re out '^cart_vs_avg_30d +double$' "derivation typed"
has_re out '^user_payments_card_txn_features_v1_amount_sum_7d +double$' "part prefix + GroupBy clean name"
has_re out '^user_country +string$' "rename derivation"
if grep -qE '^users_user_profile_v1_country ' "$TMP/out"; then
    fail "a rename source must not be repeated by *"
else pass "rename source dropped from *"; fi
run "columns -o json" 0 "$TESSERA" columns -o json --warehouse "$EX/warehouse" "$EX/joins/payments/checkout_features.v1"
has out '{"name":"payments.checkout_features.v1","kind":"Join","left_all_columns":false,"columns":[{"name":"checkout_id","type":"string"}' "json output"

# ---- bad configs ----------------------------------------------------------------------------
mkdir -p "$TMP/bad" "$TMP/mixed"
cat >"$TMP/bad/card_txn.v1" <<'JSON'
{"metaData": {"name": "payments.card_txn.v1"},
 "sources": [{"events": {"table": "payments.card_txn",
   "query": {"selects": {"user_id": "user_id", "amount": "amount"}, "timeColumn": "ts"}}}],
 "keyColumns": ["user_id"],
 "aggregations": [
   {"inputColumn": "amount", "operation": 7},
   {"inputColumn": "amount", "operation": 6, "windows": [{"length": 0, "timeUnit": 1}]},
   {"inputColumn": "amount", "operation": 13, "argMap": {}},
   {"inputColumn": "merchant_id", "operation": 3}]}
JSON
run "validate a config with three errors" 1 "$TESSERA" validate "$TMP/bad/card_txn.v1"
has err "$TMP/bad/card_txn.v1: aggregations[2].argMap.k: required for LAST_K" "k required, with path"
has err "$TMP/bad/card_txn.v1: aggregations[1].windows[0].length: must be > 0" "window length, with path"
has err "$TMP/bad/card_txn.v1: aggregations[3].inputColumn: input column 'merchant_id' is not produced" "input column, with path"
has err "1 config: 0 ok, 1 invalid (3 errors)" "summary counts every error"

printf '{\n  "metaData": {"name": "x"},\n  "keyColumns": ["a",]\n}\n' >"$TMP/bad/broken.v1"
run "malformed JSON" 1 "$TESSERA" validate "$TMP/bad/broken.v1"
has_re err "^$TMP/bad/broken.v1:3:[0-9]+: malformed JSON" "malformed JSON names file:line:column"

cp "$EX/group_bys/payments/merchant_txn_features.v1" "$TMP/mixed/good.v1"
cp "$TMP/bad/card_txn.v1" "$TMP/mixed/bad.v1"
echo "notes" >"$TMP/mixed/README.md"
echo '{}' >"$TMP/mixed/.hidden"
run "validate a directory with one bad config" 1 "$TESSERA" validate "$TMP/mixed"
has out "ok $TMP/mixed/good.v1 (GroupBy payments.merchant_txn_features.v1)" "good file still reported ok"
has err "2 configs: 1 ok, 1 invalid" "README and hidden files are skipped"

run "validate a missing path" 3 "$TESSERA" validate "$TMP/nope.v1"
has err "$TMP/nope.v1: cannot open" "missing path is named"
run "columns of an invalid config" 1 "$TESSERA" columns "$TMP/bad/card_txn.v1"
printf '{"metaData": {"name": "sq.v1"}, "query": "SELECT 1"}\n' >"$TMP/sq.v1"
run "validate a StagingQuery" 0 "$TESSERA" validate "$TMP/sq.v1"
has out "(StagingQuery sq.v1)" "StagingQuery kind reported"
run "columns of a StagingQuery" 1 "$TESSERA" columns "$TMP/sq.v1"

# A Join whose left has no selects and no schema passes every raw column through.
cat >"$TMP/rawleft.v1" <<'JSON'
{"metaData": {"name": "j.v1"}, "left": {"events": {"table": "ns.left"}},
 "joinParts": [{"groupBy": {"metaData": {"name": "g"},
   "sources": [{"events": {"table": "t", "query": {"selects": {"k": "k", "v": "v"}}}}],
   "keyColumns": ["k"], "aggregations": [{"inputColumn": "v", "operation": 6}]}}],
 "derivations": [{"name": "*", "expression": "*"}, {"name": "x", "expression": "left_col + g_v_count"}]}
JSON
run "columns of a Join with a raw left" 0 "$TESSERA" columns "$TMP/rawleft.v1"
has_re out '^\* +any \(every column of ns.left\)$' "raw left columns shown as *"
has_re out '^g_v_count +long$' "part column after ts, ds"
run "columns -o json of a raw left" 0 "$TESSERA" columns -o json "$TMP/rawleft.v1"
has out '"left_all_columns":true' "json flags the raw left"

# zipline dialect: op 18 is APPROX_FREQUENT_K there, APPROX_HISTOGRAM_K in airbnb.
cat >"$TMP/dialect.v1" <<'JSON'
{"metaData": {"name": "d.v1", "executionInfo": {}},
 "sources": [{"events": {"table": "t", "query": {"selects": {"k": "k", "v": "v"}}}}],
 "keyColumns": ["k"], "aggregations": [{"inputColumn": "v", "operation": 18}]}
JSON
run "columns zipline op 18" 0 "$TESSERA" columns "$TMP/dialect.v1"
has_re out '^v_approx_frequent_k ' "zipline dialect detected from executionInfo"
run "columns --dialect airbnb op 18" 0 "$TESSERA" columns --dialect airbnb "$TMP/dialect.v1"
has_re out '^v_approx_histogram_k ' "--dialect overrides detection"

echo "cli_config: $fails failure(s)"
[ "$fails" -eq 0 ]
