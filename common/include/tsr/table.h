/*
 * table.h — reading warehouse tables (SPEC §3).
 *
 * A table `ns.name` is the folder <warehouse>/ns/name/ holding Hive-style partitions
 * `ds=YYYY-MM-DD/` of part files: CSV with a header row (RFC 4180 quoting) or JSON Lines
 * (`.jsonl`, `.json`, `.ndjson`). Files whose names start with `_` or `.` (e.g. _SUCCESS) are
 * skipped; another suffix is an error naming the file.
 *
 * Types come from <table>/_schema.json when present — a JSON object {"column": "type", ...} in
 * column order, types as tsr_type_parse reads them — else they are inferred from every part file
 * of the table (all partitions, so a column's type never depends on the date range asked for):
 * long if every non-empty value is an integer literal, double if every value is numeric,
 * boolean if every value is true/false, else string; JSON arrays and objects give list<T> and
 * map<string,T>. A column with no non-null value at all is string. Inference reads every file
 * once: large tables should ship a _schema.json.
 *
 * Row order (SPEC §3): partition ascending, then part-file name (byte order), then line. The
 * table lists its files in that order and numbers them; a reader reads one file, so callers can
 * read files in parallel and still rebuild the order from (file ordinal, line).
 *
 * Readers stream: one row at a time, values borrowed from the reader until its next call.
 * CSV files are memory-mapped and parsed in place (no copy for unquoted strings).
 */
#ifndef TSR_TABLE_H
#define TSR_TABLE_H

#include <stddef.h>
#include <stdint.h>

#include "tsr/error.h"
#include "tsr/expr.h"
#include "tsr/value.h"

typedef enum tsr_file_format {
    TSR_FORMAT_CSV = 0,
    TSR_FORMAT_JSONL = 1,
} tsr_file_format_t;

typedef struct tsr_table_file {
    char *path;                 /* owned by the table */
    int64_t day;                /* the partition's day number (time.h) */
    tsr_file_format_t format;
    uint32_t ordinal;           /* position in row order among the table's files */
    uint64_t size;              /* bytes */
} tsr_table_file_t;

typedef struct tsr_table {
    char *name;                 /* "ns.name" */
    char *dir;                  /* <warehouse>/ns/name */
    int has_schema_file;        /* 1 when types came from _schema.json */
    size_t ncols;
    char **col_names;
    tsr_type_t *col_types;
    size_t nparts;
    int64_t *part_days;         /* ascending; only partitions with day in [lo, hi] */
    size_t nfiles;
    tsr_table_file_t *files;    /* row order */
} tsr_table_t;

/* Opens table `name` ("ns.table", or a path relative to the warehouse) under `warehouse`,
 * listing the partitions with day in [day_lo, day_hi] (INT64_MIN / INT64_MAX for all).
 * Errors: TSR_ENOTFOUND naming the folder when the table does not exist; TSR_ECONFIG for a
 * bad _schema.json (naming file and column); TSR_EUNSUPPORTED for a part file of unknown
 * format (naming it); TSR_ECORRUPT when inference meets a malformed file.
 * Caller frees with tsr_table_free. */
int tsr_table_open(const char *warehouse, const char *name, int64_t day_lo, int64_t day_hi,
                   tsr_table_t **out, tsr_error_t *err);
void tsr_table_free(tsr_table_t *t);

/* A borrowed view of the table's columns as an expression schema (valid while t lives). */
tsr_schema_t tsr_table_schema(const tsr_table_t *t);
/* Column index by name, or -1. */
int tsr_table_column(const tsr_table_t *t, const char *name);
/* 1 when the table has a partition for day (among those listed). */
int tsr_table_has_partition(const tsr_table_t *t, int64_t day);

typedef struct tsr_file_reader tsr_file_reader_t;

/* Opens file t->files[i]. want[c] != 0 selects the columns to convert (NULL: all); the other
 * columns of each row are null. Caller closes with tsr_file_reader_close. */
int tsr_file_reader_open(const tsr_table_t *t, size_t i, const uint8_t *want,
                         tsr_file_reader_t **out, tsr_error_t *err);

/* Reads the next row into row[0 .. t->ncols). Returns 1 for a row (values borrowed until the
 * next call), 0 at the end, or TSR_ECORRUPT for a bad row: err then names file:line and the
 * column, the reader has skipped that row, and the caller may call again to go on (that is how
 * --max-bad-rows counts). TSR_EIO for a read failure (not resumable). */
int tsr_file_reader_next(tsr_file_reader_t *r, tsr_value_t *row, tsr_error_t *err);

/* 1-based line of the row last returned (the line where it starts; the CSV header is line 1). */
uint64_t tsr_file_reader_line(const tsr_file_reader_t *r);
void tsr_file_reader_close(tsr_file_reader_t *r);

/* ---- Writing output partitions atomically (SPEC §3, §5).
 *
 * A partition is written into a hidden temporary folder beside its final place
 * (<table_dir>/.tmp-ds=YYYY-MM-DD-<pid>-<n>/part-00000.<ext>), flushed (not fsync'ed), then swapped
 * into place with one renameat2(RENAME_EXCHANGE) (or a plain rename when there was no old
 * partition), and the old contents removed. Readers therefore see the old partition or the new
 * one, never a partial one, and a crash leaves at most a hidden .tmp-* folder that readers
 * ignore and tsr_out_cleanup removes. JSON Lines rows are objects in column order; CSV has a
 * header row, RFC 4180 quoting, empty cells for null and JSON text for lists and maps. */
typedef struct tsr_out_partition tsr_out_partition_t;

/* Columns are copied. Creates table_dir if needed. Caller ends with commit or abort. */
int tsr_out_partition_begin(const char *table_dir, int64_t day, tsr_file_format_t format,
                            const char *const *columns, size_t ncols, tsr_out_partition_t **out,
                            tsr_error_t *err);
/* Appends one row of ncols values. */
int tsr_out_partition_write(tsr_out_partition_t *p, const tsr_value_t *row, tsr_error_t *err);
uint64_t tsr_out_partition_rows(const tsr_out_partition_t *p);
/* Publishes the partition atomically and frees p (also on failure). */
int tsr_out_partition_commit(tsr_out_partition_t *p, tsr_error_t *err);
/* Removes the temporary folder and frees p. */
void tsr_out_partition_abort(tsr_out_partition_t *p);
/* Removes leftover .tmp-* folders of crashed runs under table_dir. Returns how many. */
int tsr_out_cleanup(const char *table_dir);
/* The same for .tmp-* folders last modified at least min_age_s seconds ago (a younger one may
 * be another process's write in progress: cluster backfill shards share an output table). */
int tsr_out_cleanup_older(const char *table_dir, int64_t min_age_s);

/* Parsers shared with other readers (Kafka messages use the same text -> value rules).
 * Each returns 0, or TSR_EPARSE when the text is not a value of that type. */
int tsr_parse_long(const char *s, size_t n, int64_t *out);
int tsr_parse_double(const char *s, size_t n, double *out);
int tsr_parse_bool(const char *s, size_t n, int *out);

#endif
