/*
 * test_backfill.c — the offline engine end to end (offline/backfill.c) against a brute-force
 * point-in-time computation written here.
 *
 * A random warehouse (events in CSV and JSON Lines files, left rows, entity snapshots) is
 * written with timestamps on hop edges, at midnight, exactly at left-row times and their
 * window tails, duplicated, and with null values, keys and buckets. Joins covering every SPEC
 * §5 matrix case and a GroupBy backfill run through tsr_backfill_run; every output value is
 * compared with a direct scan of the raw events: COUNT, SUM, AVERAGE, MIN, MAX, FIRST and
 * LAST are computed by hand; LAST_K, UNIQUE_COUNT and bucketed SUM through the kernel over
 * exactly the events the window rule selects. Longs, strings, lists and maps must be equal;
 * doubles within 1e-9 relative.
 */
#include "tsr_test.h"
#include "tsr_test_json.h"

#include <ctype.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "tsr/agg.h"
#include "tsr/backfill.h"
#include "tsr/config.h"
#include "tsr/time.h"
#include "tsr/window.h"
#include "offline_int.h"

#define NKEYS 5
#define NDAYS 4
static const int64_t MIN_ = TSR_MS_PER_MINUTE, HOUR = TSR_MS_PER_HOUR, DAY = TSR_MS_PER_DAY;
static int64_t day0;

typedef struct event {
    int key;            /* -1 = null key */
    int has_amount;
    double amount;
    int64_t n;
    int cat;            /* -1 = null */
    int64_t ts;
    int64_t day;
    int order;          /* SPEC §3 row order */
} event_t;

typedef struct lrow {
    int id;
    int key;            /* -1 = null */
    int64_t ts;
    int64_t day;
} lrow_t;

typedef struct snap {
    int key;
    int64_t day;
    int64_t ts;
    double val;
    int cat;
    int order;
} snap_t;

static event_t evs[4000];
static int nev;
static lrow_t lefts[600];
static int nleft;
static snap_t snaps[200];
static int nsnap;
static const char *cats[] = {"a", "b", "c"};
static char wh[256];

static void mkdirs(const char *path) {
    char buf[512];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *p = buf + 1; *p; p++)
        if (*p == '/') {
            *p = 0;
            mkdir(buf, 0755);
            *p = '/';
        }
    mkdir(buf, 0755);
}

static FILE *open_file(const char *table, int64_t day, const char *name) {
    char ds[11], dir[400], path[512];
    tsr_ds_format(day, ds);
    snprintf(dir, sizeof dir, "%s/%s/ds=%s", wh, table, ds);
    mkdirs(dir);
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    return f;
}

static void write_schema(const char *table, const char *json) {
    char dir[400], path[512];
    snprintf(dir, sizeof dir, "%s/%s", wh, table);
    mkdirs(dir);
    snprintf(path, sizeof path, "%s/_schema.json", dir);
    FILE *f = fopen(path, "w");
    fputs(json, f);
    fclose(f);
}

/* Random data, with the SPEC §4 edges planted deliberately. */
static void make_data(tsr_rng_t *r) {
    nev = nleft = nsnap = 0;
    /* left rows first: events are then planted at their edges */
    for (int d = 1; d < NDAYS; d++) {
        int n = 60 + (int)tsr_rng_below(r, 40);
        for (int i = 0; i < n; i++) {
            lrow_t *l = &lefts[nleft];
            l->id = nleft;
            l->key = tsr_rng_below(r, 20) == 0 ? -1 : (int)tsr_rng_below(r, NKEYS + 1); /* key 5: no events */
            l->day = day0 + d;
            int64_t t = tsr_rng_range(r, 0, DAY - 1);
            if (tsr_rng_below(r, 5) == 0) t = tsr_floor_div(t, 5 * MIN_) * 5 * MIN_;
            if (tsr_rng_below(r, 20) == 0) t = 0; /* midnight */
            l->ts = l->day * DAY + t;
            nleft++;
        }
    }
    /* sort left rows by ts within day so files read naturally (not required) */
    const int64_t edges[] = {7 * MIN_, 13 * MIN_, HOUR, 12 * HOUR, 36 * HOUR, DAY, 2 * DAY};
    for (int d = 0; d < NDAYS; d++) {
        int n = 200 + (int)tsr_rng_below(r, 150);
        for (int i = 0; i < n; i++) {
            event_t *e = &evs[nev];
            e->key = tsr_rng_below(r, 40) == 0 ? -1 : (int)tsr_rng_below(r, NKEYS);
            e->has_amount = tsr_rng_below(r, 12) != 0;
            e->amount = (double)tsr_rng_range(r, -5000, 100000) / 100.0;
            e->n = tsr_rng_range(r, -20, 50);
            e->cat = tsr_rng_below(r, 10) == 0 ? -1 : (int)tsr_rng_below(r, 3);
            e->day = day0 + d;
            int pick = (int)tsr_rng_below(r, 10);
            int64_t t = tsr_rng_range(r, 0, DAY - 1);
            if (pick == 0) t = tsr_floor_div(t, 5 * MIN_) * 5 * MIN_;      /* hop edge */
            else if (pick == 1) t = tsr_floor_div(t, HOUR) * HOUR;        /* hour edge */
            else if (pick == 2) t = 0;                                    /* midnight */
            e->ts = e->day * DAY + t;
            if (pick >= 3 && pick <= 5 && nleft) {
                /* exactly at a left row's time, or at its window tail q - w */
                const lrow_t *l = &lefts[tsr_rng_below(r, (uint64_t)nleft)];
                int64_t ts = pick == 3 ? l->ts : l->ts - edges[tsr_rng_below(r, 7)];
                if (tsr_day_of_ms(ts) == e->day) {
                    e->ts = ts;
                    if (l->key >= 0 && l->key < NKEYS) e->key = l->key;
                }
            }
            if (i && tsr_rng_below(r, 15) == 0) e->ts = evs[nev - 1].ts; /* duplicate time */
            nev++;
        }
    }
    for (int d = 0; d < NDAYS; d++)
        for (int k = 0; k < NKEYS; k++) {
            int rows = (int)tsr_rng_below(r, 3); /* 0..2 rows per key and day */
            for (int i = 0; i < rows; i++) {
                snap_t *s = &snaps[nsnap++];
                s->key = k;
                s->day = day0 + d;
                s->ts = s->day * DAY + tsr_rng_range(r, -2 * DAY, DAY - 1);
                s->val = (double)tsr_rng_range(r, 0, 1000) / 10.0;
                s->cat = (int)tsr_rng_below(r, 3);
            }
        }
}

/* Writes events: per day a CSV file (first half) and a JSON Lines file (second half); the
 * row order is (day, file name, line), which `order` records. */
static void write_data(void) {
    write_schema("t/events", "{\"key\": \"string\", \"amount\": \"double\", \"n\": \"long\", "
                             "\"cat\": \"string\", \"ts\": \"long\"}");
    write_schema("t/left", "{\"id\": \"long\", \"user\": \"string\", \"ts\": \"long\"}");
    write_schema("t/snap", "{\"key\": \"string\", \"val\": \"double\", \"cat\": \"string\", "
                           "\"ts\": \"long\"}");
    int order = 0;
    for (int d = 0; d < NDAYS; d++) {
        FILE *a = open_file("t/events", day0 + d, "a.csv");
        FILE *b = open_file("t/events", day0 + d, "b.jsonl");
        fputs("ts,key,amount,n,cat\n", a);
        int first = 1;
        /* two passes: the CSV file comes first in row order */
        for (int pass = 0; pass < 2; pass++)
            for (int i = 0; i < nev; i++) {
                event_t *e = &evs[i];
                if (e->day != day0 + d || (i % 2) != pass) continue;
                e->order = order++;
                char key[16] = "", amount[32] = "", cat[8] = "";
                if (e->key >= 0) snprintf(key, sizeof key, "k%d", e->key);
                if (e->has_amount) snprintf(amount, sizeof amount, "%.2f", e->amount);
                if (e->cat >= 0) snprintf(cat, sizeof cat, "%s", cats[e->cat]);
                if (pass == 0) {
                    fprintf(a, "%lld,%s,%s,%lld,%s\n", (long long)e->ts, key, amount,
                            (long long)e->n, cat);
                } else {
                    fprintf(b, "{\"ts\": %lld, \"key\": %s%s%s, \"amount\": %s, \"n\": %lld, "
                               "\"cat\": %s%s%s}\n",
                            (long long)e->ts, e->key >= 0 ? "\"" : "", e->key >= 0 ? key : "null",
                            e->key >= 0 ? "\"" : "", e->has_amount ? amount : "null",
                            (long long)e->n, e->cat >= 0 ? "\"" : "", e->cat >= 0 ? cat : "null",
                            e->cat >= 0 ? "\"" : "");
                }
                first = 0;
            }
        (void)first;
        fclose(a);
        fclose(b);
    }
    for (int d = 0; d < NDAYS; d++) {
        FILE *f = open_file("t/left", day0 + d, "part-0.csv");
        fputs("id,user,ts\n", f);
        for (int i = 0; i < nleft; i++) {
            if (lefts[i].day != day0 + d) continue;
            if (lefts[i].key >= 0) fprintf(f, "%d,k%d,%lld\n", lefts[i].id, lefts[i].key, (long long)lefts[i].ts);
            else fprintf(f, "%d,,%lld\n", lefts[i].id, (long long)lefts[i].ts);
        }
        fclose(f);
    }
    order = 0;
    for (int d = 0; d < NDAYS; d++) {
        FILE *f = open_file("t/snap", day0 + d, "part-0.csv");
        fputs("key,val,cat,ts\n", f);
        for (int i = 0; i < nsnap; i++) {
            if (snaps[i].day != day0 + d) continue;
            snaps[i].order = order++;
            fprintf(f, "k%d,%.1f,%s,%lld\n", snaps[i].key, snaps[i].val, cats[snaps[i].cat],
                    (long long)snaps[i].ts);
        }
        fclose(f);
    }
}

/* ---- features under test */

typedef struct fspec {
    const char *op;
    const char *col;
    int64_t len;            /* 0: lifetime */
    const char *unit;       /* MINUTES HOURS DAYS */
    int k;
    const char *bucket;
} fspec_t;

static const fspec_t temporal[] = {
    {"COUNT", "amount", 7, "MINUTES", 0, NULL},  {"COUNT", "amount", 36, "HOURS", 0, NULL},
    {"SUM", "amount", 13, "MINUTES", 0, NULL},   {"SUM", "amount", 1, "HOURS", 0, NULL},
    {"SUM", "n", 1, "DAYS", 0, NULL},            {"AVERAGE", "amount", 12, "HOURS", 0, NULL},
    {"AVERAGE", "n", 0, NULL, 0, NULL},          {"MIN", "amount", 2, "DAYS", 0, NULL},
    {"MAX", "cat", 1, "HOURS", 0, NULL},         {"LAST", "cat", 1, "DAYS", 0, NULL},
    {"FIRST", "n", 0, NULL, 0, NULL},            {"LAST", "amount", 12, "DAYS", 0, NULL},
    {"LAST_K", "n", 2, "DAYS", 3, NULL},         {"UNIQUE_COUNT", "cat", 1, "DAYS", 0, NULL},
    {"SUM", "amount", 1, "DAYS", 0, "cat"},      {"COUNT", "cat", 0, NULL, 0, NULL},
};
static const fspec_t snapshot[] = {
    {"COUNT", "amount", 1, "DAYS", 0, NULL}, {"SUM", "n", 2, "DAYS", 0, NULL},
    {"MAX", "amount", 0, NULL, 0, NULL},     {"LAST", "cat", 1, "DAYS", 0, NULL},
};
static const fspec_t entity[] = {
    {"SUM", "val", 0, NULL, 0, NULL}, {"SUM", "val", 1, "DAYS", 0, NULL},
    {"LAST", "cat", 0, NULL, 0, NULL},
};
#define N(a) (sizeof(a) / sizeof((a)[0]))

static int64_t spec_ms(const fspec_t *f) {
    if (!f->len) return 0;
    tsr_time_unit_t u = strcmp(f->unit, "MINUTES") == 0 ? TSR_UNIT_MINUTES
                        : strcmp(f->unit, "HOURS") == 0 ? TSR_UNIT_HOURS
                                                        : TSR_UNIT_DAYS;
    return tsr_window_ms(f->len, u);
}

static void spec_name(const fspec_t *f, char *out, size_t n) {
    char op[32];
    size_t i = 0;
    for (; f->op[i] && i < sizeof op - 1; i++) op[i] = (char)tolower((unsigned char)f->op[i]);
    op[i] = 0;
    if (strcmp(f->op, "LAST_K") == 0) snprintf(op, sizeof op, "last%d", f->k);
    char win[16] = "";
    if (f->len) snprintf(win, sizeof win, "_%lld%c", (long long)f->len, (char)(f->unit[0] | 0x20));
    snprintf(out, n, "%s_%s%s%s%s", f->col, op, win, f->bucket ? "_by_" : "",
             f->bucket ? f->bucket : "");
}

static void aggs_json(tsr_buf_t *b, const fspec_t *fs, size_t n) {
    tsr_buf_puts(b, "[");
    for (size_t i = 0; i < n; i++) {
        const fspec_t *f = &fs[i];
        tsr_buf_printf(b, "%s{\"inputColumn\": \"%s\", \"operation\": \"%s\"", i ? "," : "",
                       f->col, f->op);
        if (f->k) tsr_buf_printf(b, ", \"argMap\": {\"k\": \"%d\"}", f->k);
        if (f->len)
            tsr_buf_printf(b, ", \"windows\": [{\"length\": %lld, \"timeUnit\": \"%s\"}]",
                           (long long)f->len, f->unit);
        if (f->bucket) tsr_buf_printf(b, ", \"buckets\": [\"%s\"]", f->bucket);
        tsr_buf_puts(b, "}");
    }
    tsr_buf_puts(b, "]");
}

static const char *events_source =
    "{\"events\": {\"table\": \"t.events\", \"query\": {\"selects\": {\"key\": \"key\", "
    "\"amount\": \"amount\", \"n\": \"n\", \"cat\": \"cat\"}, \"timeColumn\": \"ts\"}}}";
static const char *snap_source =
    "{\"entities\": {\"snapshotTable\": \"t.snap\", \"query\": {\"selects\": {\"key\": \"key\", "
    "\"val\": \"val\", \"cat\": \"cat\"}, \"timeColumn\": \"ts\"}}}";

static void group_by_json(tsr_buf_t *b, const char *name, const char *source, const char *acc,
                          const fspec_t *fs, size_t n) {
    tsr_buf_printf(b, "{\"metaData\": {\"name\": \"%s\", \"outputNamespace\": \"out\"}, "
                      "\"sources\": [%s], \"keyColumns\": [\"key\"], \"accuracy\": \"%s\"",
                   name, source, acc);
    if (fs) {
        tsr_buf_puts(b, ", \"aggregations\": ");
        aggs_json(b, fs, n);
    }
    tsr_buf_puts(b, "}");
}

static tsr_config_t *load(const char *json) {
    tsr_config_options_t opt = {TSR_DIALECT_AUTO, wh};
    tsr_config_t *c = NULL;
    tsr_diag_t d;
    tsr_diag_init(&d);
    int rc = tsr_config_load_string(json, strlen(json), "test", &opt, &c, &d);
    if (rc) {
        for (size_t i = 0; i < d.n; i++) fprintf(stderr, "%s\n", d.items[i].text);
        ck_abort_msg("config did not load: %s", d.n ? d.items[0].text : "?");
    }
    tsr_diag_free(&d);
    return c;
}

static void run_mem(tsr_config_t *c, int64_t lo, int64_t hi, int threads, uint64_t memory) {
    tsr_backfill_opts_t o;
    memset(&o, 0, sizeof o);
    o.warehouse = wh;
    o.start_day = lo;
    o.end_day = hi;
    o.format = TSR_FORMAT_JSONL;
    o.parallelism = threads;
    o.memory_bytes = memory;
    tsr_backfill_stats_t st;
    tsr_error_t err;
    tsr_error_clear(&err);
    int rc = tsr_backfill_run(c, &o, &st, &err);
    ck_assert_msg(rc == 0, "backfill failed: %s", err.msg);
}

static void run(tsr_config_t *c, int64_t lo, int64_t hi, int threads) {
    run_mem(c, lo, hi, threads, 0);
}

/* ---- brute force */

typedef struct sel {
    const event_t **v;
    int n;
} sel_t;

static int order_cmp(const void *a, const void *b) {
    const event_t *x = *(const event_t *const *)a, *y = *(const event_t *const *)b;
    return x->order - y->order;
}

static tsr_value_t col_value(const event_t *e, const char *col) {
    if (strcmp(col, "amount") == 0) return e->has_amount ? tsr_value_double(e->amount) : tsr_value_null();
    if (strcmp(col, "n") == 0) return tsr_value_long(e->n);
    if (strcmp(col, "cat") == 0)
        return e->cat >= 0 ? tsr_value_string(cats[e->cat], 1) : tsr_value_null();
    return tsr_value_null();
}

/* Expected value of f over the selected events (any order in; sorted by row order here). */
static tsr_value_t expect(const fspec_t *f, sel_t *s, tsr_arena_t *a) {
    qsort(s->v, (size_t)s->n, sizeof(*s->v), order_cmp);
    const char *op = f->op;
    if (!f->bucket && (strcmp(op, "COUNT") == 0 || strcmp(op, "SUM") == 0 ||
                       strcmp(op, "AVERAGE") == 0 || strcmp(op, "MIN") == 0 ||
                       strcmp(op, "MAX") == 0 || strcmp(op, "LAST") == 0 ||
                       strcmp(op, "FIRST") == 0)) {
        int64_t cnt = 0, lsum = 0;
        double dsum = 0;
        const event_t *best = NULL;
        tsr_value_t ext = tsr_value_null();
        for (int i = 0; i < s->n; i++) {
            const event_t *e = s->v[i];
            tsr_value_t v = col_value(e, f->col);
            if (v.kind == TSR_NULL) continue;
            cnt++;
            if (v.kind == TSR_LONG) lsum += v.u.l;
            if (v.kind == TSR_DOUBLE) dsum += v.u.d;
            if (strcmp(op, "MIN") == 0 && (ext.kind == TSR_NULL || tsr_value_cmp(&v, &ext) < 0)) ext = v;
            if (strcmp(op, "MAX") == 0 && (ext.kind == TSR_NULL || tsr_value_cmp(&v, &ext) > 0)) ext = v;
            /* LAST: greatest ts, earliest row on ties; FIRST: smallest ts, earliest row */
            if (strcmp(op, "LAST") == 0 && (!best || e->ts > best->ts)) best = e;
            if (strcmp(op, "FIRST") == 0 && (!best || e->ts < best->ts)) best = e;
        }
        if (cnt == 0) return tsr_value_null();
        int is_long = strcmp(f->col, "n") == 0;
        if (strcmp(op, "COUNT") == 0) return tsr_value_long(cnt);
        if (strcmp(op, "SUM") == 0) return is_long ? tsr_value_long(lsum) : tsr_value_double(dsum);
        if (strcmp(op, "AVERAGE") == 0)
            return tsr_value_double((is_long ? (double)lsum : dsum) / (double)cnt);
        if (strcmp(op, "MIN") == 0 || strcmp(op, "MAX") == 0) return ext;
        return col_value(best, f->col);
    }
    /* other ops: the kernel over exactly the selected events */
    tsr_type_t t = strcmp(f->col, "amount") == 0 ? TSR_DOUBLE : strcmp(f->col, "n") == 0 ? TSR_LONG : TSR_STRING;
    tsr_op_t opv;
    ck_assert_int_eq(tsr_op_from_name(op, &opv), 0);
    tsr_agg_spec_t spec = {opv, t, f->bucket != NULL, f->k, 0, NULL};
    tsr_agg_t *agg;
    tsr_error_t err;
    ck_assert_int_eq(tsr_agg_new(&spec, &agg, &err), 0);
    uint8_t *ir = tsr_malloc(tsr_agg_ir_size(agg));
    tsr_agg_init(agg, ir);
    for (int i = 0; i < s->n; i++) {
        tsr_value_t v = col_value(s->v[i], f->col);
        tsr_value_t bkt = f->bucket ? col_value(s->v[i], f->bucket) : tsr_value_null();
        tsr_agg_update(agg, ir, &v, f->bucket ? &bkt : NULL, s->v[i]->ts, (uint64_t)s->v[i]->order);
    }
    tsr_value_t out = tsr_agg_finalize(agg, ir, a);
    tsr_agg_clear(agg, ir);
    free(ir);
    tsr_agg_free(agg);
    return out;
}


static void assert_same(const char *what, int id, const char *col, tsr_value_t got, tsr_value_t want) {
    /* the writer prints 2.0 for a double 2: compare numbers as numbers of the expected kind */
    if (got.kind == TSR_LONG && want.kind == TSR_DOUBLE) got = tsr_value_double((double)got.u.l);
    if (!tsr_value_close(&got, &want)) {
        tsr_buf_t a, b;
        tsr_buf_init(&a);
        tsr_buf_init(&b);
        tsr_value_to_json(&got, &a);
        tsr_value_to_json(&want, &b);
        ck_abort_msg("%s: row %d: %s = %s, brute force %s", what, id, col, tsr_buf_cstr(&a),
                     tsr_buf_cstr(&b));
    }
}

/* Reads output rows of table out/<clean> keyed by "id" (Joins) into rows[id]. */
static int read_output(const char *clean, int64_t lo, int64_t hi, json_t **rows, int nrows) {
    int count = 0;
    for (int64_t d = lo; d <= hi; d++) {
        char ds[11], path[512];
        tsr_ds_format(d, ds);
        snprintf(path, sizeof path, "%s/out/%s/ds=%s/part-00000.jsonl", wh, clean, ds);
        FILE *f = fopen(path, "r");
        ck_assert_msg(f != NULL, "missing output %s", path);
        char line[65536];
        while (fgets(line, sizeof line, f)) {
            json_error_t je;
            json_t *j = json_loads(line, 0, &je);
            ck_assert_ptr_nonnull(j);
            json_t *jid = json_object_get(j, "id");
            ck_assert(json_is_integer(jid));
            int id = (int)json_integer_value(jid);
            ck_assert(id >= 0 && id < nrows);
            ck_assert_msg(rows[id] == NULL, "left row %d written twice", id);
            ck_assert_str_eq(json_string_value(json_object_get(j, "ds")), ds);
            rows[id] = j;
            count++;
        }
        fclose(f);
    }
    return count;
}

/* Events of key k selected for the TEMPORAL rule at q (window w; 0 = lifetime). */
static void select_temporal(sel_t *s, int k, int64_t q, int64_t w) {
    s->n = 0;
    for (int i = 0; i < nev; i++)
        if (evs[i].key == k && tsr_window_contains(q, w, evs[i].ts)) s->v[s->n++] = &evs[i];
}

/* SNAPSHOT rule: end - w <= ts < end. */
static void select_snapshot(sel_t *s, int k, int64_t end, int64_t w) {
    s->n = 0;
    for (int i = 0; i < nev; i++)
        if (evs[i].key == k && evs[i].ts < end && (w == 0 || evs[i].ts >= end - w))
            s->v[s->n++] = &evs[i];
}

static void setup_warehouse(uint64_t seed) {
    tsr_rng_t rng = {.s = seed};
    snprintf(wh, sizeof wh, "/tmp/tsr_test_backfill_XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(wh));
    ck_assert_int_eq(tsr_ds_parse("2024-03-09", &day0), 0);
    make_data(&rng);
    write_data();
}

static void remove_warehouse(void) {
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", wh);
    ck_assert_int_eq(system(cmd), 0);
}

START_TEST(test_join_events_left_all_cases) {
    setup_warehouse(900 + (uint64_t)_i);

    tsr_buf_t b;
    tsr_buf_init(&b);
    tsr_buf_puts(&b, "{\"metaData\": {\"name\": \"t.join.v1\", \"outputNamespace\": \"out\"}, "
                     "\"left\": {\"events\": {\"table\": \"t.left\", \"query\": {\"selects\": "
                     "{\"id\": \"id\", \"user\": \"user\"}, \"timeColumn\": \"ts\"}}}, "
                     "\"joinParts\": [{\"prefix\": \"p1\", \"keyMapping\": {\"user\": \"key\"}, "
                     "\"groupBy\": ");
    group_by_json(&b, "t.temporal.v1", events_source, "TEMPORAL", temporal, N(temporal));
    tsr_buf_puts(&b, "}, {\"keyMapping\": {\"user\": \"key\"}, \"groupBy\": ");
    group_by_json(&b, "t.snapshot.v1", events_source, "SNAPSHOT", snapshot, N(snapshot));
    tsr_buf_puts(&b, "}, {\"keyMapping\": {\"user\": \"key\"}, \"groupBy\": ");
    group_by_json(&b, "t.entity.v1", snap_source, "SNAPSHOT", entity, N(entity));
    tsr_buf_puts(&b, "}, {\"keyMapping\": {\"user\": \"key\"}, \"groupBy\": ");
    group_by_json(&b, "t.profile.v1", snap_source, "SNAPSHOT", NULL, 0);
    tsr_buf_puts(&b, "}], \"derivations\": [{\"name\": \"*\", \"expression\": \"*\"}, "
                     "{\"name\": \"half_sum\", \"expression\": "
                     "\"p1_t_temporal_v1_amount_sum_1h / 2\"}]}");
    tsr_config_t *c = load(tsr_buf_cstr(&b));
    int threads = 1 + _i % 2;
    run(c, day0 + 1, day0 + NDAYS - 1, threads);
    if (_i == 0) {
        /* the same Join in several key-partition passes (a tiny memory budget): same bytes */
        char cmd[1200];
        snprintf(cmd, sizeof cmd, "cp -r '%s/out/t_join_v1' '%s/one_pass'", wh, wh);
        ck_assert_int_eq(system(cmd), 0);
        run_mem(c, day0 + 1, day0 + NDAYS - 1, threads, 4096);
        snprintf(cmd, sizeof cmd, "diff -r '%s/out/t_join_v1' '%s/one_pass' >/dev/null", wh, wh);
        ck_assert_msg(system(cmd) == 0, "a multi-pass Join changed the output");
    }

    json_t **rows = tsr_calloc((size_t)nleft, sizeof(json_t *));
    ck_assert_int_eq(read_output("t_join_v1", day0 + 1, day0 + NDAYS - 1, rows, nleft), nleft);
    tsr_arena_t a;
    tsr_arena_init(&a, 0);
    sel_t s = {tsr_malloc((size_t)(nev + nsnap + 1) * sizeof(event_t *)), 0};
    char name[128], col[256];
    for (int i = 0; i < nleft; i++) {
        const lrow_t *l = &lefts[i];
        json_t *r = rows[i];
        ck_assert_msg(r != NULL, "left row %d missing", i);
        ck_assert_int_eq(json_integer_value(json_object_get(r, "ts")), l->ts);
        tsr_arena_reset(&a);
        for (size_t f = 0; f < N(temporal); f++) {
            spec_name(&temporal[f], name, sizeof name);
            snprintf(col, sizeof col, "p1_t_temporal_v1_%s", name);
            tsr_value_t want = tsr_value_null();
            if (l->key >= 0) {
                select_temporal(&s, l->key, l->ts, spec_ms(&temporal[f]));
                want = expect(&temporal[f], &s, &a);
            }
            ck_assert_msg(json_object_get(r, col) != NULL, "no column %s", col);
            assert_same("temporal", i, col, tsr_test_json_value(json_object_get(r, col), &a), want);
        }
        int64_t midnight = tsr_day_of_ms(l->ts) * DAY;
        for (size_t f = 0; f < N(snapshot); f++) {
            spec_name(&snapshot[f], name, sizeof name);
            snprintf(col, sizeof col, "t_snapshot_v1_%s", name);
            tsr_value_t want = tsr_value_null();
            if (l->key >= 0) {
                select_snapshot(&s, l->key, midnight, spec_ms(&snapshot[f]));
                want = expect(&snapshot[f], &s, &a);
            }
            assert_same("snapshot", i, col, tsr_test_json_value(json_object_get(r, col), &a), want);
        }
        /* entity parts: the snapshot partition of the day before */
        int64_t sday = tsr_day_of_ms(l->ts) - 1;
        static event_t as_ev[200];
        s.n = 0;
        int nrows_day = 0;
        const snap_t *last_row = NULL;
        for (int k = 0; k < nsnap; k++) {
            const snap_t *sn = &snaps[k];
            if (sn->key != l->key || sn->day != sday) continue;
            nrows_day++;
            if (!last_row || sn->ts > last_row->ts || (sn->ts == last_row->ts && sn->order > last_row->order))
                last_row = sn;
        }
        for (size_t f = 0; f < N(entity); f++) {
            spec_name(&entity[f], name, sizeof name);
            snprintf(col, sizeof col, "t_entity_v1_%s", name);
            int64_t w = spec_ms(&entity[f]);
            s.n = 0;
            for (int k = 0; k < nsnap && l->key >= 0; k++) {
                const snap_t *sn = &snaps[k];
                if (sn->key != l->key || sn->day != sday) continue;
                if (w && (sn->ts < (sday + 1) * DAY - w || sn->ts >= (sday + 1) * DAY)) continue;
                event_t *e = &as_ev[s.n];
                memset(e, 0, sizeof *e);
                e->key = sn->key;
                e->has_amount = 1;
                e->amount = sn->val;
                e->cat = sn->cat;
                e->ts = sn->ts;
                e->order = sn->order;
                s.v[s.n++] = e;
            }
            fspec_t fs = entity[f];
            if (strcmp(fs.col, "val") == 0) fs.col = "amount"; /* same accessor */
            tsr_value_t want = s.n ? expect(&fs, &s, &a) : tsr_value_null();
            assert_same("entity", i, col, tsr_test_json_value(json_object_get(r, col), &a), want);
        }
        /* passthrough: the last row of that day */
        tsr_value_t want_val = tsr_value_null(), want_cat = tsr_value_null();
        if (last_row && l->key >= 0) {
            want_val = tsr_value_double(last_row->val);
            want_cat = tsr_value_string(cats[last_row->cat], 1);
        }
        assert_same("profile", i, "t_profile_v1_val", tsr_test_json_value(json_object_get(r, "t_profile_v1_val"), &a), want_val);
        assert_same("profile", i, "t_profile_v1_cat", tsr_test_json_value(json_object_get(r, "t_profile_v1_cat"), &a), want_cat);
        /* derivation */
        tsr_value_t sum1h = tsr_test_json_value(json_object_get(r, "p1_t_temporal_v1_amount_sum_1h"), &a);
        tsr_value_t half = sum1h.kind == TSR_NULL ? tsr_value_null() : tsr_value_double(sum1h.u.d / 2);
        assert_same("derivation", i, "half_sum", tsr_test_json_value(json_object_get(r, "half_sum"), &a), half);
        (void)nrows_day;
    }
    for (int i = 0; i < nleft; i++) json_decref(rows[i]);
    free(rows);
    free(s.v);
    tsr_arena_free(&a);
    tsr_buf_free(&b);
    tsr_config_free(c);
    remove_warehouse();
}
END_TEST

/* GroupBy backfill: one row per (key, ds) with any non-null feature, values at the end of
 * ds; an entities-left Join reads the left row's own ds. */
START_TEST(test_group_by_and_entity_left) {
    setup_warehouse(1300 + (uint64_t)_i);
    tsr_buf_t b;
    tsr_buf_init(&b);
    group_by_json(&b, "t.temporal.v1", events_source, "TEMPORAL", temporal, N(temporal));
    tsr_config_t *c = load(tsr_buf_cstr(&b));
    run(c, day0 + 1, day0 + NDAYS - 1, 1 + _i % 2);
    tsr_arena_t a;
    tsr_arena_init(&a, 0);
    sel_t s = {tsr_malloc((size_t)(nev + 1) * sizeof(event_t *)), 0};
    char name[128];
    for (int64_t d = day0 + 1; d <= day0 + NDAYS - 1; d++) {
        char ds[11], path[512];
        tsr_ds_format(d, ds);
        snprintf(path, sizeof path, "%s/out/t_temporal_v1/ds=%s/part-00000.jsonl", wh, ds);
        FILE *f = fopen(path, "r");
        ck_assert_msg(f != NULL, "missing %s", path);
        int seen[NKEYS] = {0};
        char line[65536], prev[16] = "";
        while (fgets(line, sizeof line, f)) {
            json_t *j = json_loads(line, 0, NULL);
            ck_assert_ptr_nonnull(j);
            const char *key = json_string_value(json_object_get(j, "key"));
            ck_assert_ptr_nonnull(key);
            ck_assert_msg(strcmp(prev, key) < 0 || !prev[0], "rows not ordered by key");
            snprintf(prev, sizeof prev, "%s", key);
            int k = atoi(key + 1);
            ck_assert(k >= 0 && k < NKEYS && !seen[k]);
            seen[k] = 1;
            ck_assert_str_eq(json_string_value(json_object_get(j, "ds")), ds);
            tsr_arena_reset(&a);
            for (size_t fi = 0; fi < N(temporal); fi++) {
                spec_name(&temporal[fi], name, sizeof name);
                select_temporal(&s, k, (d + 1) * DAY, spec_ms(&temporal[fi]));
                assert_same("groupby", k, name, tsr_test_json_value(json_object_get(j, name), &a),
                            expect(&temporal[fi], &s, &a));
            }
            json_decref(j);
        }
        fclose(f);
        /* a key with any event before the end of ds has a lifetime feature: it must be there */
        for (int k = 0; k < NKEYS; k++) {
            int any = 0;
            for (int i = 0; i < nev && !any; i++) any = evs[i].key == k && evs[i].ts < (d + 1) * DAY;
            ck_assert_msg(seen[k] == any, "key k%d on %s: written %d, expected %d", k, ds, seen[k], any);
        }
    }
    tsr_config_free(c);

    /* entities left: the left table read as snapshots; features as of the end of its ds */
    tsr_buf_clear(&b);
    tsr_buf_puts(&b, "{\"metaData\": {\"name\": \"t.ent_join.v1\", \"outputNamespace\": \"out\"}, "
                     "\"left\": {\"entities\": {\"snapshotTable\": \"t.left\", \"query\": "
                     "{\"selects\": {\"id\": \"id\", \"user\": \"user\"}, \"timeColumn\": \"ts\"}}}, "
                     "\"joinParts\": [{\"keyMapping\": {\"user\": \"key\"}, \"groupBy\": ");
    group_by_json(&b, "t.temporal.v1", events_source, "TEMPORAL", temporal, N(temporal));
    tsr_buf_puts(&b, "}, {\"keyMapping\": {\"user\": \"key\"}, \"groupBy\": ");
    group_by_json(&b, "t.profile.v1", snap_source, "SNAPSHOT", NULL, 0);
    tsr_buf_puts(&b, "}]}");
    c = load(tsr_buf_cstr(&b));
    run(c, day0 + 1, day0 + NDAYS - 1, 2);
    json_t **rows = tsr_calloc((size_t)nleft, sizeof(json_t *));
    ck_assert_int_eq(read_output("t_ent_join_v1", day0 + 1, day0 + NDAYS - 1, rows, nleft), nleft);
    char col[256];
    for (int i = 0; i < nleft; i++) {
        const lrow_t *l = &lefts[i];
        tsr_arena_reset(&a);
        int64_t end = (l->day + 1) * DAY;
        for (size_t fi = 0; fi < N(temporal); fi++) {
            spec_name(&temporal[fi], name, sizeof name);
            snprintf(col, sizeof col, "t_temporal_v1_%s", name);
            tsr_value_t want = tsr_value_null();
            if (l->key >= 0) {
                select_temporal(&s, l->key, end, spec_ms(&temporal[fi]));
                want = expect(&temporal[fi], &s, &a);
            }
            assert_same("entity-left", i, col, tsr_test_json_value(json_object_get(rows[i], col), &a), want);
        }
        const snap_t *last = NULL;
        for (int k = 0; k < nsnap; k++) {
            const snap_t *sn = &snaps[k];
            if (sn->key != l->key || sn->day != l->day) continue;
            if (!last || sn->ts > last->ts || (sn->ts == last->ts && sn->order > last->order)) last = sn;
        }
        tsr_value_t want = last && l->key >= 0 ? tsr_value_double(last->val) : tsr_value_null();
        assert_same("entity-left", i, "t_profile_v1_val", tsr_test_json_value(json_object_get(rows[i], "t_profile_v1_val"), &a), want);
        json_decref(rows[i]);
    }
    free(rows);
    free(s.v);
    tsr_arena_free(&a);
    tsr_buf_free(&b);
    tsr_config_free(c);
    remove_warehouse();
}
END_TEST

/* A missing partition names its path; bad rows fail the run unless tolerated; a rerun gives
 * identical bytes. */
START_TEST(test_errors_and_rerun) {
    setup_warehouse(77);
    tsr_buf_t b;
    tsr_buf_init(&b);
    group_by_json(&b, "t.temporal.v1", events_source, "TEMPORAL", temporal, N(temporal));
    tsr_config_t *c = load(tsr_buf_cstr(&b));
    tsr_backfill_opts_t o;
    memset(&o, 0, sizeof o);
    o.warehouse = wh;
    o.start_day = day0 + 1;
    o.end_day = day0 + NDAYS - 1;
    o.format = TSR_FORMAT_CSV;
    tsr_backfill_stats_t st;
    tsr_error_t err;
    ck_assert_int_eq(tsr_backfill_run(c, &o, &st, &err), 0);
    char path[512], cmd[1200];
    snprintf(path, sizeof path, "%s/out/t_temporal_v1", wh);
    snprintf(cmd, sizeof cmd, "cp -r '%s' '%s.first'", path, path);
    ck_assert_int_eq(system(cmd), 0);
    o.parallelism = 2;
    ck_assert_int_eq(tsr_backfill_run(c, &o, &st, &err), 0);
    snprintf(cmd, sizeof cmd, "diff -r '%s' '%s.first' >/dev/null", path, path);
    ck_assert_msg(system(cmd) == 0, "a rerun (other parallelism) changed the output");
    /* a memory budget far below the input: several key-partition passes, same bytes */
    o.memory_bytes = 8192;
    ck_assert_int_eq(tsr_backfill_run(c, &o, &st, &err), 0);
    ck_assert_msg(system(cmd) == 0, "a multi-pass run changed the output");
    o.memory_bytes = 0;

    /* a bad row: an error naming file:line, unless --max-bad-rows allows it */
    char ds[11];
    tsr_ds_format(day0 + 2, ds);
    snprintf(cmd, sizeof cmd, "printf '%%s\\n' 'notanumber,k1,1.0,3,a' >> '%s/t/events/ds=%s/a.csv'", wh, ds);
    ck_assert_int_eq(system(cmd), 0);
    tsr_error_clear(&err);
    ck_assert_int_eq(tsr_backfill_run(c, &o, &st, &err), TSR_ECORRUPT);
    ck_assert_msg(strstr(err.msg, "a.csv:") && strstr(err.msg, "column 'ts'"), "%s", err.msg);
    o.max_bad_rows = 1;
    ck_assert_int_eq(tsr_backfill_run(c, &o, &st, &err), 0);
    ck_assert_uint_eq(st.bad_rows, 1);

    /* a missing partition */
    snprintf(cmd, sizeof cmd, "rm -rf '%s/t/events/ds=%s'", wh, ds);
    ck_assert_int_eq(system(cmd), 0);
    tsr_error_clear(&err);
    ck_assert_int_eq(tsr_backfill_run(c, &o, &st, &err), TSR_ENOTFOUND);
    ck_assert_msg(strstr(err.msg, ds) && strstr(err.msg, "t/events"), "%s", err.msg);
    tsr_config_free(c);
    tsr_buf_free(&b);
    remove_warehouse();
}
END_TEST

/* GroupBy derivations inside a Join part, a contextual external part, the left query's
 * startPartition narrowing the days written, and an empty left partition. */
START_TEST(test_derivations_contextual_ranges) {
    setup_warehouse(555);
    /* day0+3's left partition becomes empty (header only) */
    FILE *f = open_file("t/left", day0 + 3, "part-0.csv");
    fputs("id,user,ts\n", f);
    fclose(f);
    char sp[11];
    tsr_ds_format(day0 + 2, sp);
    tsr_buf_t b;
    tsr_buf_init(&b);
    tsr_buf_printf(&b, "{\"metaData\": {\"name\": \"t.ctx.v1\", \"outputNamespace\": \"out\"}, "
                       "\"left\": {\"events\": {\"table\": \"t.left\", \"query\": {\"selects\": "
                       "{\"id\": \"id\", \"user\": \"user\"}, \"timeColumn\": \"ts\", "
                       "\"startPartition\": \"%s\"}}}, "
                       "\"joinParts\": [{\"keyMapping\": {\"user\": \"key\"}, \"groupBy\": "
                       "{\"metaData\": {\"name\": \"t.d.v1\"}, \"sources\": [%s], "
                       "\"keyColumns\": [\"key\"], \"accuracy\": \"TEMPORAL\", \"aggregations\": ["
                       "{\"inputColumn\": \"amount\", \"operation\": \"COUNT\", \"windows\": "
                       "[{\"length\": 1, \"timeUnit\": \"DAYS\"}]}, "
                       "{\"inputColumn\": \"amount\", \"operation\": \"SUM\", \"windows\": "
                       "[{\"length\": 1, \"timeUnit\": \"DAYS\"}]}], "
                       "\"derivations\": [{\"name\": \"avg_1d\", \"expression\": "
                       "\"amount_sum_1d / amount_count_1d\"}, {\"name\": \"*\", \"expression\": \"*\"}]}}], "
                       "\"onlineExternalParts\": [{\"source\": {\"metadata\": {\"name\": \"contextual\"}, "
                       "\"keySchema\": {\"kind\": 13, \"params\": [{\"name\": \"id\", \"dataType\": "
                       "{\"kind\": 4}}]}, \"valueSchema\": {\"kind\": 13, \"params\": [{\"name\": \"id\", "
                       "\"dataType\": {\"kind\": 4}}, {\"name\": \"missing\", \"dataType\": {\"kind\": 7}}]}}}]}",
                   sp, events_source);
    tsr_config_t *c = load(tsr_buf_cstr(&b));
    ck_assert_int_eq(c->n_columns, 2 + 2 + 3 + 2);
    ck_assert_str_eq(c->columns[4].name, "t_d_v1_avg_1d");
    run(c, day0 + 1, day0 + NDAYS - 1, 2);
    char dir[600];
    snprintf(dir, sizeof dir, "%s/out/t_ctx_v1/ds=%s", wh, sp);
    struct stat st;
    ck_assert_msg(stat(dir, &st) == 0, "startPartition day missing");
    char ds1[11];
    tsr_ds_format(day0 + 1, ds1);
    snprintf(dir, sizeof dir, "%s/out/t_ctx_v1/ds=%s", wh, ds1);
    ck_assert_msg(stat(dir, &st) != 0, "a day before the left's startPartition was written");
    /* rows of day0+2 only: day0+3's partition is empty and day0+1 is before startPartition */
    int want_rows = 0;
    for (int i = 0; i < nleft; i++) want_rows += lefts[i].day == day0 + 2;
    json_t **rows = tsr_calloc((size_t)nleft, sizeof(json_t *));
    ck_assert_int_eq(read_output("t_ctx_v1", day0 + 2, day0 + 3, rows, nleft), want_rows);
    tsr_arena_t a;
    tsr_arena_init(&a, 0);
    sel_t sel = {tsr_malloc((size_t)(nev + 1) * sizeof(event_t *)), 0};
    fspec_t cnt = {"COUNT", "amount", 1, "DAYS", 0, NULL}, sum = {"SUM", "amount", 1, "DAYS", 0, NULL};
    for (int i = 0; i < nleft; i++) {
        if (!rows[i]) continue;
        const lrow_t *l = &lefts[i];
        tsr_arena_reset(&a);
        tsr_value_t wc = tsr_value_null(), ws = tsr_value_null(), wa = tsr_value_null();
        if (l->key >= 0) {
            select_temporal(&sel, l->key, l->ts, DAY);
            wc = expect(&cnt, &sel, &a);
            ws = expect(&sum, &sel, &a);
            if (wc.kind != TSR_NULL) wa = tsr_value_double(ws.u.d / (double)wc.u.l);
        }
        assert_same("ctx", i, "t_d_v1_amount_count_1d", tsr_test_json_value(json_object_get(rows[i], "t_d_v1_amount_count_1d"), &a), wc);
        assert_same("ctx", i, "t_d_v1_amount_sum_1d", tsr_test_json_value(json_object_get(rows[i], "t_d_v1_amount_sum_1d"), &a), ws);
        assert_same("ctx", i, "t_d_v1_avg_1d", tsr_test_json_value(json_object_get(rows[i], "t_d_v1_avg_1d"), &a), wa);
        assert_same("ctx", i, "ext_contextual_id", tsr_test_json_value(json_object_get(rows[i], "ext_contextual_id"), &a), tsr_value_long(l->id));
        ck_assert(json_is_null(json_object_get(rows[i], "ext_contextual_missing")));
        json_decref(rows[i]);
    }
    free(rows);
    free(sel.v);
    tsr_arena_free(&a);
    tsr_buf_free(&b);
    tsr_config_free(c);
    remove_warehouse();
}
END_TEST

/* tsr__sort_recs against qsort with the same order, on inputs shaped like the engine's: keys
 * whose records come as a few sorted runs, keys in random order, hash collisions. */
static int ref_cmp(const void *pa, const void *pb) {
    const rec_t *a = pa, *b = pb;
    int c = tsr__key_cmp(a, b);
    if (c) return c;
    if (a->day != b->day) return a->day < b->day ? -1 : 1;
    if (a->ts != b->ts) return a->ts < b->ts ? -1 : 1;
    return a->seq < b->seq ? -1 : a->seq > b->seq;
}

START_TEST(test_sort_recs) {
    tsr_rng_t r = {.s = 4040 + (uint64_t)_i};
    size_t n = 5000 + tsr_rng_below(&r, 60000);
    rec_t *v = tsr_malloc(n * sizeof(rec_t)), *w = tsr_malloc(n * sizeof(rec_t));
    static uint8_t keys[64][2];
    for (int k = 0; k < 64; k++) {
        keys[k][0] = (uint8_t)k;
        keys[k][1] = (uint8_t)(k * 7);
    }
    int nruns = 1 + (int)tsr_rng_below(&r, 20);
    for (size_t i = 0; i < n; i++) {
        int k = (int)tsr_rng_below(&r, 64);
        /* a few keys share a hash: the key bytes must keep them apart */
        v[i].hash = tsr_hash_u64((uint64_t)(k < 4 ? 0 : k)) | (_i % 2 ? 0 : 0xffff000000000000ULL);
        v[i].p = keys[k];
        v[i].klen = 2;
        v[i].len = 2;
        /* runs: time grows within each of nruns segments of the input (the merge path); every
         * third seed adds random days and jitter (the sort path) */
        int messy = _i % 3 == 0;
        size_t run = i * (size_t)nruns / n;
        v[i].day = messy ? (int64_t)tsr_rng_below(&r, 3) : 0;
        v[i].ts = (int64_t)(i - run * n / (size_t)nruns) / 3 + (messy ? (int64_t)tsr_rng_below(&r, 2) : 0);
        v[i].seq = i;
    }
    memcpy(w, v, n * sizeof(rec_t));
    /* the same records through stores: two "threads" pushing blocks, merged, sorted in place */
    store_t st[2];
    tsr__store_init(&st[0]);
    tsr__store_init(&st[1]);
    for (size_t i = 0; i < n; i++) {
        rec_t *x = tsr__store_push(&st[i * 2 / n], v[i].p, v[i].len);
        const uint8_t *payload = x->p;
        *x = v[i];
        x->p = payload;
    }
    tsr__store_take(&st[0], &st[1]);
    tsr__store_sort(&st[0]);
    tsr__sort_recs(v, n);
    qsort(w, n, sizeof(rec_t), ref_cmp);
    ck_assert_uint_eq(st[0].n, n);
    for (size_t i = 0; i < n; i++) {
        ck_assert_msg(v[i].seq == w[i].seq, "differs at %zu of %zu", i, n);
        ck_assert_msg(st[0].v[i].seq == w[i].seq, "store sort differs at %zu of %zu", i, n);
    }
    tsr__store_free(&st[0]);
    tsr__store_free(&st[1]);
    free(v);
    free(w);
}
END_TEST

static Suite *backfill_suite(void) {
    Suite *s = suite_create("backfill");
    TCase *tc = tcase_create("e2e");
    tcase_set_timeout(tc, 300);
    tcase_add_loop_test(tc, test_join_events_left_all_cases, 0, 4);
    tcase_add_loop_test(tc, test_group_by_and_entity_left, 0, 2);
    tcase_add_test(tc, test_errors_and_rerun);
    tcase_add_test(tc, test_derivations_contextual_ranges);
    tcase_add_loop_test(tc, test_sort_recs, 0, 12);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return tsr_test_run(backfill_suite()); }
