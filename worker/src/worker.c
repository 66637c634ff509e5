/*
 * worker.c — the cluster worker (worker.h): coordinator session, reconcile, shards, reads.
 *
 * Locks (taken in this order, never the other way):
 *   mu        the host's GroupBy states, the ownership table's writers, the epoch; held by
 *             reconcile for its whole run (a part-file load included), by the keep-alive
 *             report (trylock: a report is skipped rather than the lease missed), by shutdown
 *   own_lock  (rwlock) the ownership table; readers are ReadPartition calls
 *   q_mu      the shard queue
 *   c_mu      the coordinator address list and the client cache
 */
#include "tsr/worker.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cluster.pb-c.h"
#include "tsr/backfill.h"
#include "tsr/log.h"
#include "tsr/partfile.h"
#include "tsr/partition.h"
#include "tsr/pbvalue.h"
#include "tsr/rpc.h"
#include "tsr/time.h"

#define WATCH_DEADLINE_MS 3000
#define CALL_TIMEOUT_MS 3000
#define BACKOFF_MIN_MS 50
#define BACKOFF_MAX_MS 2000

#define M_REGISTER "/tessera.v1.CoordinatorService/RegisterWorker"
#define M_KEEPALIVE "/tessera.v1.CoordinatorService/KeepAlive"
#define M_WATCH "/tessera.v1.CoordinatorService/WatchAssignments"
#define M_REPORT "/tessera.v1.CoordinatorService/ReportShard"
#define M_READ "/tessera.v1.WorkerService/ReadPartition"

/* What this worker owns of one GroupBy (the ownership table's row). */
typedef struct owned {
    char *name;
    int32_t nparts_total;
    int32_t *parts;                 /* ascending */
    size_t n;
    int64_t batch_end;              /* the assignment's committed upload */
} owned_t;

typedef struct shard {
    struct shard *next;
    uint8_t *msg;                   /* the serialized ShardTask */
    size_t len;
} shard_t;

struct tsr_worker {
    tsr_worker_opts_t o;
    char *data_dir, *warehouse, *kafka, *listen, *advertise, *id;
    tsr_host_t *host;
    tsr_rpc_server_t *rpc;
    pthread_key_t arena_key;
    int stopping;                   /* atomic */

    pthread_mutex_t mu;
    int64_t epoch, revision;
    int fenced;                     /* partitions withdrawn since the last reconcile */
    tsr_worker_stats_t st;          /* under mu (registered, lease: atomics below) */
    char **seen_shards;             /* "job/shard/attempt" queued once */
    size_t nseen, capseen;

    pthread_rwlock_t own_lock;
    owned_t *own;
    size_t nown, capown;

    /* coordinator session */
    pthread_mutex_t c_mu;
    char **addrs;
    size_t naddr, cur;
    char *leader;                   /* redirect target, NULL = addrs[cur] */
    char redirect_logged[520];      /* the last "target -> leader" logged, and when: the */
    int64_t redirect_logged_at;     /* threads redirect many times a second in a failover */
    struct client {
        char *addr;
        tsr_rpc_client_t *c;
    } *cl;
    size_t ncl, capcl;
    int64_t lease_id;               /* atomic; 0 = not registered */
    int64_t ttl_ms;                 /* atomic */
    int relogin;                    /* atomic: the lease is gone, register again */
    int started_threads;
    pthread_t t_session, t_keepalive, t_shards;

    pthread_mutex_t q_mu;
    pthread_cond_t q_cv;
    pthread_mutex_t nap_mu;         /* naps end early at stop (nap_cv) */
    pthread_cond_t nap_cv;
    shard_t *q_head, *q_tail;
};

#define wlog(w, lvl, ...)                                                                          \
    do {                                                                                           \
        if ((w)->o.log) tsr_log((lvl), "worker", __VA_ARGS__);                                     \
    } while (0)

static int64_t now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

static int stopping(tsr_worker_t *w) { return __atomic_load_n(&w->stopping, __ATOMIC_ACQUIRE); }

/* Sleeps ms, or less when the worker stops; returns stopping(). One timed wait, not a poll:
 * an idle worker's threads wake only when they have something to do. */
static int nap(tsr_worker_t *w, int64_t ms) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += ms / 1000;
    ts.tv_nsec += (ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&w->nap_mu);
    while (!stopping(w) && pthread_cond_timedwait(&w->nap_cv, &w->nap_mu, &ts) == 0) {
    }
    pthread_mutex_unlock(&w->nap_mu);
    return stopping(w);
}

static void arena_destroy(void *p) {
    tsr_arena_free(p);
    free(p);
}
static tsr_arena_t *thread_arena(tsr_worker_t *w) {
    tsr_arena_t *a = pthread_getspecific(w->arena_key);
    if (!a) {
        a = tsr_malloc(sizeof *a);
        tsr_arena_init(a, 1 << 16);
        pthread_setspecific(w->arena_key, a);
    }
    tsr_arena_reset(a);
    return a;
}

/* ------------------------------------------------------------------------------------------
 * ownership table */

static owned_t *own_find(tsr_worker_t *w, const char *name) {
    for (size_t i = 0; i < w->nown; i++)
        if (strcmp(w->own[i].name, name) == 0) return &w->own[i];
    return NULL;
}

static int has_part(const int32_t *v, size_t n, int32_t p) {
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (v[mid] == p) return 1;
        if (v[mid] < p) lo = mid + 1;
        else hi = mid;
    }
    return 0;
}

int tsr_worker_owns(tsr_worker_t *w, const char *group_by, int32_t partition) {
    pthread_rwlock_rdlock(&w->own_lock);
    owned_t *o = own_find(w, group_by);
    int yes = o && has_part(o->parts, o->n, partition);
    pthread_rwlock_unlock(&w->own_lock);
    return yes;
}

/* Sets a GroupBy's owned partitions for reads (under mu). */
static void own_set(tsr_worker_t *w, const char *name, int32_t total, const int32_t *parts, size_t n,
                    int64_t batch_end) {
    pthread_rwlock_wrlock(&w->own_lock);
    owned_t *o = own_find(w, name);
    if (!o) {
        if (w->nown == w->capown) {
            w->capown = w->capown ? 2 * w->capown : 16;
            w->own = tsr_realloc(w->own, w->capown * sizeof *w->own);
        }
        o = &w->own[w->nown++];
        memset(o, 0, sizeof *o);
        o->name = tsr_strdup(name);
    }
    free(o->parts);
    o->parts = tsr_malloc((n ? n : 1) * sizeof(int32_t));
    if (n) memcpy(o->parts, parts, n * sizeof(int32_t));
    o->n = n;
    o->nparts_total = total;
    o->batch_end = batch_end;
    pthread_rwlock_unlock(&w->own_lock);
}

/* Withdraws every partition and stops every ingest (lease lost, or shutdown). Under mu. */
static void fence_all(tsr_worker_t *w) {
    w->fenced = 1; /* the next snapshot reconciles even if it is the one already applied */
    pthread_rwlock_wrlock(&w->own_lock);
    for (size_t i = 0; i < w->nown; i++) w->own[i].n = 0;
    pthread_rwlock_unlock(&w->own_lock);
    for (size_t i = 0; i < tsr_host_count(w->host); i++)
        tsr_host_gb_set_partitions(w->host, tsr_host_at(w->host, i), NULL, 0, 0);
}

/* ------------------------------------------------------------------------------------------
 * reconcile */

static int cmp_i32(const void *a, const void *b) {
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return x < y ? -1 : x > y;
}

static void queue_shard(tsr_worker_t *w, const Tessera__V1__ShardTask *t) {
    char key[600];
    snprintf(key, sizeof key, "%s/%d/%d", t->job_id ? t->job_id : "", (int)t->shard, (int)t->attempt);
    for (size_t i = 0; i < w->nseen; i++)
        if (strcmp(w->seen_shards[i], key) == 0) return;
    if (w->nseen == w->capseen) {
        w->capseen = w->capseen ? 2 * w->capseen : 16;
        w->seen_shards = tsr_realloc(w->seen_shards, w->capseen * sizeof(char *));
    }
    w->seen_shards[w->nseen++] = tsr_strdup(key);
    shard_t *s = tsr_calloc(1, sizeof *s);
    s->len = protobuf_c_message_get_packed_size(&t->base);
    s->msg = tsr_malloc(s->len ? s->len : 1);
    protobuf_c_message_pack(&t->base, s->msg);
    pthread_mutex_lock(&w->q_mu);
    if (w->q_tail) w->q_tail->next = s;
    else w->q_head = s;
    w->q_tail = s;
    pthread_cond_signal(&w->q_cv);
    pthread_mutex_unlock(&w->q_mu);
    wlog(w, TSR_LOG_INFO, "shard %s of %s queued (%zu partitions)", key, t->group_by, t->n_partitions);
}

/* One AssignedGroupBy. Under mu. */
static void reconcile_gb(tsr_worker_t *w, const Tessera__V1__AssignedGroupBy *ag) {
    const char *name = ag->name ? ag->name : "";
    tsr_host_gb_t *st = tsr_host_find(w->host, name);
    tsr_error_t err;
    tsr_error_clear(&err);
    if (!st) {
        const char *text = ag->config_json ? ag->config_json : "";
        int rc = tsr_host_gb_new(w->host, text, strlen(text), name, ag->part_index, &st, &err);
        if (rc == 0 && strcmp(st->name, name) != 0) {
            rc = tsr_error_set(&err, TSR_ECONFIG, "config part %d is GroupBy %s, not %s",
                               (int)ag->part_index, st->name, name);
            tsr_host_gb_free(st);
        }
        if (rc == 0) {
            tsr_host_gb_set_partitions(w->host, st, NULL, 0, 0); /* partitioned, none yet */
            rc = tsr_host_add(w->host, st, &err);
            if (rc) tsr_host_gb_free(st);
        }
        if (rc) {
            wlog(w, TSR_LOG_ERROR, "%s: cannot host: %s", name, err.msg);
            return;
        }
        wlog(w, TSR_LOG_INFO, "hosting %s (%s)", name, st->entity ? "entity" : "tiles");
    } else {
        /* a hosted name keeps its definition */
        tsr_config_t *conf = NULL;
        const char *text = ag->config_json ? ag->config_json : "";
        if (tsr_host_load_conf(w->host, text, strlen(text), name, &conf, &err) == 0) {
            const tsr_conf_group_by_t *gbs[TSR_HOST_MAX_PARTS];
            size_t ng = tsr_served_group_bys(conf, gbs, TSR_HOST_MAX_PARTS);
            size_t i = ag->part_index < 0 ? 0 : (size_t)ag->part_index;
            if (i < ng) {
                char *fp = tsr_served_fingerprint(gbs[i]);
                if (strcmp(fp, st->fp) != 0)
                    wlog(w, TSR_LOG_ERROR,
                         "%s: assigned with a changed definition; keeping the hosted one (a "
                         "changed GroupBy needs a new name)",
                         name);
                free(fp);
            }
        }
        tsr_config_free(conf);
    }

    /* the new owned set, sorted and deduplicated */
    size_t n = ag->n_partitions;
    int32_t *want = tsr_malloc((n ? n : 1) * sizeof(int32_t));
    if (n) memcpy(want, ag->partitions, n * sizeof(int32_t));
    qsort(want, n, sizeof(int32_t), cmp_i32);
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (want[i] >= 0 && (ag->num_partitions <= 0 || want[i] < ag->num_partitions) &&
            (k == 0 || want[k - 1] != want[i]))
            want[k++] = want[i];
    n = k;

    /* what we hold now */
    pthread_rwlock_rdlock(&w->own_lock);
    owned_t *o = own_find(w, name);
    size_t nold = o ? o->n : 0;
    int32_t *old = tsr_malloc((nold ? nold : 1) * sizeof(int32_t));
    if (nold) memcpy(old, o->parts, nold * sizeof(int32_t));
    pthread_rwlock_unlock(&w->own_lock);
    size_t nlost = 0, ngained = 0;
    for (size_t i = 0; i < nold; i++) nlost += !has_part(want, n, old[i]);
    for (size_t i = 0; i < n; i++) ngained += !has_part(old, nold, want[i]);
    int same = nlost == 0 && ngained == 0 && st->nparts == n;

    /* 1. fencing: lost partitions leave reads, then their ingest stops */
    if (nlost) {
        int32_t *keep = tsr_malloc((nold ? nold : 1) * sizeof(int32_t));
        size_t nk = 0;
        for (size_t i = 0; i < nold; i++)
            if (has_part(want, n, old[i])) keep[nk++] = old[i];
        own_set(w, name, ag->num_partitions, keep, nk, ag->batch_end_millis);
        free(keep);
        wlog(w, TSR_LOG_INFO, "%s: %zu partitions lost", name, nlost);
    }
    if (!same) tsr_host_gb_stop_ingests(st);

    /* 2. the committed upload's part files */
    int64_t local = tsr_host_batch_end(w->host, st);
    if (n && ag->batch_end_millis > 0 && ag->upload_dir && ag->upload_dir[0] &&
        (local == INT64_MIN || ag->batch_end_millis > local || (ngained && ag->batch_end_millis >= local))) {
        uint64_t keys = 0;
        tsr_error_clear(&err);
        int64_t t0 = now_ms();
        int rc = tsr_host_load_parts(w->host, st, ag->upload_dir, ag->batch_end_millis, want, n, &keys, &err);
        w->st.loads++;
        if (rc) {
            w->st.load_failures++;
            wlog(w, TSR_LOG_ERROR, "%s: upload B=%lld not loaded (%s); serving what is stored",
                 name, (long long)ag->batch_end_millis, err.msg);
        } else {
            wlog(w, TSR_LOG_INFO, "%s: loaded upload B=%lld of %zu partitions: %llu keys in %lld ms",
                 name, (long long)ag->batch_end_millis, n, (unsigned long long)keys,
                 (long long)(now_ms() - t0));
        }
    }

    /* 3. ingest over the owned set (partitions new to the store from the offset of time B) */
    if (!same) tsr_host_gb_set_partitions(w->host, st, want, n, ag->batch_end_millis);

    /* 4. publish */
    own_set(w, name, ag->num_partitions, want, n, ag->batch_end_millis);
    if (ngained) wlog(w, TSR_LOG_INFO, "%s: %zu partitions gained (%zu owned)", name, ngained, n);
    free(want);
    free(old);
}

int tsr_worker_apply_assignment(tsr_worker_t *w, const uint8_t *msg, size_t n, tsr_error_t *err) {
    Tessera__V1__Assignment *a = tessera__v1__assignment__unpack(NULL, n, msg);
    if (!a) return tsr_error_set(err, TSR_EINVAL, "malformed Assignment");
    pthread_mutex_lock(&w->mu);
    if (a->epoch < w->epoch || (a->epoch == w->epoch && a->revision < w->revision)) {
        w->st.stale_assignments++;
        wlog(w, TSR_LOG_WARN,
             "assignment of epoch %lld revision %lld ignored: epoch %lld revision %lld seen "
             "(commands carrying the old epoch are rejected)",
             (long long)a->epoch, (long long)a->revision, (long long)w->epoch, (long long)w->revision);
        pthread_mutex_unlock(&w->mu);
        tessera__v1__assignment__free_unpacked(a, NULL);
        return 1;
    }
    int changed = a->epoch != w->epoch || a->revision != w->revision;
    if (!changed && !w->fenced && w->st.assignments) {
        /* the snapshot a re-opened watch starts with: nothing to do (its shards are queued) */
        pthread_mutex_unlock(&w->mu);
        tessera__v1__assignment__free_unpacked(a, NULL);
        return 0;
    }
    w->fenced = 0;
    w->epoch = a->epoch;
    w->revision = a->revision;
    w->st.assignments++;
    for (size_t i = 0; i < a->n_group_bys; i++) reconcile_gb(w, a->group_bys[i]);
    /* GroupBys no longer assigned: every partition lost */
    for (size_t i = 0; i < tsr_host_count(w->host); i++) {
        tsr_host_gb_t *st = tsr_host_at(w->host, i);
        int listed = 0;
        for (size_t k = 0; k < a->n_group_bys && !listed; k++)
            listed = a->group_bys[k]->name && strcmp(a->group_bys[k]->name, st->name) == 0;
        if (listed) continue;
        pthread_rwlock_rdlock(&w->own_lock);
        owned_t *o = own_find(w, st->name);
        int had = o && o->n;
        pthread_rwlock_unlock(&w->own_lock);
        if (had) {
            own_set(w, st->name, 0, NULL, 0, 0);
            wlog(w, TSR_LOG_INFO, "%s: no longer assigned", st->name);
        }
        if (had || st->nparts) tsr_host_gb_set_partitions(w->host, st, NULL, 0, 0);
    }
    for (size_t i = 0; i < a->n_shards; i++) queue_shard(w, a->shards[i]);
    if (changed)
        wlog(w, TSR_LOG_INFO, "assignment epoch %lld revision %lld: %zu GroupBys, %zu shards",
             (long long)a->epoch, (long long)a->revision, a->n_group_bys, a->n_shards);
    pthread_mutex_unlock(&w->mu);
    tessera__v1__assignment__free_unpacked(a, NULL);
    return 0;
}

/* ------------------------------------------------------------------------------------------
 * shards */

static int mkdir_p(const char *path, tsr_error_t *err) {
    char buf[4096];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/') continue;
        *p = 0;
        if (mkdir(buf, 0755) != 0 && errno != EEXIST)
            return tsr_error_set(err, TSR_EIO, "%s: cannot create: %s", buf, strerror(errno));
        *p = '/';
    }
    if (mkdir(buf, 0755) != 0 && errno != EEXIST)
        return tsr_error_set(err, TSR_EIO, "%s: cannot create: %s", buf, strerror(errno));
    return 0;
}

typedef struct shard_sink {
    tsr_worker_t *w;
    const tsr_tile_gb_t *tiles;
    size_t nkeys;
    int nparts;
    int32_t *slot;                  /* per partition: writer index or -1 */
    tsr_partfile_writer_t **wr;
    tsr_buf_t scratch, last;
    uint64_t keys;
    int last_slot;
    tsr_error_t *err;
} shard_sink_t;

/* The writer of the key's partition, or -1 when the shard does not keep it. */
static int sink_slot(shard_sink_t *k, const void *key, size_t klen) {
    if (k->last.len == klen && memcmp(k->last.data, key, klen) == 0) return k->last_slot;
    tsr_buf_clear(&k->last);
    tsr_buf_append(&k->last, key, klen);
    int p = tsr_partition_of_key(key, klen, k->nkeys, k->nparts, &k->scratch);
    k->last_slot = p >= 0 && p < k->nparts ? k->slot[p] : -1;
    if (k->last_slot >= 0) k->keys++;
    return k->last_slot;
}

static int shard_tile(void *ud, const void *key, size_t klen, tsr_tile_kind_t kind, int64_t start,
                      const void *const *irs) {
    shard_sink_t *k = ud;
    if (stopping(k->w)) return tsr_error_set(k->err, TSR_EUNAVAIL, "worker is shutting down");
    int s = sink_slot(k, key, klen);
    return s < 0 ? 0 : tsr_partfile_put_tile(k->wr[s], k->tiles, key, klen, kind, start, irs, k->err);
}

static int shard_entity(void *ud, const void *key, size_t klen, const void *vals, size_t vlen) {
    shard_sink_t *k = ud;
    if (stopping(k->w)) return tsr_error_set(k->err, TSR_EUNAVAIL, "worker is shutting down");
    int s = sink_slot(k, key, klen);
    return s < 0 ? 0 : tsr_partfile_put_entity(k->wr[s], key, klen, vals, vlen, k->err);
}

static int is_backfill(const Tessera__V1__ShardTask *t) { return t->kind && strcmp(t->kind, "backfill") == 0; }

/* A backfill shard: the offline engine over the shard's days, writing into the shared
 * warehouse's output table exactly as `tessera backfill` does. Each ds partition is swapped in
 * whole (table.h), so shards of other days writing the same table at the same time do not
 * meet, and a retried shard rewrites its days atomically; leftover .tmp-* folders are left to
 * their writers (shared_output). *rows = rows written. */
static int run_backfill_shard(tsr_worker_t *w, const Tessera__V1__ShardTask *t, uint64_t *rows,
                              tsr_error_t *err) {
    const char *name = t->group_by && t->group_by[0] ? t->group_by : "config";
    tsr_backfill_opts_t o;
    memset(&o, 0, sizeof o);
    o.format = TSR_FORMAT_JSONL;
    o.shared_output = 1;
    o.stop = &w->stopping;          /* a drain abandons the shard at the next file or day */
    if (!t->start_ds || tsr_ds_parse(t->start_ds, &o.start_day) != 0 || !t->end_ds ||
        tsr_ds_parse(t->end_ds, &o.end_day) != 0)
        return tsr_error_set(err, TSR_EINVAL, "backfill shard of %s: bad days '%s'..'%s'", name,
                             t->start_ds ? t->start_ds : "", t->end_ds ? t->end_ds : "");
    o.warehouse = t->warehouse && t->warehouse[0] ? t->warehouse : w->warehouse;
    if (!o.warehouse) return tsr_error_set(err, TSR_EINVAL, "backfill shard of %s: no warehouse", name);
    const char *text = t->config_json ? t->config_json : "";
    tsr_config_options_t copt;
    memset(&copt, 0, sizeof copt);
    copt.warehouse = o.warehouse;
    tsr_diag_t d;
    tsr_diag_init(&d);
    tsr_config_t *conf = NULL;
    int rc = tsr_config_load_string(text, strlen(text), name, &copt, &conf, &d);
    if (rc) {
        tsr_error_set(err, rc, "backfill shard of %s: %s", name, d.n ? d.items[0].text : tsr_strerror(rc));
        tsr_diag_free(&d);
        tsr_config_free(conf);
        return rc;
    }
    tsr_diag_free(&d);
    tsr_backfill_stats_t st;
    rc = tsr_backfill_run(conf, &o, &st, err);
    *rows = st.rows_written;
    tsr_config_free(conf);
    return rc;
}

static int run_shard(tsr_worker_t *w, const Tessera__V1__ShardTask *t, uint64_t *keys, tsr_error_t *err) {
    *keys = 0;
    if (is_backfill(t)) return run_backfill_shard(w, t, keys, err);
    const char *gbname = t->group_by ? t->group_by : "";
    int64_t E;
    if (t->ds && t->ds[0]) {
        if (tsr_ds_parse(t->ds, &E) != 0)
            return tsr_error_set(err, TSR_EINVAL, "shard of %s: ds '%s' is not a date", gbname, t->ds);
    } else {
        E = tsr_floor_div(t->batch_end_millis, TSR_MS_PER_DAY) - 1;
    }
    int64_t B = (E + 1) * TSR_MS_PER_DAY;
    if (t->num_partitions <= 0) return tsr_error_set(err, TSR_EINVAL, "shard of %s: no partition count", gbname);
    if (!t->out_dir || !t->out_dir[0]) return tsr_error_set(err, TSR_EINVAL, "shard of %s: no out_dir", gbname);
    const char *wh = t->warehouse && t->warehouse[0] ? t->warehouse : w->warehouse;
    const char *text = t->config_json ? t->config_json : "";
    tsr_config_t *conf;
    int rc = tsr_host_load_conf(w->host, text, strlen(text), gbname, &conf, err);
    if (rc) return rc;
    const tsr_conf_group_by_t *gbs[TSR_HOST_MAX_PARTS];
    size_t ng = tsr_served_group_bys(conf, gbs, TSR_HOST_MAX_PARTS);
    size_t gi = t->part_index < 0 ? 0 : (size_t)t->part_index;
    if (gi >= ng || strcmp(gbs[gi]->meta.name, gbname) != 0) {
        tsr_config_free(conf);
        return tsr_error_set(err, TSR_ECONFIG, "shard: part %d of the config is not GroupBy %s",
                             (int)t->part_index, gbname);
    }
    const tsr_conf_group_by_t *g = gbs[gi];
    int entity = tsr_served_is_entity(g);
    tsr_gb_online_t *plan = NULL;
    if (!entity) rc = tsr_gb_online_build(g, wh, E, &plan, err); /* the kernels that encode IRs */
    if (rc == 0) rc = mkdir_p(t->out_dir, err);
    shard_sink_t k;
    memset(&k, 0, sizeof k);
    k.w = w;
    k.tiles = plan ? tsr_gb_online_tiles(plan) : NULL;
    k.nkeys = g->n_keys;
    k.nparts = t->num_partitions;
    k.err = err;
    k.last_slot = -1;
    tsr_buf_init(&k.scratch);
    tsr_buf_init(&k.last);
    k.slot = tsr_malloc((size_t)k.nparts * sizeof(int32_t));
    for (int p = 0; p < k.nparts; p++) k.slot[p] = -1;
    k.wr = tsr_calloc(t->n_partitions ? t->n_partitions : 1, sizeof *k.wr);
    size_t nw = 0;
    for (size_t i = 0; i < t->n_partitions && rc == 0; i++) {
        int32_t p = t->partitions[i];
        if (p < 0 || p >= k.nparts) {
            rc = tsr_error_set(err, TSR_EINVAL, "shard of %s: partition %d out of range", gbname, (int)p);
            break;
        }
        if (k.slot[p] >= 0) continue;
        char path[4096];
        tsr_partfile_path(t->out_dir, p, path, sizeof path);
        tsr_partfile_header_t h = {gbname, p, k.nparts, B, entity ? TSR_PARTFILE_ENTITY : TSR_PARTFILE_TILES,
                                   entity ? 0u : (uint32_t)k.tiles->ncols};
        rc = tsr_partfile_create(path, &h, &k.wr[nw], err);
        if (rc == 0) k.slot[p] = (int32_t)nw++;
    }
    if (rc == 0)
        rc = tsr_host_batch_compute(g, entity, E, wh, shard_tile, shard_entity, &k, err);
    for (size_t i = 0; i < nw; i++) {
        if (rc == 0) rc = tsr_partfile_finish(k.wr[i], err);
        else tsr_partfile_abort(k.wr[i]);
    }
    *keys = k.keys;
    free(k.wr);
    free(k.slot);
    tsr_buf_free(&k.scratch);
    tsr_buf_free(&k.last);
    tsr_gb_online_free(plan);
    tsr_config_free(conf);
    return rc;
}

int tsr_worker_run_shard(tsr_worker_t *w, const uint8_t *msg, size_t n, uint64_t *keys,
                         tsr_error_t *err) {
    Tessera__V1__ShardTask *t = tessera__v1__shard_task__unpack(NULL, n, msg);
    if (!t) return tsr_error_set(err, TSR_EINVAL, "malformed ShardTask");
    int rc = run_shard(w, t, keys, err);
    tessera__v1__shard_task__free_unpacked(t, NULL);
    return rc;
}

/* ------------------------------------------------------------------------------------------
 * coordinator calls */

/* The cached client of addr (under c_mu). Clients are never freed before stop: a call may be
 * in flight on any of them, and the set of addresses seen (the list plus leaders it redirected
 * to) stays small. */
static tsr_rpc_client_t *client_for(tsr_worker_t *w, const char *addr) {
    for (size_t i = 0; i < w->ncl; i++)
        if (strcmp(w->cl[i].addr, addr) == 0) return w->cl[i].c;
    tsr_error_t e;
    tsr_rpc_client_t *c = tsr_rpc_client_new(addr, &e);
    if (!c) return NULL;
    if (w->ncl == w->capcl) {
        w->capcl = w->capcl ? 2 * w->capcl : 8;
        w->cl = tsr_realloc(w->cl, w->capcl * sizeof *w->cl);
    }
    w->cl[w->ncl].addr = tsr_strdup(addr);
    w->cl[w->ncl].c = c;
    w->ncl++;
    return c;
}

/* The current target (copied into buf) and its client. */
static tsr_rpc_client_t *coord_target(tsr_worker_t *w, char *buf, size_t cap) {
    pthread_mutex_lock(&w->c_mu);
    snprintf(buf, cap, "%s", w->leader ? w->leader : w->addrs[w->cur]);
    tsr_rpc_client_t *c = client_for(w, buf);
    pthread_mutex_unlock(&w->c_mu);
    return c;
}

/* After a failed call to target: follow "leader is X", else move to the next address.
 * Returns 1 when redirected (retry at once). */
static int coord_failed(tsr_worker_t *w, const char *target, const tsr_rpc_reply_t *r) {
    char leader[256] = "";
    if (r && r->status == TSR_GRPC_UNAVAILABLE) {
        size_t ml;
        const char *md = tsr_rpc_reply_metadata(r, "tessera-leader", &ml);
        const char *at = strstr(r->message, "leader is ");
        if (md && ml && ml < sizeof leader) {
            memcpy(leader, md, ml);
            leader[ml] = 0;
        } else if (at) {
            snprintf(leader, sizeof leader, "%s", at + strlen("leader is "));
            leader[strcspn(leader, " ;,\n")] = 0;
        }
    }
    if (!strchr(leader, ':')) leader[0] = 0; /* "leader is unknown": no address to follow */
    pthread_mutex_lock(&w->c_mu);
    int redirected = 0, log_it = 0;
    if (leader[0] && strcmp(leader, target) != 0) {
        free(w->leader);
        w->leader = tsr_strdup(leader);
        redirected = 1;
        /* one line per redirect, repeated at most every 5 s */
        char pair[sizeof w->redirect_logged];
        snprintf(pair, sizeof pair, "%.255s -> %.255s", target, leader);
        int64_t t = now_ms();
        if (strcmp(pair, w->redirect_logged) != 0 || t - w->redirect_logged_at >= 5000) {
            memcpy(w->redirect_logged, pair, sizeof pair);
            w->redirect_logged_at = t;
            log_it = 1;
        }
    } else {
        free(w->leader);
        w->leader = NULL;
        /* the next address after the one that failed */
        for (size_t i = 0; i < w->naddr; i++)
            if (strcmp(w->addrs[i], target) == 0) w->cur = i;
        w->cur = (w->cur + 1) % w->naddr;
    }
    pthread_mutex_unlock(&w->c_mu);
    if (log_it) wlog(w, TSR_LOG_INFO, "coordinator %s is not the leader: trying %s", target, leader);
    return redirected;
}

/* A unary call to the leader: follows redirects and tries each address once. */
static int coord_call(tsr_worker_t *w, const char *method, const tsr_buf_t *req, tsr_rpc_reply_t *reply,
                      tsr_error_t *err) {
    int rc = TSR_EUNAVAIL;
    for (size_t attempt = 0; attempt < 2 * w->naddr + 2 && !stopping(w); attempt++) {
        char target[256];
        tsr_rpc_client_t *c = coord_target(w, target, sizeof target);
        if (!c) {
            rc = tsr_error_set(err, TSR_EUNAVAIL, "cannot create a client for %s", target);
            coord_failed(w, target, NULL);
            continue;
        }
        tsr_rpc_call_opts_t co;
        memset(&co, 0, sizeof co);
        co.timeout_ms = CALL_TIMEOUT_MS;
        rc = tsr_rpc_client_call(c, method, req->data, req->len, &co, reply, err);
        if (rc == 0) return 0;
        if (reply->status != TSR_GRPC_UNAVAILABLE && reply->status != TSR_GRPC_DEADLINE_EXCEEDED) return rc;
        coord_failed(w, target, reply);
    }
    return rc;
}

static int do_register(tsr_worker_t *w, tsr_error_t *err) {
    Tessera__V1__RegisterWorkerRequest rq;
    tessera__v1__register_worker_request__init(&rq);
    rq.worker_id = w->id;
    rq.address = w->advertise;
    rq.started_at_millis = now_ms();
    tsr_buf_t b;
    tsr_buf_init(&b);
    tsr_pb_pack(&rq.base, &b);
    tsr_rpc_reply_t r;
    tsr_rpc_reply_init(&r);
    int rc = coord_call(w, M_REGISTER, &b, &r, err);
    if (rc == 0) {
        Tessera__V1__RegisterWorkerResponse *rs =
            tessera__v1__register_worker_response__unpack(NULL, r.body.len, r.body.data);
        if (!rs) {
            rc = tsr_error_set(err, TSR_EINVAL, "malformed RegisterWorkerResponse");
        } else {
            __atomic_store_n(&w->ttl_ms, rs->lease_ttl_ms > 0 ? rs->lease_ttl_ms : 5000, __ATOMIC_RELEASE);
            __atomic_store_n(&w->lease_id, rs->lease_id ? rs->lease_id : 1, __ATOMIC_RELEASE);
            __atomic_store_n(&w->relogin, 0, __ATOMIC_RELEASE);
            pthread_mutex_lock(&w->mu);
            w->st.registrations++;
            pthread_mutex_unlock(&w->mu);
            wlog(w, TSR_LOG_INFO, "registered as %s (%s): lease %lld, ttl %lld ms, epoch %lld", w->id,
                 w->advertise, (long long)rs->lease_id, (long long)rs->lease_ttl_ms, (long long)rs->epoch);
            tessera__v1__register_worker_response__free_unpacked(rs, NULL);
        }
    }
    tsr_rpc_reply_free(&r);
    tsr_buf_free(&b);
    return rc;
}

static int watch_cb(void *ud, const uint8_t *msg, size_t n) {
    tsr_worker_t *w = ud;
    if (stopping(w) || __atomic_load_n(&w->relogin, __ATOMIC_ACQUIRE)) return 1;
    tsr_error_t e;
    tsr_error_clear(&e);
    if (tsr_worker_apply_assignment(w, msg, n, &e) < 0) wlog(w, TSR_LOG_WARN, "assignment: %s", e.msg);
    return 0;
}

static void *session_main(void *arg) {
    tsr_worker_t *w = arg;
    prctl(PR_SET_NAME, "tsr-session", 0, 0, 0);
    int64_t backoff = BACKOFF_MIN_MS;
    tsr_rpc_reply_t r;
    tsr_rpc_reply_init(&r);
    while (!stopping(w)) {
        tsr_error_t err;
        tsr_error_clear(&err);
        if (__atomic_load_n(&w->lease_id, __ATOMIC_ACQUIRE) == 0 ||
            __atomic_load_n(&w->relogin, __ATOMIC_ACQUIRE)) {
            if (do_register(w, &err) != 0) {
                wlog(w, TSR_LOG_WARN, "register: %s (retry in %lld ms)", err.msg, (long long)backoff);
                nap(w, backoff);
                backoff = backoff * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : backoff * 2;
                continue;
            }
        }
        Tessera__V1__WatchAssignmentsRequest rq;
        tessera__v1__watch_assignments_request__init(&rq);
        rq.worker_id = w->id;
        rq.lease_id = __atomic_load_n(&w->lease_id, __ATOMIC_ACQUIRE);
        tsr_buf_t b;
        tsr_buf_init(&b);
        tsr_pb_pack(&rq.base, &b);
        char target[256];
        tsr_rpc_client_t *c = coord_target(w, target, sizeof target);
        tsr_rpc_call_opts_t co;
        memset(&co, 0, sizeof co);
        co.timeout_ms = WATCH_DEADLINE_MS;
        int rc = c ? tsr_rpc_client_stream(c, M_WATCH, b.data, b.len, &co, watch_cb, w, &r, &err)
                   : TSR_EUNAVAIL;
        tsr_buf_free(&b);
        if (stopping(w)) break;
        if (rc == 0 || r.status == TSR_GRPC_DEADLINE_EXCEEDED || r.status == TSR_GRPC_CANCELLED) {
            backoff = BACKOFF_MIN_MS; /* the stream ended normally: open it again */
            continue;
        }
        if (r.status == TSR_GRPC_NOT_FOUND) { /* our lease is unknown: register again */
            __atomic_store_n(&w->relogin, 1, __ATOMIC_RELEASE);
            continue;
        }
        if (coord_failed(w, target, &r)) continue;
        wlog(w, TSR_LOG_WARN, "watch at %s: %s (retry in %lld ms)", target, err.msg, (long long)backoff);
        nap(w, backoff);
        backoff = backoff * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : backoff * 2;
    }
    tsr_rpc_reply_free(&r);
    return NULL;
}

/* The KeepAlive report; skipped (no partitions) when a reconcile holds mu. */
static void build_report(tsr_worker_t *w, Tessera__V1__KeepAliveRequest *rq, tsr_arena_t *a) {
    if (pthread_mutex_trylock(&w->mu) != 0) return;
    rq->epoch = w->epoch;
    size_t cap = 0;
    pthread_rwlock_rdlock(&w->own_lock);
    for (size_t i = 0; i < w->nown; i++) cap += w->own[i].n;
    rq->partitions = tsr_arena_alloc(a, (cap ? cap : 1) * sizeof(*rq->partitions));
    for (size_t i = 0; i < w->nown; i++) {
        owned_t *o = &w->own[i];
        tsr_host_gb_t *st = tsr_host_find(w->host, o->name);
        if (!st) continue;
        int64_t b = tsr_host_batch_end(w->host, st);
        for (size_t k = 0; k < o->n; k++) {
            Tessera__V1__PartitionState *ps = tsr_arena_alloc(a, sizeof *ps);
            tessera__v1__partition_state__init(ps);
            ps->group_by = tsr_arena_strdup(a, o->name);
            ps->partition = o->parts[k];
            ps->batch_end_millis = b == INT64_MIN ? 0 : b;
            ps->lag = -1;
            ps->next_offset = -1;
            int64_t ev, lag;
            if (tsr_host_partition_stats(st, o->parts[k], &ev, &lag) == 0) {
                ps->events = ev;
                ps->lag = lag;
            }
            if (st->ning && st->ing[0].in) {
                char on[300];
                snprintf(on, sizeof on, "%s/%d", tsr_ingest_topic(st->ing[0].in), (int)o->parts[k]);
                ps->next_offset = tsr_tile_store_offset(tsr_host_tile_store(w->host), o->name, on);
            }
            rq->partitions[rq->n_partitions++] = ps;
        }
    }
    pthread_rwlock_unlock(&w->own_lock);
    pthread_mutex_unlock(&w->mu);
}

static void *keepalive_main(void *arg) {
    tsr_worker_t *w = arg;
    prctl(PR_SET_NAME, "tsr-keepalive", 0, 0, 0);
    tsr_rpc_reply_t r;
    tsr_rpc_reply_init(&r);
    tsr_arena_t a;
    tsr_arena_init(&a, 1 << 14);
    while (!stopping(w)) {
        int64_t ttl = __atomic_load_n(&w->ttl_ms, __ATOMIC_ACQUIRE);
        int64_t lease = __atomic_load_n(&w->lease_id, __ATOMIC_ACQUIRE);
        if (lease == 0 || __atomic_load_n(&w->relogin, __ATOMIC_ACQUIRE)) {
            nap(w, 50);
            continue;
        }
        tsr_arena_reset(&a);
        Tessera__V1__KeepAliveRequest rq;
        tessera__v1__keep_alive_request__init(&rq);
        rq.worker_id = w->id;
        rq.lease_id = lease;
        build_report(w, &rq, &a);
        tsr_buf_t b;
        tsr_buf_init(&b);
        tsr_pb_pack(&rq.base, &b);
        tsr_error_t err;
        tsr_error_clear(&err);
        int rc = coord_call(w, M_KEEPALIVE, &b, &r, &err);
        tsr_buf_free(&b);
        if (rc == 0) {
            Tessera__V1__KeepAliveResponse *rs =
                tessera__v1__keep_alive_response__unpack(NULL, r.body.len, r.body.data);
            if (rs && rs->lease_ttl_ms > 0) __atomic_store_n(&w->ttl_ms, rs->lease_ttl_ms, __ATOMIC_RELEASE);
            if (rs) tessera__v1__keep_alive_response__free_unpacked(rs, NULL);
        } else if (r.status == TSR_GRPC_NOT_FOUND) {
            /* the lease expired: our partitions may be someone else's now */
            wlog(w, TSR_LOG_WARN, "lease lost (%s): stopping every ingest, registering again", err.msg);
            __atomic_store_n(&w->relogin, 1, __ATOMIC_RELEASE);
            pthread_mutex_lock(&w->mu);
            w->st.lease_losses++;
            fence_all(w);
            pthread_mutex_unlock(&w->mu);
        } else {
            wlog(w, TSR_LOG_WARN, "keep-alive: %s", err.msg);
        }
        nap(w, ttl / 5 > 0 ? ttl / 5 : 100); /* the leader declares a worker silent for 4/5 TTL dead */
    }
    tsr_arena_free(&a);
    tsr_rpc_reply_free(&r);
    return NULL;
}

static void report_shard(tsr_worker_t *w, const Tessera__V1__ShardTask *t, int rc, const char *msg,
                         uint64_t keys) {
    Tessera__V1__ReportShardRequest rq;
    tessera__v1__report_shard_request__init(&rq);
    rq.worker_id = w->id;
    rq.job_id = t->job_id;
    rq.shard = t->shard;
    rq.attempt = t->attempt;
    rq.ok = rc == 0;
    rq.error = (char *)(rc == 0 ? "" : msg);
    rq.keys = (int64_t)keys;
    pthread_mutex_lock(&w->mu);
    rq.epoch = w->epoch;
    pthread_mutex_unlock(&w->mu);
    tsr_buf_t b;
    tsr_buf_init(&b);
    tsr_pb_pack(&rq.base, &b);
    tsr_rpc_reply_t r;
    tsr_rpc_reply_init(&r);
    tsr_error_t err;
    /* the report matters (the job waits for it): retry a while */
    for (int i = 0; i < 20 && !stopping(w); i++) {
        tsr_error_clear(&err);
        if (coord_call(w, M_REPORT, &b, &r, &err) == 0) break;
        wlog(w, TSR_LOG_WARN, "report of shard %s/%d: %s", t->job_id, (int)t->shard, err.msg);
        nap(w, 500);
    }
    tsr_rpc_reply_free(&r);
    tsr_buf_free(&b);
}

static void *shards_main(void *arg) {
    tsr_worker_t *w = arg;
    prctl(PR_SET_NAME, "tsr-shards", 0, 0, 0);
    while (!stopping(w)) {
        pthread_mutex_lock(&w->q_mu);
        /* no timeout: a queued shard and tsr_worker_stop both signal q_cv under q_mu (an idle
         * worker's job thread used to wake 10 times a second to look) */
        while (!w->q_head && !stopping(w)) pthread_cond_wait(&w->q_cv, &w->q_mu);
        shard_t *s = w->q_head;
        if (s) {
            w->q_head = s->next;
            if (!w->q_head) w->q_tail = NULL;
        }
        pthread_mutex_unlock(&w->q_mu);
        if (!s) continue;
        Tessera__V1__ShardTask *t = tessera__v1__shard_task__unpack(NULL, s->len, s->msg);
        if (t) {
            uint64_t keys = 0;
            tsr_error_t err;
            tsr_error_clear(&err);
            int64_t t0 = now_ms();
            int rc = run_shard(w, t, &keys, &err);
            if (!stopping(w)) {
                pthread_mutex_lock(&w->mu);
                if (rc == 0) w->st.shards_ok++;
                else w->st.shards_failed++;
                pthread_mutex_unlock(&w->mu);
                if (rc == 0 && is_backfill(t))
                    wlog(w, TSR_LOG_INFO, "backfill shard %s/%d of %s (%s..%s): %llu rows in %lld ms",
                         t->job_id, (int)t->shard, t->group_by, t->start_ds, t->end_ds, (unsigned long long)keys,
                         (long long)(now_ms() - t0));
                else if (rc == 0)
                    wlog(w, TSR_LOG_INFO, "shard %s/%d of %s: %llu keys in %zu part files in %lld ms",
                         t->job_id, (int)t->shard, t->group_by, (unsigned long long)keys, t->n_partitions,
                         (long long)(now_ms() - t0));
                else
                    wlog(w, TSR_LOG_ERROR, "shard %s/%d of %s failed: %s", t->job_id, (int)t->shard,
                         t->group_by, err.msg);
                if (w->naddr) report_shard(w, t, rc, err.msg, keys);
            }
            tessera__v1__shard_task__free_unpacked(t, NULL);
        }
        free(s->msg);
        free(s);
    }
    return NULL;
}

/* ------------------------------------------------------------------------------------------
 * WorkerService */

/* A ReadPartition of up to READ_INLINE_ITEMS items (8 entities of a 10-GroupBy Join) runs on
 * the completion-queue thread that received it; a larger one is offloaded (TSR_RPC_OFFLOAD)
 * so it does not hold up the small reads behind it (as serve does, docs/serve.md). */
#define READ_INLINE_ITEMS 80

static int h_read(void *ud, tsr_rpc_call_t *call, const uint8_t *req, size_t n, tsr_buf_t *resp,
                  tsr_error_t *err) {
    tsr_worker_t *w = ud;
    if (!tsr_rpc_call_offloaded(call) && tsr_pb_count_field(req, n, 1) > READ_INLINE_ITEMS)
        return TSR_RPC_OFFLOAD; /* ReadPartitionRequest.items */
    tsr_arena_t *a = thread_arena(w);
    Tessera__V1__ReadPartitionRequest *rq =
        tsr_pb_unpack(&tessera__v1__read_partition_request__descriptor, req, n, a, err);
    if (!rq) return TSR_EINVAL;
    Tessera__V1__ReadPartitionResponse out;
    tessera__v1__read_partition_response__init(&out);
    out.n_results = rq->n_items;
    out.results = tsr_arena_alloc(a, (rq->n_items ? rq->n_items : 1) * sizeof(*out.results));
    /* the owned items' reads in one batch (one multi-get per column family for them all) */
    tsr_host_vread_t *rd = tsr_arena_alloc(a, (rq->n_items ? rq->n_items : 1) * sizeof *rd);
    size_t *of = tsr_arena_alloc(a, (rq->n_items ? rq->n_items : 1) * sizeof *of);
    size_t nr = 0;
    for (size_t i = 0; i < rq->n_items; i++) {
        const Tessera__V1__ReadItem *it = rq->items[i];
        Tessera__V1__ReadResult *r = tsr_arena_alloc(a, sizeof *r);
        tessera__v1__read_result__init(r);
        out.results[i] = r;
        const char *gb = it->group_by ? it->group_by : "";
        if (!tsr_worker_owns(w, gb, it->partition)) {
            r->status = TESSERA__V1__READ_STATUS__READ_NOT_OWNER;
            r->error = tsr_arena_printf(a, "worker %s does not own %s partition %d", w->id, gb,
                                        (int)it->partition);
            continue;
        }
        rd[nr] = (tsr_host_vread_t){.gb = gb, .key = it->key.data, .klen = it->key.len, .q = it->at_millis};
        of[nr++] = i;
    }
    tsr_host_read_values_many(w->host, rd, nr, a);
    for (size_t j = 0; j < nr; j++) {
        Tessera__V1__ReadResult *r = out.results[of[j]];
        if (rd[j].status) {
            r->status = TESSERA__V1__READ_STATUS__READ_ERROR;
            r->error = (char *)rd[j].error;
            continue;
        }
        r->n_values = rd[j].nvalues;
        r->values = tsr_arena_alloc(a, (rd[j].nvalues ? rd[j].nvalues : 1) * sizeof(*r->values));
        for (size_t k = 0; k < rd[j].nvalues; k++) r->values[k] = tsr_pb_value_new(&rd[j].values[k], a);
    }
    tsr_pb_pack(&out.base, resp);
    return 0;
}

/* ------------------------------------------------------------------------------------------
 * start / stop */

/* --id, else <data_dir>/worker-id, generated once ("w-" + 12 hex digits). */
static int load_id(tsr_worker_t *w, tsr_error_t *err) {
    if (w->o.id && w->o.id[0]) {
        w->id = tsr_strdup(w->o.id);
        return 0;
    }
    char path[4096], buf[128];
    snprintf(path, sizeof path, "%s/worker-id", w->data_dir);
    FILE *f = fopen(path, "r");
    if (f) {
        size_t n = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        buf[n] = 0;
        buf[strcspn(buf, "\r\n \t")] = 0;
        if (buf[0]) {
            w->id = tsr_strdup(buf);
            return 0;
        }
    }
    unsigned char rnd[6] = {0};
    int fd = open("/dev/urandom", O_RDONLY);
    if (fd < 0 || read(fd, rnd, sizeof rnd) != (ssize_t)sizeof rnd) {
        uint64_t x = (uint64_t)now_ms() ^ ((uint64_t)getpid() << 20);
        memcpy(rnd, &x, sizeof rnd);
    }
    if (fd >= 0) close(fd);
    snprintf(buf, sizeof buf, "w-%02x%02x%02x%02x%02x%02x", rnd[0], rnd[1], rnd[2], rnd[3], rnd[4], rnd[5]);
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    f = fopen(tmp, "w");
    if (!f || fprintf(f, "%s\n", buf) < 0 || fclose(f) != 0 || rename(tmp, path) != 0)
        return tsr_error_set(err, TSR_EIO, "%s: cannot write the worker id: %s", path, strerror(errno));
    w->id = tsr_strdup(buf);
    return 0;
}

int tsr_worker_start(const tsr_worker_opts_t *o, tsr_worker_t **out, tsr_error_t *err) {
    *out = NULL;
    tsr_worker_t *w = tsr_calloc(1, sizeof *w);
    w->o = *o;
    w->data_dir = tsr_strdup(o->data_dir);
    w->warehouse = tsr_strdup(o->warehouse ? o->warehouse : "");
    w->kafka = o->kafka_bootstrap && o->kafka_bootstrap[0] ? tsr_strdup(o->kafka_bootstrap) : NULL;
    w->listen = tsr_strdup(o->listen ? o->listen : "127.0.0.1:0");
    pthread_mutex_init(&w->mu, NULL);
    pthread_mutex_init(&w->c_mu, NULL);
    pthread_mutex_init(&w->q_mu, NULL);
    pthread_cond_init(&w->q_cv, NULL);
    pthread_mutex_init(&w->nap_mu, NULL);
    pthread_cond_init(&w->nap_cv, NULL);
    pthread_rwlock_init(&w->own_lock, NULL);
    pthread_key_create(&w->arena_key, arena_destroy);
    if (o->coordinators && o->coordinators[0]) {
        char *list = tsr_strdup(o->coordinators), *save = NULL;
        for (char *t = strtok_r(list, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
            if (!*t) continue;
            w->addrs = tsr_realloc(w->addrs, (w->naddr + 1) * sizeof(char *));
            w->addrs[w->naddr++] = tsr_strdup(t);
        }
        free(list);
    }
    int rc = mkdir_p(w->data_dir, err);
    if (rc == 0) rc = load_id(w, err);
    if (rc == 0) {
        tsr_host_opts_t ho;
        memset(&ho, 0, sizeof ho);
        ho.data_dir = w->data_dir;
        ho.warehouse = w->warehouse;
        ho.kafka_bootstrap = w->kafka;
        ho.allowed_lateness_ms = o->allowed_lateness_ms;
        ho.log = o->log;
        ho.component = "worker";
        rc = tsr_host_open(&ho, &w->host, err);
    }
    if (rc == 0) {
        tsr_rpc_server_opts_t ro;
        memset(&ro, 0, sizeof ro);
        /* small reads run inline on one CQ thread by default (more cost gRPC poller
         * hand-offs, docs/rpc.md), large ones on the offload thread */
        ro.cq_threads = w->o.rpc_threads > 0 ? w->o.rpc_threads : 1;
        ro.offload_threads = 1;
        w->rpc = tsr_rpc_server_new(w->listen, &ro, err);
        if (!w->rpc) rc = err ? err->code : TSR_EIO;
    }
    if (rc == 0) rc = tsr_rpc_server_add_unary(w->rpc, M_READ, h_read, w, err);
    if (rc == 0) rc = tsr_rpc_health_register(w->rpc, err);
    if (rc == 0) rc = tsr_rpc_server_start(w->rpc, err);
    if (rc) {
        tsr_worker_stop(w);
        return rc;
    }
    if (o->advertise && o->advertise[0]) {
        w->advertise = tsr_strdup(o->advertise);
    } else {
        /* the listen host with the bound port ("0.0.0.0" is no address to advertise) */
        char host[256];
        snprintf(host, sizeof host, "%s", w->listen);
        char *colon = strrchr(host, ':');
        if (colon) *colon = 0;
        if (!host[0] || strcmp(host, "0.0.0.0") == 0) snprintf(host, sizeof host, "127.0.0.1");
        char buf[300];
        snprintf(buf, sizeof buf, "%s:%d", host, tsr_rpc_server_port(w->rpc));
        w->advertise = tsr_strdup(buf);
    }
    if (w->naddr) {
        w->started_threads = 1;
        pthread_create(&w->t_session, NULL, session_main, w);
        pthread_create(&w->t_keepalive, NULL, keepalive_main, w);
    }
    pthread_create(&w->t_shards, NULL, shards_main, w);
    w->started_threads |= 2;
    wlog(w, TSR_LOG_INFO, "worker %s serving on %s (data %s, warehouse %s, kafka %s)", w->id,
         w->advertise, w->data_dir, w->warehouse, w->kafka ? w->kafka : "none");
    *out = w;
    return 0;
}

int tsr_worker_port(const tsr_worker_t *w) { return tsr_rpc_server_port(w->rpc); }
const char *tsr_worker_id(const tsr_worker_t *w) { return w->id; }
tsr_host_t *tsr_worker_host(tsr_worker_t *w) { return w->host; }

void tsr_worker_stats(tsr_worker_t *w, tsr_worker_stats_t *out) {
    pthread_mutex_lock(&w->mu);
    *out = w->st;
    out->epoch = w->epoch;
    out->revision = w->revision;
    pthread_mutex_unlock(&w->mu);
    out->registered = __atomic_load_n(&w->lease_id, __ATOMIC_ACQUIRE) != 0 &&
                      !__atomic_load_n(&w->relogin, __ATOMIC_ACQUIRE);
}

void tsr_worker_stop(tsr_worker_t *w) {
    if (!w) return;
    __atomic_store_n(&w->stopping, 1, __ATOMIC_RELEASE);
    pthread_mutex_lock(&w->nap_mu);
    pthread_cond_broadcast(&w->nap_cv);
    pthread_mutex_unlock(&w->nap_mu);
    if (w->rpc) tsr_rpc_health_set(w->rpc, "", TSR_HEALTH_NOT_SERVING);
    if (w->started_threads & 1) {
        pthread_join(w->t_session, NULL);
        pthread_join(w->t_keepalive, NULL);
    }
    if (w->started_threads & 2) {
        pthread_mutex_lock(&w->q_mu);
        pthread_cond_broadcast(&w->q_cv);
        pthread_mutex_unlock(&w->q_mu);
        pthread_join(w->t_shards, NULL);
    }
    /* ingests finish the batch in hand: what they consumed is stored with its offsets */
    if (w->host) tsr_host_stop_ingests(w->host);
    tsr_rpc_server_free(w->rpc);
    tsr_host_close(w->host);
    for (shard_t *s = w->q_head, *nx; s; s = nx) {
        nx = s->next;
        free(s->msg);
        free(s);
    }
    for (size_t i = 0; i < w->ncl; i++) {
        tsr_rpc_client_free(w->cl[i].c);
        free(w->cl[i].addr);
    }
    free(w->cl);
    for (size_t i = 0; i < w->naddr; i++) free(w->addrs[i]);
    free(w->addrs);
    free(w->leader);
    for (size_t i = 0; i < w->nown; i++) {
        free(w->own[i].name);
        free(w->own[i].parts);
    }
    free(w->own);
    for (size_t i = 0; i < w->nseen; i++) free(w->seen_shards[i]);
    free(w->seen_shards);
    tsr_arena_t *a = pthread_getspecific(w->arena_key);
    if (a) arena_destroy(a);
    pthread_key_delete(w->arena_key);
    pthread_rwlock_destroy(&w->own_lock);
    pthread_cond_destroy(&w->q_cv);
    pthread_mutex_destroy(&w->q_mu);
    pthread_cond_destroy(&w->nap_cv);
    pthread_mutex_destroy(&w->nap_mu);
    pthread_mutex_destroy(&w->c_mu);
    pthread_mutex_destroy(&w->mu);
    free(w->data_dir);
    free(w->warehouse);
    free(w->kafka);
    free(w->listen);
    free(w->advertise);
    free(w->id);
    free(w);
}
