/*
 * serve.c — the embedded default's server object (serve_int.h).
 */
#include <pthread.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <time.h>

#include "serve_int.h"
#include "tessera.pb-c.h"
#include "tsr/backfill.h"
#include "tsr/batch.h"
#include "tsr/entity_store.h"
#include "tsr/host.h"
#include "tsr/http.h"
#include "tsr/ingest.h"
#include "tsr/log.h"
#include "tsr/metrics.h"
#include "tsr/pbvalue.h"
#include "tsr/registry.h"
#include "tsr/rpc.h"
#include "tsr/serving.h"
#include "tsr/tile_store.h"
#include "tsr/time.h"

#ifndef TSR_VERSION
#define TSR_VERSION "0.1.0"
#endif

/* GroupBy states (per-GroupBy config, plan, tiles, ingests) live in the host (worker/host.h),
 * which `tessera-worker` shares. */
typedef tsr_host_gb_t gb_state_t;
#define MAX_INGESTS TSR_HOST_MAX_INGESTS

struct tsr_server {
    tsr_server_opts_t o;
    char *data_dir, *warehouse, *bind, *kafka;
    int64_t started_ms;
    tsr_registry_t *reg;
    tsr_host_t *host;               /* tile and entity stores, GroupBy states (under mu) */
    tsr_serving_t *serving;
    tsr_metrics_t *metrics;
    tsr_counter_t *c_rows, *c_row_fail, *c_part_err, *c_requests;
    tsr_serving_stats_t last_serving;
    tsr_gauge_t *g_configs;
    pthread_mutex_t mu;             /* GroupBy states, apply/delete */
    pthread_mutex_t upload_mu;      /* one upload at a time */
    int stopping;                   /* atomic */
    tsr_rpc_server_t *rpc;
    tsr_http_server_t *http;
    pthread_key_t arena_key;
    pthread_key_t aux_key;          /* per fetching thread: the arena its split reads use */
    /* the read helper: takes the second half of a large batched read (server_read_many) */
    pthread_t rh_thread;
    int rh_started;
    pthread_mutex_t rh_mu;
    pthread_cond_t rh_cv, rh_done_cv;
    struct read_job *rh_job;        /* handed over, not yet done */
    int rh_busy, rh_stop;
    int aux_key_made;
};

static int64_t now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

#define logf_(s, ...)                                                                              \
    do {                                                                                           \
        if ((s)->o.log) tsr_log(TSR_LOG_INFO, "serve", __VA_ARGS__);                               \
    } while (0)

/* Per-thread scratch for RPC handlers, reset by each call. */
static void arena_destroy(void *p) {
    tsr_arena_free(p);
    free(p);
}

/* The largest chunk a handler's arena keeps between calls. */
#define ARENA_KEEP_MAX ((size_t)16 << 20)

/* Handlers' arenas keep one chunk sized to the last call (tsr_arena_reset_fit): a 100-entity
 * FetchJoin (~2 MB) would otherwise malloc, free and fault in dozens of chunks per call (~5 % of
 * the server's CPU in that phase). */
static tsr_arena_t *thread_arena(tsr_server_t *s) {
    tsr_arena_t *a = pthread_getspecific(s->arena_key);
    if (!a) {
        a = tsr_malloc(sizeof *a);
        tsr_arena_init(a, 1 << 16);
        pthread_setspecific(s->arena_key, a);
    }
    tsr_arena_reset_fit(a, ARENA_KEEP_MAX);
    return a;
}

/* A large batched read is shared with the read helper in pieces of READ_PIECE reads, claimed
 * one at a time by whichever thread is free: a helper that wakes late, or a thread that loses
 * its CPU for a while (another process, the kernel), takes fewer pieces instead of holding the
 * request up with a fixed half. The reads are first grouped by GroupBy (request order within
 * one), so that a piece, like one chunk of tsr_tile_store_read_many, reads one GroupBy's keys. */
#define READ_SPLIT_MIN 128          /* a 100-entity Join fetch is 1,000 reads; one entity's 10 stay whole */
#define READ_PIECE 64
#define READ_GROUPS_MAX 64          /* GroupBys told apart when grouping; the rest share a group */

typedef struct read_share {
    tsr_server_t *s;
    tsr_tile_store_req_t *reqs;
    size_t n;
    size_t next;                    /* atomic: the first read no thread has claimed */
} read_share_t;

typedef struct read_job {
    read_share_t *sh;
    tsr_arena_t *arena;             /* the fetching thread's aux arena, lent to the helper */
    int done;                       /* under rh_mu */
} read_job_t;

/* Claims pieces until none is left. A piece whose call fails fails its own reads. */
static void read_pieces(read_share_t *sh, tsr_arena_t *arena) {
    for (;;) {
        size_t lo = __atomic_fetch_add(&sh->next, READ_PIECE, __ATOMIC_RELAXED);
        if (lo >= sh->n) return;
        size_t cnt = sh->n - lo < READ_PIECE ? sh->n - lo : READ_PIECE;
        tsr_error_t e;
        tsr_error_clear(&e);
        int rc = tsr_host_read_many(sh->s->host, sh->reqs + lo, cnt, arena, &e);
        if (!rc) continue;
        const char *msg = tsr_arena_strdup(arena, e.msg[0] ? e.msg : tsr_strerror(rc));
        for (size_t i = lo; i < lo + cnt; i++) {
            sh->reqs[i].status = rc;
            sh->reqs[i].error = msg;
        }
    }
}

static void *read_helper_main(void *arg) {
    tsr_server_t *s = arg;
    prctl(PR_SET_NAME, "tsr-read-help", 0, 0, 0);
    pthread_mutex_lock(&s->rh_mu);
    while (!s->rh_stop) {
        read_job_t *j = s->rh_job;
        if (!j) {
            pthread_cond_wait(&s->rh_cv, &s->rh_mu);
            continue;
        }
        s->rh_job = NULL; /* taken: the fetching thread now waits for done */
        pthread_mutex_unlock(&s->rh_mu);
        read_pieces(j->sh, j->arena);
        pthread_mutex_lock(&s->rh_mu);
        j->done = 1;
        pthread_cond_broadcast(&s->rh_done_cv);
    }
    pthread_mutex_unlock(&s->rh_mu);
    return NULL;
}

/* The arena a fetching thread lends the read helper; reset at each batched read (one per
 * request, so the previous request's values are no longer referenced). */
static tsr_arena_t *aux_arena(tsr_server_t *s) {
    tsr_arena_t *a = pthread_getspecific(s->aux_key);
    if (!a) {
        a = tsr_malloc(sizeof *a);
        tsr_arena_init(a, 1 << 20);
        pthread_setspecific(s->aux_key, a);
    }
    tsr_arena_reset_fit(a, ARENA_KEEP_MAX);
    return a;
}

/* order[k] = the index in reqs of the k-th read grouped by GroupBy (a stable counting sort on
 * the GroupBy name's pointer: a fetch plan names each GroupBy with one string). */
static void group_reads(const tsr_tile_read_req_t *reqs, size_t n, size_t *order, tsr_arena_t *arena) {
    const char *names[READ_GROUPS_MAX];
    size_t count[READ_GROUPS_MAX + 1] = {0}, ng = 0, g = 0;
    uint8_t *grp = tsr_arena_alloc(arena, n);
    for (size_t i = 0; i < n; i++) {
        /* a Join asks e0 g0..g9, e1 g0..g9: the next read's GroupBy is usually the next one */
        size_t tries = 0;
        while (tries < ng && names[g] != reqs[i].gb) {
            g = g + 1 < ng ? g + 1 : 0;
            tries++;
        }
        if (tries == ng) {
            if (ng < READ_GROUPS_MAX) {
                names[ng] = reqs[i].gb;
                g = ng++;
            } else {
                g = READ_GROUPS_MAX;
            }
        }
        grp[i] = (uint8_t)g;
        count[g]++;
        if (g == READ_GROUPS_MAX) g = 0;
    }
    size_t at = 0;
    for (size_t k = 0; k <= READ_GROUPS_MAX; k++) {
        size_t c = count[k];
        count[k] = at;
        at += c;
    }
    for (size_t i = 0; i < n; i++) order[count[grp[i]]++] = i;
}

/* The fetch's batched read (serving.h two-pass fetches): a request's reads in one call —
 * one RocksDB multi-get per column family across all its rows and GroupBys. A large one is
 * shared with the read helper when it is free, so it uses both cores. */
static int server_read_many(void *ud, tsr_tile_read_req_t *reqs, size_t n, int64_t timeout_ms,
                            tsr_arena_t *arena, tsr_error_t *err) {
    (void)timeout_ms; /* local reads: bounded by the store, not by a network */
    tsr_server_t *s = ud;
    tsr_tile_store_req_t *t = tsr_arena_alloc(arena, (n ? n : 1) * sizeof *t);
    if (n < READ_SPLIT_MIN || !s->rh_started) {
        for (size_t i = 0; i < n; i++)
            t[i] = (tsr_tile_store_req_t){reqs[i].gb, reqs[i].key, reqs[i].klen, reqs[i].q, reqs[i].out, 0, NULL};
        int rc = tsr_host_read_many(s->host, t, n, arena, err);
        for (size_t i = 0; i < n; i++) {
            reqs[i].status = rc ? rc : t[i].status;
            reqs[i].error = rc ? err->msg : t[i].error;
        }
        return rc;
    }
    size_t *order = tsr_arena_alloc(arena, n * sizeof *order);
    group_reads(reqs, n, order, arena);
    for (size_t k = 0; k < n; k++) {
        const tsr_tile_read_req_t *r = &reqs[order[k]];
        t[k] = (tsr_tile_store_req_t){r->gb, r->key, r->klen, r->q, r->out, 0, NULL};
    }
    read_share_t sh = {s, t, n, 0};
    read_job_t job = {&sh, NULL, 0};
    int handed = 0;
    if (pthread_mutex_trylock(&s->rh_mu) == 0) {
        if (!s->rh_busy) {
            job.arena = aux_arena(s);
            s->rh_busy = 1;
            s->rh_job = &job;
            handed = 1;
            pthread_cond_signal(&s->rh_cv);
        }
        pthread_mutex_unlock(&s->rh_mu);
    }
    read_pieces(&sh, arena);
    if (handed) {
        pthread_mutex_lock(&s->rh_mu);
        if (s->rh_job == &job) {
            s->rh_job = NULL; /* not taken yet: nothing left for it */
        } else {
            while (!job.done) pthread_cond_wait(&s->rh_done_cv, &s->rh_mu);
        }
        s->rh_busy = 0;
        pthread_mutex_unlock(&s->rh_mu);
    }
    for (size_t k = 0; k < n; k++) {
        reqs[order[k]].status = t[k].status;
        reqs[order[k]].error = t[k].error;
    }
    return 0;
}

/* ------------------------------------------------------------------------------------------
 * GroupBy states */

static gb_state_t *find_state(tsr_server_t *s, const char *name) { return tsr_host_find(s->host, name); }

static int load_conf(tsr_server_t *s, const char *text, size_t n, const char *label,
                     tsr_config_t **out, tsr_error_t *err) {
    return tsr_host_load_conf(s->host, text, n, label, out, err);
}

/* ------------------------------------------------------------------------------------------
 * apply / delete */

typedef struct apply_result {
    tsr_reg_entry_t entry;
    int created, unchanged;
} apply_result_t;

static int apply_text(tsr_server_t *s, const char *text, size_t n, const char *label, int dry_run,
                      apply_result_t *res, tsr_error_t *err) {
    memset(res, 0, sizeof *res);
    tsr_config_t *conf;
    int rc = load_conf(s, text, n, label, &conf, err);
    if (rc) return rc;
    if (conf->kind == TSR_CONF_JOIN && conf->join->n_parts > 64) {
        tsr_config_free(conf);
        return tsr_error_set(err, TSR_EUNSUPPORTED, "%s: a served Join has at most 64 parts",
                             label);
    }
    const tsr_conf_group_by_t *gbs[64];
    size_t ng = tsr_served_group_bys(conf, gbs, 64);
    gb_state_t *fresh[64];
    size_t nfresh = 0;
    pthread_mutex_lock(&s->mu);
    for (size_t i = 0; i < ng && rc == 0; i++) {
        gb_state_t *st = find_state(s, gbs[i]->meta.name);
        if (st) {
            char *fp = tsr_served_fingerprint(gbs[i]);
            if (strcmp(fp, st->fp) != 0)
                rc = tsr_error_set(err, TSR_ECONFIG,
                                   "GroupBy %s is already served with a different definition (keys, "
                                   "sources or aggregations); a changed GroupBy needs a new name, "
                                   "e.g. a new version suffix",
                                   gbs[i]->meta.name);
            free(fp);
            continue;
        }
        int dup = 0;
        for (size_t k = 0; k < nfresh; k++) dup |= strcmp(fresh[k]->name, gbs[i]->meta.name) == 0;
        if (dup) continue;
        gb_state_t *ns;
        rc = tsr_host_gb_new(s->host, text, n, label, (int)i, &ns, err);
        if (rc == 0 && ns) fresh[nfresh++] = ns;
    }
    tsr_serving_item_t *item = NULL;
    const char *name = tsr_config_metadata(conf)->name;
    if (rc == 0) {
        /* the item owns its own copy of the config; conf stays for the registry entry */
        tsr_config_t *conf2;
        rc = load_conf(s, text, n, label, &conf2, err);
        if (rc == 0) rc = tsr_serving_prepare(conf2, s->warehouse, tsr_day_of_ms(now_ms()), &item, err);
    }
    if (rc == 0 && !dry_run) {
        rc = tsr_registry_put(s->reg, conf, text, n, &res->entry, &res->created, &res->unchanged, err);
    } else if (rc == 0) {
        const tsr_conf_metadata_t *m = tsr_config_metadata(conf);
        tsr_reg_entry_t cur;
        int exists = tsr_registry_get(s->reg, name, &cur, NULL) == 0;
        res->created = !exists;
        res->unchanged = exists && cur.text_len == n && memcmp(cur.text, text, n) == 0;
        res->entry.name = tsr_strdup(name);
        res->entry.kind = conf->kind;
        res->entry.team = tsr_strdup(m->team ? m->team : "");
        res->entry.online = m->online;
        res->entry.version = exists ? (res->unchanged ? cur.version : cur.version + 1) : 1;
        res->entry.applied_at_ms = exists && res->unchanged ? cur.applied_at_ms : now_ms();
        if (exists) tsr_reg_entry_free(&cur);
    }
    if (rc == 0 && !dry_run) {
        for (size_t k = 0; k < nfresh && rc == 0; k++) {
            rc = tsr_host_add(s->host, fresh[k], err);
            if (rc == 0) fresh[k] = NULL;
        }
        tsr_serving_install(s->serving, item);
        item = NULL;
        /* a GroupBy applied again after a delete streams again */
        gb_state_t *st = find_state(s, name);
        if (st) tsr_host_gb_start_ingests(s->host, st);
    }
    pthread_mutex_unlock(&s->mu);
    tsr_serving_item_discard(item);
    for (size_t k = 0; k < nfresh; k++) tsr_host_gb_free(fresh[k]);
    tsr_config_free(conf);
    if (rc) tsr_reg_entry_free(&res->entry);
    return rc;
}

static int delete_name(tsr_server_t *s, const char *name, tsr_reg_entry_t *out, tsr_error_t *err) {
    pthread_mutex_lock(&s->mu);
    int rc = tsr_registry_delete(s->reg, name, out, err);
    if (rc == 0) {
        tsr_serving_remove(s->serving, name);
        gb_state_t *st = find_state(s, name);
        if (st) tsr_host_gb_stop_ingests(st); /* its tiles stay; applying it again resumes streaming */
    }
    pthread_mutex_unlock(&s->mu);
    return rc;
}

/* ------------------------------------------------------------------------------------------
 * RPC handlers */

static Tessera__V1__ConfigSummary *summary(const tsr_reg_entry_t *e, tsr_arena_t *a) {
    Tessera__V1__ConfigSummary *m = tsr_arena_alloc(a, sizeof *m);
    tessera__v1__config_summary__init(m);
    m->name = tsr_arena_strdup(a, e->name);
    m->kind = e->kind == TSR_CONF_GROUP_BY ? TESSERA__V1__CONFIG_KIND__GROUP_BY
              : e->kind == TSR_CONF_JOIN   ? TESSERA__V1__CONFIG_KIND__JOIN
                                           : TESSERA__V1__CONFIG_KIND__STAGING_QUERY;
    m->team = tsr_arena_strdup(a, e->team ? e->team : "");
    m->online = e->online;
    m->version = e->version;
    m->applied_at_millis = e->applied_at_ms;
    return m;
}

/* FeatureService. A fetch of up to INLINE_ROWS rows runs on the completion-queue thread that
 * received it: no thread hand-off (a wake-up costs more than an echo on these VMs), and one CQ
 * thread (the default) avoids gRPC's poller hand-offs between CQ threads (docs/rpc.md). A
 * larger one (a 100-entity fetch takes milliseconds) is offloaded (TSR_RPC_OFFLOAD) to the
 * server's offload thread, which splits its reads with the read helper, so it does not hold
 * up the small calls queued behind it. */
#define INLINE_ROWS 8

static int fetch_call(tsr_server_t *s, tsr_rpc_call_t *call, const uint8_t *req, size_t n, int join,
                      tsr_buf_t *resp, tsr_error_t *err) {
    if (!tsr_rpc_call_offloaded(call) && tsr_serving_request_rows(req, n) > INLINE_ROWS)
        return TSR_RPC_OFFLOAD;
    int64_t left = tsr_rpc_call_remaining_ms(call);
    if (left == 0) return tsr_error_set(err, TSR_ETIMEOUT, "deadline exceeded before the fetch began");
    return tsr_serving_fetch_pb(s->serving, join, req, n, left, resp, thread_arena(s), err);
}

static int h_fetch_join(void *ud, tsr_rpc_call_t *call, const uint8_t *req, size_t n,
                        tsr_buf_t *resp, tsr_error_t *err) {
    return fetch_call(ud, call, req, n, 1, resp, err);
}

static int h_fetch_gb(void *ud, tsr_rpc_call_t *call, const uint8_t *req, size_t n,
                      tsr_buf_t *resp, tsr_error_t *err) {
    return fetch_call(ud, call, req, n, 0, resp, err);
}

static int h_apply(void *ud, tsr_rpc_call_t *call, const uint8_t *req, size_t n, tsr_buf_t *resp,
                   tsr_error_t *err) {
    (void)call;
    tsr_server_t *s = ud;
    tsr_arena_t *a = thread_arena(s);
    Tessera__V1__ApplyConfigRequest *rq = tsr_pb_unpack(&tessera__v1__apply_config_request__descriptor, req, n, a, err);
    if (!rq) return TSR_EINVAL;
    if (!rq->config_json || !rq->config_json[0])
        return tsr_error_set(err, TSR_EINVAL, "ApplyConfigRequest.config_json is empty");
    const char *label = rq->source_name && rq->source_name[0] ? rq->source_name : "config";
    apply_result_t r;
    int rc = apply_text(s, rq->config_json, strlen(rq->config_json), label, rq->dry_run, &r, err);
    if (rc) return rc;
    Tessera__V1__ApplyConfigResponse out;
    tessera__v1__apply_config_response__init(&out);
    out.config = summary(&r.entry, a);
    out.created = r.created;
    out.unchanged = r.unchanged;
    tsr_pb_pack(&out.base, resp);
    if (!rq->dry_run && !r.unchanged)
        logf_(s, "applied %s %s (version %lld)", tsr_conf_kind_name(r.entry.kind), r.entry.name,
              (long long)r.entry.version);
    tsr_reg_entry_free(&r.entry);
    return 0;
}

static int h_get(void *ud, tsr_rpc_call_t *call, const uint8_t *req, size_t n, tsr_buf_t *resp,
                 tsr_error_t *err) {
    (void)call;
    tsr_server_t *s = ud;
    tsr_arena_t *a = thread_arena(s);
    Tessera__V1__GetConfigRequest *rq = tsr_pb_unpack(&tessera__v1__get_config_request__descriptor, req, n, a, err);
    if (!rq) return TSR_EINVAL;
    tsr_reg_entry_t e;
    int rc = tsr_registry_get(s->reg, rq->name ? rq->name : "", &e, err);
    if (rc) return rc;
    Tessera__V1__GetConfigResponse out;
    tessera__v1__get_config_response__init(&out);
    out.config = summary(&e, a);
    out.config_json = tsr_arena_strndup(a, e.text, e.text_len);
    tsr_pb_pack(&out.base, resp);
    tsr_reg_entry_free(&e);
    return 0;
}

static int h_list(void *ud, tsr_rpc_call_t *call, const uint8_t *req, size_t n, tsr_buf_t *resp,
                  tsr_error_t *err) {
    (void)call;
    tsr_server_t *s = ud;
    tsr_arena_t *a = thread_arena(s);
    Tessera__V1__ListConfigsRequest *rq = tsr_pb_unpack(&tessera__v1__list_configs_request__descriptor, req, n, a, err);
    if (!rq) return TSR_EINVAL;
    tsr_conf_kind_t kind = rq->kind == TESSERA__V1__CONFIG_KIND__GROUP_BY        ? TSR_CONF_GROUP_BY
                           : rq->kind == TESSERA__V1__CONFIG_KIND__JOIN          ? TSR_CONF_JOIN
                           : rq->kind == TESSERA__V1__CONFIG_KIND__STAGING_QUERY ? TSR_CONF_STAGING_QUERY
                                                                                 : (tsr_conf_kind_t)0;
    tsr_reg_entry_t *v;
    size_t nv = tsr_registry_list(s->reg, kind, &v);
    Tessera__V1__ListConfigsResponse out;
    tessera__v1__list_configs_response__init(&out);
    out.n_configs = nv;
    out.configs = tsr_arena_alloc(a, (nv ? nv : 1) * sizeof(*out.configs));
    for (size_t i = 0; i < nv; i++) out.configs[i] = summary(&v[i], a);
    tsr_pb_pack(&out.base, resp);
    tsr_reg_entries_free(v, nv);
    return 0;
}

static int h_delete(void *ud, tsr_rpc_call_t *call, const uint8_t *req, size_t n, tsr_buf_t *resp,
                    tsr_error_t *err) {
    (void)call;
    tsr_server_t *s = ud;
    tsr_arena_t *a = thread_arena(s);
    Tessera__V1__DeleteConfigRequest *rq = tsr_pb_unpack(&tessera__v1__delete_config_request__descriptor, req, n, a, err);
    if (!rq) return TSR_EINVAL;
    tsr_reg_entry_t e;
    int rc = delete_name(s, rq->name ? rq->name : "", &e, err);
    if (rc) return rc;
    Tessera__V1__DeleteConfigResponse out;
    tessera__v1__delete_config_response__init(&out);
    out.config = summary(&e, a);
    tsr_pb_pack(&out.base, resp);
    logf_(s, "deleted %s", e.name);
    tsr_reg_entry_free(&e);
    return 0;
}

static int h_status(void *ud, tsr_rpc_call_t *call, const uint8_t *req, size_t n, tsr_buf_t *resp,
                    tsr_error_t *err) {
    (void)call;
    (void)req;
    (void)n;
    (void)err;
    tsr_server_t *s = ud;
    tsr_arena_t *a = thread_arena(s);
    Tessera__V1__StatusResponse out;
    tessera__v1__status_response__init(&out);
    out.version = TSR_VERSION;
    out.started_at_millis = s->started_ms;
    out.configs = (int64_t)tsr_registry_count(s->reg);
    pthread_mutex_lock(&s->mu);
    size_t ngbs = tsr_host_count(s->host);
    size_t cap = 2 + ngbs * (MAX_INGESTS + 1);
    out.components = tsr_arena_alloc(a, cap * sizeof(*out.components));
    Tessera__V1__ComponentStatus *c;
#define ADD(nm, ok, ...)                                                                           \
    do {                                                                                           \
        c = tsr_arena_alloc(a, sizeof *c);                                                         \
        tessera__v1__component_status__init(c);                                                    \
        c->name = (nm);                                                                            \
        c->serving = (ok);                                                                         \
        c->detail = tsr_arena_printf(a, __VA_ARGS__);                                              \
        out.components[out.n_components++] = c;                                                    \
    } while (0)
    tsr_serving_stats_t ss;
    tsr_serving_stats(s->serving, &ss);
    ADD("fetcher", 1, "%zu configs served, %llu rows fetched, %llu failed rows, %llu part errors",
        tsr_serving_count(s->serving), (unsigned long long)ss.rows,
        (unsigned long long)ss.row_failures, (unsigned long long)ss.part_errors);
    ADD("worker", 1, "tile store %s/tiles, %zu GroupBys, warehouse %s", s->data_dir, ngbs, s->warehouse);
    for (size_t i = 0; i < ngbs; i++) {
        gb_state_t *st = tsr_host_at(s->host, i);
        int64_t b = tsr_host_batch_end(s->host, st);
        char bs[11] = "none";
        if (b != INT64_MIN) tsr_ds_format(tsr_day_of_ms(b) - 1, bs);
        ADD(tsr_arena_printf(a, "groupby:%s", st->name), b != INT64_MIN, "%s, upload ds=%s%s",
            st->entity ? "entity (stored values)" : "tiles", bs,
            b == INT64_MIN ? (st->entity ? " (no upload yet: values are null)"
                                         : " (no upload yet: values cover streamed events only)")
                           : "");
        for (size_t k = 0; k < st->ning; k++) {
            if (!st->ing[k].in) continue;
            tsr_ingest_stats_t is;
            tsr_ingest_stats(st->ing[k].in, &is);
            ADD(tsr_arena_printf(a, "kafka:%s->%s", tsr_ingest_topic(st->ing[k].in), st->name),
                is.connected,
                "messages=%llu events=%llu skipped=%llu filtered=%llu late=%llu bad=%llu lag=%lld%s%s",
                (unsigned long long)is.messages, (unsigned long long)is.events,
                (unsigned long long)is.skipped, (unsigned long long)is.filtered,
                (unsigned long long)is.late, (unsigned long long)is.bad, (long long)is.lag,
                is.last_error[0] ? " last_error=" : "", is.last_error);
        }
    }
#undef ADD
    pthread_mutex_unlock(&s->mu);
    tsr_pb_pack(&out.base, resp);
    return 0;
}

/* ---- Upload: a deferred call finished by its own thread */

typedef struct upload_job {
    tsr_server_t *s;
    tsr_rpc_call_t *call;
    char *name, *ds, *warehouse;
} upload_job_t;

static int upload_run(upload_job_t *j, Tessera__V1__UploadResponse *out, tsr_error_t *err) {
    tsr_server_t *s = j->s;
    int64_t E;
    if (tsr_ds_parse(j->ds, &E) != 0)
        return tsr_error_set(err, TSR_EINVAL, "ds '%s' is not a date YYYY-MM-DD", j->ds);
    int64_t B = (E + 1) * TSR_MS_PER_DAY;
    tsr_reg_entry_t e;
    int rc = tsr_registry_get(s->reg, j->name, &e, err);
    if (rc) {
        tsr_error_set(err, TSR_ENOTFOUND, "no config named '%s' is applied (run `tessera apply -f` first)",
                      j->name);
        return rc;
    }
    tsr_config_t *conf;
    rc = load_conf(s, e.text, e.text_len, e.name, &conf, err);
    tsr_reg_entry_free(&e);
    if (rc) return rc;
    const tsr_conf_group_by_t *gbs[64];
    size_t ng = tsr_served_group_bys(conf, gbs, 64);
    out->name = j->name;
    out->batch_end_millis = B;
    pthread_mutex_lock(&s->upload_mu);
    for (size_t i = 0; i < ng && rc == 0; i++) {
        pthread_mutex_lock(&s->mu);
        gb_state_t *cur = find_state(s, gbs[i]->meta.name);
        int served = cur != NULL, entity = cur && cur->entity;
        pthread_mutex_unlock(&s->mu);
        if (!served) continue;
        int dup = 0;
        for (size_t d = 0; d < i; d++) dup |= strcmp(gbs[d]->meta.name, gbs[i]->meta.name) == 0;
        if (dup) continue;
        double t0 = (double)now_ms();
        uint64_t keys = 0;
        rc = tsr_host_upload(s->host, gbs[i], entity, E, j->warehouse, &s->stopping, &keys, err);
        if (rc == 0) {
            out->keys += (int64_t)keys;
            out->group_bys++;
            pthread_mutex_lock(&s->mu);
            tsr_host_note_batch_end(s->host, gbs[i]->meta.name, B);
            pthread_mutex_unlock(&s->mu);
            logf_(s, "uploaded %s ds=%s: %llu keys in %.2f s", gbs[i]->meta.name, j->ds,
                  (unsigned long long)keys, ((double)now_ms() - t0) / 1000.0);
        } else {
            tsr_error_prefix(err, "upload of %s ds=%s failed (the previous upload keeps serving)",
                             gbs[i]->meta.name, j->ds);
        }
    }
    pthread_mutex_unlock(&s->upload_mu);
    if (rc == 0 && out->group_bys == 0)
        rc = tsr_error_set(err, TSR_EUNSUPPORTED, "%s has no GroupBy served from tiles to upload", j->name);
    tsr_config_free(conf);
    return rc;
}

static void *upload_main(void *arg) {
    upload_job_t *j = arg;
    Tessera__V1__UploadResponse out;
    tessera__v1__upload_response__init(&out);
    tsr_error_t err;
    tsr_error_clear(&err);
    int rc = upload_run(j, &out, &err);
    if (rc == 0) {
        tsr_buf_t b;
        tsr_buf_init(&b);
        tsr_pb_pack(&out.base, &b);
        tsr_rpc_call_finish(j->call, 0, b.data, b.len, NULL);
        tsr_buf_free(&b);
    } else {
        logf_(j->s, "upload %s ds=%s: %s", j->name, j->ds, err.msg);
        tsr_rpc_call_finish(j->call, rc, NULL, 0, err.msg);
    }
    free(j->name);
    free(j->ds);
    free(j->warehouse);
    free(j);
    return NULL;
}

/* Runs fn(arg) on a detached thread (a deferred call's worker). 0 or pthread's error. */
static int spawn_detached(void *(*fn)(void *), void *arg) {
    pthread_t t;
    pthread_attr_t at;
    pthread_attr_init(&at);
    pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
    int rc = pthread_create(&t, &at, fn, arg);
    pthread_attr_destroy(&at);
    return rc;
}

static int h_upload(void *ud, tsr_rpc_call_t *call, const uint8_t *req, size_t n, tsr_buf_t *resp,
                    tsr_error_t *err) {
    (void)resp;
    tsr_server_t *s = ud;
    tsr_arena_t *a = thread_arena(s);
    Tessera__V1__UploadRequest *rq = tsr_pb_unpack(&tessera__v1__upload_request__descriptor, req, n, a, err);
    if (!rq) return TSR_EINVAL;
    if (!rq->name || !rq->name[0]) return tsr_error_set(err, TSR_EINVAL, "UploadRequest.name is empty");
    if (!rq->ds || !rq->ds[0]) return tsr_error_set(err, TSR_EINVAL, "UploadRequest.ds is empty");
    upload_job_t *j = tsr_calloc(1, sizeof(*j));
    j->s = s;
    j->call = call;
    j->name = tsr_strdup(rq->name);
    j->ds = tsr_strdup(rq->ds);
    j->warehouse = tsr_strdup(rq->warehouse && rq->warehouse[0] ? rq->warehouse : s->warehouse);
    if (spawn_detached(upload_main, j) != 0) {
        free(j->name);
        free(j->ds);
        free(j->warehouse);
        free(j);
        return tsr_error_set(err, TSR_EUNAVAIL, "cannot start an upload thread");
    }
    return TSR_RPC_DEFER;
}

/* ---- Backfill: like Upload, a deferred call finished by its own thread; one upload or backfill
 * runs at a time (upload_mu). The whole range is one "shard" run by the offline engine in this
 * process, writing the warehouse's output table as `tessera backfill` does. */

typedef struct backfill_job {
    tsr_server_t *s;
    tsr_rpc_call_t *call;
    char *name, *start_ds, *end_ds, *warehouse;
} backfill_job_t;

static int backfill_run(backfill_job_t *j, Tessera__V1__BackfillResponse *out, char *odir, size_t cap,
                        tsr_error_t *err) {
    tsr_server_t *s = j->s;
    tsr_backfill_opts_t o;
    memset(&o, 0, sizeof o);
    o.format = TSR_FORMAT_JSONL;
    o.warehouse = j->warehouse;
    o.stop = &s->stopping;          /* shutdown ends the run at the next file or day */
    if (tsr_ds_parse(j->start_ds, &o.start_day) != 0)
        return tsr_error_set(err, TSR_EINVAL, "start_ds '%s' is not a date YYYY-MM-DD", j->start_ds);
    if (tsr_ds_parse(j->end_ds, &o.end_day) != 0)
        return tsr_error_set(err, TSR_EINVAL, "end_ds '%s' is not a date YYYY-MM-DD", j->end_ds);
    if (o.end_day < o.start_day)
        return tsr_error_set(err, TSR_EINVAL, "end_ds %s is before start_ds %s", j->end_ds, j->start_ds);
    tsr_reg_entry_t e;
    int rc = tsr_registry_get(s->reg, j->name, &e, err);
    if (rc)
        return tsr_error_set(err, TSR_ENOTFOUND, "no config named '%s' is applied (run `tessera apply -f` first)",
                             j->name);
    tsr_config_options_t copt;
    memset(&copt, 0, sizeof copt);
    copt.warehouse = j->warehouse;
    tsr_diag_t d;
    tsr_diag_init(&d);
    tsr_config_t *conf = NULL;
    rc = tsr_config_load_string(e.text, e.text_len, e.name, &copt, &conf, &d);
    tsr_reg_entry_free(&e);
    if (rc) {
        tsr_error_set(err, rc, "%s: %s", j->name, d.n ? d.items[0].text : tsr_strerror(rc));
        tsr_diag_free(&d);
        tsr_config_free(conf);
        return rc;
    }
    tsr_diag_free(&d);
    pthread_mutex_lock(&s->upload_mu);
    rc = tsr_backfill_check(conf, &o, odir, cap, err);
    tsr_backfill_stats_t st;
    memset(&st, 0, sizeof st);
    if (rc == 0) rc = tsr_backfill_run(conf, &o, &st, err);
    pthread_mutex_unlock(&s->upload_mu);
    if (rc) tsr_error_prefix(err, "backfill of %s", j->name);
    out->name = j->name;
    out->days = (int64_t)st.partitions_written;
    out->rows = (int64_t)st.rows_written;
    out->shards = 1;
    out->output = odir;
    if (rc == 0)
        logf_(s, "backfilled %s ds=%s..%s: %llu rows in %.2f s into %s", j->name, j->start_ds, j->end_ds,
              (unsigned long long)st.rows_written, st.seconds, odir);
    tsr_config_free(conf);
    return rc;
}

static void *backfill_main(void *arg) {
    backfill_job_t *j = arg;
    Tessera__V1__BackfillResponse out;
    tessera__v1__backfill_response__init(&out);
    tsr_error_t err;
    tsr_error_clear(&err);
    char odir[1024] = "";
    int rc = backfill_run(j, &out, odir, sizeof odir, &err);
    if (rc == 0) {
        tsr_buf_t b;
        tsr_buf_init(&b);
        tsr_pb_pack(&out.base, &b);
        tsr_rpc_call_finish(j->call, 0, b.data, b.len, NULL);
        tsr_buf_free(&b);
    } else {
        logf_(j->s, "backfill %s: %s", j->name, err.msg);
        tsr_rpc_call_finish(j->call, rc, NULL, 0, err.msg);
    }
    free(j->name);
    free(j->start_ds);
    free(j->end_ds);
    free(j->warehouse);
    free(j);
    return NULL;
}

static int h_backfill(void *ud, tsr_rpc_call_t *call, const uint8_t *req, size_t n, tsr_buf_t *resp,
                      tsr_error_t *err) {
    (void)resp;
    tsr_server_t *s = ud;
    tsr_arena_t *a = thread_arena(s);
    Tessera__V1__BackfillRequest *rq = tsr_pb_unpack(&tessera__v1__backfill_request__descriptor, req, n, a, err);
    if (!rq) return TSR_EINVAL;
    if (!rq->name || !rq->name[0]) return tsr_error_set(err, TSR_EINVAL, "BackfillRequest.name is empty");
    if (!rq->start_ds || !rq->start_ds[0] || !rq->end_ds || !rq->end_ds[0])
        return tsr_error_set(err, TSR_EINVAL, "BackfillRequest.start_ds and end_ds are required");
    const char *wh = rq->warehouse && rq->warehouse[0] ? rq->warehouse : s->warehouse;
    if (!wh) return tsr_error_set(err, TSR_EINVAL, "backfill: no warehouse (start the server with --warehouse)");
    backfill_job_t *j = tsr_calloc(1, sizeof(*j));
    j->s = s;
    j->call = call;
    j->name = tsr_strdup(rq->name);
    j->start_ds = tsr_strdup(rq->start_ds);
    j->end_ds = tsr_strdup(rq->end_ds);
    j->warehouse = tsr_strdup(wh);
    if (spawn_detached(backfill_main, j) != 0) {
        free(j->name);
        free(j->start_ds);
        free(j->end_ds);
        free(j->warehouse);
        free(j);
        return tsr_error_set(err, TSR_EUNAVAIL, "cannot start a backfill thread");
    }
    return TSR_RPC_DEFER;
}

/* ------------------------------------------------------------------------------------------
 * metrics */

static void collect(void *ud, tsr_metrics_t *m) {
    (void)m;
    tsr_server_t *s = ud;
    tsr_serving_stats_t ss;
    tsr_serving_stats(s->serving, &ss);
    tsr_counter_add(s->c_requests, ss.requests - s->last_serving.requests);
    tsr_counter_add(s->c_rows, ss.rows - s->last_serving.rows);
    tsr_counter_add(s->c_row_fail, ss.row_failures - s->last_serving.row_failures);
    tsr_counter_add(s->c_part_err, ss.part_errors - s->last_serving.part_errors);
    s->last_serving = ss;
    tsr_gauge_set(s->g_configs, (double)tsr_registry_count(s->reg));
    pthread_mutex_lock(&s->mu);
    if (s->host) tsr_host_collect(s->host);
    pthread_mutex_unlock(&s->mu);
}

static int metrics_init(tsr_server_t *s, tsr_error_t *err) {
    s->metrics = tsr_metrics_new();
    s->c_requests = tsr_metrics_counter(s->metrics, "tessera_fetch_requests_total", "fetch requests", err);
    s->c_rows = tsr_metrics_counter(s->metrics, "tessera_fetch_rows_total", "rows fetched", err);
    s->c_row_fail = tsr_metrics_counter(s->metrics, "tessera_fetch_row_failures_total",
                                        "rows answered with a Failure status", err);
    s->c_part_err = tsr_metrics_counter(s->metrics, "tessera_fetch_part_errors_total",
                                        "Join parts answered with an <part>_exception", err);
    s->g_configs = tsr_metrics_gauge(s->metrics, "tessera_configs", "configs applied", err);
    if (!s->c_requests || !s->c_rows || !s->c_row_fail || !s->c_part_err || !s->g_configs)
        return TSR_EINTERNAL;
    tsr_metrics_on_collect(s->metrics, collect, s);
    return 0;
}

/* ------------------------------------------------------------------------------------------
 * start / stop */

static int load_registry(tsr_server_t *s) {
    tsr_reg_entry_t *v;
    size_t n = tsr_registry_list(s->reg, 0, &v);
    size_t ok = 0;
    for (size_t i = 0; i < n; i++) {
        /* re-apply through the same path (unchanged text: the entry stays as it is) */
        apply_result_t r;
        tsr_error_t e;
        tsr_error_clear(&e);
        if (apply_text(s, v[i].text, v[i].text_len, v[i].name, 0, &r, &e) != 0) {
            logf_(s, "%s: not served: %s", v[i].name, e.msg);
            continue;
        }
        tsr_reg_entry_free(&r.entry);
        ok++;
    }
    if (n) logf_(s, "loaded %zu of %zu configs from %s/configs", ok, n, s->data_dir);
    tsr_reg_entries_free(v, n);
    return 0;
}

int tsr_server_start(const tsr_server_opts_t *o, tsr_server_t **out, tsr_error_t *err) {
    *out = NULL;
    tsr_server_t *s = tsr_calloc(1, sizeof(*s));
    s->o = *o;
    s->data_dir = tsr_strdup(o->data_dir);
    s->warehouse = tsr_strdup(o->warehouse);
    s->bind = tsr_strdup(o->bind ? o->bind : "127.0.0.1");
    s->kafka = o->kafka_bootstrap && o->kafka_bootstrap[0] ? tsr_strdup(o->kafka_bootstrap) : NULL;
    s->o.data_dir = s->data_dir;
    s->o.warehouse = s->warehouse;
    s->o.bind = s->bind;
    s->o.kafka_bootstrap = s->kafka;
    s->started_ms = now_ms();
    pthread_mutex_init(&s->mu, NULL);
    pthread_mutex_init(&s->upload_mu, NULL);
    pthread_key_create(&s->arena_key, arena_destroy);
    int rc = metrics_init(s, err);
    char path[4096];
    if (rc == 0) {
        snprintf(path, sizeof path, "%s/configs", s->data_dir);
        rc = tsr_registry_open(path, &s->reg, err);
    }
    if (rc == 0) {
        tsr_host_opts_t ho;
        memset(&ho, 0, sizeof ho);
        ho.data_dir = s->data_dir;
        ho.warehouse = s->warehouse;
        ho.kafka_bootstrap = s->kafka;
        ho.allowed_lateness_ms = o->allowed_lateness_ms;
        ho.log = o->log;
        ho.component = "serve";
        ho.metrics = s->metrics;
        rc = tsr_host_open(&ho, &s->host, err);
    }
    if (rc) {
        tsr_server_stop(s);
        return rc;
    }
    s->serving = tsr_serving_new_many(server_read_many, s);
    s->aux_key_made = pthread_key_create(&s->aux_key, arena_destroy) == 0;
    pthread_mutex_init(&s->rh_mu, NULL);
    pthread_cond_init(&s->rh_cv, NULL);
    pthread_cond_init(&s->rh_done_cv, NULL);
    s->rh_started = pthread_create(&s->rh_thread, NULL, read_helper_main, s) == 0;
    load_registry(s);

    char addr[300];
    snprintf(addr, sizeof addr, "%s:%d", s->bind, o->grpc_port);
    tsr_rpc_server_opts_t ro;
    memset(&ro, 0, sizeof ro);
    ro.cq_threads = o->rpc_threads > 0 ? o->rpc_threads : 1;
    ro.offload_threads = 1; /* fetches of more than INLINE_ROWS rows */
    s->rpc = tsr_rpc_server_new(addr, &ro, err);
    if (!s->rpc) rc = err ? err->code : TSR_EIO;
    static const struct {
        const char *path;
        tsr_rpc_unary_fn fn;
    } methods[] = {
        {"/tessera.v1.FeatureService/FetchJoin", h_fetch_join},
        {"/tessera.v1.FeatureService/FetchGroupBy", h_fetch_gb},
        {"/tessera.v1.AdminService/ApplyConfig", h_apply},
        {"/tessera.v1.AdminService/GetConfig", h_get},
        {"/tessera.v1.AdminService/ListConfigs", h_list},
        {"/tessera.v1.AdminService/DeleteConfig", h_delete},
        {"/tessera.v1.AdminService/Upload", h_upload},
        {"/tessera.v1.AdminService/Backfill", h_backfill},
        {"/tessera.v1.AdminService/Status", h_status},
    };
    for (size_t i = 0; rc == 0 && i < sizeof methods / sizeof *methods; i++)
        rc = tsr_rpc_server_add_unary(s->rpc, methods[i].path, methods[i].fn, s, err);
    if (rc == 0) rc = tsr_rpc_health_register(s->rpc, err);
    if (rc == 0) rc = tsr_rpc_server_start(s->rpc, err);
    if (rc == 0 && o->http_port >= 0) {
        tsr_http_options_t ho;
        memset(&ho, 0, sizeof ho);
        ho.bind_addr = s->bind;
        ho.port = (uint16_t)o->http_port;
        ho.metrics = s->metrics;
        s->http = tsr_http_server_new(&ho);
        rc = tsr_http_serve_fetch(s->http, tsr_serving_fetch_http, s->serving, err);
        if (rc == 0) rc = tsr_http_serve_metrics(s->http, s->metrics, err);
        if (rc == 0) rc = tsr_http_serve_health(s->http, err);
        if (rc == 0) rc = tsr_http_server_start(s->http, err);
    }
    if (rc) {
        tsr_server_stop(s);
        return rc;
    }
    *out = s;
    return 0;
}

int tsr_server_grpc_port(const tsr_server_t *s) { return tsr_rpc_server_port(s->rpc); }
int tsr_server_http_port(const tsr_server_t *s) { return s->http ? tsr_http_server_port(s->http) : -1; }

void tsr_server_stop(tsr_server_t *s) {
    if (!s) return;
    __atomic_store_n(&s->stopping, 1, __ATOMIC_RELEASE);
    if (s->rpc) tsr_rpc_health_set(s->rpc, "", TSR_HEALTH_NOT_SERVING);
    if (s->http) {
        tsr_http_server_set_ready(s->http, 0, "shutting down");
        tsr_http_server_stop(s->http, 5000);
    }
    /* waits for calls in flight, including uploads (which abort at their next record) and
     * offloaded fetches */
    tsr_rpc_server_free(s->rpc);
    s->rpc = NULL;
    tsr_http_server_free(s->http);
    s->http = NULL;
    /* ingests finish the batch in hand: what they consumed is stored with its offsets */
    if (s->host) tsr_host_stop_ingests(s->host);
    tsr_serving_free(s->serving);
    if (s->rh_started) {
        pthread_mutex_lock(&s->rh_mu);
        s->rh_stop = 1;
        pthread_cond_broadcast(&s->rh_cv);
        pthread_mutex_unlock(&s->rh_mu);
        pthread_join(s->rh_thread, NULL);
        pthread_mutex_destroy(&s->rh_mu);
        pthread_cond_destroy(&s->rh_cv);
        pthread_cond_destroy(&s->rh_done_cv);
    }
    if (s->aux_key_made) {
        tsr_arena_t *x = pthread_getspecific(s->aux_key);
        if (x) arena_destroy(x);
        pthread_key_delete(s->aux_key);
    }
    /* closes the stores (the last flush still runs the GroupBys' kernels), then the states */
    tsr_host_close(s->host);
    s->host = NULL;
    tsr_registry_close(s->reg);
    tsr_metrics_free(s->metrics);
    tsr_arena_t *a = pthread_getspecific(s->arena_key);
    if (a) arena_destroy(a);
    pthread_key_delete(s->arena_key);
    pthread_mutex_destroy(&s->mu);
    pthread_mutex_destroy(&s->upload_mu);
    free(s->data_dir);
    free(s->warehouse);
    free(s->bind);
    free(s->kafka);
    free(s);
}
