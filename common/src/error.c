/*
 * error.c — the generated error table, the caller-owned error record and the error list.
 * See error.h for the design.
 */
#include "tsr/error.h"

#include <stdlib.h>
#include <string.h>

struct err_row {
    int code;
    const char *name;
    const char *msg;
    int grpc;
    int exitc;
};

static const struct err_row err_rows[] = {
#define TSR__ERR_ROW(name, val, msg, grpc, exitc) {(val), #name, (msg), (grpc), (exitc)},
    TSR_ERRNO_MAP(TSR__ERR_ROW)
#undef TSR__ERR_ROW
};

static const struct err_row *err_find(int code) {
    for (size_t i = 0; i < sizeof(err_rows) / sizeof(err_rows[0]); i++)
        if (err_rows[i].code == code) return &err_rows[i];
    return NULL;
}

const char *tsr_strerror(int code) {
    const struct err_row *r = err_find(code);
    return r ? r->msg : "unknown error";
}

const char *tsr_error_name(int code) {
    const struct err_row *r = err_find(code);
    return r ? r->name : "EUNKNOWN";
}

int tsr_error_grpc_status(int code) {
    const struct err_row *r = err_find(code);
    return r ? r->grpc : 2; /* UNKNOWN */
}

int tsr_error_exit_code(int code) {
    const struct err_row *r = err_find(code);
    return r ? r->exitc : 1;
}

void tsr_error_clear(tsr_error_t *e) {
    if (!e) return;
    e->code = TSR_OK;
    e->src_file = NULL;
    e->src_line = 0;
    e->msg[0] = '\0';
}

int tsr__error_set(tsr_error_t *e, int code, const char *file, int line, const char *fmt, ...) {
    if (!e) return code;
    va_list ap;
    e->code = code;
    e->src_file = file;
    e->src_line = line;
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof(e->msg), fmt, ap);
    va_end(ap);
    return code;
}

void tsr_error_prefix(tsr_error_t *e, const char *fmt, ...) {
    if (!e) return;
    char prefix[TSR_ERROR_MSG_MAX];
    char old[TSR_ERROR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof(prefix), fmt, ap);
    va_end(ap);
    memcpy(old, e->msg, sizeof(old));
    size_t np = strlen(prefix);
    if (np + 2 >= sizeof(e->msg)) np = sizeof(e->msg) - 3;
    memcpy(e->msg, prefix, np);
    memcpy(e->msg + np, ": ", 2);
    size_t room = sizeof(e->msg) - np - 2 - 1;
    size_t no = strlen(old);
    if (no > room) no = room;
    memcpy(e->msg + np + 2, old, no);
    e->msg[np + 2 + no] = '\0';
}

void tsr_diag_init(tsr_diag_t *d) {
    d->items = NULL;
    d->n = d->cap = 0;
}

void tsr_diag_free(tsr_diag_t *d) {
    for (size_t i = 0; i < d->n; i++) free(d->items[i].text);
    free(d->items);
    tsr_diag_init(d);
}

void tsr_diag_vadd(tsr_diag_t *d, int code, const char *file, const char *path, const char *fmt,
                   va_list ap) {
    char msg[TSR_ERROR_MSG_MAX];
    vsnprintf(msg, sizeof(msg), fmt, ap);

    size_t need = strlen(msg) + 1;
    if (file && *file) need += strlen(file) + 2;
    if (path && *path) need += strlen(path) + 2;
    char *text = malloc(need);
    if (!text) return;
    text[0] = '\0';
    if (file && *file) { strcat(text, file); strcat(text, ": "); }
    if (path && *path) { strcat(text, path); strcat(text, ": "); }
    strcat(text, msg);

    if (d->n == d->cap) {
        size_t ncap = d->cap ? d->cap * 2 : 8;
        tsr_diag_entry_t *p = realloc(d->items, ncap * sizeof(*p));
        if (!p) { free(text); return; }
        d->items = p;
        d->cap = ncap;
    }
    d->items[d->n].code = code;
    d->items[d->n].text = text;
    d->n++;
}

void tsr_diag_add(tsr_diag_t *d, int code, const char *file, const char *path, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    tsr_diag_vadd(d, code, file, path, fmt, ap);
    va_end(ap);
}

void tsr_diag_print(const tsr_diag_t *d, FILE *out) {
    for (size_t i = 0; i < d->n; i++) fprintf(out, "%s\n", d->items[i].text);
}

int tsr_diag_contains(const tsr_diag_t *d, const char *needle) {
    for (size_t i = 0; i < d->n; i++)
        if (strstr(d->items[i].text, needle)) return 1;
    return 0;
}
