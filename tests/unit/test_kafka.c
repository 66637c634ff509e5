/*
 * test_kafka.c — the Kafka consumer and producer (common/src/kafka_consumer.c,
 * kafka_producer.c) against an in-process mock cluster on 127.0.0.1 (kafka_mock.c).
 *
 * Each test starts its own mock broker inside the forked test process (librdkafka handles
 * must not cross a fork), produces a small backlog (the mock prunes old message sets, so
 * backlogs stay far below ~40k per partition) and consumes it with explicit assignment.
 * Every wait is bounded by a deadline.
 */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "tsr/kafka.h"
#include "tsr_test.h"

static int64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Kafka's Java murmur2 (Utils.murmur2) and toPositive: the reference the producer's
 * partitioner must agree with. */
static int32_t java_partition(const char *key, size_t n, int32_t nparts) {
    const uint8_t *d = (const uint8_t *)key;
    const uint32_t m = 0x5bd1e995u;
    uint32_t h = 0x9747b28cu ^ (uint32_t)n;
    for (size_t i = 0; i + 4 <= n; i += 4) {
        uint32_t k = (uint32_t)d[i] | (uint32_t)d[i + 1] << 8 | (uint32_t)d[i + 2] << 16 |
                     (uint32_t)d[i + 3] << 24;
        k *= m;
        k ^= k >> 24;
        k *= m;
        h *= m;
        h ^= k;
    }
    size_t t = n & ~(size_t)3;
    switch (n % 4) {
    case 3: h ^= (uint32_t)d[t + 2] << 16; /* fall through */
    case 2: h ^= (uint32_t)d[t + 1] << 8;  /* fall through */
    case 1:
        h ^= d[t];
        h *= m;
        break;
    default: break;
    }
    h ^= h >> 13;
    h *= m;
    h ^= h >> 15;
    return (int32_t)((h & 0x7fffffffu) % (uint32_t)nparts);
}

static tsr_kafka_mock_t *mock_with(const char *topic, int parts) {
    tsr_error_t err;
    tsr_kafka_mock_t *m = NULL;
    const char *topics[] = {topic};
    tsr_kafka_mock_opts_t o = {parts, topics, 1};
    ck_assert_msg(tsr_kafka_mock_start(&o, &m, &err) == 0, "%s", err.msg);
    return m;
}

/* Produces n messages {"i":i} keyed "k<i % nkeys>" (unkeyed when nkeys == 0). */
static void produce_n(const char *bootstrap, const char *topic, int from, int n, int nkeys) {
    tsr_error_t err;
    tsr_kafka_producer_t *p;
    ck_assert_msg(tsr_kafka_producer_open(bootstrap, &p, &err) == 0, "%s", err.msg);
    char key[32], val[64];
    for (int i = from; i < from + n; i++) {
        int kl = snprintf(key, sizeof key, "k%d", nkeys ? i % nkeys : 0);
        int vl = snprintf(val, sizeof val, "{\"i\":%d,\"pad\":\"xxxxxxxx\"}", i);
        ck_assert_msg(tsr_kafka_producer_send(p, topic, nkeys ? key : NULL, (size_t)kl, val,
                                              (size_t)vl, -1, &err) == 0,
                      "%s", err.msg);
    }
    ck_assert_msg(tsr_kafka_producer_flush(p, 10000, &err) == 0, "%s", err.msg);
    tsr_kafka_producer_stats_t st;
    tsr_kafka_producer_stats(p, &st);
    ck_assert_uint_eq(st.sent, (uint64_t)n);
    ck_assert_uint_eq(st.delivered, (uint64_t)n);
    ck_assert_uint_eq(st.failed, 0);
    tsr_kafka_producer_close(p);
}

static int msg_index(const tsr_kafka_msg_t *m) {
    int i = -1;
    ck_assert_msg(m->value && sscanf(m->value, "{\"i\":%d", &i) == 1, "bad value");
    return i;
}

/* Largest batch one poll may return in the current test (0 = unchecked). */
static int g_max_batch;

/* Polls until `want` messages arrived or deadline_ms passed (it may get a few more: a poll
 * returns what is fetched, up to max_batch); records each message's index in seen[]
 * (counting duplicates) and checks per-partition offsets are contiguous from next[p].
 * Returns messages received. */
static int consume_some(tsr_kafka_consumer_t *c, int want, int *seen, int nseen, int64_t *next,
                        int deadline_ms) {
    tsr_error_t err;
    int got = 0;
    int64_t end = now_ms() + deadline_ms;
    while (got < want && now_ms() < end) {
        const tsr_kafka_msg_t *msgs;
        int n = tsr_kafka_consumer_poll(c, 100, &msgs, &err);
        ck_assert_msg(n >= 0, "poll: %s", err.msg);
        if (g_max_batch) ck_assert_int_le(n, g_max_batch);
        for (int i = 0; i < n; i++) {
            const tsr_kafka_msg_t *m = &msgs[i];
            if (next) {
                ck_assert_msg(m->offset == next[m->partition],
                              "partition %d: offset %lld, expected %lld", m->partition,
                              (long long)m->offset, (long long)next[m->partition]);
                next[m->partition] = m->offset + 1;
            }
            int idx = msg_index(m);
            ck_assert_int_ge(idx, 0);
            ck_assert_int_lt(idx, nseen);
            seen[idx]++;
        }
        got += n;
    }
    return got;
}

START_TEST(test_produce_consume_all_partitions) {
    tsr_kafka_mock_t *m = mock_with("events", 3);
    const char *bs = tsr_kafka_mock_bootstrap(m);
    int32_t np = 0;
    tsr_error_t err;
    ck_assert_msg(tsr_kafka_topic_partitions(bs, "events", 5000, &np, &err) == 0, "%s", err.msg);
    ck_assert_int_eq(np, 3);
    enum { N = 3000 };
    produce_n(bs, "events", 0, N, 97);
    tsr_kafka_consumer_opts_t o = {.bootstrap = bs, .topic = "events",
                                   .default_offset = TSR_KAFKA_OFFSET_BEGINNING};
    tsr_kafka_consumer_t *c;
    ck_assert_msg(tsr_kafka_consumer_open(&o, &c, &err) == 0, "%s", err.msg);
    static int seen[N];
    memset(seen, 0, sizeof seen);
    int64_t next[3] = {0, 0, 0};
    ck_assert_int_eq(consume_some(c, N, seen, N, next, 10000), N);
    for (int i = 0; i < N; i++) ck_assert_msg(seen[i] == 1, "message %d seen %d times", i, seen[i]);
    ck_assert_int_eq(next[0] + next[1] + next[2], N);
    ck_assert_msg(next[0] > 0 && next[1] > 0 && next[2] > 0, "97 keys use every partition");
    ck_assert_int_eq(tsr_kafka_consumer_total_lag(c), 0);
    /* nothing more: a poll times out with 0 */
    const tsr_kafka_msg_t *msgs;
    ck_assert_int_eq(tsr_kafka_consumer_poll(c, 50, &msgs, &err), 0);
    tsr_kafka_consumer_close(c);
    tsr_kafka_mock_stop(m);
}
END_TEST

/* The worker's exactly-once contract: stop anywhere, store next offsets, reopen there. */
START_TEST(test_resume_from_stored_offsets) {
    tsr_kafka_mock_t *m = mock_with("ev", 4);
    const char *bs = tsr_kafka_mock_bootstrap(m);
    enum { N = 4000 };
    static int seen[N];
    memset(seen, 0, sizeof seen);
    produce_n(bs, "ev", 0, N / 2, 31);
    int64_t next[4] = {0, 0, 0, 0};
    tsr_error_t err;
    int total = 0;
    /* three sessions: each reads part of the backlog in small batches, then "crashes" */
    for (int round = 0; round < 3; round++) {
        int32_t parts[4] = {0, 1, 2, 3};
        int64_t offs[4];
        memcpy(offs, next, sizeof offs);
        tsr_kafka_consumer_opts_t o = {.bootstrap = bs, .topic = "ev", .partitions = parts,
                                       .offsets = offs, .npartitions = 4, .max_batch = 64};
        tsr_kafka_consumer_t *c;
        ck_assert_msg(tsr_kafka_consumer_open(&o, &c, &err) == 0, "%s", err.msg);
        int want = round < 2 ? 700 : N - total;
        if (round == 1) produce_n(bs, "ev", N / 2, N / 2, 31);  /* more arrive meanwhile */
        int got = consume_some(c, want, seen, N, next, 10000);
        ck_assert_int_ge(got, want);
        total += got;
        tsr_kafka_consumer_close(c);  /* messages fetched but not handed out are not lost */
    }
    ck_assert_int_eq(total, N);
    for (int i = 0; i < N; i++) ck_assert_msg(seen[i] == 1, "message %d seen %d times", i, seen[i]);
    tsr_kafka_mock_stop(m);
}
END_TEST

START_TEST(test_explicit_partition_and_offset) {
    tsr_kafka_mock_t *m = mock_with("t", 2);
    const char *bs = tsr_kafka_mock_bootstrap(m);
    tsr_error_t err;
    tsr_kafka_producer_t *p;
    ck_assert_int_eq(tsr_kafka_producer_open(bs, &p, &err), 0);
    char val[32];
    for (int i = 0; i < 20; i++) {
        int n = snprintf(val, sizeof val, "{\"i\":%d}", i);
        ck_assert_int_eq(tsr_kafka_producer_send(p, "t", NULL, 0, val, (size_t)n, i % 2, &err), 0);
    }
    ck_assert_msg(tsr_kafka_producer_flush(p, 10000, &err) == 0, "%s", err.msg);
    tsr_kafka_producer_close(p);
    /* partition 1 holds i = 1, 3, ..., 19 at offsets 0..9: start at offset 5 (i = 11) */
    int32_t part = 1;
    int64_t off = 5;
    tsr_kafka_consumer_opts_t o = {.bootstrap = bs, .topic = "t", .partitions = &part,
                                   .offsets = &off, .npartitions = 1};
    tsr_kafka_consumer_t *c;
    ck_assert_msg(tsr_kafka_consumer_open(&o, &c, &err) == 0, "%s", err.msg);
    const tsr_kafka_partition_lag_t *lag;
    int got = 0;
    int64_t end = now_ms() + 10000;
    while (got < 5 && now_ms() < end) {
        const tsr_kafka_msg_t *msgs;
        int n = tsr_kafka_consumer_poll(c, 100, &msgs, &err);
        ck_assert_int_ge(n, 0);
        for (int i = 0; i < n; i++, got++) {
            ck_assert_int_eq(msgs[i].partition, 1);
            ck_assert_int_eq(msgs[i].offset, 5 + got);
            ck_assert_int_eq(msg_index(&msgs[i]), 11 + 2 * got);
            ck_assert_ptr_null(msgs[i].key);
            ck_assert_int_gt(msgs[i].timestamp_ms, 0);
        }
    }
    ck_assert_int_eq(got, 5);
    ck_assert_uint_eq(tsr_kafka_consumer_lag(c, &lag), 1);
    ck_assert_int_eq(lag[0].partition, 1);
    ck_assert_int_eq(lag[0].position, 10);
    ck_assert_int_eq(lag[0].high, 10);
    ck_assert_int_eq(lag[0].lag, 0);
    tsr_kafka_consumer_close(c);
    tsr_kafka_mock_stop(m);
}
END_TEST

START_TEST(test_lag) {
    tsr_kafka_mock_t *m = mock_with("lag", 1);
    const char *bs = tsr_kafka_mock_bootstrap(m);
    tsr_error_t err;
    static int seen[1200];
    memset(seen, 0, sizeof seen);
    produce_n(bs, "lag", 0, 1000, 0);
    tsr_kafka_consumer_opts_t o = {.bootstrap = bs, .topic = "lag", .max_batch = 100,
                                   .default_offset = TSR_KAFKA_OFFSET_BEGINNING};
    tsr_kafka_consumer_t *c;
    ck_assert_msg(tsr_kafka_consumer_open(&o, &c, &err) == 0, "%s", err.msg);
    /* known before the first poll: BEGINNING was resolved to offset 0 at open */
    const tsr_kafka_partition_lag_t *lag;
    ck_assert_uint_eq(tsr_kafka_consumer_lag(c, &lag), 1);
    ck_assert_int_eq(lag[0].position, 0);
    ck_assert_int_eq(lag[0].high, 1000);
    ck_assert_int_eq(lag[0].lag, 1000);
    g_max_batch = 100;  /* max_batch caps every poll */
    int got = consume_some(c, 100, seen, 1200, NULL, 10000);
    ck_assert_int_ge(got, 100);
    ck_assert_int_lt(got, 200);
    ck_assert_int_eq(tsr_kafka_consumer_total_lag(c), 1000 - got);
    got += consume_some(c, 1000 - got, seen, 1200, NULL, 10000);
    ck_assert_int_eq(got, 1000);
    ck_assert_int_eq(tsr_kafka_consumer_total_lag(c), 0);
    /* new messages raise the high watermark while the app is not polling */
    produce_n(bs, "lag", 1000, 200, 0);
    int64_t end = now_ms() + 5000;
    while (tsr_kafka_consumer_total_lag(c) < 200 && now_ms() < end) {
        struct timespec ts = {0, 10 * 1000000};
        nanosleep(&ts, NULL);
    }
    ck_assert_int_eq(tsr_kafka_consumer_total_lag(c), 200);
    ck_assert_int_eq(consume_some(c, 200, seen, 1200, NULL, 10000), 200);
    ck_assert_int_eq(tsr_kafka_consumer_total_lag(c), 0);
    tsr_kafka_consumer_close(c);

    /* END starts after the newest message: lag 0, and only new messages arrive */
    o.default_offset = TSR_KAFKA_OFFSET_END;
    ck_assert_msg(tsr_kafka_consumer_open(&o, &c, &err) == 0, "%s", err.msg);
    ck_assert_uint_eq(tsr_kafka_consumer_lag(c, &lag), 1);
    ck_assert_int_eq(lag[0].position, 1200);
    ck_assert_int_eq(lag[0].lag, 0);
    tsr_kafka_consumer_close(c);
    tsr_kafka_mock_stop(m);
}
END_TEST

START_TEST(test_key_partition_stability) {
    tsr_kafka_mock_t *m = mock_with("keys", 5);
    const char *bs = tsr_kafka_mock_bootstrap(m);
    tsr_error_t err;
    enum { NKEYS = 50, N = 1000 };
    /* two producer sessions with the same keys */
    produce_n(bs, "keys", 0, N / 2, NKEYS);
    produce_n(bs, "keys", N / 2, N / 2, NKEYS);
    tsr_kafka_consumer_opts_t o = {.bootstrap = bs, .topic = "keys",
                                   .default_offset = TSR_KAFKA_OFFSET_BEGINNING};
    tsr_kafka_consumer_t *c;
    ck_assert_msg(tsr_kafka_consumer_open(&o, &c, &err) == 0, "%s", err.msg);
    int got = 0, used[5] = {0};
    int64_t end = now_ms() + 10000;
    while (got < N && now_ms() < end) {
        const tsr_kafka_msg_t *msgs;
        int n = tsr_kafka_consumer_poll(c, 100, &msgs, &err);
        ck_assert_int_ge(n, 0);
        for (int i = 0; i < n; i++, got++) {
            const tsr_kafka_msg_t *mm = &msgs[i];
            ck_assert_ptr_nonnull(mm->key);
            char key[32];
            snprintf(key, sizeof key, "k%d", msg_index(mm) % NKEYS);
            ck_assert_uint_eq(mm->key_len, strlen(key));
            ck_assert(memcmp(mm->key, key, mm->key_len) == 0);
            ck_assert_msg(mm->partition == java_partition(key, strlen(key), 5),
                          "key %s in partition %d, Java's murmur2 says %d", key, mm->partition,
                          java_partition(key, strlen(key), 5));
            used[mm->partition]++;
        }
    }
    ck_assert_int_eq(got, N);
    for (int p = 0; p < 5; p++) ck_assert_int_gt(used[p], 0);
    tsr_kafka_consumer_close(c);
    tsr_kafka_mock_stop(m);
}
END_TEST

START_TEST(test_offset_out_of_range) {
    tsr_kafka_mock_t *m = mock_with("oor", 1);
    const char *bs = tsr_kafka_mock_bootstrap(m);
    tsr_error_t err;
    static int seen[10];
    produce_n(bs, "oor", 0, 10, 0);
    int32_t part = 0;
    int64_t off = 1000;  /* beyond the high watermark */
    tsr_kafka_consumer_opts_t o = {.bootstrap = bs, .topic = "oor", .partitions = &part,
                                   .offsets = &off, .npartitions = 1,
                                   .reset = TSR_KAFKA_RESET_ERROR};
    tsr_kafka_consumer_t *c;
    ck_assert_msg(tsr_kafka_consumer_open(&o, &c, &err) == 0, "%s", err.msg);
    int rc = 0;
    int64_t end = now_ms() + 10000;
    while (rc == 0 && now_ms() < end) {
        const tsr_kafka_msg_t *msgs;
        rc = tsr_kafka_consumer_poll(c, 100, &msgs, &err);
    }
    ck_assert_int_eq(rc, TSR_ECORRUPT);
    ck_assert_msg(strstr(err.msg, "partition 0") != NULL, "%s", err.msg);
    tsr_kafka_consumer_close(c);
    /* the default policy restarts from the oldest message */
    o.reset = TSR_KAFKA_RESET_EARLIEST;
    ck_assert_msg(tsr_kafka_consumer_open(&o, &c, &err) == 0, "%s", err.msg);
    memset(seen, 0, sizeof seen);
    ck_assert_int_eq(consume_some(c, 10, seen, 10, NULL, 10000), 10);
    tsr_kafka_consumer_close(c);
    tsr_kafka_mock_stop(m);
}
END_TEST

START_TEST(test_errors) {
    tsr_kafka_mock_t *m = mock_with("e", 2);
    const char *bs = tsr_kafka_mock_bootstrap(m);
    tsr_error_t err;
    tsr_kafka_consumer_t *c = NULL;
    /* a partition that does not exist */
    int32_t part = 7;
    tsr_kafka_consumer_opts_t o = {.bootstrap = bs, .topic = "e", .partitions = &part,
                                   .npartitions = 1};
    ck_assert_int_eq(tsr_kafka_consumer_open(&o, &c, &err), TSR_ENOTFOUND);
    ck_assert_msg(strstr(err.msg, "no partition 7") != NULL, "%s", err.msg);
    ck_assert_ptr_null(c);
    /* duplicate partitions, bad offsets, missing topic */
    int32_t dup[2] = {1, 1};
    o.partitions = dup;
    o.npartitions = 2;
    ck_assert_int_eq(tsr_kafka_consumer_open(&o, &c, &err), TSR_EINVAL);
    int64_t bad = -5;
    o.partitions = &part;
    part = 0;
    o.npartitions = 1;
    o.offsets = &bad;
    ck_assert_int_eq(tsr_kafka_consumer_open(&o, &c, &err), TSR_EINVAL);
    o.topic = NULL;
    ck_assert_int_eq(tsr_kafka_consumer_open(&o, &c, &err), TSR_EINVAL);
    /* topic creation rules */
    ck_assert_int_eq(tsr_kafka_mock_topic_create(m, "e", 2, &err), TSR_EEXIST);
    ck_assert_int_eq(tsr_kafka_mock_topic_create(m, "bad topic", 2, &err), TSR_EINVAL);
    ck_assert_int_eq(tsr_kafka_mock_topic_create(m, "ok", 0, &err), TSR_EINVAL);
    ck_assert_int_eq(tsr_kafka_mock_topic_create(m, "ok", 3, &err), 0);
    int32_t np = 0;
    ck_assert_int_eq(tsr_kafka_topic_partitions(bs, "ok", 5000, &np, &err), 0);
    ck_assert_int_eq(np, 3);
    tsr_kafka_mock_stop(m);

    /* nothing listens on port 1: bounded failures */
    o.topic = "e";
    o.offsets = NULL;
    o.bootstrap = "127.0.0.1:1";
    o.timeout_ms = 300;
    int64_t t0 = now_ms();
    ck_assert_int_eq(tsr_kafka_consumer_open(&o, &c, &err), TSR_EUNAVAIL);
    ck_assert_msg(strstr(err.msg, "127.0.0.1:1") != NULL, "%s", err.msg);
    ck_assert_int_lt(now_ms() - t0, 3000);
    tsr_kafka_producer_t *p;
    ck_assert_int_eq(tsr_kafka_producer_open("127.0.0.1:1", &p, &err), 0);
    ck_assert_int_eq(tsr_kafka_producer_send(p, "e", "k", 1, "{}", 2, -1, &err), 0);
    ck_assert_int_eq(tsr_kafka_producer_send(p, "", "k", 1, "{}", 2, -1, &err), TSR_EINVAL);
    ck_assert_int_eq(tsr_kafka_producer_flush(p, 200, &err), TSR_ETIMEOUT);
    ck_assert_msg(strstr(err.msg, "undelivered") != NULL, "%s", err.msg);
    tsr_kafka_producer_close(p);
    ck_assert_int_eq(tsr_kafka_producer_open("", &p, &err), TSR_EINVAL);
}
END_TEST

static Suite *kafka_suite(void) {
    Suite *s = suite_create("kafka");
    TCase *tc = tcase_create("mock");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_produce_consume_all_partitions);
    tcase_add_test(tc, test_resume_from_stored_offsets);
    tcase_add_test(tc, test_explicit_partition_and_offset);
    tcase_add_test(tc, test_lag);
    tcase_add_test(tc, test_key_partition_stability);
    tcase_add_test(tc, test_offset_out_of_range);
    tcase_add_test(tc, test_errors);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return tsr_test_run(kafka_suite()); }
