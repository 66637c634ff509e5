/*
 * bench_sketch.c — throughput of the approximate sketches (common/sketch_*.c), each next to a
 * baseline measured in the same run on the same data:
 *   - HLL adds: baseline = hash every value (tsr_value_hash, as the aggregation kernel does)
 *     and sum the hashes; sketch = hash and add. Also adds of pre-hashed input, and the sparse
 *     regime (many small sketches, each created, filled with 200 values and freed).
 *   - KLL adds: baseline = a plain summing loop over the same doubles, and the exact
 *     alternative (copy + sort for a quantile), per item.
 *   - Frequent items: baseline = hash every key's bytes and sum; sketch = add each key.
 *   - Merges: many pre-built sketches merged into one accumulator; encode + decode round trips.
 * Every figure is the median of 7 runs. Usage: bench_sketch [n_items] (default 4000000).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tsr/sketch.h"
#include "tsr/value.h"

#define RUNS 7

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n) {
    qsort(v, n, sizeof(double), cmp_d);
    return v[n / 2];
}

static uint64_t rng_s = 12345;
static uint64_t rng(void) {
    uint64_t z = (rng_s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static volatile uint64_t sink_u;
static volatile double sink_d;

/* Runs fn RUNS times; prints the median rate in million ops/s for `ops` operations per run. */
#define MEASURE(label, ops, ...)                                                            \
    do {                                                                                    \
        double t_[RUNS];                                                                    \
        for (int r_ = 0; r_ < RUNS; r_++) {                                                 \
            double t0_ = now();                                                             \
            __VA_ARGS__;                                                                        \
            t_[r_] = now() - t0_;                                                           \
        }                                                                                   \
        double m_ = median(t_, RUNS);                                                       \
        printf("  %-52s %9.2f M/s  (%.1f ns/op)\n", label, (ops) / m_ / 1e6, m_ / (ops) * 1e9); \
    } while (0)

int main(int argc, char **argv) {
    size_t n = argc > 1 ? (size_t)strtoull(argv[1], NULL, 10) : 4000000;
    if (n < 1000) n = 1000;
    printf("bench_sketch: n = %zu items, median of %d runs\n", n, RUNS);

    int64_t *longs = malloc(n * sizeof(int64_t));
    uint64_t *hashes = malloc(n * sizeof(uint64_t));
    double *dbl = malloc(n * sizeof(double)), *copy = malloc(n * sizeof(double));
    for (size_t i = 0; i < n; i++) {
        longs[i] = (int64_t)(rng() % (n / 2));  /* ~n/2 distinct */
        tsr_value_t v = tsr_value_long(longs[i]);
        hashes[i] = tsr_value_hash(&v, 1);
        dbl[i] = (double)(rng() >> 11) * 0x1.0p-53 * 1000.0;
    }

    printf("HyperLogLog (lgk 8: 32768 registers)\n");
    MEASURE("baseline: tsr_value_hash + sum", (double)n, {
        uint64_t s = 0;
        for (size_t i = 0; i < n; i++) {
            tsr_value_t v = tsr_value_long(longs[i]);
            s += tsr_value_hash(&v, 1);
        }
        sink_u = s;
    });
    double est = 0;
    MEASURE("hll: tsr_value_hash + tsr_hll_add", (double)n, {
        tsr_hll_t *h = tsr_hll_new(8);
        for (size_t i = 0; i < n; i++) {
            tsr_value_t v = tsr_value_long(longs[i]);
            tsr_hll_add(h, tsr_value_hash(&v, 1));
        }
        est = tsr_hll_estimate(h);
        tsr_hll_free(h);
    });
    MEASURE("hll: tsr_hll_add of pre-hashed input", (double)n, {
        tsr_hll_t *h = tsr_hll_new(8);
        for (size_t i = 0; i < n; i++) tsr_hll_add(h, hashes[i]);
        sink_d = tsr_hll_estimate(h);
        tsr_hll_free(h);
    });
    MEASURE("hll sparse: new + 200 adds + estimate + free", (double)n, {
        for (size_t i = 0; i + 200 <= n; i += 200) {
            tsr_hll_t *h = tsr_hll_new(8);
            for (size_t j = i; j < i + 200; j++) tsr_hll_add(h, hashes[j]);
            sink_d = tsr_hll_estimate(h);
            tsr_hll_free(h);
        }
    });
    {
        tsr_hll_t *h = tsr_hll_new(8);
        for (size_t i = 0; i < n; i++) tsr_hll_add(h, hashes[i]);
        MEASURE("hll: tsr_hll_estimate (dense)", 1000.0, {
            for (int i = 0; i < 1000; i++) sink_d = tsr_hll_estimate(h);
        });
        tsr_hll_free(h);
    }
    printf("  (estimate %.0f for %zu adds of ~%zu distinct)\n", est, n, n / 2);

    printf("KLL (k 128, internal 384)\n");
    MEASURE("baseline: sum of the doubles", (double)n, {
        double s = 0;
        for (size_t i = 0; i < n; i++) s += dbl[i];
        sink_d = s;
    });
    MEASURE("baseline: exact (copy + qsort), per item", (double)n, {
        memcpy(copy, dbl, n * sizeof(double));
        qsort(copy, n, sizeof(double), cmp_d);
        sink_d = copy[n / 2];
    });
    MEASURE("kll: tsr_kll_add", (double)n, {
        tsr_kll_t *s = tsr_kll_new(128);
        for (size_t i = 0; i < n; i++) tsr_kll_add(s, dbl[i]);
        sink_d = tsr_kll_quantile(s, 0.5);
        tsr_kll_free(s);
    });

    printf("Frequent items (capacity 8 = default k: 32 counters, table of 64)\n");
    enum { NKEYS = 100000 };
    char (*keys)[16] = malloc(NKEYS * sizeof(*keys));
    size_t *klen = malloc(NKEYS * sizeof(size_t));
    uint32_t *kid = malloc(n * sizeof(uint32_t));
    for (int i = 0; i < NKEYS; i++) klen[i] = (size_t)snprintf(keys[i], 16, "key%d", i);
    for (size_t i = 0; i < n; i++) {   /* Zipf-like: heavy on small ids */
        double u = (double)(rng() >> 11) * 0x1.0p-53;
        uint32_t id = (uint32_t)pow((double)NKEYS, u) - 1;
        kid[i] = id >= NKEYS ? NKEYS - 1 : id;
    }
    MEASURE("baseline: tsr_hash_bytes of each key + sum", (double)n, {
        uint64_t s = 0;
        for (size_t i = 0; i < n; i++) s += tsr_hash_bytes(keys[kid[i]], klen[kid[i]], 7);
        sink_u = s;
    });
    MEASURE("freq: tsr_freq_add (capacity 8)", (double)n, {
        tsr_freq_t *f = tsr_freq_new(8);
        for (size_t i = 0; i < n; i++) tsr_freq_add(f, keys[kid[i]], klen[kid[i]], 1);
        sink_u = tsr_freq_total(f);
        tsr_freq_free(f);
    });
    MEASURE("freq: tsr_freq_add (capacity 1000)", (double)n, {
        tsr_freq_t *f = tsr_freq_new(1000);
        for (size_t i = 0; i < n; i++) tsr_freq_add(f, keys[kid[i]], klen[kid[i]], 1);
        sink_u = tsr_freq_total(f);
        tsr_freq_free(f);
    });

    printf("Merges (64 pre-built sketches of 20000 items each into one accumulator)\n");
    enum { NS = 64, PER = 20000 };
    tsr_hll_t *hs[NS], *hsp[NS];
    tsr_kll_t *ks[NS];
    tsr_freq_t *fs[NS];
    for (int s = 0; s < NS; s++) {
        hs[s] = tsr_hll_new(8);
        hsp[s] = tsr_hll_new(8);
        ks[s] = tsr_kll_new(128);
        fs[s] = tsr_freq_new(8);
        for (int i = 0; i < PER; i++) {
            size_t j = (size_t)(rng() % n);
            tsr_hll_add(hs[s], hashes[j]);
            if (i < 100) tsr_hll_add(hsp[s], hashes[j]);
            tsr_kll_add(ks[s], dbl[j]);
            tsr_freq_add(fs[s], keys[kid[j]], klen[kid[j]], 1);
        }
    }
    MEASURE("baseline: memcpy of one dense register array", (double)NS * 20, {
        uint8_t *a = malloc(32768), *b = calloc(1, 32768);
        for (int r = 0; r < NS * 20; r++) {
            memcpy(a, b, 32768);
            b[r & 32767] = (uint8_t)r;
        }
        sink_u = a[5];
        free(a);
        free(b);
    });
    MEASURE("hll merge dense + dense", (double)NS * 20, {
        tsr_hll_t *acc = tsr_hll_new(8);
        for (int r = 0; r < 20; r++)
            for (int s = 0; s < NS; s++) tsr_hll_merge(acc, hs[s]);
        sink_d = tsr_hll_lgk(acc);
        tsr_hll_free(acc);
    });
    MEASURE("hll merge sparse(100) into a fresh sketch", (double)NS * 20, {
        for (int r = 0; r < 20; r++)
            for (int s = 0; s < NS; s++) {
                tsr_hll_t *acc = tsr_hll_new(8);
                tsr_hll_merge(acc, hsp[s]);
                sink_d = tsr_hll_estimate(acc);
                tsr_hll_free(acc);
            }
    });
    MEASURE("kll merge (20000-item sketches)", (double)NS * 5, {
        tsr_kll_t *acc = tsr_kll_new(128);
        for (int r = 0; r < 5; r++)
            for (int s = 0; s < NS; s++) tsr_kll_merge(acc, ks[s]);
        sink_d = tsr_kll_quantile(acc, 0.5);
        tsr_kll_free(acc);
    });
    MEASURE("freq merge (capacity 8)", (double)NS * 20, {
        tsr_freq_t *acc = tsr_freq_new(8);
        for (int r = 0; r < 20; r++)
            for (int s = 0; s < NS; s++) tsr_freq_merge(acc, fs[s]);
        sink_u = tsr_freq_total(acc);
        tsr_freq_free(acc);
    });

    printf("Codecs (encode + decode round trips)\n");
    tsr_buf_t b;
    tsr_buf_init(&b);
    tsr_hll_encode(hs[0], &b);
    size_t hb = b.len;
    tsr_buf_clear(&b);
    tsr_hll_encode(hsp[0], &b);
    size_t hsb = b.len;
    tsr_buf_clear(&b);
    tsr_kll_encode(ks[0], &b);
    size_t kb = b.len;
    tsr_buf_clear(&b);
    tsr_freq_encode(fs[0], &b);
    size_t fb = b.len;
    printf("  sizes: hll dense %zu B, hll sparse(100) %zu B, kll(20000) %zu B, freq(8) %zu B\n",
           hb, hsb, kb, fb);
    MEASURE("hll dense encode + decode", (double)NS, {
        for (int s = 0; s < NS; s++) {
            tsr_buf_clear(&b);
            tsr_hll_encode(hs[s], &b);
            tsr_reader_t rd;
            tsr_reader_init(&rd, b.data, b.len);
            tsr_hll_t *d;
            if (tsr_hll_decode(&rd, &d, NULL)) abort();
            tsr_hll_free(d);
        }
    });
    MEASURE("kll encode + decode", (double)NS, {
        for (int s = 0; s < NS; s++) {
            tsr_buf_clear(&b);
            tsr_kll_encode(ks[s], &b);
            tsr_reader_t rd;
            tsr_reader_init(&rd, b.data, b.len);
            tsr_kll_t *d;
            if (tsr_kll_decode(&rd, &d, NULL)) abort();
            tsr_kll_free(d);
        }
    });
    MEASURE("freq encode + decode", (double)NS, {
        for (int s = 0; s < NS; s++) {
            tsr_buf_clear(&b);
            tsr_freq_encode(fs[s], &b);
            tsr_reader_t rd;
            tsr_reader_init(&rd, b.data, b.len);
            tsr_freq_t *d;
            if (tsr_freq_decode(&rd, &d, NULL)) abort();
            tsr_freq_free(d);
        }
    });
    tsr_buf_free(&b);
    for (int s = 0; s < NS; s++) {
        tsr_hll_free(hs[s]);
        tsr_hll_free(hsp[s]);
        tsr_kll_free(ks[s]);
        tsr_freq_free(fs[s]);
    }
    free(longs);
    free(hashes);
    free(dbl);
    free(copy);
    free(keys);
    free(klen);
    free(kid);
    return 0;
}
