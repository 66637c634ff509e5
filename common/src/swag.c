/*
 * swag.c — two-stack sliding-window aggregation over hop-tile segments (see swag.h).
 *
 * Memory: segment IRs live in two growable arrays of ir_size blocks (front and back), reused
 * across keys; an IR is init-ed when a segment opens and cleared when it is evicted or flipped,
 * so nothing is allocated per event once the arrays have grown to the key with the most tiles.
 */
#include "tsr/swag.h"

#include <stdlib.h>
#include <string.h>

#include "tsr/mem.h"
#include "tsr/window.h"

struct tsr_swag {
    const tsr_agg_t *agg;
    size_t irsz;
    int64_t w, hop;             /* w == 0: lifetime */

    uint8_t *back;              /* nback segment IRs, oldest first */
    int64_t *back_tile;
    size_t nback, capback;
    uint8_t *back_agg;          /* merge of all back segments */
    int back_agg_live;

    uint8_t *front;             /* suffix aggregates; live ones are [fs, nfront) */
    int64_t *front_tile;
    size_t fs, nfront, capfront;

    uint8_t *tmp;               /* scratch IR for value() */
};

static inline uint8_t *ir_at(uint8_t *base, size_t irsz, size_t i) { return base + i * irsz; }

tsr_swag_t *tsr_swag_new(const tsr_agg_t *agg, int64_t window_ms) {
    tsr_swag_t *s = tsr_calloc(1, sizeof(*s));
    s->agg = agg;
    s->irsz = tsr_agg_ir_size(agg);
    s->w = window_ms;
    s->hop = window_ms ? tsr_window_hop(window_ms) : 0;
    s->back_agg = tsr_malloc(s->irsz);
    s->tmp = tsr_malloc(s->irsz);
    tsr_agg_init(agg, s->back_agg);
    s->back_agg_live = 1;
    return s;
}

static void clear_front(tsr_swag_t *s) {
    for (size_t i = s->fs; i < s->nfront; i++) tsr_agg_clear(s->agg, ir_at(s->front, s->irsz, i));
    s->fs = s->nfront = 0;
}

static void clear_back(tsr_swag_t *s) {
    for (size_t i = 0; i < s->nback; i++) tsr_agg_clear(s->agg, ir_at(s->back, s->irsz, i));
    s->nback = 0;
    tsr_agg_clear(s->agg, s->back_agg);
    tsr_agg_init(s->agg, s->back_agg);
}

void tsr_swag_reset(tsr_swag_t *s) {
    clear_front(s);
    clear_back(s);
}

void tsr_swag_free(tsr_swag_t *s) {
    if (!s) return;
    tsr_swag_reset(s);
    tsr_agg_clear(s->agg, s->back_agg);
    free(s->back_agg);
    free(s->tmp);
    free(s->back);
    free(s->back_tile);
    free(s->front);
    free(s->front_tile);
    free(s);
}

void tsr_swag_push(tsr_swag_t *s, const tsr_value_t *input, const tsr_value_t *bucket,
                   int64_t ts, uint64_t seq) {
    tsr_agg_update(s->agg, s->back_agg, input, bucket, ts, seq);
    if (s->w == 0) return; /* lifetime: the running IR is all there is */
    int64_t tile = tsr_floor_div(ts, s->hop);
    if (s->nback == 0 || s->back_tile[s->nback - 1] != tile) {
        if (s->nback == s->capback) {
            s->capback = s->capback ? 2 * s->capback : 16;
            s->back = tsr_realloc(s->back, s->capback * s->irsz);
            s->back_tile = tsr_realloc(s->back_tile, s->capback * sizeof(int64_t));
        }
        tsr_agg_init(s->agg, ir_at(s->back, s->irsz, s->nback));
        s->back_tile[s->nback++] = tile;
    }
    tsr_agg_update(s->agg, ir_at(s->back, s->irsz, s->nback - 1), input, bucket, ts, seq);
}

/* Moves every back segment to the front as suffix aggregates (front must be empty). */
static void flip(tsr_swag_t *s) {
    size_t m = s->nback;
    if (m > s->capfront) {
        s->capfront = m;
        s->front = tsr_realloc(s->front, m * s->irsz);
        s->front_tile = tsr_realloc(s->front_tile, m * sizeof(int64_t));
    }
    /* f[m-1] = b[m-1]; f[i] = b[i] (+) f[i+1]: the back IRs are moved, not copied */
    for (size_t k = m; k-- > 0;) {
        uint8_t *f = ir_at(s->front, s->irsz, k);
        memcpy(f, ir_at(s->back, s->irsz, k), s->irsz);
        if (k + 1 < m) tsr_agg_merge(s->agg, f, ir_at(s->front, s->irsz, k + 1));
        s->front_tile[k] = s->back_tile[k];
    }
    s->fs = 0;
    s->nfront = m;
    s->nback = 0; /* their IRs now belong to the front */
    tsr_agg_clear(s->agg, s->back_agg);
    tsr_agg_init(s->agg, s->back_agg);
}

tsr_value_t tsr_swag_value(tsr_swag_t *s, int64_t q, tsr_arena_t *arena) {
    if (s->w == 0) return tsr_agg_finalize(s->agg, s->back_agg, arena);
    int64_t start_tile = tsr_floor_div(tsr_window_start(q, s->w), s->hop);
    for (;;) {
        while (s->fs < s->nfront && s->front_tile[s->fs] < start_tile)
            tsr_agg_clear(s->agg, ir_at(s->front, s->irsz, s->fs++));
        if (s->fs < s->nfront || s->nback == 0 || s->back_tile[0] >= start_tile) break;
        s->fs = s->nfront = 0;
        flip(s);
    }
    int has_front = s->fs < s->nfront;
    if (!has_front) return tsr_agg_finalize(s->agg, s->back_agg, arena);
    if (s->nback == 0) return tsr_agg_finalize(s->agg, ir_at(s->front, s->irsz, s->fs), arena);
    tsr_agg_init(s->agg, s->tmp);
    tsr_agg_merge(s->agg, s->tmp, ir_at(s->front, s->irsz, s->fs));
    tsr_agg_merge(s->agg, s->tmp, s->back_agg);
    tsr_value_t v = tsr_agg_finalize(s->agg, s->tmp, arena);
    tsr_agg_clear(s->agg, s->tmp);
    return v;
}
