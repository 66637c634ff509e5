/*
 * routing.c — decoded routing tables and where a read goes (routing.h).
 */
#include "tsr/routing.h"

#include <stdlib.h>
#include <string.h>

#include "cluster.pb-c.h"
#include "tsr/partition.h"
#include "tsr/pbvalue.h"
#include "tsr/value.h"

static int route_cmp(const void *a, const void *b) {
    return strcmp(((const tsr_route_t *)a)->name, ((const tsr_route_t *)b)->name);
}

static void routing_free(tsr_routing_t *rt) {
    for (size_t i = 0; i < rt->nworkers; i++) {
        free(rt->worker_ids[i]);
        free(rt->worker_addrs[i]);
    }
    free(rt->worker_ids);
    free(rt->worker_addrs);
    for (size_t i = 0; i < rt->nroutes; i++) {
        free(rt->routes[i].name);
        free(rt->routes[i].owners);
    }
    free(rt->routes);
    for (size_t i = 0; i < rt->nconfigs; i++) {
        free(rt->configs[i].name);
        free(rt->configs[i].json);
    }
    free(rt->configs);
    free(rt);
}

void tsr_routing_ref(tsr_routing_t *rt) { __atomic_add_fetch(&rt->refs, 1, __ATOMIC_ACQ_REL); }

void tsr_routing_unref(tsr_routing_t *rt) {
    if (rt && __atomic_sub_fetch(&rt->refs, 1, __ATOMIC_ACQ_REL) == 0) routing_free(rt);
}

static char *dup_or_empty(const char *s) { return tsr_strdup(s ? s : ""); }

int tsr_routing_decode(const uint8_t *msg, size_t n, tsr_routing_t **out, tsr_error_t *err) {
    *out = NULL;
    tsr_arena_t a;
    tsr_arena_init(&a, 4096);
    Tessera__V1__RoutingTable *m = tsr_pb_unpack(&tessera__v1__routing_table__descriptor, msg, n, &a, err);
    if (!m) {
        tsr_arena_free(&a);
        return TSR_EINVAL;
    }
    tsr_routing_t *rt = tsr_calloc(1, sizeof(*rt));
    rt->refs = 1;
    rt->epoch = m->epoch;
    rt->revision = m->revision;
    rt->nworkers = m->n_workers;
    rt->worker_ids = tsr_calloc(m->n_workers + 1, sizeof(char *));
    rt->worker_addrs = tsr_calloc(m->n_workers + 1, sizeof(char *));
    for (size_t i = 0; i < m->n_workers; i++) {
        rt->worker_ids[i] = dup_or_empty(m->workers[i]->worker_id);
        rt->worker_addrs[i] = dup_or_empty(m->workers[i]->address);
    }
    int rc = 0;
    rt->routes = tsr_calloc(m->n_routes + 1, sizeof(tsr_route_t));
    for (size_t i = 0; i < m->n_routes; i++) {
        const Tessera__V1__GroupByRoute *r = m->routes[i];
        tsr_route_t *d = &rt->routes[rt->nroutes++];
        d->name = dup_or_empty(r->name);
        d->nparts = r->num_partitions;
        d->batch_end_ms = r->batch_end_millis;
        d->owners = tsr_malloc((r->n_owners ? r->n_owners : 1) * sizeof(int));
        if (rc == 0 && (r->num_partitions <= 0 || r->n_owners != (size_t)r->num_partitions))
            rc = tsr_error_set(err, TSR_ECORRUPT,
                               "routing table epoch %lld: GroupBy %s has %d partitions and %zu owners",
                               (long long)m->epoch, d->name, r->num_partitions, r->n_owners);
        for (size_t p = 0; p < r->n_owners; p++) {
            d->owners[p] = r->owners[p];
            if (rc == 0 && (r->owners[p] < -1 || r->owners[p] >= (int32_t)m->n_workers))
                rc = tsr_error_set(err, TSR_ECORRUPT,
                                   "routing table epoch %lld: GroupBy %s partition %zu: owner %d of %zu workers",
                                   (long long)m->epoch, d->name, p, r->owners[p], m->n_workers);
        }
    }
    qsort(rt->routes, rt->nroutes, sizeof(tsr_route_t), route_cmp);
    rt->configs = tsr_calloc(m->n_configs + 1, sizeof(tsr_routed_config_t));
    for (size_t i = 0; i < m->n_configs; i++) {
        tsr_routed_config_t *c = &rt->configs[rt->nconfigs++];
        c->name = dup_or_empty(m->configs[i]->name);
        c->version = m->configs[i]->version;
        c->json = dup_or_empty(m->configs[i]->config_json);
    }
    tsr_arena_free(&a);
    if (rc) {
        routing_free(rt);
        return rc;
    }
    *out = rt;
    return 0;
}

int tsr_routing_is_newer(const tsr_routing_t *cur, const tsr_routing_t *next) {
    if (!cur) return 1;
    if (next->epoch != cur->epoch) return next->epoch > cur->epoch;
    return next->revision >= cur->revision;
}

const tsr_route_t *tsr_routing_find(const tsr_routing_t *rt, const char *gb) {
    size_t lo = 0, hi = rt->nroutes;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int c = strcmp(rt->routes[mid].name, gb);
        if (c == 0) return &rt->routes[mid];
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return NULL;
}

int tsr_routing_key_count(const void *key, size_t klen) {
    tsr_reader_t rd;
    tsr_reader_init(&rd, key, klen);
    tsr_arena_t a;                  /* key values are scalars: decoding allocates nothing */
    tsr_arena_init(&a, 64);
    int n = 0, rc = 0;
    while (rc == 0 && tsr_reader_left(&rd) > 0) {
        tsr_value_t v;
        rc = tsr_value_decode(&rd, &a, &v);
        if (rc == 0) n++;
    }
    tsr_arena_free(&a);
    return rc ? TSR_ECORRUPT : n;
}

int tsr_routing_locate(const tsr_routing_t *rt, const char *gb, const void *key, size_t klen,
                       int *partition, int *worker, tsr_buf_t *scratch, tsr_error_t *err) {
    *partition = *worker = -1;
    const tsr_route_t *r = tsr_routing_find(rt, gb);
    if (!r)
        return tsr_error_set(err, TSR_EUNAVAIL, "GroupBy %s is not routed (routing table epoch %lld revision %lld)",
                             gb, (long long)rt->epoch, (long long)rt->revision);
    int nk = tsr_routing_key_count(key, klen);
    int p = nk > 0 ? tsr_partition_of_key(key, klen, (size_t)nk, r->nparts, scratch) : TSR_ECORRUPT;
    if (p < 0) return tsr_error_set(err, TSR_ECORRUPT, "%s: undecodable key (%zu bytes)", gb, klen);
    *partition = p;
    if (r->owners[p] < 0)
        return tsr_error_set(err, TSR_EUNAVAIL, "partition %d of %s has no owner (routing table epoch %lld)", p,
                             gb, (long long)rt->epoch);
    *worker = r->owners[p];
    return 0;
}
