/*
 * kv_etcd.c — tsr_kv_t (kv.h) on etcd v3 through its JSON gateway (grpc-gateway), with libcurl.
 *
 * Design:
 *   - Unary calls POST a JSON body to <endpoint>/v3/kv/put|range|deleterange|txn and
 *     /v3/lease/grant|keepalive|revoke on one curl easy handle per client, under a mutex, so
 *     the TCP connection is reused. Every call is bounded (1 s connect, 5 s total) and
 *     CURLOPT_NOSIGNAL is set (threads). Transport failures are TSR_EUNAVAIL; a body that is not
 *     the JSON we expect is TSR_ECORRUPT; a gRPC error in the body is mapped by its code.
 *   - Gateway quirks (PLATFORM-NOTES): keys and values are base64; int64 fields are strings;
 *     fields with default values are left out (a miss has no "kvs", a failed txn no
 *     "succeeded", a PUT event no "type"), so absent means 0/false/PUT here.
 *   - A prefix is a range [prefix, prefix_end) with prefix_end = prefix with its last byte + 1.
 *   - Watches: each runs a thread with its own easy handle doing a streaming POST /v3/watch.
 *     The body is newline-delimited JSON objects in arbitrary chunks, so the write callback
 *     buffers and splits on '\n'. To stop an idle stream promptly, the socket is captured with
 *     CURLOPT_OPENSOCKETFUNCTION and shut down by tsr_kv_watch_stop (under a mutex that the
 *     close-socket callback also takes, so we never touch a reused fd); the progress callback
 *     also returns non-zero once stop is set, as a backstop.
 */
#include <curl/curl.h>
#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "tsr/kv.h"
#include "tsr/mem.h"

#define CONNECT_TIMEOUT_MS 1000L
#define CALL_TIMEOUT_MS    5000L

/* ---------- shared helpers (declared in kv.h) ---------- */

void tsr_kv_entry_free(tsr_kv_entry_t *e) {
    if (!e) return;
    free(e->key);
    free(e->val);
    memset(e, 0, sizeof *e);
}

void tsr_kv_entries_free(tsr_kv_entry_t *v, size_t n) {
    if (!v) return;
    for (size_t i = 0; i < n; i++) tsr_kv_entry_free(&v[i]);
    free(v);
}

static const char B64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

char *tsr__kv_b64_encode(const void *data, size_t len) {
    const unsigned char *p = data;
    char *out = tsr_malloc(4 * ((len + 2) / 3) + 1), *o = out;
    size_t i = 0;
    for (; i + 3 <= len; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];
        *o++ = B64[v >> 18];
        *o++ = B64[(v >> 12) & 63];
        *o++ = B64[(v >> 6) & 63];
        *o++ = B64[v & 63];
    }
    if (len - i == 1) {
        uint32_t v = (uint32_t)p[i] << 16;
        *o++ = B64[v >> 18];
        *o++ = B64[(v >> 12) & 63];
        *o++ = '=';
        *o++ = '=';
    } else if (len - i == 2) {
        uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8;
        *o++ = B64[v >> 18];
        *o++ = B64[(v >> 12) & 63];
        *o++ = B64[(v >> 6) & 63];
        *o++ = '=';
    }
    *o = 0;
    return out;
}

static int b64_val(unsigned char c) {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
}

char *tsr__kv_b64_decode(const char *s, size_t slen, size_t *out_len) {
    if (slen % 4) return NULL;
    size_t pad = 0;
    if (slen && s[slen - 1] == '=') pad++;
    if (slen > 1 && s[slen - 2] == '=') pad++;
    char *out = tsr_malloc(slen / 4 * 3 + 1);
    size_t o = 0;
    for (size_t i = 0; i < slen; i += 4) {
        int last = i + 4 == slen;
        uint32_t v = 0;
        for (int k = 0; k < 4; k++) {
            unsigned char c = (unsigned char)s[i + k];
            int d;
            if (c == '=' && last && k >= 4 - (int)pad) d = 0;
            else if ((d = b64_val(c)) < 0) {
                free(out);
                return NULL;
            }
            v = v << 6 | (uint32_t)d;
        }
        size_t nb = last ? 3 - pad : 3;
        if (nb >= 1) out[o++] = (char)(v >> 16);
        if (nb >= 2) out[o++] = (char)(v >> 8);
        if (nb >= 3) out[o++] = (char)v;
    }
    out[o] = 0;
    *out_len = o;
    return out;
}

char *tsr__kv_prefix_end(const char *prefix, size_t *len) {
    size_t n = strlen(prefix);
    while (n && (unsigned char)prefix[n - 1] == 0xff) n--;
    if (!n) {
        char *z = tsr_calloc(1, 2);
        *len = 1;             /* "\0": every key >= key */
        return z;
    }
    char *e = tsr_strndup(prefix, n);
    e[n - 1] = (char)((unsigned char)e[n - 1] + 1);
    *len = n;
    return e;
}

/* ---------- the client ---------- */

typedef struct etcd {
    tsr_kv_t base;
    char *endpoint;
    pthread_mutex_t mu;          /* serialises use of h */
    CURL *h;
} etcd_t;

typedef struct buf {
    char *p;
    size_t n, cap;
} buf_t;

static void buf_add(buf_t *b, const void *d, size_t n) {
    if (b->n + n + 1 > b->cap) {
        b->cap = (b->n + n + 1) * 2;
        b->p = tsr_realloc(b->p, b->cap);
    }
    memcpy(b->p + b->n, d, n);
    b->n += n;
    b->p[b->n] = 0;
}

static size_t collect(char *d, size_t sz, size_t nm, void *ud) {
    buf_add(ud, d, sz * nm);
    return sz * nm;
}

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static void curl_init(void) { curl_global_init(CURL_GLOBAL_DEFAULT); }

static json_t *b64_str(const void *d, size_t n) {
    char *s = tsr__kv_b64_encode(d, n);
    json_t *j = json_string(s);
    free(s);
    return j;
}

static json_t *i64_str(int64_t v) {
    char s[32];
    snprintf(s, sizeof s, "%lld", (long long)v);
    return json_string(s);
}

/* Reads an int64 field the gateway writes as a string (or a number); absent = 0. */
static int get_i64(const json_t *o, const char *name, int64_t *out) {
    json_t *v = json_object_get(o, name);
    *out = 0;
    if (!v) return 0;
    if (json_is_integer(v)) {
        *out = json_integer_value(v);
        return 0;
    }
    if (!json_is_string(v)) return -1;
    const char *s = json_string_value(v);
    char *end;
    errno = 0;
    long long x = strtoll(s, &end, 10);
    if (errno || end == s || *end) return -1;
    *out = x;
    return 0;
}

/* Decodes a base64 field; absent = "" (the gateway omits empty values). */
static int get_b64(const json_t *o, const char *name, char **out, size_t *len) {
    json_t *v = json_object_get(o, name);
    if (!v) {
        *out = tsr_calloc(1, 1);
        *len = 0;
        return 0;
    }
    if (!json_is_string(v)) return -1;
    *out = tsr__kv_b64_decode(json_string_value(v), json_string_length(v), len);
    return *out ? 0 : -1;
}

static int parse_kv(const json_t *o, tsr_kv_entry_t *e) {
    memset(e, 0, sizeof *e);
    size_t klen;
    if (!json_is_object(o) || get_b64(o, "key", &e->key, &klen) ||
        get_b64(o, "value", &e->val, &e->val_len) ||
        get_i64(o, "create_revision", &e->create_revision) ||
        get_i64(o, "mod_revision", &e->mod_revision) || get_i64(o, "version", &e->version) ||
        get_i64(o, "lease", &e->lease)) {
        tsr_kv_entry_free(e);
        return -1;
    }
    return 0;
}

static int header_rev(const json_t *resp, int64_t *rev) {
    json_t *h = json_object_get(resp, "header");
    if (!json_is_object(h)) return -1;
    return get_i64(h, "revision", rev);
}

/* Maps a gRPC status code in a gateway error body to ours. */
static int map_grpc(int64_t code) {
    switch (code) {
    case 4: return TSR_EUNAVAIL;    /* DEADLINE_EXCEEDED */
    case 5: return TSR_ENOTFOUND;
    case 14: return TSR_EUNAVAIL;
    case 3: return TSR_EINVAL;
    default: return TSR_EIO;
    }
}

static void set_common(CURL *h, const char *url) {
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, CONNECT_TIMEOUT_MS);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
}

/* POSTs body (consumed) to path; *resp = the parsed JSON object on success. */
static int request(etcd_t *e, const char *call, const char *path, json_t *body, json_t **resp,
                   tsr_error_t *err) {
    *resp = NULL;
    char *text = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    if (!text) return tsr_error_set(err, TSR_ENOMEM, "etcd %s: %s: cannot encode request",
                                    e->endpoint, call);
    char url[1024];
    snprintf(url, sizeof url, "%s%s", e->endpoint, path);
    buf_t b = {0};
    struct curl_slist *hdr = curl_slist_append(NULL, "Content-Type: application/json");
    pthread_mutex_lock(&e->mu);
    CURL *h = e->h;
    curl_easy_reset(h);
    set_common(h, url);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, CALL_TIMEOUT_MS);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdr);
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, text);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &b);
    CURLcode cc = curl_easy_perform(h);
    long status = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    pthread_mutex_unlock(&e->mu);
    curl_slist_free_all(hdr);
    free(text);
    if (cc != CURLE_OK) {
        free(b.p);
        return tsr_error_set(err, TSR_EUNAVAIL, "etcd %s: %s: %s (is etcd running?)", e->endpoint,
                             call, curl_easy_strerror(cc));
    }
    json_error_t je;
    json_t *j = b.p ? json_loadb(b.p, b.n, 0, &je) : NULL;
    if (!json_is_object(j)) {
        int rc =
            tsr_error_set(err, TSR_ECORRUPT,
                          "etcd %s: %s: HTTP %ld with a body that is not a JSON object: %.200s",
                          e->endpoint, call, status, b.p ? b.p : "(empty)");
        json_decref(j);
        free(b.p);
        return rc;
    }
    free(b.p);
    if (status != 200 || json_object_get(j, "error")) {
        json_t *m = json_object_get(j, "message");
        if (!json_is_string(m)) m = json_object_get(j, "error");
        int64_t code = 0;
        get_i64(j, "code", &code);
        int rc = tsr_error_set(err, map_grpc(code), "etcd %s: %s: HTTP %ld: %s (gRPC code %lld)",
                               e->endpoint, call, status,
                               json_is_string(m) ? json_string_value(m) : "unknown error",
                               (long long)code);
        json_decref(j);
        return rc;
    }
    *resp = j;
    return 0;
}

static int corrupt(etcd_t *e, const char *call, json_t *resp, const char *what, tsr_error_t *err) {
    json_decref(resp);
    return tsr_error_set(err, TSR_ECORRUPT, "etcd %s: %s: malformed response (%s)", e->endpoint,
                         call, what);
}

static void add_range(json_t *o, const char *key, int prefix) {
    if (!prefix) {
        json_object_set_new(o, "key", b64_str(key, strlen(key)));
        return;
    }
    size_t elen;
    char *end = tsr__kv_prefix_end(key, &elen);
    if (*key) json_object_set_new(o, "key", b64_str(key, strlen(key)));
    else json_object_set_new(o, "key", b64_str("", 1));   /* "\0": from the first key */
    json_object_set_new(o, "range_end", b64_str(end, elen));
    free(end);
}

static json_t *put_body(const char *key, const void *val, size_t len, int64_t lease) {
    json_t *b = json_object();
    json_object_set_new(b, "key", b64_str(key, strlen(key)));
    json_object_set_new(b, "value", b64_str(val ? val : "", len));
    if (lease) json_object_set_new(b, "lease", i64_str(lease));
    return b;
}

static int etcd_put(tsr_kv_t *kv, const char *key, const void *val, size_t len, int64_t lease,
                    int64_t *revision, tsr_error_t *err) {
    etcd_t *e = (etcd_t *)kv;
    if (!key || !*key)
        return tsr_error_set(err, TSR_EINVAL, "etcd %s: put: empty key", e->endpoint);
    json_t *r;
    int rc = request(e, "put", "/v3/kv/put", put_body(key, val, len, lease), &r, err);
    if (rc) return rc;
    int64_t rev;
    if (header_rev(r, &rev)) return corrupt(e, "put", r, "header.revision", err);
    if (revision) *revision = rev;
    json_decref(r);
    return 0;
}

static int do_range(etcd_t *e, const char *call, const char *key, int prefix,
                    tsr_kv_entry_t **out, size_t *n, int64_t *revision, tsr_error_t *err) {
    json_t *b = json_object(), *r;
    add_range(b, key, prefix);
    int rc = request(e, call, "/v3/kv/range", b, &r, err);
    if (rc) return rc;
    int64_t rev;
    if (header_rev(r, &rev)) return corrupt(e, call, r, "header.revision", err);
    json_t *kvs = json_object_get(r, "kvs");
    if (kvs && !json_is_array(kvs)) return corrupt(e, call, r, "kvs is not an array", err);
    size_t cnt = kvs ? json_array_size(kvs) : 0;
    tsr_kv_entry_t *v = tsr_calloc(cnt ? cnt : 1, sizeof *v);
    for (size_t i = 0; i < cnt; i++)
        if (parse_kv(json_array_get(kvs, i), &v[i])) {
            tsr_kv_entries_free(v, i);
            return corrupt(e, call, r, "a kv has a bad key, value or revision", err);
        }
    json_decref(r);
    *out = v;
    *n = cnt;
    if (revision) *revision = rev;
    return 0;
}

static int etcd_get(tsr_kv_t *kv, const char *key, tsr_kv_entry_t *out, int *found,
                    tsr_error_t *err) {
    memset(out, 0, sizeof *out);
    *found = 0;
    tsr_kv_entry_t *v;
    size_t n;
    int rc = do_range((etcd_t *)kv, "get", key, 0, &v, &n, NULL, err);
    if (rc) return rc;
    if (n) {
        *out = v[0];
        memset(&v[0], 0, sizeof v[0]);
        *found = 1;
    }
    tsr_kv_entries_free(v, n);
    return 0;
}

static int etcd_range(tsr_kv_t *kv, const char *prefix, tsr_kv_entry_t **out, size_t *n,
                      int64_t *revision, tsr_error_t *err) {
    return do_range((etcd_t *)kv, "range", prefix, 1, out, n, revision, err);
}

static int etcd_del(tsr_kv_t *kv, const char *key, int prefix, int64_t *deleted,
                    tsr_error_t *err) {
    etcd_t *e = (etcd_t *)kv;
    json_t *b = json_object(), *r;
    add_range(b, key, prefix);
    int rc = request(e, "delete", "/v3/kv/deleterange", b, &r, err);
    if (rc) return rc;
    int64_t d;
    if (get_i64(r, "deleted", &d)) return corrupt(e, "delete", r, "deleted", err);
    if (deleted) *deleted = d;
    json_decref(r);
    return 0;
}

static int etcd_txn(tsr_kv_t *kv, const tsr_kv_cmp_t *cmp, size_t ncmp, const tsr_kv_op_t *ops,
                    size_t nops, int *succeeded, int64_t *revision, tsr_error_t *err) {
    etcd_t *e = (etcd_t *)kv;
    json_t *b = json_object(), *jc = json_array(), *js = json_array(), *r;
    for (size_t i = 0; i < ncmp; i++) {
        json_t *c = json_object();
        json_object_set_new(c, "key", b64_str(cmp[i].key, strlen(cmp[i].key)));
        json_object_set_new(c, "target", json_string("MOD"));
        json_object_set_new(c, "result", json_string("EQUAL"));
        json_object_set_new(c, "mod_revision", i64_str(cmp[i].mod_revision));
        json_array_append_new(jc, c);
    }
    for (size_t i = 0; i < nops; i++) {
        json_t *op = json_object();
        if (ops[i].type == TSR_KV_PUT) {
            json_object_set_new(op, "request_put",
                                put_body(ops[i].key, ops[i].val, ops[i].val_len, ops[i].lease));
        } else {
            json_t *d = json_object();
            add_range(d, ops[i].key, ops[i].prefix);
            json_object_set_new(op, "request_delete_range", d);
        }
        json_array_append_new(js, op);
    }
    json_object_set_new(b, "compare", jc);
    json_object_set_new(b, "success", js);
    int rc = request(e, "txn", "/v3/kv/txn", b, &r, err);
    if (rc) return rc;
    int64_t rev;
    if (header_rev(r, &rev)) return corrupt(e, "txn", r, "header.revision", err);
    json_t *s = json_object_get(r, "succeeded");
    if (s && !json_is_boolean(s)) return corrupt(e, "txn", r, "succeeded is not a boolean", err);
    *succeeded = json_is_true(s);
    if (revision) *revision = rev;
    json_decref(r);
    return 0;
}

static int etcd_lease_grant(tsr_kv_t *kv, int64_t ttl_s, int64_t *id, tsr_error_t *err) {
    etcd_t *e = (etcd_t *)kv;
    if (ttl_s <= 0) return tsr_error_set(err, TSR_EINVAL, "etcd %s: lease grant: ttl %lld <= 0",
                                         e->endpoint, (long long)ttl_s);
    json_t *b = json_object(), *r;
    json_object_set_new(b, "TTL", i64_str(ttl_s));
    int rc = request(e, "lease grant", "/v3/lease/grant", b, &r, err);
    if (rc) return rc;
    if (get_i64(r, "ID", id) || *id == 0) return corrupt(e, "lease grant", r, "ID", err);
    json_decref(r);
    return 0;
}

static int etcd_lease_keepalive(tsr_kv_t *kv, int64_t id, int64_t *ttl_s, tsr_error_t *err) {
    etcd_t *e = (etcd_t *)kv;
    json_t *b = json_object(), *r;
    json_object_set_new(b, "ID", i64_str(id));
    int rc = request(e, "lease keepalive", "/v3/lease/keepalive", b, &r, err);
    if (rc) return rc;
    json_t *res = json_object_get(r, "result");
    int64_t ttl;
    if (!json_is_object(res) || get_i64(res, "TTL", &ttl))
        return corrupt(e, "lease keepalive", r, "result.TTL", err);
    json_decref(r);
    if (ttl <= 0)
        return tsr_error_set(err, TSR_ENOTFOUND, "etcd %s: lease keepalive: lease %lld not found "
                             "(expired or revoked)", e->endpoint, (long long)id);
    if (ttl_s) *ttl_s = ttl;
    return 0;
}

static int etcd_lease_revoke(tsr_kv_t *kv, int64_t id, tsr_error_t *err) {
    etcd_t *e = (etcd_t *)kv;
    json_t *b = json_object(), *r;
    json_object_set_new(b, "ID", i64_str(id));
    int rc = request(e, "lease revoke", "/v3/lease/revoke", b, &r, err);
    if (rc) return rc;
    json_decref(r);
    return 0;
}

/* ---------- watches ---------- */

struct tsr_kv_watch {
    etcd_t *e;
    char *prefix;
    int64_t from_rev;
    tsr_kv_watch_cb cb;
    void *ud;
    pthread_t th;
    atomic_int stop;
    pthread_mutex_t fd_mu;
    curl_socket_t fd;            /* the stream's socket, or CURL_SOCKET_BAD */
    buf_t line;
    int ended;                   /* the callback has reported the end */
    char msg[512];
    int status;
};

static curl_socket_t w_open(void *ud, curlsocktype purpose, struct curl_sockaddr *a) {
    (void)purpose;
    tsr_kv_watch_t *w = ud;
    curl_socket_t s = socket(a->family, a->socktype, a->protocol);
    pthread_mutex_lock(&w->fd_mu);
    w->fd = s;
    if (atomic_load(&w->stop) && s != CURL_SOCKET_BAD) shutdown(s, SHUT_RDWR);
    pthread_mutex_unlock(&w->fd_mu);
    return s;
}

static int w_close(void *ud, curl_socket_t s) {
    tsr_kv_watch_t *w = ud;
    pthread_mutex_lock(&w->fd_mu);
    if (w->fd == s) w->fd = CURL_SOCKET_BAD;
    int rc = close(s);
    pthread_mutex_unlock(&w->fd_mu);
    return rc;
}

static int w_progress(void *ud, curl_off_t a, curl_off_t b, curl_off_t c, curl_off_t d) {
    (void)a, (void)b, (void)c, (void)d;
    return atomic_load(&((tsr_kv_watch_t *)ud)->stop) ? 1 : 0;
}

/* Handles one JSON line of the stream; returns -1 (status/msg set) when the watch must end. */
static int w_line(tsr_kv_watch_t *w, const char *s, size_t n) {
    json_error_t je;
    json_t *j = json_loadb(s, n, 0, &je);
    json_t *res = json_object_get(j, "result");
    if (!json_is_object(res)) {
        json_t *er = json_object_get(j, "error");
        json_t *m = json_is_object(er) ? json_object_get(er, "message") : NULL;
        w->status = er ? TSR_EUNAVAIL : TSR_ECORRUPT;
        snprintf(w->msg, sizeof w->msg, "etcd %s: watch %s: %s: %.200s", w->e->endpoint,
                 w->prefix, er ? "stream error" : "malformed message",
                 json_is_string(m) ? json_string_value(m) : s);
        json_decref(j);
        return -1;
    }
    int64_t compact = 0;
    get_i64(res, "compact_revision", &compact);
    if (json_is_true(json_object_get(res, "canceled")) || compact) {
        json_t *m = json_object_get(res, "cancel_reason");
        w->status = TSR_ENOTFOUND;
        snprintf(w->msg, sizeof w->msg, "etcd %s: watch %s: canceled by etcd%s%s (compacted "
                 "revision %lld)", w->e->endpoint, w->prefix, json_is_string(m) ? ": " : "",
                 json_is_string(m) ? json_string_value(m) : "", (long long)compact);
        json_decref(j);
        return -1;
    }
    json_t *evs = json_object_get(res, "events");
    size_t cnt = json_is_array(evs) ? json_array_size(evs) : 0;
    if (!cnt) {
        json_decref(j);
        return 0;
    }
    tsr_kv_event_t *v = tsr_calloc(cnt, sizeof *v);
    int bad = 0;
    size_t i = 0;
    for (; i < cnt; i++) {
        json_t *ev = json_array_get(evs, i);
        json_t *t = json_object_get(ev, "type");   /* absent for a PUT */
        if (t && !json_is_string(t)) {
            bad = 1;
            break;
        }
        v[i].type = t && strcmp(json_string_value(t), "DELETE") == 0 ? TSR_KV_DELETE : TSR_KV_PUT;
        if (parse_kv(json_object_get(ev, "kv"), &v[i].kv)) {
            bad = 1;
            break;
        }
    }
    if (!bad) w->cb(w->ud, v, cnt, 0, NULL);
    for (size_t k = 0; k < i; k++) tsr_kv_entry_free(&v[k].kv);
    free(v);
    json_decref(j);
    if (bad) {
        w->status = TSR_ECORRUPT;
        snprintf(w->msg, sizeof w->msg, "etcd %s: watch %s: malformed event", w->e->endpoint,
                 w->prefix);
        return -1;
    }
    return 0;
}

static size_t w_write(char *d, size_t sz, size_t nm, void *ud) {
    tsr_kv_watch_t *w = ud;
    size_t n = sz * nm;
    if (atomic_load(&w->stop)) return 0;
    buf_add(&w->line, d, n);
    size_t start = 0;
    for (size_t i = 0; i < w->line.n; i++) {
        if (w->line.p[i] != '\n') continue;
        if (i > start && w_line(w, w->line.p + start, i - start)) {
            w->ended = 1;
            return 0;
        }
        start = i + 1;
    }
    memmove(w->line.p, w->line.p + start, w->line.n - start);
    w->line.n -= start;
    return n;
}

static void *w_main(void *arg) {
    tsr_kv_watch_t *w = arg;
    CURL *h = curl_easy_init();
    char url[1024];
    snprintf(url, sizeof url, "%s/v3/watch", w->e->endpoint);
    json_t *cr = json_object(), *b = json_object();
    add_range(cr, w->prefix, 1);
    json_object_set_new(cr, "start_revision", i64_str(w->from_rev));
    json_object_set_new(b, "create_request", cr);
    char *text = json_dumps(b, JSON_COMPACT);
    json_decref(b);
    struct curl_slist *hdr = curl_slist_append(NULL, "Content-Type: application/json");
    set_common(h, url);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdr);
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, text);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, w_write);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, w);
    curl_easy_setopt(h, CURLOPT_OPENSOCKETFUNCTION, w_open);
    curl_easy_setopt(h, CURLOPT_OPENSOCKETDATA, w);
    curl_easy_setopt(h, CURLOPT_CLOSESOCKETFUNCTION, w_close);
    curl_easy_setopt(h, CURLOPT_CLOSESOCKETDATA, w);
    curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, w_progress);
    curl_easy_setopt(h, CURLOPT_XFERINFODATA, w);
    CURLcode cc = curl_easy_perform(h);
    long status = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup(h);
    curl_slist_free_all(hdr);
    free(text);
    if (!atomic_load(&w->stop)) {
        if (!w->ended) {
            w->status = TSR_EUNAVAIL;
            if (cc != CURLE_OK)
                snprintf(w->msg, sizeof w->msg, "etcd %s: watch %s: %s", w->e->endpoint,
                         w->prefix, curl_easy_strerror(cc));
            else
                snprintf(w->msg, sizeof w->msg, "etcd %s: watch %s: stream ended (HTTP %ld)",
                         w->e->endpoint, w->prefix, status);
        }
        w->cb(w->ud, NULL, 0, w->status, w->msg);
    }
    return NULL;
}

static int etcd_watch(tsr_kv_t *kv, const char *prefix, int64_t from_revision,
                      tsr_kv_watch_cb cb, void *ud, tsr_kv_watch_t **out, tsr_error_t *err) {
    etcd_t *e = (etcd_t *)kv;
    int64_t from = from_revision;
    if (from <= 0) {
        /* "After now": read the current revision so nothing written after we return is lost. */
        int64_t rev;
        json_t *b = json_object(), *r;
        add_range(b, prefix, 1);
        json_object_set_new(b, "count_only", json_true());
        int rc = request(e, "watch", "/v3/kv/range", b, &r, err);
        if (rc) return rc;
        if (header_rev(r, &rev)) return corrupt(e, "watch", r, "header.revision", err);
        json_decref(r);
        from = rev + 1;
    }
    tsr_kv_watch_t *w = tsr_calloc(1, sizeof *w);
    w->e = e;
    w->prefix = tsr_strdup(prefix);
    w->from_rev = from;
    w->cb = cb;
    w->ud = ud;
    w->fd = CURL_SOCKET_BAD;
    atomic_init(&w->stop, 0);
    pthread_mutex_init(&w->fd_mu, NULL);
    if (pthread_create(&w->th, NULL, w_main, w) != 0) {
        pthread_mutex_destroy(&w->fd_mu);
        free(w->prefix);
        free(w);
        return tsr_error_set(err, TSR_EINTERNAL, "etcd %s: watch %s: cannot start thread",
                             e->endpoint, prefix);
    }
    *out = w;
    return 0;
}

static void etcd_watch_stop(tsr_kv_watch_t *w) {
    pthread_mutex_lock(&w->fd_mu);
    atomic_store(&w->stop, 1);
    if (w->fd != CURL_SOCKET_BAD) shutdown(w->fd, SHUT_RDWR);
    pthread_mutex_unlock(&w->fd_mu);
    pthread_join(w->th, NULL);
    pthread_mutex_destroy(&w->fd_mu);
    free(w->line.p);
    free(w->prefix);
    free(w);
}

static void etcd_free(tsr_kv_t *kv) {
    etcd_t *e = (etcd_t *)kv;
    curl_easy_cleanup(e->h);
    pthread_mutex_destroy(&e->mu);
    free(e->endpoint);
    free(e);
}

static const tsr_kv_vtable_t etcd_vt = {
    .put = etcd_put,
    .get = etcd_get,
    .range = etcd_range,
    .del = etcd_del,
    .txn = etcd_txn,
    .lease_grant = etcd_lease_grant,
    .lease_keepalive = etcd_lease_keepalive,
    .lease_revoke = etcd_lease_revoke,
    .watch = etcd_watch,
    .watch_stop = etcd_watch_stop,
    .free = etcd_free,
};

tsr_kv_t *tsr_kv_etcd_new(const char *endpoint, tsr_error_t *err) {
    if (!endpoint || (strncmp(endpoint, "http://", 7) && strncmp(endpoint, "https://", 8))) {
        tsr_error_set(err, TSR_EINVAL, "etcd endpoint '%s': expected http://host:port",
                      endpoint ? endpoint : "(null)");
        return NULL;
    }
    if (strlen(endpoint) > 512) {
        tsr_error_set(err, TSR_EINVAL, "etcd endpoint: longer than 512 bytes");
        return NULL;
    }
    pthread_once(&curl_once, curl_init);
    etcd_t *e = tsr_calloc(1, sizeof *e);
    e->base.vt = &etcd_vt;
    e->endpoint = tsr_strdup(endpoint);
    size_t n = strlen(e->endpoint);
    while (n && e->endpoint[n - 1] == '/') e->endpoint[--n] = 0;
    pthread_mutex_init(&e->mu, NULL);
    e->h = curl_easy_init();
    if (!e->h) {
        etcd_free(&e->base);
        tsr_error_set(err, TSR_ENOMEM, "etcd %s: cannot create a curl handle", endpoint);
        return NULL;
    }
    return &e->base;
}
