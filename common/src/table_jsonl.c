/*
 * table_jsonl.c — the JSON Lines part-file reader: one JSON object per line, parsed with
 * jansson (exact int64). Keys not in the table's columns are ignored; a missing key or JSON
 * null is null. Whitespace-only lines are skipped.
 */
#include "table_int.h"

#include <string.h>

int tsr__jsonl_next_line(tsr_file_reader_t *r, const char **s, size_t *n) {
    while (r->p && r->p < r->end) {
        const char *start = r->p;
        const char *nl = memchr(start, '\n', (size_t)(r->end - start));
        const char *stop = nl ? nl : r->end;
        r->p = nl ? nl + 1 : r->end;
        r->row_line = r->line;
        r->line++;
        size_t len = (size_t)(stop - start);
        int blank = 1;
        for (size_t i = 0; i < len && blank; i++)
            blank = start[i] == ' ' || start[i] == '\t' || start[i] == '\r';
        if (blank) continue;
        *s = start;
        *n = len;
        return 1;
    }
    return 0;
}

int tsr__jsonl_next(tsr_file_reader_t *r, tsr_value_t *row, tsr_error_t *err) {
    const tsr_table_t *t = r->t;
    const char *line;
    size_t len;
    if (!tsr__jsonl_next_line(r, &line, &len)) return 0;
    json_error_t je;
    json_t *j = json_loadb(line, len, 0, &je);
    if (!j)
        return tsr_error_set(err, TSR_ECORRUPT, "%s:%llu:%d: invalid JSON: %s", r->f->path,
                             (unsigned long long)r->row_line, je.column, je.text);
    if (!json_is_object(j)) {
        json_decref(j);
        return tsr_error_set(err, TSR_ECORRUPT, "%s:%llu: expected a JSON object", r->f->path,
                             (unsigned long long)r->row_line);
    }
    int rc = 1;
    for (size_t c = 0; c < t->ncols; c++) {
        row[c] = tsr_value_null();
        if (!r->want[c]) continue;
        const char *why = NULL;
        if (tsr__json_to_value(json_object_get(j, t->col_names[c]), t->col_types[c], &r->arena,
                               &row[c], &why)) {
            char tn[TSR_TYPE_NAME_MAX];
            rc = tsr_error_set(err, TSR_ECORRUPT, "%s:%llu: column '%s': value %s (declared %s)",
                               r->f->path, (unsigned long long)r->row_line, t->col_names[c],
                               why ? why : "is invalid",
                               tsr_type_name(t->col_types[c], tn, sizeof tn));
            break;
        }
    }
    json_decref(j);
    return rc;
}
