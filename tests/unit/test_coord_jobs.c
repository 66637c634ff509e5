/*
 * test_coord_jobs.c — upload and backfill jobs across a leader failover (coord.h "Failover"),
 * on the fake etcd with manual clocks: leader A starts a job and some shards finish; A stops
 * (its clock and ticks stop, its lease runs out); B is elected and resumes the job from its
 * record — shards done stay done, the others are re-issued with the next attempt at B's epoch;
 * reports of the old epoch, of an old attempt or of an unknown attempt are ignored; A's waiting
 * call ends with UNAVAILABLE naming the job; a client waits on the job again by its id; the job
 * completes exactly once with the result a run without failover gives (rows, keys, the commit);
 * GetJob (tsr_coord_job) follows it throughout, and a later leader keeps the finished record.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cluster.pb-c.h"
#include "tessera.pb-c.h"
#include "tsr/coord.h"
#include "tsr_test.h"
#include "tsr_test_coord.h"

static char wh[256];

/* t.ev with partitions 2024-01-01 .. 2024-01-06 */
static void setup(void) {
    snprintf(wh, sizeof wh, "/tmp/tsr_coordjobs_XXXXXX");
    tsr_test_wh_events(wh, "{\"user\": \"string\", \"v\": \"long\", \"ts\": \"long\"}", "user,v,ts\n");
    for (int d = 2; d <= 6; d++) {
        char p[512];
        snprintf(p, sizeof p, "%s/t/ev/ds=2024-01-0%d", wh, d);
        mkdir(p, 0755);
        snprintf(p, sizeof p, "%s/t/ev/ds=2024-01-0%d/part-0.csv", wh, d);
        FILE *f = fopen(p, "w");
        ck_assert_ptr_nonnull(f);
        fputs("user,v,ts\n", f);
        fclose(f);
    }
}

static void teardown(void) { tsr_test_rm_rf(wh); }

#define GB_NAME "t.by_user.v1"
static const char *GB_JSON =
    "{\"metaData\": {\"name\": \"t.by_user.v1\", \"team\": \"risk\"}, \"sources\": [{\"events\": "
    "{\"table\": \"t.ev\", \"query\": {\"selects\": {\"user\": \"user\", \"v\": \"v\"}, "
    "\"timeColumn\": \"ts\"}}}], \"keyColumns\": [\"user\"], \"aggregations\": ["
    "{\"inputColumn\": \"v\", \"operation\": \"SUM\"}]}";


static tsr_coord_t *mk(tsr_kv_t *kv, const char *id, const char *addr, clk_t *clk) {
    tsr_coord_opts_t o;
    tsr_test_coord_opts(&o, kv, id, addr, wh, clk);
    return tsr_test_coord_start(&o);
}

static int64_t reg(tsr_coord_t *c, const char *w) { return tsr_test_coord_reg(c, w, "h:1", NULL); }

#define assignment tsr_test_coord_assignment

/* The attempt of shard s in w's assignment; 0 when w has no such shard. */
static int attempt_of(tsr_coord_t *c, const char *w, int s, int64_t *epoch) {
    Tessera__V1__Assignment *a = assignment(c, w);
    int att = 0;
    for (size_t i = 0; i < a->n_shards; i++)
        if (a->shards[i]->shard == s) att = a->shards[i]->attempt;
    if (epoch) *epoch = a->epoch;
    tessera__v1__assignment__free_unpacked(a, NULL);
    return att;
}

static Tessera__V1__GetJobResponse *get_job(tsr_coord_t *c, const char *id) {
    tsr_buf_t b;
    tsr_buf_init(&b);
    tsr_error_t err;
    int rc = tsr_coord_job(c, id, &b, &err);
    if (rc) ck_abort_msg("GetJob %s: %s", id, err.msg);
    Tessera__V1__GetJobResponse *r = tessera__v1__get_job_response__unpack(NULL, b.len, b.data);
    tsr_buf_free(&b);
    ck_assert_ptr_nonnull(r);
    return r;
}

static int report(tsr_coord_t *c, const char *w, const char *job, int s, int attempt, int64_t keys, int64_t epoch) {
    tsr_error_t err;
    return tsr_coord_report_shard(c, w, job, s, attempt, 1, NULL, keys, epoch, &err);
}

/* A stops (no ticks, its clock stands still); the workers keep their leases alive; B ticks
 * until it leads (A's lease: half the workers' TTL). Returns B's epoch. */
static int64_t fail_over(tsr_kv_t *kv, tsr_coord_t *b, clk_t *cb, const int64_t *leases, size_t nl) {
    tsr_error_t err;
    for (int s = 0; s < 8 && !tsr_coord_is_leader(b, NULL); s++) {
        ck_assert_int_eq(tsr_kv_fake_advance(kv, 1000), 0);
        cb->ms += 1000;
        for (size_t i = 0; i < nl; i++) ck_assert_int_eq(tsr_kv_lease_keepalive(kv, leases[i], NULL, &err), 0);
        tsr_coord_tick(b);
    }
    int64_t e = 0;
    ck_assert(tsr_coord_is_leader(b, &e));
    return e;
}

typedef struct bfres {
    int calls, rc;
    int64_t days, rows, shards;
    char msg[1024], job[64];
} bfres_t;

static void bf_cb(void *ud, int rc, const tsr_coord_backfill_result_t *r, const char *msg) {
    bfres_t *b = ud;
    b->calls++;
    b->rc = rc;
    b->days = r->days;
    b->rows = r->rows;
    b->shards = r->shards;
    snprintf(b->msg, sizeof b->msg, "%s", msg ? msg : "");
    snprintf(b->job, sizeof b->job, "%s", r->job_id ? r->job_id : "");
}

typedef struct upres {
    int calls, rc;
    int64_t keys, b, gbs;
    char msg[1024];
} upres_t;

static void up_cb(void *ud, int rc, const tsr_coord_upload_result_t *r, const char *msg) {
    upres_t *u = ud;
    u->calls++;
    u->rc = rc;
    u->keys = r->keys;
    u->b = r->batch_end_ms;
    u->gbs = r->group_bys;
    snprintf(u->msg, sizeof u->msg, "%s", msg ? msg : "");
}

#define mod_rev tsr_test_mod_rev

START_TEST(test_jobs_backfill_failover) {
    tsr_kv_t *kv = tsr_kv_fake_new();
    clk_t ca = {1000000}, cb = {1000000};
    tsr_coord_t *a = mk(kv, "a", "a:1", &ca), *b = mk(kv, "b", "b:1", &cb);
    tsr_coord_tick(a);
    tsr_coord_tick(b);
    int64_t ea = 0;
    ck_assert(tsr_coord_is_leader(a, &ea));
    tsr_error_t err;
    int cr, un;
    ck_assert_int_eq(tsr_coord_apply(a, GB_JSON, strlen(GB_JSON), "t", 0, NULL, &cr, &un, &err), 0);
    int64_t leases[2] = {reg(a, "w1"), reg(a, "w2")};

    /* A starts a backfill of 6 days: 4 shards, w1 has 0 and 2, w2 has 1 and 3 */
    bfres_t r1 = {0};
    char job[64];
    ck_assert_int_eq(tsr_coord_backfill_job(a, GB_NAME, "2024-01-01", "2024-01-06", NULL, INT64_MAX, "bf-1", bf_cb,
                                            &r1, job, &err), 0);
    ck_assert_str_eq(job, "bf-1");
    /* the same id again while a call waits on it: refused; a bad id: refused */
    bfres_t rx = {0};
    ck_assert_int_eq(tsr_coord_backfill_job(a, GB_NAME, "2024-01-01", "2024-01-06", NULL, INT64_MAX, "bf-1", bf_cb,
                                            &rx, NULL, &err), TSR_EEXIST);
    ck_assert_int_eq(tsr_coord_backfill_job(a, GB_NAME, "2024-01-01", "2024-01-06", NULL, INT64_MAX, "a/b", bf_cb,
                                            &rx, NULL, &err), TSR_EINVAL);
    ck_assert_int_eq(attempt_of(a, "w1", 0, NULL), 1);
    ck_assert_int_eq(attempt_of(a, "w1", 2, NULL), 1);
    ck_assert_int_eq(attempt_of(a, "w2", 1, NULL), 1);
    ck_assert_int_eq(attempt_of(a, "w2", 3, NULL), 1);
    /* shard 0 finishes under A */
    ck_assert_int_eq(report(a, "w1", job, 0, 1, 100, ea), 0);
    Tessera__V1__GetJobResponse *g = get_job(a, job);
    ck_assert_str_eq(g->state, "running");
    ck_assert_int_eq(g->shards_done, 1);
    ck_assert_int_eq(g->resumed, 0);
    tessera__v1__get_job_response__free_unpacked(g, NULL);

    /* A dies mid-job; B takes over and resumes the job from its record */
    int64_t eb = fail_over(kv, b, &cb, leases, 2);
    ck_assert_int_gt(eb, ea);
    g = get_job(b, job);
    ck_assert_str_eq(g->state, "running");
    ck_assert_str_eq(g->kind, "backfill");
    ck_assert_str_eq(g->name, GB_NAME);
    ck_assert_int_eq(g->shards, 4);
    ck_assert_int_eq(g->shards_done, 1);
    ck_assert_int_eq(g->resumed, 1);
    ck_assert_int_eq(g->epoch, eb);
    tessera__v1__get_job_response__free_unpacked(g, NULL);
    /* shard 0 (done) is not re-issued; the others are, attempt 2, to the same workers, at B's
     * epoch */
    int64_t ae = 0;
    ck_assert_int_eq(attempt_of(b, "w1", 0, &ae), 0);
    ck_assert_int_eq(ae, eb);
    ck_assert_int_eq(attempt_of(b, "w1", 2, NULL), 2);
    ck_assert_int_eq(attempt_of(b, "w2", 1, NULL), 2);
    ck_assert_int_eq(attempt_of(b, "w2", 3, NULL), 2);

    /* ignored: a report of the old epoch (even naming the current attempt), of the old
     * attempt, of an attempt never handed out, of another worker */
    ck_assert_int_eq(report(b, "w2", job, 1, 1, 999, ea), 0);
    ck_assert_int_eq(report(b, "w2", job, 1, 2, 999, ea), 0);
    ck_assert_int_eq(report(b, "w2", job, 1, 1, 999, eb), 0);
    ck_assert_int_eq(report(b, "w2", job, 1, 7, 999, eb), 0);
    ck_assert_int_eq(report(b, "w1", job, 1, 2, 999, eb), 0);
    ck_assert_int_eq(report(b, "w1", job, 9, 2, 999, eb), 0);
    g = get_job(b, job);
    ck_assert_int_eq(g->shards_done, 1);
    tessera__v1__get_job_response__free_unpacked(g, NULL);
    ck_assert_int_eq(attempt_of(b, "w2", 1, NULL), 2);

    /* A wakes up: its lease is gone, it steps down; its call ends naming the job */
    ca.ms = cb.ms;
    tsr_coord_tick(a);
    ck_assert(!tsr_coord_is_leader(a, NULL));
    ck_assert_int_eq(r1.calls, 1);
    ck_assert_int_eq(r1.rc, TSR_EUNAVAIL);
    ck_assert_ptr_nonnull(strstr(r1.msg, "job bf-1 continues under the next leader"));
    /* A (a follower now) redirects GetJob */
    tsr_buf_t tmp;
    tsr_buf_init(&tmp);
    ck_assert_int_eq(tsr_coord_job(a, job, &tmp, &err), TSR_EUNAVAIL);
    ck_assert_ptr_nonnull(strstr(err.msg, "leader is b:1"));
    tsr_buf_free(&tmp);

    /* the current attempts finish under B; a client waits on the job again by its id */
    ck_assert_int_eq(report(b, "w2", job, 1, 2, 20, eb), 0);
    ck_assert_int_eq(report(b, "w1", job, 2, 2, 3, eb), 0);
    bfres_t r2 = {0};
    char job2[64];
    ck_assert_int_eq(tsr_coord_backfill_job(b, GB_NAME, "2024-01-01", "2024-01-06", NULL, INT64_MAX, job, bf_cb, &r2,
                                            job2, &err), 0);
    ck_assert_str_eq(job2, job);
    /* (another config's name under that id is refused) */
    upres_t ux = {0};
    ck_assert_int_eq(tsr_coord_upload_job(b, GB_NAME, "2024-01-01", NULL, INT64_MAX, job, up_cb, &ux, NULL, &err),
                     TSR_EEXIST);
    ck_assert_int_eq(r2.calls, 0);
    ck_assert_int_eq(report(b, "w2", job, 3, 2, 4, eb), 0);
    /* complete exactly once, with what a run without failover gives */
    tsr_coord_tick(b);
    ck_assert_int_eq(r2.calls, 1);
    ck_assert_int_eq(r2.rc, 0);
    ck_assert_int_eq(r2.rows, 127);
    ck_assert_int_eq(r2.days, 6);
    ck_assert_int_eq(r2.shards, 4);
    ck_assert_str_eq(r2.job, job);
    ck_assert_int_eq(r1.calls, 1);
    ck_assert_int_eq(report(b, "w2", job, 3, 2, 4, eb), 0);   /* a duplicate changes nothing */
    tsr_coord_tick(b);
    ck_assert_int_eq(r2.calls, 1);
    g = get_job(b, job);
    ck_assert_str_eq(g->state, "done");
    ck_assert_int_eq(g->shards_done, 4);
    ck_assert_ptr_nonnull(g->backfill);
    ck_assert_int_eq(g->backfill->rows, 127);
    ck_assert_int_eq(g->backfill->days, 6);
    ck_assert_int_eq(g->backfill->shards, 4);
    ck_assert_ptr_nonnull(strstr(g->backfill->output, wh));
    ck_assert_int_gt(g->finished_at_millis, 0);
    tessera__v1__get_job_response__free_unpacked(g, NULL);
    ck_assert_int_eq(attempt_of(b, "w1", 2, NULL), 0);
    ck_assert_int_eq(attempt_of(b, "w2", 3, NULL), 0);
    /* a finished job's id is taken */
    ck_assert_int_eq(tsr_coord_backfill_job(b, GB_NAME, "2024-01-01", "2024-01-06", NULL, INT64_MAX, job, bf_cb, &rx,
                                            NULL, &err), TSR_EEXIST);

    /* the next leader keeps the finished record (GetJob still answers) and resumes nothing */
    tsr_coord_resign(b);
    ca.ms = cb.ms;
    tsr_coord_tick(a);
    ck_assert(tsr_coord_is_leader(a, NULL));
    g = get_job(a, job);
    ck_assert_str_eq(g->state, "done");
    ck_assert_int_eq(g->backfill->rows, 127);
    tessera__v1__get_job_response__free_unpacked(g, NULL);
    ck_assert_int_eq(attempt_of(a, "w1", 2, NULL), 0);
    ck_assert_int_eq(tsr_coord_job(a, "no-such-job", &tmp, &err), TSR_ENOTFOUND);
    tsr_buf_free(&tmp);
    /* an hour later, a leader drops it */
    tsr_coord_resign(a);
    tsr_coord_t *c2 = mk(kv, "c", "c:1", &cb);
    cb.ms += 3600 * 1000 + 1;
    tsr_coord_tick(c2);
    ck_assert(tsr_coord_is_leader(c2, NULL));
    ck_assert_int_eq(tsr_coord_job(c2, job, &tmp, &err), TSR_ENOTFOUND);
    tsr_buf_free(&tmp);
    tsr_coord_free(c2);
    tsr_coord_free(a);
    tsr_coord_free(b);
    tsr_kv_free(kv);
}
END_TEST

START_TEST(test_jobs_upload_failover) {
    tsr_kv_t *kv = tsr_kv_fake_new();
    clk_t ca = {1000000}, cb = {1000000};
    tsr_coord_t *a = mk(kv, "a", "a:1", &ca), *b = mk(kv, "b", "b:1", &cb);
    tsr_coord_tick(a);
    tsr_coord_tick(b);
    int64_t ea = 0;
    ck_assert(tsr_coord_is_leader(a, &ea));
    tsr_error_t err;
    int cr, un;
    ck_assert_int_eq(tsr_coord_apply(a, GB_JSON, strlen(GB_JSON), "t", 0, NULL, &cr, &un, &err), 0);
    int64_t leases[2] = {reg(a, "w1"), reg(a, "w2")};
    upres_t u1 = {0};
    char job[64];
    ck_assert_int_eq(tsr_coord_upload_job(a, GB_NAME, "2024-01-01", NULL, INT64_MAX, "up-1", up_cb, &u1, job, &err),
                     0);
    int64_t B = 19724LL * 86400000;     /* 2024-01-02 00:00 */
    /* one shard per owner; w1's finishes under A */
    Tessera__V1__Assignment *a1 = assignment(a, "w1"), *a2 = assignment(a, "w2");
    ck_assert_uint_eq(a1->n_shards, 1);
    ck_assert_uint_eq(a2->n_shards, 1);
    int s1 = a1->shards[0]->shard, s2 = a2->shards[0]->shard;
    tessera__v1__assignment__free_unpacked(a1, NULL);
    tessera__v1__assignment__free_unpacked(a2, NULL);
    ck_assert_int_eq(report(a, "w1", job, s1, 1, 10, ea), 0);
    ck_assert_int_eq(mod_rev(kv, "/tessera/uploads/" GB_NAME), 0);

    int64_t eb = fail_over(kv, b, &cb, leases, 2);
    ck_assert_int_eq(attempt_of(b, "w1", s1, NULL), 0);
    ck_assert_int_eq(attempt_of(b, "w2", s2, NULL), 2);
    /* the old attempt's report (old epoch) does not commit anything */
    ck_assert_int_eq(report(b, "w2", job, s2, 1, 7, ea), 0);
    tsr_coord_tick(b);
    ck_assert_int_eq(mod_rev(kv, "/tessera/uploads/" GB_NAME), 0);
    Tessera__V1__GetJobResponse *g = get_job(b, job);
    ck_assert_str_eq(g->state, "running");
    ck_assert_str_eq(g->kind, "upload");
    ck_assert_int_eq(g->shards_done, 1);
    tessera__v1__get_job_response__free_unpacked(g, NULL);
    /* the re-issued attempt finishes: B commits the upload (once) */
    ck_assert_int_eq(report(b, "w2", job, s2, 2, 7, eb), 0);
    int64_t up_rev = mod_rev(kv, "/tessera/uploads/" GB_NAME);
    ck_assert_int_gt(up_rev, 0);
    tsr_coord_tick(b);
    ck_assert_int_eq(mod_rev(kv, "/tessera/uploads/" GB_NAME), up_rev);
    g = get_job(b, job);
    ck_assert_str_eq(g->state, "loading");
    tessera__v1__get_job_response__free_unpacked(g, NULL);
    a1 = assignment(b, "w1");
    ck_assert_int_eq(a1->group_bys[0]->batch_end_millis, B);
    tessera__v1__assignment__free_unpacked(a1, NULL);

    /* B dies while the owners load; A (back) resumes the loading job: nothing re-runs */
    ca.ms = cb.ms;
    tsr_coord_tick(a);                  /* A learns it lost: steps down; its call ends */
    ck_assert_int_eq(u1.calls, 1);
    ck_assert_int_eq(u1.rc, TSR_EUNAVAIL);
    int64_t ea2 = fail_over(kv, a, &ca, leases, 2);
    ck_assert_int_gt(ea2, eb);
    ck_assert_int_eq(attempt_of(a, "w1", s1, NULL), 0);
    ck_assert_int_eq(attempt_of(a, "w2", s2, NULL), 0);
    g = get_job(a, job);
    ck_assert_str_eq(g->state, "loading");
    ck_assert_int_eq(g->resumed, 2);
    tessera__v1__get_job_response__free_unpacked(g, NULL);
    upres_t u2 = {0};
    ck_assert_int_eq(tsr_coord_upload_job(a, GB_NAME, "2024-01-01", NULL, INT64_MAX, job, up_cb, &u2, NULL, &err), 0);
    /* the owners report the batch: done, with the keys of both shards */
    const char *ws[2] = {"w1", "w2"};
    for (int w = 0; w < 2; w++) {
        Tessera__V1__Assignment *as = assignment(a, ws[w]);
        tsr_coord_pstate_t ps[8];
        size_t n = 0;
        for (size_t i = 0; i < as->n_group_bys; i++)
            for (size_t k = 0; k < as->group_bys[i]->n_partitions; k++)
                ps[n++] = (tsr_coord_pstate_t){GB_NAME, as->group_bys[i]->partitions[k], B, 0, -1, -1};
        tessera__v1__assignment__free_unpacked(as, NULL);
        int64_t ttl, ep;
        ck_assert_int_eq(tsr_coord_keepalive(a, ws[w], leases[w], ea2, ps, n, &ttl, &ep, &err), 0);
    }
    ck_assert_int_eq(u2.calls, 1);
    ck_assert_int_eq(u2.rc, 0);
    ck_assert_int_eq(u2.keys, 17);
    ck_assert_int_eq(u2.b, B);
    ck_assert_int_eq(u2.gbs, 1);
    ck_assert_int_eq(u1.calls, 1);
    g = get_job(a, job);
    ck_assert_str_eq(g->state, "done");
    ck_assert_ptr_nonnull(g->upload);
    ck_assert_int_eq(g->upload->keys, 17);
    ck_assert_int_eq(g->upload->batch_end_millis, B);
    ck_assert_int_eq(g->upload->group_bys, 1);
    tessera__v1__get_job_response__free_unpacked(g, NULL);
    tsr_coord_free(a);
    tsr_coord_free(b);
    tsr_kv_free(kv);
}
END_TEST

/* Failovers do not use up a shard's attempts: a shard re-issued twice still gets its 3 tries. */
START_TEST(test_jobs_resumes_not_failures) {
    tsr_kv_t *kv = tsr_kv_fake_new();
    clk_t ca = {1000000}, cb = {1000000};
    tsr_coord_t *a = mk(kv, "a", "a:1", &ca), *b = mk(kv, "b", "b:1", &cb);
    tsr_coord_tick(a);
    tsr_coord_tick(b);
    tsr_error_t err;
    int cr, un;
    ck_assert_int_eq(tsr_coord_apply(a, GB_JSON, strlen(GB_JSON), "t", 0, NULL, &cr, &un, &err), 0);
    int64_t leases[1] = {reg(a, "w1")};
    char job[64];
    ck_assert_int_eq(tsr_coord_backfill_job(a, GB_NAME, "2024-01-01", "2024-01-01", NULL, INT64_MAX, "bf-2", NULL,
                                            NULL, job, &err), 0);
    int64_t eb = fail_over(kv, b, &cb, leases, 1);
    ca.ms = cb.ms;
    tsr_coord_tick(a);
    tsr_coord_resign(b);
    int64_t ea = fail_over(kv, a, &ca, leases, 1);
    ck_assert_int_gt(ea, eb);
    ck_assert_int_eq(attempt_of(a, "w1", 0, NULL), 3);
    /* failures 1 and 2 retry (on the only worker), the third fails the job */
    ck_assert_int_eq(tsr_coord_report_shard(a, "w1", job, 0, 3, 0, "boom", 0, ea, &err), 0);
    ck_assert_int_eq(attempt_of(a, "w1", 0, NULL), 4);
    ck_assert_int_eq(tsr_coord_report_shard(a, "w1", job, 0, 4, 0, "boom", 0, ea, &err), 0);
    ck_assert_int_eq(attempt_of(a, "w1", 0, NULL), 5);
    ck_assert_int_eq(tsr_coord_report_shard(a, "w1", job, 0, 5, 0, "boom 3", 0, ea, &err), 0);
    Tessera__V1__GetJobResponse *g = get_job(a, job);
    ck_assert_str_eq(g->state, "failed");
    ck_assert_ptr_nonnull(strstr(g->error, "failed 3 times"));
    ck_assert_ptr_nonnull(strstr(g->error, "boom 3"));
    tessera__v1__get_job_response__free_unpacked(g, NULL);
    tsr_coord_free(a);
    tsr_coord_free(b);
    tsr_kv_free(kv);
}
END_TEST

static Suite *coord_jobs_suite(void) {
    Suite *s = suite_create("coord_jobs");
    TCase *tc = tcase_create("coord_jobs");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_jobs_backfill_failover);
    tcase_add_test(tc, test_jobs_upload_failover);
    tcase_add_test(tc, test_jobs_resumes_not_failures);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return tsr_test_run(coord_jobs_suite()); }
