/*
 * test_window.c — the window rule (common/window.h) against a brute-force statement of SPEC §4,
 * and the calendar helpers (common/time.h).
 *
 * The brute force does not use floor division on negative numbers or any shortcut: it walks
 * the hop grid to find the largest multiple of H that is <= q - w.
 */
#include "tsr_test.h"

#include <string.h>

#include "tsr/time.h"
#include "tsr/window.h"

static const int64_t M = TSR_MS_PER_MINUTE, HR = TSR_MS_PER_HOUR, D = TSR_MS_PER_DAY;

static int64_t brute_hop(int64_t w) {
    if (w >= 12 * D) return D;
    if (w >= 12 * HR) return HR;
    return 5 * M;
}

/* Largest multiple of H that is <= x, found by stepping (no division). */
static int64_t brute_floor_mult(int64_t x, int64_t h) {
    int64_t m = 0;
    if (x >= 0) {
        while (m + h <= x) m += h * ((x - m) / h > 1 ? (x - m) / h - 1 : 1);
        while (m + h <= x) m += h;
    } else {
        while (m > x) m -= h;
    }
    return m;
}

static int brute_in_window(int64_t q, int64_t w, int64_t ts) {
    if (w == 0) return ts < q;
    return brute_floor_mult(q - w, brute_hop(w)) <= ts && ts < q;
}

START_TEST(test_hops) {
    ck_assert_int_eq(tsr_window_hop(5 * M), 5 * M);
    ck_assert_int_eq(tsr_window_hop(12 * HR - 1), 5 * M);
    ck_assert_int_eq(tsr_window_hop(12 * HR), HR);      /* exactly 12 h -> hourly hop */
    ck_assert_int_eq(tsr_window_hop(11 * D), HR);
    ck_assert_int_eq(tsr_window_hop(12 * D - 1), HR);
    ck_assert_int_eq(tsr_window_hop(12 * D), D);        /* exactly 12 d -> daily hop */
    ck_assert_int_eq(tsr_window_hop(30 * D), D);
}
END_TEST

START_TEST(test_window_ms) {
    ck_assert_int_eq(tsr_window_ms(7, TSR_UNIT_MINUTES), 7 * M);
    ck_assert_int_eq(tsr_window_ms(36, TSR_UNIT_HOURS), 36 * HR);
    ck_assert_int_eq(tsr_window_ms(30, TSR_UNIT_DAYS), 30 * D);
    ck_assert_int_eq(tsr_window_ms(0, TSR_UNIT_DAYS), -1);
    ck_assert_int_eq(tsr_window_ms(-3, TSR_UNIT_HOURS), -1);
    ck_assert_int_eq(tsr_window_ms(1, (tsr_time_unit_t)9), -1);
    char buf[32];
    ck_assert_str_eq(tsr_window_suffix(7, TSR_UNIT_MINUTES, buf, sizeof buf), "7m");
    ck_assert_str_eq(tsr_window_suffix(36, TSR_UNIT_HOURS, buf, sizeof buf), "36h");
    ck_assert_str_eq(tsr_window_suffix(30, TSR_UNIT_DAYS, buf, sizeof buf), "30d");
}
END_TEST

/* The edges the SPEC names: ts = q, ts = q - w, hop edges, midnight, 7-minute windows,
 * exactly 12 h and 12 d. */
START_TEST(test_edges) {
    int64_t day = tsr_days_from_civil(2024, 3, 10);
    int64_t midnight = day * D;
    const int64_t windows[] = {0, 5 * M, 7 * M, 13 * M, 1 * HR, 12 * HR, 36 * HR,
                               1 * D, 7 * D, 12 * D, 30 * D};
    const int64_t qs[] = {midnight, midnight + 1, midnight - 1, midnight + 7 * M,
                          midnight + 5 * M, midnight + 3 * HR + 17 * M + 123,
                          midnight + 12 * HR, midnight + 23 * HR + 59 * M + 59999};
    for (size_t wi = 0; wi < sizeof windows / sizeof windows[0]; wi++) {
        int64_t w = windows[wi];
        for (size_t qi = 0; qi < sizeof qs / sizeof qs[0]; qi++) {
            int64_t q = qs[qi];
            /* head: ts = q excluded, q - 1 included */
            ck_assert(!tsr_window_contains(q, w, q));
            ck_assert(tsr_window_contains(q, w, q - 1));
            if (w == 0) continue;
            int64_t start = tsr_window_start(q, w);
            int64_t h = tsr_window_hop(w);
            /* start is on the hop grid, at or before q - w, and within one hop of it */
            ck_assert_int_eq(((start % h) + h) % h, 0);
            ck_assert(start <= q - w);
            ck_assert(q - w - start < h);
            /* ts = q - w is always included; start itself included; start - 1 excluded */
            ck_assert(tsr_window_contains(q, w, q - w));
            ck_assert(tsr_window_contains(q, w, start));
            ck_assert(!tsr_window_contains(q, w, start - 1));
            for (int64_t d = -2 * h; d <= 2 * h; d += h / 2)
                for (int64_t e = -1; e <= 1; e++) {
                    int64_t ts = start + d + e;
                    ck_assert_msg(tsr_window_contains(q, w, ts) == brute_in_window(q, w, ts),
                                  "w=%lld q=%lld ts=%lld", (long long)w, (long long)q,
                                  (long long)ts);
                }
        }
    }
    /* a 7-minute window at 00:07 reaches back to 00:00, at 00:06:59.999 to 23:55 */
    ck_assert_int_eq(tsr_window_start(midnight + 7 * M, 7 * M), midnight);
    ck_assert_int_eq(tsr_window_start(midnight + 7 * M - 1, 7 * M), midnight - 5 * M);
    /* exactly 12 h at 13:30 -> hourly: starts 01:00 */
    ck_assert_int_eq(tsr_window_start(midnight + 13 * HR + 30 * M, 12 * HR), midnight + HR);
    /* exactly 12 d at any time on day d -> starts at midnight 12 days back */
    ck_assert_int_eq(tsr_window_start(midnight + 5 * HR, 12 * D), midnight - 12 * D);
}
END_TEST

START_TEST(test_random_vs_brute) {
    tsr_rng_t rng = {.s = 0x5eed + (uint64_t)_i};
    for (int iter = 0; iter < 20000; iter++) {
        int64_t units[] = {M, HR, D};
        int64_t w = tsr_rng_range(&rng, 1, 40) * units[tsr_rng_below(&rng, 3)];
        if (tsr_rng_below(&rng, 10) == 0) w = 0;
        int64_t q = tsr_rng_range(&rng, -100 * D, 20000 * D);
        if (tsr_rng_below(&rng, 4) == 0) q = tsr_floor_div(q, 5 * M) * 5 * M; /* on a hop edge */
        int64_t ts = q - tsr_rng_range(&rng, -2 * HR, w + 2 * D);
        /* a plain test, not ck_assert: each ck_assert is a write to Check's parent */
        if (tsr_window_contains(q, w, ts) != brute_in_window(q, w, ts))
            ck_abort_msg("w=%lld q=%lld ts=%lld", (long long)w, (long long)q, (long long)ts);
    }
}
END_TEST

/* A batch version id's B: its midnight, for the id B and the id B + 1 ms, before 1970 too;
 * INT64_MIN (no version) stays. */
START_TEST(test_ver_day) {
    for (int64_t day = -3; day <= 3; day++) {
        ck_assert_int_eq(tsr_ver_day(day * D), day * D);
        ck_assert_int_eq(tsr_ver_day(day * D + 1), day * D);
        ck_assert_int_eq(tsr_ver_day(day * D + D - 1), day * D);
    }
    ck_assert_int_eq(tsr_ver_day(-1), -D);
    ck_assert(tsr_ver_day(INT64_MIN) == INT64_MIN);
}
END_TEST

START_TEST(test_dates) {
    int64_t d;
    char buf[11];
    ck_assert_int_eq(tsr_ds_parse("1970-01-01", &d), 0);
    ck_assert_int_eq(d, 0);
    ck_assert_int_eq(tsr_ds_parse("2024-02-29", &d), 0);
    tsr_ds_format(d, buf);
    ck_assert_str_eq(buf, "2024-02-29");
    ck_assert_int_ne(tsr_ds_parse("2023-02-29", &d), 0);
    ck_assert_int_ne(tsr_ds_parse("2023-13-01", &d), 0);
    ck_assert_int_ne(tsr_ds_parse("2023-1-01", &d), 0);
    ck_assert_int_ne(tsr_ds_parse("2023-01-01x", &d), 0);
    ck_assert_int_eq(tsr_ds_parse("1969-12-31", &d), 0);
    ck_assert_int_eq(d, -1);
    ck_assert_int_eq(tsr_day_of_ms(-1), -1);
    ck_assert_int_eq(tsr_day_of_ms(D), 1);
    /* round trip over a long range */
    for (int64_t x = -800000; x < 800000; x += 97) {
        int64_t y;
        int m, dd;
        tsr_civil_from_days(x, &y, &m, &dd);
        if (tsr_days_from_civil(y, m, dd) != x) ck_abort_msg("day %lld does not round-trip", (long long)x);
    }
}
END_TEST

static Suite *window_suite(void) {
    Suite *s = suite_create("window");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_hops);
    tcase_add_test(tc, test_window_ms);
    tcase_add_test(tc, test_edges);
    tcase_add_loop_test(tc, test_random_vs_brute, 0, 8);
    tcase_add_test(tc, test_dates);
    tcase_add_test(tc, test_ver_day);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return tsr_test_run(window_suite()); }
