/*
 * bench_fetcher.c — cost of the cluster fetch path, with baselines measured in the same run:
 *
 *   A. serving CPU, direct calls (no RPC): single reads (tsr_serving_new) vs batched reads
 *      (tsr_serving_new_many: two passes + one many call answered in memory) — the price of
 *      the two-pass evaluation.
 *   B. FetchJoin latency over loopback gRPC: an embedded-style server (FetchJoin inline, reads
 *      in process) vs tessera-fetcher's server object fanning out to 3 in-process fake workers
 *      (ReadPartition answered from the key) — the price of the extra hop.
 *
 *   Part B also prints the process's CPU and context switches per call (client, servers and
 *   fake workers together: on a loaded machine these hold up where latencies do not), for
 *   the fetcher with its default 4 completion-queue threads and with 1 (every fetch then goes
 *   to the fetch pool).
 *
 * Usage: bench_fetcher [requests per case (default 300)]. Keep runs short on shared machines.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cluster.pb-c.h"
#include "tsr/fetcher.h"
#include "tsr/pbvalue.h"
#include "tsr/rpc.h"
#include "tsr/serving.h"

static char wh[256];

static uint64_t now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000ull + (uint64_t)t.tv_nsec;
}

static void wh_setup(void) {
    snprintf(wh, sizeof wh, "/tmp/bench_fetcher_XXXXXX");
    if (!mkdtemp(wh)) exit(1);
    char p[512];
    const char *dirs[] = {"t", "t/ev", "t/ev/ds=2024-01-01"};
    for (int i = 0; i < 3; i++) {
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

static int ref_read(void *ud, const char *gb, const void *key, size_t klen, int64_t q, tsr_value_t *out,
                    tsr_arena_t *arena, tsr_error_t *err) {
    (void)ud, (void)gb, (void)key, (void)arena, (void)err;
    out[0] = tsr_value_long((int64_t)klen * 10 + q % 7);
    out[1] = tsr_value_long(3);
    return 0;
}

static int mem_many(void *ud, tsr_tile_read_req_t *reqs, size_t n, int64_t timeout_ms, tsr_arena_t *arena,
                    tsr_error_t *err) {
    (void)ud, (void)timeout_ms;
    for (size_t i = 0; i < n; i++) ref_read(NULL, reqs[i].gb, reqs[i].key, reqs[i].klen, reqs[i].q, reqs[i].out, arena, err);
    return 0;
}

static void install(tsr_serving_t *s) {
    tsr_config_options_t co = {0};
    co.warehouse = wh;
    tsr_diag_t d;
    tsr_diag_init(&d);
    tsr_config_t *c = NULL;
    if (tsr_config_load_string(join_json, strlen(join_json), "t", &co, &c, &d)) exit(1);
    tsr_diag_free(&d);
    tsr_serving_item_t *it;
    tsr_error_t err;
    if (tsr_serving_prepare(c, wh, 19723, &it, &err)) exit(1);
    tsr_serving_install(s, it);
}

static void request(size_t n, tsr_buf_t *out) {
    tsr_arena_t a;
    tsr_arena_init(&a, 4096);
    Tessera__V1__FetchRequest rq;
    tessera__v1__fetch_request__init(&rq);
    rq.name = "t.join.v1";
    rq.n_rows = n;
    rq.rows = tsr_arena_alloc(&a, n * sizeof(*rq.rows));
    for (size_t i = 0; i < n; i++) {
        Tessera__V1__FetchRow *r = tsr_arena_alloc(&a, sizeof *r);
        tessera__v1__fetch_row__init(r);
        r->at_case = TESSERA__V1__FETCH_ROW__AT_AT_MILLIS;
        r->at_millis = 1700000000000 + (int64_t)i;
        r->n_keys = 2;
        r->keys = tsr_arena_alloc(&a, 2 * sizeof(*r->keys));
        for (int k = 0; k < 2; k++) {
            Tessera__V1__FetchRow__KeysEntry *e = tsr_arena_alloc(&a, sizeof *e);
            tessera__v1__fetch_row__keys_entry__init(e);
            e->key = k ? "shop" : "user";
            char *s = tsr_arena_printf(&a, "%s-%zu", e->key, i * 7919 % 100000);
            tsr_value_t v = tsr_value_string(s, strlen(s));
            e->value = tsr_pb_value_new(&v, &a);
            r->keys[k] = e;
        }
        rq.rows[i] = r;
    }
    tsr_buf_clear(out);
    tsr_pb_pack(&rq.base, out);
    tsr_arena_free(&a);
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static double g_cpu_us, g_csw; /* of the last latency() run, per call */

static void report(const char *label, uint64_t *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_u64);
    printf("  %-44s p50 %8.1f us   p99 %8.1f us\n", label, v[n / 2] / 1e3, v[n * 99 / 100] / 1e3);
}

static void report_cost(const char *label, uint64_t *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_u64);
    printf("  %-44s p50 %8.1f us   p99 %8.1f us   CPU %7.1f us  %5.2f switches /call\n", label,
           v[n / 2] / 1e3, v[n * 99 / 100] / 1e3, g_cpu_us, g_csw);
}

/* ---- fake workers and coordinator (as in test_fetcher.c) */

static int h_read(void *ud, tsr_rpc_call_t *call, const uint8_t *req, size_t n, tsr_buf_t *resp, tsr_error_t *err) {
    (void)ud, (void)call;
    tsr_arena_t a;
    tsr_arena_init(&a, 8192);
    Tessera__V1__ReadPartitionRequest *rq = tsr_pb_unpack(&tessera__v1__read_partition_request__descriptor, req, n, &a, err);
    if (!rq) return TSR_EINVAL;
    Tessera__V1__ReadPartitionResponse out;
    tessera__v1__read_partition_response__init(&out);
    out.n_results = rq->n_items;
    out.results = tsr_arena_alloc(&a, (rq->n_items + 1) * sizeof(*out.results));
    for (size_t i = 0; i < rq->n_items; i++) {
        Tessera__V1__ReadResult *r = tsr_arena_alloc(&a, sizeof *r);
        tessera__v1__read_result__init(r);
        tsr_value_t v[2];
        ref_read(NULL, NULL, NULL, rq->items[i]->key.len, rq->items[i]->at_millis, v, &a, NULL);
        r->n_values = 2;
        r->values = tsr_arena_alloc(&a, 2 * sizeof(*r->values));
        for (int k = 0; k < 2; k++) r->values[k] = tsr_pb_value_new(&v[k], &a);
        out.results[i] = r;
    }
    tsr_pb_pack(&out.base, resp);
    tsr_arena_free(&a);
    return 0;
}

static tsr_buf_t table;
static int h_watch(void *ud, tsr_rpc_call_t *call, const uint8_t *req, size_t n, tsr_error_t *err) {
    (void)ud, (void)req, (void)n, (void)err;
    if (tsr_rpc_call_send(call, table.data, table.len) != 0) return 0;
    for (int i = 0; i < 10000 && !tsr_rpc_call_cancelled(call); i++) usleep(5000);
    return 0;
}

static tsr_serving_t *embedded;
static int h_embedded(void *ud, tsr_rpc_call_t *call, const uint8_t *req, size_t n, tsr_buf_t *resp, tsr_error_t *err) {
    static __thread tsr_arena_t *a;
    (void)ud;
    if (!a) {
        a = malloc(sizeof *a);
        tsr_arena_init(a, 1 << 16);
    }
    tsr_arena_reset(a);
    return tsr_serving_fetch_pb(embedded, 1, req, n, tsr_rpc_call_remaining_ms(call), resp, a, err);
}

static void usage_now(double *cpu_s, double *sw) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    *cpu_s = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec * 1e-6 +
             (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec * 1e-6;
    *sw = (double)(ru.ru_nvcsw + ru.ru_nivcsw);
}

static void latency(tsr_rpc_client_t *c, const tsr_buf_t *req, int n, uint64_t *out) {
    double c0 = 0, s0 = 0, c1, s1;
    tsr_rpc_reply_t r;
    tsr_rpc_reply_init(&r);
    tsr_rpc_call_opts_t o = {.timeout_ms = 5000};
    for (int i = 0; i < n + 20; i++) {
        uint64_t t0 = now_ns();
        if (tsr_rpc_client_call(c, "/tessera.v1.FeatureService/FetchJoin", req->data, req->len, &o, &r, NULL)) {
            fprintf(stderr, "fetch failed: %s\n", r.message);
            exit(1);
        }
        if (i >= 20) out[i - 20] = now_ns() - t0;
        if (i == 19) usage_now(&c0, &s0);
    }
    usage_now(&c1, &s1);
    g_cpu_us = (c1 - c0) * 1e6 / n;
    g_csw = (s1 - s0) / n;
    tsr_rpc_reply_free(&r);
}

int main(int argc, char **argv) {
    int n = argc > 1 ? atoi(argv[1]) : 300;
    if (n < 10) n = 10;
    wh_setup();
    uint64_t *v = malloc((size_t)n * sizeof *v);
    tsr_buf_t req, resp;
    tsr_buf_init(&req);
    tsr_buf_init(&resp);
    tsr_arena_t a;
    tsr_arena_init(&a, 1 << 20); /* one chunk holds a 100-row request in both modes */
    tsr_error_t err;

    printf("A. serving CPU per request (direct call, Join of 2 parts, %d requests each)\n", n);
    tsr_serving_t *single = tsr_serving_new(ref_read, NULL), *many = tsr_serving_new_many(mem_many, NULL);
    install(single);
    install(many);
    const size_t sizes[] = {1, 10, 100};
    for (size_t s = 0; s < 3; s++) {
        request(sizes[s], &req);
        for (int round = 0; round < 2; round++) {
            tsr_serving_t *sv = round ? many : single;
            for (int i = 0; i < n + 20; i++) {
                tsr_buf_clear(&resp);
                tsr_arena_reset(&a);
                uint64_t t0 = now_ns();
                tsr_serving_fetch_pb(sv, 1, req.data, req.len, INT64_MAX, &resp, &a, &err);
                if (i >= 20) v[i - 20] = now_ns() - t0;
            }
            char label[64];
            snprintf(label, sizeof label, "%3zu rows, %s", sizes[s], round ? "batched (two passes)" : "single reads (baseline)");
            report(label, v, n);
        }
    }

    /* B: the embedded-style server vs the fetcher with 3 fake workers */
    tsr_rpc_server_t *w[3];
    char addrs[3][64];
    for (int i = 0; i < 3; i++) {
        w[i] = tsr_rpc_server_new("127.0.0.1:0", NULL, &err);
        tsr_rpc_server_add_unary(w[i], "/tessera.v1.WorkerService/ReadPartition", h_read, NULL, &err);
        tsr_rpc_server_start(w[i], &err);
        snprintf(addrs[i], sizeof addrs[i], "127.0.0.1:%d", tsr_rpc_server_port(w[i]));
    }
    Tessera__V1__RoutingTable m;
    tessera__v1__routing_table__init(&m);
    m.epoch = 1;
    Tessera__V1__WorkerInfo wi[3], *wp[3];
    for (int i = 0; i < 3; i++) {
        tessera__v1__worker_info__init(&wi[i]);
        wi[i].worker_id = addrs[i];
        wi[i].address = addrs[i];
        wp[i] = &wi[i];
    }
    m.n_workers = 3;
    m.workers = wp;
    int32_t owners[12];
    for (int p = 0; p < 12; p++) owners[p] = p % 3;
    Tessera__V1__GroupByRoute r[2], *rp[2];
    const char *names[2] = {"t.by_user.v1", "t.by_shop.v1"};
    for (int i = 0; i < 2; i++) {
        tessera__v1__group_by_route__init(&r[i]);
        r[i].name = (char *)names[i];
        r[i].num_partitions = 12;
        r[i].n_owners = 12;
        r[i].owners = owners;
        rp[i] = &r[i];
    }
    m.n_routes = 2;
    m.routes = rp;
    Tessera__V1__RoutedConfig rc, *rcp[1] = {&rc};
    tessera__v1__routed_config__init(&rc);
    rc.name = "t.join.v1";
    rc.version = 1;
    rc.config_json = (char *)join_json;
    m.n_configs = 1;
    m.configs = rcp;
    tsr_buf_init(&table);
    tsr_pb_pack(&m.base, &table);
    tsr_rpc_server_t *coord = tsr_rpc_server_new("127.0.0.1:0", NULL, &err);
    tsr_rpc_server_add_stream(coord, "/tessera.v1.CoordinatorService/WatchRouting", h_watch, NULL, &err);
    tsr_rpc_server_start(coord, &err);
    char caddr[64], faddr[64], eaddr[64];
    snprintf(caddr, sizeof caddr, "127.0.0.1:%d", tsr_rpc_server_port(coord));
    tsr_fetcher_opts_t o;
    memset(&o, 0, sizeof o);
    o.coordinators = caddr;
    o.listen = "127.0.0.1:0";
    o.http_port = -1;
    o.warehouse = wh;
    o.watch_renew_ms = 60000;
    tsr_fetcher_t *f, *f1;
    if (tsr_fetcher_start(&o, &f, &err) || !tsr_fetcher_wait_routing(f, 1, 0, 5000)) {
        fprintf(stderr, "fetcher: %s\n", err.msg);
        return 1;
    }
    o.rpc_threads = 1;
    if (tsr_fetcher_start(&o, &f1, &err) || !tsr_fetcher_wait_routing(f1, 1, 0, 5000)) {
        fprintf(stderr, "fetcher (1 CQ thread): %s\n", err.msg);
        return 1;
    }
    embedded = single;
    tsr_rpc_server_t *es = tsr_rpc_server_new("127.0.0.1:0", NULL, &err);
    tsr_rpc_server_add_unary(es, "/tessera.v1.FeatureService/FetchJoin", h_embedded, NULL, &err);
    tsr_rpc_server_start(es, &err);
    char f1addr[64];
    snprintf(eaddr, sizeof eaddr, "127.0.0.1:%d", tsr_rpc_server_port(es));
    snprintf(faddr, sizeof faddr, "127.0.0.1:%d", tsr_fetcher_grpc_port(f));
    snprintf(f1addr, sizeof f1addr, "127.0.0.1:%d", tsr_fetcher_grpc_port(f1));
    tsr_rpc_client_t *ce = tsr_rpc_client_new(eaddr, &err), *cf = tsr_rpc_client_new(faddr, &err);
    tsr_rpc_client_t *cf1 = tsr_rpc_client_new(f1addr, &err);
    printf("B. FetchJoin over loopback gRPC, sequential, %d requests each\n", n);
    for (size_t s = 0; s < 3; s++) {
        request(sizes[s], &req);
        char label[64];
        latency(ce, &req, n, v);
        snprintf(label, sizeof label, "%3zu rows, in-process reads (baseline)", sizes[s]);
        report_cost(label, v, n);
        latency(cf, &req, n, v);
        snprintf(label, sizeof label, "%3zu rows, fetcher -> 3 workers", sizes[s]);
        report_cost(label, v, n);
        latency(cf1, &req, n, v);
        snprintf(label, sizeof label, "%3zu rows, fetcher (1 CQ thread) -> 3 workers", sizes[s]);
        report_cost(label, v, n);
    }
    tsr_rpc_client_free(cf1);
    tsr_fetcher_stop(f1);
    tsr_rpc_client_free(ce);
    tsr_rpc_client_free(cf);
    tsr_rpc_server_free(es);
    tsr_fetcher_stop(f);
    tsr_rpc_server_free(coord);
    for (int i = 0; i < 3; i++) tsr_rpc_server_free(w[i]);
    tsr_serving_free(single);
    tsr_serving_free(many);
    tsr_arena_free(&a);
    tsr_buf_free(&req);
    tsr_buf_free(&resp);
    tsr_buf_free(&table);
    free(v);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", wh);
    return system(cmd) == 0 ? 0 : 1;
}
