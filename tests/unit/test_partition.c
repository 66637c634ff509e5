/*
 * test_partition.c — key → partition (common/partition.h): Kafka's Java murmur2 vectors (the
 * partitioner Kafka producers use by default), the key text of one and of several key
 * columns, encoded keys partition like their text, corrupt encodings are refused, and keys
 * spread over the partitions.
 */
#include <string.h>

#include "tsr/error.h"
#include "tsr/partition.h"
#include "tsr_test.h"

START_TEST(test_kafka_vectors) {
    /* org.apache.kafka.common.utils.UtilsTest#testMurmur2, made positive (x & 0x7fffffff)
     * as Kafka's partitioner does, then taken modulo a large partition count */
    static const struct { const char *key; int64_t java; } v[] = {
        {"21", -973932308},
        {"foobar", -790332482},
        {"a-little-bit-long-string", -985981536},
        {"abc", 479470107},
    };
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        int64_t want = (v[i].java & 0x7fffffff) % 2147483647;
        ck_assert_int_eq(tsr_partition_of_text(v[i].key, strlen(v[i].key), 2147483647), want);
        ck_assert_int_eq(tsr_partition_of_text(v[i].key, strlen(v[i].key), 7), want % 7);
    }
    ck_assert_int_eq(tsr_partition_of_text("abc", 3, 1), 0);
}
END_TEST

START_TEST(test_key_text) {
    tsr_buf_t b;
    tsr_buf_init(&b);
    tsr_value_t one = tsr_value_string("user_7", 6);
    tsr_partition_key_text(&one, 1, &b);
    ck_assert_int_eq(b.len, 6);
    ck_assert_int_eq(memcmp(b.data, "user_7", 6), 0);
    tsr_buf_clear(&b);
    tsr_value_t num = tsr_value_long(-42);
    tsr_partition_key_text(&num, 1, &b);
    ck_assert_int_eq(b.len, 3);
    ck_assert_int_eq(memcmp(b.data, "-42", 3), 0);
    tsr_buf_clear(&b);
    tsr_value_t two[2] = {tsr_value_string("u1", 2), tsr_value_long(42)};
    tsr_partition_key_text(two, 2, &b);
    ck_assert_int_eq(b.len, strlen("[\"u1\",42]"));
    ck_assert_int_eq(memcmp(b.data, "[\"u1\",42]", b.len), 0);
    tsr_buf_free(&b);
}
END_TEST

START_TEST(test_encoded_keys) {
    tsr_buf_t enc, text, scratch;
    tsr_buf_init(&enc);
    tsr_buf_init(&text);
    tsr_buf_init(&scratch);
    int counts[8] = {0};
    char s[32];
    for (int i = 0; i < 8000; i++) {
        int n = snprintf(s, sizeof s, "user_%d", i);
        tsr_value_t keys[2] = {tsr_value_string(s, (uint32_t)n), tsr_value_long(i % 3)};
        size_t nkeys = (i & 1) ? 2 : 1;
        tsr_buf_clear(&enc);
        tsr_buf_clear(&text);
        for (size_t k = 0; k < nkeys; k++) tsr_value_encode(&keys[k], &enc);
        tsr_partition_key_text(keys, nkeys, &text);
        int want = tsr_partition_of_text(text.data, text.len, 8);
        int got = tsr_partition_of_key(enc.data, enc.len, nkeys, 8, &scratch);
        if (got != want) ck_abort_msg("key %d: partition %d, text says %d", i, got, want);
        counts[got]++;
    }
    for (int p = 0; p < 8; p++)      /* 1000 expected per partition */
        ck_assert_msg(counts[p] > 850 && counts[p] < 1150, "partition %d has %d keys", p, counts[p]);
    /* truncated, trailing bytes, wrong key count */
    tsr_buf_clear(&enc);
    tsr_value_t k = tsr_value_string("abc", 3);
    tsr_value_encode(&k, &enc);
    ck_assert_int_eq(tsr_partition_of_key(enc.data, enc.len - 1, 1, 8, &scratch), TSR_ECORRUPT);
    ck_assert_int_eq(tsr_partition_of_key(enc.data, enc.len, 2, 8, &scratch), TSR_ECORRUPT);
    tsr_buf_append(&enc, "x", 1);
    ck_assert_int_eq(tsr_partition_of_key(enc.data, enc.len, 1, 8, &scratch), TSR_ECORRUPT);
    ck_assert_int_eq(tsr_partition_of_key(enc.data, enc.len, 0, 8, &scratch), TSR_ECORRUPT);
    tsr_buf_free(&enc);
    tsr_buf_free(&text);
    tsr_buf_free(&scratch);
}
END_TEST

static Suite *partition_suite(void) {
    Suite *s = suite_create("partition");
    TCase *tc = tcase_create("partition");
    tcase_add_test(tc, test_kafka_vectors);
    tcase_add_test(tc, test_key_text);
    tcase_add_test(tc, test_encoded_keys);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return tsr_test_run(partition_suite()); }
