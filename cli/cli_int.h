/*
 * cli_int.h — what the `tessera` CLI's files share: the command table entry, option helpers
 * and the config-path walker.
 *
 * Each command lives in cmd_<name>.c and exposes `int tsr_cmd_<name>(int argc, char **argv)`
 * returning a process exit code (SPEC §7: 0 ok, 1 error, 2 usage, 3 not found, 4
 * unavailable; derived from tsr_error_exit_code so codes never drift from the error table).
 * argv[0] is the command name; `--help` anywhere prints the command's usage and exits 0.
 */
#ifndef TSR_CLI_INT_H
#define TSR_CLI_INT_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "tsr/config.h"
#include "tsr/mem.h"
#include "tsr/rpc.h"

typedef struct tsr_cli_cmd {
    const char *name;
    const char *summary;        /* one line for `tessera --help` */
    const char *usage;          /* full text for `tessera help CMD` / `CMD --help` */
    int (*run)(int argc, char **argv);
} tsr_cli_cmd_t;

extern const tsr_cli_cmd_t tsr_cmd_validate_def;
extern const tsr_cli_cmd_t tsr_cmd_columns_def;
extern const tsr_cli_cmd_t tsr_cmd_backfill_def;
extern const tsr_cli_cmd_t tsr_cmd_dev_kafka_def, tsr_cmd_produce_def, tsr_cmd_consume_def;
extern const tsr_cli_cmd_t tsr_cmd_serve_def;
/* Admin and fetch commands: clients of a running server over gRPC (cli_rpc.c). */
extern const tsr_cli_cmd_t tsr_cmd_apply_def, tsr_cmd_get_def, tsr_cmd_describe_def,
    tsr_cmd_delete_def, tsr_cmd_status_def, tsr_cmd_upload_def, tsr_cmd_fetch_def;

/* Prints "tessera <cmd>: <message>" and the usage hint to stderr; returns the usage exit code. */
int tsr_cli_usage_error(const tsr_cli_cmd_t *cmd, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Parses the options shared by config commands. Returns 1 when argv[*i] was consumed (with
 * its value), 0 when it is not one of them, or a negative value after a usage error. */
int tsr_cli_config_option(const tsr_cli_cmd_t *cmd, int argc, char **argv, int *i,
                          tsr_config_options_t *opt);

/* Loads and validates one config; on failure prints every error to stderr and returns the
 * exit code (its *out is then NULL). On success returns 0; caller frees with
 * tsr_config_free. */
int tsr_cli_load_config(const char *path, const tsr_config_options_t *opt, tsr_config_t **out);

/* Expands a CONF argument: a file is listed as is; a directory is walked recursively in
 * name order, skipping hidden entries, README* files and table schema files (_schema.json).
 * Calls cb(path, ud) per config file. Returns 0, or TSR_ENOTFOUND / TSR_EIO when path cannot
 * be read (after printing why). */
int tsr_cli_walk_configs(const char *path, void (*cb)(const char *file, void *ud), void *ud);

/* ------------------------------------------------------------------------------------------
 * gRPC client commands (cli_rpc.c)
 *
 * Every client command takes --server ADDR (else $TESSERA_SERVER, else 127.0.0.1:7070) and
 * --timeout-ms MS (the deadline of each call; defaults per command), and the listing ones
 * -o table|json. A call failing prints one line saying what failed and where, and the command
 * exits with tsr_error_exit_code of the mapped status (UNAVAILABLE / DEADLINE_EXCEEDED → 4,
 * NOT_FOUND → 3, INVALID_ARGUMENT and others → 1). */

#define TSR_CLI_DEFAULT_SERVER "127.0.0.1:7070"
#define TSR_CLI_ADMIN_TIMEOUT_MS 10000          /* admin calls and each fetch call: 10 s */
#define TSR_CLI_UPLOAD_TIMEOUT_MS 3600000       /* an upload may take minutes: 1 h */

typedef enum tsr_cli_output {
    TSR_CLI_OUT_TABLE = 0,
    TSR_CLI_OUT_JSON = 1,
} tsr_cli_output_t;

typedef struct tsr_cli_client_opts {
    const char *server;         /* --server; NULL = $TESSERA_SERVER, else the default */
    int64_t timeout_ms;         /* --timeout-ms; preset by the command to its default */
    tsr_cli_output_t output;    /* -o / --output */
} tsr_cli_client_opts_t;

/* An option with a value: "--name V" or "--name=V" (short names: "-o V", "-oV"). Returns 1
 * when argv[*i] is that option (*val set, *i advanced past the value), 0 when it is not, or
 * the negative usage exit code after printing a usage error (value missing). */
int tsr_cli_opt_value(const tsr_cli_cmd_t *cmd, int argc, char **argv, int *i, const char *name,
                      const char **val);
/* Parses a non-negative decimal integer option value (usage error otherwise). Returns 0 or
 * the negative usage exit code. */
int tsr_cli_parse_count(const tsr_cli_cmd_t *cmd, const char *opt, const char *v, int64_t *out);

/* --server, --timeout-ms and (when with_output) -o/--output. Same returns as
 * tsr_cli_config_option. */
int tsr_cli_client_option(const tsr_cli_cmd_t *cmd, int argc, char **argv, int *i,
                          tsr_cli_client_opts_t *o, int with_output);

/* One command's connection: a channel to the server and buffers reused by its calls.
 * --server may list several addresses (a cluster's coordinators, "A,B"): calls go to the
 * first (and to the leader a follower names); a job followed after a failover
 * (tsr_cli_call_job) is looked for at every one. */
#define TSR_CLI_MAX_SERVERS 8
typedef struct tsr_cli_conn {
    const tsr_cli_cmd_t *cmd;
    char server[256];               /* the address calls go to */
    char servers[TSR_CLI_MAX_SERVERS][256];  /* --server's addresses */
    size_t nservers;
    int64_t timeout_ms;
    tsr_rpc_client_t *client;
    tsr_rpc_reply_t reply;          /* reply.body holds the last response */
    tsr_buf_t req;
} tsr_cli_conn_t;

/* Opens the channel (connects lazily). Returns 0, or an exit code after printing why. */
int tsr_cli_conn_open(tsr_cli_conn_t *c, const tsr_cli_cmd_t *cmd, const tsr_cli_client_opts_t *o);
void tsr_cli_conn_close(tsr_cli_conn_t *c);

/* Packs req (a ProtobufCMessage), calls method ("/tessera.v1.AdminService/ApplyConfig") with
 * the connection's deadline and returns TSR_OK (response bytes in c->reply.body) or the
 * mapped TSR_E* code after printing "tessera <cmd>: <what>: <why>" to stderr (what may be
 * NULL). */
int tsr_cli_call(tsr_cli_conn_t *c, const char *method, const void *req, const char *what);
/* tsr_cli_call that, while the server answers UNAVAILABLE with a message containing
 * retry_when (a transient state it names, e.g. "not assigned to workers yet"; NULL: none) or
 * saying a coordinator election is in progress ("leader is unknown"), says so once on stderr
 * and retries every 250 ms for up to 60 s (within --timeout-ms). tsr_cli_call does the same
 * with retry_when NULL. */
int tsr_cli_call_retry(tsr_cli_conn_t *c, const char *method, const void *req, const char *what,
                       const char *retry_when);

/* A fresh job id for a job call ("<prefix>-<time>-<pid>-<random>") into buf (64 bytes). */
void tsr_cli_job_id(const char *prefix, char *buf, size_t n);

/* A call that starts a cluster job (AdminService.Upload / Backfill, req's job_id set to
 * job_id, from tsr_cli_job_id) and survives a coordinator failover (docs/cluster.md "Jobs"):
 * as tsr_cli_call_retry; but when the call breaks with UNAVAILABLE (the leader died or stepped
 * down while the job ran) or the coordinator says the job exists, the job is followed with
 * AdminService.GetJob: at the leader a follower names, else at each --server address in turn,
 * every 500 ms, until it is done or failed, within --timeout-ms of the start, giving up when
 * no coordinator has answered for 30 s (at once when none ever answered: nothing reachable).
 * A job the leader does not know (the call broke before the job was recorded) is started
 * again under the same id (at most 3 times). Returns TSR_OK with *followed = 0 and the
 * method's response in c->reply.body, or TSR_OK with *followed = 1 and a
 * tessera.v1.GetJobResponse of the finished job (state "done") in c->reply.body; else the
 * error code after printing why (a job that failed: TSR_EIO with its error). */
int tsr_cli_call_job(tsr_cli_conn_t *c, const char *method, const void *req, const char *what,
                     const char *retry_when, const char *job_id, int *followed);

/* Epoch milliseconds as "2024-05-02T00:00:00Z" (".123" before the Z when not whole seconds);
 * 0 prints as "-". buf must hold 32 bytes. Returns buf. */
const char *tsr_cli_iso_millis(int64_t ms, char *buf, size_t n);

/* "groupby", "join", "stagingquery" for a tessera.v1.ConfigKind; "unknown" otherwise. */
const char *tsr_cli_kind_name(int kind);

/* Reads a whole file ("-" = stdin) into a NUL-terminated malloc'd buffer (caller frees).
 * Returns 0, or TSR_ENOTFOUND / TSR_EIO after printing "tessera <cmd>: <path>: <why>". */
int tsr_cli_read_file(const tsr_cli_cmd_t *cmd, const char *path, char **out, size_t *n);

#endif
