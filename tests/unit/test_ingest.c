/*
 * test_ingest.c — streaming a topic into the tile store (worker/ingest.h) against librdkafka's
 * mock broker: the source query runs on each message (wheres, selects), bad messages are
 * counted and skipped without stalling their partition, late events are dropped, events
 * before the upload's B are skipped, offsets are stored with the tiles so a restart consumes
 * only what is new, and the values read back equal a brute-force sum over the good events.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "tsr/batch.h"
#include "tsr/config.h"
#include "tsr/ingest.h"
#include "tsr/kafka.h"
#include "tsr/tile_store.h"
#include "tsr/time.h"
#include "tsr_test.h"

#define DAY 86400000LL

static char tmp[256];

static void write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    fclose(f);
}

static const char *gb_json =
    "{\"metaData\": {\"name\": \"t.stream.v1\"}, "
    "\"sources\": [{\"events\": {\"table\": \"t.ev\", \"topic\": \"kafka://ev/serde=json\", "
    "\"query\": {\"selects\": {\"user\": \"user\", \"v\": \"v * 2\"}, \"wheres\": [\"v >= 0\"], "
    "\"timeColumn\": \"ts\"}}}], \"keyColumns\": [\"user\"], \"aggregations\": ["
    "{\"inputColumn\": \"v\", \"operation\": \"SUM\", \"windows\": [{\"length\": 1, \"timeUnit\": \"DAYS\"}]},"
    "{\"inputColumn\": \"v\", \"operation\": \"COUNT\"}], \"accuracy\": \"TEMPORAL\"}";

static void setup_warehouse(void) {
    snprintf(tmp, sizeof tmp, "/tmp/tsr_ingest_XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(tmp));
    char p[512];
    snprintf(p, sizeof p, "%s/wh", tmp);
    mkdir(p, 0755);
    snprintf(p, sizeof p, "%s/wh/t", tmp);
    mkdir(p, 0755);
    snprintf(p, sizeof p, "%s/wh/t/ev", tmp);
    mkdir(p, 0755);
    snprintf(p, sizeof p, "%s/wh/t/ev/_schema.json", tmp);
    write_file(p, "{\"user\": \"string\", \"v\": \"long\", \"ts\": \"long\"}");
    snprintf(p, sizeof p, "%s/wh/t/ev/ds=2024-01-01", tmp);
    mkdir(p, 0755);
    snprintf(p, sizeof p, "%s/wh/t/ev/ds=2024-01-01/part-0.csv", tmp);
    write_file(p, "user,v,ts\n");
}

static void cleanup(void) {
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
    if (system(cmd) != 0) fprintf(stderr, "cleanup failed\n");
}

static void sleep_ms(int ms) {
    struct timespec t = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&t, NULL);
}

/* Waits (<= 20 s) until the ingest has consumed n messages. */
static void wait_messages(tsr_ingest_t *in, uint64_t n) {
    tsr_ingest_stats_t st;
    for (int i = 0; i < 400; i++) {
        tsr_ingest_stats(in, &st);
        if (st.messages >= n) return;
        sleep_ms(50);
    }
    ck_abort_msg("ingest consumed %llu of %llu messages in 20 s (last error: %s)",
                 (unsigned long long)st.messages, (unsigned long long)n, st.last_error);
}

static void send(tsr_kafka_producer_t *p, const char *key, const char *val) {
    tsr_error_t err;
    ck_assert_msg(tsr_kafka_producer_send(p, "ev", key, key ? strlen(key) : 0, val, strlen(val), -1, &err) == 0,
                  "%s", err.msg);
}

/* A mock broker with topic "ev" of 2 partitions. */
static tsr_kafka_mock_t *start_mock(void) {
    tsr_error_t err;
    tsr_error_clear(&err);
    const char *topics[] = {"ev"};
    tsr_kafka_mock_opts_t mo = {2, topics, 1};
    tsr_kafka_mock_t *m;
    ck_assert_msg(tsr_kafka_mock_start(&mo, &m, &err) == 0, "%s", err.msg);
    return m;
}

/* Compiles the GroupBy of `json` (warehouse wh, built for day0), registers it in the store and
 * commits an empty upload at B = day0 + 1 day: events before B are skipped. */
static void add_gb(tsr_tile_store_t *store, const char *json, const char *wh, int64_t day0,
                   tsr_config_t **conf, tsr_gb_online_t **plan) {
    tsr_error_t err;
    tsr_error_clear(&err);
    tsr_config_options_t co = {0};
    co.warehouse = wh;
    tsr_diag_t d;
    tsr_diag_init(&d);
    ck_assert_int_eq(tsr_config_load_string(json, strlen(json), "t", &co, conf, &d), 0);
    tsr_diag_free(&d);
    ck_assert_msg(tsr_gb_online_build((*conf)->group_by, wh, day0, plan, &err) == 0, "%s", err.msg);
    ck_assert_int_eq(tsr_tile_store_register(store, tsr_gb_online_tiles(*plan), &err), 0);
    tsr_tile_upload_t *u;
    ck_assert_int_eq(tsr_tile_upload_begin(store, tsr_gb_online_tiles(*plan)->name, (day0 + 1) * DAY, &u, &err), 0);
    ck_assert_int_eq(tsr_tile_upload_commit(u, &err), 0);
}

/* The streaming tests' set-up: the warehouse (wh = tmp/wh), a mock broker, an open tile store
 * in dir = tmp/tiles; day0 = 2024-01-01 (both buffers 400 bytes). */
static tsr_tile_store_t *stream_setup(tsr_kafka_mock_t **m, char *wh, char *dir, int64_t *day0) {
    setup_warehouse();
    *m = start_mock();
    snprintf(wh, 400, "%s/wh", tmp);
    snprintf(dir, 400, "%s/tiles", tmp);
    ck_assert_int_eq(tsr_ds_parse("2024-01-01", day0), 0);
    tsr_error_t err;
    tsr_error_clear(&err);
    tsr_tile_store_t *store;
    ck_assert_msg(tsr_tile_store_open(dir, &store, &err) == 0, "%s", err.msg);
    return store;
}

START_TEST(test_stream_into_tiles) {
    tsr_error_t err;
    tsr_error_clear(&err);
    tsr_kafka_mock_t *m;
    char wh[400], dir[400];
    int64_t day0;
    tsr_tile_store_t *store = stream_setup(&m, wh, dir, &day0);
    const char *bs = tsr_kafka_mock_bootstrap(m);
    tsr_config_t *conf;
    tsr_gb_online_t *plan;
    add_gb(store, gb_json, wh, day0, &conf, &plan); /* an empty upload at B = day0 + 1 */
    char topic[64];
    ck_assert_str_eq(tsr_gb_online_topic(plan, 0, topic, sizeof topic), "ev");
    int64_t B = (day0 + 1) * DAY;

    tsr_kafka_producer_t *p;
    ck_assert_msg(tsr_kafka_producer_open(bs, &p, &err) == 0, "%s", err.msg);
    char msg[256];
    int64_t sum[3] = {0, 0, 0}, cnt[3] = {0, 0, 0};
    uint64_t n = 0;
    const char *users[3] = {"a", "b", "c"};
    int64_t t0 = B + 3600000;
    for (int i = 0; i < 300; i++) {
        int k = i % 3;
        int64_t ts = t0 + i * 1000;
        snprintf(msg, sizeof msg, "{\"user\": \"%s\", \"v\": %d, \"ts\": %lld}", users[k], i, (long long)ts);
        send(p, users[k], msg);
        n++;
        sum[k] += 2 * i;
        cnt[k]++;
    }
    /* bad: not JSON, wrong type; filtered: v < 0, no user; skipped: before B; late */
    send(p, "a", "{not json");
    send(p, "a", "{\"user\": \"a\", \"v\": \"lots\", \"ts\": 1}");
    snprintf(msg, sizeof msg, "{\"user\": \"a\", \"v\": -5, \"ts\": %lld}", (long long)(t0 + 5000));
    send(p, "a", msg);
    snprintf(msg, sizeof msg, "{\"v\": 5, \"ts\": %lld}", (long long)(t0 + 5000));
    send(p, "b", msg);
    snprintf(msg, sizeof msg, "{\"user\": \"c\", \"v\": 7, \"ts\": %lld}", (long long)(B - 1000));
    send(p, "c", msg);
    snprintf(msg, sizeof msg, "{\"user\": \"c\", \"v\": 9, \"ts\": %lld}", (long long)(t0 - 3 * 3600000));
    send(p, "c", msg);
    n += 6;
    ck_assert_msg(tsr_kafka_producer_flush(p, 10000, &err) == 0, "%s", err.msg);

    tsr_ingest_opts_t io = {0};
    io.bootstrap = bs;
    io.store = store;
    io.plan = plan;
    io.source = 0;
    io.allowed_lateness_ms = 3600000;
    tsr_ingest_t *in;
    ck_assert_msg(tsr_ingest_start(&io, &in, &err) == 0, "%s", err.msg);
    wait_messages(in, n);
    tsr_ingest_stats_t st;
    tsr_ingest_stats(in, &st);
    ck_assert_uint_eq(st.messages, n);
    ck_assert_uint_eq(st.bad, 2);
    ck_assert_uint_eq(st.filtered, 2);
    /* the event before B is either late or skipped depending on arrival order: both drop it */
    ck_assert_uint_eq(st.skipped + st.late, 2);
    ck_assert_uint_eq(st.events, 300);
    tsr_ingest_stop(in);

    /* stored offsets: the next message of each partition (-1: a partition never written) */
    int64_t off = 0;
    for (int part = 0; part < 2; part++) {
        char name[16];
        snprintf(name, sizeof name, "ev/%d", part);
        int64_t o = tsr_tile_store_offset(store, "t.stream.v1", name);
        if (o > 0) off += o;
    }
    ck_assert_int_eq(off, (int64_t)n);

    /* values at the end of the stream */
    tsr_arena_t arena;
    tsr_arena_init(&arena, 4096);
    tsr_value_t out[2];
    int64_t q = t0 + 300 * 1000;
    for (int k = 0; k < 3; k++) {
        tsr_buf_t key;
        tsr_buf_init(&key);
        tsr_value_t kv = tsr_value_string(users[k], 1);
        tsr_value_encode(&kv, &key);
        ck_assert_int_eq(tsr_tile_store_read(store, "t.stream.v1", key.data, key.len, q, out, &arena, &err), 0);
        ck_assert_int_eq(out[0].kind, TSR_LONG);
        ck_assert_int_eq(out[0].u.l, sum[k]);
        ck_assert_int_eq(out[1].u.l, cnt[k]);
        tsr_buf_free(&key);
    }

    /* a restart consumes only the new messages */
    snprintf(msg, sizeof msg, "{\"user\": \"a\", \"v\": 1000, \"ts\": %lld}", (long long)(q + 1));
    send(p, "a", msg);
    ck_assert_msg(tsr_kafka_producer_flush(p, 10000, &err) == 0, "%s", err.msg);
    ck_assert_msg(tsr_ingest_start(&io, &in, &err) == 0, "%s", err.msg);
    wait_messages(in, 1);
    sleep_ms(300);
    tsr_ingest_stats(in, &st);
    ck_assert_uint_eq(st.messages, 1);
    ck_assert_uint_eq(st.events, 1);
    tsr_ingest_stop(in);
    tsr_buf_t key;
    tsr_buf_init(&key);
    tsr_value_t kv = tsr_value_string("a", 1);
    tsr_value_encode(&kv, &key);
    ck_assert_int_eq(tsr_tile_store_read(store, "t.stream.v1", key.data, key.len, q + 2, out, &arena, &err), 0);
    ck_assert_int_eq(out[0].u.l, sum[0] + 2000);
    ck_assert_int_eq(out[1].u.l, cnt[0] + 1);
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

START_TEST(test_waits_for_broker) {
    /* an unreachable broker: the ingest keeps retrying, says why, and stops promptly */
    setup_warehouse();
    tsr_error_t err;
    char wh[400], dir[400];
    snprintf(wh, sizeof wh, "%s/wh", tmp);
    snprintf(dir, sizeof dir, "%s/tiles", tmp);
    tsr_config_options_t co = {0};
    co.warehouse = wh;
    tsr_diag_t d;
    tsr_diag_init(&d);
    tsr_config_t *conf;
    ck_assert_int_eq(tsr_config_load_string(gb_json, strlen(gb_json), "t", &co, &conf, &d), 0);
    tsr_diag_free(&d);
    int64_t day0;
    tsr_ds_parse("2024-01-01", &day0);
    tsr_gb_online_t *plan;
    ck_assert_int_eq(tsr_gb_online_build(conf->group_by, wh, day0, &plan, &err), 0);
    tsr_tile_store_t *store;
    ck_assert_int_eq(tsr_tile_store_open(dir, &store, &err), 0);
    ck_assert_int_eq(tsr_tile_store_register(store, tsr_gb_online_tiles(plan), &err), 0);
    tsr_ingest_opts_t io = {0};
    io.bootstrap = "127.0.0.1:1";
    io.store = store;
    io.plan = plan;
    tsr_ingest_t *in;
    ck_assert_int_eq(tsr_ingest_start(&io, &in, &err), 0);
    tsr_ingest_stats_t st;
    for (int i = 0; i < 200; i++) {
        tsr_ingest_stats(in, &st);
        if (st.last_error[0]) break;
        sleep_ms(50);
    }
    ck_assert_msg(st.last_error[0], "no error reported for an unreachable broker");
    ck_assert_int_eq(st.connected, 0);
    tsr_ingest_stop(in);
    tsr_tile_store_close(store);
    tsr_gb_online_free(plan);
    tsr_config_free(conf);
    cleanup();
}
END_TEST

/* ---- two GroupBys on one topic: one shared consumer (ingest.h "Shared consumers") */

static const char *gb_b_json =
    "{\"metaData\": {\"name\": \"t.stream.b\"}, "
    "\"sources\": [{\"events\": {\"table\": \"t.ev\", \"topic\": \"kafka://ev/serde=json\", "
    "\"query\": {\"selects\": {\"user\": \"user\", \"v\": \"v\"}, \"wheres\": [\"v >= 100\"], "
    "\"timeColumn\": \"ts\"}}}], \"keyColumns\": [\"user\"], \"aggregations\": ["
    "{\"inputColumn\": \"v\", \"operation\": \"SUM\", \"windows\": [{\"length\": 1, \"timeUnit\": \"DAYS\"}]},"
    "{\"inputColumn\": \"v\", \"operation\": \"COUNT\"}], \"accuracy\": \"TEMPORAL\"}";

/* Threads of this process named `name` (what prctl(PR_SET_NAME) set). */
static int threads_named(const char *name) {
    char cmd[256];
    snprintf(cmd, sizeof cmd, "grep -lx '%s' /proc/%d/task/*/comm 2>/dev/null | wc -l", name, (int)getpid());
    FILE *f = popen(cmd, "r");
    int n = -1;
    if (f) {
        if (fscanf(f, "%d", &n) != 1) n = -1;
        pclose(f);
    }
    return n;
}

/* Sum of the stored next offsets of gb over the topic's 2 partitions. */
static int64_t stored_total(tsr_tile_store_t *store, const char *gb) {
    int64_t off = 0;
    for (int part = 0; part < 2; part++) {
        char name[16];
        snprintf(name, sizeof name, "ev/%d", part);
        int64_t o = tsr_tile_store_offset(store, gb, name);
        if (o > 0) off += o;
    }
    return off;
}

/* Reads gb's SUM 1d and COUNT for user at q and compares them with the expected values. */
static void check_user(tsr_tile_store_t *store, const char *gb, const char *user, int64_t q,
                       int64_t sum, int64_t cnt) {
    tsr_arena_t arena;
    tsr_arena_init(&arena, 4096);
    tsr_value_t out[2];
    tsr_buf_t key;
    tsr_buf_init(&key);
    tsr_value_t kv = tsr_value_string(user, 1);
    tsr_value_encode(&kv, &key);
    tsr_error_t err;
    ck_assert_msg(tsr_tile_store_read(store, gb, key.data, key.len, q, out, &arena, &err) == 0, "%s", err.msg);
    if (cnt == 0) {
        ck_assert_msg(out[1].kind == TSR_NULL || out[1].u.l == 0, "%s %s: count %lld, want 0", gb, user,
                      (long long)out[1].u.l);
    } else {
        ck_assert_msg(out[0].kind == TSR_LONG && out[0].u.l == sum, "%s %s: sum %lld, want %lld", gb, user,
                      (long long)out[0].u.l, (long long)sum);
        ck_assert_msg(out[1].u.l == cnt, "%s %s: count %lld, want %lld", gb, user, (long long)out[1].u.l,
                      (long long)cnt);
    }
    tsr_buf_free(&key);
    tsr_arena_free(&arena);
}

START_TEST(test_shared_topic) {
    tsr_error_t err;
    tsr_error_clear(&err);
    tsr_kafka_mock_t *m;
    char wh[400], dir[400];
    int64_t day0;
    tsr_tile_store_t *store = stream_setup(&m, wh, dir, &day0);
    const char *bs = tsr_kafka_mock_bootstrap(m);
    const char *js[2] = {gb_json, gb_b_json};
    const char *names[2] = {"t.stream.v1", "t.stream.b"};
    tsr_config_t *conf[2];
    tsr_gb_online_t *plan[2];
    int64_t B = (day0 + 1) * DAY;
    for (int g = 0; g < 2; g++) add_gb(store, js[g], wh, day0, &conf[g], &plan[g]);
    tsr_kafka_producer_t *p;
    ck_assert_msg(tsr_kafka_producer_open(bs, &p, &err) == 0, "%s", err.msg);
    const char *users[3] = {"a", "b", "c"};
    int64_t sa[3] = {0}, ca[3] = {0}, sb[3] = {0}, cb[3] = {0}; /* brute force per GroupBy */
    int64_t t0 = B + 3600000;
    int next = 0;
    char msg[256];
#define PRODUCE(count)                                                                        \
    do {                                                                                      \
        for (int i_ = 0; i_ < (count); i_++, next++) {                                        \
            int k = next % 3;                                                                 \
            snprintf(msg, sizeof msg, "{\"user\": \"%s\", \"v\": %d, \"ts\": %lld}", users[k], \
                     next, (long long)(t0 + next * 1000));                                   \
            send(p, users[k], msg);                                                           \
            sa[k] += 2 * next;                                                                \
            ca[k]++;                                                                          \
            if (next >= 100) {                                                                \
                sb[k] += next;                                                                \
                cb[k]++;                                                                      \
            }                                                                                 \
        }                                                                                     \
        ck_assert_msg(tsr_kafka_producer_flush(p, 10000, &err) == 0, "%s", err.msg);          \
    } while (0)

    tsr_ingest_opts_t io[2];
    tsr_ingest_t *in[2];
    for (int g = 0; g < 2; g++) {
        memset(&io[g], 0, sizeof io[g]);
        io[g].bootstrap = bs;
        io[g].store = store;
        io[g].plan = plan[g];
    }
    /* A streams alone, then B joins from the beginning while A goes on */
    PRODUCE(300);
    ck_assert_msg(tsr_ingest_start(&io[0], &in[0], &err) == 0, "%s", err.msg);
    wait_messages(in[0], 300);
    ck_assert_msg(tsr_ingest_start(&io[1], &in[1], &err) == 0, "%s", err.msg);
    PRODUCE(100);
    wait_messages(in[0], 400);
    wait_messages(in[1], 400);
    ck_assert_int_eq(threads_named("tsr-ingest"), 1); /* one consumer thread for both */
    tsr_ingest_stats_t st;
    tsr_ingest_stats(in[0], &st);
    ck_assert_uint_eq(st.messages, 400); /* A saw nothing twice across B's join */
    ck_assert_uint_eq(st.events, 400);
    tsr_ingest_stats(in[1], &st);
    ck_assert_uint_eq(st.messages, 400);
    ck_assert_uint_eq(st.events, 300);
    ck_assert_uint_eq(st.filtered, 100);

    /* A stops (its store is not written after stop returns); B goes on alone */
    tsr_ingest_stop(in[0]);
    int64_t a_off = stored_total(store, names[0]);
    ck_assert_int_eq(a_off, 400);
    int64_t a_sum[3], a_cnt[3];
    memcpy(a_sum, sa, sizeof a_sum);
    memcpy(a_cnt, ca, sizeof a_cnt);
    PRODUCE(50);
    wait_messages(in[1], 450);
    ck_assert_int_eq(stored_total(store, names[0]), a_off);
    int64_t q = t0 + 500 * 1000;
    for (int k = 0; k < 3; k++) check_user(store, names[0], users[k], q, a_sum[k], a_cnt[k]);

    /* A again: it catches up on exactly the 50 it missed, B unaffected */
    ck_assert_msg(tsr_ingest_start(&io[0], &in[0], &err) == 0, "%s", err.msg);
    PRODUCE(30);
    wait_messages(in[0], 80);
    wait_messages(in[1], 480);
    sleep_ms(300);
    tsr_ingest_stats(in[0], &st);
    ck_assert_uint_eq(st.messages, 80);
    tsr_ingest_stats(in[1], &st);
    ck_assert_uint_eq(st.messages, 480);
    ck_assert_int_eq(threads_named("tsr-ingest"), 1);
    tsr_ingest_stop(in[1]);
    tsr_ingest_stop(in[0]);
    ck_assert_int_eq(threads_named("tsr-ingest"), 0);
    ck_assert_int_eq(stored_total(store, names[0]), 480);
    ck_assert_int_eq(stored_total(store, names[1]), 480);
    q = t0 + 480 * 1000;
    for (int k = 0; k < 3; k++) {
        check_user(store, names[0], users[k], q, sa[k], ca[k]);
        check_user(store, names[1], users[k], q, sb[k], cb[k]);
    }
#undef PRODUCE
    tsr_kafka_producer_close(p);
    tsr_tile_store_close(store);
    for (int g = 0; g < 2; g++) {
        tsr_gb_online_free(plan[g]);
        tsr_config_free(conf[g]);
    }
    tsr_kafka_mock_stop(m);
    cleanup();
}
END_TEST

static Suite *ingest_suite(void) {
    Suite *s = suite_create("ingest");
    TCase *tc = tcase_create("ingest");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_stream_into_tiles);
    tcase_add_test(tc, test_waits_for_broker);
    tcase_add_test(tc, test_shared_topic);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return tsr_test_run(ingest_suite()); }
