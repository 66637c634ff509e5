/*
 * ingest.h — streaming one GroupBy source's Kafka topic into the tile store (SPEC §6
 * "Streaming"): consume, apply the source query (the batch path's compiled program), fold the
 * events into tiles, store the offsets in the same write batch.
 *
 * Design:
 *   - One thread per (GroupBy, source topic). It owns a Kafka consumer assigned to every
 *     partition of the topic (no consumer group), started at the offsets stored in the tile
 *     store, or at the beginning of the topic when none are stored (events with ts < B are
 *     skipped by the store, so replaying from the start is correct, only slower).
 *   - Each poll's messages are parsed (JSON objects with the source table's raw columns),
 *     evaluated, and applied in one write per poll (tsr_tile_store_apply_offsets) carrying
 *     the next offset of every partition the poll touched. Bad messages (not JSON, wrong types) are counted,
 *     logged (the first few) and skipped; their offsets still advance, so a bad message never
 *     stalls its partition.
 *   - Late events: per partition the consumer tracks the newest event time seen; an event
 *     older than that by more than the allowed lateness is counted and dropped (per partition,
 *     so a consumer catching up on one partition never makes another look late).
 *   - When the topic does not exist yet or the broker is unreachable, the thread retries
 *     (every second) until stopped, and says so in its status.
 *   - Stop: the thread finishes the batch in hand (applied atomically or not at all), closes
 *     the consumer and exits; nothing consumed is lost, a restart continues at the stored
 *     offsets.
 */
#ifndef TSR_INGEST_H
#define TSR_INGEST_H

#include <stdint.h>

#include "tsr/batch.h"
#include "tsr/error.h"
#include <stdio.h>
#include "tsr/tile_store.h"

typedef struct tsr_ingest tsr_ingest_t;

typedef struct tsr_ingest_opts {
    const char *bootstrap;
    tsr_tile_store_t *store;
    const tsr_gb_online_t *plan;    /* borrowed until tsr_ingest_stop returns */
    size_t source;                  /* which source of the GroupBy (must name a topic) */
    int64_t allowed_lateness_ms;    /* < 0: no limit; 0 = default (1 day) */
    FILE *log;                      /* optional: bad messages (first 10), connection state */
} tsr_ingest_opts_t;

#define TSR_INGEST_DEFAULT_LATENESS_MS 86400000LL

typedef struct tsr_ingest_stats {
    uint64_t messages;      /* consumed (good or bad) */
    uint64_t events;        /* applied to tiles */
    uint64_t filtered;      /* rows the query dropped (wheres, null key or time) */
    uint64_t skipped;       /* ts < B: covered by the batch upload */
    uint64_t late;          /* dropped as late */
    uint64_t bad;           /* malformed messages */
    uint64_t batches;       /* write batches */
    int64_t lag;            /* messages behind the high watermarks; -1 unknown */
    int connected;          /* the consumer is open */
    char last_error[256];
} tsr_ingest_stats_t;

/* Starts streaming (opts copied; the topic comes from the plan's source). */
int tsr_ingest_start(const tsr_ingest_opts_t *opts, tsr_ingest_t **out, tsr_error_t *err);
/* Stops (see above) and frees. NULL is a no-op. */
void tsr_ingest_stop(tsr_ingest_t *in);
/* The topic name. */
const char *tsr_ingest_topic(const tsr_ingest_t *in);
void tsr_ingest_stats(tsr_ingest_t *in, tsr_ingest_stats_t *out);

#endif
