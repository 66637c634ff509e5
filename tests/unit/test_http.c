/*
 * test_http.c — the HTTP server on 127.0.0.1:0 through a raw-socket client
 * (test_http_client.h): routing (exact, prefix, longest prefix, HEAD), 404/405/413/503 with
 * JSON error bodies, headers and query arguments, keep-alive, large bodies, concurrent
 * clients, /health and /metrics, graceful stop with a request in flight, start/route errors.
 * Every wait is bounded (5 s socket timeouts, bounded polling loops).
 */
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>

#include "test_http_client.h"
#include "tsr/http.h"
#include "tsr_test.h"

static void sleep_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static void h_text(void *ud, const tsr_http_request_t *req, tsr_http_response_t *resp) {
    resp->content_type = "text/plain";
    tsr_buf_puts(resp->body, (const char *)ud);
}

/* Echoes method, path, rest and body length, and a header and query argument if present. */
static void h_echo(void *ud, const tsr_http_request_t *req, tsr_http_response_t *resp) {
    const char *hv = tsr_http_request_header(req, "X-Tag");
    const char *qv = tsr_http_request_query(req, "q");
    tsr_buf_printf(resp->body, "{\"m\":\"%s\",\"path\":\"%s\",\"rest\":\"%s\",\"len\":%zu",
                   req->method, req->path, req->rest, req->body_len);
    if (hv) tsr_buf_printf(resp->body, ",\"tag\":\"%s\"", hv);
    if (qv) tsr_buf_printf(resp->body, ",\"q\":\"%s\"", qv);
    /* a cheap checksum of the body, so large bodies are checked byte for byte */
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < req->body_len; i++) h = (h ^ (uint8_t)req->body[i]) * 1099511628211ULL;
    tsr_buf_printf(resp->body, ",\"sum\":%llu}", (unsigned long long)h);
    ck_assert_int_eq(req->body[req->body_len], 0); /* NUL-terminated */
}

static void h_status(void *ud, const tsr_http_request_t *req, tsr_http_response_t *resp) {
    tsr_http_response_error(resp, 418, "short and %s", "stout");
}

/* Returns a big body of the size given as ?n= */
static void h_big(void *ud, const tsr_http_request_t *req, tsr_http_response_t *resp) {
    const char *n = tsr_http_request_query(req, "n");
    size_t len = n ? strtoull(n, NULL, 10) : 0;
    resp->content_type = "application/octet-stream";
    tsr_buf_reserve(resp->body, len);
    for (size_t i = 0; i < len; i++) resp->body->data[i] = (uint8_t)('a' + i % 26);
    resp->body->len = len;
}

static uint64_t fnv(const char *p, size_t n) {
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < n; i++) h = (h ^ (uint8_t)p[i]) * 1099511628211ULL;
    return h;
}

static tsr_http_server_t *start_server(tsr_http_options_t *opt, tsr_metrics_t *m) {
    tsr_error_t err;
    tsr_http_options_t o = {0};
    if (opt) o = *opt;
    o.metrics = m;
    tsr_http_server_t *srv = tsr_http_server_new(&o);
    ck_assert_int_eq(tsr_http_server_route(srv, "GET", "/hello", 0, h_text, "hello", &err), 0);
    ck_assert_int_eq(tsr_http_server_route(srv, "POST", "/echo", 0, h_echo, NULL, &err), 0);
    ck_assert_int_eq(tsr_http_server_route(srv, "POST", "/v1/", 1, h_echo, NULL, &err), 0);
    ck_assert_int_eq(tsr_http_server_route(srv, "POST", "/v1/fetch/", 1, h_echo, NULL, &err), 0);
    ck_assert_int_eq(tsr_http_server_route(srv, "PUT", "/v1/fetch/x", 0, h_echo, NULL, &err), 0);
    ck_assert_int_eq(tsr_http_server_route(srv, "GET", "/teapot", 0, h_status, NULL, &err), 0);
    ck_assert_int_eq(tsr_http_server_route(srv, "GET", "/big", 0, h_big, NULL, &err), 0);
    if (m) ck_assert_int_eq(tsr_http_serve_metrics(srv, m, &err), 0);
    ck_assert_int_eq(tsr_http_serve_health(srv, &err), 0);
    int rc = tsr_http_server_start(srv, &err);
    ck_assert_msg(rc == 0, "start: %s", err.msg);
    ck_assert_uint_ne(tsr_http_server_port(srv), 0);
    return srv;
}

START_TEST(routes) {
    tsr_http_server_t *srv = start_server(NULL, NULL);
    unsigned port = tsr_http_server_port(srv);
    thc_resp_t r;
    ck_assert_int_eq(thc_once(port, "GET", "/hello", NULL, &r), 0);
    ck_assert_int_eq(r.status, 200);
    ck_assert_str_eq(r.body, "hello");
    char ct[128];
    ck_assert_int_eq(thc_header(r.headers, "Content-Type", ct, sizeof ct), 0);
    ck_assert_str_eq(ct, "text/plain");
    thc_resp_free(&r);

    /* HEAD on a GET route: headers only */
    ck_assert_int_eq(thc_once(port, "HEAD", "/hello", NULL, &r), 0);
    ck_assert_int_eq(r.status, 200);
    thc_resp_free(&r);

    ck_assert_int_eq(thc_once(port, "POST", "/echo", "abc", &r), 0);
    ck_assert_int_eq(r.status, 200);
    ck_assert_ptr_nonnull(strstr(r.body, "\"rest\":\"\",\"len\":3"));
    thc_resp_free(&r);

    /* prefix routes: longest prefix wins, remainder passed on, percent-decoded */
    ck_assert_int_eq(thc_once(port, "POST", "/v1/fetch/join/team.j%20v1", "[]", &r), 0);
    ck_assert_int_eq(r.status, 200);
    ck_assert_ptr_nonnull(strstr(r.body, "\"rest\":\"join/team.j v1\""));
    thc_resp_free(&r);
    ck_assert_int_eq(thc_once(port, "POST", "/v1/other", "", &r), 0);
    ck_assert_ptr_nonnull(strstr(r.body, "\"rest\":\"other\""));
    thc_resp_free(&r);
    /* an exact route beats a prefix, and only for its method */
    ck_assert_int_eq(thc_once(port, "PUT", "/v1/fetch/x", "zz", &r), 0);
    ck_assert_ptr_nonnull(strstr(r.body, "\"m\":\"PUT\",\"path\":\"/v1/fetch/x\",\"rest\":\"\""));
    thc_resp_free(&r);
    ck_assert_int_eq(thc_once(port, "POST", "/v1/fetch/x", "zz", &r), 0);
    ck_assert_ptr_nonnull(strstr(r.body, "\"rest\":\"x\""));
    thc_resp_free(&r);

    /* handler-chosen status and JSON error */
    ck_assert_int_eq(thc_once(port, "GET", "/teapot", NULL, &r), 0);
    ck_assert_int_eq(r.status, 418);
    ck_assert_str_eq(r.body, "{\"error\":\"short and stout\"}");
    thc_resp_free(&r);

    /* headers and query arguments */
    int fd = thc_connect(port);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(thc_request(fd, "POST", "/echo?q=a%20b&flag", "X-Tag: t1\r\n", "x", 1, &r), 0);
    ck_assert_ptr_nonnull(strstr(r.body, "\"tag\":\"t1\",\"q\":\"a b\""));
    thc_resp_free(&r);
    close(fd);
    tsr_http_server_free(srv);
}
END_TEST

START_TEST(errors) {
    tsr_http_options_t o = {0};
    o.max_body = 1000;
    tsr_http_server_t *srv = start_server(&o, NULL);
    unsigned port = tsr_http_server_port(srv);
    thc_resp_t r;
    ck_assert_int_eq(thc_once(port, "GET", "/nope", NULL, &r), 0);
    ck_assert_int_eq(r.status, 404);
    ck_assert_str_eq(r.body, "{\"error\":\"no route for GET /nope\"}");
    char v[128];
    ck_assert_int_eq(thc_header(r.headers, "Content-Type", v, sizeof v), 0);
    ck_assert_str_eq(v, "application/json");
    thc_resp_free(&r);
    /* prefix needs its trailing slash */
    ck_assert_int_eq(thc_once(port, "POST", "/v1", "", &r), 0);
    ck_assert_int_eq(r.status, 404);
    thc_resp_free(&r);

    ck_assert_int_eq(thc_once(port, "DELETE", "/hello", NULL, &r), 0);
    ck_assert_int_eq(r.status, 405);
    ck_assert_str_eq(r.body, "{\"error\":\"method DELETE not allowed for /hello\"}");
    ck_assert_int_eq(thc_header(r.headers, "Allow", v, sizeof v), 0);
    ck_assert_str_eq(v, "GET, HEAD");
    thc_resp_free(&r);
    ck_assert_int_eq(thc_once(port, "GET", "/v1/fetch/x", NULL, &r), 0);
    ck_assert_int_eq(r.status, 405);
    ck_assert_int_eq(thc_header(r.headers, "Allow", v, sizeof v), 0);
    ck_assert_str_eq(v, "POST, POST, PUT");
    thc_resp_free(&r);

    /* 413 from Content-Length, answered before the body is read */
    char body[1001];
    memset(body, 'x', sizeof body);
    int fd = thc_connect(port);
    ck_assert_int_eq(thc_request(fd, "POST", "/echo", NULL, body, 1001, &r), 0);
    ck_assert_int_eq(r.status, 413);
    ck_assert_ptr_nonnull(strstr(r.body, "1001 bytes is larger than the limit of 1000"));
    ck_assert_int_eq(r.closed, 1);
    thc_resp_free(&r);
    close(fd);
    /* exactly the limit is fine */
    fd = thc_connect(port);
    ck_assert_int_eq(thc_request(fd, "POST", "/echo", NULL, body, 1000, &r), 0);
    ck_assert_int_eq(r.status, 200);
    thc_resp_free(&r);
    close(fd);

    /* 413 for a chunked body that grows past the limit */
    fd = thc_connect(port);
    const char *head = "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n";
    ck_assert_int_eq(thc_write_all(fd, head, strlen(head)), 0);
    for (int i = 0; i < 3; i++) {
        ck_assert_int_eq(thc_write_all(fd, "190\r\n", 5), 0); /* 400 bytes */
        ck_assert_int_eq(thc_write_all(fd, body, 400), 0);
        ck_assert_int_eq(thc_write_all(fd, "\r\n", 2), 0);
    }
    ck_assert_int_eq(thc_write_all(fd, "0\r\n\r\n", 5), 0);
    ck_assert_int_eq(thc_read_response(fd, &r, 0), 0);
    ck_assert_int_eq(r.status, 413);
    ck_assert_str_eq(r.body, "{\"error\":\"request body is larger than the limit of 1000 bytes\"}");
    thc_resp_free(&r);
    close(fd);

    /* a malformed request line: MHD answers 400 or drops the connection; the server survives */
    fd = thc_connect(port);
    ck_assert_int_eq(thc_write_all(fd, "BLAH\r\n\r\n", 8), 0);
    if (thc_read_response(fd, &r, 0) == 0) {
        ck_assert_int_eq(r.status, 400);
        thc_resp_free(&r);
    }
    close(fd);
    ck_assert_int_eq(thc_once(port, "GET", "/hello", NULL, &r), 0);
    ck_assert_int_eq(r.status, 200);
    thc_resp_free(&r);
    tsr_http_server_free(srv);
}
END_TEST

START_TEST(keep_alive_and_large_bodies) {
    tsr_metrics_t *m = tsr_metrics_new();
    tsr_http_server_t *srv = start_server(NULL, m);
    unsigned port = tsr_http_server_port(srv);
    int fd = thc_connect(port);
    ck_assert_int_ge(fd, 0);
    thc_resp_t r;
    for (int i = 0; i < 200; i++) {
        char b[64];
        int n = snprintf(b, sizeof b, "request %d", i);
        ck_assert_int_eq(thc_request(fd, "POST", "/echo", NULL, b, (size_t)n, &r), 0);
        ck_assert_int_eq(r.status, 200);
        ck_assert_int_eq(r.closed, 0);
        char want[64];
        snprintf(want, sizeof want, "\"len\":%d,", n);
        ck_assert_ptr_nonnull(strstr(r.body, want));
        thc_resp_free(&r);
    }
    /* one connection served all 200 requests */
    tsr_buf_t b;
    tsr_buf_init(&b);
    tsr_metrics_write(m, &b);
    ck_assert_ptr_nonnull(strstr(tsr_buf_cstr(&b), "\ntessera_http_open_connections 1\n"));
    ck_assert_ptr_nonnull(
        strstr(tsr_buf_cstr(&b),
               "tessera_http_requests_total{route=\"POST /echo\",code=\"2xx\"} 200\n"));
    tsr_buf_free(&b);

    /* a 12 MiB body up and a 6 MiB body down on the same connection, twice */
    size_t big = (size_t)12 << 20;
    char *body = malloc(big);
    tsr_rng_t rng = {3};
    for (size_t i = 0; i < big; i++) body[i] = (char)tsr_rng_next(&rng);
    for (int rep = 0; rep < 2; rep++) {
        ck_assert_int_eq(thc_request(fd, "POST", "/echo", NULL, body, big, &r), 0);
        ck_assert_int_eq(r.status, 200);
        char want[128];
        snprintf(want, sizeof want, "\"len\":%zu,\"sum\":%llu}", big,
                 (unsigned long long)fnv(body, big));
        ck_assert_ptr_nonnull(strstr(r.body, want));
        thc_resp_free(&r);
        ck_assert_int_eq(thc_request(fd, "GET", "/big?n=6291456", NULL, NULL, 0, &r), 0);
        ck_assert_int_eq(r.status, 200);
        ck_assert_uint_eq(r.body_len, 6291456);
        for (size_t i = 0; i < r.body_len; i += 4097) ck_assert_int_eq(r.body[i], 'a' + i % 26);
        thc_resp_free(&r);
    }
    free(body);
    close(fd);
    tsr_http_server_free(srv);
    tsr_metrics_free(m);
}
END_TEST

typedef struct cl_arg {
    unsigned port;
    int id;
    int ok;
} cl_arg_t;

static void *client_thread(void *p) {
    cl_arg_t *a = p;
    int fd = thc_connect(a->port);
    if (fd < 0) return NULL;
    for (int i = 0; i < 300; i++) {
        char path[64], want[64];
        snprintf(path, sizeof path, "/v1/c%d/r%d", a->id, i);
        snprintf(want, sizeof want, "\"rest\":\"c%d/r%d\"", a->id, i);
        thc_resp_t r;
        if (thc_request(fd, "POST", path, NULL, "payload", 7, &r) != 0) break;
        int good = r.status == 200 && strstr(r.body, want) != NULL;
        thc_resp_free(&r);
        if (!good) break;
        a->ok++;
    }
    close(fd);
    return NULL;
}

START_TEST(concurrent_clients) {
    tsr_http_options_t o = {0};
    o.threads = 2;
    o.mode = (tsr_http_mode_t)_i;
    tsr_http_server_t *srv = start_server(&o, NULL);
    enum { N = 6 };
    pthread_t th[N];
    cl_arg_t a[N];
    for (int i = 0; i < N; i++) {
        a[i] = (cl_arg_t){tsr_http_server_port(srv), i, 0};
        pthread_create(&th[i], NULL, client_thread, &a[i]);
    }
    for (int i = 0; i < N; i++) pthread_join(th[i], NULL);
    for (int i = 0; i < N; i++) ck_assert_int_eq(a[i].ok, 300);
    tsr_http_server_free(srv);
}
END_TEST

/* Handlers that overlap prove concurrency: each waits (bounded) until two are running. */
static atomic_int g_running, g_max_running;
static void h_overlap(void *ud, const tsr_http_request_t *req, tsr_http_response_t *resp) {
    int now = atomic_fetch_add(&g_running, 1) + 1;
    int prev = atomic_load(&g_max_running);
    while (now > prev && !atomic_compare_exchange_weak(&g_max_running, &prev, now)) {
    }
    for (int i = 0; i < 2000 && atomic_load(&g_max_running) < 2; i++) sleep_ms(1);
    atomic_fetch_sub(&g_running, 1);
    tsr_buf_puts(resp->body, "{}");
}

static void *overlap_client(void *p) {
    thc_resp_t r;
    if (thc_once(*(unsigned *)p, "GET", "/overlap", NULL, &r) == 0) thc_resp_free(&r);
    return NULL;
}

/* The second client connects only once the first handler runs: its pool thread is busy and
 * cannot accept, so another thread must serve the second connection, concurrently. */
static void overlap_run(tsr_http_mode_t mode) {
    atomic_store(&g_running, 0);
    atomic_store(&g_max_running, 0);
    tsr_http_options_t o = {0};
    o.threads = 2;
    o.mode = mode;
    tsr_http_server_t *srv = tsr_http_server_new(&o);
    ck_assert_int_eq(tsr_http_server_route(srv, "GET", "/overlap", 0, h_overlap, NULL, NULL), 0);
    ck_assert_int_eq(tsr_http_server_start(srv, NULL), 0);
    unsigned port = tsr_http_server_port(srv);
    pthread_t th[2];
    pthread_create(&th[0], NULL, overlap_client, &port);
    for (int i = 0; i < 5000 && atomic_load(&g_running) == 0; i++) sleep_ms(1);
    pthread_create(&th[1], NULL, overlap_client, &port);
    for (int i = 0; i < 2; i++) pthread_join(th[i], NULL);
    ck_assert_int_eq(atomic_load(&g_max_running), 2);
    tsr_http_server_free(srv);
}

START_TEST(handlers_run_concurrently) {
    overlap_run(TSR_HTTP_POOL);
    overlap_run(TSR_HTTP_PER_CONNECTION);
}
END_TEST

START_TEST(pool_mode) {
    tsr_http_options_t o = {0};
    o.mode = TSR_HTTP_POOL;
    tsr_http_server_t *srv = start_server(&o, NULL);
    enum { N = 4 };
    pthread_t th[N];
    cl_arg_t a[N];
    for (int i = 0; i < N; i++) {
        a[i] = (cl_arg_t){tsr_http_server_port(srv), i, 0};
        pthread_create(&th[i], NULL, client_thread, &a[i]);
    }
    for (int i = 0; i < N; i++) pthread_join(th[i], NULL);
    for (int i = 0; i < N; i++) ck_assert_int_eq(a[i].ok, 300);
    ck_assert_int_eq(tsr_http_server_stop(srv, 1000), 0);
    tsr_http_server_free(srv);
}
END_TEST

START_TEST(health_and_metrics) {
    tsr_metrics_t *m = tsr_metrics_new();
    tsr_http_server_t *srv = start_server(NULL, m);
    unsigned port = tsr_http_server_port(srv);
    thc_resp_t r;
    ck_assert_int_eq(thc_once(port, "GET", "/health", NULL, &r), 0);
    ck_assert_int_eq(r.status, 200);
    ck_assert_str_eq(r.body, "{\"status\":\"ok\"}");
    thc_resp_free(&r);
    tsr_http_server_set_ready(srv, 0, "loading upload \"2024-01-02\"");
    ck_assert_int_eq(thc_once(port, "GET", "/health", NULL, &r), 0);
    ck_assert_int_eq(r.status, 503);
    ck_assert_str_eq(r.body,
                     "{\"status\":\"unavailable\",\"reason\":\"loading upload \\\"2024-01-02\\\"\"}");
    thc_resp_free(&r);
    tsr_http_server_set_ready(srv, 1, NULL);
    ck_assert_int_eq(thc_once(port, "GET", "/health", NULL, &r), 0);
    ck_assert_int_eq(r.status, 200);
    thc_resp_free(&r);
    ck_assert_int_eq(thc_once(port, "GET", "/nothing", NULL, &r), 0);
    thc_resp_free(&r);

    ck_assert_int_eq(thc_once(port, "GET", "/metrics", NULL, &r), 0);
    ck_assert_int_eq(r.status, 200);
    char ct[128];
    ck_assert_int_eq(thc_header(r.headers, "Content-Type", ct, sizeof ct), 0);
    ck_assert_str_eq(ct, "text/plain; version=0.0.4; charset=utf-8");
    ck_assert_ptr_nonnull(strstr(r.body, "# TYPE tessera_http_requests_total counter\n"));
    ck_assert_ptr_nonnull(
        strstr(r.body, "tessera_http_requests_total{route=\"GET /health\",code=\"2xx\"} 2\n"));
    ck_assert_ptr_nonnull(
        strstr(r.body, "tessera_http_requests_total{route=\"GET /health\",code=\"5xx\"} 1\n"));
    ck_assert_ptr_nonnull(
        strstr(r.body, "tessera_http_requests_total{route=\"unmatched\",code=\"4xx\"} 1\n"));
    ck_assert_ptr_nonnull(strstr(
        r.body, "tessera_http_request_duration_seconds_count{route=\"GET /health\"} 3\n"));
    /* this connection at least; earlier ones may not have been reaped yet */
    const char *oc = strstr(r.body, "\ntessera_http_open_connections ");
    ck_assert_ptr_nonnull(oc);
    ck_assert_int_ge(atoi(oc + strlen("\ntessera_http_open_connections ")), 1);
    thc_resp_free(&r);
    tsr_http_server_free(srv);
    tsr_metrics_free(m);
}
END_TEST

/* Slow handler for the stop tests: sleeps ud milliseconds (or until the test releases it),
 * then records that it finished. */
static atomic_int g_slow_started, g_slow_finished, g_slow_release;
static void h_slow(void *ud, const tsr_http_request_t *req, tsr_http_response_t *resp) {
    atomic_store(&g_slow_started, 1);
    for (long i = 0; i < (long)(intptr_t)ud && !atomic_load(&g_slow_release); i++) sleep_ms(1);
    tsr_buf_puts(resp->body, "{\"slow\":true}");
    atomic_store(&g_slow_finished, 1);
}

typedef struct slow_arg {
    unsigned port;
    int status;
    char body[64];
} slow_arg_t;

static void *slow_client(void *p) {
    slow_arg_t *a = p;
    thc_resp_t r;
    a->status = -1;
    if (thc_once(a->port, "GET", "/slow", NULL, &r) == 0) {
        a->status = r.status;
        snprintf(a->body, sizeof a->body, "%s", r.body);
        thc_resp_free(&r);
    }
    return NULL;
}

static tsr_http_server_t *slow_server(long ms, int mode) {
    atomic_store(&g_slow_started, 0); /* tests also run in one process (CK_FORK=no) */
    atomic_store(&g_slow_finished, 0);
    atomic_store(&g_slow_release, 0);
    tsr_http_options_t o = {0};
    o.mode = (tsr_http_mode_t)mode;
    tsr_http_server_t *srv = tsr_http_server_new(&o);
    ck_assert_int_eq(
        tsr_http_server_route(srv, "GET", "/slow", 0, h_slow, (void *)(intptr_t)ms, NULL), 0);
    ck_assert_int_eq(tsr_http_server_route(srv, "GET", "/hello", 0, h_text, "hi", NULL), 0);
    ck_assert_int_eq(tsr_http_server_start(srv, NULL), 0);
    return srv;
}

START_TEST(graceful_stop_in_flight) {
    tsr_http_server_t *srv = slow_server(300, _i);
    unsigned port = tsr_http_server_port(srv);
    /* an idle keep-alive connection open during the stop */
    int idle = thc_connect(port);
    thc_resp_t r;
    ck_assert_int_eq(thc_request(idle, "GET", "/hello", NULL, NULL, 0, &r), 0);
    thc_resp_free(&r);

    slow_arg_t a = {port, 0, ""};
    pthread_t th;
    pthread_create(&th, NULL, slow_client, &a);
    for (int i = 0; i < 5000 && !atomic_load(&g_slow_started); i++) sleep_ms(1);
    ck_assert(atomic_load(&g_slow_started));
    /* the idle connection's request completes on the server a moment after its client has
     * read the response: wait (bounded) until only the slow one is in flight */
    for (int i = 0; i < 5000 && tsr_http_server_inflight(srv) != 1; i++) sleep_ms(1);
    ck_assert_int_eq(tsr_http_server_inflight(srv), 1);
    ck_assert_int_eq(tsr_http_server_stop(srv, 5000), 0);
    ck_assert(atomic_load(&g_slow_finished)); /* no handler after stop returns */
    pthread_join(th, NULL);
    ck_assert_int_eq(a.status, 200);          /* the in-flight request got its answer */
    ck_assert_str_eq(a.body, "{\"slow\":true}");
    /* the listener is gone, and the idle connection was closed */
    ck_assert_int_eq(thc_connect(port), -1);
    char c;
    ck_assert_int_le(recv(idle, &c, 1, 0), 0);
    close(idle);
    ck_assert_int_eq(tsr_http_server_stop(srv, 0), 0); /* idempotent */
    tsr_http_server_free(srv);
}
END_TEST

START_TEST(stop_drain_timeout) {
    tsr_http_server_t *srv = slow_server(600, _i);
    slow_arg_t a = {tsr_http_server_port(srv), 0, ""};
    pthread_t th;
    pthread_create(&th, NULL, slow_client, &a);
    for (int i = 0; i < 5000 && !atomic_load(&g_slow_started); i++) sleep_ms(1);
    ck_assert(atomic_load(&g_slow_started));
    ck_assert_int_eq(tsr_http_server_stop(srv, 50), TSR_ETIMEOUT);
    /* the pool threads were joined: the handler had to finish before stop returned */
    ck_assert(atomic_load(&g_slow_finished));
    pthread_join(th, NULL);
    ck_assert_int_ne(a.status, 0);
    tsr_http_server_free(srv);
}
END_TEST

/* During the drain, a new request on an already open connection gets 503 + close. */
typedef struct stop_arg {
    tsr_http_server_t *srv;
    int rc;
} stop_arg_t;

static void *stopper(void *p) {
    stop_arg_t *a = p;
    a->rc = tsr_http_server_stop(a->srv, 5000);
    return NULL;
}

START_TEST(drain_refuses_new_requests) {
    /* the slow request holds the drain open until released below (bounded: 20 s), so the
     * checks in between never race its end on a loaded machine */
    tsr_http_server_t *srv = slow_server(20000, _i);
    unsigned port = tsr_http_server_port(srv);
    slow_arg_t a = {port, 0, ""};
    pthread_t th;
    pthread_create(&th, NULL, slow_client, &a);
    for (int i = 0; i < 5000 && !atomic_load(&g_slow_started); i++) sleep_ms(1);
    /* connect only now: in pool mode the slow handler's thread cannot accept, so this
     * connection lands on a free thread (otherwise it would wait behind the slow request) */
    int ka = thc_connect(port);
    thc_resp_t r;
    ck_assert_int_eq(thc_request(ka, "GET", "/hello", NULL, NULL, 0, &r), 0);
    thc_resp_free(&r);
    /* stop from another thread so this one can talk while the server drains */
    stop_arg_t sa = {srv, -1};
    pthread_t st;
    pthread_create(&st, NULL, stopper, &sa);
    int refused = 0;
    for (int i = 0; i < 2000 && !refused; i++) {
        int fd = thc_connect(port);
        if (fd < 0) refused = 1;
        else close(fd);
        if (!refused) sleep_ms(1);
    }
    ck_assert(refused); /* listener closed at the start of the drain */
    ck_assert_int_eq(thc_request(ka, "GET", "/hello", NULL, NULL, 0, &r), 0);
    ck_assert_int_eq(r.status, 503);
    ck_assert_int_eq(r.closed, 1);
    ck_assert_str_eq(r.body, "{\"error\":\"server is shutting down\"}");
    thc_resp_free(&r);
    atomic_store(&g_slow_release, 1);
    pthread_join(st, NULL);
    ck_assert_int_eq(sa.rc, 0);
    pthread_join(th, NULL);
    ck_assert_int_eq(a.status, 200);
    close(ka);
    tsr_http_server_free(srv);
}
END_TEST

/* Clients that vanish mid-request: the in-flight count returns to 0 (or a drain would wait
 * for nothing) and the server keeps serving. */
START_TEST(client_aborts) {
    tsr_http_server_t *srv = start_server(NULL, NULL);
    unsigned port = tsr_http_server_port(srv);
    for (int i = 0; i < 50; i++) {
        int fd = thc_connect(port);
        ck_assert_int_ge(fd, 0);
        const char *req = i % 2 ? "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123"
                                : "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Le";
        ck_assert_int_eq(thc_write_all(fd, req, strlen(req)), 0);
        close(fd);
    }
    long left = -1;
    for (int i = 0; i < 5000 && (left = tsr_http_server_inflight(srv)) != 0; i++) sleep_ms(1);
    ck_assert_int_eq(left, 0);
    thc_resp_t r;
    ck_assert_int_eq(thc_once(port, "GET", "/hello", NULL, &r), 0);
    ck_assert_int_eq(r.status, 200);
    thc_resp_free(&r);
    ck_assert_int_eq(tsr_http_server_stop(srv, 2000), 0);
    tsr_http_server_free(srv);
}
END_TEST

START_TEST(start_and_route_errors) {
    tsr_error_t err;
    tsr_http_server_t *a = slow_server(1, 0);
    tsr_http_options_t o = {0};
    o.port = tsr_http_server_port(a);
    tsr_http_server_t *b = tsr_http_server_new(&o);
    ck_assert_int_eq(tsr_http_server_route(b, "GET", "/x", 0, h_text, "x", &err), 0);
    ck_assert_int_eq(tsr_http_server_route(b, "GET", "/x", 0, h_text, "x", &err), TSR_EEXIST);
    ck_assert_int_eq(tsr_http_server_route(b, "GET", "/p", 1, h_text, "x", &err), TSR_EINVAL);
    ck_assert_ptr_nonnull(strstr(err.msg, "must end with '/'"));
    ck_assert_int_eq(tsr_http_server_route(b, "GET", "x", 0, h_text, "x", &err), TSR_EINVAL);
    ck_assert_int_eq(tsr_http_server_start(b, &err), TSR_EIO);
    ck_assert_ptr_nonnull(strstr(err.msg, "cannot listen on 127.0.0.1:"));
    tsr_http_server_free(b);
    ck_assert_int_eq(tsr_http_server_route(a, "GET", "/late", 0, h_text, "x", &err), TSR_EINVAL);
    ck_assert_int_eq(tsr_http_server_start(a, &err), TSR_EINVAL);
    tsr_http_server_free(a);

    o.port = 0;
    o.bind_addr = "not-an-ip";
    b = tsr_http_server_new(&o);
    ck_assert_int_eq(tsr_http_server_start(b, &err), TSR_EINVAL);
    tsr_http_server_free(b);
    /* never started: stop and free are fine */
    b = tsr_http_server_new(NULL);
    ck_assert_int_eq(tsr_http_server_stop(b, 10), 0);
    tsr_http_server_free(b);

    /* error-code mapping */
    ck_assert_int_eq(tsr_http_status_for_error(TSR_EINVAL), 400);
    ck_assert_int_eq(tsr_http_status_for_error(TSR_ENOTFOUND), 404);
    ck_assert_int_eq(tsr_http_status_for_error(TSR_EUNAVAIL), 503);
    ck_assert_int_eq(tsr_http_status_for_error(TSR_ETIMEOUT), 504);
    ck_assert_int_eq(tsr_http_status_for_error(TSR_EIO), 500);
}
END_TEST

int main(void) {
    Suite *s = suite_create("http");
    TCase *tc = tcase_create("server");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, routes);
    tcase_add_test(tc, errors);
    tcase_add_test(tc, keep_alive_and_large_bodies);
    tcase_add_loop_test(tc, concurrent_clients, 0, 2);
    tcase_add_test(tc, handlers_run_concurrently);
    tcase_add_test(tc, pool_mode);
    tcase_add_test(tc, health_and_metrics);
    /* the stop tests run in both threading modes (_i = tsr_http_mode_t) */
    tcase_add_loop_test(tc, graceful_stop_in_flight, 0, 2);
    tcase_add_loop_test(tc, stop_drain_timeout, 0, 2);
    tcase_add_loop_test(tc, drain_refuses_new_requests, 0, 2);
    tcase_add_test(tc, client_aborts);
    tcase_add_test(tc, start_and_route_errors);
    suite_add_tcase(s, tc);
    return tsr_test_run(s);
}
