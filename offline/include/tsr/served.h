/*
 * served.h — what every server derives from an applied config: the GroupBys it serves, which
 * of them are entity GroupBys (stored values, no tiles), and the fingerprint of everything a
 * GroupBy's tiles depend on. `tessera serve`, the worker and the coordinator all decide with
 * these, so they can never disagree on what a name means.
 */
#ifndef TSR_SERVED_H
#define TSR_SERVED_H

#include <stddef.h>

#include "tsr/config.h"
#include "tsr/error.h"

/* Loads a config from text (label names it in errors), its tables' schemas from warehouse
 * (NULL: without schemas). On failure *out is NULL and err joins the diagnostics. */
int tsr_served_load_conf(const char *warehouse, const char *text, size_t n, const char *label,
                         tsr_config_t **out, tsr_error_t *err);

/* The GroupBys a config serves, at most max: the GroupBy itself, or a Join's parts in order
 * (a Join part's index is its index here). StagingQueries serve none. */
size_t tsr_served_group_bys(const tsr_config_t *conf, const tsr_conf_group_by_t **out, size_t max);

/* 1 for an entity GroupBy (snapshot sources only, or no aggregations): served from stored
 * values, not tiles. */
int tsr_served_is_entity(const tsr_conf_group_by_t *g);

/* Everything the tiles and the stream evaluation of g depend on, as a string (malloc'd):
 * equal fingerprints = the same stored state is valid for both definitions. */
char *tsr_served_fingerprint(const tsr_conf_group_by_t *g);

#endif
