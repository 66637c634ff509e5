/*
 * http_server.c — the HTTP server of http.h on libmicrohttpd: route table, request bodies,
 * error bodies, per-connection memory, metrics, /metrics and /health, graceful stop.
 *
 * Design. We open and bind the listening socket ourselves (precise errors, port 0 read back
 * with getsockname) and hand it to MHD, which runs a thread per connection or a poll() thread
 * pool (http.h), with MHD_USE_ITC so the daemon can be quiesced. MHD calls on_access several
 * times per request:
 *
 *     first call (*req_cls == NULL)  -> begin: route lookup; 404/405/413/503 answered at once
 *     calls with upload data         -> append to the connection's body buffer (or count it
 *                                       as too large and drop it)
 *     last call (*upload_size == 0)  -> 413, or run the handler and queue its response
 *
 * and on_completed once the response is sent (or the request is cut off). A request counts as
 * in flight from its first call to its completion; tsr_http_server_stop waits for that count
 * to reach zero (bounded), then MHD_stop_daemon joins the pool threads.
 *
 * Invariants.
 *   1. A conn_t lives exactly as long as its TCP connection (NOTIFY_STARTED..CLOSED) and is
 *      touched only by the thread serving that connection.
 *   2. A response body is the connection's `out` buffer, given to MHD as PERSISTENT memory:
 *      it is cleared only when the next request on the connection begins, which MHD starts
 *      only after the previous response was sent.
 *   3. The route table is immutable once the server left the NEW state.
 */
#include "http_int.h"

#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum { ST_NEW, ST_RUNNING, ST_DRAINING, ST_STOPPED };

/* Buffers above this capacity are released after their request instead of kept for reuse. */
#define CONN_KEEP_CAP ((size_t)1 << 20)

typedef struct route {
    char *method, *path;
    size_t path_len;
    int prefix;
    tsr_http_handler_fn fn;
    void *ud;
    tsr_counter_t *m_codes[5];  /* by status class 1xx..5xx */
    tsr_histogram_t *m_lat;
} route_t;

typedef struct conn {
    tsr_http_server_t *srv;
    struct MHD_Connection *mc;
    tsr_buf_t body, out;
    tsr_arena_t arena;
    int active;             /* a request has begun and not completed */
    int too_large;
    int answered;           /* a response is queued for the current request */
    const route_t *route;
    uint64_t t0;
} conn_t;

typedef struct keep {
    struct keep *next;
} keep_t;

struct tsr_http_server {
    tsr_http_options_t opt;
    route_t *routes;
    size_t nroutes, cap;
    struct MHD_Daemon *d;
    _Atomic int state;
    atomic_long inflight;
    uint16_t port;
    pthread_mutex_t stop_mu;    /* serialises tsr_http_server_stop */
    pthread_mutex_t reason_mu;  /* guards reason (never held while waiting) */
    atomic_int ready;
    char reason[256];
    keep_t *kept;
    route_t unmatched;          /* metrics for 404/405/503 before a route is known */
    tsr_gauge_t *m_conns;
    int metrics_set_up;         /* families registered (a failed start may be retried) */
};

void *tsr__http_server_alloc(tsr_http_server_t *srv, size_t n) {
    keep_t *k = tsr_calloc(1, sizeof(keep_t) + n + 16);
    k->next = srv->kept;
    srv->kept = k;
    return (char *)k + ((sizeof(keep_t) + 15) & ~(size_t)15);
}

/* ------------------------------------------------------------------------------------ */
/* Helpers                                                                               */

void tsr_http_json_string(tsr_buf_t *out, const char *s, size_t n) {
    tsr_value_t v = tsr_value_string(s, n);
    tsr_value_to_json(&v, out);
}

static void set_error_body(tsr_http_response_t *resp, int status, const char *msg) {
    resp->status = status;
    resp->content_type = "application/json";
    tsr_buf_clear(resp->body);
    tsr_buf_puts(resp->body, "{\"error\":");
    tsr_http_json_string(resp->body, msg, strlen(msg));
    tsr_buf_puts(resp->body, "}");
}

void tsr_http_response_error(tsr_http_response_t *resp, int status, const char *fmt, ...) {
    char msg[TSR_ERROR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    set_error_body(resp, status, msg);
}

int tsr_http_status_for_error(int code) {
    switch (code) {
    case TSR_OK: return 200;
    case TSR_EINVAL:
    case TSR_EPARSE:
    case TSR_ETYPE:
    case TSR_ECONFIG:
    case TSR_EUSAGE: return 400;
    case TSR_ENOTFOUND: return 404;
    case TSR_EEXIST: return 409;
    case TSR_EUNSUPPORTED: return 501;
    case TSR_EUNAVAIL: return 503;
    case TSR_ETIMEOUT: return 504;
    default: return 500;
    }
}

const char *tsr_http_request_header(const tsr_http_request_t *req, const char *name) {
    conn_t *c = req->conn_;
    return MHD_lookup_connection_value(c->mc, MHD_HEADER_KIND, name);
}

const char *tsr_http_request_query(const tsr_http_request_t *req, const char *name) {
    conn_t *c = req->conn_;
    return MHD_lookup_connection_value(c->mc, MHD_GET_ARGUMENT_KIND, name);
}

/* ------------------------------------------------------------------------------------ */
/* Lifecycle                                                                             */

tsr_http_server_t *tsr_http_server_new(const tsr_http_options_t *opt) {
    tsr_http_server_t *srv = tsr_calloc(1, sizeof *srv);
    if (opt) srv->opt = *opt;
    if (!srv->opt.bind_addr) srv->opt.bind_addr = "127.0.0.1";
    srv->opt.bind_addr = tsr_strdup(srv->opt.bind_addr);
    if (!srv->opt.threads) srv->opt.threads = 2;
    if (!srv->opt.max_body) srv->opt.max_body = TSR_HTTP_DEFAULT_MAX_BODY;
    if (!srv->opt.idle_timeout_s) srv->opt.idle_timeout_s = 60;
    if (!srv->opt.max_connections) srv->opt.max_connections = 256;
    atomic_init(&srv->state, ST_NEW);
    atomic_init(&srv->inflight, 0);
    atomic_init(&srv->ready, 1);
    pthread_mutex_init(&srv->stop_mu, NULL);
    pthread_mutex_init(&srv->reason_mu, NULL);
    return srv;
}

static int method_ok(const char *route_method, const char *method) {
    return strcmp(route_method, method) == 0 ||
           (strcmp(route_method, "GET") == 0 && strcmp(method, "HEAD") == 0);
}

int tsr_http_server_route(tsr_http_server_t *srv, const char *method, const char *path,
                          int prefix, tsr_http_handler_fn fn, void *ud, tsr_error_t *err) {
    if (atomic_load(&srv->state) != ST_NEW)
        return tsr_error_set(err, TSR_EINVAL, "routes must be added before the server starts");
    if (!method || !*method || !path || path[0] != '/' || !fn)
        return tsr_error_set(err, TSR_EINVAL,
                             "route needs a method, a path starting with '/' and a handler");
    size_t plen = strlen(path);
    if (prefix && path[plen - 1] != '/')
        return tsr_error_set(err, TSR_EINVAL, "prefix route '%s' must end with '/'", path);
    for (size_t i = 0; i < srv->nroutes; i++)
        if (strcmp(srv->routes[i].method, method) == 0 && strcmp(srv->routes[i].path, path) == 0 &&
            srv->routes[i].prefix == !!prefix)
            return tsr_error_set(err, TSR_EEXIST, "route %s %s%s is already registered", method,
                                 path, prefix ? "*" : "");
    if (srv->nroutes == srv->cap) {
        srv->cap = srv->cap ? 2 * srv->cap : 8;
        srv->routes = tsr_realloc(srv->routes, srv->cap * sizeof *srv->routes);
    }
    route_t *r = &srv->routes[srv->nroutes++];
    memset(r, 0, sizeof *r);
    r->method = tsr_strdup(method);
    r->path = tsr_strdup(path);
    r->path_len = plen;
    r->prefix = !!prefix;
    r->fn = fn;
    r->ud = ud;
    return 0;
}

/* Finds the route for (method, url). Exact beats prefix, longer prefix beats shorter. When the
 * path matches only routes of other methods, *path_matched is set (405). */
static const route_t *route_find(const tsr_http_server_t *srv, const char *method,
                                 const char *url, int *path_matched) {
    const route_t *best = NULL;
    *path_matched = 0;
    for (size_t i = 0; i < srv->nroutes; i++) {
        const route_t *r = &srv->routes[i];
        int match = r->prefix ? strncmp(url, r->path, r->path_len) == 0 : strcmp(url, r->path) == 0;
        if (!match) continue;
        *path_matched = 1;
        if (!method_ok(r->method, method)) continue;
        if (!best || (best->prefix && (!r->prefix || r->path_len > best->path_len))) best = r;
    }
    return best;
}

static void route_metrics(tsr_metric_family_t *fc, tsr_metric_family_t *fh, route_t *r,
                          const char *label) {
    static const char *const classes[5] = {"1xx", "2xx", "3xx", "4xx", "5xx"};
    for (int k = 0; k < 5; k++) {
        const char *vals[2] = {label, classes[k]};
        r->m_codes[k] = tsr_metric_counter(fc, vals);
    }
    const char *vals[1] = {label};
    r->m_lat = tsr_metric_histogram(fh, vals);
}

static int setup_metrics(tsr_http_server_t *srv, tsr_error_t *err) {
    tsr_metrics_t *m = srv->opt.metrics;
    static const char *const lc[2] = {"route", "code"};
    tsr_metric_family_t *fc = tsr_metrics_counter_family(
        m, "tessera_http_requests_total", "HTTP requests answered, by route and status class",
        lc, 2, err);
    if (!fc) return err ? err->code : TSR_EINVAL;
    tsr_metric_family_t *fh = tsr_metrics_histogram_family(
        m, "tessera_http_request_duration_seconds",
        "HTTP request latency from headers received to response queued, by route", lc, 1,
        tsr_metrics_latency_buckets, TSR_METRICS_LATENCY_NBUCKETS, err);
    if (!fh) return err ? err->code : TSR_EINVAL;
    srv->m_conns = tsr_metrics_gauge(m, "tessera_http_open_connections",
                                     "HTTP connections currently open", err);
    if (!srv->m_conns) return err ? err->code : TSR_EINVAL;
    char label[512];
    for (size_t i = 0; i < srv->nroutes; i++) {
        route_t *r = &srv->routes[i];
        snprintf(label, sizeof label, "%s %s%s", r->method, r->path, r->prefix ? "*" : "");
        route_metrics(fc, fh, r, label);
    }
    route_metrics(fc, fh, &srv->unmatched, "unmatched");
    return 0;
}

/* ------------------------------------------------------------------------------------ */
/* MHD callbacks                                                                         */

static void on_connection(void *cls, struct MHD_Connection *mc, void **socket_context,
                          enum MHD_ConnectionNotificationCode code) {
    tsr_http_server_t *srv = cls;
    if (code == MHD_CONNECTION_NOTIFY_STARTED) {
        conn_t *c = tsr_calloc(1, sizeof *c);
        c->srv = srv;
        c->mc = mc;
        tsr_buf_init(&c->body);
        tsr_buf_init(&c->out);
        tsr_arena_init(&c->arena, 0);
        *socket_context = c;
        if (srv->m_conns) tsr_gauge_add(srv->m_conns, 1);
    } else if (code == MHD_CONNECTION_NOTIFY_CLOSED) {
        conn_t *c = *socket_context;
        if (!c) return;
        if (c->active) { /* cut off without completion notice */
            c->active = 0;
            atomic_fetch_sub(&srv->inflight, 1);
        }
        tsr_buf_free(&c->body);
        tsr_buf_free(&c->out);
        tsr_arena_free(&c->arena);
        free(c);
        *socket_context = NULL;
        if (srv->m_conns) tsr_gauge_add(srv->m_conns, -1);
    }
}

static void on_completed(void *cls, struct MHD_Connection *mc, void **req_cls,
                         enum MHD_RequestTerminationCode toe) {
    tsr_http_server_t *srv = cls;
    conn_t *c = *req_cls;
    if (!c) return;
    *req_cls = NULL;
    if (c->active) {
        c->active = 0;
        atomic_fetch_sub(&srv->inflight, 1);
    }
    /* keep small buffers for the next request on this connection, release big ones */
    if (c->body.cap > CONN_KEEP_CAP) {
        tsr_buf_free(&c->body);
        tsr_buf_init(&c->body);
    }
    if (c->out.cap > CONN_KEEP_CAP) {
        tsr_buf_free(&c->out);
        tsr_buf_init(&c->out);
    }
    tsr_arena_reset(&c->arena);
}

/* Queues c->out as the response. allow: the Allow header for 405, or NULL. */
static enum MHD_Result reply(conn_t *c, int status, const char *content_type, int close_conn,
                             const char *allow) {
    const route_t *r = c->route ? c->route : &c->srv->unmatched;
    int cls = status / 100;
    if (cls >= 1 && cls <= 5 && r->m_codes[cls - 1]) tsr_counter_inc(r->m_codes[cls - 1]);
    if (r->m_lat) tsr_histogram_observe_since(r->m_lat, c->t0);
    void *data = c->out.len ? (void *)c->out.data : (void *)"";
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(c->out.len, data, MHD_RESPMEM_PERSISTENT);
    if (!resp) return MHD_NO;
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE,
                            content_type ? content_type : "application/json");
    if (close_conn) MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close");
    if (allow) MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, allow);
    enum MHD_Result ok = MHD_queue_response(c->mc, (unsigned)status, resp);
    MHD_destroy_response(resp);
    if (ok == MHD_YES) c->answered = 1;
    return ok;
}

static enum MHD_Result reply_error(conn_t *c, int status, int close_conn, const char *allow,
                                   const char *fmt, ...) __attribute__((format(printf, 5, 6)));
static enum MHD_Result reply_error(conn_t *c, int status, int close_conn, const char *allow,
                                   const char *fmt, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    tsr_http_response_t resp = {status, "application/json", &c->out};
    set_error_body(&resp, status, msg);
    return reply(c, status, "application/json", close_conn, allow);
}

/* The Allow header for a path that matched only routes of other methods. */
static const char *allow_list(conn_t *c, const char *url) {
    tsr_buf_t b;
    tsr_buf_init(&b);
    const tsr_http_server_t *srv = c->srv;
    for (size_t i = 0; i < srv->nroutes; i++) {
        const route_t *r = &srv->routes[i];
        int match = r->prefix ? strncmp(url, r->path, r->path_len) == 0 : strcmp(url, r->path) == 0;
        if (!match) continue;
        if (b.len) tsr_buf_puts(&b, ", ");
        tsr_buf_puts(&b, r->method);
        if (strcmp(r->method, "GET") == 0) tsr_buf_puts(&b, ", HEAD");
    }
    char *s = tsr_arena_strdup(&c->arena, tsr_buf_cstr(&b));
    tsr_buf_free(&b);
    return s;
}

static enum MHD_Result on_access(void *cls, struct MHD_Connection *mc, const char *url,
                                 const char *method, const char *version, const char *upload,
                                 size_t *upload_size, void **req_cls) {
    tsr_http_server_t *srv = cls;
    conn_t *c = *req_cls;
    if (!c) {
        /* first call: headers are in */
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(mc, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
        c = ci ? ci->socket_context : NULL;
        if (!c) return MHD_NO;
        *req_cls = c;
        c->active = 1;
        atomic_fetch_add(&srv->inflight, 1);
        c->t0 = tsr_metrics_now_ns();
        c->too_large = 0;
        c->answered = 0;
        c->route = NULL;
        tsr_buf_clear(&c->body);
        tsr_buf_clear(&c->out);
        tsr_arena_reset(&c->arena);
        if (atomic_load(&srv->state) != ST_RUNNING)
            return reply_error(c, 503, 1, NULL, "server is shutting down");
        int path_matched;
        const route_t *r = route_find(srv, method, url, &path_matched);
        if (!r) {
            if (path_matched)
                return reply_error(c, 405, 0, allow_list(c, url), "method %s not allowed for %s",
                                   method, url);
            return reply_error(c, 404, 0, NULL, "no route for %s %s", method, url);
        }
        c->route = r;
        const char *cl = MHD_lookup_connection_value(mc, MHD_HEADER_KIND,
                                                     MHD_HTTP_HEADER_CONTENT_LENGTH);
        if (cl) {
            char *end;
            errno = 0;
            unsigned long long len = strtoull(cl, &end, 10);
            if (errno == 0 && end != cl && len > srv->opt.max_body)
                return reply_error(c, 413, 1, NULL,
                                   "request body of %llu bytes is larger than the limit of %zu",
                                   len, srv->opt.max_body);
        }
        return MHD_YES;
    }
    if (c->answered) { /* answered at the first call: MHD drops the rest and closes */
        *upload_size = 0;
        return MHD_YES;
    }
    if (*upload_size) {
        if (!c->too_large) {
            if (c->body.len + *upload_size > srv->opt.max_body) {
                c->too_large = 1; /* keep reading (and dropping) the rest, answer at the end */
            } else {
                tsr_buf_append(&c->body, upload, *upload_size);
            }
        }
        *upload_size = 0;
        return MHD_YES;
    }
    if (c->too_large)
        return reply_error(c, 413, 1, NULL, "request body is larger than the limit of %zu bytes",
                           srv->opt.max_body);

    /* the whole request is in: run the handler */
    const route_t *r = c->route;
    if (!r) return MHD_NO; /* defensive: only a request answered at its first call lacks one */
    tsr_http_request_t req;
    req.method = method;
    req.path = url;
    req.rest = r->prefix ? url + r->path_len : "";
    req.body = tsr_buf_cstr(&c->body);
    req.body_len = c->body.len;
    req.arena = &c->arena;
    req.conn_ = c;
    tsr_http_response_t resp = {200, "application/json", &c->out};
    r->fn(r->ud, &req, &resp);
    if (resp.status < 100 || resp.status > 599) {
        set_error_body(&resp, 500, "handler returned an invalid HTTP status");
    }
    return reply(c, resp.status, resp.content_type, 0, NULL);
}

int tsr_http_server_start(tsr_http_server_t *srv, tsr_error_t *err) {
    if (atomic_load(&srv->state) != ST_NEW)
        return tsr_error_set(err, TSR_EINVAL, "HTTP server already started");
    if (srv->opt.metrics && !srv->metrics_set_up) {
        int rc = setup_metrics(srv, err);
        if (rc) return rc;
        srv->metrics_set_up = 1;
    }
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons(srv->opt.port);
    if (inet_pton(AF_INET, srv->opt.bind_addr, &sa.sin_addr) != 1)
        return tsr_error_set(err, TSR_EINVAL, "HTTP bind address '%s' is not an IPv4 address",
                             srv->opt.bind_addr);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return tsr_error_set(err, TSR_EIO, "socket: %s", strerror(errno));
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0 || listen(fd, 512) != 0) {
        int e = errno;
        close(fd);
        return tsr_error_set(err, TSR_EIO, "HTTP server cannot listen on %s:%u: %s",
                             srv->opt.bind_addr, (unsigned)srv->opt.port, strerror(e));
    }
    socklen_t sl = sizeof sa;
    getsockname(fd, (struct sockaddr *)&sa, &sl);
    srv->port = ntohs(sa.sin_port);

    int is_pool = srv->opt.mode == TSR_HTTP_POOL;
    /* The pool polls with poll(), not epoll: libmicrohttpd 0.9.75's MHD_quiesce_daemon races
     * with its epoll workers over removing the listen socket from their epoll sets (both call
     * EPOLL_CTL_DEL; the loser hits MHD_PANIC and aborts the process). With poll, quiescing
     * only signals the workers through their ITC. */
    unsigned flags = is_pool
                         ? MHD_USE_POLL_INTERNAL_THREAD | MHD_USE_ITC | MHD_USE_TURBO
                         : MHD_USE_THREAD_PER_CONNECTION | MHD_USE_POLL_INTERNAL_THREAD | MHD_USE_ITC;
    int pool = is_pool && srv->opt.threads > 1;
    struct MHD_OptionItem opts[] = {
        {MHD_OPTION_LISTEN_SOCKET, fd, NULL},
        {MHD_OPTION_NOTIFY_CONNECTION, (intptr_t)on_connection, srv},
        {MHD_OPTION_NOTIFY_COMPLETED, (intptr_t)on_completed, srv},
        {MHD_OPTION_CONNECTION_TIMEOUT, (intptr_t)srv->opt.idle_timeout_s, NULL},
        {MHD_OPTION_CONNECTION_LIMIT, (intptr_t)srv->opt.max_connections, NULL},
        {pool ? MHD_OPTION_THREAD_POOL_SIZE : MHD_OPTION_END,
         (intptr_t)srv->opt.threads, NULL},
        {MHD_OPTION_END, 0, NULL},
    };
    atomic_store(&srv->state, ST_RUNNING);
    srv->d = MHD_start_daemon(flags, 0, NULL, NULL, on_access, srv, MHD_OPTION_ARRAY, opts,
                              MHD_OPTION_END);
    if (!srv->d) {
        atomic_store(&srv->state, ST_NEW);
        close(fd);
        return tsr_error_set(err, TSR_EIO, "HTTP server on %s:%u failed to start (libmicrohttpd)",
                             srv->opt.bind_addr, (unsigned)srv->port);
    }
    return 0;
}

uint16_t tsr_http_server_port(const tsr_http_server_t *srv) { return srv->port; }

long tsr_http_server_inflight(const tsr_http_server_t *srv) {
    return atomic_load(&((tsr_http_server_t *)srv)->inflight);
}

int tsr_http_server_stop(tsr_http_server_t *srv, unsigned drain_ms) {
    pthread_mutex_lock(&srv->stop_mu);
    int st = atomic_load(&srv->state);
    if (st != ST_RUNNING) {
        if (st == ST_NEW) atomic_store(&srv->state, ST_STOPPED);
        pthread_mutex_unlock(&srv->stop_mu);
        return 0;
    }
    atomic_store(&srv->state, ST_DRAINING);
    MHD_socket lfd = MHD_quiesce_daemon(srv->d);
    if (lfd != MHD_INVALID_SOCKET) close(lfd);
    uint64_t deadline = tsr_metrics_now_ns() + (uint64_t)drain_ms * 1000000u;
    while (atomic_load(&srv->inflight) > 0 && tsr_metrics_now_ns() < deadline) {
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    int rc = atomic_load(&srv->inflight) > 0 ? TSR_ETIMEOUT : 0;
    MHD_stop_daemon(srv->d);
    srv->d = NULL;
    atomic_store(&srv->state, ST_STOPPED);
    pthread_mutex_unlock(&srv->stop_mu);
    return rc;
}

void tsr_http_server_free(tsr_http_server_t *srv) {
    if (!srv) return;
    tsr_http_server_stop(srv, 0);
    for (size_t i = 0; i < srv->nroutes; i++) {
        free(srv->routes[i].method);
        free(srv->routes[i].path);
    }
    free(srv->routes);
    keep_t *k = srv->kept;
    while (k) {
        keep_t *kn = k->next;
        free(k);
        k = kn;
    }
    free((char *)srv->opt.bind_addr);
    pthread_mutex_destroy(&srv->stop_mu);
    pthread_mutex_destroy(&srv->reason_mu);
    free(srv);
}

/* ------------------------------------------------------------------------------------ */
/* /metrics and /health                                                                  */

static void metrics_handler(void *ud, const tsr_http_request_t *req, tsr_http_response_t *resp) {
    tsr_metrics_write((tsr_metrics_t *)ud, resp->body);
    resp->content_type = TSR_METRICS_CONTENT_TYPE;
}

int tsr_http_serve_metrics(tsr_http_server_t *srv, tsr_metrics_t *m, tsr_error_t *err) {
    return tsr_http_server_route(srv, "GET", "/metrics", 0, metrics_handler, m, err);
}

static void health_handler(void *ud, const tsr_http_request_t *req, tsr_http_response_t *resp) {
    tsr_http_server_t *srv = ud;
    if (atomic_load(&srv->ready)) {
        tsr_buf_puts(resp->body, "{\"status\":\"ok\"}");
        return;
    }
    char reason[sizeof srv->reason];
    pthread_mutex_lock(&srv->reason_mu);
    memcpy(reason, srv->reason, sizeof reason);
    pthread_mutex_unlock(&srv->reason_mu);
    resp->status = 503;
    tsr_buf_puts(resp->body, "{\"status\":\"unavailable\",\"reason\":");
    tsr_http_json_string(resp->body, reason, strlen(reason));
    tsr_buf_puts(resp->body, "}");
}

int tsr_http_serve_health(tsr_http_server_t *srv, tsr_error_t *err) {
    return tsr_http_server_route(srv, "GET", "/health", 0, health_handler, srv, err);
}

void tsr_http_server_set_ready(tsr_http_server_t *srv, int ready, const char *reason) {
    /* reason_mu is separate from stop_mu: stop waits for handlers, and the health handler
     * takes reason_mu, so sharing one mutex would deadlock a drain */
    if (!ready) {
        pthread_mutex_lock(&srv->reason_mu);
        snprintf(srv->reason, sizeof srv->reason, "%s", reason ? reason : "not ready");
        pthread_mutex_unlock(&srv->reason_mu);
    }
    atomic_store(&srv->ready, ready ? 1 : 0);
}
