/*
 * tile_store.c — the tile store on RocksDB (see tile_store.h for the model and key layout,
 * common/tile.h for the read plan it serves).
 *
 * Merge operator: stream tiles are written as RocksDB merge operands (the IR of one batch's
 * events for that tile), so a Kafka batch never reads before it writes. The operator decodes
 * the existing value and the operands column by column, merges them with the kernel and
 * encodes the result; it finds the columns through the GroupBy name in the key, in a registry
 * filled by tsr_tile_store_register. Merge is commutative and associative for every op, so
 * RocksDB may combine operands in any grouping.
 */
#include "tsr/tile_store.h"

#include <pthread.h>
#include <rocksdb/c.h>
#include <stdlib.h>
#include <string.h>

#include "tsr/tile.h"
#include "tsr/window.h"

#define MAX_GB 256
#define GB_NAME_MAX 200

typedef struct gb_entry {
    char *name;
    size_t ncols;
    tsr_tile_col_t *cols;
    int64_t batch_end;          /* cached 'm..B'; INT64_MIN when none */
} gb_entry_t;

struct tsr_tile_store {
    rocksdb_t *db;
    rocksdb_options_t *opts;
    rocksdb_writeoptions_t *wo;
    rocksdb_readoptions_t *ro;
    rocksdb_mergeoperator_t *merge;
    rocksdb_cache_t *cache;
    rocksdb_block_based_table_options_t *table;
    pthread_rwlock_t lock;      /* guards gbs */
    gb_entry_t gbs[MAX_GB];
    size_t ngbs;
};

/* ---- keys */

static void put_be64(tsr_buf_t *b, uint64_t v) {
    uint8_t x[8];
    for (int i = 0; i < 8; i++) x[i] = (uint8_t)(v >> (56 - 8 * i));
    tsr_buf_append(b, x, 8);
}
static void put_i64(tsr_buf_t *b, int64_t v) { put_be64(b, (uint64_t)v ^ (UINT64_C(1) << 63)); }
static uint64_t get_be64(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v = (v << 8) | p[i];
    return v;
}
static int64_t get_i64(const uint8_t *p) { return (int64_t)(get_be64(p) ^ (UINT64_C(1) << 63)); }

static void key_prefix(tsr_buf_t *b, char tag, const char *gb) {
    tsr_buf_clear(b);
    tsr_buf_putc(b, tag);
    tsr_buf_append(b, gb, strlen(gb) + 1); /* with the '\0' */
}
static void put_key(tsr_buf_t *b, const void *key, size_t klen) {
    tsr_buf_putc(b, (int)(klen >> 8));
    tsr_buf_putc(b, (int)(klen & 0xff));
    tsr_buf_append(b, key, klen);
}

static int len_code(int64_t len) { return len == TSR_TILE_5M ? 1 : len == TSR_TILE_1H ? 2 : 3; }
static int64_t code_len(int c) { return c == 1 ? TSR_TILE_5M : c == 2 ? TSR_TILE_1H : TSR_TILE_1D; }

/* ---- registry */

static gb_entry_t *find_gb(tsr_tile_store_t *s, const char *name, size_t n) {
    for (size_t i = 0; i < s->ngbs; i++)
        if (strlen(s->gbs[i].name) == n && memcmp(s->gbs[i].name, name, n) == 0) return &s->gbs[i];
    return NULL;
}

/* ---- tile values: per column, uvarint length + encoded IR */

static void *ir_new(const tsr_agg_t *a) {
    void *ir = tsr_malloc(tsr_agg_ir_size(a));
    tsr_agg_init(a, ir);
    return ir;
}

static void irs_free(const gb_entry_t *g, void **irs) {
    for (size_t c = 0; c < g->ncols; c++) {
        if (!irs[c]) continue;
        tsr_agg_clear(g->cols[c].agg, irs[c]);
        free(irs[c]);
    }
}

static void encode_tile(const gb_entry_t *g, const void *const *irs, tsr_buf_t *out) {
    tsr_buf_t one;
    tsr_buf_init(&one);
    for (size_t c = 0; c < g->ncols; c++) {
        tsr_buf_clear(&one);
        tsr_agg_encode(g->cols[c].agg, irs[c], &one);
        tsr_buf_put_bytes(out, one.data, one.len);
    }
    tsr_buf_free(&one);
}

/* Merges an encoded tile value into irs (column by column). */
static int merge_tile(const gb_entry_t *g, void **irs, const void *v, size_t n) {
    tsr_reader_t r;
    tsr_reader_init(&r, v, n);
    for (size_t c = 0; c < g->ncols; c++) {
        const uint8_t *p;
        size_t len;
        if (tsr_get_bytes(&r, &p, &len)) return TSR_ECORRUPT;
        const tsr_agg_t *a = g->cols[c].agg;
        void *tmp = ir_new(a);
        int rc = tsr_agg_decode(a, tmp, p, len, NULL);
        if (rc == 0) tsr_agg_merge(a, irs[c], tmp);
        tsr_agg_clear(a, tmp);
        free(tmp);
        if (rc) return rc;
    }
    return 0;
}

/* The GroupBy of a stream key 't' gb \0 ... */
static gb_entry_t *gb_of_key(tsr_tile_store_t *s, const char *key, size_t n) {
    if (n < 2) return NULL;
    const char *z = memchr(key + 1, '\0', n - 1);
    if (!z) return NULL;
    return find_gb(s, key + 1, (size_t)(z - key - 1));
}

static char *merge_values(tsr_tile_store_t *s, const char *key, size_t klen, const char *existing,
                          size_t elen, const char *const *ops, const size_t *oplen, int nops,
                          unsigned char *success, size_t *outlen) {
    *success = 0;
    *outlen = 0;
    pthread_rwlock_rdlock(&s->lock);
    gb_entry_t *g = gb_of_key(s, key, klen);
    char *res = NULL;
    if (g) {
        void **irs = tsr_calloc(g->ncols ? g->ncols : 1, sizeof(void *));
        for (size_t c = 0; c < g->ncols; c++) irs[c] = ir_new(g->cols[c].agg);
        int rc = existing ? merge_tile(g, irs, existing, elen) : 0;
        for (int i = 0; i < nops && rc == 0; i++) rc = merge_tile(g, irs, ops[i], oplen[i]);
        if (rc == 0) {
            tsr_buf_t b;
            tsr_buf_init(&b);
            encode_tile(g, (const void *const *)irs, &b);
            res = malloc(b.len ? b.len : 1);
            if (res) {
                memcpy(res, b.data, b.len);
                *outlen = b.len;
                *success = 1;
            }
            tsr_buf_free(&b);
        }
        irs_free(g, irs);
        free(irs);
    }
    pthread_rwlock_unlock(&s->lock);
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
static const char *op_name(void *st) { return "tessera.tile.merge.v1"; }
static void op_destroy(void *st) {}

/* ---- open / close / register */

int tsr_tile_store_open(const char *dir, tsr_tile_store_t **out, tsr_error_t *err) {
    *out = NULL;
    tsr_tile_store_t *s = tsr_calloc(1, sizeof(*s));
    pthread_rwlock_init(&s->lock, NULL);
    s->opts = rocksdb_options_create();
    rocksdb_options_set_create_if_missing(s->opts, 1);
    s->merge = rocksdb_mergeoperator_create(s, op_destroy, op_full_merge, op_partial_merge,
                                            op_delete, op_name);
    rocksdb_options_set_merge_operator(s->opts, s->merge);
    /* fetch latency over space: LZ4 (cheap to decompress) and a 256 MiB block cache */
    rocksdb_options_set_compression(s->opts, rocksdb_lz4_compression);
    s->cache = rocksdb_cache_create_lru((size_t)256 << 20);
    s->table = rocksdb_block_based_options_create();
    rocksdb_block_based_options_set_block_cache(s->table, s->cache);
    rocksdb_options_set_block_based_table_factory(s->opts, s->table);
    char *e = NULL;
    s->db = rocksdb_open(s->opts, dir, &e);
    if (e) {
        int rc = tsr_error_set(err, TSR_EIO, "tile store %s: %s", dir, e);
        free(e);
        rocksdb_options_destroy(s->opts);
        rocksdb_block_based_options_destroy(s->table);
        rocksdb_cache_destroy(s->cache);
        pthread_rwlock_destroy(&s->lock);
        free(s);
        return rc;
    }
    s->wo = rocksdb_writeoptions_create();
    s->ro = rocksdb_readoptions_create();
    *out = s;
    return 0;
}

void tsr_tile_store_close(tsr_tile_store_t *s) {
    if (!s) return;
    rocksdb_close(s->db);
    rocksdb_options_destroy(s->opts); /* also destroys the merge operator it owns */
    rocksdb_block_based_options_destroy(s->table);
    rocksdb_cache_destroy(s->cache);
    rocksdb_writeoptions_destroy(s->wo);
    rocksdb_readoptions_destroy(s->ro);
    for (size_t i = 0; i < s->ngbs; i++) {
        free(s->gbs[i].name);
        for (size_t c = 0; c < s->gbs[i].ncols; c++) free((void *)s->gbs[i].cols[c].windows);
        free(s->gbs[i].cols);
    }
    pthread_rwlock_destroy(&s->lock);
    free(s);
}

static int get_i64_value(tsr_tile_store_t *s, const tsr_buf_t *k, int64_t *out) {
    char *e = NULL;
    size_t vlen;
    char *v = rocksdb_get(s->db, s->ro, (const char *)k->data, k->len, &vlen, &e);
    if (e) {
        free(e);
        return TSR_EIO;
    }
    if (!v) return TSR_ENOTFOUND;
    int rc = vlen == 8 ? 0 : TSR_ECORRUPT;
    if (!rc) *out = get_i64((const uint8_t *)v);
    rocksdb_free(v);
    return rc;
}

int tsr_tile_store_register(tsr_tile_store_t *s, const tsr_tile_gb_t *gb, tsr_error_t *err) {
    size_t n = strlen(gb->name);
    if (n == 0 || n > GB_NAME_MAX)
        return tsr_error_set(err, TSR_EINVAL, "GroupBy name must be 1..%d bytes", GB_NAME_MAX);
    pthread_rwlock_wrlock(&s->lock);
    int rc = 0;
    if (find_gb(s, gb->name, n)) {
        rc = tsr_error_set(err, TSR_EEXIST, "GroupBy %s is already registered", gb->name);
    } else if (s->ngbs == MAX_GB) {
        rc = tsr_error_set(err, TSR_EINVAL, "more than %d GroupBys in one tile store", MAX_GB);
    } else {
        gb_entry_t *g = &s->gbs[s->ngbs++];
        g->name = tsr_strdup(gb->name);
        g->ncols = gb->ncols;
        g->cols = tsr_calloc(gb->ncols ? gb->ncols : 1, sizeof(tsr_tile_col_t));
        for (size_t c = 0; c < gb->ncols; c++) {
            g->cols[c] = gb->cols[c];
            int64_t *w = tsr_malloc((gb->cols[c].nwin ? gb->cols[c].nwin : 1) * sizeof(int64_t));
            if (gb->cols[c].nwin) memcpy(w, gb->cols[c].windows, gb->cols[c].nwin * sizeof(int64_t));
            g->cols[c].windows = w;
        }
        tsr_buf_t k;
        tsr_buf_init(&k);
        key_prefix(&k, 'm', gb->name);
        tsr_buf_putc(&k, 'B');
        if (get_i64_value(s, &k, &g->batch_end) != 0) g->batch_end = INT64_MIN;
        tsr_buf_free(&k);
    }
    pthread_rwlock_unlock(&s->lock);
    return rc;
}

static gb_entry_t *lookup(tsr_tile_store_t *s, const char *gb, tsr_error_t *err) {
    pthread_rwlock_rdlock(&s->lock);
    gb_entry_t *g = find_gb(s, gb, strlen(gb));
    pthread_rwlock_unlock(&s->lock);
    if (!g) tsr_error_set(err, TSR_ENOTFOUND, "GroupBy %s is not registered in the tile store", gb);
    return g;
}

int64_t tsr_tile_store_batch_end(tsr_tile_store_t *s, const char *gb) {
    gb_entry_t *g = lookup(s, gb, NULL);
    return g ? __atomic_load_n(&g->batch_end, __ATOMIC_ACQUIRE) : INT64_MIN;
}

/* ---- uploads */

/* A key's tail tiles wait here until the key is complete, then are written as suffix
 * aggregates: the record at (kind, start) holds the merge of every tile of that hop from start
 * to B, so a fetch reads one batch record per window instead of w / H of them. */
typedef struct pending_tile {
    int kind;
    int64_t start;
    size_t off, len;            /* encoded tile value in tiles */
} pending_tile_t;

struct tsr_tile_upload {
    tsr_tile_store_t *s;
    gb_entry_t *g;
    int64_t b;
    rocksdb_writebatch_t *wb;
    size_t pending;
    tsr_buf_t key, val;
    tsr_buf_t cur;              /* the key whose tail tiles are pending */
    pending_tile_t *pt;
    size_t npt, cappt;
    tsr_buf_t tiles;
};

#define UPLOAD_FLUSH 4096

int tsr_tile_upload_begin(tsr_tile_store_t *s, const char *gb, int64_t batch_end,
                          tsr_tile_upload_t **out, tsr_error_t *err) {
    *out = NULL;
    gb_entry_t *g = lookup(s, gb, err);
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
    tsr_buf_init(&u->tiles);
    /* a leftover of a crashed upload of the same version is dropped first */
    tsr_buf_t lo, hi;
    tsr_buf_init(&lo);
    tsr_buf_init(&hi);
    key_prefix(&lo, 'b', gb);
    put_i64(&lo, batch_end);
    key_prefix(&hi, 'b', gb);
    put_i64(&hi, batch_end + 1);
    rocksdb_writebatch_delete_range(u->wb, (const char *)lo.data, lo.len, (const char *)hi.data, hi.len);
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

static int put_record(tsr_tile_upload_t *u, const void *key, size_t klen, int kind, int64_t start,
                      const void *v, size_t vl, tsr_error_t *err) {
    key_prefix(&u->key, 'b', u->g->name);
    put_i64(&u->key, u->b);
    put_key(&u->key, key, klen);
    tsr_buf_putc(&u->key, kind);
    put_i64(&u->key, start);
    rocksdb_writebatch_put(u->wb, (const char *)u->key.data, u->key.len, v, vl);
    if (++u->pending >= UPLOAD_FLUSH) return upload_flush(u, err);
    return 0;
}

/* Writes the pending key's tail tiles as suffix aggregates, per kind from the last tile back. */
static int flush_key(tsr_tile_upload_t *u, tsr_error_t *err) {
    if (u->npt == 0) return 0;
    gb_entry_t *g = u->g;
    qsort(u->pt, u->npt, sizeof(pending_tile_t), pt_cmp);
    void **acc = tsr_calloc(g->ncols ? g->ncols : 1, sizeof(void *));
    for (size_t c = 0; c < g->ncols; c++) acc[c] = ir_new(g->cols[c].agg);
    int rc = 0;
    size_t i = u->npt;
    while (i > 0 && rc == 0) {
        int kind = u->pt[i - 1].kind;
        for (size_t c = 0; c < g->ncols; c++) {
            tsr_agg_clear(g->cols[c].agg, acc[c]);
            tsr_agg_init(g->cols[c].agg, acc[c]);
        }
        for (; i > 0 && u->pt[i - 1].kind == kind && rc == 0; i--) {
            const pending_tile_t *t = &u->pt[i - 1];
            if ((rc = merge_tile(g, acc, u->tiles.data + t->off, t->len)) != 0) {
                tsr_error_set(err, rc, "upload: corrupt tile");
                break;
            }
            tsr_buf_clear(&u->val);
            encode_tile(g, (const void *const *)acc, &u->val);
            rc = put_record(u, u->cur.data, u->cur.len, kind, t->start, u->val.data, u->val.len, err);
        }
    }
    irs_free(g, acc);
    free(acc);
    u->npt = 0;
    tsr_buf_clear(&u->tiles);
    return rc;
}

int tsr_tile_upload_put(tsr_tile_upload_t *u, const void *key, size_t klen, tsr_tile_kind_t kind,
                        int64_t start, const void *const *irs, tsr_error_t *err) {
    if (klen > 0xffff) return tsr_error_set(err, TSR_EINVAL, "key longer than 65535 bytes");
    if ((int)kind < TSR_TILE_LIFETIME || kind > TSR_TILE_TAIL_1D)
        return tsr_error_set(err, TSR_EINVAL, "unknown batch record kind %d", (int)kind);
    if (u->cur.len != klen || (klen && memcmp(u->cur.data, key, klen) != 0)) {
        int rc = flush_key(u, err);
        if (rc) return rc;
        tsr_buf_clear(&u->cur);
        tsr_buf_append(&u->cur, key, klen);
    }
    tsr_buf_clear(&u->val);
    encode_tile(u->g, irs, &u->val);
    if (kind == TSR_TILE_LIFETIME) return put_record(u, key, klen, kind, 0, u->val.data, u->val.len, err);
    if (u->npt == u->cappt) {
        u->cappt = u->cappt ? 2 * u->cappt : 64;
        u->pt = tsr_realloc(u->pt, u->cappt * sizeof(pending_tile_t));
    }
    u->pt[u->npt++] = (pending_tile_t){(int)kind, start, u->tiles.len, u->val.len};
    tsr_buf_append(&u->tiles, u->val.data, u->val.len);
    return 0;
}

static void upload_free(tsr_tile_upload_t *u) {
    rocksdb_writebatch_destroy(u->wb);
    tsr_buf_free(&u->key);
    tsr_buf_free(&u->val);
    tsr_buf_free(&u->cur);
    tsr_buf_free(&u->tiles);
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
    int64_t old = u->g->batch_end;
    key_prefix(&u->key, 'm', u->g->name);
    tsr_buf_putc(&u->key, 'B');
    tsr_buf_clear(&u->val);
    put_i64(&u->val, u->b);
    rocksdb_writebatch_put(u->wb, (const char *)u->key.data, u->key.len, (const char *)u->val.data,
                           u->val.len);
    if (old != INT64_MIN && old != u->b) {
        tsr_buf_t lo, hi;
        tsr_buf_init(&lo);
        tsr_buf_init(&hi);
        key_prefix(&lo, 'b', u->g->name);
        put_i64(&lo, old);
        key_prefix(&hi, 'b', u->g->name);
        put_i64(&hi, old + 1);
        rocksdb_writebatch_delete_range(u->wb, (const char *)lo.data, lo.len, (const char *)hi.data, hi.len);
        tsr_buf_free(&lo);
        tsr_buf_free(&hi);
    }
    rc = upload_flush(u, err);
    if (rc == 0) __atomic_store_n(&u->g->batch_end, u->b, __ATOMIC_RELEASE);
    upload_free(u);
    return rc;
}

void tsr_tile_upload_abort(tsr_tile_upload_t *u) {
    if (!u) return;
    rocksdb_writebatch_clear(u->wb);
    if (u->b != u->g->batch_end) {
        tsr_buf_t lo, hi;
        tsr_buf_init(&lo);
        tsr_buf_init(&hi);
        key_prefix(&lo, 'b', u->g->name);
        put_i64(&lo, u->b);
        key_prefix(&hi, 'b', u->g->name);
        put_i64(&hi, u->b + 1);
        rocksdb_writebatch_delete_range(u->wb, (const char *)lo.data, lo.len, (const char *)hi.data, hi.len);
        char *e = NULL;
        rocksdb_write(u->s->db, u->s->wo, u->wb, &e);
        free(e);
        tsr_buf_free(&lo);
        tsr_buf_free(&hi);
    }
    upload_free(u);
}

/* ---- streaming */

int64_t tsr_tile_store_offset(tsr_tile_store_t *s, const char *gb, const char *offset_name) {
    tsr_buf_t k;
    tsr_buf_init(&k);
    key_prefix(&k, 'm', gb);
    tsr_buf_putc(&k, 'o');
    tsr_buf_puts(&k, offset_name);
    int64_t v;
    int rc = get_i64_value(s, &k, &v);
    tsr_buf_free(&k);
    return rc ? -1 : v;
}

/* The tiles one stream batch touches, combined in memory: an open-addressing table from the
 * tile's full RocksDB key to one IR per column. A batch then writes one merge operand per
 * distinct tile instead of three per event. */
typedef struct combo {
    size_t koff, klen;          /* key bytes in keys; klen 0 = empty slot */
    void **irs;
} combo_t;

typedef struct combiner {
    combo_t *slots;
    size_t cap, n;
    tsr_buf_t keys;
} combiner_t;

static void combiner_init(combiner_t *c, size_t events) {
    c->cap = 64;
    while (c->cap < 4 * events) c->cap *= 2;
    c->slots = tsr_calloc(c->cap, sizeof(combo_t));
    c->n = 0;
    tsr_buf_init(&c->keys);
}

static void **combiner_get(combiner_t *c, const gb_entry_t *g, const uint8_t *k, size_t kl) {
    uint64_t h = tsr_hash_bytes(k, kl, 0x7113);
    size_t i = (size_t)h & (c->cap - 1);
    for (;; i = (i + 1) & (c->cap - 1)) {
        combo_t *e = &c->slots[i];
        if (e->klen == 0) {
            e->koff = c->keys.len;
            e->klen = kl;
            tsr_buf_append(&c->keys, k, kl);
            e->irs = tsr_calloc(g->ncols ? g->ncols : 1, sizeof(void *));
            for (size_t col = 0; col < g->ncols; col++) e->irs[col] = ir_new(g->cols[col].agg);
            c->n++;
            return e->irs;
        }
        if (e->klen == kl && memcmp(c->keys.data + e->koff, k, kl) == 0) return e->irs;
    }
}

static void combiner_free(combiner_t *c, const gb_entry_t *g) {
    for (size_t i = 0; i < c->cap; i++)
        if (c->slots[i].klen) {
            irs_free(g, c->slots[i].irs);
            free(c->slots[i].irs);
        }
    free(c->slots);
    tsr_buf_free(&c->keys);
}

int tsr_tile_store_apply(tsr_tile_store_t *s, const char *gb, const tsr_tile_event_t *ev,
                         size_t n, const char *offset_name, int64_t next_offset,
                         uint64_t *skipped, tsr_error_t *err) {
    gb_entry_t *g = lookup(s, gb, err);
    if (!g) return TSR_ENOTFOUND;
    int64_t b = __atomic_load_n(&g->batch_end, __ATOMIC_ACQUIRE);
    rocksdb_writebatch_t *wb = rocksdb_writebatch_create();
    tsr_buf_t k, v;
    tsr_buf_init(&k);
    tsr_buf_init(&v);
    combiner_t cb;
    combiner_init(&cb, 3 * n);
    uint64_t skip = 0;
    int rc = 0;
    static const int64_t lens[] = {TSR_TILE_5M, TSR_TILE_1H, TSR_TILE_1D};
    const tsr_value_t nul = tsr_value_null();
    for (size_t i = 0; i < n && rc == 0; i++) {
        const tsr_tile_event_t *e = &ev[i];
        if (e->ts < b) {
            skip++;
            continue;
        }
        if (e->klen > 0xffff) {
            rc = tsr_error_set(err, TSR_EINVAL, "key longer than 65535 bytes");
            break;
        }
        for (size_t l = 0; l < 3; l++) {
            key_prefix(&k, 't', gb);
            put_key(&k, e->key, e->klen);
            tsr_buf_putc(&k, len_code(lens[l]));
            put_i64(&k, tsr_floor_div(e->ts, lens[l]) * lens[l]);
            void **irs = combiner_get(&cb, g, k.data, k.len);
            for (size_t c = 0; c < g->ncols; c++) {
                /* a bucketed column passes its bucket (the kernel skips a null one) */
                const tsr_value_t *bk = g->cols[c].bucket_slot < 0 ? NULL : e->buckets ? &e->buckets[c] : &nul;
                tsr_agg_update(g->cols[c].agg, irs[c], &e->inputs[c], bk, e->ts, e->seq);
            }
        }
        /* the raw event: inputs and buckets per column */
        key_prefix(&k, 'r', gb);
        put_key(&k, e->key, e->klen);
        put_i64(&k, e->ts);
        put_be64(&k, e->seq);
        tsr_buf_clear(&v);
        for (size_t c = 0; c < g->ncols; c++) {
            tsr_value_encode(&e->inputs[c], &v);
            tsr_value_encode(e->buckets ? &e->buckets[c] : &nul, &v);
        }
        rocksdb_writebatch_put(wb, (const char *)k.data, k.len, (const char *)v.data, v.len);
    }
    for (size_t i = 0; i < cb.cap && rc == 0; i++) {
        const combo_t *e = &cb.slots[i];
        if (!e->klen) continue;
        tsr_buf_clear(&v);
        encode_tile(g, (const void *const *)e->irs, &v);
        rocksdb_writebatch_merge(wb, (const char *)cb.keys.data + e->koff, e->klen,
                                 (const char *)v.data, v.len);
    }
    if (rc == 0 && offset_name) {
        key_prefix(&k, 'm', gb);
        tsr_buf_putc(&k, 'o');
        tsr_buf_puts(&k, offset_name);
        tsr_buf_clear(&v);
        put_i64(&v, next_offset);
        rocksdb_writebatch_put(wb, (const char *)k.data, k.len, (const char *)v.data, v.len);
    }
    if (rc == 0) {
        char *e = NULL;
        rocksdb_write(s->db, s->wo, wb, &e);
        if (e) {
            rc = tsr_error_set(err, TSR_EIO, "stream write: %s", e);
            free(e);
        }
    }
    combiner_free(&cb, g);
    rocksdb_writebatch_destroy(wb);
    tsr_buf_free(&k);
    tsr_buf_free(&v);
    if (skipped) *skipped += skip;
    return rc;
}

void tsr_tile_store_compact(tsr_tile_store_t *s) { rocksdb_compact_range(s->db, NULL, 0, NULL, 0); }

/* ---- reads */

typedef struct win_acc {
    size_t col;
    int64_t w, s;               /* window and its start at q */
    int64_t from;               /* stream part starts here: max(s, B) (B for lifetime) */
    tsr_tile_span_t cover[96];  /* stream tiles of [from, head) */
    size_t ncover;
    void *ir;
    unsigned char want;         /* scratch: the record being read is wanted */
    unsigned char batch_done;   /* its batch suffix record has been merged */
} win_acc_t;

static int in_cover(const win_acc_t *w, int64_t start, int64_t len) {
    size_t lo = 0, hi = w->ncover;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (w->cover[mid].start < start) lo = mid + 1;
        else hi = mid;
    }
    return lo < w->ncover && w->cover[lo].start == start && w->cover[lo].len == len;
}

/* Iterates keys in [lo, hi) and calls fn for each. */
/* Calls fn for each key in [lo, hi), with one iterator shared by all of a read's scans (a
 * RocksDB iterator costs more to create than a few seeks): the bound is checked here. */
static int scan(rocksdb_iterator_t *it, const tsr_buf_t *lo, const tsr_buf_t *hi,
                int (*fn)(void *, const uint8_t *, size_t, const uint8_t *, size_t), void *ud) {
    int rc = 0;
    for (rocksdb_iter_seek(it, (const char *)lo->data, lo->len); rocksdb_iter_valid(it) && rc == 0;
         rocksdb_iter_next(it)) {
        size_t kl, vl;
        const char *k = rocksdb_iter_key(it, &kl);
        size_t m = kl < hi->len ? kl : hi->len;
        int c = memcmp(k, hi->data, m);
        if (c > 0 || (c == 0 && kl >= hi->len)) break; /* k >= hi */
        const char *v = rocksdb_iter_value(it, &vl);
        rc = fn(ud, (const uint8_t *)k, kl, (const uint8_t *)v, vl);
    }
    char *e = NULL;
    rocksdb_iter_get_error(it, &e);
    if (e) {
        free(e);
        rc = TSR_EIO;
    }
    return rc;
}

typedef struct read_ctx {
    gb_entry_t *g;
    win_acc_t *acc;
    size_t nacc;
    size_t plen;                /* bytes of the key prefix before kind/len/ts */
    int64_t b, head, q;
    void **tmp;                 /* per column scratch IRs */
    tsr_arena_t *arena;
} read_ctx_t;

/* Merges a tile value into every window accumulator that wants it. */
static int apply_tile(read_ctx_t *rc, const uint8_t *v, size_t vl, int kind_batch, int64_t start,
                      int64_t len) {
    gb_entry_t *g = rc->g;
    /* which windows want this record; decode it only if any does */
    int any = 0;
    for (size_t i = 0; i < rc->nacc; i++) {
        win_acc_t *w = &rc->acc[i];
        int want;
        if (kind_batch == TSR_TILE_LIFETIME) want = w->w == 0;
        else if (kind_batch > 0) /* the first suffix record at or after s holds [s, B) */
            want = !w->batch_done && w->w != 0 && tsr_window_hop(w->w) == len && start >= w->s &&
                   start < rc->b;
        else want = in_cover(w, start, len);
        if (want && kind_batch > 0) w->batch_done = 1;
        w->want = (unsigned char)want;
        any |= want;
    }
    if (!any) return 0;
    for (size_t c = 0; c < g->ncols; c++) {
        tsr_agg_clear(g->cols[c].agg, rc->tmp[c]);
        tsr_agg_init(g->cols[c].agg, rc->tmp[c]);
    }
    if (merge_tile(g, rc->tmp, v, vl)) return TSR_ECORRUPT;
    for (size_t i = 0; i < rc->nacc; i++)
        if (rc->acc[i].want) tsr_agg_merge(g->cols[rc->acc[i].col].agg, rc->acc[i].ir, rc->tmp[rc->acc[i].col]);
    return 0;
}

static int on_batch(void *ud, const uint8_t *k, size_t kl, const uint8_t *v, size_t vl) {
    read_ctx_t *rc = ud;
    if (kl != rc->plen + 9) return TSR_ECORRUPT;
    int kind = k[rc->plen];
    int64_t start = get_i64(k + rc->plen + 1);
    int64_t len = kind == TSR_TILE_TAIL_5M ? TSR_TILE_5M : kind == TSR_TILE_TAIL_1H ? TSR_TILE_1H : TSR_TILE_1D;
    if (kind > TSR_TILE_TAIL_1D) return TSR_ECORRUPT;
    return apply_tile(rc, v, vl, kind == TSR_TILE_LIFETIME ? 0 : kind, start, len);
}

static int on_stream(void *ud, const uint8_t *k, size_t kl, const uint8_t *v, size_t vl) {
    read_ctx_t *rc = ud;
    if (kl != rc->plen + 9) return TSR_ECORRUPT;
    int code = k[rc->plen];
    int64_t start = get_i64(k + rc->plen + 1);
    if (code < 1 || code > 3) return TSR_ECORRUPT;
    return apply_tile(rc, v, vl, -1, start, code_len(code));
}

static int on_raw(void *ud, const uint8_t *k, size_t kl, const uint8_t *v, size_t vl) {
    read_ctx_t *rc = ud;
    if (kl != rc->plen + 16) return TSR_ECORRUPT;
    int64_t ts = get_i64(k + rc->plen);
    uint64_t seq = get_be64(k + rc->plen + 8);
    if (ts >= rc->q) return 0;
    gb_entry_t *g = rc->g;
    tsr_reader_t r;
    tsr_reader_init(&r, v, vl);
    for (size_t c = 0; c < g->ncols; c++) {
        tsr_value_t in, bk;
        if (tsr_value_decode(&r, rc->arena, &in) || tsr_value_decode(&r, rc->arena, &bk))
            return TSR_ECORRUPT;
        for (size_t i = 0; i < rc->nacc; i++) {
            win_acc_t *w = &rc->acc[i];
            if (w->col != c || ts < w->from) continue;
            const tsr_agg_t *a = g->cols[c].agg;
            tsr_agg_update(a, w->ir, &in, g->cols[c].bucket_slot >= 0 ? &bk : NULL, ts, seq);
        }
    }
    return 0;
}

int tsr_tile_store_read(tsr_tile_store_t *s, const char *gb, const void *key, size_t klen,
                        int64_t q, tsr_value_t *out, tsr_arena_t *arena, tsr_error_t *err) {
    gb_entry_t *g = lookup(s, gb, err);
    if (!g) return TSR_ENOTFOUND;
    if (klen > 0xffff) return tsr_error_set(err, TSR_EINVAL, "key longer than 65535 bytes");
    int64_t b = __atomic_load_n(&g->batch_end, __ATOMIC_ACQUIRE);
    if (b != INT64_MIN && q < b)
        return tsr_error_set(err, TSR_EINVAL, "at_millis %lld is before the uploaded batch end %lld",
                             (long long)q, (long long)b);
    size_t nacc = 0;
    for (size_t c = 0; c < g->ncols; c++) nacc += g->cols[c].nwin;
    win_acc_t *acc = tsr_malloc((nacc ? nacc : 1) * sizeof(win_acc_t));
    /* every IR of this read (one per window, one scratch per column) in one block */
    size_t irtot = 0;
    for (size_t c = 0; c < g->ncols; c++)
        irtot += (g->cols[c].nwin + 1) * tsr_agg_ir_size(g->cols[c].agg);
    uint8_t *irmem = tsr_malloc(irtot ? irtot : 1), *irp = irmem;
    int64_t head = tsr_floor_div(q, TSR_TILE_5M) * TSR_TILE_5M;
    int64_t floor_b = b == INT64_MIN ? INT64_MIN : b;
    size_t i = 0;
    int rc = 0;
    for (size_t c = 0; c < g->ncols; c++)
        for (size_t wi = 0; wi < g->cols[c].nwin; wi++, i++) {
            win_acc_t *w = &acc[i];
            w->col = c;
            w->w = g->cols[c].windows[wi];
            w->s = w->w ? tsr_window_start(q, w->w) : INT64_MIN;
            w->from = w->s > floor_b ? w->s : floor_b;
            w->ir = irp;
            irp += tsr_agg_ir_size(g->cols[c].agg);
            tsr_agg_init(g->cols[c].agg, w->ir);
            w->ncover = 0;
            w->want = 0;
            w->batch_done = 0;
            if (w->from == INT64_MIN) {
                /* no upload: the stream is all there is; cover from its first day */
                w->from = INT64_MIN;
                w->ncover = 0;
            } else if (w->from < head) {
                w->ncover = tsr_tile_cover(w->from, head, w->cover, 96);
                if (w->ncover > 96) rc = tsr_error_set(err, TSR_EINTERNAL, "window cover too long");
            }
        }
    void **tmp = tsr_malloc((g->ncols ? g->ncols : 1) * sizeof(void *));
    for (size_t c = 0; c < g->ncols; c++) {
        tmp[c] = irp;
        irp += tsr_agg_ir_size(g->cols[c].agg);
        tsr_agg_init(g->cols[c].agg, tmp[c]);
    }
    read_ctx_t ctx = {g, acc, nacc, 0, b, head, q, tmp, arena};
    rocksdb_iterator_t *it = rocksdb_create_iterator(s->db, s->ro);
    tsr_buf_t lo, hi;
    tsr_buf_init(&lo);
    tsr_buf_init(&hi);
    if (rc == 0 && b != INT64_MIN) { /* 1. batch records of the key */
        key_prefix(&lo, 'b', gb);
        put_i64(&lo, b);
        put_key(&lo, key, klen);
        ctx.plen = lo.len;
        tsr_buf_clear(&hi);
        tsr_buf_append(&hi, lo.data, lo.len);
        tsr_buf_putc(&hi, 0xff);
        rc = scan(it, &lo, &hi, on_batch, &ctx);
    }
    if (rc == 0 && b != INT64_MIN) {
        /* 2. stream tiles of the key: per tile length, only from the earliest start any
         * window's cover uses up to head (without an upload every window reads raw events) */
        int64_t first[4] = {INT64_MAX, INT64_MAX, INT64_MAX, INT64_MAX};
        for (i = 0; i < nacc; i++)
            for (size_t t = 0; t < acc[i].ncover; t++) {
                int code = len_code(acc[i].cover[t].len);
                if (acc[i].cover[t].start < first[code]) first[code] = acc[i].cover[t].start;
            }
        for (int code = 1; code <= 3 && rc == 0; code++) {
            if (first[code] == INT64_MAX) continue;
            key_prefix(&lo, 't', gb);
            put_key(&lo, key, klen);
            ctx.plen = lo.len;
            tsr_buf_putc(&lo, code);
            tsr_buf_clear(&hi);
            tsr_buf_append(&hi, lo.data, lo.len);
            put_i64(&lo, first[code]);
            put_i64(&hi, head);
            rc = scan(it, &lo, &hi, on_stream, &ctx);
        }
    }
    if (rc == 0) { /* 3. raw events of q's 5-minute tile (everything, without an upload) */
        key_prefix(&lo, 'r', gb);
        put_key(&lo, key, klen);
        ctx.plen = lo.len;
        tsr_buf_clear(&hi);
        tsr_buf_append(&hi, lo.data, lo.len);
        put_i64(&hi, q);
        if (b != INT64_MIN) put_i64(&lo, head);
        else put_i64(&lo, INT64_MIN);
        rc = scan(it, &lo, &hi, on_raw, &ctx);
    }
    rocksdb_iter_destroy(it);
    for (i = 0; i < nacc; i++) {
        const tsr_agg_t *a = g->cols[acc[i].col].agg;
        if (rc == 0) out[i] = tsr_agg_finalize(a, acc[i].ir, arena);
        tsr_agg_clear(a, acc[i].ir);
    }
    for (size_t c = 0; c < g->ncols; c++) tsr_agg_clear(g->cols[c].agg, tmp[c]);
    free(tmp);
    free(irmem);
    free(acc);
    tsr_buf_free(&lo);
    tsr_buf_free(&hi);
    if (rc && err && err->code == 0) tsr_error_set(err, rc, "tile store read of %s failed", gb);
    return rc;
}
