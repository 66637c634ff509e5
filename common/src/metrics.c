/*
 * metrics.c — the Prometheus registry of metrics.h and its text exposition writer.
 *
 * Design. The registry owns a singly linked list of families (registration order); each
 * family owns a singly linked list of children (creation order). Both lists only grow, under
 * the registry mutex. A child's state is a few _Atomic uint64_t words: counters count, gauges
 * and histogram sums hold a double's bits (updated with a compare-and-swap loop), histogram
 * buckets hold non-cumulative counts. Label values and the `le` strings of bounds are rendered
 * once (escaped) when a child or family is created, so writing is a walk plus number printing.
 *
 * Invariants: see metrics.h (append-only, deterministic order, +Inf bucket == _count).
 */
#include "tsr/metrics.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

const double tsr_metrics_latency_buckets[TSR_METRICS_LATENCY_NBUCKETS] = {
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
    0.05,    0.1,    0.25,    0.5,    1.0,   2.5,    5.0,   10.0};

typedef enum metric_type { M_COUNTER, M_GAUGE, M_HISTOGRAM } metric_type_t;

/* One child: the handle types are all this struct. */
typedef struct child {
    struct child *next;
    struct tsr_metric_family *fam;
    char *values[TSR_METRICS_MAX_LABELS]; /* raw label values, for lookup */
    char *label_text;   /* `a="x",b="y"` escaped, "" when unlabelled */
    _Atomic uint64_t word;  /* counter: count; gauge: double bits; histogram: sum bits */
    _Atomic uint64_t *buckets; /* histogram: nbounds + 1 non-cumulative counts */
} child_t;

struct tsr_counter { child_t c; };
struct tsr_gauge { child_t c; };
struct tsr_histogram { child_t c; };

struct tsr_metric_family {
    struct tsr_metric_family *next;
    tsr_metrics_t *reg;
    metric_type_t type;
    char *name, *help;
    size_t nlabels;
    char *labels[TSR_METRICS_MAX_LABELS];
    size_t nbounds;
    double *bounds;
    char **le;          /* nbounds + 1 strings, the last "+Inf" */
    child_t *children, **tail;
};

typedef struct hook {
    struct hook *next;
    tsr_metrics_collect_fn fn;
    void *ud;
} hook_t;

struct tsr_metrics {
    pthread_mutex_t mu;
    tsr_metric_family_t *families, **tail;
    hook_t *hooks;
};

static uint64_t dbits(double d) {
    uint64_t u;
    memcpy(&u, &d, sizeof u);
    return u;
}
static double bitsd(uint64_t u) {
    double d;
    memcpy(&d, &u, sizeof d);
    return d;
}

uint64_t tsr_metrics_now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

tsr_metrics_t *tsr_metrics_new(void) {
    tsr_metrics_t *m = tsr_calloc(1, sizeof *m);
    pthread_mutex_init(&m->mu, NULL);
    m->tail = &m->families;
    return m;
}

static void child_free(child_t *c, size_t nlabels) {
    for (size_t i = 0; i < nlabels; i++) free(c->values[i]);
    free(c->label_text);
    free((void *)c->buckets);
    free(c);
}

void tsr_metrics_free(tsr_metrics_t *m) {
    if (!m) return;
    tsr_metric_family_t *f = m->families;
    while (f) {
        tsr_metric_family_t *fn = f->next;
        child_t *c = f->children;
        while (c) {
            child_t *cn = c->next;
            child_free(c, f->nlabels);
            c = cn;
        }
        for (size_t i = 0; i < f->nlabels; i++) free(f->labels[i]);
        if (f->le)
            for (size_t i = 0; i <= f->nbounds; i++) free(f->le[i]);
        free(f->le);
        free(f->bounds);
        free(f->name);
        free(f->help);
        free(f);
        f = fn;
    }
    hook_t *h = m->hooks;
    while (h) {
        hook_t *hn = h->next;
        free(h);
        h = hn;
    }
    pthread_mutex_destroy(&m->mu);
    free(m);
}

/* ------------------------------------------------------------------------------------ */
/* Names and text                                                                        */

static int name_ok(const char *s, int allow_colon) {
    if (!s || !*s) return 0;
    for (size_t i = 0; s[i]; i++) {
        char c = s[i];
        int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
                 (allow_colon && c == ':') || (i > 0 && c >= '0' && c <= '9');
        if (!ok) return 0;
    }
    return 1;
}

const char *tsr_metrics_format_double(double v, char *buf) {
    if (isnan(v)) return strcpy(buf, "NaN");
    if (isinf(v)) return strcpy(buf, v > 0 ? "+Inf" : "-Inf");
    /* integers print in full ("10", not "1e+01"), as Prometheus' own clients do */
    if (v == floor(v) && fabs(v) < 1e15) {
        snprintf(buf, 32, "%.0f", v);
        return buf;
    }
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(buf, 32, "%.*g", prec, v);
        if (strtod(buf, NULL) == v) break;
    }
    return buf;
}

/* Label values escape backslash, double quote and newline (exposition format 0.0.4). */
static void escape_label(tsr_buf_t *b, const char *s) {
    for (; *s; s++) {
        if (*s == '\\') tsr_buf_puts(b, "\\\\");
        else if (*s == '"') tsr_buf_puts(b, "\\\"");
        else if (*s == '\n') tsr_buf_puts(b, "\\n");
        else tsr_buf_putc(b, *s);
    }
}

/* HELP text escapes backslash and newline only. */
static void escape_help(tsr_buf_t *b, const char *s) {
    for (; *s; s++) {
        if (*s == '\\') tsr_buf_puts(b, "\\\\");
        else if (*s == '\n') tsr_buf_puts(b, "\\n");
        else tsr_buf_putc(b, *s);
    }
}

/* ------------------------------------------------------------------------------------ */
/* Registration                                                                          */

static tsr_metric_family_t *family_new(tsr_metrics_t *m, metric_type_t type, const char *name,
                                       const char *help, const char *const *labels,
                                       size_t nlabels, const double *bounds, size_t nbounds,
                                       tsr_error_t *err) {
    if (!name_ok(name, 1)) {
        tsr_error_set(err, TSR_EINVAL, "metric name '%s' is not a valid Prometheus name",
                      name ? name : "(null)");
        return NULL;
    }
    if (nlabels > TSR_METRICS_MAX_LABELS) {
        tsr_error_set(err, TSR_EINVAL, "metric %s: %zu labels, at most %d allowed", name, nlabels,
                      TSR_METRICS_MAX_LABELS);
        return NULL;
    }
    for (size_t i = 0; i < nlabels; i++) {
        const char *l = labels[i];
        if (!name_ok(l, 0) || strncmp(l, "__", 2) == 0 ||
            (type == M_HISTOGRAM && strcmp(l, "le") == 0)) {
            tsr_error_set(err, TSR_EINVAL, "metric %s: label name '%s' is not allowed", name,
                          l ? l : "(null)");
            return NULL;
        }
        for (size_t j = 0; j < i; j++)
            if (strcmp(labels[j], l) == 0) {
                tsr_error_set(err, TSR_EINVAL, "metric %s: label '%s' listed twice", name, l);
                return NULL;
            }
    }
    if (type == M_HISTOGRAM) {
        if (nbounds == 0 || nbounds > TSR_METRICS_MAX_BUCKETS) {
            tsr_error_set(err, TSR_EINVAL, "histogram %s: %zu bucket bounds, need 1..%d", name,
                          nbounds, TSR_METRICS_MAX_BUCKETS);
            return NULL;
        }
        for (size_t i = 0; i < nbounds; i++)
            if (!isfinite(bounds[i]) || (i > 0 && !(bounds[i] > bounds[i - 1]))) {
                tsr_error_set(err, TSR_EINVAL,
                              "histogram %s: bucket bound %zu must be finite and greater than "
                              "the previous one",
                              name, i);
                return NULL;
            }
    }
    tsr_metric_family_t *f = tsr_calloc(1, sizeof *f);
    f->reg = m;
    f->type = type;
    f->name = tsr_strdup(name);
    f->help = tsr_strdup(help ? help : "");
    f->nlabels = nlabels;
    for (size_t i = 0; i < nlabels; i++) f->labels[i] = tsr_strdup(labels[i]);
    f->tail = &f->children;
    if (type == M_HISTOGRAM) {
        f->nbounds = nbounds;
        f->bounds = tsr_malloc(nbounds * sizeof *f->bounds);
        memcpy(f->bounds, bounds, nbounds * sizeof *f->bounds);
        f->le = tsr_calloc(nbounds + 1, sizeof *f->le);
        char num[32];
        for (size_t i = 0; i < nbounds; i++)
            f->le[i] = tsr_strdup(tsr_metrics_format_double(bounds[i], num));
        f->le[nbounds] = tsr_strdup("+Inf");
    }

    pthread_mutex_lock(&m->mu);
    for (tsr_metric_family_t *g = m->families; g; g = g->next)
        if (strcmp(g->name, name) == 0) {
            pthread_mutex_unlock(&m->mu);
            tsr_error_set(err, TSR_EEXIST, "metric %s is already registered", name);
            f->next = NULL;
            /* free the unpublished family */
            for (size_t i = 0; i < nlabels; i++) free(f->labels[i]);
            if (f->le)
                for (size_t i = 0; i <= f->nbounds; i++) free(f->le[i]);
            free(f->le);
            free(f->bounds);
            free(f->name);
            free(f->help);
            free(f);
            return NULL;
        }
    *m->tail = f;
    m->tail = &f->next;
    pthread_mutex_unlock(&m->mu);
    return f;
}

tsr_metric_family_t *tsr_metrics_counter_family(tsr_metrics_t *m, const char *name,
                                                const char *help, const char *const *labels,
                                                size_t nlabels, tsr_error_t *err) {
    return family_new(m, M_COUNTER, name, help, labels, nlabels, NULL, 0, err);
}
tsr_metric_family_t *tsr_metrics_gauge_family(tsr_metrics_t *m, const char *name,
                                              const char *help, const char *const *labels,
                                              size_t nlabels, tsr_error_t *err) {
    return family_new(m, M_GAUGE, name, help, labels, nlabels, NULL, 0, err);
}
tsr_metric_family_t *tsr_metrics_histogram_family(tsr_metrics_t *m, const char *name,
                                                  const char *help, const char *const *labels,
                                                  size_t nlabels, const double *bounds,
                                                  size_t nbounds, tsr_error_t *err) {
    return family_new(m, M_HISTOGRAM, name, help, labels, nlabels, bounds, nbounds, err);
}

static child_t *child_get(tsr_metric_family_t *f, metric_type_t type, const char *const *values) {
    if (f->type != type) return NULL;
    tsr_metrics_t *m = f->reg;
    pthread_mutex_lock(&m->mu);
    for (child_t *c = f->children; c; c = c->next) {
        size_t i = 0;
        while (i < f->nlabels && strcmp(c->values[i], values[i] ? values[i] : "") == 0) i++;
        if (i == f->nlabels) {
            pthread_mutex_unlock(&m->mu);
            return c;
        }
    }
    child_t *c = tsr_calloc(1, sizeof *c);
    c->fam = f;
    tsr_buf_t lt;
    tsr_buf_init(&lt);
    for (size_t i = 0; i < f->nlabels; i++) {
        c->values[i] = tsr_strdup(values[i] ? values[i] : "");
        if (i) tsr_buf_putc(&lt, ',');
        tsr_buf_printf(&lt, "%s=\"", f->labels[i]);
        escape_label(&lt, c->values[i]);
        tsr_buf_putc(&lt, '"');
    }
    c->label_text = tsr_strdup(tsr_buf_cstr(&lt));
    tsr_buf_free(&lt);
    atomic_init(&c->word, type == M_COUNTER ? 0 : dbits(0.0));
    if (type == M_HISTOGRAM) {
        c->buckets = tsr_malloc((f->nbounds + 1) * sizeof *c->buckets);
        for (size_t i = 0; i <= f->nbounds; i++) atomic_init(&c->buckets[i], 0);
    }
    *f->tail = c;
    f->tail = &c->next;
    pthread_mutex_unlock(&m->mu);
    return c;
}

tsr_counter_t *tsr_metric_counter(tsr_metric_family_t *f, const char *const *values) {
    return (tsr_counter_t *)child_get(f, M_COUNTER, values);
}
tsr_gauge_t *tsr_metric_gauge(tsr_metric_family_t *f, const char *const *values) {
    return (tsr_gauge_t *)child_get(f, M_GAUGE, values);
}
tsr_histogram_t *tsr_metric_histogram(tsr_metric_family_t *f, const char *const *values) {
    return (tsr_histogram_t *)child_get(f, M_HISTOGRAM, values);
}

tsr_counter_t *tsr_metrics_counter(tsr_metrics_t *m, const char *name, const char *help,
                                   tsr_error_t *err) {
    tsr_metric_family_t *f = tsr_metrics_counter_family(m, name, help, NULL, 0, err);
    return f ? tsr_metric_counter(f, NULL) : NULL;
}
tsr_gauge_t *tsr_metrics_gauge(tsr_metrics_t *m, const char *name, const char *help,
                               tsr_error_t *err) {
    tsr_metric_family_t *f = tsr_metrics_gauge_family(m, name, help, NULL, 0, err);
    return f ? tsr_metric_gauge(f, NULL) : NULL;
}
tsr_histogram_t *tsr_metrics_histogram(tsr_metrics_t *m, const char *name, const char *help,
                                       const double *bounds, size_t nbounds, tsr_error_t *err) {
    tsr_metric_family_t *f =
        tsr_metrics_histogram_family(m, name, help, NULL, 0, bounds, nbounds, err);
    return f ? tsr_metric_histogram(f, NULL) : NULL;
}

void tsr_metrics_on_collect(tsr_metrics_t *m, tsr_metrics_collect_fn fn, void *ud) {
    hook_t *h = tsr_calloc(1, sizeof *h);
    h->fn = fn;
    h->ud = ud;
    pthread_mutex_lock(&m->mu);
    hook_t **p = &m->hooks;
    while (*p) p = &(*p)->next;
    *p = h;
    pthread_mutex_unlock(&m->mu);
}

/* ------------------------------------------------------------------------------------ */
/* Hot path                                                                              */

void tsr_counter_add(tsr_counter_t *c, uint64_t n) {
    atomic_fetch_add_explicit(&c->c.word, n, memory_order_relaxed);
}
uint64_t tsr_counter_get(const tsr_counter_t *c) {
    return atomic_load_explicit(&((tsr_counter_t *)c)->c.word, memory_order_relaxed);
}

void tsr_gauge_set(tsr_gauge_t *g, double v) {
    atomic_store_explicit(&g->c.word, dbits(v), memory_order_relaxed);
}

/* Adds d to the double stored in *w (CAS loop: there is no atomic double add). */
static void atomic_add_double(_Atomic uint64_t *w, double d) {
    uint64_t old = atomic_load_explicit(w, memory_order_relaxed);
    while (!atomic_compare_exchange_weak_explicit(w, &old, dbits(bitsd(old) + d),
                                                  memory_order_relaxed, memory_order_relaxed)) {
    }
}

void tsr_gauge_add(tsr_gauge_t *g, double d) { atomic_add_double(&g->c.word, d); }
double tsr_gauge_get(const tsr_gauge_t *g) {
    return bitsd(atomic_load_explicit(&((tsr_gauge_t *)g)->c.word, memory_order_relaxed));
}

void tsr_histogram_observe(tsr_histogram_t *h, double v) {
    const tsr_metric_family_t *f = h->c.fam;
    size_t i = 0;
    /* upper-inclusive: the first bound >= v; NaN compares false everywhere and lands in +Inf */
    while (i < f->nbounds && !(v <= f->bounds[i])) i++;
    atomic_fetch_add_explicit(&h->c.buckets[i], 1, memory_order_relaxed);
    atomic_add_double(&h->c.word, v);
}

void tsr_histogram_observe_since(tsr_histogram_t *h, uint64_t start_ns) {
    uint64_t now = tsr_metrics_now_ns();
    tsr_histogram_observe(h, now > start_ns ? (double)(now - start_ns) * 1e-9 : 0.0);
}

void tsr_histogram_read(const tsr_histogram_t *h, uint64_t *count, double *sum,
                        uint64_t *buckets) {
    child_t *c = (child_t *)&h->c;
    uint64_t n = 0;
    for (size_t i = 0; i <= c->fam->nbounds; i++) {
        uint64_t b = atomic_load_explicit(&c->buckets[i], memory_order_relaxed);
        if (buckets) buckets[i] = b;
        n += b;
    }
    if (count) *count = n;
    if (sum) *sum = bitsd(atomic_load_explicit(&c->word, memory_order_relaxed));
}

/* ------------------------------------------------------------------------------------ */
/* Exposition                                                                            */

/* name{labels[,extra]} value\n, braces left out when there is no label at all. */
static void write_sample(tsr_buf_t *out, const char *name, const char *suffix, const char *labels,
                         const char *extra, const char *value) {
    tsr_buf_puts(out, name);
    tsr_buf_puts(out, suffix);
    int has = labels[0] != 0, hasx = extra && extra[0];
    if (has || hasx) {
        tsr_buf_putc(out, '{');
        tsr_buf_puts(out, labels);
        if (has && hasx) tsr_buf_putc(out, ',');
        if (hasx) tsr_buf_puts(out, extra);
        tsr_buf_putc(out, '}');
    }
    tsr_buf_putc(out, ' ');
    tsr_buf_puts(out, value);
    tsr_buf_putc(out, '\n');
}

void tsr_metrics_write(tsr_metrics_t *m, tsr_buf_t *out) {
    /* hooks first, outside the mutex: they may update gauges or create children */
    pthread_mutex_lock(&m->mu);
    hook_t *hooks = m->hooks;
    pthread_mutex_unlock(&m->mu);
    for (hook_t *h = hooks; h; h = h->next) h->fn(h->ud, m);

    static const char *const type_names[] = {"counter", "gauge", "histogram"};
    char num[32], le[64];
    uint64_t counts[TSR_METRICS_MAX_BUCKETS + 1];
    pthread_mutex_lock(&m->mu);
    for (tsr_metric_family_t *f = m->families; f; f = f->next) {
        tsr_buf_printf(out, "# HELP %s ", f->name);
        escape_help(out, f->help);
        tsr_buf_printf(out, "\n# TYPE %s %s\n", f->name, type_names[f->type]);
        for (child_t *c = f->children; c; c = c->next) {
            switch (f->type) {
            case M_COUNTER:
                snprintf(num, sizeof num, "%llu",
                         (unsigned long long)atomic_load_explicit(&c->word, memory_order_relaxed));
                write_sample(out, f->name, "", c->label_text, NULL, num);
                break;
            case M_GAUGE:
                write_sample(out, f->name, "", c->label_text, NULL,
                             tsr_metrics_format_double(
                                 bitsd(atomic_load_explicit(&c->word, memory_order_relaxed)),
                                 num));
                break;
            case M_HISTOGRAM: {
                uint64_t total;
                double sum;
                tsr_histogram_read((tsr_histogram_t *)c, &total, &sum, counts);
                uint64_t cum = 0;
                for (size_t i = 0; i <= f->nbounds; i++) {
                    cum += counts[i];
                    snprintf(le, sizeof le, "le=\"%s\"", f->le[i]);
                    snprintf(num, sizeof num, "%llu", (unsigned long long)cum);
                    write_sample(out, f->name, "_bucket", c->label_text, le, num);
                }
                write_sample(out, f->name, "_sum", c->label_text, NULL,
                             tsr_metrics_format_double(sum, num));
                snprintf(num, sizeof num, "%llu", (unsigned long long)total);
                write_sample(out, f->name, "_count", c->label_text, NULL, num);
                break;
            }
            }
        }
    }
    pthread_mutex_unlock(&m->mu);
}
