/*
 * table_int.h — what table.c, table_csv.c and table_jsonl.c share: the reader object and the
 * per-format entry points.
 */
#ifndef TSR_TABLE_INT_H
#define TSR_TABLE_INT_H

#include <jansson.h>

#include "tsr/mem.h"
#include "tsr/table.h"

struct tsr_file_reader {
    const tsr_table_t *t;
    const tsr_table_file_t *f;
    int fd;
    const char *map;            /* whole file, read-only mmap (NULL for an empty file) */
    size_t size;
    const char *p, *end;        /* parse cursor */
    uint64_t line;              /* line of the cursor (1-based) */
    uint64_t row_line;          /* line where the last returned row started */
    uint8_t *want;              /* per table column: convert it? */
    int *colmap;                /* CSV: field index -> table column, -1 = ignored */
    size_t nfields;             /* CSV: fields in the header */
    size_t fcap;
    const char **fptr;          /* CSV: the current row's raw fields */
    size_t *flen;
    tsr_arena_t arena;          /* per row: unescaped strings, lists, maps */
};

/* Raw (untyped) field access for inference and the CSV reader: reads the next record into
 * r->fptr/r->flen, *n fields. Returns 1, 0 at end, or TSR_ECORRUPT (unterminated quote). */
int tsr__csv_next_record(tsr_file_reader_t *r, size_t *n, tsr_error_t *err);
int tsr__csv_open(tsr_file_reader_t *r, tsr_error_t *err);
int tsr__csv_next(tsr_file_reader_t *r, tsr_value_t *row, tsr_error_t *err);
int tsr__jsonl_next(tsr_file_reader_t *r, tsr_value_t *row, tsr_error_t *err);

/* Next non-empty line of a JSON Lines file: [*s, *s + *n). Returns 1 or 0 at end. */
int tsr__jsonl_next_line(tsr_file_reader_t *r, const char **s, size_t *n);

/* Converts a JSON value to a value of type `type` (allocating lists/maps/strings in arena).
 * Returns 0 or TSR_EPARSE with a short reason in why. */
int tsr__json_to_value(json_t *j, tsr_type_t type, tsr_arena_t *arena, tsr_value_t *out,
                       const char **why);
/* Converts a CSV cell's text to a value of `type`. Empty text is null. */
int tsr__text_to_value(const char *s, size_t n, tsr_type_t type, tsr_arena_t *arena,
                       tsr_value_t *out);

/* Maps the file; sets r->map/size/p/end/line. */
int tsr__reader_map(tsr_file_reader_t *r, tsr_error_t *err);

#endif
