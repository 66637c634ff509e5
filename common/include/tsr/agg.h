/*
 * agg.h — the one aggregation kernel, shared by the offline engine and the online tiles
 * (SPEC §4). Every operation is an IR (intermediate result) with init / update / merge /
 * finalize, plus delete for COUNT, SUM, AVERAGE and HISTOGRAM, and a compact versioned
 * binary encoding.
 *
 * Shape. tsr_agg_new() compiles one aggregation spec (op, input type, bucketed?, k, ...) into
 * a tsr_agg_t: an immutable descriptor shared by every thread. An IR is a block of
 * tsr_agg_ir_size() bytes that the caller owns (in an array, a hash table slot, an arena);
 * IRs of ops with variable-size state (TOP_K, UNIQUE_COUNT, sketches, strings) point from that
 * block to heap memory that tsr_agg_clear() releases.
 *
 *   IR lifecycle:  init -> (update | delete | merge | decode)* -> finalize* -> clear
 *
 * Inputs (SPEC §4 null rules):
 *   - a null input is skipped; an IR that saw no input finalizes to null (COUNT and SUM of an
 *     empty window are null, not 0); a NaN or +-Inf double output becomes null;
 *   - a list input is flattened (each element is one input) for every op except
 *     FIRST / LAST / FIRST_K / LAST_K, which take the list as one value;
 *   - a map input aggregates per map key: the output is map<string, output>;
 *   - bucketed aggregations take a bucket value per row: the output is
 *     map<string(bucket), output>; a null bucket skips the row; a bucket appears only once it
 *     saw a non-null input; an empty map finalizes to null.
 *   Buckets wrap map inputs: bucketed + map input gives map<bucket, map<key, output>>.
 *
 * Order. FIRST/LAST/FIRST_K/LAST_K order inputs by (ts, seq), where seq is the row's position
 * in SPEC §3 row order (any increasing counter the caller keeps). On equal ts the earlier row
 * (smaller seq) wins for both FIRST and LAST; LAST_K is (ts desc, seq asc) so LAST_K[0] ==
 * LAST. Merge is commutative and associative for every op, so IRs built from any split of
 * the input, merged in any order, finalize to the same value (doubles within 1e-9 relative).
 *
 * Hot path: update and merge allocate nothing for fixed-size IRs (COUNT, SUM, AVERAGE,
 * VARIANCE, SKEW, KURTOSIS, numeric MIN/MAX/FIRST/LAST); variable-size IRs grow
 * geometrically, so the cost per row is amortised O(1) allocations -> 0 in steady state.
 */
#ifndef TSR_AGG_H
#define TSR_AGG_H

#include <stddef.h>
#include <stdint.h>

#include "tsr/error.h"
#include "tsr/mem.h"
#include "tsr/value.h"

/* Operation ids as in SPEC §2 (Chronon's airbnb numbering for 0..19); 20..22 are reachable by
 * name, or by id in the zipline dialect through the config loader's mapping. */
typedef enum tsr_op {
    TSR_OP_MIN = 0,
    TSR_OP_MAX = 1,
    TSR_OP_FIRST = 2,
    TSR_OP_LAST = 3,
    TSR_OP_UNIQUE_COUNT = 4,
    TSR_OP_APPROX_UNIQUE_COUNT = 5,
    TSR_OP_COUNT = 6,
    TSR_OP_SUM = 7,
    TSR_OP_AVERAGE = 8,
    TSR_OP_VARIANCE = 9,
    TSR_OP_SKEW = 10,
    TSR_OP_KURTOSIS = 11,
    TSR_OP_APPROX_PERCENTILE = 12,
    TSR_OP_LAST_K = 13,
    TSR_OP_FIRST_K = 14,
    TSR_OP_TOP_K = 15,
    TSR_OP_BOTTOM_K = 16,
    TSR_OP_HISTOGRAM = 17,
    TSR_OP_APPROX_HISTOGRAM_K = 18,
    TSR_OP_BOUNDED_UNIQUE_COUNT = 19,
    TSR_OP_APPROX_FREQUENT_K = 20,
    TSR_OP_APPROX_HEAVY_HITTERS_K = 21,
    TSR_OP_UNIQUE_TOP_K = 22,
    TSR_OP__COUNT = 23
} tsr_op_t;

/* "LAST_K" etc.; NULL for an invalid op. */
const char *tsr_op_name(tsr_op_t op);
/* Case-sensitive upper-case name -> op. Returns 0 or TSR_ENOTFOUND. */
int tsr_op_from_name(const char *name, tsr_op_t *op);
/* 1 when argMap.k is required (LAST_K FIRST_K TOP_K BOTTOM_K UNIQUE_TOP_K). */
int tsr_op_requires_k(tsr_op_t op);
/* 1 for COUNT, SUM, AVERAGE, HISTOGRAM. */
int tsr_op_has_delete(tsr_op_t op);
/* 1 for the sketch-based ops (APPROX_*). */
int tsr_op_is_approx(tsr_op_t op);
/* The <op> part of an output column name (SPEC §4): "sum", "approx_percentile", and for the
 * k-ops the name with k embedded: "last5", "first3", "top10", "bottom2", "unique_top4". */
const char *tsr_op_column_name(tsr_op_t op, int64_t k, char *buf, size_t n);

/* Default sketch sizes and percentiles (SPEC §2). */
#define TSR_AGG_DEFAULT_LGK 8           /* APPROX_UNIQUE_COUNT */
#define TSR_AGG_DEFAULT_KLL_K 128       /* APPROX_PERCENTILE */
#define TSR_AGG_DEFAULT_FREQ_K 8        /* BOUNDED_UNIQUE_COUNT, APPROX_*_K */
#define TSR_AGG_MAX_PERCENTILES 64
#define TSR_AGG_MAX_K 100000            /* larger k is a config error */

typedef struct tsr_agg_spec {
    tsr_op_t op;
    tsr_type_t input_type;  /* the input column's type: scalar, list<T>, map<string,T> or ANY */
    int bucketed;           /* 1 when rows carry a bucket value */
    int64_t k;              /* argMap k; 0 = the op's default (or "no truncation" for HISTOGRAM) */
    size_t n_percentiles;   /* APPROX_PERCENTILE; 0 = default [0.5] */
    const double *percentiles; /* copied by tsr_agg_new */
} tsr_agg_spec_t;

typedef struct tsr_agg tsr_agg_t;

/* Checks that the op accepts the input type (e.g. SUM of a string is TSR_ETYPE "SUM expects a
 * numeric or boolean input, got string"), that k and percentiles are in range, and builds the
 * descriptor. Caller frees with tsr_agg_free. */
int tsr_agg_new(const tsr_agg_spec_t *spec, tsr_agg_t **out, tsr_error_t *err);
void tsr_agg_free(tsr_agg_t *a);

/* Output type per SPEC §4 (input type ANY gives ANY where the output follows the input). */
tsr_type_t tsr_agg_output_type(const tsr_agg_t *a);
tsr_op_t tsr_agg_op(const tsr_agg_t *a);
/* Bytes of the caller-owned IR block (a multiple of 8). An all-zero block is a valid empty
 * IR (tsr_agg_init is a memset), and blocks are relocatable: nothing points into the block
 * itself, so an IR may be moved with memcpy (e.g. when a hash table of IRs grows). */
size_t tsr_agg_ir_size(const tsr_agg_t *a);

void tsr_agg_init(const tsr_agg_t *a, void *ir);
/* Releases heap memory the IR points to; the IR must be init-ed again before reuse. */
void tsr_agg_clear(const tsr_agg_t *a, void *ir);
/* 1 when the IR has seen no input (it would finalize to null). */
int tsr_agg_is_empty(const tsr_agg_t *a, const void *ir);

/* Folds one row in. input may be any value of the spec's input type (or null); bucket is
 * NULL for an unbucketed aggregation, else the row's bucket value (null skips the row).
 * The IR copies whatever it keeps: input may be freed after the call. */
void tsr_agg_update(const tsr_agg_t *a, void *ir, const tsr_value_t *input,
                    const tsr_value_t *bucket, int64_t ts, uint64_t seq);

/* Removes one earlier update (COUNT, SUM, AVERAGE, HISTOGRAM only; TSR_EUNSUPPORTED else). */
int tsr_agg_delete(const tsr_agg_t *a, void *ir, const tsr_value_t *input,
                   const tsr_value_t *bucket, int64_t ts, uint64_t seq);

/* dst := dst (+) src. src is unchanged; dst and src must be different IR blocks. */
void tsr_agg_merge(const tsr_agg_t *a, void *dst, const void *src);

/* The output value; strings/lists/maps are allocated in arena (borrowed until it is reset).
 * Null when the IR is empty, and wherever a double result is NaN or +-Inf. */
tsr_value_t tsr_agg_finalize(const tsr_agg_t *a, const void *ir, tsr_arena_t *arena);

/* Binary encoding: a version byte (TSR_AGG_IR_VERSION), then the op's payload. */
#define TSR_AGG_IR_VERSION 1
void tsr_agg_encode(const tsr_agg_t *a, const void *ir, tsr_buf_t *out);
/* Replaces the IR's state with the decoded one. Truncated, corrupted or unknown-version input
 * returns TSR_ECORRUPT / TSR_EVERSION with err set, leaves the IR empty (valid, init-ed) and
 * never reads out of bounds. */
int tsr_agg_decode(const tsr_agg_t *a, void *ir, const void *data, size_t n, tsr_error_t *err);

#endif
