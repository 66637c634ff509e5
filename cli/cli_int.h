/*
 * cli_int.h — what the `tessera` CLI's files share: the command table entry, option helpers
 * and the config-path walker.
 *
 * Each command lives in cmd_<name>.c and exposes `int tsr_cmd_<name>(int argc, char **argv)`
 * returning a process exit code (SPEC §7: 0 ok, 1 error, 2 usage, 3 not found, 4
 * unavailable; derived from tsr_error_exit_code so codes never drift from the error table).
 * argv[0] is the command name; `--help` anywhere prints the command's usage and exits 0.
 */
#ifndef TSR_CLI_INT_H
#define TSR_CLI_INT_H

#include <stddef.h>
#include <stdio.h>

#include "tsr/config.h"

typedef struct tsr_cli_cmd {
    const char *name;
    const char *summary;        /* one line for `tessera --help` */
    const char *usage;          /* full text for `tessera help CMD` / `CMD --help` */
    int (*run)(int argc, char **argv);
} tsr_cli_cmd_t;

extern const tsr_cli_cmd_t tsr_cmd_validate_def;
extern const tsr_cli_cmd_t tsr_cmd_columns_def;
extern const tsr_cli_cmd_t tsr_cmd_backfill_def;
extern const tsr_cli_cmd_t tsr_cmd_dev_kafka_def, tsr_cmd_produce_def, tsr_cmd_consume_def;
extern const tsr_cli_cmd_t tsr_cmd_serve_def;

/* Prints "tessera <cmd>: <message>" and the usage hint to stderr; returns the usage exit code. */
int tsr_cli_usage_error(const tsr_cli_cmd_t *cmd, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Parses the options shared by config commands. Returns 1 when argv[*i] was consumed (with
 * its value), 0 when it is not one of them, or a negative value after a usage error. */
int tsr_cli_config_option(const tsr_cli_cmd_t *cmd, int argc, char **argv, int *i,
                          tsr_config_options_t *opt);

/* Loads and validates one config; on failure prints every error to stderr and returns the
 * exit code (its *out is then NULL). On success returns 0; caller frees with
 * tsr_config_free. */
int tsr_cli_load_config(const char *path, const tsr_config_options_t *opt, tsr_config_t **out);

/* Expands a CONF argument: a file is listed as is; a directory is walked recursively in
 * name order, skipping hidden entries, README* files and table schema files (_schema.json).
 * Calls cb(path, ud) per config file. Returns 0, or TSR_ENOTFOUND / TSR_EIO when path cannot
 * be read (after printing why). */
int tsr_cli_walk_configs(const char *path, void (*cb)(const char *file, void *ud), void *ud);

#endif
