/*
 * tile.c — covering a time range with aligned 1d / 1h / 5m tiles (see tile.h for the read
 * plan this serves).
 *
 * Greedy from the left: at each point t, take the largest tile length L that t is aligned to
 * and that still fits before b. Any aligned cover needs at least this many tiles (a smaller
 * tile where a larger one fits only adds pieces), and the count is bounded by
 * days + 2 * (23 + 11): O(log)-like in the range for a fetch.
 */
#include "tsr/tile.h"

size_t tsr_tile_cover(int64_t a, int64_t b, tsr_tile_span_t *out, size_t max) {
    static const int64_t lens[] = {TSR_TILE_1D, TSR_TILE_1H, TSR_TILE_5M};
    size_t n = 0;
    int64_t t = a;
    while (t < b) {
        int64_t len = TSR_TILE_5M;
        for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
            int64_t l = lens[i];
            if (tsr_floor_div(t, l) * l == t && t + l <= b) {
                len = l;
                break;
            }
        }
        if (n < max) {
            out[n].start = t;
            out[n].len = len;
        }
        n++;
        t += len;
    }
    return n;
}
