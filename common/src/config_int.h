/*
 * config_int.h — what the config module's files share: the load/validate context, the error
 * helper that prefixes file and JSON path, and the two phases.
 *
 * Phases: config_load.c turns the jansson tree into the model (structure, enums, booleans,
 * dialect, unsupported features); config_check.c validates semantics (expressions, columns,
 * aggregations, keys, derivations) and computes output columns. Both add every error they
 * find to the same diag and count them, so a run reports all problems at once.
 */
#ifndef TSR_CONFIG_INT_H
#define TSR_CONFIG_INT_H

#include <jansson.h>

#include "tsr/config.h"
#include "tsr/expr.h"

typedef struct tsr__conf_ctx {
    tsr_config_t *cfg;
    tsr_arena_t *arena;                 /* cfg->arena */
    tsr_diag_t *diag;
    const char *file;
    const tsr_config_options_t *opt;
    int nerr;
} tsr__conf_ctx_t;

/* Adds "<file>: <path>: <message>" to the diag and counts it. */
void tsr__conf_err(tsr__conf_ctx_t *cx, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* base + "." + sub (or base + sub when sub starts with '['; sub alone when base is ""),
 * allocated in the config arena. */
const char *tsr__conf_path(tsr__conf_ctx_t *cx, const char *base, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Phase 1: builds cfg's model from root (kind and dialect already set). */
void tsr__conf_build(tsr__conf_ctx_t *cx, json_t *root);
/* Detects the dialect from the MetaData shape; *why names the deciding field. */
tsr_dialect_t tsr__conf_detect_dialect(json_t *root, const char **why);
/* Phase 2: semantic checks and output columns. */
void tsr__conf_check(tsr__conf_ctx_t *cx);

/* Maps an operation id of the given dialect to tsr_op_t; -1 when unknown. */
int tsr__conf_op_from_id(tsr_dialect_t d, int64_t id);

#endif
