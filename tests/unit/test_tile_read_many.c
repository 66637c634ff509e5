/*
 * test_tile_read_many.c — tsr_tile_store_read_many (worker/tile_store_read.c): many reads in
 * one call (one multi-get per column family) give exactly the values of the same reads made
 * one by one with tsr_tile_store_read (tsr_value_equal: same kinds, same double bits), with a
 * status per read. The calls mix three GroupBys (two uploaded, with different columns and
 * windows; one never uploaded, read from raw events), random keys (some absent), random q
 * (event timestamps and the millisecond after, 5-minute, hour and day edges, B, mid-tile),
 * duplicate reads, and failing reads (an unknown GroupBy, q before B, no GroupBy name) that
 * must fail alone.
 * Compared while the stream is still in the write-back table, after a flush, after a restart
 * (log replay) and after compaction; with the default write-back budget and with a budget of 1
 * (every batch handed to the flusher thread, flushes in flight during the reads). A last test
 * runs read_many of several GroupBys on two threads while a third applies batches to them
 * (bounded): every read succeeds and nothing deadlocks (the GroupBy read locks). The row cache
 * changes no value: with it (filled, then hit) and without it, before and after new table files.
 */
#include "tsr_test.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tsr/agg.h"
#include "tsr/tile.h"
#include "tsr/tile_store.h"
#include "tsr/window.h"

static const int64_t M5 = TSR_TILE_5M, H1 = TSR_TILE_1H, D1 = TSR_TILE_1D;

#define NGB 3       /* A, B uploaded; R never uploaded */
#define NKEYS 12
#define MAXCOLS 3
#define MAXOUT 16

typedef struct ev {
    int key;
    int64_t ts;
    uint64_t seq;
    tsr_value_t in[MAXCOLS];
} ev_t;

static const char *gbname[NGB] = {"t.a.v1", "t.b.v1", "t.raw.v1"};
static const int64_t wa0[] = {0, 7 * 60000, H1, 36 * H1};
static const int64_t wa1[] = {D1, 12 * D1, 0};
static const int64_t wa2[] = {5 * H1, 30 * D1};
static const int64_t wb0[] = {H1, D1, 30 * D1};
static const int64_t wb1[] = {10 * 60000, 2 * D1};
static const int64_t wr0[] = {H1, 0};
static tsr_agg_t *aggs[NGB][MAXCOLS];
static tsr_tile_col_t cols[NGB][MAXCOLS];
static size_t ncols[NGB] = {3, 2, 1};
static size_t nout[NGB];
static ev_t *evs;
static int nev;
static char dir[256];
static size_t wb_budget;

static void make_gbs(void) {
    tsr_agg_spec_t sa[3] = {{TSR_OP_SUM, TSR_DOUBLE, 0, 0, 0, NULL},
                            {TSR_OP_LAST, TSR_LONG, 0, 0, 0, NULL},
                            {TSR_OP_COUNT, TSR_LONG, 0, 0, 0, NULL}};
    tsr_agg_spec_t sb[2] = {{TSR_OP_AVERAGE, TSR_DOUBLE, 0, 0, 0, NULL},
                            {TSR_OP_MAX, TSR_LONG, 0, 0, 0, NULL}};
    tsr_agg_spec_t sr[1] = {{TSR_OP_SUM, TSR_DOUBLE, 0, 0, 0, NULL}};
    const tsr_agg_spec_t *specs[NGB] = {sa, sb, sr};
    const int64_t *wins[NGB][MAXCOLS] = {{wa0, wa1, wa2}, {wb0, wb1, NULL}, {wr0, NULL, NULL}};
    const size_t nwins[NGB][MAXCOLS] = {{4, 3, 2}, {3, 2, 0}, {2, 0, 0}};
    tsr_error_t err;
    for (int g = 0; g < NGB; g++) {
        nout[g] = 0;
        for (size_t c = 0; c < ncols[g]; c++) {
            ck_assert_int_eq(tsr_agg_new(&specs[g][c], &aggs[g][c], &err), 0);
            cols[g][c] = (tsr_tile_col_t){aggs[g][c], nwins[g][c], wins[g][c], c, -1};
            nout[g] += nwins[g][c];
        }
    }
}

static size_t row_cache = TSR_TILE_ROW_CACHE_AUTO; /* the store's row cache */
static size_t batch_cache = 0;                     /* its batch record cache: the default */
static size_t stream_cache = 0;                    /* its stream record cache: the default */

static tsr_tile_store_t *open_store(void) {
    tsr_tile_store_t *s;
    tsr_error_t err;
    tsr_tile_store_opts_t o = {0, row_cache, batch_cache, stream_cache};
    ck_assert_msg(tsr_tile_store_open_opts(dir, &o, &s, &err) == 0, "%s", err.msg);
    if (wb_budget) tsr_tile_store_set_write_back(s, wb_budget);
    for (int g = 0; g < NGB; g++) {
        tsr_tile_gb_t gb = {gbname[g], ncols[g], cols[g]};
        ck_assert_msg(tsr_tile_store_register(s, &gb, &err) == 0, "%s", err.msg);
    }
    return s;
}

static size_t key_of(int k, char *buf) { return (size_t)snprintf(buf, 16, "user%d", k); }

/* Upload of GroupBy g at B: per key, lifetime IR and the tail tiles of each hop its windows
 * use, computed from the events before B (as test_tile_store.c). */
static void upload(tsr_tile_store_t *s, int g, int64_t B) {
    tsr_tile_upload_t *u;
    tsr_error_t err;
    ck_assert_int_eq(tsr_tile_upload_begin(s, gbname[g], B, &u, &err), 0);
    void *irs[MAXCOLS];
    for (size_t c = 0; c < ncols[g]; c++) irs[c] = tsr_malloc(tsr_agg_ir_size(aggs[g][c]));
    const int64_t hops[] = {M5, H1, D1};
    const tsr_tile_kind_t kinds[] = {TSR_TILE_TAIL_5M, TSR_TILE_TAIL_1H, TSR_TILE_TAIL_1D};
    for (int k = 0; k < NKEYS; k++) {
        char kb[16];
        size_t kl = key_of(k, kb);
        for (int h = -1; h < 3; h++) {
            int64_t lo = INT64_MIN;
            if (h >= 0) {
                int64_t wmax = 0;
                for (size_t c = 0; c < ncols[g]; c++)
                    for (size_t w = 0; w < cols[g][c].nwin; w++) {
                        int64_t win = cols[g][c].windows[w];
                        if (win && tsr_window_hop(win) == hops[h] && win > wmax) wmax = win;
                    }
                if (!wmax) continue;
                lo = tsr_tile_tail_start(B, wmax, hops[h]);
            }
            for (int64_t t = lo; h < 0 || t < B; t += (h < 0 ? 0 : hops[h])) {
                int64_t a = h < 0 ? INT64_MIN : t, z = h < 0 ? B : t + hops[h];
                int any = 0;
                for (size_t c = 0; c < ncols[g]; c++) tsr_agg_init(aggs[g][c], irs[c]);
                for (int i = 0; i < nev; i++) {
                    if (evs[i].key != k || evs[i].ts < a || evs[i].ts >= z) continue;
                    any = 1;
                    for (size_t c = 0; c < ncols[g]; c++)
                        tsr_agg_update(aggs[g][c], irs[c], &evs[i].in[c], NULL, evs[i].ts, evs[i].seq);
                }
                if (any && tsr_tile_upload_put(u, kb, kl, h < 0 ? TSR_TILE_LIFETIME : kinds[h], a,
                                               (const void *const *)irs, &err))
                    ck_abort_msg("upload put: %s", err.msg);
                for (size_t c = 0; c < ncols[g]; c++) tsr_agg_clear(aggs[g][c], irs[c]);
                if (h < 0) break;
            }
        }
    }
    for (size_t c = 0; c < ncols[g]; c++) free(irs[c]);
    ck_assert_msg(tsr_tile_upload_commit(u, &err) == 0, "%s", err.msg);
}

/* The events at or after `from` (R: all of them), into every GroupBy, in batches of 40. */
static void stream(tsr_tile_store_t *s, int64_t from) {
    tsr_tile_event_t batch[40];
    char keys[40][16];
    for (int g = 0; g < NGB; g++) {
        int nb = 0;
        for (int i = 0; i < nev; i++) {
            if (g < 2 && evs[i].ts < from) continue;
            size_t kl = key_of(evs[i].key, keys[nb]);
            batch[nb] = (tsr_tile_event_t){keys[nb], kl, evs[i].ts, evs[i].seq, evs[i].in, NULL};
            if (++nb == 40 || i == nev - 1) {
                tsr_error_t err;
                if (tsr_tile_store_apply(s, gbname[g], batch, (size_t)nb, "topic/0", i + 1, NULL, &err))
                    ck_abort_msg("apply: %s", err.msg);
                nb = 0;
            }
        }
        tsr_error_t err;
        if (nb && tsr_tile_store_apply(s, gbname[g], batch, (size_t)nb, "topic/0", nev, NULL, &err))
            ck_abort_msg("apply: %s", err.msg);
    }
}

static int64_t gen_events(tsr_rng_t *r) {
    snprintf(dir, sizeof dir, "/tmp/tsr_test_readmany_XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
    make_gbs();
    int64_t B = (int64_t)(19500 + tsr_rng_below(r, 50)) * D1;
    nev = 0;
    evs = tsr_calloc(1200, sizeof(ev_t));
    while (nev < 1200) {
        int pick = (int)tsr_rng_below(r, 5);
        int64_t ts = pick == 0 ? B - tsr_rng_range(r, 0, 35) * D1
                     : pick == 1 ? B + tsr_rng_range(r, -300, 600) * M5
                                 : B + tsr_rng_range(r, -35 * D1, 2 * D1);
        evs[nev].key = (int)tsr_rng_below(r, NKEYS);
        evs[nev].ts = nev && tsr_rng_below(r, 8) == 0 ? evs[nev - 1].ts : ts;
        evs[nev].seq = (uint64_t)nev;
        int64_t x = tsr_rng_range(r, -50, 500);
        int null = tsr_rng_below(r, 12) == 0;
        evs[nev].in[0] = null ? tsr_value_null() : tsr_value_double((double)x / 8.0);
        evs[nev].in[1] = null ? tsr_value_null() : tsr_value_long(x);
        evs[nev].in[2] = null ? tsr_value_null() : tsr_value_long(x);
        nev++;
    }
    return B;
}

/* A random q >= B: event times (and the millisecond after), hop edges, B, anywhere. */
static int64_t pick_q(tsr_rng_t *r, int64_t B) {
    int64_t q;
    switch (tsr_rng_below(r, 7)) {
    case 0: q = evs[tsr_rng_below(r, (uint64_t)nev)].ts; break;
    case 1: q = evs[tsr_rng_below(r, (uint64_t)nev)].ts + 1; break;
    case 2: q = B + tsr_rng_range(r, 0, 2 * 288) * M5; break;
    case 3: q = B + tsr_rng_range(r, 0, 48) * H1; break;
    case 4: q = B + tsr_rng_range(r, 0, 2) * D1; break;
    case 5: q = B; break;
    default: q = B + tsr_rng_range(r, 0, 2 * D1); break;
    }
    if (q < B) q = B + (B - q) % (2 * D1);
    return q;
}

#define NREQ 300

/* NREQ random reads (some duplicated, a few failing) by read_many, then each again by
 * tsr_tile_store_read: the same status, the same values. */
static void check_many(tsr_tile_store_t *s, tsr_rng_t *r, int64_t B) {
    static tsr_tile_store_req_t reqs[NREQ];
    static tsr_value_t outs[NREQ][MAXOUT];
    static char keys[NREQ][16];
    static int gbi[NREQ];
    tsr_arena_t arena, a1;
    tsr_arena_init(&arena, 0);
    tsr_arena_init(&a1, 0);
    for (int i = 0; i < NREQ; i++) {
        if (i > 0 && tsr_rng_below(r, 10) == 0) { /* a duplicate of an earlier read */
            int j = (int)tsr_rng_below(r, (uint64_t)i);
            memcpy(keys[i], keys[j], sizeof keys[i]);
            gbi[i] = gbi[j];
            reqs[i] = reqs[j];
            reqs[i].key = keys[i];
            reqs[i].out = outs[i];
            continue;
        }
        int g = (int)tsr_rng_below(r, NGB);
        int k = (int)tsr_rng_below(r, NKEYS + 2); /* NKEYS, NKEYS+1: absent keys */
        gbi[i] = g;
        size_t kl = key_of(k, keys[i]);
        int64_t q = pick_q(r, B);
        const char *name = gbname[g];
        int bad = (int)tsr_rng_below(r, 40);
        if (bad == 0) {
            name = "t.nope.v1";
            gbi[i] = -1;
        } else if (bad == 1 && g < 2) {
            q = B - 1 - (int64_t)tsr_rng_below(r, D1);
            gbi[i] = -2;
        } else if (bad == 2) {
            name = NULL;
            gbi[i] = -2; /* TSR_EINVAL too */
        }
        reqs[i] = (tsr_tile_store_req_t){name, keys[i], kl, q, outs[i], 12345, "stale"};
    }
    tsr_error_t err;
    ck_assert_int_eq(tsr_tile_store_read_many(s, reqs, NREQ, &arena, &err), 0);
    tsr_value_t one[MAXOUT];
    for (int i = 0; i < NREQ; i++) {
        tsr_tile_store_req_t *q = &reqs[i];
        tsr_arena_reset(&a1);
        int rc = tsr_tile_store_read(s, q->gb, q->key, q->klen, q->q, one, &a1, &err);
        if (rc != q->status)
            ck_abort_msg("read %d (%s key %.*s q=B+%lld): read_many status %d, read %d", i, q->gb ? q->gb : "(none)",
                         (int)q->klen, (const char *)q->key, (long long)(q->q - B), q->status, rc);
        if (gbi[i] == -1 && q->status != TSR_ENOTFOUND) ck_abort_msg("unknown GroupBy: status %d", q->status);
        if (gbi[i] == -2 && q->status != TSR_EINVAL) ck_abort_msg("q before B: status %d", q->status);
        if (gbi[i] >= 0 && q->status != 0) ck_abort_msg("read %d failed: %s", i, q->error);
        if ((q->status != 0) != (q->error != NULL)) ck_abort_msg("read %d: status %d, error %p", i, q->status, (const void *)q->error);
        if (q->status) continue;
        for (size_t o = 0; o < nout[gbi[i]]; o++)
            if (!tsr_value_equal(&q->out[o], &one[o])) {
                tsr_buf_t x, y;
                tsr_buf_init(&x);
                tsr_buf_init(&y);
                tsr_value_to_json(&q->out[o], &x);
                tsr_value_to_json(&one[o], &y);
                ck_abort_msg("read %d (%s key %.*s q=B+%lld) output %zu: read_many %s, read %s", i, q->gb,
                             (int)q->klen, (const char *)q->key, (long long)(q->q - B), o, tsr_buf_cstr(&x),
                             tsr_buf_cstr(&y));
            }
    }
    /* the calls' edges: nothing to read, one read */
    ck_assert_int_eq(tsr_tile_store_read_many(s, reqs, 0, &arena, &err), 0);
    ck_assert_int_eq(tsr_tile_store_read_many(s, reqs, 1, &arena, &err), 0);
    tsr_arena_free(&arena);
    tsr_arena_free(&a1);
}

static void cleanup(void) {
    for (int g = 0; g < NGB; g++)
        for (size_t c = 0; c < ncols[g]; c++) tsr_agg_free(aggs[g][c]);
    free(evs);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    ck_assert_int_eq(system(cmd), 0);
}

START_TEST(test_many_equals_single) {
    wb_budget = _i == 1 ? 1 : 0; /* iteration 1: every batch handed to the flusher thread */
    tsr_rng_t r = {.s = 555 + (uint64_t)_i};
    int64_t B = gen_events(&r);
    tsr_tile_store_t *s = open_store();
    upload(s, 0, B);
    upload(s, 1, B);
    stream(s, B);
    check_many(s, &r, B); /* write-back table (iteration 1: flushes in flight) */
    tsr_error_t err;
    ck_assert_msg(tsr_tile_store_flush(s, &err) == 0, "%s", err.msg);
    check_many(s, &r, B); /* merge operands */
    tsr_tile_store_close(s);
    s = open_store();
    check_many(s, &r, B); /* after a restart */
    tsr_tile_store_compact(s);
    check_many(s, &r, B); /* merged records */
    tsr_tile_store_close(s);
    cleanup();
}
END_TEST

/* The row cache changes no value: NREQ reads of a compacted store, twice with the row cache
 * (the second time from it) and once with none, after a restart, give equal values; then new
 * events, a flush and a compaction (new table files) and the same again — no stale record. */
static void row_cache_round(tsr_rng_t *r, int64_t B) {
    static tsr_tile_store_req_t reqs[3][NREQ];
    static tsr_value_t outs[3][NREQ][MAXOUT];
    static char keys[NREQ][16];
    static int gbi[NREQ];
    tsr_arena_t arena;
    tsr_arena_init(&arena, 0);
    tsr_error_t err;
    for (int i = 0; i < NREQ; i++) {
        gbi[i] = (int)tsr_rng_below(r, NGB);
        size_t kl = key_of((int)tsr_rng_below(r, NKEYS + 1), keys[i]);
        int64_t q = pick_q(r, B);
        for (int v = 0; v < 3; v++) reqs[v][i] = (tsr_tile_store_req_t){gbname[gbi[i]], keys[i], kl, q, outs[v][i], 0, NULL};
    }
    row_cache = (size_t)8 << 20; /* with the row cache: filled, then read from it */
    tsr_tile_store_t *s = open_store();
    ck_assert_int_eq(tsr_tile_store_read_many(s, reqs[0], NREQ, &arena, &err), 0);
    ck_assert_int_eq(tsr_tile_store_read_many(s, reqs[1], NREQ, &arena, &err), 0);
    size_t used;
    tsr_tile_store_cache_usage(s, NULL, &used);
    ck_assert_msg(used > 0, "the row cache holds nothing");
    tsr_tile_store_close(s);
    row_cache = 0; /* without */
    s = open_store();
    ck_assert_int_eq(tsr_tile_store_read_many(s, reqs[2], NREQ, &arena, &err), 0);
    tsr_tile_store_close(s);
    row_cache = TSR_TILE_ROW_CACHE_AUTO;
    for (int i = 0; i < NREQ; i++)
        for (int v = 1; v < 3; v++) {
            if (reqs[v][i].status != reqs[0][i].status) ck_abort_msg("read %d: status %d vs %d", i, reqs[v][i].status, reqs[0][i].status);
            if (reqs[0][i].status) ck_abort_msg("read %d failed: %s", i, reqs[0][i].error);
            for (size_t o = 0; o < nout[gbi[i]]; o++)
                if (!tsr_value_equal(&outs[v][i][o], &outs[0][i][o]))
                    ck_abort_msg("read %d (%s key %s q=B+%lld) output %zu differs %s the row cache", i, gbname[gbi[i]],
                                 keys[i], (long long)(reqs[0][i].q - B), o, v == 1 ? "read from" : "without");
        }
    tsr_arena_free(&arena);
}

/* A store with GroupBys 0 and 1 uploaded at B (returned), every event streamed, flushed. */
static tsr_tile_store_t *flushed_store(tsr_rng_t *r, int64_t *B) {
    *B = gen_events(r);
    tsr_tile_store_t *s = open_store();
    upload(s, 0, *B);
    upload(s, 1, *B);
    stream(s, *B);
    tsr_error_t err;
    ck_assert_msg(tsr_tile_store_flush(s, &err) == 0, "%s", err.msg);
    return s;
}

START_TEST(test_row_cache_same_values) {
    tsr_rng_t r = {.s = 4242};
    int64_t B;
    tsr_tile_store_t *s = flushed_store(&r, &B);
    tsr_error_t err;
    tsr_tile_store_compact(s);
    tsr_tile_store_close(s);
    row_cache_round(&r, B);
    /* more events on the same records, flushed and compacted into new table files */
    s = open_store();
    stream(s, B + D1 / 2);
    ck_assert_msg(tsr_tile_store_flush(s, &err) == 0, "%s", err.msg);
    tsr_tile_store_compact(s);
    tsr_tile_store_close(s);
    row_cache_round(&r, B);
    cleanup();
}
END_TEST

/* The batch record cache changes no value, also across writes to the batch family: reads of
 * a store whose cache is warm (the same reads twice, the second time from the cache), then a
 * write, then the reads again, must equal the same reads of the store reopened without the
 * cache. The writes: the served version uploaded again with other contents, records added to
 * the served version (tsr_tile_upload_begin_add), a new version. Each must change some value,
 * or the comparison would prove nothing. */
static void read_set(tsr_tile_store_t *s, tsr_tile_store_req_t *reqs, tsr_arena_t *arena) {
    tsr_error_t err;
    ck_assert_int_eq(tsr_tile_store_read_many(s, reqs, NREQ, arena, &err), 0);
}

static int same_reads(const tsr_tile_store_req_t *a, const tsr_tile_store_req_t *b, const int *gbi, int strict) {
    for (int i = 0; i < NREQ; i++) {
        if (a[i].status != b[i].status) {
            if (strict) ck_abort_msg("read %d: status %d vs %d", i, a[i].status, b[i].status);
            return 0;
        }
        if (a[i].status) continue;
        for (size_t o = 0; o < nout[gbi[i]]; o++)
            if (!tsr_value_equal(&a[i].out[o], &b[i].out[o])) {
                if (strict) ck_abort_msg("read %d (%s key %.*s) output %zu differs with and without the cache",
                                         i, a[i].gb, (int)a[i].klen, (const char *)a[i].key, o);
                return 0;
            }
    }
    return 1;
}

/* Reads r0 (filling the store's batch or stream record cache) and r1 (the same reads, from
 * it): the cache holds records, answered at least half of the second reads, and changed no
 * value. Returns its counters. */
static tsr_tile_cache_stats_t warm_reads(tsr_tile_store_t *s, int stream_cache_of, tsr_tile_store_req_t *r0,
                                         tsr_tile_store_req_t *r1, const int *gbi, tsr_arena_t *arena) {
    tsr_tile_cache_stats_t st;
    read_set(s, r0, arena);
    read_set(s, r1, arena);
    if (stream_cache_of) tsr_tile_store_stream_cache_stats(s, &st);
    else tsr_tile_store_batch_cache_stats(s, &st);
    ck_assert_msg(st.entries > 0 && st.hits >= (uint64_t)NREQ / 2, "cache: %zu entries, %llu hits", st.entries,
                  (unsigned long long)st.hits);
    same_reads(r0, r1, gbi, 1);
    return st;
}

/* The cache tests' reads: sets of the same NREQ reads, each set with its own outputs. */
static struct {
    tsr_tile_store_req_t reqs[5][NREQ];
    tsr_value_t outs[5][NREQ][MAXOUT];
    char keys[NREQ][16];
    int gbi[NREQ];
} rs;

/* Picks rs's NREQ reads: GroupBys [0, ngb), keys [0, nkeys), q by pick_q after B. */
static void pick_reads(tsr_rng_t *r, int ngb, int nkeys, int64_t B) {
    for (int i = 0; i < NREQ; i++) {
        rs.gbi[i] = (int)tsr_rng_below(r, (uint64_t)ngb);
        size_t kl = key_of((int)tsr_rng_below(r, (uint64_t)nkeys), rs.keys[i]);
        int64_t q = pick_q(r, B);
        for (int v = 0; v < 5; v++)
            rs.reqs[v][i] = (tsr_tile_store_req_t){gbname[rs.gbi[i]], rs.keys[i], kl, q, rs.outs[v][i], 0, NULL};
    }
}

/* Reads set with the store reopened without its batch (stream_cache_of 0) or stream record
 * cache, which it must then not have. */
static void read_without(int stream_cache_of, tsr_tile_store_req_t *set, tsr_arena_t *arena) {
    size_t *opt = stream_cache_of ? &stream_cache : &batch_cache;
    *opt = stream_cache_of ? TSR_TILE_STREAM_CACHE_NONE : TSR_TILE_BATCH_CACHE_NONE;
    tsr_tile_store_t *s = open_store();
    read_set(s, set, arena);
    tsr_tile_cache_stats_t st;
    if (stream_cache_of) tsr_tile_store_stream_cache_stats(s, &st);
    else tsr_tile_store_batch_cache_stats(s, &st);
    ck_assert_uint_eq(st.budget, 0);
    tsr_tile_store_close(s);
    *opt = 0;
}

/* A cache test's start: the flushed store, closed (each step reopens it with the cache it
 * compares), and an arena. Returns B. */
static int64_t cache_test_begin(tsr_rng_t *r, tsr_arena_t *arena) {
    int64_t B;
    tsr_tile_store_close(flushed_store(r, &B));
    tsr_arena_init(arena, 0);
    return B;
}

START_TEST(test_batch_cache_same_values) {
    tsr_rng_t r = {.s = 777};
    tsr_arena_t arena;
    int64_t B = cache_test_begin(&r, &arena);
    tsr_tile_store_t *s;
    tsr_error_t err;
    for (int step = 0; step < 3; step++) {
        int64_t B2 = step == 2 ? B + D1 : B; /* step 2: a new version, a day later */
        pick_reads(&r, 2, NKEYS, B2);        /* GroupBys A and B (uploaded), keys with records */
        batch_cache = (size_t)8 << 20;
        s = open_store();
        tsr_tile_cache_stats_t st = warm_reads(s, 0, rs.reqs[0], rs.reqs[1], rs.gbi, &arena);
        if (step == 0) { /* the served version again, from half the events */
            int n = nev;
            nev /= 2;
            upload(s, 0, B);
            upload(s, 1, B);
            nev = n;
        } else if (step == 1) { /* records added to the served version: a new lifetime IR */
            tsr_tile_upload_t *u;
            for (int g = 0; g < 2; g++) {
                ck_assert_int_eq(tsr_tile_upload_begin_add(s, gbname[g], B, &u, &err), 0);
                void *irs[MAXCOLS];
                for (size_t c = 0; c < ncols[g]; c++) {
                    irs[c] = tsr_malloc(tsr_agg_ir_size(aggs[g][c]));
                    tsr_agg_init(aggs[g][c], irs[c]);
                    for (int e = 0; e < 3; e++)
                        tsr_agg_update(aggs[g][c], irs[c], &evs[e].in[c], NULL, B - 1000 * (e + 1), 900 + (uint64_t)e);
                }
                for (int i = 0; i < NREQ; i++)
                    if (rs.gbi[i] == g && tsr_tile_upload_put(u, rs.keys[i], rs.reqs[0][i].klen, TSR_TILE_LIFETIME,
                                                              INT64_MIN, (const void *const *)irs, &err))
                        ck_abort_msg("upload put: %s", err.msg);
                for (size_t c = 0; c < ncols[g]; c++) {
                    tsr_agg_clear(aggs[g][c], irs[c]);
                    free(irs[c]);
                }
                ck_assert_msg(tsr_tile_upload_commit(u, &err) == 0, "%s", err.msg);
            }
        } else { /* a new version */
            upload(s, 0, B2);
            upload(s, 1, B2);
        }
        read_set(s, rs.reqs[2], &arena); /* after the write, with the cache */
        tsr_tile_store_batch_cache_stats(s, &st);
        ck_assert_msg(st.clears > 0, "no clear after step %d's write", step);
        tsr_tile_store_close(s);
        ck_assert_msg(!same_reads(rs.reqs[1], rs.reqs[2], rs.gbi, 0), "step %d's write changed no value read", step);
        read_without(0, rs.reqs[3], &arena);
        same_reads(rs.reqs[2], rs.reqs[3], rs.gbi, 1);
        tsr_arena_reset(&arena);
    }
    tsr_arena_free(&arena);
    cleanup();
}
END_TEST

/* The stream record cache changes no value, across new events and flushes: reads of a store
 * whose cache is warm (the same reads twice, the second from the cache), then new events on
 * the same records (unflushed: merged from the write-back tables over the cached records),
 * then their flush (new records, their cache entries dropped), must equal the same reads of the store
 * reopened without the cache; and the new events must have changed some value. */
/* warm: the flush reads the records it dropped back into the cache (the default); without,
 * the first reads after it miss */
static void stream_cache_same_values(int warm) {
    setenv("TSR_TILE_STREAM_WARM", warm ? "1" : "0", 1);
    tsr_rng_t r = {.s = 4321};
    tsr_arena_t arena;
    int64_t B = cache_test_begin(&r, &arena);
    tsr_tile_store_t *s;
    tsr_error_t err;
    pick_reads(&r, NGB, NKEYS + 1, B); /* key NKEYS: no records */
    stream_cache = (size_t)8 << 20;
    s = open_store();
    tsr_tile_cache_stats_t st = warm_reads(s, 1, rs.reqs[0], rs.reqs[1], rs.gbi, &arena);
    uint64_t hits = st.hits, misses = st.misses; /* every record these reads need is cached */
    stream(s, B + D1 / 2); /* the second half of the events again: on records cached */
    read_set(s, rs.reqs[2], &arena);
    ck_assert_msg(tsr_tile_store_flush(s, &err) == 0, "%s", err.msg);
    read_set(s, rs.reqs[3], &arena); /* the same keys again */
    /* misses since the cache was warm: only from records a flush dropped — the explicit one,
     * or the flusher's own when the events took longer than a table's age (valgrind) */
    tsr_tile_store_stream_cache_stats(s, &st);
    if (warm)
        ck_assert_msg(st.misses == misses && st.hits > hits, "after the flush: %llu misses, %llu hits",
                      (unsigned long long)(st.misses - misses), (unsigned long long)(st.hits - hits));
    else
        ck_assert_msg(st.misses > misses && st.hits > hits, "after the flush: %llu misses, %llu hits",
                      (unsigned long long)(st.misses - misses), (unsigned long long)(st.hits - hits));
    tsr_tile_store_close(s);
    ck_assert_msg(!same_reads(rs.reqs[1], rs.reqs[3], rs.gbi, 0), "the new events changed no value read");
    read_without(1, rs.reqs[4], &arena);
    same_reads(rs.reqs[2], rs.reqs[4], rs.gbi, 1);
    same_reads(rs.reqs[3], rs.reqs[4], rs.gbi, 1);
    tsr_arena_free(&arena);
    cleanup();
    unsetenv("TSR_TILE_STREAM_WARM");
}

START_TEST(test_stream_cache_same_values) { stream_cache_same_values(1); }
END_TEST

START_TEST(test_stream_cache_same_values_no_warm) { stream_cache_same_values(0); }
END_TEST

/* Readers racing flushes with the stream record cache: while every event is streamed into
 * GroupBy A with a flush after each batch (so generations change under the readers), readers
 * read the 30-day COUNT of every key at one q past all events, again and again. A count may
 * only grow (a stale cached record under a landed flush loses events) and never exceed the
 * final count (a record merged twice) — the final counts read by a store without the cache. */
#define RACE_Q_OUT 8 /* t.a.v1's outputs: SUM x4, LAST x3, COUNT 5h, COUNT 30d */

typedef struct race {
    tsr_tile_store_t *s;
    int64_t q;
    int stop;
    char msg[200];
    int64_t last[NKEYS];
    int64_t reads;
} race_t;

static int64_t count_of(const tsr_value_t *v) { return v->kind == TSR_NULL ? 0 : v->u.l; }

static void *race_reader(void *p) {
    race_t *c = p;
    tsr_arena_t arena;
    tsr_arena_init(&arena, 0);
    tsr_tile_store_req_t reqs[NKEYS];
    tsr_value_t outs[NKEYS][MAXOUT];
    char keys[NKEYS][16];
    for (int k = 0; k < NKEYS; k++) c->last[k] = 0;
    while (!__atomic_load_n(&c->stop, __ATOMIC_ACQUIRE) && !c->msg[0]) {
        for (int k = 0; k < NKEYS; k++)
            reqs[k] = (tsr_tile_store_req_t){gbname[0], keys[k], key_of(k, keys[k]), c->q, outs[k], 0, NULL};
        tsr_arena_reset(&arena);
        tsr_error_t err;
        if (tsr_tile_store_read_many(c->s, reqs, NKEYS, &arena, &err)) {
            snprintf(c->msg, sizeof c->msg, "read_many: %.150s", err.msg);
            break;
        }
        for (int k = 0; k < NKEYS; k++) {
            if (reqs[k].status) {
                snprintf(c->msg, sizeof c->msg, "key %d: %.150s", k, reqs[k].error);
                break;
            }
            int64_t n = count_of(&outs[k][RACE_Q_OUT]);
            if (n < c->last[k]) {
                snprintf(c->msg, sizeof c->msg, "key %d: count %lld after %lld", k, (long long)n,
                         (long long)c->last[k]);
                break;
            }
            c->last[k] = n;
        }
        c->reads++;
    }
    tsr_arena_free(&arena);
    return NULL;
}

START_TEST(test_stream_cache_readers_race_flushes) {
    tsr_rng_t r = {.s = 5150};
    int64_t B = gen_events(&r);
    int64_t q = B + 2 * D1 + 1;
    wb_budget = 1; /* a flush after every batch */
    tsr_tile_store_t *s = open_store();
    upload(s, 0, B);
    race_t c[2] = {{s, q, 0, "", {0}, 0}, {s, q, 0, "", {0}, 0}};
    pthread_t t[2];
    for (int i = 0; i < 2; i++) ck_assert_int_eq(pthread_create(&t[i], NULL, race_reader, &c[i]), 0);
    tsr_tile_event_t batch[8];
    char keys[8][16];
    int nb = 0;
    for (int i = 0; i < nev; i++) { /* GroupBy A only, batches of 8 */
        if (evs[i].ts < B) continue;
        size_t kl = key_of(evs[i].key, keys[nb]);
        batch[nb++] = (tsr_tile_event_t){keys[nb - 1], kl, evs[i].ts, evs[i].seq, evs[i].in, NULL};
        if (nb == 8 || i == nev - 1) {
            tsr_error_t err;
            if (tsr_tile_store_apply(s, gbname[0], batch, (size_t)nb, "topic/0", i + 1, NULL, &err))
                ck_abort_msg("apply: %s", err.msg);
            nb = 0;
        }
    }
    tsr_error_t err;
    if (nb && tsr_tile_store_apply(s, gbname[0], batch, (size_t)nb, "topic/0", nev, NULL, &err))
        ck_abort_msg("apply: %s", err.msg);
    ck_assert_msg(tsr_tile_store_flush(s, &err) == 0, "%s", err.msg);
    for (int i = 0; i < 2; i++) __atomic_store_n(&c[i].stop, 1, __ATOMIC_RELEASE);
    for (int i = 0; i < 2; i++) pthread_join(t[i], NULL);
    for (int i = 0; i < 2; i++) ck_assert_msg(!c[i].msg[0], "reader %d: %s", i, c[i].msg);
    tsr_tile_cache_stats_t st;
    tsr_tile_store_stream_cache_stats(s, &st);
    ck_assert_msg(st.hits > 0 && c[0].reads > 10, "%llu hits in %lld reads", (unsigned long long)st.hits,
                  (long long)c[0].reads);
    tsr_tile_store_close(s);
    /* the final counts, without the cache: no reader saw more */
    wb_budget = 0;
    stream_cache = TSR_TILE_STREAM_CACHE_NONE;
    s = open_store();
    tsr_arena_t arena;
    tsr_arena_init(&arena, 0);
    tsr_tile_store_req_t reqs[NKEYS];
    tsr_value_t outs[NKEYS][MAXOUT];
    char fkeys[NKEYS][16];
    for (int k = 0; k < NKEYS; k++)
        reqs[k] = (tsr_tile_store_req_t){gbname[0], fkeys[k], key_of(k, fkeys[k]), q, outs[k], 0, NULL};
    ck_assert_int_eq(tsr_tile_store_read_many(s, reqs, NKEYS, &arena, &err), 0);
    int64_t total = 0;
    for (int k = 0; k < NKEYS; k++) {
        ck_assert_int_eq(reqs[k].status, 0);
        int64_t n = count_of(&outs[k][RACE_Q_OUT]);
        total += n;
        for (int i = 0; i < 2; i++)
            ck_assert_msg(c[i].last[k] <= n, "reader %d: key %d count %lld, final %lld", i, k, (long long)c[i].last[k],
                          (long long)n);
    }
    ck_assert_msg(total > 0, "no event counted");
    tsr_arena_free(&arena);
    tsr_tile_store_close(s);
    stream_cache = 0;
    cleanup();
}
END_TEST

/* Concurrency: readers of several GroupBys at once while a writer applies to them. */
typedef struct conc {
    tsr_tile_store_t *s;
    int64_t B;
    int stop;
    int failed;
    uint64_t seed;
} conc_t;

static void *reader_main(void *p) {
    conc_t *c = p;
    tsr_rng_t r = {.s = c->seed};
    tsr_arena_t arena;
    tsr_arena_init(&arena, 0);
    tsr_tile_store_req_t reqs[40];
    tsr_value_t outs[40][MAXOUT];
    char keys[40][16];
    for (int it = 0; it < 300 && !__atomic_load_n(&c->stop, __ATOMIC_ACQUIRE); it++) {
        for (int i = 0; i < 40; i++) {
            int g = (int)tsr_rng_below(&r, NGB);
            size_t kl = key_of((int)tsr_rng_below(&r, NKEYS), keys[i]);
            reqs[i] = (tsr_tile_store_req_t){gbname[g], keys[i], kl, c->B + tsr_rng_range(&r, 0, 2 * D1), outs[i], 0, NULL};
        }
        tsr_arena_reset(&arena);
        tsr_error_t err;
        if (tsr_tile_store_read_many(c->s, reqs, 40, &arena, &err)) __atomic_store_n(&c->failed, 1, __ATOMIC_RELEASE);
        for (int i = 0; i < 40; i++)
            if (reqs[i].status) __atomic_store_n(&c->failed, 1, __ATOMIC_RELEASE);
    }
    tsr_arena_free(&arena);
    return NULL;
}

START_TEST(test_many_concurrent) {
    wb_budget = 1; /* flushes all the time */
    tsr_rng_t r = {.s = 909};
    int64_t B = gen_events(&r);
    tsr_tile_store_t *s = open_store();
    upload(s, 0, B);
    upload(s, 1, B);
    conc_t c = {s, B, 0, 0, 31};
    conc_t c2 = {s, B, 0, 0, 32};
    pthread_t t1, t2;
    ck_assert_int_eq(pthread_create(&t1, NULL, reader_main, &c), 0);
    ck_assert_int_eq(pthread_create(&t2, NULL, reader_main, &c2), 0);
    stream(s, B); /* the writer: this thread */
    __atomic_store_n(&c.stop, 1, __ATOMIC_RELEASE);
    __atomic_store_n(&c2.stop, 1, __ATOMIC_RELEASE);
    pthread_join(t1, NULL);
    pthread_join(t2, NULL);
    ck_assert_int_eq(c.failed, 0);
    ck_assert_int_eq(c2.failed, 0);
    check_many(s, &r, B);
    tsr_tile_store_close(s);
    cleanup();
}
END_TEST

static Suite *read_many_suite(void) {
    Suite *s = suite_create("tile_read_many");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 120);
    tcase_add_loop_test(tc, test_many_equals_single, 0, 2);
    tcase_add_test(tc, test_many_concurrent);
    tcase_add_test(tc, test_row_cache_same_values);
    tcase_add_test(tc, test_batch_cache_same_values);
    tcase_add_test(tc, test_stream_cache_same_values);
    tcase_add_test(tc, test_stream_cache_same_values_no_warm);
    tcase_add_test(tc, test_stream_cache_readers_race_flushes);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return tsr_test_run(read_many_suite()); }
