/*
 * cmd_dev_kafka.c — `tessera dev-kafka [--partitions N] [--topic T ...] [--port P]`: a local
 * Kafka-protocol broker for development and tests (SPEC §7 "Embedded default").
 *
 * Design: librdkafka's mock cluster (tsr/kafka.h) listens on a free 127.0.0.1 port. With
 * --port P this process also listens on 127.0.0.1:P and forwards each connection to the mock
 * broker byte for byte: clients bootstrap through P, then learn the broker's own address
 * from the Metadata response and connect there directly, as with any Kafka cluster.
 * The bootstrap address is the FIRST line of stdout (flushed), so a script can read it.
 *
 * Lifecycle:
 *     start ──(mock up, topics made)──> print bootstrap ──> serve ──SIGINT/SIGTERM──> stop, exit 0
 * SIGINT and SIGTERM are blocked in every thread (librdkafka's threads inherit the mask) and
 * collected with sigtimedwait by the main loop, which also runs the forwarder's poll().
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>

#include "cli_int.h"
#include "tsr/kafka.h"

#define FWD_MAX_CONN 64
#define FWD_BUF (64 * 1024)

/* One forwarded connection: fd[0] client, fd[1] broker; buf[d] holds bytes read from
 * fd[d] not yet written to fd[1-d]. A side that hits EOF or an error closes the pair. */
typedef struct fwd_conn {
    int fd[2];
    size_t len[2], off[2];
    char *buf[2];
} fwd_conn_t;

typedef struct fwd {
    int lfd;
    struct sockaddr_in broker;
    fwd_conn_t conn[FWD_MAX_CONN];
    size_t nconn;
} fwd_t;

static int parse_int(const char *s, long lo, long hi, long *out) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) return -1;
    *out = v;
    return 0;
}

static void fwd_close(fwd_t *f, size_t i) {
    fwd_conn_t *c = &f->conn[i];
    close(c->fd[0]);
    close(c->fd[1]);
    free(c->buf[0]);
    free(c->buf[1]);
    f->conn[i] = f->conn[--f->nconn];
}

static int fwd_open(fwd_t *f, int port, const char *bootstrap, tsr_error_t *err) {
    const char *colon = strrchr(bootstrap, ':');
    memset(&f->broker, 0, sizeof f->broker);
    f->broker.sin_family = AF_INET;
    f->broker.sin_port = htons((uint16_t)atoi(colon ? colon + 1 : "0"));
    f->broker.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    f->lfd = socket(AF_INET, SOCK_STREAM, 0);
    if (f->lfd < 0) return tsr_error_set(err, TSR_EUNAVAIL, "socket: %s", strerror(errno));
    int one = 1;
    setsockopt(f->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(f->lfd, (struct sockaddr *)&a, sizeof a) || listen(f->lfd, 16)) {
        int e = errno;
        close(f->lfd);
        return tsr_error_set(err, TSR_EUNAVAIL, "cannot listen on 127.0.0.1:%d: %s", port,
                             strerror(e));
    }
    fcntl(f->lfd, F_SETFL, O_NONBLOCK);
    return 0;
}

static void fwd_accept(fwd_t *f) {
    int cfd = accept(f->lfd, NULL, NULL);
    if (cfd < 0) return;
    if (f->nconn == FWD_MAX_CONN) {
        close(cfd);
        return;
    }
    int bfd = socket(AF_INET, SOCK_STREAM, 0);
    /* loopback connect to a listening mock broker completes at once */
    if (bfd < 0 || connect(bfd, (struct sockaddr *)&f->broker, sizeof f->broker)) {
        if (bfd >= 0) close(bfd);
        close(cfd);
        return;
    }
    fcntl(cfd, F_SETFL, O_NONBLOCK);
    fcntl(bfd, F_SETFL, O_NONBLOCK);
    fwd_conn_t *c = &f->conn[f->nconn++];
    memset(c, 0, sizeof *c);
    c->fd[0] = cfd;
    c->fd[1] = bfd;
    c->buf[0] = tsr_malloc(FWD_BUF);
    c->buf[1] = tsr_malloc(FWD_BUF);
}

/* Moves bytes for connection i per its poll results; returns -1 when the pair must close. */
static int fwd_pump(fwd_conn_t *c, const short *rev) {
    for (int d = 0; d < 2; d++) {
        if (c->len[d] == 0 && (rev[d] & (POLLIN | POLLHUP | POLLERR))) {
            ssize_t n = read(c->fd[d], c->buf[d], FWD_BUF);
            if (n == 0) return -1;
            if (n < 0 && errno != EAGAIN && errno != EINTR) return -1;
            if (n > 0) {
                c->len[d] = (size_t)n;
                c->off[d] = 0;
            }
        }
        if (c->len[d] > 0) {
            ssize_t w = write(c->fd[1 - d], c->buf[d] + c->off[d], c->len[d] - c->off[d]);
            if (w < 0 && errno != EAGAIN && errno != EINTR) return -1;
            if (w > 0) {
                c->off[d] += (size_t)w;
                if (c->off[d] == c->len[d]) c->len[d] = c->off[d] = 0;
            }
        }
    }
    return 0;
}

/* Serves until SIGINT/SIGTERM (blocked in `set`). f may have lfd < 0 (no forwarder). */
static void serve(fwd_t *f, const sigset_t *set) {
    struct pollfd pfd[1 + 2 * FWD_MAX_CONN];
    struct timespec zero = {0, 0};
    for (;;) {
        if (sigtimedwait(set, NULL, &zero) > 0) return;
        nfds_t n = 0;
        if (f->lfd >= 0) {
            pfd[n].fd = f->lfd;
            pfd[n].events = POLLIN;
            n++;
        }
        for (size_t i = 0; i < f->nconn; i++)
            for (int d = 0; d < 2; d++) {
                fwd_conn_t *c = &f->conn[i];
                pfd[n].fd = c->fd[d];
                /* read side d only when its buffer is empty; write side d when the other
                 * direction has bytes pending */
                pfd[n].events = (short)((c->len[d] == 0 ? POLLIN : 0) |
                                        (c->len[1 - d] > 0 ? POLLOUT : 0));
                n++;
            }
        int r = poll(pfd, n, 100);
        if (r <= 0) continue;
        size_t k = 0;
        if (f->lfd >= 0) {
            if (pfd[0].revents & POLLIN) fwd_accept(f);
            k = 1;
        }
        size_t npairs = (n - k) / 2;
        /* walk backwards: fwd_close moves the last pair into the closed slot */
        for (size_t i = npairs; i-- > 0;) {
            short rev[2] = {pfd[k + 2 * i].revents, pfd[k + 2 * i + 1].revents};
            if (fwd_pump(&f->conn[i], rev)) fwd_close(f, i);
        }
    }
}

static int run_dev_kafka(int argc, char **argv) {
    const tsr_cli_cmd_t *cmd = &tsr_cmd_dev_kafka_def;
    long partitions = 4, port = -1;
    const char **topics = tsr_calloc((size_t)argc, sizeof *topics);
    size_t ntopics = 0;
    int rc = 0;
    for (int i = 1; i < argc && !rc; i++) {
        const char *a = argv[i];
        if (a[0] != '-') {
            rc = tsr_cli_usage_error(cmd, "unexpected argument '%s'", a);
            break;
        }
        if (i + 1 >= argc) {
            rc = tsr_cli_usage_error(cmd, "%s needs a value (or is unknown)", a);
            break;
        }
        const char *v = argv[++i];
        if (strcmp(a, "--partitions") == 0) {
            if (parse_int(v, 1, 10000, &partitions))
                rc = tsr_cli_usage_error(cmd, "--partitions must be 1..10000, got '%s'", v);
        } else if (strcmp(a, "--port") == 0) {
            if (parse_int(v, 1, 65535, &port))
                rc = tsr_cli_usage_error(cmd, "--port must be 1..65535, got '%s'", v);
        } else if (strcmp(a, "--topic") == 0) {
            topics[ntopics++] = v;
        } else {
            rc = tsr_cli_usage_error(cmd, "unknown option '%s'", a);
        }
    }
    if (rc) {
        free(topics);
        return rc;
    }
    /* block the stop signals before any thread exists, so only sigtimedwait sees them */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);

    tsr_error_t err;
    tsr_error_clear(&err);
    tsr_kafka_mock_opts_t mo = {(int)partitions, topics, ntopics};
    tsr_kafka_mock_t *m = NULL;
    rc = tsr_kafka_mock_start(&mo, &m, &err);
    free(topics);
    if (rc) {
        fprintf(stderr, "tessera dev-kafka: %s\n", err.msg);
        return tsr_error_exit_code(rc);
    }
    fwd_t *f = tsr_calloc(1, sizeof *f);
    f->lfd = -1;
    if (port > 0 && (rc = fwd_open(f, (int)port, tsr_kafka_mock_bootstrap(m), &err))) {
        fprintf(stderr, "tessera dev-kafka: %s\n", err.msg);
        free(f);
        tsr_kafka_mock_stop(m);
        return tsr_error_exit_code(rc);
    }
    if (port > 0) printf("127.0.0.1:%ld\n", port);
    else printf("%s\n", tsr_kafka_mock_bootstrap(m));
    fflush(stdout);
    fprintf(stderr,
            "tessera dev-kafka: mock Kafka broker at %s (broker %s); %s%ld partitions for "
            "--topic topics, 4 for auto-created ones; stop with Ctrl-C or SIGTERM\n",
            port > 0 ? "the address above" : tsr_kafka_mock_bootstrap(m),
            tsr_kafka_mock_bootstrap(m), mo.ntopics ? "" : "no topics yet; ", partitions);
    serve(f, &set);
    while (f->nconn) fwd_close(f, f->nconn - 1);
    if (f->lfd >= 0) close(f->lfd);
    free(f);
    tsr_kafka_mock_stop(m);
    fprintf(stderr, "tessera dev-kafka: stopped\n");
    return 0;
}

const tsr_cli_cmd_t tsr_cmd_dev_kafka_def = {
    "dev-kafka",
    "run a local Kafka-protocol broker for development (mock)",
    "usage: tessera dev-kafka [--partitions N] [--topic T ...] [--port P]\n"
    "\n"
    "Runs librdkafka's mock cluster as a one-broker Kafka on 127.0.0.1 and prints its\n"
    "bootstrap address host:port as the first line of stdout. Stays up until SIGINT or\n"
    "SIGTERM, then exits 0. Data lives in memory only; each partition keeps about 5 MiB or\n"
    "100k message batches and drops older ones (consume while producing for large loads).\n"
    "\n"
    "options:\n"
    "  --partitions N   partitions of each --topic topic (default 4; 1..10000)\n"
    "  --topic T        create topic T at start (repeatable); other topics are created\n"
    "                   on first use with 4 partitions\n"
    "  --port P         also accept bootstrap connections on 127.0.0.1:P (forwarded to the\n"
    "                   broker, whose own port is still chosen by the system)\n"
    "\n"
    "exit: 0 stopped by a signal, 1 error (bad topic name), 2 usage, 4 cannot listen\n",
    run_dev_kafka,
};
