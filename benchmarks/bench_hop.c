/*
 * bench_hop.c — what one more gRPC hop costs on this machine, with no work in it: the floor of
 * the cluster's fetch-latency ratio (issue 5: cluster p99 within 1.5x of the single process).
 *
 * Three processes on loopback, as in bench_cluster's part a:
 *   echo    a server answering /bench.Hop/Echo with the request        (the single process,
 *                                                                       or a worker)
 *   proxy   a server whose Echo handler defers and forwards the request  (the fetcher: one
 *           to echo with tsr_rpc_call_fanout, then answers with the      CQ thread, the poll
 *           reply — the fetcher's own path, without the fetch             engine)
 *   driver  this process: an open-loop sender at --rate calls/s, in blocks of --block-s
 *           seconds alternating between echo directly and echo through proxy, so that both
 *           see the same machine; every call's latency from its send.
 * It prints p50/p90/p99 of both and their ratios, and a SUMMARY line. The ratio of the p99s
 * is what a fetch through one more hop costs when the fetch itself costs nothing.
 *
 * Usage: bench_hop [--rate R] [--seconds S] [--block-s B] [--payload BYTES] [--spin-us US]
 *        (bench_hop echo | bench_hop proxy --to HOST:PORT: the servers, started by the driver)
 */
#include <errno.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "tsr/rpc.h"

#define M_ECHO "/bench.Hop/Echo"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void sleep_until(double t) {
    double d = t - now_s();
    if (d <= 0) return;
    struct timespec ts = {(time_t)d, (long)((d - (double)(time_t)d) * 1e9)};
    nanosleep(&ts, NULL);
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* ------------------------------------------------------------------------------------------
 * servers */

static volatile sig_atomic_t g_stop;
static void on_term(int sig) {
    (void)sig;
    g_stop = 1;
}

static int h_echo(void *ud, tsr_rpc_call_t *call, const uint8_t *req, size_t n, tsr_buf_t *resp,
                  tsr_error_t *err) {
    (void)ud, (void)call, (void)err;
    tsr_buf_append(resp, req, n);
    return TSR_OK;
}

typedef struct hop {
    tsr_rpc_call_t *call;
    tsr_rpc_multi_t m;
    tsr_rpc_reply_t reply;
    uint8_t *req;
} hop_t;

static void hop_done(void *ud) {
    hop_t *h = ud;
    if (h->m.rc == TSR_OK) tsr_rpc_call_finish(h->call, TSR_OK, h->reply.body.data, h->reply.body.len, NULL);
    else tsr_rpc_call_finish(h->call, h->m.rc, NULL, 0, h->m.err.msg);
    tsr_rpc_reply_free(&h->reply);
    free(h->req);
    free(h);
}

/* The fetcher's path: defer, one fan-out call on this server's CQ, answer from its reply. */
static int h_proxy(void *ud, tsr_rpc_call_t *call, const uint8_t *req, size_t n, tsr_buf_t *resp,
                   tsr_error_t *err) {
    (void)resp;
    hop_t *h = calloc(1, sizeof *h);
    h->call = call;
    h->req = malloc(n ? n : 1);
    memcpy(h->req, req, n);
    tsr_rpc_reply_init(&h->reply);
    h->m = (tsr_rpc_multi_t){.client = ud, .req = h->req, .n = n, .reply = &h->reply};
    tsr_rpc_call_opts_t o = {.timeout_ms = 5000};
    int rc = tsr_rpc_call_fanout(call, M_ECHO, &h->m, 1, &o, hop_done, h);
    if (rc != TSR_OK) {
        tsr_rpc_reply_free(&h->reply);
        free(h->req);
        free(h);
        return tsr_error_set(err, rc, "fan-out refused");
    }
    return TSR_RPC_DEFER;
}

/* echo (to == NULL) or proxy: serves until SIGTERM; prints grpc=HOST:PORT when listening. */
static int serve(const char *to) {
    tsr_error_t err;
    tsr_error_clear(&err);
    if (tsr_rpc_set_poll_engine("poll", &err) != 0) fprintf(stderr, "bench_hop: %s\n", err.msg);
    signal(SIGTERM, on_term);
    signal(SIGINT, on_term);
    tsr_rpc_server_t *s = tsr_rpc_server_new("127.0.0.1:0", NULL, &err);
    tsr_rpc_client_t *down = to ? tsr_rpc_client_new(to, &err) : NULL;
    if (!s || (to && !down)) {
        fprintf(stderr, "bench_hop: %s\n", err.msg);
        return 1;
    }
    if (tsr_rpc_server_add_unary(s, M_ECHO, to ? h_proxy : h_echo, down, &err) ||
        tsr_rpc_server_start(s, &err)) {
        fprintf(stderr, "bench_hop: %s\n", err.msg);
        return 1;
    }
    printf("grpc=127.0.0.1:%d\n", tsr_rpc_server_port(s));
    fflush(stdout);
    while (!g_stop) pause();
    tsr_rpc_server_free(s);
    tsr_rpc_client_free(down);
    return 0;
}

/* ------------------------------------------------------------------------------------------
 * driver */

/* Starts this binary as a server (argv), reads its grpc= line; returns its PID (0: failed). */
static pid_t spawn(char *const argv[], char *addr, size_t cap) {
    int fd[2];
    if (pipe(fd) != 0) return 0;
    pid_t pid = fork();
    if (pid < 0) return 0;
    if (pid == 0) {
        dup2(fd[1], 1);
        close(fd[0]);
        close(fd[1]);
        execv("/proc/self/exe", argv);
        _exit(127);
    }
    close(fd[1]);
    FILE *f = fdopen(fd[0], "r");
    char line[128] = "";
    int ok = f && fgets(line, sizeof line, f) && strncmp(line, "grpc=", 5) == 0;
    if (f) fclose(f);
    if (!ok) {
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        return 0;
    }
    line[strcspn(line, "\r\n")] = 0;
    snprintf(addr, cap, "%.63s", line + 5);
    return pid;
}

static void stop(pid_t pid) {
    if (pid <= 0) return;
    kill(pid, SIGTERM);
    for (int i = 0; i < 100; i++) { /* <= 5 s, then SIGKILL */
        if (waitpid(pid, NULL, WNOHANG) == pid) return;
        struct timespec ts = {0, 50000000};
        nanosleep(&ts, NULL);
    }
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
}

typedef struct series {
    double *lat;
    size_t n, cap;
    long errors;
} series_t;

static void add(series_t *s, double v) {
    if (s->n == s->cap) {
        s->cap = s->cap ? 2 * s->cap : 4096;
        s->lat = realloc(s->lat, s->cap * sizeof *s->lat);
    }
    s->lat[s->n++] = v;
}

static double pct(const series_t *s, double q) {
    if (s->n == 0) return 0;
    size_t i = (size_t)(q * (double)s->n);
    return s->lat[i < s->n ? i : s->n - 1];
}

int main(int argc, char **argv) {
    if (argc >= 2 && strcmp(argv[1], "echo") == 0) return serve(NULL);
    if (argc >= 4 && strcmp(argv[1], "proxy") == 0 && strcmp(argv[2], "--to") == 0) return serve(argv[3]);
    double rate = 500, seconds = 10, block_s = 1, spin_us = 200;
    size_t payload = 256;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            printf("usage: %s [--rate R] [--seconds S] [--block-s B] [--payload BYTES] [--spin-us US]\n"
                   "One gRPC hop with no work in it: an open loop of R echo calls/s (default 500) for S\n"
                   "seconds (default 10) to an echo server directly and as many through a proxy\n"
                   "(tsr_rpc_call_fanout, as the fetcher), alternating every B seconds (default 1);\n"
                   "payload default 256 B (a 1-entity fetch's size); the sender sleeps until US before\n"
                   "each send (default 200), then spins. Prints p50/p90/p99 of both and a SUMMARY line.\n",
                   argv[0]);
            return 0;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "bench_hop: %s needs a value (or is unknown); --help\n", a);
            return 2;
        }
        const char *v = argv[++i];
        if (!strcmp(a, "--rate")) rate = atof(v);
        else if (!strcmp(a, "--seconds")) seconds = atof(v);
        else if (!strcmp(a, "--block-s")) block_s = atof(v);
        else if (!strcmp(a, "--payload")) payload = (size_t)atol(v);
        else if (!strcmp(a, "--spin-us")) spin_us = atof(v);
        else {
            fprintf(stderr, "bench_hop: unknown option %s; --help\n", a);
            return 2;
        }
    }
    if (rate < 1 || seconds <= 0 || block_s <= 0) {
        fprintf(stderr, "bench_hop: --rate, --seconds and --block-s must be positive\n");
        return 2;
    }
    char echo_addr[64], proxy_addr[64];
    char *eargv[] = {argv[0], "echo", NULL};
    pid_t echo = spawn(eargv, echo_addr, sizeof echo_addr);
    if (!echo) {
        fprintf(stderr, "bench_hop: the echo server did not start\n");
        return 1;
    }
    char *pargv[] = {argv[0], "proxy", "--to", echo_addr, NULL};
    pid_t proxy = spawn(pargv, proxy_addr, sizeof proxy_addr);
    if (!proxy) {
        fprintf(stderr, "bench_hop: the proxy server did not start\n");
        stop(echo);
        return 1;
    }
    tsr_error_t err;
    tsr_rpc_client_t *cli[2] = {tsr_rpc_client_new(echo_addr, &err), tsr_rpc_client_new(proxy_addr, &err)};
    const char *name[2] = {"direct (client -> echo)", "via proxy (client -> proxy -> echo)"};
    char *buf = malloc(payload ? payload : 1);
    memset(buf, 'h', payload);
    tsr_rpc_reply_t r;
    tsr_rpc_reply_init(&r);
    tsr_rpc_call_opts_t o = {.timeout_ms = 5000};
    int rc = 0;
    for (int k = 0; k < 2 && rc == 0; k++) /* warm-up: connections, pools */
        for (int i = 0; i < 500; i++)
            if (tsr_rpc_client_call(cli[k], M_ECHO, buf, payload, &o, &r, &err)) {
                fprintf(stderr, "bench_hop: warm-up of %s failed: %s\n", name[k], err.msg);
                rc = 1;
                break;
            }
    series_t s[2];
    memset(s, 0, sizeof s);
    long late = 0;
    double gap = 1.0 / rate;
    printf("bench_hop: %.0f calls/s, %.0f s each, %.1f s blocks alternating, payload %zu B; echo %s, proxy %s\n",
           rate, seconds, block_s, payload, echo_addr, proxy_addr);
    double t = now_s() + 0.01;
    for (long b = 0; rc == 0 && (double)b * block_s < 2 * seconds; b++) {
        int k = (int)(b % 2);
        double end = t + block_s;
        for (; t < end; t += gap) {
            sleep_until(t - spin_us * 1e-6);
            while (now_s() < t) {
            }
            double a = now_s();
            if (a - t > gap) late++;
            if (tsr_rpc_client_call(cli[k], M_ECHO, buf, payload, &o, &r, NULL)) s[k].errors++;
            else add(&s[k], now_s() - a);
        }
        if (now_s() > t) t = now_s(); /* a stall: the next block starts now */
    }
    double p[2][3];
    for (int k = 0; k < 2; k++) {
        qsort(s[k].lat, s[k].n, sizeof(double), cmp_d);
        p[k][0] = pct(&s[k], 0.50) * 1e6;
        p[k][1] = pct(&s[k], 0.90) * 1e6;
        p[k][2] = pct(&s[k], 0.99) * 1e6;
        printf("  %-38s %7zu calls  p50 %7.1f us  p90 %7.1f us  p99 %7.1f us  errors %ld\n", name[k],
               s[k].n, p[k][0], p[k][1], p[k][2], s[k].errors);
    }
    double r50 = p[0][0] > 0 ? p[1][0] / p[0][0] : 0, r99 = p[0][2] > 0 ? p[1][2] / p[0][2] : 0;
    printf("  one more hop: p50 %.2fx, p99 %.2fx (+%.0f us at p50, +%.0f us at p99); sends late by more than a gap: %ld\n",
           r50, r99, p[1][0] - p[0][0], p[1][2] - p[0][2], late);
    printf("SUMMARY bench_hop rate=%.0f direct_p50_us=%.1f direct_p99_us=%.1f via_p50_us=%.1f via_p99_us=%.1f "
           "p50_ratio=%.2f p99_ratio=%.2f errors=%ld\n",
           rate, p[0][0], p[0][2], p[1][0], p[1][2], r50, r99, s[0].errors + s[1].errors);
    tsr_rpc_reply_free(&r);
    free(buf);
    free(s[0].lat);
    free(s[1].lat);
    tsr_rpc_client_free(cli[0]);
    tsr_rpc_client_free(cli[1]);
    stop(proxy);
    stop(echo);
    return rc || s[0].errors || s[1].errors ? 1 : 0;
}
