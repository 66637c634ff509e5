/*
 * rpc_health.c — grpc.health.v1.Health (proto/health.proto) implemented on the rpc layer.
 *
 * DESIGN
 *   A small table service name → status under one mutex, with a version counter bumped on
 *   every change and a condition variable that Watch handlers wait on. The owner sets statuses
 *   (tsr_rpc_health_set); "" (the whole server) starts SERVING.
 *   - Check (unary, inline): the status, or NOT_FOUND for a name never set.
 *   - Watch (server streaming, own thread): sends the current status (SERVICE_UNKNOWN for a name
 *     never set) at once, then one message per change of that service's status, until the
 *     client cancels or the server shuts down. It waits in slices of 50 ms so a cancelled
 *     client is noticed even when nothing changes.
 *
 * INVARIANTS
 *   1. Watch never sends the same status twice in a row.
 *   2. After tsr__rpc_health_close, every Watch returns within one wait slice.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "health.pb-c.h"
#include "rpc_int.h"

#define HEALTH_PATH_CHECK "/grpc.health.v1.Health/Check"
#define HEALTH_PATH_WATCH "/grpc.health.v1.Health/Watch"

typedef struct health_item {
    char *name;
    int status;
} health_item_t;

struct rpc_health {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    health_item_t *items;
    size_t n, cap;
    uint64_t version;
    int closing;
};

/* Under h->mu. */
static int health_lookup(const rpc_health_t *h, const char *name, int *status) {
    for (size_t i = 0; i < h->n; i++)
        if (strcmp(h->items[i].name, name) == 0) {
            *status = h->items[i].status;
            return 1;
        }
    return 0;
}

/* Decodes a HealthCheckRequest; copies the service name into out (truncated at cap-1). */
static int health_decode(const uint8_t *req, size_t n, char *out, size_t cap, tsr_error_t *err) {
    Grpc__Health__V1__HealthCheckRequest *m =
        grpc__health__v1__health_check_request__unpack(NULL, n, req);
    if (!m)
        return tsr_error_set(err, TSR_EINVAL,
                             "grpc.health.v1.HealthCheckRequest: malformed protobuf (%zu bytes)",
                             n);
    snprintf(out, cap, "%s", m->service ? m->service : "");
    grpc__health__v1__health_check_request__free_unpacked(m, NULL);
    return TSR_OK;
}

static void health_encode(int status, tsr_buf_t *out) {
    Grpc__Health__V1__HealthCheckResponse r = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;
    r.status = (Grpc__Health__V1__HealthCheckResponse__ServingStatus)status;
    size_t n = grpc__health__v1__health_check_response__get_packed_size(&r);
    tsr_buf_reserve(out, n);
    grpc__health__v1__health_check_response__pack(&r, out->data + out->len);
    out->len += n;
}

static int health_check(void *ud, tsr_rpc_call_t *call, const uint8_t *req, size_t n,
                        tsr_buf_t *resp, tsr_error_t *err) {
    rpc_health_t *h = ud;
    char name[256];
    int rc = health_decode(req, n, name, sizeof(name), err);
    if (rc) return rc;
    int status = 0, found;
    pthread_mutex_lock(&h->mu);
    found = health_lookup(h, name, &status);
    pthread_mutex_unlock(&h->mu);
    if (!found) return tsr_error_set(err, TSR_ENOTFOUND, "unknown service '%s'", name);
    health_encode(status, resp);
    return TSR_OK;
}

static int health_watch(void *ud, tsr_rpc_call_t *call, const uint8_t *req, size_t n,
                        tsr_error_t *err) {
    rpc_health_t *h = ud;
    char name[256];
    int rc = health_decode(req, n, name, sizeof(name), err);
    if (rc) return rc;
    int last = -1;
    tsr_buf_t out;
    tsr_buf_init(&out);
    for (;;) {
        int status = TSR_HEALTH_SERVICE_UNKNOWN;
        pthread_mutex_lock(&h->mu);
        if (!health_lookup(h, name, &status)) status = TSR_HEALTH_SERVICE_UNKNOWN;
        uint64_t seen = h->version;
        pthread_mutex_unlock(&h->mu);
        if (status != last) {
            tsr_buf_clear(&out);
            health_encode(status, &out);
            if (tsr_rpc_call_send(call, out.data, out.len) != TSR_OK) break;
            last = status;
        }
        pthread_mutex_lock(&h->mu);
        while (h->version == seen && !h->closing && !tsr_rpc_call_cancelled(call)) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_nsec += 50 * 1000000L;
            if (ts.tv_nsec >= 1000000000L) { ts.tv_sec++; ts.tv_nsec -= 1000000000L; }
            pthread_cond_timedwait(&h->cv, &h->mu, &ts);
        }
        int stop = h->closing || tsr_rpc_call_cancelled(call);
        pthread_mutex_unlock(&h->mu);
        if (stop) break;
    }
    tsr_buf_free(&out);
    return tsr_error_set(err, TSR_EUNAVAIL, "health watch of '%s' ended (cancelled or shutdown)",
                         name);
}

int tsr_rpc_health_register(tsr_rpc_server_t *s, tsr_error_t *err) {
    if (s->health) return tsr_error_set(err, TSR_EEXIST, "health service registered twice");
    rpc_health_t *h = tsr_calloc(1, sizeof(*h));
    pthread_mutex_init(&h->mu, NULL);
    pthread_cond_init(&h->cv, NULL);
    int rc = tsr_rpc_server_add_unary(s, HEALTH_PATH_CHECK, health_check, h, err);
    if (rc == TSR_OK) rc = tsr_rpc_server_add_stream(s, HEALTH_PATH_WATCH, health_watch, h, err);
    s->health = h; /* even on failure: freed with the server, which may hold one method */
    if (rc) return rc;
    tsr_rpc_health_set(s, "", TSR_HEALTH_SERVING);
    return TSR_OK;
}

void tsr_rpc_health_set(tsr_rpc_server_t *s, const char *service, int status) {
    rpc_health_t *h = s->health;
    if (!h || !service) return;
    pthread_mutex_lock(&h->mu);
    size_t i = 0;
    while (i < h->n && strcmp(h->items[i].name, service) != 0) i++;
    if (i == h->n) {
        if (h->n == h->cap) {
            h->cap = h->cap ? 2 * h->cap : 8;
            h->items = tsr_realloc(h->items, h->cap * sizeof(*h->items));
        }
        h->items[h->n].name = tsr_strdup(service);
        h->n++;
    }
    h->items[i].status = status;
    h->version++;
    pthread_cond_broadcast(&h->cv);
    pthread_mutex_unlock(&h->mu);
}

void tsr__rpc_health_close(rpc_health_t *h) {
    pthread_mutex_lock(&h->mu);
    h->closing = 1;
    pthread_cond_broadcast(&h->cv);
    pthread_mutex_unlock(&h->mu);
}

void tsr__rpc_health_free(rpc_health_t *h) {
    for (size_t i = 0; i < h->n; i++) free(h->items[i].name);
    free(h->items);
    pthread_mutex_destroy(&h->mu);
    pthread_cond_destroy(&h->cv);
    free(h);
}
