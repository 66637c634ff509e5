/*
 * bench_tile_ingest.c — stream ingest into durable tiles (issue 4's ingest target: >= 500k
 * events/s on one core). One GroupBy with COUNT, SUM and AVERAGE over 1h, 1d and 30d windows
 * (as bench_tile_read), an upload at B, then events in batches as a Kafka poll would deliver
 * them: --batch events per tsr_tile_store_apply (one WriteBatch in the WAL each, with the
 * partition offset), keys drawn uniformly from --keys, timestamps advancing in time order with
 * a few seconds of jitter (a live topic), over --hours of event time.
 *
 * Baseline in the same run: a raw RocksDB WriteBatch per batch with one put per event (the
 * event's raw record, same key and value sizes, no aggregation, no merge operator), WAL on
 * and not synced, as the tile store writes. Prints events/s for both and the thread CPU time
 * per event of the caller (what "on one core" costs; RocksDB flushes and compactions run on
 * background threads).
 *
 *   bench_tile_ingest [--events N] [--batch N] [--keys N] [--hours N] [--by-key] [--no-baseline]
 * (--by-key: each batch ordered by key, as the old benchmark fed it)
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

#define NCOL 3

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}
static double proc_cpu_s(void) { /* every thread: RocksDB's flushes and compactions too */
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}
static double cpu_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static uint64_t rnd(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

typedef struct gen_ev {
    char key[16];
    int klen;
    int64_t ts;
    tsr_value_t in[NCOL];
} gen_ev_t;

static int cmp_key(const void *a, const void *b) {
    const gen_ev_t *x = a, *y = b;
    int r = strcmp(x->key, y->key);
    return r ? r : (x->ts > y->ts) - (x->ts < y->ts);
}

static int rm_rf(const char *dir) {
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return system(cmd);
}

int main(int argc, char **argv) {
    long nevents = 2000000;
    int batch = 2000, nkeys = 100000, hours = 2, by_key = 0, no_baseline = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--by-key") == 0) by_key = 1;
        else if (strcmp(argv[i], "--no-baseline") == 0) no_baseline = 1; /* for profiling */
        else if (i + 1 < argc && strcmp(argv[i], "--events") == 0) nevents = atol(argv[++i]);
        else if (i + 1 < argc && strcmp(argv[i], "--batch") == 0) batch = atoi(argv[++i]);
        else if (i + 1 < argc && strcmp(argv[i], "--keys") == 0) nkeys = atoi(argv[++i]);
        else if (i + 1 < argc && strcmp(argv[i], "--hours") == 0) hours = atoi(argv[++i]);
    }
    if (batch < 1 || nkeys < 1 || nevents < batch || hours < 1) return 2;
    int64_t B = 19800 * TSR_MS_PER_DAY;
    /* the events, generated up front (not timed) */
    gen_ev_t *evs = malloc((size_t)nevents * sizeof(gen_ev_t));
    uint64_t seed = 11;
    int64_t span = (int64_t)hours * TSR_MS_PER_HOUR;
    for (long i = 0; i < nevents; i++) {
        gen_ev_t *e = &evs[i];
        e->klen = snprintf(e->key, sizeof e->key, "user%07d", (int)(rnd(&seed) % (uint64_t)nkeys));
        int64_t jitter = (int64_t)(rnd(&seed) % 5000);
        e->ts = B + (int64_t)((double)i / (double)nevents * (double)span) + jitter;
        e->in[0] = tsr_value_double((double)(rnd(&seed) % 1000));
        e->in[1] = tsr_value_double((double)(rnd(&seed) % 1000) / 4.0);
        e->in[2] = tsr_value_double((double)(rnd(&seed) % 1000) / 8.0);
    }
    if (by_key)
        for (long i = 0; i < nevents; i += batch)
            qsort(evs + i, (size_t)(i + batch <= nevents ? batch : nevents - i), sizeof(gen_ev_t), cmp_key);

    /* ---- the tile store */
    char dir[] = "/tmp/tsr_bench_ingest_XXXXXX";
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
        cols[c] = (tsr_tile_col_t){aggs[c], 3, wins, c, -1};
    }
    tsr_tile_gb_t gb = {"bench.ingest.v1", NCOL, cols};
    tsr_tile_upload_t *u;
    if (tsr_tile_store_register(s, &gb, &err) || tsr_tile_upload_begin(s, gb.name, B, &u, &err) ||
        tsr_tile_upload_commit(u, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    tsr_tile_event_t *ev = malloc((size_t)batch * sizeof(tsr_tile_event_t));
    double t0 = now_s(), c0 = cpu_s(), p0 = proc_cpu_s();
    for (long i = 0; i < nevents; i += batch) {
        size_t n = (size_t)(i + batch <= nevents ? batch : nevents - i);
        for (size_t j = 0; j < n; j++) {
            const gen_ev_t *g = &evs[i + (long)j];
            ev[j] = (tsr_tile_event_t){g->key, (size_t)g->klen, g->ts, (uint64_t)(i + (long)j), g->in, NULL};
        }
        if (tsr_tile_store_apply(s, gb.name, ev, n, "topic/0", i + (long)n, NULL, &err)) {
            fprintf(stderr, "%s\n", err.msg);
            return 1;
        }
    }
    double tiles_s = now_s() - t0, tiles_cpu = cpu_s() - c0;
    /* the close writes what is still folded in memory: counted in the total */
    tsr_tile_store_close(s);
    double tiles_all_s = now_s() - t0, tiles_proc = proc_cpu_s() - p0;
    for (int c = 0; c < NCOL; c++) tsr_agg_free(aggs[c]);
    if (rm_rf(dir)) return 1;

    /* ---- baseline: one raw put per event, no aggregation */
    double raw_s = 0, raw_cpu = 0, raw_proc = 0;
    if (no_baseline) goto out;
    char bdir[] = "/tmp/tsr_bench_ingest_XXXXXX";
    if (!mkdtemp(bdir)) return 1;
    rocksdb_options_t *o = rocksdb_options_create();
    rocksdb_options_set_create_if_missing(o, 1);
    rocksdb_options_set_compression(o, rocksdb_lz4_compression);
    char *e = NULL;
    rocksdb_t *db = rocksdb_open(o, bdir, &e);
    if (e) {
        fprintf(stderr, "%s\n", e);
        return 1;
    }
    rocksdb_writeoptions_t *wo = rocksdb_writeoptions_create();
    rocksdb_writebatch_t *wb = rocksdb_writebatch_create();
    tsr_buf_t k, v;
    tsr_buf_init(&k);
    tsr_buf_init(&v);
    t0 = now_s();
    c0 = cpu_s();
    p0 = proc_cpu_s();
    for (long i = 0; i < nevents; i += batch) {
        size_t n = (size_t)(i + batch <= nevents ? batch : nevents - i);
        rocksdb_writebatch_clear(wb);
        for (size_t j = 0; j < n; j++) {
            const gen_ev_t *g = &evs[i + (long)j];
            /* 'r' gb \0 K ts seq -> inputs: the old layout's raw event record */
            tsr_buf_clear(&k);
            tsr_buf_putc(&k, 'r');
            tsr_buf_append(&k, "bench.ingest.v1", 16);
            tsr_buf_putc(&k, 0);
            tsr_buf_putc(&k, g->klen);
            tsr_buf_append(&k, g->key, (size_t)g->klen);
            uint64_t ts = (uint64_t)g->ts ^ (UINT64_C(1) << 63), seq = (uint64_t)(i + (long)j);
            for (int b = 0; b < 8; b++) tsr_buf_putc(&k, (int)(ts >> (56 - 8 * b)) & 0xff);
            for (int b = 0; b < 8; b++) tsr_buf_putc(&k, (int)(seq >> (56 - 8 * b)) & 0xff);
            tsr_buf_clear(&v);
            for (int c = 0; c < NCOL; c++) tsr_value_encode(&g->in[c], &v);
            rocksdb_writebatch_put(wb, (const char *)k.data, k.len, (const char *)v.data, v.len);
        }
        rocksdb_writebatch_put(wb, "offset", 6, "12345678", 8);
        rocksdb_write(db, wo, wb, &e);
        if (e) {
            fprintf(stderr, "%s\n", e);
            return 1;
        }
    }
    raw_s = now_s() - t0;
    raw_cpu = cpu_s() - c0;
    raw_proc = proc_cpu_s() - p0;
    rocksdb_writebatch_destroy(wb);
    rocksdb_writeoptions_destroy(wo);
    rocksdb_close(db);
    rocksdb_options_destroy(o);
    tsr_buf_free(&k);
    tsr_buf_free(&v);
    if (rm_rf(bdir)) return 1;
out:
    printf("bench_tile_ingest: %ld events, batches of %d (%s), %d keys, %d h of event time; "
           "COUNT/SUM/AVERAGE x 1h/1d/30d\n",
           nevents, batch, by_key ? "ordered by key" : "keys mixed", nkeys, hours);
    printf("  %-44s %8.0f events/s  caller cpu %5.2f us/event  (incl. close: %8.0f events/s, "
           "all threads %5.2f us/event)\n", "tile store apply (durable tiles, WAL)",
           (double)nevents / tiles_s, tiles_cpu / (double)nevents * 1e6,
           (double)nevents / tiles_all_s, tiles_proc / (double)nevents * 1e6);
    if (!no_baseline)
        printf("  %-44s %8.0f events/s  caller cpu %5.2f us/event  (all threads %5.2f us/event)\n",
               "baseline: raw WriteBatch, one put per event", (double)nevents / raw_s,
               raw_cpu / (double)nevents * 1e6, raw_proc / (double)nevents * 1e6);
    free(ev);
    free(evs);
    return 0;
}
