/*
 * entity_store.c — entity GroupBy values on RocksDB (entity_store.h).
 */
#include "tsr/entity_store.h"
#include "tsr/time.h"

#include <pthread.h>
#include <rocksdb/c.h>
#include <stdlib.h>
#include <string.h>

#define WRITE_BATCH_BYTES (4u << 20)

typedef struct version {
    char *gb;
    int64_t b;                      /* its version id: B, or B + 1 ms (see tsr_ver_day) */
} version_t;

struct tsr_entity_store {
    rocksdb_t *db;
    rocksdb_options_t *opts;
    rocksdb_writeoptions_t *wo;
    rocksdb_readoptions_t *ro;
    pthread_rwlock_t lock;          /* versions */
    version_t *v;
    size_t n, cap;
};

struct tsr_entity_upload {
    tsr_entity_store_t *s;
    char *gb;
    int64_t b;                      /* the version id its records are written under */
    rocksdb_writebatch_t *wb;
    tsr_buf_t k;
};

static void put_i64(tsr_buf_t *b, int64_t v) {
    uint64_t u = (uint64_t)v ^ (1ULL << 63);
    uint8_t x[8];
    for (int i = 0; i < 8; i++) x[i] = (uint8_t)(u >> (56 - 8 * i));
    tsr_buf_append(b, x, 8);
}

static int64_t get_i64(const uint8_t *x) {
    uint64_t u = 0;
    for (int i = 0; i < 8; i++) u = (u << 8) | x[i];
    return (int64_t)(u ^ (1ULL << 63));
}

static void prefix(tsr_buf_t *k, char tag, const char *gb) {
    tsr_buf_clear(k);
    tsr_buf_putc(k, tag);
    tsr_buf_append(k, gb, strlen(gb) + 1);
}

static int db_error(tsr_error_t *err, char *e, const char *what) {
    int rc = tsr_error_set(err, TSR_EIO, "entity store: %s: %s", what, e);
    free(e);
    return rc;
}

int tsr_entity_store_open(const char *dir, tsr_entity_store_t **out, tsr_error_t *err) {
    *out = NULL;
    tsr_entity_store_t *s = tsr_calloc(1, sizeof(*s));
    s->opts = rocksdb_options_create();
    rocksdb_options_set_create_if_missing(s->opts, 1);
    rocksdb_options_set_compression(s->opts, rocksdb_lz4_compression);
    char *e = NULL;
    s->db = rocksdb_open(s->opts, dir, &e);
    if (e) {
        rocksdb_options_destroy(s->opts);
        free(s);
        return db_error(err, e, dir);
    }
    s->wo = rocksdb_writeoptions_create();
    s->ro = rocksdb_readoptions_create();
    pthread_rwlock_init(&s->lock, NULL);
    /* current versions */
    rocksdb_iterator_t *it = rocksdb_create_iterator(s->db, s->ro);
    for (rocksdb_iter_seek(it, "m", 1); rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
        size_t kl, vl;
        const char *k = rocksdb_iter_key(it, &kl);
        const char *v = rocksdb_iter_value(it, &vl);
        if (kl < 2 || k[0] != 'm') break;
        if (vl != 8 || k[kl - 1] != 0) continue;
        if (s->n == s->cap) {
            s->cap = s->cap ? 2 * s->cap : 16;
            s->v = tsr_realloc(s->v, s->cap * sizeof(*s->v));
        }
        s->v[s->n].gb = tsr_strndup(k + 1, kl - 2);
        s->v[s->n].b = get_i64((const uint8_t *)v);
        s->n++;
    }
    rocksdb_iter_destroy(it);
    *out = s;
    return 0;
}

void tsr_entity_store_close(tsr_entity_store_t *s) {
    if (!s) return;
    rocksdb_close(s->db);
    rocksdb_writeoptions_destroy(s->wo);
    rocksdb_readoptions_destroy(s->ro);
    rocksdb_options_destroy(s->opts);
    for (size_t i = 0; i < s->n; i++) free(s->v[i].gb);
    free(s->v);
    pthread_rwlock_destroy(&s->lock);
    free(s);
}

/* The served version id of gb, or INT64_MIN. */
static int64_t served_ver(tsr_entity_store_t *s, const char *gb) {
    int64_t b = INT64_MIN;
    pthread_rwlock_rdlock(&s->lock);
    for (size_t i = 0; i < s->n; i++)
        if (strcmp(s->v[i].gb, gb) == 0) b = s->v[i].b;
    pthread_rwlock_unlock(&s->lock);
    return b;
}

int64_t tsr_entity_store_batch_end(tsr_entity_store_t *s, const char *gb) {
    return tsr_ver_day(served_ver(s, gb));
}

static void range_of(tsr_buf_t *lo, tsr_buf_t *hi, const char *gb, int64_t b);

static int upload_begin(tsr_entity_store_t *s, const char *gb, int64_t batch_end, int add,
                        tsr_entity_upload_t **out, tsr_error_t *err) {
    *out = NULL;
    if (tsr_ver_day(batch_end) != batch_end)
        return tsr_error_set(err, TSR_EINVAL, "upload version %lld is not a midnight", (long long)batch_end);
    tsr_entity_upload_t *u = tsr_calloc(1, sizeof(*u));
    u->s = s;
    u->gb = tsr_strdup(gb);
    u->wb = rocksdb_writebatch_create();
    tsr_buf_init(&u->k);
    int64_t cur = served_ver(s, gb);
    if (add && batch_end == tsr_ver_day(cur)) {
        u->b = cur; /* in place */
        *out = u;
        return 0;
    }
    /* an id nobody reads until the commit: B, or B's other id when B is served */
    u->b = batch_end == tsr_ver_day(cur) && cur == batch_end ? batch_end + 1 : batch_end;
    /* a leftover of a crashed upload under that id is dropped first (only when there is
     * one: a range deletion costs every later read of its table file a seek) */
    tsr_buf_t lo, hi;
    tsr_buf_init(&lo);
    tsr_buf_init(&hi);
    range_of(&lo, &hi, gb, u->b);
    rocksdb_iterator_t *it = rocksdb_create_iterator(s->db, s->ro);
    rocksdb_iter_seek(it, (const char *)lo.data, lo.len);
    int any = 0;
    if (rocksdb_iter_valid(it)) {
        size_t kl;
        const char *k = rocksdb_iter_key(it, &kl);
        size_t m = kl < hi.len ? kl : hi.len;
        int c = memcmp(k, hi.data, m);
        any = c < 0 || (c == 0 && kl < hi.len);
    }
    rocksdb_iter_destroy(it);
    if (any)
        rocksdb_writebatch_delete_range(u->wb, (const char *)lo.data, lo.len, (const char *)hi.data, hi.len);
    tsr_buf_free(&lo);
    tsr_buf_free(&hi);
    *out = u;
    return 0;
}

int tsr_entity_upload_begin(tsr_entity_store_t *s, const char *gb, int64_t batch_end,
                            tsr_entity_upload_t **out, tsr_error_t *err) {
    return upload_begin(s, gb, batch_end, 0, out, err);
}

int tsr_entity_upload_begin_add(tsr_entity_store_t *s, const char *gb, int64_t batch_end,
                                tsr_entity_upload_t **out, tsr_error_t *err) {
    return upload_begin(s, gb, batch_end, 1, out, err);
}

static int flush(tsr_entity_upload_t *u, tsr_error_t *err) {
    char *e = NULL;
    rocksdb_write(u->s->db, u->s->wo, u->wb, &e);
    rocksdb_writebatch_clear(u->wb);
    return e ? db_error(err, e, "upload write") : 0;
}

int tsr_entity_upload_put(tsr_entity_upload_t *u, const void *key, size_t klen, const void *val,
                          size_t vlen, tsr_error_t *err) {
    prefix(&u->k, 'v', u->gb);
    put_i64(&u->k, u->b);
    tsr_buf_append(&u->k, key, klen);
    rocksdb_writebatch_put(u->wb, (const char *)u->k.data, u->k.len, val, vlen);
    size_t sz;
    rocksdb_writebatch_data(u->wb, &sz);
    return sz >= WRITE_BATCH_BYTES ? flush(u, err) : 0;
}

static void range_of(tsr_buf_t *lo, tsr_buf_t *hi, const char *gb, int64_t b) {
    prefix(lo, 'v', gb);
    put_i64(lo, b);
    prefix(hi, 'v', gb);
    put_i64(hi, b + 1);
}

static void upload_free(tsr_entity_upload_t *u) {
    rocksdb_writebatch_destroy(u->wb);
    tsr_buf_free(&u->k);
    free(u->gb);
    free(u);
}

int tsr_entity_upload_commit(tsr_entity_upload_t *u, tsr_error_t *err) {
    tsr_entity_store_t *s = u->s;
    int rc = flush(u, err);
    int64_t old = served_ver(s, u->gb);
    if (rc == 0) {
        prefix(&u->k, 'm', u->gb);
        tsr_buf_t v;
        tsr_buf_init(&v);
        put_i64(&v, u->b);
        rocksdb_writebatch_put(u->wb, (const char *)u->k.data, u->k.len, (const char *)v.data, v.len);
        tsr_buf_free(&v);
        rc = flush(u, err);
    }
    if (rc == 0) {
        pthread_rwlock_wrlock(&s->lock);
        size_t i = 0;
        while (i < s->n && strcmp(s->v[i].gb, u->gb) != 0) i++;
        if (i == s->n) {
            if (s->n == s->cap) {
                s->cap = s->cap ? 2 * s->cap : 16;
                s->v = tsr_realloc(s->v, s->cap * sizeof(*s->v));
            }
            s->v[s->n].gb = tsr_strdup(u->gb);
            s->n++;
        }
        s->v[i].b = u->b;
        pthread_rwlock_unlock(&s->lock);
        if (old != INT64_MIN && old != u->b) {
            tsr_buf_t lo, hi;
            tsr_buf_init(&lo);
            tsr_buf_init(&hi);
            range_of(&lo, &hi, u->gb, old);
            rocksdb_writebatch_delete_range(u->wb, (const char *)lo.data, lo.len, (const char *)hi.data, hi.len);
            tsr_buf_free(&lo);
            tsr_buf_free(&hi);
            flush(u, NULL); /* best effort: an old version left behind is never read */
        }
    } else {
        tsr_entity_upload_abort(u);
        return rc;
    }
    upload_free(u);
    return rc;
}

void tsr_entity_upload_abort(tsr_entity_upload_t *u) {
    if (!u) return;
    rocksdb_writebatch_clear(u->wb);
    if (u->b != served_ver(u->s, u->gb)) {
        tsr_buf_t lo, hi;
        tsr_buf_init(&lo);
        tsr_buf_init(&hi);
        range_of(&lo, &hi, u->gb, u->b);
        rocksdb_writebatch_delete_range(u->wb, (const char *)lo.data, lo.len, (const char *)hi.data, hi.len);
        tsr_buf_free(&lo);
        tsr_buf_free(&hi);
        flush(u, NULL);
    }
    upload_free(u);
}

static int get_ver(tsr_entity_store_t *s, const char *gb, int64_t b, const void *key, size_t klen,
                   tsr_buf_t *out, tsr_error_t *err);

int tsr_entity_store_get(tsr_entity_store_t *s, const char *gb, const void *key, size_t klen,
                         tsr_buf_t *out, tsr_error_t *err) {
    /* not found while a commit moved the version on: its deletion of the old version may
     * have taken the record (the commit switches the id before it deletes); again with the
     * new id (a few times: commits back to back, as in the test, can move it again) */
    int64_t b = served_ver(s, gb);
    for (int tries = 0;; tries++) {
        int rc = get_ver(s, gb, b, key, klen, out, err);
        if (rc != 0) return rc;
        int64_t now = served_ver(s, gb);
        if (now == b || tries == 4) return 0;
        b = now;
    }
}

static int get_ver(tsr_entity_store_t *s, const char *gb, int64_t b, const void *key, size_t klen,
                   tsr_buf_t *out, tsr_error_t *err) {
    tsr_buf_clear(out);
    if (b == INT64_MIN) return 0;
    uint8_t kb[512];
    tsr_buf_t k;
    size_t gl = strlen(gb);
    size_t need = 1 + gl + 1 + 8 + klen;
    char *e = NULL;
    size_t vl = 0;
    char *v;
    if (need <= sizeof kb) {
        kb[0] = 'v';
        memcpy(kb + 1, gb, gl + 1);
        uint64_t u = (uint64_t)b ^ (1ULL << 63);
        for (int i = 0; i < 8; i++) kb[2 + gl + i] = (uint8_t)(u >> (56 - 8 * i));
        memcpy(kb + 10 + gl, key, klen);
        v = rocksdb_get(s->db, s->ro, (const char *)kb, need, &vl, &e);
    } else {
        tsr_buf_init(&k);
        prefix(&k, 'v', gb);
        put_i64(&k, b);
        tsr_buf_append(&k, key, klen);
        v = rocksdb_get(s->db, s->ro, (const char *)k.data, k.len, &vl, &e);
        tsr_buf_free(&k);
    }
    if (e) return db_error(err, e, "get");
    if (!v) return 0;
    tsr_buf_append(out, v, vl);
    rocksdb_free(v);
    return 1;
}
