/*
 * test_value.c — types and values (common/value.c): type names and parsing, ordering,
 * equality and closeness, hashing, JSON printing, and the binary value codec (round trips of
 * random nested values; truncated and corrupted input rejected without crashing).
 */
#include "tsr_test.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tsr/error.h"
#include "tsr/value.h"

START_TEST(test_type_names) {
    char buf[TSR_TYPE_NAME_MAX];
    tsr_type_t t;
    ck_assert_str_eq(tsr_type_name(TSR_LONG, buf, sizeof buf), "long");
    ck_assert_str_eq(tsr_type_name(TSR_TYPE_MAP(TSR_TYPE_LIST(TSR_DOUBLE)), buf, sizeof buf),
                     "map<string,list<double>>");
    ck_assert_int_eq(tsr_type_parse("array<BIGINT>", &t), 0);
    ck_assert_uint_eq(t, TSR_TYPE_LIST(TSR_LONG));
    ck_assert_int_eq(tsr_type_parse(" map<string, list<float>> ", &t), 0);
    ck_assert_uint_eq(t, TSR_TYPE_MAP(TSR_TYPE_LIST(TSR_DOUBLE)));
    ck_assert_int_ne(tsr_type_parse("map<long,long>", &t), 0);
    ck_assert_int_ne(tsr_type_parse("list<long", &t), 0);
    ck_assert_int_ne(tsr_type_parse("long long", &t), 0);
    ck_assert_int_ne(tsr_type_parse("", &t), 0);
}
END_TEST

START_TEST(test_order_and_equality) {
    tsr_value_t a = tsr_value_string("ab", 2), b = tsr_value_string("abc", 3);
    ck_assert_int_lt(tsr_value_cmp(&a, &b), 0);
    tsr_value_t l = tsr_value_long(2), d = tsr_value_double(2.5), n = tsr_value_null();
    ck_assert_int_lt(tsr_value_cmp(&l, &d), 0);
    ck_assert_int_lt(tsr_value_cmp(&n, &l), 0);
    tsr_value_t x = tsr_value_double(1.0), y = tsr_value_double(1.0 + 1e-12);
    ck_assert(!tsr_value_equal(&x, &y));
    ck_assert(tsr_value_close(&x, &y));
    tsr_value_t z = tsr_value_double(1.0 + 1e-6);
    ck_assert(!tsr_value_close(&x, &z));
    tsr_value_t s1 = tsr_value_double(1e-12), s2 = tsr_value_double(-1e-12);
    ck_assert(tsr_value_close(&s1, &s2)); /* absolute tolerance near zero */
    ck_assert_uint_eq(tsr_value_hash(&a, 1), tsr_value_hash(&a, 1));
    ck_assert_uint_ne(tsr_value_hash(&a, 1), tsr_value_hash(&b, 1));
}
END_TEST

START_TEST(test_json) {
    tsr_value_t items[4] = {tsr_value_string("k\"1", 3), tsr_value_long(-3),
                            tsr_value_string("k2", 2), tsr_value_double(NAN)};
    tsr_value_t m = tsr_value_map(items, 2);
    tsr_value_t li[3] = {tsr_value_double(2.0), tsr_value_bool(1), tsr_value_null()};
    tsr_value_t l = tsr_value_list(li, 3);
    tsr_buf_t b;
    tsr_buf_init(&b);
    tsr_value_to_json(&m, &b);
    ck_assert_str_eq(tsr_buf_cstr(&b), "{\"k\\\"1\":-3,\"k2\":null}");
    tsr_buf_clear(&b);
    tsr_value_to_json(&l, &b);
    ck_assert_str_eq(tsr_buf_cstr(&b), "[2.0,true,null]");
    tsr_buf_clear(&b);
    tsr_value_t d = tsr_value_double(0.1);
    tsr_value_to_json(&d, &b);
    ck_assert_str_eq(tsr_buf_cstr(&b), "0.1");
    tsr_buf_free(&b);
}
END_TEST

/* Every finite double prints as text that parses back to the same double; short decimals
 * print in their short form. */
START_TEST(test_json_double_roundtrip) {
    tsr_rng_t r = {.s = 5};
    tsr_buf_t b;
    tsr_buf_init(&b);
    const struct { double d; const char *s; } fixed[] = {
        {0.0, "0.0"}, {2.0, "2.0"}, {-3.5, "-3.5"}, {0.1, "0.1"}, {5453.83, "5453.83"},
        {1e-7, "0.0000001"}, {123456789.125, "123456789.125"}, {-0.01, "-0.01"},
    };
    for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++) {
        tsr_buf_clear(&b);
        tsr_value_t v = tsr_value_double(fixed[i].d);
        tsr_value_to_json(&v, &b);
        ck_assert_str_eq(tsr_buf_cstr(&b), fixed[i].s);
    }
    for (int i = 0; i < 200000; i++) {
        double d;
        switch (i % 4) {
        case 0: d = (double)tsr_rng_range(&r, -10000000, 10000000) / 100.0; break;
        case 1: d = (tsr_rng_double(&r) - 0.5) * 1e6; break;
        case 2: {
            uint64_t bits = tsr_rng_next(&r);
            memcpy(&d, &bits, 8);
            if (!isfinite(d)) d = 1.5;
            break;
        }
        default: d = (double)tsr_rng_range(&r, -1000, 1000) / 7.0; break;
        }
        tsr_buf_clear(&b);
        tsr_value_t v = tsr_value_double(d);
        tsr_value_to_json(&v, &b);
        double back = strtod(tsr_buf_cstr(&b), NULL);
        if (back != d) ck_abort_msg("%.17g printed as %s", d, tsr_buf_cstr(&b));
    }
    tsr_value_t l = tsr_value_long(INT64_MIN);
    tsr_buf_clear(&b);
    tsr_value_to_json(&l, &b);
    ck_assert_str_eq(tsr_buf_cstr(&b), "-9223372036854775808");
    tsr_buf_free(&b);
}
END_TEST

static tsr_value_t random_value(tsr_rng_t *r, tsr_arena_t *a, int depth) {
    switch (tsr_rng_below(r, depth < 3 ? 7 : 5)) {
    case 0: return tsr_value_null();
    case 1: return tsr_value_bool((int)tsr_rng_below(r, 2));
    case 2: return tsr_value_long((int64_t)tsr_rng_next(r));
    case 3: return tsr_value_double((tsr_rng_double(r) - 0.5) * 1e6);
    case 4: {
        size_t n = tsr_rng_below(r, 12);
        char *s = tsr_arena_alloc(a, n + 1);
        for (size_t i = 0; i < n; i++) s[i] = (char)tsr_rng_below(r, 256);
        return tsr_value_string(s, n);
    }
    case 5: {
        size_t n = tsr_rng_below(r, 5);
        tsr_value_t *v = tsr_arena_alloc(a, (n + 1) * sizeof(*v));
        for (size_t i = 0; i < n; i++) v[i] = random_value(r, a, depth + 1);
        return tsr_value_list(v, n);
    }
    default: {
        size_t n = tsr_rng_below(r, 4);
        tsr_value_t *v = tsr_arena_alloc(a, (2 * n + 1) * sizeof(*v));
        for (size_t i = 0; i < n; i++) {
            v[2 * i] = tsr_value_string("k", 1);
            v[2 * i + 1] = random_value(r, a, depth + 1);
        }
        return tsr_value_map(v, n);
    }
    }
}

START_TEST(test_codec_roundtrip_and_corruption) {
    tsr_rng_t r = {.s = 31 + (uint64_t)_i};
    tsr_arena_t a, b;
    tsr_arena_init(&a, 0);
    tsr_arena_init(&b, 0);
    tsr_buf_t buf;
    tsr_buf_init(&buf);
    for (int iter = 0; iter < 3000; iter++) {
        tsr_value_t v = random_value(&r, &a, 0);
        tsr_buf_clear(&buf);
        tsr_value_encode(&v, &buf);
        tsr_reader_t rd;
        tsr_value_t w;
        tsr_reader_init(&rd, buf.data, buf.len);
        ck_assert_int_eq(tsr_value_decode(&rd, &b, &w), 0);
        ck_assert_uint_eq(tsr_reader_left(&rd), 0);
        ck_assert(tsr_value_equal(&v, &w));
        /* every strict prefix is rejected */
        for (size_t cut = 0; cut < buf.len; cut++) {
            tsr_reader_init(&rd, buf.data, cut);
            if (tsr_value_decode(&rd, &b, &w) != TSR_ECORRUPT) ck_abort_msg("prefix %zu accepted", cut);
        }
        /* random corruption: decodes or is rejected, never crashes */
        for (int k = 0; k < 8 && buf.len; k++) {
            uint8_t *copy = tsr_malloc(buf.len);
            memcpy(copy, buf.data, buf.len);
            copy[tsr_rng_below(&r, buf.len)] ^= (uint8_t)(1 + tsr_rng_below(&r, 255));
            tsr_reader_init(&rd, copy, buf.len);
            int rc = tsr_value_decode(&rd, &b, &w);
            if (rc != 0 && rc != TSR_ECORRUPT) ck_abort_msg("decode returned %d", rc);
            free(copy);
        }
        tsr_arena_reset(&a);
        tsr_arena_reset(&b);
    }
    tsr_buf_free(&buf);
    tsr_arena_free(&a);
    tsr_arena_free(&b);
}
END_TEST

static Suite *value_suite(void) {
    Suite *s = suite_create("value");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_type_names);
    tcase_add_test(tc, test_order_and_equality);
    tcase_add_test(tc, test_json);
    tcase_add_test(tc, test_json_double_roundtrip);
    tcase_add_loop_test(tc, test_codec_roundtrip_and_corruption, 0, 3);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return tsr_test_run(value_suite()); }
