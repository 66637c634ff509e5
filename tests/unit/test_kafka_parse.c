/*
 * test_kafka_parse.c — Kafka JSON message → typed row (common/src/kafka_parse.c): the
 * warehouse reader's conversions, required fields, per-message errors with what and where,
 * and a fuzz run (random bytes and mutated valid messages) that must never crash and must
 * return either a row of the declared types or TSR_EPARSE — and, differentially, whenever the
 * fast path answers, the jansson path must give the same row.
 */
#include <string.h>

#include "kafka_int.h"
#include "tsr/kafka.h"
#include "tsr_test.h"

static const tsr_kafka_field_t k_fields[] = {
    {"user", TSR_STRING, 1},
    {"ts", TSR_LONG, 1},
    {"amount", TSR_DOUBLE, 0},
    {"ok", TSR_BOOL, 0},
    {"tags", TSR_TYPE_LIST(TSR_STRING), 0},
    {"attrs", TSR_TYPE_MAP(TSR_LONG), 0},
};
#define NF (sizeof k_fields / sizeof k_fields[0])

/* Scalar columns only: the fast path's domain. */
static const tsr_kafka_field_t k_flat[] = {
    {"user", TSR_STRING, 1}, {"ts", TSR_LONG, 1}, {"amount", TSR_DOUBLE, 0},
    {"ok", TSR_BOOL, 0},     {"n", TSR_LONG, 0},  {"label", TSR_STRING, 0},
};
#define NFLAT (sizeof k_flat / sizeof k_flat[0])

static int parse(const char *s, tsr_value_t *row, tsr_error_t *err, tsr_arena_t *a) {
    return tsr_kafka_json_to_row(s, strlen(s), k_fields, NF, a, row, err);
}

START_TEST(test_good_rows) {
    tsr_arena_t a;
    tsr_arena_init(&a, 0);
    tsr_value_t row[NF];
    tsr_error_t err;
    ck_assert_int_eq(parse("{\"user\":\"u1\",\"ts\":1700000000123,\"amount\":12.5,\"ok\":true,"
                           "\"tags\":[\"a\",\"b\"],\"attrs\":{\"x\":1,\"y\":2},\"extra\":[1]}",
                           row, &err, &a),
                     0);
    ck_assert_int_eq(row[0].kind, TSR_STRING);
    ck_assert_uint_eq(row[0].len, 2);
    ck_assert(memcmp(row[0].u.s, "u1", 2) == 0);
    ck_assert_int_eq(row[1].kind, TSR_LONG);
    ck_assert_int_eq(row[1].u.l, 1700000000123LL);
    ck_assert_int_eq(row[2].kind, TSR_DOUBLE);
    ck_assert(row[2].u.d == 12.5);
    ck_assert_int_eq(row[3].kind, TSR_BOOL);
    ck_assert_int_eq(row[3].u.b, 1);
    ck_assert_int_eq(row[4].kind, TSR_LIST);
    ck_assert_uint_eq(row[4].len, 2);
    ck_assert_int_eq(row[5].kind, TSR_MAP);
    ck_assert_uint_eq(row[5].len, 2);
    ck_assert_int_eq(row[5].u.items[1].u.l + row[5].u.items[3].u.l, 3);

    /* the warehouse reader's coercions: numeric strings, integral doubles, string keeps JSON
     * text of a number; optional fields missing or null are null */
    ck_assert_int_eq(parse("{\"user\":42,\"ts\":\"17\",\"amount\":\"2.5\",\"ok\":null}", row,
                           &err, &a),
                     0);
    ck_assert_uint_eq(row[0].len, 2);
    ck_assert(memcmp(row[0].u.s, "42", 2) == 0);
    ck_assert_int_eq(row[1].u.l, 17);
    ck_assert(row[2].u.d == 2.5);
    ck_assert_int_eq(row[3].kind, TSR_NULL);
    ck_assert_int_eq(row[4].kind, TSR_NULL);
    ck_assert_int_eq(parse("{\"user\":\"u\",\"ts\":3.0e3}", row, &err, &a), 0);
    ck_assert_int_eq(row[1].u.l, 3000);
    /* int64 extremes are exact */
    ck_assert_int_eq(parse("{\"user\":\"u\",\"ts\":-9223372036854775808}", row, &err, &a), 0);
    ck_assert_int_eq(row[1].u.l, INT64_MIN);
    tsr_arena_free(&a);
}
END_TEST

static void expect_error(const char *s, const char *needle) {
    tsr_arena_t a;
    tsr_arena_init(&a, 0);
    tsr_value_t row[NF];
    tsr_error_t err;
    tsr_error_clear(&err);
    int rc = s ? parse(s, row, &err, &a)
               : tsr_kafka_json_to_row(NULL, 0, k_fields, NF, &a, row, &err);
    ck_assert_msg(rc == TSR_EPARSE, "%s: rc %d", s ? s : "(null)", rc);
    ck_assert_msg(strstr(err.msg, needle) != NULL, "%s: '%s' lacks '%s'", s ? s : "(null)",
                  err.msg, needle);
    for (size_t i = 0; i < NF; i++) ck_assert_int_eq(row[i].kind, TSR_NULL);
    tsr_arena_free(&a);
}

START_TEST(test_bad_rows) {
    expect_error("", "invalid JSON");
    expect_error("{\"user\":\"u\",", "invalid JSON at column");
    expect_error("{\"user\":\"u\",\"ts\":1} trailing", "invalid JSON");
    expect_error("[1,2]", "not a JSON object");
    expect_error("\"text\"", "invalid JSON");  /* scalars are not decoded at the top */
    expect_error("{\"ts\":1}", "field 'user': missing (required)");
    expect_error("{\"user\":null,\"ts\":1}", "field 'user': null (required)");
    expect_error("{\"user\":\"u\",\"ts\":\"soon\"}", "field 'ts': value is not a long (declared long)");
    expect_error("{\"user\":\"u\",\"ts\":1.5}", "field 'ts': value is not a long");
    expect_error("{\"user\":\"u\",\"ts\":1,\"ok\":\"yes\"}", "field 'ok': value is not a boolean");
    expect_error("{\"user\":\"u\",\"ts\":1,\"tags\":\"a\"}", "field 'tags': value is not a list");
    expect_error("{\"user\":\"u\",\"ts\":1,\"attrs\":{\"x\":\"y\"}}", "field 'attrs'");
    expect_error("{\"user\":\"u\xff\",\"ts\":1}", "invalid JSON");  /* bad UTF-8 */
    expect_error(NULL, "empty message");

    /* a message's error names its partition and offset */
    tsr_kafka_msg_t m = {.partition = 2, .offset = 7, .value = "{\"ts\":1}", .value_len = 8};
    tsr_arena_t a;
    tsr_arena_init(&a, 0);
    tsr_value_t row[NF];
    tsr_error_t err;
    ck_assert_int_eq(tsr_kafka_msg_to_row(&m, k_fields, NF, &a, row, &err), TSR_EPARSE);
    ck_assert_str_eq(err.msg, "partition 2 offset 7: field 'user': missing (required)");
    m.value = NULL;  /* tombstone */
    m.value_len = 0;
    ck_assert_int_eq(tsr_kafka_msg_to_row(&m, k_fields, NF, &a, row, &err), TSR_EPARSE);
    /* not NUL-terminated: only value_len bytes are read */
    m.value = "{\"user\":\"u\",\"ts\":5}GARBAGE";
    m.value_len = 19;
    ck_assert_int_eq(tsr_kafka_msg_to_row(&m, k_fields, NF, &a, row, &err), 0);
    ck_assert_int_eq(row[1].u.l, 5);
    tsr_arena_free(&a);
}
END_TEST

static void check_types(const tsr_value_t *row) {
    for (size_t i = 0; i < NF; i++) {
        if (row[i].kind == TSR_NULL) {
            ck_assert_msg(!k_fields[i].required, "required field %s is null", k_fields[i].name);
            continue;
        }
        ck_assert_int_eq(row[i].kind, tsr_type_kind(k_fields[i].type));
    }
}

START_TEST(test_fuzz) {
    tsr_rng_t rng = {.s = 0xfeed + (uint64_t)_i};
    static const char *seeds[] = {
        "{\"user\":\"u1\",\"ts\":1700000000123,\"amount\":12.5,\"ok\":true,\"tags\":[\"a\"],"
        "\"attrs\":{\"x\":1}}",
        "{\"user\":42,\"ts\":\"17\",\"amount\":\"2.5\",\"ok\":null,\"tags\":[],\"attrs\":{}}",
        "{\"user\":\"\\u00e9\\n\",\"ts\":-1,\"tags\":[null,\"b\"],\"attrs\":{\"\":null}}",
    };
    static const char alphabet[] = "{}[]\":,0123456789.eE-+truefalsn\\u \t\n\xc3\xa9\xff\x00";
    char buf[512];
    tsr_arena_t a;
    tsr_arena_init(&a, 0);
    tsr_value_t row[NF];
    tsr_error_t err;
    int ok = 0, bad = 0;
    for (int it = 0; it < 12000; it++) {
        size_t n;
        if (tsr_rng_below(&rng, 4) == 0) {
            /* random bytes from a JSON-ish alphabet */
            n = tsr_rng_below(&rng, 80);
            for (size_t i = 0; i < n; i++)
                buf[i] = alphabet[tsr_rng_below(&rng, sizeof alphabet - 1)];
        } else {
            const char *s = seeds[tsr_rng_below(&rng, 3)];
            n = strlen(s);
            memcpy(buf, s, n);
            int muts = 1 + (int)tsr_rng_below(&rng, 4);
            for (int k = 0; k < muts && n > 0; k++) {
                size_t pos = tsr_rng_below(&rng, n);
                switch (tsr_rng_below(&rng, 4)) {
                case 0: buf[pos] = (char)tsr_rng_below(&rng, 256); break;  /* flip */
                case 1: n = pos; break;                                    /* truncate */
                case 2:                                                    /* insert */
                    if (n + 1 < sizeof buf) {
                        memmove(buf + pos + 1, buf + pos, n - pos);
                        buf[pos] = alphabet[tsr_rng_below(&rng, sizeof alphabet - 1)];
                        n++;
                    }
                    break;
                default:                                                   /* delete */
                    memmove(buf + pos, buf + pos + 1, n - pos - 1);
                    n--;
                    break;
                }
            }
        }
        /* the parser must read only n bytes: poison what follows */
        memset(buf + n, '}', sizeof buf - n);
        int rc = tsr_kafka_json_to_row(buf, n, k_fields, NF, &a, row, &err);
        ck_assert_msg(rc == 0 || rc == TSR_EPARSE, "rc %d", rc);
        if (rc == 0) {
            check_types(row);
            ok++;
        } else {
            ck_assert(err.msg[0] != '\0');
            bad++;
        }
        tsr_arena_reset(&a);
    }
    ck_assert_int_gt(ok, 60);    /* the mutations keep a share of messages valid */
    ck_assert_int_gt(bad, 600);
    /* deep nesting is refused by jansson's depth limit, not by a stack overflow */
    static char deep[300000];
    size_t d = 0;
    d += (size_t)snprintf(deep, sizeof deep, "{\"user\":\"u\",\"ts\":1,\"tags\":");
    for (int i = 0; i < 100000; i++) deep[d++] = '[';
    ck_assert_int_eq(tsr_kafka_json_to_row(deep, d, k_fields, NF, &a, row, &err), TSR_EPARSE);
    tsr_arena_free(&a);
}
END_TEST

/* The fast path must answer the common shapes (else it silently costs nothing but also
 * gains nothing) and agree with jansson on them. */
START_TEST(test_fast_path_domain) {
    static const char *fast[] = {
        "{\"user\":\"u1\",\"ts\":1700000000123,\"amount\":12.5,\"ok\":true}",
        " {\"ts\":-5,\"user\":\"a\\\"b\\n\",\"amount\":\"2.5\",\"n\":\"-7\"}\r\n",
        "{\"user\":\"u\",\"ts\":3.0e3,\"amount\":7,\"ok\":null,\"skip\":{\"a\":[1,2.5,{}],\"b\":null}}",
        "{\"user\":\"u\",\"ts\":1,\"ts\":2}",
        "{\"user\":\"\",\"ts\":0,\"amount\":1e-400,\"label\":\"x/y\\/z\"}",
    };
    static const char *slow[] = {
        "{\"user\":\"\u00e9\",\"ts\":1}",          /* \\u escape */
        "{\"user\":\"\xc3\xa9\",\"ts\":1}",           /* non-ASCII */
        "{\"user\":42,\"ts\":1}",                  /* string column, number value */
        "{\"user\":\"u\",\"ts\":1234567890123456789}", /* 19 digits */
        "{\"user\":\"u\",\"ts\":1.5}",               /* error: jansson's message */
        "{\"user\":\"u\"}",                         /* required missing */
        "{\"user\":\"u\",\"ts\":1,\"amount\":1e400}",  /* overflow */
    };
    tsr_arena_t a;
    tsr_arena_init(&a, 0);
    tsr_value_t r1[NFLAT], r2[NFLAT];
    tsr_error_t err;
    for (size_t i = 0; i < sizeof fast / sizeof fast[0]; i++) {
        size_t n = strlen(fast[i]);
        ck_assert_msg(tsr__kafka_row_fast(fast[i], n, k_flat, NFLAT, &a, r1) == 1, "%s", fast[i]);
        ck_assert_msg(tsr__kafka_row_jansson(fast[i], n, k_flat, NFLAT, &a, r2, &err) == 0, "%s",
                      fast[i]);
        for (size_t c = 0; c < NFLAT; c++)
            ck_assert_msg(tsr_value_equal(&r1[c], &r2[c]), "%s: column %zu differs", fast[i], c);
    }
    for (size_t i = 0; i < sizeof slow / sizeof slow[0]; i++)
        ck_assert_msg(tsr__kafka_row_fast(slow[i], strlen(slow[i]), k_flat, NFLAT, &a, r1) == 0,
                      "%s", slow[i]);
    /* and the public function still decides those through jansson */
    ck_assert_int_eq(tsr_kafka_json_to_row(slow[0], strlen(slow[0]), k_flat, NFLAT, &a, r1, &err), 0);
    ck_assert_uint_eq(r1[0].len, 2);
    ck_assert_int_eq(tsr_kafka_json_to_row(slow[4], strlen(slow[4]), k_flat, NFLAT, &a, r1, &err),
                     TSR_EPARSE);
    ck_assert_msg(strstr(err.msg, "field 'ts'") != NULL, "%s", err.msg);
    tsr_arena_free(&a);
}
END_TEST

/* Differential fuzz: mutated flat events; when the fast path answers, jansson must agree. */
START_TEST(test_fuzz_differential) {
    tsr_rng_t rng = {.s = 0xd1ff + (uint64_t)_i};
    static const char *seeds[] = {
        "{\"user\":\"u1\",\"ts\":1700000000123,\"amount\":12.5,\"ok\":true,\"n\":\"42\"}",
        "{\"ts\":-5,\"user\":\"a\\\"b\\n\",\"amount\":\"2.5e3\",\"label\":null,\"x\":[1,{\"y\":false}]}",
        "{\"user\":\"u\",\"ts\":3.0e3,\"amount\":-0.0,\"ok\":false,\"n\":9007199254740993}",
    };
    static const char alphabet[] = "{}[]\":,0123456789.eE-+\\ntrufalsbx/ \t";
    char buf[512];
    tsr_arena_t a;
    tsr_arena_init(&a, 0);
    tsr_value_t r1[NFLAT], r2[NFLAT];
    tsr_error_t err;
    int fast = 0, agree_bad = 0;
    for (int it = 0; it < 15000; it++) {
        const char *s = seeds[tsr_rng_below(&rng, 3)];
        size_t n = strlen(s);
        memcpy(buf, s, n);
        int muts = (int)tsr_rng_below(&rng, 3);
        for (int k = 0; k < muts && n > 1; k++) {
            size_t pos = tsr_rng_below(&rng, n);
            switch (tsr_rng_below(&rng, 3)) {
            case 0: buf[pos] = alphabet[tsr_rng_below(&rng, sizeof alphabet - 1)]; break;
            case 1:
                memmove(buf + pos + 1, buf + pos, n - pos);
                buf[pos] = alphabet[tsr_rng_below(&rng, sizeof alphabet - 1)];
                n++;
                break;
            default:
                memmove(buf + pos, buf + pos + 1, n - pos - 1);
                n--;
                break;
            }
        }
        memset(buf + n, '}', sizeof buf - n);
        int jr = tsr__kafka_row_jansson(buf, n, k_flat, NFLAT, &a, r2, &err);
        if (tsr__kafka_row_fast(buf, n, k_flat, NFLAT, &a, r1)) {
            fast++;
            ck_assert_msg(jr == 0, "fast path accepted what jansson rejects: %.*s (%s)", (int)n,
                          buf, err.msg);
            for (size_t c = 0; c < NFLAT; c++)
                ck_assert_msg(tsr_value_equal(&r1[c], &r2[c]), "column %zu differs on %.*s", c,
                              (int)n, buf);
        } else if (jr) {
            agree_bad++;
        }
        tsr_arena_reset(&a);
    }
    ck_assert_int_gt(fast, 2500);
    ck_assert_int_gt(agree_bad, 500);
    tsr_arena_free(&a);
}
END_TEST

static Suite *kafka_parse_suite(void) {
    Suite *s = suite_create("kafka_parse");
    TCase *tc = tcase_create("parse");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_good_rows);
    tcase_add_test(tc, test_bad_rows);
    tcase_add_loop_test(tc, test_fuzz, 0, 3);
    tcase_add_test(tc, test_fast_path_domain);
    tcase_add_loop_test(tc, test_fuzz_differential, 0, 3);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return tsr_test_run(kafka_parse_suite()); }
