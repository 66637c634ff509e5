/*
 * kv_fake.c — the in-memory store behind tsr_kv_t (kv.h), for tests of coordinator logic.
 *
 * Design: a sorted array of live keys (binary search; the coordinator's stores hold hundreds
 * of keys, not millions), a list of leases with expiry times on a manual clock, and a log of
 * every event (put or delete, with its revision) that watch threads replay. Each watcher
 * remembers the index of the next log entry it must deliver and sleeps on a condition
 * variable until the log grows or it is stopped. Events are copied under the mutex and
 * delivered outside it, so a callback may call back into the store.
 * The log is never compacted (tests are short); that is the only semantic difference from
 * etcd worth knowing.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tsr/kv.h"
#include "tsr/mem.h"

typedef struct fake_lease {
    int64_t id, ttl_s, expires_ms;
} fake_lease_t;

typedef struct fake_event {
    int type;
    tsr_kv_entry_t kv;
} fake_event_t;

typedef struct fake {
    tsr_kv_t base;
    pthread_mutex_t mu;
    pthread_cond_t cv;           /* broadcast when the log grows */
    int64_t rev, now_ms, next_lease;
    tsr_kv_entry_t *keys;        /* sorted by key */
    size_t nkeys, capkeys;
    fake_lease_t *leases;
    size_t nleases, capleases;
    fake_event_t *log;
    size_t nlog, caplog;
} fake_t;

struct tsr_kv_watch {
    fake_t *f;
    char *prefix;
    int64_t from_rev;
    size_t next;                 /* next log index to look at */
    int stop;
    tsr_kv_watch_cb cb;
    void *ud;
    pthread_t th;
};

static void entry_dup(tsr_kv_entry_t *dst, const tsr_kv_entry_t *src) {
    *dst = *src;
    dst->key = tsr_strdup(src->key);
    dst->val = tsr_malloc(src->val_len + 1);
    memcpy(dst->val, src->val, src->val_len);
    dst->val[src->val_len] = 0;
}

/* Index of key, or of where it would go (*exact = 0). */
static size_t find(const fake_t *f, const char *key, int *exact) {
    size_t lo = 0, hi = f->nkeys;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(f->keys[mid].key, key);
        if (c == 0) {
            *exact = 1;
            return mid;
        }
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    *exact = 0;
    return lo;
}

static fake_lease_t *lease_find(fake_t *f, int64_t id) {
    for (size_t i = 0; i < f->nleases; i++)
        if (f->leases[i].id == id) return &f->leases[i];
    return NULL;
}

static void log_add(fake_t *f, int type, const tsr_kv_entry_t *e) {
    if (f->nlog == f->caplog) {
        f->caplog = f->caplog ? 2 * f->caplog : 64;
        f->log = tsr_realloc(f->log, f->caplog * sizeof *f->log);
    }
    fake_event_t *ev = &f->log[f->nlog++];
    ev->type = type;
    entry_dup(&ev->kv, e);
}

/* Applies a put at revision f->rev (already bumped). */
static void do_put(fake_t *f, const char *key, const void *val, size_t len, int64_t lease) {
    int exact;
    size_t i = find(f, key, &exact);
    if (!exact) {
        if (f->nkeys == f->capkeys) {
            f->capkeys = f->capkeys ? 2 * f->capkeys : 16;
            f->keys = tsr_realloc(f->keys, f->capkeys * sizeof *f->keys);
        }
        memmove(&f->keys[i + 1], &f->keys[i], (f->nkeys - i) * sizeof *f->keys);
        f->nkeys++;
        memset(&f->keys[i], 0, sizeof f->keys[i]);
        f->keys[i].key = tsr_strdup(key);
        f->keys[i].create_revision = f->rev;
    }
    tsr_kv_entry_t *e = &f->keys[i];
    free(e->val);
    e->val = tsr_malloc(len + 1);
    if (len) memcpy(e->val, val, len);
    e->val[len] = 0;
    e->val_len = len;
    e->mod_revision = f->rev;
    e->version++;
    e->lease = lease;
    log_add(f, TSR_KV_PUT, e);
}

static void delete_at(fake_t *f, size_t i) {
    tsr_kv_entry_t d = {.key = f->keys[i].key, .val = (char *)"", .mod_revision = f->rev};
    log_add(f, TSR_KV_DELETE, &d);
    tsr_kv_entry_free(&f->keys[i]);
    memmove(&f->keys[i], &f->keys[i + 1], (f->nkeys - i - 1) * sizeof *f->keys);
    f->nkeys--;
}

/* Deletes key or prefix at revision f->rev; returns how many. */
static int64_t do_delete(fake_t *f, const char *key, int prefix) {
    int exact;
    size_t i = find(f, key, &exact);
    if (!prefix) {
        if (!exact) return 0;
        delete_at(f, i);
        return 1;
    }
    size_t plen = strlen(key);
    int64_t n = 0;
    while (i < f->nkeys && strncmp(f->keys[i].key, key, plen) == 0) {
        delete_at(f, i);
        n++;
    }
    return n;
}

/* Would deleting key/prefix remove anything? (etcd bumps the revision only then.) */
static int would_delete(const fake_t *f, const char *key, int prefix) {
    int exact;
    size_t i = find(f, key, &exact);
    if (!prefix) return exact;
    return i < f->nkeys && strncmp(f->keys[i].key, key, strlen(key)) == 0;
}

static void lease_drop(fake_t *f, int64_t id) {
    int any = 0;
    for (size_t i = 0; i < f->nkeys; i++)
        if (f->keys[i].lease == id) any = 1;
    if (any) {
        f->rev++;   /* etcd deletes a lease's keys in one revision */
        for (size_t i = 0; i < f->nkeys;) {
            if (f->keys[i].lease == id) delete_at(f, i);
            else i++;
        }
        pthread_cond_broadcast(&f->cv);
    }
    for (size_t i = 0; i < f->nleases; i++)
        if (f->leases[i].id == id) {
            f->leases[i] = f->leases[--f->nleases];
            break;
        }
}

static int fake_put(tsr_kv_t *kv, const char *key, const void *val, size_t len, int64_t lease,
                    int64_t *revision, tsr_error_t *err) {
    fake_t *f = (fake_t *)kv;
    if (!key || !*key) return tsr_error_set(err, TSR_EINVAL, "fake kv: put: empty key");
    pthread_mutex_lock(&f->mu);
    if (lease && !lease_find(f, lease)) {
        pthread_mutex_unlock(&f->mu);
        return tsr_error_set(err, TSR_ENOTFOUND, "fake kv: put %s: lease %lld not found", key,
                             (long long)lease);
    }
    f->rev++;
    do_put(f, key, val, len, lease);
    if (revision) *revision = f->rev;
    pthread_cond_broadcast(&f->cv);
    pthread_mutex_unlock(&f->mu);
    return 0;
}

static int fake_get(tsr_kv_t *kv, const char *key, tsr_kv_entry_t *out, int *found,
                    tsr_error_t *err) {
    (void)err;
    fake_t *f = (fake_t *)kv;
    memset(out, 0, sizeof *out);
    pthread_mutex_lock(&f->mu);
    int exact;
    size_t i = find(f, key, &exact);
    *found = exact;
    if (exact) entry_dup(out, &f->keys[i]);
    pthread_mutex_unlock(&f->mu);
    return 0;
}

static int fake_range(tsr_kv_t *kv, const char *prefix, tsr_kv_entry_t **out, size_t *n,
                      int64_t *revision, tsr_error_t *err) {
    (void)err;
    fake_t *f = (fake_t *)kv;
    size_t plen = strlen(prefix);
    pthread_mutex_lock(&f->mu);
    int exact;
    size_t i = find(f, prefix, &exact), j = i;
    while (j < f->nkeys && strncmp(f->keys[j].key, prefix, plen) == 0) j++;
    *n = j - i;
    *out = tsr_calloc(*n ? *n : 1, sizeof **out);
    for (size_t k = i; k < j; k++) entry_dup(&(*out)[k - i], &f->keys[k]);
    if (revision) *revision = f->rev;
    pthread_mutex_unlock(&f->mu);
    return 0;
}

static int fake_del(tsr_kv_t *kv, const char *key, int prefix, int64_t *deleted,
                    tsr_error_t *err) {
    (void)err;
    fake_t *f = (fake_t *)kv;
    pthread_mutex_lock(&f->mu);
    int64_t n = 0;
    if (would_delete(f, key, prefix)) {
        f->rev++;
        n = do_delete(f, key, prefix);
        pthread_cond_broadcast(&f->cv);
    }
    if (deleted) *deleted = n;
    pthread_mutex_unlock(&f->mu);
    return 0;
}

static int fake_txn(tsr_kv_t *kv, const tsr_kv_cmp_t *cmp, size_t ncmp, const tsr_kv_op_t *ops,
                    size_t nops, int *succeeded, int64_t *revision, tsr_error_t *err) {
    fake_t *f = (fake_t *)kv;
    pthread_mutex_lock(&f->mu);
    int ok = 1;
    for (size_t c = 0; c < ncmp && ok; c++) {
        int exact;
        size_t i = find(f, cmp[c].key, &exact);
        int64_t mr = exact ? f->keys[i].mod_revision : 0;
        ok = mr == cmp[c].mod_revision;
    }
    if (ok) {
        for (size_t o = 0; o < nops; o++)
            if (ops[o].type == TSR_KV_PUT && ops[o].lease && !lease_find(f, ops[o].lease)) {
                pthread_mutex_unlock(&f->mu);
                return tsr_error_set(err, TSR_ENOTFOUND,
                                     "fake kv: txn put %s: lease %lld not found", ops[o].key,
                                     (long long)ops[o].lease);
            }
        int writes = 0;
        for (size_t o = 0; o < nops; o++)
            writes |= ops[o].type == TSR_KV_PUT || would_delete(f, ops[o].key, ops[o].prefix);
        if (writes) f->rev++;
        for (size_t o = 0; o < nops; o++) {
            if (ops[o].type == TSR_KV_PUT)
                do_put(f, ops[o].key, ops[o].val, ops[o].val_len, ops[o].lease);
            else
                do_delete(f, ops[o].key, ops[o].prefix);
        }
        if (writes) pthread_cond_broadcast(&f->cv);
    }
    *succeeded = ok;
    if (revision) *revision = f->rev;
    pthread_mutex_unlock(&f->mu);
    return 0;
}

static int fake_lease_grant(tsr_kv_t *kv, int64_t ttl_s, int64_t *id, tsr_error_t *err) {
    fake_t *f = (fake_t *)kv;
    if (ttl_s <= 0) return tsr_error_set(err, TSR_EINVAL, "fake kv: lease grant: ttl %lld <= 0",
                                         (long long)ttl_s);
    pthread_mutex_lock(&f->mu);
    if (f->nleases == f->capleases) {
        f->capleases = f->capleases ? 2 * f->capleases : 8;
        f->leases = tsr_realloc(f->leases, f->capleases * sizeof *f->leases);
    }
    fake_lease_t *l = &f->leases[f->nleases++];
    l->id = f->next_lease++;
    l->ttl_s = ttl_s;
    l->expires_ms = f->now_ms + ttl_s * 1000;
    *id = l->id;
    pthread_mutex_unlock(&f->mu);
    return 0;
}

static int fake_lease_keepalive(tsr_kv_t *kv, int64_t id, int64_t *ttl_s, tsr_error_t *err) {
    fake_t *f = (fake_t *)kv;
    pthread_mutex_lock(&f->mu);
    fake_lease_t *l = lease_find(f, id);
    if (l) {
        l->expires_ms = f->now_ms + l->ttl_s * 1000;
        if (ttl_s) *ttl_s = l->ttl_s;
    }
    pthread_mutex_unlock(&f->mu);
    if (!l)
        return tsr_error_set(err, TSR_ENOTFOUND, "fake kv: lease keepalive: lease %lld not found",
                             (long long)id);
    return 0;
}

static int fake_lease_revoke(tsr_kv_t *kv, int64_t id, tsr_error_t *err) {
    fake_t *f = (fake_t *)kv;
    pthread_mutex_lock(&f->mu);
    int found = lease_find(f, id) != NULL;
    if (found) lease_drop(f, id);
    pthread_mutex_unlock(&f->mu);
    if (!found)
        return tsr_error_set(err, TSR_ENOTFOUND, "fake kv: lease revoke: lease %lld not found",
                             (long long)id);
    return 0;
}

int tsr_kv_fake_advance(tsr_kv_t *kv, int64_t ms) {
    if (!tsr_kv_is_fake(kv)) return TSR_EINVAL;
    fake_t *f = (fake_t *)kv;
    pthread_mutex_lock(&f->mu);
    f->now_ms += ms;
    for (size_t i = 0; i < f->nleases;) {
        if (f->leases[i].expires_ms <= f->now_ms)
            lease_drop(f, f->leases[i].id); /* swaps in last */
        else i++;
    }
    pthread_mutex_unlock(&f->mu);
    return 0;
}

static void *watch_main(void *arg) {
    tsr_kv_watch_t *w = arg;
    fake_t *f = w->f;
    size_t plen = strlen(w->prefix);
    tsr_kv_event_t *batch = NULL;
    size_t cap = 0;
    pthread_mutex_lock(&f->mu);
    while (!w->stop) {
        if (w->next >= f->nlog) {
            pthread_cond_wait(&f->cv, &f->mu);
            continue;
        }
        size_t n = 0;
        for (; w->next < f->nlog; w->next++) {
            const fake_event_t *ev = &f->log[w->next];
            if (ev->kv.mod_revision < w->from_rev || strncmp(ev->kv.key, w->prefix, plen) != 0)
                continue;
            if (n == cap) {
                cap = cap ? 2 * cap : 16;
                batch = tsr_realloc(batch, cap * sizeof *batch);
            }
            batch[n].type = ev->type;
            entry_dup(&batch[n].kv, &ev->kv);
            n++;
        }
        if (!n) continue;
        pthread_mutex_unlock(&f->mu);
        w->cb(w->ud, batch, n, 0, NULL);
        for (size_t i = 0; i < n; i++) tsr_kv_entry_free(&batch[i].kv);
        pthread_mutex_lock(&f->mu);
    }
    pthread_mutex_unlock(&f->mu);
    free(batch);
    return NULL;
}

static int fake_watch(tsr_kv_t *kv, const char *prefix, int64_t from_revision,
                      tsr_kv_watch_cb cb, void *ud, tsr_kv_watch_t **out, tsr_error_t *err) {
    fake_t *f = (fake_t *)kv;
    tsr_kv_watch_t *w = tsr_calloc(1, sizeof *w);
    w->f = f;
    w->prefix = tsr_strdup(prefix);
    w->cb = cb;
    w->ud = ud;
    pthread_mutex_lock(&f->mu);
    w->from_rev = from_revision > 0 ? from_revision : f->rev + 1;
    w->next = 0;
    if (from_revision <= 0) w->next = f->nlog;
    pthread_mutex_unlock(&f->mu);
    if (pthread_create(&w->th, NULL, watch_main, w) != 0) {
        free(w->prefix);
        free(w);
        return tsr_error_set(err, TSR_EINTERNAL, "fake kv: watch %s: cannot start thread", prefix);
    }
    *out = w;
    return 0;
}

static void fake_watch_stop(tsr_kv_watch_t *w) {
    fake_t *f = w->f;
    pthread_mutex_lock(&f->mu);
    w->stop = 1;
    pthread_cond_broadcast(&f->cv);
    pthread_mutex_unlock(&f->mu);
    pthread_join(w->th, NULL);
    free(w->prefix);
    free(w);
}

static void fake_free(tsr_kv_t *kv) {
    fake_t *f = (fake_t *)kv;
    tsr_kv_entries_free(f->keys, f->nkeys);
    for (size_t i = 0; i < f->nlog; i++) tsr_kv_entry_free(&f->log[i].kv);
    free(f->log);
    free(f->leases);
    pthread_mutex_destroy(&f->mu);
    pthread_cond_destroy(&f->cv);
    free(f);
}

static const tsr_kv_vtable_t fake_vt = {
    .put = fake_put,
    .get = fake_get,
    .range = fake_range,
    .del = fake_del,
    .txn = fake_txn,
    .lease_grant = fake_lease_grant,
    .lease_keepalive = fake_lease_keepalive,
    .lease_revoke = fake_lease_revoke,
    .watch = fake_watch,
    .watch_stop = fake_watch_stop,
    .free = fake_free,
};

tsr_kv_t *tsr_kv_fake_new(void) {
    fake_t *f = tsr_calloc(1, sizeof *f);
    f->base.vt = &fake_vt;
    pthread_mutex_init(&f->mu, NULL);
    pthread_cond_init(&f->cv, NULL);
    f->rev = 1;              /* etcd starts at revision 1 too */
    f->next_lease = 0x1000;
    return &f->base;
}

int tsr_kv_is_fake(const tsr_kv_t *kv) { return kv && kv->vt == &fake_vt; }
