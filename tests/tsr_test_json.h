/*
 * tsr_test_json.h — tests that read Tessera's JSON Lines output turn jansson values into
 * tsr_value_t (strings, lists and maps copied into an arena) to compare them with
 * tsr_value_close.
 */
#ifndef TSR_TEST_JSON_H
#define TSR_TEST_JSON_H

#include <jansson.h>
#include <string.h>

#include "tsr/mem.h"
#include "tsr/value.h"

static inline tsr_value_t tsr_test_json_value(json_t *j, tsr_arena_t *a) {
    if (!j || json_is_null(j)) return tsr_value_null();
    if (json_is_integer(j)) return tsr_value_long(json_integer_value(j));
    if (json_is_real(j)) return tsr_value_double(json_real_value(j));
    if (json_is_boolean(j)) return tsr_value_bool(json_is_true(j));
    if (json_is_string(j)) {
        size_t n = json_string_length(j);
        return tsr_value_string(tsr_arena_strndup(a, json_string_value(j), n), n);
    }
    if (json_is_array(j)) {
        size_t n = json_array_size(j);
        tsr_value_t *v = tsr_arena_alloc(a, (n + 1) * sizeof(*v));
        for (size_t i = 0; i < n; i++) v[i] = tsr_test_json_value(json_array_get(j, i), a);
        return tsr_value_list(v, n);
    }
    size_t n = json_object_size(j), i = 0;
    tsr_value_t *v = tsr_arena_alloc(a, (2 * n + 1) * sizeof(*v));
    const char *k;
    json_t *x;
    json_object_foreach(j, k, x) {
        v[2 * i] = tsr_value_string(tsr_arena_strdup(a, k), strlen(k));
        v[2 * i + 1] = tsr_test_json_value(x, a);
        i++;
    }
    return tsr_value_map(v, n);
}

#endif
