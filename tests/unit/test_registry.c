/*
 * test_registry.c — the config registry on local files (coordinator/registry.h): create,
 * unchanged re-apply, versioned update, list by kind in name order, delete, persistence
 * across reopen, names that need escaping, and a corrupt entry reported with its path.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tsr/registry.h"
#include "tsr_test.h"

static char dir[256];

static tsr_config_t *load(const char *json) {
    tsr_diag_t d;
    tsr_diag_init(&d);
    tsr_config_t *c = NULL;
    int rc = tsr_config_load_string(json, strlen(json), "t", NULL, &c, &d);
    if (rc) tsr_diag_print(&d, stderr);
    ck_assert_int_eq(rc, 0);
    tsr_diag_free(&d);
    return c;
}

static const char *gb(const char *name, const char *op) {
    static char buf[1024];
    snprintf(buf, sizeof buf,
             "{\"metaData\": {\"name\": \"%s\", \"team\": \"risk\", \"online\": 1}, \"sources\": "
             "[{\"events\": {\"table\": \"t.ev\", \"query\": {\"selects\": {\"u\": \"u\", \"v\": \"v\"}, "
             "\"timeColumn\": \"ts\"}}}], \"keyColumns\": [\"u\"], \"aggregations\": "
             "[{\"inputColumn\": \"v\", \"operation\": \"%s\"}]}",
             name, op);
    return buf;
}

static void put(tsr_registry_t *r, const char *json, int want_created, int want_unchanged,
                int64_t want_version) {
    tsr_config_t *c = load(json);
    tsr_reg_entry_t e;
    int created, unchanged;
    tsr_error_t err;
    ck_assert_int_eq(tsr_registry_put(r, c, json, strlen(json), &e, &created, &unchanged, &err), 0);
    ck_assert_int_eq(created, want_created);
    ck_assert_int_eq(unchanged, want_unchanged);
    ck_assert_int_eq(e.version, want_version);
    ck_assert_str_eq(e.text, json);
    tsr_reg_entry_free(&e);
    tsr_config_free(c);
}

START_TEST(test_registry_lifecycle) {
    snprintf(dir, sizeof dir, "/tmp/tsr_registry_XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
    tsr_registry_t *r;
    tsr_error_t err;
    ck_assert_int_eq(tsr_registry_open(dir, &r, &err), 0);
    put(r, gb("b.sums.v1", "SUM"), 1, 0, 1);
    put(r, gb("b.sums.v1", "SUM"), 0, 1, 1);     /* same text: unchanged */
    put(r, gb("b.sums.v1", "COUNT"), 0, 0, 2);   /* changed: version 2 */
    put(r, gb("a/odd name%.v1", "SUM"), 1, 0, 1); /* escaped on disk */
    ck_assert_uint_eq(tsr_registry_count(r), 2);
    tsr_reg_entry_t *v;
    size_t n = tsr_registry_list(r, 0, &v);
    ck_assert_uint_eq(n, 2);
    ck_assert_str_eq(v[0].name, "a/odd name%.v1");
    ck_assert_str_eq(v[1].name, "b.sums.v1");
    ck_assert_int_eq(v[1].kind, TSR_CONF_GROUP_BY);
    ck_assert_str_eq(v[1].team, "risk");
    ck_assert_int_eq(v[1].online, 1);
    tsr_reg_entries_free(v, n);
    n = tsr_registry_list(r, TSR_CONF_JOIN, &v);
    ck_assert_uint_eq(n, 0);
    tsr_reg_entries_free(v, n);
    tsr_registry_close(r);

    /* reopen: everything is back, versions included */
    ck_assert_int_eq(tsr_registry_open(dir, &r, &err), 0);
    tsr_reg_entry_t e;
    ck_assert_int_eq(tsr_registry_get(r, "b.sums.v1", &e, &err), 0);
    ck_assert_int_eq(e.version, 2);
    ck_assert_ptr_nonnull(strstr(e.text, "COUNT"));
    tsr_reg_entry_free(&e);
    ck_assert_int_eq(tsr_registry_get(r, "nope", &e, &err), TSR_ENOTFOUND);
    ck_assert_ptr_nonnull(strstr(err.msg, "nope"));
    ck_assert_int_eq(tsr_registry_delete(r, "a/odd name%.v1", &e, &err), 0);
    ck_assert_str_eq(e.name, "a/odd name%.v1");
    tsr_reg_entry_free(&e);
    ck_assert_int_eq(tsr_registry_delete(r, "a/odd name%.v1", NULL, &err), TSR_ENOTFOUND);
    tsr_registry_close(r);
    ck_assert_int_eq(tsr_registry_open(dir, &r, &err), 0);
    ck_assert_uint_eq(tsr_registry_count(r), 1);
    tsr_registry_close(r);

    /* a corrupt entry fails the open and names the file */
    char path[400];
    snprintf(path, sizeof path, "%s/broken.entry", dir);
    FILE *f = fopen(path, "w");
    fputs("not a header\n{}", f);
    fclose(f);
    ck_assert_int_eq(tsr_registry_open(dir, &r, &err), TSR_ECORRUPT);
    ck_assert_ptr_nonnull(strstr(err.msg, "broken.entry"));
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    ck_assert_int_eq(system(cmd), 0);
}
END_TEST

static Suite *registry_suite(void) {
    Suite *s = suite_create("registry");
    TCase *tc = tcase_create("registry");
    tcase_add_test(tc, test_registry_lifecycle);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return tsr_test_run(registry_suite()); }
