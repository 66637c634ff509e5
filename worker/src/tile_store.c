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
 * tsr_tile_store_apply writes one log record per Kafka batch — its events and the partition
 * offset in one WriteBatch: in the WAL when apply returns (not fsynced: kill -9 loses nothing;
 * a machine crash may lose the last batches together with their offsets, so the consumer
 * re-reads them and the state stays consistent) — and folds the events into an in-memory
 * table (record key -> slot tiles and raw events). When the table reaches its share of the
 * write-back budget, the flusher thread writes it as one merge operand per record, sorted by
 * key, together with the deletion of the log records it covers and a flush marker, in one
 * WriteBatch. Reads merge the table (and a table being flushed, unless the marker read in the
 * same multi-get shows it landed); tsr_tile_store_register replays the log after a restart.
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

#include <stdio.h>
#include <sys/prctl.h>
#include <stdlib.h>
#include <time.h>

#include "tsr/tile.h"
#include "tsr/window.h"

static void pend_free(const tsr__ts_gb_t *g, tsr__pend_t *c);
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
 * restart) keep everything. RocksDB calls this for values, not for merge operands: a record
 * that was only operands goes at the compaction after the one that merged it. */
static unsigned char cf_filter(void *st, int level, const char *key, size_t klen,
                               const char *v, size_t vlen, char **nv, size_t *nvlen,
                               unsigned char *changed) {
    *changed = 0;
    if (klen < 12 || key[0] != 't') return 0;
    tsr__ts_gb_t *g = gb_of_key(st, key, klen);
    if (!g) return 0;
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

int tsr_tile_store_open(const char *dir, tsr_tile_store_t **out, tsr_error_t *err) {
    *out = NULL;
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
    s->cache = rocksdb_cache_create_lru((size_t)256 << 20);
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
        pthread_rwlock_destroy(&s->lock);
        free(s);
        return rc;
    }
    s->wo = rocksdb_writeoptions_create();
    s->ro = rocksdb_readoptions_create();
    s->pend_budget = PEND_BUDGET_BYTES;
    pthread_mutex_init(&s->fl_mu, NULL);
    pthread_cond_init(&s->fl_cv, NULL);
    pthread_cond_init(&s->fl_done_cv, NULL);
    pthread_create(&s->flusher, NULL, flusher_main, s);
    *out = s;
    return 0;
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
        if (s->gbs[i].flush_wb) rocksdb_writebatch_destroy(s->gbs[i].flush_wb);
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
    rocksdb_writeoptions_destroy(s->wo);
    rocksdb_readoptions_destroy(s->ro);
    for (size_t i = 0; i < s->ngbs; i++) {
        free(s->gbs[i].name);
        for (size_t c = 0; c < s->gbs[i].ncols; c++) free((void *)s->gbs[i].cols[c].windows);
        free(s->gbs[i].cols);
        free(s->gbs[i].ir_off);
    }
    pthread_mutex_destroy(&s->fl_mu);
    pthread_cond_destroy(&s->fl_cv);
    pthread_cond_destroy(&s->fl_done_cv);
    pthread_rwlock_destroy(&s->lock);
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
        int64_t b;
        if (get_i64_value(s, TSR__CF_META, &k, &b) != 0) b = INT64_MIN;
        __atomic_store_n(&g->batch_end, b, __ATOMIC_RELEASE);
        pthread_mutex_init(&g->apply_mu, NULL);
        pthread_mutex_init(&g->flush_mu, NULL);
        pthread_rwlock_init(&g->pend_lock, NULL);
        g->act = g->imm = NULL;
        tsr__key_prefix(&k, 'm', gb->name, n);
        tsr_buf_putc(&k, 'F');
        int64_t gen;
        g->gen = get_i64_value(s, TSR__CF_STREAM, &k, &gen) == 0
                     ? (uint64_t)gen ^ (UINT64_C(1) << 63)
                     : 0;
        tsr_buf_free(&k);
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
    int64_t b;
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
    /* a leftover of a crashed upload of the same version is dropped first — unless records
     * are added to the version being served (its records must stay readable) */
    if (add && batch_end == __atomic_load_n(&g->batch_end, __ATOMIC_ACQUIRE)) {
        *out = u;
        return 0;
    }
    tsr_buf_t lo, hi;
    tsr_buf_init(&lo);
    tsr_buf_init(&hi);
    version_range(&lo, &hi, g, batch_end);
    rocksdb_writebatch_delete_range_cf(u->wb, u->s->cf[TSR__CF_BATCH], (const char *)lo.data,
                                       lo.len, (const char *)hi.data, hi.len);
    tsr_buf_free(&lo);
    tsr_buf_free(&hi);
    *out = u;
    return 0;
}

static int upload_flush(tsr_tile_upload_t *u, tsr_error_t *err) {
    char *e = NULL;
    rocksdb_write(u->s->db, u->s->wo, u->wb, &e);
    rocksdb_writebatch_clear(u->wb);
    u->pending = 0;
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
    qsort(u->pt, u->npt, sizeof(pending_tile_t), pt_cmp);
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
        tsr__put_i64(&u->key, u->b);
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
    int64_t old = __atomic_load_n(&u->g->batch_end, __ATOMIC_ACQUIRE);
    tsr__key_prefix(&u->key, 'm', u->g->name, u->g->nlen);
    tsr_buf_putc(&u->key, 'B');
    tsr_buf_clear(&u->val);
    tsr__put_i64(&u->val, u->b);
    rocksdb_writebatch_put_cf(u->wb, u->s->cf[TSR__CF_META], (const char *)u->key.data, u->key.len,
                              (const char *)u->val.data, u->val.len);
    if (old != INT64_MIN && old != u->b) {
        tsr_buf_t lo, hi;
        tsr_buf_init(&lo);
        tsr_buf_init(&hi);
        version_range(&lo, &hi, u->g, old);
        rocksdb_writebatch_delete_range_cf(u->wb, u->s->cf[TSR__CF_BATCH], (const char *)lo.data,
                                           lo.len, (const char *)hi.data, hi.len);
        tsr_buf_free(&lo);
        tsr_buf_free(&hi);
    }
    rc = upload_flush(u, err);
    if (rc == 0) __atomic_store_n(&u->g->batch_end, u->b, __ATOMIC_RELEASE);
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
    if (u->b != __atomic_load_n(&u->g->batch_end, __ATOMIC_ACQUIRE)) {
        tsr_buf_t lo, hi;
        tsr_buf_init(&lo);
        tsr_buf_init(&hi);
        version_range(&lo, &hi, u->g, u->b);
        rocksdb_writebatch_delete_range_cf(u->wb, u->s->cf[TSR__CF_BATCH], (const char *)lo.data,
                                           lo.len, (const char *)hi.data, hi.len);
        char *e = NULL;
        rocksdb_write(u->s->db, u->s->wo, u->wb, &e);
        free(e);
        tsr_buf_free(&lo);
        tsr_buf_free(&hi);
    }
    upload_free(u);
}

/* ---- streaming */

/* The offset as stored (the last flush's), or -1. */
static int64_t stored_offset(tsr_tile_store_t *s, const char *gb, const char *offset_name) {
    tsr_buf_t k;
    tsr_buf_init(&k);
    tsr__key_prefix(&k, 'm', gb, strlen(gb));
    tsr_buf_putc(&k, 'o');
    tsr_buf_puts(&k, offset_name);
    int64_t v;
    int rc = get_i64_value(s, TSR__CF_META, &k, &v);
    tsr_buf_free(&k);
    return rc ? -1 : v;
}

/* ---- the write-back table: record key -> slot nodes
 *
 * An open-addressing table (load <= 1/2) from a record key to an entry; an entry has a node per
 * slot it saw, holding one tile block (and, in an hour record, a chain of raw events); an hour
 * entry points at its day entry, so an event costs one lookup. All of
 * it lives in one bulk arena (huge pages: few page faults, no copying as it grows) and is
 * dropped at once after the flush. */
typedef tsr__raw_chunk_t raw_chunk_t; /* tile_store_int.h: reads walk the chains */

typedef struct slot_node {
    raw_chunk_t *raw_head, *raw_tail;
    void *blk;
} slot_node_t;

typedef struct rec_entry {
    uint64_t hash;
    const uint8_t *key;
    uint32_t klen;
    int nslots;                 /* TSR__DAY_SLOTS or TSR__HOUR_SLOTS */
    struct rec_entry *day;      /* hour record: the day record of its key */
    slot_node_t *slots[];       /* by slot index; NULL: none */
} rec_entry_t;

struct tsr__pend {
    rec_entry_t **table;
    size_t cap, nents;
    tsr_arena_t arena;
    size_t nevents;
    tsr_buf_t scratch;
    slot_node_t **all;          /* every node, for clearing their tiles */
    size_t nall, capall;
    /* the consumer offsets this table's events reach (written with its records) */
    char **off_names;
    int64_t *off_next;
    size_t noffs, capoffs;
    int64_t born_ms;            /* monotonic ms of the first fold */
};

static tsr__pend_t *pend_new(void) {
    tsr__pend_t *c = tsr_calloc(1, sizeof(*c));
    c->cap = (size_t)1 << 14;
    c->table = tsr_calloc(c->cap, sizeof(rec_entry_t *));
    tsr_arena_init_bulk(&c->arena);
    tsr_buf_init(&c->scratch);
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    c->born_ms = (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
    return c;
}

static void pend_free(const tsr__ts_gb_t *g, tsr__pend_t *c) {
    if (!c) return;
    for (size_t i = 0; i < c->nall; i++) tsr__tile_clear(g, c->all[i]->blk);
    for (size_t i = 0; i < c->noffs; i++) free(c->off_names[i]);
    free(c->off_names);
    free(c->off_next);
    free(c->all);
    free(c->table);
    tsr_arena_free(&c->arena);
    tsr_buf_free(&c->scratch);
    free(c);
}

/* Records that the table's events reach offset next of name. */
static void pend_set_offset(tsr__pend_t *c, const char *name, int64_t next) {
    for (size_t i = 0; i < c->noffs; i++)
        if (strcmp(c->off_names[i], name) == 0) {
            c->off_next[i] = next;
            return;
        }
    if (c->noffs == c->capoffs) {
        c->capoffs = c->capoffs ? 2 * c->capoffs : 16;
        c->off_names = tsr_realloc(c->off_names, c->capoffs * sizeof(char *));
        c->off_next = tsr_realloc(c->off_next, c->capoffs * sizeof(int64_t));
    }
    c->off_names[c->noffs] = tsr_strdup(name);
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
    return c->arena.total + c->cap * sizeof(rec_entry_t *) + c->capall * sizeof(slot_node_t *);
}

uint64_t tsr__pend_hash(const uint8_t *k, size_t kl) { return tsr_hash_bytes(k, kl, 0x7113); }

static const rec_entry_t *pend_find_h(const tsr__pend_t *c, const uint8_t *k, size_t kl, uint64_t h) {
    if (!c || c->nents == 0) return NULL;
    for (size_t i = (size_t)h & (c->cap - 1);; i = (i + 1) & (c->cap - 1)) {
        const rec_entry_t *e = c->table[i];
        if (!e) return NULL;
        if (e->hash == h && e->klen == kl && memcmp(e->key, k, kl) == 0) return e;
    }
}

static rec_entry_t *pend_get(tsr__pend_t *c, const uint8_t *k, size_t kl) {
    uint64_t h = tsr__pend_hash(k, kl);
    size_t i = (size_t)h & (c->cap - 1);
    for (;; i = (i + 1) & (c->cap - 1)) {
        rec_entry_t *e = c->table[i];
        if (!e) break;
        if (e->hash == h && e->klen == kl && memcmp(e->key, k, kl) == 0) return e;
    }
    int nslots = k[kl - 9] == TSR__REC_HOUR ? TSR__HOUR_SLOTS : TSR__DAY_SLOTS;
    size_t sz = sizeof(rec_entry_t) + (size_t)nslots * sizeof(slot_node_t *);
    rec_entry_t *e = tsr_arena_alloc(&c->arena, sz + kl);
    memset(e, 0, sz);
    uint8_t *kc = (uint8_t *)e + sz;
    memcpy(kc, k, kl);
    e->hash = h;
    e->key = kc;
    e->klen = (uint32_t)kl;
    e->nslots = nslots;
    c->table[i] = e;
    if (2 * ++c->nents > c->cap) {
        size_t cap = 2 * c->cap;
        rec_entry_t **t = tsr_calloc(cap, sizeof(rec_entry_t *));
        for (size_t j = 0; j < c->cap; j++) {
            rec_entry_t *x = c->table[j];
            if (!x) continue;
            size_t at = (size_t)x->hash & (cap - 1);
            while (t[at]) at = (at + 1) & (cap - 1);
            t[at] = x;
        }
        free(c->table);
        c->table = t;
        c->cap = cap;
    }
    return e;
}

/* The node of slot in e, created (with an empty tile) when missing: O(1), by index. */
static slot_node_t *pend_slot(tsr__pend_t *c, const tsr__ts_gb_t *g, rec_entry_t *e, int slot) {
    if (e->slots[slot]) return e->slots[slot];
    slot_node_t *n = tsr_arena_alloc(&c->arena, sizeof(slot_node_t) + g->ir_size);
    n->raw_head = n->raw_tail = NULL;
    n->blk = n + 1;
    tsr__tile_init(g, n->blk);
    e->slots[slot] = n;
    if (c->nall == c->capall) {
        c->capall = c->capall ? 2 * c->capall : 4096;
        c->all = tsr_realloc(c->all, c->capall * sizeof(slot_node_t *));
    }
    c->all[c->nall++] = n;
    return n;
}

/* Folds one event (ts >= B) into the day and hour records of its key; k is scratch. */
static void pend_fold(tsr__pend_t *c, const tsr__ts_gb_t *g, const tsr_tile_event_t *e, tsr_buf_t *k) {
    static const tsr_value_t nul = {0};
    int64_t hour = tsr_floor_div(e->ts, TSR_TILE_1H) * TSR_TILE_1H;
    int slot5 = (int)((e->ts - hour) / TSR_TILE_5M);
    tsr__key_prefix(k, 't', g->name, g->nlen);
    tsr__put_key(k, e->key, e->klen);
    size_t base = k->len;
    tsr_buf_putc(k, TSR__REC_HOUR);
    tsr__put_i64(k, hour);
    rec_entry_t *he = pend_get(c, k->data, k->len);
    int64_t day = tsr_floor_div(e->ts, TSR_TILE_1D) * TSR_TILE_1D;
    if (!he->day) {
        k->len = base;
        tsr_buf_putc(k, TSR__REC_DAY);
        tsr__put_i64(k, day);
        he->day = pend_get(c, k->data, k->len);
    }
    slot_node_t *n5 = pend_slot(c, g, he, slot5);
    slot_node_t *nh = pend_slot(c, g, he->day, (int)((hour - day) / TSR_TILE_1H));
    slot_node_t *nd = pend_slot(c, g, he->day, TSR__DAY_SLOT_ALL);
    for (size_t col = 0; col < g->ncols; col++) {
        const tsr_agg_t *a = g->cols[col].agg;
        /* a bucketed column passes its bucket (the kernel skips a null one) */
        const tsr_value_t *bk = g->cols[col].bucket_slot < 0 ? NULL : e->buckets ? &e->buckets[col] : &nul;
        tsr_agg_update(a, tsr__tile_col(g, n5->blk, col), &e->inputs[col], bk, e->ts, e->seq);
        tsr_agg_update(a, tsr__tile_col(g, nh->blk, col), &e->inputs[col], bk, e->ts, e->seq);
        tsr_agg_update(a, tsr__tile_col(g, nd->blk, col), &e->inputs[col], bk, e->ts, e->seq);
    }
    /* the raw event, in its 5-minute slot's chain */
    tsr_buf_t *r = &c->scratch;
    tsr_buf_clear(r);
    tsr_buf_put_uvarint(r, (uint64_t)(e->ts - hour - (int64_t)slot5 * TSR_TILE_5M));
    tsr_buf_put_uvarint(r, e->seq);
    for (size_t col = 0; col < g->ncols; col++) {
        tsr_value_encode(&e->inputs[col], r);
        if (g->cols[col].bucket_slot >= 0) tsr_value_encode(e->buckets ? &e->buckets[col] : &nul, r);
    }
    raw_chunk_t *ch = tsr_arena_alloc(&c->arena, sizeof(raw_chunk_t) + r->len);
    ch->next = NULL;
    ch->len = (uint32_t)r->len;
    memcpy(ch->data, r->data, r->len);
    if (n5->raw_tail) n5->raw_tail->next = ch;
    else n5->raw_head = ch;
    n5->raw_tail = ch;
    c->nevents++;
}

/* Appends entry e's slot list (the merge operand format) to v. */
static void encode_entry(const tsr__ts_gb_t *g, const rec_entry_t *e, tsr_buf_t *v) {
    int hour = e->nslots == TSR__HOUR_SLOTS;
    for (int slot = 0; slot < e->nslots; slot++) {
        const slot_node_t *n = e->slots[slot];
        if (!n) continue;
        tsr_buf_putc(v, slot);
        /* the tile, then its uvarint length moved in front of it */
        size_t at = v->len;
        tsr__tile_encode(g, n->blk, v);
        size_t tl = v->len - at;
        uint8_t hdr[10];
        size_t nh = 0;
        for (uint64_t t = tl; t >= 128; t >>= 7) hdr[nh++] = (uint8_t)(t | 128);
        hdr[nh] = (uint8_t)(tl >> (7 * nh));
        nh++;
        tsr_buf_reserve(v, nh);
        memmove(v->data + at + nh, v->data + at, tl);
        memcpy(v->data + at, hdr, nh);
        v->len += nh;
        if (!hour) continue;
        size_t rl = 0;
        for (const raw_chunk_t *r = n->raw_head; r; r = r->next) rl += r->len;
        tsr_buf_put_uvarint(v, rl);
        tsr_buf_reserve(v, rl);
        for (const raw_chunk_t *r = n->raw_head; r; r = r->next) {
            memcpy(v->data + v->len, r->data, r->len);
            v->len += r->len;
        }
    }
}

void tsr__pend_prefetch(const tsr__pend_t *p, uint64_t h, int stage) {
    if (!p || p->nents == 0) return;
    rec_entry_t *const *at = &p->table[(size_t)h & (p->cap - 1)];
    if (stage == 0) {
        __builtin_prefetch(at);
    } else if (*at) {
        __builtin_prefetch(*at);
        __builtin_prefetch((const char *)*at + 64); /* its slot pointers */
    }
}

int tsr__pend_visit(const tsr__pend_t *p, const uint8_t *k, size_t kl, uint64_t h, uint32_t slots,
                    tsr__pend_slot_fn fn, void *ud) {
    const rec_entry_t *e = pend_find_h(p, k, kl, h);
    if (!e) return 0;
    if (e->nslots < 32) slots &= (UINT32_C(1) << e->nslots) - 1;
    /* the nodes are scattered over the arena: ask for all of them before using the first
     * (a day record's 24 hour tiles would otherwise be 24 cache misses in a row) */
    for (uint32_t m = slots; m; m &= m - 1) {
        const slot_node_t *n = e->slots[__builtin_ctz(m)];
        if (n) {
            __builtin_prefetch(n);
            __builtin_prefetch((const char *)n + 64); /* the tile block follows the node */
        }
    }
    for (uint32_t m = slots; m; m &= m - 1) {
        int slot = __builtin_ctz(m);
        const slot_node_t *n = e->slots[slot];
        int rc = n ? fn(ud, slot, n->blk, n->raw_head) : 0;
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
        const rec_entry_t *e = p->table[i];
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

typedef struct ent_ref {
    uint64_t head;              /* the 8 key bytes after the GroupBy's common prefix, big-endian */
    const uint8_t *k;
    uint32_t klen, idx;
} ent_ref_t;

/* Key order. Every key starts with the same 't' gb \0 prefix: comparing the next 8 bytes as an
 * integer first settles most comparisons without touching the (scattered) keys. */
static int ent_cmp(const void *a, const void *b) {
    const ent_ref_t *x = a, *y = b;
    if (x->head != y->head) return x->head < y->head ? -1 : 1;
    size_t m = x->klen < y->klen ? x->klen : y->klen;
    int r = memcmp(x->k, y->k, m);
    return r ? r : (x->klen > y->klen) - (x->klen < y->klen);
}

static uint64_t ent_head(const uint8_t *k, size_t klen, size_t skip) {
    uint64_t h = 0;
    for (size_t i = 0; i < 8; i++) h = h << 8 | (skip + i < klen ? k[skip + i] : 0);
    return h;
}

/* Writes imm (every record a merge operand, in key order), deletes the log records it came
 * from and sets the flush marker to its generation, in one write; then drops imm. Caller
 * holds g->flush_mu. A failed write keeps imm (reads keep merging it) for a retry. */
static int flush_imm(tsr_tile_store_t *s, tsr__ts_gb_t *g, tsr_error_t *err) {
    pthread_rwlock_rdlock(&g->pend_lock); /* imm changes under it (and fl_mu) */
    tsr__pend_t *c = g->imm;
    int64_t log_hi = g->imm_log_hi;
    uint64_t gen = g->gen;
    pthread_rwlock_unlock(&g->pend_lock);
    if (!c) return 0;
    if (!g->flush_wb) g->flush_wb = rocksdb_writebatch_create(); /* kept: no regrowth */
    rocksdb_writebatch_t *wb = g->flush_wb;
    rocksdb_writebatch_clear(wb);
    tsr_buf_t k, v;
    tsr_buf_init(&k);
    tsr_buf_init(&v);
    ent_ref_t *ord = tsr_malloc((c->nents ? c->nents : 1) * sizeof(ent_ref_t));
    size_t nord = 0;
    size_t skip = 2 + g->nlen; /* 't' gb \0 */
    for (size_t i = 0; i < c->cap; i++) {
        const rec_entry_t *x = c->table[i];
        if (x) ord[nord++] = (ent_ref_t){ent_head(x->key, x->klen, skip), x->key, x->klen, (uint32_t)i};
    }
    /* in key order: memtable inserts are much cheaper sorted (PLATFORM-NOTES) */
    qsort(ord, nord, sizeof(ent_ref_t), ent_cmp);
    for (size_t i = 0; i < nord; i++) {
        tsr_buf_clear(&v);
        encode_entry(g, c->table[ord[i].idx], &v);
        rocksdb_writebatch_merge_cf(wb, s->cf[TSR__CF_STREAM], (const char *)ord[i].k, ord[i].klen,
                                    (const char *)v.data, v.len);
    }
    free(ord);
    /* the consumer offsets these records reach: exactly once into the store */
    for (size_t o = 0; o < c->noffs; o++) {
        tsr__key_prefix(&k, 'm', g->name, g->nlen);
        tsr_buf_putc(&k, 'o');
        tsr_buf_puts(&k, c->off_names[o]);
        tsr_buf_clear(&v);
        tsr__put_i64(&v, c->off_next[o]);
        rocksdb_writebatch_put_cf(wb, s->cf[TSR__CF_META], (const char *)k.data, k.len,
                                  (const char *)v.data, v.len);
    }
    tsr_buf_t lo;
    tsr_buf_init(&lo);
    log_key(&lo, g, INT64_MIN);
    log_key(&k, g, log_hi);
    rocksdb_writebatch_delete_range_cf(wb, s->cf[TSR__CF_LOG], (const char *)lo.data, lo.len,
                                       (const char *)k.data, k.len);
    tsr__key_prefix(&k, 'm', g->name, g->nlen); /* the marker: in the records' family */
    tsr_buf_putc(&k, 'F');
    tsr_buf_clear(&v);
    tsr__put_be64(&v, gen);
    rocksdb_writebatch_put_cf(wb, s->cf[TSR__CF_STREAM], (const char *)k.data, k.len,
                              (const char *)v.data, v.len);
    char *e = NULL;
    rocksdb_write(s->db, s->wo, wb, &e);
    rocksdb_writebatch_clear(wb);
    tsr_buf_free(&lo);
    tsr_buf_free(&k);
    tsr_buf_free(&v);
    if (e) {
        int rc = tsr_error_set(err, TSR_EIO, "tile flush of %s: %s", g->name, e);
        free(e);
        return rc;
    }
    pthread_mutex_lock(&s->fl_mu);
    pthread_rwlock_wrlock(&g->pend_lock);
    g->imm = NULL;
    g->log_lo = log_hi;
    pthread_rwlock_unlock(&g->pend_lock);
    pthread_cond_broadcast(&s->fl_done_cv);
    pthread_mutex_unlock(&s->fl_mu);
    pend_free(g, c);
    /* move the records just written out of the memtable into a table file (bloom filters,
     * hash indexes), as after an upload: fetches of the keys they hold otherwise walk a large
     * skiplist (FindGreaterOrEqual was ~16 % of the server's FetchJoin profile — the memtable
     * bloom filter only spares keys it does not hold). Not waited for: scheduled in RocksDB's
     * background jobs. A memtable under 1 MiB (small or idle flushes) is left to fill: its
     * search is cheap, and a table file per tiny flush would only make work for compaction */
    uint64_t mem = 0;
    if (rocksdb_property_int_cf(s->db, s->cf[TSR__CF_STREAM], "rocksdb.cur-size-active-mem-table", &mem) != 0 ||
        mem >= ((uint64_t)1 << 20)) {
        rocksdb_flushoptions_t *fo = rocksdb_flushoptions_create();
        rocksdb_flushoptions_set_wait(fo, 0);
        e = NULL;
        rocksdb_flush_cf(s->db, fo, s->cf[TSR__CF_STREAM], &e);
        free(e); /* best effort: the records are durable in the WAL either way */
        rocksdb_flushoptions_destroy(fo);
    }
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
            struct timespec t;
            clock_gettime(CLOCK_REALTIME, &t);
            t.tv_nsec += 100 * 1000000L;
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

/* After a fold: hands act to the flusher when pend_should_flush says so; while the previous
 * hand-over is still being written it goes on folding, and waits (bounded) only once act
 * reached the whole budget. Caller holds apply_mu. */
static int maybe_flush(tsr_tile_store_t *s, tsr__ts_gb_t *g, size_t bytes, tsr_error_t *err) {
    int old = g->act && mono_ms() - g->act->born_ms >= PEND_MAX_AGE_MS;
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
        size_t bytes = 0;
        size_t i0 = 0;
        do { /* in chunks: a read waits ~100 µs at most */
            pthread_rwlock_wrlock(&g->pend_lock);
            if (!g->act) g->act = pend_new();
            for (size_t i = i0; i < n && i < i0 + 64; i++)
                if (ev[i].ts >= b) pend_fold(g->act, g, &ev[i], &k);
            if (i0 + 64 >= n)
                for (size_t o = 0; o < noffsets; o++)
                    pend_set_offset(g->act, offset_names[o], next_offsets[o]);
            bytes = pend_bytes(g->act);
            pthread_rwlock_unlock(&g->pend_lock);
            i0 += 64;
        } while (i0 < n);
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

/* Folds the log records of an earlier run back in (at register, before any use). */
static int replay_log(tsr_tile_store_t *s, tsr__ts_gb_t *g, tsr_error_t *err) {
    tsr_buf_t lo, hi, k;
    tsr_buf_init(&lo);
    tsr_buf_init(&hi);
    tsr_buf_init(&k);
    log_key(&lo, g, INT64_MIN);
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
        if (!g->act) g->act = pend_new();
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
            if (rc == 0 && e.ts >= b) pend_fold(g->act, g, &e, &k);
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
    g->log_lo = first == INT64_MIN ? 0 : first;
    g->log_next = first == INT64_MIN ? 0 : last + 1;
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
