/*
 * ingest.c — one GroupBy source's topic into the tile store (ingest.h).
 */
#include "tsr/ingest.h"

#include <pthread.h>
#include <sys/prctl.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tsr/kafka.h"
#include "tsr/log.h"

#define LOG_BAD_MAX 10
#define RETRY_MS 1000

struct tsr_ingest {
    tsr_ingest_opts_t o;
    const tsr_tile_gb_t *tiles;
    char topic[256];
    pthread_t thread;
    int stop;                       /* atomic */
    pthread_mutex_t mu;             /* stats */
    tsr_ingest_stats_t st;

    /* thread state */
    tsr_gb_stream_t *eval;
    tsr_kafka_field_t *fields;
    size_t nfields;
    tsr_kafka_consumer_t *consumer;
    int32_t nparts;
    int64_t *wm;                    /* per partition: newest event time */
    char **pnames;                  /* per partition: its offset name "topic/p" */
    int64_t *next;                  /* per partition: next offset in this poll, -1 untouched */
    int32_t *touched;               /* partitions of this poll */
    const char **offnames;          /* offsets of this poll, in touched order */
    int64_t *offv;
    tsr_value_t *row;
    tsr_arena_t arena;
    tsr_buf_t keys;
    size_t *koff;
    tsr_tile_event_t *ev;
    tsr_value_t *inputs, *buckets;
    size_t cap;
};

static void set_error(tsr_ingest_t *in, const char *msg) {
    pthread_mutex_lock(&in->mu);
    snprintf(in->st.last_error, sizeof in->st.last_error, "%.*s", (int)sizeof in->st.last_error - 1, msg);
    pthread_mutex_unlock(&in->mu);
    if (in->o.log) tsr_log(TSR_LOG_WARN, "ingest", "%s <- %s: %s", in->tiles->name, in->topic, msg);
}

static int stopping(tsr_ingest_t *in) { return __atomic_load_n(&in->stop, __ATOMIC_ACQUIRE); }

static void sleep_ms(int ms) {
    struct timespec t = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&t, NULL);
}

static void free_partitions(tsr_ingest_t *in) {
    for (int32_t p = 0; in->pnames && p < in->nparts; p++) free(in->pnames[p]);
    free(in->pnames);
    free(in->wm);
    free(in->next);
    free(in->touched);
    free(in->offnames);
    free(in->offv);
    in->pnames = NULL;
    in->wm = in->next = in->offv = NULL;
    in->touched = NULL;
    in->offnames = NULL;
    in->nparts = 0;
}

static int open_consumer(tsr_ingest_t *in, tsr_error_t *err) {
    int32_t np = 0;
    int rc = tsr_kafka_topic_partitions(in->o.bootstrap, in->topic, 2000, &np, err);
    if (rc) return rc;
    int32_t *parts = tsr_malloc((size_t)np * sizeof(int32_t));
    int64_t *offs = tsr_malloc((size_t)np * sizeof(int64_t));
    char name[300];
    for (int32_t p = 0; p < np; p++) {
        parts[p] = p;
        snprintf(name, sizeof name, "%s/%d", in->topic, (int)p);
        int64_t o = tsr_tile_store_offset(in->o.store, in->tiles->name, name);
        offs[p] = o >= 0 ? o : TSR_KAFKA_OFFSET_BEGINNING;
    }
    tsr_kafka_consumer_opts_t co;
    memset(&co, 0, sizeof co);
    co.bootstrap = in->o.bootstrap;
    co.topic = in->topic;
    co.partitions = parts;
    co.offsets = offs;
    co.npartitions = (size_t)np;
    co.reset = TSR_KAFKA_RESET_EARLIEST;
    co.max_batch = 4096;
    co.timeout_ms = 5000;
    rc = tsr_kafka_consumer_open(&co, &in->consumer, err);
    free(parts);
    free(offs);
    if (rc) return rc;
    free_partitions(in);
    in->nparts = np;
    in->wm = tsr_malloc((size_t)np * sizeof(int64_t));
    in->pnames = tsr_malloc((size_t)np * sizeof(char *));
    in->next = tsr_malloc((size_t)np * sizeof(int64_t));
    in->touched = tsr_malloc((size_t)np * sizeof(int32_t));
    in->offnames = tsr_malloc((size_t)np * sizeof(char *));
    in->offv = tsr_malloc((size_t)np * sizeof(int64_t));
    for (int32_t p = 0; p < np; p++) {
        in->wm[p] = INT64_MIN;
        in->next[p] = -1;
        snprintf(name, sizeof name, "%s/%d", in->topic, (int)p);
        in->pnames[p] = tsr_strdup(name);
    }
    pthread_mutex_lock(&in->mu);
    in->st.connected = 1;
    in->st.last_error[0] = 0;
    pthread_mutex_unlock(&in->mu);
    if (in->o.log)
        tsr_log(TSR_LOG_INFO, "ingest", "%s <- %s: consuming %d partitions", in->tiles->name,
                in->topic, (int)np);
    return 0;
}

static void grow(tsr_ingest_t *in, size_t n) {
    if (n <= in->cap) return;
    size_t cap = in->cap ? in->cap : 1024;
    while (cap < n) cap *= 2;
    size_t nc = in->tiles->ncols ? in->tiles->ncols : 1;
    in->koff = tsr_realloc(in->koff, cap * sizeof(size_t));
    in->ev = tsr_realloc(in->ev, cap * sizeof(tsr_tile_event_t));
    in->inputs = tsr_realloc(in->inputs, cap * nc * sizeof(tsr_value_t));
    in->buckets = tsr_realloc(in->buckets, cap * nc * sizeof(tsr_value_t));
    in->cap = cap;
}

/* Applies one poll's messages. Returns 0, or an error that stops the consumer (store
 * failures: the batch was not written, so the stored offsets stay where they were). */
static int process(tsr_ingest_t *in, const tsr_kafka_msg_t *msgs, size_t n, tsr_error_t *err) {
    tsr_arena_reset(&in->arena);
    tsr_buf_clear(&in->keys);
    grow(in, n);
    size_t nc = in->tiles->ncols;
    int64_t lateness = in->o.allowed_lateness_ms == 0 ? TSR_INGEST_DEFAULT_LATENESS_MS
                                                      : in->o.allowed_lateness_ms;
    uint64_t bad = 0, filtered = 0, late = 0;
    size_t ne = 0;
    tsr_error_t e;
    for (size_t i = 0; i < n; i++) {
        const tsr_kafka_msg_t *m = &msgs[i];
        if (tsr_kafka_msg_to_row(m, in->fields, in->nfields, &in->arena, in->row, &e)) {
            bad++;
            pthread_mutex_lock(&in->mu);
            uint64_t nbad = in->st.bad + bad;
            pthread_mutex_unlock(&in->mu);
            if (nbad <= LOG_BAD_MAX && in->o.log)
                tsr_log(TSR_LOG_WARN, "ingest", "%s <- %s: bad message skipped: %s", in->tiles->name,
                        in->topic, e.msg);
            continue;
        }
        size_t klen;
        int64_t ts;
        size_t k0 = in->keys.len;
        if (!tsr_gb_stream_eval(in->eval, in->row, &in->keys, &klen, &ts, in->inputs + ne * nc,
                                in->buckets + ne * nc, &in->arena)) {
            filtered++;
            continue;
        }
        int32_t p = m->partition;
        if (p >= 0 && p < in->nparts) {
            if (lateness > 0 && in->wm[p] != INT64_MIN && ts < in->wm[p] - lateness) {
                in->keys.len = k0;
                late++;
                continue;
            }
            if (ts > in->wm[p]) in->wm[p] = ts;
        }
        in->koff[ne] = k0;
        in->ev[ne] = (tsr_tile_event_t){NULL, klen, ts, (uint64_t)m->offset, in->inputs + ne * nc,
                                        in->buckets + ne * nc};
        ne++;
    }
    /* one write for the whole poll: the events and every touched partition's next offset */
    size_t noff = 0;
    for (size_t i = 0; i < n; i++) {
        int32_t p = msgs[i].partition;
        if (p < 0 || p >= in->nparts) continue;
        if (in->next[p] < 0) in->touched[noff++] = p;
        if (msgs[i].offset + 1 > in->next[p]) in->next[p] = msgs[i].offset + 1;
    }
    for (size_t o = 0; o < noff; o++) {
        int32_t p = in->touched[o];
        in->offnames[o] = in->pnames[p];
        in->offv[o] = in->next[p];
        in->next[p] = -1;
    }
    uint64_t skipped = 0, batches = 1;
    for (size_t i = 0; i < ne; i++) in->ev[i].key = in->keys.data + in->koff[i];
    int rc = tsr_tile_store_apply_offsets(in->o.store, in->tiles->name, in->ev, ne,
                                          (const char *const *)in->offnames, in->offv, noff,
                                          &skipped, err);
    if (rc) return rc;
    pthread_mutex_lock(&in->mu);
    in->st.messages += n;
    in->st.events += ne - skipped;
    in->st.skipped += skipped;
    in->st.filtered += filtered;
    in->st.late += late;
    in->st.bad += bad;
    in->st.batches += batches;
    in->st.lag = tsr_kafka_consumer_total_lag(in->consumer);
    pthread_mutex_unlock(&in->mu);
    return 0;
}

static void close_consumer(tsr_ingest_t *in) {
    tsr_kafka_consumer_close(in->consumer);
    in->consumer = NULL;
    pthread_mutex_lock(&in->mu);
    in->st.connected = 0;
    pthread_mutex_unlock(&in->mu);
}

static void *ingest_main(void *arg) {
    tsr_ingest_t *in = arg;
    prctl(PR_SET_NAME, "tsr-ingest", 0, 0, 0); /* shows in top -H, perf, gdb */
    tsr_error_t err;
    while (!stopping(in)) {
        if (!in->consumer) {
            tsr_error_clear(&err);
            if (open_consumer(in, &err)) {
                set_error(in, err.msg);
                for (int t = 0; t < RETRY_MS / 50 && !stopping(in); t++) sleep_ms(50);
                continue;
            }
        }
        const tsr_kafka_msg_t *msgs;
        tsr_error_clear(&err);
        int n = tsr_kafka_consumer_poll(in->consumer, 100, &msgs, &err);
        if (n < 0) {
            set_error(in, err.msg);
            close_consumer(in);
            continue;
        }
        if (n == 0) {
            pthread_mutex_lock(&in->mu);
            in->st.lag = tsr_kafka_consumer_total_lag(in->consumer);
            pthread_mutex_unlock(&in->mu);
            continue;
        }
        tsr_error_clear(&err);
        if (process(in, msgs, (size_t)n, &err)) {
            /* not written: reopen at the stored offsets and try again */
            set_error(in, err.msg);
            close_consumer(in);
            for (int t = 0; t < RETRY_MS / 50 && !stopping(in); t++) sleep_ms(50);
        }
    }
    close_consumer(in);
    return NULL;
}

int tsr_ingest_start(const tsr_ingest_opts_t *opts, tsr_ingest_t **out, tsr_error_t *err) {
    *out = NULL;
    tsr_ingest_t *in = tsr_calloc(1, sizeof(*in));
    in->o = *opts;
    in->tiles = tsr_gb_online_tiles(opts->plan);
    if (!tsr_gb_online_topic(opts->plan, opts->source, in->topic, sizeof in->topic)) {
        free(in);
        return tsr_error_set(err, TSR_EINVAL, "%s: source %zu names no topic",
                             tsr_gb_online_tiles(opts->plan)->name, opts->source);
    }
    in->eval = tsr_gb_stream_new(opts->plan, opts->source);
    const char *const *names;
    const tsr_type_t *types;
    in->nfields = tsr_gb_stream_columns(in->eval, &names, &types);
    in->fields = tsr_calloc(in->nfields ? in->nfields : 1, sizeof(tsr_kafka_field_t));
    for (size_t i = 0; i < in->nfields; i++)
        in->fields[i] = (tsr_kafka_field_t){names[i], types[i], 0};
    in->row = tsr_calloc(in->nfields ? in->nfields : 1, sizeof(tsr_value_t));
    tsr_arena_init(&in->arena, 1 << 16);
    tsr_buf_init(&in->keys);
    in->st.lag = -1;
    pthread_mutex_init(&in->mu, NULL);
    if (pthread_create(&in->thread, NULL, ingest_main, in) != 0) {
        pthread_mutex_destroy(&in->mu);
        tsr_gb_stream_free(in->eval);
        free(in->fields);
        free(in->row);
        tsr_arena_free(&in->arena);
        free(in);
        return tsr_error_set(err, TSR_EINTERNAL, "cannot start the ingest thread");
    }
    *out = in;
    return 0;
}

void tsr_ingest_stop(tsr_ingest_t *in) {
    if (!in) return;
    __atomic_store_n(&in->stop, 1, __ATOMIC_RELEASE);
    pthread_join(in->thread, NULL);
    pthread_mutex_destroy(&in->mu);
    tsr_gb_stream_free(in->eval);
    free(in->fields);
    free(in->row);
    free_partitions(in);
    free(in->koff);
    free(in->ev);
    free(in->inputs);
    free(in->buckets);
    tsr_buf_free(&in->keys);
    tsr_arena_free(&in->arena);
    free(in);
}

const char *tsr_ingest_topic(const tsr_ingest_t *in) { return in->topic; }

void tsr_ingest_stats(tsr_ingest_t *in, tsr_ingest_stats_t *out) {
    pthread_mutex_lock(&in->mu);
    *out = in->st;
    pthread_mutex_unlock(&in->mu);
}
