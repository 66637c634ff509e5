/*
 * host.h — hosting GroupBys on a node: what `tessera serve` (the embedded default) and
 * `tessera-worker` (cluster mode, docs/cluster.md) share.
 *
 *     data dir ── tiles/     RocksDB tile store (tile_store.h)
 *              └─ entities/  entity GroupBy values (entity_store.h)
 *
 * A host owns the two stores and one state per hosted GroupBy name (tsr_host_gb_t): the
 * config it came from, its definition fingerprint, its long-lived online plan (the kernels the
 * tile store's merge operator runs; none for an entity GroupBy, which serves stored values),
 * and its Kafka ingests. A name keeps one definition while the host runs: callers compare
 * fingerprints and refuse a changed GroupBy under a hosted name (Chronon's practice: a new
 * version name).
 *
 *   config text ─▶ tsr_host_gb_new (compile one GroupBy: the config itself or a Join part)
 *               ─▶ tsr_host_add (register tiles / entity name, start ingests)
 *   upload      ─▶ tsr_host_batch_compute (offline engine) ─▶ sinks: the stores
 *                  (tsr_host_upload) or per-partition part files (the worker's shards)
 *   part files  ─▶ tsr_host_load_parts ─▶ one versioned tile / entity upload
 *   reads       ─▶ tsr_host_read (a tsr_tile_read_fn) / tsr_host_read_values
 *
 * Ingests run over every partition of a GroupBy's topics, or, in partitioned mode
 * (tsr_host_gb_set_partitions), over the partitions a worker owns.
 *
 * Threading: the GroupBy states are the caller's to serialise (serve and the worker hold
 * their own mutex around add / find / set_partitions / iteration); tsr_host_read and
 * tsr_host_read_values are thread-safe and may run concurrently with everything else.
 */
#ifndef TSR_HOST_H
#define TSR_HOST_H

#include <stdint.h>
#include <stdio.h>

#include "tsr/batch.h"
#include "tsr/config.h"
#include "tsr/entity_store.h"
#include "tsr/error.h"
#include "tsr/ingest.h"
#include "tsr/metrics.h"
#include "tsr/served.h"
#include "tsr/tile_store.h"

#define TSR_HOST_MAX_INGESTS 8
#define TSR_HOST_MAX_PARTS 64       /* GroupBys of one Join served */

typedef struct tsr_host tsr_host_t;

typedef struct tsr_host_opts {
    const char *data_dir;           /* tiles/ and entities/ are opened under it */
    const char *warehouse;          /* absolute */
    const char *kafka_bootstrap;    /* NULL or "" = no streaming */
    int64_t allowed_lateness_ms;
    FILE *log;                      /* NULL: quiet */
    const char *component;          /* log lines' component; NULL = "host" */
    tsr_metrics_t *metrics;         /* optional: ingest and upload-version metrics in it */
} tsr_host_opts_t;

typedef struct tsr_host_ingest {
    tsr_ingest_t *in;
    tsr_counter_t *messages, *events, *bad, *late, *skipped, *misrouted;
    tsr_gauge_t *lag;
    tsr_ingest_stats_t last;        /* counters already added to the metrics */
    int64_t *ev_done;               /* partitioned: per Kafka partition, events applied by this
                                     * slot's consumers stopped so far (a partition set change
                                     * restarts the consumer) */
    size_t nev_done;
} tsr_host_ingest_t;

typedef struct tsr_host_gb {
    char *name;
    char *fp;                       /* definition fingerprint */
    tsr_config_t *conf;             /* owns g */
    const tsr_conf_group_by_t *g;
    tsr_gb_online_t *plan;          /* NULL for an entity GroupBy */
    int entity;
    tsr_host_ingest_t ing[TSR_HOST_MAX_INGESTS];
    size_t ning;
    tsr_gauge_t *batch_end;
    /* partitioned mode (cluster workers) */
    int partitioned;
    int32_t *parts;                 /* the Kafka partitions consumed, ascending */
    size_t nparts;
    int64_t start_time_ms;          /* start of partitions without a stored offset */
} tsr_host_gb_t;

/* Opens the stores under opts->data_dir (strings copied). Caller frees with tsr_host_close. */
int tsr_host_open(const tsr_host_opts_t *opts, tsr_host_t **out, tsr_error_t *err);
/* Stops every ingest (each finishes its batch in hand). */
void tsr_host_stop_ingests(tsr_host_t *h);
/* Stops ingests, closes the stores, frees the states. NULL is a no-op. */
void tsr_host_close(tsr_host_t *h);

tsr_tile_store_t *tsr_host_tile_store(tsr_host_t *h);
tsr_entity_store_t *tsr_host_entity_store(tsr_host_t *h);
const char *tsr_host_warehouse(const tsr_host_t *h);

/* ---- configs */

/* Loads config text against the host's warehouse (tsr_served_load_conf; the served GroupBys,
 * entity GroupBys and fingerprints are offline/served.h's). */
int tsr_host_load_conf(tsr_host_t *h, const char *text, size_t n, const char *label,
                       tsr_config_t **out, tsr_error_t *err);

/* ---- GroupBy states */

/* Compiles the idx-th served GroupBy of the config in text (idx < 0: the config is the
 * GroupBy) into a new state, not yet hosted. Caller adds or frees it. */
int tsr_host_gb_new(tsr_host_t *h, const char *text, size_t n, const char *label, int idx,
                    tsr_host_gb_t **out, tsr_error_t *err);
void tsr_host_gb_free(tsr_host_gb_t *st);
/* Registers the state's tiles (or entity name), hosts it (takes ownership) and starts its
 * ingests (all partitions, unless partitioned mode was set on it before). */
int tsr_host_add(tsr_host_t *h, tsr_host_gb_t *st, tsr_error_t *err);
tsr_host_gb_t *tsr_host_find(tsr_host_t *h, const char *name);
size_t tsr_host_count(const tsr_host_t *h);
tsr_host_gb_t *tsr_host_at(tsr_host_t *h, size_t i);

/* Starts the missing ingests of a hosted state (no-op without Kafka or for entities). */
void tsr_host_gb_start_ingests(tsr_host_t *h, tsr_host_gb_t *st);
/* Stops its ingests now (each finishes the batch in hand). */
void tsr_host_gb_stop_ingests(tsr_host_gb_t *st);
/* One Kafka partition of a partitioned state, over all its sources: events applied since the
 * state was hosted — across consumer restarts — and the lag of the running consumers (-1:
 * unknown). TSR_ENOTFOUND when no consumer, running or stopped, knows the partition. */
int tsr_host_partition_stats(const tsr_host_gb_t *st, int32_t p, int64_t *events, int64_t *lag);
/* Partitioned mode: consume only parts[0..n) (copied) from now on; partitions new to the
 * store start at start_time_ms (> 0) when Kafka can tell. Stops the ingests and, when the set
 * is not empty and the state is hosted, starts them again over the new set. */
void tsr_host_gb_set_partitions(tsr_host_t *h, tsr_host_gb_t *st, const int32_t *parts, size_t n,
                                int64_t start_time_ms);
/* The state's current upload version, or INT64_MIN when none. */
int64_t tsr_host_batch_end(tsr_host_t *h, const tsr_host_gb_t *st);
/* Sets the upload-version gauge of a hosted GroupBy (after an upload). */
void tsr_host_note_batch_end(tsr_host_t *h, const char *name, int64_t batch_end);

/* Adds the ingests' counters to the metrics (call from the metrics' collect callback, with
 * the states serialised). */
void tsr_host_collect(tsr_host_t *h);

/* ---- reads */

/* A tsr_tile_read_fn (ud = the host): tiles, or an entity GroupBy's stored base features. */
int tsr_host_read(void *ud, const char *gb, const void *key, size_t klen, int64_t q,
                  tsr_value_t *out, tsr_arena_t *arena, tsr_error_t *err);
/* n reads at once (tsr_tile_store_read_many for the tile GroupBys, one by one for entity
 * ones), each with its own status and message; values equal to n tsr_host_read calls. */
int tsr_host_read_many(tsr_host_t *h, tsr_tile_store_req_t *reqs, size_t n, tsr_arena_t *arena,
                       tsr_error_t *err);
/* The same read when the caller does not know the output count: *out (in arena) gets *n
 * values. A GroupBy the host does not serve is TSR_ENOTFOUND. */
int tsr_host_read_values(tsr_host_t *h, const char *gb, const void *key, size_t klen, int64_t q,
                         tsr_value_t **out, size_t *n, tsr_arena_t *arena, tsr_error_t *err);

/* One read of tsr_host_read_values_many: in gb, key, klen, q; out values/nvalues (in the
 * arena), status (0 or a TSR code) and error (arena). */
typedef struct tsr_host_vread {
    const char *gb;
    const void *key;
    size_t klen;
    int64_t q;
    tsr_value_t *values;
    size_t nvalues;
    int status;
    const char *error;
} tsr_host_vread_t;

/* n tsr_host_read_values at once: every tile read in one tsr_tile_store_read_many (one
 * multi-get per column family for all of them — a worker's ReadPartition of a Join's reads),
 * entity reads one by one; values equal to n tsr_host_read_values calls. */
void tsr_host_read_values_many(tsr_host_t *h, tsr_host_vread_t *reads, size_t n, tsr_arena_t *arena);

/* ---- batch state */

/* Computes a GroupBy's batch for ds E (B = E + 1 day) with the offline engine over the
 * warehouse: tile records to tile_sink (tile GroupBys) or base features to entity_sink. */
int tsr_host_batch_compute(const tsr_conf_group_by_t *g, int entity, int64_t E,
                           const char *warehouse, tsr_batch_sink_fn tile_sink,
                           tsr_entity_sink_fn entity_sink, void *ud, tsr_error_t *err);
/* tsr_host_batch_compute into the stores as one versioned upload of B (the previous upload
 * keeps serving if it fails). *stop (atomic, optional) aborts it; *keys gets the key count. */
int tsr_host_upload(tsr_host_t *h, const tsr_conf_group_by_t *g, int entity, int64_t E,
                    const char *warehouse, const int *stop, uint64_t *keys, tsr_error_t *err);
/* Loads the part files of partitions parts[0..n) from dir (partfile.h) into a hosted state as
 * one upload of batch_end: every file is checked as it is read; any error aborts the whole
 * upload (the previous version keeps serving). *keys gets the keys loaded. */
int tsr_host_load_parts(tsr_host_t *h, tsr_host_gb_t *st, const char *dir, int64_t batch_end,
                        const int32_t *parts, size_t n, uint64_t *keys, tsr_error_t *err);

#endif
