/*
 * test_compat.c — the compatibility walk over real Chronon compiled configs
 * (../shared/chronon-samples, found through TSR_SHARED_DIR set by CMake).
 *
 * Every file must match its row in tests/compat/expected.tsv: `ok` means it loads and
 * validates with no error; `error <substring>` means it is rejected and one of its error lines
 * contains the substring. The set of files on disk and the set of rows must be equal, so a new
 * or removed sample fails the test until expected.tsv is updated. The dialect is detected per
 * file, as `tessera validate` does. When the folder is absent (a clone without ../shared) the
 * test prints "compat: skipped: <dir> not found" and passes.
 */
#include "tsr_test.h"

#include <dirent.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "tsr/config.h"

#define MAX_FILES 1024

typedef struct expect_row {
    char *path;
    int ok;
    char *needle;
    int seen;
} expect_row_t;

static expect_row_t g_rows[MAX_FILES];
static size_t g_nrows;
static char *g_files[MAX_FILES];
static size_t g_nfiles;
static char g_samples[1024];

static int skip_name(const char *n) { return n[0] == '.' || strncmp(n, "README", 6) == 0; }

/* Collects every file under dir (relative to g_samples). */
static void walk(const char *rel) {
    char abs[2048];
    snprintf(abs, sizeof abs, "%s%s%s", g_samples, rel[0] ? "/" : "", rel);
    DIR *d = opendir(abs);
    ck_assert_msg(d != NULL, "cannot read %s", abs);
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (skip_name(de->d_name)) continue;
        char child_rel[2048], child_abs[4096];
        snprintf(child_rel, sizeof child_rel, "%s%s%s", rel, rel[0] ? "/" : "", de->d_name);
        snprintf(child_abs, sizeof child_abs, "%s/%s", g_samples, child_rel);
        struct stat st;
        ck_assert_int_eq(stat(child_abs, &st), 0);
        if (S_ISDIR(st.st_mode)) {
            walk(child_rel);
        } else {
            ck_assert_int_lt(g_nfiles, MAX_FILES);
            g_files[g_nfiles++] = tsr_strdup(child_rel);
        }
    }
    closedir(d);
}

static void read_expected(const char *path) {
    FILE *f = fopen(path, "r");
    ck_assert_msg(f != NULL, "cannot open %s", path);
    char line[4096];
    int lineno = 0;
    while (fgets(line, sizeof line, f)) {
        lineno++;
        line[strcspn(line, "\r\n")] = '\0';
        if (!line[0] || line[0] == '#') continue;
        char *tab = strchr(line, '\t');
        ck_assert_msg(tab != NULL, "%s:%d: expected <path>\\t<ok|error>\\t...", path, lineno);
        *tab = '\0';
        char *outcome = tab + 1, *needle = NULL;
        char *tab2 = strchr(outcome, '\t');
        if (tab2) {
            *tab2 = '\0';
            needle = tab2 + 1;
        }
        ck_assert_int_lt(g_nrows, MAX_FILES);
        expect_row_t *r = &g_rows[g_nrows++];
        r->path = tsr_strdup(line);
        r->ok = strcmp(outcome, "ok") == 0;
        ck_assert_msg(r->ok || (strcmp(outcome, "error") == 0 && needle && needle[0]),
                      "%s:%d: outcome must be `ok` or `error<TAB>substring`", path, lineno);
        r->needle = needle ? tsr_strdup(needle) : NULL;
    }
    fclose(f);
}

START_TEST(test_chronon_samples) {
    const char *shared = getenv("TSR_SHARED_DIR");
    const char *src = getenv("TSR_SOURCE_DIR");
    snprintf(g_samples, sizeof g_samples, "%s/chronon-samples", shared ? shared : "../shared");
    struct stat st;
    if (stat(g_samples, &st) != 0 || !S_ISDIR(st.st_mode)) {
        printf("compat: skipped: %s not found\n", g_samples);
        return;
    }
    char expected[1024];
    snprintf(expected, sizeof expected, "%s/tests/compat/expected.tsv", src ? src : ".");
    read_expected(expected);
    walk("");

    int failures = 0;
    size_t n_ok = 0, n_rejected = 0;
    for (size_t i = 0; i < g_nfiles; i++) {
        expect_row_t *r = NULL;
        for (size_t k = 0; k < g_nrows && !r; k++)
            if (strcmp(g_rows[k].path, g_files[i]) == 0) r = &g_rows[k];
        if (!r) {
            printf("compat: FAIL %s: not listed in expected.tsv (a new sample?)\n", g_files[i]);
            failures++;
            continue;
        }
        r->seen = 1;
        char abs[4096];
        snprintf(abs, sizeof abs, "%s/%s", g_samples, g_files[i]);
        tsr_diag_t d;
        tsr_diag_init(&d);
        tsr_config_t *c = NULL;
        int rc = tsr_config_load(abs, NULL, &c, &d);
        if (r->ok && rc == 0) {
            printf("compat: ok       %s (%s %s, %zu columns, %s dialect)\n", g_files[i],
                   tsr_conf_kind_name(c->kind), tsr_config_metadata(c)->name, c->n_columns,
                   tsr_dialect_name(c->dialect));
            n_ok++;
        } else if (!r->ok && rc != 0 && tsr_diag_contains(&d, r->needle)) {
            printf("compat: rejected %s (%zu error%s; expected: %s)\n", g_files[i], d.n,
                   d.n == 1 ? "" : "s", r->needle);
            n_rejected++;
        } else {
            printf("compat: FAIL %s: expected %s%s%s, got rc=%d:\n", g_files[i],
                   r->ok ? "ok" : "an error containing [", r->ok ? "" : r->needle,
                   r->ok ? "" : "]", rc);
            tsr_diag_print(&d, stdout);
            failures++;
        }
        tsr_config_free(c);
        tsr_diag_free(&d);
    }
    for (size_t k = 0; k < g_nrows; k++)
        if (!g_rows[k].seen) {
            printf("compat: FAIL %s: listed in expected.tsv but not in %s (a removed sample?)\n",
                   g_rows[k].path, g_samples);
            failures++;
        }
    printf("compat: %zu files: %zu ok, %zu rejected as expected, %d failures\n", g_nfiles, n_ok,
           n_rejected, failures);
    fflush(stdout);
    ck_assert_int_gt(g_nfiles, 0);
    ck_assert_int_eq(failures, 0);
}
END_TEST

static Suite *compat_suite(void) {
    Suite *s = suite_create("compat");
    TCase *tc = tcase_create("chronon-samples");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_chronon_samples);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return tsr_test_run(compat_suite()); }
