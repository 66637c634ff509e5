/*
 * fetcher.h — tessera-fetcher (docs/cluster.md "Fetchers"): watches the routing table, serves
 * FeatureService (FetchJoin/FetchGroupBy), the HTTP fetch endpoints, /metrics and /health,
 * and reads tiles from the workers that own them.
 *
 *   coordinators ──WatchRouting (stream)──▶ watcher thread ──▶ routing table (tsr_routing_t)
 *                                                          └─▶ serving items from its configs
 *   FetchJoin ──▶ fetch pool thread ──▶ serving (two passes) ──many──▶ ReadPartition per owner,
 *   HTTP      ──▶ (connection thread) ─┘                          in parallel, answers polled
 *                                                                 by the fetching thread
 *
 * Design:
 *   - Routing client: one address of --coordinator at a time. A follower answers UNAVAILABLE
 *     "not the leader; leader is X" (or metadata tessera-leader): go to X at once. Other
 *     failures: the next address after a bounded backoff (100 ms doubling to 2 s). The stream
 *     is reopened every watch_renew_ms (a stream has no cancel in rpc.h, so that bounds how
 *     long stop waits); each (re)open starts with a full snapshot. Tables of a lower epoch or
 *     older revision are ignored. With the coordinator or etcd down the last table serves.
 *   - Configs: a config whose version changed is compiled (tsr_serving_prepare against
 *     --warehouse) and installed; configs gone from the table are removed. A config that does
 *     not compile is logged and its previous item (if any) keeps serving.
 *   - Reads (tsr_tile_read_many_fn): locate each read (routing.h), group by owner, one
 *     ReadPartition per owner (clients reused per worker address), all in flight at once
 *     (tsr_rpc_client_call_all: the fetching thread polls their completion queue itself, so an
 *     answer costs no thread hop), with the request's remaining deadline. Items answered READ_NOT_OWNER and owners that were
 *     unreachable wait up to retry_wait_ms for a newer table and are retried once; what still
 *     fails is that read's error (its part's exception).
 *   - FeatureService calls run on the completion-queue thread that received them (4 CQ
 *     threads), at most 3 at a time, so one CQ thread is always free to accept calls and
 *     answer health checks; beyond that they are deferred (TSR_RPC_DEFER) to a pool of fetch
 *     threads. Inline saves the hand-off (a thread wake-up) per call. HTTP fetches run on
 *     their connection's thread.
 *   - Health: gRPC "" and HTTP /health report NOT_SERVING until the first routing table.
 */
#ifndef TSR_FETCHER_H
#define TSR_FETCHER_H

#include <stdint.h>
#include <stdio.h>

#include "tsr/error.h"

typedef struct tsr_fetcher tsr_fetcher_t;

typedef struct tsr_fetcher_opts {
    const char *coordinators;       /* "HOST:PORT[,HOST:PORT...]" */
    const char *listen;             /* gRPC "HOST:PORT" (port 0: a free one) */
    int http_port;                  /* 0: a free port; -1: no HTTP (bound on listen's host) */
    const char *warehouse;          /* table schemas for compiling configs */
    const char *fetcher_id;         /* WatchRoutingRequest.fetcher_id; NULL: "fetcher-<pid>" */
    int fetch_threads;              /* offload threads for fetches past rpc_threads - 1; 0: 8 */
    int rpc_threads;                /* gRPC completion-queue threads; fetches of up to 8 rows
                                       start on them, larger ones while at most rpc_threads - 1
                                       are inline, the rest in the pool; 0: 1 */
    int64_t retry_wait_ms;          /* 0: 200 */
    int64_t watch_renew_ms;         /* 0: 3000 */
    int64_t default_timeout_ms;     /* reads of requests without a deadline (HTTP); 0: 10000 */
    int log;                        /* log JSON/text lines through tsr_log */
} tsr_fetcher_opts_t;

/* Starts listening (gRPC, HTTP) and watching. Returns 0, or TSR_EIO (cannot bind) /
 * TSR_EINVAL (bad options) with err set. Caller stops with tsr_fetcher_stop. */
int tsr_fetcher_start(const tsr_fetcher_opts_t *o, tsr_fetcher_t **out, tsr_error_t *err);
int tsr_fetcher_grpc_port(const tsr_fetcher_t *f);
int tsr_fetcher_http_port(const tsr_fetcher_t *f);

/* Waits (bounded by timeout_ms) until the installed table has (epoch, revision) >= the given
 * ones. 1 when it has, 0 on timeout. For tests and readiness. */
int tsr_fetcher_wait_routing(tsr_fetcher_t *f, int64_t epoch, int64_t revision, int64_t timeout_ms);

typedef struct tsr_fetcher_stats {
    int64_t epoch, revision;        /* installed table; -1 none */
    uint64_t tables;                /* tables installed */
    uint64_t read_rpcs;             /* ReadPartition calls sent */
    uint64_t read_retries;          /* reads retried after NOT_OWNER / unreachable owner */
    uint64_t read_errors;           /* reads that failed */
    size_t items;                   /* serving items installed */
} tsr_fetcher_stats_t;
void tsr_fetcher_stats(tsr_fetcher_t *f, tsr_fetcher_stats_t *out);

/* Drains: health NOT_SERVING, HTTP and gRPC finish what they began, the watcher stops (within
 * watch_renew_ms), then frees. NULL is a no-op. */
void tsr_fetcher_stop(tsr_fetcher_t *f);

#endif
