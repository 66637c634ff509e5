/*
 * tile_store_read.c — the read that answers a fetch for one (GroupBy, key) at q (the plan is
 * common/tile.h; records and codecs in tile_store_int.h).
 *
 * Plan → records. Each window's pieces map to records:
 *   batch part           the key's batch record (one for all windows): lifetime IR, or the
 *                        first suffix entry of the window's hop with start >= s
 *   1d tile at d         day record D(d), slot 24
 *   1h tile at t         day record D(floor(t/1d)*1d), slot (t - day)/1h
 *   5m tile at t         hour record H(floor(t/1h)*1h), slot (t - hour)/5m
 *   raw events [head,q)  hour record H(floor(head/1h)*1h), raw events of head's slot
 * The distinct records (typically 3-5: batch, today's D, the head's H, the H where a short
 * window starts) are fetched with one batched multi-get (pinned, no copy), then each is walked
 * once: a slot some window wants is decoded once and merged into every window that wants it
 * (a per record and window bitmask of slots). Nothing is allocated per read in steady state:
 * accumulators, masks and keys live in per-thread scratch that only grows.
 *
 * Without an upload (no B) there are no tiles to trust a window start to, so every window
 * reads the key's raw events (all hour records) — O(events), as before any upload.
 */
#include "tile_store_int.h"

#include <stdlib.h>

#include "tsr/tile.h"
#include "tsr/window.h"

typedef struct win_acc {
    size_t col;
    int64_t w, s;               /* window and its start at q */
    int64_t from;               /* stream part starts here: max(s, B) (B for lifetime) */
    int64_t hop;                /* 0 for lifetime */
    void *ir;
    unsigned char batch_done;   /* its batch record entry has been merged */
    unsigned char want;         /* scratch */
} win_acc_t;

typedef struct rec {
    int type;                   /* 'b', TSR__REC_DAY or TSR__REC_HOUR */
    int64_t start;
    size_t koff, klen;
    uint32_t any;               /* slots any window wants */
} rec_t;

/* Per-thread scratch, grown on demand and kept for the thread's life. */
typedef struct read_scratch {
    win_acc_t *acc;
    size_t capacc;
    uint8_t *irmem;
    size_t capir;
    rec_t *recs;
    size_t caprecs;
    uint32_t *masks;            /* [rec * nacc + window] */
    size_t capmasks;
    tsr_buf_t keys;
    tsr_buf_t pk;               /* unflushed slot lists of one record */
    const char **kp;
    size_t *kl;
    rocksdb_pinnableslice_t **vals;
    char **errs;
    size_t capget;
} read_scratch_t;

static pthread_key_t scratch_key;
static pthread_once_t scratch_once = PTHREAD_ONCE_INIT;

static void scratch_free(void *p) {
    read_scratch_t *x = p;
    if (!x) return;
    free(x->acc);
    free(x->irmem);
    free(x->recs);
    free(x->masks);
    tsr_buf_free(&x->keys);
    tsr_buf_free(&x->pk);
    free(x->kp);
    free(x->kl);
    free(x->vals);
    free(x->errs);
    free(x);
}
static void scratch_key_init(void) { pthread_key_create(&scratch_key, scratch_free); }

static read_scratch_t *scratch_get(void) {
    pthread_once(&scratch_once, scratch_key_init);
    read_scratch_t *x = pthread_getspecific(scratch_key);
    if (!x) {
        x = tsr_calloc(1, sizeof(*x));
        tsr_buf_init(&x->keys);
        tsr_buf_init(&x->pk);
        pthread_setspecific(scratch_key, x);
    }
    return x;
}

#define GROW(p, cap, need)                                                                         \
    do {                                                                                           \
        if ((need) > (cap)) {                                                                      \
            size_t c_ = (cap) ? (cap) : 8;                                                         \
            while (c_ < (need)) c_ *= 2;                                                           \
            (p) = tsr_realloc((p), c_ * sizeof(*(p)));                                             \
            (cap) = c_;                                                                            \
        }                                                                                          \
    } while (0)

typedef struct read_ctx {
    tsr__ts_gb_t *g;
    read_scratch_t *x;
    win_acc_t *acc;
    size_t nacc;
    size_t nrec;
    int64_t b, head, q;
    void *tmp;                  /* a scratch tile block */
    tsr_arena_t *arena;
    size_t kbase;               /* bytes of 't' gb \0 K in keys */
} read_ctx_t;

/* The index of record (type, start), added (with its key) when new. */
static size_t rec_of(read_ctx_t *c, int type, int64_t start) {
    read_scratch_t *x = c->x;
    for (size_t r = 0; r < c->nrec; r++)
        if (x->recs[r].type == type && x->recs[r].start == start) return r;
    GROW(x->recs, x->caprecs, c->nrec + 1);
    size_t need = (c->nrec + 1) * c->nacc;
    GROW(x->masks, x->capmasks, need);
    memset(x->masks + c->nrec * c->nacc, 0, c->nacc * sizeof(uint32_t));
    rec_t *r = &x->recs[c->nrec];
    r->type = type;
    r->start = start;
    r->any = 0;
    /* the key: 't' gb \0 K (the first kbase bytes of keys) + type + start */
    r->koff = x->keys.len;
    tsr_buf_reserve(&x->keys, c->kbase + 9);
    memcpy(x->keys.data + x->keys.len, x->keys.data, c->kbase); /* no realloc after reserve */
    x->keys.len += c->kbase;
    tsr_buf_putc(&x->keys, type);
    tsr__put_i64(&x->keys, start);
    r->klen = x->keys.len - r->koff;
    return c->nrec++;
}

static void want_mask(read_ctx_t *c, size_t win, int type, int64_t start, uint32_t mask) {
    size_t r = rec_of(c, type, start);
    c->x->masks[r * c->nacc + win] |= mask;
    c->x->recs[r].any |= mask;
}

static uint32_t bits(int from, int to) { /* bits [from, to) */
    return (to >= 32 ? ~UINT32_C(0) : (UINT32_C(1) << to) - 1) & ~((UINT32_C(1) << from) - 1);
}

/* Marks the tiles of tsr_tile_cover(a, b) (a, b multiples of 5 minutes) for window win, a run
 * at a time instead of a tile at a time: the same greedy cover — at t, a 1d tile when t is a
 * midnight and it fits, else the 1h tiles from t to the next midnight or the last full hour
 * before b, else the 5m tiles from t to the next full hour or b — so a window costs a few
 * steps plus one per whole day. */
static void want_cover(read_ctx_t *c, size_t win, int64_t a, int64_t b) {
    int64_t t = a;
    while (t < b) {
        int64_t day = tsr_floor_div(t, TSR_TILE_1D) * TSR_TILE_1D;
        if (t == day && t + TSR_TILE_1D <= b) {
            want_mask(c, win, TSR__REC_DAY, day, UINT32_C(1) << TSR__DAY_SLOT_ALL);
            t += TSR_TILE_1D;
            continue;
        }
        int64_t hour = tsr_floor_div(t, TSR_TILE_1H) * TSR_TILE_1H;
        if (t == hour && t + TSR_TILE_1H <= b) {
            int64_t end = tsr_floor_div(b, TSR_TILE_1H) * TSR_TILE_1H;
            if (end > day + TSR_TILE_1D) end = day + TSR_TILE_1D;
            want_mask(c, win, TSR__REC_DAY, day,
                      bits((int)((t - day) / TSR_TILE_1H), (int)((end - day) / TSR_TILE_1H)));
            t = end;
            continue;
        }
        int64_t end = hour + TSR_TILE_1H < b ? hour + TSR_TILE_1H : b;
        want_mask(c, win, TSR__REC_HOUR, hour,
                  bits((int)((t - hour) / TSR_TILE_5M), (int)((end - hour) / TSR_TILE_5M)));
        t = end;
    }
}

/* Inline readers for the record walks (the tsr_get_* functions are out of line). */
static inline int rd_uv(const uint8_t **pp, const uint8_t *end, uint64_t *v) {
    const uint8_t *p = *pp;
    uint64_t x = 0;
    for (int sh = 0; sh < 64 && p < end; sh += 7) {
        uint8_t b = *p++;
        x |= (uint64_t)(b & 127) << sh;
        if (b < 128) {
            *v = x;
            *pp = p;
            return 0;
        }
    }
    return -1;
}
static inline int rd_bytes(const uint8_t **pp, const uint8_t *end, const uint8_t **b, size_t *n) {
    uint64_t l;
    if (rd_uv(pp, end, &l) || l > (uint64_t)(end - *pp)) return -1;
    *b = *pp;
    *n = (size_t)l;
    *pp += l;
    return 0;
}

/* Decodes a tile value once and merges it into every window marked want. */
static int merge_wanted(read_ctx_t *c, const uint8_t *v, size_t n) {
    tsr__ts_gb_t *g = c->g;
    tsr_reader_t r;
    tsr_reader_init(&r, v, n);
    for (size_t col = 0; col < g->ncols; col++) {
        const uint8_t *p;
        size_t len;
        if (tsr_get_bytes(&r, &p, &len)) return TSR_ECORRUPT;
        int any = 0;
        for (size_t i = 0; i < c->nacc && !any; i++) any = c->acc[i].want && c->acc[i].col == col;
        if (!any) continue;
        const tsr_agg_t *a = g->cols[col].agg;
        void *t = tsr__tile_col(g, c->tmp, col);
        int rc = tsr_agg_decode(a, t, p, len, NULL);
        if (rc == 0)
            for (size_t i = 0; i < c->nacc; i++)
                if (c->acc[i].want && c->acc[i].col == col) tsr_agg_merge(a, c->acc[i].ir, t);
        tsr_agg_clear(a, t);
        tsr_agg_init(a, t);
        if (rc) return TSR_ECORRUPT;
    }
    return 0;
}

/* The key's batch record: lifetime tile, then per hop a section (count, byte length) of suffix
 * entries in start order; a section no window needs is skipped whole. */
static int apply_batch(read_ctx_t *c, const uint8_t *v, size_t n) {
    const uint8_t *p = v, *end = v + n, *tp;
    size_t len;
    if (rd_bytes(&p, end, &tp, &len)) return TSR_ECORRUPT;
    int any = 0;
    for (size_t i = 0; i < c->nacc; i++) {
        c->acc[i].want = c->acc[i].w == 0;
        any |= c->acc[i].want;
    }
    if (any && len && merge_wanted(c, tp, len)) return TSR_ECORRUPT;
    for (int kind = TSR_TILE_TAIL_5M; kind <= TSR_TILE_TAIL_1D; kind++) {
        int64_t hop = tsr_tile_kind_hop((tsr_tile_kind_t)kind);
        uint64_t cnt;
        const uint8_t *sec;
        size_t seclen;
        if (rd_uv(&p, end, &cnt) || rd_bytes(&p, end, &sec, &seclen)) return TSR_ECORRUPT;
        int need = 0;
        for (size_t i = 0; i < c->nacc; i++) need |= c->acc[i].hop == hop && c->acc[i].s < c->b;
        if (!need) continue;
        const uint8_t *q = sec, *qend = sec + seclen;
        for (uint64_t j = 0; j < cnt; j++) {
            uint64_t zz;
            if (rd_uv(&q, qend, &zz) || rd_bytes(&q, qend, &tp, &len)) return TSR_ECORRUPT;
            int64_t start = (int64_t)(zz >> 1) ^ -(int64_t)(zz & 1); /* zigzag */
            /* the first entry at or after s holds every tail tile of [s, B) */
            any = 0;
            for (size_t i = 0; i < c->nacc; i++) {
                win_acc_t *w = &c->acc[i];
                w->want = w->hop == hop && !w->batch_done && start >= w->s;
                if (w->want) w->batch_done = 1;
                any |= w->want;
            }
            if (any && merge_wanted(c, tp, len)) return TSR_ECORRUPT;
        }
    }
    return 0;
}

/* Raw events of one 5-minute slot starting at t0: those with ts < q go into every window whose
 * stream part they fall in. */
static int apply_raw(read_ctx_t *c, int64_t t0, const uint8_t *v, size_t n) {
    tsr__ts_gb_t *g = c->g;
    tsr_reader_t r;
    tsr_reader_init(&r, v, n);
    while (tsr_reader_left(&r)) {
        uint64_t dt, seq;
        if (tsr_get_uvarint(&r, &dt) || tsr_get_uvarint(&r, &seq)) return TSR_ECORRUPT;
        int64_t ts = t0 + (int64_t)dt;
        for (size_t col = 0; col < g->ncols; col++) {
            tsr_value_t in, bk = tsr_value_null();
            int bucketed = g->cols[col].bucket_slot >= 0;
            if (tsr_value_decode(&r, c->arena, &in) || (bucketed && tsr_value_decode(&r, c->arena, &bk)))
                return TSR_ECORRUPT;
            if (ts >= c->q) continue;
            for (size_t i = 0; i < c->nacc; i++) {
                win_acc_t *w = &c->acc[i];
                if (w->col != col || ts < w->from) continue;
                tsr_agg_update(g->cols[col].agg, w->ir, &in, bucketed ? &bk : NULL, ts, seq);
            }
        }
    }
    return 0;
}

/* A day or hour record: the wanted slots' tiles; raw events of the slot raw_slot (-1: none,
 * -2: every slot, for reads without an upload). */
static int apply_slots(read_ctx_t *c, size_t ri, const uint8_t *v, size_t n, int raw_slot) {
    const rec_t *rec = &c->x->recs[ri];
    int hour = rec->type == TSR__REC_HOUR;
    const uint8_t *p = v, *end = v + n;
    while (p < end) {
        uint8_t slot = *p++;
        const uint8_t *tp, *rp = NULL;
        size_t tl, rl = 0;
        if (rd_bytes(&p, end, &tp, &tl)) return TSR_ECORRUPT;
        if (hour && rd_bytes(&p, end, &rp, &rl)) return TSR_ECORRUPT;
        if (slot >= (hour ? TSR__HOUR_SLOTS : TSR__DAY_SLOTS)) return TSR_ECORRUPT;
        if (tl && (rec->any >> slot & 1)) {
            const uint32_t *m = c->x->masks + ri * c->nacc;
            for (size_t i = 0; i < c->nacc; i++) c->acc[i].want = (unsigned char)(m[i] >> slot & 1);
            if (merge_wanted(c, tp, tl)) return TSR_ECORRUPT;
        }
        if (rl && (raw_slot == -2 || raw_slot == slot) &&
            apply_raw(c, rec->start + (int64_t)slot * TSR_TILE_5M, rp, rl))
            return TSR_ECORRUPT;
    }
    return 0;
}

typedef struct raw_scan {
    read_ctx_t *c;
    size_t plen;
    int rc;
} raw_scan_t;

static void on_pend_hour(void *ud, const uint8_t *k, size_t kl, const uint8_t *v, size_t vl) {
    raw_scan_t *rs = ud;
    if (rs->rc || kl != rs->plen + 8) return;
    rs->c->x->recs[0].start = tsr__get_i64(k + rs->plen);
    rs->rc = apply_slots(rs->c, 0, v, vl, -2);
}

/* No upload: every hour record of the key, raw events only — stored and unflushed, read at one
 * snapshot that also tells whether a flush in flight has landed. */
static int read_all_raw(tsr_tile_store_t *s, read_ctx_t *c) {
    tsr__ts_gb_t *g = c->g;
    read_scratch_t *x = c->x;
    tsr_buf_t lo;
    tsr_buf_init(&lo);
    tsr_buf_append(&lo, x->keys.data, c->kbase);
    tsr_buf_putc(&lo, TSR__REC_HOUR);
    size_t plen = lo.len;
    GROW(x->recs, x->caprecs, 1);
    x->recs[0].type = TSR__REC_HOUR;
    x->recs[0].any = 0;
    c->nrec = 1;
    pthread_rwlock_rdlock(&g->pend_lock);
    const tsr__pend_t *imm = g->imm;
    uint64_t imm_gen = g->gen;
    const rocksdb_snapshot_t *snap = rocksdb_create_snapshot(s->db);
    rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
    rocksdb_readoptions_set_snapshot(ro, snap);
    int rc = 0;
    if (imm) {
        tsr_buf_t mk;
        tsr_buf_init(&mk);
        tsr__key_prefix(&mk, 'm', g->name, g->nlen);
        tsr_buf_putc(&mk, 'F');
        char *e = NULL;
        size_t vl;
        char *v = rocksdb_get_cf(s->db, ro, s->cf[TSR__CF_STREAM], (const char *)mk.data, mk.len,
                                 &vl, &e);
        if (e) {
            free(e);
            rc = TSR_EIO;
        }
        if (v && vl == 8 && tsr__get_be64((const uint8_t *)v) >= imm_gen) imm = NULL;
        rocksdb_free(v);
        tsr_buf_free(&mk);
    }
    rocksdb_iterator_t *it = rocksdb_create_iterator_cf(s->db, ro, s->cf[TSR__CF_STREAM]);
    for (rocksdb_iter_seek(it, (const char *)lo.data, lo.len); rocksdb_iter_valid(it) && rc == 0;
         rocksdb_iter_next(it)) {
        size_t kl, vl;
        const char *k = rocksdb_iter_key(it, &kl);
        if (kl != plen + 8 || memcmp(k, lo.data, plen) != 0) break;
        x->recs[0].start = tsr__get_i64((const uint8_t *)k + plen);
        if (x->recs[0].start >= c->q) break;
        const char *v = rocksdb_iter_value(it, &vl);
        rc = apply_slots(c, 0, (const uint8_t *)v, vl, -2);
    }
    char *e = NULL;
    rocksdb_iter_get_error(it, &e);
    if (e) {
        free(e);
        rc = TSR_EIO;
    }
    rocksdb_iter_destroy(it);
    raw_scan_t rs = {c, plen, rc};
    tsr__pend_scan(g, g->act, lo.data, plen, on_pend_hour, &rs);
    if (imm) tsr__pend_scan(g, imm, lo.data, plen, on_pend_hour, &rs);
    rc = rs.rc;
    pthread_rwlock_unlock(&g->pend_lock);
    rocksdb_readoptions_destroy(ro);
    rocksdb_release_snapshot(s->db, snap);
    tsr_buf_free(&lo);
    return rc;
}

int tsr_tile_store_read(tsr_tile_store_t *s, const char *gb, const void *key, size_t klen,
                        int64_t q, tsr_value_t *out, tsr_arena_t *arena, tsr_error_t *err) {
    tsr__ts_gb_t *g = tsr__ts_lookup(s, gb, err);
    if (!g) return TSR_ENOTFOUND;
    if (klen > 0xffff) return tsr_error_set(err, TSR_EINVAL, "key longer than 65535 bytes");
    int64_t b = __atomic_load_n(&g->batch_end, __ATOMIC_ACQUIRE);
    if (b != INT64_MIN && q < b)
        return tsr_error_set(err, TSR_EINVAL, "at_millis %lld is before the uploaded batch end %lld",
                             (long long)q, (long long)b);
    read_scratch_t *x = scratch_get();
    size_t nacc = 0;
    for (size_t c = 0; c < g->ncols; c++) nacc += g->cols[c].nwin;
    GROW(x->acc, x->capacc, nacc + 1);
    size_t irtot = g->ir_size;
    for (size_t c = 0; c < g->ncols; c++) irtot += g->cols[c].nwin * tsr_agg_ir_size(g->cols[c].agg);
    GROW(x->irmem, x->capir, irtot);
    read_ctx_t ctx = {g, x, x->acc, nacc, 0, b, tsr_floor_div(q, TSR_TILE_5M) * TSR_TILE_5M, q,
                      x->irmem, arena, 0};
    tsr__tile_init(g, ctx.tmp);
    uint8_t *irp = x->irmem + g->ir_size;
    size_t i = 0;
    for (size_t c = 0; c < g->ncols; c++)
        for (size_t wi = 0; wi < g->cols[c].nwin; wi++, i++) {
            win_acc_t *w = &x->acc[i];
            w->col = c;
            w->w = g->cols[c].windows[wi];
            w->s = w->w ? tsr_window_start(q, w->w) : INT64_MIN;
            w->from = w->s > b ? w->s : b; /* b == INT64_MIN: from = s */
            w->hop = w->w ? tsr_window_hop(w->w) : 0;
            w->ir = irp;
            irp += tsr_agg_ir_size(g->cols[c].agg);
            tsr_agg_init(g->cols[c].agg, w->ir);
            w->batch_done = 0;
            w->want = 0;
        }
    /* keys: 't' gb \0 K first (the base of every stream record key) */
    tsr__key_prefix(&x->keys, 't', g->name, g->nlen);
    tsr__put_key(&x->keys, key, klen);
    ctx.kbase = x->keys.len;
    int rc = 0;
    if (b == INT64_MIN) {
        rc = read_all_raw(s, &ctx);
    } else {
        /* record 0: the batch record 'b' gb \0 B K */
        GROW(x->recs, x->caprecs, 1);
        GROW(x->masks, x->capmasks, nacc + 1);
        x->recs[0] = (rec_t){'b', b, x->keys.len, 0, 0};
        tsr_buf_putc(&x->keys, 'b');
        tsr_buf_append(&x->keys, g->name, g->nlen);
        tsr_buf_putc(&x->keys, 0);
        tsr__put_i64(&x->keys, b);
        tsr__put_key(&x->keys, key, klen);
        x->recs[0].klen = x->keys.len - x->recs[0].koff;
        ctx.nrec = 1;
        /* the stream tiles of each window's cover of [from, head) */
        for (i = 0; i < nacc; i++)
            if (x->acc[i].from < ctx.head) want_cover(&ctx, i, x->acc[i].from, ctx.head);
        /* the raw events of [head, q) */
        int64_t hh = tsr_floor_div(ctx.head, TSR_TILE_1H) * TSR_TILE_1H;
        size_t head_rec = q > ctx.head ? rec_of(&ctx, TSR__REC_HOUR, hh) : SIZE_MAX;
        int head_slot = (int)((ctx.head - hh) / TSR_TILE_5M);
        /* the write-back state: held shared until the read is done; when a flush is in
         * flight (imm), the flush marker read with the records tells whether it landed */
        pthread_rwlock_rdlock(&g->pend_lock);
        const tsr__pend_t *imm = g->imm;
        uint64_t imm_gen = g->gen;
        size_t marker = SIZE_MAX;
        if (imm) {
            GROW(x->recs, x->caprecs, ctx.nrec + 1);
            marker = ctx.nrec++;
            x->recs[marker] = (rec_t){'F', 0, x->keys.len, 0, 0};
            tsr__key_prefix(&ctx.x->pk, 'm', g->name, g->nlen);
            tsr_buf_putc(&ctx.x->pk, 'F');
            tsr_buf_append(&x->keys, ctx.x->pk.data, ctx.x->pk.len);
            x->recs[marker].klen = x->keys.len - x->recs[marker].koff;
        }
        size_t nrec = ctx.nrec;
        if (nrec > x->capget) {
            x->capget = 2 * nrec;
            x->kp = tsr_realloc(x->kp, x->capget * sizeof(*x->kp));
            x->kl = tsr_realloc(x->kl, x->capget * sizeof(size_t));
            x->vals = tsr_realloc(x->vals, x->capget * sizeof(*x->vals));
            x->errs = tsr_realloc(x->errs, x->capget * sizeof(char *));
        }
        for (size_t r = 0; r < nrec; r++) {
            x->kp[r] = (const char *)x->keys.data + x->recs[r].koff;
            x->kl[r] = x->recs[r].klen;
        }
        /* the batch record (batch family: one pinned get), then the stream records and the
         * marker (stream family — one multi-get, so the marker and the records it describes
         * are read at one point in time) */
        x->errs[0] = NULL;
        x->vals[0] = rocksdb_get_pinned_cf(s->db, s->ro, s->cf[TSR__CF_BATCH], x->kp[0], x->kl[0],
                                           &x->errs[0]);
        if (nrec > 1)
            rocksdb_batched_multi_get_cf(s->db, s->ro, s->cf[TSR__CF_STREAM], nrec - 1, x->kp + 1,
                                         x->kl + 1, x->vals + 1, x->errs + 1, 0);
        if (imm && x->vals[marker]) { /* the flush landed: imm is in the records read */
            size_t vl;
            const uint8_t *v = (const uint8_t *)rocksdb_pinnableslice_value(x->vals[marker], &vl);
            if (vl == 8 && tsr__get_be64(v) >= imm_gen) imm = NULL;
        }
        for (size_t r = 0; r < nrec; r++) {
            if (r == marker) {
                if (x->vals[r]) rocksdb_pinnableslice_destroy(x->vals[r]);
                free(x->errs[r]);
                continue;
            }
            if (rc == 0 && r > 0) { /* the record's unflushed part */
                const uint8_t *k = x->keys.data + x->recs[r].koff;
                tsr_buf_clear(&x->pk);
                tsr__pend_encode(g, g->act, k, x->recs[r].klen, &x->pk);
                if (imm) tsr__pend_encode(g, imm, k, x->recs[r].klen, &x->pk);
                if (x->pk.len) rc = apply_slots(&ctx, r, x->pk.data, x->pk.len, r == head_rec ? head_slot : -1);
            }
            if (x->errs[r]) {
                if (rc == 0) rc = tsr_error_set(err, TSR_EIO, "tile store read of %s: %s", gb, x->errs[r]);
                free(x->errs[r]);
            }
            if (!x->vals[r]) continue;
            size_t vl;
            const uint8_t *v = (const uint8_t *)rocksdb_pinnableslice_value(x->vals[r], &vl);
            if (rc == 0)
                rc = r == 0 ? apply_batch(&ctx, v, vl)
                            : apply_slots(&ctx, r, v, vl, r == head_rec ? head_slot : -1);
            rocksdb_pinnableslice_destroy(x->vals[r]);
        }
        pthread_rwlock_unlock(&g->pend_lock);
    }
    for (i = 0; i < nacc; i++) {
        const tsr_agg_t *a = g->cols[x->acc[i].col].agg;
        if (rc == 0) out[i] = tsr_agg_finalize(a, x->acc[i].ir, arena);
        tsr_agg_clear(a, x->acc[i].ir);
    }
    tsr__tile_clear(g, ctx.tmp);
    if (rc && err && err->code == 0) tsr_error_set(err, rc, "tile store read of %s failed (corrupt record)", gb);
    return rc;
}
