/*
 * online.h — a Join compiled for serving (SPEC §6 "Fetch"): each part's GroupBy as tile columns
 * (batch.h), key mapping from request keys, GroupBy and Join derivations — the same plans the
 * backfill runs, so a fetch at q computes exactly what the backfill writes for a left row at q.
 *
 * Reading tiles is the caller's: a tsr_tile_read_fn (the embedded default reads its local tile
 * store; a cluster fetcher calls the owning worker). A plan is immutable and shared; each
 * serving thread owns a tsr_join_online_ctx_t (VMs and scratch).
 */
#ifndef TSR_ONLINE_H
#define TSR_ONLINE_H

#include <stddef.h>
#include <stdint.h>

#include "tsr/config.h"
#include "tsr/error.h"
#include "tsr/tile.h"
#include "tsr/value.h"

typedef struct tsr_join_online tsr_join_online_t;
typedef struct tsr_join_online_ctx tsr_join_online_ctx_t;

/* Reads GroupBy gb's outputs (its tile columns' windows in order) for an encoded key at q. */
typedef int (*tsr_tile_read_fn)(void *ud, const char *gb, const void *key, size_t klen, int64_t q,
                                tsr_value_t *out, tsr_arena_t *arena, tsr_error_t *err);

/* Builds the serving plan of Join j; table schemas come from the warehouse (read up to day_hi).
 * Caller frees with tsr_join_online_free. */
int tsr_join_online_build(const tsr_conf_join_t *j, const char *warehouse, int64_t day_hi,
                          tsr_join_online_t **out, tsr_error_t *err);
void tsr_join_online_free(tsr_join_online_t *p);

size_t tsr_join_online_nparts(const tsr_join_online_t *p);
/* Part i's tile columns (to register with a tile store), or NULL when the part is not served
 * from tiles: an entity GroupBy, whose read returns the stored base features of its latest
 * upload (the read callback tells them apart by GroupBy name). */
const tsr_tile_gb_t *tsr_join_online_part_tiles(const tsr_join_online_t *p, size_t i);
/* The part's name for `<name>_exception` errors: its prefix, else its GroupBy's clean name. */
const char *tsr_join_online_part_name(const tsr_join_online_t *p, size_t i);
/* Part i's GroupBy name (what its reads carry as gb) and its number of base features (the
 * values a read fills). */
const char *tsr_join_online_part_group_by(const tsr_join_online_t *p, size_t i);
size_t tsr_join_online_part_nfeatures(const tsr_join_online_t *p, size_t i);

/* Output features, in order (after derivations; no ts, ds or left columns). */
size_t tsr_join_online_noutputs(const tsr_join_online_t *p);
const char *tsr_join_online_output(const tsr_join_online_t *p, size_t i);

tsr_join_online_ctx_t *tsr_join_online_ctx_new(const tsr_join_online_t *p);
void tsr_join_online_ctx_free(tsr_join_online_ctx_t *c);

/* Fetches one row: keys[i] named names[i] (the left's columns, e.g. the Join's key columns and
 * any contextual values), at time q. out[0 .. noutputs) get the features (allocated in arena);
 * part_errors[0 .. nparts) get NULL or a message for a part that failed (its features are
 * null): a missing key column, a part not served online, a read error. Returns 0, or a
 * negative code when the row as a whole fails. */
int tsr_join_online_fetch(tsr_join_online_ctx_t *c, const char *const *names,
                          const tsr_value_t *keys, size_t nkeys, int64_t q, tsr_tile_read_fn read,
                          void *ud, tsr_value_t *out, const char **part_errors, tsr_arena_t *arena);

/* ---- a GroupBy served on its own (FetchGroupBy): its features (after its derivations) under
 * their own names, keys named by the GroupBy's key columns. */
typedef struct tsr_gb_serve tsr_gb_serve_t;
typedef struct tsr_gb_serve_ctx tsr_gb_serve_ctx_t;

int tsr_gb_serve_build(const tsr_conf_group_by_t *g, const char *warehouse, int64_t day_hi,
                       tsr_gb_serve_t **out, tsr_error_t *err);
void tsr_gb_serve_free(tsr_gb_serve_t *p);
/* Its tile columns, or NULL for an entity GroupBy (read as stored values, see above). */
const tsr_tile_gb_t *tsr_gb_serve_tiles(const tsr_gb_serve_t *p);
size_t tsr_gb_serve_noutputs(const tsr_gb_serve_t *p);
/* Base features: the values one read fills (before derivations). */
size_t tsr_gb_serve_nfeatures(const tsr_gb_serve_t *p);
const char *tsr_gb_serve_output(const tsr_gb_serve_t *p, size_t i);
tsr_gb_serve_ctx_t *tsr_gb_serve_ctx_new(const tsr_gb_serve_t *p);
void tsr_gb_serve_ctx_free(tsr_gb_serve_ctx_t *c);
/* Fetches one row at q (midnight of q's day for SNAPSHOT accuracy, as the backfill). A null
 * key gives null features. Returns 0, or TSR_EINVAL (a key column missing from the request),
 * or the read's error, with err set. */
int tsr_gb_serve_fetch(tsr_gb_serve_ctx_t *c, const char *const *names, const tsr_value_t *keys,
                       size_t nkeys, int64_t q, tsr_tile_read_fn read, void *ud, tsr_value_t *out,
                       tsr_arena_t *arena, tsr_error_t *err);

#endif
