/*
 * test_log.c — log lines (common/log.h): JSON lines parse as JSON objects with ts, level,
 * component and msg (quotes, newlines and control bytes in the message escaped), lines of
 * concurrent threads never interleave, text lines carry the component, levels filter.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tsr/http.h"
#include "tsr/log.h"
#include "tsr_test.h"

static void *writer(void *arg) {
    for (int i = 0; i < 500; i++) tsr_log(TSR_LOG_INFO, "test", "thread %d line %d \"quoted\"\n", *(int *)arg, i);
    return NULL;
}

START_TEST(test_json_lines) {
    FILE *f = tmpfile();
    ck_assert_ptr_nonnull(f);
    tsr_log_init(f, TSR_LOG_JSON, TSR_LOG_INFO);
    tsr_log(TSR_LOG_DEBUG, "test", "not written");
    tsr_log(TSR_LOG_WARN, "ingest", "bad \"message\"\t\x01 skipped");
    int ids[2] = {1, 2};
    pthread_t t[2];
    for (int i = 0; i < 2; i++) pthread_create(&t[i], NULL, writer, &ids[i]);
    for (int i = 0; i < 2; i++) pthread_join(t[i], NULL);
    rewind(f);
    char line[4096];
    int n = 0;
    tsr_arena_t a;
    tsr_arena_init(&a, 4096);
    while (fgets(line, sizeof line, f)) {
        tsr_arena_reset(&a);
        tsr_value_t v;
        tsr_error_t err;
        if (tsr_http_json_parse(line, strlen(line), &a, &v, &err) != 0)
            ck_abort_msg("line %d is not JSON (%s): %s", n, err.msg, line);
        if (v.kind != TSR_MAP || v.len != 4) ck_abort_msg("line %d: not a 4-member object", n);
        const char *want[4] = {"ts", "level", "component", "msg"};
        for (int k = 0; k < 4; k++)
            if (strncmp(v.u.items[2 * k].u.s, want[k], strlen(want[k])) != 0)
                ck_abort_msg("line %d: member %d is not %s", n, k, want[k]);
        if (n == 0) {
            ck_assert_int_eq(strncmp(v.u.items[3].u.s, "warn", 4), 0);
            ck_assert_int_eq(strncmp(v.u.items[5].u.s, "ingest", 6), 0);
            ck_assert_int_eq(strncmp(v.u.items[7].u.s, "bad \"message\"\t\x01 skipped", 24), 0);
        }
        n++;
    }
    ck_assert_int_eq(n, 1 + 2 * 500);
    tsr_arena_free(&a);
    fclose(f);
}
END_TEST

START_TEST(test_text_lines) {
    FILE *f = tmpfile();
    tsr_log_init(f, TSR_LOG_TEXT, TSR_LOG_WARN);
    ck_assert_int_eq(tsr_log_enabled(TSR_LOG_INFO), 0);
    ck_assert_int_eq(tsr_log_enabled(TSR_LOG_ERROR), 1);
    tsr_log(TSR_LOG_INFO, "serve", "filtered");
    tsr_log(TSR_LOG_ERROR, "serve", "disk %s", "full");
    rewind(f);
    char line[256];
    ck_assert_ptr_nonnull(fgets(line, sizeof line, f));
    ck_assert_str_eq(line, "tessera serve: disk full\n");
    ck_assert_ptr_null(fgets(line, sizeof line, f));
    fclose(f);
    tsr_log_format_t fmt;
    ck_assert_int_eq(tsr_log_format_parse("json", &fmt), 0);
    ck_assert_int_eq(fmt, TSR_LOG_JSON);
    ck_assert_int_eq(tsr_log_format_parse("xml", &fmt), -1);
    tsr_log_init(NULL, TSR_LOG_TEXT, TSR_LOG_DEBUG);
    ck_assert_int_eq(tsr_log_enabled(TSR_LOG_ERROR), 0);
    tsr_log(TSR_LOG_ERROR, "serve", "nowhere"); /* no stream: no crash */
}
END_TEST

static Suite *log_suite(void) {
    Suite *s = suite_create("log");
    TCase *tc = tcase_create("log");
    tcase_add_test(tc, test_json_lines);
    tcase_add_test(tc, test_text_lines);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return tsr_test_run(log_suite()); }
