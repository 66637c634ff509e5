/*
 * ingest.h — streaming one GroupBy source's Kafka topic into the tile store (SPEC §6
 * "Streaming"): consume, apply the source query (the batch path's compiled program), fold the
 * events into tiles; the offsets are stored with the tiles they reach (tile_store.h: Kafka is
 * the log).
 *
 * Design:
 *   - Shared consumers: one thread and one Kafka consumer per (bootstrap, topic) in the
 *     process, whatever the number of GroupBys streaming that topic (a Join's GroupBys often
 *     share one). Each GroupBy (a tsr_ingest_t, a member of the topic's feed) keeps its own
 *     position per partition — the offsets stored in its tile store, or the beginning of the
 *     topic when none are stored (events with ts < B are skipped by the store, so replaying
 *     from the start is correct, only slower). The consumer is assigned (no consumer group)
 *     to every partition some member consumes, from the smallest of their positions; each poll
 *     is handed to every member, which takes the messages of its partitions from its own
 *     position on — so a GroupBy that joins later replays from its own offsets while the
 *     others skip what they already applied. A member joining or leaving reopens the consumer
 *     (the next poll), nothing else. Before: one consumer per GroupBy, and a worker with the
 *     10 GroupBys of a Join had 10 consumers long-polling the broker for the same messages.
 *     Members are processed one after another on the feed's thread.
 *   - Each poll's messages are parsed (JSON objects with the source table's raw columns),
 *     evaluated, and applied once per poll (tsr_tile_store_apply_offsets) with the next offset of
 *     every partition the poll touched. Bad messages (not JSON, wrong types) are counted,
 *     logged (the first few) and skipped; their offsets still advance, so a bad message never
 *     stalls its partition.
 *   - Late events: per partition the consumer tracks the newest event time seen; an event
 *     older than that by more than the allowed lateness is counted and dropped (per partition,
 *     so a consumer catching up on one partition never makes another look late).
 *   - When the topic does not exist yet or the broker is unreachable, the thread retries
 *     (every second) until stopped, and says so in its status.
 *   - Stop: waits until the poll in hand has been applied (atomically or not at all) and
 *     leaves the feed; the last member stops the feed's thread and closes the consumer.
 *     Nothing consumed is lost, a restart continues at the stored offsets. Once stop returns
 *     the GroupBy's store is never written by the feed again (a worker that lost a partition
 *     stops writing it at once: fencing). A failed write (store error) puts that member back
 *     to its stored offsets after a second; the other members go on.
 *   - Partitioned mode (cluster workers, docs/cluster.md): opts.partitions lists the Kafka
 *     partitions to consume (Tessera partition p = Kafka partition p). A partition without a
 *     stored offset starts at the offset of time start_time_ms (the upload's batch end B,
 *     rd_kafka_offsets_for_times), else at the beginning. An event whose key belongs to
 *     another partition (tsr_partition_of_key over the topic's partition count) was produced
 *     with the wrong message key: it is counted `misrouted` and skipped, never stored where no
 *     fetch would look.
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
    /* partitioned mode (all zero: every partition of the topic, no key check) */
    const int32_t *partitions;      /* Kafka partitions to consume (copied); NULL = all */
    size_t npartitions;
    size_t nkeys;                   /* the GroupBy's key columns (for the key check) */
    int64_t start_time_ms;          /* > 0: start of partitions without a stored offset */
} tsr_ingest_opts_t;

#define TSR_INGEST_DEFAULT_LATENESS_MS 86400000LL

typedef struct tsr_ingest_stats {
    uint64_t messages;      /* consumed (good or bad) */
    uint64_t events;        /* applied to tiles */
    uint64_t filtered;      /* rows the query dropped (wheres, null key or time) */
    uint64_t skipped;       /* ts < B: covered by the batch upload */
    uint64_t late;          /* dropped as late */
    uint64_t bad;           /* malformed messages */
    uint64_t misrouted;     /* partitioned mode: key of another partition, skipped */
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
/* One Kafka partition's counters: events applied (not skipped) since the start, and the lag
 * after the last poll (-1 unknown). 0, or TSR_ENOTFOUND when p is not consumed. */
int tsr_ingest_partition_stats(tsr_ingest_t *in, int32_t p, int64_t *events, int64_t *lag);

#endif
