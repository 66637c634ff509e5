/*
 * bench_http.c — requests/s and latency percentiles of the HTTP layer (tsr/http.h) over
 * loopback keep-alive connections, against a floor measured in the same run.
 *
 * Floor: a raw TCP server (one blocking thread per connection) that reads each request up to
 * its blank line and writes back a canned HTTP response of the same size as ours. The same
 * client drives both, so (tsr_http - floor) is the cost of libmicrohttpd + our routing and
 * response path. Also measured: the server in thread-per-connection mode, and the fetch route
 * (JSON parse of a 1-row body, a fake fetcher returning 9 features, response building).
 *
 * Usage: bench_http [requests_per_client]   (default 20000)
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../tests/unit/test_http_client.h"
#include "tsr/http.h"

static uint64_t now_ns(void) { return tsr_metrics_now_ns(); }

/* ------------------------------------------------------------------------------------ */
/* Floor: raw TCP, canned response                                                       */

static char g_canned[512];
static size_t g_canned_len;

typedef struct raw_server {
    int lfd;
    unsigned port;
    pthread_t th;
    atomic_int stop;
} raw_server_t;

static void *raw_conn(void *p) {
    int fd = (int)(intptr_t)p;
    char buf[8192];
    size_t have = 0;
    for (;;) {
        ssize_t n = recv(fd, buf + have, sizeof buf - have, 0);
        if (n <= 0) break;
        have += (size_t)n;
        /* answer every complete request in the buffer (no body: GET) */
        size_t start = 0;
        for (size_t i = 0; i + 4 <= have; i++) {
            if (memcmp(buf + i, "\r\n\r\n", 4) == 0) {
                if (thc_write_all(fd, g_canned, g_canned_len) != 0) goto out;
                start = i + 4;
                i += 3;
            }
        }
        memmove(buf, buf + start, have - start);
        have -= start;
        if (have == sizeof buf) break;
    }
out:
    close(fd);
    return NULL;
}

static void *raw_accept(void *p) {
    raw_server_t *s = p;
    while (!atomic_load(&s->stop)) {
        int fd = accept(s->lfd, NULL, NULL);
        if (fd < 0) break;
        if (atomic_load(&s->stop)) {
            close(fd);
            break;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        pthread_t t;
        pthread_create(&t, NULL, raw_conn, (void *)(intptr_t)fd);
        pthread_detach(t);
    }
    return NULL;
}

static void raw_start(raw_server_t *s) {
    s->lfd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(s->lfd, (struct sockaddr *)&sa, sizeof sa) != 0 || listen(s->lfd, 128) != 0) {
        perror("raw server");
        exit(1);
    }
    socklen_t sl = sizeof sa;
    getsockname(s->lfd, (struct sockaddr *)&sa, &sl);
    s->port = ntohs(sa.sin_port);
    atomic_init(&s->stop, 0);
    pthread_create(&s->th, NULL, raw_accept, s);
}

static void raw_stop(raw_server_t *s) {
    atomic_store(&s->stop, 1);
    int fd = thc_connect(s->port); /* wake accept */
    if (fd >= 0) close(fd);
    pthread_join(s->th, NULL);
    close(s->lfd);
}

/* ------------------------------------------------------------------------------------ */
/* Handlers                                                                              */

static void h_ping(void *ud, const tsr_http_request_t *req, tsr_http_response_t *resp) {
    tsr_buf_puts(resp->body, "{}");
}

static int fake_fetch(void *ud, tsr_http_fetch_kind_t kind, const char *name,
                      const tsr_http_fetch_row_t *rows, size_t nrows,
                      tsr_http_fetch_result_t *results, tsr_arena_t *arena, tsr_error_t *err) {
    static const char *const names[9] = {"f_sum_1d", "f_sum_7d", "f_sum_30d",
                                         "f_cnt_1d", "f_cnt_7d", "f_cnt_30d",
                                         "f_avg_1d", "f_avg_7d", "f_last"};
    for (size_t i = 0; i < nrows; i++) {
        tsr_value_t *f = tsr_arena_alloc(arena, 18 * sizeof *f);
        for (int k = 0; k < 9; k++) {
            f[2 * k] = tsr_value_string(names[k], strlen(names[k]));
            f[2 * k + 1] = k < 6 ? tsr_value_long(1000 + k) : tsr_value_double(12.25 * k);
        }
        results[i].ok = 1;
        results[i].features = tsr_value_map(f, 9);
    }
    return 0;
}

/* ------------------------------------------------------------------------------------ */
/* Client                                                                                */

typedef struct run {
    unsigned port;
    const char *method, *path, *body;
    int nreq;
    uint64_t *lat;      /* nreq latencies, ns */
    int errors;
} run_t;

static void *client(void *p) {
    run_t *r = p;
    int fd = thc_connect(r->port);
    if (fd < 0) {
        r->errors = r->nreq;
        return NULL;
    }
    size_t blen = r->body ? strlen(r->body) : 0;
    for (int i = 0; i < r->nreq; i++) {
        thc_resp_t resp;
        uint64_t t0 = now_ns();
        if (thc_request(fd, r->method, r->path, NULL, r->body, blen, &resp) != 0) {
            r->errors += r->nreq - i;
            break;
        }
        r->lat[i] = now_ns() - t0;
        if (resp.status != 200) r->errors++;
        thc_resp_free(&resp);
    }
    close(fd);
    return NULL;
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static void measure(const char *label, unsigned port, const char *method, const char *path,
                    const char *body, int nclients, int nreq) {
    run_t runs[16];
    pthread_t th[16];
    uint64_t *all = malloc((size_t)nclients * nreq * sizeof *all);
    /* warm-up: a few hundred requests on one connection */
    run_t warm = {port, method, path, body, 500, all, 0};
    client(&warm);
    uint64_t t0 = now_ns();
    for (int c = 0; c < nclients; c++) {
        runs[c] = (run_t){port, method, path, body, nreq, all + (size_t)c * nreq, 0};
        pthread_create(&th[c], NULL, client, &runs[c]);
    }
    int errors = 0;
    for (int c = 0; c < nclients; c++) {
        pthread_join(th[c], NULL);
        errors += runs[c].errors;
    }
    double secs = (double)(now_ns() - t0) * 1e-9;
    size_t n = (size_t)nclients * nreq;
    qsort(all, n, sizeof *all, cmp_u64);
    printf("  %-46s conns=%d  %8.0f req/s  p50 %6.1f us  p99 %6.1f us  p999 %7.1f us%s\n", label,
           nclients, (double)n / secs, all[n / 2] / 1e3, all[n * 99 / 100] / 1e3,
           all[n * 999 / 1000] / 1e3, errors ? "  ERRORS" : "");
    if (errors) printf("    (%d failed requests)\n", errors);
    free(all);
}

static tsr_http_server_t *server(tsr_http_mode_t mode) {
    tsr_http_options_t o = {0};
    o.mode = mode;
    tsr_http_server_t *srv = tsr_http_server_new(&o);
    tsr_error_t err;
    if (tsr_http_server_route(srv, "GET", "/ping", 0, h_ping, NULL, &err) ||
        tsr_http_serve_fetch(srv, fake_fetch, NULL, &err) || tsr_http_server_start(srv, &err)) {
        fprintf(stderr, "bench_http: %s\n", err.msg);
        exit(1);
    }
    return srv;
}

int main(int argc, char **argv) {
    int nreq = argc > 1 ? atoi(argv[1]) : 20000;
    if (nreq < 1000) nreq = 1000;
    tsr_http_server_t *pool = server(TSR_HTTP_POOL), *tpc = server(TSR_HTTP_PER_CONNECTION);

    /* the canned floor response copies our server's exact bytes for GET /ping */
    int fd = thc_connect(tsr_http_server_port(pool));
    thc_resp_t r;
    if (fd < 0 || thc_request(fd, "GET", "/ping", NULL, NULL, 0, &r) != 0) {
        fprintf(stderr, "bench_http: cannot reach own server\n");
        return 1;
    }
    g_canned_len = (size_t)snprintf(g_canned, sizeof g_canned, "%s%s", r.headers, r.body);
    thc_resp_free(&r);
    close(fd);
    raw_server_t raw;
    raw_start(&raw);

    const char *fetch_body = "[{\"user_id\":\"u123\",\"merchant_id\":\"m77\"}]";
    printf("bench_http: loopback keep-alive, sequential requests per connection, %d per conn\n",
           nreq);
    printf("  (floor = raw TCP server answering each request with the same %zu response bytes)\n",
           g_canned_len);
    int conns[2] = {1, 4};
    for (int k = 0; k < 2; k++) {
        int c = conns[k];
        int per = c == 1 ? nreq : nreq / 2;
        measure("floor: raw TCP, canned response", raw.port, "GET", "/ping", NULL, c, per);
        measure("tsr_http GET /ping (pool, 2 threads)", tsr_http_server_port(pool), "GET",
                "/ping", NULL, c, per);
        measure("tsr_http GET /ping (per connection, default)", tsr_http_server_port(tpc), "GET",
                "/ping", NULL, c, per);
        measure("tsr_http POST /v1/fetch/join (1 row, 9 feats)", tsr_http_server_port(tpc),
                "POST", "/v1/fetch/join/team.j.v1", fetch_body, c, per);
    }
    raw_stop(&raw);
    tsr_http_server_free(pool);
    tsr_http_server_free(tpc);
    return 0;
}
