/*
 * rpc_int.h — what the rpc_*.c files share: the server and call structs, the completion-queue
 * tag encoding and the health hooks. Only rpc_server.c, rpc_client.c, rpc_health.c and
 * rpc_status.c include it (tests may, to check internals).
 *
 * Tags. A tag is a call context pointer (16-byte aligned from malloc) with the event in its low
 * bits (RPC_EV_*), or the address of the server's shutdown sentinel, or (RPC_EV_FANOUT) the
 * address of one client call of a fan-out (tsr_rpc_call_fanout; 8-byte aligned array element)
 * whose completion was delivered on the server's queue.
 */
#ifndef TSR_RPC_INT_H
#define TSR_RPC_INT_H

#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/time.h>
#include <pthread.h>
#include <stdatomic.h>

#include "tsr/rpc.h"

enum {
    RPC_EV_REQUEST = 0, /* a requested call arrived (registered: with its request message) */
    RPC_EV_FINISH = 2,  /* status (and unary response) sent; for a unary call also the close */
    RPC_EV_CLOSE = 3,   /* streaming: recv-close-on-server, the call is over (cancelled set) */
    RPC_EV_SEND = 4,    /* one streamed message sent */
    RPC_EV_FANOUT = 5,  /* a client call of a fan-out has its status (rpc_client.c) */
    RPC_EV_MASK = 7,
};

#define RPC_OUT_MD_MAX 16

typedef struct rpc_method {
    char *path;
    int streaming;
    tsr_rpc_unary_fn unary;
    tsr_rpc_stream_fn stream;
    void *ud;
    void *handle;                   /* grpc_server_register_method's handle */
} rpc_method_t;

struct tsr_rpc_call {
    tsr_rpc_server_t *srv;
    grpc_call *call;                /* NULL while only requested */
    grpc_call_details details;      /* filled for generic (unknown-method) calls only */
    gpr_timespec deadline;
    grpc_metadata_array req_md;
    grpc_byte_buffer *recv_bb;      /* the request message, delivered with the call */
    grpc_byte_buffer *send_bb;      /* the message of the batch in flight, destroyed on its tag */
    int close_cancelled;            /* written by gRPC on RPC_EV_CLOSE */
    atomic_int refs;                /* outstanding tags + the processing reference */
    atomic_int cancelled;
    const rpc_method_t *method;     /* NULL: a generic call, answered UNIMPLEMENTED */
    char path[256];                 /* generic calls: NUL-terminated method path (truncated) */
    tsr_buf_t req;                  /* request bytes, reused */
    tsr_buf_t resp;                 /* unary response bytes, reused */
    grpc_metadata out_md[RPC_OUT_MD_MAX];
    size_t n_out_md;
    int md_sent;                    /* initial metadata went out (streaming first send) */
    int offloaded;                  /* the handler runs (again) on an offload thread */
    void (*resume_fn)(void *);      /* tsr_rpc_call_offload: run this instead of the handler */
    void *resume_ud;
    int finished;
    grpc_slice status_details;
    /* streaming send handshake between the handler thread and the CQ thread */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int send_busy, send_ok;
    struct tsr_rpc_call *next_free;
};

typedef struct rpc_health rpc_health_t;
typedef struct rpc_fanout rpc_fanout_t;

struct tsr_rpc_server {
    grpc_server *server;
    grpc_completion_queue *cq;
    int port;
    int started;
    atomic_int shutting;
    tsr_rpc_server_opts_t opts;
    rpc_method_t *methods;
    size_t n_methods, cap_methods;
    pthread_t *threads;
    int n_threads;
    pthread_mutex_t mu;             /* free list, live count, shutdown_seen */
    pthread_cond_t cv;
    tsr_rpc_call_t *free_list;
    size_t live;                    /* contexts requested or in a call */
    int shutdown_seen;
    atomic_int n_streams;
    atomic_uint_fast64_t st_calls, st_unimpl, st_failed, st_cancelled;
    char shutdown_tag;              /* its address is the shutdown tag */
    /* offload threads: a ring of calls whose handler returned TSR_RPC_OFFLOAD */
    pthread_t *off_threads;
    int n_off;
    pthread_mutex_t off_mu;
    pthread_cond_t off_cv;
    tsr_rpc_call_t **off_q;
    size_t off_head, off_len;
    int off_stop;
    rpc_health_t *health;
    /* fan-outs (tsr_rpc_call_fanout), under mu: in flight (cancelled by free), pooled, and
     * started whose done callback has not returned (free waits for 0) */
    rpc_fanout_t *fo_inflight;
    rpc_fanout_t *fo_free;
    size_t fo_live;
};

/* Releases the health state (server free). */
void tsr__rpc_health_free(rpc_health_t *h);
/* Wakes Watch handlers so they notice shutdown. */
void tsr__rpc_health_close(rpc_health_t *h);

/* A fan-out call's completion dequeued by a server CQ thread (tag without its event bits). */
void tsr__rpc_fanout_event(void *tag, int ok);
/* Server free: cancels every fan-out call in flight (takes s->mu). */
void tsr__rpc_fanout_cancel_all(tsr_rpc_server_t *s);
/* Server free, after every fan-out completed: releases the pooled records. */
void tsr__rpc_fanout_pool_free(tsr_rpc_server_t *s);

/* grpc_init, and once per process first: abseil's mutex deadlock detector off (docs/rpc.md). */
void tsr__rpc_init(void);
/* 1 once tsr__rpc_init found and called abseil's switch (tests). */
int tsr__rpc_absl_tuned(void);

/* Copies a received byte buffer into out (cleared first) and destroys it. */
void tsr__rpc_bb_read(grpc_byte_buffer *bb, tsr_buf_t *out);
/* Checks a metadata key: lowercase [0-9a-z_.-], not starting with "grpc-". */
int tsr__rpc_md_key_ok(const char *key);

#endif
