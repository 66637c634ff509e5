/*
 * main.c — tessera-coordinator: one replica of the cluster coordinator (docs/cluster.md).
 *
 *     parse ─▶ block SIGINT/SIGTERM (every thread inherits the mask) ─▶ bind gRPC ─▶ core over
 *     etcd ─▶ register services, start ─▶ print `grpc=HOST:PORT` (stdout, flushed) ─▶ campaign
 *     loop ─▶ SIGTERM/SIGINT: resign (revoke the replica's lease: the other replica takes
 *     over at once; pending uploads fail with UNAVAILABLE), stop streams, drain, exit 0.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tsr/coord.h"
#include "tsr/coord_rpc.h"
#include "tsr/kafka.h"
#include "tsr/kv.h"
#include "tsr/log.h"
#include "tsr/rpc.h"

#ifndef TSR_VERSION
#define TSR_VERSION "0.1.0"
#endif

static const char *usage_text =
    "usage: tessera-coordinator --etcd URL --listen HOST:PORT [--id ID] [--advertise HOST:PORT]\n"
    "                           [--warehouse DIR] [--kafka-bootstrap ADDR] [--lease-ttl S]\n"
    "                           [--partitions N] [--log-format json|text] [--help]\n"
    "\n"
    "One replica of the cluster coordinator: state in etcd (--etcd http://127.0.0.1:2379), one\n"
    "leader among the replicas, the others redirect. Serves CoordinatorService (workers,\n"
    "fetchers), AdminService (the tessera CLI: apply, upload, get workers|partitions) and Health.\n"
    "  --listen         gRPC address; port 0 picks a free port\n"
    "  --id             replica id (default: the advertised address)\n"
    "  --advertise      address clients are redirected to (default: the bound address)\n"
    "  --warehouse      warehouse root for config validation and uploads\n"
    "  --kafka-bootstrap  brokers, to read the partition counts of GroupBys' topics\n"
    "                   (without it every GroupBy has --partitions partitions)\n"
    "  --lease-ttl      worker and replica lease TTL in seconds (default 5)\n"
    "  --partitions     partitions of GroupBys without a topic (default 8)\n"
    "Prints grpc=HOST:PORT on stdout once listening; logs on stderr (JSON unless a terminal).\n"
    "SIGTERM or SIGINT: resign leadership, drain, exit 0.\n";

static int topic_partitions(void *ud, const char *topic, int32_t *n, tsr_error_t *err) {
    return tsr_kafka_topic_partitions((const char *)ud, topic, 2000, n, err);
}

int main(int argc, char **argv) {
    const char *etcd = NULL, *listen = NULL, *id = NULL, *advertise = NULL, *warehouse = NULL, *kafka = NULL;
    long ttl_s = 5, parts = 8;
    tsr_log_format_t logfmt = isatty(2) ? TSR_LOG_TEXT : TSR_LOG_JSON;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            fputs(usage_text, stdout);
            return 0;
        }
#define OPT(name, var)                                                                   \
    if (strcmp(a, name) == 0) {                                                          \
        if (!v) {                                                                        \
            fprintf(stderr, "tessera-coordinator: %s needs a value\n%s", name, usage_text); \
            return 2;                                                                    \
        }                                                                                \
        var = v;                                                                         \
        i++;                                                                             \
        continue;                                                                        \
    }
        OPT("--etcd", etcd)
        OPT("--listen", listen)
        OPT("--id", id)
        OPT("--advertise", advertise)
        OPT("--warehouse", warehouse)
        OPT("--kafka-bootstrap", kafka)
#undef OPT
        if ((strcmp(a, "--lease-ttl") == 0 || strcmp(a, "--partitions") == 0) && v) {
            char *end;
            long x = strtol(v, &end, 10);
            if (*end || x <= 0 || x > 100000) {
                fprintf(stderr, "tessera-coordinator: %s: '%s' is not a positive integer\n", a, v);
                return 2;
            }
            if (a[2] == 'l') ttl_s = x;
            else parts = x;
            i++;
            continue;
        }
        if (strcmp(a, "--log-format") == 0 && v) {
            if (tsr_log_format_parse(v, &logfmt) != 0) {
                fprintf(stderr, "tessera-coordinator: --log-format must be json or text\n");
                return 2;
            }
            i++;
            continue;
        }
        fprintf(stderr, "tessera-coordinator: unknown or incomplete option '%s'\n%s", a, usage_text);
        return 2;
    }
    if (!etcd || !listen) {
        fprintf(stderr, "tessera-coordinator: --etcd and --listen are required\n%s", usage_text);
        return 2;
    }
    tsr_log_init(stderr, logfmt, TSR_LOG_INFO);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, NULL);

    tsr_error_t err;
    tsr_error_clear(&err);
    tsr_kv_t *kv = tsr_kv_etcd_new(etcd, &err);
    if (!kv) {
        fprintf(stderr, "tessera-coordinator: %s\n", err.msg);
        return tsr_error_exit_code(err.code);
    }
    tsr_rpc_server_t *srv = tsr_rpc_server_new(listen, NULL, &err);
    if (!srv) {
        fprintf(stderr, "tessera-coordinator: %s\n", err.msg);
        tsr_kv_free(kv);
        return tsr_error_exit_code(err.code);
    }
    /* the bound address: HOST from --listen (0.0.0.0 → 127.0.0.1 for redirects), the real port */
    char bound[300], host[256];
    const char *colon = strrchr(listen, ':');
    size_t hl = colon ? (size_t)(colon - listen) : strlen(listen);
    if (hl >= sizeof host) hl = sizeof host - 1;
    memcpy(host, listen, hl);
    host[hl] = 0;
    snprintf(bound, sizeof bound, "%s:%d", host, tsr_rpc_server_port(srv));
    char adv[300];
    snprintf(adv, sizeof adv, "%s:%d",
             strcmp(host, "0.0.0.0") == 0 || host[0] == 0 ? "127.0.0.1" : host, tsr_rpc_server_port(srv));
    if (advertise) snprintf(adv, sizeof adv, "%s", advertise);

    tsr_coord_opts_t o;
    memset(&o, 0, sizeof o);
    o.kv = kv;
    /* the replica's lease is renewed on its own connection and thread (never starved by the
     * loop's etcd calls) */
    tsr_kv_t *lease_kv = tsr_kv_etcd_new(etcd, NULL);
    o.lease_kv = lease_kv;
    o.id = id ? id : adv;
    o.advertise = adv;
    o.warehouse = warehouse;
    o.lease_ttl_ms = ttl_s * 1000;
    o.default_partitions = (int32_t)parts;
    if (kafka) {
        o.topic_partitions = topic_partitions;
        o.topic_ud = (void *)kafka;
    }
    tsr_coord_t *c = NULL;
    tsr_coord_rpc_t *r = NULL;
    int rc = tsr_coord_new(&o, &c, &err);
    if (rc == 0) {
        r = tsr_coord_rpc_new(c, TSR_VERSION);
        rc = tsr_coord_rpc_register(r, srv, &err);
    }
    if (rc == 0) rc = tsr_rpc_server_start(srv, &err);
    if (rc == 0) rc = tsr_coord_start(c, &err);
    if (rc) {
        fprintf(stderr, "tessera-coordinator: %s\n", err.msg);
        tsr_rpc_server_free(srv);
        tsr_coord_rpc_free(r);
        tsr_coord_free(c);
        tsr_kv_free(lease_kv);
        tsr_kv_free(kv);
        return tsr_error_exit_code(rc);
    }
    printf("grpc=%s\n", bound);
    fflush(stdout);
    char malloc_name[128];
    tsr_malloc_name(malloc_name, sizeof malloc_name);
    tsr_log(TSR_LOG_INFO, "coordinator", "replica %s listening on %s (etcd %s, lease TTL %ld s, malloc %s)", o.id,
            bound, etcd, ttl_s, malloc_name);
    int sig = 0;
    sigwait(&set, &sig);
    tsr_log(TSR_LOG_INFO, "coordinator", "%s: resigning and draining", sig == SIGINT ? "SIGINT" : "SIGTERM");
    tsr_coord_resign(c);
    tsr_coord_rpc_stop(r);
    tsr_rpc_server_free(srv);
    tsr_coord_rpc_free(r);
    tsr_coord_free(c);
    tsr_kv_free(lease_kv);
    tsr_kv_free(kv);
    tsr_log(TSR_LOG_INFO, "coordinator", "stopped");
    return 0;
}
