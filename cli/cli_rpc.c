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
 *   - Jobs (upload, backfill --server) carry a client-chosen id, so that a call broken by a
 *     coordinator failover can follow the job on the new leader (tsr_cli_call_job): the job
 *     survives the failover (the new leader resumes it) and so does the wait.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

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
    /* "A,B,...": calls go to the first; the others are where a followed job is looked for */
    for (const char *p = server; *p && c->nservers < TSR_CLI_MAX_SERVERS;) {
        size_t len = strcspn(p, ",");
        if (len > 0 && len < sizeof c->servers[0]) {
            memcpy(c->servers[c->nservers], p, len);
            c->servers[c->nservers++][len] = '\0';
        }
        p += len;
        if (*p == ',') p++;
    }
    snprintf(c->server, sizeof c->server, "%s", c->nservers ? c->servers[0] : server);
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

/* tsr_cli_call_retry without the printing of a failure. */
static int call_retry_quiet(tsr_cli_conn_t *c, const char *method, const void *req, const char *retry_when,
                            tsr_error_t *err_out) {
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
    *err_out = err;
    return rc;
}

/* Prints why a call failed (from c->reply, else err). */
static void print_failure(tsr_cli_conn_t *c, const char *method, const char *what, const tsr_error_t *e) {
    const tsr_error_t err = *e;
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
}

int tsr_cli_call_retry(tsr_cli_conn_t *c, const char *method, const void *req, const char *what,
                       const char *retry_when) {
    tsr_error_t err;
    int rc = call_retry_quiet(c, method, req, retry_when, &err);
    if (rc != TSR_OK) print_failure(c, method, what, &err);
    return rc;
}

/* ------------------------------------------------------------------------------------------
 * Jobs that survive a coordinator failover */

#define GRPC_ALREADY_EXISTS 6
#define FOLLOW_POLL_MS 500
#define FOLLOW_SILENT_MS 30000
#define FOLLOW_RESUBMITS 3

static int64_t mono_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

static void sleep_ms(int64_t ms) {
    if (ms <= 0) return;
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

void tsr_cli_job_id(const char *prefix, char *buf, size_t n) {
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    unsigned seed = (unsigned)t.tv_nsec ^ ((unsigned)getpid() << 16);
    unsigned long long ms = (unsigned long long)t.tv_sec * 1000 + (unsigned long long)(t.tv_nsec / 1000000);
    snprintf(buf, n, "%s-%llx-%x-%04x", prefix, ms, (unsigned)getpid(), rand_r(&seed) & 0xffff);
}

/* Points the connection at addr (a new channel when it changes). 0, or -1 when addr is not
 * usable. */
static int conn_target(tsr_cli_conn_t *c, const char *addr) {
    if (strcmp(c->server, addr) == 0 && c->client) return 0;
    tsr_error_t err;
    tsr_rpc_client_t *nc = tsr_rpc_client_new(addr, &err);
    if (!nc) return -1;
    if (c->client) tsr_rpc_client_free(c->client);
    c->client = nc;
    snprintf(c->server, sizeof c->server, "%s", addr);
    return 0;
}

/* "not the leader; leader is HOST:PORT": the address into buf (1), else 0. */
static int leader_named(const char *msg, char *buf, size_t cap) {
    static const char k[] = "not the leader; leader is ";
    const char *at = strstr(msg, k);
    if (!at) return 0;
    at += sizeof k - 1;
    size_t len = strcspn(at, " ;,\n");
    if (len == 0 || len >= cap) return 0;
    memcpy(buf, at, len);
    buf[len] = '\0';
    return strchr(buf, ':') != NULL;
}

enum { FOLLOW_DONE = 0, FOLLOW_UNKNOWN = 1, FOLLOW_LOST = 2, FOLLOW_PRINTED = 3 };

/* Polls GetJob(job_id) until the job finishes or t_end. FOLLOW_DONE: c->reply.body holds the
 * GetJobResponse (state done). FOLLOW_UNKNOWN: the leader does not know the job.
 * FOLLOW_LOST: no coordinator could be asked (nothing printed). FOLLOW_PRINTED: failed,
 * reported (*rc_out = the code). */
static int follow_job(tsr_cli_conn_t *c, const char *job_id, const char *what, const char *why, int64_t t_end,
                      int *rc_out) {
    char addrs[TSR_CLI_MAX_SERVERS + 8][256];
    size_t n = 0, cur = 0;
    snprintf(addrs[n++], sizeof addrs[0], "%s", c->server);
    for (size_t i = 0; i < c->nservers; i++) {
        int dup = 0;
        for (size_t k = 0; k < n; k++) dup |= strcmp(addrs[k], c->servers[i]) == 0;
        if (!dup) snprintf(addrs[n++], sizeof addrs[0], "%s", c->servers[i]);
    }
    Tessera__V1__GetJobRequest rq = TESSERA__V1__GET_JOB_REQUEST__INIT;
    rq.job_id = (char *)job_id;
    tsr_buf_t req;
    tsr_buf_init(&req);
    tsr_pb_pack(&rq.base, &req);
    const char *name = c->cmd->name;
    int64_t last_answer = mono_ms();
    int answered = 0, said = 0, result = FOLLOW_LOST;
    size_t silent = 0;              /* addresses in a row that did not answer */
    char seen_at[256] = "";
    for (;;) {
        int64_t t = mono_ms();
        if (t >= t_end) {
            fprintf(stderr, "tessera %s: %s: job %s not finished within %lld ms (--timeout-ms); it continues "
                    "on the cluster\n", name, what, job_id, (long long)c->timeout_ms);
            *rc_out = TSR_ETIMEOUT;
            result = FOLLOW_PRINTED;
            break;
        }
        tsr_error_t err;
        tsr_error_clear(&err);
        int rc = TSR_EUNAVAIL;
        c->reply.status = TSR_GRPC_UNAVAILABLE;
        c->reply.message[0] = '\0';
        if (conn_target(c, addrs[cur]) == 0) {
            int64_t left = t_end - t;
            tsr_rpc_call_opts_t opts = {.timeout_ms = left < 5000 ? left : 5000};
            rc = tsr_rpc_client_call(c->client, "/tessera.v1.AdminService/GetJob", req.data, req.len, &opts,
                                     &c->reply, &err);
        }
        if (rc == TSR_OK) {
            answered = 1;
            silent = 0;
            last_answer = t;
            Tessera__V1__GetJobResponse *r =
                tessera__v1__get_job_response__unpack(NULL, c->reply.body.len, c->reply.body.data);
            if (!r) {
                fprintf(stderr, "tessera %s: malformed GetJobResponse from %s\n", name, c->server);
                *rc_out = TSR_ECORRUPT;
                result = FOLLOW_PRINTED;
                break;
            }
            int done = strcmp(r->state, "done") == 0;
            int failed = !done && (strcmp(r->state, "failed") == 0 || strcmp(r->state, "abandoned") == 0);
            if (!said && why) fprintf(stderr, "tessera %s: %s: %s\n", name, what, why);
            if (!said || strcmp(seen_at, c->server) != 0) {
                snprintf(seen_at, sizeof seen_at, "%s", c->server);
                fprintf(stderr, "tessera %s: following job %s on the leader %s: %s, %d of %d shards done%s\n", name,
                        job_id, c->server, r->state, (int)r->shards_done, (int)r->shards,
                        r->resumed ? " (resumed after a failover)" : "");
                said = 1;
            }
            if (failed) fprintf(stderr, "tessera %s: %s: job %s %s: %s\n", name, what, job_id, r->state, r->error);
            tessera__v1__get_job_response__free_unpacked(r, NULL);
            if (done) {
                result = FOLLOW_DONE;
                break;
            }
            if (failed) {
                *rc_out = TSR_EIO;
                result = FOLLOW_PRINTED;
                break;
            }
            sleep_ms(FOLLOW_POLL_MS);
            continue;
        }
        char leader[256];
        if (c->reply.status == TSR_GRPC_NOT_FOUND) {
            result = FOLLOW_UNKNOWN;
            break;
        }
        if (c->reply.status == TSR_GRPC_UNAVAILABLE && strstr(c->reply.message, "not the leader")) {
            answered = 1;           /* a follower: go to the leader it names, else ask again */
            silent = 0;
            last_answer = t;
            if (leader_named(c->reply.message, leader, sizeof leader)) {
                size_t k = 0;
                while (k < n && strcmp(addrs[k], leader) != 0) k++;
                if (k == n && n < sizeof addrs / sizeof addrs[0]) snprintf(addrs[n++], sizeof addrs[0], "%s", leader);
                if (k < n) cur = k;
            }
            sleep_ms(200);
            continue;
        }
        if (c->reply.status == TSR_GRPC_UNAVAILABLE || c->reply.status == TSR_GRPC_DEADLINE_EXCEEDED) {
            cur = (cur + 1) % n;    /* no answer there: the next address */
            if (++silent >= n) {
                if (!answered) break;   /* nothing reachable: FOLLOW_LOST */
                if (t - last_answer >= FOLLOW_SILENT_MS) {
                    fprintf(stderr, "tessera %s: %s: lost the coordinators: none of them answered for %d s while "
                            "following job %s\n", name, what, FOLLOW_SILENT_MS / 1000, job_id);
                    *rc_out = TSR_EUNAVAIL;
                    result = FOLLOW_PRINTED;
                    break;
                }
                silent = 0;
                sleep_ms(250);
            }
            continue;
        }
        if (c->reply.status == TSR_GRPC_UNIMPLEMENTED) break;  /* not a coordinator: FOLLOW_LOST */
        print_failure(c, "/tessera.v1.AdminService/GetJob", what, &err);
        *rc_out = rc;
        result = FOLLOW_PRINTED;
        break;
    }
    tsr_buf_free(&req);
    return result;
}

int tsr_cli_call_job(tsr_cli_conn_t *c, const char *method, const void *req, const char *what,
                     const char *retry_when, const char *job_id, int *followed) {
    *followed = 0;
    int64_t t_end = mono_ms() + c->timeout_ms;
    int64_t timeout = c->timeout_ms;
    int rc = TSR_OK;
    for (int submits = 0;; submits++) {
        tsr_error_t err;
        rc = call_retry_quiet(c, method, req, retry_when, &err);
        if (rc == TSR_OK) break;
        int st = c->reply.status;
        if (st != TSR_GRPC_UNAVAILABLE && st != GRPC_ALREADY_EXISTS) {
            print_failure(c, method, what, &err);
            break;
        }
        /* the call broke (or the job exists): follow the job */
        tsr_rpc_reply_t saved;
        saved.status = st;
        memcpy(saved.message, c->reply.message, sizeof saved.message);
        char server[256];
        snprintf(server, sizeof server, "%s", c->server);
        char why[1800];
        snprintf(why, sizeof why, "the call to %s ended with %s (%s)", c->server, tsr_rpc_status_name(st),
                 c->reply.message[0] ? c->reply.message : err.msg);
        int frc = TSR_EUNAVAIL;
        int r = follow_job(c, job_id, what, why, t_end, &frc);
        if (r == FOLLOW_DONE) {
            *followed = 1;
            rc = TSR_OK;
            break;
        }
        if (r == FOLLOW_PRINTED) {
            rc = frc;
            break;
        }
        if (r == FOLLOW_UNKNOWN && submits + 1 < FOLLOW_RESUBMITS && mono_ms() < t_end) {
            fprintf(stderr, "tessera %s: %s: the leader %s does not know job %s (the call broke before it was "
                    "recorded); starting it there\n", c->cmd->name, what, c->server, job_id);
            c->timeout_ms = t_end - mono_ms();
            if (c->timeout_ms < 1) c->timeout_ms = 1;
            continue;
        }
        /* nothing to follow: the original failure */
        if (conn_target(c, server) != 0) snprintf(c->server, sizeof c->server, "%s", server);
        c->reply.status = saved.status;
        memcpy(c->reply.message, saved.message, sizeof saved.message);
        print_failure(c, method, what, &err);
        /* (a call that never reached a server started no job) */
        if (r == FOLLOW_LOST && c->nservers < 2 && !strstr(saved.message, "failed to connect"))
            fprintf(stderr, "  (job %s may go on under another coordinator: list them all in --server A,B)\n",
                    job_id);
        break;
    }
    c->timeout_ms = timeout;
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
