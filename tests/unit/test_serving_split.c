/*
 * test_serving_split.c — tsr_serving_fetch_begin / _finish (serving.h): a batched fetch in two
 * halves, with the reads answered in between on another thread (as the cluster fetcher does
 * from its fan-out's done callback), answers byte for byte what tsr_serving_fetch_pb of a
 * single-read serving answers (Joins with a failing part, GroupBys, 1 and 40 rows); begin
 * errors leave nothing to release; abandon releases a begun request (the item can be replaced
 * and the serving freed; ASan: no leak); a deadline passed between the halves is
 * DEADLINE_EXCEEDED at finish; begin on a single-read serving is refused. The fixture (the
 * warehouse, configs and fake tiles) is test_serving.c's.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "tessera.pb-c.h"
#include "tsr/pbvalue.h"
#include "tsr/serving.h"
#include "tsr_test.h"

static char wh[256];

static void setup(void) {
    snprintf(wh, sizeof wh, "/tmp/tsr_serving_XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(wh));
    char p[512];
    const char *dirs[] = {"t", "t/ev", "t/ev/ds=2024-01-01", "t/snap", "t/snap/ds=2024-01-01"};
    for (int i = 0; i < 5; i++) {
        snprintf(p, sizeof p, "%s/%s", wh, dirs[i]);
        mkdir(p, 0755);
    }
    snprintf(p, sizeof p, "%s/t/ev/_schema.json", wh);
    FILE *f = fopen(p, "w");
    fputs("{\"user\": \"string\", \"shop\": \"string\", \"v\": \"long\", \"ts\": \"long\"}", f);
    fclose(f);
    snprintf(p, sizeof p, "%s/t/ev/ds=2024-01-01/part-0.csv", wh);
    f = fopen(p, "w");
    fputs("user,shop,v,ts\n", f);
    fclose(f);
    snprintf(p, sizeof p, "%s/t/snap/_schema.json", wh);
    f = fopen(p, "w");
    fputs("{\"user\": \"string\", \"tier\": \"string\", \"score\": \"long\", \"ts\": \"long\"}", f);
    fclose(f);
    snprintf(p, sizeof p, "%s/t/snap/ds=2024-01-01/part-0.csv", wh);
    f = fopen(p, "w");
    fputs("user,tier,score,ts\n", f);
    fclose(f);
}

static void teardown(void) {
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", wh);
    if (system(cmd) != 0) fprintf(stderr, "cleanup failed\n");
}

#define GB(name, key)                                                                              \
    "{\"metaData\": {\"name\": \"" name "\"}, \"sources\": [{\"events\": {\"table\": \"t.ev\", "    \
    "\"topic\": \"ev\", \"query\": {\"selects\": {\"" key "\": \"" key "\", \"v\": \"v\"}, "        \
    "\"timeColumn\": \"ts\"}}}], \"keyColumns\": [\"" key "\"], \"aggregations\": ["               \
    "{\"inputColumn\": \"v\", \"operation\": \"SUM\", \"windows\": [{\"length\": 1, \"timeUnit\": " \
    "\"DAYS\"}]}, {\"inputColumn\": \"v\", \"operation\": \"COUNT\"}]}"

static const char *join_json =
    "{\"metaData\": {\"name\": \"t.join.v1\"}, \"left\": {\"events\": {\"table\": \"t.ev\", "
    "\"query\": {\"selects\": {\"user\": \"user\", \"shop\": \"shop\"}, \"timeColumn\": \"ts\"}}}, "
    "\"joinParts\": [{\"groupBy\": " GB("t.by_user.v1", "user") "}, {\"prefix\": \"s\", \"groupBy\": "
    GB("t.by_shop.v1", "shop") "}], \"derivations\": [{\"name\": \"*\", \"expression\": \"*\"}, "
    "{\"name\": \"double_sum\", \"expression\": \"t_by_user_v1_v_sum_1d * 2\"}]}";

/* Fake tiles: SUM = length of the key bytes * 10 + (q % 7), COUNT = 3. */
static int fake_read(void *ud, const char *gb, const void *key, size_t klen, int64_t q,
                     tsr_value_t *out, tsr_arena_t *arena, tsr_error_t *err) {
    (void)ud;
    (void)key;
    (void)arena;
    if (strcmp(gb, "t.broken.v1") == 0) return tsr_error_set(err, TSR_EIO, "disk on fire");
    out[0] = tsr_value_long((int64_t)klen * 10 + q % 7);
    out[1] = tsr_value_long(3);
    return 0;
}

static tsr_config_t *load(const char *json) {
    tsr_config_options_t o = {0};
    o.warehouse = wh;
    tsr_diag_t d;
    tsr_diag_init(&d);
    tsr_config_t *c = NULL;
    int rc = tsr_config_load_string(json, strlen(json), "t", &o, &c, &d);
    if (rc) tsr_diag_print(&d, stderr);
    ck_assert_int_eq(rc, 0);
    tsr_diag_free(&d);
    return c;
}

static void install(tsr_serving_t *s, const char *json) {
    tsr_serving_item_t *it;
    tsr_error_t err;
    ck_assert_msg(tsr_serving_prepare(load(json), wh, 19723, &it, &err) == 0, "%s", err.msg);
    tsr_serving_install(s, it);
}

/* Packs a FetchRequest of rows given as "k=v,k=v@q" strings. */
static void request(const char *name, const char *const *rows, size_t n, tsr_buf_t *out) {
    tsr_arena_t a;
    tsr_arena_init(&a, 4096);
    Tessera__V1__FetchRequest rq;
    tessera__v1__fetch_request__init(&rq);
    rq.name = (char *)name;
    rq.n_rows = n;
    rq.rows = tsr_arena_alloc(&a, (n ? n : 1) * sizeof(*rq.rows));
    for (size_t i = 0; i < n; i++) {
        Tessera__V1__FetchRow *r = tsr_arena_alloc(&a, sizeof *r);
        tessera__v1__fetch_row__init(r);
        char *spec = tsr_arena_strdup(&a, rows[i]);
        char *at = strchr(spec, '@');
        if (at) {
            *at = 0;
            r->at_case = TESSERA__V1__FETCH_ROW__AT_AT_MILLIS;
            r->at_millis = atoll(at + 1);
        }
        r->keys = tsr_arena_alloc(&a, 8 * sizeof(*r->keys));
        for (char *kv = strtok(spec, ","); kv; kv = strtok(NULL, ",")) {
            char *eq = strchr(kv, '=');
            *eq = 0;
            Tessera__V1__FetchRow__KeysEntry *e = tsr_arena_alloc(&a, sizeof *e);
            tessera__v1__fetch_row__keys_entry__init(e);
            e->key = kv;
            tsr_value_t v = tsr_value_string(eq + 1, strlen(eq + 1));
            e->value = tsr_pb_value_new(&v, &a);
            r->keys[r->n_keys++] = e;
        }
        rq.rows[i] = r;
    }
    tsr_buf_clear(out);
    tsr_pb_pack(&rq.base, out);
    tsr_arena_free(&a);
}


#define NO_DEADLINE INT64_MAX

/* Answers the reads of a begun request as a many fn would (fake tiles). */
typedef struct answer_job {
    tsr_serving_req_t *r;
    tsr_arena_t *arena;
    tsr_buf_t *resp;
    int rc;
} answer_job_t;

static void *answer_main(void *arg) {
    answer_job_t *j = arg;
    size_t n;
    tsr_tile_read_req_t *reqs = tsr_serving_req_reads(j->r, &n);
    for (size_t i = 0; i < n; i++) {
        tsr_error_t e;
        tsr_error_clear(&e);
        reqs[i].status = fake_read(NULL, reqs[i].gb, reqs[i].key, reqs[i].klen, reqs[i].q, reqs[i].out, j->arena, &e);
        if (reqs[i].status) reqs[i].error = tsr_arena_strdup(j->arena, e.msg);
    }
    tsr_error_t err;
    tsr_error_clear(&err);
    j->rc = tsr_serving_fetch_finish(j->r, j->resp, &err);
    return NULL;
}

static int never_called(void *ud, tsr_tile_read_req_t *reqs, size_t n, int64_t timeout_ms, tsr_arena_t *arena,
                        tsr_error_t *err) {
    (void)ud, (void)reqs, (void)n, (void)timeout_ms, (void)arena;
    return tsr_error_set(err, TSR_EINTERNAL, "the split path never calls many");
}

START_TEST(test_split_same_answers) {
    setup();
    tsr_serving_t *a = tsr_serving_new(fake_read, NULL), *b = tsr_serving_new_many(never_called, NULL);
    const char *confs[] = {join_json, GB("t.by_user.v1", "user"), GB("t.broken.v1", "shop")};
    for (int i = 0; i < 3; i++) {
        install(a, confs[i]);
        install(b, confs[i]);
    }
    char specs[40][64];
    const char *rows[40];
    for (int i = 0; i < 40; i++) {
        switch (i % 3) {
        case 0: snprintf(specs[i], sizeof specs[i], "user=u%d,shop=s%d@%d", i, i, 1000 + i); break;
        case 1: snprintf(specs[i], sizeof specs[i], "user=uu%d@%d", i, 1000 + 3 * i); break;
        default: snprintf(specs[i], sizeof specs[i], "shop=s%d@%d", i, 86400000 + i); break;
        }
        rows[i] = specs[i];
    }
    const struct {
        int join;
        const char *name;
    } cases[] = {{1, "t.join.v1"}, {0, "t.by_user.v1"}, {0, "t.broken.v1"}};
    tsr_buf_t req, ra, rb;
    tsr_buf_init(&req);
    tsr_buf_init(&ra);
    tsr_buf_init(&rb);
    tsr_arena_t x, y;
    tsr_arena_init(&x, 4096);
    tsr_arena_init(&y, 4096);
    tsr_error_t err;
    for (size_t c = 0; c < 3; c++) {
        for (size_t nrows = 1; nrows <= 40; nrows += 39) {
            request(cases[c].name, rows, nrows, &req);
            tsr_buf_clear(&ra);
            tsr_buf_clear(&rb);
            tsr_arena_reset(&x);
            tsr_arena_reset(&y);
            ck_assert_int_eq(tsr_serving_fetch_pb(a, cases[c].join, req.data, req.len, NO_DEADLINE, &ra, &x, &err), 0);
            tsr_serving_req_t *r = NULL;
            ck_assert_msg(tsr_serving_fetch_begin(b, cases[c].join, req.data, req.len, 5000, &y, &r, &err) == 0, "%s",
                          err.msg);
            ck_assert_ptr_nonnull(r);
            ck_assert_int_gt(tsr_serving_req_timeout(r), 0);
            size_t n;
            tsr_serving_req_reads(r, &n);
            ck_assert_uint_gt(n, 0);
            /* the request buffer is gone before the other thread finishes */
            tsr_buf_clear(&req);
            memset(req.data, 0xee, req.cap);
            answer_job_t j = {r, &y, &rb, -1};
            pthread_t th;
            pthread_create(&th, NULL, answer_main, &j);
            pthread_join(th, NULL);
            ck_assert_int_eq(j.rc, 0);
            ck_assert_msg(ra.len == rb.len && memcmp(ra.data, rb.data, ra.len) == 0, "%s, %zu rows: answers differ",
                          cases[c].name, nrows);
        }
    }
    /* begin errors: nothing to release */
    tsr_serving_req_t *r = (tsr_serving_req_t *)&x;
    ck_assert_int_eq(tsr_serving_fetch_begin(b, 1, (const uint8_t *)"\xff\xff", 2, NO_DEADLINE, &y, &r, &err), TSR_EINVAL);
    ck_assert_ptr_null(r);
    request("no.such", rows, 1, &req);
    ck_assert_int_eq(tsr_serving_fetch_begin(b, 1, req.data, req.len, NO_DEADLINE, &y, &r, &err), TSR_ENOTFOUND);
    ck_assert_ptr_null(r);
    ck_assert_int_eq(tsr_serving_fetch_begin(a, 1, req.data, req.len, NO_DEADLINE, &y, &r, &err), TSR_EINVAL);
    /* abandon: the item is released (replace it, then free everything: no leak) */
    request("t.join.v1", rows, 2, &req);
    ck_assert_int_eq(tsr_serving_fetch_begin(b, 1, req.data, req.len, NO_DEADLINE, &y, &r, &err), 0);
    ck_assert_int_eq(tsr_serving_req_timeout(r), INT64_MAX);
    install(b, join_json);
    tsr_serving_fetch_abandon(r);
    tsr_serving_fetch_abandon(NULL);
    /* a deadline that passes between the halves */
    ck_assert_int_eq(tsr_serving_fetch_begin(b, 1, req.data, req.len, 30, &y, &r, &err), 0);
    struct timespec ts = {0, 60 * 1000000L};
    nanosleep(&ts, NULL);
    ck_assert_int_eq(tsr_serving_req_timeout(r), 0);
    tsr_buf_clear(&rb);
    ck_assert_int_eq(tsr_serving_fetch_finish(r, &rb, &err), TSR_ETIMEOUT);
    ck_assert_uint_eq(rb.len, 0);
    tsr_buf_free(&req);
    tsr_buf_free(&ra);
    tsr_buf_free(&rb);
    tsr_arena_free(&x);
    tsr_arena_free(&y);
    tsr_serving_free(a);
    tsr_serving_free(b);
    teardown();
}
END_TEST

static Suite *split_suite(void) {
    Suite *s = suite_create("serving_split");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_split_same_answers);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return tsr_test_run(split_suite()); }
