/*
 * config_check.c — phase 2 of config loading: semantic validation and output columns.
 *
 * Design, per node, bottom-up:
 *   source      raw schema (warehouse _schema.json, a chained Join's output, or — when
 *               neither is known — every column the expressions mention, typed ANY) ->
 *               compile selects / wheres / timeColumn with tsr_program_add -> the source's
 *               typed output columns, or "all raw columns" when selects are empty and the
 *               raw schema is unknown.
 *   GroupBy     sources -> keys, aggregation inputs and buckets must be produced by every
 *               source -> tsr_agg_new type-checks each aggregation and gives its output type
 *               -> feature names per SPEC §4 (buckets outer, windows inner) -> derivations.
 *   Join        left -> each part's GroupBy -> keys resolved through keyMapping against the
 *               left columns -> part columns `[prefix_]<gb cleanName>_<feature>` (zipline
 *               useLongNames=0: `[prefix_]<keys>_<feature>`) -> contextual external columns
 *               `ext_[prefix_]contextual_<field>` -> derivations over left, ts, ds, features.
 *
 * Derivations (SPEC §5): `*` expands in place to every base feature except those used as the
 * source of a rename (a derivation whose expression is a bare column); other entries compile
 * against (left columns | keys, ts, ds, base features). A derivation that names a left/key
 * column and is the identity (`ds` := `ds`) is a pass-through kept in its left position, as
 * Chronon keeps keys; any other clash with an existing output column is a duplicate.
 *
 * Invariant: every error names the JSON path of the field at fault; checks continue after
 * an error (with ANY types) so one run reports everything.
 */
#include "config_int.h"

#include <stdlib.h>
#include <string.h>

/* ---- column lists ------------------------------------------------------------------------ */

typedef struct collist {
    tsr_conf_column_t *v;
    const char **path;          /* where each column came from (for duplicate errors) */
    size_t n, cap;
} collist_t;

static void cl_push(tsr__conf_ctx_t *cx, collist_t *l, const char *name, tsr_type_t t,
                    const char *path) {
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 16;
        tsr_conf_column_t *v = tsr_arena_alloc(cx->arena, cap * sizeof *v);
        const char **p = tsr_arena_alloc(cx->arena, cap * sizeof *p);
        if (l->n) {
            memcpy(v, l->v, l->n * sizeof *v);
            memcpy(p, l->path, l->n * sizeof *p);
        }
        l->v = v;
        l->path = p;
        l->cap = cap;
    }
    l->v[l->n].name = name;
    l->v[l->n].type = t;
    l->path[l->n] = path;
    l->n++;
}

static int cols_find(const tsr_conf_column_t *v, size_t n, const char *name) {
    for (size_t i = 0; i < n; i++)
        if (strcmp(v[i].name, name) == 0) return (int)i;
    return -1;
}

static int cl_find(const collist_t *l, const char *name) { return cols_find(l->v, l->n, name); }

/* The type two sources agree on: equal, ANY if either is unknown, double for long vs double,
 * else -1 (a conflict). */
static int merge_type(tsr_type_t a, tsr_type_t b, tsr_type_t *out) {
    if (a == b) *out = a;
    else if (a == TSR_ANY || b == TSR_ANY) *out = TSR_ANY;
    else if (tsr_type_is_numeric(a) && tsr_type_is_numeric(b)) *out = TSR_DOUBLE;
    else return -1;
    return 0;
}

static const char *type_str(tsr__conf_ctx_t *cx, tsr_type_t t) {
    char buf[TSR_TYPE_NAME_MAX];
    return tsr_arena_strdup(cx->arena, tsr_type_name(t, buf, sizeof buf));
}

/* ---- expressions ------------------------------------------------------------------------- */

typedef struct ref_ctx {
    tsr__conf_ctx_t *cx;
    collist_t *cols;
} ref_ctx_t;

static void add_ref(void *ud, const char *name) {
    ref_ctx_t *r = ud;
    if (cl_find(r->cols, name) < 0)
        cl_push(r->cx, r->cols, tsr_arena_strdup(r->cx->arena, name), TSR_ANY, NULL);
}

/* Parses src (syntax and functions only) and adds every column it references, as ANY, to
 * cols when absent. Returns 0 or reports at path and returns -1. */
static int collect_refs(tsr__conf_ctx_t *cx, const char *src, const char *path, collist_t *cols) {
    tsr_expr_ast_t *ast;
    tsr_error_t err;
    tsr_error_clear(&err);
    if (tsr_expr_parse(src, cx->arena, &ast, &err) != 0) {
        tsr__conf_err(cx, path, "%s", err.msg);
        return -1;
    }
    ref_ctx_t r = {cx, cols};
    tsr_expr_columns(ast, add_ref, &r);
    return 0;
}

/* 1 when src is a bare column reference; *name then points at it (arena). */
static int bare_column(tsr__conf_ctx_t *cx, const char *src, const char **name) {
    tsr_expr_ast_t *ast;
    if (tsr_expr_parse(src, cx->arena, &ast, NULL) != 0) return 0;
    return tsr_expr_is_column(ast, name);
}

static tsr_program_t *program_for(const collist_t *cols) {
    const char **names = tsr_malloc((cols->n ? cols->n : 1) * sizeof *names);
    tsr_type_t *types = tsr_malloc((cols->n ? cols->n : 1) * sizeof *types);
    for (size_t i = 0; i < cols->n; i++) {
        names[i] = cols->v[i].name;
        types[i] = cols->v[i].type;
    }
    tsr_schema_t s = {cols->n, names, types};
    tsr_program_t *p = tsr_program_new(&s);
    free(names);
    free(types);
    return p;
}

/* Compiles src; reports at path on failure and returns -1 (type left ANY). */
static int compile(tsr__conf_ctx_t *cx, tsr_program_t *p, const char *src, const char *path,
                   tsr_type_t *type) {
    tsr_error_t err;
    tsr_error_clear(&err);
    *type = TSR_ANY;
    if (tsr_program_add(p, src, type, &err) < 0) {
        tsr__conf_err(cx, path, "%s", err.msg);
        *type = TSR_ANY;
        return -1;
    }
    return 0;
}

/* ---- sources ----------------------------------------------------------------------------- */

static void check_join(tsr__conf_ctx_t *cx, tsr_conf_join_t *j);

/* The columns a Join writes: left columns (without ts/ds), ts, ds, features. *known = 0 when
 * the left passes through raw columns nobody knows. */
static void join_output(tsr__conf_ctx_t *cx, tsr_conf_join_t *j, collist_t *out, int *known) {
    *known = !j->left.all_raw;
    for (size_t i = 0; i < j->left.n_columns; i++) {
        const tsr_conf_column_t *c = &j->left.columns[i];
        if (strcmp(c->name, "ts") == 0 || strcmp(c->name, "ds") == 0) continue;
        cl_push(cx, out, c->name, c->type, j->left.path);
    }
    cl_push(cx, out, "ts", TSR_LONG, j->left.path);
    cl_push(cx, out, "ds", TSR_STRING, j->left.path);
    for (size_t i = 0; i < j->n_features; i++)
        cl_push(cx, out, j->features[i].name, j->features[i].type, j->path);
}

static void check_source(tsr__conf_ctx_t *cx, tsr_conf_source_t *s) {
    collist_t raw = {0};
    int raw_known = 0;
    const tsr_conf_query_t *q = &s->query;

    if (s->kind == TSR_SOURCE_JOIN) {
        if (!s->join) return;
        check_join(cx, s->join);
        join_output(cx, s->join, &raw, &raw_known);
        if (!raw_known) raw.n = 0;
    } else if (s->table && cx->opt->warehouse) {
        tsr_conf_column_t *cols;
        size_t n;
        tsr_error_t err;
        tsr_error_clear(&err);
        int rc = tsr_conf_schema_load(cx->opt->warehouse, s->table, cx->arena, &cols, &n, &err);
        if (rc == 0) {
            raw_known = 1;
            for (size_t i = 0; i < n; i++) cl_push(cx, &raw, cols[i].name, cols[i].type, NULL);
        } else if (rc != TSR_ENOTFOUND) {
            tsr__conf_err(cx, tsr__conf_path(cx, s->path, "%s",
                                              s->kind == TSR_SOURCE_EVENTS ? "events.table"
                                                                           : "entities.snapshotTable"),
                          "%s", err.msg);
        }
    }

    const char *sel_base = tsr__conf_path(cx, q->path, "selects");
    unsigned char *skip = tsr_arena_calloc(cx->arena, q->n_selects + q->n_wheres + 2);
    if (!raw_known) {
        /* No schema: every column an expression mentions is a raw column of unknown type.
         * Parse errors and unknown functions are still reported here. */
        for (size_t i = 0; i < q->n_selects; i++)
            if (collect_refs(cx, q->selects[i].value,
                             tsr__conf_path(cx, sel_base, "%s", q->selects[i].key), &raw) != 0)
                skip[i] = 1;
        for (size_t i = 0; i < q->n_wheres; i++)
            if (collect_refs(cx, q->wheres[i], tsr__conf_path(cx, q->path, "wheres[%zu]", i),
                             &raw) != 0)
                skip[q->n_selects + i] = 1;
        if (q->time_column &&
            collect_refs(cx, q->time_column, tsr__conf_path(cx, q->path, "timeColumn"), &raw) != 0)
            skip[q->n_selects + q->n_wheres] = 1;
    }

    tsr_program_t *p = program_for(&raw);
    collist_t out = {0};
    for (size_t i = 0; i < q->n_selects; i++) {
        tsr_type_t t = TSR_ANY;
        const char *path = tsr__conf_path(cx, sel_base, "%s", q->selects[i].key);
        if (!skip[i]) compile(cx, p, q->selects[i].value, path, &t);
        cl_push(cx, &out, q->selects[i].key, t, path);
    }
    for (size_t i = 0; i < q->n_wheres; i++) {
        tsr_type_t t;
        const char *path = tsr__conf_path(cx, q->path, "wheres[%zu]", i);
        if (skip[q->n_selects + i] || compile(cx, p, q->wheres[i], path, &t) != 0) continue;
        if (t != TSR_BOOL && t != TSR_ANY && t != TSR_NULL)
            tsr__conf_err(cx, path, "a where clause must be boolean, got %s", type_str(cx, t));
    }
    if (q->time_column) {
        tsr_type_t t;
        const char *path = tsr__conf_path(cx, q->path, "timeColumn");
        if (!skip[q->n_selects + q->n_wheres] && compile(cx, p, q->time_column, path, &t) == 0 &&
            t != TSR_LONG && t != TSR_ANY)
            tsr__conf_err(cx, path, "must yield epoch milliseconds (long), got %s", type_str(cx, t));
    } else if (s->kind != TSR_SOURCE_ENTITIES && raw_known && cl_find(&raw, "ts") < 0) {
        tsr__conf_err(cx, tsr__conf_path(cx, q->path, "timeColumn"),
                      "absent, and the source has no ts column to default to");
    }
    tsr_program_free(p);

    if (q->n_selects) {
        s->columns = out.v;
        s->n_columns = out.n;
    } else if (raw_known) {
        s->columns = raw.v;
        s->n_columns = raw.n;
    } else {
        s->all_raw = 1;
    }
}

/* The data model of a source: a joinSource takes its Join's left. */
static tsr_source_kind_t source_model(const tsr_conf_source_t *s) {
    if (s->kind == TSR_SOURCE_JOIN) return s->join ? s->join->left.kind : TSR_SOURCE_EVENTS;
    return s->kind;
}

static int source_has_topic(const tsr_conf_source_t *s) {
    if (s->kind == TSR_SOURCE_JOIN) return s->join && s->join->left.topic;
    return s->kind == TSR_SOURCE_EVENTS && s->topic;
}

/* Looks a column up in every source of g: reports (at path, as `what`) each source whose
 * known columns lack it; returns the merged type (ANY when unknown). */
static tsr_type_t group_by_column(tsr__conf_ctx_t *cx, tsr_conf_group_by_t *g, const char *name,
                                  const char *what, const char *path, int *found) {
    tsr_type_t t = TSR_ANY;
    int first = 1;
    *found = 1;
    for (size_t i = 0; i < g->n_sources; i++) {
        const tsr_conf_source_t *s = &g->sources[i];
        if (s->all_raw || !s->kind) continue;
        int k = cols_find(s->columns, s->n_columns, name);
        if (k < 0) {
            tsr__conf_err(cx, path, "%s '%s' is not produced by %s%s", what, name,
                          s->query.n_selects ? tsr__conf_path(cx, s->query.path, "selects")
                                             : s->path,
                          s->query.n_selects ? "" : " (table schema)");
            *found = 0;
            continue;
        }
        tsr_type_t st = s->columns[k].type;
        if (first) {
            t = st;
            first = 0;
        } else if (merge_type(t, st, &t) != 0) {
            tsr__conf_err(cx, path, "%s '%s' has conflicting types across sources (%s in %s)",
                          what, name, type_str(cx, st), s->path);
            t = TSR_ANY;
        }
    }
    return t;
}

/* ---- derivations ------------------------------------------------------------------------- */

/* Applies derivs to base (the features). extra = the other columns expressions may use (join:
 * left columns, ts, ds; GroupBy: keys). extra_open = 1 when the left has unknown raw columns:
 * then any other identifier is accepted as one of them (typed ANY). */
static void apply_derivations(tsr__conf_ctx_t *cx, const collist_t *base, const collist_t *extra,
                              int extra_open, const tsr_conf_derivation_t *d, size_t n,
                              collist_t *out) {
    if (n == 0) {
        for (size_t i = 0; i < base->n; i++)
            cl_push(cx, out, base->v[i].name, base->v[i].type, base->path[i]);
        return;
    }
    collist_t schema = {0};
    for (size_t i = 0; i < extra->n; i++) cl_push(cx, &schema, extra->v[i].name, extra->v[i].type, NULL);
    for (size_t i = 0; i < base->n; i++)
        if (cl_find(&schema, base->v[i].name) < 0)
            cl_push(cx, &schema, base->v[i].name, base->v[i].type, NULL);
    const char **renamed = tsr_arena_alloc(cx->arena, n * sizeof *renamed);
    unsigned char *skip = tsr_arena_calloc(cx->arena, n);
    size_t n_renamed = 0;
    for (size_t i = 0; i < n; i++) {
        const char *col;
        if (strcmp(d[i].name, "*") == 0) continue;
        const char *epath = tsr__conf_path(cx, d[i].path, "expression");
        if (strcmp(d[i].expression, "*") == 0) {
            tsr__conf_err(cx, epath, "'*' is only allowed with name '*'");
            skip[i] = 1;
            continue;
        }
        if (extra_open && collect_refs(cx, d[i].expression, epath, &schema) != 0) skip[i] = 1;
        if (bare_column(cx, d[i].expression, &col)) renamed[n_renamed++] = col;
    }
    tsr_program_t *p = program_for(&schema);
    for (size_t i = 0; i < n; i++) {
        if (strcmp(d[i].name, "*") == 0) {
            if (strcmp(d[i].expression, "*") != 0) {
                tsr__conf_err(cx, tsr__conf_path(cx, d[i].path, "expression"),
                              "must be '*' when name is '*'");
                continue;
            }
            for (size_t b = 0; b < base->n; b++) {
                int is_src = 0;
                for (size_t r = 0; r < n_renamed && !is_src; r++)
                    is_src = strcmp(renamed[r], base->v[b].name) == 0;
                if (!is_src) cl_push(cx, out, base->v[b].name, base->v[b].type, base->path[b]);
            }
            continue;
        }
        if (skip[i]) continue;
        const char *col;
        /* `key` := `key` keeps a left/key column where it is (Chronon's ensured keys). */
        if (cols_find(extra->v, extra->n, d[i].name) >= 0 && bare_column(cx, d[i].expression, &col) &&
            strcmp(col, d[i].name) == 0)
            continue;
        tsr_type_t t;
        compile(cx, p, d[i].expression, tsr__conf_path(cx, d[i].path, "expression"), &t);
        cl_push(cx, out, d[i].name, t, tsr__conf_path(cx, d[i].path, "name"));
    }
    tsr_program_free(p);
}

static int ends_with(const char *s, const char *suffix) {
    size_t n = s ? strlen(s) : 0, m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

/* Reports every name of cols that repeats an earlier one or one of fixed. Each column's path
 * (where it was declared: an aggregation, a join part, a derivation's name) is the error's.
 * only_derived = 1 checks only clashes involving a derivation's own name (columns that `*`
 * copied from the base were checked with the base already). */
static void check_unique(tsr__conf_ctx_t *cx, const collist_t *fixed, const char *fixed_what,
                         const collist_t *cols, int only_derived) {
    for (size_t i = 0; i < cols->n; i++) {
        const char *name = cols->v[i].name;
        const char *where = cols->path[i] ? cols->path[i] : "";
        int derived_i = ends_with(cols->path[i], ".name");
        if (fixed && cl_find(fixed, name) >= 0) {
            if (!only_derived || derived_i)
                tsr__conf_err(cx, where, "duplicate output column '%s' (%s)", name, fixed_what);
            continue;
        }
        for (size_t k = 0; k < i; k++)
            if (strcmp(cols->v[k].name, name) == 0) {
                if (only_derived && !derived_i && !ends_with(cols->path[k], ".name")) break;
                tsr__conf_err(cx, where, "duplicate output column '%s' (also from %s)", name,
                              cols->path[k] && cols->path[k][0] ? cols->path[k] : "the root");
                break;
            }
    }
}

/* ---- GroupBy ----------------------------------------------------------------------------- */

/* Aggregation columns with their (aggregation, window, bucket) coordinates. */
typedef struct partlist {
    tsr_conf_agg_part_t *v;
    size_t n, cap;
} partlist_t;

static void part_push(tsr__conf_ctx_t *cx, partlist_t *l, const tsr_conf_agg_part_t *p) {
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 16;
        tsr_conf_agg_part_t *v = tsr_arena_alloc(cx->arena, cap * sizeof *v);
        if (l->n) memcpy(v, l->v, l->n * sizeof *v);
        l->v = v;
        l->cap = cap;
    }
    l->v[l->n++] = *p;
}

static void check_aggregation(tsr__conf_ctx_t *cx, tsr_conf_group_by_t *g, size_t ai,
                              collist_t *features, partlist_t *parts) {
    tsr_conf_aggregation_t *a = &g->aggs[ai];
    int found;
    if (a->op >= TSR_OP__COUNT || !a->input_column) return;
    a->input_type = group_by_column(cx, g, a->input_column, "input column",
                                    tsr__conf_path(cx, a->path, "inputColumn"), &found);
    for (size_t i = 0; i < a->n_buckets; i++) {
        const char *bp = tsr__conf_path(cx, a->path, "buckets[%zu]", i);
        tsr_type_t bt = group_by_column(cx, g, a->buckets[i], "bucket column", bp, &found);
        if (found && bt != TSR_ANY && !tsr_type_is_scalar(bt))
            tsr__conf_err(cx, bp, "bucket column '%s' must be a scalar, got %s", a->buckets[i],
                          type_str(cx, bt));
    }
    if (g->accuracy == TSR_ACCURACY_SNAPSHOT)
        for (size_t i = 0; i < a->n_windows; i++)
            if (a->windows[i].unit != TSR_UNIT_DAYS)
                tsr__conf_err(cx, tsr__conf_path(cx, a->path, "windows[%d].timeUnit",
                                                  a->windows[i].json_index),
                              "%s windows need TEMPORAL accuracy (this GroupBy is SNAPSHOT)",
                              a->windows[i].unit == TSR_UNIT_HOURS ? "HOURS" : "MINUTES");

    tsr_agg_spec_t spec = {a->op, a->input_type, a->n_buckets > 0, a->k, a->n_percentiles,
                           a->percentiles};
    tsr_agg_t *agg = NULL;
    tsr_error_t err;
    tsr_error_clear(&err);
    tsr_type_t out = TSR_ANY;
    /* An aggregation with a load error (bad k, percentiles, windows) was reported already;
     * the kernel would only repeat it. */
    if (a->invalid) {
        out = TSR_ANY;
    } else if (tsr_agg_new(&spec, &agg, &err) != 0) {
        tsr__conf_err(cx, a->path, "%s", err.msg);
    } else {
        out = tsr_agg_output_type(agg);
        tsr_agg_free(agg);
    }

    char opname[64], win[32];
    tsr_op_column_name(a->op, a->k, opname, sizeof opname);
    size_t nb = a->n_buckets ? a->n_buckets : 1, nw = a->n_windows ? a->n_windows : 1;
    for (size_t b = 0; b < nb; b++)
        for (size_t w = 0; w < nw; w++) {
            if (a->n_windows)
                tsr_window_suffix(a->windows[w].length, a->windows[w].unit, win, sizeof win);
            else
                win[0] = '\0';
            const char *name = tsr_arena_printf(
                cx->arena, "%s_%s%s%s%s%s", a->input_column, opname, win[0] ? "_" : "", win,
                a->n_buckets ? "_by_" : "", a->n_buckets ? a->buckets[b] : "");
            cl_push(cx, features, name, out, a->path);
            tsr_conf_agg_part_t part = {name, out, ai, a->n_windows ? (int)w : -1,
                                        a->n_buckets ? (int)b : -1};
            part_push(cx, parts, &part);
        }
}

static void check_group_by(tsr__conf_ctx_t *cx, tsr_conf_group_by_t *g) {
    for (size_t i = 0; i < g->n_sources; i++) check_source(cx, &g->sources[i]);

    /* One data model for all sources (Chronon asserts the same). */
    tsr_source_kind_t model = 0;
    int any_topic = 0;
    for (size_t i = 0; i < g->n_sources; i++) {
        if (!g->sources[i].kind) continue;
        tsr_source_kind_t m = source_model(&g->sources[i]);
        any_topic |= source_has_topic(&g->sources[i]);
        if (!model) model = m;
        else if (m != model)
            tsr__conf_err(cx, g->sources[i].path,
                          "all sources must be events or all entities (sources[0] is %s, this "
                          "one is %s)", model == TSR_SOURCE_EVENTS ? "events" : "entities",
                          m == TSR_SOURCE_EVENTS ? "events" : "entities");
    }
    if (!g->accuracy_set) {
        g->accuracy = any_topic ? TSR_ACCURACY_TEMPORAL : TSR_ACCURACY_SNAPSHOT;
    } else if (g->accuracy == TSR_ACCURACY_TEMPORAL && model == TSR_SOURCE_ENTITIES) {
        tsr__conf_err(cx, tsr__conf_path(cx, g->path, "accuracy"),
                      "unsupported: TEMPORAL accuracy for an entity source (mutation-based "
                      "entity GroupBys)");
    }

    collist_t keys = {0};
    int found;
    for (size_t i = 0; i < g->n_keys; i++) {
        const char *kp = tsr__conf_path(cx, g->path, "keyColumns[%zu]", i);
        if (cl_find(&keys, g->key_columns[i]) >= 0) {
            /* Still listed (keys stay aligned with key_columns), but reported. */
            tsr__conf_err(cx, kp, "duplicate key column '%s'", g->key_columns[i]);
            cl_push(cx, &keys, g->key_columns[i], TSR_ANY, kp);
            continue;
        }
        tsr_type_t t = group_by_column(cx, g, g->key_columns[i], "key column", kp, &found);
        cl_push(cx, &keys, g->key_columns[i], t, kp);
    }

    collist_t base = {0};
    partlist_t parts = {0};
    if (g->has_aggregations) {
        for (size_t i = 0; i < g->n_aggs; i++) check_aggregation(cx, g, i, &base, &parts);
    } else if (model == TSR_SOURCE_ENTITIES && g->n_sources) {
        /* No aggregations: an entity GroupBy serves its snapshot columns as they are. */
        const tsr_conf_source_t *s = &g->sources[0];
        if (s->all_raw)
            tsr__conf_err(cx, tsr__conf_path(cx, g->path, "aggregations"),
                          "required when the source has no selects and no table schema (the "
                          "served columns would be unknown)");
        for (size_t i = 0; i < s->n_columns; i++)
            if (cl_find(&keys, s->columns[i].name) < 0)
                cl_push(cx, &base, s->columns[i].name, s->columns[i].type, s->path);
    } else if (g->n_sources) {
        tsr__conf_err(cx, tsr__conf_path(cx, g->path, "aggregations"),
                      "required for an events source");
    }
    check_unique(cx, &keys, "a key column", &base, 0);

    collist_t feats = {0};
    apply_derivations(cx, &base, &keys, 0, g->derivations, g->n_derivations, &feats);
    if (g->n_derivations) check_unique(cx, &keys, "a key column", &feats, 1);
    g->keys = keys.v;
    g->features = feats.v;
    g->n_features = feats.n;
    g->base_features = base.v;
    g->n_base_features = base.n;
    g->parts = parts.v;
    g->n_parts = parts.n;
}

/* ---- Join -------------------------------------------------------------------------------- */

static void check_join_part(tsr__conf_ctx_t *cx, tsr_conf_join_t *j, tsr_conf_join_part_t *jp,
                            const collist_t *left, collist_t *base) {
    tsr_conf_group_by_t *g = jp->group_by;
    if (!g) return;
    check_group_by(cx, g);
    int left_known = !j->left.all_raw;

    /* keyMapping: left column -> GroupBy key. */
    for (size_t m = 0; m < jp->n_key_mapping; m++) {
        const tsr_conf_kv_t *kv = &jp->key_mapping[m];
        const char *mp = tsr__conf_path(cx, jp->path, "keyMapping.%s", kv->key);
        int is_key = 0;
        for (size_t k = 0; k < g->n_keys && !is_key; k++) is_key = strcmp(g->key_columns[k], kv->value) == 0;
        if (!is_key)
            tsr__conf_err(cx, mp, "'%s' is not a key column of GroupBy %s", kv->value,
                          g->meta.name ? g->meta.name : "(unnamed)");
        else if (left_known && cl_find(left, kv->key) < 0)
            tsr__conf_err(cx, mp, "left column '%s' (mapped to key %s) is not produced by the "
                                  "left source", kv->key, kv->value);
    }
    for (size_t k = 0; k < g->n_keys; k++) {
        int mapped = 0;
        for (size_t m = 0; m < jp->n_key_mapping && !mapped; m++)
            mapped = strcmp(jp->key_mapping[m].value, g->key_columns[k]) == 0;
        if (!mapped && left_known && cl_find(left, g->key_columns[k]) < 0)
            tsr__conf_err(cx, tsr__conf_path(cx, g->path, "keyColumns[%zu]", k),
                          "key '%s' is not a column of the Join's left and has no keyMapping",
                          g->key_columns[k]);
    }

    /* Column prefix: [prefix_]<gb cleanName>_ , or [prefix_]<key1_key2>_ for zipline's
     * useLongNames = 0. */
    tsr_buf_t pre;
    tsr_buf_init(&pre);
    if (jp->prefix && jp->prefix[0]) tsr_buf_printf(&pre, "%s_", jp->prefix);
    if (jp->use_long_names) {
        tsr_buf_printf(&pre, "%s_", g->meta.clean_name ? g->meta.clean_name : "");
    } else {
        for (size_t k = 0; k < g->n_keys; k++) tsr_buf_printf(&pre, "%s_", g->key_columns[k]);
    }
    const char *prefix = tsr_arena_strdup(cx->arena, tsr_buf_cstr(&pre));
    tsr_buf_free(&pre);
    jp->column_prefix = prefix;
    for (size_t f = 0; f < g->n_features; f++)
        cl_push(cx, base, tsr_arena_printf(cx->arena, "%s%s", prefix, g->features[f].name),
                g->features[f].type, jp->path);
}

static void check_join(tsr__conf_ctx_t *cx, tsr_conf_join_t *j) {
    if (j->left.kind) check_source(cx, &j->left);
    collist_t left = {0};
    for (size_t i = 0; i < j->left.n_columns; i++) {
        const tsr_conf_column_t *c = &j->left.columns[i];
        if (strcmp(c->name, "ts") == 0 || strcmp(c->name, "ds") == 0) continue;
        cl_push(cx, &left, c->name, c->type, j->left.path);
    }
    collist_t extra = {0};
    for (size_t i = 0; i < left.n; i++) cl_push(cx, &extra, left.v[i].name, left.v[i].type, NULL);
    cl_push(cx, &extra, "ts", TSR_LONG, NULL);
    cl_push(cx, &extra, "ds", TSR_STRING, NULL);

    collist_t base = {0};
    for (size_t i = 0; i < j->n_parts; i++) check_join_part(cx, j, &j->parts[i], &extra, &base);
    for (size_t i = 0; i < j->n_externals; i++) {
        const tsr_conf_external_part_t *x = &j->externals[i];
        char clean[256];
        tsr_conf_clean_name(x->source_name, clean, sizeof clean);
        for (size_t v = 0; v < x->n_values; v++)
            cl_push(cx, &base,
                    tsr_arena_printf(cx->arena, "ext_%s%s%s_%s", x->prefix ? x->prefix : "",
                                     x->prefix ? "_" : "", clean, x->values[v].name),
                    x->values[v].type, x->path);
    }
    check_unique(cx, &extra, "a left column, ts or ds", &base, 0);

    collist_t feats = {0};
    apply_derivations(cx, &base, &extra, j->left.all_raw, j->derivations, j->n_derivations, &feats);
    if (j->n_derivations) check_unique(cx, &extra, "a left column, ts or ds", &feats, 1);
    j->features = feats.v;
    j->n_features = feats.n;
    j->base_features = base.v;
    j->n_base_features = base.n;

    for (size_t i = 0; i < j->n_row_ids; i++)
        if (!j->left.all_raw && cl_find(&extra, j->row_ids[i]) < 0)
            tsr__conf_err(cx, tsr__conf_path(cx, j->path, "rowIds[%zu]", i),
                          "'%s' is not a column of the left source", j->row_ids[i]);
}

/* ---- entry ------------------------------------------------------------------------------- */

void tsr__conf_check(tsr__conf_ctx_t *cx) {
    tsr_config_t *c = cx->cfg;
    collist_t out = {0};
    if (c->kind == TSR_CONF_GROUP_BY) {
        tsr_conf_group_by_t *g = c->group_by;
        check_group_by(cx, g);
        for (size_t i = 0; i < g->n_keys && g->keys; i++)
            cl_push(cx, &out, g->keys[i].name, g->keys[i].type, NULL);
        cl_push(cx, &out, "ds", TSR_STRING, NULL);
        for (size_t i = 0; i < g->n_features; i++)
            cl_push(cx, &out, g->features[i].name, g->features[i].type, NULL);
        c->columns_known = 1;
    } else if (c->kind == TSR_CONF_JOIN) {
        int known;
        check_join(cx, c->join);
        join_output(cx, c->join, &out, &known);
        c->all_raw_left = !known;
        c->columns_known = 1;
    }
    c->columns = out.v;
    c->n_columns = out.n;
}
