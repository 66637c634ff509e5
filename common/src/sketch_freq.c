/*
 * sketch_freq.c — frequent items for APPROX_HISTOGRAM_K / APPROX_FREQUENT_K /
 * APPROX_HEAVY_HITTERS_K: exact counts while few keys were seen, then a Misra-Gries summary.
 *
 * Design:
 *   - capacity c is Chronon's k (the aggregation kernel passes it unchanged). The summary
 *     keeps M = 4c counters and a table of up to T = 8c entries. While at most T distinct keys
 *     were seen nothing was lost: counts are exact (so "exact up to k distinct", SPEC §4, holds
 *     with room to spare), and afterwards the error is below n / (4c) rather than n / c.
 *   - Adding a new key to a full table first purges it (weighted Misra-Gries with the
 *     Agarwal et al. "Mergeable summaries" reduction): d = the (M+1)-th largest count is
 *     subtracted from every counter and counters <= 0 are dropped, leaving at most M. The sum
 *     of all d's is kept as `err`.
 *   - Merge (Agarwal et al.): add the counters key by key, add the errs, then purge once if the
 *     table holds more than T keys. It is symmetric in its two arguments.
 *   - Keys live in one byte pool (offset, length per entry); purges leave garbage that is
 *     compacted when it outweighs live bytes. Entries sit in a dense array indexed by an
 *     open-addressing table of entry numbers. Growth is amortised; an add allocates nothing
 *     in steady state.
 *
 * Invariants (checked by the decoder):
 *   1. est(x) <= count(x) <= est(x) + err for every key x (est = 0 for keys not held);
 *   2. (M + 1) * err <= total - sum(est): each purge removes at least (M + 1) * d of mass, so
 *      err <= total / (M + 1) = total / (4c + 1);
 *   3. exact => err == 0 and sum(est) == total; every held count >= 1; at most T keys.
 *   4. The content (key -> count, err, total) after a sequence of calls does not depend on how
 *      the table is laid out, and encodings list keys sorted, so equal content = equal bytes.
 */
#include <stdlib.h>
#include <string.h>

#include "tsr/sketch.h"
#include "tsr/value.h"

#define FREQ_HASH_SEED 0x66726571ULL /* "freq" */

typedef struct freq_ent {
    uint64_t hash;
    uint64_t off;       /* key bytes at pool + off */
    uint32_t len;
    int64_t count;
} freq_ent_t;

struct tsr_freq {
    int capacity;
    uint32_t M, T;          /* counters kept after a purge; table size that triggers one */
    uint64_t total, err;
    int exact;
    freq_ent_t *ent;
    uint32_t n, ent_alloc;
    int32_t *idx;           /* open addressing, -1 = empty */
    uint32_t idx_cap;       /* power of two, >= 2 * n */
    char *pool;
    size_t pool_len, pool_alloc, pool_live;
    int64_t *sel;           /* quickselect scratch */
    uint32_t sel_alloc;
};

static int clamp_cap(int c) {
    if (c < TSR_FREQ_CAP_MIN) return TSR_FREQ_CAP_MIN;
    if (c > TSR_FREQ_CAP_MAX) return TSR_FREQ_CAP_MAX;
    return c;
}

static void set_capacity(tsr_freq_t *f, int c) {
    f->capacity = c;
    f->M = 4u * (uint32_t)c;
    f->T = 8u * (uint32_t)c;
}

static void idx_rebuild(tsr_freq_t *f, uint32_t cap) {
    if (cap != f->idx_cap) {
        free(f->idx);
        f->idx = tsr_malloc((size_t)cap * sizeof(int32_t));
        f->idx_cap = cap;
    }
    memset(f->idx, 0xff, (size_t)cap * sizeof(int32_t));
    uint32_t mask = cap - 1;
    for (uint32_t e = 0; e < f->n; e++) {
        uint32_t i = (uint32_t)f->ent[e].hash & mask;
        while (f->idx[i] >= 0) i = (i + 1) & mask;
        f->idx[i] = (int32_t)e;
    }
}

tsr_freq_t *tsr_freq_new(int capacity) {
    tsr_freq_t *f = tsr_calloc(1, sizeof(*f));
    set_capacity(f, clamp_cap(capacity));
    f->exact = 1;
    idx_rebuild(f, 16);
    return f;
}

void tsr_freq_free(tsr_freq_t *f) {
    if (!f) return;
    free(f->ent);
    free(f->idx);
    free(f->pool);
    free(f->sel);
    free(f);
}

int tsr_freq_is_exact(const tsr_freq_t *f) { return f->exact; }
uint64_t tsr_freq_total(const tsr_freq_t *f) { return f->total; }
int tsr_freq_capacity(const tsr_freq_t *f) { return f->capacity; }
uint64_t tsr_freq_max_error(const tsr_freq_t *f) { return f->err; }
size_t tsr_freq_size(const tsr_freq_t *f) { return f->n; }

/* Counts saturate at INT64_MAX instead of overflowing (decoded or merged counts may be huge). */
static inline int64_t sat_add(int64_t a, int64_t b) { return a > INT64_MAX - b ? INT64_MAX : a + b; }

static int32_t find(const tsr_freq_t *f, uint64_t hash, const char *key, size_t len) {
    uint32_t mask = f->idx_cap - 1;
    for (uint32_t i = (uint32_t)hash & mask;; i = (i + 1) & mask) {
        int32_t e = f->idx[i];
        if (e < 0) return -1;
        const freq_ent_t *x = &f->ent[e];
        if (x->hash == hash && x->len == len && memcmp(f->pool + x->off, key, len) == 0)
            return e;
    }
}

/* The j-th largest (0-based) of a[0..n) by quickselect with a three-way partition (so runs of
 * equal counts, common in frequency data, cost no extra passes); a is scratch (reordered). */
static int64_t select_desc(int64_t *a, uint32_t n, uint32_t j) {
    uint32_t lo = 0, hi = n;    /* the answer is in [lo, hi) */
    for (;;) {
        int64_t piv = a[lo + (hi - lo) / 2], t;
        /* [lo, lt) > piv, [lt, i) == piv, [gt, hi) < piv */
        uint32_t lt = lo, i = lo, gt = hi;
        while (i < gt) {
            if (a[i] > piv) {
                t = a[i], a[i] = a[lt], a[lt] = t;
                lt++, i++;
            } else if (a[i] < piv) {
                gt--;
                t = a[i], a[i] = a[gt], a[gt] = t;
            } else {
                i++;
            }
        }
        if (j < lt)
            hi = lt;
        else if (j >= gt)
            lo = gt;
        else
            return piv;
    }
}

static void pool_compact(tsr_freq_t *f) {
    /* Entries keep pool order (both append-only, purges preserve order), so a forward
     * memmove pass is safe. */
    size_t w = 0;
    for (uint32_t e = 0; e < f->n; e++) {
        freq_ent_t *x = &f->ent[e];
        if (x->off != w) memmove(f->pool + w, f->pool + x->off, x->len);
        x->off = w;
        w += x->len;
    }
    f->pool_len = w;
}

/* Misra-Gries purge: subtract the (M+1)-th largest count from all, drop counts <= 0. */
static void purge(tsr_freq_t *f) {
    if (f->n <= f->M) return;
    if (f->sel_alloc < f->n) {
        f->sel = tsr_realloc(f->sel, (size_t)f->n * sizeof(int64_t));
        f->sel_alloc = f->n;
    }
    for (uint32_t e = 0; e < f->n; e++) f->sel[e] = f->ent[e].count;
    int64_t d = select_desc(f->sel, f->n, f->M);
    uint32_t w = 0;
    for (uint32_t e = 0; e < f->n; e++) {
        freq_ent_t x = f->ent[e];
        x.count -= d;
        if (x.count > 0)
            f->ent[w++] = x;
        else
            f->pool_live -= x.len;
    }
    f->n = w;
    f->err += (uint64_t)d;
    f->exact = 0;
    if (f->pool_len > 2 * f->pool_live + 256) pool_compact(f);
    idx_rebuild(f, f->idx_cap);
}

/* Adds count to key without touching total; purges first when a new key finds the table full
 * (unless allow_over, used by merge, which purges once at the end). */
static void add_count(tsr_freq_t *f, uint64_t hash, const char *key, size_t len, int64_t count,
                      int allow_over) {
    int32_t e = find(f, hash, key, len);
    if (e >= 0) {
        f->ent[e].count = sat_add(f->ent[e].count, count);
        return;
    }
    if (f->n >= f->T && !allow_over) purge(f);
    if (f->n == f->ent_alloc) {
        f->ent_alloc = f->ent_alloc ? 2 * f->ent_alloc : 16;
        f->ent = tsr_realloc(f->ent, (size_t)f->ent_alloc * sizeof(freq_ent_t));
    }
    if (f->pool_len + len > f->pool_alloc) {
        size_t a = f->pool_alloc ? f->pool_alloc : 256;
        while (a < f->pool_len + len) a *= 2;
        f->pool = tsr_realloc(f->pool, a);
        f->pool_alloc = a;
    }
    if (len) memcpy(f->pool + f->pool_len, key, len);
    f->ent[f->n] = (freq_ent_t){hash, f->pool_len, (uint32_t)len, count};
    f->pool_len += len;
    f->pool_live += len;
    f->n++;
    if (2 * f->n > f->idx_cap) {
        idx_rebuild(f, 2 * f->idx_cap);
    } else {
        uint32_t mask = f->idx_cap - 1, i = (uint32_t)hash & mask;
        while (f->idx[i] >= 0) i = (i + 1) & mask;
        f->idx[i] = (int32_t)(f->n - 1);
    }
}

void tsr_freq_add(tsr_freq_t *f, const char *key, size_t len, int64_t count) {
    if (count <= 0 || len > UINT32_MAX) return;
    f->total += (uint64_t)count;
    add_count(f, tsr_hash_bytes(key, len, FREQ_HASH_SEED), key, len, count, 0);
}

int tsr_freq_merge(tsr_freq_t *dst, const tsr_freq_t *src) {
    if (src->capacity < dst->capacity) set_capacity(dst, src->capacity);
    for (uint32_t e = 0; e < src->n; e++) {
        const freq_ent_t *x = &src->ent[e];
        add_count(dst, x->hash, src->pool + x->off, x->len, x->count, 1);
    }
    dst->total += src->total;
    dst->err += src->err;
    dst->exact = dst->exact && src->exact;
    if (dst->n > dst->T) purge(dst);
    return 0;
}

int64_t tsr_freq_count(const tsr_freq_t *f, const char *key, size_t len) {
    int32_t e = find(f, tsr_hash_bytes(key, len, FREQ_HASH_SEED), key, len);
    return e < 0 ? 0 : f->ent[e].count;
}

static int key_cmp(const char *a, size_t na, const char *b, size_t nb) {
    int c = memcmp(a, b, na < nb ? na : nb);
    if (c) return c;
    return na < nb ? -1 : na > nb;
}

/* qsort has no context argument: sort (entry, sketch) pairs. */
typedef struct {
    const freq_ent_t *e;
    const char *pool;
} freq_ref_t;

static int cmp_key(const void *a, const void *b) {
    const freq_ref_t *x = a, *y = b;
    return key_cmp(x->pool + x->e->off, x->e->len, y->pool + y->e->off, y->e->len);
}

static int cmp_top(const void *a, const void *b) {
    const freq_ref_t *x = a, *y = b;
    if (x->e->count != y->e->count) return x->e->count > y->e->count ? -1 : 1;
    return cmp_key(a, b);
}

static freq_ref_t *sorted_refs(const tsr_freq_t *f, int (*cmp)(const void *, const void *)) {
    freq_ref_t *v = tsr_malloc((f->n ? f->n : 1) * sizeof(*v));
    for (uint32_t e = 0; e < f->n; e++) v[e] = (freq_ref_t){&f->ent[e], f->pool};
    qsort(v, f->n, sizeof(*v), cmp);
    return v;
}

size_t tsr_freq_top(const tsr_freq_t *f, tsr_freq_item_t *out, size_t max) {
    if (max == 0 || f->n == 0) return 0;
    freq_ref_t *v = sorted_refs(f, cmp_top);
    size_t n = f->n < max ? f->n : max;
    for (size_t i = 0; i < n; i++)
        out[i] = (tsr_freq_item_t){f->pool + v[i].e->off, v[i].e->len, v[i].e->count};
    free(v);
    return n;
}

/* ---- Encoding.
 *   uvarint capacity, u8 exact, uvarint total, uvarint err, uvarint n,
 *   n x (bytes key [uvarint length + bytes], uvarint count), keys strictly ascending. */

void tsr_freq_encode(const tsr_freq_t *f, tsr_buf_t *out) {
    tsr_buf_put_uvarint(out, (uint64_t)f->capacity);
    tsr_buf_put_u8(out, (uint8_t)f->exact);
    tsr_buf_put_uvarint(out, f->total);
    tsr_buf_put_uvarint(out, f->err);
    tsr_buf_put_uvarint(out, f->n);
    freq_ref_t *v = sorted_refs(f, cmp_key);
    for (uint32_t i = 0; i < f->n; i++) {
        tsr_buf_put_bytes(out, f->pool + v[i].e->off, v[i].e->len);
        tsr_buf_put_uvarint(out, (uint64_t)v[i].e->count);
    }
    free(v);
}

static int freq_corrupt(tsr_freq_t *f, tsr_error_t *err, const char *what, uint64_t at) {
    tsr_freq_free(f);
    return tsr_error_set(err, TSR_ECORRUPT, "frequent-items sketch: %s (at entry %llu)", what,
                         (unsigned long long)at);
}

int tsr_freq_decode(tsr_reader_t *r, tsr_freq_t **out, tsr_error_t *err) {
    *out = NULL;
    uint64_t cap, total, ferr, n;
    uint8_t exact;
    if (tsr_get_uvarint(r, &cap) || tsr_get_u8(r, &exact) || tsr_get_uvarint(r, &total) ||
        tsr_get_uvarint(r, &ferr) || tsr_get_uvarint(r, &n))
        return tsr_error_set(err, TSR_ECORRUPT, "frequent-items sketch: truncated header");
    if (cap < TSR_FREQ_CAP_MIN || cap > TSR_FREQ_CAP_MAX || exact > 1)
        return tsr_error_set(err, TSR_ECORRUPT,
                             "frequent-items sketch: capacity %llu outside [%d, %d] or bad flag",
                             (unsigned long long)cap, TSR_FREQ_CAP_MIN, TSR_FREQ_CAP_MAX);
    tsr_freq_t *f = tsr_freq_new((int)cap);
    /* Each entry takes at least 2 bytes (empty key length, count). */
    if (n > f->T || n > tsr_reader_left(r) / 2)
        return freq_corrupt(f, err, "entry count exceeds table size or input", n);
    uint64_t sum = 0;
    const uint8_t *prev = NULL;
    size_t prev_len = 0;
    for (uint64_t i = 0; i < n; i++) {
        const uint8_t *key;
        size_t len;
        uint64_t c;
        if (tsr_get_bytes(r, &key, &len) || tsr_get_uvarint(r, &c))
            return freq_corrupt(f, err, "truncated entry", i);
        if (len > UINT32_MAX) return freq_corrupt(f, err, "key too long", i);
        if (c == 0 || c > (uint64_t)INT64_MAX || c > UINT64_MAX - sum)
            return freq_corrupt(f, err, "count out of range", i);
        if (prev && key_cmp((const char *)prev, prev_len, (const char *)key, len) >= 0)
            return freq_corrupt(f, err, "keys not strictly ascending", i);
        prev = key;
        prev_len = len;
        sum += c;
        add_count(f, tsr_hash_bytes(key, len, FREQ_HASH_SEED), (const char *)key, len,
                  (int64_t)c, 1);
    }
    /* Invariants 2 and 3. */
    if (sum > total || ferr > (total - sum) / (f->M + 1) || (exact && (ferr || sum != total)))
        return freq_corrupt(f, err, "counts inconsistent with total and error bound", n);
    f->total = total;
    f->err = ferr;
    f->exact = exact;
    *out = f;
    return 0;
}
