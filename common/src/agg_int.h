/*
 * agg_int.h — what the aggregation kernel's files (agg.c, agg_num.c, agg_coll.c,
 * agg_sketch.c) share: the compiled descriptor, the per-op function table, owned value
 * copies, the string-keyed hash map used by buckets / map inputs / histograms, and the value
 * codec used inside IR encodings.
 *
 * Design.
 *   - A tsr_agg_t is a small chain of layers: an optional BUCKET layer (key = the row's
 *     bucket value), then an optional MAPKEY layer (key = each key of a map input), then the
 *     LEAF layer (one op). Keyed layers hold a tsr__kmap_t of key -> sub-IR of the next layer.
 *   - Every layer has a function table (tsr__agg_ops_t); the public entry points dispatch
 *     once through it, so SUM / COUNT updates cost one indirect call.
 *
 * Invariants.
 *   1. An all-zero IR block is a valid empty IR for every op (init is memset 0).
 *   2. IR blocks are relocatable: no IR points into itself, so a block may be moved with
 *      memcpy (the keyed maps rely on this when they grow; callers may too).
 *   3. Leaf update functions are only called with a non-null input whose kind the leaf
 *      accepts (tsr_agg_t.accept); the layer code filters and flattens lists.
 *   4. Leaf decode functions are called on an empty IR; on failure they leave it in a state
 *      that clear() can release (the caller then clears and re-inits it).
 */
#ifndef TSR_AGG_INT_H
#define TSR_AGG_INT_H

#include <stddef.h>
#include <stdint.h>

#include "tsr/agg.h"

enum { TSR__LAYER_LEAF = 0, TSR__LAYER_BUCKET = 1, TSR__LAYER_MAPKEY = 2 };

/* Seed for every hash the kernel computes (sets, keyed maps, HLL inputs): fixed, so IRs are
 * deterministic across processes. */
#define TSR__AGG_SEED 0x7e55e7a5eed5ULL

typedef struct tsr__agg_ops {
    size_t ir_size; /* leaf only; keyed layers have a fixed size */
    void (*clear)(const tsr_agg_t *a, void *ir);
    int (*is_empty)(const tsr_agg_t *a, const void *ir);
    /* v is non-null and of an accepted kind (invariant 3). */
    void (*update)(const tsr_agg_t *a, void *ir, const tsr_value_t *v, int64_t ts, uint64_t seq);
    void (*del)(const tsr_agg_t *a, void *ir, const tsr_value_t *v, int64_t ts, uint64_t seq);
    void (*merge)(const tsr_agg_t *a, void *dst, const void *src);
    tsr_value_t (*finalize)(const tsr_agg_t *a, const void *ir, tsr_arena_t *arena);
    void (*encode)(const tsr_agg_t *a, const void *ir, tsr_buf_t *out);
    int (*decode)(const tsr_agg_t *a, void *ir, tsr_reader_t *r, tsr_error_t *err);
} tsr__agg_ops_t;

struct tsr_agg {
    tsr_op_t op;
    int layer;                  /* TSR__LAYER_* */
    tsr_agg_t *inner;           /* next layer (keyed layers only) */
    const tsr__agg_ops_t *ops;
    tsr_type_t input_type;      /* what this layer receives */
    tsr_type_t output_type;     /* what this layer finalizes to */
    size_t ir_size;
    /* leaf only */
    uint32_t accept;            /* bit (1 << kind) set when update takes that kind */
    int flatten;                /* list inputs are flattened (all but FIRST/LAST/_K) */
    int coerce_double;          /* declared double: long inputs are converted */
    int sum_out;                /* SUM: TSR_LONG, TSR_DOUBLE, or TSR_ANY (decided per IR) */
    int64_t k;                  /* effective k (defaults applied) */
    size_t n_pct;
    double *pct;
};

/* ---- the leaf op tables (agg_num.c, agg_coll.c, agg_sketch.c) */
extern const tsr__agg_ops_t tsr__ops_count, tsr__ops_sum_long, tsr__ops_sum_double,
    tsr__ops_sum_any, tsr__ops_average, tsr__ops_moments, tsr__ops_minmax, tsr__ops_firstlast;
extern const tsr__agg_ops_t tsr__ops_ranked, tsr__ops_bounded, tsr__ops_uniq, tsr__ops_hist;
extern const tsr__agg_ops_t tsr__ops_hll, tsr__ops_kll, tsr__ops_freq;

/* ---- owned deep copies of values: one heap block holding the value's strings and items,
 * reused when the next value fits (so LAST of strings allocates only when a longer value
 * arrives). Scalars need no block. All-zero = null. */
typedef struct tsr__ov {
    tsr_value_t v;
    void *mem;
    size_t cap;
} tsr__ov_t;

void tsr__ov_set(tsr__ov_t *o, const tsr_value_t *v);
void tsr__ov_free(tsr__ov_t *o);
/* Moves src's value into dst (freeing dst's block); src becomes null. */
void tsr__ov_swap(tsr__ov_t *a, tsr__ov_t *b);

/* Values inside IR payloads use the value codec of value.h (tsr_value_encode /
 * tsr_value_decode): decoded strings borrow from the input, which every caller copies from
 * (tsr__ov_set, rank_insert) before the input goes away. */

/* Canonical key bytes of a scalar (tsr_value_key_string's format) without allocating for
 * strings, longs and booleans: *p points into v, tmp (>= 24 bytes) or spill. spill must be
 * an initialised buffer; the caller frees it. */
void tsr__key_bytes(const tsr_value_t *v, char *tmp, tsr_buf_t *spill, const char **p,
                    size_t *n);

/* ---- tsr__kmap_t: open-addressing (linear probing) hash map from byte-string keys to
 * fixed-size value blocks (sub-IRs, or an int64 count for HISTOGRAM). Each slot is a
 * header {hash, key, klen, used} followed by `vsize` bytes; an all-zero map is empty. Value
 * blocks are moved with memcpy when the table grows (invariant 2). */
typedef struct tsr__kmap {
    uint8_t *slots;
    uint32_t n, cap;    /* cap is 0 or a power of two */
} tsr__kmap_t;

typedef struct tsr__kslot {
    uint64_t hash;
    char *key;          /* heap, NUL-terminated, owned by the map */
    uint32_t klen;
    uint32_t used;
} tsr__kslot_t;

static inline size_t tsr__kmap_stride(size_t vsize) { return sizeof(tsr__kslot_t) + vsize; }
static inline tsr__kslot_t *tsr__kmap_slot(const tsr__kmap_t *m, size_t vsize, size_t i) {
    return (tsr__kslot_t *)(m->slots + i * tsr__kmap_stride(vsize));
}
static inline void *tsr__kslot_val(tsr__kslot_t *s) { return (uint8_t *)s + sizeof(*s); }

/* Finds key; inserts a zeroed value block when absent and create is set (else NULL). */
void *tsr__kmap_get(tsr__kmap_t *m, size_t vsize, const char *key, size_t klen, int create);
/* Frees keys and slots; value blocks must have been released by the caller. */
void tsr__kmap_free(tsr__kmap_t *m, size_t vsize);
/* Used slots sorted by key bytes (ascending); caller frees the array with free(). */
tsr__kslot_t **tsr__kmap_sorted(const tsr__kmap_t *m, size_t vsize, size_t *n);

int tsr__agg_corrupt(tsr_error_t *err, const tsr_agg_t *a, const char *what);

/* Layer-generic calls used by the keyed layers to reach their inner layer. */
void tsr__agg_update_at(const tsr_agg_t *a, void *ir, const tsr_value_t *v, int64_t ts,
                        uint64_t seq);
void tsr__agg_delete_at(const tsr_agg_t *a, void *ir, const tsr_value_t *v, int64_t ts,
                        uint64_t seq);

/* Finalize helper: a double output, null when NaN or +-Inf. */
tsr_value_t tsr__agg_double_out(double d);

#endif
