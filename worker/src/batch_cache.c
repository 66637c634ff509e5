/*
 * batch_cache.c — batch records by key in memory (batch_cache.h, docs/tile-store.md "Batch
 * record cache").
 *
 * Why. A fetch reads each (GroupBy, key) as a batch record and one or more stream records.
 * A RocksDB get of a record costs a bloom probe, an index binary search, a block cache lookup
 * (a hash chain and an LRU list: the top of the 100-entity fetch profile) and a data block
 * search, ~2-4 µs of cache misses. Batch records change only when an upload writes the
 * version being served, so a plain hash table of them answers the batch half of a fetch with
 * one chain walk. Chronon's fetcher keeps the same kind of cache (its batch IR cache).
 *
 * Layout. A fixed array of bucket heads (a power of two, sized from the budget) and singly
 * linked entries {next, hash, key length, value length, key, value} bump-allocated from 1 MiB
 * arena chunks. Nothing is evicted: once the budget is used, misses are no longer stored
 * until the next clear (every upload commit clears). The stream record cache also stores
 * that a key does not exist (value length BC_ABSENT), and its writer drops single entries:
 * unlinked under ins_mu, their memory kept until the next clear. Counters are relaxed atomics, added once
 * per chunk of reads by the reader.
 *
 * Concurrency. Readers hold the read lock for a chunk of reads: lookups walk the chains
 * without another lock (heads and next pointers are published with release stores after the
 * entry is filled in); puts take ins_mu (arena and chains; a put finding its key does
 * nothing). A clear takes the write lock (writer-preferring, so readers arriving after it
 * wait and it is not starved), frees the arena and empties the buckets.
 */
#define _GNU_SOURCE
#include "batch_cache.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tsr/mem.h"

#define BC_CHUNK ((size_t)1 << 20)
#define BC_ALIGN 8

#define BC_ABSENT UINT32_MAX     /* vlen of an entry saying its key does not exist */

const uint8_t tsr__bcache_absent[1];

typedef struct bc_ent {
    struct bc_ent *_Atomic next;
    uint64_t h;
    uint32_t klen, vlen;
    uint8_t data[];             /* key, then value */
} bc_ent_t;

struct tsr__bcache {
    pthread_rwlock_t lock;      /* read: a chunk of reads; write: clear */
    pthread_mutex_t ins_mu;     /* puts: the arena and the chains */
    bc_ent_t *_Atomic *buckets;
    size_t mask;
    uint64_t seed;
    size_t budget;
    size_t used;                /* arena bytes (under ins_mu or the write lock) */
    void *chunks;               /* arena chunks, linked by their first word */
    uint8_t *cur;               /* free space in the newest chunk */
    size_t left;
    _Atomic int is_full;        /* a put found the budget used up (until the next clear) */
    _Atomic uint64_t hits, misses, puts, full, clears, drops;
    _Atomic size_t bytes, entries;
};

static size_t chunk_size(const tsr__bcache_t *c) { return c->budget < BC_CHUNK ? c->budget : BC_CHUNK; }

tsr__bcache_t *tsr__bcache_create(size_t budget) {
    tsr__bcache_t *c = tsr_calloc(1, sizeof(*c));
    c->budget = budget;
    /* about one bucket per 512 bytes of budget (a record of bench_fetch's sparse uploads is
     * ~400 bytes), at least 1024 */
    size_t nb = 1024;
    while (nb < budget / 512 && nb < ((size_t)1 << 30)) nb <<= 1;
    c->buckets = tsr_calloc(nb, sizeof(*c->buckets));
    c->mask = nb - 1;
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    c->seed = ((uint64_t)t.tv_nsec * 0x9e3779b97f4a7c15ULL) ^ (uint64_t)(uintptr_t)c;
    pthread_rwlockattr_t a;
    pthread_rwlockattr_init(&a);
    pthread_rwlockattr_setkind_np(&a, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    pthread_rwlock_init(&c->lock, &a);
    pthread_rwlockattr_destroy(&a);
    pthread_mutex_init(&c->ins_mu, NULL);
    return c;
}

static void arena_free(tsr__bcache_t *c) {
    void *p = c->chunks;
    while (p) {
        void *next = *(void **)p;
        free(p);
        p = next;
    }
    c->chunks = NULL;
    c->cur = NULL;
    c->left = 0;
    c->used = 0;
}

void tsr__bcache_destroy(tsr__bcache_t *c) {
    if (!c) return;
    arena_free(c);
    free((void *)c->buckets);
    pthread_rwlock_destroy(&c->lock);
    pthread_mutex_destroy(&c->ins_mu);
    free(c);
}

uint64_t tsr__bcache_hash(const tsr__bcache_t *c, const void *k, size_t kl) {
    const uint8_t *p = k;
    uint64_t h = c->seed ^ (kl * 0x9e3779b97f4a7c15ULL);
    for (; kl >= 8; p += 8, kl -= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        h = (h ^ w) * 0xbf58476d1ce4e5b9ULL;
        h ^= h >> 31;
    }
    uint64_t w = 0;
    memcpy(&w, p, kl);
    h = (h ^ w) * 0x94d049bb133111ebULL;
    return h ^ (h >> 29);
}

void tsr__bcache_rdlock(tsr__bcache_t *c) { pthread_rwlock_rdlock(&c->lock); }
void tsr__bcache_unlock(tsr__bcache_t *c) { pthread_rwlock_unlock(&c->lock); }

const uint8_t *tsr__bcache_get(tsr__bcache_t *c, const void *k, size_t kl, uint64_t h, size_t *vl) {
    bc_ent_t *e = atomic_load_explicit(&c->buckets[h & c->mask], memory_order_acquire);
    for (; e; e = atomic_load_explicit(&e->next, memory_order_acquire))
        if (e->h == h && e->klen == kl && memcmp(e->data, k, kl) == 0) {
            if (e->vlen == BC_ABSENT) {
                *vl = 0;
                return TSR__BCACHE_ABSENT;
            }
            *vl = e->vlen;
            return e->data + kl;
        }
    return NULL;
}

/* n bytes of arena, or NULL when the budget would be exceeded. Under ins_mu. */
static void *arena_alloc(tsr__bcache_t *c, size_t n) {
    n = (n + BC_ALIGN - 1) & ~(size_t)(BC_ALIGN - 1);
    if (n > c->left) {
        size_t cs = chunk_size(c);
        if (n + sizeof(void *) > cs || c->used + cs > c->budget) return NULL;
        uint8_t *chunk = malloc(cs);
        if (!chunk) return NULL;
        *(void **)chunk = c->chunks;
        c->chunks = chunk;
        c->cur = chunk + sizeof(void *);
        c->left = cs - sizeof(void *);
        c->used += cs;
        atomic_store_explicit(&c->bytes, c->used, memory_order_relaxed);
    }
    void *p = c->cur;
    c->cur += n;
    c->left -= n;
    return p;
}

void tsr__bcache_put(tsr__bcache_t *c, const void *k, size_t kl, uint64_t h, const void *v, size_t vl) {
    if (!v) vl = 0;
    if (kl > UINT32_MAX || vl >= BC_ABSENT) return;
    if (atomic_load_explicit(&c->is_full, memory_order_relaxed)) { /* no lock per miss once full */
        atomic_fetch_add_explicit(&c->full, 1, memory_order_relaxed);
        return;
    }
    pthread_mutex_lock(&c->ins_mu);
    bc_ent_t *_Atomic *b = &c->buckets[h & c->mask];
    for (bc_ent_t *e = atomic_load_explicit(b, memory_order_relaxed); e;
         e = atomic_load_explicit(&e->next, memory_order_relaxed))
        if (e->h == h && e->klen == kl && memcmp(e->data, k, kl) == 0) { /* another reader's */
            pthread_mutex_unlock(&c->ins_mu);
            return;
        }
    bc_ent_t *e = arena_alloc(c, sizeof(*e) + kl + vl);
    if (!e) {
        atomic_store_explicit(&c->is_full, 1, memory_order_relaxed);
        pthread_mutex_unlock(&c->ins_mu);
        atomic_fetch_add_explicit(&c->full, 1, memory_order_relaxed);
        return;
    }
    e->h = h;
    e->klen = (uint32_t)kl;
    e->vlen = v ? (uint32_t)vl : BC_ABSENT;
    memcpy(e->data, k, kl);
    if (vl) memcpy(e->data + kl, v, vl);
    atomic_store_explicit(&e->next, atomic_load_explicit(b, memory_order_relaxed), memory_order_relaxed);
    atomic_store_explicit(b, e, memory_order_release); /* readers see it whole */
    pthread_mutex_unlock(&c->ins_mu);
    atomic_fetch_add_explicit(&c->puts, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&c->entries, 1, memory_order_relaxed);
}

int tsr__bcache_drop(tsr__bcache_t *c, const void *k, size_t kl, uint64_t h) {
    int found = 0;
    pthread_mutex_lock(&c->ins_mu);
    bc_ent_t *_Atomic *link = &c->buckets[h & c->mask];
    for (bc_ent_t *e = atomic_load_explicit(link, memory_order_relaxed); e;
         link = &e->next, e = atomic_load_explicit(link, memory_order_relaxed))
        if (e->h == h && e->klen == kl && memcmp(e->data, k, kl) == 0) {
            /* e keeps its next: a reader standing on it walks on */
            atomic_store_explicit(link, atomic_load_explicit(&e->next, memory_order_relaxed), memory_order_release);
            atomic_fetch_sub_explicit(&c->entries, 1, memory_order_relaxed);
            atomic_fetch_add_explicit(&c->drops, 1, memory_order_relaxed);
            found = 1;
            break;
        }
    pthread_mutex_unlock(&c->ins_mu);
    return found;
}

int tsr__bcache_is_full(tsr__bcache_t *c) { return atomic_load_explicit(&c->is_full, memory_order_relaxed); }

void tsr__bcache_count(tsr__bcache_t *c, uint64_t hits, uint64_t misses) {
    if (hits) atomic_fetch_add_explicit(&c->hits, hits, memory_order_relaxed);
    if (misses) atomic_fetch_add_explicit(&c->misses, misses, memory_order_relaxed);
}

void tsr__bcache_clear(tsr__bcache_t *c) {
    tsr__bcache_wrlock(c);
    tsr__bcache_clear_locked(c);
    tsr__bcache_wrunlock(c);
}

void tsr__bcache_wrlock(tsr__bcache_t *c) { pthread_rwlock_wrlock(&c->lock); }
void tsr__bcache_wrunlock(tsr__bcache_t *c) { pthread_rwlock_unlock(&c->lock); }

void tsr__bcache_clear_locked(tsr__bcache_t *c) {
    pthread_mutex_lock(&c->ins_mu);
    arena_free(c);
    memset((void *)c->buckets, 0, (c->mask + 1) * sizeof(*c->buckets));
    atomic_store_explicit(&c->bytes, 0, memory_order_relaxed);
    atomic_store_explicit(&c->entries, 0, memory_order_relaxed);
    atomic_store_explicit(&c->is_full, 0, memory_order_relaxed);
    pthread_mutex_unlock(&c->ins_mu);
    atomic_fetch_add_explicit(&c->clears, 1, memory_order_relaxed);
}

void tsr__bcache_stats(tsr__bcache_t *c, tsr__bcache_stats_t *st) {
    st->hits = atomic_load_explicit(&c->hits, memory_order_relaxed);
    st->misses = atomic_load_explicit(&c->misses, memory_order_relaxed);
    st->puts = atomic_load_explicit(&c->puts, memory_order_relaxed);
    st->full = atomic_load_explicit(&c->full, memory_order_relaxed);
    st->clears = atomic_load_explicit(&c->clears, memory_order_relaxed);
    st->drops = atomic_load_explicit(&c->drops, memory_order_relaxed);
    st->bytes = atomic_load_explicit(&c->bytes, memory_order_relaxed);
    st->entries = atomic_load_explicit(&c->entries, memory_order_relaxed);
    st->budget = c->budget;
}
