/*
 * test_agg.c — every exact aggregation op (common/agg*.c) against a brute-force statement of
 * SPEC §4 written here (Chronon's NaiveAggregator idea), plus the IR codec under truncation
 * and corruption, names, and tsr_agg_new's validation.
 *
 * For each config (op, input type, bucketed, k) and seed, random rows — with nulls,
 * duplicates, equal timestamps, negative numbers, strings, lists, maps and buckets — are
 *   1. updated sequentially into one IR,
 *   2. split at random into 1..8 parts, each updated, then merged in a random order,
 *   3. finalized and compared with the brute force (tsr_value_close: longs, strings, lists
 *      and maps exact, doubles within 1e-9 relative),
 *   4. encoded -> decoded -> merged, which must give the same value, and re-encode to the
 *      same bytes,
 *   5. (COUNT, SUM, AVERAGE, HISTOGRAM) updated with everything, then a random subset
 *      deleted, which must equal updating the rest.
 * The brute force never uses the kernel: it flattens, groups and sorts the raw rows.
 */
#include "tsr_test.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "agg_int.h"
#include "tsr/agg.h"

#define L TSR_LONG
#define D TSR_DOUBLE
#define S TSR_STRING
#define B TSR_BOOL
#define A TSR_ANY
#define LIST(t) TSR_TYPE_LIST(t)
#define MAP(t) TSR_TYPE_MAP(t)

typedef struct cfg {
    tsr_op_t op;
    tsr_type_t in;
    int bucketed;
    int64_t k;
} cfg_t;

static const cfg_t cfgs[] = {
    {TSR_OP_COUNT, L, 0, 0}, {TSR_OP_COUNT, S, 0, 0}, {TSR_OP_COUNT, LIST(L), 0, 0},
    {TSR_OP_COUNT, MAP(L), 0, 0}, {TSR_OP_COUNT, L, 1, 0}, {TSR_OP_COUNT, MAP(S), 1, 0},
    {TSR_OP_SUM, L, 0, 0}, {TSR_OP_SUM, D, 0, 0}, {TSR_OP_SUM, B, 0, 0},
    {TSR_OP_SUM, LIST(L), 0, 0}, {TSR_OP_SUM, MAP(D), 0, 0}, {TSR_OP_SUM, D, 1, 0},
    {TSR_OP_SUM, A, 0, 0}, {TSR_OP_SUM, LIST(D), 1, 0},
    {TSR_OP_AVERAGE, L, 0, 0}, {TSR_OP_AVERAGE, D, 0, 0}, {TSR_OP_AVERAGE, MAP(L), 1, 0},
    {TSR_OP_VARIANCE, L, 0, 0}, {TSR_OP_VARIANCE, D, 0, 0}, {TSR_OP_VARIANCE, LIST(D), 1, 0},
    {TSR_OP_SKEW, L, 0, 0}, {TSR_OP_SKEW, D, 0, 0}, {TSR_OP_SKEW, MAP(D), 0, 0},
    {TSR_OP_KURTOSIS, L, 0, 0}, {TSR_OP_KURTOSIS, D, 0, 0}, {TSR_OP_KURTOSIS, D, 1, 0},
    {TSR_OP_MIN, L, 0, 0}, {TSR_OP_MIN, D, 0, 0}, {TSR_OP_MIN, S, 0, 0},
    {TSR_OP_MIN, LIST(S), 0, 0}, {TSR_OP_MIN, MAP(L), 1, 0}, {TSR_OP_MIN, A, 0, 0},
    {TSR_OP_MAX, L, 0, 0}, {TSR_OP_MAX, S, 1, 0}, {TSR_OP_MAX, LIST(D), 0, 0},
    {TSR_OP_FIRST, L, 0, 0}, {TSR_OP_FIRST, S, 0, 0}, {TSR_OP_FIRST, LIST(L), 0, 0},
    {TSR_OP_FIRST, MAP(S), 1, 0}, {TSR_OP_LAST, L, 0, 0}, {TSR_OP_LAST, LIST(S), 0, 0},
    {TSR_OP_LAST, D, 1, 0}, {TSR_OP_LAST, A, 0, 0},
    {TSR_OP_FIRST_K, L, 0, 3}, {TSR_OP_FIRST_K, LIST(S), 0, 2}, {TSR_OP_FIRST_K, S, 1, 4},
    {TSR_OP_LAST_K, L, 0, 1}, {TSR_OP_LAST_K, S, 0, 5}, {TSR_OP_LAST_K, MAP(L), 1, 3},
    {TSR_OP_TOP_K, L, 0, 4}, {TSR_OP_TOP_K, D, 0, 1}, {TSR_OP_TOP_K, S, 0, 6},
    {TSR_OP_TOP_K, LIST(L), 1, 3}, {TSR_OP_BOTTOM_K, L, 0, 4}, {TSR_OP_BOTTOM_K, S, 0, 2},
    {TSR_OP_BOTTOM_K, MAP(D), 1, 3},
    {TSR_OP_UNIQUE_TOP_K, L, 0, 3}, {TSR_OP_UNIQUE_TOP_K, S, 0, 5},
    {TSR_OP_UNIQUE_TOP_K, LIST(D), 1, 2},
    {TSR_OP_UNIQUE_COUNT, L, 0, 0}, {TSR_OP_UNIQUE_COUNT, S, 0, 0},
    {TSR_OP_UNIQUE_COUNT, D, 0, 0}, {TSR_OP_UNIQUE_COUNT, B, 0, 0},
    {TSR_OP_UNIQUE_COUNT, LIST(S), 1, 0}, {TSR_OP_UNIQUE_COUNT, A, 0, 0},
    {TSR_OP_BOUNDED_UNIQUE_COUNT, L, 0, 3}, {TSR_OP_BOUNDED_UNIQUE_COUNT, S, 1, 2},
    {TSR_OP_BOUNDED_UNIQUE_COUNT, L, 0, 0},
    {TSR_OP_HISTOGRAM, S, 0, 0}, {TSR_OP_HISTOGRAM, L, 0, 2}, {TSR_OP_HISTOGRAM, D, 0, 0},
    {TSR_OP_HISTOGRAM, LIST(S), 1, 1}, {TSR_OP_HISTOGRAM, MAP(S), 0, 3},
    {TSR_OP_HISTOGRAM, B, 1, 0},
};
#define NCFG (sizeof(cfgs) / sizeof(cfgs[0]))
#define SEEDS 16

/* ---- random rows -------------------------------------------------------------------- */

typedef struct row {
    tsr_value_t in, bucket;
    int64_t ts;
    uint64_t seq;
} row_t;

static const char *const strs[] = {"a", "b", "ab", "ba", "", "zz", "a\x01", "\xff", "abc"};
static const char *const mkeys[] = {"x", "y", "z", "w", "xx"};

static tsr_value_t gen_scalar(tsr_rng_t *r, tsr_kind_t kind, tsr_arena_t *ar, int big) {
    switch (kind) {
    case TSR_BOOL: return tsr_value_bool((int)tsr_rng_below(r, 2));
    case TSR_LONG:
        /* occasionally huge, to exercise wrapping SUM and extreme MIN/MAX */
        if (big && tsr_rng_below(r, 20) == 0)
            return tsr_value_long(tsr_rng_below(r, 2) ? INT64_MAX - (int64_t)tsr_rng_below(r, 3)
                                                      : INT64_MIN + (int64_t)tsr_rng_below(r, 3));
        return tsr_value_long(tsr_rng_range(r, -20, 20));
    case TSR_DOUBLE:
        if (tsr_rng_below(r, 2)) return tsr_value_double((double)tsr_rng_range(r, -200, 200) / 4);
        return tsr_value_double(tsr_rng_double(r) * 200 - 100);
    case TSR_STRING: {
        const char *s = strs[tsr_rng_below(r, sizeof strs / sizeof strs[0])];
        return tsr_value_string(tsr_arena_strdup(ar, s), strlen(s));
    }
    default: {
        /* ANY: a mix of kinds at run time */
        static const tsr_kind_t kinds[] = {TSR_LONG, TSR_DOUBLE, TSR_STRING, TSR_BOOL};
        return gen_scalar(r, kinds[tsr_rng_below(r, 4)], ar, 0);
    }
    }
}

static tsr_value_t gen_value(tsr_rng_t *r, tsr_type_t t, tsr_arena_t *ar, int big) {
    if (tsr_rng_below(r, 10) == 0) return tsr_value_null();
    switch (tsr_type_kind(t)) {
    case TSR_LIST: {
        size_t n = tsr_rng_below(r, 5);
        tsr_value_t *it = tsr_arena_alloc(ar, (n + 1) * sizeof(*it));
        for (size_t i = 0; i < n; i++) it[i] = gen_value(r, tsr_type_elem(t), ar, big);
        return tsr_value_list(it, n);
    }
    case TSR_MAP: {
        size_t n = tsr_rng_below(r, 4), nk = sizeof mkeys / sizeof mkeys[0];
        size_t start = tsr_rng_below(r, nk);
        tsr_value_t *it = tsr_arena_alloc(ar, (2 * n + 1) * sizeof(*it));
        for (size_t i = 0; i < n; i++) {
            const char *k = mkeys[(start + i) % nk]; /* distinct keys */
            it[2 * i] = tsr_value_string(k, strlen(k));
            it[2 * i + 1] = gen_value(r, tsr_type_elem(t), ar, big);
        }
        return tsr_value_map(it, n);
    }
    default: return gen_scalar(r, tsr_type_kind(t), ar, big);
    }
}

static size_t gen_rows(tsr_rng_t *r, const cfg_t *c, tsr_arena_t *ar, row_t **out) {
    size_t n = tsr_rng_below(r, 8) == 0 ? tsr_rng_below(r, 3) : tsr_rng_below(r, 120);
    int long_buckets = (int)tsr_rng_below(r, 2);
    int big = c->op == TSR_OP_SUM || c->op == TSR_OP_MIN || c->op == TSR_OP_MAX ||
              c->op == TSR_OP_COUNT || c->op == TSR_OP_TOP_K;
    row_t *rows = tsr_arena_alloc(ar, (n + 1) * sizeof(*rows));
    for (size_t i = 0; i < n; i++) {
        rows[i].in = gen_value(r, c->in, ar, big);
        rows[i].bucket = tsr_value_null();
        if (c->bucketed && tsr_rng_below(r, 10) != 0)
            rows[i].bucket = long_buckets ? tsr_value_long(tsr_rng_range(r, -2, 2))
                                          : gen_scalar(r, TSR_STRING, ar, 0);
        rows[i].ts = tsr_rng_range(r, 0, 15); /* many equal timestamps */
        rows[i].seq = i;
    }
    *out = rows;
    return n;
}

/* ---- brute force -------------------------------------------------------------------- */

typedef struct leaf_in {
    const tsr_value_t *v;
    int64_t ts;
    uint64_t seq;
} leaf_in_t;

static tsr_op_t sort_op; /* context for the qsort comparators */

static int cmp_ts_seq(const leaf_in_t *a, const leaf_in_t *b, int ts_desc) {
    if (a->ts != b->ts) return (a->ts < b->ts ? -1 : 1) * (ts_desc ? -1 : 1);
    if (a->seq != b->seq) return a->seq < b->seq ? -1 : 1;
    return tsr_value_cmp(a->v, b->v);
}
static int leaf_sort_cmp(const void *pa, const void *pb) {
    const leaf_in_t *a = pa, *b = pb;
    switch (sort_op) {
    case TSR_OP_FIRST_K: return cmp_ts_seq(a, b, 0);
    case TSR_OP_LAST_K: return cmp_ts_seq(a, b, 1);
    case TSR_OP_BOTTOM_K: return tsr_value_cmp(a->v, b->v);
    default: return tsr_value_cmp(b->v, a->v);
    }
}

typedef struct hcount {
    char *key;
    size_t len;
    int64_t n;
} hcount_t;
static int hcount_cmp(const void *pa, const void *pb) {
    const hcount_t *a = pa, *b = pb;
    if (a->n != b->n) return a->n > b->n ? -1 : 1;
    size_t m = a->len < b->len ? a->len : b->len;
    int c = memcmp(a->key, b->key, m);
    if (c) return c;
    return (a->len > b->len) - (a->len < b->len);
}

static tsr_value_t key_of(const tsr_value_t *v, tsr_arena_t *ar) {
    tsr_buf_t b;
    tsr_buf_init(&b);
    tsr_value_key_string(v, &b);
    tsr_value_t s = tsr_value_string(tsr_arena_strndup(ar, (const char *)b.data, b.len), b.len);
    tsr_buf_free(&b);
    return s;
}

static int kind_ok(const cfg_t *c, tsr_kind_t k) {
    switch (c->op) {
    case TSR_OP_COUNT:
    case TSR_OP_FIRST:
    case TSR_OP_LAST:
    case TSR_OP_FIRST_K:
    case TSR_OP_LAST_K: return k != TSR_NULL;
    case TSR_OP_SUM: return k == TSR_LONG || k == TSR_DOUBLE || k == TSR_BOOL;
    case TSR_OP_AVERAGE:
    case TSR_OP_VARIANCE:
    case TSR_OP_SKEW:
    case TSR_OP_KURTOSIS: return k == TSR_LONG || k == TSR_DOUBLE;
    case TSR_OP_MIN:
    case TSR_OP_MAX:
    case TSR_OP_TOP_K:
    case TSR_OP_BOTTOM_K:
    case TSR_OP_UNIQUE_TOP_K: return k == TSR_LONG || k == TSR_DOUBLE || k == TSR_STRING;
    default: return k == TSR_LONG || k == TSR_DOUBLE || k == TSR_STRING || k == TSR_BOOL;
    }
}

/* One op over its leaf inputs (already null-free, flattened and kind-checked). */
static tsr_value_t brute_leaf(const cfg_t *c, leaf_in_t *in, size_t n, tsr_arena_t *ar) {
    if (n == 0) return tsr_value_null();
    switch (c->op) {
    case TSR_OP_COUNT: return tsr_value_long((int64_t)n);
    case TSR_OP_SUM: {
        uint64_t l = 0;
        long double s = 0;
        int any_double = 0;
        for (size_t i = 0; i < n; i++) {
            const tsr_value_t *v = in[i].v;
            if (v->kind == TSR_DOUBLE) {
                any_double = 1;
                s += v->u.d;
            } else {
                uint64_t x = v->kind == TSR_LONG ? (uint64_t)v->u.l : (uint64_t)v->u.b;
                l += x;
                s += (long double)(v->kind == TSR_LONG ? v->u.l : v->u.b);
            }
        }
        if (!any_double && tsr_type_kind(c->in) != TSR_DOUBLE &&
            tsr_type_elem(c->in) != TSR_DOUBLE)
            return tsr_value_long((int64_t)l);
        return isfinite((double)s) ? tsr_value_double((double)s) : tsr_value_null();
    }
    case TSR_OP_AVERAGE:
    case TSR_OP_VARIANCE:
    case TSR_OP_SKEW:
    case TSR_OP_KURTOSIS: {
        long double s = 0;
        for (size_t i = 0; i < n; i++)
            s += in[i].v->kind == TSR_DOUBLE ? in[i].v->u.d : (long double)in[i].v->u.l;
        long double mean = s / n, m2 = 0, m3 = 0, m4 = 0;
        if (c->op == TSR_OP_AVERAGE) return tsr_value_double((double)mean);
        for (size_t i = 0; i < n; i++) {
            long double x = in[i].v->kind == TSR_DOUBLE ? in[i].v->u.d : in[i].v->u.l;
            long double d = x - mean;
            m2 += d * d;
            m3 += d * d * d;
            m4 += d * d * d * d;
        }
        if (c->op == TSR_OP_VARIANCE) return tsr_value_double((double)(m2 / n));
        if (c->op == TSR_OP_SKEW) {
            if (n < 3 || m2 == 0) return tsr_value_null();
            return tsr_value_double((double)(sqrtl((long double)n) * m3 / powl(m2, 1.5L)));
        }
        if (n < 4 || m2 == 0) return tsr_value_null();
        return tsr_value_double((double)(n * m4 / (m2 * m2) - 3));
    }
    case TSR_OP_MIN:
    case TSR_OP_MAX: {
        const tsr_value_t *best = in[0].v;
        for (size_t i = 1; i < n; i++) {
            int cmp = tsr_value_cmp(in[i].v, best);
            if (c->op == TSR_OP_MIN ? cmp < 0 : cmp > 0) best = in[i].v;
        }
        return tsr_value_copy(best, ar);
    }
    case TSR_OP_FIRST:
    case TSR_OP_LAST: {
        size_t b = 0;
        for (size_t i = 1; i < n; i++) {
            int cmp = cmp_ts_seq(&in[i], &in[b], c->op == TSR_OP_LAST);
            if (cmp < 0) b = i;
        }
        return tsr_value_copy(in[b].v, ar);
    }
    case TSR_OP_FIRST_K:
    case TSR_OP_LAST_K:
    case TSR_OP_TOP_K:
    case TSR_OP_BOTTOM_K:
    case TSR_OP_UNIQUE_TOP_K: {
        sort_op = c->op;
        qsort(in, n, sizeof(*in), leaf_sort_cmp);
        tsr_value_t *items = tsr_arena_alloc(ar, n * sizeof(*items));
        size_t m = 0;
        for (size_t i = 0; i < n && m < (size_t)c->k; i++) {
            if (c->op == TSR_OP_UNIQUE_TOP_K && m && tsr_value_cmp(&items[m - 1], in[i].v) == 0)
                continue;
            items[m++] = tsr_value_copy(in[i].v, ar);
        }
        return tsr_value_list(items, m);
    }
    case TSR_OP_UNIQUE_COUNT:
    case TSR_OP_BOUNDED_UNIQUE_COUNT: {
        int64_t d = 0;
        for (size_t i = 0; i < n; i++) {
            size_t j = 0;
            while (j < i && !tsr_value_equal(in[j].v, in[i].v)) j++;
            if (j == i) d++;
        }
        int64_t k = c->k ? c->k : TSR_AGG_DEFAULT_FREQ_K;
        if (c->op == TSR_OP_BOUNDED_UNIQUE_COUNT && d > k) d = k;
        return tsr_value_long(d);
    }
    case TSR_OP_HISTOGRAM: {
        hcount_t *h = tsr_arena_alloc(ar, n * sizeof(*h));
        size_t m = 0;
        for (size_t i = 0; i < n; i++) {
            tsr_value_t k = key_of(in[i].v, ar);
            size_t j = 0;
            while (j < m && !(h[j].len == k.len && memcmp(h[j].key, k.u.s, k.len) == 0)) j++;
            if (j == m) h[m++] = (hcount_t){(char *)k.u.s, k.len, 0};
            h[j].n++;
        }
        if (c->k > 0 && m > (size_t)c->k) {
            qsort(h, m, sizeof(*h), hcount_cmp);
            m = (size_t)c->k;
        }
        tsr_value_t *items = tsr_arena_alloc(ar, 2 * m * sizeof(*items));
        for (size_t i = 0; i < m; i++) {
            items[2 * i] = tsr_value_string(h[i].key, h[i].len);
            items[2 * i + 1] = tsr_value_long(h[i].n);
        }
        return tsr_value_map(items, m);
    }
    default: ck_abort_msg("no brute force for op %d", c->op);
    }
    return tsr_value_null();
}

static int op_flattens(tsr_op_t op) {
    return !(op == TSR_OP_FIRST || op == TSR_OP_LAST || op == TSR_OP_FIRST_K ||
             op == TSR_OP_LAST_K);
}

/* Appends the leaf inputs a value contributes (flattening one list level). */
static void collect(const cfg_t *c, const tsr_value_t *v, int64_t ts, uint64_t seq,
                    leaf_in_t *out, size_t *n) {
    if (v->kind == TSR_NULL) return;
    if (v->kind == TSR_LIST && op_flattens(c->op)) {
        for (uint32_t i = 0; i < v->len; i++) {
            const tsr_value_t *e = &v->u.items[i];
            if (e->kind != TSR_NULL && e->kind != TSR_LIST && kind_ok(c, e->kind))
                out[(*n)++] = (leaf_in_t){e, ts, seq};
        }
        return;
    }
    if (kind_ok(c, v->kind)) out[(*n)++] = (leaf_in_t){v, ts, seq};
}

static size_t leaf_capacity(const row_t *rows, size_t n) {
    size_t m = 1;
    for (size_t i = 0; i < n; i++) m += 1 + rows[i].in.len;
    return m;
}

/* Unbucketed expectation over rows; *saw = whether any leaf input existed. */
static tsr_value_t brute_rows(const cfg_t *c, const row_t *rows, size_t n, const int *keep,
                              tsr_arena_t *ar, int *saw) {
    leaf_in_t *in = tsr_arena_alloc(ar, leaf_capacity(rows, n) * sizeof(*in));
    if (tsr_type_kind(c->in) != TSR_MAP) {
        size_t m = 0;
        for (size_t i = 0; i < n; i++)
            if (!keep || keep[i]) collect(c, &rows[i].in, rows[i].ts, rows[i].seq, in, &m);
        *saw = m > 0;
        return brute_leaf(c, in, m, ar);
    }
    /* map input: one group per map key */
    size_t nk = sizeof mkeys / sizeof mkeys[0];
    tsr_value_t *items = tsr_arena_alloc(ar, 2 * nk * sizeof(*items));
    size_t out = 0;
    for (size_t kk = 0; kk < nk; kk++) {
        size_t m = 0;
        for (size_t i = 0; i < n; i++) {
            if (keep && !keep[i]) continue;
            const tsr_value_t *mv = &rows[i].in;
            if (mv->kind != TSR_MAP) continue;
            for (uint32_t j = 0; j < mv->len; j++)
                if (mv->u.items[2 * j].len == strlen(mkeys[kk]) &&
                    memcmp(mv->u.items[2 * j].u.s, mkeys[kk], mv->u.items[2 * j].len) == 0)
                    collect(c, &mv->u.items[2 * j + 1], rows[i].ts, rows[i].seq, in, &m);
        }
        if (m == 0) continue;
        items[2 * out] = tsr_value_string(mkeys[kk], strlen(mkeys[kk]));
        items[2 * out + 1] = brute_leaf(c, in, m, ar);
        out++;
    }
    *saw = out > 0;
    return out ? tsr_value_map(items, out) : tsr_value_null();
}

static tsr_value_t brute(const cfg_t *c, const row_t *rows, size_t n, const int *keep,
                         tsr_arena_t *ar) {
    int saw;
    if (!c->bucketed) return brute_rows(c, rows, n, keep, ar, &saw);
    /* group rows by bucket key string */
    tsr_value_t *keys = tsr_arena_alloc(ar, (n + 1) * sizeof(*keys));
    size_t nkeys = 0;
    for (size_t i = 0; i < n; i++) {
        if (rows[i].bucket.kind == TSR_NULL) continue;
        tsr_value_t k = key_of(&rows[i].bucket, ar);
        size_t j = 0;
        while (j < nkeys && !tsr_value_equal(&keys[j], &k)) j++;
        if (j == nkeys) keys[nkeys++] = k;
    }
    tsr_value_t *items = tsr_arena_alloc(ar, (2 * nkeys + 1) * sizeof(*items));
    row_t *grp = tsr_arena_alloc(ar, (n + 1) * sizeof(*grp));
    size_t out = 0;
    for (size_t j = 0; j < nkeys; j++) {
        size_t m = 0;
        for (size_t i = 0; i < n; i++) {
            if ((keep && !keep[i]) || rows[i].bucket.kind == TSR_NULL) continue;
            tsr_value_t k = key_of(&rows[i].bucket, ar);
            if (tsr_value_equal(&k, &keys[j])) grp[m++] = rows[i];
        }
        tsr_value_t v = brute_rows(c, grp, m, NULL, ar, &saw);
        if (!saw) continue;
        items[2 * out] = keys[j];
        items[2 * out + 1] = v;
        out++;
    }
    return out ? tsr_value_map(items, out) : tsr_value_null();
}

/* ---- helpers ------------------------------------------------------------------------ */

static tsr_agg_t *make(const cfg_t *c) {
    tsr_agg_spec_t spec = {.op = c->op, .input_type = c->in, .bucketed = c->bucketed, .k = c->k};
    tsr_agg_t *a = NULL;
    tsr_error_t err;
    tsr_error_clear(&err);
    int rc = tsr_agg_new(&spec, &a, &err);
    ck_assert_msg(rc == 0, "tsr_agg_new(%s): %s", tsr_op_name(c->op), err.msg);
    return a;
}

static void *ir_new(const tsr_agg_t *a) {
    void *ir = tsr_malloc(tsr_agg_ir_size(a));
    tsr_agg_init(a, ir);
    return ir;
}
static void ir_free(const tsr_agg_t *a, void *ir) {
    tsr_agg_clear(a, ir);
    free(ir);
}

static const char *json(const tsr_value_t *v, tsr_arena_t *ar) {
    tsr_buf_t b;
    tsr_buf_init(&b);
    tsr_value_to_json(v, &b);
    char *s = tsr_arena_strndup(ar, (const char *)b.data, b.len);
    tsr_buf_free(&b);
    return s;
}

static void expect_value(const cfg_t *c, int seed, const char *step, const tsr_value_t *want,
                         const tsr_value_t *got, tsr_arena_t *ar) {
    char tn[TSR_TYPE_NAME_MAX];
    ck_assert_msg(tsr_value_close(want, got), "%s over %s%s (seed %d) %s:\n want %s\n got  %s",
                  tsr_op_name(c->op), tsr_type_name(c->in, tn, sizeof tn),
                  c->bucketed ? " by bucket" : "", seed, step, json(want, ar), json(got, ar));
}

static void update_rows(const tsr_agg_t *a, void *ir, const row_t *rows, size_t n,
                        const int *part, int which) {
    for (size_t i = 0; i < n; i++)
        if (!part || part[i] == which)
            tsr_agg_update(a, ir, &rows[i].in, &rows[i].bucket, rows[i].ts, rows[i].seq);
}

static void shuffle(tsr_rng_t *r, int *v, int n) {
    for (int i = n - 1; i > 0; i--) {
        int j = (int)tsr_rng_below(r, (uint64_t)i + 1);
        int t = v[i];
        v[i] = v[j];
        v[j] = t;
    }
}

/* ---- the randomized comparison ------------------------------------------------------ */

static void check_vs_brute(const cfg_t *c, int seed) {
    tsr_rng_t rng = {(uint64_t)(c - cfgs) * 7919 + (uint64_t)seed * 1000003 + 17};
    tsr_arena_t ar;
    tsr_arena_init(&ar, 0);
    row_t *rows;
    size_t n = gen_rows(&rng, c, &ar, &rows);
    tsr_agg_t *a = make(c);
    tsr_value_t want = brute(c, rows, n, NULL, &ar);

    /* 1 + 3: sequential */
    void *seq = ir_new(a);
    update_rows(a, seq, rows, n, NULL, 0);
    tsr_value_t got = tsr_agg_finalize(a, seq, &ar);
    expect_value(c, seed, "sequential", &want, &got, &ar);
    /* empty IR <=> null output, except where a non-empty IR legitimately finalizes to null
     * (SKEW of 2 values, a sum that overflowed to Inf) */
    if (tsr_agg_is_empty(a, seq)) ck_assert_int_eq(want.kind, TSR_NULL);
    else if (c->op != TSR_OP_SKEW && c->op != TSR_OP_KURTOSIS && c->op != TSR_OP_SUM &&
             c->op != TSR_OP_AVERAGE)
        ck_assert_int_ne(want.kind, TSR_NULL);

    /* 2: random split, merged in random order */
    int nparts = (int)tsr_rng_range(&rng, 1, 8);
    int *part = tsr_arena_alloc(&ar, (n + 1) * sizeof(int));
    for (size_t i = 0; i < n; i++) part[i] = (int)tsr_rng_below(&rng, (uint64_t)nparts);
    void *parts[8];
    int order[8];
    for (int p = 0; p < nparts; p++) {
        parts[p] = ir_new(a);
        update_rows(a, parts[p], rows, n, part, p);
        order[p] = p;
    }
    shuffle(&rng, order, nparts);
    void *merged = ir_new(a);
    for (int p = 0; p < nparts; p++) tsr_agg_merge(a, merged, parts[order[p]]);
    got = tsr_agg_finalize(a, merged, &ar);
    expect_value(c, seed, "split+merge", &want, &got, &ar);
    /* tree-shaped merge: fold pairs into the left one, then the lefts together */
    for (int p = 0; p + 1 < nparts; p += 2) tsr_agg_merge(a, parts[order[p + 1]], parts[order[p]]);
    void *tree = ir_new(a);
    for (int p = nparts - 1; p >= 0; p -= 1)
        if (p % 2 == 1 || p == nparts - 1) tsr_agg_merge(a, tree, parts[order[p]]);
    got = tsr_agg_finalize(a, tree, &ar);
    expect_value(c, seed, "tree merge", &want, &got, &ar);

    /* 4: encode -> decode -> merge, and canonical bytes */
    void *viacodec = ir_new(a);
    tsr_buf_t buf, buf2;
    tsr_buf_init(&buf);
    tsr_buf_init(&buf2);
    for (int p = 0; p < nparts; p++) {
        void *tmp = ir_new(a);
        update_rows(a, tmp, rows, n, part, order[p]);
        tsr_buf_clear(&buf);
        tsr_agg_encode(a, tmp, &buf);
        void *dec = ir_new(a);
        tsr_error_t err;
        tsr_error_clear(&err);
        ck_assert_msg(tsr_agg_decode(a, dec, buf.data, buf.len, &err) == 0, "decode: %s", err.msg);
        tsr_agg_merge(a, viacodec, dec);
        ir_free(a, dec);
        ir_free(a, tmp);
    }
    got = tsr_agg_finalize(a, viacodec, &ar);
    expect_value(c, seed, "encode/decode/merge", &want, &got, &ar);
    tsr_buf_clear(&buf);
    tsr_agg_encode(a, seq, &buf);
    void *dec = ir_new(a);
    ck_assert_int_eq(tsr_agg_decode(a, dec, buf.data, buf.len, NULL), 0);
    tsr_agg_encode(a, dec, &buf2);
    if (c->op != TSR_OP_SUM && c->op != TSR_OP_AVERAGE && c->op != TSR_OP_VARIANCE &&
        c->op != TSR_OP_SKEW && c->op != TSR_OP_KURTOSIS) {
        /* exact-state ops re-encode to the same bytes, whatever the merge history (not the
         * float ops, whose last bits depend on order) */
        ck_assert(buf.len == buf2.len && memcmp(buf.data, buf2.data, buf.len) == 0);
        tsr_buf_clear(&buf2);
        tsr_agg_encode(a, merged, &buf2);
        ck_assert_msg(buf.len == buf2.len && memcmp(buf.data, buf2.data, buf.len) == 0,
                      "%s: merged IR encodes differently from the sequential one",
                      tsr_op_name(c->op));
    } else {
        ck_assert(buf.len == buf2.len && memcmp(buf.data, buf2.data, buf.len) == 0);
    }
    ir_free(a, dec);

    /* 5: delete a random subset == update of the rest */
    if (tsr_op_has_delete(c->op)) {
        int *keep = tsr_arena_alloc(&ar, (n + 1) * sizeof(int));
        void *del = ir_new(a);
        update_rows(a, del, rows, n, NULL, 0);
        for (size_t i = 0; i < n; i++) {
            keep[i] = tsr_rng_below(&rng, 3) != 0;
            if (!keep[i])
                ck_assert_int_eq(tsr_agg_delete(a, del, &rows[i].in, &rows[i].bucket,
                                                rows[i].ts, rows[i].seq), 0);
        }
        tsr_value_t want_rest = brute(c, rows, n, keep, &ar);
        got = tsr_agg_finalize(a, del, &ar);
        expect_value(c, seed, "update all, delete some", &want_rest, &got, &ar);
        ir_free(a, del);
    } else {
        ck_assert_int_eq(tsr_agg_delete(a, seq, &rows[0].in, &rows[0].bucket, 0, 0),
                         TSR_EUNSUPPORTED);
    }

    tsr_buf_free(&buf);
    tsr_buf_free(&buf2);
    for (int p = 0; p < nparts; p++) ir_free(a, parts[p]);
    ir_free(a, seq);
    ir_free(a, merged);
    ir_free(a, tree);
    ir_free(a, viacodec);
    tsr_agg_free(a);
    tsr_arena_free(&ar);
}

/* Forked tests of CFG_GROUP configs (a fork costs more than a seed under ASan), SEEDS seeds
 * each. */
#define CFG_GROUP 3
#define NGROUPS ((int)((NCFG + CFG_GROUP - 1) / CFG_GROUP))
START_TEST(test_vs_brute) {
    for (int ci = _i * CFG_GROUP; ci < (_i + 1) * CFG_GROUP && ci < (int)NCFG; ci++)
        for (int seed = 0; seed < SEEDS; seed++) check_vs_brute(&cfgs[ci], seed);
}
END_TEST

/* ---- codec fuzz --------------------------------------------------------------------- */

/* Exercise a decoded (possibly nonsense but valid) IR: every entry point must be safe. */
static void exercise(const tsr_agg_t *a, void *ir, tsr_arena_t *ar) {
    (void)tsr_agg_finalize(a, ir, ar);
    (void)tsr_agg_is_empty(a, ir);
    tsr_buf_t b;
    tsr_buf_init(&b);
    tsr_agg_encode(a, ir, &b);
    void *o = ir_new(a);
    tsr_agg_merge(a, o, ir);
    tsr_agg_merge(a, ir, o);
    (void)tsr_agg_finalize(a, ir, ar);
    ir_free(a, o);
    tsr_buf_free(&b);
}

static void check_codec_fuzz(int ci) {
    const cfg_t *c = &cfgs[ci];
    tsr_rng_t rng = {(uint64_t)ci * 104729 + 3};
    tsr_arena_t ar, scratch;
    tsr_arena_init(&ar, 0);
    tsr_arena_init(&scratch, 0);
    row_t *rows;
    size_t n = gen_rows(&rng, c, &ar, &rows);
    tsr_agg_t *a = make(c);
    void *ir = ir_new(a);
    update_rows(a, ir, rows, n, NULL, 0);
    tsr_buf_t buf;
    tsr_buf_init(&buf);
    tsr_agg_encode(a, ir, &buf);
    void *d = ir_new(a);
    tsr_error_t err;
    /* every strict prefix is rejected (our payloads are self-delimiting) */
    for (size_t len = 0; len < buf.len; len++) {
        uint8_t *copy = tsr_malloc(len + 1); /* exact-size copy: ASan catches overreads */
        memcpy(copy, buf.data, len);
        tsr_error_clear(&err);
        int rc = tsr_agg_decode(a, d, copy, len, &err);
        ck_assert_msg(rc == TSR_ECORRUPT, "%s: prefix of %zu/%zu bytes gave %d",
                      tsr_op_name(c->op), len, buf.len, rc);
        ck_assert(err.msg[0] != '\0');
        ck_assert(tsr_agg_is_empty(a, d));
        free(copy);
    }
    /* random corruption: rejected cleanly, or decoded to an IR that behaves */
    for (int t = 0; t < 100; t++) {
        uint8_t *copy = tsr_malloc(buf.len + 1);
        memcpy(copy, buf.data, buf.len);
        int flips = 1 + (int)tsr_rng_below(&rng, 3);
        for (int f = 0; f < flips && buf.len > 1; f++) {
            size_t at = 1 + tsr_rng_below(&rng, buf.len - 1); /* keep the version byte */
            copy[at] = tsr_rng_below(&rng, 2) ? (uint8_t)tsr_rng_next(&rng)
                                               : (uint8_t)(copy[at] ^ (1u << tsr_rng_below(&rng, 8)));
        }
        int rc = tsr_agg_decode(a, d, copy, buf.len, NULL);
        ck_assert(rc == 0 || rc == TSR_ECORRUPT);
        if (rc) ck_assert(tsr_agg_is_empty(a, d));
        exercise(a, d, &scratch);
        /* the IR stays usable */
        update_rows(a, d, rows, n < 5 ? n : 5, NULL, 0);
        free(copy);
        tsr_arena_reset(&scratch);
    }
    /* unknown version */
    uint8_t *copy = tsr_malloc(buf.len + 1);
    memcpy(copy, buf.data, buf.len);
    copy[0] = TSR_AGG_IR_VERSION + 1;
    tsr_error_clear(&err);
    ck_assert_int_eq(tsr_agg_decode(a, d, copy, buf.len, &err), TSR_EVERSION);
    ck_assert_ptr_nonnull(strstr(err.msg, "version"));
    ck_assert(tsr_agg_is_empty(a, d));
    /* another op's bytes */
    copy[0] = TSR_AGG_IR_VERSION;
    copy[1] = (uint8_t)((c->op + 1) % TSR_OP__COUNT);
    ck_assert_int_eq(tsr_agg_decode(a, d, copy, buf.len, &err), TSR_ECORRUPT);
    free(copy);
    ir_free(a, d);
    ir_free(a, ir);
    tsr_buf_free(&buf);
    tsr_agg_free(a);
    tsr_arena_free(&ar);
    tsr_arena_free(&scratch);
}

START_TEST(test_codec_fuzz) {
    for (int ci = _i * CFG_GROUP; ci < (_i + 1) * CFG_GROUP && ci < (int)NCFG; ci++)
        check_codec_fuzz(ci);
}
END_TEST

/* A corrupted count must not turn into a huge allocation or a long loop. */
START_TEST(test_codec_absurd_counts) {
    static const tsr_op_t ops[] = {TSR_OP_UNIQUE_COUNT, TSR_OP_TOP_K, TSR_OP_HISTOGRAM,
                                   TSR_OP_FIRST, TSR_OP_MIN};
    for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++) {
        cfg_t c = {ops[i], TSR_STRING, i % 2 == 0, tsr_op_requires_k(ops[i]) ? 5 : 0};
        if (ops[i] == TSR_OP_TOP_K) c.in = TSR_LONG;
        tsr_agg_t *a = make(&c);
        void *ir = ir_new(a);
        /* version, op, then a 9-byte varint count of ~2^62, then a few bytes */
        uint8_t bytes[] = {TSR_AGG_IR_VERSION, (uint8_t)ops[i], 0xff, 0xff, 0xff, 0xff, 0xff,
                           0xff, 0xff, 0xff, 0x3f, 4, 1, 'a'};
        tsr_error_t err;
        tsr_error_clear(&err);
        ck_assert_int_eq(tsr_agg_decode(a, ir, bytes, sizeof bytes, &err), TSR_ECORRUPT);
        ck_assert(err.msg[0]);
        /* a list value claiming 2^40 items */
        uint8_t lst[] = {TSR_AGG_IR_VERSION, (uint8_t)TSR_OP_FIRST, 1, 0, 0, TSR_LIST,
                         0x80, 0x80, 0x80, 0x80, 0x80, 0x20, 2, 1};
        if (ops[i] == TSR_OP_FIRST)
            ck_assert_int_eq(tsr_agg_decode(a, ir, lst, sizeof lst, NULL), TSR_ECORRUPT);
        ck_assert(tsr_agg_is_empty(a, ir));
        ir_free(a, ir);
        tsr_agg_free(a);
    }
    /* deep nesting beyond the limit */
    cfg_t c = {TSR_OP_LAST, TSR_ANY, 0, 0};
    tsr_agg_t *a = make(&c);
    void *ir = ir_new(a);
    uint8_t deep[64] = {TSR_AGG_IR_VERSION, TSR_OP_LAST, 1, 0, 0};
    size_t len = 5;
    while (len < sizeof deep - 2) {
        deep[len++] = TSR_LIST;
        deep[len++] = 1;
    }
    ck_assert_int_eq(tsr_agg_decode(a, ir, deep, len, NULL), TSR_ECORRUPT);
    ir_free(a, ir);
    tsr_agg_free(a);
}
END_TEST

/* ---- fixed cases the SPEC spells out ------------------------------------------------ */

static tsr_value_t run1(tsr_op_t op, tsr_type_t in, int64_t k, const tsr_value_t *v,
                        const int64_t *ts, size_t n, tsr_arena_t *ar) {
    cfg_t c = {op, in, 0, k};
    tsr_agg_t *a = make(&c);
    void *ir = ir_new(a);
    for (size_t i = 0; i < n; i++) tsr_agg_update(a, ir, &v[i], NULL, ts ? ts[i] : 0, i);
    tsr_value_t out = tsr_agg_finalize(a, ir, ar);
    tsr_value_t copy = tsr_value_copy(&out, ar);
    ir_free(a, ir);
    tsr_agg_free(a);
    return copy;
}

START_TEST(test_spec_cases) {
    tsr_arena_t ar;
    tsr_arena_init(&ar, 0);
    /* SUM wraps in two's complement */
    tsr_value_t w[] = {tsr_value_long(INT64_MAX), tsr_value_long(1)};
    tsr_value_t r = run1(TSR_OP_SUM, L, 0, w, NULL, 2, &ar);
    ck_assert_int_eq(r.kind, TSR_LONG);
    ck_assert(r.u.l == INT64_MIN);
    /* empty -> null, COUNT and SUM included; null inputs are skipped */
    tsr_value_t nul = tsr_value_null();
    ck_assert_int_eq(run1(TSR_OP_COUNT, L, 0, &nul, NULL, 1, &ar).kind, TSR_NULL);
    ck_assert_int_eq(run1(TSR_OP_SUM, L, 0, NULL, NULL, 0, &ar).kind, TSR_NULL);
    /* Inf output -> null */
    tsr_value_t big[] = {tsr_value_double(1e308), tsr_value_double(1e308)};
    ck_assert_int_eq(run1(TSR_OP_SUM, D, 0, big, NULL, 2, &ar).kind, TSR_NULL);
    ck_assert_int_eq(run1(TSR_OP_AVERAGE, D, 0, big, NULL, 2, &ar).kind, TSR_NULL);
    /* FIRST / LAST: on equal ts the earlier row wins for both; LAST_K[0] == LAST */
    tsr_value_t v[] = {tsr_value_long(1), tsr_value_long(2), tsr_value_long(3),
                       tsr_value_long(4)};
    int64_t ts[] = {5, 7, 7, 5};
    ck_assert_int_eq(run1(TSR_OP_LAST, L, 0, v, ts, 4, &ar).u.l, 2);
    ck_assert_int_eq(run1(TSR_OP_FIRST, L, 0, v, ts, 4, &ar).u.l, 1);
    r = run1(TSR_OP_LAST_K, L, 3, v, ts, 4, &ar);
    ck_assert_int_eq(r.len, 3);
    ck_assert_int_eq(r.u.items[0].u.l, 2);
    ck_assert_int_eq(r.u.items[1].u.l, 3);
    ck_assert_int_eq(r.u.items[2].u.l, 1);
    r = run1(TSR_OP_FIRST_K, L, 3, v, ts, 4, &ar);
    ck_assert_int_eq(r.u.items[0].u.l, 1);
    ck_assert_int_eq(r.u.items[1].u.l, 4);
    ck_assert_int_eq(r.u.items[2].u.l, 2);
    /* TOP_K keeps duplicates, UNIQUE_TOP_K does not */
    tsr_value_t dup[] = {tsr_value_long(5), tsr_value_long(5), tsr_value_long(1),
                         tsr_value_long(3)};
    r = run1(TSR_OP_TOP_K, L, 3, dup, NULL, 4, &ar);
    ck_assert(r.len == 3 && r.u.items[0].u.l == 5 && r.u.items[1].u.l == 5 &&
              r.u.items[2].u.l == 3);
    r = run1(TSR_OP_UNIQUE_TOP_K, L, 3, dup, NULL, 4, &ar);
    ck_assert(r.len == 3 && r.u.items[0].u.l == 5 && r.u.items[1].u.l == 3 &&
              r.u.items[2].u.l == 1);
    /* strings by bytes: "\xff" > "b" > "ab" > "a" > "" */
    tsr_value_t s[] = {tsr_value_string("ab", 2), tsr_value_string("\xff", 1),
                       tsr_value_string("", 0), tsr_value_string("b", 1)};
    r = run1(TSR_OP_MAX, S, 0, s, NULL, 4, &ar);
    ck_assert(r.len == 1 && (uint8_t)r.u.s[0] == 0xff);
    r = run1(TSR_OP_MIN, S, 0, s, NULL, 4, &ar);
    ck_assert(r.kind == TSR_STRING && r.len == 0);
    /* SKEW null below 3 values or with M2 = 0; KURTOSIS below 4 */
    tsr_value_t three[] = {tsr_value_long(1), tsr_value_long(2), tsr_value_long(4)};
    ck_assert_int_eq(run1(TSR_OP_SKEW, L, 0, three, NULL, 2, &ar).kind, TSR_NULL);
    ck_assert_int_eq(run1(TSR_OP_SKEW, L, 0, three, NULL, 3, &ar).kind, TSR_DOUBLE);
    ck_assert_int_eq(run1(TSR_OP_KURTOSIS, L, 0, three, NULL, 3, &ar).kind, TSR_NULL);
    tsr_value_t same[] = {tsr_value_long(7), tsr_value_long(7), tsr_value_long(7),
                          tsr_value_long(7)};
    ck_assert_int_eq(run1(TSR_OP_SKEW, L, 0, same, NULL, 4, &ar).kind, TSR_NULL);
    ck_assert_int_eq(run1(TSR_OP_KURTOSIS, L, 0, same, NULL, 4, &ar).kind, TSR_NULL);
    ck_assert(run1(TSR_OP_VARIANCE, L, 0, same, NULL, 4, &ar).u.d == 0.0);
    /* population variance of 1, 2, 4 = 14/9 */
    ck_assert(fabs(run1(TSR_OP_VARIANCE, L, 0, three, NULL, 3, &ar).u.d - 14.0 / 9) < 1e-15);
    /* HISTOGRAM top-k: ties by key ascending */
    tsr_value_t h[] = {tsr_value_string("b", 1), tsr_value_string("a", 1),
                       tsr_value_string("c", 1), tsr_value_string("c", 1)};
    r = run1(TSR_OP_HISTOGRAM, S, 2, h, NULL, 4, &ar);
    ck_assert_int_eq(r.len, 2);
    ck_assert(r.u.items[0].len == 1 && r.u.items[0].u.s[0] == 'c' && r.u.items[1].u.l == 2);
    ck_assert(r.u.items[2].len == 1 && r.u.items[2].u.s[0] == 'a' && r.u.items[3].u.l == 1);
    /* a declared double column coerces longs; a declared long column skips doubles */
    tsr_value_t mixed[] = {tsr_value_long(2), tsr_value_double(0.5), tsr_value_long(-3)};
    r = run1(TSR_OP_SUM, D, 0, mixed, NULL, 3, &ar);
    ck_assert(r.kind == TSR_DOUBLE && r.u.d == -0.5);
    r = run1(TSR_OP_MIN, D, 0, mixed, NULL, 3, &ar);
    ck_assert(r.kind == TSR_DOUBLE && r.u.d == -3.0);
    r = run1(TSR_OP_SUM, L, 0, mixed, NULL, 3, &ar);
    ck_assert(r.kind == TSR_LONG && r.u.l == -1);
    r = run1(TSR_OP_HISTOGRAM, D, 0, mixed, NULL, 1, &ar);
    ck_assert_str_eq(json(&r, &ar), "{\"2.0\":1}");
    /* SUM over ANY: long until a double arrives */
    ck_assert_int_eq(run1(TSR_OP_SUM, A, 0, mixed, NULL, 1, &ar).kind, TSR_LONG);
    r = run1(TSR_OP_SUM, A, 0, mixed, NULL, 3, &ar);
    ck_assert(r.kind == TSR_DOUBLE && r.u.d == -0.5);
    /* long buckets and histogram keys use the canonical key string */
    cfg_t c = {TSR_OP_COUNT, L, 1, 0};
    tsr_agg_t *a = make(&c);
    void *ir = ir_new(a);
    tsr_value_t b1 = tsr_value_long(-12), b2 = tsr_value_double(2.5), x = tsr_value_long(1);
    tsr_agg_update(a, ir, &x, &b1, 0, 0);
    tsr_agg_update(a, ir, &x, &b2, 0, 1);
    tsr_agg_update(a, ir, &x, &b1, 0, 2);
    tsr_agg_update(a, ir, &x, &nul, 0, 3);   /* null bucket skips the row */
    tsr_agg_update(a, ir, &nul, &b2, 0, 4);  /* null input: no new bucket either */
    tsr_agg_update(a, ir, &x, NULL, 0, 5);
    r = tsr_agg_finalize(a, ir, &ar);
    ck_assert_str_eq(json(&r, &ar), "{\"-12\":2,\"2.5\":1}");
    ir_free(a, ir);
    tsr_agg_free(a);
    tsr_arena_free(&ar);
}
END_TEST

/* ---- names, types and validation ---------------------------------------------------- */

START_TEST(test_names) {
    char buf[64];
    for (int i = 0; i < TSR_OP__COUNT; i++) {
        tsr_op_t op;
        ck_assert_int_eq(tsr_op_from_name(tsr_op_name((tsr_op_t)i), &op), 0);
        ck_assert_int_eq(op, i);
    }
    tsr_op_t op;
    ck_assert_int_eq(tsr_op_from_name("sum", &op), TSR_ENOTFOUND);
    ck_assert_int_eq(tsr_op_from_name("NOPE", &op), TSR_ENOTFOUND);
    ck_assert_ptr_null(tsr_op_name(TSR_OP__COUNT));
    ck_assert_str_eq(tsr_op_name(TSR_OP_APPROX_HEAVY_HITTERS_K), "APPROX_HEAVY_HITTERS_K");
    ck_assert_str_eq(tsr_op_column_name(TSR_OP_LAST_K, 5, buf, sizeof buf), "last5");
    ck_assert_str_eq(tsr_op_column_name(TSR_OP_FIRST_K, 3, buf, sizeof buf), "first3");
    ck_assert_str_eq(tsr_op_column_name(TSR_OP_TOP_K, 10, buf, sizeof buf), "top10");
    ck_assert_str_eq(tsr_op_column_name(TSR_OP_BOTTOM_K, 2, buf, sizeof buf), "bottom2");
    ck_assert_str_eq(tsr_op_column_name(TSR_OP_UNIQUE_TOP_K, 4, buf, sizeof buf), "unique_top4");
    ck_assert_str_eq(tsr_op_column_name(TSR_OP_SUM, 0, buf, sizeof buf), "sum");
    ck_assert_str_eq(tsr_op_column_name(TSR_OP_APPROX_PERCENTILE, 0, buf, sizeof buf),
                     "approx_percentile");
    ck_assert_str_eq(tsr_op_column_name(TSR_OP_BOUNDED_UNIQUE_COUNT, 8, buf, sizeof buf),
                     "bounded_unique_count");
    ck_assert_str_eq(tsr_op_column_name(TSR_OP_APPROX_HISTOGRAM_K, 8, buf, sizeof buf),
                     "approx_histogram_k");
    ck_assert_str_eq(tsr_op_column_name(TSR_OP_SUM, 0, buf, 3), "su");
    ck_assert(tsr_op_requires_k(TSR_OP_UNIQUE_TOP_K) && !tsr_op_requires_k(TSR_OP_HISTOGRAM));
    ck_assert(tsr_op_has_delete(TSR_OP_HISTOGRAM) && !tsr_op_has_delete(TSR_OP_MIN));
    ck_assert(tsr_op_is_approx(TSR_OP_APPROX_FREQUENT_K) && !tsr_op_is_approx(TSR_OP_SUM));
}
END_TEST

static int new_err(tsr_op_t op, tsr_type_t in, int64_t k, const double *pct, size_t npct,
                   tsr_error_t *err) {
    tsr_agg_spec_t spec = {op, in, 0, k, npct, pct};
    tsr_agg_t *a = NULL;
    tsr_error_clear(err);
    int rc = tsr_agg_new(&spec, &a, err);
    if (rc == 0) {
        ck_assert_ptr_nonnull(a);
        tsr_agg_free(a);
    } else {
        ck_assert_ptr_null(a);
    }
    return rc;
}

START_TEST(test_new_errors) {
    tsr_error_t err;
    ck_assert_int_eq(new_err(TSR_OP_SUM, S, 0, NULL, 0, &err), TSR_ETYPE);
    ck_assert_str_eq(err.msg, "SUM expects a numeric or boolean input, got string");
    ck_assert_int_eq(new_err(TSR_OP_AVERAGE, LIST(S), 0, NULL, 0, &err), TSR_ETYPE);
    ck_assert_str_eq(err.msg, "AVERAGE expects a numeric input, got list<string>");
    ck_assert_int_eq(new_err(TSR_OP_MIN, B, 0, NULL, 0, &err), TSR_ETYPE);
    ck_assert_int_eq(new_err(TSR_OP_UNIQUE_COUNT, LIST(LIST(L)), 0, NULL, 0, &err), TSR_ETYPE);
    ck_assert_int_eq(new_err(TSR_OP_TOP_K, L, 0, NULL, 0, &err), TSR_EINVAL);
    ck_assert_ptr_nonnull(strstr(err.msg, "requires argMap.k"));
    ck_assert_int_eq(new_err(TSR_OP_TOP_K, L, TSR_AGG_MAX_K + 1, NULL, 0, &err), TSR_EINVAL);
    ck_assert_int_eq(new_err(TSR_OP_LAST_K, L, -1, NULL, 0, &err), TSR_EINVAL);
    ck_assert_int_eq(new_err(TSR_OP_LAST_K, L, TSR_AGG_MAX_K, NULL, 0, &err), 0);
    double bad[] = {0.5, 1.5};
    ck_assert_int_eq(new_err(TSR_OP_APPROX_PERCENTILE, D, 0, bad, 2, &err), TSR_EINVAL);
    ck_assert_ptr_nonnull(strstr(err.msg, "percentiles[1] = 1.5"));
    double nan[] = {NAN};
    ck_assert_int_eq(new_err(TSR_OP_APPROX_PERCENTILE, D, 0, nan, 1, &err), TSR_EINVAL);
    double many[TSR_AGG_MAX_PERCENTILES + 1] = {0};
    ck_assert_int_eq(new_err(TSR_OP_APPROX_PERCENTILE, D, 0, many,
                             TSR_AGG_MAX_PERCENTILES + 1, &err), TSR_EINVAL);
    ck_assert_int_eq(new_err(TSR_OP_APPROX_PERCENTILE, D, 0, many, TSR_AGG_MAX_PERCENTILES,
                             &err), 0);
    ck_assert_int_eq(new_err((tsr_op_t)99, L, 0, NULL, 0, &err), TSR_EINVAL);
    /* ANY is accepted everywhere */
    for (int i = 0; i < TSR_OP__COUNT; i++)
        ck_assert_int_eq(new_err((tsr_op_t)i, A, tsr_op_requires_k((tsr_op_t)i) ? 3 : 0, NULL,
                                 0, &err), 0);
}
END_TEST

START_TEST(test_output_types) {
    struct { tsr_op_t op; tsr_type_t in; int bucketed; int64_t k; tsr_type_t out; } t[] = {
        {TSR_OP_COUNT, S, 0, 0, L},
        {TSR_OP_SUM, L, 0, 0, L},
        {TSR_OP_SUM, B, 0, 0, L},
        {TSR_OP_SUM, D, 0, 0, D},
        {TSR_OP_SUM, A, 0, 0, A},
        {TSR_OP_SUM, LIST(D), 0, 0, D},
        {TSR_OP_AVERAGE, L, 0, 0, D},
        {TSR_OP_MIN, S, 0, 0, S},
        {TSR_OP_MAX, LIST(L), 0, 0, L},
        {TSR_OP_FIRST, LIST(L), 0, 0, LIST(L)},
        {TSR_OP_LAST_K, LIST(S), 0, 2, LIST(LIST(S))},
        {TSR_OP_TOP_K, LIST(D), 0, 2, LIST(D)},
        {TSR_OP_HISTOGRAM, L, 0, 0, MAP(L)},
        {TSR_OP_UNIQUE_COUNT, S, 0, 0, L},
        {TSR_OP_APPROX_PERCENTILE, L, 0, 0, LIST(D)},
        {TSR_OP_APPROX_FREQUENT_K, S, 0, 0, MAP(L)},
        {TSR_OP_SUM, MAP(L), 0, 0, MAP(L)},
        {TSR_OP_SUM, L, 1, 0, MAP(L)},
        {TSR_OP_LAST, MAP(S), 1, 0, MAP(MAP(S))},
        {TSR_OP_HISTOGRAM, MAP(S), 1, 0, MAP(MAP(MAP(L)))},
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        cfg_t c = {t[i].op, t[i].in, t[i].bucketed, t[i].k};
        tsr_agg_t *a = make(&c);
        char w[TSR_TYPE_NAME_MAX], g[TSR_TYPE_NAME_MAX];
        ck_assert_msg(tsr_agg_output_type(a) == t[i].out, "%s: want %s got %s",
                      tsr_op_name(t[i].op), tsr_type_name(t[i].out, w, sizeof w),
                      tsr_type_name(tsr_agg_output_type(a), g, sizeof g));
        ck_assert_int_eq(tsr_agg_op(a), t[i].op);
        ck_assert_int_eq(tsr_agg_ir_size(a) % 8, 0);
        tsr_agg_free(a);
    }
}
END_TEST

/* LAST of strings reuses its buffer; a relocated (memcpy'd) IR keeps working. */
START_TEST(test_relocatable) {
    cfg_t c = {TSR_OP_LAST_K, S, 1, 3};
    tsr_agg_t *a = make(&c);
    void *ir = ir_new(a);
    tsr_arena_t ar;
    tsr_arena_init(&ar, 0);
    char key[16];
    for (int i = 0; i < 100; i++) {
        snprintf(key, sizeof key, "v%d", i);
        tsr_value_t v = tsr_value_string(key, strlen(key)), b = tsr_value_long(i % 7);
        tsr_agg_update(a, ir, &v, &b, i, (uint64_t)i);
    }
    void *moved = tsr_malloc(tsr_agg_ir_size(a));
    memcpy(moved, ir, tsr_agg_ir_size(a));
    free(ir);
    tsr_value_t r = tsr_agg_finalize(a, moved, &ar);
    ck_assert_int_eq(r.len, 7);
    ck_assert_str_eq(json(&r.u.items[0], &ar), "\"0\"");
    ck_assert_str_eq(json(&r.u.items[1], &ar), "[\"v98\",\"v91\",\"v84\"]");
    ir_free(a, moved);
    tsr_agg_free(a);
    tsr_arena_free(&ar);
}
END_TEST

static Suite *agg_suite(void) {
    Suite *s = suite_create("agg");
    TCase *tc = tcase_create("brute");
    tcase_set_timeout(tc, 60);
    tcase_add_loop_test(tc, test_vs_brute, 0, NGROUPS);
    suite_add_tcase(s, tc);
    TCase *codec = tcase_create("codec");
    tcase_set_timeout(codec, 60);
    tcase_add_loop_test(codec, test_codec_fuzz, 0, NGROUPS);
    tcase_add_test(codec, test_codec_absurd_counts);
    suite_add_tcase(s, codec);
    TCase *api = tcase_create("api");
    tcase_add_test(api, test_spec_cases);
    tcase_add_test(api, test_names);
    tcase_add_test(api, test_new_errors);
    tcase_add_test(api, test_output_types);
    tcase_add_test(api, test_relocatable);
    suite_add_tcase(s, api);
    return s;
}

int main(void) { return tsr_test_run(agg_suite()); }
