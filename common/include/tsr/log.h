/*
 * log.h — Tessera's log lines (SPEC §7: daemons log JSON on stderr).
 *
 * One line per event, written whole (the stream is locked for the line, so lines of different
 * threads never interleave), in one of two formats:
 *   json:  {"ts":"2026-11-26T04:43:29.123Z","level":"info","component":"serve","msg":"..."}
 *   text:  tessera serve: ...
 * The process picks the format once at start (tsr_log_init); the default is text. Daemons
 * choose json when stderr is not a terminal (log collectors) unless told otherwise.
 */
#ifndef TSR_LOG_H
#define TSR_LOG_H

#include <stdio.h>

typedef enum tsr_log_format {
    TSR_LOG_TEXT = 0,
    TSR_LOG_JSON = 1,
} tsr_log_format_t;

typedef enum tsr_log_level {
    TSR_LOG_DEBUG = 0,
    TSR_LOG_INFO = 1,
    TSR_LOG_WARN = 2,
    TSR_LOG_ERROR = 3,
} tsr_log_level_t;

/* Sets where lines go (NULL: nowhere), their format and the lowest level written. Call before
 * any thread logs. */
void tsr_log_init(FILE *out, tsr_log_format_t format, tsr_log_level_t min_level);
/* Parses "json" / "text"; returns 0 or -1. */
int tsr_log_format_parse(const char *s, tsr_log_format_t *out);
/* 1 when a line of this level would be written. */
int tsr_log_enabled(tsr_log_level_t level);
/* Writes one line; component names the part of the program ("serve", "ingest"). */
void tsr_log(tsr_log_level_t level, const char *component, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
