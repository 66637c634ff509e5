/*
 * kafka_parse.c — a Kafka JSON message → one row of tsr_value_t typed by a schema.
 *
 * The conversions are the warehouse JSON Lines reader's (tsr__json_to_value in table.c), so
 * an event streamed through Kafka and the same event read from the warehouse become the same
 * values — the offline/online equality of SPEC §6 starts here. Differences from the
 * warehouse reader: a field may be declared required (missing or null → error), and errors
 * are per message (the caller counts and skips the message; nothing here aborts).
 *
 * Two paths, one answer:
 *   - row_fast: a single pass over the bytes for the common event shape — a flat object of
 *     ASCII strings (simple escapes), numbers, booleans and nulls, with nested values only
 *     under keys outside the schema. It allocates only the strings it copies into the arena.
 *     It either produces exactly the row the jansson path would produce, or gives up
 *     (returns 0) on anything unusual: non-ASCII or \u escapes, a number that could overflow,
 *     a list/map column, a string column holding a non-string, ANY error. It never reports an
 *     error itself.
 *   - row_jansson: jansson's tree + tsr__json_to_value, and every error message.
 * The differential fuzz test in tests/unit/test_kafka_parse.c checks that whenever the fast
 * path answers, the jansson path agrees value for value.
 *
 * Input is untrusted bytes: only n bytes are read; jansson validates UTF-8 and bounds nesting;
 * the fast path bounds its own nesting (FAST_MAX_DEPTH) and gives up beyond.
 */
#include "kafka_int.h"
#include "table_int.h"

#include <math.h>
#include <string.h>

#define FAST_MAX_DEPTH 32

/* ---------------------------------------------------------------- fast path */

typedef struct scan {
    const char *p, *end;
} scan_t;

static void skip_ws(scan_t *s) {
    while (s->p < s->end && (*s->p == ' ' || *s->p == '\t' || *s->p == '\n' || *s->p == '\r'))
        s->p++;
}

/* Scans a string at s->p (at the opening quote). Sets [*z, *n) to the raw bytes between the
 * quotes and *esc when they contain a backslash. Gives up (0) on control characters,
 * non-ASCII bytes, \u escapes and unknown escapes. */
static int scan_string(scan_t *s, const char **z, size_t *n, int *esc) {
    const char *p = s->p + 1;
    *esc = 0;
    *z = p;
    while (p < s->end) {
        unsigned char ch = (unsigned char)*p;
        if (ch == '"') {
            *n = (size_t)(p - *z);
            s->p = p + 1;
            return 1;
        }
        if (ch < 0x20 || ch >= 0x80) return 0;
        if (ch == '\\') {
            if (p + 1 >= s->end) return 0;
            char e = p[1];
            if (!(e == '"' || e == '\\' || e == '/' || e == 'b' || e == 'f' || e == 'n' ||
                  e == 'r' || e == 't'))
                return 0;
            *esc = 1;
            p += 2;
            continue;
        }
        p++;
    }
    return 0;
}

/* Copies a scanned string into the arena, resolving simple escapes. */
static const char *unescape(tsr_arena_t *a, const char *z, size_t n, int esc, size_t *out_n) {
    if (!esc) {
        *out_n = n;
        return tsr_arena_strndup(a, z, n);
    }
    char *d = tsr_arena_alloc(a, n + 1);
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (z[i] != '\\') {
            d[k++] = z[i];
            continue;
        }
        char e = z[++i];
        d[k++] = e == 'b' ? '\b' : e == 'f' ? '\f' : e == 'n' ? '\n' : e == 'r' ? '\r'
                 : e == 't' ? '\t' : e;
    }
    d[k] = '\0';
    *out_n = k;
    return d;
}

/* Scans a JSON number (RFC 8259 grammar) at s->p. *is_int when it has no fraction or
 * exponent. Gives up on a malformed number. */
static int scan_number(scan_t *s, const char **z, size_t *n, int *is_int) {
    const char *p = s->p;
    *z = p;
    *is_int = 1;
    if (p < s->end && *p == '-') p++;
    if (p >= s->end) return 0;
    if (*p == '0') {
        p++;
    } else if (*p >= '1' && *p <= '9') {
        while (p < s->end && *p >= '0' && *p <= '9') p++;
    } else {
        return 0;
    }
    if (p < s->end && *p == '.') {
        *is_int = 0;
        p++;
        const char *d = p;
        while (p < s->end && *p >= '0' && *p <= '9') p++;
        if (p == d) return 0;
    }
    if (p < s->end && (*p == 'e' || *p == 'E')) {
        *is_int = 0;
        p++;
        if (p < s->end && (*p == '+' || *p == '-')) p++;
        const char *d = p;
        while (p < s->end && *p >= '0' && *p <= '9') p++;
        if (p == d) return 0;
    }
    *n = (size_t)(p - *z);
    s->p = p;
    return 1;
}

static int scan_literal(scan_t *s, const char *lit, size_t n) {
    if ((size_t)(s->end - s->p) < n || memcmp(s->p, lit, n) != 0) return 0;
    s->p += n;
    return 1;
}

/* Validates and skips any JSON value (for keys outside the schema). */
static int skip_value(scan_t *s, int depth) {
    if (depth > FAST_MAX_DEPTH || s->p >= s->end) return 0;
    const char *z;
    size_t n;
    int flag;
    switch (*s->p) {
    case '"': return scan_string(s, &z, &n, &flag);
    case 't': return scan_literal(s, "true", 4);
    case 'f': return scan_literal(s, "false", 5);
    case 'n': return scan_literal(s, "null", 4);
    case '[':
    case '{': {
        char close = *s->p == '[' ? ']' : '}';
        int obj = close == '}';
        s->p++;
        skip_ws(s);
        if (s->p < s->end && *s->p == close) {
            s->p++;
            return 1;
        }
        for (;;) {
            if (obj) {
                if (s->p >= s->end || *s->p != '"' || !scan_string(s, &z, &n, &flag)) return 0;
                skip_ws(s);
                if (s->p >= s->end || *s->p != ':') return 0;
                s->p++;
                skip_ws(s);
            }
            if (!skip_value(s, depth + 1)) return 0;
            skip_ws(s);
            if (s->p >= s->end) return 0;
            if (*s->p == ',') {
                s->p++;
                skip_ws(s);
                continue;
            }
            if (*s->p != close) return 0;
            s->p++;
            return 1;
        }
    }
    default: {
        /* a number; an integer of more than 18 digits could overflow jansson's int64 */
        if (!scan_number(s, &z, &n, &flag)) return 0;
        if (flag && n > 18) return 0;
        if (!flag) {
            double d;
            if (tsr_parse_double(z, n, &d) || isinf(d)) return 0;
        }
        return 1;
    }
    }
}

/* Converts the value at s->p for a scalar column of kind k. Gives up on anything the jansson
 * path would reject or would convert by re-printing JSON. */
static int fast_value(scan_t *s, tsr_kind_t k, tsr_arena_t *a, tsr_value_t *out) {
    const char *z;
    size_t n;
    int flag;
    if (s->p >= s->end) return 0;
    char ch = *s->p;
    if (ch == 'n') {
        if (!scan_literal(s, "null", 4)) return 0;
        *out = tsr_value_null();
        return 1;
    }
    if (ch == 't' || ch == 'f') {
        if (k != TSR_BOOL) return 0;
        if (!(ch == 't' ? scan_literal(s, "true", 4) : scan_literal(s, "false", 5))) return 0;
        *out = tsr_value_bool(ch == 't');
        return 1;
    }
    if (ch == '"') {
        if (!scan_string(s, &z, &n, &flag)) return 0;
        size_t len;
        const char *t = flag ? unescape(a, z, n, flag, &len) : z;
        if (!flag) len = n;
        if (k == TSR_STRING) {
            if (!flag) t = tsr_arena_strndup(a, z, n);
            *out = tsr_value_string(t, len);
            return 1;
        }
        if (k == TSR_LONG) {
            int64_t v;
            if (tsr_parse_long(t, len, &v)) return 0;
            *out = tsr_value_long(v);
            return 1;
        }
        if (k == TSR_DOUBLE) {
            double d;
            if (tsr_parse_double(t, len, &d)) return 0;
            *out = tsr_value_double(d);
            return 1;
        }
        return 0;
    }
    if (ch == '-' || (ch >= '0' && ch <= '9')) {
        if (k != TSR_LONG && k != TSR_DOUBLE) return 0;
        if (!scan_number(s, &z, &n, &flag)) return 0;
        if (flag) {
            int64_t v;
            if (n > 18 || tsr_parse_long(z, n, &v)) return 0;
            *out = k == TSR_LONG ? tsr_value_long(v) : tsr_value_double((double)v);
            return 1;
        }
        double d;
        if (tsr_parse_double(z, n, &d) || isinf(d)) return 0;
        if (k == TSR_DOUBLE) {
            *out = tsr_value_double(d);
            return 1;
        }
        /* the warehouse rule: an integral double is a long */
        if (d == floor(d) && fabs(d) < 9.2e18) {
            *out = tsr_value_long((int64_t)d);
            return 1;
        }
        return 0;
    }
    return 0;
}

int tsr__kafka_row_fast(const char *text, size_t len, const tsr_kafka_field_t *fields,
                        size_t nfields, tsr_arena_t *arena, tsr_value_t *row) {
    scan_t s = {text, text + len};
    for (size_t i = 0; i < nfields; i++) {
        row[i] = tsr_value_null();
        tsr_kind_t k = tsr_type_kind(fields[i].type);
        if (k != TSR_LONG && k != TSR_DOUBLE && k != TSR_BOOL && k != TSR_STRING) return 0;
    }
    skip_ws(&s);
    if (s.p >= s.end || *s.p != '{') return 0;
    s.p++;
    skip_ws(&s);
    if (s.p < s.end && *s.p == '}') {
        s.p++;
    } else {
        for (;;) {
            const char *z;
            size_t n;
            int esc;
            if (s.p >= s.end || *s.p != '"' || !scan_string(&s, &z, &n, &esc) || esc) return 0;
            skip_ws(&s);
            if (s.p >= s.end || *s.p != ':') return 0;
            s.p++;
            skip_ws(&s);
            size_t f = nfields;
            /* the first byte settles most non-matches without a library call */
            for (size_t i = 0; i < nfields; i++)
                if (fields[i].name[0] == (n ? z[0] : '\0') && strncmp(fields[i].name, z, n) == 0 &&
                    fields[i].name[n] == '\0') {
                    f = i;
                    break;
                }
            /* a repeated key: the last one wins, as in jansson */
            if (f < nfields ? !fast_value(&s, tsr_type_kind(fields[f].type), arena, &row[f])
                            : !skip_value(&s, 1))
                return 0;
            skip_ws(&s);
            if (s.p >= s.end) return 0;
            if (*s.p == ',') {
                s.p++;
                skip_ws(&s);
                continue;
            }
            if (*s.p != '}') return 0;
            s.p++;
            break;
        }
    }
    skip_ws(&s);
    if (s.p != s.end) return 0;
    for (size_t i = 0; i < nfields; i++)
        if (fields[i].required && row[i].kind == TSR_NULL) return 0;
    return 1;
}

/* ---------------------------------------------------------------- jansson path */

int tsr__kafka_row_jansson(const char *s, size_t n, const tsr_kafka_field_t *fields,
                           size_t nfields, tsr_arena_t *arena, tsr_value_t *row,
                           tsr_error_t *err) {
    for (size_t i = 0; i < nfields; i++) row[i] = tsr_value_null();
    json_error_t je;
    json_t *j = json_loadb(s, n, 0, &je);
    if (!j)
        return tsr_error_set(err, TSR_EPARSE, "invalid JSON at column %d: %s", je.column,
                             je.text);
    if (!json_is_object(j)) {
        json_decref(j);
        return tsr_error_set(err, TSR_EPARSE, "not a JSON object");
    }
    int rc = 0;
    for (size_t i = 0; i < nfields; i++) {
        json_t *v = json_object_get(j, fields[i].name);
        if (!v || json_is_null(v)) {
            if (fields[i].required) {
                rc = tsr_error_set(err, TSR_EPARSE, "field '%s': %s (required)", fields[i].name,
                                   v ? "null" : "missing");
                break;
            }
            continue;
        }
        const char *why = NULL;
        if (tsr__json_to_value(v, fields[i].type, arena, &row[i], &why)) {
            char tn[TSR_TYPE_NAME_MAX];
            rc = tsr_error_set(err, TSR_EPARSE, "field '%s': value %s (declared %s)",
                               fields[i].name, why ? why : "is invalid",
                               tsr_type_name(fields[i].type, tn, sizeof tn));
            break;
        }
    }
    json_decref(j);
    if (rc)
        for (size_t i = 0; i < nfields; i++) row[i] = tsr_value_null();
    return rc;
}

/* ---------------------------------------------------------------- public */

int tsr_kafka_json_to_row(const char *s, size_t n, const tsr_kafka_field_t *fields,
                          size_t nfields, tsr_arena_t *arena, tsr_value_t *row, tsr_error_t *err) {
    if (!s) {
        for (size_t i = 0; i < nfields; i++) row[i] = tsr_value_null();
        return tsr_error_set(err, TSR_EPARSE, "empty message (no value)");
    }
    if (tsr__kafka_row_fast(s, n, fields, nfields, arena, row)) return 0;
    return tsr__kafka_row_jansson(s, n, fields, nfields, arena, row, err);
}

int tsr_kafka_msg_to_row(const tsr_kafka_msg_t *m, const tsr_kafka_field_t *fields,
                         size_t nfields, tsr_arena_t *arena, tsr_value_t *row, tsr_error_t *err) {
    int rc = tsr_kafka_json_to_row(m->value, m->value_len, fields, nfields, arena, row, err);
    if (rc) tsr_error_prefix(err, "partition %d offset %lld", (int)m->partition,
                             (long long)m->offset);
    return rc;
}
