/*
 * host.c — GroupBy states, their ingests, uploads and reads on one node (host.h).
 */
#include "tsr/host.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tsr/log.h"
#include "tsr/partfile.h"
#include "tsr/time.h"

struct tsr_host {
    tsr_host_opts_t o;
    char *data_dir, *warehouse, *kafka, *component;
    tsr_tile_store_t *store;
    tsr_entity_store_t *entities;
    pthread_rwlock_t ent_lock;      /* the hosted names, read by every fetch */
    struct hosted {
        char *name;
        int entity;
        size_t nout;                /* tile GroupBys: outputs of a read */
    } *hosted;
    size_t nent, capent;
    tsr_host_gb_t **gbs;
    size_t ngbs, capgbs;
    tsr_metric_family_t *f_msgs, *f_events, *f_bad, *f_late, *f_skipped, *f_misrouted, *f_lag,
        *f_batch_end;
    struct cache_metrics {      /* the tile store's batch [0] and stream [1] record caches */
        tsr_counter_t *hits, *misses;
        tsr_gauge_t *bytes;
        tsr_tile_cache_stats_t last;
    } cm[2];
};

#define logf_(h, ...)                                                                              \
    do {                                                                                           \
        if ((h)->o.log) tsr_log(TSR_LOG_INFO, (h)->component, __VA_ARGS__);                        \
    } while (0)

static int64_t now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

static void metrics_init(tsr_host_t *h) {
    tsr_metrics_t *m = h->o.metrics;
    if (!m) return;
    const char *lb[2] = {"group_by", "topic"};
    const char *lg[1] = {"group_by"};
    h->f_msgs = tsr_metrics_counter_family(m, "tessera_ingest_messages_total",
                                           "Kafka messages consumed (good or bad)", lb, 2, NULL);
    h->f_events = tsr_metrics_counter_family(m, "tessera_ingest_events_total",
                                             "events folded into tiles", lb, 2, NULL);
    h->f_bad = tsr_metrics_counter_family(m, "tessera_ingest_bad_messages_total",
                                          "malformed messages skipped", lb, 2, NULL);
    h->f_late = tsr_metrics_counter_family(m, "tessera_ingest_late_events_total",
                                           "events dropped as later than the allowed lateness", lb, 2, NULL);
    h->f_skipped = tsr_metrics_counter_family(m, "tessera_ingest_skipped_events_total",
                                              "events older than the upload's batch end (covered by it)",
                                              lb, 2, NULL);
    h->f_misrouted = tsr_metrics_counter_family(m, "tessera_ingest_misrouted_events_total",
                                                "events whose key belongs to another partition (skipped)",
                                                lb, 2, NULL);
    h->f_lag = tsr_metrics_gauge_family(m, "tessera_consumer_lag",
                                        "messages behind the high watermarks", lb, 2, NULL);
    h->f_batch_end = tsr_metrics_gauge_family(m, "tessera_upload_batch_end_millis",
                                              "batch end B of the serving upload (0: none)", lg, 1, NULL);
    static const char *const kind[2] = {"batch", "stream"};
    for (int i = 0; i < 2; i++) {
        char name[64], help[128];
        snprintf(name, sizeof name, "tessera_tile_%s_cache_hits_total", kind[i]);
        snprintf(help, sizeof help, "%s records read from the %s record cache", kind[i], kind[i]);
        h->cm[i].hits = tsr_metrics_counter(m, name, help, NULL);
        snprintf(name, sizeof name, "tessera_tile_%s_cache_misses_total", kind[i]);
        snprintf(help, sizeof help, "%s records not in the %s record cache (read from RocksDB)", kind[i], kind[i]);
        h->cm[i].misses = tsr_metrics_counter(m, name, help, NULL);
        snprintf(name, sizeof name, "tessera_tile_%s_cache_bytes", kind[i]);
        snprintf(help, sizeof help, "memory held by the %s record cache", kind[i]);
        h->cm[i].bytes = tsr_metrics_gauge(m, name, help, NULL);
    }
}

int tsr_host_open(const tsr_host_opts_t *o, tsr_host_t **out, tsr_error_t *err) {
    *out = NULL;
    tsr_host_t *h = tsr_calloc(1, sizeof *h);
    h->o = *o;
    h->data_dir = tsr_strdup(o->data_dir);
    h->warehouse = tsr_strdup(o->warehouse ? o->warehouse : "");
    h->kafka = o->kafka_bootstrap && o->kafka_bootstrap[0] ? tsr_strdup(o->kafka_bootstrap) : NULL;
    h->component = tsr_strdup(o->component ? o->component : "host");
    h->o.data_dir = h->data_dir;
    h->o.warehouse = h->warehouse;
    h->o.kafka_bootstrap = h->kafka;
    h->o.component = h->component;
    pthread_rwlock_init(&h->ent_lock, NULL);
    metrics_init(h);
    char path[4096];
    snprintf(path, sizeof path, "%s/entities", h->data_dir);
    int rc = tsr_entity_store_open(path, &h->entities, err);
    if (rc == 0) {
        snprintf(path, sizeof path, "%s/tiles", h->data_dir);
        rc = tsr_tile_store_open(path, &h->store, err);
    }
    if (rc) {
        tsr_host_close(h);
        return rc;
    }
    *out = h;
    return 0;
}

void tsr_host_stop_ingests(tsr_host_t *h) {
    for (size_t i = 0; i < h->ngbs; i++) tsr_host_gb_stop_ingests(h->gbs[i]);
}

void tsr_host_close(tsr_host_t *h) {
    if (!h) return;
    tsr_host_stop_ingests(h);
    /* the store's last flush still runs the GroupBys' kernels: close it before freeing them */
    tsr_tile_store_close(h->store);
    for (size_t i = 0; i < h->ngbs; i++) tsr_host_gb_free(h->gbs[i]);
    free(h->gbs);
    tsr_entity_store_close(h->entities);
    for (size_t i = 0; i < h->nent; i++) free(h->hosted[i].name);
    free(h->hosted);
    pthread_rwlock_destroy(&h->ent_lock);
    free(h->data_dir);
    free(h->warehouse);
    free(h->kafka);
    free(h->component);
    free(h);
}

tsr_tile_store_t *tsr_host_tile_store(tsr_host_t *h) { return h->store; }
tsr_entity_store_t *tsr_host_entity_store(tsr_host_t *h) { return h->entities; }
const char *tsr_host_warehouse(const tsr_host_t *h) { return h->warehouse; }

/* ------------------------------------------------------------------------------------------
 * configs */

int tsr_host_load_conf(tsr_host_t *h, const char *text, size_t n, const char *label,
                       tsr_config_t **out, tsr_error_t *err) {
    return tsr_served_load_conf(h->warehouse, text, n, label, out, err);
}

/* ------------------------------------------------------------------------------------------
 * GroupBy states */

int tsr_host_gb_new(tsr_host_t *h, const char *text, size_t n, const char *label, int idx,
                    tsr_host_gb_t **out, tsr_error_t *err) {
    *out = NULL;
    tsr_config_t *conf;
    int rc = tsr_host_load_conf(h, text, n, label, &conf, err);
    if (rc) return rc;
    const tsr_conf_group_by_t *gbs[TSR_HOST_MAX_PARTS];
    size_t ng = tsr_served_group_bys(conf, gbs, TSR_HOST_MAX_PARTS);
    size_t i = idx < 0 ? 0 : (size_t)idx;
    if (i >= ng || (idx < 0 && conf->kind != TSR_CONF_GROUP_BY)) {
        tsr_config_free(conf);
        return tsr_error_set(err, TSR_EINVAL, "%s: no GroupBy %d in this config", label, idx);
    }
    tsr_gb_online_t *plan = NULL;
    int entity = tsr_served_is_entity(gbs[i]);
    if (!entity) rc = tsr_gb_online_build(gbs[i], h->warehouse, tsr_day_of_ms(now_ms()), &plan, err);
    if (rc) {
        tsr_config_free(conf);
        return rc;
    }
    tsr_host_gb_t *st = tsr_calloc(1, sizeof(*st));
    st->name = tsr_strdup(gbs[i]->meta.name);
    st->fp = tsr_served_fingerprint(gbs[i]);
    st->conf = conf;
    st->g = gbs[i];
    st->plan = plan;
    st->entity = entity;
    *out = st;
    return 0;
}

/* Adds what a consumer about to stop applied to its slot's per-partition counts. */
static void keep_events(const tsr_host_gb_t *st, tsr_host_ingest_t *sl) {
    for (size_t k = 0; k < st->nparts; k++) {
        int32_t p = st->parts[k];
        int64_t ev, lag;
        if (p < 0 || tsr_ingest_partition_stats(sl->in, p, &ev, &lag) != 0 || ev <= 0) continue;
        if ((size_t)p >= sl->nev_done) {
            size_t n = (size_t)p + 1;
            sl->ev_done = tsr_realloc(sl->ev_done, n * sizeof *sl->ev_done);
            memset(sl->ev_done + sl->nev_done, 0, (n - sl->nev_done) * sizeof *sl->ev_done);
            sl->nev_done = n;
        }
        sl->ev_done[p] += ev;
    }
}

void tsr_host_gb_stop_ingests(tsr_host_gb_t *st) {
    for (size_t i = 0; i < st->ning; i++) {
        if (st->ing[i].in && st->partitioned) keep_events(st, &st->ing[i]);
        tsr_ingest_stop(st->ing[i].in);
        st->ing[i].in = NULL;
    }
}

int tsr_host_partition_stats(const tsr_host_gb_t *st, int32_t p, int64_t *events, int64_t *lag) {
    int found = 0;
    *events = 0;
    *lag = -1;
    for (size_t i = 0; i < st->ning; i++) {
        const tsr_host_ingest_t *sl = &st->ing[i];
        if (p >= 0 && (size_t)p < sl->nev_done && sl->ev_done[p]) {
            *events += sl->ev_done[p];
            found = 1;
        }
        int64_t ev, lg;
        if (sl->in && tsr_ingest_partition_stats(sl->in, p, &ev, &lg) == 0) {
            *events += ev;
            if (lg >= 0) *lag = (*lag < 0 ? 0 : *lag) + lg;
            found = 1;
        }
    }
    return found ? 0 : TSR_ENOTFOUND;
}

void tsr_host_gb_free(tsr_host_gb_t *st) {
    if (!st) return;
    tsr_host_gb_stop_ingests(st);
    for (size_t i = 0; i < st->ning; i++) free(st->ing[i].ev_done);
    tsr_gb_online_free(st->plan);
    tsr_config_free(st->conf);
    free(st->parts);
    free(st->name);
    free(st->fp);
    free(st);
}

void tsr_host_gb_start_ingests(tsr_host_t *h, tsr_host_gb_t *st) {
    if (!h->kafka || st->entity) return;
    if (st->partitioned && st->nparts == 0) return;
    size_t nsrc = tsr_gb_online_nsources(st->plan);
    size_t k = 0;
    for (size_t i = 0; i < nsrc && k < TSR_HOST_MAX_INGESTS; i++) {
        char topic[256];
        if (!tsr_gb_online_topic(st->plan, i, topic, sizeof topic)) continue;
        tsr_host_ingest_t *slot = &st->ing[k++];
        if (slot->in) continue;
        tsr_ingest_opts_t io;
        memset(&io, 0, sizeof io);
        io.bootstrap = h->kafka;
        io.store = h->store;
        io.plan = st->plan;
        io.source = i;
        io.allowed_lateness_ms = h->o.allowed_lateness_ms;
        io.log = h->o.log;
        if (st->partitioned) {
            io.partitions = st->parts;
            io.npartitions = st->nparts;
            io.nkeys = st->g->n_keys;
            io.start_time_ms = st->start_time_ms;
        }
        tsr_error_t e;
        tsr_error_clear(&e);
        if (tsr_ingest_start(&io, &slot->in, &e)) {
            logf_(h, "%s: cannot stream %s: %s", st->name, topic, e.msg);
            continue;
        }
        if (!slot->messages && h->f_msgs) {
            const char *lv[2] = {st->name, topic};
            slot->messages = tsr_metric_counter(h->f_msgs, lv);
            slot->events = tsr_metric_counter(h->f_events, lv);
            slot->bad = tsr_metric_counter(h->f_bad, lv);
            slot->late = tsr_metric_counter(h->f_late, lv);
            slot->skipped = tsr_metric_counter(h->f_skipped, lv);
            slot->misrouted = tsr_metric_counter(h->f_misrouted, lv);
            slot->lag = tsr_metric_gauge(h->f_lag, lv);
        }
        if (st->partitioned)
            logf_(h, "streaming %s from topic %s (%zu partitions)", st->name, topic, st->nparts);
        else
            logf_(h, "streaming %s from topic %s", st->name, topic);
    }
    if (k > st->ning) st->ning = k;
}

int tsr_host_add(tsr_host_t *h, tsr_host_gb_t *st, tsr_error_t *err) {
    size_t nout = 0;
    if (!st->entity) {
        const tsr_tile_gb_t *tiles = tsr_gb_online_tiles(st->plan);
        int rc = tsr_tile_store_register(h->store, tiles, err);
        if (rc) return rc;
        for (size_t c = 0; c < tiles->ncols; c++) nout += tiles->cols[c].nwin; /* what tsr_tile_store_read fills */
    }
    pthread_rwlock_wrlock(&h->ent_lock);
    if (h->nent == h->capent) {
        h->capent = h->capent ? 2 * h->capent : 16;
        h->hosted = tsr_realloc(h->hosted, h->capent * sizeof(*h->hosted));
    }
    h->hosted[h->nent++] = (struct hosted){tsr_strdup(st->name), st->entity, nout};
    pthread_rwlock_unlock(&h->ent_lock);
    if (h->ngbs == h->capgbs) {
        h->capgbs = h->capgbs ? 2 * h->capgbs : 16;
        h->gbs = tsr_realloc(h->gbs, h->capgbs * sizeof(*h->gbs));
    }
    h->gbs[h->ngbs++] = st;
    if (h->f_batch_end) {
        const char *lv[1] = {st->name};
        st->batch_end = tsr_metric_gauge(h->f_batch_end, lv);
        int64_t b = tsr_host_batch_end(h, st);
        tsr_gauge_set(st->batch_end, b == INT64_MIN ? 0 : (double)b);
    }
    tsr_host_gb_start_ingests(h, st);
    return 0;
}

tsr_host_gb_t *tsr_host_find(tsr_host_t *h, const char *name) {
    for (size_t i = 0; i < h->ngbs; i++)
        if (strcmp(h->gbs[i]->name, name) == 0) return h->gbs[i];
    return NULL;
}

size_t tsr_host_count(const tsr_host_t *h) { return h->ngbs; }
tsr_host_gb_t *tsr_host_at(tsr_host_t *h, size_t i) { return i < h->ngbs ? h->gbs[i] : NULL; }

void tsr_host_gb_set_partitions(tsr_host_t *h, tsr_host_gb_t *st, const int32_t *parts, size_t n,
                                int64_t start_time_ms) {
    tsr_host_gb_stop_ingests(st);
    free(st->parts);
    st->parts = tsr_malloc((n ? n : 1) * sizeof(int32_t));
    if (n) memcpy(st->parts, parts, n * sizeof(int32_t));
    st->nparts = n;
    st->partitioned = 1;
    st->start_time_ms = start_time_ms;
    int hosted = 0;
    for (size_t i = 0; i < h->ngbs && !hosted; i++) hosted = h->gbs[i] == st;
    if (hosted && n) tsr_host_gb_start_ingests(h, st);
}

int64_t tsr_host_batch_end(tsr_host_t *h, const tsr_host_gb_t *st) {
    return st->entity ? tsr_entity_store_batch_end(h->entities, st->name)
                      : tsr_tile_store_batch_end(h->store, st->name);
}

void tsr_host_note_batch_end(tsr_host_t *h, const char *name, int64_t batch_end) {
    tsr_host_gb_t *st = tsr_host_find(h, name);
    if (st && st->batch_end) tsr_gauge_set(st->batch_end, (double)batch_end);
}

void tsr_host_collect(tsr_host_t *h) {
    for (int i = 0; i < 2; i++) {
        struct cache_metrics *cm = &h->cm[i];
        if (!h->store || !cm->hits || !cm->misses || !cm->bytes) continue;
        tsr_tile_cache_stats_t st;
        if (i == 0) tsr_tile_store_batch_cache_stats(h->store, &st);
        else tsr_tile_store_stream_cache_stats(h->store, &st);
        tsr_counter_add(cm->hits, st.hits - cm->last.hits);
        tsr_counter_add(cm->misses, st.misses - cm->last.misses);
        tsr_gauge_set(cm->bytes, (double)st.bytes);
        cm->last = st;
    }
    for (size_t i = 0; i < h->ngbs; i++) {
        tsr_host_gb_t *st = h->gbs[i];
        for (size_t k = 0; k < st->ning; k++) {
            tsr_host_ingest_t *sl = &st->ing[k];
            if (!sl->in || !sl->messages) continue;
            tsr_ingest_stats_t is;
            tsr_ingest_stats(sl->in, &is);
            /* a restarted ingest counts from zero again */
            if (is.messages < sl->last.messages) memset(&sl->last, 0, sizeof sl->last);
            tsr_counter_add(sl->messages, is.messages - sl->last.messages);
            tsr_counter_add(sl->events, is.events - sl->last.events);
            tsr_counter_add(sl->bad, is.bad - sl->last.bad);
            tsr_counter_add(sl->late, is.late - sl->last.late);
            tsr_counter_add(sl->skipped, is.skipped - sl->last.skipped);
            tsr_counter_add(sl->misrouted, is.misrouted - sl->last.misrouted);
            tsr_gauge_set(sl->lag, (double)is.lag);
            sl->last = is;
        }
    }
}

/* ------------------------------------------------------------------------------------------
 * reads */

/* 1 entity, 0 tiles (*nout outputs), -1 not hosted. */
static int hosted_kind(tsr_host_t *h, const char *gb, size_t *nout) {
    int kind = -1;
    pthread_rwlock_rdlock(&h->ent_lock);
    for (size_t i = 0; i < h->nent; i++)
        if (strcmp(h->hosted[i].name, gb) == 0) {
            kind = h->hosted[i].entity;
            if (nout) *nout = h->hosted[i].nout;
            break;
        }
    pthread_rwlock_unlock(&h->ent_lock);
    return kind;
}

/* An entity GroupBy's stored values decoded into out (at most cap; cap 0 = unbounded). */
static int entity_read(tsr_host_t *h, const char *gb, const void *key, size_t klen,
                       tsr_value_t *out, size_t cap, size_t *n, tsr_arena_t *arena, tsr_error_t *err) {
    *n = 0;
    tsr_buf_t v;
    tsr_buf_init(&v);
    int rc = tsr_entity_store_get(h->entities, gb, key, klen, &v, err);
    if (rc == 1) {
        /* decoded strings point into their bytes: keep them in the request's arena */
        void *bytes = tsr_arena_alloc(arena, v.len ? v.len : 1);
        memcpy(bytes, v.data, v.len);
        tsr_reader_t rd;
        tsr_reader_init(&rd, bytes, v.len);
        for (size_t i = 0; tsr_reader_left(&rd) > 0 && (cap == 0 || i < cap); i++) {
            if (tsr_value_decode(&rd, arena, &out[i]) != 0) {
                rc = tsr_error_set(err, TSR_ECORRUPT, "%s: corrupt stored entity values", gb);
                break;
            }
            *n = i + 1;
        }
    }
    tsr_buf_free(&v);
    return rc < 0 ? rc : 0;
}

int tsr_host_read(void *ud, const char *gb, const void *key, size_t klen, int64_t q,
                  tsr_value_t *out, tsr_arena_t *arena, tsr_error_t *err) {
    tsr_host_t *h = ud;
    if (hosted_kind(h, gb, NULL) != 1) return tsr_tile_store_read(h->store, gb, key, klen, q, out, arena, err);
    size_t n;
    return entity_read(h, gb, key, klen, out, 0, &n, arena, err);
}

int tsr_host_read_many(tsr_host_t *h, tsr_tile_store_req_t *reqs, size_t n, tsr_arena_t *arena,
                       tsr_error_t *err) {
    /* entity reads one by one; every tile read in one tsr_tile_store_read_many */
    size_t ntiles = 0;
    uint8_t *is_entity = tsr_arena_alloc(arena, n ? n : 1);
    for (size_t i = 0; i < n; i++) {
        is_entity[i] = hosted_kind(h, reqs[i].gb, NULL) == 1;
        if (!is_entity[i]) {
            ntiles++;
            continue;
        }
        tsr_error_t e;
        size_t got;
        reqs[i].status = entity_read(h, reqs[i].gb, reqs[i].key, reqs[i].klen, reqs[i].out, 0, &got, arena, &e);
        reqs[i].error = reqs[i].status ? tsr_arena_strdup(arena, e.msg) : NULL;
    }
    if (ntiles == n) return tsr_tile_store_read_many(h->store, reqs, n, arena, err);
    if (ntiles == 0) return 0;
    tsr_tile_store_req_t *t = tsr_arena_alloc(arena, ntiles * sizeof *t);
    for (size_t i = 0, j = 0; i < n; i++)
        if (!is_entity[i]) t[j++] = reqs[i];
    int rc = tsr_tile_store_read_many(h->store, t, ntiles, arena, err);
    for (size_t i = 0, j = 0; i < n && rc == 0; i++)
        if (!is_entity[i]) {
            reqs[i].status = t[j].status;
            reqs[i].error = t[j].error;
            j++;
        }
    return rc;
}

int tsr_host_read_values(tsr_host_t *h, const char *gb, const void *key, size_t klen, int64_t q,
                         tsr_value_t **out, size_t *n, tsr_arena_t *arena, tsr_error_t *err) {
    *out = NULL;
    *n = 0;
    size_t cnt = 0;
    int kind = hosted_kind(h, gb, &cnt);
    if (kind < 0) return tsr_error_set(err, TSR_ENOTFOUND, "GroupBy %s is not hosted here", gb);
    if (kind == 1) {
        /* the stored values say how many there are: count them first */
        tsr_buf_t v;
        tsr_buf_init(&v);
        int rc = tsr_entity_store_get(h->entities, gb, key, klen, &v, err);
        cnt = 0;
        if (rc == 1) {
            tsr_arena_t tmp;
            tsr_arena_init(&tmp, 4096);
            tsr_reader_t rd;
            tsr_reader_init(&rd, v.data, v.len);
            tsr_value_t x;
            while (tsr_reader_left(&rd) > 0 && tsr_value_decode(&rd, &tmp, &x) == 0) cnt++;
            tsr_arena_free(&tmp);
        }
        tsr_buf_free(&v);
        if (rc < 0) return rc;
        *out = tsr_arena_alloc(arena, (cnt ? cnt : 1) * sizeof(tsr_value_t));
        return cnt ? entity_read(h, gb, key, klen, *out, cnt, n, arena, err) : 0;
    }
    *out = tsr_arena_alloc(arena, (cnt ? cnt : 1) * sizeof(tsr_value_t));
    int rc = tsr_tile_store_read(h->store, gb, key, klen, q, *out, arena, err);
    if (rc == 0) *n = cnt;
    return rc;
}

void tsr_host_read_values_many(tsr_host_t *h, tsr_host_vread_t *reads, size_t n, tsr_arena_t *arena) {
    tsr_tile_store_req_t *t = tsr_arena_alloc(arena, (n ? n : 1) * sizeof *t);
    size_t *at = tsr_arena_alloc(arena, (n ? n : 1) * sizeof *at);
    size_t nt = 0;
    for (size_t i = 0; i < n; i++) {
        tsr_host_vread_t *r = &reads[i];
        r->values = NULL;
        r->nvalues = 0;
        r->status = 0;
        r->error = NULL;
        size_t cnt = 0;
        int kind = hosted_kind(h, r->gb, &cnt);
        if (kind != 0) { /* entity GroupBys (or unknown ones: the error) one by one */
            tsr_error_t e;
            r->status = tsr_host_read_values(h, r->gb, r->key, r->klen, r->q, &r->values, &r->nvalues, arena, &e);
            if (r->status) r->error = tsr_arena_strdup(arena, e.msg);
            continue;
        }
        r->values = tsr_arena_alloc(arena, (cnt ? cnt : 1) * sizeof(tsr_value_t));
        for (size_t k = 0; k < cnt; k++) r->values[k] = tsr_value_null();
        r->nvalues = cnt;
        t[nt] = (tsr_tile_store_req_t){r->gb, r->key, r->klen, r->q, r->values, 0, NULL};
        at[nt++] = i;
    }
    if (nt == 0) return;
    tsr_error_t err;
    int rc = tsr_tile_store_read_many(h->store, t, nt, arena, &err);
    for (size_t j = 0; j < nt; j++) {
        tsr_host_vread_t *r = &reads[at[j]];
        r->status = rc ? rc : t[j].status;
        r->error = rc ? tsr_arena_strdup(arena, err.msg) : t[j].error;
        if (r->status) r->nvalues = 0;
    }
}

/* ------------------------------------------------------------------------------------------
 * batch state */

int tsr_host_batch_compute(const tsr_conf_group_by_t *g, int entity, int64_t E,
                           const char *warehouse, tsr_batch_sink_fn tile_sink,
                           tsr_entity_sink_fn entity_sink, void *ud, tsr_error_t *err) {
    tsr_backfill_opts_t bo;
    memset(&bo, 0, sizeof bo);
    bo.warehouse = warehouse;
    bo.parallelism = 0;
    if (entity) return tsr_entity_batch_compute(g, E, &bo, entity_sink, ud, NULL, err);
    tsr_gb_online_t *plan = NULL;
    int rc = tsr_gb_online_build(g, warehouse, E, &plan, err);
    if (rc == 0) rc = tsr_batch_compute(plan, (E + 1) * TSR_MS_PER_DAY, &bo, tile_sink, ud, err);
    tsr_gb_online_free(plan);
    return rc;
}

typedef struct upload_sink {
    const int *stop;
    tsr_tile_upload_t *u;
    tsr_entity_upload_t *eu;
    tsr_buf_t last;
    uint64_t keys;
    tsr_error_t *err;
} upload_sink_t;

static int sink_stopped(upload_sink_t *k) {
    if (!k->stop || !__atomic_load_n(k->stop, __ATOMIC_ACQUIRE)) return 0;
    return tsr_error_set(k->err, TSR_EUNAVAIL, "server is shutting down");
}

static int upload_put(void *ud, const void *key, size_t klen, tsr_tile_kind_t kind, int64_t start,
                      const void *const *irs) {
    upload_sink_t *k = ud;
    int rc = sink_stopped(k);
    if (rc) return rc;
    if (k->last.len != klen || memcmp(k->last.data, key, klen) != 0) {
        k->keys++;
        tsr_buf_clear(&k->last);
        tsr_buf_append(&k->last, key, klen);
    }
    return tsr_tile_upload_put(k->u, key, klen, kind, start, irs, k->err);
}

static int entity_put(void *ud, const void *key, size_t klen, const void *vals, size_t vlen) {
    upload_sink_t *k = ud;
    int rc = sink_stopped(k);
    if (rc) return rc;
    k->keys++;
    return tsr_entity_upload_put(k->eu, key, klen, vals, vlen, k->err);
}

int tsr_host_upload(tsr_host_t *h, const tsr_conf_group_by_t *g, int entity, int64_t E,
                    const char *warehouse, const int *stop, uint64_t *keys, tsr_error_t *err) {
    int64_t B = (E + 1) * TSR_MS_PER_DAY;
    upload_sink_t k;
    memset(&k, 0, sizeof k);
    k.stop = stop;
    k.err = err;
    tsr_buf_init(&k.last);
    int rc;
    if (entity) {
        rc = tsr_entity_upload_begin(h->entities, g->meta.name, B, &k.eu, err);
        if (rc == 0) {
            rc = tsr_host_batch_compute(g, 1, E, warehouse, NULL, entity_put, &k, err);
            if (rc == 0) rc = tsr_entity_upload_commit(k.eu, err);
            else tsr_entity_upload_abort(k.eu);
        }
    } else {
        rc = tsr_tile_upload_begin(h->store, g->meta.name, B, &k.u, err);
        if (rc == 0) {
            rc = tsr_host_batch_compute(g, 0, E, warehouse, upload_put, NULL, &k, err);
            if (rc == 0) rc = tsr_tile_upload_commit(k.u, err);
            else tsr_tile_upload_abort(k.u);
        }
    }
    tsr_buf_free(&k.last);
    if (keys) *keys = k.keys;
    return rc;
}

/* Puts one part file's records into the upload in hand. */
static int load_one(tsr_host_t *h, tsr_host_gb_t *st, const char *path, int64_t batch_end,
                    int32_t p, tsr_tile_upload_t *u, tsr_entity_upload_t *eu, void **irs,
                    uint64_t *keys, tsr_error_t *err) {
    (void)h;
    tsr_partfile_reader_t *r;
    int rc = tsr_partfile_open(path, &r, err);
    if (rc) return rc;
    const tsr_partfile_header_t *hd = tsr_partfile_header(r);
    const tsr_tile_gb_t *tiles = st->entity ? NULL : tsr_gb_online_tiles(st->plan);
    if (strcmp(hd->group_by, st->name) != 0 || hd->partition != p || hd->batch_end != batch_end ||
        hd->kind != (st->entity ? TSR_PARTFILE_ENTITY : TSR_PARTFILE_TILES) ||
        (tiles && hd->ncols != tiles->ncols))
        rc = tsr_error_set(err, TSR_ECORRUPT,
                           "%s: holds %s partition %d of B=%lld (%u columns), expected %s partition "
                           "%d of B=%lld",
                           path, hd->group_by, (int)hd->partition, (long long)hd->batch_end,
                           (unsigned)hd->ncols, st->name, (int)p, (long long)batch_end);
    tsr_partfile_rec_t rec;
    tsr_buf_t last;
    tsr_buf_init(&last);
    while (rc == 0 && (rc = tsr_partfile_next(r, &rec, err)) == 1) {
        rc = 0;
        if (last.len != rec.klen || memcmp(last.data, rec.key, rec.klen) != 0) {
            (*keys)++;
            tsr_buf_clear(&last);
            tsr_buf_append(&last, rec.key, rec.klen);
        }
        if (eu) {
            rc = tsr_entity_upload_put(eu, rec.key, rec.klen, rec.vals, rec.vlen, err);
            continue;
        }
        size_t c = 0;
        for (; c < tiles->ncols && rc == 0; c++) {
            const tsr_agg_t *a = tiles->cols[c].agg;
            tsr_agg_init(a, irs[c]);
            rc = tsr_agg_decode(a, irs[c], rec.irs[c], rec.ir_lens[c], err);
            if (rc) tsr_error_prefix(err, "%s: record %llu column %zu", path, (unsigned long long)*keys, c);
        }
        if (rc == 0) rc = tsr_tile_upload_put(u, rec.key, rec.klen, rec.kind, rec.start,
                                              (const void *const *)irs, err);
        for (size_t i = 0; i < c; i++) tsr_agg_clear(tiles->cols[i].agg, irs[i]);
    }
    tsr_buf_free(&last);
    tsr_partfile_close(r);
    return rc;
}

int tsr_host_load_parts(tsr_host_t *h, tsr_host_gb_t *st, const char *dir, int64_t batch_end,
                        const int32_t *parts, size_t n, uint64_t *keys, tsr_error_t *err) {
    *keys = 0;
    tsr_tile_upload_t *u = NULL;
    tsr_entity_upload_t *eu = NULL;
    void **irs = NULL;
    int rc;
    if (st->entity) {
        /* added in place when batch_end is already served, as the tiles below */
        rc = tsr_entity_upload_begin_add(h->entities, st->name, batch_end, &eu, err);
    } else {
        /* added in place when batch_end is already served: the partitions held stay readable */
        rc = tsr_tile_upload_begin_add(h->store, st->name, batch_end, &u, err);
        const tsr_tile_gb_t *tiles = tsr_gb_online_tiles(st->plan);
        irs = tsr_calloc(tiles->ncols ? tiles->ncols : 1, sizeof(void *));
        for (size_t c = 0; c < tiles->ncols; c++) irs[c] = tsr_calloc(1, tsr_agg_ir_size(tiles->cols[c].agg) + 8);
    }
    char path[4096];
    for (size_t i = 0; i < n && rc == 0; i++) {
        tsr_partfile_path(dir, parts[i], path, sizeof path);
        rc = load_one(h, st, path, batch_end, parts[i], u, eu, irs, keys, err);
    }
    if (irs) {
        const tsr_tile_gb_t *tiles = tsr_gb_online_tiles(st->plan);
        for (size_t c = 0; c < tiles->ncols; c++) free(irs[c]);
        free(irs);
    }
    if (rc == 0) {
        rc = eu ? tsr_entity_upload_commit(eu, err) : tsr_tile_upload_commit(u, err);
    } else {
        if (eu) tsr_entity_upload_abort(eu);
        if (u) tsr_tile_upload_abort(u);
    }
    if (rc == 0) {
        if (st->batch_end) tsr_gauge_set(st->batch_end, (double)batch_end);
        logf_(h, "loaded %s B=%lld: %llu keys from %zu part files in %s", st->name,
              (long long)batch_end, (unsigned long long)*keys, n, dir);
    }
    return rc;
}
