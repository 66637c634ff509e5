/*
 * serving.c — compiled serving items and the fetch handlers (serving.h).
 *
 * Reads go through a reader_t (a tsr_tile_read_fn and its ud): the caller's single read, or,
 * for batched serving, the collecting read of pass 1 and the replaying read of pass 2
 * (batch_t). Only readers with count = 1 add to the stats, so a request counts once.
 *
 * gRPC responses are encoded directly (resp_encode, tsr_pb_value_write): the rows' feature
 * names and values are written as the bytes protobuf-c would pack for the FetchResponse, in
 * two passes (sizes, then bytes into one reservation), instead of building a protobuf-c
 * message per feature (a 100-entity Join answer is 9,000 map entries and Value messages).
 */
#include "tsr/serving.h"

#include <pthread.h>
#include <sys/prctl.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tessera.pb-c.h"
#include "tsr/pbvalue.h"

#define POOL_MAX 64

struct tsr_serving_item {
    char *name;
    tsr_config_t *conf;
    int kind;                       /* TSR_CONF_* */
    tsr_join_online_t *join;
    tsr_gb_serve_t *gb;
    size_t nout;
    const char **out_names;         /* outputs, then (Join) one "<part>_exception" per part */
    size_t nparts;
    size_t nreads;                  /* GroupBys read: names and base feature counts */
    const char **read_gb;
    size_t *read_nfeat;
    int refs;                       /* atomic */
    pthread_mutex_t mu;             /* pool */
    void *pool[POOL_MAX];
    size_t npool;
};

#define HELP_MIN_ROWS 16

/* One row of a FetchResponse, encoded directly at the end (resp_encode): no protobuf-c message
 * per feature (a 100-entity Join answer is 9,000 features). */
typedef struct row_out {
    const Tessera__V1__FetchRow *row;   /* its keys are echoed */
    int failed;
    const char *error;
    size_t n;                           /* features */
    const char *const *names;
    const tsr_value_t *vals;
    size_t size;                        /* encoded FetchResult body (resp_encode) */
} row_out_t;

typedef struct help_job {
    tsr_serving_item_t *it;
    const Tessera__V1__FetchRequest *rq;
    size_t lo, hi;
    int64_t now, deadline;
    row_out_t *results;
    int done, rc;
    tsr_error_t err;
} help_job_t;

struct tsr_serving {
    tsr_tile_read_fn read;
    void *read_ud;
    tsr_tile_read_many_fn many;     /* batched serving, or NULL */
    void *many_ud;
    /* the helper thread (tsr_serving_set_helper) */
    int helper_on;
    pthread_t helper;
    pthread_mutex_t h_mu;
    pthread_cond_t h_cv, h_done_cv;
    help_job_t *h_job;              /* handed over, not yet taken */
    int h_busy;                     /* a request owns the helper (and its arena) */
    int h_stop;
    tsr_arena_t h_arena;
    pthread_rwlock_t lock;
    tsr_serving_item_t **items;     /* sorted by name */
    size_t n, cap;
    tsr_serving_stats_t st;
};

static int64_t now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

/* ---------------------------------------------------------------- items */

static void item_free(tsr_serving_item_t *it) {
    for (size_t i = 0; i < it->npool; i++) {
        if (it->join) tsr_join_online_ctx_free(it->pool[i]);
        else tsr_gb_serve_ctx_free(it->pool[i]);
    }
    for (size_t i = 0; i < it->nparts; i++) free((char *)it->out_names[it->nout + i]);
    free(it->out_names);
    free(it->read_gb);
    free(it->read_nfeat);
    tsr_join_online_free(it->join);
    tsr_gb_serve_free(it->gb);
    tsr_config_free(it->conf);
    pthread_mutex_destroy(&it->mu);
    free(it->name);
    free(it);
}

static void item_unref(tsr_serving_item_t *it) {
    if (it && __atomic_sub_fetch(&it->refs, 1, __ATOMIC_ACQ_REL) == 0) item_free(it);
}

void tsr_serving_item_discard(tsr_serving_item_t *it) { item_unref(it); }

int tsr_serving_prepare(tsr_config_t *conf, const char *warehouse, int64_t day_hi,
                        tsr_serving_item_t **out, tsr_error_t *err) {
    *out = NULL;
    tsr_serving_item_t *it = tsr_calloc(1, sizeof(*it));
    pthread_mutex_init(&it->mu, NULL);
    it->refs = 1;
    it->conf = conf;
    it->kind = conf->kind;
    it->name = tsr_strdup(tsr_config_metadata(conf)->name);
    int rc = 0;
    if (conf->kind == TSR_CONF_JOIN) {
        rc = tsr_join_online_build(conf->join, warehouse, day_hi, &it->join, err);
        if (rc == 0) {
            it->nout = tsr_join_online_noutputs(it->join);
            it->nparts = tsr_join_online_nparts(it->join);
            it->out_names = tsr_calloc(it->nout + it->nparts + 1, sizeof(char *));
            for (size_t i = 0; i < it->nout; i++) it->out_names[i] = tsr_join_online_output(it->join, i);
            for (size_t i = 0; i < it->nparts; i++) {
                const char *pn = tsr_join_online_part_name(it->join, i);
                size_t n = strlen(pn) + sizeof "_exception";
                char *s = tsr_malloc(n);
                snprintf(s, n, "%s_exception", pn);
                it->out_names[it->nout + i] = s;
            }
            it->nreads = it->nparts;
            it->read_gb = tsr_calloc(it->nparts + 1, sizeof(char *));
            it->read_nfeat = tsr_calloc(it->nparts + 1, sizeof(size_t));
            for (size_t i = 0; i < it->nparts; i++) {
                it->read_gb[i] = tsr_join_online_part_group_by(it->join, i);
                it->read_nfeat[i] = tsr_join_online_part_nfeatures(it->join, i);
            }
        }
    } else if (conf->kind == TSR_CONF_GROUP_BY) {
        rc = tsr_gb_serve_build(conf->group_by, warehouse, day_hi, &it->gb, err);
        if (rc == 0) {
            it->nout = tsr_gb_serve_noutputs(it->gb);
            it->out_names = tsr_calloc(it->nout + 1, sizeof(char *));
            for (size_t i = 0; i < it->nout; i++) it->out_names[i] = tsr_gb_serve_output(it->gb, i);
            it->nreads = 1;
            it->read_gb = tsr_calloc(1, sizeof(char *));
            it->read_nfeat = tsr_calloc(1, sizeof(size_t));
            it->read_gb[0] = tsr_config_metadata(conf)->name;
            it->read_nfeat[0] = tsr_gb_serve_nfeatures(it->gb);
        }
    }
    if (rc) {
        tsr_error_prefix(err, "%s: cannot be served", it->name);
        item_free(it);
        return rc;
    }
    *out = it;
    return 0;
}

static void *ctx_get(tsr_serving_item_t *it) {
    void *c = NULL;
    pthread_mutex_lock(&it->mu);
    if (it->npool) c = it->pool[--it->npool];
    pthread_mutex_unlock(&it->mu);
    if (c) return c;
    return it->join ? (void *)tsr_join_online_ctx_new(it->join) : (void *)tsr_gb_serve_ctx_new(it->gb);
}

static void ctx_put(tsr_serving_item_t *it, void *c) {
    pthread_mutex_lock(&it->mu);
    if (it->npool < POOL_MAX) {
        it->pool[it->npool++] = c;
        c = NULL;
    }
    pthread_mutex_unlock(&it->mu);
    if (!c) return;
    if (it->join) tsr_join_online_ctx_free(c);
    else tsr_gb_serve_ctx_free(c);
}

/* ---------------------------------------------------------------- registry of items */

static tsr_serving_t *serving_new(void) {
    tsr_serving_t *s = tsr_calloc(1, sizeof(*s));
    pthread_rwlock_init(&s->lock, NULL);
    pthread_mutex_init(&s->h_mu, NULL);
    pthread_cond_init(&s->h_cv, NULL);
    pthread_cond_init(&s->h_done_cv, NULL);
    tsr_arena_init(&s->h_arena, 1 << 16);
    return s;
}

tsr_serving_t *tsr_serving_new(tsr_tile_read_fn read, void *read_ud) {
    tsr_serving_t *s = serving_new();
    s->read = read;
    s->read_ud = read_ud;
    return s;
}

tsr_serving_t *tsr_serving_new_many(tsr_tile_read_many_fn many, void *ud) {
    tsr_serving_t *s = serving_new();
    s->many = many;
    s->many_ud = ud;
    return s;
}

static void *helper_main(void *arg);

int tsr_serving_set_helper(tsr_serving_t *s, int on) {
    if (!on || s->helper_on || s->many) return 0; /* batched serving: one thread per request */
    if (pthread_create(&s->helper, NULL, helper_main, s) != 0) return TSR_EINTERNAL;
    s->helper_on = 1;
    return 0;
}

void tsr_serving_free(tsr_serving_t *s) {
    if (!s) return;
    if (s->helper_on) {
        pthread_mutex_lock(&s->h_mu);
        s->h_stop = 1;
        pthread_cond_broadcast(&s->h_cv);
        pthread_mutex_unlock(&s->h_mu);
        pthread_join(s->helper, NULL);
    }
    pthread_mutex_destroy(&s->h_mu);
    pthread_cond_destroy(&s->h_cv);
    pthread_cond_destroy(&s->h_done_cv);
    tsr_arena_free(&s->h_arena);
    for (size_t i = 0; i < s->n; i++) item_unref(s->items[i]);
    free(s->items);
    pthread_rwlock_destroy(&s->lock);
    free(s);
}

/* Index of name, or -(insertion point) - 1. */
static long find(const tsr_serving_t *s, const char *name) {
    size_t lo = 0, hi = s->n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int c = strcmp(s->items[mid]->name, name);
        if (c == 0) return (long)mid;
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return -(long)lo - 1;
}

void tsr_serving_install(tsr_serving_t *s, tsr_serving_item_t *it) {
    tsr_serving_item_t *old = NULL;
    pthread_rwlock_wrlock(&s->lock);
    long i = find(s, it->name);
    if (i >= 0) {
        old = s->items[i];
        s->items[i] = it;
    } else {
        size_t at = (size_t)(-i - 1);
        if (s->n == s->cap) {
            s->cap = s->cap ? 2 * s->cap : 16;
            s->items = tsr_realloc(s->items, s->cap * sizeof(*s->items));
        }
        memmove(s->items + at + 1, s->items + at, (s->n - at) * sizeof(*s->items));
        s->items[at] = it;
        s->n++;
    }
    pthread_rwlock_unlock(&s->lock);
    item_unref(old);
}

int tsr_serving_remove(tsr_serving_t *s, const char *name) {
    tsr_serving_item_t *old = NULL;
    pthread_rwlock_wrlock(&s->lock);
    long i = find(s, name);
    if (i >= 0) {
        old = s->items[i];
        memmove(s->items + i, s->items + i + 1, (s->n - (size_t)i - 1) * sizeof(*s->items));
        s->n--;
    }
    pthread_rwlock_unlock(&s->lock);
    if (!old) return TSR_ENOTFOUND;
    item_unref(old);
    return 0;
}

size_t tsr_serving_count(tsr_serving_t *s) {
    pthread_rwlock_rdlock(&s->lock);
    size_t n = s->n;
    pthread_rwlock_unlock(&s->lock);
    return n;
}

/* A referenced item of that name and kind, or NULL with err set. */
static tsr_serving_item_t *acquire(tsr_serving_t *s, int join, const char *name, tsr_error_t *err) {
    pthread_rwlock_rdlock(&s->lock);
    long i = find(s, name);
    tsr_serving_item_t *it = i >= 0 ? s->items[i] : NULL;
    if (it) __atomic_add_fetch(&it->refs, 1, __ATOMIC_ACQ_REL);
    pthread_rwlock_unlock(&s->lock);
    int want = join ? TSR_CONF_JOIN : TSR_CONF_GROUP_BY;
    if (!it) {
        tsr_error_set(err, TSR_ENOTFOUND, "no %s named '%s' is applied", join ? "Join" : "GroupBy", name);
        return NULL;
    }
    if (it->kind != want) {
        tsr_error_set(err, TSR_ENOTFOUND, "'%s' is a %s, not a %s%s", name, tsr_conf_kind_name(it->kind),
                      join ? "Join" : "GroupBy",
                      it->kind == TSR_CONF_GROUP_BY ? " (fetch it with FetchGroupBy / --group-by)"
                      : it->kind == TSR_CONF_JOIN   ? " (fetch it with FetchJoin / --join)"
                                                    : "");
        item_unref(it);
        return NULL;
    }
    return it;
}

void tsr_serving_stats(tsr_serving_t *s, tsr_serving_stats_t *out) {
    out->requests = __atomic_load_n(&s->st.requests, __ATOMIC_RELAXED);
    out->rows = __atomic_load_n(&s->st.rows, __ATOMIC_RELAXED);
    out->row_failures = __atomic_load_n(&s->st.row_failures, __ATOMIC_RELAXED);
    out->part_errors = __atomic_load_n(&s->st.part_errors, __ATOMIC_RELAXED);
}

/* ---------------------------------------------------------------- readers */

typedef struct reader {
    tsr_tile_read_fn fn;
    void *ud;
    int count;                      /* add to the stats (not in pass 1) */
} reader_t;

/* The reads of one request, for batched serving. */
typedef struct batch {
    const tsr_serving_item_t *it;
    tsr_tile_read_req_t *reqs;      /* in the request's arena */
    size_t n, cap;
    size_t next;                    /* pass 2: the next read to hand back */
} batch_t;

static size_t item_nfeat(const tsr_serving_item_t *it, const char *gb, int *found) {
    for (size_t i = 0; i < it->nreads; i++)
        if (it->read_gb[i] == gb || strcmp(it->read_gb[i], gb) == 0) {
            *found = 1;
            return it->read_nfeat[i];
        }
    *found = 0;
    return 0;
}

/* Pass 1: records the read (key copied: the plan reuses its key buffer) and answers nulls. */
static int collect_read(void *ud, const char *gb, const void *key, size_t klen, int64_t q,
                        tsr_value_t *out, tsr_arena_t *arena, tsr_error_t *err) {
    batch_t *b = ud;
    int found;
    size_t nout = item_nfeat(b->it, gb, &found);
    if (!found) return tsr_error_set(err, TSR_EINTERNAL, "internal error: %s is not read by this plan", gb);
    if (b->n == b->cap) {
        size_t cap = b->cap ? 2 * b->cap : 64;
        tsr_tile_read_req_t *v = tsr_arena_alloc(arena, cap * sizeof(*v));
        if (b->n) memcpy(v, b->reqs, b->n * sizeof(*v));
        b->reqs = v;
        b->cap = cap;
    }
    tsr_tile_read_req_t *r = &b->reqs[b->n++];
    memset(r, 0, sizeof *r);
    r->gb = gb;
    void *k = tsr_arena_alloc(arena, klen ? klen : 1);
    if (klen) memcpy(k, key, klen);
    r->key = k;
    r->klen = klen;
    r->q = q;
    r->nout = nout;
    r->out = tsr_arena_alloc(arena, (nout ? nout : 1) * sizeof(tsr_value_t));
    for (size_t f = 0; f < nout; f++) r->out[f] = out[f] = tsr_value_null();
    return 0;
}

/* Pass 2: hands back the answer of the same read of pass 1. */
static int replay_read(void *ud, const char *gb, const void *key, size_t klen, int64_t q,
                       tsr_value_t *out, tsr_arena_t *arena, tsr_error_t *err) {
    (void)arena;
    batch_t *b = ud;
    if (b->next >= b->n)
        return tsr_error_set(err, TSR_EINTERNAL, "internal error: read %zu of %s, but pass 1 collected %zu reads",
                             b->next + 1, gb, b->n);
    const tsr_tile_read_req_t *r = &b->reqs[b->next++];
    if (strcmp(r->gb, gb) != 0 || r->klen != klen || (klen && memcmp(r->key, key, klen) != 0) || r->q != q)
        return tsr_error_set(err, TSR_EINTERNAL,
                             "internal error: read %zu is of %s at %lld, pass 1 collected one of %s at %lld",
                             b->next, gb, (long long)q, r->gb, (long long)r->q);
    if (r->status)
        return tsr_error_set(err, r->status, "%s", r->error ? r->error : tsr_strerror(r->status));
    memcpy(out, r->out, r->nout * sizeof(*out));
    return 0;
}

static int64_t mono_ms(void);

/* One call to many for every collected read. A failure of the call fails every read it did not
 * answer; it never fails the request (the deadline check of pass 2 does, when it has passed). */
static void batch_run(tsr_serving_t *s, batch_t *b, int64_t deadline, tsr_arena_t *arena) {
    if (b->n == 0) return;
    int64_t timeout = INT64_MAX;
    if (deadline != INT64_MAX) {
        timeout = deadline - mono_ms();
        if (timeout < 0) timeout = 0;
    }
    tsr_error_t e;
    tsr_error_clear(&e);
    int rc = s->many(s->many_ud, b->reqs, b->n, timeout, arena, &e);
    if (rc == 0) return;
    const char *msg = tsr_arena_strdup(arena, e.msg[0] ? e.msg : tsr_strerror(rc));
    for (size_t i = 0; i < b->n; i++)
        if (!b->reqs[i].status) {
            b->reqs[i].status = rc;
            b->reqs[i].error = msg;
        }
}

/* ---------------------------------------------------------------- one row */

typedef struct row_res {
    int ok;
    const char *error;
    size_t n;                       /* features */
    const char *const *names;
    tsr_value_t *vals;
} row_res_t;

static void fetch_row(tsr_serving_t *s, tsr_serving_item_t *it, void *ctx, const reader_t *rd,
                      const char *const *names, const tsr_value_t *keys, size_t nk, int64_t q,
                      row_res_t *r, tsr_arena_t *arena) {
    memset(r, 0, sizeof *r);
    r->names = it->out_names;
    if (it->join) {
        r->vals = tsr_arena_alloc(arena, (it->nout + it->nparts + 1) * sizeof(tsr_value_t));
        const char **perr = tsr_arena_alloc(arena, (it->nparts + 1) * sizeof(char *));
        int rc = tsr_join_online_fetch(ctx, names, keys, nk, q, rd->fn, rd->ud, r->vals, perr, arena);
        if (rc) {
            r->error = tsr_arena_printf(arena, "%s", tsr_strerror(rc));
            return;
        }
        r->ok = 1;
        r->n = it->nout;
        /* "<part>_exception" entries after the outputs, for the parts that failed */
        const char **nn = NULL;
        for (size_t p = 0; p < it->nparts; p++) {
            if (!perr[p]) continue;
            if (rd->count) __atomic_add_fetch(&s->st.part_errors, 1, __ATOMIC_RELAXED);
            if (!nn) {
                nn = tsr_arena_alloc(arena, (it->nout + it->nparts) * sizeof(char *));
                memcpy(nn, it->out_names, it->nout * sizeof(char *));
                r->names = nn;
            }
            nn[r->n] = it->out_names[it->nout + p];
            r->vals[r->n++] = tsr_value_string(perr[p], strlen(perr[p]));
        }
    } else if (it->gb) {
        r->vals = tsr_arena_alloc(arena, (it->nout + 1) * sizeof(tsr_value_t));
        tsr_error_t e;
        tsr_error_clear(&e);
        if (tsr_gb_serve_fetch(ctx, names, keys, nk, q, rd->fn, rd->ud, r->vals, arena, &e)) {
            r->error = tsr_arena_strdup(arena, e.msg);
            return;
        }
        r->ok = 1;
        r->n = it->nout;
    } else {
        r->error = "nothing to serve";
    }
}

/* ---------------------------------------------------------------- gRPC */

static int64_t mono_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

/* Rows [lo, hi) of a request into results[lo, hi) (allocated in arena). */
static int fetch_rows_pb(tsr_serving_t *s, tsr_serving_item_t *it, void *ctx, const reader_t *rd,
                         const Tessera__V1__FetchRequest *rq, size_t lo, size_t hi, int64_t now,
                         int64_t deadline, row_out_t *results, tsr_arena_t *arena,
                         tsr_error_t *err) {
    for (size_t i = lo; i < hi; i++) {
        if (deadline != INT64_MAX && ((i - lo) & 7) == 0 && mono_ms() >= deadline)
            return tsr_error_set(err, TSR_ETIMEOUT, "deadline exceeded after %zu of %zu rows", i,
                                 rq->n_rows);
        const Tessera__V1__FetchRow *row = rq->rows[i];
        size_t nk = row ? row->n_keys : 0;
        const char **names = tsr_arena_alloc(arena, (nk ? nk : 1) * sizeof(char *));
        tsr_value_t *keys = tsr_arena_alloc(arena, (nk ? nk : 1) * sizeof(tsr_value_t));
        /* pass 1 of batched serving only collects reads: no result to build */
        row_out_t *res = rd->count ? &results[i] : NULL;
        if (res) {
            memset(res, 0, sizeof *res);
            res->row = row;
        }
        const char *bad = NULL;
        for (size_t k = 0; k < nk; k++) {
            names[k] = row->keys[k]->key ? row->keys[k]->key : "";
            if (tsr_pb_value_get(row->keys[k]->value, arena, &keys[k])) bad = "key value nests too deep";
            else if (keys[k].kind == TSR_LIST || keys[k].kind == TSR_MAP)
                bad = tsr_arena_printf(arena, "key '%s' must be a scalar, got a %s", names[k],
                                       keys[k].kind == TSR_LIST ? "list" : "map");
        }
        if (rd->count) __atomic_add_fetch(&s->st.rows, 1, __ATOMIC_RELAXED);
        row_res_t r;
        if (bad) {
            memset(&r, 0, sizeof r);
            r.error = bad;
        } else {
            int64_t q = row->at_case == TESSERA__V1__FETCH_ROW__AT_AT_MILLIS ? row->at_millis : now;
            fetch_row(s, it, ctx, rd, names, keys, nk, q, &r, arena);
        }
        if (!res) continue;
        if (!r.ok) {
            if (rd->count) __atomic_add_fetch(&s->st.row_failures, 1, __ATOMIC_RELAXED);
            res->failed = 1;
            res->error = r.error;
            continue;
        }
        res->n = r.n;
        res->names = r.names;
        res->vals = r.vals;
    }
    return 0;
}

/* ---- the response, encoded directly: the bytes protobuf-c packs for the FetchResponse of
 * these rows (FetchResult: status 1 (FAILURE only: proto3 omits 0), error 2, features 3, entity
 * keys 4; map entries: key 1 (omitted when empty), value 2), in two passes — sizes, then bytes
 * into one reservation of resp. */

static size_t feature_size(const char *name, const tsr_value_t *v) {
    size_t kn = strlen(name);
    return (kn ? tsr_pb_ld_size(kn) : 0) + tsr_pb_ld_size(tsr_pb_value_size(v));
}

static size_t ekey_size(const Tessera__V1__FetchRow__KeysEntry *e) {
    size_t kn = e->key ? strlen(e->key) : 0;
    return (kn ? tsr_pb_ld_size(kn) : 0) +
           (e->value ? tsr_pb_ld_size(protobuf_c_message_get_packed_size(&e->value->base)) : 0);
}

static size_t row_size(const row_out_t *r) {
    size_t n = 0;
    if (r->failed) {
        n += 2;
        if (r->error && r->error[0]) n += tsr_pb_ld_size(strlen(r->error));
    }
    for (size_t f = 0; f < r->n; f++) n += tsr_pb_ld_size(feature_size(r->names[f], &r->vals[f]));
    size_t nk = r->row ? r->row->n_keys : 0;
    for (size_t k = 0; k < nk; k++) n += tsr_pb_ld_size(ekey_size(r->row->keys[k]));
    return n;
}

static uint8_t *str_field(uint8_t tag, const char *s, size_t n, uint8_t *p) {
    *p++ = tag;
    p = tsr_pb_varint_write(n, p);
    memcpy(p, s, n);
    return p + n;
}

static uint8_t *row_write(const row_out_t *r, uint8_t *p) {
    if (r->failed) {
        *p++ = 0x08;
        *p++ = TESSERA__V1__ROW_STATUS__FAILURE;
        if (r->error && r->error[0]) p = str_field(0x12, r->error, strlen(r->error), p);
    }
    for (size_t f = 0; f < r->n; f++) {
        const char *name = r->names[f];
        size_t kn = strlen(name), vn = tsr_pb_value_size(&r->vals[f]);
        *p++ = 0x1a;
        p = tsr_pb_varint_write((kn ? tsr_pb_ld_size(kn) : 0) + tsr_pb_ld_size(vn), p);
        if (kn) p = str_field(0x0a, name, kn, p);
        *p++ = 0x12;
        p = tsr_pb_varint_write(vn, p);
        p = tsr_pb_value_write(&r->vals[f], p);
    }
    size_t nk = r->row ? r->row->n_keys : 0;
    for (size_t k = 0; k < nk; k++) {
        const Tessera__V1__FetchRow__KeysEntry *e = r->row->keys[k];
        *p++ = 0x22;
        p = tsr_pb_varint_write(ekey_size(e), p);
        if (e->key && e->key[0]) p = str_field(0x0a, e->key, strlen(e->key), p);
        if (e->value) {
            *p++ = 0x12;
            p = tsr_pb_varint_write(protobuf_c_message_get_packed_size(&e->value->base), p);
            p += protobuf_c_message_pack(&e->value->base, p);
        }
    }
    return p;
}

static void resp_encode(row_out_t *rows, size_t n, tsr_buf_t *resp) {
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        rows[i].size = row_size(&rows[i]);
        total += tsr_pb_ld_size(rows[i].size);
    }
    tsr_buf_reserve(resp, total);
    uint8_t *p = resp->data + resp->len;
    for (size_t i = 0; i < n; i++) {
        *p++ = 0x0a;
        p = tsr_pb_varint_write(rows[i].size, p);
        p = row_write(&rows[i], p);
    }
    resp->len += total;
}

/* ---- the helper thread: the second half of a large request runs beside the first */

static void *helper_main(void *arg) {
    tsr_serving_t *s = arg;
    prctl(PR_SET_NAME, "tsr-fetch-help", 0, 0, 0);
    pthread_mutex_lock(&s->h_mu);
    for (;;) {
        while (!s->h_stop && !s->h_job) pthread_cond_wait(&s->h_cv, &s->h_mu);
        if (s->h_stop) break;
        help_job_t *j = s->h_job;
        pthread_mutex_unlock(&s->h_mu);
        tsr_arena_reset(&s->h_arena);
        tsr_error_clear(&j->err);
        void *ctx = ctx_get(j->it);
        reader_t rd = {s->read, s->read_ud, 1};
        j->rc = fetch_rows_pb(s, j->it, ctx, &rd, j->rq, j->lo, j->hi, j->now, j->deadline, j->results,
                              &s->h_arena, &j->err);
        ctx_put(j->it, ctx);
        pthread_mutex_lock(&s->h_mu);
        s->h_job = NULL;
        j->done = 1;
        pthread_cond_broadcast(&s->h_done_cv);
    }
    pthread_mutex_unlock(&s->h_mu);
    return NULL;
}

size_t tsr_serving_request_rows(const uint8_t *req, size_t n) {
    return tsr_pb_count_field(req, n, 2); /* FetchRequest.rows */
}

/* A batched fetch between its halves (tsr_serving_fetch_begin / _finish); in the arena. */
struct tsr_serving_req {
    tsr_serving_t *s;
    tsr_serving_item_t *it;         /* referenced until finish / abandon */
    void *ctx;                      /* borrowed from the item's pool */
    const Tessera__V1__FetchRequest *rq;
    row_out_t *results;
    batch_t b;
    int64_t now, deadline;
    tsr_arena_t *arena;
};

/* What every fetch begins with: its deadline, the decoded request (in arena) and the item it
 * names (acquired: the caller releases it). 0, TSR_EINVAL or TSR_ENOTFOUND with err set. */
static int open_request(tsr_serving_t *s, int join, const uint8_t *req, size_t n, int64_t timeout_ms,
                        tsr_arena_t *arena, int64_t *deadline, Tessera__V1__FetchRequest **rq,
                        tsr_serving_item_t **it, tsr_error_t *err) {
    *deadline = timeout_ms >= INT64_MAX / 2 ? INT64_MAX : mono_ms() + timeout_ms;
    *rq = tsr_pb_unpack(&tessera__v1__fetch_request__descriptor, req, n, arena, err);
    if (!*rq) return TSR_EINVAL;
    if (!(*rq)->name || !(*rq)->name[0]) return tsr_error_set(err, TSR_EINVAL, "FetchRequest.name is empty");
    __atomic_add_fetch(&s->st.requests, 1, __ATOMIC_RELAXED);
    *it = acquire(s, join, (*rq)->name, err);
    return *it ? 0 : TSR_ENOTFOUND;
}

int tsr_serving_fetch_begin(tsr_serving_t *s, int join, const uint8_t *req, size_t n,
                            int64_t timeout_ms, tsr_arena_t *arena, tsr_serving_req_t **out,
                            tsr_error_t *err) {
    *out = NULL;
    if (!s->many) return tsr_error_set(err, TSR_EINVAL, "internal error: not a batched serving");
    int64_t deadline;
    Tessera__V1__FetchRequest *rq;
    tsr_serving_item_t *it;
    int orc = open_request(s, join, req, n, timeout_ms, arena, &deadline, &rq, &it, err);
    if (orc) return orc;
    tsr_serving_req_t *r = tsr_arena_alloc(arena, sizeof *r);
    memset(r, 0, sizeof *r);
    r->s = s;
    r->it = it;
    r->ctx = ctx_get(it);
    r->rq = rq;
    r->results = tsr_arena_alloc(arena, (rq->n_rows ? rq->n_rows : 1) * sizeof(*r->results));
    r->b = (batch_t){it, NULL, 0, 0, 0};
    r->now = now_ms();
    r->deadline = deadline;
    r->arena = arena;
    reader_t r1 = {collect_read, &r->b, 0};
    int rc = fetch_rows_pb(s, it, r->ctx, &r1, rq, 0, rq->n_rows, r->now, deadline, r->results, arena, err);
    if (rc) {
        tsr_serving_fetch_abandon(r);
        return rc;
    }
    *out = r;
    return 0;
}

tsr_tile_read_req_t *tsr_serving_req_reads(tsr_serving_req_t *r, size_t *n) {
    *n = r->b.n;
    return r->b.reqs;
}

int64_t tsr_serving_req_timeout(const tsr_serving_req_t *r) {
    if (r->deadline == INT64_MAX) return INT64_MAX;
    int64_t t = r->deadline - mono_ms();
    return t > 0 ? t : 0;
}

int tsr_serving_fetch_finish(tsr_serving_req_t *r, tsr_buf_t *resp, tsr_error_t *err) {
    reader_t r2 = {replay_read, &r->b, 1};
    r->b.next = 0;
    int rc = fetch_rows_pb(r->s, r->it, r->ctx, &r2, r->rq, 0, r->rq->n_rows, r->now, r->deadline, r->results,
                           r->arena, err);
    if (rc == 0) resp_encode(r->results, r->rq->n_rows, resp);
    tsr_serving_fetch_abandon(r);
    return rc;
}

void tsr_serving_fetch_abandon(tsr_serving_req_t *r) {
    if (!r || !r->it) return;
    ctx_put(r->it, r->ctx);
    item_unref(r->it);
    r->it = NULL;
    r->ctx = NULL;
}

int tsr_serving_fetch_pb(tsr_serving_t *s, int join, const uint8_t *req, size_t n,
                         int64_t timeout_ms, tsr_buf_t *resp, tsr_arena_t *arena,
                         tsr_error_t *err) {
    if (s->many) { /* begin (pass 1), one call to many, finish (pass 2) */
        tsr_serving_req_t *r;
        int rc = tsr_serving_fetch_begin(s, join, req, n, timeout_ms, arena, &r, err);
        if (rc) return rc;
        batch_run(s, &r->b, r->deadline, arena);
        return tsr_serving_fetch_finish(r, resp, err);
    }
    int64_t deadline;
    Tessera__V1__FetchRequest *rq;
    tsr_serving_item_t *it;
    int orc = open_request(s, join, req, n, timeout_ms, arena, &deadline, &rq, &it, err);
    if (orc) return orc;
    void *ctx = ctx_get(it);
    row_out_t *results = tsr_arena_alloc(arena, (rq->n_rows ? rq->n_rows : 1) * sizeof(*results));
    int64_t now = now_ms();
    /* a large request hands its second half to the helper when it is free */
    size_t mid = rq->n_rows;
    help_job_t job;
    int helped = 0;
    if (s->helper_on && rq->n_rows >= HELP_MIN_ROWS) {
        pthread_mutex_lock(&s->h_mu);
        if (!s->h_busy) {
            s->h_busy = 1;
            mid = rq->n_rows / 2;
            job = (help_job_t){it, rq, mid, rq->n_rows, now, deadline, results, 0, 0, {0}};
            s->h_job = &job;
            helped = 1;
            pthread_cond_signal(&s->h_cv);
        }
        pthread_mutex_unlock(&s->h_mu);
    }
    reader_t rd = {s->read, s->read_ud, 1};
    int rc = fetch_rows_pb(s, it, ctx, &rd, rq, 0, mid, now, deadline, results, arena, err);
    if (helped) {
        pthread_mutex_lock(&s->h_mu);
        while (!job.done) pthread_cond_wait(&s->h_done_cv, &s->h_mu);
        pthread_mutex_unlock(&s->h_mu);
        if (rc == 0 && job.rc) {
            rc = job.rc;
            *err = job.err;
        }
    }
    ctx_put(it, ctx);
    if (rc == 0) resp_encode(results, rq->n_rows, resp); /* the helper's results live in its arena */
    if (helped) {
        pthread_mutex_lock(&s->h_mu);
        s->h_busy = 0;
        pthread_mutex_unlock(&s->h_mu);
    }
    item_unref(it);
    return rc;
}

/* ---------------------------------------------------------------- HTTP */

static void http_rows(tsr_serving_t *s, tsr_serving_item_t *it, void *ctx, const reader_t *rd,
                      const tsr_http_fetch_row_t *rows, size_t nrows, int64_t now,
                      tsr_http_fetch_result_t *results, tsr_arena_t *arena) {
    for (size_t i = 0; i < nrows; i++) {
        const tsr_value_t *km = &rows[i].keys;
        size_t nk = km->kind == TSR_MAP ? km->len : 0;
        const char **names = tsr_arena_alloc(arena, (nk ? nk : 1) * sizeof(char *));
        tsr_value_t *keys = tsr_arena_alloc(arena, (nk ? nk : 1) * sizeof(tsr_value_t));
        for (size_t k = 0; k < nk; k++) {
            const tsr_value_t *kv = &km->u.items[2 * k];
            names[k] = tsr_arena_strndup(arena, kv->u.s, kv->len);
            keys[k] = km->u.items[2 * k + 1];
        }
        if (rd->count) __atomic_add_fetch(&s->st.rows, 1, __ATOMIC_RELAXED);
        row_res_t r;
        fetch_row(s, it, ctx, rd, names, keys, nk, rows[i].has_at_millis ? rows[i].at_millis : now, &r, arena);
        if (!rd->count) continue; /* pass 1: reads collected, nothing to answer yet */
        if (!r.ok) {
            if (rd->count) __atomic_add_fetch(&s->st.row_failures, 1, __ATOMIC_RELAXED);
            results[i].ok = 0;
            results[i].error = r.error;
            continue;
        }
        tsr_value_t *items = tsr_arena_alloc(arena, (2 * r.n + 1) * sizeof(tsr_value_t));
        for (size_t f = 0; f < r.n; f++) {
            items[2 * f] = tsr_value_string(r.names[f], strlen(r.names[f]));
            items[2 * f + 1] = r.vals[f];
        }
        results[i].ok = 1;
        results[i].features = tsr_value_map(items, r.n);
    }
}

int tsr_serving_fetch_http(void *ud, tsr_http_fetch_kind_t kind, const char *name,
                           const tsr_http_fetch_row_t *rows, size_t nrows,
                           tsr_http_fetch_result_t *results, tsr_arena_t *arena,
                           tsr_error_t *err) {
    tsr_serving_t *s = ud;
    __atomic_add_fetch(&s->st.requests, 1, __ATOMIC_RELAXED);
    tsr_serving_item_t *it = acquire(s, kind == TSR_HTTP_FETCH_JOIN, name, err);
    if (!it) return TSR_ENOTFOUND;
    void *ctx = ctx_get(it);
    int64_t now = now_ms();
    if (s->many) {
        batch_t b = {it, NULL, 0, 0, 0};
        reader_t r1 = {collect_read, &b, 0}, r2 = {replay_read, &b, 1};
        http_rows(s, it, ctx, &r1, rows, nrows, now, results, arena);
        batch_run(s, &b, INT64_MAX, arena);
        http_rows(s, it, ctx, &r2, rows, nrows, now, results, arena);
    } else {
        reader_t rd = {s->read, s->read_ud, 1};
        http_rows(s, it, ctx, &rd, rows, nrows, now, results, arena);
    }
    ctx_put(it, ctx);
    item_unref(it);
    return 0;
}
