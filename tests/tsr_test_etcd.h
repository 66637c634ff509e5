/*
 * tsr_test_etcd.h — a real etcd for a test program: started on free loopback ports in a temp
 * dir (fast Raft timings), waited for (bounded), stopped by PID and removed. Included by the
 * unit tests that talk to etcd (test_kv.c, test_coord_etcd.c); everything is static.
 *
 *   if (tsr_test_etcd_start("test_x") != 0) ... skip (no /usr/bin/etcd) or fail
 *   ... use g_endpoint ("http://127.0.0.1:PORT") ...
 *   tsr_test_etcd_stop("test_x");
 */
#ifndef TSR_TEST_ETCD_H
#define TSR_TEST_ETCD_H

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "tsr/kv.h"

#define ETCD_BIN "/usr/bin/etcd"

static char g_endpoint[64];
static pid_t g_etcd_pid = -1;
static char g_dir[256];

static inline int64_t now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

static inline void sleep_ms(int ms) {
    struct timespec t = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&t, NULL);
}

/* A loopback port nobody listens on right now. */
static inline int free_port(void) {
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    if (s < 0 || bind(s, (struct sockaddr *)&a, sizeof a) ||
        getsockname(s, (struct sockaddr *)&a, &len)) {
        if (s >= 0) close(s);
        return -1;
    }
    close(s);
    return ntohs(a.sin_port);
}

/* Starts etcd and waits (<= 15 s) until it answers; 0, or -1 (no binary, or it did not come
 * up: who says so on stderr). */
static inline int tsr_test_etcd_start(const char *who) {
    if (access(ETCD_BIN, X_OK) != 0) return -1;
    snprintf(g_dir, sizeof g_dir, "/tmp/tsr-%s-XXXXXX", who);
    if (!mkdtemp(g_dir)) return -1;
    int cp = free_port(), pp = free_port();
    if (cp < 0 || pp < 0 || cp == pp) return -1;
    snprintf(g_endpoint, sizeof g_endpoint, "http://127.0.0.1:%d", cp);
    char data[300], log[300], peer[64], cluster[80];
    snprintf(data, sizeof data, "%s/data", g_dir);
    snprintf(log, sizeof log, "%s/etcd.log", g_dir);
    snprintf(peer, sizeof peer, "http://127.0.0.1:%d", pp);
    snprintf(cluster, sizeof cluster, "t=%s", peer);
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        FILE *f = freopen(log, "w", stderr);
        (void)f;
        dup2(2, 1);
        execl(ETCD_BIN, "etcd", "--name", "t", "--data-dir", data, "--listen-client-urls",
              g_endpoint, "--advertise-client-urls", g_endpoint, "--listen-peer-urls", peer,
              "--initial-advertise-peer-urls", peer, "--initial-cluster", cluster,
              "--heartbeat-interval", "10", "--election-timeout", "100", (char *)NULL);
        _exit(127);
    }
    g_etcd_pid = pid;
    tsr_kv_t *kv = tsr_kv_etcd_new(g_endpoint, NULL);
    int64_t t0 = now_ms();
    int rc = -1;
    while (now_ms() - t0 < 15000) {
        tsr_kv_entry_t *v;
        size_t n;
        if (tsr_kv_range(kv, "/health", &v, &n, NULL, NULL) == 0) {
            tsr_kv_entries_free(v, n);
            rc = 0;
            break;
        }
        if (waitpid(pid, NULL, WNOHANG) == pid) {
            g_etcd_pid = -1;
            break;
        }
        sleep_ms(50);
    }
    tsr_kv_free(kv);
    if (rc == 0) fprintf(stderr, "%s: etcd up at %s after %lld ms\n", who, g_endpoint,
                         (long long)(now_ms() - t0));
    else fprintf(stderr, "%s: etcd did not become healthy (log: %s)\n", who, log);
    return rc;
}

/* SIGTERM (SIGKILL after 5 s), then removes the temp dir. */
static inline void tsr_test_etcd_stop(const char *who) {
    if (g_etcd_pid > 0) {
        kill(g_etcd_pid, SIGTERM);
        int64_t t0 = now_ms();
        while (waitpid(g_etcd_pid, NULL, WNOHANG) != g_etcd_pid) {
            if (now_ms() - t0 > 5000) {
                kill(g_etcd_pid, SIGKILL);
                waitpid(g_etcd_pid, NULL, 0);
                break;
            }
            sleep_ms(20);
        }
        g_etcd_pid = -1;
    }
    if (g_dir[0]) {
        char cmd[300];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
        if (system(cmd) != 0) fprintf(stderr, "%s: could not remove %s\n", who, g_dir);
        g_dir[0] = 0;
    }
}

#endif
