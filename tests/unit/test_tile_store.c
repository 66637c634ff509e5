/*
 * test_tile_store.c — the RocksDB tile store (worker/tile_store.c) end to end against the
 * offline rule: an upload at B (lifetime IRs and tail tiles computed from the events before
 * B), the events after B streamed in batches with offsets, then fetches at random q >= B
 * (mid-tile, on edges, at event times) — every output equals the kernel over exactly the
 * events tsr_window_contains selects. Also: reopening the store serves the same values and
 * keeps the offset; a new upload replaces the old atomically; an aborted one changes nothing;
 * events before B are skipped. A process killed after streaming (no close, no flush) loses
 * nothing: the reopened store replays its stream log. A write-back flush lands as one table file
 * (records, offsets and marker together; offsets of the older layout in meta still resume; a
 * log already flushed is not replayed twice). Retention: after uploads at B1 then B2
 * and compaction, no record any read at q >= B2 cannot need remains (keys counted by prefix),
 * and reads still equal the offline rule.
 */
#include "tsr_test.h"

#include <dirent.h>
#include <pthread.h>
#include <rocksdb/c.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tsr/agg.h"
#include "tsr/tile.h"
#include "tsr/tile_store.h"
#include "tsr/window.h"

static const int64_t M5 = TSR_TILE_5M, H1 = TSR_TILE_1H, D1 = TSR_TILE_1D;

typedef struct ev {
    int key;
    int64_t ts;
    uint64_t seq;
    tsr_value_t in[3];
} ev_t;

#define NCOLS 3
static ev_t evs[4000];
static int nev;
static tsr_agg_t *aggs[NCOLS];
static const int64_t win0[] = {0, 7 * 60000, H1, 36 * H1};
static const int64_t win1[] = {D1, 12 * D1, 0};
static const int64_t win2[] = {5 * H1, 30 * D1};
static tsr_tile_col_t cols[NCOLS] = {{NULL, 4, win0, 0, -1}, {NULL, 3, win1, 1, -1}, {NULL, 2, win2, 2, -1}};
static char dir[256];
static size_t wb_budget; /* 0: the default write-back budget; 1: flush every batch (background) */

static void make_aggs(void) {
    tsr_agg_spec_t s0 = {TSR_OP_SUM, TSR_DOUBLE, 0, 0, 0, NULL};
    tsr_agg_spec_t s1 = {TSR_OP_LAST, TSR_LONG, 0, 0, 0, NULL};
    tsr_agg_spec_t s2 = {TSR_OP_COUNT, TSR_LONG, 0, 0, 0, NULL};
    tsr_error_t err;
    ck_assert_int_eq(tsr_agg_new(&s0, &aggs[0], &err), 0);
    ck_assert_int_eq(tsr_agg_new(&s1, &aggs[1], &err), 0);
    ck_assert_int_eq(tsr_agg_new(&s2, &aggs[2], &err), 0);
    for (int c = 0; c < NCOLS; c++) cols[c].agg = aggs[c];
}

static tsr_tile_store_t *open_store(void) {
    tsr_tile_store_t *s;
    tsr_error_t err;
    ck_assert_msg(tsr_tile_store_open(dir, &s, &err) == 0, "%s", err.msg);
    if (wb_budget) tsr_tile_store_set_write_back(s, wb_budget);
    tsr_tile_gb_t gb = {"team.gb.v1", NCOLS, cols};
    ck_assert_msg(tsr_tile_store_register(s, &gb, &err) == 0, "%s", err.msg);
    return s;
}

static void key_of(int k, char *buf, size_t *n) { *n = (size_t)snprintf(buf, 16, "user%d", k); }

/* Upload: per key, lifetime IR and tail tiles of each hop from tail_start to B. */
static void upload(tsr_tile_store_t *s, int64_t B, int nkeys) {
    tsr_tile_upload_t *u;
    tsr_error_t err;
    ck_assert_int_eq(tsr_tile_upload_begin(s, "team.gb.v1", B, &u, &err), 0);
    void *irs[NCOLS];
    for (int c = 0; c < NCOLS; c++) irs[c] = tsr_malloc(tsr_agg_ir_size(aggs[c]));
    const int64_t hops[] = {M5, H1, D1};
    const tsr_tile_kind_t kinds[] = {TSR_TILE_TAIL_5M, TSR_TILE_TAIL_1H, TSR_TILE_TAIL_1D};
    for (int k = 0; k < nkeys; k++) {
        char kb[16];
        size_t kl;
        key_of(k, kb, &kl);
        for (int h = -1; h < 3; h++) {
            int64_t lo = INT64_MIN;
            if (h >= 0) {
                int64_t wmax = 0;
                for (int c = 0; c < NCOLS; c++)
                    for (size_t w = 0; w < cols[c].nwin; w++)
                        if (cols[c].windows[w] && tsr_window_hop(cols[c].windows[w]) == hops[h] &&
                            cols[c].windows[w] > wmax)
                            wmax = cols[c].windows[w];
                if (!wmax) continue;
                lo = tsr_tile_tail_start(B, wmax, hops[h]);
            }
            for (int64_t t = lo; h < 0 || t < B; t += (h < 0 ? 0 : hops[h])) {
                int64_t a = h < 0 ? INT64_MIN : t, z = h < 0 ? B : t + hops[h];
                int any = 0;
                for (int c = 0; c < NCOLS; c++) tsr_agg_init(aggs[c], irs[c]);
                for (int i = 0; i < nev; i++) {
                    if (evs[i].key != k || evs[i].ts < a || evs[i].ts >= z) continue;
                    any = 1;
                    for (int c = 0; c < NCOLS; c++)
                        tsr_agg_update(aggs[c], irs[c], &evs[i].in[c], NULL, evs[i].ts, evs[i].seq);
                }
                if (any)
                    ck_assert_int_eq(tsr_tile_upload_put(u, kb, kl, h < 0 ? TSR_TILE_LIFETIME : kinds[h], a,
                                                         (const void *const *)irs, &err), 0);
                for (int c = 0; c < NCOLS; c++) tsr_agg_clear(aggs[c], irs[c]);
                if (h < 0) break;
            }
        }
    }
    for (int c = 0; c < NCOLS; c++) free(irs[c]);
    ck_assert_msg(tsr_tile_upload_commit(u, &err) == 0, "%s", err.msg);
}

/* Streams the events from index `from` on, in batches of up to 50; with_offsets: each batch
 * carries its offset ("topic/0" = index of the next event), as a Kafka consumer's does. */
static const char *stream_gb = "team.gb.v1"; /* the GroupBy stream_from applies to */

static void stream_from(tsr_tile_store_t *s, int64_t B, uint64_t *skipped, int from, int with_offsets) {
    tsr_tile_event_t batch[50];
    char keys[50][16];
    int nb = 0;
    for (int i = from; i < nev; i++) {
        int in_stream = evs[i].ts >= B || (i % 10 == 0); /* some early ones: must be skipped */
        if (in_stream) {
            size_t kl;
            key_of(evs[i].key, keys[nb], &kl);
            batch[nb] = (tsr_tile_event_t){keys[nb], kl, evs[i].ts, evs[i].seq, evs[i].in, NULL};
            nb++;
        }
        if (nb == 50 || (i == nev - 1 && (nb || with_offsets))) {
            tsr_error_t err;
            ck_assert_int_eq(tsr_tile_store_apply(s, stream_gb, batch, (size_t)nb,
                                                  with_offsets ? "topic/0" : NULL, i + 1, skipped, &err), 0);
            nb = 0;
        }
    }
}

static void stream(tsr_tile_store_t *s, int64_t B, uint64_t *skipped) {
    stream_from(s, B, skipped, 0, 1);
}

/* Streams events [from, to) (batches of 50, offsets as stream_from's). */
static void stream_range(tsr_tile_store_t *s, int64_t B, int from, int to, int with_offsets) {
    int all = nev;
    uint64_t skipped = 0;
    nev = to;
    stream_from(s, B, &skipped, from, with_offsets);
    nev = all;
}

/* A fresh store with 4 keys uploaded at B and events [0, to) streamed with offsets. */
static tsr_tile_store_t *streamed_store(int64_t B, int to) {
    tsr_tile_store_t *s = open_store();
    upload(s, B, 4);
    stream_range(s, B, 0, to, 1);
    return s;
}

static void check_reads(tsr_tile_store_t *s, tsr_rng_t *r, int64_t B, int nkeys, int nq) {
    tsr_arena_t arena;
    tsr_arena_init(&arena, 0);
    tsr_value_t out[16];
    void *ir = tsr_malloc(256);
    for (int n = 0; n < nq; n++) {
        int k = (int)tsr_rng_below(r, (uint64_t)nkeys);
        int64_t q;
        int pick = (int)tsr_rng_below(r, 4);
        if (pick == 0) q = evs[tsr_rng_below(r, (uint64_t)nev)].ts;
        else if (pick == 1) q = B + tsr_rng_range(r, 0, 2 * 288) * M5;
        else if (pick == 2) q = B;
        else q = B + tsr_rng_range(r, 0, 2 * D1);
        if (q < B) q = B + (B - q) % D1;
        char kb[16];
        size_t kl;
        key_of(k, kb, &kl);
        tsr_error_t err;
        tsr_arena_reset(&arena);
        ck_assert_msg(tsr_tile_store_read(s, "team.gb.v1", kb, kl, q, out, &arena, &err) == 0, "%s", err.msg);
        size_t o = 0;
        for (int c = 0; c < NCOLS; c++)
            for (size_t w = 0; w < cols[c].nwin; w++, o++) {
                ck_assert(tsr_agg_ir_size(aggs[c]) <= 256);
                tsr_agg_init(aggs[c], ir);
                for (int i = 0; i < nev; i++)
                    if (evs[i].key == k && tsr_window_contains(q, cols[c].windows[w], evs[i].ts))
                        tsr_agg_update(aggs[c], ir, &evs[i].in[c], NULL, evs[i].ts, evs[i].seq);
                tsr_value_t want = tsr_agg_finalize(aggs[c], ir, &arena);
                tsr_agg_clear(aggs[c], ir);
                if (!tsr_value_close(&out[o], &want)) {
                    tsr_buf_t a, b;
                    tsr_buf_init(&a);
                    tsr_buf_init(&b);
                    tsr_value_to_json(&out[o], &a);
                    tsr_value_to_json(&want, &b);
                    ck_abort_msg("key %d col %d w=%lld q=B+%lld: store %s, offline %s", k, c,
                                 (long long)cols[c].windows[w], (long long)(q - B), tsr_buf_cstr(&a),
                                 tsr_buf_cstr(&b));
                }
            }
    }
    free(ir);
    tsr_arena_free(&arena);
}

/* Reopens the store: it resumes at the end of the stream (offset nev) and nq reads are right. */
static void check_reopened(tsr_rng_t *r, int64_t B, int nq) {
    tsr_tile_store_t *s = open_store();
    ck_assert_int_eq(tsr_tile_store_offset(s, "team.gb.v1", "topic/0"), nev);
    check_reads(s, r, B, 4, nq);
    tsr_tile_store_close(s);
}

static int64_t gen_events(tsr_rng_t *r) {
    snprintf(dir, sizeof dir, "/tmp/tsr_test_tiles_XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
    make_aggs();
    int64_t B = (int64_t)(19500 + tsr_rng_below(r, 50)) * D1;
    int nkeys = 4;
    nev = 0;
    while (nev < 1500) {
        int pick = (int)tsr_rng_below(r, 5);
        int64_t ts = pick == 0 ? B - tsr_rng_range(r, 0, 35) * D1
                     : pick == 1 ? B + tsr_rng_range(r, -300, 600) * M5
                                 : B + tsr_rng_range(r, -35 * D1, 2 * D1);
        evs[nev].key = (int)tsr_rng_below(r, (uint64_t)nkeys);
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

static void cleanup(void) {
    for (int c = 0; c < NCOLS; c++) tsr_agg_free(aggs[c]);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    ck_assert_int_eq(system(cmd), 0);
}

START_TEST(test_store_equals_offline) {
    wb_budget = _i == 1 ? 1 : 0; /* iteration 1: every batch flushed by the flusher thread */
    tsr_rng_t r = {.s = 2024 + (uint64_t)_i};
    int64_t B = gen_events(&r);
    int nkeys = 4;
    tsr_tile_store_t *s = open_store();
    ck_assert(tsr_tile_store_batch_end(s, "team.gb.v1") == INT64_MIN);
    upload(s, B, nkeys);
    ck_assert(tsr_tile_store_batch_end(s, "team.gb.v1") == B);
    uint64_t skipped = 0;
    stream(s, B, &skipped);
    ck_assert_uint_gt(skipped, 0);
    ck_assert_int_eq(tsr_tile_store_offset(s, "team.gb.v1", "topic/0"), nev);
    check_reads(s, &r, B, nkeys, 150);

    /* reopen: the same values, the same offset */
    tsr_tile_store_close(s);
    s = open_store();
    ck_assert(tsr_tile_store_batch_end(s, "team.gb.v1") == B);
    ck_assert_int_eq(tsr_tile_store_offset(s, "team.gb.v1", "topic/0"), nev);
    check_reads(s, &r, B, nkeys, 60);

    /* an aborted upload of a later version changes nothing */
    tsr_tile_upload_t *u;
    tsr_error_t err;
    ck_assert_int_eq(tsr_tile_upload_begin(s, "team.gb.v1", B + D1, &u, &err), 0);
    tsr_tile_upload_abort(u);
    ck_assert(tsr_tile_store_batch_end(s, "team.gb.v1") == B);
    check_reads(s, &r, B, nkeys, 30);
    /* reading before B is refused with a clear error */
    tsr_value_t out[16];
    tsr_arena_t a;
    tsr_arena_init(&a, 0);
    ck_assert_int_eq(tsr_tile_store_read(s, "team.gb.v1", "user1", 5, B - 1, out, &a, &err), TSR_EINVAL);
    ck_assert_int_eq(tsr_tile_store_read(s, "nope", "user1", 5, B, out, &a, &err), TSR_ENOTFOUND);
    tsr_arena_free(&a);
    tsr_tile_store_close(s);
    cleanup();
}
END_TEST

/* A worker gaining partitions of the served version adds their records in place: an add
 * upload of B leaves every record of B readable (a plain re-upload of B starts from empty). */
START_TEST(test_upload_add_keeps_served_version) {
    tsr_rng_t r = {.s = 4242};
    int64_t B = gen_events(&r);
    tsr_tile_store_t *s = streamed_store(B, nev);
    tsr_tile_upload_t *u;
    tsr_error_t err;
    ck_assert_int_eq(tsr_tile_upload_begin_add(s, "team.gb.v1", B, &u, &err), 0);
    ck_assert_int_eq(tsr_tile_upload_commit(u, &err), 0);
    check_reads(s, &r, B, 4, 60);
    ck_assert_int_eq(tsr_tile_upload_begin_add(s, "team.gb.v1", B, &u, &err), 0);
    tsr_tile_upload_abort(u);
    check_reads(s, &r, B, 4, 30);
    tsr_tile_store_close(s);
    cleanup();
}
END_TEST

/* Lifetime-only records for keys "k<i>", i < n: SUM and LAST of one value i * mult (COUNT
 * 1). Returns the upload, not committed (add: into the served version). */
static tsr_tile_upload_t *life_upload(tsr_tile_store_t *s, int64_t B, int n, int mult, int add) {
    tsr_tile_upload_t *u;
    tsr_error_t err;
    ck_assert_int_eq((add ? tsr_tile_upload_begin_add : tsr_tile_upload_begin)(s, "team.gb.v1", B, &u, &err), 0);
    void *irs[NCOLS];
    for (int c = 0; c < NCOLS; c++) irs[c] = tsr_malloc(tsr_agg_ir_size(aggs[c]));
    for (int i = 0; i < n; i++) {
        char k[16];
        size_t kl = (size_t)snprintf(k, sizeof k, "k%05d", i);
        tsr_value_t in[NCOLS] = {tsr_value_double((double)i * mult), tsr_value_long((int64_t)i * mult),
                                 tsr_value_long(1)};
        for (int c = 0; c < NCOLS; c++) {
            tsr_agg_init(aggs[c], irs[c]);
            tsr_agg_update(aggs[c], irs[c], &in[c], NULL, B - 1000, (uint64_t)i);
        }
        if (tsr_tile_upload_put(u, k, kl, TSR_TILE_LIFETIME, INT64_MIN, (const void *const *)irs, &err))
            ck_abort_msg("upload put: %s", err.msg);
        for (int c = 0; c < NCOLS; c++) tsr_agg_clear(aggs[c], irs[c]);
    }
    for (int c = 0; c < NCOLS; c++) free(irs[c]);
    return u;
}

/* Every key (or every 7th) read at B: the lifetime SUM (output 0) is i * mult. */
static void check_life(tsr_tile_store_t *s, int64_t B, int n, int mult, const char *when) {
    tsr_arena_t a;
    tsr_arena_init(&a, 0);
    tsr_value_t out[16];
    tsr_error_t err;
    for (int i = 0; i < n; i += i < 10 || i > n - 10 ? 1 : 7) {
        char k[16];
        size_t kl = (size_t)snprintf(k, sizeof k, "k%05d", i);
        tsr_arena_reset(&a);
        ck_assert_msg(tsr_tile_store_read(s, "team.gb.v1", k, kl, B, out, &a, &err) == 0, "%s", err.msg);
        if (out[0].kind != TSR_DOUBLE || out[0].u.d != (double)i * mult)
            ck_abort_msg("%s: key %d lifetime sum %s, want %d", when, i,
                         out[0].kind == TSR_DOUBLE ? "wrong" : "missing", i * mult);
    }
    tsr_arena_free(&a);
}

/* The served B uploaded again, with more records than one write of an upload (4096): its
 * records go under B's other version id, so the served values stay readable while it runs and
 * after it fails, and its commit switches them at once (also after a restart, and back again
 * by the next upload of B). Records added to the served version land in it. */
START_TEST(test_reupload_served_version) {
    tsr_rng_t r = {.s = 6060};
    int64_t B = gen_events(&r);
    const int n = 6000;
    tsr_tile_store_t *s = open_store();
    tsr_error_t err;
    ck_assert_int_eq(tsr_tile_upload_commit(life_upload(s, B, n, 1, 0), &err), 0);
    check_life(s, B, n, 1, "first upload");
    tsr_tile_upload_t *u = life_upload(s, B, n, 2, 0); /* wrote 4096 records already */
    check_life(s, B, n, 1, "during an upload of the same B");
    tsr_tile_upload_abort(u);
    check_life(s, B, n, 1, "after a failed upload of the same B");
    u = life_upload(s, B, n, 3, 0);
    check_life(s, B, n, 1, "during the next upload of the same B");
    ck_assert_int_eq(tsr_tile_upload_commit(u, &err), 0);
    ck_assert(tsr_tile_store_batch_end(s, "team.gb.v1") == B);
    check_life(s, B, n, 3, "after its commit");
    tsr_tile_store_close(s);
    s = open_store();
    ck_assert(tsr_tile_store_batch_end(s, "team.gb.v1") == B);
    check_life(s, B, n, 3, "after a restart");
    u = life_upload(s, B, n, 4, 0); /* back to B's first id */
    check_life(s, B, n, 3, "during a third upload of B");
    ck_assert_int_eq(tsr_tile_upload_commit(u, &err), 0);
    check_life(s, B, n, 4, "after the third commit");
    ck_assert_int_eq(tsr_tile_upload_commit(life_upload(s, B, 3, 5, 1), &err), 0); /* added in place */
    check_life(s, B, 3, 5, "after records added to the served version");
    tsr_tile_store_close(s);
    s = open_store();
    check_life(s, B, 3, 5, "after records added, and a restart");
    tsr_tile_store_close(s);
    cleanup();
}
END_TEST

/* Readers racing commits: two threads read keys of every version while this one commits new
 * versions of them (each key's lifetime SUM is i * mult of the version read; q after every
 * version's B): every read sees
 * one version whole — never a key without its batch record, which a read that took the old
 * version just before a commit deleted it would see. */
typedef struct switch_race {
    tsr_tile_store_t *s;
    int64_t B;
    int stop, bad;
    long reads;
    char msg[200];
} switch_race_t;

static void *switch_reader(void *p) {
    switch_race_t *r = p;
    tsr_arena_t a;
    tsr_arena_init(&a, 0);
    tsr_tile_store_req_t rq[16];
    tsr_value_t out[16][16];
    char keys[16][16];
    for (int it = 0; !__atomic_load_n(&r->stop, __ATOMIC_ACQUIRE) && it < 2000000; it++) {
        for (int j = 0; j < 16; j++) {
            int i = (it * 16 + j) % 40;
            size_t kl = (size_t)snprintf(keys[j], sizeof keys[j], "k%05d", i);
            rq[j] = (tsr_tile_store_req_t){"team.gb.v1", keys[j], kl, r->B + 400 * D1, out[j], 0, NULL};
        }
        tsr_arena_reset(&a);
        tsr_error_t err;
        if (tsr_tile_store_read_many(r->s, rq, 16, &a, &err)) continue;
        for (int j = 0; j < 16; j++) {
            int i = (it * 16 + j) % 40;
            double v = out[j][0].kind == TSR_DOUBLE ? out[j][0].u.d : -1;
            if (rq[j].status || v < 0 || (i > 0 && (v / i != (double)(int)(v / i) || v / i < 1))) {
                if (!__atomic_exchange_n(&r->bad, 1, __ATOMIC_ACQ_REL))
                    snprintf(r->msg, sizeof r->msg, "key %d: status %d, lifetime sum %g", i, rq[j].status, v);
            }
        }
        r->reads += 16;
    }
    tsr_arena_free(&a);
    return NULL;
}

START_TEST(test_readers_race_version_switch) {
    tsr_rng_t rng = {.s = 7070};
    int64_t B = gen_events(&rng);
    tsr_tile_store_t *s = open_store();
    tsr_error_t err;
    ck_assert_int_eq(tsr_tile_upload_commit(life_upload(s, B, 40, 1, 0), &err), 0);
    switch_race_t r[2];
    pthread_t t[2];
    for (int k = 0; k < 2; k++) {
        memset(&r[k], 0, sizeof r[k]);
        r[k].s = s;
        r[k].B = B;
        ck_assert_int_eq(pthread_create(&t[k], NULL, switch_reader, &r[k]), 0);
    }
    /* a new day, then the same day again (its other version id), and so on: no id comes
     * back (a read descheduled over A, B, A would take A for unchanged; real uploads are
     * seconds apart) */
    for (int v = 2; v < 300; v++)
        ck_assert_int_eq(tsr_tile_upload_commit(life_upload(s, B + (v / 2) * D1, 40, v, 0), &err), 0);
    for (int k = 0; k < 2; k++) {
        __atomic_store_n(&r[k].stop, 1, __ATOMIC_RELEASE);
        pthread_join(t[k], NULL);
        ck_assert_msg(!r[k].bad, "reader %d: %s", k, r[k].msg);
        ck_assert_int_gt(r[k].reads, 0);
    }
    tsr_tile_store_close(s);
    cleanup();
}
END_TEST

/* kill -9 after streaming: the child never closes (nor flushes) the store.
 *   Iterations 0 and 1 (batches with Kafka offsets): the source is the log. The reopened store
 *   holds some prefix of the stream with the offset it reaches (iteration 1 flushes every
 *   batch, so the prefix is not empty); a consumer resuming at that offset brings it to exactly
 *   the full stream — nothing lost, nothing counted twice.
 *   Iteration 2 (batches without offsets): each apply is logged, and the reopened store
 *   replays the log: everything is there. */
START_TEST(test_crash_loses_nothing) {
    wb_budget = _i == 1 ? 1 : 0; /* iteration 1: every batch flushed by the flusher thread */
    int with_offsets = _i < 2;
    tsr_rng_t r = {.s = 77 + (uint64_t)_i};
    int64_t B = gen_events(&r);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        tsr_tile_store_t *s = open_store();
        upload(s, B, 4);
        uint64_t skipped = 0;
        stream_from(s, B, &skipped, 0, with_offsets);
        if (with_offsets && tsr_tile_store_offset(s, "team.gb.v1", "topic/0") != nev) _exit(3);
        _exit(0); /* no close: like kill -9 */
    }
    int st = 0;
    ck_assert_int_eq(waitpid(pid, &st, 0), pid);
    ck_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    tsr_tile_store_t *s = open_store();
    ck_assert(tsr_tile_store_batch_end(s, "team.gb.v1") == B);
    if (with_offsets) {
        int64_t o = tsr_tile_store_offset(s, "team.gb.v1", "topic/0");
        ck_assert_int_le(o, nev);
        if (_i == 1) ck_assert_int_gt(o, 0);
        uint64_t skipped = 0;
        stream_from(s, B, &skipped, o < 0 ? 0 : (int)o, 1); /* the consumer resumes */
        ck_assert_int_eq(tsr_tile_store_offset(s, "team.gb.v1", "topic/0"), nev);
    }
    check_reads(s, &r, B, 4, 120);
    /* and again after the state was flushed (close) */
    tsr_tile_store_close(s);
    s = open_store();
    if (with_offsets) ck_assert_int_eq(tsr_tile_store_offset(s, "team.gb.v1", "topic/0"), nev);
    check_reads(s, &r, B, 4, 40);
    tsr_tile_store_close(s);
    cleanup();
}
END_TEST

/* Before any upload a read folds the key's raw events (stored and still in the write-back
 * table) and must equal the offline rule as well. */
START_TEST(test_no_upload) {
    wb_budget = _i == 1 ? 1 : 0;
    tsr_rng_t r = {.s = 99 + (uint64_t)_i};
    int64_t B = gen_events(&r);
    nev = 400; /* raw reads are O(events): keep it small */
    tsr_tile_store_t *s = open_store();
    tsr_tile_event_t batch[64];
    char keys[64][16];
    int nb = 0;
    for (int i = 0; i < nev; i++) {
        size_t kl;
        key_of(evs[i].key, keys[nb], &kl);
        batch[nb] = (tsr_tile_event_t){keys[nb], kl, evs[i].ts, evs[i].seq, evs[i].in, NULL};
        if (++nb == 64 || i == nev - 1) {
            tsr_error_t err;
            uint64_t skipped = 0;
            ck_assert_int_eq(tsr_tile_store_apply(s, "team.gb.v1", batch, (size_t)nb, "topic/0", i + 1, &skipped, &err), 0);
            ck_assert_uint_eq(skipped, 0);
            nb = 0;
        }
    }
    check_reads(s, &r, B, 4, 40);
    tsr_tile_store_close(s);
    s = open_store();
    check_reads(s, &r, B, 4, 40);
    tsr_tile_store_close(s);
    cleanup();
}
END_TEST

/* Keys of the store by prefix (tag, and for 't' the record type), with the stream records
 * starting before `before` counted apart. Opens the directory read-only, without the merge
 * operator: the store must be compacted (no merge operands left). Every key must be in its
 * column family (tile_store.h): 'm..B' in meta, 'b' in batch, 't' records and the flush state
 * 't' gb \0 \0\0\0 'F' / 'L' / 'o' name (marker, log mark, offsets) in stream, 'l' in log,
 * nothing in default; 'm' keys other than 'm..B' (the flush state before session 6) in stream
 * too, counted apart (a store of this code writes none). */
typedef struct key_counts {
    int meta, batch_old, batch_cur, log, day, hour, stream_before, state, old_state;
} key_counts_t;

static key_counts_t count_keys(int64_t b_cur, int64_t before) {
    key_counts_t n = {0};
    rocksdb_options_t *o = rocksdb_options_create();
    char *e = NULL;
    const char *names[5] = {"default", "meta", "batch", "stream", "log"};
    const rocksdb_options_t *cfo[5] = {o, o, o, o, o};
    rocksdb_column_family_handle_t *cfh[5] = {NULL};
    rocksdb_t *db = rocksdb_open_for_read_only_column_families(o, dir, 5, names, cfo, cfh, 0, &e);
    ck_assert_msg(e == NULL, "%s", e);
    rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
    for (int f = 0; f < 5; f++) {
        rocksdb_iterator_t *it = rocksdb_create_iterator_cf(db, ro, cfh[f]);
        for (rocksdb_iter_seek_to_first(it); rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
            size_t kl;
            const uint8_t *k = (const uint8_t *)rocksdb_iter_key(it, &kl);
            const uint8_t *z = memchr(k, 0, kl);
            ck_assert_ptr_nonnull(z);
            size_t at = (size_t)(z - k) + 1;
            int want = k[0] == 'm' ? (at < kl && k[at] == 'B' ? 1 : 3)
                     : k[0] == 'b' ? 2
                     : k[0] == 't' ? 3
                     : k[0] == 'l' ? 4
                                   : -1;
            if (want != f) ck_abort_msg("key tag %c in column family %s", k[0], names[f]);
            if (k[0] == 'm') {
                n.meta++;
                if (want == 3) n.old_state++;
            } else if (k[0] == 'l') n.log++;
            else if (k[0] == 'b') {
                uint64_t v = 0;
                for (int i = 0; i < 8; i++) v = v << 8 | k[at + (size_t)i];
                if ((int64_t)(v ^ (UINT64_C(1) << 63)) == b_cur) n.batch_cur++;
                else n.batch_old++;
            } else if (k[0] == 't' && at + 3 <= kl && k[at] == 0 && k[at + 1] == 0 && k[at + 2] == 0) {
                if (at + 3 == kl || k[at + 3] == 0 || !strchr("FLWo", k[at + 3]))
                    ck_abort_msg("unknown stream state key");
                n.state++;
            } else if (k[0] == 't') {
                if (kl < at + 11) ck_abort_msg("short stream record key");
                uint64_t v = 0;
                for (int i = 0; i < 8; i++) v = v << 8 | k[kl - 8 + (size_t)i];
                int64_t start = (int64_t)(v ^ (UINT64_C(1) << 63));
                if (k[kl - 9] == 'D') n.day++;
                else n.hour++;
                if (start < before) n.stream_before++;
            } else {
                ck_abort_msg("unknown key tag %c", k[0]);
            }
        }
        char *ie = NULL;
        rocksdb_iter_get_error(it, &ie);
        ck_assert_msg(ie == NULL, "%s", ie);
        rocksdb_iter_destroy(it);
    }
    rocksdb_readoptions_destroy(ro);
    for (int f = 0; f < 5; f++) rocksdb_column_family_handle_destroy(cfh[f]);
    rocksdb_close(db);
    rocksdb_options_destroy(o);
    return n;
}

START_TEST(test_retention) {
    wb_budget = _i == 1 ? 1 : 0; /* iteration 1: every batch flushed by the flusher thread */
    tsr_rng_t r = {.s = 4242 + (uint64_t)_i};
    int64_t B1 = gen_events(&r), B2 = B1 + D1;
    tsr_tile_store_t *s = open_store();
    upload(s, B1, 4);
    uint64_t skipped = 0;
    stream(s, B1, &skipped);
    tsr_tile_store_compact(s);
    tsr_tile_store_close(s);
    key_counts_t n = count_keys(B1, B1);
    ck_assert_int_gt(n.batch_cur, 0);
    ck_assert_int_gt(n.day, 1);
    ck_assert_int_gt(n.hour, 24);
    ck_assert_int_eq(n.stream_before, 0);
    ck_assert_int_eq(n.log, 0);
    ck_assert_int_ge(n.state, 4); /* 'F', 'L', 'W', 'o' topic/0 */
    ck_assert_int_eq(n.old_state, 0);
    int day1 = n.day, hour1 = n.hour, state1 = n.state;

    /* the next day's upload: its batch covers every event before B2 */
    s = open_store();
    upload(s, B2, 4);
    check_reads(s, &r, B2, 4, 60);
    tsr_tile_store_compact(s); /* merges operands into values ... */
    tsr_tile_store_compact(s); /* ... which the retention filter sees */
    check_reads(s, &r, B2, 4, 60);
    tsr_tile_store_close(s);
    n = count_keys(B2, B2);
    ck_assert_int_eq(n.batch_old, 0);      /* B1's batch records: deleted at commit */
    ck_assert_int_gt(n.batch_cur, 0);
    ck_assert_int_eq(n.stream_before, 0);  /* no day/hour record before B2 */
    ck_assert_int_lt(n.day, day1);
    ck_assert_int_lt(n.hour, hour1);
    ck_assert_int_gt(n.hour, 0);           /* the stream after B2 stays */
    ck_assert_int_eq(n.log, 0);
    ck_assert_int_eq(n.state, state1);     /* the retention filter keeps the flush state */
    ck_assert_int_eq(n.old_state, 0);
    s = open_store();
    check_reads(s, &r, B2, 4, 60);
    tsr_tile_store_close(s);
    cleanup();
}
END_TEST

/* A directory of the one-family layout (keys in the default column family) is refused, not
 * read as an empty store. */
START_TEST(test_old_layout_refused) {
    tsr_rng_t r = {.s = 77};
    gen_events(&r);
    rocksdb_options_t *o = rocksdb_options_create();
    rocksdb_options_set_create_if_missing(o, 1);
    char *e = NULL;
    rocksdb_t *db = rocksdb_open(o, dir, &e);
    ck_assert_msg(e == NULL, "%s", e);
    rocksdb_writeoptions_t *wo = rocksdb_writeoptions_create();
    static const char k[] = "mteam.gb.v1\0B", v[8] = {0};
    rocksdb_put(db, wo, k, sizeof k - 1, v, sizeof v, &e);
    ck_assert_msg(e == NULL, "%s", e);
    rocksdb_writeoptions_destroy(wo);
    rocksdb_close(db);
    rocksdb_options_destroy(o);
    tsr_tile_store_t *s = NULL;
    tsr_error_t err = {0};
    ck_assert_int_eq(tsr_tile_store_open(dir, &s, &err), TSR_EIO);
    ck_assert_ptr_null(s);
    ck_assert_msg(strstr(err.msg, "default column family") != NULL, "%s", err.msg);
    cleanup();
}
END_TEST

/* ---- the write-back flush as an ingested table file (worker/src/tile_store.c flush_imm) */

/* The store's RocksDB opened directly (the store closed): all five families, no merge
 * operator — only plain puts ('m' keys, log records) are read or written through it. */
typedef struct raw_db {
    rocksdb_t *db;
    rocksdb_options_t *o;
    rocksdb_column_family_handle_t *cf[5]; /* default, meta, batch, stream, log */
} raw_db_t;

static void raw_open(raw_db_t *r) {
    static const char *const names[5] = {"default", "meta", "batch", "stream", "log"};
    r->o = rocksdb_options_create();
    const rocksdb_options_t *cfo[5] = {r->o, r->o, r->o, r->o, r->o};
    char *e = NULL;
    r->db = rocksdb_open_column_families(r->o, dir, 5, names, cfo, r->cf, &e);
    ck_assert_msg(e == NULL, "%s", e);
}

static void raw_close(raw_db_t *r) {
    for (int f = 0; f < 5; f++) rocksdb_column_family_handle_destroy(r->cf[f]);
    rocksdb_close(r->db);
    rocksdb_options_destroy(r->o);
}

/* The key of the flush state tag (name) of team.gb.v1: 't' gb \0 \0\0\0 tag name (this
 * layout), or with old != 0 'm' gb \0 tag name (before session 6; offsets in meta before 5). */
static size_t state_key(char *k, size_t cap, int old, char tag, const char *name) {
    return old ? (size_t)snprintf(k, cap, "mteam.gb.v1%c%c%s", 0, tag, name)
               : (size_t)snprintf(k, cap, "tteam.gb.v1%c%c%c%c%c%s", 0, 0, 0, 0, tag, name);
}

/* The int64 value (sign bit flipped, big-endian; 'F' as stored) of state key tag name (old:
 * state_key) in family f, or INT64_MIN when absent. */
static int64_t raw_get_m(raw_db_t *r, int f, int old, char tag, const char *name) {
    char k[64];
    size_t kl = state_key(k, sizeof k, old, tag, name);
    char *e = NULL;
    size_t vl;
    rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
    char *v = rocksdb_get_cf(r->db, ro, r->cf[f], k, kl, &vl, &e);
    rocksdb_readoptions_destroy(ro);
    ck_assert_msg(e == NULL, "%s", e);
    if (!v) return INT64_MIN;
    ck_assert_uint_eq(vl, 8);
    uint64_t x = 0;
    for (int i = 0; i < 8; i++) x = x << 8 | (uint8_t)v[i];
    rocksdb_free(v);
    return tag == 'F' ? (int64_t)x : (int64_t)(x ^ (UINT64_C(1) << 63));
}

static void raw_put_m(raw_db_t *r, int f, int old, char tag, const char *name, int64_t val) {
    char k[64], v[8];
    size_t kl = state_key(k, sizeof k, old, tag, name);
    uint64_t x = (uint64_t)val ^ (UINT64_C(1) << 63);
    for (int i = 0; i < 8; i++) v[i] = (char)(x >> (56 - 8 * i));
    char *e = NULL;
    rocksdb_writeoptions_t *wo = rocksdb_writeoptions_create();
    rocksdb_put_cf(r->db, wo, r->cf[f], k, kl, v, 8, &e);
    rocksdb_writeoptions_destroy(wo);
    ck_assert_msg(e == NULL, "%s", e);
}

static void raw_delete_m(raw_db_t *r, int f, int old, char tag, const char *name) {
    char k[64];
    size_t kl = state_key(k, sizeof k, old, tag, name);
    char *e = NULL;
    rocksdb_writeoptions_t *wo = rocksdb_writeoptions_create();
    rocksdb_delete_cf(r->db, wo, r->cf[f], k, kl, &e);
    rocksdb_writeoptions_destroy(wo);
    ck_assert_msg(e == NULL, "%s", e);
}

/* Keys of family f starting with prefix p (n bytes). */
static int raw_count(raw_db_t *r, int f, const char *p, size_t n) {
    rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
    rocksdb_iterator_t *it = rocksdb_create_iterator_cf(r->db, ro, r->cf[f]);
    int cnt = 0;
    for (rocksdb_iter_seek(it, p, n); rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
        size_t kl;
        const char *k = rocksdb_iter_key(it, &kl);
        if (kl < n || memcmp(k, p, n) != 0) break;
        cnt++;
    }
    rocksdb_iter_destroy(it);
    rocksdb_readoptions_destroy(ro);
    return cnt;
}

/* A flush of batches with offsets lands as one table file in the stream family: the records,
 * the offsets they reach and the marker together (none in meta, nothing left in dir/ingest);
 * a reopen resumes at those offsets; a store whose offsets are in meta (the layout before)
 * resumes there too, and the first flush after shadows them. A stale file in dir/ingest is
 * removed at open. */
START_TEST(test_flush_table_file) {
    tsr_rng_t r = {.s = 5150};
    int64_t B = gen_events(&r);
    int half = nev / 2;
    tsr_tile_store_t *s = streamed_store(B, half);
    tsr_error_t err;
    ck_assert_msg(tsr_tile_store_flush(s, &err) == 0, "%s", err.msg);
    ck_assert_int_eq(tsr_tile_store_offset(s, "team.gb.v1", "topic/0"), half);
    char path[400];
    snprintf(path, sizeof path, "%s/ingest", dir);
    DIR *d = opendir(path);
    ck_assert_ptr_nonnull(d);
    int nfiles = 0;
    for (struct dirent *de; (de = readdir(d)) != NULL;)
        if (de->d_name[0] != '.') nfiles++;
    closedir(d);
    ck_assert_int_eq(nfiles, 0);
    tsr_tile_store_close(s);

    raw_db_t db;
    raw_open(&db);
    ck_assert_int_eq(raw_get_m(&db, 3, 0, 'o', "topic/0"), half);  /* stream family */
    ck_assert(raw_get_m(&db, 1, 1, 'o', "topic/0") == INT64_MIN); /* not meta */
    ck_assert(raw_get_m(&db, 3, 1, 'o', "topic/0") == INT64_MIN); /* not the old key */
    ck_assert(raw_get_m(&db, 3, 0, 'F', "") >= 1);
    ck_assert(raw_get_m(&db, 3, 1, 'F', "") == INT64_MIN);
    ck_assert(raw_get_m(&db, 3, 0, 'L', "") != INT64_MIN);
    /* one table file in the stream family: from the marker to the last record, all within
     * the GroupBy's 't' gb \0 range */
    const rocksdb_livefiles_t *lf = rocksdb_livefiles(db.db);
    int nstream = 0;
    for (int i = 0; i < rocksdb_livefiles_count(lf); i++) {
        if (strcmp(rocksdb_livefiles_column_family_name(lf, i), "stream") != 0) continue;
        nstream++;
        size_t sl, ll;
        const char *sk = rocksdb_livefiles_smallestkey(lf, i, &sl);
        const char *lk = rocksdb_livefiles_largestkey(lf, i, &ll);
        static const char mk[] = "tteam.gb.v1\0\0\0\0F", gp[] = "tteam.gb.v1";
        ck_assert(sl == sizeof mk - 1 && memcmp(sk, mk, sl) == 0);
        ck_assert(ll > sizeof gp && memcmp(lk, gp, sizeof gp) == 0); /* 't' gb \0 ... */
        ck_assert_uint_gt(rocksdb_livefiles_entries(lf, i), 3);
    }
    rocksdb_livefiles_destroy(lf);
    ck_assert_int_eq(nstream, 1);
    /* the layout before: the offset in meta only */
    raw_delete_m(&db, 3, 0, 'o', "topic/0");
    raw_put_m(&db, 1, 1, 'o', "topic/0", half);
    raw_close(&db);
    snprintf(path, sizeof path, "%s/ingest/0-99.sst", dir); /* a crashed flush's file */
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs("partial", f);
    fclose(f);

    s = open_store();
    ck_assert_int_eq(access(path, F_OK), -1); /* removed at open */
    ck_assert_int_eq(tsr_tile_store_offset(s, "team.gb.v1", "topic/0"), half);
    stream_range(s, B, half, nev, 1); /* the consumer resumes there */
    check_reads(s, &r, B, 4, 60);
    tsr_tile_store_close(s);
    check_reopened(&r, B, 60); /* the stream family's offset shadows the stale one in meta */
    cleanup();
}
END_TEST

/* Batches without offsets: the flush ingests their tiles with the log high mark 'L', then
 * range-deletes the log records in a second write. A crash between the two leaves log records
 * the file already holds: the replay must skip them (each event counted once), and log records
 * written after a reopen must number above the mark (a later replay keeps them). */
START_TEST(test_flush_log_mark) {
    tsr_rng_t r = {.s = 6160};
    int64_t B = gen_events(&r);
    int half = nev / 2;
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) { /* logs the first half, no flush */
        tsr_tile_store_t *s = open_store();
        upload(s, B, 4);
        stream_range(s, B, 0, half, 0);
        _exit(0);
    }
    int st = 0;
    ck_assert_int_eq(waitpid(pid, &st, 0), pid);
    ck_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    /* save the log records, as a crash after the ingest would leave them */
    raw_db_t db;
    raw_open(&db);
    rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
    rocksdb_iterator_t *it = rocksdb_create_iterator_cf(db.db, ro, db.cf[4]);
    tsr_buf_t saved; /* (klen, key, vlen, value)* */
    tsr_buf_init(&saved);
    int nlog = 0;
    for (rocksdb_iter_seek_to_first(it); rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
        size_t kl, vl;
        const char *k = rocksdb_iter_key(it, &kl);
        const char *v = rocksdb_iter_value(it, &vl);
        tsr_buf_append(&saved, &kl, sizeof kl);
        tsr_buf_append(&saved, k, kl);
        tsr_buf_append(&saved, &vl, sizeof vl);
        tsr_buf_append(&saved, v, vl);
        nlog++;
    }
    rocksdb_iter_destroy(it);
    rocksdb_readoptions_destroy(ro);
    raw_close(&db);
    ck_assert_int_gt(nlog, 0);

    tsr_tile_store_t *s = open_store(); /* replays the log, then flushes it at close */
    tsr_tile_store_close(s);
    raw_open(&db);
    static const char lp[] = "lteam.gb.v1";
    ck_assert_int_eq(raw_count(&db, 4, lp, sizeof lp), 0);
    ck_assert_int_eq(raw_get_m(&db, 3, 0, 'L', ""), nlog);
    rocksdb_writeoptions_t *wo = rocksdb_writeoptions_create();
    for (size_t at = 0; at < saved.len;) { /* the range deletion lost */
        size_t kl, vl;
        memcpy(&kl, saved.data + at, sizeof kl);
        const char *k = (const char *)saved.data + at + sizeof kl;
        at += sizeof kl + kl;
        memcpy(&vl, saved.data + at, sizeof vl);
        const char *v = (const char *)saved.data + at + sizeof vl;
        at += sizeof vl + vl;
        char *e = NULL;
        rocksdb_put_cf(db.db, wo, db.cf[4], k, kl, v, vl, &e);
        ck_assert_msg(e == NULL, "%s", e);
    }
    rocksdb_writeoptions_destroy(wo);
    raw_close(&db);
    tsr_buf_free(&saved);

    pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) { /* the stale log below the mark is skipped; the second half is logged */
        tsr_tile_store_t *s2 = open_store();
        stream_range(s2, B, half, nev, 0);
        _exit(0);
    }
    ck_assert_int_eq(waitpid(pid, &st, 0), pid);
    ck_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    s = open_store(); /* replays the second half (numbered above the mark) */
    check_reads(s, &r, B, 4, 80);
    tsr_tile_store_close(s);
    s = open_store();
    check_reads(s, &r, B, 4, 40);
    tsr_tile_store_close(s);
    cleanup();
}
END_TEST

/* A flush that cannot write its table file (dir/ingest is not a directory) fails and stores
 * nothing: reads still merge the table, the stored offset does not move, and after a reopen
 * the consumer resumes from the start — exactly once. Once the directory is back, flushes land. */
START_TEST(test_flush_failure_stores_nothing) {
    tsr_rng_t r = {.s = 7170};
    int64_t B = gen_events(&r);
    tsr_tile_store_t *s = streamed_store(B, nev);
    uint64_t skipped = 0;
    char path[300], cmd[700];
    snprintf(path, sizeof path, "%s/ingest", dir);
    snprintf(cmd, sizeof cmd, "rm -rf '%s' && touch '%s'", path, path);
    ck_assert_int_eq(system(cmd), 0);
    tsr_error_t err;
    ck_assert_int_eq(tsr_tile_store_flush(s, &err), TSR_EIO);
    ck_assert_int_eq(tsr_tile_store_offset(s, "team.gb.v1", "topic/0"), nev); /* in memory */
    check_reads(s, &r, B, 4, 60); /* the table being flushed is still merged */
    tsr_tile_store_close(s);      /* its flush fails too */
    snprintf(cmd, sizeof cmd, "rm -f '%s' && mkdir '%s'", path, path);
    ck_assert_int_eq(system(cmd), 0);
    s = open_store();
    ck_assert_int_eq(tsr_tile_store_offset(s, "team.gb.v1", "topic/0"), -1); /* nothing stored */
    stream(s, B, &skipped); /* the consumer replays everything */
    ck_assert_msg(tsr_tile_store_flush(s, &err) == 0, "%s", err.msg);
    check_reads(s, &r, B, 4, 60);
    tsr_tile_store_close(s);
    check_reopened(&r, B, 40);
    DIR *d = opendir(path);
    ck_assert_ptr_nonnull(d);
    int nfiles = 0;
    for (struct dirent *de; (de = readdir(d)) != NULL;)
        if (de->d_name[0] != '.') nfiles++;
    closedir(d);
    ck_assert_int_eq(nfiles, 0);
    cleanup();
}
END_TEST

/* A count of family f's table files from its aggregated table properties ("# merge operands=",
 * "# range deletions="). */
static long raw_table_count(raw_db_t *r, int f, const char *label) {
    char *p = rocksdb_property_value_cf(r->db, r->cf[f], "rocksdb.aggregated-table-properties");
    ck_assert_ptr_nonnull(p);
    const char *m = strstr(p, label);
    ck_assert_msg(m != NULL, "%s: %s", label, p);
    long n = strtol(m + strlen(label), NULL, 10);
    rocksdb_free(p);
    return n;
}

/* Merge operands in the stream family's table files. */
static long raw_merge_operands(raw_db_t *r) { return raw_table_count(r, 3, "# merge operands="); }

/* Range deletions in the batch family's table files (each upload commit flushes the family). */
static long batch_range_deletions(void) {
    raw_db_t r;
    raw_open(&r);
    long n = raw_table_count(&r, 2, "# range deletions=");
    raw_close(&r);
    return n;
}

/* An upload deletes a version's records by range only where there are some: the first upload
 * of a version writes no range deletion (every read in its table file would seek it first),
 * a version replacing another and a version uploaded again do; aborting a version that wrote
 * nothing deletes nothing. The served values are right throughout. */
START_TEST(test_upload_range_deletions) {
    tsr_rng_t r = {.s = 5150};
    int64_t B = gen_events(&r);
    tsr_tile_store_t *s = streamed_store(B, nev);
    check_reads(s, &r, B, 4, 30);
    tsr_tile_upload_t *u;
    tsr_error_t err;
    ck_assert_int_eq(tsr_tile_upload_begin(s, "team.gb.v1", B + D1, &u, &err), 0);
    tsr_tile_upload_abort(u); /* B + 1d wrote nothing: nothing to delete */
    tsr_tile_store_close(s);
    ck_assert_int_eq(batch_range_deletions(), 0);
    s = open_store();
    check_reads(s, &r, B, 4, 30);
    upload(s, B, 4); /* B again: its records exist, so they are deleted first */
    check_reads(s, &r, B, 4, 30);
    tsr_tile_store_close(s);
    ck_assert_int_eq(batch_range_deletions(), 1);
    cleanup();
}
END_TEST

/* Moves state key tag name of the stream family from this layout's key to the one before
 * session 6 ('m' gb \0 tag name), value bytes unchanged: the store as session 5 left it. */
static void raw_to_old(raw_db_t *r, char tag, const char *name) {
    char k[64], ko[64];
    size_t kl = state_key(k, sizeof k, 0, tag, name), kol = state_key(ko, sizeof ko, 1, tag, name);
    char *e = NULL;
    size_t vl;
    rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
    char *v = rocksdb_get_cf(r->db, ro, r->cf[3], k, kl, &vl, &e);
    rocksdb_readoptions_destroy(ro);
    ck_assert_msg(e == NULL, "%s", e);
    ck_assert_ptr_nonnull(v);
    rocksdb_writeoptions_t *wo = rocksdb_writeoptions_create();
    rocksdb_put_cf(r->db, wo, r->cf[3], ko, kol, v, vl, &e);
    ck_assert_msg(e == NULL, "%s", e);
    rocksdb_delete_cf(r->db, wo, r->cf[3], k, kl, &e);
    ck_assert_msg(e == NULL, "%s", e);
    rocksdb_writeoptions_destroy(wo);
    rocksdb_free(v);
}

/* A store written before session 6 keeps its flush state as 'm' gb \0 'F' / 'L' / 'o' name in
 * the stream family, and has no 'W': it opens, its consumer resumes at the old offset, its next
 * flush takes the next generation, writes the new keys (which then shadow the old ones) and,
 * not knowing which records exist, merge operands; reads equal the offline rule throughout. */
START_TEST(test_flush_old_state_keys) {
    tsr_rng_t r = {.s = 8180};
    int64_t B = gen_events(&r);
    int half = nev / 2;
    tsr_tile_store_t *s = streamed_store(B, half);
    tsr_error_t err;
    ck_assert_msg(tsr_tile_store_flush(s, &err) == 0, "%s", err.msg);
    tsr_tile_store_close(s);
    raw_db_t db;
    raw_open(&db);
    int64_t gen0 = raw_get_m(&db, 3, 0, 'F', "");
    ck_assert(gen0 >= 1);
    raw_to_old(&db, 'F', "");
    raw_to_old(&db, 'L', "");
    raw_to_old(&db, 'o', "topic/0");
    raw_delete_m(&db, 3, 0, 'W', ""); /* no 'W' before session 6 */
    ck_assert(raw_get_m(&db, 3, 0, 'o', "topic/0") == INT64_MIN);
    ck_assert_int_eq(raw_merge_operands(&db), 0); /* a fresh store's first flush: puts */
    ck_assert(raw_get_m(&db, 3, 1, 'F', "") == gen0);
    raw_close(&db);

    s = open_store();
    ck_assert_int_eq(tsr_tile_store_offset(s, "team.gb.v1", "topic/0"), half);
    stream_range(s, B, half, nev, 1); /* the consumer resumes there */
    check_reads(s, &r, B, 4, 40);  /* the stored half (old keys) and the table */
    ck_assert_msg(tsr_tile_store_flush(s, &err) == 0, "%s", err.msg);
    check_reads(s, &r, B, 4, 60);
    tsr_tile_store_close(s);
    raw_open(&db);
    ck_assert(raw_get_m(&db, 3, 0, 'F', "") == gen0 + 1); /* the generation went on */
    ck_assert_int_eq(raw_get_m(&db, 3, 0, 'o', "topic/0"), nev);
    ck_assert_int_eq(raw_get_m(&db, 3, 1, 'o', "topic/0"), half); /* stale, shadowed */
    /* records written before, without 'W': which exist is unknown, so merge operands */
    ck_assert_int_gt(raw_merge_operands(&db), 0);
    raw_close(&db);
    check_reopened(&r, B, 60);
    cleanup();
}
END_TEST

/* The flush files of two GroupBys do not overlap: RocksDB places them side by side in one
 * level (with the flush state keyed 'm' gb \0 ..., each file spanned from 'm' gb to 't' gb and
 * the second landed a level above the first). A GroupBy's first flush writes puts ('W'). */
START_TEST(test_flush_files_disjoint) {
    tsr_rng_t r = {.s = 9190};
    int64_t B = gen_events(&r);
    tsr_tile_store_t *s = open_store();
    tsr_error_t err;
    tsr_tile_gb_t gb0 = {"team.gb.v0", NCOLS, cols};
    ck_assert_msg(tsr_tile_store_register(s, &gb0, &err) == 0, "%s", err.msg);
    upload(s, B, 4);
    uint64_t skipped = 0;
    stream(s, B, &skipped);
    stream_gb = "team.gb.v0";
    stream(s, B, &skipped);
    stream_gb = "team.gb.v1";
    ck_assert_msg(tsr_tile_store_flush(s, &err) == 0, "%s", err.msg);
    check_reads(s, &r, B, 4, 40);
    tsr_tile_store_close(s);
    raw_db_t db;
    raw_open(&db);
    const rocksdb_livefiles_t *lf = rocksdb_livefiles(db.db);
    int nstream = 0, level = -1;
    for (int i = 0; i < rocksdb_livefiles_count(lf); i++) {
        if (strcmp(rocksdb_livefiles_column_family_name(lf, i), "stream") != 0) continue;
        nstream++;
        if (level < 0) level = rocksdb_livefiles_level(lf, i);
        ck_assert_int_eq(rocksdb_livefiles_level(lf, i), level);
    }
    rocksdb_livefiles_destroy(lf);
    ck_assert_int_eq(nstream, 2);
    ck_assert_int_gt(level, 0);
    /* the first flush of a GroupBy: no record exists, every one is written as a put */
    ck_assert_int_eq(raw_merge_operands(&db), 0);
    raw_close(&db);
    cleanup();
}
END_TEST

static Suite *tile_store_suite(void) {
    Suite *s = suite_create("tile_store");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 120);
    tcase_add_loop_test(tc, test_store_equals_offline, 0, 2);
    tcase_add_loop_test(tc, test_crash_loses_nothing, 0, 3);
    tcase_add_test(tc, test_upload_add_keeps_served_version);
    tcase_add_test(tc, test_reupload_served_version);
    tcase_add_test(tc, test_readers_race_version_switch);
    tcase_add_test(tc, test_upload_range_deletions);
    tcase_add_loop_test(tc, test_retention, 0, 2);
    tcase_add_loop_test(tc, test_no_upload, 0, 2);
    tcase_add_test(tc, test_old_layout_refused);
    tcase_add_test(tc, test_flush_table_file);
    tcase_add_test(tc, test_flush_log_mark);
    tcase_add_test(tc, test_flush_old_state_keys);
    tcase_add_test(tc, test_flush_files_disjoint);
    tcase_add_test(tc, test_flush_failure_stores_nothing);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return tsr_test_run(tile_store_suite()); }
