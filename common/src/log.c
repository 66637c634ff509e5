/*
 * log.c — log lines in JSON or text (log.h).
 */
#include "tsr/log.h"

#include <stdarg.h>
#include <string.h>
#include <time.h>

#include "tsr/http.h"
#include "tsr/mem.h"

static FILE *g_out;
static tsr_log_format_t g_format = TSR_LOG_TEXT;
static tsr_log_level_t g_min = TSR_LOG_INFO;

static const char *const k_level[] = {"debug", "info", "warn", "error"};

void tsr_log_init(FILE *out, tsr_log_format_t format, tsr_log_level_t min_level) {
    g_out = out;
    g_format = format;
    g_min = min_level;
}

int tsr_log_format_parse(const char *s, tsr_log_format_t *out) {
    if (strcmp(s, "json") == 0) *out = TSR_LOG_JSON;
    else if (strcmp(s, "text") == 0) *out = TSR_LOG_TEXT;
    else return -1;
    return 0;
}

int tsr_log_enabled(tsr_log_level_t level) { return g_out && level >= g_min; }

void tsr_log(tsr_log_level_t level, const char *component, const char *fmt, ...) {
    if (!tsr_log_enabled(level)) return;
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (g_format == TSR_LOG_TEXT) {
        flockfile(g_out);
        fprintf(g_out, "tessera %s: %s\n", component, msg);
        fflush(g_out);
        funlockfile(g_out);
        return;
    }
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    struct tm tm;
    gmtime_r(&t.tv_sec, &tm);
    char ts[96];
    snprintf(ts, sizeof ts, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (long)(t.tv_nsec / 1000000L) % 1000);
    tsr_buf_t b;
    tsr_buf_init(&b);
    tsr_buf_printf(&b, "{\"ts\":\"%s\",\"level\":\"%s\",\"component\":", ts,
                   k_level[level <= TSR_LOG_ERROR ? level : TSR_LOG_ERROR]);
    tsr_http_json_string(&b, component, strlen(component));
    tsr_buf_puts(&b, ",\"msg\":");
    tsr_http_json_string(&b, msg, strlen(msg));
    tsr_buf_puts(&b, "}\n");
    flockfile(g_out);
    fwrite(b.data, 1, b.len, g_out);
    fflush(g_out);
    funlockfile(g_out);
    tsr_buf_free(&b);
}
