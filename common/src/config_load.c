/*
 * config_load.c — phase 1 of config loading: the jansson tree -> the C model (config.h).
 *
 * Design: one builder per Thrift struct (metaData, query, source, aggregation, groupBy,
 * joinPart, join, stagingQuery). Each takes the JSON object and the JSON path of that object,
 * copies what it needs into the config arena and reports structural problems (missing
 * required fields, wrong JSON types, unknown enum values, unsupported features) with the path
 * of the offending field. It never stops early: a bad field is reported and skipped, so the
 * user sees every error in one run.
 *
 * Encodings accepted (SPEC §2): enums as Chronon's integers or their names (any case);
 * booleans as true/false or 1/0; JSON null is the same as an absent field; unknown fields are
 * ignored. Operation ids 18..20 are read per dialect (tsr__conf_op_from_id).
 *
 * Invariant: every pointer stored in the model points into the config arena.
 */
#include "config_int.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "tsr/time.h"

/* ---- small JSON helpers ---------------------------------------------------------------- */

static json_t *jget(json_t *obj, const char *key) {
    json_t *v = json_object_get(obj, key);
    return json_is_null(v) ? NULL : v;
}

static const char *jtype_name(const json_t *v) {
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER: return "an integer";
    case JSON_REAL: return "a number";
    case JSON_TRUE: case JSON_FALSE: return "a boolean";
    default: return "null";
    }
}

/* Optional (or required) string field. */
static const char *get_str(tsr__conf_ctx_t *cx, json_t *obj, const char *key, const char *base,
                           int required) {
    json_t *v = jget(obj, key);
    if (!v) {
        if (required) tsr__conf_err(cx, tsr__conf_path(cx, base, "%s", key), "required");
        return NULL;
    }
    if (!json_is_string(v)) {
        tsr__conf_err(cx, tsr__conf_path(cx, base, "%s", key), "must be a string, got %s",
                      jtype_name(v));
        return NULL;
    }
    return tsr_arena_strdup(cx->arena, json_string_value(v));
}

/* Boolean: true/false or 1/0 (Chronon's Thrift JSON writes 1/0). */
static int get_bool(tsr__conf_ctx_t *cx, json_t *obj, const char *key, const char *base,
                    int dflt) {
    json_t *v = jget(obj, key);
    if (!v) return dflt;
    if (json_is_boolean(v)) return json_is_true(v);
    if (json_is_integer(v) && (json_integer_value(v) == 0 || json_integer_value(v) == 1))
        return (int)json_integer_value(v);
    tsr__conf_err(cx, tsr__conf_path(cx, base, "%s", key),
                  "must be a boolean (true/false or 1/0), got %s", jtype_name(v));
    return dflt;
}

/* Array of strings; *n = 0 when absent. */
static const char *const *get_str_list(tsr__conf_ctx_t *cx, json_t *obj, const char *key,
                                       const char *base, size_t *n) {
    *n = 0;
    json_t *v = jget(obj, key);
    if (!v) return NULL;
    const char *path = tsr__conf_path(cx, base, "%s", key);
    if (!json_is_array(v)) {
        tsr__conf_err(cx, path, "must be a list of strings, got %s", jtype_name(v));
        return NULL;
    }
    size_t len = json_array_size(v), k = 0;
    const char **out = tsr_arena_alloc(cx->arena, (len ? len : 1) * sizeof *out);
    for (size_t i = 0; i < len; i++) {
        json_t *e = json_array_get(v, i);
        if (!json_is_string(e)) {
            tsr__conf_err(cx, tsr__conf_path(cx, path, "[%zu]", i), "must be a string, got %s",
                          jtype_name(e));
            continue;
        }
        out[k++] = tsr_arena_strdup(cx->arena, json_string_value(e));
    }
    *n = k;
    return out;
}

/* Object of string -> string, in JSON order. Numbers and booleans as values are accepted as
 * their text (argMap values are strings in Thrift but hand-written configs write numbers). */
static const tsr_conf_kv_t *get_kv(tsr__conf_ctx_t *cx, json_t *obj, const char *key,
                                   const char *base, size_t *n) {
    *n = 0;
    json_t *v = jget(obj, key);
    if (!v) return NULL;
    const char *path = tsr__conf_path(cx, base, "%s", key);
    if (!json_is_object(v)) {
        tsr__conf_err(cx, path, "must be an object of strings, got %s", jtype_name(v));
        return NULL;
    }
    size_t len = json_object_size(v), k = 0;
    tsr_conf_kv_t *out = tsr_arena_alloc(cx->arena, (len ? len : 1) * sizeof *out);
    const char *name;
    json_t *e;
    json_object_foreach(v, name, e) {
        const char *val = NULL;
        if (json_is_string(e)) {
            val = tsr_arena_strdup(cx->arena, json_string_value(e));
        } else if (json_is_integer(e)) {
            val = tsr_arena_printf(cx->arena, "%lld", (long long)json_integer_value(e));
        } else if (json_is_real(e)) {
            val = tsr_arena_printf(cx->arena, "%.17g", json_real_value(e));
        } else if (json_is_boolean(e)) {
            val = json_is_true(e) ? "true" : "false";
        } else {
            tsr__conf_err(cx, tsr__conf_path(cx, path, "%s", name), "must be a string, got %s",
                          jtype_name(e));
            continue;
        }
        out[k].key = tsr_arena_strdup(cx->arena, name);
        out[k].value = val;
        k++;
    }
    *n = k;
    return out;
}

static void upper_copy(const char *s, char *out, size_t n) {
    size_t i = 0;
    for (; s[i] && i + 1 < n; i++) out[i] = (char)toupper((unsigned char)s[i]);
    out[i] = '\0';
}

/* An enum given as an integer or a name. names[i] is the name of value i. Returns the value,
 * or -1 after reporting. */
static int get_enum(tsr__conf_ctx_t *cx, json_t *v, const char *path, const char *what,
                    const char *const *names, int count) {
    if (json_is_integer(v)) {
        json_int_t x = json_integer_value(v);
        if (x >= 0 && x < count) return (int)x;
        tsr__conf_err(cx, path, "unknown %s %lld", what, (long long)x);
        return -1;
    }
    if (json_is_string(v)) {
        char up[64];
        upper_copy(json_string_value(v), up, sizeof up);
        for (int i = 0; i < count; i++)
            if (strcmp(up, names[i]) == 0) return i;
        tsr__conf_err(cx, path, "unknown %s '%s'", what, json_string_value(v));
        return -1;
    }
    tsr__conf_err(cx, path, "%s must be an integer or a name, got %s", what, jtype_name(v));
    return -1;
}

static const char *const k_unit_names[] = {"HOURS", "DAYS", "MINUTES"};
static const char *const k_accuracy_names[] = {"TEMPORAL", "SNAPSHOT"};

int tsr__conf_op_from_id(tsr_dialect_t d, int64_t id) {
    if (id < 0) return -1;
    if (id <= 17) return (int)id;       /* 0..17 are the same in both code bases */
    if (d == TSR_DIALECT_ZIPLINE) {
        switch (id) {
        case 18: return TSR_OP_APPROX_FREQUENT_K;
        case 19: return TSR_OP_APPROX_HEAVY_HITTERS_K;
        case 20: return TSR_OP_UNIQUE_TOP_K;
        default: return -1;
        }
    }
    if (id == 18) return TSR_OP_APPROX_HISTOGRAM_K;
    if (id == 19) return TSR_OP_BOUNDED_UNIQUE_COUNT;
    return -1;
}

/* ---- dialect detection ------------------------------------------------------------------ */

/* Zipline's MetaData carries executionInfo / sourceFile; airbnb's carries dependencies,
 * offlineSchedule and modeToEnvMap directly. The first metaData that decides wins, searched
 * depth-first from the root (the top-level metaData first). */
static tsr_dialect_t detect_in(json_t *node, const char **why, int depth) {
    if (depth > 32) return TSR_DIALECT_AUTO;
    if (json_is_object(node)) {
        json_t *md = json_object_get(node, "metaData");
        if (json_is_object(md)) {
            static const char *const zip[] = {"executionInfo", "sourceFile"};
            static const char *const air[] = {"dependencies", "offlineSchedule", "modeToEnvMap"};
            for (size_t i = 0; i < sizeof zip / sizeof *zip; i++)
                if (jget(md, zip[i])) {
                    *why = zip[i];
                    return TSR_DIALECT_ZIPLINE;
                }
            for (size_t i = 0; i < sizeof air / sizeof *air; i++)
                if (jget(md, air[i])) {
                    *why = air[i];
                    return TSR_DIALECT_AIRBNB;
                }
        }
        const char *key;
        json_t *v;
        json_object_foreach(node, key, v) {
            if (strcmp(key, "metaData") == 0) continue;
            tsr_dialect_t d = detect_in(v, why, depth + 1);
            if (d != TSR_DIALECT_AUTO) return d;
        }
    } else if (json_is_array(node)) {
        size_t i;
        json_t *v;
        json_array_foreach(node, i, v) {
            tsr_dialect_t d = detect_in(v, why, depth + 1);
            if (d != TSR_DIALECT_AUTO) return d;
        }
    }
    return TSR_DIALECT_AUTO;
}

tsr_dialect_t tsr__conf_detect_dialect(json_t *root, const char **why) {
    *why = "default";
    tsr_dialect_t d = detect_in(root, why, 0);
    return d == TSR_DIALECT_AUTO ? TSR_DIALECT_AIRBNB : d;
}

/* ---- builders ---------------------------------------------------------------------------- */

static void build_metadata(tsr__conf_ctx_t *cx, json_t *obj, const char *base,
                           tsr_conf_metadata_t *md) {
    memset(md, 0, sizeof *md);
    const char *path = tsr__conf_path(cx, base, "metaData");
    json_t *m = jget(obj, "metaData");
    if (!m) {
        tsr__conf_err(cx, path, "required");
        return;
    }
    if (!json_is_object(m)) {
        tsr__conf_err(cx, path, "must be an object, got %s", jtype_name(m));
        return;
    }
    md->name = get_str(cx, m, "name", path, 1);
    if (md->name && !md->name[0]) tsr__conf_err(cx, tsr__conf_path(cx, path, "name"), "empty");
    if (md->name) {
        size_t n = strlen(md->name) + 1;
        char *clean = tsr_arena_alloc(cx->arena, n);
        md->clean_name = tsr_conf_clean_name(md->name, clean, n);
    }
    md->team = get_str(cx, m, "team", path, 0);
    md->output_namespace = get_str(cx, m, "outputNamespace", path, 0);
    md->custom_json = get_str(cx, m, "customJson", path, 0);
    md->online = get_bool(cx, m, "online", path, 0);
}

static int check_ds(tsr__conf_ctx_t *cx, const char *ds, const char *path) {
    int64_t day;
    if (ds && tsr_ds_parse(ds, &day) != 0) {
        tsr__conf_err(cx, path, "'%s' is not a date YYYY-MM-DD", ds);
        return -1;
    }
    return 0;
}

static void build_query(tsr__conf_ctx_t *cx, json_t *q, const char *path, tsr_conf_query_t *out) {
    memset(out, 0, sizeof *out);
    out->path = path;
    if (!q) return;
    if (!json_is_object(q)) {
        tsr__conf_err(cx, path, "must be an object, got %s", jtype_name(q));
        return;
    }
    out->selects = get_kv(cx, q, "selects", path, &out->n_selects);
    for (size_t i = 0; i < out->n_selects; i++)
        if (!out->selects[i].key[0])
            tsr__conf_err(cx, tsr__conf_path(cx, path, "selects"), "empty column name");
    out->wheres = get_str_list(cx, q, "wheres", path, &out->n_wheres);
    out->time_column = get_str(cx, q, "timeColumn", path, 0);
    out->start_partition = get_str(cx, q, "startPartition", path, 0);
    out->end_partition = get_str(cx, q, "endPartition", path, 0);
    check_ds(cx, out->start_partition, tsr__conf_path(cx, path, "startPartition"));
    check_ds(cx, out->end_partition, tsr__conf_path(cx, path, "endPartition"));
    out->setups = get_str_list(cx, q, "setups", path, &out->n_setups);
    if (out->n_setups)
        tsr__conf_err(cx, tsr__conf_path(cx, path, "setups"),
                      "unsupported: query setups (setups: Spark UDF registration)");
    out->mutation_time_column = get_str(cx, q, "mutationTimeColumn", path, 0);
    out->reversal_column = get_str(cx, q, "reversalColumn", path, 0);
    out->partition_column = get_str(cx, q, "partitionColumn", path, 0);
}

static tsr_conf_join_t *build_join(tsr__conf_ctx_t *cx, json_t *obj, const char *path);

const char *tsr_conf_topic_name(const char *topic, char *buf, size_t cap) {
    if (!topic || !topic[0]) return NULL;
    const char *t = topic;
    if (strncmp(t, "kafka://", 8) == 0) t += 8;
    size_t n = strcspn(t, "/");
    if (n == 0 || n >= cap) return NULL;
    memcpy(buf, t, n);
    buf[n] = 0;
    return buf;
}

/* A topic is `name` or `kafka://name[/k=v...]` (SPEC §3). */
static void check_topic(tsr__conf_ctx_t *cx, const char *topic, const char *path) {
    if (!topic) return;
    const char *sep = strstr(topic, "://");
    if (!sep) return;
    if ((size_t)(sep - topic) == 5 && strncmp(topic, "kafka", 5) == 0) {
        if (!sep[3] || sep[3] == '/') tsr__conf_err(cx, path, "empty topic name");
        return;
    }
    tsr__conf_err(cx, path, "unsupported: topic scheme '%.*s://' (only a Kafka topic name or kafka://)",
                  (int)(sep - topic), topic);
}

static void build_source(tsr__conf_ctx_t *cx, json_t *s, const char *path, tsr_conf_source_t *out,
                         int allow_join_source) {
    memset(out, 0, sizeof *out);
    out->path = path;
    if (!json_is_object(s)) {
        tsr__conf_err(cx, path, "must be an object, got %s", s ? jtype_name(s) : "nothing");
        return;
    }
    json_t *ev = jget(s, "events"), *en = jget(s, "entities"), *js = jget(s, "joinSource");
    int count = !!ev + !!en + !!js;
    if (count == 0) {
        tsr__conf_err(cx, path, "one of events, entities or joinSource is required");
        return;
    }
    if (count > 1) {
        tsr__conf_err(cx, path, "exactly one of events, entities or joinSource expected, got %d",
                      count);
        return;
    }
    if (ev) {
        const char *p = tsr__conf_path(cx, path, "events");
        out->kind = TSR_SOURCE_EVENTS;
        if (!json_is_object(ev)) {
            tsr__conf_err(cx, p, "must be an object, got %s", jtype_name(ev));
            return;
        }
        out->table = get_str(cx, ev, "table", p, 1);
        out->topic = get_str(cx, ev, "topic", p, 0);
        check_topic(cx, out->topic, tsr__conf_path(cx, p, "topic"));
        out->is_cumulative = get_bool(cx, ev, "isCumulative", p, 0);
        build_query(cx, jget(ev, "query"), tsr__conf_path(cx, p, "query"), &out->query);
    } else if (en) {
        const char *p = tsr__conf_path(cx, path, "entities");
        out->kind = TSR_SOURCE_ENTITIES;
        if (!json_is_object(en)) {
            tsr__conf_err(cx, p, "must be an object, got %s", jtype_name(en));
            return;
        }
        out->table = get_str(cx, en, "snapshotTable", p, 1);
        out->mutation_table = get_str(cx, en, "mutationTable", p, 0);
        out->mutation_topic = get_str(cx, en, "mutationTopic", p, 0);
        build_query(cx, jget(en, "query"), tsr__conf_path(cx, p, "query"), &out->query);
    } else {
        const char *p = tsr__conf_path(cx, path, "joinSource");
        out->kind = TSR_SOURCE_JOIN;
        if (!allow_join_source) {
            tsr__conf_err(cx, p, "unsupported: a joinSource as a Join's left (joinSource)");
            return;
        }
        if (!json_is_object(js)) {
            tsr__conf_err(cx, p, "must be an object, got %s", jtype_name(js));
            return;
        }
        json_t *j = jget(js, "join");
        if (!j)
            tsr__conf_err(cx, tsr__conf_path(cx, p, "join"), "required");
        else
            out->join = build_join(cx, j, tsr__conf_path(cx, p, "join"));
        build_query(cx, jget(js, "query"), tsr__conf_path(cx, p, "query"), &out->query);
    }
}

/* argMap.k: a positive integer for the k-ops; HISTOGRAM allows 0 (no truncation). */
static void parse_k(tsr__conf_ctx_t *cx, tsr_conf_aggregation_t *a, const char *kpath,
                    const char *text) {
    char *end;
    errno = 0;
    long long v = strtoll(text, &end, 10);
    int min = a->op == TSR_OP_HISTOGRAM ? 0 : 1;
    while (*end == ' ') end++;
    if (!text[0] || *end || errno || v < min) {
        tsr__conf_err(cx, kpath, "must be a %s integer, got '%s'",
                      min ? "positive" : "non-negative", text);
        return;
    }
    if (v > TSR_AGG_MAX_K) {
        tsr__conf_err(cx, kpath, "%lld is larger than the maximum %d", v, TSR_AGG_MAX_K);
        return;
    }
    a->k = v;
}

/* argMap.percentiles: a JSON array inside a string, e.g. "[0.5, 0.99]", each in [0, 1]. */
static void parse_percentiles(tsr__conf_ctx_t *cx, tsr_conf_aggregation_t *a, const char *ppath,
                              const char *text) {
    json_error_t je;
    json_t *arr = json_loads(text, JSON_DECODE_ANY, &je);
    if (!arr || !json_is_array(arr) || json_array_size(arr) == 0) {
        tsr__conf_err(cx, ppath, "must be a non-empty JSON list of numbers in a string, e.g. "
                                 "\"[0.5, 0.99]\", got '%s'", text);
        json_decref(arr);
        return;
    }
    size_t n = json_array_size(arr);
    if (n > TSR_AGG_MAX_PERCENTILES) {
        tsr__conf_err(cx, ppath, "at most %d percentiles, got %zu", TSR_AGG_MAX_PERCENTILES, n);
        json_decref(arr);
        return;
    }
    double *p = tsr_arena_alloc(cx->arena, n * sizeof *p);
    int ok = 1;
    for (size_t i = 0; i < n; i++) {
        json_t *e = json_array_get(arr, i);
        if (!json_is_number(e)) {
            tsr__conf_err(cx, tsr__conf_path(cx, ppath, "[%zu]", i), "must be a number, got %s",
                          jtype_name(e));
            ok = 0;
            continue;
        }
        p[i] = json_number_value(e);
        if (!(p[i] >= 0.0 && p[i] <= 1.0)) {
            tsr__conf_err(cx, tsr__conf_path(cx, ppath, "[%zu]", i), "%g is outside [0, 1]", p[i]);
            ok = 0;
        }
    }
    json_decref(arr);
    if (ok) {
        a->percentiles = p;
        a->n_percentiles = n;
    }
}

static void build_aggregation(tsr__conf_ctx_t *cx, json_t *o, const char *path,
                              tsr_conf_aggregation_t *a) {
    int nerr0 = cx->nerr;
    memset(a, 0, sizeof *a);
    a->path = path;
    a->op = TSR_OP__COUNT;          /* "no valid operation" until one is read */
    a->input_type = TSR_ANY;
    if (!json_is_object(o)) {
        tsr__conf_err(cx, path, "must be an object, got %s", jtype_name(o));
        return;
    }
    a->input_column = get_str(cx, o, "inputColumn", path, 1);
    json_t *op = jget(o, "operation");
    const char *opath = tsr__conf_path(cx, path, "operation");
    if (!op) {
        tsr__conf_err(cx, opath, "required");
    } else if (json_is_integer(op)) {
        int v = tsr__conf_op_from_id(cx->cfg->dialect, json_integer_value(op));
        if (v < 0)
            tsr__conf_err(cx, opath, "unknown operation %lld (%s dialect)",
                          (long long)json_integer_value(op), tsr_dialect_name(cx->cfg->dialect));
        else
            a->op = (tsr_op_t)v;
    } else if (json_is_string(op)) {
        char up[64];
        tsr_op_t v;
        upper_copy(json_string_value(op), up, sizeof up);
        if (tsr_op_from_name(up, &v) != 0)
            tsr__conf_err(cx, opath, "unknown operation '%s'", json_string_value(op));
        else
            a->op = v;
    } else {
        tsr__conf_err(cx, opath, "operation must be an integer or a name, got %s", jtype_name(op));
    }

    const char *apath = tsr__conf_path(cx, path, "argMap");
    a->arg_map = get_kv(cx, o, "argMap", path, &a->n_args);
    const char *ktext = NULL, *ptext = NULL;
    for (size_t i = 0; i < a->n_args; i++) {
        if (strcmp(a->arg_map[i].key, "k") == 0) ktext = a->arg_map[i].value;
        else if (strcmp(a->arg_map[i].key, "percentiles") == 0) ptext = a->arg_map[i].value;
    }
    if (a->op < TSR_OP__COUNT) {
        const char *kpath = tsr__conf_path(cx, apath, "k");
        if (ktext)
            parse_k(cx, a, kpath, ktext);
        else if (tsr_op_requires_k(a->op))
            tsr__conf_err(cx, kpath, "required for %s", tsr_op_name(a->op));
        if (ptext) {
            if (a->op == TSR_OP_APPROX_PERCENTILE)
                parse_percentiles(cx, a, tsr__conf_path(cx, apath, "percentiles"), ptext);
            else
                tsr__conf_err(cx, tsr__conf_path(cx, apath, "percentiles"),
                              "only allowed for APPROX_PERCENTILE, not %s", tsr_op_name(a->op));
        }
    }

    json_t *w = jget(o, "windows");
    if (w) {
        const char *wpath = tsr__conf_path(cx, path, "windows");
        if (!json_is_array(w)) {
            tsr__conf_err(cx, wpath, "must be a list, got %s", jtype_name(w));
        } else if (json_array_size(w) == 0) {
            tsr__conf_err(cx, wpath, "empty list (omit `windows` for an unwindowed aggregation)");
        } else {
            size_t n = json_array_size(w), k = 0;
            tsr_conf_window_t *ws = tsr_arena_alloc(cx->arena, n * sizeof *ws);
            for (size_t i = 0; i < n; i++) {
                json_t *e = json_array_get(w, i);
                const char *ep = tsr__conf_path(cx, wpath, "[%zu]", i);
                if (!json_is_object(e)) {
                    tsr__conf_err(cx, ep, "must be an object {length, timeUnit}, got %s",
                                  jtype_name(e));
                    continue;
                }
                json_t *len = jget(e, "length"), *unit = jget(e, "timeUnit");
                int ok = 1;
                if (!len) {
                    tsr__conf_err(cx, tsr__conf_path(cx, ep, "length"), "required");
                    ok = 0;
                } else if (!json_is_integer(len)) {
                    tsr__conf_err(cx, tsr__conf_path(cx, ep, "length"),
                                  "must be an integer, got %s", jtype_name(len));
                    ok = 0;
                } else if (json_integer_value(len) <= 0) {
                    tsr__conf_err(cx, tsr__conf_path(cx, ep, "length"), "must be > 0, got %lld",
                                  (long long)json_integer_value(len));
                    ok = 0;
                }
                int u = -1;
                if (!unit) {
                    tsr__conf_err(cx, tsr__conf_path(cx, ep, "timeUnit"), "required");
                } else {
                    u = get_enum(cx, unit, tsr__conf_path(cx, ep, "timeUnit"), "time unit",
                                 k_unit_names, 3);
                }
                if (!ok || u < 0) continue;
                if (tsr_window_ms(json_integer_value(len), (tsr_time_unit_t)u) < 0) {
                    tsr__conf_err(cx, tsr__conf_path(cx, ep, "length"), "window too long");
                    continue;
                }
                ws[k].length = json_integer_value(len);
                ws[k].unit = (tsr_time_unit_t)u;
                ws[k].json_index = (int)i;
                k++;
            }
            a->windows = ws;
            a->n_windows = k;
        }
    }
    a->buckets = get_str_list(cx, o, "buckets", path, &a->n_buckets);
    a->invalid = cx->nerr != nerr0;
}

static const tsr_conf_derivation_t *build_derivations(tsr__conf_ctx_t *cx, json_t *obj,
                                                      const char *base, size_t *n) {
    *n = 0;
    json_t *d = jget(obj, "derivations");
    if (!d) return NULL;
    const char *path = tsr__conf_path(cx, base, "derivations");
    if (!json_is_array(d)) {
        tsr__conf_err(cx, path, "must be a list, got %s", jtype_name(d));
        return NULL;
    }
    size_t len = json_array_size(d), k = 0;
    tsr_conf_derivation_t *out = tsr_arena_alloc(cx->arena, (len ? len : 1) * sizeof *out);
    for (size_t i = 0; i < len; i++) {
        json_t *e = json_array_get(d, i);
        const char *ep = tsr__conf_path(cx, path, "[%zu]", i);
        if (!json_is_object(e)) {
            tsr__conf_err(cx, ep, "must be an object {name, expression}, got %s", jtype_name(e));
            continue;
        }
        const char *name = get_str(cx, e, "name", ep, 1);
        const char *expr = get_str(cx, e, "expression", ep, 1);
        if (!name || !expr) continue;
        if (!name[0]) {
            tsr__conf_err(cx, tsr__conf_path(cx, ep, "name"), "empty");
            continue;
        }
        out[k].name = name;
        out[k].expression = expr;
        out[k].path = ep;
        k++;
    }
    *n = k;
    return out;
}

static tsr_conf_group_by_t *build_group_by(tsr__conf_ctx_t *cx, json_t *obj, const char *path) {
    tsr_conf_group_by_t *g = tsr_arena_calloc(cx->arena, sizeof *g);
    g->path = path;
    if (!json_is_object(obj)) {
        tsr__conf_err(cx, path, "must be an object, got %s", jtype_name(obj));
        return g;
    }
    build_metadata(cx, obj, path, &g->meta);

    json_t *src = jget(obj, "sources");
    const char *spath = tsr__conf_path(cx, path, "sources");
    if (!src) {
        tsr__conf_err(cx, spath, "required");
    } else if (!json_is_array(src) || json_array_size(src) == 0) {
        tsr__conf_err(cx, spath, "must be a non-empty list of sources");
    } else {
        g->n_sources = json_array_size(src);
        g->sources = tsr_arena_calloc(cx->arena, g->n_sources * sizeof *g->sources);
        for (size_t i = 0; i < g->n_sources; i++)
            build_source(cx, json_array_get(src, i), tsr__conf_path(cx, spath, "[%zu]", i),
                         &g->sources[i], 1);
    }

    const char *kpath = tsr__conf_path(cx, path, "keyColumns");
    if (!jget(obj, "keyColumns")) {
        tsr__conf_err(cx, kpath, "required");
    } else {
        g->key_columns = get_str_list(cx, obj, "keyColumns", path, &g->n_keys);
        if (json_is_array(jget(obj, "keyColumns")) && g->n_keys == 0)
            tsr__conf_err(cx, kpath, "must list at least one key column");
    }

    json_t *aggs = jget(obj, "aggregations");
    if (aggs) {
        const char *apath = tsr__conf_path(cx, path, "aggregations");
        g->has_aggregations = 1;
        if (!json_is_array(aggs)) {
            tsr__conf_err(cx, apath, "must be a list, got %s", jtype_name(aggs));
        } else {
            g->n_aggs = json_array_size(aggs);
            g->aggs = tsr_arena_calloc(cx->arena, (g->n_aggs ? g->n_aggs : 1) * sizeof *g->aggs);
            for (size_t i = 0; i < g->n_aggs; i++)
                build_aggregation(cx, json_array_get(aggs, i),
                                  tsr__conf_path(cx, apath, "[%zu]", i), &g->aggs[i]);
        }
    }

    json_t *acc = jget(obj, "accuracy");
    if (acc) {
        int v = get_enum(cx, acc, tsr__conf_path(cx, path, "accuracy"), "accuracy",
                         k_accuracy_names, 2);
        if (v >= 0) {
            g->accuracy_set = 1;
            g->accuracy = (tsr_accuracy_t)v;
        }
    }
    g->derivations = build_derivations(cx, obj, path, &g->n_derivations);
    g->backfill_start_date = get_str(cx, obj, "backfillStartDate", path, 0);
    check_ds(cx, g->backfill_start_date, tsr__conf_path(cx, path, "backfillStartDate"));
    return g;
}

/* Chronon's TDataType kinds (api.thrift DataKind) for external part schemas. */
static int data_kind_type(json_t *dt, tsr_type_t *out) {
    json_t *k = dt ? jget(dt, "kind") : NULL;
    if (!json_is_integer(k)) return -1;
    switch (json_integer_value(k)) {
    case 0: *out = TSR_BOOL; return 0;                      /* BOOLEAN */
    case 1: case 2: case 3: case 4: *out = TSR_LONG; return 0;  /* BYTE SHORT INT LONG */
    case 5: case 6: *out = TSR_DOUBLE; return 0;            /* FLOAT DOUBLE */
    case 7: *out = TSR_STRING; return 0;                    /* STRING */
    default: return -1;  /* BINARY DATE TIMESTAMP MAP LIST STRUCT: not modelled */
    }
}

static const tsr_conf_column_t *build_schema_fields(tsr__conf_ctx_t *cx, json_t *schema,
                                                    const char *path, size_t *n) {
    *n = 0;
    json_t *params = schema ? jget(schema, "params") : NULL;
    if (!params) return NULL;
    const char *pp = tsr__conf_path(cx, path, "params");
    if (!json_is_array(params)) {
        tsr__conf_err(cx, pp, "must be a list, got %s", jtype_name(params));
        return NULL;
    }
    size_t len = json_array_size(params), k = 0;
    tsr_conf_column_t *cols = tsr_arena_alloc(cx->arena, (len ? len : 1) * sizeof *cols);
    for (size_t i = 0; i < len; i++) {
        json_t *f = json_array_get(params, i);
        const char *fp = tsr__conf_path(cx, pp, "[%zu]", i);
        const char *name = json_is_object(f) ? get_str(cx, f, "name", fp, 1) : NULL;
        if (!name) continue;
        tsr_type_t t;
        if (data_kind_type(jget(f, "dataType"), &t) != 0) {
            tsr__conf_err(cx, tsr__conf_path(cx, fp, "dataType"),
                          "unsupported: external field data type (only boolean, integer, "
                          "floating and string kinds)");
            continue;
        }
        cols[k].name = name;
        cols[k].type = t;
        k++;
    }
    *n = k;
    return cols;
}

static void build_external_parts(tsr__conf_ctx_t *cx, json_t *obj, const char *base,
                                 tsr_conf_join_t *j) {
    json_t *ext = jget(obj, "onlineExternalParts");
    if (!ext) return;
    const char *path = tsr__conf_path(cx, base, "onlineExternalParts");
    if (!json_is_array(ext)) {
        tsr__conf_err(cx, path, "must be a list, got %s", jtype_name(ext));
        return;
    }
    size_t len = json_array_size(ext);
    j->externals = tsr_arena_calloc(cx->arena, (len ? len : 1) * sizeof *j->externals);
    for (size_t i = 0; i < len; i++) {
        json_t *e = json_array_get(ext, i);
        const char *ep = tsr__conf_path(cx, path, "[%zu]", i);
        json_t *src = json_is_object(e) ? jget(e, "source") : NULL;
        const char *sp = tsr__conf_path(cx, ep, "source");
        if (!json_is_object(src)) {
            tsr__conf_err(cx, sp, "required (an object)");
            continue;
        }
        json_t *md = jget(src, "metadata");
        const char *name = json_is_object(md)
                               ? get_str(cx, md, "name", tsr__conf_path(cx, sp, "metadata"), 1)
                               : NULL;
        if (!name) {
            if (!json_is_object(md)) tsr__conf_err(cx, tsr__conf_path(cx, sp, "metadata"), "required");
            continue;
        }
        /* A non-contextual source is reported but still modelled, so derivations that use
         * its columns do not cascade into "unknown column" errors. */
        if (strcmp(name, "contextual") != 0)
            tsr__conf_err(cx, sp, "unsupported: external source '%s' (onlineExternalParts; only "
                                  "the contextual source is supported)", name);
        tsr_conf_external_part_t *x = &j->externals[j->n_externals++];
        x->source_name = name;
        x->path = ep;
        x->prefix = get_str(cx, e, "prefix", ep, 0);
        x->keys = build_schema_fields(cx, jget(src, "keySchema"), tsr__conf_path(cx, sp, "keySchema"),
                                      &x->n_keys);
        x->values = build_schema_fields(cx, jget(src, "valueSchema"),
                                        tsr__conf_path(cx, sp, "valueSchema"), &x->n_values);
    }
}

static tsr_conf_join_t *build_join(tsr__conf_ctx_t *cx, json_t *obj, const char *path) {
    tsr_conf_join_t *j = tsr_arena_calloc(cx->arena, sizeof *j);
    j->path = path;
    if (!json_is_object(obj)) {
        tsr__conf_err(cx, path, "must be an object, got %s", jtype_name(obj));
        return j;
    }
    build_metadata(cx, obj, path, &j->meta);
    const char *lpath = tsr__conf_path(cx, path, "left");
    json_t *left = jget(obj, "left");
    if (!left)
        tsr__conf_err(cx, lpath, "required");
    else
        build_source(cx, left, lpath, &j->left, 0);

    json_t *parts = jget(obj, "joinParts");
    const char *ppath = tsr__conf_path(cx, path, "joinParts");
    if (parts && !json_is_array(parts)) {
        tsr__conf_err(cx, ppath, "must be a list, got %s", jtype_name(parts));
    } else if (parts) {
        j->n_parts = json_array_size(parts);
        j->parts = tsr_arena_calloc(cx->arena, (j->n_parts ? j->n_parts : 1) * sizeof *j->parts);
        for (size_t i = 0; i < j->n_parts; i++) {
            json_t *p = json_array_get(parts, i);
            tsr_conf_join_part_t *jp = &j->parts[i];
            jp->path = tsr__conf_path(cx, ppath, "[%zu]", i);
            jp->use_long_names = 1;
            if (!json_is_object(p)) {
                tsr__conf_err(cx, jp->path, "must be an object, got %s", jtype_name(p));
                continue;
            }
            json_t *gb = jget(p, "groupBy");
            if (!gb)
                tsr__conf_err(cx, tsr__conf_path(cx, jp->path, "groupBy"), "required");
            else
                jp->group_by = build_group_by(cx, gb, tsr__conf_path(cx, jp->path, "groupBy"));
            jp->key_mapping = get_kv(cx, p, "keyMapping", jp->path, &jp->n_key_mapping);
            jp->prefix = get_str(cx, p, "prefix", jp->path, 0);
            jp->use_long_names = get_bool(cx, p, "useLongNames", jp->path, 1);
        }
    }
    build_external_parts(cx, obj, path, j);
    j->derivations = build_derivations(cx, obj, path, &j->n_derivations);
    j->row_ids = get_str_list(cx, obj, "rowIds", path, &j->n_row_ids);

    /* Features Tessera does not implement yet: reject with the field's path. */
    json_t *lp = jget(obj, "labelPart");
    if (lp) tsr__conf_err(cx, tsr__conf_path(cx, path, "labelPart"), "unsupported: label parts (labelPart)");
    lp = jget(obj, "labelParts");
    if (lp) tsr__conf_err(cx, tsr__conf_path(cx, path, "labelParts"), "unsupported: label parts (labelParts)");
    json_t *bp = jget(obj, "bootstrapParts");
    if (bp && (!json_is_array(bp) || json_array_size(bp) > 0))
        tsr__conf_err(cx, tsr__conf_path(cx, path, "bootstrapParts"),
                      "unsupported: bootstrap parts (bootstrapParts)");
    return j;
}

static tsr_conf_staging_query_t *build_staging(tsr__conf_ctx_t *cx, json_t *obj) {
    tsr_conf_staging_query_t *s = tsr_arena_calloc(cx->arena, sizeof *s);
    build_metadata(cx, obj, "", &s->meta);
    s->query = get_str(cx, obj, "query", "", 1);
    if (s->query && !s->query[strspn(s->query, " \t\r\n")])
        tsr__conf_err(cx, "query", "empty");
    s->start_partition = get_str(cx, obj, "startPartition", "", 0);
    check_ds(cx, s->start_partition, "startPartition");
    s->setups = get_str_list(cx, obj, "setups", "", &s->n_setups);
    if (s->n_setups)
        tsr__conf_err(cx, "setups", "unsupported: staging query setups (setups: Spark UDF "
                                    "registration; StagingQuery runs SQLite SQL)");
    return s;
}

void tsr__conf_build(tsr__conf_ctx_t *cx, json_t *root) {
    tsr_config_t *c = cx->cfg;
    switch (c->kind) {
    case TSR_CONF_GROUP_BY: c->group_by = build_group_by(cx, root, ""); break;
    case TSR_CONF_JOIN: c->join = build_join(cx, root, ""); break;
    case TSR_CONF_STAGING_QUERY: c->staging_query = build_staging(cx, root); break;
    }
}
