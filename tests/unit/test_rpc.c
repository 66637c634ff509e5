/*
 * test_rpc.c — the gRPC layer (tsr/rpc.h) end to end on 127.0.0.1:0: an echo service, a
 * streaming service, deadlines, metadata, status mapping, deferred calls, Health Check/Watch,
 * protobuf-c messages from tessera.proto, malformed input, and shutdown with calls in flight.
 *
 * Every test starts its own server and client inside the forked test process (Check + fork:
 * gRPC must never be initialised in the parent). Runs ASan-clean.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "health.pb-c.h"
#include "tessera.pb-c.h"
#include "tsr/rpc.h"
#include "tsr_test.h"

/* ------------------------------------------------------------------------------------------
 * the test services */

static atomic_llong g_slow_remaining = -1;  /* what the slow handler saw */
static atomic_int g_slow_done = 0;
static atomic_int g_stream_sent = 0;        /* messages the stream handler managed to send */
static atomic_int g_stream_send_failed = 0;
static atomic_int g_stream_ended = 0;

static void sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Echoes the request; echoes metadata "x-trace" back as "echo-x-trace" and "x-bin-bin" too. */
static int h_echo(void *ud, tsr_rpc_call_t *call, const uint8_t *req, size_t n, tsr_buf_t *resp,
                  tsr_error_t *err) {
    size_t len;
    const char *v = tsr_rpc_call_metadata(call, "x-trace", &len);
    if (v) tsr_rpc_call_add_metadata(call, "echo-x-trace", v, len, NULL);
    v = tsr_rpc_call_metadata(call, "x-blob-bin", &len);
    if (v) tsr_rpc_call_add_metadata(call, "echo-blob-bin", v, len, NULL);
    tsr_buf_append(resp, req, n);
    return TSR_OK;
}

/* Request: decimal milliseconds to sleep. Records the remaining deadline it saw. */
static int h_slow(void *ud, tsr_rpc_call_t *call, const uint8_t *req, size_t n, tsr_buf_t *resp,
                  tsr_error_t *err) {
    char tmp[32];
    snprintf(tmp, sizeof(tmp), "%.*s", (int)(n < 31 ? n : 31), (const char *)req);
    atomic_store(&g_slow_remaining, (long long)tsr_rpc_call_remaining_ms(call));
    sleep_ms(atoi(tmp));
    atomic_store(&g_slow_done, 1);
    tsr_buf_puts(resp, "slept");
    return TSR_OK;
}

/* Request: a TSR error code in decimal. Fails with it (or succeeds for 0). */
static int h_fail(void *ud, tsr_rpc_call_t *call, const uint8_t *req, size_t n, tsr_buf_t *resp,
                  tsr_error_t *err) {
    char tmp[32];
    snprintf(tmp, sizeof(tmp), "%.*s", (int)(n < 31 ? n : 31), (const char *)req);
    int code = atoi(tmp);
    if (code == 0) return TSR_OK;
    return tsr_error_set(err, code, "failing on purpose with %s", tsr_error_name(code));
}

/* Deferred: a thread finishes the call 20 ms later with the reversed request. */
typedef struct defer_job {
    tsr_rpc_call_t *call;
    char data[64];
    size_t n;
} defer_job_t;

static void *defer_main(void *arg) {
    defer_job_t *j = arg;
    sleep_ms(20);
    char out[64];
    for (size_t i = 0; i < j->n; i++) out[i] = j->data[j->n - 1 - i];
    tsr_rpc_call_finish(j->call, TSR_OK, out, j->n, NULL);
    free(j);
    return NULL;
}

static int h_defer(void *ud, tsr_rpc_call_t *call, const uint8_t *req, size_t n, tsr_buf_t *resp,
                   tsr_error_t *err) {
    if (n > 64) return tsr_error_set(err, TSR_EINVAL, "request longer than 64 bytes");
    defer_job_t *j = malloc(sizeof(*j));
    j->call = call;
    memcpy(j->data, req, n);
    j->n = n;
    pthread_t th;
    pthread_create(&th, NULL, defer_main, j);
    pthread_detach(th);
    return TSR_RPC_DEFER;
}

/* Streaming: request "N" or "N:fail" → sends "msg-0".."msg-(N-1)", optionally fails at the end;
 * "N:slow" sleeps 5 ms between messages. */
static int h_count(void *ud, tsr_rpc_call_t *call, const uint8_t *req, size_t n,
                   tsr_error_t *err) {
    char tmp[32];
    snprintf(tmp, sizeof(tmp), "%.*s", (int)(n < 31 ? n : 31), (const char *)req);
    int count = atoi(tmp);
    int slow = strstr(tmp, ":slow") != NULL;
    for (int i = 0; i < count; i++) {
        char msg[32];
        int len = snprintf(msg, sizeof(msg), "msg-%d", i);
        if (tsr_rpc_call_send(call, msg, (size_t)len) != TSR_OK) {
            atomic_store(&g_stream_send_failed, 1);
            atomic_store(&g_stream_ended, 1);
            return tsr_error_set(err, TSR_EUNAVAIL, "client went away");
        }
        atomic_fetch_add(&g_stream_sent, 1);
        if (slow) sleep_ms(5);
    }
    atomic_store(&g_stream_ended, 1);
    if (strstr(tmp, ":fail"))
        return tsr_error_set(err, TSR_ECORRUPT, "stream broke after %d messages", count);
    return TSR_OK;
}

/* ---- FetchJoin over tessera.proto: echoes keys, one feature per key plus an exception ---- */

static int h_fetch(void *ud, tsr_rpc_call_t *call, const uint8_t *req, size_t n, tsr_buf_t *resp,
                   tsr_error_t *err) {
    Tessera__V1__FetchRequest *rq = tessera__v1__fetch_request__unpack(NULL, n, req);
    if (!rq) return tsr_error_set(err, TSR_EINVAL, "FetchRequest: malformed protobuf (%zu bytes)", n);
    if (strcmp(rq->name, "known.join") != 0) {
        int rc = tsr_error_set(err, TSR_ENOTFOUND, "join '%s' not found", rq->name);
        tessera__v1__fetch_request__free_unpacked(rq, NULL);
        return rc;
    }
    Tessera__V1__FetchResponse out = TESSERA__V1__FETCH_RESPONSE__INIT;
    size_t nr = rq->n_rows;
    Tessera__V1__FetchResult *res = calloc(nr + 1, sizeof(*res));
    Tessera__V1__FetchResult **resp_ptrs = calloc(nr + 1, sizeof(*resp_ptrs));
    Tessera__V1__FetchResult__FeaturesEntry *fe = calloc(2 * nr + 1, sizeof(*fe));
    Tessera__V1__FetchResult__FeaturesEntry **fep = calloc(2 * nr + 1, sizeof(*fep));
    Tessera__V1__Value *vals = calloc(2 * nr + 1, sizeof(*vals));
    for (size_t i = 0; i < nr; i++) {
        Tessera__V1__FetchRow *row = rq->rows[i];
        Tessera__V1__FetchResult r = TESSERA__V1__FETCH_RESULT__INIT;
        res[i] = r;
        res[i].status = TESSERA__V1__ROW_STATUS__SUCCESS;
        /* entity keys echoed: share the decoded entries (same layout as FeaturesEntry) */
        res[i].n_entity_keys = row->n_keys;
        res[i].entity_keys = (Tessera__V1__FetchResult__EntityKeysEntry **)row->keys;
        Tessera__V1__FetchResult__FeaturesEntry e = TESSERA__V1__FETCH_RESULT__FEATURES_ENTRY__INIT;
        Tessera__V1__Value v = TESSERA__V1__VALUE__INIT;
        /* feature 1: at_millis as long, or null when absent */
        fe[2 * i] = e;
        fe[2 * i].key = "part_at";
        vals[2 * i] = v;
        if (row->at_case == TESSERA__V1__FETCH_ROW__AT_AT_MILLIS) {
            vals[2 * i].kind_case = TESSERA__V1__VALUE__KIND_LONG_VALUE;
            vals[2 * i].long_value = row->at_millis;
        } else {
            vals[2 * i].kind_case = TESSERA__V1__VALUE__KIND_NULL_VALUE;
        }
        fe[2 * i].value = &vals[2 * i];
        /* feature 2: a per-part exception (SPEC §6) */
        fe[2 * i + 1] = e;
        fe[2 * i + 1].key = "bad_part_exception";
        vals[2 * i + 1] = v;
        vals[2 * i + 1].kind_case = TESSERA__V1__VALUE__KIND_STRING_VALUE;
        vals[2 * i + 1].string_value = "missing key column user_id";
        fe[2 * i + 1].value = &vals[2 * i + 1];
        fep[2 * i] = &fe[2 * i];
        fep[2 * i + 1] = &fe[2 * i + 1];
        res[i].n_features = 2;
        res[i].features = &fep[2 * i];
        resp_ptrs[i] = &res[i];
    }
    out.n_results = nr;
    out.results = resp_ptrs;
    size_t sz = tessera__v1__fetch_response__get_packed_size(&out);
    tsr_buf_reserve(resp, sz);
    tessera__v1__fetch_response__pack(&out, resp->data);
    resp->len = sz;
    free(res); free(resp_ptrs); free(fe); free(fep); free(vals);
    tessera__v1__fetch_request__free_unpacked(rq, NULL);
    return TSR_OK;
}

/* ------------------------------------------------------------------------------------------
 * fixture */

typedef struct fx {
    tsr_rpc_server_t *srv;
    tsr_rpc_client_t *cli;
    char target[64];
} fx_t;

static void fx_start(fx_t *f, int cq_threads) {
    tsr_error_t err;
    tsr_rpc_server_opts_t o = {0};
    o.cq_threads = cq_threads;
    f->srv = tsr_rpc_server_new("127.0.0.1:0", &o, &err);
    ck_assert_msg(f->srv, "server_new: %s", err.msg);
    ck_assert_int_gt(tsr_rpc_server_port(f->srv), 0);
    ck_assert_int_eq(tsr_rpc_server_add_unary(f->srv, "/test.Echo/Echo", h_echo, NULL, &err), 0);
    ck_assert_int_eq(tsr_rpc_server_add_unary(f->srv, "/test.Echo/Slow", h_slow, NULL, &err), 0);
    ck_assert_int_eq(tsr_rpc_server_add_unary(f->srv, "/test.Echo/Fail", h_fail, NULL, &err), 0);
    ck_assert_int_eq(tsr_rpc_server_add_unary(f->srv, "/test.Echo/Defer", h_defer, NULL, &err), 0);
    ck_assert_int_eq(tsr_rpc_server_add_stream(f->srv, "/test.Stream/Count", h_count, NULL, &err),
                     0);
    ck_assert_int_eq(tsr_rpc_server_add_unary(f->srv, "/tessera.v1.FeatureService/FetchJoin",
                                              h_fetch, NULL, &err), 0);
    ck_assert_int_eq(tsr_rpc_health_register(f->srv, &err), 0);
    ck_assert_int_eq(tsr_rpc_server_start(f->srv, &err), 0);
    snprintf(f->target, sizeof(f->target), "127.0.0.1:%d", tsr_rpc_server_port(f->srv));
    f->cli = tsr_rpc_client_new(f->target, &err);
    ck_assert_msg(f->cli, "client_new: %s", err.msg);
}

static void fx_stop(fx_t *f) {
    tsr_rpc_client_free(f->cli);
    tsr_rpc_server_free(f->srv);
}

static const tsr_rpc_call_opts_t OPTS_5S = {.timeout_ms = 5000};

/* ------------------------------------------------------------------------------------------
 * tests */

START_TEST(test_status_mapping) {
    ck_assert_int_eq(tsr_rpc_status_to_error(0), TSR_OK);
    ck_assert_int_eq(tsr_rpc_status_to_error(TSR_GRPC_INVALID_ARGUMENT), TSR_EINVAL);
    ck_assert_int_eq(tsr_rpc_status_to_error(TSR_GRPC_DEADLINE_EXCEEDED), TSR_ETIMEOUT);
    ck_assert_int_eq(tsr_rpc_status_to_error(TSR_GRPC_NOT_FOUND), TSR_ENOTFOUND);
    ck_assert_int_eq(tsr_rpc_status_to_error(TSR_GRPC_UNIMPLEMENTED), TSR_EUNSUPPORTED);
    ck_assert_int_eq(tsr_rpc_status_to_error(TSR_GRPC_UNAVAILABLE), TSR_EUNAVAIL);
    ck_assert_int_eq(tsr_rpc_status_to_error(TSR_GRPC_CANCELLED), TSR_EUNAVAIL);
    ck_assert_int_eq(tsr_rpc_status_to_error(16), TSR_EINTERNAL);
    /* round trip through the one table: every TSR code's status maps back to a code with the
     * same status */
    for (int code = -1; code >= -15; code--) {
        int st = tsr_error_grpc_status(code);
        ck_assert_int_eq(tsr_error_grpc_status(tsr_rpc_status_to_error(st)), st);
    }
    ck_assert_str_eq(tsr_rpc_status_name(4), "DEADLINE_EXCEEDED");
    ck_assert_str_eq(tsr_rpc_status_name(99), "UNKNOWN_STATUS");
}
END_TEST

/* rpc_status.c: the first server or client of a process turns abseil's debug deadlock detector
 * off through its mangled C++ name (docs/rpc.md); a Debian abseil under another name would
 * silently leave it on. */
int tsr__rpc_absl_tuned(void);

START_TEST(test_absl_deadlock_detector_off) {
    tsr_error_t err;
    tsr_rpc_client_t *c = tsr_rpc_client_new("127.0.0.1:1", &err);
    ck_assert_ptr_nonnull(c);
    ck_assert_msg(tsr__rpc_absl_tuned(), "absl::SetMutexDeadlockDetectionMode was not found");
    tsr_rpc_client_free(c);
}
END_TEST

START_TEST(test_server_api_errors) {
    tsr_error_t err;
    tsr_rpc_server_t *s = tsr_rpc_server_new("127.0.0.1:0", NULL, &err);
    ck_assert_ptr_nonnull(s);
    ck_assert_int_eq(tsr_rpc_server_add_unary(s, "nope", h_echo, NULL, &err), TSR_EINVAL);
    ck_assert_int_eq(tsr_rpc_server_add_unary(s, "/a.B", h_echo, NULL, &err), TSR_EINVAL);
    ck_assert_int_eq(tsr_rpc_server_add_unary(s, "/a.B/", h_echo, NULL, &err), TSR_EINVAL);
    ck_assert_int_eq(tsr_rpc_server_add_unary(s, "/a.B/C/D", h_echo, NULL, &err), TSR_EINVAL);
    ck_assert_int_eq(tsr_rpc_server_add_unary(s, "/a.B/C", NULL, NULL, &err), TSR_EINVAL);
    ck_assert_int_eq(tsr_rpc_server_add_unary(s, "/a.B/C", h_echo, NULL, &err), 0);
    ck_assert_int_eq(tsr_rpc_server_add_unary(s, "/a.B/C", h_echo, NULL, &err), TSR_EEXIST);
    ck_assert_ptr_nonnull(strstr(err.msg, "/a.B/C"));
    /* a second server on the same port fails with a clear error */
    char addr[64];
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", tsr_rpc_server_port(s));
    ck_assert_int_eq(tsr_rpc_server_start(s, &err), 0);
    ck_assert_int_eq(tsr_rpc_server_start(s, &err), TSR_EINVAL);
    ck_assert_int_eq(tsr_rpc_server_add_unary(s, "/a.B/E", h_echo, NULL, &err), TSR_EINVAL);
    tsr_rpc_server_t *s2 = tsr_rpc_server_new(addr, NULL, &err);
    ck_assert_ptr_null(s2);
    ck_assert_int_eq(err.code, TSR_EIO);
    ck_assert_ptr_nonnull(strstr(err.msg, addr));
    tsr_rpc_server_free(s);
    /* a server that is never started is freed cleanly */
    s = tsr_rpc_server_new("127.0.0.1:0", NULL, &err);
    ck_assert_ptr_nonnull(s);
    tsr_rpc_server_free(s);
    ck_assert_ptr_null(tsr_rpc_client_new("", &err));
}
END_TEST

START_TEST(test_unary_echo_sizes) {
    fx_t f;
    fx_start(&f, 1);
    tsr_rpc_reply_t r;
    tsr_rpc_reply_init(&r);
    tsr_error_t err;
    size_t sizes[] = {0, 1, 100, 65536, 8u << 20};
    tsr_rng_t rng = {42};
    for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
        size_t n = sizes[k];
        uint8_t *p = malloc(n ? n : 1);
        for (size_t i = 0; i < n; i++) p[i] = (uint8_t)tsr_rng_next(&rng);
        int rc = tsr_rpc_client_call(f.cli, "/test.Echo/Echo", p, n, &OPTS_5S, &r, &err);
        ck_assert_msg(rc == 0, "size %zu: %s", n, err.msg);
        ck_assert_int_eq(r.status, 0);
        ck_assert_uint_eq(r.body.len, n);
        ck_assert(n == 0 || memcmp(r.body.data, p, n) == 0);
        free(p);
    }
    tsr_rpc_server_stats_t st;
    tsr_rpc_server_stats(f.srv, &st);
    ck_assert_uint_eq(st.calls, 5);
    ck_assert_uint_eq(st.failed, 0);
    tsr_rpc_reply_free(&r);
    fx_stop(&f);
}
END_TEST

typedef struct conc_arg {
    tsr_rpc_client_t *cli;
    int id, n, bad;
} conc_arg_t;

static void *conc_main(void *p) {
    conc_arg_t *a = p;
    tsr_rpc_reply_t r;
    tsr_rpc_reply_init(&r);
    tsr_error_t err;
    for (int i = 0; i < a->n; i++) {
        char msg[64];
        int len = snprintf(msg, sizeof(msg), "thread %d call %d", a->id, i);
        int rc = tsr_rpc_client_call(a->cli, "/test.Echo/Echo", msg, (size_t)len, &OPTS_5S, &r,
                                     &err);
        if (rc || r.body.len != (size_t)len || memcmp(r.body.data, msg, (size_t)len) != 0)
            a->bad++;
    }
    tsr_rpc_reply_free(&r);
    return NULL;
}

static void run_concurrent(int cq_threads) {
    fx_t f;
    fx_start(&f, cq_threads);
    enum { NT = 6, NC = 150 };
    pthread_t th[NT];
    conc_arg_t args[NT];
    for (int t = 0; t < NT; t++) {
        args[t] = (conc_arg_t){f.cli, t, NC, 0};
        pthread_create(&th[t], NULL, conc_main, &args[t]);
    }
    for (int t = 0; t < NT; t++) {
        pthread_join(th[t], NULL);
        ck_assert_int_eq(args[t].bad, 0);
    }
    tsr_rpc_server_stats_t st;
    tsr_rpc_server_stats(f.srv, &st);
    ck_assert_uint_eq(st.calls, NT * NC);
    fx_stop(&f);
}

START_TEST(test_concurrent_calls) { run_concurrent(1); }
END_TEST

START_TEST(test_concurrent_calls_two_cq_threads) { run_concurrent(2); }
END_TEST

START_TEST(test_deadline) {
    fx_t f;
    fx_start(&f, 1);
    tsr_rpc_reply_t r;
    tsr_rpc_reply_init(&r);
    tsr_error_t err;
    /* 500 ms: generous enough that even a loaded ASan build dispatches the call in time */
    tsr_rpc_call_opts_t o = {.timeout_ms = 500};
    int rc = tsr_rpc_client_call(f.cli, "/test.Echo/Slow", "1500", 4, &o, &r, &err);
    ck_assert_int_eq(rc, TSR_ETIMEOUT);
    ck_assert_int_eq(r.status, TSR_GRPC_DEADLINE_EXCEEDED);
    ck_assert_ptr_nonnull(strstr(err.msg, "DEADLINE_EXCEEDED"));
    ck_assert_ptr_nonnull(strstr(err.msg, "/test.Echo/Slow"));
    for (int i = 0; i < 600 && atomic_load(&g_slow_remaining) == -1; i++) sleep_ms(5);
    long long seen = atomic_load(&g_slow_remaining);
    ck_assert_msg(seen > 0 && seen <= 520, "handler saw %lld ms left", seen);
    /* wait for the slow handler to end; then a call without a deadline sees none */
    for (int i = 0; i < 600 && !atomic_load(&g_slow_done); i++) sleep_ms(5);
    ck_assert(atomic_load(&g_slow_done));
    rc = tsr_rpc_client_call(f.cli, "/test.Echo/Slow", "1", 1, NULL, &r, &err);
    ck_assert_int_eq(rc, 0);
    ck_assert_int_eq(atomic_load(&g_slow_remaining), TSR_RPC_NO_DEADLINE);
    /* a generous deadline is seen roughly as given */
    o.timeout_ms = 3000;
    rc = tsr_rpc_client_call(f.cli, "/test.Echo/Slow", "0", 1, &o, &r, &err);
    ck_assert_int_eq(rc, 0);
    seen = atomic_load(&g_slow_remaining);
    /* gRPC rounds the grpc-timeout header up a little when encoding it */
    ck_assert_msg(seen > 2000 && seen <= 3100, "handler saw %lld ms left", seen);
    tsr_rpc_reply_free(&r);
    fx_stop(&f);
}
END_TEST

START_TEST(test_metadata) {
    fx_t f;
    fx_start(&f, 1);
    tsr_rpc_reply_t r;
    tsr_rpc_reply_init(&r);
    tsr_error_t err;
    const char blob[5] = {0, 1, 2, (char)0xff, 0};
    tsr_rpc_md_t md[2] = {{"x-trace", "abc-123", 7}, {"x-blob-bin", blob, 5}};
    tsr_rpc_call_opts_t o = {.timeout_ms = 5000, .md = md, .n_md = 2};
    int rc = tsr_rpc_client_call(f.cli, "/test.Echo/Echo", "hi", 2, &o, &r, &err);
    ck_assert_int_eq(rc, 0);
    size_t len = 0;
    const char *v = tsr_rpc_reply_metadata(&r, "echo-x-trace", &len);
    ck_assert_ptr_nonnull(v);
    ck_assert_uint_eq(len, 7);
    ck_assert(memcmp(v, "abc-123", 7) == 0);
    v = tsr_rpc_reply_metadata(&r, "echo-blob-bin", &len);
    ck_assert_ptr_nonnull(v);
    ck_assert_uint_eq(len, 5);
    ck_assert(memcmp(v, blob, 5) == 0);
    ck_assert_ptr_null(tsr_rpc_reply_metadata(&r, "x-missing", NULL));
    /* an illegal key is refused before anything is sent */
    tsr_rpc_md_t bad = {"X-Upper", "v", 1};
    o.md = &bad;
    o.n_md = 1;
    rc = tsr_rpc_client_call(f.cli, "/test.Echo/Echo", "hi", 2, &o, &r, &err);
    ck_assert_int_eq(rc, TSR_EINVAL);
    ck_assert_ptr_nonnull(strstr(err.msg, "X-Upper"));
    tsr_rpc_reply_free(&r);
    fx_stop(&f);
}
END_TEST

START_TEST(test_unknown_method) {
    fx_t f;
    fx_start(&f, 1);
    tsr_rpc_reply_t r;
    tsr_rpc_reply_init(&r);
    tsr_error_t err;
    int rc = tsr_rpc_client_call(f.cli, "/tessera.v1.Nope/Missing", "x", 1, &OPTS_5S, &r, &err);
    ck_assert_int_eq(rc, TSR_EUNSUPPORTED);
    ck_assert_int_eq(r.status, TSR_GRPC_UNIMPLEMENTED);
    ck_assert_ptr_nonnull(strstr(r.message, "/tessera.v1.Nope/Missing"));
    /* streaming call to an unknown method as well */
    rc = tsr_rpc_client_stream(f.cli, "/tessera.v1.Nope/Stream", "x", 1, &OPTS_5S, NULL, NULL, &r,
                               &err);
    ck_assert_int_eq(r.status, TSR_GRPC_UNIMPLEMENTED);
    tsr_rpc_server_stats_t st;
    tsr_rpc_server_stats(f.srv, &st);
    ck_assert_uint_eq(st.unimplemented, 2);
    /* the server still serves afterwards */
    ck_assert_int_eq(tsr_rpc_client_call(f.cli, "/test.Echo/Echo", "ok", 2, &OPTS_5S, &r, &err), 0);
    tsr_rpc_reply_free(&r);
    fx_stop(&f);
}
END_TEST

START_TEST(test_handler_errors_map_through_table) {
    fx_t f;
    fx_start(&f, 1);
    tsr_rpc_reply_t r;
    tsr_rpc_reply_init(&r);
    tsr_error_t err;
    for (int code = -1; code >= -15; code--) {
        char req[16];
        int n = snprintf(req, sizeof(req), "%d", code);
        int rc = tsr_rpc_client_call(f.cli, "/test.Echo/Fail", req, (size_t)n, &OPTS_5S, &r, &err);
        ck_assert_int_eq(r.status, tsr_error_grpc_status(code));
        ck_assert_int_eq(rc, tsr_rpc_status_to_error(r.status));
        ck_assert_int_ne(rc, 0);
        char want[96];
        snprintf(want, sizeof(want), "failing on purpose with %s", tsr_error_name(code));
        ck_assert_str_eq(r.message, want);
        ck_assert_ptr_nonnull(strstr(err.msg, want));
    }
    ck_assert_int_eq(tsr_rpc_client_call(f.cli, "/test.Echo/Fail", "0", 1, &OPTS_5S, &r, &err), 0);
    tsr_rpc_reply_free(&r);
    fx_stop(&f);
}
END_TEST

START_TEST(test_deferred) {
    fx_t f;
    fx_start(&f, 1);
    tsr_rpc_reply_t r;
    tsr_rpc_reply_init(&r);
    tsr_error_t err;
    for (int i = 0; i < 5; i++) {
        int rc = tsr_rpc_client_call(f.cli, "/test.Echo/Defer", "abcdef", 6, &OPTS_5S, &r, &err);
        ck_assert_int_eq(rc, 0);
        ck_assert_uint_eq(r.body.len, 6);
        ck_assert(memcmp(r.body.data, "fedcba", 6) == 0);
    }
    tsr_rpc_reply_free(&r);
    fx_stop(&f);
}
END_TEST

typedef struct collect {
    int n;
    int bad;
    int stop_after;
} collect_t;

static int collect_cb(void *ud, const uint8_t *msg, size_t n) {
    collect_t *c = ud;
    char want[32];
    int len = snprintf(want, sizeof(want), "msg-%d", c->n);
    if ((size_t)len != n || memcmp(want, msg, n) != 0) c->bad++;
    c->n++;
    return c->stop_after && c->n >= c->stop_after;
}

START_TEST(test_server_streaming) {
    fx_t f;
    fx_start(&f, 1);
    tsr_rpc_reply_t r;
    tsr_rpc_reply_init(&r);
    tsr_error_t err;
    collect_t c = {0, 0, 0};
    int rc = tsr_rpc_client_stream(f.cli, "/test.Stream/Count", "2000", 4, &OPTS_5S, collect_cb,
                                   &c, &r, &err);
    ck_assert_msg(rc == 0, "%s", err.msg);
    ck_assert_int_eq(c.n, 2000);
    ck_assert_int_eq(c.bad, 0);
    /* zero messages */
    c = (collect_t){0, 0, 0};
    ck_assert_int_eq(tsr_rpc_client_stream(f.cli, "/test.Stream/Count", "0", 1, &OPTS_5S,
                                           collect_cb, &c, &r, &err), 0);
    ck_assert_int_eq(c.n, 0);
    /* a handler error after some messages arrives as the status */
    c = (collect_t){0, 0, 0};
    rc = tsr_rpc_client_stream(f.cli, "/test.Stream/Count", "7:fail", 6, &OPTS_5S, collect_cb, &c,
                               &r, &err);
    ck_assert_int_eq(c.n, 7);
    ck_assert_int_eq(rc, TSR_ECORRUPT);
    ck_assert_int_eq(r.status, tsr_error_grpc_status(TSR_ECORRUPT));
    ck_assert_str_eq(r.message, "stream broke after 7 messages");
    /* the client stops early: the call ends CANCELLED and the handler's sends start failing */
    atomic_store(&g_stream_ended, 0);
    atomic_store(&g_stream_send_failed, 0);
    c = (collect_t){0, 0, 10};
    rc = tsr_rpc_client_stream(f.cli, "/test.Stream/Count", "100000:slow", 11, &OPTS_5S,
                               collect_cb, &c, &r, &err);
    ck_assert_int_eq(c.n, 10);
    ck_assert_int_eq(r.status, TSR_GRPC_CANCELLED);
    ck_assert_int_eq(rc, TSR_EUNAVAIL);
    for (int i = 0; i < 400 && !atomic_load(&g_stream_ended); i++) sleep_ms(5);
    ck_assert_int_eq(atomic_load(&g_stream_send_failed), 1);
    ck_assert_int_lt(atomic_load(&g_stream_sent), 100000);
    /* a short deadline ends a long stream with DEADLINE_EXCEEDED */
    c = (collect_t){0, 0, 0};
    tsr_rpc_call_opts_t o = {.timeout_ms = 300};
    rc = tsr_rpc_client_stream(f.cli, "/test.Stream/Count", "100000:slow", 11, &o, collect_cb, &c,
                               &r, &err);
    ck_assert_int_eq(rc, TSR_ETIMEOUT);
    ck_assert_int_gt(c.n, 0);
    ck_assert_int_eq(c.bad, 0);
    tsr_rpc_reply_free(&r);
    fx_stop(&f);
}
END_TEST

/* ---- health ---- */

static int health_req(const char *service, uint8_t *buf, size_t cap) {
    Grpc__Health__V1__HealthCheckRequest q = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
    q.service = (char *)service;
    size_t n = grpc__health__v1__health_check_request__get_packed_size(&q);
    ck_assert_uint_le(n, cap);
    grpc__health__v1__health_check_request__pack(&q, buf);
    return (int)n;
}

static int health_status(const uint8_t *p, size_t n) {
    Grpc__Health__V1__HealthCheckResponse *m =
        grpc__health__v1__health_check_response__unpack(NULL, n, p);
    ck_assert_ptr_nonnull(m);
    int st = (int)m->status;
    grpc__health__v1__health_check_response__free_unpacked(m, NULL);
    return st;
}

typedef struct watch_arg {
    tsr_rpc_client_t *cli;
    const char *service;
    atomic_int n;
    int seen[16];
    int rc;
    int status;
} watch_arg_t;

static int watch_cb(void *ud, const uint8_t *msg, size_t n) {
    watch_arg_t *w = ud;
    int k = atomic_load(&w->n);
    if (k < 16) w->seen[k] = health_status(msg, n);
    atomic_store(&w->n, k + 1);
    return k + 1 >= 4; /* stop after four updates */
}

static void *watch_main(void *p) {
    watch_arg_t *w = p;
    uint8_t req[128];
    int n = health_req(w->service, req, sizeof(req));
    tsr_rpc_reply_t r;
    tsr_rpc_reply_init(&r);
    tsr_rpc_call_opts_t o = {.timeout_ms = 10000};
    w->rc = tsr_rpc_client_stream(w->cli, "/grpc.health.v1.Health/Watch", req, (size_t)n, &o,
                                  watch_cb, w, &r, NULL);
    w->status = r.status;
    tsr_rpc_reply_free(&r);
    return NULL;
}

static void wait_count(atomic_int *n, int want) {
    for (int i = 0; i < 1000 && atomic_load(n) < want; i++) sleep_ms(5);
    ck_assert_int_ge(atomic_load(n), want);
}

START_TEST(test_health) {
    fx_t f;
    fx_start(&f, 1);
    tsr_rpc_reply_t r;
    tsr_rpc_reply_init(&r);
    tsr_error_t err;
    uint8_t req[128];
    int n = health_req("", req, sizeof(req));
    ck_assert_int_eq(tsr_rpc_client_call(f.cli, "/grpc.health.v1.Health/Check", req, (size_t)n,
                                         &OPTS_5S, &r, &err), 0);
    ck_assert_int_eq(health_status(r.body.data, r.body.len), TSR_HEALTH_SERVING);
    n = health_req("tessera.v1.FeatureService", req, sizeof(req));
    int rc = tsr_rpc_client_call(f.cli, "/grpc.health.v1.Health/Check", req, (size_t)n,
                                 &OPTS_5S, &r, &err);
    ck_assert_int_eq(rc, TSR_ENOTFOUND);
    ck_assert_ptr_nonnull(strstr(r.message, "tessera.v1.FeatureService"));
    tsr_rpc_health_set(f.srv, "tessera.v1.FeatureService", TSR_HEALTH_NOT_SERVING);
    ck_assert_int_eq(tsr_rpc_client_call(f.cli, "/grpc.health.v1.Health/Check", req, (size_t)n,
                                         &OPTS_5S, &r, &err), 0);
    ck_assert_int_eq(health_status(r.body.data, r.body.len), TSR_HEALTH_NOT_SERVING);
    /* malformed request bytes */
    rc = tsr_rpc_client_call(f.cli, "/grpc.health.v1.Health/Check", "\x0a\x09zz", 4, &OPTS_5S, &r,
                             &err);
    ck_assert_int_eq(rc, TSR_EINVAL);

    /* Watch: current status at once, then each change */
    watch_arg_t w = {.cli = f.cli, .service = "fetcher"};
    atomic_init(&w.n, 0);
    pthread_t th;
    pthread_create(&th, NULL, watch_main, &w);
    wait_count(&w.n, 1);
    tsr_rpc_health_set(f.srv, "fetcher", TSR_HEALTH_NOT_SERVING);
    wait_count(&w.n, 2);
    tsr_rpc_health_set(f.srv, "other", TSR_HEALTH_SERVING);     /* not watched: no message */
    tsr_rpc_health_set(f.srv, "fetcher", TSR_HEALTH_NOT_SERVING); /* same status: no message */
    sleep_ms(100);
    ck_assert_int_eq(atomic_load(&w.n), 2);
    tsr_rpc_health_set(f.srv, "fetcher", TSR_HEALTH_SERVING);
    wait_count(&w.n, 3);
    tsr_rpc_health_set(f.srv, "fetcher", TSR_HEALTH_NOT_SERVING);
    pthread_join(th, NULL);
    ck_assert_int_eq(atomic_load(&w.n), 4);
    ck_assert_int_eq(w.seen[0], TSR_HEALTH_SERVICE_UNKNOWN);
    ck_assert_int_eq(w.seen[1], TSR_HEALTH_NOT_SERVING);
    ck_assert_int_eq(w.seen[2], TSR_HEALTH_SERVING);
    ck_assert_int_eq(w.seen[3], TSR_HEALTH_NOT_SERVING);
    ck_assert_int_eq(w.status, TSR_GRPC_CANCELLED); /* we stopped it */

    /* a Watch open during shutdown ends promptly */
    watch_arg_t w2 = {.cli = f.cli, .service = ""};
    atomic_init(&w2.n, 0);
    pthread_create(&th, NULL, watch_main, &w2);
    wait_count(&w2.n, 1);
    ck_assert_int_eq(w2.seen[0], TSR_HEALTH_SERVING);
    tsr_rpc_server_free(f.srv);
    pthread_join(th, NULL);
    ck_assert_int_ne(w2.status, TSR_GRPC_OK);
    tsr_rpc_client_free(f.cli);
    tsr_rpc_reply_free(&r);
}
END_TEST

/* ---- tessera.proto through the layer ---- */

static size_t build_fetch(uint8_t **out, const char *name) {
    /* row 0: keys {user_id: 42, tags: ["a", null, 1.5], attrs: {k: true}} at 1700000000000
     * row 1: keys {user_id: "u-7"}, no at_millis */
    Tessera__V1__Value v_uid = TESSERA__V1__VALUE__INIT, v_a = TESSERA__V1__VALUE__INIT,
                       v_null = TESSERA__V1__VALUE__INIT, v_d = TESSERA__V1__VALUE__INIT,
                       v_tags = TESSERA__V1__VALUE__INIT, v_true = TESSERA__V1__VALUE__INIT,
                       v_attrs = TESSERA__V1__VALUE__INIT, v_u7 = TESSERA__V1__VALUE__INIT;
    v_uid.kind_case = TESSERA__V1__VALUE__KIND_LONG_VALUE;
    v_uid.long_value = 42;
    v_a.kind_case = TESSERA__V1__VALUE__KIND_STRING_VALUE;
    v_a.string_value = "a";
    v_null.kind_case = TESSERA__V1__VALUE__KIND_NULL_VALUE;
    v_d.kind_case = TESSERA__V1__VALUE__KIND_DOUBLE_VALUE;
    v_d.double_value = 1.5;
    Tessera__V1__Value *items[3] = {&v_a, &v_null, &v_d};
    Tessera__V1__ValueList list = TESSERA__V1__VALUE_LIST__INIT;
    list.n_items = 3;
    list.items = items;
    v_tags.kind_case = TESSERA__V1__VALUE__KIND_LIST_VALUE;
    v_tags.list_value = &list;
    v_true.kind_case = TESSERA__V1__VALUE__KIND_BOOL_VALUE;
    v_true.bool_value = 1;
    Tessera__V1__MapEntry me = TESSERA__V1__MAP_ENTRY__INIT;
    me.key = "k";
    me.value = &v_true;
    Tessera__V1__MapEntry *mes[1] = {&me};
    Tessera__V1__ValueMap vm = TESSERA__V1__VALUE_MAP__INIT;
    vm.n_entries = 1;
    vm.entries = mes;
    v_attrs.kind_case = TESSERA__V1__VALUE__KIND_MAP_VALUE;
    v_attrs.map_value = &vm;
    v_u7.kind_case = TESSERA__V1__VALUE__KIND_STRING_VALUE;
    v_u7.string_value = "u-7";

    Tessera__V1__FetchRow__KeysEntry k0 = TESSERA__V1__FETCH_ROW__KEYS_ENTRY__INIT,
                                     k1 = TESSERA__V1__FETCH_ROW__KEYS_ENTRY__INIT,
                                     k2 = TESSERA__V1__FETCH_ROW__KEYS_ENTRY__INIT,
                                     k3 = TESSERA__V1__FETCH_ROW__KEYS_ENTRY__INIT;
    k0.key = "user_id"; k0.value = &v_uid;
    k1.key = "tags"; k1.value = &v_tags;
    k2.key = "attrs"; k2.value = &v_attrs;
    k3.key = "user_id"; k3.value = &v_u7;
    Tessera__V1__FetchRow__KeysEntry *keys0[3] = {&k0, &k1, &k2}, *keys1[1] = {&k3};
    Tessera__V1__FetchRow r0 = TESSERA__V1__FETCH_ROW__INIT, r1 = TESSERA__V1__FETCH_ROW__INIT;
    r0.n_keys = 3; r0.keys = keys0;
    r0.at_case = TESSERA__V1__FETCH_ROW__AT_AT_MILLIS;
    r0.at_millis = 1700000000000LL;
    r1.n_keys = 1; r1.keys = keys1;
    Tessera__V1__FetchRow *rows[2] = {&r0, &r1};
    Tessera__V1__FetchRequest rq = TESSERA__V1__FETCH_REQUEST__INIT;
    rq.name = (char *)name;
    rq.n_rows = 2;
    rq.rows = rows;
    size_t n = tessera__v1__fetch_request__get_packed_size(&rq);
    *out = malloc(n);
    tessera__v1__fetch_request__pack(&rq, *out);
    return n;
}

static const Tessera__V1__Value *find_kv(Tessera__V1__FetchResult__FeaturesEntry **e, size_t n,
                                         const char *key) {
    for (size_t i = 0; i < n; i++)
        if (strcmp(e[i]->key, key) == 0) return e[i]->value;
    return NULL;
}

START_TEST(test_proto_fetch_roundtrip) {
    fx_t f;
    fx_start(&f, 1);
    tsr_rpc_reply_t r;
    tsr_rpc_reply_init(&r);
    tsr_error_t err;
    uint8_t *req;
    size_t n = build_fetch(&req, "known.join");
    int rc = tsr_rpc_client_call(f.cli, "/tessera.v1.FeatureService/FetchJoin", req, n, &OPTS_5S,
                                 &r, &err);
    ck_assert_msg(rc == 0, "%s", err.msg);
    Tessera__V1__FetchResponse *resp = tessera__v1__fetch_response__unpack(NULL, r.body.len,
                                                                          r.body.data);
    ck_assert_ptr_nonnull(resp);
    ck_assert_uint_eq(resp->n_results, 2);
    Tessera__V1__FetchResult *r0 = resp->results[0], *r1 = resp->results[1];
    ck_assert_int_eq(r0->status, TESSERA__V1__ROW_STATUS__SUCCESS);
    const Tessera__V1__Value *at = find_kv(r0->features, r0->n_features, "part_at");
    ck_assert_int_eq(at->kind_case, TESSERA__V1__VALUE__KIND_LONG_VALUE);
    ck_assert_int_eq(at->long_value, 1700000000000LL);
    at = find_kv(r1->features, r1->n_features, "part_at");
    ck_assert_int_eq(at->kind_case, TESSERA__V1__VALUE__KIND_NULL_VALUE);
    const Tessera__V1__Value *ex = find_kv(r0->features, r0->n_features, "bad_part_exception");
    ck_assert_str_eq(ex->string_value, "missing key column user_id");
    /* echoed entity keys keep their types, nested lists and maps included */
    Tessera__V1__FetchResult__FeaturesEntry **ek =
        (Tessera__V1__FetchResult__FeaturesEntry **)r0->entity_keys;
    ck_assert_uint_eq(r0->n_entity_keys, 3);
    ck_assert_int_eq(find_kv(ek, 3, "user_id")->long_value, 42);
    const Tessera__V1__Value *tags = find_kv(ek, 3, "tags");
    ck_assert_int_eq(tags->kind_case, TESSERA__V1__VALUE__KIND_LIST_VALUE);
    ck_assert_uint_eq(tags->list_value->n_items, 3);
    ck_assert_str_eq(tags->list_value->items[0]->string_value, "a");
    ck_assert_int_eq(tags->list_value->items[1]->kind_case, TESSERA__V1__VALUE__KIND_NULL_VALUE);
    ck_assert(tags->list_value->items[2]->double_value == 1.5);
    const Tessera__V1__Value *attrs = find_kv(ek, 3, "attrs");
    ck_assert_uint_eq(attrs->map_value->n_entries, 1);
    ck_assert_str_eq(attrs->map_value->entries[0]->key, "k");
    ck_assert_int_eq(attrs->map_value->entries[0]->value->bool_value, 1);
    ck_assert_str_eq(find_kv((Tessera__V1__FetchResult__FeaturesEntry **)r1->entity_keys, 1,
                             "user_id")->string_value, "u-7");
    tessera__v1__fetch_response__free_unpacked(resp, NULL);
    free(req);
    /* unknown Join → NOT_FOUND with the name */
    n = build_fetch(&req, "nope.join");
    rc = tsr_rpc_client_call(f.cli, "/tessera.v1.FeatureService/FetchJoin", req, n, &OPTS_5S, &r,
                             &err);
    ck_assert_int_eq(rc, TSR_ENOTFOUND);
    ck_assert_int_eq(r.status, TSR_GRPC_NOT_FOUND);
    ck_assert_str_eq(r.message, "join 'nope.join' not found");
    free(req);
    tsr_rpc_reply_free(&r);
    fx_stop(&f);
}
END_TEST

START_TEST(test_malformed_protobuf_rejected) {
    fx_t f;
    fx_start(&f, 1);
    tsr_rpc_reply_t r;
    tsr_rpc_reply_init(&r);
    tsr_error_t err;
    uint8_t *req;
    size_t n = build_fetch(&req, "known.join");
    /* truncations, random byte flips and random garbage: OK or INVALID_ARGUMENT, never a crash */
    tsr_rng_t rng = {7};
    int invalid = 0, ok = 0, other = 0;
    uint8_t *buf = malloc(n + 64);
    for (int it = 0; it < 300; it++) {
        size_t len;
        if (it < 60) {
            len = (size_t)tsr_rng_below(&rng, n);
            memcpy(buf, req, len);
        } else if (it < 200) {
            len = n;
            memcpy(buf, req, n);
            int flips = 1 + (int)tsr_rng_below(&rng, 4);
            for (int k = 0; k < flips; k++) buf[tsr_rng_below(&rng, n)] = (uint8_t)tsr_rng_next(&rng);
        } else {
            len = 1 + (size_t)tsr_rng_below(&rng, n + 60);
            for (size_t k = 0; k < len; k++) buf[k] = (uint8_t)tsr_rng_next(&rng);
        }
        int rc = tsr_rpc_client_call(f.cli, "/tessera.v1.FeatureService/FetchJoin", buf, len,
                                     &OPTS_5S, &r, &err);
        if (rc == TSR_EINVAL && r.status == TSR_GRPC_INVALID_ARGUMENT) {
            ck_assert_ptr_nonnull(strstr(r.message, "FetchRequest: malformed protobuf"));
            invalid++;
        } else if (rc == 0 || rc == TSR_ENOTFOUND) {
            ok++;
        } else {
            other++;
        }
    }
    ck_assert_int_eq(other, 0);
    ck_assert_int_gt(invalid, 50);
    /* the canonical bad request: a length-delimited field running past the end */
    int rc = tsr_rpc_client_call(f.cli, "/tessera.v1.FeatureService/FetchJoin", "\x0a\x7f" "ab",
                                 4, &OPTS_5S, &r, &err);
    ck_assert_int_eq(rc, TSR_EINVAL);
    ck_assert_int_eq(r.status, TSR_GRPC_INVALID_ARGUMENT);
    free(buf);
    free(req);
    tsr_rpc_reply_free(&r);
    fx_stop(&f);
}
END_TEST

/* ---- shutdown with calls in flight ---- */

typedef struct storm_arg {
    tsr_rpc_client_t *cli;
    atomic_int *stop;
    int kind;
    int calls, failures;
} storm_arg_t;

static void *storm_main(void *p) {
    storm_arg_t *a = p;
    tsr_rpc_reply_t r;
    tsr_rpc_reply_init(&r);
    tsr_rpc_call_opts_t o = {.timeout_ms = 3000};
    while (!atomic_load(a->stop)) {
        int rc;
        if (a->kind == 0)
            rc = tsr_rpc_client_call(a->cli, "/test.Echo/Echo", "ping", 4, &o, &r, NULL);
        else if (a->kind == 1)
            rc = tsr_rpc_client_call(a->cli, "/test.Echo/Defer", "ping", 4, &o, &r, NULL);
        else {
            collect_t c = {0, 0, 0};
            rc = tsr_rpc_client_stream(a->cli, "/test.Stream/Count", "1000000:slow", 12, &o,
                                       collect_cb, &c, &r, NULL);
        }
        a->calls++;
        if (rc) {
            a->failures++;
            sleep_ms(2); /* the server is gone: do not spin */
        }
    }
    tsr_rpc_reply_free(&r);
    return NULL;
}

START_TEST(test_shutdown_in_flight) {
    fx_t f;
    fx_start(&f, 1);
    atomic_int stop;
    atomic_init(&stop, 0);
    enum { NT = 5 };
    pthread_t th[NT];
    storm_arg_t args[NT];
    for (int t = 0; t < NT; t++) {
        args[t] = (storm_arg_t){f.cli, &stop, t % 3, 0, 0};
        pthread_create(&th[t], NULL, storm_main, &args[t]);
    }
    sleep_ms(150);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    tsr_rpc_server_free(f.srv); /* streams, deferred and unary calls all in flight */
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double took = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) * 1e-9;
    ck_assert_msg(took < 2.0, "shutdown took %.3f s", took);
    sleep_ms(50);
    atomic_store(&stop, 1);
    int calls = 0, failures = 0;
    for (int t = 0; t < NT; t++) {
        pthread_join(th[t], NULL);
        calls += args[t].calls;
        failures += args[t].failures;
    }
    ck_assert_int_gt(calls, 10);
    ck_assert_int_gt(failures, 0); /* calls after the shutdown failed rather than hung */
    tsr_rpc_client_free(f.cli);
}
END_TEST

START_TEST(test_unavailable_server) {
    /* a client to a port nobody listens on: UNAVAILABLE quickly, mapped to TSR_EUNAVAIL */
    tsr_error_t err;
    tsr_rpc_server_t *s = tsr_rpc_server_new("127.0.0.1:0", NULL, &err);
    char target[64];
    snprintf(target, sizeof(target), "127.0.0.1:%d", tsr_rpc_server_port(s));
    tsr_rpc_server_free(s); /* the port is now closed */
    tsr_rpc_client_t *c = tsr_rpc_client_new(target, &err);
    ck_assert_ptr_nonnull(c);
    tsr_rpc_reply_t r;
    tsr_rpc_reply_init(&r);
    int rc = tsr_rpc_client_call(c, "/test.Echo/Echo", "x", 1, &OPTS_5S, &r, &err);
    ck_assert_int_eq(rc, TSR_EUNAVAIL);
    ck_assert_int_eq(r.status, TSR_GRPC_UNAVAILABLE);
    ck_assert_int_eq(tsr_error_exit_code(rc), 4);
    /* a bad method path is refused locally */
    rc = tsr_rpc_client_call(c, "no-slash", "x", 1, &OPTS_5S, &r, &err);
    ck_assert_int_eq(rc, TSR_EINVAL);
    tsr_rpc_reply_free(&r);
    tsr_rpc_client_free(c);
}
END_TEST


/* A server that comes back at the same address (a restarted daemon) is reached again within
 * about a second, however long the client's channel saw it refuse: its reconnect backoff is
 * capped at 1 s (gRPC's default grows toward 120 s: after 10 s of refusals the next attempt
 * would come ~6 s later). */
START_TEST(test_reconnect_backoff) {
    tsr_error_t err;
    tsr_rpc_server_t *s = tsr_rpc_server_new("127.0.0.1:0", NULL, &err);
    ck_assert_ptr_nonnull(s);
    int port = tsr_rpc_server_port(s);
    tsr_rpc_server_free(s);
    char target[64];
    snprintf(target, sizeof target, "127.0.0.1:%d", port);
    tsr_rpc_client_t *c = tsr_rpc_client_new(target, &err);
    ck_assert_ptr_nonnull(c);
    tsr_rpc_reply_t r;
    tsr_rpc_reply_init(&r);
    tsr_rpc_call_opts_t o = {.timeout_ms = 1000};
    for (int i = 0; i < 50; i++) { /* 10 s of refusals */
        ck_assert_int_eq(tsr_rpc_client_call(c, "/test.Echo/Echo", "x", 1, &o, &r, &err), TSR_EUNAVAIL);
        sleep_ms(200);
    }
    s = tsr_rpc_server_new(target, NULL, &err);
    if (!s) { /* somebody else took the port meanwhile: nothing to test */
        printf("test_reconnect_backoff: port %d taken meanwhile, skipped\n", port);
        tsr_rpc_reply_free(&r);
        tsr_rpc_client_free(c);
        return;
    }
    ck_assert_int_eq(tsr_rpc_server_add_unary(s, "/test.Echo/Echo", h_echo, NULL, &err), 0);
    ck_assert_int_eq(tsr_rpc_server_start(s, &err), 0);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int rc = -1;
    for (int i = 0; i < 100 && rc != 0; i++) { /* at most 10 s */
        rc = tsr_rpc_client_call(c, "/test.Echo/Echo", "x", 1, &o, &r, &err);
        if (rc) sleep_ms(100);
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double ms = (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6;
    ck_assert_msg(rc == 0, "the server at %s was not reached again in 10 s", target);
    printf("test_reconnect_backoff: reached again %.0f ms after the server came back\n", ms);
    ck_assert_msg(ms < 3000, "reached again only after %.0f ms", ms);
    tsr_rpc_reply_free(&r);
    tsr_rpc_client_free(c);
    tsr_rpc_server_free(s);
}
END_TEST

/* tsr_rpc_client_call_all: a fan-out to two servers and a closed port, each call with its own
 * answer, status and error; then one slow server against the shared deadline: the fan-out
 * ends at the deadline with the fast answer kept. */
START_TEST(test_call_all) {
    fx_t a, b;
    fx_start(&a, 1);
    fx_start(&b, 1);
    tsr_error_t err;
    tsr_rpc_server_t *s = tsr_rpc_server_new("127.0.0.1:0", NULL, &err);
    char dead[64];
    snprintf(dead, sizeof dead, "127.0.0.1:%d", tsr_rpc_server_port(s));
    tsr_rpc_server_free(s);
    tsr_rpc_client_t *dc = tsr_rpc_client_new(dead, &err);
    ck_assert_ptr_nonnull(dc);
    tsr_rpc_reply_t r[3];
    for (int i = 0; i < 3; i++) tsr_rpc_reply_init(&r[i]);
    tsr_rpc_multi_t calls[3] = {
        {.client = a.cli, .req = "to a", .n = 4, .reply = &r[0]},
        {.client = b.cli, .req = "to b", .n = 4, .reply = &r[1]},
        {.client = dc, .req = "to nobody", .n = 9, .reply = &r[2]},
    };
    for (int rep = 0; rep < 20; rep++) { /* replies and queues are reused cleanly */
        tsr_rpc_client_call_all("/test.Echo/Echo", calls, 3, &OPTS_5S);
        ck_assert_int_eq(calls[0].rc, 0);
        ck_assert_int_eq(calls[1].rc, 0);
        ck_assert_uint_eq(r[0].body.len, 4);
        ck_assert_int_eq(memcmp(r[0].body.data, "to a", 4), 0);
        ck_assert_int_eq(memcmp(r[1].body.data, "to b", 4), 0);
        ck_assert_int_eq(calls[2].rc, TSR_EUNAVAIL);
        ck_assert_int_eq(r[2].status, TSR_GRPC_UNAVAILABLE);
        ck_assert_ptr_nonnull(strstr(calls[2].err.msg, "/test.Echo/Echo: UNAVAILABLE"));
    }
    /* one call: the plain blocking path; none: nothing */
    tsr_rpc_client_call_all("/test.Echo/Echo", &calls[1], 1, &OPTS_5S);
    ck_assert_int_eq(calls[1].rc, 0);
    tsr_rpc_client_call_all("/test.Echo/Echo", calls, 0, &OPTS_5S);
    /* a bad method fails every call locally */
    tsr_rpc_client_call_all("no-slash", calls, 2, &OPTS_5S);
    ck_assert_int_eq(calls[0].rc, TSR_EINVAL);
    ck_assert_int_eq(calls[1].rc, TSR_EINVAL);
    /* the shared deadline bounds the fan-out */
    calls[0].req = "1500";
    calls[1].req = "10";
    calls[0].n = 4;
    calls[1].n = 2;
    tsr_rpc_call_opts_t o = {.timeout_ms = 300};
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    tsr_rpc_client_call_all("/test.Echo/Slow", calls, 2, &o);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double ms = (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6;
    ck_assert_int_eq(calls[0].rc, TSR_ETIMEOUT);
    ck_assert_int_eq(calls[1].rc, 0);
    ck_assert_int_eq(memcmp(r[1].body.data, "slept", 5), 0);
    ck_assert_msg(ms < 1400, "fan-out took %.0f ms past a 300 ms deadline", ms);
    for (int i = 0; i < 3; i++) tsr_rpc_reply_free(&r[i]);
    tsr_rpc_client_free(dc);
    fx_stop(&a);
    fx_stop(&b);
}
END_TEST

/* ---- async client calls, and the fetcher pattern: deferred handler + async downstream ---- */

typedef struct async_state {
    atomic_int done, ok, bad;
    atomic_int last_rc;
    char last_msg[256];
} async_state_t;

static void async_echo_cb(void *ud, int rc, const tsr_rpc_reply_t *r, const char *msg) {
    async_state_t *st = ud;
    if (rc == 0 && r->body.len >= 5 && memcmp(r->body.data, "async", 5) == 0)
        atomic_fetch_add(&st->ok, 1);
    else
        atomic_fetch_add(&st->bad, 1);
    atomic_store(&st->last_rc, rc);
    snprintf(st->last_msg, sizeof(st->last_msg), "%s", msg);
    atomic_fetch_add(&st->done, 1);
}

START_TEST(test_async_calls) {
    fx_t f;
    fx_start(&f, 1);
    tsr_error_t err;
    async_state_t st;
    memset(&st, 0, sizeof(st));
    enum { N = 300 };
    for (int i = 0; i < N; i++) {
        char msg[32];
        int len = snprintf(msg, sizeof(msg), "async %d", i);
        ck_assert_int_eq(tsr_rpc_client_call_async(f.cli, "/test.Echo/Echo", msg, (size_t)len,
                                                   &OPTS_5S, async_echo_cb, &st, &err), 0);
    }
    wait_count(&st.done, N);
    ck_assert_int_eq(atomic_load(&st.ok), N);
    /* unknown method and deadline arrive through the callback */
    memset(&st, 0, sizeof(st));
    ck_assert_int_eq(tsr_rpc_client_call_async(f.cli, "/test.Nope/X", "async", 5, &OPTS_5S,
                                               async_echo_cb, &st, &err), 0);
    wait_count(&st.done, 1);
    ck_assert_int_eq(atomic_load(&st.last_rc), TSR_EUNSUPPORTED);
    ck_assert_ptr_nonnull(strstr(st.last_msg, "UNIMPLEMENTED"));
    tsr_rpc_call_opts_t o = {.timeout_ms = 300};
    ck_assert_int_eq(tsr_rpc_client_call_async(f.cli, "/test.Echo/Slow", "1000", 4, &o,
                                               async_echo_cb, &st, &err), 0);
    wait_count(&st.done, 2);
    ck_assert_int_eq(atomic_load(&st.last_rc), TSR_ETIMEOUT);
    /* a call that cannot start never calls back */
    ck_assert_int_eq(tsr_rpc_client_call_async(f.cli, "bad", "x", 1, NULL, async_echo_cb, &st,
                                               &err), TSR_EINVAL);
    ck_assert_int_eq(tsr_rpc_client_call_async(f.cli, "/a.B/C", "x", 1, NULL, NULL, NULL, &err),
                     TSR_EINVAL);
    sleep_ms(50);
    ck_assert_int_eq(atomic_load(&st.done), 2);
    /* freeing the client with calls in flight (no deadline, slow server) cancels them and runs
     * every callback before returning */
    for (int i = 0; i < 8 && atomic_load(&g_slow_done) == 0; i++) sleep_ms(100);
    memset(&st, 0, sizeof(st));
    for (int i = 0; i < 4; i++)
        ck_assert_int_eq(tsr_rpc_client_call_async(f.cli, "/test.Echo/Slow", "300", 3, NULL,
                                                   async_echo_cb, &st, &err), 0);
    tsr_rpc_client_free(f.cli);
    ck_assert_int_eq(atomic_load(&st.done), 4);
    ck_assert_int_eq(atomic_load(&st.ok), 0);
    tsr_rpc_server_free(f.srv);
}
END_TEST

typedef struct proxy {
    tsr_rpc_client_t *down;
} proxy_t;

static void proxy_done(void *ud, int rc, const tsr_rpc_reply_t *r, const char *msg) {
    tsr_rpc_call_finish((tsr_rpc_call_t *)ud, rc, r->body.data, r->body.len, msg);
}

/* Forwards "/test.Proxy/<M>" to the downstream "/test.Echo/<M>", propagating the deadline. */
static int h_proxy(void *ud, tsr_rpc_call_t *call, const uint8_t *req, size_t n, tsr_buf_t *resp,
                   tsr_error_t *err) {
    proxy_t *p = ud;
    int64_t left = tsr_rpc_call_remaining_ms(call);
    if (left == 0) return tsr_error_set(err, TSR_ETIMEOUT, "deadline passed before forwarding");
    char path[64];
    snprintf(path, sizeof(path), "/test.Echo/%s", strrchr(tsr_rpc_call_method(call), '/') + 1);
    tsr_rpc_call_opts_t o = {.timeout_ms = left};
    int rc = tsr_rpc_client_call_async(p->down, path, req, n, &o, proxy_done, call, err);
    return rc ? rc : TSR_RPC_DEFER;
}

START_TEST(test_proxy_deferred_async) {
    fx_t down;
    fx_start(&down, 1);
    tsr_error_t err;
    proxy_t px = {down.cli};
    tsr_rpc_server_t *up = tsr_rpc_server_new("127.0.0.1:0", NULL, &err);
    ck_assert_int_eq(tsr_rpc_server_add_unary(up, "/test.Proxy/Echo", h_proxy, &px, &err), 0);
    ck_assert_int_eq(tsr_rpc_server_add_unary(up, "/test.Proxy/Slow", h_proxy, &px, &err), 0);
    ck_assert_int_eq(tsr_rpc_server_add_unary(up, "/test.Proxy/Fail", h_proxy, &px, &err), 0);
    ck_assert_int_eq(tsr_rpc_server_start(up, &err), 0);
    char target[64];
    snprintf(target, sizeof(target), "127.0.0.1:%d", tsr_rpc_server_port(up));
    tsr_rpc_client_t *cli = tsr_rpc_client_new(target, &err);
    tsr_rpc_reply_t r;
    tsr_rpc_reply_init(&r);
    for (int i = 0; i < 50; i++) {
        char msg[32];
        int len = snprintf(msg, sizeof(msg), "via proxy %d", i);
        ck_assert_int_eq(tsr_rpc_client_call(cli, "/test.Proxy/Echo", msg, (size_t)len, &OPTS_5S,
                                             &r, &err), 0);
        ck_assert(r.body.len == (size_t)len && memcmp(r.body.data, msg, (size_t)len) == 0);
    }
    /* downstream errors come back with their status and message */
    int rc = tsr_rpc_client_call(cli, "/test.Proxy/Fail", "-5", 2, &OPTS_5S, &r, &err);
    ck_assert_int_eq(rc, TSR_ENOTFOUND);
    ck_assert_ptr_nonnull(strstr(r.message, "failing on purpose with ENOTFOUND"));
    /* the deadline is propagated: the downstream handler sees no more than ours */
    tsr_rpc_call_opts_t o = {.timeout_ms = 400};
    atomic_store(&g_slow_remaining, -1);
    rc = tsr_rpc_client_call(cli, "/test.Proxy/Slow", "1000", 4, &o, &r, &err);
    ck_assert_int_eq(rc, TSR_ETIMEOUT);
    for (int i = 0; i < 600 && atomic_load(&g_slow_remaining) == -1; i++) sleep_ms(5);
    long long seen = atomic_load(&g_slow_remaining);
    ck_assert_msg(seen > 0 && seen <= 420, "downstream saw %lld ms left", seen);
    tsr_rpc_reply_free(&r);
    tsr_rpc_client_free(cli);
    tsr_rpc_server_free(up);
    fx_stop(&down);
}
END_TEST

/* ---- a Python grpcio client against the C server (PLATFORM-NOTES: /usr/bin/python3) ---- */

static const char PY_CLIENT[] =
    "import sys, grpc\n"
    "ch = grpc.insecure_channel(sys.argv[1])\n"
    "echo = ch.unary_unary('/test.Echo/Echo')\n"
    "resp, call = echo.with_call(b'hello from python', timeout=5, metadata=(('x-trace', 'py-1'),))\n"
    "assert resp == b'hello from python', resp\n"
    "md = dict(call.initial_metadata())\n"
    "assert md.get('echo-x-trace') == 'py-1', md\n"
    "assert echo(b'', timeout=5) == b''\n"
    "try:\n"
    "    ch.unary_unary('/tessera.v1.Nope/X')(b'x', timeout=5); sys.exit('no error')\n"
    "except grpc.RpcError as e:\n"
    "    assert e.code() == grpc.StatusCode.UNIMPLEMENTED, e.code()\n"
    "try:\n"
    "    ch.unary_unary('/test.Echo/Fail')(b'-5', timeout=5); sys.exit('no error')\n"
    "except grpc.RpcError as e:\n"
    "    assert e.code() == grpc.StatusCode.NOT_FOUND and 'ENOTFOUND' in e.details(), e\n"
    "try:\n"
    "    ch.unary_unary('/test.Echo/Slow')(b'300', timeout=0.05); sys.exit('no error')\n"
    "except grpc.RpcError as e:\n"
    "    assert e.code() == grpc.StatusCode.DEADLINE_EXCEEDED, e.code()\n"
    "msgs = list(ch.unary_stream('/test.Stream/Count')(b'5', timeout=5))\n"
    "assert msgs == [b'msg-%d' % i for i in range(5)], msgs\n"
    "assert ch.unary_unary('/grpc.health.v1.Health/Check')(b'', timeout=5) == b'\\x08\\x01'\n"
    "print('python interop ok')\n";

START_TEST(test_python_interop) {
    if (access("/usr/bin/python3", X_OK) != 0 ||
        system("/usr/bin/python3 -c 'import grpc' >/dev/null 2>&1") != 0) {
        fprintf(stderr, "test_python_interop: /usr/bin/python3 with grpcio not found, skipped\n");
        return;
    }
    fx_t f;
    fx_start(&f, 1);
    char path[] = "/tmp/tsr_rpc_py_XXXXXX";
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, PY_CLIENT, sizeof(PY_CLIENT) - 1), (ssize_t)(sizeof(PY_CLIENT) - 1));
    close(fd);
    char cmd[256];
    snprintf(cmd, sizeof(cmd), "timeout 20 /usr/bin/python3 %s %s", path, f.target);
    int rc = system(cmd);
    unlink(path);
    ck_assert_msg(rc == 0, "python client failed (%d)", rc);
    fx_stop(&f);
}
END_TEST

/* ------------------------------------------------------------------------------------------
 * offload threads */

/* Request "ms": on the CQ thread returns TSR_RPC_OFFLOAD (noting that thread); run again,
 * sleeps ms and answers "other" or "same": whether it now runs on another thread. */
static pthread_t g_off_cq;
static int h_offload(void *ud, tsr_rpc_call_t *call, const uint8_t *req, size_t n, tsr_buf_t *resp,
                     tsr_error_t *err) {
    (void)ud, (void)err;
    if (!tsr_rpc_call_offloaded(call)) {
        g_off_cq = pthread_self();
        return TSR_RPC_OFFLOAD;
    }
    char tmp[16];
    snprintf(tmp, sizeof tmp, "%.*s", (int)(n < 15 ? n : 15), (const char *)req);
    sleep_ms(atoi(tmp));
    tsr_buf_puts(resp, pthread_equal(pthread_self(), g_off_cq) ? "same" : "other");
    return TSR_OK;
}

static tsr_rpc_server_t *off_server(int threads, int queue, tsr_rpc_client_t **cli) {
    tsr_error_t err;
    tsr_rpc_server_opts_t o = {.offload_threads = threads, .offload_queue = queue};
    tsr_rpc_server_t *s = tsr_rpc_server_new("127.0.0.1:0", &o, &err);
    ck_assert_msg(s, "%s", err.msg);
    ck_assert_int_eq(tsr_rpc_server_add_unary(s, "/test.Off/Work", h_offload, NULL, &err), 0);
    ck_assert_int_eq(tsr_rpc_server_add_unary(s, "/test.Echo/Echo", h_echo, NULL, &err), 0);
    ck_assert_int_eq(tsr_rpc_server_start(s, &err), 0);
    char target[64];
    snprintf(target, sizeof target, "127.0.0.1:%d", tsr_rpc_server_port(s));
    *cli = tsr_rpc_client_new(target, &err);
    ck_assert_msg(*cli, "%s", err.msg);
    return s;
}

typedef struct off_call {
    tsr_rpc_client_t *cli;
    const char *req;
    int rc;
    char body[16];
} off_call_t;

static void *off_call_main(void *arg) {
    off_call_t *c = arg;
    tsr_rpc_reply_t r;
    tsr_rpc_reply_init(&r);
    c->rc = tsr_rpc_client_call(c->cli, "/test.Off/Work", c->req, strlen(c->req), &OPTS_5S, &r, NULL);
    snprintf(c->body, sizeof c->body, "%.*s", (int)r.body.len, (const char *)r.body.data);
    tsr_rpc_reply_free(&r);
    return NULL;
}

/* A handler returning TSR_RPC_OFFLOAD runs again on an offload thread, and the CQ thread
 * answers other calls meanwhile; with the queue full the call fails UNAVAILABLE; without
 * offload threads it runs again on the CQ thread; freeing the server waits for offloaded
 * calls. */
START_TEST(test_offload) {
    tsr_rpc_client_t *cli;
    tsr_rpc_server_t *s = off_server(1, 2, &cli);
    tsr_rpc_reply_t r;
    tsr_rpc_reply_init(&r);
    tsr_error_t err;
    ck_assert_int_eq(tsr_rpc_client_call(cli, "/test.Off/Work", "0", 1, &OPTS_5S, &r, &err), 0);
    ck_assert(r.body.len == 5 && memcmp(r.body.data, "other", 5) == 0);
    /* a slow offloaded call does not hold up an echo */
    off_call_t slow = {cli, "600", -1, ""};
    pthread_t th;
    pthread_create(&th, NULL, off_call_main, &slow);
    sleep_ms(100);
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    ck_assert_int_eq(tsr_rpc_client_call(cli, "/test.Echo/Echo", "hi", 2, &OPTS_5S, &r, &err), 0);
    clock_gettime(CLOCK_MONOTONIC, &b);
    double ms = (double)(b.tv_sec - a.tv_sec) * 1e3 + (double)(b.tv_nsec - a.tv_nsec) / 1e6;
    pthread_join(th, NULL);
    ck_assert_int_eq(slow.rc, 0);
    ck_assert_str_eq(slow.body, "other");
    ck_assert_msg(ms < 450, "echo waited %.0f ms behind an offloaded call", ms);
    /* the queue (2) full behind a busy offload thread: the next call is refused */
    off_call_t c[4];
    pthread_t ths[4];
    for (int i = 0; i < 4; i++) {
        c[i] = (off_call_t){cli, "800", -1, ""}; /* long: the 4th arrives while 3 wait */
        pthread_create(&ths[i], NULL, off_call_main, &c[i]);
        sleep_ms(50);
    }
    int refused = 0;
    for (int i = 0; i < 4; i++) {
        pthread_join(ths[i], NULL);
        if (c[i].rc == TSR_EUNAVAIL) refused++;
        else ck_assert_msg(c[i].rc == 0 && !strcmp(c[i].body, "other"), "call %d: rc %d", i, c[i].rc);
    }
    ck_assert_int_ge(refused, 1);
    /* free with offloaded calls in flight: they finish first (no leak, no hang) */
    for (int i = 0; i < 2; i++) {
        c[i] = (off_call_t){cli, "200", -1, ""};
        pthread_create(&ths[i], NULL, off_call_main, &c[i]);
    }
    sleep_ms(50);
    tsr_rpc_server_free(s);
    for (int i = 0; i < 2; i++) pthread_join(ths[i], NULL);
    tsr_rpc_client_free(cli);
    /* no offload threads: the handler runs again at once, on the CQ thread */
    s = off_server(0, 0, &cli);
    ck_assert_int_eq(tsr_rpc_client_call(cli, "/test.Off/Work", "0", 1, &OPTS_5S, &r, &err), 0);
    ck_assert(r.body.len == 4 && memcmp(r.body.data, "same", 4) == 0);
    tsr_rpc_reply_free(&r);
    tsr_rpc_client_free(cli);
    tsr_rpc_server_free(s);
}
END_TEST

/* gRPC's name of the engine it polls with (an internal C++ function of libgrpc.so.29, Debian
 * 12's gRPC 1.51; tests only: the product sets the engine through the public environment) */
extern const char *grpc_engine_in_use(void) __asm__("_Z27grpc_get_poll_strategy_namev");

/* tsr_rpc_set_poll_engine: an operator's GRPC_POLL_STRATEGY stays; otherwise gRPC starts on the
 * engine asked for and calls work on it (6 threads' unary calls, a server stream); refused
 * once gRPC runs. Check runs each test in a fresh child, where gRPC has not started yet. */
START_TEST(test_poll_engine) {
    tsr_error_t err;
    ck_assert_int_eq(tsr_rpc_set_poll_engine("", &err), TSR_EINVAL);
    if (getenv("CK_FORK") && strcmp(getenv("CK_FORK"), "no") == 0) return; /* gRPC ran before */
    setenv("GRPC_POLL_STRATEGY", "epoll1", 1);
    ck_assert_int_eq(tsr_rpc_set_poll_engine("poll", &err), TSR_OK);
    ck_assert_str_eq(getenv("GRPC_POLL_STRATEGY"), "epoll1");
    unsetenv("GRPC_POLL_STRATEGY");
    ck_assert_int_eq(tsr_rpc_set_poll_engine("poll", &err), TSR_OK);
    ck_assert_str_eq(getenv("GRPC_POLL_STRATEGY"), "poll");
    fx_t f;
    fx_start(&f, 1);
    ck_assert_str_eq(grpc_engine_in_use(), "poll");
    ck_assert_int_eq(tsr_rpc_set_poll_engine("epoll1", &err), TSR_EINVAL);
    ck_assert_msg(strstr(err.msg, "already started"), "%s", err.msg);
    tsr_rpc_reply_t r;
    tsr_rpc_reply_init(&r);
    collect_t c = {0, 0, 0};
    ck_assert_int_eq(tsr_rpc_client_stream(f.cli, "/test.Stream/Count", "300", 3, &OPTS_5S,
                                           collect_cb, &c, &r, &err), 0);
    ck_assert_int_eq(c.n, 300);
    ck_assert_int_eq(c.bad, 0);
    tsr_rpc_reply_free(&r);
    fx_stop(&f);
    run_concurrent(1);
}
END_TEST

static Suite *rpc_suite(void) {
    Suite *s = suite_create("rpc");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, test_status_mapping);
    tcase_add_test(tc, test_absl_deadlock_detector_off);
    tcase_add_test(tc, test_server_api_errors);
    tcase_add_test(tc, test_unary_echo_sizes);
    tcase_add_test(tc, test_concurrent_calls);
    tcase_add_test(tc, test_concurrent_calls_two_cq_threads);
    tcase_add_test(tc, test_deadline);
    tcase_add_test(tc, test_metadata);
    tcase_add_test(tc, test_unknown_method);
    tcase_add_test(tc, test_handler_errors_map_through_table);
    tcase_add_test(tc, test_deferred);
    tcase_add_test(tc, test_server_streaming);
    tcase_add_test(tc, test_health);
    tcase_add_test(tc, test_proto_fetch_roundtrip);
    tcase_add_test(tc, test_malformed_protobuf_rejected);
    tcase_add_test(tc, test_shutdown_in_flight);
    tcase_add_test(tc, test_unavailable_server);
    tcase_add_test(tc, test_python_interop);
    tcase_add_test(tc, test_async_calls);
    tcase_add_test(tc, test_call_all);
    tcase_add_test(tc, test_reconnect_backoff);
    tcase_add_test(tc, test_proxy_deferred_async);
    tcase_add_test(tc, test_offload);
    tcase_add_test(tc, test_poll_engine);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return tsr_test_run(rpc_suite()); }
