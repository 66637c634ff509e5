/*
 * test_serving.c — the fetch handlers over a fake tile read (fetcher/serving.h): a Join's
 * features come back under their prefixed names after derivations, a missing key column
 * fails only its part ("<part>_exception"), a GroupBy fetch names features plainly, unknown
 * names and kind mismatches are NOT_FOUND, bad bytes are INVALID_ARGUMENT, a passed deadline
 * is DEADLINE_EXCEEDED, replacing an item while it is held is safe, and the HTTP callback
 * answers the same rows. Batched serving (tsr_serving_new_many: two passes, one `many` call per
 * request) answers byte for byte what single reads answer; every response is byte for byte what
 * protobuf-c packs for it (it is encoded directly). tsr_serving_fetch_begin / _finish: a
 * batched fetch in two halves, the reads answered in between on another thread (as the cluster
 * fetcher does from its fan-out's done callback), answers what a single-read serving answers
 * (Joins with a failing part, GroupBys, 1 and 40 rows); begin errors leave nothing to release;
 * abandon releases a begun request; a deadline passed between the halves is DEADLINE_EXCEEDED
 * at finish; begin on a single-read serving is refused.
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

static Tessera__V1__FetchResponse *call(tsr_serving_t *s, int join, const char *name,
                                        const char *const *rows, size_t n, int64_t timeout,
                                        int want_rc, tsr_error_t *err) {
    tsr_buf_t req, resp;
    tsr_buf_init(&req);
    tsr_buf_init(&resp);
    request(name, rows, n, &req);
    tsr_arena_t a;
    tsr_arena_init(&a, 4096);
    int rc = tsr_serving_fetch_pb(s, join, req.data, req.len, timeout, &resp, &a, err);
    ck_assert_msg(rc == want_rc, "rc %d, want %d: %s", rc, want_rc, err->msg);
    Tessera__V1__FetchResponse *r = rc ? NULL : tessera__v1__fetch_response__unpack(NULL, resp.len, resp.data);
    if (r) { /* the directly encoded response is exactly what protobuf-c packs for it */
        tsr_buf_t re;
        tsr_buf_init(&re);
        tsr_pb_pack(&r->base, &re);
        ck_assert_uint_eq(re.len, resp.len);
        ck_assert_int_eq(memcmp(re.data, resp.data, resp.len), 0);
        tsr_buf_free(&re);
    }
    tsr_arena_free(&a);
    tsr_buf_free(&req);
    tsr_buf_free(&resp);
    return r;
}

static const Tessera__V1__Value *feature(const Tessera__V1__FetchResult *r, const char *name) {
    for (size_t i = 0; i < r->n_features; i++)
        if (strcmp(r->features[i]->key, name) == 0) return r->features[i]->value;
    return NULL;
}

#define NO_DEADLINE INT64_MAX

START_TEST(test_fetch_join_and_group_by) {
    setup();
    tsr_serving_t *s = tsr_serving_new(fake_read, NULL);
    install(s, join_json);
    install(s, GB("t.by_user.v1", "user"));
    ck_assert_uint_eq(tsr_serving_count(s), 2);
    tsr_error_t err;
    const char *rows[] = {"user=abc,shop=sh@1000", "user=abcd@1001"};
    Tessera__V1__FetchResponse *r = call(s, 1, "t.join.v1", rows, 2, NO_DEADLINE, 0, &err);
    ck_assert_uint_eq(r->n_results, 2);
    const Tessera__V1__FetchResult *a = r->results[0], *b = r->results[1];
    ck_assert_int_eq(a->status, TESSERA__V1__ROW_STATUS__SUCCESS);
    const Tessera__V1__Value *sum = feature(a, "t_by_user_v1_v_sum_1d");
    const Tessera__V1__Value *dbl = feature(a, "double_sum");
    ck_assert_ptr_nonnull(sum);
    ck_assert_ptr_nonnull(dbl);
    ck_assert_int_eq(dbl->long_value, 2 * sum->long_value);
    ck_assert_int_eq(sum->long_value % 10, 1000 % 7);
    ck_assert_ptr_nonnull(feature(a, "s_t_by_shop_v1_v_count"));
    ck_assert_int_eq(feature(a, "s_t_by_shop_v1_v_count")->long_value, 3);
    ck_assert_ptr_null(feature(a, "s_exception"));
    ck_assert_uint_eq(a->n_entity_keys, 2);
    /* row 2 lacks shop: that part fails alone */
    ck_assert_int_eq(b->status, TESSERA__V1__ROW_STATUS__SUCCESS);
    const Tessera__V1__Value *ex = feature(b, "s_exception");
    ck_assert_ptr_nonnull(ex);
    ck_assert_ptr_nonnull(strstr(ex->string_value, "missing key column 'shop'"));
    ck_assert_int_eq(feature(b, "s_t_by_shop_v1_v_count")->kind_case, TESSERA__V1__VALUE__KIND_NULL_VALUE);
    ck_assert_int_eq(feature(b, "t_by_user_v1_v_count")->long_value, 3);
    tessera__v1__fetch_response__free_unpacked(r, NULL);

    /* GroupBy: plain names; a missing key fails the row */
    const char *grows[] = {"user=x@5", "nouser=1"};
    r = call(s, 0, "t.by_user.v1", grows, 2, NO_DEADLINE, 0, &err);
    ck_assert_int_eq(r->results[0]->status, TESSERA__V1__ROW_STATUS__SUCCESS);
    ck_assert_ptr_nonnull(feature(r->results[0], "v_sum_1d"));
    ck_assert_int_eq(r->results[1]->status, TESSERA__V1__ROW_STATUS__FAILURE);
    ck_assert_ptr_nonnull(strstr(r->results[1]->error, "missing key column 'user'"));
    tessera__v1__fetch_response__free_unpacked(r, NULL);

    /* errors */
    call(s, 1, "no.such", rows, 1, NO_DEADLINE, TSR_ENOTFOUND, &err);
    ck_assert_ptr_nonnull(strstr(err.msg, "no.such"));
    call(s, 0, "t.join.v1", rows, 1, NO_DEADLINE, TSR_ENOTFOUND, &err);
    ck_assert_ptr_nonnull(strstr(err.msg, "is a Join"));
    call(s, 1, "t.join.v1", rows, 2, 0, TSR_ETIMEOUT, &err);
    tsr_arena_t ar;
    tsr_arena_init(&ar, 1024);
    tsr_buf_t resp;
    tsr_buf_init(&resp);
    const uint8_t junk[] = {0xff, 0xff, 0xff, 0x01, 0x02};
    ck_assert_int_eq(tsr_serving_fetch_pb(s, 1, junk, sizeof junk, NO_DEADLINE, &resp, &ar, &err), TSR_EINVAL);
    ck_assert_ptr_nonnull(strstr(err.msg, "malformed FetchRequest"));

    /* HTTP callback: same rows */
    tsr_http_fetch_row_t *hrows;
    size_t nh;
    const char *body = "[{\"user\": \"abc\", \"shop\": \"sh\", \"at_millis\": 1000}]";
    ck_assert_int_eq(tsr_http_fetch_parse(body, strlen(body), &ar, &hrows, &nh, &err), 0);
    tsr_http_fetch_result_t res[1];
    memset(res, 0, sizeof res);
    ck_assert_int_eq(tsr_serving_fetch_http(s, TSR_HTTP_FETCH_JOIN, "t.join.v1", hrows, nh, res, &ar, &err), 0);
    ck_assert_int_eq(res[0].ok, 1);
    tsr_buf_clear(&resp);
    tsr_http_fetch_write_response(hrows, res, nh, &resp);
    ck_assert_ptr_nonnull(strstr(tsr_buf_cstr(&resp), "\"double_sum\":"));
    ck_assert_int_eq(tsr_serving_fetch_http(s, TSR_HTTP_FETCH_GROUPBY, "t.join.v1", hrows, nh, res, &ar, &err),
                     TSR_ENOTFOUND);

    /* replace and remove */
    install(s, join_json);
    ck_assert_uint_eq(tsr_serving_count(s), 2);
    ck_assert_int_eq(tsr_serving_remove(s, "t.by_user.v1"), 0);
    ck_assert_int_eq(tsr_serving_remove(s, "t.by_user.v1"), TSR_ENOTFOUND);
    tsr_serving_stats_t st;
    tsr_serving_stats(s, &st);
    ck_assert_uint_ge(st.rows, 5);
    ck_assert_uint_ge(st.part_errors, 1);
    tsr_buf_free(&resp);
    tsr_arena_free(&ar);
    tsr_serving_free(s);
    teardown();
}
END_TEST

/* The helper thread answers a large request's second half: the response bytes are the same as
 * without it, and a passed deadline still fails the call. */
/* ---- batched reads */

/* An entity GroupBy (stored values of a snapshot table: tier, score) and a Join of four parts:
 * tiles by user, tiles by shop (prefixed), the entity part, and a part whose reads fail. */
#define ENT_GB                                                                                     \
    "{\"metaData\": {\"name\": \"t.ent.v1\"}, \"sources\": [{\"entities\": {\"snapshotTable\": "      \
    "\"t.snap\", \"query\": {\"selects\": {\"user\": \"user\", \"tier\": \"tier\", \"score\": "         \
    "\"score\"}, \"timeColumn\": \"ts\"}}}], \"keyColumns\": [\"user\"]}"

static const char *join4_json =
    "{\"metaData\": {\"name\": \"t.join4.v1\"}, \"left\": {\"events\": {\"table\": \"t.ev\", "
    "\"query\": {\"selects\": {\"user\": \"user\", \"shop\": \"shop\"}, \"timeColumn\": \"ts\"}}}, "
    "\"joinParts\": [{\"groupBy\": " GB("t.by_user.v1", "user") "}, {\"prefix\": \"s\", \"groupBy\": "
    GB("t.by_shop.v1", "shop") "}, {\"prefix\": \"e\", \"groupBy\": " ENT_GB "}, {\"prefix\": \"b\", "
    "\"groupBy\": " GB("t.broken.v1", "shop") "}], \"derivations\": [{\"name\": \"*\", \"expression\": "
    "\"*\"}, {\"name\": \"double_sum\", \"expression\": \"t_by_user_v1_v_sum_1d * 2\"}, "
    "{\"name\": \"tier_len\", \"expression\": \"length(e_t_ent_v1_tier)\"}]}";

/* Reads by GroupBy: tiles as fake_read; the entity GroupBy's two stored values from the key. */
static int fake_read2(void *ud, const char *gb, const void *key, size_t klen, int64_t q,
                      tsr_value_t *out, tsr_arena_t *arena, tsr_error_t *err) {
    if (strcmp(gb, "t.ent.v1") != 0) return fake_read(ud, gb, key, klen, q, out, arena, err);
    if (klen % 3 == 0) return 0; /* "not stored": nulls */
    char *t = tsr_arena_printf(arena, "tier%zu", klen);
    out[0] = tsr_value_string(t, strlen(t));
    out[1] = tsr_value_long((int64_t)klen);
    return 0;
}

typedef struct many_stats {
    int calls;
    size_t reads;
    int fail_all;                   /* the call itself fails */
} many_stats_t;

/* `many` over fake_read2, checking each read's output count. */
static int fake_many(void *ud, tsr_tile_read_req_t *reqs, size_t n, int64_t timeout_ms,
                     tsr_arena_t *arena, tsr_error_t *err) {
    (void)timeout_ms;
    many_stats_t *st = ud;
    st->calls++;
    st->reads += n;
    if (st->fail_all) return tsr_error_set(err, TSR_EUNAVAIL, "every worker is down");
    for (size_t i = 0; i < n; i++) {
        tsr_tile_read_req_t *r = &reqs[i];
        if (r->nout != 2) ck_abort_msg("read %zu of %s: nout %zu, want 2", i, r->gb, r->nout);
        tsr_error_t e;
        tsr_error_clear(&e);
        r->status = fake_read2(NULL, r->gb, r->key, r->klen, r->q, r->out, arena, &e);
        if (r->status) r->error = tsr_arena_strdup(arena, e.msg);
    }
    return 0;
}

/* Same bytes from single reads and from batched reads, for Joins with several parts (tiles,
 * entity, failing), missing key columns, derivations and GroupBy fetches; one many call per
 * request; the same stats; HTTP the same; a failing many call turns into part exceptions. */
START_TEST(test_many_same_answers) {
    setup();
    many_stats_t ms = {0, 0, 0};
    tsr_serving_t *a = tsr_serving_new(fake_read2, NULL), *b = tsr_serving_new_many(fake_many, &ms);
    const char *confs[] = {join_json, join4_json, GB("t.by_user.v1", "user"), ENT_GB};
    for (int i = 0; i < 4; i++) {
        install(a, confs[i]);
        install(b, confs[i]);
    }
    char specs[80][64];
    const char *rows[80];
    for (int i = 0; i < 80; i++) {
        switch (i % 5) {
        case 0: snprintf(specs[i], sizeof specs[i], "user=u%d@%d", i, 1000 + i); break;
        case 1: snprintf(specs[i], sizeof specs[i], "user=uu%d,shop=s%d@%d", i, i * 7, 1000 + 3 * i); break;
        case 2: snprintf(specs[i], sizeof specs[i], "shop=s%d@%d", i, 86400000 + i); break;
        case 3: snprintf(specs[i], sizeof specs[i], "user=,shop=x@%d", 5 + i); break;
        default: snprintf(specs[i], sizeof specs[i], "other=1,user=abc%d,shop=s@%d", i, 1000); break;
        }
        rows[i] = specs[i];
    }
    const struct {
        int join;
        const char *name;
    } cases[] = {{1, "t.join.v1"}, {1, "t.join4.v1"}, {0, "t.by_user.v1"}, {0, "t.ent.v1"}};
    tsr_buf_t req, ra, rb;
    tsr_buf_init(&req);
    tsr_buf_init(&ra);
    tsr_buf_init(&rb);
    tsr_arena_t x, y;
    tsr_arena_init(&x, 4096);
    tsr_arena_init(&y, 4096);
    tsr_error_t err;
    for (size_t c = 0; c < 4; c++) {
        for (size_t nrows = 0; nrows <= 80; nrows += 40) {
            request(cases[c].name, rows, nrows ? nrows : 1, &req);
            tsr_buf_clear(&ra);
            tsr_buf_clear(&rb);
            tsr_arena_reset(&x);
            tsr_arena_reset(&y);
            int calls = ms.calls;
            ck_assert_int_eq(tsr_serving_fetch_pb(a, cases[c].join, req.data, req.len, NO_DEADLINE, &ra, &x, &err), 0);
            ck_assert_msg(tsr_serving_fetch_pb(b, cases[c].join, req.data, req.len, NO_DEADLINE, &rb, &y, &err) == 0,
                          "%s", err.msg);
            ck_assert_msg(ra.len == rb.len && memcmp(ra.data, rb.data, ra.len) == 0, "%s, %zu rows: answers differ",
                          cases[c].name, nrows);
            ck_assert_int_le(ms.calls, calls + 1);
        }
    }
    tsr_serving_stats_t sa, sb;
    tsr_serving_stats(a, &sa);
    tsr_serving_stats(b, &sb);
    ck_assert_uint_eq(sa.rows, sb.rows);
    ck_assert_uint_eq(sa.row_failures, sb.row_failures);
    ck_assert_uint_eq(sa.part_errors, sb.part_errors);
    ck_assert_uint_gt(sb.part_errors, 0);
    ck_assert_uint_gt(ms.reads, 0);

    /* the Join of four parts: entity values, the failing part's exception, a derivation */
    request("t.join4.v1", rows + 1, 1, &req);
    tsr_buf_clear(&rb);
    ck_assert_int_eq(tsr_serving_fetch_pb(b, 1, req.data, req.len, NO_DEADLINE, &rb, &y, &err), 0);
    Tessera__V1__FetchResponse *r = tessera__v1__fetch_response__unpack(NULL, rb.len, rb.data);
    ck_assert_ptr_nonnull(r);
    ck_assert_int_eq(r->results[0]->status, TESSERA__V1__ROW_STATUS__SUCCESS);
    ck_assert_ptr_nonnull(feature(r->results[0], "e_t_ent_v1_score"));
    ck_assert_ptr_nonnull(feature(r->results[0], "tier_len"));
    ck_assert_str_eq(feature(r->results[0], "b_exception")->string_value, "disk on fire");
    ck_assert_ptr_null(feature(r->results[0], "e_exception"));
    tessera__v1__fetch_response__free_unpacked(r, NULL);

    /* HTTP: the same features */
    tsr_http_fetch_row_t *hrows;
    size_t nh;
    const char *body = "[{\"user\": \"abc\", \"shop\": \"sh\", \"at_millis\": 1000}, {\"user\": \"q\"}]";
    ck_assert_int_eq(tsr_http_fetch_parse(body, strlen(body), &x, &hrows, &nh, &err), 0);
    tsr_http_fetch_result_t res[2];
    hrows[1].has_at_millis = 1; /* "now" would differ between the two calls */
    hrows[1].at_millis = 777;
    ck_assert_int_eq(tsr_serving_fetch_http(a, TSR_HTTP_FETCH_JOIN, "t.join4.v1", hrows, nh, res, &x, &err), 0);
    tsr_buf_clear(&ra);
    tsr_http_fetch_write_response(hrows, res, nh, &ra);
    ck_assert_int_eq(tsr_serving_fetch_http(b, TSR_HTTP_FETCH_JOIN, "t.join4.v1", hrows, nh, res, &y, &err), 0);
    tsr_buf_clear(&rb);
    tsr_http_fetch_write_response(hrows, res, nh, &rb);
    ck_assert_str_eq(tsr_buf_cstr(&ra), tsr_buf_cstr(&rb));

    /* a failed many call: every part that read has an exception with its message */
    ms.fail_all = 1;
    request("t.join4.v1", rows + 1, 1, &req);
    tsr_buf_clear(&rb);
    ck_assert_int_eq(tsr_serving_fetch_pb(b, 1, req.data, req.len, NO_DEADLINE, &rb, &y, &err), 0);
    r = tessera__v1__fetch_response__unpack(NULL, rb.len, rb.data);
    ck_assert_str_eq(feature(r->results[0], "e_exception")->string_value, "every worker is down");
    ck_assert_str_eq(feature(r->results[0], "s_exception")->string_value, "every worker is down");
    tessera__v1__fetch_response__free_unpacked(r, NULL);
    /* GroupBy: the row fails with it */
    request("t.by_user.v1", rows, 1, &req);
    tsr_buf_clear(&rb);
    ck_assert_int_eq(tsr_serving_fetch_pb(b, 0, req.data, req.len, NO_DEADLINE, &rb, &y, &err), 0);
    r = tessera__v1__fetch_response__unpack(NULL, rb.len, rb.data);
    ck_assert_int_eq(r->results[0]->status, TESSERA__V1__ROW_STATUS__FAILURE);
    ck_assert_str_eq(r->results[0]->error, "every worker is down");
    tessera__v1__fetch_response__free_unpacked(r, NULL);
    /* a passed deadline */
    ck_assert_int_eq(tsr_serving_fetch_pb(b, 1, req.data, req.len, 0, &rb, &y, &err), TSR_ENOTFOUND);
    request("t.join4.v1", rows, 2, &req);
    ck_assert_int_eq(tsr_serving_fetch_pb(b, 1, req.data, req.len, 0, &rb, &y, &err), TSR_ETIMEOUT);
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

START_TEST(test_helper_same_answers) {
    setup();
    tsr_serving_t *a = tsr_serving_new(fake_read, NULL), *b = tsr_serving_new(fake_read, NULL);
    ck_assert_int_eq(tsr_serving_set_helper(b, 1), 0);
    install(a, join_json);
    install(b, join_json);
    char specs[64][48];
    const char *rows[64];
    for (int i = 0; i < 64; i++) {
        snprintf(specs[i], sizeof specs[i], i % 5 ? "user=u%d,shop=s%d@%d" : "user=u%d@%d", i, i * 7, 1000 + i);
        rows[i] = specs[i];
    }
    tsr_buf_t req, ra, rb;
    tsr_buf_init(&req);
    tsr_buf_init(&ra);
    tsr_buf_init(&rb);
    request("t.join.v1", rows, 64, &req);
    tsr_arena_t x, y;
    tsr_arena_init(&x, 4096);
    tsr_arena_init(&y, 4096);
    tsr_error_t err;
    ck_assert_int_eq(tsr_serving_fetch_pb(a, 1, req.data, req.len, NO_DEADLINE, &ra, &x, &err), 0);
    for (int round = 0; round < 20; round++) {
        tsr_buf_clear(&rb);
        tsr_arena_reset(&y);
        ck_assert_int_eq(tsr_serving_fetch_pb(b, 1, req.data, req.len, NO_DEADLINE, &rb, &y, &err), 0);
        if (ra.len != rb.len || memcmp(ra.data, rb.data, ra.len) != 0)
            ck_abort_msg("round %d: the helper changed the answer", round);
    }
    ck_assert_int_eq(tsr_serving_fetch_pb(b, 1, req.data, req.len, 0, &rb, &y, &err), TSR_ETIMEOUT);
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

/* Fetch requests are untrusted bytes: random ones and mutations of a valid one (bytes
 * flipped, truncated, extended) get an answer or an error, never a crash (run under ASan in
 * CI). Seeded, so a failure reproduces. */
START_TEST(test_fuzz_requests) {
    setup();
    tsr_serving_t *s = tsr_serving_new(fake_read, NULL);
    ck_assert_int_eq(tsr_serving_set_helper(s, 1), 0);
    install(s, join_json);
    install(s, GB("t.by_user.v1", "user"));
    char specs[40][48];
    const char *rows[40];
    for (int i = 0; i < 40; i++) {
        snprintf(specs[i], sizeof specs[i], "user=u%d,shop=s%d@%d", i, i, 1000 + i);
        rows[i] = specs[i];
    }
    tsr_buf_t good, req, resp;
    tsr_buf_init(&good);
    tsr_buf_init(&req);
    tsr_buf_init(&resp);
    request("t.join.v1", rows, 40, &good);
    tsr_arena_t a;
    tsr_arena_init(&a, 4096);
    tsr_rng_t r = {20261126};
    int answered = 0;
    for (int i = 0; i < 3000; i++) {
        tsr_buf_clear(&req);
        int kind = (int)tsr_rng_below(&r, 4);
        if (kind == 0) { /* random bytes */
            size_t n = (size_t)tsr_rng_below(&r, 200);
            for (size_t k = 0; k < n; k++) tsr_buf_putc(&req, (int)tsr_rng_below(&r, 256));
        } else {
            tsr_buf_append(&req, good.data, good.len);
            if (kind == 1) { /* flip a few bytes */
                for (int k = 0; k < 1 + (int)tsr_rng_below(&r, 4); k++)
                    req.data[tsr_rng_below(&r, req.len)] = (uint8_t)tsr_rng_below(&r, 256);
            } else if (kind == 2) { /* truncate */
                req.len = (size_t)tsr_rng_below(&r, req.len);
            } else { /* append junk */
                for (int k = 0; k < 1 + (int)tsr_rng_below(&r, 16); k++)
                    tsr_buf_putc(&req, (int)tsr_rng_below(&r, 256));
            }
        }
        /* the quick row count: never reads past the end, at most one row per two bytes */
        if (tsr_serving_request_rows(req.data, req.len) > req.len / 2)
            ck_abort_msg("request %d: %zu rows counted in %zu bytes", i,
                         tsr_serving_request_rows(req.data, req.len), req.len);
        tsr_buf_clear(&resp);
        tsr_arena_reset(&a);
        tsr_error_t err;
        tsr_error_clear(&err);
        int rc = tsr_serving_fetch_pb(s, (int)(i & 1), req.data, req.len, NO_DEADLINE, &resp, &a, &err);
        if (rc != 0 && rc != TSR_EINVAL && rc != TSR_ENOTFOUND)
            ck_abort_msg("request %d: unexpected rc %d (%s)", i, rc, err.msg);
        if (rc != 0 && !err.msg[0]) ck_abort_msg("request %d: error %d without a message", i, rc);
        answered += rc == 0;
    }
    ck_assert_int_gt(answered, 0);
    tsr_buf_free(&good);
    tsr_buf_free(&req);
    tsr_buf_free(&resp);
    tsr_arena_free(&a);
    tsr_serving_free(s);
    teardown();
}
END_TEST

/* tsr_serving_request_rows counts a request's rows from its top-level fields: exact on whole
 * requests (0, 1, 40 rows, before or after the name), the rows before the cut on truncated
 * ones, and nothing on bytes that are not a FetchRequest. */
START_TEST(test_request_rows) {
    char specs[40][48];
    const char *rows[40];
    for (int i = 0; i < 40; i++) {
        snprintf(specs[i], sizeof specs[i], "user=u%d,shop=s%d@%d", i, i, 1000 + i);
        rows[i] = specs[i];
    }
    tsr_buf_t req;
    tsr_buf_init(&req);
    const size_t counts[] = {0, 1, 40};
    for (size_t c = 0; c < 3; c++) {
        tsr_buf_clear(&req);
        request("t.join.v1", rows, counts[c], &req);
        ck_assert_uint_eq(tsr_serving_request_rows(req.data, req.len), counts[c]);
    }
    /* a cut request: rows up to the cut, never more */
    size_t prev = 0;
    for (size_t cut = 0; cut <= req.len; cut++) {
        size_t k = tsr_serving_request_rows(req.data, cut);
        if (k < prev || k > 40) ck_abort_msg("cut at %zu: %zu rows (before: %zu)", cut, k, prev);
        prev = k;
    }
    ck_assert_uint_eq(prev, 40);
    /* rows first, name last: protobuf allows any field order */
    const uint8_t swapped[] = {0x12, 0x00, 0x12, 0x02, 0x10, 0x05, 0x0a, 0x01, 'j'};
    ck_assert_uint_eq(tsr_serving_request_rows(swapped, sizeof swapped), 2);
    /* other fields are skipped (a varint 3, a fixed64 4, a fixed32 5 before a row) */
    const uint8_t skipped[] = {0x18, 0x96, 0x01, 0x21, 1, 2, 3, 4, 5, 6, 7, 8, 0x2d, 1, 2, 3, 4, 0x12, 0x00};
    ck_assert_uint_eq(tsr_serving_request_rows(skipped, sizeof skipped), 1);
    /* not a FetchRequest: a group (wire type 3), a varint without its end, a length past the end */
    const uint8_t junk1[] = {0x0b, 0x12, 0x00};
    const uint8_t junk2[] = {0x12, 0x80, 0x80};
    const uint8_t junk3[] = {0x12, 0x00, 0x12, 0x7f, 0x00};
    ck_assert_uint_eq(tsr_serving_request_rows(junk1, sizeof junk1), 0);
    ck_assert_uint_eq(tsr_serving_request_rows(junk2, sizeof junk2), 0);
    ck_assert_uint_eq(tsr_serving_request_rows(junk3, sizeof junk3), 1);
    ck_assert_uint_eq(tsr_serving_request_rows(NULL, 0), 0);
    tsr_buf_free(&req);
}
END_TEST

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

static Suite *serving_suite(void) {
    Suite *s = suite_create("serving");
    TCase *tc = tcase_create("serving");
    tcase_add_test(tc, test_fetch_join_and_group_by);
    tcase_add_test(tc, test_helper_same_answers);
    tcase_add_test(tc, test_fuzz_requests);
    tcase_add_test(tc, test_request_rows);
    tcase_add_test(tc, test_many_same_answers);
    tcase_add_test(tc, test_split_same_answers);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return tsr_test_run(serving_suite()); }
