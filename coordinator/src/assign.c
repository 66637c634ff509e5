/*
 * assign.c — bounded rendezvous assignment with stickiness (assign.h has the design).
 */
#include "tsr/assign.h"

#include <stdlib.h>
#include <string.h>

#include "tsr/mem.h"

/* FNV-1a over the three fields (separated by a 0 byte), then the splitmix64 finaliser so that
 * scores of neighbouring partitions are unrelated. */
uint64_t tsr_assign_score(const char *worker, const char *gb, int32_t partition) {
    uint64_t h = 1469598103934665603ULL;
    for (const unsigned char *p = (const unsigned char *)worker; *p; p++) h = (h ^ *p) * 1099511628211ULL;
    h = (h ^ 0) * 1099511628211ULL;
    for (const unsigned char *p = (const unsigned char *)gb; *p; p++) h = (h ^ *p) * 1099511628211ULL;
    h = (h ^ 0) * 1099511628211ULL;
    uint32_t v = (uint32_t)partition;
    for (int i = 0; i < 4; i++) h = (h ^ ((v >> (8 * i)) & 0xff)) * 1099511628211ULL;
    h += 0x9e3779b97f4a7c15ULL;
    h = (h ^ (h >> 30)) * 0xbf58476d1ce4e5b9ULL;
    h = (h ^ (h >> 27)) * 0x94d049bb133111ebULL;
    return h ^ (h >> 31);
}

/* what partition p of gb is scored by */
static const char *class_of(const tsr_assign_gb_t *gb) {
    return gb->colocate ? gb->colocate : gb->name;
}

typedef struct bound {
    size_t *load;
    size_t floor_, rem, nceil;      /* nceil: workers already at floor_ + 1 */
} bound_t;

static int can_take(const bound_t *b, size_t w) {
    if (b->load[w] < b->floor_) return 1;
    return b->load[w] == b->floor_ && b->nceil < b->rem;
}

static void take(bound_t *b, size_t w) {
    if (b->load[w] == b->floor_) b->nceil++;
    b->load[w]++;
}

typedef struct keep {
    size_t rank;                    /* live workers that score higher than the owner */
    uint64_t score;
    size_t g;
    int32_t p;
    int w;
} keep_t;

/* ascending rank, then descending score; ties (practically never) by position */
static int cmp_keep(const void *a, const void *b) {
    const keep_t *x = a, *y = b;
    if (x->rank != y->rank) return x->rank < y->rank ? -1 : 1;
    if (x->score != y->score) return x->score > y->score ? -1 : 1;
    if (x->g != y->g) return x->g < y->g ? -1 : 1;
    return x->p < y->p ? -1 : x->p > y->p;
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int find_worker(const char *const *workers, size_t nw, const char *id) {
    if (!id) return -1;
    const char *const *p = bsearch(&id, workers, nw, sizeof *workers, cmp_str);
    return p ? (int)(p - workers) : -1;
}

void tsr_assign(const char *const *workers, size_t nw, tsr_assign_gb_t *gbs, size_t ngb,
                size_t *moved) {
    size_t total = 0;
    for (size_t g = 0; g < ngb; g++) {
        for (int32_t p = 0; p < gbs[g].num_partitions; p++) gbs[g].owners[p] = -1;
        total += (size_t)(gbs[g].num_partitions > 0 ? gbs[g].num_partitions : 0);
    }
    if (moved) *moved = 0;
    if (nw == 0 || total == 0) return;
    bound_t b;
    b.load = tsr_calloc(nw, sizeof *b.load);
    b.floor_ = total / nw;
    b.rem = total % nw;
    b.nceil = 0;
    /* pass 1: previous owners keep what the bound allows — first the partitions they own
     * "naturally" (no live worker scores higher), then by how many outrank them, so that
     * what a worker gives up is what others have the better claim to (e.g. partitions it
     * adopted from a worker that has come back) */
    keep_t *kv = tsr_malloc((total ? total : 1) * sizeof *kv);
    size_t nk = 0;
    for (size_t g = 0; g < ngb; g++) {
        if (!gbs[g].prev) continue;
        for (int32_t p = 0; p < gbs[g].num_partitions; p++) {
            int w = find_worker(workers, nw, gbs[g].prev[p]);
            if (w < 0) continue;
            const char *cls = class_of(&gbs[g]);
            kv[nk].score = tsr_assign_score(workers[w], cls, p);
            kv[nk].rank = 0;
            for (size_t o = 0; o < nw; o++)
                if ((int)o != w && tsr_assign_score(workers[o], cls, p) > kv[nk].score) kv[nk].rank++;
            kv[nk].g = g;
            kv[nk].p = p;
            kv[nk].w = w;
            nk++;
        }
    }
    qsort(kv, nk, sizeof *kv, cmp_keep);
    for (size_t i = 0; i < nk; i++)
        if (can_take(&b, (size_t)kv[i].w)) {
            take(&b, (size_t)kv[i].w);
            gbs[kv[i].g].owners[kv[i].p] = kv[i].w;
        }
    free(kv);
    /* pass 2: the rest by rendezvous among workers under the bound, partition-major so that
     * partition p of co-located GroupBys is placed together (the bound fills up in the same
     * order for all of them) */
    int32_t maxp = 0;
    for (size_t g = 0; g < ngb; g++)
        if (gbs[g].num_partitions > maxp) maxp = gbs[g].num_partitions;
    for (int32_t p = 0; p < maxp; p++) {
        for (size_t g = 0; g < ngb; g++) {
            if (p >= gbs[g].num_partitions || gbs[g].owners[p] >= 0) continue;
            int best = -1;
            uint64_t best_score = 0;
            for (size_t w = 0; w < nw; w++) {
                if (!can_take(&b, w)) continue;
                uint64_t s = tsr_assign_score(workers[w], class_of(&gbs[g]), p);
                if (best < 0 || s > best_score) {
                    best = (int)w;
                    best_score = s;
                }
            }
            /* the bounds sum to total, so some worker is always under its bound */
            take(&b, (size_t)best);
            gbs[g].owners[p] = best;
            if (moved && gbs[g].prev && gbs[g].prev[p]) (*moved)++;
        }
    }
    free(b.load);
}
