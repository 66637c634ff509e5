/*
 * test_metrics.c — the Prometheus registry: exact exposition text for a known registry,
 * histogram bucket math (upper-inclusive bounds, +Inf, NaN, cumulative output), label and
 * help escaping, name validation, concurrent updates summing exactly, collect hooks.
 */
#include <math.h>
#include <pthread.h>
#include <string.h>

#include "tsr/metrics.h"
#include "tsr_test.h"

static char *write_all(tsr_metrics_t *m) {
    tsr_buf_t b;
    tsr_buf_init(&b);
    tsr_metrics_write(m, &b);
    char *s = tsr_strdup(tsr_buf_cstr(&b));
    tsr_buf_free(&b);
    return s;
}

START_TEST(golden_exposition) {
    tsr_metrics_t *m = tsr_metrics_new();
    tsr_error_t err;
    tsr_counter_t *c = tsr_metrics_counter(m, "tessera_fetch_requests_total",
                                           "Fetch requests served", &err);
    ck_assert_ptr_nonnull(c);
    tsr_counter_add(c, 41);
    tsr_counter_inc(c);
    static const char *const labels[2] = {"join", "status"};
    tsr_metric_family_t *fe = tsr_metrics_counter_family(
        m, "tessera_fetch_errors_total", "Fetch errors\nby join and status \\ kind", labels, 2,
        &err);
    ck_assert_ptr_nonnull(fe);
    const char *v1[2] = {"team.join_a.v1", "NOT_FOUND"};
    const char *v2[2] = {"we\"ird\\na\nme", "INTERNAL"};
    tsr_counter_add(tsr_metric_counter(fe, v1), 3);
    tsr_counter_add(tsr_metric_counter(fe, v2), 1);
    tsr_counter_add(tsr_metric_counter(fe, v1), 2); /* same child again */
    tsr_gauge_t *g = tsr_metrics_gauge(m, "tessera_worker_consumer_lag_messages",
                                       "Messages behind the topic head", &err);
    tsr_gauge_set(g, 12.5);
    tsr_gauge_add(g, -2.5);
    static const double bounds[3] = {0.001, 0.01, 0.1};
    static const char *const hl[1] = {"method"};
    tsr_metric_family_t *fh = tsr_metrics_histogram_family(
        m, "tessera_rpc_latency_seconds", "RPC latency", hl, 1, bounds, 3, &err);
    ck_assert_ptr_nonnull(fh);
    const char *mv[1] = {"FetchJoin"};
    tsr_histogram_t *h = tsr_metric_histogram(fh, mv);
    tsr_histogram_observe(h, 0.0005);
    tsr_histogram_observe(h, 0.001); /* on the bound: inclusive */
    tsr_histogram_observe(h, 0.05);
    tsr_histogram_observe(h, 3.0);
    tsr_histogram_t *hu = tsr_metrics_histogram(m, "tessera_empty_seconds", "", bounds, 1, &err);
    ck_assert_ptr_nonnull(hu);

    char *s = write_all(m);
    const char *want =
        "# HELP tessera_fetch_requests_total Fetch requests served\n"
        "# TYPE tessera_fetch_requests_total counter\n"
        "tessera_fetch_requests_total 42\n"
        "# HELP tessera_fetch_errors_total Fetch errors\\nby join and status \\\\ kind\n"
        "# TYPE tessera_fetch_errors_total counter\n"
        "tessera_fetch_errors_total{join=\"team.join_a.v1\",status=\"NOT_FOUND\"} 5\n"
        "tessera_fetch_errors_total{join=\"we\\\"ird\\\\na\\nme\",status=\"INTERNAL\"} 1\n"
        "# HELP tessera_worker_consumer_lag_messages Messages behind the topic head\n"
        "# TYPE tessera_worker_consumer_lag_messages gauge\n"
        "tessera_worker_consumer_lag_messages 10\n"
        "# HELP tessera_rpc_latency_seconds RPC latency\n"
        "# TYPE tessera_rpc_latency_seconds histogram\n"
        "tessera_rpc_latency_seconds_bucket{method=\"FetchJoin\",le=\"0.001\"} 2\n"
        "tessera_rpc_latency_seconds_bucket{method=\"FetchJoin\",le=\"0.01\"} 2\n"
        "tessera_rpc_latency_seconds_bucket{method=\"FetchJoin\",le=\"0.1\"} 3\n"
        "tessera_rpc_latency_seconds_bucket{method=\"FetchJoin\",le=\"+Inf\"} 4\n"
        "tessera_rpc_latency_seconds_sum{method=\"FetchJoin\"} 3.0515\n"
        "tessera_rpc_latency_seconds_count{method=\"FetchJoin\"} 4\n"
        "# HELP tessera_empty_seconds \n"
        "# TYPE tessera_empty_seconds histogram\n"
        "tessera_empty_seconds_bucket{le=\"0.001\"} 0\n"
        "tessera_empty_seconds_bucket{le=\"+Inf\"} 0\n"
        "tessera_empty_seconds_sum 0\n"
        "tessera_empty_seconds_count 0\n";
    ck_assert_str_eq(s, want);
    free(s);
    tsr_metrics_free(m);
}
END_TEST

START_TEST(histogram_buckets) {
    tsr_metrics_t *m = tsr_metrics_new();
    static const double b[4] = {-1.0, 0.0, 1.0, 10.0};
    tsr_histogram_t *h = tsr_metrics_histogram(m, "h", "", b, 4, NULL);
    ck_assert_ptr_nonnull(h);
    double obs[] = {-5, -1, -0.5, 0, 0.5, 1, 1.0000001, 10, 10.5, INFINITY, -INFINITY, NAN};
    /* expected bucket index of each observation */
    int want[] = {0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 0, 4};
    uint64_t expect[5] = {0};
    for (size_t i = 0; i < sizeof obs / sizeof obs[0]; i++) {
        tsr_histogram_observe(h, obs[i]);
        expect[want[i]]++;
    }
    uint64_t got[5], count;
    double sum;
    tsr_histogram_read(h, &count, &sum, got);
    for (int i = 0; i < 5; i++) ck_assert_uint_eq(got[i], expect[i]);
    ck_assert_uint_eq(count, 12);
    ck_assert(isnan(sum)); /* NaN + anything */
    char *s = write_all(m);
    ck_assert_ptr_nonnull(strstr(s, "h_bucket{le=\"-1\"} 3\n"));
    ck_assert_ptr_nonnull(strstr(s, "h_bucket{le=\"0\"} 5\n"));
    ck_assert_ptr_nonnull(strstr(s, "h_bucket{le=\"1\"} 7\n"));
    ck_assert_ptr_nonnull(strstr(s, "h_bucket{le=\"10\"} 9\n"));
    ck_assert_ptr_nonnull(strstr(s, "h_bucket{le=\"+Inf\"} 12\n"));
    ck_assert_ptr_nonnull(strstr(s, "h_sum NaN\n"));
    ck_assert_ptr_nonnull(strstr(s, "h_count 12\n"));
    free(s);

    /* the default latency buckets are increasing and observe_since lands in a sane bucket */
    tsr_histogram_t *lat = tsr_metrics_histogram(m, "lat_seconds", "", tsr_metrics_latency_buckets,
                                                 TSR_METRICS_LATENCY_NBUCKETS, NULL);
    ck_assert_ptr_nonnull(lat);
    tsr_histogram_observe_since(lat, tsr_metrics_now_ns());
    tsr_histogram_read(lat, &count, &sum, NULL);
    ck_assert_uint_eq(count, 1);
    ck_assert(sum >= 0 && sum < 1.0);
    tsr_metrics_free(m);
}
END_TEST

START_TEST(format_double) {
    char buf[32];
    ck_assert_str_eq(tsr_metrics_format_double(0.1, buf), "0.1");
    ck_assert_str_eq(tsr_metrics_format_double(0.00005, buf), "5e-05");
    ck_assert_str_eq(tsr_metrics_format_double(2.5, buf), "2.5");
    ck_assert_str_eq(tsr_metrics_format_double(1.0, buf), "1");
    ck_assert_str_eq(tsr_metrics_format_double(-3.0, buf), "-3");
    ck_assert_str_eq(tsr_metrics_format_double(1e21, buf), "1e+21");
    ck_assert_str_eq(tsr_metrics_format_double(INFINITY, buf), "+Inf");
    ck_assert_str_eq(tsr_metrics_format_double(-INFINITY, buf), "-Inf");
    ck_assert_str_eq(tsr_metrics_format_double(NAN, buf), "NaN");
    /* round trip of awkward values */
    tsr_rng_t r = {7};
    for (int i = 0; i < 10000; i++) {
        double d = (tsr_rng_double(&r) - 0.5) * pow(10, (double)tsr_rng_range(&r, -30, 30));
        ck_assert(strtod(tsr_metrics_format_double(d, buf), NULL) == d);
    }
}
END_TEST

START_TEST(validation) {
    tsr_metrics_t *m = tsr_metrics_new();
    tsr_error_t err;
    ck_assert_ptr_null(tsr_metrics_counter(m, "9bad", "", &err));
    ck_assert_int_eq(err.code, TSR_EINVAL);
    ck_assert_ptr_nonnull(strstr(err.msg, "9bad"));
    ck_assert_ptr_null(tsr_metrics_counter(m, "bad-name", "", &err));
    ck_assert_ptr_null(tsr_metrics_counter(m, "", "", &err));
    ck_assert_ptr_nonnull(tsr_metrics_counter(m, "ns:ok_total", "", &err));
    ck_assert_ptr_null(tsr_metrics_gauge(m, "ns:ok_total", "", &err));
    ck_assert_int_eq(err.code, TSR_EEXIST);
    const char *le[1] = {"le"};
    static const double b[2] = {1, 2};
    ck_assert_ptr_null(tsr_metrics_histogram_family(m, "h1", "", le, 1, b, 2, &err));
    ck_assert_ptr_nonnull(strstr(err.msg, "'le'"));
    ck_assert_ptr_nonnull(tsr_metrics_counter_family(m, "c_le", "", le, 1, &err));
    const char *dunder[1] = {"__x"};
    ck_assert_ptr_null(tsr_metrics_counter_family(m, "c2", "", dunder, 1, &err));
    const char *twice[2] = {"a", "a"};
    ck_assert_ptr_null(tsr_metrics_counter_family(m, "c3", "", twice, 2, &err));
    const char *five[5] = {"a", "b", "c", "d", "e"};
    ck_assert_ptr_null(tsr_metrics_counter_family(m, "c4", "", five, 5, &err));
    static const double bad1[2] = {2, 1};
    ck_assert_ptr_null(tsr_metrics_histogram(m, "h2", "", bad1, 2, &err));
    static const double bad2[2] = {1, INFINITY};
    ck_assert_ptr_null(tsr_metrics_histogram(m, "h3", "", bad2, 2, &err));
    ck_assert_ptr_null(tsr_metrics_histogram(m, "h4", "", b, 0, &err));
    /* wrong child type */
    tsr_metric_family_t *f = tsr_metrics_gauge_family(m, "g1", "", NULL, 0, &err);
    ck_assert_ptr_null(tsr_metric_counter(f, NULL));
    ck_assert_ptr_nonnull(tsr_metric_gauge(f, NULL));
    ck_assert_ptr_eq(tsr_metric_gauge(f, NULL), tsr_metric_gauge(f, NULL));
    tsr_metrics_free(m);
}
END_TEST

typedef struct thr_arg {
    tsr_counter_t *c;
    tsr_gauge_t *g;
    tsr_histogram_t *h;
    tsr_metric_family_t *fam;
    int id;
} thr_arg_t;

#define NTHREADS 4
#define NITER 100000

static void *hammer(void *p) {
    thr_arg_t *a = p;
    for (int i = 0; i < NITER; i++) {
        tsr_counter_inc(a->c);
        tsr_gauge_add(a->g, 1.0);
        tsr_histogram_observe(a->h, (i % 3) * 0.5); /* 0, 0.5, 1.0 */
        if (i % 10000 == 0) {
            /* child creation racing with updates */
            char lbl[32];
            snprintf(lbl, sizeof lbl, "t%d_%d", a->id, i);
            const char *v[1] = {lbl};
            tsr_counter_inc(tsr_metric_counter(a->fam, v));
        }
    }
    return NULL;
}

static void *scraper(void *p) {
    tsr_metrics_t *m = p;
    for (int i = 0; i < 50; i++) {
        tsr_buf_t b;
        tsr_buf_init(&b);
        tsr_metrics_write(m, &b);
        tsr_buf_free(&b);
    }
    return NULL;
}

START_TEST(concurrent_updates) {
    tsr_metrics_t *m = tsr_metrics_new();
    static const double b[2] = {0.25, 0.75};
    const char *l[1] = {"t"};
    thr_arg_t a[NTHREADS];
    tsr_counter_t *c = tsr_metrics_counter(m, "c_total", "", NULL);
    tsr_gauge_t *g = tsr_metrics_gauge(m, "g", "", NULL);
    tsr_histogram_t *h = tsr_metrics_histogram(m, "h", "", b, 2, NULL);
    tsr_metric_family_t *fam = tsr_metrics_counter_family(m, "dyn_total", "", l, 1, NULL);
    pthread_t th[NTHREADS + 1];
    for (int i = 0; i < NTHREADS; i++) {
        a[i] = (thr_arg_t){c, g, h, fam, i};
        pthread_create(&th[i], NULL, hammer, &a[i]);
    }
    pthread_create(&th[NTHREADS], NULL, scraper, m);
    for (int i = 0; i <= NTHREADS; i++) pthread_join(th[i], NULL);
    ck_assert_uint_eq(tsr_counter_get(c), (uint64_t)NTHREADS * NITER);
    ck_assert(tsr_gauge_get(g) == (double)NTHREADS * NITER);
    uint64_t bk[3], count;
    double sum;
    tsr_histogram_read(h, &count, &sum, bk);
    ck_assert_uint_eq(count, (uint64_t)NTHREADS * NITER);
    /* i%3: 0 -> bucket 0, 1 (0.5) -> bucket 1, 2 (1.0) -> +Inf */
    uint64_t per[3] = {0};
    for (int i = 0; i < NITER; i++) per[i % 3]++;
    for (int k = 0; k < 3; k++) ck_assert_uint_eq(bk[k], per[k] * NTHREADS);
    ck_assert(sum == (double)NTHREADS * (per[1] * 0.5 + per[2] * 1.0));
    char *s = write_all(m);
    ck_assert_ptr_nonnull(strstr(s, "dyn_total{t=\"t3_90000\"} 1\n"));
    free(s);
    tsr_metrics_free(m);
}
END_TEST

static void hook(void *ud, tsr_metrics_t *m) {
    tsr_gauge_set((tsr_gauge_t *)ud, 7);
}

START_TEST(collect_hook) {
    tsr_metrics_t *m = tsr_metrics_new();
    tsr_gauge_t *g = tsr_metrics_gauge(m, "tiles", "Tiles stored", NULL);
    tsr_metrics_on_collect(m, hook, g);
    char *s = write_all(m);
    ck_assert_ptr_nonnull(strstr(s, "\ntiles 7\n"));
    free(s);
    tsr_metrics_free(m);
}
END_TEST

int main(void) {
    Suite *s = suite_create("metrics");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, golden_exposition);
    tcase_add_test(tc, histogram_buckets);
    tcase_add_test(tc, format_double);
    tcase_add_test(tc, validation);
    tcase_add_test(tc, concurrent_updates);
    tcase_add_test(tc, collect_hook);
    suite_add_tcase(s, tc);
    return tsr_test_run(s);
}
