/*
 * cmd_apply.c — `tessera apply -f FILE|DIR [-f ...] [--dry-run] [--server ADDR]`: sends each
 * config file to the server's AdminService.ApplyConfig (config_json = the file's text,
 * source_name = its path) and prints what the server did with it:
 *     created groupby payments.card_txn_features.v1 (version 1)
 *     configured join payments.checkout_features.v1 (version 4)
 *     unchanged groupby payments.card_txn_features.v1 (version 1)
 *
 * Rules: directories are walked as `tessera validate` walks them (name order, hidden entries,
 * README* and _schema.json skipped). The server validates; the CLI sends the text unparsed, so
 * what the server stores is byte for byte the file. A file the server rejects is reported as
 * "tessera apply: FILE: <server's message>" and the run goes on with the next file; the exit
 * code is the first failure's. An unreachable server or a passed deadline stops the run (the
 * remaining files would fail the same way).
 */
#include <stdlib.h>
#include <string.h>

#include "cli_int.h"
#include "tsr/pbvalue.h"

typedef struct file_list {
    char **paths;
    size_t n, cap;
} file_list_t;

static void add_file(const char *path, void *ud) {
    file_list_t *fl = ud;
    if (fl->n == fl->cap) {
        fl->cap = fl->cap ? 2 * fl->cap : 8;
        fl->paths = tsr_realloc(fl->paths, fl->cap * sizeof *fl->paths);
    }
    fl->paths[fl->n++] = tsr_strdup(path);
}

/* Applies one file; returns TSR_OK or a TSR_E* code (already reported). */
static int apply_one(tsr_cli_conn_t *conn, const char *path, int dry_run, tsr_arena_t *arena) {
    char *text = NULL;
    size_t n = 0;
    int rc = tsr_cli_read_file(conn->cmd, path, &text, &n);
    if (rc) return rc;
    if (strlen(text) != n) {
        fprintf(stderr, "tessera apply: %s: contains a NUL byte: not a JSON config\n", path);
        free(text);
        return TSR_EPARSE;
    }
    Tessera__V1__ApplyConfigRequest req = TESSERA__V1__APPLY_CONFIG_REQUEST__INIT;
    req.config_json = text;
    req.source_name = (char *)path;
    req.dry_run = dry_run ? 1 : 0;
    rc = tsr_cli_call(conn, "/tessera.v1.AdminService/ApplyConfig", &req, path);
    free(text);
    if (rc) return rc;
    ProtobufCAllocator pa;
    tsr_pb_allocator(arena, &pa);
    Tessera__V1__ApplyConfigResponse *resp = tessera__v1__apply_config_response__unpack(
        &pa, conn->reply.body.len, conn->reply.body.data);
    if (!resp || !resp->config) {
        fprintf(stderr, "tessera apply: %s: malformed ApplyConfigResponse from %s\n", path,
                conn->server);
        return TSR_ECORRUPT;
    }
    const Tessera__V1__ConfigSummary *c = resp->config;
    const char *verb = resp->unchanged ? "unchanged" : resp->created ? "created" : "configured";
    if (dry_run)
        printf("%s %s %s (dry run)\n", verb, tsr_cli_kind_name(c->kind), c->name);
    else
        printf("%s %s %s (version %lld)\n", verb, tsr_cli_kind_name(c->kind), c->name,
               (long long)c->version);
    fflush(stdout);
    return TSR_OK;
}

static int run_apply(int argc, char **argv) {
    const tsr_cli_cmd_t *cmd = &tsr_cmd_apply_def;
    tsr_cli_client_opts_t o = {.timeout_ms = TSR_CLI_ADMIN_TIMEOUT_MS};
    const char **args = tsr_malloc((size_t)argc * sizeof *args);
    size_t nargs = 0;
    int dry_run = 0;
    for (int i = 1; i < argc; i++) {
        const char *v = NULL;
        int r = tsr_cli_client_option(cmd, argc, argv, &i, &o, 0);
        if (r == 0) {
            r = tsr_cli_opt_value(cmd, argc, argv, &i, "--filename", &v);
            if (r == 0) r = tsr_cli_opt_value(cmd, argc, argv, &i, "-f", &v);
            if (r > 0) args[nargs++] = v;
        }
        if (r < 0) {
            free(args);
            return -r;
        }
        if (r > 0) continue;
        if (strcmp(argv[i], "--dry-run") == 0) {
            dry_run = 1;
            continue;
        }
        free(args);
        if (argv[i][0] == '-') return tsr_cli_usage_error(cmd, "unknown option '%s'", argv[i]);
        return tsr_cli_usage_error(cmd, "unexpected argument '%s' (files are given with -f)",
                                   argv[i]);
    }
    if (nargs == 0) {
        free(args);
        return tsr_cli_usage_error(cmd, "-f FILE is required");
    }
    file_list_t fl = {0};
    int rc = 0;
    for (size_t k = 0; k < nargs; k++) {
        if (strcmp(args[k], "-") == 0) {
            add_file("-", &fl);
            continue;
        }
        int r = tsr_cli_walk_configs(args[k], add_file, &fl);
        if (r && !rc) rc = r;
    }
    free(args);
    int exit_code = rc ? tsr_error_exit_code(rc) : 0;
    if (fl.n) {
        tsr_cli_conn_t conn;
        int oc = tsr_cli_conn_open(&conn, cmd, &o);
        if (oc) {
            exit_code = oc;
        } else {
            tsr_arena_t arena;
            tsr_arena_init(&arena, 0);
            for (size_t k = 0; k < fl.n; k++) {
                int r = apply_one(&conn, fl.paths[k], dry_run, &arena);
                tsr_arena_reset(&arena);
                if (r && !exit_code) exit_code = tsr_error_exit_code(r);
                if (r == TSR_EUNAVAIL || r == TSR_ETIMEOUT) break;
            }
            tsr_arena_free(&arena);
            tsr_cli_conn_close(&conn);
        }
    } else if (!exit_code) {
        fprintf(stderr, "tessera apply: no config files found\n");
        exit_code = tsr_error_exit_code(TSR_ENOTFOUND);
    }
    for (size_t k = 0; k < fl.n; k++) free(fl.paths[k]);
    free(fl.paths);
    return exit_code;
}

const tsr_cli_cmd_t tsr_cmd_apply_def = {
    "apply",
    "send configs to a running server (AdminService.ApplyConfig)",
    "usage: tessera apply -f FILE|DIR [-f FILE|DIR ...] [--dry-run] [--server ADDR]\n"
    "                     [--timeout-ms MS]\n"
    "\n"
    "Sends each config (a compiled Chronon GroupBy, Join or StagingQuery JSON file) to the\n"
    "server, which validates and stores it, and prints one line per file:\n"
    "  created groupby payments.card_txn_features.v1 (version 1)\n"
    "  configured ... (an existing config was replaced)   unchanged ... (same JSON as stored)\n"
    "A directory is walked recursively in name order (hidden files, README* and _schema.json\n"
    "are skipped). A rejected file is reported with the server's message and the next file is\n"
    "still sent.\n"
    "\n"
    "options:\n"
    "  -f, --filename F    config file or directory ('-' reads one config from stdin);\n"
    "                      repeatable\n"
    "  --dry-run           let the server validate only; nothing is stored\n"
    "  --server ADDR       host:port (default $TESSERA_SERVER, else 127.0.0.1:7070)\n"
    "  --timeout-ms MS     deadline of each call (default 10000)\n"
    "\n"
    "exit: 0 all applied, 1 a config was rejected, 2 usage, 3 file not found,\n"
    "      4 server unavailable or no answer within the deadline\n",
    run_apply,
};
