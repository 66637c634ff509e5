/*
 * metrics.h — a tiny Prometheus registry: counters, gauges and fixed-bucket histograms with
 * optional labels, written out in the text exposition format 0.0.4.
 *
 * Design. A registry holds metric *families* (one name, one help text, one type, a fixed list
 * of at most TSR_METRICS_MAX_LABELS label names). A family holds *children*, one per distinct
 * tuple of label values; an unlabelled family has exactly one child. The hot path works on a
 * child handle (tsr_counter_t, tsr_gauge_t, tsr_histogram_t) obtained once at setup and kept:
 * an update is one or two relaxed atomic operations, no lock, no allocation.
 *
 * Invariants.
 *   1. Families and children are append-only: a handle stays valid until tsr_metrics_free.
 *   2. Creating a family or a child takes the registry mutex and allocates; updating never does.
 *   3. The exposition lists families in registration order and children in creation order, so
 *      the text is deterministic for a given registry (tests compare golden strings).
 *   4. A histogram stores per-bucket (non-cumulative) counts; the writer accumulates them, and
 *      `_count` is the sum of the buckets, so `_bucket{le="+Inf"}` always equals `_count` even
 *      while observations race with a scrape. Bounds are upper-inclusive (v <= le), as in
 *      Prometheus; NaN observations land in +Inf only.
 *
 * Naming (docs/metrics.md): `tessera_<component>_<name>_<unit>`, counters end in `_total`,
 * latencies are histograms in seconds (`_seconds`). Names are checked against Prometheus'
 * grammar at registration ([a-zA-Z_:][a-zA-Z0-9_:]*; label names [a-zA-Z_][a-zA-Z0-9_]*, not
 * starting with "__", and "le" is reserved for histograms).
 *
 * Threading. Every function is thread-safe. Updates from any number of threads are atomic;
 * tsr_metrics_write may run concurrently with updates and with child creation.
 */
#ifndef TSR_METRICS_H
#define TSR_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "tsr/error.h"
#include "tsr/mem.h"

#define TSR_METRICS_MAX_LABELS 4
#define TSR_METRICS_MAX_BUCKETS 32

typedef struct tsr_metrics tsr_metrics_t;
typedef struct tsr_metric_family tsr_metric_family_t;
typedef struct tsr_counter tsr_counter_t;
typedef struct tsr_gauge tsr_gauge_t;
typedef struct tsr_histogram tsr_histogram_t;

/* Default latency buckets in seconds: 50 us .. 10 s (TSR_METRICS_LATENCY_NBUCKETS bounds). */
extern const double tsr_metrics_latency_buckets[];
#define TSR_METRICS_LATENCY_NBUCKETS 17

/* A new, empty registry. Caller frees with tsr_metrics_free. */
tsr_metrics_t *tsr_metrics_new(void);
/* Frees the registry, its families and children; every handle becomes invalid. NULL is ok. */
void tsr_metrics_free(tsr_metrics_t *m);

/* Registers a family. name and help are copied; labels (nlabels names, may be 0) are copied.
 * bounds (histograms only): nbounds strictly increasing finite upper bounds, +Inf implied;
 * copied. Returns the family (owned by the registry), or NULL with err set: TSR_EINVAL for a
 * bad name, label name, label count or bounds; TSR_EEXIST when the name is already taken. */
tsr_metric_family_t *tsr_metrics_counter_family(tsr_metrics_t *m, const char *name,
                                                const char *help, const char *const *labels,
                                                size_t nlabels, tsr_error_t *err);
tsr_metric_family_t *tsr_metrics_gauge_family(tsr_metrics_t *m, const char *name,
                                              const char *help, const char *const *labels,
                                              size_t nlabels, tsr_error_t *err);
tsr_metric_family_t *tsr_metrics_histogram_family(tsr_metrics_t *m, const char *name,
                                                  const char *help, const char *const *labels,
                                                  size_t nlabels, const double *bounds,
                                                  size_t nbounds, tsr_error_t *err);

/* The child for these label values (the family's nlabels strings, copied; NULL when the
 * family has no labels), created on first use. Takes the registry mutex: call at setup or
 * cache the handle. Returns NULL only when the family has a different type. Borrowed until
 * tsr_metrics_free. */
tsr_counter_t *tsr_metric_counter(tsr_metric_family_t *f, const char *const *values);
tsr_gauge_t *tsr_metric_gauge(tsr_metric_family_t *f, const char *const *values);
tsr_histogram_t *tsr_metric_histogram(tsr_metric_family_t *f, const char *const *values);

/* Unlabelled shortcuts: family + its only child. NULL with err set as for the families. */
tsr_counter_t *tsr_metrics_counter(tsr_metrics_t *m, const char *name, const char *help,
                                   tsr_error_t *err);
tsr_gauge_t *tsr_metrics_gauge(tsr_metrics_t *m, const char *name, const char *help,
                               tsr_error_t *err);
tsr_histogram_t *tsr_metrics_histogram(tsr_metrics_t *m, const char *name, const char *help,
                                       const double *bounds, size_t nbounds, tsr_error_t *err);

/* Hot path: lock-free, allocation-free. */
void tsr_counter_add(tsr_counter_t *c, uint64_t n);
static inline void tsr_counter_inc(tsr_counter_t *c) { tsr_counter_add(c, 1); }
uint64_t tsr_counter_get(const tsr_counter_t *c);
void tsr_gauge_set(tsr_gauge_t *g, double v);
void tsr_gauge_add(tsr_gauge_t *g, double d);   /* d may be negative */
double tsr_gauge_get(const tsr_gauge_t *g);
void tsr_histogram_observe(tsr_histogram_t *h, double v);
/* Observes the seconds elapsed since start_ns (a CLOCK_MONOTONIC reading, tsr_metrics_now_ns). */
void tsr_histogram_observe_since(tsr_histogram_t *h, uint64_t start_ns);
/* Reads one child's state: count (sum of buckets), sum, and if buckets is not NULL the
 * non-cumulative count of each bucket (nbounds + 1 entries, the last one +Inf). */
void tsr_histogram_read(const tsr_histogram_t *h, uint64_t *count, double *sum,
                        uint64_t *buckets);
uint64_t tsr_metrics_now_ns(void);

/* A hook run at the start of every tsr_metrics_write, e.g. to sample a gauge from a store
 * property. Runs on the scraping thread, outside the registry mutex (it may create children).
 * Hooks are kept until tsr_metrics_free. */
typedef void (*tsr_metrics_collect_fn)(void *ud, tsr_metrics_t *m);
void tsr_metrics_on_collect(tsr_metrics_t *m, tsr_metrics_collect_fn fn, void *ud);

/* Appends the whole registry in the text exposition format 0.0.4 to out. Content type:
 * TSR_METRICS_CONTENT_TYPE. */
void tsr_metrics_write(tsr_metrics_t *m, tsr_buf_t *out);
#define TSR_METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

/* Formats a double as the exposition format wants it: shortest text that reads back to the
 * same double, "+Inf", "-Inf" or "NaN". buf must hold 32 bytes; returns buf. */
const char *tsr_metrics_format_double(double v, char *buf);

#endif
