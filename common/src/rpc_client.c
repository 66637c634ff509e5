/*
 * rpc_client.c — blocking gRPC client calls over one reused channel.
 *
 * DESIGN
 *   A tsr_rpc_client_t is one grpc_channel (HTTP/2 connection, thread-safe, connected lazily)
 *   shared by every call and thread. Each call gets its own pluck completion queue, so calls
 *   from many threads never wait for one another and no client thread is needed; the calling
 *   thread does the polling (no thread hop on the latency path).
 *   - unary: one batch of six ops (send initial metadata, send message, send close, recv
 *     initial metadata, recv message, recv status), plucked.
 *   - server streaming: {send md, send message, send close, recv md}, then {recv message} until
 *     the message is NULL, then {recv status}. Stopping early cancels the call.
 *   Received metadata (initial then trailing) and the status land in the caller's reusable
 *   tsr_rpc_reply_t.
 *   - async unary: the same six-op batch on the client's own next-CQ, served by one completion
 *     thread started with the first async call; the callback runs there. Async call records
 *     (with their reply buffers) are pooled on the client. Freeing the client cancels what is
 *     in flight and waits for those callbacks.
 *   - fan-out on a server's CQ (tsr_rpc_call_fanout, at the end of this file): the same six-op
 *     batch per call, started on the completion queue of the server call's server; its tag is
 *     the call's slot in a pooled fan-out record | RPC_EV_FANOUT, and the server's CQ loop
 *     hands it to tsr__rpc_fanout_event. The event that completes the last call closes them all
 *     and runs the done callback on that CQ thread.
 *
 * INVARIANTS
 *   1. Every batch is plucked before the call is unref'd; the CQ is empty when destroyed.
 *   2. A failing status returns tsr_rpc_status_to_error(status), never TSR_OK.
 *   3. An async call is on the `inflight` list (cancellable) only while its grpc_call is alive;
 *      `n_async` counts calls whose callback has not returned; free waits for it to reach 0.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>

#include "rpc_int.h"

#ifndef BACKOFF_MAX
#define BACKOFF_INITIAL 100         /* ms */
#define BACKOFF_MAX 1000
#endif
/* gRPC's "min reconnect backoff" is the least time a connection attempt gets to finish its
 * handshake (its connection-backoff.md: MIN_CONNECT_TIMEOUT), not a backoff: set to 100 ms
 * it failed a first call with "connection attempt timed out before receiving SETTINGS frame"
 * on a loaded machine (an ASan CI run). A refused connection still fails at once and is
 * retried after BACKOFF_INITIAL..BACKOFF_MAX; only a peer that accepts but does not answer
 * (SIGSTOPped) now holds a new connection's calls up to 2 s, or to their own deadline. */
#define CONNECT_TIMEOUT_MIN 2000    /* ms */

typedef struct rpc_acall rpc_acall_t;

struct tsr_rpc_client {
    grpc_channel *ch;
    char *target;
    /* async calls */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    grpc_completion_queue *acq;     /* created with the first async call */
    pthread_t athread;
    int closing;
    rpc_acall_t *inflight;          /* doubly linked, cancellable calls */
    size_t n_async;                 /* started calls whose callback has not returned */
    rpc_acall_t *afree;             /* pooled records */
};

tsr_rpc_client_t *tsr_rpc_client_new(const char *target, tsr_error_t *err) {
    if (!target || !*target) {
        tsr_error_set(err, TSR_EINVAL, "empty gRPC target (expected host:port)");
        return NULL;
    }
    tsr__rpc_init();
    tsr_rpc_client_t *c = tsr_calloc(1, sizeof(*c));
    c->target = tsr_strdup(target);
    pthread_mutex_init(&c->mu, NULL);
    pthread_cond_init(&c->cv, NULL);
    /* Reconnect backoff capped at 1 s (gRPC's default grows to 120 s): a daemon restarted at
     * the same address — a coordinator after a failover, a worker after a crash — is reached
     * again within a second instead of after minutes of a channel still backing off from
     * its refusals. The cost is at most one connection attempt per second to a dead peer. */
    static const struct {
        const char *key;
        int value;
    } ints[] = {
        {GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH, 64 << 20},
        {GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, BACKOFF_INITIAL},
        {GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, CONNECT_TIMEOUT_MIN},
        {GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, BACKOFF_MAX},
    };
    enum { NARGS = sizeof ints / sizeof ints[0] };
    grpc_arg args[NARGS];
    memset(args, 0, sizeof(args));
    for (size_t i = 0; i < NARGS; i++) {
        args[i].type = GRPC_ARG_INTEGER;
        args[i].key = (char *)ints[i].key;
        args[i].value.integer = ints[i].value;
    }
    grpc_channel_args cargs = {NARGS, args};
    grpc_channel_credentials *cr = grpc_insecure_credentials_create();
    c->ch = grpc_channel_create(target, cr, &cargs);
    grpc_channel_credentials_release(cr);
    if (!c->ch) {
        tsr_error_set(err, TSR_EINVAL, "cannot create a gRPC channel to '%s'", target);
        pthread_mutex_destroy(&c->mu);
        pthread_cond_destroy(&c->cv);
        free(c->target);
        free(c);
        grpc_shutdown();
        return NULL;
    }
    return c;
}

static void async_shutdown(tsr_rpc_client_t *c);

void tsr_rpc_client_free(tsr_rpc_client_t *c) {
    if (!c) return;
    async_shutdown(c);
    pthread_mutex_destroy(&c->mu);
    pthread_cond_destroy(&c->cv);
    grpc_channel_destroy(c->ch);
    free(c->target);
    free(c);
    grpc_shutdown();
}

void tsr_rpc_reply_init(tsr_rpc_reply_t *r) {
    memset(r, 0, sizeof(*r));
    tsr_buf_init(&r->body);
    tsr_buf_init(&r->md_store);
}

void tsr_rpc_reply_free(tsr_rpc_reply_t *r) {
    tsr_buf_free(&r->body);
    tsr_buf_free(&r->md_store);
    r->n_md = 0;
}

const char *tsr_rpc_reply_metadata(const tsr_rpc_reply_t *r, const char *key, size_t *len) {
    for (size_t i = 0; i < r->n_md; i++)
        if (strcmp(r->md[i].key, key) == 0) {
            if (len) *len = r->md[i].value_len;
            return r->md[i].value;
        }
    return NULL;
}

/* Copies received metadata into the reply's store (keys and values NUL-terminated). Pointers
 * are fixed up after all appends, since the store may move while growing. */
static void reply_take_md(tsr_rpc_reply_t *r, const grpc_metadata_array *a) {
    for (size_t i = 0; i < a->count && r->n_md < TSR_RPC_REPLY_MD_MAX; i++) {
        const grpc_metadata *m = &a->metadata[i];
        tsr_buf_append(&r->md_store, GRPC_SLICE_START_PTR(m->key), GRPC_SLICE_LENGTH(m->key));
        tsr_buf_putc(&r->md_store, 0);
        tsr_buf_append(&r->md_store, GRPC_SLICE_START_PTR(m->value), GRPC_SLICE_LENGTH(m->value));
        tsr_buf_putc(&r->md_store, 0);
        r->md[r->n_md++].value_len = GRPC_SLICE_LENGTH(m->value);
    }
    /* re-point every entry (earlier batches too): keys hold no NUL (legal header names) */
    size_t pos = 0;
    for (size_t i = 0; i < r->n_md; i++) {
        r->md[i].key = (const char *)r->md_store.data + pos;
        pos += strlen(r->md[i].key) + 1;
        r->md[i].value = (const char *)r->md_store.data + pos;
        pos += r->md[i].value_len + 1;
    }
}

/* Shared call plumbing. */
typedef struct rpc_cc {
    grpc_completion_queue *cq;
    grpc_call *call;
    grpc_metadata md[32];
    size_t n_md;
    grpc_metadata_array init_md, trail_md;
    grpc_status_code status;
    grpc_slice details;
    grpc_byte_buffer *send_bb;
    int own_cq;
} rpc_cc_t;

/* Opens a call on shared_cq, or on a fresh pluck CQ when shared_cq is NULL. */
static int cc_open(tsr_rpc_client_t *c, rpc_cc_t *cc, const char *method,
                   const tsr_rpc_call_opts_t *opts, grpc_completion_queue *shared_cq,
                   tsr_error_t *err) {
    memset(cc, 0, sizeof(*cc));
    /* until gRPC writes the call's status: a batch that completes without it (success = 0)
     * must not read as OK with an empty answer */
    cc->status = GRPC_STATUS_UNKNOWN;
    if (!method || method[0] != '/')
        return tsr_error_set(err, TSR_EINVAL, "method '%s' must be a path /pkg.Service/Method",
                             method ? method : "(null)");
    size_t n_md = opts ? opts->n_md : 0;
    if (n_md > sizeof(cc->md) / sizeof(cc->md[0]))
        return tsr_error_set(err, TSR_EINVAL, "%s: %zu metadata entries (at most 32)", method,
                             n_md);
    for (size_t i = 0; i < n_md; i++)
        if (!tsr__rpc_md_key_ok(opts->md[i].key))
            return tsr_error_set(err, TSR_EINVAL,
                                 "%s: metadata key '%s' must be lowercase [0-9a-z_.-] and not "
                                 "grpc-*", method, opts->md[i].key ? opts->md[i].key : "(null)");
    gpr_timespec deadline = gpr_inf_future(GPR_CLOCK_REALTIME);
    if (opts && opts->timeout_ms > 0 && opts->timeout_ms != TSR_RPC_NO_DEADLINE)
        deadline = gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
                                gpr_time_from_millis(opts->timeout_ms, GPR_TIMESPAN));
    cc->own_cq = shared_cq == NULL;
    cc->cq = shared_cq ? shared_cq : grpc_completion_queue_create_for_pluck(NULL);
    grpc_slice msl = grpc_slice_from_copied_string(method);
    cc->call = grpc_channel_create_call(c->ch, NULL, GRPC_PROPAGATE_DEFAULTS, cc->cq, msl, NULL,
                                        deadline, NULL);
    grpc_slice_unref(msl);
    for (size_t i = 0; i < n_md; i++) {
        cc->md[i].key = grpc_slice_from_copied_string(opts->md[i].key);
        cc->md[i].value = grpc_slice_from_copied_buffer(opts->md[i].value, opts->md[i].value_len);
    }
    cc->n_md = n_md;
    grpc_metadata_array_init(&cc->init_md);
    grpc_metadata_array_init(&cc->trail_md);
    cc->details = grpc_empty_slice();
    return TSR_OK;
}

static int cc_pluck(rpc_cc_t *cc, void *tag) {
    grpc_event ev = grpc_completion_queue_pluck(cc->cq, tag, gpr_inf_future(GPR_CLOCK_REALTIME),
                                                NULL);
    return ev.type == GRPC_OP_COMPLETE && ev.success;
}

/* Fills the reply from the status, returns the TSR code. Releases everything. */
static int cc_close(rpc_cc_t *cc, const char *method, tsr_rpc_reply_t *reply, tsr_error_t *err) {
    reply->status = (int)cc->status;
    size_t dn = GRPC_SLICE_LENGTH(cc->details);
    if (dn >= sizeof(reply->message)) dn = sizeof(reply->message) - 1;
    memcpy(reply->message, GRPC_SLICE_START_PTR(cc->details), dn);
    reply->message[dn] = '\0';
    reply_take_md(reply, &cc->init_md);
    reply_take_md(reply, &cc->trail_md);
    grpc_slice_unref(cc->details);
    grpc_metadata_array_destroy(&cc->init_md);
    grpc_metadata_array_destroy(&cc->trail_md);
    for (size_t i = 0; i < cc->n_md; i++) {
        grpc_slice_unref(cc->md[i].key);
        grpc_slice_unref(cc->md[i].value);
    }
    if (cc->send_bb) grpc_byte_buffer_destroy(cc->send_bb);
    if (cc->call) grpc_call_unref(cc->call);
    if (cc->cq && cc->own_cq) {
        grpc_completion_queue_shutdown(cc->cq);
        grpc_completion_queue_pluck(cc->cq, NULL, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
        grpc_completion_queue_destroy(cc->cq);
    }
    if (reply->status == TSR_GRPC_OK) return TSR_OK;
    int rc = tsr_rpc_status_to_error(reply->status);
    tsr_error_set(err, rc, "%s: %s: %s", method, tsr_rpc_status_name(reply->status),
                  reply->message);
    return rc;
}

static void reply_reset(tsr_rpc_reply_t *r) {
    r->status = TSR_GRPC_UNKNOWN;
    r->message[0] = '\0';
    tsr_buf_clear(&r->body);
    tsr_buf_clear(&r->md_store);
    r->n_md = 0;
}

/* The send half shared by unary and streaming calls: ops[0..3) plus recv initial metadata. */
static size_t cc_send_ops(rpc_cc_t *cc, grpc_op *ops, const void *req, size_t n,
                          const tsr_rpc_call_opts_t *opts) {
    memset(ops, 0, 6 * sizeof(*ops));
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[0].data.send_initial_metadata.count = cc->n_md;
    ops[0].data.send_initial_metadata.metadata = cc->n_md ? cc->md : NULL;
    if (opts && opts->wait_for_ready) ops[0].flags = GRPC_INITIAL_METADATA_WAIT_FOR_READY;
    grpc_slice sl = grpc_slice_from_copied_buffer(req, n);
    cc->send_bb = grpc_raw_byte_buffer_create(&sl, 1);
    grpc_slice_unref(sl);
    ops[1].op = GRPC_OP_SEND_MESSAGE;
    ops[1].data.send_message.send_message = cc->send_bb;
    ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
    ops[3].data.recv_initial_metadata.recv_initial_metadata = &cc->init_md;
    return 4;
}

static void cc_status_op(rpc_cc_t *cc, grpc_op *op) {
    memset(op, 0, sizeof(*op));
    op->op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    op->data.recv_status_on_client.trailing_metadata = &cc->trail_md;
    op->data.recv_status_on_client.status = &cc->status;
    op->data.recv_status_on_client.status_details = &cc->details;
}

/* Starts the unary batch (send metadata, message and close; receive metadata, message into
 * *resp and status) with tag. Returns 1 when started (the tag will come); 0 when gRPC refused
 * it — the call's status is then INTERNAL, for cc_close to report. */
static int cc_start_unary(rpc_cc_t *cc, const void *req, size_t n, const tsr_rpc_call_opts_t *opts,
                          grpc_byte_buffer **resp, void *tag) {
    grpc_op ops[6];
    size_t k = cc_send_ops(cc, ops, req, n, opts);
    ops[k].op = GRPC_OP_RECV_MESSAGE;
    ops[k].data.recv_message.recv_message = resp;
    k++;
    cc_status_op(cc, &ops[k++]);
    if (grpc_call_start_batch(cc->call, ops, k, tag, NULL) == GRPC_CALL_OK) return 1;
    cc->status = GRPC_STATUS_INTERNAL;
    grpc_slice_unref(cc->details);
    cc->details = grpc_slice_from_static_string("grpc_call_start_batch refused the call");
    return 0;
}

int tsr_rpc_client_call(tsr_rpc_client_t *c, const char *method, const void *req, size_t n,
                        const tsr_rpc_call_opts_t *opts, tsr_rpc_reply_t *reply,
                        tsr_error_t *err) {
    reply_reset(reply);
    rpc_cc_t cc;
    tsr_error_t oerr;
    int rc = cc_open(c, &cc, method, opts, NULL, &oerr);
    if (rc) {
        reply->status = TSR_GRPC_INVALID_ARGUMENT;
        snprintf(reply->message, sizeof(reply->message), "%.500s", oerr.msg);
        if (err) *err = oerr;
        return rc;
    }
    grpc_byte_buffer *resp_bb = NULL;
    if (cc_start_unary(&cc, req, n, opts, &resp_bb, (void *)1)) cc_pluck(&cc, (void *)1);
    tsr__rpc_bb_read(resp_bb, &reply->body);
    return cc_close(&cc, method, reply, err);
}

void tsr_rpc_client_call_all(const char *method, tsr_rpc_multi_t *calls, size_t n,
                             const tsr_rpc_call_opts_t *opts) {
    if (n == 0) return;
    if (n == 1) { /* the plain blocking call: its own pluck queue */
        tsr_error_clear(&calls[0].err);
        calls[0].rc = tsr_rpc_client_call(calls[0].client, method, calls[0].req, calls[0].n, opts,
                                          calls[0].reply, &calls[0].err);
        return;
    }
    grpc_completion_queue *cq = grpc_completion_queue_create_for_next(NULL);
    rpc_cc_t *cc = tsr_calloc(n, sizeof *cc);
    grpc_byte_buffer **resp = tsr_calloc(n, sizeof *resp);
    size_t started = 0;
    for (size_t i = 0; i < n; i++) {
        tsr_rpc_multi_t *m = &calls[i];
        reply_reset(m->reply);
        tsr_error_clear(&m->err);
        m->rc = cc_open(m->client, &cc[i], method, opts, cq, &m->err);
        if (m->rc) {
            m->reply->status = TSR_GRPC_INVALID_ARGUMENT;
            snprintf(m->reply->message, sizeof m->reply->message, "%.500s", m->err.msg);
            continue;
        }
        started += (size_t)cc_start_unary(&cc[i], m->req, m->n, opts, &resp[i], &cc[i]);
    }
    /* every started batch completes exactly once (at the latest at its deadline) */
    while (started > 0) {
        grpc_event ev = grpc_completion_queue_next(cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
        if (ev.type == GRPC_OP_COMPLETE) started--;
    }
    for (size_t i = 0; i < n; i++) {
        tsr_rpc_multi_t *m = &calls[i];
        if (!cc[i].call) continue; /* cc_open failed: rc and err are set */
        tsr__rpc_bb_read(resp[i], &m->reply->body);
        m->rc = cc_close(&cc[i], method, m->reply, &m->err);
    }
    grpc_completion_queue_shutdown(cq);
    while (grpc_completion_queue_next(cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL).type != GRPC_QUEUE_SHUTDOWN) {
    }
    grpc_completion_queue_destroy(cq);
    free(resp);
    free(cc);
}

int tsr_rpc_client_stream(tsr_rpc_client_t *c, const char *method, const void *req, size_t n,
                          const tsr_rpc_call_opts_t *opts, tsr_rpc_stream_cb cb, void *ud,
                          tsr_rpc_reply_t *reply, tsr_error_t *err) {
    reply_reset(reply);
    rpc_cc_t cc;
    tsr_error_t oerr;
    int rc = cc_open(c, &cc, method, opts, NULL, &oerr);
    if (rc) {
        reply->status = TSR_GRPC_INVALID_ARGUMENT;
        snprintf(reply->message, sizeof(reply->message), "%.500s", oerr.msg);
        if (err) *err = oerr;
        return rc;
    }
    grpc_op ops[6];
    size_t k = cc_send_ops(&cc, ops, req, n, opts);
    int started = grpc_call_start_batch(cc.call, ops, k, (void *)1, NULL) == GRPC_CALL_OK;
    if (started && cc_pluck(&cc, (void *)1)) {
        /* Read until the end of the stream (NULL message) or a failed read. */
        for (;;) {
            grpc_byte_buffer *bb = NULL;
            grpc_op op;
            memset(&op, 0, sizeof(op));
            op.op = GRPC_OP_RECV_MESSAGE;
            op.data.recv_message.recv_message = &bb;
            if (grpc_call_start_batch(cc.call, &op, 1, (void *)2, NULL) != GRPC_CALL_OK) break;
            int ok = cc_pluck(&cc, (void *)2);
            if (!ok || !bb) {
                if (bb) grpc_byte_buffer_destroy(bb);
                break;
            }
            tsr__rpc_bb_read(bb, &reply->body);
            if (cb && cb(ud, reply->body.data, reply->body.len) != 0) {
                grpc_call_cancel(cc.call, NULL);
                break;
            }
        }
    }
    tsr_buf_clear(&reply->body);
    if (started) {
        grpc_op st;
        cc_status_op(&cc, &st);
        if (grpc_call_start_batch(cc.call, &st, 1, (void *)3, NULL) == GRPC_CALL_OK)
            cc_pluck(&cc, (void *)3);
        else
            cc.status = GRPC_STATUS_INTERNAL;
    } else {
        cc.status = GRPC_STATUS_INTERNAL;
        grpc_slice_unref(cc.details);
        cc.details = grpc_slice_from_static_string("grpc_call_start_batch refused the call");
    }
    return cc_close(&cc, method, reply, err);
}

/* ------------------------------------------------------------------------------------------
 * async unary calls */

struct rpc_acall {
    rpc_cc_t cc;
    grpc_byte_buffer *resp_bb;
    tsr_rpc_reply_t reply;
    tsr_rpc_done_cb cb;
    void *ud;
    char method[256];
    rpc_acall_t *prev, *next;       /* inflight list, or next = free list link */
};

static void async_unlink(tsr_rpc_client_t *c, rpc_acall_t *a) {
    if (a->prev) a->prev->next = a->next;
    else c->inflight = a->next;
    if (a->next) a->next->prev = a->prev;
    a->prev = a->next = NULL;
}

static void *async_main(void *arg) {
    tsr_rpc_client_t *c = arg;
    prctl(PR_SET_NAME, "tsr-rpc-async", 0, 0, 0); /* top -H, perf */
    for (;;) {
        grpc_event ev = grpc_completion_queue_next(c->acq, gpr_inf_future(GPR_CLOCK_MONOTONIC),
                                                   NULL);
        if (ev.type == GRPC_QUEUE_SHUTDOWN) break;
        if (ev.type != GRPC_OP_COMPLETE) continue;
        rpc_acall_t *a = ev.tag;
        pthread_mutex_lock(&c->mu);
        async_unlink(c, a);         /* before the call is unref'd: free may be cancelling */
        pthread_mutex_unlock(&c->mu);
        tsr__rpc_bb_read(a->resp_bb, &a->reply.body);
        a->resp_bb = NULL;
        tsr_error_t err;
        tsr_error_clear(&err);
        int rc = cc_close(&a->cc, a->method, &a->reply, &err);
        a->cb(a->ud, rc, &a->reply, rc ? err.msg : "");
        pthread_mutex_lock(&c->mu);
        a->next = c->afree;
        c->afree = a;
        c->n_async--;
        if (c->n_async == 0) pthread_cond_broadcast(&c->cv);
        pthread_mutex_unlock(&c->mu);
    }
    return NULL;
}

int tsr_rpc_client_call_async(tsr_rpc_client_t *c, const char *method, const void *req, size_t n,
                              const tsr_rpc_call_opts_t *opts, tsr_rpc_done_cb cb, void *ud,
                              tsr_error_t *err) {
    if (!cb) return tsr_error_set(err, TSR_EINVAL, "%s: async call without a callback", method);
    pthread_mutex_lock(&c->mu);
    if (c->closing) {
        pthread_mutex_unlock(&c->mu);
        return tsr_error_set(err, TSR_EUNAVAIL, "%s: client is shutting down", method);
    }
    if (!c->acq) {
        c->acq = grpc_completion_queue_create_for_next(NULL);
        if (pthread_create(&c->athread, NULL, async_main, c) != 0) {
            grpc_completion_queue_shutdown(c->acq);
            grpc_completion_queue_destroy(c->acq);
            c->acq = NULL;
            pthread_mutex_unlock(&c->mu);
            return tsr_error_set(err, TSR_ENOMEM, "%s: cannot start the client thread", method);
        }
    }
    rpc_acall_t *a = c->afree;
    if (a) c->afree = a->next;
    pthread_mutex_unlock(&c->mu);
    if (!a) {
        a = tsr_calloc(1, sizeof(*a));
        tsr_rpc_reply_init(&a->reply);
    }
    a->prev = a->next = NULL;
    reply_reset(&a->reply);
    int rc = cc_open(c, &a->cc, method, opts, c->acq, err);
    if (rc) goto fail;
    snprintf(a->method, sizeof(a->method), "%s", method);
    a->cb = cb;
    a->ud = ud;
    a->resp_bb = NULL;
    grpc_op ops[6];
    size_t k = cc_send_ops(&a->cc, ops, req, n, opts);
    ops[k].op = GRPC_OP_RECV_MESSAGE;
    ops[k].data.recv_message.recv_message = &a->resp_bb;
    k++;
    cc_status_op(&a->cc, &ops[k++]);
    pthread_mutex_lock(&c->mu);
    a->next = c->inflight;
    if (a->next) a->next->prev = a;
    c->inflight = a;
    c->n_async++;
    pthread_mutex_unlock(&c->mu);
    if (grpc_call_start_batch(a->cc.call, ops, k, a, NULL) != GRPC_CALL_OK) {
        pthread_mutex_lock(&c->mu);
        async_unlink(c, a);
        c->n_async--;
        if (c->n_async == 0) pthread_cond_broadcast(&c->cv);
        pthread_mutex_unlock(&c->mu);
        tsr_rpc_reply_t scratch;
        tsr_rpc_reply_init(&scratch);
        cc_close(&a->cc, method, &scratch, NULL);
        tsr_rpc_reply_free(&scratch);
        rc = tsr_error_set(err, TSR_EINTERNAL, "%s: grpc_call_start_batch refused the call",
                           method);
        goto fail;
    }
    return TSR_OK;
fail:
    pthread_mutex_lock(&c->mu);
    a->next = c->afree;
    c->afree = a;
    pthread_mutex_unlock(&c->mu);
    return rc;
}

static void async_shutdown(tsr_rpc_client_t *c) {
    pthread_mutex_lock(&c->mu);
    c->closing = 1;
    for (rpc_acall_t *a = c->inflight; a; a = a->next) grpc_call_cancel(a->cc.call, NULL);
    while (c->n_async > 0) pthread_cond_wait(&c->cv, &c->mu);
    pthread_mutex_unlock(&c->mu);
    if (c->acq) {
        grpc_completion_queue_shutdown(c->acq);
        pthread_join(c->athread, NULL);
        grpc_completion_queue_destroy(c->acq);
        c->acq = NULL;
    }
    while (c->afree) {
        rpc_acall_t *a = c->afree;
        c->afree = a->next;
        tsr_rpc_reply_free(&a->reply);
        free(a);
    }
}

/* ------------------------------------------------------------------------------------------
 * fan-out on a server's completion queue (tsr_rpc_call_fanout)
 *
 * A record per fan-out, pooled on the server (its sub-call array kept at the largest n seen).
 * `pending` counts calls without their status; the event that takes it to 0 completes the
 * fan-out. fo->mu is held while the calls are being started, and by server free while it
 * cancels them; the completing thread passes through it, so it never closes calls the starter
 * (or a cancel) is still touching. A record is on the server's fo_inflight list from before
 * its first call is created until its calls are about to be closed. */

typedef struct rpc_fo_call {
    rpc_cc_t cc;
    grpc_byte_buffer *resp_bb;
    tsr_rpc_multi_t *m;
    rpc_fanout_t *fo;
    int started;                    /* cc_open succeeded (cc.call exists) */
    int ok;                         /* the batch's success flag */
} rpc_fo_call_t;

struct rpc_fanout {
    tsr_rpc_server_t *srv;
    pthread_mutex_t mu;
    rpc_fo_call_t *calls;
    size_t n, cap;
    atomic_size_t pending;
    int cancelled;                  /* under mu: server free cancelled the calls */
    char method[256];
    void (*done)(void *ud);
    void *ud;
    rpc_fanout_t *prev, *next;      /* fo_inflight (doubly linked), or fo_free (next) */
};

_Static_assert(_Alignof(rpc_fo_call_t) >= 8, "fan-out call tags need 3 free low bits");

static void fo_unlink(tsr_rpc_server_t *s, rpc_fanout_t *fo) {
    if (fo->prev) fo->prev->next = fo->next;
    else s->fo_inflight = fo->next;
    if (fo->next) fo->next->prev = fo->prev;
    fo->prev = fo->next = NULL;
}

/* Every call has its status: fill the replies, release the calls, recycle the record, run done. */
static void fo_complete(rpc_fanout_t *fo) {
    tsr_rpc_server_t *s = fo->srv;
    pthread_mutex_lock(&fo->mu); /* the starter (or a cancel) has left */
    pthread_mutex_unlock(&fo->mu);
    pthread_mutex_lock(&s->mu);
    fo_unlink(s, fo);
    pthread_mutex_unlock(&s->mu);
    for (size_t i = 0; i < fo->n; i++) {
        rpc_fo_call_t *fc = &fo->calls[i];
        if (!fc->started) continue; /* cc_open failed: rc and err are set */
        if (!fc->ok && fc->cc.status == GRPC_STATUS_OK) {
            fc->cc.status = GRPC_STATUS_INTERNAL;
            grpc_slice_unref(fc->cc.details);
            fc->cc.details = grpc_slice_from_static_string("the call's batch failed");
        }
        tsr__rpc_bb_read(fc->resp_bb, &fc->m->reply->body);
        fc->resp_bb = NULL;
        fc->m->rc = cc_close(&fc->cc, fo->method, fc->m->reply, &fc->m->err);
        fc->m = NULL;
    }
    void (*done)(void *) = fo->done;
    void *ud = fo->ud;
    pthread_mutex_lock(&s->mu);
    fo->next = s->fo_free;
    s->fo_free = fo;
    pthread_mutex_unlock(&s->mu);
    done(ud);
    pthread_mutex_lock(&s->mu);
    s->fo_live--;
    if (s->fo_live == 0) pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

void tsr__rpc_fanout_event(void *tag, int ok) {
    rpc_fo_call_t *fc = tag;
    rpc_fanout_t *fo = fc->fo;
    fc->ok = ok;
    if (atomic_fetch_sub_explicit(&fo->pending, 1, memory_order_acq_rel) == 1) fo_complete(fo);
}

int tsr_rpc_call_fanout(tsr_rpc_call_t *call, const char *method, tsr_rpc_multi_t *calls, size_t n,
                        const tsr_rpc_call_opts_t *opts, void (*done)(void *ud), void *ud) {
    tsr_rpc_server_t *s = call->srv;
    if (!done || (n && !calls)) return TSR_EINVAL;
    pthread_mutex_lock(&s->mu);
    rpc_fanout_t *fo = s->fo_free;
    if (fo) s->fo_free = fo->next;
    pthread_mutex_unlock(&s->mu);
    if (!fo) {
        fo = tsr_calloc(1, sizeof *fo);
        fo->srv = s;
        pthread_mutex_init(&fo->mu, NULL);
    }
    if (n > fo->cap) {
        fo->calls = tsr_realloc(fo->calls, n * sizeof *fo->calls);
        fo->cap = n;
    }
    fo->n = n;
    for (size_t i = 0; i < n; i++) fo->calls[i].started = 0;
    fo->cancelled = 0;
    fo->done = done;
    fo->ud = ud;
    snprintf(fo->method, sizeof fo->method, "%s", method ? method : "(null)");
    atomic_store(&fo->pending, n);
    /* registered (cancellable) in the same section that checks for shutdown: server free sets
     * `shutting` before it walks fo_inflight */
    pthread_mutex_lock(&s->mu);
    if (atomic_load(&s->shutting)) {
        fo->next = s->fo_free;
        s->fo_free = fo;
        pthread_mutex_unlock(&s->mu);
        return TSR_EUNAVAIL;
    }
    s->fo_live++;
    fo->prev = NULL;
    fo->next = s->fo_inflight;
    if (fo->next) fo->next->prev = fo;
    s->fo_inflight = fo;
    pthread_mutex_unlock(&s->mu);
    pthread_mutex_lock(&fo->mu); /* lock order: s->mu before fo->mu, never the reverse */
    int last = n == 0; /* this thread completes the fan-out (nothing left in flight) */
    for (size_t i = 0; i < n; i++) {
        rpc_fo_call_t *fc = &fo->calls[i];
        tsr_rpc_multi_t *m = &calls[i];
        fc->fo = fo;
        fc->m = m;
        fc->resp_bb = NULL;
        fc->ok = 0;
        reply_reset(m->reply);
        tsr_error_clear(&m->err);
        m->rc = cc_open(m->client, &fc->cc, method, opts, s->cq, &m->err);
        fc->started = m->rc == TSR_OK;
        if (!fc->started) {
            m->reply->status = TSR_GRPC_INVALID_ARGUMENT;
            snprintf(m->reply->message, sizeof m->reply->message, "%.500s", m->err.msg);
        } else if (cc_start_unary(&fc->cc, m->req, m->n, opts, &fc->resp_bb,
                                  (void *)((uintptr_t)fc | (uintptr_t)RPC_EV_FANOUT))) {
            continue; /* its completion will come to the CQ */
        } else {
            fc->ok = 1; /* refused: cc_close reports the INTERNAL status set by cc_start_unary */
        }
        if (atomic_fetch_sub_explicit(&fo->pending, 1, memory_order_acq_rel) == 1) last = 1;
    }
    if (fo->cancelled) /* server free came by while the calls were being started */
        for (size_t i = 0; i < n; i++)
            if (fo->calls[i].started) grpc_call_cancel(fo->calls[i].cc.call, NULL);
    pthread_mutex_unlock(&fo->mu);
    if (last) fo_complete(fo);
    return TSR_OK;
}

void tsr__rpc_fanout_cancel_all(tsr_rpc_server_t *s) {
    pthread_mutex_lock(&s->mu);
    for (rpc_fanout_t *fo = s->fo_inflight; fo; fo = fo->next) {
        pthread_mutex_lock(&fo->mu);
        fo->cancelled = 1;
        for (size_t i = 0; i < fo->n; i++)
            if (fo->calls[i].started) grpc_call_cancel(fo->calls[i].cc.call, NULL);
        pthread_mutex_unlock(&fo->mu);
    }
    pthread_mutex_unlock(&s->mu);
}

void tsr__rpc_fanout_pool_free(tsr_rpc_server_t *s) {
    while (s->fo_free) {
        rpc_fanout_t *fo = s->fo_free;
        s->fo_free = fo->next;
        pthread_mutex_destroy(&fo->mu);
        free(fo->calls);
        free(fo);
    }
}
