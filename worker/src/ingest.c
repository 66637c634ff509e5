/*
 * ingest.c — one GroupBy source's topic into the tile store (ingest.h).
 */
#include "tsr/ingest.h"

#include <malloc.h>
#include <pthread.h>
#include <sys/prctl.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <librdkafka/rdkafka.h>

#include "tsr/kafka.h"
#include "tsr/log.h"
#include "tsr/partition.h"

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
    int32_t *evpart;                /* per event: its Kafka partition */
    tsr_tile_event_t *ev;
    tsr_value_t *inputs, *buckets;
    size_t cap;

    /* partitioned mode */
    int32_t *want;                  /* the partitions to consume (opts.partitions copied) */
    size_t nwant;
    tsr_buf_t scratch;              /* key → partition */
    int64_t *pevents, *plag;        /* per partition (under mu) */
    uint8_t *consumed;              /* per partition: assigned to the consumer */
    int32_t npstat;                 /* entries of pevents/plag/consumed (under mu) */
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
    pthread_mutex_lock(&in->mu);
    free(in->pevents);
    free(in->plag);
    free(in->consumed);
    in->pevents = in->plag = NULL;
    in->consumed = NULL;
    in->npstat = 0;
    pthread_mutex_unlock(&in->mu);
    in->pnames = NULL;
    in->wm = in->next = in->offv = NULL;
    in->touched = NULL;
    in->offnames = NULL;
    in->nparts = 0;
}

/* The offset of the first message at or after time t in each partition (-1: none, e.g. the
 * broker cannot tell or t is after the newest message). Best effort: an error leaves -1. */
static void offsets_for_time(const char *bootstrap, const char *topic, const int32_t *parts,
                             size_t n, int64_t t, int64_t *out) {
    for (size_t i = 0; i < n; i++) out[i] = -1;
    char why[256];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    if (rd_kafka_conf_set(conf, "bootstrap.servers", bootstrap, why, sizeof why) != RD_KAFKA_CONF_OK ||
        rd_kafka_conf_set(conf, "log_level", "0", why, sizeof why) != RD_KAFKA_CONF_OK) {
        rd_kafka_conf_destroy(conf);
        return;
    }
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, why, sizeof why);
    if (!rk) {
        rd_kafka_conf_destroy(conf);
        return;
    }
    rd_kafka_topic_partition_list_t *tl = rd_kafka_topic_partition_list_new((int)n);
    for (size_t i = 0; i < n; i++) rd_kafka_topic_partition_list_add(tl, topic, parts[i])->offset = t;
    if (rd_kafka_offsets_for_times(rk, tl, 5000) == RD_KAFKA_RESP_ERR_NO_ERROR)
        for (int i = 0; i < tl->cnt && (size_t)i < n; i++)
            if (tl->elems[i].err == RD_KAFKA_RESP_ERR_NO_ERROR && tl->elems[i].offset >= 0)
                out[i] = tl->elems[i].offset;
    rd_kafka_topic_partition_list_destroy(tl);
    rd_kafka_destroy(rk);
}

static int open_consumer(tsr_ingest_t *in, tsr_error_t *err) {
    int32_t np = 0;
    int rc = tsr_kafka_topic_partitions(in->o.bootstrap, in->topic, 2000, &np, err);
    if (rc) return rc;
    size_t n = 0;
    int32_t *parts = tsr_malloc(((size_t)np + in->nwant + 1) * sizeof(int32_t));
    int64_t *offs = tsr_malloc(((size_t)np + in->nwant + 1) * sizeof(int64_t));
    if (in->want) {
        for (size_t i = 0; i < in->nwant; i++) {
            if (in->want[i] >= 0 && in->want[i] < np) parts[n++] = in->want[i];
            else if (in->o.log)
                tsr_log(TSR_LOG_WARN, "ingest", "%s <- %s: topic has %d partitions: no partition %d",
                        in->tiles->name, in->topic, (int)np, (int)in->want[i]);
        }
    } else {
        for (int32_t p = 0; p < np; p++) parts[n++] = p;
    }
    if (n == 0) {
        free(parts);
        free(offs);
        return tsr_error_set(err, TSR_ENOTFOUND, "topic %s: none of the partitions to consume exists",
                             in->topic);
    }
    char name[300];
    size_t nmiss = 0;
    for (size_t i = 0; i < n; i++) {
        snprintf(name, sizeof name, "%s/%d", in->topic, (int)parts[i]);
        int64_t o = tsr_tile_store_offset(in->o.store, in->tiles->name, name);
        offs[i] = o >= 0 ? o : TSR_KAFKA_OFFSET_BEGINNING;
        nmiss += o < 0;
    }
    if (nmiss && in->o.start_time_ms > 0) {
        /* partitions new to this store start at the upload's batch end B, not at offset 0 */
        int32_t *mp = tsr_malloc(nmiss * sizeof(int32_t));
        int64_t *mo = tsr_malloc(nmiss * sizeof(int64_t));
        size_t k = 0;
        for (size_t i = 0; i < n; i++)
            if (offs[i] == TSR_KAFKA_OFFSET_BEGINNING) mp[k++] = parts[i];
        offsets_for_time(in->o.bootstrap, in->topic, mp, k, in->o.start_time_ms, mo);
        k = 0;
        for (size_t i = 0; i < n; i++)
            if (offs[i] == TSR_KAFKA_OFFSET_BEGINNING) {
                if (mo[k] >= 0) offs[i] = mo[k];
                k++;
            }
        free(mp);
        free(mo);
    }
    tsr_kafka_consumer_opts_t co;
    memset(&co, 0, sizeof co);
    co.bootstrap = in->o.bootstrap;
    co.topic = in->topic;
    co.partitions = parts;
    co.offsets = offs;
    co.npartitions = n;
    co.reset = TSR_KAFKA_RESET_EARLIEST;
    co.max_batch = 4096;
    co.timeout_ms = 5000;
    rc = tsr_kafka_consumer_open(&co, &in->consumer, err);
    free(offs);
    if (rc) {
        free(parts);
        return rc;
    }
    free_partitions(in);
    in->nparts = np;
    in->wm = tsr_malloc((size_t)np * sizeof(int64_t));
    in->pnames = tsr_malloc((size_t)np * sizeof(char *));
    in->next = tsr_malloc((size_t)np * sizeof(int64_t));
    in->touched = tsr_malloc((size_t)np * sizeof(int32_t));
    in->offnames = tsr_malloc((size_t)np * sizeof(char *));
    in->offv = tsr_malloc((size_t)np * sizeof(int64_t));
    pthread_mutex_lock(&in->mu);
    in->pevents = tsr_calloc((size_t)np, sizeof(int64_t));
    in->plag = tsr_malloc((size_t)np * sizeof(int64_t));
    in->consumed = tsr_calloc((size_t)np, 1);
    for (int32_t p = 0; p < np; p++) in->plag[p] = -1;
    for (size_t i = 0; i < n; i++) in->consumed[parts[i]] = 1;
    in->npstat = np;
    pthread_mutex_unlock(&in->mu);
    for (int32_t p = 0; p < np; p++) {
        in->wm[p] = INT64_MIN;
        in->next[p] = -1;
        snprintf(name, sizeof name, "%s/%d", in->topic, (int)p);
        in->pnames[p] = tsr_strdup(name);
    }
    free(parts);
    pthread_mutex_lock(&in->mu);
    in->st.connected = 1;
    in->st.last_error[0] = 0;
    pthread_mutex_unlock(&in->mu);
    if (in->o.log)
        tsr_log(TSR_LOG_INFO, "ingest", "%s <- %s: consuming %zu of %d partitions", in->tiles->name,
                in->topic, n, (int)np);
    return 0;
}

static void grow(tsr_ingest_t *in, size_t n) {
    if (n <= in->cap) return;
    size_t cap = in->cap ? in->cap : 1024;
    while (cap < n) cap *= 2;
    size_t nc = in->tiles->ncols ? in->tiles->ncols : 1;
    in->koff = tsr_realloc(in->koff, cap * sizeof(size_t));
    in->evpart = tsr_realloc(in->evpart, cap * sizeof(int32_t));
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
    uint64_t bad = 0, filtered = 0, late = 0, misrouted = 0;
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
        if (in->want && tsr_partition_of_key(in->keys.data + k0, klen, in->o.nkeys, (int)in->nparts,
                                             &in->scratch) != p) {
            /* produced with another message key: no fetch would look for it here */
            in->keys.len = k0;
            misrouted++;
            continue;
        }
        if (p >= 0 && p < in->nparts) {
            if (lateness > 0 && in->wm[p] != INT64_MIN && ts < in->wm[p] - lateness) {
                in->keys.len = k0;
                late++;
                continue;
            }
            if (ts > in->wm[p]) in->wm[p] = ts;
        }
        in->koff[ne] = k0;
        in->evpart[ne] = p >= 0 && p < in->nparts ? p : 0;
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
    /* one watermark pass per poll (each partition's is a lookup under librdkafka's locks) */
    const tsr_kafka_partition_lag_t *lg;
    size_t nl = tsr_kafka_consumer_lag(in->consumer, &lg);
    int64_t total_lag = 0;
    for (size_t i = 0; i < nl; i++)
        if (lg[i].lag > 0) total_lag += lg[i].lag;
    pthread_mutex_lock(&in->mu);
    in->st.messages += n;
    in->st.events += ne - skipped;
    in->st.skipped += skipped;
    in->st.filtered += filtered;
    in->st.late += late;
    in->st.bad += bad;
    in->st.misrouted += misrouted;
    in->st.batches += batches;
    in->st.lag = total_lag;
    for (size_t i = 0; i < ne; i++) in->pevents[in->evpart[i]]++;
    for (size_t i = 0; i < nl; i++)
        if (lg[i].partition >= 0 && lg[i].partition < in->nparts) in->plag[lg[i].partition] = lg[i].lag;
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

/* glibc returns the free top of a heap to the kernel past 128 KiB and serves big blocks
 * (librdkafka's fetch buffers, the write-back flush's batch) from fresh mmaps: a process that
 * ingests then faults the same memory in, zeroed, again and again (the broker thread's
 * sysmalloc and page faults; its CPU per message was ~20 % lower without, bench of 1M
 * messages). Fixed thresholds keep that memory in the process; set once, before the first
 * consumer. */
static void malloc_tune(void) {
    mallopt(M_MMAP_THRESHOLD, 32 << 20);
    mallopt(M_TRIM_THRESHOLD, 64 << 20);
}

int tsr_ingest_start(const tsr_ingest_opts_t *opts, tsr_ingest_t **out, tsr_error_t *err) {
    static pthread_once_t tuned = PTHREAD_ONCE_INIT;
    pthread_once(&tuned, malloc_tune);
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
    if (opts->partitions) {
        in->nwant = opts->npartitions;
        in->want = tsr_malloc((in->nwant ? in->nwant : 1) * sizeof(int32_t));
        memcpy(in->want, opts->partitions, in->nwant * sizeof(int32_t));
    }
    in->o.partitions = NULL; /* the copy is in->want */
    tsr_buf_init(&in->scratch);
    tsr_arena_init(&in->arena, 1 << 16);
    tsr_buf_init(&in->keys);
    in->st.lag = -1;
    pthread_mutex_init(&in->mu, NULL);
    if (pthread_create(&in->thread, NULL, ingest_main, in) != 0) {
        pthread_mutex_destroy(&in->mu);
        tsr_gb_stream_free(in->eval);
        free(in->want);
        tsr_buf_free(&in->scratch);
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
    free_partitions(in);
    pthread_mutex_destroy(&in->mu);
    tsr_gb_stream_free(in->eval);
    free(in->fields);
    free(in->row);
    free(in->want);
    tsr_buf_free(&in->scratch);
    free(in->koff);
    free(in->evpart);
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

int tsr_ingest_partition_stats(tsr_ingest_t *in, int32_t p, int64_t *events, int64_t *lag) {
    int rc = TSR_ENOTFOUND;
    pthread_mutex_lock(&in->mu);
    if (in->consumed && p >= 0 && p < in->npstat && in->consumed[p]) {
        *events = in->pevents[p];
        *lag = in->plag[p];
        rc = 0;
    }
    pthread_mutex_unlock(&in->mu);
    return rc;
}
