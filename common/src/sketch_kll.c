/*
 * sketch_kll.c — KLL quantile sketch (Karnin, Lang, Liberty 2016) for APPROX_PERCENTILE.
 *
 * Design (the practical variant Apache DataSketches uses):
 *   - A stack of compactors (levels). An item at level h stands for 2^h input items. Level 0
 *     takes new items unsorted; levels >= 1 are kept sorted.
 *   - Level capacities: with H levels, cap(H-1) = K and cap(h) = max(8, ceil(cap(h+1) * 2/3))
 *     going down (integer steps, so the capacities are the same on every platform). K is the
 *     internal size TSR_KLL_K_SCALE * k: the textbook k = 128 has ~2% rank error at 99%
 *     confidence, SPEC §4 asks for 1%, so we run the compactors at 3k (see docs/sketches.md).
 *   - Lazy compression: only when the total number of retained items exceeds the sum of the
 *     capacities, the lowest level at or over its capacity is compacted: sorted, one item kept
 *     back when its length is odd, and of the rest every other item (offset 0 or 1 by a coin)
 *     moves up one level, merged into its sorted run. Repeat until within the total.
 *   - The coin comes from a splitmix64 generator in the sketch state (and in its encoding), so
 *     the same inputs in the same order give the same state and bytes.
 *
 * Invariants (checked by the decoder):
 *   1. sum over h of len(h) * 2^h == n (a compaction halves items and doubles weight);
 *   2. after every public call, total retained <= total capacity, so the sketch is exact
 *      (nothing compacted) while n <= K;
 *   3. levels >= 1 are sorted ascending; no item is NaN; min <= every item <= max (exact).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tsr/sketch.h"

#define KLL_MAX_LEVELS 64
#define KLL_MIN_CAP 8
#define KLL_RNG_SEED 0x6b6c6c2d74737221ULL /* "kll-tsr!" */

struct tsr_kll {
    int k;                          /* user k (after merges: the smallest seen) */
    uint32_t K;                     /* internal size TSR_KLL_K_SCALE * k */
    uint64_t n;
    double min, max;
    uint64_t rng;
    int nlev;
    uint32_t size;                  /* retained items over all levels */
    uint64_t cap_total;             /* sum of level_cap over the levels, cached (refresh_caps) */
    uint32_t cap[KLL_MAX_LEVELS];   /* level_cap(K, nlev, h), cached */
    double *lv[KLL_MAX_LEVELS];
    uint32_t len[KLL_MAX_LEVELS], alloc[KLL_MAX_LEVELS];
    double *scratch;                /* merge buffer for compactions */
    uint32_t scratch_alloc;
};

static int clamp_k(int k) {
    if (k < TSR_KLL_K_MIN) return TSR_KLL_K_MIN;
    if (k > TSR_KLL_K_MAX) return TSR_KLL_K_MAX;
    return k;
}

static void set_k(tsr_kll_t *s, int k) {
    s->k = k;
    s->K = (uint32_t)k * TSR_KLL_K_SCALE;
}

static void refresh_caps(tsr_kll_t *s);

tsr_kll_t *tsr_kll_new(int k) {
    tsr_kll_t *s = tsr_calloc(1, sizeof(*s));
    set_k(s, clamp_k(k));
    s->rng = KLL_RNG_SEED;
    s->nlev = 1;
    s->min = s->max = NAN;
    refresh_caps(s);
    return s;
}

void tsr_kll_free(tsr_kll_t *s) {
    if (!s) return;
    for (int h = 0; h < KLL_MAX_LEVELS; h++) free(s->lv[h]);
    free(s->scratch);
    free(s);
}

uint64_t tsr_kll_n(const tsr_kll_t *s) { return s->n; }
int tsr_kll_k(const tsr_kll_t *s) { return s->k; }

/* Capacity of level h when there are nlev levels. */
static uint32_t level_cap(uint32_t K, int nlev, int h) {
    uint32_t c = K;
    for (int d = nlev - 1 - h; d > 0 && c > KLL_MIN_CAP; d--) c = (c * 2 + 2) / 3;
    return c < KLL_MIN_CAP ? KLL_MIN_CAP : c;
}

static uint64_t total_cap(uint32_t K, int nlev) {
    uint64_t t = 0;
    for (int h = 0; h < nlev; h++) t += level_cap(K, nlev, h);
    return t;
}

/* Recomputes the cached capacities; called whenever K or nlev changes. */
static void refresh_caps(tsr_kll_t *s) {
    s->cap_total = 0;
    for (int h = 0; h < s->nlev; h++) {
        s->cap[h] = level_cap(s->K, s->nlev, h);
        s->cap_total += s->cap[h];
    }
}

static void level_reserve(tsr_kll_t *s, int h, uint32_t need) {
    if (need <= s->alloc[h]) return;
    uint32_t a = s->alloc[h] ? s->alloc[h] : 16;
    while (a < need) a *= 2;
    s->lv[h] = tsr_realloc(s->lv[h], (size_t)a * sizeof(double));
    s->alloc[h] = a;
}

static void scratch_reserve(tsr_kll_t *s, uint32_t need) {
    if (need <= s->scratch_alloc) return;
    uint32_t a = s->scratch_alloc ? s->scratch_alloc : 64;
    while (a < need) a *= 2;
    s->scratch = tsr_realloc(s->scratch, (size_t)a * sizeof(double));
    s->scratch_alloc = a;
}

/* In-place ascending sort of NaN-free doubles: quicksort (median of three, loop on the larger
 * side) with insertion sort below 16 items. */
static void sort_doubles(double *a, size_t n) {
    while (n > 16) {
        size_t mid = n / 2;
        double x = a[0], y = a[mid], z = a[n - 1];
        double piv = x < y ? (y < z ? y : (x < z ? z : x)) : (x < z ? x : (y < z ? z : y));
        size_t i = 0, j = n - 1;
        for (;;) {
            while (a[i] < piv) i++;
            while (a[j] > piv) j--;
            if (i >= j) break;
            double t = a[i];
            a[i] = a[j];
            a[j] = t;
            i++;
            j--;
        }
        /* [0, j] <= piv <= [j+1, n) */
        size_t nl = j + 1, nr = n - nl;
        if (nl < nr) {
            sort_doubles(a, nl);
            a += nl;
            n = nr;
        } else {
            sort_doubles(a + nl, nr);
            n = nl;
        }
    }
    for (size_t i = 1; i < n; i++) {
        double v = a[i];
        size_t j = i;
        while (j > 0 && a[j - 1] > v) {
            a[j] = a[j - 1];
            j--;
        }
        a[j] = v;
    }
}

/* Merges sorted src[0..ns) into sorted level h (via scratch). */
static void level_merge_sorted(tsr_kll_t *s, int h, const double *src, uint32_t ns) {
    uint32_t nd = s->len[h];
    scratch_reserve(s, nd + ns);
    const double *d = s->lv[h];
    double *o = s->scratch;
    uint32_t i = 0, j = 0, w = 0;
    while (i < nd && j < ns) o[w++] = d[i] <= src[j] ? d[i++] : src[j++];
    while (i < nd) o[w++] = d[i++];
    while (j < ns) o[w++] = src[j++];
    level_reserve(s, h, w);
    memcpy(s->lv[h], o, (size_t)w * sizeof(double));
    s->len[h] = w;
}

static int coin(tsr_kll_t *s) {
    uint64_t z = (s->rng += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return (int)((z ^ (z >> 31)) >> 63);
}

static void compact_level(tsr_kll_t *s, int h) {
    if (h + 1 == s->nlev) {             /* the top level overflowed: a new top */
        s->nlev++;
        refresh_caps(s);
    }
    double *a = s->lv[h];
    uint32_t L = s->len[h];
    if (h == 0) sort_doubles(a, L);
    uint32_t keep = L & 1;              /* the smallest item stays when L is odd */
    uint32_t pairs = (L - keep) / 2;
    uint32_t off = keep + (uint32_t)coin(s);
    /* Promote every other item, in place into the front of the level's tail, then merge. */
    double *up = a + keep;
    for (uint32_t i = 0; i < pairs; i++) up[i] = a[off + 2 * i];
    /* up[] may alias what level_merge_sorted writes only in level h+1's storage: distinct. */
    level_merge_sorted(s, h + 1, up, pairs);
    s->len[h] = keep;
    s->size -= pairs;
}

static void compress(tsr_kll_t *s) {
    while (s->size > s->cap_total) {
        int h = 0;
        while (h < s->nlev - 1 && s->len[h] < s->cap[h]) h++;
        /* Unreachable for n < 2^64 (level 63 would need >= 8 items of weight 2^63); the
         * guard keeps the level arrays in bounds whatever a caller feeds in. */
        if (h + 1 >= KLL_MAX_LEVELS) break;
        compact_level(s, h);
    }
}

void tsr_kll_add(tsr_kll_t *s, double x) {
    if (isnan(x)) return;
    if (s->n == 0 || x < s->min) s->min = x;
    if (s->n == 0 || x > s->max) s->max = x;
    s->n++;
    level_reserve(s, 0, s->len[0] + 1);
    s->lv[0][s->len[0]++] = x;
    s->size++;
    if (s->size > s->cap_total) compress(s);
}

int tsr_kll_merge(tsr_kll_t *dst, const tsr_kll_t *src) {
    if (src->n == 0) return 0;
    if (src->k < dst->k) set_k(dst, src->k);
    if (dst->n == 0 || src->min < dst->min) dst->min = src->min;
    if (dst->n == 0 || src->max > dst->max) dst->max = src->max;
    dst->n += src->n;
    if (src->nlev > dst->nlev) dst->nlev = src->nlev;
    refresh_caps(dst);
    for (int h = 0; h < src->nlev; h++) {
        uint32_t ns = src->len[h];
        if (!ns) continue;
        if (h == 0) {
            level_reserve(dst, 0, dst->len[0] + ns);
            memcpy(dst->lv[0] + dst->len[0], src->lv[0], (size_t)ns * sizeof(double));
            dst->len[0] += ns;
        } else {
            level_merge_sorted(dst, h, src->lv[h], ns);
        }
        dst->size += ns;
    }
    compress(dst);
    return 0;
}

typedef struct {
    double v;
    uint64_t w;
} kll_wi_t;

static int cmp_wi(const void *a, const void *b) {
    double x = ((const kll_wi_t *)a)->v, y = ((const kll_wi_t *)b)->v;
    return x < y ? -1 : x > y;
}

void tsr_kll_quantiles(const tsr_kll_t *s, const double *rs, size_t nr, double *out) {
    if (s->n == 0) {
        for (size_t i = 0; i < nr; i++) out[i] = NAN;
        return;
    }
    kll_wi_t *it = tsr_malloc((size_t)s->size * sizeof(*it));
    size_t m = 0;
    for (int h = 0; h < s->nlev; h++)
        for (uint32_t i = 0; i < s->len[h]; i++) it[m++] = (kll_wi_t){s->lv[h][i], 1ULL << h};
    qsort(it, m, sizeof(*it), cmp_wi);
    for (size_t i = 1; i < m; i++) it[i].w += it[i - 1].w;  /* cumulative weights */
    for (size_t q = 0; q < nr; q++) {
        double r = rs[q];
        if (isnan(r)) {
            out[q] = NAN;
        } else if (r <= 0) {
            out[q] = s->min;
        } else if (r >= 1) {
            out[q] = s->max;
        } else {
            double td = ceil(r * (double)s->n);
            uint64_t t = td < 1 ? 1 : (uint64_t)td;
            /* Binary search for the first cumulative weight >= t. */
            size_t lo = 0, hi = m - 1;
            while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;
                if (it[mid].w >= t)
                    hi = mid;
                else
                    lo = mid + 1;
            }
            out[q] = it[lo].v;
        }
    }
    free(it);
}

double tsr_kll_quantile(const tsr_kll_t *s, double r) {
    double v;
    tsr_kll_quantiles(s, &r, 1, &v);
    return v;
}

/* ---- Encoding.
 *   uvarint k, uvarint n; when n > 0: f64 min, f64 max, uvarint rng, uvarint nlev,
 *   nlev x uvarint len(h), then every level's items as f64 (level 0 first, in stored order). */

void tsr_kll_encode(const tsr_kll_t *s, tsr_buf_t *out) {
    tsr_buf_put_uvarint(out, (uint64_t)s->k);
    tsr_buf_put_uvarint(out, s->n);
    if (s->n == 0) return;
    tsr_buf_put_f64(out, s->min);
    tsr_buf_put_f64(out, s->max);
    tsr_buf_put_uvarint(out, s->rng);
    tsr_buf_put_uvarint(out, (uint64_t)s->nlev);
    for (int h = 0; h < s->nlev; h++) tsr_buf_put_uvarint(out, s->len[h]);
    tsr_buf_reserve(out, (size_t)s->size * 8);
    for (int h = 0; h < s->nlev; h++)
        for (uint32_t i = 0; i < s->len[h]; i++) tsr_buf_put_f64(out, s->lv[h][i]);
}

static int kll_corrupt(tsr_kll_t *s, tsr_error_t *err, const char *what) {
    tsr_kll_free(s);
    return tsr_error_set(err, TSR_ECORRUPT, "kll sketch: %s", what);
}

int tsr_kll_decode(tsr_reader_t *r, tsr_kll_t **out, tsr_error_t *err) {
    *out = NULL;
    uint64_t k, n;
    if (tsr_get_uvarint(r, &k) || tsr_get_uvarint(r, &n))
        return tsr_error_set(err, TSR_ECORRUPT, "kll sketch: truncated header");
    if (k < TSR_KLL_K_MIN || k > TSR_KLL_K_MAX)
        return tsr_error_set(err, TSR_ECORRUPT, "kll sketch: k %llu outside [%d, %d]",
                             (unsigned long long)k, TSR_KLL_K_MIN, TSR_KLL_K_MAX);
    tsr_kll_t *s = tsr_kll_new((int)k);
    if (n == 0) {
        *out = s;
        return 0;
    }
    uint64_t nlev, rng;
    double mn, mx;
    if (tsr_get_f64(r, &mn) || tsr_get_f64(r, &mx) || tsr_get_uvarint(r, &rng) ||
        tsr_get_uvarint(r, &nlev))
        return kll_corrupt(s, err, "truncated header");
    if (isnan(mn) || isnan(mx) || mn > mx) return kll_corrupt(s, err, "bad min/max");
    if (nlev < 1 || nlev > KLL_MAX_LEVELS) return kll_corrupt(s, err, "level count out of range");
    uint64_t lens[KLL_MAX_LEVELS], total = 0, weight = 0;
    for (uint64_t h = 0; h < nlev; h++) {
        if (tsr_get_uvarint(r, &lens[h])) return kll_corrupt(s, err, "truncated level lengths");
        total += lens[h] < UINT32_MAX ? lens[h] : UINT32_MAX;
        if (lens[h] > (UINT64_MAX >> h) || (lens[h] << h) > UINT64_MAX - weight)
            return kll_corrupt(s, err, "level weights overflow");
        weight += lens[h] << h;
    }
    /* Invariants 1 and 2, checked before anything is allocated from these numbers. */
    if (weight != n) return kll_corrupt(s, err, "level weights do not add up to n");
    if (total > total_cap(s->K, (int)nlev)) return kll_corrupt(s, err, "more items than capacity");
    if (total > tsr_reader_left(r) / 8) return kll_corrupt(s, err, "truncated items");
    s->n = n;
    s->min = mn;
    s->max = mx;
    s->rng = rng;
    s->nlev = (int)nlev;
    refresh_caps(s);
    for (int h = 0; h < s->nlev; h++) {
        uint32_t L = (uint32_t)lens[h];
        level_reserve(s, h, L);
        for (uint32_t i = 0; i < L; i++) {
            double x;
            tsr_get_f64(r, &x);     /* cannot fail: length checked above */
            if (isnan(x) || x < mn || x > mx) return kll_corrupt(s, err, "item outside [min, max]");
            if (h > 0 && i > 0 && x < s->lv[h][i - 1])
                return kll_corrupt(s, err, "level not sorted");
            s->lv[h][i] = x;
        }
        s->len[h] = L;
        s->size += L;
    }
    *out = s;
    return 0;
}
