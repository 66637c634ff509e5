/*
 * cmd_backfill.c — `tessera backfill CONF --start-ds D1 --end-ds D2 [options]`: the offline
 * engine's front-end (SPEC §5). Loads and validates the config against the warehouse's table
 * schemas, runs the backfill (offline/backfill.h) with progress on stderr, and prints a
 * summary: rows, partitions, time, rows/s and where the output lives.
 *
 * Remote mode, `--server ADDR`: CONF is the NAME of a config applied to that server (or a
 * config file, whose metaData.name is sent) and the server runs the backfill
 * (AdminService.Backfill): `tessera serve` in its process, a coordinator split into day-range
 * shards over its workers. --warehouse is made absolute here (the server resolves paths in its
 * own directory); the engine's tuning options are local-only. The call waits for the whole
 * backfill (default deadline 24 h). The backfill is a job with an id chosen here: a failover of
 * the cluster's leader coordinator is followed (tsr_cli_call_job) and the job resumed there.
 */
#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "cli_int.h"
#include "tsr/backfill.h"
#include "tsr/pbvalue.h"
#include "tsr/time.h"

#define BACKFILL_TIMEOUT_MS (24 * 3600 * 1000LL)

static double mono_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* The config name to send for CONF (a file: its metaData.name; else CONF itself) into *name
 * (caller frees). Returns 0 or an exit code (reported). */
static int remote_name(const char *conf, char **name) {
    *name = NULL;
    struct stat st;
    if (stat(conf, &st) != 0 || !S_ISREG(st.st_mode)) {
        *name = tsr_strdup(conf);
        return 0;
    }
    json_error_t je;
    json_t *root = json_load_file(conf, 0, &je);
    if (!root) {
        fprintf(stderr, "tessera backfill: %s:%d:%d: %s\n", conf, je.line, je.column, je.text);
        return tsr_error_exit_code(TSR_EPARSE);
    }
    json_t *md = json_object_get(root, "metaData");
    json_t *nm = json_is_object(md) ? json_object_get(md, "name") : NULL;
    if (!json_is_string(nm) || json_string_length(nm) == 0) {
        fprintf(stderr, "tessera backfill: %s: metaData.name: required (a non-empty string)\n", conf);
        json_decref(root);
        return tsr_error_exit_code(TSR_ECONFIG);
    }
    *name = tsr_strdup(json_string_value(nm));
    json_decref(root);
    return 0;
}

static int run_remote(const tsr_cli_client_opts_t *co, const char *conf, const char *start, const char *end,
                      const char *warehouse, int quiet) {
    const tsr_cli_cmd_t *cmd = &tsr_cmd_backfill_def;
    char wh_abs[PATH_MAX] = "";
    if (warehouse && *warehouse && !realpath(warehouse, wh_abs)) {
        int e = errno;
        fprintf(stderr, "tessera backfill: --warehouse %s: %s\n", warehouse, strerror(e));
        return tsr_error_exit_code(e == ENOENT ? TSR_ENOTFOUND : TSR_EIO);
    }
    char *name;
    int rc = remote_name(conf, &name);
    if (rc) return rc;
    tsr_cli_conn_t conn;
    if ((rc = tsr_cli_conn_open(&conn, cmd, co)) != 0) {
        free(name);
        return rc;
    }
    if (!quiet) fprintf(stderr, "backfill %s ds=%s..%s: running on %s\n", name, start, end, conn.server);
    Tessera__V1__BackfillRequest req = TESSERA__V1__BACKFILL_REQUEST__INIT;
    char job_id[64];
    tsr_cli_job_id("backfill", job_id, sizeof job_id);
    req.name = name;
    req.start_ds = (char *)start;
    req.end_ds = (char *)end;
    req.warehouse = wh_abs;
    req.job_id = job_id;
    double t0 = mono_s();
    int followed = 0;
    rc = tsr_cli_call_job(&conn, "/tessera.v1.AdminService/Backfill", &req, name, NULL, job_id, &followed);
    double dt = mono_s() - t0;
    int exit_code = 0;
    if (rc) {
        exit_code = tsr_error_exit_code(rc);
    } else {
        tsr_arena_t arena;
        tsr_arena_init(&arena, 0);
        ProtobufCAllocator pa;
        tsr_pb_allocator(&arena, &pa);
        Tessera__V1__BackfillResponse *resp = NULL;
        if (followed) {             /* the job's record, once done, says what Backfill would have */
            Tessera__V1__GetJobResponse *j =
                tessera__v1__get_job_response__unpack(&pa, conn.reply.body.len, conn.reply.body.data);
            resp = j ? j->backfill : NULL;
        } else {
            resp = tessera__v1__backfill_response__unpack(&pa, conn.reply.body.len, conn.reply.body.data);
        }
        if (!resp) {
            fprintf(stderr, "tessera backfill: malformed BackfillResponse from %s\n", conn.server);
            exit_code = tsr_error_exit_code(TSR_ECORRUPT);
        } else {
            printf("backfilled %s ds=%s..%s: %lld rows in %lld partitions (%lld shards) written to %s in %.3f s\n",
                   resp->name && *resp->name ? resp->name : name, start, end, (long long)resp->rows,
                   (long long)resp->days, (long long)resp->shards, resp->output ? resp->output : "", dt);
            fflush(stdout);
        }
        tsr_arena_free(&arena);
    }
    tsr_cli_conn_close(&conn);
    free(name);
    return exit_code;
}

static int parse_count(const char *s, uint64_t *out) {
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *end || s[0] == '-') return -1;
    *out = v;
    return 0;
}

static int run_backfill(int argc, char **argv) {
    const tsr_cli_cmd_t *cmd = &tsr_cmd_backfill_def;
    tsr_config_options_t copt = {TSR_DIALECT_AUTO, NULL};
    tsr_backfill_opts_t o;
    memset(&o, 0, sizeof o);
    o.progress = stderr;
    o.format = TSR_FORMAT_JSONL;
    const char *conf = NULL, *start = NULL, *end = NULL, *local_only = NULL;
    tsr_cli_client_opts_t co = {.timeout_ms = BACKFILL_TIMEOUT_MS};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int r = tsr_cli_client_option(cmd, argc, argv, &i, &co, 0);
        if (r < 0) return -r;
        if (r > 0) continue;
        if (a[0] != '-' || !a[1]) {
            if (conf) return tsr_cli_usage_error(cmd, "only one CONF expected (got '%s' and '%s')", conf, a);
            conf = a;
            continue;
        }
        int used = tsr_cli_config_option(cmd, argc, argv, &i, &copt);
        if (used < 0) return -used;
        if (used) continue;
        if (strcmp(a, "--quiet") == 0 || strcmp(a, "-q") == 0) {
            o.progress = NULL;
            continue;
        }
        if (i + 1 >= argc) return tsr_cli_usage_error(cmd, "%s needs a value (or unknown option)", a);
        const char *v = argv[++i];
        uint64_t n;
        if (strcmp(a, "--start-ds") != 0 && strcmp(a, "--end-ds") != 0) local_only = a;
        if (strcmp(a, "--start-ds") == 0) start = v;
        else if (strcmp(a, "--end-ds") == 0) end = v;
        else if (strcmp(a, "--format") == 0) {
            if (strcmp(v, "jsonl") == 0) o.format = TSR_FORMAT_JSONL;
            else if (strcmp(v, "csv") == 0) o.format = TSR_FORMAT_CSV;
            else return tsr_cli_usage_error(cmd, "--format must be jsonl or csv, got '%s'", v);
        } else if (strcmp(a, "--parallelism") == 0) {
            if (parse_count(v, &n) || n < 1 || n > 256)
                return tsr_cli_usage_error(cmd, "--parallelism must be 1..256, got '%s'", v);
            o.parallelism = (int)n;
        } else if (strcmp(a, "--memory-mb") == 0) {
            if (parse_count(v, &n) || n < 16)
                return tsr_cli_usage_error(cmd, "--memory-mb must be a number >= 16, got '%s'", v);
            o.memory_bytes = n << 20;
        } else if (strcmp(a, "--max-bad-rows") == 0) {
            if (parse_count(v, &n))
                return tsr_cli_usage_error(cmd, "--max-bad-rows must be a count, got '%s'", v);
            o.max_bad_rows = n;
        } else {
            return tsr_cli_usage_error(cmd, "unknown option '%s'", a);
        }
    }
    if (!conf) return tsr_cli_usage_error(cmd, "no CONF given");
    if (!start || !end) return tsr_cli_usage_error(cmd, "--start-ds and --end-ds are required");
    if (tsr_ds_parse(start, &o.start_day))
        return tsr_cli_usage_error(cmd, "--start-ds '%s' is not a date YYYY-MM-DD", start);
    if (tsr_ds_parse(end, &o.end_day))
        return tsr_cli_usage_error(cmd, "--end-ds '%s' is not a date YYYY-MM-DD", end);
    if (o.end_day < o.start_day)
        return tsr_cli_usage_error(cmd, "--end-ds %s is before --start-ds %s", end, start);
    if (co.server) {
        if (local_only)
            return tsr_cli_usage_error(cmd, "%s is an option of a local run (not with --server)", local_only);
        if (copt.dialect != TSR_DIALECT_AUTO)
            return tsr_cli_usage_error(cmd, "--dialect is an option of a local run (not with --server)");
        return run_remote(&co, conf, start, end, copt.warehouse, o.progress == NULL);
    }
    if (!copt.warehouse) copt.warehouse = "warehouse";
    o.warehouse = copt.warehouse;

    tsr_config_t *c;
    int rc = tsr_cli_load_config(conf, &copt, &c);
    if (rc) return rc;
    tsr_backfill_stats_t st;
    tsr_error_t err;
    tsr_error_clear(&err);
    rc = tsr_backfill_run(c, &o, &st, &err);
    if (rc) {
        fprintf(stderr, "tessera backfill: %s: %s\n", conf, err.msg);
        tsr_config_free(c);
        return tsr_error_exit_code(rc);
    }
    fprintf(stderr,
            "backfill %s: %llu rows in %llu partitions written to %s\n"
            "  read %llu rows (%llu filtered, %llu bad), %llu aggregation inputs, %llu %s, "
            "%.2f s, %.0f rows/s read\n",
            tsr_config_metadata(c)->name, (unsigned long long)st.rows_written,
            (unsigned long long)st.partitions_written, st.output_dir,
            (unsigned long long)st.rows_read, (unsigned long long)st.rows_filtered,
            (unsigned long long)st.bad_rows, (unsigned long long)st.events,
            (unsigned long long)st.left_rows,
            c->kind == TSR_CONF_JOIN ? "left rows" : "(key, ds) pairs", st.seconds,
            st.seconds > 0 ? (double)st.rows_read / st.seconds : 0.0);
    tsr_config_free(c);
    return 0;
}

const tsr_cli_cmd_t tsr_cmd_backfill_def = {
    "backfill",
    "compute point-in-time-correct training data for a Join or GroupBy",
    "usage: tessera backfill CONF --start-ds YYYY-MM-DD --end-ds YYYY-MM-DD [options]\n"
    "       tessera backfill NAME --start-ds YYYY-MM-DD --end-ds YYYY-MM-DD --server ADDR\n"
    "                        [--warehouse DIR] [--timeout-ms MS]\n"
    "\n"
    "Computes a Join's features for every left row with ds in [start, end], as of each row's\n"
    "time (SPEC section 5), or a GroupBy's values at the end of each ds, from warehouse tables.\n"
    "Output: <warehouse>/<outputNamespace>/<cleanName>/ds=YYYY-MM-DD/, each partition written\n"
    "atomically (a rerun replaces it; a failed run leaves none half-written).\n"
    "With --server the server runs it (NAME: a config applied there; a cluster splits the days\n"
    "over its workers and retries a shard whose worker is lost; the job survives a failover of\n"
    "the leader coordinator, which the command follows) and the output is written under the\n"
    "server's warehouse (or --warehouse, made absolute).\n"
    "\n"
    "options:\n"
    "  --warehouse DIR      warehouse root (default ./warehouse)\n"
    "  --format jsonl|csv   output format (default jsonl)\n"
    "  --parallelism N      threads (default: the number of cores)\n"
    "  --memory-mb M        memory budget in MiB (default 2048)\n"
    "  --max-bad-rows N     skip up to N malformed input rows, counting them (default 0)\n"
    "  --dialect D          airbnb|zipline|auto operation ids (default: detect)\n"
    "  --quiet              no progress lines\n"
    "  --server ADDR        run on that server (tessera serve or a coordinator): remote mode;\n"
    "                       a cluster's coordinators may be listed (A,B) for failovers\n"
    "  --timeout-ms MS      remote: deadline of the call (default 86400000: 24 h)\n"
    "\n"
    "exit: 0 ok, 1 error (invalid config, bad rows, I/O), 2 usage, 3 a config, table or\n"
    "      partition is missing, 4 server unavailable or no answer within the deadline\n",
    run_backfill,
};
