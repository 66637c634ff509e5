/*
 * cli_rpc.c — what the CLI's gRPC client commands share (apply, get, describe, delete, status,
 * upload, fetch): the --server / --timeout-ms / -o options, one connection per command, calls
 * that print a one-line reason when they fail, and small formatting helpers.
 *
 * Design:
 *   - The server address is --server, else $TESSERA_SERVER, else 127.0.0.1:7070 (SPEC §7).
 *   - Every call carries a deadline (--timeout-ms, default per command). Calls are fail-fast
 *     (no wait_for_ready): a server that refuses connections answers UNAVAILABLE at once, so
 *     the command exits 4 in milliseconds rather than at the deadline.
 *   - Exit codes come from the status through error.h's table (tsr_rpc_status_to_error, then
 *     tsr_error_exit_code): NOT_FOUND 3, UNAVAILABLE and DEADLINE_EXCEEDED 4, others 1.
 *   - Failures are printed as "tessera <cmd>: <what>: <server's message>", with the server
 *     address for connection problems, so the user sees what to fix.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <protobuf-c/protobuf-c.h>

#include "cli_int.h"
#include "tsr/pbvalue.h"

int tsr_cli_opt_value(const tsr_cli_cmd_t *cmd, int argc, char **argv, int *i, const char *name,
                      const char **val) {
    const char *a = argv[*i];
    size_t nl = strlen(name);
    if (strncmp(a, name, nl) != 0) return 0;
    if (a[nl] == '=') {
        *val = a + nl + 1;
        return 1;
    }
    /* "-ojson": a short option glued to its value. */
    if (a[nl] != '\0') {
        if (nl == 2 && name[0] == '-' && name[1] != '-') {
            *val = a + nl;
            return 1;
        }
        return 0;
    }
    if (*i + 1 >= argc) return -tsr_cli_usage_error(cmd, "%s needs a value", name);
    *val = argv[++*i];
    return 1;
}

int tsr_cli_parse_count(const tsr_cli_cmd_t *cmd, const char *opt, const char *v, int64_t *out) {
    char *end;
    errno = 0;
    long long x = strtoll(v, &end, 10);
    if (errno || end == v || *end || x < 0)
        return -tsr_cli_usage_error(cmd, "%s must be a non-negative integer, got '%s'", opt, v);
    *out = (int64_t)x;
    return 0;
}

int tsr_cli_client_option(const tsr_cli_cmd_t *cmd, int argc, char **argv, int *i,
                          tsr_cli_client_opts_t *o, int with_output) {
    const char *v = NULL;
    int r;
    if ((r = tsr_cli_opt_value(cmd, argc, argv, i, "--server", &v)) != 0) {
        if (r < 0) return r;
        if (!*v) return -tsr_cli_usage_error(cmd, "--server is empty");
        o->server = v;
        return 1;
    }
    if ((r = tsr_cli_opt_value(cmd, argc, argv, i, "--timeout-ms", &v)) != 0) {
        if (r < 0) return r;
        int64_t ms = 0;
        if ((r = tsr_cli_parse_count(cmd, "--timeout-ms", v, &ms)) != 0) return r;
        if (ms == 0) return -tsr_cli_usage_error(cmd, "--timeout-ms must be at least 1");
        o->timeout_ms = ms;
        return 1;
    }
    if (!with_output) return 0;
    if ((r = tsr_cli_opt_value(cmd, argc, argv, i, "--output", &v)) == 0)
        r = tsr_cli_opt_value(cmd, argc, argv, i, "-o", &v);
    if (r == 0) return 0;
    if (r < 0) return r;
    if (strcmp(v, "table") == 0) o->output = TSR_CLI_OUT_TABLE;
    else if (strcmp(v, "json") == 0) o->output = TSR_CLI_OUT_JSON;
    else return -tsr_cli_usage_error(cmd, "-o must be table or json, got '%s'", v);
    return 1;
}

int tsr_cli_conn_open(tsr_cli_conn_t *c, const tsr_cli_cmd_t *cmd, const tsr_cli_client_opts_t *o) {
    memset(c, 0, sizeof *c);
    c->cmd = cmd;
    const char *server = o->server;
    if (!server || !*server) server = getenv("TESSERA_SERVER");
    if (!server || !*server) server = TSR_CLI_DEFAULT_SERVER;
    snprintf(c->server, sizeof c->server, "%s", server);
    c->timeout_ms = o->timeout_ms > 0 ? o->timeout_ms : TSR_CLI_ADMIN_TIMEOUT_MS;
    tsr_rpc_reply_init(&c->reply);
    tsr_buf_init(&c->req);
    tsr_error_t err;
    tsr_error_clear(&err);
    c->client = tsr_rpc_client_new(c->server, &err);
    if (!c->client) {
        fprintf(stderr, "tessera %s: cannot use server address '%s': %s\n", cmd->name, c->server,
                err.msg);
        int code = err.code ? err.code : TSR_EINVAL;
        tsr_cli_conn_close(c);
        return tsr_error_exit_code(code);
    }
    return 0;
}

void tsr_cli_conn_close(tsr_cli_conn_t *c) {
    if (c->client) tsr_rpc_client_free(c->client);
    c->client = NULL;
    tsr_rpc_reply_free(&c->reply);
    tsr_buf_free(&c->req);
}

/* One call (packed req), following a coordinator's leader redirect once. */
static int call_once(tsr_cli_conn_t *c, const char *method, tsr_error_t *err) {
    tsr_rpc_call_opts_t opts = {.timeout_ms = c->timeout_ms};
    tsr_error_clear(err);
    int rc = tsr_rpc_client_call(c->client, method, c->req.data, c->req.len, &opts, &c->reply,
                                 err);
    /* A coordinator that is not the leader names the leader (docs/cluster.md): ask it once. */
    static const char k_not_leader[] = "not the leader; leader is ";
    if (rc != TSR_OK && c->reply.status == TSR_GRPC_UNAVAILABLE &&
        strncmp(c->reply.message, k_not_leader, sizeof k_not_leader - 1) == 0) {
        const char *leader = c->reply.message + sizeof k_not_leader - 1;
        /* an address (HOST:PORT), not "unknown (election in progress)" */
        int addr = *leader && strchr(leader, ':') && !strchr(leader, ' ');
        tsr_rpc_client_t *lc = addr ? tsr_rpc_client_new(leader, err) : NULL;
        if (lc) {
            fprintf(stderr, "tessera %s: %s is not the leader; asking the leader %s\n",
                    c->cmd->name, c->server, leader);
            snprintf(c->server, sizeof c->server, "%s", leader);
            tsr_rpc_client_free(c->client);
            c->client = lc;
            tsr_error_clear(err);
            rc = tsr_rpc_client_call(c->client, method, c->req.data, c->req.len, &opts,
                                     &c->reply, err);
        }
    }
    return rc;
}

int tsr_cli_call(tsr_cli_conn_t *c, const char *method, const void *req, const char *what) {
    return tsr_cli_call_retry(c, method, req, what, NULL);
}

int tsr_cli_call_retry(tsr_cli_conn_t *c, const char *method, const void *req, const char *what,
                       const char *retry_when) {
    tsr_buf_clear(&c->req);
    tsr_pb_pack((const ProtobufCMessage *)req, &c->req);
    tsr_error_t err;
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int rc, said = 0;
    for (;;) {
        rc = call_once(c, method, &err);
        /* transient: the state the caller names, or a coordinator election in progress */
        if (rc == TSR_OK || c->reply.status != TSR_GRPC_UNAVAILABLE ||
            !((retry_when && strstr(c->reply.message, retry_when)) ||
              strstr(c->reply.message, "not the leader; leader is unknown")))
            break;
        struct timespec t;
        clock_gettime(CLOCK_MONOTONIC, &t);
        int64_t spent = (int64_t)(t.tv_sec - t0.tv_sec) * 1000 + (t.tv_nsec - t0.tv_nsec) / 1000000;
        if (spent + 250 >= c->timeout_ms || spent >= 60000) break;
        if (!said++) fprintf(stderr, "tessera %s: %s; waiting\n", c->cmd->name, c->reply.message);
        nanosleep(&(struct timespec){0, 250 * 1000000L}, NULL);
    }
    if (rc == TSR_OK) return TSR_OK;
    const char *m = strrchr(method, '/');
    m = m ? m + 1 : method;
    const char *name = c->cmd->name;
    const char *sep = what ? ": " : "";
    what = what ? what : "";
    const char *msg = c->reply.message[0] ? c->reply.message : err.msg;
    switch (c->reply.status) {
    case TSR_GRPC_UNAVAILABLE:
        fprintf(stderr,
                "tessera %s: %s%sserver %s unavailable: %s\n"
                "  (is `tessera serve` running there? set --server or TESSERA_SERVER)\n",
                name, what, sep, c->server, msg);
        break;
    case TSR_GRPC_DEADLINE_EXCEEDED:
        fprintf(stderr, "tessera %s: %s%s%s: no answer from %s within %lld ms (--timeout-ms)\n",
                name, what, sep, m, c->server, (long long)c->timeout_ms);
        break;
    case TSR_GRPC_UNIMPLEMENTED:
        fprintf(stderr, "tessera %s: %s%sserver %s does not implement %s: %s\n", name, what, sep,
                c->server, method, msg);
        break;
    default:
        fprintf(stderr, "tessera %s: %s%s%s\n", name, what, sep, msg);
        break;
    }
    return rc;
}

const char *tsr_cli_iso_millis(int64_t ms, char *buf, size_t n) {
    if (ms == 0) {
        snprintf(buf, n, "-");
        return buf;
    }
    int64_t sec = ms / 1000, frac = ms % 1000;
    if (frac < 0) {
        sec -= 1;
        frac += 1000;
    }
    time_t t = (time_t)sec;
    struct tm tm;
    if (!gmtime_r(&t, &tm)) {
        snprintf(buf, n, "%lld", (long long)ms);
        return buf;
    }
    char base[32];
    strftime(base, sizeof base, "%Y-%m-%dT%H:%M:%S", &tm);
    if (frac) snprintf(buf, n, "%s.%03dZ", base, (int)frac);
    else snprintf(buf, n, "%sZ", base);
    return buf;
}

int tsr_cli_read_file(const tsr_cli_cmd_t *cmd, const char *path, char **out, size_t *n) {
    *out = NULL;
    *n = 0;
    FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
    if (!f) {
        int e = errno;
        fprintf(stderr, "tessera %s: %s: cannot open: %s\n", cmd->name, path, strerror(e));
        return e == ENOENT ? TSR_ENOTFOUND : TSR_EIO;
    }
    tsr_buf_t b;
    tsr_buf_init(&b);
    char chunk[65536];
    size_t got;
    while ((got = fread(chunk, 1, sizeof chunk, f)) > 0) tsr_buf_append(&b, chunk, got);
    int bad = ferror(f);
    if (f != stdin) fclose(f);
    if (bad) {
        fprintf(stderr, "tessera %s: %s: read error\n", cmd->name, path);
        tsr_buf_free(&b);
        return TSR_EIO;
    }
    *n = b.len;
    tsr_buf_putc(&b, '\0');
    *out = (char *)b.data;  /* the buffer's bytes are malloc'd: the caller frees them */
    return 0;
}

const char *tsr_cli_kind_name(int kind) {
    switch (kind) {
    case TESSERA__V1__CONFIG_KIND__GROUP_BY: return "groupby";
    case TESSERA__V1__CONFIG_KIND__JOIN: return "join";
    case TESSERA__V1__CONFIG_KIND__STAGING_QUERY: return "stagingquery";
    default: return "unknown";
    }
}
