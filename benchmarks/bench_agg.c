/*
 * bench_agg.c — single-core throughput of the aggregation kernel (common/agg*.c) through its
 * public API (tsr_agg_update / tsr_agg_merge on caller-owned IR blocks), each figure next to
 * a baseline measured in the same run on the same tsr_value_t array:
 *   - baseline: a plain C loop summing the values' payloads (what SUM would cost with no
 *     kernel at all); SUM and COUNT print their ratio to it;
 *   - updates/s for SUM, COUNT, AVERAGE, LAST, TOP_K(10), UNIQUE_COUNT, APPROX_UNIQUE_COUNT,
 *     APPROX_PERCENTILE, plus bucketed SUM and HISTOGRAM (the keyed path);
 *   - merges/s: many small IRs (as tiles hold them) merged into one accumulator;
 *   - encode+decode round trips/s.
 * Every figure is the median of 7 runs. Usage: bench_agg [n_values] (default 10000000).
 * Targets (issue): >= 50 M/s for SUM and COUNT, >= 5 M/s for the sketches.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tsr/agg.h"

#define RUNS 7

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof(double), cmp_d);
    return v[n / 2];
}

static uint64_t rng_s = 42;
static uint64_t rng(void) {
    uint64_t z = (rng_s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static volatile int64_t sink_l;

/* Median seconds of RUNS runs of the statement block. */
#define MEDIAN_SECONDS(out, ...)                                                            \
    do {                                                                                    \
        double t_[RUNS];                                                                    \
        for (int r_ = 0; r_ < RUNS; r_++) {                                                 \
            double t0_ = now();                                                             \
            __VA_ARGS__;                                                                    \
            t_[r_] = now() - t0_;                                                           \
        }                                                                                   \
        (out) = median(t_, RUNS);                                                           \
    } while (0)

static void report(const char *label, double ops, double secs, double baseline_secs) {
    printf("  %-46s %9.2f M/s  %7.2f ns/op", label, ops / secs / 1e6, secs / ops * 1e9);
    if (baseline_secs > 0) printf("   (%.2fx the baseline's time)", secs / baseline_secs);
    printf("\n");
}

static tsr_agg_t *make(tsr_op_t op, tsr_type_t in, int bucketed, int64_t k) {
    tsr_agg_spec_t spec = {op, in, bucketed, k, 0, NULL};
    tsr_agg_t *a = NULL;
    tsr_error_t err;
    if (tsr_agg_new(&spec, &a, &err)) {
        fprintf(stderr, "bench_agg: %s\n", err.msg);
        exit(1);
    }
    return a;
}

/* Updates every value into one IR (cleared between runs); returns the median seconds. */
static double bench_updates(const tsr_agg_t *a, const tsr_value_t *v, const tsr_value_t *bk,
                            size_t n) {
    void *ir = malloc(tsr_agg_ir_size(a));
    double secs;
    MEDIAN_SECONDS(secs, {
        tsr_agg_init(a, ir);
        for (size_t i = 0; i < n; i++)
            tsr_agg_update(a, ir, &v[i], bk ? &bk[i] : NULL, (int64_t)i, i);
        sink_l += tsr_agg_is_empty(a, ir);
        tsr_agg_clear(a, ir);
    });
    free(ir);
    return secs;
}

/* Builds m IRs of `per` values each, then times merging them all into one accumulator. */
static double bench_merges(const tsr_agg_t *a, const tsr_value_t *v, size_t m, size_t per) {
    size_t sz = tsr_agg_ir_size(a);
    uint8_t *irs = malloc(m * sz);
    for (size_t j = 0; j < m; j++) {
        tsr_agg_init(a, irs + j * sz);
        for (size_t i = 0; i < per; i++)
            tsr_agg_update(a, irs + j * sz, &v[j * per + i], NULL, (int64_t)(j * per + i),
                           j * per + i);
    }
    void *acc = malloc(sz);
    double secs;
    MEDIAN_SECONDS(secs, {
        tsr_agg_init(a, acc);
        for (size_t j = 0; j < m; j++) tsr_agg_merge(a, acc, irs + j * sz);
        sink_l += tsr_agg_is_empty(a, acc);
        tsr_agg_clear(a, acc);
    });
    for (size_t j = 0; j < m; j++) tsr_agg_clear(a, irs + j * sz);
    free(irs);
    free(acc);
    return secs;
}

/* Encode + decode round trips of one IR of `per` values. */
static double bench_codec(const tsr_agg_t *a, const tsr_value_t *v, size_t per, size_t reps,
                          size_t *bytes) {
    size_t sz = tsr_agg_ir_size(a);
    void *ir = malloc(sz), *out = malloc(sz);
    tsr_agg_init(a, ir);
    tsr_agg_init(a, out);
    for (size_t i = 0; i < per; i++) tsr_agg_update(a, ir, &v[i], NULL, (int64_t)i, i);
    tsr_buf_t b;
    tsr_buf_init(&b);
    double secs;
    MEDIAN_SECONDS(secs, {
        for (size_t r = 0; r < reps; r++) {
            tsr_buf_clear(&b);
            tsr_agg_encode(a, ir, &b);
            if (tsr_agg_decode(a, out, b.data, b.len, NULL)) abort();
        }
    });
    *bytes = b.len;
    tsr_buf_free(&b);
    tsr_agg_clear(a, ir);
    tsr_agg_clear(a, out);
    free(ir);
    free(out);
    return secs;
}

int main(int argc, char **argv) {
    size_t n = argc > 1 ? (size_t)strtoull(argv[1], NULL, 10) : 10000000;
    if (n < 100000) n = 100000;
    printf("bench_agg: n = %zu values, one core, median of %d runs\n", n, RUNS);

    tsr_value_t *lv = malloc(n * sizeof(*lv)), *dv = malloc(n * sizeof(*dv));
    tsr_value_t *few = malloc(n * sizeof(*few)), *bk = malloc(n * sizeof(*bk));
    static const char *const bnames[] = {"web", "ios", "android", "tv", "kiosk", "api", "batch",
                                         "partner"};
    for (size_t i = 0; i < n; i++) {
        lv[i] = tsr_value_long((int64_t)(rng() % 2000001) - 1000000);
        dv[i] = tsr_value_double((double)(rng() >> 11) * 0x1.0p-53 * 1000.0);
        few[i] = tsr_value_long((int64_t)(rng() % 1000)); /* 1000 distinct */
        const char *b = bnames[rng() % 8];
        bk[i] = tsr_value_string(b, strlen(b));
    }

    printf("updates (one IR, all values)\n");
    double base;
    MEDIAN_SECONDS(base, {
        int64_t s = 0;
        for (size_t i = 0; i < n; i++) s += lv[i].u.l;
        sink_l += s;
    });
    report("baseline: plain C loop summing the longs", (double)n, base, 0);
    struct { const char *label; tsr_op_t op; tsr_type_t in; int64_t k; const tsr_value_t *v;
             int bucketed; } up[] = {
        {"SUM long", TSR_OP_SUM, TSR_LONG, 0, lv, 0},
        {"COUNT", TSR_OP_COUNT, TSR_LONG, 0, lv, 0},
        {"SUM double (compensated)", TSR_OP_SUM, TSR_DOUBLE, 0, dv, 0},
        {"AVERAGE double", TSR_OP_AVERAGE, TSR_DOUBLE, 0, dv, 0},
        {"VARIANCE double", TSR_OP_VARIANCE, TSR_DOUBLE, 0, dv, 0},
        {"LAST long (ts ascending)", TSR_OP_LAST, TSR_LONG, 0, lv, 0},
        {"TOP_K(10) long", TSR_OP_TOP_K, TSR_LONG, 10, lv, 0},
        {"UNIQUE_COUNT long (1000 distinct)", TSR_OP_UNIQUE_COUNT, TSR_LONG, 0, few, 0},
        {"APPROX_UNIQUE_COUNT long (lgk 8)", TSR_OP_APPROX_UNIQUE_COUNT, TSR_LONG, 0, lv, 0},
        {"APPROX_PERCENTILE double (k 128)", TSR_OP_APPROX_PERCENTILE, TSR_DOUBLE, 0, dv, 0},
        {"SUM long by bucket (8 string buckets)", TSR_OP_SUM, TSR_LONG, 0, lv, 1},
        {"HISTOGRAM long (1000 keys)", TSR_OP_HISTOGRAM, TSR_LONG, 0, few, 0},
    };
    for (size_t u = 0; u < sizeof up / sizeof up[0]; u++) {
        tsr_agg_t *a = make(up[u].op, up[u].in, up[u].bucketed, up[u].k);
        /* the slower ops run on a prefix so the whole benchmark stays under a minute */
        size_t m = (up[u].op == TSR_OP_SUM && !up[u].bucketed) || up[u].op == TSR_OP_COUNT
                       ? n : n / 4;
        double s = bench_updates(a, up[u].v, up[u].bucketed ? bk : NULL, m);
        report(up[u].label, (double)m, s, up[u].op == TSR_OP_SUM || up[u].op == TSR_OP_COUNT
                                              ? base * (double)m / (double)n : 0);
        tsr_agg_free(a);
    }

    printf("merges (m small IRs into one accumulator)\n");
    struct { const char *label; tsr_op_t op; tsr_type_t in; int64_t k; const tsr_value_t *v;
             size_t per; } mg[] = {
        {"SUM long, IRs of 100 values", TSR_OP_SUM, TSR_LONG, 0, lv, 100},
        {"AVERAGE double, IRs of 100 values", TSR_OP_AVERAGE, TSR_DOUBLE, 0, dv, 100},
        {"TOP_K(10), IRs of 100 values", TSR_OP_TOP_K, TSR_LONG, 10, lv, 100},
        {"UNIQUE_COUNT, IRs of 20 values", TSR_OP_UNIQUE_COUNT, TSR_LONG, 0, few, 20},
        {"APPROX_UNIQUE_COUNT, IRs of 100 values", TSR_OP_APPROX_UNIQUE_COUNT, TSR_LONG, 0, lv,
         100},
        {"APPROX_PERCENTILE, IRs of 100 values", TSR_OP_APPROX_PERCENTILE, TSR_DOUBLE, 0, dv,
         100},
    };
    for (size_t g = 0; g < sizeof mg / sizeof mg[0]; g++) {
        tsr_agg_t *a = make(mg[g].op, mg[g].in, 0, mg[g].k);
        size_t m = n / mg[g].per / 10;
        double s = bench_merges(a, mg[g].v, m, mg[g].per);
        report(mg[g].label, (double)m, s, 0);
        tsr_agg_free(a);
    }

    printf("encode + decode round trips\n");
    struct { const char *label; tsr_op_t op; tsr_type_t in; int64_t k; const tsr_value_t *v;
             size_t per; } cd[] = {
        {"SUM long", TSR_OP_SUM, TSR_LONG, 0, lv, 100},
        {"TOP_K(10) long", TSR_OP_TOP_K, TSR_LONG, 10, lv, 100},
        {"UNIQUE_COUNT, 20 values", TSR_OP_UNIQUE_COUNT, TSR_LONG, 0, few, 20},
        {"APPROX_PERCENTILE, 1000 values", TSR_OP_APPROX_PERCENTILE, TSR_DOUBLE, 0, dv, 1000},
    };
    for (size_t c = 0; c < sizeof cd / sizeof cd[0]; c++) {
        tsr_agg_t *a = make(cd[c].op, cd[c].in, 0, cd[c].k);
        size_t bytes, reps = 200000;
        double s = bench_codec(a, cd[c].v, cd[c].per, reps, &bytes);
        char label[96];
        snprintf(label, sizeof label, "%s (%zu B)", cd[c].label, bytes);
        report(label, (double)reps, s, 0);
        tsr_agg_free(a);
    }
    free(lv);
    free(dv);
    free(few);
    free(bk);
    return sink_l == 42 ? 1 : 0;
}
