/*
 * error.h — Tessera's one table of error codes, and the error record callers own.
 *
 * Design (after libuv's UV_ERRNO_MAP and Tarantool's diag_set):
 *   - TSR_ERRNO_MAP lists every code once, with its message, the gRPC status it maps to and
 *     the CLI exit code. The enum, tsr_strerror(), tsr_error_grpc_status() and
 *     tsr_error_exit_code() are all generated from it, so the three never drift apart.
 *   - Functions return 0 (TSR_OK) or a negative TSR_E* code. When they fail they also fill the
 *     caller's tsr_error_t (if not NULL) with a message saying what was wrong and where, plus
 *     the source file and line that raised it. The caller checks only the return code.
 *   - tsr_diag_t collects *many* errors (config validation reports all of them, not the first).
 *
 * CLI exit codes (SPEC §7): 0 ok, 1 error, 2 usage, 3 not found, 4 unavailable.
 */
#ifndef TSR_ERROR_H
#define TSR_ERROR_H

#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>

/*  XX(NAME, value, message, gRPC status, CLI exit code) */
#define TSR_ERRNO_MAP(XX)                                                   \
    XX(OK,          0,  "ok",                                 0,  0)        \
    XX(EINVAL,      -1, "invalid argument",                   3,  1)        \
    XX(ECONFIG,     -2, "invalid configuration",              3,  1)        \
    XX(EPARSE,      -3, "parse error",                        3,  1)        \
    XX(ETYPE,       -4, "type error",                         3,  1)        \
    XX(ENOTFOUND,   -5, "not found",                          5,  3)        \
    XX(ENOMEM,      -6, "out of memory",                      8,  1)        \
    XX(EIO,         -7, "I/O error",                          13, 1)        \
    XX(ECORRUPT,    -8, "corrupt or truncated data",          15, 1)        \
    XX(EVERSION,    -9, "unsupported encoding version",       9,  1)        \
    XX(EUNSUPPORTED,-10, "unsupported feature",               12, 1)        \
    XX(EUNAVAIL,    -11, "service unavailable",               14, 4)        \
    XX(EUSAGE,      -12, "usage error",                       3,  2)        \
    XX(ETIMEOUT,    -13, "deadline exceeded",                 4,  4)        \
    XX(EEXIST,      -14, "already exists",                    6,  1)        \
    XX(EINTERNAL,   -15, "internal error",                    13, 1)

enum {
#define TSR__ERR_ENUM(name, val, msg, grpc, exitc) TSR_##name = (val),
    TSR_ERRNO_MAP(TSR__ERR_ENUM)
#undef TSR__ERR_ENUM
};

/* Static message for a code ("unknown error" for a code not in the table). */
const char *tsr_strerror(int code);
/* Symbolic name of a code, e.g. "ECONFIG". */
const char *tsr_error_name(int code);
/* gRPC status code (grpc_status_code values) for a Tessera code. */
int tsr_error_grpc_status(int code);
/* CLI exit code for a Tessera code. */
int tsr_error_exit_code(int code);

#define TSR_ERROR_MSG_MAX 1024

/* One error, owned by the caller (usually on its stack). */
typedef struct tsr_error {
    int code;               /* TSR_E*, or TSR_OK when nothing failed */
    const char *src_file;   /* where it was raised (static string) */
    int src_line;
    char msg[TSR_ERROR_MSG_MAX];
} tsr_error_t;

void tsr_error_clear(tsr_error_t *e);
/* Records code and a printf-style message; a NULL e is allowed and ignored. Returns code, so
 * `return tsr_error_set(err, TSR_EINVAL, "...")` reads naturally. */
int tsr__error_set(tsr_error_t *e, int code, const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
#define tsr_error_set(e, code, ...) tsr__error_set((e), (code), __FILE__, __LINE__, __VA_ARGS__)
/* Prefixes the existing message with "prefix: " (used to add a file or JSON path). */
void tsr_error_prefix(tsr_error_t *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* A list of errors, each "<where>: <message>", e.g.
 *   card_txn.v1: aggregations[2].argMap.k: required for LAST_K
 * where = "<file>: <json path>" (either part may be empty). */
typedef struct tsr_diag_entry {
    int code;
    char *text;             /* owned by the diag */
} tsr_diag_entry_t;

typedef struct tsr_diag {
    tsr_diag_entry_t *items;
    size_t n, cap;
} tsr_diag_t;

void tsr_diag_init(tsr_diag_t *d);
void tsr_diag_free(tsr_diag_t *d);
/* Adds "<file>: <path>: <message>"; file or path may be NULL or "" and are then left out. */
void tsr_diag_add(tsr_diag_t *d, int code, const char *file, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
void tsr_diag_vadd(tsr_diag_t *d, int code, const char *file, const char *path, const char *fmt,
                   va_list ap);
/* Prints one entry a line. */
void tsr_diag_print(const tsr_diag_t *d, FILE *out);
/* 1 when any entry's text contains needle (for tests). */
int tsr_diag_contains(const tsr_diag_t *d, const char *needle);

#endif
