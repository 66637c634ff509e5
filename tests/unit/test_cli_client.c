/*
 * test_cli_client.c — the CLI's gRPC client commands (cli/cmd_apply.c, cmd_get.c,
 * cmd_upload.c, cmd_fetch.c) run as functions against an in-process fake AdminService and
 * FeatureService (tsr_rpc_server on 127.0.0.1:0) whose handlers check the requests they get
 * and answer canned responses.
 *
 * Each test starts its own server inside the forked test process (Check + fork: gRPC must never
 * be initialised in the parent). A command's stdout and stderr are captured into temp files
 * with dup2 around the call. Handlers run on the server's CQ thread and record what they saw
 * under g_mu; the test reads it after the command returned (the call is then complete).
 * test_upload_follows_failover runs two fake coordinators: A's Upload breaks as a leader's
 * does when it loses leadership, B knows the job (GetJob) — the command follows it to B.
 */
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli_int.h"
#include "tessera.pb-c.h"
#include "tsr/pbvalue.h"
#include "tsr/rpc.h"
#include "tsr_test.h"

/* ------------------------------------------------------------------------------------------
 * the fake server */

#define MAX_CONFIGS 8
#define MAX_SEEN_ROWS 4096
#define MAX_CALLS 64

typedef struct stored_config {
    char name[128];
    char *json;
    int kind;
    int64_t version;
} stored_config_t;

static struct {
    pthread_mutex_t mu;
    stored_config_t configs[MAX_CONFIGS];
    size_t n_configs;
    /* last requests seen */
    char apply_source[PATH_MAX];
    int apply_dry_run;
    int apply_calls;
    int list_kind;
    char upload_name[128], upload_ds[32], upload_warehouse[PATH_MAX];
    /* fetch: rows per call, and per row (in arrival order) at_millis presence and value */
    char fetch_method[128];
    int fetch_calls;
    int rows_per_call[MAX_CALLS];
    size_t rows_seen;
    int row_has_at[MAX_SEEN_ROWS];
    int64_t row_at[MAX_SEEN_ROWS];
} g = {.mu = PTHREAD_MUTEX_INITIALIZER};

static void sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static void fill_summary(Tessera__V1__ConfigSummary *s, const stored_config_t *c) {
    tessera__v1__config_summary__init(s);
    s->name = (char *)c->name;
    s->kind = (Tessera__V1__ConfigKind)c->kind;
    s->team = "payments";
    s->online = 1;
    s->version = c->version;
    s->applied_at_millis = 1714608000000LL + c->version * 1000; /* 2024-05-02T00:00:0Ns */
}

static stored_config_t *find_config(const char *name) {
    for (size_t i = 0; i < g.n_configs; i++)
        if (strcmp(g.configs[i].name, name) == 0) return &g.configs[i];
    return NULL;
}

/* ApplyConfig: name from metaData.name; "joinParts" makes a Join; a config whose text holds
 * "\"invalid\"" is rejected with INVALID_ARGUMENT naming the source. */
static int h_apply(void *ud, tsr_rpc_call_t *call, const uint8_t *req, size_t n, tsr_buf_t *resp,
                   tsr_error_t *err) {
    Tessera__V1__ApplyConfigRequest *rq = tessera__v1__apply_config_request__unpack(NULL, n, req);
    if (!rq) return tsr_error_set(err, TSR_EINVAL, "malformed ApplyConfigRequest");
    pthread_mutex_lock(&g.mu);
    g.apply_calls++;
    snprintf(g.apply_source, sizeof g.apply_source, "%s", rq->source_name);
    g.apply_dry_run = rq->dry_run;
    int rc = TSR_OK;
    json_error_t je;
    json_t *root = json_loads(rq->config_json, 0, &je);
    const char *name = root ? json_string_value(json_object_get(
                                  json_object_get(root, "metaData"), "name"))
                            : NULL;
    if (strstr(rq->config_json, "\"invalid\"") || !name) {
        rc = tsr_error_set(err, TSR_ECONFIG,
                           "%s: aggregations[0].operation: unknown operation 'invalid'",
                           rq->source_name);
    } else {
        Tessera__V1__ApplyConfigResponse out = TESSERA__V1__APPLY_CONFIG_RESPONSE__INIT;
        stored_config_t *c = find_config(name);
        stored_config_t tmp;
        if (!c && rq->dry_run) {
            memset(&tmp, 0, sizeof tmp);
            snprintf(tmp.name, sizeof tmp.name, "%s", name);
            c = &tmp;
            out.created = 1;
        } else if (!c) {
            c = &g.configs[g.n_configs++];
            snprintf(c->name, sizeof c->name, "%s", name);
            c->json = strdup(rq->config_json);
            c->kind = json_object_get(root, "joinParts") ? TESSERA__V1__CONFIG_KIND__JOIN
                                                          : TESSERA__V1__CONFIG_KIND__GROUP_BY;
            c->version = 1;
            out.created = 1;
        } else if (strcmp(c->json, rq->config_json) == 0) {
            out.unchanged = 1;
        } else if (!rq->dry_run) {
            free(c->json);
            c->json = strdup(rq->config_json);
            c->version++;
        }
        if (c == &tmp) c->kind = TESSERA__V1__CONFIG_KIND__GROUP_BY;
        Tessera__V1__ConfigSummary s;
        fill_summary(&s, c);
        out.config = &s;
        tsr_pb_pack((const ProtobufCMessage *)&out, resp);
    }
    pthread_mutex_unlock(&g.mu);
    json_decref(root);
    tessera__v1__apply_config_request__free_unpacked(rq, NULL);
    return rc;
}

/* ListConfigs: two canned configs (a GroupBy and a Join), filtered by kind. */
static int h_list(void *ud, tsr_rpc_call_t *call, const uint8_t *req, size_t n, tsr_buf_t *resp,
                  tsr_error_t *err) {
    Tessera__V1__ListConfigsRequest *rq = tessera__v1__list_configs_request__unpack(NULL, n, req);
    if (!rq) return tsr_error_set(err, TSR_EINVAL, "malformed ListConfigsRequest");
    static const stored_config_t canned[] = {
        {"payments.card_txn_features.v1", NULL, TESSERA__V1__CONFIG_KIND__GROUP_BY, 3},
        {"payments.checkout_features.v1", NULL, TESSERA__V1__CONFIG_KIND__JOIN, 12},
    };
    Tessera__V1__ConfigSummary s[2];
    Tessera__V1__ConfigSummary *ps[2];
    Tessera__V1__ListConfigsResponse out = TESSERA__V1__LIST_CONFIGS_RESPONSE__INIT;
    for (size_t i = 0; i < 2; i++) {
        if (rq->kind && (int)rq->kind != canned[i].kind) continue;
        fill_summary(&s[out.n_configs], &canned[i]);
        ps[out.n_configs] = &s[out.n_configs];
        out.n_configs++;
    }
    out.configs = ps;
    pthread_mutex_lock(&g.mu);
    g.list_kind = rq->kind;
    pthread_mutex_unlock(&g.mu);
    tsr_pb_pack((const ProtobufCMessage *)&out, resp);
    tessera__v1__list_configs_request__free_unpacked(rq, NULL);
    return TSR_OK;
}

/* GetConfig / DeleteConfig: "known.gb" exists, anything else is NOT_FOUND. */
static int h_get_or_delete(void *ud, tsr_rpc_call_t *call, const uint8_t *req, size_t n,
                           tsr_buf_t *resp, tsr_error_t *err) {
    int is_delete = ud != NULL;
    /* both requests are {string name = 1}: one decoder serves */
    Tessera__V1__GetConfigRequest *rq = tessera__v1__get_config_request__unpack(NULL, n, req);
    if (!rq) return tsr_error_set(err, TSR_EINVAL, "malformed request");
    int rc = TSR_OK;
    if (strcmp(rq->name, "known.gb") != 0) {
        rc = tsr_error_set(err, TSR_ENOTFOUND, "no config named '%s'", rq->name);
    } else {
        stored_config_t c = {"known.gb", NULL, TESSERA__V1__CONFIG_KIND__GROUP_BY, 3};
        Tessera__V1__ConfigSummary s;
        fill_summary(&s, &c);
        if (is_delete) {
            Tessera__V1__DeleteConfigResponse out = TESSERA__V1__DELETE_CONFIG_RESPONSE__INIT;
            out.config = &s;
            tsr_pb_pack((const ProtobufCMessage *)&out, resp);
        } else {
            Tessera__V1__GetConfigResponse out = TESSERA__V1__GET_CONFIG_RESPONSE__INIT;
            out.config = &s;
            out.config_json = "{\"metaData\":{\"name\":\"known.gb\",\"team\":\"payments\"},"
                              "\"keyColumns\":[\"user\"]}";
            tsr_pb_pack((const ProtobufCMessage *)&out, resp);
        }
    }
    tessera__v1__get_config_request__free_unpacked(rq, NULL);
    return rc;
}

static int h_status(void *ud, tsr_rpc_call_t *call, const uint8_t *req, size_t n, tsr_buf_t *resp,
                    tsr_error_t *err) {
    Tessera__V1__ComponentStatus c1 = TESSERA__V1__COMPONENT_STATUS__INIT;
    Tessera__V1__ComponentStatus c2 = TESSERA__V1__COMPONENT_STATUS__INIT;
    c1.name = "worker";
    c1.serving = 1;
    c1.detail = "tile store /data/tiles";
    c2.name = "kafka:payments.events";
    c2.serving = 0;
    c2.detail = "no broker configured";
    Tessera__V1__ComponentStatus *cs[2] = {&c1, &c2};
    Tessera__V1__StatusResponse out = TESSERA__V1__STATUS_RESPONSE__INIT;
    out.version = "0.1.0";
    out.started_at_millis = 1714608000000LL;
    out.configs = 5;
    out.n_components = 2;
    out.components = cs;
    tsr_pb_pack((const ProtobufCMessage *)&out, resp);
    return TSR_OK;
}

static int h_upload(void *ud, tsr_rpc_call_t *call, const uint8_t *req, size_t n, tsr_buf_t *resp,
                    tsr_error_t *err) {
    Tessera__V1__UploadRequest *rq = tessera__v1__upload_request__unpack(NULL, n, req);
    if (!rq) return tsr_error_set(err, TSR_EINVAL, "malformed UploadRequest");
    pthread_mutex_lock(&g.mu);
    snprintf(g.upload_name, sizeof g.upload_name, "%s", rq->name);
    snprintf(g.upload_ds, sizeof g.upload_ds, "%s", rq->ds);
    snprintf(g.upload_warehouse, sizeof g.upload_warehouse, "%s", rq->warehouse);
    pthread_mutex_unlock(&g.mu);
    Tessera__V1__UploadResponse out = TESSERA__V1__UPLOAD_RESPONSE__INIT;
    out.name = rq->name;
    out.batch_end_millis = 1714608000000LL; /* 2024-05-02T00:00:00Z for ds 2024-05-01 */
    out.keys = 1234;
    out.group_bys = 2;
    tsr_pb_pack((const ProtobufCMessage *)&out, resp);
    tessera__v1__upload_request__free_unpacked(rq, NULL);
    return TSR_OK;
}

/* FetchJoin / FetchGroupBy. "missing" → NOT_FOUND, "slow" sleeps 3000 ms. Per row: a key
 * user == "bad" fails the row; otherwise features in a deliberately non-alphabetical order:
 * z_seq (the row's arrival index), a_user (the user key echoed), m_null (null). */
static int h_fetch(void *ud, tsr_rpc_call_t *call, const uint8_t *req, size_t n, tsr_buf_t *resp,
                   tsr_error_t *err) {
    tsr_arena_t arena;
    tsr_arena_init(&arena, 0);
    ProtobufCAllocator pa;
    tsr_pb_allocator(&arena, &pa);
    Tessera__V1__FetchRequest *rq = tessera__v1__fetch_request__unpack(&pa, n, req);
    int rc = TSR_OK;
    if (!rq) {
        rc = tsr_error_set(err, TSR_EINVAL, "malformed FetchRequest");
        goto done;
    }
    if (strcmp(rq->name, "missing") == 0) {
        rc = tsr_error_set(err, TSR_ENOTFOUND, "join '%s' not found", rq->name);
        goto done;
    }
    if (strcmp(rq->name, "slow") == 0) sleep_ms(3000);
    pthread_mutex_lock(&g.mu);
    snprintf(g.fetch_method, sizeof g.fetch_method, "%s", tsr_rpc_call_method(call));
    if (g.fetch_calls < MAX_CALLS) g.rows_per_call[g.fetch_calls] = (int)rq->n_rows;
    g.fetch_calls++;
    size_t base = g.rows_seen;
    for (size_t r = 0; r < rq->n_rows; r++, g.rows_seen++) {
        if (g.rows_seen >= MAX_SEEN_ROWS) continue;
        g.row_has_at[g.rows_seen] = rq->rows[r]->at_case == TESSERA__V1__FETCH_ROW__AT_AT_MILLIS;
        g.row_at[g.rows_seen] = rq->rows[r]->at_millis;
    }
    pthread_mutex_unlock(&g.mu);

    Tessera__V1__FetchResponse out = TESSERA__V1__FETCH_RESPONSE__INIT;
    out.n_results = rq->n_rows;
    out.results = tsr_arena_alloc(&arena, (rq->n_rows + 1) * sizeof *out.results);
    for (size_t r = 0; r < rq->n_rows; r++) {
        const Tessera__V1__FetchRow *row = rq->rows[r];
        const char *user = "";
        for (size_t k = 0; k < row->n_keys; k++)
            if (strcmp(row->keys[k]->key, "user") == 0 && row->keys[k]->value &&
                row->keys[k]->value->kind_case == TESSERA__V1__VALUE__KIND_STRING_VALUE)
                user = row->keys[k]->value->string_value;
        Tessera__V1__FetchResult *res = tsr_arena_alloc(&arena, sizeof *res);
        tessera__v1__fetch_result__init(res);
        /* echo the keys as entity_keys (the CLI prints its own row keys, as HTTP does) */
        res->n_entity_keys = row->n_keys;
        res->entity_keys = tsr_arena_alloc(&arena, (row->n_keys + 1) * sizeof *res->entity_keys);
        for (size_t k = 0; k < row->n_keys; k++) {
            Tessera__V1__FetchResult__EntityKeysEntry *e = tsr_arena_alloc(&arena, sizeof *e);
            tessera__v1__fetch_result__entity_keys_entry__init(e);
            e->key = row->keys[k]->key;
            e->value = row->keys[k]->value;
            res->entity_keys[k] = e;
        }
        if (strcmp(user, "bad") == 0) {
            res->status = TESSERA__V1__ROW_STATUS__FAILURE;
            res->error = "key user=bad: \"boom\"";
        } else {
            tsr_value_t vals[3] = {tsr_value_long((int64_t)(base + r)),
                                   tsr_value_string(user, strlen(user)), tsr_value_null()};
            static const char *const names[3] = {"z_seq", "a_user", "m_null"};
            res->n_features = 3;
            res->features = tsr_arena_alloc(&arena, 3 * sizeof *res->features);
            for (int k = 0; k < 3; k++) {
                Tessera__V1__FetchResult__FeaturesEntry *e = tsr_arena_alloc(&arena, sizeof *e);
                tessera__v1__fetch_result__features_entry__init(e);
                e->key = (char *)names[k];
                e->value = tsr_pb_value_new(&vals[k], &arena);
                res->features[k] = e;
            }
        }
        out.results[r] = res;
    }
    tsr_pb_pack((const ProtobufCMessage *)&out, resp);
done:
    tsr_arena_free(&arena);
    return rc;
}

static tsr_rpc_server_t *g_srv;
static char g_addr[64];

static void server_start(void) {
    tsr_error_t err;
    tsr_error_clear(&err);
    g_srv = tsr_rpc_server_new("127.0.0.1:0", NULL, &err);
    ck_assert_msg(g_srv != NULL, "server: %s", err.msg);
    static const struct {
        const char *path;
        tsr_rpc_unary_fn fn;
        void *ud;
    } k_methods[] = {
        {"/tessera.v1.AdminService/ApplyConfig", h_apply, NULL},
        {"/tessera.v1.AdminService/ListConfigs", h_list, NULL},
        {"/tessera.v1.AdminService/GetConfig", h_get_or_delete, NULL},
        {"/tessera.v1.AdminService/DeleteConfig", h_get_or_delete, (void *)1},
        {"/tessera.v1.AdminService/Status", h_status, NULL},
        {"/tessera.v1.AdminService/Upload", h_upload, NULL},
        {"/tessera.v1.FeatureService/FetchJoin", h_fetch, NULL},
        {"/tessera.v1.FeatureService/FetchGroupBy", h_fetch, NULL},
    };
    for (size_t i = 0; i < sizeof k_methods / sizeof *k_methods; i++)
        ck_assert_int_eq(tsr_rpc_server_add_unary(g_srv, k_methods[i].path, k_methods[i].fn,
                                                  k_methods[i].ud, &err),
                         TSR_OK);
    ck_assert_int_eq(tsr_rpc_server_start(g_srv, &err), TSR_OK);
    snprintf(g_addr, sizeof g_addr, "127.0.0.1:%d", tsr_rpc_server_port(g_srv));
}

static void server_stop(void) {
    tsr_rpc_server_free(g_srv);
    g_srv = NULL;
    for (size_t i = 0; i < g.n_configs; i++) free(g.configs[i].json);
    g.n_configs = 0;
}

/* ------------------------------------------------------------------------------------------
 * running commands with captured output */

typedef struct cap {
    int rc;
    char *out, *err;
    double secs;
} cap_t;

static char *slurp_fd(int fd) {
    off_t n = lseek(fd, 0, SEEK_END);
    ck_assert_int_ge(n, 0);
    char *s = malloc((size_t)n + 1);
    ck_assert_int_eq(pread(fd, s, (size_t)n, 0), n);
    s[n] = '\0';
    return s;
}

/* Runs def->run with argv {def->name, args..., NULL-terminated}, capturing stdout/stderr. */
static cap_t run_cmd(const tsr_cli_cmd_t *def, ...) {
    char *argv[64];
    int argc = 0;
    argv[argc++] = (char *)def->name;
    va_list ap;
    va_start(ap, def);
    const char *a;
    while ((a = va_arg(ap, const char *)) != NULL && argc < 63) argv[argc++] = (char *)a;
    va_end(ap);
    argv[argc] = NULL;

    char po[] = "/tmp/tsr_cli_outXXXXXX", pe[] = "/tmp/tsr_cli_errXXXXXX";
    int fo = mkstemp(po), fe = mkstemp(pe);
    ck_assert(fo >= 0 && fe >= 0);
    unlink(po);
    unlink(pe);
    fflush(stdout);
    fflush(stderr);
    int so = dup(1), se = dup(2);
    dup2(fo, 1);
    dup2(fe, 2);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    cap_t c;
    c.rc = def->run(argc, argv);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    fflush(stdout);
    fflush(stderr);
    dup2(so, 1);
    dup2(se, 2);
    close(so);
    close(se);
    c.out = slurp_fd(fo);
    c.err = slurp_fd(fe);
    close(fo);
    close(fe);
    c.secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) * 1e-9;
    return c;
}

static void cap_free(cap_t *c) {
    free(c->out);
    free(c->err);
}

static char g_dir[256];

static void make_dir(void) {
    snprintf(g_dir, sizeof g_dir, "/tmp/tsr_cli_testXXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(g_dir));
}

static void rm_dir(void) {
    char cmd[PATH_MAX + 16];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    ck_assert_int_eq(system(cmd), 0);
}

/* Writes text to g_dir/name; returns the path (static buffer rotated among 4). */
static const char *write_file(const char *name, const char *text) {
    static char paths[4][PATH_MAX];
    static int k;
    char *p = paths[k++ % 4];
    snprintf(p, PATH_MAX, "%s/%s", g_dir, name);
    FILE *f = fopen(p, "w");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    fclose(f);
    return p;
}

static int count_lines(const char *s) {
    int n = 0;
    for (; *s; s++) n += *s == '\n';
    return n;
}

/* The i-th line (0-based) of s into buf. */
static const char *line_at(const char *s, int i, char *buf, size_t n) {
    for (; i > 0 && s; i--) {
        s = strchr(s, '\n');
        if (s) s++;
    }
    if (!s) return "";
    size_t l = strcspn(s, "\n");
    if (l >= n) l = n - 1;
    memcpy(buf, s, l);
    buf[l] = '\0';
    return buf;
}

#define GB_V1 "{\"metaData\":{\"name\":\"payments.card_txn_features.v1\",\"team\":\"payments\"}," \
              "\"keyColumns\":[\"user\"]}\n"
#define GB_V2 "{\"metaData\":{\"name\":\"payments.card_txn_features.v1\",\"team\":\"payments\"}," \
              "\"keyColumns\":[\"user\",\"merchant\"]}\n"

/* ------------------------------------------------------------------------------------------
 * tests */

START_TEST(test_apply_created_unchanged_configured) {
    make_dir();
    server_start();
    const char *f = write_file("gb.json", GB_V1);
    cap_t c = run_cmd(&tsr_cmd_apply_def, "-f", f, "--server", g_addr, NULL);
    ck_assert_msg(c.rc == 0, "rc %d, stderr: %s", c.rc, c.err);
    ck_assert_str_eq(c.out, "created groupby payments.card_txn_features.v1 (version 1)\n");
    ck_assert_str_eq(g.apply_source, f);
    ck_assert_int_eq(g.apply_dry_run, 0);
    ck_assert_str_eq(g.configs[0].json, GB_V1);   /* the file's text, byte for byte */
    cap_free(&c);

    c = run_cmd(&tsr_cmd_apply_def, "--server", g_addr, "-f", f, NULL);
    ck_assert_int_eq(c.rc, 0);
    ck_assert_str_eq(c.out, "unchanged groupby payments.card_txn_features.v1 (version 1)\n");
    cap_free(&c);

    write_file("gb.json", GB_V2);
    c = run_cmd(&tsr_cmd_apply_def, "--server=" , "-f", f, NULL);  /* empty --server=: usage */
    ck_assert_int_eq(c.rc, 2);
    cap_free(&c);
    c = run_cmd(&tsr_cmd_apply_def, "--dry-run", "-f", f, "--server", g_addr, NULL);
    ck_assert_int_eq(c.rc, 0);
    ck_assert_int_eq(g.apply_dry_run, 1);
    ck_assert_str_eq(c.out, "configured groupby payments.card_txn_features.v1 (dry run)\n");
    cap_free(&c);
    c = run_cmd(&tsr_cmd_apply_def, "-f", f, "--server", g_addr, NULL);
    ck_assert_int_eq(c.rc, 0);
    ck_assert_str_eq(c.out, "configured groupby payments.card_txn_features.v1 (version 2)\n");
    cap_free(&c);

    /* $TESSERA_SERVER is used without --server */
    setenv("TESSERA_SERVER", g_addr, 1);
    c = run_cmd(&tsr_cmd_apply_def, "-f", f, NULL);
    ck_assert_int_eq(c.rc, 0);
    ck_assert_str_eq(c.out, "unchanged groupby payments.card_txn_features.v1 (version 2)\n");
    unsetenv("TESSERA_SERVER");
    cap_free(&c);
    server_stop();
    rm_dir();
}
END_TEST

START_TEST(test_apply_invalid_and_directory) {
    make_dir();
    server_start();
    char sub[PATH_MAX];
    snprintf(sub, sizeof sub, "%s/configs", g_dir);
    ck_assert_int_eq(mkdir(sub, 0755), 0);
    write_file("configs/a_bad.json",
               "{\"metaData\":{\"name\":\"x.bad\"},\"aggregations\":[{\"operation\":\"invalid\"}]}");
    write_file("configs/b_join.json",
               "{\"metaData\":{\"name\":\"x.join\"},\"joinParts\":[]}");
    write_file("configs/README.md", "not a config");
    cap_t c = run_cmd(&tsr_cmd_apply_def, "-f", sub, "--server", g_addr, NULL);
    /* the bad file is reported with the server's message; the next one is still applied */
    ck_assert_int_eq(c.rc, 1);
    ck_assert_msg(strstr(c.err, "configs/a_bad.json: ") &&
                      strstr(c.err, "unknown operation 'invalid'"),
                  "stderr: %s", c.err);
    ck_assert_str_eq(c.out, "created join x.join (version 1)\n");
    ck_assert_int_eq(g.apply_calls, 2);   /* README skipped */
    cap_free(&c);

    c = run_cmd(&tsr_cmd_apply_def, "-f", "/nonexistent/x.json", "--server", g_addr, NULL);
    ck_assert_int_eq(c.rc, 3);
    cap_free(&c);
    c = run_cmd(&tsr_cmd_apply_def, "--server", g_addr, NULL);
    ck_assert_int_eq(c.rc, 2);
    ck_assert_ptr_nonnull(strstr(c.err, "-f FILE is required"));
    cap_free(&c);
    server_stop();
    rm_dir();
}
END_TEST

START_TEST(test_get_table_and_json) {
    server_start();
    cap_t c = run_cmd(&tsr_cmd_get_def, "groupbys", "--server", g_addr, NULL);
    ck_assert_msg(c.rc == 0, "stderr: %s", c.err);
    ck_assert_int_eq(g.list_kind, TESSERA__V1__CONFIG_KIND__GROUP_BY);
    ck_assert_str_eq(c.out,
                     "NAME                            KIND      TEAM       ONLINE   VERSION   APPLIED\n"
                     "payments.card_txn_features.v1   groupby   payments   true     3         2024-05-02T00:00:03Z\n");
    cap_free(&c);

    c = run_cmd(&tsr_cmd_get_def, "configs", "-o", "json", "--server", g_addr, NULL);
    ck_assert_int_eq(c.rc, 0);
    ck_assert_int_eq(g.list_kind, 0);
    json_error_t je;
    json_t *arr = json_loads(c.out, 0, &je);
    ck_assert_msg(arr && json_is_array(arr), "not a JSON array: %s", c.out);
    ck_assert_int_eq(json_array_size(arr), 2);
    json_t *j = json_array_get(arr, 1);
    ck_assert_str_eq(json_string_value(json_object_get(j, "name")), "payments.checkout_features.v1");
    ck_assert_str_eq(json_string_value(json_object_get(j, "kind")), "join");
    ck_assert_str_eq(json_string_value(json_object_get(j, "team")), "payments");
    ck_assert(json_is_true(json_object_get(j, "online")));
    ck_assert_int_eq(json_integer_value(json_object_get(j, "version")), 12);
    ck_assert_int_eq(json_integer_value(json_object_get(j, "appliedAtMillis")), 1714608012000LL);
    ck_assert_str_eq(json_string_value(json_object_get(j, "appliedAt")), "2024-05-02T00:00:12Z");
    json_decref(arr);
    cap_free(&c);

    c = run_cmd(&tsr_cmd_get_def, "-ojson", "joins", "--server", g_addr, NULL);
    ck_assert_int_eq(c.rc, 0);
    ck_assert_int_eq(g.list_kind, TESSERA__V1__CONFIG_KIND__JOIN);
    ck_assert_ptr_nonnull(strstr(c.out, "\"kind\": \"join\""));
    cap_free(&c);

    c = run_cmd(&tsr_cmd_get_def, "stagingqueries", "--server", g_addr, NULL);
    ck_assert_int_eq(c.rc, 0);
    ck_assert_str_eq(c.out, "");
    ck_assert_ptr_nonnull(strstr(c.err, "No stagingqueries found."));
    cap_free(&c);

    c = run_cmd(&tsr_cmd_get_def, "gizmos", "--server", g_addr, NULL);
    ck_assert_int_eq(c.rc, 2);
    cap_free(&c);
    c = run_cmd(&tsr_cmd_get_def, "joins", "-o", "yaml", "--server", g_addr, NULL);
    ck_assert_int_eq(c.rc, 2);
    cap_free(&c);
    server_stop();
}
END_TEST

START_TEST(test_describe_delete_status) {
    server_start();
    cap_t c = run_cmd(&tsr_cmd_describe_def, "known.gb", "--server", g_addr, NULL);
    ck_assert_msg(c.rc == 0, "stderr: %s", c.err);
    ck_assert_ptr_nonnull(strstr(c.out, "Name:      known.gb\n"));
    ck_assert_ptr_nonnull(strstr(c.out, "Version:   3\n"));
    ck_assert_ptr_nonnull(strstr(c.out, "Config:\n{\n  \"metaData\": {"));
    cap_free(&c);

    c = run_cmd(&tsr_cmd_describe_def, "known.gb", "-o", "json", "--server", g_addr, NULL);
    ck_assert_int_eq(c.rc, 0);
    json_error_t je;
    json_t *j = json_loads(c.out, 0, &je);
    ck_assert_ptr_nonnull(j);
    ck_assert_str_eq(json_string_value(json_object_get(j, "name")), "known.gb");
    ck_assert_str_eq(json_string_value(json_object_get(
                         json_object_get(json_object_get(j, "config"), "metaData"), "name")),
                     "known.gb");
    json_decref(j);
    cap_free(&c);

    /* NOT_FOUND → exit 3 with the server's message */
    c = run_cmd(&tsr_cmd_describe_def, "nope", "--server", g_addr, NULL);
    ck_assert_int_eq(c.rc, 3);
    ck_assert_msg(strstr(c.err, "tessera describe: nope: no config named 'nope'"), "stderr: %s",
                  c.err);
    cap_free(&c);
    c = run_cmd(&tsr_cmd_delete_def, "nope", "--server", g_addr, NULL);
    ck_assert_int_eq(c.rc, 3);
    cap_free(&c);
    c = run_cmd(&tsr_cmd_delete_def, "known.gb", "--server", g_addr, NULL);
    ck_assert_int_eq(c.rc, 0);
    ck_assert_str_eq(c.out, "deleted groupby known.gb (version 3)\n");
    cap_free(&c);
    c = run_cmd(&tsr_cmd_delete_def, "--server", g_addr, NULL);
    ck_assert_int_eq(c.rc, 2);
    cap_free(&c);

    c = run_cmd(&tsr_cmd_status_def, "--server", g_addr, NULL);
    ck_assert_int_eq(c.rc, 0);
    ck_assert_ptr_nonnull(strstr(c.out, "Version:   0.1.0\n"));
    ck_assert_ptr_nonnull(strstr(c.out, "Started:   2024-05-02T00:00:00Z"));
    ck_assert_ptr_nonnull(strstr(c.out, "Configs:   5\n"));
    ck_assert_ptr_nonnull(strstr(c.out, "COMPONENT               SERVING   DETAIL\n"
                                        "worker                  yes       tile store /data/tiles\n"
                                        "kafka:payments.events   no        no broker configured\n"));
    cap_free(&c);
    c = run_cmd(&tsr_cmd_status_def, "-o", "json", "--server", g_addr, NULL);
    ck_assert_int_eq(c.rc, 0);
    j = json_loads(c.out, 0, &je);
    ck_assert_ptr_nonnull(j);
    ck_assert_int_eq(json_integer_value(json_object_get(j, "configs")), 5);
    ck_assert_int_eq(json_array_size(json_object_get(j, "components")), 2);
    ck_assert(json_is_false(json_object_get(json_array_get(json_object_get(j, "components"), 1),
                                            "serving")));
    json_decref(j);
    cap_free(&c);
    server_stop();
}
END_TEST

START_TEST(test_upload) {
    make_dir();
    server_start();
    const char *f = write_file("gb.json", GB_V1);
    char wh[PATH_MAX];
    snprintf(wh, sizeof wh, "%s/wh", g_dir);
    ck_assert_int_eq(mkdir(wh, 0755), 0);
    ck_assert_int_eq(chdir(g_dir), 0);
    /* a relative --warehouse is sent absolute; the name is metaData.name from the file */
    cap_t c = run_cmd(&tsr_cmd_upload_def, f, "--ds", "2024-05-01", "--warehouse", "wh",
                      "--server", g_addr, NULL);
    ck_assert_msg(c.rc == 0, "stderr: %s", c.err);
    ck_assert_str_eq(g.upload_name, "payments.card_txn_features.v1");
    ck_assert_str_eq(g.upload_ds, "2024-05-01");
    char real_wh[PATH_MAX];
    ck_assert_ptr_nonnull(realpath(wh, real_wh));
    ck_assert_str_eq(g.upload_warehouse, real_wh);
    ck_assert_msg(strstr(c.out, "uploaded payments.card_txn_features.v1 as of "
                                "2024-05-02T00:00:00Z (--ds 2024-05-01): 1234 keys, 2 group_bys in "),
                  "stdout: %s", c.out);
    cap_free(&c);

    /* by name; no --warehouse: empty (server default) */
    c = run_cmd(&tsr_cmd_upload_def, "some.join.v1", "--ds=2024-05-01", "--server", g_addr, NULL);
    ck_assert_int_eq(c.rc, 0);
    ck_assert_str_eq(g.upload_name, "some.join.v1");
    ck_assert_str_eq(g.upload_warehouse, "");
    cap_free(&c);

    c = run_cmd(&tsr_cmd_upload_def, "missing/x.json", "--ds", "2024-05-01", "--server", g_addr,
                NULL);
    ck_assert_int_eq(c.rc, 3);
    cap_free(&c);
    c = run_cmd(&tsr_cmd_upload_def, f, "--ds", "2024-13-01", "--server", g_addr, NULL);
    ck_assert_int_eq(c.rc, 2);
    cap_free(&c);
    c = run_cmd(&tsr_cmd_upload_def, f, "--server", g_addr, NULL);
    ck_assert_int_eq(c.rc, 2);
    cap_free(&c);
    server_stop();
    rm_dir();
}
END_TEST

START_TEST(test_fetch_keys) {
    server_start();
    cap_t c = run_cmd(&tsr_cmd_fetch_def, "--join", "payments.checkout_features.v1", "--keys",
                      "{\"user\":\"u1\",\"merchant\":7}", "--at-millis", "1700000000000",
                      "--server", g_addr, NULL);
    ck_assert_msg(c.rc == 0, "stderr: %s", c.err);
    ck_assert_str_eq(c.out, "{\"status\":\"Success\",\"entityKeys\":{\"user\":\"u1\",\"merchant\":7},"
                            "\"features\":{\"z_seq\":0,\"a_user\":\"u1\",\"m_null\":null}}\n");
    ck_assert_str_eq(g.fetch_method, "/tessera.v1.FeatureService/FetchJoin");
    ck_assert_int_eq(g.fetch_calls, 1);
    ck_assert_int_eq(g.row_has_at[0], 1);
    ck_assert_int_eq(g.row_at[0], 1700000000000LL);
    ck_assert_str_eq(c.err, "");   /* no summary for --keys */
    cap_free(&c);

    /* a GroupBy, no --at-millis: at absent; a failing row is printed as Failure, exit 0 */
    c = run_cmd(&tsr_cmd_fetch_def, "--group-by", "payments.card_txn_features.v1", "--keys",
                "{\"user\":\"bad\"}", "--server", g_addr, NULL);
    ck_assert_int_eq(c.rc, 0);
    ck_assert_str_eq(g.fetch_method, "/tessera.v1.FeatureService/FetchGroupBy");
    ck_assert_int_eq(g.row_has_at[1], 0);
    ck_assert_str_eq(c.out, "{\"status\":\"Failure\",\"entityKeys\":{\"user\":\"bad\"},"
                            "\"error\":\"key user=bad: \\\"boom\\\"\"}\n");
    cap_free(&c);

    /* unknown Join: NOT_FOUND → exit 3 */
    c = run_cmd(&tsr_cmd_fetch_def, "--join", "missing", "--keys", "{\"user\":\"u1\"}", "--server",
                g_addr, NULL);
    ck_assert_int_eq(c.rc, 3);
    ck_assert_msg(strstr(c.err, "join 'missing' not found"), "stderr: %s", c.err);
    ck_assert_str_eq(c.out, "");
    cap_free(&c);

    /* bad --keys: exit 1 before any call; usage errors: exit 2 */
    int calls = g.fetch_calls;
    c = run_cmd(&tsr_cmd_fetch_def, "--join", "j", "--keys", "{\"user\":[1]}", "--server", g_addr,
                NULL);
    ck_assert_int_eq(c.rc, 1);
    ck_assert_msg(strstr(c.err, "--keys: key \"user\" must be a string"), "stderr: %s", c.err);
    cap_free(&c);
    c = run_cmd(&tsr_cmd_fetch_def, "--join", "j", "--keys", "{\"user\":", "--server", g_addr, NULL);
    ck_assert_int_eq(c.rc, 1);
    cap_free(&c);
    c = run_cmd(&tsr_cmd_fetch_def, "--join", "j", "--group-by", "g", "--keys", "{\"u\":1}", NULL);
    ck_assert_int_eq(c.rc, 2);
    cap_free(&c);
    c = run_cmd(&tsr_cmd_fetch_def, "--join", "j", "--keys-file", "x", "--at-millis", "5", NULL);
    ck_assert_int_eq(c.rc, 2);
    cap_free(&c);
    c = run_cmd(&tsr_cmd_fetch_def, "--join", "j", "--keys", "{\"u\":1}", "--at-millis", "soon",
                NULL);
    ck_assert_int_eq(c.rc, 2);
    cap_free(&c);
    ck_assert_int_eq(g.fetch_calls, calls);
    server_stop();
}
END_TEST

START_TEST(test_fetch_keys_file_order_and_chunks) {
    make_dir();
    server_start();
    const char *f = write_file("keys.jsonl",
                               "{\"keys\":{\"user\":\"u0\"},\"at_millis\":1000}\n"
                               "{\"keys\":{\"user\":\"u1\"}}\n"
                               "\n"
                               "  {\"keys\":{\"user\":\"bad\"},\"at_millis\":null}\r\n"
                               "{\"at_millis\":3000,\"keys\":{\"user\":\"u3\",\"n\":1.5}}\n"
                               "{\"keys\":{\"user\":\"u4\"},\"at_millis\":-4000}\n"
                               "{\"keys\":{\"user\":\"u5\"}}\n"
                               "{\"keys\":{\"user\":\"u6\"},\"at_millis\":6000}");  /* no final newline */
    cap_t c = run_cmd(&tsr_cmd_fetch_def, "--join", "j", "--keys-file", f, "--batch-size", "3",
                      "--server", g_addr, NULL);
    ck_assert_msg(c.rc == 0, "stderr: %s", c.err);
    ck_assert_int_eq(g.fetch_calls, 3);
    ck_assert_int_eq(g.rows_per_call[0], 3);
    ck_assert_int_eq(g.rows_per_call[1], 3);
    ck_assert_int_eq(g.rows_per_call[2], 1);
    static const int has_at[7] = {1, 0, 0, 1, 1, 0, 1};
    static const int64_t at[7] = {1000, 0, 0, 3000, -4000, 0, 6000};
    for (int i = 0; i < 7; i++) {
        ck_assert_int_eq(g.row_has_at[i], has_at[i]);
        if (has_at[i]) ck_assert_int_eq(g.row_at[i], at[i]);
    }
    ck_assert_int_eq(count_lines(c.out), 7);
    char buf[512];
    ck_assert_str_eq(line_at(c.out, 0, buf, sizeof buf),
                     "{\"status\":\"Success\",\"entityKeys\":{\"user\":\"u0\"},"
                     "\"features\":{\"z_seq\":0,\"a_user\":\"u0\",\"m_null\":null}}");
    ck_assert_str_eq(line_at(c.out, 2, buf, sizeof buf),
                     "{\"status\":\"Failure\",\"entityKeys\":{\"user\":\"bad\"},"
                     "\"error\":\"key user=bad: \\\"boom\\\"\"}");
    ck_assert_str_eq(line_at(c.out, 3, buf, sizeof buf),
                     "{\"status\":\"Success\",\"entityKeys\":{\"user\":\"u3\",\"n\":1.5},"
                     "\"features\":{\"z_seq\":3,\"a_user\":\"u3\",\"m_null\":null}}");
    for (int i = 0; i < 7; i++) {
        if (i == 2) continue;
        char want[64];
        snprintf(want, sizeof want, "\"z_seq\":%d,\"a_user\":\"u%d\"", i, i);
        ck_assert_msg(strstr(line_at(c.out, i, buf, sizeof buf), want), "line %d: %s", i, buf);
    }
    ck_assert_msg(strstr(c.err, "7 rows from ") && strstr(c.err, "in 3 calls, 1 failed"),
                  "summary: %s", c.err);
    cap_free(&c);
    server_stop();
    rm_dir();
}
END_TEST

START_TEST(test_fetch_default_chunking) {
    make_dir();
    server_start();
    /* 2500 rows, default batch 1000: calls of 1000, 1000 and 500, output in input order */
    tsr_buf_t b;
    tsr_buf_init(&b);
    for (int i = 0; i < 2500; i++) {
        if (i % 2) tsr_buf_printf(&b, "{\"keys\":{\"user\":\"u%d\"},\"at_millis\":%d}\n", i, i);
        else tsr_buf_printf(&b, "{\"keys\":{\"user\":\"u%d\"}}\n", i);
    }
    const char *f = write_file("many.jsonl", tsr_buf_cstr(&b));
    tsr_buf_free(&b);
    cap_t c = run_cmd(&tsr_cmd_fetch_def, "--group-by", "gb", "--keys-file", f, "--server", g_addr,
                      NULL);
    ck_assert_msg(c.rc == 0, "stderr: %s", c.err);
    ck_assert_int_eq(g.fetch_calls, 3);
    ck_assert_int_eq(g.rows_per_call[0], 1000);
    ck_assert_int_eq(g.rows_per_call[1], 1000);
    ck_assert_int_eq(g.rows_per_call[2], 500);
    ck_assert_int_eq(count_lines(c.out), 2500);
    const char *p = c.out;
    for (int i = 0; i < 2500; i++) {
        if (g.row_has_at[i] != (i % 2) || (i % 2 && g.row_at[i] != i))
            ck_abort_msg("row %d: at_millis presence/value wrong", i);
        char want[64];
        snprintf(want, sizeof want, "\"z_seq\":%d,\"a_user\":\"u%d\"", i, i);
        const char *nl = strchr(p, '\n');
        const char *hit = strstr(p, want);
        if (!nl || !hit || hit > nl) ck_abort_msg("output line %d out of order", i);
        p = nl + 1;
    }
    cap_free(&c);
    server_stop();
    rm_dir();
}
END_TEST

START_TEST(test_fetch_bad_keys_file_line) {
    make_dir();
    server_start();
    const char *f = write_file("keys.jsonl",
                               "{\"keys\":{\"user\":\"u0\"}}\n"
                               "{\"keys\":{\"user\":\"u1\"}}\n"
                               "{\"keys\":{\"user\":\"u2\"},}\n"
                               "{\"keys\":{\"user\":\"u3\"}}\n");
    cap_t c = run_cmd(&tsr_cmd_fetch_def, "--join", "j", "--keys-file", f, "--server", g_addr,
                      NULL);
    ck_assert_int_eq(c.rc, 1);
    char want[PATH_MAX + 64];
    snprintf(want, sizeof want, "tessera fetch: %s:3: invalid JSON at column ", f);
    ck_assert_msg(strstr(c.err, want), "stderr: %s", c.err);
    ck_assert_int_eq(g.fetch_calls, 0);   /* its batch was never sent */
    ck_assert_str_eq(c.out, "");
    cap_free(&c);

    /* with batches of 2 the first two rows were already fetched and printed */
    c = run_cmd(&tsr_cmd_fetch_def, "--join", "j", "--keys-file", f, "--batch-size", "2",
                "--server", g_addr, NULL);
    ck_assert_int_eq(c.rc, 1);
    ck_assert_int_eq(count_lines(c.out), 2);
    ck_assert_ptr_nonnull(strstr(c.err, ":3: "));
    cap_free(&c);

    /* structurally wrong lines name the line and what is wrong */
    static const struct {
        const char *text, *why;
    } k_bad[] = {
        {"[1,2]\n", ":1: expected an object"},
        {"{\"user\":\"u1\"}\n", ":1: unknown member \"user\""},
        {"\n{\"at_millis\":5}\n", ":2: \"keys\" is missing"},
        {"{\"keys\":{\"u\":1},\"at_millis\":\"soon\"}\n", ":1: at_millis must be an integer"},
        {"{\"keys\":{}}\n", ":1: no key columns"},
        {"{\"keys\":{\"u\":{\"a\":1}}}\n", ":1: key \"u\" must be a string"},
    };
    for (size_t i = 0; i < sizeof k_bad / sizeof *k_bad; i++) {
        f = write_file("bad.jsonl", k_bad[i].text);
        c = run_cmd(&tsr_cmd_fetch_def, "--join", "j", "--keys-file", f, "--server", g_addr, NULL);
        ck_assert_int_eq(c.rc, 1);
        ck_assert_msg(strstr(c.err, k_bad[i].why), "case %zu: stderr: %s", i, c.err);
        cap_free(&c);
    }
    c = run_cmd(&tsr_cmd_fetch_def, "--join", "j", "--keys-file", "/nonexistent.jsonl",
                "--server", g_addr, NULL);
    ck_assert_int_eq(c.rc, 3);
    cap_free(&c);
    server_stop();
    rm_dir();
}
END_TEST

/* ------------------------------------------------------------------------------------------
 * a job followed across a coordinator failover (two fake coordinators A and B) */

static struct {
    pthread_mutex_t mu;
    char b_addr[64];
    char upload_id[64];             /* the job id of the first Upload */
    int upload_a, upload_b, getjob_a, getjob_b;
    int ids_differ;                 /* a call named another job id */
    int b_unknown;                  /* B: NOT_FOUND until an Upload reached it */
    int b_fails;                    /* B: the job failed */
} fo = {.mu = PTHREAD_MUTEX_INITIALIZER};

static void fo_seen_id(const char *id) {
    if (!fo.upload_id[0]) snprintf(fo.upload_id, sizeof fo.upload_id, "%s", id);
    else if (strcmp(fo.upload_id, id) != 0) fo.ids_differ = 1;
}

/* A: Upload ends as a leader's call does when it loses leadership; GetJob redirects to B */
static int h_fo_upload_a(void *ud, tsr_rpc_call_t *call, const uint8_t *req, size_t n, tsr_buf_t *resp,
                         tsr_error_t *err) {
    (void)ud, (void)call, (void)resp;
    Tessera__V1__UploadRequest *rq = tessera__v1__upload_request__unpack(NULL, n, req);
    if (!rq) return tsr_error_set(err, TSR_EINVAL, "malformed UploadRequest");
    pthread_mutex_lock(&fo.mu);
    fo.upload_a++;
    fo_seen_id(rq->job_id);
    pthread_mutex_unlock(&fo.mu);
    int rc = tsr_error_set(err, TSR_EUNAVAIL, "upload %s ds=%s: own lease expired; job %s continues under the "
                           "next leader (GetJob follows it)", rq->name, rq->ds, rq->job_id);
    tessera__v1__upload_request__free_unpacked(rq, NULL);
    return rc;
}

static int h_fo_getjob_a(void *ud, tsr_rpc_call_t *call, const uint8_t *req, size_t n, tsr_buf_t *resp,
                         tsr_error_t *err) {
    (void)ud, (void)call, (void)req, (void)n, (void)resp;
    pthread_mutex_lock(&fo.mu);
    fo.getjob_a++;
    int rc = tsr_error_set(err, TSR_EUNAVAIL, "not the leader; leader is %s", fo.b_addr);
    pthread_mutex_unlock(&fo.mu);
    return rc;
}

/* B: the job runs for two polls, then is done (or failed) */
static int h_fo_upload_b(void *ud, tsr_rpc_call_t *call, const uint8_t *req, size_t n, tsr_buf_t *resp,
                         tsr_error_t *err) {
    (void)ud, (void)call;
    Tessera__V1__UploadRequest *rq = tessera__v1__upload_request__unpack(NULL, n, req);
    if (!rq) return tsr_error_set(err, TSR_EINVAL, "malformed UploadRequest");
    pthread_mutex_lock(&fo.mu);
    fo.upload_b++;
    fo_seen_id(rq->job_id);
    fo.b_unknown = 0;
    pthread_mutex_unlock(&fo.mu);
    Tessera__V1__UploadResponse out = TESSERA__V1__UPLOAD_RESPONSE__INIT;
    out.name = rq->name;
    out.batch_end_millis = 1714608000000LL;
    out.keys = 1234;
    out.group_bys = 2;
    out.job_id = rq->job_id;
    tsr_pb_pack((const ProtobufCMessage *)&out, resp);
    tessera__v1__upload_request__free_unpacked(rq, NULL);
    return TSR_OK;
}

static int h_fo_getjob_b(void *ud, tsr_rpc_call_t *call, const uint8_t *req, size_t n, tsr_buf_t *resp,
                         tsr_error_t *err) {
    (void)ud, (void)call;
    Tessera__V1__GetJobRequest *rq = tessera__v1__get_job_request__unpack(NULL, n, req);
    if (!rq) return tsr_error_set(err, TSR_EINVAL, "malformed GetJobRequest");
    pthread_mutex_lock(&fo.mu);
    int k = ++fo.getjob_b;
    fo_seen_id(rq->job_id);
    int unknown = fo.b_unknown, fails = fo.b_fails;
    pthread_mutex_unlock(&fo.mu);
    int rc = TSR_OK;
    if (unknown) {
        rc = tsr_error_set(err, TSR_ENOTFOUND, "no job '%s'", rq->job_id);
    } else {
        Tessera__V1__GetJobResponse out = TESSERA__V1__GET_JOB_RESPONSE__INIT;
        Tessera__V1__UploadResponse up = TESSERA__V1__UPLOAD_RESPONSE__INIT;
        out.job_id = rq->job_id;
        out.kind = "upload";
        out.name = "x.v1";
        out.ds = "2024-05-01";
        out.shards = 2;
        out.shards_done = k > 2 ? 2 : 1;
        out.resumed = 1;
        out.state = k <= 2 ? "running" : fails ? "failed" : "done";
        if (k > 2 && fails)
            out.error = "upload of x.v1 ds=2024-05-01 failed: shard 1 failed 3 times; last error: disk full";
        if (k > 2 && !fails) {
            up.name = "x.v1";
            up.batch_end_millis = 1714608000000LL;
            up.keys = 1234;
            up.group_bys = 2;
            up.job_id = rq->job_id;
            out.upload = &up;
        }
        tsr_pb_pack((const ProtobufCMessage *)&out, resp);
    }
    tessera__v1__get_job_request__free_unpacked(rq, NULL);
    return rc;
}

static tsr_rpc_server_t *fo_server(tsr_rpc_unary_fn up, tsr_rpc_unary_fn job, char *addr, size_t cap) {
    tsr_error_t err;
    tsr_rpc_server_t *s = tsr_rpc_server_new("127.0.0.1:0", NULL, &err);
    ck_assert_ptr_nonnull(s);
    ck_assert_int_eq(tsr_rpc_server_add_unary(s, "/tessera.v1.AdminService/Upload", up, NULL, &err), 0);
    ck_assert_int_eq(tsr_rpc_server_add_unary(s, "/tessera.v1.AdminService/GetJob", job, NULL, &err), 0);
    ck_assert_int_eq(tsr_rpc_server_start(s, &err), 0);
    snprintf(addr, cap, "127.0.0.1:%d", tsr_rpc_server_port(s));
    return s;
}

static void fo_reset(int b_unknown, int b_fails) {
    pthread_mutex_lock(&fo.mu);
    fo.upload_id[0] = '\0';
    fo.upload_a = fo.upload_b = fo.getjob_a = fo.getjob_b = fo.ids_differ = 0;
    fo.b_unknown = b_unknown;
    fo.b_fails = b_fails;
    pthread_mutex_unlock(&fo.mu);
}

START_TEST(test_upload_follows_failover) {
    char a_addr[64];
    tsr_rpc_server_t *a = fo_server(h_fo_upload_a, h_fo_getjob_a, a_addr, sizeof a_addr);
    tsr_rpc_server_t *b = fo_server(h_fo_upload_b, h_fo_getjob_b, fo.b_addr, sizeof fo.b_addr);

    /* A's call breaks; A names B; B's job runs, then is done: the usual summary, exit 0 */
    fo_reset(0, 0);
    cap_t c = run_cmd(&tsr_cmd_upload_def, "x.v1", "--ds", "2024-05-01", "--server", a_addr, "--timeout-ms", "20000",
                      NULL);
    ck_assert_msg(c.rc == 0, "rc %d stderr: %s", c.rc, c.err);
    ck_assert_msg(strstr(c.out, "uploaded x.v1 as of 2024-05-02T00:00:00Z (--ds 2024-05-01): "
                                "1234 keys, 2 group_bys in "),
                  "stdout: %s", c.out);
    ck_assert_msg(strstr(c.err, "following job") && strstr(c.err, fo.b_addr) && strstr(c.err, "resumed"), "stderr: %s",
                  c.err);
    ck_assert_int_eq(fo.upload_a, 1);
    ck_assert_int_eq(fo.upload_b, 0);
    ck_assert_int_ge(fo.getjob_a, 1);
    ck_assert_int_eq(fo.getjob_b, 3);
    ck_assert(!fo.ids_differ);
    ck_assert_ptr_nonnull(strstr(fo.upload_id, "upload-"));
    cap_free(&c);

    /* B does not know the job (the call broke before it was recorded): started there again,
     * under the same id; --server lists both (B found without a redirect) */
    fo_reset(1, 0);
    char both[160];
    snprintf(both, sizeof both, "%s,%s", a_addr, fo.b_addr);
    c = run_cmd(&tsr_cmd_upload_def, "x.v1", "--ds", "2024-05-01", "--server", both, "--timeout-ms", "20000", NULL);
    ck_assert_msg(c.rc == 0, "rc %d stderr: %s", c.rc, c.err);
    ck_assert_ptr_nonnull(strstr(c.out, "1234 keys, 2 group_bys"));
    ck_assert_ptr_nonnull(strstr(c.err, "does not know job"));
    ck_assert_int_eq(fo.upload_a, 1);
    ck_assert_int_eq(fo.upload_b, 1);
    ck_assert(!fo.ids_differ);
    cap_free(&c);

    /* the job fails under B: exit 1 with its error */
    fo_reset(0, 1);
    c = run_cmd(&tsr_cmd_upload_def, "x.v1", "--ds", "2024-05-01", "--server", a_addr, NULL);
    ck_assert_int_eq(c.rc, 1);
    ck_assert_msg(strstr(c.err, "failed 3 times; last error: disk full"), "stderr: %s", c.err);
    ck_assert_str_eq(c.out, "");
    cap_free(&c);

    /* B gone too: nothing answers for long → not followed forever (bounded by --timeout-ms) */
    tsr_rpc_server_free(b);
    fo_reset(0, 0);
    c = run_cmd(&tsr_cmd_upload_def, "x.v1", "--ds", "2024-05-01", "--server", a_addr, "--timeout-ms", "1500", NULL);
    ck_assert_int_eq(c.rc, 4);
    ck_assert_msg(c.secs < 5.0, "took %.3f s", c.secs);
    cap_free(&c);
    tsr_rpc_server_free(a);
}
END_TEST

START_TEST(test_unreachable_server) {
    /* a port nobody listens on: UNAVAILABLE → exit 4, long before the deadline */
    tsr_error_t err;
    tsr_rpc_server_t *s = tsr_rpc_server_new("127.0.0.1:0", NULL, &err);
    ck_assert_ptr_nonnull(s);
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", tsr_rpc_server_port(s));
    tsr_rpc_server_free(s);
    cap_t c = run_cmd(&tsr_cmd_status_def, "--server", addr, "--timeout-ms", "5000", NULL);
    ck_assert_int_eq(c.rc, 4);
    ck_assert_msg(c.secs < 5.0, "took %.3f s", c.secs);
    ck_assert_msg(strstr(c.err, "unavailable") && strstr(c.err, addr), "stderr: %s", c.err);
    cap_free(&c);
    c = run_cmd(&tsr_cmd_fetch_def, "--join", "j", "--keys", "{\"u\":1}", "--server", addr,
                "--timeout-ms", "5000", NULL);
    ck_assert_int_eq(c.rc, 4);
    ck_assert(c.secs < 5.0);
    cap_free(&c);
    c = run_cmd(&tsr_cmd_get_def, "configs", "--server", addr, NULL);
    ck_assert_int_eq(c.rc, 4);
    cap_free(&c);
}
END_TEST

START_TEST(test_deadline) {
    /* the server sleeps 3 s; --timeout-ms 200 gives up with DEADLINE_EXCEEDED → exit 4 (well
     * before the answer, even on a loaded machine) */
    server_start();
    cap_t c = run_cmd(&tsr_cmd_fetch_def, "--join", "slow", "--keys", "{\"u\":1}", "--server",
                      g_addr, "--timeout-ms", "200", NULL);
    ck_assert_int_eq(c.rc, 4);
    ck_assert_msg(c.secs < 2.5, "took %.3f s", c.secs);
    ck_assert_msg(strstr(c.err, "no answer from") && strstr(c.err, "within 200 ms"), "stderr: %s",
                  c.err);
    cap_free(&c);
    server_stop();
}
END_TEST

static Suite *cli_client_suite(void) {
    Suite *s = suite_create("cli_client");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_apply_created_unchanged_configured);
    tcase_add_test(tc, test_apply_invalid_and_directory);
    tcase_add_test(tc, test_get_table_and_json);
    tcase_add_test(tc, test_describe_delete_status);
    tcase_add_test(tc, test_upload);
    tcase_add_test(tc, test_upload_follows_failover);
    tcase_add_test(tc, test_fetch_keys);
    tcase_add_test(tc, test_fetch_keys_file_order_and_chunks);
    tcase_add_test(tc, test_fetch_default_chunking);
    tcase_add_test(tc, test_fetch_bad_keys_file_line);
    tcase_add_test(tc, test_unreachable_server);
    tcase_add_test(tc, test_deadline);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return tsr_test_run(cli_client_suite()); }
