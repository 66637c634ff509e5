/*
 * batch.c — the upload computation (batch.h): per key, the lifetime IR and the tail tiles of
 * each hop, for every tile column of a GroupBy.
 *
 * Columns: one per (aggregation, bucket) — the kernel spec does not depend on the window, so
 * one IR per column serves all of its windows; the kernel descriptor is the plan's feature
 * kernel of the column's first window. The tail tiles of hop H cover
 * [floor((B - w_max(H)) / H) * H, B) where w_max(H) is the longest window of hop H among all
 * columns (tile.h): one record per tile that holds at least one event, with an IR for every
 * column.
 */
#include "offline_int.h"

#include <stdlib.h>
#include <string.h>

#include "tsr/batch.h"
#include "tsr/time.h"
#include "tsr/window.h"

struct tsr_gb_online {
    gb_plan_t plan;
    tsr_tile_col_t *cols;
    int64_t **wins;
    tsr_tile_gb_t tiles;
    const tsr_conf_group_by_t *g;
    const char *warehouse;
};

size_t tsr__tile_cols_build(const gb_plan_t *plan, tsr_tile_col_t **cols_out, int64_t ***wins_out) {
    const tsr_conf_group_by_t *g = plan->g;
    size_t ncols = 0;
    for (size_t a = 0; a < g->n_aggs; a++) ncols += g->aggs[a].n_buckets ? g->aggs[a].n_buckets : 1;
    tsr_tile_col_t *cols = tsr_calloc(ncols ? ncols : 1, sizeof(tsr_tile_col_t));
    int64_t **wins = tsr_calloc(ncols ? ncols : 1, sizeof(int64_t *));
    size_t f = 0, c = 0;
    for (size_t a = 0; a < g->n_aggs; a++) {
        const tsr_conf_aggregation_t *ag = &g->aggs[a];
        size_t nb = ag->n_buckets ? ag->n_buckets : 1, nw = ag->n_windows ? ag->n_windows : 1;
        for (size_t b = 0; b < nb; b++, c++) {
            tsr_tile_col_t *col = &cols[c];
            wins[c] = tsr_malloc(nw * sizeof(int64_t));
            col->agg = plan->feats[f].kernel;
            col->in_slot = plan->feats[f].in_slot;
            col->bucket_slot = plan->feats[f].bucket_slot;
            col->nwin = nw;
            col->windows = wins[c];
            for (size_t w = 0; w < nw; w++, f++) wins[c][w] = plan->feats[f].window_ms;
        }
    }
    *cols_out = cols;
    *wins_out = wins;
    return ncols;
}

void tsr_gb_online_free(tsr_gb_online_t *p) {
    if (!p) return;
    for (size_t c = 0; c < p->tiles.ncols; c++) free(p->wins[c]);
    free(p->wins);
    free(p->cols);
    tsr__gb_plan_free(&p->plan);
    free(p);
}

int tsr_gb_online_build(const tsr_conf_group_by_t *g, const char *warehouse, int64_t day_hi,
                        tsr_gb_online_t **out, tsr_error_t *err) {
    *out = NULL;
    if (!g->has_aggregations)
        return tsr_error_set(err, TSR_EUNSUPPORTED,
                             "%s: online tiles need aggregations (a GroupBy without them serves "
                             "its snapshot rows)",
                             g->meta.name);
    tsr_gb_online_t *p = tsr_calloc(1, sizeof(*p));
    p->g = g;
    p->warehouse = warehouse;
    int rc = tsr__gb_plan_build(&p->plan, g, warehouse, day_hi, day_hi, err);
    if (rc) {
        free(p);
        return rc;
    }
    if (p->plan.entity) {
        tsr_gb_online_free(p);
        return tsr_error_set(err, TSR_EUNSUPPORTED, "%s: entity GroupBys are not served from tiles yet",
                             g->meta.name);
    }
    size_t ncols = tsr__tile_cols_build(&p->plan, &p->cols, &p->wins);
    p->tiles.name = g->meta.name;
    p->tiles.ncols = ncols;
    p->tiles.cols = p->cols;
    *out = p;
    return 0;
}

const tsr_tile_gb_t *tsr_gb_online_tiles(const tsr_gb_online_t *p) { return &p->tiles; }
size_t tsr_gb_online_nslots(const tsr_gb_online_t *p) { return p->plan.nslots; }
const char *tsr_gb_online_slot(const tsr_gb_online_t *p, size_t i) { return p->plan.slot_names[i]; }

/* One key's records. ev: the key's events sorted by (ts, seq), all ts < B. */
static int key_records(tsr_gb_online_t *p, int64_t B, const rec_t *ev, size_t n, void **irs,
                       tsr_value_t *slots, tsr_arena_t *arena, tsr_batch_sink_fn sink, void *ud) {
    const tsr_tile_gb_t *t = &p->tiles;
    static const tsr_tile_kind_t kinds[] = {TSR_TILE_TAIL_5M, TSR_TILE_TAIL_1H, TSR_TILE_TAIL_1D};
    int64_t wmax[3] = {0, 0, 0};
    int lifetime = 0;
    for (size_t c = 0; c < t->ncols; c++)
        for (size_t w = 0; w < t->cols[c].nwin; w++) {
            int64_t ms = t->cols[c].windows[w];
            if (!ms) {
                lifetime = 1;
                continue;
            }
            int h = tsr_window_hop(ms) == TSR_TILE_5M ? 0 : tsr_window_hop(ms) == TSR_TILE_1H ? 1 : 2;
            if (ms > wmax[h]) wmax[h] = ms;
        }
    /* records in order: lifetime, then each hop's tiles */
    for (int h = -1; h < 3; h++) {
        if (h < 0 && !lifetime) continue;
        if (h >= 0 && !wmax[h]) continue;
        int64_t hop = h < 0 ? 0 : tsr_tile_kind_hop(kinds[h]);
        int64_t lo = h < 0 ? INT64_MIN : tsr_tile_tail_start(B, wmax[h], hop);
        size_t i = 0;
        while (i < n && ev[i].ts < lo) i++;
        while (i < n) {
            int64_t start = h < 0 ? INT64_MIN : tsr_floor_div(ev[i].ts, hop) * hop;
            int64_t end = h < 0 ? B : start + hop;
            for (size_t c = 0; c < t->ncols; c++) tsr_agg_init(t->cols[c].agg, irs[c]);
            for (; i < n && ev[i].ts < end; i++) {
                tsr_arena_reset(arena);
                tsr_reader_t rd;
                tsr_reader_init(&rd, ev[i].p + ev[i].klen, ev[i].len - ev[i].klen);
                for (size_t sidx = 0; sidx < p->plan.nslots; sidx++)
                    if (tsr_value_decode(&rd, arena, &slots[sidx])) return TSR_ECORRUPT;
                for (size_t c = 0; c < t->ncols; c++) {
                    const tsr_tile_col_t *col = &t->cols[c];
                    tsr_agg_update(col->agg, irs[c], &slots[col->in_slot],
                                   col->bucket_slot >= 0 ? &slots[col->bucket_slot] : NULL,
                                   ev[i].ts, ev[i].seq);
                }
            }
            int rc = sink(ud, ev[0].p, ev[0].klen, h < 0 ? TSR_TILE_LIFETIME : kinds[h],
                          h < 0 ? 0 : start, (const void *const *)irs);
            for (size_t c = 0; c < t->ncols; c++) tsr_agg_clear(t->cols[c].agg, irs[c]);
            if (rc) return rc;
        }
    }
    return 0;
}

int tsr_batch_compute(tsr_gb_online_t *p, int64_t batch_end, const tsr_backfill_opts_t *opts,
                      tsr_batch_sink_fn sink, void *ud, tsr_error_t *err) {
    if (tsr_floor_div(batch_end, TSR_MS_PER_DAY) * TSR_MS_PER_DAY != batch_end)
        return tsr_error_set(err, TSR_EINVAL, "batch end %lld is not a midnight", (long long)batch_end);
    /* the upload's own day must be there: a batch "as of" a day the warehouse lacks would
     * silently miss that day's events */
    int64_t last = tsr_floor_div(batch_end, TSR_MS_PER_DAY) - 1;
    int rc0 = tsr__check_gb_partitions(&p->plan, last, last, err);
    if (rc0) return rc0;
    int nthreads = opts && opts->parallelism > 0 ? opts->parallelism : 2;
    size_t nparts = (size_t)nthreads * 16;
    xctx_t x;
    memset(&x, 0, sizeof(x));
    x.nthreads = nthreads;
    x.nparts = nparts;
    x.plo = 0;
    x.phi = nparts;
    x.max_bad_rows = opts ? opts->max_bad_rows : 0;
    x.progress = opts ? opts->progress : NULL;
    x.what = p->g->meta.name;
    pthread_mutex_init(&x.mu, NULL);
    store_t *parts = tsr_malloc(nparts * sizeof(store_t));
    for (size_t i = 0; i < nparts; i++) tsr__store_init(&parts[i]);
    int rc = tsr__extract(&x, p->plan.srcs, p->plan.nsrc, 1, parts, err);
    pthread_mutex_destroy(&x.mu);
    const tsr_tile_gb_t *t = &p->tiles;
    void **irs = tsr_calloc(t->ncols ? t->ncols : 1, sizeof(void *));
    for (size_t c = 0; c < t->ncols; c++) irs[c] = tsr_malloc(tsr_agg_ir_size(t->cols[c].agg));
    tsr_value_t *slots = tsr_malloc((p->plan.nslots ? p->plan.nslots : 1) * sizeof(tsr_value_t));
    tsr_arena_t arena;
    tsr_arena_init(&arena, 1 << 14);
    for (size_t pi = 0; pi < nparts && rc == 0; pi++) {
        store_t *s = &parts[pi];
        tsr__store_sort(s);
        for (size_t i = 0; i < s->n && rc == 0;) {
            size_t k = i + 1;
            while (k < s->n && tsr__key_cmp(&s->v[i], &s->v[k]) == 0) k++;
            size_t e = i;
            while (e < k && s->v[e].ts < batch_end) e++; /* ts < B only */
            if (e > i) rc = key_records(p, batch_end, s->v + i, e - i, irs, slots, &arena, sink, ud);
            i = k;
        }
        tsr__store_free(s);
    }
    if (rc && err && err->code == 0) tsr_error_set(err, rc, "%s: batch computation failed", p->g->meta.name);
    for (size_t pi = 0; pi < nparts; pi++) tsr__store_free(&parts[pi]);
    free(parts);
    for (size_t c = 0; c < t->ncols; c++) free(irs[c]);
    free(irs);
    free(slots);
    tsr_arena_free(&arena);
    return rc;
}

/* ---- streaming */

struct tsr_gb_stream {
    const tsr_gb_online_t *p;
    const src_plan_t *src;
    tsr_vm_t *vm;
    tsr_value_t *out;
};

size_t tsr_gb_online_nsources(const tsr_gb_online_t *p) { return p->plan.nsrc; }

const char *tsr_gb_online_topic(const tsr_gb_online_t *p, size_t i, char *buf, size_t cap) {
    const tsr_conf_source_t *s = p->plan.srcs[i].src;
    if (s->kind != TSR_SOURCE_EVENTS) return NULL;
    return tsr_conf_topic_name(s->topic, buf, cap);
}

tsr_gb_stream_t *tsr_gb_stream_new(const tsr_gb_online_t *p, size_t src) {
    tsr_gb_stream_t *s = tsr_calloc(1, sizeof(*s));
    s->p = p;
    s->src = &p->plan.srcs[src];
    s->vm = tsr_vm_new(s->src->prog);
    size_t no = tsr_program_noutputs(s->src->prog);
    s->out = tsr_malloc((no ? no : 1) * sizeof(tsr_value_t));
    return s;
}

void tsr_gb_stream_free(tsr_gb_stream_t *s) {
    if (!s) return;
    tsr_vm_free(s->vm);
    free(s->out);
    free(s);
}

size_t tsr_gb_stream_columns(const tsr_gb_stream_t *s, const char *const **names,
                             const tsr_type_t **types) {
    *names = (const char *const *)s->src->table->col_names;
    *types = s->src->table->col_types;
    return s->src->table->ncols;
}

int tsr_gb_stream_eval(tsr_gb_stream_t *s, const tsr_value_t *row, tsr_buf_t *keys, size_t *klen,
                       int64_t *ts, tsr_value_t *inputs, tsr_value_t *buckets, tsr_arena_t *arena) {
    const src_plan_t *sp = s->src;
    tsr_value_t *out = s->out;
    tsr_vm_run(s->vm, row, out);
    for (size_t i = 0; i < sp->nwhere; i++)
        if (!tsr_value_truthy(&out[sp->where_out[i]])) return 0;
    if (sp->ts_out < 0) return 0;
    int ok;
    *ts = tsr__ts_of(&out[sp->ts_out], &ok);
    if (!ok) return 0;
    size_t k0 = keys->len;
    for (size_t k = 0; k < sp->nkeys; k++) {
        if (out[sp->key_out[k]].kind == TSR_NULL) {
            keys->len = k0;
            return 0;
        }
        tsr_value_encode(&out[sp->key_out[k]], keys);
    }
    *klen = keys->len - k0;
    const tsr_tile_gb_t *t = &s->p->tiles;
    for (size_t c = 0; c < t->ncols; c++) {
        const tsr_tile_col_t *col = &t->cols[c];
        int so = sp->slot_out[col->in_slot];
        inputs[c] = so >= 0 ? tsr_value_copy(&out[so], arena) : tsr_value_null();
        if (col->bucket_slot >= 0) {
            int bo = sp->slot_out[col->bucket_slot];
            buckets[c] = bo >= 0 ? tsr_value_copy(&out[bo], arena) : tsr_value_null();
        } else {
            buckets[c] = tsr_value_null();
        }
    }
    return 1;
}
