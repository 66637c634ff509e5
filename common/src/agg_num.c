/*
 * agg_num.c — the fixed-size aggregation IRs: COUNT, SUM, AVERAGE, VARIANCE / SKEW /
 * KURTOSIS, MIN / MAX and FIRST / LAST.
 *
 * Design.
 *   - COUNT and SUM of longs are a couple of integer adds; long sums wrap in uint64 (SPEC §4
 *     two's-complement overflow, without signed-overflow UB), so every merge order gives the
 *     same bits.
 *   - Double sums use Neumaier's compensated summation (a running sum s plus a compensation c
 *     holding the lost low-order bits). Merging adds src.s with compensation and src.c into
 *     c, so different splits and merge orders agree to ~1e-15 relative, and delete (adding
 *     -x) does not leave the error of the deleted terms behind.
 *   - Moments use the one-pass update of Welford extended to M3/M4 (Terriberry), and the
 *     pairwise combination of Chan et al. / Pébay for merge. All moments are central, so
 *     VARIANCE = M2/n, SKEW = sqrt(n) M3 / M2^1.5, KURTOSIS = n M4 / M2^2 - 3.
 *   - MIN/MAX/FIRST/LAST keep one owned copy of the winning value (tsr__ov_t), reusing its
 *     buffer, so numeric ones never allocate and string ones allocate only when a longer
 *     value wins.
 *
 * Invariants: an all-zero block is empty; n counts inputs minus deletes (COUNT, SUM, AVERAGE
 * are empty exactly when n == 0).
 */
#include "agg_int.h"

#include <math.h>
#include <string.h>

/* ---- COUNT -------------------------------------------------------------------------- */

typedef struct { int64_t n; } count_ir_t;

static void noop_clear(const tsr_agg_t *a, void *ir) { (void)a; (void)ir; }
static int count_empty(const tsr_agg_t *a, const void *ir) {
    (void)a;
    return ((const count_ir_t *)ir)->n == 0;
}
static void count_update(const tsr_agg_t *a, void *ir, const tsr_value_t *v, int64_t ts,
                         uint64_t seq) {
    (void)a; (void)v; (void)ts; (void)seq;
    ((count_ir_t *)ir)->n++;
}
static void count_del(const tsr_agg_t *a, void *ir, const tsr_value_t *v, int64_t ts,
                      uint64_t seq) {
    (void)a; (void)v; (void)ts; (void)seq;
    ((count_ir_t *)ir)->n--;
}
static void count_merge(const tsr_agg_t *a, void *dst, const void *src) {
    (void)a;
    ((count_ir_t *)dst)->n += ((const count_ir_t *)src)->n;
}
static tsr_value_t count_final(const tsr_agg_t *a, const void *ir, tsr_arena_t *arena) {
    (void)a; (void)arena;
    const count_ir_t *c = ir;
    return c->n == 0 ? tsr_value_null() : tsr_value_long(c->n);
}
static void count_encode(const tsr_agg_t *a, const void *ir, tsr_buf_t *out) {
    (void)a;
    tsr_buf_put_svarint(out, ((const count_ir_t *)ir)->n);
}
static int count_decode(const tsr_agg_t *a, void *ir, tsr_reader_t *r, tsr_error_t *err) {
    if (tsr_get_svarint(r, &((count_ir_t *)ir)->n))
        return tsr__agg_corrupt(err, a, "truncated count");
    return 0;
}

const tsr__agg_ops_t tsr__ops_count = {
    sizeof(count_ir_t), noop_clear, count_empty, count_update, count_del, count_merge,
    count_final, count_encode, count_decode,
};

/* ---- SUM ---------------------------------------------------------------------------- */

/* One layout for the three SUM flavours: the long part (wrapping), the double part
 * (Neumaier), the input count n and the count of double inputs nd (for input type ANY, the
 * output is a double as soon as one double was summed). */
typedef struct {
    uint64_t l;
    double s, c;
    int64_t n, nd;
} sum_ir_t;

static inline void neumaier_add(double *s, double *c, double x) {
    double t = *s + x;
    if (fabs(*s) >= fabs(x)) *c += (*s - t) + x;
    else *c += (x - t) + *s;
    *s = t;
}

static int sum_empty(const tsr_agg_t *a, const void *ir) {
    (void)a;
    return ((const sum_ir_t *)ir)->n == 0;
}

static void sum_long_update(const tsr_agg_t *a, void *ir, const tsr_value_t *v, int64_t ts,
                            uint64_t seq) {
    (void)a; (void)ts; (void)seq;
    sum_ir_t *s = ir;
    s->l += v->kind == TSR_LONG ? (uint64_t)v->u.l : (uint64_t)(v->u.b != 0);
    s->n++;
}
static void sum_long_del(const tsr_agg_t *a, void *ir, const tsr_value_t *v, int64_t ts,
                         uint64_t seq) {
    (void)a; (void)ts; (void)seq;
    sum_ir_t *s = ir;
    s->l -= v->kind == TSR_LONG ? (uint64_t)v->u.l : (uint64_t)(v->u.b != 0);
    s->n--;
}

static void sum_double_update(const tsr_agg_t *a, void *ir, const tsr_value_t *v, int64_t ts,
                              uint64_t seq) {
    (void)a; (void)ts; (void)seq;
    sum_ir_t *s = ir;
    neumaier_add(&s->s, &s->c, v->u.d);
    s->n++;
    s->nd++;
}
static void sum_double_del(const tsr_agg_t *a, void *ir, const tsr_value_t *v, int64_t ts,
                           uint64_t seq) {
    (void)a; (void)ts; (void)seq;
    sum_ir_t *s = ir;
    neumaier_add(&s->s, &s->c, -v->u.d);
    s->n--;
    s->nd--;
}

static void sum_any_update(const tsr_agg_t *a, void *ir, const tsr_value_t *v, int64_t ts,
                           uint64_t seq) {
    if (v->kind == TSR_DOUBLE) sum_double_update(a, ir, v, ts, seq);
    else sum_long_update(a, ir, v, ts, seq);
}
static void sum_any_del(const tsr_agg_t *a, void *ir, const tsr_value_t *v, int64_t ts,
                        uint64_t seq) {
    if (v->kind == TSR_DOUBLE) sum_double_del(a, ir, v, ts, seq);
    else sum_long_del(a, ir, v, ts, seq);
}

static void sum_merge(const tsr_agg_t *a, void *dst, const void *src) {
    (void)a;
    sum_ir_t *d = dst;
    const sum_ir_t *s = src;
    d->l += s->l;
    neumaier_add(&d->s, &d->c, s->s);
    d->c += s->c;
    d->n += s->n;
    d->nd += s->nd;
}

static tsr_value_t sum_final(const tsr_agg_t *a, const void *ir, tsr_arena_t *arena) {
    (void)arena;
    const sum_ir_t *s = ir;
    if (s->n == 0) return tsr_value_null();
    int out = a->sum_out;
    if (out == TSR_ANY) out = s->nd ? TSR_DOUBLE : TSR_LONG;
    if (out == TSR_LONG) return tsr_value_long((int64_t)s->l);
    /* a double column may also hold longs (coerced on input); with ANY, longs add exactly
     * into l and join the double total here */
    return tsr__agg_double_out(s->s + s->c + (double)(int64_t)s->l);
}

/* Payload: svarint n, svarint nd, a presence byte (bit 0: long part, bit 1: double part),
 * then the long part (svarint of the wrapped sum) and the double part (f64 s, f64 c). A long
 * SUM thus costs 4-12 bytes, a double SUM 19-21. */
static void sum_encode(const tsr_agg_t *a, const void *ir, tsr_buf_t *out) {
    (void)a;
    const sum_ir_t *s = ir;
    uint8_t parts = (uint8_t)((s->l != 0) | ((s->s != 0 || s->c != 0) << 1));
    tsr_buf_put_svarint(out, s->n);
    tsr_buf_put_svarint(out, s->nd);
    tsr_buf_put_u8(out, parts);
    if (parts & 1) tsr_buf_put_svarint(out, (int64_t)s->l);
    if (parts & 2) {
        tsr_buf_put_f64(out, s->s);
        tsr_buf_put_f64(out, s->c);
    }
}
static int sum_decode(const tsr_agg_t *a, void *ir, tsr_reader_t *r, tsr_error_t *err) {
    sum_ir_t *s = ir;
    uint8_t parts;
    int64_t l = 0;
    if (tsr_get_svarint(r, &s->n) || tsr_get_svarint(r, &s->nd) || tsr_get_u8(r, &parts))
        return tsr__agg_corrupt(err, a, "truncated header");
    if (parts > 3) return tsr__agg_corrupt(err, a, "unknown part flags");
    if ((parts & 1) && tsr_get_svarint(r, &l))
        return tsr__agg_corrupt(err, a, "truncated long sum");
    s->l = (uint64_t)l;
    if ((parts & 2) && (tsr_get_f64(r, &s->s) || tsr_get_f64(r, &s->c)))
        return tsr__agg_corrupt(err, a, "truncated double sum");
    return 0;
}

const tsr__agg_ops_t tsr__ops_sum_long = {
    sizeof(sum_ir_t), noop_clear, sum_empty, sum_long_update, sum_long_del, sum_merge,
    sum_final, sum_encode, sum_decode,
};
const tsr__agg_ops_t tsr__ops_sum_double = {
    sizeof(sum_ir_t), noop_clear, sum_empty, sum_double_update, sum_double_del, sum_merge,
    sum_final, sum_encode, sum_decode,
};
const tsr__agg_ops_t tsr__ops_sum_any = {
    sizeof(sum_ir_t), noop_clear, sum_empty, sum_any_update, sum_any_del, sum_merge,
    sum_final, sum_encode, sum_decode,
};
/* ---- AVERAGE ------------------------------------------------------------------------ */

typedef struct {
    double s, c;
    int64_t n;
} avg_ir_t;

static inline double num_of(const tsr_value_t *v) {
    return v->kind == TSR_DOUBLE ? v->u.d : (double)v->u.l;
}

static int avg_empty(const tsr_agg_t *a, const void *ir) {
    (void)a;
    return ((const avg_ir_t *)ir)->n == 0;
}
static void avg_update(const tsr_agg_t *a, void *ir, const tsr_value_t *v, int64_t ts,
                       uint64_t seq) {
    (void)a; (void)ts; (void)seq;
    avg_ir_t *s = ir;
    neumaier_add(&s->s, &s->c, num_of(v));
    s->n++;
}
static void avg_del(const tsr_agg_t *a, void *ir, const tsr_value_t *v, int64_t ts,
                    uint64_t seq) {
    (void)a; (void)ts; (void)seq;
    avg_ir_t *s = ir;
    neumaier_add(&s->s, &s->c, -num_of(v));
    s->n--;
}
static void avg_merge(const tsr_agg_t *a, void *dst, const void *src) {
    (void)a;
    avg_ir_t *d = dst;
    const avg_ir_t *s = src;
    neumaier_add(&d->s, &d->c, s->s);
    d->c += s->c;
    d->n += s->n;
}
static tsr_value_t avg_final(const tsr_agg_t *a, const void *ir, tsr_arena_t *arena) {
    (void)a; (void)arena;
    const avg_ir_t *s = ir;
    if (s->n == 0) return tsr_value_null();
    return tsr__agg_double_out((s->s + s->c) / (double)s->n);
}
static void avg_encode(const tsr_agg_t *a, const void *ir, tsr_buf_t *out) {
    (void)a;
    const avg_ir_t *s = ir;
    tsr_buf_put_svarint(out, s->n);
    tsr_buf_put_f64(out, s->s);
    tsr_buf_put_f64(out, s->c);
}
static int avg_decode(const tsr_agg_t *a, void *ir, tsr_reader_t *r, tsr_error_t *err) {
    avg_ir_t *s = ir;
    if (tsr_get_svarint(r, &s->n) || tsr_get_f64(r, &s->s) || tsr_get_f64(r, &s->c))
        return tsr__agg_corrupt(err, a, "truncated payload");
    return 0;
}

const tsr__agg_ops_t tsr__ops_average = {
    sizeof(avg_ir_t), noop_clear, avg_empty, avg_update, avg_del, avg_merge,
    avg_final, avg_encode, avg_decode,
};

/* ---- VARIANCE / SKEW / KURTOSIS ----------------------------------------------------- */

/* Central moments: mean and M_p = sum (x - mean)^p, p = 2..4. */
typedef struct {
    int64_t n;
    double mean, m2, m3, m4;
} mom_ir_t;

static int mom_empty(const tsr_agg_t *a, const void *ir) {
    (void)a;
    return ((const mom_ir_t *)ir)->n == 0;
}

/* Terriberry's extension of Welford's update: with n the new count and d = x - mean,
 *   M4 += d^4 (n-1)(n^2-3n+3)/n^3 + 6 d^2 M2/n^2 - 4 d M3/n
 *   M3 += d^3 (n-1)(n-2)/n^2 - 3 d M2/n
 *   M2 += d^2 (n-1)/n,   mean += d/n   (old M2, M3 on the right-hand sides). */
static void mom_update(const tsr_agg_t *a, void *ir, const tsr_value_t *v, int64_t ts,
                       uint64_t seq) {
    (void)a; (void)ts; (void)seq;
    mom_ir_t *m = ir;
    double x = num_of(v);
    double n1 = (double)m->n, n = n1 + 1;
    double d = x - m->mean, dn = d / n, dn2 = dn * dn, t1 = d * dn * n1;
    m->mean += dn;
    m->m4 += t1 * dn2 * (n * n - 3 * n + 3) + 6 * dn2 * m->m2 - 4 * dn * m->m3;
    m->m3 += t1 * dn * (n - 2) - 3 * dn * m->m2;
    m->m2 += t1;
    m->n++;
}

/* Pébay's pairwise combination (Chan et al. for M2), with d = mean_b - mean_a:
 *   M2 = M2a + M2b + d^2 na nb / n
 *   M3 = M3a + M3b + d^3 na nb (na - nb)/n^2 + 3 d (na M2b - nb M2a)/n
 *   M4 = M4a + M4b + d^4 na nb (na^2 - na nb + nb^2)/n^3
 *        + 6 d^2 (na^2 M2b + nb^2 M2a)/n^2 + 4 d (na M3b - nb M3a)/n */
static void mom_merge(const tsr_agg_t *a, void *dst, const void *src) {
    (void)a;
    mom_ir_t *x = dst;
    const mom_ir_t *y = src;
    if (y->n == 0) return;
    if (x->n == 0) {
        *x = *y;
        return;
    }
    double na = (double)x->n, nb = (double)y->n, n = na + nb;
    double d = y->mean - x->mean, d2 = d * d;
    double m2 = x->m2 + y->m2 + d2 * na * nb / n;
    double m3 = x->m3 + y->m3 + d2 * d * na * nb * (na - nb) / (n * n) +
                3 * d * (na * y->m2 - nb * x->m2) / n;
    double m4 = x->m4 + y->m4 + d2 * d2 * na * nb * (na * na - na * nb + nb * nb) / (n * n * n) +
                6 * d2 * (na * na * y->m2 + nb * nb * x->m2) / (n * n) +
                4 * d * (na * y->m3 - nb * x->m3) / n;
    x->mean += d * nb / n;
    x->m2 = m2;
    x->m3 = m3;
    x->m4 = m4;
    x->n += y->n;
}

static tsr_value_t mom_final(const tsr_agg_t *a, const void *ir, tsr_arena_t *arena) {
    (void)arena;
    const mom_ir_t *m = ir;
    double n = (double)m->n;
    switch (a->op) {
    case TSR_OP_VARIANCE:
        if (m->n == 0) return tsr_value_null();
        return tsr__agg_double_out(m->m2 / n);
    case TSR_OP_SKEW:
        if (m->n < 3 || m->m2 == 0) return tsr_value_null();
        return tsr__agg_double_out(sqrt(n) * m->m3 / pow(m->m2, 1.5));
    default: /* KURTOSIS, excess */
        if (m->n < 4 || m->m2 == 0) return tsr_value_null();
        return tsr__agg_double_out(n * m->m4 / (m->m2 * m->m2) - 3.0);
    }
}

/* Payload: uvarint n, then (n > 0) f64 mean, M2, and M3 for SKEW, M3 and M4 for KURTOSIS. */
static int mom_order(const tsr_agg_t *a) {
    return a->op == TSR_OP_VARIANCE ? 2 : a->op == TSR_OP_SKEW ? 3 : 4;
}
static void mom_encode(const tsr_agg_t *a, const void *ir, tsr_buf_t *out) {
    const mom_ir_t *m = ir;
    tsr_buf_put_uvarint(out, (uint64_t)m->n);
    if (m->n == 0) return;
    int ord = mom_order(a);
    tsr_buf_put_f64(out, m->mean);
    tsr_buf_put_f64(out, m->m2);
    if (ord >= 3) tsr_buf_put_f64(out, m->m3);
    if (ord >= 4) tsr_buf_put_f64(out, m->m4);
}
static int mom_decode(const tsr_agg_t *a, void *ir, tsr_reader_t *r, tsr_error_t *err) {
    mom_ir_t *m = ir;
    uint64_t n;
    if (tsr_get_uvarint(r, &n)) return tsr__agg_corrupt(err, a, "truncated count");
    if (n > (uint64_t)INT64_MAX) return tsr__agg_corrupt(err, a, "count out of range");
    if (n == 0) return 0;
    int ord = mom_order(a);
    if (tsr_get_f64(r, &m->mean) || tsr_get_f64(r, &m->m2) ||
        (ord >= 3 && tsr_get_f64(r, &m->m3)) || (ord >= 4 && tsr_get_f64(r, &m->m4))) {
        memset(m, 0, sizeof(*m));
        return tsr__agg_corrupt(err, a, "truncated moments");
    }
    if (m->m2 < 0 || (ord >= 4 && m->m4 < 0)) {
        memset(m, 0, sizeof(*m));
        return tsr__agg_corrupt(err, a, "negative even moment");
    }
    m->n = (int64_t)n;
    return 0;
}

const tsr__agg_ops_t tsr__ops_moments = {
    sizeof(mom_ir_t), noop_clear, mom_empty, mom_update, NULL, mom_merge,
    mom_final, mom_encode, mom_decode,
};

/* ---- MIN / MAX ---------------------------------------------------------------------- */

static void ov_clear(const tsr_agg_t *a, void *ir) {
    (void)a;
    tsr__ov_free(ir);
}
static int ov_empty(const tsr_agg_t *a, const void *ir) {
    (void)a;
    return ((const tsr__ov_t *)ir)->v.kind == TSR_NULL;
}

static inline int minmax_wins(const tsr_agg_t *a, const tsr_value_t *x, const tsr_value_t *cur) {
    int c = tsr_value_cmp(x, cur);
    return a->op == TSR_OP_MIN ? c < 0 : c > 0;
}
static void minmax_update(const tsr_agg_t *a, void *ir, const tsr_value_t *v, int64_t ts,
                          uint64_t seq) {
    (void)ts; (void)seq;
    tsr__ov_t *o = ir;
    if (o->v.kind == TSR_NULL || minmax_wins(a, v, &o->v)) tsr__ov_set(o, v);
}
static void minmax_merge(const tsr_agg_t *a, void *dst, const void *src) {
    const tsr__ov_t *s = src;
    if (s->v.kind != TSR_NULL) minmax_update(a, dst, &s->v, 0, 0);
}
static tsr_value_t ov_final(const tsr_agg_t *a, const void *ir, tsr_arena_t *arena) {
    (void)a;
    const tsr__ov_t *o = ir;
    if (o->v.kind == TSR_DOUBLE) return tsr__agg_double_out(o->v.u.d);
    return tsr_value_copy(&o->v, arena);
}
static void minmax_encode(const tsr_agg_t *a, const void *ir, tsr_buf_t *out) {
    (void)a;
    tsr_value_encode(&((const tsr__ov_t *)ir)->v, out); /* null when empty */
}

/* Decodes one value into an owned copy, checking its kind against what the leaf takes. */
static int ov_decode_value(const tsr_agg_t *a, tsr__ov_t *o, tsr_reader_t *r, int allow_null,
                           tsr_error_t *err) {
    tsr_arena_t ar;
    tsr_arena_init(&ar, 1024);
    tsr_value_t v;
    int rc = tsr_value_decode(r, &ar, &v);
    if (rc) rc = tsr__agg_corrupt(err, a, "malformed value");
    else if (v.kind == TSR_NULL ? !allow_null : !(a->accept & (1u << v.kind)))
        rc = tsr__agg_corrupt(err, a, "value of a kind this aggregation never holds");
    else tsr__ov_set(o, &v);
    tsr_arena_free(&ar);
    return rc;
}

static int minmax_decode(const tsr_agg_t *a, void *ir, tsr_reader_t *r, tsr_error_t *err) {
    return ov_decode_value(a, ir, r, 1, err);
}

const tsr__agg_ops_t tsr__ops_minmax = {
    sizeof(tsr__ov_t), ov_clear, ov_empty, minmax_update, NULL, minmax_merge,
    ov_final, minmax_encode, minmax_decode,
};

/* ---- FIRST / LAST ------------------------------------------------------------------- */

typedef struct {
    tsr__ov_t ov;
    int64_t ts;
    uint64_t seq;
} fl_ir_t;

/* SPEC §4: FIRST takes the smallest (ts, seq); LAST the largest ts and, on equal ts, the
 * earlier row (smaller seq). Equal (ts, seq) — the same row fed twice — keeps the smaller
 * value, so the result never depends on merge order. */
static int fl_wins(const tsr_agg_t *a, int64_t ts, uint64_t seq, const tsr_value_t *v,
                   const fl_ir_t *cur) {
    if (ts != cur->ts) return a->op == TSR_OP_FIRST ? ts < cur->ts : ts > cur->ts;
    if (seq != cur->seq) return seq < cur->seq;
    return tsr_value_cmp(v, &cur->ov.v) < 0;
}
static void fl_update(const tsr_agg_t *a, void *ir, const tsr_value_t *v, int64_t ts,
                      uint64_t seq) {
    fl_ir_t *f = ir;
    if (f->ov.v.kind == TSR_NULL || fl_wins(a, ts, seq, v, f)) {
        tsr__ov_set(&f->ov, v);
        f->ts = ts;
        f->seq = seq;
    }
}
static void fl_merge(const tsr_agg_t *a, void *dst, const void *src) {
    const fl_ir_t *s = src;
    if (s->ov.v.kind != TSR_NULL) fl_update(a, dst, &s->ov.v, s->ts, s->seq);
}
static void fl_encode(const tsr_agg_t *a, const void *ir, tsr_buf_t *out) {
    (void)a;
    const fl_ir_t *f = ir;
    if (f->ov.v.kind == TSR_NULL) {
        tsr_buf_put_u8(out, 0);
        return;
    }
    tsr_buf_put_u8(out, 1);
    tsr_buf_put_svarint(out, f->ts);
    tsr_buf_put_uvarint(out, f->seq);
    tsr_value_encode(&f->ov.v, out);
}
static int fl_decode(const tsr_agg_t *a, void *ir, tsr_reader_t *r, tsr_error_t *err) {
    fl_ir_t *f = ir;
    uint8_t has;
    if (tsr_get_u8(r, &has) || has > 1) return tsr__agg_corrupt(err, a, "bad presence byte");
    if (!has) return 0;
    if (tsr_get_svarint(r, &f->ts) || tsr_get_uvarint(r, &f->seq))
        return tsr__agg_corrupt(err, a, "truncated order key");
    return ov_decode_value(a, &f->ov, r, 0, err);
}

const tsr__agg_ops_t tsr__ops_firstlast = {
    sizeof(fl_ir_t), ov_clear, ov_empty, fl_update, NULL, fl_merge,
    ov_final, fl_encode, fl_decode,
};
