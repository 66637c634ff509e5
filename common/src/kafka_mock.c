/*
 * kafka_mock.c — a local Kafka-protocol broker: librdkafka's mock cluster (one broker on a
 * free 127.0.0.1 port), hosted by a client handle of this process. Used by `tessera
 * dev-kafka`, unit tests and benchmarks; any Kafka client in any process can reach it.
 *
 * Limits (librdkafka 2.0.2, API marked experimental): no CreateTopics admin request (topics
 * are made here or auto-created with 4 partitions by the first Metadata/Produce naming them),
 * no persistence, and each partition keeps only ~5 MiB or 100k message sets: older ones are
 * pruned, so a consumer that falls far behind sees its offset go out of range.
 *
 * rdkafka.h must be included before rdkafka_mock.h (kafka_int.h does).
 */
#include "kafka_int.h"

#include <librdkafka/rdkafka_mock.h>
#include <stdlib.h>
#include <string.h>

struct tsr_kafka_mock {
    rd_kafka_t *host;           /* the handle whose background threads run the brokers */
    rd_kafka_mock_cluster_t *mc;
    char *bootstrap;
};

int tsr_kafka_mock_start(const tsr_kafka_mock_opts_t *opts, tsr_kafka_mock_t **out,
                         tsr_error_t *err) {
    *out = NULL;
    int parts = opts && opts->partitions > 0 ? opts->partitions : 4;
    if (parts > 100000)
        return tsr_error_set(err, TSR_EINVAL, "kafka mock: %d partitions is too many", parts);
    rd_kafka_conf_t *conf = tsr__kafka_conf_new(NULL, NULL, err);
    if (!conf) return TSR_EINVAL;
    char why[256];
    tsr_kafka_mock_t *m = tsr_calloc(1, sizeof *m);
    m->host = rd_kafka_new(RD_KAFKA_PRODUCER, conf, why, sizeof why);
    if (!m->host) {
        rd_kafka_conf_destroy(conf);
        free(m);
        return tsr_error_set(err, TSR_EINVAL, "kafka mock: %s", why);
    }
    m->mc = rd_kafka_mock_cluster_new(m->host, 1);
    if (!m->mc) {
        rd_kafka_destroy(m->host);
        free(m);
        return tsr_error_set(err, TSR_EUNAVAIL,
                             "kafka mock: cannot start the mock cluster (no free loopback port?)");
    }
    m->bootstrap = tsr_strdup(rd_kafka_mock_cluster_bootstraps(m->mc));
    for (size_t i = 0; opts && i < opts->ntopics; i++) {
        int rc = tsr_kafka_mock_topic_create(m, opts->topics[i], parts, err);
        if (rc) {
            tsr_kafka_mock_stop(m);
            return rc;
        }
    }
    *out = m;
    return 0;
}

const char *tsr_kafka_mock_bootstrap(const tsr_kafka_mock_t *m) { return m->bootstrap; }

/* Kafka's legal topic names: [a-zA-Z0-9._-]{1,249}, not "." or "..". */
static int topic_name_ok(const char *t) {
    size_t n = strlen(t);
    if (n == 0 || n > 249 || strcmp(t, ".") == 0 || strcmp(t, "..") == 0) return 0;
    for (size_t i = 0; i < n; i++) {
        char ch = t[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '.' || ch == '_' || ch == '-'))
            return 0;
    }
    return 1;
}

int tsr_kafka_mock_topic_create(tsr_kafka_mock_t *m, const char *topic, int partitions,
                                tsr_error_t *err) {
    if (!topic || !topic_name_ok(topic))
        return tsr_error_set(err, TSR_EINVAL,
                             "kafka mock: bad topic name '%s' (1..249 of [a-zA-Z0-9._-])",
                             topic ? topic : "");
    if (partitions < 1 || partitions > 100000)
        return tsr_error_set(err, TSR_EINVAL, "kafka mock: topic '%s': bad partition count %d",
                             topic, partitions);
    rd_kafka_resp_err_t e = rd_kafka_mock_topic_create(m->mc, topic, partitions, 1);
    if (e == RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS)
        return tsr_error_set(err, TSR_EEXIST, "kafka mock: topic '%s' already exists", topic);
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR)
        return tsr_error_set(err, TSR_EINTERNAL, "kafka mock: create topic '%s': %s", topic,
                             rd_kafka_err2str(e));
    return 0;
}

void tsr_kafka_mock_stop(tsr_kafka_mock_t *m) {
    if (!m) return;
    rd_kafka_mock_cluster_destroy(m->mc);
    rd_kafka_destroy(m->host);
    free(m->bootstrap);
    free(m);
}
