/*
 * test_worker.c — the cluster worker (worker/worker.h) and what it is built from:
 *   - the part-file codec (partfile.h): a round trip of a real batch computation's records,
 *     and corrupt, truncated and foreign files refused with a message naming the file;
 *   - ingest of a partition subset (ingest.h partitioned mode) against librdkafka's mock
 *     broker: only the owned Kafka partitions are consumed, events whose key belongs to another
 *     partition are counted `misrouted` and skipped;
 *   - reconcile epoch fencing: an assignment of an older epoch (or revision) is ignored and
 *     counted, lost partitions leave reads at once;
 *   - end to end against an in-process fake coordinator (a tsr_rpc server implementing
 *     CoordinatorService with canned Assignments), listed after a fake follower that answers
 *     "not the leader; leader is X": register, upload shards into part files and ReportShard,
 *     load of the committed upload's part files for the owned partitions, ReadPartition
 *     values equal to a brute-force sum, READ_NOT_OWNER elsewhere, KeepAlive reports.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cluster.pb-c.h"
#include "tsr/batch.h"
#include "tsr/config.h"
#include "tsr/ingest.h"
#include "tsr/kafka.h"
#include "tsr/partfile.h"
#include "tsr/partition.h"
#include "tsr/pbvalue.h"
#include "tsr/rpc.h"
#include "tsr/tile_store.h"
#include "tsr/time.h"
#include "tsr/worker.h"
#include "tsr_test.h"

#define DAY 86400000LL
#define NUSERS 8
#define NEV 200

static char tmp[256];
static char wh[400];

static const char *gb_json =
    "{\"metaData\": {\"name\": \"t.stream.v1\"}, "
    "\"sources\": [{\"events\": {\"table\": \"t.ev\", \"topic\": \"kafka://ev/serde=json\", "
    "\"query\": {\"selects\": {\"user\": \"user\", \"v\": \"v * 2\"}, \"wheres\": [\"v >= 0\"], "
    "\"timeColumn\": \"ts\"}}}], \"keyColumns\": [\"user\"], \"aggregations\": ["
    "{\"inputColumn\": \"v\", \"operation\": \"SUM\", \"windows\": [{\"length\": 1, \"timeUnit\": \"DAYS\"}]},"
    "{\"inputColumn\": \"v\", \"operation\": \"COUNT\"}], \"accuracy\": \"TEMPORAL\"}";

static int64_t day0, B;
static int64_t sum[NUSERS], cnt[NUSERS];

static void sleep_ms(int ms) {
    struct timespec t = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&t, NULL);
}

static void write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    fclose(f);
}

static void user_name(int k, char *buf) { sprintf(buf, "u%d", k); }

/* t.ev with NEV events on 2024-01-01 (user u<i % 8>, v = i); expected sums of 2v. */
static void setup_warehouse(void) {
    snprintf(tmp, sizeof tmp, "/tmp/tsr_worker_XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(tmp));
    char p[512];
    snprintf(wh, sizeof wh, "%s/wh", tmp);
    mkdir(wh, 0755);
    snprintf(p, sizeof p, "%s/t", wh);
    mkdir(p, 0755);
    snprintf(p, sizeof p, "%s/t/ev", wh);
    mkdir(p, 0755);
    snprintf(p, sizeof p, "%s/t/ev/_schema.json", wh);
    write_file(p, "{\"user\": \"string\", \"v\": \"long\", \"ts\": \"long\"}");
    snprintf(p, sizeof p, "%s/t/ev/ds=2024-01-01", wh);
    mkdir(p, 0755);
    ck_assert_int_eq(tsr_ds_parse("2024-01-01", &day0), 0);
    B = (day0 + 1) * DAY;
    tsr_buf_t csv;
    tsr_buf_init(&csv);
    tsr_buf_puts(&csv, "user,v,ts\n");
    memset(sum, 0, sizeof sum);
    memset(cnt, 0, sizeof cnt);
    for (int i = 0; i < NEV; i++) {
        int k = i % NUSERS;
        tsr_buf_printf(&csv, "u%d,%d,%lld\n", k, i, (long long)(day0 * DAY + 12 * 3600000LL + i * 1000));
        sum[k] += 2 * i;
        cnt[k]++;
    }
    snprintf(p, sizeof p, "%s/t/ev/ds=2024-01-01/part-0.csv", wh);
    write_file(p, tsr_buf_cstr(&csv));
    tsr_buf_free(&csv);
}

static void cleanup(void) {
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
    if (system(cmd) != 0) fprintf(stderr, "cleanup failed\n");
}

static tsr_config_t *load_gb(void) {
    tsr_config_options_t co = {0};
    co.warehouse = wh;
    tsr_diag_t d;
    tsr_diag_init(&d);
    tsr_config_t *conf = NULL;
    ck_assert_int_eq(tsr_config_load_string(gb_json, strlen(gb_json), "t", &co, &conf, &d), 0);
    tsr_diag_free(&d);
    return conf;
}

static void encode_user(int k, tsr_buf_t *key) {
    char u[16];
    user_name(k, u);
    tsr_buf_clear(key);
    tsr_value_t kv = tsr_value_string(u, strlen(u));
    tsr_value_encode(&kv, key);
}

/* ------------------------------------------------------------------------------------------
 * part files */

typedef struct capture {
    tsr_partfile_writer_t *w;
    const tsr_tile_gb_t *tiles;
    tsr_buf_t enc;                  /* every record's key, kind, start and IR encodings */
    uint64_t records;
    tsr_error_t *err;
} capture_t;

static int capture_put(void *ud, const void *key, size_t klen, tsr_tile_kind_t kind, int64_t start,
                       const void *const *irs) {
    capture_t *c = ud;
    tsr_buf_put_bytes(&c->enc, key, klen);
    tsr_buf_put_u8(&c->enc, (uint8_t)kind);
    tsr_buf_put_svarint(&c->enc, start);
    for (size_t i = 0; i < c->tiles->ncols; i++) {
        tsr_buf_t one;
        tsr_buf_init(&one);
        tsr_agg_encode(c->tiles->cols[i].agg, irs[i], &one);
        tsr_buf_put_bytes(&c->enc, one.data, one.len);
        tsr_buf_free(&one);
    }
    c->records++;
    return tsr_partfile_put_tile(c->w, c->tiles, key, klen, kind, start, irs, c->err);
}

/* Reads a whole part file; returns the error code of the first failure (0 when clean). */
static int read_all(const char *path, tsr_buf_t *enc, uint64_t *records, tsr_error_t *err) {
    tsr_partfile_reader_t *r;
    int rc = tsr_partfile_open(path, &r, err);
    if (rc) return rc;
    tsr_partfile_rec_t rec;
    uint32_t ncols = tsr_partfile_header(r)->ncols;
    *records = 0;
    while ((rc = tsr_partfile_next(r, &rec, err)) == 1) {
        if (enc) {
            tsr_buf_put_bytes(enc, rec.key, rec.klen);
            tsr_buf_put_u8(enc, (uint8_t)rec.kind);
            tsr_buf_put_svarint(enc, rec.start);
            for (uint32_t i = 0; i < ncols; i++) tsr_buf_put_bytes(enc, rec.irs[i], rec.ir_lens[i]);
        }
        (*records)++;
    }
    tsr_partfile_close(r);
    return rc;
}

static void copy_file(const char *from, const char *to, long cut, long flip) {
    FILE *f = fopen(from, "rb");
    ck_assert_ptr_nonnull(f);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)n);
    ck_assert_int_eq((long)fread(b, 1, (size_t)n, f), n);
    fclose(f);
    if (flip >= 0 && flip < n) b[flip] ^= 0x40;
    FILE *g = fopen(to, "wb");
    ck_assert_ptr_nonnull(g);
    fwrite(b, 1, (size_t)(n - cut), g);
    fclose(g);
    free(b);
}

START_TEST(test_partfile_round_trip) {
    setup_warehouse();
    tsr_error_t err;
    tsr_error_clear(&err);
    tsr_config_t *conf = load_gb();
    tsr_gb_online_t *plan;
    ck_assert_msg(tsr_gb_online_build(conf->group_by, wh, day0, &plan, &err) == 0, "%s", err.msg);
    char path[512];
    snprintf(path, sizeof path, "%s/part-3.tsu", tmp);
    capture_t c;
    memset(&c, 0, sizeof c);
    c.tiles = tsr_gb_online_tiles(plan);
    c.err = &err;
    tsr_buf_init(&c.enc);
    tsr_partfile_header_t h = {"t.stream.v1", 3, 8, B, TSR_PARTFILE_TILES, (uint32_t)c.tiles->ncols};
    ck_assert_msg(tsr_partfile_create(path, &h, &c.w, &err) == 0, "%s", err.msg);
    /* not visible under its name until finished */
    ck_assert_int_ne(access(path, F_OK), 0);
    tsr_backfill_opts_t bo = {0};
    bo.warehouse = wh;
    ck_assert_msg(tsr_batch_compute(plan, B, &bo, capture_put, &c, &err) == 0, "%s", err.msg);
    ck_assert_uint_gt(c.records, NUSERS - 1);
    ck_assert_msg(tsr_partfile_finish(c.w, &err) == 0, "%s", err.msg);
    ck_assert_int_eq(access(path, F_OK), 0);

    /* header and every record back, byte for byte */
    tsr_partfile_reader_t *r;
    ck_assert_msg(tsr_partfile_open(path, &r, &err) == 0, "%s", err.msg);
    const tsr_partfile_header_t *rh = tsr_partfile_header(r);
    ck_assert_str_eq(rh->group_by, "t.stream.v1");
    ck_assert_int_eq(rh->partition, 3);
    ck_assert_int_eq(rh->nparts, 8);
    ck_assert_int_eq(rh->batch_end, B);
    ck_assert_int_eq(rh->kind, TSR_PARTFILE_TILES);
    ck_assert_uint_eq(rh->ncols, c.tiles->ncols);
    tsr_partfile_close(r);
    tsr_buf_t back;
    tsr_buf_init(&back);
    uint64_t nrec = 0;
    ck_assert_msg(read_all(path, &back, &nrec, &err) == 0, "%s", err.msg);
    ck_assert_uint_eq(nrec, c.records);
    ck_assert_uint_eq(back.len, c.enc.len);
    ck_assert_int_eq(memcmp(back.data, c.enc.data, back.len), 0);

    /* entity records */
    char epath[512];
    snprintf(epath, sizeof epath, "%s/part-0.tsu", tmp);
    tsr_partfile_header_t eh = {"t.entity.v1", 0, 2, B, TSR_PARTFILE_ENTITY, 0};
    tsr_partfile_writer_t *ew;
    ck_assert_int_eq(tsr_partfile_create(epath, &eh, &ew, &err), 0);
    ck_assert_int_eq(tsr_partfile_put_entity(ew, "k1", 2, "vals", 4, &err), 0);
    ck_assert_int_eq(tsr_partfile_put_entity(ew, "", 0, "", 0, &err), 0);
    ck_assert_int_eq(tsr_partfile_finish(ew, &err), 0);
    ck_assert_int_eq(tsr_partfile_open(epath, &r, &err), 0);
    tsr_partfile_rec_t rec;
    ck_assert_int_eq(tsr_partfile_next(r, &rec, &err), 1);
    ck_assert_uint_eq(rec.klen, 2);
    ck_assert_int_eq(memcmp(rec.key, "k1", 2), 0);
    ck_assert_uint_eq(rec.vlen, 4);
    ck_assert_int_eq(memcmp(rec.vals, "vals", 4), 0);
    ck_assert_int_eq(tsr_partfile_next(r, &rec, &err), 1);
    ck_assert_uint_eq(rec.klen, 0);
    ck_assert_int_eq(tsr_partfile_next(r, &rec, &err), 0);
    ck_assert_int_eq(tsr_partfile_next(r, &rec, &err), 0);
    tsr_partfile_close(r);

    /* an aborted writer leaves nothing */
    char apath[512];
    snprintf(apath, sizeof apath, "%s/part-9.tsu", tmp);
    ck_assert_int_eq(tsr_partfile_create(apath, &eh, &ew, &err), 0);
    tsr_partfile_abort(ew);
    char atmp[520];
    snprintf(atmp, sizeof atmp, "%s.tmp", apath);
    ck_assert_int_ne(access(apath, F_OK), 0);
    ck_assert_int_ne(access(atmp, F_OK), 0);

    tsr_buf_free(&back);
    tsr_buf_free(&c.enc);
    tsr_gb_online_free(plan);
    tsr_config_free(conf);
    cleanup();
}
END_TEST

START_TEST(test_partfile_refuses_damage) {
    setup_warehouse();
    tsr_error_t err;
    tsr_error_clear(&err);
    char path[512], bad[512];
    snprintf(path, sizeof path, "%s/part-1.tsu", tmp);
    snprintf(bad, sizeof bad, "%s/bad-1.tsu", tmp);
    tsr_partfile_header_t eh = {"t.entity.v1", 1, 2, B, TSR_PARTFILE_ENTITY, 0};
    tsr_partfile_writer_t *w;
    ck_assert_int_eq(tsr_partfile_create(path, &eh, &w, &err), 0);
    char key[16], val[64];
    for (int i = 0; i < 50; i++) {
        snprintf(key, sizeof key, "key%d", i);
        snprintf(val, sizeof val, "value of key %d", i);
        ck_assert_int_eq(tsr_partfile_put_entity(w, key, strlen(key), val, strlen(val), &err), 0);
    }
    ck_assert_int_eq(tsr_partfile_finish(w, &err), 0);
    struct stat sb;
    ck_assert_int_eq(stat(path, &sb), 0);
    long size = (long)sb.st_size;
    uint64_t nrec;
    ck_assert_int_eq(read_all(path, NULL, &nrec, &err), 0);
    ck_assert_uint_eq(nrec, 50);

    /* every truncation is refused, naming the file */
    for (long cut = 1; cut < size; cut += (cut < 40 ? 1 : 37)) {
        copy_file(path, bad, cut, -1);
        tsr_error_clear(&err);
        int rc = read_all(bad, NULL, &nrec, &err);
        if (rc != TSR_ECORRUPT) ck_abort_msg("cut %ld: rc %d (%s)", cut, rc, err.msg);
        if (!strstr(err.msg, bad)) ck_abort_msg("cut %ld: message does not name the file: %s", cut, err.msg);
    }
    /* every flipped byte is refused (magic, lengths, payloads, checksums) */
    for (long at = 0; at < size; at += 7) {
        copy_file(path, bad, 0, at);
        tsr_error_clear(&err);
        int rc = read_all(bad, NULL, &nrec, &err);
        if (rc >= 0) ck_abort_msg("flip at %ld: accepted", at);
        if (!strstr(err.msg, bad)) ck_abort_msg("flip at %ld: message does not name the file: %s", at, err.msg);
    }
    /* bytes after the trailer */
    copy_file(path, bad, 0, -1);
    FILE *f = fopen(bad, "ab");
    fputs("x", f);
    fclose(f);
    ck_assert_int_eq(read_all(bad, NULL, &nrec, &err), TSR_ECORRUPT);
    ck_assert_ptr_nonnull(strstr(err.msg, "after the trailer"));
    /* not a part file; a missing file */
    write_file(bad, "{\"hello\": 1}\n");
    ck_assert_int_eq(read_all(bad, NULL, &nrec, &err), TSR_ECORRUPT);
    ck_assert_ptr_nonnull(strstr(err.msg, "not a Tessera part file"));
    snprintf(bad, sizeof bad, "%s/none.tsu", tmp);
    ck_assert_int_eq(read_all(bad, NULL, &nrec, &err), TSR_ENOTFOUND);
    ck_assert_ptr_nonnull(strstr(err.msg, bad));
    cleanup();
}
END_TEST

/* ------------------------------------------------------------------------------------------
 * ingest of a partition subset */

START_TEST(test_ingest_partition_subset) {
    setup_warehouse();
    tsr_error_t err;
    tsr_error_clear(&err);
    const char *topics[] = {"ev"};
    tsr_kafka_mock_opts_t mo = {4, topics, 1};
    tsr_kafka_mock_t *m;
    ck_assert_msg(tsr_kafka_mock_start(&mo, &m, &err) == 0, "%s", err.msg);
    const char *bs = tsr_kafka_mock_bootstrap(m);
    tsr_config_t *conf = load_gb();
    tsr_gb_online_t *plan;
    ck_assert_msg(tsr_gb_online_build(conf->group_by, wh, day0, &plan, &err) == 0, "%s", err.msg);
    char dir[400];
    snprintf(dir, sizeof dir, "%s/tiles", tmp);
    tsr_tile_store_t *store;
    ck_assert_msg(tsr_tile_store_open(dir, &store, &err) == 0, "%s", err.msg);
    ck_assert_int_eq(tsr_tile_store_register(store, tsr_gb_online_tiles(plan), &err), 0);

    tsr_kafka_producer_t *p;
    ck_assert_msg(tsr_kafka_producer_open(bs, &p, &err) == 0, "%s", err.msg);
    int part_of[NUSERS];
    int64_t s2[NUSERS] = {0}, c2[NUSERS] = {0};
    uint64_t in_owned = 0, misrouted = 0;
    char msg[256], u[16];
    int64_t t0 = B + 3600000;
    for (int k = 0; k < NUSERS; k++) {
        user_name(k, u);
        part_of[k] = tsr_partition_of_text(u, strlen(u), 4);
    }
    for (int i = 0; i < 400; i++) {
        int k = i % NUSERS;
        user_name(k, u);
        snprintf(msg, sizeof msg, "{\"user\": \"%s\", \"v\": %d, \"ts\": %lld}", u, i, (long long)(t0 + i * 1000));
        int32_t to = -1;
        if (i % 10 == 3) to = (part_of[k] + 1) % 4; /* produced on the wrong partition */
        ck_assert_msg(tsr_kafka_producer_send(p, "ev", u, strlen(u), msg, strlen(msg), to, &err) == 0, "%s", err.msg);
        int lands = to >= 0 ? to : part_of[k];
        if (lands > 1) continue; /* not consumed */
        in_owned++;
        if (to >= 0) {
            misrouted++;
        } else {
            s2[k] += 2 * i;
            c2[k]++;
        }
    }
    ck_assert_msg(tsr_kafka_producer_flush(p, 10000, &err) == 0, "%s", err.msg);
    ck_assert_uint_gt(misrouted, 0);

    int32_t parts[2] = {0, 1};
    tsr_ingest_opts_t io = {0};
    io.bootstrap = bs;
    io.store = store;
    io.plan = plan;
    io.source = 0;
    io.allowed_lateness_ms = -1;
    io.partitions = parts;
    io.npartitions = 2;
    io.nkeys = 1;
    io.start_time_ms = B; /* no stored offsets: from the offset of time B, else the beginning */
    tsr_ingest_t *in;
    ck_assert_msg(tsr_ingest_start(&io, &in, &err) == 0, "%s", err.msg);
    tsr_ingest_stats_t st;
    for (int i = 0; i < 400; i++) {
        tsr_ingest_stats(in, &st);
        if (st.messages >= in_owned) break;
        sleep_ms(50);
    }
    sleep_ms(300); /* nothing else arrives */
    tsr_ingest_stats(in, &st);
    ck_assert_uint_eq(st.messages, in_owned);
    ck_assert_uint_eq(st.misrouted, misrouted);
    ck_assert_uint_eq(st.events, in_owned - misrouted);
    int64_t ev0, ev1, lag, ev2;
    ck_assert_int_eq(tsr_ingest_partition_stats(in, 0, &ev0, &lag), 0);
    ck_assert_int_eq(tsr_ingest_partition_stats(in, 1, &ev1, &lag), 0);
    ck_assert_int_eq(tsr_ingest_partition_stats(in, 2, &ev2, &lag), TSR_ENOTFOUND);
    ck_assert_int_eq(ev0 + ev1, (int64_t)(in_owned - misrouted));
    /* offsets stored for the consumed partitions only */
    ck_assert_int_gt(tsr_tile_store_offset(store, "t.stream.v1", "ev/0") + tsr_tile_store_offset(store, "t.stream.v1", "ev/1"), 0);
    ck_assert_int_eq(tsr_tile_store_offset(store, "t.stream.v1", "ev/2"), -1);
    ck_assert_int_eq(tsr_tile_store_offset(store, "t.stream.v1", "ev/3"), -1);
    /* stop is prompt */
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    tsr_ingest_stop(in);
    clock_gettime(CLOCK_MONOTONIC, &b);
    double ms = (double)(b.tv_sec - a.tv_sec) * 1e3 + (double)(b.tv_nsec - a.tv_nsec) / 1e6;
    ck_assert_msg(ms < 1000, "stop took %.0f ms", ms);

    /* values: owned users have exactly their correctly routed events, others none */
    tsr_arena_t arena;
    tsr_arena_init(&arena, 4096);
    tsr_buf_t key;
    tsr_buf_init(&key);
    tsr_value_t out[2];
    for (int k = 0; k < NUSERS; k++) {
        encode_user(k, &key);
        ck_assert_int_eq(tsr_tile_store_read(store, "t.stream.v1", key.data, key.len, t0 + 500 * 1000, out, &arena, &err), 0);
        if (c2[k] == 0) {
            ck_assert_msg(out[1].kind == TSR_NULL, "user %d (partition %d) has a count", k, part_of[k]);
        } else {
            ck_assert_int_eq(out[0].u.l, s2[k]);
            ck_assert_int_eq(out[1].u.l, c2[k]);
        }
    }
    tsr_buf_free(&key);
    tsr_arena_free(&arena);
    tsr_kafka_producer_close(p);
    tsr_tile_store_close(store);
    tsr_gb_online_free(plan);
    tsr_config_free(conf);
    tsr_kafka_mock_stop(m);
    cleanup();
}
END_TEST

/* ------------------------------------------------------------------------------------------
 * assignments */

/* A packed Assignment: one GroupBy (name from config) with parts, optional upload. */
static void pack_assignment_of(tsr_buf_t *out, const char *name, const char *config, int64_t epoch,
                               int64_t rev, const int32_t *parts, size_t n, int64_t batch_end,
                               const char *upload_dir, Tessera__V1__ShardTask **shards, size_t nshards) {
    Tessera__V1__AssignedGroupBy ag;
    tessera__v1__assigned_group_by__init(&ag);
    ag.name = (char *)name;
    ag.config_json = (char *)config;
    ag.part_index = -1;
    ag.num_partitions = 4;
    ag.n_partitions = n;
    ag.partitions = (int32_t *)parts;
    ag.batch_end_millis = batch_end;
    ag.upload_dir = (char *)(upload_dir ? upload_dir : "");
    Tessera__V1__AssignedGroupBy *agp = &ag;
    Tessera__V1__Assignment a;
    tessera__v1__assignment__init(&a);
    a.epoch = epoch;
    a.revision = rev;
    a.n_group_bys = parts ? 1 : 0;
    a.group_bys = &agp;
    a.n_shards = nshards;
    a.shards = shards;
    tsr_buf_clear(out);
    tsr_pb_pack(&a.base, out);
}

/* The same for t.stream.v1 (gb_json). */
static void pack_assignment(tsr_buf_t *out, int64_t epoch, int64_t rev, const int32_t *parts, size_t n,
                            int64_t batch_end, const char *upload_dir, Tessera__V1__ShardTask **shards,
                            size_t nshards) {
    pack_assignment_of(out, "t.stream.v1", gb_json, epoch, rev, parts, n, batch_end, upload_dir, shards,
                       nshards);
}


/* Produces n events (user u<i % 8>, v = base + i) keyed by user; counts per partition. */
static void produce_events(tsr_kafka_producer_t *p, int base, int n, int64_t t0, int64_t *per_part) {
    tsr_error_t err;
    char msg[256], u[16];
    for (int i = 0; i < n; i++) {
        int k = i % NUSERS;
        user_name(k, u);
        snprintf(msg, sizeof msg, "{\"user\": \"%s\", \"v\": %d, \"ts\": %lld}", u, base + i,
                 (long long)(t0 + (base + i) * 1000LL));
        if (tsr_kafka_producer_send(p, "ev", u, strlen(u), msg, strlen(msg), -1, &err) != 0)
            ck_abort_msg("%s", err.msg);
        per_part[tsr_partition_of_text(u, strlen(u), 4)]++;
    }
    ck_assert_msg(tsr_kafka_producer_flush(p, 10000, &err) == 0, "%s", err.msg);
}

/* Waits (<= 20 s) until the stored offset of ev/<part> reaches want. */
static void wait_offset(tsr_worker_t *w, int part, int64_t want) {
    char name[16];
    snprintf(name, sizeof name, "ev/%d", part);
    int64_t o = -1;
    for (int i = 0; i < 400; i++) {
        o = tsr_tile_store_offset(tsr_host_tile_store(tsr_worker_host(w)), "t.stream.v1", name);
        if (o >= want) return;
        sleep_ms(50);
    }
    ck_abort_msg("offset of %s is %lld, want %lld", name, (long long)o, (long long)want);
}

START_TEST(test_worker_streams_owned_partitions) {
    /* the worker consumes exactly the Kafka partitions it owns; a lost partition is not
     * written after the reconcile returns */
    setup_warehouse();
    tsr_error_t err;
    tsr_error_clear(&err);
    const char *topics[] = {"ev"};
    tsr_kafka_mock_opts_t mo = {4, topics, 1};
    tsr_kafka_mock_t *m;
    ck_assert_msg(tsr_kafka_mock_start(&mo, &m, &err) == 0, "%s", err.msg);
    char data[400];
    snprintf(data, sizeof data, "%s/w", tmp);
    tsr_worker_opts_t o;
    memset(&o, 0, sizeof o);
    o.listen = "127.0.0.1:0";
    o.data_dir = data;
    o.warehouse = wh;
    o.id = "w-stream";
    o.kafka_bootstrap = tsr_kafka_mock_bootstrap(m);
    o.allowed_lateness_ms = -1;
    tsr_worker_t *w;
    ck_assert_msg(tsr_worker_start(&o, &w, &err) == 0, "%s", err.msg);
    tsr_kafka_producer_t *p;
    ck_assert_msg(tsr_kafka_producer_open(tsr_kafka_mock_bootstrap(m), &p, &err) == 0, "%s", err.msg);
    int64_t per[4] = {0, 0, 0, 0};
    int64_t t0 = B + 3600000;
    produce_events(p, 0, 200, t0, per);
    ck_assert_int_gt(per[0] + per[2], 0);

    tsr_buf_t b;
    tsr_buf_init(&b);
    int32_t p02[2] = {0, 2}, p1[1] = {1};
    pack_assignment(&b, 1, 1, p02, 2, 0, NULL, NULL, 0);
    ck_assert_int_eq(tsr_worker_apply_assignment(w, b.data, b.len, &err), 0);
    if (per[0]) wait_offset(w, 0, per[0]);
    if (per[2]) wait_offset(w, 2, per[2]);
    tsr_tile_store_t *store = tsr_host_tile_store(tsr_worker_host(w));
    ck_assert_int_eq(tsr_tile_store_offset(store, "t.stream.v1", "ev/1"), -1);
    ck_assert_int_eq(tsr_tile_store_offset(store, "t.stream.v1", "ev/3"), -1);
    tsr_arena_t arena;
    tsr_arena_init(&arena, 4096);
    tsr_buf_t key, scratch;
    tsr_buf_init(&key);
    tsr_buf_init(&scratch);
    for (int k = 0; k < NUSERS; k++) {
        encode_user(k, &key);
        int part = tsr_partition_of_key(key.data, key.len, 1, 4, &scratch);
        tsr_value_t *vals;
        size_t nv;
        ck_assert_int_eq(tsr_host_read_values(tsr_worker_host(w), "t.stream.v1", key.data, key.len,
                                              t0 + 300 * 1000, &vals, &nv, &arena, &err), 0);
        ck_assert_uint_eq(nv, 2);
        if (part == 0 || part == 2) {
            ck_assert_int_eq(vals[1].kind, TSR_LONG);
            ck_assert_int_eq(vals[1].u.l, 200 / NUSERS);
        } else {
            ck_assert_int_eq(vals[1].kind, TSR_NULL);
        }
    }

    /* partition 1 arrives too: the consumer restarts over {0, 1, 2} from the stored offsets,
     * and the events of 0 and 2 applied before still count (get partitions' EVENTS, "since the
     * worker started": they read 0 after a gained partition before) */
    int32_t p012[3] = {0, 1, 2};
    pack_assignment(&b, 1, 2, p012, 3, 0, NULL, NULL, 0);
    ck_assert_int_eq(tsr_worker_apply_assignment(w, b.data, b.len, &err), 0);
    if (per[1]) wait_offset(w, 1, per[1]);
    tsr_host_gb_t *hst = tsr_host_find(tsr_worker_host(w), "t.stream.v1");
    ck_assert_ptr_nonnull(hst);
    for (int32_t q = 0; q < 3; q++) {
        int64_t ev = -1, lag;
        int rc = tsr_host_partition_stats(hst, q, &ev, &lag);
        if (per[q]) ck_assert_msg(rc == 0 && ev == per[q], "partition %d: %lld events, want %lld", (int)q,
                                  (long long)ev, (long long)per[q]);
    }
    int64_t ev3, lag3;
    ck_assert_int_eq(tsr_host_partition_stats(hst, 3, &ev3, &lag3), TSR_ENOTFOUND);

    /* partitions 0 and 2 move away, 1 stays: nothing more is written for 0 and 2 */
    pack_assignment(&b, 1, 3, p1, 1, 0, NULL, NULL, 0);
    ck_assert_int_eq(tsr_worker_apply_assignment(w, b.data, b.len, &err), 0);
    int64_t o0 = tsr_tile_store_offset(store, "t.stream.v1", "ev/0");
    int64_t o2 = tsr_tile_store_offset(store, "t.stream.v1", "ev/2");
    int64_t more[4] = {0, 0, 0, 0};
    produce_events(p, 200, 80, t0, more);
    if (per[1] + more[1]) wait_offset(w, 1, per[1] + more[1]);
    sleep_ms(300);
    ck_assert_int_eq(tsr_tile_store_offset(store, "t.stream.v1", "ev/0"), o0);
    ck_assert_int_eq(tsr_tile_store_offset(store, "t.stream.v1", "ev/2"), o2);
    ck_assert_int_eq(tsr_tile_store_offset(store, "t.stream.v1", "ev/3"), -1);

    tsr_buf_free(&key);
    tsr_buf_free(&scratch);
    tsr_arena_free(&arena);
    tsr_buf_free(&b);
    tsr_kafka_producer_close(p);
    tsr_worker_stop(w);
    tsr_kafka_mock_stop(m);
    cleanup();
}
END_TEST

static const char *ent_json =
    "{\"metaData\": {\"name\": \"t.ent.v1\"}, \"sources\": [{\"entities\": {\"snapshotTable\": "
    "\"t.snap\", \"query\": {\"selects\": {\"user\": \"user\", \"score\": \"score\"}}}}], "
    "\"keyColumns\": [\"user\"]}";

START_TEST(test_entity_shard_and_load) {
    /* an entity GroupBy: shard into part files, load through the entity store, read */
    setup_warehouse();
    tsr_error_t err;
    tsr_error_clear(&err);
    char p[600];
    snprintf(p, sizeof p, "%s/t/snap", wh);
    mkdir(p, 0755);
    snprintf(p, sizeof p, "%s/t/snap/_schema.json", wh);
    write_file(p, "{\"user\": \"string\", \"score\": \"long\"}");
    snprintf(p, sizeof p, "%s/t/snap/ds=2024-01-01", wh);
    mkdir(p, 0755);
    tsr_buf_t csv;
    tsr_buf_init(&csv);
    tsr_buf_puts(&csv, "user,score\n");
    for (int k = 0; k < NUSERS; k++) tsr_buf_printf(&csv, "u%d,%d\n", k, 10 * k + 1);
    snprintf(p, sizeof p, "%s/t/snap/ds=2024-01-01/part-0.csv", wh);
    write_file(p, tsr_buf_cstr(&csv));
    snprintf(p, sizeof p, "%s/t/snap/ds=2024-01-02", wh);
    mkdir(p, 0755);
    snprintf(p, sizeof p, "%s/t/snap/ds=2024-01-02/part-0.csv", wh);
    write_file(p, tsr_buf_cstr(&csv));
    tsr_buf_free(&csv);

    char data[400], updir[400];
    snprintf(data, sizeof data, "%s/w", tmp);
    snprintf(updir, sizeof updir, "%s/up/t.ent.v1", tmp);
    tsr_worker_opts_t o;
    memset(&o, 0, sizeof o);
    o.listen = "127.0.0.1:0";
    o.data_dir = data;
    o.warehouse = wh;
    o.id = "w-ent";
    tsr_worker_t *w;
    ck_assert_msg(tsr_worker_start(&o, &w, &err) == 0, "%s", err.msg);
    int32_t all[4] = {0, 1, 2, 3};
    Tessera__V1__ShardTask t;
    tessera__v1__shard_task__init(&t);
    t.job_id = "up-ent";
    t.group_by = "t.ent.v1";
    t.config_json = (char *)ent_json;
    t.part_index = -1;
    t.num_partitions = 4;
    t.n_partitions = 4;
    t.partitions = all;
    t.ds = "2024-01-01";
    t.batch_end_millis = B;
    t.out_dir = updir;
    tsr_buf_t b;
    tsr_buf_init(&b);
    tsr_pb_pack(&t.base, &b);
    uint64_t keys = 0;
    ck_assert_msg(tsr_worker_run_shard(w, b.data, b.len, &keys, &err) == 0, "%s", err.msg);
    ck_assert_uint_eq(keys, NUSERS);
    pack_assignment_of(&b, "t.ent.v1", ent_json, 1, 1, all, 4, B, updir, NULL, 0);
    ck_assert_msg(tsr_worker_apply_assignment(w, b.data, b.len, &err) == 0, "%s", err.msg);
    tsr_worker_stats_t st;
    tsr_worker_stats(w, &st);
    ck_assert_uint_eq(st.loads, 1);
    ck_assert_uint_eq(st.load_failures, 0);
    tsr_arena_t arena;
    tsr_arena_init(&arena, 4096);
    tsr_buf_t key;
    tsr_buf_init(&key);
    for (int k = 0; k < NUSERS; k++) {
        encode_user(k, &key);
        tsr_value_t *vals;
        size_t nv;
        ck_assert_msg(tsr_host_read_values(tsr_worker_host(w), "t.ent.v1", key.data, key.len, B, &vals, &nv,
                                           &arena, &err) == 0, "%s", err.msg);
        int found = 0;
        for (size_t i = 0; i < nv; i++) found |= vals[i].kind == TSR_LONG && vals[i].u.l == 10 * k + 1;
        ck_assert_msg(found, "user %d: score not among %zu values", k, nv);
    }
    /* a damaged part file: the next upload version is refused whole, the loaded one serves */
    char path[600], next[400];
    snprintf(next, sizeof next, "%s/up/t.ent.v1.next", tmp);
    t.out_dir = next;
    t.ds = "2024-01-02";
    t.batch_end_millis = B + DAY;
    tsr_buf_clear(&b);
    tsr_pb_pack(&t.base, &b);
    ck_assert_int_eq(tsr_worker_run_shard(w, b.data, b.len, &keys, &err), 0);
    tsr_partfile_path(next, 2, path, sizeof path);
    ck_assert_int_eq(truncate(path, 20), 0);
    pack_assignment_of(&b, "t.ent.v1", ent_json, 2, 1, all, 4, B + DAY, next, NULL, 0);
    ck_assert_int_eq(tsr_worker_apply_assignment(w, b.data, b.len, &err), 0);
    tsr_worker_stats(w, &st);
    ck_assert_uint_eq(st.loads, 2);
    ck_assert_uint_eq(st.load_failures, 1);
    ck_assert_int_eq(tsr_entity_store_batch_end(tsr_host_entity_store(tsr_worker_host(w)), "t.ent.v1"), B);
    encode_user(3, &key);
    tsr_value_t *vals;
    size_t nv;
    ck_assert_int_eq(tsr_host_read_values(tsr_worker_host(w), "t.ent.v1", key.data, key.len, B, &vals, &nv, &arena, &err), 0);
    ck_assert_uint_gt(nv, 0);
    /* the batched form (ReadPartition's): the same values; an unknown GroupBy fails alone */
    tsr_host_vread_t vr[2] = {{.gb = "t.ent.v1", .key = key.data, .klen = key.len, .q = B},
                              {.gb = "t.nope.v1", .key = key.data, .klen = key.len, .q = B}};
    tsr_host_read_values_many(tsr_worker_host(w), vr, 2, &arena);
    ck_assert_int_eq(vr[0].status, 0);
    ck_assert_uint_eq(vr[0].nvalues, nv);
    for (size_t k = 0; k < nv; k++) ck_assert(tsr_value_equal(&vr[0].values[k], &vals[k]));
    ck_assert_int_eq(vr[1].status, TSR_ENOTFOUND);
    ck_assert_ptr_nonnull(strstr(vr[1].error, "not hosted"));
    tsr_buf_free(&key);
    tsr_arena_free(&arena);
    tsr_buf_free(&b);
    tsr_worker_stop(w);
    cleanup();
}
END_TEST

START_TEST(test_reconcile_epoch_fencing) {
    setup_warehouse();
    tsr_error_t err;
    tsr_error_clear(&err);
    char data[400];
    snprintf(data, sizeof data, "%s/w1", tmp);
    tsr_worker_opts_t o;
    memset(&o, 0, sizeof o);
    o.listen = "127.0.0.1:0";
    o.data_dir = data;
    o.warehouse = wh;
    o.id = "w-test";
    tsr_worker_t *w;
    ck_assert_msg(tsr_worker_start(&o, &w, &err) == 0, "%s", err.msg);
    ck_assert_str_eq(tsr_worker_id(w), "w-test");
    tsr_buf_t b;
    tsr_buf_init(&b);
    int32_t p02[2] = {2, 0}, p1[1] = {1}, p3[1] = {3};
    pack_assignment(&b, 5, 10, p02, 2, 0, NULL, NULL, 0);
    ck_assert_msg(tsr_worker_apply_assignment(w, b.data, b.len, &err) == 0, "%s", err.msg);
    ck_assert(tsr_worker_owns(w, "t.stream.v1", 0));
    ck_assert(tsr_worker_owns(w, "t.stream.v1", 2));
    ck_assert(!tsr_worker_owns(w, "t.stream.v1", 1));
    ck_assert(!tsr_worker_owns(w, "other", 0));
    /* an older epoch (a deposed leader) is ignored, whatever its revision */
    pack_assignment(&b, 4, 99, p1, 1, 0, NULL, NULL, 0);
    ck_assert_int_eq(tsr_worker_apply_assignment(w, b.data, b.len, &err), 1);
    /* an older revision of the same epoch too */
    pack_assignment(&b, 5, 9, p1, 1, 0, NULL, NULL, 0);
    ck_assert_int_eq(tsr_worker_apply_assignment(w, b.data, b.len, &err), 1);
    ck_assert(tsr_worker_owns(w, "t.stream.v1", 0));
    ck_assert(!tsr_worker_owns(w, "t.stream.v1", 1));
    tsr_worker_stats_t st;
    tsr_worker_stats(w, &st);
    ck_assert_uint_eq(st.stale_assignments, 2);
    ck_assert_int_eq(st.epoch, 5);
    ck_assert_int_eq(st.revision, 10);
    /* a newer epoch (a new leader, lower revision) moves partitions: the lost ones at once */
    pack_assignment(&b, 6, 1, p1, 1, 0, NULL, NULL, 0);
    ck_assert_int_eq(tsr_worker_apply_assignment(w, b.data, b.len, &err), 0);
    ck_assert(!tsr_worker_owns(w, "t.stream.v1", 0));
    ck_assert(!tsr_worker_owns(w, "t.stream.v1", 2));
    ck_assert(tsr_worker_owns(w, "t.stream.v1", 1));
    pack_assignment(&b, 6, 2, p3, 1, 0, NULL, NULL, 0);
    ck_assert_int_eq(tsr_worker_apply_assignment(w, b.data, b.len, &err), 0);
    ck_assert(tsr_worker_owns(w, "t.stream.v1", 3));
    ck_assert(!tsr_worker_owns(w, "t.stream.v1", 1));
    /* the GroupBy dropped from the assignment: nothing owned */
    pack_assignment(&b, 6, 3, NULL, 0, 0, NULL, NULL, 0);
    ck_assert_int_eq(tsr_worker_apply_assignment(w, b.data, b.len, &err), 0);
    ck_assert(!tsr_worker_owns(w, "t.stream.v1", 3));
    /* garbage */
    ck_assert_int_lt(tsr_worker_apply_assignment(w, (const uint8_t *)"\xff\xff\xff", 3, &err), 0);
    tsr_worker_stats(w, &st);
    ck_assert_uint_eq(st.assignments, 4);
    tsr_buf_free(&b);
    tsr_worker_stop(w);
    /* the worker id is kept in the data dir when not given */
    o.id = NULL;
    snprintf(data, sizeof data, "%s/w2", tmp);
    ck_assert_int_eq(tsr_worker_start(&o, &w, &err), 0);
    char id[64];
    snprintf(id, sizeof id, "%s", tsr_worker_id(w));
    ck_assert_int_eq(strncmp(id, "w-", 2), 0);
    tsr_worker_stop(w);
    ck_assert_int_eq(tsr_worker_start(&o, &w, &err), 0);
    ck_assert_str_eq(tsr_worker_id(w), id);
    tsr_worker_stop(w);
    cleanup();
}
END_TEST

/* ------------------------------------------------------------------------------------------
 * end to end against a fake coordinator */

typedef struct fake {
    pthread_mutex_t mu;
    tsr_buf_t assignment;
    int version;
    int registers, keepalives, watches, reports, reports_ok;
    int64_t report_keys;
    size_t last_report_parts;
    int expire;                     /* answer the next KeepAlive with NOT_FOUND */
    char leader[64];                /* follower: where the leader is */
    tsr_rpc_server_t *srv;
} fake_t;

static int h_register(void *ud, tsr_rpc_call_t *call, const uint8_t *req, size_t n, tsr_buf_t *resp,
                      tsr_error_t *err) {
    (void)call;
    fake_t *f = ud;
    if (f->leader[0]) return tsr_error_set(err, TSR_EUNAVAIL, "not the leader; leader is %s", f->leader);
    Tessera__V1__RegisterWorkerRequest *rq = tessera__v1__register_worker_request__unpack(NULL, n, req);
    if (!rq) return tsr_error_set(err, TSR_EINVAL, "malformed");
    int ok = rq->worker_id && strcmp(rq->worker_id, "w-e2e") == 0 && rq->address && rq->address[0];
    tessera__v1__register_worker_request__free_unpacked(rq, NULL);
    if (!ok) return tsr_error_set(err, TSR_EINVAL, "bad RegisterWorkerRequest");
    Tessera__V1__RegisterWorkerResponse out;
    tessera__v1__register_worker_response__init(&out);
    out.lease_id = 42;
    out.lease_ttl_ms = 600;
    out.epoch = 7;
    tsr_pb_pack(&out.base, resp);
    pthread_mutex_lock(&f->mu);
    f->registers++;
    pthread_mutex_unlock(&f->mu);
    return 0;
}

static int h_keepalive(void *ud, tsr_rpc_call_t *call, const uint8_t *req, size_t n, tsr_buf_t *resp,
                       tsr_error_t *err) {
    (void)call;
    fake_t *f = ud;
    if (f->leader[0]) return tsr_error_set(err, TSR_EUNAVAIL, "not the leader; leader is %s", f->leader);
    Tessera__V1__KeepAliveRequest *rq = tessera__v1__keep_alive_request__unpack(NULL, n, req);
    if (!rq) return tsr_error_set(err, TSR_EINVAL, "malformed");
    pthread_mutex_lock(&f->mu);
    f->keepalives++;
    f->last_report_parts = rq->n_partitions;
    int expire = f->expire;
    f->expire = 0;
    pthread_mutex_unlock(&f->mu);
    tessera__v1__keep_alive_request__free_unpacked(rq, NULL);
    if (expire) return tsr_error_set(err, TSR_ENOTFOUND, "lease 42 has expired");
    Tessera__V1__KeepAliveResponse out;
    tessera__v1__keep_alive_response__init(&out);
    out.lease_ttl_ms = 600;
    out.epoch = 7;
    tsr_pb_pack(&out.base, resp);
    return 0;
}

static int h_report(void *ud, tsr_rpc_call_t *call, const uint8_t *req, size_t n, tsr_buf_t *resp,
                    tsr_error_t *err) {
    (void)call;
    fake_t *f = ud;
    if (f->leader[0]) return tsr_error_set(err, TSR_EUNAVAIL, "not the leader; leader is %s", f->leader);
    Tessera__V1__ReportShardRequest *rq = tessera__v1__report_shard_request__unpack(NULL, n, req);
    if (!rq) return tsr_error_set(err, TSR_EINVAL, "malformed");
    pthread_mutex_lock(&f->mu);
    f->reports++;
    f->reports_ok += rq->ok;
    f->report_keys += rq->keys;
    if (!rq->ok) fprintf(stderr, "shard failed: %s\n", rq->error);
    pthread_mutex_unlock(&f->mu);
    tessera__v1__report_shard_request__free_unpacked(rq, NULL);
    Tessera__V1__ReportShardResponse out;
    tessera__v1__report_shard_response__init(&out);
    tsr_pb_pack(&out.base, resp);
    return 0;
}

/* Sends the current assignment, then each new version, until the call ends (<= 10 s). */
static int h_watch(void *ud, tsr_rpc_call_t *call, const uint8_t *req, size_t n, tsr_error_t *err) {
    (void)req;
    (void)n;
    fake_t *f = ud;
    if (f->leader[0]) return tsr_error_set(err, TSR_EUNAVAIL, "not the leader; leader is %s", f->leader);
    pthread_mutex_lock(&f->mu);
    f->watches++;
    pthread_mutex_unlock(&f->mu);
    int sent = -1;
    tsr_buf_t b;
    tsr_buf_init(&b);
    for (int i = 0; i < 1000 && !tsr_rpc_call_cancelled(call); i++) {
        pthread_mutex_lock(&f->mu);
        int v = f->version;
        tsr_buf_clear(&b);
        tsr_buf_append(&b, f->assignment.data, f->assignment.len);
        pthread_mutex_unlock(&f->mu);
        if (v != sent) {
            if (tsr_rpc_call_send(call, b.data, b.len) != TSR_OK) break;
            sent = v;
        }
        sleep_ms(10);
    }
    tsr_buf_free(&b);
    return 0;
}

static void fake_start(fake_t *f, const char *leader) {
    memset(f, 0, sizeof *f);
    pthread_mutex_init(&f->mu, NULL);
    tsr_buf_init(&f->assignment);
    if (leader) snprintf(f->leader, sizeof f->leader, "%s", leader);
    tsr_error_t err;
    f->srv = tsr_rpc_server_new("127.0.0.1:0", NULL, &err);
    ck_assert_ptr_nonnull(f->srv);
    ck_assert_int_eq(tsr_rpc_server_add_unary(f->srv, "/tessera.v1.CoordinatorService/RegisterWorker", h_register, f, &err), 0);
    ck_assert_int_eq(tsr_rpc_server_add_unary(f->srv, "/tessera.v1.CoordinatorService/KeepAlive", h_keepalive, f, &err), 0);
    ck_assert_int_eq(tsr_rpc_server_add_unary(f->srv, "/tessera.v1.CoordinatorService/ReportShard", h_report, f, &err), 0);
    ck_assert_int_eq(tsr_rpc_server_add_stream(f->srv, "/tessera.v1.CoordinatorService/WatchAssignments", h_watch, f, &err), 0);
    ck_assert_int_eq(tsr_rpc_server_start(f->srv, &err), 0);
}

static void fake_set(fake_t *f, const tsr_buf_t *a) {
    pthread_mutex_lock(&f->mu);
    tsr_buf_clear(&f->assignment);
    tsr_buf_append(&f->assignment, a->data, a->len);
    f->version++;
    pthread_mutex_unlock(&f->mu);
}

static void fake_stop(fake_t *f) {
    tsr_rpc_server_free(f->srv);
    tsr_buf_free(&f->assignment);
    pthread_mutex_destroy(&f->mu);
}

static int fake_get(fake_t *f, const int *field) {
    pthread_mutex_lock(&f->mu);
    int v = *field;
    pthread_mutex_unlock(&f->mu);
    return v;
}

START_TEST(test_end_to_end_fake_coordinator) {
    setup_warehouse();
    tsr_error_t err;
    tsr_error_clear(&err);
    fake_t leader, follower;
    fake_start(&leader, NULL);
    char laddr[64], faddr[64];
    snprintf(laddr, sizeof laddr, "127.0.0.1:%d", tsr_rpc_server_port(leader.srv));
    fake_start(&follower, laddr);
    snprintf(faddr, sizeof faddr, "127.0.0.1:%d", tsr_rpc_server_port(follower.srv));

    /* first assignment: two upload shards of 2 partitions each, nothing owned yet */
    char updir[512];
    snprintf(updir, sizeof updir, "%s/wh/_tessera/uploads/t.stream.v1/%lld", tmp, (long long)B);
    int32_t sp[2][2] = {{0, 1}, {2, 3}};
    Tessera__V1__ShardTask tasks[2], *tp[2];
    for (int i = 0; i < 2; i++) {
        tessera__v1__shard_task__init(&tasks[i]);
        tasks[i].job_id = "upload-1";
        tasks[i].shard = i;
        tasks[i].group_by = "t.stream.v1";
        tasks[i].config_json = (char *)gb_json;
        tasks[i].part_index = -1;
        tasks[i].num_partitions = 4;
        tasks[i].n_partitions = 2;
        tasks[i].partitions = sp[i];
        tasks[i].ds = "2024-01-01";
        tasks[i].batch_end_millis = B;
        tasks[i].warehouse = wh;
        tasks[i].out_dir = updir;
        tp[i] = &tasks[i];
    }
    tsr_buf_t a;
    tsr_buf_init(&a);
    pack_assignment(&a, 7, 1, NULL, 0, 0, NULL, tp, 2);
    fake_set(&leader, &a);

    char data[400], coords[200];
    snprintf(data, sizeof data, "%s/w", tmp);
    snprintf(coords, sizeof coords, "%s,%s", faddr, laddr); /* the follower first */
    tsr_worker_opts_t o;
    memset(&o, 0, sizeof o);
    o.coordinators = coords;
    o.listen = "127.0.0.1:0";
    o.data_dir = data;
    o.warehouse = wh;
    o.id = "w-e2e";
    tsr_worker_t *w;
    ck_assert_msg(tsr_worker_start(&o, &w, &err) == 0, "%s", err.msg);

    int i;
    for (i = 0; i < 400 && fake_get(&leader, &leader.reports) < 2; i++) sleep_ms(50);
    ck_assert_msg(i < 400, "2 shard reports in 20 s (got %d)", fake_get(&leader, &leader.reports));
    ck_assert_int_eq(fake_get(&leader, &leader.reports_ok), 2);
    ck_assert_int_ge(fake_get(&leader, &leader.registers), 1);
    ck_assert_int_eq(fake_get(&follower, &follower.registers), 0);
    pthread_mutex_lock(&leader.mu);
    ck_assert_int_eq(leader.report_keys, NUSERS); /* every key in exactly one shard */
    pthread_mutex_unlock(&leader.mu);
    char path[600];
    for (int p = 0; p < 4; p++) {
        tsr_partfile_path(updir, p, path, sizeof path);
        ck_assert_msg(access(path, F_OK) == 0, "%s missing", path);
    }

    /* the upload commits: the worker owns partitions 0 and 2 and loads their part files */
    int32_t own[2] = {0, 2};
    pack_assignment(&a, 7, 2, own, 2, B, updir, tp, 2);
    fake_set(&leader, &a);
    for (i = 0; i < 400 && !tsr_worker_owns(w, "t.stream.v1", 2); i++) sleep_ms(50);
    ck_assert_msg(i < 400, "partitions not owned in 20 s");
    tsr_worker_stats_t st;
    tsr_worker_stats(w, &st);
    ck_assert_uint_eq(st.loads, 1);
    ck_assert_uint_eq(st.load_failures, 0);
    ck_assert_uint_eq(st.shards_ok, 2); /* the shards listed again are not run again */

    /* ReadPartition: a batch over every user; values equal the brute-force sums */
    char waddr[64];
    snprintf(waddr, sizeof waddr, "127.0.0.1:%d", tsr_worker_port(w));
    tsr_rpc_client_t *c = tsr_rpc_client_new(waddr, &err);
    ck_assert_ptr_nonnull(c);
    tsr_arena_t arena;
    tsr_arena_init(&arena, 4096);
    Tessera__V1__ReadItem items[NUSERS], *ip[NUSERS];
    tsr_buf_t keys[NUSERS];
    int part_of[NUSERS];
    tsr_buf_t scratch;
    tsr_buf_init(&scratch);
    for (int k = 0; k < NUSERS; k++) {
        tsr_buf_init(&keys[k]);
        encode_user(k, &keys[k]);
        part_of[k] = tsr_partition_of_key(keys[k].data, keys[k].len, 1, 4, &scratch);
        tessera__v1__read_item__init(&items[k]);
        items[k].group_by = "t.stream.v1";
        items[k].partition = part_of[k];
        items[k].key.data = keys[k].data;
        items[k].key.len = keys[k].len;
        items[k].at_millis = B + 3600000;
        ip[k] = &items[k];
    }
    /* one owned read asks for a time before the upload: it fails alone, the batch goes on */
    int early = -1;
    for (int k = 0; k < NUSERS && early < 0; k++)
        if (part_of[k] == 0 || part_of[k] == 2) early = k;
    ck_assert_int_ge(early, 0);
    items[early].at_millis = B - 3600000;
    Tessera__V1__ReadPartitionRequest rq;
    tessera__v1__read_partition_request__init(&rq);
    rq.n_items = NUSERS;
    rq.items = ip;
    rq.epoch = 7;
    tsr_buf_t rb;
    tsr_buf_init(&rb);
    tsr_pb_pack(&rq.base, &rb);
    tsr_rpc_reply_t r;
    tsr_rpc_reply_init(&r);
    ck_assert_msg(tsr_rpc_client_call(c, "/tessera.v1.WorkerService/ReadPartition", rb.data, rb.len, NULL, &r, &err) == 0,
                  "%s", err.msg);
    Tessera__V1__ReadPartitionResponse *rs = tessera__v1__read_partition_response__unpack(NULL, r.body.len, r.body.data);
    ck_assert_ptr_nonnull(rs);
    ck_assert_uint_eq(rs->n_results, NUSERS);
    int nok = 0, nnot = 0;
    for (int k = 0; k < NUSERS; k++) {
        Tessera__V1__ReadResult *res = rs->results[k];
        if (k == early) {
            ck_assert_int_eq(res->status, TESSERA__V1__READ_STATUS__READ_ERROR);
            ck_assert_ptr_nonnull(res->error);
            ck_assert_uint_eq(res->n_values, 0);
            continue;
        }
        if (part_of[k] == 0 || part_of[k] == 2) {
            ck_assert_msg(res->status == TESSERA__V1__READ_STATUS__READ_OK, "user %d: %s", k, res->error);
            ck_assert_uint_eq(res->n_values, 2);
            tsr_value_t v0, v1;
            ck_assert_int_eq(tsr_pb_value_get(res->values[0], &arena, &v0), 0);
            ck_assert_int_eq(tsr_pb_value_get(res->values[1], &arena, &v1), 0);
            ck_assert_int_eq(v0.kind, TSR_LONG);
            ck_assert_int_eq(v0.u.l, sum[k]);
            ck_assert_int_eq(v1.u.l, cnt[k]);
            nok++;
        } else {
            ck_assert_int_eq(res->status, TESSERA__V1__READ_STATUS__READ_NOT_OWNER);
            nnot++;
        }
    }
    ck_assert_int_gt(nok, 0);
    ck_assert_int_gt(nnot, 0);
    tessera__v1__read_partition_response__free_unpacked(rs, NULL);
    /* malformed request */
    ck_assert_int_ne(tsr_rpc_client_call(c, "/tessera.v1.WorkerService/ReadPartition", "\xff\xff", 2, NULL, &r, &err), 0);
    ck_assert_int_eq(r.status, TSR_GRPC_INVALID_ARGUMENT);

    /* KeepAlive reports what the worker holds (TTL 600 ms: every 200 ms) */
    for (i = 0; i < 100; i++) {
        pthread_mutex_lock(&leader.mu);
        size_t np = leader.last_report_parts;
        pthread_mutex_unlock(&leader.mu);
        if (np == 2) break;
        sleep_ms(50);
    }
    ck_assert_msg(i < 100, "no KeepAlive reported the 2 partitions");

    /* a stale epoch from the stream is ignored */
    int32_t p1[1] = {1};
    pack_assignment(&a, 6, 50, p1, 1, B, updir, NULL, 0);
    fake_set(&leader, &a);
    for (i = 0; i < 200; i++) {
        tsr_worker_stats(w, &st);
        if (st.stale_assignments > 0) break;
        sleep_ms(50);
    }
    ck_assert_uint_gt(st.stale_assignments, 0);
    ck_assert(tsr_worker_owns(w, "t.stream.v1", 0));
    ck_assert(!tsr_worker_owns(w, "t.stream.v1", 1));

    /* the lease expires: every partition is withdrawn, the worker registers again and takes
     * what the next snapshot gives it */
    pack_assignment(&a, 7, 3, own, 2, B, updir, tp, 2);
    fake_set(&leader, &a);
    int regs = fake_get(&leader, &leader.registers);
    pthread_mutex_lock(&leader.mu);
    leader.expire = 1;
    pthread_mutex_unlock(&leader.mu);
    for (i = 0; i < 200; i++) {
        tsr_worker_stats(w, &st);
        if (st.lease_losses > 0) break;
        sleep_ms(20);
    }
    ck_assert_uint_eq(st.lease_losses, 1);
    for (i = 0; i < 400 && fake_get(&leader, &leader.registers) == regs; i++) sleep_ms(50);
    ck_assert_int_gt(fake_get(&leader, &leader.registers), regs);
    for (i = 0; i < 400 && !tsr_worker_owns(w, "t.stream.v1", 2); i++) sleep_ms(50);
    ck_assert_msg(i < 400, "partitions not owned again after re-registering");
    tsr_worker_stats(w, &st);
    ck_assert_int_eq(st.revision, 3);
    ck_assert_uint_eq(st.shards_ok, 2);

    tsr_rpc_reply_free(&r);
    tsr_buf_free(&rb);
    tsr_buf_free(&scratch);
    for (int k = 0; k < NUSERS; k++) tsr_buf_free(&keys[k]);
    tsr_arena_free(&arena);
    tsr_rpc_client_free(c);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    tsr_worker_stop(w);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    ck_assert_msg(t1.tv_sec - t0.tv_sec < 6, "stop took %ld s", (long)(t1.tv_sec - t0.tv_sec));
    tsr_buf_free(&a);
    fake_stop(&follower);
    fake_stop(&leader);
    cleanup();
}
END_TEST

static Suite *suite(void) {
    Suite *s = suite_create("worker");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_partfile_round_trip);
    tcase_add_test(tc, test_partfile_refuses_damage);
    tcase_add_test(tc, test_ingest_partition_subset);
    tcase_add_test(tc, test_reconcile_epoch_fencing);
    tcase_add_test(tc, test_entity_shard_and_load);
    tcase_add_test(tc, test_worker_streams_owned_partitions);
    tcase_add_test(tc, test_end_to_end_fake_coordinator);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return tsr_test_run(suite()); }
