/*
 * serving.h — the fetch side of a server (SPEC §6 "Fetch"): compiled plans per Join and
 * GroupBy name, and the fetch handlers that answer gRPC FeatureService calls and the HTTP/JSON
 * endpoints from them. Where tile values come from is the caller's: a tsr_tile_read_fn (one
 * read at a time; the embedded default reads its local tile store), or a tsr_tile_read_many_fn
 * (every read of a request in one call; the cluster fetcher sends one ReadPartition per owner).
 *
 * Design:
 *   - An item is one applied config compiled for serving (its tsr_config_t, and the Join or
 *     GroupBy plan). Items are immutable; apply installs a new item under the name and
 *     requests already running finish on the old one (items are reference-counted), so apply
 *     never blocks fetches and a fetch never sees half an update.
 *   - Serving contexts (VMs and scratch) are pooled per item: a fetch borrows one, so steady
 *     state allocates nothing outside the request's arena.
 *   - Request errors: unknown name -> TSR_ENOTFOUND; a Join name asked as a GroupBy (or the
 *     reverse) -> TSR_ENOTFOUND saying what it is; malformed rows -> per-row Failure.
 *   - Row results: Success with every feature (null ones as null) and a
 *     "<part>_exception" string for each Join part that failed (Chronon's convention); Failure
 *     with an error when the row as a whole cannot be served (GroupBy: a missing key column).
 *   - Batched reads (tsr_serving_new_many): a request runs twice over the same plans. Pass 1
 *     reads through a collecting read fn (records every (gb, key, q) in order and answers
 *     nulls; its rows are thrown away); then one call to `many` answers every read of every
 *     row; pass 2 reads through a replaying fn that hands the answers back in order. Plans read
 *     deterministically (which reads a row makes depends only on the request's keys and q),
 *     so pass 2 makes the same reads; the replay still checks gb, key and q of each one and
 *     fails the read as an internal error on a mismatch. The two passes are also callable
 *     apart (tsr_serving_fetch_begin / _finish), with the request's state in its arena, so the
 *     reads can be answered asynchronously in between. A failed read becomes its Join part's
 *     exception (GroupBy fetch: the row's Failure), as with single reads. Only pass 2 counts
 *     in the stats. The helper thread is not used in this mode.
 */
#ifndef TSR_SERVING_H
#define TSR_SERVING_H

#include <stddef.h>
#include <stdint.h>

#include "tsr/config.h"
#include "tsr/error.h"
#include "tsr/http.h"
#include "tsr/mem.h"
#include "tsr/online.h"

typedef struct tsr_serving tsr_serving_t;
typedef struct tsr_serving_item tsr_serving_item_t;

/* One read of a batch (see tsr_tile_read_many_fn). */
typedef struct tsr_tile_read_req {
    const char *gb;                 /* GroupBy name (borrowed from the serving plan) */
    const void *key;                /* encoded key: the value.h encoding of the GroupBy's key
                                       values (as tsr_tile_read_fn gets it); in the arena */
    size_t klen;
    int64_t q;
    tsr_value_t *out;               /* the GroupBy's outputs, filled by the callee: nout values
                                       (nulls on entry; allocate strings etc. in the arena) */
    size_t nout;                    /* the GroupBy's base features (what one read returns) */
    int status;                     /* 0, or a negative TSR code ... */
    const char *error;              /* ... with a message (arena; NULL: tsr_strerror(status)) */
} tsr_tile_read_req_t;

/* Answers reqs[0 .. n), every read of one request (all its rows), in one call. Each read's
 * failure is its own (status + error). Returning a negative code (err set) fails every read
 * still without a status with that error. timeout_ms: the request's remaining deadline
 * (>= INT64_MAX / 2: none). arena is the request's, used by this thread only. */
typedef int (*tsr_tile_read_many_fn)(void *ud, tsr_tile_read_req_t *reqs, size_t n,
                                     int64_t timeout_ms, tsr_arena_t *arena, tsr_error_t *err);

tsr_serving_t *tsr_serving_new(tsr_tile_read_fn read, void *read_ud);
/* Serving whose fetches read in batches (two passes per request, see the design above). */
tsr_serving_t *tsr_serving_new_many(tsr_tile_read_many_fn many, void *ud);
/* With on = 1, starts a helper thread: a gRPC fetch of 16 rows or more hands its second half
 * to it when it is free, so a large request uses two cores (100-entity requests: about half
 * the latency on an idle 2-core machine). Returns 0 or TSR_EINTERNAL. */
int tsr_serving_set_helper(tsr_serving_t *s, int on);
/* Frees every item (no fetch may be running). */
void tsr_serving_free(tsr_serving_t *s);

/* Compiles conf (ownership taken, also on failure) for serving against the warehouse's table
 * schemas (read up to day_hi). StagingQuery configs compile to an item that serves nothing. */
int tsr_serving_prepare(tsr_config_t *conf, const char *warehouse, int64_t day_hi,
                        tsr_serving_item_t **out, tsr_error_t *err);
/* Frees an item never installed. */
void tsr_serving_item_discard(tsr_serving_item_t *it);
/* Installs it under its name, replacing (and releasing) the previous item of that name. */
void tsr_serving_install(tsr_serving_t *s, tsr_serving_item_t *it);
/* Uninstalls name; 0 or TSR_ENOTFOUND. */
int tsr_serving_remove(tsr_serving_t *s, const char *name);
size_t tsr_serving_count(tsr_serving_t *s);

/* Handles a FeatureService call: req is a serialized tessera.v1.FetchRequest; the serialized
 * FetchResponse is appended to resp. join = 1 for FetchJoin, 0 for FetchGroupBy. arena is
 * per-call scratch (reset by the caller). timeout_ms: the caller's remaining deadline
 * (TSR_RPC_NO_DEADLINE-like values >= INT64_MAX / 2 mean none), checked between rows. Returns
 * 0, or TSR_EINVAL (undecodable request) / TSR_ENOTFOUND / TSR_ETIMEOUT with err set. */
int tsr_serving_fetch_pb(tsr_serving_t *s, int join, const uint8_t *req, size_t n,
                         int64_t timeout_ms, tsr_buf_t *resp, tsr_arena_t *arena,
                         tsr_error_t *err);

/* The same fetch in two halves, for a batched serving (tsr_serving_new_many) whose caller
 * answers the reads itself, asynchronously (the cluster fetcher: pass 1 on the thread that
 * received the call, the ReadPartitions out without blocking a thread, pass 2 on the thread
 * that got the last answer). tsr_serving_fetch_pb of such a serving is exactly begin, one call
 * to its many fn over the reads, finish.
 *   begin: decodes req and runs pass 1; 0 with *out set, or an error as tsr_serving_fetch_pb
 *     returns it (*out NULL, nothing to release). The request's state lives in arena, which the
 *     caller keeps (and does not reset) until finish or abandon; it may move between threads.
 *   tsr_serving_req_reads: the collected reads (n may be 0), in arena; the caller answers each
 *     (status, error, out) as a many fn does, with allocations in the same arena.
 *   tsr_serving_req_timeout: ms left of the request's deadline (0 when passed; INT64_MAX: none).
 *   finish: pass 2 over the answered reads; appends the serialized FetchResponse to resp and
 *     returns 0, or TSR_ETIMEOUT with err set; releases the request either way.
 *   abandon: releases a begun request without finishing it (NULL or finished: no-op).
 * TSR_EINVAL from begin on a serving made with tsr_serving_new. */
typedef struct tsr_serving_req tsr_serving_req_t;
int tsr_serving_fetch_begin(tsr_serving_t *s, int join, const uint8_t *req, size_t n,
                            int64_t timeout_ms, tsr_arena_t *arena, tsr_serving_req_t **out,
                            tsr_error_t *err);
tsr_tile_read_req_t *tsr_serving_req_reads(tsr_serving_req_t *r, size_t *n);
int64_t tsr_serving_req_timeout(const tsr_serving_req_t *r);
int tsr_serving_fetch_finish(tsr_serving_req_t *r, tsr_buf_t *resp, tsr_error_t *err);
void tsr_serving_fetch_abandon(tsr_serving_req_t *r);

/* The number of rows of a serialized FetchRequest, counted from its top-level fields without
 * decoding them (tsr_pb_count_field; a server decides from it whether a call is small enough to
 * run on its completion-queue thread). A malformed request counts the rows before the first
 * bad field (tsr_serving_fetch_pb rejects it). */
size_t tsr_serving_request_rows(const uint8_t *req, size_t n);

/* The HTTP fetch callback (http.h tsr_http_fetch_fn); ud = the tsr_serving_t. */
int tsr_serving_fetch_http(void *ud, tsr_http_fetch_kind_t kind, const char *name,
                           const tsr_http_fetch_row_t *rows, size_t nrows,
                           tsr_http_fetch_result_t *results, tsr_arena_t *arena,
                           tsr_error_t *err);

/* Counters since start (relaxed): rows served, rows failed, part exceptions. */
typedef struct tsr_serving_stats {
    uint64_t requests, rows, row_failures, part_errors;
} tsr_serving_stats_t;
void tsr_serving_stats(tsr_serving_t *s, tsr_serving_stats_t *out);

#endif
