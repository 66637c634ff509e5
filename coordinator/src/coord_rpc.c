/*
 * coord_rpc.c — gRPC handlers of the coordinator (coord_rpc.h has the design). Upload and
 * Backfill are deferred: the core's job callback finishes the call.
 */
#include "tsr/coord_rpc.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cluster.pb-c.h"
#include "tessera.pb-c.h"
#include "tsr/config.h"
#include "tsr/pbvalue.h"

#define MAX_UPLOAD_MS (3600 * 1000LL)
#define MAX_BACKFILL_MS (24 * 3600 * 1000LL)

struct tsr_coord_rpc {
    tsr_coord_t *c;
    const char *version;
    int64_t started_ms;
    int stopping;                   /* atomic */
};

static int64_t wall_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

tsr_coord_rpc_t *tsr_coord_rpc_new(tsr_coord_t *c, const char *version) {
    tsr_coord_rpc_t *r = tsr_calloc(1, sizeof *r);
    r->c = c;
    r->version = version;
    r->started_ms = wall_ms();
    return r;
}

void tsr_coord_rpc_stop(tsr_coord_rpc_t *r) { __atomic_store_n(&r->stopping, 1, __ATOMIC_RELEASE); }

void tsr_coord_rpc_free(tsr_coord_rpc_t *r) { free(r); }

/* A failed call: a follower's redirect carries the leader's address as metadata. */
static int fail(tsr_coord_rpc_t *r, tsr_rpc_call_t *call, int rc) {
    if (rc == TSR_EUNAVAIL) {
        char addr[256];
        tsr_coord_leader_addr(r->c, addr, sizeof addr);
        if (addr[0]) tsr_rpc_call_add_metadata(call, "tessera-leader", addr, strlen(addr), NULL);
    }
    return rc;
}

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

#define UNPACK(type, desc)                                                  \
    tsr_arena_t a;                                                          \
    tsr_arena_init(&a, 0);                                                  \
    type *rq = tsr_pb_unpack(&desc, req, n, &a, err);                       \
    if (!rq) {                                                              \
        tsr_arena_free(&a);                                                 \
        return TSR_EINVAL;                                                  \
    }

/* ------------------------------------------------------------------------------------------
 * CoordinatorService */

static int h_register(void *ud, tsr_rpc_call_t *call, const uint8_t *req, size_t n, tsr_buf_t *resp,
                      tsr_error_t *err) {
    tsr_coord_rpc_t *r = ud;
    UNPACK(Tessera__V1__RegisterWorkerRequest, tessera__v1__register_worker_request__descriptor);
    Tessera__V1__RegisterWorkerResponse out;
    tessera__v1__register_worker_response__init(&out);
    int rc = tsr_coord_register_worker(r->c, rq->worker_id, rq->address, rq->started_at_millis, &out.lease_id,
                                       &out.lease_ttl_ms, &out.epoch, err);
    if (rc == 0) tsr_pb_pack(&out.base, resp);
    tsr_arena_free(&a);
    return rc ? fail(r, call, rc) : 0;
}

static int h_keepalive(void *ud, tsr_rpc_call_t *call, const uint8_t *req, size_t n, tsr_buf_t *resp,
                       tsr_error_t *err) {
    tsr_coord_rpc_t *r = ud;
    UNPACK(Tessera__V1__KeepAliveRequest, tessera__v1__keep_alive_request__descriptor);
    tsr_coord_pstate_t *ps = tsr_arena_alloc(&a, (rq->n_partitions ? rq->n_partitions : 1) * sizeof *ps);
    for (size_t i = 0; i < rq->n_partitions; i++) {
        const Tessera__V1__PartitionState *p = rq->partitions[i];
        ps[i].group_by = p->group_by ? p->group_by : "";
        ps[i].partition = p->partition;
        ps[i].batch_end_ms = p->batch_end_millis;
        ps[i].events = p->events;
        ps[i].lag = p->lag;
        ps[i].next_offset = p->next_offset;
    }
    Tessera__V1__KeepAliveResponse out;
    tessera__v1__keep_alive_response__init(&out);
    int rc = tsr_coord_keepalive(r->c, rq->worker_id, rq->lease_id, rq->epoch, ps, rq->n_partitions, &out.lease_ttl_ms,
                                 &out.epoch, err);
    if (rc == 0) tsr_pb_pack(&out.base, resp);
    tsr_arena_free(&a);
    return rc ? fail(r, call, rc) : 0;
}

static int h_report(void *ud, tsr_rpc_call_t *call, const uint8_t *req, size_t n, tsr_buf_t *resp,
                    tsr_error_t *err) {
    tsr_coord_rpc_t *r = ud;
    UNPACK(Tessera__V1__ReportShardRequest, tessera__v1__report_shard_request__descriptor);
    int rc = tsr_coord_report_shard(r->c, rq->worker_id, rq->job_id, rq->shard, rq->attempt, rq->ok, rq->error,
                                    rq->keys, rq->epoch, err);
    if (rc == 0) {
        Tessera__V1__ReportShardResponse out;
        tessera__v1__report_shard_response__init(&out);
        tsr_pb_pack(&out.base, resp);
    }
    tsr_arena_free(&a);
    return rc ? fail(r, call, rc) : 0;
}

/* Streams snapshots from snap() until the call ends, the server stops or we stop leading. */
static int stream_snapshots(tsr_coord_rpc_t *r, tsr_rpc_call_t *call, const char *worker, tsr_error_t *err) {
    tsr_buf_t b;
    tsr_buf_init(&b);
    int64_t sent = -1;
    int rc = 0;
    while (!tsr_rpc_call_cancelled(call) && !__atomic_load_n(&r->stopping, __ATOMIC_ACQUIRE)) {
        int64_t rev = tsr_coord_revision(r->c);
        if (rev != sent) {
            tsr_buf_clear(&b);
            rc = worker ? tsr_coord_assignment(r->c, worker, &b, &rev, err) : tsr_coord_routing(r->c, &b, &rev, err);
            if (rc) {
                rc = fail(r, call, rc);
                break;
            }
            if (tsr_rpc_call_send(call, b.data, b.len) != 0) break;
            sent = rev;
        }
        tsr_coord_wait(r->c, sent, 1000);
    }
    tsr_buf_free(&b);
    if (rc == 0 && __atomic_load_n(&r->stopping, __ATOMIC_ACQUIRE))
        rc = tsr_error_set(err, TSR_EUNAVAIL, "the coordinator is shutting down");
    return rc;
}

static int h_watch_assign(void *ud, tsr_rpc_call_t *call, const uint8_t *req, size_t n, tsr_error_t *err) {
    tsr_coord_rpc_t *r = ud;
    UNPACK(Tessera__V1__WatchAssignmentsRequest, tessera__v1__watch_assignments_request__descriptor);
    int rc;
    if (!rq->worker_id || !rq->worker_id[0])
        rc = tsr_error_set(err, TSR_EINVAL, "WatchAssignmentsRequest.worker_id is empty");
    else
        rc = stream_snapshots(r, call, rq->worker_id, err);
    tsr_arena_free(&a);
    return rc;
}

static int h_watch_routing(void *ud, tsr_rpc_call_t *call, const uint8_t *req, size_t n, tsr_error_t *err) {
    tsr_coord_rpc_t *r = ud;
    UNPACK(Tessera__V1__WatchRoutingRequest, tessera__v1__watch_routing_request__descriptor);
    (void)rq;
    int rc = stream_snapshots(r, call, NULL, err);
    tsr_arena_free(&a);
    return rc;
}

/* ------------------------------------------------------------------------------------------
 * AdminService */

static int h_apply(void *ud, tsr_rpc_call_t *call, const uint8_t *req, size_t n, tsr_buf_t *resp,
                   tsr_error_t *err) {
    tsr_coord_rpc_t *r = ud;
    UNPACK(Tessera__V1__ApplyConfigRequest, tessera__v1__apply_config_request__descriptor);
    int rc = 0;
    if (!rq->config_json || !rq->config_json[0])
        rc = tsr_error_set(err, TSR_EINVAL, "ApplyConfigRequest.config_json is empty");
    tsr_reg_entry_t e;
    memset(&e, 0, sizeof e);
    int created = 0, unchanged = 0;
    const char *label = rq->source_name && rq->source_name[0] ? rq->source_name : "config";
    if (rc == 0)
        rc = tsr_coord_apply(r->c, rq->config_json, strlen(rq->config_json), label, rq->dry_run, &e, &created,
                             &unchanged, err);
    if (rc == 0) {
        Tessera__V1__ApplyConfigResponse out;
        tessera__v1__apply_config_response__init(&out);
        out.config = summary(&e, &a);
        out.created = created;
        out.unchanged = unchanged;
        tsr_pb_pack(&out.base, resp);
    }
    tsr_reg_entry_free(&e);
    tsr_arena_free(&a);
    return rc ? fail(r, call, rc) : 0;
}

static int h_get(void *ud, tsr_rpc_call_t *call, const uint8_t *req, size_t n, tsr_buf_t *resp,
                 tsr_error_t *err) {
    tsr_coord_rpc_t *r = ud;
    UNPACK(Tessera__V1__GetConfigRequest, tessera__v1__get_config_request__descriptor);
    tsr_reg_entry_t e;
    int rc = tsr_coord_get_config(r->c, rq->name ? rq->name : "", &e, err);
    if (rc == 0) {
        Tessera__V1__GetConfigResponse out;
        tessera__v1__get_config_response__init(&out);
        out.config = summary(&e, &a);
        out.config_json = e.text;
        tsr_pb_pack(&out.base, resp);
        tsr_reg_entry_free(&e);
    }
    tsr_arena_free(&a);
    return rc ? fail(r, call, rc) : 0;
}

static int h_list(void *ud, tsr_rpc_call_t *call, const uint8_t *req, size_t n, tsr_buf_t *resp,
                  tsr_error_t *err) {
    tsr_coord_rpc_t *r = ud;
    UNPACK(Tessera__V1__ListConfigsRequest, tessera__v1__list_configs_request__descriptor);
    int kind = rq->kind == TESSERA__V1__CONFIG_KIND__GROUP_BY        ? TSR_CONF_GROUP_BY
               : rq->kind == TESSERA__V1__CONFIG_KIND__JOIN          ? TSR_CONF_JOIN
               : rq->kind == TESSERA__V1__CONFIG_KIND__STAGING_QUERY ? TSR_CONF_STAGING_QUERY
                                                                     : 0;
    tsr_reg_entry_t *v;
    size_t nv;
    int rc = tsr_coord_list_configs(r->c, kind, &v, &nv, err);
    if (rc == 0) {
        Tessera__V1__ListConfigsResponse out;
        tessera__v1__list_configs_response__init(&out);
        out.configs = tsr_arena_alloc(&a, (nv ? nv : 1) * sizeof(*out.configs));
        for (size_t i = 0; i < nv; i++) out.configs[out.n_configs++] = summary(&v[i], &a);
        tsr_pb_pack(&out.base, resp);
        tsr_reg_entries_free(v, nv);
    }
    tsr_arena_free(&a);
    return rc ? fail(r, call, rc) : 0;
}

static int h_delete(void *ud, tsr_rpc_call_t *call, const uint8_t *req, size_t n, tsr_buf_t *resp,
                    tsr_error_t *err) {
    tsr_coord_rpc_t *r = ud;
    UNPACK(Tessera__V1__DeleteConfigRequest, tessera__v1__delete_config_request__descriptor);
    tsr_reg_entry_t e;
    int rc = tsr_coord_delete_config(r->c, rq->name ? rq->name : "", &e, err);
    if (rc == 0) {
        Tessera__V1__DeleteConfigResponse out;
        tessera__v1__delete_config_response__init(&out);
        out.config = summary(&e, &a);
        tsr_pb_pack(&out.base, resp);
        tsr_reg_entry_free(&e);
    }
    tsr_arena_free(&a);
    return rc ? fail(r, call, rc) : 0;
}

static void upload_done(void *ud, int rc, const tsr_coord_upload_result_t *res, const char *msg) {
    tsr_rpc_call_t *call = ud;
    if (rc) {
        tsr_rpc_call_finish(call, rc, NULL, 0, msg);
        return;
    }
    Tessera__V1__UploadResponse out;
    tessera__v1__upload_response__init(&out);
    out.name = (char *)res->name;
    out.batch_end_millis = res->batch_end_ms;
    out.keys = res->keys;
    out.group_bys = res->group_bys;
    out.job_id = (char *)(res->job_id ? res->job_id : "");
    tsr_buf_t b;
    tsr_buf_init(&b);
    tsr_pb_pack(&out.base, &b);
    tsr_rpc_call_finish(call, 0, b.data, b.len, NULL);
    tsr_buf_free(&b);
}

static int h_upload(void *ud, tsr_rpc_call_t *call, const uint8_t *req, size_t n, tsr_buf_t *resp,
                    tsr_error_t *err) {
    (void)resp;
    tsr_coord_rpc_t *r = ud;
    UNPACK(Tessera__V1__UploadRequest, tessera__v1__upload_request__descriptor);
    int64_t left = tsr_rpc_call_remaining_ms(call);
    int rc = 0;
    if (left == 0) rc = tsr_error_set(err, TSR_ETIMEOUT, "deadline exceeded before the upload began");
    if (left > MAX_UPLOAD_MS) left = MAX_UPLOAD_MS;
    if (rc == 0)
        rc = tsr_coord_upload_job(r->c, rq->name, rq->ds, rq->warehouse, wall_ms() + left, rq->job_id, upload_done,
                                  call, NULL, err);
    tsr_arena_free(&a);
    return rc ? fail(r, call, rc) : TSR_RPC_DEFER;
}

static void backfill_done(void *ud, int rc, const tsr_coord_backfill_result_t *res, const char *msg) {
    tsr_rpc_call_t *call = ud;
    if (rc) {
        tsr_rpc_call_finish(call, rc, NULL, 0, msg);
        return;
    }
    Tessera__V1__BackfillResponse out;
    tessera__v1__backfill_response__init(&out);
    out.name = (char *)res->name;
    out.days = res->days;
    out.rows = res->rows;
    out.shards = res->shards;
    out.output = (char *)res->output;
    out.job_id = (char *)(res->job_id ? res->job_id : "");
    tsr_buf_t b;
    tsr_buf_init(&b);
    tsr_pb_pack(&out.base, &b);
    tsr_rpc_call_finish(call, 0, b.data, b.len, NULL);
    tsr_buf_free(&b);
}

static int h_backfill(void *ud, tsr_rpc_call_t *call, const uint8_t *req, size_t n, tsr_buf_t *resp,
                      tsr_error_t *err) {
    (void)resp;
    tsr_coord_rpc_t *r = ud;
    UNPACK(Tessera__V1__BackfillRequest, tessera__v1__backfill_request__descriptor);
    int64_t left = tsr_rpc_call_remaining_ms(call);
    int rc = 0;
    if (left == 0) rc = tsr_error_set(err, TSR_ETIMEOUT, "deadline exceeded before the backfill began");
    if (left < 0 || left > MAX_BACKFILL_MS) left = MAX_BACKFILL_MS;
    if (rc == 0)
        rc = tsr_coord_backfill_job(r->c, rq->name, rq->start_ds, rq->end_ds, rq->warehouse, wall_ms() + left,
                                    rq->job_id, backfill_done, call, NULL, err);
    tsr_arena_free(&a);
    return rc ? fail(r, call, rc) : TSR_RPC_DEFER;
}

static int h_get_job(void *ud, tsr_rpc_call_t *call, const uint8_t *req, size_t n, tsr_buf_t *resp,
                     tsr_error_t *err) {
    tsr_coord_rpc_t *r = ud;
    UNPACK(Tessera__V1__GetJobRequest, tessera__v1__get_job_request__descriptor);
    int rc = tsr_coord_job(r->c, rq->job_id, resp, err);
    tsr_arena_free(&a);
    return rc ? fail(r, call, rc) : 0;
}

static int h_status(void *ud, tsr_rpc_call_t *call, const uint8_t *req, size_t n, tsr_buf_t *resp,
                    tsr_error_t *err) {
    tsr_coord_rpc_t *r = ud;
    (void)req;
    (void)n;
    int rc = tsr_coord_status(r->c, r->version, r->started_ms, resp, err);
    return rc ? fail(r, call, rc) : 0;
}

static int h_workers(void *ud, tsr_rpc_call_t *call, const uint8_t *req, size_t n, tsr_buf_t *resp,
                     tsr_error_t *err) {
    tsr_coord_rpc_t *r = ud;
    (void)req;
    (void)n;
    int rc = tsr_coord_list_workers(r->c, resp, err);
    return rc ? fail(r, call, rc) : 0;
}

static int h_partitions(void *ud, tsr_rpc_call_t *call, const uint8_t *req, size_t n, tsr_buf_t *resp,
                        tsr_error_t *err) {
    tsr_coord_rpc_t *r = ud;
    UNPACK(Tessera__V1__ListPartitionsRequest, tessera__v1__list_partitions_request__descriptor);
    int rc = tsr_coord_list_partitions(r->c, rq->group_by, resp, err);
    tsr_arena_free(&a);
    return rc ? fail(r, call, rc) : 0;
}

int tsr_coord_rpc_register(tsr_coord_rpc_t *r, tsr_rpc_server_t *s, tsr_error_t *err) {
    static const struct {
        const char *path;
        tsr_rpc_unary_fn fn;
    } unary[] = {
        {"/tessera.v1.CoordinatorService/RegisterWorker", h_register},
        {"/tessera.v1.CoordinatorService/KeepAlive", h_keepalive},
        {"/tessera.v1.CoordinatorService/ReportShard", h_report},
        {"/tessera.v1.AdminService/ApplyConfig", h_apply},
        {"/tessera.v1.AdminService/GetConfig", h_get},
        {"/tessera.v1.AdminService/ListConfigs", h_list},
        {"/tessera.v1.AdminService/DeleteConfig", h_delete},
        {"/tessera.v1.AdminService/Upload", h_upload},
        {"/tessera.v1.AdminService/Backfill", h_backfill},
        {"/tessera.v1.AdminService/Status", h_status},
        {"/tessera.v1.AdminService/ListWorkers", h_workers},
        {"/tessera.v1.AdminService/ListPartitions", h_partitions},
        {"/tessera.v1.AdminService/GetJob", h_get_job},
    };
    for (size_t i = 0; i < sizeof unary / sizeof unary[0]; i++) {
        int rc = tsr_rpc_server_add_unary(s, unary[i].path, unary[i].fn, r, err);
        if (rc) return rc;
    }
    int rc = tsr_rpc_server_add_stream(s, "/tessera.v1.CoordinatorService/WatchAssignments", h_watch_assign, r, err);
    if (rc == 0) rc = tsr_rpc_server_add_stream(s, "/tessera.v1.CoordinatorService/WatchRouting", h_watch_routing, r, err);
    if (rc == 0) rc = tsr_rpc_health_register(s, err);
    return rc;
}
