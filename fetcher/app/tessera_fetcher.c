/*
 * tessera_fetcher.c — the tessera-fetcher daemon (fetcher.h has the design).
 *
 * Lifecycle:
 *     parse ─▶ block SIGINT/SIGTERM (every thread inherits the mask) ─▶ start: gRPC and HTTP
 *     listening, routing watcher ─▶ print `grpc=HOST:PORT` and `http=HOST:PORT` (stdout,
 *     flushed) ─▶ wait for a signal ─▶ drain: health NOT_SERVING, HTTP and gRPC finish what
 *     they began ─▶ exit 0.
 */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tsr/fetcher.h"
#include "tsr/log.h"
#include "tsr/mem.h"
#include "tsr/rpc.h"

static const char *usage =
    "usage: tessera-fetcher --coordinator HOST:PORT[,HOST:PORT...] --listen HOST:PORT\n"
    "                       [--http-port P] [--warehouse DIR] [--id ID] [--rpc-threads N]\n"
    "                       [--log-format json|text]\n"
    "\n"
    "Serves FeatureService (FetchJoin, FetchGroupBy) on --listen and the HTTP endpoints\n"
    "/v1/fetch/join|groupby/<name>, /metrics and /health on --http-port (0: a free port, -1: no\n"
    "HTTP; default 0), reading tiles from the workers of the coordinator's routing table.\n"
    "Prints grpc=HOST:PORT and http=HOST:PORT once listening; SIGTERM drains and exits 0.\n"
    "  --warehouse DIR   table schemas for compiling configs (default $TESSERA_WAREHOUSE or\n"
    "                    ./warehouse)\n"
    "  --rpc-threads N   gRPC completion-queue threads, 1..64 (default 1); fetches of up to\n"
    "                    8 rows start on them, larger ones while at most N - 1 are inside a\n"
    "                    handler, the rest on the fetch pool\n";

static int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int usage_error(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "tessera-fetcher: ");
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n%s", usage);
    return 2;
}

static int parse_port(const char *s, long *out) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < -1 || v > 65535) return -1;
    *out = v;
    return 0;
}

int main(int argc, char **argv) {
    tsr_fetcher_opts_t o;
    memset(&o, 0, sizeof o);
    o.http_port = 0;
    o.log = 1;
    const char *wh = getenv("TESSERA_WAREHOUSE") ? getenv("TESSERA_WAREHOUSE") : "warehouse";
    tsr_log_format_t logfmt = isatty(2) ? TSR_LOG_TEXT : TSR_LOG_JSON;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            fputs(usage, stdout);
            return 0;
        }
        if (a[0] != '-') return usage_error("unexpected argument '%s'", a);
        if (i + 1 >= argc) return usage_error("%s needs a value (or is unknown)", a);
        const char *v = argv[++i];
        long x;
        if (strcmp(a, "--coordinator") == 0) {
            o.coordinators = v;
        } else if (strcmp(a, "--listen") == 0) {
            o.listen = v;
        } else if (strcmp(a, "--http-port") == 0) {
            if (parse_port(v, &x)) return usage_error("--http-port must be -1..65535, got '%s'", v);
            o.http_port = (int)x;
        } else if (strcmp(a, "--warehouse") == 0) {
            wh = v;
        } else if (strcmp(a, "--id") == 0) {
            o.fetcher_id = v;
        } else if (strcmp(a, "--rpc-threads") == 0) {
            char *end;
            x = strtol(v, &end, 10);
            if (*end || x < 1 || x > 64) return usage_error("--rpc-threads must be 1..64, got '%s'", v);
            o.rpc_threads = (int)x;
        } else if (strcmp(a, "--log-format") == 0) {
            if (tsr_log_format_parse(v, &logfmt) != 0) return usage_error("--log-format must be json or text, got '%s'", v);
        } else {
            return usage_error("unknown option '%s'", a);
        }
    }
    if (!o.coordinators) return usage_error("%s is required", "--coordinator");
    if (!o.listen) return usage_error("%s is required", "--listen");
    char whabs[PATH_MAX];
    o.warehouse = realpath(wh, whabs) ? whabs : wh;
    tsr_log_init(stderr, logfmt, TSR_LOG_INFO);
    tsr_error_t err;
    tsr_error_clear(&err);
    /* one server thread (the default): each completion queue polls its own sockets (docs/rpc.md
     * "Polling engine"); with several threads on the server's queue, gRPC's epoll1 */
    if (o.rpc_threads <= 1 && tsr_rpc_set_poll_engine("poll", &err) != 0) {
        fprintf(stderr, "tessera-fetcher: %s\n", err.msg);
        tsr_error_clear(&err);
    }

    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);

    tsr_fetcher_t *f;
    int rc = tsr_fetcher_start(&o, &f, &err);
    if (rc) {
        fprintf(stderr, "tessera-fetcher: %s\n", err.msg);
        return tsr_error_exit_code(rc);
    }
    char host[256];
    snprintf(host, sizeof host, "%s", o.listen);
    *strrchr(host, ':') = 0;
    printf("grpc=%s:%d\n", host, tsr_fetcher_grpc_port(f));
    if (o.http_port >= 0) printf("http=%s:%d\n", host, tsr_fetcher_http_port(f));
    fflush(stdout);
    char malloc_name[128];
    tsr_malloc_name(malloc_name, sizeof malloc_name);
    tsr_log(TSR_LOG_INFO, "fetcher", "serving gRPC on %s:%d, HTTP port %d, coordinators %s, warehouse %s, malloc %s",
            host, tsr_fetcher_grpc_port(f), tsr_fetcher_http_port(f), o.coordinators, o.warehouse, malloc_name);
    int sig = 0;
    sigwait(&set, &sig);
    tsr_log(TSR_LOG_INFO, "fetcher", "%s: draining", sig == SIGINT ? "SIGINT" : "SIGTERM");
    tsr_fetcher_stop(f);
    tsr_log(TSR_LOG_INFO, "fetcher", "stopped");
    return 0;
}
