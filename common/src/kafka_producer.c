/*
 * kafka_producer.c — shared librdkafka configuration, topic metadata, and the producer helper
 * behind `tessera produce`, tests and benchmarks.
 *
 * Design: one rd_kafka_t producer; messages are copied into librdkafka's queue
 * (RD_KAFKA_MSG_F_COPY) so callers may reuse their buffers at once; delivery reports are
 * served by rd_kafka_poll from send (every 1024 messages, and whenever the local queue is
 * full) and from flush, and only count: delivered / failed, plus the first failure's reason.
 * Keyed messages use the `murmur2_random` partitioner, Kafka's Java default, so a key maps to
 * the same partition whichever client produced it.
 *
 * Invariant: sent == delivered + failed + (messages still in librdkafka's queue).
 */
#include "kafka_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- shared configuration */

static void kafka_log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf) {
    (void)rk;
    static int enabled = -1;
    if (enabled < 0) enabled = getenv("TSR_KAFKA_LOG") != NULL;
    if (enabled) fprintf(stderr, "kafka[%d] %s: %s\n", level, fac, buf);
}

static void kafka_error_cb(rd_kafka_t *rk, int code, const char *reason, void *opaque) {
    tsr__kafka_errs_t *e = opaque;
    if (!e) return;
    e->count++;
    if (code == RD_KAFKA_RESP_ERR__FATAL) {
        char why[200];
        rd_kafka_fatal_error(rk, why, sizeof why);
        e->fatal = 1;
        snprintf(e->last, sizeof e->last, "fatal: %s", why);
        return;
    }
    snprintf(e->last, sizeof e->last, "%s", reason);
}

int tsr__kafka_conf_set(rd_kafka_conf_t *conf, const char *k, const char *v, tsr_error_t *err) {
    char why[256];
    if (rd_kafka_conf_set(conf, k, v, why, sizeof why) != RD_KAFKA_CONF_OK)
        return tsr_error_set(err, TSR_EINVAL, "kafka setting %s=%s: %s", k, v, why);
    return 0;
}

rd_kafka_conf_t *tsr__kafka_conf_new(const char *bootstrap, tsr__kafka_errs_t *errs,
                                     tsr_error_t *err) {
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    if ((bootstrap && tsr__kafka_conf_set(conf, "bootstrap.servers", bootstrap, err)) ||
        tsr__kafka_conf_set(conf, "client.id", "tessera", err)) {
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    rd_kafka_conf_set_log_cb(conf, kafka_log_cb);
    if (errs) {
        memset(errs, 0, sizeof *errs);
        rd_kafka_conf_set_error_cb(conf, kafka_error_cb);
        rd_kafka_conf_set_opaque(conf, errs);
    }
    return conf;
}

int tsr__kafka_partition_count(rd_kafka_t *rk, const char *bootstrap, const char *topic,
                               int timeout_ms, int32_t *out, tsr_error_t *err) {
    rd_kafka_topic_t *t = rd_kafka_topic_new(rk, topic, NULL);
    if (!t)
        return tsr_error_set(err, TSR_EINVAL, "kafka topic '%s': %s", topic,
                             rd_kafka_err2str(rd_kafka_last_error()));
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_resp_err_t e = rd_kafka_metadata(rk, 0, t, &md, timeout_ms);
    rd_kafka_topic_destroy(t);
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR)
        return tsr_error_set(err, TSR_EUNAVAIL,
                             "kafka at %s: no metadata for topic '%s' within %d ms (%s); is the "
                             "broker running? (`tessera dev-kafka` starts a local one)",
                             bootstrap, topic, timeout_ms, rd_kafka_err2str(e));
    int rc = 0;
    if (md->topic_cnt < 1 || md->topics[0].err != RD_KAFKA_RESP_ERR_NO_ERROR ||
        md->topics[0].partition_cnt < 1) {
        rc = tsr_error_set(err, TSR_ENOTFOUND, "kafka at %s: topic '%s' not found (%s)",
                           bootstrap, topic,
                           md->topic_cnt < 1 ? "no metadata" : rd_kafka_err2str(md->topics[0].err));
    } else {
        *out = md->topics[0].partition_cnt;
    }
    rd_kafka_metadata_destroy(md);
    return rc;
}

int tsr_kafka_topic_partitions(const char *bootstrap, const char *topic, int timeout_ms,
                               int32_t *out, tsr_error_t *err) {
    if (!bootstrap || !*bootstrap || !topic || !*topic)
        return tsr_error_set(err, TSR_EINVAL, "kafka: bootstrap and topic are required");
    tsr__kafka_errs_t errs;
    rd_kafka_conf_t *conf = tsr__kafka_conf_new(bootstrap, &errs, err);
    if (!conf) return err ? err->code : TSR_EINVAL;
    if (tsr__kafka_conf_set(conf, "allow.auto.create.topics", "false", err)) {
        rd_kafka_conf_destroy(conf);
        return TSR_EINVAL;
    }
    char why[256];
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, why, sizeof why);
    if (!rk) {
        rd_kafka_conf_destroy(conf);
        return tsr_error_set(err, TSR_EINVAL, "kafka client: %s", why);
    }
    int rc = tsr__kafka_partition_count(rk, bootstrap, topic, timeout_ms, out, err);
    rd_kafka_destroy(rk);
    return rc;
}

/* ---------------------------------------------------------------- producer */

struct tsr_kafka_producer {
    rd_kafka_t *rk;
    tsr__kafka_errs_t errs;     /* the handle's opaque */
    char *bootstrap;
    rd_kafka_topic_t *rkt;      /* topic handle of the last send (saves a lookup per send) */
    char *rkt_name;
    uint64_t sent, delivered, failed;
    char first_failure[256];
};

static void producer_dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque) {
    (void)rk;
    tsr__kafka_errs_t *errs = opaque;
    /* errs is the first member's neighbour: recover the producer from it */
    tsr_kafka_producer_t *p =
        (tsr_kafka_producer_t *)((char *)errs - offsetof(tsr_kafka_producer_t, errs));
    if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
        p->delivered++;
        return;
    }
    if (p->failed++ == 0)
        snprintf(p->first_failure, sizeof p->first_failure, "topic '%s' partition %d: %s",
                 rd_kafka_topic_name(m->rkt), (int)m->partition, rd_kafka_err2str(m->err));
}

int tsr_kafka_producer_open(const char *bootstrap, tsr_kafka_producer_t **out, tsr_error_t *err) {
    *out = NULL;
    if (!bootstrap || !*bootstrap)
        return tsr_error_set(err, TSR_EINVAL, "kafka producer: no bootstrap address");
    tsr_kafka_producer_t *p = tsr_calloc(1, sizeof *p);
    rd_kafka_conf_t *conf = tsr__kafka_conf_new(bootstrap, &p->errs, err);
    if (!conf) {
        free(p);
        return TSR_EINVAL;
    }
    /* murmur2_random: Java's default partitioner (murmur2 for keys, random without a key).
     * linger 5 ms batches bursts; 30 s delivery timeout bounds a dead broker. */
    if (tsr__kafka_conf_set(conf, "partitioner", "murmur2_random", err) ||
        tsr__kafka_conf_set(conf, "acks", "all", err) ||
        tsr__kafka_conf_set(conf, "linger.ms", "5", err) ||
        tsr__kafka_conf_set(conf, "message.timeout.ms", "30000", err) ||
        tsr__kafka_conf_set(conf, "queue.buffering.max.messages", "500000", err)) {
        rd_kafka_conf_destroy(conf);
        free(p);
        return TSR_EINVAL;
    }
    rd_kafka_conf_set_dr_msg_cb(conf, producer_dr_cb);
    char why[256];
    p->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, why, sizeof why);
    if (!p->rk) {
        rd_kafka_conf_destroy(conf);
        free(p);
        return tsr_error_set(err, TSR_EINVAL, "kafka producer for %s: %s", bootstrap, why);
    }
    p->bootstrap = tsr_strdup(bootstrap);
    *out = p;
    return 0;
}

int tsr_kafka_producer_send(tsr_kafka_producer_t *p, const char *topic, const void *key,
                            size_t key_len, const void *value, size_t value_len,
                            int32_t partition, tsr_error_t *err) {
    if (!topic || !*topic) return tsr_error_set(err, TSR_EINVAL, "kafka producer: no topic");
    if (partition < -1)
        return tsr_error_set(err, TSR_EINVAL, "kafka producer: bad partition %d", (int)partition);
    if (!p->rkt || strcmp(p->rkt_name, topic) != 0) {
        if (p->rkt) rd_kafka_topic_destroy(p->rkt);
        free(p->rkt_name);
        p->rkt_name = NULL;
        p->rkt = rd_kafka_topic_new(p->rk, topic, NULL);
        if (!p->rkt)
            return tsr_error_set(err, TSR_EINVAL, "kafka producer: topic '%s': %s", topic,
                                 rd_kafka_err2str(rd_kafka_last_error()));
        p->rkt_name = tsr_strdup(topic);
    }
    for (;;) {
        rd_kafka_resp_err_t e = rd_kafka_producev(
            p->rk, RD_KAFKA_V_RKT(p->rkt),
            RD_KAFKA_V_PARTITION(partition < 0 ? RD_KAFKA_PARTITION_UA : partition),
            RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_KEY(key, key ? key_len : 0),
            RD_KAFKA_V_VALUE((void *)value, value_len), RD_KAFKA_V_END);
        if (e == RD_KAFKA_RESP_ERR_NO_ERROR) break;
        if (e == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
            /* bounded: queued messages are delivered or expire after message.timeout.ms */
            rd_kafka_poll(p->rk, 50);
            continue;
        }
        if (e == RD_KAFKA_RESP_ERR__FATAL) {
            char why[200];
            rd_kafka_fatal_error(p->rk, why, sizeof why);
            return tsr_error_set(err, TSR_EUNAVAIL, "kafka producer for %s: fatal: %s",
                                 p->bootstrap, why);
        }
        return tsr_error_set(err, e == RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE ? TSR_EINVAL
                                                                             : TSR_EUNAVAIL,
                             "kafka producer: topic '%s': %s", topic, rd_kafka_err2str(e));
    }
    if ((++p->sent & 1023) == 0) rd_kafka_poll(p->rk, 0);
    return 0;
}

int tsr_kafka_producer_flush(tsr_kafka_producer_t *p, int timeout_ms, tsr_error_t *err) {
    rd_kafka_resp_err_t e = rd_kafka_flush(p->rk, timeout_ms);
    rd_kafka_poll(p->rk, 0);
    if (p->failed)
        return tsr_error_set(err, TSR_EUNAVAIL,
                             "kafka at %s: %llu of %llu messages not delivered; first: %s",
                             p->bootstrap, (unsigned long long)p->failed,
                             (unsigned long long)p->sent, p->first_failure);
    if (e == RD_KAFKA_RESP_ERR__TIMED_OUT) {
        int inflight = rd_kafka_outq_len(p->rk);
        return tsr_error_set(err, TSR_ETIMEOUT,
                             "kafka at %s: %d messages still undelivered after %d ms%s%s",
                             p->bootstrap, inflight, timeout_ms,
                             p->errs.last[0] ? "; last error: " : "", p->errs.last);
    }
    return 0;
}

int tsr_kafka_producer_partitions(tsr_kafka_producer_t *p, const char *topic, int timeout_ms,
                                  int32_t *out, tsr_error_t *err) {
    return tsr__kafka_partition_count(p->rk, p->bootstrap, topic, timeout_ms, out, err);
}

void tsr_kafka_producer_stats(const tsr_kafka_producer_t *p, tsr_kafka_producer_stats_t *out) {
    out->sent = p->sent;
    out->delivered = p->delivered;
    out->failed = p->failed;
}

void tsr_kafka_producer_close(tsr_kafka_producer_t *p) {
    if (!p) return;
    /* purge what is still queued so destroy does not wait for a dead broker */
    rd_kafka_purge(p->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
    rd_kafka_poll(p->rk, 0);
    if (p->rkt) rd_kafka_topic_destroy(p->rkt);
    free(p->rkt_name);
    rd_kafka_destroy(p->rk);
    free(p->bootstrap);
    free(p);
}
