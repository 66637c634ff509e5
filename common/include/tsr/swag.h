/*
 * swag.h — a sliding-window aggregator over the kernel (common/agg.h) for sweeps in time order:
 * the offline engine pushes one key's events in (ts, seq) order and asks for the window's value
 * at each query time q in ascending order.
 *
 * Design. The window rule (window.h) makes every window start a multiple of the tail hop H:
 * window(q) = [floor((q - w) / H) * H, q). So the window is "every pushed event whose tile
 * floor(ts / H) is >= the start tile", and eviction drops whole tiles, oldest first. That is a
 * FIFO queue of tile segments with an associative merge, for which the two-stack queue
 * (Hammer's "SWAG", cf. Tangwongsan et al., "Sliding-window aggregation algorithms") gives O(1)
 * amortised merges per operation without ever needing delete:
 *
 *   back:  open segments, newest last; back_agg = merge of all of them (updated on push)
 *   front: after a flip, f[i] = merge of segments i .. newest-in-front (suffix aggregates);
 *          the live front starts at index fs and f[fs] is the merge of all of it
 *   value(q) = merge(f[fs], back_agg)
 *
 * A push updates the newest back segment and back_agg (two kernel updates); eviction advances
 * fs; when the front is empty and a back segment must go, a flip moves the back segments to
 * the front with one merge each. A tile may span a flip (part in front, part in back): both
 * parts are evicted when the window passes it. Because only the window's own events are ever
 * merged, doubles keep the precision of a direct sum of the window (no delete, no
 * cancellation). An unwindowed (lifetime) window is one running IR.
 *
 * Preconditions: events are pushed in non-decreasing ts; before tsr_swag_value(q) every event
 * with ts < q has been pushed and none with ts >= q; queries come in non-decreasing q.
 */
#ifndef TSR_SWAG_H
#define TSR_SWAG_H

#include <stdint.h>

#include "tsr/agg.h"

typedef struct tsr_swag tsr_swag_t;

/* window_ms = 0 for an unwindowed aggregation. agg is borrowed and must outlive the swag.
 * Caller frees with tsr_swag_free. */
tsr_swag_t *tsr_swag_new(const tsr_agg_t *agg, int64_t window_ms);
void tsr_swag_free(tsr_swag_t *s);
/* Forgets every event (the next key). Keeps allocated memory for reuse. */
void tsr_swag_reset(tsr_swag_t *s);
void tsr_swag_push(tsr_swag_t *s, const tsr_value_t *input, const tsr_value_t *bucket,
                   int64_t ts, uint64_t seq);
/* The window's value at q; strings/lists/maps in arena. */
tsr_value_t tsr_swag_value(tsr_swag_t *s, int64_t q, tsr_arena_t *arena);

#endif
