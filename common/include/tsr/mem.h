/*
 * mem.h — the two memory helpers every module shares.
 *
 * tsr_arena_t: a bump allocator (nginx's pool). A fetch request, a Kafka batch, a backfill
 * chunk or a loaded config allocates from one arena and frees everything in one call.
 * Memory from tsr_arena_alloc is borrowed until tsr_arena_reset or tsr_arena_free.
 *
 * tsr_buf_t: a growable byte buffer for encoders and printers. Its bytes are owned by the
 * buffer; a pointer into them is borrowed until the next append (which may reallocate).
 *
 * Allocation failure aborts the process with a message: Tessera treats OOM as fatal,
 * as Redis does, so callers need not test every allocation.
 */
#ifndef TSR_MEM_H
#define TSR_MEM_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

void *tsr_malloc(size_t n);             /* aborts on failure */
/* For large, short-lived bulk buffers (record blocks, sort arrays, bulk arenas): n is rounded
 * up to 2 MiB and the memory is 2 MiB-aligned and advised for transparent huge pages, so
 * first touch costs one page fault per 2 MiB instead of per 4 KiB. Free with tsr_free_huge. */
void *tsr_malloc_huge(size_t n);
void tsr_free_huge(void *p);
#define TSR_HUGE_PAGE ((size_t)2 << 20)
void *tsr_calloc(size_t n, size_t size);
void *tsr_realloc(void *p, size_t n);
char *tsr_strdup(const char *s);
char *tsr_strndup(const char *s, size_t n);

/* The malloc this process runs on, for startup logs and --version: "jemalloc <version>" when
 * the program is linked with jemalloc (CMake option TESSERA_JEMALLOC, docs/architecture.md
 * "Memory allocator"), else "glibc". Writes at most n bytes (NUL included) into buf. */
void tsr_malloc_name(char *buf, size_t n);

typedef struct tsr_arena_chunk tsr_arena_chunk_t;

typedef struct tsr_arena {
    tsr_arena_chunk_t *head;    /* current chunk; older chunks chained behind it */
    size_t chunk_size;          /* default size of new chunks */
    size_t total;               /* bytes handed out, for stats */
    int huge;                   /* chunks from tsr_malloc_huge */
} tsr_arena_t;

/* chunk_size 0 means 16 KiB. */
void tsr_arena_init(tsr_arena_t *a, size_t chunk_size);
/* An arena for bulk data: 4 MiB chunks on transparent huge pages (see tsr_malloc_huge). */
void tsr_arena_init_bulk(tsr_arena_t *a);
/* Frees every chunk. The arena can be reused after tsr_arena_init. */
void tsr_arena_free(tsr_arena_t *a);
/* Forgets all allocations but keeps the first chunk for reuse. */
void tsr_arena_reset(tsr_arena_t *a);
/* Resets for the next call of a handler so that a call like the last one fits in the chunk the
 * reset keeps: when the last use outgrew the first chunk, the arena is re-made with one chunk
 * of the next power-of-two multiple of its size above 1.25 x that use (at most keep_max),
 * which then stays. A plain reset would free every other chunk, so a large request would
 * malloc (and fault in) dozens of chunks at every call. */
void tsr_arena_reset_fit(tsr_arena_t *a, size_t keep_max);
/* 8-byte aligned; never NULL. Borrowed until reset/free. */
void *tsr_arena_alloc(tsr_arena_t *a, size_t n);
void *tsr_arena_calloc(tsr_arena_t *a, size_t n);
char *tsr_arena_strdup(tsr_arena_t *a, const char *s);
char *tsr_arena_strndup(tsr_arena_t *a, const char *s, size_t n);
char *tsr_arena_printf(tsr_arena_t *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

typedef struct tsr_buf {
    uint8_t *data;
    size_t len, cap;
} tsr_buf_t;

void tsr_buf_init(tsr_buf_t *b);
void tsr_buf_free(tsr_buf_t *b);
static inline void tsr_buf_clear(tsr_buf_t *b) { b->len = 0; }
/* Ensures room for n more bytes. */
void tsr_buf_reserve(tsr_buf_t *b, size_t n);
void tsr_buf_append(tsr_buf_t *b, const void *p, size_t n);
void tsr_buf_putc(tsr_buf_t *b, int c);
void tsr_buf_puts(tsr_buf_t *b, const char *s);
void tsr_buf_printf(tsr_buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* NUL-terminates without counting the NUL in len; returns data as a string. */
const char *tsr_buf_cstr(tsr_buf_t *b);

/* Unsigned LEB128 varints and zigzag signed varints, for the binary encodings (IRs, tiles). */
void tsr_buf_put_uvarint(tsr_buf_t *b, uint64_t v);
void tsr_buf_put_svarint(tsr_buf_t *b, int64_t v);
void tsr_buf_put_u8(tsr_buf_t *b, uint8_t v);
void tsr_buf_put_f64(tsr_buf_t *b, double v);          /* little-endian IEEE 754 */
void tsr_buf_put_bytes(tsr_buf_t *b, const void *p, size_t n); /* uvarint length + bytes */

/* A read cursor over encoded bytes. Every getter returns 0 on success or TSR_ECORRUPT when the
 * input is truncated or malformed; it never reads past end. */
typedef struct tsr_reader {
    const uint8_t *p, *end;
} tsr_reader_t;

static inline void tsr_reader_init(tsr_reader_t *r, const void *p, size_t n) {
    r->p = (const uint8_t *)p;
    r->end = r->p + n;
}
static inline size_t tsr_reader_left(const tsr_reader_t *r) { return (size_t)(r->end - r->p); }
int tsr_get_uvarint(tsr_reader_t *r, uint64_t *v);
int tsr_get_svarint(tsr_reader_t *r, int64_t *v);
int tsr_get_u8(tsr_reader_t *r, uint8_t *v);
int tsr_get_f64(tsr_reader_t *r, double *v);
/* Borrowed pointer into the input, valid while the input is. */
int tsr_get_bytes(tsr_reader_t *r, const uint8_t **p, size_t *n);

#endif
