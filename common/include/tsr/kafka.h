/*
 * kafka.h — Tessera's Kafka seam (SPEC §6 "Streaming", §7 "Embedded default"), over
 * librdkafka: a consumer with explicit partition assignment, a producer helper, the JSON
 * message → typed row parser, and a local Kafka-protocol broker (librdkafka's mock cluster)
 * for `tessera dev-kafka` and tests.
 *
 * Design:
 *   - No consumer group, ever. The worker owns its offsets: it stores, per partition, the
 *     offset of the NEXT message to read in the same RocksDB write batch as the tile updates
 *     that message produced, and reopens the consumer at those offsets after a restart. So
 *     the consumer never commits to Kafka and uses rd_kafka_assign (no group join: ~0.5 s to
 *     the first message instead of ~3 s, PLATFORM-NOTES).
 *   - A poll returns a batch of borrowed message views. They point into librdkafka's buffers
 *     and stay valid until the next poll or close; the batch array is allocated once at open,
 *     so a steady-state poll allocates nothing of ours.
 *   - Lag per partition = high watermark − position, both known locally: the high watermark
 *     arrives with every fetch response (rd_kafka_get_watermark_offsets, no broker call) and
 *     the position is the offset after the last message the consumer handed out.
 *   - This header hides librdkafka: no rdkafka type appears here, so the worker and the CLI
 *     depend only on it.
 *
 * Offsets: a "start offset" is an absolute offset >= 0 (the next message to read) or one of
 * TSR_KAFKA_OFFSET_BEGINNING / TSR_KAFKA_OFFSET_END.
 *
 * Threads: a consumer or a producer is used by one thread at a time. The mock broker runs
 * its own threads and may be reached from any thread or process.
 */
#ifndef TSR_KAFKA_H
#define TSR_KAFKA_H

#include <stddef.h>
#include <stdint.h>

#include "tsr/error.h"
#include "tsr/mem.h"
#include "tsr/value.h"

#define TSR_KAFKA_OFFSET_BEGINNING (-2)
#define TSR_KAFKA_OFFSET_END (-1)
/* Default bootstrap when neither --bootstrap nor $TESSERA_KAFKA is given. */
#define TSR_KAFKA_DEFAULT_BOOTSTRAP "127.0.0.1:9092"

/* ---------------------------------------------------------------- local broker (mock) */

typedef struct tsr_kafka_mock tsr_kafka_mock_t;

typedef struct tsr_kafka_mock_opts {
    int partitions;             /* partitions of the topics named here; 0 = 4 */
    const char *const *topics;  /* topics to create up front (borrowed during start) */
    size_t ntopics;
} tsr_kafka_mock_opts_t;

/* Starts a one-broker mock cluster listening on a free 127.0.0.1 port. Topics not created
 * here are auto-created by the first producer or metadata request that names them, with the
 * mock's default partition count (4). The mock keeps only ~5 MiB or 100k message sets per
 * partition and prunes older ones. Caller frees with tsr_kafka_mock_stop. */
int tsr_kafka_mock_start(const tsr_kafka_mock_opts_t *opts, tsr_kafka_mock_t **out,
                         tsr_error_t *err);
/* "127.0.0.1:PORT"; borrowed until tsr_kafka_mock_stop. */
const char *tsr_kafka_mock_bootstrap(const tsr_kafka_mock_t *m);
/* Creates a topic with `partitions` partitions (TSR_EEXIST if it exists). */
int tsr_kafka_mock_topic_create(tsr_kafka_mock_t *m, const char *topic, int partitions,
                                tsr_error_t *err);
/* Stops the brokers and frees m (NULL is allowed). */
void tsr_kafka_mock_stop(tsr_kafka_mock_t *m);

/* ---------------------------------------------------------------- metadata */

/* Number of partitions of `topic` at `bootstrap`, waiting at most timeout_ms. Returns 0,
 * TSR_ENOTFOUND (no such topic), or TSR_EUNAVAIL (broker not reachable in time). Asks the
 * broker not to auto-create the topic (Kafka >= 0.11 honours that; the mock does not). */
int tsr_kafka_topic_partitions(const char *bootstrap, const char *topic, int timeout_ms,
                               int32_t *out, tsr_error_t *err);

/* ---------------------------------------------------------------- producer */

typedef struct tsr_kafka_producer tsr_kafka_producer_t;

typedef struct tsr_kafka_producer_stats {
    uint64_t sent;              /* accepted by tsr_kafka_producer_send */
    uint64_t delivered;         /* acknowledged by the broker */
    uint64_t failed;            /* delivery failed (flush reports the first reason) */
} tsr_kafka_producer_stats_t;

/* Opens an acks=all producer (not idempotent: a retried send may duplicate). Keyed messages are partitioned with Kafka's
 * Java default (murmur2 of the key bytes, mod partitions), so a key lands on the same
 * partition whatever client wrote it; unkeyed messages go to a random partition. Caller
 * frees with tsr_kafka_producer_close. */
int tsr_kafka_producer_open(const char *bootstrap, tsr_kafka_producer_t **out, tsr_error_t *err);
/* Queues one message (key and value are copied; key may be NULL for none). partition -1 =
 * chosen from the key. Blocks while the local queue is full. Returns 0, or TSR_EINVAL /
 * TSR_EUNAVAIL with a message. Delivery is asynchronous: see tsr_kafka_producer_flush. */
int tsr_kafka_producer_send(tsr_kafka_producer_t *p, const char *topic, const void *key,
                            size_t key_len, const void *value, size_t value_len,
                            int32_t partition, tsr_error_t *err);
/* Waits until every queued message is delivered or failed, at most timeout_ms. Returns 0
 * when all were delivered, TSR_ETIMEOUT when some are still in flight, TSR_EUNAVAIL when
 * some failed (err says why: the first failure's reason). */
int tsr_kafka_producer_flush(tsr_kafka_producer_t *p, int timeout_ms, tsr_error_t *err);
/* Partition count of topic through the producer's connection (a broker that auto-creates
 * topics creates it now). Returns 0, TSR_ENOTFOUND, or TSR_EUNAVAIL after timeout_ms. */
int tsr_kafka_producer_partitions(tsr_kafka_producer_t *p, const char *topic, int timeout_ms,
                                  int32_t *out, tsr_error_t *err);
/* Counters so far; the stats struct is filled by value. */
void tsr_kafka_producer_stats(const tsr_kafka_producer_t *p, tsr_kafka_producer_stats_t *out);
/* Closes without waiting for undelivered messages (flush first). NULL is allowed. */
void tsr_kafka_producer_close(tsr_kafka_producer_t *p);

/* ---------------------------------------------------------------- consumer */

typedef struct tsr_kafka_consumer tsr_kafka_consumer_t;

/* What to do when a start offset is outside the partition's [low, high] range (e.g. pruned by
 * retention): start from the oldest message, from the end, or fail the poll. */
typedef enum tsr_kafka_reset {
    TSR_KAFKA_RESET_EARLIEST = 0,
    TSR_KAFKA_RESET_LATEST,
    TSR_KAFKA_RESET_ERROR,
} tsr_kafka_reset_t;

typedef struct tsr_kafka_consumer_opts {
    const char *bootstrap;      /* "host:port[,host:port...]" */
    const char *topic;
    const int32_t *partitions;  /* partitions to assign; NULL = every partition of the topic */
    const int64_t *offsets;     /* start offset per entry of partitions; NULL = default_offset */
    size_t npartitions;         /* entries in partitions (and offsets) */
    int64_t default_offset;     /* start of partitions without an explicit offset */
    tsr_kafka_reset_t reset;    /* start offset out of range → ... */
    size_t max_batch;           /* messages per poll; 0 = 4096 */
    int timeout_ms;             /* metadata wait when partitions is NULL; 0 = 10000 */
} tsr_kafka_consumer_opts_t;

/* One message, borrowed until the next tsr_kafka_consumer_poll or _close. */
typedef struct tsr_kafka_msg {
    int32_t partition;
    int64_t offset;
    int64_t timestamp_ms;       /* message timestamp, -1 when none */
    const char *key;            /* NULL when the message has no key */
    size_t key_len;
    const char *value;          /* NULL for a tombstone */
    size_t value_len;
} tsr_kafka_msg_t;

typedef struct tsr_kafka_partition_lag {
    int32_t partition;
    int64_t position;           /* next offset the consumer will hand out; -1 = not known yet */
    int64_t high;               /* high watermark (offset after the newest message); -1 = unknown */
    int64_t lag;                /* high - position (>= 0); -1 when either is unknown */
} tsr_kafka_partition_lag_t;

/* Opens a consumer assigned to the given partitions (no consumer group; offsets are never
 * committed to Kafka). Returns 0, TSR_EINVAL (bad options), TSR_ENOTFOUND (topic or partition
 * does not exist) or TSR_EUNAVAIL (broker unreachable within timeout_ms). Caller frees with
 * tsr_kafka_consumer_close. */
int tsr_kafka_consumer_open(const tsr_kafka_consumer_opts_t *opts, tsr_kafka_consumer_t **out,
                            tsr_error_t *err);
/* Waits at most timeout_ms for messages and returns up to max_batch of them in *msgs (an
 * array owned by the consumer, borrowed until the next poll or close), in offset order per
 * partition. Returns the number of messages (0 on timeout), or a negative TSR_E* code:
 * TSR_ECORRUPT when a start offset was out of range under TSR_KAFKA_RESET_ERROR,
 * TSR_ENOTFOUND when the topic or a partition vanished, TSR_EUNAVAIL on a fatal client error.
 * Transient broker errors are retried by librdkafka; they are counted and the last one is
 * kept (tsr_kafka_consumer_last_error) but do not fail the poll. */
int tsr_kafka_consumer_poll(tsr_kafka_consumer_t *c, int timeout_ms, const tsr_kafka_msg_t **msgs,
                            tsr_error_t *err);
/* Lag of every assigned partition, into out[0..n) (n = number of assigned partitions,
 * returned). Local only: no broker round trip. Borrowed array owned by the consumer, valid
 * until the next call on c. */
size_t tsr_kafka_consumer_lag(tsr_kafka_consumer_t *c, const tsr_kafka_partition_lag_t **out);
/* Sum of the known lags (partitions with unknown lag count 0). */
int64_t tsr_kafka_consumer_total_lag(tsr_kafka_consumer_t *c);
/* The last transient error seen by poll ("" when none); borrowed until the next poll. */
const char *tsr_kafka_consumer_last_error(const tsr_kafka_consumer_t *c);
/* Transient errors seen so far. */
uint64_t tsr_kafka_consumer_error_count(const tsr_kafka_consumer_t *c);
/* Closes the consumer; borrowed messages become invalid. NULL is allowed. */
void tsr_kafka_consumer_close(tsr_kafka_consumer_t *c);

/* ---------------------------------------------------------------- message → row */

/* One column of a message schema. A required field that is missing or JSON null is an
 * error; an optional one becomes null. */
typedef struct tsr_kafka_field {
    const char *name;
    tsr_type_t type;
    int required;
} tsr_kafka_field_t;

/* Parses one JSON object (text s[0..n), not NUL-terminated) into row[0..nfields) typed by
 * fields, with the conversions of the warehouse JSON Lines reader (a long may come as an
 * integral number or a numeric string, a string column keeps the JSON text of a non-string,
 * ...). Keys not in fields are ignored. Strings, lists and maps are allocated in arena
 * (borrowed until it is reset). Returns 0, or TSR_EPARSE with a message saying what and
 * where ("invalid JSON at column 7: ...", "not a JSON object", "field 'amount': value is
 * not a long (declared long)", "field 'user': missing (required)"). Any byte string is
 * accepted as input: it never crashes. */
int tsr_kafka_json_to_row(const char *s, size_t n, const tsr_kafka_field_t *fields,
                          size_t nfields, tsr_arena_t *arena, tsr_value_t *row, tsr_error_t *err);
/* tsr_kafka_json_to_row on a message's value, the error prefixed with
 * "partition P offset O: ". A tombstone (NULL value) is an error. */
int tsr_kafka_msg_to_row(const tsr_kafka_msg_t *m, const tsr_kafka_field_t *fields,
                         size_t nfields, tsr_arena_t *arena, tsr_value_t *row, tsr_error_t *err);

#endif
