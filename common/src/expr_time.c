/*
 * expr_time.c — Spark/Java date patterns (a subset of DateTimeFormatter) for UNIX_TIMESTAMP,
 * FROM_UNIXTIME, DATE_FORMAT and TO_DATE. Everything is UTC; calendar math is tsr/time.h's.
 *
 * Pattern letters: y (year), M (month: M, MM, MMM = Jan, MMMM = January), d (day of month),
 * H (hour 0-23), h (hour 1-12), a (AM/PM), m (minute), s (second), S (fraction of second),
 * E (day of week: EEE = Mon, EEEE = Monday). Text in single quotes is literal ('' is a quote);
 * any other non-letter is literal; any other letter is an error.
 *
 * Parsing is strict: a field written with n >= 2 letters takes exactly n digits (so adjacent
 * fields such as yyyyMMdd work), one letter takes 1-2 digits (1-4 for y), `yy` is 2000-2099,
 * every field is range-checked (Feb 30 fails), and the whole input must be consumed.
 * Formatting fails only for a bad pattern or an instant within two days of the int64 range;
 * years outside 0..9999 print with more digits (and a '-' sign before year 0).
 */
#include <ctype.h>
#include <string.h>
#include <strings.h>

#include "expr_int.h"
#include "tsr/time.h"

static const char *const k_months[] = {"January", "February", "March", "April", "May", "June",
    "July", "August", "September", "October", "November", "December"};
static const char *const k_days[] = {"Sunday", "Monday", "Tuesday", "Wednesday", "Thursday",
    "Friday", "Saturday"};

/* One pattern item: a letter run, or a literal byte range. */
typedef struct item {
    char letter;        /* 0 for literal */
    int count;
    const char *lit;    /* literal bytes (quotes resolved lazily: see doubled) */
    size_t litn;
    int quoted;         /* literal came from '...' and may hold '' pairs */
} item_t;

static int letter_max(char c) {
    switch (c) {
    case 'y': return 9;
    case 'M': case 'E': return 4;
    case 'd': case 'H': case 'h': case 'm': case 's': return 2;
    case 'S': return 9;
    case 'a': return 1;
    default: return 0;
    }
}

/* Reads the next item at *i; returns 1 on an item, 0 at the end, -1 on an error (*i = where). */
static int next_item(const char *f, size_t fn, size_t *i, item_t *it) {
    if (*i >= fn) return 0;
    memset(it, 0, sizeof *it);
    char c = f[*i];
    if (c == '\'') {
        size_t j = *i + 1;
        if (j < fn && f[j] == '\'') {   /* '' outside quotes is one quote */
            it->lit = f + j;
            it->litn = 1;
            *i = j + 1;
            return 1;
        }
        size_t start = j;
        for (;;) {
            if (j >= fn) return -1;
            if (f[j] == '\'') {
                if (j + 1 < fn && f[j + 1] == '\'') { j += 2; continue; }
                break;
            }
            j++;
        }
        it->lit = f + start;
        it->litn = j - start;
        it->quoted = 1;
        *i = j + 1;
        return 1;
    }
    if (isalpha((unsigned char)c)) {
        size_t j = *i;
        while (j < fn && f[j] == c) j++;
        int n = (int)(j - *i);
        if (n > letter_max(c)) return -1;
        it->letter = c;
        it->count = n;
        *i = j;
        return 1;
    }
    it->lit = f + *i;
    it->litn = 1;
    *i += 1;
    return 1;
}

int tsr__dt_check(const char *fmt, size_t fn, size_t *bad) {
    size_t i = 0;
    item_t it;
    for (;;) {
        size_t at = i;
        int r = next_item(fmt, fn, &i, &it);
        if (r == 0) return 0;
        if (r < 0) {
            *bad = at;
            return -1;
        }
    }
}

size_t tsr__dt_max_len(size_t fn) { return fn * 20 + 16; }

static char *put_num(char *o, int64_t v, int width) {
    char tmp[24];
    int n = 0;
    uint64_t u = v < 0 ? 0 - (uint64_t)v : (uint64_t)v;
    do {
        tmp[n++] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (v < 0) *o++ = '-';
    for (int k = n; k < width; k++) *o++ = '0';
    while (n) *o++ = tmp[--n];
    return o;
}

long tsr__dt_format(const char *fmt, size_t fn, int64_t ms, char *out) {
    /* day * TSR_MS_PER_DAY below must not overflow: the outermost two days are refused */
    if (ms < INT64_MIN + 2 * TSR_MS_PER_DAY || ms > INT64_MAX - 2 * TSR_MS_PER_DAY) return -1;
    int64_t day = tsr_floor_div(ms, TSR_MS_PER_DAY);
    int64_t rem = ms - day * TSR_MS_PER_DAY;
    int64_t y;
    int mo, d;
    tsr_civil_from_days(day, &y, &mo, &d);
    int h = (int)(rem / TSR_MS_PER_HOUR), mi = (int)(rem / TSR_MS_PER_MINUTE % 60);
    int s = (int)(rem / 1000 % 60), frac = (int)(rem % 1000);
    int dow = (int)(((day % 7) + 7 + 4) % 7);   /* 1970-01-01 was a Thursday (4) */
    char *o = out;
    size_t i = 0;
    item_t it;
    int r;
    while ((r = next_item(fmt, fn, &i, &it)) > 0) {
        if (!it.letter) {
            for (size_t k = 0; k < it.litn; k++) {
                *o++ = it.lit[k];
                if (it.quoted && it.lit[k] == '\'') k++;    /* '' inside quotes */
            }
            continue;
        }
        switch (it.letter) {
        case 'y':
            if (it.count == 2) o = put_num(o, ((y % 100) + 100) % 100, 2);
            else o = put_num(o, y, it.count);
            break;
        case 'M':
            if (it.count >= 3) {
                const char *nm = k_months[mo - 1];
                size_t n = it.count == 3 ? 3 : strlen(nm);
                memcpy(o, nm, n);
                o += n;
            } else {
                o = put_num(o, mo, it.count);
            }
            break;
        case 'd': o = put_num(o, d, it.count); break;
        case 'H': o = put_num(o, h, it.count); break;
        case 'h': o = put_num(o, h % 12 == 0 ? 12 : h % 12, it.count); break;
        case 'm': o = put_num(o, mi, it.count); break;
        case 's': o = put_num(o, s, it.count); break;
        case 'a': memcpy(o, h < 12 ? "AM" : "PM", 2); o += 2; break;
        case 'E': {
            const char *nm = k_days[dow];
            size_t n = it.count <= 3 ? 3 : strlen(nm);
            memcpy(o, nm, n);
            o += n;
            break;
        }
        case 'S': {
            char f3[3] = {(char)('0' + frac / 100), (char)('0' + frac / 10 % 10), (char)('0' + frac % 10)};
            for (int k = 0; k < it.count; k++) *o++ = k < 3 ? f3[k] : '0';
            break;
        }
        default: return -1;
        }
    }
    if (r < 0) return -1;
    return (long)(o - out);
}

static int days_in_month(int64_t y, int m) {
    int64_t a = tsr_days_from_civil(y, m, 1);
    int64_t b = m == 12 ? tsr_days_from_civil(y + 1, 1, 1) : tsr_days_from_civil(y, m + 1, 1);
    return (int)(b - a);
}

/* Reads between lo and hi digits. */
static int read_digits(const char *s, size_t n, size_t *p, int lo, int hi, int64_t *v) {
    int k = 0;
    int64_t x = 0;
    while (*p < n && k < hi && isdigit((unsigned char)s[*p])) {
        x = x * 10 + (s[*p] - '0');
        (*p)++;
        k++;
    }
    if (k < lo) return -1;
    *v = x;
    return 0;
}

/* Matches one of names (full, or 3-letter abbreviations when abbr) case-insensitively. */
static int read_name(const char *s, size_t n, size_t *p, const char *const *names, int count, int abbr) {
    for (int k = 0; k < count; k++) {
        size_t len = abbr ? 3 : strlen(names[k]);
        if (*p + len <= n && strncasecmp(s + *p, names[k], len) == 0) {
            *p += len;
            return k;
        }
    }
    return -1;
}

typedef struct fields {
    int64_t y;
    int64_t mo, d, h, mi, s, ms;
    int h12, pm;    /* h12: -1 unless 'h' was used; pm: -1 unless 'a' was used */
} fields_t;

static int fields_to_ms(fields_t *f, int64_t *ms) {
    if (f->h12 >= 0) {
        if (f->h12 < 1 || f->h12 > 12) return -1;
        f->h = f->h12 % 12 + (f->pm > 0 ? 12 : 0);
    }
    if (f->y < -999999 || f->y > 999999) return -1;
    if (f->mo < 1 || f->mo > 12 || f->d < 1 || f->d > days_in_month(f->y, (int)f->mo)) return -1;
    if (f->h < 0 || f->h > 23 || f->mi < 0 || f->mi > 59 || f->s < 0 || f->s > 59) return -1;
    *ms = tsr_days_from_civil(f->y, (int)f->mo, (int)f->d) * TSR_MS_PER_DAY + f->h * TSR_MS_PER_HOUR +
          f->mi * TSR_MS_PER_MINUTE + f->s * TSR_MS_PER_SECOND + f->ms;
    return 0;
}

int tsr__dt_parse(const char *s, size_t n, const char *fmt, size_t fn, int64_t *ms) {
    fields_t f = {.y = 1970, .mo = 1, .d = 1, .h12 = -1, .pm = -1};
    size_t i = 0, p = 0;
    item_t it;
    int r;
    while ((r = next_item(fmt, fn, &i, &it)) > 0) {
        if (!it.letter) {
            for (size_t k = 0; k < it.litn; k++) {
                if (p >= n || s[p] != it.lit[k]) return -1;
                p++;
                if (it.quoted && it.lit[k] == '\'') k++;
            }
            continue;
        }
        int c = it.count;
        int64_t v;
        switch (it.letter) {
        case 'y':
            if (read_digits(s, n, &p, c == 1 ? 1 : c, c == 1 ? 4 : c, &v)) return -1;
            f.y = c == 2 ? 2000 + v : v;
            break;
        case 'M':
            if (c >= 3) {
                int k = read_name(s, n, &p, k_months, 12, c == 3);
                if (k < 0) return -1;
                f.mo = k + 1;
            } else if (read_digits(s, n, &p, c, 2, &f.mo)) {
                return -1;
            }
            break;
        case 'd': if (read_digits(s, n, &p, c, 2, &f.d)) return -1; break;
        case 'H': if (read_digits(s, n, &p, c, 2, &f.h)) return -1; break;
        case 'h':
            if (read_digits(s, n, &p, c, 2, &v)) return -1;
            f.h12 = (int)v;
            break;
        case 'm': if (read_digits(s, n, &p, c, 2, &f.mi)) return -1; break;
        case 's': if (read_digits(s, n, &p, c, 2, &f.s)) return -1; break;
        case 'a':
            if (p + 2 > n) return -1;
            if (strncasecmp(s + p, "AM", 2) == 0) f.pm = 0;
            else if (strncasecmp(s + p, "PM", 2) == 0) f.pm = 1;
            else return -1;
            p += 2;
            break;
        case 'E':
            if (read_name(s, n, &p, k_days, 7, c <= 3) < 0) return -1;
            break;
        case 'S': {
            if (read_digits(s, n, &p, c, c, &v)) return -1;
            /* keep milliseconds: scale c digits to 3 */
            for (int k = c; k < 3; k++) v *= 10;
            for (int k = 3; k < c; k++) v /= 10;
            f.ms = v;
            break;
        }
        default: return -1;
        }
    }
    if (r < 0 || p != n) return -1;
    return fields_to_ms(&f, ms);
}

int tsr__dt_parse_default(const char *s, size_t n, int64_t *ms) {
    while (n && isspace((unsigned char)s[n - 1])) n--;
    size_t p = 0;
    while (p < n && isspace((unsigned char)s[p])) p++;
    fields_t f = {.h12 = -1, .pm = -1};
    if (read_digits(s, n, &p, 4, 4, &f.y) || p >= n || s[p++] != '-') return -1;
    if (read_digits(s, n, &p, 1, 2, &f.mo) || p >= n || s[p++] != '-') return -1;
    if (read_digits(s, n, &p, 1, 2, &f.d)) return -1;
    if (p < n && (s[p] == ' ' || s[p] == 'T')) {
        p++;
        if (read_digits(s, n, &p, 1, 2, &f.h) || p >= n || s[p++] != ':') return -1;
        if (read_digits(s, n, &p, 1, 2, &f.mi)) return -1;
        if (p < n && s[p] == ':') {
            p++;
            if (read_digits(s, n, &p, 1, 2, &f.s)) return -1;
            if (p < n && s[p] == '.') {
                p++;
                int64_t v;
                size_t start = p;
                if (read_digits(s, n, &p, 1, 3, &v)) return -1;
                for (size_t k = p - start; k < 3; k++) v *= 10;
                while (p < n && isdigit((unsigned char)s[p])) p++;  /* beyond ms: truncated */
                f.ms = v;
            }
        }
        if (p < n && s[p] == 'Z') p++;
    }
    if (p != n) return -1;
    return fields_to_ms(&f, ms);
}
