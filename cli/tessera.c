/*
 * tessera.c — the `tessera` CLI dispatcher: global flags (--help, --version), `help CMD`, and
 * the command table. Commands live in cmd_*.c; this file only routes.
 *
 * Exit codes come from the error table (tsr_error_exit_code): a usage error is
 * tsr_error_exit_code(TSR_EUSAGE) = 2, and so on (SPEC §7).
 */
#include <stdio.h>
#include <string.h>

#include "cli_int.h"

#ifndef TSR_VERSION
#define TSR_VERSION "0.1.0"
#endif

static const tsr_cli_cmd_t *const k_cmds[] = {
    &tsr_cmd_validate_def,
    &tsr_cmd_columns_def,
    &tsr_cmd_backfill_def,
    &tsr_cmd_serve_def,
    &tsr_cmd_dev_kafka_def, &tsr_cmd_produce_def, &tsr_cmd_consume_def,
    &tsr_cmd_apply_def, &tsr_cmd_get_def, &tsr_cmd_describe_def, &tsr_cmd_delete_def,
    &tsr_cmd_status_def, &tsr_cmd_upload_def, &tsr_cmd_fetch_def,
};
#define N_CMDS (sizeof k_cmds / sizeof *k_cmds)

static void print_help(FILE *out) {
    fprintf(out,
            "usage: tessera [--help] [--version] <command> [<args>]\n"
            "\n"
            "Tessera: Chronon-compatible features, computed offline and served online.\n"
            "\n"
            "commands:\n");
    for (size_t i = 0; i < N_CMDS; i++) fprintf(out, "  %-10s %s\n", k_cmds[i]->name, k_cmds[i]->summary);
    fprintf(out,
            "\n"
            "Run `tessera help <command>` or `tessera <command> --help` for a command's options.\n"
            "Exit codes: 0 ok, 1 error, 2 usage, 3 not found, 4 unavailable.\n");
}

static const tsr_cli_cmd_t *find_cmd(const char *name) {
    for (size_t i = 0; i < N_CMDS; i++)
        if (strcmp(k_cmds[i]->name, name) == 0) return k_cmds[i];
    return NULL;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        print_help(stderr);
        return tsr_error_exit_code(TSR_EUSAGE);
    }
    const char *a = argv[1];
    if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
        print_help(stdout);
        return 0;
    }
    if (strcmp(a, "--version") == 0) {
        char m[128];
        tsr_malloc_name(m, sizeof m);
        printf("tessera %s\nmalloc: %s\n", TSR_VERSION, m);
        return 0;
    }
    if (strcmp(a, "help") == 0) {
        if (argc < 3) {
            print_help(stdout);
            return 0;
        }
        const tsr_cli_cmd_t *c = find_cmd(argv[2]);
        if (!c) return tsr_cli_usage_error(NULL, "unknown command '%s'", argv[2]);
        fputs(c->usage, stdout);
        return 0;
    }
    const tsr_cli_cmd_t *c = find_cmd(a);
    if (!c) {
        if (a[0] == '-') return tsr_cli_usage_error(NULL, "unknown option '%s'", a);
        return tsr_cli_usage_error(NULL, "unknown command '%s'", a);
    }
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--") == 0) break;
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            fputs(c->usage, stdout);
            return 0;
        }
    }
    return c->run(argc - 1, argv + 1);
}
