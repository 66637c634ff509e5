/*
 * table.c — warehouse tables: listing partitions and part files in row order, the schema
 * (from _schema.json or inferred), readers, and the text/JSON -> value conversions that every
 * reader shares. See table.h for the rules.
 *
 * Inference is a small lattice per column, joined over every value seen:
 *
 *     NONE ─▶ LONG ─▶ DOUBLE ─┐
 *     NONE ─▶ BOOL ───────────┼─▶ STRING          LIST(e), MAP(e): joined element-wise;
 *     NONE ─▶ STRING ─────────┘                    a list meeting a scalar is STRING
 */
#include "table_int.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tsr/time.h"

/* ---------------------------------------------------------------- number and bool parsing */

int tsr_parse_long(const char *s, size_t n, int64_t *out) {
    size_t i = 0;
    int neg = 0;
    if (n == 0) return TSR_EPARSE;
    if (s[0] == '-' || s[0] == '+') {
        neg = s[0] == '-';
        i = 1;
        if (n == 1) return TSR_EPARSE;
    }
    uint64_t v = 0;
    for (; i < n; i++) {
        unsigned d = (unsigned)(s[i] - '0');
        if (d > 9) return TSR_EPARSE;
        if (v > (UINT64_MAX - d) / 10) return TSR_EPARSE;
        v = v * 10 + d;
    }
    if (neg) {
        if (v > (uint64_t)INT64_MAX + 1) return TSR_EPARSE;
        *out = (int64_t)(0 - v);
    } else {
        if (v > (uint64_t)INT64_MAX) return TSR_EPARSE;
        *out = (int64_t)v;
    }
    return 0;
}

/* Exact powers of ten representable in a double (Clinger's fast path). */
static const double pow10_exact[] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                                     1e8,  1e9,  1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
                                     1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

int tsr_parse_double(const char *s, size_t n, double *out) {
    /* Validate the shape first: [sign] digits [. digits] [e [sign] digits], at least one
     * digit in the mantissa. strtod would also take "nan", "inf", hex and leading blanks. */
    size_t i = 0;
    int neg = 0;
    if (n == 0 || n > 400) return TSR_EPARSE;
    if (s[i] == '-' || s[i] == '+') neg = s[i++] == '-';
    uint64_t mant = 0;
    int ndig = 0, exp10 = 0, mant_digits = 0;
    for (; i < n && s[i] >= '0' && s[i] <= '9'; i++, ndig++) {
        if (mant_digits < 19) {
            mant = mant * 10 + (uint64_t)(s[i] - '0');
            if (mant) mant_digits++;
        } else {
            exp10++;
        }
    }
    if (i < n && s[i] == '.') {
        i++;
        for (; i < n && s[i] >= '0' && s[i] <= '9'; i++, ndig++) {
            if (mant_digits < 19) {
                mant = mant * 10 + (uint64_t)(s[i] - '0');
                if (mant) mant_digits++;
                exp10--;
            }
        }
    }
    if (ndig == 0) return TSR_EPARSE;
    if (i < n && (s[i] == 'e' || s[i] == 'E')) {
        i++;
        int eneg = 0, e = 0, edig = 0;
        if (i < n && (s[i] == '-' || s[i] == '+')) eneg = s[i++] == '-';
        for (; i < n && s[i] >= '0' && s[i] <= '9'; i++, edig++)
            if (e < 100000) e = e * 10 + (s[i] - '0');
        if (edig == 0) return TSR_EPARSE;
        exp10 += eneg ? -e : e;
    }
    if (i != n) return TSR_EPARSE;
    if (mant_digits <= 15 && exp10 >= -22 && exp10 <= 22) {
        double d = (double)mant; /* exact: < 2^53 */
        d = exp10 < 0 ? d / pow10_exact[-exp10] : d * pow10_exact[exp10];
        *out = neg ? -d : d;
        return 0;
    }
    char tmp[416];
    memcpy(tmp, s, n);
    tmp[n] = '\0';
    *out = strtod(tmp, NULL);
    return 0;
}

int tsr_parse_bool(const char *s, size_t n, int *out) {
    if (n == 4 && (memcmp(s, "true", 4) == 0 || memcmp(s, "TRUE", 4) == 0 ||
                   memcmp(s, "True", 4) == 0)) {
        *out = 1;
        return 0;
    }
    if (n == 5 && (memcmp(s, "false", 5) == 0 || memcmp(s, "FALSE", 5) == 0 ||
                   memcmp(s, "False", 5) == 0)) {
        *out = 0;
        return 0;
    }
    return TSR_EPARSE;
}

/* ---------------------------------------------------------------- value conversions */

int tsr__json_to_value(json_t *j, tsr_type_t type, tsr_arena_t *arena, tsr_value_t *out,
                       const char **why) {
    if (!j || json_is_null(j)) {
        *out = tsr_value_null();
        return 0;
    }
    switch (tsr_type_kind(type)) {
    case TSR_LONG:
        if (json_is_integer(j)) {
            *out = tsr_value_long(json_integer_value(j));
            return 0;
        }
        if (json_is_real(j)) {
            double d = json_real_value(j);
            if (d == floor(d) && fabs(d) < 9.2e18) {
                *out = tsr_value_long((int64_t)d);
                return 0;
            }
        }
        if (json_is_string(j)) {
            int64_t v;
            if (tsr_parse_long(json_string_value(j), json_string_length(j), &v) == 0) {
                *out = tsr_value_long(v);
                return 0;
            }
        }
        *why = "is not a long";
        return TSR_EPARSE;
    case TSR_DOUBLE:
        if (json_is_number(j)) {
            *out = tsr_value_double(json_number_value(j));
            return 0;
        }
        if (json_is_string(j)) {
            double d;
            if (tsr_parse_double(json_string_value(j), json_string_length(j), &d) == 0) {
                *out = tsr_value_double(d);
                return 0;
            }
        }
        *why = "is not a double";
        return TSR_EPARSE;
    case TSR_BOOL:
        if (json_is_boolean(j)) {
            *out = tsr_value_bool(json_is_true(j));
            return 0;
        }
        *why = "is not a boolean";
        return TSR_EPARSE;
    case TSR_STRING:
        if (json_is_string(j)) {
            *out = tsr_value_string(tsr_arena_strndup(arena, json_string_value(j),
                                                      json_string_length(j)),
                                    json_string_length(j));
            return 0;
        }
        if (json_is_number(j) || json_is_boolean(j) || json_is_array(j) || json_is_object(j)) {
            /* a scalar or nested value where a string is declared: keep its JSON text */
            char *txt = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY);
            if (!txt) break;
            size_t n = strlen(txt);
            *out = tsr_value_string(tsr_arena_strndup(arena, txt, n), n);
            free(txt);
            return 0;
        }
        break;
    case TSR_LIST: {
        if (!json_is_array(j)) {
            *why = "is not a list";
            return TSR_EPARSE;
        }
        size_t n = json_array_size(j);
        tsr_value_t *items = tsr_arena_alloc(arena, (n ? n : 1) * sizeof(*items));
        for (size_t i = 0; i < n; i++)
            if (tsr__json_to_value(json_array_get(j, i), tsr_type_elem(type), arena, &items[i],
                                   why))
                return TSR_EPARSE;
        *out = tsr_value_list(items, n);
        return 0;
    }
    case TSR_MAP: {
        if (!json_is_object(j)) {
            *why = "is not a map";
            return TSR_EPARSE;
        }
        size_t n = json_object_size(j), i = 0;
        tsr_value_t *items = tsr_arena_alloc(arena, (n ? 2 * n : 1) * sizeof(*items));
        const char *k;
        json_t *v;
        json_object_foreach(j, k, v) {
            size_t kl = strlen(k);
            items[2 * i] = tsr_value_string(tsr_arena_strndup(arena, k, kl), kl);
            if (tsr__json_to_value(v, tsr_type_elem(type), arena, &items[2 * i + 1], why))
                return TSR_EPARSE;
            i++;
        }
        *out = tsr_value_map(items, n);
        return 0;
    }
    default: break;
    }
    *why = "has an unsupported type";
    return TSR_EPARSE;
}

int tsr__text_to_value(const char *s, size_t n, tsr_type_t type, tsr_arena_t *arena,
                       tsr_value_t *out) {
    if (n == 0) {
        *out = tsr_value_null();
        return 0;
    }
    switch (tsr_type_kind(type)) {
    case TSR_LONG: {
        int64_t v;
        if (tsr_parse_long(s, n, &v)) return TSR_EPARSE;
        *out = tsr_value_long(v);
        return 0;
    }
    case TSR_DOUBLE: {
        double d;
        if (tsr_parse_double(s, n, &d)) return TSR_EPARSE;
        *out = tsr_value_double(d);
        return 0;
    }
    case TSR_BOOL: {
        int b;
        if (tsr_parse_bool(s, n, &b)) return TSR_EPARSE;
        *out = tsr_value_bool(b);
        return 0;
    }
    case TSR_STRING:
        *out = tsr_value_string(s, n);
        return 0;
    case TSR_LIST:
    case TSR_MAP: {
        /* nested values in a CSV cell are written as JSON */
        json_error_t je;
        json_t *j = json_loadb(s, n, JSON_DECODE_ANY, &je);
        if (!j) return TSR_EPARSE;
        const char *why = NULL;
        int rc = tsr__json_to_value(j, type, arena, out, &why);
        json_decref(j);
        return rc;
    }
    default: return TSR_EPARSE;
    }
}

/* ---------------------------------------------------------------- inference lattice */

typedef struct infer {
    tsr_kind_t kind;            /* TSR_NULL = nothing seen yet */
    struct infer *elem;         /* list/map element state (heap) */
} infer_t;

static void infer_free(infer_t *s) {
    if (s->elem) {
        infer_free(s->elem);
        free(s->elem);
        s->elem = NULL;
    }
}

static void infer_join_kind(infer_t *s, tsr_kind_t k) {
    if (k == TSR_NULL || s->kind == k) return;
    if (s->kind == TSR_NULL) {
        s->kind = k;
        return;
    }
    if ((s->kind == TSR_LONG && k == TSR_DOUBLE) || (s->kind == TSR_DOUBLE && k == TSR_LONG)) {
        s->kind = TSR_DOUBLE;
        return;
    }
    infer_free(s);
    s->kind = TSR_STRING;
}

static void infer_text(infer_t *s, const char *p, size_t n) {
    if (n == 0 || s->kind == TSR_STRING) return;
    int64_t l;
    double d;
    int b;
    if (tsr_parse_long(p, n, &l) == 0) infer_join_kind(s, TSR_LONG);
    else if (tsr_parse_double(p, n, &d) == 0) infer_join_kind(s, TSR_DOUBLE);
    else if (tsr_parse_bool(p, n, &b) == 0) infer_join_kind(s, TSR_BOOL);
    else infer_join_kind(s, TSR_STRING);
}

static void infer_json(infer_t *s, json_t *j, int depth) {
    if (!j || json_is_null(j) || s->kind == TSR_STRING) return;
    tsr_kind_t k;
    if (json_is_integer(j)) k = TSR_LONG;
    else if (json_is_real(j)) k = TSR_DOUBLE;
    else if (json_is_boolean(j)) k = TSR_BOOL;
    else if (json_is_string(j)) k = TSR_STRING;
    else if (json_is_array(j)) k = depth < 4 ? TSR_LIST : TSR_STRING;
    else k = depth < 4 ? TSR_MAP : TSR_STRING;
    infer_join_kind(s, k);
    if (s->kind != k || (k != TSR_LIST && k != TSR_MAP)) return;
    if (!s->elem) s->elem = tsr_calloc(1, sizeof(infer_t));
    if (k == TSR_LIST) {
        for (size_t i = 0; i < json_array_size(j); i++)
            infer_json(s->elem, json_array_get(j, i), depth + 1);
    } else {
        const char *key;
        json_t *v;
        json_object_foreach(j, key, v) infer_json(s->elem, v, depth + 1);
    }
}

static tsr_type_t infer_type(const infer_t *s) {
    switch (s->kind) {
    case TSR_NULL: return TSR_STRING;
    case TSR_LIST: return TSR_TYPE_LIST(s->elem ? infer_type(s->elem) : TSR_STRING);
    case TSR_MAP: return TSR_TYPE_MAP(s->elem ? infer_type(s->elem) : TSR_STRING);
    default: return (tsr_type_t)s->kind;
    }
}

/* ---------------------------------------------------------------- listing */

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int format_of(const char *name, tsr_file_format_t *fmt) {
    const char *dot = strrchr(name, '.');
    if (!dot) return -1;
    if (strcmp(dot, ".csv") == 0) *fmt = TSR_FORMAT_CSV;
    else if (strcmp(dot, ".jsonl") == 0 || strcmp(dot, ".json") == 0 ||
             strcmp(dot, ".ndjson") == 0)
        *fmt = TSR_FORMAT_JSONL;
    else return -1;
    return 0;
}

/* Sorted names of the entries of dir (skipping "." and ".."). Caller frees each and the array. */
static int list_dir(const char *dir, char ***names, size_t *n) {
    DIR *d = opendir(dir);
    if (!d) return -1;
    size_t cap = 16, k = 0;
    char **v = tsr_malloc(cap * sizeof(*v));
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
        if (k == cap) v = tsr_realloc(v, (cap *= 2) * sizeof(*v));
        v[k++] = tsr_strdup(e->d_name);
    }
    closedir(d);
    qsort(v, k, sizeof(*v), cmp_str);
    *names = v;
    *n = k;
    return 0;
}

static void free_names(char **v, size_t n) {
    for (size_t i = 0; i < n; i++) free(v[i]);
    free(v);
}

static char *path_join(const char *a, const char *b) {
    size_t na = strlen(a), nb = strlen(b);
    char *p = tsr_malloc(na + nb + 2);
    memcpy(p, a, na);
    p[na] = '/';
    memcpy(p + na + 1, b, nb + 1);
    return p;
}

static int add_column(tsr_table_t *t, const char *name, tsr_type_t type) {
    for (size_t i = 0; i < t->ncols; i++)
        if (strcmp(t->col_names[i], name) == 0) return (int)i;
    t->col_names = tsr_realloc(t->col_names, (t->ncols + 1) * sizeof(char *));
    t->col_types = tsr_realloc(t->col_types, (t->ncols + 1) * sizeof(tsr_type_t));
    t->col_names[t->ncols] = tsr_strdup(name);
    t->col_types[t->ncols] = type;
    return (int)t->ncols++;
}

static int read_schema_file(tsr_table_t *t, const char *path, tsr_error_t *err) {
    json_error_t je;
    json_t *root = json_load_file(path, JSON_PRESERVE_ORDER, &je);
    if (!root)
        return tsr_error_set(err, TSR_ECONFIG, "%s:%d:%d: %s", path, je.line, je.column, je.text);
    int rc = 0;
    if (!json_is_object(root)) {
        rc = tsr_error_set(err, TSR_ECONFIG,
                           "%s: expected an object {\"column\": \"type\", ...}", path);
    } else {
        const char *k;
        json_t *v;
        json_object_foreach(root, k, v) {
            tsr_type_t type;
            if (!json_is_string(v) || tsr_type_parse(json_string_value(v), &type)) {
                rc = tsr_error_set(err, TSR_ECONFIG,
                                   "%s: column '%s': unknown type (expected long, double, "
                                   "string, boolean, list<T> or map<string,T>)",
                                   path, k);
                break;
            }
            add_column(t, k, type);
        }
        t->has_schema_file = 1;
    }
    json_decref(root);
    return rc;
}

void tsr_table_free(tsr_table_t *t) {
    if (!t) return;
    free(t->name);
    free(t->dir);
    for (size_t i = 0; i < t->ncols; i++) free(t->col_names[i]);
    free(t->col_names);
    free(t->col_types);
    free(t->part_days);
    for (size_t i = 0; i < t->nfiles; i++) free(t->files[i].path);
    free(t->files);
    free(t);
}

/* Lists every partition's files (all days) into *files; the caller filters by range. */
static int list_files(tsr_table_t *t, tsr_table_file_t **files, size_t *nfiles,
                      tsr_error_t *err) {
    char **parts;
    size_t nparts;
    *files = NULL;
    *nfiles = 0;
    if (list_dir(t->dir, &parts, &nparts))
        return tsr_error_set(err, TSR_EIO, "%s: cannot list: %s", t->dir, strerror(errno));
    size_t cap = 16, k = 0;
    tsr_table_file_t *v = tsr_malloc(cap * sizeof(*v));
    int rc = 0;
    for (size_t i = 0; i < nparts && rc == 0; i++) {
        int64_t day;
        if (strncmp(parts[i], "ds=", 3) != 0) continue; /* _schema.json, _SUCCESS, ... */
        char *pdir = path_join(t->dir, parts[i]);
        if (tsr_ds_parse(parts[i] + 3, &day)) {
            rc = tsr_error_set(err, TSR_ECORRUPT, "%s: partition name is not ds=YYYY-MM-DD",
                               pdir);
            free(pdir);
            break;
        }
        char **names;
        size_t nnames;
        if (list_dir(pdir, &names, &nnames)) {
            rc = tsr_error_set(err, TSR_EIO, "%s: cannot list: %s", pdir, strerror(errno));
            free(pdir);
            break;
        }
        for (size_t j = 0; j < nnames; j++) {
            if (names[j][0] == '_' || names[j][0] == '.') continue;
            char *fp = path_join(pdir, names[j]);
            tsr_file_format_t fmt;
            struct stat st;
            if (stat(fp, &st) == 0 && S_ISDIR(st.st_mode)) {
                rc = tsr_error_set(err, TSR_EUNSUPPORTED,
                                   "%s: nested folders inside a partition are not supported",
                                   fp);
                free(fp);
                break;
            }
            if (format_of(names[j], &fmt)) {
                rc = tsr_error_set(err, TSR_EUNSUPPORTED,
                                   "%s: unknown file format (expected .csv, .jsonl, .json or "
                                   ".ndjson)",
                                   fp);
                free(fp);
                break;
            }
            if (k == cap) v = tsr_realloc(v, (cap *= 2) * sizeof(*v));
            v[k].path = fp;
            v[k].day = day;
            v[k].format = fmt;
            v[k].size = (uint64_t)st.st_size;
            v[k].ordinal = (uint32_t)k;
            k++;
        }
        free_names(names, nnames);
        free(pdir);
    }
    free_names(parts, nparts);
    *files = v;
    *nfiles = k;
    return rc;
}

static int infer_schema(tsr_table_t *t, tsr_table_file_t *files, size_t nfiles,
                        tsr_error_t *err) {
    size_t cap = 0, n = 0;
    infer_t *st = NULL;
    char **names = NULL;
    int rc = 0;
    /* a throwaway table view so the readers can run before the columns are known */
    for (size_t i = 0; i < nfiles && rc == 0; i++) {
        tsr_file_reader_t r;
        memset(&r, 0, sizeof(r));
        r.t = t;
        r.f = &files[i];
        r.fd = -1;
        tsr_arena_init(&r.arena, 0);
        if ((rc = tsr__reader_map(&r, err)) != 0) break;
        if (files[i].format == TSR_FORMAT_CSV) {
            size_t nf;
            int got = tsr__csv_next_record(&r, &nf, err);
            size_t *idx = NULL;
            if (got == 1) {
                idx = tsr_malloc((nf ? nf : 1) * sizeof(*idx));
                for (size_t f = 0; f < nf; f++) {
                    char *name = tsr_strndup(r.fptr[f], r.flen[f]);
                    size_t c = 0;
                    while (c < n && strcmp(names[c], name) != 0) c++;
                    if (c == n) {
                        if (n == cap) {
                            cap = cap ? 2 * cap : 16;
                            st = tsr_realloc(st, cap * sizeof(*st));
                            names = tsr_realloc(names, cap * sizeof(*names));
                        }
                        memset(&st[n], 0, sizeof(st[n]));
                        names[n++] = name;
                    } else {
                        free(name);
                    }
                    idx[f] = c;
                }
                size_t hdr = nf;
                while ((got = tsr__csv_next_record(&r, &nf, err)) == 1) {
                    if (nf == 1 && r.flen[0] == 0) continue; /* blank line */
                    for (size_t f = 0; f < nf && f < hdr; f++)
                        infer_text(&st[idx[f]], r.fptr[f], r.flen[f]);
                    tsr_arena_reset(&r.arena);
                }
            }
            free(idx);
            if (got < 0) rc = got;
        } else {
            const char *line;
            size_t len;
            while (rc == 0 && tsr__jsonl_next_line(&r, &line, &len) == 1) {
                json_error_t je;
                json_t *j = json_loadb(line, len, 0, &je);
                if (!j || !json_is_object(j)) {
                    rc = tsr_error_set(err, TSR_ECORRUPT, "%s:%llu: %s", files[i].path,
                                       (unsigned long long)r.row_line,
                                       j ? "expected a JSON object" : je.text);
                    json_decref(j);
                    break;
                }
                const char *k;
                json_t *v;
                json_object_foreach(j, k, v) {
                    size_t c = 0;
                    while (c < n && strcmp(names[c], k) != 0) c++;
                    if (c == n) {
                        if (n == cap) {
                            cap = cap ? 2 * cap : 16;
                            st = tsr_realloc(st, cap * sizeof(*st));
                            names = tsr_realloc(names, cap * sizeof(*names));
                        }
                        memset(&st[n], 0, sizeof(st[n]));
                        names[n++] = tsr_strdup(k);
                    }
                    infer_json(&st[c], v, 0);
                }
                json_decref(j);
            }
        }
        if (r.map) munmap((void *)r.map, r.size);
        if (r.fd >= 0) close(r.fd);
        free(r.fptr);
        free(r.flen);
        tsr_arena_free(&r.arena);
    }
    for (size_t c = 0; c < n; c++) {
        if (rc == 0) add_column(t, names[c], infer_type(&st[c]));
        infer_free(&st[c]);
        free(names[c]);
    }
    free(st);
    free(names);
    return rc;
}

int tsr_table_open(const char *warehouse, const char *name, int64_t day_lo, int64_t day_hi,
                   tsr_table_t **out, tsr_error_t *err) {
    *out = NULL;
    tsr_table_t *t = tsr_calloc(1, sizeof(*t));
    t->name = tsr_strdup(name);
    /* ns.name -> ns/name (only the first dot separates: "ns.a.b" is ns/a.b) */
    char *rel = tsr_strdup(name);
    char *dot = strchr(rel, '.');
    if (dot && !strchr(rel, '/')) *dot = '/';
    t->dir = path_join(warehouse, rel);
    free(rel);

    struct stat st;
    if (stat(t->dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
        int rc = tsr_error_set(err, TSR_ENOTFOUND, "table %s: folder %s not found", name,
                               t->dir);
        tsr_table_free(t);
        return rc;
    }
    tsr_table_file_t *all = NULL;
    size_t nall = 0;
    int rc = list_files(t, &all, &nall, err);
    if (rc == 0) {
        char *sp = path_join(t->dir, "_schema.json");
        if (stat(sp, &st) == 0) rc = read_schema_file(t, sp, err);
        else rc = infer_schema(t, all, nall, err);
        free(sp);
    }
    if (rc) {
        for (size_t i = 0; i < nall; i++) free(all[i].path);
        free(all);
        tsr_table_free(t);
        return rc;
    }
    /* keep the files and partitions in range */
    t->files = tsr_malloc((nall ? nall : 1) * sizeof(*t->files));
    t->part_days = tsr_malloc((nall ? nall : 1) * sizeof(*t->part_days));
    for (size_t i = 0; i < nall; i++) {
        if (all[i].day < day_lo || all[i].day > day_hi) {
            free(all[i].path);
            continue;
        }
        all[i].ordinal = (uint32_t)t->nfiles;
        t->files[t->nfiles++] = all[i];
        if (t->nparts == 0 || t->part_days[t->nparts - 1] != all[i].day)
            t->part_days[t->nparts++] = all[i].day;
    }
    free(all);
    /* partitions that exist but hold no part file still count as present */
    char **parts;
    size_t nparts;
    if (list_dir(t->dir, &parts, &nparts) == 0) {
        for (size_t i = 0; i < nparts; i++) {
            int64_t day;
            if (strncmp(parts[i], "ds=", 3) || tsr_ds_parse(parts[i] + 3, &day)) continue;
            if (day < day_lo || day > day_hi || tsr_table_has_partition(t, day)) continue;
            size_t j = t->nparts;
            t->part_days = tsr_realloc(t->part_days, (t->nparts + 1) * sizeof(int64_t));
            while (j > 0 && t->part_days[j - 1] > day) {
                t->part_days[j] = t->part_days[j - 1];
                j--;
            }
            t->part_days[j] = day;
            t->nparts++;
        }
        free_names(parts, nparts);
    }
    *out = t;
    return 0;
}

tsr_schema_t tsr_table_schema(const tsr_table_t *t) {
    tsr_schema_t s;
    s.n = t->ncols;
    s.names = (const char *const *)t->col_names;
    s.types = t->col_types;
    return s;
}

int tsr_table_column(const tsr_table_t *t, const char *name) {
    for (size_t i = 0; i < t->ncols; i++)
        if (strcmp(t->col_names[i], name) == 0) return (int)i;
    return -1;
}

int tsr_table_has_partition(const tsr_table_t *t, int64_t day) {
    size_t lo = 0, hi = t->nparts;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (t->part_days[mid] < day) lo = mid + 1;
        else hi = mid;
    }
    return lo < t->nparts && t->part_days[lo] == day;
}

/* ---------------------------------------------------------------- readers */

int tsr__reader_map(tsr_file_reader_t *r, tsr_error_t *err) {
    r->fd = open(r->f->path, O_RDONLY | O_CLOEXEC);
    if (r->fd < 0)
        return tsr_error_set(err, TSR_EIO, "%s: cannot open: %s", r->f->path, strerror(errno));
    struct stat st;
    if (fstat(r->fd, &st) != 0)
        return tsr_error_set(err, TSR_EIO, "%s: cannot stat: %s", r->f->path, strerror(errno));
    r->size = (size_t)st.st_size;
    if (r->size) {
        void *m = mmap(NULL, r->size, PROT_READ, MAP_PRIVATE, r->fd, 0);
        if (m == MAP_FAILED)
            return tsr_error_set(err, TSR_EIO, "%s: cannot map: %s", r->f->path,
                                 strerror(errno));
        madvise(m, r->size, MADV_SEQUENTIAL);
        r->map = m;
    }
    r->p = r->map;
    r->end = r->map ? r->map + r->size : NULL;
    r->line = 1;
    return 0;
}

int tsr_file_reader_open(const tsr_table_t *t, size_t i, const uint8_t *want,
                         tsr_file_reader_t **out, tsr_error_t *err) {
    *out = NULL;
    if (i >= t->nfiles) return tsr_error_set(err, TSR_EINVAL, "file index %zu out of range", i);
    tsr_file_reader_t *r = tsr_calloc(1, sizeof(*r));
    r->t = t;
    r->f = &t->files[i];
    r->fd = -1;
    tsr_arena_init(&r->arena, 0);
    r->want = tsr_malloc(t->ncols ? t->ncols : 1);
    for (size_t c = 0; c < t->ncols; c++) r->want[c] = want ? want[c] != 0 : 1;
    int rc = tsr__reader_map(r, err);
    if (rc == 0 && r->f->format == TSR_FORMAT_CSV) rc = tsr__csv_open(r, err);
    if (rc) {
        tsr_file_reader_close(r);
        return rc;
    }
    *out = r;
    return 0;
}

int tsr_file_reader_next(tsr_file_reader_t *r, tsr_value_t *row, tsr_error_t *err) {
    tsr_arena_reset(&r->arena);
    if (r->f->format == TSR_FORMAT_CSV) return tsr__csv_next(r, row, err);
    return tsr__jsonl_next(r, row, err);
}

uint64_t tsr_file_reader_line(const tsr_file_reader_t *r) { return r->row_line; }

void tsr_file_reader_close(tsr_file_reader_t *r) {
    if (!r) return;
    if (r->map) munmap((void *)r->map, r->size);
    if (r->fd >= 0) close(r->fd);
    free(r->want);
    free(r->colmap);
    free(r->fptr);
    free(r->flen);
    tsr_arena_free(&r->arena);
    free(r);
}
