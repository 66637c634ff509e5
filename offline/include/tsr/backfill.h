/*
 * backfill.h — the offline engine (SPEC §5): point-in-time-correct backfills of GroupBys and
 * Joins from warehouse tables, computed with the one aggregation kernel the online path uses.
 *
 * A run reads the sources of every GroupBy involved and the Join's left table, evaluates each
 * source query with the compiled expression engine, partitions rows by a hash of their key,
 * sorts each partition by (key, ts, row order) and sweeps it once: sliding-window aggregators
 * (swag.h) over the kernel give every window's value at every query time, with no per-key
 * quadratic work. Results are assembled in left-row order and written one output partition at
 * a time, atomically (table.h). Both cores are used by default.
 */
#ifndef TSR_BACKFILL_H
#define TSR_BACKFILL_H

#include <stdint.h>
#include <stdio.h>

#include "tsr/config.h"
#include "tsr/error.h"
#include "tsr/table.h"

typedef struct tsr_backfill_opts {
    const char *warehouse;      /* root; NULL = "./warehouse" */
    int64_t start_day;          /* first output ds (day number, time.h) */
    int64_t end_day;            /* last output ds, inclusive */
    tsr_file_format_t format;   /* output format */
    int parallelism;            /* threads; 0 = the number of online cores */
    uint64_t memory_bytes;      /* budget for one pass's input records; 0 = 2 GiB. Larger
                                   inputs are processed in key-partition ranges, one pass over
                                   the sources per range. */
    uint64_t max_bad_rows;      /* bad input rows tolerated (counted and reported) */
    FILE *progress;             /* progress and summary lines; NULL = quiet */
    const int *stop;            /* NULL, or a flag that, once set (atomically, non-zero), ends
                                   the run with TSR_EUNAVAIL at the next input file or output
                                   day (a worker draining); partitions published stay */
    int shared_output;          /* other processes may be writing other ds partitions of the
                                   same output table (cluster backfill shards): leftover
                                   .tmp-* folders are removed only when over an hour old */
} tsr_backfill_opts_t;

typedef struct tsr_backfill_stats {
    uint64_t rows_read;         /* input rows read, all tables */
    uint64_t rows_filtered;     /* dropped by wheres, null keys or null timestamps */
    uint64_t bad_rows;          /* malformed rows skipped (<= max_bad_rows) */
    uint64_t events;            /* aggregation inputs kept */
    uint64_t left_rows;         /* Join: left rows; GroupBy: keys x days considered */
    uint64_t rows_written;
    uint64_t partitions_written;
    double seconds;
    char output_dir[1024];      /* <warehouse>/<outputNamespace>/<cleanName> */
} tsr_backfill_stats_t;

/* Runs a backfill of a validated GroupBy or Join config for ds in [start_day, end_day].
 * Errors (with err naming what and where): TSR_ENOTFOUND (a table or a needed partition is
 * missing: the path is named), TSR_ECORRUPT (a bad row and more than max_bad_rows of them:
 * file:line and column), TSR_EUNSUPPORTED (a config feature the offline engine does not
 * run yet), TSR_EIO. A failed run leaves no partial output partition behind. */
int tsr_backfill_run(const tsr_config_t *conf, const tsr_backfill_opts_t *opts,
                     tsr_backfill_stats_t *stats, tsr_error_t *err);

/* Checks, without reading rows, what tsr_backfill_run checks first: the tables exist and every
 * input partition the run of [start_day, end_day] needs is there (TSR_ENOTFOUND naming the
 * missing one), a StagingQuery is TSR_EUNSUPPORTED. output_dir (may be NULL) gets the output
 * table folder <warehouse>/<outputNamespace>/<cleanName> (cap bytes). */
int tsr_backfill_check(const tsr_config_t *conf, const tsr_backfill_opts_t *opts, char *output_dir,
                       size_t cap, tsr_error_t *err);

#endif
