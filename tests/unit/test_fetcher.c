/*
 * test_fetcher.c — tessera-fetcher (fetcher/routing.h, fetcher/fetcher.h):
 *   - routing tables: (epoch, revision) ordering, decoding errors, key → partition → owner
 *     (Kafka's murmur2 of the key text) for one and two key columns;
 *   - in process, end to end: a fake coordinator (a tsr_rpc server streaming WatchRouting
 *     tables, behind a follower that redirects "not the leader; leader is X"), three fake
 *     workers (tsr_rpc servers answering ReadPartition from the key, NOT_OWNER for partitions
 *     they do not own) and the fetcher's FetchJoin: answers equal a local single-read serving,
 *     one ReadPartition per owner, only owned partitions, fan-out in parallel (sleeping
 *     workers: total ≈ max, not sum), a partition moved under a fetch is retried on the newer
 *     table, a table of a lower epoch is ignored, an unreachable owner fails only its part,
 *     and fetches keep working with the coordinator gone.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cluster.pb-c.h"
#include "tsr/fetcher.h"
#include "tsr/partition.h"
#include "tsr/pbvalue.h"
#include "tsr/routing.h"
#include "tsr/rpc.h"
#include "tsr/serving.h"
#include "tsr_test.h"
#include "test_http_client.h"

static int64_t mono_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

static void sleep_ms(int ms) {
    struct timespec t = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&t, NULL);
}

/* ---- routing tables */

typedef struct table_spec {
    int64_t epoch, revision;
    int nworkers;
    const char *const *addrs;
    int nroutes;
    const char *const *gbs;
    int nparts;
    const int *owners;              /* nparts per route, shared */
    const char *config_name, *config_json;
    int64_t config_version;
} table_spec_t;

static void pack_table(const table_spec_t *t, tsr_buf_t *out) {
    Tessera__V1__RoutingTable m;
    tessera__v1__routing_table__init(&m);
    m.epoch = t->epoch;
    m.revision = t->revision;
    Tessera__V1__WorkerInfo w[8], *wp[8];
    char ids[8][16];
    m.n_workers = (size_t)t->nworkers;
    m.workers = wp;
    for (int i = 0; i < t->nworkers; i++) {
        tessera__v1__worker_info__init(&w[i]);
        snprintf(ids[i], sizeof ids[i], "w%d", i);
        w[i].worker_id = ids[i];
        w[i].address = (char *)t->addrs[i];
        wp[i] = &w[i];
    }
    Tessera__V1__GroupByRoute r[8], *rp[8];
    int32_t owners[64];
    for (int p = 0; p < t->nparts; p++) owners[p] = t->owners[p];
    m.n_routes = (size_t)t->nroutes;
    m.routes = rp;
    for (int i = 0; i < t->nroutes; i++) {
        tessera__v1__group_by_route__init(&r[i]);
        r[i].name = (char *)t->gbs[i];
        r[i].num_partitions = t->nparts;
        r[i].n_owners = (size_t)t->nparts;
        r[i].owners = owners;
        rp[i] = &r[i];
    }
    Tessera__V1__RoutedConfig c, *cp[1] = {&c};
    tessera__v1__routed_config__init(&c);
    if (t->config_name) {
        c.name = (char *)t->config_name;
        c.version = t->config_version;
        c.config_json = (char *)t->config_json;
        m.n_configs = 1;
        m.configs = cp;
    }
    tsr_buf_clear(out);
    tsr_pb_pack(&m.base, out);
}

static tsr_routing_t *decode(const table_spec_t *t) {
    tsr_buf_t b;
    tsr_buf_init(&b);
    pack_table(t, &b);
    tsr_routing_t *rt;
    tsr_error_t err;
    ck_assert_msg(tsr_routing_decode(b.data, b.len, &rt, &err) == 0, "%s", err.msg);
    tsr_buf_free(&b);
    return rt;
}

static const char *const addrs3[] = {"127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"};
static const char *const gbs2[] = {"t.by_user.v1", "t.by_shop.v1"};
static const int owners8[] = {0, 1, 2, 0, 1, 2, 0, 1};

START_TEST(test_routing_order) {
    table_spec_t t = {5, 10, 3, addrs3, 2, gbs2, 8, owners8, NULL, NULL, 0};
    tsr_routing_t *a = decode(&t);
    ck_assert_int_eq(a->nroutes, 2);
    ck_assert_str_eq(a->routes[0].name, "t.by_shop.v1"); /* sorted */
    ck_assert_ptr_nonnull(tsr_routing_find(a, "t.by_user.v1"));
    ck_assert_ptr_null(tsr_routing_find(a, "t.nope"));
    ck_assert_int_eq(tsr_routing_is_newer(NULL, a), 1);
    struct {
        int64_t epoch, rev;
        int newer;
    } cases[] = {{5, 10, 1}, {5, 11, 1}, {5, 9, 0}, {4, 100, 0}, {6, 1, 1}, {6, 0, 1}};
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        t.epoch = cases[i].epoch;
        t.revision = cases[i].rev;
        tsr_routing_t *b = decode(&t);
        ck_assert_msg(tsr_routing_is_newer(a, b) == cases[i].newer, "epoch %lld rev %lld", (long long)t.epoch,
                      (long long)t.revision);
        tsr_routing_unref(b);
    }
    tsr_routing_unref(a);

    /* malformed tables */
    tsr_buf_t b;
    tsr_buf_init(&b);
    tsr_routing_t *rt;
    tsr_error_t err;
    const int bad_owner[] = {0, 1, 7, 0, 1, 2, 0, 1};
    t.owners = bad_owner;
    pack_table(&t, &b);
    ck_assert_int_eq(tsr_routing_decode(b.data, b.len, &rt, &err), TSR_ECORRUPT);
    ck_assert_ptr_nonnull(strstr(err.msg, "owner 7 of 3 workers"));
    const uint8_t junk[] = {0xff, 0xff, 0xff, 0x01};
    ck_assert_int_eq(tsr_routing_decode(junk, sizeof junk, &rt, &err), TSR_EINVAL);
    tsr_buf_free(&b);
}
END_TEST

/* Every key goes to murmur2(key text) mod partitions and to that partition's owner. */
START_TEST(test_routing_locate) {
    const int owners[] = {0, 1, 2, -1, 1, 2, 0, 1};
    table_spec_t t = {5, 10, 3, addrs3, 2, gbs2, 8, owners, NULL, NULL, 0};
    tsr_routing_t *rt = decode(&t);
    tsr_buf_t key, text, scratch;
    tsr_buf_init(&key);
    tsr_buf_init(&text);
    tsr_buf_init(&scratch);
    int per_worker[3] = {0, 0, 0}, no_owner = 0;
    for (int i = 0; i < 400; i++) {
        char s[32];
        snprintf(s, sizeof s, "user-%d", i);
        tsr_value_t kv[2] = {tsr_value_string(s, strlen(s)), tsr_value_long(i * 31)};
        size_t nk = i % 2 ? 2 : 1;
        tsr_buf_clear(&key);
        for (size_t k = 0; k < nk; k++) tsr_value_encode(&kv[k], &key);
        ck_assert_int_eq(tsr_routing_key_count(key.data, key.len), (int)nk);
        tsr_buf_clear(&text);
        tsr_partition_key_text(kv, nk, &text);
        int want = tsr_partition_of_text(text.data, text.len, 8);
        int p, w;
        tsr_error_t err;
        int rc = tsr_routing_locate(rt, "t.by_user.v1", key.data, key.len, &p, &w, &scratch, &err);
        if (p != want) ck_abort_msg("key %d: partition %d, want %d", i, p, want);
        if (owners[p] < 0) {
            if (rc != TSR_EUNAVAIL || !strstr(err.msg, "has no owner")) ck_abort_msg("key %d: rc %d", i, rc);
            no_owner++;
            continue;
        }
        if (rc != 0 || w != owners[p]) ck_abort_msg("key %d: worker %d, want %d", i, w, owners[p]);
        per_worker[w]++;
    }
    ck_assert_int_gt(per_worker[0], 0);
    ck_assert_int_gt(per_worker[1], 0);
    ck_assert_int_gt(per_worker[2], 0);
    ck_assert_int_gt(no_owner, 0);
    /* "u1" as the text of one key column: the same partition Kafka's producer picks */
    tsr_value_t u1 = tsr_value_string("u1", 2);
    tsr_buf_clear(&key);
    tsr_value_encode(&u1, &key);
    int p, w;
    tsr_error_t err;
    tsr_routing_locate(rt, "t.by_shop.v1", key.data, key.len, &p, &w, &scratch, &err);
    ck_assert_int_eq(p, tsr_partition_of_text("u1", 2, 8));
    ck_assert_int_eq(tsr_routing_locate(rt, "t.other", key.data, key.len, &p, &w, &scratch, &err), TSR_EUNAVAIL);
    ck_assert_ptr_nonnull(strstr(err.msg, "not routed"));
    const uint8_t junk[] = {0xff};
    ck_assert_int_eq(tsr_routing_locate(rt, "t.by_shop.v1", junk, 1, &p, &w, &scratch, &err), TSR_ECORRUPT);
    tsr_buf_free(&key);
    tsr_buf_free(&text);
    tsr_buf_free(&scratch);
    tsr_routing_unref(rt);
}
END_TEST

/* ---- the end-to-end fixture */

static char wh[256];

static void wh_setup(void) {
    snprintf(wh, sizeof wh, "/tmp/tsr_fetcher_XXXXXX");
    tsr_test_wh_events(wh, "{\"user\": \"string\", \"shop\": \"string\", \"v\": \"long\", \"ts\": \"long\"}",
                       "user,shop,v,ts\n");
}

static void wh_teardown(void) { tsr_test_rm_rf(wh); }

#define GB(name, key)                                                                              \
    "{\"metaData\": {\"name\": \"" name "\"}, \"sources\": [{\"events\": {\"table\": \"t.ev\", "    \
    "\"topic\": \"ev\", \"query\": {\"selects\": {\"" key "\": \"" key "\", \"v\": \"v\"}, "        \
    "\"timeColumn\": \"ts\"}}}], \"keyColumns\": [\"" key "\"], \"aggregations\": ["               \
    "{\"inputColumn\": \"v\", \"operation\": \"SUM\", \"windows\": [{\"length\": 1, \"timeUnit\": " \
    "\"DAYS\"}]}, {\"inputColumn\": \"v\", \"operation\": \"COUNT\"}]}"

static const char *join_json =
    "{\"metaData\": {\"name\": \"t.join.v1\"}, \"left\": {\"events\": {\"table\": \"t.ev\", "
    "\"query\": {\"selects\": {\"user\": \"user\", \"shop\": \"shop\"}, \"timeColumn\": \"ts\"}}}, "
    "\"joinParts\": [{\"groupBy\": " GB("t.by_user.v1", "user") "}, {\"prefix\": \"s\", \"groupBy\": "
    GB("t.by_shop.v1", "shop") "}], \"derivations\": [{\"name\": \"*\", \"expression\": \"*\"}, "
    "{\"name\": \"double_sum\", \"expression\": \"t_by_user_v1_v_sum_1d * 2\"}]}";

/* The tiles every fake worker and the local reference serve: SUM = key bytes * 10 + q % 7,
 * COUNT = 3; nothing (nulls; a worker answers no values) for keys of 5, 10, ... bytes. */
static int ref_read(void *ud, const char *gb, const void *key, size_t klen, int64_t q, tsr_value_t *out,
                    tsr_arena_t *arena, tsr_error_t *err) {
    (void)ud, (void)gb, (void)key, (void)arena, (void)err;
    if (klen % 5 == 0) return 0;
    out[0] = tsr_value_long((int64_t)klen * 10 + q % 7);
    out[1] = tsr_value_long(3);
    return 0;
}

/* A fake worker: owns partitions (bit set), answers from ref_read, sleeps sleep_ms per call. */
typedef struct fworker {
    tsr_rpc_server_t *srv;
    char addr[64];
    atomic_uint owned;              /* bit p: owns partition p (of every GroupBy) */
    atomic_int sleep_ms;
    atomic_int calls, items, not_owner;
    _Atomic int64_t slept_from, slept_to; /* mono ms of the last call's sleep */
} fworker_t;

static int h_read(void *ud, tsr_rpc_call_t *call, const uint8_t *req, size_t n, tsr_buf_t *resp, tsr_error_t *err) {
    (void)call;
    fworker_t *w = ud;
    atomic_fetch_add(&w->calls, 1);
    int sl = atomic_load(&w->sleep_ms);
    if (sl) {
        atomic_store(&w->slept_from, mono_ms());
        sleep_ms(sl);
        atomic_store(&w->slept_to, mono_ms());
    }
    tsr_arena_t a;
    tsr_arena_init(&a, 4096);
    Tessera__V1__ReadPartitionRequest *rq = tsr_pb_unpack(&tessera__v1__read_partition_request__descriptor, req, n, &a, err);
    if (!rq) {
        tsr_arena_free(&a);
        return TSR_EINVAL;
    }
    Tessera__V1__ReadPartitionResponse out;
    tessera__v1__read_partition_response__init(&out);
    out.n_results = rq->n_items;
    out.results = tsr_arena_alloc(&a, (rq->n_items + 1) * sizeof(*out.results));
    unsigned owned = atomic_load(&w->owned);
    for (size_t i = 0; i < rq->n_items; i++) {
        const Tessera__V1__ReadItem *it = rq->items[i];
        Tessera__V1__ReadResult *r = tsr_arena_alloc(&a, sizeof *r);
        tessera__v1__read_result__init(r);
        out.results[i] = r;
        atomic_fetch_add(&w->items, 1);
        if (!(owned & (1u << it->partition))) {
            atomic_fetch_add(&w->not_owner, 1);
            r->status = TESSERA__V1__READ_STATUS__READ_NOT_OWNER;
            continue;
        }
        tsr_value_t v[2];
        if (it->key.len % 5 == 0) continue; /* not stored: no values */
        ref_read(NULL, it->group_by, it->key.data, it->key.len, it->at_millis, v, &a, NULL);
        r->n_values = 2;
        r->values = tsr_arena_alloc(&a, 2 * sizeof(*r->values));
        for (int k = 0; k < 2; k++) r->values[k] = tsr_pb_value_new(&v[k], &a);
    }
    tsr_pb_pack(&out.base, resp);
    tsr_arena_free(&a);
    return 0;
}

static void worker_start(fworker_t *w, unsigned owned) {
    memset(w, 0, sizeof *w);
    atomic_store(&w->owned, owned);
    tsr_error_t err;
    w->srv = tsr_rpc_server_new("127.0.0.1:0", NULL, &err);
    ck_assert_ptr_nonnull(w->srv);
    ck_assert_int_eq(tsr_rpc_server_add_unary(w->srv, "/tessera.v1.WorkerService/ReadPartition", h_read, w, &err), 0);
    ck_assert_int_eq(tsr_rpc_server_start(w->srv, &err), 0);
    snprintf(w->addr, sizeof w->addr, "127.0.0.1:%d", tsr_rpc_server_port(w->srv));
}

/* A fake coordinator: streams the current table to every watcher, and each new one. A
 * follower answers every call UNAVAILABLE "not the leader; leader is <leader>". */
typedef struct fcoord {
    tsr_rpc_server_t *srv;
    char addr[64];
    pthread_mutex_t mu;
    tsr_buf_t table;
    int version;                    /* bumped per publish */
    int watches;                    /* streams opened */
    const char *leader;             /* follower: the leader's address */
} fcoord_t;

static int h_watch(void *ud, tsr_rpc_call_t *call, const uint8_t *req, size_t n, tsr_error_t *err) {
    (void)req, (void)n;
    fcoord_t *c = ud;
    if (c->leader) {
        tsr_rpc_call_add_metadata(call, "tessera-leader", c->leader, strlen(c->leader), NULL);
        return tsr_error_set(err, TSR_EUNAVAIL, "not the leader; leader is %s", c->leader);
    }
    pthread_mutex_lock(&c->mu);
    c->watches++;
    pthread_mutex_unlock(&c->mu);
    int sent = -1;
    tsr_buf_t b;
    tsr_buf_init(&b);
    /* bounded: the fetcher renews its stream every few seconds, cancelling this one */
    for (int i = 0; i < 2000 && !tsr_rpc_call_cancelled(call); i++) {
        pthread_mutex_lock(&c->mu);
        int v = c->version;
        if (v != sent) {
            tsr_buf_clear(&b);
            tsr_buf_append(&b, c->table.data, c->table.len);
        }
        pthread_mutex_unlock(&c->mu);
        if (v != sent) {
            if (tsr_rpc_call_send(call, b.data, b.len) != 0) break;
            sent = v;
        }
        sleep_ms(5);
    }
    tsr_buf_free(&b);
    return 0;
}

static void coord_start(fcoord_t *c, const char *leader) {
    memset(c, 0, sizeof *c);
    pthread_mutex_init(&c->mu, NULL);
    tsr_buf_init(&c->table);
    c->leader = leader;
    tsr_error_t err;
    c->srv = tsr_rpc_server_new("127.0.0.1:0", NULL, &err);
    ck_assert_ptr_nonnull(c->srv);
    ck_assert_int_eq(tsr_rpc_server_add_stream(c->srv, "/tessera.v1.CoordinatorService/WatchRouting", h_watch, c, &err), 0);
    ck_assert_int_eq(tsr_rpc_server_start(c->srv, &err), 0);
    snprintf(c->addr, sizeof c->addr, "127.0.0.1:%d", tsr_rpc_server_port(c->srv));
}

static void coord_publish(fcoord_t *c, const table_spec_t *t) {
    pthread_mutex_lock(&c->mu);
    pack_table(t, &c->table);
    c->version++;
    pthread_mutex_unlock(&c->mu);
}

static void coord_stop(fcoord_t *c) {
    tsr_rpc_server_free(c->srv);
    c->srv = NULL;
    tsr_buf_free(&c->table);
    pthread_mutex_destroy(&c->mu);
}

/* Packs a FetchRequest of rows "user=..,shop=..@q". */
static void request(const char *name, const char *const *rows, size_t n, tsr_buf_t *out) {
    tsr_arena_t a;
    tsr_arena_init(&a, 4096);
    Tessera__V1__FetchRequest rq;
    tessera__v1__fetch_request__init(&rq);
    rq.name = (char *)name;
    rq.n_rows = n;
    rq.rows = tsr_arena_alloc(&a, (n ? n : 1) * sizeof(*rq.rows));
    for (size_t i = 0; i < n; i++) {
        Tessera__V1__FetchRow *r = tsr_arena_alloc(&a, sizeof *r);
        tessera__v1__fetch_row__init(r);
        char *spec = tsr_arena_strdup(&a, rows[i]);
        char *at = strchr(spec, '@');
        *at = 0;
        r->at_case = TESSERA__V1__FETCH_ROW__AT_AT_MILLIS;
        r->at_millis = atoll(at + 1);
        r->keys = tsr_arena_alloc(&a, 8 * sizeof(*r->keys));
        char *save = NULL;
        for (char *kv = strtok_r(spec, ",", &save); kv; kv = strtok_r(NULL, ",", &save)) {
            char *eq = strchr(kv, '=');
            *eq = 0;
            Tessera__V1__FetchRow__KeysEntry *e = tsr_arena_alloc(&a, sizeof *e);
            tessera__v1__fetch_row__keys_entry__init(e);
            e->key = kv;
            tsr_value_t v = tsr_value_string(eq + 1, strlen(eq + 1));
            e->value = tsr_pb_value_new(&v, &a);
            r->keys[r->n_keys++] = e;
        }
        rq.rows[i] = r;
    }
    tsr_buf_clear(out);
    tsr_pb_pack(&rq.base, out);
    tsr_arena_free(&a);
}

static const Tessera__V1__Value *feature(const Tessera__V1__FetchResult *r, const char *name) {
    for (size_t i = 0; i < r->n_features; i++)
        if (strcmp(r->features[i]->key, name) == 0) return r->features[i]->value;
    return NULL;
}

typedef struct e2e {
    fworker_t w[3];
    fcoord_t leader, follower, lost;  /* lost: a follower that knows no leader */
    tsr_fetcher_t *f;
    tsr_rpc_client_t *cli;
    tsr_serving_t *ref;             /* single reads, same config: the expected answers */
    const char *addrs[3];
    char specs[48][64];
    const char *rows[48];
    tsr_buf_t req, want;
} e2e_t;

static table_spec_t spec_of(e2e_t *e, int64_t epoch, int64_t rev, const int *owners) {
    table_spec_t t = {epoch, rev, 3, e->addrs, 2, gbs2, 8, owners, "t.join.v1", join_json, 1};
    return t;
}

static unsigned owned_bits(const int *owners, int w) {
    unsigned b = 0;
    for (int p = 0; p < 8; p++)
        if (owners[p] == w) b |= 1u << p;
    return b;
}

static int g_rpc_threads; /* the fetcher's --rpc-threads in e2e_start (0: its default) */
static int g_rows = 48;   /* rows of e->req (at most 48) */

static void e2e_start(e2e_t *e) {
    memset(e, 0, sizeof *e);
    wh_setup();
    for (int i = 0; i < 3; i++) {
        worker_start(&e->w[i], owned_bits(owners8, i));
        e->addrs[i] = e->w[i].addr;
    }
    coord_start(&e->leader, NULL);
    coord_start(&e->follower, e->leader.addr);
    coord_start(&e->lost, "unknown (election in progress)");
    table_spec_t t = spec_of(e, 5, 1, owners8);
    coord_publish(&e->leader, &t);
    char coords[200];
    snprintf(coords, sizeof coords, "%s,%s,%s", e->lost.addr, e->follower.addr, e->leader.addr);
    tsr_fetcher_opts_t o;
    memset(&o, 0, sizeof o);
    o.coordinators = coords;
    o.listen = "127.0.0.1:0";
    o.http_port = 0;
    o.warehouse = wh;
    o.watch_renew_ms = 500;
    o.rpc_threads = g_rpc_threads;
    tsr_error_t err;
    ck_assert_msg(tsr_fetcher_start(&o, &e->f, &err) == 0, "%s", err.msg);
    ck_assert_msg(tsr_fetcher_wait_routing(e->f, 5, 1, 5000), "no routing table");
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", tsr_fetcher_grpc_port(e->f));
    e->cli = tsr_rpc_client_new(addr, &err);
    ck_assert_ptr_nonnull(e->cli);
    /* the reference */
    e->ref = tsr_serving_new(ref_read, NULL);
    tsr_config_options_t co = {0};
    co.warehouse = wh;
    tsr_diag_t d;
    tsr_diag_init(&d);
    tsr_config_t *c = NULL;
    ck_assert_int_eq(tsr_config_load_string(join_json, strlen(join_json), "t", &co, &c, &d), 0);
    tsr_diag_free(&d);
    tsr_serving_item_t *it;
    ck_assert_int_eq(tsr_serving_prepare(c, wh, 19723, &it, &err), 0);
    tsr_serving_install(e->ref, it);
    for (int i = 0; i < 48; i++) {
        if (i % 6) snprintf(e->specs[i], sizeof e->specs[i], "user=user-%d,shop=shop%d@%d", i, i * 7, 1000 + i);
        else snprintf(e->specs[i], sizeof e->specs[i], "user=u%d@%d", i, 1000 + i);
        e->rows[i] = e->specs[i];
    }
    tsr_buf_init(&e->req);
    tsr_buf_init(&e->want);
    request("t.join.v1", e->rows, (size_t)g_rows, &e->req);
    tsr_arena_t a;
    tsr_arena_init(&a, 4096);
    ck_assert_int_eq(tsr_serving_fetch_pb(e->ref, 1, e->req.data, e->req.len, INT64_MAX, &e->want, &a, &err), 0);
    tsr_arena_free(&a);
}

static void e2e_stop(e2e_t *e) {
    tsr_rpc_client_free(e->cli);
    tsr_fetcher_stop(e->f);
    for (int i = 0; i < 3; i++) tsr_rpc_server_free(e->w[i].srv);
    if (e->leader.srv) coord_stop(&e->leader);
    if (e->follower.srv) coord_stop(&e->follower);
    if (e->lost.srv) coord_stop(&e->lost);
    tsr_serving_free(e->ref);
    tsr_buf_free(&e->req);
    tsr_buf_free(&e->want);
    wh_teardown();
}

/* FetchJoin through the fetcher; returns the unpacked response (caller frees). */
static Tessera__V1__FetchResponse *fetch(e2e_t *e, tsr_rpc_reply_t *r) {
    tsr_rpc_call_opts_t o = {.timeout_ms = 5000};
    tsr_error_t err;
    int rc = tsr_rpc_client_call(e->cli, "/tessera.v1.FeatureService/FetchJoin", e->req.data, e->req.len, &o, r, &err);
    ck_assert_msg(rc == 0, "%s", err.msg);
    Tessera__V1__FetchResponse *resp = tessera__v1__fetch_response__unpack(NULL, r->body.len, r->body.data);
    ck_assert_ptr_nonnull(resp);
    return resp;
}

static int calls(e2e_t *e) {
    int n = 0;
    for (int i = 0; i < 3; i++) n += atomic_load(&e->w[i].calls);
    return n;
}

START_TEST(test_e2e_fetch) {
    e2e_t e;
    e2e_start(&e);
    tsr_rpc_reply_t r;
    tsr_rpc_reply_init(&r);
    /* a follower without a leader sent the fetcher on to the next address, whose follower
     * redirected it to the leader */
    ck_assert_int_ge(e.leader.watches, 1);

    /* answers equal single reads; one ReadPartition per owner; only owned partitions */
    Tessera__V1__FetchResponse *resp = fetch(&e, &r);
    ck_assert_msg(r.body.len == e.want.len && memcmp(r.body.data, e.want.data, r.body.len) == 0,
                  "answers differ from the reference");
    int nulls = 0;
    for (size_t i = 0; i < resp->n_results; i++) {
        /* rows 0, 6, 12, ... have no shop: that part's "missing key column" exception */
        if ((i % 6 && feature(resp->results[i], "s_exception")) || feature(resp->results[i], "t_by_user_v1_exception"))
            ck_abort_msg("row %zu: a part failed", i);
        nulls += feature(resp->results[i], "t_by_user_v1_v_count")->kind_case == TESSERA__V1__VALUE__KIND_NULL_VALUE;
    }
    ck_assert_int_gt(nulls, 0); /* keys with nothing stored: null features, no exception */
    tessera__v1__fetch_response__free_unpacked(resp, NULL);
    for (int i = 0; i < 3; i++) {
        ck_assert_int_eq(atomic_load(&e.w[i].calls), 1);
        ck_assert_int_gt(atomic_load(&e.w[i].items), 0);
        ck_assert_int_eq(atomic_load(&e.w[i].not_owner), 0);
    }
    ck_assert_int_eq(atomic_load(&e.w[0].items) + atomic_load(&e.w[1].items) + atomic_load(&e.w[2].items),
                     48 + 40); /* every row reads by user, 40 of them by shop too */

    /* parallel fan-out: three workers that each sleep 500 ms are all asleep at one moment
     * (each sleep begins before any ends), which reads sent one after another never are. An
     * overlap rather than a wall-clock bound: a loaded ASan run once took over 700 ms for
     * three 300 ms sleeps in parallel. */
    for (int i = 0; i < 3; i++) atomic_store(&e.w[i].sleep_ms, 500);
    int64_t t0 = mono_ms();
    resp = fetch(&e, &r);
    int64_t took = mono_ms() - t0;
    tessera__v1__fetch_response__free_unpacked(resp, NULL);
    ck_assert_msg(took >= 490, "fan-out took %lld ms", (long long)took);
    int64_t last_from = 0, first_to = INT64_MAX;
    for (int i = 0; i < 3; i++) {
        int64_t fr = atomic_load(&e.w[i].slept_from), to = atomic_load(&e.w[i].slept_to);
        ck_assert_int_gt(fr, 0);
        if (fr > last_from) last_from = fr;
        if (to < first_to) first_to = to;
    }
    ck_assert_msg(last_from < first_to, "the reads did not overlap: the last began %lld ms after the first ended",
                  (long long)(last_from - first_to));
    for (int i = 0; i < 3; i++) atomic_store(&e.w[i].sleep_ms, 0);

    /* HTTP: the same features */
    char body[] = "[{\"user\": \"user-1\", \"shop\": \"shop7\", \"at_millis\": 1001}]";
    thc_resp_t hr;
    memset(&hr, 0, sizeof hr);
    ck_assert_int_eq(thc_once((unsigned)tsr_fetcher_http_port(e.f), "POST", "/v1/fetch/join/t.join.v1", body, &hr), 0);
    ck_assert_int_eq(hr.status, 200);
    ck_assert_ptr_nonnull(strstr(hr.body, "\"double_sum\":"));
    ck_assert_ptr_null(strstr(hr.body, "_exception"));
    thc_resp_free(&hr);
    memset(&hr, 0, sizeof hr);
    ck_assert_int_eq(thc_once((unsigned)tsr_fetcher_http_port(e.f), "GET", "/health", NULL, &hr), 0);
    ck_assert_int_eq(hr.status, 200);
    thc_resp_free(&hr);

    /* the caller's deadline reaches the workers: one that takes 3 s does not hold a fetch
     * with a 300 ms deadline past it */
    atomic_store(&e.w[1].sleep_ms, 3000);
    tsr_rpc_call_opts_t o = {.timeout_ms = 300};
    tsr_error_t err;
    tsr_fetcher_stats_t st0, st1;
    tsr_fetcher_stats(e.f, &st0);
    t0 = mono_ms();
    int rc = tsr_rpc_client_call(e.cli, "/tessera.v1.FeatureService/FetchJoin", e.req.data, e.req.len, &o, &r, &err);
    took = mono_ms() - t0;
    ck_assert_int_eq(rc, TSR_ETIMEOUT);
    /* the fetcher's read of w1 gave up at the deadline (an error), not after 3 s (a value) */
    for (int i = 0; i < 500; i++) {
        tsr_fetcher_stats(e.f, &st1);
        if (st1.read_errors > st0.read_errors) break;
        sleep_ms(5);
    }
    took = mono_ms() - t0;
    ck_assert_uint_gt(st1.read_errors, st0.read_errors);
    ck_assert_msg(took < 2500, "the fetcher's read ended after %lld ms", (long long)took);

    tsr_rpc_reply_free(&r);
    e2e_stop(&e);
}
END_TEST

typedef struct publisher {
    fcoord_t *c;
    table_spec_t t;
    int after_ms;
} publisher_t;

static void *publish_later(void *p) {
    publisher_t *pb = p;
    sleep_ms(pb->after_ms);
    coord_publish(pb->c, &pb->t);
    return NULL;
}

START_TEST(test_e2e_moves_and_failures) {
    e2e_t e;
    e2e_start(&e);
    tsr_rpc_reply_t r;
    tsr_rpc_reply_init(&r);

    /* a table of a lower epoch (a deposed leader) is ignored: its owners would all be w2 */
    const int all_w2[] = {2, 2, 2, 2, 2, 2, 2, 2};
    table_spec_t old = spec_of(&e, 4, 99, all_w2);
    coord_publish(&e.leader, &old);
    table_spec_t t2 = spec_of(&e, 5, 2, owners8);
    sleep_ms(100);
    coord_publish(&e.leader, &t2);
    ck_assert(tsr_fetcher_wait_routing(e.f, 5, 2, 5000));
    tsr_fetcher_stats_t st;
    tsr_fetcher_stats(e.f, &st);
    ck_assert_int_eq(st.epoch, 5);
    Tessera__V1__FetchResponse *resp = fetch(&e, &r);
    tessera__v1__fetch_response__free_unpacked(resp, NULL);
    ck_assert_int_eq(atomic_load(&e.w[0].not_owner) + atomic_load(&e.w[1].not_owner), 0);
    ck_assert_int_eq(atomic_load(&e.w[2].not_owner), 0);

    /* worker 2's partitions move to worker 0 under a fetch: w2 answers NOT_OWNER (after
     * 150 ms), the new table arrives at 50 ms, the fetcher retries on it: same answers */
    const int moved[] = {0, 1, 0, 0, 1, 0, 0, 1};
    atomic_store(&e.w[0].owned, owned_bits(moved, 0));
    atomic_store(&e.w[2].owned, 0);
    atomic_store(&e.w[2].sleep_ms, 150);
    publisher_t pb = {&e.leader, spec_of(&e, 6, 1, moved), 50};
    pthread_t th;
    pthread_create(&th, NULL, publish_later, &pb);
    resp = fetch(&e, &r);
    pthread_join(th, NULL);
    ck_assert_msg(r.body.len == e.want.len && memcmp(r.body.data, e.want.data, r.body.len) == 0,
                  "answers after the move differ");
    tessera__v1__fetch_response__free_unpacked(resp, NULL);
    ck_assert_int_gt(atomic_load(&e.w[2].not_owner), 0);
    tsr_fetcher_stats(e.f, &st);
    ck_assert_int_gt(st.read_retries, 0);
    ck_assert_int_eq(st.epoch, 6);

    /* an unreachable owner (no newer table): only its reads fail, as part exceptions */
    tsr_rpc_server_free(e.w[1].srv);
    e.w[1].srv = NULL;
    int64_t t0 = mono_ms();
    resp = fetch(&e, &r);
    int64_t took = mono_ms() - t0;
    ck_assert_msg(took < 2000, "took %lld ms", (long long)took);
    int failed = 0, ok = 0;
    for (size_t i = 0; i < resp->n_results; i++) {
        const Tessera__V1__FetchResult *x = resp->results[i];
        ck_assert_int_eq(x->status, TESSERA__V1__ROW_STATUS__SUCCESS);
        const Tessera__V1__Value *ex = feature(x, "t_by_user_v1_exception");
        if (ex) {
            ck_assert_ptr_nonnull(strstr(ex->string_value, "worker w1"));
            ck_assert_int_eq(feature(x, "t_by_user_v1_v_count")->kind_case, TESSERA__V1__VALUE__KIND_NULL_VALUE);
            failed++;
        } else {
            const Tessera__V1__Value *c = feature(x, "t_by_user_v1_v_count");
            ck_assert(c->kind_case == TESSERA__V1__VALUE__KIND_NULL_VALUE || c->long_value == 3);
            ok++;
        }
    }
    ck_assert_int_gt(failed, 0);
    ck_assert_int_gt(ok, 0);
    tessera__v1__fetch_response__free_unpacked(resp, NULL);

    /* the coordinators go away: the last table keeps serving */
    coord_stop(&e.leader);
    coord_stop(&e.follower);
    sleep_ms(100);
    resp = fetch(&e, &r);
    ck_assert_int_eq(resp->results[1]->status, TESSERA__V1__ROW_STATUS__SUCCESS);
    tessera__v1__fetch_response__free_unpacked(resp, NULL);
    tsr_fetcher_stats(e.f, &st);
    ck_assert_int_eq(st.epoch, 6);
    ck_assert_int_gt(calls(&e), 0);

    tsr_rpc_reply_free(&r);
    e2e_stop(&e);
}
END_TEST

typedef struct hammer {
    e2e_t *e;
    atomic_int *stop;
    int fetches, wrong;
} hammer_t;

static void *hammer_main(void *p) {
    hammer_t *h = p;
    tsr_rpc_reply_t r;
    tsr_rpc_reply_init(&r);
    tsr_rpc_call_opts_t o = {.timeout_ms = 5000};
    for (int i = 0; i < 400 && !atomic_load(h->stop); i++) {
        if (tsr_rpc_client_call(h->e->cli, "/tessera.v1.FeatureService/FetchJoin", h->e->req.data, h->e->req.len,
                                &o, &r, NULL) != 0 ||
            r.body.len != h->e->want.len || memcmp(r.body.data, h->e->want.data, r.body.len) != 0)
            h->wrong++;
        h->fetches++;
    }
    tsr_rpc_reply_free(&r);
    return NULL;
}

/* Fetches from four threads while tables keep changing (owners rotate, the config's version
 * grows so its plan is recompiled and swapped under running fetches): every answer is right
 * (every worker owns every partition here, so any table routes correctly). */
static void e2e_concurrent(void) {
    e2e_t e;
    e2e_start(&e);
    for (int i = 0; i < 3; i++) atomic_store(&e.w[i].owned, 0xffu);
    atomic_int stop;
    atomic_init(&stop, 0);
    hammer_t h[4];
    pthread_t th[4];
    for (int i = 0; i < 4; i++) {
        h[i] = (hammer_t){&e, &stop, 0, 0};
        pthread_create(&th[i], NULL, hammer_main, &h[i]);
    }
    int owners[8];
    for (int rev = 2; rev < 40; rev++) {
        for (int p = 0; p < 8; p++) owners[p] = (p + rev) % 3;
        table_spec_t t = spec_of(&e, 5, rev, owners);
        t.config_version = 1 + rev / 4;
        coord_publish(&e.leader, &t);
        sleep_ms(10);
    }
    ck_assert(tsr_fetcher_wait_routing(e.f, 5, 39, 5000));
    atomic_store(&stop, 1);
    int fetches = 0, wrong = 0;
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        fetches += h[i].fetches;
        wrong += h[i].wrong;
    }
    ck_assert_int_gt(fetches, 8);
    ck_assert_msg(wrong == 0, "%d of %d answers wrong", wrong, fetches);
    tsr_fetcher_stats_t st;
    tsr_fetcher_stats(e.f, &st);
    ck_assert_int_eq(st.revision, 39);
    ck_assert_uint_eq(st.items, 1);
    /* the config leaves the table: its item is removed, fetches of it are NOT_FOUND */
    table_spec_t t = spec_of(&e, 5, 40, owners);
    t.config_name = NULL;
    coord_publish(&e.leader, &t);
    ck_assert(tsr_fetcher_wait_routing(e.f, 5, 40, 5000));
    tsr_fetcher_stats(e.f, &st);
    ck_assert_uint_eq(st.items, 0);
    tsr_rpc_reply_t r;
    tsr_rpc_reply_init(&r);
    tsr_rpc_call_opts_t o = {.timeout_ms = 5000};
    ck_assert_int_eq(tsr_rpc_client_call(e.cli, "/tessera.v1.FeatureService/FetchJoin", e.req.data, e.req.len, &o,
                                         &r, NULL), TSR_ENOTFOUND);
    tsr_rpc_reply_free(&r);
    e2e_stop(&e);
}

START_TEST(test_e2e_concurrent) {
    g_rpc_threads = 0; /* 4 CQ threads: up to 3 fetches of 48 rows inline, the rest offloaded */
    g_rows = 48;
    e2e_concurrent();
}
END_TEST

/* The same with one CQ thread: every fetch of 48 rows runs on the server's offload threads. */
START_TEST(test_e2e_concurrent_offloaded) {
    g_rpc_threads = 1;
    g_rows = 48;
    e2e_concurrent();
}
END_TEST

/* One CQ thread and fetches of 4 rows (at most SMALL_ROWS): every one starts on that thread
 * and is answered by it from its fan-out's replies, none waits for an offload thread. */
START_TEST(test_e2e_concurrent_small_one_thread) {
    g_rpc_threads = 1;
    g_rows = 4;
    e2e_concurrent();
    g_rows = 48;
}
END_TEST

static Suite *fetcher_suite(void) {
    Suite *s = suite_create("fetcher");
    TCase *tc = tcase_create("fetcher");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_routing_order);
    tcase_add_test(tc, test_routing_locate);
    tcase_add_test(tc, test_e2e_fetch);
    tcase_add_test(tc, test_e2e_moves_and_failures);
    tcase_add_test(tc, test_e2e_concurrent);
    tcase_add_test(tc, test_e2e_concurrent_offloaded);
    tcase_add_test(tc, test_e2e_concurrent_small_one_thread);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return tsr_test_run(fetcher_suite()); }
