/*
 * window.h — window lengths, tail hops and the one window rule (SPEC §4).
 *
 * A TEMPORAL window of length w queried at time q (epoch ms) holds exactly the events with
 *
 *     floor((q - w) / H) * H  <=  ts  <  q
 *
 * where the tail hop H is 1 day when w >= 12 days, 1 hour when w >= 12 hours, and 5 minutes
 * otherwise. The head is exclusive (an event at ts == q is not counted) and the tail slides in
 * steps of H, so the window may hold up to H - 1 ms more than w. The rule has no exceptions:
 * windows that are not a multiple of H (e.g. 7 minutes, 36 hours) and events exactly on a
 * batch boundary follow it as written, online and offline. An unwindowed aggregation
 * (w = TSR_WINDOW_LIFETIME) holds every event with ts < q.
 *
 * SNAPSHOT accuracy (day windows only): output partition D (day number d, end E = (d+1)*DAY)
 * holds D+1-w <= ts < D+1, i.e. tsr_window_start_snapshot(E, w) <= ts < E.
 */
#ifndef TSR_WINDOW_H
#define TSR_WINDOW_H

#include <stdint.h>

#include "tsr/time.h"

typedef enum tsr_time_unit {
    TSR_UNIT_HOURS = 0,
    TSR_UNIT_DAYS = 1,
    TSR_UNIT_MINUTES = 2,
} tsr_time_unit_t;

/* An unwindowed ("lifetime") aggregation. */
#define TSR_WINDOW_LIFETIME INT64_C(0)

#define TSR_HOP_5M (5 * TSR_MS_PER_MINUTE)
#define TSR_HOP_1H TSR_MS_PER_HOUR
#define TSR_HOP_1D TSR_MS_PER_DAY

/* Window length in ms; -1 when length <= 0, the unit is unknown or it overflows. */
int64_t tsr_window_ms(int64_t length, tsr_time_unit_t unit);

/* Tail hop H for a window of w ms (w > 0). */
static inline int64_t tsr_window_hop(int64_t w) {
    if (w >= 12 * TSR_MS_PER_DAY) return TSR_HOP_1D;
    if (w >= 12 * TSR_MS_PER_HOUR) return TSR_HOP_1H;
    return TSR_HOP_5M;
}

/* First included timestamp of window w at query time q: floor((q - w) / H) * H.
 * For w == TSR_WINDOW_LIFETIME returns INT64_MIN. */
static inline int64_t tsr_window_start(int64_t q, int64_t w) {
    if (w == TSR_WINDOW_LIFETIME) return INT64_MIN;
    int64_t h = tsr_window_hop(w);
    return tsr_floor_div(q - w, h) * h;
}

/* 1 when an event at ts is inside window w queried at q. */
static inline int tsr_window_contains(int64_t q, int64_t w, int64_t ts) {
    return ts < q && ts >= tsr_window_start(q, w);
}

/* SNAPSHOT rule: first included ts for a partition whose end (exclusive) is `end`. */
static inline int64_t tsr_window_start_snapshot(int64_t end, int64_t w) {
    return w == TSR_WINDOW_LIFETIME ? INT64_MIN : end - w;
}

/* Column-name suffix for a window: "<length>" + "m|h|d" (e.g. "30d", "7m"); writes "" for
 * the lifetime window. Returns out. */
char *tsr_window_suffix(int64_t length, tsr_time_unit_t unit, char *out, int n);

#endif
