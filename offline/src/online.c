/*
 * online.c — serving plans for Joins (online.h): the backfill's Join plan, each part's tile
 * columns, and a fetch that mirrors run_join's assembly for one row:
 *
 *   request keys ──keyMapping──▶ part key ──read tiles at q (or midnight(q) for SNAPSHOT)──▶
 *   base features ──GroupBy derivations──▶ part features ──▶ Join base row
 *   (left columns from the request by name, ts = q, ds = date(q), part features, contextual
 *   columns) ──Join derivations──▶ output features
 *
 * Entity GroupBys (snapshot sources) are read through the same callback: their base features
 * are stored values of the latest upload (no tiles; the caller's read knows the GroupBy by
 * name), so a fetch at q in day E+1 after an upload of ds E equals the backfill's value.
 */
#include "offline_int.h"

#include <stdlib.h>
#include <string.h>

#include "tsr/online.h"
#include "tsr/time.h"

typedef struct part_tiles {
    int entity;                 /* entity GroupBy: values of the latest upload, no tiles */
    tsr_tile_col_t *cols;
    int64_t **wins;
    tsr_tile_gb_t tiles;
    size_t nout;                /* tile outputs = base features */
    const char *name;           /* for <name>_exception */
} part_tiles_t;

struct tsr_join_online {
    join_plan_t jp;
    part_tiles_t *parts;
};

struct tsr_join_online_ctx {
    const tsr_join_online_t *p;
    tsr_vm_t **gvm;
    tsr_value_t **gbase, **gtmp;
    tsr_vm_t *jvm;
    tsr_value_t *jbase, *jtmp;
    tsr_buf_t key;
};

void tsr_join_online_free(tsr_join_online_t *p) {
    if (!p) return;
    for (size_t i = 0; i < p->jp.nparts; i++) {
        part_tiles_t *t = &p->parts[i];
        for (size_t c = 0; c < t->tiles.ncols; c++) free(t->wins[c]);
        free(t->wins);
        free(t->cols);
        free((char *)t->name);
    }
    free(p->parts);
    tsr__join_plan_free(&p->jp);
    free(p);
}

int tsr_join_online_build(const tsr_conf_join_t *j, const char *warehouse, int64_t day_hi,
                          tsr_join_online_t **out, tsr_error_t *err) {
    *out = NULL;
    tsr_join_online_t *p = tsr_calloc(1, sizeof(*p));
    int rc = tsr__join_plan_build(&p->jp, j, warehouse, day_hi, day_hi, err);
    if (rc) {
        free(p);
        return rc;
    }
    p->parts = tsr_calloc(p->jp.nparts ? p->jp.nparts : 1, sizeof(part_tiles_t));
    for (size_t i = 0; i < p->jp.nparts; i++) {
        const gb_plan_t *gb = &p->jp.parts[i].gb;
        part_tiles_t *t = &p->parts[i];
        const tsr_conf_join_part_t *jp = p->jp.parts[i].jp;
        char clean[256];
        tsr_conf_clean_name(gb->g->meta.name, clean, sizeof clean);
        t->name = tsr_strdup(jp->prefix && jp->prefix[0] ? jp->prefix : clean);
        t->tiles.name = gb->g->meta.name;
        t->nout = gb->nfeat;
        t->entity = gb->entity || gb->passthrough;
        if (t->entity) continue; /* read as stored values, not tiles */
        t->tiles.ncols = tsr__tile_cols_build(gb, &t->cols, &t->wins);
        t->tiles.cols = t->cols;
    }
    *out = p;
    return 0;
}

size_t tsr_join_online_nparts(const tsr_join_online_t *p) { return p->jp.nparts; }
const tsr_tile_gb_t *tsr_join_online_part_tiles(const tsr_join_online_t *p, size_t i) {
    return p->parts[i].entity ? NULL : &p->parts[i].tiles;
}
const char *tsr_join_online_part_name(const tsr_join_online_t *p, size_t i) { return p->parts[i].name; }
const char *tsr_join_online_part_group_by(const tsr_join_online_t *p, size_t i) {
    return p->parts[i].tiles.name;
}
size_t tsr_join_online_part_nfeatures(const tsr_join_online_t *p, size_t i) { return p->parts[i].nout; }
size_t tsr_join_online_noutputs(const tsr_join_online_t *p) { return p->jp.deriv.nout; }
const char *tsr_join_online_output(const tsr_join_online_t *p, size_t i) {
    return p->jp.deriv.out[i].name;
}

tsr_join_online_ctx_t *tsr_join_online_ctx_new(const tsr_join_online_t *p) {
    tsr_join_online_ctx_t *c = tsr_calloc(1, sizeof(*c));
    c->p = p;
    size_t np = p->jp.nparts ? p->jp.nparts : 1;
    c->gvm = tsr_calloc(np, sizeof(tsr_vm_t *));
    c->gbase = tsr_calloc(np, sizeof(tsr_value_t *));
    c->gtmp = tsr_calloc(np, sizeof(tsr_value_t *));
    for (size_t i = 0; i < p->jp.nparts; i++) {
        const deriv_plan_t *d = &p->jp.parts[i].gb.deriv;
        if (d->prog) c->gvm[i] = tsr_vm_new(d->prog);
        c->gbase[i] = tsr_malloc((d->nbase ? d->nbase : 1) * sizeof(tsr_value_t));
        size_t no = d->prog ? tsr_program_noutputs(d->prog) : 1;
        c->gtmp[i] = tsr_malloc((no ? no : 1) * sizeof(tsr_value_t));
    }
    const deriv_plan_t *jd = &p->jp.deriv;
    if (jd->prog) c->jvm = tsr_vm_new(jd->prog);
    c->jbase = tsr_malloc((jd->nbase ? jd->nbase : 1) * sizeof(tsr_value_t));
    size_t no = jd->prog ? tsr_program_noutputs(jd->prog) : 1;
    c->jtmp = tsr_malloc((no ? no : 1) * sizeof(tsr_value_t));
    tsr_buf_init(&c->key);
    return c;
}

void tsr_join_online_ctx_free(tsr_join_online_ctx_t *c) {
    if (!c) return;
    for (size_t i = 0; i < c->p->jp.nparts; i++) {
        tsr_vm_free(c->gvm[i]);
        free(c->gbase[i]);
        free(c->gtmp[i]);
    }
    free(c->gvm);
    free(c->gbase);
    free(c->gtmp);
    tsr_vm_free(c->jvm);
    free(c->jbase);
    free(c->jtmp);
    tsr_buf_free(&c->key);
    free(c);
}

static const tsr_value_t *find_key(const char *const *names, const tsr_value_t *keys, size_t n,
                                   const char *name) {
    for (size_t i = 0; i < n; i++)
        if (strcmp(names[i], name) == 0) return &keys[i];
    return NULL;
}

int tsr_join_online_fetch(tsr_join_online_ctx_t *c, const char *const *names,
                          const tsr_value_t *keys, size_t nkeys, int64_t q, tsr_tile_read_fn read,
                          void *ud, tsr_value_t *out, const char **part_errors, tsr_arena_t *arena) {
    const tsr_join_online_t *p = c->p;
    const join_plan_t *jp = &p->jp;
    tsr_value_t *base = c->jbase;
    size_t b = 0;
    /* left columns: whatever the request carries under their names */
    for (size_t i = 0; i < jp->nleft_cols; i++) {
        const tsr_value_t *v = find_key(names, keys, nkeys, jp->left_names[i]);
        base[b++] = v ? *v : tsr_value_null();
    }
    char *ds = tsr_arena_alloc(arena, 11);
    tsr_ds_format(tsr_day_of_ms(q), ds);
    base[b++] = tsr_value_long(q);
    base[b++] = tsr_value_string(ds, 10);
    for (size_t i = 0; i < jp->nparts; i++) {
        const part_plan_t *pp = &jp->parts[i];
        const gb_plan_t *gb = &pp->gb;
        const part_tiles_t *t = &p->parts[i];
        const deriv_plan_t *d = &gb->deriv;
        tsr_value_t *gbase = c->gbase[i];
        part_errors[i] = NULL;
        int ok = 1, null_key = 0;
        tsr_buf_clear(&c->key);
        for (size_t k = 0; k < gb->nkeys && ok; k++) {
            const char *gk = gb->g->key_columns[k], *lc = gk;
            for (size_t m = 0; m < pp->jp->n_key_mapping; m++)
                if (strcmp(pp->jp->key_mapping[m].value, gk) == 0) lc = pp->jp->key_mapping[m].key;
            const tsr_value_t *v = find_key(names, keys, nkeys, lc);
            if (!v) {
                part_errors[i] = tsr_arena_printf(arena, "missing key column '%s'", lc);
                ok = 0;
                break;
            }
            gbase[k] = *v;
            if (v->kind == TSR_NULL) null_key = 1;
            else tsr_value_encode(v, &c->key);
        }
        tsr_value_t *feat = gbase + gb->nkeys;
        for (size_t f = 0; f < gb->nfeat; f++) feat[f] = tsr_value_null();
        if (ok && !null_key) {
            int64_t at = gb->snapshot ? tsr_day_of_ms(q) * TSR_MS_PER_DAY : q;
            tsr_error_t err;
            tsr_error_clear(&err);
            if (read(ud, t->tiles.name, c->key.data, c->key.len, at, feat, arena, &err) != 0) {
                part_errors[i] = tsr_arena_strdup(arena, err.msg);
                for (size_t f = 0; f < gb->nfeat; f++) feat[f] = tsr_value_null();
                ok = 0;
            }
        }
        if (!ok) {
            for (size_t f = 0; f < d->nout; f++) base[b + f] = tsr_value_null();
        } else {
            tsr__derive(d, c->gvm[i], gbase, c->gtmp[i], base + b);
        }
        b += d->nout;
    }
    for (size_t i = 0; i < jp->next; i++)
        base[b++] = jp->ext_left_col[i] >= 0 ? base[jp->ext_left_col[i]] : tsr_value_null();
    tsr__derive(&jp->deriv, c->jvm, base, c->jtmp, out);
    /* values the VMs produced live in their scratch until the next run: copy to the arena */
    for (size_t i = 0; i < jp->deriv.nout; i++) out[i] = tsr_value_copy(&out[i], arena);
    return 0;
}

/* ---- a GroupBy on its own */

struct tsr_gb_serve {
    gb_plan_t plan;
    tsr_tile_col_t *cols;
    int64_t **wins;
    tsr_tile_gb_t tiles;
};

struct tsr_gb_serve_ctx {
    const tsr_gb_serve_t *p;
    tsr_vm_t *vm;
    tsr_value_t *base, *tmp;
    tsr_buf_t key;
};

int tsr_gb_serve_build(const tsr_conf_group_by_t *g, const char *warehouse, int64_t day_hi,
                       tsr_gb_serve_t **out, tsr_error_t *err) {
    *out = NULL;
    tsr_gb_serve_t *p = tsr_calloc(1, sizeof(*p));
    int rc = tsr__gb_plan_build(&p->plan, g, warehouse, day_hi, day_hi, err);
    if (rc) {
        free(p);
        return rc;
    }
    p->tiles.name = g->meta.name;
    if (!p->plan.entity && !p->plan.passthrough) {
        p->tiles.ncols = tsr__tile_cols_build(&p->plan, &p->cols, &p->wins);
        p->tiles.cols = p->cols;
        p->tiles.name = g->meta.name;
    }
    *out = p;
    return 0;
}

void tsr_gb_serve_free(tsr_gb_serve_t *p) {
    if (!p) return;
    for (size_t c = 0; c < p->tiles.ncols; c++) free(p->wins[c]);
    free(p->wins);
    free(p->cols);
    tsr__gb_plan_free(&p->plan);
    free(p);
}

const tsr_tile_gb_t *tsr_gb_serve_tiles(const tsr_gb_serve_t *p) {
    return p->plan.entity || p->plan.passthrough ? NULL : &p->tiles;
}
size_t tsr_gb_serve_noutputs(const tsr_gb_serve_t *p) { return p->plan.deriv.nout; }
size_t tsr_gb_serve_nfeatures(const tsr_gb_serve_t *p) { return p->plan.nfeat; }
const char *tsr_gb_serve_output(const tsr_gb_serve_t *p, size_t i) { return p->plan.deriv.out[i].name; }

tsr_gb_serve_ctx_t *tsr_gb_serve_ctx_new(const tsr_gb_serve_t *p) {
    tsr_gb_serve_ctx_t *c = tsr_calloc(1, sizeof(*c));
    const deriv_plan_t *d = &p->plan.deriv;
    c->p = p;
    if (d->prog) c->vm = tsr_vm_new(d->prog);
    c->base = tsr_malloc((d->nbase ? d->nbase : 1) * sizeof(tsr_value_t));
    size_t no = d->prog ? tsr_program_noutputs(d->prog) : 1;
    c->tmp = tsr_malloc((no ? no : 1) * sizeof(tsr_value_t));
    tsr_buf_init(&c->key);
    return c;
}

void tsr_gb_serve_ctx_free(tsr_gb_serve_ctx_t *c) {
    if (!c) return;
    tsr_vm_free(c->vm);
    free(c->base);
    free(c->tmp);
    tsr_buf_free(&c->key);
    free(c);
}

int tsr_gb_serve_fetch(tsr_gb_serve_ctx_t *c, const char *const *names, const tsr_value_t *keys,
                       size_t nkeys, int64_t q, tsr_tile_read_fn read, void *ud, tsr_value_t *out,
                       tsr_arena_t *arena, tsr_error_t *err) {
    const tsr_gb_serve_t *p = c->p;
    const gb_plan_t *gb = &p->plan;
    const deriv_plan_t *d = &gb->deriv;
    tsr_value_t *base = c->base;
    int null_key = 0;
    tsr_buf_clear(&c->key);
    for (size_t k = 0; k < gb->nkeys; k++) {
        const tsr_value_t *v = find_key(names, keys, nkeys, gb->g->key_columns[k]);
        if (!v) return tsr_error_set(err, TSR_EINVAL, "missing key column '%s'", gb->g->key_columns[k]);
        base[k] = *v;
        if (v->kind == TSR_NULL) null_key = 1;
        else tsr_value_encode(v, &c->key);
    }
    tsr_value_t *feat = base + gb->nkeys;
    for (size_t f = 0; f < gb->nfeat; f++) feat[f] = tsr_value_null();
    if (!null_key) {
        int64_t at = gb->snapshot ? tsr_day_of_ms(q) * TSR_MS_PER_DAY : q;
        int rc = read(ud, p->tiles.name, c->key.data, c->key.len, at, feat, arena, err);
        if (rc) return rc;
    }
    tsr__derive(d, c->vm, base, c->tmp, out);
    for (size_t i = 0; i < d->nout; i++) out[i] = tsr_value_copy(&out[i], arena);
    return 0;
}
