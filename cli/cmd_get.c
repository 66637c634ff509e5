/*
 * cmd_get.c — the read-and-delete admin commands over AdminService:
 *     tessera get groupbys|joins|stagingqueries|configs [-o table|json]   ListConfigs
 *     tessera describe NAME [-o table|json]                               GetConfig
 *     tessera delete NAME                                                 DeleteConfig
 *     tessera status [-o table|json]                                      Status
 *
 * Output: tables are kubectl-style (upper-case header, columns padded to their widest cell,
 * three spaces apart, the last column unpadded); -o json prints one JSON document (an array
 * for `get`, an object otherwise) with stable key names:
 *     {"name","kind","team","online","version","appliedAtMillis","appliedAt"}
 * kind is "groupby", "join" or "stagingquery"; times are epoch milliseconds plus an ISO-8601
 * UTC rendering. `describe -o json` adds "config": the stored config JSON as an object.
 * An empty listing prints "No configs found." to stderr (and "[]" with -o json), exit 0.
 */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli_int.h"
#include "tsr/pbvalue.h"

/* ------------------------------------------------------------------------------------------
 * shared pieces */

static json_t *summary_json(const Tessera__V1__ConfigSummary *c) {
    char iso[40];
    json_t *o = json_object();
    json_object_set_new(o, "name", json_string(c->name ? c->name : ""));
    json_object_set_new(o, "kind", json_string(tsr_cli_kind_name(c->kind)));
    json_object_set_new(o, "team", json_string(c->team ? c->team : ""));
    json_object_set_new(o, "online", json_boolean(c->online));
    json_object_set_new(o, "version", json_integer(c->version));
    json_object_set_new(o, "appliedAtMillis", json_integer(c->applied_at_millis));
    json_object_set_new(o, "appliedAt",
                        c->applied_at_millis
                            ? json_string(tsr_cli_iso_millis(c->applied_at_millis, iso, sizeof iso))
                            : json_null());
    return o;
}

static void print_json(json_t *j) {
    char *s = json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_ENCODE_ANY);
    if (s) {
        fputs(s, stdout);
        fputc('\n', stdout);
        free(s);
    }
    fflush(stdout);
}

/* A table of ncol columns and nrow rows of cells (row-major, rows * ncol strings). */
static void print_table(const char *const *head, size_t ncol, char **cells, size_t nrow) {
    size_t w[16] = {0};
    for (size_t c = 0; c < ncol; c++) w[c] = strlen(head[c]);
    for (size_t r = 0; r < nrow; r++)
        for (size_t c = 0; c < ncol; c++) {
            size_t l = strlen(cells[r * ncol + c]);
            if (l > w[c]) w[c] = l;
        }
    for (size_t r = 0; r <= nrow; r++) {
        for (size_t c = 0; c < ncol; c++) {
            const char *s = r == 0 ? head[c] : cells[(r - 1) * ncol + c];
            if (c + 1 < ncol) printf("%-*s   ", (int)w[c], s);
            else printf("%s\n", s);
        }
    }
    fflush(stdout);
}

/* Parses `NAME` plus client options for describe/delete. Returns 0 or an exit code. */
static int parse_name_cmd(const tsr_cli_cmd_t *cmd, int argc, char **argv,
                          tsr_cli_client_opts_t *o, int with_output, const char **name) {
    *name = NULL;
    for (int i = 1; i < argc; i++) {
        int r = tsr_cli_client_option(cmd, argc, argv, &i, o, with_output);
        if (r < 0) return -r;
        if (r > 0) continue;
        if (argv[i][0] == '-' && argv[i][1]) return tsr_cli_usage_error(cmd, "unknown option '%s'", argv[i]);
        if (*name) return tsr_cli_usage_error(cmd, "unexpected argument '%s' (one NAME only)", argv[i]);
        *name = argv[i];
    }
    if (!*name || !**name) return tsr_cli_usage_error(cmd, "NAME is required");
    return 0;
}

static ProtobufCAllocator *arena_pa(tsr_arena_t *arena, ProtobufCAllocator *pa) {
    tsr_pb_allocator(arena, pa);
    return pa;
}

static int malformed(tsr_cli_conn_t *conn, const char *what) {
    fprintf(stderr, "tessera %s: malformed %s from %s\n", conn->cmd->name, what, conn->server);
    return tsr_error_exit_code(TSR_ECORRUPT);
}

/* ------------------------------------------------------------------------------------------
 * get */

static int parse_kind(const char *s, int *kind) {
    static const struct {
        const char *name;
        int kind;
    } k_kinds[] = {
        {"groupbys", TESSERA__V1__CONFIG_KIND__GROUP_BY},
        {"groupby", TESSERA__V1__CONFIG_KIND__GROUP_BY},
        {"group-bys", TESSERA__V1__CONFIG_KIND__GROUP_BY},
        {"joins", TESSERA__V1__CONFIG_KIND__JOIN},
        {"join", TESSERA__V1__CONFIG_KIND__JOIN},
        {"stagingqueries", TESSERA__V1__CONFIG_KIND__STAGING_QUERY},
        {"stagingquery", TESSERA__V1__CONFIG_KIND__STAGING_QUERY},
        {"staging-queries", TESSERA__V1__CONFIG_KIND__STAGING_QUERY},
        {"configs", TESSERA__V1__CONFIG_KIND__CONFIG_KIND_UNSPECIFIED},
        {"config", TESSERA__V1__CONFIG_KIND__CONFIG_KIND_UNSPECIFIED},
        {"all", TESSERA__V1__CONFIG_KIND__CONFIG_KIND_UNSPECIFIED},
    };
    for (size_t i = 0; i < sizeof k_kinds / sizeof *k_kinds; i++)
        if (strcmp(s, k_kinds[i].name) == 0) {
            *kind = k_kinds[i].kind;
            return 0;
        }
    return -1;
}

/* Calls method with req and unpacks the answer with desc into arena; NULL after printing why
 * (*exit_code set). */
static void *admin_call(tsr_cli_conn_t *conn, const char *method, const void *req,
                        const ProtobufCMessageDescriptor *desc, tsr_arena_t *arena,
                        int *exit_code) {
    int rc = tsr_cli_call(conn, method, req, NULL);
    if (rc) {
        *exit_code = tsr_error_exit_code(rc);
        return NULL;
    }
    ProtobufCAllocator pa;
    void *resp = protobuf_c_message_unpack(desc, arena_pa(arena, &pa), conn->reply.body.len,
                                           conn->reply.body.data);
    if (!resp) *exit_code = malformed(conn, desc->short_name);
    return resp;
}

/* tessera get workers: the live members the leader coordinator knows. */
static int list_workers(const tsr_cli_cmd_t *cmd, const tsr_cli_client_opts_t *o) {
    tsr_cli_conn_t conn;
    int exit_code = tsr_cli_conn_open(&conn, cmd, o);
    if (exit_code) return exit_code;
    tsr_arena_t arena;
    tsr_arena_init(&arena, 0);
    Tessera__V1__ListWorkersRequest req = TESSERA__V1__LIST_WORKERS_REQUEST__INIT;
    Tessera__V1__ListWorkersResponse *resp =
        admin_call(&conn, "/tessera.v1.AdminService/ListWorkers", &req,
                   &tessera__v1__list_workers_response__descriptor, &arena, &exit_code);
    char iso[40];
    if (!resp) {
        /* exit_code set */
    } else if (o->output == TSR_CLI_OUT_JSON) {
        json_t *arr = json_array();
        for (size_t k = 0; k < resp->n_workers; k++) {
            const Tessera__V1__WorkerSummary *w = resp->workers[k];
            json_t *e = json_object();
            json_object_set_new(e, "id", json_string(w->worker_id ? w->worker_id : ""));
            json_object_set_new(e, "address", json_string(w->address ? w->address : ""));
            json_object_set_new(e, "partitions", json_integer(w->partitions));
            json_object_set_new(e, "lease", json_integer(w->lease_id));
            json_object_set_new(e, "registeredAtMillis", json_integer(w->registered_at_millis));
            json_array_append_new(arr, e);
        }
        print_json(arr);
        json_decref(arr);
    } else if (resp->n_workers == 0) {
        fprintf(stderr, "No workers found (epoch %lld).\n", (long long)resp->epoch);
    } else {
        static const char *const head[] = {"ID", "ADDRESS", "PARTITIONS", "REGISTERED"};
        size_t n = resp->n_workers;
        char **cells = tsr_arena_calloc(&arena, n * 4 * sizeof *cells);
        for (size_t k = 0; k < n; k++) {
            const Tessera__V1__WorkerSummary *w = resp->workers[k];
            char **row = cells + k * 4;
            row[0] = w->worker_id ? w->worker_id : "";
            row[1] = w->address ? w->address : "";
            row[2] = tsr_arena_printf(&arena, "%d", (int)w->partitions);
            row[3] = tsr_arena_strdup(&arena, tsr_cli_iso_millis(w->registered_at_millis, iso, sizeof iso));
        }
        print_table(head, 4, cells, n);
    }
    tsr_arena_free(&arena);
    tsr_cli_conn_close(&conn);
    return exit_code;
}

/* tessera get partitions [--group-by G]: owner and state of every (GroupBy, partition). */
static int list_partitions(const tsr_cli_cmd_t *cmd, const tsr_cli_client_opts_t *o,
                           const char *group_by) {
    tsr_cli_conn_t conn;
    int exit_code = tsr_cli_conn_open(&conn, cmd, o);
    if (exit_code) return exit_code;
    tsr_arena_t arena;
    tsr_arena_init(&arena, 0);
    Tessera__V1__ListPartitionsRequest req = TESSERA__V1__LIST_PARTITIONS_REQUEST__INIT;
    req.group_by = (char *)(group_by ? group_by : "");
    Tessera__V1__ListPartitionsResponse *resp =
        admin_call(&conn, "/tessera.v1.AdminService/ListPartitions", &req,
                   &tessera__v1__list_partitions_response__descriptor, &arena, &exit_code);
    char iso[40];
    if (!resp) {
        /* exit_code set */
    } else if (o->output == TSR_CLI_OUT_JSON) {
        json_t *arr = json_array();
        for (size_t k = 0; k < resp->n_partitions; k++) {
            const Tessera__V1__PartitionSummary *p = resp->partitions[k];
            json_t *e = json_object();
            json_object_set_new(e, "groupBy", json_string(p->group_by ? p->group_by : ""));
            json_object_set_new(e, "partition", json_integer(p->partition));
            json_object_set_new(e, "worker", p->worker_id && *p->worker_id
                                                 ? json_string(p->worker_id) : json_null());
            json_object_set_new(e, "address", json_string(p->address ? p->address : ""));
            json_object_set_new(e, "batchEndMillis", json_integer(p->batch_end_millis));
            json_object_set_new(e, "events", json_integer(p->events));
            json_object_set_new(e, "lag", json_integer(p->lag));
            json_array_append_new(arr, e);
        }
        print_json(arr);
        json_decref(arr);
    } else if (resp->n_partitions == 0) {
        fprintf(stderr, "No partitions found%s%s.\n", group_by ? " for " : "",
                group_by ? group_by : "");
    } else {
        static const char *const head[] = {"GROUPBY", "PARTITION", "WORKER", "BATCH", "EVENTS", "LAG"};
        size_t n = resp->n_partitions;
        char **cells = tsr_arena_calloc(&arena, n * 6 * sizeof *cells);
        for (size_t k = 0; k < n; k++) {
            const Tessera__V1__PartitionSummary *p = resp->partitions[k];
            char **row = cells + k * 6;
            row[0] = p->group_by ? p->group_by : "";
            row[1] = tsr_arena_printf(&arena, "%d", (int)p->partition);
            row[2] = p->worker_id && *p->worker_id ? p->worker_id : "(unassigned)";
            row[3] = p->batch_end_millis
                         ? tsr_arena_strdup(&arena, tsr_cli_iso_millis(p->batch_end_millis, iso, sizeof iso))
                         : "-";
            row[4] = tsr_arena_printf(&arena, "%lld", (long long)p->events);
            row[5] = p->lag < 0 ? "-" : tsr_arena_printf(&arena, "%lld", (long long)p->lag);
        }
        print_table(head, 6, cells, n);
    }
    tsr_arena_free(&arena);
    tsr_cli_conn_close(&conn);
    return exit_code;
}

static int run_get(int argc, char **argv) {
    const tsr_cli_cmd_t *cmd = &tsr_cmd_get_def;
    tsr_cli_client_opts_t o = {.timeout_ms = TSR_CLI_ADMIN_TIMEOUT_MS};
    const char *what = NULL, *group_by = NULL;
    for (int i = 1; i < argc; i++) {
        int r = tsr_cli_client_option(cmd, argc, argv, &i, &o, 1);
        if (r < 0) return -r;
        if (r > 0) continue;
        r = tsr_cli_opt_value(cmd, argc, argv, &i, "--group-by", &group_by);
        if (r < 0) return -r;
        if (r > 0) continue;
        if (argv[i][0] == '-') return tsr_cli_usage_error(cmd, "unknown option '%s'", argv[i]);
        if (what) return tsr_cli_usage_error(cmd, "unexpected argument '%s'", argv[i]);
        what = argv[i];
    }
    if (!what) return tsr_cli_usage_error(cmd, "what to list is required: groupbys, joins or configs");
    int kind = 0;
    if (strcmp(what, "workers") == 0) return list_workers(cmd, &o);
    if (strcmp(what, "partitions") == 0) return list_partitions(cmd, &o, group_by);
    if (group_by) return tsr_cli_usage_error(cmd, "--group-by applies to `get partitions` only");
    if (parse_kind(what, &kind) != 0)
        return tsr_cli_usage_error(cmd, "cannot list '%s': expected groupbys, joins, "
                                   "stagingqueries, configs, workers or partitions", what);

    tsr_cli_conn_t conn;
    int rc = tsr_cli_conn_open(&conn, cmd, &o);
    if (rc) return rc;
    Tessera__V1__ListConfigsRequest req = TESSERA__V1__LIST_CONFIGS_REQUEST__INIT;
    req.kind = (Tessera__V1__ConfigKind)kind;
    rc = tsr_cli_call(&conn, "/tessera.v1.AdminService/ListConfigs", &req, NULL);
    if (rc) {
        tsr_cli_conn_close(&conn);
        return tsr_error_exit_code(rc);
    }
    tsr_arena_t arena;
    tsr_arena_init(&arena, 0);
    ProtobufCAllocator pa;
    Tessera__V1__ListConfigsResponse *resp = tessera__v1__list_configs_response__unpack(
        arena_pa(&arena, &pa), conn.reply.body.len, conn.reply.body.data);
    int exit_code = 0;
    if (!resp) {
        exit_code = malformed(&conn, "ListConfigsResponse");
    } else if (o.output == TSR_CLI_OUT_JSON) {
        json_t *arr = json_array();
        for (size_t k = 0; k < resp->n_configs; k++)
            if (resp->configs[k]) json_array_append_new(arr, summary_json(resp->configs[k]));
        print_json(arr);
        json_decref(arr);
    } else if (resp->n_configs == 0) {
        fprintf(stderr, "No %s found.\n", kind ? what : "configs");
    } else {
        static const char *const head[] = {"NAME", "KIND", "TEAM", "ONLINE", "VERSION", "APPLIED"};
        size_t n = resp->n_configs;
        char **cells = tsr_arena_calloc(&arena, n * 6 * sizeof *cells);
        for (size_t k = 0; k < n; k++) {
            const Tessera__V1__ConfigSummary *c = resp->configs[k];
            if (!c) c = &(Tessera__V1__ConfigSummary)TESSERA__V1__CONFIG_SUMMARY__INIT;
            char iso[40];
            char **row = cells + k * 6;
            row[0] = tsr_arena_strdup(&arena, c->name);
            row[1] = tsr_arena_strdup(&arena, tsr_cli_kind_name(c->kind));
            row[2] = tsr_arena_strdup(&arena, c->team && *c->team ? c->team : "-");
            row[3] = tsr_arena_strdup(&arena, c->online ? "true" : "false");
            row[4] = tsr_arena_printf(&arena, "%lld", (long long)c->version);
            row[5] = tsr_arena_strdup(&arena, tsr_cli_iso_millis(c->applied_at_millis, iso, sizeof iso));
        }
        print_table(head, 6, cells, n);
    }
    tsr_arena_free(&arena);
    tsr_cli_conn_close(&conn);
    return exit_code;
}

const tsr_cli_cmd_t tsr_cmd_get_def = {
    "get",
    "list the configs a running server holds (groupbys, joins, configs)",
    "usage: tessera get groupbys|joins|stagingqueries|configs [-o table|json] [--server ADDR]\n"
    "                   [--timeout-ms MS]\n"
    "       tessera get workers [-o table|json] --server COORDINATOR\n"
    "       tessera get partitions [--group-by NAME] [-o table|json] --server COORDINATOR\n"
    "\n"
    "Lists the configs applied to the server, sorted by name, with columns\n"
    "NAME KIND TEAM ONLINE VERSION APPLIED (APPLIED in UTC). `configs` lists every kind.\n"
    "With -o json prints a JSON array of objects with the keys name, kind, team, online,\n"
    "version, appliedAtMillis and appliedAt.\n"
    "\n"
    "In a cluster (docs/cluster.md), `workers` lists the live workers (ID ADDRESS PARTITIONS\n"
    "REGISTERED) and `partitions` every GroupBy partition with its owner, loaded upload\n"
    "version, events applied and Kafka lag, as the leader coordinator knows them\n"
    "(JSON keys: id, address, partitions, lease, registeredAtMillis; groupBy, partition,\n"
    "worker, address, batchEndMillis, events, lag).\n"
    "\n"
    "options:\n"
    "  -o, --output FMT    table (default) or json\n"
    "  --group-by NAME     partitions of one GroupBy only\n"
    "  --server ADDR       host:port (default $TESSERA_SERVER, else 127.0.0.1:7070)\n"
    "  --timeout-ms MS     deadline of the call (default 10000)\n"
    "\n"
    "exit: 0 ok (also when nothing is listed), 1 error, 2 usage,\n"
    "      4 server unavailable or no answer within the deadline\n",
    run_get,
};

/* ------------------------------------------------------------------------------------------
 * describe */

static int run_describe(int argc, char **argv) {
    const tsr_cli_cmd_t *cmd = &tsr_cmd_describe_def;
    tsr_cli_client_opts_t o = {.timeout_ms = TSR_CLI_ADMIN_TIMEOUT_MS};
    const char *name;
    int rc = parse_name_cmd(cmd, argc, argv, &o, 1, &name);
    if (rc) return rc;
    tsr_cli_conn_t conn;
    if ((rc = tsr_cli_conn_open(&conn, cmd, &o)) != 0) return rc;
    Tessera__V1__GetConfigRequest req = TESSERA__V1__GET_CONFIG_REQUEST__INIT;
    req.name = (char *)name;
    rc = tsr_cli_call(&conn, "/tessera.v1.AdminService/GetConfig", &req, name);
    if (rc) {
        tsr_cli_conn_close(&conn);
        return tsr_error_exit_code(rc);
    }
    tsr_arena_t arena;
    tsr_arena_init(&arena, 0);
    ProtobufCAllocator pa;
    Tessera__V1__GetConfigResponse *resp = tessera__v1__get_config_response__unpack(
        arena_pa(&arena, &pa), conn.reply.body.len, conn.reply.body.data);
    int exit_code = 0;
    if (!resp || !resp->config) {
        exit_code = malformed(&conn, "GetConfigResponse");
    } else {
        const char *text = resp->config_json ? resp->config_json : "";
        json_error_t je;
        json_t *cfg = json_loads(text, JSON_DECODE_ANY, &je);
        if (o.output == TSR_CLI_OUT_JSON) {
            json_t *j = summary_json(resp->config);
            json_object_set_new(j, "config", cfg ? cfg : json_string(text));
            cfg = NULL;
            print_json(j);
            json_decref(j);
        } else {
            const Tessera__V1__ConfigSummary *c = resp->config;
            char iso[40];
            printf("Name:      %s\n", c->name);
            printf("Kind:      %s\n", tsr_cli_kind_name(c->kind));
            printf("Team:      %s\n", c->team && *c->team ? c->team : "-");
            printf("Online:    %s\n", c->online ? "true" : "false");
            printf("Version:   %lld\n", (long long)c->version);
            printf("Applied:   %s\n", tsr_cli_iso_millis(c->applied_at_millis, iso, sizeof iso));
            printf("Config:\n");
            char *pretty = cfg ? json_dumps(cfg, JSON_INDENT(2) | JSON_PRESERVE_ORDER) : NULL;
            fputs(pretty ? pretty : text, stdout);
            fputc('\n', stdout);
            free(pretty);
            fflush(stdout);
        }
        json_decref(cfg);
    }
    tsr_arena_free(&arena);
    tsr_cli_conn_close(&conn);
    return exit_code;
}

const tsr_cli_cmd_t tsr_cmd_describe_def = {
    "describe",
    "show one config a running server holds, with its JSON",
    "usage: tessera describe NAME [-o table|json] [--server ADDR] [--timeout-ms MS]\n"
    "\n"
    "Prints the config's summary (name, kind, team, online, version, applied time) and the\n"
    "config JSON as applied. With -o json prints one object: the summary keys of\n"
    "`tessera get -o json` plus \"config\".\n"
    "\n"
    "options:\n"
    "  -o, --output FMT    table (default) or json\n"
    "  --server ADDR       host:port (default $TESSERA_SERVER, else 127.0.0.1:7070)\n"
    "  --timeout-ms MS     deadline of the call (default 10000)\n"
    "\n"
    "exit: 0 ok, 1 error, 2 usage, 3 no config of that name,\n"
    "      4 server unavailable or no answer within the deadline\n",
    run_describe,
};

/* ------------------------------------------------------------------------------------------
 * delete */

static int run_delete(int argc, char **argv) {
    const tsr_cli_cmd_t *cmd = &tsr_cmd_delete_def;
    tsr_cli_client_opts_t o = {.timeout_ms = TSR_CLI_ADMIN_TIMEOUT_MS};
    const char *name;
    int rc = parse_name_cmd(cmd, argc, argv, &o, 0, &name);
    if (rc) return rc;
    tsr_cli_conn_t conn;
    if ((rc = tsr_cli_conn_open(&conn, cmd, &o)) != 0) return rc;
    Tessera__V1__DeleteConfigRequest req = TESSERA__V1__DELETE_CONFIG_REQUEST__INIT;
    req.name = (char *)name;
    rc = tsr_cli_call(&conn, "/tessera.v1.AdminService/DeleteConfig", &req, name);
    if (rc) {
        tsr_cli_conn_close(&conn);
        return tsr_error_exit_code(rc);
    }
    tsr_arena_t arena;
    tsr_arena_init(&arena, 0);
    ProtobufCAllocator pa;
    Tessera__V1__DeleteConfigResponse *resp = tessera__v1__delete_config_response__unpack(
        arena_pa(&arena, &pa), conn.reply.body.len, conn.reply.body.data);
    int exit_code = 0;
    if (!resp) {
        exit_code = malformed(&conn, "DeleteConfigResponse");
    } else if (resp->config) {
        printf("deleted %s %s (version %lld)\n", tsr_cli_kind_name(resp->config->kind),
               resp->config->name, (long long)resp->config->version);
    } else {
        printf("deleted %s\n", name);
    }
    fflush(stdout);
    tsr_arena_free(&arena);
    tsr_cli_conn_close(&conn);
    return exit_code;
}

const tsr_cli_cmd_t tsr_cmd_delete_def = {
    "delete",
    "remove a config from a running server",
    "usage: tessera delete NAME [--server ADDR] [--timeout-ms MS]\n"
    "\n"
    "Deletes the config named NAME (its metaData.name) and prints\n"
    "  deleted groupby NAME (version N)\n"
    "\n"
    "options:\n"
    "  --server ADDR       host:port (default $TESSERA_SERVER, else 127.0.0.1:7070)\n"
    "  --timeout-ms MS     deadline of the call (default 10000)\n"
    "\n"
    "exit: 0 deleted, 1 error (e.g. the server refused), 2 usage, 3 no config of that name,\n"
    "      4 server unavailable or no answer within the deadline\n",
    run_delete,
};

/* ------------------------------------------------------------------------------------------
 * status */

static void print_uptime(int64_t started_ms) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    int64_t now = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
    if (started_ms <= 0 || now < started_ms) return;
    int64_t s = (now - started_ms) / 1000;
    int64_t d = s / 86400, h = s / 3600 % 24, m = s / 60 % 60;
    if (d) printf(" (up %lldd%lldh%lldm)", (long long)d, (long long)h, (long long)m);
    else if (h) printf(" (up %lldh%lldm)", (long long)h, (long long)m);
    else printf(" (up %lldm%llds)", (long long)m, (long long)(s % 60));
}

static int run_status(int argc, char **argv) {
    const tsr_cli_cmd_t *cmd = &tsr_cmd_status_def;
    tsr_cli_client_opts_t o = {.timeout_ms = TSR_CLI_ADMIN_TIMEOUT_MS};
    for (int i = 1; i < argc; i++) {
        int r = tsr_cli_client_option(cmd, argc, argv, &i, &o, 1);
        if (r < 0) return -r;
        if (r > 0) continue;
        if (argv[i][0] == '-') return tsr_cli_usage_error(cmd, "unknown option '%s'", argv[i]);
        return tsr_cli_usage_error(cmd, "unexpected argument '%s'", argv[i]);
    }
    tsr_cli_conn_t conn;
    int rc = tsr_cli_conn_open(&conn, cmd, &o);
    if (rc) return rc;
    Tessera__V1__StatusRequest req = TESSERA__V1__STATUS_REQUEST__INIT;
    rc = tsr_cli_call(&conn, "/tessera.v1.AdminService/Status", &req, NULL);
    if (rc) {
        tsr_cli_conn_close(&conn);
        return tsr_error_exit_code(rc);
    }
    tsr_arena_t arena;
    tsr_arena_init(&arena, 0);
    ProtobufCAllocator pa;
    Tessera__V1__StatusResponse *resp = tessera__v1__status_response__unpack(
        arena_pa(&arena, &pa), conn.reply.body.len, conn.reply.body.data);
    int exit_code = 0;
    char iso[40];
    if (!resp) {
        exit_code = malformed(&conn, "StatusResponse");
    } else if (o.output == TSR_CLI_OUT_JSON) {
        json_t *j = json_object();
        json_object_set_new(j, "server", json_string(conn.server));
        json_object_set_new(j, "version", json_string(resp->version ? resp->version : ""));
        json_object_set_new(j, "startedAtMillis", json_integer(resp->started_at_millis));
        json_object_set_new(j, "startedAt",
                            resp->started_at_millis
                                ? json_string(tsr_cli_iso_millis(resp->started_at_millis, iso,
                                                                 sizeof iso))
                                : json_null());
        json_object_set_new(j, "configs", json_integer(resp->configs));
        json_t *comps = json_array();
        for (size_t k = 0; k < resp->n_components; k++) {
            const Tessera__V1__ComponentStatus *c = resp->components[k];
            if (!c) continue;
            json_t *e = json_object();
            json_object_set_new(e, "name", json_string(c->name ? c->name : ""));
            json_object_set_new(e, "serving", json_boolean(c->serving));
            json_object_set_new(e, "detail", json_string(c->detail ? c->detail : ""));
            json_array_append_new(comps, e);
        }
        json_object_set_new(j, "components", comps);
        print_json(j);
        json_decref(j);
    } else {
        printf("Server:    %s\n", conn.server);
        printf("Version:   %s\n", resp->version && *resp->version ? resp->version : "-");
        printf("Started:   %s", tsr_cli_iso_millis(resp->started_at_millis, iso, sizeof iso));
        print_uptime(resp->started_at_millis);
        printf("\nConfigs:   %lld\n", (long long)resp->configs);
        if (resp->n_components) {
            static const char *const head[] = {"COMPONENT", "SERVING", "DETAIL"};
            size_t n = resp->n_components;
            char **cells = tsr_arena_calloc(&arena, n * 3 * sizeof *cells);
            for (size_t k = 0; k < n; k++) {
                const Tessera__V1__ComponentStatus *c = resp->components[k];
                cells[k * 3] = c && c->name ? c->name : "";
                cells[k * 3 + 1] = c && c->serving ? "yes" : "no";
                cells[k * 3 + 2] = c && c->detail && *c->detail ? c->detail : "-";
            }
            printf("\n");
            print_table(head, 3, cells, n);
        }
        fflush(stdout);
    }
    tsr_arena_free(&arena);
    tsr_cli_conn_close(&conn);
    return exit_code;
}

const tsr_cli_cmd_t tsr_cmd_status_def = {
    "status",
    "show a running server's version, uptime, config count and components",
    "usage: tessera status [-o table|json] [--server ADDR] [--timeout-ms MS]\n"
    "\n"
    "Asks the server (AdminService.Status) for its version, start time, number of configs\n"
    "and the state of each component (worker, fetcher, coordinator, kafka:<topic>, ...).\n"
    "\n"
    "options:\n"
    "  -o, --output FMT    table (default) or json\n"
    "  --server ADDR       host:port (default $TESSERA_SERVER, else 127.0.0.1:7070)\n"
    "  --timeout-ms MS     deadline of the call (default 10000)\n"
    "\n"
    "exit: 0 the server answered (whatever its components' state), 1 error, 2 usage,\n"
    "      4 server unavailable or no answer within the deadline\n",
    run_status,
};
