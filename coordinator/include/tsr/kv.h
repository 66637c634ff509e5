/*
 * kv.h — the coordinator's key-value store: etcd v3 (through its JSON gateway) or an in-memory
 * fake, behind one vtable so coordinator code and its tests run unchanged against either.
 *
 * Design:
 *   - tsr_kv_t is an object whose first member is a vtable pointer (like a C++ interface);
 *     tsr_kv_etcd_new() and tsr_kv_fake_new() return the two implementations, and the
 *     tsr_kv_*() inline wrappers below dispatch through it.
 *   - The model is etcd's: one store-wide revision that every write bumps; each key carries the
 *     revision of its last modification (mod_revision); leases with a TTL own keys, and a lease
 *     that expires or is revoked deletes them. Keys are NUL-terminated strings (no NUL inside);
 *     values are bytes with a length (and always NUL-terminated for convenience).
 *   - A transaction compares keys' mod_revisions (0 = "the key must be absent") and, when all
 *     comparisons hold, applies its puts and deletes atomically; otherwise it does nothing and
 *     reports succeeded = 0. That is enough for leader election (create-if-absent of a leader
 *     key; its create/mod revision is the epoch) and for fencing (write only if the leader key
 *     still has the revision you were elected at).
 *   - A watch runs its own thread and calls the callback with batches of events in revision
 *     order. from_revision 0 means "changes after now": the current revision is read before
 *     tsr_kv_watch() returns, so a write made after it returns is always delivered. If the
 *     watch breaks (etcd down, revision compacted), the callback runs once with n = 0 and a
 *     negative status and the thread ends; re-create the watch from the last revision seen + 1.
 *     tsr_kv_watch_stop() cancels, joins the thread and frees the handle; never call it from
 *     inside the callback. If tsr_kv_watch() fails, the callback never runs.
 *   - Errors: TSR_EUNAVAIL when etcd cannot be reached or answers too slowly (every call has a
 *     bounded timeout: 1 s to connect, 5 s in all), TSR_ECORRUPT for a malformed response,
 *     TSR_ENOTFOUND for an unknown or expired lease; messages name the endpoint and the call.
 *   - Thread safety: every call may be made from any thread (the etcd client serialises its
 *     requests on one connection; the fake takes a mutex).
 */
#ifndef TSR_KV_H
#define TSR_KV_H

#include <stddef.h>
#include <stdint.h>

#include "tsr/error.h"

typedef struct tsr_kv tsr_kv_t;
typedef struct tsr_kv_watch tsr_kv_watch_t;

/* One key with its value and metadata; key and val are owned (free with tsr_kv_entry_free). */
typedef struct tsr_kv_entry {
    char *key;
    char *val;               /* NUL-terminated too */
    size_t val_len;
    int64_t create_revision;
    int64_t mod_revision;
    int64_t version;         /* number of puts since creation */
    int64_t lease;           /* 0 = none */
} tsr_kv_entry_t;

void tsr_kv_entry_free(tsr_kv_entry_t *e);
void tsr_kv_entries_free(tsr_kv_entry_t *v, size_t n);

enum { TSR_KV_PUT = 0, TSR_KV_DELETE = 1 };

/* A write inside a transaction. For TSR_KV_DELETE, val/lease are ignored; prefix = 1 deletes
 * every key starting with key. */
typedef struct tsr_kv_op {
    int type;                /* TSR_KV_PUT or TSR_KV_DELETE */
    const char *key;
    const void *val;
    size_t val_len;
    int64_t lease;
    int prefix;
} tsr_kv_op_t;

/* A transaction condition: key's mod_revision == mod_revision; 0 means "key is absent". */
typedef struct tsr_kv_cmp {
    const char *key;
    int64_t mod_revision;
} tsr_kv_cmp_t;

/* A watch event. For a delete, kv.key is set, kv.val is "" and kv.mod_revision is the
 * revision of the delete. */
typedef struct tsr_kv_event {
    int type;                /* TSR_KV_PUT or TSR_KV_DELETE */
    tsr_kv_entry_t kv;
} tsr_kv_event_t;

/* Called on the watch thread. The events (borrowed, valid during the call) are in revision
 * order. status < 0 (with n = 0 and msg saying why) means the watch has ended. */
typedef void (*tsr_kv_watch_cb)(void *ud, const tsr_kv_event_t *ev, size_t n, int status,
                                const char *msg);

typedef struct tsr_kv_vtable {
    int (*put)(tsr_kv_t *kv, const char *key, const void *val, size_t val_len, int64_t lease,
               int64_t *revision, tsr_error_t *err);
    int (*get)(tsr_kv_t *kv, const char *key, tsr_kv_entry_t *out, int *found, tsr_error_t *err);
    int (*range)(tsr_kv_t *kv, const char *prefix, tsr_kv_entry_t **out, size_t *n,
                 int64_t *revision, tsr_error_t *err);
    int (*del)(tsr_kv_t *kv, const char *key, int prefix, int64_t *deleted, tsr_error_t *err);
    int (*txn)(tsr_kv_t *kv, const tsr_kv_cmp_t *cmp, size_t ncmp, const tsr_kv_op_t *ops,
               size_t nops, int *succeeded, int64_t *revision, tsr_error_t *err);
    int (*lease_grant)(tsr_kv_t *kv, int64_t ttl_s, int64_t *id, tsr_error_t *err);
    int (*lease_keepalive)(tsr_kv_t *kv, int64_t id, int64_t *ttl_s, tsr_error_t *err);
    int (*lease_revoke)(tsr_kv_t *kv, int64_t id, tsr_error_t *err);
    int (*watch)(tsr_kv_t *kv, const char *prefix, int64_t from_revision, tsr_kv_watch_cb cb,
                 void *ud, tsr_kv_watch_t **out, tsr_error_t *err);
    void (*watch_stop)(tsr_kv_watch_t *w);
    void (*free)(tsr_kv_t *kv);
} tsr_kv_vtable_t;

struct tsr_kv {
    const tsr_kv_vtable_t *vt;
};

/* A client of the etcd v3 JSON gateway at endpoint, e.g. "http://127.0.0.1:2379". Does not
 * contact etcd (the first call does). NULL with err set only for an invalid endpoint. */
tsr_kv_t *tsr_kv_etcd_new(const char *endpoint, tsr_error_t *err);

/* An in-memory store with etcd's semantics and a manual clock for leases (starts at 0 and
 * moves only with tsr_kv_fake_advance). */
tsr_kv_t *tsr_kv_fake_new(void);
/* Advances the fake's clock by ms; leases whose TTL has run out expire and their keys are
 * deleted (watchers see the deletes). No-op (returns TSR_EINVAL) for a non-fake store. */
int tsr_kv_fake_advance(tsr_kv_t *kv, int64_t ms);
/* 1 when kv is the fake. */
int tsr_kv_is_fake(const tsr_kv_t *kv);

/* Puts key = val (lease 0 = none); *revision (may be NULL) = the new store revision. */
static inline int tsr_kv_put(tsr_kv_t *kv, const char *key, const void *val, size_t val_len,
                             int64_t lease, int64_t *revision, tsr_error_t *err) {
    return kv->vt->put(kv, key, val, val_len, lease, revision, err);
}
/* *found = 0 (out zeroed) when absent; otherwise out owns the entry. */
static inline int tsr_kv_get(tsr_kv_t *kv, const char *key, tsr_kv_entry_t *out, int *found,
                             tsr_error_t *err) {
    return kv->vt->get(kv, key, out, found, err);
}
/* Every key starting with prefix ("" = all), sorted by key; *revision (may be NULL) = the
 * store revision the range was read at. Free with tsr_kv_entries_free(*out, *n). */
static inline int tsr_kv_range(tsr_kv_t *kv, const char *prefix, tsr_kv_entry_t **out,
                               size_t *n, int64_t *revision, tsr_error_t *err) {
    return kv->vt->range(kv, prefix, out, n, revision, err);
}
/* Deletes key (prefix = 0) or every key starting with it (prefix = 1); *deleted may be NULL. */
static inline int tsr_kv_delete(tsr_kv_t *kv, const char *key, int prefix, int64_t *deleted,
                                tsr_error_t *err) {
    return kv->vt->del(kv, key, prefix, deleted, err);
}
/* If all cmp hold, applies ops atomically and sets *succeeded = 1; else *succeeded = 0 and
 * nothing changes. *revision (may be NULL) = the store revision after the transaction. */
static inline int tsr_kv_txn(tsr_kv_t *kv, const tsr_kv_cmp_t *cmp, size_t ncmp,
                             const tsr_kv_op_t *ops, size_t nops, int *succeeded,
                             int64_t *revision, tsr_error_t *err) {
    return kv->vt->txn(kv, cmp, ncmp, ops, nops, succeeded, revision, err);
}
static inline int tsr_kv_lease_grant(tsr_kv_t *kv, int64_t ttl_s, int64_t *id, tsr_error_t *err) {
    return kv->vt->lease_grant(kv, ttl_s, id, err);
}
/* Renews the lease to its full TTL; TSR_ENOTFOUND when it has expired or never existed.
 * Call it every TTL/3 or so. *ttl_s (may be NULL) = the renewed TTL. */
static inline int tsr_kv_lease_keepalive(tsr_kv_t *kv, int64_t id, int64_t *ttl_s,
                                         tsr_error_t *err) {
    return kv->vt->lease_keepalive(kv, id, ttl_s, err);
}
/* Revokes the lease and deletes its keys; TSR_ENOTFOUND when unknown. */
static inline int tsr_kv_lease_revoke(tsr_kv_t *kv, int64_t id, tsr_error_t *err) {
    return kv->vt->lease_revoke(kv, id, err);
}
/* Watches keys starting with prefix from from_revision (0 = after now); see the header. */
static inline int tsr_kv_watch(tsr_kv_t *kv, const char *prefix, int64_t from_revision,
                               tsr_kv_watch_cb cb, void *ud, tsr_kv_watch_t **out,
                               tsr_error_t *err) {
    return kv->vt->watch(kv, prefix, from_revision, cb, ud, out, err);
}
/* Cancels the watch, joins its thread, frees it. NULL is ignored. */
static inline void tsr_kv_watch_stop(tsr_kv_t *kv, tsr_kv_watch_t *w) {
    if (w) kv->vt->watch_stop(w);
}
static inline void tsr_kv_free(tsr_kv_t *kv) {
    if (kv) kv->vt->free(kv);
}

/* Internal, shared with the tests: standard base64 (RFC 4648, with padding). encode returns
 * a malloc'd NUL-terminated string; decode returns a malloc'd buffer (NUL-terminated too) and
 * its length, or NULL for invalid input. */
char *tsr__kv_b64_encode(const void *data, size_t len);
char *tsr__kv_b64_decode(const char *s, size_t slen, size_t *out_len);
/* The etcd range_end for a prefix: the prefix with its last byte + 1 (bytes 0xff dropped
 * first); "\0" (= everything from key) for an empty or all-0xff prefix. malloc'd, *len set. */
char *tsr__kv_prefix_end(const char *prefix, size_t *len);

#endif
