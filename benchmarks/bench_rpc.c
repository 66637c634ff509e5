/*
 * bench_rpc.c — the floor of every online benchmark: a trivial unary echo RPC over Tessera's
 * gRPC layer (tsr/rpc.h) on loopback, in one process.
 *
 * Measures
 *   1. sequential unary echo: latency p50/p99/p999 and calls/s (one call in flight);
 *   2. throughput with K calls in flight (default 16), two ways: K blocking client threads
 *      sharing one channel, and K async calls kept in flight from the client's one completion
 *      thread (tsr_rpc_client_call_async; how a fetcher fans out);
 *   3. a streaming read: messages/s of a server-streaming call (the Watch/stream path).
 * This IS the baseline: bench_fetch compares FetchJoin's p99 with the echo p99 measured in the
 * same run on the same server (issue 4 target: FetchJoin p99 ≤ 3× echo p99). Latency depends
 * on CPU placement (PLATFORM-NOTES): pin with `taskset -c 0` to compare runs.
 *
 * Usage: bench_rpc [--calls N] [--seconds S] [--inflight K] [--payload BYTES] [--cq-threads T]
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "tsr/rpc.h"

/* This process's CPU seconds (all threads) and context switches so far. */
static void usage_now(double *cpu_s, long *switches) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    *cpu_s = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec * 1e-6 +
             (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec * 1e-6;
    *switches = ru.ru_nvcsw + ru.ru_nivcsw;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int h_echo(void *ud, tsr_rpc_call_t *call, const uint8_t *req, size_t n, tsr_buf_t *resp,
                  tsr_error_t *err) {
    tsr_buf_append(resp, req, n);
    return TSR_OK;
}

static int h_stream(void *ud, tsr_rpc_call_t *call, const uint8_t *req, size_t n,
                    tsr_error_t *err) {
    char msg[64];
    memset(msg, 'x', sizeof(msg));
    int count = atoi((const char *)ud);
    for (int i = 0; i < count; i++)
        if (tsr_rpc_call_send(call, msg, sizeof(msg)) != TSR_OK)
            return tsr_error_set(err, TSR_EUNAVAIL, "client went away");
    return TSR_OK;
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

typedef struct load_arg {
    tsr_rpc_client_t *cli;
    const char *payload;
    size_t n;
    double until;
    long calls, errors;
} load_arg_t;

static void *load_main(void *p) {
    load_arg_t *a = p;
    tsr_rpc_reply_t r;
    tsr_rpc_reply_init(&r);
    tsr_rpc_call_opts_t o = {.timeout_ms = 5000};
    while (now_s() < a->until) {
        for (int i = 0; i < 64; i++) {
            if (tsr_rpc_client_call(a->cli, "/bench.Echo/Echo", a->payload, a->n, &o, &r, NULL))
                a->errors++;
            a->calls++;
        }
    }
    tsr_rpc_reply_free(&r);
    return NULL;
}

typedef struct async_load {
    tsr_rpc_client_t *cli;
    const char *payload;
    size_t n;
    double until;
    atomic_long calls, errors;
    atomic_int active;
} async_load_t;

/* Each completion starts the next call until time is up: K calls stay in flight. */
static void async_cb(void *ud, int rc, const tsr_rpc_reply_t *r, const char *msg) {
    async_load_t *a = ud;
    atomic_fetch_add(&a->calls, 1);
    if (rc) atomic_fetch_add(&a->errors, 1);
    tsr_rpc_call_opts_t o = {.timeout_ms = 5000};
    if (now_s() >= a->until ||
        tsr_rpc_client_call_async(a->cli, "/bench.Echo/Echo", a->payload, a->n, &o, async_cb, a,
                                  NULL) != TSR_OK)
        atomic_fetch_sub(&a->active, 1);
}

static int count_cb(void *ud, const uint8_t *msg, size_t n) {
    (*(long *)ud)++;
    return 0;
}

int main(int argc, char **argv) {
    long calls = 20000;
    double seconds = 3.0;
    int inflight = 16, cq_threads = 1;
    size_t payload = 64;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--calls") && i + 1 < argc) calls = atol(argv[++i]);
        else if (!strcmp(argv[i], "--seconds") && i + 1 < argc) seconds = atof(argv[++i]);
        else if (!strcmp(argv[i], "--inflight") && i + 1 < argc) inflight = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--payload") && i + 1 < argc) payload = (size_t)atol(argv[++i]);
        else if (!strcmp(argv[i], "--cq-threads") && i + 1 < argc) cq_threads = atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: %s [--calls N] [--seconds S] [--inflight K] [--payload B] "
                            "[--cq-threads T]\n", argv[0]);
            return 2;
        }
    }
    if (calls < 100) calls = 100;
    if (inflight < 1) inflight = 1;

    tsr_error_t err;
    tsr_rpc_server_opts_t so = {.cq_threads = cq_threads};
    tsr_rpc_server_t *srv = tsr_rpc_server_new("127.0.0.1:0", &so, &err);
    if (!srv) {
        fprintf(stderr, "bench_rpc: %s\n", err.msg);
        return 1;
    }
    const char *stream_count = "50000";
    if (tsr_rpc_server_add_unary(srv, "/bench.Echo/Echo", h_echo, NULL, &err) ||
        tsr_rpc_server_add_stream(srv, "/bench.Echo/Stream", h_stream, (void *)stream_count,
                                  &err) ||
        tsr_rpc_server_start(srv, &err)) {
        fprintf(stderr, "bench_rpc: %s\n", err.msg);
        return 1;
    }
    char target[64];
    snprintf(target, sizeof(target), "127.0.0.1:%d", tsr_rpc_server_port(srv));
    tsr_rpc_client_t *cli = tsr_rpc_client_new(target, &err);
    char *buf = malloc(payload ? payload : 1);
    memset(buf, 'p', payload);
    tsr_rpc_reply_t r;
    tsr_rpc_reply_init(&r);
    tsr_rpc_call_opts_t o = {.timeout_ms = 5000};

    printf("bench_rpc: unary echo over tsr/rpc.h on %s, payload %zu B, %d CQ thread(s)\n", target,
           payload, cq_threads);
    for (int i = 0; i < 2000; i++) /* warm-up: connection, pools, caches */
        if (tsr_rpc_client_call(cli, "/bench.Echo/Echo", buf, payload, &o, &r, &err)) {
            fprintf(stderr, "bench_rpc: warm-up call failed: %s\n", err.msg);
            return 1;
        }

    /* 1. sequential */
    double *lat = malloc((size_t)calls * sizeof(double));
    double cpu0, cpu1;
    long sw0, sw1;
    usage_now(&cpu0, &sw0);
    double t0 = now_s();
    long errors = 0;
    for (long i = 0; i < calls; i++) {
        double a = now_s();
        if (tsr_rpc_client_call(cli, "/bench.Echo/Echo", buf, payload, &o, &r, NULL)) errors++;
        lat[i] = now_s() - a;
    }
    double el = now_s() - t0;
    usage_now(&cpu1, &sw1);
    qsort(lat, (size_t)calls, sizeof(double), cmp_d);
    printf("  sequential (1 in flight): %ld calls, %.0f calls/s, p50 %.1f us, p99 %.1f us, "
           "p999 %.1f us, max %.1f us, errors %ld\n",
           calls, (double)calls / el, lat[calls / 2] * 1e6, lat[calls * 99 / 100] * 1e6,
           lat[calls * 999 / 1000] * 1e6, lat[calls - 1] * 1e6, errors);
    /* CPU and switches per call hold up on a loaded machine where latencies do not */
    printf("  sequential cost (client + server, this process): %.1f us CPU and %.2f context "
           "switches per call\n",
           (cpu1 - cpu0) * 1e6 / (double)calls, (double)(sw1 - sw0) / (double)calls);

    /* 2. K in flight */
    pthread_t *th = malloc((size_t)inflight * sizeof(pthread_t));
    load_arg_t *args = calloc((size_t)inflight, sizeof(load_arg_t));
    double until = now_s() + seconds;
    t0 = now_s();
    for (int t = 0; t < inflight; t++) {
        args[t] = (load_arg_t){cli, buf, payload, until, 0, 0};
        pthread_create(&th[t], NULL, load_main, &args[t]);
    }
    long total = 0, terr = 0;
    for (int t = 0; t < inflight; t++) {
        pthread_join(th[t], NULL);
        total += args[t].calls;
        terr += args[t].errors;
    }
    el = now_s() - t0;
    printf("  throughput, %d blocking threads (%.1f s): %ld calls, %.0f calls/s, errors %ld\n",
           inflight, el, total, (double)total / el, terr);

    async_load_t al = {.cli = cli, .payload = buf, .n = payload, .until = now_s() + seconds};
    atomic_init(&al.calls, 0);
    atomic_init(&al.errors, 0);
    atomic_init(&al.active, inflight);
    t0 = now_s();
    for (int t = 0; t < inflight; t++)
        if (tsr_rpc_client_call_async(cli, "/bench.Echo/Echo", buf, payload, &o, async_cb, &al,
                                      &err) != TSR_OK) {
            fprintf(stderr, "bench_rpc: async call: %s\n", err.msg);
            atomic_fetch_sub(&al.active, 1);
        }
    while (atomic_load(&al.active) > 0) {
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    el = now_s() - t0;
    long acalls = atomic_load(&al.calls), aerr = atomic_load(&al.errors);
    terr += aerr;
    printf("  throughput, %d async in flight (%.1f s): %ld calls, %.0f calls/s, errors %ld\n",
           inflight, el, acalls, (double)acalls / el, aerr);

    /* 3. server streaming */
    long got = 0;
    t0 = now_s();
    tsr_rpc_call_opts_t so2 = {.timeout_ms = 60000};
    int rc = tsr_rpc_client_stream(cli, "/bench.Echo/Stream", "", 0, &so2, count_cb, &got, &r,
                                   &err);
    el = now_s() - t0;
    printf("  server streaming: %ld x 64 B messages in %.2f s, %.0f msgs/s%s\n", got, el,
           (double)got / el, rc ? " (FAILED)" : "");

    printf("  baseline note: this echo IS the floor. Fetch benchmarks report their p99 against "
           "the echo p99 measured in the same run (target FetchJoin p99 <= 3x echo p99); "
           "loopback latency depends on CPU placement, pin with taskset to compare runs.\n");
    tsr_rpc_reply_free(&r);
    free(lat);
    free(th);
    free(args);
    free(buf);
    tsr_rpc_client_free(cli);
    tsr_rpc_server_free(srv);
    return errors || terr || rc ? 1 : 0;
}
