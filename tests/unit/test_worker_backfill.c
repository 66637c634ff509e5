/*
 * test_worker_backfill.c — backfill shards on the worker (worker.h tsr_worker_run_shard with a
 * "backfill" ShardTask) and the shared output table they write:
 *   - shards of different day ranges run at the same time in one output table, plus a
 *     "retried" shard rewriting days another is writing: every ds partition equals, byte for
 *     byte, a single local tsr_backfill_run of the whole range, and no temp folder is left;
 *   - a shared-output run leaves another writer's young .tmp-* folder alone and removes one
 *     over an hour old (tsr_out_cleanup_older);
 *   - bad shards fail with a message (bad days, a missing input partition named);
 *   - the engine's stop flag (a draining worker) ends a run with TSR_EUNAVAIL, writing nothing
 *     more.
 */
#include <dirent.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>

#include "cluster.pb-c.h"
#include "tsr/backfill.h"
#include "tsr/config.h"
#include "tsr/table.h"
#include "tsr/time.h"
#include "tsr/worker.h"
#include "tsr_test.h"

#define NDAYS 8                     /* input 2024-01-01 .. 2024-01-08 */

static char tmp[256], wh[400], out[600], ref[600];

static const char *gb_json =
    "{\"metaData\": {\"name\": \"t.bf.v1\", \"outputNamespace\": \"feat\"}, "
    "\"sources\": [{\"events\": {\"table\": \"t.ev\", "
    "\"query\": {\"selects\": {\"user\": \"user\", \"v\": \"v\"}, \"timeColumn\": \"ts\"}}}], "
    "\"keyColumns\": [\"user\"], \"aggregations\": ["
    "{\"inputColumn\": \"v\", \"operation\": \"SUM\", \"windows\": [{\"length\": 2, \"timeUnit\": \"DAYS\"}]},"
    "{\"inputColumn\": \"v\", \"operation\": \"COUNT\"}]}";

static void write_file(const char *path, const char *s) {
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs(s, f);
    fclose(f);
}

static void setup(void) {
    snprintf(tmp, sizeof tmp, "/tmp/tsr_wbf_XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(tmp));
    snprintf(wh, sizeof wh, "%s/wh", tmp);
    mkdir(wh, 0755);
    char p[700];
    snprintf(p, sizeof p, "%s/t", wh);
    mkdir(p, 0755);
    snprintf(p, sizeof p, "%s/t/ev", wh);
    mkdir(p, 0755);
    snprintf(p, sizeof p, "%s/t/ev/_schema.json", wh);
    write_file(p, "{\"user\": \"string\", \"v\": \"long\", \"ts\": \"long\"}");
    int64_t d0;
    tsr_ds_parse("2024-01-01", &d0);
    unsigned seed = 7;
    for (int d = 0; d < NDAYS; d++) {
        char ds[11];
        tsr_ds_format(d0 + d, ds);
        snprintf(p, sizeof p, "%s/t/ev/ds=%s", wh, ds);
        mkdir(p, 0755);
        tsr_buf_t b;
        tsr_buf_init(&b);
        tsr_buf_puts(&b, "user,v,ts\n");
        for (int i = 0; i < 400; i++) {
            seed = seed * 1103515245u + 12345u;
            tsr_buf_printf(&b, "u%u,%u,%lld\n", (seed >> 8) % 50, (seed >> 4) % 1000,
                           (long long)((d0 + d) * TSR_MS_PER_DAY + (int64_t)((seed >> 3) % 86400000u)));
        }
        snprintf(p, sizeof p, "%s/t/ev/ds=%s/part-0.csv", wh, ds);
        write_file(p, tsr_buf_cstr(&b));
        tsr_buf_free(&b);
    }
    snprintf(out, sizeof out, "%s/feat/t_bf_v1", wh);
    snprintf(ref, sizeof ref, "%s/ref", tmp);
}

static void teardown(void) {
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
    if (system(cmd) != 0) fprintf(stderr, "cleanup failed\n");
}

static tsr_config_t *load(void) {
    tsr_config_options_t o = {TSR_DIALECT_AUTO, wh};
    tsr_diag_t d;
    tsr_diag_init(&d);
    tsr_config_t *c = NULL;
    int rc = tsr_config_load_string(gb_json, strlen(gb_json), "gb", &o, &c, &d);
    if (rc) ck_abort_msg("config: %s", d.n ? d.items[0].text : "?");
    tsr_diag_free(&d);
    return c;
}

/* The reference: one local run of 2024-01-02 .. 2024-01-07, moved to ref/. */
static void reference(void) {
    tsr_config_t *c = load();
    tsr_backfill_opts_t o;
    memset(&o, 0, sizeof o);
    o.warehouse = wh;
    o.format = TSR_FORMAT_JSONL;
    tsr_ds_parse("2024-01-02", &o.start_day);
    tsr_ds_parse("2024-01-07", &o.end_day);
    tsr_backfill_stats_t st;
    tsr_error_t err;
    int rc = tsr_backfill_run(c, &o, &st, &err);
    if (rc) ck_abort_msg("backfill: %s", err.msg);
    ck_assert_uint_eq(st.partitions_written, 6);
    ck_assert_uint_gt(st.rows_written, 0);
    ck_assert_int_eq(rename(out, ref), 0);
    tsr_config_free(c);
}

static char *slurp(const char *path, size_t *n) {
    FILE *f = fopen(path, "r");
    if (!f) return NULL;
    tsr_buf_t b;
    tsr_buf_init(&b);
    char chunk[4096];
    size_t k;
    while ((k = fread(chunk, 1, sizeof chunk, f)) > 0) tsr_buf_append(&b, chunk, k);
    fclose(f);
    *n = b.len;
    char *s = tsr_malloc(b.len + 1);
    memcpy(s, b.data, b.len);
    s[b.len] = 0;
    tsr_buf_free(&b);
    return s;
}

/* out/ has exactly ref/'s partitions with the same bytes, and no .tmp-* folder. */
static void same_as_ref(void) {
    for (int d = 2; d <= 7; d++) {
        char a[800], b[800];
        snprintf(a, sizeof a, "%s/ds=2024-01-0%d/part-00000.jsonl", out, d);
        snprintf(b, sizeof b, "%s/ds=2024-01-0%d/part-00000.jsonl", ref, d);
        size_t na = 0, nb = 0;
        char *x = slurp(a, &na), *y = slurp(b, &nb);
        if (!x || !y || na != nb || memcmp(x, y, na) != 0) ck_abort_msg("ds=2024-01-0%d differs from the reference", d);
        free(x);
        free(y);
    }
    DIR *dir = opendir(out);
    ck_assert_ptr_nonnull(dir);
    struct dirent *e;
    int n = 0;
    while ((e = readdir(dir)) != NULL) {
        if (strncmp(e->d_name, ".tmp-", 5) == 0) ck_abort_msg("leftover %s", e->d_name);
        n += strncmp(e->d_name, "ds=", 3) == 0;
    }
    closedir(dir);
    ck_assert_int_eq(n, 6);
}

static tsr_worker_t *start_worker(void) {
    char data[400];
    snprintf(data, sizeof data, "%s/w", tmp);
    tsr_worker_opts_t o;
    memset(&o, 0, sizeof o);
    o.listen = "127.0.0.1:0";
    o.data_dir = data;
    o.warehouse = wh;
    o.id = "w-bf";
    tsr_worker_t *w;
    tsr_error_t err;
    ck_assert_msg(tsr_worker_start(&o, &w, &err) == 0, "%s", err.msg);
    return w;
}

typedef struct shard_run {
    tsr_worker_t *w;
    const char *lo, *hi;
    int rounds;
    int rc;
    uint64_t rows;
    tsr_error_t err;
} shard_run_t;

static int run_one(tsr_worker_t *w, const char *lo, const char *hi, uint64_t *rows, tsr_error_t *err) {
    Tessera__V1__ShardTask t;
    tessera__v1__shard_task__init(&t);
    t.kind = "backfill";
    t.job_id = "bf";
    t.group_by = "t.bf.v1";
    t.config_json = (char *)gb_json;
    t.part_index = -1;
    t.warehouse = wh;
    t.start_ds = (char *)lo;
    t.end_ds = (char *)hi;
    t.attempt = 1;
    size_t n = protobuf_c_message_get_packed_size(&t.base);
    uint8_t *buf = tsr_malloc(n ? n : 1);
    protobuf_c_message_pack(&t.base, buf);
    tsr_error_clear(err);
    int rc = tsr_worker_run_shard(w, buf, n, rows, err);
    free(buf);
    return rc;
}

static void *shard_thread(void *arg) {
    shard_run_t *r = arg;
    for (int i = 0; i < r->rounds && r->rc == 0; i++) r->rc = run_one(r->w, r->lo, r->hi, &r->rows, &r->err);
    return NULL;
}

START_TEST(test_concurrent_shards_equal_local_run) {
    reference();
    tsr_worker_t *w = start_worker();
    /* three writers at once: days 02..04, days 05..07, and a "retry" of 03..05 that
     * overlaps both (it rewrites their days with the same rows) */
    shard_run_t r[3] = {{w, "2024-01-02", "2024-01-04", 6, 0, 0, {0}},
                        {w, "2024-01-05", "2024-01-07", 6, 0, 0, {0}},
                        {w, "2024-01-03", "2024-01-05", 6, 0, 0, {0}}};
    pthread_t th[3];
    for (int i = 0; i < 3; i++) pthread_create(&th[i], NULL, shard_thread, &r[i]);
    for (int i = 0; i < 3; i++) pthread_join(th[i], NULL);
    for (int i = 0; i < 3; i++)
        if (r[i].rc) ck_abort_msg("shard %s..%s: %s", r[i].lo, r[i].hi, r[i].err.msg);
    ck_assert_uint_gt(r[0].rows, 0);
    same_as_ref();
    tsr_worker_stop(w);
}
END_TEST

START_TEST(test_shared_output_temp_folders) {
    reference();
    tsr_worker_t *w = start_worker();
    uint64_t rows;
    tsr_error_t err;
    ck_assert_int_eq(run_one(w, "2024-01-02", "2024-01-07", &rows, &err), 0);
    /* another writer's partition in progress (young) and a crashed writer's (two hours old) */
    char young[800], old[800];
    snprintf(young, sizeof young, "%s/.tmp-ds=2024-01-09-99999-0", out);
    snprintf(old, sizeof old, "%s/.tmp-ds=2024-01-10-99999-1", out);
    ck_assert_int_eq(mkdir(young, 0755), 0);
    ck_assert_int_eq(mkdir(old, 0755), 0);
    struct timeval tv[2];
    gettimeofday(&tv[0], NULL);
    tv[0].tv_sec -= 7200;
    tv[1] = tv[0];
    ck_assert_int_eq(utimes(old, tv), 0);
    ck_assert_int_eq(run_one(w, "2024-01-03", "2024-01-03", &rows, &err), 0);
    struct stat st;
    ck_assert_int_eq(stat(young, &st), 0);
    ck_assert_int_ne(stat(old, &st), 0);
    ck_assert_int_eq(tsr_out_cleanup_older(out, 3600), 0);
    ck_assert_int_eq(tsr_out_cleanup(out), 1);
    same_as_ref();
    tsr_worker_stop(w);
}
END_TEST

START_TEST(test_bad_backfill_shards) {
    tsr_worker_t *w = start_worker();
    uint64_t rows;
    tsr_error_t err;
    ck_assert_int_eq(run_one(w, "2024-01-02", "nope", &rows, &err), TSR_EINVAL);
    ck_assert_ptr_nonnull(strstr(err.msg, "bad days"));
    ck_assert_int_eq(run_one(w, "2024-01-07", "2024-01-09", &rows, &err), TSR_ENOTFOUND);
    ck_assert_ptr_nonnull(strstr(err.msg, "ds=2024-01-09"));
    tsr_worker_stop(w);
}
END_TEST

START_TEST(test_stop_flag) {
    tsr_config_t *c = load();
    tsr_backfill_opts_t o;
    memset(&o, 0, sizeof o);
    o.warehouse = wh;
    tsr_ds_parse("2024-01-02", &o.start_day);
    tsr_ds_parse("2024-01-07", &o.end_day);
    int stop = 1;
    o.stop = &stop;
    tsr_backfill_stats_t st;
    tsr_error_t err;
    ck_assert_int_eq(tsr_backfill_run(c, &o, &st, &err), TSR_EUNAVAIL);
    ck_assert_ptr_nonnull(strstr(err.msg, "stopped"));
    ck_assert_uint_eq(st.partitions_written, 0);
    struct stat sb;
    char p[800];
    snprintf(p, sizeof p, "%s/ds=2024-01-02", out);
    ck_assert_int_ne(stat(p, &sb), 0);
    stop = 0;
    ck_assert_int_eq(tsr_backfill_run(c, &o, &st, &err), 0);
    ck_assert_uint_eq(st.partitions_written, 6);
    tsr_config_free(c);
}
END_TEST

static Suite *worker_backfill_suite(void) {
    Suite *s = suite_create("worker_backfill");
    TCase *tc = tcase_create("worker_backfill");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_concurrent_shards_equal_local_run);
    tcase_add_test(tc, test_shared_output_temp_folders);
    tcase_add_test(tc, test_bad_backfill_shards);
    tcase_add_test(tc, test_stop_flag);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return tsr_test_run(worker_backfill_suite()); }
