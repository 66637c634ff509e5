/*
 * kafka_int.h — what kafka_*.c share: librdkafka configuration helpers and the error record
 * librdkafka's callbacks fill. Only kafka_*.c include <librdkafka/rdkafka.h>; the public
 * header tsr/kafka.h stays free of rdkafka types.
 */
#ifndef TSR_KAFKA_INT_H
#define TSR_KAFKA_INT_H

#include <librdkafka/rdkafka.h>

#include "tsr/kafka.h"

/* Last asynchronous error reported by librdkafka (error_cb) on one handle. Written and read
 * by the thread that polls the handle (callbacks are served from rd_kafka_poll/consume). */
typedef struct tsr__kafka_errs {
    uint64_t count;
    int fatal;                  /* rd_kafka_fatal_error was raised */
    char last[256];             /* "" when none */
} tsr__kafka_errs_t;

/* A new conf with the settings every Tessera handle uses: bootstrap (may be NULL for the
 * mock's host handle), quiet logs (set TSR_KAFKA_LOG=1 to see librdkafka's), error_cb
 * recording into errs (the handle's opaque must be errs: it is set here). Returns NULL after
 * filling err when a setting is rejected. */
rd_kafka_conf_t *tsr__kafka_conf_new(const char *bootstrap, tsr__kafka_errs_t *errs,
                                     tsr_error_t *err);
/* rd_kafka_conf_set with the failure turned into TSR_EINVAL ("kafka setting k=v: why"). */
int tsr__kafka_conf_set(rd_kafka_conf_t *conf, const char *k, const char *v, tsr_error_t *err);
/* Partition count of topic on handle rk (metadata request, timeout_ms). 0, TSR_ENOTFOUND or
 * TSR_EUNAVAIL. */
int tsr__kafka_partition_count(rd_kafka_t *rk, const char *bootstrap, const char *topic,
                               int timeout_ms, int32_t *out, tsr_error_t *err);

/* The two message parsers behind tsr_kafka_json_to_row (kafka_parse.c), exposed for the
 * differential test. row_fast returns 1 with row filled when it could decide (the answer is
 * then exactly row_jansson's), 0 when the jansson path must decide. */
int tsr__kafka_row_fast(const char *s, size_t n, const tsr_kafka_field_t *fields,
                        size_t nfields, tsr_arena_t *arena, tsr_value_t *row);
int tsr__kafka_row_jansson(const char *s, size_t n, const tsr_kafka_field_t *fields,
                           size_t nfields, tsr_arena_t *arena, tsr_value_t *row,
                           tsr_error_t *err);

#endif
