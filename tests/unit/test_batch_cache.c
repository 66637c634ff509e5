/*
 * test_batch_cache.c — the tile store's batch record cache (worker/src/batch_cache.h): records
 * come back as put, a key put twice keeps its first record, keys sharing a bucket (the same
 * hash) are told apart, the budget bounds the memory and counts what it turned away, a clear
 * empties the cache and lets it fill again, and readers racing a clearing thread only ever
 * see whole, right records. The store-level guarantees (same values as without the cache,
 * across uploads) are in test_tile_read_many.
 */
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "batch_cache.h"
#include "tsr_test.h"

/* Key i is "key<i>"; its record is vlen(i) bytes of (i + j) & 0xff. */
static size_t keyf(int i, char *buf) { return (size_t)snprintf(buf, 24, "key%d", i); }
static size_t vlen(int i) { return 1 + (size_t)(i * 37) % 700; }
static void valf(int i, uint8_t *v) {
    for (size_t j = 0; j < vlen(i); j++) v[j] = (uint8_t)(i + (int)j);
}
static int val_ok(int i, const uint8_t *v, size_t n) {
    if (n != vlen(i)) return 0;
    for (size_t j = 0; j < n; j++)
        if (v[j] != (uint8_t)(i + (int)j)) return 0;
    return 1;
}

static void put(tsr__bcache_t *c, int i) {
    char k[24];
    uint8_t v[800];
    size_t kl = keyf(i, k);
    valf(i, v);
    tsr__bcache_put(c, k, kl, tsr__bcache_hash(c, k, kl), v, vlen(i));
}

/* 1: found and right, 0: not found; aborts on a wrong record. */
static int get(tsr__bcache_t *c, int i) {
    char k[24];
    size_t kl = keyf(i, k), n;
    const uint8_t *v = tsr__bcache_get(c, k, kl, tsr__bcache_hash(c, k, kl), &n);
    if (!v) return 0;
    if (!val_ok(i, v, n)) ck_abort_msg("key %d: wrong record (%zu bytes)", i, n);
    return 1;
}

START_TEST(test_put_get) {
    tsr__bcache_t *c = tsr__bcache_create((size_t)4 << 20);
    tsr__bcache_rdlock(c);
    for (int i = 0; i < 2000; i++) put(c, i);
    for (int i = 0; i < 2000; i++) ck_assert_int_eq(get(c, i), 1);
    ck_assert_int_eq(get(c, 2000), 0);
    ck_assert_int_eq(get(c, -1), 0);
    /* a second put of a key keeps the first record */
    char k[24];
    size_t kl = keyf(7, k);
    tsr__bcache_put(c, k, kl, tsr__bcache_hash(c, k, kl), "other", 5);
    ck_assert_int_eq(get(c, 7), 1);
    /* keys with one hash share a bucket and are told apart by their bytes */
    tsr__bcache_put(c, "aaaa", 4, 42, "A", 1);
    tsr__bcache_put(c, "bbbb", 4, 42, "BB", 2);
    tsr__bcache_put(c, "aaa", 3, 42, "C", 1);
    size_t n;
    const uint8_t *v = tsr__bcache_get(c, "aaaa", 4, 42, &n);
    ck_assert(v && n == 1 && v[0] == 'A');
    v = tsr__bcache_get(c, "bbbb", 4, 42, &n);
    ck_assert(v && n == 2 && memcmp(v, "BB", 2) == 0);
    v = tsr__bcache_get(c, "aaa", 3, 42, &n);
    ck_assert(v && n == 1 && v[0] == 'C');
    ck_assert_ptr_null(tsr__bcache_get(c, "cccc", 4, 42, &n));
    /* an empty record is a record */
    tsr__bcache_put(c, "empty", 5, 7, "", 0);
    v = tsr__bcache_get(c, "empty", 5, 7, &n);
    ck_assert(v && n == 0);
    tsr__bcache_count(c, 3, 2);
    tsr__bcache_unlock(c);
    tsr__bcache_stats_t st;
    tsr__bcache_stats(c, &st);
    ck_assert_uint_eq(st.entries, 2004);
    ck_assert_uint_eq(st.puts, 2004);
    ck_assert_uint_eq(st.hits, 3);
    ck_assert_uint_eq(st.misses, 2);
    ck_assert_uint_eq(st.full, 0);
    tsr__bcache_destroy(c);
}
END_TEST

/* A key stored as not existing (the stream cache's), and drops: a dropped key is gone, the
 * keys sharing its bucket before and after it stay, and it can be stored again. */
START_TEST(test_absent_and_drop) {
    tsr__bcache_t *c = tsr__bcache_create((size_t)1 << 20);
    tsr__bcache_rdlock(c);
    tsr__bcache_put(c, "none", 4, 9, NULL, 0);
    size_t n = 99;
    const uint8_t *v = tsr__bcache_get(c, "none", 4, 9, &n);
    ck_assert(v == TSR__BCACHE_ABSENT && n == 0);
    tsr__bcache_put(c, "none", 4, 9, "late", 4); /* a second put keeps the first */
    ck_assert(tsr__bcache_get(c, "none", 4, 9, &n) == TSR__BCACHE_ABSENT);
    tsr__bcache_put(c, "k1", 2, 5, "one", 3); /* one bucket: k3 -> k2 -> k1 */
    tsr__bcache_put(c, "k2", 2, 5, "two", 3);
    tsr__bcache_put(c, "k3", 2, 5, "three", 5);
    tsr__bcache_unlock(c);
    tsr__bcache_drop(c, "k2", 2, 5); /* the middle of the chain */
    tsr__bcache_drop(c, "k3", 2, 5); /* its head */
    tsr__bcache_drop(c, "none", 4, 9);
    tsr__bcache_drop(c, "k9", 2, 5); /* not there: nothing */
    tsr__bcache_rdlock(c);
    ck_assert_ptr_null(tsr__bcache_get(c, "k2", 2, 5, &n));
    ck_assert_ptr_null(tsr__bcache_get(c, "k3", 2, 5, &n));
    ck_assert_ptr_null(tsr__bcache_get(c, "none", 4, 9, &n));
    v = tsr__bcache_get(c, "k1", 2, 5, &n);
    ck_assert(v && n == 3 && memcmp(v, "one", 3) == 0);
    tsr__bcache_put(c, "k2", 2, 5, "TWO", 3); /* stored again, with what is read now */
    v = tsr__bcache_get(c, "k2", 2, 5, &n);
    ck_assert(v && n == 3 && memcmp(v, "TWO", 3) == 0);
    tsr__bcache_unlock(c);
    tsr__bcache_stats_t st;
    tsr__bcache_stats(c, &st);
    ck_assert_uint_eq(st.drops, 3);
    ck_assert_uint_eq(st.entries, 2);
    tsr__bcache_destroy(c);
}
END_TEST

START_TEST(test_budget_and_clear) {
    const size_t budget = 64 << 10;
    tsr__bcache_t *c = tsr__bcache_create(budget);
    tsr__bcache_rdlock(c);
    for (int i = 0; i < 1000; i++) put(c, i); /* ~370 KB of records: most turned away */
    int found = 0;
    for (int i = 0; i < 1000; i++) found += get(c, i);
    tsr__bcache_unlock(c);
    tsr__bcache_stats_t st;
    tsr__bcache_stats(c, &st);
    ck_assert_uint_le(st.bytes, budget);
    ck_assert_int_gt(found, 50);
    ck_assert_int_lt(found, 1000);
    ck_assert_uint_eq(st.entries, (size_t)found);
    ck_assert_uint_eq(st.full, 1000 - (uint64_t)found);
    /* a record larger than an arena chunk is turned away, not stored */
    static uint8_t big[(64 << 10) + 1];
    tsr__bcache_rdlock(c);
    tsr__bcache_put(c, "big", 3, 1, big, sizeof big);
    size_t n;
    ck_assert_ptr_null(tsr__bcache_get(c, "big", 3, 1, &n));
    tsr__bcache_unlock(c);
    tsr__bcache_clear(c);
    tsr__bcache_stats(c, &st);
    ck_assert_uint_eq(st.bytes, 0);
    ck_assert_uint_eq(st.entries, 0);
    ck_assert_uint_eq(st.clears, 1);
    tsr__bcache_rdlock(c);
    for (int i = 0; i < 1000; i++) ck_assert_int_eq(get(c, i), 0);
    put(c, 999); /* fills again after the clear */
    ck_assert_int_eq(get(c, 999), 1);
    tsr__bcache_unlock(c);
    tsr__bcache_destroy(c);
}
END_TEST

/* Readers (look up, put what is missing, check every record found) race a thread that
 * clears; with ASan this also catches a record used after its clear. */
typedef struct race {
    tsr__bcache_t *c;
    int stop;
    long hits;
    unsigned seed;
} race_t;

static void *reader(void *p) {
    race_t *r = p;
    for (int it = 0; it < 20000 && !__atomic_load_n(&r->stop, __ATOMIC_ACQUIRE); it++) {
        tsr__bcache_rdlock(r->c);
        for (int j = 0; j < 16; j++) {
            r->seed = r->seed * 1103515245u + 12345u;
            int i = (int)((r->seed >> 8) % 3000);
            if (get(r->c, i)) r->hits++;
            else put(r->c, i);
        }
        tsr__bcache_unlock(r->c);
    }
    return NULL;
}

START_TEST(test_readers_race_clears) {
    tsr__bcache_t *c = tsr__bcache_create((size_t)1 << 20);
    race_t r[2] = {{c, 0, 0, 1}, {c, 0, 0, 2}};
    pthread_t t[2];
    for (int k = 0; k < 2; k++) ck_assert_int_eq(pthread_create(&t[k], NULL, reader, &r[k]), 0);
    for (int k = 0; k < 200; k++) {
        tsr__bcache_clear(c);
        struct timespec ts = {0, 200000};
        nanosleep(&ts, NULL);
    }
    for (int k = 0; k < 2; k++) {
        __atomic_store_n(&r[k].stop, 1, __ATOMIC_RELEASE);
        pthread_join(t[k], NULL);
    }
    ck_assert_int_gt(r[0].hits + r[1].hits, 0);
    tsr__bcache_stats_t st;
    tsr__bcache_stats(c, &st);
    ck_assert_uint_eq(st.clears, 200);
    tsr__bcache_destroy(c);
}
END_TEST

static Suite *batch_cache_suite(void) {
    Suite *s = suite_create("batch_cache");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_put_get);
    tcase_add_test(tc, test_absent_and_drop);
    tcase_add_test(tc, test_budget_and_clear);
    tcase_add_test(tc, test_readers_race_clears);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return tsr_test_run(batch_cache_suite()); }
