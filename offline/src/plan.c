/*
 * plan.c — compiled plans for the offline engine: sources, GroupBys, Joins, derivations.
 *
 * A source plan compiles one program over its table's real schema (read from the warehouse,
 * so types are exact even when the config was validated without a schema): outputs are the
 * key columns, the time column, every slot (aggregation inputs and buckets, or the left's
 * output columns) and the wheres. A column the selects do not produce is a null slot for that
 * source. Only the table columns the expressions read are converted by the readers.
 *
 * Derivations follow SPEC §5 exactly as the config validator does (config_check.c):
 * `*` expands in place to every base column except those used as rename sources, the
 * identity of a left/key column is a pass-through left where it is, and anything else is an
 * expression over (extra columns, base columns). The features named here must equal the
 * validator's; tsr__join_plan_build checks that, so the two can never drift apart silently.
 */
#include "offline_int.h"

#include <stdlib.h>
#include <string.h>

#include "tsr/time.h"
#include "tsr/window.h"

static const char *select_expr(const tsr_conf_query_t *q, const char *name) {
    for (size_t i = 0; i < q->n_selects; i++)
        if (strcmp(q->selects[i].key, name) == 0) return q->selects[i].value;
    return NULL;
}

/* Adds an expression output; on failure names the source. */
static int add_expr(src_plan_t *s, const char *expr, tsr_error_t *err) {
    tsr_type_t t;
    int rc = tsr_program_add(s->prog, expr, &t, err);
    if (rc < 0)
        tsr_error_prefix(err, "%s: table %s: expression '%s'", s->src->path, s->table_name, expr);
    return rc;
}

typedef struct mark_ctx {
    const tsr_table_t *t;
    uint8_t *want;
} mark_ctx_t;

static void mark_column(void *ud, const char *name) {
    mark_ctx_t *m = ud;
    int c = tsr_table_column(m->t, name);
    if (c >= 0) m->want[c] = 1;
}

static void mark_expr(src_plan_t *s, const char *expr) {
    tsr_arena_t a;
    tsr_arena_init(&a, 4096);
    tsr_expr_ast_t *ast;
    if (tsr_expr_parse(expr, &a, &ast, NULL) == 0) {
        mark_ctx_t m = {s->table, s->want};
        tsr_expr_columns(ast, mark_column, &m);
    }
    tsr_arena_free(&a);
}

/* Expression producing column `name` of source s: its select, or the raw column (quoted)
 * when the query has no selects. NULL when the source does not produce it. */
static const char *column_expr(src_plan_t *s, const char *name, char *buf, size_t n) {
    const tsr_conf_query_t *q = &s->src->query;
    if (q->n_selects) return select_expr(q, name);
    if (tsr_table_column(s->table, name) < 0) return NULL;
    snprintf(buf, n, "`%s`", name);
    return buf;
}

static void src_plan_free(src_plan_t *s) {
    tsr_program_free(s->prog);
    tsr_table_free(s->table);
    free(s->key_out);
    free(s->slot_out);
    free(s->where_out);
    free(s->want);
    memset(s, 0, sizeof(*s));
}

/* Opens the source's table for [day_lo, day_hi] (narrowed by start/endPartition) and
 * compiles keys, ts, slots and wheres. */
static int src_plan_build(src_plan_t *s, const tsr_conf_source_t *src, const char *warehouse,
                          int64_t day_lo, int64_t day_hi, const char *const *keys, size_t nkeys,
                          const char *const *slots, size_t nslots, int need_ts,
                          tsr_error_t *err) {
    memset(s, 0, sizeof(*s));
    s->src = src;
    if (src->kind == TSR_SOURCE_JOIN)
        return tsr_error_set(err, TSR_EUNSUPPORTED,
                             "%s: unsupported in backfills yet: joinSource (chained Joins)",
                             src->path);
    s->entity = src->kind == TSR_SOURCE_ENTITIES;
    s->table_name = src->table;
    const tsr_conf_query_t *q = &src->query;
    int64_t d;
    if (q->start_partition && tsr_ds_parse(q->start_partition, &d) == 0 && d > day_lo) day_lo = d;
    if (q->end_partition && tsr_ds_parse(q->end_partition, &d) == 0 && d < day_hi) day_hi = d;
    int rc = tsr_table_open(warehouse, src->table, day_lo, day_hi, &s->table, err);
    if (rc) return rc;
    tsr_schema_t schema = tsr_table_schema(s->table);
    s->prog = tsr_program_new(&schema);
    s->want = tsr_calloc(s->table->ncols ? s->table->ncols : 1, 1);
    s->nkeys = nkeys;
    s->key_out = tsr_malloc((nkeys ? nkeys : 1) * sizeof(int));
    s->nslots = nslots;
    s->slot_out = tsr_malloc((nslots ? nslots : 1) * sizeof(int));
    char buf[512];
    for (size_t k = 0; k < nkeys; k++) {
        const char *e = column_expr(s, keys[k], buf, sizeof buf);
        if (!e) {
            rc = tsr_error_set(err, TSR_ECONFIG, "%s: table %s: key column '%s' is not produced",
                               src->path, src->table, keys[k]);
            goto fail;
        }
        mark_expr(s, e);
        if ((s->key_out[k] = add_expr(s, e, err)) < 0) goto fail_rc;
    }
    const char *tcol = q->time_column ? q->time_column : "ts";
    s->ts_out = -1;
    if (q->time_column || tsr_table_column(s->table, "ts") >= 0) {
        mark_expr(s, tcol);
        if ((s->ts_out = add_expr(s, tcol, err)) < 0) goto fail_rc;
    } else if (need_ts) {
        rc = tsr_error_set(err, TSR_ECONFIG,
                           "%s: table %s has no 'ts' column and the query sets no timeColumn",
                           src->path, src->table);
        goto fail;
    }
    for (size_t i = 0; i < nslots; i++) {
        const char *e = column_expr(s, slots[i], buf, sizeof buf);
        s->slot_out[i] = -1;
        if (!e) continue;
        mark_expr(s, e);
        if ((s->slot_out[i] = add_expr(s, e, err)) < 0) goto fail_rc;
    }
    s->nwhere = q->n_wheres;
    s->where_out = tsr_malloc((q->n_wheres ? q->n_wheres : 1) * sizeof(int));
    for (size_t i = 0; i < q->n_wheres; i++) {
        mark_expr(s, q->wheres[i]);
        if ((s->where_out[i] = add_expr(s, q->wheres[i], err)) < 0) goto fail_rc;
    }
    return 0;
fail_rc:
    rc = err ? err->code : TSR_ECONFIG;
fail:
    src_plan_free(s);
    return rc;
}

/* ---- derivations */

void tsr__deriv_free(deriv_plan_t *d) {
    tsr_program_free(d->prog);
    free(d->base_names);
    free(d->base_types);
    free(d->out);
    memset(d, 0, sizeof(*d));
}

static int is_bare_column(const char *expr, const char **col, tsr_arena_t *a) {
    tsr_expr_ast_t *ast;
    if (tsr_expr_parse(expr, a, &ast, NULL) != 0) return 0;
    return tsr_expr_is_column(ast, col);
}

/* extra: columns expressions may read that are not features (keys; or left, ts, ds).
 * base: the base features. The base row is extra followed by base. */
static int deriv_build(deriv_plan_t *d, const char *const *extra, const tsr_type_t *extra_t,
                       size_t nextra, const char *const *base, const tsr_type_t *base_t,
                       size_t nbase, const tsr_conf_derivation_t *dv, size_t ndv,
                       tsr_error_t *err) {
    memset(d, 0, sizeof(*d));
    d->nbase = nextra + nbase;
    d->base_names = tsr_malloc((d->nbase ? d->nbase : 1) * sizeof(char *));
    d->base_types = tsr_malloc((d->nbase ? d->nbase : 1) * sizeof(tsr_type_t));
    for (size_t i = 0; i < nextra; i++) {
        d->base_names[i] = extra[i];
        d->base_types[i] = extra_t[i];
    }
    for (size_t i = 0; i < nbase; i++) {
        d->base_names[nextra + i] = base[i];
        d->base_types[nextra + i] = base_t[i];
    }
    size_t cap = nbase + ndv + 1;
    d->out = tsr_malloc(cap * sizeof(out_col_t));
    if (ndv == 0) {
        for (size_t i = 0; i < nbase; i++)
            d->out[d->nout++] = (out_col_t){base[i], base_t[i], (int)(nextra + i), -1};
        return 0;
    }
    tsr_schema_t schema = {d->nbase, d->base_names, d->base_types};
    d->prog = tsr_program_new(&schema);
    tsr_arena_t a;
    tsr_arena_init(&a, 4096);
    const char **renamed = tsr_malloc(ndv * sizeof(char *));
    size_t nren = 0;
    for (size_t i = 0; i < ndv; i++) {
        const char *col;
        if (strcmp(dv[i].name, "*") != 0 && is_bare_column(dv[i].expression, &col, &a))
            renamed[nren++] = col;
    }
    int rc = 0;
    for (size_t i = 0; i < ndv && rc == 0; i++) {
        if (strcmp(dv[i].name, "*") == 0) {
            for (size_t b = 0; b < nbase; b++) {
                int src = 0;
                for (size_t r = 0; r < nren && !src; r++) src = strcmp(renamed[r], base[b]) == 0;
                if (src) continue;
                if (d->nout == cap) d->out = tsr_realloc(d->out, (cap *= 2) * sizeof(out_col_t));
                d->out[d->nout++] = (out_col_t){base[b], base_t[b], (int)(nextra + b), -1};
            }
            continue;
        }
        const char *col;
        int is_extra = 0;
        for (size_t e = 0; e < nextra && !is_extra; e++) is_extra = strcmp(extra[e], dv[i].name) == 0;
        if (is_extra && is_bare_column(dv[i].expression, &col, &a) && strcmp(col, dv[i].name) == 0)
            continue; /* `key` := `key`: a pass-through kept in its place */
        tsr_type_t t;
        int o = tsr_program_add(d->prog, dv[i].expression, &t, err);
        if (o < 0) {
            tsr_error_prefix(err, "%s.expression", dv[i].path);
            rc = err ? err->code : TSR_ECONFIG;
            break;
        }
        if (d->nout == cap) d->out = tsr_realloc(d->out, (cap *= 2) * sizeof(out_col_t));
        d->out[d->nout++] = (out_col_t){dv[i].name, t, -1, o};
    }
    free(renamed);
    tsr_arena_free(&a);
    if (rc) tsr__deriv_free(d);
    return rc;
}

/* ---- GroupBy */

static int slot_of(gb_plan_t *p, const char *name) {
    for (size_t i = 0; i < p->nslots; i++)
        if (strcmp(p->slot_names[i], name) == 0) return (int)i;
    p->slot_names = tsr_realloc(p->slot_names, (p->nslots + 1) * sizeof(char *));
    p->slot_names[p->nslots] = name;
    return (int)p->nslots++;
}

void tsr__gb_plan_free(gb_plan_t *p) {
    for (size_t i = 0; p->feats && i < p->nfeat; i++) tsr_agg_free(p->feats[i].kernel);
    free(p->feats);
    free(p->feat_names);
    free(p->feat_types);
    free(p->slot_names);
    for (size_t i = 0; i < p->nsrc; i++) src_plan_free(&p->srcs[i]);
    free(p->srcs);
    tsr__deriv_free(&p->deriv);
    memset(p, 0, sizeof(*p));
}

int tsr__gb_plan_build(gb_plan_t *p, const tsr_conf_group_by_t *g, const char *warehouse,
                       int64_t day_lo, int64_t day_hi, tsr_error_t *err) {
    memset(p, 0, sizeof(*p));
    p->g = g;
    p->nkeys = g->n_keys;
    p->snapshot = g->accuracy == TSR_ACCURACY_SNAPSHOT;
    p->entity = g->n_sources && g->sources[0].kind == TSR_SOURCE_ENTITIES;
    p->passthrough = !g->has_aggregations;
    int rc = 0;
    if (p->passthrough) {
        /* served columns: the base features the validator listed */
        for (size_t i = 0; i < g->n_base_features; i++) slot_of(p, g->base_features[i].name);
    } else {
        for (size_t a = 0; a < g->n_aggs; a++) {
            const tsr_conf_aggregation_t *ag = &g->aggs[a];
            slot_of(p, ag->input_column);
            for (size_t b = 0; b < ag->n_buckets; b++) slot_of(p, ag->buckets[b]);
        }
    }
    /* sources: events need every day up to the end (lifetime windows) */
    p->max_window_ms = 0;
    int lifetime = 0;
    for (size_t a = 0; a < g->n_aggs && !p->passthrough; a++) {
        if (g->aggs[a].n_windows == 0) lifetime = 1;
        for (size_t w = 0; w < g->aggs[a].n_windows; w++) {
            int64_t ms = tsr_window_ms(g->aggs[a].windows[w].length, g->aggs[a].windows[w].unit);
            if (ms > p->max_window_ms) p->max_window_ms = ms;
        }
    }
    if (lifetime) p->max_window_ms = 0;
    int64_t lo;
    if (p->entity) lo = day_lo - 1;
    else if (lifetime || p->passthrough) lo = INT64_MIN;
    else lo = day_lo - 1 - (p->max_window_ms + 2 * TSR_MS_PER_DAY) / TSR_MS_PER_DAY;
    p->nsrc = g->n_sources;
    p->srcs = tsr_calloc(g->n_sources ? g->n_sources : 1, sizeof(src_plan_t));
    for (size_t i = 0; i < g->n_sources && rc == 0; i++) {
        rc = src_plan_build(&p->srcs[i], &g->sources[i], warehouse, lo, day_hi,
                            g->key_columns, g->n_keys, p->slot_names, p->nslots,
                            !p->entity && !p->passthrough, err);
        if (rc) p->nsrc = i; /* free only the built ones */
    }
    if (rc) goto fail;
    /* Types of slots come from the first source that produces them. */
    tsr_type_t *slot_t = tsr_malloc((p->nslots ? p->nslots : 1) * sizeof(tsr_type_t));
    for (size_t i = 0; i < p->nslots; i++) {
        slot_t[i] = TSR_ANY;
        for (size_t s = 0; s < p->nsrc; s++)
            if (p->srcs[s].slot_out[i] >= 0) {
                slot_t[i] = tsr_program_output_type(p->srcs[s].prog, (size_t)p->srcs[s].slot_out[i]);
                break;
            }
    }
    tsr_type_t *key_t = tsr_malloc((p->nkeys ? p->nkeys : 1) * sizeof(tsr_type_t));
    for (size_t k = 0; k < p->nkeys; k++)
        key_t[k] = p->nsrc ? tsr_program_output_type(p->srcs[0].prog, (size_t)p->srcs[0].key_out[k])
                           : TSR_ANY;
    if (p->passthrough) {
        p->nfeat = p->nslots;
        p->feat_names = tsr_malloc((p->nfeat ? p->nfeat : 1) * sizeof(char *));
        p->feat_types = tsr_malloc((p->nfeat ? p->nfeat : 1) * sizeof(tsr_type_t));
        for (size_t i = 0; i < p->nfeat; i++) {
            p->feat_names[i] = p->slot_names[i];
            p->feat_types[i] = slot_t[i];
        }
    } else {
        size_t n = 0;
        for (size_t a = 0; a < g->n_aggs; a++)
            n += (g->aggs[a].n_buckets ? g->aggs[a].n_buckets : 1) *
                 (g->aggs[a].n_windows ? g->aggs[a].n_windows : 1);
        p->feats = tsr_calloc(n ? n : 1, sizeof(feat_t));
        p->feat_names = tsr_malloc((n ? n : 1) * sizeof(char *));
        p->feat_types = tsr_malloc((n ? n : 1) * sizeof(tsr_type_t));
        if (n != g->n_base_features) {
            rc = tsr_error_set(err, TSR_EINTERNAL, "%s: %zu base features, validator listed %zu",
                               g->meta.name, n, g->n_base_features);
        }
        for (size_t a = 0; a < g->n_aggs && rc == 0; a++) {
            const tsr_conf_aggregation_t *ag = &g->aggs[a];
            size_t nb = ag->n_buckets ? ag->n_buckets : 1, nw = ag->n_windows ? ag->n_windows : 1;
            int in = slot_of(p, ag->input_column);
            for (size_t b = 0; b < nb && rc == 0; b++)
                for (size_t w = 0; w < nw && rc == 0; w++) {
                    feat_t *f = &p->feats[p->nfeat];
                    tsr_agg_spec_t spec = {ag->op, slot_t[in], ag->n_buckets > 0, ag->k,
                                           ag->n_percentiles, ag->percentiles};
                    if ((rc = tsr_agg_new(&spec, &f->kernel, err)) != 0) {
                        tsr_error_prefix(err, "%s: %s", g->meta.name, ag->path);
                        break;
                    }
                    f->in_slot = in;
                    f->bucket_slot = ag->n_buckets ? slot_of(p, ag->buckets[b]) : -1;
                    f->window_ms = ag->n_windows ? tsr_window_ms(ag->windows[w].length,
                                                                 ag->windows[w].unit)
                                                 : 0;
                    p->feat_names[p->nfeat] = g->base_features[p->nfeat].name;
                    p->feat_types[p->nfeat] = tsr_agg_output_type(f->kernel);
                    p->nfeat++;
                }
        }
    }
    if (rc == 0)
        rc = deriv_build(&p->deriv, g->key_columns, key_t, p->nkeys, p->feat_names,
                         p->feat_types, p->nfeat, g->derivations, g->n_derivations, err);
    free(slot_t);
    free(key_t);
    if (rc == 0 && p->deriv.nout != g->n_features)
        rc = tsr_error_set(err, TSR_EINTERNAL, "%s: %zu features after derivations, validator "
                                               "listed %zu",
                           g->meta.name, p->deriv.nout, g->n_features);
    for (size_t i = 0; rc == 0 && i < p->deriv.nout; i++)
        if (strcmp(p->deriv.out[i].name, g->features[i].name) != 0)
            rc = tsr_error_set(err, TSR_EINTERNAL, "%s: feature %zu is '%s', validator says '%s'",
                               g->meta.name, i, p->deriv.out[i].name, g->features[i].name);
    if (rc) goto fail;
    return 0;
fail:
    tsr__gb_plan_free(p);
    return rc;
}

/* ---- Join */

void tsr__join_plan_free(join_plan_t *p) {
    src_plan_free(&p->left);
    for (size_t i = 0; i < p->nparts; i++) {
        tsr__gb_plan_free(&p->parts[i].gb);
        free(p->parts[i].left_key_out);
    }
    free(p->parts);
    for (size_t i = 0; i < p->nleft_cols; i++) free((char *)p->left_names[i]);
    free(p->left_names);
    free(p->left_types);
    free(p->ext_names);
    free(p->ext_left_col);
    tsr__deriv_free(&p->deriv);
    memset(p, 0, sizeof(*p));
}

int tsr__join_plan_build(join_plan_t *p, const tsr_conf_join_t *j, const char *warehouse,
                         int64_t day_lo, int64_t day_hi, tsr_error_t *err) {
    memset(p, 0, sizeof(*p));
    p->j = j;
    int rc;
    const tsr_conf_source_t *left = &j->left;
    p->left_entity = left->kind == TSR_SOURCE_ENTITIES;
    /* left output columns: the selects in order, or every raw column, without ts and ds */
    {
        tsr_table_t *t = NULL;
        const tsr_conf_query_t *q = &left->query;
        if (q->n_selects == 0) {
            if (left->kind == TSR_SOURCE_JOIN)
                return tsr_error_set(err, TSR_EUNSUPPORTED,
                                     "left: unsupported in backfills yet: joinSource");
            if ((rc = tsr_table_open(warehouse, left->table, day_lo, day_hi, &t, err)) != 0)
                return rc;
            p->left_names = tsr_malloc((t->ncols ? t->ncols : 1) * sizeof(char *));
            for (size_t c = 0; c < t->ncols; c++)
                if (strcmp(t->col_names[c], "ts") && strcmp(t->col_names[c], "ds"))
                    p->left_names[p->nleft_cols++] = tsr_strdup(t->col_names[c]);
            tsr_table_free(t);
        } else {
            p->left_names = tsr_malloc(q->n_selects * sizeof(char *));
            for (size_t i = 0; i < q->n_selects; i++)
                if (strcmp(q->selects[i].key, "ts") && strcmp(q->selects[i].key, "ds"))
                    p->left_names[p->nleft_cols++] = tsr_strdup(q->selects[i].key);
        }
    }
    rc = src_plan_build(&p->left, left, warehouse, day_lo, day_hi, NULL, 0, p->left_names,
                        p->nleft_cols, !p->left_entity, err);
    if (rc) {
        for (size_t i = 0; i < p->nleft_cols; i++) free((char *)p->left_names[i]);
        free(p->left_names);
        p->left_names = NULL;
        return rc;
    }
    p->left_types = tsr_malloc((p->nleft_cols ? p->nleft_cols : 1) * sizeof(tsr_type_t));
    for (size_t i = 0; i < p->nleft_cols; i++)
        p->left_types[i] = p->left.slot_out[i] >= 0
                               ? tsr_program_output_type(p->left.prog, (size_t)p->left.slot_out[i])
                               : TSR_ANY;

    p->nparts = j->n_parts;
    p->parts = tsr_calloc(j->n_parts ? j->n_parts : 1, sizeof(part_plan_t));
    /* base features of the Join: every part's features under its column prefix, then the
     * contextual columns; names as the validator made them */
    size_t nbase = j->n_base_features, bi = 0;
    const char **base = tsr_malloc((nbase ? nbase : 1) * sizeof(char *));
    tsr_type_t *base_t = tsr_malloc((nbase ? nbase : 1) * sizeof(tsr_type_t));
    for (size_t i = 0; i < j->n_parts && rc == 0; i++) {
        part_plan_t *pp = &p->parts[i];
        const tsr_conf_join_part_t *jp = &j->parts[i];
        pp->jp = jp;
        /* as-of days: events left TEMPORAL needs nothing more; SNAPSHOT reads day - 1 */
        rc = tsr__gb_plan_build(&pp->gb, jp->group_by, warehouse, day_lo, day_hi, err);
        if (rc) {
            tsr_error_prefix(err, "%s", jp->path);
            p->nparts = i;
            break;
        }
        pp->left_key_out = tsr_malloc((pp->gb.nkeys ? pp->gb.nkeys : 1) * sizeof(int));
        for (size_t k = 0; k < pp->gb.nkeys; k++) {
            const char *gk = jp->group_by->key_columns[k], *lc = gk;
            for (size_t m = 0; m < jp->n_key_mapping; m++)
                if (strcmp(jp->key_mapping[m].value, gk) == 0) lc = jp->key_mapping[m].key;
            pp->left_key_out[k] = -1;
            for (size_t c = 0; c < p->nleft_cols; c++)
                if (strcmp(p->left_names[c], lc) == 0) pp->left_key_out[k] = (int)c;
            if (pp->left_key_out[k] < 0) {
                rc = tsr_error_set(err, TSR_ECONFIG,
                                   "%s: key '%s' needs left column '%s', which the left does "
                                   "not produce",
                                   jp->path, gk, lc);
                p->nparts = i + 1;
                break;
            }
        }
        for (size_t f = 0; f < pp->gb.deriv.nout && rc == 0 && bi < nbase; f++, bi++) {
            base[bi] = j->base_features[bi].name;
            base_t[bi] = pp->gb.deriv.out[f].type;
        }
    }
    /* contextual external parts: their columns come from the left row's same-named column */
    for (size_t i = 0; i < j->n_externals && rc == 0; i++)
        for (size_t v = 0; v < j->externals[i].n_values && bi < nbase; v++, bi++) {
            p->ext_names = tsr_realloc(p->ext_names, (p->next + 1) * sizeof(char *));
            p->ext_left_col = tsr_realloc(p->ext_left_col, (p->next + 1) * sizeof(int));
            p->ext_names[p->next] = j->base_features[bi].name;
            p->ext_left_col[p->next] = -1;
            for (size_t c = 0; c < p->nleft_cols; c++)
                if (strcmp(p->left_names[c], j->externals[i].values[v].name) == 0)
                    p->ext_left_col[p->next] = (int)c;
            base[bi] = j->base_features[bi].name;
            base_t[bi] = p->ext_left_col[p->next] >= 0
                             ? p->left_types[p->ext_left_col[p->next]]
                             : j->externals[i].values[v].type;
            p->next++;
        }
    if (rc == 0 && bi != nbase)
        rc = tsr_error_set(err, TSR_EINTERNAL, "%s: %zu base columns, validator listed %zu",
                           j->meta.name, bi, nbase);
    if (rc == 0) {
        size_t nextra = p->nleft_cols + 2;
        const char **extra = tsr_malloc(nextra * sizeof(char *));
        tsr_type_t *extra_t = tsr_malloc(nextra * sizeof(tsr_type_t));
        for (size_t c = 0; c < p->nleft_cols; c++) {
            extra[c] = p->left_names[c];
            extra_t[c] = p->left_types[c];
        }
        extra[p->nleft_cols] = "ts";
        extra_t[p->nleft_cols] = TSR_LONG;
        extra[p->nleft_cols + 1] = "ds";
        extra_t[p->nleft_cols + 1] = TSR_STRING;
        rc = deriv_build(&p->deriv, extra, extra_t, nextra, base, base_t, nbase, j->derivations,
                         j->n_derivations, err);
        free(extra);
        free(extra_t);
    }
    free(base);
    free(base_t);
    if (rc == 0 && p->deriv.nout != j->n_features)
        rc = tsr_error_set(err, TSR_EINTERNAL, "%s: %zu features after derivations, validator "
                                               "listed %zu",
                           j->meta.name, p->deriv.nout, j->n_features);
    for (size_t i = 0; rc == 0 && i < p->deriv.nout; i++)
        if (strcmp(p->deriv.out[i].name, j->features[i].name) != 0)
            rc = tsr_error_set(err, TSR_EINTERNAL, "%s: feature %zu is '%s', validator says '%s'",
                               j->meta.name, i, p->deriv.out[i].name, j->features[i].name);
    if (rc) {
        tsr__join_plan_free(p);
        return rc;
    }
    return 0;
}

/* NaN and infinities become null (SPEC §5 derivations). */
static tsr_value_t finite(tsr_value_t v) {
    if (v.kind == TSR_DOUBLE && !(v.u.d - v.u.d == 0)) return tsr_value_null();
    return v;
}

void tsr__derive(const deriv_plan_t *d, tsr_vm_t *vm, const tsr_value_t *base, tsr_value_t *tmp,
                 tsr_value_t *out) {
    if (d->prog) tsr_vm_run(vm, base, tmp);
    for (size_t i = 0; i < d->nout; i++)
        out[i] = d->out[i].base_index >= 0 ? base[d->out[i].base_index]
                                           : finite(tmp[d->out[i].prog_out]);
}
