/*
 * test_rpc_fanout.c — tsr_rpc_call_fanout: a deferred handler of a "front" server fans out to
 * "back" servers with its calls' completions on the front server's completion queue, and
 * finishes its call from the done callback. Checks: done runs exactly once, on a front CQ
 * thread after the handler returned (n = 1, 3), on the handler's stack for n = 0 (documented);
 * replies intact (sizes up to 1 MiB); an unreachable target and a failing method; a deadline
 * that passes; a client freed while its call is out; tsr_rpc_call_offload from done; server
 * free with fan-outs in flight (cancelled, done runs, free returns promptly); many concurrent
 * fan-outs reusing the pooled records.
 *
 * Every test starts its servers and clients inside the forked test process (Check + fork).
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

#include "tsr/rpc.h"
#include "tsr_test.h"

static void sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static double now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

/* ------------------------------------------------------------------------------------------
 * back: echo, slow ("<ms>": sleeps, answers "slept"), fail (always INVALID_ARGUMENT) */

static int h_echo(void *ud, tsr_rpc_call_t *call, const uint8_t *req, size_t n, tsr_buf_t *resp,
                  tsr_error_t *err) {
    (void)ud, (void)call, (void)err;
    tsr_buf_append(resp, req, n);
    return TSR_OK;
}

static int h_slow(void *ud, tsr_rpc_call_t *call, const uint8_t *req, size_t n, tsr_buf_t *resp,
                  tsr_error_t *err) {
    (void)ud, (void)call, (void)err;
    char tmp[32];
    snprintf(tmp, sizeof tmp, "%.*s", (int)(n < 31 ? n : 31), (const char *)req);
    int ms = atoi(tmp);
    for (int t = 0; t < ms; t += 10) sleep_ms(10);
    tsr_buf_puts(resp, "slept");
    return TSR_OK;
}

static int h_fail(void *ud, tsr_rpc_call_t *call, const uint8_t *req, size_t n, tsr_buf_t *resp,
                  tsr_error_t *err) {
    (void)ud, (void)call, (void)req, (void)n, (void)resp;
    return tsr_error_set(err, TSR_EINVAL, "failing on purpose");
}

static tsr_rpc_server_t *back_start(char *target, size_t cap) {
    tsr_error_t err;
    tsr_rpc_server_opts_t o = {.cq_threads = 2};
    tsr_rpc_server_t *s = tsr_rpc_server_new("127.0.0.1:0", &o, &err);
    ck_assert_msg(s, "server_new: %s", err.msg);
    ck_assert_int_eq(tsr_rpc_server_add_unary(s, "/test.Back/Echo", h_echo, NULL, &err), 0);
    ck_assert_int_eq(tsr_rpc_server_add_unary(s, "/test.Back/Slow", h_slow, NULL, &err), 0);
    ck_assert_int_eq(tsr_rpc_server_add_unary(s, "/test.Back/Fail", h_fail, NULL, &err), 0);
    ck_assert_int_eq(tsr_rpc_server_start(s, &err), 0);
    snprintf(target, cap, "127.0.0.1:%d", tsr_rpc_server_port(s));
    return s;
}

/* ------------------------------------------------------------------------------------------
 * front: FanOut fans out as the plan says, answers a summary of what done saw */

#define MAXN 4

typedef struct plan {
    size_t n;
    const char *method[MAXN];       /* per call (all must be equal: one method per fan-out) */
    tsr_rpc_client_t *client[MAXN];
    const char *target[MAXN];       /* with free_client: a client made and freed per fan-out */
    size_t req_len[MAXN];           /* request: req_len bytes of a pattern, or slow_ms text */
    const char *slow_ms;
    int64_t timeout_ms;
    int free_client;                /* free the clients right after starting */
    int offload;                    /* done hands the finish to an offload thread */
} plan_t;

static plan_t g_plan;
static atomic_int g_done_runs, g_done_on_cq, g_done_in_handler, g_started, g_cont_on_off;
static _Thread_local int t_in_handler;

typedef struct job {
    tsr_rpc_call_t *call;
    tsr_rpc_multi_t calls[MAXN];
    tsr_rpc_reply_t replies[MAXN];
    tsr_rpc_client_t *own[MAXN];
    uint8_t *req[MAXN];
    size_t n;
    tsr_buf_t out;
} job_t;

static void fill(uint8_t *p, size_t n, size_t salt) {
    for (size_t i = 0; i < n; i++) p[i] = (uint8_t)((i * 131 + salt * 7) ^ (i >> 8));
}

static int thread_named(const char *want) {
    char name[17] = {0};
    prctl(PR_GET_NAME, name, 0, 0, 0);
    return strcmp(name, want) == 0;
}

static void job_free(job_t *j) {
    for (size_t i = 0; i < MAXN; i++) {
        tsr_rpc_reply_free(&j->replies[i]);
        free(j->req[i]);
    }
    tsr_buf_free(&j->out);
    free(j);
}

/* The summary: per call "rc:<rc> len:<len> ok:<1 if the body is the expected echo>;". */
static void job_answer(job_t *j) {
    for (size_t i = 0; i < j->n; i++) {
        const tsr_rpc_reply_t *r = &j->replies[i];
        int ok = 0;
        if (j->calls[i].rc == 0 && g_plan.slow_ms) ok = r->body.len == 5 && !memcmp(r->body.data, "slept", 5);
        else if (j->calls[i].rc == 0)
            ok = r->body.len == g_plan.req_len[i] && !memcmp(r->body.data, j->req[i], r->body.len);
        char tmp[96];
        int k = snprintf(tmp, sizeof tmp, "rc:%d len:%zu ok:%d;", j->calls[i].rc, r->body.len, ok);
        if (getenv("FO_DEBUG")) fprintf(stderr, "call %zu: %s\n", i, j->calls[i].err.msg);
        tsr_buf_append(&j->out, tmp, (size_t)k);
    }
    if (!j->n) tsr_buf_puts(&j->out, "none");
    tsr_rpc_call_finish(j->call, TSR_OK, j->out.data, j->out.len, NULL);
    job_free(j);
}

static void cont_offloaded(void *ud) {
    if (thread_named("tsr-rpc-off")) atomic_fetch_add(&g_cont_on_off, 1);
    job_answer(ud);
}

static void fan_done(void *ud) {
    job_t *j = ud;
    atomic_fetch_add(&g_done_runs, 1);
    if (thread_named("tsr-rpc-cq")) atomic_fetch_add(&g_done_on_cq, 1);
    if (t_in_handler) atomic_fetch_add(&g_done_in_handler, 1);
    if (g_plan.offload && tsr_rpc_call_offload(j->call, cont_offloaded, j) == TSR_OK) return;
    job_answer(j);
}

static int h_fan(void *ud, tsr_rpc_call_t *call, const uint8_t *req, size_t n, tsr_buf_t *resp,
                 tsr_error_t *err) {
    (void)ud, (void)req, (void)n, (void)resp;
    job_t *j = calloc(1, sizeof *j);
    j->call = call;
    j->n = g_plan.n;
    tsr_buf_init(&j->out);
    for (size_t i = 0; i < MAXN; i++) tsr_rpc_reply_init(&j->replies[i]);
    for (size_t i = 0; i < j->n; i++) {
        tsr_rpc_client_t *c = g_plan.client[i];
        if (g_plan.free_client) c = j->own[i] = tsr_rpc_client_new(g_plan.target[i], err);
        if (g_plan.slow_ms) {
            j->req[i] = (uint8_t *)strdup(g_plan.slow_ms);
            j->calls[i].n = strlen(g_plan.slow_ms);
        } else {
            j->req[i] = malloc(g_plan.req_len[i] + 1);
            fill(j->req[i], g_plan.req_len[i], i);
            j->calls[i].n = g_plan.req_len[i];
        }
        j->calls[i].client = c;
        j->calls[i].req = j->req[i];
        j->calls[i].reply = &j->replies[i];
    }
    tsr_rpc_call_opts_t o = {.timeout_ms = g_plan.timeout_ms};
    tsr_rpc_client_t *own[MAXN];
    memcpy(own, j->own, sizeof own); /* j may be gone once the fan-out started */
    t_in_handler = 1;
    int rc = tsr_rpc_call_fanout(call, g_plan.method[0], j->calls, j->n, &o, fan_done, j);
    t_in_handler = 0;
    if (g_plan.free_client)
        for (size_t i = 0; i < MAXN; i++) tsr_rpc_client_free(own[i]);
    if (rc != TSR_OK) {
        job_free(j);
        return tsr_error_set(err, rc, "fan-out refused");
    }
    atomic_fetch_add(&g_started, 1);
    return TSR_RPC_DEFER;
}

static tsr_rpc_server_t *front_start(int cq_threads, int offload_threads, tsr_rpc_client_t **cli) {
    tsr_error_t err;
    tsr_rpc_server_opts_t o = {.cq_threads = cq_threads, .offload_threads = offload_threads};
    tsr_rpc_server_t *s = tsr_rpc_server_new("127.0.0.1:0", &o, &err);
    ck_assert_msg(s, "server_new: %s", err.msg);
    ck_assert_int_eq(tsr_rpc_server_add_unary(s, "/test.Front/Fan", h_fan, NULL, &err), 0);
    ck_assert_int_eq(tsr_rpc_server_start(s, &err), 0);
    char t[64];
    snprintf(t, sizeof t, "127.0.0.1:%d", tsr_rpc_server_port(s));
    *cli = tsr_rpc_client_new(t, &err);
    ck_assert_ptr_nonnull(*cli);
    return s;
}

static void reset_counts(void) {
    atomic_store(&g_done_runs, 0);
    atomic_store(&g_done_on_cq, 0);
    atomic_store(&g_done_in_handler, 0);
    atomic_store(&g_started, 0);
    atomic_store(&g_cont_on_off, 0);
}

static const tsr_rpc_call_opts_t OPTS_10S = {.timeout_ms = 10000};

/* One FanOut call; returns its rc and leaves the summary in *r. */
static int fan(tsr_rpc_client_t *cli, tsr_rpc_reply_t *r) {
    tsr_error_t err;
    return tsr_rpc_client_call(cli, "/test.Front/Fan", "x", 1, &OPTS_10S, r, &err);
}

static int summary_is(const tsr_rpc_reply_t *r, const char *want) {
    return r->body.len == strlen(want) && memcmp(r->body.data, want, r->body.len) == 0;
}

/* ------------------------------------------------------------------------------------------
 * tests */

START_TEST(test_fanout_counts_and_replies) {
    char ta[64], tb[64];
    tsr_rpc_server_t *a = back_start(ta, sizeof ta), *b = back_start(tb, sizeof tb);
    tsr_error_t err;
    tsr_rpc_client_t *ca = tsr_rpc_client_new(ta, &err), *cb = tsr_rpc_client_new(tb, &err);
    tsr_rpc_client_t *cli;
    tsr_rpc_server_t *front = front_start(1, 0, &cli);
    tsr_rpc_reply_t r;
    tsr_rpc_reply_init(&r);
    memset(&g_plan, 0, sizeof g_plan);
    g_plan.timeout_ms = 5000;
    /* n = 3: two on one back server, one on the other; sizes 0 .. 1 MiB */
    size_t sizes[][3] = {{0, 1, 17}, {4096, 65536, 100000}, {1 << 20, 3, 70000}};
    reset_counts();
    int calls = 0;
    for (int rep = 0; rep < 10; rep++) {
        g_plan.n = 3;
        for (int i = 0; i < 3; i++) {
            g_plan.method[i] = "/test.Back/Echo";
            g_plan.client[i] = i == 1 ? cb : ca;
            g_plan.req_len[i] = sizes[rep % 3][i];
        }
        ck_assert_int_eq(fan(cli, &r), 0);
        calls++;
        char want[256];
        snprintf(want, sizeof want, "rc:0 len:%zu ok:1;rc:0 len:%zu ok:1;rc:0 len:%zu ok:1;",
                 sizes[rep % 3][0], sizes[rep % 3][1], sizes[rep % 3][2]);
        ck_assert_msg(summary_is(&r, want), "got %.*s", (int)r.body.len, (const char *)r.body.data);
    }
    /* n = 1 */
    for (int rep = 0; rep < 10; rep++) {
        g_plan.n = 1;
        g_plan.client[0] = cb;
        g_plan.req_len[0] = 1000 + (size_t)rep;
        ck_assert_int_eq(fan(cli, &r), 0);
        calls++;
        char want[64];
        snprintf(want, sizeof want, "rc:0 len:%d ok:1;", 1000 + rep);
        ck_assert_msg(summary_is(&r, want), "got %.*s", (int)r.body.len, (const char *)r.body.data);
    }
    ck_assert_int_eq(atomic_load(&g_done_runs), calls);
    ck_assert_int_eq(atomic_load(&g_done_on_cq), calls);
    ck_assert_int_eq(atomic_load(&g_done_in_handler), 0);
    /* n = 0: done runs at once, on the handler's stack (documented) */
    reset_counts();
    g_plan.n = 0;
    ck_assert_int_eq(fan(cli, &r), 0);
    ck_assert(summary_is(&r, "none"));
    ck_assert_int_eq(atomic_load(&g_done_runs), 1);
    ck_assert_int_eq(atomic_load(&g_done_in_handler), 1);
    tsr_rpc_reply_free(&r);
    tsr_rpc_client_free(cli);
    tsr_rpc_server_free(front);
    tsr_rpc_client_free(ca);
    tsr_rpc_client_free(cb);
    tsr_rpc_server_free(a);
    tsr_rpc_server_free(b);
}
END_TEST

START_TEST(test_fanout_failures_and_deadline) {
    char ta[64];
    tsr_rpc_server_t *a = back_start(ta, sizeof ta);
    tsr_error_t err;
    /* a port nobody listens on */
    tsr_rpc_server_t *tmp = tsr_rpc_server_new("127.0.0.1:0", NULL, &err);
    char dead[64];
    snprintf(dead, sizeof dead, "127.0.0.1:%d", tsr_rpc_server_port(tmp));
    tsr_rpc_server_free(tmp);
    tsr_rpc_client_t *ca = tsr_rpc_client_new(ta, &err), *cd = tsr_rpc_client_new(dead, &err);
    tsr_rpc_client_t *cli;
    tsr_rpc_server_t *front = front_start(2, 0, &cli);
    tsr_rpc_reply_t r;
    tsr_rpc_reply_init(&r);
    memset(&g_plan, 0, sizeof g_plan);
    reset_counts();
    /* one answers, one is unreachable */
    g_plan.n = 2;
    g_plan.timeout_ms = 5000;
    g_plan.method[0] = g_plan.method[1] = "/test.Back/Echo";
    g_plan.client[0] = cd;
    g_plan.client[1] = ca;
    g_plan.req_len[0] = g_plan.req_len[1] = 10;
    ck_assert_int_eq(fan(cli, &r), 0);
    char want[128];
    snprintf(want, sizeof want, "rc:%d len:0 ok:0;rc:0 len:10 ok:1;", TSR_EUNAVAIL);
    ck_assert_msg(summary_is(&r, want), "got %.*s", (int)r.body.len, (const char *)r.body.data);
    /* a failing method: its status maps back (INVALID_ARGUMENT -> TSR_EINVAL) */
    g_plan.n = 1;
    g_plan.method[0] = "/test.Back/Fail";
    g_plan.client[0] = ca;
    ck_assert_int_eq(fan(cli, &r), 0);
    snprintf(want, sizeof want, "rc:%d len:0 ok:0;", TSR_EINVAL);
    ck_assert_msg(summary_is(&r, want), "got %.*s", (int)r.body.len, (const char *)r.body.data);
    /* a method that cannot be called: refused locally, done still runs once */
    g_plan.method[0] = "no-slash";
    ck_assert_int_eq(fan(cli, &r), 0);
    snprintf(want, sizeof want, "rc:%d len:0 ok:0;", TSR_EINVAL);
    ck_assert_msg(summary_is(&r, want), "got %.*s", (int)r.body.len, (const char *)r.body.data);
    /* a deadline that passes: 1500 ms of work, 200 ms allowed; the fast one answers */
    g_plan.n = 2;
    g_plan.method[0] = g_plan.method[1] = "/test.Back/Slow";
    g_plan.client[0] = g_plan.client[1] = ca;
    g_plan.timeout_ms = 200;
    g_plan.slow_ms = "1500";
    double t0 = now_ms();
    ck_assert_int_eq(fan(cli, &r), 0);
    double ms = now_ms() - t0;
    snprintf(want, sizeof want, "rc:%d len:0 ok:0;rc:%d len:0 ok:0;", TSR_ETIMEOUT, TSR_ETIMEOUT);
    ck_assert_msg(summary_is(&r, want), "got %.*s", (int)r.body.len, (const char *)r.body.data);
    ck_assert_msg(ms < 1000, "fan-out took %.0f ms past a 200 ms deadline", ms);
    ck_assert_int_eq(atomic_load(&g_done_runs), 4);
    ck_assert_int_eq(atomic_load(&g_done_on_cq), 4);
    ck_assert_int_eq(atomic_load(&g_done_in_handler), 1); /* the refused one, in place */
    tsr_rpc_reply_free(&r);
    tsr_rpc_client_free(cli);
    tsr_rpc_server_free(front);
    tsr_rpc_client_free(ca);
    tsr_rpc_client_free(cd);
    tsr_rpc_server_free(a);
}
END_TEST

START_TEST(test_fanout_client_freed_and_offload) {
    char ta[64];
    tsr_rpc_server_t *a = back_start(ta, sizeof ta);
    tsr_rpc_client_t *cli;
    tsr_rpc_server_t *front = front_start(1, 2, &cli);
    tsr_rpc_reply_t r;
    tsr_rpc_reply_init(&r);
    memset(&g_plan, 0, sizeof g_plan);
    reset_counts();
    /* the handler frees its clients right after starting: gRPC fails the calls in flight
     * ("Channel Destroyed"), but they complete and done runs once per fan-out */
    g_plan.n = 2;
    g_plan.timeout_ms = 5000;
    g_plan.free_client = 1;
    g_plan.method[0] = g_plan.method[1] = "/test.Back/Slow";
    g_plan.target[0] = g_plan.target[1] = ta;
    g_plan.slow_ms = "30";
    for (int rep = 0; rep < 5; rep++) {
        ck_assert_int_eq(fan(cli, &r), 0);
        /* each entry is "rc:0 len:5 ok:1;" or a failure "rc:-15 len:0 ok:0;" */
        int entries = 0;
        for (size_t i = 0; i < r.body.len; i++) entries += r.body.data[i] == ';';
        ck_assert_int_eq(entries, 2);
    }
    ck_assert_int_eq(atomic_load(&g_done_runs), 5);
    /* done hands the answer to an offload thread */
    g_plan.free_client = 0;
    g_plan.slow_ms = NULL;
    tsr_error_t err;
    tsr_rpc_client_t *ca = tsr_rpc_client_new(ta, &err);
    g_plan.method[0] = g_plan.method[1] = "/test.Back/Echo";
    g_plan.client[0] = g_plan.client[1] = ca;
    g_plan.req_len[0] = 5;
    g_plan.req_len[1] = 7;
    g_plan.offload = 1;
    for (int rep = 0; rep < 5; rep++) {
        ck_assert_int_eq(fan(cli, &r), 0);
        ck_assert_msg(summary_is(&r, "rc:0 len:5 ok:1;rc:0 len:7 ok:1;"), "got %.*s",
                      (int)r.body.len, (const char *)r.body.data);
    }
    ck_assert_int_eq(atomic_load(&g_cont_on_off), 5);
    ck_assert_int_eq(atomic_load(&g_done_runs), 10);
    tsr_rpc_reply_free(&r);
    tsr_rpc_client_free(cli);
    tsr_rpc_server_free(front);
    tsr_rpc_client_free(ca);
    tsr_rpc_server_free(a);
}
END_TEST

/* Concurrent callers of the front server (2 CQ threads): the pooled records are reused. */
typedef struct caller {
    tsr_rpc_client_t *cli;
    int ok, bad;
} caller_t;

static void *caller_main(void *arg) {
    caller_t *c = arg;
    tsr_rpc_reply_t r;
    tsr_rpc_reply_init(&r);
    for (int i = 0; i < 100; i++) {
        if (fan(c->cli, &r) == 0 && summary_is(&r, "rc:0 len:64 ok:1;rc:0 len:64 ok:1;rc:0 len:64 ok:1;"))
            c->ok++;
        else
            c->bad++;
    }
    tsr_rpc_reply_free(&r);
    return NULL;
}

/* A back-end server with a client of it, a front server of 2 CQ threads with a client of it,
 * an empty plan and zeroed counters: the start of the tests below. */
static void pair_start(tsr_rpc_server_t **back, tsr_rpc_client_t **back_cli, tsr_rpc_server_t **front,
                       tsr_rpc_client_t **cli) {
    char ta[64];
    *back = back_start(ta, sizeof ta);
    tsr_error_t err;
    *back_cli = tsr_rpc_client_new(ta, &err);
    ck_assert_msg(*back_cli, "client_new: %s", err.msg);
    *front = front_start(2, 0, cli);
    memset(&g_plan, 0, sizeof g_plan);
    reset_counts();
}

START_TEST(test_fanout_concurrent) {
    tsr_rpc_server_t *a, *front;
    tsr_rpc_client_t *ca, *cli;
    pair_start(&a, &ca, &front, &cli);
    g_plan.n = 3;
    g_plan.timeout_ms = 5000;
    for (int i = 0; i < 3; i++) {
        g_plan.method[i] = "/test.Back/Echo";
        g_plan.client[i] = ca;
        g_plan.req_len[i] = 64;
    }
    caller_t cs[4];
    pthread_t th[4];
    for (int i = 0; i < 4; i++) {
        cs[i] = (caller_t){cli, 0, 0};
        pthread_create(&th[i], NULL, caller_main, &cs[i]);
    }
    int ok = 0, bad = 0;
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        ok += cs[i].ok;
        bad += cs[i].bad;
    }
    ck_assert_int_eq(bad, 0);
    ck_assert_int_eq(ok, 400);
    ck_assert_int_eq(atomic_load(&g_done_runs), 400);
    ck_assert_int_eq(atomic_load(&g_done_on_cq), 400);
    tsr_rpc_client_free(cli);
    tsr_rpc_server_free(front);
    tsr_rpc_client_free(ca);
    tsr_rpc_server_free(a);
}
END_TEST

/* Server free with fan-outs in flight (no deadline, 3 s of work): the calls are cancelled, done
 * runs for each (rc UNAVAILABLE) and free returns long before the work would end. */
static void *free_caller(void *arg) {
    tsr_rpc_client_t *cli = arg;
    tsr_rpc_reply_t r;
    tsr_rpc_reply_init(&r);
    fan(cli, &r);
    tsr_rpc_reply_free(&r);
    return NULL;
}

START_TEST(test_fanout_server_free_in_flight) {
    tsr_rpc_server_t *a, *front;
    tsr_rpc_client_t *ca, *cli;
    pair_start(&a, &ca, &front, &cli);
    g_plan.n = 2;
    g_plan.timeout_ms = 0; /* none */
    g_plan.method[0] = g_plan.method[1] = "/test.Back/Slow";
    g_plan.client[0] = g_plan.client[1] = ca;
    g_plan.slow_ms = "3000";
    pthread_t th[3];
    for (int i = 0; i < 3; i++) pthread_create(&th[i], NULL, free_caller, cli);
    for (int i = 0; i < 300 && atomic_load(&g_started) < 3; i++) sleep_ms(10);
    ck_assert_int_eq(atomic_load(&g_started), 3);
    sleep_ms(50);
    double t0 = now_ms();
    tsr_rpc_server_free(front);
    double ms = now_ms() - t0;
    ck_assert_msg(ms < 2500, "server free took %.0f ms with fan-outs in flight", ms);
    ck_assert_int_eq(atomic_load(&g_done_runs), 3);
    for (int i = 0; i < 3; i++) pthread_join(th[i], NULL);
    tsr_rpc_client_free(cli);
    tsr_rpc_client_free(ca);
    tsr_rpc_server_free(a);
}
END_TEST

static Suite *fanout_suite(void) {
    Suite *s = suite_create("rpc_fanout");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_fanout_counts_and_replies);
    tcase_add_test(tc, test_fanout_failures_and_deadline);
    tcase_add_test(tc, test_fanout_client_freed_and_offload);
    tcase_add_test(tc, test_fanout_concurrent);
    tcase_add_test(tc, test_fanout_server_free_in_flight);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return tsr_test_run(fanout_suite()); }
