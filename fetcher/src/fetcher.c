/*
 * fetcher.c — tessera-fetcher's server object (fetcher.h has the design).
 *
 * Threads:
 *   watcher       WatchRouting stream; decodes tables, compiles configs, swaps the table
 *   CQ threads    FeatureService calls, inline (fetch_call), up to rpc_threads - 1 in a handler
 *                 at a time; also the replies of the fan-outs they started (below)
 *   offload       FeatureService calls past that (the rpc server's offload threads,
 *                 fetch_threads of them, "tsr-rpc-off"): serving fetch (read_many); and the
 *                 retries of deferred fetches
 *   HTTP          one thread per connection (http.h), fetching the same way (read_many)
 *
 * An inline fetch never blocks its CQ thread (fetch_deferred): pass 1 of the serving
 * (tsr_serving_fetch_begin) collects the reads, plan_attempt locates and groups them by owner,
 * and tsr_rpc_call_fanout starts one ReadPartition per owner with the completions on the
 * server's own completion queue; the handler returns TSR_RPC_DEFER. The CQ thread that dequeues
 * the last reply runs df_done: plan_map maps the answers exactly as the blocking attempt does,
 * then pass 2 (tsr_serving_fetch_finish) and tsr_rpc_call_finish — or, when a read needs the
 * retry (READ_NOT_OWNER, an unreachable owner, no owner yet), the rest goes to an offload thread
 * (tsr_rpc_call_offload) and runs read_many's retry there: wait up to retry_wait_ms for a newer
 * table, one last blocking attempt. Each deferred fetch has its own pooled record and arena:
 * the CQ thread's arena is reset by its next call.
 * Everywhere else (offload and HTTP threads) a fan-out runs on the fetching thread itself:
 * tsr_rpc_client_call_all starts the calls on one completion queue and polls it there, so
 * the answers wake the thread that assembles the rows. Every call carries the caller's
 * remaining deadline, which bounds the wait.
 */
#include "tsr/fetcher.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

#include "cluster.pb-c.h"
#include "tsr/config.h"
#include "tsr/http.h"
#include "tsr/log.h"
#include "tsr/metrics.h"
#include "tsr/pbvalue.h"
#include "tsr/routing.h"
#include "tsr/rpc.h"
#include "tsr/serving.h"
#include "tsr/time.h"

#define M_WATCH "/tessera.v1.CoordinatorService/WatchRouting"
#define M_READ "/tessera.v1.WorkerService/ReadPartition"
#define QUEUE_MAX 1024             /* fetches waiting for an offload thread */
#define MAX_COORDS 16
/* Completion-queue threads of the fetcher's server by default (opts.rpc_threads). Fetches of
 * up to SMALL_ROWS rows run on the thread that received them; larger ones while at most
 * rpc_threads - 1 are inside a handler, so one thread stays free to accept calls (fetch_call).
 * One thread, with tessera-fetcher's "poll" engine, measured half the context switches of 4
 * (docs/cluster.md "Fetchers"). */
#define CQ_THREADS 1
#define SMALL_ROWS 8                /* fetches always started on a CQ thread (fetch_call) */
#define ARENA_KEEP_MAX (8u << 20)

typedef struct installed {
    char *name;
    int64_t version;
} installed_t;

typedef struct wclient {
    char *addr;
    tsr_rpc_client_t *c;
} wclient_t;

struct tsr_fetcher {
    tsr_fetcher_opts_t o;
    char *coord_list, *listen, *warehouse, *id, *host;
    char *coords[MAX_COORDS];
    size_t ncoords;
    tsr_serving_t *serving;
    /* routing */
    pthread_mutex_t rt_mu;
    pthread_cond_t rt_cv;
    tsr_routing_t *rt;
    installed_t *inst;              /* configs installed (watcher thread only) */
    size_t ninst, capinst;
    pthread_t watcher;
    int watcher_on;
    int stop;                       /* under rt_mu */
    /* worker clients */
    pthread_mutex_t cl_mu;
    wclient_t *cl;
    size_t ncl, capcl;
    /* fetching threads */
    int inline_busy;                /* atomic: fetches running on CQ threads */
    pthread_key_t arena_key;        /* a CQ or offload thread's arena */
    int arena_key_made;
    /* deferred fetches (fetch_deferred): pooled records */
    pthread_mutex_t df_mu;
    struct dfetch *df_free;
    size_t df_pooled;
    /* servers */
    tsr_rpc_server_t *rpc;
    tsr_http_server_t *http;
    tsr_metrics_t *metrics;
    tsr_counter_t *c_requests, *c_rows, *c_row_fail, *c_part_err, *c_rpcs, *c_retries, *c_read_err;
    tsr_gauge_t *g_epoch, *g_revision, *g_items;
    tsr_serving_stats_t last_serving;
    tsr_fetcher_stats_t st;         /* counters: atomics */
};

static int64_t mono_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

static int64_t now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

/* Absolute CLOCK_REALTIME timespec ms from now (condition variables use the realtime clock). */
static struct timespec abs_in(int64_t ms) {
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    t.tv_sec += ms / 1000;
    t.tv_nsec += (ms % 1000) * 1000000;
    if (t.tv_nsec >= 1000000000) {
        t.tv_sec++;
        t.tv_nsec -= 1000000000;
    }
    return t;
}

#define logf_(f, lvl, ...)                                                                         \
    do {                                                                                           \
        if ((f)->o.log) tsr_log((lvl), "fetcher", __VA_ARGS__);                                    \
    } while (0)

/* ------------------------------------------------------------------------------------------
 * routing: the current table */

static tsr_routing_t *rt_get(tsr_fetcher_t *f) {
    pthread_mutex_lock(&f->rt_mu);
    tsr_routing_t *rt = f->rt;
    if (rt) tsr_routing_ref(rt);
    pthread_mutex_unlock(&f->rt_mu);
    return rt;
}

/* Waits up to ms for a table newer than (epoch, revision); returns it (referenced) or NULL. */
static tsr_routing_t *rt_wait_newer(tsr_fetcher_t *f, const tsr_routing_t *than, int64_t ms) {
    struct timespec until = abs_in(ms);
    tsr_routing_t *rt = NULL;
    pthread_mutex_lock(&f->rt_mu);
    for (;;) {
        if (f->rt && f->rt != than &&
            (!than || f->rt->epoch > than->epoch ||
             (f->rt->epoch == than->epoch && f->rt->revision > than->revision))) {
            rt = f->rt;
            tsr_routing_ref(rt);
            break;
        }
        if (f->stop || pthread_cond_timedwait(&f->rt_cv, &f->rt_mu, &until) != 0) break;
    }
    pthread_mutex_unlock(&f->rt_mu);
    return rt;
}

int tsr_fetcher_wait_routing(tsr_fetcher_t *f, int64_t epoch, int64_t revision, int64_t timeout_ms) {
    struct timespec until = abs_in(timeout_ms);
    int ok = 0;
    pthread_mutex_lock(&f->rt_mu);
    for (;;) {
        if (f->rt && (f->rt->epoch > epoch || (f->rt->epoch == epoch && f->rt->revision >= revision))) {
            ok = 1;
            break;
        }
        if (pthread_cond_timedwait(&f->rt_cv, &f->rt_mu, &until) != 0) break;
    }
    pthread_mutex_unlock(&f->rt_mu);
    return ok;
}

static installed_t *inst_find(tsr_fetcher_t *f, const char *name) {
    for (size_t i = 0; i < f->ninst; i++)
        if (strcmp(f->inst[i].name, name) == 0) return &f->inst[i];
    return NULL;
}

/* Compiles and installs one config of the table. */
static void install_config(tsr_fetcher_t *f, const tsr_routed_config_t *c) {
    tsr_config_options_t opt;
    memset(&opt, 0, sizeof opt);
    opt.warehouse = f->warehouse;
    tsr_diag_t d;
    tsr_diag_init(&d);
    tsr_config_t *conf = NULL;
    tsr_error_t err;
    tsr_error_clear(&err);
    int rc = tsr_config_load_string(c->json, strlen(c->json), c->name, &opt, &conf, &d);
    if (rc) {
        tsr_config_free(conf);
        logf_(f, TSR_LOG_WARN, "%s version %lld: not served: %s", c->name, (long long)c->version,
              d.n ? d.items[0].text : tsr_strerror(rc));
    } else {
        tsr_serving_item_t *it = NULL;
        rc = tsr_serving_prepare(conf, f->warehouse, tsr_day_of_ms(now_ms()), &it, &err);
        if (rc) {
            logf_(f, TSR_LOG_WARN, "%s version %lld: not served: %s", c->name, (long long)c->version, err.msg);
        } else {
            tsr_serving_install(f->serving, it);
            logf_(f, TSR_LOG_INFO, "serving %s version %lld", c->name, (long long)c->version);
        }
    }
    tsr_diag_free(&d);
    /* remembered either way: a broken version is not recompiled on every table */
    installed_t *in = inst_find(f, c->name);
    if (!in) {
        if (f->ninst == f->capinst) {
            f->capinst = f->capinst ? 2 * f->capinst : 16;
            f->inst = tsr_realloc(f->inst, f->capinst * sizeof(*f->inst));
        }
        in = &f->inst[f->ninst++];
        in->name = tsr_strdup(c->name);
    }
    in->version = c->version;
}

/* Installs rt (reference taken) when it is newer than the current table. Watcher thread. */
static void install_table(tsr_fetcher_t *f, tsr_routing_t *rt) {
    pthread_mutex_lock(&f->rt_mu);
    int newer = tsr_routing_is_newer(f->rt, rt);
    int same = newer && f->rt && f->rt->epoch == rt->epoch && f->rt->revision == rt->revision;
    int64_t ce = f->rt ? f->rt->epoch : -1;
    pthread_mutex_unlock(&f->rt_mu);
    if (!newer) {
        logf_(f, TSR_LOG_INFO, "ignored a routing table of epoch %lld revision %lld (have epoch %lld)",
              (long long)rt->epoch, (long long)rt->revision, (long long)ce);
        tsr_routing_unref(rt);
        return;
    }
    /* configs first, so a fetch that sees the new routes finds their plans */
    for (size_t i = 0; i < rt->nconfigs; i++) {
        installed_t *in = inst_find(f, rt->configs[i].name);
        if (!in || in->version != rt->configs[i].version) install_config(f, &rt->configs[i]);
    }
    for (size_t i = 0; i < f->ninst;) {
        int keep = 0;
        for (size_t k = 0; k < rt->nconfigs && !keep; k++) keep = strcmp(rt->configs[k].name, f->inst[i].name) == 0;
        if (keep) {
            i++;
            continue;
        }
        tsr_serving_remove(f->serving, f->inst[i].name);
        logf_(f, TSR_LOG_INFO, "%s: removed", f->inst[i].name);
        free(f->inst[i].name);
        f->inst[i] = f->inst[--f->ninst];
    }
    pthread_mutex_lock(&f->rt_mu);
    tsr_routing_t *old = f->rt;
    f->rt = rt;
    pthread_cond_broadcast(&f->rt_cv);
    pthread_mutex_unlock(&f->rt_mu);
    tsr_routing_unref(old);
    __atomic_add_fetch(&f->st.tables, 1, __ATOMIC_RELAXED);
    if (!old) {
        /* ready; stop sets f->stop (under rt_mu) before it frees the servers */
        pthread_mutex_lock(&f->rt_mu);
        if (!f->stop && f->rpc) tsr_rpc_health_set(f->rpc, "", TSR_HEALTH_SERVING);
        if (!f->stop && f->http) tsr_http_server_set_ready(f->http, 1, NULL);
        pthread_mutex_unlock(&f->rt_mu);
    }
    if (!same)
        logf_(f, TSR_LOG_INFO, "routing table epoch %lld revision %lld: %zu workers, %zu GroupBys, %zu configs",
              (long long)rt->epoch, (long long)rt->revision, rt->nworkers, rt->nroutes, rt->nconfigs);
}

/* ------------------------------------------------------------------------------------------
 * routing: the watcher */

typedef struct watch_ctx {
    tsr_fetcher_t *f;
    int got;
} watch_ctx_t;

static int on_table(void *ud, const uint8_t *msg, size_t n) {
    watch_ctx_t *w = ud;
    tsr_error_t err;
    tsr_error_clear(&err);
    tsr_routing_t *rt;
    if (tsr_routing_decode(msg, n, &rt, &err) != 0) {
        logf_(w->f, TSR_LOG_WARN, "bad routing table: %s", err.msg);
    } else {
        w->got++;
        install_table(w->f, rt);
    }
    pthread_mutex_lock(&w->f->rt_mu);
    int stop = w->f->stop;
    pthread_mutex_unlock(&w->f->rt_mu);
    return stop;
}

/* "not the leader; leader is HOST:PORT" (message or tessera-leader metadata) → HOST:PORT. */
static int leader_hint(const tsr_rpc_reply_t *r, char *out, size_t cap) {
    size_t len = 0;
    const char *v = tsr_rpc_reply_metadata(r, "tessera-leader", &len);
    if (!v) {
        const char *p = strstr(r->message, "leader is ");
        if (!p) return 0;
        v = p + strlen("leader is ");
        len = strcspn(v, " ;,\n");
    }
    /* "leader is unknown (election in progress)": no address to follow */
    if (len == 0 || len >= cap || !memchr(v, ':', len)) return 0;
    memcpy(out, v, len);
    out[len] = 0;
    return 1;
}

/* Sleeps up to ms unless stopping; returns 1 when stopping. */
static int watch_sleep(tsr_fetcher_t *f, int64_t ms) {
    struct timespec until = abs_in(ms);
    pthread_mutex_lock(&f->rt_mu);
    while (!f->stop && pthread_cond_timedwait(&f->rt_cv, &f->rt_mu, &until) == 0) {
    }
    int stop = f->stop;
    pthread_mutex_unlock(&f->rt_mu);
    return stop;
}

static void *watch_main(void *arg) {
    tsr_fetcher_t *f = arg;
    Tessera__V1__WatchRoutingRequest rq;
    tessera__v1__watch_routing_request__init(&rq);
    rq.fetcher_id = f->id;
    tsr_buf_t req;
    tsr_buf_init(&req);
    tsr_pb_pack(&rq.base, &req);
    tsr_rpc_reply_t reply;
    tsr_rpc_reply_init(&reply);
    tsr_rpc_client_t *clients[MAX_COORDS + 1] = {0};
    char hint[256] = "";
    tsr_rpc_client_t *hint_client = NULL;
    size_t idx = 0;
    int64_t backoff = 100;
    int hops = 0;                   /* leader redirects in a row */
    char last_err[512] = "";
    while (!watch_sleep(f, 0)) {
        const char *target = hint[0] ? hint : f->coords[idx];
        tsr_rpc_client_t *c = NULL;
        tsr_error_t err;
        tsr_error_clear(&err);
        if (hint[0]) {
            if (!hint_client) hint_client = tsr_rpc_client_new(hint, &err);
            c = hint_client;
        } else {
            if (!clients[idx]) clients[idx] = tsr_rpc_client_new(target, &err);
            c = clients[idx];
        }
        int rc = TSR_EUNAVAIL;
        watch_ctx_t w = {f, 0};
        if (c) {
            tsr_rpc_call_opts_t co;
            memset(&co, 0, sizeof co);
            co.timeout_ms = f->o.watch_renew_ms;
            rc = tsr_rpc_client_stream(c, M_WATCH, req.data, req.len, &co, on_table, &w, &reply, &err);
        }
        if (w.got > 0 && (rc == 0 || reply.status == TSR_GRPC_DEADLINE_EXCEEDED ||
                          reply.status == TSR_GRPC_CANCELLED)) {
            /* a stream that delivered and was renewed (or ended): reopen */
            backoff = 100;
            hops = 0;
            last_err[0] = 0;
            if (rc == 0 && watch_sleep(f, 50)) break;
            continue;
        }
        char next[256];
        if (c && reply.status == TSR_GRPC_UNAVAILABLE && leader_hint(&reply, next, sizeof next) &&
            strcmp(next, target) != 0 && hops < 4) {
            hops++;
            logf_(f, TSR_LOG_INFO, "coordinator %s is not the leader; going to %s", target, next);
            if (strcmp(next, hint) != 0) {
                tsr_rpc_client_free(hint_client);
                hint_client = NULL;
                snprintf(hint, sizeof hint, "%s", next);
            }
            continue;
        }
        hops = 0;
        if (strcmp(last_err, err.msg) != 0) {
            logf_(f, TSR_LOG_WARN, "routing stream from %s: %s (serving from the last table; retrying)", target,
                  err.msg[0] ? err.msg : "ended without a table");
            snprintf(last_err, sizeof last_err, "%.500s", err.msg);
        }
        if (hint[0]) {
            hint[0] = 0;
            tsr_rpc_client_free(hint_client);
            hint_client = NULL;
        } else {
            idx = (idx + 1) % f->ncoords;
        }
        if (watch_sleep(f, backoff)) break;
        backoff = backoff * 2 > 2000 ? 2000 : backoff * 2;
    }
    tsr_rpc_client_free(hint_client);
    for (size_t i = 0; i < MAX_COORDS; i++) tsr_rpc_client_free(clients[i]);
    tsr_rpc_reply_free(&reply);
    tsr_buf_free(&req);
    return NULL;
}

/* ------------------------------------------------------------------------------------------
 * reads: one ReadPartition per owner, in parallel */

static tsr_rpc_client_t *worker_client(tsr_fetcher_t *f, const char *addr, tsr_error_t *err) {
    tsr_rpc_client_t *c = NULL;
    pthread_mutex_lock(&f->cl_mu);
    for (size_t i = 0; i < f->ncl && !c; i++)
        if (strcmp(f->cl[i].addr, addr) == 0) c = f->cl[i].c;
    if (!c) {
        c = tsr_rpc_client_new(addr, err);
        if (c) {
            if (f->ncl == f->capcl) {
                f->capcl = f->capcl ? 2 * f->capcl : 8;
                f->cl = tsr_realloc(f->cl, f->capcl * sizeof(*f->cl));
            }
            f->cl[f->ncl].addr = tsr_strdup(addr);
            f->cl[f->ncl].c = c;
            f->ncl++;
        }
    }
    pthread_mutex_unlock(&f->cl_mu);
    return c;
}

/* Per read: where it went in this attempt. */
typedef struct rstate {
    int partition, worker;
    int retry;                      /* failed in a way a newer table may fix */
    int done;
} rstate_t;

static int64_t remaining(int64_t deadline) {
    if (deadline == INT64_MAX) return INT64_MAX;
    int64_t r = deadline - mono_ms();
    return r > 0 ? r : 0;
}

static void fail_read(tsr_fetcher_t *f, tsr_tile_read_req_t *r, rstate_t *st, int code, const char *msg,
                      tsr_arena_t *arena) {
    r->status = code;
    r->error = tsr_arena_strdup(arena, msg);
    st->done = 1;
    st->retry = 0;
    __atomic_add_fetch(&f->st.read_errors, 1, __ATOMIC_RELAXED);
}

/* One owner's batch of an attempt. */
typedef struct owner {
    size_t *items;                  /* reads sent to it, in request order */
    uint8_t *req;                   /* its ReadPartitionRequest (arena) */
    size_t req_len;
    int call;                       /* index into calls, or -1 */
    int rc;                         /* when call < 0: why it was not called */
    const char *msg;
} owner_t;

/* One attempt, planned: the reads located and grouped by owner, one call per reachable owner
 * in calls[0 .. ncalls) (the caller's arrays of at least nworkers entries; replies initialised),
 * sent with timeout `left`. The same plan is sent blocking (attempt) or as a fan-out on the
 * server's completion queue (the deferred fetch), and its answers mapped by plan_map. */
typedef struct plan {
    size_t nw;
    size_t *count;                  /* reads per worker */
    owner_t *ow;
    tsr_rpc_multi_t *calls;
    tsr_rpc_reply_t *replies;
    size_t ncalls;
    int64_t left;
} plan_t;

/* Locates the reads with !st[i].done against table rt and groups them by owner. Items that may
 * succeed on a newer table are left with retry = 1 and their last error set. */
static void plan_attempt(tsr_fetcher_t *f, tsr_routing_t *rt, tsr_tile_read_req_t *reqs, rstate_t *st, size_t n,
                         int last, int64_t deadline, tsr_arena_t *arena, tsr_rpc_multi_t *calls,
                         tsr_rpc_reply_t *replies, plan_t *p) {
    size_t nw = rt->nworkers;
    size_t *count = tsr_arena_alloc(arena, (nw + 1) * sizeof(size_t));
    memset(count, 0, (nw + 1) * sizeof(size_t));
    tsr_buf_t scratch;
    tsr_buf_init(&scratch);
    for (size_t i = 0; i < n; i++) {
        if (st[i].done) continue;
        st[i].retry = 0;
        tsr_error_t e;
        tsr_error_clear(&e);
        int rc = tsr_routing_locate(rt, reqs[i].gb, reqs[i].key, reqs[i].klen, &st[i].partition, &st[i].worker,
                                    &scratch, &e);
        if (rc == 0) {
            count[st[i].worker]++;
        } else if (rc == TSR_EUNAVAIL && !last) {
            st[i].retry = 1; /* no owner yet: a newer table may have one */
            st[i].worker = -1;
            reqs[i].status = rc;
            reqs[i].error = tsr_arena_strdup(arena, e.msg);
        } else {
            fail_read(f, &reqs[i], &st[i], rc, e.msg, arena);
        }
    }
    tsr_buf_free(&scratch);
    /* one ReadPartition per owner, all at once */
    owner_t *ow = tsr_arena_alloc(arena, (nw + 1) * sizeof *ow);
    size_t ncalls = 0;
    int64_t left = remaining(deadline);
    for (size_t w = 0; w < nw; w++) {
        owner_t *o = &ow[w];
        o->items = NULL;
        o->req = NULL;
        o->req_len = 0;
        o->call = -1;
        o->rc = 0;
        o->msg = NULL;
        if (!count[w]) continue;
        /* the owner's batch */
        o->items = tsr_arena_alloc(arena, count[w] * sizeof(size_t));
        Tessera__V1__ReadPartitionRequest rq;
        tessera__v1__read_partition_request__init(&rq);
        rq.epoch = rt->epoch;
        rq.n_items = 0;
        rq.items = tsr_arena_alloc(arena, count[w] * sizeof(*rq.items));
        for (size_t i = 0; i < n; i++) {
            if (st[i].done || st[i].retry || st[i].worker != (int)w) continue;
            Tessera__V1__ReadItem *it = tsr_arena_alloc(arena, sizeof *it);
            tessera__v1__read_item__init(it);
            it->group_by = (char *)reqs[i].gb;
            it->partition = st[i].partition;
            it->key.data = (uint8_t *)reqs[i].key;
            it->key.len = reqs[i].klen;
            it->at_millis = reqs[i].q;
            o->items[rq.n_items] = i;
            rq.items[rq.n_items++] = it;
        }
        o->req_len = protobuf_c_message_get_packed_size(&rq.base);
        o->req = tsr_arena_alloc(arena, o->req_len ? o->req_len : 1);
        protobuf_c_message_pack(&rq.base, o->req);
        tsr_error_t e;
        tsr_error_clear(&e);
        if (left == 0) {
            o->rc = tsr_error_set(&e, TSR_ETIMEOUT, "deadline exceeded before the read of worker %s",
                                  rt->worker_ids[w]);
            o->msg = tsr_arena_strdup(arena, e.msg);
            continue;
        }
        tsr_rpc_client_t *c = worker_client(f, rt->worker_addrs[w], &e);
        if (!c) {
            o->rc = TSR_EUNAVAIL;
            o->msg = tsr_arena_strdup(arena, e.msg);
            continue;
        }
        calls[ncalls].client = c;
        calls[ncalls].req = o->req;
        calls[ncalls].n = o->req_len;
        calls[ncalls].reply = &replies[ncalls];
        o->call = (int)ncalls++;
    }
    p->nw = nw;
    p->count = count;
    p->ow = ow;
    p->calls = calls;
    p->replies = replies;
    p->ncalls = ncalls;
    p->left = left;
}

/* Maps the answers of a sent plan onto the reads: values, failures, and (unless last) retry = 1
 * for what a newer table may fix (READ_NOT_OWNER, an unreachable owner). */
static void plan_map(tsr_fetcher_t *f, tsr_routing_t *rt, tsr_tile_read_req_t *reqs, rstate_t *st, int last,
                     tsr_arena_t *arena, const plan_t *p) {
    size_t nw = p->nw;
    owner_t *ow = p->ow;
    for (size_t w = 0; w < nw; w++) {
        owner_t *o = &ow[w];
        if (!o->items) continue;
        size_t ni = p->count[w];
        const char *wid = rt->worker_ids[w];
        int rc = o->rc;
        const char *cmsg = o->msg;
        const tsr_buf_t *answer = NULL;
        if (o->call >= 0) {
            rc = p->calls[o->call].rc;
            cmsg = p->calls[o->call].err.msg;
            answer = &p->replies[o->call].body;
        }
        if (rc == TSR_ETIMEOUT) {
            for (size_t k = 0; k < ni; k++)
                fail_read(f, &reqs[o->items[k]], &st[o->items[k]], TSR_ETIMEOUT,
                          tsr_arena_printf(arena, "worker %s: no answer within the deadline", wid), arena);
            continue;
        }
        if (rc) {
            /* unreachable (or gone): a newer table may route elsewhere */
            int retry = rc == TSR_EUNAVAIL && !last;
            const char *msg = tsr_arena_printf(arena, "worker %s (%s): %.390s", wid, rt->worker_addrs[w], cmsg);
            for (size_t k = 0; k < ni; k++) {
                size_t i = o->items[k];
                if (retry) {
                    st[i].retry = 1;
                    reqs[i].status = rc;
                    reqs[i].error = msg;
                } else {
                    fail_read(f, &reqs[i], &st[i], rc, msg, arena);
                }
            }
            continue;
        }
        tsr_error_t e;
        Tessera__V1__ReadPartitionResponse *rs =
            tsr_pb_unpack(&tessera__v1__read_partition_response__descriptor, answer->data, answer->len, arena, &e);
        if (rs && rs->n_results != ni) {
            tsr_error_set(&e, TSR_ECORRUPT, "%zu results for %zu items", rs->n_results, ni);
            rs = NULL;
        }
        for (size_t k = 0; k < ni; k++) {
            size_t i = o->items[k];
            tsr_tile_read_req_t *r = &reqs[i];
            if (!rs) {
                fail_read(f, r, &st[i], TSR_ECORRUPT, tsr_arena_printf(arena, "worker %s: bad answer: %s", wid, e.msg),
                          arena);
                continue;
            }
            const Tessera__V1__ReadResult *res = rs->results[k];
            if (res->status == TESSERA__V1__READ_STATUS__READ_NOT_OWNER) {
                const char *msg = tsr_arena_printf(arena, "partition %d of %s: worker %s does not own it (routing epoch %lld)",
                                                   st[i].partition, r->gb, wid, (long long)rt->epoch);
                if (last) {
                    fail_read(f, r, &st[i], TSR_EUNAVAIL, msg, arena);
                } else {
                    st[i].retry = 1;
                    r->status = TSR_EUNAVAIL;
                    r->error = msg;
                }
                continue;
            }
            if (res->status != TESSERA__V1__READ_STATUS__READ_OK) {
                fail_read(f, r, &st[i], TSR_EIO,
                          tsr_arena_printf(arena, "worker %s: %s", wid, res->error && res->error[0] ? res->error : "read error"),
                          arena);
                continue;
            }
            if (res->n_values == 0) { /* nothing stored for the key (entity GroupBys): nulls */
                r->status = 0;
                r->error = NULL;
                st[i].done = 1;
                continue;
            }
            if (res->n_values != r->nout) {
                fail_read(f, r, &st[i], TSR_ECORRUPT,
                          tsr_arena_printf(arena, "worker %s answered %zu values for %s, expected %zu", wid, res->n_values,
                                           r->gb, r->nout),
                          arena);
                continue;
            }
            int bad = 0;
            for (size_t v = 0; v < r->nout && !bad; v++) bad = tsr_pb_value_get(res->values[v], arena, &r->out[v]) != 0;
            if (bad) {
                for (size_t v = 0; v < r->nout; v++) r->out[v] = tsr_value_null();
                fail_read(f, r, &st[i], TSR_ECORRUPT, tsr_arena_printf(arena, "worker %s: a value nests too deep", wid),
                          arena);
                continue;
            }
            r->status = 0;
            r->error = NULL;
            st[i].done = 1;
        }
    }
}

/* One blocking attempt: plan, tsr_rpc_client_call_all (the replies come back to this thread),
 * map. */
static void attempt(tsr_fetcher_t *f, tsr_routing_t *rt, tsr_tile_read_req_t *reqs, rstate_t *st, size_t n,
                    int last, int64_t deadline, tsr_arena_t *arena) {
    size_t nw = rt->nworkers;
    tsr_rpc_multi_t *calls = tsr_calloc(nw + 1, sizeof *calls);
    tsr_rpc_reply_t *replies = tsr_calloc(nw + 1, sizeof *replies);
    for (size_t w = 0; w <= nw; w++) tsr_rpc_reply_init(&replies[w]);
    plan_t p;
    plan_attempt(f, rt, reqs, st, n, last, deadline, arena, calls, replies, &p);
    tsr_rpc_call_opts_t co;
    memset(&co, 0, sizeof co);
    co.timeout_ms = p.left;         /* the caller's remaining deadline reaches the workers */
    tsr_rpc_client_call_all(M_READ, calls, p.ncalls, &co);
    __atomic_add_fetch(&f->st.read_rpcs, p.ncalls, __ATOMIC_RELAXED);
    plan_map(f, rt, reqs, st, last, arena, &p);
    for (size_t w = 0; w <= nw; w++) tsr_rpc_reply_free(&replies[w]);
    free(replies);
    free(calls);
}

/* After a first attempt: counts the reads left to retry; with any, waits up to retry_wait_ms
 * (within the deadline) for a table newer than *rt (which it then takes: *rt is replaced, the
 * old one unreferenced) and makes the last, blocking attempt. */
static void retry_rest(tsr_fetcher_t *f, tsr_routing_t **rt, tsr_tile_read_req_t *reqs, rstate_t *st, size_t n,
                       int64_t deadline, tsr_arena_t *arena) {
    size_t nretry = 0;
    for (size_t i = 0; i < n; i++) nretry += !st[i].done;
    if (!nretry) return;
    __atomic_add_fetch(&f->st.read_retries, nretry, __ATOMIC_RELAXED);
    int64_t wait = remaining(deadline);
    if (wait > f->o.retry_wait_ms) wait = f->o.retry_wait_ms;
    tsr_routing_t *next = rt_wait_newer(f, *rt, wait);
    if (next) {
        tsr_routing_unref(*rt);
        *rt = next;
    }
    attempt(f, *rt, reqs, st, n, 1, deadline, arena);
}

/* tsr_tile_read_many_fn of the serving: locate, group by owner, fan out, retry once. */
static int read_many(void *ud, tsr_tile_read_req_t *reqs, size_t n, int64_t timeout_ms, tsr_arena_t *arena,
                     tsr_error_t *err) {
    tsr_fetcher_t *f = ud;
    if (timeout_ms >= INT64_MAX / 2) timeout_ms = f->o.default_timeout_ms;
    int64_t deadline = mono_ms() + timeout_ms;
    tsr_routing_t *rt = rt_get(f);
    if (!rt) return tsr_error_set(err, TSR_EUNAVAIL, "no routing table yet (is a coordinator reachable?)");
    rstate_t *st = tsr_arena_alloc(arena, (n ? n : 1) * sizeof(rstate_t));
    memset(st, 0, (n ? n : 1) * sizeof(rstate_t));
    attempt(f, rt, reqs, st, n, 0, deadline, arena);
    retry_rest(f, &rt, reqs, st, n, deadline, arena);
    tsr_routing_unref(rt);
    return 0;
}

/* ------------------------------------------------------------------------------------------
 * FeatureService */

static void arena_destroy(void *p) {
    tsr_arena_free(p);
    free(p);
}

/* The calling CQ thread's arena, reset to fit a call like its last (tsr_arena_reset_fit). */
static tsr_arena_t *thread_arena(tsr_fetcher_t *f) {
    tsr_arena_t *a = pthread_getspecific(f->arena_key);
    if (!a) {
        a = tsr_malloc(sizeof *a);
        tsr_arena_init(a, 1 << 16);
        pthread_setspecific(f->arena_key, a);
    }
    tsr_arena_reset_fit(a, ARENA_KEEP_MAX);
    return a;
}

/* ---- deferred fetches: pass 1 on the CQ thread, the ReadPartitions as a fan-out on the
 * server's completion queue (tsr_rpc_call_fanout), pass 2 and the answer on the CQ thread that
 * dequeues the last reply. No thread waits while the reads are out. */

#define DF_POOL_MAX 64

typedef struct dfetch {
    tsr_fetcher_t *f;
    tsr_rpc_call_t *call;
    tsr_arena_t arena;              /* the fetch's own: the CQ thread's is reset by its next call */
    tsr_serving_req_t *sr;
    tsr_tile_read_req_t *reads;
    size_t n;
    rstate_t *st;
    tsr_routing_t *rt;              /* referenced */
    int64_t deadline;
    plan_t plan;
    tsr_rpc_multi_t *calls;         /* cap entries, kept across uses */
    tsr_rpc_reply_t *replies;       /* cap entries, initialised, kept (their buffers reused) */
    size_t cap;
    tsr_buf_t resp;
    struct dfetch *next;
} dfetch_t;

static dfetch_t *df_get(tsr_fetcher_t *f) {
    pthread_mutex_lock(&f->df_mu);
    dfetch_t *d = f->df_free;
    if (d) {
        f->df_free = d->next;
        f->df_pooled--;
    }
    pthread_mutex_unlock(&f->df_mu);
    if (!d) {
        d = tsr_calloc(1, sizeof *d);
        d->f = f;
        tsr_arena_init(&d->arena, 1 << 16);
        tsr_buf_init(&d->resp);
    }
    tsr_arena_reset_fit(&d->arena, ARENA_KEEP_MAX);
    d->call = NULL;
    d->sr = NULL;
    d->rt = NULL;
    d->next = NULL;
    return d;
}

static void df_destroy(dfetch_t *d) {
    for (size_t i = 0; i < d->cap; i++) tsr_rpc_reply_free(&d->replies[i]);
    free(d->replies);
    free(d->calls);
    tsr_buf_free(&d->resp);
    tsr_arena_free(&d->arena);
    free(d);
}

/* Releases the fetch's references and returns the record to the pool. */
static void df_put(dfetch_t *d) {
    tsr_fetcher_t *f = d->f;
    tsr_serving_fetch_abandon(d->sr); /* no-op once finished */
    d->sr = NULL;
    tsr_routing_unref(d->rt);
    d->rt = NULL;
    d->call = NULL;
    if (d->resp.cap > ARENA_KEEP_MAX) {
        tsr_buf_free(&d->resp);
        tsr_buf_init(&d->resp);
    }
    pthread_mutex_lock(&f->df_mu);
    int keep = f->df_pooled < DF_POOL_MAX;
    if (keep) {
        d->next = f->df_free;
        f->df_free = d;
        f->df_pooled++;
    }
    pthread_mutex_unlock(&f->df_mu);
    if (!keep) df_destroy(d);
}

/* Pass 2 over the answered reads, then the call's answer; releases d. */
static void df_finish(dfetch_t *d) {
    tsr_error_t err;
    tsr_error_clear(&err);
    tsr_buf_clear(&d->resp);
    int rc = tsr_serving_fetch_finish(d->sr, &d->resp, &err);
    d->sr = NULL;
    tsr_rpc_call_t *call = d->call;
    tsr_rpc_call_finish(call, rc, d->resp.data, d->resp.len, rc ? err.msg : NULL);
    df_put(d);
}

/* Offload thread: the retry of read_many (wait briefly for a newer table, one last blocking
 * attempt), then the answer. */
static void df_retry(void *ud) {
    dfetch_t *d = ud;
    retry_rest(d->f, &d->rt, d->reads, d->st, d->n, d->deadline, &d->arena);
    df_finish(d);
}

/* The fan-out's done callback (a CQ thread), or called in place when nothing was sent: maps the
 * answers as attempt does; what needs the retry goes to an offload thread, the rest is
 * answered here. */
static void df_done(void *ud) {
    dfetch_t *d = ud;
    tsr_fetcher_t *f = d->f;
    plan_map(f, d->rt, d->reads, d->st, 0, &d->arena, &d->plan);
    for (size_t i = 0; i < d->n; i++) {
        if (d->st[i].done) continue;
        /* the blocking retry, off the CQ thread; when it cannot be queued (server stopping, a
         * full queue) the reads fail with the error they have */
        if (!tsr_rpc_call_cancelled(d->call) && tsr_rpc_call_offload(d->call, df_retry, d) == TSR_OK) return;
        break;
    }
    df_finish(d);
}

/* An inline fetch: begin (pass 1), plan the first attempt, start the fan-out and return
 * TSR_RPC_DEFER; or an answer / error right away when there is nothing to defer (no routing
 * table yet: the blocking path, which fails the reads at once). */
static int fetch_deferred(tsr_fetcher_t *f, tsr_rpc_call_t *call, const uint8_t *req, size_t n, int join,
                          int64_t left, tsr_buf_t *resp, tsr_error_t *err) {
    tsr_routing_t *rt = rt_get(f);
    if (!rt) return tsr_serving_fetch_pb(f->serving, join, req, n, left, resp, thread_arena(f), err);
    dfetch_t *d = df_get(f);
    d->rt = rt;
    int rc = tsr_serving_fetch_begin(f->serving, join, req, n, left, &d->arena, &d->sr, err);
    if (rc) {
        df_put(d);
        return rc;
    }
    d->reads = tsr_serving_req_reads(d->sr, &d->n);
    int64_t timeout = tsr_serving_req_timeout(d->sr);
    if (timeout >= INT64_MAX / 2) timeout = f->o.default_timeout_ms; /* as read_many */
    d->deadline = mono_ms() + timeout;
    d->st = tsr_arena_alloc(&d->arena, (d->n ? d->n : 1) * sizeof(rstate_t));
    memset(d->st, 0, (d->n ? d->n : 1) * sizeof(rstate_t));
    size_t need = rt->nworkers + 1;
    if (d->cap < need) {
        d->calls = tsr_realloc(d->calls, need * sizeof *d->calls);
        d->replies = tsr_realloc(d->replies, need * sizeof *d->replies);
        for (size_t i = d->cap; i < need; i++) tsr_rpc_reply_init(&d->replies[i]);
        d->cap = need;
    }
    memset(d->calls, 0, need * sizeof *d->calls);
    d->call = call;
    plan_attempt(f, rt, d->reads, d->st, d->n, 0, d->deadline, &d->arena, d->calls, d->replies, &d->plan);
    if (d->plan.ncalls == 0) { /* nothing to send (no reads, or none located) */
        df_done(d);
        return TSR_RPC_DEFER;
    }
    tsr_rpc_call_opts_t co;
    memset(&co, 0, sizeof co);
    co.timeout_ms = d->plan.left;   /* the caller's remaining deadline reaches the workers */
    size_t ncalls = d->plan.ncalls;
    rc = tsr_rpc_call_fanout(call, M_READ, d->calls, ncalls, &co, df_done, d);
    if (rc != TSR_OK) { /* the server is stopping */
        df_put(d);
        return tsr_error_set(err, rc, "server shutting down");
    }
    /* d may be finished and reused already */
    __atomic_add_fetch(&f->st.read_rpcs, ncalls, __ATOMIC_RELAXED);
    return TSR_RPC_DEFER;
}

/* A fetch starts on the CQ thread that received it — no hand-off to a pool thread (a futex wake
 * per call, tens of microseconds on a busy VM). Inline, the fetch runs pass 1, sends its
 * ReadPartitions as a fan-out on the server's own completion queue and returns: no thread
 * waits for the workers, and the CQ thread that dequeues the last reply runs pass 2 and
 * answers (fetch_deferred). A fetch of up to SMALL_ROWS rows always does so: it holds a CQ
 * thread for tens of microseconds at a time, like an inline fetch of `tessera serve`, so one
 * CQ thread serves them all. A larger one does so while at most rpc_threads - 1 are inside a
 * handler, so one CQ thread always stays free to accept calls and answer health checks; past
 * that it is offloaded to the server's offload threads (fetch_threads of them; a full queue
 * answers UNAVAILABLE "server overloaded"). Offloaded fetches, and retries, block as before
 * (read_many). */
static int fetch_call(tsr_fetcher_t *f, tsr_rpc_call_t *call, const uint8_t *req, size_t n, int join,
                      tsr_buf_t *resp, tsr_error_t *err) {
    int offloaded = tsr_rpc_call_offloaded(call);
    int counted = !offloaded && tsr_serving_request_rows(req, n) > SMALL_ROWS;
    if (counted && __atomic_add_fetch(&f->inline_busy, 1, __ATOMIC_ACQ_REL) >= f->o.rpc_threads) {
        __atomic_sub_fetch(&f->inline_busy, 1, __ATOMIC_ACQ_REL);
        return TSR_RPC_OFFLOAD;
    }
    int64_t left = tsr_rpc_call_remaining_ms(call);
    int rc;
    if (left == 0)
        rc = tsr_error_set(err, TSR_ETIMEOUT, "deadline exceeded before the fetch began");
    else if (offloaded)
        rc = tsr_serving_fetch_pb(f->serving, join, req, n, left, resp, thread_arena(f), err);
    else
        rc = fetch_deferred(f, call, req, n, join, left, resp, err);
    if (counted) __atomic_sub_fetch(&f->inline_busy, 1, __ATOMIC_ACQ_REL);
    return rc;
}

static int h_fetch_join(void *ud, tsr_rpc_call_t *call, const uint8_t *req, size_t n, tsr_buf_t *resp,
                        tsr_error_t *err) {
    return fetch_call(ud, call, req, n, 1, resp, err);
}

static int h_fetch_gb(void *ud, tsr_rpc_call_t *call, const uint8_t *req, size_t n, tsr_buf_t *resp,
                      tsr_error_t *err) {
    return fetch_call(ud, call, req, n, 0, resp, err);
}

/* ------------------------------------------------------------------------------------------
 * metrics */

static void collect(void *ud, tsr_metrics_t *m) {
    (void)m;
    tsr_fetcher_t *f = ud;
    tsr_serving_stats_t ss;
    tsr_serving_stats(f->serving, &ss);
    tsr_counter_add(f->c_requests, ss.requests - f->last_serving.requests);
    tsr_counter_add(f->c_rows, ss.rows - f->last_serving.rows);
    tsr_counter_add(f->c_row_fail, ss.row_failures - f->last_serving.row_failures);
    tsr_counter_add(f->c_part_err, ss.part_errors - f->last_serving.part_errors);
    f->last_serving = ss;
    tsr_fetcher_stats_t st;
    tsr_fetcher_stats(f, &st);
    tsr_counter_add(f->c_rpcs, st.read_rpcs - tsr_counter_get(f->c_rpcs));
    tsr_counter_add(f->c_retries, st.read_retries - tsr_counter_get(f->c_retries));
    tsr_counter_add(f->c_read_err, st.read_errors - tsr_counter_get(f->c_read_err));
    tsr_gauge_set(f->g_epoch, (double)st.epoch);
    tsr_gauge_set(f->g_revision, (double)st.revision);
    tsr_gauge_set(f->g_items, (double)st.items);
}

static int metrics_init(tsr_fetcher_t *f, tsr_error_t *err) {
    tsr_metrics_t *m = f->metrics = tsr_metrics_new();
    f->c_requests = tsr_metrics_counter(m, "tessera_fetch_requests_total", "fetch requests", err);
    f->c_rows = tsr_metrics_counter(m, "tessera_fetch_rows_total", "rows fetched", err);
    f->c_row_fail = tsr_metrics_counter(m, "tessera_fetch_row_failures_total", "rows answered with a Failure status", err);
    f->c_part_err = tsr_metrics_counter(m, "tessera_fetch_part_errors_total",
                                        "Join parts answered with an <part>_exception", err);
    f->c_rpcs = tsr_metrics_counter(m, "tessera_fetcher_read_rpcs_total", "ReadPartition calls sent to workers", err);
    f->c_retries = tsr_metrics_counter(m, "tessera_fetcher_read_retries_total",
                                       "reads retried after READ_NOT_OWNER or an unreachable owner", err);
    f->c_read_err = tsr_metrics_counter(m, "tessera_fetcher_read_errors_total", "reads that failed", err);
    f->g_epoch = tsr_metrics_gauge(m, "tessera_fetcher_routing_epoch", "epoch of the routing table (-1: none)", err);
    f->g_revision = tsr_metrics_gauge(m, "tessera_fetcher_routing_revision", "revision of the routing table", err);
    f->g_items = tsr_metrics_gauge(m, "tessera_configs", "configs served", err);
    if (!f->c_requests || !f->c_rows || !f->c_row_fail || !f->c_part_err || !f->c_rpcs || !f->c_retries ||
        !f->c_read_err || !f->g_epoch || !f->g_revision || !f->g_items)
        return TSR_EINTERNAL;
    tsr_metrics_on_collect(m, collect, f);
    return 0;
}

void tsr_fetcher_stats(tsr_fetcher_t *f, tsr_fetcher_stats_t *out) {
    memset(out, 0, sizeof *out);
    pthread_mutex_lock(&f->rt_mu);
    out->epoch = f->rt ? f->rt->epoch : -1;
    out->revision = f->rt ? f->rt->revision : -1;
    pthread_mutex_unlock(&f->rt_mu);
    out->tables = __atomic_load_n(&f->st.tables, __ATOMIC_RELAXED);
    out->read_rpcs = __atomic_load_n(&f->st.read_rpcs, __ATOMIC_RELAXED);
    out->read_retries = __atomic_load_n(&f->st.read_retries, __ATOMIC_RELAXED);
    out->read_errors = __atomic_load_n(&f->st.read_errors, __ATOMIC_RELAXED);
    out->items = tsr_serving_count(f->serving);
}

/* ------------------------------------------------------------------------------------------
 * start / stop */

int tsr_fetcher_grpc_port(const tsr_fetcher_t *f) { return tsr_rpc_server_port(f->rpc); }
int tsr_fetcher_http_port(const tsr_fetcher_t *f) { return f->http ? tsr_http_server_port(f->http) : -1; }

int tsr_fetcher_start(const tsr_fetcher_opts_t *o, tsr_fetcher_t **out, tsr_error_t *err) {
    *out = NULL;
    if (!o->coordinators || !o->coordinators[0]) return tsr_error_set(err, TSR_EINVAL, "no coordinator address");
    if (!o->listen || !strchr(o->listen, ':'))
        return tsr_error_set(err, TSR_EINVAL, "listen address must be HOST:PORT, got '%s'", o->listen ? o->listen : "");
    tsr_fetcher_t *f = tsr_calloc(1, sizeof(*f));
    f->o = *o;
    if (f->o.fetch_threads <= 0) f->o.fetch_threads = 8;
    if (f->o.rpc_threads <= 0) f->o.rpc_threads = CQ_THREADS;
    if (f->o.retry_wait_ms <= 0) f->o.retry_wait_ms = 200;
    if (f->o.watch_renew_ms <= 0) f->o.watch_renew_ms = 3000;
    if (f->o.default_timeout_ms <= 0) f->o.default_timeout_ms = 10000;
    f->coord_list = tsr_strdup(o->coordinators);
    f->listen = tsr_strdup(o->listen);
    f->warehouse = o->warehouse ? tsr_strdup(o->warehouse) : NULL;
    if (o->fetcher_id && o->fetcher_id[0]) {
        f->id = tsr_strdup(o->fetcher_id);
    } else {
        char id[64];
        snprintf(id, sizeof id, "fetcher-%ld", (long)getpid());
        f->id = tsr_strdup(id);
    }
    f->host = tsr_strdup(o->listen);
    *strrchr(f->host, ':') = 0;
    for (char *save = NULL, *p = strtok_r(f->coord_list, ",", &save); p && f->ncoords < MAX_COORDS;
         p = strtok_r(NULL, ",", &save))
        if (*p) f->coords[f->ncoords++] = p;
    pthread_mutex_init(&f->rt_mu, NULL);
    pthread_cond_init(&f->rt_cv, NULL);
    pthread_mutex_init(&f->cl_mu, NULL);
    pthread_mutex_init(&f->df_mu, NULL);
    f->serving = tsr_serving_new_many(read_many, f);
    f->arena_key_made = pthread_key_create(&f->arena_key, arena_destroy) == 0;
    int rc = f->ncoords ? 0 : tsr_error_set(err, TSR_EINVAL, "no coordinator address in '%s'", o->coordinators);
    if (rc == 0 && !f->arena_key_made) rc = tsr_error_set(err, TSR_EINTERNAL, "cannot create a thread key");
    if (rc == 0) rc = metrics_init(f, err);
    if (rc == 0) {
        tsr_rpc_server_opts_t ro;
        memset(&ro, 0, sizeof ro);
        ro.cq_threads = f->o.rpc_threads;
        ro.offload_threads = f->o.fetch_threads;
        ro.offload_queue = QUEUE_MAX;
        f->rpc = tsr_rpc_server_new(f->listen, &ro, err);
        if (!f->rpc) rc = err && err->code ? err->code : TSR_EIO;
    }
    if (rc == 0) rc = tsr_rpc_server_add_unary(f->rpc, "/tessera.v1.FeatureService/FetchJoin", h_fetch_join, f, err);
    if (rc == 0) rc = tsr_rpc_server_add_unary(f->rpc, "/tessera.v1.FeatureService/FetchGroupBy", h_fetch_gb, f, err);
    if (rc == 0) rc = tsr_rpc_health_register(f->rpc, err);
    if (rc == 0) {
        tsr_rpc_health_set(f->rpc, "", TSR_HEALTH_NOT_SERVING);
        rc = tsr_rpc_server_start(f->rpc, err);
    }
    if (rc == 0 && o->http_port >= 0) {
        tsr_http_options_t ho;
        memset(&ho, 0, sizeof ho);
        ho.bind_addr = f->host;
        ho.port = (uint16_t)o->http_port;
        ho.metrics = f->metrics;
        f->http = tsr_http_server_new(&ho);
        rc = tsr_http_serve_fetch(f->http, tsr_serving_fetch_http, f->serving, err);
        if (rc == 0) rc = tsr_http_serve_metrics(f->http, f->metrics, err);
        if (rc == 0) rc = tsr_http_serve_health(f->http, err);
        if (rc == 0) tsr_http_server_set_ready(f->http, 0, "no routing table yet");
        if (rc == 0) rc = tsr_http_server_start(f->http, err);
    }
    if (rc == 0) {
        if (pthread_create(&f->watcher, NULL, watch_main, f) != 0)
            rc = tsr_error_set(err, TSR_EINTERNAL, "cannot start the routing watcher");
        else f->watcher_on = 1;
    }
    if (rc) {
        tsr_fetcher_stop(f);
        return rc;
    }
    *out = f;
    return 0;
}

void tsr_fetcher_stop(tsr_fetcher_t *f) {
    if (!f) return;
    /* the watcher stops installing (the last table keeps serving the drain) */
    pthread_mutex_lock(&f->rt_mu);
    f->stop = 1;
    pthread_cond_broadcast(&f->rt_cv);
    pthread_mutex_unlock(&f->rt_mu);
    if (f->rpc) tsr_rpc_health_set(f->rpc, "", TSR_HEALTH_NOT_SERVING);
    if (f->http) {
        tsr_http_server_set_ready(f->http, 0, "shutting down");
        tsr_http_server_stop(f->http, 5000);
    }
    /* finishes the calls in flight, offloaded ones too, and joins the CQ and offload threads:
     * their arenas are freed at their exit */
    tsr_rpc_server_free(f->rpc);
    f->rpc = NULL;
    while (f->df_free) { /* every deferred fetch is finished (the server waited for them) */
        dfetch_t *d = f->df_free;
        f->df_free = d->next;
        df_destroy(d);
    }
    pthread_mutex_destroy(&f->df_mu);
    if (f->arena_key_made) pthread_key_delete(f->arena_key);
    if (f->watcher_on) pthread_join(f->watcher, NULL);
    tsr_http_server_free(f->http);
    f->http = NULL;
    tsr_serving_free(f->serving);
    for (size_t i = 0; i < f->ncl; i++) {
        tsr_rpc_client_free(f->cl[i].c);
        free(f->cl[i].addr);
    }
    free(f->cl);
    for (size_t i = 0; i < f->ninst; i++) free(f->inst[i].name);
    free(f->inst);
    tsr_routing_unref(f->rt);
    tsr_metrics_free(f->metrics);
    pthread_mutex_destroy(&f->rt_mu);
    pthread_cond_destroy(&f->rt_cv);
    pthread_mutex_destroy(&f->cl_mu);
    free(f->coord_list);
    free(f->listen);
    free(f->warehouse);
    free(f->id);
    free(f->host);
    free(f);
}
