/*
 * routing.h — the fetcher's view of the cluster (docs/cluster.md "Fetchers"): one decoded
 * tessera.v1.RoutingTable (workers, per GroupBy the owner of each partition, the online
 * configs), and where a read goes.
 *
 * Design:
 *   - A table is an immutable, reference-counted snapshot: the watcher installs a new one, and
 *     a fetch keeps the one it started with (tsr_routing_ref/unref) — a fetch never sees half
 *     an update, and installing never waits for fetches.
 *   - Ordering: tables carry the leader's epoch (fencing token) and a revision that grows
 *     within an epoch. A table replaces the current one when (epoch, revision) is not lower;
 *     a table of a lower epoch (a deposed leader) or an older revision is ignored.
 *   - Where a read goes: partition = tsr_partition_of_key(key, number of key values, the
 *     route's num_partitions) — the key's value count is read from its encoding, which holds
 *     exactly the GroupBy's key columns — and owner = route.owners[partition].
 */
#ifndef TSR_ROUTING_H
#define TSR_ROUTING_H

#include <stddef.h>
#include <stdint.h>

#include "tsr/error.h"
#include "tsr/mem.h"

typedef struct tsr_route {
    char *name;                     /* GroupBy */
    int nparts;
    int *owners;                    /* per partition: worker index, -1 = none */
    int64_t batch_end_ms;
} tsr_route_t;

typedef struct tsr_routed_config {
    char *name;
    int64_t version;
    char *json;                     /* the config text as applied */
} tsr_routed_config_t;

typedef struct tsr_routing {
    int64_t epoch, revision;
    size_t nworkers;
    char **worker_ids, **worker_addrs;
    size_t nroutes;
    tsr_route_t *routes;            /* sorted by name */
    size_t nconfigs;
    tsr_routed_config_t *configs;
    int refs;                       /* atomic */
} tsr_routing_t;

/* Decodes a serialized RoutingTable (refs = 1; caller releases with tsr_routing_unref).
 * TSR_EINVAL for bytes that are not one; TSR_ECORRUPT for an owner index out of range or a
 * route without partitions. */
int tsr_routing_decode(const uint8_t *msg, size_t n, tsr_routing_t **out, tsr_error_t *err);
void tsr_routing_ref(tsr_routing_t *rt);
void tsr_routing_unref(tsr_routing_t *rt);

/* 1 when next should replace cur (cur NULL: always): epoch higher, or equal with a revision
 * not lower. */
int tsr_routing_is_newer(const tsr_routing_t *cur, const tsr_routing_t *next);

/* The route of GroupBy gb, or NULL. */
const tsr_route_t *tsr_routing_find(const tsr_routing_t *rt, const char *gb);

/* Number of values in an encoded key (value.h encoding), or TSR_ECORRUPT. */
int tsr_routing_key_count(const void *key, size_t klen);

/* Where the read of (gb, key) goes: *partition and *worker (an index into worker_addrs).
 * TSR_EUNAVAIL with err set when gb has no route or the partition no owner, TSR_ECORRUPT for
 * an undecodable key. scratch is reused between calls. */
int tsr_routing_locate(const tsr_routing_t *rt, const char *gb, const void *key, size_t klen,
                       int *partition, int *worker, tsr_buf_t *scratch, tsr_error_t *err);

#endif
