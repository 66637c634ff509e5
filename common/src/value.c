/*
 * value.c — type names, value comparison, hashing, copying and JSON printing.
 */
#include "tsr/value.h"
#include "tsr/error.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static size_t type_name_into(tsr_type_t t, char *buf, size_t n, size_t off) {
    const char *s;
    switch (tsr_type_kind(t)) {
    case TSR_NULL: s = "null"; break;
    case TSR_BOOL: s = "boolean"; break;
    case TSR_LONG: s = "long"; break;
    case TSR_DOUBLE: s = "double"; break;
    case TSR_STRING: s = "string"; break;
    case TSR_ANY: s = "any"; break;
    case TSR_LIST:
        off += (size_t)snprintf(buf + off, off < n ? n - off : 0, "list<");
        if (off >= n) return off;
        off = type_name_into(tsr_type_elem(t), buf, n, off);
        if (off >= n) return off;
        return off + (size_t)snprintf(buf + off, n - off, ">");
    case TSR_MAP:
        off += (size_t)snprintf(buf + off, off < n ? n - off : 0, "map<string,");
        if (off >= n) return off;
        off = type_name_into(tsr_type_elem(t), buf, n, off);
        if (off >= n) return off;
        return off + (size_t)snprintf(buf + off, n - off, ">");
    default: s = "?"; break;
    }
    if (off >= n) return off;
    return off + (size_t)snprintf(buf + off, n - off, "%s", s);
}

const char *tsr_type_name(tsr_type_t t, char *buf, size_t n) {
    if (n == 0) return buf;
    buf[0] = '\0';
    type_name_into(t, buf, n, 0);
    return buf;
}

static const char *skip_ws(const char *s) {
    while (*s && isspace((unsigned char)*s)) s++;
    return s;
}

static int word_is(const char *s, size_t n, const char *w) {
    return strlen(w) == n && strncasecmp(s, w, n) == 0;
}

/* Parses one type at *ps; advances *ps. depth bounds the nibble chain (8 levels in 32 bits). */
static int type_parse_at(const char **ps, tsr_type_t *out, int depth) {
    const char *s = skip_ws(*ps);
    const char *w = s;
    while (isalnum((unsigned char)*s) || *s == '_') s++;
    size_t n = (size_t)(s - w);
    if (n == 0 || depth > 6) return TSR_EPARSE;
    s = skip_ws(s);
    if (word_is(w, n, "list") || word_is(w, n, "array")) {
        if (*s != '<') return TSR_EPARSE;
        s++;
        tsr_type_t e;
        if (type_parse_at(&s, &e, depth + 1)) return TSR_EPARSE;
        s = skip_ws(s);
        if (*s != '>') return TSR_EPARSE;
        *ps = s + 1;
        *out = TSR_TYPE_LIST(e);
        return 0;
    }
    if (word_is(w, n, "map")) {
        if (*s != '<') return TSR_EPARSE;
        s++;
        tsr_type_t k, v;
        if (type_parse_at(&s, &k, depth + 1) || k != TSR_STRING) return TSR_EPARSE;
        s = skip_ws(s);
        if (*s != ',') return TSR_EPARSE;
        s++;
        if (type_parse_at(&s, &v, depth + 1)) return TSR_EPARSE;
        s = skip_ws(s);
        if (*s != '>') return TSR_EPARSE;
        *ps = s + 1;
        *out = TSR_TYPE_MAP(v);
        return 0;
    }
    static const struct { const char *name; tsr_type_t t; } names[] = {
        {"long", TSR_LONG}, {"bigint", TSR_LONG}, {"int", TSR_LONG}, {"integer", TSR_LONG},
        {"short", TSR_LONG}, {"smallint", TSR_LONG}, {"tinyint", TSR_LONG},
        {"double", TSR_DOUBLE}, {"float", TSR_DOUBLE}, {"real", TSR_DOUBLE},
        {"decimal", TSR_DOUBLE},
        {"string", TSR_STRING}, {"varchar", TSR_STRING}, {"char", TSR_STRING},
        {"text", TSR_STRING},
        {"boolean", TSR_BOOL}, {"bool", TSR_BOOL},
    };
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        if (word_is(w, n, names[i].name)) {
            *ps = s;
            *out = names[i].t;
            return 0;
        }
    }
    return TSR_EPARSE;
}

int tsr_type_parse(const char *s, tsr_type_t *out) {
    tsr_type_t t;
    if (type_parse_at(&s, &t, 0)) return TSR_EPARSE;
    s = skip_ws(s);
    if (*s) return TSR_EPARSE;
    *out = t;
    return 0;
}

static int cmp_i64(int64_t a, int64_t b) { return a < b ? -1 : a > b; }
static int cmp_f64(double a, double b) {
    if (a < b) return -1;
    if (a > b) return 1;
    if (a == b) return 0;
    /* NaN sorts after every number, and equal to itself */
    return isnan(a) ? (isnan(b) ? 0 : 1) : -1;
}

int tsr_value_cmp(const tsr_value_t *a, const tsr_value_t *b) {
    if (a->kind == b->kind) {
        switch (a->kind) {
        case TSR_NULL: return 0;
        case TSR_BOOL: return cmp_i64(a->u.b, b->u.b);
        case TSR_LONG: return cmp_i64(a->u.l, b->u.l);
        case TSR_DOUBLE: return cmp_f64(a->u.d, b->u.d);
        case TSR_STRING: {
            size_t n = a->len < b->len ? a->len : b->len;
            int c = n ? memcmp(a->u.s, b->u.s, n) : 0;
            if (c) return c < 0 ? -1 : 1;
            return cmp_i64(a->len, b->len);
        }
        case TSR_LIST: {
            size_t n = a->len < b->len ? a->len : b->len;
            for (size_t i = 0; i < n; i++) {
                int c = tsr_value_cmp(&a->u.items[i], &b->u.items[i]);
                if (c) return c;
            }
            return cmp_i64(a->len, b->len);
        }
        case TSR_MAP: {
            size_t n = a->len < b->len ? a->len : b->len;
            for (size_t i = 0; i < 2 * n; i++) {
                int c = tsr_value_cmp(&a->u.items[i], &b->u.items[i]);
                if (c) return c;
            }
            return cmp_i64(a->len, b->len);
        }
        default: return 0;
        }
    }
    if (a->kind == TSR_LONG && b->kind == TSR_DOUBLE) {
        int c = cmp_f64((double)a->u.l, b->u.d);
        return c ? c : -1; /* tie-break by kind so the order stays total */
    }
    if (a->kind == TSR_DOUBLE && b->kind == TSR_LONG) {
        int c = cmp_f64(a->u.d, (double)b->u.l);
        return c ? c : 1;
    }
    return cmp_i64(a->kind, b->kind);
}

int tsr_value_equal(const tsr_value_t *a, const tsr_value_t *b) {
    if (a->kind != b->kind) return 0;
    if (a->kind == TSR_DOUBLE) {
        if (isnan(a->u.d) && isnan(b->u.d)) return 1;
        return a->u.d == b->u.d;
    }
    return tsr_value_cmp(a, b) == 0;
}

static int double_close(double a, double b) {
    if (a == b) return 1;
    if (isnan(a) || isnan(b)) return isnan(a) && isnan(b);
    double diff = fabs(a - b);
    double scale = fmax(fabs(a), fabs(b));
    if (scale < 1.0) return diff <= 1e-9;
    return diff <= 1e-9 * scale;
}

static const tsr_value_t *map_find(const tsr_value_t *m, const tsr_value_t *key) {
    for (uint32_t i = 0; i < m->len; i++)
        if (tsr_value_equal(&m->u.items[2 * i], key)) return &m->u.items[2 * i + 1];
    return NULL;
}

int tsr_value_close(const tsr_value_t *a, const tsr_value_t *b) {
    if (a->kind != b->kind) return 0;
    switch (a->kind) {
    case TSR_DOUBLE: return double_close(a->u.d, b->u.d);
    case TSR_LIST:
        if (a->len != b->len) return 0;
        for (uint32_t i = 0; i < a->len; i++)
            if (!tsr_value_close(&a->u.items[i], &b->u.items[i])) return 0;
        return 1;
    case TSR_MAP:
        if (a->len != b->len) return 0;
        for (uint32_t i = 0; i < a->len; i++) {
            const tsr_value_t *bv = map_find(b, &a->u.items[2 * i]);
            if (!bv || !tsr_value_close(&a->u.items[2 * i + 1], bv)) return 0;
        }
        return 1;
    default: return tsr_value_equal(a, b);
    }
}

/* wyhash-style 64-bit mixing over 8-byte words; fast and well distributed. */
static inline uint64_t mix(uint64_t a, uint64_t b) {
    __uint128_t r = (__uint128_t)a * b;
    return (uint64_t)r ^ (uint64_t)(r >> 64);
}

uint64_t tsr_hash_bytes(const void *p, size_t n, uint64_t seed) {
    const uint8_t *s = p;
    const uint64_t k0 = 0xa0761d6478bd642fULL, k1 = 0xe7037ed1a0b428dbULL;
    uint64_t h = seed ^ mix(seed ^ k0, k1) ^ n;
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, s, 8);
        h = mix(h ^ w ^ k0, k1 ^ 0x8ebc6af09c88c6e3ULL);
        s += 8;
        n -= 8;
    }
    uint64_t w = 0;
    for (size_t i = 0; i < n; i++) w |= (uint64_t)s[i] << (8 * i);
    h = mix(h ^ w ^ k1, k0 ^ 0x589965cc75374cc3ULL);
    return mix(h, h ^ k1);
}

uint64_t tsr_value_hash(const tsr_value_t *v, uint64_t seed) {
    switch (v->kind) {
    case TSR_NULL: return tsr_hash_u64(seed ^ 0x9e3779b97f4a7c15ULL);
    case TSR_BOOL: return tsr_hash_bytes(&v->u.b, sizeof(v->u.b), seed ^ 1);
    case TSR_LONG: return tsr_hash_bytes(&v->u.l, 8, seed ^ 2);
    case TSR_DOUBLE: {
        double d = v->u.d == 0 ? 0.0 : v->u.d; /* -0.0 == 0.0 */
        return tsr_hash_bytes(&d, 8, seed ^ 3);
    }
    case TSR_STRING: return tsr_hash_bytes(v->u.s, v->len, seed ^ 4);
    case TSR_LIST: {
        uint64_t h = seed ^ 5;
        for (uint32_t i = 0; i < v->len; i++) h = tsr_value_hash(&v->u.items[i], h);
        return h;
    }
    case TSR_MAP: {
        uint64_t h = 0; /* order-independent */
        for (uint32_t i = 0; i < v->len; i++)
            h += tsr_value_hash(&v->u.items[2 * i + 1], tsr_value_hash(&v->u.items[2 * i], seed));
        return tsr_hash_u64(h ^ seed ^ 6);
    }
    default: return seed;
    }
}

tsr_value_t tsr_value_copy(const tsr_value_t *v, tsr_arena_t *a) {
    tsr_value_t r = *v;
    switch (v->kind) {
    case TSR_STRING:
        r.u.s = tsr_arena_strndup(a, v->u.s, v->len);
        break;
    case TSR_LIST:
    case TSR_MAP: {
        size_t n = v->kind == TSR_LIST ? v->len : 2 * (size_t)v->len;
        tsr_value_t *items = tsr_arena_alloc(a, n * sizeof(*items) + 1);
        for (size_t i = 0; i < n; i++) items[i] = tsr_value_copy(&v->u.items[i], a);
        r.u.items = items;
        break;
    }
    default: break;
    }
    return r;
}

/* Characters that JSON strings must escape: quote, backslash and control characters. */
static inline int json_needs_escape(unsigned char c) { return c < 0x20 || c == '"' || c == '\\'; }

static void json_string(const char *s, size_t n, tsr_buf_t *out) {
    static const char hex[] = "0123456789abcdef";
    tsr_buf_reserve(out, n + 2);
    out->data[out->len++] = '"';
    size_t i = 0;
    while (i < n) {
        /* copy the longest run that needs no escaping in one go */
        size_t j = i;
        while (j < n && !json_needs_escape((unsigned char)s[j])) j++;
        tsr_buf_append(out, s + i, j - i);
        if (j == n) break;
        unsigned char c = (unsigned char)s[j];
        switch (c) {
        case '"': tsr_buf_append(out, "\\\"", 2); break;
        case '\\': tsr_buf_append(out, "\\\\", 2); break;
        case '\n': tsr_buf_append(out, "\\n", 2); break;
        case '\r': tsr_buf_append(out, "\\r", 2); break;
        case '\t': tsr_buf_append(out, "\\t", 2); break;
        case '\b': tsr_buf_append(out, "\\b", 2); break;
        case '\f': tsr_buf_append(out, "\\f", 2); break;
        default: {
            char esc[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
            tsr_buf_append(out, esc, 6);
        }
        }
        i = j + 1;
    }
    tsr_buf_putc(out, '"');
}

/* Appends the decimal digits of v (v >= 0). */
static void put_u64(tsr_buf_t *out, uint64_t v) {
    char tmp[24];
    int n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    tsr_buf_reserve(out, (size_t)n);
    while (n) out->data[out->len++] = (uint8_t)tmp[--n];
}

static const double pow10_tab[] = {1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8};

/* Shortest round-tripping text of a finite double. Fast path: a value with at most 8
 * decimals whose scaled integer is below 2^53 prints as fixed point, found by checking
 * round(d * 10^p) / 10^p == d for p = 0, 1, ...: that division is exactly what strtod computes
 * for the printed decimal (both operands exact, one rounding), so the text round-trips, and
 * the first p that works is the shortest fixed-point form. Other values go through %.Ng with
 * the smallest N in 15..17 that round-trips. */
static void json_double(double d, tsr_buf_t *out) {
    if (!isfinite(d)) {
        tsr_buf_puts(out, "null");
        return;
    }
    double a = fabs(d);
    if (a < 1e15 && a != 0) {
        for (int p = 0; p <= 8; p++) {
            double scaled = a * pow10_tab[p];
            if (scaled >= 9007199254740992.0) break;
            double v = nearbyint(scaled);
            if (v / pow10_tab[p] != a) continue;
            uint64_t iv = (uint64_t)v;
            uint64_t div = (uint64_t)pow10_tab[p];
            if (d < 0) tsr_buf_putc(out, '-');
            put_u64(out, iv / div);
            tsr_buf_putc(out, '.');
            if (p == 0) {
                tsr_buf_putc(out, '0');
                return;
            }
            uint64_t frac = iv % div;
            char digits[8];
            for (int k = p - 1; k >= 0; k--) {
                digits[k] = (char)('0' + frac % 10);
                frac /= 10;
            }
            tsr_buf_append(out, digits, (size_t)p);
            return;
        }
    }
    char tmp[40];
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(tmp, sizeof(tmp), "%.*g", prec, d);
        if (strtod(tmp, NULL) == d) break;
    }
    /* keep it recognisably a double: 2 -> 2.0 */
    if (!strpbrk(tmp, ".eEn")) strcat(tmp, ".0");
    tsr_buf_puts(out, tmp);
}

void tsr_value_to_json(const tsr_value_t *v, tsr_buf_t *out) {
    switch (v->kind) {
    case TSR_NULL: tsr_buf_puts(out, "null"); break;
    case TSR_BOOL: tsr_buf_puts(out, v->u.b ? "true" : "false"); break;
    case TSR_LONG:
        if (v->u.l < 0) {
            tsr_buf_putc(out, '-');
            put_u64(out, 0 - (uint64_t)v->u.l);
        } else {
            put_u64(out, (uint64_t)v->u.l);
        }
        break;
    case TSR_DOUBLE: json_double(v->u.d, out); break;
    case TSR_STRING: json_string(v->u.s, v->len, out); break;
    case TSR_LIST:
        tsr_buf_putc(out, '[');
        for (uint32_t i = 0; i < v->len; i++) {
            if (i) tsr_buf_putc(out, ',');
            tsr_value_to_json(&v->u.items[i], out);
        }
        tsr_buf_putc(out, ']');
        break;
    case TSR_MAP:
        tsr_buf_putc(out, '{');
        for (uint32_t i = 0; i < v->len; i++) {
            if (i) tsr_buf_putc(out, ',');
            const tsr_value_t *k = &v->u.items[2 * i];
            if (k->kind == TSR_STRING) {
                json_string(k->u.s, k->len, out);
            } else {
                tsr_buf_t tmp;
                tsr_buf_init(&tmp);
                tsr_value_key_string(k, &tmp);
                json_string((const char *)tmp.data, tmp.len, out);
                tsr_buf_free(&tmp);
            }
            tsr_buf_putc(out, ':');
            tsr_value_to_json(&v->u.items[2 * i + 1], out);
        }
        tsr_buf_putc(out, '}');
        break;
    default: tsr_buf_puts(out, "null"); break;
    }
}

void tsr_value_to_text(const tsr_value_t *v, tsr_buf_t *out) {
    if (v->kind == TSR_NULL) return;
    if (v->kind == TSR_STRING) {
        tsr_buf_append(out, v->u.s, v->len);
        return;
    }
    tsr_value_to_json(v, out);
}

void tsr_value_key_string(const tsr_value_t *v, tsr_buf_t *out) {
    if (v->kind == TSR_STRING) {
        tsr_buf_append(out, v->u.s, v->len);
        return;
    }
    tsr_value_to_json(v, out);
}

void tsr_value_encode(const tsr_value_t *v, tsr_buf_t *out) {
    tsr_buf_put_u8(out, v->kind);
    switch (v->kind) {
    case TSR_BOOL: tsr_buf_put_u8(out, (uint8_t)(v->u.b != 0)); break;
    case TSR_LONG: tsr_buf_put_svarint(out, v->u.l); break;
    case TSR_DOUBLE: tsr_buf_put_f64(out, v->u.d); break;
    case TSR_STRING: tsr_buf_put_bytes(out, v->u.s, v->len); break;
    case TSR_LIST:
        tsr_buf_put_uvarint(out, v->len);
        for (uint32_t i = 0; i < v->len; i++) tsr_value_encode(&v->u.items[i], out);
        break;
    case TSR_MAP:
        tsr_buf_put_uvarint(out, v->len);
        for (uint32_t i = 0; i < 2 * v->len; i++) tsr_value_encode(&v->u.items[i], out);
        break;
    default: break;
    }
}

static int value_decode_depth(tsr_reader_t *r, tsr_arena_t *arena, tsr_value_t *out, int depth) {
    uint8_t kind;
    if (depth > 8 || tsr_get_u8(r, &kind)) return TSR_ECORRUPT;
    switch (kind) {
    case TSR_NULL: *out = tsr_value_null(); return 0;
    case TSR_BOOL: {
        uint8_t b;
        if (tsr_get_u8(r, &b) || b > 1) return TSR_ECORRUPT;
        *out = tsr_value_bool(b);
        return 0;
    }
    case TSR_LONG: {
        int64_t l;
        if (tsr_get_svarint(r, &l)) return TSR_ECORRUPT;
        *out = tsr_value_long(l);
        return 0;
    }
    case TSR_DOUBLE: {
        double d;
        if (tsr_get_f64(r, &d)) return TSR_ECORRUPT;
        *out = tsr_value_double(d);
        return 0;
    }
    case TSR_STRING: {
        const uint8_t *p;
        size_t n;
        if (tsr_get_bytes(r, &p, &n) || n > UINT32_MAX) return TSR_ECORRUPT;
        *out = tsr_value_string((const char *)p, n);
        return 0;
    }
    case TSR_LIST:
    case TSR_MAP: {
        uint64_t n;
        if (tsr_get_uvarint(r, &n)) return TSR_ECORRUPT;
        uint64_t items = kind == TSR_MAP ? 2 * n : n;
        /* every item takes at least one byte: a larger count is corrupt */
        if (n > UINT32_MAX || items > tsr_reader_left(r)) return TSR_ECORRUPT;
        tsr_value_t *v = tsr_arena_alloc(arena, (size_t)(items ? items : 1) * sizeof(*v));
        for (uint64_t i = 0; i < items; i++) {
            if (value_decode_depth(r, arena, &v[i], depth + 1)) return TSR_ECORRUPT;
            if (kind == TSR_MAP && i % 2 == 0 && v[i].kind != TSR_STRING) return TSR_ECORRUPT;
        }
        *out = kind == TSR_MAP ? tsr_value_map(v, (size_t)n) : tsr_value_list(v, (size_t)n);
        return 0;
    }
    default: return TSR_ECORRUPT;
    }
}

int tsr_value_decode(tsr_reader_t *r, tsr_arena_t *arena, tsr_value_t *out) {
    return value_decode_depth(r, arena, out, 0);
}
