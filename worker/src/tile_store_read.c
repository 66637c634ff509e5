/*
 * tile_store_read.c — the reads that answer a fetch: (GroupBy, key) at q, one or many at once
 * (the plan is common/tile.h; records and codecs in tile_store_int.h).
 *
 * Plan → records. Each window's pieces map to records:
 *   batch part           the key's batch record (one for all windows): lifetime IR, or the
 *                        first suffix entry of the window's hop with start >= s
 *   1d tile at d         day record D(d), slot 24
 *   1h tile at t         day record D(floor(t/1d)*1d), slot (t - day)/1h
 *   5m tile at t         hour record H(floor(t/1h)*1h), slot (t - hour)/5m
 *   raw events [head,q)  hour record H(floor(head/1h)*1h), raw events of head's slot
 * The distinct records of a read (typically 3-5: batch, today's D, the head's H, the H where a
 * short window starts) are walked once each: a slot some window wants is decoded once and
 * merged into every window that wants it (a per record and window bitmask of slots).
 *
 * Many reads at once (tsr_tile_store_read_many; a single read is a call with n = 1), in four
 * phases, by chunks of 64 reads (phases 2-4) so that RocksDB sees many keys together:
 *   1. plan     every read's windows, records, slot masks and keys, into per-thread scratch
 *               (indices, not pointers: the arrays grow while planning)
 *   2. batch    a batched multi-get of the reads' batch records (batch family; needs no
 *               lock: batch records do not depend on the write-back state)
 *   3. stream   the read lock of each GroupBy involved (in address order: no lock-order
 *               cycle between callers), then one batched multi-get of every stream record
 *               and, per GroupBy with a flush in flight, its flush marker (stream family: the
 *               marker and the records it describes are read at one point in time; the
 *               marker 't' gb \0 \0\0\0 'F' sorts just before the GroupBy's records). A store
 *               written before session 6 has its last marker under the old key 'm' gb \0 'F',
 *               which no reader needs: a flush in flight has a newer generation than any flush
 *               of the old code (register starts from it), and only the new key says it landed
 *   4. merge    read by read, in the call's order (by batch record key: GroupBy, key; the
 *               multi-gets' keys are then laid out sorted, and RocksDB is told so): batch
 *               record, then per stream record its unflushed slots (the write-back table's
 *               live tile blocks and raw event chains, merged directly, no encoding) and its
 *               stored value — the same order for a read
 *               whatever else is in the call, so results equal n single reads bit for bit; a
 *               GroupBy's lock is released after its last read.
 * Values are pinned slices (no copy). Nothing is allocated per read in steady state besides
 * RocksDB's own: accumulators, masks, keys and value arrays live in per-thread scratch that
 * only grows. Each read has its own status: one failed read (unknown GroupBy, q before B, an
 * I/O error on its records, a corrupt record) does not fail the others.
 *
 * Without an upload (no B) there are no tiles to trust a window start to, so every window
 * reads the key's raw events (all hour records) — O(events), as before any upload; such reads
 * are done one by one before the batched ones.
 */
#include "tile_store_int.h"

#include <stdarg.h>
#include <stdio.h>
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
    size_t koff, klen;          /* its key in scratch keys */
    size_t vi;                  /* its value in the multi-get arrays */
    uint64_t h;                 /* its write-back table hash (stream records) */
    uint32_t any;               /* slots any window wants */
} rec_t;

/* One read of a call, planned. Its windows are acc[acc0 ..], its records recs[rec0 ..] (the
 * first is the batch record), its masks masks[mask0 + r * nacc + window]. */
typedef struct plan {
    tsr__ts_gb_t *g;
    size_t gi;                  /* its GroupBy in the call's lock table */
    int64_t b, head;
    int64_t ver;                /* the batch version id its batch record is read under */
    int stale;                  /* its batch record was gone: ver was switched meanwhile */
    size_t acc0, nacc, rec0, nrec, mask0;
    size_t head_rec;            /* record with the raw events of [head, q); SIZE_MAX: none */
    int head_slot;
    int ok;                     /* planned (else its status is set) */
} plan_t;

/* A GroupBy of a call: its write-back state, held shared from the stream multi-get until its
 * last read is merged. */
typedef struct gb_lock {
    tsr__ts_gb_t *g;
    const tsr__pend_t *imm;     /* a flush in flight that has not landed, else NULL */
    uint64_t gen;
    size_t marker_vi;           /* its flush marker in the multi-get arrays; SIZE_MAX: none */
    size_t mkoff;               /* the marker's key in scratch keys */
    size_t last;                /* its last read: released after it */
} gb_lock_t;

/* A planned read while the reads are ordered: its batch record key 'b' gb \0 B K as words that
 * compare in the key's byte order — the GroupBy's rank in name order, B's 8 bytes, K's first 16
 * bytes (zero-padded) big-endian — and the key itself for a tie (then the request order j). */
typedef struct sort_ent {
    uint64_t w[4];
    const uint8_t *k;           /* the whole key */
    size_t kl;
    size_t j;
} sort_ent_t;

/* Per-thread scratch, grown on demand and kept for the thread's life. */
typedef struct read_scratch {
    win_acc_t *acc;
    size_t capacc;
    uint8_t *irmem;
    size_t capir;
    rec_t *recs;
    size_t caprecs;
    uint32_t *masks;
    size_t capmasks;
    plan_t *plans;
    size_t capplans;
    gb_lock_t *gls;
    size_t capgls;
    gb_lock_t **glord;
    size_t capglord;
    size_t *ord;                /* planned reads in the order they are fetched and merged */
    size_t capord;
    sort_ent_t *se;             /* the planned reads while ordering ... */
    size_t capse;
    sort_ent_t *se2;            /* ... and the merge sort's other half */
    size_t capse2;
    tsr__ts_gb_t **rank;        /* the call's GroupBys in name order */
    size_t caprank;
    tsr_buf_t keys;
    const char **kp;
    size_t *kl;
    rocksdb_pinnableslice_t **vals;
    char **errs;
    const uint8_t **cv;         /* records found in the batch or stream record cache ... */
    size_t *cl;                 /* ... and their lengths (cv NULL: not from a cache) */
    unsigned char *sok;         /* a stream slot may use the stream record cache (no flush of
                                   its GroupBy in flight, not a marker) */
    uint64_t *sh;               /* a slot's record cache hash (misses; cached_get) */
    size_t *mi;                 /* a multi-get's slots, when some were cache hits ... */
    const char **mkp;           /* ... and their multi-get arrays */
    size_t *mkl;
    rocksdb_pinnableslice_t **mv;
    char **me;
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
    free(x->plans);
    free(x->gls);
    free(x->glord);
    free(x->ord);
    free(x->se);
    free(x->se2);
    free(x->rank);
    tsr_buf_free(&x->keys);
    free(x->kp);
    free(x->kl);
    free(x->vals);
    free(x->errs);
    free(x->cv);
    free(x->cl);
    free(x->sok);
    free(x->sh);
    free(x->mi);
    free(x->mkp);
    free(x->mkl);
    free(x->mv);
    free(x->me);
    free(x);
}
static void scratch_key_init(void) { pthread_key_create(&scratch_key, scratch_free); }

static read_scratch_t *scratch_get(void) {
    pthread_once(&scratch_once, scratch_key_init);
    read_scratch_t *x = pthread_getspecific(scratch_key);
    if (!x) {
        x = tsr_calloc(1, sizeof(*x));
        tsr_buf_init(&x->keys);
        pthread_setspecific(scratch_key, x);
        /* RocksDB counts into this thread's perf context by default (perf level is per
         * thread): two thread-local lookups (__tls_get_addr, a shared library) per counter,
         * ~3 % of a read's instructions, for counters nothing reads */
        rocksdb_set_perf_level(rocksdb_disable);
    }
    return x;
}

/* Reads per stream multi-get (and per hold of the write-back read locks). */
#ifndef TSR__READ_CHUNK
#define TSR__READ_CHUNK 64
#endif

#define GROW(p, cap, need)                                                                         \
    do {                                                                                           \
        if ((need) > (cap)) {                                                                      \
            size_t c_ = (cap) ? (cap) : 8;                                                         \
            while (c_ < (need)) c_ *= 2;                                                           \
            (p) = tsr_realloc((p), c_ * sizeof(*(p)));                                             \
            (cap) = c_;                                                                            \
        }                                                                                          \
    } while (0)

/* One read while it is planned or merged. Records and masks are addressed through x by
 * index (rec0, mask0): planning grows those arrays. */
typedef struct read_ctx {
    tsr__ts_gb_t *g;
    read_scratch_t *x;
    win_acc_t *acc;             /* x->acc + acc0 (valid while merging) */
    size_t nacc;
    size_t rec0, nrec, mask0;
    int64_t b, head, q;
    void *tmp;                  /* a scratch tile block */
    tsr_arena_t *arena;
    size_t kbase_off, kbase;    /* 't' gb \0 K at keys[kbase_off], kbase bytes */
} read_ctx_t;

static inline rec_t *ctx_rec(read_ctx_t *c, size_t r) { return &c->x->recs[c->rec0 + r]; }
static inline uint32_t *ctx_masks(read_ctx_t *c, size_t r) {
    return c->x->masks + c->mask0 + r * c->nacc;
}

/* tag gb '\0' appended (tsr__key_prefix clears the buffer first). */
static void put_prefix(tsr_buf_t *b, char tag, const tsr__ts_gb_t *g) {
    tsr_buf_reserve(b, g->nlen + 2);
    b->data[b->len++] = (uint8_t)tag;
    memcpy(b->data + b->len, g->name, g->nlen);
    b->len += g->nlen;
    b->data[b->len++] = 0;
}

/* The index of the read's record (type, start), added (with its key) when new. */
static size_t rec_of(read_ctx_t *c, int type, int64_t start) {
    read_scratch_t *x = c->x;
    for (size_t r = 0; r < c->nrec; r++) {
        const rec_t *e = ctx_rec(c, r);
        if (e->type == type && e->start == start) return r;
    }
    GROW(x->recs, x->caprecs, c->rec0 + c->nrec + 1);
    GROW(x->masks, x->capmasks, c->mask0 + (c->nrec + 1) * c->nacc);
    memset(ctx_masks(c, c->nrec), 0, c->nacc * sizeof(uint32_t));
    rec_t *r = ctx_rec(c, c->nrec);
    r->type = type;
    r->start = start;
    r->any = 0;
    /* the key: 't' gb \0 K (kbase bytes at kbase_off) + type + start */
    r->koff = x->keys.len;
    tsr_buf_reserve(&x->keys, c->kbase + 9);
    memcpy(x->keys.data + x->keys.len, x->keys.data + c->kbase_off, c->kbase); /* no realloc after reserve */
    x->keys.len += c->kbase;
    x->keys.data[x->keys.len++] = (uint8_t)type;
    uint64_t u = (uint64_t)start ^ (UINT64_C(1) << 63);
    for (int i = 0; i < 8; i++) x->keys.data[x->keys.len++] = (uint8_t)(u >> (56 - 8 * i));
    r->klen = x->keys.len - r->koff;
    return c->nrec++;
}

static void want_mask(read_ctx_t *c, size_t win, int type, int64_t start, uint32_t mask) {
    size_t r = rec_of(c, type, start);
    ctx_masks(c, r)[win] |= mask;
    ctx_rec(c, r)->any |= mask;
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

/* Decodes a tile value once and merges it into every window marked want. The windows are in
 * column order (plan_windows): column col's are acc[i0, i1). The scratch tile keeps the last
 * decoded IR until the next decode (tsr_agg_decode clears it first) or ctx_finish. */
static int merge_wanted(read_ctx_t *c, const uint8_t *v, size_t n) {
    tsr__ts_gb_t *g = c->g;
    const uint8_t *p = v, *end = v + n;
    size_t i0 = 0;
    for (size_t col = 0; col < g->ncols; col++) {
        const uint8_t *cp;
        size_t len, i1 = i0;
        if (rd_bytes(&p, end, &cp, &len)) return TSR_ECORRUPT;
        int any = 0;
        for (; i1 < c->nacc && c->acc[i1].col == col; i1++) any |= c->acc[i1].want;
        size_t from = i0;
        i0 = i1;
        if (!any) continue;
        const tsr_agg_t *a = g->cols[col].agg;
        void *t = tsr__tile_col(g, c->tmp, col);
        if (tsr_agg_decode(a, t, cp, len, NULL)) return TSR_ECORRUPT;
        for (size_t i = from; i < i1; i++)
            if (c->acc[i].want) tsr_agg_merge(a, c->acc[i].ir, t);
    }
    return 0;
}

/* A live tile block (the write-back table's) merged into every window marked want. */
static void merge_wanted_blk(read_ctx_t *c, const void *blk) {
    tsr__ts_gb_t *g = c->g;
    for (size_t i = 0; i < c->nacc; i++)
        if (c->acc[i].want) {
            size_t col = c->acc[i].col;
            tsr_agg_merge(g->cols[col].agg, c->acc[i].ir, tsr__tile_col(g, (void *)blk, col));
        }
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
        size_t left = 0; /* windows of this hop still waiting for their entry */
        for (size_t i = 0; i < c->nacc; i++) left += c->acc[i].hop == hop && c->acc[i].s < c->b;
        const uint8_t *q = sec, *qend = sec + seclen;
        for (uint64_t j = 0; j < cnt && left; j++) { /* entries in start order: stop when done */
            uint64_t zz;
            if (rd_uv(&q, qend, &zz) || rd_bytes(&q, qend, &tp, &len)) return TSR_ECORRUPT;
            int64_t start = (int64_t)(zz >> 1) ^ -(int64_t)(zz & 1); /* zigzag */
            /* the first entry at or after s holds every tail tile of [s, B) */
            any = 0;
            for (size_t i = 0; i < c->nacc; i++) {
                win_acc_t *w = &c->acc[i];
                w->want = w->hop == hop && !w->batch_done && start >= w->s;
                if (w->want) {
                    w->batch_done = 1;
                    left--;
                }
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
    const rec_t *rec = ctx_rec(c, ri);
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
            const uint32_t *m = ctx_masks(c, ri);
            for (size_t i = 0; i < c->nacc; i++) c->acc[i].want = (unsigned char)(m[i] >> slot & 1);
            if (merge_wanted(c, tp, tl)) return TSR_ECORRUPT;
        }
        if (rl && (raw_slot == -2 || raw_slot == slot) &&
            apply_raw(c, rec->start + (int64_t)slot * TSR_TILE_5M, rp, rl))
            return TSR_ECORRUPT;
    }
    return 0;
}

/* A record's unflushed slots, straight from the write-back table (tsr__pend_visit): the same
 * merges as apply_slots on the encoded slot list, without encoding and decoding the tiles. */
typedef struct pend_apply {
    read_ctx_t *c;
    size_t ri;
    int raw_slot;
} pend_apply_t;

static int on_pend_slot(void *ud, int slot, const void *blk, const tsr__raw_chunk_t *raw) {
    pend_apply_t *pa = ud;
    read_ctx_t *c = pa->c;
    const rec_t *rec = ctx_rec(c, pa->ri);
    if (rec->any >> slot & 1) {
        const uint32_t *m = ctx_masks(c, pa->ri);
        for (size_t i = 0; i < c->nacc; i++) c->acc[i].want = (unsigned char)(m[i] >> slot & 1);
        merge_wanted_blk(c, blk);
    }
    if (raw && pa->raw_slot == slot) {
        int64_t t0 = rec->start + (int64_t)slot * TSR_TILE_5M;
        for (; raw; raw = raw->next)
            if (apply_raw(c, t0, raw->data, raw->len)) return TSR_ECORRUPT;
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
    ctx_rec(rs->c, 0)->start = tsr__get_i64(k + rs->plen);
    rs->rc = apply_slots(rs->c, 0, v, vl, -2);
}

/* No upload: every hour record of the key, raw events only — stored and unflushed, read at one
 * snapshot that also tells whether a flush in flight has landed. */
static int read_all_raw(tsr_tile_store_t *s, read_ctx_t *c) {
    tsr__ts_gb_t *g = c->g;
    read_scratch_t *x = c->x;
    tsr_buf_t lo;
    tsr_buf_init(&lo);
    tsr_buf_append(&lo, x->keys.data + c->kbase_off, c->kbase);
    tsr_buf_putc(&lo, TSR__REC_HOUR);
    size_t plen = lo.len;
    GROW(x->recs, x->caprecs, c->rec0 + 1);
    ctx_rec(c, 0)->type = TSR__REC_HOUR;
    ctx_rec(c, 0)->any = 0;
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
        tsr__state_key(&mk, g->name, g->nlen, 'F');
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
        ctx_rec(c, 0)->start = tsr__get_i64((const uint8_t *)k + plen);
        if (ctx_rec(c, 0)->start >= c->q) break;
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

/* Sets a read's outcome: status and a message in the arena. */
static void req_fail(tsr_tile_store_req_t *rq, tsr_arena_t *arena, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void req_fail(tsr_tile_store_req_t *rq, tsr_arena_t *arena, int code, const char *fmt, ...) {
    char msg[TSR_ERROR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    rq->status = code;
    rq->error = tsr_arena_strdup(arena, msg);
}

/* Checks a read and finds its GroupBy and B. 0, or its status set. */
static int req_check(tsr_tile_store_t *s, tsr_tile_store_req_t *rq, tsr__ts_gb_t **gp, int64_t *bp,
                     int64_t *verp, tsr__ts_gb_t *prev, tsr_arena_t *arena) {
    tsr__ts_gb_t *g = prev;
    if (!rq->gb || (!rq->key && rq->klen)) {
        req_fail(rq, arena, TSR_EINVAL, "tile store read without a GroupBy name or key");
        return rq->status;
    }
    /* consecutive reads mostly share a GroupBy: compare with the previous one first */
    if (!g || strncmp(g->name, rq->gb, g->nlen + 1) != 0) g = tsr__ts_lookup(s, rq->gb, NULL);
    if (!g) {
        req_fail(rq, arena, TSR_ENOTFOUND, "GroupBy %s is not registered in the tile store", rq->gb);
        return rq->status;
    }
    if (rq->klen > 0xffff) {
        req_fail(rq, arena, TSR_EINVAL, "key longer than 65535 bytes");
        return rq->status;
    }
    /* one load: the version id and its B agree (tsr_ver_day) */
    int64_t ver = __atomic_load_n(&g->batch_ver, __ATOMIC_ACQUIRE), b = tsr_ver_day(ver);
    if (b != INT64_MIN && rq->q < b) {
        req_fail(rq, arena, TSR_EINVAL, "at_millis %lld is before the uploaded batch end %lld",
                 (long long)rq->q, (long long)b);
        return rq->status;
    }
    *gp = g;
    *bp = b;
    *verp = ver;
    return 0;
}

/* The read's windows at q: acc[0 .. nacc) (their IRs are set up when merging). */
static void plan_windows(const tsr__ts_gb_t *g, win_acc_t *acc, int64_t q, int64_t b) {
    size_t i = 0;
    for (size_t c = 0; c < g->ncols; c++)
        for (size_t wi = 0; wi < g->cols[c].nwin; wi++, i++) {
            win_acc_t *w = &acc[i];
            w->col = c;
            w->w = g->cols[c].windows[wi];
            w->s = w->w ? tsr_window_start(q, w->w) : INT64_MIN;
            w->from = w->s > b ? w->s : b; /* b == INT64_MIN: from = s */
            w->hop = w->w ? tsr_window_hop(w->w) : 0;
            w->ir = NULL;
            w->batch_done = 0;
            w->want = 0;
        }
}

static size_t gb_nacc(const tsr__ts_gb_t *g) {
    size_t nacc = 0;
    for (size_t c = 0; c < g->ncols; c++) nacc += g->cols[c].nwin;
    return nacc;
}

/* Sets up c's window IRs (and its scratch tile) in x->irmem, acc pointing at x->acc[acc0]. */
static void ctx_irs_init(read_ctx_t *c, size_t acc0) {
    tsr__ts_gb_t *g = c->g;
    read_scratch_t *x = c->x;
    size_t irtot = g->ir_size;
    for (size_t col = 0; col < g->ncols; col++) irtot += g->cols[col].nwin * tsr_agg_ir_size(g->cols[col].agg);
    GROW(x->irmem, x->capir, irtot);
    c->acc = x->acc + acc0;
    c->tmp = x->irmem;
    tsr__tile_init(g, c->tmp);
    uint8_t *irp = x->irmem + g->ir_size;
    for (size_t i = 0; i < c->nacc; i++) {
        const tsr_agg_t *a = g->cols[c->acc[i].col].agg;
        c->acc[i].ir = irp;
        irp += tsr_agg_ir_size(a);
        tsr_agg_init(a, c->acc[i].ir);
    }
}

/* Finalizes c's windows into out (when rc == 0) and releases the IRs. */
static void ctx_finish(read_ctx_t *c, int rc, tsr_value_t *out) {
    tsr__ts_gb_t *g = c->g;
    for (size_t i = 0; i < c->nacc; i++) {
        const tsr_agg_t *a = g->cols[c->acc[i].col].agg;
        if (rc == 0) out[i] = tsr_agg_finalize(a, c->acc[i].ir, c->arena);
        tsr_agg_clear(a, c->acc[i].ir);
    }
    tsr__tile_clear(g, c->tmp);
}

/* A read of a GroupBy without an upload, alone (phase 0). */
static void read_one_raw(tsr_tile_store_t *s, read_scratch_t *x, tsr_tile_store_req_t *rq,
                         tsr__ts_gb_t *g, tsr_arena_t *arena) {
    size_t nacc = gb_nacc(g);
    GROW(x->acc, x->capacc, nacc + 1);
    plan_windows(g, x->acc, rq->q, INT64_MIN);
    tsr_buf_clear(&x->keys);
    put_prefix(&x->keys, 't', g);
    tsr__put_key(&x->keys, rq->key, rq->klen);
    read_ctx_t c = {g, x, NULL, nacc, 0, 0, 0, INT64_MIN, tsr_floor_div(rq->q, TSR_TILE_5M) * TSR_TILE_5M,
                    rq->q, NULL, arena, 0, x->keys.len};
    ctx_irs_init(&c, 0);
    int rc = read_all_raw(s, &c);
    ctx_finish(&c, rc, rq->out);
    if (rc) req_fail(rq, arena, rc, "tile store read of %s failed (%s)", rq->gb, tsr_strerror(rc));
}

/* Phase 1 for one read: windows, records (the batch record first), masks, keys. */
static void plan_read(read_scratch_t *x, plan_t *p, const tsr_tile_store_req_t *rq, size_t *nacc_used,
                      size_t *nrec_used, size_t *nmask_used) {
    tsr__ts_gb_t *g = p->g;
    p->nacc = gb_nacc(g);
    p->acc0 = *nacc_used;
    GROW(x->acc, x->capacc, p->acc0 + p->nacc + 1);
    plan_windows(g, x->acc + p->acc0, rq->q, p->b);
    p->head = tsr_floor_div(rq->q, TSR_TILE_5M) * TSR_TILE_5M;
    read_ctx_t c = {g, x, NULL, p->nacc, *nrec_used, 0, *nmask_used, p->b, p->head, rq->q, NULL, NULL,
                    x->keys.len, 0};
    /* 't' gb \0 K: the base of every stream record key of this read */
    put_prefix(&x->keys, 't', g);
    tsr__put_key(&x->keys, rq->key, rq->klen);
    c.kbase = x->keys.len - c.kbase_off;
    /* record 0: the batch record 'b' gb \0 ver K */
    GROW(x->recs, x->caprecs, c.rec0 + 1);
    GROW(x->masks, x->capmasks, c.mask0 + p->nacc);
    rec_t *r0 = ctx_rec(&c, 0);
    *r0 = (rec_t){'b', p->b, x->keys.len, 0, 0, 0, 0};
    put_prefix(&x->keys, 'b', g);
    tsr__put_i64(&x->keys, p->ver);
    tsr__put_key(&x->keys, rq->key, rq->klen);
    r0->klen = x->keys.len - r0->koff;
    memset(ctx_masks(&c, 0), 0, p->nacc * sizeof(uint32_t));
    c.nrec = 1;
    /* the stream tiles of each window's cover of [from, head); a window whose stream part
     * starts where an earlier one's does (the same window over another column) has the
     * same cover: its masks are copied (records made after that window's cover have 0s) */
    const win_acc_t *acc = x->acc + p->acc0;
    for (size_t i = 0; i < p->nacc; i++) {
        if (acc[i].from >= p->head) continue;
        size_t j = 0;
        while (j < i && acc[j].from != acc[i].from) j++;
        if (j == i) {
            want_cover(&c, i, acc[i].from, p->head);
            continue;
        }
        for (size_t r = 0; r < c.nrec; r++) ctx_masks(&c, r)[i] = ctx_masks(&c, r)[j];
    }
    /* the raw events of [head, q) */
    int64_t hh = tsr_floor_div(p->head, TSR_TILE_1H) * TSR_TILE_1H;
    p->head_rec = rq->q > p->head ? rec_of(&c, TSR__REC_HOUR, hh) : SIZE_MAX;
    p->head_slot = (int)((p->head - hh) / TSR_TILE_5M);
    p->rec0 = c.rec0;
    p->nrec = c.nrec;
    p->mask0 = c.mask0;
    p->ok = 1;
    *nacc_used += p->nacc;
    *nrec_used += c.nrec;
    *nmask_used += c.nrec * p->nacc;
}

/* Prefetch stage (tsr__pend_prefetch) for the stream records of the read at position k of
 * the call's order, if it is one (k < end: of the current chunk). */
static void prefetch_read(read_scratch_t *x, size_t k, size_t end, int stage) {
    if (k >= end) return;
    const plan_t *p = &x->plans[x->ord[k]];
    const tsr__pend_t *act = p->g->act, *imm = x->gls[p->gi].imm;
    if (!act && !imm) return;
    for (size_t r = 1; r < p->nrec; r++) {
        rec_t *rec = &x->recs[p->rec0 + r];
        if (stage == 0) rec->h = tsr__pend_hash(x->keys.data + rec->koff, rec->klen);
        tsr__pend_prefetch(act, rec->h, stage);
        tsr__pend_prefetch(imm, rec->h, stage);
    }
}

/* Bytewise key order (RocksDB's default comparator): memcmp, then the shorter first. */
static int key_cmp(const void *a, size_t al, const void *b, size_t bl) {
    int c = memcmp(a, b, al < bl ? al : bl);
    return c ? c : (al > bl) - (al < bl);
}

static inline int se_before(const sort_ent_t *x, const sort_ent_t *y) {
    for (int i = 0; i < 4; i++)
        if (x->w[i] != y->w[i]) return x->w[i] < y->w[i];
    int c = key_cmp(x->k, x->kl, y->k, y->kl); /* keys of the same GroupBy: same prefix */
    return c ? c < 0 : x->j < y->j;            /* equal keys: request order */
}

/* Sorts a[0..n) by se_before, with tmp (n entries) as scratch: insertion sort of runs of 8,
 * then bottom-up merges. Not qsort: glibc's (a merge sort) mallocs its scratch for anything
 * over 1 KiB — a 1000-read call's 56 KB, which made malloc consolidate its fast bins — and
 * compared whole keys through a function pointer (~4 % of a read's instructions). */
static void se_sort(sort_ent_t *a, sort_ent_t *tmp, size_t n) {
    for (size_t r = 0; r < n; r += 8) {
        size_t e = r + 8 < n ? r + 8 : n;
        for (size_t i = r + 1; i < e; i++) {
            sort_ent_t v = a[i];
            size_t b = i;
            for (; b > r && se_before(&v, &a[b - 1]); b--) a[b] = a[b - 1];
            a[b] = v;
        }
    }
    sort_ent_t *src = a, *dst = tmp;
    for (size_t w = 8; w < n; w *= 2) {
        for (size_t lo = 0; lo < n; lo += 2 * w) {
            size_t mid = lo + w < n ? lo + w : n, hi = lo + 2 * w < n ? lo + 2 * w : n;
            size_t i = lo, j = mid, o = lo;
            if (mid == hi || !se_before(&src[mid], &src[mid - 1])) { /* already in order */
                memcpy(dst + lo, src + lo, (hi - lo) * sizeof(*src));
                continue;
            }
            while (i < mid && j < hi) dst[o++] = se_before(&src[j], &src[i]) ? src[j++] : src[i++];
            while (i < mid) dst[o++] = src[i++];
            while (j < hi) dst[o++] = src[j++];
        }
        sort_ent_t *t = src;
        src = dst;
        dst = t;
    }
    if (src != a) memcpy(a, src, n * sizeof(*a));
}

/* Big-endian word of p[at .. at+8) within n bytes, zero-padded. */
static inline uint64_t be_word(const uint8_t *p, size_t n, size_t at) {
    uint64_t h = 0;
    if (at + 8 <= n) return tsr__get_be64(p + at);
    for (size_t i = at; i < at + 8; i++) h = h << 8 | (i < n ? p[i] : 0);
    return h;
}

/* GroupBy name order, as RocksDB orders tag gb \0 ... (names hold no \0: a name that is a
 * prefix of another sorts first). */
static int gb_before(const tsr__ts_gb_t *a, const tsr__ts_gb_t *b) {
    int c = memcmp(a->name, b->name, a->nlen < b->nlen ? a->nlen : b->nlen);
    return c ? c < 0 : a->nlen < b->nlen;
}

/* Whether a multi-get's keys are in order (equal neighbours allowed): RocksDB is then told so
 * (sorted_input) and skips sorting them. Checked, not assumed: a call whose reads of one
 * GroupBy saw two upload versions (B changed mid-call) has its keys out of order. */
static unsigned char keys_sorted(const char *const *kp, const size_t *kl, size_t n) {
    for (size_t i = 1; i < n; i++)
        if (key_cmp(kp[i - 1], kl[i - 1], kp[i], kl[i]) > 0) return 0;
    return 1;
}

/* Stream records of one key in key order: 't' gb \0 K, then type, then start (sign-flipped
 * big-endian: numeric order). */
static int rec_before(const rec_t *a, const rec_t *b) {
    return a->type != b->type ? a->type < b->type : a->start < b->start;
}

static size_t put_prefix_len(const tsr__ts_gb_t *g) { return g->nlen + 2; }

/* Stream records of a run of reads ordered together at most (more: left as planned). */
#define TSR__READ_RUN_SORT 64

/* A stream record's place vi in the chunk's multi-get. */
static void rec_slot(read_scratch_t *x, rec_t *rec, size_t vi) {
    rec->vi = vi;
    x->kp[vi] = (const char *)x->keys.data + rec->koff;
    x->kl[vi] = rec->klen;
    x->errs[vi] = NULL;
}

static int gl_cmp(const void *a, const void *b) {
    const tsr__ts_gb_t *x = (*(gb_lock_t *const *)a)->g, *y = (*(gb_lock_t *const *)b)->g;
    return x < y ? -1 : x > y;
}

/* Slots [v0, v1) (keys in x->kp, x->kl) of column family cf, through record cache c (NULL:
 * none): the slots c may answer (ok[v], or every slot when ok is NULL) are looked up (x->cv,
 * x->cl; a record known not to exist: neither cv nor vals), the rest are read in one batched
 * multi-get (x->vals, x->errs), in the slots' order, so as sorted as their keys. What it found
 * is then stored in c — and, with keep_absent, that a key has no record. The caller holds c's
 * read lock (the whole call: cached bytes are used until the last merge).
 *   Phase 2 (batch records): the batch record cache; a record that does not exist is not kept
 * (its bloom filter answers it cheaply), and an upload commit clears the cache.
 *   Phase 3 (stream records): the stream record cache, with absent records kept, for the
 * GroupBys without a flush in flight (x->sok). The caller also holds the chunk's write-back
 * read locks: no flush of those GroupBys can begin or land meanwhile, so what RocksDB answers
 * is what the cache may keep until the next flush drops it (docs/tile-store.md "Stream record
 * cache"). */
static void cached_get(tsr_tile_store_t *s, read_scratch_t *x, tsr__bcache_t *c, int cf, size_t v0, size_t v1,
                       const unsigned char *ok, int keep_absent) {
    size_t nm = 0, ncache = 0, ncmiss = 0; /* misses; slots c may answer, and their misses */
    for (size_t v = v0; v < v1; v++) {
        x->cv[v] = NULL;
        x->vals[v] = NULL;
        if (c && (!ok || ok[v])) {
            ncache++;
            uint64_t h = tsr__bcache_hash(c, x->kp[v], x->kl[v]);
            size_t vl;
            const uint8_t *cv = tsr__bcache_get(c, x->kp[v], x->kl[v], h, &vl);
            if (cv) {
                if (cv != TSR__BCACHE_ABSENT) {
                    x->cv[v] = cv;
                    x->cl[v] = vl;
                }
                continue;
            }
            x->sh[v] = h;
            ncmiss++;
        }
        x->mi[nm++] = v;
    }
    if (c) tsr__bcache_count(c, ncache - ncmiss, ncmiss);
    if (nm == 0) return;
    int all = nm == v1 - v0; /* no hit: the slots are the multi-get's arrays */
    const char **kp = all ? x->kp + v0 : x->mkp;
    size_t *kl = all ? x->kl + v0 : x->mkl;
    rocksdb_pinnableslice_t **vals = all ? x->vals + v0 : x->mv;
    char **errs = all ? x->errs + v0 : x->me;
    if (!all)
        for (size_t i = 0; i < nm; i++) {
            kp[i] = x->kp[x->mi[i]];
            kl[i] = x->kl[x->mi[i]];
            errs[i] = NULL;
        }
    rocksdb_batched_multi_get_cf(s->db, s->ro, s->cf[cf], nm, kp, kl, vals, errs, keys_sorted(kp, kl, nm));
    for (size_t i = 0; i < nm; i++) {
        size_t v = x->mi[i];
        if (!all) {
            x->vals[v] = vals[i];
            x->errs[v] = errs[i];
        }
        if (!c || (ok && !ok[v]) || x->errs[v]) continue;
        if (x->vals[v]) {
            size_t vl;
            const char *rv = rocksdb_pinnableslice_value(x->vals[v], &vl);
            tsr__bcache_put(c, x->kp[v], x->kl[v], x->sh[v], rv, vl);
        } else if (keep_absent) {
            tsr__bcache_put(c, x->kp[v], x->kl[v], x->sh[v], NULL, 0);
        }
    }
}

/* Phase 4 for one read: merge its records in order and finalize. Destroys its values. */
static void merge_read(read_scratch_t *x, const plan_t *p, const gb_lock_t *gl, tsr_tile_store_req_t *rq,
                       tsr_arena_t *arena) {
    tsr__ts_gb_t *g = p->g;
    read_ctx_t c = {g, x, NULL, p->nacc, p->rec0, p->nrec, p->mask0, p->b, p->head, rq->q, NULL, arena, 0, 0};
    ctx_irs_init(&c, p->acc0);
    int rc = 0;
    const char *ioerr = NULL;
    for (size_t r = 0; r < p->nrec; r++) {
        const rec_t *rec = ctx_rec(&c, r);
        int raw_slot = r == p->head_rec ? p->head_slot : -1;
        if (rc == 0 && r > 0) { /* the record's unflushed part: act, then a flush in flight */
            const uint8_t *k = x->keys.data + rec->koff;
            pend_apply_t pa = {&c, r, raw_slot};
            uint32_t slots = rec->any | (raw_slot >= 0 ? UINT32_C(1) << raw_slot : 0);
            rc = tsr__pend_visit(g->act, k, rec->klen, rec->h, slots, on_pend_slot, &pa);
            if (rc == 0 && gl->imm) rc = tsr__pend_visit(gl->imm, k, rec->klen, rec->h, slots, on_pend_slot, &pa);
        }
        if (x->errs[rec->vi]) {
            if (rc == 0) {
                rc = TSR_EIO;
                ioerr = tsr_arena_strdup(arena, x->errs[rec->vi]);
            }
            free(x->errs[rec->vi]);
            x->errs[rec->vi] = NULL;
        }
        rocksdb_pinnableslice_t *ps = x->vals[rec->vi];
        if (!ps) { /* from a cache, or none */
            const uint8_t *cv = x->cv[rec->vi];
            size_t cl = x->cl[rec->vi];
            if (cv && rc == 0) rc = r == 0 ? apply_batch(&c, cv, cl) : apply_slots(&c, r, cv, cl, raw_slot);
            continue;
        }
        size_t vl;
        const uint8_t *v = (const uint8_t *)rocksdb_pinnableslice_value(ps, &vl);
        if (rc == 0) rc = r == 0 ? apply_batch(&c, v, vl) : apply_slots(&c, r, v, vl, raw_slot);
        rocksdb_pinnableslice_destroy(ps);
        x->vals[rec->vi] = NULL;
    }
    ctx_finish(&c, rc, rq->out);
    if (ioerr) req_fail(rq, arena, rc, "tile store read of %s: %s", rq->gb, ioerr);
    else if (rc) req_fail(rq, arena, rc, "tile store read of %s failed (corrupt record)", rq->gb);
}

static int read_many(tsr_tile_store_t *s, tsr_tile_store_req_t *reqs, size_t n, tsr_arena_t *arena,
                     tsr_error_t *err, int again);

int tsr_tile_store_read_many(tsr_tile_store_t *s, tsr_tile_store_req_t *reqs, size_t n, tsr_arena_t *arena,
                             tsr_error_t *err) {
    return read_many(s, reqs, n, arena, err, 4);
}

/* The reads whose batch record was deleted under them (plans[j].stale), read again with the
 * version now served. A read takes the version id, then gets its batch record; a commit
 * between the two deletes the old version's records, and the read would merge the stream
 * without its batch part. The commit publishes the new id before that deletion, so a read
 * that found its record gone sees the new id (read_many phase 2) and is made again (up to
 * `again` times: commits back to back can move the id again meanwhile). Rare: a commit's few
 * microseconds once per upload. */
static int read_stale_again(tsr_tile_store_t *s, read_scratch_t *x, tsr_tile_store_req_t *reqs, size_t n,
                            tsr_arena_t *arena, tsr_error_t *err, int again) {
    size_t nst = 0;
    for (size_t j = 0; j < n; j++) nst += x->plans[j].ok && x->plans[j].stale;
    if (nst == 0) return 0;
    size_t *ix = tsr_malloc(nst * sizeof(*ix));
    tsr_tile_store_req_t *rr = tsr_malloc(nst * sizeof(*rr));
    for (size_t j = 0, i = 0; j < n; j++)
        if (x->plans[j].ok && x->plans[j].stale) { /* before read_many reuses x */
            ix[i] = j;
            rr[i++] = reqs[j];
        }
    int rc = read_many(s, rr, nst, arena, err, again - 1);
    for (size_t i = 0; i < nst && rc == 0; i++) {
        reqs[ix[i]].status = rr[i].status;
        reqs[ix[i]].error = rr[i].error;
    }
    free(ix);
    free(rr);
    return rc;
}

static int read_many_locked(tsr_tile_store_t *s, read_scratch_t *x, tsr_tile_store_req_t *reqs, size_t n,
                            tsr_arena_t *arena);

/* With the batch record cache, a call holds its read lock from before it takes the version
 * ids to its last merge: an upload commit switches versions under the write lock, so a
 * call's batch records are never deleted under it (read_stale_again is for a store
 * without the cache). */
static int read_many(tsr_tile_store_t *s, tsr_tile_store_req_t *reqs, size_t n, tsr_arena_t *arena,
                     tsr_error_t *err, int again) {
    if (n && !reqs) return tsr_error_set(err, TSR_EINVAL, "tile store read_many: no requests");
    read_scratch_t *x = scratch_get();
    if (s->bcache) tsr__bcache_rdlock(s->bcache);
    if (s->scache) tsr__bcache_rdlock(s->scache);
    int rc = read_many_locked(s, x, reqs, n, arena);
    if (s->scache) tsr__bcache_unlock(s->scache);
    if (s->bcache) tsr__bcache_unlock(s->bcache);
    if (rc) return rc;
    return again ? read_stale_again(s, x, reqs, n, arena, err, again) : 0;
}

static int read_many_locked(tsr_tile_store_t *s, read_scratch_t *x, tsr_tile_store_req_t *reqs, size_t n,
                            tsr_arena_t *arena) {
    GROW(x->plans, x->capplans, n + 1);
    tsr_buf_clear(&x->keys);
    size_t nacc_used = 0, nrec_used = 0, nmask_used = 0, nplanned = 0;
    tsr__ts_gb_t *prev = NULL;
    /* phase 0: checks, and the reads without an upload, alone (they use the scratch) */
    for (size_t j = 0; j < n; j++) {
        tsr_tile_store_req_t *rq = &reqs[j];
        plan_t *p = &x->plans[j];
        p->ok = 0;
        p->stale = 0;
        p->g = NULL;
        rq->status = 0;
        rq->error = NULL;
        if (req_check(s, rq, &p->g, &p->b, &p->ver, prev, arena)) {
            p->g = NULL;
            continue;
        }
        prev = p->g;
        if (p->b == INT64_MIN) {
            read_one_raw(s, x, rq, p->g, arena);
            p->g = NULL;
        }
    }
    /* phase 1: plans of the others */
    tsr_buf_clear(&x->keys);
    for (size_t j = 0; j < n; j++) {
        plan_t *p = &x->plans[j];
        if (!p->g) continue;
        plan_read(x, p, &reqs[j], &nacc_used, &nrec_used, &nmask_used);
        nplanned++;
    }
    if (nplanned == 0) return 0;
    /* value slots: batch records [0, nplanned), then a chunk's stream records and markers */
    size_t nget = nrec_used + n;
    if (nget > x->capget) {
        x->capget = 2 * nget;
        x->kp = tsr_realloc(x->kp, x->capget * sizeof(*x->kp));
        x->kl = tsr_realloc(x->kl, x->capget * sizeof(size_t));
        x->vals = tsr_realloc(x->vals, x->capget * sizeof(*x->vals));
        x->errs = tsr_realloc(x->errs, x->capget * sizeof(char *));
        x->cv = tsr_realloc(x->cv, x->capget * sizeof(*x->cv));
        x->cl = tsr_realloc(x->cl, x->capget * sizeof(size_t));
        x->sok = tsr_realloc(x->sok, x->capget * sizeof(*x->sok));
        x->sh = tsr_realloc(x->sh, x->capget * sizeof(*x->sh));
        x->mi = tsr_realloc(x->mi, x->capget * sizeof(*x->mi));
        x->mkp = tsr_realloc(x->mkp, x->capget * sizeof(*x->mkp));
        x->mkl = tsr_realloc(x->mkl, x->capget * sizeof(*x->mkl));
        x->mv = tsr_realloc(x->mv, x->capget * sizeof(*x->mv));
        x->me = tsr_realloc(x->me, x->capget * sizeof(*x->me));
    }
    /* the order the planned reads are fetched and merged in: by batch record key ('b' gb \0 B
     * K), i.e. grouped by GroupBy (in name order) and by key within a GroupBy. A fetch layer
     * asks entity by entity (e0 g0..g9, e1 g0..g9, ...); grouped, each chunk's keys lie in one
     * or two GroupBys' key ranges, so each of RocksDB's 32-key batches touches one GroupBy's
     * files instead of every GroupBy's, and a chunk takes one or two write-back locks instead
     * of ten. In key order, a chunk's multi-get keys are sorted as they are laid out (below),
     * and RocksDB is told so instead of sorting them itself (std::sort of the key contexts with
     * a virtual comparator: ~6 % of a read's instructions). Every read is still merged alone:
     * its values do not depend on the order. */
    GROW(x->ord, x->capord, nplanned + 1);
    GROW(x->se, x->capse, nplanned + 1);
    GROW(x->se2, x->capse2, nplanned + 1);
    size_t nrank = 0;
    const tsr__ts_gb_t *lastg = NULL;
    uint64_t lastr = 0;
    for (size_t j = 0, k = 0; j < n; j++) {
        const plan_t *p = &x->plans[j];
        if (!p->ok) continue;
        if (p->g != lastg) { /* its GroupBy's rank: the call's GroupBys kept in name order */
            size_t r = 0;
            while (r < nrank && x->rank[r] != p->g) r++;
            if (r == nrank) {
                GROW(x->rank, x->caprank, nrank + 1);
                for (r = nrank++; r > 0 && gb_before(p->g, x->rank[r - 1]); r--) x->rank[r] = x->rank[r - 1];
                x->rank[r] = p->g;
                for (size_t m = 0; m < k; m++) /* ranks after it moved up */
                    if (x->se[m].w[0] >= r) x->se[m].w[0]++;
            }
            lastg = p->g;
            lastr = r;
        }
        const rec_t *rec = &x->recs[p->rec0];
        const uint8_t *kp = x->keys.data + rec->koff;
        size_t pl = put_prefix_len(p->g); /* 'b' gb \0, then B (8 bytes) and K */
        x->se[k++] = (sort_ent_t){{lastr, be_word(kp, rec->klen, pl), be_word(kp, rec->klen, pl + 8),
                                   be_word(kp, rec->klen, pl + 16)},
                                  kp, rec->klen, j};
    }
    if (nplanned > 1) se_sort(x->se, x->se2, nplanned);
    for (size_t k = 0; k < nplanned; k++) x->ord[k] = x->se[k].j;
    /* batch record slots [0, nplanned) in that order */
    for (size_t k = 0; k < nplanned; k++) {
        const plan_t *p = &x->plans[x->ord[k]];
        rec_t *rec = &x->recs[p->rec0];
        rec->vi = k;
        x->kp[k] = (const char *)x->keys.data + rec->koff;
        x->kl[k] = rec->klen;
        x->errs[k] = NULL;
        x->cv[k] = NULL;
    }
    /* phases 2, 3 and 4 by chunks of TSR__READ_CHUNK reads: the write-back locks are held
     * from a chunk's stream multi-get until its last merge, so a large call blocks ingest (the
     * fold takes them exclusively) for one chunk at a time, not for the whole call. Nothing is
     * lost to the chunking: RocksDB works through a multi-get 32 keys at a time anyway, and
     * its per-call arrays (keys, PinnableSlices, statuses: ~100 bytes a key) stay small enough
     * to be recycled by malloc instead of growing and trimming the heap (page faults) at every
     * call of 1000 reads. */
    const size_t *ord = x->ord;
    for (size_t k0 = 0; k0 < nplanned;) {
        size_t kend = k0 + TSR__READ_CHUNK < nplanned ? k0 + TSR__READ_CHUNK : nplanned, ngls = 0;
        /* phase 2: the chunk's batch records, no write-back lock needed: from the batch
         * record cache, the rest from RocksDB */
        cached_get(s, x, s->bcache, TSR__CF_BATCH, k0, kend, NULL, 0);
        /* a batch record not found while the version id moved on: deleted by the commit that
         * moved it (read_stale_again) */
        for (size_t k = k0; k < kend; k++) {
            plan_t *p = &x->plans[ord[k]];
            if (!x->vals[k] && !x->errs[k] && !x->cv[k] && __atomic_load_n(&p->g->batch_ver, __ATOMIC_ACQUIRE) != p->ver)
                p->stale = 1;
        }
        /* the chunk's GroupBys, each released after its last read */
        for (size_t k = k0; k < kend; k++) {
            plan_t *p = &x->plans[ord[k]];
            size_t gi = 0;
            while (gi < ngls && x->gls[gi].g != p->g) gi++;
            if (gi == ngls) {
                GROW(x->gls, x->capgls, ngls + 1);
                x->gls[ngls++] = (gb_lock_t){p->g, NULL, 0, SIZE_MAX, 0, k};
            }
            x->gls[gi].last = k;
            p->gi = gi;
        }
        /* phase 3: lock them (address order), markers of flushes in flight, stream records */
        GROW(x->glord, x->capglord, ngls);
        for (size_t i = 0; i < ngls; i++) x->glord[i] = &x->gls[i];
        qsort(x->glord, ngls, sizeof(*x->glord), gl_cmp);
        for (size_t i = 0; i < ngls; i++) {
            gb_lock_t *gl = x->glord[i];
            pthread_rwlock_rdlock(&gl->g->pend_lock);
            gl->imm = gl->g->imm;
            gl->gen = gl->g->gen;
            if (gl->imm) { /* 't' gb \0 \0\0\0 'F' */
                gl->mkoff = x->keys.len;
                put_prefix(&x->keys, 't', gl->g);
                tsr_buf_append(&x->keys, "\0\0\0F", TSR__STATE_PAD + 1);
            }
        }
        /* the stream multi-get's keys, laid out in key order when the reads are in key order:
         * read by read (GroupBy, key) its stream records by (type, start), and before the first
         * read of a GroupBy with a flush in flight that GroupBy's marker (it sorts before every
         * record of its GroupBy and after every record of a GroupBy earlier in name order:
         * tsr__state_key); key pointers now that keys no longer grow */
        size_t ns = nplanned;
        for (size_t k = k0, e; k < kend; k = e) {
            gb_lock_t *gl = &x->gls[x->plans[ord[k]].gi];
            if (gl->imm && gl->marker_vi == SIZE_MAX) {
                gl->marker_vi = ns++;
                x->kp[gl->marker_vi] = (const char *)x->keys.data + gl->mkoff;
                x->kl[gl->marker_vi] = put_prefix_len(gl->g) + TSR__STATE_PAD + 1;
                x->errs[gl->marker_vi] = NULL;
                x->sok[gl->marker_vi] = 0;
            }
            size_t run0 = ns;
            /* a run of reads of the same GroupBy and key (an entity asked twice): their
             * records share keys, so they are ordered together */
            const rec_t *bk = &x->recs[x->plans[ord[k]].rec0];
            size_t nr = 0;
            for (e = k; e < kend; e++) {
                const plan_t *p = &x->plans[ord[e]];
                const rec_t *b = &x->recs[p->rec0];
                if (e > k && (b->klen != bk->klen || memcmp(x->keys.data + b->koff, x->keys.data + bk->koff,
                                                          b->klen) != 0))
                    break;
                nr += p->nrec - 1;
            }
            rec_t *rr[TSR__READ_RUN_SORT];
            int sort = nr <= TSR__READ_RUN_SORT; /* more (reads long after B): as planned */
            nr = 0;
            for (size_t m = k; m < e; m++) {
                const plan_t *p = &x->plans[ord[m]];
                for (size_t r = 1; r < p->nrec; r++) {
                    rec_t *rec = &x->recs[p->rec0 + r];
                    if (!sort) {
                        rec_slot(x, rec, ns++);
                        continue;
                    }
                    size_t b = nr++; /* a few records: insertion sort */
                    for (; b > 0 && rec_before(rec, rr[b - 1]); b--) rr[b] = rr[b - 1];
                    rr[b] = rec;
                }
            }
            for (size_t r = 0; sort && r < nr; r++) rec_slot(x, rr[r], ns++);
            /* no flush in flight: the GroupBy's records do not change until this chunk's
             * unlock (a flush lands under the write lock) */
            for (size_t v = run0; v < ns; v++) x->sok[v] = !gl->imm;
        }
        if (ns > nplanned) cached_get(s, x, s->scache, TSR__CF_STREAM, nplanned, ns, x->sok, 1);
        for (size_t i = 0; i < ngls; i++) {
            gb_lock_t *gl = &x->gls[i];
            if (gl->marker_vi == SIZE_MAX) continue;
            rocksdb_pinnableslice_t *ps = x->vals[gl->marker_vi];
            if (ps) { /* the flush landed: imm is in the records read */
                size_t vl;
                const uint8_t *v = (const uint8_t *)rocksdb_pinnableslice_value(ps, &vl);
                if (vl == 8 && tsr__get_be64(v) >= gl->gen) gl->imm = NULL;
                rocksdb_pinnableslice_destroy(ps);
            }
            free(x->errs[gl->marker_vi]); /* unreadable marker: imm is merged (as before) */
            gl->marker_vi = SIZE_MAX;
        }
        /* phase 4: merge read by read; a GroupBy's lock goes after its last read of the
         * chunk. The write-back lookups are pipelined: buckets two reads ahead, entries one
         * read ahead (within the chunk: those reads' locks are still held) */
        prefetch_read(x, k0, kend, 0);
        prefetch_read(x, k0 + 1, kend, 0);
        prefetch_read(x, k0, kend, 1);
        for (size_t k = k0; k < kend; k++) {
            prefetch_read(x, k + 2, kend, 0);
            prefetch_read(x, k + 1, kend, 1);
            size_t j = ord[k];
            const plan_t *p = &x->plans[j];
            gb_lock_t *gl = &x->gls[p->gi];
            merge_read(x, p, gl, &reqs[j], arena);
            if (gl->last == k) pthread_rwlock_unlock(&gl->g->pend_lock);
        }
        k0 = kend;
    }
    return 0;
}

int tsr_tile_store_read(tsr_tile_store_t *s, const char *gb, const void *key, size_t klen,
                        int64_t q, tsr_value_t *out, tsr_arena_t *arena, tsr_error_t *err) {
    tsr_tile_store_req_t rq = {gb, key, klen, q, out, 0, NULL};
    int rc = tsr_tile_store_read_many(s, &rq, 1, arena, err);
    if (rc) return rc;
    if (rq.status) return tsr_error_set(err, rq.status, "%s", rq.error);
    return 0;
}
