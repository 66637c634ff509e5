/*
 * agg_coll.c — the collection IRs: the ranked lists (FIRST_K, LAST_K, TOP_K, BOTTOM_K,
 * UNIQUE_TOP_K, and BOUNDED_UNIQUE_COUNT), the exact distinct set (UNIQUE_COUNT) and
 * HISTOGRAM.
 *
 * Design.
 *   - A ranked list keeps at most k entries sorted best-first under a total order (rank_cmp):
 *       FIRST_K  (ts asc,  seq asc, value asc)
 *       LAST_K   (ts desc, seq asc, value asc)     so LAST_K[0] == LAST (SPEC §4)
 *       TOP_K    value desc        BOTTOM_K value asc      (duplicates kept)
 *       UNIQUE_TOP_K value desc, equal values kept once
 *       BOUNDED_UNIQUE_COUNT value asc, equal values kept once (finalizes to the length)
 *     Insertion is a binary search plus a memmove of at most k entries; when the list is
 *     full, the evicted worst entry's buffer is reused for the new value, so a steady stream
 *     allocates nothing. Because the order is total, the k best of a union equal the k best
 *     of the union of the parts' k best: merge is exact, commutative and associative.
 *   - BOUNDED_UNIQUE_COUNT = min(distinct, k) only needs to know whether k distinct values
 *     exist, so it keeps the k smallest distinct values: the k smallest distinct of a union
 *     are among the parts' k smallest, so merge is exact, and the state (hence the encoding)
 *     does not depend on arrival order. A full list rejects a value >= its last in one
 *     comparison; insertion costs O(k) moves, fine for the small k this op is meant for.
 *   - UNIQUE_COUNT's distinct set is an open-addressing table of owned values keyed by
 *     tsr_value_hash (O(1) per input at any size).
 *   - HISTOGRAM is a tsr__kmap_t from the value's canonical key string to an int64 count. The
 *     IR keeps every key's full count (k only truncates the finalized map), so merge and
 *     delete stay exact; a count that drops to 0 leaves the key in the table but out of the
 *     output and the encoding.
 *
 * Encodings are canonical (entries in rank order, set values and histogram keys sorted), so
 * equal states give equal bytes.
 */
#include "agg_int.h"

#include <stdlib.h>
#include <string.h>

/* ---- ranked lists ------------------------------------------------------------------- */

typedef struct {
    tsr__ov_t ov;
    int64_t ts;
    uint64_t seq;
} rank_entry_t;

typedef struct {
    rank_entry_t *e;
    uint32_t n, cap;
} rank_ir_t;

static int rank_cmp(const tsr_agg_t *a, const tsr_value_t *v, int64_t ts, uint64_t seq,
                    const rank_entry_t *b) {
    switch (a->op) {
    case TSR_OP_FIRST_K:
    case TSR_OP_LAST_K: {
        if (ts != b->ts) {
            int c = ts < b->ts ? -1 : 1;
            return a->op == TSR_OP_FIRST_K ? c : -c;
        }
        if (seq != b->seq) return seq < b->seq ? -1 : 1;
        return tsr_value_cmp(v, &b->ov.v);
    }
    case TSR_OP_BOTTOM_K:
    case TSR_OP_BOUNDED_UNIQUE_COUNT: return tsr_value_cmp(v, &b->ov.v);
    default: return -tsr_value_cmp(v, &b->ov.v); /* TOP_K, UNIQUE_TOP_K */
    }
}

static void rank_insert(const tsr_agg_t *a, rank_ir_t *r, const tsr_value_t *v, int64_t ts,
                        uint64_t seq) {
    uint32_t k = (uint32_t)a->k;
    if (r->n == k && rank_cmp(a, v, ts, seq, &r->e[r->n - 1]) >= 0) return; /* not better */
    /* upper bound: the first entry that ranks after v */
    uint32_t lo = 0, hi = r->n;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (rank_cmp(a, v, ts, seq, &r->e[mid]) >= 0) lo = mid + 1;
        else hi = mid;
    }
    if ((a->op == TSR_OP_UNIQUE_TOP_K || a->op == TSR_OP_BOUNDED_UNIQUE_COUNT) && lo > 0 &&
        rank_cmp(a, v, ts, seq, &r->e[lo - 1]) == 0)
        return; /* already present */
    tsr__ov_t spare = {0};
    if (r->n == k) {
        spare = r->e[k - 1].ov; /* evict the worst; recycle its buffer */
        r->n--;
    } else if (r->n == r->cap) {
        uint32_t ncap = r->cap ? r->cap * 2 : 4;
        if (ncap > k) ncap = k;
        r->e = tsr_realloc(r->e, (size_t)ncap * sizeof(*r->e));
        r->cap = ncap;
    }
    memmove(&r->e[lo + 1], &r->e[lo], (size_t)(r->n - lo) * sizeof(*r->e));
    rank_entry_t *e = &r->e[lo];
    e->ov = spare;
    tsr__ov_set(&e->ov, v);
    e->ts = ts;
    e->seq = seq;
    r->n++;
}

static void rank_clear(const tsr_agg_t *a, void *ir) {
    (void)a;
    rank_ir_t *r = ir;
    for (uint32_t i = 0; i < r->n; i++) tsr__ov_free(&r->e[i].ov);
    free(r->e);
    memset(r, 0, sizeof(*r));
}
static int rank_empty(const tsr_agg_t *a, const void *ir) {
    (void)a;
    return ((const rank_ir_t *)ir)->n == 0;
}
static void rank_update(const tsr_agg_t *a, void *ir, const tsr_value_t *v, int64_t ts,
                        uint64_t seq) {
    rank_insert(a, ir, v, ts, seq);
}
static void rank_merge(const tsr_agg_t *a, void *dst, const void *src) {
    const rank_ir_t *s = src;
    for (uint32_t i = 0; i < s->n; i++) rank_insert(a, dst, &s->e[i].ov.v, s->e[i].ts, s->e[i].seq);
}
static tsr_value_t rank_final(const tsr_agg_t *a, const void *ir, tsr_arena_t *arena) {
    (void)a;
    const rank_ir_t *r = ir;
    if (r->n == 0) return tsr_value_null();
    tsr_value_t *items = tsr_arena_alloc(arena, r->n * sizeof(*items));
    for (uint32_t i = 0; i < r->n; i++) items[i] = tsr_value_copy(&r->e[i].ov.v, arena);
    return tsr_value_list(items, r->n);
}

static int rank_timed(const tsr_agg_t *a) {
    return a->op == TSR_OP_FIRST_K || a->op == TSR_OP_LAST_K;
}

/* Payload: uvarint n (<= k), then n x ([svarint ts, uvarint seq] for FIRST_K/LAST_K, value),
 * best first. Decoding re-inserts, so a reordered or duplicated list is normalised, never
 * trusted. */
static void rank_encode(const tsr_agg_t *a, const void *ir, tsr_buf_t *out) {
    const rank_ir_t *r = ir;
    tsr_buf_put_uvarint(out, r->n);
    for (uint32_t i = 0; i < r->n; i++) {
        if (rank_timed(a)) {
            tsr_buf_put_svarint(out, r->e[i].ts);
            tsr_buf_put_uvarint(out, r->e[i].seq);
        }
        tsr_value_encode(&r->e[i].ov.v, out);
    }
}
static int rank_decode(const tsr_agg_t *a, void *ir, tsr_reader_t *r, tsr_error_t *err) {
    uint64_t n;
    if (tsr_get_uvarint(r, &n)) return tsr__agg_corrupt(err, a, "truncated entry count");
    if (n > (uint64_t)a->k) return tsr__agg_corrupt(err, a, "more entries than k");
    if (n > tsr_reader_left(r)) return tsr__agg_corrupt(err, a, "entry count exceeds the input");
    rank_ir_t *ri = ir;
    if (n > ri->cap) { /* one allocation instead of geometric growth; n <= k */
        ri->e = tsr_realloc(ri->e, (size_t)n * sizeof(*ri->e));
        ri->cap = (uint32_t)n;
    }
    tsr_arena_t ar;
    tsr_arena_init(&ar, 1024);
    int rc = 0;
    for (uint64_t i = 0; i < n && rc == 0; i++) {
        int64_t ts = 0;
        uint64_t seq = 0;
        tsr_value_t v;
        if (rank_timed(a) && (tsr_get_svarint(r, &ts) || tsr_get_uvarint(r, &seq)))
            rc = tsr__agg_corrupt(err, a, "truncated order key");
        else if (tsr_value_decode(r, &ar, &v))
            rc = tsr__agg_corrupt(err, a, "malformed value");
        else if (!(a->accept & (1u << v.kind)))
            rc = tsr__agg_corrupt(err, a, "value of a kind this aggregation never holds");
        else rank_insert(a, ir, &v, ts, seq);
        tsr_arena_reset(&ar);
    }
    tsr_arena_free(&ar);
    return rc;
}

const tsr__agg_ops_t tsr__ops_ranked = {
    sizeof(rank_ir_t), rank_clear, rank_empty, rank_update, NULL, rank_merge,
    rank_final, rank_encode, rank_decode,
};

static tsr_value_t bounded_final(const tsr_agg_t *a, const void *ir, tsr_arena_t *arena) {
    (void)a; (void)arena;
    const rank_ir_t *r = ir;
    return r->n ? tsr_value_long(r->n) : tsr_value_null(); /* n <= k by construction */
}

const tsr__agg_ops_t tsr__ops_bounded = {
    sizeof(rank_ir_t), rank_clear, rank_empty, rank_update, NULL, rank_merge,
    bounded_final, rank_encode, rank_decode,
};

/* ---- distinct sets ------------------------------------------------------------------ */

typedef struct {
    uint64_t hash;
    tsr__ov_t ov;   /* kind NULL = free slot */
} uniq_slot_t;

typedef struct {
    uniq_slot_t *s;
    uint32_t n, cap;
} uniq_ir_t;

static void uniq_place(uniq_ir_t *u, uniq_slot_t *slot) {
    uint32_t j = (uint32_t)slot->hash & (u->cap - 1);
    while (u->s[j].ov.v.kind != TSR_NULL) j = (j + 1) & (u->cap - 1);
    u->s[j] = *slot;
}

/* Grows the table (power-of-two capacity, load <= 3/4) to hold `want` values. */
static void uniq_reserve(uniq_ir_t *u, uint64_t want) {
    uint64_t cap = u->cap ? u->cap : 8;
    while (want * 4 > cap * 3) cap *= 2;
    if (cap == u->cap) return;
    uniq_ir_t g = {tsr_calloc((size_t)cap, sizeof(uniq_slot_t)), u->n, (uint32_t)cap};
    for (uint32_t i = 0; i < u->cap; i++)
        if (u->s[i].ov.v.kind != TSR_NULL) uniq_place(&g, &u->s[i]);
    free(u->s);
    *u = g;
}

static void uniq_insert(const tsr_agg_t *a, uniq_ir_t *u, const tsr_value_t *v) {
    (void)a;
    uint64_t h = tsr_value_hash(v, TSR__AGG_SEED);
    if (u->cap) {
        uint32_t j = (uint32_t)h & (u->cap - 1);
        while (u->s[j].ov.v.kind != TSR_NULL) {
            if (u->s[j].hash == h && tsr_value_equal(&u->s[j].ov.v, v)) return;
            j = (j + 1) & (u->cap - 1);
        }
    }
    uniq_reserve(u, (uint64_t)u->n + 1);
    uniq_slot_t slot = {h, {{0}, NULL, 0}};
    tsr__ov_set(&slot.ov, v);
    uniq_place(u, &slot);
    u->n++;
}

static void uniq_clear(const tsr_agg_t *a, void *ir) {
    (void)a;
    uniq_ir_t *u = ir;
    for (uint32_t i = 0; i < u->cap; i++) tsr__ov_free(&u->s[i].ov);
    free(u->s);
    memset(u, 0, sizeof(*u));
}
static int uniq_empty(const tsr_agg_t *a, const void *ir) {
    (void)a;
    return ((const uniq_ir_t *)ir)->n == 0;
}
static void uniq_update(const tsr_agg_t *a, void *ir, const tsr_value_t *v, int64_t ts,
                        uint64_t seq) {
    (void)ts; (void)seq;
    uniq_insert(a, ir, v);
}
static void uniq_merge(const tsr_agg_t *a, void *dst, const void *src) {
    const uniq_ir_t *s = src;
    uniq_reserve(dst, (uint64_t)((uniq_ir_t *)dst)->n + s->n); /* at most one rehash */
    for (uint32_t i = 0; i < s->cap; i++)
        if (s->s[i].ov.v.kind != TSR_NULL) uniq_insert(a, dst, &s->s[i].ov.v);
}
static tsr_value_t uniq_final(const tsr_agg_t *a, const void *ir, tsr_arena_t *arena) {
    (void)a; (void)arena;
    const uniq_ir_t *u = ir;
    return u->n ? tsr_value_long(u->n) : tsr_value_null();
}

static int val_ptr_cmp(const void *pa, const void *pb) {
    return tsr_value_cmp(*(const tsr_value_t *const *)pa, *(const tsr_value_t *const *)pb);
}

/* Payload: uvarint n, then the n values in tsr_value_cmp order. */
static void uniq_encode(const tsr_agg_t *a, const void *ir, tsr_buf_t *out) {
    (void)a;
    const uniq_ir_t *u = ir;
    const tsr_value_t **v = tsr_malloc((u->n + 1) * sizeof(*v));
    uint32_t j = 0;
    for (uint32_t i = 0; i < u->cap; i++)
        if (u->s[i].ov.v.kind != TSR_NULL) v[j++] = &u->s[i].ov.v;
    qsort(v, j, sizeof(*v), val_ptr_cmp);
    tsr_buf_put_uvarint(out, j);
    for (uint32_t i = 0; i < j; i++) tsr_value_encode(v[i], out);
    free(v);
}
static int uniq_decode(const tsr_agg_t *a, void *ir, tsr_reader_t *r, tsr_error_t *err) {
    uint64_t n;
    if (tsr_get_uvarint(r, &n)) return tsr__agg_corrupt(err, a, "truncated value count");
    /* each value takes at least 2 bytes (kind, payload) */
    if (n > tsr_reader_left(r) / 2 || n > UINT32_MAX / 2)
        return tsr__agg_corrupt(err, a, "value count exceeds the input");
    tsr_arena_t ar;
    tsr_arena_init(&ar, 1024);
    int rc = 0;
    uniq_ir_t *u = ir;
    uniq_reserve(u, n); /* n is bounded by the input size above */
    for (uint64_t i = 0; i < n && rc == 0; i++) {
        tsr_value_t v;
        uint32_t before = u->n;
        if (tsr_value_decode(r, &ar, &v))
            rc = tsr__agg_corrupt(err, a, "malformed value");
        else if (!(a->accept & (1u << v.kind)) || v.kind == TSR_MAP)
            rc = tsr__agg_corrupt(err, a, "value of a kind this aggregation never holds");
        else if (uniq_insert(a, u, &v), u->n == before)
            rc = tsr__agg_corrupt(err, a, "duplicate value");
        tsr_arena_reset(&ar);
    }
    tsr_arena_free(&ar);
    return rc;
}

const tsr__agg_ops_t tsr__ops_uniq = {
    sizeof(uniq_ir_t), uniq_clear, uniq_empty, uniq_update, NULL, uniq_merge,
    uniq_final, uniq_encode, uniq_decode,
};

/* ---- HISTOGRAM ---------------------------------------------------------------------- */

#define HIST_V sizeof(int64_t)

static void hist_add(tsr__kmap_t *m, const tsr_value_t *v, int64_t d) {
    char tmp[32];
    tsr_buf_t spill;
    tsr_buf_init(&spill);
    const char *p;
    size_t n;
    tsr__key_bytes(v, tmp, &spill, &p, &n);
    int64_t *c = tsr__kmap_get(m, HIST_V, p, n, 1);
    *c += d;
    tsr_buf_free(&spill);
}

static void hist_clear(const tsr_agg_t *a, void *ir) {
    (void)a;
    tsr__kmap_free(ir, HIST_V);
}
static int hist_empty(const tsr_agg_t *a, const void *ir) {
    (void)a;
    const tsr__kmap_t *m = ir;
    for (uint32_t i = 0; i < m->cap; i++) {
        tsr__kslot_t *s = tsr__kmap_slot(m, HIST_V, i);
        if (s->used && *(int64_t *)tsr__kslot_val(s) > 0) return 0;
    }
    return 1;
}
static void hist_update(const tsr_agg_t *a, void *ir, const tsr_value_t *v, int64_t ts,
                        uint64_t seq) {
    (void)a; (void)ts; (void)seq;
    hist_add(ir, v, 1);
}
static void hist_del(const tsr_agg_t *a, void *ir, const tsr_value_t *v, int64_t ts,
                     uint64_t seq) {
    (void)a; (void)ts; (void)seq;
    hist_add(ir, v, -1);
}
static void hist_merge(const tsr_agg_t *a, void *dst, const void *src) {
    (void)a;
    const tsr__kmap_t *s = src;
    for (uint32_t i = 0; i < s->cap; i++) {
        tsr__kslot_t *sl = tsr__kmap_slot(s, HIST_V, i);
        if (!sl->used) continue;
        int64_t c = *(int64_t *)tsr__kslot_val(sl);
        if (c == 0) continue;
        *(int64_t *)tsr__kmap_get(dst, HIST_V, sl->key, sl->klen, 1) += c;
    }
}

/* Live (count > 0) slots in key order. */
static tsr__kslot_t **hist_live(const void *ir, size_t *n) {
    size_t nall;
    tsr__kslot_t **v = tsr__kmap_sorted(ir, HIST_V, &nall);
    size_t j = 0;
    for (size_t i = 0; i < nall; i++)
        if (*(int64_t *)tsr__kslot_val(v[i]) > 0) v[j++] = v[i];
    *n = j;
    return v;
}

/* Count descending, then key ascending: the top-k order of SPEC §4 (ties by key). */
static int hist_top_cmp(const void *pa, const void *pb) {
    tsr__kslot_t *a = *(tsr__kslot_t *const *)pa, *b = *(tsr__kslot_t *const *)pb;
    int64_t ca = *(int64_t *)tsr__kslot_val(a), cb = *(int64_t *)tsr__kslot_val(b);
    if (ca != cb) return ca > cb ? -1 : 1;
    size_t n = a->klen < b->klen ? a->klen : b->klen;
    int c = n ? memcmp(a->key, b->key, n) : 0;
    if (c) return c;
    return (a->klen > b->klen) - (a->klen < b->klen);
}

static tsr_value_t hist_final(const tsr_agg_t *a, const void *ir, tsr_arena_t *arena) {
    size_t n;
    tsr__kslot_t **v = hist_live(ir, &n);
    if (n == 0) {
        free(v);
        return tsr_value_null();
    }
    if (a->k > 0 && n > (size_t)a->k) {
        qsort(v, n, sizeof(*v), hist_top_cmp);
        n = (size_t)a->k; /* the output map is unordered; keys stay in count order */
    }
    tsr_value_t *items = tsr_arena_alloc(arena, 2 * n * sizeof(*items));
    for (size_t i = 0; i < n; i++) {
        items[2 * i] = tsr_value_string(tsr_arena_strndup(arena, v[i]->key, v[i]->klen),
                                        v[i]->klen);
        items[2 * i + 1] = tsr_value_long(*(int64_t *)tsr__kslot_val(v[i]));
    }
    free(v);
    return tsr_value_map(items, n);
}

/* Payload: uvarint n, then n x (key bytes, uvarint count > 0) in key order. */
static void hist_encode(const tsr_agg_t *a, const void *ir, tsr_buf_t *out) {
    (void)a;
    size_t n;
    tsr__kslot_t **v = hist_live(ir, &n);
    tsr_buf_put_uvarint(out, n);
    for (size_t i = 0; i < n; i++) {
        tsr_buf_put_bytes(out, v[i]->key, v[i]->klen);
        tsr_buf_put_uvarint(out, (uint64_t)*(int64_t *)tsr__kslot_val(v[i]));
    }
    free(v);
}
static int hist_decode(const tsr_agg_t *a, void *ir, tsr_reader_t *r, tsr_error_t *err) {
    uint64_t n;
    if (tsr_get_uvarint(r, &n)) return tsr__agg_corrupt(err, a, "truncated key count");
    if (n > tsr_reader_left(r) / 2) return tsr__agg_corrupt(err, a, "key count exceeds the input");
    tsr__kmap_t *m = ir;
    for (uint64_t i = 0; i < n; i++) {
        const uint8_t *k;
        size_t kn;
        uint64_t c;
        if (tsr_get_bytes(r, &k, &kn) || tsr_get_uvarint(r, &c))
            return tsr__agg_corrupt(err, a, "truncated entry");
        if (c == 0 || c > (uint64_t)INT64_MAX) return tsr__agg_corrupt(err, a, "count out of range");
        uint32_t before = m->n;
        int64_t *cnt = tsr__kmap_get(m, HIST_V, (const char *)k, kn, 1);
        if (m->n == before) return tsr__agg_corrupt(err, a, "duplicate key");
        *cnt = (int64_t)c;
    }
    return 0;
}

const tsr__agg_ops_t tsr__ops_hist = {
    sizeof(tsr__kmap_t), hist_clear, hist_empty, hist_update, hist_del, hist_merge,
    hist_final, hist_encode, hist_decode,
};
