/*
 * cmd_produce.c — `tessera produce --topic T --file F.jsonl [--bootstrap ADDR]
 * [--key-column C] [--max-bad-lines N]`: writes each JSON Lines row as one Kafka message.
 *
 * Rules: the message value is the row's JSON object text exactly as written in the file
 * (surrounding whitespace trimmed); with --key-column C the key is the value of C as text (a
 * string's characters, otherwise its compact JSON text: 42, true), which picks the partition
 * (murmur2, Kafka's Java default, so other clients agree). Blank lines are skipped. A bad
 * line — not a JSON object, or no usable key column — is reported as FILE:LINE and skipped;
 * when more than --max-bad-lines (default 0) were seen the run fails with exit 1 (lines
 * before that point have been sent). The run waits until every message is acknowledged.
 */
#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli_int.h"
#include "tsr/kafka.h"

#define PRODUCE_FLUSH_MS 30000
#define PRODUCE_CONNECT_MS 5000
#define PRODUCE_MAX_REPORTED 20

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* The key column's value as text, into key (caller frees *tofree). Returns 0 or -1 with why. */
static int key_text(json_t *obj, const char *col, const char **key, size_t *klen, char **tofree,
                    const char **why) {
    json_t *k = json_object_get(obj, col);
    *tofree = NULL;
    if (!k || json_is_null(k)) {
        *why = k ? "is null" : "is missing";
        return -1;
    }
    if (json_is_string(k)) {
        *key = json_string_value(k);
        *klen = json_string_length(k);
        return 0;
    }
    if (json_is_array(k) || json_is_object(k)) {
        *why = "is a list or object, not a scalar";
        return -1;
    }
    *tofree = json_dumps(k, JSON_COMPACT | JSON_ENCODE_ANY);
    if (!*tofree) {
        *why = "cannot be printed";
        return -1;
    }
    *key = *tofree;
    *klen = strlen(*tofree);
    return 0;
}

static int run_produce(int argc, char **argv) {
    const tsr_cli_cmd_t *cmd = &tsr_cmd_produce_def;
    const char *topic = NULL, *file = NULL, *bootstrap = NULL, *keycol = NULL;
    unsigned long long max_bad = 0;
    int raw = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--raw") == 0) {
            raw = 1;
            continue;
        }
        if (a[0] != '-') return tsr_cli_usage_error(cmd, "unexpected argument '%s'", a);
        if (i + 1 >= argc) return tsr_cli_usage_error(cmd, "%s needs a value (or is unknown)", a);
        const char *v = argv[++i];
        if (strcmp(a, "--topic") == 0) topic = v;
        else if (strcmp(a, "--file") == 0) file = v;
        else if (strcmp(a, "--bootstrap") == 0) bootstrap = v;
        else if (strcmp(a, "--key-column") == 0) keycol = v;
        else if (strcmp(a, "--max-bad-lines") == 0) {
            char *end;
            errno = 0;
            max_bad = strtoull(v, &end, 10);
            if (errno || end == v || *end || v[0] == '-')
                return tsr_cli_usage_error(cmd, "--max-bad-lines must be a count, got '%s'", v);
        } else {
            return tsr_cli_usage_error(cmd, "unknown option '%s'", a);
        }
    }
    if (!topic || !*topic) return tsr_cli_usage_error(cmd, "--topic is required");
    if (!file) return tsr_cli_usage_error(cmd, "--file is required");
    if (keycol && !*keycol) return tsr_cli_usage_error(cmd, "--key-column is empty");
    if (!bootstrap) bootstrap = getenv("TESSERA_KAFKA");
    if (!bootstrap || !*bootstrap) bootstrap = TSR_KAFKA_DEFAULT_BOOTSTRAP;

    FILE *in = strcmp(file, "-") == 0 ? stdin : fopen(file, "r");
    if (!in) {
        int e = errno;
        fprintf(stderr, "tessera produce: cannot open %s: %s\n", file, strerror(e));
        return tsr_error_exit_code(e == ENOENT ? TSR_ENOTFOUND : TSR_EIO);
    }
    tsr_error_t err;
    tsr_error_clear(&err);
    tsr_kafka_producer_t *p = NULL;
    int32_t nparts = 0;
    int rc = tsr_kafka_producer_open(bootstrap, &p, &err);
    if (!rc) rc = tsr_kafka_producer_partitions(p, topic, PRODUCE_CONNECT_MS, &nparts, &err);
    if (rc) {
        fprintf(stderr, "tessera produce: %s\n", err.msg);
        tsr_kafka_producer_close(p);
        if (in != stdin) fclose(in);
        return tsr_error_exit_code(rc);
    }
    double t0 = now_s();
    char *line = NULL;
    size_t cap = 0;
    ssize_t got;
    unsigned long long lineno = 0, bad = 0, sent = 0;
    while ((got = getline(&line, &cap, in)) >= 0) {
        lineno++;
        size_t n = (size_t)got;
        const char *s = line;
        while (n && (s[n - 1] == '\n' || s[n - 1] == '\r' || s[n - 1] == ' ' || s[n - 1] == '\t'))
            n--;
        while (n && (*s == ' ' || *s == '\t')) s++, n--;
        if (n == 0) continue;
        json_error_t je;
        json_t *obj = json_loadb(s, n, 0, &je);
        const char *why = NULL;
        char whybuf[200];
        const char *key = NULL;
        size_t klen = 0;
        char *tofree = NULL;
        if (!obj) {
            snprintf(whybuf, sizeof whybuf, "invalid JSON at column %d: %s", je.column, je.text);
            why = whybuf;
        } else if (!json_is_object(obj)) {
            why = "not a JSON object";
        } else if (keycol) {
            const char *kwhy = NULL;
            if (key_text(obj, keycol, &key, &klen, &tofree, &kwhy)) {
                snprintf(whybuf, sizeof whybuf, "key column '%s' %s", keycol, kwhy);
                why = whybuf;
            }
        }
        if (why && raw) {
            /* --raw: sent as written (a test of consumers' bad-message handling), unkeyed
             * when no key could be read */
            why = NULL;
            key = NULL;
            klen = 0;
        }
        if (why) {
            if (bad < PRODUCE_MAX_REPORTED)
                fprintf(stderr, "%s:%llu: %s%s\n", file, lineno, why,
                        bad + 1 > max_bad ? "" : " (skipped)");
            bad++;
            json_decref(obj);
            if (bad > max_bad) break;
            continue;
        }
        rc = tsr_kafka_producer_send(p, topic, key, klen, s, n, -1, &err);
        free(tofree);
        json_decref(obj);
        if (rc) {
            fprintf(stderr, "tessera produce: %s:%llu: %s\n", file, lineno, err.msg);
            break;
        }
        sent++;
    }
    int read_err = in != stdin ? ferror(in) : 0;
    free(line);
    if (in != stdin) fclose(in);
    int frc = tsr_kafka_producer_flush(p, PRODUCE_FLUSH_MS, &err);
    tsr_kafka_producer_stats_t st;
    tsr_kafka_producer_stats(p, &st);
    tsr_kafka_producer_close(p);
    double dt = now_s() - t0;
    if (bad > PRODUCE_MAX_REPORTED)
        fprintf(stderr, "%s: ... %llu bad lines in all\n", file, bad);
    printf("produced %llu messages to topic '%s' (%d partitions) at %s in %.3f s; %llu bad "
           "lines skipped\n",
           (unsigned long long)st.delivered, topic, (int)nparts, bootstrap, dt,
           bad > max_bad ? 0ULL : bad);
    if (frc) {
        fprintf(stderr, "tessera produce: %s\n", err.msg);
        return tsr_error_exit_code(frc);
    }
    if (rc) return tsr_error_exit_code(rc);
    if (read_err) {
        fprintf(stderr, "tessera produce: read error on %s after line %llu\n", file, lineno);
        return tsr_error_exit_code(TSR_EIO);
    }
    if (bad > max_bad) {
        fprintf(stderr,
                "tessera produce: %s:%llu: stopped: %llu bad lines > --max-bad-lines %llu "
                "(%llu messages before it were sent)\n",
                file, lineno, bad, max_bad, sent);
        return tsr_error_exit_code(TSR_ECORRUPT);
    }
    return 0;
}

const tsr_cli_cmd_t tsr_cmd_produce_def = {
    "produce",
    "write the rows of a JSON Lines file to a Kafka topic",
    "usage: tessera produce --topic T --file F.jsonl [--bootstrap ADDR] [--key-column C]\n"
    "                       [--max-bad-lines N] [--raw]\n"
    "\n"
    "Sends each non-blank line of F (a JSON object; '-' reads stdin) as one message whose\n"
    "value is the line's text, waits until every message is acknowledged, and prints the\n"
    "count. With --key-column C the message key is C's value as text (strings as is, numbers\n"
    "and booleans as JSON), and the key decides the partition (murmur2, as Kafka's Java\n"
    "client), so one key always lands on one partition.\n"
    "\n"
    "options:\n"
    "  --topic T           topic (created with 4 partitions if the broker auto-creates)\n"
    "  --file F            JSON Lines input, or - for stdin\n"
    "  --bootstrap ADDR    host:port[,host:port] (default $TESSERA_KAFKA, else 127.0.0.1:9092)\n"
    "  --key-column C      key each message by field C (a line without C is bad)\n"
    "  --max-bad-lines N   skip up to N bad lines (reported as FILE:LINE); default 0: the first\n"
    "                      bad line stops the run (lines before it are already sent)\n"
    "  --raw               send every non-blank line as written, even when it is not a JSON\n"
    "                      object (unkeyed when its key cannot be read): for testing how\n"
    "                      consumers handle bad messages\n"
    "\n"
    "exit: 0 all delivered, 1 error (bad lines, delivery failed), 2 usage, 3 file or topic\n"
    "      not found, 4 broker unavailable or delivery timed out\n",
    run_produce,
};
