/*
 * config.c — the config module's entry points: read a file, parse JSON (jansson), decide the
 * config kind and dialect, run the two phases (config_load.c, config_check.c), and the small
 * shared helpers (error paths, clean names, table schema files).
 *
 * Kind detection (docs/config.md): an object with `joinParts` or `left` is a Join; one with a
 * string `query` and no `sources` is a StagingQuery; one with `sources` or `keyColumns` is a
 * GroupBy. Anything else is an error naming the fields looked for.
 *
 * Malformed JSON is reported as "<file>:<line>:<column>: <jansson's reason>" so editors can
 * jump to it; duplicate object keys are rejected (a duplicated select would otherwise vanish).
 */
#include "config_int.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

void tsr__conf_err(tsr__conf_ctx_t *cx, const char *path, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    tsr_diag_vadd(cx->diag, TSR_ECONFIG, cx->file, path, fmt, ap);
    va_end(ap);
    cx->nerr++;
}

const char *tsr__conf_path(tsr__conf_ctx_t *cx, const char *base, const char *fmt, ...) {
    char sub[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(sub, sizeof sub, fmt, ap);
    va_end(ap);
    if (!base || !base[0]) return tsr_arena_strdup(cx->arena, sub);
    if (sub[0] == '[') return tsr_arena_printf(cx->arena, "%s%s", base, sub);
    return tsr_arena_printf(cx->arena, "%s.%s", base, sub);
}

char *tsr_conf_clean_name(const char *name, char *out, size_t n) {
    size_t i = 0;
    if (!n) return out;
    for (; name && name[i] && i + 1 < n; i++) {
        unsigned char ch = (unsigned char)name[i];
        int keep = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                   (ch >= '0' && ch <= '9') || ch == '_';
        out[i] = keep ? (char)ch : '_';
    }
    out[i] = '\0';
    return out;
}

const char *tsr_conf_kind_name(tsr_conf_kind_t k) {
    switch (k) {
    case TSR_CONF_GROUP_BY: return "GroupBy";
    case TSR_CONF_JOIN: return "Join";
    case TSR_CONF_STAGING_QUERY: return "StagingQuery";
    }
    return "unknown";
}

const char *tsr_dialect_name(tsr_dialect_t d) {
    switch (d) {
    case TSR_DIALECT_AIRBNB: return "airbnb";
    case TSR_DIALECT_ZIPLINE: return "zipline";
    case TSR_DIALECT_AUTO: return "auto";
    }
    return "unknown";
}

int tsr_dialect_parse(const char *s, tsr_dialect_t *out) {
    if (!s) return TSR_EINVAL;
    if (strcmp(s, "airbnb") == 0) *out = TSR_DIALECT_AIRBNB;
    else if (strcmp(s, "zipline") == 0) *out = TSR_DIALECT_ZIPLINE;
    else if (strcmp(s, "auto") == 0) *out = TSR_DIALECT_AUTO;
    else return TSR_EINVAL;
    return 0;
}

const tsr_conf_metadata_t *tsr_config_metadata(const tsr_config_t *c) {
    switch (c->kind) {
    case TSR_CONF_GROUP_BY: return &c->group_by->meta;
    case TSR_CONF_JOIN: return &c->join->meta;
    case TSR_CONF_STAGING_QUERY: return &c->staging_query->meta;
    }
    return NULL;
}

void tsr_config_free(tsr_config_t *c) {
    if (!c) return;
    tsr_arena_free(&c->arena);
    free(c);
}

static int detect_kind(json_t *root, tsr_conf_kind_t *kind) {
    json_t *q = json_object_get(root, "query");
    if (json_object_get(root, "joinParts") || json_object_get(root, "left")) *kind = TSR_CONF_JOIN;
    else if (json_is_string(q) && !json_object_get(root, "sources")) *kind = TSR_CONF_STAGING_QUERY;
    else if (json_object_get(root, "sources") || json_object_get(root, "keyColumns"))
        *kind = TSR_CONF_GROUP_BY;
    else return -1;
    return 0;
}

int tsr_config_load_string(const char *text, size_t n, const char *label,
                           const tsr_config_options_t *opt, tsr_config_t **out, tsr_diag_t *diag) {
    static const tsr_config_options_t dflt = {TSR_DIALECT_AUTO, NULL};
    if (!opt) opt = &dflt;
    *out = NULL;
    json_error_t je;
    json_t *root = json_loadb(text, n, JSON_REJECT_DUPLICATES, &je);
    if (!root) {
        tsr_diag_add(diag, TSR_EPARSE, NULL, NULL, "%s:%d:%d: malformed JSON: %s", label,
                     je.line, je.column, je.text);
        return TSR_EPARSE;
    }
    if (!json_is_object(root)) {
        tsr_diag_add(diag, TSR_EPARSE, label, NULL,
                     "a config must be a JSON object (GroupBy, Join or StagingQuery)");
        json_decref(root);
        return TSR_EPARSE;
    }
    tsr_conf_kind_t kind;
    if (detect_kind(root, &kind) != 0) {
        tsr_diag_add(diag, TSR_ECONFIG, label, NULL,
                     "cannot tell the config kind: expected a GroupBy (sources, keyColumns), a "
                     "Join (left, joinParts) or a StagingQuery (query)");
        json_decref(root);
        return TSR_ECONFIG;
    }
    tsr_config_t *c = tsr_calloc(1, sizeof *c);
    tsr_arena_init(&c->arena, 0);
    c->file = tsr_arena_strdup(&c->arena, label);
    c->kind = kind;
    if (opt->dialect != TSR_DIALECT_AUTO) {
        c->dialect = opt->dialect;
        c->dialect_reason = "--dialect";
    } else {
        const char *why;
        c->dialect = tsr__conf_detect_dialect(root, &why);
        c->dialect_reason = strcmp(why, "default") == 0
                                ? "default"
                                : tsr_arena_printf(&c->arena, "metaData.%s", why);
    }
    tsr__conf_ctx_t cx = {c, &c->arena, diag, c->file, opt, 0};
    tsr__conf_build(&cx, root);
    json_decref(root);
    tsr__conf_check(&cx);
    *out = c;
    return cx.nerr ? TSR_ECONFIG : 0;
}

int tsr_config_load(const char *file, const tsr_config_options_t *opt, tsr_config_t **out,
                    tsr_diag_t *diag) {
    *out = NULL;
    FILE *f = fopen(file, "rb");
    if (!f) {
        int e = errno;
        tsr_diag_add(diag, e == ENOENT ? TSR_ENOTFOUND : TSR_EIO, file, NULL, "cannot open: %s",
                     strerror(e));
        return e == ENOENT ? TSR_ENOTFOUND : TSR_EIO;
    }
    tsr_buf_t b;
    tsr_buf_init(&b);
    char chunk[65536];
    size_t got;
    while ((got = fread(chunk, 1, sizeof chunk, f)) > 0) tsr_buf_append(&b, chunk, got);
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        tsr_diag_add(diag, TSR_EIO, file, NULL, "read error");
        tsr_buf_free(&b);
        return TSR_EIO;
    }
    int rc = tsr_config_load_string(b.len ? (const char *)b.data : "", b.len, file, opt, out, diag);
    tsr_buf_free(&b);
    return rc;
}

int tsr_conf_schema_load(const char *warehouse, const char *table, tsr_arena_t *arena,
                         tsr_conf_column_t **cols, size_t *n, tsr_error_t *err) {
    *cols = NULL;
    *n = 0;
    /* "ns.name" -> <warehouse>/ns/name; a sub-partition spec ("t/hr=00:00") is not part of the
     * table name (Chronon's cleanSpec). */
    size_t tlen = strcspn(table, "/");
    char *rel = tsr_arena_strndup(arena, table, tlen);
    char *dot = strchr(rel, '.');
    if (dot) *dot = '/';
    char *path = tsr_arena_printf(arena, "%s/%s/_schema.json", warehouse, rel);
    struct stat st;
    if (stat(path, &st) != 0) return TSR_ENOTFOUND;
    json_error_t je;
    json_t *root = json_load_file(path, JSON_REJECT_DUPLICATES, &je);
    if (!root)
        return tsr_error_set(err, TSR_EPARSE, "%s:%d:%d: malformed JSON: %s", path, je.line,
                             je.column, je.text);
    if (!json_is_object(root)) {
        json_decref(root);
        return tsr_error_set(err, TSR_EPARSE, "%s: must be a JSON object {column: type}", path);
    }
    size_t len = json_object_size(root), k = 0;
    tsr_conf_column_t *out = tsr_arena_alloc(arena, (len ? len : 1) * sizeof *out);
    const char *name;
    json_t *v;
    json_object_foreach(root, name, v) {
        tsr_type_t t;
        if (!json_is_string(v) || tsr_type_parse(json_string_value(v), &t) != 0) {
            int rc = tsr_error_set(err, TSR_ETYPE, "%s: column %s: unknown type %s%s%s", path,
                                   name, json_is_string(v) ? "'" : "",
                                   json_is_string(v) ? json_string_value(v) : "(not a string)",
                                   json_is_string(v) ? "'" : "");
            json_decref(root);
            return rc;
        }
        out[k].name = tsr_arena_strdup(arena, name);
        out[k].type = t;
        k++;
    }
    json_decref(root);
    *cols = out;
    *n = k;
    return 0;
}
