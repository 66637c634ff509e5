/*
 * kafka_consumer.c — the worker's Kafka consumer: explicit partition assignment, offsets
 * owned by the caller, batched polls of borrowed message views, local lag.
 *
 * Design:
 *   - rd_kafka_assign with absolute start offsets. librdkafka needs a group.id for assign to
 *     exist, but with no subscribe() there is no group join and nothing is committed
 *     (enable.auto.commit=false, enable.auto.offset.store=false): the caller stores the
 *     offset of the next message to read with its own data (SPEC §6 exactly-once).
 *   - Logical starts (BEGINNING / END) are resolved to absolute offsets at open with one
 *     watermark query, so every assigned partition has a known position from the start and
 *     lag is defined before the first message arrives.
 *   - poll: drain what is queued without waiting (rd_kafka_consume_batch_queue with timeout
 *     0); only when nothing is queued, wait for one message up to timeout_ms and then drain
 *     again. (consume_batch_queue with a timeout waits for a FULL batch, which would add the
 *     whole timeout to the latency of a trickle of events.)
 *   - The message array and views are allocated at open; a poll destroys the previous
 *     batch's messages and reuses them. Errors that need the caller (offset out of range
 *     under RESET_ERROR, unknown partition) are held back until the data messages before
 *     them have been returned, then reported by the next poll.
 *
 * Invariants: 1. position[i] = offset after the last message of partition part[i] returned
 * by poll (or the start offset). 2. Within a partition, poll returns strictly increasing
 * offsets (librdkafka's fetcher guarantees order; a seek never happens behind our back).
 */
#include "kafka_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct tsr_kafka_consumer {
    rd_kafka_t *rk;
    rd_kafka_queue_t *q;
    tsr__kafka_errs_t errs;     /* handle's opaque: error_cb writes here */
    char *topic;
    char *bootstrap;
    size_t npart;
    int32_t *part;              /* assigned partitions */
    int64_t *position;          /* next offset per assigned partition */
    int64_t *high;              /* last known high watermark, -1 unknown */
    int32_t *slot;              /* partition id -> index in part, -1 = not assigned */
    int32_t nslot;
    tsr_kafka_partition_lag_t *lag;
    size_t max_batch;
    rd_kafka_message_t **raw;   /* current batch (destroyed at the next poll) */
    size_t nraw;
    tsr_kafka_msg_t *view;
    int pending_rc;             /* error to report at the next poll, 0 = none */
    char pending_msg[384];
    char last_error[256];
};

static const char *reset_name(tsr_kafka_reset_t r) {
    switch (r) {
    case TSR_KAFKA_RESET_LATEST: return "latest";
    case TSR_KAFKA_RESET_ERROR: return "error";
    default: return "earliest";
    }
}

static void consumer_free(tsr_kafka_consumer_t *c) {
    if (c->raw)
        for (size_t i = 0; i < c->nraw; i++) rd_kafka_message_destroy(c->raw[i]);
    if (c->q) rd_kafka_queue_destroy(c->q);
    if (c->rk) {
        rd_kafka_assign(c->rk, NULL);
        rd_kafka_destroy(c->rk);
    }
    free(c->topic);
    free(c->bootstrap);
    free(c->part);
    free(c->position);
    free(c->high);
    free(c->slot);
    free(c->lag);
    free(c->raw);
    free(c->view);
    free(c);
}

int tsr_kafka_consumer_open(const tsr_kafka_consumer_opts_t *o, tsr_kafka_consumer_t **out,
                            tsr_error_t *err) {
    *out = NULL;
    if (!o || !o->bootstrap || !*o->bootstrap || !o->topic || !*o->topic)
        return tsr_error_set(err, TSR_EINVAL, "kafka consumer: bootstrap and topic are required");
    if (o->partitions && o->npartitions == 0)
        return tsr_error_set(err, TSR_EINVAL, "kafka consumer: empty partition list");
    if (o->default_offset < TSR_KAFKA_OFFSET_BEGINNING)
        return tsr_error_set(err, TSR_EINVAL, "kafka consumer: bad default offset %lld",
                             (long long)o->default_offset);
    int timeout = o->timeout_ms > 0 ? o->timeout_ms : 10000;
    tsr_kafka_consumer_t *c = tsr_calloc(1, sizeof *c);
    c->topic = tsr_strdup(o->topic);
    c->bootstrap = tsr_strdup(o->bootstrap);
    c->max_batch = o->max_batch ? o->max_batch : 4096;
    int rc = 0;
    rd_kafka_conf_t *conf = tsr__kafka_conf_new(o->bootstrap, &c->errs, err);
    if (!conf) {
        consumer_free(c);
        return TSR_EINVAL;
    }
    /* group.id only enables rd_kafka_assign; nothing joins or commits. fetch.wait.max.ms
     * bounds how long an idle fetch parks at the broker: it is the floor of freshness. */
    if ((rc = tsr__kafka_conf_set(conf, "group.id", "tessera-assign", err)) ||
        (rc = tsr__kafka_conf_set(conf, "enable.auto.commit", "false", err)) ||
        (rc = tsr__kafka_conf_set(conf, "enable.auto.offset.store", "false", err)) ||
        (rc = tsr__kafka_conf_set(conf, "enable.partition.eof", "false", err)) ||
        (rc = tsr__kafka_conf_set(conf, "allow.auto.create.topics", "false", err)) ||
        (rc = tsr__kafka_conf_set(conf, "fetch.wait.max.ms", "20", err)) ||
        (rc = tsr__kafka_conf_set(conf, "auto.offset.reset", reset_name(o->reset), err))) {
        rd_kafka_conf_destroy(conf);
        consumer_free(c);
        return rc;
    }
    /* TSR_KAFKA_CONSUMER_CONF="key=value,key=value": librdkafka properties applied after
     * these (tuning and measurements: fetch sizes, prefetch queue) */
    const char *extra = getenv("TSR_KAFKA_CONSUMER_CONF");
    if (extra && *extra) {
        char *list = tsr_strdup(extra), *save = NULL;
        for (char *kv = strtok_r(list, ",", &save); kv && rc == 0; kv = strtok_r(NULL, ",", &save)) {
            char *eq = strchr(kv, '=');
            if (!eq) {
                rc = tsr_error_set(err, TSR_EINVAL, "TSR_KAFKA_CONSUMER_CONF: '%s' is not key=value", kv);
                break;
            }
            *eq = 0;
            rc = tsr__kafka_conf_set(conf, kv, eq + 1, err);
        }
        free(list);
        if (rc) {
            rd_kafka_conf_destroy(conf);
            consumer_free(c);
            return rc;
        }
    }
    char why[256];
    c->rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, why, sizeof why);
    if (!c->rk) {
        rd_kafka_conf_destroy(conf);
        consumer_free(c);
        return tsr_error_set(err, TSR_EINVAL, "kafka consumer for %s: %s", o->bootstrap, why);
    }
    rd_kafka_poll_set_consumer(c->rk);
    c->q = rd_kafka_queue_get_consumer(c->rk);

    int32_t nparts_topic = 0;
    if ((rc = tsr__kafka_partition_count(c->rk, o->bootstrap, o->topic, timeout, &nparts_topic,
                                         err))) {
        consumer_free(c);
        return rc;
    }
    c->npart = o->partitions ? o->npartitions : (size_t)nparts_topic;
    c->part = tsr_malloc(c->npart * sizeof *c->part);
    c->position = tsr_malloc(c->npart * sizeof *c->position);
    c->high = tsr_malloc(c->npart * sizeof *c->high);
    c->lag = tsr_malloc(c->npart * sizeof *c->lag);
    c->nslot = nparts_topic;
    c->slot = tsr_malloc((size_t)nparts_topic * sizeof *c->slot);
    for (int32_t i = 0; i < nparts_topic; i++) c->slot[i] = -1;
    for (size_t i = 0; i < c->npart; i++) {
        int32_t p = o->partitions ? o->partitions[i] : (int32_t)i;
        int64_t off = o->offsets ? o->offsets[i] : o->default_offset;
        if (p < 0 || p >= nparts_topic) {
            rc = tsr_error_set(err, TSR_ENOTFOUND,
                               "kafka topic '%s' has %d partitions: no partition %d",
                               o->topic, (int)nparts_topic, (int)p);
            break;
        }
        if (c->slot[p] >= 0) {
            rc = tsr_error_set(err, TSR_EINVAL, "kafka consumer: partition %d listed twice",
                               (int)p);
            break;
        }
        if (off < TSR_KAFKA_OFFSET_BEGINNING) {
            rc = tsr_error_set(err, TSR_EINVAL, "kafka consumer: partition %d: bad offset %lld",
                               (int)p, (long long)off);
            break;
        }
        c->slot[p] = (int32_t)i;
        c->part[i] = p;
        c->high[i] = -1;
        if (off < 0) {
            /* resolve BEGINNING/END now so the position (and lag) is known from the start */
            int64_t lo = -1, hi = -1;
            rd_kafka_resp_err_t e =
                rd_kafka_query_watermark_offsets(c->rk, o->topic, p, &lo, &hi, timeout);
            if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
                rc = tsr_error_set(err, TSR_EUNAVAIL,
                                   "kafka at %s: topic '%s' partition %d: no watermarks within "
                                   "%d ms (%s)",
                                   o->bootstrap, o->topic, (int)p, timeout, rd_kafka_err2str(e));
                break;
            }
            off = off == TSR_KAFKA_OFFSET_BEGINNING ? lo : hi;
            c->high[i] = hi;
        }
        c->position[i] = off;
    }
    if (rc) {
        consumer_free(c);
        return rc;
    }
    rd_kafka_topic_partition_list_t *tl = rd_kafka_topic_partition_list_new((int)c->npart);
    for (size_t i = 0; i < c->npart; i++)
        rd_kafka_topic_partition_list_add(tl, o->topic, c->part[i])->offset = c->position[i];
    rd_kafka_resp_err_t e = rd_kafka_assign(c->rk, tl);
    rd_kafka_topic_partition_list_destroy(tl);
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
        consumer_free(c);
        return tsr_error_set(err, TSR_EUNAVAIL, "kafka consumer: assign on topic '%s': %s",
                             o->topic, rd_kafka_err2str(e));
    }
    c->raw = tsr_malloc(c->max_batch * sizeof *c->raw);
    c->view = tsr_malloc(c->max_batch * sizeof *c->view);
    *out = c;
    return 0;
}

/* Classifies an error message from the queue: returns a TSR code to hold back for the
 * caller, or 0 for a transient error (counted). */
static int classify(tsr_kafka_consumer_t *c, const rd_kafka_message_t *m) {
    const char *what = rd_kafka_message_errstr(m);
    int code = 0;
    switch (m->err) {
    case RD_KAFKA_RESP_ERR__AUTO_OFFSET_RESET:
    case RD_KAFKA_RESP_ERR_OFFSET_OUT_OF_RANGE: code = TSR_ECORRUPT; break;
    case RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION:
    case RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC:
    case RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART: code = TSR_ENOTFOUND; break;
    case RD_KAFKA_RESP_ERR__FATAL: code = TSR_EUNAVAIL; break;
    default: break;
    }
    if (!code) {
        c->errs.count++;
        snprintf(c->last_error, sizeof c->last_error, "partition %d: %s", (int)m->partition,
                 what);
        return 0;
    }
    if (!c->pending_rc) {
        c->pending_rc = code;
        snprintf(c->pending_msg, sizeof c->pending_msg, "kafka topic '%s' partition %d: %s",
                 c->topic, (int)m->partition, what);
    }
    return code;
}

int tsr_kafka_consumer_poll(tsr_kafka_consumer_t *c, int timeout_ms, const tsr_kafka_msg_t **msgs,
                            tsr_error_t *err) {
    *msgs = c->view;
    for (size_t i = 0; i < c->nraw; i++) rd_kafka_message_destroy(c->raw[i]);
    c->nraw = 0;
    if (c->pending_rc) {
        int rc = c->pending_rc;
        c->pending_rc = 0;
        return tsr_error_set(err, rc, "%s", c->pending_msg);
    }
    if (c->errs.fatal)
        return tsr_error_set(err, TSR_EUNAVAIL, "kafka consumer for %s: %s", c->bootstrap,
                             c->errs.last);
    ssize_t n = rd_kafka_consume_batch_queue(c->q, 0, c->raw, c->max_batch);
    if (n == 0 && timeout_ms > 0) {
        rd_kafka_message_t *m = rd_kafka_consume_queue(c->q, timeout_ms);
        if (m) {
            c->raw[0] = m;
            n = 1;
            if (c->max_batch > 1) {
                ssize_t more = rd_kafka_consume_batch_queue(c->q, 0, c->raw + 1, c->max_batch - 1);
                if (more > 0) n += more;
            }
        }
    }
    if (n < 0)
        return tsr_error_set(err, TSR_EUNAVAIL, "kafka consumer: %s",
                             rd_kafka_err2str(rd_kafka_last_error()));
    c->nraw = (size_t)n;
    size_t nv = 0;
    for (size_t i = 0; i < c->nraw; i++) {
        const rd_kafka_message_t *m = c->raw[i];
        if (m->err) {
            if (classify(c, m)) break;  /* hand out what came before; report next poll */
            continue;
        }
        int32_t p = m->partition;
        int32_t s = p >= 0 && p < c->nslot ? c->slot[p] : -1;
        if (s < 0) continue;    /* not ours (cannot happen with assign; be safe) */
        tsr_kafka_msg_t *v = &c->view[nv++];
        rd_kafka_timestamp_type_t tt;
        v->partition = p;
        v->offset = m->offset;
        v->timestamp_ms = rd_kafka_message_timestamp(m, &tt);
        v->key = m->key;
        v->key_len = m->key ? m->key_len : 0;
        v->value = m->payload;
        v->value_len = m->payload ? m->len : 0;
        c->position[s] = m->offset + 1;
    }
    if (nv == 0 && c->pending_rc) {
        int rc = c->pending_rc;
        c->pending_rc = 0;
        return tsr_error_set(err, rc, "%s", c->pending_msg);
    }
    return (int)nv;
}

size_t tsr_kafka_consumer_lag(tsr_kafka_consumer_t *c, const tsr_kafka_partition_lag_t **out) {
    for (size_t i = 0; i < c->npart; i++) {
        int64_t lo = -1, hi = -1;
        if (rd_kafka_get_watermark_offsets(c->rk, c->topic, c->part[i], &lo, &hi) ==
                RD_KAFKA_RESP_ERR_NO_ERROR &&
            hi >= 0)
            c->high[i] = hi;
        tsr_kafka_partition_lag_t *l = &c->lag[i];
        l->partition = c->part[i];
        l->position = c->position[i];
        l->high = c->high[i];
        if (l->high < 0 || l->position < 0) l->lag = -1;
        else l->lag = l->high > l->position ? l->high - l->position : 0;
    }
    *out = c->lag;
    return c->npart;
}

int64_t tsr_kafka_consumer_total_lag(tsr_kafka_consumer_t *c) {
    const tsr_kafka_partition_lag_t *l;
    size_t n = tsr_kafka_consumer_lag(c, &l);
    int64_t sum = 0;
    for (size_t i = 0; i < n; i++)
        if (l[i].lag > 0) sum += l[i].lag;
    return sum;
}

const char *tsr_kafka_consumer_last_error(const tsr_kafka_consumer_t *c) {
    if (c->last_error[0]) return c->last_error;
    return c->errs.last;
}

uint64_t tsr_kafka_consumer_error_count(const tsr_kafka_consumer_t *c) { return c->errs.count; }

void tsr_kafka_consumer_close(tsr_kafka_consumer_t *c) {
    if (c) consumer_free(c);
}
