/*
 * test_tile_writeback.c — the tile store's write-back table under memory pressure
 * (worker/tile_store.c "the write-back table"): many keys streamed in Kafka-sized batches
 * into stores whose write-back budgets differ — the default (everything stays in the table),
 * 2 MiB (a table is written every few batches: its memory chunks go back to the store's pool
 * and the next table takes them again), and 1 byte (every batch written by the flusher) —
 * then reads at random q >= B of random keys: every value equals the offline rule (the kernel
 * over exactly the events tsr_window_contains selects), in every store, also after a reopen.
 * Two GroupBys: one of plain numeric tiles (COUNT, SUM, AVERAGE: no clearing at free) and
 * one with a LAST column (tiles owning heap memory: cleared at free; ASan checks both).
 */
#include "tsr_test.h"

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

#define NCOLS 3
#define NKEYS 1500
#define NEV 30000
#define BATCH 500

typedef struct ev {
    int key;
    int64_t ts;
    uint64_t seq;
    tsr_value_t in[NCOLS];
} ev_t;

static ev_t *evs;
static int *by_key;       /* event indexes grouped by key: by_key[kstart[k] .. kstart[k + 1]) */
static int kstart[NKEYS + 1];
static const int64_t wins[] = {H1, D1, 30 * D1};

typedef struct gbdef {
    const char *name;
    tsr_agg_t *aggs[NCOLS];
    tsr_tile_col_t cols[NCOLS];
} gbdef_t;
static gbdef_t gbs[2];

static void make_gbs(void) {
    const tsr_agg_spec_t specs[2][NCOLS] = {
        {{TSR_OP_COUNT, TSR_DOUBLE, 0, 0, 0, NULL},
         {TSR_OP_SUM, TSR_DOUBLE, 0, 0, 0, NULL},
         {TSR_OP_AVERAGE, TSR_DOUBLE, 0, 0, 0, NULL}},
        {{TSR_OP_SUM, TSR_DOUBLE, 0, 0, 0, NULL},
         {TSR_OP_LAST, TSR_DOUBLE, 0, 0, 0, NULL},
         {TSR_OP_COUNT, TSR_DOUBLE, 0, 0, 0, NULL}}};
    gbs[0].name = "wb.plain.v1";
    gbs[1].name = "wb.mixed.v1";
    tsr_error_t err;
    for (int g = 0; g < 2; g++)
        for (int c = 0; c < NCOLS; c++) {
            ck_assert_int_eq(tsr_agg_new(&specs[g][c], &gbs[g].aggs[c], &err), 0);
            gbs[g].cols[c] = (tsr_tile_col_t){gbs[g].aggs[c], 3, wins, c, -1};
        }
}

static void free_gbs(void) {
    for (int g = 0; g < 2; g++)
        for (int c = 0; c < NCOLS; c++) tsr_agg_free(gbs[g].aggs[c]);
}

static void key_of(int k, char *buf, size_t *n) { *n = (size_t)snprintf(buf, 16, "key%d", k); }

/* Events after B over ~30 hours, in time order with jitter (a live topic), keys uniform. */
static int64_t gen_events(tsr_rng_t *r) {
    int64_t B = (int64_t)(19600 + tsr_rng_below(r, 50)) * D1;
    evs = tsr_malloc(NEV * sizeof(ev_t));
    for (int i = 0; i < NEV; i++) {
        ev_t *e = &evs[i];
        e->key = (int)tsr_rng_below(r, NKEYS);
        e->ts = B + (int64_t)i * (30 * H1 / NEV) + tsr_rng_range(r, 0, 4000);
        e->seq = (uint64_t)i;
        int64_t x = tsr_rng_range(r, -50, 5000);
        int null = tsr_rng_below(r, 20) == 0;
        for (int c = 0; c < NCOLS; c++)
            e->in[c] = null ? tsr_value_null() : tsr_value_double((double)(x + c) / 8.0);
    }
    memset(kstart, 0, sizeof kstart);
    for (int i = 0; i < NEV; i++) kstart[evs[i].key + 1]++;
    for (int k = 0; k < NKEYS; k++) kstart[k + 1] += kstart[k];
    by_key = tsr_malloc(NEV * sizeof(int));
    int fill[NKEYS];
    memcpy(fill, kstart, sizeof fill);
    for (int i = 0; i < NEV; i++) by_key[fill[evs[i].key]++] = i;
    return B;
}

static tsr_tile_store_t *open_store(const char *dir, size_t budget, int64_t B, int upload) {
    tsr_tile_store_t *s;
    tsr_error_t err;
    ck_assert_msg(tsr_tile_store_open(dir, &s, &err) == 0, "%s", err.msg);
    if (budget) tsr_tile_store_set_write_back(s, budget);
    for (int g = 0; g < 2; g++) {
        tsr_tile_gb_t gb = {gbs[g].name, NCOLS, gbs[g].cols};
        ck_assert_msg(tsr_tile_store_register(s, &gb, &err) == 0, "%s", err.msg);
        if (!upload) continue;
        tsr_tile_upload_t *u; /* an empty upload at B: every value comes from the stream */
        ck_assert_int_eq(tsr_tile_upload_begin(s, gbs[g].name, B, &u, &err), 0);
        ck_assert_msg(tsr_tile_upload_commit(u, &err) == 0, "%s", err.msg);
    }
    return s;
}

static void stream(tsr_tile_store_t *s) {
    tsr_tile_event_t *batch = tsr_malloc(BATCH * sizeof(tsr_tile_event_t));
    char(*keys)[16] = tsr_malloc(BATCH * 16);
    for (int i0 = 0; i0 < NEV; i0 += BATCH) {
        int nb = 0;
        for (int i = i0; i < NEV && i < i0 + BATCH; i++, nb++) {
            size_t kl;
            key_of(evs[i].key, keys[nb], &kl);
            batch[nb] = (tsr_tile_event_t){keys[nb], kl, evs[i].ts, evs[i].seq, evs[i].in, NULL};
        }
        tsr_error_t err;
        for (int g = 0; g < 2; g++)
            if (tsr_tile_store_apply(s, gbs[g].name, batch, (size_t)nb, "topic/0", i0 + nb, NULL,
                                     &err))
                ck_abort_msg("apply: %s", err.msg);
    }
    free(keys);
    free(batch);
}

static void check_reads(tsr_tile_store_t *s, tsr_rng_t *r, int64_t B, int nq) {
    tsr_arena_t arena;
    tsr_arena_init(&arena, 0);
    tsr_value_t out[NCOLS * 3];
    void *ir = tsr_malloc(256);
    for (int n = 0; n < nq; n++) {
        int k = (int)tsr_rng_below(r, NKEYS);
        int pick = (int)tsr_rng_below(r, 3);
        int64_t q = pick == 0   ? evs[tsr_rng_below(r, NEV)].ts
                    : pick == 1 ? B + tsr_rng_range(r, 0, 31 * 12) * M5
                                : B + tsr_rng_range(r, 0, 31 * H1);
        char kb[16];
        size_t kl;
        key_of(k, kb, &kl);
        for (int g = 0; g < 2; g++) {
            tsr_error_t err;
            tsr_arena_reset(&arena);
            if (tsr_tile_store_read(s, gbs[g].name, kb, kl, q, out, &arena, &err))
                ck_abort_msg("read: %s", err.msg);
            size_t o = 0;
            for (int c = 0; c < NCOLS; c++)
                for (size_t w = 0; w < 3; w++, o++) {
                    const tsr_agg_t *a = gbs[g].aggs[c];
                    if (tsr_agg_ir_size(a) > 256) ck_abort_msg("IR too large for the test");
                    tsr_agg_init(a, ir);
                    for (int j = kstart[k]; j < kstart[k + 1]; j++) {
                        const ev_t *e = &evs[by_key[j]];
                        if (tsr_window_contains(q, wins[w], e->ts))
                            tsr_agg_update(a, ir, &e->in[c], NULL, e->ts, e->seq);
                    }
                    tsr_value_t want = tsr_agg_finalize(a, ir, &arena);
                    tsr_agg_clear(a, ir);
                    if (!tsr_value_close(&out[o], &want)) {
                        tsr_buf_t x, y;
                        tsr_buf_init(&x);
                        tsr_buf_init(&y);
                        tsr_value_to_json(&out[o], &x);
                        tsr_value_to_json(&want, &y);
                        ck_abort_msg("%s key %d col %d w=%lld q=B+%lld: store %s, offline %s",
                                     gbs[g].name, k, c, (long long)wins[w], (long long)(q - B),
                                     tsr_buf_cstr(&x), tsr_buf_cstr(&y));
                    }
                }
        }
    }
    free(ir);
    tsr_arena_free(&arena);
}

/* Every GroupBy's offset of "topic/0" (held or stored) is want. */
static void expect_offsets(tsr_tile_store_t *s, int64_t want) {
    for (int g = 0; g < 2; g++) ck_assert_int_eq(tsr_tile_store_offset(s, gbs[g].name, "topic/0"), want);
}

/* Removes the store's directory, frees the generated events and GroupBys. */
static void fixture_free(const char *dir) {
    tsr_test_rm_rf(dir);
    free(evs);
    free(by_key);
    free_gbs();
}

START_TEST(test_budgets_equal_offline) {
    /* iteration 0: the default budget; 1: 2 MiB (tables written every few batches, their
     * chunks recycled through the pool); 2: 1 byte (every batch written by the flusher) */
    const size_t budget = _i == 0 ? 0 : _i == 1 ? (size_t)2 << 20 : 1;
    tsr_rng_t r = {.s = 77 + (uint64_t)_i};
    make_gbs();
    int64_t B = gen_events(&r);
    char dir[] = "/tmp/tsr_test_wb_XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    tsr_tile_store_t *s = open_store(dir, budget, B, 1);
    stream(s);
    expect_offsets(s, NEV);
    check_reads(s, &r, B, 200);
    tsr_tile_store_close(s);
    /* reopened: everything written with its offsets, the same values */
    s = open_store(dir, budget, B, 0);
    expect_offsets(s, NEV);
    check_reads(s, &r, B, 100);
    tsr_tile_store_close(s);
    fixture_free(dir);
}
END_TEST

/* A GroupBy gone quiet has its write-back table written by the flusher 10 s after its last
 * apply (docs/tile-store.md "Writes" 2): a process that then dies has its events and offsets
 * stored. A child applies the stream with offsets and dies without closing the store (as
 * kill -9), once 1 s after the apply (nothing stored yet: Kafka is the log) and once 13 s
 * after (everything stored). The flusher sleeps until that deadline rather than polling. */
START_TEST(test_quiet_groupby_flushed) {
    tsr_rng_t r = {.s = 4040};
    make_gbs();
    int64_t B = gen_events(&r);
    char dir[] = "/tmp/tsr_test_wb_XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    tsr_tile_store_t *s = open_store(dir, 0, B, 1);
    tsr_tile_store_close(s);
    const unsigned waits[] = {1, 13};
    for (int w = 0; w < 2; w++) {
        pid_t pid = fork();
        ck_assert_int_ge(pid, 0);
        if (pid == 0) {
            tsr_tile_store_t *c = open_store(dir, 0, B, 0);
            stream(c);
            sleep(waits[w]);
            _exit(0); /* no close: like kill -9 */
        }
        int st = 0;
        ck_assert_int_eq(waitpid(pid, &st, 0), pid);
        ck_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
        s = open_store(dir, 0, B, 0);
        expect_offsets(s, w == 0 ? -1 : NEV);
        if (w == 1) check_reads(s, &r, B, 100);
        tsr_tile_store_close(s);
    }
    fixture_free(dir);
}
END_TEST

static Suite *writeback_suite(void) {
    Suite *s = suite_create("tile_writeback");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 300);
    tcase_add_loop_test(tc, test_budgets_equal_offline, 0, 3);
    tcase_add_test(tc, test_quiet_groupby_flushed);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return tsr_test_run(writeback_suite()); }
