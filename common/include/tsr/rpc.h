/*
 * rpc.h — Tessera's small gRPC layer over gRPC C core: servers with a method table, clients
 * with reused channels, the grpc.health.v1.Health service. Every daemon and the CLI use it.
 *
 * Design (docs/rpc.md has the full picture):
 *   - Payloads are opaque bytes (serialized protobuf); the layer never parses them. Handlers
 *     decode with protobuf-c (tsr_proto) and reject bad bytes themselves (TSR_EINVAL →
 *     INVALID_ARGUMENT).
 *   - Server: one completion queue served by N threads (default 1: on 2 cores one CQ thread
 *     beat two). 32 request_calls stay outstanding; each accepted call re-arms one. Call
 *     contexts are pooled, so steady-state serving allocates nothing in this layer.
 *   - Unary handlers run inline on a CQ thread and must be quick; one that needs to wait
 *     (fan-out to workers) returns TSR_RPC_DEFER and later calls tsr_rpc_call_finish from any
 *     thread; one with a long call in hand (a 100-entity fetch) returns TSR_RPC_OFFLOAD and
 *     runs again on one of the server's offload threads (opts.offload_threads), so the CQ
 *     thread goes on with the small calls. Server-streaming handlers run on their own thread and send with a blocking
 *     tsr_rpc_call_send (one send in flight at a time, as gRPC requires).
 *   - Client: one channel per tsr_rpc_client_t shared by all threads. Blocking calls poll on
 *     the calling thread; async unary calls complete on the client's one completion thread.
 *   - Fan-out from a handler (tsr_rpc_call_fanout, the fetcher's ReadPartitions): client calls
 *     started on the completion queue of the server that received the call, so their
 *     completions are dequeued by the server's own CQ threads; the last one runs the done
 *     callback there, which finishes the deferred call. No thread blocks while the calls are
 *     out and no hop through another thread brings the answers back. A continuation that turns
 *     out to need blocking work goes to an offload thread with tsr_rpc_call_offload.
 *   - Errors: handlers return TSR_OK or a TSR_E* code; the status sent is
 *     tsr_error_grpc_status(code) (the one table in error.h) with the handler's message.
 *     Clients map a received status back to the first TSR code of that table with that status.
 *   - gRPC is initialised by each server/client (grpc_init/grpc_shutdown are refcounted), so a
 *     process that never creates one never starts gRPC threads. Check + fork: create them
 *     inside each test, never in the parent process.
 *
 * Ownership rules:
 *   - "If a call fails, its callback never runs": a handler that returns anything but
 *     TSR_RPC_DEFER has finished its call; one that returns TSR_RPC_DEFER must call
 *     tsr_rpc_call_finish exactly once (also after the client went away — finishing a cancelled
 *     call is harmless). tsr_rpc_server_free waits for every deferred call to be finished.
 *   - A tsr_rpc_call_t and everything read from it are borrowed until the call is finished.
 *   - tsr_rpc_client_call_async: TSR_OK → the callback runs exactly once; an error → never.
 */
#ifndef TSR_RPC_H
#define TSR_RPC_H

#include <stddef.h>
#include <stdint.h>

#include "tsr/error.h"
#include "tsr/mem.h"

/* gRPC status codes used by name in Tessera (values are gRPC's). */
enum {
    TSR_GRPC_OK = 0,
    TSR_GRPC_CANCELLED = 1,
    TSR_GRPC_UNKNOWN = 2,
    TSR_GRPC_INVALID_ARGUMENT = 3,
    TSR_GRPC_DEADLINE_EXCEEDED = 4,
    TSR_GRPC_NOT_FOUND = 5,
    TSR_GRPC_RESOURCE_EXHAUSTED = 8,
    TSR_GRPC_UNIMPLEMENTED = 12,
    TSR_GRPC_INTERNAL = 13,
    TSR_GRPC_UNAVAILABLE = 14,
};

/* Handler return value meaning "I will call tsr_rpc_call_finish later". */
#define TSR_RPC_DEFER 1
/* Handler return value meaning "run me again on an offload thread" (tsr_rpc_call_offloaded
 * is then 1; the handler must not return TSR_RPC_OFFLOAD there). Without offload threads the
 * handler runs again at once on the CQ thread; when offload_queue calls already wait, the call
 * fails UNAVAILABLE ("server overloaded: N calls queued for offload threads"). */
#define TSR_RPC_OFFLOAD 2

/* Infinite deadline / no deadline. */
#define TSR_RPC_NO_DEADLINE INT64_MAX

/* One metadata entry. Keys must be lowercase legal HTTP/2 header names ([0-9a-z_.-]);
 * values of keys ending in "-bin" may hold any bytes, others printable ASCII. */
typedef struct tsr_rpc_md {
    const char *key;        /* NUL-terminated */
    const char *value;      /* value_len bytes, not necessarily NUL-terminated */
    size_t value_len;
} tsr_rpc_md_t;

/* Maps a gRPC status code to a Tessera code through error.h's table (first row with that
 * status; 0 → TSR_OK; a status no row names → TSR_EINTERNAL, except CANCELLED → TSR_EUNAVAIL). */
int tsr_rpc_status_to_error(int grpc_status);
/* Name of a gRPC status code ("DEADLINE_EXCEEDED"); "UNKNOWN_STATUS" outside 0..16. */
const char *tsr_rpc_status_name(int grpc_status);

/* Chooses gRPC's I/O polling engine for this process ("poll", "epoll1"; gRPC reads it from
 * GRPC_POLL_STRATEGY when it starts, so this must come before the first server or client).
 * With "epoll1" (gRPC's default on Linux) every thread waiting on any completion queue shares
 * one epoll set, and whichever of them polls does the socket work of every call and then
 * wakes the queue's own thread; "poll" gives each completion queue its own poll set, so a
 * daemon with one server thread and a few client threads (a worker's watch stream and
 * KeepAlives) handles each call on the thread that serves it — with more than one thread on
 * one queue it wakes them all (docs/rpc.md "Polling engine"). An operator's
 * GRPC_POLL_STRATEGY in the environment is kept. Returns TSR_EINVAL once gRPC has started. */
int tsr_rpc_set_poll_engine(const char *engine, tsr_error_t *err);

/* ------------------------------------------------------------------------------------------
 * Server */

typedef struct tsr_rpc_server tsr_rpc_server_t;
typedef struct tsr_rpc_call tsr_rpc_call_t;

/* Unary handler: req[0..n) is the request message (borrowed until the handler returns, or
 * until finish for a deferred call). Append the response to *resp (a buffer owned and reused
 * by the call, empty on entry) and return TSR_OK; or return a TSR_E* code with err filled (its
 * message becomes the status message); or TSR_RPC_DEFER. Runs on a CQ thread. */
typedef int (*tsr_rpc_unary_fn)(void *ud, tsr_rpc_call_t *call, const uint8_t *req, size_t n,
                                tsr_buf_t *resp, tsr_error_t *err);
/* Server-streaming handler: runs on its own thread; sends any number of messages with
 * tsr_rpc_call_send, then returns TSR_OK or a TSR_E* code with err filled (status as above). */
typedef int (*tsr_rpc_stream_fn)(void *ud, tsr_rpc_call_t *call, const uint8_t *req, size_t n,
                                 tsr_error_t *err);

typedef struct tsr_rpc_server_opts {
    int cq_threads;         /* completion-queue threads; 0 = 1 */
    int pending_calls;      /* clamped to [16, 64]; 0 = 32; each method keeps pending_calls / 4
                             * (at least 4) requested calls outstanding */
    int max_streams;        /* concurrent streaming calls; more get RESOURCE_EXHAUSTED; 0 = 64 */
    size_t max_message;     /* max received message bytes; 0 = 64 MiB */
    int offload_threads;    /* threads running handlers that returned TSR_RPC_OFFLOAD; 0 = none */
    int offload_queue;      /* calls waiting for them at most; 0 = 256 */
} tsr_rpc_server_opts_t;

/* Creates a server listening on addr ("127.0.0.1:0" picks a free port; "0.0.0.0:7070"),
 * insecure credentials. Not started: register methods, then tsr_rpc_server_start.
 * Returns NULL with err filled (TSR_EIO: address could not be bound). Caller frees with
 * tsr_rpc_server_free. opts may be NULL. */
tsr_rpc_server_t *tsr_rpc_server_new(const char *addr, const tsr_rpc_server_opts_t *opts,
                                     tsr_error_t *err);
/* The bound port (useful after binding port 0). */
int tsr_rpc_server_port(const tsr_rpc_server_t *s);

/* Registers a method by full path ("/tessera.v1.FeatureService/FetchJoin"); path is copied,
 * ud is borrowed until the server is freed. Before start only. TSR_EEXIST for a duplicate
 * path, TSR_EINVAL for a path not shaped "/pkg.Service/Method" or after start. */
int tsr_rpc_server_add_unary(tsr_rpc_server_t *s, const char *path, tsr_rpc_unary_fn fn,
                             void *ud, tsr_error_t *err);
int tsr_rpc_server_add_stream(tsr_rpc_server_t *s, const char *path, tsr_rpc_stream_fn fn,
                              void *ud, tsr_error_t *err);

/* 1 when the handler runs on an offload thread (it returned TSR_RPC_OFFLOAD before). */
int tsr_rpc_call_offloaded(const tsr_rpc_call_t *c);

/* Starts the CQ threads and begins accepting calls. TSR_EINVAL if already started. */
int tsr_rpc_server_start(tsr_rpc_server_t *s, tsr_error_t *err);

/* Stops accepting, cancels calls in flight (their handlers see tsr_rpc_call_cancelled and
 * failing sends), waits for streaming handlers to return and deferred calls to be finished,
 * joins the CQ threads and releases everything. NULL is a no-op. */
void tsr_rpc_server_free(tsr_rpc_server_t *s);

/* Counters (relaxed atomics; for tests and /metrics). */
typedef struct tsr_rpc_server_stats {
    uint64_t calls;         /* calls accepted */
    uint64_t unimplemented; /* calls to unknown methods */
    uint64_t failed;        /* calls finished with a non-OK status */
    uint64_t cancelled;     /* calls the client cancelled or whose deadline passed */
} tsr_rpc_server_stats_t;
void tsr_rpc_server_stats(const tsr_rpc_server_t *s, tsr_rpc_server_stats_t *out);

/* --- inside handlers (call borrowed until finished) --- */

/* The method path, NUL-terminated. */
const char *tsr_rpc_call_method(const tsr_rpc_call_t *c);
/* Milliseconds left until the client's deadline (0 when passed), or TSR_RPC_NO_DEADLINE.
 * Pass it on as the timeout of downstream calls to propagate the deadline — but check for 0
 * first and fail with TSR_ETIMEOUT: a timeout_ms of 0 in tsr_rpc_call_opts_t means none. */
int64_t tsr_rpc_call_remaining_ms(const tsr_rpc_call_t *c);
/* 1 once the client cancelled, the deadline passed or the server is shutting down (as far as
 * this thread can know: inline unary handlers learn it only from the deadline). */
int tsr_rpc_call_cancelled(const tsr_rpc_call_t *c);
/* Request metadata value for key (first match), *len set; NULL if absent. Borrowed. */
const char *tsr_rpc_call_metadata(const tsr_rpc_call_t *c, const char *key, size_t *len);
/* Adds response metadata (sent as initial metadata with the first response message, or with
 * the status). Copied. Up to 16 entries; TSR_EINVAL for a bad key or too many / too late. */
int tsr_rpc_call_add_metadata(tsr_rpc_call_t *c, const char *key, const void *value,
                              size_t len, tsr_error_t *err);

/* Streaming handlers only: sends one message and waits until gRPC accepted it. TSR_OK, or
 * TSR_EUNAVAIL when the call is cancelled (stop producing and return). */
int tsr_rpc_call_send(tsr_rpc_call_t *c, const void *msg, size_t n);

/* Deferred unary calls only: runs fn(ud) on one of the server's offload threads (instead of
 * the handler), for a continuation that must block — a retry after a fan-out. TSR_OK: fn runs
 * exactly once and must see that the call is finished. TSR_EUNAVAIL: the server has no offload
 * threads or their queue is full (or stopping); fn never runs and the caller still owns the
 * deferred call. Thread-safe, e.g. from a fan-out's done callback. */
int tsr_rpc_call_offload(tsr_rpc_call_t *c, void (*fn)(void *ud), void *ud);

/* Deferred unary calls only: finishes the call from any thread. rc = TSR_OK sends resp[0..n)
 * (copied); otherwise status tsr_error_grpc_status(rc) with message msg (NULL = the code's
 * tsr_strerror). After this the call must not be touched. */
void tsr_rpc_call_finish(tsr_rpc_call_t *c, int rc, const void *resp, size_t n, const char *msg);

/* ------------------------------------------------------------------------------------------
 * Client */

typedef struct tsr_rpc_client tsr_rpc_client_t;

/* A channel to target ("127.0.0.1:7070", "dns:///host:port"), insecure, reused by every call
 * (thread-safe: many threads may call at once). Connects lazily. Caller frees with
 * tsr_rpc_client_free after all blocking calls returned; free cancels async calls still in
 * flight and waits for their callbacks. Returns NULL with err filled. */
tsr_rpc_client_t *tsr_rpc_client_new(const char *target, tsr_error_t *err);
void tsr_rpc_client_free(tsr_rpc_client_t *c);

typedef struct tsr_rpc_call_opts {
    int64_t timeout_ms;             /* 0 or TSR_RPC_NO_DEADLINE = no deadline */
    const tsr_rpc_md_t *md;         /* request metadata, borrowed during the call */
    size_t n_md;
    int wait_for_ready;             /* queue while the channel connects instead of failing */
} tsr_rpc_call_opts_t;

#define TSR_RPC_REPLY_MD_MAX 16

/* What a call returned. Initialise with tsr_rpc_reply_init, reuse across calls (buffers are
 * kept), release with tsr_rpc_reply_free. */
typedef struct tsr_rpc_reply {
    int status;                     /* gRPC status; TSR_GRPC_OK on success */
    char message[512];              /* status message (truncated) */
    tsr_buf_t body;                 /* unary: the response message */
    size_t n_md;                    /* response metadata (initial then trailing), up to MAX */
    tsr_rpc_md_t md[TSR_RPC_REPLY_MD_MAX]; /* point into md_store; valid until the next call */
    tsr_buf_t md_store;
} tsr_rpc_reply_t;

void tsr_rpc_reply_init(tsr_rpc_reply_t *r);
void tsr_rpc_reply_free(tsr_rpc_reply_t *r);
/* Response metadata value for key, or NULL. */
const char *tsr_rpc_reply_metadata(const tsr_rpc_reply_t *r, const char *key, size_t *len);

/* Unary call: blocks until the status arrives. Returns TSR_OK when the status is OK (response
 * in reply->body), else tsr_rpc_status_to_error(status) with reply->status/message set and err
 * filled ("<method>: <STATUS_NAME>: <message>"). opts may be NULL. */
int tsr_rpc_client_call(tsr_rpc_client_t *c, const char *method, const void *req, size_t n,
                        const tsr_rpc_call_opts_t *opts, tsr_rpc_reply_t *reply,
                        tsr_error_t *err);

/* Completion of an async unary call. Runs on the client's completion thread (one per client,
 * started with the first async call) and must be quick: finish a deferred server call, start
 * more async calls, signal a waiter. rc is what tsr_rpc_client_call would return; reply (status,
 * message, body, metadata) and msg ("<method>: <STATUS>: <message>", "" on success) are
 * borrowed until the callback returns. */
typedef void (*tsr_rpc_done_cb)(void *ud, int rc, const tsr_rpc_reply_t *reply, const char *msg);

/* Async unary call. TSR_OK: the call started and cb will run exactly once (also when the client
 * is freed with the call in flight: then with TSR_EUNAVAIL/CANCELLED). Any other return: the
 * call did not start, err says why, and cb never runs. req and opts are copied / only read
 * during this call. Thread-safe; may be called from inside a callback. */
int tsr_rpc_client_call_async(tsr_rpc_client_t *c, const char *method, const void *req, size_t n,
                              const tsr_rpc_call_opts_t *opts, tsr_rpc_done_cb cb, void *ud,
                              tsr_error_t *err);

/* One call of a tsr_rpc_client_call_all: the caller fills client, req and n, and gives reply
 * (initialised with tsr_rpc_reply_init, reusable); rc and err are set as
 * tsr_rpc_client_call sets its return and err. */
typedef struct tsr_rpc_multi {
    tsr_rpc_client_t *client;
    const void *req;
    size_t n;
    tsr_rpc_reply_t *reply;
    int rc;
    tsr_error_t err;
} tsr_rpc_multi_t;

/* Fan-out: starts calls[0..n) of method (each on its own client, all with opts — the same
 * deadline) at once and blocks until every one has its status. The replies are received by
 * the calling thread itself (one completion queue for the whole fan-out, polled here), so a
 * fan-out costs no thread hop on the way back — unlike async calls, whose callbacks run on
 * the client's completion thread and must then wake the waiter. Every call ends by its
 * deadline; with no deadline in opts, a call waits for its answer. */
void tsr_rpc_client_call_all(const char *method, tsr_rpc_multi_t *calls, size_t n,
                             const tsr_rpc_call_opts_t *opts);

/* Fan-out from a server call (a handler that returns TSR_RPC_DEFER, on a CQ or offload thread):
 * starts calls[0..n) of method (each on its own client, all with opts — the same deadline;
 * timeout_ms propagates as with tsr_rpc_client_call) with their completions delivered on the
 * completion queue of call's server. When the last call has its status, the thread that
 * dequeued it fills every calls[i] (rc, err, reply, as tsr_rpc_client_call_all does) and runs
 * done(ud) — normally a server CQ thread, after the handler returned. Exceptions: with n = 0,
 * or when the last call to complete is one that could not be started (a bad method, gRPC
 * refused the batch), done runs on the calling thread before this returns; write the handler so
 * that it touches nothing of the call after starting the fan-out.
 * calls[], their replies and ud stay borrowed until done runs; req bytes and opts are only read
 * here. done runs on the server's thread and must be quick (finish the call, or hand blocking
 * work to tsr_rpc_call_offload). Returns TSR_OK (done runs exactly once) or TSR_EUNAVAIL (the
 * server is shutting down) / TSR_EINVAL (no done): then done never runs and calls are untouched.
 * tsr_rpc_server_free cancels fan-out calls in flight (they end CANCELLED → TSR_EUNAVAIL) and
 * waits until their done callbacks returned. A client freed while its call is out is fine:
 * the call keeps the channel alive until it completes. Records are pooled on the server: no
 * allocation in this layer in steady state besides gRPC's own per call. */
int tsr_rpc_call_fanout(tsr_rpc_call_t *call, const char *method, tsr_rpc_multi_t *calls, size_t n,
                        const tsr_rpc_call_opts_t *opts, void (*done)(void *ud), void *ud);

/* Called once per streamed message (msg borrowed until it returns). Return 0 to continue,
 * non-zero to cancel the call (the call then ends with CANCELLED). */
typedef int (*tsr_rpc_stream_cb)(void *ud, const uint8_t *msg, size_t n);

/* Server-streaming call: reads until the stream ends, calling cb per message, then returns as
 * tsr_rpc_client_call does (reply->body unused). */
int tsr_rpc_client_stream(tsr_rpc_client_t *c, const char *method, const void *req, size_t n,
                          const tsr_rpc_call_opts_t *opts, tsr_rpc_stream_cb cb, void *ud,
                          tsr_rpc_reply_t *reply, tsr_error_t *err);

/* ------------------------------------------------------------------------------------------
 * grpc.health.v1.Health */

enum {
    TSR_HEALTH_UNKNOWN = 0,
    TSR_HEALTH_SERVING = 1,
    TSR_HEALTH_NOT_SERVING = 2,
    TSR_HEALTH_SERVICE_UNKNOWN = 3,
};

/* Registers /grpc.health.v1.Health/Check and /Watch on s (before start). The service ""
 * (the whole server) starts SERVING; others are unknown until set. */
int tsr_rpc_health_register(tsr_rpc_server_t *s, tsr_error_t *err);
/* Sets a service's status (name copied); Watchers of it get the change. Thread-safe. */
void tsr_rpc_health_set(tsr_rpc_server_t *s, const char *service, int status);

#endif
