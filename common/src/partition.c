/*
 * partition.c — key → partition (partition.h): the key's text hashed by librdkafka's murmur2
 * partitioner, the one Kafka producers use by default.
 */
#include "tsr/partition.h"

#include <librdkafka/rdkafka.h>

#include "tsr/error.h"

int tsr_partition_of_text(const void *text, size_t len, int nparts) {
    if (nparts <= 1) return 0;
    /* the partitioner reads neither the topic nor the opaques */
    return (int)rd_kafka_msg_partitioner_murmur2(NULL, text, len, nparts, NULL, NULL);
}

void tsr_partition_key_text(const tsr_value_t *keys, size_t nkeys, tsr_buf_t *out) {
    if (nkeys == 1) {
        tsr_value_key_string(&keys[0], out);
        return;
    }
    tsr_buf_append(out, "[", 1);
    for (size_t i = 0; i < nkeys; i++) {
        if (i) tsr_buf_append(out, ",", 1);
        tsr_value_to_json(&keys[i], out);
    }
    tsr_buf_append(out, "]", 1);
}

int tsr_partition_of_key(const void *enc, size_t klen, size_t nkeys, int nparts,
                         tsr_buf_t *scratch) {
    enum { MAX_KEYS = 16 };
    tsr_value_t keys[MAX_KEYS];
    if (nkeys == 0 || nkeys > MAX_KEYS) return TSR_ECORRUPT;
    tsr_reader_t rd;
    tsr_reader_init(&rd, enc, klen);
    tsr_arena_t arena;                  /* keys are scalars: nothing is allocated */
    tsr_arena_init(&arena, 256);
    int rc = 0;
    for (size_t i = 0; i < nkeys && rc == 0; i++) rc = tsr_value_decode(&rd, &arena, &keys[i]);
    if (rc == 0 && tsr_reader_left(&rd) != 0) rc = TSR_ECORRUPT;
    if (rc == 0) {
        tsr_buf_clear(scratch);
        tsr_partition_key_text(keys, nkeys, scratch);
        rc = tsr_partition_of_text(scratch->data, scratch->len, nparts);
    }
    tsr_arena_free(&arena);
    return rc;
}
