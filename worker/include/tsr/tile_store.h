/*
 * tile_store.h — a worker's tile store on RocksDB (SPEC §6): batch state from uploads, stream
 * tiles and raw events from Kafka, Kafka offsets, and the read that answers a fetch.
 *
 * What is stored per GroupBy and key follows tile.h exactly:
 *   batch  (version B, one per upload): the lifetime IR and the tail tiles of each hop, as
 *          suffix aggregates (the entry at start = every tail tile from start to B merged)
 *   stream (ts >= B): 1d, 1h and 5m tiles and the raw events, grouped by what a read needs:
 *          per key and day the 24 hour tiles and the day tile, per key and hour the 12
 *          5-minute tiles with their raw events; merged in place by a RocksDB merge operator
 *          that runs the aggregation kernel's merge
 *   meta:  the current upload version B; consumer offsets and the write-back flush marker
 *          (which live in the stream family, below, with the records they describe)
 * so a fetch reads a few records per (key, GroupBy) — the key's batch record, today's day
 * record, the head's hour record — and equals the offline value at q. Reads come in batches
 * (tsr_tile_store_read_many: one multi-get of batch records and one of stream records for all
 * the reads of a call; a single read is a batch of one).
 *
 * Key layout: one RocksDB column family per access pattern, each tuned for it (keys keep their
 * tag byte; big-endian integers, signed ones with the sign bit flipped so byte order is
 * numeric order; K = 2-byte key length + key bytes):
 *
 *   meta    'm' gb \0 'B'                  -> ver (int64)           current upload version id
 *   (tiny)  ('m' gb \0 'o' name: offsets of a store written before session 5; read only)
 *   batch   'b' gb \0 ver K                -> batch record          lifetime + suffixes
 *   (bulk-written per upload, point reads, old versions range-deleted at commit)
 *   stream  't' gb \0 \0\0\0 'F'           -> flush generation      write-back marker
 *   (merge  't' gb \0 \0\0\0 'L'           -> log high mark (int64) log below it is flushed
 *   op, re- 't' gb \0 \0\0\0 'W'           -> latest hour, day record starts written
 *   tention 't' gb \0 \0\0\0 'o' name      -> next offset (int64)   per consumer partition
 *   filter, 't' gb \0 K 'D' day            -> day record (merged)   slots 0..23 1h, 24 1d
 *   blooms) 't' gb \0 K 'H' hour           -> hour record (merged)  slots 0..11 5m + raw
 *           (the flush state sorts before every record of its GroupBy, so a flush file spans
 *           one GroupBy's range; 'm' gb \0 'F' / 'L' / 'o' name: the same state in a store
 *           written before session 6, read as a fallback, never written)
 *   log     'l' gb \0 seq                  -> logged batch          not yet flushed (batches
 *                                                                   applied without offsets)
 *   (sequential, range-deleted at each flush, no bloom filter)
 *
 * The flush marker lives with the records it describes: a read gets it in the same multi-get.
 * A write-back flush (records, offsets, marker, log mark) is one table file ingested into the
 * stream family, atomically; the log records it covers are range-deleted after it. An upload
 * commit (B + deletion of the old version) is one WriteBatch, atomic across families.
 * The default family stays empty; a store of the earlier one-family layout is refused at open.
 *
 * Codecs in worker/src/tile_store_int.h, design in docs/tile-store.md. Uploads write under
 * their own version id (ver: B, or B + 1 ms for an upload of the B being served, so that the
 * served records stay untouched) and then switch 'm..B' in one write: readers see the old
 * upload or the new one, never a half-loaded one; the old version is deleted in that write
 * (a read that raced it reads again with the new id). Stream batches are folded
 * into an in-memory write-back table that a flusher thread writes as tile records when it is
 * large or 10 s old; reads merge the unflushed state. Kafka is the log: a batch applied with
 * consumer offsets is written with those offsets at the flush (one ingested table file), so after
 * a crash the store holds a prefix of the stream and the offsets it reaches, and the consumer
 * replays the rest — exactly once. A batch without offsets is logged when applied (durable in
 * the WAL) and the log is replayed at register.
 * A compaction filter drops stream records before B.
 *
 * Threading: a store may be used from several threads (apply of one GroupBy is serialised);
 * registration happens before use. The store runs one flusher thread.
 */
#ifndef TSR_TILE_STORE_H
#define TSR_TILE_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "tsr/agg.h"
#include "tsr/error.h"
#include "tsr/mem.h"
#include "tsr/tile.h"
#include "tsr/value.h"

typedef struct tsr_tile_store tsr_tile_store_t;

/* Opens (creating) the store in dir. Caller closes with tsr_tile_store_close. */
int tsr_tile_store_open(const char *dir, tsr_tile_store_t **out, tsr_error_t *err);

/* The store's read memory: cache_bytes of RocksDB block cache (0: the default,
 * TSR_TILE_STORE_CACHE_DEFAULT) and, beside it, row_cache_bytes of row cache — whole records by
 * key in front of the table files (docs/tile-store.md "Row cache"); TSR_TILE_ROW_CACHE_AUTO:
 * TSR_TILE_ROW_CACHE_MB from the environment when set, else none (off by default: it made the
 * 100-entity fetch slower, see the doc); 0: none. */
#define TSR_TILE_STORE_CACHE_DEFAULT ((size_t)256 << 20)
#define TSR_TILE_ROW_CACHE_AUTO ((size_t)-1)
/* batch_cache_bytes: the batch record cache (docs/tile-store.md "Batch record cache"), the
 * served versions' batch records by key in memory, cleared by every upload commit. 0: the
 * default, TSR_TILE_BATCH_CACHE_MB from the environment when set (0 there: none), else
 * TSR_TILE_BATCH_CACHE_DEFAULT; TSR_TILE_BATCH_CACHE_NONE: none. */
#define TSR_TILE_BATCH_CACHE_DEFAULT ((size_t)128 << 20)
#define TSR_TILE_BATCH_CACHE_NONE ((size_t)-1)
/* stream_cache_bytes: the stream record cache (docs/tile-store.md "Stream record cache"), the
 * stream family's records by key and flush generation, emptied when full at the next flush.
 * 0: the default, TSR_TILE_STREAM_CACHE_MB from the environment when set (0 there: none),
 * else TSR_TILE_STREAM_CACHE_DEFAULT; TSR_TILE_STREAM_CACHE_NONE: none. */
#define TSR_TILE_STREAM_CACHE_DEFAULT ((size_t)128 << 20)
#define TSR_TILE_STREAM_CACHE_NONE ((size_t)-1)
typedef struct tsr_tile_store_opts {
    size_t cache_bytes;
    size_t row_cache_bytes;
    size_t batch_cache_bytes;
    size_t stream_cache_bytes;
} tsr_tile_store_opts_t;

/* tsr_tile_store_open with memory options (o NULL: the defaults). */
int tsr_tile_store_open_opts(const char *dir, const tsr_tile_store_opts_t *o, tsr_tile_store_t **out,
                             tsr_error_t *err);

/* Bytes held by the block cache and the row cache now (either NULL: not asked). */
void tsr_tile_store_cache_usage(tsr_tile_store_t *s, size_t *block, size_t *row);

/* A record cache's counters (all zero when the store has none). */
typedef struct tsr_tile_cache_stats {
    uint64_t hits, misses;      /* records looked up */
    uint64_t puts;              /* records stored */
    uint64_t full;              /* misses not stored: the budget was used up */
    uint64_t clears;            /* batch: by upload commits; stream: by flushes, when full */
    size_t bytes, entries;      /* held now */
    size_t budget;
} tsr_tile_cache_stats_t;
void tsr_tile_store_batch_cache_stats(tsr_tile_store_t *s, tsr_tile_cache_stats_t *st);
void tsr_tile_store_stream_cache_stats(tsr_tile_store_t *s, tsr_tile_cache_stats_t *st);
void tsr_tile_store_close(tsr_tile_store_t *s);

/* Registers a GroupBy's columns (needed before any write or read of it, also after a
 * restart: the merge operator finds columns by name). */
int tsr_tile_store_register(tsr_tile_store_t *s, const tsr_tile_gb_t *gb, tsr_error_t *err);

/* ---- uploads (batch records: tsr_tile_kind_t, tile.h) */

typedef struct tsr_tile_upload tsr_tile_upload_t;

/* Starts an upload of version B (a midnight) for GroupBy gb. Nothing it writes is read before
 * its commit, also when B is the version being served (then its records go under B's other
 * version id; the served ones stay readable while it runs and after it fails). */
int tsr_tile_upload_begin(tsr_tile_store_t *s, const char *gb, int64_t batch_end,
                          tsr_tile_upload_t **out, tsr_error_t *err);
/* tsr_tile_upload_begin that, when batch_end is the version being served, adds to it in place
 * instead of rewriting it: nothing is cleared, the keys put are overwritten, every other key
 * keeps its records and stays readable throughout (abort then leaves what was written). A
 * worker that gains partitions of the served version loads their part files this way. */
int tsr_tile_upload_begin_add(tsr_tile_store_t *s, const char *gb, int64_t batch_end,
                              tsr_tile_upload_t **out, tsr_error_t *err);
/* Adds one batch record: irs[c] is column c's IR (kernel IR blocks, borrowed for the call).
 * A key's records must be put one after another (any order among them): when the key changes
 * its tail tiles are written as suffix aggregates — the record at (kind, start) holds every
 * tile of that hop from start to B merged — so a fetch reads one record per window. */
int tsr_tile_upload_put(tsr_tile_upload_t *u, const void *key, size_t klen, tsr_tile_kind_t kind,
                        int64_t start, const void *const *irs, tsr_error_t *err);
/* Makes the upload the current version atomically and drops the previous one; frees u. */
int tsr_tile_upload_commit(tsr_tile_upload_t *u, tsr_error_t *err);
/* Drops everything the upload wrote; frees u. The previous version keeps serving. */
void tsr_tile_upload_abort(tsr_tile_upload_t *u);

/* B of the current upload version, or INT64_MIN when none. */
int64_t tsr_tile_store_batch_end(tsr_tile_store_t *s, const char *gb);

/* ---- streaming */

typedef struct tsr_tile_event {
    const void *key;
    size_t klen;
    int64_t ts;
    uint64_t seq;                   /* row order for FIRST/LAST ties (e.g. the Kafka offset) */
    const tsr_value_t *inputs;      /* per column */
    const tsr_value_t *buckets;     /* per column, read for bucketed columns (bucket_slot >= 0);
                                       NULL: every bucket is null */
} tsr_tile_event_t;

/* Folds events into stream tiles and raw events. With offset_name, offset_name -> next_offset
 * is stored with the tiles when they are flushed (atomically; until then a crash loses both and
 * the consumer replays from the stored offset); without (NULL), the events are logged now.
 * Events with ts < B (covered by the batch) are skipped and counted in *skipped. */
int tsr_tile_store_apply(tsr_tile_store_t *s, const char *gb, const tsr_tile_event_t *ev,
                         size_t n, const char *offset_name, int64_t next_offset,
                         uint64_t *skipped, tsr_error_t *err);

/* Writes the stream state folded in memory since the last flush as tile records now (apply
 * does it when that state reaches its size bound; close and compact do it too). Optional: the
 * batches are durable in the stream log as soon as apply returns. */
int tsr_tile_store_flush(tsr_tile_store_t *s, tsr_error_t *err);

/* Sets the write-back memory bound of the store (default 256 MiB): each GroupBy hands its
 * folded state to the flusher thread when it reaches an equal share (at least 16 MiB, or the
 * whole bound when it is smaller). A small bound makes records smaller and more numerous
 * (tests use 1 to flush every batch). */
void tsr_tile_store_set_write_back(tsr_tile_store_t *s, size_t bytes);

/* tsr_tile_store_apply with any number of offsets stored in the same write (a consumer's
 * poll spans partitions: one write for all of them). */
int tsr_tile_store_apply_offsets(tsr_tile_store_t *s, const char *gb, const tsr_tile_event_t *ev,
                                 size_t n, const char *const *offset_names,
                                 const int64_t *next_offsets, size_t noffsets, uint64_t *skipped,
                                 tsr_error_t *err);

/* The offset the store reaches: the write-back table's (not yet flushed), else the stored one;
 * -1 when none. */
int64_t tsr_tile_store_offset(tsr_tile_store_t *s, const char *gb, const char *offset_name);

/* Compacts the whole store now (merge operands folded into their tiles). Maintenance and
 * benchmarks; RocksDB also compacts in the background. */
void tsr_tile_store_compact(tsr_tile_store_t *s);

/* ---- reads */

/* Values of every output (the columns' windows in order) for key at q (q >= B when there is
 * an upload). Strings/lists/maps are allocated in arena. */
int tsr_tile_store_read(tsr_tile_store_t *s, const char *gb, const void *key, size_t klen,
                        int64_t q, tsr_value_t *out, tsr_arena_t *arena, tsr_error_t *err);

/* One read of tsr_tile_store_read_many: the fields of tsr_tile_store_read, plus its outcome.
 * The same fields in the same order as the fetcher's tsr_tile_read_req_t (fetcher/serving.h),
 * so an adapter copies them one to one. */
typedef struct tsr_tile_store_req {
    const char *gb;
    const void *key;
    size_t klen;
    int64_t q;
    tsr_value_t *out;           /* the GroupBy's outputs (its columns' windows in order) */
    int status;                 /* set: 0, or the read's TSR_E* code ... */
    const char *error;          /* ... and its message (in arena); NULL when status is 0 */
} tsr_tile_store_req_t;

/* n reads at once — values equal to n tsr_tile_store_read calls, bit for bit — with one
 * RocksDB multi-get per column family across all of them (batch records, then stream records
 * and flush markers), so a fetch of many keys and GroupBys pays the lookups once per call
 * rather than per read. Each read gets its own status: an unknown GroupBy, q before B, an
 * I/O error or a corrupt record fails that read only (its out is then left unset). Strings,
 * lists, maps and error messages are allocated in arena. Returns 0 when the reads ran (see
 * each status), negative with err set only when the call itself is invalid. Reads the
 * GroupBys' write-back state under their read locks for the duration of the call. */
int tsr_tile_store_read_many(tsr_tile_store_t *s, tsr_tile_store_req_t *reqs, size_t n, tsr_arena_t *arena,
                             tsr_error_t *err);

#endif
