/*
 * test_expr.c — the expression engine (common/expr_*.c) function by function: operators with
 * null propagation, three-valued logic, IN/LIKE/CASE/CAST edge cases, every built-in, the date
 * functions against tsr/time.h, TSR_ANY columns, and the error messages (type errors, unknown
 * names, syntax errors with column and caret).
 *
 * Most checks go through ev(): compile one expression over the test schema, run it on the
 * current row, and render the result as JSON text ("null", "3", "2.5", "\"ab\"", or
 * "ERR <code>: <message>" when compiling fails). ev() also asserts the engine's typing
 * invariant: a non-null result's kind equals the static output type unless that is ANY.
 */
#include "tsr_test.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "expr_int.h"
#include "tsr/expr.h"
#include "tsr/time.h"

/* Check records every passing ck_assert (a pipe write each): hot loops test first. */
#define CHECK(cond, ...) do { if (!(cond)) ck_abort_msg(__VA_ARGS__); } while (0)

enum { C_A, C_B, C_X, C_Y, C_S, C_T, C_FLAG, C_ANY, C_N, C_LST, NCOLS };
static const char *const k_names[NCOLS] = {"a", "b", "x", "y", "s", "t", "flag", "any", "n", "lst"};
static tsr_type_t k_types[NCOLS];
static tsr_value_t g_row[NCOLS];
static char g_out[2048];
static tsr_type_t g_type;

static tsr_schema_t schema(void) {
    k_types[C_A] = TSR_LONG;
    k_types[C_B] = TSR_LONG;
    k_types[C_X] = TSR_DOUBLE;
    k_types[C_Y] = TSR_DOUBLE;
    k_types[C_S] = TSR_STRING;
    k_types[C_T] = TSR_STRING;
    k_types[C_FLAG] = TSR_BOOL;
    k_types[C_ANY] = TSR_ANY;
    k_types[C_N] = TSR_LONG;
    k_types[C_LST] = TSR_TYPE_LIST(TSR_LONG);
    tsr_schema_t s = {NCOLS, k_names, k_types};
    return s;
}

static void row_default(void) {
    g_row[C_A] = tsr_value_long(7);
    g_row[C_B] = tsr_value_long(-3);
    g_row[C_X] = tsr_value_double(2.5);
    g_row[C_Y] = tsr_value_double(-0.5);
    g_row[C_S] = tsr_value_string("Hello", 5);
    g_row[C_T] = tsr_value_string("", 0);
    g_row[C_FLAG] = tsr_value_bool(1);
    g_row[C_ANY] = tsr_value_long(5);
    g_row[C_N] = tsr_value_null();
    static const tsr_value_t items[2] = {{TSR_LONG, 0, {.l = 1}}, {TSR_LONG, 0, {.l = 2}}};
    g_row[C_LST] = tsr_value_list(items, 2);
}

static const char *ev(const char *src) {
    tsr_schema_t sc = schema();
    tsr_program_t *p = tsr_program_new(&sc);
    tsr_error_t err;
    tsr_error_clear(&err);
    int rc = tsr_program_add(p, src, &g_type, &err);
    if (rc < 0) {
        ck_assert_int_eq(err.code, rc);
        snprintf(g_out, sizeof g_out, "ERR %s: %s", tsr_error_name(rc), err.msg);
    } else {
        ck_assert_int_eq(rc, 0);
        tsr_vm_t *vm = tsr_vm_new(p);
        tsr_value_t out;
        tsr_vm_run(vm, g_row, &out);
        if (out.kind != TSR_NULL && g_type != TSR_ANY)
            ck_assert_msg(out.kind == tsr_type_kind(g_type), "%s: kind %d but static type %u", src,
                          out.kind, g_type);
        tsr_buf_t b;
        tsr_buf_init(&b);
        tsr_value_to_json(&out, &b);
        snprintf(g_out, sizeof g_out, "%s", tsr_buf_cstr(&b));
        tsr_buf_free(&b);
        tsr_vm_free(vm);
    }
    tsr_program_free(p);
    return g_out;
}

/* Like ev(), returning the raw double (NaN survives, unlike JSON). */
static double evd(const char *src) {
    tsr_schema_t sc = schema();
    tsr_program_t *p = tsr_program_new(&sc);
    ck_assert_int_eq(tsr_program_add(p, src, NULL, NULL), 0);
    tsr_vm_t *vm = tsr_vm_new(p);
    tsr_value_t out;
    tsr_vm_run(vm, g_row, &out);
    ck_assert_msg(out.kind == TSR_DOUBLE, "%s is not a double", src);
    double d = out.u.d;
    tsr_vm_free(vm);
    tsr_program_free(p);
    return d;
}

#define EV(src, want) ck_assert_str_eq(ev(src), want)

static void ev_fmt(const char *want, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void ev_fmt(const char *want, const char *fmt, ...) {
    char src[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(src, sizeof src, fmt, ap);
    va_end(ap);
    ck_assert_msg(strcmp(ev(src), want) == 0, "%s: got %s, want %s", src, g_out, want);
}

/* ---------------------------------------------------------------- arithmetic */

START_TEST(test_arith) {
    row_default();
    EV("1 + 2", "3");
    EV("1 + 2 * 3", "7");
    EV("(1 + 2) * 3", "9");
    EV("2 - 3 - 4", "-5");
    EV("24 / 4 / 2", "3.0");
    EV("7 / 2", "3.5");         /* Spark's / is fractional */
    ck_assert_int_eq(g_type, TSR_DOUBLE);
    EV("7 % 3", "1");
    ck_assert_int_eq(g_type, TSR_LONG);
    EV("-7 % 3", "-1");
    EV("7 % -3", "1");
    EV("7.5 % 2", "1.5");
    EV("a * 2", "14");
    EV("a + x", "9.5");
    ck_assert_int_eq(g_type, TSR_DOUBLE);
    EV("x * 2", "5.0");
    EV("a - b", "10");
    EV("-a", "-7");
    EV("- -a", "7");
    EV("-x", "-2.5");
    EV("+a", "7");
    EV("1e3", "1000.0");
    EV(".5 + 1.", "1.5");
    EV("2.5E-1", "0.25");
    EV("9223372036854775808", "9.223372036854776e+18");     /* too big for a long: double */
    EV("-9223372036854775808", "-9223372036854775808");
    /* division and modulo by zero are null */
    EV("1 / 0", "null");
    EV("1.5 / 0", "null");
    EV("a / (b + 3)", "null");
    EV("a % 0", "null");
    EV("x % 0.0", "null");
    /* long arithmetic wraps (two's complement), without UB */
    EV("9223372036854775807 + 1", "-9223372036854775808");
    EV("-9223372036854775807 - 2", "9223372036854775807");
    EV("4611686018427387904 * 4", "0");
    EV("-9223372036854775808 % -1", "0");
    EV("-(-9223372036854775808)", "-9223372036854775808");
    g_row[C_A] = tsr_value_long(INT64_MIN);
    EV("-a", "-9223372036854775808");
    EV("a % -1", "0");
    EV("a * -1", "-9223372036854775808");
    row_default();
    /* null propagation through every operator */
    const char *ops[] = {"+", "-", "*", "/", "%"};
    for (int i = 0; i < 5; i++) {
        ev_fmt("null", "a %s n", ops[i]);
        ev_fmt("null", "n %s a", ops[i]);
        ev_fmt("null", "x %s n", ops[i]);
        ev_fmt("null", "NULL %s 1", ops[i]);
        ev_fmt("null", "1.5 %s NULL", ops[i]);
    }
    EV("-n", "null");
    EV("-NULL", "null");
}
END_TEST

START_TEST(test_compare) {
    row_default();
    struct { const char *src, *want; } k[] = {
        {"1 = 1", "true"}, {"1 == 1", "true"}, {"1 = 2", "false"}, {"1 != 2", "true"},
        {"1 <> 1", "false"}, {"1 < 2", "true"}, {"2 <= 2", "true"}, {"3 > 2", "true"},
        {"2 >= 3", "false"}, {"1 = 1.0", "true"}, {"1 < 1.5", "true"}, {"2.5 > 2", "true"},
        {"a = 7", "true"}, {"x = 2.5", "true"}, {"a > x", "true"}, {"x >= a", "false"},
        {"'abc' < 'abd'", "true"}, {"'ab' < 'abc'", "true"}, {"'B' < 'a'", "true"},
        {"s = 'Hello'", "true"}, {"s = 'hello'", "false"}, {"t = ''", "true"}, {"s > t", "true"},
        {"TRUE > FALSE", "true"}, {"flag = TRUE", "true"}, {"flag != TRUE", "false"},
        {"a = n", "null"}, {"n = n", "null"}, {"n <> 1", "null"}, {"s < NULL", "null"},
        {"NULL = NULL", "null"}, {"x > n", "null"},
        {"9223372036854775807 = 9223372036854775806", "false"},
        {"CAST('NaN' AS double) = CAST('NaN' AS double)", "true"},
        {"CAST('NaN' AS double) > 1e300", "true"},
        {"1 < 2 = TRUE", "true"},
    };
    for (size_t i = 0; i < sizeof k / sizeof k[0]; i++)
        ck_assert_msg(strcmp(ev(k[i].src), k[i].want) == 0, "%s: got %s want %s", k[i].src, g_out, k[i].want);
}
END_TEST

/* AND / OR / NOT over {TRUE, FALSE, NULL} against the SQL truth tables. */
START_TEST(test_three_valued) {
    row_default();
    const char *v[3] = {"TRUE", "FALSE", "NULL"};
    const char *want_and[3][3] = {{"true", "false", "null"}, {"false", "false", "false"},
                                  {"null", "false", "null"}};
    const char *want_or[3][3] = {{"true", "true", "true"}, {"true", "false", "null"},
                                 {"true", "null", "null"}};
    const char *want_not[3] = {"false", "true", "null"};
    for (int i = 0; i < 3; i++) {
        for (int j = 0; j < 3; j++) {
            ev_fmt(want_and[i][j], "%s AND %s", v[i], v[j]);
            ev_fmt(want_or[i][j], "%s OR %s", v[i], v[j]);
            /* the same through columns and comparisons (non-literal operands) */
            const char *cv[3] = {"(a = 7)", "(a = 8)", "(n = 1)"};
            ev_fmt(want_and[i][j], "%s AND %s", cv[i], cv[j]);
            ev_fmt(want_or[i][j], "%s or %s", cv[i], cv[j]);
        }
        ev_fmt(want_not[i], "NOT %s", v[i]);
    }
    EV("NOT NOT TRUE", "true");
    /* precedence: NOT > AND > OR */
    EV("TRUE OR TRUE AND FALSE", "true");
    EV("(TRUE OR TRUE) AND FALSE", "false");
    EV("NOT FALSE AND FALSE", "false");
    EV("NOT a = 8", "true");
}
END_TEST

START_TEST(test_null_in_between) {
    row_default();
    EV("n IS NULL", "true");
    EV("n IS NOT NULL", "false");
    EV("a IS NULL", "false");
    EV("a is not null", "true");
    EV("NULL IS NULL", "true");
    EV("lst IS NOT NULL", "true");
    EV("(a + n) IS NULL", "true");
    EV("1 IN (1, 2)", "true");
    EV("3 IN (1, 2)", "false");
    EV("3 IN (1, NULL)", "null");
    EV("1 IN (1, NULL)", "true");
    EV("NULL IN (1, 2)", "null");
    EV("n IN (1, 2)", "null");
    EV("3 NOT IN (1, 2)", "true");
    EV("1 NOT IN (1, 2)", "false");
    EV("3 NOT IN (1, NULL)", "null");
    EV("1 IN (1.0, 3)", "true");
    EV("x IN (1, 2.5)", "true");
    EV("s IN ('a', 'Hello')", "true");
    EV("s IN ('a', 'hello')", "false");
    EV("a IN (b, a)", "true");
    EV("a + 1 IN (8)", "true");
    EV("a BETWEEN 1 AND 7", "true");
    EV("a BETWEEN 8 AND 9", "false");
    EV("a NOT BETWEEN 8 AND 9", "true");
    EV("x BETWEEN 2 AND 3", "true");
    EV("n BETWEEN 1 AND 2", "null");
    EV("a BETWEEN 1 AND 7 AND FALSE", "false");
    EV("'b' BETWEEN 'a' AND 'c'", "true");
}
END_TEST

START_TEST(test_like) {
    row_default();
    struct { const char *s, *p; int want; } k[] = {
        {"abc", "abc", 1}, {"abc", "ab", 0}, {"abc", "a%", 1}, {"abc", "%c", 1},
        {"abc", "%b%", 1}, {"abc", "%d%", 0}, {"abc", "a_c", 1}, {"abc", "a_", 0},
        {"abc", "___", 1}, {"abc", "____", 0}, {"abc", "%", 1}, {"", "%", 1}, {"", "_", 0},
        {"", "", 1}, {"a", "", 0}, {"a%c", "a\\%c", 1}, {"abc", "a\\%c", 0},
        {"a_c", "a\\_c", 1}, {"abc", "a\\_c", 0}, {"aaa", "a%a%a", 1}, {"aa", "a%a%a", 0},
        {"mississippi", "%iss%ppi", 1}, {"mississippi", "m%ss%z", 0}, {"ab", "ab%%", 1},
        {"a\\b", "a\\\\b", 1}, {"\xc3\xa9", "_", 1}, {"x\xc3\xa9y", "x_y", 1},
        {"\xc3\xa9t\xc3\xa9", "%t_", 1}, {"ABC", "abc", 0}, {"abcabc", "%abc", 1},
        {"ab\\", "ab\\", 1},
    };
    for (size_t i = 0; i < sizeof k / sizeof k[0]; i++) {
        ev_fmt(k[i].want ? "true" : "false", "'%s' LIKE '%s'", k[i].s, k[i].p);
        ev_fmt(k[i].want ? "false" : "true", "'%s' NOT LIKE '%s'", k[i].s, k[i].p);
        ck_assert_int_eq(tsr__like(k[i].s, strlen(k[i].s), k[i].p, strlen(k[i].p)), k[i].want);
    }
    EV("s LIKE 'H%o'", "true");
    EV("NULL LIKE 'a'", "null");
    EV("s LIKE NULL", "null");
    EV("s LIKE CONCAT(LOWER('H'), '%')", "false");
    EV("s LIKE CONCAT(UPPER('h'), '%')", "true");
}
END_TEST

START_TEST(test_case_if_coalesce) {
    row_default();
    EV("CASE WHEN a > 5 THEN 'big' WHEN a > 2 THEN 'mid' ELSE 'small' END", "\"big\"");
    g_row[C_A] = tsr_value_long(3);
    EV("CASE WHEN a > 5 THEN 'big' WHEN a > 2 THEN 'mid' ELSE 'small' END", "\"mid\"");
    g_row[C_A] = tsr_value_null();
    EV("CASE WHEN a > 5 THEN 'big' WHEN a > 2 THEN 'mid' ELSE 'small' END", "\"small\"");
    EV("CASE WHEN a > 5 THEN 'big' END", "null");
    row_default();
    EV("case when a > 5 then 1 else 2.5 end", "1.0");       /* unified to double */
    ck_assert_int_eq(g_type, TSR_DOUBLE);
    EV("CASE WHEN a > 50 THEN 1 ELSE 2.5 END", "2.5");
    EV("CASE WHEN a > 5 THEN NULL ELSE 2 END", "null");
    ck_assert_int_eq(g_type, TSR_LONG);
    EV("CASE a WHEN 1 THEN 'one' WHEN 7 THEN 'seven' ELSE 'other' END", "\"seven\"");
    EV("CASE a WHEN 1 THEN 'one' ELSE 'other' END", "\"other\"");
    EV("CASE n WHEN 1 THEN 'one' ELSE 'other' END", "\"other\"");  /* null matches nothing */
    EV("CASE s WHEN 'Hello' THEN 1 END", "1");
    EV("CASE WHEN n = 1 THEN 1 WHEN TRUE THEN 2 END", "2");
    EV("CASE WHEN a > 5 THEN CASE WHEN x > 2 THEN 'a' ELSE 'b' END ELSE 'c' END", "\"a\"");
    EV("IF(a > 5, 1, 2)", "1");
    EV("IF(a > 50, 1, 2)", "2");
    EV("IF(NULL, 1, 2)", "2");
    EV("IF(n > 1, 1, 2)", "2");
    EV("IF(flag, x, a)", "2.5");
    EV("IF(NOT flag, x, a)", "7.0");
    EV("IF(flag, a, x)", "7.0");        /* the taken branch is long, converted on its way out */
    EV("CASE WHEN flag THEN a WHEN a > 0 THEN b ELSE x END", "7.0");
    EV("CASE WHEN NOT flag THEN x WHEN a > 0 THEN b ELSE a END", "-3.0");
    EV("COALESCE(n, a, x)", "7.0");
    EV("IF(n IS NULL, 0, n) / 3", "0.0");
    EV("COALESCE(n, 2)", "2");
    EV("COALESCE(n, n)", "null");
    EV("COALESCE(n, 1, 2.5)", "1.0");
    EV("COALESCE(a)", "7");
    EV("COALESCE(NULL, s, 'x')", "\"Hello\"");
    EV("NVL(n, 3)", "3");
    EV("IFNULL(n, a)", "7");
    EV("COALESCE(lst, lst)", "[1,2]");
}
END_TEST

START_TEST(test_cast) {
    row_default();
    struct { const char *src, *want; } k[] = {
        {"CAST('12' AS long)", "12"}, {"CAST('12abc' AS long)", "null"},
        {"CAST(' 12 ' AS bigint)", "12"}, {"CAST('12.7' AS int)", "12"},
        {"CAST('-12.7' AS int)", "-12"}, {"CAST('+5' AS long)", "5"}, {"CAST('' AS long)", "null"},
        {"CAST('-' AS long)", "null"}, {"CAST('1e3' AS long)", "null"},
        {"CAST('99999999999999999999' AS long)", "null"},
        {"CAST('9223372036854775807' AS long)", "9223372036854775807"},
        {"CAST('-9223372036854775808' AS long)", "-9223372036854775808"},
        {"CAST('9223372036854775808' AS long)", "null"},
        {"CAST(1e19 AS bigint)", "null"}, {"CAST(-1e19 AS bigint)", "null"},
        {"CAST(-1.9 AS int)", "-1"}, {"CAST(1.9 AS long)", "1"}, {"CAST(TRUE AS long)", "1"},
        {"CAST('1.5' AS double)", "1.5"}, {"CAST(' 2e3 ' AS double)", "2000.0"},
        {"CAST('abc' AS double)", "null"}, {"CAST('0x10' AS double)", "null"},
        {"CAST('1.5x' AS double)", "null"}, {"CAST(3 AS double)", "3.0"},
        {"CAST(12 AS string)", "\"12\""}, {"CAST(-12 AS varchar(10))", "\"-12\""},
        {"CAST(1.5 AS string)", "\"1.5\""}, {"CAST(2.0 AS string)", "\"2.0\""},
        {"CAST(0.1 AS string)", "\"0.1\""}, {"CAST(TRUE AS string)", "\"true\""},
        {"CAST('yes' AS boolean)", "true"}, {"CAST('False' AS boolean)", "false"},
        {"CAST('maybe' AS boolean)", "null"}, {"CAST(0 AS boolean)", "false"},
        {"CAST(2 AS bool)", "true"}, {"CAST(NULL AS long)", "null"}, {"CAST(n AS string)", "null"},
        {"CAST(x AS decimal(10, 2))", "2.5"}, {"CAST(a AS long)", "7"},
        {"CAST(CAST(a AS string) AS long) + 1", "8"},
        {"CAST(CAST('NaN' AS double) AS long)", "null"},
    };
    for (size_t i = 0; i < sizeof k / sizeof k[0]; i++)
        ck_assert_msg(strcmp(ev(k[i].src), k[i].want) == 0, "%s: got %s want %s", k[i].src, g_out, k[i].want);
    ck_assert(isnan(evd("CAST('NaN' AS double)")));
    ck_assert(isinf(evd("CAST('-Infinity' AS double)")));
    ck_assert_str_eq(ev("CAST(CAST('Infinity' AS double) AS string)"), "\"Infinity\"");
    ck_assert_ptr_nonnull(strstr(ev("CAST(a AS foo)"), "ERR EPARSE: syntax error at column 11: unknown type 'foo'"));
    ck_assert_ptr_nonnull(strstr(ev("CAST(lst AS long)"), "ERR ETYPE: CAST cannot convert list<long> to long"));
    EV("CAST(lst AS array<bigint>)", "[1,2]");
}
END_TEST

START_TEST(test_math) {
    row_default();
    struct { const char *src, *want; } k[] = {
        {"ABS(-3)", "3"}, {"ABS(b)", "3"}, {"ABS(-2.5)", "2.5"}, {"ABS(n)", "null"},
        {"ABS(-9223372036854775808)", "-9223372036854775808"},
        {"LN(1)", "0.0"}, {"LN(0)", "null"}, {"LN(-1)", "null"}, {"LN(n)", "null"},
        {"LOG(1)", "0.0"}, {"LOG(2, 8)", "3.0"}, {"LOG(0, 8)", "null"}, {"LOG(2, -1)", "null"},
        {"LOG10(1000)", "3.0"}, {"LOG10(0)", "null"}, {"EXP(0)", "1.0"}, {"EXP(n)", "null"},
        {"POW(2, 10)", "1024.0"}, {"POWER(2.0, -1)", "0.5"}, {"POW(n, 2)", "null"},
        {"SQRT(16)", "4.0"}, {"SQRT(-1)", "null"}, {"SQRT(0)", "0.0"},
        {"FLOOR(-1.5)", "-2"}, {"FLOOR(1.5)", "1"}, {"FLOOR(5)", "5"}, {"CEIL(1.2)", "2"},
        {"CEILING(-1.2)", "-1"}, {"CEIL(1e300)", "null"}, {"FLOOR(n)", "null"},
        {"ROUND(2.5)", "3.0"}, {"ROUND(-2.5)", "-3.0"}, {"ROUND(2.4)", "2.0"},
        {"ROUND(2.675, 2)", "2.68"}, {"ROUND(1.005, 2)", "1.01"}, {"ROUND(-1.005, 2)", "-1.01"},
        {"ROUND(0.5)", "1.0"}, {"ROUND(0.49999999999999994)", "0.0"}, {"ROUND(123.456, -1)", "120.0"},
        {"ROUND(999.5)", "1000.0"}, {"ROUND(9.995, 2)", "10.0"}, {"ROUND(1.5, 400)", "1.5"},
        {"ROUND(15, -1)", "20"}, {"ROUND(-15, -1)", "-20"}, {"ROUND(14, -1)", "10"},
        {"ROUND(7)", "7"}, {"ROUND(7, 2)", "7"}, {"ROUND(7, -30)", "0"}, {"ROUND(x, n)", "null"},
        {"ROUND(1e-5, 2)", "0.0"}, {"ROUND(123456789.125, 2)", "123456789.13"},
        {"GREATEST(1, 2.5, n)", "2.5"}, {"GREATEST(3, 1)", "3"}, {"LEAST(3, 1, 2)", "1"},
        {"LEAST('b', 'a')", "\"a\""}, {"GREATEST(n, n)", "null"}, {"LEAST(n, 4)", "4"},
        {"GREATEST(a, b, x)", "7.0"},
    };
    for (size_t i = 0; i < sizeof k / sizeof k[0]; i++)
        ck_assert_msg(strcmp(ev(k[i].src), k[i].want) == 0, "%s: got %s want %s", k[i].src, g_out, k[i].want);
    ev("ROUND(a)");
    ck_assert_int_eq(g_type, TSR_LONG);
    ev("ROUND(x)");
    ck_assert_int_eq(g_type, TSR_DOUBLE);
    ev("GREATEST(a, x)");
    ck_assert_int_eq(g_type, TSR_DOUBLE);
    ck_assert_double_eq_tol(evd("EXP(1)"), M_E, 1e-15);
    ck_assert_double_eq_tol(evd("LN(10)"), log(10), 1e-15);
}
END_TEST

START_TEST(test_strings) {
    row_default();
    struct { const char *src, *want; } k[] = {
        {"LOWER(s)", "\"hello\""}, {"UPPER(s)", "\"HELLO\""}, {"lower('abc')", "\"abc\""},
        {"UPPER('\xc3\xa9" "a')", "\"\xc3\xa9" "A\""}, {"LOWER(NULL)", "null"}, {"UCASE(s)", "\"HELLO\""},
        {"LENGTH(s)", "5"}, {"LENGTH(t)", "0"}, {"LENGTH('h\xc3\xa9llo')", "5"}, {"LENGTH(NULL)", "null"},
        {"SUBSTR('hello', 2)", "\"ello\""}, {"SUBSTR('hello', 2, 3)", "\"ell\""},
        {"SUBSTR('hello', 1, 2)", "\"he\""}, {"SUBSTR('hello', 0, 2)", "\"he\""},
        {"SUBSTR('hello', -3)", "\"llo\""}, {"SUBSTR('hello', -3, 2)", "\"ll\""},
        {"SUBSTR('hello', 10)", "\"\""}, {"SUBSTR('hello', 2, -1)", "\"\""},
        {"SUBSTR('hello', -10, 3)", "\"\""}, {"SUBSTR('hello', -10, 7)", "\"he\""},
        {"SUBSTR('hello', 2, 9223372036854775807)", "\"ello\""},
        {"SUBSTR('hello', -9223372036854775808, 9223372036854775807)", "\"hell\""},
        {"SUBSTR('hello', -9223372036854775808, -9223372036854775808)", "\"\""},
        {"SUBSTR('hello', 9223372036854775807, 9223372036854775807)", "\"\""},
        {"SUBSTR('hello', 3, 0)", "\"\""},
        {"SUBSTRING('h\xc3\xa9llo', 2, 2)", "\"\xc3\xa9l\""}, {"SUBSTR(s, n)", "null"},
        {"SUBSTR(NULL, 1)", "null"},
        {"CONCAT('a', 'b')", "\"ab\""}, {"CONCAT('a', 1, 2.5, TRUE)", "\"a12.5true\""},
        {"CONCAT(s)", "\"Hello\""}, {"CONCAT('a', n)", "null"}, {"CONCAT(s, '-', a, '-', x)", "\"Hello-7-2.5\""},
        {"'a' || 'b' || s", "\"abHello\""}, {"'n=' || (a + 1)", "\"n=8\""},
        {"'n=' || a + 1", "ERR ETYPE: operator '+' expects numbers, got string and long"}, {"s || n", "null"},
        {"TRIM('  a b  ')", "\"a b\""}, {"TRIM('   ')", "\"\""}, {"TRIM(NULL)", "null"},
        {"'it''s'", "\"it's\""}, {"\"dq\"\"x\"", "\"dq\\\"x\""},
        {"LENGTH(CONCAT(s, s, s))", "15"},
    };
    for (size_t i = 0; i < sizeof k / sizeof k[0]; i++)
        ck_assert_msg(strcmp(ev(k[i].src), k[i].want) == 0, "%s: got %s want %s", k[i].src, g_out, k[i].want);
}
END_TEST

/* Every function and operator with a null in each argument position gives null (and a
 * non-null result with all arguments present). */
START_TEST(test_null_everywhere) {
    row_default();
    struct { const char *name; int n; const char *args[3]; } k[] = {
        {"ABS", 1, {"-1"}}, {"LN", 1, {"2"}}, {"LOG", 1, {"2"}}, {"LOG", 2, {"2", "8"}},
        {"LOG10", 1, {"10"}}, {"EXP", 1, {"1"}}, {"POW", 2, {"2", "3"}}, {"POWER", 2, {"2", "3"}},
        {"SQRT", 1, {"4"}}, {"FLOOR", 1, {"1.5"}}, {"CEIL", 1, {"1.5"}}, {"CEILING", 1, {"1.5"}},
        {"ROUND", 1, {"1.5"}}, {"ROUND", 2, {"1.55", "1"}}, {"LOWER", 1, {"'A'"}},
        {"UPPER", 1, {"'a'"}}, {"LENGTH", 1, {"'a'"}}, {"SUBSTR", 2, {"'abc'", "1"}},
        {"SUBSTRING", 3, {"'abc'", "1", "2"}}, {"CONCAT", 3, {"'a'", "1", "'c'"}},
        {"TRIM", 1, {"' a '"}}, {"UNIX_TIMESTAMP", 1, {"'2024-01-01'"}},
        {"UNIX_TIMESTAMP", 2, {"'2024'", "'yyyy'"}}, {"FROM_UNIXTIME", 1, {"0"}},
        {"FROM_UNIXTIME", 2, {"0", "'yyyy'"}}, {"DATE_FORMAT", 2, {"0", "'yyyy'"}},
        {"DATE_FORMAT", 2, {"'2024-01-01'", "'yyyy'"}}, {"TO_DATE", 1, {"'2024-01-01'"}},
        {"TO_DATE", 2, {"'2024'", "'yyyy'"}},
    };
    for (size_t i = 0; i < sizeof k / sizeof k[0]; i++) {
        for (int pos = -1; pos < k[i].n; pos++) {
            char src[256];
            size_t o = (size_t)snprintf(src, sizeof src, "%s(", k[i].name);
            for (int j = 0; j < k[i].n; j++)
                o += (size_t)snprintf(src + o, sizeof src - o, "%s%s", j ? ", " : "", j == pos ? "NULL" : k[i].args[j]);
            snprintf(src + o, sizeof src - o, ")");
            ev(src);
            if (pos < 0) ck_assert_msg(strcmp(g_out, "null") != 0 && strncmp(g_out, "ERR", 3) != 0, "%s: %s", src, g_out);
            else ck_assert_msg(strcmp(g_out, "null") == 0, "%s: %s", src, g_out);
        }
    }
    /* operators, through a null column rather than the literal */
    const char *ops[] = {"-n", "NOT (n = 1)", "n + 1", "1 - n", "n * 2", "2 / n", "n % 2", "n = 1",
                         "n <> 1", "n < 1", "n >= 1", "n IN (1)", "n BETWEEN 1 AND 2",
                         "CAST(n AS string) LIKE 'a'", "'a' LIKE CAST(n AS string)", "n || 'a'",
                         "CAST(n AS double)", "CAST(n AS boolean)", "LEAST(n, n)", "COALESCE(n, n)",
                         "CASE n WHEN 1 THEN 1 END", "IF(n = 1, 1, NULL)"};
    for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++)
        ck_assert_msg(strcmp(ev(ops[i]), "null") == 0, "%s: %s", ops[i], g_out);
}
END_TEST

/* ---------------------------------------------------------------- dates */

static int64_t civil_ms(int64_t y, int mo, int d, int h, int mi, int s, int ms) {
    return tsr_days_from_civil(y, mo, d) * TSR_MS_PER_DAY + h * TSR_MS_PER_HOUR +
           mi * TSR_MS_PER_MINUTE + s * 1000 + ms;
}

START_TEST(test_dates) {
    row_default();
    char want[64];
    snprintf(want, sizeof want, "%lld", (long long)(civil_ms(2024, 3, 5, 12, 34, 56, 0) / 1000));
    EV("UNIX_TIMESTAMP('2024-03-05 12:34:56')", want);
    EV("UNIX_TIMESTAMP('2024-03-05T12:34:56.789Z')", want);
    EV("UNIX_TIMESTAMP('05/03/2024 12.34.56', 'dd/MM/yyyy HH.mm.ss')", want);
    EV("UNIX_TIMESTAMP('20240305123456', 'yyyyMMddHHmmss')", want);
    snprintf(want, sizeof want, "%lld", (long long)(civil_ms(2024, 3, 5, 0, 0, 0, 0) / 1000));
    EV("UNIX_TIMESTAMP('2024-03-05')", want);
    EV("UNIX_TIMESTAMP('Mar 5 2024', 'MMM d yyyy')", want);
    EV("UNIX_TIMESTAMP('march 05 24', 'MMMM dd yy')", want);
    EV("UNIX_TIMESTAMP('1969-12-31 23:59:59')", "-1");
    EV("UNIX_TIMESTAMP('1970-01-01 00:00:00')", "0");
    EV("UNIX_TIMESTAMP('2024-02-30')", "null");
    EV("UNIX_TIMESTAMP('2024-02-29')", "1709164800");
    EV("UNIX_TIMESTAMP('2023-02-29')", "null");
    EV("UNIX_TIMESTAMP('2024-03-05 24:00:00')", "null");
    EV("UNIX_TIMESTAMP('garbage')", "null");
    EV("UNIX_TIMESTAMP('2024-03-05 12:34:56x')", "null");
    EV("UNIX_TIMESTAMP('2024-03-05', 'yyyy-MM-dd HH')", "null");
    EV("UNIX_TIMESTAMP(NULL)", "null");
    EV("UNIX_TIMESTAMP('01:30 PM', 'hh:mm a')", "48600");
    EV("UNIX_TIMESTAMP('12:00 AM', 'hh:mm a')", "0");
    EV("FROM_UNIXTIME(0)", "\"1970-01-01 00:00:00\"");
    EV("FROM_UNIXTIME(-1)", "\"1969-12-31 23:59:59\"");
    EV("FROM_UNIXTIME(1709641496, 'yyyy/MM/dd HH:mm')", "\"2024/03/05 12:24\"");
    EV("FROM_UNIXTIME(1709641496.9)", "\"2024-03-05 12:24:56\"");
    EV("FROM_UNIXTIME(n)", "null");
    EV("FROM_UNIXTIME(9223372036854775807)", "null");
    EV("FROM_UNIXTIME(0, 'EEEE, d MMMM yyyy h a ''x''')", "\"Thursday, 1 January 1970 12 AM x\"");
    EV("FROM_UNIXTIME(0, 'yyyy''''MM '' o''''clock ''HH')", "\"1970'01  o'clock 00\"");
    snprintf(want, sizeof want, "DATE_FORMAT(%lld, 'yyyy-MM-dd HH:mm:ss.SSS')",
             (long long)civil_ms(2023, 11, 14, 22, 13, 20, 123));
    EV(want, "\"2023-11-14 22:13:20.123\"");
    EV("DATE_FORMAT('2024-03-05 01:02:03', 'MMM d, yyyy EEE')", "\"Mar 5, 2024 Tue\"");
    EV("DATE_FORMAT('2024-03-05', 'yy-M-d H:m:s S')", "\"24-3-5 0:0:0 0\"");
    EV("DATE_FORMAT('2024-03-05 01:02:03.5', 'SSSSS ''T'' yyyy')", "\"50000 T 2024\"");
    EV("DATE_FORMAT('bad', 'yyyy')", "null");
    EV("DATE_FORMAT(-62135596800000, 'yyyy-MM-dd')", "\"0001-01-01\"");
    EV("DATE_FORMAT(-62135596800001, 'yyyy-MM-dd')", "\"0000-12-31\"");
    EV("DATE_FORMAT(s, s)", "null");
    EV("DATE_FORMAT(-9223372036854775808, 'yyyy')", "null");
    EV("DATE_FORMAT(9223372036854775807, 'yyyy')", "null");
    EV("DATE_FORMAT(9223372036000000000, 'yyyy-MM-dd')", "\"292278994-08-07\"");
    EV("ROUND(1.5, -9223372036854775808)", "0.0");
    EV("ROUND(-1.5, -500)", "-0.0");    /* 'Hello': a bad pattern at run time is null */
    EV("TO_DATE('2024-03-05 12:00:00')", "\"2024-03-05\"");
    EV("TO_DATE('2024-3-5')", "\"2024-03-05\"");
    EV("TO_DATE('03/05/2024', 'MM/dd/yyyy')", "\"2024-03-05\"");
    EV("TO_DATE('03/05/2024', 'yyyy-MM-dd')", "null");
    EV("TO_DATE(0)", "\"1970-01-01\"");
    EV("TO_DATE(-1)", "\"1969-12-31\"");
    EV("TO_DATE(n)", "null");
    ck_assert_ptr_nonnull(strstr(ev("DATE_FORMAT(a, 'yyyy-QQ')"),
                                 "ERR ECONFIG: DATE_FORMAT: unsupported date pattern 'yyyy-QQ' (at 'Q')"));
    ck_assert_ptr_nonnull(strstr(ev("FROM_UNIXTIME(a, 'yyyy ''open')"), "ERR ECONFIG: FROM_UNIXTIME: unsupported"));
}
END_TEST

/* FROM_UNIXTIME / UNIX_TIMESTAMP / TO_DATE / DATE_FORMAT agree with tsr/time.h on random
 * instants across four centuries, before and after 1970. */
START_TEST(test_date_round_trip) {
    tsr_rng_t rng = {42};
    tsr_schema_t sc = schema();
    tsr_program_t *p = tsr_program_new(&sc);
    ck_assert_int_eq(tsr_program_add(p, "FROM_UNIXTIME(a)", NULL, NULL), 0);
    ck_assert_int_eq(tsr_program_add(p, "UNIX_TIMESTAMP(FROM_UNIXTIME(a))", NULL, NULL), 1);
    ck_assert_int_eq(tsr_program_add(p, "TO_DATE(FROM_UNIXTIME(a))", NULL, NULL), 2);
    ck_assert_int_eq(tsr_program_add(p, "DATE_FORMAT(b, 'yyyyMMddHHmmssSSS')", NULL, NULL), 3);
    ck_assert_int_eq(tsr_program_add(p, "UNIX_TIMESTAMP(DATE_FORMAT(b, 'yyyyMMddHHmmssSSS'), 'yyyyMMddHHmmssSSS')", NULL, NULL), 4);
    tsr_vm_t *vm = tsr_vm_new(p);
    row_default();
    for (int i = 0; i < 20000; i++) {
        int64_t sec = tsr_rng_range(&rng, -11676096000LL, 13569465599LL);    /* 1600..2399 */
        int64_t ms = sec * 1000 + tsr_rng_range(&rng, 0, 999);
        g_row[C_A] = tsr_value_long(sec);
        g_row[C_B] = tsr_value_long(ms);
        tsr_value_t out[5];
        tsr_vm_run(vm, g_row, out);
        int64_t day = tsr_floor_div(sec, 86400), rem = sec - day * 86400, y;
        int mo, d;
        tsr_civil_from_days(day, &y, &mo, &d);
        char want[40];
        snprintf(want, sizeof want, "%04lld-%02d-%02d %02d:%02d:%02d", (long long)y, mo, d,
                 (int)(rem / 3600), (int)(rem / 60 % 60), (int)(rem % 60));
        CHECK(out[0].kind == TSR_STRING && out[0].len == strlen(want) &&
              memcmp(out[0].u.s, want, out[0].len) == 0, "sec %lld: FROM_UNIXTIME", (long long)sec);
        CHECK(out[1].kind == TSR_LONG && out[1].u.l == sec, "sec %lld: round trip", (long long)sec);
        char ds[11];
        tsr_ds_format(day, ds);
        CHECK(out[2].len == 10 && memcmp(out[2].u.s, want, 10) == 0 && memcmp(out[2].u.s, ds, 10) == 0,
              "sec %lld: TO_DATE", (long long)sec);
        CHECK(out[3].len == 17, "ms %lld: DATE_FORMAT", (long long)ms);
        CHECK(out[4].kind == TSR_LONG && out[4].u.l == tsr_floor_div(ms, 1000), "ms %lld", (long long)ms);
    }
    tsr_vm_free(vm);
    tsr_program_free(p);
}
END_TEST

/* ---------------------------------------------------------------- ANY columns */

START_TEST(test_any_columns) {
    row_default();
    EV("any + 1", "6");
    ck_assert_int_eq(g_type, TSR_ANY);
    EV("any / 2", "2.5");
    EV("any * 1.5", "7.5");
    EV("-any", "-5");
    EV("any > 3", "true");
    EV("any = 5.0", "true");
    EV("any IN (1, 5)", "true");
    EV("LOWER(any)", "null");        /* long where a string is needed: null at run time */
    EV("CAST(any AS string)", "\"5\"");
    EV("CASE WHEN any > 1 THEN any ELSE 0 END", "5");
    ck_assert_int_eq(g_type, TSR_ANY);
    EV("COALESCE(any, 1)", "5");
    EV("ABS(any - 10)", "5");
    g_row[C_ANY] = tsr_value_double(2.5);
    EV("any + 1", "3.5");
    EV("any % 2", "0.5");
    EV("FLOOR(any)", "2");
    g_row[C_ANY] = tsr_value_string("MiXed", 5);
    EV("any + 1", "null");
    EV("LOWER(any)", "\"mixed\"");
    EV("any = 'MiXed'", "true");
    EV("any > 1", "null");           /* string vs number: not comparable, null */
    EV("any LIKE 'M%'", "true");
    EV("any AND TRUE", "null");
    g_row[C_ANY] = tsr_value_bool(0);
    EV("any AND TRUE", "false");
    EV("NOT any", "true");
    EV("IF(any, 1, 2)", "2");
    g_row[C_ANY] = tsr_value_null();
    EV("any IS NULL", "true");
    EV("any + 1", "null");
    g_row[C_ANY] = tsr_value_long(INT64_MAX);
    EV("any + 1", "-9223372036854775808");
    EV("any % 0", "null");
    g_row[C_ANY] = tsr_value_long(INT64_MIN);
    EV("any % -1", "0");
    EV("any - 1", "9223372036854775807");
    EV("any * -1", "-9223372036854775808");
}
END_TEST

/* Rows whose values do not match the declared schema give null, never a crash. */
START_TEST(test_mismatched_row) {
    row_default();
    g_row[C_A] = tsr_value_string("notalong", 8);
    g_row[C_S] = tsr_value_long(3);
    EV("a + 1", "null");
    EV("a > 1", "null");
    EV("LOWER(s)", "null");
    EV("s = 'x'", "null");
    EV("CASE WHEN a > 1 THEN 1.5 ELSE a END", "null");
    EV("LENGTH(s)", "null");
}
END_TEST

/* ---------------------------------------------------------------- errors */

START_TEST(test_type_errors) {
    row_default();
    struct { const char *src, *want; } k[] = {
        {"LOWER(a)", "ERR ETYPE: LOWER expects a string, got long"},
        {"UPPER(flag)", "ERR ETYPE: UPPER expects a string, got boolean"},
        {"a + s", "ERR ETYPE: operator '+' expects numbers, got long and string"},
        {"flag * 2", "ERR ETYPE: operator '*' expects numbers, got boolean and long"},
        {"-s", "ERR ETYPE: operator '-' expects a number, got string"},
        {"NOT a", "ERR ETYPE: NOT expects a boolean, got long"},
        {"a AND flag", "ERR ETYPE: AND expects boolean operands, got long and boolean"},
        {"IF(a, 1, 2)", "ERR ETYPE: IF condition expects a boolean, got long"},
        {"CASE WHEN a THEN 1 END", "ERR ETYPE: CASE WHEN expects a boolean, got long"},
        {"CASE WHEN flag THEN 1 ELSE 'x' END", "ERR ETYPE: CASE branches have incompatible types: long and string"},
        {"IF(flag, s, x)", "ERR ETYPE: IF branches have incompatible types: string and double"},
        {"COALESCE(a, s)", "ERR ETYPE: COALESCE branches have incompatible types: long and string"},
        {"SUBSTR(s, 'x')", "ERR ETYPE: SUBSTR expects a long as argument 2, got string"},
        {"SUBSTR(s, 1.5)", "ERR ETYPE: SUBSTR expects a long as argument 2, got double"},
        {"s = a", "ERR ETYPE: operator '=' cannot compare string and long"},
        {"flag < 1", "ERR ETYPE: operator '<' cannot compare boolean and long"},
        {"lst + 1", "ERR ETYPE: operator '+' expects numbers, got list<long> and long"},
        {"lst = lst", "ERR ETYPE: operator '=' cannot compare list<long> and list<long>"},
        {"a IN ('x')", "ERR ETYPE: IN cannot compare long with string"},
        {"a LIKE 'x'", "ERR ETYPE: LIKE expects strings, got long and string"},
        {"SQRT(s)", "ERR ETYPE: SQRT expects a number, got string"},
        {"ROUND(x, 1.5)", "ERR ETYPE: ROUND expects a long as argument 2, got double"},
        {"GREATEST(1, 'a')", "ERR ETYPE: GREATEST arguments have incompatible types: long and string"},
        {"CONCAT(s, lst)", "ERR ETYPE: CONCAT expects a scalar as argument 2, got list<long>"},
        {"UNIX_TIMESTAMP(a)", "ERR ETYPE: UNIX_TIMESTAMP expects a string, got long"},
        {"DATE_FORMAT(x, 'yyyy')", "ERR ETYPE: DATE_FORMAT expects a string or a long as argument 1, got double"},
        {"FROM_UNIXTIME(s)", "ERR ETYPE: FROM_UNIXTIME expects a number, got string"},
        {"a BETWEEN 's' AND 'z'", "ERR ETYPE: operator '>=' cannot compare long and string"},
        {"s || lst", "ERR ETYPE: operator '||' expects scalars, got string and list<long>"},
        {"CASE a WHEN 'x' THEN 1 END", "ERR ETYPE: operator '=' cannot compare long and string"},
    };
    for (size_t i = 0; i < sizeof k / sizeof k[0]; i++)
        ck_assert_msg(strcmp(ev(k[i].src), k[i].want) == 0, "%s: got '%s' want '%s'", k[i].src, g_out, k[i].want);
}
END_TEST

START_TEST(test_unknown_names) {
    row_default();
    EV("foo + 1", "ERR ECONFIG: unknown column 'foo'");
    EV("a + `my col`", "ERR ECONFIG: unknown column 'my col'");
    EV("A + 1", "ERR ECONFIG: unknown column 'A'");     /* column names are case-sensitive */
    ck_assert_ptr_nonnull(strstr(ev("FOO(1)"), "ERR ECONFIG: unknown function 'FOO'"));
    ck_assert_ptr_nonnull(strstr(ev("ROUND(1, 2, 3)"), "ERR ECONFIG: ROUND expects 1 or 2 arguments, got 3"));
    ck_assert_ptr_nonnull(strstr(ev("lower()"), "ERR ECONFIG: LOWER expects 1 argument, got 0"));
    ck_assert_ptr_nonnull(strstr(ev("GREATEST(1)"), "ERR ECONFIG: GREATEST expects at least 2 arguments, got 1"));
    ck_assert_ptr_nonnull(strstr(ev("IF(TRUE, 1)"), "ERR ECONFIG: IF expects 3 arguments, got 2"));
    ck_assert_ptr_nonnull(strstr(ev("SUBSTR('a')"), "ERR ECONFIG: SUBSTR expects 2 or 3 arguments, got 1"));
    /* function names are checked by tsr_expr_parse, without any schema */
    tsr_arena_t ar;
    tsr_arena_init(&ar, 0);
    tsr_expr_ast_t *ast;
    tsr_error_t err;
    ck_assert_int_eq(tsr_expr_parse("a + my_udf(b)", &ar, &ast, &err), TSR_ECONFIG);
    ck_assert_ptr_nonnull(strstr(err.msg, "unknown function 'my_udf' (at column 5)"));
    ck_assert_ptr_null(ast);
    ck_assert_int_eq(tsr_expr_parse("unknown_col + Lower(x)", &ar, &ast, &err), 0);
    ck_assert_ptr_nonnull(ast);
    tsr_arena_free(&ar);
}
END_TEST

/* Asserts a syntax error at column col whose caret line points at that column. */
static void check_syntax(const char *src, int col, const char *what) {
    tsr_arena_t ar;
    tsr_arena_init(&ar, 0);
    tsr_expr_ast_t *ast;
    tsr_error_t err;
    int rc = tsr_expr_parse(src, &ar, &ast, &err);
    ck_assert_msg(rc == TSR_EPARSE, "%s: rc %d", src, rc);
    char head[64];
    snprintf(head, sizeof head, "syntax error at column %d: ", col);
    ck_assert_msg(strncmp(err.msg, head, strlen(head)) == 0, "%s: %s", src, err.msg);
    ck_assert_msg(strstr(err.msg, what) != NULL, "%s: %s lacks %s", src, err.msg, what);
    const char *l2 = strchr(err.msg, '\n');
    ck_assert_ptr_nonnull(l2);
    const char *l3 = strchr(l2 + 1, '\n');
    ck_assert_ptr_nonnull(l3);
    ck_assert(strncmp(l2 + 1, "  ", 2) == 0 && strncmp(l3 + 1, "  ", 2) == 0);
    /* the caret sits under column col of the source line (ASCII sources here) */
    ck_assert_msg(strncmp(l2 + 3, src, strlen(src)) == 0, "source line: %s", err.msg);
    const char *caret = strchr(l3 + 1, '^');
    ck_assert_ptr_nonnull(caret);
    ck_assert_int_eq((int)(caret - (l3 + 3)), col - 1);
    for (const char *q = l3 + 1; q < caret; q++) ck_assert_int_eq(*q, ' ');
    ck_assert_int_eq(caret[1], 0);
    /* tsr_program_add reports the same */
    tsr_program_t *p = tsr_program_new(NULL);
    tsr_error_t e2;
    ck_assert_int_eq(tsr_program_add(p, src, NULL, &e2), TSR_EPARSE);
    ck_assert_str_eq(e2.msg, err.msg);
    tsr_program_free(p);
    tsr_arena_free(&ar);
}

START_TEST(test_syntax_errors) {
    check_syntax("amount * (1 + fee", 18, "expected ')' to close the '(' at column 10, got end of input");
    check_syntax("a +", 4, "expected an expression, got end of input");
    check_syntax("a + * b", 5, "expected an expression, got operator");
    check_syntax("'abc", 1, "unterminated string literal");
    check_syntax("x = `col", 5, "unterminated quoted identifier");
    check_syntax("a # b", 3, "unexpected character '#'");
    check_syntax("CASE WHEN a THEN 1", 19, "expected WHEN, ELSE or END, got end of input");
    check_syntax("CASE a END", 8, "expected WHEN, got 'END'");
    check_syntax("a NOT b", 7, "expected IN, LIKE or BETWEEN after NOT");
    check_syntax("", 1, "empty expression");
    check_syntax("   ", 4, "empty expression");
    check_syntax("a b", 3, "unexpected 'b' after the expression");
}
END_TEST

START_TEST(test_syntax_errors_more) {
    check_syntax("LOWER(a,", 9, "expected an expression, got end of input");
    check_syntax("LOWER(a b)", 9, "expected ',' or ')' in call to LOWER, got 'b'");
    check_syntax("a IN 1", 6, "expected '(' after IN");
    check_syntax("a IN (1, 2", 11, "expected ',' or ')' in IN list");
    check_syntax("a IS 1", 6, "expected NULL");
    check_syntax("CAST(a long)", 8, "expected AS");
    check_syntax("CAST(a AS long", 15, "expected ')' to close CAST");
    check_syntax("1e", 2, "malformed number exponent");
    check_syntax("12abc", 3, "unexpected character 'a' after number");
    check_syntax("a | b", 3, "unexpected character '|'");
    check_syntax("a ! b", 3, "unexpected character '!'");
    check_syntax("a + THEN", 5, "unexpected keyword THEN");
    check_syntax("x BETWEEN 1 OR 2", 13, "expected AND");
    check_syntax("``", 1, "empty quoted identifier");
    check_syntax("a  b", 4, "unexpected 'b'");
}
END_TEST

START_TEST(test_syntax_error_utf8_window_depth) {
    tsr_arena_t ar;
    tsr_arena_init(&ar, 0);
    tsr_expr_ast_t *ast;
    tsr_error_t err;
    /* columns count code points: 'é' is one column */
    ck_assert_int_eq(tsr_expr_parse("'\xc3\xa9\xc3\xa9' + )", &ar, &ast, &err), TSR_EPARSE);
    ck_assert_ptr_nonnull(strstr(err.msg, "syntax error at column 8:"));
    ck_assert_ptr_nonnull(strstr(err.msg, "\n         ^"));
    /* a long source shows a window around the position; the caret points at the culprit */
    char src[1200];
    size_t o = 0;
    for (int i = 0; i < 60; i++) o += (size_t)snprintf(src + o, sizeof src - o, "a%d + ", i);
    size_t bad = o;
    o += (size_t)snprintf(src + o, sizeof src - o, "# + ");
    for (int i = 0; i < 60; i++) o += (size_t)snprintf(src + o, sizeof src - o, "b%d + ", i);
    snprintf(src + o, sizeof src - o, "1");
    ck_assert_int_eq(tsr_expr_parse(src, &ar, &ast, &err), TSR_EPARSE);
    ck_assert_msg(strlen(err.msg) < 1024, "%zu", strlen(err.msg));
    char head[64];
    snprintf(head, sizeof head, "syntax error at column %zu:", bad + 1);
    ck_assert_ptr_nonnull(strstr(err.msg, head));
    const char *l2 = strchr(err.msg, '\n') + 3, *l3 = strchr(l2, '\n') + 3;
    ck_assert(strncmp(l2, "...", 3) == 0);
    const char *caret = strchr(l3, '^');
    ck_assert_int_eq(l2[caret - l3], '#');
    ck_assert(strstr(l2, "...\n") != NULL);
    /* deep nesting is an error, not a stack overflow */
    static char deep[20000];
    memset(deep, '(', 9000);
    memcpy(deep + 9000, "1", 2);
    ck_assert_int_eq(tsr_expr_parse(deep, &ar, &ast, &err), TSR_EPARSE);
    ck_assert_ptr_nonnull(strstr(err.msg, "nested too deeply"));
    memset(deep, '-', 9000);
    ck_assert_int_eq(tsr_expr_parse(deep, &ar, &ast, &err), TSR_EPARSE);
    for (int i = 0; i < 4000; i++) memcpy(deep + 4 * i, "NOT ", 4);
    memcpy(deep + 16000, "x", 2);
    ck_assert_int_eq(tsr_expr_parse(deep, &ar, &ast, &err), TSR_EPARSE);
    /* long left-deep chains too: the compiler recurses over the tree */
    for (int i = 0; i < 5000; i++) memcpy(deep + 2 * i, "1+", 2);
    memcpy(deep + 10000, "1", 2);
    ck_assert_int_eq(tsr_expr_parse(deep, &ar, &ast, &err), TSR_EPARSE);
    ck_assert_ptr_nonnull(strstr(err.msg, "too deeply nested (more than 1000 levels)"));
    deep[1799] = 0;     /* 899 additions: fine, and they evaluate */
    tsr_program_t *p = tsr_program_new(NULL);
    ck_assert_int_eq(tsr_program_add(p, deep, NULL, &err), 0);
    tsr_vm_t *vm = tsr_vm_new(p);
    tsr_value_t v;
    tsr_vm_run(vm, NULL, &v);
    ck_assert_int_eq(v.u.l, 900);
    tsr_vm_free(vm);
    tsr_program_free(p);
    /* many string literals cost linear memory */
    size_t o2 = 0;
    for (int i = 0; i < 3000 && o2 < sizeof deep - 16; i++) o2 += (size_t)snprintf(deep + o2, sizeof deep - o2, "'ab'||");
    memcpy(deep + o2, "'z'", 4);
    tsr_arena_t ar2;
    tsr_arena_init(&ar2, 0);
    ck_assert_int_eq(tsr_expr_parse(deep, &ar2, &ast, &err), TSR_EPARSE);   /* 3000 levels */
    ck_assert_uint_lt(ar2.total, 2000000);
    tsr_arena_free(&ar2);
    tsr_arena_free(&ar);
}
END_TEST

/* ---------------------------------------------------------------- API */

static void collect(void *ud, const char *name) {
    char *buf = ud;
    strcat(buf, name);
    strcat(buf, ",");
}

START_TEST(test_ast_api) {
    tsr_arena_t ar;
    tsr_arena_init(&ar, 0);
    tsr_expr_ast_t *ast;
    const char *name;
    char buf[256] = "";
    ck_assert_int_eq(tsr_expr_parse("b + a * b + LOWER(`select`) || c IN (a, d)", &ar, &ast, NULL), 0);
    tsr_expr_columns(ast, collect, buf);
    ck_assert_str_eq(buf, "b,a,select,c,d,");
    ck_assert_int_eq(tsr_expr_is_column(ast, &name), 0);
    ck_assert_int_eq(tsr_expr_parse("  `user id` ", &ar, &ast, NULL), 0);
    ck_assert_int_eq(tsr_expr_is_column(ast, &name), 1);
    ck_assert_str_eq(name, "user id");
    ck_assert_int_eq(tsr_expr_parse("amount", &ar, &ast, NULL), 0);
    ck_assert_int_eq(tsr_expr_is_column(ast, &name), 1);
    ck_assert_str_eq(name, "amount");
    ck_assert_int_eq(tsr_expr_parse("(amount)", &ar, &ast, NULL), 0);
    ck_assert_int_eq(tsr_expr_is_column(ast, NULL), 1);
    ck_assert_int_eq(tsr_expr_parse("`a``b`", &ar, &ast, NULL), 0);
    ck_assert_int_eq(tsr_expr_is_column(ast, &name), 1);
    ck_assert_str_eq(name, "a`b");
    ck_assert_int_eq(tsr_expr_parse("amount + 0", &ar, &ast, NULL), 0);
    ck_assert_int_eq(tsr_expr_is_column(ast, NULL), 0);
    tsr_arena_free(&ar);

    tsr_schema_t sc = schema();
    ck_assert_int_eq(tsr_schema_find(&sc, "s"), C_S);
    ck_assert_int_eq(tsr_schema_find(&sc, "zz"), -1);
}
END_TEST

START_TEST(test_program_outputs) {
    row_default();
    tsr_schema_t sc = schema();
    tsr_program_t *p = tsr_program_new(&sc);
    tsr_error_t err;
    tsr_type_t t;
    ck_assert_int_eq(tsr_program_add(p, "a + 1", &t, &err), 0);
    ck_assert_int_eq(t, TSR_LONG);
    ck_assert_int_eq(tsr_program_add(p, "LOWER(s)", &t, &err), 1);
    ck_assert_int_eq(t, TSR_STRING);
    /* failures leave the program as it was */
    ck_assert_int_eq(tsr_program_add(p, "CASE WHEN flag THEN a * 2 + x ELSE 's' END", &t, &err), TSR_ETYPE);
    ck_assert_int_eq(tsr_program_add(p, "nope * 2", &t, &err), TSR_ECONFIG);
    ck_assert_int_eq(tsr_program_add(p, "a +", &t, &err), TSR_EPARSE);
    ck_assert_int_eq(tsr_program_noutputs(p), 2);
    ck_assert_int_eq(tsr_program_add(p, "x * 2 > 4 AND flag", &t, &err), 2);
    ck_assert_int_eq(tsr_program_output_type(p, 2), TSR_BOOL);
    ck_assert_int_eq(tsr_program_add(p, "`s`", &t, &err), 3);
    ck_assert_int_eq(tsr_program_add(p, "IF(x IS NULL, 0, x) / 3", &t, &err), 4);
    ck_assert_int_eq(tsr_program_add(p, "CASE WHEN x > 1 THEN 'a' WHEN a < 0 THEN 'b' END", &t, &err), 5);
    ck_assert_int_eq(tsr_program_noutputs(p), 6);
    tsr_vm_t *vm = tsr_vm_new(p), *vm2 = tsr_vm_new(p);
    tsr_value_t out[6];
    tsr_vm_run(vm, g_row, out);
    ck_assert_int_eq(out[0].u.l, 8);
    ck_assert_int_eq(out[1].len, 5);
    ck_assert(memcmp(out[1].u.s, "hello", 5) == 0);
    ck_assert(tsr_value_truthy(&out[2]));
    ck_assert_ptr_eq(out[3].u.s, g_row[C_S].u.s);      /* a rename borrows the row */
    ck_assert(out[4].kind == TSR_DOUBLE && out[4].u.d == 2.5 / 3);
    ck_assert(out[5].kind == TSR_STRING && out[5].len == 1 && out[5].u.s[0] == 'a');
    tsr_value_t one;
    tsr_vm_run_one(vm2, 1, g_row, &one);
    ck_assert(memcmp(one.u.s, "hello", 5) == 0);
    tsr_vm_run_one(vm2, 0, g_row, &one);
    ck_assert_int_eq(one.u.l, 8);
    tsr_vm_run_one(vm2, 9, g_row, &one);
    ck_assert_int_eq(one.kind, TSR_NULL);
    /* the program is specialized on types: literal 4 is pre-converted, no CVT at run time */
    tsr_buf_t b;
    tsr_buf_init(&b);
    tsr__program_dump(p, &b);
    ck_assert_ptr_nonnull(strstr(tsr_buf_cstr(&b), "ADD_LL"));
    ck_assert_ptr_nonnull(strstr(tsr_buf_cstr(&b), "GT_DD"));
    ck_assert_ptr_null(strstr(tsr_buf_cstr(&b), "CVT_L2D"));
    /* conditions compile to fused compare-and-branch instructions */
    ck_assert_ptr_nonnull(strstr(tsr_buf_cstr(&b), "JISNULL"));
    ck_assert_ptr_nonnull(strstr(tsr_buf_cstr(&b), "GT_JDD"));
    ck_assert_ptr_nonnull(strstr(tsr_buf_cstr(&b), "LT_JLL"));
    ck_assert_ptr_null(strstr(tsr_buf_cstr(&b), "JNT"));
    tsr_buf_free(&b);
    tsr_vm_free(vm);
    tsr_vm_free(vm2);
    tsr_program_free(p);
}
END_TEST

START_TEST(test_keywords_case_insensitive) {
    row_default();
    EV("case WHEN a Is Not Null tHeN 'y' eLsE 'n' END", "\"y\"");
    EV("a between 1 and 10 And s like 'H%' oR false", "true");
    EV("cast(a as STRING)", "\"7\"");
    EV("Coalesce(n, 1) iN (1)", "true");
    EV("true", "true");
    EV("False", "false");
    EV("null", "null");
    ck_assert_int_eq(g_type, TSR_NULL);
}
END_TEST

/* Expressions as they appear in the Chronon sample configs (../shared/chronon-samples). */
START_TEST(test_chronon_sample_expressions) {
    static const char *const names[] = {"ts", "event_type", "transaction_type", "a_sum_7d", "b_last"};
    static const tsr_type_t types[] = {TSR_STRING, TSR_STRING, TSR_ANY, TSR_LONG, TSR_DOUBLE};
    tsr_schema_t sc = {5, names, types};
    tsr_program_t *p = tsr_program_new(&sc);
    tsr_error_t err;
    ck_assert_int_eq(tsr_program_add(p, "UNIX_TIMESTAMP(ts) * 1000", NULL, &err), 0);
    ck_assert_int_eq(tsr_program_add(p, "IF(event_type = 'view_listing', 1, 0)", NULL, &err), 1);
    ck_assert_int_eq(tsr_program_add(p, "event_type in ('backend_add_to_cart', 'view_listing')", NULL, &err), 2);
    ck_assert_int_eq(tsr_program_add(p, "if(transaction_type='A', 1, 0)", NULL, &err), 3);
    ck_assert_int_eq(tsr_program_add(p, "a_sum_7d / b_last", NULL, &err), 4);
    ck_assert_int_eq(tsr_program_add(p, "EXPLODE(TRANSFORM(SPLIT(x, ','), e -> CAST(e AS LONG)))", NULL, &err),
                     TSR_ECONFIG);
    ck_assert_ptr_nonnull(strstr(err.msg, "unknown function 'EXPLODE'"));
    tsr_vm_t *vm = tsr_vm_new(p);
    tsr_value_t row[5] = {tsr_value_string("2024-03-05 12:34:56", 19), tsr_value_string("view_listing", 12),
                          tsr_value_string("A", 1), tsr_value_long(10), tsr_value_double(4)};
    tsr_value_t out[5];
    tsr_vm_run(vm, row, out);
    ck_assert_int_eq(out[0].u.l, 1709642096000LL);
    ck_assert_int_eq(out[1].u.l, 1);
    ck_assert(tsr_value_truthy(&out[2]));
    ck_assert_int_eq(out[3].u.l, 1);
    ck_assert(out[4].kind == TSR_DOUBLE && out[4].u.d == 2.5);
    tsr_vm_free(vm);
    tsr_program_free(p);
}
END_TEST

static Suite *expr_suite(void) {
    Suite *s = suite_create("expr");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_arith);
    tcase_add_test(tc, test_compare);
    tcase_add_test(tc, test_three_valued);
    tcase_add_test(tc, test_null_in_between);
    tcase_add_test(tc, test_like);
    tcase_add_test(tc, test_case_if_coalesce);
    tcase_add_test(tc, test_cast);
    tcase_add_test(tc, test_math);
    tcase_add_test(tc, test_strings);
    tcase_add_test(tc, test_null_everywhere);
    tcase_add_test(tc, test_dates);
    tcase_add_test(tc, test_date_round_trip);
    tcase_add_test(tc, test_any_columns);
    tcase_add_test(tc, test_mismatched_row);
    tcase_add_test(tc, test_type_errors);
    tcase_add_test(tc, test_unknown_names);
    tcase_add_test(tc, test_syntax_errors);
    tcase_add_test(tc, test_syntax_errors_more);
    tcase_add_test(tc, test_syntax_error_utf8_window_depth);
    tcase_add_test(tc, test_ast_api);
    tcase_add_test(tc, test_program_outputs);
    tcase_add_test(tc, test_keywords_case_insensitive);
    tcase_add_test(tc, test_chronon_sample_expressions);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return tsr_test_run(expr_suite()); }
