/*
 * test_pbvalue.c — tsr_value_t <-> tessera.v1.Value (common/pbvalue.h): every kind round-trips
 * through the wire format (maps keep their entry order, non-string map keys become JSON text),
 * an unset Value reads as null, nesting deeper than TSR_PB_MAX_DEPTH is TSR_EINVAL, and
 * tsr_pb_unpack names the message it could not read. The direct encoder (tsr_pb_value_size /
 * _write, used for FetchJoin responses) writes the bytes protobuf-c packs, for every kind.
 */
#include <string.h>

#include "cluster.pb-c.h"
#include "tsr/pbvalue.h"
#include "tsr_test.h"

static tsr_value_t roundtrip(const tsr_value_t *v, tsr_arena_t *a) {
    tsr_buf_t b;
    tsr_buf_init(&b);
    tsr_pb_pack(&tsr_pb_value_new(v, a)->base, &b);
    tsr_error_t err;
    Tessera__V1__Value *pv = tsr_pb_unpack(&tessera__v1__value__descriptor, b.data, b.len, a, &err);
    ck_assert_ptr_nonnull(pv);
    tsr_value_t out;
    ck_assert_int_eq(tsr_pb_value_get(pv, a, &out), 0);
    tsr_buf_free(&b);
    return out;
}

START_TEST(test_roundtrip) {
    tsr_arena_t a;
    tsr_arena_init(&a, 4096);
    tsr_value_t inner[2] = {tsr_value_long(-7), tsr_value_double(2.5)};
    tsr_value_t map[6] = {tsr_value_string("z", 1), tsr_value_list(inner, 2),
                          tsr_value_string("a", 1), tsr_value_null(),
                          tsr_value_long(42), tsr_value_bool(1)};
    tsr_value_t items[5] = {tsr_value_null(), tsr_value_bool(0), tsr_value_string("héllo", 6),
                            tsr_value_map(map, 3), tsr_value_long(INT64_MIN)};
    tsr_value_t v = tsr_value_list(items, 5);
    tsr_value_t got = roundtrip(&v, &a);
    /* the integer map key comes back as its JSON text */
    map[4] = tsr_value_string("42", 2);
    ck_assert(tsr_value_equal(&got, &v));
    ck_assert_int_eq(got.u.items[3].kind, TSR_MAP);
    ck_assert_int_eq(strncmp(got.u.items[3].u.items[0].u.s, "z", 1), 0); /* order kept */
    tsr_value_t out;
    ck_assert_int_eq(tsr_pb_value_get(NULL, &a, &out), 0);
    ck_assert_int_eq(out.kind, TSR_NULL);
    Tessera__V1__Value unset;
    tessera__v1__value__init(&unset);
    ck_assert_int_eq(tsr_pb_value_get(&unset, &a, &out), 0);
    ck_assert_int_eq(out.kind, TSR_NULL);
    tsr_arena_free(&a);
}
END_TEST

START_TEST(test_depth_and_malformed) {
    tsr_arena_t a;
    tsr_arena_init(&a, 4096);
    tsr_value_t v = tsr_value_long(1);
    for (int d = 0; d < TSR_PB_MAX_DEPTH + 2; d++) {
        tsr_value_t *one = tsr_arena_alloc(&a, sizeof *one);
        *one = v;
        v = tsr_value_list(one, 1);
    }
    tsr_value_t out;
    ck_assert_int_eq(tsr_pb_value_get(tsr_pb_value_new(&v, &a), &a, &out), TSR_EINVAL);
    const uint8_t junk[] = {0x32, 0xff, 0xff, 0xff, 0x0f};
    tsr_error_t err;
    ck_assert_ptr_null(tsr_pb_unpack(&tessera__v1__fetch_request__descriptor, junk, sizeof junk, &a, &err));
    ck_assert_int_eq(err.code, TSR_EINVAL);
    ck_assert_ptr_nonnull(strstr(err.msg, "malformed FetchRequest"));
    tsr_arena_free(&a);
}
END_TEST

/* Direct encoding == protobuf-c's packing of tsr_pb_value_new, byte for byte. */
static void check_direct(const tsr_value_t *v, tsr_arena_t *a) {
    tsr_buf_t b;
    tsr_buf_init(&b);
    tsr_pb_pack(&tsr_pb_value_new(v, a)->base, &b);
    size_t n = tsr_pb_value_size(v);
    if (n != b.len) ck_abort_msg("direct size %zu, protobuf-c %zu (kind %d)", n, b.len, v->kind);
    uint8_t *d = tsr_malloc(n + 1);
    uint8_t *e = tsr_pb_value_write(v, d);
    if ((size_t)(e - d) != n) ck_abort_msg("direct write %zu bytes, size said %zu", (size_t)(e - d), n);
    if (memcmp(d, b.data, n) != 0) ck_abort_msg("direct bytes differ from protobuf-c (kind %d)", v->kind);
    free(d);
    tsr_buf_free(&b);
}

START_TEST(test_direct_encoding) {
    tsr_arena_t a;
    tsr_arena_init(&a, 4096);
    const int64_t longs[] = {0, 1, -1, 127, 128, 300, INT64_MAX, INT64_MIN, -300};
    const double dbls[] = {0.0, -0.0, 1.5, -2.25e300, 1e-310};
    for (size_t i = 0; i < sizeof longs / sizeof *longs; i++) {
        tsr_value_t v = tsr_value_long(longs[i]);
        check_direct(&v, &a);
    }
    for (size_t i = 0; i < sizeof dbls / sizeof *dbls; i++) {
        tsr_value_t v = tsr_value_double(dbls[i]);
        check_direct(&v, &a);
    }
    char big[300];
    memset(big, 'x', sizeof big);
    tsr_value_t scal[] = {tsr_value_null(), tsr_value_bool(0), tsr_value_bool(1), tsr_value_string("", 0),
                          tsr_value_string("héllo", 6), tsr_value_string(big, sizeof big),
                          tsr_value_string("a\0b", 3)};
    for (size_t i = 0; i < sizeof scal / sizeof *scal; i++) check_direct(&scal[i], &a);
    tsr_value_t inner[2] = {tsr_value_long(-7), tsr_value_double(2.5)};
    tsr_value_t map[8] = {tsr_value_string("z", 1), tsr_value_list(inner, 2),
                          tsr_value_string("", 0), tsr_value_null(),
                          tsr_value_long(42), tsr_value_bool(1),
                          tsr_value_string("big", 3), tsr_value_string(big, sizeof big)};
    tsr_value_t items[6] = {tsr_value_null(), tsr_value_bool(0), tsr_value_string("héllo", 6),
                            tsr_value_map(map, 4), tsr_value_long(INT64_MIN), tsr_value_list(NULL, 0)};
    tsr_value_t v = tsr_value_list(items, 6);
    check_direct(&v, &a);
    tsr_value_t m = tsr_value_map(map, 4), em = tsr_value_map(NULL, 0);
    check_direct(&m, &a);
    check_direct(&em, &a);
    /* a list long enough for a two-byte length */
    tsr_value_t many[100];
    for (int i = 0; i < 100; i++) many[i] = tsr_value_double(i * 0.5);
    tsr_value_t l = tsr_value_list(many, 100);
    check_direct(&l, &a);
    tsr_arena_free(&a);
}
END_TEST

/* tsr_pb_count_field counts a repeated message field at the top level, skipping the others. */
START_TEST(test_count_field) {
    tsr_arena_t a;
    tsr_arena_init(&a, 4096);
    Tessera__V1__ReadPartitionRequest rq;
    tessera__v1__read_partition_request__init(&rq);
    rq.epoch = 123456789;
    Tessera__V1__ReadItem it[5], *its[5];
    for (int i = 0; i < 5; i++) {
        tessera__v1__read_item__init(&it[i]);
        it[i].group_by = "g";
        it[i].partition = i;
        it[i].at_millis = 1700000000000 + i;
        its[i] = &it[i];
    }
    tsr_buf_t b;
    tsr_buf_init(&b);
    for (size_t k = 0; k <= 5; k++) {
        rq.n_items = k;
        rq.items = its;
        tsr_buf_clear(&b);
        tsr_pb_pack(&rq.base, &b);
        ck_assert_uint_eq(tsr_pb_count_field(b.data, b.len, 1), k);
        ck_assert_uint_eq(tsr_pb_count_field(b.data, b.len, 2), 0); /* epoch: a varint */
        /* cut anywhere: never more, never past the end */
        for (size_t cut = 0; cut < b.len; cut++)
            if (tsr_pb_count_field(b.data, cut, 1) > k) ck_abort_msg("cut %zu counts too many", cut);
    }
    ck_assert_uint_eq(tsr_pb_count_field(NULL, 0, 1), 0);
    tsr_buf_free(&b);
    tsr_arena_free(&a);
}
END_TEST

static Suite *pbvalue_suite(void) {
    Suite *s = suite_create("pbvalue");
    TCase *tc = tcase_create("pbvalue");
    tcase_add_test(tc, test_roundtrip);
    tcase_add_test(tc, test_depth_and_malformed);
    tcase_add_test(tc, test_direct_encoding);
    tcase_add_test(tc, test_count_field);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return tsr_test_run(pbvalue_suite()); }
