/*
 * test_swag.c — the sliding-window aggregator (common/swag.c) against brute force: for random
 * event streams and query times, every window's value equals the kernel run over exactly the
 * events the SPEC §4 rule selects (tsr_window_contains), for exact ops bit for bit (doubles
 * within 1e-9 relative).
 */
#include "tsr_test.h"

#include <string.h>

#include "tsr/agg.h"
#include "tsr/swag.h"
#include "tsr/window.h"

typedef struct ev {
    int64_t ts;
    uint64_t seq;
    tsr_value_t v;
} ev_t;

static const int64_t MIN = TSR_MS_PER_MINUTE, HOUR = TSR_MS_PER_HOUR, DAY = TSR_MS_PER_DAY;

static void run_case(tsr_rng_t *rng, tsr_op_t op, tsr_type_t type, int64_t w) {
    tsr_agg_spec_t spec = {.op = op, .input_type = type, .k = 3};
    tsr_agg_t *agg;
    tsr_error_t err;
    ck_assert_msg(tsr_agg_new(&spec, &agg, &err) == 0, "%s", err.msg);
    size_t irsz = tsr_agg_ir_size(agg);
    tsr_swag_t *s = tsr_swag_new(agg, w);
    tsr_arena_t arena;
    tsr_arena_init(&arena, 0);
    uint8_t *ir = tsr_malloc(irsz);
    static const char *words[] = {"a", "b", "c", "dd"};

    for (int key = 0; key < 6; key++) {
        tsr_swag_reset(s);
        int n = (int)tsr_rng_below(rng, 200);
        ev_t *evs = tsr_malloc((size_t)(n + 1) * sizeof(*evs));
        int64_t span = w ? 3 * w + 2 * DAY : 5 * DAY;
        int64_t base = tsr_rng_range(rng, -2 * DAY, 400 * DAY);
        for (int i = 0; i < n; i++) {
            int64_t t = base + tsr_rng_range(rng, 0, span);
            if (tsr_rng_below(rng, 4) == 0) t = tsr_floor_div(t, 5 * MIN) * 5 * MIN; /* hop edge */
            evs[i].ts = t;
            if (tsr_rng_below(rng, 10) == 0) evs[i].v = tsr_value_null();
            else if (type == TSR_LONG) evs[i].v = tsr_value_long(tsr_rng_range(rng, -50, 50));
            else if (type == TSR_DOUBLE)
                evs[i].v = tsr_value_double((tsr_rng_double(rng) - 0.3) * 1000);
            else evs[i].v = tsr_value_string(words[tsr_rng_below(rng, 4)], strlen(words[0]));
            if (evs[i].v.kind == TSR_STRING) evs[i].v.len = (uint32_t)strlen(evs[i].v.u.s);
        }
        /* sort by ts (insertion sort: n is small); seq = position after sorting stable by
         * creation order, and duplicates of ts are common */
        for (int i = 1; i < n; i++) {
            ev_t e = evs[i];
            int j = i - 1;
            while (j >= 0 && evs[j].ts > e.ts) {
                evs[j + 1] = evs[j];
                j--;
            }
            evs[j + 1] = e;
        }
        for (int i = 0; i < n; i++) evs[i].seq = (uint64_t)i;
        /* queries: ascending, including event timestamps exactly, their +1, and hop edges */
        int nq = 60, pushed = 0;
        int64_t qs[60];
        for (int i = 0; i < nq; i++) {
            int pick = (int)tsr_rng_below(rng, 4);
            if (pick == 0 && n) qs[i] = evs[tsr_rng_below(rng, (uint64_t)n)].ts;
            else if (pick == 1 && n) qs[i] = evs[tsr_rng_below(rng, (uint64_t)n)].ts + 1;
            else if (pick == 2 && n && w) qs[i] = evs[tsr_rng_below(rng, (uint64_t)n)].ts + w;
            else qs[i] = base + tsr_rng_range(rng, -DAY, span + w + DAY);
        }
        for (int i = 1; i < nq; i++) {
            int64_t x = qs[i];
            int j = i - 1;
            while (j >= 0 && qs[j] > x) {
                qs[j + 1] = qs[j];
                j--;
            }
            qs[j + 1] = x;
        }
        for (int qi = 0; qi < nq; qi++) {
            int64_t q = qs[qi];
            while (pushed < n && evs[pushed].ts < q) {
                tsr_swag_push(s, &evs[pushed].v, NULL, evs[pushed].ts, evs[pushed].seq);
                pushed++;
            }
            tsr_value_t got = tsr_swag_value(s, q, &arena);
            tsr_agg_init(agg, ir);
            for (int i = 0; i < n; i++)
                if (tsr_window_contains(q, w, evs[i].ts))
                    tsr_agg_update(agg, ir, &evs[i].v, NULL, evs[i].ts, evs[i].seq);
            tsr_value_t want = tsr_agg_finalize(agg, ir, &arena);
            tsr_agg_clear(agg, ir);
            if (!tsr_value_close(&got, &want)) {
                tsr_buf_t a, b;
                tsr_buf_init(&a);
                tsr_buf_init(&b);
                tsr_value_to_json(&got, &a);
                tsr_value_to_json(&want, &b);
                ck_abort_msg("%s w=%lld q=%lld: swag %s, brute force %s", tsr_op_name(op),
                             (long long)w, (long long)q, tsr_buf_cstr(&a), tsr_buf_cstr(&b));
            }
            tsr_arena_reset(&arena);
        }
        free(evs);
    }
    free(ir);
    tsr_arena_free(&arena);
    tsr_swag_free(s);
    tsr_agg_free(agg);
}

START_TEST(test_swag_vs_brute) {
    tsr_rng_t rng = {.s = 4242 + (uint64_t)_i};
    const int64_t windows[] = {0, 1 * MIN, 7 * MIN, 13 * MIN, 1 * HOUR, 11 * HOUR + 59 * MIN,
                               12 * HOUR, 36 * HOUR, 1 * DAY, 7 * DAY, 12 * DAY, 30 * DAY};
    struct { tsr_op_t op; tsr_type_t t; } ops[] = {
        {TSR_OP_COUNT, TSR_LONG},     {TSR_OP_SUM, TSR_LONG},      {TSR_OP_SUM, TSR_DOUBLE},
        {TSR_OP_AVERAGE, TSR_DOUBLE}, {TSR_OP_MIN, TSR_LONG},      {TSR_OP_MAX, TSR_STRING},
        {TSR_OP_LAST, TSR_STRING},    {TSR_OP_FIRST, TSR_LONG},    {TSR_OP_LAST_K, TSR_LONG},
        {TSR_OP_TOP_K, TSR_DOUBLE},   {TSR_OP_UNIQUE_COUNT, TSR_STRING},
        {TSR_OP_VARIANCE, TSR_DOUBLE}, {TSR_OP_HISTOGRAM, TSR_STRING},
    };
    for (size_t o = 0; o < sizeof ops / sizeof ops[0]; o++)
        for (size_t wi = 0; wi < sizeof windows / sizeof windows[0]; wi++)
            run_case(&rng, ops[o].op, ops[o].t, windows[wi]);
}
END_TEST

static Suite *swag_suite(void) {
    Suite *s = suite_create("swag");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 120);
    tcase_add_loop_test(tc, test_swag_vs_brute, 0, 4);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return tsr_test_run(swag_suite()); }
