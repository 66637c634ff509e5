/*
 * bench_tile_read.c — the tile store's read cost for a FetchJoin-shaped request (issue 4's
 * fetch target, measured below the RPC layer): 10 GroupBys × 9 features (COUNT, SUM, AVERAGE ×
 * 1h, 1d, 30d), an upload at B plus one day of streamed events per key, then reads of all 10
 * GroupBys for one key at the end of the streamed day. Baseline in the same run: 10 RocksDB
 * point gets of the same store's keys (the floor any read plan pays). Prints p50/p99/p999.
 *
 *   bench_tile_read [--keys N] [--events-per-key N] [--iters N] [--compact]
 * (--compact: fold merge operands into tiles before reading, the steady state)
 */
#include <rocksdb/c.h>
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

static void report(const char *what, double *lat, int n) {
    qsort(lat, (size_t)n, sizeof(double), cmp_d);
    printf("  %-44s p50 %8.1f us   p99 %8.1f us   p999 %8.1f us\n", what, lat[n / 2],
           lat[(int)(n * 0.99)], lat[(int)(n * 0.999)]);
}

int main(int argc, char **argv) {
    int nkeys = 500, per_key = 100, iters = 3000;
    for (int i = 1; i + 1 < argc; i++) {
        if (strcmp(argv[i], "--keys") == 0) nkeys = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--events-per-key") == 0) per_key = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--iters") == 0) iters = atoi(argv[i + 1]);
    }
    char dir[] = "/tmp/tsr_bench_tiles_XXXXXX";
    if (!mkdtemp(dir)) return 1;
    tsr_tile_store_t *s;
    tsr_error_t err;
    if (tsr_tile_store_open(dir, &s, &err)) {
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
            for (size_t sp = 0; sp < 3; sp++)
                for (int t = 1; t <= specs[sp].n; t++) {
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
    int compact = 0;
    for (int i = 1; i < argc; i++) compact |= strcmp(argv[i], "--compact") == 0;
    if (compact) tsr_tile_store_compact(s);
    printf("bench_tile_read: %d GroupBys x 9 features, %d keys, %d streamed events per key and "
           "GroupBy (loaded in %.1f s), %d iterations\n",
           NGB, nkeys, per_key, load_s, iters);
    double nstream = (double)NGB * nkeys * per_key;
    printf("ingest: %.0f events in %.2f s = %.0f events/s into durable tiles (batches of 256)\n",
           nstream, stream_s, nstream / stream_s);

    double *lat = malloc((size_t)iters * sizeof(double));
    tsr_value_t out[16];
    tsr_arena_t arena;
    tsr_arena_init(&arena, 0);
    int64_t q = B + TSR_MS_PER_DAY - 1;
    for (int it = 0; it < iters; it++) {
        char key[16];
        int kl = snprintf(key, sizeof key, "key%d", (int)(rnd(&seed) % (uint64_t)nkeys));
        double a = now_us();
        for (int g = 0; g < NGB; g++) {
            tsr_arena_reset(&arena);
            if (tsr_tile_store_read(s, names[g], key, (size_t)kl, q, out, &arena, &err)) {
                fprintf(stderr, "%s\n", err.msg);
                return 1;
            }
        }
        lat[it] = now_us() - a;
    }
    printf("results\n");
    report("tile reads: 10 GroupBys, 1 key, q at day end", lat, iters);
    q = B + TSR_MS_PER_DAY / 2 + 7 * TSR_MS_PER_MINUTE + 123;
    for (int it = 0; it < iters; it++) {
        char key[16];
        int kl = snprintf(key, sizeof key, "key%d", (int)(rnd(&seed) % (uint64_t)nkeys));
        double a = now_us();
        for (int g = 0; g < NGB; g++) {
            tsr_arena_reset(&arena);
            tsr_tile_store_read(s, names[g], key, (size_t)kl, q, out, &arena, &err);
        }
        lat[it] = now_us() - a;
    }
    report("tile reads: 10 GroupBys, 1 key, q mid-day, mid-tile", lat, iters);
    tsr_tile_store_close(s);

    /* baseline: 10 point gets on the same database */
    rocksdb_options_t *o = rocksdb_options_create();
    char *e = NULL;
    rocksdb_t *db = rocksdb_open_for_read_only(o, dir, 0, &e);
    if (e) {
        fprintf(stderr, "%s\n", e);
        return 1;
    }
    rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
    for (int it = 0; it < iters; it++) {
        double a = now_us();
        for (int g = 0; g < NGB; g++) {
            char k[64];
            int kl = snprintf(k, sizeof k, "m%s", names[g]);
            size_t vl;
            k[kl] = '\0';
            char *v = rocksdb_get(db, ro, k, (size_t)kl + 1 + 1, &vl, &e);
            rocksdb_free(v);
        }
        lat[it] = now_us() - a;
    }
    report("baseline: 10 RocksDB point gets, same store", lat, iters);
    rocksdb_readoptions_destroy(ro);
    rocksdb_close(db);
    rocksdb_options_destroy(o);
    free(lat);
    tsr_arena_free(&arena);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) return 1;
    return 0;
}
