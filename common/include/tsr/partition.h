/*
 * partition.h — which partition a key belongs to, in cluster mode (docs/cluster.md).
 *
 * Tessera partition p of a streamed GroupBy is Kafka partition p of its source topic, so a
 * worker owning p consumes exactly Kafka partition p and sees every event of its keys. That
 * holds when events are produced with the GroupBy's key as the message key and Kafka's
 * default (Java) partitioner, murmur2 — what `tessera produce --key-column` does. The key
 * text is:
 *   - one key column: its value as text (strings as they are, longs in decimal, doubles and
 *     booleans as JSON prints them: tsr_value_key_string);
 *   - several key columns: the JSON array of their values, e.g. ["u1",42].
 * GroupBys without a topic use the same function with the coordinator's partition count.
 *
 * The hash is librdkafka's own murmur2 partitioner (Kafka's Java default), so producers and
 * Tessera can never disagree.
 */
#ifndef TSR_PARTITION_H
#define TSR_PARTITION_H

#include <stddef.h>
#include <stdint.h>

#include "tsr/mem.h"
#include "tsr/value.h"

/* Partition of a message key text among nparts (>= 1). */
int tsr_partition_of_text(const void *text, size_t len, int nparts);

/* Appends the key text of nkeys key values (see above) to out. */
void tsr_partition_key_text(const tsr_value_t *keys, size_t nkeys, tsr_buf_t *out);

/* Partition of an encoded key (the value.h encoding of nkeys key values, as the tile store
 * and ReadItem.key hold it); scratch is reused between calls. Returns the partition, or
 * TSR_ECORRUPT when the bytes do not decode into nkeys values. */
int tsr_partition_of_key(const void *enc, size_t klen, size_t nkeys, int nparts, tsr_buf_t *scratch);

#endif
