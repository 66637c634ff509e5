/*
 * config.h — the config model: Chronon compiled-JSON GroupBys, Joins and StagingQueries
 * (SPEC §2), loaded into C structs, validated, and expanded into typed output columns (§3-§5).
 *
 * Design:
 *   - One call, tsr_config_load(), reads a file, detects its kind and dialect, builds the model
 *     and validates it. Every error is collected into a tsr_diag_t as
 *         "<file>: <json path>: <reason>"
 *     e.g. "card_txn.v1: aggregations[2].argMap.k: required for LAST_K" — validation never
 *     stops at the first problem.
 *   - One arena per loaded config owns every node, string and column list; tsr_config_free()
 *     releases it all. Nodes keep their JSON path so later stages can report errors too.
 *   - Selects are ORDERED (name, expression) pairs in JSON object order.
 *   - Output columns (tsr_conf_column_t) carry a type; TSR_ANY when a raw column's type is not
 *     known (no table schema). A Join or entity GroupBy whose source has no selects and no
 *     schema passes "all raw columns" through: the model says so with a flag instead of
 *     guessing names.
 *
 * Invariants: after a successful load (return 0) every aggregation has a valid op, k and
 * percentiles parsed, windows with length > 0, and `columns` lists the output in SPEC order
 * with unique names. After a failed validation (TSR_ECONFIG) the model is still returned for
 * inspection, but derived fields (columns, types) may be partial.
 */
#ifndef TSR_CONFIG_H
#define TSR_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#include "tsr/agg.h"
#include "tsr/error.h"
#include "tsr/mem.h"
#include "tsr/value.h"
#include "tsr/window.h"

typedef enum tsr_conf_kind {
    TSR_CONF_GROUP_BY = 1,
    TSR_CONF_JOIN = 2,
    TSR_CONF_STAGING_QUERY = 3,
} tsr_conf_kind_t;

/* Chronon code bases number operations 18..20 differently (SPEC §2, docs/config.md). */
typedef enum tsr_dialect {
    TSR_DIALECT_AUTO = 0,       /* detect from the MetaData shape; airbnb when undecidable */
    TSR_DIALECT_AIRBNB = 1,     /* 18 APPROX_HISTOGRAM_K, 19 BOUNDED_UNIQUE_COUNT */
    TSR_DIALECT_ZIPLINE = 2,    /* 18 APPROX_FREQUENT_K, 19 APPROX_HEAVY_HITTERS_K, 20 UNIQUE_TOP_K */
} tsr_dialect_t;

typedef enum tsr_accuracy {
    TSR_ACCURACY_TEMPORAL = 0,
    TSR_ACCURACY_SNAPSHOT = 1,
} tsr_accuracy_t;

typedef enum tsr_source_kind {
    TSR_SOURCE_EVENTS = 1,
    TSR_SOURCE_ENTITIES = 2,
    TSR_SOURCE_JOIN = 3,        /* joinSource: a Join's output feeds a GroupBy (chaining) */
} tsr_source_kind_t;

/* One (key, value) string pair: selects (alias -> expression), argMap, keyMapping. */
typedef struct tsr_conf_kv {
    const char *key;
    const char *value;
} tsr_conf_kv_t;

/* One output column. */
typedef struct tsr_conf_column {
    const char *name;
    tsr_type_t type;
} tsr_conf_column_t;

typedef struct tsr_conf_metadata {
    const char *name;           /* required */
    const char *clean_name;     /* name with every char outside [A-Za-z0-9_] -> '_' (SPEC §3) */
    const char *team;           /* NULL when absent */
    const char *output_namespace;
    const char *custom_json;    /* the raw string, not parsed */
    int online;                 /* 0/1; 0 when absent */
} tsr_conf_metadata_t;

typedef struct tsr_conf_query {
    const tsr_conf_kv_t *selects;   /* ordered as in the JSON object */
    size_t n_selects;               /* 0 = every raw column passes through */
    const char *const *wheres;      /* ANDed */
    size_t n_wheres;
    const char *time_column;        /* NULL when absent (events default to "ts") */
    const char *start_partition, *end_partition;
    const char *const *setups;
    size_t n_setups;
    const char *mutation_time_column, *reversal_column, *partition_column;
    const char *path;               /* JSON path of the query object */
} tsr_conf_query_t;

struct tsr_conf_join;

typedef struct tsr_conf_source {
    tsr_source_kind_t kind;
    const char *table;              /* events.table or entities.snapshotTable; NULL for joinSource */
    const char *topic;              /* events.topic */
    int is_cumulative;              /* events.isCumulative */
    const char *mutation_table, *mutation_topic;    /* entities (loaded, not used yet) */
    struct tsr_conf_join *join;     /* joinSource.join */
    tsr_conf_query_t query;
    const char *path;               /* e.g. "sources[0]" */

    /* Filled by validation: the columns the query produces, or all_raw = 1 when selects are
     * empty and the raw columns are unknown (no schema). */
    const tsr_conf_column_t *columns;
    size_t n_columns;
    int all_raw;
} tsr_conf_source_t;

typedef struct tsr_conf_window {
    int64_t length;                 /* > 0 */
    tsr_time_unit_t unit;
    int json_index;                 /* position in the JSON `windows` list (for error paths) */
} tsr_conf_window_t;

typedef struct tsr_conf_aggregation {
    const char *input_column;
    tsr_op_t op;                    /* TSR_OP__COUNT when the config's operation was invalid */
    const tsr_conf_kv_t *arg_map;
    size_t n_args;
    int64_t k;                      /* parsed argMap.k; 0 when absent */
    const double *percentiles;      /* parsed argMap.percentiles (APPROX_PERCENTILE) */
    size_t n_percentiles;           /* 0 = default [0.5] */
    const tsr_conf_window_t *windows;
    size_t n_windows;               /* 0 = unwindowed (lifetime) */
    const char *const *buckets;
    size_t n_buckets;
    const char *path;               /* e.g. "aggregations[2]" */
    tsr_type_t input_type;          /* filled by validation (TSR_ANY when unknown) */
    int invalid;                    /* 1 when loading already reported an error in it */
} tsr_conf_aggregation_t;

typedef struct tsr_conf_derivation {
    const char *name;               /* "*" with expression "*" = all base columns */
    const char *expression;
    const char *path;
} tsr_conf_derivation_t;

/* One aggregation output column before derivations (SPEC §4 expansion): which aggregation,
 * window and bucket it is. The engine computes these; derivations then map them to features. */
typedef struct tsr_conf_agg_part {
    const char *name;               /* <input>_<op>[_<window>][_by_<bucket>] */
    tsr_type_t type;
    size_t agg;                     /* index into tsr_conf_group_by_t.aggs */
    int window;                     /* index into that aggregation's windows; -1 = unwindowed */
    int bucket;                     /* index into its buckets; -1 = not bucketed */
} tsr_conf_agg_part_t;

typedef struct tsr_conf_group_by {
    tsr_conf_metadata_t meta;
    tsr_conf_source_t *sources;
    size_t n_sources;
    const char *const *key_columns;
    size_t n_keys;
    tsr_conf_aggregation_t *aggs;
    size_t n_aggs;
    int has_aggregations;           /* 0: no `aggregations` (an entity GroupBy serving columns) */
    int accuracy_set;               /* 1 when the config says it */
    tsr_accuracy_t accuracy;        /* resolved: unset -> TEMPORAL if any events topic, else SNAPSHOT */
    const tsr_conf_derivation_t *derivations;
    size_t n_derivations;
    const char *backfill_start_date;
    const char *path;               /* "" for a top-level GroupBy, "joinParts[1].groupBy" inlined */

    /* Filled by validation. */
    const tsr_conf_column_t *keys;          /* key columns with their types */
    const tsr_conf_column_t *features;      /* after derivations, in output order */
    size_t n_features;
    const tsr_conf_column_t *base_features; /* before derivations: SPEC §4 expansion order, or
                                               the served columns without aggregations */
    size_t n_base_features;
    const tsr_conf_agg_part_t *parts;       /* aggregation columns before derivations, in */
    size_t n_parts;                         /* expansion order (none without aggregations) */
} tsr_conf_group_by_t;

typedef struct tsr_conf_join_part {
    tsr_conf_group_by_t *group_by;
    const tsr_conf_kv_t *key_mapping;   /* left column -> GroupBy key */
    size_t n_key_mapping;
    const char *prefix;                 /* NULL when absent */
    int use_long_names;                 /* zipline: 0 -> columns prefixed by the keys; default 1 */
    const char *column_prefix;          /* filled by validation: "[prefix_]<gb cleanName>_" */
    const char *path;
} tsr_conf_join_part_t;

/* onlineExternalParts entry; only the `contextual` source is supported. */
typedef struct tsr_conf_external_part {
    const char *source_name;
    const char *prefix;
    const tsr_conf_column_t *keys;
    size_t n_keys;
    const tsr_conf_column_t *values;    /* value schema fields */
    size_t n_values;
    const char *path;
} tsr_conf_external_part_t;

typedef struct tsr_conf_join {
    tsr_conf_metadata_t meta;
    tsr_conf_source_t left;
    tsr_conf_join_part_t *parts;
    size_t n_parts;
    tsr_conf_external_part_t *externals;
    size_t n_externals;
    const tsr_conf_derivation_t *derivations;
    size_t n_derivations;
    const char *const *row_ids;
    size_t n_row_ids;
    const char *path;

    /* Filled by validation: left columns (left.columns without ts/ds), then the features after
     * derivations. Output = [left columns | all raw when left.all_raw], ts, ds, features. */
    const tsr_conf_column_t *features;
    size_t n_features;
    /* Before derivations: every part's features under its column prefix, then the contextual
     * columns. */
    const tsr_conf_column_t *base_features;
    size_t n_base_features;
} tsr_conf_join_t;

typedef struct tsr_conf_staging_query {
    tsr_conf_metadata_t meta;
    const char *query;
    const char *start_partition;
    const char *const *setups;
    size_t n_setups;
} tsr_conf_staging_query_t;

typedef struct tsr_config {
    tsr_arena_t arena;              /* owns everything below */
    const char *file;               /* as given to tsr_config_load */
    tsr_conf_kind_t kind;
    tsr_dialect_t dialect;          /* resolved (never AUTO) */
    const char *dialect_reason;     /* e.g. "metaData.executionInfo", "default", "--dialect" */
    tsr_conf_group_by_t *group_by;  /* kind == GROUP_BY */
    tsr_conf_join_t *join;          /* kind == JOIN */
    tsr_conf_staging_query_t *staging_query; /* kind == STAGING_QUERY */

    /* Output columns (filled by validation). GroupBy: keys, ds, features. Join: left columns,
     * ts, ds, features; when all_raw_left is 1 the left's raw columns (unknown here) come
     * first. StagingQuery: none (its SQL decides). */
    const tsr_conf_column_t *columns;
    size_t n_columns;
    int all_raw_left;
    int columns_known;              /* 0 for a StagingQuery */
} tsr_config_t;

typedef struct tsr_config_options {
    tsr_dialect_t dialect;          /* AUTO unless forced */
    const char *warehouse;          /* NULL: no table schemas; else <DIR>/<ns>/<name>/_schema.json */
} tsr_config_options_t;

/* Loads, detects kind and dialect, builds and validates. Returns
 *   0             valid; *out set;
 *   TSR_ECONFIG   invalid (or unsupported features); every error added to diag; *out set
 *                 for inspection, except when the kind cannot be told (*out NULL);
 *   TSR_EPARSE    malformed JSON ("<file>:<line>:<column>: <reason>" in diag) or not a JSON
 *                 object; *out NULL;
 *   TSR_ENOTFOUND / TSR_EIO  the file cannot be read, TSR_EINVAL it is a directory; *out NULL.
 * opt may be NULL (AUTO dialect, no warehouse). Caller frees *out with tsr_config_free. */
int tsr_config_load(const char *file, const tsr_config_options_t *opt, tsr_config_t **out,
                    tsr_diag_t *diag);
/* Same from memory; label names the input in errors (e.g. a file name). */
int tsr_config_load_string(const char *text, size_t n, const char *label,
                           const tsr_config_options_t *opt, tsr_config_t **out, tsr_diag_t *diag);
void tsr_config_free(tsr_config_t *c);

/* The config's metaData (of whichever kind). */
const tsr_conf_metadata_t *tsr_config_metadata(const tsr_config_t *c);

/* "GroupBy", "Join", "StagingQuery". */
const char *tsr_conf_kind_name(tsr_conf_kind_t k);
/* "airbnb", "zipline", "auto". */
const char *tsr_dialect_name(tsr_dialect_t d);
/* Parses "airbnb" / "zipline" / "auto"; returns 0 or TSR_EINVAL. */
int tsr_dialect_parse(const char *s, tsr_dialect_t *out);

/* SPEC §3 clean name: every char outside [A-Za-z0-9_] -> '_'. Writes at most n-1 chars and a
 * NUL into out; returns out. */
char *tsr_conf_clean_name(const char *name, char *out, size_t n);

/* The Kafka topic name of an events source's topic (`name` or `kafka://name[/k=v...]` ->
 * `name`) into buf (cap bytes); NULL when topic is empty or the name does not fit. */
const char *tsr_conf_topic_name(const char *topic, char *buf, size_t cap);

/* Loads a table schema file (<warehouse>/<ns>/<name>/_schema.json: a JSON object mapping
 * column -> type name, in column order). Returns 0 and the columns in arena, TSR_ENOTFOUND
 * when the file does not exist, or TSR_EPARSE / TSR_ETYPE with err set. */
int tsr_conf_schema_load(const char *warehouse, const char *table, tsr_arena_t *arena,
                         tsr_conf_column_t **cols, size_t *n, tsr_error_t *err);

#endif
