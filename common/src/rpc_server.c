/*
 * rpc_server.c — the gRPC server: method table, completion-queue threads, call state machine,
 * streaming sends, deferred finishes and clean shutdown.
 *
 * DESIGN
 *   One completion queue, N threads blocked in grpc_completion_queue_next (default 1). Every
 *   method of the table is registered with gRPC (grpc_server_register_method, payload read):
 *   its calls arrive through grpc_server_request_registered_call together with their request
 *   message, so a unary call costs the CQ two events — REQUEST (call + message) and FINISH
 *   (response, status and the client's close in one batch) — where a generic call costs four
 *   (request, recv message, finish, close). Each CQ event can be a thread wake-up, and on
 *   this VM a wake-up costs more than the echo itself (docs/rpc.md). Calls to paths not in the
 *   table arrive through generic grpc_server_request_call and get UNIMPLEMENTED.
 *   Each method keeps `pending_calls / 4` (at least 4) requests outstanding, the generic path
 *   2; each accepted call re-arms one for its method from the context free list, so after
 *   warm-up no context is allocated. A call that finds no request outstanding waits in gRPC's
 *   queue for the re-arm.
 *   A unary call learns that its client went away only when it finishes (the close rides on
 *   the FINISH batch); tsr_rpc_call_cancelled still sees its deadline expire. A streaming call
 *   starts RECV_CLOSE at accept, so its handler sees a cancel at once.
 *
 * CALL STATE MACHINE (one tsr_rpc_call_t; events are CQ tags)
 *
 *     REQUESTED --REQUEST ok--> ACCEPTED (message in hand)
 *         |         unknown method: FINISHING with UNIMPLEMENTED
 *         |         unary: handler inline --rc--> FINISHING {SEND_INITIAL_MD, SEND_MESSAGE,
 *         |                   | DEFER: the owner calls            SEND_STATUS, RECV_CLOSE}
 *         |                   |        tsr_rpc_call_finish later
 *         |         stream: {RECV_CLOSE} (+1 ref), handler thread: SEND* (one at a time,
 *         |                 blocking) --> FINISHING {SEND_INITIAL_MD?, SEND_STATUS}
 *         | REQUEST failed (shutdown): release
 *     FINISH and CLOSE tags each drop a reference; at zero the call is unref'd and the context
 *     returns to the free list.
 *
 *   Event → function: REQUEST → on_request, FINISH/SEND/CLOSE → on_done, FANOUT (a client
 *   call started by tsr_rpc_call_fanout on this CQ) → tsr__rpc_fanout_event (rpc_client.c).
 *   A deferred call may also come back through the offload queue (tsr_rpc_call_offload): the
 *   offload thread then runs the given continuation instead of the handler.
 *
 * INVARIANTS
 *   1. refs = outstanding tags on the context + 1 "processing" reference held by whoever will
 *      finish the call (the REQUEST tag's reference turns into it, then into the FINISH tag's).
 *   2. At most one SEND batch in flight per call (tsr_rpc_call_send waits for its tag).
 *   3. `live` counts contexts not on the free list; shutdown waits for it to reach 0, so no
 *      context outlives the server, and the CQ is drained only after that. Likewise
 *      `fo_live` counts fan-outs whose done callback has not returned; shutdown cancels their
 *      client calls and waits for it to reach 0 too.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>

#include "rpc_int.h"

#define TAG(c, ev) ((void *)((uintptr_t)(c) | (uintptr_t)(ev)))

static void call_release(tsr_rpc_call_t *c);
static void call_finish(tsr_rpc_call_t *c, int rc, const char *msg);
static void on_request(tsr_rpc_call_t *c, int ok);
static void run_unary(tsr_rpc_call_t *c);

/* ------------------------------------------------------------------------------------------
 * contexts */

static tsr_rpc_call_t *call_get(tsr_rpc_server_t *s) {
    pthread_mutex_lock(&s->mu);
    tsr_rpc_call_t *c = s->free_list;
    if (c) s->free_list = c->next_free;
    s->live++;
    pthread_mutex_unlock(&s->mu);
    if (!c) {
        c = tsr_calloc(1, sizeof(*c));
        c->srv = s;
        tsr_buf_init(&c->req);
        tsr_buf_init(&c->resp);
        pthread_mutex_init(&c->mu, NULL);
        pthread_cond_init(&c->cv, NULL);
    }
    grpc_call_details_init(&c->details);
    c->deadline = gpr_inf_future(GPR_CLOCK_MONOTONIC);
    grpc_metadata_array_init(&c->req_md);
    c->call = NULL;
    c->recv_bb = NULL;
    c->send_bb = NULL;
    c->close_cancelled = 0;
    atomic_store(&c->refs, 1);
    atomic_store(&c->cancelled, 0);
    c->method = NULL;
    c->path[0] = '\0';
    c->n_out_md = 0;
    c->md_sent = 0;
    c->offloaded = 0;
    c->resume_fn = NULL;
    c->resume_ud = NULL;
    c->finished = 0;
    c->status_details = grpc_empty_slice();
    c->send_busy = 0;
    c->send_ok = 0;
    c->next_free = NULL;
    return c;
}

static void call_destroy(tsr_rpc_call_t *c) {
    tsr_buf_free(&c->req);
    tsr_buf_free(&c->resp);
    pthread_mutex_destroy(&c->mu);
    pthread_cond_destroy(&c->cv);
    free(c);
}

/* Drops one reference; the last one returns the context to the free list. */
static void call_release(tsr_rpc_call_t *c) {
    if (atomic_fetch_sub(&c->refs, 1) != 1) return;
    tsr_rpc_server_t *s = c->srv;
    if (c->call) grpc_call_unref(c->call);
    c->call = NULL;
    grpc_call_details_destroy(&c->details);
    grpc_metadata_array_destroy(&c->req_md);
    if (c->recv_bb) grpc_byte_buffer_destroy(c->recv_bb);
    c->recv_bb = NULL;
    for (size_t i = 0; i < c->n_out_md; i++) {
        grpc_slice_unref(c->out_md[i].key);
        grpc_slice_unref(c->out_md[i].value);
    }
    c->n_out_md = 0;
    grpc_slice_unref(c->status_details);
    c->status_details = grpc_empty_slice();
    /* Keep big buffers from pinning memory forever after one huge call. */
    if (c->req.cap > (1u << 20)) { tsr_buf_free(&c->req); tsr_buf_init(&c->req); }
    if (c->resp.cap > (1u << 20)) { tsr_buf_free(&c->resp); tsr_buf_init(&c->resp); }
    pthread_mutex_lock(&s->mu);
    c->next_free = s->free_list;
    s->free_list = c;
    s->live--;
    if (s->live == 0) pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

/* Starts a batch whose tag carries one reference (already counted by the caller). If gRPC
 * refuses the batch the tag never comes, so the reference is dropped here. */
static int call_batch(tsr_rpc_call_t *c, const grpc_op *ops, size_t n, int ev) {
    grpc_call_error e = grpc_call_start_batch(c->call, ops, n, TAG(c, ev), NULL);
    if (e != GRPC_CALL_OK) {
        fprintf(stderr, "{\"level\":\"error\",\"msg\":\"rpc: grpc_call_start_batch failed\","
                        "\"method\":\"%s\",\"event\":%d,\"grpc_call_error\":%d}\n",
                tsr_rpc_call_method(c), ev, (int)e);
        call_release(c);
        return -1;
    }
    return 0;
}

/* Requests one call of method m (registered, its message delivered with it), or with m NULL
 * one call of any unregistered path. */
static void server_arm(tsr_rpc_server_t *s, const rpc_method_t *m) {
    if (atomic_load(&s->shutting)) return;
    tsr_rpc_call_t *c = call_get(s);
    c->method = m;
    grpc_call_error e;
    if (m)
        e = grpc_server_request_registered_call(s->server, m->handle, &c->call, &c->deadline,
                                                &c->req_md, &c->recv_bb, s->cq, s->cq,
                                                TAG(c, RPC_EV_REQUEST));
    else
        e = grpc_server_request_call(s->server, &c->call, &c->details, &c->req_md, s->cq, s->cq,
                                     TAG(c, RPC_EV_REQUEST));
    if (e != GRPC_CALL_OK) call_release(c);
}

/* ------------------------------------------------------------------------------------------
 * events */

static void *stream_main(void *arg) {
    tsr_rpc_call_t *c = arg;
    tsr_rpc_server_t *s = c->srv;
    tsr_error_t err;
    tsr_error_clear(&err);
    int rc = c->method->stream(c->method->ud, c, c->req.data, c->req.len, &err);
    atomic_fetch_sub(&s->n_streams, 1);
    call_finish(c, rc, rc ? err.msg : NULL);
    return NULL;
}

static void on_request(tsr_rpc_call_t *c, int ok) {
    tsr_rpc_server_t *s = c->srv;
    if (!ok) { /* shutdown cancelled the outstanding request */
        call_release(c);
        return;
    }
    const rpc_method_t *m = c->method;
    server_arm(s, m);
    atomic_fetch_add_explicit(&s->st_calls, 1, memory_order_relaxed);
    if (!m) { /* a path that is not in the table */
        size_t n = GRPC_SLICE_LENGTH(c->details.method);
        if (n >= sizeof(c->path)) n = sizeof(c->path) - 1;
        memcpy(c->path, GRPC_SLICE_START_PTR(c->details.method), n);
        c->path[n] = '\0';
        c->deadline = c->details.deadline;
        atomic_fetch_add_explicit(&s->st_unimpl, 1, memory_order_relaxed);
        char msg[320];
        snprintf(msg, sizeof(msg), "unknown method %s", c->path);
        call_finish(c, TSR_EUNSUPPORTED, msg);
        return;
    }
    if (m->streaming) { /* watch for the end of the call while the handler streams */
        grpc_op close_op;
        memset(&close_op, 0, sizeof(close_op));
        close_op.op = GRPC_OP_RECV_CLOSE_ON_SERVER;
        close_op.data.recv_close_on_server.cancelled = &c->close_cancelled;
        atomic_fetch_add(&c->refs, 1);
        call_batch(c, &close_op, 1, RPC_EV_CLOSE);
    }
    if (!c->recv_bb) {
        call_finish(c, TSR_EINVAL, "request without a message");
        return;
    }
    tsr__rpc_bb_read(c->recv_bb, &c->req);
    c->recv_bb = NULL;
    if (m->streaming) {
        if (atomic_fetch_add(&s->n_streams, 1) >= s->opts.max_streams) {
            atomic_fetch_sub(&s->n_streams, 1);
            call_finish(c, TSR_ENOMEM, "too many concurrent streaming calls");
            return;
        }
        pthread_t th;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        int e = pthread_create(&th, &attr, stream_main, c);
        pthread_attr_destroy(&attr);
        if (e != 0) {
            atomic_fetch_sub(&s->n_streams, 1);
            call_finish(c, TSR_ENOMEM, "cannot start a thread for the streaming call");
        }
        return;
    }
    run_unary(c);
}

/* Queues c for an offload thread; 0, or -1 when the queue is full (or stopping). */
static int offload_push(tsr_rpc_server_t *s, tsr_rpc_call_t *c) {
    pthread_mutex_lock(&s->off_mu);
    int ok = s->off_len < (size_t)s->opts.offload_queue && !s->off_stop;
    if (ok) {
        s->off_q[(s->off_head + s->off_len) % (size_t)s->opts.offload_queue] = c;
        s->off_len++;
        pthread_cond_signal(&s->off_cv);
    }
    pthread_mutex_unlock(&s->off_mu);
    return ok ? 0 : -1;
}

/* Runs a unary handler and finishes the call unless the handler deferred or offloaded it. */
static void run_unary(tsr_rpc_call_t *c) {
    const rpc_method_t *m = c->method;
    tsr_error_t err;
    tsr_error_clear(&err);
    tsr_buf_clear(&c->resp);
    int rc = m->unary(m->ud, c, c->req.data, c->req.len, &c->resp, &err);
    if (rc == TSR_RPC_OFFLOAD && !c->offloaded) {
        tsr_rpc_server_t *s = c->srv;
        c->offloaded = 1;
        if (s->n_off == 0) { /* no offload threads: run it here */
            tsr_error_clear(&err);
            tsr_buf_clear(&c->resp);
            rc = m->unary(m->ud, c, c->req.data, c->req.len, &c->resp, &err);
        } else if (offload_push(s, c) == 0) {
            return;
        } else {
            rc = tsr_error_set(&err, TSR_EUNAVAIL,
                               "server overloaded: %d calls queued for offload threads",
                               s->opts.offload_queue);
        }
    }
    if (rc == TSR_RPC_DEFER) return;
    if (rc > 0) rc = TSR_EINTERNAL; /* any other positive code (OFFLOAD twice) is a handler bug */
    call_finish(c, rc, rc ? err.msg : NULL);
}

static void *offload_main(void *arg) {
    tsr_rpc_server_t *s = arg;
    prctl(PR_SET_NAME, "tsr-rpc-off", 0, 0, 0);
    pthread_mutex_lock(&s->off_mu);
    for (;;) {
        while (!s->off_len && !s->off_stop) pthread_cond_wait(&s->off_cv, &s->off_mu);
        if (!s->off_len) break; /* stopping, nothing left */
        tsr_rpc_call_t *c = s->off_q[s->off_head];
        s->off_head = (s->off_head + 1) % (size_t)s->opts.offload_queue;
        s->off_len--;
        pthread_mutex_unlock(&s->off_mu);
        if (c->resume_fn) { /* tsr_rpc_call_offload: a deferred call's continuation */
            void (*fn)(void *) = c->resume_fn;
            c->resume_fn = NULL;
            fn(c->resume_ud);
        } else {
            run_unary(c);
        }
        pthread_mutex_lock(&s->off_mu);
    }
    pthread_mutex_unlock(&s->off_mu);
    return NULL;
}

static void on_done(tsr_rpc_call_t *c, int ev, int ok) {
    tsr_rpc_server_t *s = c->srv;
    if (ev == RPC_EV_CLOSE) {
        if (c->close_cancelled) {
            atomic_store(&c->cancelled, 1);
            atomic_fetch_add_explicit(&s->st_cancelled, 1, memory_order_relaxed);
        }
        pthread_mutex_lock(&c->mu);
        pthread_cond_broadcast(&c->cv);
        pthread_mutex_unlock(&c->mu);
    } else {
        grpc_byte_buffer *bb = c->send_bb;
        c->send_bb = NULL;
        if (bb) grpc_byte_buffer_destroy(bb);
        if (ev == RPC_EV_FINISH && c->close_cancelled) { /* a unary call's close came with it */
            atomic_store(&c->cancelled, 1);
            atomic_fetch_add_explicit(&s->st_cancelled, 1, memory_order_relaxed);
        }
        if (ev == RPC_EV_SEND) {
            pthread_mutex_lock(&c->mu);
            c->send_busy = 0;
            c->send_ok = ok;
            if (!ok) atomic_store(&c->cancelled, 1);
            pthread_cond_broadcast(&c->cv);
            pthread_mutex_unlock(&c->mu);
        }
    }
    call_release(c);
}

static void *cq_main(void *arg) {
    tsr_rpc_server_t *s = arg;
    prctl(PR_SET_NAME, "tsr-rpc-cq", 0, 0, 0); /* top -H, perf */
    for (;;) {
        grpc_event ev = grpc_completion_queue_next(s->cq, gpr_inf_future(GPR_CLOCK_MONOTONIC),
                                                   NULL);
        if (ev.type == GRPC_QUEUE_SHUTDOWN) break;
        if (ev.type != GRPC_OP_COMPLETE) continue;
        if (ev.tag == &s->shutdown_tag) {
            pthread_mutex_lock(&s->mu);
            s->shutdown_seen = 1;
            pthread_cond_broadcast(&s->cv);
            pthread_mutex_unlock(&s->mu);
            continue;
        }
        int kind = (int)((uintptr_t)ev.tag & RPC_EV_MASK);
        if (kind == RPC_EV_FANOUT) { /* a client call of a fan-out (rpc_client.c) */
            tsr__rpc_fanout_event((void *)((uintptr_t)ev.tag & ~(uintptr_t)RPC_EV_MASK), ev.success);
            continue;
        }
        tsr_rpc_call_t *c = (tsr_rpc_call_t *)((uintptr_t)ev.tag & ~(uintptr_t)RPC_EV_MASK);
        switch (kind) {
        case RPC_EV_REQUEST: on_request(c, ev.success); break;
        default: on_done(c, kind, ev.success); break;
        }
    }
    return NULL;
}

/* ------------------------------------------------------------------------------------------
 * finishing */

/* Sends initial metadata (if not yet), the unary response when rc == 0, and the status.
 * Consumes the processing reference (it becomes the FINISH tag's). */
static void call_finish(tsr_rpc_call_t *c, int rc, const char *msg) {
    tsr_rpc_server_t *s = c->srv;
    grpc_op ops[4];
    size_t n = 0;
    memset(ops, 0, sizeof(ops));
    c->finished = 1;
    if (!c->md_sent) {
        ops[n].op = GRPC_OP_SEND_INITIAL_METADATA;
        ops[n].data.send_initial_metadata.count = c->n_out_md;
        ops[n].data.send_initial_metadata.metadata = c->n_out_md ? c->out_md : NULL;
        n++;
        c->md_sent = 1;
    }
    if (rc == TSR_OK && c->method && !c->method->streaming) {
        grpc_slice sl = grpc_slice_from_copied_buffer((const char *)c->resp.data, c->resp.len);
        c->send_bb = grpc_raw_byte_buffer_create(&sl, 1);
        grpc_slice_unref(sl);
        ops[n].op = GRPC_OP_SEND_MESSAGE;
        ops[n].data.send_message.send_message = c->send_bb;
        n++;
    }
    int status = rc == TSR_OK ? TSR_GRPC_OK : tsr_error_grpc_status(rc);
    if (status != TSR_GRPC_OK) {
        atomic_fetch_add_explicit(&s->st_failed, 1, memory_order_relaxed);
        grpc_slice_unref(c->status_details);
        c->status_details = grpc_slice_from_copied_string(msg && *msg ? msg : tsr_strerror(rc));
    }
    ops[n].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
    ops[n].data.send_status_from_server.status = (grpc_status_code)status;
    ops[n].data.send_status_from_server.status_details =
        status != TSR_GRPC_OK ? &c->status_details : NULL;
    n++;
    if (!c->method || !c->method->streaming) { /* a streaming call has its own CLOSE batch */
        ops[n].op = GRPC_OP_RECV_CLOSE_ON_SERVER;
        ops[n].data.recv_close_on_server.cancelled = &c->close_cancelled;
        n++;
    }
    call_batch(c, ops, n, RPC_EV_FINISH);
}

int tsr_rpc_call_offload(tsr_rpc_call_t *c, void (*fn)(void *ud), void *ud) {
    tsr_rpc_server_t *s = c->srv;
    if (!fn || s->n_off == 0) return TSR_EUNAVAIL;
    c->resume_fn = fn;
    c->resume_ud = ud;
    c->offloaded = 1;
    if (offload_push(s, c) == 0) return TSR_OK;
    c->resume_fn = NULL;
    c->resume_ud = NULL;
    return TSR_EUNAVAIL;
}

void tsr_rpc_call_finish(tsr_rpc_call_t *c, int rc, const void *resp, size_t n, const char *msg) {
    tsr_buf_clear(&c->resp);
    if (rc == TSR_OK && n) tsr_buf_append(&c->resp, resp, n);
    if (rc > 0) rc = TSR_EINTERNAL;
    call_finish(c, rc, msg);
}

int tsr_rpc_call_send(tsr_rpc_call_t *c, const void *msg, size_t n) {
    if (atomic_load(&c->cancelled) || atomic_load(&c->srv->shutting)) return TSR_EUNAVAIL;
    grpc_op ops[2];
    size_t k = 0;
    memset(ops, 0, sizeof(ops));
    if (!c->md_sent) {
        ops[k].op = GRPC_OP_SEND_INITIAL_METADATA;
        ops[k].data.send_initial_metadata.count = c->n_out_md;
        ops[k].data.send_initial_metadata.metadata = c->n_out_md ? c->out_md : NULL;
        k++;
        c->md_sent = 1;
    }
    grpc_slice sl = grpc_slice_from_copied_buffer(msg, n);
    c->send_bb = grpc_raw_byte_buffer_create(&sl, 1);
    grpc_slice_unref(sl);
    ops[k].op = GRPC_OP_SEND_MESSAGE;
    ops[k].data.send_message.send_message = c->send_bb;
    k++;
    pthread_mutex_lock(&c->mu);
    c->send_busy = 1;
    pthread_mutex_unlock(&c->mu);
    atomic_fetch_add(&c->refs, 1);
    if (call_batch(c, ops, k, RPC_EV_SEND) != 0) {
        grpc_byte_buffer_destroy(c->send_bb);
        c->send_bb = NULL;
        atomic_store(&c->cancelled, 1);
        return TSR_EUNAVAIL;
    }
    pthread_mutex_lock(&c->mu);
    while (c->send_busy) pthread_cond_wait(&c->cv, &c->mu);
    int ok = c->send_ok;
    pthread_mutex_unlock(&c->mu);
    return ok ? TSR_OK : TSR_EUNAVAIL;
}

/* ------------------------------------------------------------------------------------------
 * call accessors */

const char *tsr_rpc_call_method(const tsr_rpc_call_t *c) {
    return c->method ? c->method->path : c->path;
}

int64_t tsr_rpc_call_remaining_ms(const tsr_rpc_call_t *c) {
    gpr_timespec d = c->deadline;
    if (gpr_time_cmp(d, gpr_inf_future(d.clock_type)) == 0) return TSR_RPC_NO_DEADLINE;
    gpr_timespec now = gpr_now(GPR_CLOCK_MONOTONIC);
    gpr_timespec left = gpr_time_sub(gpr_convert_clock_type(d, GPR_CLOCK_MONOTONIC), now);
    int64_t ms = gpr_time_to_millis(left);
    return ms > 0 ? ms : 0;
}

int tsr_rpc_call_offloaded(const tsr_rpc_call_t *c) { return c->offloaded; }

int tsr_rpc_call_cancelled(const tsr_rpc_call_t *c) {
    return atomic_load(&c->cancelled) || atomic_load(&c->srv->shutting) ||
           tsr_rpc_call_remaining_ms(c) == 0;
}

const char *tsr_rpc_call_metadata(const tsr_rpc_call_t *c, const char *key, size_t *len) {
    size_t kn = strlen(key);
    for (size_t i = 0; i < c->req_md.count; i++) {
        const grpc_metadata *m = &c->req_md.metadata[i];
        if (GRPC_SLICE_LENGTH(m->key) == kn && memcmp(GRPC_SLICE_START_PTR(m->key), key, kn) == 0) {
            if (len) *len = GRPC_SLICE_LENGTH(m->value);
            return (const char *)GRPC_SLICE_START_PTR(m->value);
        }
    }
    return NULL;
}

int tsr_rpc_call_add_metadata(tsr_rpc_call_t *c, const char *key, const void *value, size_t len,
                              tsr_error_t *err) {
    if (!tsr__rpc_md_key_ok(key))
        return tsr_error_set(err, TSR_EINVAL,
                             "metadata key '%s' must be lowercase [0-9a-z_.-] and not grpc-*",
                             key ? key : "(null)");
    if (c->md_sent || c->finished)
        return tsr_error_set(err, TSR_EINVAL, "metadata '%s' added after the response started",
                             key);
    if (c->n_out_md >= RPC_OUT_MD_MAX)
        return tsr_error_set(err, TSR_EINVAL, "more than %d response metadata entries",
                             RPC_OUT_MD_MAX);
    grpc_metadata *m = &c->out_md[c->n_out_md++];
    memset(m, 0, sizeof(*m));
    m->key = grpc_slice_from_copied_string(key);
    m->value = grpc_slice_from_copied_buffer(value, len);
    return TSR_OK;
}

/* ------------------------------------------------------------------------------------------
 * server lifecycle */

tsr_rpc_server_t *tsr_rpc_server_new(const char *addr, const tsr_rpc_server_opts_t *opts,
                                     tsr_error_t *err) {
    tsr_rpc_server_t *s = tsr_calloc(1, sizeof(*s));
    if (opts) s->opts = *opts;
    if (s->opts.cq_threads <= 0) s->opts.cq_threads = 1;
    if (s->opts.pending_calls <= 0) s->opts.pending_calls = 32;
    if (s->opts.pending_calls < 16) s->opts.pending_calls = 16;
    if (s->opts.pending_calls > 64) s->opts.pending_calls = 64;
    if (s->opts.max_streams <= 0) s->opts.max_streams = 64;
    if (s->opts.max_message == 0) s->opts.max_message = 64u << 20;
    if (s->opts.offload_threads < 0) s->opts.offload_threads = 0;
    if (s->opts.offload_queue <= 0) s->opts.offload_queue = 256;
    pthread_mutex_init(&s->mu, NULL);
    pthread_mutex_init(&s->off_mu, NULL);
    pthread_cond_init(&s->off_cv, NULL);
    pthread_cond_init(&s->cv, NULL);
    tsr__rpc_init();

    grpc_arg args[2];
    memset(args, 0, sizeof(args));
    args[0].type = GRPC_ARG_INTEGER;
    args[0].key = (char *)GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH;
    args[0].value.integer = s->opts.max_message > INT32_MAX ? INT32_MAX : (int)s->opts.max_message;
    args[1].type = GRPC_ARG_INTEGER;
    args[1].key = (char *)GRPC_ARG_ALLOW_REUSEPORT;
    args[1].value.integer = 0; /* two servers must never share a port by accident */
    grpc_channel_args cargs = {2, args};
    s->server = grpc_server_create(&cargs, NULL);
    s->cq = grpc_completion_queue_create_for_next(NULL);
    grpc_server_register_completion_queue(s->server, s->cq, NULL);
    grpc_server_credentials *cr = grpc_insecure_server_credentials_create();
    s->port = grpc_server_add_http2_port(s->server, addr, cr);
    grpc_server_credentials_release(cr);
    if (s->port <= 0) {
        tsr_error_set(err, TSR_EIO, "cannot listen on %s (address in use or invalid)", addr);
        tsr_rpc_server_free(s);
        return NULL;
    }
    return s;
}

int tsr_rpc_server_port(const tsr_rpc_server_t *s) { return s->port; }

static int add_method(tsr_rpc_server_t *s, const char *path, int streaming, tsr_rpc_unary_fn u,
                      tsr_rpc_stream_fn st, void *ud, tsr_error_t *err) {
    if (s->started)
        return tsr_error_set(err, TSR_EINVAL, "method %s registered after the server started",
                             path);
    const char *slash = path ? strchr(path + (path[0] == '/'), '/') : NULL;
    if (!path || path[0] != '/' || !slash || slash == path + 1 || !slash[1] ||
        strchr(slash + 1, '/') || strlen(path) >= sizeof(((tsr_rpc_call_t *)0)->path))
        return tsr_error_set(err, TSR_EINVAL,
                             "method path '%s' is not shaped /package.Service/Method",
                             path ? path : "(null)");
    for (size_t i = 0; i < s->n_methods; i++)
        if (strcmp(s->methods[i].path, path) == 0)
            return tsr_error_set(err, TSR_EEXIST, "method %s registered twice", path);
    if (s->n_methods == s->cap_methods) {
        s->cap_methods = s->cap_methods ? 2 * s->cap_methods : 8;
        s->methods = tsr_realloc(s->methods, s->cap_methods * sizeof(*s->methods));
    }
    rpc_method_t *m = &s->methods[s->n_methods++];
    m->path = tsr_strdup(path);
    m->streaming = streaming;
    m->unary = u;
    m->stream = st;
    m->ud = ud;
    return TSR_OK;
}

int tsr_rpc_server_add_unary(tsr_rpc_server_t *s, const char *path, tsr_rpc_unary_fn fn,
                             void *ud, tsr_error_t *err) {
    if (!fn) return tsr_error_set(err, TSR_EINVAL, "method %s: NULL handler", path);
    return add_method(s, path, 0, fn, NULL, ud, err);
}

int tsr_rpc_server_add_stream(tsr_rpc_server_t *s, const char *path, tsr_rpc_stream_fn fn,
                              void *ud, tsr_error_t *err) {
    if (!fn) return tsr_error_set(err, TSR_EINVAL, "method %s: NULL handler", path);
    return add_method(s, path, 1, NULL, fn, ud, err);
}

int tsr_rpc_server_start(tsr_rpc_server_t *s, tsr_error_t *err) {
    if (s->started) return tsr_error_set(err, TSR_EINVAL, "server already started");
    s->started = 1;
    for (size_t i = 0; i < s->n_methods; i++) {
        rpc_method_t *m = &s->methods[i];
        m->handle = grpc_server_register_method(s->server, m->path, NULL,
                                                GRPC_SRM_PAYLOAD_READ_INITIAL_BYTE_BUFFER, 0);
        if (!m->handle) return tsr_error_set(err, TSR_EINVAL, "gRPC refused method %s", m->path);
    }
    grpc_server_start(s->server);
    int per_method = s->opts.pending_calls / 4 > 4 ? s->opts.pending_calls / 4 : 4;
    for (size_t i = 0; i < s->n_methods; i++)
        for (int k = 0; k < per_method; k++) server_arm(s, &s->methods[i]);
    for (int k = 0; k < 2; k++) server_arm(s, NULL);
    if (s->opts.offload_threads > 0) {
        s->off_q = tsr_calloc((size_t)s->opts.offload_queue, sizeof *s->off_q);
        s->off_threads = tsr_calloc((size_t)s->opts.offload_threads, sizeof(pthread_t));
        for (int i = 0; i < s->opts.offload_threads; i++)
            if (pthread_create(&s->off_threads[s->n_off], NULL, offload_main, s) == 0) s->n_off++;
    }
    s->threads = tsr_calloc((size_t)s->opts.cq_threads, sizeof(pthread_t));
    for (int i = 0; i < s->opts.cq_threads; i++) {
        if (pthread_create(&s->threads[i], NULL, cq_main, s) != 0) {
            tsr_error_set(err, TSR_ENOMEM, "cannot start completion-queue thread %d", i);
            break;
        }
        s->n_threads++;
    }
    if (s->n_threads == 0) return TSR_ENOMEM;
    return TSR_OK;
}

void tsr_rpc_server_stats(const tsr_rpc_server_t *s, tsr_rpc_server_stats_t *out) {
    tsr_rpc_server_t *m = (tsr_rpc_server_t *)s;
    out->calls = atomic_load_explicit(&m->st_calls, memory_order_relaxed);
    out->unimplemented = atomic_load_explicit(&m->st_unimpl, memory_order_relaxed);
    out->failed = atomic_load_explicit(&m->st_failed, memory_order_relaxed);
    out->cancelled = atomic_load_explicit(&m->st_cancelled, memory_order_relaxed);
}

/* The recipe that passed ASan under load (PLATFORM-NOTES): stop re-arming, shutdown_and_notify
 * + cancel_all_calls, wait for the tag (and here also for every call context to come home),
 * destroy the server, shut down and drain the CQ, destroy it, grpc_shutdown. */
void tsr_rpc_server_free(tsr_rpc_server_t *s) {
    if (!s) return;
    atomic_store(&s->shutting, 1);
    if (s->health) tsr__rpc_health_close(s->health);
    if (s->n_threads > 0) {
        grpc_server_shutdown_and_notify(s->server, s->cq, &s->shutdown_tag);
        grpc_server_cancel_all_calls(s->server);
        /* client calls of fan-outs complete on this CQ: cancel them and wait for their done
         * callbacks (which finish their deferred server calls) before the CQ goes */
        tsr__rpc_fanout_cancel_all(s);
        pthread_mutex_lock(&s->mu);
        while (!s->shutdown_seen || s->live > 0 || s->fo_live > 0)
            pthread_cond_wait(&s->cv, &s->mu);
        pthread_mutex_unlock(&s->mu);
    } else if (s->server) {
        /* never started (or no thread): drain the notification here */
        grpc_server_shutdown_and_notify(s->server, s->cq, &s->shutdown_tag);
        grpc_server_cancel_all_calls(s->server);
        for (;;) {
            grpc_event ev = grpc_completion_queue_next(
                s->cq, gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
                                    gpr_time_from_seconds(5, GPR_TIMESPAN)), NULL);
            if (ev.type != GRPC_OP_COMPLETE) break;
            if (ev.tag == &s->shutdown_tag) break;
            tsr_rpc_call_t *c = (tsr_rpc_call_t *)((uintptr_t)ev.tag & ~(uintptr_t)RPC_EV_MASK);
            call_release(c);
        }
    }
    /* every call is finished (live == 0), so the offload queue is empty */
    pthread_mutex_lock(&s->off_mu);
    s->off_stop = 1;
    pthread_cond_broadcast(&s->off_cv);
    pthread_mutex_unlock(&s->off_mu);
    for (int i = 0; i < s->n_off; i++) pthread_join(s->off_threads[i], NULL);
    free(s->off_threads);
    free(s->off_q);
    pthread_mutex_destroy(&s->off_mu);
    pthread_cond_destroy(&s->off_cv);
    if (s->server) grpc_server_destroy(s->server);
    if (s->cq) {
        grpc_completion_queue_shutdown(s->cq);
        if (s->n_threads > 0) {
            for (int i = 0; i < s->n_threads; i++) pthread_join(s->threads[i], NULL);
        } else {
            while (grpc_completion_queue_next(s->cq, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL)
                       .type != GRPC_QUEUE_SHUTDOWN) {
            }
        }
        grpc_completion_queue_destroy(s->cq);
    }
    tsr__rpc_fanout_pool_free(s);
    while (s->free_list) {
        tsr_rpc_call_t *c = s->free_list;
        s->free_list = c->next_free;
        call_destroy(c);
    }
    for (size_t i = 0; i < s->n_methods; i++) free(s->methods[i].path);
    free(s->methods);
    free(s->threads);
    if (s->health) tsr__rpc_health_free(s->health);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    free(s);
    grpc_shutdown();
}
