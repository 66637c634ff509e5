/*
 * agg.c — the aggregation kernel's front: op names, descriptor compilation and validation
 * (tsr_agg_new), the public entry points, the keyed layers (buckets and map inputs), and the
 * shared helpers of agg_int.h (owned values, value codec, key bytes, the string hash map).
 *
 * Design. tsr_agg_new compiles a spec into up to three layers (agg_int.h): BUCKET ->
 * MAPKEY -> LEAF. A keyed layer's IR is a tsr__kmap_t (16 bytes inside the caller's block)
 * whose slots carry the inner layer's IR. Null rules live here, once, for every op: null
 * inputs and null buckets are skipped, lists are flattened for the ops that flatten, and
 * kinds the leaf does not accept (possible only with input type ANY) are skipped.
 *
 * Encoding. [version u8 = TSR_AGG_IR_VERSION][op u8][layer payloads]. A keyed payload is
 * uvarint n, then n x (key bytes, inner payload) in key order, listing only non-empty
 * sub-IRs, so equal states encode to equal bytes whatever the insertion order.
 */
#include "agg_int.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tsr/sketch.h"

/* ------------------------------------------------------------------------------------ */
/* Names                                                                                  */

static const char *const op_names[TSR_OP__COUNT] = {
    "MIN", "MAX", "FIRST", "LAST", "UNIQUE_COUNT", "APPROX_UNIQUE_COUNT", "COUNT", "SUM",
    "AVERAGE", "VARIANCE", "SKEW", "KURTOSIS", "APPROX_PERCENTILE", "LAST_K", "FIRST_K",
    "TOP_K", "BOTTOM_K", "HISTOGRAM", "APPROX_HISTOGRAM_K", "BOUNDED_UNIQUE_COUNT",
    "APPROX_FREQUENT_K", "APPROX_HEAVY_HITTERS_K", "UNIQUE_TOP_K",
};

const char *tsr_op_name(tsr_op_t op) {
    if ((unsigned)op >= TSR_OP__COUNT) return NULL;
    return op_names[op];
}

int tsr_op_from_name(const char *name, tsr_op_t *op) {
    if (!name) return TSR_ENOTFOUND;
    for (int i = 0; i < TSR_OP__COUNT; i++) {
        if (strcmp(name, op_names[i]) == 0) {
            *op = (tsr_op_t)i;
            return 0;
        }
    }
    return TSR_ENOTFOUND;
}

int tsr_op_requires_k(tsr_op_t op) {
    return op == TSR_OP_LAST_K || op == TSR_OP_FIRST_K || op == TSR_OP_TOP_K ||
           op == TSR_OP_BOTTOM_K || op == TSR_OP_UNIQUE_TOP_K;
}

int tsr_op_has_delete(tsr_op_t op) {
    return op == TSR_OP_COUNT || op == TSR_OP_SUM || op == TSR_OP_AVERAGE ||
           op == TSR_OP_HISTOGRAM;
}

int tsr_op_is_approx(tsr_op_t op) {
    return op == TSR_OP_APPROX_UNIQUE_COUNT || op == TSR_OP_APPROX_PERCENTILE ||
           op == TSR_OP_APPROX_HISTOGRAM_K || op == TSR_OP_APPROX_FREQUENT_K ||
           op == TSR_OP_APPROX_HEAVY_HITTERS_K;
}

/* SPEC §4 spells out the k-ops; every other op is its lower-case name, including the
 * approximate *_K ops whose k is a sketch size rather than an output length
 * ("approx_histogram_k"), as Chronon names them. */
const char *tsr_op_column_name(tsr_op_t op, int64_t k, char *buf, size_t n) {
    const char *stem = NULL;
    switch (op) {
    case TSR_OP_LAST_K: stem = "last"; break;
    case TSR_OP_FIRST_K: stem = "first"; break;
    case TSR_OP_TOP_K: stem = "top"; break;
    case TSR_OP_BOTTOM_K: stem = "bottom"; break;
    case TSR_OP_UNIQUE_TOP_K: stem = "unique_top"; break;
    default: break;
    }
    if (n == 0) return buf;
    if (stem) {
        snprintf(buf, n, "%s%lld", stem, (long long)k);
        return buf;
    }
    const char *name = tsr_op_name(op);
    if (!name) {
        buf[0] = '\0';
        return buf;
    }
    size_t i = 0;
    for (; name[i] && i + 1 < n; i++)
        buf[i] = (char)(name[i] >= 'A' && name[i] <= 'Z' ? name[i] - 'A' + 'a' : name[i]);
    buf[i] = '\0';
    return buf;
}

/* ------------------------------------------------------------------------------------ */
/* Descriptor                                                                             */

#define KBIT(kind) (1u << (kind))
#define K_NUM (KBIT(TSR_LONG) | KBIT(TSR_DOUBLE))
#define K_SCALAR (KBIT(TSR_BOOL) | K_NUM | KBIT(TSR_STRING))
#define K_ORDERED (K_NUM | KBIT(TSR_STRING))
#define K_ALL (K_SCALAR | KBIT(TSR_LIST) | KBIT(TSR_MAP))

static int op_takes_whole_value(tsr_op_t op) {
    return op == TSR_OP_FIRST || op == TSR_OP_LAST || op == TSR_OP_FIRST_K ||
           op == TSR_OP_LAST_K;
}

/* The kinds an op accepts at its leaf, and the words used in the type error. */
static uint32_t op_accept(tsr_op_t op, const char **what) {
    switch (op) {
    case TSR_OP_COUNT:
    case TSR_OP_FIRST:
    case TSR_OP_LAST:
    case TSR_OP_FIRST_K:
    case TSR_OP_LAST_K: *what = "any input"; return K_ALL;
    case TSR_OP_SUM: *what = "a numeric or boolean input"; return K_NUM | KBIT(TSR_BOOL);
    case TSR_OP_AVERAGE:
    case TSR_OP_VARIANCE:
    case TSR_OP_SKEW:
    case TSR_OP_KURTOSIS:
    case TSR_OP_APPROX_PERCENTILE: *what = "a numeric input"; return K_NUM;
    case TSR_OP_MIN:
    case TSR_OP_MAX:
    case TSR_OP_TOP_K:
    case TSR_OP_BOTTOM_K:
    case TSR_OP_UNIQUE_TOP_K: *what = "a numeric or string input"; return K_ORDERED;
    default: *what = "a scalar input"; return K_SCALAR;
    }
}

/* The kinds the leaf takes at run time: the op's kinds narrowed to the declared element type
 * (ANY keeps them all), so a long arriving in a double column is coerced rather than mixed
 * in, and a flattening op never sees a list. */
static uint32_t leaf_accept(tsr_op_t op, uint32_t accept, tsr_type_t elem, int flatten,
                            int *coerce_double) {
    *coerce_double = 0;
    if (flatten) accept &= ~KBIT(TSR_LIST);
    tsr_kind_t ek = tsr_type_kind(elem);
    if (!flatten || ek == TSR_ANY) return accept;
    uint32_t m = KBIT(ek);
    if (op == TSR_OP_SUM && ek == TSR_LONG) m |= KBIT(TSR_BOOL);
    if (ek == TSR_DOUBLE) *coerce_double = 1;
    return accept & m;
}

static const tsr__agg_ops_t *leaf_ops(tsr_op_t op, tsr_type_t elem) {
    switch (op) {
    case TSR_OP_COUNT: return &tsr__ops_count;
    case TSR_OP_SUM:
        if (elem == TSR_DOUBLE) return &tsr__ops_sum_double;
        if (elem == TSR_ANY) return &tsr__ops_sum_any;
        return &tsr__ops_sum_long;
    case TSR_OP_AVERAGE: return &tsr__ops_average;
    case TSR_OP_VARIANCE:
    case TSR_OP_SKEW:
    case TSR_OP_KURTOSIS: return &tsr__ops_moments;
    case TSR_OP_MIN:
    case TSR_OP_MAX: return &tsr__ops_minmax;
    case TSR_OP_FIRST:
    case TSR_OP_LAST: return &tsr__ops_firstlast;
    case TSR_OP_FIRST_K:
    case TSR_OP_LAST_K:
    case TSR_OP_TOP_K:
    case TSR_OP_BOTTOM_K:
    case TSR_OP_UNIQUE_TOP_K: return &tsr__ops_ranked;
    case TSR_OP_UNIQUE_COUNT: return &tsr__ops_uniq;
    case TSR_OP_BOUNDED_UNIQUE_COUNT: return &tsr__ops_bounded;
    case TSR_OP_HISTOGRAM: return &tsr__ops_hist;
    case TSR_OP_APPROX_UNIQUE_COUNT: return &tsr__ops_hll;
    case TSR_OP_APPROX_PERCENTILE: return &tsr__ops_kll;
    default: return &tsr__ops_freq;
    }
}

static tsr_type_t leaf_output(const tsr_agg_t *a, tsr_type_t elem) {
    switch (a->op) {
    case TSR_OP_COUNT:
    case TSR_OP_UNIQUE_COUNT:
    case TSR_OP_APPROX_UNIQUE_COUNT:
    case TSR_OP_BOUNDED_UNIQUE_COUNT: return TSR_LONG;
    case TSR_OP_SUM:
        if (elem == TSR_DOUBLE) return TSR_DOUBLE;
        if (elem == TSR_ANY) return TSR_ANY;
        return TSR_LONG;
    case TSR_OP_AVERAGE:
    case TSR_OP_VARIANCE:
    case TSR_OP_SKEW:
    case TSR_OP_KURTOSIS: return TSR_DOUBLE;
    case TSR_OP_MIN:
    case TSR_OP_MAX:
    case TSR_OP_FIRST:
    case TSR_OP_LAST: return elem;
    case TSR_OP_FIRST_K:
    case TSR_OP_LAST_K:
    case TSR_OP_TOP_K:
    case TSR_OP_BOTTOM_K:
    case TSR_OP_UNIQUE_TOP_K: return TSR_TYPE_LIST(elem);
    case TSR_OP_APPROX_PERCENTILE: return TSR_TYPE_LIST(TSR_DOUBLE);
    default: return TSR_TYPE_MAP(TSR_LONG); /* HISTOGRAM, APPROX_*_K */
    }
}

/* Type nesting is 4 bits per level in 32 bits: wrapping must leave room for the outer map. */
static int type_depth(tsr_type_t t) {
    int d = 1;
    while (tsr_type_kind(t) == TSR_LIST || tsr_type_kind(t) == TSR_MAP) {
        t = tsr_type_elem(t);
        d++;
    }
    return d;
}

extern const tsr__agg_ops_t tsr__ops_keyed;

static tsr_agg_t *wrap_keyed(tsr_agg_t *inner, int layer, tsr_type_t input) {
    tsr_agg_t *a = tsr_calloc(1, sizeof(*a));
    a->op = inner->op;
    a->layer = layer;
    a->inner = inner;
    a->ops = &tsr__ops_keyed;
    a->input_type = input;
    a->output_type = TSR_TYPE_MAP(inner->output_type);
    a->ir_size = sizeof(tsr__kmap_t);
    a->k = inner->k;
    return a;
}

int tsr_agg_new(const tsr_agg_spec_t *spec, tsr_agg_t **out, tsr_error_t *err) {
    *out = NULL;
    const char *name = tsr_op_name(spec->op);
    if (!name) return tsr_error_set(err, TSR_EINVAL, "unknown aggregation operation id %d",
                                    (int)spec->op);
    char tbuf[TSR_TYPE_NAME_MAX];
    tsr_type_t in = spec->input_type;
    tsr_kind_t kin = tsr_type_kind(in);
    if (kin == TSR_NULL || kin > TSR_ANY)
        return tsr_error_set(err, TSR_ETYPE, "%s cannot aggregate an input of type %s", name,
                             tsr_type_name(in, tbuf, sizeof tbuf));
    /* Peel a map input (per-key aggregation), then a list for the ops that flatten. */
    int is_map = kin == TSR_MAP;
    tsr_type_t elem = is_map ? tsr_type_elem(in) : in;
    int flatten = !op_takes_whole_value(spec->op);
    if (flatten && tsr_type_kind(elem) == TSR_LIST) elem = tsr_type_elem(elem);
    const char *what;
    uint32_t accept = op_accept(spec->op, &what);
    tsr_kind_t ek = tsr_type_kind(elem);
    if (ek != TSR_ANY && !(accept & KBIT(ek)))
        return tsr_error_set(err, TSR_ETYPE, "%s expects %s, got %s", name, what,
                             tsr_type_name(in, tbuf, sizeof tbuf));
    /* k: required for the k-ops; the sketch ops and BOUNDED_UNIQUE_COUNT default it. */
    int64_t k = spec->k;
    if (tsr_op_requires_k(spec->op) && k == 0)
        return tsr_error_set(err, TSR_EINVAL, "%s requires argMap.k (1..%d)", name,
                             TSR_AGG_MAX_K);
    if (k < 0 || k > TSR_AGG_MAX_K)
        return tsr_error_set(err, TSR_EINVAL, "%s: k = %lld is out of range (1..%d)", name,
                             (long long)k, TSR_AGG_MAX_K);
    if (k == 0) {
        switch (spec->op) {
        case TSR_OP_APPROX_UNIQUE_COUNT: k = TSR_AGG_DEFAULT_LGK; break;
        case TSR_OP_APPROX_PERCENTILE: k = TSR_AGG_DEFAULT_KLL_K; break;
        case TSR_OP_BOUNDED_UNIQUE_COUNT:
        case TSR_OP_APPROX_HISTOGRAM_K:
        case TSR_OP_APPROX_FREQUENT_K:
        case TSR_OP_APPROX_HEAVY_HITTERS_K: k = TSR_AGG_DEFAULT_FREQ_K; break;
        default: break; /* HISTOGRAM: 0 = no truncation; others ignore k */
        }
    }
    if (spec->op == TSR_OP_APPROX_UNIQUE_COUNT && (k < TSR_HLL_LGK_MIN || k > TSR_HLL_LGK_MAX))
        return tsr_error_set(err, TSR_EINVAL,
                             "APPROX_UNIQUE_COUNT: lgK = %lld is out of range (%d..%d)",
                             (long long)k, TSR_HLL_LGK_MIN, TSR_HLL_LGK_MAX);
    if (spec->op == TSR_OP_APPROX_PERCENTILE && (k < TSR_KLL_K_MIN || k > TSR_KLL_K_MAX))
        return tsr_error_set(err, TSR_EINVAL,
                             "APPROX_PERCENTILE: k = %lld is out of range (%d..%d)",
                             (long long)k, TSR_KLL_K_MIN, TSR_KLL_K_MAX);
    size_t npct = 0;
    if (spec->op == TSR_OP_APPROX_PERCENTILE) {
        npct = spec->n_percentiles;
        if (npct > TSR_AGG_MAX_PERCENTILES)
            return tsr_error_set(err, TSR_EINVAL,
                                 "APPROX_PERCENTILE: %zu percentiles given, at most %d allowed",
                                 npct, TSR_AGG_MAX_PERCENTILES);
        if (npct && !spec->percentiles)
            return tsr_error_set(err, TSR_EINVAL, "APPROX_PERCENTILE: percentiles missing");
        for (size_t i = 0; i < npct; i++) {
            double p = spec->percentiles[i];
            if (!(p >= 0.0 && p <= 1.0))
                return tsr_error_set(err, TSR_EINVAL,
                                     "APPROX_PERCENTILE: percentiles[%zu] = %g is outside "
                                     "[0, 1]",
                                     i, p);
        }
    }
    tsr_agg_t *leaf = tsr_calloc(1, sizeof(*leaf));
    leaf->op = spec->op;
    leaf->layer = TSR__LAYER_LEAF;
    leaf->ops = leaf_ops(spec->op, elem);
    leaf->input_type = is_map ? tsr_type_elem(in) : in;
    leaf->accept = leaf_accept(spec->op, accept, elem, flatten, &leaf->coerce_double);
    leaf->flatten = flatten;
    leaf->sum_out = elem == TSR_DOUBLE ? TSR_DOUBLE : elem == TSR_ANY ? TSR_ANY : TSR_LONG;
    leaf->k = k;
    if (spec->op == TSR_OP_APPROX_PERCENTILE) {
        leaf->n_pct = npct ? npct : 1;
        leaf->pct = tsr_malloc(leaf->n_pct * sizeof(double));
        if (npct) memcpy(leaf->pct, spec->percentiles, npct * sizeof(double));
        else leaf->pct[0] = 0.5;
    }
    leaf->output_type = leaf_output(leaf, elem);
    leaf->ir_size = (leaf->ops->ir_size + 7) & ~(size_t)7;
    tsr_agg_t *a = leaf;
    if (is_map) a = wrap_keyed(a, TSR__LAYER_MAPKEY, in);
    if (spec->bucketed) a = wrap_keyed(a, TSR__LAYER_BUCKET, in);
    if (type_depth(a->output_type) > 7) {
        tsr_agg_free(a);
        return tsr_error_set(err, TSR_ETYPE, "%s over %s: the output type nests too deeply",
                             name, tsr_type_name(in, tbuf, sizeof tbuf));
    }
    *out = a;
    return 0;
}

void tsr_agg_free(tsr_agg_t *a) {
    while (a) {
        tsr_agg_t *inner = a->inner;
        free(a->pct);
        free(a);
        a = inner;
    }
}

tsr_type_t tsr_agg_output_type(const tsr_agg_t *a) { return a->output_type; }
tsr_op_t tsr_agg_op(const tsr_agg_t *a) { return a->op; }
size_t tsr_agg_ir_size(const tsr_agg_t *a) { return a->ir_size; }

/* ------------------------------------------------------------------------------------ */
/* Entry points                                                                           */

void tsr_agg_init(const tsr_agg_t *a, void *ir) { memset(ir, 0, a->ir_size); }

void tsr_agg_clear(const tsr_agg_t *a, void *ir) {
    a->ops->clear(a, ir);
    memset(ir, 0, a->ir_size);
}

int tsr_agg_is_empty(const tsr_agg_t *a, const void *ir) { return a->ops->is_empty(a, ir); }

/* The leaf's null / flatten / kind rules (agg_int.h invariant 3). The common case (a scalar
 * of an accepted kind) costs one mask test and one indirect call; lists, coercions and
 * mismatches take the slow path. */
static void leaf_slow(const tsr_agg_t *a, void *ir, const tsr_value_t *v, int64_t ts,
                      uint64_t seq, int del) {
    if (v->kind == TSR_LIST && a->flatten) {
        for (uint32_t i = 0; i < v->len; i++) {
            const tsr_value_t *e = &v->u.items[i];
            if (e->kind == TSR_LIST) continue; /* one level of flattening */
            leaf_slow(a, ir, e, ts, seq, del);
        }
        return;
    }
    tsr_value_t tmp;
    if (a->accept & KBIT(v->kind)) {
        tmp = *v;
    } else if (a->coerce_double && v->kind == TSR_LONG) {
        /* a long in a double column: aggregate it as the double the column declares */
        tmp = tsr_value_double((double)v->u.l);
    } else {
        return; /* null, or a kind this op does not take (input type ANY) */
    }
    if (del) a->ops->del(a, ir, &tmp, ts, seq);
    else a->ops->update(a, ir, &tmp, ts, seq);
}

static inline void leaf_update(const tsr_agg_t *a, void *ir, const tsr_value_t *v, int64_t ts,
                               uint64_t seq) {
    if (a->accept & KBIT(v->kind)) a->ops->update(a, ir, v, ts, seq);
    else leaf_slow(a, ir, v, ts, seq, 0);
}

static void leaf_delete(const tsr_agg_t *a, void *ir, const tsr_value_t *v, int64_t ts,
                        uint64_t seq) {
    if (a->accept & KBIT(v->kind)) a->ops->del(a, ir, v, ts, seq);
    else leaf_slow(a, ir, v, ts, seq, 1);
}

/* A map input: each non-null entry value goes to the sub-IR of its key. */
static void mapkey_apply(const tsr_agg_t *a, void *ir, const tsr_value_t *v, int64_t ts,
                         uint64_t seq, int del) {
    if (v->kind != TSR_MAP) return;
    tsr__kmap_t *m = ir;
    const tsr_agg_t *in = a->inner;
    for (uint32_t i = 0; i < v->len; i++) {
        const tsr_value_t *key = &v->u.items[2 * i], *val = &v->u.items[2 * i + 1];
        if (val->kind == TSR_NULL || key->kind != TSR_STRING) continue;
        void *sub = tsr__kmap_get(m, in->ir_size, key->u.s, key->len, 1);
        if (del) leaf_delete(in, sub, val, ts, seq);
        else leaf_update(in, sub, val, ts, seq);
    }
}

void tsr__agg_update_at(const tsr_agg_t *a, void *ir, const tsr_value_t *v, int64_t ts,
                        uint64_t seq) {
    if (v->kind == TSR_NULL) return;
    if (a->layer == TSR__LAYER_MAPKEY) mapkey_apply(a, ir, v, ts, seq, 0);
    else leaf_update(a, ir, v, ts, seq);
}

void tsr__agg_delete_at(const tsr_agg_t *a, void *ir, const tsr_value_t *v, int64_t ts,
                        uint64_t seq) {
    if (v->kind == TSR_NULL) return;
    if (a->layer == TSR__LAYER_MAPKEY) mapkey_apply(a, ir, v, ts, seq, 1);
    else leaf_delete(a, ir, v, ts, seq);
}

static void *bucket_sub(const tsr_agg_t *a, void *ir, const tsr_value_t *bucket) {
    char tmp[32];
    tsr_buf_t spill;
    tsr_buf_init(&spill);
    const char *p;
    size_t n;
    tsr__key_bytes(bucket, tmp, &spill, &p, &n);
    void *sub = tsr__kmap_get(ir, a->inner->ir_size, p, n, 1);
    if (spill.data) tsr_buf_free(&spill); /* only doubles and nested values spill */
    return sub;
}

void tsr_agg_update(const tsr_agg_t *a, void *ir, const tsr_value_t *input,
                    const tsr_value_t *bucket, int64_t ts, uint64_t seq) {
    if (a->layer == TSR__LAYER_LEAF) {
        leaf_update(a, ir, input, ts, seq);
        return;
    }
    if (input->kind == TSR_NULL) return;
    if (a->layer == TSR__LAYER_MAPKEY) {
        mapkey_apply(a, ir, input, ts, seq, 0);
        return;
    }
    if (!bucket || bucket->kind == TSR_NULL) return;
    tsr__agg_update_at(a->inner, bucket_sub(a, ir, bucket), input, ts, seq);
}

int tsr_agg_delete(const tsr_agg_t *a, void *ir, const tsr_value_t *input,
                   const tsr_value_t *bucket, int64_t ts, uint64_t seq) {
    if (!tsr_op_has_delete(a->op)) return TSR_EUNSUPPORTED;
    if (input->kind == TSR_NULL) return 0;
    if (a->layer == TSR__LAYER_BUCKET) {
        if (!bucket || bucket->kind == TSR_NULL) return 0;
        tsr__agg_delete_at(a->inner, bucket_sub(a, ir, bucket), input, ts, seq);
        return 0;
    }
    tsr__agg_delete_at(a, ir, input, ts, seq);
    return 0;
}

void tsr_agg_merge(const tsr_agg_t *a, void *dst, const void *src) {
    a->ops->merge(a, dst, src);
}

tsr_value_t tsr_agg_finalize(const tsr_agg_t *a, const void *ir, tsr_arena_t *arena) {
    return a->ops->finalize(a, ir, arena);
}

void tsr_agg_encode(const tsr_agg_t *a, const void *ir, tsr_buf_t *out) {
    tsr_buf_put_u8(out, TSR_AGG_IR_VERSION);
    tsr_buf_put_u8(out, (uint8_t)a->op);
    a->ops->encode(a, ir, out);
}

int tsr__agg_corrupt(tsr_error_t *err, const tsr_agg_t *a, const char *what) {
    return tsr_error_set(err, TSR_ECORRUPT, "%s IR: %s", tsr_op_name(a->op), what);
}

int tsr_agg_decode(const tsr_agg_t *a, void *ir, const void *data, size_t n, tsr_error_t *err) {
    tsr_agg_clear(a, ir);
    tsr_reader_t r;
    tsr_reader_init(&r, data, n);
    uint8_t ver, op;
    if (tsr_get_u8(&r, &ver)) return tsr__agg_corrupt(err, a, "empty input");
    if (ver != TSR_AGG_IR_VERSION)
        return tsr_error_set(err, TSR_EVERSION,
                             "%s IR: encoding version %u is not supported (this build reads "
                             "version %d)",
                             tsr_op_name(a->op), ver, TSR_AGG_IR_VERSION);
    if (tsr_get_u8(&r, &op)) return tsr__agg_corrupt(err, a, "truncated before the op id");
    if (op != (uint8_t)a->op) {
        const char *got = tsr_op_name((tsr_op_t)op);
        return tsr_error_set(err, TSR_ECORRUPT, "%s IR: the bytes encode a %s IR",
                             tsr_op_name(a->op), got ? got : "unknown");
    }
    int rc = a->ops->decode(a, ir, &r, err);
    if (rc == 0 && tsr_reader_left(&r) != 0)
        rc = tsr__agg_corrupt(err, a, "trailing bytes after the payload");
    if (rc) tsr_agg_clear(a, ir);
    return rc;
}

tsr_value_t tsr__agg_double_out(double d) {
    return isfinite(d) ? tsr_value_double(d) : tsr_value_null();
}

/* ------------------------------------------------------------------------------------ */
/* Keyed layers (buckets, map inputs)                                                     */

static void keyed_clear(const tsr_agg_t *a, void *ir) {
    tsr__kmap_t *m = ir;
    const tsr_agg_t *in = a->inner;
    for (uint32_t i = 0; i < m->cap; i++) {
        tsr__kslot_t *s = tsr__kmap_slot(m, in->ir_size, i);
        if (s->used) in->ops->clear(in, tsr__kslot_val(s));
    }
    tsr__kmap_free(m, in->ir_size);
}

static int keyed_is_empty(const tsr_agg_t *a, const void *ir) {
    const tsr__kmap_t *m = ir;
    const tsr_agg_t *in = a->inner;
    for (uint32_t i = 0; i < m->cap; i++) {
        tsr__kslot_t *s = tsr__kmap_slot(m, in->ir_size, i);
        if (s->used && !in->ops->is_empty(in, tsr__kslot_val(s))) return 0;
    }
    return 1;
}

static void keyed_merge(const tsr_agg_t *a, void *dst, const void *src) {
    const tsr__kmap_t *ms = src;
    const tsr_agg_t *in = a->inner;
    for (uint32_t i = 0; i < ms->cap; i++) {
        tsr__kslot_t *s = tsr__kmap_slot(ms, in->ir_size, i);
        if (!s->used || in->ops->is_empty(in, tsr__kslot_val(s))) continue;
        void *d = tsr__kmap_get(dst, in->ir_size, s->key, s->klen, 1);
        in->ops->merge(in, d, tsr__kslot_val(s));
    }
}

/* Non-empty slots in key order. */
static tsr__kslot_t **keyed_live(const tsr_agg_t *a, const void *ir, size_t *n) {
    const tsr_agg_t *in = a->inner;
    size_t nall;
    tsr__kslot_t **v = tsr__kmap_sorted(ir, in->ir_size, &nall);
    size_t j = 0;
    for (size_t i = 0; i < nall; i++)
        if (!in->ops->is_empty(in, tsr__kslot_val(v[i]))) v[j++] = v[i];
    *n = j;
    return v;
}

/* A key whose sub-IR finalizes to null (e.g. SKEW of 2 values) is kept with a null value:
 * the bucket did see input. Only a map with no live key at all is null. */
static tsr_value_t keyed_finalize(const tsr_agg_t *a, const void *ir, tsr_arena_t *arena) {
    size_t n;
    tsr__kslot_t **v = keyed_live(a, ir, &n);
    if (n == 0) {
        free(v);
        return tsr_value_null();
    }
    tsr_value_t *items = tsr_arena_alloc(arena, 2 * n * sizeof(*items));
    for (size_t i = 0; i < n; i++) {
        items[2 * i] = tsr_value_string(tsr_arena_strndup(arena, v[i]->key, v[i]->klen),
                                        v[i]->klen);
        items[2 * i + 1] = a->inner->ops->finalize(a->inner, tsr__kslot_val(v[i]), arena);
    }
    free(v);
    return tsr_value_map(items, n);
}

static void keyed_encode(const tsr_agg_t *a, const void *ir, tsr_buf_t *out) {
    size_t n;
    tsr__kslot_t **v = keyed_live(a, ir, &n);
    tsr_buf_put_uvarint(out, n);
    for (size_t i = 0; i < n; i++) {
        tsr_buf_put_bytes(out, v[i]->key, v[i]->klen);
        a->inner->ops->encode(a->inner, tsr__kslot_val(v[i]), out);
    }
    free(v);
}

static int keyed_decode(const tsr_agg_t *a, void *ir, tsr_reader_t *r, tsr_error_t *err) {
    uint64_t n;
    if (tsr_get_uvarint(r, &n)) return tsr__agg_corrupt(err, a, "truncated key count");
    /* every entry takes at least 2 bytes (key length, payload) */
    if (n > tsr_reader_left(r) / 2)
        return tsr__agg_corrupt(err, a, "key count larger than the remaining bytes");
    const tsr_agg_t *in = a->inner;
    tsr__kmap_t *m = ir;
    for (uint64_t i = 0; i < n; i++) {
        const uint8_t *k;
        size_t kn;
        if (tsr_get_bytes(r, &k, &kn)) return tsr__agg_corrupt(err, a, "truncated key");
        uint32_t before = m->n;
        void *sub = tsr__kmap_get(m, in->ir_size, (const char *)k, kn, 1);
        if (m->n == before) return tsr__agg_corrupt(err, a, "duplicate key");
        int rc = in->ops->decode(in, sub, r, err);
        if (rc) return rc;
    }
    return 0;
}

/* Keyed layers have no update/del entries: rows reach them through tsr_agg_update (buckets)
 * and mapkey_apply (map inputs), which pick the sub-IR and call the inner layer. */
const tsr__agg_ops_t tsr__ops_keyed = {
    .ir_size = sizeof(tsr__kmap_t),
    .clear = keyed_clear,
    .is_empty = keyed_is_empty,
    .update = NULL,
    .del = NULL,
    .merge = keyed_merge,
    .finalize = keyed_finalize,
    .encode = keyed_encode,
    .decode = keyed_decode,
};

/* ------------------------------------------------------------------------------------ */
/* tsr__kmap_t                                                                            */

static void kmap_grow(tsr__kmap_t *m, size_t vsize) {
    uint32_t ncap = m->cap ? m->cap * 2 : 8;
    size_t stride = tsr__kmap_stride(vsize);
    uint8_t *ns = tsr_calloc(ncap, stride);
    for (uint32_t i = 0; i < m->cap; i++) {
        tsr__kslot_t *s = tsr__kmap_slot(m, vsize, i);
        if (!s->used) continue;
        uint32_t j = (uint32_t)s->hash & (ncap - 1);
        while (((tsr__kslot_t *)(ns + (size_t)j * stride))->used) j = (j + 1) & (ncap - 1);
        memcpy(ns + (size_t)j * stride, s, stride); /* relocates the sub-IR (invariant 2) */
    }
    free(m->slots);
    m->slots = ns;
    m->cap = ncap;
}

void *tsr__kmap_get(tsr__kmap_t *m, size_t vsize, const char *key, size_t klen, int create) {
    uint64_t h = tsr_hash_bytes(key, klen, TSR__AGG_SEED);
    if (m->cap) {
        uint32_t j = (uint32_t)h & (m->cap - 1);
        for (;;) {
            tsr__kslot_t *s = tsr__kmap_slot(m, vsize, j);
            if (!s->used) break;
            /* a 64-bit hash match is almost always the key; memcmp only confirms it */
            if (s->hash == h && s->klen == klen && (klen == 0 || memcmp(s->key, key, klen) == 0))
                return tsr__kslot_val(s);
            j = (j + 1) & (m->cap - 1);
        }
    }
    if (!create) return NULL;
    if ((uint64_t)(m->n + 1) * 4 > (uint64_t)m->cap * 3) kmap_grow(m, vsize); /* load <= 3/4 */
    uint32_t j = (uint32_t)h & (m->cap - 1);
    tsr__kslot_t *s;
    while ((s = tsr__kmap_slot(m, vsize, j))->used) j = (j + 1) & (m->cap - 1);
    s->used = 1;
    s->hash = h;
    s->klen = (uint32_t)klen;
    s->key = tsr_strndup(key, klen);
    m->n++;
    return tsr__kslot_val(s);
}

void tsr__kmap_free(tsr__kmap_t *m, size_t vsize) {
    for (uint32_t i = 0; i < m->cap; i++) {
        tsr__kslot_t *s = tsr__kmap_slot(m, vsize, i);
        if (s->used) free(s->key);
    }
    free(m->slots);
    m->slots = NULL;
    m->n = m->cap = 0;
}

static int kslot_cmp(const void *pa, const void *pb) {
    const tsr__kslot_t *a = *(tsr__kslot_t *const *)pa, *b = *(tsr__kslot_t *const *)pb;
    size_t n = a->klen < b->klen ? a->klen : b->klen;
    int c = n ? memcmp(a->key, b->key, n) : 0;
    if (c) return c;
    return (a->klen > b->klen) - (a->klen < b->klen);
}

tsr__kslot_t **tsr__kmap_sorted(const tsr__kmap_t *m, size_t vsize, size_t *n) {
    tsr__kslot_t **v = tsr_malloc((m->n + 1) * sizeof(*v));
    size_t j = 0;
    for (uint32_t i = 0; i < m->cap; i++) {
        tsr__kslot_t *s = tsr__kmap_slot(m, vsize, i);
        if (s->used) v[j++] = s;
    }
    qsort(v, j, sizeof(*v), kslot_cmp);
    *n = j;
    return v;
}

/* ------------------------------------------------------------------------------------ */
/* Owned values                                                                           */

static size_t round8(size_t n) { return (n + 7) & ~(size_t)7; }

static size_t deep_size(const tsr_value_t *v) {
    switch (v->kind) {
    case TSR_STRING: return round8(v->len);
    case TSR_LIST:
    case TSR_MAP: {
        size_t n = v->kind == TSR_LIST ? v->len : 2 * (size_t)v->len;
        size_t s = n * sizeof(tsr_value_t);
        for (size_t i = 0; i < n; i++) s += deep_size(&v->u.items[i]);
        return s;
    }
    default: return 0;
    }
}

static tsr_value_t deep_copy(const tsr_value_t *v, uint8_t **cur) {
    tsr_value_t r = *v;
    switch (v->kind) {
    case TSR_STRING:
        if (v->len) memcpy(*cur, v->u.s, v->len);
        r.u.s = (const char *)*cur;
        *cur += round8(v->len);
        break;
    case TSR_LIST:
    case TSR_MAP: {
        size_t n = v->kind == TSR_LIST ? v->len : 2 * (size_t)v->len;
        tsr_value_t *items = (tsr_value_t *)*cur;
        *cur += n * sizeof(tsr_value_t);
        for (size_t i = 0; i < n; i++) items[i] = deep_copy(&v->u.items[i], cur);
        r.u.items = items;
        break;
    }
    default: break;
    }
    return r;
}

void tsr__ov_set(tsr__ov_t *o, const tsr_value_t *v) {
    size_t need = deep_size(v);
    if (need == 0) {
        o->v = *v;
        if (v->kind == TSR_STRING) o->v.u.s = ""; /* empty string: point at static bytes */
        if (v->kind == TSR_LIST || v->kind == TSR_MAP) o->v.u.items = NULL;
        return;
    }
    if (need > o->cap) {
        size_t ncap = o->cap ? o->cap : 16;
        while (ncap < need) ncap *= 2;
        free(o->mem);
        o->mem = tsr_malloc(ncap);
        o->cap = ncap;
    }
    uint8_t *cur = o->mem;
    o->v = deep_copy(v, &cur);
}

void tsr__ov_free(tsr__ov_t *o) {
    free(o->mem);
    memset(o, 0, sizeof(*o));
}

void tsr__ov_swap(tsr__ov_t *a, tsr__ov_t *b) {
    tsr__ov_t t = *a;
    *a = *b;
    *b = t;
}

/* ------------------------------------------------------------------------------------ */
/* Key bytes                                                                              */

void tsr__key_bytes(const tsr_value_t *v, char *tmp, tsr_buf_t *spill, const char **p,
                    size_t *n) {
    switch (v->kind) {
    case TSR_STRING:
        *p = v->u.s ? v->u.s : "";
        *n = v->len;
        return;
    case TSR_BOOL:
        *p = v->u.b ? "true" : "false";
        *n = v->u.b ? 4 : 5;
        return;
    case TSR_LONG: {
        /* decimal, as tsr_value_key_string prints it, without snprintf's cost */
        char *e = tmp + 23, *s = e;
        uint64_t u = v->u.l < 0 ? 0 - (uint64_t)v->u.l : (uint64_t)v->u.l;
        do {
            *--s = (char)('0' + u % 10);
            u /= 10;
        } while (u);
        if (v->u.l < 0) *--s = '-';
        *p = s;
        *n = (size_t)(e - s);
        return;
    }
    default:
        tsr_buf_clear(spill);
        tsr_value_key_string(v, spill);
        *p = spill->len ? (const char *)spill->data : "";
        *n = spill->len;
        return;
    }
}
