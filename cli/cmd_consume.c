/*
 * cmd_consume.c — `tessera consume --topic T [--bootstrap ADDR] [--from-beginning]
 * [--partition P ...] [--max N] [--timeout-ms M]`: prints messages of a topic as JSON lines,
 * one per message: {"partition":P,"offset":O,"timestamp":MS,"key":"k"|null,"value":V}, where V
 * is the message's JSON when its value parses as JSON, else the value as a JSON string.
 *
 * Uses the worker's consumer (tsr/kafka.h): explicit assignment, no consumer group, nothing
 * committed. Starts at the end of each partition (only new messages) unless
 * --from-beginning. Stops after --max messages, after --timeout-ms without a new message, or
 * on SIGINT/SIGTERM; all three exit 0.
 */
#include <errno.h>
#include <jansson.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli_int.h"
#include "tsr/kafka.h"

static volatile sig_atomic_t g_stop;
static void on_signal(int sig) {
    (void)sig;
    g_stop = 1;
}

static int64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int parse_ll(const char *s, long long lo, long long hi, long long *out) {
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) return -1;
    *out = v;
    return 0;
}

static void print_msg(const tsr_kafka_msg_t *m, tsr_buf_t *b) {
    tsr_buf_clear(b);
    tsr_buf_printf(b, "{\"partition\":%d,\"offset\":%lld,\"timestamp\":%lld,\"key\":",
                   (int)m->partition, (long long)m->offset, (long long)m->timestamp_ms);
    if (m->key) {
        json_t *k = json_stringn_nocheck(m->key, m->key_len);
        char *t = k ? json_dumps(k, JSON_ENCODE_ANY) : NULL;
        tsr_buf_puts(b, t ? t : "null");
        free(t);
        json_decref(k);
    } else {
        tsr_buf_puts(b, "null");
    }
    tsr_buf_puts(b, ",\"value\":");
    json_error_t je;
    json_t *v = m->value ? json_loadb(m->value, m->value_len, JSON_DECODE_ANY, &je) : NULL;
    if (!v && m->value) v = json_stringn_nocheck(m->value, m->value_len);
    char *t = v ? json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
    tsr_buf_puts(b, t ? t : "null");
    free(t);
    json_decref(v);
    tsr_buf_puts(b, "}\n");
    fwrite(b->data, 1, b->len, stdout);
}

static int run_consume(int argc, char **argv) {
    const tsr_cli_cmd_t *cmd = &tsr_cmd_consume_def;
    const char *topic = NULL, *bootstrap = NULL;
    int from_beginning = 0;
    long long max = -1, timeout_ms = -1, v;
    int32_t *parts = tsr_calloc((size_t)argc, sizeof *parts);
    size_t nparts = 0;
    int rc = 0;
    for (int i = 1; i < argc && !rc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--from-beginning") == 0) {
            from_beginning = 1;
            continue;
        }
        if (a[0] != '-') {
            rc = tsr_cli_usage_error(cmd, "unexpected argument '%s'", a);
            break;
        }
        if (i + 1 >= argc) {
            rc = tsr_cli_usage_error(cmd, "%s needs a value (or is unknown)", a);
            break;
        }
        const char *s = argv[++i];
        if (strcmp(a, "--topic") == 0) topic = s;
        else if (strcmp(a, "--bootstrap") == 0) bootstrap = s;
        else if (strcmp(a, "--max") == 0) {
            if (parse_ll(s, 1, INT64_MAX, &max))
                rc = tsr_cli_usage_error(cmd, "--max must be a count >= 1, got '%s'", s);
        } else if (strcmp(a, "--timeout-ms") == 0) {
            if (parse_ll(s, 0, 86400000LL * 365, &timeout_ms))
                rc = tsr_cli_usage_error(cmd, "--timeout-ms must be >= 0, got '%s'", s);
        } else if (strcmp(a, "--partition") == 0) {
            if (parse_ll(s, 0, 1000000, &v))
                rc = tsr_cli_usage_error(cmd, "--partition must be >= 0, got '%s'", s);
            else parts[nparts++] = (int32_t)v;
        } else {
            rc = tsr_cli_usage_error(cmd, "unknown option '%s'", a);
        }
    }
    if (!rc && (!topic || !*topic)) rc = tsr_cli_usage_error(cmd, "--topic is required");
    if (rc) {
        free(parts);
        return rc;
    }
    if (!bootstrap) bootstrap = getenv("TESSERA_KAFKA");
    if (!bootstrap || !*bootstrap) bootstrap = TSR_KAFKA_DEFAULT_BOOTSTRAP;

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    tsr_error_t err;
    tsr_error_clear(&err);
    tsr_kafka_consumer_opts_t o;
    memset(&o, 0, sizeof o);
    o.bootstrap = bootstrap;
    o.topic = topic;
    o.partitions = nparts ? parts : NULL;
    o.npartitions = nparts;
    o.default_offset = from_beginning ? TSR_KAFKA_OFFSET_BEGINNING : TSR_KAFKA_OFFSET_END;
    o.timeout_ms = 10000;
    tsr_kafka_consumer_t *c = NULL;
    rc = tsr_kafka_consumer_open(&o, &c, &err);
    free(parts);
    if (rc) {
        fprintf(stderr, "tessera consume: %s\n", err.msg);
        return tsr_error_exit_code(rc);
    }
    tsr_buf_t b;
    tsr_buf_init(&b);
    long long seen = 0;
    int64_t last = now_ms();
    while (!g_stop && (max < 0 || seen < max)) {
        const tsr_kafka_msg_t *msgs;
        int n = tsr_kafka_consumer_poll(c, 100, &msgs, &err);
        if (n < 0) {
            fprintf(stderr, "tessera consume: %s\n", err.msg);
            rc = n;
            break;
        }
        for (int i = 0; i < n && (max < 0 || seen < max); i++, seen++) print_msg(&msgs[i], &b);
        if (n > 0) {
            fflush(stdout);
            last = now_ms();
        } else if (timeout_ms >= 0 && now_ms() - last >= timeout_ms) {
            break;
        }
    }
    fflush(stdout);
    fprintf(stderr, "tessera consume: %lld messages from topic '%s', lag %lld\n", seen, topic,
            (long long)tsr_kafka_consumer_total_lag(c));
    tsr_buf_free(&b);
    tsr_kafka_consumer_close(c);
    return rc ? tsr_error_exit_code(rc) : 0;
}

const tsr_cli_cmd_t tsr_cmd_consume_def = {
    "consume",
    "print the messages of a Kafka topic as JSON lines",
    "usage: tessera consume --topic T [--bootstrap ADDR] [--from-beginning] [--partition P ...]\n"
    "                       [--max N] [--timeout-ms M]\n"
    "\n"
    "Prints one JSON object per message:\n"
    "  {\"partition\":P,\"offset\":O,\"timestamp\":MS,\"key\":\"k\"|null,\"value\":V}\n"
    "V is the message's JSON when the value parses as JSON, otherwise the value as a string.\n"
    "No consumer group is joined and no offset is committed.\n"
    "\n"
    "options:\n"
    "  --topic T          topic to read\n"
    "  --bootstrap ADDR   host:port (default $TESSERA_KAFKA, else 127.0.0.1:9092)\n"
    "  --from-beginning   start at the oldest message (default: only new messages)\n"
    "  --partition P      read only partition P (repeatable; default all)\n"
    "  --max N            stop after N messages\n"
    "  --timeout-ms M     stop after M ms without a new message (default: wait for a signal)\n"
    "\n"
    "exit: 0 ok (max reached, idle timeout or signal), 1 error, 2 usage, 3 topic or\n"
    "      partition not found, 4 broker unavailable\n",
    run_consume,
};
