/*
 * test_mem.c — arenas (common/mem.h): reset keeps the first chunk only; reset_fit re-makes the
 * arena with one chunk that holds a call like the last one (at most keep_max), keeps it while
 * calls fit, and never grows past keep_max. tsr_malloc_name: the unit tests link no jemalloc
 * (only the programs do), so it says glibc, and it truncates to the buffer it is given.
 */
#include <string.h>

#include "tsr/mem.h"
#include "tsr_test.h"

/* One "call": n allocations of sz bytes, each written (a use-after-reset shows under ASan);
 * returns how many times the arena's current chunk changed (0: it all fit in one chunk). */
static int call(tsr_arena_t *a, int n, size_t sz) {
    int changes = 0;
    const tsr_arena_chunk_t *head = NULL;
    for (int i = 0; i < n; i++) {
        memset(tsr_arena_alloc(a, sz), i, sz);
        if (i > 0 && a->head != head) changes++;
        head = a->head;
    }
    return changes;
}

START_TEST(test_reset_fit) {
    tsr_arena_t a;
    tsr_arena_init(&a, 4096);
    ck_assert_int_gt(call(&a, 100, 1000), 20);        /* ~100 KB in 4 KiB chunks */
    tsr_arena_reset_fit(&a, (size_t)1 << 20);
    ck_assert_ptr_null(a.head);                       /* re-made, empty */
    ck_assert_uint_ge(a.chunk_size, 125000);          /* >= 1.25 x the last use */
    ck_assert_uint_le(a.chunk_size, 4096u * 64);      /* the next power-of-two multiple */
    size_t fit = a.chunk_size;
    const tsr_arena_chunk_t *kept = NULL;
    for (int round = 0; round < 5; round++) {         /* the same call now fits one chunk */
        ck_assert_int_eq(call(&a, 100, 1000), 0);
        if (round > 0) ck_assert_ptr_eq(a.head, kept); /* the chunk kept by the last reset */
        tsr_arena_reset_fit(&a, (size_t)1 << 20);
        ck_assert_uint_eq(a.chunk_size, fit);
        kept = a.head;
        ck_assert_ptr_nonnull(kept);                  /* a plain reset keeps the chunk */
    }
    call(&a, 10, 100);                                /* a smaller call keeps it too */
    tsr_arena_reset_fit(&a, (size_t)1 << 20);
    ck_assert_uint_eq(a.chunk_size, fit);
    call(&a, 100, 100000);                            /* ~10 MB: capped at keep_max */
    tsr_arena_reset_fit(&a, (size_t)1 << 20);
    ck_assert_uint_eq(a.chunk_size, (size_t)1 << 20);
    call(&a, 100, 100000);
    tsr_arena_reset_fit(&a, (size_t)1 << 20);
    ck_assert_uint_eq(a.chunk_size, (size_t)1 << 20); /* never past it */
    tsr_arena_free(&a);
}
END_TEST

START_TEST(test_reset_keeps_first_chunk) {
    tsr_arena_t a;
    tsr_arena_init(&a, 1024);
    ck_assert_int_gt(call(&a, 50, 100), 1);
    tsr_arena_reset(&a);
    ck_assert_ptr_nonnull(a.head);
    ck_assert_uint_eq(a.total, 0);
    ck_assert_int_eq(call(&a, 9, 100), 0);            /* the kept chunk serves what fits */
    tsr_arena_free(&a);
}
END_TEST

START_TEST(test_malloc_name) {
    char buf[64];
    memset(buf, 'x', sizeof buf);
    tsr_malloc_name(buf, sizeof buf);
    ck_assert_str_eq(buf, "glibc");
    char tiny[3];
    tsr_malloc_name(tiny, sizeof tiny);
    ck_assert_str_eq(tiny, "gl");
}
END_TEST

static Suite *mem_suite(void) {
    Suite *s = suite_create("mem");
    TCase *tc = tcase_create("arena");
    tcase_add_test(tc, test_reset_fit);
    tcase_add_test(tc, test_reset_keeps_first_chunk);
    suite_add_tcase(s, tc);
    TCase *tm = tcase_create("malloc");
    tcase_add_test(tm, test_malloc_name);
    suite_add_tcase(s, tm);
    return s;
}

int main(void) { return tsr_test_run(mem_suite()); }
