/*
 * batch.h — the upload computation (SPEC §6 "Upload"): from warehouse data up to the end of ds
 * E, every key's batch state as of B = (E + 1) 00:00 — the lifetime IRs and the tail tiles of
 * each hop its windows use (tile.h) — computed with the offline engine's plans and parallel
 * extraction, so the online path starts from exactly the events the backfill sees.
 */
#ifndef TSR_BATCH_H
#define TSR_BATCH_H

#include <stdint.h>

#include "tsr/backfill.h"
#include "tsr/config.h"
#include "tsr/tile.h"

/* A GroupBy compiled for the online path: its tile columns (kernels typed from the warehouse
 * schema, exactly as the backfill types them). */
typedef struct tsr_gb_online tsr_gb_online_t;

/* Builds the columns of GroupBy g (with aggregations) over warehouse tables; reading up to
 * day_hi (inclusive). Caller frees with tsr_gb_online_free. */
int tsr_gb_online_build(const tsr_conf_group_by_t *g, const char *warehouse, int64_t day_hi,
                        tsr_gb_online_t **out, tsr_error_t *err);
void tsr_gb_online_free(tsr_gb_online_t *p);
/* Borrowed while p lives: register it with the tile store. */
const tsr_tile_gb_t *tsr_gb_online_tiles(const tsr_gb_online_t *p);
/* The number of input slots an event carries, and slot i's name (the source's selected
 * column): streamed events must carry the same slots. */
size_t tsr_gb_online_nslots(const tsr_gb_online_t *p);
const char *tsr_gb_online_slot(const tsr_gb_online_t *p, size_t i);

/* Receives one batch record: irs[c] for every column c (borrowed for the call). Returns 0 to
 * go on, or a negative TSR_E* code to stop the computation with that error. */
typedef int (*tsr_batch_sink_fn)(void *ud, const void *key, size_t klen, tsr_tile_kind_t kind,
                                 int64_t start, const void *const *irs);

/* Computes every key's batch records as of batch_end from events with ts < batch_end.
 * opts: parallelism, max_bad_rows, progress (warehouse from the build). */
int tsr_batch_compute(tsr_gb_online_t *p, int64_t batch_end, const tsr_backfill_opts_t *opts,
                      tsr_batch_sink_fn sink, void *ud, tsr_error_t *err);

/* ---- entity GroupBys (snapshot sources, with or without aggregations; SPEC §4 "SNAPSHOT
 * accuracy"): online they serve the GroupBy's values for the latest uploaded ds E — what the
 * GroupBy backfill writes for ds E, before derivations. */

/* Receives one key's base features (the GroupBy's nfeat base values, value-codec encoded). */
typedef int (*tsr_entity_sink_fn)(void *ud, const void *key, size_t klen, const void *vals,
                                  size_t vlen);
/* Computes every key's base features for ds `day` (a day number); *nfeat gets their count.
 * TSR_EINVAL when g is not an entity GroupBy. */
int tsr_entity_batch_compute(const tsr_conf_group_by_t *g, int64_t day,
                             const tsr_backfill_opts_t *opts, tsr_entity_sink_fn sink, void *ud,
                             size_t *nfeat, tsr_error_t *err);

/* ---- streaming: the same compiled source query over rows read from a topic (SPEC §3
 * "Streams") */

/* Sources of p (the GroupBy's sources in config order). */
size_t tsr_gb_online_nsources(const tsr_gb_online_t *p);
/* Source i's Kafka topic name (`kafka://name/args` -> `name`) in buf (cap bytes), or NULL when
 * the source names no topic (or is not an events source). */
const char *tsr_gb_online_topic(const tsr_gb_online_t *p, size_t i, char *buf, size_t cap);

/* Evaluates source i's query on raw rows (one evaluator per thread). */
typedef struct tsr_gb_stream tsr_gb_stream_t;
tsr_gb_stream_t *tsr_gb_stream_new(const tsr_gb_online_t *p, size_t src);
void tsr_gb_stream_free(tsr_gb_stream_t *s);
/* The raw row's columns (the source table's schema), in the order rows are passed to
 * tsr_gb_stream_eval: names[i], types[i]. Borrowed while p lives. */
size_t tsr_gb_stream_columns(const tsr_gb_stream_t *s, const char *const **names,
                             const tsr_type_t **types);
/* Applies the query to row (the raw columns): wheres, key columns, time column, input slots.
 * Returns 1 for an event: its encoded key appended to keys (*klen bytes), its time in *ts, and
 * per tile column c its input in inputs[c] and bucket in buckets[c] (values copied into
 * arena). Returns 0 when the row is filtered: a where is false, a key is null, or the time is
 * null or not a number. */
int tsr_gb_stream_eval(tsr_gb_stream_t *s, const tsr_value_t *row, tsr_buf_t *keys, size_t *klen,
                       int64_t *ts, tsr_value_t *inputs, tsr_value_t *buckets, tsr_arena_t *arena);

#endif
