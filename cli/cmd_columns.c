/*
 * cmd_columns.c — `tessera columns [--dialect D] [--warehouse DIR] [-o table|json] CONF`
 *
 * Prints a config's output columns in order with their types (SPEC §3-§5): for a Join the
 * left columns, ts, ds, then the features after derivations; for a GroupBy the keys, ds, then
 * the features. A type is `any` where the raw table's schema is unknown (use --warehouse).
 */
#include <stdlib.h>
#include <string.h>

#include "cli_int.h"
#include "tsr/value.h"

static void json_str(tsr_buf_t *b, const char *s) {
    tsr_value_t v = tsr_value_string(s, strlen(s));
    tsr_value_to_json(&v, b);
}

static int run_columns(int argc, char **argv) {
    const tsr_cli_cmd_t *cmd = &tsr_cmd_columns_def;
    tsr_config_options_t opt = {TSR_DIALECT_AUTO, NULL};
    const char *conf = NULL, *format = "table";
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (a[0] == '-' && a[1]) {
            if (strcmp(a, "-o") == 0 || strcmp(a, "--output") == 0) {
                if (i + 1 >= argc) return tsr_cli_usage_error(cmd, "%s needs a value", a);
                format = argv[++i];
                continue;
            }
            if (strncmp(a, "--output=", 9) == 0) {
                format = a + 9;
                continue;
            }
            int used = tsr_cli_config_option(cmd, argc, argv, &i, &opt);
            if (used < 0) return -used;
            if (used == 0) return tsr_cli_usage_error(cmd, "unknown option '%s'", a);
            continue;
        }
        if (conf) return tsr_cli_usage_error(cmd, "only one CONF expected (got '%s' and '%s')", conf, a);
        conf = a;
    }
    if (!conf) return tsr_cli_usage_error(cmd, "no CONF given");
    int as_json = strcmp(format, "json") == 0;
    if (!as_json && strcmp(format, "table") != 0)
        return tsr_cli_usage_error(cmd, "-o must be table or json, got '%s'", format);

    tsr_config_t *c;
    int rc = tsr_cli_load_config(conf, &opt, &c);
    if (rc) return rc;
    if (!c->columns_known) {
        fprintf(stderr, "%s: a %s's columns come from its SQL query; run it to see them\n", conf,
                tsr_conf_kind_name(c->kind));
        tsr_config_free(c);
        return tsr_error_exit_code(TSR_EUNSUPPORTED);
    }
    const char *left_table = c->kind == TSR_CONF_JOIN && c->join->left.table ? c->join->left.table : "left";
    char tbuf[TSR_TYPE_NAME_MAX];
    if (as_json) {
        tsr_buf_t b;
        tsr_buf_init(&b);
        tsr_buf_puts(&b, "{\"name\":");
        json_str(&b, tsr_config_metadata(c)->name);
        tsr_buf_printf(&b, ",\"kind\":\"%s\",\"left_all_columns\":%s,\"columns\":[",
                       tsr_conf_kind_name(c->kind), c->all_raw_left ? "true" : "false");
        for (size_t i = 0; i < c->n_columns; i++) {
            tsr_buf_puts(&b, i ? ",{\"name\":" : "{\"name\":");
            json_str(&b, c->columns[i].name);
            tsr_buf_puts(&b, ",\"type\":");
            json_str(&b, tsr_type_name(c->columns[i].type, tbuf, sizeof tbuf));
            tsr_buf_putc(&b, '}');
        }
        tsr_buf_puts(&b, "]}\n");
        fputs(tsr_buf_cstr(&b), stdout);
        tsr_buf_free(&b);
    } else {
        size_t width = 4;
        for (size_t i = 0; i < c->n_columns; i++)
            if (strlen(c->columns[i].name) > width) width = strlen(c->columns[i].name);
        if (c->all_raw_left)
            printf("%-*s  %s\n", (int)width, "*", tsr_arena_printf(&c->arena, "any (every column of %s)", left_table));
        for (size_t i = 0; i < c->n_columns; i++)
            printf("%-*s  %s\n", (int)width, c->columns[i].name,
                   tsr_type_name(c->columns[i].type, tbuf, sizeof tbuf));
    }
    tsr_config_free(c);
    return 0;
}

const tsr_cli_cmd_t tsr_cmd_columns_def = {
    "columns",
    "print a config's output columns and their types",
    "usage: tessera columns [--dialect airbnb|zipline|auto] [--warehouse DIR] [-o table|json] CONF\n"
    "\n"
    "Prints one line per output column, `name  type`, in output order:\n"
    "  Join:    left columns, ts, ds, then the join parts' features after derivations\n"
    "           (`*  any (every column of T)` first when the left has no selects and no schema)\n"
    "  GroupBy: key columns, ds, then the features after derivations\n"
    "A type is `any` where the raw table's schema is unknown; --warehouse DIR reads\n"
    "DIR/<ns>/<table>/_schema.json for precise types.\n"
    "\n"
    "options:\n"
    "  --dialect D      operation ids of the given Chronon code base (default: detect)\n"
    "  --warehouse DIR  table schemas for precise types\n"
    "  -o table|json    output format (default table)\n"
    "\n"
    "exit: 0 ok, 1 invalid config, 2 usage, 3 CONF not found\n",
    run_columns,
};
