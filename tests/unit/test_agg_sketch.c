/*
 * test_agg_sketch.c — the approximate aggregations (APPROX_UNIQUE_COUNT, APPROX_PERCENTILE,
 * APPROX_HISTOGRAM_K / APPROX_FREQUENT_K / APPROX_HEAVY_HITTERS_K) through the kernel's
 * public API, against brute-force answers computed here from the raw rows:
 *   - in the sketches' exact regimes (few distinct values, n within the KLL buffer) the
 *     output must equal the brute force exactly;
 *   - beyond them, within the documented bounds: HLL relative error <= 2% (SPEC §4), KLL
 *     normalized rank error <= 1% at k = 128, frequent-item counts in [c - n/(4k+1), c];
 *   - sequential, split + merged in random order, and encode -> decode -> merge all obey
 *     the same bounds (HLL, a pure function of the set of hashes, must agree exactly);
 *   - the codec rejects every truncation and survives random corruption.
 * (The sketches' own accuracy is tested in test_sketch.c; this file tests the glue: hashing,
 * key strings, lazy creation, list flattening, buckets, percentiles, the top-k output.)
 */
#include "tsr_test.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "tsr/agg.h"

static tsr_agg_t *make(tsr_op_t op, tsr_type_t in, int bucketed, int64_t k, const double *pct,
                       size_t npct) {
    tsr_agg_spec_t spec = {op, in, bucketed, k, npct, pct};
    tsr_agg_t *a = NULL;
    tsr_error_t err;
    tsr_error_clear(&err);
    ck_assert_msg(tsr_agg_new(&spec, &a, &err) == 0, "%s", err.msg);
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

/* Three IRs built from the same rows: sequential, split into parts merged in random order,
 * and each part through encode/decode before merging. */
typedef struct trio {
    void *seq, *merged, *codec;
} trio_t;

static trio_t build(const tsr_agg_t *a, const tsr_value_t *v, const tsr_value_t *bk, size_t n,
                    tsr_rng_t *rng) {
    trio_t t = {ir_new(a), ir_new(a), ir_new(a)};
    int np = (int)tsr_rng_range(rng, 1, 8);
    void *parts[8];
    for (int p = 0; p < np; p++) parts[p] = ir_new(a);
    for (size_t i = 0; i < n; i++) {
        tsr_agg_update(a, t.seq, &v[i], bk ? &bk[i] : NULL, 0, i);
        tsr_agg_update(a, parts[tsr_rng_below(rng, (uint64_t)np)], &v[i], bk ? &bk[i] : NULL, 0, i);
    }
    tsr_buf_t b;
    tsr_buf_init(&b);
    for (int p = np - 1; p >= 0; p--) {
        int q = (int)tsr_rng_below(rng, (uint64_t)p + 1); /* random order: swap-pick */
        void *x = parts[q];
        parts[q] = parts[p];
        parts[p] = x;
        tsr_agg_merge(a, t.merged, x);
        tsr_buf_clear(&b);
        tsr_agg_encode(a, x, &b);
        void *d = ir_new(a);
        tsr_error_t err;
        tsr_error_clear(&err);
        ck_assert_msg(tsr_agg_decode(a, d, b.data, b.len, &err) == 0, "%s", err.msg);
        tsr_agg_merge(a, t.codec, d);
        ir_free(a, d);
        ir_free(a, x);
    }
    tsr_buf_free(&b);
    return t;
}
static void trio_free(const tsr_agg_t *a, trio_t *t) {
    ir_free(a, t->seq);
    ir_free(a, t->merged);
    ir_free(a, t->codec);
}

static tsr_value_t gen(tsr_rng_t *r, int kind, uint64_t distinct, tsr_arena_t *ar) {
    uint64_t x = tsr_rng_below(r, distinct ? distinct : 1);
    switch (kind) {
    case 0: return tsr_value_long((int64_t)x - (int64_t)(distinct / 2));
    case 1: return tsr_value_double((double)x / 8);
    default: {
        char *s = tsr_arena_printf(ar, "k%llu", (unsigned long long)x);
        return tsr_value_string(s, strlen(s));
    }
    }
}

/* ---- APPROX_UNIQUE_COUNT ------------------------------------------------------------ */

static int vcmp(const void *a, const void *b) { return tsr_value_cmp(a, b); }

static int64_t brute_distinct(const tsr_value_t *v, size_t n) {
    tsr_value_t *c = tsr_malloc((n + 1) * sizeof(*c));
    size_t m = 0;
    for (size_t i = 0; i < n; i++)
        if (v[i].kind != TSR_NULL) c[m++] = v[i];
    qsort(c, m, sizeof(*c), vcmp);
    int64_t d = 0;
    for (size_t i = 0; i < m; i++)
        if (i == 0 || !tsr_value_equal(&c[i], &c[i - 1])) d++;
    free(c);
    return d;
}

START_TEST(test_hll) {
    static const uint64_t sizes[] = {0, 1, 7, 300, 2000, 6000, 40000};
    tsr_rng_t rng = {(uint64_t)_i * 31 + 5};
    uint64_t distinct = sizes[_i % 7];
    int kind = _i % 3;
    size_t n = distinct ? (size_t)(distinct * 2) : 3;
    tsr_arena_t ar;
    tsr_arena_init(&ar, 0);
    tsr_value_t *v = tsr_arena_alloc(&ar, (n + 1) * sizeof(*v));
    for (size_t i = 0; i < n; i++)
        v[i] = distinct && tsr_rng_below(&rng, 20) ? gen(&rng, kind, distinct, &ar)
                                                  : tsr_value_null();
    int64_t want = brute_distinct(v, n);
    tsr_agg_t *a = make(TSR_OP_APPROX_UNIQUE_COUNT, kind == 0 ? TSR_LONG : kind == 1 ? TSR_DOUBLE : TSR_STRING,
                        0, 0, NULL, 0);
    trio_t t = build(a, v, NULL, n, &rng);
    tsr_value_t r[3] = {tsr_agg_finalize(a, t.seq, &ar), tsr_agg_finalize(a, t.merged, &ar),
                        tsr_agg_finalize(a, t.codec, &ar)};
    for (int i = 0; i < 3; i++) {
        if (want == 0) {
            ck_assert_int_eq(r[i].kind, TSR_NULL);
            continue;
        }
        ck_assert_int_eq(r[i].kind, TSR_LONG);
        /* exact while the sparse set holds (<= 2^(lgk+3) = 2048 hashes at lgk 8) */
        if (want <= 2048) ck_assert_int_eq(r[i].u.l, want);
        else ck_assert_msg(fabs((double)r[i].u.l - (double)want) <= 0.02 * (double)want,
                           "estimate %lld for %lld distinct", (long long)r[i].u.l, (long long)want);
        /* a pure function of the set of hashes: every path gives the same estimate */
        ck_assert_int_eq(r[i].u.l, r[0].u.l);
    }
    trio_free(a, &t);
    tsr_agg_free(a);
    tsr_arena_free(&ar);
}
END_TEST

/* Buckets and list inputs: exact small counts per bucket. */
START_TEST(test_hll_bucketed_lists) {
    tsr_rng_t rng = {(uint64_t)_i + 99};
    tsr_arena_t ar;
    tsr_arena_init(&ar, 0);
    size_t n = 200;
    tsr_value_t *v = tsr_arena_alloc(&ar, n * sizeof(*v)), *b = tsr_arena_alloc(&ar, n * sizeof(*b));
    int64_t seen[3][50] = {{0}};
    for (size_t i = 0; i < n; i++) {
        size_t m = tsr_rng_below(&rng, 4);
        tsr_value_t *it = tsr_arena_alloc(&ar, (m + 1) * sizeof(*it));
        int bk = (int)tsr_rng_below(&rng, 3);
        b[i] = tsr_value_long(bk);
        for (size_t j = 0; j < m; j++) {
            int64_t x = (int64_t)tsr_rng_below(&rng, 50);
            it[j] = tsr_value_long(x);
            seen[bk][x] = 1;
        }
        v[i] = tsr_value_list(it, m);
    }
    tsr_agg_t *a = make(TSR_OP_APPROX_UNIQUE_COUNT, TSR_TYPE_LIST(TSR_LONG), 1, 0, NULL, 0);
    trio_t t = build(a, v, b, n, &rng);
    tsr_value_t r = tsr_agg_finalize(a, t.merged, &ar);
    ck_assert_int_eq(r.kind, TSR_MAP);
    for (uint32_t i = 0; i < r.len; i++) {
        int bk = r.u.items[2 * i].u.s[0] - '0';
        int64_t want = 0;
        for (int x = 0; x < 50; x++) want += seen[bk][x];
        ck_assert_int_eq(r.u.items[2 * i + 1].u.l, want);
    }
    trio_free(a, &t);
    tsr_agg_free(a);
    tsr_arena_free(&ar);
}
END_TEST

/* ---- APPROX_PERCENTILE -------------------------------------------------------------- */

static int dcmp(const void *pa, const void *pb) {
    double a = *(const double *)pa, b = *(const double *)pb;
    return (a > b) - (a < b);
}

START_TEST(test_kll) {
    static const size_t sizes[] = {0, 1, 40, 300, 5000, 60000};
    static const double pct[] = {0, 0.01, 0.1, 0.25, 0.5, 0.9, 0.99, 1};
    const size_t npct = sizeof pct / sizeof pct[0];
    tsr_rng_t rng = {(uint64_t)_i * 977 + 1};
    size_t n = sizes[_i % 6];
    int as_long = _i % 2;
    tsr_arena_t ar;
    tsr_arena_init(&ar, 0);
    tsr_value_t *v = tsr_arena_alloc(&ar, (n + 1) * sizeof(*v));
    double *sorted = tsr_arena_alloc(&ar, (n + 1) * sizeof(double));
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        if (tsr_rng_below(&rng, 10) == 0) {
            v[i] = tsr_value_null();
            continue;
        }
        /* a skewed distribution with many duplicates */
        double x = floor(pow(tsr_rng_double(&rng), 3) * 1000) - 100;
        v[i] = as_long ? tsr_value_long((int64_t)x) : tsr_value_double(x);
        sorted[m++] = x;
    }
    qsort(sorted, m, sizeof(double), dcmp);
    tsr_agg_t *a = make(TSR_OP_APPROX_PERCENTILE, as_long ? TSR_LONG : TSR_DOUBLE, 0, 0, pct, npct);
    trio_t t = build(a, v, NULL, n, &rng);
    void *irs[3] = {t.seq, t.merged, t.codec};
    for (int w = 0; w < 3; w++) {
        tsr_value_t r = tsr_agg_finalize(a, irs[w], &ar);
        if (m == 0) {
            ck_assert_int_eq(r.kind, TSR_NULL);
            continue;
        }
        ck_assert_int_eq(r.kind, TSR_LIST);
        ck_assert_int_eq(r.len, npct);
        for (size_t i = 0; i < npct; i++) {
            double q = r.u.items[i].u.d;
            if (m <= 3 * 128 || pct[i] == 0 || pct[i] == 1) {
                /* exact regime: the item of rank t = max(1, ceil(p n)) */
                size_t tr = (size_t)ceil(pct[i] * (double)m);
                if (tr < 1) tr = 1;
                ck_assert_msg(q == sorted[tr - 1], "p=%g n=%zu: %g vs %g", pct[i], m, q,
                              sorted[tr - 1]);
                continue;
            }
            /* rank interval of q in the data: [lo, hi] / m must come within 1% of p */
            size_t lo = 0, hi = 0;
            while (lo < m && sorted[lo] < q) lo++;
            hi = lo;
            while (hi < m && sorted[hi] <= q) hi++;
            ck_assert_msg(hi > lo, "quantile %g is not an input value", q);
            double rlo = (double)lo / (double)m, rhi = (double)hi / (double)m;
            ck_assert_msg(pct[i] >= rlo - 0.01 && pct[i] <= rhi + 0.01,
                          "p=%g n=%zu: q=%g has ranks [%g, %g]", pct[i], m, q, rlo, rhi);
        }
    }
    trio_free(a, &t);
    tsr_agg_free(a);
    tsr_arena_free(&ar);
}
END_TEST

/* ---- APPROX_*_K --------------------------------------------------------------------- */

typedef struct kc {
    const char *key;
    size_t len;
    int64_t n;
} kc_t;
static int kc_cmp(const void *pa, const void *pb) {
    const kc_t *a = pa, *b = pb;
    if (a->n != b->n) return a->n > b->n ? -1 : 1;
    size_t m = a->len < b->len ? a->len : b->len;
    int c = memcmp(a->key, b->key, m);
    return c ? c : (a->len > b->len) - (a->len < b->len);
}

START_TEST(test_freq) {
    static const tsr_op_t ops[] = {TSR_OP_APPROX_HISTOGRAM_K, TSR_OP_APPROX_FREQUENT_K,
                                   TSR_OP_APPROX_HEAVY_HITTERS_K};
    static const uint64_t distincts[] = {1, 5, 60, 3000};
    tsr_op_t op = ops[_i % 3];
    uint64_t distinct = distincts[(_i / 3) % 4];
    int64_t k = (_i % 2) ? 0 : 3; /* 0 = default 8 */
    int64_t kk = k ? k : TSR_AGG_DEFAULT_FREQ_K;
    tsr_rng_t rng = {(uint64_t)_i * 7 + 123};
    tsr_arena_t ar;
    tsr_arena_init(&ar, 0);
    size_t n = distinct > 100 ? 20000 : 300;
    tsr_value_t *v = tsr_arena_alloc(&ar, n * sizeof(*v));
    kc_t *cnt = tsr_arena_alloc(&ar, (distinct + 1) * sizeof(*cnt));
    for (uint64_t d = 0; d < distinct; d++) {
        char *s = tsr_arena_printf(&ar, "%llu", (unsigned long long)d);
        cnt[d] = (kc_t){s, strlen(s), 0};
    }
    int64_t total = 0;
    for (size_t i = 0; i < n; i++) {
        if (tsr_rng_below(&rng, 15) == 0) {
            v[i] = tsr_value_null();
            continue;
        }
        /* zipf-like: small ids much more frequent */
        uint64_t d = (uint64_t)(pow(tsr_rng_double(&rng), 4) * (double)distinct);
        if (d >= distinct) d = distinct - 1;
        v[i] = tsr_value_long((int64_t)d); /* keys are the canonical strings "0", "1", ... */
        cnt[d].n++;
        total++;
    }
    qsort(cnt, distinct, sizeof(*cnt), kc_cmp);
    size_t live = 0;
    while (live < distinct && cnt[live].n > 0) live++;
    tsr_agg_t *a = make(op, TSR_LONG, 0, k, NULL, 0);
    trio_t t = build(a, v, NULL, n, &rng);
    void *irs[3] = {t.seq, t.merged, t.codec};
    double bound = (double)total / (double)(4 * kk + 1);
    for (int w = 0; w < 3; w++) {
        tsr_value_t r = tsr_agg_finalize(a, irs[w], &ar);
        if (total == 0) {
            ck_assert_int_eq(r.kind, TSR_NULL);
            continue;
        }
        ck_assert_int_eq(r.kind, TSR_MAP);
        ck_assert_uint_le(r.len, (size_t)kk);
        if (live <= (size_t)(8 * kk)) {
            /* exact regime: the brute-force top k (count desc, key asc), in that order */
            ck_assert_uint_eq(r.len, live < (size_t)kk ? live : (size_t)kk);
            for (uint32_t i = 0; i < r.len; i++) {
                ck_assert(r.u.items[2 * i].len == cnt[i].len &&
                          memcmp(r.u.items[2 * i].u.s, cnt[i].key, cnt[i].len) == 0);
                ck_assert_int_eq(r.u.items[2 * i + 1].u.l, cnt[i].n);
            }
            continue;
        }
        /* sketch regime: each reported count is a lower bound within n / (4k + 1) */
        for (uint32_t i = 0; i < r.len; i++) {
            const tsr_value_t *key = &r.u.items[2 * i];
            int64_t est = r.u.items[2 * i + 1].u.l, truth = -1;
            for (uint64_t d = 0; d < distinct; d++)
                if (cnt[d].len == key->len && memcmp(cnt[d].key, key->u.s, key->len) == 0)
                    truth = cnt[d].n;
            ck_assert_int_ge(truth, 0);
            ck_assert_msg(est <= truth && (double)(truth - est) <= bound,
                          "key %.*s: est %lld true %lld bound %g", (int)key->len, key->u.s,
                          (long long)est, (long long)truth, bound);
        }
        /* the heaviest key is always reported first (its lead exceeds the error here) */
        if ((double)(cnt[0].n - cnt[1].n) > bound)
            ck_assert(r.u.items[0].len == cnt[0].len &&
                      memcmp(r.u.items[0].u.s, cnt[0].key, cnt[0].len) == 0);
    }
    trio_free(a, &t);
    tsr_agg_free(a);
    tsr_arena_free(&ar);
}
END_TEST

/* ---- codec -------------------------------------------------------------------------- */

START_TEST(test_sketch_codec_fuzz) {
    static const tsr_op_t ops[] = {TSR_OP_APPROX_UNIQUE_COUNT, TSR_OP_APPROX_PERCENTILE,
                                   TSR_OP_APPROX_HISTOGRAM_K, TSR_OP_APPROX_FREQUENT_K,
                                   TSR_OP_APPROX_HEAVY_HITTERS_K};
    tsr_op_t op = ops[_i % 5];
    int bucketed = (_i / 5) % 2;
    tsr_rng_t rng = {(uint64_t)_i * 3 + 11};
    tsr_arena_t ar;
    tsr_arena_init(&ar, 0);
    size_t n = 60 + tsr_rng_below(&rng, 100);
    tsr_value_t *v = tsr_arena_alloc(&ar, n * sizeof(*v)), *b = tsr_arena_alloc(&ar, n * sizeof(*b));
    for (size_t i = 0; i < n; i++) {
        v[i] = gen(&rng, 0, 40, &ar);
        b[i] = tsr_value_long((int64_t)tsr_rng_below(&rng, 3));
    }
    tsr_agg_t *a = make(op, TSR_LONG, bucketed, 0, NULL, 0);
    void *ir = ir_new(a), *d = ir_new(a);
    for (size_t i = 0; i < n; i++) tsr_agg_update(a, ir, &v[i], &b[i], 0, i);
    tsr_buf_t buf;
    tsr_buf_init(&buf);
    tsr_agg_encode(a, ir, &buf);
    /* a round trip finalizes identically */
    ck_assert_int_eq(tsr_agg_decode(a, d, buf.data, buf.len, NULL), 0);
    tsr_value_t x = tsr_agg_finalize(a, ir, &ar), y = tsr_agg_finalize(a, d, &ar);
    ck_assert(tsr_value_equal(&x, &y));
    for (size_t len = 0; len < buf.len; len++) { /* every strict prefix */
        uint8_t *copy = tsr_malloc(len + 1);
        memcpy(copy, buf.data, len);
        ck_assert_int_ne(tsr_agg_decode(a, d, copy, len, NULL), 0);
        ck_assert(tsr_agg_is_empty(a, d));
        free(copy);
    }
    /* unknown version byte */
    {
        uint8_t *copy = tsr_malloc(buf.len);
        memcpy(copy, buf.data, buf.len);
        copy[0] = 0x7f;
        tsr_error_t err;
        tsr_error_clear(&err);
        ck_assert_int_eq(tsr_agg_decode(a, d, copy, buf.len, &err), TSR_EVERSION);
        ck_assert_ptr_nonnull(strstr(err.msg, "version"));
        ck_assert(tsr_agg_is_empty(a, d));
        free(copy);
    }
    for (int t = 0; t < 150; t++) {
        uint8_t *copy = tsr_malloc(buf.len);
        memcpy(copy, buf.data, buf.len);
        size_t at = 1 + tsr_rng_below(&rng, buf.len - 1);
        copy[at] = (uint8_t)tsr_rng_next(&rng);
        int rc = tsr_agg_decode(a, d, copy, buf.len, NULL);
        ck_assert(rc == 0 || rc == TSR_ECORRUPT);
        (void)tsr_agg_finalize(a, d, &ar);
        tsr_agg_merge(a, d, ir);
        (void)tsr_agg_finalize(a, d, &ar);
        tsr_agg_update(a, d, &v[0], &b[0], 0, 0);
        free(copy);
    }
    ir_free(a, ir);
    ir_free(a, d);
    tsr_buf_free(&buf);
    tsr_agg_free(a);
    tsr_arena_free(&ar);
}
END_TEST

START_TEST(test_sketch_params) {
    tsr_agg_spec_t spec = {TSR_OP_APPROX_UNIQUE_COUNT, TSR_STRING, 0, 30, 0, NULL};
    tsr_agg_t *a = NULL;
    tsr_error_t err;
    ck_assert_int_eq(tsr_agg_new(&spec, &a, &err), TSR_EINVAL);
    ck_assert_ptr_nonnull(strstr(err.msg, "lgK"));
    spec.op = TSR_OP_APPROX_PERCENTILE;
    spec.input_type = TSR_DOUBLE;
    spec.k = 4;
    ck_assert_int_eq(tsr_agg_new(&spec, &a, &err), TSR_EINVAL);
    /* default percentile is the median */
    spec.k = 0;
    ck_assert_int_eq(tsr_agg_new(&spec, &a, &err), 0);
    void *ir = ir_new(a);
    for (int i = 1; i <= 9; i++) {
        tsr_value_t x = tsr_value_double(i);
        tsr_agg_update(a, ir, &x, NULL, 0, (uint64_t)i);
    }
    tsr_arena_t ar;
    tsr_arena_init(&ar, 0);
    tsr_value_t r = tsr_agg_finalize(a, ir, &ar);
    ck_assert(r.kind == TSR_LIST && r.len == 1 && r.u.items[0].u.d == 5.0);
    ir_free(a, ir);
    tsr_agg_free(a);
    tsr_arena_free(&ar);
}
END_TEST

static Suite *agg_sketch_suite(void) {
    Suite *s = suite_create("agg_sketch");
    TCase *tc = tcase_create("approx");
    tcase_set_timeout(tc, 60);
    tcase_add_loop_test(tc, test_hll, 0, 21);
    tcase_add_loop_test(tc, test_hll_bucketed_lists, 0, 4);
    tcase_add_loop_test(tc, test_kll, 0, 12);
    tcase_add_loop_test(tc, test_freq, 0, 24);
    tcase_add_loop_test(tc, test_sketch_codec_fuzz, 0, 10);
    tcase_add_test(tc, test_sketch_params);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return tsr_test_run(agg_sketch_suite()); }
