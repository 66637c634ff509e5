/*
 * test_entity_store.c — entity GroupBy values (worker/entity_store.h): an upload is invisible
 * until committed, a newer upload replaces the values atomically and drops the old version,
 * an aborted upload leaves the previous one serving, and versions survive a reopen.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tsr/entity_store.h"
#include "tsr_test.h"

static char dir[256];

static int get(tsr_entity_store_t *s, const char *key, char *out) {
    tsr_buf_t b;
    tsr_buf_init(&b);
    tsr_error_t err;
    int rc = tsr_entity_store_get(s, "g.v1", key, strlen(key), &b, &err);
    ck_assert_int_ge(rc, 0);
    if (rc == 1) {
        memcpy(out, b.data, b.len);
        out[b.len] = 0;
    }
    tsr_buf_free(&b);
    return rc;
}

static void upload(tsr_entity_store_t *s, int64_t B, const char *suffix, int commit) {
    tsr_entity_upload_t *u;
    tsr_error_t err;
    ck_assert_int_eq(tsr_entity_upload_begin(s, "g.v1", B, &u, &err), 0);
    char key[16], val[32];
    for (int i = 0; i < 1000; i++) {
        snprintf(key, sizeof key, "k%d", i);
        snprintf(val, sizeof val, "v%d%s", i, suffix);
        ck_assert_int_eq(tsr_entity_upload_put(u, key, strlen(key), val, strlen(val), &err), 0);
    }
    char out[64];
    if (tsr_entity_store_batch_end(s, "g.v1") != B && get(s, "k1", out) == 1)
        ck_assert_str_ne(out, "v1x"); /* not visible before commit */
    if (commit) ck_assert_int_eq(tsr_entity_upload_commit(u, &err), 0);
    else tsr_entity_upload_abort(u);
}

START_TEST(test_entity_versions) {
    snprintf(dir, sizeof dir, "/tmp/tsr_entity_XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
    tsr_entity_store_t *s;
    tsr_error_t err;
    ck_assert_int_eq(tsr_entity_store_open(dir, &s, &err), 0);
    char out[64];
    ck_assert_int_eq(tsr_entity_store_batch_end(s, "g.v1"), INT64_MIN);
    ck_assert_int_eq(get(s, "k1", out), 0);
    upload(s, 86400000, "", 1);
    ck_assert_int_eq(get(s, "k1", out), 1);
    ck_assert_str_eq(out, "v1");
    ck_assert_int_eq(get(s, "nokey", out), 0);
    upload(s, 2 * 86400000LL, "x", 0); /* aborted: the first keeps serving */
    ck_assert_int_eq(tsr_entity_store_batch_end(s, "g.v1"), 86400000);
    ck_assert_int_eq(get(s, "k999", out), 1);
    ck_assert_str_eq(out, "v999");
    upload(s, 3 * 86400000LL, "y", 1);
    ck_assert_int_eq(get(s, "k999", out), 1);
    ck_assert_str_eq(out, "v999y");
    tsr_entity_store_close(s);
    ck_assert_int_eq(tsr_entity_store_open(dir, &s, &err), 0);
    ck_assert_int_eq(tsr_entity_store_batch_end(s, "g.v1"), 3 * 86400000LL);
    ck_assert_int_eq(get(s, "k5", out), 1);
    ck_assert_str_eq(out, "v5y");
    tsr_entity_store_close(s);
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    ck_assert_int_eq(system(cmd), 0);
}
END_TEST

static Suite *entity_suite(void) {
    Suite *s = suite_create("entity_store");
    TCase *tc = tcase_create("entity_store");
    tcase_add_test(tc, test_entity_versions);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return tsr_test_run(entity_suite()); }
