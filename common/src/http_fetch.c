/*
 * http_fetch.c — the Chronon-compatible fetch endpoints (SPEC §6): request parsing into
 * key rows, response building, and the POST /v1/fetch/{join,groupby}/<name> routes that call
 * the fetcher's callback.
 *
 * Design. The body is parsed by tsr_http_json_parse (http_json.c: strict, exact int64,
 * duplicate keys rejected, line and column in errors) straight into tsr_value_t trees in the
 * request's arena, and the rows point into that tree: a fetch request allocates nothing
 * outside its arena, which the server reuses per connection. Responses are written straight
 * into a tsr_buf_t with tsr_value_to_json.
 *
 * Invariants.
 *   1. Parsing either returns every row or fails with one message naming the row (0-based,
 *      as the JSON array index) and the key; it never crashes on any input (fuzzed).
 *   2. A row's keys keep request order, exclude "at_millis", and are never empty.
 *   3. The response has exactly one result entry per request row, in request order.
 */
#include "http_int.h"

#include <string.h>

static const char *vtype(const tsr_value_t *v) {
    switch (v->kind) {
    case TSR_MAP: return "an object";
    case TSR_LIST: return "an array";
    case TSR_STRING: return "a string";
    case TSR_LONG: return "an integer";
    case TSR_DOUBLE: return "a number with a fraction or exponent";
    case TSR_BOOL: return "a boolean";
    case TSR_NULL: return "null";
    default: return "unknown";
    }
}

int tsr_http_fetch_parse(const char *body, size_t n, tsr_arena_t *arena,
                         tsr_http_fetch_row_t **rows, size_t *nrows, tsr_error_t *err) {
    *rows = NULL;
    *nrows = 0;
    size_t i = 0;
    while (i < n && (body[i] == ' ' || body[i] == '\t' || body[i] == '\r' || body[i] == '\n')) i++;
    if (i == n)
        return tsr_error_set(err, TSR_EINVAL,
                             "request body is empty: expected a JSON array of key maps");
    tsr_value_t root;
    int rc = tsr_http_json_parse(body, n, arena, &root, err);
    if (rc) return rc;
    if (root.kind != TSR_LIST)
        return tsr_error_set(err, TSR_EINVAL, "expected a JSON array of key maps, got %s",
                             vtype(&root));
    size_t nr = root.len;
    tsr_http_fetch_row_t *out = tsr_arena_calloc(arena, (nr ? nr : 1) * sizeof *out);
    for (size_t r = 0; r < nr; r++) {
        const tsr_value_t *obj = &root.u.items[r];
        if (obj->kind != TSR_MAP)
            return tsr_error_set(err, TSR_EINVAL,
                                 "row %zu: expected a JSON object of key columns, got %s", r,
                                 vtype(obj));
        /* the parser's item array is ours (arena): compact the keys in place, dropping
         * at_millis */
        tsr_value_t *items = (tsr_value_t *)obj->u.items;
        size_t k = 0;
        for (size_t e = 0; e < obj->len; e++) {
            const tsr_value_t *key = &items[2 * e], *val = &items[2 * e + 1];
            if (key->len == 9 && memcmp(key->u.s, "at_millis", 9) == 0) {
                if (val->kind == TSR_NULL) continue;
                if (val->kind != TSR_LONG)
                    return tsr_error_set(err, TSR_EINVAL,
                                         "row %zu: at_millis must be an integer (epoch "
                                         "milliseconds) or null, got %s",
                                         r, vtype(val));
                out[r].has_at_millis = 1;
                out[r].at_millis = val->u.l;
                continue;
            }
            if (val->kind == TSR_LIST || val->kind == TSR_MAP)
                return tsr_error_set(err, TSR_EINVAL,
                                     "row %zu: key \"%.64s\" must be a string, number, boolean "
                                     "or null, got %s",
                                     r, key->u.s, vtype(val));
            if (k != e) {
                items[2 * k] = *key;
                items[2 * k + 1] = *val;
            }
            k++;
        }
        if (k == 0)
            return tsr_error_set(err, TSR_EINVAL,
                                 "row %zu: no key columns (expected e.g. {\"user_id\": \"u1\"})",
                                 r);
        out[r].keys = tsr_value_map(items, k);
    }
    *rows = out;
    *nrows = nr;
    return 0;
}

const tsr_value_t *tsr_http_fetch_row_key(const tsr_http_fetch_row_t *row, const char *name) {
    if (row->keys.kind != TSR_MAP) return NULL;
    size_t n = strlen(name);
    for (uint32_t i = 0; i < row->keys.len; i++) {
        const tsr_value_t *k = &row->keys.u.items[2 * i];
        if (k->len == n && memcmp(k->u.s, name, n) == 0) return &row->keys.u.items[2 * i + 1];
    }
    return NULL;
}

void tsr_http_fetch_write_result(const tsr_http_fetch_row_t *row,
                                 const tsr_http_fetch_result_t *res, tsr_buf_t *out) {
    tsr_buf_puts(out, res->ok ? "{\"status\":\"Success\",\"entityKeys\":"
                              : "{\"status\":\"Failure\",\"entityKeys\":");
    if (row->keys.kind == TSR_MAP) tsr_value_to_json(&row->keys, out);
    else tsr_buf_puts(out, "{}");
    if (res->ok) {
        tsr_buf_puts(out, ",\"features\":");
        if (res->features.kind == TSR_MAP) tsr_value_to_json(&res->features, out);
        else tsr_buf_puts(out, "{}");
    } else {
        const char *e = res->error ? res->error : "unknown error";
        tsr_buf_puts(out, ",\"error\":");
        tsr_http_json_string(out, e, strlen(e));
    }
    tsr_buf_putc(out, '}');
}

void tsr_http_fetch_write_response(const tsr_http_fetch_row_t *rows,
                                   const tsr_http_fetch_result_t *res, size_t n, tsr_buf_t *out) {
    tsr_buf_puts(out, "{\"results\":[");
    for (size_t i = 0; i < n; i++) {
        if (i) tsr_buf_putc(out, ',');
        tsr_http_fetch_write_result(&rows[i], &res[i], out);
    }
    tsr_buf_puts(out, "]}");
}

/* ------------------------------------------------------------------------------------ */
/* Routes                                                                                */

typedef struct fetch_route {
    tsr_http_fetch_fn fn;
    void *ud;
    tsr_http_fetch_kind_t kind;
} fetch_route_t;

static void fetch_handler(void *ud, const tsr_http_request_t *req, tsr_http_response_t *resp) {
    const fetch_route_t *fr = ud;
    const char *what = fr->kind == TSR_HTTP_FETCH_JOIN ? "join" : "groupby";
    if (!req->rest[0]) {
        tsr_http_response_error(resp, 400, "missing %s name: expected POST /v1/fetch/%s/<name>",
                                what, what);
        return;
    }
    tsr_error_t err;
    tsr_error_clear(&err);
    tsr_http_fetch_row_t *rows;
    size_t nrows;
    if (tsr_http_fetch_parse(req->body, req->body_len, req->arena, &rows, &nrows, &err) != 0) {
        tsr_http_response_error(resp, 400, "%s", err.msg);
        return;
    }
    tsr_http_fetch_result_t *res = tsr_arena_calloc(req->arena, (nrows ? nrows : 1) * sizeof *res);
    for (size_t i = 0; i < nrows; i++) res[i].error = "no result";
    int rc = fr->fn(fr->ud, fr->kind, req->rest, rows, nrows, res, req->arena, &err);
    if (rc != 0) {
        tsr_http_response_error(resp, tsr_http_status_for_error(rc), "%s",
                                err.code != TSR_OK && err.msg[0] ? err.msg : tsr_strerror(rc));
        return;
    }
    tsr_http_fetch_write_response(rows, res, nrows, resp->body);
}

int tsr_http_serve_fetch(tsr_http_server_t *srv, tsr_http_fetch_fn fn, void *ud,
                         tsr_error_t *err) {
    if (!fn) return tsr_error_set(err, TSR_EINVAL, "fetch routes need a callback");
    fetch_route_t *fr = tsr__http_server_alloc(srv, 2 * sizeof *fr);
    fr[0] = (fetch_route_t){fn, ud, TSR_HTTP_FETCH_JOIN};
    fr[1] = (fetch_route_t){fn, ud, TSR_HTTP_FETCH_GROUPBY};
    int rc = tsr_http_server_route(srv, "POST", "/v1/fetch/join/", 1, fetch_handler, &fr[0], err);
    if (rc) return rc;
    return tsr_http_server_route(srv, "POST", "/v1/fetch/groupby/", 1, fetch_handler, &fr[1], err);
}
