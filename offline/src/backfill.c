/*
 * backfill.c — the offline engine's driver: plans, extraction, sweeps, output (backfill.h).
 *
 * Join:    left rows (row order) -> per part: queries keyed by the part's key, as-of times by
 *          the SPEC §5 matrix -> the GroupBy's events partitioned by key hash -> sweep ->
 *          encoded base features per left row. Parts run one after another, so only one
 *          GroupBy's events are in memory at a time. Then, per output ds, every left row is
 *          assembled (left columns, ts, ds, part features after GroupBy derivations,
 *          contextual columns), the Join derivations run, and the partition is written
 *          atomically.
 * GroupBy: events -> one query per (key, ds) at the end of ds -> sweep -> rows with any
 *          non-null feature, ordered by (ds, key bytes) whatever the parallelism.
 *
 * As-of matrix (SPEC §5), q = the left row's ts, d = its ds (day numbers):
 *   events left,   events GroupBy TEMPORAL   -> window rule at q
 *   events left,   SNAPSHOT (events/entity)  -> GroupBy ds = day(q) - 1: events before
 *                                               midnight of day(q); snapshot partition day(q)-1
 *   entities left, any GroupBy               -> end of d: events before (d+1)*DAY; snapshot d
 */
#include "offline_int.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "tsr/batch.h"
#include "tsr/time.h"

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static int default_threads(void) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : n > 64 ? 64 : (int)n;
}

static void results_init(results_t *r, size_t n, int nthreads) {
    r->res = tsr_calloc(n ? n : 1, sizeof(uint8_t *));
    r->len = tsr_calloc(n ? n : 1, sizeof(uint32_t));
    r->narenas = nthreads;
    r->arenas = tsr_malloc((size_t)nthreads * sizeof(tsr_arena_t));
    for (int i = 0; i < nthreads; i++) tsr_arena_init_bulk(&r->arenas[i]);
}

static void results_free(results_t *r) {
    free(r->res);
    free(r->len);
    for (int i = 0; i < r->narenas; i++) tsr_arena_free(&r->arenas[i]);
    free(r->arenas);
    memset(r, 0, sizeof(*r));
}

/* Every partition in [lo, hi] of a source table must exist. */
static int check_partitions(const src_plan_t *s, int64_t lo, int64_t hi, tsr_error_t *err) {
    for (int64_t d = lo; d <= hi; d++)
        if (!tsr_table_has_partition(s->table, d)) {
            char ds[11];
            tsr_ds_format(d, ds);
            return tsr_error_set(err, TSR_ENOTFOUND,
                                 "%s: table %s: partition %s/ds=%s is missing", s->src->path,
                                 s->table_name, s->table->dir, ds);
        }
    return 0;
}

int tsr__check_gb_partitions(const gb_plan_t *gb, int64_t lo, int64_t hi, tsr_error_t *err) {
    for (size_t i = 0; i < gb->nsrc; i++) {
        int64_t l = lo, h = hi;
        int64_t d;
        const tsr_conf_query_t *q = &gb->srcs[i].src->query;
        if (q->start_partition && tsr_ds_parse(q->start_partition, &d) == 0 && d > l) l = d;
        if (q->end_partition && tsr_ds_parse(q->end_partition, &d) == 0 && d < h) h = d;
        int rc = check_partitions(&gb->srcs[i], l, h, err);
        if (rc) {
            tsr_error_prefix(err, "GroupBy %s", gb->g->meta.name);
            return rc;
        }
    }
    return 0;
}

typedef struct engine {
    const tsr_backfill_opts_t *o;
    tsr_backfill_stats_t *st;
    int nthreads;
    size_t nparts;
    double t0;
} engine_t;

static void progress(engine_t *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void progress(engine_t *e, const char *fmt, ...) {
    if (!e->o->progress) return;
    va_list ap;
    va_start(ap, fmt);
    fprintf(e->o->progress, "[%7.2fs] ", now_s() - e->t0);
    vfprintf(e->o->progress, fmt, ap);
    fputc('\n', e->o->progress);
    va_end(ap);
}

static void xctx_init(engine_t *e, xctx_t *x, const char *what, size_t nparts) {
    memset(x, 0, sizeof(*x));
    x->nthreads = e->nthreads;
    x->nparts = nparts;
    x->plo = 0;
    x->phi = nparts;
    x->max_bad_rows = e->o->max_bad_rows;
    x->progress = e->o->progress;
    x->what = what;
    x->stop = e->o->stop;
    pthread_mutex_init(&x->mu, NULL);
}

static void xctx_done(engine_t *e, xctx_t *x) {
    e->st->rows_read += x->st.rows_read;
    e->st->rows_filtered += x->st.rows_filtered;
    e->st->bad_rows += x->st.bad_rows;
    pthread_mutex_destroy(&x->mu);
}

static store_t *stores_new(size_t n) {
    store_t *s = tsr_malloc(n * sizeof(store_t));
    for (size_t i = 0; i < n; i++) tsr__store_init(&s[i]);
    return s;
}

static void stores_free(store_t *s, size_t n) {
    for (size_t i = 0; i < n; i++) tsr__store_free(&s[i]);
    free(s);
}

static int rec_seq_cmp(const void *pa, const void *pb) {
    const rec_t *a = pa, *b = pb;
    return a->seq < b->seq ? -1 : a->seq > b->seq;
}

/* Decodes n values from p. */
static int decode_n(const uint8_t *p, size_t len, size_t n, tsr_value_t *out, tsr_arena_t *a) {
    tsr_reader_t rd;
    tsr_reader_init(&rd, p, len);
    for (size_t i = 0; i < n; i++)
        if (tsr_value_decode(&rd, a, &out[i])) return TSR_ECORRUPT;
    return 0;
}

static char *output_dir(const tsr_backfill_opts_t *o, const tsr_conf_metadata_t *m) {
    char clean[512];
    tsr_conf_clean_name(m->name, clean, sizeof clean);
    const char *ns = m->output_namespace && m->output_namespace[0] ? m->output_namespace : "default";
    size_t n = strlen(o->warehouse) + strlen(ns) + strlen(clean) + 3;
    char *p = tsr_malloc(n);
    snprintf(p, n, "%s/%s/%s", o->warehouse, ns, clean);
    return p;
}

static int stopped(const tsr_backfill_opts_t *o) { return o->stop && __atomic_load_n(o->stop, __ATOMIC_ACQUIRE); }

/* Leftover .tmp-* folders of crashed runs go; with a shared output (cluster shards writing
 * other days of the same table at this moment) only those over an hour old, since a younger
 * one may be another process's partition being written. */
static void out_cleanup(const tsr_backfill_opts_t *o, const char *odir) {
    if (o->shared_output) tsr_out_cleanup_older(odir, 3600);
    else tsr_out_cleanup(odir);
}

/* Writes the Join's output partitions, one ds per task, on every thread: each thread has its
 * own VMs, buffers and arena; partitions are independent files. */
typedef struct join_writer {
    engine_t *e;
    join_plan_t *jp;
    store_t *left;
    results_t *res;
    const char *odir;
    const char **names;
    size_t ncols;
    int64_t lo;
    const size_t *day_start;    /* left rows of day lo + d: [day_start[d], day_start[d + 1]) */
    size_t ndays, next;
    pthread_mutex_t mu;
    int failed;
    tsr_error_t err;
} join_writer_t;

static int write_join_day(join_writer_t *w, size_t d, tsr_value_t *lv, tsr_value_t *base,
                          tsr_value_t *row, tsr_vm_t *jvm, tsr_value_t *jtmp, tsr_vm_t **gvm,
                          tsr_value_t **gbase, tsr_value_t **gtmp, tsr_arena_t *arena,
                          tsr_error_t *err) {
    const join_plan_t *jp = w->jp;
    const tsr_backfill_opts_t *o = w->e->o;
    int64_t day = w->lo + (int64_t)d;
    tsr_out_partition_t *op;
    int rc = tsr_out_partition_begin(w->odir, day, o->format, w->names, w->ncols, &op, err);
    if (rc) return rc;
    char ds[11];
    tsr_ds_format(day, ds);
    for (size_t i = w->day_start[d]; i < w->day_start[d + 1] && rc == 0; i++) {
        const rec_t *lr = &w->left->v[i];
        tsr_arena_reset(arena);
        if ((rc = decode_n(lr->p, lr->len, jp->nleft_cols, lv, arena)) != 0) {
            tsr_error_set(err, rc, "corrupt left record");
            break;
        }
        size_t b = 0;
        for (size_t c = 0; c < jp->nleft_cols; c++) base[b++] = lv[c];
        base[b++] = lr->ts == INT64_MIN ? tsr_value_null() : tsr_value_long(lr->ts);
        base[b++] = tsr_value_string(ds, 10);
        for (size_t p = 0; p < jp->nparts && rc == 0; p++) {
            const part_plan_t *pp = &jp->parts[p];
            const deriv_plan_t *dp = &pp->gb.deriv;
            tsr_value_t *gb = gbase[p];
            for (size_t k = 0; k < pp->gb.nkeys; k++) gb[k] = lv[pp->left_key_out[k]];
            if (w->res[p].res[i]) {
                if ((rc = decode_n(w->res[p].res[i], w->res[p].len[i], pp->gb.nfeat,
                                   gb + pp->gb.nkeys, arena)) != 0) {
                    tsr_error_set(err, rc, "corrupt result record");
                    break;
                }
            } else {
                for (size_t f = 0; f < pp->gb.nfeat; f++) gb[pp->gb.nkeys + f] = tsr_value_null();
            }
            tsr__derive(dp, gvm[p], gb, gtmp[p], base + b);
            b += dp->nout;
        }
        if (rc) break;
        for (size_t c = 0; c < jp->next; c++)
            base[b++] = jp->ext_left_col[c] >= 0 ? lv[jp->ext_left_col[c]] : tsr_value_null();
        for (size_t c = 0; c < jp->nleft_cols + 2; c++) row[c] = base[c];
        tsr__derive(&jp->deriv, jvm, base, jtmp, row + jp->nleft_cols + 2);
        rc = tsr_out_partition_write(op, row, err);
    }
    if (rc) {
        tsr_out_partition_abort(op);
        return rc;
    }
    uint64_t nrows = tsr_out_partition_rows(op);
    if ((rc = tsr_out_partition_commit(op, err)) != 0) return rc;
    pthread_mutex_lock(&w->mu);
    w->e->st->rows_written += nrows;
    w->e->st->partitions_written++;
    progress(w->e, "wrote %s/ds=%s: %llu rows", w->odir, ds, (unsigned long long)nrows);
    pthread_mutex_unlock(&w->mu);
    return 0;
}

static void *join_writer_main(void *arg) {
    join_writer_t *w = arg;
    const join_plan_t *jp = w->jp;
    tsr_value_t *lv = tsr_malloc((jp->nleft_cols ? jp->nleft_cols : 1) * sizeof(tsr_value_t));
    tsr_value_t *row = tsr_malloc(w->ncols * sizeof(tsr_value_t));
    tsr_value_t *base = tsr_malloc((jp->deriv.nbase ? jp->deriv.nbase : 1) * sizeof(tsr_value_t));
    tsr_vm_t *jvm = jp->deriv.prog ? tsr_vm_new(jp->deriv.prog) : NULL;
    size_t maxo = jp->deriv.prog ? tsr_program_noutputs(jp->deriv.prog) : 1;
    tsr_value_t *jtmp = tsr_malloc((maxo ? maxo : 1) * sizeof(tsr_value_t));
    size_t np = jp->nparts ? jp->nparts : 1;
    tsr_vm_t **gvm = tsr_calloc(np, sizeof(tsr_vm_t *));
    tsr_value_t **gbase = tsr_calloc(np, sizeof(tsr_value_t *));
    tsr_value_t **gtmp = tsr_calloc(np, sizeof(tsr_value_t *));
    for (size_t p = 0; p < jp->nparts; p++) {
        const deriv_plan_t *dp = &jp->parts[p].gb.deriv;
        if (dp->prog) gvm[p] = tsr_vm_new(dp->prog);
        gbase[p] = tsr_malloc((dp->nbase ? dp->nbase : 1) * sizeof(tsr_value_t));
        size_t no = dp->prog ? tsr_program_noutputs(dp->prog) : 1;
        gtmp[p] = tsr_malloc((no ? no : 1) * sizeof(tsr_value_t));
    }
    tsr_arena_t arena;
    tsr_arena_init(&arena, 1 << 16);
    tsr_error_t err;
    tsr_error_clear(&err);
    for (;;) {
        pthread_mutex_lock(&w->mu);
        if (stopped(w->e->o) && !w->failed) {
            w->failed = 1;
            tsr_error_set(&w->err, TSR_EUNAVAIL, "backfill stopped (shutting down)");
        }
        size_t d = w->next < w->ndays && !w->failed ? w->next++ : (size_t)-1;
        pthread_mutex_unlock(&w->mu);
        if (d == (size_t)-1) break;
        if (write_join_day(w, d, lv, base, row, jvm, jtmp, gvm, gbase, gtmp, &arena, &err)) {
            pthread_mutex_lock(&w->mu);
            if (!w->failed) {
                w->failed = 1;
                w->err = err;
            }
            pthread_mutex_unlock(&w->mu);
        }
    }
    for (size_t p = 0; p < jp->nparts; p++) {
        tsr_vm_free(gvm[p]);
        free(gbase[p]);
        free(gtmp[p]);
    }
    free(gvm);
    free(gbase);
    free(gtmp);
    tsr_vm_free(jvm);
    free(jtmp);
    free(base);
    free(row);
    free(lv);
    tsr_arena_free(&arena);
    return NULL;
}

/* ---------------------------------------------------------------- Join */

static int run_join(engine_t *e, const tsr_config_t *conf, tsr_error_t *err) {
    const tsr_backfill_opts_t *o = e->o;
    const tsr_conf_join_t *j = conf->join;
    join_plan_t jp;
    int rc = tsr__join_plan_build(&jp, j, o->warehouse, o->start_day, o->end_day, err);
    if (rc) return rc;
    store_t *left = NULL;
    results_t *res = tsr_calloc(jp.nparts ? jp.nparts : 1, sizeof(results_t));
    char *odir = NULL;
    tsr_arena_t arena;
    tsr_arena_init(&arena, 1 << 16);

    /* the left query's startPartition / endPartition narrow the days written */
    int64_t lo = o->start_day, hi = o->end_day, pd;
    if (j->left.query.start_partition && tsr_ds_parse(j->left.query.start_partition, &pd) == 0 && pd > lo) lo = pd;
    if (j->left.query.end_partition && tsr_ds_parse(j->left.query.end_partition, &pd) == 0 && pd < hi) hi = pd;
    if (lo > hi) {
        char a[11], b[11];
        tsr_ds_format(o->start_day, a);
        tsr_ds_format(o->end_day, b);
        rc = tsr_error_set(err, TSR_EINVAL,
                           "nothing to backfill: the left query's startPartition/endPartition "
                           "(%s..%s) leave no day of %s..%s",
                           j->left.query.start_partition ? j->left.query.start_partition : "",
                           j->left.query.end_partition ? j->left.query.end_partition : "", a, b);
        goto out;
    }
    if ((rc = check_partitions(&jp.left, lo, hi, err)) != 0) goto out;
    for (size_t p = 0; p < jp.nparts; p++) {
        const gb_plan_t *gb = &jp.parts[p].gb;
        int64_t glo = jp.left_entity || gb->snapshot || gb->entity ? lo - 1 : lo;
        if ((rc = tsr__check_gb_partitions(gb, glo, hi, err)) != 0) goto out;
    }

    /* 1. left rows, in row order */
    xctx_t x;
    xctx_init(e, &x, j->left.table ? j->left.table : "left", 1);
    left = stores_new(1);
    rc = tsr__extract(&x, &jp.left, 1, 0, left, err);
    xctx_done(e, &x);
    if (rc) goto out;
    tsr__store_finish(left);
    if (left->n) qsort(left->v, left->n, sizeof(rec_t), rec_seq_cmp);
    size_t nleft = left->n;
    e->st->left_rows = nleft;
    progress(e, "left: %zu rows from %s", nleft, jp.left.table_name);

    /* 2. each part: queries, events, sweep */
    tsr_value_t *lv = tsr_malloc((jp.nleft_cols ? jp.nleft_cols : 1) * sizeof(tsr_value_t));
    tsr_buf_t kb;
    tsr_buf_init(&kb);
    for (size_t p = 0; p < jp.nparts && rc == 0; p++) {
        part_plan_t *pp = &jp.parts[p];
        gb_plan_t *gb = &pp->gb;
        /* memory: the GroupBy's records are built key-partition range by range, one pass over
         * its sources per range, so that one pass fits the --memory-mb budget */
        size_t npasses = tsr__passes(gb->srcs, gb->nsrc, o->memory_bytes);
        size_t nparts = e->nparts;
        if (nparts < 2 * npasses) nparts = 2 * npasses;
        if (npasses > nparts) npasses = nparts;
        if (npasses > 1)
            progress(e, "part %zu/%zu %s: %zu passes to stay within the memory budget", p + 1,
                     jp.nparts, gb->g->meta.name, npasses);
        store_t *qs = stores_new(nparts);
        for (size_t i = 0; i < nleft; i++) {
            const rec_t *lr = &left->v[i];
            tsr_arena_reset(&arena);
            if ((rc = decode_n(lr->p, lr->len, jp.nleft_cols, lv, &arena)) != 0) break;
            tsr_buf_clear(&kb);
            int null_key = 0;
            for (size_t k = 0; k < gb->nkeys && !null_key; k++) {
                const tsr_value_t *kv = &lv[pp->left_key_out[k]];
                if (kv->kind == TSR_NULL) null_key = 1;
                else tsr_value_encode(kv, &kb);
            }
            if (null_key) continue; /* null key: null features */
            int64_t asof, snap_day;
            if (jp.left_entity) {
                snap_day = lr->day;
                asof = (lr->day + 1) * TSR_MS_PER_DAY;
            } else {
                if (lr->ts == INT64_MIN) continue; /* no time: null features */
                if (gb->snapshot || gb->entity) {
                    snap_day = tsr_day_of_ms(lr->ts) - 1;
                    asof = (snap_day + 1) * TSR_MS_PER_DAY;
                } else {
                    snap_day = tsr_day_of_ms(lr->ts); /* unused: events are swept by time */
                    asof = lr->ts;
                }
            }
            uint64_t h = tsr_hash_bytes(kb.data, kb.len, 0x7e55e7a);
            rec_t *q = tsr__store_push(&qs[h % nparts], kb.data, kb.len);
            q->hash = h;
            q->ts = asof;
            q->seq = i;
            q->klen = (uint32_t)kb.len;
            q->day = snap_day;
        }
        if (rc) {
            tsr_error_set(err, rc, "corrupt left record");
            stores_free(qs, nparts);
            break;
        }
        results_init(&res[p], nleft, e->nthreads);
        for (size_t pass = 0; pass < npasses && rc == 0; pass++) {
            store_t *evs = stores_new(nparts);
            xctx_init(e, &x, gb->g->meta.name, nparts);
            x.plo = pass * nparts / npasses;
            x.phi = (pass + 1) * nparts / npasses;
            rc = tsr__extract(&x, gb->srcs, gb->nsrc, !gb->entity && !gb->passthrough, evs, err);
            xctx_done(e, &x);
            if (rc == 0) {
                size_t nev = 0;
                for (size_t i = x.plo; i < x.phi; i++) nev += evs[i].n;
                e->st->events += nev;
                progress(e, "part %zu/%zu %s: %zu input rows%s, sweeping", p + 1, jp.nparts,
                         gb->g->meta.name, nev, npasses > 1 ? " in this pass" : "");
                rc = tsr__sweep_part(gb, evs, qs, x.plo, x.phi, e->nthreads, &res[p], err);
            }
            stores_free(evs, nparts);
            /* this range's queries are done: release them now */
            for (size_t i = x.plo; i < x.phi; i++) {
                tsr__store_free(&qs[i]);
                tsr__store_init(&qs[i]);
            }
        }
        stores_free(qs, nparts);
    }
    tsr_buf_free(&kb);
    if (rc) {
        free(lv);
        goto out;
    }

    /* 3. assemble and write, one ds at a time */
    odir = output_dir(o, &j->meta);
    snprintf(e->st->output_dir, sizeof e->st->output_dir, "%s", odir);
    out_cleanup(o, odir);
    size_t ncols = jp.nleft_cols + 2 + jp.deriv.nout;
    const char **names = tsr_malloc(ncols * sizeof(char *));
    for (size_t c = 0; c < jp.nleft_cols; c++) names[c] = jp.left_names[c];
    names[jp.nleft_cols] = "ts";
    names[jp.nleft_cols + 1] = "ds";
    for (size_t f = 0; f < jp.deriv.nout; f++) names[jp.nleft_cols + 2 + f] = jp.deriv.out[f].name;
    /* day boundaries in the left rows (sorted by row order, so by day) */
    size_t ndays = (size_t)(hi - lo + 1);
    size_t *day_start = tsr_malloc((ndays + 1) * sizeof(size_t));
    {
        size_t i = 0;
        for (size_t d = 0; d <= ndays; d++) {
            while (i < nleft && left->v[i].day < lo + (int64_t)d) i++;
            day_start[d] = i;
        }
    }
    join_writer_t jw = {e, &jp, left, res, odir, names, ncols, lo, day_start, ndays, 0,
                        PTHREAD_MUTEX_INITIALIZER, 0, {0}};
    int nth = e->nthreads < 1 ? 1 : e->nthreads;
    if ((size_t)nth > ndays) nth = (int)ndays;
    pthread_t *tid = tsr_malloc((size_t)nth * sizeof(pthread_t));
    for (int t = 1; t < nth; t++) pthread_create(&tid[t], NULL, join_writer_main, &jw);
    join_writer_main(&jw);
    for (int t = 1; t < nth; t++) pthread_join(tid[t], NULL);
    free(tid);
    free(day_start);
    if (jw.failed) {
        if (err) *err = jw.err;
        rc = jw.err.code ? jw.err.code : TSR_EIO;
    }
    free(names);
    free(lv);
out:
    for (size_t p = 0; p < jp.nparts; p++)
        if (res[p].res) results_free(&res[p]);
    free(res);
    if (left) stores_free(left, 1);
    tsr_arena_free(&arena);
    free(odir);
    tsr__join_plan_free(&jp);
    return rc;
}

/* ---------------------------------------------------------------- GroupBy */

typedef struct out_ref {
    int64_t day;
    const uint8_t *key, *res;   /* copies in the run's arena */
    uint32_t klen, len;
} out_ref_t;

static int out_ref_cmp(const void *pa, const void *pb) {
    const out_ref_t *a = pa, *b = pb;
    if (a->day != b->day) return a->day < b->day ? -1 : 1;
    size_t n = a->klen < b->klen ? a->klen : b->klen;
    int c = memcmp(a->key, b->key, n);
    if (c) return c;
    return a->klen < b->klen ? -1 : a->klen > b->klen;
}

/* A GroupBy's rows for ds in [start_day, end_day]: (day, key, encoded base features) for
 * every key with a non-null feature, in *refs (bytes in keep), sorted by (day, key). */
static int gb_rows(engine_t *e, gb_plan_t *gbp, out_ref_t **refs_out, size_t *nref_out,
                   tsr_arena_t *keep, tsr_error_t *err) {
    const tsr_backfill_opts_t *o = e->o;
    gb_plan_t gb = *gbp;
    const tsr_conf_group_by_t *g = gb.g;
    int rc;
    out_ref_t *refs = NULL;
    size_t nref = 0, capref = 0;
    if ((rc = tsr__check_gb_partitions(&gb, o->start_day, o->end_day, err)) != 0) return rc;

    /* memory: key-partition ranges, one pass over the sources each (see run_join) */
    size_t npasses = tsr__passes(gb.srcs, gb.nsrc, o->memory_bytes);
    size_t nparts = e->nparts;
    if (nparts < 2 * npasses) nparts = 2 * npasses;
    if (npasses > nparts) npasses = nparts;
    if (npasses > 1)
        progress(e, "%s: %zu passes to stay within the memory budget", g->meta.name, npasses);
    for (size_t pass = 0; pass < npasses && rc == 0; pass++) {
        store_t *evs = stores_new(nparts);
        xctx_t x;
        xctx_init(e, &x, g->meta.name, nparts);
        x.plo = pass * nparts / npasses;
        x.phi = (pass + 1) * nparts / npasses;
        rc = tsr__extract(&x, gb.srcs, gb.nsrc, !gb.entity && !gb.passthrough, evs, err);
        xctx_done(e, &x);
        if (rc) {
            stores_free(evs, nparts);
            break;
        }
        /* one query per (key, ds): events GroupBys ask every key every day from its first
         * event on; entity GroupBys the keys present in that day's snapshot */
        store_t *qs = stores_new(nparts);
        uint64_t nq = 0;
        for (size_t p = x.plo; p < x.phi; p++) {
            store_t *s = &evs[p];
            e->st->events += s->n;
            tsr__store_sort(s);
            for (size_t i = 0; i < s->n;) {
                size_t k = i + 1;
                while (k < s->n && tsr__key_cmp(&s->v[i], &s->v[k]) == 0) k++;
                for (int64_t day = o->start_day; day <= o->end_day; day++) {
                    if (gb.entity || gb.passthrough) {
                        int present = 0;
                        for (size_t r = i; r < k && !present; r++) present = s->v[r].day == day;
                        if (!present) continue;
                    } else if (s->v[i].ts >= (day + 1) * TSR_MS_PER_DAY) {
                        continue; /* the key has no event yet */
                    }
                    rec_t *q = tsr__store_push(&qs[p], s->v[i].p, s->v[i].klen);
                    q->hash = s->v[i].hash;
                    q->klen = s->v[i].klen;
                    q->ts = (day + 1) * TSR_MS_PER_DAY;
                    q->day = day;
                    q->seq = nq++;
                }
                i = k;
            }
        }
        e->st->left_rows += nq;
        progress(e, "%s: %llu (key, ds) pairs%s, sweeping", g->meta.name, (unsigned long long)nq,
                 npasses > 1 ? " in this pass" : "");
        results_t res;
        results_init(&res, nq, e->nthreads);
        rc = tsr__sweep_part(&gb, evs, qs, x.plo, x.phi, e->nthreads, &res, err);
        /* keep the rows with any non-null feature */
        for (size_t p = x.plo; p < x.phi && rc == 0; p++) {
            tsr__store_finish(&qs[p]);
            for (size_t i = 0; i < qs[p].n; i++) {
                const rec_t *q = &qs[p].v[i];
                if (!res.res[q->seq]) continue;
                if (nref == capref) {
                    capref = capref ? 2 * capref : 1024;
                    refs = tsr_realloc(refs, capref * sizeof(out_ref_t));
                }
                uint8_t *k = tsr_arena_alloc(keep, q->klen + res.len[q->seq]);
                memcpy(k, q->p, q->klen);
                memcpy(k + q->klen, res.res[q->seq], res.len[q->seq]);
                refs[nref++] = (out_ref_t){q->day, k, k + q->klen, q->klen, res.len[q->seq]};
            }
        }
        results_free(&res);
        stores_free(qs, nparts);
        stores_free(evs, nparts);
    }
    if (rc == 0 && nref) qsort(refs, nref, sizeof(out_ref_t), out_ref_cmp);
    if (rc) {
        free(refs);
        refs = NULL;
        nref = 0;
    }
    *refs_out = refs;
    *nref_out = nref;
    return rc;
}

static int run_group_by(engine_t *e, const tsr_config_t *conf, tsr_error_t *err) {
    const tsr_backfill_opts_t *o = e->o;
    const tsr_conf_group_by_t *g = conf->group_by;
    gb_plan_t gb;
    int rc = tsr__gb_plan_build(&gb, g, o->warehouse, o->start_day, o->end_day, err);
    if (rc) return rc;
    out_ref_t *refs = NULL;
    size_t nref = 0;
    char *odir = NULL;
    tsr_arena_t arena, keep;
    tsr_arena_init(&arena, 1 << 16);
    tsr_arena_init(&keep, 1 << 20);
    rc = gb_rows(e, &gb, &refs, &nref, &keep, err);
    if (rc) goto out;

    odir = output_dir(o, &g->meta);
    snprintf(e->st->output_dir, sizeof e->st->output_dir, "%s", odir);
    out_cleanup(o, odir);
    size_t ncols = gb.nkeys + 1 + gb.deriv.nout;
    const char **names = tsr_malloc(ncols * sizeof(char *));
    for (size_t k = 0; k < gb.nkeys; k++) names[k] = g->key_columns[k];
    names[gb.nkeys] = "ds";
    for (size_t f = 0; f < gb.deriv.nout; f++) names[gb.nkeys + 1 + f] = gb.deriv.out[f].name;
    tsr_value_t *row = tsr_malloc(ncols * sizeof(tsr_value_t));
    tsr_value_t *base = tsr_malloc((gb.deriv.nbase ? gb.deriv.nbase : 1) * sizeof(tsr_value_t));
    tsr_vm_t *vm = gb.deriv.prog ? tsr_vm_new(gb.deriv.prog) : NULL;
    size_t no = gb.deriv.prog ? tsr_program_noutputs(gb.deriv.prog) : 1;
    tsr_value_t *tmp = tsr_malloc((no ? no : 1) * sizeof(tsr_value_t));
    size_t r = 0;
    for (int64_t day = o->start_day; day <= o->end_day && rc == 0; day++) {
        if (stopped(o)) {
            rc = tsr_error_set(err, TSR_EUNAVAIL, "backfill stopped (shutting down)");
            break;
        }
        tsr_out_partition_t *op;
        if ((rc = tsr_out_partition_begin(odir, day, o->format, names, ncols, &op, err)) != 0) break;
        char ds[11];
        tsr_ds_format(day, ds);
        for (; r < nref && refs[r].day == day && rc == 0; r++) {
            tsr_arena_reset(&arena);
            if ((rc = decode_n(refs[r].key, refs[r].klen, gb.nkeys, base, &arena)) != 0 ||
                (rc = decode_n(refs[r].res, refs[r].len, gb.nfeat, base + gb.nkeys, &arena)) != 0)
                break;
            for (size_t k = 0; k < gb.nkeys; k++) row[k] = base[k];
            row[gb.nkeys] = tsr_value_string(ds, 10);
            tsr__derive(&gb.deriv, vm, base, tmp, row + gb.nkeys + 1);
            if ((rc = tsr_out_partition_write(op, row, err)) != 0) break;
        }
        if (rc) {
            tsr_out_partition_abort(op);
            break;
        }
        uint64_t nrows = tsr_out_partition_rows(op);
        if ((rc = tsr_out_partition_commit(op, err)) != 0) break;
        e->st->rows_written += nrows;
        e->st->partitions_written++;
        progress(e, "wrote %s/ds=%s: %llu rows", odir, ds, (unsigned long long)nrows);
    }
    tsr_vm_free(vm);
    free(tmp);
    free(base);
    free(row);
    free(names);
out:
    free(refs);
    tsr_arena_free(&keep);
    tsr_arena_free(&arena);
    free(odir);
    tsr__gb_plan_free(&gb);
    return rc;
}

int tsr_backfill_run(const tsr_config_t *conf, const tsr_backfill_opts_t *opts,
                     tsr_backfill_stats_t *stats, tsr_error_t *err) {
    tsr_backfill_opts_t o = *opts;
    if (!o.warehouse) o.warehouse = "./warehouse";
    if (o.end_day < o.start_day)
        return tsr_error_set(err, TSR_EINVAL, "--end-ds is before --start-ds");
    tsr_backfill_stats_t local;
    if (!stats) stats = &local;
    memset(stats, 0, sizeof(*stats));
    engine_t e;
    e.o = &o;
    e.st = stats;
    e.nthreads = o.parallelism > 0 ? o.parallelism : default_threads();
    e.nparts = (size_t)e.nthreads * 16;
    e.t0 = now_s();
    int rc;
    if (conf->kind == TSR_CONF_JOIN) rc = run_join(&e, conf, err);
    else if (conf->kind == TSR_CONF_GROUP_BY) rc = run_group_by(&e, conf, err);
    else
        rc = tsr_error_set(err, TSR_EUNSUPPORTED,
                           "%s: backfill runs GroupBys and Joins; run a StagingQuery with "
                           "tessera run-staging",
                           conf->file);
    stats->seconds = now_s() - e.t0;
    return rc;
}

int tsr_backfill_check(const tsr_config_t *conf, const tsr_backfill_opts_t *opts, char *out_dir,
                       size_t cap, tsr_error_t *err) {
    tsr_backfill_opts_t o = *opts;
    if (!o.warehouse) o.warehouse = "./warehouse";
    if (o.end_day < o.start_day) return tsr_error_set(err, TSR_EINVAL, "--end-ds is before --start-ds");
    int rc = 0;
    char *odir = NULL;
    if (conf->kind == TSR_CONF_JOIN) {
        /* the checks of run_join, in its order */
        const tsr_conf_join_t *j = conf->join;
        join_plan_t jp;
        if ((rc = tsr__join_plan_build(&jp, j, o.warehouse, o.start_day, o.end_day, err)) != 0) return rc;
        int64_t lo = o.start_day, hi = o.end_day, pd;
        if (j->left.query.start_partition && tsr_ds_parse(j->left.query.start_partition, &pd) == 0 && pd > lo) lo = pd;
        if (j->left.query.end_partition && tsr_ds_parse(j->left.query.end_partition, &pd) == 0 && pd < hi) hi = pd;
        if (lo > hi)
            rc = tsr_error_set(err, TSR_EINVAL, "nothing to backfill: the left query's startPartition/endPartition "
                               "leave no day of the range");
        if (rc == 0) rc = check_partitions(&jp.left, lo, hi, err);
        for (size_t p = 0; rc == 0 && p < jp.nparts; p++) {
            const gb_plan_t *gb = &jp.parts[p].gb;
            int64_t glo = jp.left_entity || gb->snapshot || gb->entity ? lo - 1 : lo;
            rc = tsr__check_gb_partitions(gb, glo, hi, err);
        }
        tsr__join_plan_free(&jp);
        if (rc == 0) odir = output_dir(&o, &j->meta);
    } else if (conf->kind == TSR_CONF_GROUP_BY) {
        gb_plan_t gb;
        if ((rc = tsr__gb_plan_build(&gb, conf->group_by, o.warehouse, o.start_day, o.end_day, err)) != 0)
            return rc;
        rc = tsr__check_gb_partitions(&gb, o.start_day, o.end_day, err);
        tsr__gb_plan_free(&gb);
        if (rc == 0) odir = output_dir(&o, &conf->group_by->meta);
    } else {
        return tsr_error_set(err, TSR_EUNSUPPORTED,
                             "%s: backfill runs GroupBys and Joins; run a StagingQuery with tessera run-staging",
                             conf->file ? conf->file : "config");
    }
    if (rc == 0 && out_dir) snprintf(out_dir, cap, "%s", odir);
    free(odir);
    return rc;
}

int tsr_entity_batch_compute(const tsr_conf_group_by_t *g, int64_t day, const tsr_backfill_opts_t *opts,
                             tsr_entity_sink_fn sink, void *ud, size_t *nfeat, tsr_error_t *err) {
    tsr_backfill_opts_t o = *opts;
    if (!o.warehouse) o.warehouse = "./warehouse";
    o.start_day = o.end_day = day;
    tsr_backfill_stats_t st;
    memset(&st, 0, sizeof st);
    engine_t e;
    e.o = &o;
    e.st = &st;
    e.nthreads = o.parallelism > 0 ? o.parallelism : default_threads();
    e.nparts = (size_t)e.nthreads * 16;
    e.t0 = now_s();
    gb_plan_t gb;
    int rc = tsr__gb_plan_build(&gb, g, o.warehouse, day, day, err);
    if (rc) return rc;
    if (!gb.entity && !gb.passthrough) {
        tsr__gb_plan_free(&gb);
        return tsr_error_set(err, TSR_EINVAL, "%s is not an entity GroupBy", g->meta.name);
    }
    if (nfeat) *nfeat = gb.nfeat;
    out_ref_t *refs = NULL;
    size_t nref = 0;
    tsr_arena_t keep;
    tsr_arena_init(&keep, 1 << 20);
    rc = gb_rows(&e, &gb, &refs, &nref, &keep, err);
    for (size_t i = 0; i < nref && rc == 0; i++)
        rc = sink(ud, refs[i].key, refs[i].klen, refs[i].res, refs[i].len);
    if (rc && err && err->code == 0) tsr_error_set(err, rc, "%s: entity upload stopped", g->meta.name);
    free(refs);
    tsr_arena_free(&keep);
    tsr__gb_plan_free(&gb);
    return rc;
}
