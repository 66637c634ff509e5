/*
 * tile.h — the tile arithmetic of the online path (SPEC §6): which stored aggregates a fetch
 * merges so that the online value at any q >= B equals the offline value at q exactly.
 *
 * Storage model (the worker's tile store implements it on RocksDB):
 *   - batch (from an upload, B = end of the uploaded ds, a midnight): per key, per feature,
 *       * a lifetime IR of every event with ts < B (unwindowed aggregations), and
 *       * tail tiles of each hop H the GroupBy's windows use, covering
 *         [floor((B - w_max(H)) / H) * H, B) — everything a window of hop H can still reach
 *         once q >= B;
 *   - stream (events with ts >= B): tiles of 1 day, 1 hour and 5 minutes, and the raw events.
 *
 * Read at q >= B, window w with hop H (window.h): the window is [s, q) with
 * s = floor((q - w) / H) * H.
 *   1. batch tail tiles of hop H with start in [s, B)            (none when s >= B)
 *   2. stream tiles covering [max(s, B), floor(q / 5m) * 5m), the fewest aligned 1d/1h/5m
 *      tiles (tsr_tile_cover: at most ~2 per unit boundary, O(log) records)
 *   3. raw stream events with ts in [floor(q / 5m) * 5m, q)      (one 5-minute tile's worth)
 * Unwindowed: the batch lifetime IR, then 2 and 3 from B. Because every boundary involved is a
 * multiple of 5 minutes and B a multiple of a day, the pieces partition the window exactly: no
 * event is counted twice or missed, whatever q (mid-tile, on an edge, at an event's ts).
 */
#ifndef TSR_TILE_H
#define TSR_TILE_H

#include <stddef.h>
#include <stdint.h>

#include "tsr/agg.h"
#include "tsr/window.h"

#define TSR_TILE_5M TSR_HOP_5M
#define TSR_TILE_1H TSR_HOP_1H
#define TSR_TILE_1D TSR_HOP_1D

typedef struct tsr_tile_span {
    int64_t start;      /* multiple of len */
    int64_t len;        /* TSR_TILE_1D, TSR_TILE_1H or TSR_TILE_5M */
} tsr_tile_span_t;

/* One aggregation column of a GroupBy as the online path stores it (an aggregation, or one
 * bucket column of it: tiles hold one IR per column, shared by all its windows) and the windows
 * its outputs use (0 = lifetime). A GroupBy's online outputs are its columns' windows in
 * order. */
typedef struct tsr_tile_col {
    const tsr_agg_t *agg;       /* borrowed */
    size_t nwin;
    const int64_t *windows;     /* ms; 0 = unwindowed */
    int in_slot;                /* the event slot of the input column (engine's numbering) */
    int bucket_slot;            /* -1 when unbucketed */
} tsr_tile_col_t;

typedef struct tsr_tile_gb {
    const char *name;           /* the GroupBy's metaData.name */
    size_t ncols;
    const tsr_tile_col_t *cols;
} tsr_tile_gb_t;

/* Batch records of an upload. */
typedef enum tsr_tile_kind {
    TSR_TILE_LIFETIME = 0,      /* every event with ts < B */
    TSR_TILE_TAIL_5M = 1,       /* tail tiles [start, start + hop) */
    TSR_TILE_TAIL_1H = 2,
    TSR_TILE_TAIL_1D = 3,
} tsr_tile_kind_t;

static inline int64_t tsr_tile_kind_hop(tsr_tile_kind_t k) {
    return k == TSR_TILE_TAIL_5M ? TSR_TILE_5M : k == TSR_TILE_TAIL_1H ? TSR_TILE_1H : TSR_TILE_1D;
}

/* Covers [a, b) (a <= b, both multiples of 5 minutes) with the fewest aligned tiles, largest
 * first where aligned, in ascending time order. Writes at most max spans and returns how many
 * the cover has (which may exceed max; then only the first max were written). */
size_t tsr_tile_cover(int64_t a, int64_t b, tsr_tile_span_t *out, size_t max);

/* First start of the batch tail tiles of hop h that windows up to w_max need:
 * floor((B - w_max) / h) * h. */
static inline int64_t tsr_tile_tail_start(int64_t batch_end, int64_t w_max, int64_t h) {
    return tsr_floor_div(batch_end - w_max, h) * h;
}

#endif
