/*
 * sketch.h — the approximate-aggregation sketches behind APPROX_UNIQUE_COUNT (HyperLogLog),
 * APPROX_PERCENTILE (KLL) and APPROX_HISTOGRAM_K / APPROX_FREQUENT_K / APPROX_HEAVY_HITTERS_K
 * (frequent items). Each is deterministic: the same inputs in the same order give the same
 * bytes, so online and offline agree run to run. Each merge is commutative within the
 * sketch's error bound (HLL is exactly commutative: its state is a function of the set of
 * hashes). See docs/sketches.md for structure, sizes, bounds and encodings.
 *
 * All sketches are heap objects: *_new / *_free; encode appends to a buffer (no version byte:
 * the aggregation codec adds it); decode validates everything and never reads out of bounds.
 *
 * A sketch has no lock: calls taking a const sketch may run concurrently with each other,
 * anything that changes a sketch needs exclusive access.
 *
 * Size parameters outside their documented range are clamped into it (the config loader is
 * expected to reject them first; the clamp only keeps a bad value from allocating wildly).
 * The *_lgk / *_k / *_capacity getters report the value actually in use.
 */
#ifndef TSR_SKETCH_H
#define TSR_SKETCH_H

#include <stddef.h>
#include <stdint.h>

#include "tsr/error.h"
#include "tsr/mem.h"

/* ---- HyperLogLog (APPROX_UNIQUE_COUNT). lgk is the Chronon/CPC size parameter (default 8);
 * the register count is 2^(lgk+7) (32768 registers, 0.57% standard error at lgk 8, so
 * <= 2% is a 3.5-sigma bound, SPEC §4). Small cardinalities are kept exactly as a set of
 * 64-bit hashes while it holds at most 2^(lgk+3) of them (the size of the dense form), then
 * converted to registers read with Ertl's improved estimator. Inputs are 64-bit hashes
 * (tsr_value_hash). The state is a pure function of the set of hashes added. */
#define TSR_HLL_LGK_MIN 4
#define TSR_HLL_LGK_MAX 12

typedef struct tsr_hll tsr_hll_t;

/* lgk clamped to [TSR_HLL_LGK_MIN, TSR_HLL_LGK_MAX]. Caller frees with tsr_hll_free. */
tsr_hll_t *tsr_hll_new(int lgk);
void tsr_hll_free(tsr_hll_t *h);
void tsr_hll_add(tsr_hll_t *h, uint64_t hash);
/* dst (+)= src; both must have the same lgk (TSR_EINVAL otherwise, dst unchanged). */
int tsr_hll_merge(tsr_hll_t *dst, const tsr_hll_t *src);
/* Exact (number of distinct hashes) while sparse; the dense estimate after. */
double tsr_hll_estimate(const tsr_hll_t *h);
int tsr_hll_lgk(const tsr_hll_t *h);
/* 1 while the sketch is still the exact sparse set. */
int tsr_hll_is_exact(const tsr_hll_t *h);
void tsr_hll_encode(const tsr_hll_t *h, tsr_buf_t *out);
/* On success *out is a new sketch (caller frees with tsr_hll_free) and r is advanced past it;
 * on failure returns TSR_ECORRUPT with a message in err and *out is NULL. */
int tsr_hll_decode(tsr_reader_t *r, tsr_hll_t **out, tsr_error_t *err);

/* ---- KLL quantiles (APPROX_PERCENTILE) over doubles. k is Chronon's parameter (default 128);
 * the compactors run at an internal size of TSR_KLL_K_SCALE * k so that the normalized rank
 * error is <= 1% at k = 128 (SPEC §4; the textbook k = 128 gives ~2%). Exact while n is at
 * most the internal size (so at least while n <= k). Coin flips come from a generator kept
 * in the sketch state. */
#define TSR_KLL_K_MIN 8
#define TSR_KLL_K_MAX 100000
#define TSR_KLL_K_SCALE 3

typedef struct tsr_kll tsr_kll_t;

/* k clamped to [TSR_KLL_K_MIN, TSR_KLL_K_MAX]. Caller frees with tsr_kll_free. */
tsr_kll_t *tsr_kll_new(int k);
void tsr_kll_free(tsr_kll_t *s);
void tsr_kll_add(tsr_kll_t *s, double x);   /* NaN is ignored */
/* dst (+)= src. Different k are allowed: the result keeps the smaller k (and its bound). */
int tsr_kll_merge(tsr_kll_t *dst, const tsr_kll_t *src);
uint64_t tsr_kll_n(const tsr_kll_t *s);
int tsr_kll_k(const tsr_kll_t *s);
/* The value at normalized rank r in [0,1]; NaN when empty. Convention: with t =
 * max(1, ceil(r * n)), the smallest retained item whose cumulative weight is >= t; r <= 0
 * gives the exact minimum and r >= 1 the exact maximum. NaN r gives NaN. */
double tsr_kll_quantile(const tsr_kll_t *s, double r);
/* The same for nr ranks at once (one sort instead of nr): out[i] = quantile(rs[i]). */
void tsr_kll_quantiles(const tsr_kll_t *s, const double *rs, size_t nr, double *out);
void tsr_kll_encode(const tsr_kll_t *s, tsr_buf_t *out);
/* As tsr_hll_decode; caller frees *out with tsr_kll_free. */
int tsr_kll_decode(tsr_reader_t *r, tsr_kll_t **out, tsr_error_t *err);

/* ---- Frequent items (APPROX_HISTOGRAM_K, APPROX_FREQUENT_K, APPROX_HEAVY_HITTERS_K):
 * exact counts while at most 8 * capacity distinct keys were seen (so at least `capacity`),
 * then a Misra-Gries summary of 4 * capacity counters (purged from a table of 8 * capacity,
 * Agarwal et al. "Mergeable summaries") whose counts are lower bounds of the true counts c:
 * c - n / (4 * capacity + 1) <= est <= c, n the total count.
 * Keys are byte strings (the canonical string form of the input value). */
#define TSR_FREQ_CAP_MIN 1
#define TSR_FREQ_CAP_MAX 100000

typedef struct tsr_freq tsr_freq_t;

typedef struct tsr_freq_item {
    const char *key;    /* borrowed from the sketch until its next change */
    size_t len;
    int64_t count;      /* estimate (exact in exact mode); a lower bound of the true count */
} tsr_freq_item_t;

/* capacity clamped to [TSR_FREQ_CAP_MIN, TSR_FREQ_CAP_MAX]. Caller frees with tsr_freq_free. */
tsr_freq_t *tsr_freq_new(int capacity);
void tsr_freq_free(tsr_freq_t *f);
/* Adds count occurrences of key (copied). count <= 0 is ignored (no deletes), and so is a key
 * longer than UINT32_MAX bytes. */
void tsr_freq_add(tsr_freq_t *f, const char *key, size_t len, int64_t count);
/* dst (+)= src. Different capacities are allowed: the result keeps the smaller one. */
int tsr_freq_merge(tsr_freq_t *dst, const tsr_freq_t *src);
/* 1 while counts are still exact. */
int tsr_freq_is_exact(const tsr_freq_t *f);
uint64_t tsr_freq_total(const tsr_freq_t *f);
int tsr_freq_capacity(const tsr_freq_t *f);
/* Upper bound on (true count - estimate) for every key, including keys not listed; 0 while
 * exact. Always <= total / (4 * capacity + 1). */
uint64_t tsr_freq_max_error(const tsr_freq_t *f);
/* Number of keys currently held. */
size_t tsr_freq_size(const tsr_freq_t *f);
/* Writes up to max items, by count descending then key bytes ascending (memcmp, shorter
 * first on a tie); returns how many. Keys are borrowed until the sketch next changes. */
size_t tsr_freq_top(const tsr_freq_t *f, tsr_freq_item_t *out, size_t max);
/* Estimate for one key (0 when not held). */
int64_t tsr_freq_count(const tsr_freq_t *f, const char *key, size_t len);
void tsr_freq_encode(const tsr_freq_t *f, tsr_buf_t *out);
/* As tsr_hll_decode; caller frees *out with tsr_freq_free. */
int tsr_freq_decode(tsr_reader_t *r, tsr_freq_t **out, tsr_error_t *err);

#endif
