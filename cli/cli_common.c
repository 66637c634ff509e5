/*
 * cli_common.c — helpers shared by the config commands: the --dialect / --warehouse options,
 * the walk that turns CONF arguments (files or directories) into config files, and usage errors.
 *
 * Directory walks are sorted by name so output and exit codes are reproducible; hidden
 * entries, README* files and warehouse schema files (_schema.json) are not configs.
 */
#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli_int.h"

int tsr_cli_usage_error(const tsr_cli_cmd_t *cmd, const char *fmt, ...) {
    va_list ap;
    fprintf(stderr, "tessera%s%s: ", cmd ? " " : "", cmd ? cmd->name : "");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    if (cmd)
        fprintf(stderr, "\nRun `tessera %s --help` for usage.\n", cmd->name);
    else
        fprintf(stderr, "\nRun `tessera --help` for usage.\n");
    return tsr_error_exit_code(TSR_EUSAGE);
}

int tsr_cli_config_option(const tsr_cli_cmd_t *cmd, int argc, char **argv, int *i,
                          tsr_config_options_t *opt) {
    const char *a = argv[*i];
    const char *val = NULL;
    size_t eq = strcspn(a, "=");
    int is_dialect = strncmp(a, "--dialect", eq) == 0 && eq == strlen("--dialect");
    int is_wh = strncmp(a, "--warehouse", eq) == 0 && eq == strlen("--warehouse");
    if (!is_dialect && !is_wh) return 0;
    if (a[eq] == '=') {
        val = a + eq + 1;
    } else {
        if (*i + 1 >= argc) return -tsr_cli_usage_error(cmd, "%s needs a value", a);
        val = argv[++*i];
    }
    if (is_dialect) {
        if (tsr_dialect_parse(val, &opt->dialect) != 0)
            return -tsr_cli_usage_error(cmd, "--dialect must be airbnb, zipline or auto, got '%s'",
                                        val);
    } else {
        opt->warehouse = val;
    }
    return 1;
}

int tsr_cli_load_config(const char *path, const tsr_config_options_t *opt, tsr_config_t **out) {
    tsr_diag_t diag;
    tsr_diag_init(&diag);
    tsr_config_t *c = NULL;
    int rc = tsr_config_load(path, opt, &c, &diag);
    if (rc != 0) {
        tsr_diag_print(&diag, stderr);
        tsr_config_free(c);
        c = NULL;
    }
    tsr_diag_free(&diag);
    *out = c;
    return rc ? tsr_error_exit_code(rc) : 0;
}

static int cmp_names(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int skip_name(const char *n) {
    return n[0] == '.' || strncmp(n, "README", 6) == 0 || strcmp(n, "_schema.json") == 0;
}

int tsr_cli_walk_configs(const char *path, void (*cb)(const char *file, void *ud), void *ud) {
    struct stat st;
    if (stat(path, &st) != 0) {
        int e = errno;
        fprintf(stderr, "%s: cannot open: %s\n", path, strerror(e));
        return e == ENOENT ? TSR_ENOTFOUND : TSR_EIO;
    }
    if (!S_ISDIR(st.st_mode)) {
        cb(path, ud);
        return 0;
    }
    DIR *d = opendir(path);
    if (!d) {
        fprintf(stderr, "%s: cannot read directory: %s\n", path, strerror(errno));
        return TSR_EIO;
    }
    char **names = NULL;
    size_t n = 0, cap = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (skip_name(de->d_name)) continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 32;
            names = tsr_realloc(names, cap * sizeof *names);
        }
        names[n++] = tsr_strdup(de->d_name);
    }
    closedir(d);
    if (n) qsort(names, n, sizeof *names, cmp_names);
    int rc = 0;
    for (size_t i = 0; i < n; i++) {
        size_t len = strlen(path) + strlen(names[i]) + 2;
        char *child = tsr_malloc(len);
        snprintf(child, len, "%s%s%s", path, path[strlen(path) - 1] == '/' ? "" : "/", names[i]);
        int r = tsr_cli_walk_configs(child, cb, ud);
        if (r && !rc) rc = r;
        free(child);
        free(names[i]);
    }
    free(names);
    return rc;
}
