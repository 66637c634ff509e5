/*
 * cmd_upload.c — `tessera upload CONF --ds E [--warehouse DIR] [--server ADDR]`: asks a running
 * server (AdminService.Upload) to compute the batch state of CONF as of B = E+1 00:00 UTC from
 * the warehouse and load it for serving (SPEC §6 "Upload"), then prints what was loaded.
 *
 * Rules:
 *   - CONF is a config file (the name sent is its metaData.name, read with jansson: the file
 *     need not validate on this machine, the server validates what it has applied) or, when no
 *     such file exists and the argument does not look like a path, a config name.
 *   - --warehouse is made absolute (realpath) here, because the server resolves paths itself
 *     and may run in another directory; without it the server uses its own default.
 *   - The call's deadline defaults to 1 hour: an upload reads a whole warehouse partition
 *     range and may take minutes.
 *   - The upload is a job with an id chosen here: when the coordinator leading the cluster
 *     fails while it runs, the new leader resumes the job and the command follows it there
 *     (tsr_cli_call_job), printing the same line when it is done.
 */
#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "cli_int.h"
#include "tsr/pbvalue.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* 1 when s is a real calendar date YYYY-MM-DD. */
static int valid_ds(const char *s) {
    if (strlen(s) != 10 || s[4] != '-' || s[7] != '-') return 0;
    for (int i = 0; i < 10; i++)
        if (i != 4 && i != 7 && (s[i] < '0' || s[i] > '9')) return 0;
    int y = atoi(s), m = atoi(s + 5), d = atoi(s + 8);
    struct tm tm = {.tm_year = y - 1900, .tm_mon = m - 1, .tm_mday = d};
    time_t t = timegm(&tm);
    struct tm back;
    if (t == (time_t)-1 || !gmtime_r(&t, &back)) return 0;
    return back.tm_year == y - 1900 && back.tm_mon == m - 1 && back.tm_mday == d;
}

/* The config name for CONF into *name (malloc'd). Returns 0 or an exit code (reported). */
static int conf_name(const tsr_cli_cmd_t *cmd, const char *conf, char **name) {
    *name = NULL;
    struct stat st;
    if (stat(conf, &st) != 0) {
        size_t n = strlen(conf);
        int looks_like_path = strchr(conf, '/') != NULL ||
                              (n > 5 && strcmp(conf + n - 5, ".json") == 0);
        if (looks_like_path) {
            fprintf(stderr, "tessera upload: %s: cannot open: %s\n", conf, strerror(errno));
            return tsr_error_exit_code(errno == ENOENT ? TSR_ENOTFOUND : TSR_EIO);
        }
        *name = tsr_strdup(conf);   /* a config name, as `tessera get` lists them */
        return 0;
    }
    if (S_ISDIR(st.st_mode))
        return tsr_cli_usage_error(cmd, "%s is a directory: upload takes one config", conf);
    json_error_t je;
    json_t *root = json_load_file(conf, 0, &je);
    if (!root) {
        fprintf(stderr, "tessera upload: %s:%d:%d: %s\n", conf, je.line, je.column, je.text);
        return tsr_error_exit_code(TSR_EPARSE);
    }
    json_t *md = json_object_get(root, "metaData");
    json_t *nm = json_is_object(md) ? json_object_get(md, "name") : NULL;
    if (!json_is_string(nm) || json_string_length(nm) == 0) {
        fprintf(stderr, "tessera upload: %s: metaData.name: required (a non-empty string)\n",
                conf);
        json_decref(root);
        return tsr_error_exit_code(TSR_ECONFIG);
    }
    *name = tsr_strdup(json_string_value(nm));
    json_decref(root);
    return 0;
}

static int run_upload(int argc, char **argv) {
    const tsr_cli_cmd_t *cmd = &tsr_cmd_upload_def;
    tsr_cli_client_opts_t o = {.timeout_ms = TSR_CLI_UPLOAD_TIMEOUT_MS};
    const char *conf = NULL, *ds = NULL, *warehouse = NULL;
    for (int i = 1; i < argc; i++) {
        const char *v;
        int r = tsr_cli_client_option(cmd, argc, argv, &i, &o, 0);
        if (r < 0) return -r;
        if (r > 0) continue;
        if ((r = tsr_cli_opt_value(cmd, argc, argv, &i, "--ds", &v)) != 0) {
            if (r < 0) return -r;
            ds = v;
            continue;
        }
        if ((r = tsr_cli_opt_value(cmd, argc, argv, &i, "--warehouse", &v)) != 0) {
            if (r < 0) return -r;
            warehouse = v;
            continue;
        }
        if (argv[i][0] == '-') return tsr_cli_usage_error(cmd, "unknown option '%s'", argv[i]);
        if (conf) return tsr_cli_usage_error(cmd, "unexpected argument '%s' (one CONF only)", argv[i]);
        conf = argv[i];
    }
    if (!conf) return tsr_cli_usage_error(cmd, "CONF (a config file or name) is required");
    if (!ds) return tsr_cli_usage_error(cmd, "--ds is required");
    if (!valid_ds(ds)) return tsr_cli_usage_error(cmd, "--ds must be a date YYYY-MM-DD, got '%s'", ds);

    char wh_abs[PATH_MAX];
    wh_abs[0] = '\0';
    if (warehouse && *warehouse) {
        if (!realpath(warehouse, wh_abs)) {
            int e = errno;
            fprintf(stderr, "tessera upload: --warehouse %s: %s\n", warehouse, strerror(e));
            return tsr_error_exit_code(e == ENOENT ? TSR_ENOTFOUND : TSR_EIO);
        }
    }
    char *name = NULL;
    int rc = conf_name(cmd, conf, &name);
    if (rc) return rc;

    tsr_cli_conn_t conn;
    if ((rc = tsr_cli_conn_open(&conn, cmd, &o)) != 0) {
        free(name);
        return rc;
    }
    Tessera__V1__UploadRequest req = TESSERA__V1__UPLOAD_REQUEST__INIT;
    char job_id[64];
    tsr_cli_job_id("upload", job_id, sizeof job_id);
    req.name = name;
    req.ds = (char *)ds;
    req.warehouse = wh_abs;
    req.job_id = job_id;
    double t0 = now_s();
    /* a cluster coordinator refuses an upload until the GroupBys are assigned (just applied) */
    int followed = 0;
    rc = tsr_cli_call_job(&conn, "/tessera.v1.AdminService/Upload", &req, name, "not assigned to workers yet",
                          job_id, &followed);
    double dt = now_s() - t0;
    int exit_code = 0;
    if (rc) {
        exit_code = tsr_error_exit_code(rc);
    } else {
        tsr_arena_t arena;
        tsr_arena_init(&arena, 0);
        ProtobufCAllocator pa;
        tsr_pb_allocator(&arena, &pa);
        Tessera__V1__UploadResponse *resp = NULL;
        if (followed) {             /* the job's record, once done, says what Upload would have */
            Tessera__V1__GetJobResponse *j =
                tessera__v1__get_job_response__unpack(&pa, conn.reply.body.len, conn.reply.body.data);
            resp = j ? j->upload : NULL;
        } else {
            resp = tessera__v1__upload_response__unpack(&pa, conn.reply.body.len, conn.reply.body.data);
        }
        if (!resp) {
            fprintf(stderr, "tessera upload: malformed UploadResponse from %s\n", conn.server);
            exit_code = tsr_error_exit_code(TSR_ECORRUPT);
        } else {
            char iso[40];
            printf("uploaded %s as of %s (--ds %s): %lld keys, %lld group_bys in %.3f s\n",
                   resp->name && *resp->name ? resp->name : name,
                   tsr_cli_iso_millis(resp->batch_end_millis, iso, sizeof iso), ds,
                   (long long)resp->keys, (long long)resp->group_bys, dt);
            fflush(stdout);
        }
        tsr_arena_free(&arena);
    }
    tsr_cli_conn_close(&conn);
    free(name);
    return exit_code;
}

const tsr_cli_cmd_t tsr_cmd_upload_def = {
    "upload",
    "load a GroupBy's or Join's batch state as of a day into a running server",
    "usage: tessera upload CONF --ds E [--warehouse DIR] [--server ADDR] [--timeout-ms MS]\n"
    "\n"
    "Asks the server to compute, from warehouse data up to the end of partition E, each key's\n"
    "batch state as of B = E+1 00:00 UTC and load it for serving (a Join uploads each of its\n"
    "GroupBys). CONF is a config file (its metaData.name is sent) or a config name; the\n"
    "config must have been applied to the server (`tessera apply`). Prints the name, B, the\n"
    "keys loaded, the GroupBys uploaded and the time taken. In a cluster the upload is a job\n"
    "that survives a coordinator failover: the command follows it to the new leader.\n"
    "\n"
    "options:\n"
    "  --ds E              end partition, YYYY-MM-DD\n"
    "  --warehouse DIR     warehouse root (made absolute here; default: the server's)\n"
    "  --server ADDR       host:port (default $TESSERA_SERVER, else 127.0.0.1:7070); a cluster's\n"
    "                      coordinators may be listed (A,B): a failover is followed at each\n"
    "  --timeout-ms MS     deadline of the call (default 3600000: one hour)\n"
    "\n"
    "exit: 0 uploaded, 1 error, 2 usage, 3 config, file or warehouse not found,\n"
    "      4 server unavailable or no answer within the deadline\n",
    run_upload,
};
