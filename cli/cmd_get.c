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

static int run_get(int argc, char **argv) {
    const tsr_cli_cmd_t *cmd = &tsr_cmd_get_def;
    tsr_cli_client_opts_t o = {.timeout_ms = TSR_CLI_ADMIN_TIMEOUT_MS};
    const char *what = NULL;
    for (int i = 1; i < argc; i++) {
        int r = tsr_cli_client_option(cmd, argc, argv, &i, &o, 1);
        if (r < 0) return -r;
        if (r > 0) continue;
        if (argv[i][0] == '-') return tsr_cli_usage_error(cmd, "unknown option '%s'", argv[i]);
        if (what) return tsr_cli_usage_error(cmd, "unexpected argument '%s'", argv[i]);
        what = argv[i];
    }
    if (!what) return tsr_cli_usage_error(cmd, "what to list is required: groupbys, joins or configs");
    int kind = 0;
    if (parse_kind(what, &kind) != 0) {
        if (strcmp(what, "workers") == 0 || strcmp(what, "partitions") == 0 ||
            strcmp(what, "jobs") == 0) {
            fprintf(stderr,
                    "tessera get: listing %s needs the cluster's admin API, which "
                    "tessera.v1.AdminService does not have yet\n",
                    what);
            return tsr_error_exit_code(TSR_EUNSUPPORTED);
        }
        return tsr_cli_usage_error(cmd, "cannot list '%s': expected groupbys, joins, "
                                   "stagingqueries or configs", what);
    }

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
    "\n"
    "Lists the configs applied to the server, sorted by name, with columns\n"
    "NAME KIND TEAM ONLINE VERSION APPLIED (APPLIED in UTC). `configs` lists every kind.\n"
    "With -o json prints a JSON array of objects with the keys name, kind, team, online,\n"
    "version, appliedAtMillis and appliedAt.\n"
    "\n"
    "options:\n"
    "  -o, --output FMT    table (default) or json\n"
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
