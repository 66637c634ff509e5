/*
 * tile_store.c — the tile store on RocksDB: open, registry, uploads, stream ingest, the merge
 * operator and retention (see tile_store.h for the model and key layout, tile_store_int.h for
 * the record codecs, tile_store_read.c for reads, common/tile.h for the read plan).
 *
 * Records, not tiles. A tile (one IR per column) is the unit of the read plan, but a RocksDB
 * record costs ~1-2 µs to find whatever its size, so tiles are grouped into the few records a
 * read needs: per key and day one record with its 24 hour tiles and the day tile, per key and
 * hour one record with its 12 five-minute tiles and their raw events, and per key one batch
 * record with the lifetime IR and every suffix aggregate. A fetch then reads ~3-5 records per
 * (key, GroupBy) with a pinned get and one batched multi-get, whatever q.
 *
 * Ingest (write-back). A RocksDB insert at a random key costs a few µs (a skip-list descent
 * of cache misses): writing each event's records would cap ingest near the raw-put rate. So
 * a batch is folded into an in-memory write-back table (record key -> slot tiles and raw
 * events). A batch that comes with Kafka offsets (every ingest) is written nowhere else: Kafka
 * is the log, and the offsets it reaches are stored with the records when the table is
 * written, so after a crash the consumer resumes there. A batch without offsets (tests,
 * tools) is first written as one log record (one WriteBatch, in the WAL when apply returns,
 * so kill -9 loses nothing). When the table reaches its share of the
 * write-back budget, the flusher thread writes it as one table file — a flush marker, the log
 * high mark, the consumer offsets and one merge operand per record, sorted by key — and
 * ingests it into the stream family (atomic; no WriteBatch, WAL or memtable), then deletes the
 * log records it covers. Reads merge the table (and a table being flushed, unless the marker
 * read in the same multi-get shows it landed); tsr_tile_store_register replays the log above
 * the high mark after a restart.
 *
 * Merge operator (tessera.tile.merge.v2). Operands and values have one format, the slot list;
 * merging walks the inputs slot by slot: a slot present in one input is copied as bytes, only
 * a slot present in several is decoded, merged with the kernel and re-encoded; raw events are
 * concatenated. Merge is commutative and associative for every op, so RocksDB may group
 * operands as it likes. Columns are found through the GroupBy name in the key, in the registry
 * tsr_tile_store_register fills (which must run before the store is used, also after a
 * restart).
 *
 * Retention. A read at q >= B never needs a stream record before B (the batch covers it), so
 * a compaction filter drops day/hour records that end at or before their GroupBy's current B.
 * Raw events of [B, now) are all kept: a fetch may ask for any q >= B, and the one at q needs
 * the raw events of [floor(q/5m)*5m, q). Batch records of older versions are deleted by range
 * when a new version is committed.
 */
#include "tile_store_int.h"

#include <dirent.h>
#include <stddef.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "tsr/tile.h"
#include "tsr/window.h"

static void pend_free(const tsr__ts_gb_t *g, tsr__pend_t *c);
static void pool_drain(tsr_tile_store_t *s);
static int replay_log(tsr_tile_store_t *s, tsr__ts_gb_t *g, tsr_error_t *err);
static void *flusher_main(void *arg);

/* The write-back memory of a store: each GroupBy flushes when its table reaches an equal share
 * of the budget (at least PEND_MIN_BYTES). The larger the table, the more of a record's events
 * share one operand: with 100k keys mixed uniformly, a 48 MiB table flushed ~0.7 records per
 * event, a 256 MiB one ~0.15. */
#define PEND_BUDGET_BYTES ((size_t)256 << 20)
#define PEND_MIN_BYTES ((size_t)16 << 20)

/* ---- registry */

static tsr__ts_gb_t *find_gb(tsr_tile_store_t *s, const char *name, size_t n) {
    for (size_t i = 0; i < s->ngbs; i++)
        if (s->gbs[i].nlen == n && memcmp(s->gbs[i].name, name, n) == 0) return &s->gbs[i];
    return NULL;
}

/* Lock-free: entries are immutable once published (ngbs is stored with release after the
 * entry is complete) and never move, so readers on several threads share no written cache
 * line here. */
tsr__ts_gb_t *tsr__ts_lookup(tsr_tile_store_t *s, const char *gb, tsr_error_t *err) {
    size_t n = strlen(gb), ngbs = __atomic_load_n(&s->ngbs, __ATOMIC_ACQUIRE);
    tsr__ts_gb_t *g = NULL;
    for (size_t i = 0; i < ngbs && !g; i++)
        if (s->gbs[i].nlen == n && memcmp(s->gbs[i].name, gb, n) == 0) g = &s->gbs[i];
    if (!g) tsr_error_set(err, TSR_ENOTFOUND, "GroupBy %s is not registered in the tile store", gb);
    return g;
}

/* The GroupBy of a key tag gb '\0' ... (merge operator, compaction filter). */
static tsr__ts_gb_t *gb_of_key(tsr_tile_store_t *s, const char *key, size_t n) {
    if (n < 2) return NULL;
    const char *z = memchr(key + 1, '\0', n - 1);
    if (!z) return NULL;
    size_t nl = (size_t)(z - key - 1), ngbs = __atomic_load_n(&s->ngbs, __ATOMIC_ACQUIRE);
    for (size_t i = 0; i < ngbs; i++) /* lock-free, as tsr__ts_lookup */
        if (s->gbs[i].nlen == nl && memcmp(s->gbs[i].name, key + 1, nl) == 0) return &s->gbs[i];
    return NULL;
}

/* ---- tiles */

void tsr__tile_init(const tsr__ts_gb_t *g, void *blk) {
    for (size_t c = 0; c < g->ncols; c++) tsr_agg_init(g->cols[c].agg, tsr__tile_col(g, blk, c));
}

void tsr__tile_clear(const tsr__ts_gb_t *g, void *blk) {
    for (size_t c = 0; c < g->ncols; c++) tsr_agg_clear(g->cols[c].agg, tsr__tile_col(g, blk, c));
}

void tsr__tile_encode(const tsr__ts_gb_t *g, const void *blk, tsr_buf_t *out) {
    for (size_t c = 0; c < g->ncols; c++) {
        /* reserve one length byte, encode, then fix the varint up (IRs are mostly < 128 B) */
        size_t at = out->len;
        tsr_buf_putc(out, 0);
        tsr_agg_encode(g->cols[c].agg, tsr__tile_col(g, (void *)blk, c), out);
        size_t n = out->len - at - 1;
        if (n < 128) {
            out->data[at] = (uint8_t)n;
        } else {
            uint8_t tmp[10];
            size_t nv = 0;
            for (uint64_t v = n; v >= 128; v >>= 7) tmp[nv++] = (uint8_t)(v | 128);
            tmp[nv] = (uint8_t)(n >> (7 * nv));
            nv++;
            tsr_buf_reserve(out, nv - 1);
            memmove(out->data + at + nv, out->data + at + 1, n);
            memcpy(out->data + at, tmp, nv);
            out->len += nv - 1;
        }
    }
}

int tsr__tile_merge_encoded(const tsr__ts_gb_t *g, void *dst, void *tmp, const uint8_t *v, size_t n) {
    tsr_reader_t r;
    tsr_reader_init(&r, v, n);
    for (size_t c = 0; c < g->ncols; c++) {
        const uint8_t *p;
        size_t len;
        if (tsr_get_bytes(&r, &p, &len)) return TSR_ECORRUPT;
        const tsr_agg_t *a = g->cols[c].agg;
        void *t = tsr__tile_col(g, tmp, c);
        int rc = tsr_agg_decode(a, t, p, len, NULL);
        if (rc == 0) tsr_agg_merge(a, tsr__tile_col(g, dst, c), t);
        tsr_agg_clear(a, t);
        tsr_agg_init(a, t);
        if (rc) return rc;
    }
    return 0;
}

/* ---- merge operator: slot lists */

static void uvarint_put(tsr_buf_t *b, uint64_t v) { tsr_buf_put_uvarint(b, v); }

/* Merges slot lists ins[0..nin) (a value and/or operands, in write order) into one. */
static int merge_slots(const tsr__ts_gb_t *g, int hour, const char *const *ins, const size_t *inl,
                       int nin, tsr_buf_t *out) {
    int nslots = hour ? TSR__HOUR_SLOTS : TSR__DAY_SLOTS;
    tsr_reader_t *cur = tsr_malloc((size_t)nin * sizeof(tsr_reader_t));
    const uint8_t **tp = tsr_malloc((size_t)nin * 2 * sizeof(uint8_t *));
    size_t *tl = tsr_malloc((size_t)nin * 2 * sizeof(size_t));
    const uint8_t **rp = tp + nin;
    size_t *rl = tl + nin;
    for (int i = 0; i < nin; i++) tsr_reader_init(&cur[i], ins[i], inl[i]);
    uint8_t *blk = NULL;
    tsr_buf_t enc;
    tsr_buf_init(&enc);
    int rc = 0;
    for (int slot = 0; slot < nslots && rc == 0; slot++) {
        int nt = 0, nr = 0;
        size_t rawlen = 0;
        for (int i = 0; i < nin; i++) {
            if (tsr_reader_left(&cur[i]) == 0 || *cur[i].p != slot) continue;
            cur[i].p++;
            if (tsr_get_bytes(&cur[i], &tp[nt], &tl[nt])) {
                rc = TSR_ECORRUPT;
                break;
            }
            if (tl[nt]) nt++;
            if (hour) {
                if (tsr_get_bytes(&cur[i], &rp[nr], &rl[nr])) {
                    rc = TSR_ECORRUPT;
                    break;
                }
                rawlen += rl[nr];
                if (rl[nr]) nr++;
            }
        }
        if (rc || (nt == 0 && nr == 0)) continue;
        tsr_buf_putc(out, slot);
        if (nt <= 1) {
            tsr_buf_put_bytes(out, nt ? tp[0] : NULL, nt ? tl[0] : 0);
        } else {
            if (!blk) {
                blk = tsr_malloc(2 * g->ir_size);
                tsr__tile_init(g, blk);
                tsr__tile_init(g, blk + g->ir_size);
            }
            for (int i = 0; i < nt && rc == 0; i++)
                rc = tsr__tile_merge_encoded(g, blk, blk + g->ir_size, tp[i], tl[i]);
            tsr_buf_clear(&enc);
            tsr__tile_encode(g, blk, &enc);
            tsr__tile_clear(g, blk);
            tsr__tile_init(g, blk);
            tsr_buf_put_bytes(out, enc.data, enc.len);
        }
        if (hour) {
            uvarint_put(out, rawlen);
            for (int i = 0; i < nr; i++) tsr_buf_append(out, rp[i], rl[i]);
        }
    }
    for (int i = 0; i < nin && rc == 0; i++)
        if (tsr_reader_left(&cur[i])) rc = TSR_ECORRUPT; /* a slot out of order or range */
    if (blk) {
        tsr__tile_clear(g, blk);
        tsr__tile_clear(g, blk + g->ir_size);
        free(blk);
    }
    tsr_buf_free(&enc);
    free(cur);
    free(tp);
    free(tl);
    return rc;
}

static char *merge_values(tsr_tile_store_t *s, const char *key, size_t klen, const char *existing,
                          size_t elen, const char *const *ops, const size_t *oplen, int nops,
                          unsigned char *success, size_t *outlen) {
    *success = 0;
    *outlen = 0; /* also on failure, or RocksDB crashes (PLATFORM-NOTES) */
    tsr__ts_gb_t *g = key[0] == 't' && klen > 9 ? gb_of_key(s, key, klen) : NULL;
    if (!g) return NULL;
    int type = (uint8_t)key[klen - 9];
    if (type != TSR__REC_DAY && type != TSR__REC_HOUR) return NULL;
    int nin = nops + (existing ? 1 : 0);
    const char **ins = tsr_malloc((size_t)(nin ? nin : 1) * sizeof(char *));
    size_t *inl = tsr_malloc((size_t)(nin ? nin : 1) * sizeof(size_t));
    int k = 0;
    if (existing) {
        ins[k] = existing;
        inl[k++] = elen;
    }
    for (int i = 0; i < nops; i++) {
        ins[k] = ops[i];
        inl[k++] = oplen[i];
    }
    tsr_buf_t b;
    tsr_buf_init(&b);
    char *res = NULL;
    if (merge_slots(g, type == TSR__REC_HOUR, ins, inl, nin, &b) == 0) {
        res = malloc(b.len ? b.len : 1);
        if (res) {
            if (b.len) memcpy(res, b.data, b.len);
            *outlen = b.len;
            *success = 1;
        }
    }
    tsr_buf_free(&b);
    free(ins);
    free(inl);
    return res;
}

static char *op_full_merge(void *st, const char *key, size_t klen, const char *existing,
                           size_t elen, const char *const *ops, const size_t *oplen, int nops,
                           unsigned char *success, size_t *outlen) {
    return merge_values(st, key, klen, existing, elen, ops, oplen, nops, success, outlen);
}
static char *op_partial_merge(void *st, const char *key, size_t klen, const char *const *ops,
                              const size_t *oplen, int nops, unsigned char *success,
                              size_t *outlen) {
    return merge_values(st, key, klen, NULL, 0, ops, oplen, nops, success, outlen);
}
static void op_delete(void *st, const char *v, size_t n) { free((void *)v); }
static const char *op_name(void *st) { return "tessera.tile.merge.v2"; }
static void op_destroy(void *st) {}

/* ---- retention: a compaction filter on the upload version */

/* Drops a day/hour record that ends at or before its GroupBy's current B: every read is at
 * q >= B and takes [.., B) from the batch records. Unregistered GroupBys (e.g. right after a
 * restart) keep everything, and so do the flush state keys 't' gb \0 \0\0\0 tag (puts, so
 * values this filter sees). RocksDB calls this for values, not for merge operands: a record
 * that was only operands goes at the compaction after the one that merged it. */
static unsigned char cf_filter(void *st, int level, const char *key, size_t klen,
                               const char *v, size_t vlen, char **nv, size_t *nvlen,
                               unsigned char *changed) {
    *changed = 0;
    if (klen < 12 || key[0] != 't') return 0;
    tsr__ts_gb_t *g = gb_of_key(st, key, klen);
    if (!g || tsr__is_state_key(key, klen, g->nlen)) return 0; /* marker, log mark, offsets */
    int64_t b = __atomic_load_n(&g->batch_end, __ATOMIC_ACQUIRE);
    if (b == INT64_MIN) return 0;
    int type = (uint8_t)key[klen - 9];
    int64_t start = tsr__get_i64((const uint8_t *)key + klen - 8);
    int64_t len = type == TSR__REC_DAY ? TSR_TILE_1D : type == TSR__REC_HOUR ? TSR_TILE_1H : 0;
    if (!len || start > b - len) return 0;
    return 1;
}
static const char *cf_name(void *st) { return "tessera.tile.retention.v1"; }
static void cf_destroy(void *st) {}

/* ---- open / close / register */

/* dir/ingest (path into b, NUL-terminated): where a write-back flush builds its table file
 * before RocksDB takes it in (a hard link, move_files). */
static void ingest_dir(const tsr_tile_store_t *s, tsr_buf_t *b) {
    tsr_buf_clear(b);
    tsr_buf_printf(b, "%s/ingest", s->dir);
    tsr_buf_cstr(b);
}

/* Creates dir/ingest, or empties it: a file there is a flush that crashed (or failed) before
 * its ingest — nothing of it is in the store, the events are replayed from Kafka or the log. */
static void ingest_dir_reset(const tsr_tile_store_t *s) {
    tsr_buf_t p, f;
    tsr_buf_init(&p);
    tsr_buf_init(&f);
    ingest_dir(s, &p);
    DIR *d = opendir((const char *)p.data);
    if (d) {
        for (struct dirent *de; (de = readdir(d)) != NULL;) {
            if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0) continue;
            tsr_buf_clear(&f);
            tsr_buf_printf(&f, "%s/%s", (const char *)p.data, de->d_name);
            unlink(tsr_buf_cstr(&f));
        }
        closedir(d);
    } else {
        mkdir((const char *)p.data, 0755); /* a failure shows at the first flush */
    }
    tsr_buf_free(&p);
    tsr_buf_free(&f);
}

int tsr_tile_store_open(const char *dir, tsr_tile_store_t **out, tsr_error_t *err) {
    return tsr_tile_store_open_opts(dir, NULL, out, err);
}

/* A record cache's budget: opt when set, else env's MiB (operators, measurements; 0 there:
 * none), else def. (size_t)-1: none (TSR_TILE_BATCH_CACHE_NONE, TSR_TILE_STREAM_CACHE_NONE). */
static size_t cache_budget(size_t opt, const char *env, size_t def) {
    if (opt) return opt;
    const char *ev = getenv(env);
    size_t bytes = ev && *ev ? (size_t)strtoull(ev, NULL, 10) << 20 : def;
    return bytes ? bytes : (size_t)-1;
}

int tsr_tile_store_open_opts(const char *dir, const tsr_tile_store_opts_t *o, tsr_tile_store_t **out,
                             tsr_error_t *err) {
    *out = NULL;
    size_t cache_bytes = o && o->cache_bytes ? o->cache_bytes : TSR_TILE_STORE_CACHE_DEFAULT;
    size_t row_bytes = o ? o->row_cache_bytes : TSR_TILE_ROW_CACHE_AUTO;
    if (row_bytes == TSR_TILE_ROW_CACHE_AUTO) {
        const char *ev = getenv("TSR_TILE_ROW_CACHE_MB"); /* measurements, operators */
        row_bytes = ev && *ev ? (size_t)strtoull(ev, NULL, 10) << 20 : 0;
    }
    size_t bc_bytes = cache_budget(o ? o->batch_cache_bytes : 0, "TSR_TILE_BATCH_CACHE_MB",
                                   TSR_TILE_BATCH_CACHE_DEFAULT);
    size_t sc_bytes = cache_budget(o ? o->stream_cache_bytes : 0, "TSR_TILE_STREAM_CACHE_MB",
                                   TSR_TILE_STREAM_CACHE_DEFAULT);
    tsr_tile_store_t *s = tsr_calloc(1, sizeof(*s));
    pthread_rwlock_init(&s->lock, NULL);
    /* the DB (and default family) options: a base every family starts from */
    s->opts = rocksdb_options_create();
    rocksdb_options_set_create_if_missing(s->opts, 1);
    rocksdb_options_set_create_missing_column_families(s->opts, 1);
    /* memtables of all families together (a write buffer manager), and old WAL files recycled
     * once they hold more than this: the meta family gets a small write per apply and would
     * otherwise keep every WAL alive until its own memtable fills */
    rocksdb_options_set_db_write_buffer_size(s->opts, (size_t)192 << 20);
    rocksdb_options_set_max_total_wal_size(s->opts, (uint64_t)256 << 20);
    rocksdb_options_set_max_background_jobs(s->opts, 2);
    /* fetch latency over space: LZ4 (cheap to decompress), a 256 MiB block cache shared by the
     * families, whole-key bloom filters (a multi-get asks for records that often do not exist:
     * a key without events in that hour) and hash indexes inside data blocks (point lookups) */
    rocksdb_options_set_compression(s->opts, rocksdb_lz4_compression);
    s->cache = rocksdb_cache_create_lru(cache_bytes);
    /* a row cache of records in front of the table files: a hit skips the filter, index and
     * data block search of a get (-30 % instructions per read while the records fit). Beside
     * the block cache, not carved out of it: on a store larger than the caches, a smaller
     * block cache cost more than the row cache's inserts (docs/tile-store.md "Row cache") */
    if (row_bytes) {
        s->row_cache = rocksdb_cache_create_lru(row_bytes);
        rocksdb_options_set_row_cache(s->opts, s->row_cache);
    }
    s->table = rocksdb_block_based_options_create();
    rocksdb_block_based_options_set_block_cache(s->table, s->cache);
    rocksdb_block_based_options_set_filter_policy(s->table, rocksdb_filterpolicy_create_bloom_full(10));
    rocksdb_block_based_options_set_data_block_index_type(
        s->table, rocksdb_block_based_table_data_block_index_type_binary_search_and_hash);
    rocksdb_block_based_options_set_data_block_hash_ratio(s->table, 0.75);
    /* a restart point every 4 keys instead of 16: a point lookup, sent by the block's hash
     * index to a restart interval, parses at most 4 keys there (-4 % instructions per tile
     * read, callgrind of bench_tile_read --sparse; ~3-5 % larger data blocks) */
    rocksdb_block_based_options_set_block_restart_interval(s->table, 4);
    s->table_log = rocksdb_block_based_options_create();
    rocksdb_block_based_options_set_block_cache(s->table_log, s->cache);
    rocksdb_options_set_block_based_table_factory(s->opts, s->table);
    /* meta, batch, stream: point reads and multi-gets. The memtable too gets a whole-key bloom
     * filter: it spares the skiplist search for the records a multi-get asks for and the
     * memtable does not hold (most of them) — that search was the top of the fetch profile
     * while an upload or recent stream state sat in the memtable */
    for (int f = TSR__CF_META; f <= TSR__CF_STREAM; f++) {
        s->cf_opts[f] = rocksdb_options_create_copy(s->opts);
        rocksdb_options_set_memtable_whole_key_filtering(s->cf_opts[f], 1);
        rocksdb_options_set_memtable_prefix_bloom_size_ratio(s->cf_opts[f], 0.1);
    }
    /* meta: a few tiny records per GroupBy and partition, rewritten at every apply */
    rocksdb_options_set_write_buffer_size(s->cf_opts[TSR__CF_META], (size_t)4 << 20);
    /* stream: records merged in place, and dropped before B at compaction */
    s->merge = rocksdb_mergeoperator_create(s, op_destroy, op_full_merge, op_partial_merge,
                                            op_delete, op_name);
    rocksdb_options_set_merge_operator(s->cf_opts[TSR__CF_STREAM], s->merge);
    s->cfilter = rocksdb_compactionfilter_create(s, cf_destroy, cf_filter, cf_name);
    rocksdb_options_set_compaction_filter(s->cf_opts[TSR__CF_STREAM], s->cfilter);
    /* log: appended in sequence, read only by a replay's scan, deleted by range at each flush:
     * no bloom filter, no hash index, no memtable filter */
    s->cf_opts[TSR__CF_LOG] = rocksdb_options_create_copy(s->opts);
    rocksdb_options_set_block_based_table_factory(s->cf_opts[TSR__CF_LOG], s->table_log);
    char *e = NULL;
    static const char *const cfn[TSR__NCF] = {"default", "meta", "batch", "stream", "log"};
    const rocksdb_options_t *cfo[TSR__NCF];
    for (int f = 0; f < TSR__NCF; f++) cfo[f] = f == TSR__CF_DEFAULT ? s->opts : s->cf_opts[f];
    s->db = rocksdb_open_column_families(s->opts, dir, TSR__NCF, (const char *const *)cfn, cfo,
                                         s->cf, &e);
    if (!e) { /* a store of the one-family layout (before column families) is not read */
        rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
        rocksdb_iterator_t *it = rocksdb_create_iterator_cf(s->db, ro, s->cf[TSR__CF_DEFAULT]);
        rocksdb_iter_seek_to_first(it);
        if (rocksdb_iter_valid(it))
            e = tsr_strdup("keys in the default column family: a store of the layout before "
                           "column families (re-create it)");
        else
            rocksdb_iter_get_error(it, &e);
        rocksdb_iter_destroy(it);
        rocksdb_readoptions_destroy(ro);
        if (e) {
            for (int f = 0; f < TSR__NCF; f++) rocksdb_column_family_handle_destroy(s->cf[f]);
            rocksdb_close(s->db);
        }
    }
    if (e) {
        int rc = tsr_error_set(err, TSR_EIO, "tile store %s: %s", dir, e);
        free(e);
        rocksdb_options_destroy(s->opts);
        for (int f = 0; f < TSR__NCF; f++)
            if (s->cf_opts[f]) /* stream's owns the merge operator */
                rocksdb_options_destroy(s->cf_opts[f]);
        rocksdb_compactionfilter_destroy(s->cfilter);
        rocksdb_block_based_options_destroy(s->table);
        rocksdb_block_based_options_destroy(s->table_log);
        rocksdb_cache_destroy(s->cache);
        if (s->row_cache) rocksdb_cache_destroy(s->row_cache);
        pthread_rwlock_destroy(&s->lock);
        free(s);
        return rc;
    }
    s->dir = tsr_strdup(dir);
    ingest_dir_reset(s);
    if (bc_bytes != TSR_TILE_BATCH_CACHE_NONE) s->bcache = tsr__bcache_create(bc_bytes);
    if (sc_bytes != TSR_TILE_STREAM_CACHE_NONE) s->scache = tsr__bcache_create(sc_bytes);
    const char *warm = getenv("TSR_TILE_STREAM_WARM");
    s->warm = !(warm && strcmp(warm, "0") == 0);
    s->wo = rocksdb_writeoptions_create();
    s->ro = rocksdb_readoptions_create();
    s->pend_budget = PEND_BUDGET_BYTES;
    pthread_mutex_init(&s->pend_pool_mu, NULL);
    pthread_mutex_init(&s->fl_mu, NULL);
    pthread_cond_init(&s->fl_cv, NULL);
    pthread_cond_init(&s->fl_done_cv, NULL);
    pthread_create(&s->flusher, NULL, flusher_main, s);
    *out = s;
    return 0;
}

void tsr_tile_store_cache_usage(tsr_tile_store_t *s, size_t *block, size_t *row) {
    if (block) *block = rocksdb_cache_get_usage(s->cache);
    if (row) *row = s->row_cache ? rocksdb_cache_get_usage(s->row_cache) : 0;
}

static void cache_stats(tsr__bcache_t *c, tsr_tile_cache_stats_t *st) {
    memset(st, 0, sizeof(*st));
    if (!c) return;
    tsr__bcache_stats_t b;
    tsr__bcache_stats(c, &b);
    *st = (tsr_tile_cache_stats_t){b.hits, b.misses, b.puts, b.full, b.clears, b.bytes, b.entries, b.budget};
}

void tsr_tile_store_batch_cache_stats(tsr_tile_store_t *s, tsr_tile_cache_stats_t *st) {
    cache_stats(s->bcache, st);
}

void tsr_tile_store_stream_cache_stats(tsr_tile_store_t *s, tsr_tile_cache_stats_t *st) {
    cache_stats(s->scache, st);
}

void tsr_tile_store_close(tsr_tile_store_t *s) {
    if (!s) return;
    pthread_mutex_lock(&s->fl_mu);
    s->fl_stop = 1;
    pthread_cond_broadcast(&s->fl_cv);
    pthread_mutex_unlock(&s->fl_mu);
    pthread_join(s->flusher, NULL);
    tsr_tile_store_flush(s, NULL); /* a failure leaves the log: the next open replays it */
    for (size_t i = 0; i < s->ngbs; i++) {
        pend_free(&s->gbs[i], s->gbs[i].act);
        pend_free(&s->gbs[i], s->gbs[i].imm);
        if (s->gbs[i].log_wb) rocksdb_writebatch_destroy(s->gbs[i].log_wb);
        pthread_mutex_destroy(&s->gbs[i].apply_mu);
        pthread_mutex_destroy(&s->gbs[i].flush_mu);
        pthread_rwlock_destroy(&s->gbs[i].pend_lock);
    }
    for (int f = 0; f < TSR__NCF; f++) rocksdb_column_family_handle_destroy(s->cf[f]);
    rocksdb_close(s->db);
    rocksdb_options_destroy(s->opts);
    for (int f = 0; f < TSR__NCF; f++)
        if (s->cf_opts[f]) /* stream's owns the merge operator */
            rocksdb_options_destroy(s->cf_opts[f]);
    rocksdb_compactionfilter_destroy(s->cfilter);
    rocksdb_block_based_options_destroy(s->table);
    rocksdb_block_based_options_destroy(s->table_log);
    rocksdb_cache_destroy(s->cache);
    if (s->row_cache) rocksdb_cache_destroy(s->row_cache);
    tsr__bcache_destroy(s->bcache);
    tsr__bcache_destroy(s->scache);
    rocksdb_writeoptions_destroy(s->wo);
    rocksdb_readoptions_destroy(s->ro);
    for (size_t i = 0; i < s->ngbs; i++) {
        free(s->gbs[i].name);
        for (size_t c = 0; c < s->gbs[i].ncols; c++) free((void *)s->gbs[i].cols[c].windows);
        free(s->gbs[i].cols);
        free(s->gbs[i].ir_off);
    }
    pool_drain(s);
    pthread_mutex_destroy(&s->pend_pool_mu);
    pthread_mutex_destroy(&s->fl_mu);
    pthread_cond_destroy(&s->fl_cv);
    pthread_cond_destroy(&s->fl_done_cv);
    pthread_rwlock_destroy(&s->lock);
    free(s->dir);
    free(s);
}

static int get_i64_value(tsr_tile_store_t *s, int cf, const tsr_buf_t *k, int64_t *out) {
    char *e = NULL;
    size_t vlen;
    char *v = rocksdb_get_cf(s->db, s->ro, s->cf[cf], (const char *)k->data, k->len, &vlen, &e);
    if (e) {
        free(e);
        return TSR_EIO;
    }
    if (!v) return TSR_ENOTFOUND;
    int rc = vlen == 8 ? 0 : TSR_ECORRUPT;
    if (!rc) *out = tsr__get_i64((const uint8_t *)v);
    rocksdb_free(v);
    return rc;
}

/* g->written_hi from the state key 'W' (tile_store_int.h). A store without it: nothing in the
 * GroupBy's 't' range means nothing was ever written (INT64_MIN: the first flush writes puts);
 * anything there (a store of older code) means unknown (INT64_MAX: merge operands, as before). */

/* 1 when family cf surely holds no key in [lo, hi) (one iterator seek; an error counts as
 * "maybe not empty") */
static int range_empty(tsr_tile_store_t *s, int cf, const tsr_buf_t *lo, const tsr_buf_t *hi) {
    rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
    rocksdb_readoptions_set_iterate_upper_bound(ro, (const char *)hi->data, hi->len);
    rocksdb_iterator_t *it = rocksdb_create_iterator_cf(s->db, ro, s->cf[cf]);
    rocksdb_iter_seek(it, (const char *)lo->data, lo->len);
    char *e = NULL;
    int any = rocksdb_iter_valid(it);
    rocksdb_iter_get_error(it, &e);
    int empty = !any && !e;
    free(e);
    rocksdb_iter_destroy(it);
    rocksdb_readoptions_destroy(ro);
    return empty;
}

static void written_hi_load(tsr_tile_store_t *s, tsr__ts_gb_t *g) {
    tsr_buf_t k;
    tsr_buf_init(&k);
    tsr__state_key(&k, g->name, g->nlen, 'W');
    char *e = NULL;
    size_t vl;
    char *v = rocksdb_get_cf(s->db, s->ro, s->cf[TSR__CF_STREAM], (const char *)k.data, k.len, &vl, &e);
    g->written_hi[0] = g->written_hi[1] = INT64_MAX;
    if (!e && v && vl == 16) {
        g->written_hi[0] = tsr__get_i64((const uint8_t *)v);
        g->written_hi[1] = tsr__get_i64((const uint8_t *)v + 8);
    } else if (!e && !v) {
        tsr_buf_t hi;
        tsr_buf_init(&hi);
        tsr_buf_putc(&hi, 't'); /* 't' gb \1: past every 't' gb \0 key */
        tsr_buf_append(&hi, g->name, g->nlen);
        tsr_buf_putc(&hi, 1);
        tsr__key_prefix(&k, 't', g->name, g->nlen);
        if (range_empty(s, TSR__CF_STREAM, &k, &hi)) g->written_hi[0] = g->written_hi[1] = INT64_MIN;
        tsr_buf_free(&hi);
    }
    free(e);
    rocksdb_free(v);
    tsr_buf_free(&k);
}

int tsr_tile_store_register(tsr_tile_store_t *s, const tsr_tile_gb_t *gb, tsr_error_t *err) {
    size_t n = strlen(gb->name);
    if (n == 0 || n > TSR__TS_GB_NAME_MAX)
        return tsr_error_set(err, TSR_EINVAL, "GroupBy name must be 1..%d bytes", TSR__TS_GB_NAME_MAX);
    pthread_rwlock_wrlock(&s->lock);
    int rc = 0;
    if (find_gb(s, gb->name, n)) {
        rc = tsr_error_set(err, TSR_EEXIST, "GroupBy %s is already registered", gb->name);
    } else if (s->ngbs == TSR__TS_MAX_GB) {
        rc = tsr_error_set(err, TSR_EINVAL, "more than %d GroupBys in one tile store", TSR__TS_MAX_GB);
    } else {
        tsr__ts_gb_t *g = &s->gbs[s->ngbs];
        g->name = tsr_strdup(gb->name);
        g->nlen = n;
        g->ncols = gb->ncols;
        g->cols = tsr_calloc(gb->ncols ? gb->ncols : 1, sizeof(tsr_tile_col_t));
        g->ir_off = tsr_calloc(gb->ncols ? gb->ncols : 1, sizeof(size_t));
        g->ir_size = 0;
        for (size_t c = 0; c < gb->ncols; c++) {
            g->cols[c] = gb->cols[c];
            int64_t *w = tsr_malloc((gb->cols[c].nwin ? gb->cols[c].nwin : 1) * sizeof(int64_t));
            if (gb->cols[c].nwin) memcpy(w, gb->cols[c].windows, gb->cols[c].nwin * sizeof(int64_t));
            g->cols[c].windows = w;
            g->ir_off[c] = g->ir_size;
            g->ir_size += tsr_agg_ir_size(gb->cols[c].agg); /* multiples of 8 */
            if (gb->cols[c].bucket_slot >= 0) g->has_bucket = 1;
        }
        if (g->ir_size == 0) g->ir_size = 8;
        tsr_buf_t k;
        tsr_buf_init(&k);
        tsr__key_prefix(&k, 'm', gb->name, n);
        tsr_buf_putc(&k, 'B');
        int64_t ver;
        if (get_i64_value(s, TSR__CF_META, &k, &ver) != 0) ver = INT64_MIN;
        __atomic_store_n(&g->batch_ver, ver, __ATOMIC_RELEASE);
        __atomic_store_n(&g->batch_end, tsr_ver_day(ver), __ATOMIC_RELEASE);
        pthread_mutex_init(&g->apply_mu, NULL);
        pthread_mutex_init(&g->flush_mu, NULL);
        pthread_rwlock_init(&g->pend_lock, NULL);
        g->act = g->imm = NULL;
        /* the last flush generation that landed ('m' gb \0 'F' in a store written before
         * session 6, until its first flush with the new key) */
        tsr__state_key(&k, gb->name, n, 'F');
        int64_t gen;
        int grc = get_i64_value(s, TSR__CF_STREAM, &k, &gen);
        if (grc == TSR_ENOTFOUND) {
            tsr__state_key_old(&k, gb->name, n, 'F');
            grc = get_i64_value(s, TSR__CF_STREAM, &k, &gen);
        }
        g->gen = grc == 0 ? (uint64_t)gen ^ (UINT64_C(1) << 63) : 0;
        tsr_buf_free(&k);
        written_hi_load(s, g);
        rc = replay_log(s, g, err);
        if (rc == 0) /* published last: the flusher reads gbs without s->lock */
            __atomic_store_n(&s->ngbs, s->ngbs + 1, __ATOMIC_RELEASE);
        else {
            pend_free(g, g->act);
            pthread_mutex_destroy(&g->apply_mu);
            pthread_mutex_destroy(&g->flush_mu);
            pthread_rwlock_destroy(&g->pend_lock);
            free(g->name);
            for (size_t c = 0; c < g->ncols; c++) free((void *)g->cols[c].windows);
            free(g->cols);
            free(g->ir_off);
            memset(g, 0, sizeof(*g));
        }
    }
    pthread_rwlock_unlock(&s->lock);
    return rc;
}

int64_t tsr_tile_store_batch_end(tsr_tile_store_t *s, const char *gb) {
    tsr__ts_gb_t *g = tsr__ts_lookup(s, gb, NULL);
    return g ? __atomic_load_n(&g->batch_end, __ATOMIC_ACQUIRE) : INT64_MIN;
}

/* ---- uploads */

/* A key's records wait here until the key is complete, then go out as one batch record: the
 * lifetime tile and, per hop, the suffix aggregates — the entry at start holds every tail tile
 * of that hop from start to B merged — so a fetch reads one record for all of its windows. */
typedef struct pending_tile {
    int kind;
    int64_t start;
    size_t off, len;            /* encoded tile value in tiles; later its suffix in sfx */
} pending_tile_t;

struct tsr_tile_upload {
    tsr_tile_store_t *s;
    tsr__ts_gb_t *g;
    int64_t b;                  /* the upload's B */
    int64_t ver;                /* the version id its records are written under */
    int switching;              /* in the commit's switch: the cache's write lock is held */
    rocksdb_writebatch_t *wb;
    size_t pending;
    tsr_buf_t key, val;
    tsr_buf_t cur;              /* the key whose records are pending */
    tsr_buf_t life;             /* its lifetime tile (encoded), when has_life */
    int has_life;
    pending_tile_t *pt;
    size_t npt, cappt;
    tsr_buf_t tiles, sfx;
};

#define UPLOAD_FLUSH 4096

static void version_range(tsr_buf_t *lo, tsr_buf_t *hi, const tsr__ts_gb_t *g, int64_t b) {
    tsr__key_prefix(lo, 'b', g->name, g->nlen);
    tsr__put_i64(lo, b);
    tsr__key_prefix(hi, 'b', g->name, g->nlen);
    tsr__put_i64(hi, b + 1);
}

/* Adds to the upload's write batch the deletion of version b's records — only when there are
 * some (the first upload of a version finds none): a range deletion lands in the table file of
 * the records written after it, and every later read in that file seeks the file's range
 * tombstones first (~6 % of a worker's read CPU when every upload wrote one). Returns 1 when
 * it added one. */
static int delete_version(tsr_tile_upload_t *u, int64_t b) {
    tsr_buf_t lo, hi;
    tsr_buf_init(&lo);
    tsr_buf_init(&hi);
    version_range(&lo, &hi, u->g, b);
    int any = !range_empty(u->s, TSR__CF_BATCH, &lo, &hi);
    if (any)
        rocksdb_writebatch_delete_range_cf(u->wb, u->s->cf[TSR__CF_BATCH], (const char *)lo.data,
                                           lo.len, (const char *)hi.data, hi.len);
    tsr_buf_free(&lo);
    tsr_buf_free(&hi);
    return any;
}

static int upload_begin(tsr_tile_store_t *s, const char *gb, int64_t batch_end, int add,
                        tsr_tile_upload_t **out, tsr_error_t *err);

int tsr_tile_upload_begin(tsr_tile_store_t *s, const char *gb, int64_t batch_end,
                          tsr_tile_upload_t **out, tsr_error_t *err) {
    return upload_begin(s, gb, batch_end, 0, out, err);
}

int tsr_tile_upload_begin_add(tsr_tile_store_t *s, const char *gb, int64_t batch_end,
                              tsr_tile_upload_t **out, tsr_error_t *err) {
    return upload_begin(s, gb, batch_end, 1, out, err);
}

static int upload_begin(tsr_tile_store_t *s, const char *gb, int64_t batch_end, int add,
                        tsr_tile_upload_t **out, tsr_error_t *err) {
    *out = NULL;
    tsr__ts_gb_t *g = tsr__ts_lookup(s, gb, err);
    if (!g) return TSR_ENOTFOUND;
    if (tsr_floor_div(batch_end, TSR_MS_PER_DAY) * TSR_MS_PER_DAY != batch_end)
        return tsr_error_set(err, TSR_EINVAL, "upload version %lld is not a midnight", (long long)batch_end);
    tsr_tile_upload_t *u = tsr_calloc(1, sizeof(*u));
    u->s = s;
    u->g = g;
    u->b = batch_end;
    u->wb = rocksdb_writebatch_create();
    tsr_buf_init(&u->key);
    tsr_buf_init(&u->val);
    tsr_buf_init(&u->cur);
    tsr_buf_init(&u->life);
    tsr_buf_init(&u->tiles);
    tsr_buf_init(&u->sfx);
    /* records added to the version being served go into it (they must stay readable). Any
     * other upload writes a version id nobody reads until its commit: B, or when B is the
     * one served, B's other id (B + 1 ms while B is served, B while B + 1 ms is), so that the
     * served records stay readable while it runs and after it fails. A leftover of a crashed
     * upload under that id is dropped first. */
    int64_t cur = __atomic_load_n(&g->batch_ver, __ATOMIC_ACQUIRE);
    if (add && batch_end == tsr_ver_day(cur)) {
        u->ver = cur;
        *out = u;
        return 0;
    }
    u->ver = batch_end == tsr_ver_day(cur) && cur == batch_end ? batch_end + 1 : batch_end;
    delete_version(u, u->ver);
    *out = u;
    return 0;
}

static int upload_flush(tsr_tile_upload_t *u, tsr_error_t *err) {
    char *e = NULL;
    rocksdb_write(u->s->db, u->s->wo, u->wb, &e);
    rocksdb_writebatch_clear(u->wb);
    u->pending = 0;
    /* records written into the version being served (tsr_tile_upload_begin_add, or the
     * served version uploaded again): the cache must not keep what they replaced. Cleared
     * after the write (batch_cache.h) */
    if (u->s->bcache && !u->switching && u->ver == __atomic_load_n(&u->g->batch_ver, __ATOMIC_ACQUIRE))
        tsr__bcache_clear(u->s->bcache);
    if (e) {
        int rc = tsr_error_set(err, TSR_EIO, "upload write: %s", e);
        free(e);
        return rc;
    }
    return 0;
}

static int pt_cmp(const void *a, const void *b) {
    const pending_tile_t *x = a, *y = b;
    if (x->kind != y->kind) return x->kind < y->kind ? -1 : 1;
    return x->start < y->start ? -1 : x->start > y->start;
}

/* Writes the pending key's batch record. */
static int flush_key(tsr_tile_upload_t *u, tsr_error_t *err) {
    if (u->npt == 0 && !u->has_life) return 0;
    tsr__ts_gb_t *g = u->g;
    if (u->npt > 1) qsort(u->pt, u->npt, sizeof(pending_tile_t), pt_cmp); /* pt is NULL with none */
    uint8_t *blk = tsr_malloc(2 * g->ir_size);
    uint8_t *acc = blk, *tmp = blk + g->ir_size;
    tsr__tile_init(g, acc);
    tsr__tile_init(g, tmp);
    int rc = 0;
    /* suffix aggregates, per kind from the last tile back */
    tsr_buf_clear(&u->sfx);
    for (size_t i = u->npt; i > 0 && rc == 0; i--) {
        pending_tile_t *t = &u->pt[i - 1];
        if (i == u->npt || u->pt[i].kind != t->kind) {
            tsr__tile_clear(g, acc);
            tsr__tile_init(g, acc);
        }
        if ((rc = tsr__tile_merge_encoded(g, acc, tmp, u->tiles.data + t->off, t->len)) != 0) {
            tsr_error_set(err, rc, "upload: corrupt tile");
            break;
        }
        t->off = u->sfx.len;
        tsr__tile_encode(g, acc, &u->sfx);
        t->len = u->sfx.len - t->off;
    }
    tsr__tile_clear(g, acc);
    tsr__tile_clear(g, tmp);
    free(blk);
    if (rc == 0) {
        tsr_buf_clear(&u->val);
        tsr_buf_put_bytes(&u->val, u->life.data, u->has_life ? u->life.len : 0);
        size_t i = 0;
        for (int kind = TSR_TILE_TAIL_5M; kind <= TSR_TILE_TAIL_1D; kind++) {
            size_t j = i;
            while (j < u->npt && u->pt[j].kind == kind) j++;
            tsr_buf_put_uvarint(&u->val, j - i);
            tsr_buf_clear(&u->tiles); /* the section, aside: it goes out length-prefixed */
            for (; i < j; i++) {
                tsr_buf_put_svarint(&u->tiles, u->pt[i].start);
                tsr_buf_put_bytes(&u->tiles, u->sfx.data + u->pt[i].off, u->pt[i].len);
            }
            tsr_buf_put_bytes(&u->val, u->tiles.data, u->tiles.len);
        }
        tsr__key_prefix(&u->key, 'b', g->name, g->nlen);
        tsr__put_i64(&u->key, u->ver);
        tsr__put_key(&u->key, u->cur.data, u->cur.len);
        rocksdb_writebatch_put_cf(u->wb, u->s->cf[TSR__CF_BATCH], (const char *)u->key.data,
                                  u->key.len, (const char *)u->val.data, u->val.len);
        if (++u->pending >= UPLOAD_FLUSH) rc = upload_flush(u, err);
    }
    u->npt = 0;
    u->has_life = 0;
    tsr_buf_clear(&u->tiles);
    tsr_buf_clear(&u->life);
    return rc;
}

int tsr_tile_upload_put(tsr_tile_upload_t *u, const void *key, size_t klen, tsr_tile_kind_t kind,
                        int64_t start, const void *const *irs, tsr_error_t *err) {
    if (klen > 0xffff) return tsr_error_set(err, TSR_EINVAL, "key longer than 65535 bytes");
    if ((int)kind < TSR_TILE_LIFETIME || kind > TSR_TILE_TAIL_1D)
        return tsr_error_set(err, TSR_EINVAL, "unknown batch record kind %d", (int)kind);
    if (kind != TSR_TILE_LIFETIME && tsr_floor_div(start, tsr_tile_kind_hop(kind)) * tsr_tile_kind_hop(kind) != start)
        return tsr_error_set(err, TSR_EINVAL, "tail tile start %lld is not aligned to its hop", (long long)start);
    if (u->cur.len != klen || (klen && memcmp(u->cur.data, key, klen) != 0)) {
        int rc = flush_key(u, err);
        if (rc) return rc;
        tsr_buf_clear(&u->cur);
        tsr_buf_append(&u->cur, key, klen);
    }
    tsr__ts_gb_t *g = u->g;
    if (kind == TSR_TILE_LIFETIME) {
        /* the last lifetime record of a key wins, as a put of the same key would */
        tsr_buf_clear(&u->life);
        for (size_t c = 0; c < g->ncols; c++) {
            tsr_buf_t one;
            tsr_buf_init(&one);
            tsr_agg_encode(g->cols[c].agg, irs[c], &one);
            tsr_buf_put_bytes(&u->life, one.data, one.len);
            tsr_buf_free(&one);
        }
        u->has_life = 1;
        return 0;
    }
    if (u->npt == u->cappt) {
        u->cappt = u->cappt ? 2 * u->cappt : 64;
        u->pt = tsr_realloc(u->pt, u->cappt * sizeof(pending_tile_t));
    }
    size_t off = u->tiles.len;
    tsr_buf_t one;
    tsr_buf_init(&one);
    for (size_t c = 0; c < g->ncols; c++) {
        tsr_buf_clear(&one);
        tsr_agg_encode(g->cols[c].agg, irs[c], &one);
        tsr_buf_put_bytes(&u->tiles, one.data, one.len);
    }
    tsr_buf_free(&one);
    u->pt[u->npt++] = (pending_tile_t){(int)kind, start, off, u->tiles.len - off};
    return 0;
}

static void upload_free(tsr_tile_upload_t *u) {
    rocksdb_writebatch_destroy(u->wb);
    tsr_buf_free(&u->key);
    tsr_buf_free(&u->val);
    tsr_buf_free(&u->cur);
    tsr_buf_free(&u->life);
    tsr_buf_free(&u->tiles);
    tsr_buf_free(&u->sfx);
    free(u->pt);
    free(u);
}

int tsr_tile_upload_commit(tsr_tile_upload_t *u, tsr_error_t *err) {
    int rc = flush_key(u, err);
    if (rc == 0) rc = upload_flush(u, err);
    if (rc) {
        tsr_tile_upload_abort(u);
        return rc;
    }
    /* switch the version, then drop every older one, in one write */
    int64_t old = __atomic_load_n(&u->g->batch_ver, __ATOMIC_ACQUIRE);
    tsr__key_prefix(&u->key, 'm', u->g->name, u->g->nlen);
    tsr_buf_putc(&u->key, 'B');
    tsr_buf_clear(&u->val);
    tsr__put_i64(&u->val, u->ver);
    rocksdb_writebatch_put_cf(u->wb, u->s->cf[TSR__CF_META], (const char *)u->key.data, u->key.len,
                              (const char *)u->val.data, u->val.len);
    int del = old != INT64_MIN && old != u->ver && delete_version(u, old);
    /* With the batch record cache, the switch happens under its write lock: a read holds the
     * read lock from before it takes the version id to its last merge, so no read has its
     * old records deleted under it. Without the cache, readers take the new id (and B from
     * it) before this write deletes the old records, and a read that finds its old record
     * gone sees the new id and reads again (tile_store_read.c, read_stale_again). Every
     * record of the new id is written already; this write holds only the switch and the
     * deletion. */
    if (u->s->bcache) {
        tsr__bcache_wrlock(u->s->bcache);
        u->switching = 1;
    }
    if (del) __atomic_store_n(&u->g->batch_ver, u->ver, __ATOMIC_RELEASE);
    rc = upload_flush(u, err);
    if (rc == 0) {
        __atomic_store_n(&u->g->batch_ver, u->ver, __ATOMIC_RELEASE);
        __atomic_store_n(&u->g->batch_end, u->b, __ATOMIC_RELEASE);
    } else if (del) {
        __atomic_store_n(&u->g->batch_ver, old, __ATOMIC_RELEASE); /* still served */
    }
    if (u->s->bcache) {
        /* the version switched: drop the cached records of the one before (readers now ask
         * for the new version's keys; the cache holds no record of it, since every earlier
         * switch cleared it too) */
        if (rc == 0) tsr__bcache_clear_locked(u->s->bcache);
        u->switching = 0;
        tsr__bcache_wrunlock(u->s->bcache);
    }
    if (rc == 0) {
        /* move the upload out of the memtable into a table file (bloom filters, hash indexes):
         * fetches then find its records without walking a large skiplist (the batch family:
         * the stream's memtable is not the upload's business) */
        rocksdb_flushoptions_t *fo = rocksdb_flushoptions_create();
        rocksdb_flushoptions_set_wait(fo, 1);
        char *e = NULL;
        rocksdb_flush_cf(u->s->db, fo, u->s->cf[TSR__CF_BATCH], &e);
        free(e); /* best effort: the upload is durable in the WAL either way */
        rocksdb_flushoptions_destroy(fo);
    }
    upload_free(u);
    return rc;
}

void tsr_tile_upload_abort(tsr_tile_upload_t *u) {
    if (!u) return;
    rocksdb_writebatch_clear(u->wb);
    if (u->ver != __atomic_load_n(&u->g->batch_ver, __ATOMIC_ACQUIRE) && delete_version(u, u->ver)) {
        char *e = NULL;
        rocksdb_write(u->s->db, u->s->wo, u->wb, &e);
        free(e);
    }
    upload_free(u);
}

/* ---- streaming */

/* The offset as stored (the last flush's), or -1. A flush writes the offsets into the stream
 * family, in the table file of its records, as 't' gb \0 \0\0\0 'o' name (session 6). Older
 * stores are read in layout order, newest first: a partition without that key is looked up
 * as 'm' gb \0 'o' name in the stream family (sessions 5), then in meta (session 4 and
 * earlier) — each its last value under that layout: newer code never writes the older keys,
 * and the first flush that reaches the partition shadows them. */
static int64_t stored_offset(tsr_tile_store_t *s, const char *gb, const char *offset_name) {
    tsr_buf_t k;
    tsr_buf_init(&k);
    size_t n = strlen(gb);
    tsr__state_key(&k, gb, n, 'o');
    tsr_buf_puts(&k, offset_name);
    int64_t v;
    int rc = get_i64_value(s, TSR__CF_STREAM, &k, &v);
    if (rc == TSR_ENOTFOUND) {
        tsr__state_key_old(&k, gb, n, 'o');
        tsr_buf_puts(&k, offset_name);
        rc = get_i64_value(s, TSR__CF_STREAM, &k, &v);
        if (rc == TSR_ENOTFOUND) rc = get_i64_value(s, TSR__CF_META, &k, &v);
    }
    tsr_buf_free(&k);
    return rc ? -1 : v;
}

/* ---- the write-back table: record key -> slot tiles
 *
 * An open-addressing table (load <= 1/2) from a record key to an entry, each bucket holding
 * the key's hash beside the entry pointer (a probe passes other keys and a rehash moves them
 * without touching their entries); an entry has a pointer per slot it saw: in a day record,
 * the slot's tile block itself; in an hour record, a node with the slot's chain of raw events
 * and its tile block (the first raw event allocated with the node). An hour entry points at
 * its day entry, so an event costs one lookup. Apply computes every event's hour key and hash
 * before it takes the table lock and prefetches a few events ahead (bucket, entry, then the
 * slot node and day entry, then the day's tiles; for an hour record not in the table yet, its
 * day record's bucket and entry), so the cache misses of consecutive events overlap instead
 * of coming one after another (the lookups were ~30 % of the consumer thread). Each new entry
 * also records its sort key (ent_ref_t) for the flush, which then neither walks the table nor
 * touches an entry to order the records.
 *
 * Memory. All of a table lives in its own bump chunks: a small first chunk (a table that stays
 * small costs little), then 4 MiB chunks on transparent huge pages. They are dropped at once
 * after the flush, the 4 MiB ones into the store's pool, from which the next table takes them
 * again: memory the process already touched, rather than fresh pages faulted in and zeroed
 * again for every table (first touch was ~17 % of the consumer thread's profile). The pool
 * keeps at most the write-back budget (plus two chunks). Tiles known to own no heap memory
 * (COUNT, SUM, AVERAGE with a scalar output, unbucketed) need no clearing, so no list of
 * every node is kept for them; other tables are walked once at free. */
typedef tsr__raw_chunk_t raw_chunk_t; /* tile_store_int.h: reads walk the chains */

/* A 5-minute slot of an hour record: its raw events in arrival order, then its tile block. */
typedef struct hour_slot {
    raw_chunk_t *raw_head, *raw_tail;
    _Alignas(8) unsigned char blk[];
} hour_slot_t;

typedef struct rec_entry {
    uint64_t hash;
    const uint8_t *key;
    uint32_t klen;
    int nslots;                 /* TSR__DAY_SLOTS or TSR__HOUR_SLOTS */
    struct rec_entry *day;      /* hour record: the day record of its key */
    void *slots[];              /* by slot index; NULL: none. Day record: the tile block;
                                   hour record: hour_slot_t */
} rec_entry_t;

static inline int ent_hour(const rec_entry_t *e) { return e->nslots == TSR__HOUR_SLOTS; }
static inline void *ent_blk(const rec_entry_t *e, int slot) {
    void *p = e->slots[slot];
    return p && ent_hour(e) ? (void *)((hour_slot_t *)p)->blk : p;
}
static inline const raw_chunk_t *ent_raw(const rec_entry_t *e, int slot) {
    const void *p = e->slots[slot];
    return p && ent_hour(e) ? ((const hour_slot_t *)p)->raw_head : NULL;
}

/* bump chunks */
#define PEND_FIRST_CHUNK ((size_t)256 << 10)
#define PEND_CHUNK ((size_t)4 << 20) /* from tsr_malloc_huge, pooled */

typedef struct pend_chunk {
    struct pend_chunk *next;
    size_t size;                /* bytes including this header */
    int pooled;                 /* a PEND_CHUNK: back to the pool at free */
    _Alignas(16) unsigned char data[];
} pend_chunk_t;

/* The store's pool of free PEND_CHUNKs (s->pend_pool, a pend_chunk_t list). */
static pend_chunk_t *pool_take(tsr_tile_store_t *s) {
    pthread_mutex_lock(&s->pend_pool_mu);
    pend_chunk_t *ch = s->pend_pool;
    if (ch) {
        s->pend_pool = ch->next;
        s->pend_npool--;
    }
    pthread_mutex_unlock(&s->pend_pool_mu);
    if (!ch) {
        ch = tsr_malloc_huge(PEND_CHUNK);
        ch->size = PEND_CHUNK;
        ch->pooled = 1;
    }
    return ch;
}

/* Frees a chunk list: PEND_CHUNKs into the pool while it holds less than the budget (and
 * two chunks more: what a table filling while the previous one is written takes). */
static void pool_give(tsr_tile_store_t *s, pend_chunk_t *list) {
    size_t max = __atomic_load_n(&s->pend_budget, __ATOMIC_RELAXED) / PEND_CHUNK + 2;
    while (list) {
        pend_chunk_t *next = list->next;
        int kept = 0;
        if (list->pooled) {
            pthread_mutex_lock(&s->pend_pool_mu);
            if (s->pend_npool < max) {
                list->next = s->pend_pool;
                s->pend_pool = list;
                s->pend_npool++;
                kept = 1;
            }
            pthread_mutex_unlock(&s->pend_pool_mu);
        }
        if (!kept) {
            if (list->pooled) tsr_free_huge(list);
            else free(list);
        }
        list = next;
    }
}

static void pool_drain(tsr_tile_store_t *s) {
    while (s->pend_pool) {
        pend_chunk_t *next = ((pend_chunk_t *)s->pend_pool)->next;
        tsr_free_huge(s->pend_pool);
        s->pend_pool = next;
    }
    s->pend_npool = 0;
}

/* A bucket of the table: the key's hash beside the entry, so that a probe past other keys
 * (linear probing) and a rehash read only the bucket array, not the entries (a probe that
 * dereferenced every entry it passed was most of pend_get's cache misses). */
typedef struct pend_bkt {
    uint64_t h;
    rec_entry_t *e;             /* NULL: empty */
} pend_bkt_t;

/* A record in the flush's sort: 24 key bytes after the GroupBy's common prefix 't' gb \0, as
 * three big-endian words (zero-padded past the key's end: consistent with byte order). Made
 * when the entry is created (its key is in cache then), so the flush neither walks the table
 * nor touches an entry to collect its records. */
#define ENT_WORDS 3
typedef struct ent_ref {
    uint64_t w[ENT_WORDS];
    const rec_entry_t *e;
} ent_ref_t;

struct tsr__pend {
    pend_bkt_t *table;
    size_t cap, nents;
    ent_ref_t *refs;            /* one per entry, in creation order (nents of them) */
    size_t caprefs;
    int64_t top[2];             /* the latest start of its hour [0] / day [1] records (the
                                   flush's 'W', tile_store_int.h written_hi) */
    size_t skip;                /* length of the records' common prefix 't' gb \0 */
    tsr_tile_store_t *s;        /* its pool */
    pend_chunk_t *chunks;       /* newest first */
    uint8_t *cur, *end;         /* free space of chunks */
    size_t used;                /* bytes handed out */
    int clear;                  /* tiles may own heap memory: tsr__tile_clear each at free */
    size_t nevents;
    tsr_buf_t scratch;
    /* the consumer offsets this table's events reach (written with its records) */
    char **off_names;
    uint64_t *off_hash;
    int64_t *off_next;
    size_t noffs, capoffs;
    int64_t born_ms;            /* monotonic ms of the first fold */
};

static void *pend_alloc(tsr__pend_t *c, size_t n) {
    n = (n + 7) & ~(size_t)7;
    if ((size_t)(c->end - c->cur) < n) {
        pend_chunk_t *ch;
        size_t room = PEND_CHUNK - sizeof(pend_chunk_t);
        if (!c->chunks) {
            size_t sz = sizeof(pend_chunk_t) + (n > PEND_FIRST_CHUNK ? n : PEND_FIRST_CHUNK);
            ch = tsr_malloc(sz);
            ch->size = sz;
            ch->pooled = 0;
        } else if (n > room) { /* a one-off (a huge raw event): its own chunk, not pooled */
            ch = tsr_malloc(sizeof(pend_chunk_t) + n);
            ch->size = sizeof(pend_chunk_t) + n;
            ch->pooled = 0;
            ch->next = c->chunks->next;
            c->chunks->next = ch;
            c->used += n;
            return ch->data;
        } else {
            ch = pool_take(c->s);
        }
        ch->next = c->chunks;
        c->chunks = ch;
        c->cur = ch->data;
        c->end = (uint8_t *)ch + ch->size;
    }
    void *p = c->cur;
    c->cur += n;
    c->used += n;
    return p;
}

/* Whether every column's tiles are plain numbers (tsr_agg_clear a no-op): COUNT, SUM and
 * AVERAGE with a scalar numeric output, unbucketed. */
static int tiles_plain(const tsr__ts_gb_t *g) {
    for (size_t col = 0; col < g->ncols; col++) {
        const tsr_agg_t *a = g->cols[col].agg;
        tsr_op_t op = tsr_agg_op(a);
        tsr_kind_t k = tsr_type_kind(tsr_agg_output_type(a));
        if (g->cols[col].bucket_slot >= 0 || (op != TSR_OP_COUNT && op != TSR_OP_SUM &&
                                              op != TSR_OP_AVERAGE) ||
            (k != TSR_LONG && k != TSR_DOUBLE))
            return 0;
    }
    return 1;
}

static tsr__pend_t *pend_new(tsr_tile_store_t *s, const tsr__ts_gb_t *g) {
    tsr__pend_t *c = tsr_calloc(1, sizeof(*c));
    c->cap = (size_t)1 << 14;
    c->table = tsr_calloc(c->cap, sizeof(pend_bkt_t));
    c->skip = 2 + g->nlen;
    c->top[0] = c->top[1] = INT64_MIN;
    c->s = s;
    c->clear = !tiles_plain(g);
    tsr_buf_init(&c->scratch);
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    c->born_ms = (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
    return c;
}

static void pend_free(const tsr__ts_gb_t *g, tsr__pend_t *c) {
    if (!c) return;
    if (c->clear)
        for (size_t i = 0; i < c->cap; i++) {
            const rec_entry_t *e = c->table[i].e;
            for (int slot = 0; e && slot < e->nslots; slot++)
                if (e->slots[slot]) tsr__tile_clear(g, ent_blk(e, slot));
        }
    for (size_t i = 0; i < c->noffs; i++) free(c->off_names[i]);
    free(c->off_names);
    free(c->off_hash);
    free(c->off_next);
    free(c->table);
    free(c->refs);
    pool_give(c->s, c->chunks);
    tsr_buf_free(&c->scratch);
    free(c);
}

/* Records that the table's events reach offset next of name. */
static void pend_set_offset(tsr__pend_t *c, const char *name, int64_t next) {
    size_t nl = strlen(name);
    uint64_t h = tsr_hash_bytes(name, nl, 0x0ff5);
    for (size_t i = 0; i < c->noffs; i++)
        if (c->off_hash[i] == h && strcmp(c->off_names[i], name) == 0) {
            c->off_next[i] = next;
            return;
        }
    if (c->noffs == c->capoffs) {
        c->capoffs = c->capoffs ? 2 * c->capoffs : 16;
        c->off_names = tsr_realloc(c->off_names, c->capoffs * sizeof(char *));
        c->off_hash = tsr_realloc(c->off_hash, c->capoffs * sizeof(uint64_t));
        c->off_next = tsr_realloc(c->off_next, c->capoffs * sizeof(int64_t));
    }
    c->off_names[c->noffs] = tsr_strndup(name, nl);
    c->off_hash[c->noffs] = h;
    c->off_next[c->noffs++] = next;
}

/* The offset of name the table reaches, or -1. */
static int64_t pend_offset(const tsr__pend_t *c, const char *name) {
    for (size_t i = 0; c && i < c->noffs; i++)
        if (strcmp(c->off_names[i], name) == 0) return c->off_next[i];
    return -1;
}

/* Whether the table holds anything to write (records or offsets). */
static int pend_nonempty(const tsr__pend_t *c) {
    return c && (c->nents || c->noffs);
}

/* Bytes the table holds (the flush threshold). */
static size_t pend_bytes(const tsr__pend_t *c) {
    return c->used + c->cap * sizeof(pend_bkt_t) + c->caprefs * sizeof(ent_ref_t);
}

uint64_t tsr__pend_hash(const uint8_t *k, size_t kl) { return tsr_hash_bytes(k, kl, 0x7113); }

static const rec_entry_t *pend_find_h(const tsr__pend_t *c, const uint8_t *k, size_t kl, uint64_t h) {
    if (!c || c->nents == 0) return NULL;
    for (size_t i = (size_t)h & (c->cap - 1);; i = (i + 1) & (c->cap - 1)) {
        const pend_bkt_t *b = &c->table[i];
        if (!b->e) return NULL;
        if (b->h == h && b->e->klen == kl && memcmp(b->e->key, k, kl) == 0) return b->e;
    }
}

/* The entry whose hash is h, or NULL (for prefetching: the key is not compared). */
static inline const rec_entry_t *pend_probe(const tsr__pend_t *c, uint64_t h) {
    for (size_t i = (size_t)h & (c->cap - 1);; i = (i + 1) & (c->cap - 1)) {
        const pend_bkt_t *b = &c->table[i];
        if (!b->e || b->h == h) return b->e;
    }
}

static void ent_ref_make(ent_ref_t *r, const rec_entry_t *e, size_t skip) {
    uint8_t b[8 * ENT_WORDS] = {0};
    if (e->klen > skip) memcpy(b, e->key + skip, e->klen - skip < sizeof b ? e->klen - skip : sizeof b);
    for (int w = 0; w < ENT_WORDS; w++) r->w[w] = tsr__get_be64(b + 8 * w);
    r->e = e;
}

/* The entry of record key k (hash h), created when missing. */
static rec_entry_t *pend_get(tsr__pend_t *c, const uint8_t *k, size_t kl, uint64_t h) {
    size_t i = (size_t)h & (c->cap - 1);
    for (;; i = (i + 1) & (c->cap - 1)) {
        pend_bkt_t *b = &c->table[i];
        if (!b->e) break;
        if (b->h == h && b->e->klen == kl && memcmp(b->e->key, k, kl) == 0) return b->e;
    }
    int nslots = k[kl - 9] == TSR__REC_HOUR ? TSR__HOUR_SLOTS : TSR__DAY_SLOTS;
    size_t sz = sizeof(rec_entry_t) + (size_t)nslots * sizeof(void *);
    rec_entry_t *e = pend_alloc(c, sz + kl);
    memset(e, 0, sz);
    uint8_t *kc = (uint8_t *)e + sz;
    memcpy(kc, k, kl);
    e->hash = h;
    e->key = kc;
    e->klen = (uint32_t)kl;
    e->nslots = nslots;
    c->table[i] = (pend_bkt_t){h, e};
    if (c->nents == c->caprefs) {
        c->caprefs = c->caprefs ? 2 * c->caprefs : 4096;
        c->refs = tsr_realloc(c->refs, c->caprefs * sizeof(ent_ref_t));
    }
    ent_ref_make(&c->refs[c->nents], e, c->skip);
    int64_t st = tsr__get_i64(k + kl - 8); /* record start: the flush's 'W' */
    int d = nslots == TSR__DAY_SLOTS;
    if (st > c->top[d]) c->top[d] = st;
    if (2 * ++c->nents > c->cap) {
        size_t cap = 2 * c->cap;
        pend_bkt_t *t = tsr_calloc(cap, sizeof(pend_bkt_t));
        for (size_t j = 0; j < c->cap; j++) {
            const pend_bkt_t *x = &c->table[j];
            if (!x->e) continue;
            size_t at = (size_t)x->h & (cap - 1);
            while (t[at].e) at = (at + 1) & (cap - 1);
            t[at] = *x;
        }
        free(c->table);
        c->table = t;
        c->cap = cap;
    }
    return e;
}

/* The tile block of slot in e, created (empty) when missing: O(1), by index. */
static void *pend_slot(tsr__pend_t *c, const tsr__ts_gb_t *g, rec_entry_t *e, int slot) {
    if (e->slots[slot]) return ent_blk(e, slot);
    void *blk;
    if (ent_hour(e)) {
        hour_slot_t *n = pend_alloc(c, sizeof(hour_slot_t) + g->ir_size);
        n->raw_head = n->raw_tail = NULL;
        e->slots[slot] = n;
        blk = n->blk;
    } else {
        blk = e->slots[slot] = pend_alloc(c, g->ir_size);
    }
    tsr__tile_init(g, blk);
    return blk;
}

/* How many events ahead apply prefetches, per stage: 3 the hour record's bucket; 2 its entry
 * (or, for an hour record not in the table yet, the bucket of its day record); 1 its 5-minute
 * slot node and its day entry's slot pointers (or the day entry of a new hour record); 0 the
 * day entry's hour and day tiles. */
#define FOLD_AHEAD_3 16
#define FOLD_AHEAD_2 10
#define FOLD_AHEAD_1 5
#define FOLD_AHEAD_0 2

/* One event to fold (apply computes these before it takes the table lock): its hour record
 * key at koff..koff+klen of the key buffer, the key's hash, where the event goes. */
typedef struct fold_ref {
    uint64_t h;
    uint64_t hday;              /* the day record key's hash, when has_hday */
    size_t koff;
    uint32_t klen, ev;
    int64_t hour;
    int slot5;                  /* 5-minute slot in the hour record */
    int slot1h;                 /* hour slot in the day record */
    int has_hday;               /* hday computed (by the prefetch of a new hour record) */
} fold_ref_t;

/* Fills r and appends the hour record key of event e to kb. */
static void fold_ref_make(const tsr__ts_gb_t *g, const tsr_tile_event_t *e, uint32_t idx,
                          tsr_buf_t *kb, fold_ref_t *r) {
    int64_t hour = tsr_floor_div(e->ts, TSR_TILE_1H) * TSR_TILE_1H;
    int64_t day = tsr_floor_div(e->ts, TSR_TILE_1D) * TSR_TILE_1D;
    size_t at = kb->len;
    tsr_buf_putc(kb, 't');
    tsr_buf_append(kb, g->name, g->nlen);
    tsr_buf_putc(kb, 0);
    tsr__put_key(kb, e->key, e->klen);
    tsr_buf_putc(kb, TSR__REC_HOUR);
    tsr__put_i64(kb, hour);
    r->koff = at;
    r->klen = (uint32_t)(kb->len - at);
    r->h = tsr__pend_hash(kb->data + at, r->klen);
    r->has_hday = 0;
    r->ev = idx;
    r->hour = hour;
    r->slot5 = (int)((e->ts - hour) / TSR_TILE_5M);
    r->slot1h = (int)((hour - day) / TSR_TILE_1H);
}

/* The day record key of the hour record key hk (klen bytes) into d (klen bytes): the same
 * key with 'D' and the day's start instead of 'H' and the hour's. */
static inline void day_key_of(uint8_t *d, const uint8_t *hk, size_t klen, int64_t hour, int slot1h) {
    memcpy(d, hk, klen - 9);
    d[klen - 9] = TSR__REC_DAY;
    uint64_t v = (uint64_t)(hour - (int64_t)slot1h * TSR_TILE_1H) ^ (UINT64_C(1) << 63);
    for (int i = 0; i < 8; i++) d[klen - 8 + i] = (uint8_t)(v >> (56 - 8 * i));
}

/* A day entry's slot pointer of slot i, and its key (after the pointers), by layout. */
static inline const void *day_slot_at(const rec_entry_t *d, int i) { return &d->slots[i]; }
static inline const void *day_key_at(const rec_entry_t *d) { return &d->slots[TSR__DAY_SLOTS]; }

/* Prefetches for the event r that will be folded a few events from now (stages above). Only
 * hints: a bucket that turns out to hold another key costs nothing but the prefetch. */
static inline void fold_prefetch(const tsr__pend_t *c, fold_ref_t *r, const uint8_t *kb, int stage) {
    if (stage == 3) {
        __builtin_prefetch(&c->table[(size_t)r->h & (c->cap - 1)]);
        return;
    }
    const rec_entry_t *e = pend_probe(c, r->h);
    if (stage == 2) {
        if (e) { /* an hour entry and its key (after the slot pointers): 3-4 lines */
            for (int l = 0; l < 4; l++) __builtin_prefetch((const char *)e + 64 * l);
        } else if (!r->has_hday && r->klen <= 256) { /* a new hour record: find its day's */
            uint8_t dk[256];
            day_key_of(dk, kb + r->koff, r->klen, r->hour, r->slot1h);
            r->hday = tsr__pend_hash(dk, r->klen);
            r->has_hday = 1;
            __builtin_prefetch(&c->table[(size_t)r->hday & (c->cap - 1)]);
        }
        return;
    }
    const rec_entry_t *d = e ? e->day : r->has_hday ? pend_probe(c, r->hday) : NULL;
    if (stage == 1) {
        if (e && e->slots[r->slot5]) {
            __builtin_prefetch(e->slots[r->slot5]);
            __builtin_prefetch((const char *)e->slots[r->slot5] + 64);
        }
        if (d) {
            __builtin_prefetch(d);
            __builtin_prefetch(day_slot_at(d, r->slot1h));
            __builtin_prefetch(day_slot_at(d, TSR__DAY_SLOT_ALL));
            if (!e) __builtin_prefetch(day_key_at(d)); /* compared when the hour entry is made */
        }
        return;
    }
    if (d) { /* the hour and day tiles this event updates */
        const char *t = d->slots[r->slot1h];
        if (t) {
            __builtin_prefetch(t);
            __builtin_prefetch(t + 64);
        }
        t = d->slots[TSR__DAY_SLOT_ALL];
        if (t) {
            __builtin_prefetch(t);
            __builtin_prefetch(t + 64);
        }
    }
}

/* The bytes of a raw event's chain link before its data. */
#define RAW_HDR offsetof(raw_chunk_t, data)
/* Raw events of GroupBys with at most this many columns, all inputs scalar, are encoded on
 * the stack (RAW_FAST_MAX bytes bound them) instead of through a tsr_buf. */
#define RAW_FAST_COLS 16
#define RAW_FAST_MAX (20 + RAW_FAST_COLS * 2 * 11)

static inline uint8_t *raw_put_uv(uint8_t *p, uint64_t v) {
    while (v >= 0x80) {
        *p++ = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    *p++ = (uint8_t)v;
    return p;
}

/* tsr_value_encode of a scalar (NULL, BOOL, LONG, DOUBLE) at p — the same bytes; NULL for
 * any other kind (the caller falls back to tsr_value_encode). */
static inline uint8_t *raw_put_value(uint8_t *p, const tsr_value_t *v) {
    switch (v->kind) {
    case TSR_NULL: *p++ = TSR_NULL; return p;
    case TSR_BOOL:
        *p++ = TSR_BOOL;
        *p++ = (uint8_t)(v->u.b != 0);
        return p;
    case TSR_LONG:
        *p++ = TSR_LONG;
        return raw_put_uv(p, ((uint64_t)v->u.l << 1) ^ (uint64_t)(v->u.l >> 63));
    case TSR_DOUBLE: {
        *p++ = TSR_DOUBLE;
        uint64_t u;
        memcpy(&u, &v->u.d, 8);
        for (int i = 0; i < 8; i++) p[i] = (uint8_t)(u >> (8 * i));
        return p + 8;
    }
    default: return NULL;
    }
}

/* Folds one event (ts >= B) into the day and hour records of its key. The event's raw bytes
 * go into its 5-minute slot's chain; when the event creates that slot's node, its chain link
 * is allocated with the node (one allocation, adjacent lines: the fold and the flush's
 * encoding touch one place instead of two — most slots of a day hold one event). */
static void pend_fold(tsr__pend_t *c, const tsr__ts_gb_t *g, const tsr_tile_event_t *e,
                      const fold_ref_t *r, const uint8_t *hkey) {
    static const tsr_value_t nul = {0};
    rec_entry_t *he = pend_get(c, hkey, r->klen, r->h);
    if (!he->day) {
        tsr_buf_t *k = &c->scratch; /* the day record key: the hour key with 'D' day */
        tsr_buf_clear(k);
        tsr_buf_reserve(k, r->klen);
        day_key_of(k->data, hkey, r->klen, r->hour, r->slot1h);
        k->len = r->klen;
        he->day = pend_get(c, k->data, k->len, r->has_hday ? r->hday : tsr__pend_hash(k->data, k->len));
    }
    /* the raw event: uvarint(ts - slot start), uvarint seq, per column the input (and bucket) */
    uint64_t dt = (uint64_t)(e->ts - r->hour - (int64_t)r->slot5 * TSR_TILE_5M);
    uint8_t fast[RAW_FAST_MAX];
    const uint8_t *rd = NULL;
    size_t rl = 0;
    if (g->ncols <= RAW_FAST_COLS) {
        uint8_t *p = raw_put_uv(raw_put_uv(fast, dt), e->seq);
        for (size_t col = 0; col < g->ncols && p; col++) {
            p = raw_put_value(p, &e->inputs[col]);
            if (p && g->cols[col].bucket_slot >= 0) p = raw_put_value(p, e->buckets ? &e->buckets[col] : &nul);
        }
        if (p) {
            rd = fast;
            rl = (size_t)(p - fast);
        }
    }
    if (!rd) {
        tsr_buf_t *rb = &c->scratch;
        tsr_buf_clear(rb);
        tsr_buf_put_uvarint(rb, dt);
        tsr_buf_put_uvarint(rb, e->seq);
        for (size_t col = 0; col < g->ncols; col++) {
            tsr_value_encode(&e->inputs[col], rb);
            if (g->cols[col].bucket_slot >= 0)
                tsr_value_encode(e->buckets ? &e->buckets[col] : &nul, rb);
        }
        rd = rb->data;
        rl = rb->len;
    }
    hour_slot_t *n5 = he->slots[r->slot5];
    raw_chunk_t *ch;
    if (!n5) {
        size_t nsz = (sizeof(hour_slot_t) + g->ir_size + 7) & ~(size_t)7;
        n5 = pend_alloc(c, nsz + RAW_HDR + rl);
        n5->raw_head = n5->raw_tail = NULL;
        tsr__tile_init(g, n5->blk);
        he->slots[r->slot5] = n5;
        ch = (raw_chunk_t *)((uint8_t *)n5 + nsz);
    } else {
        ch = pend_alloc(c, RAW_HDR + rl);
    }
    void *b5 = n5->blk;
    void *bh = pend_slot(c, g, he->day, r->slot1h);
    void *bd = pend_slot(c, g, he->day, TSR__DAY_SLOT_ALL);
    for (size_t col = 0; col < g->ncols; col++) {
        const tsr_agg_t *a = g->cols[col].agg;
        /* a bucketed column passes its bucket (the kernel skips a null one) */
        const tsr_value_t *bk = g->cols[col].bucket_slot < 0 ? NULL : e->buckets ? &e->buckets[col] : &nul;
        tsr_agg_update(a, tsr__tile_col(g, b5, col), &e->inputs[col], bk, e->ts, e->seq);
        tsr_agg_update(a, tsr__tile_col(g, bh, col), &e->inputs[col], bk, e->ts, e->seq);
        tsr_agg_update(a, tsr__tile_col(g, bd, col), &e->inputs[col], bk, e->ts, e->seq);
    }
    ch->next = NULL;
    ch->len = (uint32_t)rl;
    memcpy(ch->data, rd, rl);
    if (n5->raw_tail) n5->raw_tail->next = ch;
    else n5->raw_head = ch;
    n5->raw_tail = ch;
    c->nevents++;
}

/* Appends entry e's slot list (the merge operand format) to v. */
static void encode_entry(const tsr__ts_gb_t *g, const rec_entry_t *e, tsr_buf_t *v) {
    int hour = ent_hour(e);
    for (int slot = 0; slot < e->nslots; slot++) {
        if (!e->slots[slot]) continue;
        tsr_buf_putc(v, slot);
        /* the tile after one byte for its uvarint length (a tile is mostly < 128 bytes: else
         * the tile moves to make room for the longer length) */
        size_t at = v->len;
        tsr_buf_putc(v, 0);
        tsr__tile_encode(g, ent_blk(e, slot), v);
        size_t tl = v->len - at - 1;
        if (tl < 128) {
            v->data[at] = (uint8_t)tl;
        } else {
            uint8_t hdr[10];
            size_t nh = 0;
            for (uint64_t t = tl; t >= 128; t >>= 7) hdr[nh++] = (uint8_t)(t | 128);
            hdr[nh] = (uint8_t)(tl >> (7 * nh));
            nh++;
            tsr_buf_reserve(v, nh - 1);
            memmove(v->data + at + nh, v->data + at + 1, tl);
            memcpy(v->data + at, hdr, nh);
            v->len += nh - 1;
        }
        if (!hour) continue;
        size_t rl = 0;
        for (const raw_chunk_t *r = ent_raw(e, slot); r; r = r->next) rl += r->len;
        tsr_buf_put_uvarint(v, rl);
        tsr_buf_reserve(v, rl);
        for (const raw_chunk_t *r = ent_raw(e, slot); r; r = r->next) {
            memcpy(v->data + v->len, r->data, r->len);
            v->len += r->len;
        }
    }
}

void tsr__pend_prefetch(const tsr__pend_t *p, uint64_t h, int stage) {
    if (!p || p->nents == 0) return;
    if (stage == 0) {
        __builtin_prefetch(&p->table[(size_t)h & (p->cap - 1)]);
        return;
    }
    const rec_entry_t *e = pend_probe(p, h);
    if (e) {
        __builtin_prefetch(e);
        __builtin_prefetch((const char *)e + 64); /* its slot pointers */
    }
}

int tsr__pend_visit(const tsr__pend_t *p, const uint8_t *k, size_t kl, uint64_t h, uint32_t slots,
                    tsr__pend_slot_fn fn, void *ud) {
    const rec_entry_t *e = pend_find_h(p, k, kl, h);
    if (!e) return 0;
    if (e->nslots < 32) slots &= (UINT32_C(1) << e->nslots) - 1;
    /* the nodes are scattered over the table's memory: ask for all of them before using the
     * first (a day record's 24 hour tiles would otherwise be 24 cache misses in a row) */
    for (uint32_t m = slots; m; m &= m - 1) {
        const void *n = e->slots[__builtin_ctz(m)];
        if (n) {
            __builtin_prefetch(n);
            __builtin_prefetch((const char *)n + 64);
        }
    }
    for (uint32_t m = slots; m; m &= m - 1) {
        int slot = __builtin_ctz(m);
        int rc = e->slots[slot] ? fn(ud, slot, ent_blk(e, slot), ent_raw(e, slot)) : 0;
        if (rc) return rc;
    }
    return 0;
}

void tsr__pend_scan(const tsr__ts_gb_t *g, const tsr__pend_t *p, const uint8_t *prefix, size_t n,
                    void (*fn)(void *, const uint8_t *, size_t, const uint8_t *, size_t), void *ud) {
    if (!p) return;
    tsr_buf_t v;
    tsr_buf_init(&v);
    for (size_t i = 0; i < p->cap; i++) {
        const rec_entry_t *e = p->table[i].e;
        if (!e) continue;
        const uint8_t *k = e->key;
        if (e->klen < n || memcmp(k, prefix, n) != 0) continue;
        tsr_buf_clear(&v);
        encode_entry(g, e, &v);
        fn(ud, k, e->klen, v.data, v.len);
    }
    tsr_buf_free(&v);
}

/* ---- stream ingest: log, fold, flush */

#define PEND_IDLE_MS 10000
#define FLUSHER_IDLE_MS 1000    /* the flusher's longest sleep (flusher_main) */
#define FLUSHER_RETRY_MS 100    /* a failed flush is tried again after this */
/* Events folded but not yet written are replayed from Kafka after a crash: bound how far back
 * that replay goes (and so how long a topic must keep its messages) by writing the table at
 * least this often. */
#define PEND_MAX_AGE_MS 10000

static int64_t mono_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

/* Whether g (whose table now holds `bytes`) should hand its table to the flusher. The budget
 * is shared the way RocksDB's write buffer manager shares memory: any GroupBy's table may grow
 * while the tables together stay under the budget; past it, the largest one is written. So a
 * GroupBy streaming alone gets (nearly) the whole budget — more of a record's events folded
 * into one operand (bench_fetch ingest with 11 registered GroupBys, 1 streaming: 142k ->
 * 211k events per CPU-second against equal shares) — and tables of GroupBys gone quiet are
 * written by the flusher after PEND_IDLE_MS. A table never exceeds the budget on its own. */
static int pend_should_flush(tsr_tile_store_t *s, tsr__ts_gb_t *g, size_t bytes) {
    size_t budget = __atomic_load_n(&s->pend_budget, __ATOMIC_RELAXED);
    __atomic_store_n(&g->act_bytes, bytes, __ATOMIC_RELAXED);
    if (bytes >= budget) return 1;
    size_t min = budget < PEND_MIN_BYTES ? budget : PEND_MIN_BYTES;
    if (bytes < min) return 0;
    size_t ngbs = __atomic_load_n(&s->ngbs, __ATOMIC_ACQUIRE), total = 0, other = 0;
    for (size_t i = 0; i < ngbs; i++) {
        size_t b = __atomic_load_n(&s->gbs[i].act_bytes, __ATOMIC_RELAXED);
        total += b;
        if (&s->gbs[i] != g && b > other) other = b;
    }
    return total >= budget && bytes >= other;
}

static void log_key(tsr_buf_t *k, const tsr__ts_gb_t *g, int64_t seq) {
    tsr__key_prefix(k, 'l', g->name, g->nlen);
    tsr__put_i64(k, seq);
}

/* Key order. Every key starts with the same 't' gb \0 prefix, and after it the keys of one
 * GroupBy often share more (K's 2-byte length, a common stem like "user000"): one word (what
 * this compared before) left nearly every comparison to a memcmp of two scattered keys, ~1 µs
 * per record in all (263 ms for 246k records). Three words settle a comparison for keys up to
 * ~13 bytes (K's 24 bytes minus the record type and start), and most of longer ones. */
static int ent_cmp(const void *a, const void *b) {
    const ent_ref_t *x = a, *y = b;
    for (int i = 0; i < ENT_WORDS; i++)
        if (x->w[i] != y->w[i]) return x->w[i] < y->w[i] ? -1 : 1;
    const rec_entry_t *p = x->e, *q = y->e;
    size_t m = p->klen < q->klen ? p->klen : q->klen;
    int r = memcmp(p->key, q->key, m);
    return r ? r : (p->klen > q->klen) - (p->klen < q->klen);
}

/* Sorts a[0..n) into key order (ent_cmp), tmp (n records) as scratch: a stable LSD radix
 * sort by bytes of the three words, skipping the byte positions where all records agree (the
 * common stem, the record type, the high bytes of the start: ~10 passes for bench keys), then
 * ent_cmp on the runs that tie on all three words (keys longer than them). No comparator
 * calls and no allocation per record (qsort's merge sort and its ent_cmp calls were ~10 % of
 * the flush thread). */
static void ent_sort(ent_ref_t *a, size_t n, ent_ref_t *tmp) {
    if (n < 2) return;
    uint64_t vary[ENT_WORDS] = {0};
    for (size_t i = 1; i < n; i++)
        for (int w = 0; w < ENT_WORDS; w++) vary[w] |= a[i].w[w] ^ a[0].w[w];
    int pos[8 * ENT_WORDS], np = 0; /* byte positions that vary, least significant first */
    for (int b = 8 * ENT_WORDS - 1; b >= 0; b--)
        if ((vary[b / 8] >> (56 - 8 * (b % 8))) & 0xff) pos[np++] = b;
    size_t(*cnt)[256] = tsr_calloc(np ? (size_t)np : 1, sizeof *cnt);
    for (size_t i = 0; i < n; i++)
        for (int k = 0; k < np; k++) cnt[k][(a[i].w[pos[k] / 8] >> (56 - 8 * (pos[k] % 8))) & 0xff]++;
    ent_ref_t *src = a, *dst = tmp;
    for (int k = 0; k < np; k++) {
        int w = pos[k] / 8, sh = 56 - 8 * (pos[k] % 8);
        size_t off = 0;
        for (int d = 0; d < 256; d++) {
            size_t m = cnt[k][d];
            cnt[k][d] = off;
            off += m;
        }
        for (size_t i = 0; i < n; i++) dst[cnt[k][(src[i].w[w] >> sh) & 0xff]++] = src[i];
        ent_ref_t *t = src;
        src = dst;
        dst = t;
    }
    if (src != a) memcpy(a, src, n * sizeof *a);
    free(cnt);
    for (size_t i = 0; i < n;) { /* ties on all three words: by the whole key */
        size_t j = i + 1;
        while (j < n && a[j].w[0] == a[i].w[0] && a[j].w[1] == a[i].w[1] && a[j].w[2] == a[i].w[2]) j++;
        if (j - i > 1) qsort(a + i, j - i, sizeof *a, ent_cmp);
        i = j;
    }
}

static int off_cmp(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* At most this many records a flush dropped from the stream record cache are read back into
 * it after the flush lands (warm_records). */
#define WARM_MAX 4096

/* The records a landed flush dropped from the stream record cache, read again and stored
 * there, so that the first fetch of a hot record after a flush does not pay for the new table
 * file (docs/tile-store.md "Stream record cache"). The readers' rule: under the cache's read
 * lock and the GroupBy's write-back read lock, and only with no flush of it in flight — then
 * what RocksDB answers stays true until the next flush drops it again. keys are in the
 * store's key order (the flushed table's). */
static void warm_records(tsr_tile_store_t *s, tsr__ts_gb_t *g, const char **keys, size_t *klens, size_t n) {
    rocksdb_pinnableslice_t **vals = tsr_malloc(n * sizeof *vals);
    char **errs = tsr_calloc(n, sizeof *errs);
    tsr__bcache_rdlock(s->scache);
    pthread_rwlock_rdlock(&g->pend_lock);
    if (!g->imm) {
        rocksdb_batched_multi_get_cf(s->db, s->ro, s->cf[TSR__CF_STREAM], n, keys, klens, vals, errs, 1);
        for (size_t i = 0; i < n; i++) {
            uint64_t h = tsr__bcache_hash(s->scache, keys[i], klens[i]);
            if (errs[i]) {
                free(errs[i]);
            } else if (vals[i]) {
                size_t vl;
                const char *v = rocksdb_pinnableslice_value(vals[i], &vl);
                tsr__bcache_put(s->scache, keys[i], klens[i], h, v, vl);
            } else {
                tsr__bcache_put(s->scache, keys[i], klens[i], h, NULL, 0);
            }
            rocksdb_pinnableslice_destroy(vals[i]);
        }
    }
    pthread_rwlock_unlock(&g->pend_lock);
    tsr__bcache_unlock(s->scache);
    free(errs);
    free(vals);
}

/* Writes imm as one table file and ingests it into the stream family; then drops imm. Caller
 * holds g->flush_mu. A failed flush keeps imm (reads keep merging it) for a retry.
 *
 * The file holds, in key order (the family's bytewise comparator; an SstFileWriter needs keys
 * strictly increasing): the flush marker 't' gb \0 \0\0\0 'F' = gen, the log high mark
 * '..L' = the first log record not covered, the consumer offsets '..o' name the table's events
 * reach (names sorted), then every record 't' gb \0 K ... as one merge operand (state keys
 * sort before every record: tsr__state_key). The file spans this GroupBy's 't' range only, so
 * the files of different GroupBys do not overlap and RocksDB places them side by side. RocksDB
 * ingests a file atomically, all its keys at one global sequence number: before the ingest
 * nothing of this flush is in the store (a crash replays it from Kafka or the log), after it
 * all of it is. No WriteBatch (its std::string regrowth was ~20 % of ingest), no WAL, no
 * memtable insert, no memtable flush (BuildTable): the file is the table the memtable flush
 * would have written.
 *
 * The log records the table came from (batches applied without offsets) are in another
 * family: they are range-deleted by a second write after the ingest, and a crash between the
 * two is harmless — the register's replay skips the log records below the stored 'L'. */
static int flush_imm(tsr_tile_store_t *s, tsr__ts_gb_t *g, tsr_error_t *err) {
    pthread_rwlock_rdlock(&g->pend_lock); /* imm changes under it (and fl_mu) */
    tsr__pend_t *c = g->imm;
    int64_t log_hi = g->imm_log_hi, log_lo = g->log_lo;
    uint64_t gen = g->gen;
    pthread_rwlock_unlock(&g->pend_lock);
    if (!c) return 0;
    tsr_buf_t k, v, path;
    tsr_buf_init(&k);
    tsr_buf_init(&v);
    tsr_buf_init(&path);
    ingest_dir(s, &path);
    tsr_buf_printf(&path, "/%zu-%llu.sst", (size_t)(g - s->gbs), (unsigned long long)gen);
    const char *file = tsr_buf_cstr(&path);
    /* a table file's keys are in order: the records made at their creation, sorted in place
     * (a retry after a failed flush sorts them again: a no-op) */
    ent_ref_t *ord = c->refs;
    size_t nord = c->nents;
    ent_ref_t *tmp = tsr_malloc((nord ? nord : 1) * sizeof(ent_ref_t));
    ent_sort(ord, nord, tmp);
    free(tmp);
    int64_t hi[2] = {g->written_hi[0], g->written_hi[1]}; /* under flush_mu */
    int64_t top[2] = {c->top[0], c->top[1]};               /* this table's latest starts */
    char *e = NULL;
    rocksdb_envoptions_t *eo = rocksdb_envoptions_create();
    /* the file's blocks uncompressed: LZ4 was ~20 % of the flush thread, and these files are
     * short-lived — the family's compactions rewrite them with its own compression (LZ4) */
    rocksdb_options_t *wopt = rocksdb_options_create_copy(s->cf_opts[TSR__CF_STREAM]);
    rocksdb_options_set_compression(wopt, rocksdb_no_compression);
    rocksdb_sstfilewriter_t *w = rocksdb_sstfilewriter_create(eo, wopt);
    rocksdb_sstfilewriter_open(w, file, &e);
    /* 't' gb \0 \0\0\0 'F' < 'L' < 'W' < 'o' name < 't' gb \0 K ... */
    if (!e) {
        tsr__state_key(&k, g->name, g->nlen, 'F'); /* the marker: in the records' file */
        tsr_buf_clear(&v);
        tsr__put_be64(&v, gen);
        rocksdb_sstfilewriter_put(w, (const char *)k.data, k.len, (const char *)v.data, v.len, &e);
    }
    if (!e) {
        tsr__state_key(&k, g->name, g->nlen, 'L');
        tsr_buf_clear(&v);
        tsr__put_i64(&v, log_hi);
        rocksdb_sstfilewriter_put(w, (const char *)k.data, k.len, (const char *)v.data, v.len, &e);
    }
    /* 'W': the latest hour and day record starts written, this file's included */
    int64_t nhi[2] = {top[0] > hi[0] ? top[0] : hi[0], top[1] > hi[1] ? top[1] : hi[1]};
    if (!e) {
        tsr__state_key(&k, g->name, g->nlen, 'W');
        tsr_buf_clear(&v);
        tsr__put_i64(&v, nhi[0]);
        tsr__put_i64(&v, nhi[1]);
        rocksdb_sstfilewriter_put(w, (const char *)k.data, k.len, (const char *)v.data, v.len, &e);
    }
    /* the consumer offsets these records reach: exactly once into the store */
    char **names = tsr_malloc((c->noffs ? c->noffs : 1) * sizeof(char *));
    for (size_t o = 0; o < c->noffs; o++) names[o] = c->off_names[o];
    qsort(names, c->noffs, sizeof(char *), off_cmp);
    for (size_t o = 0; o < c->noffs && !e; o++) {
        tsr__state_key(&k, g->name, g->nlen, 'o');
        tsr_buf_puts(&k, names[o]);
        tsr_buf_clear(&v);
        tsr__put_i64(&v, pend_offset(c, names[o]));
        rocksdb_sstfilewriter_put(w, (const char *)k.data, k.len, (const char *)v.data, v.len, &e);
    }
    free(names);
    for (size_t i = 0; i < nord && !e; i++) {
        /* key order is not memory order: fetch the entries (then their slots, then the raw
         * event chains' heads) a few records ahead, so their cache misses overlap. An entry
         * with its slot pointers and key is up to 5 lines, an hour slot node (tile block and
         * its first raw event) up to 3, a day slot's tile block 2 */
        if (i + 12 < nord)
            for (int l = 0; l < 5; l++) __builtin_prefetch((const char *)ord[i + 12].e + 64 * l);
        if (i + 6 < nord) {
            const rec_entry_t *x = ord[i + 6].e;
            int nl = ent_hour(x) ? 3 : 2;
            for (int j = 0; j < x->nslots; j++)
                if (x->slots[j])
                    for (int l = 0; l < nl; l++) __builtin_prefetch((const char *)x->slots[j] + 64 * l);
        }
        if (i + 3 < nord && ent_hour(ord[i + 3].e))
            for (int j = 0; j < TSR__HOUR_SLOTS; j++)
                if (ord[i + 3].e->slots[j])
                    __builtin_prefetch(((const hour_slot_t *)ord[i + 3].e->slots[j])->raw_head);
        tsr_buf_clear(&v);
        const rec_entry_t *x = ord[i].e;
        encode_entry(g, x, &v);
        /* a record starting after every record of its type written so far does not exist:
         * a put (a value a read takes pinned from the block cache, and the retention filter
         * sees) instead of a merge operand (merged by every read until a compaction does) */
        if (tsr__get_i64(x->key + x->klen - 8) > hi[!ent_hour(x)])
            rocksdb_sstfilewriter_put(w, (const char *)x->key, x->klen, (const char *)v.data, v.len, &e);
        else
            rocksdb_sstfilewriter_merge(w, (const char *)x->key, x->klen, (const char *)v.data, v.len, &e);
    }
    if (!e) rocksdb_sstfilewriter_finish(w, &e);
    rocksdb_sstfilewriter_destroy(w);
    rocksdb_options_destroy(wopt);
    rocksdb_envoptions_destroy(eo);
    if (!e) {
        /* an SstFileWriter drops what it wrote from the OS page cache (invalidate_page_cache,
         * not settable through the C API); a memtable flush's table stays cached. Ask the
         * kernel to read it back (asynchronous readahead; the DB's link is the same inode),
         * so that the first reads of these records do not each wait for the disk. By 4 MiB
         * ranges: one advice for the whole file read only its first 8 MiB here (kernel 6.18) */
        int fd = open(file, O_RDONLY | O_CLOEXEC);
        struct stat st;
        if (fd >= 0 && fstat(fd, &st) == 0)
            for (off_t at = 0; at < st.st_size; at += (off_t)4 << 20)
                posix_fadvise(fd, at, (off_t)4 << 20, POSIX_FADV_WILLNEED);
        if (fd >= 0) close(fd);
    }
    if (!e) {
        /* move_files: linked into the DB (the link here removed by RocksDB on success); a
         * global sequence number: the file overlaps what is stored (the marker, at least);
         * blocking flush: a memtable holding keys of the file (the stream family of a store
         * written before, replayed from its WAL) is flushed first */
        rocksdb_ingestexternalfileoptions_t *io = rocksdb_ingestexternalfileoptions_create();
        rocksdb_ingestexternalfileoptions_set_move_files(io, 1);
        rocksdb_ingestexternalfileoptions_set_allow_global_seqno(io, 1);
        rocksdb_ingestexternalfileoptions_set_allow_blocking_flush(io, 1);
        const char *const files[1] = {file};
        rocksdb_ingest_external_file_cf(s->db, s->cf[TSR__CF_STREAM], files, 1, io, &e);
        rocksdb_ingestexternalfileoptions_destroy(io);
    }
    unlink(file); /* gone already after a successful ingest */
    tsr_buf_free(&path);
    if (e) {
        int rc = tsr_error_set(err, TSR_EIO, "tile flush of %s: %s", g->name, e);
        free(e);
        tsr_buf_free(&k);
        tsr_buf_free(&v);
        return rc;
    }
    if (log_hi > log_lo) { /* the covered log records: best effort ('L' makes them dead) */
        tsr_buf_t lo;
        tsr_buf_init(&lo);
        log_key(&lo, g, INT64_MIN);
        log_key(&k, g, log_hi);
        rocksdb_delete_range_cf(s->db, s->wo, s->cf[TSR__CF_LOG], (const char *)lo.data, lo.len,
                                (const char *)k.data, k.len, &e);
        free(e);
        tsr_buf_free(&lo);
    }
    tsr_buf_free(&k);
    tsr_buf_free(&v);
    g->written_hi[0] = nhi[0]; /* landed (flush_mu) */
    g->written_hi[1] = nhi[1];
    /* the stream record cache: drop the records this flush changed, before it lands — until
     * then readers of this GroupBy neither use nor fill the cache (imm is set); the others
     * stay valid (the file holds only these records and state keys, which are not cached) */
    const char **wkeys = NULL; /* the dropped ones, read back after the landing (in order) */
    size_t *wlens = NULL, nwarm = 0;
    if (s->scache)
        for (size_t i = 0; i < nord; i++) {
            const rec_entry_t *x = ord[i].e;
            if (!tsr__bcache_drop(s->scache, x->key, x->klen, tsr__bcache_hash(s->scache, x->key, x->klen)) ||
                !s->warm || nwarm == WARM_MAX)
                continue;
            if (!wkeys) {
                size_t cap = nord < WARM_MAX ? nord : WARM_MAX;
                wkeys = tsr_malloc(cap * sizeof *wkeys);
                wlens = tsr_malloc(cap * sizeof *wlens);
            }
            wkeys[nwarm] = (const char *)x->key;
            wlens[nwarm++] = x->klen;
        }
    pthread_mutex_lock(&s->fl_mu);
    pthread_rwlock_wrlock(&g->pend_lock);
    g->imm = NULL;
    g->log_lo = log_hi;
    pthread_rwlock_unlock(&g->pend_lock);
    pthread_cond_broadcast(&s->fl_done_cv);
    pthread_mutex_unlock(&s->fl_mu);
    /* the stream record cache keeps the memory of dropped entries: once it is full, empty it
     * (no lock held here that a reader waits for with the cache's read lock held); else the
     * dropped records are read back (their keys live in c until pend_free) */
    if (s->scache && tsr__bcache_is_full(s->scache)) tsr__bcache_clear(s->scache);
    else if (nwarm) warm_records(s, g, wkeys, wlens, nwarm);
    free(wkeys);
    free(wlens);
    pend_free(g, c);
    return 0;
}

/* act becomes imm (a new flush generation). Caller holds apply_mu and fl_mu; imm is NULL. */
static void swap_act(tsr__ts_gb_t *g) {
    __atomic_store_n(&g->act_bytes, 0, __ATOMIC_RELAXED);
    pthread_rwlock_wrlock(&g->pend_lock);
    g->imm = g->act;
    g->act = NULL;
    g->gen++;
    g->imm_log_hi = g->log_next;
    pthread_rwlock_unlock(&g->pend_lock);
}

/* Writes everything folded so far, in the caller's thread. Caller holds apply_mu. */
static int flush_pend(tsr_tile_store_t *s, tsr__ts_gb_t *g, tsr_error_t *err) {
    pthread_mutex_lock(&g->flush_mu);
    int rc = flush_imm(s, g, err); /* one the flusher has not written (or failed to) */
    if (rc == 0 && pend_nonempty(g->act)) {
        pthread_mutex_lock(&s->fl_mu);
        swap_act(g);
        pthread_mutex_unlock(&s->fl_mu);
        rc = flush_imm(s, g, err);
    }
    pthread_mutex_unlock(&g->flush_mu);
    return rc;
}

/* The flusher thread: writes each GroupBy's imm as apply hands it over, so that the consumer
 * thread only logs and folds. A failed write is retried every 100 ms; apply stops waiting
 * for it after 10 s and reports the error. */
static void *flusher_main(void *arg) {
    tsr_tile_store_t *s = arg;
    prctl(PR_SET_NAME, "tsr-tile-flush", 0, 0, 0);
    pthread_mutex_lock(&s->fl_mu);
    while (!s->fl_stop) {
        tsr__ts_gb_t *g = NULL;
        size_t ngbs = __atomic_load_n(&s->ngbs, __ATOMIC_ACQUIRE);
        for (size_t i = 0; i < ngbs && !g; i++)
            if (s->gbs[i].imm && !s->gbs[i].flush_failed) g = &s->gbs[i];
        if (!g) {
            /* a GroupBy gone quiet: write its table out (its memory goes back to the budget) */
            int64_t now = mono_ms();
            for (size_t i = 0; i < ngbs && !g; i++) {
                tsr__ts_gb_t *q = &s->gbs[i];
                /* act is read only under apply_mu (folds hold it) */
                if (q->imm || __atomic_load_n(&q->last_apply_ms, __ATOMIC_RELAXED) == 0 ||
                    now - __atomic_load_n(&q->last_apply_ms, __ATOMIC_RELAXED) < PEND_IDLE_MS)
                    continue;
                pthread_mutex_unlock(&s->fl_mu);
                if (pthread_mutex_trylock(&q->apply_mu) == 0) { /* lock order: apply_mu, fl_mu */
                    pthread_mutex_lock(&s->fl_mu);
                    if (!q->imm && pend_nonempty(q->act)) {
                        swap_act(q);
                        g = q;
                    } else {
                        __atomic_store_n(&q->last_apply_ms, 0, __ATOMIC_RELAXED); /* nothing held */
                    }
                    pthread_mutex_unlock(&q->apply_mu);
                } else {
                    pthread_mutex_lock(&s->fl_mu);
                }
            }
            if (g) continue; /* found again as an imm at the top */
        }
        if (!g) {
            /* sleep until the first GroupBy could have gone quiet, at most FLUSHER_IDLE_MS (a
             * first apply after a long quiet spell is seen within that, and its deadline is
             * kept from then on); a failed flush is retried after FLUSHER_RETRY_MS. Apply
             * signals fl_cv when it hands over a table. An idle store's flusher used to wake
             * every 100 ms. */
            int64_t now = mono_ms(), wait = FLUSHER_IDLE_MS;
            for (size_t i = 0; i < ngbs; i++) {
                int64_t last = __atomic_load_n(&s->gbs[i].last_apply_ms, __ATOMIC_RELAXED);
                if (s->gbs[i].flush_failed) wait = wait < FLUSHER_RETRY_MS ? wait : FLUSHER_RETRY_MS;
                else if (last && !s->gbs[i].imm && last + PEND_IDLE_MS - now < wait)
                    wait = last + PEND_IDLE_MS - now;
            }
            if (wait < 1) wait = 1;
            struct timespec t;
            clock_gettime(CLOCK_REALTIME, &t);
            t.tv_sec += wait / 1000;
            t.tv_nsec += (wait % 1000) * 1000000L;
            if (t.tv_nsec >= 1000000000L) {
                t.tv_sec++;
                t.tv_nsec -= 1000000000L;
            }
            pthread_cond_timedwait(&s->fl_cv, &s->fl_mu, &t);
            for (size_t i = 0; i < ngbs; i++) s->gbs[i].flush_failed = 0; /* retry */
            continue;
        }
        pthread_mutex_unlock(&s->fl_mu);
        pthread_mutex_lock(&g->flush_mu);
        tsr_error_t err;
        int rc = flush_imm(s, g, &err);
        pthread_mutex_unlock(&g->flush_mu);
        pthread_mutex_lock(&s->fl_mu);
        if (rc) {
            g->flush_failed = 1;
            snprintf(g->flush_msg, sizeof g->flush_msg, "%.190s", err.msg);
        }
    }
    pthread_mutex_unlock(&s->fl_mu);
    return NULL;
}

/* The age at which g's table is handed over: PEND_MAX_AGE_MS for the first GroupBy, down to
 * half of it, in steps, for the others. GroupBys streamed from one topic start their tables
 * together; with one age they would be flushed together every time, and each flush makes the
 * next reads of its records cold (new table files, the stream record cache's entries of those
 * records dropped): ten at once held a 2,000/s fetch's queue for up to 100 ms in bench_fetch's
 * 'live' phase. Staggered, they land one at a time and drift apart. */
static int64_t pend_max_age_ms(const tsr_tile_store_t *s, const tsr__ts_gb_t *g) {
    size_t i = (size_t)(g - s->gbs) % 10;
    return PEND_MAX_AGE_MS - (int64_t)i * (PEND_MAX_AGE_MS / 20);
}

/* After a fold: hands act to the flusher when pend_should_flush says so; while the previous
 * hand-over is still being written it goes on folding, and waits (bounded) only once act
 * reached the whole budget. Caller holds apply_mu. */
static int maybe_flush(tsr_tile_store_t *s, tsr__ts_gb_t *g, size_t bytes, tsr_error_t *err) {
    int old = g->act && mono_ms() - g->act->born_ms >= pend_max_age_ms(s, g);
    if (!pend_should_flush(s, g, bytes) && !(old && !g->imm)) return 0;
    size_t budget = __atomic_load_n(&s->pend_budget, __ATOMIC_RELAXED);
    int rc = 0;
    pthread_mutex_lock(&s->fl_mu);
    if (g->imm && bytes >= budget) {
        struct timespec t;
        clock_gettime(CLOCK_REALTIME, &t);
        t.tv_sec += 10;
        while (g->imm && rc == 0)
            if (pthread_cond_timedwait(&s->fl_done_cv, &s->fl_mu, &t) != 0 && g->imm)
                rc = tsr_error_set(err, TSR_EIO, "tile store: the flush of %s is failing: %s", g->name,
                                   g->flush_failed ? g->flush_msg : "timed out");
    }
    if (!g->imm) {
        swap_act(g);
        pthread_cond_signal(&s->fl_cv);
    }
    pthread_mutex_unlock(&s->fl_mu);
    return rc;
}

/* Writes the batch's events (ts >= b) as one stream log record. Caller holds apply_mu. */
static int log_batch(tsr_tile_store_t *s, tsr__ts_gb_t *g, const tsr_tile_event_t *ev, size_t n,
                     int64_t b, tsr_buf_t *k, tsr_error_t *err) {
    const tsr_value_t nul = tsr_value_null();
    tsr_buf_t v;
    tsr_buf_init(&v);
    for (size_t i = 0; i < n; i++) {
        const tsr_tile_event_t *e = &ev[i];
        if (e->ts < b) continue;
        tsr__put_key(&v, e->key, e->klen);
        tsr_buf_put_svarint(&v, e->ts);
        tsr_buf_put_uvarint(&v, e->seq);
        for (size_t c = 0; c < g->ncols; c++) {
            tsr_value_encode(&e->inputs[c], &v);
            if (g->cols[c].bucket_slot >= 0) tsr_value_encode(e->buckets ? &e->buckets[c] : &nul, &v);
        }
    }
    if (!g->log_wb) g->log_wb = rocksdb_writebatch_create(); /* kept, under apply_mu */
    rocksdb_writebatch_t *wb = g->log_wb;
    rocksdb_writebatch_clear(wb);
    log_key(k, g, g->log_next);
    rocksdb_writebatch_put_cf(wb, s->cf[TSR__CF_LOG], (const char *)k->data, k->len,
                              (const char *)v.data, v.len);
    char *e = NULL;
    rocksdb_write(s->db, s->wo, wb, &e);
    tsr_buf_free(&v);
    if (e) {
        int rc = tsr_error_set(err, TSR_EIO, "stream write: %s", e);
        free(e);
        return rc;
    }
    g->log_next++;
    return 0;
}

int tsr_tile_store_apply(tsr_tile_store_t *s, const char *gb, const tsr_tile_event_t *ev,
                         size_t n, const char *offset_name, int64_t next_offset,
                         uint64_t *skipped, tsr_error_t *err) {
    return tsr_tile_store_apply_offsets(s, gb, ev, n, offset_name ? &offset_name : NULL,
                                        offset_name ? &next_offset : NULL, offset_name ? 1 : 0,
                                        skipped, err);
}

int tsr_tile_store_apply_offsets(tsr_tile_store_t *s, const char *gb, const tsr_tile_event_t *ev,
                                 size_t n, const char *const *offset_names,
                                 const int64_t *next_offsets, size_t noffsets, uint64_t *skipped,
                                 tsr_error_t *err) {
    tsr__ts_gb_t *g = tsr__ts_lookup(s, gb, err);
    if (!g) return TSR_ENOTFOUND;
    for (size_t i = 0; i < n; i++)
        if (ev[i].klen > 0xffff) return tsr_error_set(err, TSR_EINVAL, "key longer than 65535 bytes");
    pthread_mutex_lock(&g->apply_mu);
    int64_t b = __atomic_load_n(&g->batch_end, __ATOMIC_ACQUIRE);
    tsr_buf_t k;
    tsr_buf_init(&k);
    uint64_t skip = 0, nfold = 0;
    for (size_t i = 0; i < n; i++) {
        if (ev[i].ts < b) skip++;
        else nfold++;
    }
    int rc = 0;
    /* 1. durability: with offsets, the source is the log — the events are written with the
     *    offsets they reach when the table is flushed, and a crash replays them from there;
     *    without, the batch is logged now (one write) */
    if (noffsets == 0 && nfold) rc = log_batch(s, g, ev, n, b, &k, err);
    /* 2. fold into the write-back table (readers see the events from here) */
    if (rc == 0 && (nfold || noffsets)) {
        __atomic_store_n(&g->last_apply_ms, mono_ms(), __ATOMIC_RELAXED);
        /* every event's hour record key and hash, before the table lock (readers go on) */
        fold_ref_t *refs = tsr_malloc((nfold ? nfold : 1) * sizeof(fold_ref_t));
        size_t nr = 0;
        tsr_buf_clear(&k);
        for (size_t i = 0; i < n; i++)
            if (ev[i].ts >= b) fold_ref_make(g, &ev[i], (uint32_t)i, &k, &refs[nr++]);
        size_t bytes = 0;
        size_t i0 = 0;
        do { /* in chunks: a read waits ~100 µs at most */
            pthread_rwlock_wrlock(&g->pend_lock);
            if (!g->act) g->act = pend_new(s, g);
            tsr__pend_t *c = g->act;
            const uint8_t *kb = k.data;
            if (i0 == 0) { /* the pipeline's start: later chunks continue the prefetches */
                for (size_t j = 0; j < nr && j < FOLD_AHEAD_3; j++) fold_prefetch(c, &refs[j], kb, 3);
                for (size_t j = 0; j < nr && j < FOLD_AHEAD_2; j++) fold_prefetch(c, &refs[j], kb, 2);
                for (size_t j = 0; j < nr && j < FOLD_AHEAD_1; j++) fold_prefetch(c, &refs[j], kb, 1);
                for (size_t j = 0; j < nr && j < FOLD_AHEAD_0; j++) fold_prefetch(c, &refs[j], kb, 0);
            }
            for (size_t j = i0; j < nr && j < i0 + 64; j++) {
                if (j + FOLD_AHEAD_3 < nr) fold_prefetch(c, &refs[j + FOLD_AHEAD_3], kb, 3);
                if (j + FOLD_AHEAD_2 < nr) fold_prefetch(c, &refs[j + FOLD_AHEAD_2], kb, 2);
                if (j + FOLD_AHEAD_1 < nr) fold_prefetch(c, &refs[j + FOLD_AHEAD_1], kb, 1);
                if (j + FOLD_AHEAD_0 < nr) fold_prefetch(c, &refs[j + FOLD_AHEAD_0], kb, 0);
                pend_fold(c, g, &ev[refs[j].ev], &refs[j], k.data + refs[j].koff);
            }
            if (i0 + 64 >= nr)
                for (size_t o = 0; o < noffsets; o++)
                    pend_set_offset(c, offset_names[o], next_offsets[o]);
            bytes = pend_bytes(c);
            pthread_rwlock_unlock(&g->pend_lock);
            i0 += 64;
        } while (i0 < nr);
        free(refs);
        /* 3. flush when the table is large (a record's events then share one operand) or old */
        rc = maybe_flush(s, g, bytes, err);
    }
    pthread_mutex_unlock(&g->apply_mu);
    tsr_buf_free(&k);
    if (skipped) *skipped += skip;
    return rc;
}

int64_t tsr_tile_store_offset(tsr_tile_store_t *s, const char *gb, const char *offset_name) {
    tsr__ts_gb_t *g = tsr__ts_lookup(s, gb, NULL);
    if (g) { /* what the write-back table reaches is ahead of what is stored */
        pthread_rwlock_rdlock(&g->pend_lock);
        int64_t o = pend_offset(g->act, offset_name);
        if (o < 0) o = pend_offset(g->imm, offset_name);
        pthread_rwlock_unlock(&g->pend_lock);
        if (o >= 0) return o;
    }
    return stored_offset(s, gb, offset_name);
}

/* Folds the log records of an earlier run back in (at register, before any use): those at
 * or above the log high mark 't' gb \0 \0\0\0 'L' of the last flush (stream family; 'm' gb
 * \0 'L' in a store written by session 5, until its first flush here) — the ones below
 * are in the stored records already, whether or not the range deletion after that flush's
 * ingest happened (it is repeated here). A store without the mark (written before table-file
 * flushes, which deleted the log range in the flush's own WriteBatch) replays all its log. */
static int replay_log(tsr_tile_store_t *s, tsr__ts_gb_t *g, tsr_error_t *err) {
    tsr_buf_t lo, hi, k;
    tsr_buf_init(&lo);
    tsr_buf_init(&hi);
    tsr_buf_init(&k);
    int64_t mark = INT64_MIN;
    tsr__state_key(&k, g->name, g->nlen, 'L');
    int mrc = get_i64_value(s, TSR__CF_STREAM, &k, &mark);
    if (mrc == TSR_ENOTFOUND) {
        tsr__state_key_old(&k, g->name, g->nlen, 'L');
        mrc = get_i64_value(s, TSR__CF_STREAM, &k, &mark);
    }
    if (mrc != 0) mark = INT64_MIN;
    if (mark != INT64_MIN) {
        char *e = NULL;
        log_key(&lo, g, INT64_MIN);
        log_key(&hi, g, mark);
        rocksdb_delete_range_cf(s->db, s->wo, s->cf[TSR__CF_LOG], (const char *)lo.data, lo.len,
                                (const char *)hi.data, hi.len, &e);
        free(e); /* best effort: the replay skips them either way */
        tsr_buf_clear(&hi);
    }
    log_key(&lo, g, mark);
    tsr_buf_putc(&hi, 'l'); /* 'l' gb \1: past every 'l' gb \0 key */
    tsr_buf_append(&hi, g->name, g->nlen);
    tsr_buf_putc(&hi, 1);
    rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
    rocksdb_readoptions_set_iterate_upper_bound(ro, (const char *)hi.data, hi.len);
    rocksdb_iterator_t *it = rocksdb_create_iterator_cf(s->db, ro, s->cf[TSR__CF_LOG]);
    tsr_arena_t arena;
    tsr_arena_init(&arena, 0);
    tsr_value_t *vals = tsr_malloc(2 * (g->ncols ? g->ncols : 1) * sizeof(tsr_value_t));
    int rc = 0;
    int64_t first = INT64_MIN, last = INT64_MIN;
    int64_t b = __atomic_load_n(&g->batch_end, __ATOMIC_ACQUIRE);
    for (rocksdb_iter_seek(it, (const char *)lo.data, lo.len); rocksdb_iter_valid(it) && rc == 0;
         rocksdb_iter_next(it)) {
        size_t kl, vl;
        const uint8_t *kk = (const uint8_t *)rocksdb_iter_key(it, &kl);
        const uint8_t *vv = (const uint8_t *)rocksdb_iter_value(it, &vl);
        if (kl != lo.len) {
            rc = TSR_ECORRUPT;
            break;
        }
        int64_t seq = tsr__get_i64(kk + kl - 8);
        if (first == INT64_MIN) first = seq;
        last = seq;
        if (!g->act) g->act = pend_new(s, g);
        tsr_reader_t r;
        tsr_reader_init(&r, vv, vl);
        while (tsr_reader_left(&r) && rc == 0) {
            tsr_arena_reset(&arena);
            uint8_t hb[2];
            const uint8_t *key = r.p + 2;
            if (tsr_get_u8(&r, &hb[0]) || tsr_get_u8(&r, &hb[1])) rc = TSR_ECORRUPT;
            size_t klen = (size_t)hb[0] << 8 | hb[1];
            tsr_tile_event_t e = {key, klen, 0, 0, vals, vals + g->ncols};
            uint64_t sq;
            if (rc || tsr_reader_left(&r) < klen) rc = TSR_ECORRUPT;
            else r.p += klen;
            if (rc || tsr_get_svarint(&r, &e.ts) || tsr_get_uvarint(&r, &sq)) rc = TSR_ECORRUPT;
            e.seq = sq;
            for (size_t c = 0; c < g->ncols && rc == 0; c++) {
                vals[g->ncols + c] = tsr_value_null();
                if (tsr_value_decode(&r, &arena, &vals[c]) ||
                    (g->cols[c].bucket_slot >= 0 && tsr_value_decode(&r, &arena, &vals[g->ncols + c])))
                    rc = TSR_ECORRUPT;
            }
            if (rc == 0 && e.ts >= b) {
                fold_ref_t fr;
                tsr_buf_clear(&k);
                fold_ref_make(g, &e, 0, &k, &fr);
                pend_fold(g->act, g, &e, &fr, k.data);
            }
        }
    }
    char *e = NULL;
    rocksdb_iter_get_error(it, &e);
    if (e) {
        free(e);
        rc = TSR_EIO;
    }
    rocksdb_iter_destroy(it);
    rocksdb_readoptions_destroy(ro);
    free(vals);
    tsr_arena_free(&arena);
    tsr_buf_free(&lo);
    tsr_buf_free(&hi);
    tsr_buf_free(&k);
    if (rc) return tsr_error_set(err, rc, "tile store: corrupt stream log of %s", g->name);
    /* new log records continue above the mark (a replay must not skip them) */
    int64_t base = mark == INT64_MIN ? 0 : mark;
    g->log_lo = first == INT64_MIN ? base : first;
    g->log_next = first == INT64_MIN ? base : last + 1;
    return 0;
}

void tsr_tile_store_set_write_back(tsr_tile_store_t *s, size_t bytes) {
    __atomic_store_n(&s->pend_budget, bytes ? bytes : 1, __ATOMIC_RELAXED);
}

int tsr_tile_store_flush(tsr_tile_store_t *s, tsr_error_t *err) {
    pthread_rwlock_rdlock(&s->lock);
    size_t n = s->ngbs;
    pthread_rwlock_unlock(&s->lock);
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        tsr__ts_gb_t *g = &s->gbs[i];
        pthread_mutex_lock(&g->apply_mu);
        rc = flush_pend(s, g, err);
        pthread_mutex_unlock(&g->apply_mu);
    }
    return rc;
}

void tsr_tile_store_compact(tsr_tile_store_t *s) {
    tsr_tile_store_flush(s, NULL);
    for (int f = TSR__CF_META; f < TSR__NCF; f++)
        rocksdb_compact_range_cf(s->db, s->cf[f], NULL, 0, NULL, 0);
}
