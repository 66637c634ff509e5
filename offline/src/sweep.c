/*
 * sweep.c — per hash partition: sort, group by key, compute every feature at every query.
 *
 * Events GroupBys (TEMPORAL, or SNAPSHOT with the query's as-of time moved to midnight by the
 * caller): a key's events sorted by (ts, seq) are pushed into one sliding-window aggregator
 * per feature (swag.h) until the next query time q; then each feature's value is read at q.
 * Queries at the same q share one result. Work per key is O(events + queries) kernel calls.
 *
 * Entity GroupBys: the rows of snapshot partition D are the state at the end of D. A query
 * names its snapshot day; each feature aggregates that day's rows whose ts falls in
 * [end - w, end) (SPEC §4 SNAPSHOT rule; lifetime takes them all), or, without aggregations,
 * serves the columns of the day's last row (by ts, then row order). Results are cached per
 * (key, day).
 *
 * Results are the encoded base features of each query, in an arena per thread, indexed by the
 * query's seq (the left row index); all-null results are stored as NULL.
 */
#include "offline_int.h"

#include <stdlib.h>
#include <string.h>

#include "tsr/window.h"

static int rec_cmp(const void *pa, const void *pb) {
    const rec_t *a = pa, *b = pb;
    int c = tsr__key_cmp(a, b);
    if (c) return c;
    if (a->day != b->day) return a->day < b->day ? -1 : 1;
    if (a->ts != b->ts) return a->ts < b->ts ? -1 : 1;
    return a->seq < b->seq ? -1 : a->seq > b->seq;
}

static void insertion_sort(rec_t *v, size_t n) {
    for (size_t i = 1; i < n; i++) {
        if (rec_cmp(&v[i - 1], &v[i]) <= 0) continue;
        rec_t x = v[i];
        size_t j = i;
        while (j > 0 && rec_cmp(&v[j - 1], &x) > 0) {
            v[j] = v[j - 1];
            j--;
        }
        v[j] = x;
    }
}

#define MAX_RUNS 16

/* Merges the nruns sorted runs v[bounds[i] .. bounds[i+1]) into one sorted run, pairwise
 * (log2(nruns) passes through tmp). */
static void merge_runs(rec_t *v, size_t *bounds, size_t nruns, rec_t *tmp) {
    while (nruns > 1) {
        size_t out = 0, k = 0;
        for (size_t r = 0; r < nruns; r += 2) {
            size_t a = bounds[r], m = bounds[r + 1], z = r + 2 <= nruns ? bounds[r + 2] : m;
            if (r + 1 >= nruns) z = m;
            size_t i = a, j = m;
            while (i < m && j < z) tmp[k++] = rec_cmp(&v[j], &v[i]) < 0 ? v[j++] : v[i++];
            while (i < m) tmp[k++] = v[i++];
            while (j < z) tmp[k++] = v[j++];
            bounds[out++] = a;
        }
        bounds[out] = bounds[nruns];
        memcpy(v, tmp, bounds[out] * sizeof(rec_t));
        nruns = out;
    }
}

/* Sorts by (hash, key, day, ts, seq): a counting sort on the hash's top 16 bits scatters the
 * records into 65536 buckets (one pass, cache-friendly), then each bucket — usually one key's
 * records — is sorted on its own: insertion sort when small, a merge of its sorted runs when
 * it has few (a key's events arrive in time order per file, files split among threads),
 * merge sort otherwise. */
/* The per-bucket phase: count[b] .. count[b + 1] are bucket b's records in v. */
void tsr__sort_buckets(rec_t *v, const size_t *count) {
    rec_t *buf = NULL;
    size_t bufcap = 0;
    for (size_t b = 0; b < TSR__SORT_BUCKETS; b++) {
        size_t lo = count[b], len = count[b + 1] - lo;
        if (len < 2) continue;
        if (len <= 32) {
            insertion_sort(v + lo, len);
            continue;
        }
        /* a key's records arrive as a few sorted runs (one per reading thread and source):
         * merge the runs when there are few, else sort */
        size_t bounds[MAX_RUNS + 2], nb = 0;
        bounds[nb++] = 0;
        for (size_t i = 1; i < len && nb <= MAX_RUNS; i++)
            if (rec_cmp(&v[lo + i - 1], &v[lo + i]) > 0) bounds[nb++] = i;
        if (nb > MAX_RUNS) {
            qsort(v + lo, len, sizeof(rec_t), rec_cmp);
            continue;
        }
        bounds[nb] = len;
        if (bufcap < len) {
            bufcap = len;
            buf = tsr_realloc(buf, bufcap * sizeof(rec_t));
        }
        merge_runs(v + lo, bounds, nb, buf);
    }
    free(buf);
}

void tsr__sort_recs(rec_t *v, size_t n) {
    if (n < 2) return;
    if (n < TSR__SORT_SMALL) {
        qsort(v, n, sizeof(rec_t), rec_cmp);
        return;
    }
    size_t *count = tsr_calloc(TSR__SORT_BUCKETS + 1, sizeof(size_t));
    for (size_t i = 0; i < n; i++) count[TSR__SORT_BUCKET(v[i].hash) + 1]++;
    for (size_t b = 0; b < TSR__SORT_BUCKETS; b++) count[b + 1] += count[b];
    rec_t *tmp = tsr_malloc(n * sizeof(rec_t));
    size_t *pos = tsr_malloc(TSR__SORT_BUCKETS * sizeof(size_t));
    memcpy(pos, count, TSR__SORT_BUCKETS * sizeof(size_t));
    for (size_t i = 0; i < n; i++) tmp[pos[TSR__SORT_BUCKET(v[i].hash)]++] = v[i];
    memcpy(v, tmp, n * sizeof(rec_t));
    free(tmp);
    free(pos);
    tsr__sort_buckets(v, count);
    free(count);
}

typedef struct sweeper {
    const gb_plan_t *gb;
    results_t *out;
    tsr_arena_t *res_arena;     /* this thread's result arena */
    tsr_swag_t **swags;         /* per feature (events GroupBys) */
    uint8_t **irs;              /* per feature (entity GroupBys) */
    tsr_value_t *slots;         /* decoded slot values of one event */
    tsr_value_t *vals;          /* feature values of one query */
    tsr_arena_t scratch;        /* decoded lists/maps; finalized values */
    tsr_buf_t enc;
} sweeper_t;

static int decode_slots(sweeper_t *sw, const rec_t *r, tsr_arena_t *a) {
    tsr_reader_t rd;
    tsr_reader_init(&rd, r->p + r->klen, r->len - r->klen);
    for (size_t i = 0; i < sw->gb->nslots; i++)
        if (tsr_value_decode(&rd, a, &sw->slots[i])) return TSR_ECORRUPT;
    return 0;
}

/* Encodes vals[0..nfeat) into the result arena; NULL when all are null. */
static const uint8_t *encode_result(sweeper_t *sw, uint32_t *len) {
    size_t nfeat = sw->gb->nfeat;
    int any = 0;
    for (size_t f = 0; f < nfeat && !any; f++) any = sw->vals[f].kind != TSR_NULL;
    if (!any) {
        *len = 0;
        return NULL;
    }
    tsr_buf_clear(&sw->enc);
    for (size_t f = 0; f < nfeat; f++) tsr_value_encode(&sw->vals[f], &sw->enc);
    uint8_t *p = tsr_arena_alloc(sw->res_arena, sw->enc.len);
    memcpy(p, sw->enc.data, sw->enc.len);
    *len = (uint32_t)sw->enc.len;
    return p;
}

static void set_result(sweeper_t *sw, uint64_t idx, const uint8_t *p, uint32_t len) {
    sw->out->res[idx] = p;
    sw->out->len[idx] = len;
}

static int sweep_events_key(sweeper_t *sw, const rec_t *ev, size_t nev, const rec_t *q,
                            size_t nq) {
    const gb_plan_t *gb = sw->gb;
    for (size_t f = 0; f < gb->nfeat; f++) tsr_swag_reset(sw->swags[f]);
    size_t i = 0;
    int64_t last_q = 0;
    const uint8_t *last_p = NULL;
    uint32_t last_len = 0;
    int have_last = 0;
    for (size_t j = 0; j < nq; j++) {
        int64_t qt = q[j].ts;
        if (have_last && qt == last_q) {
            set_result(sw, q[j].seq, last_p, last_len);
            continue;
        }
        while (i < nev && ev[i].ts < qt) {
            tsr_arena_reset(&sw->scratch);
            if (decode_slots(sw, &ev[i], &sw->scratch)) return TSR_ECORRUPT;
            for (size_t f = 0; f < gb->nfeat; f++) {
                const feat_t *ft = &gb->feats[f];
                tsr_swag_push(sw->swags[f], &sw->slots[ft->in_slot],
                              ft->bucket_slot >= 0 ? &sw->slots[ft->bucket_slot] : NULL,
                              ev[i].ts, ev[i].seq);
            }
            i++;
        }
        tsr_arena_reset(&sw->scratch);
        for (size_t f = 0; f < gb->nfeat; f++) sw->vals[f] = tsr_swag_value(sw->swags[f], qt, &sw->scratch);
        last_p = encode_result(sw, &last_len);
        last_q = qt;
        have_last = 1;
        set_result(sw, q[j].seq, last_p, last_len);
    }
    return 0;
}

/* One key of an entity GroupBy: rows sorted by (day, ts, seq); queries by (day, ts, seq). */
static int sweep_entity_key(sweeper_t *sw, const rec_t *rows, size_t nrows, const rec_t *q,
                            size_t nq) {
    const gb_plan_t *gb = sw->gb;
    size_t i = 0;
    int64_t last_day = 0;
    int have_last = 0;
    const uint8_t *last_p = NULL;
    uint32_t last_len = 0;
    for (size_t j = 0; j < nq; j++) {
        int64_t day = q[j].day;
        if (have_last && day == last_day) {
            set_result(sw, q[j].seq, last_p, last_len);
            continue;
        }
        while (i < nrows && rows[i].day < day) i++;
        size_t e = i;
        while (e < nrows && rows[e].day == day) e++;
        tsr_arena_reset(&sw->scratch);
        int64_t end = (day + 1) * TSR_MS_PER_DAY;
        if (gb->passthrough) {
            for (size_t f = 0; f < gb->nfeat; f++) sw->vals[f] = tsr_value_null();
            if (e > i && decode_slots(sw, &rows[e - 1], &sw->scratch) == 0)
                for (size_t f = 0; f < gb->nfeat; f++) sw->vals[f] = sw->slots[f];
        } else {
            for (size_t f = 0; f < gb->nfeat; f++) tsr_agg_init(gb->feats[f].kernel, sw->irs[f]);
            for (size_t r = i; r < e; r++) {
                if (decode_slots(sw, &rows[r], &sw->scratch)) return TSR_ECORRUPT;
                for (size_t f = 0; f < gb->nfeat; f++) {
                    const feat_t *ft = &gb->feats[f];
                    if (ft->window_ms && rows[r].ts < tsr_window_start_snapshot(end, ft->window_ms))
                        continue;
                    if (ft->window_ms && rows[r].ts >= end) continue;
                    tsr_agg_update(ft->kernel, sw->irs[f], &sw->slots[ft->in_slot],
                                   ft->bucket_slot >= 0 ? &sw->slots[ft->bucket_slot] : NULL,
                                   rows[r].ts, rows[r].seq);
                }
            }
            for (size_t f = 0; f < gb->nfeat; f++) {
                sw->vals[f] = tsr_agg_finalize(gb->feats[f].kernel, sw->irs[f], &sw->scratch);
                tsr_agg_clear(gb->feats[f].kernel, sw->irs[f]);
            }
        }
        last_p = encode_result(sw, &last_len);
        last_day = day;
        have_last = 1;
        set_result(sw, q[j].seq, last_p, last_len);
        i = e;
    }
    return 0;
}

static int sweep_partition(sweeper_t *sw, store_t *ev, store_t *qs) {
    tsr__store_sort(ev);
    tsr__store_sort(qs);
    size_t i = 0, j = 0;
    while (j < qs->n) {
        size_t je = j + 1;
        while (je < qs->n && tsr__key_cmp(&qs->v[j], &qs->v[je]) == 0) je++;
        while (i < ev->n && tsr__key_cmp(&ev->v[i], &qs->v[j]) < 0) i++;
        size_t ie = i;
        while (ie < ev->n && tsr__key_cmp(&ev->v[ie], &qs->v[j]) == 0) ie++;
        int rc = sw->gb->entity || sw->gb->passthrough
                     ? sweep_entity_key(sw, ev->v + i, ie - i, qs->v + j, je - j)
                     : sweep_events_key(sw, ev->v + i, ie - i, qs->v + j, je - j);
        if (rc) return rc;
        i = ie;
        j = je;
    }
    return 0;
}

typedef struct sweep_job {
    const gb_plan_t *gb;
    store_t *events, *queries;
    size_t phi, next;
    results_t *out;
    pthread_mutex_t mu;
    int failed;
} sweep_job_t;

typedef struct sweep_worker {
    sweep_job_t *job;
    int id;
} sweep_worker_t;

static void *sweep_main(void *arg) {
    sweep_worker_t *w = arg;
    sweep_job_t *job = w->job;
    const gb_plan_t *gb = job->gb;
    sweeper_t sw;
    memset(&sw, 0, sizeof(sw));
    sw.gb = gb;
    sw.out = job->out;
    sw.res_arena = &job->out->arenas[w->id];
    size_t nf = gb->nfeat ? gb->nfeat : 1;
    sw.swags = tsr_calloc(nf, sizeof(tsr_swag_t *));
    sw.irs = tsr_calloc(nf, sizeof(uint8_t *));
    for (size_t f = 0; f < gb->nfeat; f++) {
        if (gb->feats) {
            sw.swags[f] = tsr_swag_new(gb->feats[f].kernel, gb->feats[f].window_ms);
            sw.irs[f] = tsr_malloc(tsr_agg_ir_size(gb->feats[f].kernel));
        }
    }
    sw.slots = tsr_malloc((gb->nslots ? gb->nslots : 1) * sizeof(tsr_value_t));
    sw.vals = tsr_malloc(nf * sizeof(tsr_value_t));
    tsr_arena_init(&sw.scratch, 1 << 16);
    tsr_buf_init(&sw.enc);
    for (;;) {
        pthread_mutex_lock(&job->mu);
        size_t p = job->next < job->phi && !job->failed ? job->next++ : (size_t)-1;
        pthread_mutex_unlock(&job->mu);
        if (p == (size_t)-1) break;
        if (sweep_partition(&sw, &job->events[p], &job->queries[p])) {
            pthread_mutex_lock(&job->mu);
            job->failed = 1;
            pthread_mutex_unlock(&job->mu);
        }
    }
    for (size_t f = 0; f < gb->nfeat; f++) {
        tsr_swag_free(sw.swags[f]);
        free(sw.irs[f]);
    }
    free(sw.swags);
    free(sw.irs);
    free(sw.slots);
    free(sw.vals);
    tsr_arena_free(&sw.scratch);
    tsr_buf_free(&sw.enc);
    return NULL;
}

int tsr__sweep_part(const gb_plan_t *gb, store_t *events, store_t *queries, size_t plo,
                    size_t phi, int nthreads, results_t *out, tsr_error_t *err) {
    sweep_job_t job;
    memset(&job, 0, sizeof(job));
    job.gb = gb;
    job.events = events;
    job.queries = queries;
    job.next = plo;
    job.phi = phi;
    job.out = out;
    pthread_mutex_init(&job.mu, NULL);
    int nth = nthreads < 1 ? 1 : nthreads;
    if (out->narenas < nth) nth = out->narenas;
    pthread_t *tid = tsr_malloc((size_t)nth * sizeof(pthread_t));
    sweep_worker_t *ws = tsr_malloc((size_t)nth * sizeof(sweep_worker_t));
    for (int t = 0; t < nth; t++) {
        ws[t].job = &job;
        ws[t].id = t;
        if (t > 0) pthread_create(&tid[t], NULL, sweep_main, &ws[t]);
    }
    sweep_main(&ws[0]);
    for (int t = 1; t < nth; t++) pthread_join(tid[t], NULL);
    free(tid);
    free(ws);
    pthread_mutex_destroy(&job.mu);
    if (job.failed)
        return tsr_error_set(err, TSR_EINTERNAL, "%s: corrupt record while sweeping",
                             gb->g->meta.name);
    return 0;
}
