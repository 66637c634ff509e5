/*
 * cmd_validate.c — `tessera validate [--dialect D] [--warehouse DIR] CONF...`
 *
 * Loads every config (directories are walked), prints `ok <file> (<kind> <name>)` for each
 * valid one on stdout and every error line `<file>: <json path>: <reason>` on stderr, then a
 * summary. Exit 0 when all are valid, 1 when any is invalid or malformed, 3 when nothing was
 * invalid but a CONF path does not exist.
 */
#include <stdlib.h>
#include <string.h>

#include "cli_int.h"

typedef struct validate_run {
    tsr_config_options_t opt;
    size_t n_ok, n_bad, n_errors;
} validate_run_t;

static void validate_one(const char *file, void *ud) {
    validate_run_t *r = ud;
    tsr_diag_t diag;
    tsr_diag_init(&diag);
    tsr_config_t *c = NULL;
    int rc = tsr_config_load(file, &r->opt, &c, &diag);
    if (rc == 0) {
        const tsr_conf_metadata_t *md = tsr_config_metadata(c);
        printf("ok %s (%s %s)\n", file, tsr_conf_kind_name(c->kind), md->name);
        r->n_ok++;
    } else {
        tsr_diag_print(&diag, stderr);
        r->n_bad++;
        r->n_errors += diag.n;
    }
    tsr_config_free(c);
    tsr_diag_free(&diag);
}

static int run_validate(int argc, char **argv) {
    const tsr_cli_cmd_t *cmd = &tsr_cmd_validate_def;
    validate_run_t r;
    memset(&r, 0, sizeof r);
    char **confs = tsr_calloc((size_t)argc, sizeof *confs);
    int n_confs = 0, only_args = 0;
    for (int i = 1; i < argc; i++) {
        if (!only_args && strcmp(argv[i], "--") == 0) {
            only_args = 1;
            continue;
        }
        if (!only_args && argv[i][0] == '-' && argv[i][1]) {
            int used = tsr_cli_config_option(cmd, argc, argv, &i, &r.opt);
            if (used < 0) {
                free(confs);
                return -used;
            }
            if (used == 0) {
                free(confs);
                return tsr_cli_usage_error(cmd, "unknown option '%s'", argv[i]);
            }
            continue;
        }
        confs[n_confs++] = argv[i];
    }
    if (n_confs == 0) {
        free(confs);
        return tsr_cli_usage_error(cmd, "no CONF given");
    }
    int missing = 0;
    for (int i = 0; i < n_confs; i++)
        if (tsr_cli_walk_configs(confs[i], validate_one, &r) != 0) missing = 1;
    free(confs);
    size_t total = r.n_ok + r.n_bad;
    fprintf(r.n_bad ? stderr : stdout, "%zu config%s: %zu ok, %zu invalid (%zu error%s)\n", total,
            total == 1 ? "" : "s", r.n_ok, r.n_bad, r.n_errors, r.n_errors == 1 ? "" : "s");
    if (r.n_bad) return tsr_error_exit_code(TSR_ECONFIG);
    if (missing) return tsr_error_exit_code(TSR_ENOTFOUND);
    return 0;
}

const tsr_cli_cmd_t tsr_cmd_validate_def = {
    "validate",
    "check configs (files or directories) and list every error",
    "usage: tessera validate [--dialect airbnb|zipline|auto] [--warehouse DIR] CONF...\n"
    "\n"
    "Loads each CONF (a compiled GroupBy, Join or StagingQuery JSON file, or a directory that\n"
    "is walked recursively, skipping hidden files, README* and _schema.json) and validates it.\n"
    "Prints `ok <file> (<kind> <name>)` per valid config on stdout, every error as\n"
    "`<file>: <json path>: <reason>` on stderr, then a summary.\n"
    "\n"
    "options:\n"
    "  --dialect D      operation ids of the given Chronon code base (default: detect from the\n"
    "                   MetaData shape, airbnb when undecidable)\n"
    "  --warehouse DIR  read table schemas from DIR/<ns>/<table>/_schema.json and type-check\n"
    "                   source expressions against them\n"
    "\n"
    "exit: 0 all valid, 1 any invalid, 2 usage, 3 a CONF path does not exist\n",
    run_validate,
};
