/*
 * assign.h — who owns which (GroupBy, partition): a pure function of the live workers, the
 * GroupBys with their partition counts, and the previous owners (docs/cluster.md "Owner of a
 * partition").
 *
 * Design:
 *   - Load bound. With T partitions in all and W workers, every worker ends with floor(T/W)
 *     or ceil(T/W) partitions: at most T mod W workers may reach the ceiling. So every worker
 *     is within one of the average, whatever the history.
 *   - Stickiness first. A partition whose previous owner is still live stays with it while
 *     that owner is under the bound; candidates are visited by how many live workers
 *     outrank their owner (0 first), so an owner over the bound gives up the partitions that
 *     others have the better rendezvous claim to. So a worker that joins takes only about
 *     T/(W+1) partitions from the others, a worker that leaves moves only its own partitions
 *     (plus the few that the tighter bound displaces), and a worker that leaves and comes
 *     back gets most of its old partitions back (it outranks whoever adopted them).
 *   - Rendezvous for the rest. Every partition not kept goes to the worker with the highest
 *     score hash(worker, GroupBy, partition) among those under the bound. Without previous
 *     owners the result is plain bounded rendezvous hashing: deterministic, independent of
 *     the order in which workers joined.
 *   - Co-location. GroupBys given the same `colocate` string are scored by it instead of
 *     their names, so partition p of every one of them ranks the workers alike and lands on
 *     the same worker as far as the bound allows (what the bound pushes off goes to the same
 *     second choice). The coordinator passes the partition count: the same key text maps to
 *     the same partition p in every GroupBy with the same count, so one entity's reads for a
 *     whole Join go to one worker — one ReadPartition instead of one per GroupBy's owner.
 *     Partitions are visited partition-major (p, then GroupBy) for that reason.
 *   - No allocation visible to the caller; O(T * W + T log T) time (T * W scores in each pass).
 */
#ifndef TSR_ASSIGN_H
#define TSR_ASSIGN_H

#include <stddef.h>
#include <stdint.h>

typedef struct tsr_assign_gb {
    const char *name;               /* GroupBy name (hashed unless colocate is set) */
    int32_t num_partitions;
    const char *const *prev;        /* num_partitions previous owner ids (NULL entry = none),
                                       or NULL for no history; borrowed */
    int32_t *owners;                /* out: num_partitions indexes into workers, -1 = none
                                       (only when there are no workers); caller-owned */
    const char *colocate;           /* co-location class hashed instead of name, or NULL */
} tsr_assign_gb_t;

/* Assigns every partition of gbs[0..ngb) to one of workers[0..nw) (ids sorted ascending by
 * strcmp, no duplicates). *moved (may be NULL) = partitions whose owner differs from prev
 * (a partition without a previous owner counts as not moved). */
void tsr_assign(const char *const *workers, size_t nw, tsr_assign_gb_t *gbs, size_t ngb,
                size_t *moved);

/* The rendezvous score of (worker, GroupBy or co-location class, partition); exposed for
 * tests. */
uint64_t tsr_assign_score(const char *worker, const char *gb, int32_t partition);

#endif
