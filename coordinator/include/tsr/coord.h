/*
 * coord.h — the cluster coordinator's core (docs/cluster.md): leader election and fencing,
 * the config registry, worker membership, partition assignment, upload jobs and the snapshots
 * workers and fetchers watch — over a tsr_kv_t (etcd or the fake) and an injectable clock, so
 * that every rule here is unit-tested in milliseconds (tests/unit/test_coord.c). The gRPC
 * handlers (coord_rpc.c) are thin wrappers over these calls.
 *
 * Design:
 *   - State lives in etcd under a prefix (default "/tessera/"); the replica keeps a cache that
 *     one function, tsr_coord_tick(), brings up to date: renew its own lease, campaign or check
 *     leadership, re-read configs/ and workers/, recompute and store assignments, retry or fail
 *     job shards, finish uploads. The background thread (tsr_coord_start) runs it every
 *     250 ms and at once when an etcd watch (leader key, workers/) fires or a call wakes it;
 *     a quiet tick (nothing woke it) re-reads the leader key, configs/ and workers/ only if
 *     the last read is 1 s old — the watches bring changes — and otherwise does only the
 *     leader's local duties (silent workers, assignment, jobs). Tests call it directly, and a
 *     direct call always reads. A worker's KeepAlive (every TTL/5) renews its etcd lease only
 *     when the last renewal is TTL/3 old. Idle etcd traffic of two coordinators and three
 *     workers: ~8 requests/s, from ~22 (etcd's CPU 6.2 % -> 3.4 % of a core).
 *   - Roles:
 *
 *         FOLLOWER --txn(leader absent -> put me, my lease) ok--> LEADER (epoch = that revision)
 *            ^                                                      |
 *            +-- lease lost / leader key changed / fenced write refused / no contact > TTL --+
 *
 *     Every leader write is a txn(cmp leader.mod_revision == epoch): a deposed leader's write
 *     is refused and it steps down. A follower answers every call with TSR_EUNAVAIL
 *     "not the leader; leader is HOST:PORT" (tsr_coord_leader_addr gives the address).
 *   - Assignment: tsr_assign (assign.h) over the live workers with the stored owners as
 *     history, so a new leader that sees the same members recomputes the same owners and
 *     writes nothing: assignments stay across failover. assign/<gb> is written only when it
 *     changes.
 *   - Partition counts: a GroupBy streamed from a topic has the topic's partition count (the
 *     injected lookup, retried every second while it fails: the GroupBy stays unassigned);
 *     others have default_partitions.
 *   - Upload jobs: one shard per (GroupBy, current owner) with that owner's partitions, handed
 *     out in Assignment.shards; a shard whose worker fails it or loses its lease goes to the
 *     next live worker, at most 3 attempts. When every shard of a GroupBy is done the leader
 *     commits uploads/<gb>; the job's callback runs when every owner reports (KeepAlive) that
 *     it loaded that batch, or with an error (a shard failed 3 times, the deadline passed,
 *     leadership was lost). Jobs are kept in memory and mirrored to jobs/<id>, which holds all
 *     a new leader needs to resume them (a backfill's config text too).
 *   - Failover: a new leader resumes every unfinished job record as if the first leader had
 *     continued: shards already reported done stay done (their keys/rows count), the others
 *     are re-issued with the next attempt number at the new epoch (a re-issue is not a failure:
 *     it does not count against the 3 attempts), GroupBys are committed when all their shards
 *     are done. A report stating an older epoch than the leader's, or naming an attempt that is
 *     not current, is ignored. An attempt is handed out only once recorded in etcd (so a new
 *     leader never re-issues a number the old one already handed out). The callback of the old
 *     leader's call runs with TSR_EUNAVAIL ("job X continues under the next leader"); clients
 *     follow the job with tsr_coord_job (AdminService.GetJob), or wait on it again by starting
 *     it with the same client-chosen id. Finished records stay an hour (for GetJob); a new
 *     leader deletes older ones.
 *   - Worker reports (KeepAlive partition states) are kept in memory and in status/<id>
 *     (written when they change), so a new leader starts with them.
 *   - One mutex guards the cache; etcd calls are made under it (each is bounded: 5 s), so calls
 *     are serialised. Snapshots carry a revision that grows on every change; tsr_coord_wait
 *     blocks (bounded) until it moves.
 */
#ifndef TSR_COORD_H
#define TSR_COORD_H

#include <stddef.h>
#include <stdint.h>

#include "tsr/error.h"
#include "tsr/kv.h"
#include "tsr/mem.h"
#include "tsr/registry.h"

typedef struct tsr_coord tsr_coord_t;

/* Milliseconds since the epoch (tests pass a manual clock). */
typedef int64_t (*tsr_coord_clock_fn)(void *ud);
/* Number of partitions of a Kafka topic: 0, or TSR_ENOTFOUND / TSR_EUNAVAIL with err set. */
typedef int (*tsr_coord_topic_fn)(void *ud, const char *topic, int32_t *partitions,
                                  tsr_error_t *err);

typedef struct tsr_coord_opts {
    tsr_kv_t *kv;                   /* borrowed; outlives the coordinator */
    const char *id;                 /* replica id (unique among replicas) */
    const char *advertise;          /* HOST:PORT that clients are redirected to */
    const char *prefix;             /* NULL = "/tessera/" */
    const char *warehouse;          /* default warehouse (config validation, uploads); may be NULL */
    int64_t lease_ttl_ms;           /* worker and replica leases; 0 = 5000 (etcd: whole seconds) */
    int32_t default_partitions;     /* GroupBys without a topic; 0 = 8 */
    tsr_coord_clock_fn clock;       /* NULL = the real clock */
    void *clock_ud;
    tsr_coord_topic_fn topic_partitions;  /* NULL = every GroupBy has default_partitions */
    void *topic_ud;
    tsr_kv_t *lease_kv;             /* optional, borrowed: a second client (its own connection)
                                       that a thread of its own uses only to renew the replica's
                                       lease, so a busy loop or slow etcd calls cannot starve the
                                       renewal; NULL = the loop renews it (tests) */
} tsr_coord_opts_t;

/* Creates the replica (contacts nothing yet). Caller frees with tsr_coord_free. */
int tsr_coord_new(const tsr_coord_opts_t *o, tsr_coord_t **out, tsr_error_t *err);
/* Starts the background loop (tick + watches). Without it, call tsr_coord_tick yourself. */
int tsr_coord_start(tsr_coord_t *c, tsr_error_t *err);
/* One round of the loop (see the header). Safe from any thread. */
void tsr_coord_tick(tsr_coord_t *c);
/* Gives up leadership and membership: revokes the replica's lease (deleting its leader and
 * coordinators/ keys) and fails pending uploads. Then the replica stays passive. */
void tsr_coord_resign(tsr_coord_t *c);
/* Stops the loop and frees (does not resign: call tsr_coord_resign first for a clean exit).
 * Upload callbacks still pending run with TSR_EUNAVAIL. NULL is a no-op. */
void tsr_coord_free(tsr_coord_t *c);

/* 1 when this replica leads; *epoch (may be NULL) = its epoch (0 when not leading). */
int tsr_coord_is_leader(tsr_coord_t *c, int64_t *epoch);
/* The leader's advertised address as last seen ("" when unknown) into buf. */
void tsr_coord_leader_addr(tsr_coord_t *c, char *buf, size_t cap);
/* The snapshot revision (grows on every change of assignments, routing or shards). */
int64_t tsr_coord_revision(tsr_coord_t *c);
/* Waits until the revision differs from rev, the coordinator stops, or timeout_ms passes;
 * returns the revision. */
int64_t tsr_coord_wait(tsr_coord_t *c, int64_t rev, int64_t timeout_ms);

/* Every call below fails with TSR_EUNAVAIL "not the leader; leader is HOST:PORT" on a
 * follower. */

/* ---- workers */

/* Grants a lease of the TTL and writes workers/<id> with it (fenced). */
int tsr_coord_register_worker(tsr_coord_t *c, const char *id, const char *addr,
                              int64_t started_at_ms, int64_t *lease, int64_t *ttl_ms,
                              int64_t *epoch, tsr_error_t *err);

/* What a worker reports it holds of one (GroupBy, partition). */
typedef struct tsr_coord_pstate {
    const char *group_by;
    int32_t partition;
    int64_t batch_end_ms, events, lag, next_offset;
} tsr_coord_pstate_t;

/* Renews the worker's lease and records its report. TSR_ENOTFOUND when the lease expired or
 * the worker is not registered with that lease (the worker must register again).
 * seen_epoch: the highest epoch the worker has seen; above ours, the replica checks etcd and
 * steps down (TSR_EUNAVAIL) if another replica leads. */
int tsr_coord_keepalive(tsr_coord_t *c, const char *id, int64_t lease, int64_t seen_epoch,
                        const tsr_coord_pstate_t *ps, size_t nps, int64_t *ttl_ms, int64_t *epoch,
                        tsr_error_t *err);

/* A shard finished. Reports of a stale attempt or another worker are ignored (TSR_OK).
 * seen_epoch as for tsr_coord_keepalive. */
int tsr_coord_report_shard(tsr_coord_t *c, const char *worker, const char *job_id, int32_t shard,
                           int32_t attempt, int ok, const char *error, int64_t keys,
                           int64_t seen_epoch, tsr_error_t *err);

/* Serialized tessera.v1.Assignment of worker (appended to out), *revision (may be NULL) = the
 * revision it reflects. */
int tsr_coord_assignment(tsr_coord_t *c, const char *worker, tsr_buf_t *out, int64_t *revision,
                         tsr_error_t *err);
/* Serialized tessera.v1.RoutingTable (appended to out). */
int tsr_coord_routing(tsr_coord_t *c, tsr_buf_t *out, int64_t *revision, tsr_error_t *err);

/* ---- admin: configs (same semantics as registry.h; records in configs/<name>) */

/* Validates text (Chronon config: loads against the warehouse's schemas, compiles it for
 * serving, refuses a changed definition of a GroupBy an applied config already serves) and
 * unless dry_run stores it. *out (may be NULL) = the entry (caller frees). */
int tsr_coord_apply(tsr_coord_t *c, const char *text, size_t n, const char *label, int dry_run,
                    tsr_reg_entry_t *out, int *created, int *unchanged, tsr_error_t *err);
int tsr_coord_get_config(tsr_coord_t *c, const char *name, tsr_reg_entry_t *out, tsr_error_t *err);
/* kind 0 = all; sorted by name; caller frees with tsr_reg_entries_free. */
int tsr_coord_list_configs(tsr_coord_t *c, int kind, tsr_reg_entry_t **out, size_t *n,
                           tsr_error_t *err);
int tsr_coord_delete_config(tsr_coord_t *c, const char *name, tsr_reg_entry_t *out,
                            tsr_error_t *err);

/* ---- admin: uploads */

typedef struct tsr_coord_upload_result {
    const char *name;
    int64_t batch_end_ms;
    int64_t keys;
    int64_t group_bys;
    const char *job_id;
} tsr_coord_upload_result_t;

/* Runs once per accepted upload (per call waiting on it), on whatever thread finished it (a tick, a KeepAlive or
 * ReportShard handler), never under the caller's locks: rc = TSR_OK with res, or an error
 * code with msg. */
typedef void (*tsr_coord_upload_cb)(void *ud, int rc, const tsr_coord_upload_result_t *res,
                                    const char *msg);

/* Starts an upload of config name (a GroupBy, or a Join's parts) for end partition ds from
 * warehouse (NULL/"" = the default), finishing by deadline_ms (clock time; INT64_MAX = none).
 * TSR_OK: cb runs exactly once later. An error (no such config, ds partition missing in the
 * warehouse, a GroupBy not assigned yet, not the leader): cb never runs. *job_id (may be NULL)
 * = the job's id, copied into a buffer of 64 bytes. */
int tsr_coord_upload(tsr_coord_t *c, const char *name, const char *ds, const char *warehouse,
                     int64_t deadline_ms, tsr_coord_upload_cb cb, void *ud, char *job_id,
                     tsr_error_t *err);
/* tsr_coord_upload with the job's id chosen by the client (want_id: 1..63 characters of
 * [A-Za-z0-9._-]; NULL/"" = pick one): a running job of that id, kind and name that no call
 * waits on (one resumed after a failover) is waited on by this call (cb runs when it
 * finishes); any other job of that id: TSR_EEXIST. */
int tsr_coord_upload_job(tsr_coord_t *c, const char *name, const char *ds, const char *warehouse,
                         int64_t deadline_ms, const char *want_id, tsr_coord_upload_cb cb, void *ud,
                         char *job_id, tsr_error_t *err);

/* ---- admin: backfills
 *
 * A backfill job's shards are day ranges of [start, end] (tsr_coord_split_days over the live
 * workers), handed out round-robin in Assignment.shards (ShardTask.kind "backfill") and
 * retried on the next live worker like upload shards (failure report or lease lost, at most
 * 3 attempts). Each shard writes its ds partitions of the shared output table atomically, so
 * a retry simply rewrites its days. The callback runs when every shard is done. */

typedef struct tsr_coord_backfill_result {
    const char *name;
    int64_t days, rows, shards;
    const char *output;             /* <warehouse>/<outputNamespace>/<cleanName> */
    const char *job_id;
} tsr_coord_backfill_result_t;

/* As tsr_coord_upload_cb. */
typedef void (*tsr_coord_backfill_cb)(void *ud, int rc, const tsr_coord_backfill_result_t *res,
                                      const char *msg);

/* Splits the days [start_day, end_day] into contiguous ranges, about 2 per worker (at least
 * one day each, at most cap ranges): ranges[i][0..1] = first and last day. Returns the count
 * (0 when end_day < start_day). Earlier ranges get the extra day of an uneven split. */
size_t tsr_coord_split_days(int64_t start_day, int64_t end_day, size_t nworkers, int64_t (*ranges)[2],
                            size_t cap);

/* Starts a backfill of the applied config name (a GroupBy or Join) for ds in
 * [start_ds, end_ds] from warehouse (NULL/"" = the default). Validated first as `tessera
 * backfill` does: TSR_ENOTFOUND (no such config; a missing input partition, named),
 * TSR_EUNSUPPORTED (a StagingQuery), TSR_EINVAL (dates), TSR_EUNAVAIL (no live worker, not
 * the leader): then cb never runs. TSR_OK: cb runs exactly once later. */
int tsr_coord_backfill(tsr_coord_t *c, const char *name, const char *start_ds, const char *end_ds,
                       const char *warehouse, int64_t deadline_ms, tsr_coord_backfill_cb cb, void *ud,
                       char *job_id, tsr_error_t *err);
/* tsr_coord_backfill with a client-chosen job id, as tsr_coord_upload_job. */
int tsr_coord_backfill_job(tsr_coord_t *c, const char *name, const char *start_ds, const char *end_ds,
                           const char *warehouse, int64_t deadline_ms, const char *want_id,
                           tsr_coord_backfill_cb cb, void *ud, char *job_id, tsr_error_t *err);

/* ---- admin: jobs */

/* Serialized tessera.v1.GetJobResponse of job id (appended to out): from memory while the
 * job runs here, else from its record. TSR_ENOTFOUND when there is no such job. */
int tsr_coord_job(tsr_coord_t *c, const char *id, tsr_buf_t *out, tsr_error_t *err);

/* ---- admin: status (serialized tessera.v1 responses appended to out) */

int tsr_coord_status(tsr_coord_t *c, const char *version, int64_t started_at_ms, tsr_buf_t *out,
                     tsr_error_t *err);
int tsr_coord_list_workers(tsr_coord_t *c, tsr_buf_t *out, tsr_error_t *err);
int tsr_coord_list_partitions(tsr_coord_t *c, const char *group_by, tsr_buf_t *out,
                              tsr_error_t *err);

#endif
