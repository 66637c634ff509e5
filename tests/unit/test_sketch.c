/*
 * test_sketch.c — the approximate sketches (common/sketch_*.c) against exact brute force.
 *
 * What is asserted (docs/sketches.md restates it):
 *   - HLL: EVERY trial (5 fixed seeds x cardinalities 10 .. 1M) within 2% at lgk 8; every lgk
 *     within 4 standard errors; exact
 *     counts up to the sparse limit; duplicates change nothing; merges of random splits in any
 *     order give the same bytes as the whole (the state is a function of the set); lgk mismatch
 *     is TSR_EINVAL.
 *   - KLL: the maximum normalized rank error over 1001 ranks <= 1% at k=128 for n = 1k, 100k,
 *     1M, four distributions, several seeds; exact for n <= k; merges of random splits in
 *     random orders within the same bound.
 *   - Frequent items: exact mode equals brute force; after switching, est <= c <= est + err,
 *     err <= n / capacity, all heavy hitters (c > n / capacity) present; merges likewise and
 *     symmetric.
 *   - Codecs: round trips re-encode to identical bytes; every truncation is rejected; thousands
 *     of random byte corruptions are rejected or decode to a usable sketch (ASan-clean).
 * All data come from seeded tsr_rng_t, so every run sees the same inputs.
 */
#include "tsr_test.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "tsr/sketch.h"
#include "tsr/value.h"

/* ------------------------------------------------------------------ helpers */

static uint64_t long_hash(int64_t x, uint64_t seed) {
    tsr_value_t v = tsr_value_long(x);
    return tsr_value_hash(&v, seed);
}

static void hll_bytes(const tsr_hll_t *h, tsr_buf_t *b) {
    tsr_buf_clear(b);
    tsr_hll_encode(h, b);
}

static void assert_same_bytes(const tsr_buf_t *a, const tsr_buf_t *b) {
    ck_assert_uint_eq(a->len, b->len);
    ck_assert(memcmp(a->data, b->data, a->len) == 0);
}

static void shuffle_i64(int64_t *a, size_t n, tsr_rng_t *r) {
    for (size_t i = n; i > 1; i--) {
        size_t j = tsr_rng_below(r, i);
        int64_t t = a[i - 1];
        a[i - 1] = a[j];
        a[j] = t;
    }
}

/* ------------------------------------------------------------------ HLL */

START_TEST(test_hll_small_exact) {
    tsr_hll_t *h = tsr_hll_new(8);
    ck_assert_int_eq(tsr_hll_lgk(h), 8);
    ck_assert(tsr_hll_estimate(h) == 0.0);
    /* Sparse limit at lgk 8 is 2^(8+3) = 2048 distinct hashes. */
    for (int64_t i = 1; i <= 2048; i++) {
        tsr_hll_add(h, long_hash(i, 7));
        tsr_hll_add(h, long_hash(i / 2 + 1, 7)); /* a duplicate of an earlier value */
        ck_assert(tsr_hll_estimate(h) == (double)i);
        ck_assert(tsr_hll_is_exact(h));
    }
    tsr_hll_add(h, long_hash(2049, 7));
    ck_assert(!tsr_hll_is_exact(h));
    ck_assert(fabs(tsr_hll_estimate(h) - 2049) / 2049 < 0.02);
    tsr_hll_free(h);
    /* Clamping of out-of-range sizes. */
    h = tsr_hll_new(0);
    ck_assert_int_eq(tsr_hll_lgk(h), TSR_HLL_LGK_MIN);
    tsr_hll_free(h);
    h = tsr_hll_new(99);
    ck_assert_int_eq(tsr_hll_lgk(h), TSR_HLL_LGK_MAX);
    tsr_hll_free(h);
}
END_TEST

/* Every trial within 2% at lgk 8: 5 seeds x {10, 100, 1k, 10k, 100k, 1M}. */
START_TEST(test_hll_accuracy) {
    static const int64_t points[] = {10, 100, 1000, 10000, 100000, 1000000};
    for (uint64_t seed = 1; seed <= 5; seed++) {
        tsr_hll_t *h = tsr_hll_new(8);
        int64_t base = (int64_t)seed * 1000000007LL, c = 0;
        for (size_t p = 0; p < sizeof points / sizeof points[0]; p++) {
            for (; c < points[p]; c++) tsr_hll_add(h, long_hash(base + c, seed));
            double est = tsr_hll_estimate(h), rel = fabs(est - (double)c) / (double)c;
            if (rel > 0.02)
                ck_abort_msg("seed %llu n %lld: estimate %.1f, relative error %.4f > 2%%",
                             (unsigned long long)seed, (long long)c, est, rel);
        }
        tsr_hll_free(h);
    }
}
END_TEST

/* Every lgk: exact up to its sparse limit 2^(lgk+3), then within 4 standard errors
 * (1.04 / sqrt(2^(lgk+7))) at 4x and 40x the limit. */
START_TEST(test_hll_every_lgk) {
    for (int lgk = TSR_HLL_LGK_MIN; lgk <= TSR_HLL_LGK_MAX; lgk++) {
        tsr_hll_t *h = tsr_hll_new(lgk);
        ck_assert_int_eq(tsr_hll_lgk(h), lgk);
        int64_t limit = 1LL << (lgk + 3), c = 0;
        for (; c < limit; c++) tsr_hll_add(h, long_hash(c, 21));
        ck_assert(tsr_hll_is_exact(h));
        ck_assert(tsr_hll_estimate(h) == (double)limit);
        double se = 1.04 / sqrt((double)(1 << (lgk + 7)));
        for (int64_t target = 4 * limit; target <= 40 * limit; target *= 10) {
            for (; c < target; c++) tsr_hll_add(h, long_hash(c, 21));
            ck_assert(!tsr_hll_is_exact(h));
            double rel = fabs(tsr_hll_estimate(h) - (double)c) / (double)c;
            if (rel > 4 * se)
                ck_abort_msg("lgk %d n %lld: relative error %.4f > 4 x %.4f", lgk, (long long)c,
                             rel, se);
        }
        tsr_hll_free(h);
    }
}
END_TEST

/* Duplicates and order: the state is a function of the set of hashes. */
START_TEST(test_hll_duplicates_and_order) {
    enum { N = 50000 };
    int64_t *v = tsr_malloc(N * sizeof(int64_t));
    for (int64_t i = 0; i < N; i++) v[i] = i;
    tsr_rng_t r = {42};
    tsr_hll_t *a = tsr_hll_new(8), *b = tsr_hll_new(8);
    for (int i = 0; i < N; i++) tsr_hll_add(a, long_hash(v[i], 3));
    tsr_buf_t ba, bb;
    tsr_buf_init(&ba);
    tsr_buf_init(&bb);
    hll_bytes(a, &ba);
    double est = tsr_hll_estimate(a);
    shuffle_i64(v, N, &r);
    for (int i = 0; i < N; i++) tsr_hll_add(a, long_hash(v[i], 3)); /* all duplicates */
    ck_assert(tsr_hll_estimate(a) == est);
    hll_bytes(a, &bb);
    assert_same_bytes(&ba, &bb);
    for (int i = 0; i < N; i++) tsr_hll_add(b, long_hash(v[i], 3)); /* shuffled order */
    hll_bytes(b, &bb);
    assert_same_bytes(&ba, &bb);
    /* A different set gives a different state (the comparison above can fail). */
    tsr_hll_add(b, long_hash(N + 5, 3));
    tsr_hll_add(b, long_hash(N + 6, 3));
    tsr_hll_add(b, long_hash(N + 7, 3));
    hll_bytes(b, &bb);
    ck_assert(ba.len != bb.len || memcmp(ba.data, bb.data, ba.len) != 0);
    tsr_buf_free(&ba);
    tsr_buf_free(&bb);
    tsr_hll_free(a);
    tsr_hll_free(b);
    free(v);
}
END_TEST

/* Random splits into parts, merged in random orders (sparse+sparse, sparse+dense,
 * dense+dense all occur), equal the sketch of the whole. */
START_TEST(test_hll_merge_splits) {
    static const int sizes[] = {300, 2000, 5000, 150000};
    int n = sizes[_i];
    tsr_rng_t r = {100 + (uint64_t)_i};
    enum { P = 6 };
    tsr_hll_t *whole = tsr_hll_new(8), *parts[P];
    for (int p = 0; p < P; p++) parts[p] = tsr_hll_new(8);
    for (int i = 0; i < n; i++) {
        uint64_t x = long_hash(tsr_rng_range(&r, 0, (int64_t)n * 2), 11);
        tsr_hll_add(whole, x);
        /* Skewed split: part 0 gets half, the others share the rest. */
        int p = tsr_rng_below(&r, 2) ? 0 : 1 + (int)tsr_rng_below(&r, P - 1);
        tsr_hll_add(parts[p], x);
    }
    tsr_buf_t bw, bm;
    tsr_buf_init(&bw);
    tsr_buf_init(&bm);
    hll_bytes(whole, &bw);
    for (int trial = 0; trial < 4; trial++) {
        int64_t order[P];
        for (int p = 0; p < P; p++) order[p] = p;
        shuffle_i64(order, P, &r);
        tsr_hll_t *m = tsr_hll_new(8);
        for (int p = 0; p < P; p++) ck_assert_int_eq(tsr_hll_merge(m, parts[order[p]]), 0);
        hll_bytes(m, &bm);
        assert_same_bytes(&bw, &bm);
        ck_assert(tsr_hll_estimate(m) == tsr_hll_estimate(whole));
        tsr_hll_free(m);
    }
    /* Commutative: a+b and b+a for the two largest parts. */
    tsr_hll_t *ab = tsr_hll_new(8), *ba = tsr_hll_new(8);
    tsr_hll_merge(ab, parts[0]);
    tsr_hll_merge(ab, parts[1]);
    tsr_hll_merge(ba, parts[1]);
    tsr_hll_merge(ba, parts[0]);
    ck_assert(tsr_hll_estimate(ab) == tsr_hll_estimate(ba));
    hll_bytes(ab, &bw);
    hll_bytes(ba, &bm);
    assert_same_bytes(&bw, &bm);
    tsr_hll_free(ab);
    tsr_hll_free(ba);
    tsr_buf_free(&bw);
    tsr_buf_free(&bm);
    tsr_hll_free(whole);
    for (int p = 0; p < P; p++) tsr_hll_free(parts[p]);
}
END_TEST

/* The dense codec's nibble window and its exceptions on both sides: registers 0..m-3 set to 21
 * (so the window is [7, 21]), register m-2 to 49 (above) and m-1 left at 0 (below). */
START_TEST(test_hll_dense_encoding) {
    const int p = 8 + 7, q = 64 - p;
    const uint32_t m = 1u << p;
    tsr_hll_t *h = tsr_hll_new(8);
    for (uint32_t i = 0; i + 2 < m; i++) tsr_hll_add(h, (uint64_t)i << q | 1ULL << (q - 21));
    tsr_hll_add(h, (uint64_t)(m - 2) << q | 1ULL); /* rho = q = 49 */
    ck_assert(!tsr_hll_is_exact(h));
    tsr_buf_t a, b;
    tsr_buf_init(&a);
    tsr_buf_init(&b);
    hll_bytes(h, &a);
    /* lgk, mode, base, m/2 nibble bytes, two exception bytes */
    ck_assert_uint_eq(a.len, 3 + m / 2 + 2);
    ck_assert_uint_eq(a.data[2], 7);
    ck_assert_uint_eq(a.data[a.len - 2], 49);
    ck_assert_uint_eq(a.data[a.len - 1], 0);
    tsr_reader_t r;
    tsr_reader_init(&r, a.data, a.len);
    tsr_hll_t *d;
    tsr_error_t err;
    ck_assert_int_eq(tsr_hll_decode(&r, &d, &err), 0);
    ck_assert(tsr_hll_estimate(d) == tsr_hll_estimate(h));
    hll_bytes(d, &b);
    assert_same_bytes(&a, &b);
    tsr_hll_free(d);
    /* An exception byte inside the window is not canonical. */
    a.data[a.len - 1] = 10;
    tsr_reader_init(&r, a.data, a.len);
    ck_assert_int_eq(tsr_hll_decode(&r, &d, &err), TSR_ECORRUPT);
    ck_assert(strstr(err.msg, "inside the window") != NULL);
    /* At the default size a typical dense sketch encodes in about m/2 bytes. */
    tsr_hll_t *g = tsr_hll_new(8);
    for (int64_t i = 0; i < 300000; i++) tsr_hll_add(g, long_hash(i, 9));
    hll_bytes(g, &b);
    ck_assert_uint_lt(b.len, m / 2 + 64);
    tsr_hll_free(g);
    tsr_hll_free(h);
    tsr_buf_free(&a);
    tsr_buf_free(&b);
}
END_TEST

START_TEST(test_hll_merge_lgk_mismatch) {
    tsr_hll_t *a = tsr_hll_new(8), *b = tsr_hll_new(9);
    tsr_hll_add(a, 1234);
    tsr_hll_add(b, 5678);
    ck_assert_int_eq(tsr_hll_merge(a, b), TSR_EINVAL);
    ck_assert(tsr_hll_estimate(a) == 1.0);
    tsr_hll_free(a);
    tsr_hll_free(b);
}
END_TEST

/* ------------------------------------------------------------------ KLL */

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Distance from r to the interval of normalized ranks [#(<v)/n, #(<=v)/n] that v occupies
 * in the sorted data: 0 when v is a correct answer for r. */
static double rank_error(const double *sorted, size_t n, double v, double r) {
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t m = lo + (hi - lo) / 2;
        if (sorted[m] < v) lo = m + 1; else hi = m;
    }
    size_t lt = lo;
    hi = n;
    while (lo < hi) {
        size_t m = lo + (hi - lo) / 2;
        if (sorted[m] <= v) lo = m + 1; else hi = m;
    }
    double a = (double)lt / (double)n, b = (double)lo / (double)n;
    return r < a ? a - r : (r > b ? r - b : 0.0);
}

/* Max rank error over r = 0, 0.001, ..., 1 (sorted is the data, sorted). */
static double kll_max_rank_error(const tsr_kll_t *s, const double *sorted, size_t n) {
    enum { NR = 1001 };
    double rs[NR], qs[NR], worst = 0;
    for (int i = 0; i < NR; i++) rs[i] = i / (double)(NR - 1);
    tsr_kll_quantiles(s, rs, NR, qs);
    for (int i = 0; i < NR; i++) {
        double e = rank_error(sorted, n, qs[i], rs[i]);
        if (e > worst) worst = e;
    }
    return worst;
}

enum { D_UNIFORM, D_ASC, D_DESC, D_DUPS, D_COUNT };

static void fill(double *x, size_t n, int dist, tsr_rng_t *r) {
    for (size_t i = 0; i < n; i++) {
        switch (dist) {
        case D_UNIFORM: x[i] = tsr_rng_double(r) * 1e6 - 5e5; break;
        case D_ASC: x[i] = (double)i; break;
        case D_DESC: x[i] = (double)(n - i); break;
        default: x[i] = (double)tsr_rng_below(r, 20); break; /* heavy duplicates */
        }
    }
}

START_TEST(test_kll_exact_small) {
    tsr_rng_t r = {5};
    double x[384], sorted[384];
    for (int n = 1; n <= 384; n += 11) {   /* up to 3k: nothing compacted */
        tsr_kll_t *s = tsr_kll_new(128);
        ck_assert(isnan(tsr_kll_quantile(s, 0.5)));
        for (int i = 0; i < n; i++) {
            x[i] = (double)tsr_rng_range(&r, -50, 50);
            tsr_kll_add(s, x[i]);
            tsr_kll_add(s, NAN); /* ignored */
        }
        memcpy(sorted, x, n * sizeof(double));
        qsort(sorted, n, sizeof(double), cmp_double);
        ck_assert_uint_eq(tsr_kll_n(s), n);
        for (int q = 0; q <= 100; q++) {
            double rr = q / 100.0;
            int t = (int)ceil(rr * n);
            if (t < 1) t = 1;
            ck_assert(tsr_kll_quantile(s, rr) == sorted[t - 1]);
        }
        ck_assert(tsr_kll_quantile(s, -1) == sorted[0]);
        ck_assert(tsr_kll_quantile(s, 2) == sorted[n - 1]);
        ck_assert(isnan(tsr_kll_quantile(s, NAN)));
        tsr_kll_free(s);
    }
}
END_TEST

/* _i enumerates (n, dist): n in {1k, 100k, 1M}; seeds: 4, 3, 1 respectively. */
START_TEST(test_kll_accuracy) {
    static const size_t ns[] = {1000, 100000, 1000000};
    static const int seeds[] = {4, 3, 1};
    size_t n = ns[_i / D_COUNT];
    int dist = _i % D_COUNT;
    double *x = tsr_malloc(n * sizeof(double));
    for (int seed = 0; seed < seeds[_i / D_COUNT]; seed++) {
        tsr_rng_t r = {1000 + (uint64_t)seed * 77 + (uint64_t)_i};
        fill(x, n, dist, &r);
        tsr_kll_t *s = tsr_kll_new(128);
        for (size_t i = 0; i < n; i++) tsr_kll_add(s, x[i]);
        qsort(x, n, sizeof(double), cmp_double);
        double e = kll_max_rank_error(s, x, n);
        if (e > 0.01)
            ck_abort_msg("n %zu dist %d seed %d: max rank error %.4f > 1%%", n, dist, seed, e);
        ck_assert(tsr_kll_quantile(s, 0) == x[0]);
        ck_assert(tsr_kll_quantile(s, 1) == x[n - 1]);
        tsr_kll_free(s);
    }
    free(x);
}
END_TEST

/* Random splits into up to 12 parts with different k-free sizes, merged in random orders
 * (sequentially or as a random tree). */
START_TEST(test_kll_merge_splits) {
    size_t n = 200000;
    int dist = _i % D_COUNT;
    tsr_rng_t r = {900 + (uint64_t)_i};
    double *x = tsr_malloc(n * sizeof(double));
    fill(x, n, dist, &r);
    int P = 2 + (int)tsr_rng_below(&r, 11);
    tsr_kll_t *parts[12];
    for (int p = 0; p < P; p++) parts[p] = tsr_kll_new(128);
    for (size_t i = 0; i < n; i++) {
        /* part p gets weight p+1: sizes differ by an order of magnitude */
        int p = (int)tsr_rng_below(&r, (uint64_t)(P * (P + 1) / 2)), q = 0;
        while (p > q) p -= ++q;
        tsr_kll_add(parts[q], x[i]);
    }
    /* Random tree: repeatedly merge two random survivors. */
    int live = P;
    while (live > 1) {
        int a = (int)tsr_rng_below(&r, (uint64_t)live), b = (int)tsr_rng_below(&r, (uint64_t)live - 1);
        if (b >= a) b++;
        ck_assert_int_eq(tsr_kll_merge(parts[a], parts[b]), 0);
        tsr_kll_free(parts[b]);
        parts[b] = parts[live - 1];
        if (a == live - 1) a = b;
        live--;
    }
    ck_assert_uint_eq(tsr_kll_n(parts[0]), n);
    qsort(x, n, sizeof(double), cmp_double);
    double e = kll_max_rank_error(parts[0], x, n);
    if (e > 0.01) ck_abort_msg("dist %d parts %d: merged rank error %.4f > 1%%", dist, P, e);
    ck_assert(tsr_kll_quantile(parts[0], 0) == x[0]);
    ck_assert(tsr_kll_quantile(parts[0], 1) == x[n - 1]);
    tsr_kll_free(parts[0]);
    free(x);
}
END_TEST

/* The online pattern: many tiny sketches (one per tile) merged one after another. */
START_TEST(test_kll_merge_many_small) {
    enum { TILES = 20000, PER = 10 };
    size_t n = (size_t)TILES * PER;
    tsr_rng_t r = {4711};
    double *x = tsr_malloc(n * sizeof(double));
    fill(x, n, D_UNIFORM, &r);
    tsr_kll_t *acc = tsr_kll_new(128);
    for (int t = 0; t < TILES; t++) {
        tsr_kll_t *tile = tsr_kll_new(128);
        for (int i = 0; i < PER; i++) tsr_kll_add(tile, x[(size_t)t * PER + i]);
        ck_assert_int_eq(tsr_kll_merge(acc, tile), 0);
        tsr_kll_free(tile);
    }
    ck_assert_uint_eq(tsr_kll_n(acc), n);
    qsort(x, n, sizeof(double), cmp_double);
    double e = kll_max_rank_error(acc, x, n);
    if (e > 0.01) ck_abort_msg("%d merged tiles: rank error %.4f > 1%%", TILES, e);
    tsr_kll_free(acc);
    free(x);
}
END_TEST

START_TEST(test_kll_merge_different_k) {
    size_t n = 100000;
    tsr_rng_t r = {31};
    double *x = tsr_malloc(n * sizeof(double));
    fill(x, n, D_UNIFORM, &r);
    tsr_kll_t *a = tsr_kll_new(256), *b = tsr_kll_new(128), *empty = tsr_kll_new(64);
    for (size_t i = 0; i < n; i++) tsr_kll_add(i % 3 ? a : b, x[i]);
    ck_assert_int_eq(tsr_kll_merge(a, b), 0);
    ck_assert_int_eq(tsr_kll_k(a), 128);
    ck_assert_int_eq(tsr_kll_merge(a, empty), 0); /* empty src: no change, k kept */
    ck_assert_int_eq(tsr_kll_k(a), 128);
    qsort(x, n, sizeof(double), cmp_double);
    ck_assert(kll_max_rank_error(a, x, n) <= 0.01);
    tsr_kll_free(a);
    tsr_kll_free(b);
    tsr_kll_free(empty);
    free(x);
}
END_TEST

START_TEST(test_kll_deterministic) {
    tsr_rng_t r1 = {8}, r2 = {8};
    tsr_kll_t *a = tsr_kll_new(128), *b = tsr_kll_new(128);
    for (int i = 0; i < 50000; i++) tsr_kll_add(a, tsr_rng_double(&r1));
    for (int i = 0; i < 50000; i++) tsr_kll_add(b, tsr_rng_double(&r2));
    tsr_buf_t ba, bb;
    tsr_buf_init(&ba);
    tsr_buf_init(&bb);
    tsr_kll_encode(a, &ba);
    tsr_kll_encode(b, &bb);
    assert_same_bytes(&ba, &bb);
    /* batch quantiles agree with single ones */
    double rs[5] = {0.1, 0.25, 0.5, 0.9, 0.999}, qs[5];
    tsr_kll_quantiles(a, rs, 5, qs);
    for (int i = 0; i < 5; i++) ck_assert(qs[i] == tsr_kll_quantile(a, rs[i]));
    tsr_buf_free(&ba);
    tsr_buf_free(&bb);
    tsr_kll_free(a);
    tsr_kll_free(b);
}
END_TEST

/* ------------------------------------------------------------------ frequent items */

/* Brute force over keys "k<id>": counts[id]. */
static void key_of(int id, char *buf, size_t *len) { *len = (size_t)snprintf(buf, 24, "k%d", id); }

static void check_top_order(const tsr_freq_t *f) {
    size_t n = tsr_freq_size(f);
    tsr_freq_item_t *it = tsr_malloc((n + 1) * sizeof(*it));
    ck_assert_uint_eq(tsr_freq_top(f, it, n + 1), n);
    for (size_t i = 1; i < n; i++) {
        ck_assert(it[i - 1].count >= it[i].count);
        if (it[i - 1].count == it[i].count) {
            size_t m = it[i - 1].len < it[i].len ? it[i - 1].len : it[i].len;
            int c = memcmp(it[i - 1].key, it[i].key, m);
            ck_assert(c < 0 || (c == 0 && it[i - 1].len < it[i].len));
        }
    }
    free(it);
}

START_TEST(test_freq_exact) {
    tsr_rng_t r = {77};
    int64_t counts[64] = {0};
    uint64_t total = 0;
    tsr_freq_t *f = tsr_freq_new(8);   /* exact up to 64 distinct keys */
    for (int i = 0; i < 5000; i++) {
        int id = (int)tsr_rng_below(&r, 64);
        int64_t c = tsr_rng_range(&r, 1, 3);
        char k[24];
        size_t len;
        key_of(id, k, &len);
        tsr_freq_add(f, k, len, c);
        tsr_freq_add(f, k, len, 0);     /* ignored */
        tsr_freq_add(f, k, len, -4);    /* ignored */
        counts[id] += c;
        total += (uint64_t)c;
    }
    ck_assert(tsr_freq_is_exact(f));
    ck_assert_uint_eq(tsr_freq_total(f), total);
    ck_assert_uint_eq(tsr_freq_max_error(f), 0);
    for (int id = 0; id < 64; id++) {
        char k[24];
        size_t len;
        key_of(id, k, &len);
        ck_assert_int_eq(tsr_freq_count(f, k, len), counts[id]);
    }
    check_top_order(f);
    /* Top 3 equals the brute-force top 3 by (count desc, key asc). */
    tsr_freq_item_t top[3];
    ck_assert_uint_eq(tsr_freq_top(f, top, 3), 3);
    for (int j = 0; j < 3; j++) {
        int best = -1;
        char bk[24], k[24];
        size_t bl = 0, len;
        for (int id = 0; id < 64; id++) {
            key_of(id, k, &len);
            int taken = 0;
            for (int t = 0; t < j; t++)
                taken |= top[t].len == len && memcmp(top[t].key, k, len) == 0;
            if (taken) continue;
            if (best < 0 || counts[id] > counts[best] ||
                (counts[id] == counts[best] && strcmp(k, bk) < 0)) {
                best = id;
                memcpy(bk, k, len + 1);
                bl = len;
            }
        }
        ck_assert_int_eq(top[j].count, counts[best]);
        ck_assert(top[j].len == bl && memcmp(top[j].key, bk, bl) == 0);
    }
    tsr_freq_free(f);
}
END_TEST

START_TEST(test_freq_ties_and_binary_keys) {
    tsr_freq_t *f = tsr_freq_new(4);
    tsr_freq_add(f, "ab", 2, 5);
    tsr_freq_add(f, "a", 1, 5);
    tsr_freq_add(f, "a\0b", 3, 5);
    tsr_freq_add(f, "", 0, 5);
    tsr_freq_add(f, "z", 1, 9);
    tsr_freq_item_t it[8];
    ck_assert_uint_eq(tsr_freq_top(f, it, 8), 5);
    ck_assert(it[0].len == 1 && it[0].key[0] == 'z' && it[0].count == 9);
    ck_assert(it[1].len == 0);
    ck_assert(it[2].len == 1 && it[2].key[0] == 'a');
    ck_assert(it[3].len == 3 && memcmp(it[3].key, "a\0b", 3) == 0);
    ck_assert(it[4].len == 2 && memcmp(it[4].key, "ab", 2) == 0);
    ck_assert_int_eq(tsr_freq_count(f, "a\0b", 3), 5);
    ck_assert_int_eq(tsr_freq_count(f, "a", 1), 5);
    ck_assert_int_eq(tsr_freq_count(f, "b", 1), 0);
    tsr_freq_free(f);
}
END_TEST

/* Zipf-like stream over many keys: id = floor(K^u) - 1 for u uniform, heavy on small ids. */
static int zipfish(tsr_rng_t *r, int nkeys) {
    int id = (int)floor(pow((double)nkeys, tsr_rng_double(r))) - 1;
    return id < 0 ? 0 : (id >= nkeys ? nkeys - 1 : id);
}

static void check_bounds(const tsr_freq_t *f, const int64_t *counts, int nkeys) {
    uint64_t total = tsr_freq_total(f), err = tsr_freq_max_error(f);
    int cap = tsr_freq_capacity(f);
    ck_assert(err <= total / (uint64_t)(4 * cap + 1));
    for (int id = 0; id < nkeys; id++) {
        char k[24];
        size_t len;
        key_of(id, k, &len);
        int64_t est = tsr_freq_count(f, k, len), c = counts[id];
        if (!(est <= c && (uint64_t)(c - est) <= err))
            ck_abort_msg("key %d: true %lld, estimate %lld, error bound %llu", id, (long long)c,
                         (long long)est, (unsigned long long)err);
        if ((uint64_t)c * (uint64_t)cap > total) ck_assert(est > 0); /* heavy hitter present */
    }
    check_top_order(f);
}

START_TEST(test_freq_switch_bounds) {
    enum { NK = 5000, N = 200000 };
    static const int caps[] = {1, 8, 50};
    int cap = caps[_i];
    tsr_rng_t r = {300 + (uint64_t)_i};
    int64_t *counts = tsr_calloc(NK, sizeof(int64_t));
    tsr_freq_t *f = tsr_freq_new(cap);
    for (int i = 0; i < N; i++) {
        int id = zipfish(&r, NK);
        char k[24];
        size_t len;
        key_of(id, k, &len);
        int64_t c = 1 + (int64_t)tsr_rng_below(&r, 2);
        tsr_freq_add(f, k, len, c);
        counts[id] += c;
    }
    ck_assert(!tsr_freq_is_exact(f));
    ck_assert(tsr_freq_max_error(f) > 0);
    ck_assert_uint_le(tsr_freq_size(f), 8 * (size_t)cap);
    check_bounds(f, counts, NK);
    free(counts);
    tsr_freq_free(f);
}
END_TEST

/* The online pattern: many small tile sketches (some exact, some not) merged in turn. */
START_TEST(test_freq_merge_many_small) {
    enum { NK = 2000, TILES = 2000, PER = 50 };
    tsr_rng_t r = {808};
    int64_t *counts = tsr_calloc(NK, sizeof(int64_t));
    tsr_freq_t *acc = tsr_freq_new(8);
    for (int t = 0; t < TILES; t++) {
        tsr_freq_t *tile = tsr_freq_new(8);
        for (int i = 0; i < PER; i++) {
            int id = zipfish(&r, NK);
            char k[24];
            size_t len;
            key_of(id, k, &len);
            tsr_freq_add(tile, k, len, 1);
            counts[id]++;
        }
        ck_assert_int_eq(tsr_freq_merge(acc, tile), 0);
        tsr_freq_free(tile);
    }
    ck_assert_uint_eq(tsr_freq_total(acc), (uint64_t)TILES * PER);
    check_bounds(acc, counts, NK);
    tsr_freq_free(acc);
    free(counts);
}
END_TEST

static void freq_bytes(const tsr_freq_t *f, tsr_buf_t *b) {
    tsr_buf_clear(b);
    tsr_freq_encode(f, b);
}

START_TEST(test_freq_merge) {
    enum { NK = 3000, N = 100000, P = 5 };
    tsr_rng_t r = {555 + (uint64_t)_i};
    int64_t *counts = tsr_calloc(NK, sizeof(int64_t));
    tsr_freq_t *parts[P];
    for (int p = 0; p < P; p++) parts[p] = tsr_freq_new(8);
    for (int i = 0; i < N; i++) {
        int id = zipfish(&r, NK);
        /* skewed placement: part p mostly sees ids in its own range, plus the heavy ones */
        int p = id < 50 ? (int)tsr_rng_below(&r, P) : id % P;
        char k[24];
        size_t len;
        key_of(id, k, &len);
        tsr_freq_add(parts[p], k, len, 1);
        counts[id]++;
    }
    int64_t order[P];
    for (int p = 0; p < P; p++) order[p] = p;
    shuffle_i64(order, P, &r);
    tsr_freq_t *m = tsr_freq_new(8);
    for (int p = 0; p < P; p++) ck_assert_int_eq(tsr_freq_merge(m, parts[order[p]]), 0);
    ck_assert_uint_eq(tsr_freq_total(m), N);
    check_bounds(m, counts, NK);
    /* Symmetric: a+b and b+a have identical content and bytes. */
    tsr_freq_t *ab = tsr_freq_new(8), *ba = tsr_freq_new(8);
    tsr_freq_merge(ab, parts[0]);
    tsr_freq_merge(ab, parts[1]);
    tsr_freq_merge(ba, parts[1]);
    tsr_freq_merge(ba, parts[0]);
    tsr_buf_t x, y;
    tsr_buf_init(&x);
    tsr_buf_init(&y);
    freq_bytes(ab, &x);
    freq_bytes(ba, &y);
    assert_same_bytes(&x, &y);
    /* Merge into a larger capacity keeps the smaller one. */
    tsr_freq_t *big = tsr_freq_new(100);
    tsr_freq_merge(big, m);
    ck_assert_int_eq(tsr_freq_capacity(big), 8);
    check_bounds(big, counts, NK);
    tsr_buf_free(&x);
    tsr_buf_free(&y);
    tsr_freq_free(ab);
    tsr_freq_free(ba);
    tsr_freq_free(big);
    tsr_freq_free(m);
    for (int p = 0; p < P; p++) tsr_freq_free(parts[p]);
    free(counts);
}
END_TEST

/* ------------------------------------------------------------------ codecs */

typedef enum { SK_HLL, SK_KLL, SK_FREQ } sk_kind_t;

typedef struct {
    sk_kind_t kind;
    void *p;
} sk_t;

static void sk_free(sk_t s) {
    if (s.kind == SK_HLL) tsr_hll_free(s.p);
    else if (s.kind == SK_KLL) tsr_kll_free(s.p);
    else tsr_freq_free(s.p);
}

static void sk_encode(sk_t s, tsr_buf_t *b) {
    tsr_buf_clear(b);
    if (s.kind == SK_HLL) tsr_hll_encode(s.p, b);
    else if (s.kind == SK_KLL) tsr_kll_encode(s.p, b);
    else tsr_freq_encode(s.p, b);
}

static int sk_decode(sk_kind_t kind, const uint8_t *p, size_t n, sk_t *out, size_t *used,
                     tsr_error_t *err) {
    tsr_reader_t r;
    tsr_reader_init(&r, p, n);
    int rc;
    out->kind = kind;
    out->p = NULL;
    if (kind == SK_HLL) rc = tsr_hll_decode(&r, (tsr_hll_t **)&out->p, err);
    else if (kind == SK_KLL) rc = tsr_kll_decode(&r, (tsr_kll_t **)&out->p, err);
    else rc = tsr_freq_decode(&r, (tsr_freq_t **)&out->p, err);
    if (rc) ck_assert_ptr_null(out->p);
    *used = (size_t)(r.p - (const uint8_t *)p);
    return rc;
}

/* Exercises a decoded sketch: estimates, a merge into a fresh one, one more add. */
static void sk_use(sk_t s) {
    if (s.kind == SK_HLL) {
        double e = tsr_hll_estimate(s.p);
        ck_assert(e >= 0 && isfinite(e));
        tsr_hll_t *m = tsr_hll_new(tsr_hll_lgk(s.p));
        ck_assert_int_eq(tsr_hll_merge(m, s.p), 0);
        tsr_hll_add(s.p, 99);
        tsr_hll_free(m);
    } else if (s.kind == SK_KLL) {
        double q = tsr_kll_quantile(s.p, 0.5);
        ck_assert(tsr_kll_n(s.p) == 0 || !isnan(q));
        tsr_kll_t *m = tsr_kll_new(tsr_kll_k(s.p));
        ck_assert_int_eq(tsr_kll_merge(m, s.p), 0);
        for (int i = 0; i < 2000; i++) tsr_kll_add(s.p, i);
        tsr_kll_free(m);
    } else {
        tsr_freq_item_t it[4];
        tsr_freq_top(s.p, it, 4);
        tsr_freq_t *m = tsr_freq_new(tsr_freq_capacity(s.p));
        ck_assert_int_eq(tsr_freq_merge(m, s.p), 0);
        for (int i = 0; i < 300; i++) tsr_freq_add(s.p, (const char *)&i, sizeof i, 1);
        tsr_freq_free(m);
    }
}

/* Builds codec fixtures: _i selects one sketch state. */
static sk_t make_fixture(int which) {
    tsr_rng_t r = {4242 + (uint64_t)which};
    sk_t s;
    switch (which) {
    case 0: s = (sk_t){SK_HLL, tsr_hll_new(8)}; break;                       /* empty */
    case 1:                                                                   /* sparse */
        s = (sk_t){SK_HLL, tsr_hll_new(6)};
        for (int i = 0; i < 300; i++) tsr_hll_add(s.p, tsr_rng_next(&r));
        break;
    case 2:                                                                   /* dense */
        s = (sk_t){SK_HLL, tsr_hll_new(4)};
        for (int i = 0; i < 20000; i++) tsr_hll_add(s.p, tsr_rng_next(&r));
        break;
    case 3: s = (sk_t){SK_KLL, tsr_kll_new(128)}; break;                     /* empty */
    case 4:                                                                   /* exact */
        s = (sk_t){SK_KLL, tsr_kll_new(16)};
        for (int i = 0; i < 30; i++) tsr_kll_add(s.p, tsr_rng_double(&r));
        break;
    case 5:                                                                   /* compacted */
        s = (sk_t){SK_KLL, tsr_kll_new(8)};
        for (int i = 0; i < 5000; i++) tsr_kll_add(s.p, (double)tsr_rng_range(&r, -100, 100));
        break;
    case 6:                                                                   /* exact */
        s = (sk_t){SK_FREQ, tsr_freq_new(4)};
        for (int i = 0; i < 200; i++) {
            char k[24];
            size_t len;
            key_of((int)tsr_rng_below(&r, 20), k, &len);
            tsr_freq_add(s.p, k, len, 1);
        }
        break;
    default:                                                                  /* summary */
        s = (sk_t){SK_FREQ, tsr_freq_new(3)};
        for (int i = 0; i < 3000; i++) {
            char k[24];
            size_t len;
            key_of(zipfish(&r, 500), k, &len);
            tsr_freq_add(s.p, k, len, 1);
        }
        break;
    }
    return s;
}

enum { N_FIXTURES = 8 };

START_TEST(test_codec_roundtrip) {
    sk_t s = make_fixture(_i);
    tsr_buf_t a, b;
    tsr_buf_init(&a);
    tsr_buf_init(&b);
    sk_encode(s, &a);
    tsr_buf_put_u8(&a, 0xEE);   /* trailing bytes belong to the caller: must be left unread */
    sk_t d;
    size_t used;
    tsr_error_t err;
    ck_assert_int_eq(sk_decode(s.kind, a.data, a.len, &d, &used, &err), 0);
    ck_assert_uint_eq(used, a.len - 1);
    a.len--;
    sk_encode(d, &b);
    assert_same_bytes(&a, &b);
    /* Same answers, and the decoded copy evolves exactly as the original. */
    if (s.kind == SK_HLL) {
        ck_assert(tsr_hll_estimate(s.p) == tsr_hll_estimate(d.p));
    } else if (s.kind == SK_KLL) {
        for (int q = 0; q <= 20; q++) {
            double x = tsr_kll_quantile(s.p, q / 20.0), y = tsr_kll_quantile(d.p, q / 20.0);
            ck_assert((isnan(x) && isnan(y)) || x == y);
        }
    } else {
        ck_assert_int_eq(tsr_freq_is_exact(s.p), tsr_freq_is_exact(d.p));
        ck_assert_uint_eq(tsr_freq_max_error(s.p), tsr_freq_max_error(d.p));
    }
    sk_use(s);
    sk_use(d);
    sk_encode(s, &a);
    sk_encode(d, &b);
    assert_same_bytes(&a, &b);
    sk_free(s);
    sk_free(d);
    tsr_buf_free(&a);
    tsr_buf_free(&b);
}
END_TEST

START_TEST(test_codec_truncation) {
    sk_t s = make_fixture(_i);
    tsr_buf_t a;
    tsr_buf_init(&a);
    sk_encode(s, &a);
    for (size_t len = 0; len < a.len; len++) {
        /* a private copy of exactly len bytes, so ASan sees any over-read */
        uint8_t *p = tsr_malloc(len ? len : 1);
        memcpy(p, a.data, len);
        sk_t d;
        size_t used;
        tsr_error_t err;
        tsr_error_clear(&err);
        int rc = sk_decode(s.kind, p, len, &d, &used, &err);
        if (rc != TSR_ECORRUPT) ck_abort_msg("fixture %d: prefix of %zu/%zu bytes accepted", _i, len, a.len);
        ck_assert(err.msg[0] != '\0');
        free(p);
    }
    sk_free(s);
    tsr_buf_free(&a);
}
END_TEST

START_TEST(test_codec_corruption) {
    sk_t s = make_fixture(_i);
    tsr_buf_t a, b;
    tsr_buf_init(&a);
    tsr_buf_init(&b);
    sk_encode(s, &a);
    tsr_rng_t r = {7000 + (uint64_t)_i};
    int rejected = 0, accepted = 0;
    for (int trial = 0; trial < 1500; trial++) {
        uint8_t *p = tsr_malloc(a.len);
        memcpy(p, a.data, a.len);
        int flips = 1 + (int)tsr_rng_below(&r, 3);
        for (int f = 0; f < flips; f++) {
            size_t at = tsr_rng_below(&r, a.len);
            /* bias towards the header, where counts and lengths live */
            if (tsr_rng_below(&r, 2)) at = tsr_rng_below(&r, a.len < 16 ? a.len : 16);
            p[at] = tsr_rng_below(&r, 2) ? (uint8_t)tsr_rng_next(&r) : p[at] ^ (uint8_t)(1u << tsr_rng_below(&r, 8));
        }
        sk_t d;
        size_t used;
        tsr_error_t err;
        int rc = sk_decode(s.kind, p, a.len, &d, &used, &err);
        if (rc == 0) {
            accepted++;
            ck_assert_uint_le(used, a.len);
            /* A valid sketch: re-encodes and decodes again, and can be used. */
            sk_encode(d, &b);
            sk_t d2;
            ck_assert_int_eq(sk_decode(s.kind, b.data, b.len, &d2, &used, &err), 0);
            sk_free(d2);
            sk_use(d);
            sk_free(d);
        } else {
            ck_assert_int_eq(rc, TSR_ECORRUPT);
            rejected++;
        }
        free(p);
    }
    ck_assert_int_eq(rejected + accepted, 1500);
    ck_assert_int_gt(rejected, 0);
    sk_free(s);
    tsr_buf_free(&a);
    tsr_buf_free(&b);
}
END_TEST

/* Hand-made encodings with absurd counts: rejected without a large allocation. */
START_TEST(test_codec_hostile_counts) {
    tsr_buf_t b;
    tsr_buf_init(&b);
    tsr_error_t err;
    tsr_reader_t r;
    /* HLL sparse claiming 2^40 hashes. */
    tsr_buf_put_u8(&b, 8);
    tsr_buf_put_u8(&b, 0);
    tsr_buf_put_uvarint(&b, 1ULL << 40);
    tsr_reader_init(&r, b.data, b.len);
    tsr_hll_t *h;
    ck_assert_int_eq(tsr_hll_decode(&r, &h, &err), TSR_ECORRUPT);
    ck_assert(strstr(err.msg, "sparse count") != NULL);
    /* KLL whose level lengths add up to n but claim billions of items. */
    tsr_buf_clear(&b);
    tsr_buf_put_uvarint(&b, 128);
    tsr_buf_put_uvarint(&b, 3000000000ULL);
    tsr_buf_put_f64(&b, 0);
    tsr_buf_put_f64(&b, 1);
    tsr_buf_put_uvarint(&b, 1);
    tsr_buf_put_uvarint(&b, 1);
    tsr_buf_put_uvarint(&b, 3000000000ULL);
    tsr_reader_init(&r, b.data, b.len);
    tsr_kll_t *k;
    ck_assert_int_eq(tsr_kll_decode(&r, &k, &err), TSR_ECORRUPT);
    ck_assert(strstr(err.msg, "capacity") != NULL);
    /* Frequent items claiming 2^60 entries. */
    tsr_buf_clear(&b);
    tsr_buf_put_uvarint(&b, 8);
    tsr_buf_put_u8(&b, 1);
    tsr_buf_put_uvarint(&b, 10);
    tsr_buf_put_uvarint(&b, 0);
    tsr_buf_put_uvarint(&b, 1ULL << 60);
    tsr_reader_init(&r, b.data, b.len);
    tsr_freq_t *f;
    ck_assert_int_eq(tsr_freq_decode(&r, &f, &err), TSR_ECORRUPT);
    /* Frequent items whose error bound contradicts its total (invariant 2). */
    tsr_buf_clear(&b);
    tsr_buf_put_uvarint(&b, 1);
    tsr_buf_put_u8(&b, 0);
    tsr_buf_put_uvarint(&b, 10);
    tsr_buf_put_uvarint(&b, 9);
    tsr_buf_put_uvarint(&b, 1);
    tsr_buf_put_bytes(&b, "a", 1);
    tsr_buf_put_uvarint(&b, 1);
    tsr_reader_init(&r, b.data, b.len);
    ck_assert_int_eq(tsr_freq_decode(&r, &f, &err), TSR_ECORRUPT);
    tsr_buf_free(&b);
}
END_TEST

static Suite *sketch_suite(void) {
    Suite *s = suite_create("sketch");
    TCase *tc = tcase_create("hll");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_hll_small_exact);
    tcase_add_test(tc, test_hll_accuracy);
    tcase_add_test(tc, test_hll_every_lgk);
    tcase_add_test(tc, test_hll_duplicates_and_order);
    tcase_add_loop_test(tc, test_hll_merge_splits, 0, 4);
    tcase_add_test(tc, test_hll_merge_lgk_mismatch);
    tcase_add_test(tc, test_hll_dense_encoding);
    suite_add_tcase(s, tc);
    tc = tcase_create("kll");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_kll_exact_small);
    tcase_add_loop_test(tc, test_kll_accuracy, 0, 3 * D_COUNT);
    tcase_add_loop_test(tc, test_kll_merge_splits, 0, 2 * D_COUNT);
    tcase_add_test(tc, test_kll_merge_many_small);
    tcase_add_test(tc, test_kll_merge_different_k);
    tcase_add_test(tc, test_kll_deterministic);
    suite_add_tcase(s, tc);
    tc = tcase_create("freq");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_freq_exact);
    tcase_add_test(tc, test_freq_ties_and_binary_keys);
    tcase_add_loop_test(tc, test_freq_switch_bounds, 0, 3);
    tcase_add_loop_test(tc, test_freq_merge, 0, 3);
    tcase_add_test(tc, test_freq_merge_many_small);
    suite_add_tcase(s, tc);
    tc = tcase_create("codec");
    tcase_set_timeout(tc, 60);
    tcase_add_loop_test(tc, test_codec_roundtrip, 0, N_FIXTURES);
    tcase_add_loop_test(tc, test_codec_truncation, 0, N_FIXTURES);
    tcase_add_loop_test(tc, test_codec_corruption, 0, N_FIXTURES);
    tcase_add_test(tc, test_codec_hostile_counts);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return tsr_test_run(sketch_suite()); }
