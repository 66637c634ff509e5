/*
 * served.c — the GroupBys a config serves, entity GroupBys, fingerprints (served.h).
 */
#include "tsr/served.h"

#include <string.h>

#include "tsr/mem.h"

int tsr_served_load_conf(const char *warehouse, const char *text, size_t n, const char *label,
                         tsr_config_t **out, tsr_error_t *err) {
    tsr_config_options_t opt;
    memset(&opt, 0, sizeof opt);
    opt.warehouse = warehouse;
    tsr_diag_t d;
    tsr_diag_init(&d);
    int rc = tsr_config_load_string(text, n, label, &opt, out, &d);
    if (rc) {
        tsr_config_free(*out);
        *out = NULL;
        tsr_buf_t b;
        tsr_buf_init(&b);
        for (size_t i = 0; i < d.n && b.len < 800; i++) tsr_buf_printf(&b, "%s%s", i ? "; " : "", d.items[i].text);
        if (d.n == 0) tsr_buf_puts(&b, tsr_strerror(rc));
        tsr_error_set(err, rc, "%s", tsr_buf_cstr(&b));
        tsr_buf_free(&b);
    }
    tsr_diag_free(&d);
    return rc;
}

char *tsr_served_fingerprint(const tsr_conf_group_by_t *g) {
    tsr_buf_t b;
    tsr_buf_init(&b);
    for (size_t i = 0; i < g->n_keys; i++) tsr_buf_printf(&b, "k:%s;", g->key_columns[i]);
    for (size_t i = 0; i < g->n_sources; i++) {
        const tsr_conf_source_t *src = &g->sources[i];
        const tsr_conf_query_t *q = &src->query;
        tsr_buf_printf(&b, "s:%d:%s:%s:%s;", (int)src->kind, src->table ? src->table : "",
                       src->topic ? src->topic : "", q->time_column ? q->time_column : "");
        for (size_t k = 0; k < q->n_selects; k++)
            tsr_buf_printf(&b, "sel:%s=%s;", q->selects[k].key, q->selects[k].value);
        for (size_t k = 0; k < q->n_wheres; k++) tsr_buf_printf(&b, "w:%s;", q->wheres[k]);
    }
    for (size_t i = 0; i < g->n_aggs; i++) {
        const tsr_conf_aggregation_t *a = &g->aggs[i];
        tsr_buf_printf(&b, "a:%s:%d:%lld:%u;", a->input_column, (int)a->op, (long long)a->k,
                       (unsigned)a->input_type);
        for (size_t k = 0; k < a->n_percentiles; k++) tsr_buf_printf(&b, "p:%.17g;", a->percentiles[k]);
        for (size_t k = 0; k < a->n_windows; k++)
            tsr_buf_printf(&b, "win:%lld:%d;", (long long)a->windows[k].length, (int)a->windows[k].unit);
        for (size_t k = 0; k < a->n_buckets; k++) tsr_buf_printf(&b, "b:%s;", a->buckets[k]);
    }
    char *s = tsr_strdup(tsr_buf_cstr(&b));
    tsr_buf_free(&b);
    return s;
}

size_t tsr_served_group_bys(const tsr_config_t *conf, const tsr_conf_group_by_t **out,
                                 size_t max) {
    size_t n = 0;
    if (conf->kind == TSR_CONF_GROUP_BY) {
        if (max) out[n++] = conf->group_by;
    } else if (conf->kind == TSR_CONF_JOIN) {
        for (size_t i = 0; i < conf->join->n_parts && n < max; i++) out[n++] = conf->join->parts[i].group_by;
    }
    return n;
}

int tsr_served_is_entity(const tsr_conf_group_by_t *g) {
    if (!g->has_aggregations) return 1;
    for (size_t i = 0; i < g->n_sources; i++)
        if (g->sources[i].kind != TSR_SOURCE_ENTITIES) return 0;
    return g->n_sources > 0;
}
