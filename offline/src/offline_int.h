/*
 * offline_int.h — what the offline engine's files share.
 *
 *   plan.c     config -> compiled plans: per source a program over its table (keys, ts,
 *              input slots, wheres); per GroupBy its features and derivations; per Join the
 *              left plan, parts and derivations
 *   extract.c  tables -> record stores, in parallel over part files, partitioned by key hash
 *   sweep.c    per partition: sort, group by key, slide the windows, encode results
 *   backfill.c orchestration, output assembly and writing, progress
 *
 * Records. Every extracted row becomes a rec_t: (hash of its key, ts, seq, payload). The
 * payload is the encoded key values followed by the encoded slot values (value.h codec) and
 * lives in an arena that never moves, so records can be sorted and concatenated freely.
 * seq orders rows as SPEC §3 does: (file ordinal << 40) | line, so ties break by row order
 * whatever the parallelism.
 */
#ifndef TSR_OFFLINE_INT_H
#define TSR_OFFLINE_INT_H

#include <pthread.h>
#include <stdint.h>
#include <string.h>

#include "tsr/agg.h"
#include "tsr/backfill.h"
#include "tsr/config.h"
#include "tsr/expr.h"
#include "tsr/mem.h"
#include "tsr/swag.h"
#include "tsr/table.h"
#include "tsr/tile.h"

/* Row order of (source, file, line): 4 bits of source, 20 of file ordinal, 40 of line. */
#define TSR_SEQ(src, file_ordinal, line)                                                       \
    (((uint64_t)(src) << 60) | ((uint64_t)(file_ordinal) << 40) | (uint64_t)(line))

typedef struct rec {
    uint64_t hash;          /* of the key bytes */
    int64_t ts;             /* event time; for queries the as-of time */
    uint64_t seq;           /* events: row order; queries: left row index */
    const uint8_t *p;       /* payload: key bytes, then slot values */
    uint32_t klen;          /* key bytes */
    uint32_t len;           /* whole payload */
    int64_t day;            /* partition day (entity snapshots; queries: snapshot day) */
} rec_t;

/* An append-only set of records with their payload arena. */
/* Records are appended into fixed blocks (no reallocation, no copy while extracting);
 * tsr__store_finish lays them out in one array v for sorting. */
typedef struct store_seg {
    rec_t *recs;
    size_t n, cap;
} store_seg_t;

typedef struct store {
    store_seg_t *segs;          /* blocks in append order; the last one may have room */
    size_t nsegs, capsegs;
    size_t n;                   /* records in all blocks (or in v after finish) */
    rec_t *v;                   /* after tsr__store_finish */
    tsr_arena_t arena;          /* payloads of records pushed here */
    tsr_arena_t **taken;        /* arenas of stores merged in (owned) */
    size_t ntaken;
} store_t;

void tsr__store_init(store_t *s);
void tsr__store_free(store_t *s);
/* Appends a record whose payload (len bytes) is copied from p. */
rec_t *tsr__store_push(store_t *s, const void *p, size_t len);
/* Moves every record of src to the end of dst (blocks and arenas handed over, not copied). */
void tsr__store_take(store_t *dst, store_t *src);
/* Lays the records out in s->v (idempotent). */
void tsr__store_finish(store_t *s);

/* ---- plans */

typedef struct src_plan {
    const tsr_conf_source_t *src;
    const char *table_name;
    tsr_table_t *table;
    tsr_program_t *prog;
    size_t nkeys;
    int *key_out;           /* program output per key column */
    int ts_out;             /* program output of timeColumn, -1 when none */
    size_t nslots;
    int *slot_out;          /* program output per slot, -1 when this source lacks it */
    size_t nwhere;
    int *where_out;
    uint8_t *want;          /* table columns the program reads */
    int entity;             /* snapshot table: rows carry their partition day */
} src_plan_t;

typedef struct feat {
    tsr_agg_t *kernel;      /* owned */
    int64_t window_ms;      /* 0 = lifetime */
    int in_slot;            /* slot of the input column */
    int bucket_slot;        /* -1 when unbucketed */
} feat_t;

/* An output column computed from a base row: a copy of base[base_index], or output
 * prog_out of the derivation program. */
typedef struct out_col {
    const char *name;
    tsr_type_t type;
    int base_index;         /* -1 when derived */
    int prog_out;
} out_col_t;

typedef struct deriv_plan {
    size_t nbase;           /* base row: the schema the program reads */
    const char **base_names;
    tsr_type_t *base_types;
    tsr_program_t *prog;    /* NULL when every output is a copy */
    size_t nout;
    out_col_t *out;
} deriv_plan_t;

typedef struct gb_plan {
    const tsr_conf_group_by_t *g;
    int entity;             /* entities source(s): snapshot semantics */
    int snapshot;           /* accuracy SNAPSHOT */
    int passthrough;        /* entity GroupBy without aggregations: serve columns as-is */
    size_t nkeys;
    size_t nslots;
    const char **slot_names;
    size_t nfeat;           /* base features */
    feat_t *feats;
    const char **feat_names;
    tsr_type_t *feat_types;
    size_t nsrc;
    src_plan_t *srcs;
    deriv_plan_t deriv;     /* over (keys, base features) -> features */
    int64_t max_window_ms;  /* 0 when some window is lifetime */
} gb_plan_t;

typedef struct part_plan {
    gb_plan_t gb;
    const tsr_conf_join_part_t *jp;
    int *left_key_out;      /* left program output per GroupBy key */
} part_plan_t;

typedef struct join_plan {
    const tsr_conf_join_t *j;
    src_plan_t left;        /* slots = the left's output columns */
    int left_entity;
    size_t nleft_cols;
    const char **left_names;
    tsr_type_t *left_types;
    size_t nparts;
    part_plan_t *parts;
    size_t next;            /* contextual columns copied from the left */
    const char **ext_names;
    int *ext_left_col;      /* left column per contextual column, -1 -> null */
    deriv_plan_t deriv;     /* over (left, ts, ds, part features, contextual) -> features */
} join_plan_t;

int tsr__gb_plan_build(gb_plan_t *p, const tsr_conf_group_by_t *g, const char *warehouse,
                       int64_t day_lo, int64_t day_hi, tsr_error_t *err);
void tsr__gb_plan_free(gb_plan_t *p);
int tsr__join_plan_build(join_plan_t *p, const tsr_conf_join_t *j, const char *warehouse,
                         int64_t day_lo, int64_t day_hi, tsr_error_t *err);
void tsr__join_plan_free(join_plan_t *p);
void tsr__deriv_free(deriv_plan_t *d);
/* Every partition in [lo, hi] of each source table (within its start/endPartition) exists;
 * else TSR_ENOTFOUND naming the missing folder. */
int tsr__check_gb_partitions(const gb_plan_t *gb, int64_t lo, int64_t hi, tsr_error_t *err);
/* Applies a derivation plan: base[0 .. d->nbase) -> out[0 .. d->nout); tmp holds the program's
 * outputs; vm is NULL when d->prog is. NaN and +-Inf derived doubles become null. */
void tsr__derive(const deriv_plan_t *d, tsr_vm_t *vm, const tsr_value_t *base, tsr_value_t *tmp,
                 tsr_value_t *out);

/* Tile columns of a GroupBy plan with aggregations: one per (aggregation, bucket), windows in
 * SPEC order, so the columns' windows in order are the plan's base features. Caller frees
 * wins[c] for each column, wins and cols. Returns the number of columns. */
size_t tsr__tile_cols_build(const gb_plan_t *plan, tsr_tile_col_t **cols, int64_t ***wins);

/* ---- extraction */

/* A row's time from its timeColumn value: a long, or a finite double in range. */
static inline int64_t tsr__ts_of(const tsr_value_t *v, int *ok) {
    *ok = 1;
    if (v->kind == TSR_LONG) return v->u.l;
    if (v->kind == TSR_DOUBLE && v->u.d == v->u.d && v->u.d > -9.2e18 && v->u.d < 9.2e18)
        return (int64_t)v->u.d;
    *ok = 0;
    return 0;
}

typedef struct xstats {
    uint64_t rows_read, rows_filtered, bad_rows;
} xstats_t;

typedef struct xctx {
    int nthreads;
    size_t nparts;              /* hash partitions */
    size_t plo, phi;            /* this pass keeps partitions [plo, phi) (0, nparts: all) */
    uint64_t max_bad_rows;
    FILE *progress;
    const char *what;           /* for progress lines */
    const int *stop;            /* tsr_backfill_opts_t.stop */
    pthread_mutex_t mu;
    xstats_t st;
    tsr_error_t err;            /* first fatal error */
    int failed;
} xctx_t;

/* Reads every file of every source of plan src[0..nsrc) into parts[0..nparts) by key hash.
 * Rows without a key (a null key column) or time (a null ts, when need_ts) are filtered.
 * Payload = key values then the nslots slot values. */
int tsr__extract(xctx_t *x, src_plan_t *src, size_t nsrc, int need_ts, store_t *parts,
                 tsr_error_t *err);

/* ---- sweeps */

/* Results of one GroupBy part for the left rows: res[i] points at the encoded base features
 * (nfeat values) of left row i, or is NULL when they are all null. */
typedef struct results {
    const uint8_t **res;
    uint32_t *len;
    tsr_arena_t *arenas;        /* one per thread */
    int narenas;
} results_t;

/* Computes a part's features for the queries of partitions [plo, phi) (partitioned like the
 * events). */
int tsr__sweep_part(const gb_plan_t *gb, store_t *events, store_t *queries, size_t plo,
                    size_t phi, int nthreads, results_t *out, tsr_error_t *err);

/* How many passes over a source a memory budget needs: the records of one pass (~3x the
 * bytes of the part files, measured on CSV and JSON Lines inputs) must fit in budget bytes
 * (0 = 2 GiB). */
size_t tsr__passes(const src_plan_t *srcs, size_t nsrc, uint64_t budget);

/* Sorts records by (hash, key bytes, day, ts, seq): a counting sort on the hash's top bits
 * into TSR__SORT_BUCKETS buckets, then each bucket (usually one key) on its own. */
#define TSR__SORT_BITS 16
#define TSR__SORT_BUCKETS ((size_t)1 << TSR__SORT_BITS)
#define TSR__SORT_BUCKET(hash) ((size_t)((hash) >> (64 - TSR__SORT_BITS)))
#define TSR__SORT_SMALL 4096
void tsr__sort_recs(rec_t *v, size_t n);
void tsr__sort_buckets(rec_t *v, const size_t *count);
/* Lays out and sorts a store's records in s->v in one scatter from its blocks (no
 * intermediate copy). */
void tsr__store_sort(store_t *s);
/* Orders records by key: hash first, then the key bytes (so hash collisions stay apart).
 * Inline: the sweeps call it once or twice per record. */
static inline int tsr__key_cmp(const rec_t *a, const rec_t *b) {
    if (a->hash != b->hash) return a->hash < b->hash ? -1 : 1;
    if (a->klen != b->klen) return a->klen < b->klen ? -1 : 1;
    if (a->p == b->p) return 0;
    const uint8_t *x = a->p, *y = b->p;
    uint32_t n = a->klen;
    for (; n >= 8; n -= 8, x += 8, y += 8) {
        uint64_t u, v;
        memcpy(&u, x, 8);
        memcpy(&v, y, 8);
        if (u != v) return memcmp(x, y, 8);
    }
    for (; n; n--, x++, y++)
        if (*x != *y) return *x < *y ? -1 : 1;
    return 0;
}

#endif
