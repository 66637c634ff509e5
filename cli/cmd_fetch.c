/*
 * cmd_fetch.c — `tessera fetch --join NAME | --group-by NAME (--keys JSON [--at-millis MS] |
 * --keys-file F) [--server ADDR]`: online feature values from a running server over
 * FeatureService.FetchJoin / FetchGroupBy (SPEC §6), one JSON object per row on stdout, in
 * input order, shaped exactly like an entry of the HTTP fetch response:
 *     {"status":"Success","entityKeys":{...},"features":{...}}
 *     {"status":"Failure","entityKeys":{...},"error":"..."}
 *
 * Design:
 *   - Input rows: --keys is one JSON object of key columns; --keys-file is JSON Lines, one
 *     {"keys":{...},"at_millis":MS} per line (at_millis optional or null = now; blank lines
 *     skipped; "-" = stdin). Key values are strings, numbers, booleans or null, as in the
 *     HTTP API, and a row has at least one key. Both are parsed with tsr_http_json_parse
 *     (strict, exact int64), so the CLI accepts exactly what the HTTP endpoint accepts.
 *   - Rows are sent in batches of --batch-size (default 1000) rows per call; a batch is read,
 *     sent and printed before the next is read, so memory stays bounded by one batch (one
 *     arena, reset per batch) whatever the file size. A bad line stops the run with
 *     "F:LINE: why" and exit 1 before its batch is sent; earlier batches were already printed.
 *   - entityKeys are the row's keys as given (the HTTP endpoint echoes the request the same
 *     way); features are printed in the order the server sent them (protobuf-c keeps map
 *     entries in wire order), through tsr_http_fetch_write_result, the HTTP printer.
 *   - A row's Failure is data, not an error: exit 0. A failing call (unknown name: NOT_FOUND →
 *     3; server down or deadline passed → 4) stops the run.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli_int.h"
#include "tsr/http.h"
#include "tsr/pbvalue.h"

#define FETCH_DEFAULT_BATCH 1000
#define FETCH_MAX_BATCH 100000

typedef struct fetch_run {
    tsr_cli_conn_t conn;
    const char *method;
    const char *name;
    tsr_arena_t arena;              /* this batch's rows, request and response */
    tsr_http_fetch_row_t *rows;     /* in arena */
    size_t n, cap;
    tsr_buf_t out;
    uint64_t total, failed, calls;
} fetch_run_t;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static const char *vtype(const tsr_value_t *v) {
    switch (v->kind) {
    case TSR_MAP: return "an object";
    case TSR_LIST: return "an array";
    case TSR_STRING: return "a string";
    case TSR_LONG: return "an integer";
    case TSR_DOUBLE: return "a number";
    case TSR_BOOL: return "a boolean";
    default: return "null";
    }
}

/* Checks a key map as the HTTP endpoint does: an object, at least one key, scalar values. */
static int check_keys(const tsr_value_t *keys, tsr_error_t *err) {
    if (keys->kind != TSR_MAP)
        return tsr_error_set(err, TSR_EINVAL, "keys must be a JSON object of key columns, got %s",
                             vtype(keys));
    if (keys->len == 0)
        return tsr_error_set(err, TSR_EINVAL,
                             "no key columns (expected e.g. {\"user_id\": \"u1\"})");
    for (uint32_t i = 0; i < keys->len; i++) {
        const tsr_value_t *k = &keys->u.items[2 * i], *v = &keys->u.items[2 * i + 1];
        if (v->kind == TSR_LIST || v->kind == TSR_MAP)
            return tsr_error_set(err, TSR_EINVAL,
                                 "key \"%.64s\" must be a string, number, boolean or null, got %s",
                                 k->u.s, vtype(v));
    }
    return 0;
}

/* Parses one keys-file line {"keys":{...},"at_millis":MS} into row (values in arena). */
static int parse_line(const char *s, size_t n, tsr_arena_t *arena, tsr_http_fetch_row_t *row,
                      tsr_error_t *err) {
    tsr_value_t v;
    int rc = tsr_http_json_parse(s, n, arena, &v, err);
    if (rc) {
        /* one line is one document: "line 1, column C" reads better as "column C" */
        static const char pfx[] = "invalid JSON at line 1, column ";
        if (strncmp(err->msg, pfx, sizeof pfx - 1) == 0) {
            char tmp[TSR_ERROR_MSG_MAX];
            snprintf(tmp, sizeof tmp, "invalid JSON at column %s", err->msg + sizeof pfx - 1);
            snprintf(err->msg, sizeof err->msg, "%s", tmp);
        }
        return rc;
    }
    if (v.kind != TSR_MAP)
        return tsr_error_set(err, TSR_EINVAL,
                             "expected an object {\"keys\":{...},\"at_millis\":MS}, got %s",
                             vtype(&v));
    const tsr_value_t *keys = NULL;
    memset(row, 0, sizeof *row);
    for (uint32_t i = 0; i < v.len; i++) {
        const tsr_value_t *k = &v.u.items[2 * i], *val = &v.u.items[2 * i + 1];
        if (k->len == 4 && memcmp(k->u.s, "keys", 4) == 0) {
            keys = val;
        } else if (k->len == 9 && memcmp(k->u.s, "at_millis", 9) == 0) {
            if (val->kind == TSR_NULL) continue;
            if (val->kind != TSR_LONG)
                return tsr_error_set(err, TSR_EINVAL,
                                     "at_millis must be an integer (epoch milliseconds) or null, "
                                     "got %s", vtype(val));
            row->has_at_millis = 1;
            row->at_millis = val->u.l;
        } else {
            return tsr_error_set(err, TSR_EINVAL,
                                 "unknown member \"%.64s\" (a line is {\"keys\":{...},"
                                 "\"at_millis\":MS})", k->u.s);
        }
    }
    if (!keys) return tsr_error_set(err, TSR_EINVAL, "\"keys\" is missing");
    if ((rc = check_keys(keys, err)) != 0) return rc;
    row->keys = *keys;
    return 0;
}

static tsr_http_fetch_row_t *next_row(fetch_run_t *f) {
    if (f->n == f->cap) {
        size_t ncap = f->cap ? 2 * f->cap : 64;
        tsr_http_fetch_row_t *nr = tsr_arena_alloc(&f->arena, ncap * sizeof *nr);
        if (f->n) memcpy(nr, f->rows, f->n * sizeof *nr);
        f->rows = nr;
        f->cap = ncap;
    }
    return &f->rows[f->n++];
}

/* Sends the batch's rows, prints one line per result, resets the batch. Returns TSR_OK or a
 * TSR_E* code (reported). */
static int send_batch(fetch_run_t *f) {
    if (f->n == 0) return TSR_OK;
    tsr_arena_t *a = &f->arena;
    Tessera__V1__FetchRequest req = TESSERA__V1__FETCH_REQUEST__INIT;
    req.name = (char *)f->name;
    req.n_rows = f->n;
    req.rows = tsr_arena_alloc(a, f->n * sizeof *req.rows);
    for (size_t r = 0; r < f->n; r++) {
        const tsr_http_fetch_row_t *row = &f->rows[r];
        Tessera__V1__FetchRow *pr = tsr_arena_alloc(a, sizeof *pr);
        tessera__v1__fetch_row__init(pr);
        pr->n_keys = row->keys.len;
        pr->keys = tsr_arena_alloc(a, (pr->n_keys ? pr->n_keys : 1) * sizeof *pr->keys);
        for (size_t k = 0; k < pr->n_keys; k++) {
            const tsr_value_t *kv = &row->keys.u.items[2 * k];
            Tessera__V1__FetchRow__KeysEntry *e = tsr_arena_alloc(a, sizeof *e);
            tessera__v1__fetch_row__keys_entry__init(e);
            e->key = tsr_arena_strndup(a, kv->u.s, kv->len);
            e->value = tsr_pb_value_new(&row->keys.u.items[2 * k + 1], a);
            pr->keys[k] = e;
        }
        if (row->has_at_millis) {
            pr->at_case = TESSERA__V1__FETCH_ROW__AT_AT_MILLIS;
            pr->at_millis = row->at_millis;
        }
        req.rows[r] = pr;
    }
    f->calls++;
    int rc = tsr_cli_call(&f->conn, f->method, &req, f->name);
    if (rc) return rc;
    ProtobufCAllocator pa;
    tsr_pb_allocator(a, &pa);
    Tessera__V1__FetchResponse *resp = tessera__v1__fetch_response__unpack(
        &pa, f->conn.reply.body.len, f->conn.reply.body.data);
    if (!resp) {
        fprintf(stderr, "tessera fetch: malformed FetchResponse from %s\n", f->conn.server);
        return TSR_ECORRUPT;
    }
    if (resp->n_results != f->n) {
        fprintf(stderr, "tessera fetch: %s: the server answered %zu results for %zu rows\n",
                f->name, resp->n_results, f->n);
        return TSR_ECORRUPT;
    }
    tsr_buf_clear(&f->out);
    for (size_t r = 0; r < f->n; r++) {
        const Tessera__V1__FetchResult *pr = resp->results[r];
        tsr_http_fetch_result_t res = {0};
        res.ok = pr && pr->status == TESSERA__V1__ROW_STATUS__SUCCESS;
        if (res.ok) {
            size_t nf = pr->n_features;
            tsr_value_t *items = tsr_arena_alloc(a, (nf ? 2 * nf : 1) * sizeof *items);
            for (size_t k = 0; k < nf; k++) {
                const Tessera__V1__FetchResult__FeaturesEntry *e = pr->features[k];
                const char *key = e && e->key ? e->key : "";
                items[2 * k] = tsr_value_string(key, strlen(key));
                if (tsr_pb_value_get(e ? e->value : NULL, a, &items[2 * k + 1]) != 0) {
                    fprintf(stderr, "tessera fetch: %s: feature \"%s\" of row %llu nests too deep\n",
                            f->name, key, (unsigned long long)(f->total + r + 1));
                    return TSR_ECORRUPT;
                }
            }
            res.features = tsr_value_map(items, nf);
        } else {
            res.error = pr && pr->error && *pr->error ? pr->error : "unknown error";
            f->failed++;
        }
        tsr_http_fetch_write_result(&f->rows[r], &res, &f->out);
        tsr_buf_putc(&f->out, '\n');
    }
    fwrite(f->out.data, 1, f->out.len, stdout);
    fflush(stdout);
    f->total += f->n;
    f->n = 0;
    f->cap = 0;
    f->rows = NULL;
    tsr_arena_reset(a);
    return TSR_OK;
}

/* Reads the keys file, batch by batch. Returns TSR_OK or a TSR_E* code (reported). */
static int fetch_file(fetch_run_t *f, const char *path, size_t batch) {
    FILE *in = strcmp(path, "-") == 0 ? stdin : fopen(path, "r");
    if (!in) {
        int e = errno;
        fprintf(stderr, "tessera fetch: %s: cannot open: %s\n", path, strerror(e));
        return e == ENOENT ? TSR_ENOTFOUND : TSR_EIO;
    }
    char *line = NULL;
    size_t lcap = 0;
    ssize_t got;
    unsigned long long lineno = 0;
    int rc = TSR_OK;
    tsr_error_t err;
    while ((got = getline(&line, &lcap, in)) >= 0) {
        lineno++;
        size_t n = (size_t)got;
        const char *s = line;
        while (n && (s[n - 1] == '\n' || s[n - 1] == '\r' || s[n - 1] == ' ' || s[n - 1] == '\t'))
            n--;
        while (n && (*s == ' ' || *s == '\t')) s++, n--;
        if (n == 0) continue;
        tsr_error_clear(&err);
        tsr_http_fetch_row_t row;
        if (parse_line(s, n, &f->arena, &row, &err) != 0) {
            fprintf(stderr, "tessera fetch: %s:%llu: %s\n", path, lineno, err.msg);
            rc = TSR_EINVAL;
            break;
        }
        *next_row(f) = row;
        if (f->n >= batch && (rc = send_batch(f)) != TSR_OK) break;
    }
    if (rc == TSR_OK && in != stdin && ferror(in)) {
        fprintf(stderr, "tessera fetch: %s: read error after line %llu\n", path, lineno);
        rc = TSR_EIO;
    }
    if (rc == TSR_OK) rc = send_batch(f);
    free(line);
    if (in != stdin) fclose(in);
    return rc;
}

static int run_fetch(int argc, char **argv) {
    const tsr_cli_cmd_t *cmd = &tsr_cmd_fetch_def;
    tsr_cli_client_opts_t o = {.timeout_ms = TSR_CLI_ADMIN_TIMEOUT_MS};
    const char *join = NULL, *gb = NULL, *keys = NULL, *keys_file = NULL, *at = NULL;
    int64_t batch = FETCH_DEFAULT_BATCH;
    for (int i = 1; i < argc; i++) {
        static const char *const k_opts[] = {"--join", "--group-by", "--groupby", "--keys",
                                             "--keys-file", "--at-millis", "--batch-size"};
        int r = tsr_cli_client_option(cmd, argc, argv, &i, &o, 0);
        if (r < 0) return -r;
        if (r > 0) continue;
        const char *v = NULL;
        size_t which = 0;
        for (; which < sizeof k_opts / sizeof *k_opts; which++)
            if ((r = tsr_cli_opt_value(cmd, argc, argv, &i, k_opts[which], &v)) != 0) break;
        if (r < 0) return -r;
        if (r == 0) {
            if (argv[i][0] == '-') return tsr_cli_usage_error(cmd, "unknown option '%s'", argv[i]);
            return tsr_cli_usage_error(cmd, "unexpected argument '%s'", argv[i]);
        }
        switch (which) {
        case 0: join = v; break;
        case 1: case 2: gb = v; break;
        case 3: keys = v; break;
        case 4: keys_file = v; break;
        case 5: at = v; break;
        default:
            if ((r = tsr_cli_parse_count(cmd, "--batch-size", v, &batch)) != 0) return -r;
            if (batch < 1 || batch > FETCH_MAX_BATCH)
                return tsr_cli_usage_error(cmd, "--batch-size must be 1..%d, got %s",
                                           FETCH_MAX_BATCH, v);
            break;
        }
    }
    if (!join == !gb) return tsr_cli_usage_error(cmd, "give exactly one of --join NAME or --group-by NAME");
    if ((join && !*join) || (gb && !*gb)) return tsr_cli_usage_error(cmd, "the Join or GroupBy name is empty");
    if (!keys == !keys_file) return tsr_cli_usage_error(cmd, "give exactly one of --keys JSON or --keys-file F");
    if (at && !keys)
        return tsr_cli_usage_error(cmd, "--at-millis goes with --keys (in --keys-file, each line "
                                   "carries its own \"at_millis\")");
    int64_t at_ms = 0;
    if (at) {
        char *end;
        errno = 0;
        long long x = strtoll(at, &end, 10);
        if (errno || end == at || *end)
            return tsr_cli_usage_error(cmd, "--at-millis must be epoch milliseconds, got '%s'", at);
        at_ms = (int64_t)x;
    }

    fetch_run_t f;
    memset(&f, 0, sizeof f);
    f.method = join ? "/tessera.v1.FeatureService/FetchJoin"
                    : "/tessera.v1.FeatureService/FetchGroupBy";
    f.name = join ? join : gb;
    tsr_arena_init(&f.arena, 0);
    tsr_buf_init(&f.out);
    int rc = TSR_OK;
    tsr_error_t err;
    tsr_error_clear(&err);
    tsr_http_fetch_row_t row = {0};
    if (keys) {
        tsr_value_t kv;
        if (tsr_http_json_parse(keys, strlen(keys), &f.arena, &kv, &err) != 0 ||
            check_keys(&kv, &err) != 0) {
            fprintf(stderr, "tessera fetch: --keys: %s\n", err.msg);
            tsr_arena_free(&f.arena);
            tsr_buf_free(&f.out);
            return tsr_error_exit_code(TSR_EINVAL);
        }
        row.keys = kv;
        row.has_at_millis = at != NULL;
        row.at_millis = at_ms;
    }
    int oc = tsr_cli_conn_open(&f.conn, cmd, &o);
    if (oc) {
        tsr_arena_free(&f.arena);
        tsr_buf_free(&f.out);
        return oc;
    }
    double t0 = now_s();
    if (keys) {
        *next_row(&f) = row;
        rc = send_batch(&f);
    } else {
        rc = fetch_file(&f, keys_file, (size_t)batch);
        fprintf(stderr,
                "tessera fetch: %llu rows from %s in %llu call%s, %llu failed, %.3f s\n",
                (unsigned long long)f.total, keys_file, (unsigned long long)f.calls,
                f.calls == 1 ? "" : "s",
                (unsigned long long)f.failed, now_s() - t0);
    }
    tsr_cli_conn_close(&f.conn);
    tsr_arena_free(&f.arena);
    tsr_buf_free(&f.out);
    return rc ? tsr_error_exit_code(rc) : 0;
}

const tsr_cli_cmd_t tsr_cmd_fetch_def = {
    "fetch",
    "fetch online feature values of a Join or GroupBy from a running server",
    "usage: tessera fetch (--join NAME | --group-by NAME)\n"
    "                     (--keys JSON [--at-millis MS] | --keys-file F)\n"
    "                     [--batch-size N] [--server ADDR] [--timeout-ms MS]\n"
    "\n"
    "Prints one JSON object per row, in input order, shaped like an entry of the HTTP fetch\n"
    "response:\n"
    "  {\"status\":\"Success\",\"entityKeys\":{...},\"features\":{...}}\n"
    "  {\"status\":\"Failure\",\"entityKeys\":{...},\"error\":\"...\"}\n"
    "NAME is the Join's or GroupBy's metaData.name. Key values are strings, numbers, booleans\n"
    "or null. A failed part of a Join shows as a \"<prefix>_exception\" feature.\n"
    "\n"
    "options:\n"
    "  --join NAME         fetch a Join (FeatureService.FetchJoin)\n"
    "  --group-by NAME     fetch a GroupBy (FeatureService.FetchGroupBy)\n"
    "  --keys JSON         one row: a JSON object of key columns, e.g. '{\"user_id\":\"u1\"}'\n"
    "  --at-millis MS      query time of the --keys row, epoch ms UTC (default: now)\n"
    "  --keys-file F       JSON Lines, one {\"keys\":{...},\"at_millis\":MS} per line (at_millis\n"
    "                      optional; blank lines skipped; '-' reads stdin); a summary goes to\n"
    "                      stderr\n"
    "  --batch-size N      rows per call with --keys-file (default 1000)\n"
    "  --server ADDR       host:port (default $TESSERA_SERVER, else 127.0.0.1:7070)\n"
    "  --timeout-ms MS     deadline of each call (default 10000)\n"
    "\n"
    "A bad line in F stops the run with F:LINE and the reason (rows of earlier batches were\n"
    "already printed). A row's Failure is part of the output, not an error.\n"
    "\n"
    "exit: 0 ok (also when rows failed), 1 error (bad input), 2 usage, 3 no Join or GroupBy of\n"
    "      that name, or F not found, 4 server unavailable or no answer within the deadline\n",
    run_fetch,
};
