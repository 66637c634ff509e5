/*
 * partfile.c — the upload part file codec (partfile.h).
 *
 * The writer buffers one frame at a time in memory and writes it with stdio; the reader reads
 * one frame at a time, so a part file of any size streams in constant memory (plus the
 * largest record). Every frame carries its own CRC-32, so corruption is found at the record
 * it hits, and the trailer's record count catches a file cut at a frame boundary.
 */
#include "tsr/partfile.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tsr/agg.h"
#include "tsr/mem.h"

#define MAGIC "TSRPART1"
#define MAGIC_LEN 8
#define MAX_FRAME (256u << 20)

/* CRC-32 (IEEE 802.3, reflected, as zlib computes it). */
static uint32_t crc_table[256];
static void crc_init(void) {
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) c = c & 1 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        crc_table[i] = c;
    }
}
static uint32_t crc32_of(const uint8_t *p, size_t n) {
    static pthread_once_t once_ = PTHREAD_ONCE_INIT;
    pthread_once(&once_, crc_init);
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++) c = crc_table[(c ^ p[i]) & 0xFF] ^ (c >> 8);
    return c ^ 0xFFFFFFFFu;
}

static void put_u32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static uint32_t get_u32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

void tsr_partfile_path(const char *dir, int32_t p, char *buf, size_t cap) {
    snprintf(buf, cap, "%s/part-%d.tsu", dir, (int)p);
}

/* ------------------------------------------------------------------------------------------
 * writer */

struct tsr_partfile_writer {
    FILE *f;
    char *path, *tmp;
    uint64_t records;
    tsr_buf_t frame, one;
};

static int write_frame(tsr_partfile_writer_t *w, tsr_error_t *err) {
    uint8_t h[4], t[4];
    put_u32(h, (uint32_t)w->frame.len);
    put_u32(t, crc32_of(w->frame.data, w->frame.len));
    if (fwrite(h, 1, 4, w->f) != 4 || fwrite(w->frame.data, 1, w->frame.len, w->f) != w->frame.len ||
        fwrite(t, 1, 4, w->f) != 4)
        return tsr_error_set(err, TSR_EIO, "%s: write failed: %s", w->tmp, strerror(errno));
    tsr_buf_clear(&w->frame);
    return 0;
}

static void writer_free(tsr_partfile_writer_t *w) {
    if (w->f) fclose(w->f);
    free(w->path);
    free(w->tmp);
    tsr_buf_free(&w->frame);
    tsr_buf_free(&w->one);
    free(w);
}

int tsr_partfile_create(const char *path, const tsr_partfile_header_t *h,
                        tsr_partfile_writer_t **out, tsr_error_t *err) {
    *out = NULL;
    tsr_partfile_writer_t *w = tsr_calloc(1, sizeof *w);
    w->path = tsr_strdup(path);
    size_t n = strlen(path) + 5;
    w->tmp = tsr_malloc(n);
    snprintf(w->tmp, n, "%s.tmp", path);
    tsr_buf_init(&w->frame);
    tsr_buf_init(&w->one);
    w->f = fopen(w->tmp, "wb");
    if (!w->f) {
        int rc = tsr_error_set(err, TSR_EIO, "%s: cannot create: %s", w->tmp, strerror(errno));
        writer_free(w);
        return rc;
    }
    int rc = fwrite(MAGIC, 1, MAGIC_LEN, w->f) == MAGIC_LEN
                 ? 0
                 : tsr_error_set(err, TSR_EIO, "%s: write failed: %s", w->tmp, strerror(errno));
    tsr_buf_put_uvarint(&w->frame, TSR_PARTFILE_VERSION);
    tsr_buf_put_bytes(&w->frame, h->group_by, strlen(h->group_by));
    tsr_buf_put_svarint(&w->frame, h->partition);
    tsr_buf_put_svarint(&w->frame, h->nparts);
    tsr_buf_put_svarint(&w->frame, h->batch_end);
    tsr_buf_put_u8(&w->frame, (uint8_t)h->kind);
    tsr_buf_put_uvarint(&w->frame, h->ncols);
    if (rc == 0) rc = write_frame(w, err);
    if (rc) {
        tsr_partfile_abort(w);
        return rc;
    }
    *out = w;
    return 0;
}

int tsr_partfile_put_tile(tsr_partfile_writer_t *w, const tsr_tile_gb_t *tiles, const void *key,
                          size_t klen, tsr_tile_kind_t kind, int64_t start,
                          const void *const *irs, tsr_error_t *err) {
    tsr_buf_put_u8(&w->frame, 'r');
    tsr_buf_put_bytes(&w->frame, key, klen);
    tsr_buf_put_u8(&w->frame, (uint8_t)kind);
    tsr_buf_put_svarint(&w->frame, start);
    for (size_t c = 0; c < tiles->ncols; c++) {
        tsr_buf_clear(&w->one);
        tsr_agg_encode(tiles->cols[c].agg, irs[c], &w->one);
        tsr_buf_put_bytes(&w->frame, w->one.data, w->one.len);
    }
    w->records++;
    return write_frame(w, err);
}

int tsr_partfile_put_entity(tsr_partfile_writer_t *w, const void *key, size_t klen,
                            const void *vals, size_t vlen, tsr_error_t *err) {
    tsr_buf_put_u8(&w->frame, 'e');
    tsr_buf_put_bytes(&w->frame, key, klen);
    tsr_buf_put_bytes(&w->frame, vals, vlen);
    w->records++;
    return write_frame(w, err);
}

uint64_t tsr_partfile_records(const tsr_partfile_writer_t *w) { return w->records; }

int tsr_partfile_finish(tsr_partfile_writer_t *w, tsr_error_t *err) {
    tsr_buf_put_u8(&w->frame, 'z');
    tsr_buf_put_uvarint(&w->frame, w->records);
    int rc = write_frame(w, err);
    if (rc == 0 && (fflush(w->f) != 0 || fsync(fileno(w->f)) != 0))
        rc = tsr_error_set(err, TSR_EIO, "%s: flush failed: %s", w->tmp, strerror(errno));
    if (rc == 0) {
        int c = fclose(w->f);
        w->f = NULL;
        if (c != 0) rc = tsr_error_set(err, TSR_EIO, "%s: close failed: %s", w->tmp, strerror(errno));
    }
    if (rc == 0 && rename(w->tmp, w->path) != 0)
        rc = tsr_error_set(err, TSR_EIO, "%s: cannot rename to %s: %s", w->tmp, w->path, strerror(errno));
    if (rc) {
        tsr_partfile_abort(w);
        return rc;
    }
    writer_free(w);
    return 0;
}

void tsr_partfile_abort(tsr_partfile_writer_t *w) {
    if (!w) return;
    if (w->f) fclose(w->f);
    w->f = NULL;
    unlink(w->tmp);
    writer_free(w);
}

/* ------------------------------------------------------------------------------------------
 * reader */

struct tsr_partfile_reader {
    FILE *f;
    char *path;
    uint64_t pos;                   /* byte offset of the next frame */
    uint64_t records;
    int done;
    tsr_partfile_header_t h;
    char *gb;
    tsr_buf_t frame;
    const uint8_t **irs;
    size_t *ir_lens;
};

/* Reads one frame into r->frame: 1, 0 at a clean end of file, or TSR_ECORRUPT. */
static int read_frame(tsr_partfile_reader_t *r, tsr_error_t *err) {
    uint8_t h[4];
    size_t got = fread(h, 1, 4, r->f);
    if (got == 0 && feof(r->f)) return 0;
    if (got != 4)
        return tsr_error_set(err, TSR_ECORRUPT, "%s: truncated frame header at byte %llu", r->path,
                             (unsigned long long)r->pos);
    uint32_t n = get_u32(h);
    if (n > MAX_FRAME)
        return tsr_error_set(err, TSR_ECORRUPT, "%s: corrupt frame length %u at byte %llu", r->path,
                             (unsigned)n, (unsigned long long)r->pos);
    tsr_buf_clear(&r->frame);
    tsr_buf_reserve(&r->frame, n + 4);
    if (fread(r->frame.data, 1, (size_t)n + 4, r->f) != (size_t)n + 4)
        return tsr_error_set(err, TSR_ECORRUPT, "%s: truncated record at byte %llu", r->path,
                             (unsigned long long)r->pos);
    r->frame.len = n;
    if (get_u32(r->frame.data + n) != crc32_of(r->frame.data, n))
        return tsr_error_set(err, TSR_ECORRUPT, "%s: checksum mismatch in the frame at byte %llu",
                             r->path, (unsigned long long)r->pos);
    r->pos += (uint64_t)n + 8;
    return 1;
}

static int bad(tsr_partfile_reader_t *r, tsr_error_t *err, const char *what) {
    return tsr_error_set(err, TSR_ECORRUPT, "%s: malformed %s in the frame ending at byte %llu",
                         r->path, what, (unsigned long long)r->pos);
}

int tsr_partfile_open(const char *path, tsr_partfile_reader_t **out, tsr_error_t *err) {
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f)
        return tsr_error_set(err, errno == ENOENT ? TSR_ENOTFOUND : TSR_EIO, "%s: cannot open: %s",
                             path, strerror(errno));
    tsr_partfile_reader_t *r = tsr_calloc(1, sizeof *r);
    r->f = f;
    r->path = tsr_strdup(path);
    tsr_buf_init(&r->frame);
    char magic[MAGIC_LEN];
    int rc = 0;
    if (fread(magic, 1, MAGIC_LEN, f) != MAGIC_LEN || memcmp(magic, MAGIC, MAGIC_LEN) != 0)
        rc = tsr_error_set(err, TSR_ECORRUPT, "%s: not a Tessera part file (bad magic)", path);
    r->pos = MAGIC_LEN;
    if (rc == 0) {
        rc = read_frame(r, err);
        if (rc == 0) rc = tsr_error_set(err, TSR_ECORRUPT, "%s: truncated (no header)", path);
        else if (rc == 1) rc = 0;
    }
    if (rc == 0) {
        tsr_reader_t rd;
        tsr_reader_init(&rd, r->frame.data, r->frame.len);
        uint64_t ver, ncols;
        const uint8_t *gb;
        size_t gblen;
        int64_t p, np, b;
        uint8_t kind;
        if (tsr_get_uvarint(&rd, &ver) || tsr_get_bytes(&rd, &gb, &gblen) || tsr_get_svarint(&rd, &p) ||
            tsr_get_svarint(&rd, &np) || tsr_get_svarint(&rd, &b) || tsr_get_u8(&rd, &kind) ||
            tsr_get_uvarint(&rd, &ncols) || kind > 1 || ncols > 4096) {
            rc = bad(r, err, "header");
        } else if (ver != TSR_PARTFILE_VERSION) {
            rc = tsr_error_set(err, TSR_EVERSION, "%s: part file version %llu (this build reads %d)",
                               path, (unsigned long long)ver, TSR_PARTFILE_VERSION);
        } else {
            r->gb = tsr_strndup((const char *)gb, gblen);
            r->h.group_by = r->gb;
            r->h.partition = (int32_t)p;
            r->h.nparts = (int32_t)np;
            r->h.batch_end = b;
            r->h.kind = (tsr_partfile_kind_t)kind;
            r->h.ncols = (uint32_t)ncols;
            r->irs = tsr_calloc(ncols ? ncols : 1, sizeof *r->irs);
            r->ir_lens = tsr_calloc(ncols ? ncols : 1, sizeof *r->ir_lens);
        }
    }
    if (rc) {
        tsr_partfile_close(r);
        return rc;
    }
    *out = r;
    return 0;
}

const tsr_partfile_header_t *tsr_partfile_header(const tsr_partfile_reader_t *r) { return &r->h; }

int tsr_partfile_next(tsr_partfile_reader_t *r, tsr_partfile_rec_t *rec, tsr_error_t *err) {
    if (r->done) return 0;
    int rc = read_frame(r, err);
    if (rc < 0) return rc;
    if (rc == 0)
        return tsr_error_set(err, TSR_ECORRUPT, "%s: truncated after %llu records (no trailer)",
                             r->path, (unsigned long long)r->records);
    memset(rec, 0, sizeof *rec);
    tsr_reader_t rd;
    tsr_reader_init(&rd, r->frame.data, r->frame.len);
    uint8_t tag;
    if (tsr_get_u8(&rd, &tag)) return bad(r, err, "record");
    if (tag == 'z') {
        uint64_t n;
        if (tsr_get_uvarint(&rd, &n)) return bad(r, err, "trailer");
        if (n != r->records)
            return tsr_error_set(err, TSR_ECORRUPT, "%s: trailer says %llu records, read %llu",
                                 r->path, (unsigned long long)n, (unsigned long long)r->records);
        uint8_t extra;
        if (fread(&extra, 1, 1, r->f) != 0)
            return tsr_error_set(err, TSR_ECORRUPT, "%s: bytes after the trailer at byte %llu",
                                 r->path, (unsigned long long)r->pos);
        r->done = 1;
        return 0;
    }
    const uint8_t *k;
    if (tsr_get_bytes(&rd, &k, &rec->klen)) return bad(r, err, "record key");
    rec->key = k;
    if (tag == 'r' && r->h.kind == TSR_PARTFILE_TILES) {
        uint8_t kind;
        if (tsr_get_u8(&rd, &kind) || tsr_get_svarint(&rd, &rec->start)) return bad(r, err, "record");
        rec->kind = (tsr_tile_kind_t)kind;
        for (uint32_t c = 0; c < r->h.ncols; c++)
            if (tsr_get_bytes(&rd, &r->irs[c], &r->ir_lens[c])) return bad(r, err, "record IR");
        rec->irs = r->irs;
        rec->ir_lens = r->ir_lens;
    } else if (tag == 'e' && r->h.kind == TSR_PARTFILE_ENTITY) {
        const uint8_t *v;
        if (tsr_get_bytes(&rd, &v, &rec->vlen)) return bad(r, err, "record values");
        rec->vals = v;
    } else {
        return bad(r, err, "record tag");
    }
    if (tsr_reader_left(&rd) != 0) return bad(r, err, "record (trailing bytes)");
    r->records++;
    return 1;
}

void tsr_partfile_close(tsr_partfile_reader_t *r) {
    if (!r) return;
    if (r->f) fclose(r->f);
    free(r->path);
    free(r->gb);
    free(r->irs);
    free(r->ir_lens);
    tsr_buf_free(&r->frame);
    free(r);
}
