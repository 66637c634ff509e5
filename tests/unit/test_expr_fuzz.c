/*
 * test_expr_fuzz.c — randomized checks of the expression engine:
 *   - brute force: random arithmetic trees over long/double columns are printed as SQL (with
 *     only the parentheses precedence needs), compiled, run over random rows, and compared
 *     bit for bit with a direct C evaluation of the same tree under the documented rules
 *     (wrapping long arithmetic, fractional `/`, null on division by zero, null propagation);
 *   - fuzz: thousands of random token soups and mutated/truncated valid expressions go through
 *     parse + compile + run with random rows (ANY columns holding every kind); nothing may
 *     crash (run under ASan/UBSan too) and every result must fit its static type;
 *   - scratch: tsr_vm_run stops allocating after warm-up, and strings made early in a run
 *     survive the scratch overflowing later in the same run.
 * Every generator is seeded, so a failure reproduces from the loop index.
 */
#include "tsr_test.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "expr_int.h"
#include "tsr/expr.h"

/* Check records every passing ck_assert (a pipe write each): hot loops test first. */
#define CHECK(cond, ...) do { if (!(cond)) ck_abort_msg(__VA_ARGS__); } while (0)

/* ---------------------------------------------------------------- brute force */

enum { BA, BB, BX, BY, BNCOLS };
static const char *const k_bnames[BNCOLS] = {"a", "b", "x", "y"};
static const tsr_type_t k_btypes[BNCOLS] = {TSR_LONG, TSR_LONG, TSR_DOUBLE, TSR_DOUBLE};

typedef enum { K_COL, K_LONG, K_DOUBLE, K_NEG, K_BIN } bkind_t;

typedef struct bnode {
    bkind_t kind;
    char op;            /* + - * / % */
    int col;
    int64_t l;
    double d;
    struct bnode *x, *y;
} bnode_t;

static bnode_t g_pool[4096];
static int g_npool;

static bnode_t *gen_tree(tsr_rng_t *r, int depth) {
    bnode_t *n = &g_pool[g_npool++];
    memset(n, 0, sizeof *n);
    int leaf = depth <= 0 || tsr_rng_below(r, 4) == 0;
    if (leaf) {
        switch (tsr_rng_below(r, 3)) {
        case 0: n->kind = K_COL; n->col = (int)tsr_rng_below(r, BNCOLS); break;
        case 1:
            n->kind = K_LONG;
            n->l = tsr_rng_below(r, 8) == 0 ? (int64_t)(tsr_rng_next(r) >> 1) : (int64_t)tsr_rng_below(r, 20);
            break;
        default: n->kind = K_DOUBLE; n->d = (double)tsr_rng_below(r, 4000) / 8.0; break;
        }
        return n;
    }
    if (tsr_rng_below(r, 6) == 0) {
        n->kind = K_NEG;
        n->x = gen_tree(r, depth - 1);
        return n;
    }
    n->kind = K_BIN;
    n->op = "+-*/%"[tsr_rng_below(r, 5)];
    n->x = gen_tree(r, depth - 1);
    n->y = gen_tree(r, depth - 1);
    return n;
}

static int prec(const bnode_t *n) {
    if (n->kind == K_BIN) return n->op == '+' || n->op == '-' ? 1 : 2;
    if (n->kind == K_NEG) return 3;
    return 4;
}

static void print_tree(const bnode_t *n, int parent, int right, tsr_rng_t *r, tsr_buf_t *out) {
    int p = prec(n);
    int paren = p < parent || (right && p == parent && p < 3) || tsr_rng_below(r, 10) == 0;
    if (paren) tsr_buf_putc(out, '(');
    switch (n->kind) {
    case K_COL: tsr_buf_puts(out, k_bnames[n->col]); break;
    case K_LONG: tsr_buf_printf(out, "%lld", (long long)n->l); break;
    case K_DOUBLE: {
        char tmp[40];
        snprintf(tmp, sizeof tmp, "%.17g", n->d);
        if (!strpbrk(tmp, ".e")) strcat(tmp, ".0");
        tsr_buf_puts(out, tmp);
        break;
    }
    case K_NEG:
        tsr_buf_puts(out, "- ");
        print_tree(n->x, 3, 0, r, out);
        break;
    case K_BIN:
        print_tree(n->x, p, 0, r, out);
        tsr_buf_printf(out, " %c ", n->op);
        print_tree(n->y, p, 1, r, out);
        break;
    }
    if (paren) tsr_buf_putc(out, ')');
}

/* The reference semantics, written out directly. */
static tsr_value_t beval(const bnode_t *n, const tsr_value_t *row) {
    switch (n->kind) {
    case K_COL: return row[n->col];
    case K_LONG: return tsr_value_long(n->l);
    case K_DOUBLE: return tsr_value_double(n->d);
    case K_NEG: {
        tsr_value_t v = beval(n->x, row);
        if (v.kind == TSR_LONG) return tsr_value_long((int64_t)(0 - (uint64_t)v.u.l));
        if (v.kind == TSR_DOUBLE) return tsr_value_double(-v.u.d);
        return tsr_value_null();
    }
    case K_BIN: {
        tsr_value_t a = beval(n->x, row), b = beval(n->y, row);
        if (a.kind == TSR_NULL || b.kind == TSR_NULL) return tsr_value_null();
        if (a.kind == TSR_LONG && b.kind == TSR_LONG && n->op != '/') {
            uint64_t x = (uint64_t)a.u.l, y = (uint64_t)b.u.l;
            switch (n->op) {
            case '+': return tsr_value_long((int64_t)(x + y));
            case '-': return tsr_value_long((int64_t)(x - y));
            case '*': return tsr_value_long((int64_t)(x * y));
            default:
                if (b.u.l == 0) return tsr_value_null();
                if (b.u.l == -1) return tsr_value_long(0);
                return tsr_value_long(a.u.l % b.u.l);
            }
        }
        double x = a.kind == TSR_LONG ? (double)a.u.l : a.u.d;
        double y = b.kind == TSR_LONG ? (double)b.u.l : b.u.d;
        switch (n->op) {
        case '+': return tsr_value_double(x + y);
        case '-': return tsr_value_double(x - y);
        case '*': return tsr_value_double(x * y);
        case '/': return y == 0 ? tsr_value_null() : tsr_value_double(x / y);
        default: return y == 0 ? tsr_value_null() : tsr_value_double(fmod(x, y));
        }
    }
    }
    return tsr_value_null();
}

static tsr_value_t rand_long_val(tsr_rng_t *r) {
    switch (tsr_rng_below(r, 7)) {
    case 0: return tsr_value_null();
    case 1: return tsr_value_long((int64_t)tsr_rng_next(r));
    case 6: return tsr_value_long(tsr_rng_below(r, 2) ? INT64_MIN : INT64_MAX);
    case 2: return tsr_value_long(tsr_rng_range(r, -2, 2));
    default: return tsr_value_long(tsr_rng_range(r, -1000, 1000));
    }
}

static tsr_value_t rand_double_val(tsr_rng_t *r) {
    switch (tsr_rng_below(r, 6)) {
    case 0: return tsr_value_null();
    case 1: return tsr_value_double(0.0);
    case 2: return tsr_value_double((tsr_rng_double(r) - 0.5) * 1e12);
    default: return tsr_value_double((tsr_rng_double(r) - 0.5) * 200);
    }
}

START_TEST(test_brute_force_arith) {
    tsr_rng_t r = {1000 + (uint64_t)_i};
    tsr_schema_t sc = {BNCOLS, k_bnames, k_btypes};
    for (int iter = 0; iter < 400; iter++) {
        g_npool = 0;
        bnode_t *t = gen_tree(&r, 5);
        tsr_buf_t src;
        tsr_buf_init(&src);
        print_tree(t, 0, 0, &r, &src);
        tsr_program_t *p = tsr_program_new(&sc);
        tsr_error_t err;
        int rc = tsr_program_add(p, tsr_buf_cstr(&src), NULL, &err);
        CHECK(rc == 0, "%s: %s", tsr_buf_cstr(&src), err.msg);
        tsr_vm_t *vm = tsr_vm_new(p);
        for (int k = 0; k < 50; k++) {
            tsr_value_t row[BNCOLS] = {rand_long_val(&r), rand_long_val(&r), rand_double_val(&r),
                                       rand_double_val(&r)};
            tsr_value_t got, want = beval(t, row);
            tsr_vm_run(vm, row, &got);
            CHECK(got.kind == want.kind, "%s: kind %d want %d (iter %d)", tsr_buf_cstr(&src),
                          got.kind, want.kind, iter);
            if (want.kind == TSR_LONG) {
                CHECK(got.u.l == want.u.l, "%s: %lld want %lld", tsr_buf_cstr(&src),
                              (long long)got.u.l, (long long)want.u.l);
            } else if (want.kind == TSR_DOUBLE) {
                int same = (isnan(got.u.d) && isnan(want.u.d)) ||
                           memcmp(&got.u.d, &want.u.d, sizeof(double)) == 0;
                CHECK(same, "%s: %.17g want %.17g", tsr_buf_cstr(&src), got.u.d, want.u.d);
            }
        }
        tsr_vm_free(vm);
        tsr_program_free(p);
        tsr_buf_free(&src);
    }
}
END_TEST

/* ---------------------------------------------------------------- fuzz */

enum { FA, FX, FS, FFLAG, FANY, FANY2, FLST, FNCOLS };
static const char *const k_fnames[FNCOLS] = {"a", "x", "s", "flag", "any", "any2", "lst"};

static const char *const k_corpus[] = {
    "amount * 100",
    "CASE WHEN amount > 100 THEN 'big' WHEN amount > 10 THEN 'mid' ELSE 'small' END",
    "a + x * 2 - a % 3 / (x + 1)",
    "IF(x IS NULL, 0, x) / 3",
    "CASE a WHEN 1 THEN 'one' WHEN 2 THEN 'two' END",
    "COALESCE(any, a, 0) + GREATEST(a, x, 1)",
    "LOWER(s) LIKE '%ab\\_c%' AND NOT flag OR a IN (1, 2, NULL)",
    "SUBSTR(CONCAT(s, '-', a, any), -3, 2) || TRIM(UPPER(s))",
    "CAST(s AS long) + CAST(any AS double) || CAST(x AS string)",
    "DATE_FORMAT(a, 'yyyy-MM-dd HH:mm:ss.SSS EEE MMM a')",
    "UNIX_TIMESTAMP(s, 'yyyyMMdd') + UNIX_TIMESTAMP(any)",
    "FROM_UNIXTIME(a, 'yy/M/d h:m:s') = TO_DATE(s)",
    "ROUND(x, -2) + ROUND(a, 2) + FLOOR(x) + CEIL(any) + ABS(any)",
    "LN(x) + LOG(2, any) + LOG10(a) + EXP(x) + POW(any, 2) + SQRT(any2)",
    "any BETWEEN any2 AND 10 OR any2 NOT IN ('a', 1, 2.5)",
    "LENGTH(s) > 3 AND `s` <> 'x' AND lst IS NOT NULL",
    "-(-a) - -x * -9223372036854775808",
    "any LIKE any2 OR any = any2 OR any < any2",
    "NVL(any, any2) || IFNULL(s, 'z')",
    "CASE WHEN any THEN any2 WHEN flag THEN any ELSE NULL END",
    "LEAST(any, any2, s)",
    "SUBSTR(s, a, a) || SUBSTR(s, -a) || SUBSTR(s, any, any2)",
    "ROUND(x, a) + ROUND(a, a) + ROUND(any, any2) + POW(a, any) + LOG(a, x)",
    "FROM_UNIXTIME(a) || FROM_UNIXTIME(x) || DATE_FORMAT(a, s) || TO_DATE(any, any2)",
    "a * a - a % a + -a / a + x % a",
};

static const char *const k_tokens[] = {
    "a", "x", "s", "flag", "any", "any2", "lst", "1", "0", "-1", "2.5", "1e308", "'str'", "''",
    "'%a_'", "(", ")", "(", ")", ",", "+", "-", "*", "/", "%", "=", "==", "!=", "<>", "<", "<=",
    ">", ">=", "||", "AND", "OR", "NOT", "IS", "NULL", "IN", "LIKE", "BETWEEN", "CASE", "WHEN",
    "THEN", "ELSE", "END", "CAST", "AS", "long", "string", "double", "boolean", "TRUE", "FALSE",
    "LOWER(", "CONCAT(", "SUBSTR(", "DATE_FORMAT(", "IF(", "COALESCE(", "ROUND(", "GREATEST(",
    "UNIX_TIMESTAMP(", "FROM_UNIXTIME(", "TO_DATE(", "LENGTH(", "TRIM(", "ABS(", "LN(", "`",
    "'", "\"", "`a b`", "9223372036854775808", ".", "#", "\xc3\xa9", "\xff", "'yyyy-MM'",
};

static tsr_value_t rand_any(tsr_rng_t *r) {
    static const char *const strs[] = {"", "abc", "2024-03-05", "2024-03-05 12:00:00", "12",
                                       " 7 ", "yyyy", "%", "\xc3\xa9t\xc3\xa9", "true", "NaN"};
    switch (tsr_rng_below(r, 6)) {
    case 0: return tsr_value_null();
    case 1: return tsr_value_bool((int)tsr_rng_below(r, 2));
    case 2: return rand_long_val(r);
    case 3: return rand_double_val(r);
    default: {
        const char *s = strs[tsr_rng_below(r, sizeof strs / sizeof strs[0])];
        return tsr_value_string(s, strlen(s));
    }
    }
}

static int g_compiled;

/* Parses, compiles and runs src; checks results against the static type. */
static void fuzz_one(const char *src, tsr_rng_t *r) {
    static tsr_type_t types[FNCOLS];
    types[FA] = TSR_LONG;
    types[FX] = TSR_DOUBLE;
    types[FS] = TSR_STRING;
    types[FFLAG] = TSR_BOOL;
    types[FANY] = TSR_ANY;
    types[FANY2] = TSR_ANY;
    types[FLST] = TSR_TYPE_LIST(TSR_DOUBLE);
    tsr_schema_t sc = {FNCOLS, k_fnames, types};
    tsr_arena_t ar;
    tsr_arena_init(&ar, 0);
    tsr_expr_ast_t *ast;
    tsr_error_t err;
    int prc = tsr_expr_parse(src, &ar, &ast, &err);
    CHECK(prc == 0 || prc == TSR_EPARSE || prc == TSR_ECONFIG, "%s: %d", src, prc);
    CHECK(!prc || strlen(err.msg) < TSR_ERROR_MSG_MAX, "%s", src);
    tsr_arena_free(&ar);
    tsr_program_t *p = tsr_program_new(&sc);
    tsr_type_t t;
    int rc = tsr_program_add(p, src, &t, &err);
    CHECK(rc == 0 || rc == TSR_EPARSE || rc == TSR_ECONFIG || rc == TSR_ETYPE, "%s: %d", src, rc);
    CHECK(prc == 0 || rc == prc, "%s: parse %d compile %d", src, prc, rc);
    if (rc == 0) {
        g_compiled++;
        tsr_vm_t *vm = tsr_vm_new(p);
        static const tsr_value_t lst_items[2] = {{TSR_DOUBLE, 0, {.d = 1.5}}, {TSR_DOUBLE, 0, {.d = 2}}};
        for (int k = 0; k < 8; k++) {
            char sbuf[32];
            int sn = (int)tsr_rng_below(r, sizeof sbuf);
            for (int i = 0; i < sn; i++) sbuf[i] = "ab%_ -19:Z\xc3\xa9"[tsr_rng_below(r, 13)];
            tsr_value_t row[FNCOLS] = {rand_long_val(r), rand_double_val(r),
                                       tsr_value_string(sbuf, (size_t)sn),
                                       tsr_value_bool((int)tsr_rng_below(r, 2)), rand_any(r),
                                       rand_any(r), tsr_value_list(lst_items, 2)};
            if (tsr_rng_below(r, 5) == 0) row[FS] = tsr_value_null();
            if (tsr_rng_below(r, 5) == 0) row[FFLAG] = tsr_value_null();
            tsr_value_t out;
            tsr_vm_run(vm, row, &out);
            if (out.kind != TSR_NULL && t != TSR_ANY)
                CHECK(out.kind == tsr_type_kind(t), "%s: kind %d, type %u", src, out.kind, t);
            if (out.kind == TSR_STRING && out.len) {
                volatile char c = out.u.s[out.len - 1];     /* readable (ASan checks) */
                (void)c;
            }
        }
        tsr_vm_free(vm);
    }
    tsr_program_free(p);
}

START_TEST(test_fuzz_token_soup) {
    tsr_rng_t r = {77 + (uint64_t)_i};
    size_t ntok = sizeof k_tokens / sizeof k_tokens[0];
    for (int iter = 0; iter < 3000; iter++) {
        char src[512];
        size_t o = 0;
        int n = 1 + (int)tsr_rng_below(&r, 14);
        for (int k = 0; k < n; k++)
            o += (size_t)snprintf(src + o, sizeof src - o, "%s%s", k_tokens[tsr_rng_below(&r, ntok)],
                                  tsr_rng_below(&r, 3) ? " " : "");
        fuzz_one(src, &r);
    }
}
END_TEST

START_TEST(test_fuzz_mutations) {
    tsr_rng_t r = {555 + (uint64_t)_i};
    size_t ncorp = sizeof k_corpus / sizeof k_corpus[0];
    g_compiled = 0;
    /* the corpus itself compiles */
    for (size_t i = 0; i < ncorp; i++) {
        const char *src = k_corpus[i];
        tsr_program_t *p = tsr_program_new(&(tsr_schema_t){FNCOLS, k_fnames,
            (const tsr_type_t[]){TSR_LONG, TSR_DOUBLE, TSR_STRING, TSR_BOOL, TSR_ANY, TSR_ANY,
                                 TSR_TYPE_LIST(TSR_DOUBLE)}});
        tsr_error_t err;
        if (strstr(src, "amount")) {
            tsr_program_free(p);
            continue;
        }
        ck_assert_msg(tsr_program_add(p, src, NULL, &err) == 0, "%s: %s", src, err.msg);
        tsr_program_free(p);
    }
    for (int iter = 0; iter < 4000; iter++) {
        char src[600];
        const char *base = k_corpus[tsr_rng_below(&r, ncorp)];
        size_t n = strlen(base);
        memcpy(src, base, n + 1);
        int muts = 1 + (int)tsr_rng_below(&r, 3);
        for (int m = 0; m < muts; m++) {
            size_t at = n ? tsr_rng_below(&r, n) : 0;
            switch (tsr_rng_below(&r, 5)) {
            case 0:     /* truncate */
                n = at;
                src[n] = 0;
                break;
            case 1: {   /* delete a run */
                size_t k = 1 + tsr_rng_below(&r, 6);
                if (at + k > n) k = n - at;
                memmove(src + at, src + at + k, n - at - k + 1);
                n -= k;
                break;
            }
            case 2:     /* replace a byte */
                if (n) src[at] = "()',`%_ +-*/aA1.eE\\\"|!#"[tsr_rng_below(&r, 24)];
                break;
            case 3: {   /* insert a token */
                const char *tk = k_tokens[tsr_rng_below(&r, sizeof k_tokens / sizeof k_tokens[0])];
                size_t k = strlen(tk);
                if (n + k + 1 < sizeof src) {
                    memmove(src + at + k, src + at, n - at + 1);
                    memcpy(src + at, tk, k);
                    n += k;
                }
                break;
            }
            default: {  /* duplicate a run */
                size_t k = 1 + tsr_rng_below(&r, 12);
                if (at + k > n) k = n - at;
                if (n + k + 1 < sizeof src) {
                    memmove(src + at + k, src + at, n - at + 1);
                    n += k;
                }
                break;
            }
            }
        }
        fuzz_one(src, &r);
    }
    /* mutations must not all be rejected, or the run step is never exercised */
    ck_assert_int_gt(g_compiled, 200);
}
END_TEST

/* ---------------------------------------------------------------- scratch */

START_TEST(test_no_alloc_steady_state) {
    static tsr_type_t types[FNCOLS] = {TSR_LONG, TSR_DOUBLE, TSR_STRING, TSR_BOOL, TSR_ANY, TSR_ANY,
                                       TSR_TYPE_LIST(TSR_DOUBLE)};
    tsr_schema_t sc = {FNCOLS, k_fnames, types};
    tsr_program_t *p = tsr_program_new(&sc);
    const char *outs[] = {
        "CONCAT(LOWER(s), '-', CAST(a AS string), '-', UPPER(s))",
        "SUBSTR(CONCAT(s, s), 2, 5)",
        "DATE_FORMAT(a, 'yyyy-MM-dd HH:mm:ss.SSS')",
        "CAST(x AS string) || CAST(any AS string)",
        "a * 3 + x",
    };
    for (size_t i = 0; i < 5; i++) ck_assert_int_eq(tsr_program_add(p, outs[i], NULL, NULL), (int)i);
    tsr_vm_t *vm = tsr_vm_new(p);
    tsr_rng_t r = {9};
    char sbuf[300];
    tsr_value_t out[5];
    size_t cap = 0, allocs = 0;
    for (int iter = 0; iter < 20000; iter++) {
        /* warm-up first sees the longest strings; afterwards lengths vary at random */
        size_t sn = iter < 10 ? 300 : tsr_rng_below(&r, 301);
        for (size_t i = 0; i < sn; i++) sbuf[i] = (char)('A' + tsr_rng_below(&r, 52) % 26 + (i % 2) * 32);
        int64_t a = (int64_t)tsr_rng_below(&r, 2000000000000ULL);
        tsr_value_t row[FNCOLS] = {tsr_value_long(a), tsr_value_double(tsr_rng_double(&r)),
                                   tsr_value_string(sbuf, sn), tsr_value_bool(1),
                                   tsr_value_double(-1e300), tsr_value_null(), tsr_value_null()};
        tsr_vm_run(vm, row, out);
        /* results of earlier outputs are intact after later ones ran */
        CHECK(out[0].kind == TSR_STRING && out[0].len >= 2 * sn + 3, "iter %d: out0", iter);
        for (size_t i = 0; i < sn; i++) {
            char c = sbuf[i];
            CHECK(out[0].u.s[i] == (c >= 'A' && c <= 'Z' ? c + 32 : c), "iter %d: lower %zu", iter, i);
            CHECK(out[0].u.s[out[0].len - sn + i] == (c >= 'a' && c <= 'z' ? c - 32 : c), "iter %d: upper", iter);
        }
        CHECK(out[2].len == 23, "iter %d: date len %u", iter, out[2].len);
        CHECK(out[4].kind == TSR_DOUBLE, "iter %d", iter);
        if (iter == 20) {
            cap = tsr__vm_scratch_capacity(vm);
            allocs = tsr__vm_allocations(vm);
        } else if (iter > 20) {
            CHECK(tsr__vm_scratch_capacity(vm) == cap, "iter %d: scratch grew", iter);
            CHECK(tsr__vm_allocations(vm) == allocs, "iter %d: run allocated", iter);
        }
    }
    tsr_vm_free(vm);
    tsr_program_free(p);
}
END_TEST

START_TEST(test_scratch_overflow_keeps_strings) {
    static tsr_type_t types[FNCOLS] = {TSR_LONG, TSR_DOUBLE, TSR_STRING, TSR_BOOL, TSR_ANY, TSR_ANY,
                                       TSR_TYPE_LIST(TSR_DOUBLE)};
    tsr_schema_t sc = {FNCOLS, k_fnames, types};
    tsr_program_t *p = tsr_program_new(&sc);
    ck_assert_int_eq(tsr_program_add(p, "CONCAT('<', s)", NULL, NULL), 0);
    ck_assert_int_eq(tsr_program_add(p, "CONCAT(s, '>')", NULL, NULL), 1);
    ck_assert_int_eq(tsr_program_add(p, "LOWER(CONCAT(s, s, s))", NULL, NULL), 2);
    tsr_vm_t *vm = tsr_vm_new(p);
    size_t cap0 = tsr__vm_scratch_capacity(vm);
    static char big[5000];
    memset(big, 'Q', sizeof big);
    tsr_value_t row[FNCOLS] = {tsr_value_long(1), tsr_value_double(1), tsr_value_string(big, sizeof big),
                               tsr_value_bool(1), tsr_value_null(), tsr_value_null(), tsr_value_null()};
    tsr_value_t out[3];
    for (int run = 0; run < 5; run++) {
        tsr_vm_run(vm, row, out);
        ck_assert_int_eq(out[0].len, 5001);
        ck_assert_int_eq(out[0].u.s[0], '<');
        ck_assert_int_eq(out[0].u.s[5000], 'Q');
        ck_assert_int_eq(out[1].len, 5001);
        ck_assert_int_eq(out[1].u.s[5000], '>');
        ck_assert_int_eq(out[2].len, 15000);
        for (size_t i = 0; i < 15000; i++) CHECK(out[2].u.s[i] == 'q', "byte %zu", i);
        for (size_t i = 1; i < 5001; i++) CHECK(out[0].u.s[i] == 'Q', "byte %zu", i);
        if (run == 0) ck_assert_uint_gt(tsr__vm_scratch_capacity(vm), cap0);
        if (run == 0) ck_assert_uint_gt(tsr__vm_allocations(vm), 0);   /* it did overflow */
    }
    /* after the first run folded the overflow into one block, runs allocate nothing */
    size_t a = tsr__vm_allocations(vm);
    for (int run = 0; run < 100; run++) tsr_vm_run(vm, row, out);
    ck_assert_uint_eq(tsr__vm_allocations(vm), a);
    ck_assert_ptr_null(vm->overflow);
    tsr_vm_free(vm);
    tsr_program_free(p);
}
END_TEST

static Suite *fuzz_suite(void) {
    Suite *s = suite_create("expr_fuzz");
    TCase *tc = tcase_create("random");
    tcase_set_timeout(tc, 120);
    tcase_add_loop_test(tc, test_brute_force_arith, 0, 4);
    tcase_add_loop_test(tc, test_fuzz_token_soup, 0, 2);
    tcase_add_loop_test(tc, test_fuzz_mutations, 0, 2);
    tcase_add_test(tc, test_no_alloc_steady_state);
    tcase_add_test(tc, test_scratch_overflow_keeps_strings);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return tsr_test_run(fuzz_suite()); }
