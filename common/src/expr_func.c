/*
 * expr_func.c — the built-in functions the VM CALLs, plus CAST, LIKE and the value helpers
 * they share.
 *
 * Every function takes its arguments as consecutive registers and writes one value. Each one
 * checks the run-time kinds of its arguments (TSR_ANY columns can hold anything) and returns
 * null for null or mismatched input, which gives SQL null propagation for free. Results that
 * are substrings of an argument borrow it (SUBSTR, TRIM, LOWER of an already lower-case
 * string); new strings go into the VM scratch, sized by an upper bound and then shrunk.
 * Strings are bytes; LENGTH and SUBSTR count UTF-8 code points as Spark counts characters;
 * LOWER and UPPER map ASCII letters only.
 */
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "expr_int.h"
#include "tsr/time.h"

#define NUL (tsr_value_null())

static int is_num(const tsr_value_t *v) { return v->kind == TSR_LONG || v->kind == TSR_DOUBLE; }
static double num_d(const tsr_value_t *v) { return v->kind == TSR_LONG ? (double)v->u.l : v->u.d; }

/* ---------------------------------------------------------------- shared helpers */

static int cmp_d(double a, double b) {
    if (a < b) return -1;
    if (a > b) return 1;
    if (a == b) return 0;
    /* Spark: NaN equals NaN and is larger than any other number */
    return isnan(a) ? (isnan(b) ? 0 : 1) : -1;
}

int tsr__cmp3(const tsr_value_t *a, const tsr_value_t *b, int *c) {
    if (a->kind == TSR_LONG && b->kind == TSR_LONG) {
        *c = (a->u.l > b->u.l) - (a->u.l < b->u.l);
        return 1;
    }
    if (is_num(a) && is_num(b)) {
        if (a->kind == TSR_LONG || b->kind == TSR_LONG) {
            /* long vs double: compare exactly when the double is integral and in range */
            double d = a->kind == TSR_DOUBLE ? a->u.d : b->u.d;
            int64_t l = a->kind == TSR_LONG ? a->u.l : b->u.l;
            int r;
            if (isnan(d)) r = 1;
            else if (d >= 9223372036854775808.0) r = 1;
            else if (d < -9223372036854775808.0) r = -1;
            else {
                double t = trunc(d);
                int64_t di = (int64_t)t;
                r = (di > l) - (di < l);
                if (r == 0) r = (d > t) - (d < t);
            }
            *c = a->kind == TSR_DOUBLE ? r : -r;
            return 1;
        }
        *c = cmp_d(a->u.d, b->u.d);
        return 1;
    }
    if (a->kind == TSR_STRING && b->kind == TSR_STRING) {
        size_t n = a->len < b->len ? a->len : b->len;
        int r = n ? memcmp(a->u.s, b->u.s, n) : 0;
        if (r == 0) r = (a->len > b->len) - (a->len < b->len);
        *c = (r > 0) - (r < 0);
        return 1;
    }
    if (a->kind == TSR_BOOL && b->kind == TSR_BOOL) {
        *c = (a->u.b > b->u.b) - (a->u.b < b->u.b);
        return 1;
    }
    return 0;
}

size_t tsr__fmt_double(double d, char out[static 32]) {
    if (isnan(d)) { memcpy(out, "NaN", 4); return 3; }
    if (isinf(d)) {
        const char *s = d > 0 ? "Infinity" : "-Infinity";
        strcpy(out, s);
        return strlen(s);
    }
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(out, 32, "%.*g", prec, d);
        if (strtod(out, NULL) == d) break;
    }
    if (!strpbrk(out, ".eE")) strcat(out, ".0");    /* 2 -> 2.0, as doubles print elsewhere */
    return strlen(out);
}

static size_t fmt_long(int64_t v, char *out) {
    char tmp[24];
    int n = 0;
    uint64_t u = v < 0 ? 0 - (uint64_t)v : (uint64_t)v;
    do {
        tmp[n++] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    size_t k = 0;
    if (v < 0) out[k++] = '-';
    while (n) out[k++] = tmp[--n];
    return k;
}

double tsr__round_half_up(double x, int64_t d) {
    if (!isfinite(x) || x == 0) return x;
    if (d > 400) return x;                          /* beyond any double's digits */
    if (d < -400) return signbit(x) ? -0.0 : 0.0;   /* and keeps e + 1 + d from overflowing */
    char buf[40];
    /* shortest %e form that round-trips: its digits are the decimal Spark rounds */
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(buf, sizeof buf, "%.*e", prec - 1, x);
        if (strtod(buf, NULL) == x) break;
    }
    const char *p = buf;
    int neg = 0;
    if (*p == '-') { neg = 1; p++; }
    char dig[24];
    int nd = 0;
    for (; *p && *p != 'e'; p++)
        if (isdigit((unsigned char)*p)) dig[nd++] = *p;
    int e = atoi(p + 1);    /* x = d0.d1d2... * 10^e */
    while (nd > 1 && dig[nd - 1] == '0') nd--;
    int64_t keep = (int64_t)e + 1 + d;  /* digits that stay */
    if (keep >= nd) return x;
    if (keep < 0) return neg ? -0.0 : 0.0;
    char m[26];
    memcpy(m, dig, (size_t)keep);
    int up = dig[keep] >= '5';
    int exp10 = e + 1;
    if (up) {
        int64_t k = keep - 1;
        while (k >= 0 && m[k] == '9') m[k--] = '0';
        if (k >= 0) {
            m[k]++;
        } else {
            memmove(m + 1, m, (size_t)keep);
            m[0] = '1';
            keep++;
            exp10++;
        }
    }
    if (keep == 0) return neg ? -0.0 : 0.0;
    m[keep] = 0;
    char out[64];
    snprintf(out, sizeof out, "%s0.%se%d", neg ? "-" : "", m, exp10);
    return strtod(out, NULL);
}

/* ---------------------------------------------------------------- CAST */

static size_t trim_ws(const char **s, size_t n) {
    const char *p = *s;
    while (n && isspace((unsigned char)*p)) { p++; n--; }
    while (n && isspace((unsigned char)p[n - 1])) n--;
    *s = p;
    return n;
}

/* Spark's string -> long: optional sign, digits, an optional fraction that is truncated;
 * anything else (or overflow) fails. */
static int str_to_long(const char *s, size_t n, int64_t *out) {
    n = trim_ws(&s, n);
    size_t i = 0;
    int neg = 0;
    if (i < n && (s[i] == '+' || s[i] == '-')) neg = s[i++] == '-';
    size_t d0 = i;
    uint64_t v = 0, lim = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
    for (; i < n && isdigit((unsigned char)s[i]); i++) {
        unsigned dg = (unsigned)(s[i] - '0');
        if (v > (lim - dg) / 10) return -1;
        v = v * 10 + dg;
    }
    if (i == d0) return -1;
    if (i < n && s[i] == '.') {
        i++;
        while (i < n && isdigit((unsigned char)s[i])) i++;
    }
    if (i != n) return -1;
    *out = neg ? (int64_t)(0 - v) : (int64_t)v;
    return 0;
}

static int str_to_double(const char *s, size_t n, double *out) {
    n = trim_ws(&s, n);
    char buf[128];
    if (n == 0 || n >= sizeof buf) return -1;
    memcpy(buf, s, n);
    buf[n] = 0;
    if (strpbrk(buf, "xX(")) return -1;     /* no hex floats or nan(...) */
    char *end;
    double d = strtod(buf, &end);
    if (end != buf + n) return -1;
    *out = d;
    return 0;
}

static int double_to_long(double d, int64_t *out) {
    if (isnan(d) || d >= 9223372036854775808.0 || d < -9223372036854775808.0) return -1;
    *out = (int64_t)d;
    return 0;
}

tsr_value_t tsr__cast(tsr_vm_t *vm, const tsr_value_t *v, tsr_type_t to) {
    int64_t l;
    double d;
    if (v->kind == TSR_NULL) return NUL;
    switch (tsr_type_kind(to)) {
    case TSR_LONG:
        switch (v->kind) {
        case TSR_LONG: return *v;
        case TSR_DOUBLE: return double_to_long(v->u.d, &l) ? NUL : tsr_value_long(l);
        case TSR_BOOL: return tsr_value_long(v->u.b);
        case TSR_STRING: return str_to_long(v->u.s, v->len, &l) ? NUL : tsr_value_long(l);
        default: return NUL;
        }
    case TSR_DOUBLE:
        switch (v->kind) {
        case TSR_LONG: return tsr_value_double((double)v->u.l);
        case TSR_DOUBLE: return *v;
        case TSR_BOOL: return tsr_value_double(v->u.b);
        case TSR_STRING: return str_to_double(v->u.s, v->len, &d) ? NUL : tsr_value_double(d);
        default: return NUL;
        }
    case TSR_STRING:
        switch (v->kind) {
        case TSR_STRING: return *v;
        case TSR_BOOL: return v->u.b ? tsr_value_string("true", 4) : tsr_value_string("false", 5);
        case TSR_LONG: {
            char *p = tsr__vm_alloc(vm, 24);
            size_t n = fmt_long(v->u.l, p);
            tsr__vm_shrink(vm, p, 24, n);
            return tsr_value_string(p, n);
        }
        case TSR_DOUBLE: {
            char *p = tsr__vm_alloc(vm, 32);
            size_t n = tsr__fmt_double(v->u.d, p);
            tsr__vm_shrink(vm, p, 32, n);
            return tsr_value_string(p, n);
        }
        default: return NUL;
        }
    case TSR_BOOL:
        switch (v->kind) {
        case TSR_BOOL: return *v;
        case TSR_LONG: return tsr_value_bool(v->u.l != 0);
        case TSR_DOUBLE: return tsr_value_bool(v->u.d != 0);
        case TSR_STRING: {
            static const char *const yes[] = {"true", "t", "yes", "y", "1"};
            static const char *const no[] = {"false", "f", "no", "n", "0"};
            const char *s = v->u.s;
            size_t n = trim_ws(&s, v->len);
            for (int k = 0; k < 5; k++) {
                if (strlen(yes[k]) == n && strncasecmp(s, yes[k], n) == 0) return tsr_value_bool(1);
                if (strlen(no[k]) == n && strncasecmp(s, no[k], n) == 0) return tsr_value_bool(0);
            }
            return NUL;
        }
        default: return NUL;
        }
    case TSR_LIST:
    case TSR_MAP:
        return v->kind == tsr_type_kind(to) ? *v : NUL;
    default:
        return NUL;
    }
}

/* ---------------------------------------------------------------- LIKE */

/* Length of the UTF-8 sequence starting with byte c (1 for stray continuation bytes). */
static size_t u8len(unsigned char c) {
    if (c < 0xC0) return 1;
    if (c < 0xE0) return 2;
    if (c < 0xF0) return 3;
    return 4;
}

/* Greedy matcher with one backtrack point (the last %), O(n*m) worst case, no recursion. */
int tsr__like(const char *s, size_t n, const char *p, size_t pn) {
    size_t si = 0, pi = 0, star_p = (size_t)-1, star_s = 0;
    while (si < n) {
        if (pi < pn && p[pi] == '%') {
            star_p = ++pi;
            star_s = si;
            continue;
        }
        if (pi < pn) {
            if (p[pi] == '_') {
                size_t k = u8len((unsigned char)s[si]);
                if (si + k > n) k = n - si;
                si += k;
                pi++;
                continue;
            }
            size_t lit = pi;
            if (p[pi] == '\\' && pi + 1 < pn) lit = pi + 1;     /* escaped: literal next byte */
            if (p[lit] == s[si]) {
                si++;
                pi = lit + 1;
                continue;
            }
        }
        if (star_p == (size_t)-1) return 0;
        /* let the last % swallow one more character and retry */
        star_s += u8len((unsigned char)s[star_s]);
        if (star_s > n) return 0;
        si = star_s;
        pi = star_p;
    }
    while (pi < pn && p[pi] == '%') pi++;
    return pi == pn;
}

/* ---------------------------------------------------------------- math */

static void f_abs(tsr_vm_t *vm, tsr_value_t *o, const tsr_value_t *a, uint32_t n) {
    if (a->kind == TSR_LONG) *o = tsr_value_long(a->u.l < 0 ? (int64_t)(0 - (uint64_t)a->u.l) : a->u.l);
    else if (a->kind == TSR_DOUBLE) *o = tsr_value_double(fabs(a->u.d));
    else *o = NUL;
}

/* One-argument double functions; out-of-domain input gives null. */
static void f_ln(tsr_vm_t *vm, tsr_value_t *o, const tsr_value_t *a, uint32_t n) {
    *o = is_num(a) && num_d(a) > 0 ? tsr_value_double(log(num_d(a))) : NUL;
}
static void f_log10(tsr_vm_t *vm, tsr_value_t *o, const tsr_value_t *a, uint32_t n) {
    *o = is_num(a) && num_d(a) > 0 ? tsr_value_double(log10(num_d(a))) : NUL;
}
/* LOG(x) is LN(x); LOG(base, x) is ln(x) / ln(base), as Spark's log(base, expr). */
static void f_log(tsr_vm_t *vm, tsr_value_t *o, const tsr_value_t *a, uint32_t n) {
    if (n == 1) {
        f_ln(vm, o, a, n);
        return;
    }
    if (!is_num(&a[0]) || !is_num(&a[1]) || num_d(&a[0]) <= 0 || num_d(&a[1]) <= 0) {
        *o = NUL;
        return;
    }
    *o = tsr_value_double(log(num_d(&a[1])) / log(num_d(&a[0])));
}
static void f_exp(tsr_vm_t *vm, tsr_value_t *o, const tsr_value_t *a, uint32_t n) {
    *o = is_num(a) ? tsr_value_double(exp(num_d(a))) : NUL;
}
static void f_sqrt(tsr_vm_t *vm, tsr_value_t *o, const tsr_value_t *a, uint32_t n) {
    *o = is_num(a) && num_d(a) >= 0 ? tsr_value_double(sqrt(num_d(a))) : NUL;
}
static void f_pow(tsr_vm_t *vm, tsr_value_t *o, const tsr_value_t *a, uint32_t n) {
    *o = is_num(&a[0]) && is_num(&a[1]) ? tsr_value_double(pow(num_d(&a[0]), num_d(&a[1]))) : NUL;
}

static void floor_ceil(tsr_value_t *o, const tsr_value_t *a, int ceil_) {
    int64_t l;
    if (a->kind == TSR_LONG) *o = *a;
    else if (a->kind == TSR_DOUBLE && double_to_long(ceil_ ? ceil(a->u.d) : floor(a->u.d), &l) == 0)
        *o = tsr_value_long(l);
    else *o = NUL;
}
static void f_floor(tsr_vm_t *vm, tsr_value_t *o, const tsr_value_t *a, uint32_t n) { floor_ceil(o, a, 0); }
static void f_ceil(tsr_vm_t *vm, tsr_value_t *o, const tsr_value_t *a, uint32_t n) { floor_ceil(o, a, 1); }

/* ROUND(x[, d]) half-up (away from zero on a tie), as Spark's ROUND. */
static void f_round(tsr_vm_t *vm, tsr_value_t *o, const tsr_value_t *a, uint32_t n) {
    int64_t d = 0;
    if (n > 1) {
        if (a[1].kind != TSR_LONG) { *o = NUL; return; }
        d = a[1].u.l;
    }
    if (a->kind == TSR_DOUBLE) {
        *o = tsr_value_double(tsr__round_half_up(a->u.d, d));
    } else if (a->kind == TSR_LONG) {
        if (d >= 0) { *o = *a; return; }
        if (d < -18) { *o = tsr_value_long(0); return; }
        int64_t p = 1;
        for (int64_t k = 0; k < -d; k++) p *= 10;
        int64_t q = a->u.l / p, r = a->u.l % p;
        if (r >= 0 ? r * 2 >= p : -r * 2 >= p) q += r >= 0 ? 1 : -1;
        *o = tsr_value_long((int64_t)((uint64_t)q * (uint64_t)p));
    } else {
        *o = NUL;
    }
}

/* GREATEST/LEAST skip nulls (null only when every argument is null), as Spark's. */
static void extreme(tsr_value_t *o, const tsr_value_t *a, uint32_t n, int sign) {
    const tsr_value_t *best = NULL;
    for (uint32_t i = 0; i < n; i++) {
        if (a[i].kind == TSR_NULL) continue;
        int c;
        if (!best) { best = &a[i]; continue; }
        if (!tsr__cmp3(&a[i], best, &c)) { *o = NUL; return; }
        if (c * sign > 0) best = &a[i];
    }
    *o = best ? *best : NUL;
}
static void f_greatest(tsr_vm_t *vm, tsr_value_t *o, const tsr_value_t *a, uint32_t n) { extreme(o, a, n, 1); }
static void f_least(tsr_vm_t *vm, tsr_value_t *o, const tsr_value_t *a, uint32_t n) { extreme(o, a, n, -1); }

/* ---------------------------------------------------------------- strings */

static void change_case(tsr_vm_t *vm, tsr_value_t *o, const tsr_value_t *a, int upper) {
    if (a->kind != TSR_STRING) { *o = NUL; return; }
    const char *s = a->u.s;
    size_t n = a->len, i = 0;
    /* nothing to change: borrow the argument */
    for (; i < n; i++) {
        char c = s[i];
        if (upper ? (c >= 'a' && c <= 'z') : (c >= 'A' && c <= 'Z')) break;
    }
    if (i == n) { *o = *a; return; }
    char *p = tsr__vm_alloc(vm, n);
    memcpy(p, s, i);
    for (; i < n; i++) {
        char c = s[i];
        if (upper && c >= 'a' && c <= 'z') c = (char)(c - 32);
        else if (!upper && c >= 'A' && c <= 'Z') c = (char)(c + 32);
        p[i] = c;
    }
    *o = tsr_value_string(p, n);
}
static void f_lower(tsr_vm_t *vm, tsr_value_t *o, const tsr_value_t *a, uint32_t n) { change_case(vm, o, a, 0); }
static void f_upper(tsr_vm_t *vm, tsr_value_t *o, const tsr_value_t *a, uint32_t n) { change_case(vm, o, a, 1); }

static int64_t u8count(const char *s, size_t n) {
    int64_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (((unsigned char)s[i] & 0xC0) != 0x80) k++;
    return k;
}

/* Byte offset of code point number cp (or n when past the end). */
static size_t u8offset(const char *s, size_t n, int64_t cp) {
    size_t i = 0;
    while (i < n && cp > 0) {
        i++;
        while (i < n && ((unsigned char)s[i] & 0xC0) == 0x80) i++;
        cp--;
    }
    return i;
}

static void f_length(tsr_vm_t *vm, tsr_value_t *o, const tsr_value_t *a, uint32_t n) {
    *o = a->kind == TSR_STRING ? tsr_value_long(u8count(a->u.s, a->len)) : NUL;
}

/* SUBSTR(s, pos[, len]) with Spark's rules: pos is 1-based, 0 acts as 1, negative counts from
 * the end; a window reaching outside the string is clipped; the result borrows s. */
static void f_substr(tsr_vm_t *vm, tsr_value_t *o, const tsr_value_t *a, uint32_t n) {
    if (a[0].kind != TSR_STRING || a[1].kind != TSR_LONG || (n > 2 && a[2].kind != TSR_LONG)) {
        *o = NUL;
        return;
    }
    int64_t len = u8count(a[0].u.s, a[0].len), pos = a[1].u.l;
    int64_t count = n > 2 ? a[2].u.l : INT64_MAX;
    if (count <= 0) {     /* the window ends before it starts (and start + count could overflow) */
        *o = tsr_value_string(a[0].u.s, 0);
        return;
    }
    int64_t start = pos > 0 ? pos - 1 : pos < 0 ? len + pos : 0;
    int64_t end = start > INT64_MAX - count ? INT64_MAX : start + count;
    if (start < 0) start = 0;
    if (end > len) end = len;
    if (start >= end) {
        *o = tsr_value_string(a[0].u.s, 0);
        return;
    }
    size_t b0 = u8offset(a[0].u.s, a[0].len, start);
    size_t b1 = b0 + u8offset(a[0].u.s + b0, a[0].len - b0, end - start);
    *o = tsr_value_string(a[0].u.s + b0, b1 - b0);
}

/* CONCAT of scalars: numbers and booleans print as CAST(x AS string); any null gives null. */
static void f_concat(tsr_vm_t *vm, tsr_value_t *o, const tsr_value_t *a, uint32_t n) {
    size_t bound = 0;
    for (uint32_t i = 0; i < n; i++) {
        switch (a[i].kind) {
        case TSR_STRING: bound += a[i].len; break;
        case TSR_LONG: case TSR_DOUBLE: case TSR_BOOL: bound += 32; break;
        default: *o = NUL; return;
        }
    }
    char *p = tsr__vm_alloc(vm, bound), *w = p;
    for (uint32_t i = 0; i < n; i++) {
        switch (a[i].kind) {
        case TSR_STRING:
            if (a[i].len) memcpy(w, a[i].u.s, a[i].len);
            w += a[i].len;
            break;
        case TSR_LONG: w += fmt_long(a[i].u.l, w); break;
        case TSR_DOUBLE: {
            char tmp[32];
            size_t k = tsr__fmt_double(a[i].u.d, tmp);
            memcpy(w, tmp, k);
            w += k;
            break;
        }
        default:
            memcpy(w, a[i].u.b ? "true" : "false", a[i].u.b ? 4 : 5);
            w += a[i].u.b ? 4 : 5;
            break;
        }
    }
    size_t used = (size_t)(w - p);
    tsr__vm_shrink(vm, p, bound, used);
    *o = tsr_value_string(p, used);
}

/* TRIM removes leading and trailing spaces (0x20), as Spark's TRIM; borrows s. */
static void f_trim(tsr_vm_t *vm, tsr_value_t *o, const tsr_value_t *a, uint32_t n) {
    if (a->kind != TSR_STRING) { *o = NUL; return; }
    const char *s = a->u.s;
    size_t len = a->len;
    while (len && *s == ' ') { s++; len--; }
    while (len && s[len - 1] == ' ') len--;
    *o = tsr_value_string(s, len);
}

/* ---------------------------------------------------------------- dates */

/* Epoch ms of a date argument: a long is epoch ms, a string a timestamp or date. */
static int arg_ms(const tsr_value_t *a, const tsr_value_t *fmt, int64_t *ms) {
    if (a->kind == TSR_LONG) {
        *ms = a->u.l;
        return 0;
    }
    if (a->kind != TSR_STRING) return -1;
    if (fmt) {
        if (fmt->kind != TSR_STRING) return -1;
        return tsr__dt_parse(a->u.s, a->len, fmt->u.s, fmt->len, ms);
    }
    return tsr__dt_parse_default(a->u.s, a->len, ms);
}

static void format_ms(tsr_vm_t *vm, tsr_value_t *o, int64_t ms, const char *f, size_t fn) {
    size_t bound = tsr__dt_max_len(fn);
    char *p = tsr__vm_alloc(vm, bound);
    long k = tsr__dt_format(f, fn, ms, p);
    if (k < 0) {
        tsr__vm_shrink(vm, p, bound, 0);
        *o = NUL;
        return;
    }
    tsr__vm_shrink(vm, p, bound, (size_t)k);
    *o = tsr_value_string(p, (size_t)k);
}

static void f_unix_timestamp(tsr_vm_t *vm, tsr_value_t *o, const tsr_value_t *a, uint32_t n) {
    int64_t ms;
    if (a[0].kind != TSR_STRING || arg_ms(&a[0], n > 1 ? &a[1] : NULL, &ms)) {
        *o = NUL;
        return;
    }
    *o = tsr_value_long(tsr_floor_div(ms, 1000));
}

static void f_from_unixtime(tsr_vm_t *vm, tsr_value_t *o, const tsr_value_t *a, uint32_t n) {
    int64_t sec;
    if (a[0].kind == TSR_LONG) sec = a[0].u.l;
    else if (a[0].kind != TSR_DOUBLE || double_to_long(floor(a[0].u.d), &sec)) { *o = NUL; return; }
    if (sec > INT64_MAX / 1000 || sec < INT64_MIN / 1000 || (n > 1 && a[1].kind != TSR_STRING)) {
        *o = NUL;
        return;
    }
    const char *f = n > 1 ? a[1].u.s : TSR__TS_DEFAULT_FMT;
    size_t fn = n > 1 ? a[1].len : strlen(TSR__TS_DEFAULT_FMT);
    format_ms(vm, o, sec * 1000, f, fn);
}

static void f_date_format(tsr_vm_t *vm, tsr_value_t *o, const tsr_value_t *a, uint32_t n) {
    int64_t ms;
    if (a[1].kind != TSR_STRING || arg_ms(&a[0], NULL, &ms)) { *o = NUL; return; }
    format_ms(vm, o, ms, a[1].u.s, a[1].len);
}

static void f_to_date(tsr_vm_t *vm, tsr_value_t *o, const tsr_value_t *a, uint32_t n) {
    int64_t ms;
    if (arg_ms(&a[0], n > 1 && a[0].kind == TSR_STRING ? &a[1] : NULL, &ms)) { *o = NUL; return; }
    format_ms(vm, o, ms, "yyyy-MM-dd", 10);
}

/* ---------------------------------------------------------------- table */

static const tsr__func_impl_t k_impls[TSR__F_COUNT_] = {
    [TSR__F_ABS] = f_abs, [TSR__F_LN] = f_ln, [TSR__F_LOG] = f_log, [TSR__F_LOG10] = f_log10,
    [TSR__F_EXP] = f_exp, [TSR__F_POW] = f_pow, [TSR__F_SQRT] = f_sqrt, [TSR__F_FLOOR] = f_floor,
    [TSR__F_CEIL] = f_ceil, [TSR__F_ROUND] = f_round, [TSR__F_GREATEST] = f_greatest,
    [TSR__F_LEAST] = f_least, [TSR__F_LOWER] = f_lower, [TSR__F_UPPER] = f_upper,
    [TSR__F_LENGTH] = f_length, [TSR__F_SUBSTR] = f_substr, [TSR__F_CONCAT] = f_concat,
    [TSR__F_TRIM] = f_trim, [TSR__F_UNIX_TIMESTAMP] = f_unix_timestamp,
    [TSR__F_FROM_UNIXTIME] = f_from_unixtime, [TSR__F_DATE_FORMAT] = f_date_format,
    [TSR__F_TO_DATE] = f_to_date,
};

tsr__func_impl_t tsr__func_impl(tsr__func_id_t id) { return k_impls[id]; }
