/*
 * sketch_hll.c — HyperLogLog for APPROX_UNIQUE_COUNT.
 *
 * Design:
 *   - p = lgk + 7 index bits, m = 2^p one-byte registers (32768 at the default lgk 8: 32 KiB in
 *     memory, 24 KiB encoded as 6-bit fields). Standard error of the dense estimate is about
 *     1.04 / sqrt(m) = 0.57%, so SPEC §4's 2% is a 3.5-sigma bound.
 *   - A hash h updates register h >> (64 - p) with rho = 1 + the number of leading zeros of the
 *     remaining q = 64 - p bits (q + 1 when they are all zero).
 *   - Sparse mode: while at most L = m / 16 distinct hashes were seen, the sketch is the exact
 *     set of hashes in an open-addressing table (load <= 1/2, so at most m / 8 slots of 8 bytes
 *     = the dense size), and the estimate is its size. Feature stores hold many keys with few
 *     distinct values each; they stay small and exact.
 *   - Dense estimate: Ertl's improved estimator ("New cardinality estimation algorithms for
 *     HyperLogLog sketches", 2017, Algorithm 6) computed from the register histogram. It is
 *     unbiased over the whole range without empirical bias tables or a linear-counting switch.
 *
 * Invariants:
 *   1. The state (sparse set, or registers) is a function of the SET of hashes added: adds and
 *      merges commute and associate exactly, and the encoding sorts the sparse set, so equal
 *      sets give equal bytes whatever the order.
 *   2. Sparse iff the set has at most L distinct hashes (a union of sets only grows).
 *   3. Hash 0 is the empty-slot marker and is stored as 1 (a 2^-63 collision, documented).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tsr/sketch.h"

struct tsr_hll {
    int lgk, p;
    uint32_t m;             /* 2^p registers */
    uint32_t sparse_max;    /* L = m / 16 */
    uint8_t *regs;          /* dense registers (m bytes), NULL while sparse */
    uint64_t *set;          /* sparse open-addressing table, 0 = empty */
    uint32_t set_cap;       /* power of two */
    uint32_t set_n;
};

static int clamp_lgk(int lgk) {
    if (lgk < TSR_HLL_LGK_MIN) return TSR_HLL_LGK_MIN;
    if (lgk > TSR_HLL_LGK_MAX) return TSR_HLL_LGK_MAX;
    return lgk;
}

tsr_hll_t *tsr_hll_new(int lgk) {
    tsr_hll_t *h = tsr_calloc(1, sizeof(*h));
    h->lgk = clamp_lgk(lgk);
    h->p = h->lgk + 7;
    h->m = 1u << h->p;
    h->sparse_max = h->m / 16;
    h->set_cap = 16;
    h->set = tsr_calloc(h->set_cap, sizeof(uint64_t));
    return h;
}

void tsr_hll_free(tsr_hll_t *h) {
    if (!h) return;
    free(h->regs);
    free(h->set);
    free(h);
}

int tsr_hll_lgk(const tsr_hll_t *h) { return h->lgk; }
int tsr_hll_is_exact(const tsr_hll_t *h) { return h->regs == NULL; }

static inline void dense_add(tsr_hll_t *h, uint64_t x) {
    uint32_t idx = (uint32_t)(x >> (64 - h->p));
    uint64_t w = x << h->p;
    uint8_t rho = w ? (uint8_t)(__builtin_clzll(w) + 1) : (uint8_t)(64 - h->p + 1);
    if (rho > h->regs[idx]) h->regs[idx] = rho;
}

/* Inserts into the sparse table without growing; returns 1 when x was new. */
static inline int set_insert(uint64_t *set, uint32_t cap, uint64_t x) {
    uint32_t mask = cap - 1;
    /* The hash is already uniform; the low bits pick the slot (the high bits pick registers). */
    for (uint32_t i = (uint32_t)x & mask;; i = (i + 1) & mask) {
        if (set[i] == x) return 0;
        if (set[i] == 0) {
            set[i] = x;
            return 1;
        }
    }
}

static void to_dense(tsr_hll_t *h) {
    h->regs = tsr_calloc(h->m, 1);
    for (uint32_t i = 0; i < h->set_cap; i++)
        if (h->set[i]) dense_add(h, h->set[i]);
    free(h->set);
    h->set = NULL;
    h->set_cap = h->set_n = 0;
}

static void set_grow(tsr_hll_t *h) {
    uint32_t ncap = h->set_cap * 2;
    uint64_t *nset = tsr_calloc(ncap, sizeof(uint64_t));
    for (uint32_t i = 0; i < h->set_cap; i++)
        if (h->set[i]) set_insert(nset, ncap, h->set[i]);
    free(h->set);
    h->set = nset;
    h->set_cap = ncap;
}

static void sparse_add(tsr_hll_t *h, uint64_t x) {
    if (!set_insert(h->set, h->set_cap, x)) return;
    h->set_n++;
    if (h->set_n > h->sparse_max) {
        to_dense(h);
        return;
    }
    if (h->set_n * 2 > h->set_cap) set_grow(h);
}

void tsr_hll_add(tsr_hll_t *h, uint64_t hash) {
    if (hash == 0) hash = 1;    /* invariant 3 */
    if (h->regs)
        dense_add(h, hash);
    else
        sparse_add(h, hash);
}

int tsr_hll_merge(tsr_hll_t *dst, const tsr_hll_t *src) {
    if (dst->lgk != src->lgk) return TSR_EINVAL;
    if (src->regs) {
        if (!dst->regs) to_dense(dst);
        /* Locals, so the byte stores cannot alias dst->m and the loop vectorises. */
        uint8_t *a = dst->regs;
        const uint8_t *b = src->regs;
        uint32_t m = dst->m;
        for (uint32_t i = 0; i < m; i++) a[i] = b[i] > a[i] ? b[i] : a[i];
        return 0;
    }
    /* src is sparse: add its hashes one by one (they convert dst when the union grows past L). */
    for (uint32_t i = 0; i < src->set_cap; i++)
        if (src->set[i]) tsr_hll_add(dst, src->set[i]);
    return 0;
}

/* Ertl's sigma(x) = x + sum_{k>=1} x^(2^k) 2^(k-1), for the zero registers. */
static double ertl_sigma(double x) {
    if (x == 1.0) return INFINITY;
    double y = 1.0, z = x, zp;
    do {
        x *= x;
        zp = z;
        z += x * y;
        y += y;
    } while (z != zp);
    return z;
}

/* Ertl's tau(x) = (1/3)(1 - x - sum_{k>=1} (1 - x^(2^-k))^2 2^-k), for saturated registers. */
static double ertl_tau(double x) {
    if (x == 0.0 || x == 1.0) return 0.0;
    double y = 1.0, z = 1.0 - x, zp;
    do {
        x = sqrt(x);
        zp = z;
        y *= 0.5;
        z -= (1.0 - x) * (1.0 - x) * y;
    } while (z != zp);
    return z / 3.0;
}

/* Register histogram c[0..65]. Four interleaved tables break the store-to-load chain that a
 * single table suffers when neighbouring registers are equal (most are, early on). */
static void hll_histogram(const tsr_hll_t *h, uint32_t c[66]) {
    uint32_t c4[4][66] = {{0}};
    const uint8_t *rg = h->regs;
    uint32_t nm = h->m;
    for (uint32_t i = 0; i < nm; i += 4) {
        c4[0][rg[i]]++;
        c4[1][rg[i + 1]]++;
        c4[2][rg[i + 2]]++;
        c4[3][rg[i + 3]]++;
    }
    for (int v = 0; v < 66; v++) c[v] = c4[0][v] + c4[1][v] + c4[2][v] + c4[3][v];
}

double tsr_hll_estimate(const tsr_hll_t *h) {
    if (!h->regs) return (double)h->set_n;
    int q = 64 - h->p;
    uint32_t c[66];
    hll_histogram(h, c);
    double m = (double)h->m;
    double z = m * ertl_tau(1.0 - c[q + 1] / m);
    for (int k = q; k >= 1; k--) z = 0.5 * (z + c[k]);
    z += m * ertl_sigma(c[0] / m);
    return (m * m / (2.0 * log(2.0))) / z;
}

/* ---- Encoding.
 *   u8 lgk, u8 mode (0 sparse, 1 dense),
 *   sparse: uvarint n, then the n hashes ascending as uvarint gaps (first gap from 0; all >= 1),
 *   dense:  u8 base b, then m/2 bytes of 4-bit fields (register i in the low nibble of byte
 *           i/2 when i is even, the high nibble when odd): field = register - b when the
 *           register is in [b, b+14], else 15 ("exception"); then one u8 per exception, the
 *           register's value, in register order. The encoder picks the smallest base that
 *           covers the most registers, so its output is a function of the registers.
 *           Register values cluster within a few of log2(n/m), so exceptions are rare and the
 *           encoding is ~m/2 bytes (16 KiB at lgk 8) instead of 6m/8 (24 KiB). */

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

void tsr_hll_encode(const tsr_hll_t *h, tsr_buf_t *out) {
    tsr_buf_put_u8(out, (uint8_t)h->lgk);
    if (!h->regs) {
        tsr_buf_put_u8(out, 0);
        uint64_t *v = tsr_malloc((h->set_n ? h->set_n : 1) * sizeof(uint64_t));
        uint32_t n = 0;
        for (uint32_t i = 0; i < h->set_cap; i++)
            if (h->set[i]) v[n++] = h->set[i];
        qsort(v, n, sizeof(uint64_t), cmp_u64);
        tsr_buf_put_uvarint(out, n);
        uint64_t prev = 0;
        for (uint32_t i = 0; i < n; i++) {
            tsr_buf_put_uvarint(out, v[i] - prev);
            prev = v[i];
        }
        free(v);
        return;
    }
    tsr_buf_put_u8(out, 1);
    uint32_t c[66];
    hll_histogram(h, c);
    const uint8_t *rg = h->regs;
    uint32_t m = h->m;
    /* The window [b, b+14] covering the most registers; the first such b on ties. */
    int base = 0;
    uint32_t best = 0;
    for (int b = 0; b + 14 < 66; b++) {
        uint32_t cover = 0;
        for (int v = b; v <= b + 14; v++) cover += c[v];
        if (cover > best) {
            best = cover;
            base = b;
        }
    }
    tsr_buf_put_u8(out, (uint8_t)base);
    size_t nbytes = m / 2;
    tsr_buf_reserve(out, nbytes + (m - best));
    uint8_t *o = out->data + out->len;
    for (uint32_t i = 0; i < m; i += 2) {
        unsigned lo = (unsigned)rg[i] - (unsigned)base, hi = (unsigned)rg[i + 1] - (unsigned)base;
        /* unsigned wrap sends registers below the base above 14 too */
        o[i / 2] = (uint8_t)((lo > 14 ? 15 : lo) | (hi > 14 ? 15 : hi) << 4);
    }
    o += nbytes;
    if (best < m)
        for (uint32_t i = 0; i < m; i++)
            if ((unsigned)rg[i] - (unsigned)base > 14) *o++ = rg[i];
    out->len = (size_t)(o - out->data);
}

int tsr_hll_decode(tsr_reader_t *r, tsr_hll_t **out, tsr_error_t *err) {
    *out = NULL;
    uint8_t lgk, mode;
    if (tsr_get_u8(r, &lgk) || tsr_get_u8(r, &mode))
        return tsr_error_set(err, TSR_ECORRUPT, "hll sketch: truncated header");
    if (lgk < TSR_HLL_LGK_MIN || lgk > TSR_HLL_LGK_MAX)
        return tsr_error_set(err, TSR_ECORRUPT, "hll sketch: lgk %u outside [%d, %d]", lgk,
                             TSR_HLL_LGK_MIN, TSR_HLL_LGK_MAX);
    if (mode > 1) return tsr_error_set(err, TSR_ECORRUPT, "hll sketch: unknown mode %u", mode);
    tsr_hll_t *h = tsr_hll_new(lgk);
    if (mode == 0) {
        uint64_t n;
        if (tsr_get_uvarint(r, &n)) {
            tsr_hll_free(h);
            return tsr_error_set(err, TSR_ECORRUPT, "hll sketch: truncated sparse count");
        }
        /* Each gap takes at least one byte; the sparse set never exceeds L. */
        if (n > h->sparse_max || n > tsr_reader_left(r)) {
            uint32_t limit = h->sparse_max;
            tsr_hll_free(h);
            return tsr_error_set(err, TSR_ECORRUPT,
                                 "hll sketch: sparse count %llu exceeds limit %u or the %zu "
                                 "bytes left",
                                 (unsigned long long)n, limit, tsr_reader_left(r));
        }
        uint64_t prev = 0;
        for (uint64_t i = 0; i < n; i++) {
            uint64_t gap;
            if (tsr_get_uvarint(r, &gap)) {
                tsr_hll_free(h);
                return tsr_error_set(err, TSR_ECORRUPT, "hll sketch: truncated hash %llu of %llu",
                                     (unsigned long long)i, (unsigned long long)n);
            }
            /* Strictly ascending, no wrap: every hash distinct and non-zero. */
            if (gap == 0 || gap > UINT64_MAX - prev) {
                tsr_hll_free(h);
                return tsr_error_set(err, TSR_ECORRUPT,
                                     "hll sketch: hash %llu not strictly ascending",
                                     (unsigned long long)i);
            }
            prev += gap;
            sparse_add(h, prev);
        }
        *out = h;
        return 0;
    }
    uint8_t base;
    size_t nbytes = h->m / 2;
    if (tsr_get_u8(r, &base) || tsr_reader_left(r) < nbytes) {
        tsr_hll_free(h);
        return tsr_error_set(err, TSR_ECORRUPT, "hll sketch: %zu register bytes needed, %zu left",
                             nbytes + 1, tsr_reader_left(r));
    }
    uint8_t maxrho = (uint8_t)(64 - h->p + 1);
    if (base + 14 > 65) {
        tsr_hll_free(h);
        return tsr_error_set(err, TSR_ECORRUPT, "hll sketch: register base %u out of range",
                             base);
    }
    free(h->set);
    h->set = NULL;
    h->set_cap = 0;
    h->regs = tsr_malloc(h->m);
    uint8_t *rg = h->regs;
    const uint8_t *pb = r->p;
    uint32_t m = h->m, nexc = 0;
    for (uint32_t i = 0; i < m; i += 2) {
        rg[i] = (uint8_t)((pb[i / 2] & 15) + base);
        rg[i + 1] = (uint8_t)((pb[i / 2] >> 4) + base);
    }
    for (uint32_t j = 0; j < m / 2; j++) nexc += ((pb[j] & 15) == 15) + ((pb[j] >> 4) == 15);
    r->p += nbytes;
    if (tsr_reader_left(r) < nexc) {
        tsr_hll_free(h);
        return tsr_error_set(err, TSR_ECORRUPT, "hll sketch: %u exception registers, %zu bytes left",
                             nexc, tsr_reader_left(r));
    }
    for (uint32_t i = 0; nexc && i < m; i++) {
        if (rg[i] == base + 15) {
            nexc--;
            uint8_t v = *r->p++;
            /* an exception must lie outside the window, or the encoding is not canonical */
            if (v >= base && v <= base + 14) {
                tsr_hll_free(h);
                return tsr_error_set(err, TSR_ECORRUPT,
                                     "hll sketch: exception register %u holds %u inside the "
                                     "window [%u, %u]", i, v, base, base + 14);
            }
            rg[i] = v;
        }
    }
    uint8_t top = 0;
    for (uint32_t i = 0; i < m; i++) top = rg[i] > top ? rg[i] : top;
    /* Registers hold at most q + 1; a dense sketch saw more than L distinct hashes, so at
     * least one register is set. */
    if (top > maxrho || top == 0) {
        tsr_hll_free(h);
        return tsr_error_set(err, TSR_ECORRUPT,
                             "hll sketch: dense registers out of range (largest %u, limit %u)",
                             top, maxrho);
    }
    *out = h;
    return 0;
}
