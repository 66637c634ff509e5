/*
 * worker.h — `tessera-worker`, a cluster worker (docs/cluster.md "Workers", issue 5): hosts
 * the partitions of GroupBys the leader coordinator assigns to it, streams exactly those Kafka
 * partitions, runs upload shards, and answers WorkerService.ReadPartition for the fetchers.
 *
 *   coordinator ──RegisterWorker──▶ lease          (session thread)
 *               ──WatchAssignments─▶ snapshots ──▶ reconcile
 *               ◀─KeepAlive (TTL/3, PartitionState reports)    (keep-alive thread)
 *               ◀─ReportShard                       (shard thread: batch → part files, or
 *                                                    a backfill's days → the output table)
 *   fetchers    ──ReadPartition────▶ owned? host read : READ_NOT_OWNER
 *
 * Reconcile of an Assignment snapshot (tsr_worker_apply_assignment):
 *   1. epoch < highest seen → ignored and counted (a deposed leader's commands are rejected);
 *      within an epoch an older revision is ignored too; the epoch and revision already
 *      applied is skipped (a re-opened watch starts with it) unless the lease was lost since.
 *   2. per AssignedGroupBy: compile it if new (config_json + part_index; a changed definition
 *      under a hosted name is refused and logged); partitions lost are withdrawn from reads and
 *      their ingest stopped first (fencing: nothing is written for them after this returns);
 *      when the committed upload B is newer than the local one, or partitions were gained,
 *      the part files of every owned partition are loaded as one upload; then the ingest is
 *      (re)started over the owned set, partitions new to the store from the offset of time B;
 *      then the gained partitions are published to reads.
 *   3. GroupBys no longer assigned: every partition lost.
 *   4. ShardTasks not seen before (job, shard, attempt) are queued for the shard thread.
 *
 * Coordinator addresses: a list; a call failing with UNAVAILABLE "not the leader; leader is
 * X" moves to X, any other failure to the next address; reconnects back off (bounded, 50 ms
 * doubling to 2 s). KeepAlive NOT_FOUND (lease expired: the partitions may be someone else's
 * now): every ingest stops and every partition is withdrawn, then the worker registers again
 * and waits for its next snapshot. While the coordinator is unreachable the worker keeps
 * serving and ingesting what it has.
 *
 * The watch is a server stream with a 3 s deadline, re-opened at once when it ends that way:
 * the stream API has no cancel from another thread, and this bounds a drain on SIGTERM.
 */
#ifndef TSR_WORKER_H
#define TSR_WORKER_H

#include <stdint.h>
#include <stdio.h>

#include "tsr/error.h"
#include "tsr/host.h"

typedef struct tsr_worker tsr_worker_t;

typedef struct tsr_worker_opts {
    const char *coordinators;       /* "HOST:PORT[,HOST:PORT...]"; NULL = none (tests feed
                                       assignments with tsr_worker_apply_assignment) */
    const char *listen;             /* "127.0.0.1:0" */
    const char *advertise;          /* registered address; NULL = the listen host + bound port */
    const char *data_dir;
    const char *id;                 /* NULL: kept in <data_dir>/worker-id (generated once) */
    const char *warehouse;          /* absolute; shards may name their own */
    const char *kafka_bootstrap;    /* NULL = no streaming */
    int64_t allowed_lateness_ms;
    int rpc_threads;                /* gRPC completion-queue threads (reads run inline); 0: 2 */
    FILE *log;
} tsr_worker_opts_t;

typedef struct tsr_worker_stats {
    int64_t epoch;                  /* highest seen */
    int64_t revision;
    uint64_t assignments;           /* snapshots reconciled */
    uint64_t stale_assignments;     /* ignored: older epoch (or revision) */
    uint64_t registrations;
    uint64_t lease_losses;          /* KeepAlive NOT_FOUND */
    uint64_t shards_ok, shards_failed;
    uint64_t loads, load_failures;  /* part-file loads */
    int registered;
} tsr_worker_stats_t;

/* Opens the host, serves WorkerService and grpc Health on opts->listen, and (with
 * coordinators) starts the session, keep-alive and shard threads. Caller stops with
 * tsr_worker_stop. */
int tsr_worker_start(const tsr_worker_opts_t *opts, tsr_worker_t **out, tsr_error_t *err);
int tsr_worker_port(const tsr_worker_t *w);
const char *tsr_worker_id(const tsr_worker_t *w);
/* Drains: stops the coordinator threads (a shard in hand is abandoned, unreported: a backfill
 * shard at its next input file or output day), stops
 * ingests after the batch in hand, stops serving, closes the stores. Frees w. */
void tsr_worker_stop(tsr_worker_t *w);

/* Reconciles one serialized Assignment (above). 0 applied, 1 ignored as stale, or a negative
 * TSR_E* code for bytes that are not an Assignment. */
int tsr_worker_apply_assignment(tsr_worker_t *w, const uint8_t *msg, size_t n, tsr_error_t *err);
/* 1 when the worker owns (GroupBy, partition) for reads now. */
int tsr_worker_owns(tsr_worker_t *w, const char *group_by, int32_t partition);
void tsr_worker_stats(tsr_worker_t *w, tsr_worker_stats_t *out);
/* The host (tests: read values, inspect ingests). Borrowed until stop. */
tsr_host_t *tsr_worker_host(tsr_worker_t *w);

/* Runs one shard now (what the shard thread does for a ShardTask, minus the report): an upload
 * shard computes the GroupBy's batch, keeps the keys of the shard's partitions and writes
 * <out_dir>/part-<p>.tsu for each (*keys = keys written); a "backfill" shard runs the offline
 * backfill of config_json over [start_ds, end_ds] into the warehouse (*keys = rows written). */
int tsr_worker_run_shard(tsr_worker_t *w, const uint8_t *shard_task, size_t n, uint64_t *keys,
                         tsr_error_t *err);

#endif
