/*
 * table_csv.c — the CSV part-file reader (RFC 4180), parsing a memory-mapped file in place.
 *
 * Records end at "\n" or "\r\n" outside quotes. A field is either unquoted (up to the next ','
 * or end of record, taken as-is) or quoted: it starts with '"', a doubled quote inside stands
 * for one quote, and the closing quote must be followed by ',', the end of the record or the
 * end of the file. Unquoted fields and quoted fields without doubled quotes point straight into
 * the mapping; only fields with doubled quotes are copied (unescaped) into the row's arena.
 * An empty cell is null. Lines are counted across embedded newlines so errors name the line
 * where the row starts. A blank line is skipped.
 */
#include "table_int.h"

#include <string.h>

static void ensure_fields(tsr_file_reader_t *r, size_t n) {
    if (n <= r->fcap) return;
    size_t cap = r->fcap ? r->fcap : 16;
    while (cap < n) cap *= 2;
    r->fptr = tsr_realloc(r->fptr, cap * sizeof(*r->fptr));
    r->flen = tsr_realloc(r->flen, cap * sizeof(*r->flen));
    r->fcap = cap;
}

int tsr__csv_next_record(tsr_file_reader_t *r, size_t *n, tsr_error_t *err) {
    const char *p = r->p, *end = r->end;
    if (!p || p >= end) return 0;
    r->row_line = r->line;
    size_t nf = 0;
    for (;;) {
        ensure_fields(r, nf + 1);
        if (p < end && *p == '"') {
            const char *start = ++p;
            int escaped = 0;
            for (;;) {
                const char *q = memchr(p, '"', (size_t)(end - p));
                if (!q) {
                    r->p = end;
                    return tsr_error_set(err, TSR_ECORRUPT, "%s:%llu: unterminated quoted field",
                                         r->f->path, (unsigned long long)r->row_line);
                }
                for (const char *c = p; c < q; c++) r->line += *c == '\n';
                if (q + 1 < end && q[1] == '"') {
                    escaped = 1;
                    p = q + 2;
                    continue;
                }
                p = q + 1;
                break;
            }
            size_t raw = (size_t)(p - 1 - start);
            if (!escaped) {
                r->fptr[nf] = start;
                r->flen[nf] = raw;
            } else {
                char *dst = tsr_arena_alloc(&r->arena, raw + 1);
                size_t k = 0;
                for (size_t i = 0; i < raw; i++) {
                    dst[k++] = start[i];
                    if (start[i] == '"') i++; /* skip the second quote of a pair */
                }
                r->fptr[nf] = dst;
                r->flen[nf] = k;
            }
            nf++;
            if (p < end && *p == ',') {
                p++;
                continue;
            }
            if (p >= end) break;
            if (*p == '\n') {
                p++;
                r->line++;
                break;
            }
            if (*p == '\r' && p + 1 < end && p[1] == '\n') {
                p += 2;
                r->line++;
                break;
            }
            /* skip the rest of the record so the caller can go on */
            uint64_t at = r->line;
            while (p < end && *p != '\n') p++;
            if (p < end) {
                p++;
                r->line++;
            }
            r->p = p;
            return tsr_error_set(err, TSR_ECORRUPT,
                                 "%s:%llu: field %zu: unexpected character after a closing quote",
                                 r->f->path, (unsigned long long)at, nf);
        }
        const char *start = p;
        while (p < end && *p != ',' && *p != '\n') p++;
        size_t len = (size_t)(p - start);
        if (p < end && *p == '\n' && len && start[len - 1] == '\r') len--;
        else if (p == end && len && start[len - 1] == '\r') len--;
        r->fptr[nf] = start;
        r->flen[nf] = len;
        nf++;
        if (p < end && *p == ',') {
            p++;
            continue;
        }
        if (p < end) {
            p++; /* '\n' */
            r->line++;
        }
        break;
    }
    r->p = p;
    *n = nf;
    return 1;
}

int tsr__csv_open(tsr_file_reader_t *r, tsr_error_t *err) {
    size_t nf;
    int got = tsr__csv_next_record(r, &nf, err);
    if (got < 0) return got;
    if (got == 0) return 0; /* empty file: no header, no rows */
    r->nfields = nf;
    r->colmap = tsr_malloc(nf * sizeof(int));
    for (size_t f = 0; f < nf; f++) {
        r->colmap[f] = -1;
        for (size_t c = 0; c < r->t->ncols; c++) {
            if (strlen(r->t->col_names[c]) == r->flen[f] &&
                memcmp(r->t->col_names[c], r->fptr[f], r->flen[f]) == 0) {
                r->colmap[f] = (int)c;
                break;
            }
        }
        for (size_t g = 0; g < f; g++)
            if (r->colmap[f] >= 0 && r->colmap[g] == r->colmap[f])
                return tsr_error_set(err, TSR_ECORRUPT, "%s:1: column '%.*s' appears twice in the header",
                                     r->f->path, (int)r->flen[f], r->fptr[f]);
    }
    tsr_arena_reset(&r->arena);
    return 0;
}

int tsr__csv_next(tsr_file_reader_t *r, tsr_value_t *row, tsr_error_t *err) {
    const tsr_table_t *t = r->t;
    for (;;) {
        size_t nf;
        int got = tsr__csv_next_record(r, &nf, err);
        if (got <= 0) return got;
        if (nf == 1 && r->flen[0] == 0) continue; /* blank line */
        if (nf != r->nfields)
            return tsr_error_set(err, TSR_ECORRUPT, "%s:%llu: expected %zu fields, got %zu",
                                 r->f->path, (unsigned long long)r->row_line, r->nfields, nf);
        for (size_t c = 0; c < t->ncols; c++) row[c] = tsr_value_null();
        for (size_t f = 0; f < nf; f++) {
            int c = r->colmap[f];
            if (c < 0 || !r->want[c]) continue;
            if (tsr__text_to_value(r->fptr[f], r->flen[f], t->col_types[c], &r->arena,
                                   &row[c])) {
                char tn[TSR_TYPE_NAME_MAX];
                int show = r->flen[f] > 40 ? 40 : (int)r->flen[f];
                return tsr_error_set(err, TSR_ECORRUPT,
                                     "%s:%llu: column '%s': '%.*s%s' is not a %s", r->f->path,
                                     (unsigned long long)r->row_line, t->col_names[c], show,
                                     r->fptr[f], r->flen[f] > 40 ? "..." : "",
                                     tsr_type_name(t->col_types[c], tn, sizeof tn));
            }
        }
        return 1;
    }
}
