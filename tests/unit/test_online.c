/*
 * test_online.c — the online path's core promise at library level (SPEC §6, issue 4
 * "Consistency"): upload day E from the warehouse (offline plans and extraction, batch.h) into
 * the tile store, stream day E+1's events into it in batches, then fetch at hundreds of times
 * in day E+1 — mid-tile, on hop edges, exactly at event timestamps — and compare every output
 * with the kernel over exactly the events the SPEC §4 window rule selects. Zero mismatches.
 */
#include "tsr_test.h"
#include "tsr_test_json.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "tsr/agg.h"
#include "tsr/batch.h"
#include "tsr/config.h"
#include "tsr/tile_store.h"
#include "tsr/time.h"
#include "tsr/window.h"

#define NKEYS 5
#define NDAYS 6
static const int64_t M5 = TSR_MS_PER_MINUTE * 5, DAY = TSR_MS_PER_DAY;
static const char *cats[] = {"a", "b", "c"};

typedef struct ev {
    int key;
    int64_t ts;
    int has_amount;
    double amount;
    int64_t n;
    int cat;            /* -1 null */
    uint64_t order;     /* row order */
} ev_t;

static ev_t evs[6000];
static int nev;
static char wh[256];
static int64_t day0;

static void mkdirs(const char *path) {
    char buf[512];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *p = buf + 1; *p; p++)
        if (*p == '/') {
            *p = 0;
            mkdir(buf, 0755);
            *p = '/';
        }
    mkdir(buf, 0755);
}

static int ev_cmp(const void *a, const void *b) {
    const ev_t *x = a, *y = b;
    if (x->ts != y->ts) return x->ts < y->ts ? -1 : 1;
    return x->order < y->order ? -1 : x->order > y->order;
}

static void write_warehouse(tsr_rng_t *r) {
    char dir[400], path[512];
    snprintf(dir, sizeof dir, "%s/t/events", wh);
    mkdirs(dir);
    snprintf(path, sizeof path, "%s/_schema.json", dir);
    FILE *f = fopen(path, "w");
    fputs("{\"key\": \"string\", \"amount\": \"double\", \"n\": \"long\", \"cat\": \"string\", \"ts\": \"long\"}", f);
    fclose(f);
    nev = 0;
    uint64_t order = 0;
    for (int d = 0; d < NDAYS; d++) {
        char ds[11];
        tsr_ds_format(day0 + d, ds);
        snprintf(dir, sizeof dir, "%s/t/events/ds=%s", wh, ds);
        mkdirs(dir);
        snprintf(path, sizeof path, "%s/part-0.csv", dir);
        f = fopen(path, "w");
        fputs("key,amount,n,cat,ts\n", f);
        int n = 400 + (int)tsr_rng_below(r, 200);
        int first = nev;
        for (int i = 0; i < n; i++) {
            ev_t *e = &evs[nev];
            e->key = (int)tsr_rng_below(r, NKEYS);
            int64_t t = tsr_rng_range(r, 0, DAY - 1);
            int pick = (int)tsr_rng_below(r, 8);
            if (pick == 0) t = tsr_floor_div(t, M5) * M5;
            else if (pick == 1) t = 0;
            e->ts = (day0 + d) * DAY + t;
            if (i && tsr_rng_below(r, 10) == 0) e->ts = evs[nev - 1].ts;
            e->has_amount = tsr_rng_below(r, 10) != 0;
            e->amount = (double)tsr_rng_range(r, -500, 20000) / 100.0;
            e->n = tsr_rng_range(r, -10, 99);
            e->cat = tsr_rng_below(r, 8) == 0 ? -1 : (int)tsr_rng_below(r, 3);
            nev++;
        }
        /* the file holds the day's events in time order, as producers often write them; row
         * order (and so seq) is the line order */
        qsort(evs + first, (size_t)n, sizeof(ev_t), ev_cmp);
        for (int i = first; i < nev; i++) {
            ev_t *e = &evs[i];
            e->order = order++;
            char amount[32] = "";
            if (e->has_amount) snprintf(amount, sizeof amount, "%.2f", e->amount);
            fprintf(f, "k%d,%s,%lld,%s,%lld\n", e->key, amount, (long long)e->n,
                    e->cat >= 0 ? cats[e->cat] : "", (long long)e->ts);
        }
        fclose(f);
    }
}

static const char *gb_json =
    "{\"metaData\": {\"name\": \"t.online.v1\", \"outputNamespace\": \"out\"}, "
    "\"sources\": [{\"events\": {\"table\": \"t.events\", \"topic\": \"events\", \"query\": "
    "{\"selects\": {\"key\": \"key\", \"amount\": \"amount\", \"n\": \"n\", \"cat\": \"cat\"}, "
    "\"timeColumn\": \"ts\"}}}], \"keyColumns\": [\"key\"], \"aggregations\": ["
    "{\"inputColumn\": \"amount\", \"operation\": \"COUNT\", \"windows\": [{\"length\": 7, \"timeUnit\": \"MINUTES\"}, "
    "{\"length\": 1, \"timeUnit\": \"HOURS\"}, {\"length\": 36, \"timeUnit\": \"HOURS\"}, {\"length\": 1, \"timeUnit\": \"DAYS\"}, "
    "{\"length\": 30, \"timeUnit\": \"DAYS\"}]}, "
    "{\"inputColumn\": \"amount\", \"operation\": \"COUNT\"}, "
    "{\"inputColumn\": \"amount\", \"operation\": \"SUM\", \"windows\": [{\"length\": 1, \"timeUnit\": \"DAYS\"}, "
    "{\"length\": 12, \"timeUnit\": \"DAYS\"}]}, "
    "{\"inputColumn\": \"cat\", \"operation\": \"LAST\", \"windows\": [{\"length\": 1, \"timeUnit\": \"HOURS\"}]}, "
    "{\"inputColumn\": \"cat\", \"operation\": \"LAST\"}, "
    "{\"inputColumn\": \"n\", \"operation\": \"LAST_K\", \"argMap\": {\"k\": \"3\"}, \"windows\": [{\"length\": 2, \"timeUnit\": \"DAYS\"}]}, "
    "{\"inputColumn\": \"amount\", \"operation\": \"SUM\", \"buckets\": [\"cat\"], \"windows\": [{\"length\": 1, \"timeUnit\": \"DAYS\"}]}, "
    "{\"inputColumn\": \"n\", \"operation\": \"UNIQUE_COUNT\", \"windows\": [{\"length\": 7, \"timeUnit\": \"DAYS\"}]}, "
    "{\"inputColumn\": \"n\", \"operation\": \"AVERAGE\", \"windows\": [{\"length\": 13, \"timeUnit\": \"MINUTES\"}]}"
    "], \"accuracy\": \"TEMPORAL\"}";

static tsr_value_t slot_value(const ev_t *e, const char *slot) {
    if (strcmp(slot, "amount") == 0) return e->has_amount ? tsr_value_double(e->amount) : tsr_value_null();
    if (strcmp(slot, "n") == 0) return tsr_value_long(e->n);
    if (strcmp(slot, "cat") == 0) return e->cat >= 0 ? tsr_value_string(cats[e->cat], 1) : tsr_value_null();
    ck_abort_msg("unknown slot %s", slot);
    return tsr_value_null();
}

static void key_bytes(int k, tsr_buf_t *b) {
    char s[8];
    int n = snprintf(s, sizeof s, "k%d", k);
    tsr_value_t v = tsr_value_string(s, (size_t)n);
    tsr_buf_clear(b);
    tsr_value_encode(&v, b); /* the engine's key encoding: the encoded key values */
}

typedef struct up_ctx {
    tsr_tile_upload_t *u;
    size_t nrec;
} up_ctx_t;

static int sink(void *ud, const void *key, size_t klen, tsr_tile_kind_t kind, int64_t start,
                const void *const *irs) {
    up_ctx_t *c = ud;
    c->nrec++;
    tsr_error_t err;
    return tsr_tile_upload_put(c->u, key, klen, kind, start, irs, &err);
}

START_TEST(test_upload_stream_fetch_equals_offline) {
    tsr_rng_t r = {.s = 8080 + (uint64_t)_i};
    snprintf(wh, sizeof wh, "/tmp/tsr_test_online_XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(wh));
    ck_assert_int_eq(tsr_ds_parse("2024-05-01", &day0), 0);
    write_warehouse(&r);
    int64_t E = day0 + NDAYS - 2, B = (E + 1) * DAY;

    tsr_config_options_t copt = {TSR_DIALECT_AUTO, wh};
    tsr_config_t *conf;
    tsr_diag_t diag;
    tsr_diag_init(&diag);
    int lrc = tsr_config_load_string(gb_json, strlen(gb_json), "t", &copt, &conf, &diag);
    ck_assert_msg(lrc == 0, "%s", diag.n ? diag.items[0].text : "?");
    tsr_diag_free(&diag);
    tsr_gb_online_t *plan;
    tsr_error_t err;
    ck_assert_msg(tsr_gb_online_build(conf->group_by, wh, E, &plan, &err) == 0, "%s", err.msg);
    const tsr_tile_gb_t *tiles = tsr_gb_online_tiles(plan);

    char dir[300];
    snprintf(dir, sizeof dir, "%s/store", wh);
    tsr_tile_store_t *store;
    ck_assert_int_eq(tsr_tile_store_open(dir, &store, &err), 0);
    ck_assert_msg(tsr_tile_store_register(store, tiles, &err) == 0, "%s", err.msg);

    /* upload day E */
    up_ctx_t up = {NULL, 0};
    ck_assert_int_eq(tsr_tile_upload_begin(store, tiles->name, B, &up.u, &err), 0);
    tsr_backfill_opts_t o;
    memset(&o, 0, sizeof o);
    o.parallelism = 2;
    ck_assert_msg(tsr_batch_compute(plan, B, &o, sink, &up, &err) == 0, "%s", err.msg);
    ck_assert_int_eq(tsr_tile_upload_commit(up.u, &err), 0);
    ck_assert_uint_gt(up.nrec, 0);

    /* stream day E+1 in row order, in batches, seq = row order */
    size_t nslots = tsr_gb_online_nslots(plan);
    tsr_value_t *in = tsr_malloc(64 * tiles->ncols * sizeof(tsr_value_t));
    tsr_value_t *bk = tsr_malloc(64 * tiles->ncols * sizeof(tsr_value_t));
    tsr_buf_t kb[64];
    for (int i = 0; i < 64; i++) tsr_buf_init(&kb[i]);
    tsr_tile_event_t batch[64];
    int nb = 0;
    uint64_t skipped = 0;
    for (int i = 0; i < nev; i++) {
        if (evs[i].ts < B) continue;
        key_bytes(evs[i].key, &kb[nb]);
        for (size_t c = 0; c < tiles->ncols; c++) {
            const tsr_tile_col_t *col = &tiles->cols[c];
            ck_assert((size_t)col->in_slot < nslots);
            in[nb * tiles->ncols + c] = slot_value(&evs[i], tsr_gb_online_slot(plan, (size_t)col->in_slot));
            bk[nb * tiles->ncols + c] = col->bucket_slot >= 0
                                            ? slot_value(&evs[i], tsr_gb_online_slot(plan, (size_t)col->bucket_slot))
                                            : tsr_value_null();
        }
        batch[nb] = (tsr_tile_event_t){kb[nb].data, kb[nb].len, evs[i].ts, evs[i].order,
                                       in + nb * tiles->ncols, bk + nb * tiles->ncols};
        if (++nb == 64) {
            ck_assert_int_eq(tsr_tile_store_apply(store, tiles->name, batch, 64, "events/0", i + 1, &skipped, &err), 0);
            nb = 0;
        }
    }
    if (nb) ck_assert_int_eq(tsr_tile_store_apply(store, tiles->name, batch, (size_t)nb, "events/0", nev, &skipped, &err), 0);
    ck_assert_uint_eq(skipped, 0);

    /* fetch at hundreds of times in day E+1 and compare with the offline rule */
    size_t nout = 0;
    for (size_t c = 0; c < tiles->ncols; c++) nout += tiles->cols[c].nwin;
    tsr_value_t *out = tsr_malloc(nout * sizeof(tsr_value_t));
    tsr_arena_t arena;
    tsr_arena_init(&arena, 0);
    void *ir = tsr_malloc(1024);
    tsr_buf_t key;
    tsr_buf_init(&key);
    int checked = 0;
    for (int n = 0; n < 300; n++) {
        int k = (int)tsr_rng_below(&r, NKEYS);
        int64_t q;
        int pick = (int)tsr_rng_below(&r, 3);
        if (pick == 0) q = evs[nev - 1 - (int)tsr_rng_below(&r, 300)].ts;         /* at events */
        else if (pick == 1) q = B + tsr_rng_range(&r, 0, 288) * M5;               /* hop edges */
        else q = B + tsr_rng_range(&r, 0, DAY);                                   /* mid-tile */
        if (q < B) q = B;
        key_bytes(k, &key);
        tsr_arena_reset(&arena);
        ck_assert_msg(tsr_tile_store_read(store, tiles->name, key.data, key.len, q, out, &arena, &err) == 0, "%s", err.msg);
        size_t oi = 0;
        for (size_t c = 0; c < tiles->ncols; c++) {
            const tsr_tile_col_t *col = &tiles->cols[c];
            ck_assert(tsr_agg_ir_size(col->agg) <= 1024);
            for (size_t w = 0; w < col->nwin; w++, oi++) {
                tsr_agg_init(col->agg, ir);
                for (int i = 0; i < nev; i++) {
                    if (evs[i].key != k || !tsr_window_contains(q, col->windows[w], evs[i].ts)) continue;
                    tsr_value_t v = slot_value(&evs[i], tsr_gb_online_slot(plan, (size_t)col->in_slot));
                    tsr_value_t b = col->bucket_slot >= 0 ? slot_value(&evs[i], tsr_gb_online_slot(plan, (size_t)col->bucket_slot)) : tsr_value_null();
                    tsr_agg_update(col->agg, ir, &v, col->bucket_slot >= 0 ? &b : NULL, evs[i].ts, evs[i].order);
                }
                tsr_value_t want = tsr_agg_finalize(col->agg, ir, &arena);
                tsr_agg_clear(col->agg, ir);
                if (!tsr_value_close(&out[oi], &want)) {
                    tsr_buf_t a, b;
                    tsr_buf_init(&a);
                    tsr_buf_init(&b);
                    tsr_value_to_json(&out[oi], &a);
                    tsr_value_to_json(&want, &b);
                    ck_abort_msg("k%d %s col %zu w=%lld q=B+%lld: online %s, offline %s", k,
                                 tsr_op_name(tsr_agg_op(col->agg)), c, (long long)col->windows[w],
                                 (long long)(q - B), tsr_buf_cstr(&a), tsr_buf_cstr(&b));
                }
                checked++;
            }
        }
    }
    ck_assert_int_gt(checked, 3000);
    free(ir);
    free(out);
    free(in);
    free(bk);
    for (int i = 0; i < 64; i++) tsr_buf_free(&kb[i]);
    tsr_buf_free(&key);
    tsr_arena_free(&arena);
    tsr_tile_store_close(store);
    tsr_gb_online_free(plan);
    tsr_config_free(conf);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", wh);
    ck_assert_int_eq(system(cmd), 0);
}
END_TEST

/* ---- Join: online fetch at each left row's ts == the backfill's row */

#include <jansson.h>

#include "tsr/backfill.h"
#include "tsr/online.h"

static tsr_tile_store_t *g_store;

static int read_store(void *ud, const char *gb, const void *key, size_t klen, int64_t q,
                      tsr_value_t *out, tsr_arena_t *arena, tsr_error_t *err) {
    return tsr_tile_store_read(ud, gb, key, klen, q, out, arena, err);
}


START_TEST(test_join_fetch_equals_backfill) {
    tsr_rng_t r = {.s = 9090 + (uint64_t)_i};
    snprintf(wh, sizeof wh, "/tmp/tsr_test_onlinej_XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(wh));
    ck_assert_int_eq(tsr_ds_parse("2024-05-01", &day0), 0);
    write_warehouse(&r);
    int64_t E = day0 + NDAYS - 2, B = (E + 1) * DAY;
    /* left rows in day E+1: keys k0..k5 (k5 has no events) and a null key */
    char dir[400], path[512], ds[11];
    tsr_ds_format(E + 1, ds);
    snprintf(dir, sizeof dir, "%s/t/left/ds=%s", wh, ds);
    mkdirs(dir);
    snprintf(path, sizeof path, "%s/t/left/_schema.json", wh);
    FILE *f = fopen(path, "w");
    fputs("{\"id\": \"long\", \"user\": \"string\", \"ts\": \"long\"}", f);
    fclose(f);
    snprintf(path, sizeof path, "%s/part-0.csv", dir);
    f = fopen(path, "w");
    fputs("id,user,ts\n", f);
    int nleft = 150;
    for (int i = 0; i < nleft; i++) {
        int64_t ts = i % 3 == 0 ? evs[nev - 1 - (int)tsr_rng_below(&r, 200)].ts
                                : B + tsr_rng_range(&r, 0, DAY - 1);
        if (ts < B) ts = B;
        int k = (int)tsr_rng_below(&r, NKEYS + 1);
        if (i % 17 == 0) fprintf(f, "%d,,%lld\n", i, (long long)ts);
        else fprintf(f, "%d,k%d,%lld\n", i, k, (long long)ts);
    }
    fclose(f);
    tsr_buf_t js;
    tsr_buf_init(&js);
    const char *snap_gb =
        "{\"metaData\": {\"name\": \"t.snap.v1\"}, \"sources\": [{\"events\": {\"table\": \"t.events\", "
        "\"query\": {\"selects\": {\"key\": \"key\", \"amount\": \"amount\"}, \"timeColumn\": \"ts\"}}}], "
        "\"keyColumns\": [\"key\"], \"accuracy\": \"SNAPSHOT\", \"aggregations\": ["
        "{\"inputColumn\": \"amount\", \"operation\": \"SUM\", \"windows\": [{\"length\": 1, \"timeUnit\": \"DAYS\"}]}, "
        "{\"inputColumn\": \"amount\", \"operation\": \"COUNT\"}], "
        "\"derivations\": [{\"name\": \"avg_1d\", \"expression\": \"amount_sum_1d / amount_count\"}, "
        "{\"name\": \"*\", \"expression\": \"*\"}]}";
    tsr_buf_printf(&js, "{\"metaData\": {\"name\": \"t.serve.v1\", \"outputNamespace\": \"out\"}, "
                        "\"left\": {\"events\": {\"table\": \"t.left\", \"query\": {\"selects\": "
                        "{\"id\": \"id\", \"user\": \"user\"}, \"timeColumn\": \"ts\"}}}, "
                        "\"joinParts\": [{\"prefix\": \"p\", \"keyMapping\": {\"user\": \"key\"}, "
                        "\"groupBy\": %s}, {\"keyMapping\": {\"user\": \"key\"}, \"groupBy\": %s}], "
                        "\"derivations\": [{\"name\": \"*\", \"expression\": \"*\"}, "
                        "{\"name\": \"half\", \"expression\": \"p_t_online_v1_amount_sum_1d / 2\"}]}",
                   gb_json, snap_gb);
    tsr_config_options_t copt = {TSR_DIALECT_AUTO, wh};
    tsr_config_t *conf;
    tsr_diag_t diag;
    tsr_diag_init(&diag);
    int lrc = tsr_config_load_string(tsr_buf_cstr(&js), js.len, "j", &copt, &conf, &diag);
    ck_assert_msg(lrc == 0, "%s", diag.n ? diag.items[0].text : "?");
    tsr_diag_free(&diag);

    /* the backfill of day E+1 */
    tsr_backfill_opts_t o;
    memset(&o, 0, sizeof o);
    o.warehouse = wh;
    o.start_day = E + 1;
    o.end_day = E + 1;
    o.format = TSR_FORMAT_JSONL;
    o.parallelism = 2;
    tsr_error_t err;
    ck_assert_msg(tsr_backfill_run(conf, &o, NULL, &err) == 0, "%s", err.msg);

    /* serving: upload day E into the store for every part, stream day E+1 */
    tsr_join_online_t *jo;
    ck_assert_msg(tsr_join_online_build(conf->join, wh, E, &jo, &err) == 0, "%s", err.msg);
    snprintf(dir, sizeof dir, "%s/store", wh);
    ck_assert_int_eq(tsr_tile_store_open(dir, &g_store, &err), 0);
    for (size_t pi = 0; pi < tsr_join_online_nparts(jo); pi++) {
        const tsr_tile_gb_t *tiles = tsr_join_online_part_tiles(jo, pi);
        ck_assert_ptr_nonnull(tiles);
        ck_assert_msg(tsr_tile_store_register(g_store, tiles, &err) == 0, "%s", err.msg);
        tsr_gb_online_t *plan;
        ck_assert_msg(tsr_gb_online_build(conf->join->parts[pi].group_by, wh, E, &plan, &err) == 0, "%s", err.msg);
        up_ctx_t up = {NULL, 0};
        ck_assert_int_eq(tsr_tile_upload_begin(g_store, tiles->name, B, &up.u, &err), 0);
        tsr_backfill_opts_t bo;
        memset(&bo, 0, sizeof bo);
        ck_assert_msg(tsr_batch_compute(plan, B, &bo, sink, &up, &err) == 0, "%s", err.msg);
        ck_assert_int_eq(tsr_tile_upload_commit(up.u, &err), 0);
        /* stream day E+1, one event at a time in row order */
        tsr_value_t in[32], bk[32];
        tsr_buf_t kb;
        tsr_buf_init(&kb);
        const tsr_tile_gb_t *pt = tsr_gb_online_tiles(plan);
        ck_assert_uint_eq(pt->ncols, tiles->ncols);
        for (int i = 0; i < nev; i++) {
            if (evs[i].ts < B) continue;
            key_bytes(evs[i].key, &kb);
            for (size_t c = 0; c < pt->ncols; c++) {
                in[c] = slot_value(&evs[i], tsr_gb_online_slot(plan, (size_t)pt->cols[c].in_slot));
                bk[c] = pt->cols[c].bucket_slot >= 0
                            ? slot_value(&evs[i], tsr_gb_online_slot(plan, (size_t)pt->cols[c].bucket_slot))
                            : tsr_value_null();
            }
            tsr_tile_event_t e = {kb.data, kb.len, evs[i].ts, evs[i].order, in, bk};
            ck_assert_int_eq(tsr_tile_store_apply(g_store, tiles->name, &e, 1, NULL, 0, NULL, &err), 0);
        }
        tsr_buf_free(&kb);
        tsr_gb_online_free(plan);
    }

    /* fetch every left row at its ts and compare with the backfill's row */
    snprintf(path, sizeof path, "%s/out/t_serve_v1/ds=%s/part-00000.jsonl", wh, ds);
    f = fopen(path, "r");
    ck_assert_ptr_nonnull(f);
    tsr_join_online_ctx_t *ctx = tsr_join_online_ctx_new(jo);
    size_t nout = tsr_join_online_noutputs(jo);
    tsr_value_t *out = tsr_malloc(nout * sizeof(tsr_value_t));
    const char *perr[8];
    tsr_arena_t arena;
    tsr_arena_init(&arena, 0);
    char line[65536];
    int rows = 0;
    while (fgets(line, sizeof line, f)) {
        json_t *row = json_loads(line, 0, NULL);
        ck_assert_ptr_nonnull(row);
        tsr_arena_reset(&arena);
        const char *names[2] = {"id", "user"};
        tsr_value_t keys[2] = {tsr_test_json_value(json_object_get(row, "id"), &arena),
                               tsr_test_json_value(json_object_get(row, "user"), &arena)};
        int64_t q = json_integer_value(json_object_get(row, "ts"));
        ck_assert_int_eq(tsr_join_online_fetch(ctx, names, keys, 2, q, read_store, g_store, out, perr, &arena), 0);
        for (size_t pi = 0; pi < tsr_join_online_nparts(jo); pi++) ck_assert_msg(perr[pi] == NULL, "%s", perr[pi]);
        for (size_t i = 0; i < nout; i++) {
            const char *name = tsr_join_online_output(jo, i);
            json_t *jv = json_object_get(row, name);
            ck_assert_msg(jv != NULL, "backfill has no column %s", name);
            tsr_value_t want = tsr_test_json_value(jv, &arena), got = out[i];
            if (got.kind == TSR_LONG && want.kind == TSR_DOUBLE) got = tsr_value_double((double)got.u.l);
            if (want.kind == TSR_LONG && got.kind == TSR_DOUBLE) want = tsr_value_double((double)want.u.l);
            if (!tsr_value_close(&got, &want)) {
                tsr_buf_t a, b;
                tsr_buf_init(&a);
                tsr_buf_init(&b);
                tsr_value_to_json(&got, &a);
                tsr_value_to_json(&want, &b);
                ck_abort_msg("left row %s: %s online %s, backfill %s", line, name, tsr_buf_cstr(&a), tsr_buf_cstr(&b));
            }
        }
        json_decref(row);
        rows++;
    }
    fclose(f);
    ck_assert_int_eq(rows, nleft);
    /* a missing key column fails that part only */
    tsr_value_t only_id = tsr_value_long(1);
    const char *idname[1] = {"id"};
    ck_assert_int_eq(tsr_join_online_fetch(ctx, idname, &only_id, 1, B, read_store, g_store, out, perr, &arena), 0);
    ck_assert_ptr_nonnull(perr[0]);
    ck_assert_msg(strstr(perr[0], "missing key column 'user'"), "%s", perr[0]);
    tsr_arena_free(&arena);
    free(out);
    tsr_join_online_ctx_free(ctx);
    tsr_tile_store_close(g_store);
    tsr_join_online_free(jo);
    tsr_config_free(conf);
    tsr_buf_free(&js);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", wh);
    ck_assert_int_eq(system(cmd), 0);
}
END_TEST

static Suite *online_suite(void) {
    Suite *s = suite_create("online");
    TCase *tc = tcase_create("consistency");
    tcase_set_timeout(tc, 180);
    tcase_add_loop_test(tc, test_upload_stream_fetch_equals_offline, 0, 2);
    tcase_add_loop_test(tc, test_join_fetch_equals_backfill, 0, 2);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return tsr_test_run(online_suite()); }
