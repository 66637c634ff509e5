/*
 * batch_cache.h — batch records by key in memory, in front of the batch family
 * (docs/tile-store.md "Batch record cache"). Internal to the tile store.
 *
 * A read takes the cache's read lock for a chunk of reads, looks its batch records up (a hit is
 * the record's bytes, valid until the unlock), gets the misses from RocksDB and puts them. A
 * write to the batch family that a reader could see clears the cache, exclusively, after the
 * write: a record read before the write and put after it is removed by that clear, because
 * its reader held the read lock across the read and the put.
 *
 * The same structure serves the stream record cache, whose entries may also record that a key
 * does not exist, and whose writer (a flush) drops the entries it changes instead of clearing
 * (docs/tile-store.md "Stream record cache").
 */
#ifndef TSR_BATCH_CACHE_H
#define TSR_BATCH_CACHE_H

#include <stddef.h>
#include <stdint.h>

typedef struct tsr__bcache tsr__bcache_t;

/* Counters since the cache was created (clears do not reset them). */
typedef struct tsr__bcache_stats {
    uint64_t hits, misses;      /* lookups */
    uint64_t puts;              /* records stored */
    uint64_t full;              /* records not stored: the budget was used up */
    uint64_t clears;
    uint64_t drops;             /* entries unlinked (tsr__bcache_drop) */
    size_t bytes;               /* arena bytes held now (records, keys, headers) */
    size_t entries;             /* records held now */
    size_t budget;
} tsr__bcache_stats_t;

/* A cache of at most budget bytes (budget > 0). */
tsr__bcache_t *tsr__bcache_create(size_t budget);
void tsr__bcache_destroy(tsr__bcache_t *c);

/* The hash every call below takes for key k (seeded per cache). */
uint64_t tsr__bcache_hash(const tsr__bcache_t *c, const void *k, size_t kl);

/* Read side: lookups and puts are made between rdlock and unlock (one chunk of reads). */
void tsr__bcache_rdlock(tsr__bcache_t *c);
void tsr__bcache_unlock(tsr__bcache_t *c);

/* The record of key k, or NULL; its bytes stay valid until tsr__bcache_unlock.
 * TSR__BCACHE_ABSENT (length 0): stored as not existing (a put with v NULL). */
extern const uint8_t tsr__bcache_absent[1];
#define TSR__BCACHE_ABSENT (&tsr__bcache_absent[0])
const uint8_t *tsr__bcache_get(tsr__bcache_t *c, const void *k, size_t kl, uint64_t h, size_t *vl);

/* Stores a copy of record (k, v) — v NULL: k does not exist — unless k is there already or
 * the budget is used up. */
void tsr__bcache_put(tsr__bcache_t *c, const void *k, size_t kl, uint64_t h, const void *v, size_t vl);

/* Unlinks the entry of k, if any: lookups no longer find it (its memory is reused at the next
 * clear only, so a reader walking its chain meanwhile walks on). For a writer that keeps
 * readers from putting k again until its change is visible to them. Returns 1 when k was
 * there. */
int tsr__bcache_drop(tsr__bcache_t *c, const void *k, size_t kl, uint64_t h);

/* The budget was used up: puts store nothing until the next clear. */
int tsr__bcache_is_full(tsr__bcache_t *c);

/* Adds a chunk's lookup counts (kept per call by the reader, added once). */
void tsr__bcache_count(tsr__bcache_t *c, uint64_t hits, uint64_t misses);

/* Drops every record; waits for the readers inside. Call after the write it is for. */
void tsr__bcache_clear(tsr__bcache_t *c);

/* The same in steps, for a writer that must keep readers out across its write too (an upload
 * commit switching versions): wrlock, the write, clear_locked, wrunlock. */
void tsr__bcache_wrlock(tsr__bcache_t *c);
void tsr__bcache_clear_locked(tsr__bcache_t *c);
void tsr__bcache_wrunlock(tsr__bcache_t *c);

void tsr__bcache_stats(tsr__bcache_t *c, tsr__bcache_stats_t *st);

#endif
