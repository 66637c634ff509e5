/*
 * agg_sketch.c — the approximate aggregations, as thin IRs over the sketches of sketch.h:
 *   APPROX_UNIQUE_COUNT                  HyperLogLog (lgK = k, default 8) over tsr_value_hash
 *   APPROX_PERCENTILE                    KLL (k, default 128) over doubles -> list<double>
 *   APPROX_HISTOGRAM_K / APPROX_FREQUENT_K / APPROX_HEAVY_HITTERS_K
 *                                        frequent items over canonical key strings -> the k
 *                                        most frequent as map<string,long>
 *
 * Design. The IR block holds one pointer; the sketch is created on the first input, so
 * init allocates nothing and an empty IR is a NULL pointer. Merge creates the destination
 * sketch when needed and defers to the sketch's merge (commutative within its bound).
 *
 * The frequent-items sketch gets capacity 4k counters (k = argMap.k, default 8): it keeps
 * exact counts while at most 8k distinct keys were seen (so "exact up to k distinct", SPEC
 * §4, holds with room to spare), then its counts undercount by at most n / (4k + 1), so the
 * k keys we report are ranked with an error a quarter of what k counters would give.
 *
 * Encoding: a presence byte (0 empty, 1 sketch) then the sketch's own encoding.
 */
#include "agg_int.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tsr/sketch.h"

typedef struct {
    void *p;
} sk_ir_t;

static int sk_empty(const tsr_agg_t *a, const void *ir) {
    (void)a;
    return ((const sk_ir_t *)ir)->p == NULL;
}

static int sk_decode_presence(const tsr_agg_t *a, tsr_reader_t *r, tsr_error_t *err, int *has) {
    uint8_t b;
    if (tsr_get_u8(r, &b) || b > 1) return tsr__agg_corrupt(err, a, "bad presence byte");
    *has = b;
    return 0;
}

/* Prefixes the sketch's own decode error with the op, keeping its code. */
static int sk_decode_failed(const tsr_agg_t *a, int rc, tsr_error_t *err) {
    if (err) tsr_error_prefix(err, "%s IR", tsr_op_name(a->op));
    return rc;
}

/* ---- APPROX_UNIQUE_COUNT ------------------------------------------------------------ */

static void hll_clear(const tsr_agg_t *a, void *ir) {
    (void)a;
    tsr_hll_free(((sk_ir_t *)ir)->p);
}
static void hll_update(const tsr_agg_t *a, void *ir, const tsr_value_t *v, int64_t ts,
                       uint64_t seq) {
    (void)ts; (void)seq;
    sk_ir_t *s = ir;
    if (!s->p) s->p = tsr_hll_new((int)a->k);
    tsr_hll_add(s->p, tsr_value_hash(v, TSR__AGG_SEED));
}
static void hll_merge(const tsr_agg_t *a, void *dst, const void *src) {
    const sk_ir_t *s = src;
    sk_ir_t *d = dst;
    if (!s->p) return;
    if (!d->p) d->p = tsr_hll_new((int)a->k);
    tsr_hll_merge(d->p, s->p); /* same lgK by construction (checked on decode) */
}
static tsr_value_t hll_final(const tsr_agg_t *a, const void *ir, tsr_arena_t *arena) {
    (void)a; (void)arena;
    const sk_ir_t *s = ir;
    if (!s->p) return tsr_value_null();
    double e = tsr_hll_estimate(s->p);
    if (!isfinite(e)) return tsr_value_null();
    return tsr_value_long(llround(e));
}
static void hll_encode(const tsr_agg_t *a, const void *ir, tsr_buf_t *out) {
    (void)a;
    const sk_ir_t *s = ir;
    tsr_buf_put_u8(out, s->p != NULL);
    if (s->p) tsr_hll_encode(s->p, out);
}
static int hll_decode(const tsr_agg_t *a, void *ir, tsr_reader_t *r, tsr_error_t *err) {
    int has = 0, rc = sk_decode_presence(a, r, err, &has);
    if (rc || !has) return rc;
    tsr_hll_t *h = NULL;
    if ((rc = tsr_hll_decode(r, &h, err))) return sk_decode_failed(a, rc, err);
    if (tsr_hll_lgk(h) != (int)a->k) {
        tsr_hll_free(h);
        return tsr__agg_corrupt(err, a, "sketch lgK differs from the aggregation's");
    }
    ((sk_ir_t *)ir)->p = h;
    return 0;
}

const tsr__agg_ops_t tsr__ops_hll = {
    sizeof(sk_ir_t), hll_clear, sk_empty, hll_update, NULL, hll_merge,
    hll_final, hll_encode, hll_decode,
};

/* ---- APPROX_PERCENTILE -------------------------------------------------------------- */

static void kll_clear(const tsr_agg_t *a, void *ir) {
    (void)a;
    tsr_kll_free(((sk_ir_t *)ir)->p);
}
static int kll_empty(const tsr_agg_t *a, const void *ir) {
    (void)a;
    const sk_ir_t *s = ir;
    return s->p == NULL || tsr_kll_n(s->p) == 0;
}
static void kll_update(const tsr_agg_t *a, void *ir, const tsr_value_t *v, int64_t ts,
                       uint64_t seq) {
    (void)ts; (void)seq;
    sk_ir_t *s = ir;
    double x = v->kind == TSR_DOUBLE ? v->u.d : (double)v->u.l;
    if (isnan(x)) return;
    if (!s->p) s->p = tsr_kll_new((int)a->k);
    tsr_kll_add(s->p, x);
}
static void kll_merge(const tsr_agg_t *a, void *dst, const void *src) {
    const sk_ir_t *s = src;
    sk_ir_t *d = dst;
    if (!s->p) return;
    if (!d->p) d->p = tsr_kll_new((int)a->k);
    tsr_kll_merge(d->p, s->p);
}
static tsr_value_t kll_final(const tsr_agg_t *a, const void *ir, tsr_arena_t *arena) {
    const sk_ir_t *s = ir;
    if (kll_empty(a, ir)) return tsr_value_null();
    double q[TSR_AGG_MAX_PERCENTILES];
    tsr_kll_quantiles(s->p, a->pct, a->n_pct, q); /* one sort for all ranks */
    tsr_value_t *items = tsr_arena_alloc(arena, a->n_pct * sizeof(*items));
    for (size_t i = 0; i < a->n_pct; i++) items[i] = tsr__agg_double_out(q[i]);
    return tsr_value_list(items, a->n_pct);
}
static void kll_encode(const tsr_agg_t *a, const void *ir, tsr_buf_t *out) {
    const sk_ir_t *s = ir;
    int has = !kll_empty(a, ir);
    tsr_buf_put_u8(out, (uint8_t)has);
    if (has) tsr_kll_encode(s->p, out);
}
static int kll_decode(const tsr_agg_t *a, void *ir, tsr_reader_t *r, tsr_error_t *err) {
    int has = 0, rc = sk_decode_presence(a, r, err, &has);
    if (rc || !has) return rc;
    tsr_kll_t *k = NULL;
    if ((rc = tsr_kll_decode(r, &k, err))) return sk_decode_failed(a, rc, err);
    ((sk_ir_t *)ir)->p = k;
    return 0;
}

const tsr__agg_ops_t tsr__ops_kll = {
    sizeof(sk_ir_t), kll_clear, kll_empty, kll_update, NULL, kll_merge,
    kll_final, kll_encode, kll_decode,
};

/* ---- APPROX_HISTOGRAM_K / APPROX_FREQUENT_K / APPROX_HEAVY_HITTERS_K ---------------- */

static int freq_capacity(const tsr_agg_t *a) {
    int64_t c = 4 * a->k;
    return (int)(c > TSR_FREQ_CAP_MAX ? TSR_FREQ_CAP_MAX : c);
}

static void freq_clear(const tsr_agg_t *a, void *ir) {
    (void)a;
    tsr_freq_free(((sk_ir_t *)ir)->p);
}
static void freq_update(const tsr_agg_t *a, void *ir, const tsr_value_t *v, int64_t ts,
                        uint64_t seq) {
    (void)ts; (void)seq;
    sk_ir_t *s = ir;
    if (!s->p) s->p = tsr_freq_new(freq_capacity(a));
    char tmp[32];
    tsr_buf_t spill;
    tsr_buf_init(&spill);
    const char *p;
    size_t n;
    tsr__key_bytes(v, tmp, &spill, &p, &n);
    tsr_freq_add(s->p, p, n, 1);
    tsr_buf_free(&spill);
}
static void freq_merge(const tsr_agg_t *a, void *dst, const void *src) {
    const sk_ir_t *s = src;
    sk_ir_t *d = dst;
    if (!s->p) return;
    if (!d->p) d->p = tsr_freq_new(freq_capacity(a));
    tsr_freq_merge(d->p, s->p);
}
static tsr_value_t freq_final(const tsr_agg_t *a, const void *ir, tsr_arena_t *arena) {
    const sk_ir_t *s = ir;
    if (!s->p) return tsr_value_null();
    tsr_freq_item_t *top = tsr_malloc((size_t)a->k * sizeof(*top));
    size_t n = tsr_freq_top(s->p, top, (size_t)a->k);
    tsr_value_t out = tsr_value_null();
    if (n) {
        tsr_value_t *items = tsr_arena_alloc(arena, 2 * n * sizeof(*items));
        for (size_t i = 0; i < n; i++) {
            items[2 * i] = tsr_value_string(tsr_arena_strndup(arena, top[i].key, top[i].len),
                                            top[i].len);
            items[2 * i + 1] = tsr_value_long(top[i].count);
        }
        out = tsr_value_map(items, n);
    }
    free(top);
    return out;
}
static void freq_encode(const tsr_agg_t *a, const void *ir, tsr_buf_t *out) {
    (void)a;
    const sk_ir_t *s = ir;
    tsr_buf_put_u8(out, s->p != NULL);
    if (s->p) tsr_freq_encode(s->p, out);
}
static int freq_decode(const tsr_agg_t *a, void *ir, tsr_reader_t *r, tsr_error_t *err) {
    int has = 0, rc = sk_decode_presence(a, r, err, &has);
    if (rc || !has) return rc;
    tsr_freq_t *f = NULL;
    if ((rc = tsr_freq_decode(r, &f, err))) return sk_decode_failed(a, rc, err);
    ((sk_ir_t *)ir)->p = f;
    return 0;
}

const tsr__agg_ops_t tsr__ops_freq = {
    sizeof(sk_ir_t), freq_clear, sk_empty, freq_update, NULL, freq_merge,
    freq_final, freq_encode, freq_decode,
};
