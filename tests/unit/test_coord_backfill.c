/*
 * test_coord_backfill.c — backfill jobs of the coordinator core (coord.h "admin: backfills") on
 * the fake etcd with a manual clock: the day-range split (checked against its rules for every
 * small case), validation as `tessera backfill` does it (unknown config, missing input
 * partition named, dates, no live worker), shards handed out round-robin as "backfill"
 * ShardTasks, retry on a failure report and on a lost worker lease, bounded attempts, the
 * deadline, and the result once every shard is done.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cluster.pb-c.h"
#include "tsr/coord.h"
#include "tsr_test.h"
#include "tsr_test_coord.h"

static char wh[256];

/* t.ev with partitions 2024-01-01 .. 2024-01-06 */
static void setup(void) {
    snprintf(wh, sizeof wh, "/tmp/tsr_coordbf_XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(wh));
    char p[512];
    snprintf(p, sizeof p, "%s/t", wh);
    mkdir(p, 0755);
    snprintf(p, sizeof p, "%s/t/ev", wh);
    mkdir(p, 0755);
    snprintf(p, sizeof p, "%s/t/ev/_schema.json", wh);
    FILE *f = fopen(p, "w");
    fputs("{\"user\": \"string\", \"v\": \"long\", \"ts\": \"long\"}", f);
    fclose(f);
    for (int d = 1; d <= 6; d++) {
        snprintf(p, sizeof p, "%s/t/ev/ds=2024-01-0%d", wh, d);
        mkdir(p, 0755);
        snprintf(p, sizeof p, "%s/t/ev/ds=2024-01-0%d/part-0.csv", wh, d);
        f = fopen(p, "w");
        fputs("user,v,ts\n", f);
        fclose(f);
    }
}

static void teardown(void) {
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", wh);
    if (system(cmd) != 0) fprintf(stderr, "cleanup failed\n");
}

#define GB_JSON                                                                                    \
    "{\"metaData\": {\"name\": \"t.by_user.v1\", \"team\": \"risk\"}, \"sources\": [{\"events\": " \
    "{\"table\": \"t.ev\", \"query\": {\"selects\": {\"user\": \"user\", \"v\": \"v\"}, "          \
    "\"timeColumn\": \"ts\"}}}], \"keyColumns\": [\"user\"], \"aggregations\": ["                  \
    "{\"inputColumn\": \"v\", \"operation\": \"SUM\"}]}"


static tsr_coord_t *mk(tsr_kv_t *kv, clk_t *clk) {
    tsr_coord_opts_t o;
    tsr_test_coord_opts(&o, kv, "a", "a:1", wh, clk);
    o.default_partitions = 0;       /* the coordinator's own default */
    tsr_coord_t *c = tsr_test_coord_start(&o);
    tsr_error_t err;
    tsr_coord_tick(c);
    ck_assert(tsr_coord_is_leader(c, NULL));
    tsr_reg_entry_t e;
    int cr, un;
    int rc = tsr_coord_apply(c, GB_JSON, strlen(GB_JSON), "t", 0, &e, &cr, &un, &err);
    if (rc) ck_abort_msg("apply: %s", err.msg);
    tsr_reg_entry_free(&e);
    return c;
}

static int64_t reg(tsr_coord_t *c, const char *w) { return tsr_test_coord_reg(c, w, "h:1", NULL); }

#define assignment tsr_test_coord_assignment

typedef struct bfres {
    int calls, rc;
    int64_t days, rows, shards;
    char output[512], msg[1024];
} bfres_t;

static void bf_cb(void *ud, int rc, const tsr_coord_backfill_result_t *r, const char *msg) {
    bfres_t *b = ud;
    b->calls++;
    b->rc = rc;
    b->days = r->days;
    b->rows = r->rows;
    b->shards = r->shards;
    snprintf(b->output, sizeof b->output, "%s", r->output ? r->output : "");
    snprintf(b->msg, sizeof b->msg, "%s", msg ? msg : "");
}

START_TEST(test_split_days) {
    int64_t r[64][2];
    for (int64_t days = 1; days <= 40; days++)
        for (size_t nw = 0; nw <= 5; nw++)
            for (size_t cap = 1; cap <= 12; cap += 11) {
                int64_t start = 19000 + days;
                size_t n = tsr_coord_split_days(start, start + days - 1, nw, r, cap);
                size_t want = 2 * (nw ? nw : 1);
                if ((int64_t)want > days) want = (size_t)days;
                if (want > cap) want = cap;
                if (n != want) ck_abort_msg("days %lld workers %zu: %zu ranges, want %zu", (long long)days, nw, n, want);
                int64_t next = start, minlen = INT64_MAX, maxlen = 0;
                for (size_t i = 0; i < n; i++) {
                    int64_t len = r[i][1] - r[i][0] + 1;
                    if (r[i][0] != next || len < 1) ck_abort_msg("range %zu not contiguous or empty", i);
                    if (len < minlen) minlen = len;
                    if (len > maxlen) maxlen = len;
                    next = r[i][1] + 1;
                }
                if (next != start + days) ck_abort_msg("days %lld: ranges do not cover", (long long)days);
                if (maxlen - minlen > 1) ck_abort_msg("days %lld: uneven split", (long long)days);
            }
    ck_assert_uint_eq(tsr_coord_split_days(10, 9, 2, r, 64), 0);
}
END_TEST

START_TEST(test_backfill_validation) {
    tsr_kv_t *kv = tsr_kv_fake_new();
    clk_t ck = {1000};
    tsr_coord_t *c = mk(kv, &ck);
    tsr_error_t err;
    bfres_t b = {0};
    /* no live worker */
    ck_assert_int_eq(tsr_coord_backfill(c, "t.by_user.v1", "2024-01-01", "2024-01-02", NULL, INT64_MAX, bf_cb, &b,
                                        NULL, &err), TSR_EUNAVAIL);
    ck_assert_ptr_nonnull(strstr(err.msg, "no live workers"));
    reg(c, "w1");
    ck_assert_int_eq(tsr_coord_backfill(c, "nope", "2024-01-01", "2024-01-02", NULL, INT64_MAX, bf_cb, &b, NULL,
                                        &err), TSR_ENOTFOUND);
    ck_assert_ptr_nonnull(strstr(err.msg, "nope"));
    /* a missing input partition is named */
    ck_assert_int_eq(tsr_coord_backfill(c, "t.by_user.v1", "2024-01-05", "2024-01-08", NULL, INT64_MAX, bf_cb, &b,
                                        NULL, &err), TSR_ENOTFOUND);
    ck_assert_ptr_nonnull(strstr(err.msg, "ds=2024-01-07"));
    ck_assert_int_eq(tsr_coord_backfill(c, "t.by_user.v1", "2024-01-03", "2024-01-02", NULL, INT64_MAX, bf_cb, &b,
                                        NULL, &err), TSR_EINVAL);
    ck_assert_int_eq(tsr_coord_backfill(c, "t.by_user.v1", "2024-13-03", "2024-01-02", NULL, INT64_MAX, bf_cb, &b,
                                        NULL, &err), TSR_EINVAL);
    ck_assert_int_eq(b.calls, 0);
    tsr_coord_free(c);
    tsr_kv_free(kv);
}
END_TEST

START_TEST(test_backfill_shards_retry) {
    tsr_kv_t *kv = tsr_kv_fake_new();
    clk_t ck = {1000};
    tsr_coord_t *c = mk(kv, &ck);
    tsr_error_t err;
    int64_t l1 = reg(c, "w1");
    reg(c, "w2");
    bfres_t b = {0};
    char job[64];
    ck_assert_int_eq(tsr_coord_backfill(c, "t.by_user.v1", "2024-01-01", "2024-01-06", NULL, INT64_MAX, bf_cb, &b,
                                        job, &err), 0);
    /* 6 days over 2 workers: 4 shards (2+2+1+1 days), round-robin */
    const char *want_lo[4] = {"2024-01-01", "2024-01-03", "2024-01-05", "2024-01-06"};
    const char *want_hi[4] = {"2024-01-02", "2024-01-04", "2024-01-05", "2024-01-06"};
    int seen[4] = {0};
    const char *ws[2] = {"w1", "w2"};
    for (int w = 0; w < 2; w++) {
        Tessera__V1__Assignment *a = assignment(c, ws[w]);
        ck_assert_uint_eq(a->n_shards, 2);
        for (size_t i = 0; i < a->n_shards; i++) {
            Tessera__V1__ShardTask *t = a->shards[i];
            ck_assert_str_eq(t->kind, "backfill");
            ck_assert_str_eq(t->job_id, job);
            ck_assert_int_ge(t->shard, 0);
            ck_assert_int_lt(t->shard, 4);
            ck_assert_int_eq(t->shard % 2, w);
            ck_assert_str_eq(t->start_ds, want_lo[t->shard]);
            ck_assert_str_eq(t->end_ds, want_hi[t->shard]);
            ck_assert_str_eq(t->warehouse, wh);
            ck_assert_str_eq(t->group_by, "t.by_user.v1");
            ck_assert_ptr_nonnull(strstr(t->config_json, "\"t.by_user.v1\""));
            ck_assert_int_eq(t->attempt, 1);
            seen[t->shard]++;
        }
        tessera__v1__assignment__free_unpacked(a, NULL);
    }
    for (int s = 0; s < 4; s++) ck_assert_int_eq(seen[s], 1);
    /* the job is recorded */
    char jk[128];
    snprintf(jk, sizeof jk, "/tessera/jobs/%s", job);
    tsr_kv_entry_t e;
    int found;
    ck_assert_int_eq(tsr_kv_get(kv, jk, &e, &found, &err), 0);
    ck_assert(found);
    ck_assert_ptr_nonnull(strstr(e.val, "\"kind\":\"backfill\""));
    tsr_kv_entry_free(&e);

    /* w1 finishes shard 0 and fails shard 2: shard 2 moves to w2, attempt 2 */
    ck_assert_int_eq(tsr_coord_report_shard(c, "w1", job, 0, 1, 1, NULL, 100, 0, &err), 0);
    ck_assert_int_eq(tsr_coord_report_shard(c, "w1", job, 2, 1, 0, "disk full", 0, 0, &err), 0);
    Tessera__V1__Assignment *a2 = assignment(c, "w2");
    int moved = 0;
    for (size_t i = 0; i < a2->n_shards; i++)
        if (a2->shards[i]->shard == 2) moved = a2->shards[i]->attempt == 2;
    tessera__v1__assignment__free_unpacked(a2, NULL);
    ck_assert(moved);
    /* w2 goes silent: its lease runs out, its shards (1, 3 and the moved 2) go to w1 */
    for (int s = 0; s < 7; s++) {
        ck.ms += 1000;
        tsr_kv_fake_advance(kv, 1000);
        int64_t ttl, ep;
        ck_assert_int_eq(tsr_coord_keepalive(c, "w1", l1, 0, NULL, 0, &ttl, &ep, &err), 0);
        tsr_coord_tick(c);
    }
    Tessera__V1__Assignment *a1 = assignment(c, "w1");
    ck_assert_uint_eq(a1->n_shards, 3);
    int32_t att[4] = {0};
    for (size_t i = 0; i < a1->n_shards; i++) att[a1->shards[i]->shard] = a1->shards[i]->attempt;
    tessera__v1__assignment__free_unpacked(a1, NULL);
    ck_assert_int_eq(att[1], 2);
    ck_assert_int_eq(att[2], 3);
    ck_assert_int_eq(att[3], 2);
    /* a stale report (w2, attempt 1) changes nothing */
    ck_assert_int_eq(tsr_coord_report_shard(c, "w2", job, 1, 1, 1, NULL, 999, 0, &err), 0);
    ck_assert_int_eq(tsr_coord_report_shard(c, "w1", job, 1, 2, 1, NULL, 20, 0, &err), 0);
    ck_assert_int_eq(tsr_coord_report_shard(c, "w1", job, 2, 3, 1, NULL, 3, 0, &err), 0);
    ck_assert_int_eq(b.calls, 0);
    ck_assert_int_eq(tsr_coord_report_shard(c, "w1", job, 3, 2, 1, NULL, 4, 0, &err), 0);
    ck_assert_int_eq(b.calls, 1);
    ck_assert_int_eq(b.rc, 0);
    ck_assert_int_eq(b.rows, 127);
    ck_assert_int_eq(b.days, 6);
    ck_assert_int_eq(b.shards, 4);
    char out[600];
    snprintf(out, sizeof out, "%s/default/", wh);
    ck_assert_msg(strncmp(b.output, out, strlen(out)) == 0, "output %s", b.output);
    a1 = assignment(c, "w1");
    ck_assert_uint_eq(a1->n_shards, 0);
    tessera__v1__assignment__free_unpacked(a1, NULL);

    /* bounded attempts: one shard failing 3 times fails the backfill, naming its days */
    bfres_t b2 = {0};
    ck_assert_int_eq(tsr_coord_backfill(c, "t.by_user.v1", "2024-01-02", "2024-01-02", NULL, INT64_MAX, bf_cb, &b2,
                                        job, &err), 0);
    for (int att_no = 1; att_no <= 3; att_no++)
        ck_assert_int_eq(tsr_coord_report_shard(c, "w1", job, 0, att_no, 0, "boom", 0, 0, &err), 0);
    ck_assert_int_eq(b2.calls, 1);
    ck_assert_int_eq(b2.rc, TSR_EIO);
    ck_assert_ptr_nonnull(strstr(b2.msg, "failed 3 times"));
    ck_assert_ptr_nonnull(strstr(b2.msg, "2024-01-02..2024-01-02"));

    /* the deadline ends the call, not the job */
    bfres_t b3 = {0};
    ck_assert_int_eq(tsr_coord_backfill(c, "t.by_user.v1", "2024-01-01", "2024-01-03", NULL, ck.ms + 500, bf_cb,
                                        &b3, job, &err), 0);
    ck.ms += 600;
    tsr_kv_fake_advance(kv, 600);
    tsr_coord_tick(c);
    ck_assert_int_eq(b3.calls, 1);
    ck_assert_int_eq(b3.rc, TSR_ETIMEOUT);
    /* resigning ends a pending backfill's call with UNAVAILABLE; the job (its record) stays
     * for the next leader to resume (test_coord_jobs.c) */
    bfres_t b4 = {0};
    ck_assert_int_eq(tsr_coord_backfill(c, "t.by_user.v1", "2024-01-01", "2024-01-03", NULL, INT64_MAX, bf_cb, &b4,
                                        job, &err), 0);
    tsr_coord_resign(c);
    ck_assert_int_eq(b4.calls, 1);
    ck_assert_int_eq(b4.rc, TSR_EUNAVAIL);
    ck_assert_ptr_nonnull(strstr(b4.msg, "continues under the next leader"));
    ck_assert_ptr_nonnull(strstr(b4.msg, job));
    tsr_coord_free(c);
    tsr_kv_free(kv);
}
END_TEST

static Suite *coord_backfill_suite(void) {
    Suite *s = suite_create("coord_backfill");
    TCase *tc = tcase_create("coord_backfill");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_split_days);
    tcase_add_test(tc, test_backfill_validation);
    tcase_add_test(tc, test_backfill_shards_retry);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return tsr_test_run(coord_backfill_suite()); }
