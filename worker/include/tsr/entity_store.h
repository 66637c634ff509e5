/*
 * entity_store.h — a worker's store of entity GroupBy values (SPEC §4 "SNAPSHOT accuracy":
 * entity sources, with or without aggregations): per key, the GroupBy's base features for the
 * latest uploaded ds, value-codec encoded. Entity GroupBys have no stream (mutations are not
 * supported), so there are no tiles: an upload replaces the values, a fetch is one point get.
 *
 * Key layout (one RocksDB database beside the tile store; big-endian integers with the sign
 * bit flipped so byte order is numeric order):
 *
 *     'm' gb \0                 -> ver (int64)        current upload version id
 *     'v' gb \0 ver key         -> encoded values     one record per key of that upload
 *
 * A version id is the upload's B (ds E + 1 day, a midnight), or B + 1 ms for an upload of the
 * served B again. Uploads write under their own id, then switch 'm' in one write (readers see
 * the old values or the new ones, never a mix) and delete the old id's range. Thread-safe.
 */
#ifndef TSR_ENTITY_STORE_H
#define TSR_ENTITY_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "tsr/error.h"
#include "tsr/mem.h"

typedef struct tsr_entity_store tsr_entity_store_t;
typedef struct tsr_entity_upload tsr_entity_upload_t;

int tsr_entity_store_open(const char *dir, tsr_entity_store_t **out, tsr_error_t *err);
void tsr_entity_store_close(tsr_entity_store_t *s);

/* An upload of version batch_end. Its records are read from its commit on: while it runs and
 * after it fails the served version is read, also when batch_end is the served B (its records
 * then go under B's other version id). _add: records added to the served version in place
 * when batch_end is the one served (a worker loading the partitions it gained). */
int tsr_entity_upload_begin(tsr_entity_store_t *s, const char *gb, int64_t batch_end,
                            tsr_entity_upload_t **out, tsr_error_t *err);
int tsr_entity_upload_begin_add(tsr_entity_store_t *s, const char *gb, int64_t batch_end,
                                tsr_entity_upload_t **out, tsr_error_t *err);
int tsr_entity_upload_put(tsr_entity_upload_t *u, const void *key, size_t klen, const void *val,
                          size_t vlen, tsr_error_t *err);
/* Switches to the upload atomically and drops the previous version; frees u. */
int tsr_entity_upload_commit(tsr_entity_upload_t *u, tsr_error_t *err);
/* Drops what the upload wrote; frees u. */
void tsr_entity_upload_abort(tsr_entity_upload_t *u);

/* The current version, or INT64_MIN when none. */
int64_t tsr_entity_store_batch_end(tsr_entity_store_t *s, const char *gb);
/* The key's encoded values into out (cleared first): 1 found, 0 absent (no upload, or the key
 * is not in it), or a negative TSR_E* code. */
int tsr_entity_store_get(tsr_entity_store_t *s, const char *gb, const void *key, size_t klen,
                         tsr_buf_t *out, tsr_error_t *err);

#endif
