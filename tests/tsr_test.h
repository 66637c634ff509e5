/*
 * tsr_test.h — shared helpers for the Check unit tests: a seeded PRNG (splitmix64) so every
 * randomized test is reproducible from its seed, and a main() helper that runs one suite.
 */
#ifndef TSR_TEST_H
#define TSR_TEST_H

#include <check.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

typedef struct tsr_rng {
    uint64_t s;
} tsr_rng_t;

static inline uint64_t tsr_rng_next(tsr_rng_t *r) {
    uint64_t z = (r->s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}
/* Uniform in [0, n). */
static inline uint64_t tsr_rng_below(tsr_rng_t *r, uint64_t n) { return n ? tsr_rng_next(r) % n : 0; }
/* Uniform in [lo, hi]. */
static inline int64_t tsr_rng_range(tsr_rng_t *r, int64_t lo, int64_t hi) {
    return lo + (int64_t)tsr_rng_below(r, (uint64_t)(hi - lo) + 1);
}
static inline double tsr_rng_double(tsr_rng_t *r) { return (double)(tsr_rng_next(r) >> 11) * 0x1.0p-53; }

/* Runs the suite in Check's fork mode with a per-test timeout; returns the exit status. */
/* A one-table warehouse in a fresh temp dir (wh: a mkdtemp template, e.g.
 * "/tmp/tsr_x_XXXXXX", replaced by the dir): table t.ev with the given _schema.json text and
 * one partition, ds=2024-01-01, holding a CSV of only csv_header. */
static inline void tsr_test_wh_events(char *wh, const char *schema_json, const char *csv_header) {
    ck_assert_ptr_nonnull(mkdtemp(wh));
    char p[512];
    const char *dirs[] = {"t", "t/ev", "t/ev/ds=2024-01-01"};
    for (int i = 0; i < 3; i++) {
        snprintf(p, sizeof p, "%s/%s", wh, dirs[i]);
        mkdir(p, 0755);
    }
    snprintf(p, sizeof p, "%s/t/ev/_schema.json", wh);
    FILE *f = fopen(p, "w");
    ck_assert_ptr_nonnull(f);
    fputs(schema_json, f);
    fclose(f);
    snprintf(p, sizeof p, "%s/t/ev/ds=2024-01-01/part-0.csv", wh);
    f = fopen(p, "w");
    ck_assert_ptr_nonnull(f);
    fputs(csv_header, f);
    fclose(f);
}

/* rm -rf dir (a test's temp dir). */
static inline void tsr_test_rm_rf(const char *dir) {
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "cleanup of %s failed\n", dir);
}

static inline int tsr_test_run(Suite *s) {
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

#endif
