/*
 * bench_tile_read.c — the tile store's read cost for a FetchJoin-shaped request (issue 4's
 * fetch target, measured below the RPC layer): 10 GroupBys × 9 features (COUNT, SUM, AVERAGE ×
 * 1h, 1d, 30d), an upload at B plus one day of streamed events per key, then reads of all 10
 * GroupBys for one key at the end of the streamed day. Baseline in the same run: 10 RocksDB
 * point gets of the same store's keys (the floor any read plan pays). Prints p50/p99/p999.
 *
 * A second baseline reads, per GroupBy, the key's batch record (one real ~3 KB record per
 * GroupBy, random keys: the floor of any plan that reads at least one record per GroupBy).
 * Besides wall-clock percentiles it prints the mean thread CPU time per fetch, which a busy
 * shared machine disturbs much less (use it for A/B comparisons).
 *
 * Batched reads (tsr_tile_store_read_many), each against the same reads made one by one in
 * the same run, alternating by iteration: a 1-entity fetch (10 reads) and a --batch-entity
 * fetch (--batch × 10 reads, default 100 × 10 = 1000, issue 4's 100-entity FetchJoin), entity
 * by entity as the fetch layer asks, q at the end of the streamed day.
 *
 *   bench_tile_read [--keys N] [--events-per-key N] [--iters N] [--flush] [--compact]
 *                   [--threads 2] [--batch N] [--batch-iters N] [--only-batched] [--sparse]
 *                   [--cache-mb N] [--row-cache-mb N]
 * (--flush: write the streamed day's write-back tables (one table file per GroupBy, as after
 *  bench_fetch's setup) before reading, instead of reading them from memory — or from wherever
 *  the 10 s flusher got to, which depends on timing;
 *  --compact: fold merge operands into tiles before reading, the steady state;
 *  --threads 2: a second thread reads GroupBys 5..9 while the caller reads 0..4, as a fetch
 *  layer could; the hand-off is a semaphore each way;
 *  --only-batched: skip the single-read phases and baselines before the batched comparison;
 *  --sparse: each key's upload has 7 of the 30 day tiles, 3 of the 25 hour tiles and 1 of the
 *  13 five-minute tiles, like bench_fetch's warehouse (25 events per key over 8 days): ~400-byte
 *  batch records instead of ~3 KB; e.g. --sparse --keys 10000 --events-per-key 3 --compact;
 *  --cache-mb, --row-cache-mb: the store's block cache and the row cache beside it,
 *  tsr_tile_store_opts_t; default 256 MiB and half of it)
 */
#include <pthread.h>
#include <rocksdb/c.h>
#include <semaphore.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "tsr/agg.h"
#include "tsr/tile_store.h"
#include "tsr/window.h"

#define NGB 10
#define NCOL 3

static double now_us(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e6 + (double)t.tv_nsec / 1e3;
}

static double cpu_us(void) {
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return (double)t.tv_sec * 1e6 + (double)t.tv_nsec / 1e3;
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static uint64_t rnd(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static void report(const char *what, double *lat, int n, double cpu) {
    if (n <= 0) return;
    qsort(lat, (size_t)n, sizeof(double), cmp_d);
    printf("  %-52s p10 %6.1f  p50 %6.1f  p99 %7.1f  p999 %7.1f us  cpu/fetch %6.1f us\n", what,
           lat[n / 10], lat[n / 2], lat[(int)(n * 0.99)], lat[(int)(n * 0.999)], cpu / n);
}

/* --threads 2: the helper reads GroupBys [5, 10) of the current request. */
typedef struct helper {
    pthread_t th;
    sem_t go, done;
    tsr_tile_store_t *s;
    char (*names)[32];
    const char *key;
    size_t klen;
    int64_t q;
    int stop, rc;
    double cpu;
} helper_t;

static void *helper_main(void *p) {
    helper_t *h = p;
    tsr_arena_t arena;
    tsr_arena_init(&arena, 0);
    tsr_value_t out[16];
    tsr_error_t err;
    for (;;) {
        while (sem_wait(&h->go) != 0) {}
        if (h->stop) break;
        double c0 = cpu_us();
        for (int g = NGB / 2; g < NGB; g++) {
            tsr_arena_reset(&arena);
            if (tsr_tile_store_read(h->s, h->names[g], h->key, h->klen, h->q, out, &arena, &err)) h->rc = 1;
        }
        h->cpu += cpu_us() - c0;
        sem_post(&h->done);
    }
    tsr_arena_free(&arena);
    return NULL;
}

/* One fetch: 10 GroupBys for one key, optionally half of them on the helper. */
static int fetch(tsr_tile_store_t *s, char (*names)[32], const char *key, size_t kl, int64_t q,
                 helper_t *h, tsr_arena_t *arena) {
    tsr_value_t out[16];
    tsr_error_t err;
    int upto = NGB;
    if (h) {
        h->key = key;
        h->klen = kl;
        h->q = q;
        sem_post(&h->go);
        upto = NGB / 2;
    }
    for (int g = 0; g < upto; g++) {
        tsr_arena_reset(arena);
        if (tsr_tile_store_read(s, names[g], key, kl, q, out, arena, &err)) {
            fprintf(stderr, "%s\n", err.msg);
            return 1;
        }
    }
    if (h) {
        while (sem_wait(&h->done) != 0) {}
        if (h->rc) return 1;
    }
    return 0;
}

/* Single reads vs read_many of the same reads, alternating by iteration: nent random entities
 * × NGB GroupBys per request. */
static int bench_batched(tsr_tile_store_t *s, char (*names)[32], int nkeys, int nent, int iters, int64_t q,
                         uint64_t *seed) {
    size_t n = (size_t)nent * NGB;
    tsr_tile_store_req_t *reqs = malloc(n * sizeof(*reqs));
    tsr_value_t *outs = malloc(n * 16 * sizeof(tsr_value_t));
    char (*keys)[16] = malloc((size_t)nent * 16);
    double *lat1 = malloc((size_t)iters * sizeof(double)), *latm = malloc((size_t)iters * sizeof(double));
    double cpu1 = 0, cpum = 0;
    tsr_arena_t arena;
    tsr_arena_init(&arena, 0);
    tsr_error_t err;
    int rc = 0;
    for (int it = -2; it < iters && rc == 0; it++) { /* two warm-up rounds */
        for (int e = 0; e < nent; e++) {
            int kl = snprintf(keys[e], 16, "key%d", (int)(rnd(seed) % (uint64_t)nkeys));
            for (int g = 0; g < NGB; g++)
                reqs[(size_t)e * NGB + (size_t)g] =
                    (tsr_tile_store_req_t){names[g], keys[e], (size_t)kl, q, outs + ((size_t)e * NGB + (size_t)g) * 16, 0, NULL};
        }
        for (int pass = 0; pass < 2; pass++) {
            int many = (pass ^ it) & 1; /* alternate which goes first */
            tsr_arena_reset(&arena);
            double a = now_us(), c0 = cpu_us();
            if (many) {
                if (tsr_tile_store_read_many(s, reqs, n, &arena, &err)) rc = 1;
                for (size_t i = 0; i < n; i++)
                    if (reqs[i].status) {
                        fprintf(stderr, "%s\n", reqs[i].error);
                        rc = 1;
                    }
            } else {
                for (size_t i = 0; i < n && rc == 0; i++)
                    if (tsr_tile_store_read(s, reqs[i].gb, reqs[i].key, reqs[i].klen, q, reqs[i].out, &arena, &err)) {
                        fprintf(stderr, "%s\n", err.msg);
                        rc = 1;
                    }
            }
            double dt = now_us() - a, dc = cpu_us() - c0;
            if (it < 0) continue;
            if (many) {
                latm[it] = dt;
                cpum += dc;
            } else {
                lat1[it] = dt;
                cpu1 += dc;
            }
        }
    }
    if (rc == 0) {
        char what[96];
        snprintf(what, sizeof what, "%d entit%s x %d GroupBys: %zu single reads", nent, nent == 1 ? "y" : "ies",
                 NGB, n);
        report(what, lat1, iters, cpu1);
        snprintf(what, sizeof what, "%d entit%s x %d GroupBys: one read_many of %zu", nent,
                 nent == 1 ? "y" : "ies", NGB, n);
        report(what, latm, iters, cpum);
    }
    tsr_arena_free(&arena);
    free(reqs);
    free(outs);
    free(keys);
    free(lat1);
    free(latm);
    return rc;
}

int main(int argc, char **argv) {
    int nkeys = 500, per_key = 100, iters = 3000, threads = 1, batch = 100, batch_iters = 100, only_batched = 0;
    int sparse = 0;
    tsr_tile_store_opts_t so = {0, TSR_TILE_ROW_CACHE_AUTO, 0, 0};
    for (int i = 1; i < argc; i++) only_batched |= strcmp(argv[i], "--only-batched") == 0;
    for (int i = 1; i < argc; i++) sparse |= strcmp(argv[i], "--sparse") == 0;
    for (int i = 1; i + 1 < argc; i++) {
        if (strcmp(argv[i], "--batch") == 0) batch = atoi(argv[i + 1]);
        if (strcmp(argv[i], "--batch-iters") == 0) batch_iters = atoi(argv[i + 1]);
        if (strcmp(argv[i], "--threads") == 0) threads = atoi(argv[i + 1]);
        if (strcmp(argv[i], "--keys") == 0) nkeys = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--events-per-key") == 0) per_key = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--iters") == 0) iters = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--cache-mb") == 0) so.cache_bytes = (size_t)atoi(argv[i + 1]) << 20;
        else if (strcmp(argv[i], "--row-cache-mb") == 0) so.row_cache_bytes = (size_t)atoi(argv[i + 1]) << 20;
        else if (strcmp(argv[i], "--batch-cache-mb") == 0)
            so.batch_cache_bytes = atoi(argv[i + 1]) ? (size_t)atoi(argv[i + 1]) << 20 : TSR_TILE_BATCH_CACHE_NONE;
        else if (strcmp(argv[i], "--stream-cache-mb") == 0)
            so.stream_cache_bytes = atoi(argv[i + 1]) ? (size_t)atoi(argv[i + 1]) << 20 : TSR_TILE_STREAM_CACHE_NONE;
    }
    char dir[] = "/tmp/tsr_bench_tiles_XXXXXX";
    if (!mkdtemp(dir)) return 1;
    tsr_tile_store_t *s;
    tsr_error_t err;
    if (tsr_tile_store_open_opts(dir, &so, &s, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    static const int64_t wins[] = {TSR_MS_PER_HOUR, TSR_MS_PER_DAY, 30 * TSR_MS_PER_DAY};
    tsr_op_t ops[NCOL] = {TSR_OP_COUNT, TSR_OP_SUM, TSR_OP_AVERAGE};
    tsr_agg_t *aggs[NCOL];
    tsr_tile_col_t cols[NCOL];
    for (int c = 0; c < NCOL; c++) {
        tsr_agg_spec_t spec = {ops[c], TSR_DOUBLE, 0, 0, 0, NULL};
        if (tsr_agg_new(&spec, &aggs[c], &err)) return 1;
        cols[c] = (tsr_tile_col_t){aggs[c], 3, wins, 0, -1};
    }
    char names[NGB][32];
    for (int g = 0; g < NGB; g++) {
        snprintf(names[g], sizeof names[g], "bench.gb%d.v1", g);
        tsr_tile_gb_t gb = {names[g], NCOL, cols};
        if (tsr_tile_store_register(s, &gb, &err)) return 1;
    }
    int64_t B = 19800 * TSR_MS_PER_DAY;
    uint64_t seed = 7;
    double t0 = now_us();
    /* upload: lifetime + tail tiles (30 day tiles, 25 hour tiles, 13 five-minute tiles) */
    void *irs[NCOL];
    for (int c = 0; c < NCOL; c++) irs[c] = malloc(tsr_agg_ir_size(aggs[c]));
    for (int g = 0; g < NGB; g++) {
        tsr_tile_upload_t *u;
        if (tsr_tile_upload_begin(s, names[g], B, &u, &err)) return 1;
        for (int k = 0; k < nkeys; k++) {
            char key[16];
            int kl = snprintf(key, sizeof key, "key%d", k);
            const struct { tsr_tile_kind_t kind; int64_t hop; int n; } specs[] = {
                {TSR_TILE_TAIL_1D, TSR_MS_PER_DAY, 30}, {TSR_TILE_TAIL_1H, TSR_MS_PER_HOUR, 25},
                {TSR_TILE_TAIL_5M, 5 * TSR_MS_PER_MINUTE, 13}};
            static const int keep[3] = {7, 3, 1}; /* --sparse: tiles kept per spec */
            for (size_t sp = 0; sp < 3; sp++)
                for (int t = 1; t <= specs[sp].n; t++) {
                    if (sparse && rnd(&seed) % (uint64_t)specs[sp].n >= (uint64_t)keep[sp]) continue;
                    for (int c = 0; c < NCOL; c++) {
                        tsr_agg_init(aggs[c], irs[c]);
                        tsr_value_t v = tsr_value_double((double)(rnd(&seed) % 1000));
                        tsr_agg_update(aggs[c], irs[c], &v, NULL, B - t * specs[sp].hop, 0);
                    }
                    tsr_tile_upload_put(u, key, (size_t)kl, specs[sp].kind, B - t * specs[sp].hop,
                                        (const void *const *)irs, &err);
                    for (int c = 0; c < NCOL; c++) tsr_agg_clear(aggs[c], irs[c]);
                }
        }
        if (tsr_tile_upload_commit(u, &err)) return 1;
    }
    /* one streamed day, in batches of 256 events (one atomic write each) */
    double ts0 = now_us();
    tsr_tile_event_t ev[256];
    tsr_value_t in[256][NCOL];
    char keys[256][16];
    for (int g = 0; g < NGB; g++) {
        int n = 0;
        for (int k = 0; k < nkeys; k++)
            for (int e = 0; e < per_key; e++) {
                int kl = snprintf(keys[n], 16, "key%d", k);
                for (int c = 0; c < NCOL; c++) in[n][c] = tsr_value_double((double)(rnd(&seed) % 1000));
                int64_t ts = B + (int64_t)(rnd(&seed) % (uint64_t)(TSR_MS_PER_DAY - TSR_MS_PER_MINUTE));
                ev[n] = (tsr_tile_event_t){keys[n], (size_t)kl, ts, (uint64_t)e, in[n], NULL};
                if (++n == 256) {
                    tsr_tile_store_apply(s, names[g], ev, (size_t)n, "p0", 0, NULL, &err);
                    n = 0;
                }
            }
        if (n) tsr_tile_store_apply(s, names[g], ev, (size_t)n, "p0", 0, NULL, &err);
    }
    double stream_s = (now_us() - ts0) / 1e6;
    double load_s = (now_us() - t0) / 1e6;
    int compact = 0, flush = 0;
    for (int i = 1; i < argc; i++) compact |= strcmp(argv[i], "--compact") == 0;
    for (int i = 1; i < argc; i++) flush |= strcmp(argv[i], "--flush") == 0;
    if (flush && tsr_tile_store_flush(s, &err)) return 1;
    if (compact) tsr_tile_store_compact(s);
    printf("bench_tile_read: %d GroupBys x 9 features, %d keys, %d streamed events per key and "
           "GroupBy (loaded in %.1f s), %d iterations\n",
           NGB, nkeys, per_key, load_s, iters);
    double nstream = (double)NGB * nkeys * per_key;
    printf("ingest: %.0f events in %.2f s = %.0f events/s into durable tiles (batches of 256)\n",
           nstream, stream_s, nstream / stream_s);

    double *lat = malloc((size_t)iters * sizeof(double));
    tsr_arena_t arena;
    tsr_arena_init(&arena, 0);
    helper_t hp = {0}, *h = NULL;
    if (threads == 2) {
        h = &hp;
        h->s = s;
        h->names = names;
        sem_init(&h->go, 0, 0);
        sem_init(&h->done, 0, 0);
        pthread_create(&h->th, NULL, helper_main, h);
    }
    const struct { const char *what; int64_t q; } phases[] = {
        {"tile reads: 10 GroupBys, 1 key, q at day end", B + TSR_MS_PER_DAY - 1},
        {"tile reads: 10 GroupBys, 1 key, q mid-day, mid-tile", B + TSR_MS_PER_DAY / 2 + 7 * TSR_MS_PER_MINUTE + 123},
    };
    printf("results (%d reading thread%s)\n", threads == 2 ? 2 : 1, threads == 2 ? "s" : "");
    /* warm-up: every key once, so that blocks are in the block cache (the steady state) */
    for (int k = 0; k < nkeys; k++) {
        char key[16];
        int kl = snprintf(key, sizeof key, "key%d", k);
        for (size_t ph = 0; ph < 2; ph++)
            if (fetch(s, names, key, (size_t)kl, phases[ph].q, h, &arena)) return 1;
    }
    for (size_t ph = 0; ph < 2 && !only_batched; ph++) {
        double cpu = 0;
        if (h) h->cpu = 0;
        for (int it = 0; it < iters; it++) {
            char key[16];
            int kl = snprintf(key, sizeof key, "key%d", (int)(rnd(&seed) % (uint64_t)nkeys));
            double a = now_us(), c0 = cpu_us();
            if (fetch(s, names, key, (size_t)kl, phases[ph].q, h, &arena)) return 1;
            lat[it] = now_us() - a;
            cpu += cpu_us() - c0;
        }
        report(phases[ph].what, lat, iters, cpu + (h ? h->cpu : 0));
    }
    if (bench_batched(s, names, nkeys, 1, iters, phases[0].q, &seed) ||
        bench_batched(s, names, nkeys, batch, batch_iters, phases[0].q, &seed))
        return 1;
    size_t ub, ur;
    tsr_tile_store_cache_usage(s, &ub, &ur);
    tsr_tile_cache_stats_t bst, sst;
    tsr_tile_store_batch_cache_stats(s, &bst);
    tsr_tile_store_stream_cache_stats(s, &sst);
    printf("caches: block %.1f MiB, row %.1f MiB, batch records %.1f MiB (%zu records, hits %llu, misses %llu), "
           "stream records %.1f MiB (%zu, hits %llu, misses %llu) in use\n",
           (double)ub / (1 << 20), (double)ur / (1 << 20), (double)bst.bytes / (1 << 20), bst.entries,
           (unsigned long long)bst.hits, (unsigned long long)bst.misses, (double)sst.bytes / (1 << 20), sst.entries,
           (unsigned long long)sst.hits, (unsigned long long)sst.misses);
    if (h) {
        h->stop = 1;
        sem_post(&h->go);
        pthread_join(h->th, NULL);
        sem_destroy(&h->go);
        sem_destroy(&h->done);
    }
    tsr_tile_store_close(s);

    /* baseline: 10 point gets on the same database */
    rocksdb_options_t *o = rocksdb_options_create();
    rocksdb_cache_t *cache = rocksdb_cache_create_lru((size_t)256 << 20); /* as the store's */
    rocksdb_block_based_table_options_t *tbo = rocksdb_block_based_options_create();
    rocksdb_block_based_options_set_block_cache(tbo, cache);
    rocksdb_options_set_block_based_table_factory(o, tbo);
    char *e = NULL;
    const char *cfn[5] = {"default", "meta", "batch", "stream", "log"}; /* tile_store.h */
    const rocksdb_options_t *cfo[5] = {o, o, o, o, o};
    rocksdb_column_family_handle_t *cfh[5] = {NULL};
    rocksdb_t *db = rocksdb_open_for_read_only_column_families(o, dir, 5, cfn, cfo, cfh, 0, &e);
    if (e) {
        fprintf(stderr, "%s\n", e);
        return 1;
    }
    rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
    for (int f = 0; f < 5; f++) { /* warm-up, as for the tile reads: one scan loads every block */
        rocksdb_iterator_t *it = rocksdb_create_iterator_cf(db, ro, cfh[f]);
        for (rocksdb_iter_seek_to_first(it); rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
            size_t n;
            rocksdb_iter_value(it, &n);
        }
        rocksdb_iter_destroy(it);
    }
    double cpu = 0;
    if (only_batched) iters = 0;
    for (int it = 0; it < iters; it++) {
        double a = now_us(), c0 = cpu_us();
        for (int g = 0; g < NGB; g++) {
            char k[64];
            int kl = snprintf(k, sizeof k, "m%s", names[g]);
            size_t vl;
            k[kl] = '\0';
            k[kl + 1] = 'B';
            char *v = rocksdb_get_cf(db, ro, cfh[1], k, (size_t)kl + 1 + 1, &vl, &e);
            rocksdb_free(v);
        }
        lat[it] = now_us() - a;
        cpu += cpu_us() - c0;
    }
    report("baseline: 10 RocksDB point gets, same store", lat, iters, cpu);
    /* 10 gets of real records: the key's batch record 'b' gb \0 B K per GroupBy */
    cpu = 0;
    long missing = 0;
    for (int it = 0; it < iters; it++) {
        char key[16];
        int kl = snprintf(key, sizeof key, "key%d", (int)(rnd(&seed) % (uint64_t)nkeys));
        double a = now_us(), c0 = cpu_us();
        for (int g = 0; g < NGB; g++) {
            char k[96];
            size_t n = (size_t)snprintf(k, sizeof k, "b%s", names[g]) + 1;
            uint64_t bb = (uint64_t)B ^ (UINT64_C(1) << 63);
            for (int i = 0; i < 8; i++) k[n++] = (char)(bb >> (56 - 8 * i));
            k[n++] = (char)(kl >> 8);
            k[n++] = (char)(kl & 0xff);
            memcpy(k + n, key, (size_t)kl);
            n += (size_t)kl;
            size_t vl;
            char *v = rocksdb_get_cf(db, ro, cfh[2], k, n, &vl, &e);
            if (!v) missing++; /* --sparse: a key without events before B has none */
            rocksdb_free(v);
        }
        lat[it] = now_us() - a;
        cpu += cpu_us() - c0;
    }
    report("baseline: 10 gets of the key's batch records", lat, iters, cpu);
    if (missing) printf("  (%ld of %ld of those gets found no record)\n", missing, (long)iters * NGB);
    rocksdb_readoptions_destroy(ro);
    for (int f = 0; f < 5; f++) rocksdb_column_family_handle_destroy(cfh[f]);
    rocksdb_close(db);
    rocksdb_options_destroy(o);
    rocksdb_block_based_options_destroy(tbo);
    rocksdb_cache_destroy(cache);
    free(lat);
    tsr_arena_free(&arena);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) return 1;
    return 0;
}
