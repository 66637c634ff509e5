/*
 * mem.c — allocation wrappers, the bump arena, the growable buffer and varint codec.
 */
#include "tsr/mem.h"
#include "tsr/error.h"

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

static void oom(size_t n) {
    fprintf(stderr, "tessera: out of memory allocating %zu bytes\n", n);
    abort();
}

void *tsr_malloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p) oom(n);
    return p;
}

void *tsr_calloc(size_t n, size_t size) {
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p) oom(n * size);
    return p;
}

void *tsr_realloc(void *p, size_t n) {
    void *q = realloc(p, n ? n : 1);
    if (!q) oom(n);
    return q;
}

void *tsr_malloc_huge(size_t n) {
    n = (n + TSR_HUGE_PAGE - 1) & ~(TSR_HUGE_PAGE - 1);
    if (n == 0) n = TSR_HUGE_PAGE;
    void *p = aligned_alloc(TSR_HUGE_PAGE, n);
    if (!p) oom(n);
    madvise(p, n, MADV_HUGEPAGE); /* advice only: failure just means 4 KiB pages */
    return p;
}

void tsr_free_huge(void *p) { free(p); }

/* jemalloc's mallctl is in the global scope only when the program links jemalloc; asking
 * the symbol table keeps tsr_common free of a link-time dependency on it. */
void tsr_malloc_name(char *buf, size_t n) {
    typedef int (*mallctl_fn)(const char *, void *, size_t *, void *, size_t);
    mallctl_fn ctl = NULL;
    void *self = dlopen(NULL, RTLD_LAZY);
    if (self) {
        void *sym = dlsym(self, "mallctl");
        memcpy(&ctl, &sym, sizeof ctl); /* POSIX: a data pointer holds a function's address */
        dlclose(self);
    }
    const char *ver = NULL;
    size_t len = sizeof ver;
    if (ctl && ctl("version", &ver, &len, NULL, 0) == 0 && ver) snprintf(buf, n, "jemalloc %s", ver);
    else snprintf(buf, n, "glibc");
}

char *tsr_strdup(const char *s) { return tsr_strndup(s, strlen(s)); }

char *tsr_strndup(const char *s, size_t n) {
    char *p = tsr_malloc(n + 1);
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

struct tsr_arena_chunk {
    tsr_arena_chunk_t *next;
    size_t size, used;
    _Alignas(16) unsigned char data[];
};

void tsr_arena_init(tsr_arena_t *a, size_t chunk_size) {
    a->head = NULL;
    a->chunk_size = chunk_size ? chunk_size : 16384;
    a->total = 0;
    a->huge = 0;
}

/* Bulk arenas start with one small ordinary chunk (a store that stays small costs little)
 * and continue with 4 MiB huge-page chunks. */
#define BULK_FIRST_CHUNK ((size_t)256 << 10)

void tsr_arena_init_bulk(tsr_arena_t *a) {
    tsr_arena_init(a, BULK_FIRST_CHUNK);
    a->huge = 1;
}

static tsr_arena_chunk_t *chunk_new(tsr_arena_t *a, size_t size) {
    if (a->huge && a->head) {
        if (size < 2 * TSR_HUGE_PAGE - sizeof(tsr_arena_chunk_t))
            size = 2 * TSR_HUGE_PAGE - sizeof(tsr_arena_chunk_t);
        tsr_arena_chunk_t *c = tsr_malloc_huge(sizeof(tsr_arena_chunk_t) + size);
        c->size = size;
        return c;
    }
    tsr_arena_chunk_t *c = tsr_malloc(sizeof(tsr_arena_chunk_t) + size);
    c->size = size;
    return c;
}

void tsr_arena_free(tsr_arena_t *a) {
    tsr_arena_chunk_t *c = a->head;
    while (c) {
        tsr_arena_chunk_t *next = c->next;
        free(c);
        c = next;
    }
    a->head = NULL;
    a->total = 0;
}

void tsr_arena_reset(tsr_arena_t *a) {
    if (!a->head) return;
    /* keep the oldest chunk (the tail): it has the default size */
    tsr_arena_chunk_t *c = a->head;
    while (c->next) {
        tsr_arena_chunk_t *next = c->next;
        free(c);
        c = next;
    }
    c->used = 0;
    a->head = c;
    a->total = 0;
}

void tsr_arena_reset_fit(tsr_arena_t *a, size_t keep_max) {
    size_t used = a->total, chunk = a->chunk_size;
    if (used > chunk && chunk < keep_max) {
        while (chunk < used + used / 4 && chunk < keep_max) chunk *= 2;
        tsr_arena_free(a);
        tsr_arena_init(a, chunk);
        return;
    }
    tsr_arena_reset(a);
}

void *tsr_arena_alloc(tsr_arena_t *a, size_t n) {
    n = (n + 7) & ~(size_t)7;
    tsr_arena_chunk_t *c = a->head;
    if (!c || c->size - c->used < n) {
        size_t size = n > a->chunk_size ? n : a->chunk_size;
        tsr_arena_chunk_t *nc = chunk_new(a, size);
        size = nc->size;
        nc->used = 0;
        if (c && n > a->chunk_size) {
            /* a big one-off: chain it behind the head so the head keeps its free space */
            nc->next = c->next;
            c->next = nc;
            nc->used = n;
            a->total += n;
            return nc->data;
        }
        nc->next = c;
        a->head = c = nc;
    }
    void *p = c->data + c->used;
    c->used += n;
    a->total += n;
    return p;
}

void *tsr_arena_calloc(tsr_arena_t *a, size_t n) {
    void *p = tsr_arena_alloc(a, n);
    memset(p, 0, n);
    return p;
}

char *tsr_arena_strndup(tsr_arena_t *a, const char *s, size_t n) {
    char *p = tsr_arena_alloc(a, n + 1);
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

char *tsr_arena_strdup(tsr_arena_t *a, const char *s) {
    return tsr_arena_strndup(a, s, strlen(s));
}

char *tsr_arena_printf(tsr_arena_t *a, const char *fmt, ...) {
    va_list ap, ap2;
    va_start(ap, fmt);
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    char *p = tsr_arena_alloc(a, (size_t)n + 1);
    vsnprintf(p, (size_t)n + 1, fmt, ap2);
    va_end(ap2);
    return p;
}

void tsr_buf_init(tsr_buf_t *b) {
    b->data = NULL;
    b->len = b->cap = 0;
}

void tsr_buf_free(tsr_buf_t *b) {
    free(b->data);
    tsr_buf_init(b);
}

void tsr_buf_reserve(tsr_buf_t *b, size_t n) {
    if (b->cap - b->len > n) return; /* keep one byte for tsr_buf_cstr */
    size_t ncap = b->cap ? b->cap : 64;
    while (ncap - b->len <= n) ncap *= 2;
    b->data = tsr_realloc(b->data, ncap);
    b->cap = ncap;
}

void tsr_buf_append(tsr_buf_t *b, const void *p, size_t n) {
    tsr_buf_reserve(b, n);
    if (n) memcpy(b->data + b->len, p, n);
    b->len += n;
}

void tsr_buf_putc(tsr_buf_t *b, int c) {
    tsr_buf_reserve(b, 1);
    b->data[b->len++] = (uint8_t)c;
}

void tsr_buf_puts(tsr_buf_t *b, const char *s) { tsr_buf_append(b, s, strlen(s)); }

void tsr_buf_printf(tsr_buf_t *b, const char *fmt, ...) {
    va_list ap, ap2;
    va_start(ap, fmt);
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    tsr_buf_reserve(b, (size_t)n + 1);
    vsnprintf((char *)b->data + b->len, (size_t)n + 1, fmt, ap2);
    va_end(ap2);
    b->len += (size_t)n;
}

const char *tsr_buf_cstr(tsr_buf_t *b) {
    tsr_buf_reserve(b, 1);
    b->data[b->len] = '\0';
    return (const char *)b->data;
}

void tsr_buf_put_uvarint(tsr_buf_t *b, uint64_t v) {
    tsr_buf_reserve(b, 10);
    while (v >= 0x80) {
        b->data[b->len++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    b->data[b->len++] = (uint8_t)v;
}

void tsr_buf_put_svarint(tsr_buf_t *b, int64_t v) {
    tsr_buf_put_uvarint(b, ((uint64_t)v << 1) ^ (uint64_t)(v >> 63));
}

void tsr_buf_put_u8(tsr_buf_t *b, uint8_t v) { tsr_buf_putc(b, v); }

void tsr_buf_put_f64(tsr_buf_t *b, double v) {
    uint64_t u;
    memcpy(&u, &v, 8);
    uint8_t le[8];
    for (int i = 0; i < 8; i++) le[i] = (uint8_t)(u >> (8 * i));
    tsr_buf_append(b, le, 8);
}

void tsr_buf_put_bytes(tsr_buf_t *b, const void *p, size_t n) {
    tsr_buf_put_uvarint(b, n);
    tsr_buf_append(b, p, n);
}

int tsr_get_uvarint(tsr_reader_t *r, uint64_t *v) {
    uint64_t x = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        if (r->p >= r->end) return TSR_ECORRUPT;
        uint8_t c = *r->p++;
        if (shift == 63 && c > 1) return TSR_ECORRUPT;
        x |= (uint64_t)(c & 0x7f) << shift;
        if (!(c & 0x80)) {
            *v = x;
            return 0;
        }
    }
    return TSR_ECORRUPT;
}

int tsr_get_svarint(tsr_reader_t *r, int64_t *v) {
    uint64_t u;
    int rc = tsr_get_uvarint(r, &u);
    if (rc) return rc;
    *v = (int64_t)((u >> 1) ^ (~(u & 1) + 1));
    return 0;
}

int tsr_get_u8(tsr_reader_t *r, uint8_t *v) {
    if (r->p >= r->end) return TSR_ECORRUPT;
    *v = *r->p++;
    return 0;
}

int tsr_get_f64(tsr_reader_t *r, double *v) {
    if (tsr_reader_left(r) < 8) return TSR_ECORRUPT;
    uint64_t u = 0;
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    memcpy(&u, r->p, 8); /* one load: the byte loop below was ~10 instructions a value, 2 % of
                            a tile read (tile decode is mostly doubles) */
#else
    for (int i = 0; i < 8; i++) u |= (uint64_t)r->p[i] << (8 * i);
#endif
    r->p += 8;
    memcpy(v, &u, 8);
    return 0;
}

int tsr_get_bytes(tsr_reader_t *r, const uint8_t **p, size_t *n) {
    uint64_t len;
    int rc = tsr_get_uvarint(r, &len);
    if (rc) return rc;
    if (len > tsr_reader_left(r)) return TSR_ECORRUPT;
    *p = r->p;
    *n = (size_t)len;
    r->p += len;
    return 0;
}
