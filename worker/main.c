/*
 * main.c — the `tessera-worker` daemon (worker.h, docs/cluster.md "Workers").
 *
 *   parse flags ─▶ tsr_worker_start (stores, WorkerService + Health, coordinator session)
 *               ─▶ print `grpc=HOST:PORT` (stdout, flushed) ─▶ wait for SIGTERM/SIGINT
 *               ─▶ tsr_worker_stop (drain: ingests finish the batch in hand) ─▶ exit 0
 *
 * Exit codes: 0 after a drain, 2 usage, otherwise the error's CLI exit code.
 */
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tsr/log.h"
#include "tsr/mem.h"
#include "tsr/rpc.h"
#include "tsr/worker.h"

static const char *usage_text =
    "usage: tessera-worker --coordinator HOST:PORT[,HOST:PORT...] --listen HOST:PORT --data-dir DIR\n"
    "                      [--id ID] [--warehouse DIR] [--kafka-bootstrap ADDR]\n"
    "                      [--advertise HOST:PORT] [--rpc-threads N] [--log-format json|text]\n"
    "                      [--help]\n"
    "\n"
    "A Tessera cluster worker: registers with the leader coordinator, hosts the GroupBy\n"
    "partitions it is assigned (tiles in DIR, Kafka partitions streamed), runs upload shards and\n"
    "answers ReadPartition for fetchers. Prints grpc=HOST:PORT on stdout once listening.\n"
    "SIGTERM or SIGINT drains (ingests finish the batch in hand) and exits 0.\n"
    "\n"
    "  --coordinator LIST      coordinator addresses; calls follow the leader\n"
    "  --listen HOST:PORT      WorkerService address (port 0: a free port)\n"
    "  --data-dir DIR          tile store, entity store and the worker id live here\n"
    "  --id ID                 worker id (default: kept in DIR/worker-id, generated once)\n"
    "  --warehouse DIR         warehouse root (default $TESSERA_WAREHOUSE, else ./warehouse)\n"
    "  --kafka-bootstrap ADDR  Kafka bootstrap (default $TESSERA_KAFKA; none: no streaming)\n"
    "  --advertise HOST:PORT   address registered with the coordinator (default: --listen)\n"
    "  --rpc-threads N         gRPC completion-queue threads, 1..64 (default 1); reads of up to\n"
    "                          80 items run on them, larger ones on an offload thread\n"
    "  --log-format FMT        json or text (default: json unless stderr is a terminal)\n";

static char *absolute(const char *path) {
    char buf[PATH_MAX];
    if (realpath(path, buf)) return tsr_strdup(buf);
    if (path[0] == '/') return tsr_strdup(path);
    char cwd[PATH_MAX];
    if (!getcwd(cwd, sizeof cwd)) return tsr_strdup(path);
    size_t n = strlen(cwd) + strlen(path) + 2;
    char *s = tsr_malloc(n);
    snprintf(s, n, "%s/%s", cwd, path);
    return s;
}

int main(int argc, char **argv) {
    tsr_worker_opts_t o;
    memset(&o, 0, sizeof o);
    const char *wh = getenv("TESSERA_WAREHOUSE") ? getenv("TESSERA_WAREHOUSE") : "warehouse";
    o.kafka_bootstrap = getenv("TESSERA_KAFKA");
    tsr_log_format_t logfmt = isatty(2) ? TSR_LOG_TEXT : TSR_LOG_JSON;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            fputs(usage_text, stdout);
            return 0;
        }
        const char **dst = strcmp(a, "--coordinator") == 0       ? &o.coordinators
                           : strcmp(a, "--listen") == 0          ? &o.listen
                           : strcmp(a, "--data-dir") == 0        ? &o.data_dir
                           : strcmp(a, "--id") == 0              ? &o.id
                           : strcmp(a, "--warehouse") == 0       ? &wh
                           : strcmp(a, "--kafka-bootstrap") == 0 ? &o.kafka_bootstrap
                           : strcmp(a, "--advertise") == 0       ? &o.advertise
                                                                 : NULL;
        if (strcmp(a, "--rpc-threads") == 0) {
            char *end = NULL;
            long x = v ? strtol(v, &end, 10) : 0;
            if (!v || *end || x < 1 || x > 64) {
                fprintf(stderr, "tessera-worker: --rpc-threads must be 1..64, got '%s'\n%s", v ? v : "",
                        usage_text);
                return 2;
            }
            o.rpc_threads = (int)x;
            i++;
            continue;
        }
        if (strcmp(a, "--log-format") == 0) {
            if (!v || tsr_log_format_parse(v, &logfmt) != 0) {
                fprintf(stderr, "tessera-worker: --log-format takes json or text\n%s", usage_text);
                return 2;
            }
            i++;
            continue;
        }
        if (!dst) {
            fprintf(stderr, "tessera-worker: unknown argument '%s'\n%s", a, usage_text);
            return 2;
        }
        if (!v) {
            fprintf(stderr, "tessera-worker: %s needs a value\n%s", a, usage_text);
            return 2;
        }
        *dst = v;
        i++;
    }
    if (!o.coordinators || !o.listen || !o.data_dir) {
        fprintf(stderr, "tessera-worker: --coordinator, --listen and --data-dir are required\n%s", usage_text);
        return 2;
    }
    char *warehouse = absolute(wh);
    o.warehouse = warehouse;
    o.log = stderr;
    tsr_log_init(stderr, logfmt, TSR_LOG_INFO);
    tsr_error_t err;
    tsr_error_clear(&err);

    /* one server thread: each completion queue polls its own sockets (docs/rpc.md "Polling
     * engine"; with gRPC's epoll1 the watch-stream thread read ReadPartitions off the socket
     * and woke the server thread for each) */
    if (o.rpc_threads <= 1 && tsr_rpc_set_poll_engine("poll", &err) != 0) {
        fprintf(stderr, "tessera-worker: %s\n", err.msg);
        tsr_error_clear(&err);
    }

    /* every thread inherits the mask: only sigwait below sees the signals */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);

    tsr_worker_t *w;
    int rc = tsr_worker_start(&o, &w, &err);
    if (rc) {
        fprintf(stderr, "tessera-worker: %s\n", err.msg);
        free(warehouse);
        return tsr_error_exit_code(rc);
    }
    char host[256];
    snprintf(host, sizeof host, "%s", o.listen);
    char *colon = strrchr(host, ':');
    if (colon) *colon = 0;
    printf("grpc=%s:%d\n", host, tsr_worker_port(w));
    fflush(stdout);
    char malloc_name[128];
    tsr_malloc_name(malloc_name, sizeof malloc_name);
    tsr_log(TSR_LOG_INFO, "worker", "serving ReadPartition on %s:%d, malloc %s", host, tsr_worker_port(w),
            malloc_name);
    int sig = 0;
    sigwait(&set, &sig);
    tsr_log(TSR_LOG_INFO, "worker", "signal %d: draining", sig);
    tsr_worker_stop(w);
    free(warehouse);
    return 0;
}
