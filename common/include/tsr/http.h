/*
 * http.h — Tessera's small HTTP/1.1 server (on libmicrohttpd), the Chronon-compatible fetch
 * endpoints' request parsing and response building, and the /metrics and /health routes.
 *
 * Design. libmicrohttpd (MHD) parses HTTP; this layer adds a route table, bounded request
 * bodies, JSON error bodies, per-connection reusable memory and a graceful stop.
 *   - Routes: method + exact path, or method + path prefix (a path ending in '/', e.g.
 *     "/v1/fetch/join/"), in which case the remainder of the path is passed to the handler.
 *     An exact route wins over a prefix route; among prefixes the longest wins. A GET route
 *     also answers HEAD. Unknown path: 404; known path, other method: 405 with `Allow`; body
 *     above max_body: 413; all with a JSON body {"error":"..."}.
 *   - Threads, two modes (docs/http.md has the bench_http figures behind the default):
 *     per-connection (default): MHD gives each connection its own thread (poll). Requests of
 *       different connections always run concurrently, and a slow request (a 100-entity
 *       fetch) never delays another connection's. max_connections bounds the thread count.
 *     pool: MHD's poll() thread pool of `threads` threads. A connection stays on the pool
 *       thread that accepted it, and requests of connections on one thread run one after
 *       another (head-of-line blocking); in bench_http about as fast when the machine is quiet,
 *       and well behind per-connection under load.
 *     Keep-alive is HTTP/1.1's default and MHD's, in both modes.
 *   - Memory: each TCP connection owns a body buffer, a response buffer and an arena, reused
 *     by every request on that connection (reset, not freed), so a keep-alive client costs no
 *     allocation per request in this layer (MHD itself allocates its response object).
 *
 * Server states:
 *
 *     NEW --start--> RUNNING --stop--> DRAINING --(in flight == 0, or drain_ms)--> STOPPED
 *      |                                                                             ^
 *      +--------------------------- stop (never started) -----------------------------+
 *
 *     transition          function                  effect
 *     NEW -> RUNNING      tsr_http_server_start     bind, threads start; routes now frozen
 *     RUNNING -> DRAINING tsr_http_server_stop      listener closed (new connections refused);
 *                                                   requests begun finish; requests beginning
 *                                                   on open connections get 503 + close
 *     DRAINING -> STOPPED (inside stop)             connections closed, threads joined
 *     any -> freed        tsr_http_server_free      stop(drain 0) if needed, then release
 *
 * Threading rules.
 *   1. Routes are added before tsr_http_server_start, from one thread; the table is then
 *      read-only and read without locks.
 *   2. Several handlers run at the same time (one per connection, or up to `threads` in pool
 *      mode), each on its own request: a handler must be safe to call concurrently with
 *      itself and with the other handlers (its `ud` is shared). The request and response
 *      objects are the handler's alone during the call.
 *   3. Handlers must not block indefinitely and must not call tsr_http_server_stop/free.
 *   4. tsr_http_server_stop returns only after every server thread has exited: no handler runs
 *      after it returns. tsr_http_server_set_ready may be called from any thread at any time.
 */
#ifndef TSR_HTTP_H
#define TSR_HTTP_H

#include <stddef.h>
#include <stdint.h>

#include "tsr/error.h"
#include "tsr/mem.h"
#include "tsr/metrics.h"
#include "tsr/value.h"

typedef struct tsr_http_server tsr_http_server_t;

typedef enum tsr_http_mode {
    TSR_HTTP_PER_CONNECTION = 0,    /* one thread per connection (default) */
    TSR_HTTP_POOL = 1,              /* poll() thread pool of `threads` threads */
} tsr_http_mode_t;

typedef struct tsr_http_options {
    const char *bind_addr;  /* IPv4 address, default "127.0.0.1" */
    uint16_t port;          /* 0: a free port, read back with tsr_http_server_port */
    tsr_http_mode_t mode;   /* threading mode, default TSR_HTTP_PER_CONNECTION */
    unsigned threads;       /* pool mode: threads, default 2 (1 = one internal poll thread) */
    size_t max_body;        /* request body limit in bytes, default 16 MiB; beyond: 413 */
    unsigned idle_timeout_s; /* idle keep-alive connections are closed after this, default 60 */
    unsigned max_connections; /* default 256 (in per-connection mode, also the thread cap) */
    tsr_metrics_t *metrics; /* optional: request counters and latency histograms go here
                               (borrowed; must outlive the server) */
} tsr_http_options_t;

#define TSR_HTTP_DEFAULT_MAX_BODY ((size_t)16 << 20)

/* A request, borrowed by the handler for the duration of the call. */
typedef struct tsr_http_request {
    const char *method;     /* "GET", "POST", ... */
    const char *path;       /* URL path, percent-decoded by MHD, without the query string */
    const char *rest;       /* prefix routes: the path after the prefix (may be ""); exact
                               routes: "" */
    const char *body;       /* NUL-terminated for convenience; body_len excludes the NUL */
    size_t body_len;
    tsr_arena_t *arena;     /* per-request scratch, reset after the response is sent */
    void *conn_;            /* private */
} tsr_http_request_t;

/* The response a handler fills. Defaults on entry: status 200, content type
 * "application/json", empty body. */
typedef struct tsr_http_response {
    int status;
    const char *content_type;   /* static, or allocated in the request's arena */
    tsr_buf_t *body;            /* owned by the server; the handler appends */
} tsr_http_response_t;

typedef void (*tsr_http_handler_fn)(void *ud, const tsr_http_request_t *req,
                                    tsr_http_response_t *resp);

/* A request header's value (case-insensitive name), or NULL. Borrowed until the handler
 * returns. */
const char *tsr_http_request_header(const tsr_http_request_t *req, const char *name);
/* A query-string argument's value (percent-decoded), or NULL when absent or given without a
 * value (`?flag`). Borrowed until the handler returns. */
const char *tsr_http_request_query(const tsr_http_request_t *req, const char *name);

/* Replaces the body with {"error":"<message>"} (JSON-escaped) and sets status. */
void tsr_http_response_error(tsr_http_response_t *resp, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* The HTTP status for a Tessera error code: EINVAL/EPARSE/ETYPE/ECONFIG/EUSAGE 400,
 * ENOTFOUND 404, EEXIST 409, EUNSUPPORTED 501, EUNAVAIL 503, ETIMEOUT 504, others 500. */
int tsr_http_status_for_error(int code);
/* Parses one JSON document p[0..n) (need not be NUL-terminated) into a value tree allocated
 * in arena (borrowed until it is reset): objects -> TSR_MAP (document order), arrays ->
 * TSR_LIST, integers -> TSR_LONG (exact int64), other numbers -> TSR_DOUBLE, strings ->
 * TSR_STRING (unescaped, NUL-terminated). Strict RFC 8259: UTF-8 validated, "\u0000", lone
 * surrogates, duplicate keys, out-of-range numbers and nesting deeper than
 * TSR_HTTP_JSON_MAX_DEPTH are errors. Returns 0, or TSR_EINVAL with err = "invalid JSON at
 * line L, column C: what". Allocates nothing outside the arena. */
#define TSR_HTTP_JSON_MAX_DEPTH 64
int tsr_http_json_parse(const char *p, size_t n, tsr_arena_t *arena, tsr_value_t *out,
                        tsr_error_t *err);
/* Appends s[0..n) as a JSON string (quoted, escaped). */
void tsr_http_json_string(tsr_buf_t *out, const char *s, size_t n);

/* A server with these options (NULL: all defaults). Nothing is bound until start. Caller
 * frees with tsr_http_server_free. */
tsr_http_server_t *tsr_http_server_new(const tsr_http_options_t *opt);

/* Adds a route (NEW state only). method: "GET", "POST", ...; path: exact, or a prefix when it
 * ends in '/' and prefix is 1. Strings are copied; ud is borrowed until free. Returns 0, or
 * TSR_EINVAL (bad arguments, not NEW) / TSR_EEXIST (same method and pattern). */
int tsr_http_server_route(tsr_http_server_t *srv, const char *method, const char *path,
                          int prefix, tsr_http_handler_fn fn, void *ud, tsr_error_t *err);

/* Binds and starts serving. Returns 0, or TSR_EIO (address in use, bad address) /
 * TSR_EINVAL (not NEW) with err set. */
int tsr_http_server_start(tsr_http_server_t *srv, tsr_error_t *err);
/* The bound port (after start). */
uint16_t tsr_http_server_port(const tsr_http_server_t *srv);

/* Graceful stop: closes the listener, lets requests already begun finish for up to drain_ms,
 * then closes every connection and joins the pool threads. No handler runs after it returns.
 * Returns 0, or TSR_ETIMEOUT when requests were still in flight at the deadline (they were
 * cut off). Idempotent; a server never started just moves to STOPPED. */
int tsr_http_server_stop(tsr_http_server_t *srv, unsigned drain_ms);
/* Stops (drain 0) if needed and frees. NULL is ok. */
void tsr_http_server_free(tsr_http_server_t *srv);

/* Requests begun and not yet completed (for tests and drain). */
long tsr_http_server_inflight(const tsr_http_server_t *srv);

/* ------------------------------------------------------------------------------------ */
/* /metrics and /health                                                                  */

/* GET /metrics: the registry (borrowed; must outlive the server) in the text format 0.0.4. */
int tsr_http_serve_metrics(tsr_http_server_t *srv, tsr_metrics_t *m, tsr_error_t *err);
/* GET /health: 200 {"status":"ok"} while ready, else 503 {"status":"unavailable",
 * "reason":"..."}. A new server is ready. */
int tsr_http_serve_health(tsr_http_server_t *srv, tsr_error_t *err);
/* Marks the server ready or not; reason (copied, may be NULL) is shown while not ready. */
void tsr_http_server_set_ready(tsr_http_server_t *srv, int ready, const char *reason);

/* ------------------------------------------------------------------------------------ */
/* Chronon-compatible fetch (SPEC §6)                                                    */
/*
 * POST /v1/fetch/join/<name> and POST /v1/fetch/groupby/<name> take a JSON array of key maps:
 *     [{"user_id": "u1", "merchant": 7}, {"user_id": "u2", "at_millis": 1700000000000}]
 * "at_millis" (an integer, or null for "now") is Tessera's extension; every other member is a
 * key column whose value is a string, number, boolean or null. The answer is
 *     {"results":[{"status":"Success","entityKeys":{...},"features":{...}},
 *                 {"status":"Failure","entityKeys":{...},"error":"..."}]}
 * one entry per row, in request order. Rows are numbered from 0 in error messages, as JSON
 * array indexes are.
 */

typedef enum tsr_http_fetch_kind {
    TSR_HTTP_FETCH_JOIN = 0,
    TSR_HTTP_FETCH_GROUPBY = 1,
} tsr_http_fetch_kind_t;

typedef struct tsr_http_fetch_row {
    tsr_value_t keys;       /* TSR_MAP: key column -> value, request order, at_millis excluded */
    int has_at_millis;      /* 0: fetch as of now */
    int64_t at_millis;
} tsr_http_fetch_row_t;

typedef struct tsr_http_fetch_result {
    int ok;                 /* 1: "Success" with features; 0: "Failure" with error */
    tsr_value_t features;   /* TSR_MAP name -> value (nulls present as null) when ok */
    const char *error;      /* NUL-terminated, when !ok */
} tsr_http_fetch_result_t;

/* Parses a fetch body (n bytes, need not be NUL-terminated). Rows, key names and string
 * values are allocated in arena (borrowed until it is reset). Returns 0, or TSR_EINVAL with
 * err saying what and where, e.g. "row 3: at_millis must be an integer". An empty array is
 * valid (0 rows). */
int tsr_http_fetch_parse(const char *body, size_t n, tsr_arena_t *arena,
                         tsr_http_fetch_row_t **rows, size_t *nrows, tsr_error_t *err);
/* The key's value in a row, or NULL. Borrowed like the row. */
const tsr_value_t *tsr_http_fetch_row_key(const tsr_http_fetch_row_t *row, const char *name);

/* Appends one result entry ({"status":...,"entityKeys":...,...}); the shape the CLI prints. */
void tsr_http_fetch_write_result(const tsr_http_fetch_row_t *row,
                                 const tsr_http_fetch_result_t *res, tsr_buf_t *out);
/* Appends {"results":[...]} for n rows and their results. */
void tsr_http_fetch_write_response(const tsr_http_fetch_row_t *rows,
                                   const tsr_http_fetch_result_t *res, size_t n, tsr_buf_t *out);

/* The fetch callback. results has nrows entries, preset to Failure "no result"; the callback
 * fills them (features and error strings borrowed until the arena is reset: allocate them in
 * arena). Returns 0, or a TSR_E* code with err set to fail the whole request (ENOTFOUND: an
 * unknown name -> 404; EINVAL -> 400; EUNAVAIL -> 503; ETIMEOUT -> 504; others 500). Runs on
 * an HTTP pool thread, concurrently with itself (http.h threading rules). */
typedef int (*tsr_http_fetch_fn)(void *ud, tsr_http_fetch_kind_t kind, const char *name,
                                 const tsr_http_fetch_row_t *rows, size_t nrows,
                                 tsr_http_fetch_result_t *results, tsr_arena_t *arena,
                                 tsr_error_t *err);

/* Registers POST /v1/fetch/join/ and POST /v1/fetch/groupby/ (prefix routes) calling fn. */
int tsr_http_serve_fetch(tsr_http_server_t *srv, tsr_http_fetch_fn fn, void *ud,
                         tsr_error_t *err);

#endif
