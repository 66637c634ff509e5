/*
 * test_kv.c — the coordinator's key-value store (coordinator/kv.h). The same test functions
 * run against the in-memory fake (loop index 0) and against a real etcd (loop index 1) that
 * main() starts on free loopback ports in a temp dir and stops by PID; without /usr/bin/etcd
 * the etcd half is skipped with a message. Each test uses its own key prefix, since the etcd
 * instance is shared by all tests, and creates its clients inside the forked test process.
 * Covered: base64 and prefix ends; put/get/range/delete; txn success and conflict (leader
 * election with fencing); lease keep-alive, expiry (fake: manual clock; etcd: TTL 2 s, bounded
 * wait; a watcher sees a DELETE) and revoke; watch delivering puts and deletes in order, live
 * and replayed from a revision; an unreachable endpoint -> TSR_EUNAVAIL quickly; a non-JSON
 * answer (unary or in a watch stream) -> TSR_ECORRUPT.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "tsr/kv.h"
#include "tsr_test.h"
#include "tsr_test_etcd.h"

/* Loop index 0 = fake, 1 = etcd. */
static tsr_kv_t *mk(int i) {
    if (i == 0) return tsr_kv_fake_new();
    tsr_error_t err;
    tsr_kv_t *kv = tsr_kv_etcd_new(g_endpoint, &err);
    if (!kv) ck_abort_msg("etcd client: %s", err.msg);
    return kv;
}

static void put_ok(tsr_kv_t *kv, const char *k, const char *v, int64_t lease, int64_t *rev) {
    tsr_error_t err;
    int rc = tsr_kv_put(kv, k, v, strlen(v), lease, rev, &err);
    ck_assert_msg(rc == 0, "put %s: %s", k, err.msg);
}

/* ---------- base64 and prefix ends (shared code, no store) ---------- */

START_TEST(test_b64) {
    static const char *vec[][2] = {{"", ""}, {"f", "Zg=="}, {"fo", "Zm8="}, {"foo", "Zm9v"},
                                   {"foob", "Zm9vYg=="}, {"fooba", "Zm9vYmE="},
                                   {"foobar", "Zm9vYmFy"}};
    for (size_t i = 0; i < sizeof vec / sizeof vec[0]; i++) {
        char *e = tsr__kv_b64_encode(vec[i][0], strlen(vec[i][0]));
        ck_assert_str_eq(e, vec[i][1]);
        size_t n;
        char *d = tsr__kv_b64_decode(e, strlen(e), &n);
        ck_assert_ptr_nonnull(d);
        ck_assert_uint_eq(n, strlen(vec[i][0]));
        ck_assert_mem_eq(d, vec[i][0], n);
        free(d);
        free(e);
    }
    tsr_rng_t r = {42};
    unsigned char buf[70];
    for (int it = 0; it < 2000; it++) {
        size_t len = (size_t)tsr_rng_below(&r, sizeof buf + 1);
        for (size_t k = 0; k < len; k++) buf[k] = (unsigned char)tsr_rng_next(&r);
        char *e = tsr__kv_b64_encode(buf, len);
        size_t n;
        char *d = tsr__kv_b64_decode(e, strlen(e), &n);
        if (!d || n != len || memcmp(d, buf, len))
            ck_abort_msg("b64 round trip failed, len %zu", len);
        free(d);
        free(e);
    }
    size_t n;
    const char *bad[] = {"Zg=", "Zg", "Z===", "Zm9v!A==", "=Zg=", "Zg==Zg=="};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        ck_assert_msg(tsr__kv_b64_decode(bad[i], strlen(bad[i]), &n) == NULL, "accepted %s",
                      bad[i]);

    char *e = tsr__kv_prefix_end("/a/", &n);
    ck_assert_uint_eq(n, 3);
    ck_assert_mem_eq(e, "/a0", 3);
    free(e);
    e = tsr__kv_prefix_end("a\xff", &n);
    ck_assert_uint_eq(n, 1);
    ck_assert_int_eq(e[0], 'b');
    free(e);
    e = tsr__kv_prefix_end("", &n);
    ck_assert_uint_eq(n, 1);
    ck_assert_int_eq(e[0], 0);
    free(e);
}
END_TEST

/* ---------- the same tests against the fake and etcd ---------- */

START_TEST(test_put_get_range_delete) {
    tsr_kv_t *kv = mk(_i);
    tsr_error_t err;
    int64_t r1, r2, r3, r4;
    put_ok(kv, "/pgr/b", "2", 0, &r1);
    put_ok(kv, "/pgr/a", "1", 0, &r2);
    put_ok(kv, "/pgr/c/x", "3", 0, &r3);
    put_ok(kv, "/pgr0", "outside", 0, NULL);
    ck_assert_int_gt(r2, r1);
    ck_assert_int_gt(r3, r2);

    tsr_kv_entry_t e;
    int found;
    ck_assert_int_eq(tsr_kv_get(kv, "/pgr/a", &e, &found, &err), 0);
    ck_assert_int_eq(found, 1);
    ck_assert_str_eq(e.key, "/pgr/a");
    ck_assert_str_eq(e.val, "1");
    ck_assert_int_eq(e.mod_revision, r2);
    ck_assert_int_eq(e.create_revision, r2);
    ck_assert_int_eq(e.version, 1);
    tsr_kv_entry_free(&e);
    ck_assert_int_eq(tsr_kv_get(kv, "/pgr/none", &e, &found, &err), 0);
    ck_assert_int_eq(found, 0);
    ck_assert_ptr_null(e.key);

    /* Overwrite: mod_revision moves, create_revision stays; binary values and empty values. */
    const char bin[] = {'x', 0, '\xff', '\n', '"'};
    ck_assert_int_eq(tsr_kv_put(kv, "/pgr/a", bin, sizeof bin, 0, &r4, &err), 0);
    ck_assert_int_eq(tsr_kv_get(kv, "/pgr/a", &e, &found, &err), 0);
    ck_assert_int_eq(e.val_len, sizeof bin);
    ck_assert_mem_eq(e.val, bin, sizeof bin);
    ck_assert_int_eq(e.mod_revision, r4);
    ck_assert_int_eq(e.create_revision, r2);
    ck_assert_int_eq(e.version, 2);
    tsr_kv_entry_free(&e);
    put_ok(kv, "/pgr/empty", "", 0, NULL);
    ck_assert_int_eq(tsr_kv_get(kv, "/pgr/empty", &e, &found, &err), 0);
    ck_assert_int_eq(found, 1);
    ck_assert_uint_eq(e.val_len, 0);
    ck_assert_str_eq(e.val, "");
    tsr_kv_entry_free(&e);

    tsr_kv_entry_t *v;
    size_t n;
    int64_t rev;
    ck_assert_int_eq(tsr_kv_range(kv, "/pgr/", &v, &n, &rev, &err), 0);
    ck_assert_uint_eq(n, 4);
    ck_assert_str_eq(v[0].key, "/pgr/a");
    ck_assert_str_eq(v[1].key, "/pgr/b");
    ck_assert_str_eq(v[2].key, "/pgr/c/x");
    ck_assert_str_eq(v[3].key, "/pgr/empty");
    ck_assert_str_eq(v[1].val, "2");
    ck_assert_int_ge(rev, r4);
    tsr_kv_entries_free(v, n);
    ck_assert_int_eq(tsr_kv_range(kv, "", &v, &n, NULL, &err), 0);   /* everything */
    ck_assert_uint_ge(n, 5);
    for (size_t i = 1; i < n; i++) ck_assert_int_lt(strcmp(v[i - 1].key, v[i].key), 0);
    tsr_kv_entries_free(v, n);

    int64_t d;
    ck_assert_int_eq(tsr_kv_delete(kv, "/pgr/b", 0, &d, &err), 0);
    ck_assert_int_eq(d, 1);
    ck_assert_int_eq(tsr_kv_delete(kv, "/pgr/b", 0, &d, &err), 0);
    ck_assert_int_eq(d, 0);
    ck_assert_int_eq(tsr_kv_delete(kv, "/pgr/", 1, &d, &err), 0);
    ck_assert_int_eq(d, 3);
    ck_assert_int_eq(tsr_kv_range(kv, "/pgr/", &v, &n, NULL, &err), 0);
    ck_assert_uint_eq(n, 0);
    tsr_kv_entries_free(v, n);
    ck_assert_int_eq(tsr_kv_get(kv, "/pgr0", &e, &found, &err), 0);
    ck_assert_int_eq(found, 1);     /* not under the prefix "/pgr/" */
    tsr_kv_entry_free(&e);
    tsr_kv_free(kv);
}
END_TEST

START_TEST(test_txn) {
    tsr_kv_t *kv = mk(_i);
    tsr_error_t err;
    int ok;
    int64_t rev;
    /* Election: create the leader key only if absent. */
    tsr_kv_cmp_t absent = {"/txn/leader", 0};
    tsr_kv_op_t win1[] = {{TSR_KV_PUT, "/txn/leader", "cand1", 5, 0, 0},
                          {TSR_KV_PUT, "/txn/epoch-log/1", "x", 1, 0, 0}};
    ck_assert_int_eq(tsr_kv_txn(kv, &absent, 1, win1, 2, &ok, &rev, &err), 0);
    ck_assert_int_eq(ok, 1);
    tsr_kv_op_t win2[] = {{TSR_KV_PUT, "/txn/leader", "cand2", 5, 0, 0}};
    int64_t rev2;
    ck_assert_int_eq(tsr_kv_txn(kv, &absent, 1, win2, 1, &ok, &rev2, &err), 0);
    ck_assert_int_eq(ok, 0);                 /* lost: the key exists */
    ck_assert_int_eq(rev2, rev);             /* nothing written */
    tsr_kv_entry_t e;
    int found;
    ck_assert_int_eq(tsr_kv_get(kv, "/txn/leader", &e, &found, &err), 0);
    ck_assert_str_eq(e.val, "cand1");
    int64_t epoch = e.mod_revision;          /* both puts of win1 share one revision */
    ck_assert_int_eq(epoch, rev);
    tsr_kv_entry_free(&e);
    ck_assert_int_eq(tsr_kv_get(kv, "/txn/epoch-log/1", &e, &found, &err), 0);
    ck_assert_int_eq(e.mod_revision, epoch);
    tsr_kv_entry_free(&e);

    /* Fencing: writes carry the epoch; they succeed while it holds. */
    tsr_kv_cmp_t fence = {"/txn/leader", epoch};
    tsr_kv_op_t w[] = {{TSR_KV_PUT, "/txn/assign/p1", "w1", 2, 0, 0}};
    ck_assert_int_eq(tsr_kv_txn(kv, &fence, 1, w, 1, &ok, NULL, &err), 0);
    ck_assert_int_eq(ok, 1);
    /* A new leader takes over (the key changes) ... */
    tsr_kv_op_t take[] = {{TSR_KV_PUT, "/txn/leader", "cand2", 5, 0, 0},
                          {TSR_KV_DELETE, "/txn/epoch-log/", NULL, 0, 0, 1}};
    ck_assert_int_eq(tsr_kv_txn(kv, &fence, 1, take, 2, &ok, NULL, &err), 0);
    ck_assert_int_eq(ok, 1);
    ck_assert_int_eq(tsr_kv_get(kv, "/txn/epoch-log/1", &e, &found, &err), 0);
    ck_assert_int_eq(found, 0);
    /* ... so the old leader's fenced write is rejected and changes nothing. */
    tsr_kv_op_t stale[] = {{TSR_KV_PUT, "/txn/assign/p1", "old", 3, 0, 0}};
    ck_assert_int_eq(tsr_kv_txn(kv, &fence, 1, stale, 1, &ok, NULL, &err), 0);
    ck_assert_int_eq(ok, 0);
    ck_assert_int_eq(tsr_kv_get(kv, "/txn/assign/p1", &e, &found, &err), 0);
    ck_assert_str_eq(e.val, "w1");
    tsr_kv_entry_free(&e);
    /* Two conditions: both must hold. */
    ck_assert_int_eq(tsr_kv_get(kv, "/txn/leader", &e, &found, &err), 0);
    tsr_kv_cmp_t two[] = {{"/txn/leader", e.mod_revision}, {"/txn/nothing", 0}};
    tsr_kv_cmp_t two_bad[] = {{"/txn/leader", e.mod_revision}, {"/txn/assign/p1", 0}};
    tsr_kv_entry_free(&e);
    tsr_kv_op_t del[] = {{TSR_KV_DELETE, "/txn/assign/p1", NULL, 0, 0, 0}};
    ck_assert_int_eq(tsr_kv_txn(kv, two_bad, 2, del, 1, &ok, NULL, &err), 0);
    ck_assert_int_eq(ok, 0);
    ck_assert_int_eq(tsr_kv_txn(kv, two, 2, del, 1, &ok, NULL, &err), 0);
    ck_assert_int_eq(ok, 1);
    ck_assert_int_eq(tsr_kv_get(kv, "/txn/assign/p1", &e, &found, &err), 0);
    ck_assert_int_eq(found, 0);
    tsr_kv_free(kv);
}
END_TEST

/* Collects watch events for the tests. */
typedef struct seen {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int type[64];
    char key[64][32], val[64][16];
    int64_t rev[64];
    size_t n;
    int status;
} seen_t;

static void seen_cb(void *ud, const tsr_kv_event_t *ev, size_t n, int status, const char *msg) {
    seen_t *s = ud;
    (void)msg;
    pthread_mutex_lock(&s->mu);
    if (status) s->status = status;
    for (size_t i = 0; i < n && s->n < 64; i++, s->n++) {
        s->type[s->n] = ev[i].type;
        snprintf(s->key[s->n], sizeof s->key[0], "%s", ev[i].kv.key);
        snprintf(s->val[s->n], sizeof s->val[0], "%s", ev[i].kv.val);
        s->rev[s->n] = ev[i].kv.mod_revision;
    }
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

static void seen_init(seen_t *s) {
    memset(s, 0, sizeof *s);
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
}

/* Waits (at most 5 s) for want events; returns how many arrived. */
static size_t seen_wait(seen_t *s, size_t want) {
    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += 5;
    pthread_mutex_lock(&s->mu);
    while (s->n < want && !s->status)
        if (pthread_cond_timedwait(&s->cv, &s->mu, &dl) == ETIMEDOUT) break;
    size_t n = s->n;
    pthread_mutex_unlock(&s->mu);
    return n;
}

START_TEST(test_lease) {
    tsr_kv_t *kv = mk(_i);
    tsr_error_t err;
    int64_t id, ttl;
    ck_assert_int_eq(tsr_kv_lease_grant(kv, 2, &id, &err), 0);
    put_ok(kv, "/lease/w1", "alive", id, NULL);
    put_ok(kv, "/lease/static", "stays", 0, NULL);
    tsr_kv_entry_t e;
    int found;
    ck_assert_int_eq(tsr_kv_get(kv, "/lease/w1", &e, &found, &err), 0);
    ck_assert_int_eq(e.lease, id);
    tsr_kv_entry_free(&e);
    ck_assert_int_eq(tsr_kv_lease_keepalive(kv, id, &ttl, &err), 0);
    ck_assert_int_eq(ttl, 2);
    /* Membership watchers learn of an expiry as a DELETE event. */
    seen_t s;
    seen_init(&s);
    tsr_kv_watch_t *w;
    ck_assert_int_eq(tsr_kv_watch(kv, "/lease/w", 0, seen_cb, &s, &w, &err), 0);
    if (tsr_kv_is_fake(kv)) {
        /* Kept alive at 1.5 s, so still there at 3 s; gone 2 s after the last keep-alive. */
        tsr_kv_fake_advance(kv, 1500);
        ck_assert_int_eq(tsr_kv_lease_keepalive(kv, id, NULL, &err), 0);
        tsr_kv_fake_advance(kv, 1500);
        ck_assert_int_eq(tsr_kv_get(kv, "/lease/w1", &e, &found, &err), 0);
        ck_assert_int_eq(found, 1);
        tsr_kv_entry_free(&e);
        tsr_kv_fake_advance(kv, 600);
    }
    /* Wait (bounded) for the expiry: etcd's TTL is 2 s, checked by the leader periodically. */
    int64_t t0 = now_ms();
    do {
        ck_assert_int_eq(tsr_kv_get(kv, "/lease/w1", &e, &found, &err), 0);
        tsr_kv_entry_free(&e);
        if (found) sleep_ms(100);
    } while (found && now_ms() - t0 < 10000);
    ck_assert_msg(!found, "lease key still present after %lld ms", (long long)(now_ms() - t0));
    ck_assert_int_eq(tsr_kv_lease_keepalive(kv, id, NULL, &err), TSR_ENOTFOUND);
    ck_assert_uint_eq(seen_wait(&s, 1), 1);
    ck_assert_int_eq(s.type[0], TSR_KV_DELETE);
    ck_assert_str_eq(s.key[0], "/lease/w1");
    tsr_kv_watch_stop(kv, w);
    ck_assert_int_eq(tsr_kv_get(kv, "/lease/static", &e, &found, &err), 0);
    ck_assert_int_eq(found, 1);
    tsr_kv_entry_free(&e);

    /* Revoke deletes the keys at once; a second revoke is TSR_ENOTFOUND. */
    ck_assert_int_eq(tsr_kv_lease_grant(kv, 30, &id, &err), 0);
    put_ok(kv, "/lease/w2", "a", id, NULL);
    put_ok(kv, "/lease/w3", "b", id, NULL);
    ck_assert_int_eq(tsr_kv_lease_revoke(kv, id, &err), 0);
    tsr_kv_entry_t *v;
    size_t n;
    ck_assert_int_eq(tsr_kv_range(kv, "/lease/", &v, &n, NULL, &err), 0);
    ck_assert_uint_eq(n, 1);
    ck_assert_str_eq(v[0].key, "/lease/static");
    tsr_kv_entries_free(v, n);
    ck_assert_int_eq(tsr_kv_lease_revoke(kv, id, &err), TSR_ENOTFOUND);
    ck_assert_int_eq(tsr_kv_lease_grant(kv, 0, &id, &err), TSR_EINVAL);
    tsr_kv_free(kv);
}
END_TEST

static void check_events(seen_t *s, int64_t first_rev) {
    static const struct { int type; const char *key, *val; } want[] = {
        {TSR_KV_PUT, "/w/a", "1"},    {TSR_KV_PUT, "/w/b", "2"},    {TSR_KV_DELETE, "/w/a", ""},
        {TSR_KV_PUT, "/w/a", "3"},    {TSR_KV_DELETE, "/w/a", ""},  {TSR_KV_DELETE, "/w/b", ""},
        {TSR_KV_PUT, "/w/c", "4"}};
    size_t n = seen_wait(s, 7);
    ck_assert_int_eq(s->status, 0);
    ck_assert_uint_eq(n, 7);
    for (size_t i = 0; i < 7; i++) {
        ck_assert_int_eq(s->type[i], want[i].type);
        ck_assert_str_eq(s->key[i], want[i].key);
        ck_assert_str_eq(s->val[i], want[i].val);
        if (i) ck_assert_int_ge(s->rev[i], s->rev[i - 1]);
    }
    ck_assert_int_eq(s->rev[0], first_rev);
    ck_assert_int_eq(s->rev[4], s->rev[5]);   /* one prefix delete = one revision */
}

START_TEST(test_watch) {
    tsr_kv_t *kv = mk(_i);
    tsr_error_t err;
    put_ok(kv, "/w/before", "0", 0, NULL);
    tsr_kv_delete(kv, "/w/before", 0, NULL, &err);
    seen_t live;
    seen_init(&live);
    tsr_kv_watch_t *w;
    ck_assert_int_eq(tsr_kv_watch(kv, "/w/", 0, seen_cb, &live, &w, &err), 0);
    int64_t first;
    put_ok(kv, "/w/a", "1", 0, &first);
    put_ok(kv, "/w0", "outside", 0, NULL);
    put_ok(kv, "/w/b", "2", 0, NULL);
    ck_assert_int_eq(tsr_kv_delete(kv, "/w/a", 0, NULL, &err), 0);
    put_ok(kv, "/w/a", "3", 0, NULL);
    ck_assert_int_eq(tsr_kv_delete(kv, "/w/", 1, NULL, &err), 0);
    put_ok(kv, "/w/c", "4", 0, NULL);
    check_events(&live, first);
    int64_t t0 = now_ms();
    tsr_kv_watch_stop(kv, w);
    ck_assert_int_lt(now_ms() - t0, 1500);

    /* Replay from a revision: the same events, from history. */
    seen_t replay;
    seen_init(&replay);
    ck_assert_int_eq(tsr_kv_watch(kv, "/w/", first, seen_cb, &replay, &w, &err), 0);
    check_events(&replay, first);
    tsr_kv_watch_stop(kv, w);
    tsr_kv_free(kv);
}
END_TEST

/* ---------- etcd client errors (no store needed) ---------- */

START_TEST(test_unreachable) {
    char ep[64];
    snprintf(ep, sizeof ep, "http://127.0.0.1:%d", free_port());
    tsr_error_t err;
    tsr_kv_t *kv = tsr_kv_etcd_new(ep, &err);
    ck_assert_ptr_nonnull(kv);
    int64_t t0 = now_ms();
    ck_assert_int_eq(tsr_kv_put(kv, "/k", "v", 1, 0, NULL, &err), TSR_EUNAVAIL);
    ck_assert_msg(strstr(err.msg, ep) && strstr(err.msg, "put"), "message: %s", err.msg);
    tsr_kv_entry_t e;
    int found;
    ck_assert_int_eq(tsr_kv_get(kv, "/k", &e, &found, &err), TSR_EUNAVAIL);
    int64_t id;
    ck_assert_int_eq(tsr_kv_lease_grant(kv, 5, &id, &err), TSR_EUNAVAIL);
    ck_assert_msg(strstr(err.msg, "lease grant"), "message: %s", err.msg);
    tsr_kv_watch_t *w;
    seen_t s;
    seen_init(&s);
    ck_assert_int_eq(tsr_kv_watch(kv, "/", 0, seen_cb, &s, &w, &err), TSR_EUNAVAIL);
    /* A watch from a given revision fails on its thread: the callback reports it. */
    ck_assert_int_eq(tsr_kv_watch(kv, "/", 5, seen_cb, &s, &w, &err), 0);
    seen_wait(&s, 1);
    ck_assert_int_eq(s.status, TSR_EUNAVAIL);
    tsr_kv_watch_stop(kv, w);
    ck_assert_int_lt(now_ms() - t0, 2000);
    tsr_kv_free(kv);
    ck_assert_ptr_null(tsr_kv_etcd_new("127.0.0.1:2379", &err));
    ck_assert_int_eq(err.code, TSR_EINVAL);
}
END_TEST

/* A one-shot HTTP server that answers every request with 200 and a body that is not JSON. */
static void *garbage_server(void *arg) {
    int ls = *(int *)arg;
    for (int served = 0; served < 4; served++) {
        struct pollfd p = {ls, POLLIN, 0};
        if (poll(&p, 1, 3000) <= 0) break;
        int c = accept(ls, NULL, NULL);
        if (c < 0) break;
        char buf[4096];
        struct pollfd pc = {c, POLLIN, 0};
        if (poll(&pc, 1, 2000) > 0 && read(c, buf, sizeof buf) > 0) {
            const char *r = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                            "Content-Length: 12\r\nConnection: close\r\n\r\nhello world\n";
            if (write(c, r, strlen(r)) < 0) break;
        }
        close(c);
    }
    return NULL;
}

START_TEST(test_malformed) {
    int ls = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    ck_assert_int_eq(bind(ls, (struct sockaddr *)&a, sizeof a), 0);
    ck_assert_int_eq(getsockname(ls, (struct sockaddr *)&a, &len), 0);
    ck_assert_int_eq(listen(ls, 4), 0);
    pthread_t th;
    pthread_create(&th, NULL, garbage_server, &ls);
    char ep[64];
    snprintf(ep, sizeof ep, "http://127.0.0.1:%d", ntohs(a.sin_port));
    tsr_error_t err;
    tsr_kv_t *kv = tsr_kv_etcd_new(ep, &err);
    ck_assert_int_eq(tsr_kv_put(kv, "/k", "v", 1, 0, NULL, &err), TSR_ECORRUPT);
    ck_assert_msg(strstr(err.msg, ep) && strstr(err.msg, "put"), "message: %s", err.msg);
    tsr_kv_entry_t *v;
    size_t n;
    ck_assert_int_eq(tsr_kv_range(kv, "/", &v, &n, NULL, &err), TSR_ECORRUPT);
    /* A watch stream with a line that is not JSON ends with TSR_ECORRUPT on its thread. */
    seen_t s;
    seen_init(&s);
    tsr_kv_watch_t *w;
    ck_assert_int_eq(tsr_kv_watch(kv, "/", 5, seen_cb, &s, &w, &err), 0);
    seen_wait(&s, 1);
    ck_assert_int_eq(s.status, TSR_ECORRUPT);
    ck_assert_uint_eq(s.n, 0);
    tsr_kv_watch_stop(kv, w);
    tsr_kv_free(kv);
    shutdown(ls, SHUT_RDWR);
    pthread_join(th, NULL);
    close(ls);
}
END_TEST

/* ---------- etcd process ---------- */

static int start_etcd(void) { return tsr_test_etcd_start("test_kv"); }
static void stop_etcd(void) { tsr_test_etcd_stop("test_kv"); }

int main(void) {
    int backends = 1;
    if (access(ETCD_BIN, X_OK) != 0) {
        fprintf(stderr, "test_kv: %s not found: SKIPPING the etcd half (fake only)\n", ETCD_BIN);
    } else if (start_etcd() != 0) {
        stop_etcd();
        fprintf(stderr, "test_kv: could not start etcd\n");
        return EXIT_FAILURE;
    } else {
        backends = 2;
    }
    Suite *s = suite_create("kv");
    TCase *tc = tcase_create("kv");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, test_b64);
    tcase_add_loop_test(tc, test_put_get_range_delete, 0, backends);
    tcase_add_loop_test(tc, test_txn, 0, backends);
    tcase_add_loop_test(tc, test_lease, 0, backends);
    tcase_add_loop_test(tc, test_watch, 0, backends);
    tcase_add_test(tc, test_unreachable);
    tcase_add_test(tc, test_malformed);
    suite_add_tcase(s, tc);
    int rc = tsr_test_run(s);
    stop_etcd();
    return rc;
}
