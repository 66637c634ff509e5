/*
 * tile_store_int.h — what tile_store.c (writes, merge operator, retention) and
 * tile_store_read.c (reads) share: the store struct, the registry entry of a GroupBy, key
 * building and the record codecs. Not for use outside worker/src/tile_store*.c.
 *
 * Records (layout in tile_store.h and docs/tile-store.md):
 *   tile value   per column: uvarint length + tsr_agg_encode bytes (a "tile": one IR per column)
 *   batch record bytes(lifetime tile, empty when none), then for kind 1..3 (5m, 1h, 1d tails):
 *                uvarint n, bytes(section: n × (svarint start, bytes(suffix tile)) in
 *                ascending start) — a read skips the sections no window needs
 *   day record   'D': slots 0..23 = the 1h tiles of the day, slot 24 = the 1d tile
 *   hour record  'H': slots 0..11 = the 5m tiles of the hour, each with the raw events of that
 *                5 minutes
 *   slot list    (day/hour record values and merge operands) ascending slot index, each:
 *                u8 slot, bytes(tile value, empty = no tile), and for hour records
 *                bytes(raw events: per event uvarint(ts - slot start), uvarint seq, per column
 *                tsr_value_encode(input) and, for a bucketed column, (bucket))
 *   log record   per event: K, svarint ts, uvarint seq, per column input (and bucket)
 *
 * Column families (TSR__CF_*; each key keeps its tag byte, so the layout reads the same in
 * every family): meta ('m..B'; 'm..o' offsets of the layout before session 5), batch ('b'),
 * stream ('t' day/hour records, and before them the flush marker 't' gb \0\0\0\0 'F', the log
 * high mark '..L' and the consumer offsets '..o' name — all of a flush in one ingested table
 * file within the GroupBy's 't' range, the marker read in the same multi-get as the records;
 * stores written before session 6 have them as 'm' gb \0 tag, read as a fallback), log ('l').
 * The default family stays empty.
 */
#ifndef TSR_TILE_STORE_INT_H
#define TSR_TILE_STORE_INT_H

#include <pthread.h>
#include <rocksdb/c.h>
#include <stdint.h>
#include <string.h>

#include "batch_cache.h"
#include "tsr/tile_store.h"

#define TSR__TS_MAX_GB 256
#define TSR__TS_GB_NAME_MAX 200

#define TSR__DAY_SLOTS 25       /* 24 hour tiles + the day tile */
#define TSR__DAY_SLOT_ALL 24
#define TSR__HOUR_SLOTS 12      /* 5-minute tiles of an hour (and their raw events) */
#define TSR__REC_DAY 'D'
#define TSR__REC_HOUR 'H'

/* column families, in the order they are opened */
enum {
    TSR__CF_DEFAULT, /* unused (must exist); a store of the one-family layout has its keys here */
    TSR__CF_META,    /* 'm' gb \0 'B' upload version ('m' gb \0 'o' name: old offsets) */
    TSR__CF_BATCH,   /* 'b' batch records */
    TSR__CF_STREAM,  /* 't' day/hour records (merge operator, retention filter), 't' gb \0
                        \0\0\0 'F' marker, 'L' log high mark, 'o' name offsets (tsr__state_key;
                        'm' gb \0 tag before session 6) */
    TSR__CF_LOG,     /* 'l' stream log */
    TSR__NCF
};

typedef struct tsr__pend tsr__pend_t;

typedef struct tsr__ts_gb {
    char *name;
    size_t nlen;
    size_t ncols;
    tsr_tile_col_t *cols;
    size_t *ir_off;             /* column c's IR at ir_off[c] in a tile block ... */
    size_t ir_size;             /* ... of ir_size bytes (one IR per column) */
    int has_bucket;             /* some column is bucketed */
    int64_t batch_end;          /* B of the served upload; INT64_MIN when none (atomic) */
    int64_t batch_ver;          /* its version id, 'm..B' (atomic): B, or B + 1 ms for an upload
                                   of the served B again (its records are 'b' gb \0 ver K) */
    /* write-back stream state (tile_store.c "Ingest"): */
    pthread_mutex_t apply_mu;   /* serialises apply, and the act -> imm hand-over */
    int64_t last_apply_ms;      /* monotonic ms of the last apply with events (atomic) */
    size_t act_bytes;           /* act's size as last measured (atomic; 0 after a hand-over) */
    pthread_rwlock_t pend_lock; /* act, imm, gen: readers shared, fold / swap exclusive */
    tsr__pend_t *act;           /* folded batches not yet flushed (their log records exist) */
    tsr__pend_t *imm;           /* being flushed, or a failed flush to retry; else NULL */
    uint64_t gen;               /* flush generation of imm ('m' gb \0 'F' holds the last one
                                   that landed) */
    int64_t written_hi[2];      /* the latest start of an hour [0] / day [1] record any flush
                                   wrote (state key 'W'): a record starting later does not
                                   exist, so a flush writes it as a put, not a merge operand;
                                   INT64_MAX: unknown (a store of older code). Under flush_mu */
    int64_t log_lo, log_next;   /* unflushed log records: [log_lo, log_next) */
    int64_t imm_log_hi;         /* imm holds the log records below this */
    rocksdb_writebatch_t *log_wb;   /* reused, under apply_mu */
    pthread_mutex_t flush_mu;   /* serialises writing imm (flusher, or a synchronous flush) */
    int flush_failed;           /* the flusher's last write of imm failed (under fl_mu) */
    char flush_msg[200];
} tsr__ts_gb_t;

struct tsr_tile_store {
    rocksdb_t *db;
    char *dir;                  /* the store's directory (flushes build table files in
                                   dir/ingest/) */
    rocksdb_options_t *opts;    /* the DB's options (and the default family's) */
    rocksdb_options_t *cf_opts[TSR__NCF]; /* per family; [TSR__CF_DEFAULT] unused */
    rocksdb_writeoptions_t *wo;
    rocksdb_readoptions_t *ro;
    rocksdb_mergeoperator_t *merge;
    rocksdb_compactionfilter_t *cfilter;
    rocksdb_cache_t *cache;
    rocksdb_cache_t *row_cache; /* NULL: none */
    tsr__bcache_t *bcache;      /* batch records by key (batch_cache.h); NULL: none */
    tsr__bcache_t *scache;      /* stream records by key (or that there is none), dropped by
                                   the flush that changes them (tile_store_read.c); NULL: none */
    int warm;                   /* a landed flush reads the records it dropped back into scache
                                   (1; TSR_TILE_STREAM_WARM=0: off) */
    rocksdb_block_based_table_options_t *table;     /* bloom filters, hash indexes */
    rocksdb_block_based_table_options_t *table_log; /* the log's: no filter */
    rocksdb_column_family_handle_t *cf[TSR__NCF];
    pthread_rwlock_t lock;      /* guards gbs/ngbs */
    size_t pend_budget;         /* write-back bytes, shared by the GroupBys */
    pthread_mutex_t pend_pool_mu; /* guards pend_pool, pend_npool */
    void *pend_pool;            /* free write-back memory chunks, kept across flushes */
    size_t pend_npool;          /* (tile_store.c, pend_alloc; at most the budget) */
    pthread_t flusher;          /* writes handed-over imm tables */
    pthread_mutex_t fl_mu;      /* guards imm hand-over, fl_stop, flush_failed */
    pthread_cond_t fl_cv;       /* work for the flusher */
    pthread_cond_t fl_done_cv;  /* an imm was written */
    int fl_stop;
    tsr__ts_gb_t gbs[TSR__TS_MAX_GB];
    size_t ngbs;
};

/* ---- keys: big-endian integers, signed ones with the sign bit flipped */

static inline void tsr__put_be64(tsr_buf_t *b, uint64_t v) {
    uint8_t x[8];
    for (int i = 0; i < 8; i++) x[i] = (uint8_t)(v >> (56 - 8 * i));
    tsr_buf_append(b, x, 8);
}
static inline void tsr__put_i64(tsr_buf_t *b, int64_t v) {
    tsr__put_be64(b, (uint64_t)v ^ (UINT64_C(1) << 63));
}
static inline uint64_t tsr__get_be64(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v = (v << 8) | p[i];
    return v;
}
static inline int64_t tsr__get_i64(const uint8_t *p) {
    return (int64_t)(tsr__get_be64(p) ^ (UINT64_C(1) << 63));
}
/* tag gb '\0' */
static inline void tsr__key_prefix(tsr_buf_t *b, char tag, const char *gb, size_t gblen) {
    tsr_buf_clear(b);
    tsr_buf_putc(b, tag);
    tsr_buf_append(b, gb, gblen);
    tsr_buf_putc(b, 0);
}
/* The flush state of a GroupBy in the stream family (session 6): the marker 'F', the log high
 * mark 'L', the latest record starts written 'W' and the consumer offsets 'o' name, keyed
 * 't' gb \0 \0 \0 \0 tag [name] — inside the GroupBy's record range, just before every
 * record, so that a flush file spans one GroupBy's range only and the files of different
 * GroupBys lie side by side in one level (with the earlier 'm' gb \0 tag keys a file spanned
 * ['m' gb .. 't' gb], overlapping every other GroupBy's: ten GroupBys' files stacked one per
 * level).
 *
 * Why they sort before every record and equal none: after 't' gb \0 a record has K = 2-byte
 * length + key bytes, then its type 'D' or 'H', then 8 bytes of start. For a key of 256 bytes
 * or more the first length byte is >= 1; for 1..255 bytes the first is 0 and the second >= 1;
 * for an empty key both are 0 and the third byte is the type ('D'/'H', non-zero). So every
 * record has a non-zero byte among the three after 't' gb \0, and every state key has three
 * zero bytes there: state keys sort first (in a file: F < L < W < o name), and a key with three
 * zero bytes there is a state key (the retention filter keeps them by this test). GroupBy
 * names hold no \0, so 't' gb \0 ... of one GroupBy is a contiguous range, disjoint from
 * every other's. */
#define TSR__STATE_PAD 3
static inline void tsr__state_key(tsr_buf_t *b, const char *gb, size_t gblen, char tag) {
    tsr__key_prefix(b, 't', gb, gblen);
    tsr_buf_append(b, "\0\0\0", TSR__STATE_PAD);
    tsr_buf_putc(b, tag);
}
/* The same state as keyed before session 6 (stream family; offsets also in meta before session
 * 5): 'm' gb \0 tag [name]. Read as a fallback only, never written. */
static inline void tsr__state_key_old(tsr_buf_t *b, const char *gb, size_t gblen, char tag) {
    tsr__key_prefix(b, 'm', gb, gblen);
    tsr_buf_putc(b, tag);
}
/* Whether stream-family key k (n bytes) of a GroupBy whose name is gblen bytes is a state key. */
static inline int tsr__is_state_key(const char *k, size_t n, size_t gblen) {
    size_t p = 2 + gblen;
    return n > p + TSR__STATE_PAD && k[p] == 0 && k[p + 1] == 0 && k[p + 2] == 0;
}

/* K: 2-byte length + key bytes */
static inline void tsr__put_key(tsr_buf_t *b, const void *key, size_t klen) {
    tsr_buf_putc(b, (int)(klen >> 8));
    tsr_buf_putc(b, (int)(klen & 0xff));
    tsr_buf_append(b, key, klen);
}

/* ---- registry (tile_store.c) */

/* The entry of GroupBy gb, or NULL (err set when err != NULL). Entries never move or go away
 * while the store is open. */
tsr__ts_gb_t *tsr__ts_lookup(tsr_tile_store_t *s, const char *gb, tsr_error_t *err);

/* ---- the write-back state, for reads (tile_store.c; caller holds g->pend_lock shared) */

/* A raw event of a write-back slot: one event in the hour record's raw format (uvarint(ts -
 * slot start), uvarint seq, inputs), chained in arrival order. */
typedef struct tsr__raw_chunk {
    struct tsr__raw_chunk *next;
    uint32_t len;
    uint8_t data[];
} tsr__raw_chunk_t;
/* Calls fn, in slot order, for every slot in the mask slots that record key k has in p: blk
 * is the slot's live tile block (g->ir_size bytes, borrowed under pend_lock), raw its raw
 * event chain (NULL for day records and for slots without events) — what a read merges
 * directly, without encoding the slot list first. Stops at fn's first non-zero return and
 * returns it; 0 when k has nothing unflushed (p may be NULL). */
typedef int (*tsr__pend_slot_fn)(void *ud, int slot, const void *blk, const tsr__raw_chunk_t *raw);
int tsr__pend_visit(const tsr__pend_t *p, const uint8_t *k, size_t kl, uint64_t h, uint32_t slots,
                    tsr__pend_slot_fn fn, void *ud);
/* The hash of record key k in the write-back tables (tsr__pend_visit's h). */
uint64_t tsr__pend_hash(const uint8_t *k, size_t kl);
/* Prefetches what a later tsr__pend_visit of hash h touches — stage 0: its table bucket;
 * stage 1 (after stage 0 had time to land): the entry the bucket points to — so that a read
 * of many records overlaps their cache misses instead of taking two per record in a row. */
void tsr__pend_prefetch(const tsr__pend_t *p, uint64_t h, int stage);
/* Calls fn for every record of pend whose key starts with prefix (reads without an upload). */
void tsr__pend_scan(const tsr__ts_gb_t *g, const tsr__pend_t *p, const uint8_t *prefix, size_t n,
                    void (*fn)(void *, const uint8_t *, size_t, const uint8_t *, size_t), void *ud);

/* ---- tiles: a block of g->ir_size bytes, column c's IR at g->ir_off[c] */

static inline void *tsr__tile_col(const tsr__ts_gb_t *g, void *blk, size_t c) {
    return (uint8_t *)blk + g->ir_off[c];
}
void tsr__tile_init(const tsr__ts_gb_t *g, void *blk);
void tsr__tile_clear(const tsr__ts_gb_t *g, void *blk);
void tsr__tile_encode(const tsr__ts_gb_t *g, const void *blk, tsr_buf_t *out);
/* Decodes an encoded tile value into tmp (a cleared or init-ed block; left init-ed) and merges
 * it into dst. 0 or TSR_ECORRUPT. */
int tsr__tile_merge_encoded(const tsr__ts_gb_t *g, void *dst, void *tmp, const uint8_t *v, size_t n);

#endif
