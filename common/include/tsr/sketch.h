/*
 * sketch.h — the approximate-aggregation sketches behind APPROX_UNIQUE_COUNT (HyperLogLog),
 * APPROX_PERCENTILE (KLL) and APPROX_HISTOGRAM_K / APPROX_FREQUENT_K / APPROX_HEAVY_HITTERS_K
 * (frequent items). Each is deterministic: the same inputs in the same order give the same
 * bytes, so online and offline agree run to run. Each merge is commutative within the
 * sketch's error bound. See docs/aggregations.md for sizes and bounds.
 *
 * All sketches are heap objects: *_new / *_free; encode appends to a buffer (no version byte:
 * the aggregation codec adds it); decode validates everything and never reads out of bounds.
 */
#ifndef TSR_SKETCH_H
#define TSR_SKETCH_H

#include <stddef.h>
#include <stdint.h>

#include "tsr/error.h"
#include "tsr/mem.h"

/* ---- HyperLogLog (APPROX_UNIQUE_COUNT). lgk is the Chronon/CPC size parameter (default 8);
 * the register count is chosen from it so that the relative error at the default is <= 2%
 * (SPEC §4). Small cardinalities are kept exactly (sparse hash list) until the sparse form
 * would be larger than the dense registers. Inputs are 64-bit hashes (tsr_value_hash). */
typedef struct tsr_hll tsr_hll_t;

tsr_hll_t *tsr_hll_new(int lgk);
void tsr_hll_free(tsr_hll_t *h);
void tsr_hll_add(tsr_hll_t *h, uint64_t hash);
/* dst (+)= src; both must have the same lgk (TSR_EINVAL otherwise). */
int tsr_hll_merge(tsr_hll_t *dst, const tsr_hll_t *src);
double tsr_hll_estimate(const tsr_hll_t *h);
int tsr_hll_lgk(const tsr_hll_t *h);
void tsr_hll_encode(const tsr_hll_t *h, tsr_buf_t *out);
int tsr_hll_decode(tsr_reader_t *r, tsr_hll_t **out, tsr_error_t *err);

/* ---- KLL quantiles (APPROX_PERCENTILE) over doubles. k is Chronon's parameter (default 128);
 * normalized rank error <= 1% at k = 128 (SPEC §4). Exact while n <= k. */
typedef struct tsr_kll tsr_kll_t;

tsr_kll_t *tsr_kll_new(int k);
void tsr_kll_free(tsr_kll_t *s);
void tsr_kll_add(tsr_kll_t *s, double x);   /* NaN is ignored */
int tsr_kll_merge(tsr_kll_t *dst, const tsr_kll_t *src);
uint64_t tsr_kll_n(const tsr_kll_t *s);
/* The value at normalized rank r in [0,1]; NaN when empty. */
double tsr_kll_quantile(const tsr_kll_t *s, double r);
void tsr_kll_encode(const tsr_kll_t *s, tsr_buf_t *out);
int tsr_kll_decode(tsr_reader_t *r, tsr_kll_t **out, tsr_error_t *err);

/* ---- Frequent items (APPROX_HISTOGRAM_K, APPROX_FREQUENT_K, APPROX_HEAVY_HITTERS_K):
 * exact counts while at most `capacity` distinct keys were seen, then a Misra-Gries /
 * SpaceSaving-class summary whose count error is bounded by n / capacity. Keys are byte
 * strings (the canonical string form of the input value). */
typedef struct tsr_freq tsr_freq_t;

typedef struct tsr_freq_item {
    const char *key;    /* borrowed from the sketch until its next change */
    size_t len;
    int64_t count;      /* estimate (exact in exact mode) */
} tsr_freq_item_t;

tsr_freq_t *tsr_freq_new(int capacity);
void tsr_freq_free(tsr_freq_t *f);
void tsr_freq_add(tsr_freq_t *f, const char *key, size_t len, int64_t count);
int tsr_freq_merge(tsr_freq_t *dst, const tsr_freq_t *src);
/* 1 while counts are still exact. */
int tsr_freq_is_exact(const tsr_freq_t *f);
uint64_t tsr_freq_total(const tsr_freq_t *f);
/* Writes up to max items, by count descending then key ascending; returns how many. */
size_t tsr_freq_top(const tsr_freq_t *f, tsr_freq_item_t *out, size_t max);
void tsr_freq_encode(const tsr_freq_t *f, tsr_buf_t *out);
int tsr_freq_decode(tsr_reader_t *r, tsr_freq_t **out, tsr_error_t *err);

#endif
