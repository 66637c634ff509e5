/*
 * test_coord_rpc.c — the coordinator's gRPC services (coordinator/coord_rpc.h) end to end on
 * 127.0.0.1:0 over the fake etcd, two replicas with their background loops: the follower
 * redirects every call with UNAVAILABLE and `tessera-leader` metadata; RegisterWorker,
 * WatchAssignments (a snapshot at the start and after a config is applied), WatchRouting,
 * a deferred Upload answered once the shard is reported and the owner reports the batch in a
 * KeepAlive, KeepAlive NOT_FOUND for an unknown lease, ListWorkers. gRPC lives only inside
 * the forked test process.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cluster.pb-c.h"
#include "tessera.pb-c.h"
#include "tsr/coord_rpc.h"
#include "tsr/pbvalue.h"
#include "tsr_test.h"

static char wh[256];

static void setup(void) {
    snprintf(wh, sizeof wh, "/tmp/tsr_coordrpc_XXXXXX");
    tsr_test_wh_events(wh, "{\"user\": \"string\", \"v\": \"long\", \"ts\": \"long\"}",
                       "user,v,ts\n");
}

static void teardown(void) { tsr_test_rm_rf(wh); }

static const char *GB_JSON =
    "{\"metaData\": {\"name\": \"t.by_user.v1\"}, \"sources\": [{\"events\": {\"table\": \"t.ev\", "
    "\"query\": {\"selects\": {\"user\": \"user\", \"v\": \"v\"}, \"timeColumn\": \"ts\"}}}], "
    "\"keyColumns\": [\"user\"], \"aggregations\": [{\"inputColumn\": \"v\", \"operation\": \"SUM\"}]}";

static const tsr_rpc_call_opts_t OPTS_5S = {5000, NULL, 0, 0};

typedef struct replica {
    tsr_coord_t *c;
    tsr_coord_rpc_t *r;
    tsr_rpc_server_t *s;
    char addr[64];
    tsr_rpc_client_t *cli;
} replica_t;

static void replica_start(replica_t *x, tsr_kv_t *kv, const char *id) {
    tsr_error_t err;
    x->s = tsr_rpc_server_new("127.0.0.1:0", NULL, &err);
    ck_assert_ptr_nonnull(x->s);
    snprintf(x->addr, sizeof x->addr, "127.0.0.1:%d", tsr_rpc_server_port(x->s));
    tsr_coord_opts_t o;
    memset(&o, 0, sizeof o);
    o.kv = kv;
    o.id = id;
    o.advertise = x->addr;
    o.warehouse = wh;
    o.default_partitions = 4;
    ck_assert_int_eq(tsr_coord_new(&o, &x->c, &err), 0);
    x->r = tsr_coord_rpc_new(x->c, "test");
    ck_assert_int_eq(tsr_coord_rpc_register(x->r, x->s, &err), 0);
    ck_assert_int_eq(tsr_rpc_server_start(x->s, &err), 0);
    ck_assert_int_eq(tsr_coord_start(x->c, &err), 0);
    x->cli = tsr_rpc_client_new(x->addr, &err);
    ck_assert_ptr_nonnull(x->cli);
}

static void replica_stop(replica_t *x) {
    tsr_rpc_client_free(x->cli);
    tsr_coord_resign(x->c);
    tsr_coord_rpc_stop(x->r);
    tsr_rpc_server_free(x->s);
    tsr_coord_rpc_free(x->r);
    tsr_coord_free(x->c);
}

static void sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static int call(replica_t *x, const char *method, const ProtobufCMessage *m, tsr_rpc_reply_t *rep) {
    tsr_buf_t b;
    tsr_buf_init(&b);
    tsr_pb_pack(m, &b);
    tsr_error_t err;
    int rc = tsr_rpc_client_call(x->cli, method, b.data, b.len, &OPTS_5S, rep, &err);
    tsr_buf_free(&b);
    return rc;
}

/* ---- a WatchAssignments reader on its own thread */

typedef struct watcher {
    replica_t *x;
    const char *worker;
    atomic_int msgs;
    atomic_int with_gb;             /* snapshots that list t.by_user.v1 */
    atomic_int with_shard;
    atomic_int stop;
    char job[64];
    int shard, attempt;
    pthread_mutex_t mu;
    int rc;
} watcher_t;

static int on_assignment(void *ud, const uint8_t *msg, size_t n) {
    watcher_t *w = ud;
    Tessera__V1__Assignment *a = tessera__v1__assignment__unpack(NULL, n, msg);
    if (!a) return 1;
    atomic_fetch_add(&w->msgs, 1);
    for (size_t i = 0; i < a->n_group_bys; i++)
        if (strcmp(a->group_bys[i]->name, "t.by_user.v1") == 0 && a->group_bys[i]->n_partitions == 4)
            atomic_fetch_add(&w->with_gb, 1);
    if (a->n_shards) {
        pthread_mutex_lock(&w->mu);
        snprintf(w->job, sizeof w->job, "%s", a->shards[0]->job_id);
        w->shard = a->shards[0]->shard;
        w->attempt = a->shards[0]->attempt;
        pthread_mutex_unlock(&w->mu);
        atomic_fetch_add(&w->with_shard, 1);
    }
    tessera__v1__assignment__free_unpacked(a, NULL);
    return atomic_load(&w->stop);
}

static void *watch_main(void *arg) {
    watcher_t *w = arg;
    Tessera__V1__WatchAssignmentsRequest rq;
    tessera__v1__watch_assignments_request__init(&rq);
    rq.worker_id = (char *)w->worker;
    tsr_buf_t b;
    tsr_buf_init(&b);
    tsr_pb_pack(&rq.base, &b);
    tsr_rpc_reply_t rep;
    tsr_rpc_reply_init(&rep);
    tsr_error_t err;
    tsr_rpc_call_opts_t o = {15000, NULL, 0, 0};
    w->rc = tsr_rpc_client_stream(w->x->cli, "/tessera.v1.CoordinatorService/WatchAssignments", b.data, b.len, &o,
                                  on_assignment, w, &rep, &err);
    tsr_rpc_reply_free(&rep);
    tsr_buf_free(&b);
    return NULL;
}

static int wait_for(atomic_int *v, int at_least, int ms) {
    for (int i = 0; i < ms / 10; i++) {
        if (atomic_load(v) >= at_least) return 1;
        sleep_ms(10);
    }
    return atomic_load(v) >= at_least;
}

typedef struct upres {
    atomic_int done;
    int rc;
    int64_t keys, b;
    char msg[512];
} upres_t;

static void on_upload(void *ud, int rc, const tsr_rpc_reply_t *reply, const char *msg) {
    upres_t *u = ud;
    u->rc = rc;
    snprintf(u->msg, sizeof u->msg, "%s", msg);
    if (rc == 0) {
        Tessera__V1__UploadResponse *r = tessera__v1__upload_response__unpack(NULL, reply->body.len, reply->body.data);
        if (r) {
            u->keys = r->keys;
            u->b = r->batch_end_millis;
            tessera__v1__upload_response__free_unpacked(r, NULL);
        }
    }
    atomic_store(&u->done, 1);
}

START_TEST(test_coord_rpc_end_to_end) {
    tsr_kv_t *kv = tsr_kv_fake_new();
    replica_t a, b;
    replica_start(&a, kv, "a");
    for (int i = 0; i < 200 && !tsr_coord_is_leader(a.c, NULL); i++) sleep_ms(10);
    ck_assert(tsr_coord_is_leader(a.c, NULL));
    replica_start(&b, kv, "b");
    char la[64] = "";
    for (int i = 0; i < 200 && !la[0]; i++) {
        tsr_coord_leader_addr(b.c, la, sizeof la);
        if (!la[0]) sleep_ms(10);
    }
    ck_assert_str_eq(la, a.addr);

    /* the follower redirects, with metadata */
    tsr_rpc_reply_t rep;
    tsr_rpc_reply_init(&rep);
    Tessera__V1__ListWorkersRequest lw;
    tessera__v1__list_workers_request__init(&lw);
    ck_assert_int_eq(call(&b, "/tessera.v1.AdminService/ListWorkers", &lw.base, &rep), TSR_EUNAVAIL);
    ck_assert_int_eq(rep.status, TSR_GRPC_UNAVAILABLE);
    ck_assert_ptr_nonnull(strstr(rep.message, "not the leader; leader is"));
    size_t ml;
    const char *md = tsr_rpc_reply_metadata(&rep, "tessera-leader", &ml);
    ck_assert_ptr_nonnull(md);
    ck_assert_int_eq((int)ml, (int)strlen(a.addr));
    ck_assert(memcmp(md, a.addr, ml) == 0);

    /* register + watch */
    Tessera__V1__RegisterWorkerRequest rr;
    tessera__v1__register_worker_request__init(&rr);
    rr.worker_id = "w1";
    rr.address = "127.0.0.1:1";
    ck_assert_int_eq(call(&a, "/tessera.v1.CoordinatorService/RegisterWorker", &rr.base, &rep), 0);
    Tessera__V1__RegisterWorkerResponse *rres =
        tessera__v1__register_worker_response__unpack(NULL, rep.body.len, rep.body.data);
    int64_t lease = rres->lease_id;
    ck_assert_int_eq(rres->lease_ttl_ms, 5000);
    ck_assert_int_gt(rres->epoch, 0);
    tessera__v1__register_worker_response__free_unpacked(rres, NULL);
    watcher_t w;
    memset(&w, 0, sizeof w);
    w.x = &a;
    w.worker = "w1";
    pthread_mutex_init(&w.mu, NULL);
    pthread_t t;
    ck_assert_int_eq(pthread_create(&t, NULL, watch_main, &w), 0);
    ck_assert(wait_for(&w.msgs, 1, 5000));
    ck_assert_int_eq(atomic_load(&w.with_gb), 0);
    Tessera__V1__ApplyConfigRequest ar;
    tessera__v1__apply_config_request__init(&ar);
    ar.config_json = (char *)GB_JSON;
    ck_assert_int_eq(call(&a, "/tessera.v1.AdminService/ApplyConfig", &ar.base, &rep), 0);
    ck_assert(wait_for(&w.with_gb, 1, 5000));   /* pushed, not polled by the client */

    /* a deferred upload: answered after the shard report and the owner's KeepAlive */
    Tessera__V1__UploadRequest ur;
    tessera__v1__upload_request__init(&ur);
    ur.name = "t.by_user.v1";
    ur.ds = "2024-01-01";
    tsr_buf_t ub;
    tsr_buf_init(&ub);
    tsr_pb_pack(&ur.base, &ub);
    upres_t u;
    memset(&u, 0, sizeof u);
    tsr_error_t err;
    tsr_rpc_call_opts_t uo = {10000, NULL, 0, 0};
    ck_assert_int_eq(tsr_rpc_client_call_async(a.cli, "/tessera.v1.AdminService/Upload", ub.data, ub.len, &uo,
                                               on_upload, &u, &err), 0);
    tsr_buf_free(&ub);
    ck_assert(wait_for(&w.with_shard, 1, 5000));
    Tessera__V1__ReportShardRequest sr;
    tessera__v1__report_shard_request__init(&sr);
    pthread_mutex_lock(&w.mu);
    char job[64];
    snprintf(job, sizeof job, "%s", w.job);
    sr.shard = w.shard;
    sr.attempt = w.attempt;
    pthread_mutex_unlock(&w.mu);
    sr.worker_id = "w1";
    sr.job_id = job;
    sr.ok = 1;
    sr.keys = 42;
    ck_assert_int_eq(call(&a, "/tessera.v1.CoordinatorService/ReportShard", &sr.base, &rep), 0);
    sleep_ms(50);
    ck_assert_int_eq(atomic_load(&u.done), 0);  /* committed, not loaded yet */
    Tessera__V1__KeepAliveRequest kr;
    tessera__v1__keep_alive_request__init(&kr);
    kr.worker_id = "w1";
    kr.lease_id = lease;
    Tessera__V1__PartitionState ps[4], *pps[4];
    for (int p = 0; p < 4; p++) {
        tessera__v1__partition_state__init(&ps[p]);
        ps[p].group_by = "t.by_user.v1";
        ps[p].partition = p;
        ps[p].batch_end_millis = 19724LL * 86400000;
        pps[p] = &ps[p];
    }
    kr.n_partitions = 4;
    kr.partitions = pps;
    ck_assert_int_eq(call(&a, "/tessera.v1.CoordinatorService/KeepAlive", &kr.base, &rep), 0);
    ck_assert(wait_for(&u.done, 1, 5000));
    ck_assert_msg(u.rc == 0, "upload: %s", u.msg);
    ck_assert_int_eq(u.keys, 42);
    ck_assert_int_eq(u.b, 19724LL * 86400000);

    /* KeepAlive with an unknown lease: NOT_FOUND */
    kr.lease_id = lease + 1000;
    kr.n_partitions = 0;
    ck_assert_int_eq(call(&a, "/tessera.v1.CoordinatorService/KeepAlive", &kr.base, &rep), TSR_ENOTFOUND);

    /* ListWorkers on the leader */
    ck_assert_int_eq(call(&a, "/tessera.v1.AdminService/ListWorkers", &lw.base, &rep), 0);
    Tessera__V1__ListWorkersResponse *lr = tessera__v1__list_workers_response__unpack(NULL, rep.body.len, rep.body.data);
    ck_assert_uint_eq(lr->n_workers, 1);
    ck_assert_int_eq(lr->workers[0]->partitions, 4);
    tessera__v1__list_workers_response__free_unpacked(lr, NULL);

    /* the leader resigns: the stream ends with UNAVAILABLE, the other replica takes over */
    int64_t e1;
    tsr_coord_is_leader(a.c, &e1);
    tsr_coord_resign(a.c);
    pthread_join(t, NULL);
    ck_assert_int_eq(w.rc, TSR_EUNAVAIL);
    for (int i = 0; i < 300 && !tsr_coord_is_leader(b.c, NULL); i++) sleep_ms(10);
    int64_t e2;
    ck_assert(tsr_coord_is_leader(b.c, &e2));
    ck_assert_int_gt(e2, e1);
    ck_assert_int_eq(call(&b, "/tessera.v1.AdminService/ListWorkers", &lw.base, &rep), 0);
    tsr_rpc_reply_free(&rep);
    pthread_mutex_destroy(&w.mu);
    replica_stop(&b);
    replica_stop(&a);
    tsr_kv_free(kv);
}
END_TEST

static Suite *coord_rpc_suite(void) {
    Suite *s = suite_create("coord_rpc");
    TCase *tc = tcase_create("coord_rpc");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_coord_rpc_end_to_end);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return tsr_test_run(coord_rpc_suite()); }
