/*
 * tsr_test_coord.h — what the coordinator unit tests share (test_coord, test_coord_backfill,
 * test_coord_jobs): a manual clock, a coordinator on a (fake) kv with the test defaults, worker
 * registration, a worker's assignment and a key's mod revision. Include after tsr_test.h.
 */
#ifndef TSR_TEST_COORD_H
#define TSR_TEST_COORD_H

#include <string.h>

#include "cluster.pb-c.h"
#include "tsr/coord.h"
#include "tsr_test.h"

/* The coordinator's clock: advanced by hand. */
typedef struct clk {
    int64_t ms;
} clk_t;

static inline int64_t tsr_test_clock_fn(void *ud) { return ((clk_t *)ud)->ms; }

/* Options of a coordinator `id` advertising `addr` on kv over warehouse wh, with clock clk:
 * worker lease TTL 5 s, 8 partitions for GroupBys without a topic. Adjust, then start. */
static inline void tsr_test_coord_opts(tsr_coord_opts_t *o, tsr_kv_t *kv, const char *id,
                                       const char *addr, const char *wh, clk_t *clk) {
    memset(o, 0, sizeof *o);
    o->kv = kv;
    o->id = id;
    o->advertise = addr;
    o->warehouse = wh;
    o->lease_ttl_ms = 5000;
    o->default_partitions = 8;
    o->clock = tsr_test_clock_fn;
    o->clock_ud = clk;
}

static inline tsr_coord_t *tsr_test_coord_start(const tsr_coord_opts_t *o) {
    tsr_coord_t *c;
    tsr_error_t err;
    int rc = tsr_coord_new(o, &c, &err);
    if (rc) ck_abort_msg("tsr_coord_new: %s", err.msg);
    return c;
}

/* Registers worker w at addr; returns its lease (*ttl_ms, if given, gets the lease TTL). */
static inline int64_t tsr_test_coord_reg(tsr_coord_t *c, const char *w, const char *addr,
                                         int64_t *ttl_ms) {
    int64_t lease, ttl, epoch;
    tsr_error_t err;
    int rc = tsr_coord_register_worker(c, w, addr, 0, &lease, &ttl, &epoch, &err);
    if (rc) ck_abort_msg("register %s: %s", w, err.msg);
    if (ttl_ms) *ttl_ms = ttl;
    return lease;
}

/* Worker w's assignment as the coordinator would stream it (free with
 * tessera__v1__assignment__free_unpacked). */
static inline Tessera__V1__Assignment *tsr_test_coord_assignment(tsr_coord_t *c, const char *w) {
    tsr_buf_t b;
    tsr_buf_init(&b);
    tsr_error_t err;
    int rc = tsr_coord_assignment(c, w, &b, NULL, &err);
    if (rc) ck_abort_msg("assignment: %s", err.msg);
    Tessera__V1__Assignment *a = tessera__v1__assignment__unpack(NULL, b.len, b.data);
    tsr_buf_free(&b);
    ck_assert_ptr_nonnull(a);
    return a;
}

/* The mod revision of key k in kv; 0 when absent. */
static inline int64_t tsr_test_mod_rev(tsr_kv_t *kv, const char *k) {
    tsr_kv_entry_t e;
    int found;
    tsr_error_t err;
    ck_assert_int_eq(tsr_kv_get(kv, k, &e, &found, &err), 0);
    if (!found) return 0;
    int64_t r = e.mod_revision;
    tsr_kv_entry_free(&e);
    return r;
}

#endif
