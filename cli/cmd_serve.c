/*
 * cmd_serve.c — `tessera serve`: the embedded default (SPEC §7), coordinator + worker +
 * fetcher in one process (serve_int.h has the design).
 *
 * Lifecycle:
 *     parse ─▶ block SIGINT/SIGTERM (every thread inherits the mask) ─▶ start: registry,
 *     tile store, configs re-applied, ingests resume at their stored offsets, gRPC + HTTP
 *     listening ─▶ print `grpc=HOST:PORT` and `http=HOST:PORT` (stdout, flushed) ─▶ wait for
 *     a signal ─▶ drain: health NOT_SERVING, HTTP and gRPC stop accepting and finish what
 *     they began, ingests finish their batch in hand ─▶ close the store ─▶ exit 0.
 */
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli_int.h"
#include "serve_int.h"
#include "tsr/log.h"

static int parse_long(const char *s, long lo, long hi, long *out) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) return -1;
    *out = v;
    return 0;
}

static int mkdir_p(const char *path) {
    char buf[PATH_MAX];
    size_t n = strlen(path);
    if (n == 0 || n >= sizeof buf) return -1;
    memcpy(buf, path, n + 1);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/') continue;
        *p = 0;
        if (mkdir(buf, 0755) != 0 && errno != EEXIST) return -1;
        *p = '/';
    }
    return mkdir(buf, 0755) != 0 && errno != EEXIST ? -1 : 0;
}

/* An absolute form of path (which need not exist). */
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

static int run(int argc, char **argv) {
    const tsr_cli_cmd_t *cmd = &tsr_cmd_serve_def;
    tsr_server_opts_t o;
    memset(&o, 0, sizeof o);
    o.grpc_port = 7070;
    o.http_port = 7071;
    o.bind = "127.0.0.1";
    const char *wh = getenv("TESSERA_WAREHOUSE") ? getenv("TESSERA_WAREHOUSE") : "warehouse";
    o.kafka_bootstrap = getenv("TESSERA_KAFKA");
    int quiet = 0;
    tsr_log_format_t logfmt = isatty(2) ? TSR_LOG_TEXT : TSR_LOG_JSON;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--quiet") == 0) {
            quiet = 1;
            continue;
        }
        if (a[0] != '-') return tsr_cli_usage_error(cmd, "unexpected argument '%s'", a);
        if (i + 1 >= argc) return tsr_cli_usage_error(cmd, "%s needs a value (or is unknown)", a);
        const char *v = argv[++i];
        long x;
        if (strcmp(a, "--data-dir") == 0) {
            o.data_dir = v;
        } else if (strcmp(a, "--warehouse") == 0) {
            wh = v;
        } else if (strcmp(a, "--grpc-port") == 0) {
            if (parse_long(v, 0, 65535, &x)) return tsr_cli_usage_error(cmd, "--grpc-port must be 0..65535, got '%s'", v);
            o.grpc_port = (int)x;
        } else if (strcmp(a, "--http-port") == 0) {
            if (parse_long(v, -1, 65535, &x)) return tsr_cli_usage_error(cmd, "--http-port must be -1..65535, got '%s'", v);
            o.http_port = (int)x;
        } else if (strcmp(a, "--kafka-bootstrap") == 0) {
            o.kafka_bootstrap = v;
        } else if (strcmp(a, "--bind") == 0) {
            o.bind = v;
        } else if (strcmp(a, "--allowed-lateness-ms") == 0) {
            if (parse_long(v, -1, LONG_MAX, &x))
                return tsr_cli_usage_error(cmd, "--allowed-lateness-ms must be a number of ms (-1: no limit), got '%s'", v);
            o.allowed_lateness_ms = x == 0 ? -1 : x;
        } else if (strcmp(a, "--log-format") == 0) {
            if (tsr_log_format_parse(v, &logfmt) != 0)
                return tsr_cli_usage_error(cmd, "--log-format must be json or text, got '%s'", v);
        } else if (strcmp(a, "--rpc-threads") == 0) {
            if (parse_long(v, 1, 64, &x)) return tsr_cli_usage_error(cmd, "--rpc-threads must be 1..64, got '%s'", v);
            o.rpc_threads = (int)x;
        } else {
            return tsr_cli_usage_error(cmd, "unknown option '%s'", a);
        }
    }
    if (!o.data_dir) return tsr_cli_usage_error(cmd, "--data-dir is required");
    if (mkdir_p(o.data_dir) != 0) {
        fprintf(stderr, "tessera serve: cannot create %s: %s\n", o.data_dir, strerror(errno));
        return tsr_error_exit_code(TSR_EIO);
    }
    char *data_dir = absolute(o.data_dir);
    char *warehouse = absolute(wh);
    o.data_dir = data_dir;
    o.warehouse = warehouse;
    o.log = quiet ? NULL : stderr;
    tsr_log_init(quiet ? NULL : stderr, logfmt, TSR_LOG_INFO);

    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);

    tsr_error_t err;
    tsr_error_clear(&err);
    tsr_server_t *s;
    int rc = tsr_server_start(&o, &s, &err);
    if (rc) {
        fprintf(stderr, "tessera serve: %s\n", err.msg); /* always plain: the user reads it */
        free(data_dir);
        free(warehouse);
        return tsr_error_exit_code(rc);
    }
    printf("grpc=%s:%d\n", o.bind, tsr_server_grpc_port(s));
    if (o.http_port >= 0) printf("http=%s:%d\n", o.bind, tsr_server_http_port(s));
    fflush(stdout);
    char malloc_name[128];
    tsr_malloc_name(malloc_name, sizeof malloc_name);
    tsr_log(TSR_LOG_INFO, "serve",
                "serving gRPC on %s:%d%s%.0d, data %s, warehouse %s, %s%s, malloc %s; stop with "
                "Ctrl-C or SIGTERM",
                o.bind, tsr_server_grpc_port(s), o.http_port >= 0 ? ", HTTP on port " : "",
                o.http_port >= 0 ? tsr_server_http_port(s) : 0, data_dir, warehouse,
                o.kafka_bootstrap ? "streaming from Kafka at " : "no Kafka (no streaming)",
                o.kafka_bootstrap ? o.kafka_bootstrap : "", malloc_name);
    int sig = 0;
    sigwait(&set, &sig);
    tsr_log(TSR_LOG_INFO, "serve", "%s: draining", sig == SIGINT ? "SIGINT" : "SIGTERM");
    tsr_server_stop(s);
    tsr_log(TSR_LOG_INFO, "serve", "stopped");
    free(data_dir);
    free(warehouse);
    return 0;
}

const tsr_cli_cmd_t tsr_cmd_serve_def = {
    "serve",
    "run the online server (worker, fetcher and a local registry in one process)",
    "usage: tessera serve --data-dir DIR [--grpc-port P] [--http-port P] [--warehouse DIR]\n"
    "                     [--kafka-bootstrap ADDR] [--bind ADDR] [--allowed-lateness-ms MS]\n"
    "                     [--rpc-threads N] [--log-format json|text] [--quiet]\n"
    "\n"
    "The embedded default (SPEC section 7): applied configs are kept under DIR/configs, tiles\n"
    "in a RocksDB store under DIR/tiles. Serves tessera.v1.FeatureService (FetchJoin,\n"
    "FetchGroupBy), tessera.v1.AdminService (apply, get, delete, upload, status) and\n"
    "grpc.health.v1.Health over gRPC, and POST /v1/fetch/join/<name>,\n"
    "POST /v1/fetch/groupby/<name>, GET /metrics and GET /health over HTTP.\n"
    "With --kafka-bootstrap, every served GroupBy whose source names a topic is streamed from\n"
    "it; offsets are stored with the tiles, so a restart resumes where it stopped.\n"
    "Prints grpc=HOST:PORT and http=HOST:PORT on stdout once listening. SIGINT or SIGTERM\n"
    "drains (requests in flight finish, consumed batches are stored) and exits 0.\n"
    "\n"
    "options:\n"
    "  --data-dir DIR          state directory (created if missing; required)\n"
    "  --grpc-port P           gRPC port (default 7070; 0 = a free port)\n"
    "  --http-port P           HTTP port (default 7071; 0 = a free port; -1 = no HTTP)\n"
    "  --warehouse DIR         warehouse root for table schemas and uploads\n"
    "                          (default $TESSERA_WAREHOUSE, else ./warehouse)\n"
    "  --kafka-bootstrap ADDR  Kafka bootstrap host:port (default $TESSERA_KAFKA; none: no\n"
    "                          streaming)\n"
    "  --bind ADDR             listen address (default 127.0.0.1)\n"
    "  --allowed-lateness-ms MS  events older than the newest of their partition by more\n"
    "                          than this are counted as late and dropped (default 1 day;\n"
    "                          -1: never)\n"
    "  --rpc-threads N         gRPC completion-queue threads (default 1; fetches of more than\n"
    "                          8 rows run on their own thread)\n"
    "  --log-format json|text  log lines on stderr: JSON objects (ts, level, component, msg)\n"
    "                          or text (default: text on a terminal, json otherwise)\n"
    "  --quiet                 no log lines on stderr\n",
    run,
};
