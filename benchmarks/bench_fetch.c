/*
 * bench_fetch.c — the online benchmarks of SPEC §8 (issue 4 targets), end to end against the
 * real binaries on 127.0.0.1: FetchJoin latency against a trivial RPC on the same server,
 * 100-entity fetches, max QPS, Kafka ingest rate per server CPU-second, and freshness.
 *
 * What one run does (children are started and stopped by PID; a temp dir holds everything):
 *   0. setup: tessera-datagen writes a JSON Lines warehouse of D days; a Join of 10 GroupBys
 *      × 9 features (COUNT, SUM, AVERAGE of amount × 1h, 1d, 30d) over payments.card_txn
 *      keyed by user_id, each streamed from topic payments.card_txn; `tessera dev-kafka` and
 *      `tessera serve` start; ApplyConfig, Upload ds E (= the day before the last), then the
 *      last day's events (E+1) are produced into the topic and the bench waits (Status RPC)
 *      until all 10 ingests consumed them. Every fetch queries at q = end of day E+1, so each
 *      read combines the upload with one day of streamed tiles.
 *   1. open-loop latency: a fixed schedule of async calls at --rate req/s for --seconds;
 *      latency runs from the SCHEDULED send time to the completion (no coordinated omission:
 *      a stall delays every call scheduled behind it, and they all count). First the floor,
 *      /grpc.health.v1.Health/Check (empty request) on the same server, then FetchJoin of one
 *      random entity; the ratio of their p99s is the issue 4 target (≤ 3×; p50 ≤ 250 µs,
 *      p99 ≤ 1 ms).
 *   2. the same for FetchJoin of --batch-size random entities at --batch-rate req/s.
 *   3. max QPS: --clients async calls kept in flight (closed loop), echo then FetchJoin.
 *   4. ingest: --ingest-events events of a fresh topic are produced BEFORE a GroupBy that
 *      streams it (COUNT, SUM, AVERAGE × 3 windows) is applied; then the bench times apply →
 *      all consumed (Status) and reads the server's utime+stime (/proc/PID/stat) over that
 *      interval: events/s and events per server CPU-second (target ≥ 500k). The server's idle
 *      CPU rate, measured just before, is the baseline.
 *   5. freshness: one event for a new key every 1/--fresh-rate s into payments.card_txn; a
 *      poller fetches all not-yet-visible keys every --fresh-poll-ms and records produce →
 *      first fetch that sees the event (p50/p99; target p99 ≤ 100 ms).
 *   6. live: phase 1's FetchJoin of one entity for --live-seconds while --live-rate events/s
 *      stream into payments.card_txn for the same keys (timestamps in the hour before q, so
 *      every window moves and every GroupBy's write-back table is flushed meanwhile).
 * Output: a table per phase and one final `SUMMARY` line (key=value) for scripts.
 * With --perf-dir DIR, `perf record -g -p <server>` runs during each measured phase and
 * leaves DIR/<phase>.data (read with `perf report -i DIR/fetch1.data --no-children`).
 *
 * Cleanup on every exit path: children get PR_SET_PDEATHSIG, SIGINT/SIGTERM/SIGHUP forward a
 * SIGTERM to them and end the run, and an atexit handler stops them (SIGTERM, then SIGKILL
 * after 5 s) and removes the temp dir (unless --keep).
 *
 * The client shares the machine with the server: on 2 vCPUs its sender, completion thread
 * and the broker compete with the server. Compare runs made the same way; the echo floor is
 * measured in the same run for exactly that reason.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <libgen.h>
#include <limits.h>
#include <math.h>
#include <poll.h>
#include <dirent.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "tessera.pb-c.h"
#include "tsr/kafka.h"
#include "tsr/pbvalue.h"
#include "tsr/rpc.h"
#include "tsr/time.h"

#define NGB 10
#define MAIN_TOPIC "payments.card_txn"
#define INGEST_TOPIC "bench.ingest"
#define JOIN_NAME "bench.fetch_join"
#define INGEST_GB "bench.ingest_gb"
#define M_FETCH_JOIN "/tessera.v1.FeatureService/FetchJoin"
#define M_HEALTH "/grpc.health.v1.Health/Check"

/* ------------------------------------------------------------------------------------------
 * options */

typedef struct opts {
    const char *tessera, *datagen, *perf_dir, *tmp_parent, *latency_log;
    /* attach mode (benchmarks/bench_cluster.sh): fetch from --attach ADDR (a fetcher), admin
     * calls to --admin ADDR (a coordinator), an existing broker and warehouse, CPU summed over
     * --cpu-pids; nothing is started or stopped here */
    const char *attach, *admin, *bootstrap, *warehouse, *cpu_pids;
    const char *rpc_threads;        /* passed to serve as --rpc-threads (NULL: its default) */
    int days, keys, ingest_partitions, clients, batch_size, keep, quiet;
    long events, ingest_events, ingest_keys;
    double rate, seconds, batch_rate, batch_seconds, qps_seconds, fresh_rate, fresh_seconds;
    double live_rate, live_seconds;
    double spin_us;                 /* open-loop sender: spin this long before each send */
    double fresh_poll_ms;
    char phases[128];
} opts_t;

static opts_t O;

static void usage(FILE *f, const char *argv0) {
    fprintf(f,
            "usage: %s [options]\n"
            "\n"
            "Online benchmarks (SPEC section 8, issue 4) against `tessera serve` and `tessera\n"
            "dev-kafka` started on 127.0.0.1 in a temp dir: FetchJoin latency at a fixed\n"
            "open-loop rate vs /grpc.health.v1.Health/Check on the same server, 100-entity\n"
            "fetches, max QPS, Kafka ingest events per server CPU-second, and freshness\n"
            "(produce -> visible to fetch). Prints a table and a final SUMMARY line.\n"
            "\n"
            "binaries (defaults relative to this program's directory):\n"
            "  --tessera PATH         tessera CLI (default <dir>/../cli/tessera)\n"
            "  --datagen PATH         warehouse generator (default <dir>/tessera-datagen)\n"
            "setup:\n"
            "  --days N               warehouse days (default 8; upload ds = day N-1, day N\n"
            "                         is streamed)\n"
            "  --events N             warehouse events over all days (default 200000)\n"
            "  --keys N               distinct user_ids (default 10000); topic\n"
            "                         payments.card_txn has 4 partitions\n"
            "phases (--phases LIST, comma-separated; default all:\n"
            "fetch,batch,qps,ingest,fresh,live):\n"
            "  --rate R               open-loop req/s for 1-entity phases (default 2000)\n"
            "  --seconds S            duration of each 1-entity open-loop run (default 10)\n"
            "  --spin-us US           open-loop sender: sleep until US before each send time,\n"
            "                         then spin (default 200; 0 = sleep only: a sleeping\n"
            "                         sender wakes ~65 us late, counted in every latency)\n"
            "  --batch-size N         entities per request in 'batch' (default 100)\n"
            "  --batch-rate R         req/s in 'batch' (default 20: below the capacity of a\n"
            "                         2-vCPU server for 100-entity requests)\n"
            "  --batch-seconds S      duration of 'batch' (default 5)\n"
            "  --clients K            calls in flight for 'qps' (default 8)\n"
            "  --qps-seconds S        duration of each 'qps' run (default 5)\n"
            "  --ingest-events M      events produced for 'ingest' (default 1000000)\n"
            "  --ingest-keys N        distinct keys of those events (default 10000)\n"
            "  --ingest-partitions N  partitions of %s (default 64: the broker keeps\n"
            "                         only ~5 MiB per partition)\n"
            "  --fresh-rate R         events/s for 'fresh' (default 100)\n"
            "  --fresh-seconds S      duration of 'fresh' (default 10)\n"
            "  --fresh-poll-ms MS     poll interval of the freshness fetcher (default 1)\n"
            "  --live-rate R          'live': events/s streamed into the Join's topic for\n"
            "                         existing keys during a 1-entity open-loop run at --rate\n"
            "                         (default 1000)\n"
            "  --live-seconds S       duration of 'live' (default 25: two write-back flushes\n"
            "                         of each GroupBy, which move its stream records on)\n"
            "other:\n"
            "  --perf-dir DIR         perf record -g the server during each phase into DIR\n"
            "  --latency-log FILE     append every open-loop call to FILE: method, wall-clock\n"
            "                         send time (s), latency (us; -1: failed) — to line stalls\n"
            "                         up with the servers' logs\n"
            "  --rpc-threads N        start serve with --rpc-threads N (default: serve's)\n"
            "  --tmp DIR              parent of the temp dir (default $TMPDIR or /tmp)\n"
            "attach mode (benchmarks/bench_cluster.sh; starts nothing):\n"
            "  --attach ADDR          fetch from ADDR (e.g. a tessera-fetcher)\n"
            "  --admin ADDR[,ADDR]    ApplyConfig/Upload/ListPartitions at the coordinators\n"
            "  --bootstrap ADDR       the running broker\n"
            "  --warehouse DIR        tessera-datagen output made with the same --days,\n"
            "                         --events, --keys (and --start-ds 2024-01-01)\n"
            "  --cpu-pids P,P,...     processes whose CPU counts as the server's\n"
            "  --keep                 keep the temp dir (printed) instead of removing it\n"
            "  --quiet                no progress lines on stderr\n"
            "  --help                 this text\n"
            "\n"
            "Targets: FetchJoin 1 entity p50 <= 250 us, p99 <= 1 ms, p99 <= 3x the Health p99;\n"
            "ingest >= 500k events per server CPU-second; freshness p99 <= 100 ms.\n",
            argv0, INGEST_TOPIC);
}

/* ------------------------------------------------------------------------------------------
 * time, stats, logging */

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static void sleep_until(double t) {
    struct timespec ts;
    ts.tv_sec = (time_t)t;
    ts.tv_nsec = (long)((t - (double)ts.tv_sec) * 1e9);
    if (ts.tv_nsec >= 1000000000L) ts.tv_sec++, ts.tv_nsec -= 1000000000L;
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR) {
    }
}

static void sleep_s(double s) { sleep_until(now_s() + s); }

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Percentile p (0..1) of sorted v[0..n): the value at rank ceil(p·n) (nearest rank). */
static double pct(const double *v, size_t n, double p) {
    if (n == 0) return NAN;
    size_t r = (size_t)ceil(p * (double)n);
    if (r < 1) r = 1;
    if (r > n) r = n;
    return v[r - 1];
}

static void info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void info(const char *fmt, ...) {
    if (O.quiet) return;
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "bench_fetch: ");
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

/* ------------------------------------------------------------------------------------------
 * children and the temp dir: cleaned up on every exit path */

#define MAX_CHILD 8
static volatile pid_t g_child[MAX_CHILD];
static volatile sig_atomic_t g_stop;
static char g_tmp[PATH_MAX];
static pid_t g_main_pid;

static void on_signal(int sig) {
    g_stop = sig;
    for (int i = 0; i < MAX_CHILD; i++)
        if (g_child[i] > 0) kill(g_child[i], SIGTERM);
}

static void child_forget(pid_t pid) {
    for (int i = 0; i < MAX_CHILD; i++)
        if (g_child[i] == pid) g_child[i] = 0;
}

/* Sends sig, waits up to timeout_s for the exit, then SIGKILLs. Returns the wait status. */
static int child_stop(pid_t pid, int sig, double timeout_s) {
    if (pid <= 0) return 0;
    int st = 0;
    kill(pid, sig);
    double until = now_s() + timeout_s;
    for (;;) {
        pid_t r = waitpid(pid, &st, WNOHANG);
        if (r == pid || (r < 0 && errno != EINTR)) break;
        if (now_s() > until) {
            kill(pid, SIGKILL);
            waitpid(pid, &st, 0);
            break;
        }
        sleep_s(0.01);
    }
    child_forget(pid);
    return st;
}

static int rm_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb, (void)flag, (void)ftw;
    remove(p);
    return 0;
}

static void cleanup(void) {
    if (getpid() != g_main_pid) return;
    for (int i = 0; i < MAX_CHILD; i++)
        if (g_child[i] > 0) child_stop(g_child[i], SIGTERM, 5.0);
    if (g_tmp[0]) {
        if (O.keep) fprintf(stderr, "bench_fetch: kept %s\n", g_tmp);
        else nftw(g_tmp, rm_one, 16, FTW_DEPTH | FTW_PHYS);
        g_tmp[0] = 0;
    }
}

static void fail(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void fail(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "bench_fetch: ");
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    fflush(stdout);
    cleanup();
    _exit(1); /* gRPC and librdkafka threads may still run: skip their exit-time teardown */
}

/* snprintf into a PATH_MAX buffer, failing on truncation. */
#define PATHF(buf, ...)                                                                            \
    do {                                                                                           \
        if (snprintf(buf, sizeof buf, __VA_ARGS__) >= (int)sizeof buf) fail("path too long");      \
    } while (0)

static void check_stop(void) {
    if (g_stop) fail("stopped by signal %d", (int)g_stop);
}

/* Starts argv with stdout to a pipe (*out_fd; -1 = to log) and stderr (and stdout when not
 * piped) appended to log. The child dies with this process (PR_SET_PDEATHSIG). */
static pid_t spawn(char *const argv[], const char *log, int *out_fd) {
    int pfd[2] = {-1, -1};
    if (out_fd && pipe(pfd) != 0) fail("pipe: %s", strerror(errno));
    pid_t pid = fork();
    if (pid < 0) fail("fork: %s", strerror(errno));
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != g_main_pid) _exit(127);
        int lfd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (lfd >= 0) {
            dup2(lfd, 2);
            if (!out_fd) dup2(lfd, 1);
            close(lfd);
        }
        if (out_fd) {
            dup2(pfd[1], 1);
            close(pfd[0]);
            close(pfd[1]);
        }
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        execv(argv[0], argv);
        fprintf(stderr, "exec %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    for (int i = 0; i < MAX_CHILD; i++)
        if (g_child[i] == 0) {
            g_child[i] = pid;
            break;
        }
    if (out_fd) {
        close(pfd[1]);
        *out_fd = pfd[0];
    }
    return pid;
}

/* Reads one line from fd into buf within timeout_s; 0 or -1 (EOF, timeout). */
static int read_line(int fd, char *buf, size_t cap, double timeout_s) {
    size_t n = 0;
    double until = now_s() + timeout_s;
    while (n + 1 < cap) {
        int left = (int)((until - now_s()) * 1000);
        if (left <= 0 || g_stop) return -1;
        struct pollfd p = {fd, POLLIN, 0};
        int r = poll(&p, 1, left);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return -1;
        char c;
        ssize_t k = read(fd, &c, 1);
        if (k <= 0) return -1;
        if (c == '\n') break;
        buf[n++] = c;
    }
    buf[n] = 0;
    return 0;
}

static void print_log_tail(const char *log) {
    FILE *f = fopen(log, "r");
    if (!f) return;
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, sz > 4000 ? sz - 4000 : 0, SEEK_SET);
    char buf[4096];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = 0;
    fclose(f);
    fprintf(stderr, "---- last lines of %s ----\n%s\n----\n", log, buf);
}

/* Server CPU seconds (utime + stime of all its threads) from /proc/PID/stat. */
static double proc_cpu_s(pid_t pid) {
    char path[64], buf[2048];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f) return NAN;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    char *p = strrchr(buf, ')');
    if (!p) return NAN;
    unsigned long long ut = 0, stt = 0;
    /* after ")": state(3) ppid pgrp session tty_nr tpgid flags minflt cminflt majflt cmajflt
     * utime(14) stime(15) */
    if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &stt) != 2)
        return NAN;
    return (double)(ut + stt) / (double)sysconf(_SC_CLK_TCK);
}

/* Context switches (voluntary + involuntary) of all live threads of pid, from
 * /proc/PID/task/TID/status. A wake-up costs more than an echo on these VMs, and the count
 * per call holds up on a loaded machine where latencies and CPU times do not. */
static double proc_switches(pid_t pid) {
    char path[96];
    snprintf(path, sizeof path, "/proc/%d/task", (int)pid);
    DIR *d = opendir(path);
    if (!d) return NAN;
    double sum = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') continue;
        char sp[400], line[256];
        snprintf(sp, sizeof sp, "%s/%s/status", path, e->d_name);
        FILE *f = fopen(sp, "r");
        if (!f) continue; /* the thread ended */
        while (fgets(line, sizeof line, f)) {
            unsigned long long v;
            if (sscanf(line, "voluntary_ctxt_switches: %llu", &v) == 1 ||
                sscanf(line, "nonvoluntary_ctxt_switches: %llu", &v) == 1)
                sum += (double)v;
        }
        fclose(f);
    }
    closedir(d);
    return sum;
}

/* ------------------------------------------------------------------------------------------
 * perf record per phase */

static pid_t g_server_pid, g_perf_pid;

/* CPU seconds of the server (attach mode: the sum over --cpu-pids, e.g. the workers). */
static double srv_sum(double (*per_pid)(pid_t)) {
    if (!O.cpu_pids) return g_server_pid > 0 ? per_pid(g_server_pid) : 0.0;
    double sum = 0;
    const char *p = O.cpu_pids;
    while (*p) {
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p) break;
        if (v > 0) sum += per_pid((pid_t)v);
        p = *end == ',' ? end + 1 : end;
    }
    return sum;
}

static double srv_cpu_s(void) { return srv_sum(proc_cpu_s); }
/* context switches of the server (attach mode: over --cpu-pids) */
static double srv_switches(void) { return srv_sum(proc_switches); }

static void perf_begin(const char *phase) {
    if (!O.perf_dir || g_server_pid <= 0) return;
    static char data[PATH_MAX], log[PATH_MAX], spid[32];
    PATHF(data, "%s/%s.data", O.perf_dir, phase);
    snprintf(log, sizeof log, "%s/%s.log", O.perf_dir, phase);
    snprintf(spid, sizeof spid, "%d", (int)g_server_pid);
    /* TSR_PERF_CALLGRAPH=dwarf: unwind libraries built without frame pointers (libc, RocksDB) */
    const char *cg = getenv("TSR_PERF_CALLGRAPH");
    char *argv[] = {"/usr/bin/perf", "record", "-F", "999", "--call-graph", (char *)(cg && *cg ? cg : "fp"), "-p", spid, "-o", data, NULL};
    g_perf_pid = spawn(argv, log, NULL);
    sleep_s(0.3); /* let perf attach */
}

static void perf_end(void) {
    if (g_perf_pid <= 0) return;
    child_stop(g_perf_pid, SIGINT, 20.0);
    g_perf_pid = 0;
}

static int phase_on(const char *name) {
    if (!O.phases[0] || strcmp(O.phases, "all") == 0) return 1;
    char buf[128];
    snprintf(buf, sizeof buf, "%s", O.phases);
    for (char *save = NULL, *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save))
        if (strcmp(t, name) == 0) return 1;
    return 0;
}

/* ------------------------------------------------------------------------------------------
 * RPC helpers */

static tsr_rpc_client_t *g_cli; /* fetches (and admin calls unless attached) */
static tsr_rpc_client_t *g_adms[4]; /* attach mode: a client per --admin coordinator */
static int g_nadm, g_adm_i;

/* The client of admin calls: g_cli, or the current --admin coordinator. */
static tsr_rpc_client_t *admin_client(void) { return g_nadm ? g_adms[g_adm_i] : g_cli; }

static void rpc(const char *method, const ProtobufCMessage *req, tsr_rpc_reply_t *r,
                int64_t timeout_ms) {
    tsr_buf_t b;
    tsr_buf_init(&b);
    tsr_pb_pack(req, &b);
    tsr_rpc_call_opts_t o = {.timeout_ms = timeout_ms, .wait_for_ready = 1};
    tsr_error_t err;
    int rc;
    double until = now_s() + 60;
    /* attach mode: a coordinator answers UNAVAILABLE while it is not the leader, has not read
     * a topic's partition count yet ("not assigned to workers yet") or is stepping down; move
     * to the next --admin address and retry, for up to 60 s (as the tessera CLI does) */
    while ((rc = tsr_rpc_client_call(admin_client(), method, b.data, b.len, &o, r, &err)) &&
           g_nadm && strstr(err.msg, "UNAVAILABLE") && now_s() < until && !g_stop) {
        g_adm_i = (g_adm_i + 1) % g_nadm;
        sleep_s(0.2);
    }
    tsr_buf_free(&b);
    if (rc) fail("%s", err.msg);
}

static void apply_config(const char *json, const char *label) {
    Tessera__V1__ApplyConfigRequest rq = TESSERA__V1__APPLY_CONFIG_REQUEST__INIT;
    rq.config_json = (char *)json;
    rq.source_name = (char *)label;
    tsr_rpc_reply_t r;
    tsr_rpc_reply_init(&r);
    rpc("/tessera.v1.AdminService/ApplyConfig", &rq.base, &r, 60000);
    tsr_rpc_reply_free(&r);
}

/* Sums "messages=N" over the ingests named kafka:<topic>-><gb prefix>*; returns how many
 * ingests matched, *min_msgs the smallest count among them, *lag the summed lag. */
static int ingest_status_cluster(const char *gb_prefix, uint64_t *min_msgs, int64_t *lag);
static int ingest_status(const char *topic, const char *gb_prefix, uint64_t *min_msgs,
                         int64_t *lag) {
    if (O.attach) return ingest_status_cluster(gb_prefix, min_msgs, lag);
    Tessera__V1__StatusRequest rq = TESSERA__V1__STATUS_REQUEST__INIT;
    tsr_rpc_reply_t r;
    tsr_rpc_reply_init(&r);
    rpc("/tessera.v1.AdminService/Status", &rq.base, &r, 10000);
    Tessera__V1__StatusResponse *st =
        tessera__v1__status_response__unpack(NULL, r.body.len, r.body.data);
    if (!st) fail("malformed StatusResponse");
    char pre[300];
    snprintf(pre, sizeof pre, "kafka:%s->%s", topic, gb_prefix);
    int n = 0;
    *min_msgs = UINT64_MAX;
    *lag = 0;
    for (size_t i = 0; i < st->n_components; i++) {
        const Tessera__V1__ComponentStatus *c = st->components[i];
        if (strncmp(c->name, pre, strlen(pre)) != 0) continue;
        const char *m = strstr(c->detail, "messages=");
        const char *l = strstr(c->detail, "lag=");
        unsigned long long v = m ? strtoull(m + 9, NULL, 10) : 0;
        long long lg = l ? strtoll(l + 4, NULL, 10) : 0;
        if (v < *min_msgs) *min_msgs = v;
        if (lg > 0) *lag += lg;
        n++;
    }
    tessera__v1__status_response__free_unpacked(st, NULL);
    tsr_rpc_reply_free(&r);
    if (n == 0) *min_msgs = 0;
    return n;
}

/* Attach mode: the same from the coordinator's ListPartitions — per GroupBy named gb_prefix*,
 * the events its partitions applied (summed over partitions; the owners' last KeepAlive
 * reports, so up to TTL/3 late); *lag sums the known lags, and counts 1 for each unassigned
 * partition or one whose lag is unknown. */
static int ingest_status_cluster(const char *gb_prefix, uint64_t *min_msgs, int64_t *lag) {
    Tessera__V1__ListPartitionsRequest rq = TESSERA__V1__LIST_PARTITIONS_REQUEST__INIT;
    tsr_rpc_reply_t r;
    tsr_rpc_reply_init(&r);
    rpc("/tessera.v1.AdminService/ListPartitions", &rq.base, &r, 10000);
    Tessera__V1__ListPartitionsResponse *st =
        tessera__v1__list_partitions_response__unpack(NULL, r.body.len, r.body.data);
    if (!st) fail("malformed ListPartitionsResponse");
    int n = 0;
    *min_msgs = UINT64_MAX;
    *lag = 0;
    size_t plen = strlen(gb_prefix);
    for (size_t i = 0; i < st->n_partitions;) { /* sorted by group_by */
        const char *gb = st->partitions[i]->group_by;
        uint64_t sum = 0;
        int64_t gb_lag = 0;
        size_t j = i;
        for (; j < st->n_partitions && !strcmp(st->partitions[j]->group_by, gb); j++) {
            const Tessera__V1__PartitionSummary *ps = st->partitions[j];
            if (ps->events > 0) sum += (uint64_t)ps->events;
            gb_lag += !ps->worker_id[0] || ps->lag < 0 ? 1 : ps->lag;
        }
        if (!strncmp(gb, gb_prefix, plen)) {
            if (sum < *min_msgs) *min_msgs = sum;
            *lag += gb_lag;
            n++;
        }
        i = j;
    }
    tessera__v1__list_partitions_response__free_unpacked(st, NULL);
    tsr_rpc_reply_free(&r);
    if (n == 0) *min_msgs = 0;
    return n;
}

/* A packed FetchRequest for name with the given user_ids, all at q. */
static void pack_fetch(const char *name, const long *users, size_t n, int64_t q, tsr_buf_t *out) {
    tsr_arena_t a;
    tsr_arena_init(&a, 1 << 14);
    Tessera__V1__FetchRequest rq = TESSERA__V1__FETCH_REQUEST__INIT;
    rq.name = (char *)name;
    rq.n_rows = n;
    rq.rows = tsr_arena_alloc(&a, n * sizeof *rq.rows);
    for (size_t i = 0; i < n; i++) {
        Tessera__V1__FetchRow *row = tsr_arena_alloc(&a, sizeof *row);
        tessera__v1__fetch_row__init(row);
        Tessera__V1__FetchRow__KeysEntry *k = tsr_arena_alloc(&a, sizeof *k);
        tessera__v1__fetch_row__keys_entry__init(k);
        k->key = "user_id";
        Tessera__V1__Value *v = tsr_arena_alloc(&a, sizeof *v);
        tessera__v1__value__init(v);
        v->kind_case = TESSERA__V1__VALUE__KIND_STRING_VALUE;
        v->string_value = tsr_arena_printf(&a, "u%ld", users[i]);
        k->value = v;
        row->n_keys = 1;
        row->keys = tsr_arena_alloc(&a, sizeof *row->keys);
        row->keys[0] = k;
        row->at_case = TESSERA__V1__FETCH_ROW__AT_AT_MILLIS;
        row->at_millis = q;
        rq.rows[i] = row;
    }
    tsr_buf_init(out);
    tsr_pb_pack(&rq.base, out);
    tsr_arena_free(&a);
}

static int value_null(const Tessera__V1__Value *v) {
    return !v || v->kind_case == TESSERA__V1__VALUE__KIND__NOT_SET ||
           v->kind_case == TESSERA__V1__VALUE__KIND_NULL_VALUE;
}

/* Checks a FetchResponse: rows, features per row, non-null features, failures. */
typedef struct resp_check {
    size_t rows, features, nonnull, failed_rows, exceptions;
    char first_error[256];
} resp_check_t;

static int check_response(const uint8_t *p, size_t n, resp_check_t *c) {
    memset(c, 0, sizeof *c);
    Tessera__V1__FetchResponse *r = tessera__v1__fetch_response__unpack(NULL, n, p);
    if (!r) return -1;
    c->rows = r->n_results;
    for (size_t i = 0; i < r->n_results; i++) {
        const Tessera__V1__FetchResult *res = r->results[i];
        if (res->status != TESSERA__V1__ROW_STATUS__SUCCESS) {
            c->failed_rows++;
            if (!c->first_error[0]) snprintf(c->first_error, sizeof c->first_error, "%s", res->error);
        }
        c->features += res->n_features;
        for (size_t k = 0; k < res->n_features; k++) {
            const Tessera__V1__FetchResult__FeaturesEntry *e = res->features[k];
            if (strstr(e->key, "_exception")) {
                c->exceptions++;
                if (!c->first_error[0] && e->value &&
                    e->value->kind_case == TESSERA__V1__VALUE__KIND_STRING_VALUE)
                    snprintf(c->first_error, sizeof c->first_error, "%s: %s", e->key,
                             e->value->string_value);
            }
            if (!value_null(e->value)) c->nonnull++;
        }
    }
    tessera__v1__fetch_response__free_unpacked(r, NULL);
    return 0;
}

/* ------------------------------------------------------------------------------------------
 * open-loop runs: a schedule of async calls, latency from the scheduled send time */

typedef struct ol_run ol_run_t;
typedef struct ol_slot {
    double sched, lat;
    int rc;
    ol_run_t *run;
} ol_slot_t;

struct ol_run {
    const char *method;
    const tsr_buf_t *reqs;
    size_t nreqs;
    ol_slot_t *slots;
    long n, started;
    atomic_long done, errors;
    double t_last_done;             /* written by the completion thread */
    double max_send_lag;            /* how far the sender fell behind its schedule */
    char first_error[512];
    pthread_mutex_t mu;
};

static void ol_cb(void *ud, int rc, const tsr_rpc_reply_t *r, const char *msg) {
    (void)r;
    ol_slot_t *s = ud;
    double t = now_s();
    s->lat = t - s->sched;
    s->rc = rc;
    ol_run_t *run = s->run;
    if (rc) {
        pthread_mutex_lock(&run->mu);
        if (!run->first_error[0]) snprintf(run->first_error, sizeof run->first_error, "%s", msg);
        pthread_mutex_unlock(&run->mu);
        atomic_fetch_add(&run->errors, 1);
    }
    run->t_last_done = t;
    atomic_fetch_add_explicit(&run->done, 1, memory_order_release);
}

typedef struct lat_result {
    long n, errors;
    double rate, p50, p99, p999, max, send_lag;
    double cpu_us;                  /* server CPU (utime+stime) per call */
    double csw;                     /* server context switches per call */
} lat_result_t;

static void summarize(double *lat, long n, long errors, double elapsed, double send_lag,
                      lat_result_t *out) {
    qsort(lat, (size_t)n, sizeof(double), cmp_d);
    out->n = n;
    out->errors = errors;
    out->rate = elapsed > 0 ? (double)n / elapsed : 0;
    out->p50 = pct(lat, (size_t)n, 0.50) * 1e6;
    out->p99 = pct(lat, (size_t)n, 0.99) * 1e6;
    out->p999 = pct(lat, (size_t)n, 0.999) * 1e6;
    out->max = n ? lat[n - 1] * 1e6 : NAN;
    out->send_lag = send_lag * 1e6;
}

/* The sampling interval (ms) of a running DAMON monitor (kdamond), 0 if none. A VM of this
 * project's kind runs one over physical memory every 500 ms: each pass takes ~3-6 ms of a CPU,
 * and on 2 vCPUs most latencies above 2.5 ms line up with it (docs/benchmarks-online.md,
 * session 8). */
static long damon_sample_ms(void) {
    for (int k = 0; k < 8; k++) {
        char path[160], buf[64] = "";
        snprintf(path, sizeof path, "/sys/kernel/mm/damon/admin/kdamonds/%d/state", k);
        FILE *f = fopen(path, "r");
        if (!f) break;
        int on = fgets(buf, sizeof buf, f) && strncmp(buf, "on", 2) == 0;
        fclose(f);
        if (!on) continue;
        snprintf(path, sizeof path,
                 "/sys/kernel/mm/damon/admin/kdamonds/%d/contexts/0/monitoring_attrs/intervals/sample_us", k);
        long us = 0;
        if ((f = fopen(path, "r"))) {
            if (fscanf(f, "%ld", &us) != 1) us = 0;
            fclose(f);
        }
        return us > 0 ? us / 1000 : 1;
    }
    return 0;
}

/* --latency-log: one line per call, "method send_time_s latency_us" (wall clock, so stalls
 * can be found in the servers' logs; -1 for a failed call) */
static void log_latencies(const ol_run_t *run, const char *path) {
    FILE *f = fopen(path, "a");
    if (!f) {
        fprintf(stderr, "bench_fetch: --latency-log %s: %s\n", path, strerror(errno));
        return;
    }
    struct timespec rt;
    clock_gettime(CLOCK_REALTIME, &rt);
    double wall = (double)rt.tv_sec + (double)rt.tv_nsec * 1e-9 - now_s(); /* monotonic → wall */
    for (long i = 0; i < run->started; i++) {
        const ol_slot_t *s = &run->slots[i];
        fprintf(f, "%s %.6f %.1f\n", run->method, s->sched + wall, s->rc ? -1.0 : s->lat * 1e6);
    }
    fclose(f);
}

static void open_loop(const char *method, const tsr_buf_t *reqs, size_t nreqs, double rate,
                      double seconds, lat_result_t *res) {
    ol_run_t run;
    memset(&run, 0, sizeof run);
    run.method = method;
    run.reqs = reqs;
    run.nreqs = nreqs;
    run.n = (long)(rate * seconds);
    if (run.n < 1) run.n = 1;
    run.slots = tsr_calloc((size_t)run.n, sizeof(ol_slot_t));
    atomic_init(&run.done, 0);
    atomic_init(&run.errors, 0);
    pthread_mutex_init(&run.mu, NULL);
    tsr_rpc_call_opts_t o = {.timeout_ms = 5000};
    double cpu0 = srv_cpu_s(), sw0 = srv_switches();
    double t0 = now_s() + 0.005, dt = 1.0 / rate;
    for (long i = 0; i < run.n && !g_stop; i++) {
        ol_slot_t *s = &run.slots[i];
        s->run = &run;
        s->sched = t0 + (double)i * dt;
        /* the sender sleeps until spin_us before the send time, then spins: a sleeping
         * thread on these VMs wakes ~65 us late (median), and that lateness would count in
         * every latency (measured from the schedule) though it is the load generator's */
        sleep_until(s->sched - O.spin_us * 1e-6);
        while (now_s() < s->sched) {
        }
        double lag = now_s() - s->sched;
        if (lag > run.max_send_lag) run.max_send_lag = lag;
        const tsr_buf_t *b = &reqs[(size_t)i % nreqs];
        tsr_error_t err;
        if (tsr_rpc_client_call_async(g_cli, method, b->data, b->len, &o, ol_cb, s, &err)) {
            s->rc = TSR_EUNAVAIL;
            s->lat = NAN;
            atomic_fetch_add(&run.errors, 1);
            atomic_fetch_add(&run.done, 1);
            if (!run.first_error[0]) snprintf(run.first_error, sizeof run.first_error, "%.400s", err.msg);
        }
        run.started = i + 1;
    }
    double until = now_s() + 10;
    while (atomic_load_explicit(&run.done, memory_order_acquire) < run.started && now_s() < until)
        sleep_s(0.001);
    if (atomic_load(&run.done) < run.started) fail("%s: calls did not complete in 10 s", method);
    check_stop();
    double *lat = tsr_malloc((size_t)run.n * sizeof(double));
    long m = 0;
    for (long i = 0; i < run.started; i++)
        if (run.slots[i].rc == 0) lat[m++] = run.slots[i].lat;
    double end = run.t_last_done > t0 ? run.t_last_done : now_s();
    summarize(lat, m, atomic_load(&run.errors), end - t0, run.max_send_lag, res);
    res->cpu_us = (srv_cpu_s() - cpu0) / (double)(run.started ? run.started : 1) * 1e6;
    res->csw = (srv_switches() - sw0) / (double)(run.started ? run.started : 1);
    if (res->errors) fprintf(stderr, "bench_fetch: %s: %ld errors, first: %s\n", method, res->errors,
                             run.first_error);
    if (O.latency_log) log_latencies(&run, O.latency_log);
    free(lat);
    free(run.slots);
    pthread_mutex_destroy(&run.mu);
}

/* ------------------------------------------------------------------------------------------
 * closed loop: K calls in flight, each completion starts the next */

typedef struct cl_run cl_run_t;
typedef struct cl_chain {
    cl_run_t *run;
    double t_start;
    long next;
} cl_chain_t;

struct cl_run {
    const char *method;
    const tsr_buf_t *reqs;
    size_t nreqs;
    double until;
    double *lat;
    long cap;
    atomic_long n, errors;
    atomic_int active;
};

static void cl_cb(void *ud, int rc, const tsr_rpc_reply_t *r, const char *msg) {
    (void)r, (void)msg;
    cl_chain_t *c = ud;
    cl_run_t *run = c->run;
    double t = now_s();
    long i = atomic_fetch_add(&run->n, 1);
    if (rc) atomic_fetch_add(&run->errors, 1);
    else if (i < run->cap) run->lat[i] = t - c->t_start;
    tsr_rpc_call_opts_t o = {.timeout_ms = 5000};
    const tsr_buf_t *b = &run->reqs[(size_t)(c->next++) % run->nreqs];
    c->t_start = now_s();
    if (t >= run->until || g_stop ||
        tsr_rpc_client_call_async(g_cli, run->method, b->data, b->len, &o, cl_cb, c, NULL))
        atomic_fetch_sub(&run->active, 1);
}

static void closed_loop(const char *method, const tsr_buf_t *reqs, size_t nreqs, int k,
                        double seconds, lat_result_t *res) {
    cl_run_t run;
    memset(&run, 0, sizeof run);
    run.method = method;
    run.reqs = reqs;
    run.nreqs = nreqs;
    run.cap = 4000000;
    run.lat = tsr_malloc((size_t)run.cap * sizeof(double));
    atomic_init(&run.n, 0);
    atomic_init(&run.errors, 0);
    atomic_init(&run.active, k);
    cl_chain_t *ch = tsr_calloc((size_t)k, sizeof *ch);
    double cpu0 = srv_cpu_s(), sw0 = srv_switches();
    double t0 = now_s();
    run.until = t0 + seconds;
    tsr_rpc_call_opts_t o = {.timeout_ms = 5000};
    for (int i = 0; i < k; i++) {
        ch[i].run = &run;
        ch[i].next = i;
        ch[i].t_start = now_s();
        const tsr_buf_t *b = &reqs[(size_t)i % nreqs];
        tsr_error_t err;
        if (tsr_rpc_client_call_async(g_cli, method, b->data, b->len, &o, cl_cb, &ch[i], &err)) {
            fprintf(stderr, "bench_fetch: %s: %s\n", method, err.msg);
            atomic_fetch_sub(&run.active, 1);
        }
    }
    double deadline = run.until + 10;
    while (atomic_load(&run.active) > 0 && now_s() < deadline) sleep_s(0.002);
    if (atomic_load(&run.active) > 0) fail("%s: closed-loop calls did not finish", method);
    double el = now_s() - t0;
    long n = atomic_load(&run.n), errors = atomic_load(&run.errors);
    long m = n - errors < run.cap ? n - errors : run.cap;
    summarize(run.lat, m, errors, el, 0, res);
    res->rate = (double)n / el;
    res->cpu_us = (srv_cpu_s() - cpu0) / (double)(n ? n : 1) * 1e6;
    res->csw = (srv_switches() - sw0) / (double)(n ? n : 1);
    free(run.lat);
    free(ch);
}

/* ------------------------------------------------------------------------------------------
 * configs */

static void gb_json(tsr_buf_t *b, const char *name, const char *topic, const char *start_ds) {
    tsr_buf_printf(b,
                   "{\"metaData\":{\"name\":\"%s\",\"team\":\"bench\",\"online\":1,"
                   "\"outputNamespace\":\"bench\"},"
                   "\"sources\":[{\"events\":{\"table\":\"payments.card_txn\","
                   "\"topic\":\"kafka://%s\",\"query\":{\"selects\":{\"user_id\":\"user_id\","
                   "\"amount\":\"amount\"},\"timeColumn\":\"ts\",\"startPartition\":\"%s\"}}}],"
                   "\"keyColumns\":[\"user_id\"],\"aggregations\":[",
                   name, topic, start_ds);
    const int ops[3] = {6, 7, 8}; /* COUNT, SUM, AVERAGE */
    for (int i = 0; i < 3; i++)
        tsr_buf_printf(b,
                       "%s{\"inputColumn\":\"amount\",\"operation\":%d,\"argMap\":{},"
                       "\"windows\":[{\"length\":1,\"timeUnit\":0},{\"length\":1,\"timeUnit\":1},"
                       "{\"length\":30,\"timeUnit\":1}]}",
                       i ? "," : "", ops[i]);
    tsr_buf_puts(b, "],\"accuracy\":0}");
}

static char *join_json(const char *start_ds) {
    tsr_buf_t b;
    tsr_buf_init(&b);
    tsr_buf_printf(&b,
                   "{\"metaData\":{\"name\":\"%s\",\"team\":\"bench\",\"online\":1,"
                   "\"outputNamespace\":\"bench\"},"
                   "\"left\":{\"events\":{\"table\":\"payments.checkouts\",\"query\":{"
                   "\"selects\":{\"user_id\":\"user_id\"},\"timeColumn\":\"ts\","
                   "\"startPartition\":\"%s\"}}},\"joinParts\":[",
                   JOIN_NAME, start_ds);
    for (int i = 0; i < NGB; i++) {
        char name[64];
        snprintf(name, sizeof name, "bench.fetch_gb_%d", i);
        tsr_buf_puts(&b, i ? ",{\"groupBy\":" : "{\"groupBy\":");
        gb_json(&b, name, MAIN_TOPIC, start_ds);
        tsr_buf_puts(&b, "}");
    }
    tsr_buf_puts(&b, "]}");
    char *s = tsr_strdup(tsr_buf_cstr(&b));
    tsr_buf_free(&b);
    return s;
}

/* ------------------------------------------------------------------------------------------
 * Kafka producing */

static tsr_kafka_producer_t *open_producer(const char *bootstrap) {
    tsr_kafka_producer_t *p;
    tsr_error_t err;
    if (tsr_kafka_producer_open(bootstrap, &p, &err)) fail("producer: %s", err.msg);
    return p;
}

static void flush_producer(tsr_kafka_producer_t *p) {
    tsr_error_t err;
    if (tsr_kafka_producer_flush(p, 60000, &err)) fail("producer flush: %s", err.msg);
}

/* Produces every line of a JSON Lines file; returns the count. */
static long produce_file(tsr_kafka_producer_t *p, const char *path, const char *topic) {
    FILE *f = fopen(path, "r");
    if (!f) fail("cannot open %s: %s", path, strerror(errno));
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    long n = 0;
    tsr_error_t err;
    while ((len = getline(&line, &cap, f)) > 0) {
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r')) len--;
        if (len == 0) continue;
        /* keyed by user_id, as a cluster needs (docs/cluster.md: murmur2 of the key) */
        const char *k = strstr(line, "\"user_id\":\""), *ke = NULL;
        if (k) k += 11, ke = memchr(k, '"', (size_t)(line + len - k));
        if (tsr_kafka_producer_send(p, topic, ke ? k : NULL, ke ? (size_t)(ke - k) : 0, line,
                                    (size_t)len, -1, &err))
            fail("produce: %s", err.msg);
        n++;
    }
    free(line);
    fclose(f);
    flush_producer(p);
    return n;
}

/* Waits until `want` ingests of topic -> gb_prefix* each consumed at least target messages;
 * returns the time that happened. When the broker pruned messages (consumption stops short with
 * no lag for 3 s), returns the time of the last progress with *consumed set to what was
 * consumed (consumed may be NULL: then that fails the run). */
static double wait_consumed(const char *topic, const char *gb_prefix, int want, uint64_t target,
                            double timeout_s, double poll_s, uint64_t *consumed) {
    double t0 = now_s(), last_change = t0;
    uint64_t prev = 0;
    for (;;) {
        check_stop();
        uint64_t mn;
        int64_t lag;
        int n = ingest_status(topic, gb_prefix, &mn, &lag);
        double t = now_s();
        if (consumed) *consumed = mn;
        if (n >= want && mn >= target) return t;
        if (mn != prev) prev = mn, last_change = t;
        if (n >= want && lag == 0 && mn > 0 && mn < target && t - last_change > 3.0) {
            fprintf(stderr,
                    "bench_fetch: %s: consumption stopped at %llu of %llu messages with no lag: "
                    "the broker pruned the rest (it keeps ~5 MiB per partition; raise "
                    "--ingest-partitions or lower --ingest-events)\n",
                    topic, (unsigned long long)mn, (unsigned long long)target);
            if (!consumed) fail("%s: messages lost", topic);
            return last_change;
        }
        if (t - t0 > timeout_s)
            fail("%s: %d of %d ingests, %llu of %llu messages consumed after %.0f s", topic, n,
                 want, (unsigned long long)mn, (unsigned long long)target, timeout_s);
        sleep_s(poll_s);
    }
}

/* Lets the server drain what a phase left queued (calls past their deadline still run). */
static void settle(void) {
    tsr_rpc_reply_t r;
    tsr_rpc_reply_init(&r);
    tsr_rpc_call_opts_t o = {.timeout_ms = 30000};
    double until = now_s() + 30;
    sleep_s(0.5);
    while (now_s() < until && !g_stop) {
        double t = now_s();
        tsr_rpc_client_call(g_cli, M_HEALTH, NULL, 0, &o, &r, NULL);
        if (now_s() - t < 0.005) break;
        sleep_s(0.2);
    }
    tsr_rpc_reply_free(&r);
    sleep_s(0.5);
}

/* Waits until the server is idle: the setup leaves background work behind it (the streamed
 * day's write-back flush, at the latest 10 s after the stream went quiet — pass that time as
 * `not_before` — then RocksDB's flushes and compactions of it and of the upload) that would
 * otherwise land in the first latency phase. Idle = under 0.15 cores for 3 half-second
 * windows in a row (10 idle consumers poll at ~0.05); at most 60 s. Returns the seconds
 * waited. */
static double quiesce(double not_before) {
    double t0 = now_s();
    int quiet = 0;
    while ((quiet < 3 || now_s() < not_before) && now_s() - t0 < 60 && !g_stop) {
        double c = srv_cpu_s(), w = now_s();
        sleep_s(0.5);
        double rate = (srv_cpu_s() - c) / (now_s() - w);
        quiet = rate <= 0.15 ? quiet + 1 : 0;
    }
    return now_s() - t0;
}

/* ------------------------------------------------------------------------------------------
 * freshness */

typedef struct fresh {
    tsr_kafka_producer_t *prod;
    long n;
    double rate;
    int64_t ts_base, ts_span;       /* event i at ts_base + i % ts_span */
    long key_base;                  /* event i for user key_base + i ... */
    long key_mod;                   /* ... or, when > 0, a user spread over [0, key_mod) */
    double *sent;                   /* monotonic time each event was handed to the producer */
    atomic_long nsent;
    char error[256];
} fresh_t;

/* f set up for n = rate x seconds events into the main topic by prod (the caller sets the
 * timestamps and keys); free f->sent after the producer thread is joined. */
static void fresh_init(fresh_t *f, tsr_kafka_producer_t *prod, double rate, double seconds) {
    memset(f, 0, sizeof *f);
    f->prod = prod;
    f->rate = rate;
    f->n = (long)(rate * seconds);
    if (f->n < 1) f->n = 1;
    f->sent = tsr_calloc((size_t)f->n, sizeof(double));
    atomic_init(&f->nsent, 0);
}

static void *fresh_producer(void *arg) {
    fresh_t *f = arg;
    double t0 = now_s() + 0.01;
    char msg[256];
    tsr_error_t err;
    for (long i = 0; i < f->n && !g_stop; i++) {
        sleep_until(t0 + (double)i / f->rate);
        int len = snprintf(msg, sizeof msg,
                           "{\"txn_id\":\"f%ld\",\"user_id\":\"u%ld\",\"merchant_id\":\"m1\","
                           "\"amount\":1.5,\"currency\":\"USD\",\"mcc\":5000,"
                           "\"is_online\":true,\"ts\":%lld}",
                           i,
                           f->key_mod ? (long)((uint64_t)(i + 1) * 2654435761u % (uint64_t)f->key_mod)
                                      : f->key_base + i,
                           (long long)(f->ts_base + i % f->ts_span));
        f->sent[i] = now_s();
        if (tsr_kafka_producer_send(f->prod, MAIN_TOPIC, NULL, 0, msg, (size_t)len, -1, &err)) {
            snprintf(f->error, sizeof f->error, "%.200s", err.msg);
            break;
        }
        atomic_store_explicit(&f->nsent, i + 1, memory_order_release);
    }
    return NULL;
}

/* ------------------------------------------------------------------------------------------
 * output */

static void print_header(void) {
    printf("%-40s %8s %9s %9s %9s %9s %9s %6s %9s %7s\n", "phase", "calls", "rate/s", "p50 us",
           "p99 us", "p999 us", "max us", "errors", "srvCPU us", "srvCSW");
}

static void print_row(const char *name, const lat_result_t *r) {
    printf("%-40s %8ld %9.0f %9.1f %9.1f %9.1f %9.1f %6ld %9.1f %7.2f\n", name, r->n, r->rate,
           r->p50, r->p99, r->p999, r->max, r->errors, r->cpu_us, r->csw);
}

static char *self_dir(const char *argv0) {
    char buf[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
    if (n > 0) buf[n] = 0;
    else snprintf(buf, sizeof buf, "%s", argv0);
    return tsr_strdup(dirname(buf));
}

static void parse_args(int argc, char **argv) {
    O.days = 8;
    O.events = 200000;
    O.keys = 10000;
    O.ingest_partitions = 64;
    O.rate = 2000;
    O.seconds = 10;
    O.spin_us = 200;
    O.batch_size = 100;
    O.batch_rate = 20;
    O.batch_seconds = 5;
    O.clients = 8;
    O.qps_seconds = 5;
    O.ingest_events = 1000000;
    O.ingest_keys = 10000;
    O.fresh_rate = 100;
    O.fresh_seconds = 10;
    O.live_rate = 1000;
    O.live_seconds = 25;
    O.fresh_poll_ms = 1;
    snprintf(O.phases, sizeof O.phases, "all");
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout, argv[0]);
            exit(0);
        }
        if (!strcmp(a, "--keep")) {
            O.keep = 1;
            continue;
        }
        if (!strcmp(a, "--quiet")) {
            O.quiet = 1;
            continue;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "bench_fetch: %s needs a value (or is unknown); see --help\n", a);
            exit(2);
        }
        const char *v = argv[++i];
        char *end = NULL;
        double d = strtod(v, &end);
        int num_ok = end != v && *end == 0 && d > 0;
#define NUM(opt, field, type)                                                                      \
    else if (!strcmp(a, opt)) {                                                                    \
        if (!num_ok) {                                                                             \
            fprintf(stderr, "bench_fetch: %s needs a positive number, got '%s'\n", a, v);          \
            exit(2);                                                                               \
        }                                                                                          \
        O.field = (type)d;                                                                         \
    }
        if (!strcmp(a, "--tessera")) O.tessera = v;
        else if (!strcmp(a, "--attach")) O.attach = v;
        else if (!strcmp(a, "--admin")) O.admin = v;
        else if (!strcmp(a, "--bootstrap")) O.bootstrap = v;
        else if (!strcmp(a, "--warehouse")) O.warehouse = v;
        else if (!strcmp(a, "--cpu-pids")) O.cpu_pids = v;
        else if (!strcmp(a, "--datagen")) O.datagen = v;
        else if (!strcmp(a, "--perf-dir")) O.perf_dir = v;
        else if (!strcmp(a, "--latency-log")) O.latency_log = v;
        else if (!strcmp(a, "--rpc-threads")) O.rpc_threads = v;
        else if (!strcmp(a, "--tmp")) O.tmp_parent = v;
        else if (!strcmp(a, "--phases")) snprintf(O.phases, sizeof O.phases, "%s", v);
        NUM("--days", days, int)
        NUM("--events", events, long)
        NUM("--keys", keys, int)
        NUM("--ingest-partitions", ingest_partitions, int)
        NUM("--rate", rate, double)
        NUM("--seconds", seconds, double)
        NUM("--spin-us", spin_us, double)
        NUM("--batch-size", batch_size, int)
        NUM("--batch-rate", batch_rate, double)
        NUM("--batch-seconds", batch_seconds, double)
        NUM("--clients", clients, int)
        NUM("--qps-seconds", qps_seconds, double)
        NUM("--ingest-events", ingest_events, long)
        NUM("--ingest-keys", ingest_keys, long)
        NUM("--fresh-rate", fresh_rate, double)
        NUM("--fresh-seconds", fresh_seconds, double)
        NUM("--live-rate", live_rate, double)
        NUM("--live-seconds", live_seconds, double)
        NUM("--fresh-poll-ms", fresh_poll_ms, double)
        else {
            fprintf(stderr, "bench_fetch: unknown option %s; see --help\n", a);
            exit(2);
        }
#undef NUM
    }
    if (O.days < 2) {
        fprintf(stderr, "bench_fetch: --days must be >= 2 (one uploaded day, one streamed)\n");
        exit(2);
    }
}

int main(int argc, char **argv) {
    parse_args(argc, argv);
    g_main_pid = getpid();
    setvbuf(stdout, NULL, _IOLBF, 0);
    char *dir = self_dir(argv[0]);
    char tessera[PATH_MAX], datagen[PATH_MAX];
    snprintf(tessera, sizeof tessera, "%s", O.tessera ? O.tessera : "");
    if (!O.tessera) snprintf(tessera, sizeof tessera, "%s/../cli/tessera", dir);
    snprintf(datagen, sizeof datagen, "%s", O.datagen ? O.datagen : "");
    if (!O.datagen) snprintf(datagen, sizeof datagen, "%s/tessera-datagen", dir);
    free(dir);
    if (access(tessera, X_OK) || access(datagen, X_OK)) {
        fprintf(stderr, "bench_fetch: need executables %s and %s (build them, or pass --tessera "
                        "/ --datagen)\n", tessera, datagen);
        return 2;
    }
    if (O.perf_dir && mkdir(O.perf_dir, 0755) && errno != EEXIST) {
        fprintf(stderr, "bench_fetch: cannot create %s: %s\n", O.perf_dir, strerror(errno));
        return 2;
    }

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    atexit(cleanup);

    const char *tp = O.tmp_parent ? O.tmp_parent : getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    snprintf(g_tmp, sizeof g_tmp, "%s/bench_fetch.XXXXXX", tp);
    if (!mkdtemp(g_tmp)) {
        g_tmp[0] = 0;
        fail("mkdtemp under %s: %s", tp, strerror(errno));
    }
    char wh[PATH_MAX], data[PATH_MAX], klog[PATH_MAX], slog[PATH_MAX], glog[PATH_MAX];
    PATHF(wh, "%s/warehouse", g_tmp);
    PATHF(data, "%s/data", g_tmp);
    PATHF(klog, "%s/dev-kafka.log", g_tmp);
    PATHF(slog, "%s/serve.log", g_tmp);
    PATHF(glog, "%s/datagen.log", g_tmp);

    /* ---- 0. setup */
    const char *start_ds = "2024-01-01";
    int64_t day0;
    tsr_ds_parse(start_ds, &day0);
    int64_t E = day0 + O.days - 2;
    int64_t q = (E + 2) * TSR_MS_PER_DAY; /* end of the streamed day E+1 */
    char ds_e[11], ds_s[11];
    tsr_ds_format(E, ds_e);
    tsr_ds_format(E + 1, ds_s);
    double t_setup = now_s();
    if (O.attach) {
        if (!O.admin || !O.bootstrap || !O.warehouse)
            fail("--attach needs --admin, --bootstrap and --warehouse");
        snprintf(wh, sizeof wh, "%s", O.warehouse);
    } else {
        char sdays[32], sev[32], skeys[32];
        snprintf(sdays, sizeof sdays, "%d", O.days);
        snprintf(sev, sizeof sev, "%ld", O.events);
        snprintf(skeys, sizeof skeys, "%d", O.keys);
        char *av[] = {datagen, "--out", wh, "--start-ds", (char *)start_ds, "--days", sdays,
                      "--events", sev, "--keys", skeys, "--format", "jsonl", "--quiet", NULL};
        pid_t pid = spawn(av, glog, NULL);
        int st = 0;
        while (waitpid(pid, &st, 0) < 0 && errno == EINTR) check_stop();
        child_forget(pid);
        check_stop();
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
            print_log_tail(glog);
            fail("tessera-datagen failed");
        }
    }
    char bootstrap[256];
    pid_t kpid = 0;
    if (O.attach) {
        snprintf(bootstrap, sizeof bootstrap, "%s", O.bootstrap);
    } else {
        /* dev-kafka gives every --topic the same partition count: the ingest topic is made
         * with --ingest-partitions, the main topic is auto-created (4 partitions) on first use */
        char siparts[32];
        snprintf(siparts, sizeof siparts, "%d", O.ingest_partitions);
        char *av[] = {tessera, "dev-kafka", "--partitions", siparts, "--topic", INGEST_TOPIC, NULL};
        int fd;
        kpid = spawn(av, klog, &fd);
        if (read_line(fd, bootstrap, sizeof bootstrap, 15) != 0) {
            print_log_tail(klog);
            fail("tessera dev-kafka printed no bootstrap address");
        }
    }
    info("dev-kafka pid %d at %s", (int)kpid, bootstrap);
    char grpc_addr[256] = "", http_addr[256] = "";
    if (O.attach) {
        snprintf(grpc_addr, sizeof grpc_addr, "%s", O.attach);
    } else {
        char *av[] = {tessera, "serve", "--data-dir", data, "--grpc-port", "0", "--http-port",
                      "0", "--warehouse", wh, "--kafka-bootstrap", bootstrap, NULL, NULL, NULL};
        if (O.rpc_threads) {
            av[12] = "--rpc-threads";
            av[13] = (char *)O.rpc_threads;
        }
        int fd;
        g_server_pid = spawn(av, slog, &fd);
        char line[256];
        for (int i = 0; i < 2; i++) {
            if (read_line(fd, line, sizeof line, 30) != 0) {
                print_log_tail(slog);
                fail("tessera serve did not print its addresses");
            }
            if (!strncmp(line, "grpc=", 5)) snprintf(grpc_addr, sizeof grpc_addr, "%s", line + 5);
            if (!strncmp(line, "http=", 5)) snprintf(http_addr, sizeof http_addr, "%s", line + 5);
        }
        if (!grpc_addr[0]) fail("tessera serve printed no grpc= line");
    }
    info("serve pid %d, grpc %s, http %s", (int)g_server_pid, grpc_addr, http_addr);
    tsr_error_t err;
    g_cli = tsr_rpc_client_new(grpc_addr, &err);
    if (!g_cli) fail("client: %s", err.msg);
    if (O.attach) { /* --admin HOST:PORT[,HOST:PORT...] */
        char *list = tsr_strdup(O.admin), *save = NULL;
        for (char *t = strtok_r(list, ",", &save); t && g_nadm < 4;
             t = strtok_r(NULL, ",", &save)) {
            g_adms[g_nadm] = tsr_rpc_client_new(t, &err);
            if (!g_adms[g_nadm]) fail("admin client %s: %s", t, err.msg);
            g_nadm++;
        }
        free(list);
        if (!g_nadm) fail("--admin: no address");
    }

    /* attach mode with the ingest phase alone skips the Join (apply, upload, stream) */
    int join =
        !O.attach || phase_on("fetch") || phase_on("batch") || phase_on("qps") || phase_on("fresh");
    if (join) {
        char *jj = join_json(start_ds);
        apply_config(jj, "bench_join.json");
        free(jj);
        info("applied %s (%d GroupBys x 9 features)", JOIN_NAME, NGB);
        {
            Tessera__V1__UploadRequest rq = TESSERA__V1__UPLOAD_REQUEST__INIT;
            rq.name = JOIN_NAME;
            rq.ds = ds_e;
            tsr_rpc_reply_t r;
            tsr_rpc_reply_init(&r);
            double t = now_s();
            rpc("/tessera.v1.AdminService/Upload", &rq.base, &r, 600000);
            Tessera__V1__UploadResponse *up =
                tessera__v1__upload_response__unpack(NULL, r.body.len, r.body.data);
            info("uploaded ds=%s: %lld keys, %lld GroupBys in %.1f s", ds_e,
                 up ? (long long)up->keys : -1, up ? (long long)up->group_bys : -1, now_s() - t);
            if (up) tessera__v1__upload_response__free_unpacked(up, NULL);
            tsr_rpc_reply_free(&r);
        }
    }
    tsr_kafka_producer_t *prod = open_producer(bootstrap);
    long streamed = 0;
    double t_streamed = now_s();
    if (join) {
        char path[PATH_MAX];
        PATHF(path, "%s/payments/card_txn/ds=%s/part-00000.jsonl", wh, ds_s);
        double t = now_s();
        streamed = produce_file(prod, path, MAIN_TOPIC);
        double t_prod = now_s();
        wait_consumed(MAIN_TOPIC, "bench.fetch_gb_", NGB, (uint64_t)streamed, 120, 0.05, NULL);
        t_streamed = now_s();
        info("streamed day %s: %ld events produced in %.2f s, consumed by %d GroupBys %.2f s later",
             ds_s, streamed, t_prod - t, NGB, now_s() - t_prod);
    }
    double setup_s = now_s() - t_setup;

    /* requests: 1-entity over random keys, N-entity batches */
    uint64_t seed = 12345;
#define RND() (seed = seed * 6364136223846793005ULL + 1442695040888963407ULL, (long)(seed >> 33))
    enum { NREQ1 = 1024, NREQB = 64 };
    tsr_buf_t *req1 = tsr_calloc(NREQ1, sizeof(tsr_buf_t));
    for (int i = 0; i < NREQ1; i++) {
        long u = RND() % O.keys;
        pack_fetch(JOIN_NAME, &u, 1, q, &req1[i]);
    }
    tsr_buf_t *reqb = tsr_calloc(NREQB, sizeof(tsr_buf_t));
    long *users = tsr_malloc((size_t)O.batch_size * sizeof(long));
    for (int i = 0; i < NREQB; i++) {
        for (int k = 0; k < O.batch_size; k++) users[k] = RND() % O.keys;
        pack_fetch(JOIN_NAME, users, (size_t)O.batch_size, q, &reqb[i]);
    }
    free(users);
    tsr_buf_t empty;
    tsr_buf_init(&empty);

    /* sanity: one fetch of each shape, with feature counts */
    tsr_rpc_reply_t r;
    tsr_rpc_reply_init(&r);
    tsr_rpc_call_opts_t co = {.timeout_ms = 5000};
    resp_check_t c1, cb;
    memset(&c1, 0, sizeof c1);
    memset(&cb, 0, sizeof cb);
    size_t resp1_bytes = 0;
    if (join) {
        if (tsr_rpc_client_call(g_cli, M_FETCH_JOIN, req1[0].data, req1[0].len, &co, &r, &err))
            fail("FetchJoin: %s", err.msg);
        if (check_response(r.body.data, r.body.len, &c1)) fail("malformed FetchResponse");
        if (tsr_rpc_client_call(g_cli, M_FETCH_JOIN, reqb[0].data, reqb[0].len, &co, &r, &err))
            fail("FetchJoin (batch): %s", err.msg);
        if (check_response(r.body.data, r.body.len, &cb)) fail("malformed FetchResponse");
        if (tsr_rpc_client_call(g_cli, M_FETCH_JOIN, req1[0].data, req1[0].len, &co, &r, &err) == 0)
            resp1_bytes = r.body.len;
        if (c1.failed_rows || c1.exceptions || cb.failed_rows || cb.exceptions)
            fail("fetch returned failures: %s",
                 c1.first_error[0] ? c1.first_error : cb.first_error);
    }
    double quiet_s = quiesce(t_streamed + 11);
    check_stop();
    /* warm-up: connections, pools, and the block cache. After the quiet wait: the setup's
     * background compactions rewrite table files, and a rewritten file's blocks are not in
     * the cache, so a warm-up before them would leave the measured calls reading cold blocks */
    if (join) {
        for (int i = 0; i < 2000; i++) {
            tsr_rpc_client_call(g_cli, M_HEALTH, NULL, 0, &co, &r, NULL);
            tsr_rpc_client_call(g_cli, M_FETCH_JOIN, req1[i % NREQ1].data, req1[i % NREQ1].len, &co,
                                &r, NULL);
        }
        for (int i = 0; i < NREQB; i++) /* each batch request once (64 x 100 entities) */
            tsr_rpc_client_call(g_cli, M_FETCH_JOIN, reqb[i].data, reqb[i].len, &co, &r, NULL);
    }
    tsr_rpc_reply_free(&r);
    check_stop();

    printf("bench_fetch: %s (pid %d) on %s, dev-kafka on %s; warehouse %d days, %ld "
           "events, %d keys; upload ds=%s, streamed ds=%s (%ld events); q=%lld (end of the "
           "streamed day); setup %.1f s, then %.1f s until the server was idle (background "
           "flushes and compactions of the setup)\n",
           O.attach ? "attached to" : "tessera serve", (int)g_server_pid, grpc_addr, bootstrap,
           O.days, O.events, O.keys, ds_e, ds_s, streamed, (long long)q, setup_s, quiet_s);
    printf("FetchJoin %s: %d GroupBys; 1 entity -> %zu features (%zu non-null), request %zu B, "
           "response %zu B; %d entities -> %zu rows, %zu features (%zu non-null)\n",
           JOIN_NAME, NGB, c1.features, c1.nonnull, req1[0].len, resp1_bytes, O.batch_size, cb.rows,
           cb.features, cb.nonnull);

    lat_result_t echo = {0}, f1 = {0}, fb = {0}, qe = {0}, qf = {0};
    int have_fetch = 0, have_batch = 0, have_qps = 0, have_ingest = 0, have_fresh = 0;
    printf("\n");
    print_header();
    if (phase_on("fetch")) {
        char name[64];
        info("open loop %.0f req/s for %.0f s: Health/Check, then FetchJoin 1 entity", O.rate,
             O.seconds);
        perf_begin("echo");
        open_loop(M_HEALTH, &empty, 1, O.rate, O.seconds, &echo);
        perf_end();
        snprintf(name, sizeof name, "Health/Check open loop %.0f/s", O.rate);
        print_row(name, &echo);
        settle();
        perf_begin("fetch1");
        open_loop(M_FETCH_JOIN, req1, NREQ1, O.rate, O.seconds, &f1);
        perf_end();
        snprintf(name, sizeof name, "FetchJoin 1 entity open loop %.0f/s", O.rate);
        print_row(name, &f1);
        have_fetch = 1;
        if (echo.send_lag > 1000 || f1.send_lag > 1000)
            printf("  note: the sender fell behind its schedule by up to %.0f us (echo) / %.0f us "
                   "(fetch); those delays are counted in the latencies\n",
                   echo.send_lag, f1.send_lag);
        long damon = damon_sample_ms();
        if (damon)
            printf("  note: the kernel's DAMON monitor (kdamond) samples memory every %ld ms here, "
                   "taking a few ms of a CPU each time: expect the p99s to be its stalls "
                   "(docs/benchmarks-online.md, session 8)\n", damon);
    }
    if (phase_on("batch")) {
        settle();
        char name[64];
        info("open loop %.0f req/s for %.0f s: FetchJoin %d entities", O.batch_rate,
             O.batch_seconds, O.batch_size);
        perf_begin("fetch_batch");
        open_loop(M_FETCH_JOIN, reqb, NREQB, O.batch_rate, O.batch_seconds, &fb);
        perf_end();
        snprintf(name, sizeof name, "FetchJoin %d entities open loop %.0f/s", O.batch_size,
                 O.batch_rate);
        print_row(name, &fb);
        have_batch = 1;
    }
    if (phase_on("qps")) {
        settle();
        char name[64];
        info("closed loop, %d in flight, %.0f s each: Health/Check, FetchJoin 1 entity",
             O.clients, O.qps_seconds);
        closed_loop(M_HEALTH, &empty, 1, O.clients, O.qps_seconds, &qe);
        snprintf(name, sizeof name, "Health/Check max QPS (%d in flight)", O.clients);
        print_row(name, &qe);
        perf_begin("qps");
        closed_loop(M_FETCH_JOIN, req1, NREQ1, O.clients, O.qps_seconds, &qf);
        perf_end();
        snprintf(name, sizeof name, "FetchJoin 1 entity max QPS (%d in flight)", O.clients);
        print_row(name, &qf);
        have_qps = 1;
    }
    if (have_fetch)
        printf("FetchJoin/Health p99 ratio: %.2fx (target <= 3x); FetchJoin p50 %.0f us (target "
               "<= 250), p99 %.0f us (target <= 1000)\n",
               f1.p99 / echo.p99, f1.p50, f1.p99);

    /* ---- ingest */
    double ing_eps = NAN, ing_eps_cpu = NAN, ing_cpu = NAN, ing_wall = NAN, idle_cpu_rate = NAN;
    double ing_cpu_all = NAN, ing_eps_cpu_all = NAN;
    double ing_first_s = NAN;
    if (phase_on("ingest")) {
        settle();
        long M = O.ingest_events;
        info("ingest: producing %ld events into %s (%d partitions)", M, INGEST_TOPIC,
             O.ingest_partitions);
        int32_t np = 0;
        tsr_error_t e2;
        if (tsr_kafka_producer_partitions(prod, INGEST_TOPIC, 10000, &np, &e2))
            fail("%s: %s", INGEST_TOPIC, e2.msg);
        double t = now_s();
        char msg[160];
        int64_t ts0 = (E + 1) * TSR_MS_PER_DAY;
        uint64_t s2 = 777;
        for (long i = 0; i < M; i++) {
            if ((i & 0xffff) == 0) check_stop();
            s2 = s2 * 6364136223846793005ULL + 1442695040888963407ULL;
            long u = (long)((s2 >> 33) % (uint64_t)O.ingest_keys);
            int len = snprintf(msg, sizeof msg, "{\"user_id\":\"u%ld\",\"amount\":%ld.%02ld,\"ts\":%lld}",
                               u, (long)((s2 >> 20) % 1000), (long)((s2 >> 10) % 100),
                               (long long)(ts0 + (int64_t)((double)i / (double)M * 86399000.0)));
            char key[32];
            int klen = snprintf(key, sizeof key, "u%ld", u);
            if (tsr_kafka_producer_send(prod, INGEST_TOPIC, key, (size_t)klen, msg, (size_t)len, -1,
                                        &e2))
                fail("produce: %s", e2.msg);
        }
        flush_producer(prod);
        double tprod = now_s() - t;
        info("ingest: produced %ld events in %.2f s (%.0f/s) into %d partitions", M, tprod,
             (double)M / tprod, (int)np);
        /* idle baseline: the server's CPU while nothing is produced or fetched */
        double c0 = srv_cpu_s(), w0 = now_s();
        sleep_s(2.0);
        idle_cpu_rate = (srv_cpu_s() - c0) / (now_s() - w0);
        tsr_buf_t gb;
        tsr_buf_init(&gb);
        gb_json(&gb, INGEST_GB, INGEST_TOPIC, start_ds);
        perf_begin("ingest");
        double cpu0 = srv_cpu_s(), t0 = now_s();
        apply_config(tsr_buf_cstr(&gb), "bench_ingest_gb.json");
        /* first message seen: the consumer's connect/assign time, reported apart */
        for (;;) {
            uint64_t mn;
            int64_t lag;
            check_stop();
            if (ingest_status(INGEST_TOPIC, INGEST_GB, &mn, &lag) == 1 && mn > 0) break;
            if (now_s() - t0 > 60) fail("ingest: nothing consumed after 60 s");
            sleep_s(0.01);
        }
        ing_first_s = now_s() - t0;
        uint64_t got = 0;
        double t1 = wait_consumed(INGEST_TOPIC, INGEST_GB, 1, (uint64_t)M, 600, 0.02, &got);
        if (got < (uint64_t)M) M = (long)got; /* rates over what was consumed */
        double cpu1 = srv_cpu_s();
        /* the tile store folds events into a write-back table and writes it later (when it
         * fills, or 10 s after the stream goes quiet): wait past that write (11 s after the
         * last event was consumed) and then until the server is back to its idle CPU rate for
         * 2 s in a row (at most 60 s in all), and count that deferred work too — the tiles
         * are durable only once written */
        double cpu2 = cpu1, t2 = now_s();
        int quiet = 0;
        while ((quiet < 4 || now_s() < t1 + 11) && now_s() - t2 < 60) {
            check_stop();
            double ca = srv_cpu_s(), wa = now_s();
            sleep_s(0.5);
            double rate = (srv_cpu_s() - ca) / (now_s() - wa);
            quiet = rate <= 2 * idle_cpu_rate + 0.02 ? quiet + 1 : 0;
        }
        double tail_s = now_s() - t2;
        cpu2 = srv_cpu_s() - idle_cpu_rate * tail_s; /* less the idle baseline */
        perf_end();
        tsr_buf_free(&gb);
        ing_wall = t1 - t0;
        ing_cpu = cpu1 - cpu0;
        ing_eps = (double)M / ing_wall;
        ing_eps_cpu = (double)M / ing_cpu;
        ing_cpu_all = cpu2 - cpu0;
        ing_eps_cpu_all = (double)M / ing_cpu_all;
        have_ingest = 1;
        printf("ingest %ld events (%d partitions, %ld keys, COUNT/SUM/AVERAGE x 1h/1d/30d): "
               "apply -> all consumed %.2f s (first message after %.2f s) = %.0f events/s; "
               "server CPU %.2f s = %.0f events per CPU-second until consumed; %.2f s = %.0f "
               "events per CPU-second including the deferred write-back flush (target >= "
               "500000); idle server CPU %.3f cores (baseline)\n",
               M, (int)np, O.ingest_keys, ing_wall, ing_first_s, ing_eps, ing_cpu, ing_eps_cpu,
               ing_cpu_all, ing_eps_cpu_all, idle_cpu_rate);
    }

    /* ---- freshness */
    double fr_p50 = NAN, fr_p99 = NAN, fr_max = NAN;
    long fr_n = 0, fr_lost = 0;
    if (phase_on("fresh")) {
        settle();
        fresh_t f;
        fresh_init(&f, prod, O.fresh_rate, O.fresh_seconds);
        f.ts_base = q - 1000;
        f.ts_span = 1000;
        f.key_base = (long)O.keys + 1000000;
        double *vis = tsr_calloc((size_t)f.n, sizeof(double));
        info("freshness: %ld events at %.0f/s into %s, polling FetchJoin every %.1f ms", f.n,
             f.rate, MAIN_TOPIC, O.fresh_poll_ms);
        perf_begin("fresh");
        pthread_t th;
        if (pthread_create(&th, NULL, fresh_producer, &f)) fail("pthread_create");
        long first = 0, seen = 0;
        double deadline = now_s() + O.fresh_seconds + 10;
        tsr_rpc_reply_t fr;
        tsr_rpc_reply_init(&fr);
        long *pend = tsr_malloc((size_t)f.n * sizeof(long)), *keys = tsr_malloc((size_t)f.n * sizeof(long));
        while (seen < f.n && now_s() < deadline && !g_stop) {
            long ns = atomic_load_explicit(&f.nsent, memory_order_acquire);
            while (first < ns && vis[first] > 0) first++;
            size_t np2 = 0;
            for (long i = first; i < ns && np2 < 256; i++)
                if (vis[i] == 0) pend[np2] = i, keys[np2] = f.key_base + i, np2++;
            if (np2 == 0) {
                if (f.error[0]) break;
                sleep_s(O.fresh_poll_ms / 1000.0);
                continue;
            }
            tsr_buf_t b;
            pack_fetch(JOIN_NAME, keys, np2, q, &b);
            int rc = tsr_rpc_client_call(g_cli, M_FETCH_JOIN, b.data, b.len, &co, &fr, &err);
            tsr_buf_free(&b);
            double t = now_s();
            if (rc) fail("freshness fetch: %s", err.msg);
            Tessera__V1__FetchResponse *resp =
                tessera__v1__fetch_response__unpack(NULL, fr.body.len, fr.body.data);
            if (!resp || resp->n_results != np2) fail("freshness fetch: malformed response");
            for (size_t k = 0; k < np2; k++) {
                const Tessera__V1__FetchResult *res = resp->results[k];
                int visible = 0;
                for (size_t j = 0; j < res->n_features && !visible; j++)
                    visible = strstr(res->features[j]->key, "_amount_count_1d") &&
                              !value_null(res->features[j]->value);
                if (visible) vis[pend[k]] = t, seen++;
            }
            tessera__v1__fetch_response__free_unpacked(resp, NULL);
            sleep_s(O.fresh_poll_ms / 1000.0);
        }
        pthread_join(th, NULL);
        perf_end();
        check_stop();
        if (f.error[0]) fail("freshness produce: %s", f.error);
        tsr_rpc_reply_free(&fr);
        double *lat = tsr_malloc((size_t)f.n * sizeof(double));
        for (long i = 0; i < f.n; i++) {
            if (vis[i] > 0) lat[fr_n++] = vis[i] - f.sent[i];
            else fr_lost++;
        }
        qsort(lat, (size_t)fr_n, sizeof(double), cmp_d);
        fr_p50 = pct(lat, (size_t)fr_n, 0.5) * 1e3;
        fr_p99 = pct(lat, (size_t)fr_n, 0.99) * 1e3;
        fr_max = fr_n ? lat[fr_n - 1] * 1e3 : NAN;
        have_fresh = 1;
        printf("freshness: %ld events at %.0f/s, produce -> visible to FetchJoin: p50 %.1f ms, "
               "p99 %.1f ms, max %.1f ms (target p99 <= 100 ms); not visible within 10 s: %ld; "
               "poll every %.1f ms\n",
               fr_n, O.fresh_rate, fr_p50, fr_p99, fr_max, fr_lost, O.fresh_poll_ms);
        free(lat);
        free(vis);
        free(pend);
        free(keys);
        free(f.sent);
    }

    /* ---- live: the 1-entity phase while events stream in for the keys it reads */
    lat_result_t lv = {0};
    int have_live = 0;
    if (phase_on("live")) {
        settle();
        fresh_t f;
        fresh_init(&f, prod, O.live_rate, O.live_seconds);
        f.ts_base = q - 3600000; /* the last hour before q: every window of every GroupBy */
        f.ts_span = 3600000;
        f.key_mod = O.keys;
        info("live: FetchJoin 1 entity open loop %.0f req/s for %.0f s while %.0f events/s stream "
             "into %s for the same keys", O.rate, O.live_seconds, O.live_rate, MAIN_TOPIC);
        pthread_t th;
        if (pthread_create(&th, NULL, fresh_producer, &f)) fail("pthread_create");
        perf_begin("live");
        open_loop(M_FETCH_JOIN, req1, NREQ1, O.rate, O.live_seconds, &lv);
        perf_end();
        pthread_join(th, NULL);
        check_stop();
        if (f.error[0]) fail("live produce: %s", f.error);
        free(f.sent);
        char name[64];
        snprintf(name, sizeof name, "FetchJoin 1 entity %.0f/s, %.0f ev/s in", O.rate, O.live_rate);
        print_header();
        print_row(name, &lv);
        printf("  (live: srvCPU includes the ingest of the events streamed meanwhile)\n");
        have_live = 1;
    }

    /* ---- summary */
    printf("SUMMARY bench_fetch");
    if (have_fetch)
        printf(" echo_p50_us=%.1f echo_p99_us=%.1f fetch1_p50_us=%.1f fetch1_p99_us=%.1f "
               "fetch1_p999_us=%.1f fetch1_rate=%.0f p99_ratio=%.2f fetch1_cpu_us=%.1f "
               "fetch1_errors=%ld echo_cpu_us=%.1f echo_csw=%.2f fetch1_csw=%.2f",
               echo.p50, echo.p99, f1.p50, f1.p99, f1.p999, f1.rate, f1.p99 / echo.p99, f1.cpu_us,
               f1.errors, echo.cpu_us, echo.csw, f1.csw);
    if (have_batch)
        printf(" fetch%d_p50_us=%.1f fetch%d_p99_us=%.1f fetch%d_cpu_us=%.1f", O.batch_size, fb.p50,
               O.batch_size, fb.p99, O.batch_size, fb.cpu_us);
    if (have_qps)
        printf(" echo_max_qps=%.0f fetch1_max_qps=%.0f fetch1_server_cpu_us=%.1f", qe.rate, qf.rate,
               qf.cpu_us);
    if (have_ingest)
        printf(" ingest_eps=%.0f ingest_eps_per_cpu=%.0f ingest_cpu_s=%.2f"
               " ingest_eps_per_cpu_all=%.0f ingest_cpu_all_s=%.2f",
               ing_eps, ing_eps_cpu, ing_cpu, ing_eps_cpu_all, ing_cpu_all);
    if (have_fresh) printf(" fresh_p50_ms=%.1f fresh_p99_ms=%.1f", fr_p50, fr_p99);
    if (have_live)
        printf(" live_p50_us=%.1f live_p99_us=%.1f live_cpu_us=%.1f live_errors=%ld", lv.p50, lv.p99,
               lv.cpu_us, lv.errors);
    printf("\n");
    long errors = echo.errors + f1.errors + fb.errors + qe.errors + qf.errors + lv.errors;

    tsr_kafka_producer_close(prod);
    for (int i = 0; i < NREQ1; i++) tsr_buf_free(&req1[i]);
    for (int i = 0; i < NREQB; i++) tsr_buf_free(&reqb[i]);
    free(req1);
    free(reqb);
    tsr_rpc_client_free(g_cli);
    g_cli = NULL;
    for (int i = 0; i < g_nadm; i++) tsr_rpc_client_free(g_adms[i]);
    g_nadm = 0;
    int st = child_stop(g_server_pid, SIGTERM, 30.0);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        fprintf(stderr, "bench_fetch: tessera serve exited with status 0x%x\n", st);
        print_log_tail(slog);
        errors++;
    }
    child_stop(kpid, SIGTERM, 10.0);
    cleanup();
    return errors ? 1 : 0;
}
