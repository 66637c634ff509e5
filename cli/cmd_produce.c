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
#include "tsr/http.h"
#include "tsr/kafka.h"
#include "tsr/table.h"
#include "tsr/time.h"

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

/* --table NAME --ds D: every row of one warehouse partition, in row order (SPEC §3), as a
 * JSON object with the table's columns (null columns left out). */
static int produce_table(const char *topic, const char *name, int64_t day, const char *warehouse,
                         const char *bootstrap, const char *keycol) {
    if (!bootstrap) bootstrap = getenv("TESSERA_KAFKA");
    if (!bootstrap || !*bootstrap) bootstrap = TSR_KAFKA_DEFAULT_BOOTSTRAP;
    tsr_error_t err;
    tsr_error_clear(&err);
    tsr_table_t *t = NULL;
    int rc = tsr_table_open(warehouse, name, day, day, &t, &err);
    char ds[11];
    tsr_ds_format(day, ds);
    if (rc == 0 && !tsr_table_has_partition(t, day))
        rc = tsr_error_set(&err, TSR_ENOTFOUND, "%s/%s has no partition ds=%s", warehouse, name, ds);
    int kc = -1;
    if (rc == 0 && keycol && (kc = tsr_table_column(t, keycol)) < 0)
        rc = tsr_error_set(&err, TSR_EINVAL, "table %s has no column '%s' (--key-column)", name, keycol);
    if (rc) {
        fprintf(stderr, "tessera produce: %s\n", err.msg);
        tsr_table_free(t);
        return tsr_error_exit_code(rc);
    }
    tsr_kafka_producer_t *p = NULL;
    int32_t nparts = 0;
    rc = tsr_kafka_producer_open(bootstrap, &p, &err);
    if (!rc) rc = tsr_kafka_producer_partitions(p, topic, PRODUCE_CONNECT_MS, &nparts, &err);
    double t0 = now_s();
    tsr_value_t *row = tsr_calloc(t->ncols ? t->ncols : 1, sizeof(tsr_value_t));
    tsr_buf_t msg, key;
    tsr_buf_init(&msg);
    tsr_buf_init(&key);
    unsigned long long sent = 0, nokey = 0;
    for (size_t f = 0; f < t->nfiles && rc == 0; f++) {
        tsr_file_reader_t *r;
        if ((rc = tsr_file_reader_open(t, f, NULL, &r, &err)) != 0) break;
        int got;
        while ((got = tsr_file_reader_next(r, row, &err)) == 1) {
            tsr_buf_clear(&msg);
            tsr_buf_putc(&msg, '{');
            int first = 1;
            for (size_t c = 0; c < t->ncols; c++) {
                if (row[c].kind == TSR_NULL) continue;
                if (!first) tsr_buf_putc(&msg, ',');
                first = 0;
                tsr_http_json_string(&msg, t->col_names[c], strlen(t->col_names[c]));
                tsr_buf_putc(&msg, ':');
                tsr_value_to_json(&row[c], &msg);
            }
            tsr_buf_putc(&msg, '}');
            const void *k = NULL;
            size_t kl = 0;
            if (kc >= 0 && row[kc].kind != TSR_NULL) {
                tsr_buf_clear(&key);
                if (row[kc].kind == TSR_STRING) tsr_buf_append(&key, row[kc].u.s, row[kc].len);
                else tsr_value_to_json(&row[kc], &key);
                k = key.data;
                kl = key.len;
            } else if (kc >= 0) {
                nokey++;
            }
            if ((rc = tsr_kafka_producer_send(p, topic, k, kl, msg.data, msg.len, -1, &err)) != 0) break;
            sent++;
        }
        if (got < 0 && rc == 0) rc = got;
        tsr_file_reader_close(r);
    }
    int frc = p ? tsr_kafka_producer_flush(p, PRODUCE_FLUSH_MS, rc ? NULL : &err) : 0;
    tsr_kafka_producer_stats_t st = {0, 0, 0};
    if (p) tsr_kafka_producer_stats(p, &st);
    tsr_kafka_producer_close(p);
    if (rc == 0) rc = frc;
    if (rc == 0)
        printf("produced %llu messages from %s ds=%s to topic '%s' (%d partitions) at %s in %.3f s%s\n",
               (unsigned long long)st.delivered, name, ds, topic, (int)nparts, bootstrap, now_s() - t0,
               nokey ? " (rows with a null key column went unkeyed)" : "");
    else
        fprintf(stderr, "tessera produce: %s (%llu messages sent before)\n", err.msg, sent);
    free(row);
    tsr_buf_free(&msg);
    tsr_buf_free(&key);
    tsr_table_free(t);
    return rc ? tsr_error_exit_code(rc) : 0;
}

static int run_produce(int argc, char **argv) {
    const tsr_cli_cmd_t *cmd = &tsr_cmd_produce_def;
    const char *topic = NULL, *file = NULL, *bootstrap = NULL, *keycol = NULL;
    const char *table = NULL, *ds = NULL, *warehouse = NULL;
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
        else if (strcmp(a, "--table") == 0) table = v;
        else if (strcmp(a, "--ds") == 0) ds = v;
        else if (strcmp(a, "--warehouse") == 0) warehouse = v;
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
    if (!file && !table) return tsr_cli_usage_error(cmd, "--file or --table is required");
    if (file && table) return tsr_cli_usage_error(cmd, "--file and --table exclude each other");
    if (table && !ds) return tsr_cli_usage_error(cmd, "--table needs --ds (the partition to send)");
    if (!table && (ds || warehouse))
        return tsr_cli_usage_error(cmd, "--ds and --warehouse go with --table");
    int64_t day = 0;
    if (ds && tsr_ds_parse(ds, &day) != 0)
        return tsr_cli_usage_error(cmd, "--ds must be a date YYYY-MM-DD, got '%s'", ds);
    if (table) return produce_table(topic, table, day, warehouse ? warehouse : "warehouse", bootstrap, keycol);
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
    "write the rows of a JSON Lines file or a warehouse partition to a Kafka topic",
    "usage: tessera produce --topic T --file F.jsonl [--bootstrap ADDR] [--key-column C]\n"
    "                       [--max-bad-lines N] [--raw]\n"
    "       tessera produce --topic T --table NS.NAME --ds D [--warehouse DIR] [--bootstrap ADDR]\n"
    "                       [--key-column C]\n"
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
    "  --table NS.NAME --ds D  replay one warehouse partition instead of a file: each row (in\n"
    "                      SPEC row order) becomes a JSON object of the table's columns\n"
    "  --warehouse DIR     warehouse root for --table (default ./warehouse)\n"
    "  --raw               send every non-blank line as written, even when it is not a JSON\n"
    "                      object (unkeyed when its key cannot be read): for testing how\n"
    "                      consumers handle bad messages\n"
    "\n"
    "exit: 0 all delivered, 1 error (bad lines, delivery failed), 2 usage, 3 file or topic\n"
    "      not found, 4 broker unavailable or delivery timed out\n",
    run_produce,
};
