/*
 * test_coord_etcd.c — the coordinator core on a real etcd (started on free loopback ports in
 * a temp dir, stopped by PID; skipped with a message without /usr/bin/etcd), two replicas with
 * their background loops and the real clock, three workers kept alive by a thread that acts
 * like tessera-worker (KeepAlive to whichever replica leads, register again on NOT_FOUND):
 *   - the leader "crashes" (stops without resigning): the other replica leads once its lease
 *     (1 s) runs out, and the assignment stays (assign/<gb> not rewritten);
 *   - a worker dies: its partitions go to the others within about one lease TTL (2 s).
 * Prints the measured times.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cluster.pb-c.h"
#include "tsr/coord.h"
#include "tsr_test.h"
#include "tsr_test_etcd.h"

static int start_etcd(void) { return tsr_test_etcd_start("test_coord_etcd"); }
static void stop_etcd(void) { tsr_test_etcd_stop("test_coord_etcd"); }

/* ---- the cluster under test */

#define NW 3
#define NP 12

typedef struct cluster {
    tsr_kv_t *kv[2];
    tsr_coord_t *rep[2];            /* NULL once crashed */
    pthread_mutex_t mu;             /* rep[], worker state */
    int alive[NW];
    int64_t lease[NW];
    int64_t last_ok[NW];            /* last successful KeepAlive (monotonic ms) */
    atomic_int stop;
    atomic_int reregistered;
} cluster_t;

static const char *wid[NW] = {"w1", "w2", "w3"};

/* the replica that leads now, or NULL */
static tsr_coord_t *leader(cluster_t *cl) {
    for (int i = 0; i < 2; i++)
        if (cl->rep[i] && tsr_coord_is_leader(cl->rep[i], NULL)) return cl->rep[i];
    return NULL;
}

static void *keepalive_main(void *arg) {
    cluster_t *cl = arg;
    while (!atomic_load(&cl->stop)) {
        pthread_mutex_lock(&cl->mu);
        tsr_coord_t *l = leader(cl);
        for (int w = 0; l && w < NW; w++) {
            if (!cl->alive[w]) continue;
            tsr_error_t err;
            int64_t ttl, ep;
            int rc = cl->lease[w] ? tsr_coord_keepalive(l, wid[w], cl->lease[w], 0, NULL, 0, &ttl, &ep, &err)
                                  : TSR_ENOTFOUND;
            if (rc == TSR_ENOTFOUND) {
                if (cl->lease[w]) atomic_fetch_add(&cl->reregistered, 1);
                rc = tsr_coord_register_worker(l, wid[w], "127.0.0.1:1", 0, &cl->lease[w], &ttl, &ep, &err);
            }
            if (rc == 0) cl->last_ok[w] = now_ms();
        }
        pthread_mutex_unlock(&cl->mu);
        sleep_ms(200);
    }
    return NULL;
}

/* owners[p] = worker index, -1 none; returns 1 when every partition has an owner */
static int routing(cluster_t *cl, int owners[NP]) {
    pthread_mutex_lock(&cl->mu);
    tsr_coord_t *l = leader(cl);
    int ok = 0;
    for (int p = 0; p < NP; p++) owners[p] = -1;
    if (l) {
        tsr_buf_t b;
        tsr_buf_init(&b);
        tsr_error_t err;
        if (tsr_coord_routing(l, &b, NULL, &err) == 0) {
            Tessera__V1__RoutingTable *rt = tessera__v1__routing_table__unpack(NULL, b.len, b.data);
            if (rt && rt->n_routes == 1 && rt->routes[0]->n_owners == NP) {
                ok = 1;
                for (int p = 0; p < NP; p++) {
                    int32_t o = rt->routes[0]->owners[p];
                    for (int w = 0; o >= 0 && w < NW; w++)
                        if (strcmp(rt->workers[o]->worker_id, wid[w]) == 0) owners[p] = w;
                    ok &= owners[p] >= 0;
                }
            }
            if (rt) tessera__v1__routing_table__free_unpacked(rt, NULL);
        }
        tsr_buf_free(&b);
    }
    pthread_mutex_unlock(&cl->mu);
    return ok;
}

static tsr_coord_t *mk(tsr_kv_t *kv, const char *id) {
    tsr_coord_opts_t o;
    memset(&o, 0, sizeof o);
    o.kv = kv;
    o.id = id;
    o.advertise = id;
    o.lease_ttl_ms = 2000;
    o.default_partitions = NP;
    tsr_coord_t *c;
    tsr_error_t err;
    ck_assert_int_eq(tsr_coord_new(&o, &c, &err), 0);
    ck_assert_int_eq(tsr_coord_start(c, &err), 0);
    return c;
}

static int64_t assign_rev(tsr_kv_t *kv) {
    tsr_kv_entry_t e;
    int found = 0;
    tsr_error_t err;
    if (tsr_kv_get(kv, "/tessera/assign/t.by_user.v1", &e, &found, &err) || !found) return 0;
    int64_t r = e.mod_revision;
    tsr_kv_entry_free(&e);
    return r;
}

static const char *GB_JSON =
    "{\"metaData\": {\"name\": \"t.by_user.v1\"}, \"sources\": [{\"events\": {\"table\": \"t.ev\", "
    "\"query\": {\"selects\": {\"user\": \"user\", \"v\": \"v\"}, \"timeColumn\": \"ts\"}}}], "
    "\"keyColumns\": [\"user\"], \"aggregations\": [{\"inputColumn\": \"v\", \"operation\": \"SUM\"}]}";

START_TEST(test_coord_etcd_failover) {
    static cluster_t cl;
    memset(&cl, 0, sizeof cl);
    pthread_mutex_init(&cl.mu, NULL);
    tsr_error_t err;
    for (int i = 0; i < 2; i++) {
        cl.kv[i] = tsr_kv_etcd_new(g_endpoint, &err);
        ck_assert_ptr_nonnull(cl.kv[i]);
    }
    cl.rep[0] = mk(cl.kv[0], "a:1");
    for (int i = 0; i < 500 && !tsr_coord_is_leader(cl.rep[0], NULL); i++) sleep_ms(10);
    ck_assert(tsr_coord_is_leader(cl.rep[0], NULL));
    cl.rep[1] = mk(cl.kv[1], "b:1");
    int cr, un;
    ck_assert_int_eq(tsr_coord_apply(cl.rep[0], GB_JSON, strlen(GB_JSON), "t", 0, NULL, &cr, &un, &err), 0);
    for (int w = 0; w < NW; w++) cl.alive[w] = 1;
    pthread_t t;
    ck_assert_int_eq(pthread_create(&t, NULL, keepalive_main, &cl), 0);
    int before[NP], now_[NP];
    int ok = 0;
    for (int i = 0; i < 250 && !ok; i++) {
        ok = routing(&cl, before);
        int used[NW] = {0};
        for (int p = 0; ok && p < NP; p++) used[before[p]]++;
        for (int w = 0; ok && w < NW; w++) ok = used[w] == NP / NW;
        if (!ok) sleep_ms(20);
    }
    ck_assert_msg(ok, "12 partitions not spread 4/4/4 over 3 workers within 5 s");
    int64_t rev = assign_rev(cl.kv[1]);
    ck_assert_int_gt(rev, 0);

    /* the leader crashes: stops without resigning (its lease runs out) */
    pthread_mutex_lock(&cl.mu);
    tsr_coord_t *dead = cl.rep[0];
    cl.rep[0] = NULL;
    pthread_mutex_unlock(&cl.mu);
    int64_t t0 = now_ms();
    tsr_coord_free(dead);
    int64_t took = -1;
    while (now_ms() - t0 < 10000) {
        if (tsr_coord_is_leader(cl.rep[1], NULL)) {
            took = now_ms() - t0;
            break;
        }
        sleep_ms(10);
    }
    ck_assert_msg(took >= 0, "no takeover within 10 s");
    /* beyond the new leader's grace period: still the same owners, nothing rewritten */
    sleep_ms(2500);
    ck_assert(routing(&cl, now_));
    for (int p = 0; p < NP; p++)
        if (now_[p] != before[p]) ck_abort_msg("partition %d moved from %s to %s in the failover", p,
                                               wid[before[p]], wid[now_[p]]);
    ck_assert_int_eq(assign_rev(cl.kv[1]), rev);

    /* a worker dies: its partitions go to the others */
    pthread_mutex_lock(&cl.mu);
    cl.alive[2] = 0;
    int64_t last = cl.last_ok[2];
    pthread_mutex_unlock(&cl.mu);
    int64_t moved_at = -1;
    while (now_ms() - last < 10000) {
        if (routing(&cl, now_)) {
            int any = 0;
            for (int p = 0; p < NP; p++) any |= now_[p] == 2;
            if (!any) {
                moved_at = now_ms();
                break;
            }
        }
        sleep_ms(10);
    }
    ck_assert_msg(moved_at >= 0, "w3's partitions not reassigned within 10 s");
    for (int p = 0; p < NP; p++)
        if (before[p] != 2 && now_[p] != before[p]) ck_abort_msg("partition %d of a live worker moved", p);
    fprintf(stderr,
            "test_coord_etcd: leader crash -> takeover %lld ms (replica lease 1 s); assignment kept "
            "(%d re-registrations); worker death -> its partitions reassigned %lld ms after its last "
            "KeepAlive (worker lease 2 s)\n",
            (long long)took, atomic_load(&cl.reregistered), (long long)(moved_at - last));
    atomic_store(&cl.stop, 1);
    pthread_join(t, NULL);
    tsr_coord_resign(cl.rep[1]);
    tsr_coord_free(cl.rep[1]);
    for (int i = 0; i < 2; i++) tsr_kv_free(cl.kv[i]);
    pthread_mutex_destroy(&cl.mu);
}
END_TEST

int main(void) {
    if (access(ETCD_BIN, X_OK) != 0) {
        fprintf(stderr, "test_coord_etcd: %s not found: SKIPPING\n", ETCD_BIN);
        return EXIT_SUCCESS;
    }
    if (start_etcd() != 0) {
        stop_etcd();
        fprintf(stderr, "test_coord_etcd: could not start etcd\n");
        return EXIT_FAILURE;
    }
    Suite *s = suite_create("coord_etcd");
    TCase *tc = tcase_create("coord_etcd");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_coord_etcd_failover);
    suite_add_tcase(s, tc);
    int rc = tsr_test_run(s);
    stop_etcd();
    return rc;
}
