/*
 * test_tile.c — the online read plan (common/tile.h) against the offline rule: an in-memory
 * model of the tile store (batch lifetime IRs and tail tiles from an "upload" at B, stream
 * tiles of 1d/1h/5m and raw events after B) answers fetches at random q >= B — mid-tile, on
 * hop edges, exactly at event times — and every value must equal the kernel over exactly the
 * events tsr_window_contains selects (SPEC §4/§6: equal for exact ops, doubles 1e-9).
 */
#include "tsr_test.h"

#include <stdlib.h>
#include <string.h>

#include "tsr/agg.h"
#include "tsr/tile.h"
#include "tsr/window.h"

static const int64_t M5 = TSR_TILE_5M, H1 = TSR_TILE_1H, D1 = TSR_TILE_1D;

START_TEST(test_cover_exact_and_small) {
    tsr_rng_t r = {.s = 17 + (uint64_t)_i};
    tsr_tile_span_t sp[512];
    for (int it = 0; it < 20000; it++) {
        int64_t a = tsr_rng_range(&r, -3000, 30000) * M5;
        int64_t b = a + tsr_rng_range(&r, 0, 3 * 288) * M5;
        size_t n = tsr_tile_cover(a, b, sp, 512);
        /* plain checks in the loop: every ck_assert is a write to Check's parent process */
        int ok = n <= 512;
        int64_t t = a;
        for (size_t i = 0; ok && i < n; i++) {
            ok = sp[i].start == t                                   /* contiguous, ascending */
                 && (sp[i].len == D1 || sp[i].len == H1 || sp[i].len == M5)
                 && tsr_floor_div(sp[i].start, sp[i].len) * sp[i].len == sp[i].start;
            t += sp[i].len;
        }
        ok = ok && t == b                                           /* exactly [a, b) */
             /* bounded: whole days + at most 23 hours and 11 five-minute tiles per side */
             && n <= (size_t)((b - a) / D1) + 2 * (23 + 11);
        if (!ok) ck_abort_msg("bad cover of [%lld, %lld): %zu tiles", (long long)a, (long long)b, n);
    }
    /* a few exact shapes */
    ck_assert_uint_eq(tsr_tile_cover(0, D1, sp, 8), 1);
    ck_assert_uint_eq(tsr_tile_cover(M5, H1, sp, 16), 11);
    ck_assert_uint_eq(tsr_tile_cover(23 * H1, D1 + H1 + M5, sp, 16), 3);
    ck_assert_uint_eq(tsr_tile_cover(7, 7, sp, 1), 0);
}
END_TEST

typedef struct ev {
    int64_t ts;
    uint64_t seq;
    int has;            /* 0: a null input */
    int64_t raw;        /* the value, as a long or (raw / 7.0) as a double */
    tsr_value_t v;      /* raw as the current op's input type */
} ev_t;

static ev_t evs[3000];
static int nev;

/* First event with ts >= t (events are sorted by ts). */
static int lower_bound(int64_t t) {
    int lo = 0, hi = nev;
    while (lo < hi) {
        int mid = (lo + hi) / 2;
        if (evs[mid].ts < t) lo = mid + 1;
        else hi = mid;
    }
    return lo;
}

/* IR of the events with ts in [a, b), as the store builds a tile. */
static void ir_range(const tsr_agg_t *agg, void *ir, int64_t a, int64_t b) {
    for (int i = lower_bound(a); i < nev && evs[i].ts < b; i++)
        tsr_agg_update(agg, ir, &evs[i].v, NULL, evs[i].ts, evs[i].seq);
}

static int ev_cmp(const void *pa, const void *pb) {
    const ev_t *a = pa, *b = pb;
    if (a->ts != b->ts) return a->ts < b->ts ? -1 : 1;
    return a->seq < b->seq ? -1 : a->seq > b->seq;
}

/* The online read of tile.h, merging per-piece IRs like the store does. */
static tsr_value_t online_read(const tsr_agg_t *agg, int64_t w, int64_t B, int64_t q,
                               tsr_arena_t *arena) {
    size_t sz = tsr_agg_ir_size(agg);
    uint8_t *acc = tsr_malloc(sz), *piece = tsr_malloc(sz);
    tsr_agg_init(agg, acc);
    int64_t from = B;
    if (w == 0) {
        tsr_agg_init(agg, piece);
        ir_range(agg, piece, INT64_MIN, B); /* batch lifetime IR */
        tsr_agg_merge(agg, acc, piece);
        tsr_agg_clear(agg, piece);
    } else {
        int64_t h = tsr_window_hop(w), s = tsr_window_start(q, w);
        /* 1. batch tail tiles of hop h in [s, B) (they exist from tail_start on) */
        ck_assert(s >= tsr_tile_tail_start(B, w, h));
        for (int64_t t = s; t < B; t += h) {
            tsr_agg_init(agg, piece);
            ir_range(agg, piece, t, t + h);
            tsr_agg_merge(agg, acc, piece);
            tsr_agg_clear(agg, piece);
        }
        if (s > B) from = s;
    }
    /* 2. stream tiles, 3. raw events of q's 5-minute tile */
    int64_t head = tsr_floor_div(q, M5) * M5;
    tsr_tile_span_t sp[256];
    size_t n = from < head ? tsr_tile_cover(from, head, sp, 256) : 0;
    ck_assert(n <= 256);
    for (size_t i = 0; i < n; i++) {
        tsr_agg_init(agg, piece);
        ir_range(agg, piece, sp[i].start, sp[i].start + sp[i].len);
        tsr_agg_merge(agg, acc, piece);
        tsr_agg_clear(agg, piece);
    }
    int64_t raw_from = head > from ? head : from;
    ir_range(agg, acc, raw_from, q);
    tsr_value_t v = tsr_agg_finalize(agg, acc, arena);
    tsr_agg_clear(agg, acc);
    free(acc);
    free(piece);
    return v;
}

START_TEST(test_online_equals_offline) {
    tsr_rng_t r = {.s = 333 + (uint64_t)_i};
    int64_t B = (int64_t)(19000 + tsr_rng_below(&r, 100)) * D1;
    const int64_t windows[] = {0, 7 * TSR_MS_PER_MINUTE, H1, 12 * H1, 36 * H1, D1, 7 * D1, 12 * D1, 30 * D1};
    struct { tsr_op_t op; tsr_type_t t; } ops[] = {
        {TSR_OP_COUNT, TSR_LONG}, {TSR_OP_SUM, TSR_DOUBLE}, {TSR_OP_AVERAGE, TSR_LONG},
        {TSR_OP_MIN, TSR_DOUBLE}, {TSR_OP_LAST, TSR_LONG},  {TSR_OP_FIRST, TSR_LONG},
        {TSR_OP_LAST_K, TSR_LONG}, {TSR_OP_UNIQUE_COUNT, TSR_LONG}, {TSR_OP_VARIANCE, TSR_DOUBLE},
    };
    /* events from B - 40 days to B + 2 days, dense near B, on edges and duplicated */
    nev = 0;
    while (nev < 1000) {
        int64_t ts;
        int pick = (int)tsr_rng_below(&r, 6);
        if (pick == 0) ts = B - tsr_rng_range(&r, 0, 40) * D1;              /* midnights */
        else if (pick == 1) ts = B + tsr_rng_range(&r, -300, 600) * M5;    /* 5m edges */
        else if (pick == 2) ts = B + tsr_rng_range(&r, -2 * D1, 2 * D1);   /* near B */
        else ts = B + tsr_rng_range(&r, -40 * D1, 2 * D1);
        int dup = nev && tsr_rng_below(&r, 8) == 0;
        evs[nev].ts = dup ? evs[nev - 1].ts : ts;
        evs[nev].seq = (uint64_t)nev;
        evs[nev].has = tsr_rng_below(&r, 10) != 0;
        evs[nev].raw = tsr_rng_range(&r, -100, 1000);
        nev++;
    }
    qsort(evs, (size_t)nev, sizeof(ev_t), ev_cmp); /* seq keeps the generation order on ties */
    tsr_arena_t arena;
    tsr_arena_init(&arena, 0);
    for (size_t o = 0; o < sizeof ops / sizeof ops[0]; o++) {
        tsr_agg_spec_t spec = {ops[o].op, ops[o].t, 0, 3, 0, NULL};
        tsr_agg_t *agg;
        tsr_error_t err;
        ck_assert_int_eq(tsr_agg_new(&spec, &agg, &err), 0);
        for (int i = 0; i < nev; i++)
            evs[i].v = !evs[i].has ? tsr_value_null()
                       : ops[o].t == TSR_DOUBLE ? tsr_value_double((double)evs[i].raw / 7.0)
                                                : tsr_value_long(evs[i].raw);
        uint8_t *ir = tsr_malloc(tsr_agg_ir_size(agg));
        for (size_t wi = 0; wi < sizeof windows / sizeof windows[0]; wi++) {
            int64_t w = windows[wi];
            for (int k = 0; k < 25; k++) {
                int64_t q;
                int pick = (int)tsr_rng_below(&r, 4);
                if (pick == 0) q = evs[tsr_rng_below(&r, (uint64_t)nev)].ts;      /* at an event */
                else if (pick == 1) q = B + tsr_rng_range(&r, 0, 2 * 288) * M5;  /* on an edge */
                else if (pick == 2) q = B;
                else q = B + tsr_rng_range(&r, 0, 2 * D1);                       /* mid-tile */
                if (q < B) q = B + (B - q) % D1;
                tsr_arena_reset(&arena);
                tsr_value_t got = online_read(agg, w, B, q, &arena);
                tsr_agg_init(agg, ir);
                for (int i = 0; i < nev; i++)
                    if (tsr_window_contains(q, w, evs[i].ts))
                        tsr_agg_update(agg, ir, &evs[i].v, NULL, evs[i].ts, evs[i].seq);
                tsr_value_t want = tsr_agg_finalize(agg, ir, &arena);
                tsr_agg_clear(agg, ir);
                ck_assert_msg(tsr_value_close(&got, &want), "%s w=%lld q=B+%lld: online != offline",
                              tsr_op_name(ops[o].op), (long long)w, (long long)(q - B));
            }
        }
        free(ir);
        tsr_agg_free(agg);
    }
    tsr_arena_free(&arena);
}
END_TEST

static Suite *tile_suite(void) {
    Suite *s = suite_create("tile");
    TCase *tc = tcase_create("cover");
    tcase_set_timeout(tc, 120);
    tcase_add_loop_test(tc, test_cover_exact_and_small, 0, 3);
    suite_add_tcase(s, tc);
    tc = tcase_create("online");
    tcase_set_timeout(tc, 120);
    tcase_add_loop_test(tc, test_online_equals_offline, 0, 2);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return tsr_test_run(tile_suite()); }
