/*
 * test_http_fetch.c — the Chronon-compatible fetch endpoints: request parsing (good bodies,
 * every error with its exact message, thousands of random and mutated bodies that must never
 * crash), the arena JSON parser against jansson (same acceptance and values on 30k random
 * and mutated documents), response building (exact text), and the routes end to end with a
 * fake fetch callback on a real server on 127.0.0.1:0.
 */
#include <jansson.h>
#include <string.h>

#include "test_http_client.h"
#include "tsr/http.h"
#include "tsr_test.h"

static int str_is(const tsr_value_t *v, const char *s) {
    return v && v->kind == TSR_STRING && v->len == strlen(s) && memcmp(v->u.s, s, v->len) == 0;
}

START_TEST(parse_good) {
    tsr_arena_t a;
    tsr_arena_init(&a, 0);
    const char *body =
        " [ {\"user_id\": \"u1\", \"merchant\": 7, \"at_millis\": 1700000000123},\n"
        "   {\"user_id\": \"\\u00e9\\\"x\", \"score\": -1.5e2, \"flag\": true, \"n\": null,"
        "    \"at_millis\": null, \"off\": false, \"big\": -9223372036854775808} ] ";
    tsr_http_fetch_row_t *rows;
    size_t n;
    tsr_error_t err;
    ck_assert_int_eq(tsr_http_fetch_parse(body, strlen(body), &a, &rows, &n, &err), 0);
    ck_assert_uint_eq(n, 2);
    ck_assert_int_eq(rows[0].has_at_millis, 1);
    ck_assert_int_eq(rows[0].at_millis, 1700000000123LL);
    ck_assert_uint_eq(rows[0].keys.len, 2);
    ck_assert(str_is(&rows[0].keys.u.items[0], "user_id")); /* request order */
    ck_assert(str_is(&rows[0].keys.u.items[2], "merchant"));
    ck_assert(str_is(tsr_http_fetch_row_key(&rows[0], "user_id"), "u1"));
    const tsr_value_t *m = tsr_http_fetch_row_key(&rows[0], "merchant");
    ck_assert(m && m->kind == TSR_LONG && m->u.l == 7);
    ck_assert_ptr_null(tsr_http_fetch_row_key(&rows[0], "at_millis"));
    ck_assert_ptr_null(tsr_http_fetch_row_key(&rows[0], "nope"));

    ck_assert_int_eq(rows[1].has_at_millis, 0);
    ck_assert_uint_eq(rows[1].keys.len, 6);
    ck_assert(str_is(tsr_http_fetch_row_key(&rows[1], "user_id"), "\xc3\xa9\"x"));
    const tsr_value_t *v = tsr_http_fetch_row_key(&rows[1], "score");
    ck_assert(v && v->kind == TSR_DOUBLE && v->u.d == -150.0);
    v = tsr_http_fetch_row_key(&rows[1], "flag");
    ck_assert(v && v->kind == TSR_BOOL && v->u.b == 1);
    v = tsr_http_fetch_row_key(&rows[1], "off");
    ck_assert(v && v->kind == TSR_BOOL && v->u.b == 0);
    v = tsr_http_fetch_row_key(&rows[1], "n");
    ck_assert(v && v->kind == TSR_NULL);
    v = tsr_http_fetch_row_key(&rows[1], "big");
    ck_assert(v && v->kind == TSR_LONG && v->u.l == INT64_MIN);

    /* an empty array is a request with no rows */
    ck_assert_int_eq(tsr_http_fetch_parse("[]", 2, &a, &rows, &n, &err), 0);
    ck_assert_uint_eq(n, 0);
    /* need not be NUL-terminated: parse a prefix of a longer buffer */
    const char *pre = "[{\"k\":1}]GARBAGE";
    ck_assert_int_eq(tsr_http_fetch_parse(pre, 9, &a, &rows, &n, &err), 0);
    ck_assert_uint_eq(n, 1);
    tsr_arena_free(&a);
}
END_TEST

typedef struct bad_case {
    const char *body;
    const char *msg;    /* exact message, or a prefix when it ends in '*' */
} bad_case_t;

static const bad_case_t bad_cases[] = {
    {"", "request body is empty: expected a JSON array of key maps"},
    {" \r\n\t ", "request body is empty: expected a JSON array of key maps"},
    {"{", "invalid JSON at line 1, column 2: unexpected end of input (string or '}' expected)"},
    {"[{\"a\":1}",
     "invalid JSON at line 1, column 9: unexpected end of input (',' or ']' expected)"},
    {"[{\"a\":1}] x", "invalid JSON at line 1, column 11: end of input expected"},
    {"[\n{\"a\":1,\n\"a\":2}]", "invalid JSON at line 2, column 1: duplicate object key \"a\""},
    {"[{\"a\":99999999999999999999}]", "invalid JSON at line 1, column 7: integer out of range"},
    {"[{\"a\":\"\\u0000\"}]",
     "invalid JSON at line 1, column 8: \\u0000 is not allowed in strings"},
    {"[{\"a\":\"\xff\"}]", "invalid JSON at line 1, column 8: invalid UTF-8 in string"},
    {"[{\"a\":\"\xc0\xaf\"}]", "invalid JSON at line 1, column 8: invalid UTF-8 in string"},
    {"[{\"a\":\"\xed\xa0\x80\"}]", "invalid JSON at line 1, column 8: invalid UTF-8 in string"},
    {"[{\"a\":1e999}]", "invalid JSON at line 1, column 7: number out of range"},
    {"[{\"a\":\"\\ud800\"}]", "invalid JSON at line 1, column 8: lone Unicode surrogate"},
    {"[{\"a\":\"\\udc00\\ud800\"}]", "invalid JSON at line 1, column 8: lone Unicode surrogate"},
    {"[{\"a\":\"\\u12\"}]", "invalid JSON at line 1, column 8: invalid \\u escape"},
    {"[{\"a\":\"\\q\"}]", "invalid JSON at line 1, column 8: invalid escape in string"},
    {"[{\"a\":\"x\ny\"}]", "invalid JSON at line 1, column 9: control character in string"},
    {"[{\"a\":01}]", "invalid JSON at line 1, column 8: ',' or '}' expected"},
    {"[{\"a\":-}]", "invalid JSON at line 1, column 7: invalid number"},
    {"[{\"a\":1.}]", "invalid JSON at line 1, column 7: invalid number"},
    {"[{\"a\":1e+}]", "invalid JSON at line 1, column 7: invalid number"},
    {"[{\"a\":tru}]", "invalid JSON at line 1, column 7: invalid literal"},
    {"[{\"a\" 1}]", "invalid JSON at line 1, column 7: ':' expected"},
    {"[{a:1}]", "invalid JSON at line 1, column 3: string or '}' expected"},
    {"[{\"a\":1,}]", "invalid JSON at line 1, column 9: string or '}' expected"},
    {"[{\"a\":1}],", "invalid JSON at line 1, column 10: end of input expected"},
    {"[{\"a\":\"abc", "invalid JSON at line 1, column 7: unterminated string"},
    {"[{\"a\":\"abc\\", "invalid JSON at line 1, column 7: unterminated string"},
    {"[{\"a\":@}]", "invalid JSON at line 1, column 7: unexpected character"},
    {"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[",
     "invalid JSON at line 1, column 65: nested too deeply"},
    {"{\"a\":1}", "expected a JSON array of key maps, got an object"},
    {"42", "expected a JSON array of key maps, got an integer"},
    {"\"x\"", "expected a JSON array of key maps, got a string"},
    {"null", "expected a JSON array of key maps, got null"},
    {"[1]", "row 0: expected a JSON object of key columns, got an integer"},
    {"[{\"a\":1},\"x\"]", "row 1: expected a JSON object of key columns, got a string"},
    {"[{\"a\":1},[]]", "row 1: expected a JSON object of key columns, got an array"},
    {"[{\"a\":1},{\"a\":2},{\"a\":3},{\"a\":1,\"at_millis\":\"5\"}]",
     "row 3: at_millis must be an integer (epoch milliseconds) or null, got a string"},
    {"[{\"a\":1,\"at_millis\":1.5}]",
     "row 0: at_millis must be an integer (epoch milliseconds) or null, got a number with a "
     "fraction or exponent"},
    {"[{\"a\":1,\"at_millis\":true}]",
     "row 0: at_millis must be an integer (epoch milliseconds) or null, got a boolean"},
    {"[{\"a\":1,\"at_millis\":[1]}]",
     "row 0: at_millis must be an integer (epoch milliseconds) or null, got an array"},
    {"[{\"a\":[1]}]", "row 0: key \"a\" must be a string, number, boolean or null, got an array"},
    {"[{\"k\":1},{\"user\":{\"x\":1}}]",
     "row 1: key \"user\" must be a string, number, boolean or null, got an object"},
    {"[{}]", "row 0: no key columns (expected e.g. {\"user_id\": \"u1\"})"},
    {"[{\"a\":1},{\"at_millis\":5}]", "row 1: no key columns (expected e.g. {\"user_id\": \"u1\"})"},
};

static int msg_matches(const char *got, const char *want) {
    size_t n = strlen(want);
    if (n == 0 || want[n - 1] != '*') return strcmp(got, want) == 0;
    /* glob with '*' */
    const char *g = got, *w = want;
    while (*w) {
        if (*w == '*') {
            w++;
            if (!*w) return 1;
            const char *next = strchr(w, '*');
            size_t len = next ? (size_t)(next - w) : strlen(w);
            char pat[128];
            snprintf(pat, sizeof pat, "%.*s", (int)len, w);
            const char *hit = strstr(g, pat);
            if (!hit) return 0;
            g = hit + len;
            w += len;
        } else {
            if (*g != *w) return 0;
            g++;
            w++;
        }
    }
    return *g == 0;
}

START_TEST(parse_errors) {
    tsr_arena_t a;
    tsr_arena_init(&a, 0);
    for (size_t i = 0; i < sizeof bad_cases / sizeof bad_cases[0]; i++) {
        tsr_http_fetch_row_t *rows = (void *)1;
        size_t n = 99;
        tsr_error_t err;
        tsr_error_clear(&err);
        int rc = tsr_http_fetch_parse(bad_cases[i].body, strlen(bad_cases[i].body), &a, &rows, &n,
                                      &err);
        ck_assert_msg(rc == TSR_EINVAL, "case %zu (%s): rc %d", i, bad_cases[i].body, rc);
        ck_assert_msg(msg_matches(err.msg, bad_cases[i].msg), "case %zu (%s): message '%s'", i,
                      bad_cases[i].body, err.msg);
        ck_assert_ptr_null(rows);
        ck_assert_uint_eq(n, 0);
        tsr_arena_reset(&a);
    }
    tsr_arena_free(&a);
}
END_TEST

static void check_rows(const tsr_http_fetch_row_t *rows, size_t n) {
    for (size_t r = 0; r < n; r++) {
        ck_assert_int_eq(rows[r].keys.kind, TSR_MAP);
        ck_assert_uint_ge(rows[r].keys.len, 1);
        for (uint32_t k = 0; k < rows[r].keys.len; k++) {
            const tsr_value_t *kn = &rows[r].keys.u.items[2 * k];
            const tsr_value_t *kv = &rows[r].keys.u.items[2 * k + 1];
            ck_assert_int_eq(kn->kind, TSR_STRING);
            ck_assert(!(kn->len == 9 && memcmp(kn->u.s, "at_millis", 9) == 0));
            ck_assert(kv->kind <= TSR_STRING);
        }
    }
}

/* Random JSON-ish text: valid pieces glued with random bytes. */
static size_t random_body(tsr_rng_t *r, char *out, size_t cap) {
    static const char *const tok[] = {
        "[", "]", "{", "}", ",", ":", "\"a\"", "\"at_millis\"", "\"user_id\"", "1", "-0", "1.5e3",
        "99999999999999999999", "true", "false", "null", "\"\\u00e9\"", "\"\\ud83d\\ude00\"",
        "\"\\ud800\"", "\" \"", "\"\\\"\"", "\"\\x\"", " ", "\n", "\xff", "\"\xc3\xa9\"", "\0",
        "1e999", "[[[[[[[[", "]]]]]]]]", "{\"k\":", "\"\\u0000\""};
    size_t n = 0, ntok = tsr_rng_range(r, 0, 40);
    for (size_t i = 0; i < ntok; i++) {
        const char *t = tok[tsr_rng_below(r, sizeof tok / sizeof tok[0])];
        size_t len = t[0] ? strlen(t) : 1;
        if (n + len >= cap) break;
        memcpy(out + n, t, len);
        n += len;
    }
    return n;
}

static size_t mutate(tsr_rng_t *r, const char *seed, char *out, size_t cap) {
    size_t n = strlen(seed);
    memcpy(out, seed, n);
    int edits = (int)tsr_rng_range(r, 1, 4);
    for (int e = 0; e < edits && n > 0; e++) {
        size_t pos = tsr_rng_below(r, n);
        switch (tsr_rng_below(r, 4)) {
        case 0: out[pos] = (char)tsr_rng_next(r); break;                  /* flip */
        case 1: memmove(out + pos, out + pos + 1, n - pos - 1); n--; break; /* delete */
        case 2:                                                             /* insert */
            if (n + 1 < cap) {
                memmove(out + pos + 1, out + pos, n - pos);
                out[pos] = "[]{}\",:0a\\ "[tsr_rng_below(r, 12)];
                n++;
            }
            break;
        case 3: n = pos; break;                                             /* truncate */
        }
    }
    return n;
}

START_TEST(parse_fuzz) {
    static const char *const seeds[] = {
        "[{\"user_id\":\"u1\",\"merchant\":7,\"at_millis\":1700000000123}]",
        "[{\"a\":1},{\"b\":\"x\",\"at_millis\":null},{\"c\":true,\"d\":null,\"e\":2.5}]",
        "[{\"k\":\"\\u00e9\\n\\t\\\"\"}]",
        "[]",
    };
    tsr_rng_t r = {2024};
    tsr_arena_t a;
    tsr_arena_init(&a, 0);
    char body[1024];
    size_t ok = 0, bad = 0;
    tsr_buf_t out;
    tsr_buf_init(&out);
    for (int it = 0; it < 20000; it++) {
        size_t n = (it % 2) ? random_body(&r, body, sizeof body)
                            : mutate(&r, seeds[tsr_rng_below(&r, 4)], body, sizeof body);
        /* parse from an exact-size heap copy so ASan sees any overread */
        char *exact = malloc(n ? n : 1);
        memcpy(exact, body, n);
        tsr_http_fetch_row_t *rows;
        size_t nrows;
        tsr_error_t err;
        tsr_error_clear(&err);
        int rc = tsr_http_fetch_parse(exact, n, &a, &rows, &nrows, &err);
        if (rc == 0) {
            ok++;
            check_rows(rows, nrows);
            /* the response for these rows is valid JSON with one result per row */
            tsr_http_fetch_result_t *res = tsr_arena_calloc(&a, (nrows + 1) * sizeof *res);
            for (size_t i = 0; i < nrows; i++) {
                res[i].ok = (int)(i % 2);
                res[i].features = rows[i].keys;
                res[i].error = "err \"x\"\n";
            }
            tsr_buf_clear(&out);
            tsr_http_fetch_write_response(rows, res, nrows, &out);
            json_error_t je;
            json_t *j = json_loadb((const char *)out.data, out.len, 0, &je);
            ck_assert_msg(j != NULL, "response not JSON: %s", je.text);
            ck_assert_uint_eq(json_array_size(json_object_get(j, "results")), nrows);
            json_decref(j);
        } else {
            bad++;
            ck_assert_int_eq(rc, TSR_EINVAL);
            ck_assert(err.msg[0] != 0);
        }
        free(exact);
        tsr_arena_reset(&a);
    }
    ck_assert_uint_gt(ok, 500); /* the fuzz reaches the success path too */
    ck_assert_uint_gt(bad, 500);
    tsr_buf_free(&out);
    tsr_arena_free(&a);
}
END_TEST

/* jansson as the reference: same acceptance, same values. */
static int same_value(const json_t *j, const tsr_value_t *v) {
    switch (json_typeof(j)) {
    case JSON_NULL: return v->kind == TSR_NULL;
    case JSON_TRUE: return v->kind == TSR_BOOL && v->u.b == 1;
    case JSON_FALSE: return v->kind == TSR_BOOL && v->u.b == 0;
    case JSON_INTEGER: return v->kind == TSR_LONG && v->u.l == (int64_t)json_integer_value(j);
    case JSON_REAL: return v->kind == TSR_DOUBLE && v->u.d == json_real_value(j);
    case JSON_STRING:
        return v->kind == TSR_STRING && v->len == json_string_length(j) &&
               memcmp(v->u.s, json_string_value(j), v->len) == 0 && v->u.s[v->len] == 0;
    case JSON_ARRAY:
        if (v->kind != TSR_LIST || v->len != json_array_size(j)) return 0;
        for (uint32_t i = 0; i < v->len; i++)
            if (!same_value(json_array_get(j, i), &v->u.items[i])) return 0;
        return 1;
    case JSON_OBJECT:
        if (v->kind != TSR_MAP || v->len != json_object_size(j)) return 0;
        for (uint32_t i = 0; i < v->len; i++) {
            const tsr_value_t *k = &v->u.items[2 * i];
            json_t *jv = json_object_getn(j, k->u.s, k->len);
            if (!jv || !same_value(jv, &v->u.items[2 * i + 1])) return 0;
        }
        return 1;
    }
    return 0;
}

static int depth_of(const char *s, size_t n) {
    int d = 0, max = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '[' || s[i] == '{') max = ++d > max ? d : max;
        else if (s[i] == ']' || s[i] == '}') d--;
    }
    return max;
}

START_TEST(json_matches_jansson) {
    static const char *const seeds[] = {
        "[{\"user_id\":\"u1\",\"merchant\":7,\"at_millis\":1700000000123}]",
        "{\"a\":[1,-2.5e-3,true,false,null,{\"b\":\"\\u00e9\\ud83d\\ude00\\n\"}],\"c\":{}}",
        "[\"\\\"\\\\\\/\\b\\f\\n\\r\\t\", 0, -0, 1E5, 123456789012345678, 1e-400]",
        "\"\xe2\x82\xac\xf0\x9f\x98\x80\"",
    };
    tsr_rng_t r = {99};
    tsr_arena_t a;
    tsr_arena_init(&a, 0);
    char body[1024];
    size_t agree_ok = 0, agree_bad = 0;
    for (int it = 0; it < 30000; it++) {
        size_t n = (it % 3 == 0) ? random_body(&r, body, sizeof body)
                                 : mutate(&r, seeds[tsr_rng_below(&r, 4)], body, sizeof body);
        if (depth_of(body, n) > TSR_HTTP_JSON_MAX_DEPTH) continue;
        /* jansson accepts some raw NUL bytes between tokens (e.g. "[0\0, 1]"), which RFC 8259
         * forbids and we reject: NUL-bearing inputs are covered by parse_fuzz instead */
        if (memchr(body, 0, n)) continue;
        char *exact = malloc(n ? n : 1);
        memcpy(exact, body, n);
        tsr_value_t v;
        tsr_error_t err;
        int rc = tsr_http_json_parse(exact, n, &a, &v, &err);
        json_error_t je;
        json_t *j = json_loadb(exact, n, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &je);
        if ((rc == 0) != (j != NULL)) {
            for (size_t i = 0; i < n; i++) fprintf(stderr, "%02x ", (unsigned char)exact[i]);
            fprintf(stderr, "\n");
        }
        ck_assert_msg((rc == 0) == (j != NULL), "iteration %d: ours %s (%s), jansson %s (%s): %.*s",
                      it, rc ? "rejects" : "accepts", rc ? err.msg : "", j ? "accepts" : "rejects",
                      j ? "" : je.text, (int)n, exact);
        if (j) {
            ck_assert_msg(same_value(j, &v), "iteration %d: values differ: %.*s", it, (int)n,
                          exact);
            agree_ok++;
            json_decref(j);
        } else {
            agree_bad++;
        }
        free(exact);
        tsr_arena_reset(&a);
    }
    ck_assert_uint_gt(agree_ok, 1000);
    ck_assert_uint_gt(agree_bad, 1000);
    tsr_arena_free(&a);
}
END_TEST

START_TEST(response_building) {
    tsr_arena_t a;
    tsr_arena_init(&a, 0);
    const char *body = "[{\"user\":\"u\\\"1\",\"m\":7,\"at_millis\":5},{\"user\":\"u2\"}]";
    tsr_http_fetch_row_t *rows;
    size_t n;
    ck_assert_int_eq(tsr_http_fetch_parse(body, strlen(body), &a, &rows, &n, NULL), 0);
    tsr_value_t list[2] = {tsr_value_string("a", 1), tsr_value_string("b", 1)};
    tsr_value_t inner[2] = {tsr_value_string("k", 1), tsr_value_long(2)};
    tsr_value_t feats[8] = {
        tsr_value_string("f1", 2), tsr_value_double(1.5),
        tsr_value_string("f2", 2), tsr_value_null(),
        tsr_value_string("f3", 2), tsr_value_list(list, 2),
        tsr_value_string("f4", 2), tsr_value_map(inner, 1),
    };
    tsr_http_fetch_result_t res[2] = {
        {1, tsr_value_map(feats, 4), NULL},
        {0, tsr_value_null(), "part p1: key column \"user\"\nmissing"},
    };
    tsr_buf_t out;
    tsr_buf_init(&out);
    tsr_http_fetch_write_response(rows, res, n, &out);
    ck_assert_str_eq(
        tsr_buf_cstr(&out),
        "{\"results\":[{\"status\":\"Success\",\"entityKeys\":{\"user\":\"u\\\"1\",\"m\":7},"
        "\"features\":{\"f1\":1.5,\"f2\":null,\"f3\":[\"a\",\"b\"],\"f4\":{\"k\":2}}},"
        "{\"status\":\"Failure\",\"entityKeys\":{\"user\":\"u2\"},"
        "\"error\":\"part p1: key column \\\"user\\\"\\nmissing\"}]}");
    tsr_buf_clear(&out);
    tsr_http_fetch_write_response(rows, res, 0, &out);
    ck_assert_str_eq(tsr_buf_cstr(&out), "{\"results\":[]}");
    /* one entry alone: the shape `tessera fetch` prints */
    tsr_buf_clear(&out);
    tsr_http_fetch_result_t empty = {1, tsr_value_map(NULL, 0), NULL};
    tsr_http_fetch_write_result(&rows[1], &empty, &out);
    ck_assert_str_eq(tsr_buf_cstr(&out),
                     "{\"status\":\"Success\",\"entityKeys\":{\"user\":\"u2\"},\"features\":{}}");
    tsr_buf_free(&out);
    tsr_arena_free(&a);
}
END_TEST

/* A fake fetcher: "unknown" is not found, "down" is unavailable, a row with key "fail" fails,
 * a row with key "skip" is left untouched; other rows get features describing the call. */
static int fake_fetch(void *ud, tsr_http_fetch_kind_t kind, const char *name,
                      const tsr_http_fetch_row_t *rows, size_t nrows,
                      tsr_http_fetch_result_t *results, tsr_arena_t *arena, tsr_error_t *err) {
    (*(int *)ud)++;
    if (strcmp(name, "unknown") == 0)
        return tsr_error_set(err, TSR_ENOTFOUND, "join '%s' not found", name);
    if (strcmp(name, "down") == 0) return tsr_error_set(err, TSR_EUNAVAIL, "worker unavailable");
    if (strcmp(name, "quiet") == 0) return TSR_EINTERNAL; /* no message */
    for (size_t i = 0; i < nrows; i++) {
        if (tsr_http_fetch_row_key(&rows[i], "skip")) continue;
        if (tsr_http_fetch_row_key(&rows[i], "fail")) {
            results[i].ok = 0;
            results[i].error = tsr_arena_printf(arena, "row %zu failed", i);
            continue;
        }
        tsr_value_t *f = tsr_arena_alloc(arena, 6 * sizeof *f);
        f[0] = tsr_value_string("name", 4);
        f[1] = tsr_value_string(name, strlen(name));
        f[2] = tsr_value_string("kind", 4);
        f[3] = kind == TSR_HTTP_FETCH_JOIN ? tsr_value_string("join", 4)
                                           : tsr_value_string("groupby", 7);
        f[4] = tsr_value_string("at", 2);
        f[5] = rows[i].has_at_millis ? tsr_value_long(rows[i].at_millis) : tsr_value_null();
        results[i].ok = 1;
        results[i].features = tsr_value_map(f, 3);
    }
    return 0;
}

START_TEST(fetch_routes) {
    int calls = 0;
    tsr_error_t err;
    tsr_http_server_t *srv = tsr_http_server_new(NULL);
    ck_assert_int_eq(tsr_http_serve_fetch(srv, fake_fetch, &calls, &err), 0);
    ck_assert_int_eq(tsr_http_serve_fetch(srv, fake_fetch, &calls, &err), TSR_EEXIST);
    ck_assert_int_eq(tsr_http_server_start(srv, &err), 0);
    unsigned port = tsr_http_server_port(srv);
    thc_resp_t r;

    ck_assert_int_eq(thc_once(port, "POST", "/v1/fetch/join/team.card_txn.v1",
                              "[{\"user\":\"u1\",\"at_millis\":17},{\"user\":\"u2\",\"fail\":1},"
                              "{\"user\":\"u3\",\"skip\":true}]",
                              &r),
                     0);
    ck_assert_int_eq(r.status, 200);
    ck_assert_str_eq(
        r.body,
        "{\"results\":[{\"status\":\"Success\",\"entityKeys\":{\"user\":\"u1\"},\"features\":"
        "{\"name\":\"team.card_txn.v1\",\"kind\":\"join\",\"at\":17}},"
        "{\"status\":\"Failure\",\"entityKeys\":{\"user\":\"u2\",\"fail\":1},\"error\":\"row 1 "
        "failed\"},"
        "{\"status\":\"Failure\",\"entityKeys\":{\"user\":\"u3\",\"skip\":true},\"error\":\"no "
        "result\"}]}");
    thc_resp_free(&r);

    ck_assert_int_eq(thc_once(port, "POST", "/v1/fetch/groupby/gb.v1", "[{\"k\":1}]", &r), 0);
    ck_assert_int_eq(r.status, 200);
    ck_assert_str_eq(r.body, "{\"results\":[{\"status\":\"Success\",\"entityKeys\":{\"k\":1},"
                             "\"features\":{\"name\":\"gb.v1\",\"kind\":\"groupby\",\"at\":null}}]}");
    thc_resp_free(&r);

    ck_assert_int_eq(thc_once(port, "POST", "/v1/fetch/join/unknown", "[{\"k\":1}]", &r), 0);
    ck_assert_int_eq(r.status, 404);
    ck_assert_str_eq(r.body, "{\"error\":\"join 'unknown' not found\"}");
    thc_resp_free(&r);
    ck_assert_int_eq(thc_once(port, "POST", "/v1/fetch/join/down", "[{\"k\":1}]", &r), 0);
    ck_assert_int_eq(r.status, 503);
    ck_assert_str_eq(r.body, "{\"error\":\"worker unavailable\"}");
    thc_resp_free(&r);
    ck_assert_int_eq(thc_once(port, "POST", "/v1/fetch/join/quiet", "[{\"k\":1}]", &r), 0);
    ck_assert_int_eq(r.status, 500);
    ck_assert_str_eq(r.body, "{\"error\":\"internal error\"}");
    thc_resp_free(&r);

    int before = calls;
    ck_assert_int_eq(thc_once(port, "POST", "/v1/fetch/join/j", "[{\"k\":1,\"at_millis\":\"x\"}]",
                              &r),
                     0);
    ck_assert_int_eq(r.status, 400);
    ck_assert_str_eq(r.body, "{\"error\":\"row 0: at_millis must be an integer (epoch "
                             "milliseconds) or null, got a string\"}");
    thc_resp_free(&r);
    ck_assert_int_eq(thc_once(port, "POST", "/v1/fetch/join/j", "", &r), 0);
    ck_assert_int_eq(r.status, 400);
    thc_resp_free(&r);
    ck_assert_int_eq(thc_once(port, "POST", "/v1/fetch/join/", "[{\"k\":1}]", &r), 0);
    ck_assert_int_eq(r.status, 400);
    ck_assert_str_eq(r.body,
                     "{\"error\":\"missing join name: expected POST /v1/fetch/join/<name>\"}");
    thc_resp_free(&r);
    ck_assert_int_eq(calls, before); /* bad requests never reach the fetcher */
    ck_assert_int_eq(thc_once(port, "GET", "/v1/fetch/join/j", NULL, &r), 0);
    ck_assert_int_eq(r.status, 405);
    thc_resp_free(&r);
    tsr_http_server_free(srv);
}
END_TEST

int main(void) {
    Suite *s = suite_create("http_fetch");
    TCase *tc = tcase_create("fetch");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, parse_good);
    tcase_add_test(tc, parse_errors);
    tcase_add_test(tc, parse_fuzz);
    tcase_add_test(tc, json_matches_jansson);
    tcase_add_test(tc, response_building);
    tcase_add_test(tc, fetch_routes);
    suite_add_tcase(s, tc);
    return tsr_test_run(s);
}
