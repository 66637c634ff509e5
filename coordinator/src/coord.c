/*
 * coord.c — the coordinator core (coord.h has the design and the role diagram).
 *
 * Transitions and where they happen:
 *   follower → leader      campaign()       txn(leader absent → put leader, own lease)
 *   leader → follower      step_down()      own lease lost, leader key changed or gone, a
 *                                           fenced txn refused, no etcd contact for a TTL
 *   worker joins / leaves  refresh_workers() + reassign()   (workers/ range every tick)
 *   shard running → done   tsr_coord_report_shard()
 *   shard → next worker    shard_retry()    failure report or worker gone; ≤ MAX_ATTEMPTS
 *   job → committed        commit_gb()      uploads/<gb> when all its shards are done
 *   job → finished         jobs_check()     every owner reported batch_end ≥ B
 *   backfill → finished    jobs_check()     every day-range shard done (no commit, no load)
 *   job → resumed          jobs_resume()    a new leader reads jobs/: every unfinished record
 *                                           becomes a job again, its shards not done re-issued
 *                                           with the next attempt number at the new epoch
 *
 * Write-ahead of shard attempts: an attempt is handed out (Assignment.shards) only once the
 * job record naming it is in etcd (shard.held until then), so a new leader that re-issues
 * "recorded attempt + 1" never hands out a number some worker has already seen from the old
 * leader (workers run each job/shard/attempt once).
 *
 * Invariants: under c->mu, every cached assignment is what assign/<gb> holds for our epoch;
 * c->rev grows whenever anything a snapshot shows changes (broadcast on c->cv).
 */
#include "tsr/coord.h"

#include <jansson.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cluster.pb-c.h"
#include "tessera.pb-c.h"
#include "tsr/assign.h"
#include "tsr/backfill.h"
#include "tsr/config.h"
#include "tsr/log.h"
#include "tsr/pbvalue.h"
#include "tsr/served.h"
#include "tsr/serving.h"
#include "tsr/table.h"
#include "tsr/time.h"

#define MAX_ATTEMPTS 3
#define JOB_KEEP_MS (3600 * 1000LL)     /* finished job records are dropped after an hour */
#define TOPIC_RETRY_MS 1000
#define LOOP_MS 250
/* A loop tick with nothing new (no watch event, no call that wakes the loop) reads the leader
 * key, configs and workers from etcd at most this often; the watches wake it for changes. */
#define REFRESH_MS 1000

/* ------------------------------------------------------------------------------------------
 * State */

typedef struct member {
    char *id, *addr;
    int64_t lease, registered_at;
    int64_t seen;                   /* leader's clock: first listed, or its last KeepAlive */
    int64_t renewed;                /* leader's clock: its lease's last keep-alive in etcd */
} member_t;

typedef struct wstatus {            /* last KeepAlive report of a worker (status/<id>) */
    char *id;
    char *written;                  /* the JSON last stored in status/<id> */
    tsr_coord_pstate_t *ps;         /* group_by strings owned */
    size_t nps;
} wstatus_t;

typedef struct gbinfo {             /* a served GroupBy, derived from the configs */
    char *name, *fp, *topic;        /* topic NULL: not streamed */
    char *config;                   /* the config that defines it */
    int part_index;                 /* -1: the config is the GroupBy */
    int entity;
} gbinfo_t;

typedef struct gbassign {           /* assign/<gb> */
    char *name;
    int32_t nparts;
    char **owners;                  /* nparts ids, NULL = none */
} gbassign_t;

typedef struct gbupload {           /* uploads/<gb> */
    char *name, *dir, *ds;
    int64_t batch_end;
} gbupload_t;

typedef struct topicn {
    char *topic;
    int32_t n;                      /* 0: unknown */
    int64_t last_try;
    char *error;
} topicn_t;

enum { SH_RUNNING = 0, SH_DONE = 1, SH_FAILED = 2 };

typedef struct shard {
    char *gb;                       /* backfill: the config's name */
    int32_t *parts;
    size_t nparts;
    int64_t lo, hi;                 /* backfill: its days */
    char *worker;
    int attempt, state;
    int resumes;                    /* attempts re-issued by a new leader (not failures: they do
                                       not count against MAX_ATTEMPTS) */
    int held;                       /* this attempt is not recorded in jobs/ yet: not handed out */
    int64_t epoch;                  /* the epoch that issued this attempt */
    int64_t keys;
    char *error;
} shard_t;

enum { JOB_RUNNING = 0, JOB_LOADING = 1, JOB_DONE = 2, JOB_FAILED = 3 };
enum { KIND_UPLOAD = 0, KIND_BACKFILL = 1 };

typedef struct job {
    char id[64];
    int kind;
    char *name, *ds, *warehouse;    /* backfill: ds is "START..END" */
    char *config_text, *output;     /* backfill: the config as applied when it began; the
                                       output table folder */
    int64_t days;                   /* backfill */
    int64_t batch_end, deadline;
    char **gbs;                     /* GroupBys uploaded */
    int *committed;
    size_t ngbs;
    shard_t *sh;
    size_t nsh;
    int state;
    int64_t created_at, finished_at;
    char *error;                    /* failed: why */
    int resumed;                    /* times a new leader resumed it */
    tsr_coord_upload_cb cb;         /* NULL once called */
    tsr_coord_backfill_cb bcb;      /* backfill: NULL once called */
    void *ud;
} job_t;

static int has_cb(const job_t *j) { return j->cb || j->bcb; }
static const char *job_kind(const job_t *j) { return j->kind == KIND_BACKFILL ? "backfill" : "upload"; }

typedef struct done_cb {            /* an upload callback to run outside the lock */
    tsr_coord_upload_cb cb;
    tsr_coord_backfill_cb bcb;
    void *ud;
    int rc;
    tsr_coord_upload_result_t res;
    tsr_coord_backfill_result_t bres;
    char *name, *output, *job_id;
    char *msg;
} done_cb_t;

struct tsr_coord {
    tsr_coord_opts_t o;
    char *id, *advertise, *prefix, *warehouse;
    int64_t ttl_ms, ttl_s;          /* worker leases */
    int64_t own_ttl_ms, own_ttl_s;  /* the replica's lease: half the workers' (at least 1 s), so
                                       that a failover completes before the workers' leases
                                       run out */
    int64_t grace_until;            /* a new leader keeps the stored assignments until then */
    int64_t jobs_grace_until;       /* a new leader moves no shard of a departed worker before */
    int64_t last_warn;              /* rate limit of "etcd unreachable" lines */
    int64_t last_tick;              /* the loop's last tick as leader (pause detection) */
    int light;                      /* this tick may skip the etcd reads (loop_main) */
    int64_t last_read;              /* the last tick that read leader, configs, workers */
    pthread_mutex_t mu;
    pthread_cond_t cv;              /* revision changes, stop */
    pthread_cond_t wake;            /* the loop: a watch fired */
    int wake_flag, stopping, resigned;
    pthread_t thread;
    int thread_started;
    pthread_t topic_thread;         /* Kafka metadata lookups, off the loop thread */
    int topic_thread_started;
    pthread_cond_t topic_cv;
    tsr_kv_watch_t *w_leader, *w_workers;
    int watch_broken;

    /* replica */
    int64_t lease, lease_renewed;   /* own lease; 0 = none (atomic: the lease thread) */
    int64_t lease_lost;             /* the lease the lease thread found expired (atomic) */
    pthread_t lease_thread;         /* renews the own lease over o.lease_kv (when given) */
    int lease_thread_started;
    int lease_stop;                 /* atomic */
    int leader;
    int64_t epoch;
    int stale;                      /* stepped down; leader caches not freed yet (reap()) */
    char stale_why[256];
    char leader_addr[256];
    int64_t rev;

    /* leader caches */
    tsr_reg_entry_t *configs;
    int64_t *config_rev;            /* mod_revision per config */
    size_t nconfigs;
    int64_t *seen_rev;              /* mod_revision of every configs/ key of the last range */
    size_t nseen;
    gbinfo_t *gbs;
    size_t ngbs;
    member_t *members;
    size_t nmembers;
    gbassign_t *as;
    size_t nas;
    gbupload_t *ups;
    size_t nups;
    topicn_t *topics;
    size_t ntopics;
    wstatus_t *status;
    size_t nstatus;
    job_t **jobs;
    size_t njobs;
    uint64_t job_seq;
    done_cb_t *done;
    size_t ndone, capdone;
};

static int64_t real_clock(void *ud) {
    (void)ud;
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

static int64_t now(tsr_coord_t *c) { return c->o.clock(c->o.clock_ud); }

static void key(const tsr_coord_t *c, char *buf, size_t cap, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void key(const tsr_coord_t *c, char *buf, size_t cap, const char *fmt, ...) {
    size_t n = (size_t)snprintf(buf, cap, "%s", c->prefix);
    va_list ap;
    va_start(ap, fmt);
    if (n < cap) vsnprintf(buf + n, cap - n, fmt, ap);
    va_end(ap);
}

static void bump(tsr_coord_t *c) {
    c->rev++;
    pthread_cond_broadcast(&c->cv);
}

/* ------------------------------------------------------------------------------------------
 * Upload callbacks: queued under the lock, run after it */

static void queue_done(tsr_coord_t *c, job_t *j, int rc, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void queue_done(tsr_coord_t *c, job_t *j, int rc, const char *fmt, ...) {
    if (!has_cb(j)) return;
    if (c->ndone == c->capdone) {
        c->capdone = c->capdone ? 2 * c->capdone : 8;
        c->done = tsr_realloc(c->done, c->capdone * sizeof *c->done);
    }
    done_cb_t *d = &c->done[c->ndone++];
    memset(d, 0, sizeof *d);
    d->cb = j->cb;
    d->bcb = j->bcb;
    d->ud = j->ud;
    d->rc = rc;
    d->name = tsr_strdup(j->name);
    d->job_id = tsr_strdup(j->id);
    d->res.name = d->name;
    d->res.job_id = d->job_id;
    d->bres.job_id = d->job_id;
    d->res.batch_end_ms = j->batch_end;
    for (size_t i = 0; i < j->nsh; i++) d->res.keys += j->sh[i].keys;
    d->res.group_bys = (int64_t)j->ngbs;
    if (j->kind == KIND_BACKFILL) {
        d->output = tsr_strdup(j->output ? j->output : "");
        d->bres.name = d->name;
        d->bres.days = j->days;
        d->bres.rows = d->res.keys;
        d->bres.shards = (int64_t)j->nsh;
        d->bres.output = d->output;
    }
    if (fmt) {
        char buf[TSR_ERROR_MSG_MAX];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(buf, sizeof buf, fmt, ap);
        va_end(ap);
        d->msg = tsr_strdup(buf);
    }
    j->cb = NULL;
    j->bcb = NULL;
}

static void reap(tsr_coord_t *c);

/* Frees the caches of a replica that stepped down, unlocks c->mu and runs the queued
 * callbacks. */
static void unlock_and_flush(tsr_coord_t *c) {
    reap(c);
    done_cb_t *v = c->done;
    size_t n = c->ndone;
    c->done = NULL;
    c->ndone = c->capdone = 0;
    pthread_mutex_unlock(&c->mu);
    for (size_t i = 0; i < n; i++) {
        if (v[i].bcb) v[i].bcb(v[i].ud, v[i].rc, &v[i].bres, v[i].msg ? v[i].msg : "");
        else v[i].cb(v[i].ud, v[i].rc, &v[i].res, v[i].msg ? v[i].msg : "");
        free(v[i].name);
        free(v[i].job_id);
        free(v[i].output);
        free(v[i].msg);
    }
    free(v);
}

/* ------------------------------------------------------------------------------------------
 * Freeing caches */

static void free_configs(tsr_coord_t *c) {
    tsr_reg_entries_free(c->configs, c->nconfigs);
    free(c->config_rev);
    free(c->seen_rev);
    c->configs = NULL;
    c->config_rev = NULL;
    c->seen_rev = NULL;
    c->nconfigs = c->nseen = 0;
    for (size_t i = 0; i < c->ngbs; i++) {
        free(c->gbs[i].name);
        free(c->gbs[i].fp);
        free(c->gbs[i].topic);
        free(c->gbs[i].config);
    }
    free(c->gbs);
    c->gbs = NULL;
    c->ngbs = 0;
}

static void free_members(member_t *v, size_t n) {
    for (size_t i = 0; i < n; i++) {
        free(v[i].id);
        free(v[i].addr);
    }
    free(v);
}

static void gbassign_free(gbassign_t *a) {
    for (int32_t p = 0; p < a->nparts; p++) free(a->owners[p]);
    free(a->owners);
    free(a->name);
}

static void wstatus_free(wstatus_t *w) {
    for (size_t i = 0; i < w->nps; i++) free((char *)w->ps[i].group_by);
    free(w->ps);
    free(w->id);
    free(w->written);
}

/* Replaces the in-memory report of worker id (creating it). */
static wstatus_t *status_set(tsr_coord_t *c, const char *id, const tsr_coord_pstate_t *ps, size_t nps) {
    wstatus_t *w = NULL;
    for (size_t i = 0; i < c->nstatus; i++)
        if (strcmp(c->status[i].id, id) == 0) w = &c->status[i];
    if (!w) {
        c->status = tsr_realloc(c->status, (c->nstatus + 1) * sizeof *c->status);
        w = &c->status[c->nstatus++];
        memset(w, 0, sizeof *w);
        w->id = tsr_strdup(id);
    } else {
        for (size_t i = 0; i < w->nps; i++) free((char *)w->ps[i].group_by);
        free(w->ps);
    }
    w->ps = tsr_calloc(nps ? nps : 1, sizeof *w->ps);
    w->nps = nps;
    for (size_t i = 0; i < nps; i++) {
        w->ps[i] = ps[i];
        w->ps[i].group_by = tsr_strdup(ps[i].group_by ? ps[i].group_by : "");
    }
    return w;
}

static char *status_json(const wstatus_t *w) {
    json_t *a = json_array();
    for (size_t i = 0; i < w->nps; i++)
        json_array_append_new(a, json_pack("{s:s, s:i, s:I, s:I, s:I, s:I}", "group_by", w->ps[i].group_by,
                                           "partition", (int)w->ps[i].partition, "batch_end_millis",
                                           (json_int_t)w->ps[i].batch_end_ms, "events", (json_int_t)w->ps[i].events,
                                           "lag", (json_int_t)w->ps[i].lag, "next_offset",
                                           (json_int_t)w->ps[i].next_offset));
    char *s = json_dumps(a, JSON_COMPACT);
    json_decref(a);
    return s;
}

/* Parses a status/<id> value into the in-memory reports (a malformed one is skipped). */
static void status_load(tsr_coord_t *c, const char *id, const char *val, size_t len) {
    json_error_t je;
    json_t *a = json_loadb(val, len, 0, &je);
    if (!a || !json_is_array(a)) {
        if (a) json_decref(a);
        return;
    }
    size_t n = json_array_size(a), k = 0;
    tsr_coord_pstate_t *ps = tsr_calloc(n ? n : 1, sizeof *ps);
    for (size_t i = 0; i < n; i++) {
        const char *g = NULL;
        int p = 0;
        json_int_t b = 0, ev = 0, lag = -1, off = -1;
        if (json_unpack(json_array_get(a, i), "{s:s, s:i, s?I, s?I, s?I, s?I}", "group_by", &g, "partition", &p,
                        "batch_end_millis", &b, "events", &ev, "lag", &lag, "next_offset", &off) == 0)
            ps[k++] = (tsr_coord_pstate_t){g, p, b, ev, lag, off};
    }
    wstatus_t *w = status_set(c, id, ps, k);
    w->written = tsr_strndup(val, len);
    free(ps);
    json_decref(a);
}

static void job_free(job_t *j) {
    free(j->name);
    free(j->ds);
    free(j->warehouse);
    free(j->config_text);
    free(j->output);
    free(j->error);
    for (size_t i = 0; i < j->ngbs; i++) free(j->gbs[i]);
    free(j->gbs);
    free(j->committed);
    for (size_t i = 0; i < j->nsh; i++) {
        free(j->sh[i].gb);
        free(j->sh[i].parts);
        free(j->sh[i].worker);
        free(j->sh[i].error);
    }
    free(j->sh);
    free(j);
}

static void free_leader_state(tsr_coord_t *c, const char *why) {
    free_configs(c);
    free_members(c->members, c->nmembers);
    c->members = NULL;
    c->nmembers = 0;
    for (size_t i = 0; i < c->nas; i++) gbassign_free(&c->as[i]);
    free(c->as);
    c->as = NULL;
    c->nas = 0;
    for (size_t i = 0; i < c->nups; i++) {
        free(c->ups[i].name);
        free(c->ups[i].dir);
        free(c->ups[i].ds);
    }
    free(c->ups);
    c->ups = NULL;
    c->nups = 0;
    for (size_t i = 0; i < c->ntopics; i++) {
        free(c->topics[i].topic);
        free(c->topics[i].error);
    }
    free(c->topics);
    c->topics = NULL;
    c->ntopics = 0;
    for (size_t i = 0; i < c->nstatus; i++) wstatus_free(&c->status[i]);
    free(c->status);
    c->status = NULL;
    c->nstatus = 0;
    for (size_t i = 0; i < c->njobs; i++) {
        /* the record stays "running": the next leader resumes the job */
        queue_done(c, c->jobs[i], TSR_EUNAVAIL, "%s %s ds=%s: %s; job %s continues under the next leader "
                   "(GetJob follows it)", job_kind(c->jobs[i]), c->jobs[i]->name, c->jobs[i]->ds, why,
                   c->jobs[i]->id);
        job_free(c->jobs[i]);
    }
    free(c->jobs);
    c->jobs = NULL;
    c->njobs = 0;
}

/* Leaves the leader role at once; the caches are freed later by reap(), at the end of the
 * public call, because callers deep in a loop (jobs_check → job_write → fenced) may still
 * hold pointers into them. Until then nothing writes: fenced() and require_leader() refuse. */
static void step_down(tsr_coord_t *c, const char *why) {
    if (!c->leader) return;
    tsr_log(TSR_LOG_WARN, "coordinator", "%s: stepping down as leader (epoch %lld): %s", c->id,
            (long long)c->epoch, why);
    c->leader = 0;
    c->epoch = 0;
    c->leader_addr[0] = 0;
    c->stale = 1;
    snprintf(c->stale_why, sizeof c->stale_why, "%s", why);
    bump(c);
}

static void reap(tsr_coord_t *c) {
    if (!c->stale || c->leader) return;
    c->stale = 0;
    free_leader_state(c, c->stale_why);
}

/* ------------------------------------------------------------------------------------------
 * Fenced writes */

/* txn(cmp leader == epoch, extra cmps → ops). A refusal means another leader: step down. */
static int fenced(tsr_coord_t *c, const tsr_kv_cmp_t *xcmp, size_t nx, const tsr_kv_op_t *ops,
                  size_t nops, tsr_error_t *err) {
    if (!c->leader) return tsr_error_set(err, TSR_EUNAVAIL, "not the leader; leader is %s",
                                         c->leader_addr[0] ? c->leader_addr : "unknown");
    char lk[512];
    key(c, lk, sizeof lk, "leader");
    tsr_kv_cmp_t cmp[4];
    cmp[0].key = lk;
    cmp[0].mod_revision = c->epoch;
    for (size_t i = 0; i < nx && i < 3; i++) cmp[1 + i] = xcmp[i];
    int ok = 0;
    int rc = tsr_kv_txn(c->o.kv, cmp, 1 + (nx < 3 ? nx : 3), ops, nops, &ok, NULL, err);
    if (rc) return rc;
    if (!ok) {
        step_down(c, "a fenced write was refused (another replica leads)");
        return tsr_error_set(err, TSR_EUNAVAIL, "not the leader any more (fenced write refused)");
    }
    return 0;
}

static int fenced_put(tsr_coord_t *c, const char *k, const char *val, tsr_error_t *err) {
    tsr_kv_op_t op = {TSR_KV_PUT, k, val, strlen(val), 0, 0};
    return fenced(c, NULL, 0, &op, 1, err);
}

/* ------------------------------------------------------------------------------------------
 * Configs → served GroupBys */

/* The Kafka topic (name only, as the ingest consumes it) of g's first streamed source. */
static const char *stream_topic(const tsr_conf_group_by_t *g, char *buf, size_t cap) {
    if (tsr_served_is_entity(g)) return NULL;
    for (size_t i = 0; i < g->n_sources; i++)
        if (g->sources[i].kind == TSR_SOURCE_EVENTS && tsr_conf_topic_name(g->sources[i].topic, buf, cap))
            return buf;
    return NULL;
}

static gbinfo_t *find_gb(tsr_coord_t *c, const char *name) {
    for (size_t i = 0; i < c->ngbs; i++)
        if (strcmp(c->gbs[i].name, name) == 0) return &c->gbs[i];
    return NULL;
}

static int cmp_gbinfo(const void *a, const void *b) {
    return strcmp(((const gbinfo_t *)a)->name, ((const gbinfo_t *)b)->name);
}

/* Rebuilds c->gbs from c->configs: a GroupBy config defines its GroupBy; otherwise the first
 * Join (by name) that has it as a part. */
static void derive_gbs(tsr_coord_t *c) {
    for (size_t i = 0; i < c->ngbs; i++) {
        free(c->gbs[i].name);
        free(c->gbs[i].fp);
        free(c->gbs[i].topic);
        free(c->gbs[i].config);
    }
    free(c->gbs);
    c->gbs = NULL;
    c->ngbs = 0;
    size_t cap = 0;
    for (int pass = 0; pass < 2; pass++) {
        for (size_t i = 0; i < c->nconfigs; i++) {
            tsr_reg_entry_t *e = &c->configs[i];
            if ((pass == 0) != (e->kind == TSR_CONF_GROUP_BY)) continue;
            if (e->kind != TSR_CONF_GROUP_BY && e->kind != TSR_CONF_JOIN) continue;
            tsr_config_t *conf = NULL;
            tsr_error_t err;
            /* with the warehouse, as apply validates (input types are part of the fingerprint) */
            if (tsr_served_load_conf(c->warehouse, e->text, e->text_len, e->name, &conf, &err) &&
                tsr_served_load_conf(NULL, e->text, e->text_len, e->name, &conf, &err)) {
                tsr_log(TSR_LOG_WARN, "coordinator", "config %s cannot be loaded: %s", e->name, err.msg);
                continue;
            }
            const tsr_conf_group_by_t *g[64];
            size_t ng = tsr_served_group_bys(conf, g, 64);
            for (size_t k = 0; k < ng; k++) {
                if (!g[k]->meta.name || find_gb(c, g[k]->meta.name)) continue;
                if (c->ngbs == cap) {
                    cap = cap ? 2 * cap : 16;
                    c->gbs = tsr_realloc(c->gbs, cap * sizeof *c->gbs);
                }
                gbinfo_t *gi = &c->gbs[c->ngbs++];
                gi->name = tsr_strdup(g[k]->meta.name);
                gi->fp = tsr_served_fingerprint(g[k]);
                char tb[256];
                const char *t = stream_topic(g[k], tb, sizeof tb);
                gi->topic = t ? tsr_strdup(t) : NULL;
                gi->config = tsr_strdup(e->name);
                gi->part_index = e->kind == TSR_CONF_GROUP_BY ? -1 : (int)k;
                gi->entity = tsr_served_is_entity(g[k]);
            }
            tsr_config_free(conf);
        }
    }
    if (c->ngbs) qsort(c->gbs, c->ngbs, sizeof *c->gbs, cmp_gbinfo);
}

/* Re-reads configs/; re-derives the GroupBys when anything changed. 1 when it changed. */
static int refresh_configs(tsr_coord_t *c, tsr_error_t *err) {
    char pk[512];
    key(c, pk, sizeof pk, "configs/");
    tsr_kv_entry_t *v;
    size_t n;
    int rc = tsr_kv_range(c->o.kv, pk, &v, &n, NULL, err);
    if (rc) return rc;
    int same = n == c->nseen;
    for (size_t i = 0; same && i < n; i++) same = v[i].mod_revision == c->seen_rev[i];
    if (same) {
        tsr_kv_entries_free(v, n);
        return 0;
    }
    free_configs(c);
    c->configs = tsr_calloc(n ? n : 1, sizeof *c->configs);
    c->config_rev = tsr_calloc(n ? n : 1, sizeof *c->config_rev);
    c->seen_rev = tsr_calloc(n ? n : 1, sizeof *c->seen_rev);
    c->nseen = n;
    for (size_t i = 0; i < n; i++) {
        c->seen_rev[i] = v[i].mod_revision;
        tsr_error_t e;
        if (tsr_reg_entry_decode(v[i].val, v[i].val_len, v[i].key, &c->configs[c->nconfigs], &e)) {
            tsr_log(TSR_LOG_WARN, "coordinator", "%s", e.msg);
            continue;
        }
        c->config_rev[c->nconfigs++] = v[i].mod_revision;
    }
    tsr_kv_entries_free(v, n);
    derive_gbs(c);
    bump(c);
    return 1;
}

/* ------------------------------------------------------------------------------------------
 * Members */

static member_t *find_member(tsr_coord_t *c, const char *id) {
    for (size_t i = 0; i < c->nmembers; i++)
        if (strcmp(c->members[i].id, id) == 0) return &c->members[i];
    return NULL;
}

static int refresh_workers(tsr_coord_t *c, tsr_error_t *err) {
    char pk[512];
    key(c, pk, sizeof pk, "workers/");
    size_t plen = strlen(pk);
    tsr_kv_entry_t *v;
    size_t n;
    int rc = tsr_kv_range(c->o.kv, pk, &v, &n, NULL, err);
    if (rc) return rc;
    member_t *m = tsr_calloc(n ? n : 1, sizeof *m);
    size_t nm = 0;
    for (size_t i = 0; i < n; i++) {
        json_error_t je;
        json_t *j = json_loadb(v[i].val, v[i].val_len, 0, &je);
        const char *addr = "";
        json_int_t at = 0;
        if (!j || json_unpack(j, "{s:s, s?I}", "addr", &addr, "registered_at_millis", &at)) {
            if (j) json_decref(j);
            continue;
        }
        m[nm].id = tsr_strdup(v[i].key + plen);
        m[nm].addr = tsr_strdup(addr);
        m[nm].lease = v[i].lease;
        m[nm].registered_at = at;
        const member_t *old = find_member(c, m[nm].id);
        m[nm].seen = old && old->lease == m[nm].lease ? old->seen : now(c);
        m[nm].renewed = old && old->lease == m[nm].lease ? old->renewed : 0;
        nm++;
        json_decref(j);
    }
    tsr_kv_entries_free(v, n);
    int changed = nm != c->nmembers;
    for (size_t i = 0; !changed && i < nm; i++)
        changed = strcmp(m[i].id, c->members[i].id) != 0 || strcmp(m[i].addr, c->members[i].addr) != 0 ||
                  m[i].lease != c->members[i].lease;
    if (changed) {
        for (size_t i = 0; i < nm; i++)
            if (!find_member(c, m[i].id))
                tsr_log(TSR_LOG_INFO, "coordinator", "worker %s joined (%s)", m[i].id, m[i].addr);
        for (size_t i = 0; i < c->nmembers; i++) {
            int alive = 0;
            for (size_t k = 0; k < nm; k++) alive |= strcmp(m[k].id, c->members[i].id) == 0;
            if (!alive) tsr_log(TSR_LOG_INFO, "coordinator", "worker %s left", c->members[i].id);
        }
        free_members(c->members, c->nmembers);
        c->members = m;
        c->nmembers = nm;
        bump(c);
    } else {
        free_members(m, nm);
    }
    return 0;
}

/* ------------------------------------------------------------------------------------------
 * Assignment */

static gbassign_t *find_as(tsr_coord_t *c, const char *name) {
    for (size_t i = 0; i < c->nas; i++)
        if (strcmp(c->as[i].name, name) == 0) return &c->as[i];
    return NULL;
}

static gbupload_t *find_up(tsr_coord_t *c, const char *name) {
    for (size_t i = 0; i < c->nups; i++)
        if (strcmp(c->ups[i].name, name) == 0) return &c->ups[i];
    return NULL;
}

static char *assign_json(const tsr_coord_t *c, const gbassign_t *a) {
    json_t *o = json_array();
    for (int32_t p = 0; p < a->nparts; p++)
        json_array_append_new(o, a->owners[p] ? json_string(a->owners[p]) : json_null());
    json_t *j = json_pack("{s:I, s:i, s:o}", "epoch", (json_int_t)c->epoch, "partitions",
                          (int)a->nparts, "owners", o);
    char *s = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    return s;
}

/* Loads assign/ and uploads/ (on becoming leader). */
static int load_stored(tsr_coord_t *c, tsr_error_t *err) {
    char pk[512];
    key(c, pk, sizeof pk, "assign/");
    size_t plen = strlen(pk);
    tsr_kv_entry_t *v;
    size_t n;
    int rc = tsr_kv_range(c->o.kv, pk, &v, &n, NULL, err);
    if (rc) return rc;
    c->as = tsr_calloc(n ? n : 1, sizeof *c->as);
    for (size_t i = 0; i < n; i++) {
        json_error_t je;
        json_t *j = json_loadb(v[i].val, v[i].val_len, 0, &je);
        json_t *owners = NULL;
        int np = 0;
        if (!j || json_unpack(j, "{s:i, s:o}", "partitions", &np, "owners", &owners) || np < 0 ||
            !json_is_array(owners) || json_array_size(owners) != (size_t)np) {
            if (j) json_decref(j);
            tsr_log(TSR_LOG_WARN, "coordinator", "%s: not an assignment; recomputing it", v[i].key);
            continue;
        }
        gbassign_t *a = &c->as[c->nas++];
        a->name = tsr_strdup(v[i].key + plen);
        a->nparts = np;
        a->owners = tsr_calloc(np ? (size_t)np : 1, sizeof(char *));
        for (int p = 0; p < np; p++) {
            const char *s = json_string_value(json_array_get(owners, (size_t)p));
            a->owners[p] = s ? tsr_strdup(s) : NULL;
        }
        json_decref(j);
    }
    tsr_kv_entries_free(v, n);
    key(c, pk, sizeof pk, "status/");
    plen = strlen(pk);
    rc = tsr_kv_range(c->o.kv, pk, &v, &n, NULL, err);
    if (rc) return rc;
    for (size_t i = 0; i < n; i++) status_load(c, v[i].key + plen, v[i].val, v[i].val_len);
    tsr_kv_entries_free(v, n);
    key(c, pk, sizeof pk, "uploads/");
    plen = strlen(pk);
    rc = tsr_kv_range(c->o.kv, pk, &v, &n, NULL, err);
    if (rc) return rc;
    c->ups = tsr_calloc(n ? n : 1, sizeof *c->ups);
    for (size_t i = 0; i < n; i++) {
        json_error_t je;
        json_t *j = json_loadb(v[i].val, v[i].val_len, 0, &je);
        json_int_t b = 0;
        const char *dir = "", *ds = "";
        if (!j || json_unpack(j, "{s:I, s:s, s?s}", "batch_end_millis", &b, "dir", &dir, "ds", &ds)) {
            if (j) json_decref(j);
            continue;
        }
        gbupload_t *u = &c->ups[c->nups++];
        u->name = tsr_strdup(v[i].key + plen);
        u->dir = tsr_strdup(dir);
        u->ds = tsr_strdup(ds);
        u->batch_end = b;
        json_decref(j);
    }
    tsr_kv_entries_free(v, n);
    return 0;
}

static topicn_t *find_topic(tsr_coord_t *c, const char *topic, int create) {
    for (size_t i = 0; i < c->ntopics; i++)
        if (strcmp(c->topics[i].topic, topic) == 0) return &c->topics[i];
    if (!create) return NULL;
    c->topics = tsr_realloc(c->topics, (c->ntopics + 1) * sizeof *c->topics);
    topicn_t *t = &c->topics[c->ntopics++];
    memset(t, 0, sizeof *t);
    t->topic = tsr_strdup(topic);
    t->last_try = INT64_MIN;
    return t;
}

/* Partition count of a GroupBy, or 0 while unknown (lookup_topics fills the cache). */
static int32_t gb_partitions(tsr_coord_t *c, const gbinfo_t *g) {
    if (!g->topic || !c->o.topic_partitions) return c->o.default_partitions;
    topicn_t *t = find_topic(c, g->topic, 0);
    return t ? t->n : 0;
}

/* Looks up the partition counts of topics not known yet (each at most once a second). The
 * lookup (a Kafka metadata request, up to seconds) runs with c->mu released, so that
 * KeepAlives are not held up by a slow broker. Under c->mu on entry and exit. Runs on its own
 * thread once the coordinator is started (a slow broker must not delay the renewal of the
 * replica's lease), inline in tsr_coord_tick otherwise (tests). */
static void lookup_topics(tsr_coord_t *c) {
    if (!c->o.topic_partitions) return;
    int64_t tn = now(c);
    char **due = NULL;
    size_t nd = 0;
    for (size_t i = 0; i < c->ngbs; i++) {
        if (!c->gbs[i].topic) continue;
        topicn_t *t = find_topic(c, c->gbs[i].topic, 1);
        if (t->n > 0 || (t->last_try != INT64_MIN && tn - t->last_try < TOPIC_RETRY_MS)) continue;
        t->last_try = tn;
        due = tsr_realloc(due, (nd + 1) * sizeof *due);
        due[nd++] = tsr_strdup(t->topic);
    }
    if (!nd) return;
    int32_t *n = tsr_calloc(nd, sizeof *n);
    char **msg = tsr_calloc(nd, sizeof *msg);
    pthread_mutex_unlock(&c->mu);
    for (size_t i = 0; i < nd; i++) {
        tsr_error_t err;
        tsr_error_clear(&err);
        int rc = c->o.topic_partitions(c->o.topic_ud, due[i], &n[i], &err);
        if (rc || n[i] <= 0) {
            n[i] = 0;
            msg[i] = tsr_strdup(rc ? err.msg : "the topic has no partitions");
        }
    }
    pthread_mutex_lock(&c->mu);
    for (size_t i = 0; i < nd; i++) {
        topicn_t *t = c->leader ? find_topic(c, due[i], 1) : NULL;
        if (t && n[i] > 0) {
            t->n = n[i];
            free(t->error);
            t->error = NULL;
            tsr_log(TSR_LOG_INFO, "coordinator", "topic %s has %d partitions", due[i], (int)n[i]);
        } else if (t) {
            if (!t->error || strcmp(t->error, msg[i]) != 0)
                tsr_log(TSR_LOG_WARN, "coordinator", "GroupBys streamed from topic %s stay unassigned: %s",
                        due[i], msg[i]);
            free(t->error);
            t->error = msg[i];
            msg[i] = NULL;
        }
        free(msg[i]);
        free(due[i]);
    }
    free(due);
    free(n);
    free(msg);
}

static const char *topic_error(tsr_coord_t *c, const char *topic) {
    for (size_t i = 0; i < c->ntopics; i++)
        if (strcmp(c->topics[i].topic, topic) == 0) return c->topics[i].error;
    return NULL;
}

/* Recomputes every assignment with the stored owners as history; writes what changed.
 * A new leader that found stored assignments waits one worker-lease TTL first: workers whose
 * leases ran out during the failover re-register under their stable ids meanwhile, so the
 * membership and thus the assignment come out unchanged. */
static int reassign(tsr_coord_t *c, tsr_error_t *err) {
    if (now(c) < c->grace_until) return 0;
    size_t ng = c->ngbs;
    tsr_assign_gb_t *in = tsr_calloc(ng ? ng : 1, sizeof *in);
    const char **workers = tsr_calloc(c->nmembers ? c->nmembers : 1, sizeof(char *));
    for (size_t i = 0; i < c->nmembers; i++) workers[i] = c->members[i].id;
    /* co-location class = the partition count: a key lands in the same partition p of every
     * GroupBy with that count (common/partition.h), so partition p of all of them goes to one
     * worker as far as the balance allows, and one entity of a Join is read from one owner */
    char (*colo)[24] = tsr_calloc(ng ? ng : 1, sizeof *colo);
    size_t nin = 0;
    for (size_t i = 0; i < ng; i++) {
        int32_t np = gb_partitions(c, &c->gbs[i]);
        if (np <= 0) continue;
        gbassign_t *cur = find_as(c, c->gbs[i].name);
        snprintf(colo[nin], sizeof colo[nin], "partitions=%d", (int)np);
        in[nin].name = c->gbs[i].name;
        in[nin].colocate = colo[nin];
        in[nin].num_partitions = np;
        in[nin].prev = cur && cur->nparts == np ? (const char *const *)cur->owners : NULL;
        in[nin].owners = tsr_calloc((size_t)np, sizeof(int32_t));
        nin++;
    }
    tsr_assign(workers, c->nmembers, in, nin, NULL);
    int rc = 0, changed = 0;
    for (size_t k = 0; k < nin && rc == 0; k++) {
        gbassign_t *cur = find_as(c, in[k].name);
        int same = cur && cur->nparts == in[k].num_partitions;
        for (int32_t p = 0; same && p < in[k].num_partitions; p++) {
            const char *w = in[k].owners[p] >= 0 ? workers[in[k].owners[p]] : NULL;
            same = (w == NULL && cur->owners[p] == NULL) ||
                   (w && cur->owners[p] && strcmp(w, cur->owners[p]) == 0);
        }
        if (same) continue;
        gbassign_t na;
        na.name = tsr_strdup(in[k].name);
        na.nparts = in[k].num_partitions;
        na.owners = tsr_calloc((size_t)na.nparts, sizeof(char *));
        for (int32_t p = 0; p < na.nparts; p++)
            na.owners[p] = in[k].owners[p] >= 0 ? tsr_strdup(workers[in[k].owners[p]]) : NULL;
        char ak[512];
        key(c, ak, sizeof ak, "assign/%s", na.name);
        char *js = assign_json(c, &na);
        rc = fenced_put(c, ak, js, err);
        free(js);
        if (rc) {
            gbassign_free(&na);
            break;
        }
        if (cur) {
            gbassign_free(cur);
            *cur = na;
        } else {
            c->as = tsr_realloc(c->as, (c->nas + 1) * sizeof *c->as);
            c->as[c->nas++] = na;
        }
        changed = 1;
    }
    /* GroupBys no longer served lose their assignment */
    for (size_t i = 0; rc == 0 && c->leader && i < c->nas;) {
        if (find_gb(c, c->as[i].name)) {
            i++;
            continue;
        }
        char ak[512];
        key(c, ak, sizeof ak, "assign/%s", c->as[i].name);
        tsr_kv_op_t op = {TSR_KV_DELETE, ak, NULL, 0, 0, 0};
        rc = fenced(c, NULL, 0, &op, 1, err);
        if (rc) break;
        gbassign_free(&c->as[i]);
        memmove(c->as + i, c->as + i + 1, (c->nas - i - 1) * sizeof *c->as);
        c->nas--;
        changed = 1;
    }
    for (size_t k = 0; k < nin; k++) free(in[k].owners);
    free(in);
    free(colo);
    free(workers);
    if (changed && c->leader) bump(c);
    return rc;
}

/* ------------------------------------------------------------------------------------------
 * Jobs */

static const char *const job_states[] = {"running", "loading", "done", "failed"};

/* The record of a job (jobs/<id>): everything a new leader needs to resume it. */
static json_t *job_json(const job_t *j) {
    json_t *sh = json_array();
    for (size_t i = 0; i < j->nsh; i++) {
        json_t *parts = json_array();
        for (size_t p = 0; p < j->sh[i].nparts; p++) json_array_append_new(parts, json_integer(j->sh[i].parts[p]));
        json_t *o = json_pack("{s:s, s:o, s:s, s:i, s:s, s:I, s:s, s:i, s:I}", "group_by", j->sh[i].gb,
                              "partitions", parts, "worker", j->sh[i].worker ? j->sh[i].worker : "",
                              "attempt", j->sh[i].attempt, "state",
                              j->sh[i].state == SH_DONE     ? "done"
                              : j->sh[i].state == SH_FAILED ? "failed"
                                                            : "running",
                              "keys", (json_int_t)j->sh[i].keys, "error", j->sh[i].error ? j->sh[i].error : "",
                              "resumes", j->sh[i].resumes, "epoch", (json_int_t)j->sh[i].epoch);
        if (j->kind == KIND_BACKFILL) {
            char a[11], b[11];
            tsr_ds_format(j->sh[i].lo, a);
            tsr_ds_format(j->sh[i].hi, b);
            json_object_set_new(o, "start_ds", json_string(a));
            json_object_set_new(o, "end_ds", json_string(b));
        }
        json_array_append_new(sh, o);
    }
    json_t *o = json_pack("{s:s, s:s, s:s, s:I, s:s, s:o}", "name", j->name, "ds", j->ds, "warehouse",
                          j->warehouse, "batch_end_millis", (json_int_t)j->batch_end, "state",
                          job_states[j->state], "shards", sh);
    json_object_set_new(o, "kind", json_string(job_kind(j)));
    if (j->output) json_object_set_new(o, "output", json_string(j->output));
    if (j->config_text) json_object_set_new(o, "config", json_string(j->config_text));
    if (j->kind == KIND_BACKFILL) json_object_set_new(o, "days", json_integer(j->days));
    json_t *g = json_array();
    for (size_t i = 0; i < j->ngbs; i++) json_array_append_new(g, json_string(j->gbs[i]));
    json_object_set_new(o, "group_bys", g);
    json_object_set_new(o, "created_at_millis", json_integer(j->created_at));
    json_object_set_new(o, "finished_at_millis", json_integer(j->finished_at));
    json_object_set_new(o, "resumed", json_integer(j->resumed));
    if (j->error) json_object_set_new(o, "error", json_string(j->error));
    return o;
}

/* Records the job in jobs/<id> (fenced). On success every shard attempt is recorded and may be
 * handed out (held cleared). */
static int job_write(tsr_coord_t *c, job_t *j) {
    json_t *o = job_json(j);
    char *s = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    char jk[512];
    key(c, jk, sizeof jk, "jobs/%s", j->id);
    tsr_error_t err;
    int rc = fenced_put(c, jk, s, &err);
    if (rc) {
        tsr_log(TSR_LOG_WARN, "coordinator", "job %s: cannot record its state: %s", j->id, err.msg);
    } else {
        int released = 0;
        for (size_t i = 0; i < j->nsh; i++) {
            released |= j->sh[i].held;
            j->sh[i].held = 0;
        }
        if (released) bump(c);
    }
    free(s);
    return rc;
}

static void job_finish(tsr_coord_t *c, job_t *j, int state) {
    j->state = state;
    j->finished_at = now(c);
}

static void upload_dir(const job_t *j, const char *gb, char *buf, size_t cap) {
    snprintf(buf, cap, "%s/_tessera/uploads/%s/%lld", j->warehouse, gb, (long long)j->batch_end);
}

static void job_fail(tsr_coord_t *c, job_t *j, int rc, const char *msg) {
    job_finish(c, j, JOB_FAILED);
    free(j->error);
    j->error = tsr_strdup(msg);
    tsr_log(TSR_LOG_WARN, "coordinator", "job %s: %s", j->id, msg);
    queue_done(c, j, rc, "%s", msg);
    job_write(c, j);
}

/* The next live worker after `after` in id order (or the first); NULL when none. */
static const char *next_worker(tsr_coord_t *c, const char *after) {
    if (c->nmembers == 0) return NULL;
    for (size_t i = 0; after && i < c->nmembers; i++)
        if (strcmp(c->members[i].id, after) > 0) return c->members[i].id;
    return c->members[0].id;
}

static void shard_retry(tsr_coord_t *c, job_t *j, size_t s, const char *why) {
    shard_t *sh = &j->sh[s];
    free(sh->error);
    sh->error = tsr_strdup(why);
    const char *w = next_worker(c, sh->worker);
    if (sh->attempt - sh->resumes >= MAX_ATTEMPTS || !w) {
        sh->state = SH_FAILED;
        char msg[TSR_ERROR_MSG_MAX];
        if (j->kind == KIND_BACKFILL) {
            char a[11], b[11];
            tsr_ds_format(sh->lo, a);
            tsr_ds_format(sh->hi, b);
            snprintf(msg, sizeof msg, "backfill of %s ds=%s failed: shard %zu (days %s..%s) failed %d times%s; "
                     "last error: %s (days of other shards may have been written; rerun the backfill)",
                     j->name, j->ds, s, a, b, sh->attempt - sh->resumes, w ? "" : " and no worker is left", why);
        } else {
            snprintf(msg, sizeof msg, "upload of %s ds=%s failed: shard %zu (GroupBy %s, %zu partitions) "
                     "failed %d times%s; last error: %s (the previous upload keeps serving)",
                     j->name, j->ds, s, sh->gb, sh->nparts, sh->attempt - sh->resumes,
                     w ? "" : " and no worker is left", why);
        }
        job_fail(c, j, TSR_EIO, msg);
        return;
    }
    tsr_log(TSR_LOG_INFO, "coordinator", "job %s shard %zu: attempt %d on %s failed (%s); retrying on %s",
            j->id, s, sh->attempt, sh->worker, why, w);
    free(sh->worker);
    sh->worker = tsr_strdup(w);
    sh->attempt++;
    sh->epoch = c->epoch;
    sh->held = 1;                   /* handed out once recorded */
    job_write(c, j);
    bump(c);
}

static int commit_gb(tsr_coord_t *c, job_t *j, size_t g, tsr_error_t *err) {
    char dir[1024];
    upload_dir(j, j->gbs[g], dir, sizeof dir);
    json_t *o = json_pack("{s:I, s:s, s:s}", "batch_end_millis", (json_int_t)j->batch_end, "dir", dir,
                          "ds", j->ds);
    char *s = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    char uk[512];
    key(c, uk, sizeof uk, "uploads/%s", j->gbs[g]);
    int rc = fenced_put(c, uk, s, err);
    free(s);
    if (rc) return rc;
    gbupload_t *u = find_up(c, j->gbs[g]);
    if (!u) {
        c->ups = tsr_realloc(c->ups, (c->nups + 1) * sizeof *c->ups);
        u = &c->ups[c->nups++];
        u->name = tsr_strdup(j->gbs[g]);
    } else {
        free(u->dir);
        free(u->ds);
    }
    u->dir = tsr_strdup(dir);
    u->ds = tsr_strdup(j->ds);
    u->batch_end = j->batch_end;
    j->committed[g] = 1;
    tsr_log(TSR_LOG_INFO, "coordinator", "committed upload of %s ds=%s (batch end %lld) at %s", j->gbs[g],
            j->ds, (long long)j->batch_end, dir);
    bump(c);
    return 0;
}

static const wstatus_t *find_status(tsr_coord_t *c, const char *id) {
    for (size_t i = 0; i < c->nstatus; i++)
        if (strcmp(c->status[i].id, id) == 0) return &c->status[i];
    return NULL;
}

/* The batch end a worker reported for (gb, p); 0 when none. */
static int64_t reported_batch_end(tsr_coord_t *c, const char *worker, const char *gb, int32_t p) {
    const wstatus_t *w = find_status(c, worker);
    for (size_t i = 0; w && i < w->nps; i++)
        if (w->ps[i].partition == p && strcmp(w->ps[i].group_by, gb) == 0) return w->ps[i].batch_end_ms;
    return 0;
}

/* Moves jobs forward: shards of departed workers, commits, load confirmations, deadlines. */
static void jobs_check(tsr_coord_t *c) {
    int64_t tn = now(c);
    for (size_t i = 0; i < c->njobs && c->leader; i++) {
        job_t *j = c->jobs[i];
        if (j->state == JOB_RUNNING) {
            /* attempts not recorded yet (etcd was out of reach): record them now */
            int held = 0;
            for (size_t s = 0; s < j->nsh; s++) held |= j->sh[s].held;
            if (held && job_write(c, j) && !c->leader) break;
            /* (for one worker TTL after a takeover, workers whose leases ran out during the
             * failover may still re-register and keep their shards) */
            for (size_t s = 0; s < j->nsh && j->state == JOB_RUNNING && tn >= c->jobs_grace_until; s++)
                if (j->sh[s].state == SH_RUNNING && !find_member(c, j->sh[s].worker)) {
                    char why[256];
                    snprintf(why, sizeof why, "worker %s left (lease lost)", j->sh[s].worker);
                    shard_retry(c, j, s, why);
                }
            if (j->kind == KIND_BACKFILL) {
                int all = j->state == JOB_RUNNING;
                for (size_t s = 0; s < j->nsh && all; s++) all = j->sh[s].state == SH_DONE;
                if (all) {
                    job_finish(c, j, JOB_DONE);
                    int64_t rows = 0;
                    for (size_t s = 0; s < j->nsh; s++) rows += j->sh[s].keys;
                    tsr_log(TSR_LOG_INFO, "coordinator", "backfill %s ds=%s done: %lld rows in %zu shards at %s",
                            j->name, j->ds, (long long)rows, j->nsh, j->output);
                    queue_done(c, j, TSR_OK, NULL);
                    job_write(c, j);
                }
            }
            for (size_t g = 0; g < j->ngbs && j->state == JOB_RUNNING; g++) {
                if (j->committed[g]) continue;
                int all = 1;
                for (size_t s = 0; s < j->nsh; s++)
                    if (strcmp(j->sh[s].gb, j->gbs[g]) == 0 && j->sh[s].state != SH_DONE) all = 0;
                tsr_error_t err;
                if (all && commit_gb(c, j, g, &err)) {
                    job_fail(c, j, err.code, err.msg);
                }
            }
            int allc = j->state == JOB_RUNNING && j->kind == KIND_UPLOAD;
            for (size_t g = 0; g < j->ngbs; g++) allc &= j->committed[g];
            if (allc) {
                j->state = JOB_LOADING;
                job_write(c, j);
            }
        }
        if (j->state == JOB_LOADING) {
            int loaded = 1;
            for (size_t g = 0; g < j->ngbs && loaded; g++) {
                gbassign_t *a = find_as(c, j->gbs[g]);
                for (int32_t p = 0; a && p < a->nparts && loaded; p++)
                    loaded = a->owners[p] && reported_batch_end(c, a->owners[p], j->gbs[g], p) >= j->batch_end;
                if (!a) loaded = 0;
            }
            if (loaded) {
                job_finish(c, j, JOB_DONE);
                tsr_log(TSR_LOG_INFO, "coordinator", "upload %s ds=%s done: loaded by every owner", j->name, j->ds);
                queue_done(c, j, TSR_OK, NULL);
                job_write(c, j);
            }
        }
        if (has_cb(j) && tn >= j->deadline) {
            const char *st = j->state == JOB_RUNNING ? "shards still running" : "owners still loading";
            queue_done(c, j, TSR_ETIMEOUT,
                       "%s %s ds=%s: not finished before the deadline (%s); the job %s continues",
                       job_kind(j), j->name, j->ds, st, j->id);
        }
    }
    /* finished jobs leave memory (their record stays in jobs/) */
    for (size_t i = 0; i < c->njobs;) {
        job_t *j = c->jobs[i];
        if ((j->state == JOB_DONE || j->state == JOB_FAILED) && !has_cb(j)) {
            job_free(j);
            memmove(c->jobs + i, c->jobs + i + 1, (c->njobs - i - 1) * sizeof *c->jobs);
            c->njobs--;
            bump(c);
        } else {
            i++;
        }
    }
}

/* ------------------------------------------------------------------------------------------
 * Replica: own lease, campaign, leadership check */

/* Leadership guard: our lease was renewed less than 2/3 of its TTL ago, so it cannot have
 * expired (and nobody else can have been elected) — a replica paused or cut off from etcd
 * stops acting as leader before its lease could run out. Renewals come every TTL/3. */
static int lease_fresh(tsr_coord_t *c) {
    return c->lease && now(c) - __atomic_load_n(&c->lease_renewed, __ATOMIC_ACQUIRE) < c->own_ttl_ms * 2 / 3;
}

/* The lease thread (o.lease_kv given): renews the current lease every TTL/3 on its own
 * connection, without c->mu; marks a lease found expired for the loop to replace. */
static void *lease_main(void *arg) {
    tsr_coord_t *c = arg;
    while (!__atomic_load_n(&c->lease_stop, __ATOMIC_ACQUIRE)) {
        int64_t id = __atomic_load_n(&c->lease, __ATOMIC_ACQUIRE);
        int64_t t0 = now(c);
        if (id && t0 - __atomic_load_n(&c->lease_renewed, __ATOMIC_ACQUIRE) >= c->own_ttl_ms / 3 &&
            __atomic_load_n(&c->lease_lost, __ATOMIC_ACQUIRE) != id) {
            tsr_error_t err;
            int rc = tsr_kv_lease_keepalive(c->o.lease_kv, id, NULL, &err);
            if (rc == 0) {
                /* renewed as of when the request was sent */
                if (__atomic_load_n(&c->lease, __ATOMIC_ACQUIRE) == id)
                    __atomic_store_n(&c->lease_renewed, t0, __ATOMIC_RELEASE);
            } else if (rc == TSR_ENOTFOUND) {
                __atomic_store_n(&c->lease_lost, id, __ATOMIC_RELEASE);
            }
        }
        struct timespec ts = {0, 50 * 1000000L};
        nanosleep(&ts, NULL);
    }
    return NULL;
}

static int ensure_lease(tsr_coord_t *c, tsr_error_t *err) {
    int64_t tn = now(c);
    if (c->lease) {
        int rc = 0;
        if (c->lease_thread_started) {
            /* renewed by the lease thread; it says when the lease is gone */
            if (__atomic_load_n(&c->lease_lost, __ATOMIC_ACQUIRE) != c->lease) return 0;
            rc = TSR_ENOTFOUND;
        } else {
            if (tn - c->lease_renewed < c->own_ttl_ms / 3) return 0;
            rc = tsr_kv_lease_keepalive(c->o.kv, c->lease, NULL, err);
            if (rc == 0) {
                c->lease_renewed = tn;
                return 0;
            }
        }
        if (rc != TSR_ENOTFOUND) return rc;
        tsr_log(TSR_LOG_WARN, "coordinator", "%s: own lease %lld expired", c->id, (long long)c->lease);
        __atomic_store_n(&c->lease, 0, __ATOMIC_RELEASE);
        step_down(c, "own lease expired");
    }
    int64_t id = 0;
    int rc = tsr_kv_lease_grant(c->o.kv, c->own_ttl_s, &id, err);
    if (rc) return rc;
    __atomic_store_n(&c->lease_renewed, tn, __ATOMIC_RELEASE);
    __atomic_store_n(&c->lease, id, __ATOMIC_RELEASE);
    char ck[512];
    key(c, ck, sizeof ck, "coordinators/%s", c->id);
    json_t *o = json_pack("{s:s}", "addr", c->advertise);
    char *s = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    rc = tsr_kv_put(c->o.kv, ck, s, strlen(s), c->lease, NULL, err);
    free(s);
    return rc;
}

/* A job from its record (jobs/<id>), or NULL (with *why) when the record is not one that can
 * be resumed. The job has no callback (the call that started it ended with the old leader). */
static job_t *job_from_json(const char *id, json_t *o, const char **why) {
    const char *name = NULL, *ds = NULL, *wh = NULL, *state = NULL, *kind = "upload";
    json_int_t be = 0;
    json_t *shards = NULL;
    *why = "malformed record";
    if (json_unpack(o, "{s:s, s:s, s:s, s:I, s:s, s:o, s?s}", "name", &name, "ds", &ds, "warehouse", &wh,
                    "batch_end_millis", &be, "state", &state, "shards", &shards, "kind", &kind) ||
        !json_is_array(shards) || json_array_size(shards) == 0 || strlen(id) >= 64)
        return NULL;
    job_t *j = tsr_calloc(1, sizeof *j);
    snprintf(j->id, sizeof j->id, "%s", id);
    j->kind = strcmp(kind, "backfill") == 0 ? KIND_BACKFILL : KIND_UPLOAD;
    j->name = tsr_strdup(name);
    j->ds = tsr_strdup(ds);
    j->warehouse = tsr_strdup(wh);
    j->batch_end = be;
    j->deadline = INT64_MAX;
    j->state = strcmp(state, "loading") == 0 ? JOB_LOADING : JOB_RUNNING;
    const char *s;
    if ((s = json_string_value(json_object_get(o, "output")))) j->output = tsr_strdup(s);
    if ((s = json_string_value(json_object_get(o, "config")))) j->config_text = tsr_strdup(s);
    j->days = json_integer_value(json_object_get(o, "days"));
    j->created_at = json_integer_value(json_object_get(o, "created_at_millis"));
    j->resumed = (int)json_integer_value(json_object_get(o, "resumed"));
    size_t n = json_array_size(shards);
    j->sh = tsr_calloc(n, sizeof *j->sh);
    int ok = 1;
    for (size_t i = 0; i < n && ok; i++) {
        json_t *x = json_array_get(shards, i);
        shard_t *sh = &j->sh[j->nsh++];
        const char *gb = NULL, *w = "", *st = "running", *err = "", *a = NULL, *b = NULL;
        json_t *parts = NULL;
        int attempt = 0, resumes = 0;
        json_int_t keys = 0, ep = 0;
        ok = json_unpack(x, "{s:s, s?o, s?s, s:i, s?s, s?I, s?s, s?i, s?I, s?s, s?s}", "group_by", &gb,
                         "partitions", &parts, "worker", &w, "attempt", &attempt, "state", &st, "keys", &keys,
                         "error", &err, "resumes", &resumes, "epoch", &ep, "start_ds", &a, "end_ds", &b) == 0;
        if (!ok) break;
        sh->gb = tsr_strdup(gb);
        sh->worker = tsr_strdup(w);
        sh->attempt = attempt;
        sh->resumes = resumes;
        sh->epoch = ep;
        sh->keys = keys;
        sh->state = strcmp(st, "done") == 0 ? SH_DONE : strcmp(st, "failed") == 0 ? SH_FAILED : SH_RUNNING;
        sh->error = err[0] ? tsr_strdup(err) : NULL;
        size_t np = json_is_array(parts) ? json_array_size(parts) : 0;
        sh->parts = tsr_calloc(np ? np : 1, sizeof(int32_t));
        for (size_t p = 0; p < np; p++) sh->parts[sh->nparts++] = (int32_t)json_integer_value(json_array_get(parts, p));
        if (j->kind == KIND_BACKFILL)
            ok = a && b && tsr_ds_parse(a, &sh->lo) == 0 && tsr_ds_parse(b, &sh->hi) == 0 && sh->lo <= sh->hi;
        else
            ok = np > 0;
    }
    if (ok && j->kind == KIND_BACKFILL && (!j->config_text || !j->output)) {
        ok = 0;
        *why = "a backfill record without its config (written by an older coordinator)";
    }
    /* the GroupBys an upload commits: as recorded, else those of its shards in order */
    json_t *g = json_object_get(o, "group_bys");
    size_t ng = json_is_array(g) ? json_array_size(g) : 0;
    j->gbs = tsr_calloc(j->nsh + ng + 1, sizeof(char *));
    j->committed = tsr_calloc(j->nsh + ng + 1, sizeof(int));
    for (size_t i = 0; ok && j->kind == KIND_UPLOAD && i < ng + j->nsh; i++) {
        const char *name_i = i < ng ? json_string_value(json_array_get(g, i)) : j->sh[i - ng].gb;
        if (!name_i) continue;
        int dup = 0;
        for (size_t k = 0; k < j->ngbs; k++) dup |= strcmp(j->gbs[k], name_i) == 0;
        if (!dup) j->gbs[j->ngbs++] = tsr_strdup(name_i);
    }
    /* committed: every GroupBy of a job past "running" (a re-commit writes the same value) */
    for (size_t g2 = 0; g2 < j->ngbs; g2++) j->committed[g2] = j->state == JOB_LOADING;
    if (!ok) {
        job_free(j);
        return NULL;
    }
    return j;
}

/* On becoming leader: every unfinished job record becomes a job again (resumed: the shards not
 * reported done are re-issued with the next attempt number at the new epoch, to the same worker
 * while it is alive; reports of the old attempts are ignored), finished records older than
 * JOB_KEEP_MS are deleted (younger ones stay for GetJob), and a record that cannot be resumed
 * is marked "abandoned". */
static void jobs_resume(tsr_coord_t *c) {
    char pk[512];
    key(c, pk, sizeof pk, "jobs/");
    size_t plen = strlen(pk);
    tsr_kv_entry_t *v;
    size_t n;
    tsr_error_t err;
    if (tsr_kv_range(c->o.kv, pk, &v, &n, NULL, &err)) {
        tsr_log(TSR_LOG_WARN, "coordinator", "cannot read jobs/ to resume jobs: %s", err.msg);
        return;
    }
    int64_t tn = now(c);
    for (size_t i = 0; i < n && c->leader; i++) {
        const char *id = v[i].key + plen;
        json_error_t je;
        json_t *o = json_loadb(v[i].val, v[i].val_len, 0, &je);
        const char *st = o ? json_string_value(json_object_get(o, "state")) : NULL;
        if (!st || strcmp(st, "done") == 0 || strcmp(st, "failed") == 0 || strcmp(st, "abandoned") == 0) {
            json_int_t fin = o ? json_integer_value(json_object_get(o, "finished_at_millis")) : 0;
            if (fin <= 0 || tn - fin > JOB_KEEP_MS) {
                tsr_kv_op_t op = {TSR_KV_DELETE, v[i].key, NULL, 0, 0, 0};
                fenced(c, NULL, 0, &op, 1, &err);
            }
            if (o) json_decref(o);
            continue;
        }
        int dup = 0;
        for (size_t k = 0; k < c->njobs; k++) dup |= strcmp(c->jobs[k]->id, id) == 0;
        const char *why = NULL;
        job_t *j = dup ? NULL : job_from_json(id, o, &why);
        if (!j) {
            if (!dup) {
                tsr_log(TSR_LOG_WARN, "coordinator", "job %s cannot be resumed (%s): marked abandoned", id, why);
                json_object_set_new(o, "state", json_string("abandoned"));
                json_object_set_new(o, "error", json_string(why));
                json_object_set_new(o, "finished_at_millis", json_integer(tn));
                char *sv = json_dumps(o, JSON_COMPACT);
                fenced_put(c, v[i].key, sv, &err);
                free(sv);
            }
            json_decref(o);
            continue;
        }
        json_decref(o);
        size_t done = 0, again = 0;
        for (size_t s = 0; s < j->nsh; s++) {
            shard_t *sh = &j->sh[s];
            if (sh->state == SH_DONE) {
                done++;
                continue;
            }
            sh->state = SH_RUNNING;
            sh->attempt++;
            sh->resumes++;
            sh->epoch = c->epoch;
            sh->held = 1;
            again++;
        }
        j->resumed++;
        c->jobs = tsr_realloc(c->jobs, (c->njobs + 1) * sizeof *c->jobs);
        c->jobs[c->njobs++] = j;
        tsr_log(TSR_LOG_INFO, "coordinator",
                "job %s: resuming %s %s ds=%s (%s): %zu of %zu shards done, %zu re-issued at epoch %lld", j->id,
                job_kind(j), j->name, j->ds, job_states[j->state], done, j->nsh, again, (long long)c->epoch);
        job_write(c, j);
    }
    tsr_kv_entries_free(v, n);
}

/* A new leader renews every registered worker's etcd lease at once. Their KeepAlives went to
 * the old leader until it stopped answering, and reach this one only after their redirects
 * and backoffs; a lease that lapsed meanwhile would take the worker's partitions away and
 * back (workers' leases are granted for twice the TTL for the same reason, see
 * tsr_coord_register_worker). Under c->mu, leading. */
static void renew_all_workers(tsr_coord_t *c) {
    tsr_error_t err;
    if (refresh_workers(c, &err)) {
        tsr_log(TSR_LOG_WARN, "coordinator", "%s: listing workers after the takeover: %s", c->id, err.msg);
        return;
    }
    for (size_t i = 0; i < c->nmembers; i++) {
        member_t *m = &c->members[i];
        if (tsr_kv_lease_keepalive(c->o.kv, m->lease, NULL, &err) == 0) {
            m->renewed = now(c);
            m->seen = now(c);
        } else {
            tsr_log(TSR_LOG_WARN, "coordinator", "%s: renewing the lease of worker %s after the takeover: %s",
                    c->id, m->id, err.msg);
        }
    }
}

static void become_leader(tsr_coord_t *c, int64_t epoch) {
    reap(c);
    c->leader = 1;
    c->epoch = epoch;
    snprintf(c->leader_addr, sizeof c->leader_addr, "%s", c->advertise);
    tsr_error_t err;
    if (load_stored(c, &err)) {
        c->leader = 0;
        c->epoch = 0;
        free_leader_state(c, "could not load the stored state");
        tsr_log(TSR_LOG_WARN, "coordinator", "%s: won the election but cannot read state: %s", c->id, err.msg);
        /* resigning the leader key lets the next round try again */
        char lk[512];
        key(c, lk, sizeof lk, "leader");
        tsr_kv_cmp_t cmp = {lk, epoch};
        tsr_kv_op_t op = {TSR_KV_DELETE, lk, NULL, 0, 0, 0};
        int ok;
        tsr_kv_txn(c->o.kv, &cmp, 1, &op, 1, &ok, NULL, &err);
        return;
    }
    c->grace_until = c->nas ? now(c) + c->ttl_ms : 0;
    c->jobs_grace_until = now(c) + c->ttl_ms;
    renew_all_workers(c);
    jobs_resume(c);
    tsr_log(TSR_LOG_INFO, "coordinator", "%s: leader at epoch %lld (%zu stored assignments)", c->id,
            (long long)epoch, c->nas);
    bump(c);
}

/* Failure detection. Workers send a KeepAlive every TTL/5; one silent for 4/5 of the TTL is
 * declared dead now (its lease revoked, so it leaves at once) instead of when etcd lets the
 * lease lapse — a TTL after its last KeepAlive, which is most of a TTL after a crash on
 * average. That moves a dead worker's partitions within one TTL of its death, and tolerates
 * the same late KeepAlives as before (3/5 of a TTL; etcd's lease was renewed every TTL/3).
 * A revoked worker that was merely slow finds its lease gone at its next KeepAlive and
 * registers again (as after an expiry). The leader judges only time it was listening: after
 * a pause of its own (a gap between ticks of over TTL/5: SIGSTOP, a stalled VM) every clock
 * restarts. Returns whether a lease was revoked. Leader only, under c->mu. */
static int expire_silent(tsr_coord_t *c) {
    int64_t tn = now(c);
    int paused = c->last_tick && tn - c->last_tick > c->ttl_ms / 5;
    c->last_tick = tn;
    int revoked = 0;
    for (size_t i = 0; i < c->nmembers; i++) {
        member_t *m = &c->members[i];
        if (paused) m->seen = tn;
        if (tn - m->seen <= c->ttl_ms * 4 / 5 || !lease_fresh(c)) continue;
        tsr_error_t err;
        if (tsr_kv_lease_revoke(c->o.kv, m->lease, &err) && err.code != TSR_ENOTFOUND) {
            tsr_log(TSR_LOG_WARN, "coordinator", "worker %s: revoking lease %lld: %s", m->id,
                    (long long)m->lease, err.msg);
            continue;
        }
        tsr_log(TSR_LOG_WARN, "coordinator", "worker %s (%s): no KeepAlive for %lld ms (lease TTL %lld ms): "
                "declared dead, lease revoked", m->id, m->addr, (long long)(tn - m->seen), (long long)c->ttl_ms);
        revoked = 1;
    }
    return revoked;
}

static void leader_duties(tsr_coord_t *c);

static void tick_locked(tsr_coord_t *c) {
    if (c->resigned || c->stopping) return;
    tsr_error_t err;
    tsr_error_clear(&err);
    if (ensure_lease(c, &err)) {
        if (c->leader && !lease_fresh(c)) step_down(c, "no contact with etcd for most of the lease TTL");
        int64_t tn = now(c);
        if (tn - c->last_warn >= 5000) {     /* at most one line per 5 s while etcd is away */
            c->last_warn = tn;
            tsr_log(TSR_LOG_WARN, "coordinator", "%s: %s", c->id, err.msg);
        }
        return;
    }
    /* a quiet tick: no watch event, a read less than REFRESH_MS ago — what etcd holds has not
     * changed as far as we know, so the leader's local duties only (idle etcd traffic was ~16
     * reads a second for two coordinators) */
    if (c->light && c->last_read && now(c) - c->last_read < REFRESH_MS) {
        if (c->leader) leader_duties(c);
        return;
    }
    c->last_read = now(c);
    char lk[512];
    key(c, lk, sizeof lk, "leader");
    tsr_kv_entry_t le;
    int found = 0;
    if (tsr_kv_get(c->o.kv, lk, &le, &found, &err)) {
        if (c->leader && !lease_fresh(c)) step_down(c, "no contact with etcd for most of the lease TTL");
        return;
    }
    if (found) {
        json_error_t je;
        json_t *j = json_loadb(le.val, le.val_len, 0, &je);
        const char *addr = "";
        if (j && json_unpack(j, "{s:s}", "addr", &addr) == 0)
            snprintf(c->leader_addr, sizeof c->leader_addr, "%s", addr);
        if (j) json_decref(j);
        if (c->leader && le.mod_revision != c->epoch) step_down(c, "the leader key changed");
        if (!c->leader && le.lease == c->lease) {
            /* our own leadership, stepped down from (etcd was out of reach for most of the
             * lease TTL, and the lease survived): withdraw it so that a fresh election, with a
             * new epoch, follows — nobody else can win while the key stands */
            tsr_kv_cmp_t cmp = {lk, le.mod_revision};
            tsr_kv_op_t op = {TSR_KV_DELETE, lk, NULL, 0, 0, 0};
            int ok = 0;
            if (tsr_kv_txn(c->o.kv, &cmp, 1, &op, 1, &ok, NULL, &err) == 0 && ok)
                tsr_log(TSR_LOG_INFO, "coordinator", "%s: withdrew its stale leader key (epoch %lld)",
                        c->id, (long long)le.mod_revision);
            c->leader_addr[0] = 0;
        }
        tsr_kv_entry_free(&le);
    } else {
        if (c->leader) step_down(c, "the leader key is gone");
        c->leader_addr[0] = 0;
        json_t *o = json_pack("{s:s, s:s}", "id", c->id, "addr", c->advertise);
        char *s = json_dumps(o, JSON_COMPACT);
        json_decref(o);
        tsr_kv_cmp_t cmp = {lk, 0};
        tsr_kv_op_t op = {TSR_KV_PUT, lk, s, strlen(s), c->lease, 0};
        int ok = 0;
        int64_t rev = 0;
        int rc = tsr_kv_txn(c->o.kv, &cmp, 1, &op, 1, &ok, &rev, &err);
        free(s);
        if (rc || !ok) return;
        become_leader(c, rev);
    }
    if (!c->leader) return;
    if (refresh_configs(c, &err) < 0 || refresh_workers(c, &err)) {
        tsr_log(TSR_LOG_WARN, "coordinator", "refresh: %s", err.msg);
        return;
    }
    leader_duties(c);
}

/* What a leader's tick does besides reading etcd: silent workers, departed workers' reports,
 * topics, assignment, jobs. */
static void leader_duties(tsr_coord_t *c) {
    tsr_error_t err;
    tsr_error_clear(&err);
    if (expire_silent(c)) refresh_workers(c, &err);
    /* reports of departed workers are dropped (memory and status/<id>) */
    for (size_t i = 0; i < c->nstatus;) {
        /* (during the grace period a worker may still re-register) */
        if (find_member(c, c->status[i].id) || now(c) < c->grace_until) {
            i++;
            continue;
        }
        char sk[512];
        key(c, sk, sizeof sk, "status/%s", c->status[i].id);
        tsr_kv_op_t op = {TSR_KV_DELETE, sk, NULL, 0, 0, 0};
        tsr_error_t e2;
        if (fenced(c, NULL, 0, &op, 1, &e2)) return;
        wstatus_free(&c->status[i]);
        memmove(c->status + i, c->status + i + 1, (c->nstatus - i - 1) * sizeof *c->status);
        c->nstatus--;
    }
    if (!c->topic_thread_started) {
        lookup_topics(c);           /* may release c->mu for a while */
        if (!c->leader) return;
    } else {
        pthread_cond_signal(&c->topic_cv);
    }
    if (reassign(c, &err)) {
        tsr_log(TSR_LOG_WARN, "coordinator", "assignment: %s", err.msg);
        return;
    }
    jobs_check(c);
}

void tsr_coord_tick(tsr_coord_t *c) {
    pthread_mutex_lock(&c->mu);
    tick_locked(c);
    unlock_and_flush(c);
}

/* ------------------------------------------------------------------------------------------
 * Lifecycle */

int tsr_coord_new(const tsr_coord_opts_t *o, tsr_coord_t **out, tsr_error_t *err) {
    *out = NULL;
    if (!o->kv || !o->id || !o->id[0] || !o->advertise)
        return tsr_error_set(err, TSR_EINVAL, "coordinator: kv, id and advertise are required");
    tsr_coord_t *c = tsr_calloc(1, sizeof *c);
    c->o = *o;
    c->id = tsr_strdup(o->id);
    c->advertise = tsr_strdup(o->advertise);
    c->prefix = tsr_strdup(o->prefix ? o->prefix : "/tessera/");
    c->warehouse = o->warehouse ? tsr_strdup(o->warehouse) : NULL;
    c->o.id = c->id;
    c->o.advertise = c->advertise;
    c->o.prefix = c->prefix;
    c->o.warehouse = c->warehouse;
    if (!c->o.clock) c->o.clock = real_clock;
    if (c->o.lease_ttl_ms <= 0) c->o.lease_ttl_ms = 5000;
    if (c->o.default_partitions <= 0) c->o.default_partitions = 8;
    c->ttl_s = (c->o.lease_ttl_ms + 999) / 1000;
    c->ttl_ms = c->ttl_s * 1000;
    c->own_ttl_s = c->ttl_s / 2 > 1 ? c->ttl_s / 2 : 1;
    c->own_ttl_ms = c->own_ttl_s * 1000;
    c->rev = 1;
    pthread_mutex_init(&c->mu, NULL);
    pthread_cond_init(&c->cv, NULL);
    pthread_cond_init(&c->wake, NULL);
    pthread_cond_init(&c->topic_cv, NULL);
    *out = c;
    return 0;
}

static void on_watch(void *ud, const tsr_kv_event_t *ev, size_t n, int status, const char *msg) {
    (void)ev;
    (void)n;
    (void)msg;
    tsr_coord_t *c = ud;
    pthread_mutex_lock(&c->mu);
    if (status < 0) c->watch_broken = 1;
    c->wake_flag = 1;
    pthread_cond_signal(&c->wake);
    pthread_mutex_unlock(&c->mu);
}

static void watches_stop(tsr_coord_t *c) {
    tsr_kv_watch_stop(c->o.kv, c->w_leader);
    tsr_kv_watch_stop(c->o.kv, c->w_workers);
    c->w_leader = c->w_workers = NULL;
}

static void *loop_main(void *arg) {
    tsr_coord_t *c = arg;
    pthread_mutex_lock(&c->mu);
    while (!c->stopping) {
        if (!c->w_leader || c->watch_broken) {
            /* (re)create the watches outside the lock: their callbacks take it */
            c->watch_broken = 0;
            pthread_mutex_unlock(&c->mu);
            watches_stop(c);
            char lk[512], wk[512];
            key(c, lk, sizeof lk, "leader");
            key(c, wk, sizeof wk, "workers/");
            tsr_error_t err;
            tsr_kv_watch_t *wl = NULL, *ww = NULL;
            if (tsr_kv_watch(c->o.kv, lk, 0, on_watch, c, &wl, &err) == 0)
                tsr_kv_watch(c->o.kv, wk, 0, on_watch, c, &ww, &err);
            pthread_mutex_lock(&c->mu);
            c->w_leader = wl;
            c->w_workers = ww;
            if (!wl || !ww) c->watch_broken = 1;
        }
        c->light = !c->wake_flag;
        c->wake_flag = 0;
        tick_locked(c);
        c->light = 0; /* tsr_coord_tick (tests, tools) always reads */
        unlock_and_flush(c);
        pthread_mutex_lock(&c->mu);
        if (!c->wake_flag && !c->stopping) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_nsec += LOOP_MS * 1000000L;
            if (ts.tv_nsec >= 1000000000L) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000L;
            }
            pthread_cond_timedwait(&c->wake, &c->mu, &ts);
        }
    }
    pthread_mutex_unlock(&c->mu);
    watches_stop(c);
    return NULL;
}

static void *topic_main(void *arg) {
    tsr_coord_t *c = arg;
    pthread_mutex_lock(&c->mu);
    while (!c->stopping) {
        size_t before = 0;
        for (size_t i = 0; i < c->ntopics; i++) before += c->topics[i].n > 0;
        if (c->leader) lookup_topics(c);
        size_t after = 0;
        for (size_t i = 0; i < c->ntopics; i++) after += c->topics[i].n > 0;
        if (after != before) {      /* new counts: let the loop assign at once */
            c->wake_flag = 1;
            pthread_cond_signal(&c->wake);
        }
        if (c->stopping) break;
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += LOOP_MS * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&c->topic_cv, &c->mu, &ts);
    }
    pthread_mutex_unlock(&c->mu);
    return NULL;
}

int tsr_coord_start(tsr_coord_t *c, tsr_error_t *err) {
    if (c->thread_started) return tsr_error_set(err, TSR_EINVAL, "coordinator already started");
    if (c->o.topic_partitions) {
        pthread_mutex_lock(&c->mu);
        c->topic_thread_started = pthread_create(&c->topic_thread, NULL, topic_main, c) == 0;
        pthread_mutex_unlock(&c->mu);
        if (!c->topic_thread_started) return tsr_error_set(err, TSR_EUNAVAIL, "cannot start the topic thread");
    }
    if (c->o.lease_kv) c->lease_thread_started = pthread_create(&c->lease_thread, NULL, lease_main, c) == 0;
    if (pthread_create(&c->thread, NULL, loop_main, c) != 0) {
        pthread_mutex_lock(&c->mu);
        c->stopping = 1;
        pthread_cond_broadcast(&c->topic_cv);
        pthread_mutex_unlock(&c->mu);
        if (c->topic_thread_started) pthread_join(c->topic_thread, NULL);
        c->topic_thread_started = 0;
        c->stopping = 0;
        return tsr_error_set(err, TSR_EUNAVAIL, "cannot start the coordinator thread");
    }
    c->thread_started = 1;
    return 0;
}

void tsr_coord_resign(tsr_coord_t *c) {
    pthread_mutex_lock(&c->mu);
    if (c->leader) {
        c->leader = 0;
        c->epoch = 0;
        free_leader_state(c, "the coordinator is shutting down");
        tsr_log(TSR_LOG_INFO, "coordinator", "%s: resigning leadership", c->id);
    }
    c->resigned = 1;
    c->leader_addr[0] = 0;
    if (c->lease) {
        tsr_error_t err;
        if (tsr_kv_lease_revoke(c->o.kv, c->lease, &err) && err.code != TSR_ENOTFOUND)
            tsr_log(TSR_LOG_WARN, "coordinator", "resign: %s", err.msg);
        __atomic_store_n(&c->lease, 0, __ATOMIC_RELEASE);
    }
    bump(c);
    unlock_and_flush(c);
}

void tsr_coord_free(tsr_coord_t *c) {
    if (!c) return;
    pthread_mutex_lock(&c->mu);
    c->stopping = 1;
    pthread_cond_broadcast(&c->wake);
    pthread_cond_broadcast(&c->cv);
    pthread_cond_broadcast(&c->topic_cv);
    pthread_mutex_unlock(&c->mu);
    if (c->thread_started) pthread_join(c->thread, NULL);
    if (c->topic_thread_started) pthread_join(c->topic_thread, NULL);
    __atomic_store_n(&c->lease_stop, 1, __ATOMIC_RELEASE);
    if (c->lease_thread_started) pthread_join(c->lease_thread, NULL);
    pthread_mutex_lock(&c->mu);
    c->leader = 0;
    free_leader_state(c, "the coordinator stopped");
    unlock_and_flush(c);
    pthread_mutex_destroy(&c->mu);
    pthread_cond_destroy(&c->cv);
    pthread_cond_destroy(&c->wake);
    pthread_cond_destroy(&c->topic_cv);
    free(c->id);
    free(c->advertise);
    free(c->prefix);
    free(c->warehouse);
    free(c);
}

int tsr_coord_is_leader(tsr_coord_t *c, int64_t *epoch) {
    pthread_mutex_lock(&c->mu);
    int l = c->leader;
    if (epoch) *epoch = c->epoch;
    pthread_mutex_unlock(&c->mu);
    return l;
}

void tsr_coord_leader_addr(tsr_coord_t *c, char *buf, size_t cap) {
    pthread_mutex_lock(&c->mu);
    snprintf(buf, cap, "%s", c->leader_addr);
    pthread_mutex_unlock(&c->mu);
}

int64_t tsr_coord_revision(tsr_coord_t *c) {
    pthread_mutex_lock(&c->mu);
    int64_t r = c->rev;
    pthread_mutex_unlock(&c->mu);
    return r;
}

int64_t tsr_coord_wait(tsr_coord_t *c, int64_t rev, int64_t timeout_ms) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += (time_t)(timeout_ms / 1000);
    ts.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&c->mu);
    while (c->rev == rev && !c->stopping)
        if (pthread_cond_timedwait(&c->cv, &c->mu, &ts) != 0) break;
    int64_t r = c->rev;
    pthread_mutex_unlock(&c->mu);
    return r;
}

/* Under c->mu: TSR_OK when leading (and the lease-based guard holds), else the redirect. */
static int require_leader(tsr_coord_t *c, tsr_error_t *err) {
    if (c->leader && !lease_fresh(c)) step_down(c, "own lease not renewed for most of its TTL");
    if (c->leader) return 0;
    return tsr_error_set(err, TSR_EUNAVAIL, "not the leader; leader is %s",
                         c->leader_addr[0] ? c->leader_addr : "unknown (election in progress)");
}

/* Under c->mu, leading: a worker that has seen a newer epoch than ours means another replica
 * was elected; confirm in etcd and step down if so. */
static int check_seen_epoch(tsr_coord_t *c, int64_t seen, tsr_error_t *err) {
    if (seen <= c->epoch) return 0;
    char lk[512];
    key(c, lk, sizeof lk, "leader");
    tsr_kv_entry_t le;
    int found = 0;
    int rc = tsr_kv_get(c->o.kv, lk, &le, &found, err);
    if (rc) return rc;
    int64_t cur = found ? le.mod_revision : 0;
    if (found) tsr_kv_entry_free(&le);
    if (cur == c->epoch) return 0;  /* the worker's epoch is bogus; we still lead */
    char why[128];
    snprintf(why, sizeof why, "a worker has seen epoch %lld (ours %lld)", (long long)seen, (long long)c->epoch);
    step_down(c, why);
    return tsr_error_set(err, TSR_EUNAVAIL, "not the leader; leader is %s (%s)",
                         c->leader_addr[0] ? c->leader_addr : "unknown", why);
}

/* ------------------------------------------------------------------------------------------
 * Workers */

int tsr_coord_register_worker(tsr_coord_t *c, const char *id, const char *addr,
                              int64_t started_at_ms, int64_t *lease, int64_t *ttl_ms,
                              int64_t *epoch, tsr_error_t *err) {
    (void)started_at_ms;
    if (!id || !id[0]) return tsr_error_set(err, TSR_EINVAL, "RegisterWorker: worker_id is empty");
    if (!addr || !addr[0]) return tsr_error_set(err, TSR_EINVAL, "RegisterWorker: address is empty");
    if (strchr(id, '/')) return tsr_error_set(err, TSR_EINVAL, "RegisterWorker: worker_id '%s' contains '/'", id);
    pthread_mutex_lock(&c->mu);
    int rc = require_leader(c, err);
    int64_t l = 0;
    /* twice the TTL in etcd: the leader revokes a silent worker's lease itself after 4/5 of
     * the TTL (expire_silent), so the lease's own lapse matters only while no leader is
     * listening, as in a failover, which must not cost a live worker its partitions */
    if (rc == 0) rc = tsr_kv_lease_grant(c->o.kv, c->ttl_s * 2, &l, err);
    if (rc == 0) {
        char wk[512];
        key(c, wk, sizeof wk, "workers/%s", id);
        json_t *o = json_pack("{s:s, s:I}", "addr", addr, "registered_at_millis", (json_int_t)now(c));
        char *s = json_dumps(o, JSON_COMPACT);
        json_decref(o);
        tsr_kv_op_t op = {TSR_KV_PUT, wk, s, strlen(s), l, 0};
        rc = fenced(c, NULL, 0, &op, 1, err);
        free(s);
        if (rc) {
            tsr_error_t e2;
            tsr_kv_lease_revoke(c->o.kv, l, &e2);
        }
    }
    if (rc == 0) {
        *lease = l;
        *ttl_ms = c->ttl_ms;
        *epoch = c->epoch;
        tsr_log(TSR_LOG_INFO, "coordinator", "worker %s registered at %s (lease %lld)", id, addr, (long long)l);
        /* reassign now rather than at the next tick */
        tsr_error_t e2;
        if (refresh_workers(c, &e2) == 0 && reassign(c, &e2) == 0) jobs_check(c);
    }
    unlock_and_flush(c);
    return rc;
}

int tsr_coord_keepalive(tsr_coord_t *c, const char *id, int64_t lease, int64_t seen_epoch,
                        const tsr_coord_pstate_t *ps, size_t nps, int64_t *ttl_ms, int64_t *epoch,
                        tsr_error_t *err) {
    pthread_mutex_lock(&c->mu);
    int rc = require_leader(c, err);
    if (rc == 0) rc = check_seen_epoch(c, seen_epoch, err);
    if (rc == 0) {
        member_t *m = find_member(c, id ? id : "");
        if (m && m->lease != lease) m = NULL;
        if (!m) {
            /* maybe registered since the last refresh */
            tsr_error_t e2;
            if (refresh_workers(c, &e2) == 0) m = find_member(c, id ? id : "");
            if (m && m->lease != lease) m = NULL;
        }
        if (!m)
            rc = tsr_error_set(err, TSR_ENOTFOUND, "worker %s is not registered with lease %lld (expired?): "
                               "register again", id ? id : "", (long long)lease);
    }
    if (rc == 0) {
        /* the lease in etcd needs a keep-alive every TTL/3 or so, not at every KeepAlive (every
         * TTL/5, for the leader's own failure detection, expire_silent) */
        member_t *m = find_member(c, id);
        if (!m || !m->renewed || now(c) - m->renewed >= c->ttl_ms / 3) {
            rc = tsr_kv_lease_keepalive(c->o.kv, lease, NULL, err);
            if (rc == TSR_ENOTFOUND)
                tsr_error_set(err, TSR_ENOTFOUND, "lease %lld of worker %s expired: register again", (long long)lease, id);
            else if (rc == 0 && m)
                m->renewed = now(c);
        }
    }
    if (rc == 0) {
        member_t *m = find_member(c, id);
        if (m) m->seen = now(c);
        wstatus_t *w = status_set(c, id, ps, nps);
        /* kept in etcd too (status/<id>), so that a new leader knows what workers hold */
        char *js = status_json(w);
        if (!w->written || strcmp(js, w->written) != 0) {
            char sk[512];
            key(c, sk, sizeof sk, "status/%s", id);
            tsr_error_t e2;
            if (fenced_put(c, sk, js, &e2) == 0) {
                free(w->written);
                w->written = js;
                js = NULL;
            }
        }
        free(js);
        *ttl_ms = c->ttl_ms;
        *epoch = c->epoch;
        jobs_check(c);
    }
    unlock_and_flush(c);
    return rc;
}

int tsr_coord_report_shard(tsr_coord_t *c, const char *worker, const char *job_id, int32_t shard,
                           int32_t attempt, int ok, const char *error, int64_t keys,
                           int64_t seen_epoch, tsr_error_t *err) {
    pthread_mutex_lock(&c->mu);
    int rc = require_leader(c, err);
    if (rc == 0) rc = check_seen_epoch(c, seen_epoch, err);
    job_t *j = NULL;
    for (size_t i = 0; rc == 0 && i < c->njobs; i++)
        if (strcmp(c->jobs[i]->id, job_id ? job_id : "") == 0) j = c->jobs[i];
    if (rc == 0 && j && seen_epoch > 0 && seen_epoch < c->epoch) {
        /* the worker has not seen this leader: what it reports was handed out by an earlier
         * one (the shard has been re-issued with a new attempt); 0 = no epoch stated */
        tsr_log(TSR_LOG_INFO, "coordinator", "job %s shard %d: report of %s at epoch %lld ignored (epoch %lld leads)",
                j->id, (int)shard, worker ? worker : "", (long long)seen_epoch, (long long)c->epoch);
        j = NULL;
    }
    if (rc == 0 && j && j->state == JOB_RUNNING && shard >= 0 && (size_t)shard < j->nsh) {
        shard_t *sh = &j->sh[shard];
        if (sh->state == SH_RUNNING && !sh->held && sh->attempt == attempt && sh->worker && worker &&
            strcmp(sh->worker, worker) == 0) {
            if (ok) {
                sh->state = SH_DONE;
                sh->keys = keys;
                tsr_log(TSR_LOG_INFO, "coordinator", "job %s shard %d done by %s: %lld keys", j->id,
                        (int)shard, worker, (long long)keys);
                job_write(c, j);
                bump(c);
            } else {
                shard_retry(c, j, (size_t)shard, error && error[0] ? error : "the worker reported a failure");
            }
            jobs_check(c);
        }
    }
    unlock_and_flush(c);
    return rc;
}

/* ------------------------------------------------------------------------------------------
 * Snapshots */

static const tsr_reg_entry_t *find_config(tsr_coord_t *c, const char *name) {
    for (size_t i = 0; i < c->nconfigs; i++)
        if (strcmp(c->configs[i].name, name) == 0) return &c->configs[i];
    return NULL;
}

int tsr_coord_assignment(tsr_coord_t *c, const char *worker, tsr_buf_t *out, int64_t *revision,
                         tsr_error_t *err) {
    pthread_mutex_lock(&c->mu);
    int rc = require_leader(c, err);
    if (rc) {
        pthread_mutex_unlock(&c->mu);
        return rc;
    }
    tsr_arena_t a;
    tsr_arena_init(&a, 0);
    Tessera__V1__Assignment m;
    tessera__v1__assignment__init(&m);
    m.epoch = c->epoch;
    m.revision = c->rev;
    m.group_bys = tsr_arena_alloc(&a, (c->nas ? c->nas : 1) * sizeof(void *));
    for (size_t i = 0; i < c->nas; i++) {
        gbassign_t *as = &c->as[i];
        gbinfo_t *gi = find_gb(c, as->name);
        const tsr_reg_entry_t *ce = gi ? find_config(c, gi->config) : NULL;
        if (!ce) continue;
        size_t mine = 0;
        for (int32_t p = 0; p < as->nparts; p++) mine += as->owners[p] && strcmp(as->owners[p], worker) == 0;
        if (!mine) continue;
        Tessera__V1__AssignedGroupBy *g = tsr_arena_alloc(&a, sizeof *g);
        tessera__v1__assigned_group_by__init(g);
        g->name = as->name;
        g->config_json = ce->text;
        g->part_index = gi->part_index;
        g->num_partitions = as->nparts;
        g->partitions = tsr_arena_alloc(&a, mine * sizeof(int32_t));
        for (int32_t p = 0; p < as->nparts; p++)
            if (as->owners[p] && strcmp(as->owners[p], worker) == 0) g->partitions[g->n_partitions++] = p;
        gbupload_t *u = find_up(c, as->name);
        g->batch_end_millis = u ? u->batch_end : 0;
        g->upload_dir = u ? u->dir : "";
        m.group_bys[m.n_group_bys++] = g;
    }
    size_t nsh = 0;
    for (size_t i = 0; i < c->njobs; i++)
        if (c->jobs[i]->state == JOB_RUNNING) nsh += c->jobs[i]->nsh;
    m.shards = tsr_arena_alloc(&a, (nsh ? nsh : 1) * sizeof(void *));
    for (size_t i = 0; i < c->njobs; i++) {
        job_t *j = c->jobs[i];
        if (j->state != JOB_RUNNING) continue;
        for (size_t s = 0; s < j->nsh; s++) {
            shard_t *sh = &j->sh[s];
            if (sh->state != SH_RUNNING || sh->held || strcmp(sh->worker, worker) != 0) continue;
            if (j->kind == KIND_BACKFILL) {
                Tessera__V1__ShardTask *t = tsr_arena_alloc(&a, sizeof *t);
                tessera__v1__shard_task__init(t);
                t->kind = "backfill";
                t->job_id = j->id;
                t->shard = (int32_t)s;
                t->group_by = sh->gb;
                t->config_json = j->config_text;
                t->part_index = -1;
                t->warehouse = j->warehouse;
                t->out_dir = j->output;
                t->start_ds = tsr_arena_alloc(&a, 11);
                t->end_ds = tsr_arena_alloc(&a, 11);
                tsr_ds_format(sh->lo, t->start_ds);
                tsr_ds_format(sh->hi, t->end_ds);
                t->attempt = sh->attempt;
                m.shards[m.n_shards++] = t;
                continue;
            }
            gbinfo_t *gi = find_gb(c, sh->gb);
            gbassign_t *as = find_as(c, sh->gb);
            const tsr_reg_entry_t *ce = gi ? find_config(c, gi->config) : NULL;
            Tessera__V1__ShardTask *t = tsr_arena_alloc(&a, sizeof *t);
            tessera__v1__shard_task__init(t);
            t->job_id = j->id;
            t->shard = (int32_t)s;
            t->group_by = sh->gb;
            t->config_json = ce ? ce->text : "";
            t->part_index = gi ? gi->part_index : -1;
            t->num_partitions = as ? as->nparts : 0;
            t->n_partitions = sh->nparts;
            t->partitions = sh->parts;
            t->ds = j->ds;
            t->batch_end_millis = j->batch_end;
            t->warehouse = j->warehouse;
            char *dir = tsr_arena_alloc(&a, 1024);
            upload_dir(j, sh->gb, dir, 1024);
            t->out_dir = dir;
            t->attempt = sh->attempt;
            m.shards[m.n_shards++] = t;
        }
    }
    tsr_pb_pack(&m.base, out);
    if (revision) *revision = c->rev;
    pthread_mutex_unlock(&c->mu);
    tsr_arena_free(&a);
    return 0;
}

int tsr_coord_routing(tsr_coord_t *c, tsr_buf_t *out, int64_t *revision, tsr_error_t *err) {
    pthread_mutex_lock(&c->mu);
    int rc = require_leader(c, err);
    if (rc) {
        pthread_mutex_unlock(&c->mu);
        return rc;
    }
    tsr_arena_t a;
    tsr_arena_init(&a, 0);
    Tessera__V1__RoutingTable m;
    tessera__v1__routing_table__init(&m);
    m.epoch = c->epoch;
    m.revision = c->rev;
    m.workers = tsr_arena_alloc(&a, (c->nmembers ? c->nmembers : 1) * sizeof(void *));
    for (size_t i = 0; i < c->nmembers; i++) {
        Tessera__V1__WorkerInfo *w = tsr_arena_alloc(&a, sizeof *w);
        tessera__v1__worker_info__init(w);
        w->worker_id = c->members[i].id;
        w->address = c->members[i].addr;
        m.workers[m.n_workers++] = w;
    }
    m.routes = tsr_arena_alloc(&a, (c->nas ? c->nas : 1) * sizeof(void *));
    for (size_t i = 0; i < c->nas; i++) {
        gbassign_t *as = &c->as[i];
        Tessera__V1__GroupByRoute *r = tsr_arena_alloc(&a, sizeof *r);
        tessera__v1__group_by_route__init(r);
        r->name = as->name;
        r->num_partitions = as->nparts;
        r->n_owners = (size_t)as->nparts;
        r->owners = tsr_arena_alloc(&a, (as->nparts ? (size_t)as->nparts : 1) * sizeof(int32_t));
        for (int32_t p = 0; p < as->nparts; p++) {
            r->owners[p] = -1;
            for (size_t w = 0; as->owners[p] && w < c->nmembers; w++)
                if (strcmp(c->members[w].id, as->owners[p]) == 0) r->owners[p] = (int32_t)w;
        }
        gbupload_t *u = find_up(c, as->name);
        r->batch_end_millis = u ? u->batch_end : 0;
        m.routes[m.n_routes++] = r;
    }
    m.configs = tsr_arena_alloc(&a, (c->nconfigs ? c->nconfigs : 1) * sizeof(void *));
    for (size_t i = 0; i < c->nconfigs; i++) {
        const tsr_reg_entry_t *e = &c->configs[i];
        if (e->kind != TSR_CONF_GROUP_BY && e->kind != TSR_CONF_JOIN) continue;
        Tessera__V1__RoutedConfig *rc2 = tsr_arena_alloc(&a, sizeof *rc2);
        tessera__v1__routed_config__init(rc2);
        rc2->name = e->name;
        rc2->version = e->version;
        rc2->config_json = e->text;
        m.configs[m.n_configs++] = rc2;
    }
    tsr_pb_pack(&m.base, out);
    if (revision) *revision = c->rev;
    pthread_mutex_unlock(&c->mu);
    tsr_arena_free(&a);
    return 0;
}

/* ------------------------------------------------------------------------------------------
 * Configs */

static int refresh_for_admin(tsr_coord_t *c, tsr_error_t *err) {
    int rc = require_leader(c, err);
    if (rc == 0 && refresh_configs(c, err) < 0) rc = err->code ? err->code : TSR_EUNAVAIL;
    return rc;
}

static void entry_copy(tsr_reg_entry_t *dst, const tsr_reg_entry_t *src) {
    *dst = *src;
    dst->name = tsr_strdup(src->name);
    dst->team = tsr_strdup(src->team ? src->team : "");
    dst->text = tsr_strndup(src->text, src->text_len);
}

int tsr_coord_apply(tsr_coord_t *c, const char *text, size_t n, const char *label, int dry_run,
                    tsr_reg_entry_t *out, int *created, int *unchanged, tsr_error_t *err) {
    if (out) memset(out, 0, sizeof *out);
    *created = *unchanged = 0;
    tsr_config_t *conf = NULL;
    int rc = tsr_served_load_conf(c->warehouse, text, n, label, &conf, err);
    if (rc) return rc;
    if (conf->kind == TSR_CONF_JOIN && conf->join->n_parts > 64) {
        tsr_config_free(conf);
        return tsr_error_set(err, TSR_EUNSUPPORTED, "%s: a served Join has at most 64 parts", label);
    }
    const tsr_conf_metadata_t *md = tsr_config_metadata(conf);
    if (!md || !md->name || !md->name[0]) {
        tsr_config_free(conf);
        return tsr_error_set(err, TSR_EINVAL, "%s: config has no metaData.name", label);
    }
    if (strchr(md->name, '/')) {
        tsr_config_free(conf);
        return tsr_error_set(err, TSR_EINVAL, "%s: metaData.name '%s' contains '/'", label, md->name);
    }
    /* compile for serving as the fetchers will (the item is discarded); that reads the
     * tables' schemas, so it needs the warehouse (tsr_serving_prepare does not take NULL) */
    tsr_config_t *conf2 = NULL;
    if (c->warehouse) rc = tsr_served_load_conf(c->warehouse, text, n, label, &conf2, err);
    if (rc == 0 && conf2) {
        tsr_serving_item_t *item = NULL;
        rc = tsr_serving_prepare(conf2, c->warehouse, tsr_day_of_ms(now(c)), &item, err);
        tsr_serving_item_discard(item);
    }
    if (rc) {
        tsr_config_free(conf);
        return rc;
    }
    pthread_mutex_lock(&c->mu);
    rc = refresh_for_admin(c, err);
    const tsr_conf_group_by_t *g[64];
    size_t ng = tsr_served_group_bys(conf, g, 64);
    for (size_t i = 0; rc == 0 && i < ng; i++) {
        gbinfo_t *gi = find_gb(c, g[i]->meta.name);
        if (!gi) continue;
        char *fp = tsr_served_fingerprint(g[i]);
        if (strcmp(fp, gi->fp) != 0)
            rc = tsr_error_set(err, TSR_ECONFIG,
                               "GroupBy %s is already served with a different definition (keys, "
                               "sources or aggregations; config %s); a changed GroupBy needs a new "
                               "name, e.g. a new version suffix",
                               g[i]->meta.name, gi->config);
        free(fp);
    }
    const tsr_reg_entry_t *old = rc == 0 ? find_config(c, md->name) : NULL;
    tsr_reg_entry_t e;
    memset(&e, 0, sizeof e);
    if (rc == 0) {
        *created = old == NULL;
        *unchanged = old && old->text_len == n && memcmp(old->text, text, n) == 0;
        if (*unchanged) {
            entry_copy(&e, old);
        } else {
            e.name = tsr_strdup(md->name);
            e.kind = conf->kind;
            e.team = tsr_strdup(md->team ? md->team : "");
            e.online = md->online;
            e.version = old ? old->version + 1 : 1;
            e.applied_at_ms = now(c);
            e.text = tsr_strndup(text, n);
            e.text_len = n;
        }
    }
    if (rc == 0 && !dry_run && !*unchanged) {
        char ck[512];
        key(c, ck, sizeof ck, "configs/%s", md->name);
        int64_t oldrev = 0;
        for (size_t i = 0; old && i < c->nconfigs; i++)
            if (&c->configs[i] == old) oldrev = c->config_rev[i];
        tsr_buf_t rec;
        tsr_buf_init(&rec);
        tsr_reg_entry_encode(&e, &rec);
        tsr_kv_cmp_t cmp = {ck, oldrev};
        tsr_kv_op_t op = {TSR_KV_PUT, ck, rec.data, rec.len, 0, 0};
        rc = fenced(c, &cmp, 1, &op, 1, err);
        tsr_buf_free(&rec);
        if (rc == 0) {
            tsr_log(TSR_LOG_INFO, "coordinator", "applied %s %s (version %lld)", tsr_conf_kind_name(e.kind),
                    e.name, (long long)e.version);
            tsr_error_t e2;
            if (refresh_configs(c, &e2) >= 0 && reassign(c, &e2) == 0) jobs_check(c);
        }
    }
    if (rc == 0 && out) *out = e;
    else tsr_reg_entry_free(&e);
    unlock_and_flush(c);
    tsr_config_free(conf);
    return rc;
}

int tsr_coord_get_config(tsr_coord_t *c, const char *name, tsr_reg_entry_t *out, tsr_error_t *err) {
    memset(out, 0, sizeof *out);
    pthread_mutex_lock(&c->mu);
    int rc = refresh_for_admin(c, err);
    const tsr_reg_entry_t *e = rc == 0 ? find_config(c, name) : NULL;
    if (e) entry_copy(out, e);
    else if (rc == 0) rc = tsr_error_set(err, TSR_ENOTFOUND, "no config named '%s'", name);
    unlock_and_flush(c);
    return rc;
}

int tsr_coord_list_configs(tsr_coord_t *c, int kind, tsr_reg_entry_t **out, size_t *n,
                           tsr_error_t *err) {
    *out = NULL;
    *n = 0;
    pthread_mutex_lock(&c->mu);
    int rc = refresh_for_admin(c, err);
    if (rc == 0) {
        tsr_reg_entry_t *v = tsr_calloc(c->nconfigs ? c->nconfigs : 1, sizeof *v);
        size_t k = 0;
        for (size_t i = 0; i < c->nconfigs; i++)
            if (kind == 0 || (int)c->configs[i].kind == kind) entry_copy(&v[k++], &c->configs[i]);
        *out = v;
        *n = k;
    }
    unlock_and_flush(c);
    return rc;
}

int tsr_coord_delete_config(tsr_coord_t *c, const char *name, tsr_reg_entry_t *out,
                            tsr_error_t *err) {
    if (out) memset(out, 0, sizeof *out);
    pthread_mutex_lock(&c->mu);
    int rc = refresh_for_admin(c, err);
    const tsr_reg_entry_t *e = rc == 0 ? find_config(c, name) : NULL;
    if (rc == 0 && !e) rc = tsr_error_set(err, TSR_ENOTFOUND, "no config named '%s'", name);
    if (rc == 0) {
        tsr_reg_entry_t copy;
        entry_copy(&copy, e);
        char ck[512];
        key(c, ck, sizeof ck, "configs/%s", name);
        tsr_kv_op_t op = {TSR_KV_DELETE, ck, NULL, 0, 0, 0};
        rc = fenced(c, NULL, 0, &op, 1, err);
        if (rc == 0) {
            tsr_log(TSR_LOG_INFO, "coordinator", "deleted %s", name);
            tsr_error_t e2;
            if (refresh_configs(c, &e2) >= 0) reassign(c, &e2);
        }
        if (rc == 0 && out) *out = copy;
        else tsr_reg_entry_free(&copy);
    }
    unlock_and_flush(c);
    return rc;
}

/* ------------------------------------------------------------------------------------------
 * Job ids chosen by clients */

static int valid_job_id(const char *id) {
    size_t n = strlen(id);
    if (n == 0 || n >= 64) return 0;
    for (size_t i = 0; i < n; i++) {
        char ch = id[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '.' ||
              ch == '_' || ch == '-'))
            return 0;
    }
    return 1;
}

static job_t *find_job(tsr_coord_t *c, const char *id) {
    for (size_t i = 0; i < c->njobs; i++)
        if (strcmp(c->jobs[i]->id, id) == 0) return c->jobs[i];
    return NULL;
}

/* Under c->mu, leading, want_id non-empty: TSR_OK when no job has that id (the new job takes
 * it); 1 when a running job of that kind and name that nobody waits on has it (*out; the caller
 * attaches its callback); TSR_EEXIST otherwise. */
static int claim_job_id(tsr_coord_t *c, const char *want_id, int kind, const char *name, job_t **out,
                        tsr_error_t *err) {
    *out = NULL;
    if (!valid_job_id(want_id))
        return tsr_error_set(err, TSR_EINVAL, "job id '%s': 1 to 63 characters of [A-Za-z0-9._-]", want_id);
    job_t *j = find_job(c, want_id);
    if (j) {
        if (j->kind != kind || strcmp(j->name, name) != 0 || has_cb(j) ||
            (j->state != JOB_RUNNING && j->state != JOB_LOADING))
            return tsr_error_set(err, TSR_EEXIST, "job %s already exists (%s %s, %s)", want_id, job_kind(j), j->name,
                                 job_states[j->state]);
        *out = j;
        return 1;
    }
    char jk[512];
    key(c, jk, sizeof jk, "jobs/%s", want_id);
    tsr_kv_entry_t e;
    int found = 0;
    int rc = tsr_kv_get(c->o.kv, jk, &e, &found, err);
    if (rc) return rc;
    if (found) {
        tsr_kv_entry_free(&e);
        return tsr_error_set(err, TSR_EEXIST, "job %s already exists (GetJob tells its state)", want_id);
    }
    return 0;
}

/* ------------------------------------------------------------------------------------------
 * Uploads */

/* Every source table of g must have the partition E (unless E is outside the source's
 * start/end partitions). */
static int check_ds(const char *warehouse, const tsr_conf_group_by_t *g, int64_t E, tsr_error_t *err) {
    for (size_t i = 0; i < g->n_sources; i++) {
        const tsr_conf_source_t *s = &g->sources[i];
        if (!s->table) continue;
        int64_t d;
        if (s->query.start_partition && tsr_ds_parse(s->query.start_partition, &d) == 0 && E < d) continue;
        if (s->query.end_partition && tsr_ds_parse(s->query.end_partition, &d) == 0 && E > d) continue;
        tsr_table_t *t = NULL;
        int rc = tsr_table_open(warehouse, s->table, E, E, &t, err);
        if (rc) {
            tsr_error_prefix(err, "GroupBy %s", g->meta.name);
            return rc;
        }
        int has = tsr_table_has_partition(t, E);
        char ds[11];
        tsr_ds_format(E, ds);
        if (!has) rc = tsr_error_set(err, TSR_ENOTFOUND, "GroupBy %s: table %s: partition %s/ds=%s is missing",
                                     g->meta.name, s->table, t->dir, ds);
        tsr_table_free(t);
        if (rc) return rc;
    }
    return 0;
}

int tsr_coord_upload(tsr_coord_t *c, const char *name, const char *ds, const char *warehouse,
                     int64_t deadline_ms, tsr_coord_upload_cb cb, void *ud, char *job_id,
                     tsr_error_t *err) {
    return tsr_coord_upload_job(c, name, ds, warehouse, deadline_ms, NULL, cb, ud, job_id, err);
}

int tsr_coord_upload_job(tsr_coord_t *c, const char *name, const char *ds, const char *warehouse,
                         int64_t deadline_ms, const char *want_id, tsr_coord_upload_cb cb, void *ud,
                         char *job_id, tsr_error_t *err) {
    if (!name || !name[0]) return tsr_error_set(err, TSR_EINVAL, "upload: name is empty");
    int64_t E;
    if (!ds || tsr_ds_parse(ds, &E) != 0)
        return tsr_error_set(err, TSR_EINVAL, "ds '%s' is not a date YYYY-MM-DD", ds ? ds : "");
    const char *wh = warehouse && warehouse[0] ? warehouse : c->warehouse;
    if (!wh) return tsr_error_set(err, TSR_EINVAL, "upload: no warehouse (start the coordinator with --warehouse)");
    pthread_mutex_lock(&c->mu);
    int rc = refresh_for_admin(c, err);
    job_t *old = NULL;
    if (rc == 0 && want_id && want_id[0]) rc = claim_job_id(c, want_id, KIND_UPLOAD, name, &old, err);
    if (rc == 1) {                  /* a resumed job: this call waits on it */
        old->cb = cb;
        old->ud = ud;
        old->deadline = deadline_ms;
        if (job_id) snprintf(job_id, 64, "%s", old->id);
        tsr_log(TSR_LOG_INFO, "coordinator", "job %s: a client waits on it again", old->id);
        unlock_and_flush(c);
        return 0;
    }
    const tsr_reg_entry_t *e = rc == 0 ? find_config(c, name) : NULL;
    if (rc == 0 && !e)
        rc = tsr_error_set(err, TSR_ENOTFOUND, "no config named '%s' is applied (run `tessera apply -f` first)", name);
    tsr_config_t *conf = NULL;
    if (rc == 0) rc = tsr_served_load_conf(wh, e->text, e->text_len, e->name, &conf, err);
    const tsr_conf_group_by_t *g[64];
    size_t ng = rc == 0 ? tsr_served_group_bys(conf, g, 64) : 0;
    if (rc == 0 && ng == 0)
        rc = tsr_error_set(err, TSR_EUNSUPPORTED, "%s is a %s: only GroupBys and Joins are uploaded", name,
                           tsr_conf_kind_name(conf->kind));
    job_t *j = NULL;
    if (rc == 0) {
        j = tsr_calloc(1, sizeof *j);
        j->name = tsr_strdup(name);
        j->ds = tsr_strdup(ds);
        j->warehouse = tsr_strdup(wh);
        j->batch_end = (E + 1) * TSR_MS_PER_DAY;
        j->deadline = deadline_ms;
        j->gbs = tsr_calloc(ng, sizeof(char *));
        j->committed = tsr_calloc(ng, sizeof(int));
        j->cb = cb;
        j->ud = ud;
        j->created_at = now(c);
        c->job_seq++;
        if (want_id && want_id[0]) snprintf(j->id, sizeof j->id, "%s", want_id);
        else snprintf(j->id, sizeof j->id, "%lld-%llu", (long long)now(c), (unsigned long long)c->job_seq);
    }
    for (size_t i = 0; rc == 0 && i < ng; i++) {
        int dup = 0;
        for (size_t k = 0; k < j->ngbs; k++) dup |= strcmp(j->gbs[k], g[i]->meta.name) == 0;
        if (dup) continue;
        rc = check_ds(wh, g[i], E, err);
        if (rc) break;
        gbassign_t *as = find_as(c, g[i]->meta.name);
        int assigned = as && as->nparts > 0;
        for (int32_t p = 0; assigned && p < as->nparts; p++) assigned = as->owners[p] != NULL;
        if (!assigned) {
            gbinfo_t *gi = find_gb(c, g[i]->meta.name);
            const char *te = gi && gi->topic ? topic_error(c, gi->topic) : NULL;
            rc = tsr_error_set(err, TSR_EUNAVAIL, "GroupBy %s is not assigned to workers yet (%s)", g[i]->meta.name,
                               c->nmembers == 0 ? "no live workers" : te ? te : "try again shortly");
            break;
        }
        j->gbs[j->ngbs++] = tsr_strdup(g[i]->meta.name);
        /* one shard per owner: its partitions, ascending */
        for (int32_t p = 0; p < as->nparts; p++) {
            shard_t *sh = NULL;
            for (size_t s = 0; s < j->nsh; s++)
                if (strcmp(j->sh[s].gb, as->name) == 0 && strcmp(j->sh[s].worker, as->owners[p]) == 0) sh = &j->sh[s];
            if (!sh) {
                j->sh = tsr_realloc(j->sh, (j->nsh + 1) * sizeof *j->sh);
                sh = &j->sh[j->nsh++];
                memset(sh, 0, sizeof *sh);
                sh->gb = tsr_strdup(as->name);
                sh->worker = tsr_strdup(as->owners[p]);
                sh->attempt = 1;
                sh->epoch = c->epoch;
                sh->held = 1;       /* handed out once the job is recorded */
                sh->parts = tsr_calloc((size_t)as->nparts, sizeof(int32_t));
            }
            sh->parts[sh->nparts++] = p;
        }
    }
    tsr_config_free(conf);
    if (rc == 0 && job_write(c, j))
        rc = tsr_error_set(err, TSR_EUNAVAIL, "upload of %s: cannot record the job in etcd; try again", name);
    if (rc) {
        if (j) {
            j->cb = NULL;
            job_free(j);
        }
        unlock_and_flush(c);
        return rc;
    }
    c->jobs = tsr_realloc(c->jobs, (c->njobs + 1) * sizeof *c->jobs);
    c->jobs[c->njobs++] = j;
    if (job_id) snprintf(job_id, 64, "%s", j->id);
    tsr_log(TSR_LOG_INFO, "coordinator", "job %s: upload %s ds=%s: %zu GroupBys, %zu shards", j->id, name, ds,
            j->ngbs, j->nsh);
    bump(c);
    unlock_and_flush(c);
    return 0;
}

/* ------------------------------------------------------------------------------------------
 * Backfills */

size_t tsr_coord_split_days(int64_t start_day, int64_t end_day, size_t nworkers, int64_t (*ranges)[2],
                            size_t cap) {
    if (end_day < start_day || cap == 0) return 0;
    uint64_t days = (uint64_t)(end_day - start_day) + 1;
    uint64_t n = 2 * (uint64_t)(nworkers ? nworkers : 1);
    if (n > days) n = days;
    if (n > cap) n = cap;
    uint64_t base = days / n, extra = days % n;
    int64_t d = start_day;
    for (uint64_t i = 0; i < n; i++) {
        int64_t len = (int64_t)(base + (i < extra ? 1 : 0));
        ranges[i][0] = d;
        ranges[i][1] = d + len - 1;
        d += len;
    }
    return (size_t)n;
}

#define MAX_BACKFILL_SHARDS 256

int tsr_coord_backfill(tsr_coord_t *c, const char *name, const char *start_ds, const char *end_ds,
                       const char *warehouse, int64_t deadline_ms, tsr_coord_backfill_cb cb, void *ud,
                       char *job_id, tsr_error_t *err) {
    return tsr_coord_backfill_job(c, name, start_ds, end_ds, warehouse, deadline_ms, NULL, cb, ud, job_id, err);
}

int tsr_coord_backfill_job(tsr_coord_t *c, const char *name, const char *start_ds, const char *end_ds,
                           const char *warehouse, int64_t deadline_ms, const char *want_id,
                           tsr_coord_backfill_cb cb, void *ud, char *job_id, tsr_error_t *err) {
    if (!name || !name[0]) return tsr_error_set(err, TSR_EINVAL, "backfill: name is empty");
    int64_t lo, hi;
    if (!start_ds || tsr_ds_parse(start_ds, &lo) != 0)
        return tsr_error_set(err, TSR_EINVAL, "start_ds '%s' is not a date YYYY-MM-DD", start_ds ? start_ds : "");
    if (!end_ds || tsr_ds_parse(end_ds, &hi) != 0)
        return tsr_error_set(err, TSR_EINVAL, "end_ds '%s' is not a date YYYY-MM-DD", end_ds ? end_ds : "");
    if (hi < lo) return tsr_error_set(err, TSR_EINVAL, "end_ds %s is before start_ds %s", end_ds, start_ds);
    const char *wh = warehouse && warehouse[0] ? warehouse : c->warehouse;
    if (!wh) return tsr_error_set(err, TSR_EINVAL, "backfill: no warehouse (start the coordinator with --warehouse)");
    pthread_mutex_lock(&c->mu);
    int rc = refresh_for_admin(c, err);
    job_t *old = NULL;
    if (rc == 0 && want_id && want_id[0]) rc = claim_job_id(c, want_id, KIND_BACKFILL, name, &old, err);
    if (rc == 1) {                  /* a resumed job: this call waits on it */
        old->bcb = cb;
        old->ud = ud;
        old->deadline = deadline_ms;
        if (job_id) snprintf(job_id, 64, "%s", old->id);
        tsr_log(TSR_LOG_INFO, "coordinator", "job %s: a client waits on it again", old->id);
        unlock_and_flush(c);
        return 0;
    }
    const tsr_reg_entry_t *e = rc == 0 ? find_config(c, name) : NULL;
    if (rc == 0 && !e)
        rc = tsr_error_set(err, TSR_ENOTFOUND, "no config named '%s' is applied (run `tessera apply -f` first)", name);
    tsr_config_t *conf = NULL;
    if (rc == 0) rc = tsr_served_load_conf(wh, e->text, e->text_len, e->name, &conf, err);
    char out[1024] = "";
    if (rc == 0) {
        tsr_backfill_opts_t bo;
        memset(&bo, 0, sizeof bo);
        bo.warehouse = wh;
        bo.start_day = lo;
        bo.end_day = hi;
        rc = tsr_backfill_check(conf, &bo, out, sizeof out, err);
        if (rc) tsr_error_prefix(err, "backfill of %s", name);
    }
    if (rc == 0) {
        tsr_error_t e2;
        refresh_workers(c, &e2);
        if (c->nmembers == 0) rc = tsr_error_set(err, TSR_EUNAVAIL, "backfill of %s: no live workers", name);
    }
    if (rc) {
        tsr_config_free(conf);
        unlock_and_flush(c);
        return rc;
    }
    job_t *j = tsr_calloc(1, sizeof *j);
    j->kind = KIND_BACKFILL;
    j->name = tsr_strdup(name);
    char dsr[32];
    snprintf(dsr, sizeof dsr, "%s..%s", start_ds, end_ds);
    j->ds = tsr_strdup(dsr);
    j->warehouse = tsr_strdup(wh);
    j->config_text = tsr_strndup(e->text, e->text_len);
    j->output = tsr_strdup(out);
    j->days = hi - lo + 1;
    j->deadline = deadline_ms;
    j->bcb = cb;
    j->ud = ud;
    j->created_at = now(c);
    c->job_seq++;
    if (want_id && want_id[0]) snprintf(j->id, sizeof j->id, "%s", want_id);
    else snprintf(j->id, sizeof j->id, "%lld-%llu", (long long)now(c), (unsigned long long)c->job_seq);
    int64_t (*r)[2] = tsr_malloc(MAX_BACKFILL_SHARDS * sizeof *r);
    size_t n = tsr_coord_split_days(lo, hi, c->nmembers, r, MAX_BACKFILL_SHARDS);
    j->sh = tsr_calloc(n, sizeof *j->sh);
    for (size_t i = 0; i < n; i++) {
        shard_t *sh = &j->sh[j->nsh++];
        sh->gb = tsr_strdup(name);
        sh->lo = r[i][0];
        sh->hi = r[i][1];
        sh->worker = tsr_strdup(c->members[i % c->nmembers].id);   /* round-robin */
        sh->attempt = 1;
        sh->epoch = c->epoch;
        sh->held = 1;               /* handed out once the job is recorded */
    }
    free(r);
    tsr_config_free(conf);
    if (job_write(c, j)) {
        j->bcb = NULL;
        job_free(j);
        rc = tsr_error_set(err, TSR_EUNAVAIL, "backfill of %s: cannot record the job in etcd; try again", name);
        unlock_and_flush(c);
        return rc;
    }
    c->jobs = tsr_realloc(c->jobs, (c->njobs + 1) * sizeof *c->jobs);
    c->jobs[c->njobs++] = j;
    if (job_id) snprintf(job_id, 64, "%s", j->id);
    tsr_log(TSR_LOG_INFO, "coordinator", "job %s: backfill %s ds=%s: %zu shards over %zu workers into %s", j->id,
            name, j->ds, j->nsh, c->nmembers, j->output);
    bump(c);
    unlock_and_flush(c);
    return 0;
}

/* ------------------------------------------------------------------------------------------
 * Jobs by id */

/* tessera.v1.GetJobResponse of a job record (as job_json writes it) into out. */
static void job_response(tsr_coord_t *c, const char *id, json_t *o, tsr_buf_t *out) {
    Tessera__V1__GetJobResponse m;
    tessera__v1__get_job_response__init(&m);
    Tessera__V1__UploadResponse up;
    tessera__v1__upload_response__init(&up);
    Tessera__V1__BackfillResponse bf;
    tessera__v1__backfill_response__init(&bf);
    const char *s;
    m.job_id = (char *)id;
    m.kind = (s = json_string_value(json_object_get(o, "kind"))) ? (char *)s : "upload";
    m.name = (s = json_string_value(json_object_get(o, "name"))) ? (char *)s : "";
    m.ds = (s = json_string_value(json_object_get(o, "ds"))) ? (char *)s : "";
    m.state = (s = json_string_value(json_object_get(o, "state"))) ? (char *)s : "abandoned";
    m.error = (s = json_string_value(json_object_get(o, "error"))) ? (char *)s : "";
    m.epoch = c->epoch;
    m.created_at_millis = json_integer_value(json_object_get(o, "created_at_millis"));
    m.finished_at_millis = json_integer_value(json_object_get(o, "finished_at_millis"));
    m.resumed = (int32_t)json_integer_value(json_object_get(o, "resumed"));
    json_t *sh = json_object_get(o, "shards");
    int64_t keys = 0;
    for (size_t i = 0; i < json_array_size(sh); i++) {
        json_t *x = json_array_get(sh, i);
        m.shards++;
        const char *st = json_string_value(json_object_get(x, "state"));
        if (st && strcmp(st, "done") == 0) {
            m.shards_done++;
            keys += json_integer_value(json_object_get(x, "keys"));
        }
    }
    if (strcmp(m.state, "done") == 0) {
        if (strcmp(m.kind, "backfill") == 0) {
            bf.name = m.name;
            bf.days = json_integer_value(json_object_get(o, "days"));
            bf.rows = keys;
            bf.shards = m.shards;
            bf.output = (s = json_string_value(json_object_get(o, "output"))) ? (char *)s : "";
            bf.job_id = (char *)id;
            m.backfill = &bf;
        } else {
            up.name = m.name;
            up.batch_end_millis = json_integer_value(json_object_get(o, "batch_end_millis"));
            up.keys = keys;
            up.group_bys = (int64_t)json_array_size(json_object_get(o, "group_bys"));
            up.job_id = (char *)id;
            m.upload = &up;
        }
    }
    tsr_pb_pack(&m.base, out);
}

int tsr_coord_job(tsr_coord_t *c, const char *id, tsr_buf_t *out, tsr_error_t *err) {
    if (!id || !id[0]) return tsr_error_set(err, TSR_EINVAL, "GetJob: job_id is empty");
    if (!valid_job_id(id)) return tsr_error_set(err, TSR_ENOTFOUND, "no job '%s'", id);
    pthread_mutex_lock(&c->mu);
    int rc = require_leader(c, err);
    json_t *o = NULL;
    if (rc == 0) {
        job_t *j = find_job(c, id);
        if (j) {
            o = job_json(j);
        } else {
            char jk[512];
            key(c, jk, sizeof jk, "jobs/%s", id);
            tsr_kv_entry_t e;
            int found = 0;
            rc = tsr_kv_get(c->o.kv, jk, &e, &found, err);
            if (rc == 0 && found) {
                json_error_t je;
                o = json_loadb(e.val, e.val_len, 0, &je);
                tsr_kv_entry_free(&e);
                if (!o) o = json_pack("{s:s, s:s}", "state", "abandoned", "error", "unreadable job record");
            } else if (rc == 0) {
                rc = tsr_error_set(err, TSR_ENOTFOUND, "no job '%s' (never started, or finished over an hour ago)", id);
            }
        }
    }
    if (o) {
        job_response(c, id, o, out);
        json_decref(o);
    }
    unlock_and_flush(c);
    return rc;
}

/* ------------------------------------------------------------------------------------------
 * Status */

static size_t owned_by(tsr_coord_t *c, const char *id) {
    size_t n = 0;
    for (size_t i = 0; i < c->nas; i++)
        for (int32_t p = 0; p < c->as[i].nparts; p++) n += c->as[i].owners[p] && strcmp(c->as[i].owners[p], id) == 0;
    return n;
}

int tsr_coord_status(tsr_coord_t *c, const char *version, int64_t started_at_ms, tsr_buf_t *out,
                     tsr_error_t *err) {
    pthread_mutex_lock(&c->mu);
    int rc = refresh_for_admin(c, err);
    if (rc) {
        unlock_and_flush(c);
        return rc;
    }
    tsr_arena_t a;
    tsr_arena_init(&a, 0);
    Tessera__V1__StatusResponse m;
    tessera__v1__status_response__init(&m);
    m.version = (char *)version;
    m.started_at_millis = started_at_ms;
    m.configs = (int64_t)c->nconfigs;
    size_t cap = 1 + c->nmembers + c->ngbs;
    m.components = tsr_arena_alloc(&a, cap * sizeof(void *));
#define ADD(nm, ok, ...)                                                           \
    do {                                                                           \
        Tessera__V1__ComponentStatus *cs = tsr_arena_alloc(&a, sizeof *cs);        \
        tessera__v1__component_status__init(cs);                                   \
        cs->name = tsr_arena_strdup(&a, nm);                                       \
        cs->serving = (ok);                                                        \
        char d_[512];                                                              \
        snprintf(d_, sizeof d_, __VA_ARGS__);                                      \
        cs->detail = tsr_arena_strdup(&a, d_);                                     \
        m.components[m.n_components++] = cs;                                       \
    } while (0)
    if (strcmp(c->id, c->advertise) == 0)
        ADD("coordinator", 1, "%s leads at epoch %lld; %zu workers, %zu GroupBys assigned", c->id,
            (long long)c->epoch, c->nmembers, c->nas);
    else
        ADD("coordinator", 1, "%s (%s) leads at epoch %lld; %zu workers, %zu GroupBys assigned", c->id,
            c->advertise, (long long)c->epoch, c->nmembers, c->nas);
    for (size_t i = 0; i < c->nmembers; i++) {
        char nm[300];
        snprintf(nm, sizeof nm, "worker:%s", c->members[i].id);
        ADD(nm, 1, "%s, %zu partitions", c->members[i].addr, owned_by(c, c->members[i].id));
    }
    for (size_t i = 0; i < c->ngbs; i++) {
        if (find_as(c, c->gbs[i].name)) continue;
        char nm[300];
        snprintf(nm, sizeof nm, "groupby:%s", c->gbs[i].name);
        const char *te = c->gbs[i].topic ? topic_error(c, c->gbs[i].topic) : NULL;
        ADD(nm, 0, "unassigned: %s", te ? te : "waiting for its partition count");
    }
#undef ADD
    tsr_pb_pack(&m.base, out);
    unlock_and_flush(c);
    tsr_arena_free(&a);
    return 0;
}

int tsr_coord_list_workers(tsr_coord_t *c, tsr_buf_t *out, tsr_error_t *err) {
    pthread_mutex_lock(&c->mu);
    int rc = require_leader(c, err);
    if (rc == 0) {
        tsr_error_t e2;
        refresh_workers(c, &e2);
        tsr_arena_t a;
        tsr_arena_init(&a, 0);
        Tessera__V1__ListWorkersResponse m;
        tessera__v1__list_workers_response__init(&m);
        m.epoch = c->epoch;
        m.workers = tsr_arena_alloc(&a, (c->nmembers ? c->nmembers : 1) * sizeof(void *));
        for (size_t i = 0; i < c->nmembers; i++) {
            Tessera__V1__WorkerSummary *w = tsr_arena_alloc(&a, sizeof *w);
            tessera__v1__worker_summary__init(w);
            w->worker_id = c->members[i].id;
            w->address = c->members[i].addr;
            w->lease_id = c->members[i].lease;
            w->registered_at_millis = c->members[i].registered_at;
            w->partitions = (int32_t)owned_by(c, c->members[i].id);
            m.workers[m.n_workers++] = w;
        }
        tsr_pb_pack(&m.base, out);
        tsr_arena_free(&a);
    }
    unlock_and_flush(c);
    return rc;
}

int tsr_coord_list_partitions(tsr_coord_t *c, const char *group_by, tsr_buf_t *out,
                              tsr_error_t *err) {
    pthread_mutex_lock(&c->mu);
    int rc = require_leader(c, err);
    if (rc == 0) {
        tsr_arena_t a;
        tsr_arena_init(&a, 0);
        Tessera__V1__ListPartitionsResponse m;
        tessera__v1__list_partitions_response__init(&m);
        m.epoch = c->epoch;
        size_t cap = c->ngbs + 1;
        for (size_t i = 0; i < c->nas; i++) cap += (size_t)c->as[i].nparts;
        m.partitions = tsr_arena_alloc(&a, cap * sizeof(void *));
        for (size_t i = 0; i < c->ngbs; i++) {   /* sorted by name */
            const char *gname = c->gbs[i].name;
            if (group_by && group_by[0] && strcmp(group_by, gname) != 0) continue;
            gbassign_t *as = find_as(c, gname);
            int32_t np = as ? as->nparts : 0;
            for (int32_t p = 0; p < (as ? np : 1); p++) {
                Tessera__V1__PartitionSummary *s = tsr_arena_alloc(&a, sizeof *s);
                tessera__v1__partition_summary__init(s);
                s->group_by = (char *)gname;
                s->partition = as ? p : -1;      /* -1: the GroupBy is not assigned yet */
                s->lag = -1;
                const char *w = as ? as->owners[p] : NULL;
                s->worker_id = (char *)(w ? w : "");
                member_t *mb = w ? find_member(c, w) : NULL;
                s->address = mb ? mb->addr : "";
                const wstatus_t *st = w ? find_status(c, w) : NULL;
                for (size_t k = 0; st && k < st->nps; k++)
                    if (st->ps[k].partition == p && strcmp(st->ps[k].group_by, gname) == 0) {
                        s->batch_end_millis = st->ps[k].batch_end_ms;
                        s->events = st->ps[k].events;
                        s->lag = st->ps[k].lag;
                    }
                m.partitions[m.n_partitions++] = s;
            }
        }
        tsr_pb_pack(&m.base, out);
        tsr_arena_free(&a);
    }
    unlock_and_flush(c);
    return rc;
}
