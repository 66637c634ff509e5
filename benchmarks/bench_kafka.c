/*
 * bench_kafka.c — Kafka throughput against the in-process mock broker (common/kafka_*.c),
 * 100-byte JSON messages, each figure next to a baseline measured in the same run:
 *   - baseline: serialize the messages only (the producer loop without a broker);
 *   - produce: tsr_kafka_producer_send for every message, then flush (acks=all);
 *   - consume: tsr_kafka_consumer_poll until every message of the round is received;
 *   - parse only (baseline of the next): tsr_kafka_json_to_row over the same texts in memory,
 *     and the same through the jansson path alone (what the fast path saves);
 *   - consume + parse: the worker's path, poll + tsr_kafka_msg_to_row per message.
 * The mock prunes partitions beyond ~5 MiB / 100k message sets, so the load runs in rounds
 * of `per_round` messages over 4 partitions, each round consumed before the next is made
 * (100k-message rounds already lost data to pruning on a loaded machine: the consumer's
 * prefetch fell more than 5 MiB behind). Every figure is the median over the rounds.
 * Usage: bench_kafka [per_round] [rounds] (default 40000 9).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kafka_int.h"
#include "tsr/kafka.h"

#define MAX_ROUNDS 64
#define PARTS 4

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof(double), cmp_d);
    return v[n / 2];
}

static void die(const char *what, const tsr_error_t *err) {
    fprintf(stderr, "bench_kafka: %s: %s\n", what, err->msg);
    exit(1);
}

/* A ~100-byte event: {"user":"u00042","ts":1700000000123,"amount":123.25,"country":"DE",
 * "pad":"xxx..."} padded to exactly 100 bytes. */
static int make_msg(char *buf, long i) {
    int n = snprintf(buf, 128, "{\"user\":\"u%05ld\",\"ts\":%ld,\"amount\":%ld.25,\"country\":\"DE\",\"pad\":\"",
                     i % 10000, 1700000000000L + i, i % 1000);
    while (n < 98) buf[n++] = 'x';
    buf[n++] = '"';
    buf[n++] = '}';
    return n;
}

static volatile size_t sink;

int main(int argc, char **argv) {
    long per_round = argc > 1 ? atol(argv[1]) : 40000;
    int rounds = argc > 2 ? atoi(argv[2]) : 9;
    if (per_round < 1000 || per_round > 150000 || rounds < 1 || rounds > MAX_ROUNDS) {
        fprintf(stderr, "usage: bench_kafka [per_round 1000..150000] [rounds 1..64]\n");
        return 2;
    }
    static const tsr_kafka_field_t fields[] = {
        {"user", TSR_STRING, 1}, {"ts", TSR_LONG, 1}, {"amount", TSR_DOUBLE, 0},
        {"country", TSR_STRING, 0}};
    tsr_error_t err;
    tsr_kafka_mock_t *m;
    const char *topics[] = {"bench"};
    tsr_kafka_mock_opts_t mo = {PARTS, topics, 1};
    if (tsr_kafka_mock_start(&mo, &m, &err)) die("mock", &err);
    const char *bs = tsr_kafka_mock_bootstrap(m);
    tsr_kafka_producer_t *p;
    if (tsr_kafka_producer_open(bs, &p, &err)) die("producer", &err);
    tsr_kafka_consumer_opts_t co = {.bootstrap = bs, .topic = "bench",
                                    .default_offset = TSR_KAFKA_OFFSET_BEGINNING};
    tsr_kafka_consumer_t *c;
    if (tsr_kafka_consumer_open(&co, &c, &err)) die("consumer", &err);
    /* warm up: connections and metadata */
    char buf[128], key[16];
    int n = make_msg(buf, 0);
    if (tsr_kafka_producer_send(p, "bench", "w", 1, buf, (size_t)n, -1, &err) ||
        tsr_kafka_producer_flush(p, 10000, &err))
        die("warm-up", &err);
    long warm = 0;
    for (double t_end = now() + 10; warm < 1 && now() < t_end;) {
        const tsr_kafka_msg_t *msgs;
        int got = tsr_kafka_consumer_poll(c, 100, &msgs, &err);
        if (got < 0) die("warm-up poll", &err);
        warm += got;
    }

    double t_ser[MAX_ROUNDS], t_prod[MAX_ROUNDS], t_cons[MAX_ROUNDS], t_parse[MAX_ROUNDS],
        t_jparse[MAX_ROUNDS], t_cp[MAX_ROUNDS];
    tsr_value_t row[4];
    tsr_arena_t arena;
    tsr_arena_init(&arena, 0);
    char *texts = malloc((size_t)per_round * 100);
    long bad = 0;
    for (int r = 0; r < rounds; r++) {
        /* baseline: serialize only */
        double t0 = now();
        size_t total = 0;
        for (long i = 0; i < per_round; i++) {
            total += (size_t)make_msg(buf, i);
            total += (size_t)snprintf(key, sizeof key, "u%05ld", i % 10000);
        }
        sink = total;
        t_ser[r] = now() - t0;
        /* produce (keyed, like `tessera produce --key-column user`) */
        t0 = now();
        for (long i = 0; i < per_round; i++) {
            int vl = make_msg(buf, i);
            int kl = snprintf(key, sizeof key, "u%05ld", i % 10000);
            if (tsr_kafka_producer_send(p, "bench", key, (size_t)kl, buf, (size_t)vl, -1, &err))
                die("send", &err);
            memcpy(texts + i * 100, buf, 100);
        }
        if (tsr_kafka_producer_flush(p, 60000, &err)) die("flush", &err);
        t_prod[r] = now() - t0;
        /* consume, odd rounds also parse (same broker data: we re-read the round from the
         * consumer at a second pass below) */
        t0 = now();
        long got = 0;
        while (got < per_round) {
            const tsr_kafka_msg_t *msgs;
            int k = tsr_kafka_consumer_poll(c, 1000, &msgs, &err);
            if (k < 0) die("poll", &err);
            if (k == 0 && now() - t0 > 60) {
                fprintf(stderr, "bench_kafka: consumer stalled at %ld/%ld (last error: %s)\n",
                        got, per_round, tsr_kafka_consumer_last_error(c));
                return 1;
            }
            for (int i = 0; i < k; i++) sink += msgs[i].value_len;
            got += k;
        }
        t_cons[r] = now() - t0;
        /* parse only, from memory */
        t0 = now();
        for (long i = 0; i < per_round; i++) {
            if (tsr_kafka_json_to_row(texts + i * 100, 100, fields, 4, &arena, row, &err)) bad++;
            if ((i & 1023) == 0) tsr_arena_reset(&arena);
        }
        t_parse[r] = now() - t0;
        t0 = now();
        for (long i = 0; i < per_round; i++) {
            if (tsr__kafka_row_jansson(texts + i * 100, 100, fields, 4, &arena, row, &err)) bad++;
            if ((i & 1023) == 0) tsr_arena_reset(&arena);
        }
        t_jparse[r] = now() - t0;
        /* consume + parse: produce the round again (not timed), consume and parse it */
        for (long i = 0; i < per_round; i++) {
            int vl = make_msg(buf, i);
            if (tsr_kafka_producer_send(p, "bench", NULL, 0, buf, (size_t)vl, -1, &err))
                die("send", &err);
        }
        if (tsr_kafka_producer_flush(p, 60000, &err)) die("flush", &err);
        t0 = now();
        got = 0;
        while (got < per_round) {
            const tsr_kafka_msg_t *msgs;
            int k = tsr_kafka_consumer_poll(c, 1000, &msgs, &err);
            if (k < 0) die("poll", &err);
            if (k == 0 && now() - t0 > 60) {
                fprintf(stderr, "bench_kafka: consumer stalled at %ld/%ld (last error: %s)\n",
                        got, per_round, tsr_kafka_consumer_last_error(c));
                return 1;
            }
            for (int i = 0; i < k; i++)
                if (tsr_kafka_msg_to_row(&msgs[i], fields, 4, &arena, row, &err)) bad++;
            tsr_arena_reset(&arena);
            got += k;
        }
        t_cp[r] = now() - t0;
    }
    if (bad) {
        fprintf(stderr, "bench_kafka: %ld messages failed to parse\n", bad);
        return 1;
    }
    double per = (double)per_round;
    printf("bench_kafka: %ld messages of 100 B per round, %d rounds, %d partitions, mock broker "
           "at %s (median of rounds)\n",
           per_round, rounds, PARTS, bs);
    printf("  %-34s %8.2f M msgs/s\n", "serialize only (baseline)", per / median(t_ser, rounds) / 1e6);
    printf("  %-34s %8.2f M msgs/s\n", "produce (send + flush, keyed)", per / median(t_prod, rounds) / 1e6);
    printf("  %-34s %8.2f M msgs/s\n", "consume (poll, borrowed views)", per / median(t_cons, rounds) / 1e6);
    printf("  %-34s %8.2f M msgs/s\n", "parse only, in memory (baseline)", per / median(t_parse, rounds) / 1e6);
    printf("  %-34s %8.2f M msgs/s\n", "parse only, jansson path alone", per / median(t_jparse, rounds) / 1e6);
    printf("  %-34s %8.2f M msgs/s\n", "consume + parse to typed rows", per / median(t_cp, rounds) / 1e6);
    free(texts);
    tsr_arena_free(&arena);
    tsr_kafka_consumer_close(c);
    tsr_kafka_producer_close(p);
    tsr_kafka_mock_stop(m);
    return 0;
}
