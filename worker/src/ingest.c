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

/* One consumer per (broker, topic) in the process, shared by every GroupBy streaming that
 * topic (ingest.h "Shared consumers"). */
typedef struct feed {
    char *bootstrap;
    char topic[256];
    struct feed *next;              /* the registry (feeds_mu) */
    pthread_t thread;
    pthread_mutex_t mu;             /* members, gen, in_batch, quit */
    pthread_cond_t cv;              /* in_batch dropped to 0 */
    tsr_ingest_t **mem;
    size_t nmem, cap;
    uint64_t gen;                   /* bumped when members or their positions change */
    int in_batch;                   /* the thread is handing a poll to a snapshot of mem */
    int quit;
    /* thread state */
    tsr_kafka_consumer_t *consumer;
    uint64_t open_gen;              /* gen the consumer was opened for */
    int32_t nparts;                 /* the topic's partition count at the open */
    tsr_ingest_t **snap;            /* members of the current poll */
    size_t nsnap, snapcap;
    int64_t *start;                 /* per partition: the consumer's start offset, or -3 */
} feed_t;

static pthread_mutex_t feeds_mu = PTHREAD_MUTEX_INITIALIZER;
static feed_t *feeds;

struct tsr_ingest {
    tsr_ingest_opts_t o;
    const tsr_tile_gb_t *tiles;
    char topic[256];
    feed_t *feed;
    int stop;                       /* atomic */
    pthread_mutex_t mu;             /* stats */
    tsr_ingest_stats_t st;

    /* feed thread state */
    tsr_gb_stream_t *eval;
    tsr_kafka_field_t *fields;
    size_t nfields;
    int32_t nparts;
    int64_t *pos;                   /* per partition: next offset this GroupBy applies (or
                                       TSR_KAFKA_OFFSET_BEGINNING: anything); -3 not consumed */
    int ready;                      /* positioned by the feed's open: polls are for it */
    int64_t retry_at_ms;            /* > 0: a failed write; skip polls until then; < 0: due,
                                       back to the stored offsets at the next open */
    tsr_kafka_msg_t *sub;           /* this GroupBy's messages of a poll */
    size_t subcap;
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

#define POS_NONE (-3)

static int64_t now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

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
    free(in->pos);
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
    in->pos = in->wm = in->next = in->offv = NULL;
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

/* Positions a GroupBy on a topic of np partitions (feed thread, while the feed is in_batch):
 * the partitions it consumes start at its stored offsets, else at the offset of the upload's
 * batch end (partitioned mode), else at the beginning. Partitions it already holds a position
 * for keep it (its next message), unless `full` (after a failed write: back to the store). */
static void member_setup(tsr_ingest_t *in, int32_t np, int full) {
    if (in->nparts != np || full) {
        free_partitions(in);
        in->nparts = np;
        in->pos = tsr_malloc((size_t)np * sizeof(int64_t));
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
        in->npstat = np;
        pthread_mutex_unlock(&in->mu);
        char name[300];
        for (int32_t p = 0; p < np; p++) {
            in->pos[p] = POS_NONE;
            in->wm[p] = INT64_MIN;
            in->next[p] = -1;
            snprintf(name, sizeof name, "%s/%d", in->topic, (int)p);
            in->pnames[p] = tsr_strdup(name);
        }
    }
    int32_t *mp = tsr_malloc(((size_t)np + 1) * sizeof(int32_t));
    int64_t *mo = tsr_malloc(((size_t)np + 1) * sizeof(int64_t));
    size_t nmiss = 0, n = 0;
    for (size_t i = 0; i < (in->want ? in->nwant : (size_t)np); i++) {
        int32_t p = in->want ? in->want[i] : (int32_t)i;
        if (p < 0 || p >= np) {
            if (in->o.log)
                tsr_log(TSR_LOG_WARN, "ingest", "%s <- %s: topic has %d partitions: no partition %d",
                        in->tiles->name, in->topic, (int)np, (int)p);
            continue;
        }
        n++;
        if (in->pos[p] != POS_NONE) continue;
        int64_t o = tsr_tile_store_offset(in->o.store, in->tiles->name, in->pnames[p]);
        in->pos[p] = o >= 0 ? o : TSR_KAFKA_OFFSET_BEGINNING;
        if (o < 0) mp[nmiss++] = p;
    }
    if (nmiss && in->o.start_time_ms > 0) {
        /* partitions new to this store start at the upload's batch end B, not at offset 0 */
        offsets_for_time(in->o.bootstrap, in->topic, mp, nmiss, in->o.start_time_ms, mo);
        for (size_t k = 0; k < nmiss; k++)
            if (mo[k] >= 0) in->pos[mp[k]] = mo[k];
    }
    free(mp);
    free(mo);
    pthread_mutex_lock(&in->mu);
    for (int32_t p = 0; p < np; p++) in->consumed[p] = in->pos[p] != POS_NONE;
    pthread_mutex_unlock(&in->mu);
    if (in->o.log && (full || !in->ready))
        tsr_log(TSR_LOG_INFO, "ingest", "%s <- %s: consuming %zu of %d partitions", in->tiles->name,
                in->topic, n, (int)np);
}

static void set_connected(tsr_ingest_t *in, int on) {
    pthread_mutex_lock(&in->mu);
    in->st.connected = on;
    if (on) in->st.last_error[0] = 0;
    pthread_mutex_unlock(&in->mu);
}

/* (Re)opens the feed's consumer for the members of f->snap (feed thread, in_batch): every
 * partition some member consumes, from the smallest of their positions. */
static int feed_open(feed_t *f, tsr_error_t *err) {
    int32_t np = 0;
    int rc = tsr_kafka_topic_partitions(f->bootstrap, f->topic, 2000, &np, err);
    if (rc) return rc;
    free(f->start);
    f->start = tsr_malloc(((size_t)np + 1) * sizeof(int64_t));
    for (int32_t p = 0; p < np; p++) f->start[p] = POS_NONE;
    for (size_t i = 0; i < f->nsnap; i++) {
        tsr_ingest_t *in = f->snap[i];
        if (stopping(in) || in->retry_at_ms > 0) continue; /* a failed write waits its turn */
        int full = in->retry_at_ms < 0;
        member_setup(in, np, full);
        in->retry_at_ms = 0;
        in->ready = 1;
        for (int32_t p = 0; p < np; p++) {
            int64_t o = in->pos[p];
            if (o == POS_NONE) continue;
            /* the beginning (-2) sorts first */
            if (f->start[p] == POS_NONE || o < f->start[p]) f->start[p] = o;
        }
    }
    size_t n = 0;
    int32_t *parts = tsr_malloc(((size_t)np + 1) * sizeof(int32_t));
    int64_t *offs = tsr_malloc(((size_t)np + 1) * sizeof(int64_t));
    for (int32_t p = 0; p < np; p++)
        if (f->start[p] != POS_NONE) {
            parts[n] = p;
            offs[n++] = f->start[p];
        }
    f->nparts = np;
    if (n == 0) {
        free(parts);
        free(offs);
        return tsr_error_set(err, TSR_ENOTFOUND, "topic %s: none of the partitions to consume exists",
                             f->topic);
    }
    tsr_kafka_consumer_opts_t co;
    memset(&co, 0, sizeof co);
    co.bootstrap = f->bootstrap;
    co.topic = f->topic;
    co.partitions = parts;
    co.offsets = offs;
    co.npartitions = n;
    co.reset = TSR_KAFKA_RESET_EARLIEST;
    co.max_batch = 4096;
    co.timeout_ms = 5000;
    rc = tsr_kafka_consumer_open(&co, &f->consumer, err);
    free(parts);
    free(offs);
    if (rc) return rc;
    for (size_t i = 0; i < f->nsnap; i++)
        if (f->snap[i]->ready) set_connected(f->snap[i], 1);
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
    pthread_mutex_lock(&in->mu);
    in->st.messages += n;
    in->st.events += ne - skipped;
    in->st.skipped += skipped;
    in->st.filtered += filtered;
    in->st.late += late;
    in->st.bad += bad;
    in->st.misrouted += misrouted;
    in->st.batches += batches;
    for (size_t i = 0; i < ne; i++) in->pevents[in->evpart[i]]++;
    pthread_mutex_unlock(&in->mu);
    return 0;
}

/* A GroupBy's lag after a poll: per partition it consumes, the high watermark minus its own
 * position (it may be ahead of the shared consumer, which started at the smallest position). */
static void member_lag(tsr_ingest_t *in, const tsr_kafka_partition_lag_t *lg, size_t nl) {
    int64_t total = 0;
    pthread_mutex_lock(&in->mu);
    for (size_t i = 0; i < nl; i++) {
        int32_t p = lg[i].partition;
        if (p < 0 || p >= in->nparts || in->pos[p] == POS_NONE || p >= in->npstat) continue;
        int64_t lag = lg[i].lag;
        if (lag >= 0 && lg[i].position >= 0 && in->pos[p] > lg[i].position) {
            lag -= in->pos[p] - lg[i].position;
            if (lag < 0) lag = 0;
        }
        in->plag[p] = lag;
        if (lag > 0) total += lag;
    }
    in->st.lag = total;
    pthread_mutex_unlock(&in->mu);
}

/* Hands one poll to every member positioned on it: each gets the messages of the partitions it
 * consumes from its own position on (feed thread, in_batch). */
static void feed_dispatch(feed_t *f, const tsr_kafka_msg_t *msgs, size_t n) {
    for (size_t i = 0; i < f->nsnap; i++) {
        tsr_ingest_t *in = f->snap[i];
        if (stopping(in) || !in->ready || in->retry_at_ms != 0) continue;
        if (in->subcap < n) {
            free(in->sub);
            in->subcap = n > 4096 ? n : 4096;
            in->sub = tsr_malloc(in->subcap * sizeof *in->sub);
        }
        size_t k = 0;
        for (size_t j = 0; j < n; j++) {
            int32_t p = msgs[j].partition;
            if (p < 0 || p >= in->nparts || in->pos[p] == POS_NONE) continue;
            if (in->pos[p] != TSR_KAFKA_OFFSET_BEGINNING && msgs[j].offset < in->pos[p]) continue;
            in->pos[p] = msgs[j].offset + 1;
            in->sub[k++] = msgs[j];
        }
        tsr_error_t err;
        tsr_error_clear(&err);
        if (k && process(in, in->sub, k, &err)) {
            /* not written: from its stored offsets again, after a pause */
            set_error(in, err.msg);
            in->retry_at_ms = now_ms() + RETRY_MS;
            set_connected(in, 0);
        }
    }
    const tsr_kafka_partition_lag_t *lg; /* one watermark pass per poll */
    size_t nl = tsr_kafka_consumer_lag(f->consumer, &lg);
    for (size_t i = 0; i < f->nsnap; i++)
        if (f->snap[i]->ready && f->snap[i]->retry_at_ms == 0) member_lag(f->snap[i], lg, nl);
}

/* Copies the members into f->snap and marks the feed in_batch: until it drops, no member is
 * freed (tsr_ingest_stop waits). Caller holds f->mu. */
static void feed_snapshot(feed_t *f) {
    if (f->snapcap < f->nmem) {
        f->snapcap = f->nmem;
        f->snap = tsr_realloc(f->snap, f->snapcap * sizeof *f->snap);
    }
    memcpy(f->snap, f->mem, f->nmem * sizeof *f->snap);
    f->nsnap = f->nmem;
    f->in_batch = 1;
}

static void feed_done(feed_t *f) { /* caller holds f->mu */
    f->in_batch = 0;
    pthread_cond_broadcast(&f->cv);
}

static void feed_close(feed_t *f) { /* feed thread, in_batch (or no members left) */
    if (!f->consumer) return;
    tsr_kafka_consumer_close(f->consumer);
    f->consumer = NULL;
    for (size_t i = 0; i < f->nsnap; i++) set_connected(f->snap[i], 0);
}

static void *feed_main(void *arg) {
    feed_t *f = arg;
    prctl(PR_SET_NAME, "tsr-ingest", 0, 0, 0); /* shows in top -H, perf, gdb */
    tsr_error_t err;
    pthread_mutex_lock(&f->mu);
    while (!f->quit) {
        int64_t t = now_ms();
        for (size_t i = 0; i < f->nmem; i++)
            if (f->mem[i]->retry_at_ms > 0 && t >= f->mem[i]->retry_at_ms) {
                f->mem[i]->retry_at_ms = -1; /* due: reopen with its stored offsets */
                f->gen++;
            }
        if (!f->consumer || f->open_gen != f->gen) {
            uint64_t g = f->gen;
            feed_snapshot(f);
            pthread_mutex_unlock(&f->mu);
            feed_close(f);
            tsr_error_clear(&err);
            int rc = feed_open(f, &err);
            if (rc)
                for (size_t i = 0; i < f->nsnap; i++)
                    if (!stopping(f->snap[i]) && f->snap[i]->retry_at_ms <= 0) set_error(f->snap[i], err.msg);
            pthread_mutex_lock(&f->mu);
            feed_done(f);
            if (rc == 0) {
                f->open_gen = g;
                continue;
            }
            /* retry in a second, or at once when the members change */
            for (int k = 0; k < RETRY_MS / 50 && !f->quit && f->gen == g; k++) {
                pthread_mutex_unlock(&f->mu);
                sleep_ms(50);
                pthread_mutex_lock(&f->mu);
            }
            continue;
        }
        pthread_mutex_unlock(&f->mu);
        const tsr_kafka_msg_t *msgs;
        tsr_error_clear(&err);
        int n = tsr_kafka_consumer_poll(f->consumer, 100, &msgs, &err);
        pthread_mutex_lock(&f->mu);
        if (f->quit) break;
        feed_snapshot(f);
        pthread_mutex_unlock(&f->mu);
        if (n < 0) {
            for (size_t i = 0; i < f->nsnap; i++) set_error(f->snap[i], err.msg);
            feed_close(f);
        } else if (n == 0) {
            const tsr_kafka_partition_lag_t *lg;
            size_t nl = tsr_kafka_consumer_lag(f->consumer, &lg);
            for (size_t i = 0; i < f->nsnap; i++)
                if (f->snap[i]->ready && f->snap[i]->retry_at_ms == 0) member_lag(f->snap[i], lg, nl);
        } else {
            feed_dispatch(f, msgs, (size_t)n);
        }
        pthread_mutex_lock(&f->mu);
        feed_done(f);
    }
    pthread_mutex_unlock(&f->mu);
    f->nsnap = 0;
    feed_close(f);
    return NULL;
}

static void feed_free(feed_t *f) {
    pthread_mutex_destroy(&f->mu);
    pthread_cond_destroy(&f->cv);
    free(f->mem);
    free(f->snap);
    free(f->start);
    free(f->bootstrap);
    free(f);
}

/* glibc returns the free top of a heap to the kernel past 128 KiB and serves big blocks
 * (librdkafka's fetch buffers, the write-back flush's batch) from fresh mmaps: a process that
 * ingests then faults the same memory in, zeroed, again and again (the broker thread's
 * sysmalloc and page faults; its CPU per message was ~20 % lower without, bench of 1M
 * messages). Fixed thresholds keep that memory in the process; set once, before the first
 * consumer. In a program linked with jemalloc (-DTESSERA_JEMALLOC=ON) this tunes glibc's unused
 * allocator and changes nothing. */
static void malloc_tune(void) {
    mallopt(M_MMAP_THRESHOLD, 32 << 20);
    mallopt(M_TRIM_THRESHOLD, 64 << 20);
}

static void member_free(tsr_ingest_t *in) {
    free_partitions(in);
    pthread_mutex_destroy(&in->mu);
    tsr_gb_stream_free(in->eval);
    free(in->fields);
    free(in->row);
    free(in->want);
    free(in->sub);
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

/* Joins the feed of (bootstrap, topic), starting it if there is none. */
static int feed_join(tsr_ingest_t *in, tsr_error_t *err) {
    pthread_mutex_lock(&feeds_mu);
    feed_t *f = feeds;
    while (f && (strcmp(f->bootstrap, in->o.bootstrap) != 0 || strcmp(f->topic, in->topic) != 0))
        f = f->next;
    int fresh = !f;
    if (fresh) {
        f = tsr_calloc(1, sizeof *f);
        f->bootstrap = tsr_strdup(in->o.bootstrap);
        snprintf(f->topic, sizeof f->topic, "%s", in->topic);
        pthread_mutex_init(&f->mu, NULL);
        pthread_cond_init(&f->cv, NULL);
    }
    pthread_mutex_lock(&f->mu);
    if (f->nmem == f->cap) {
        f->cap = f->cap ? 2 * f->cap : 4;
        f->mem = tsr_realloc(f->mem, f->cap * sizeof *f->mem);
    }
    f->mem[f->nmem++] = in;
    f->gen++;
    in->feed = f;
    pthread_mutex_unlock(&f->mu);
    if (fresh) { /* started with its first member */
        if (pthread_create(&f->thread, NULL, feed_main, f) != 0) {
            pthread_mutex_unlock(&feeds_mu);
            feed_free(f);
            return tsr_error_set(err, TSR_EINTERNAL, "cannot start the ingest thread");
        }
        f->next = feeds;
        feeds = f;
    }
    pthread_mutex_unlock(&feeds_mu);
    return 0;
}

int tsr_ingest_start(const tsr_ingest_opts_t *opts, tsr_ingest_t **out, tsr_error_t *err) {
    static pthread_once_t tuned = PTHREAD_ONCE_INIT;
    pthread_once(&tuned, malloc_tune);
    *out = NULL;
    if (!opts->bootstrap || !opts->bootstrap[0])
        return tsr_error_set(err, TSR_EINVAL, "ingest: no Kafka bootstrap address");
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
    int rc = feed_join(in, err);
    if (rc) {
        member_free(in);
        return rc;
    }
    *out = in;
    return 0;
}

void tsr_ingest_stop(tsr_ingest_t *in) {
    if (!in) return;
    __atomic_store_n(&in->stop, 1, __ATOMIC_RELEASE);
    feed_t *f = in->feed;
    pthread_mutex_lock(&feeds_mu);
    pthread_mutex_lock(&f->mu);
    for (size_t i = 0; i < f->nmem; i++)
        if (f->mem[i] == in) {
            f->mem[i] = f->mem[--f->nmem];
            break;
        }
    f->gen++;
    int last = f->nmem == 0;
    if (last) { /* nobody can join it any more */
        f->quit = 1;
        feed_t **pp = &feeds;
        while (*pp != f) pp = &(*pp)->next;
        *pp = f->next;
    }
    pthread_mutex_unlock(&feeds_mu);
    /* the poll in hand may be writing for it: fencing means no write after stop returns */
    while (f->in_batch) pthread_cond_wait(&f->cv, &f->mu);
    pthread_mutex_unlock(&f->mu);
    if (last) {
        pthread_join(f->thread, NULL);
        feed_free(f);
    }
    member_free(in);
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
