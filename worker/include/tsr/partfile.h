/*
 * partfile.h — the upload part file (`part-<p>.tsu`, docs/cluster.md "Upload shards"): the
 * batch state of one partition of one GroupBy for one upload version B, written by the worker
 * that ran the shard, loaded by whichever worker owns the partition when the upload commits.
 *
 * Format (little-endian; varints as mem.h writes them):
 *
 *     "TSRPART1"                                 8-byte magic
 *     frame(header)  uvarint version (1), bytes group_by, svarint partition, svarint nparts,
 *                    svarint batch_end, u8 kind (0 tiles, 1 entity values), uvarint ncols
 *     frame(record)* 'r' bytes key, u8 tile kind, svarint start, ncols x bytes IR encoding
 *                    'e' bytes key, bytes values          (entity GroupBys)
 *     frame(trailer) 'z' uvarint records
 *     end of file
 *
 *     frame(x) = u32 payload length, payload, u32 CRC-32 (IEEE) of the payload
 *
 * Records keep the order the batch computation produced (a key's records together), which is
 * what tsr_tile_upload_put needs. A file is written under `<path>.tmp` and renamed into place
 * by tsr_partfile_finish after an fsync, so a reader never sees a half-written file under the
 * real name; a truncated or corrupted file (missing trailer, bad checksum, bytes after the
 * trailer) is refused with a message naming the file and the byte offset.
 */
#ifndef TSR_PARTFILE_H
#define TSR_PARTFILE_H

#include <stddef.h>
#include <stdint.h>

#include "tsr/error.h"
#include "tsr/tile.h"

#define TSR_PARTFILE_VERSION 1

typedef enum tsr_partfile_kind {
    TSR_PARTFILE_TILES = 0,
    TSR_PARTFILE_ENTITY = 1,
} tsr_partfile_kind_t;

typedef struct tsr_partfile_header {
    const char *group_by;           /* borrowed (reader: until close) */
    int32_t partition;
    int32_t nparts;
    int64_t batch_end;
    tsr_partfile_kind_t kind;
    uint32_t ncols;                 /* tiles: the GroupBy's tile columns; entity: 0 */
} tsr_partfile_header_t;

/* ---- writing */

typedef struct tsr_partfile_writer tsr_partfile_writer_t;

/* Creates `<path>.tmp` and writes the header. Caller ends with _finish or _abort. */
int tsr_partfile_create(const char *path, const tsr_partfile_header_t *h,
                        tsr_partfile_writer_t **out, tsr_error_t *err);
/* One tile batch record: irs[c] is column c's IR of tiles (encoded with its kernel). */
int tsr_partfile_put_tile(tsr_partfile_writer_t *w, const tsr_tile_gb_t *tiles, const void *key,
                          size_t klen, tsr_tile_kind_t kind, int64_t start,
                          const void *const *irs, tsr_error_t *err);
/* One entity record: the key's encoded base features. */
int tsr_partfile_put_entity(tsr_partfile_writer_t *w, const void *key, size_t klen,
                            const void *vals, size_t vlen, tsr_error_t *err);
/* Writes the trailer, fsyncs, renames to the real path; frees w (also on failure). */
int tsr_partfile_finish(tsr_partfile_writer_t *w, tsr_error_t *err);
/* Removes the temp file; frees w. NULL is a no-op. */
void tsr_partfile_abort(tsr_partfile_writer_t *w);
/* Records written so far. */
uint64_t tsr_partfile_records(const tsr_partfile_writer_t *w);

/* ---- reading */

typedef struct tsr_partfile_reader tsr_partfile_reader_t;

/* One record, borrowed until the next call on the reader. */
typedef struct tsr_partfile_rec {
    const uint8_t *key;
    size_t klen;
    tsr_tile_kind_t kind;           /* tiles */
    int64_t start;                  /* tiles */
    const uint8_t **irs;            /* tiles: ncols encodings ... */
    const size_t *ir_lens;          /* ... and their lengths */
    const uint8_t *vals;            /* entity */
    size_t vlen;
} tsr_partfile_rec_t;

/* Opens path and checks its magic and header. Caller frees with tsr_partfile_close. */
int tsr_partfile_open(const char *path, tsr_partfile_reader_t **out, tsr_error_t *err);
const tsr_partfile_header_t *tsr_partfile_header(const tsr_partfile_reader_t *r);
/* The next record: 1, or 0 at the (verified) trailer, or TSR_ECORRUPT naming the file. */
int tsr_partfile_next(tsr_partfile_reader_t *r, tsr_partfile_rec_t *rec, tsr_error_t *err);
void tsr_partfile_close(tsr_partfile_reader_t *r);

/* The file name of partition p in an upload directory: "<dir>/part-<p>.tsu" into buf. */
void tsr_partfile_path(const char *dir, int32_t p, char *buf, size_t cap);

#endif
