/*
 * test_entity_store.c — entity GroupBy values (worker/entity_store.h): an upload is invisible
 * until committed, a newer upload replaces the values atomically and drops the old version,
 * an aborted upload leaves the previous one serving, and versions survive a reopen.
 */
#include <pthread.h>
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

/* The served B uploaded again (more than one write batch: 4 MiB): the served values stay
 * readable while it runs and after it fails; the commit switches them, also across a restart
 * and back by the next upload of B; records added to the served version land in place. */
static tsr_entity_upload_t *big_upload(tsr_entity_store_t *s, int64_t B, const char *suffix, int add) {
    tsr_entity_upload_t *u;
    tsr_error_t err;
    ck_assert_int_eq((add ? tsr_entity_upload_begin_add : tsr_entity_upload_begin)(s, "g.v1", B, &u, &err), 0);
    static char val[2048];
    for (int i = 0; i < (add ? 2 : 3000); i++) { /* 3000 x 2 KB: the first writes happen now */
        char key[16];
        snprintf(key, sizeof key, "k%d", i);
        int n = snprintf(val, sizeof val, "v%d%s", i, suffix);
        memset(val + n + 1, 'p', sizeof val - (size_t)n - 1); /* padding after the NUL */
        ck_assert_int_eq(tsr_entity_upload_put(u, key, strlen(key), val, sizeof val, &err), 0);
    }
    return u;
}

static void want(tsr_entity_store_t *s, int i, const char *suffix, const char *when) {
    char key[16], out[4096], exp[32];
    snprintf(key, sizeof key, "k%d", i);
    snprintf(exp, sizeof exp, "v%d%s", i, suffix);
    tsr_buf_t b;
    tsr_buf_init(&b);
    tsr_error_t err;
    int rc = tsr_entity_store_get(s, "g.v1", key, strlen(key), &b, &err);
    if (rc != 1) ck_abort_msg("%s: %s missing", when, key);
    snprintf(out, sizeof out, "%s", (const char *)b.data);
    tsr_buf_free(&b);
    if (strcmp(out, exp) != 0) ck_abort_msg("%s: %s is %s, want %s", when, key, out, exp);
}

START_TEST(test_entity_reupload_served) {
    snprintf(dir, sizeof dir, "/tmp/tsr_entity_XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
    tsr_entity_store_t *s;
    tsr_error_t err;
    const int64_t B = 86400000;
    ck_assert_int_eq(tsr_entity_store_open(dir, &s, &err), 0);
    ck_assert_int_eq(tsr_entity_upload_commit(big_upload(s, B, "", 0), &err), 0);
    tsr_entity_upload_t *u = big_upload(s, B, "x", 0);
    want(s, 1, "", "during an upload of the same B");
    want(s, 2999, "", "during an upload of the same B");
    tsr_entity_upload_abort(u);
    want(s, 1, "", "after a failed upload of the same B");
    ck_assert_int_eq(tsr_entity_upload_commit(big_upload(s, B, "y", 0), &err), 0);
    ck_assert_int_eq(tsr_entity_store_batch_end(s, "g.v1"), B);
    want(s, 1, "y", "after its commit");
    tsr_entity_store_close(s);
    ck_assert_int_eq(tsr_entity_store_open(dir, &s, &err), 0);
    ck_assert_int_eq(tsr_entity_store_batch_end(s, "g.v1"), B);
    want(s, 2999, "y", "after a restart");
    u = big_upload(s, B, "z", 0);
    want(s, 5, "y", "during a third upload of B");
    ck_assert_int_eq(tsr_entity_upload_commit(u, &err), 0);
    want(s, 5, "z", "after the third commit");
    ck_assert_int_eq(tsr_entity_upload_commit(big_upload(s, B, "a", 1), &err), 0);
    want(s, 1, "a", "after records added in place");
    want(s, 2, "z", "after records added in place");
    tsr_entity_store_close(s);
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    ck_assert_int_eq(system(cmd), 0);
}
END_TEST

/* Readers racing commits: every key of every version is found — a get that took the old
 * version just before a commit deleted it reads again with the new one. Each commit is of a
 * new day: a version id that came back while a get was descheduled (A, B, A) would look
 * unchanged to it, which real uploads, seconds apart, do not do. */
typedef struct erace {
    tsr_entity_store_t *s;
    int stop, missing;
    long gets;
} erace_t;

static void *erace_reader(void *p) {
    erace_t *r = p;
    tsr_buf_t b;
    tsr_buf_init(&b);
    for (long it = 0; !__atomic_load_n(&r->stop, __ATOMIC_ACQUIRE) && it < 5000000; it++) {
        char key[16];
        snprintf(key, sizeof key, "k%ld", it % 40);
        tsr_error_t err;
        if (tsr_entity_store_get(r->s, "g.v1", key, strlen(key), &b, &err) != 1) r->missing++;
        r->gets++;
    }
    tsr_buf_free(&b);
    return NULL;
}

START_TEST(test_entity_readers_race_commits) {
    snprintf(dir, sizeof dir, "/tmp/tsr_entity_XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
    tsr_entity_store_t *s;
    tsr_error_t err;
    ck_assert_int_eq(tsr_entity_store_open(dir, &s, &err), 0);
    for (int v = 0; v < 300; v++) {
        if (v == 1) { /* readers start once there is a version */
            static erace_t r[2];
            static pthread_t t[2];
            for (int k = 0; k < 2; k++) {
                r[k] = (erace_t){s, 0, 0, 0};
                ck_assert_int_eq(pthread_create(&t[k], NULL, erace_reader, &r[k]), 0);
            }
            for (int w = v; w < 300; w++) {
                tsr_entity_upload_t *u;
                ck_assert_int_eq(tsr_entity_upload_begin(s, "g.v1", (int64_t)(1 + w) * 86400000, &u, &err), 0);
                for (int i = 0; i < 40; i++) {
                    char key[16], val[16];
                    snprintf(key, sizeof key, "k%d", i);
                    snprintf(val, sizeof val, "v%d", w);
                    ck_assert_int_eq(tsr_entity_upload_put(u, key, strlen(key), val, strlen(val), &err), 0);
                }
                ck_assert_int_eq(tsr_entity_upload_commit(u, &err), 0);
            }
            for (int k = 0; k < 2; k++) {
                __atomic_store_n(&r[k].stop, 1, __ATOMIC_RELEASE);
                pthread_join(t[k], NULL);
                ck_assert_int_gt(r[k].gets, 0);
                ck_assert_msg(r[k].missing == 0, "reader %d: %d of %ld gets found nothing", k, r[k].missing, r[k].gets);
            }
            break;
        }
        tsr_entity_upload_t *u;
        ck_assert_int_eq(tsr_entity_upload_begin(s, "g.v1", 86400000, &u, &err), 0);
        for (int i = 0; i < 40; i++) {
            char key[16];
            snprintf(key, sizeof key, "k%d", i);
            ck_assert_int_eq(tsr_entity_upload_put(u, key, strlen(key), "v", 1, &err), 0);
        }
        ck_assert_int_eq(tsr_entity_upload_commit(u, &err), 0);
    }
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
    tcase_add_test(tc, test_entity_reupload_served);
    tcase_add_test(tc, test_entity_readers_race_commits);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return tsr_test_run(entity_suite()); }
