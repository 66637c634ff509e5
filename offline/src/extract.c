/*
 * extract.c — reading source tables into record stores, in parallel.
 *
 * Threads take part files from a shared counter (largest first would balance better; files
 * are taken in row order so progress reads naturally). Each thread owns one VM per source and
 * one store per hash partition, so the hot loop takes no lock: read row -> run the program ->
 * wheres -> keys and ts -> encode payload -> append to partition hash % nparts. Stores of the
 * threads are merged per partition at the end (records concatenated, arenas handed over).
 *
 * Bad rows: a row the reader rejects is counted; past max_bad_rows the run fails with the
 * row's file:line and column. The first ten bad rows are printed to the progress stream.
 */
#include "offline_int.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---- stores */

#define STORE_BLOCK 4096
#define STORE_BLOCK_MAX 65536
#define STORE_ARENA_CHUNK ((size_t)1 << 20)

void tsr__store_init(store_t *s) {
    memset(s, 0, sizeof(*s));
    tsr_arena_init(&s->arena, STORE_ARENA_CHUNK);
}

static void free_segs(store_t *s) {
    for (size_t i = 0; i < s->nsegs; i++) free(s->segs[i].recs);
    free(s->segs);
    s->segs = NULL;
    s->nsegs = s->capsegs = 0;
}

void tsr__store_free(store_t *s) {
    free_segs(s);
    free(s->v);
    tsr_arena_free(&s->arena);
    for (size_t i = 0; i < s->ntaken; i++) {
        tsr_arena_free(s->taken[i]);
        free(s->taken[i]);
    }
    free(s->taken);
    memset(s, 0, sizeof(*s));
}

static void add_seg(store_t *s, rec_t *recs, size_t n, size_t cap) {
    if (s->nsegs == s->capsegs) {
        s->capsegs = s->capsegs ? 2 * s->capsegs : 16;
        s->segs = tsr_realloc(s->segs, s->capsegs * sizeof(store_seg_t));
    }
    s->segs[s->nsegs].recs = recs;
    s->segs[s->nsegs].n = n;
    s->segs[s->nsegs].cap = cap;
    s->nsegs++;
}

rec_t *tsr__store_push(store_t *s, const void *p, size_t len) {
    if (s->nsegs == 0 || s->segs[s->nsegs - 1].n == s->segs[s->nsegs - 1].cap) {
        /* blocks grow to STORE_BLOCK_MAX; ordinary pages, so an untouched tail costs no RSS
         * (huge pages would fault in 2 MiB at once across every thread's partition stores) */
        size_t cap = s->nsegs == 0 ? STORE_BLOCK : s->segs[s->nsegs - 1].cap * 2;
        if (cap > STORE_BLOCK_MAX) cap = STORE_BLOCK_MAX;
        add_seg(s, tsr_malloc(cap * sizeof(rec_t)), 0, cap);
    }
    store_seg_t *g = &s->segs[s->nsegs - 1];
    rec_t *r = &g->recs[g->n++];
    s->n++;
    uint8_t *dst = tsr_arena_alloc(&s->arena, len ? len : 1);
    memcpy(dst, p, len);
    r->p = dst;
    r->len = (uint32_t)len;
    return r;
}

void tsr__store_take(store_t *dst, store_t *src) {
    /* dst's records stay first; src's blocks follow in their order. push() only ever fills
     * the last block up to its own capacity, so partly filled blocks are safe anywhere. */
    if (dst->v) {
        add_seg(dst, dst->v, dst->n, dst->n);
        dst->v = NULL;
    }
    for (size_t i = 0; i < src->nsegs; i++) add_seg(dst, src->segs[i].recs, src->segs[i].n, src->segs[i].cap);
    if (src->v) add_seg(dst, src->v, src->n, src->n);
    dst->n += src->n;
    free(src->segs);
    size_t add = 1 + src->ntaken;
    dst->taken = tsr_realloc(dst->taken, (dst->ntaken + add) * sizeof(tsr_arena_t *));
    tsr_arena_t *a = tsr_malloc(sizeof(*a));
    *a = src->arena; /* the chunks move with the struct */
    dst->taken[dst->ntaken++] = a;
    for (size_t i = 0; i < src->ntaken; i++) dst->taken[dst->ntaken++] = src->taken[i];
    free(src->taken);
    memset(src, 0, sizeof(*src));
    tsr_arena_init(&src->arena, STORE_ARENA_CHUNK);
}

void tsr__store_finish(store_t *s) {
    if (s->nsegs == 0) return;
    if (s->nsegs == 1 && !s->v) {
        s->v = s->segs[0].recs;
        free(s->segs);
        s->segs = NULL;
        s->nsegs = s->capsegs = 0;
        return;
    }
    rec_t *v = s->n * sizeof(rec_t) >= TSR_HUGE_PAGE ? tsr_malloc_huge(s->n * sizeof(rec_t))
                                                     : tsr_malloc((s->n ? s->n : 1) * sizeof(rec_t));
    size_t k = 0;
    for (size_t i = 0; i < s->nsegs; i++) {
        memcpy(v + k, s->segs[i].recs, s->segs[i].n * sizeof(rec_t));
        k += s->segs[i].n;
    }
    free_segs(s);
    free(s->v);
    s->v = v;
}

void tsr__store_sort(store_t *s) {
    if (s->nsegs == 0 || s->n < TSR__SORT_SMALL) {
        tsr__store_finish(s);
        tsr__sort_recs(s->v, s->n);
        return;
    }
    /* counting sort straight from the blocks into the final array */
    size_t *count = tsr_calloc(TSR__SORT_BUCKETS + 1, sizeof(size_t));
    for (size_t g = 0; g < s->nsegs; g++)
        for (size_t i = 0; i < s->segs[g].n; i++) count[TSR__SORT_BUCKET(s->segs[g].recs[i].hash) + 1]++;
    for (size_t b = 0; b < TSR__SORT_BUCKETS; b++) count[b + 1] += count[b];
    size_t *pos = tsr_malloc(TSR__SORT_BUCKETS * sizeof(size_t));
    memcpy(pos, count, TSR__SORT_BUCKETS * sizeof(size_t));
    rec_t *v = tsr_malloc_huge(s->n * sizeof(rec_t));
    for (size_t g = 0; g < s->nsegs; g++)
        for (size_t i = 0; i < s->segs[g].n; i++) {
            const rec_t *r = &s->segs[g].recs[i];
            v[pos[TSR__SORT_BUCKET(r->hash)]++] = *r;
        }
    free(pos);
    free_segs(s);
    free(s->v);
    s->v = v;
    tsr__sort_buckets(v, count);
    free(count);
}

/* ---- extraction */

typedef struct job {
    xctx_t *x;
    src_plan_t *srcs;
    size_t nsrc;
    int need_ts;
    size_t nfiles;          /* over all sources */
    size_t *file_src, *file_idx;
    size_t next;            /* shared counter, under x->mu */
    size_t done;
    store_t *stores;        /* [thread][partition] */
    struct timespec t0;
} job_t;

typedef struct worker {
    job_t *job;
    int id;
} worker_t;

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static int read_file(worker_t *w, size_t fi, tsr_vm_t **vms, tsr_value_t *row, tsr_value_t *out,
                     tsr_buf_t *buf, xstats_t *st, tsr_error_t *err) {
    job_t *job = w->job;
    xctx_t *x = job->x;
    size_t si = job->file_src[fi], idx = job->file_idx[fi];
    src_plan_t *s = &job->srcs[si];
    const tsr_table_file_t *f = &s->table->files[idx];
    tsr_file_reader_t *r;
    int rc = tsr_file_reader_open(s->table, idx, s->want, &r, err);
    if (rc) return rc;
    tsr_vm_t *vm = vms[si];
    store_t *stores = job->stores + (size_t)w->id * x->nparts;
    for (;;) {
        rc = tsr_file_reader_next(r, row, err);
        if (rc == 0) break;
        if (rc == TSR_ECORRUPT) {
            pthread_mutex_lock(&x->mu);
            uint64_t nbad = ++x->st.bad_rows;
            if (nbad <= 10 && x->progress) fprintf(x->progress, "bad row: %s\n", err->msg);
            pthread_mutex_unlock(&x->mu);
            if (nbad > x->max_bad_rows) {
                tsr_error_prefix(err, "bad row (more than --max-bad-rows %llu)",
                                 (unsigned long long)x->max_bad_rows);
                break;
            }
            continue;
        }
        if (rc < 0) break;
        st->rows_read++;
        tsr_vm_run(vm, row, out);
        int keep = 1;
        for (size_t i = 0; i < s->nwhere && keep; i++) keep = tsr_value_truthy(&out[s->where_out[i]]);
        int64_t ts = INT64_MIN; /* no time */
        if (keep && s->ts_out >= 0) {
            int ok;
            ts = tsr__ts_of(&out[s->ts_out], &ok);
            if (!ok) {
                ts = INT64_MIN;
                keep = !job->need_ts; /* left and entity rows without a time are still rows */
            }
        }
        tsr_buf_clear(buf);
        for (size_t k = 0; k < s->nkeys && keep; k++) {
            if (out[s->key_out[k]].kind == TSR_NULL) keep = 0;
            else tsr_value_encode(&out[s->key_out[k]], buf);
        }
        if (!keep) {
            st->rows_filtered++;
            continue;
        }
        size_t klen = buf->len;
        uint64_t h = tsr_hash_bytes(buf->data, klen, 0x7e55e7a);
        size_t part = (size_t)(h % x->nparts);
        if (part < x->plo || part >= x->phi) continue; /* another pass's partition */
        for (size_t i = 0; i < s->nslots; i++) {
            if (s->slot_out[i] < 0) {
                tsr_value_t n = tsr_value_null();
                tsr_value_encode(&n, buf);
            } else {
                tsr_value_encode(&out[s->slot_out[i]], buf);
            }
        }
        rec_t *rec = tsr__store_push(&stores[part], buf->data, buf->len);
        rec->hash = h;
        rec->ts = ts;
        rec->seq = TSR_SEQ(si, f->ordinal, tsr_file_reader_line(r));
        rec->klen = (uint32_t)klen;
        rec->day = f->day;
    }
    tsr_file_reader_close(r);
    return rc < 0 ? rc : 0;
}

static void *worker_main(void *arg) {
    worker_t *w = arg;
    job_t *job = w->job;
    xctx_t *x = job->x;
    tsr_vm_t **vms = tsr_calloc(job->nsrc, sizeof(tsr_vm_t *));
    size_t maxcols = 1, maxout = 1;
    for (size_t i = 0; i < job->nsrc; i++) {
        vms[i] = tsr_vm_new(job->srcs[i].prog);
        if (job->srcs[i].table->ncols > maxcols) maxcols = job->srcs[i].table->ncols;
        if (tsr_program_noutputs(job->srcs[i].prog) > maxout)
            maxout = tsr_program_noutputs(job->srcs[i].prog);
    }
    tsr_value_t *row = tsr_malloc(maxcols * sizeof(tsr_value_t));
    tsr_value_t *out = tsr_malloc(maxout * sizeof(tsr_value_t));
    tsr_buf_t buf;
    tsr_buf_init(&buf);
    tsr_error_t err;
    tsr_error_clear(&err);
    for (;;) {
        pthread_mutex_lock(&x->mu);
        if (x->stop && __atomic_load_n(x->stop, __ATOMIC_ACQUIRE) && !x->failed) {
            x->failed = 1;
            tsr_error_set(&x->err, TSR_EUNAVAIL, "backfill stopped (shutting down)");
        }
        size_t fi = job->next < job->nfiles && !x->failed ? job->next++ : (size_t)-1;
        pthread_mutex_unlock(&x->mu);
        if (fi == (size_t)-1) break;
        xstats_t st = {0};
        int rc = read_file(w, fi, vms, row, out, &buf, &st, &err);
        pthread_mutex_lock(&x->mu);
        x->st.rows_read += st.rows_read;
        x->st.rows_filtered += st.rows_filtered;
        job->done++;
        if (rc && !x->failed) {
            x->failed = 1;
            x->err = err;
        }
        if (x->progress && !x->failed) {
            double dt = now_s() - ((double)job->t0.tv_sec + (double)job->t0.tv_nsec * 1e-9);
            fprintf(x->progress, "reading %s: %zu/%zu files, %llu rows, %.0f rows/s\n", x->what,
                    job->done, job->nfiles, (unsigned long long)x->st.rows_read,
                    dt > 0 ? (double)x->st.rows_read / dt : 0.0);
        }
        pthread_mutex_unlock(&x->mu);
    }
    for (size_t i = 0; i < job->nsrc; i++) tsr_vm_free(vms[i]);
    free(vms);
    free(row);
    free(out);
    tsr_buf_free(&buf);
    return NULL;
}

int tsr__extract(xctx_t *x, src_plan_t *srcs, size_t nsrc, int need_ts, store_t *parts,
                 tsr_error_t *err) {
    job_t job;
    memset(&job, 0, sizeof(job));
    job.x = x;
    job.srcs = srcs;
    job.nsrc = nsrc;
    job.need_ts = need_ts;
    clock_gettime(CLOCK_MONOTONIC, &job.t0);
    for (size_t s = 0; s < nsrc; s++) job.nfiles += srcs[s].table->nfiles;
    job.file_src = tsr_malloc((job.nfiles ? job.nfiles : 1) * sizeof(size_t));
    job.file_idx = tsr_malloc((job.nfiles ? job.nfiles : 1) * sizeof(size_t));
    size_t k = 0;
    for (size_t s = 0; s < nsrc; s++)
        for (size_t i = 0; i < srcs[s].table->nfiles; i++, k++) {
            job.file_src[k] = s;
            job.file_idx[k] = i;
        }
    int nth = x->nthreads < 1 ? 1 : x->nthreads;
    if ((size_t)nth > job.nfiles && job.nfiles) nth = (int)job.nfiles;
    job.stores = tsr_malloc((size_t)nth * x->nparts * sizeof(store_t));
    for (size_t i = 0; i < (size_t)nth * x->nparts; i++) tsr__store_init(&job.stores[i]);
    pthread_t *tid = tsr_malloc((size_t)nth * sizeof(pthread_t));
    worker_t *ws = tsr_malloc((size_t)nth * sizeof(worker_t));
    for (int t = 0; t < nth; t++) {
        ws[t].job = &job;
        ws[t].id = t;
        if (t > 0) pthread_create(&tid[t], NULL, worker_main, &ws[t]);
    }
    worker_main(&ws[0]);
    for (int t = 1; t < nth; t++) pthread_join(tid[t], NULL);
    for (int t = 0; t < nth; t++)
        for (size_t p = 0; p < x->nparts; p++)
            tsr__store_take(&parts[p], &job.stores[(size_t)t * x->nparts + p]);
    for (size_t i = 0; i < (size_t)nth * x->nparts; i++) tsr__store_free(&job.stores[i]);
    free(job.stores);
    free(tid);
    free(ws);
    free(job.file_src);
    free(job.file_idx);
    if (x->failed) {
        if (err) *err = x->err;
        return x->err.code ? x->err.code : TSR_EIO;
    }
    return 0;
}

size_t tsr__passes(const src_plan_t *srcs, size_t nsrc, uint64_t budget) {
    uint64_t bytes = 0;
    for (size_t s = 0; s < nsrc; s++)
        for (size_t i = 0; i < srcs[s].table->nfiles; i++) bytes += srcs[s].table->files[i].size;
    uint64_t need = bytes * 3;
    if (!budget) budget = (uint64_t)2048 << 20;
    uint64_t passes = (need + budget - 1) / budget;
    return passes < 1 ? 1 : (size_t)passes;
}
