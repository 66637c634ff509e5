/*
 * http_json.c — a strict JSON parser (RFC 8259) that builds tsr_value_t trees in an arena,
 * so parsing a fetch request allocates nothing outside the request's arena.
 *
 * Design. Recursive descent over a byte range (no NUL terminator needed). Objects become
 * TSR_MAP values (keys in document order), arrays TSR_LIST, integers without fraction or
 * exponent TSR_LONG (exact int64; out of range is an error, as in jansson), other numbers
 * TSR_DOUBLE (overflow to infinity is an error), strings are unescaped into the arena and
 * NUL-terminated (their len excludes the NUL). Items of an array or object are gathered in
 * an arena vector that doubles when full; the final array is the vector itself.
 *
 * Invariants (checked by test_http_fetch.c against jansson on random and mutated inputs):
 *   1. Accepts exactly what jansson accepts with JSON_DECODE_ANY | JSON_REJECT_DUPLICATES,
 *      for documents nested at most TSR_HTTP_JSON_MAX_DEPTH deep: UTF-8 is validated, "\u0000"
 *      and lone surrogates are rejected, duplicate keys in one object are rejected.
 *   2. Never reads outside [p, p+n); recursion depth is bounded.
 *   3. Errors give line and column (1-based, column counted in bytes) and what was wrong.
 */
#include "http_int.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct jp {
    const char *p, *end, *start;
    tsr_arena_t *arena;
    tsr_error_t *err;
    int depth;
} jp_t;

static int jp_fail(jp_t *j, const char *at, const char *what) {
    int line = 1, col = 1;
    for (const char *q = j->start; q < at && q < j->end; q++) {
        if (*q == '\n') {
            line++;
            col = 1;
        } else {
            col++;
        }
    }
    if (at >= j->end && strncmp(what, "unexpected end", 14) != 0)
        return tsr_error_set(j->err, TSR_EINVAL,
                             "invalid JSON at line %d, column %d: unexpected end of input (%s)",
                             line, col, what);
    return tsr_error_set(j->err, TSR_EINVAL, "invalid JSON at line %d, column %d: %s", line, col,
                         what);
}

static void skip_ws(jp_t *j) {
    while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r'))
        j->p++;
}

static int parse_value(jp_t *j, tsr_value_t *out);

/* Length of the valid UTF-8 sequence at s (s < end), or 0. Rejects overlongs, surrogates and
 * code points above U+10FFFF. */
static size_t utf8_len(const unsigned char *s, const unsigned char *end) {
    unsigned c = s[0];
    size_t n;
    unsigned cp;
    if (c < 0x80) return 1;
    if (c >= 0xC2 && c <= 0xDF) { n = 2; cp = c & 0x1F; }
    else if (c >= 0xE0 && c <= 0xEF) { n = 3; cp = c & 0x0F; }
    else if (c >= 0xF0 && c <= 0xF4) { n = 4; cp = c & 0x07; }
    else return 0;
    if ((size_t)(end - s) < n) return 0;
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xC0) != 0x80) return 0;
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    if ((n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) || cp > 0x10FFFF ||
        (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    return n;
}

static int hex4(const char *s, unsigned *out) {
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        char c = s[i];
        v <<= 4;
        if (c >= '0' && c <= '9') v |= (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f') v |= (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F') v |= (unsigned)(c - 'A' + 10);
        else return -1;
    }
    *out = v;
    return 0;
}

static size_t put_utf8(char *o, unsigned cp) {
    if (cp < 0x80) { o[0] = (char)cp; return 1; }
    if (cp < 0x800) {
        o[0] = (char)(0xC0 | (cp >> 6));
        o[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (char)(0xE0 | (cp >> 12));
        o[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (char)(0xF0 | (cp >> 18));
    o[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    o[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* j->p at the opening quote. The decoded string is never longer than its source. */
static int parse_string(jp_t *j, tsr_value_t *out) {
    const char *open = j->p++;
    const char *s = j->p;
    /* find the closing quote first to size the output */
    const char *q = s;
    while (q < j->end && *q != '"') q += (*q == '\\' && q + 1 < j->end) ? 2 : 1;
    if (q >= j->end) return jp_fail(j, open, "unterminated string");
    char *o = tsr_arena_alloc(j->arena, (size_t)(q - s) + 1);
    size_t n = 0;
    while (j->p < q) {
        unsigned char c = (unsigned char)*j->p;
        if (c < 0x20) return jp_fail(j, j->p, "control character in string");
        if (c != '\\') {
            size_t l = utf8_len((const unsigned char *)j->p, (const unsigned char *)q);
            if (!l) return jp_fail(j, j->p, "invalid UTF-8 in string");
            memcpy(o + n, j->p, l);
            n += l;
            j->p += l;
            continue;
        }
        const char *esc = j->p;
        char e = j->p[1]; /* j->p + 1 < q: a backslash is never the last byte before q */
        j->p += 2;
        switch (e) {
        case '"': o[n++] = '"'; break;
        case '\\': o[n++] = '\\'; break;
        case '/': o[n++] = '/'; break;
        case 'b': o[n++] = '\b'; break;
        case 'f': o[n++] = '\f'; break;
        case 'n': o[n++] = '\n'; break;
        case 'r': o[n++] = '\r'; break;
        case 't': o[n++] = '\t'; break;
        case 'u': {
            unsigned cp, lo;
            if (q - j->p < 4 || hex4(j->p, &cp)) return jp_fail(j, esc, "invalid \\u escape");
            j->p += 4;
            if (cp >= 0xDC00 && cp <= 0xDFFF) return jp_fail(j, esc, "lone Unicode surrogate");
            if (cp >= 0xD800 && cp <= 0xDBFF) {
                if (q - j->p < 6 || j->p[0] != '\\' || j->p[1] != 'u' || hex4(j->p + 2, &lo) ||
                    lo < 0xDC00 || lo > 0xDFFF)
                    return jp_fail(j, esc, "lone Unicode surrogate");
                j->p += 6;
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            }
            if (cp == 0) return jp_fail(j, esc, "\\u0000 is not allowed in strings");
            /* 6 source bytes (or 12 for a pair) always cover the <= 4 output bytes */
            n += put_utf8(o + n, cp);
            break;
        }
        default: return jp_fail(j, esc, "invalid escape in string");
        }
    }
    o[n] = 0;
    j->p = q + 1;
    *out = tsr_value_string(o, n);
    return 0;
}

static int parse_number(jp_t *j, tsr_value_t *out) {
    const char *s = j->p, *q = s;
    int real = 0;
    if (q < j->end && *q == '-') q++;
    if (q >= j->end || *q < '0' || *q > '9') return jp_fail(j, s, "invalid number");
    if (*q == '0') q++;
    else while (q < j->end && *q >= '0' && *q <= '9') q++;
    if (q < j->end && *q == '.') {
        real = 1;
        q++;
        if (q >= j->end || *q < '0' || *q > '9') return jp_fail(j, s, "invalid number");
        while (q < j->end && *q >= '0' && *q <= '9') q++;
    }
    if (q < j->end && (*q == 'e' || *q == 'E')) {
        real = 1;
        q++;
        if (q < j->end && (*q == '+' || *q == '-')) q++;
        if (q >= j->end || *q < '0' || *q > '9') return jp_fail(j, s, "invalid number");
        while (q < j->end && *q >= '0' && *q <= '9') q++;
    }
    size_t len = (size_t)(q - s);
    char tmp[64];
    char *txt = len < sizeof tmp ? tmp : tsr_arena_alloc(j->arena, len + 1);
    memcpy(txt, s, len);
    txt[len] = 0;
    errno = 0;
    if (!real) {
        long long v = strtoll(txt, NULL, 10);
        if (errno == ERANGE) return jp_fail(j, s, "integer out of range");
        *out = tsr_value_long((int64_t)v);
    } else {
        double d = strtod(txt, NULL);
        if (errno == ERANGE && isinf(d)) return jp_fail(j, s, "number out of range");
        *out = tsr_value_double(d);
    }
    j->p = q;
    return 0;
}

/* A growable item vector in the arena. */
typedef struct vec {
    tsr_value_t *v;
    size_t n, cap;
} vec_t;

static tsr_value_t *vec_push(jp_t *j, vec_t *v, size_t k) {
    if (v->n + k > v->cap) {
        size_t cap = v->cap ? 2 * v->cap : 8;
        while (cap < v->n + k) cap *= 2;
        tsr_value_t *nv = tsr_arena_alloc(j->arena, cap * sizeof *nv);
        if (v->n) memcpy(nv, v->v, v->n * sizeof *nv);
        v->v = nv;
        v->cap = cap;
    }
    tsr_value_t *slot = v->v + v->n;
    v->n += k;
    return slot;
}

static int key_cmp(const void *a, const void *b) {
    const tsr_value_t *x = *(const tsr_value_t *const *)a, *y = *(const tsr_value_t *const *)b;
    size_t n = x->len < y->len ? x->len : y->len;
    int c = memcmp(x->u.s, y->u.s, n);
    return c ? c : (x->len > y->len) - (x->len < y->len);
}

static int key_eq(const tsr_value_t *x, const tsr_value_t *y) {
    return x->len == y->len && memcmp(x->u.s, y->u.s, x->len) == 0;
}

/* Index of a key that appears twice among the nk keys (items 0, 2, 4, ...), or -1. Small
 * objects (every fetch row) compare pairwise; large ones sort, so a hostile body with a
 * million keys costs O(n log n), not O(n^2). */
static long find_duplicate(jp_t *j, const tsr_value_t *items, size_t nk) {
    if (nk < 2) return -1;
    if (nk <= 16) {
        for (size_t a = 1; a < nk; a++)
            for (size_t b = 0; b < a; b++)
                if (key_eq(&items[2 * a], &items[2 * b])) return (long)a;
        return -1;
    }
    const tsr_value_t **ks = tsr_arena_alloc(j->arena, nk * sizeof *ks);
    for (size_t i = 0; i < nk; i++) ks[i] = &items[2 * i];
    qsort(ks, nk, sizeof *ks, key_cmp);
    for (size_t i = 1; i < nk; i++)
        if (key_cmp(&ks[i - 1], &ks[i]) == 0) return (long)((ks[i] - items) / 2);
    return -1;
}

static int parse_container(jp_t *j, tsr_value_t *out, int is_obj) {
    const char *open = j->p++;
    if (++j->depth > TSR_HTTP_JSON_MAX_DEPTH)
        return jp_fail(j, open, "nested too deeply");
    vec_t v = {NULL, 0, 0};
    char close = is_obj ? '}' : ']';
    skip_ws(j);
    if (j->p < j->end && *j->p == close) {
        j->p++;
    } else {
        for (;;) {
            skip_ws(j);
            if (is_obj) {
                if (j->p >= j->end || *j->p != '"')
                    return jp_fail(j, j->p, "string or '}' expected");
                tsr_value_t *kv = vec_push(j, &v, 2);
                int rc = parse_string(j, &kv[0]);
                if (rc) return rc;
                skip_ws(j);
                if (j->p >= j->end || *j->p != ':') return jp_fail(j, j->p, "':' expected");
                j->p++;
                skip_ws(j);
                size_t at = v.n - 1; /* nested containers use their own vectors */
                tsr_value_t val;
                rc = parse_value(j, &val);
                if (rc) return rc;
                v.v[at] = val;
            } else {
                size_t at = v.n;
                vec_push(j, &v, 1);
                tsr_value_t val;
                int rc = parse_value(j, &val);
                if (rc) return rc;
                v.v[at] = val;
            }
            skip_ws(j);
            if (j->p < j->end && *j->p == ',') {
                j->p++;
                continue;
            }
            if (j->p < j->end && *j->p == close) {
                j->p++;
                break;
            }
            return jp_fail(j, j->p, is_obj ? "',' or '}' expected" : "',' or ']' expected");
        }
    }
    j->depth--;
    if (is_obj) {
        long d = find_duplicate(j, v.v, v.n / 2);
        if (d >= 0) {
            char msg[128];
            snprintf(msg, sizeof msg, "duplicate object key \"%.64s\"", v.v[2 * d].u.s);
            return jp_fail(j, open, msg);
        }
        *out = tsr_value_map(v.v, v.n / 2);
    } else {
        *out = tsr_value_list(v.v, v.n);
    }
    return 0;
}

static int literal(jp_t *j, const char *word, tsr_value_t v, tsr_value_t *out) {
    size_t n = strlen(word);
    if ((size_t)(j->end - j->p) < n || memcmp(j->p, word, n) != 0)
        return jp_fail(j, j->p, "invalid literal");
    j->p += n;
    *out = v;
    return 0;
}

static int parse_value(jp_t *j, tsr_value_t *out) {
    skip_ws(j);
    if (j->p >= j->end) return jp_fail(j, j->p, "unexpected end of input");
    switch (*j->p) {
    case '{': return parse_container(j, out, 1);
    case '[': return parse_container(j, out, 0);
    case '"': return parse_string(j, out);
    case 't': return literal(j, "true", tsr_value_bool(1), out);
    case 'f': return literal(j, "false", tsr_value_bool(0), out);
    case 'n': return literal(j, "null", tsr_value_null(), out);
    default:
        if (*j->p == '-' || (*j->p >= '0' && *j->p <= '9')) return parse_number(j, out);
        return jp_fail(j, j->p, "unexpected character");
    }
}

int tsr_http_json_parse(const char *p, size_t n, tsr_arena_t *arena, tsr_value_t *out,
                        tsr_error_t *err) {
    jp_t j = {p, p + n, p, arena, err, 0};
    int rc = parse_value(&j, out);
    if (rc) return rc;
    skip_ws(&j);
    if (j.p != j.end) return jp_fail(&j, j.p, "end of input expected");
    return 0;
}
