/*
 * Metrics in the Prometheus text exposition format (version 0.0.4).
 *
 * A registry holds families: counters, gauges and histograms, each with
 * at most two labels whose values are a fixed list given at registration.
 * Every combination of values is a series, rendered from the start (at
 * zero), so rate() works from the first scrape and a series never
 * appears out of nowhere. Label values are names the code chooses (an
 * API action, a result): never a user name, a RAM user or a key id.
 *
 * The layers register what they count through the registry they are
 * given (ram_client_set_metrics, lease_core_set_metrics) and increment
 * their families; the agent's top layer renders the text for the
 * `metrics` request and the metrics_file. A NULL family is a no-op
 * everywhere, so a layer without a registry (a unit test) counts nothing.
 *
 * Not thread-safe: register, update and render from one thread (the
 * agent's event loop).
 */
#ifndef RAMKEY_METRICS_H
#define RAMKEY_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct metrics;
struct metric;

/* Content type of the rendered text, for whoever serves it over HTTP. */
#define METRICS_CONTENT_TYPE "text/plain; version=0.0.4"
#define METRICS_LABELS_MAX 2

/* One label: its name and its values, a NULL-terminated list. Both are
 * borrowed for the registry's lifetime (use static storage). */
struct metric_label {
	const char *name;
	const char *const *values;
};

int metrics_new(struct metrics **ret);
void metrics_free(struct metrics *m);

/*
 * Register a family, or get the one already registered under name (of the
 * same type and label names: two clients of one kind share a family).
 * name: [a-zA-Z_:][a-zA-Z0-9_:]*; counters end in "_total". help: one
 * line. Returns 0, RAMKEY_ERR_INVALID (a bad name, a clash) or
 * RAMKEY_ERR_NOMEM.
 */
int metrics_counter(struct metrics *m, const char *name, const char *help,
    const struct metric_label *labels, size_t nlabels, struct metric **ret);
int metrics_gauge(struct metrics *m, const char *name, const char *help,
    const struct metric_label *labels, size_t nlabels, struct metric **ret);
/* bounds: the buckets' upper bounds, increasing (+Inf is implied). */
int metrics_histogram(struct metrics *m, const char *name, const char *help,
    const struct metric_label *labels, size_t nlabels, const double *bounds,
    size_t nbounds, struct metric **ret);

/*
 * Updates. l1 and l2 are the series' label values (NULL where the family
 * has fewer labels); a value not in the family's list is ignored.
 */
void metric_add(struct metric *f, const char *l1, const char *l2,
    uint64_t n);
void metric_inc(struct metric *f, const char *l1, const char *l2);
/* Gauges. A gauge has no sample until it is set; unset takes it away. */
void metric_set(struct metric *f, const char *l1, const char *l2, double v);
void metric_unset(struct metric *f, const char *l1, const char *l2);
/* Histograms: one observation, in the family's base unit (seconds). */
void metric_observe(struct metric *f, const char *l1, const char *l2,
    double v);

/* Read back (tests, and the owner's own checks); 0 for no such series. */
uint64_t metric_value(const struct metric *f, const char *l1,
    const char *l2);

/* Run before every rendering, to set gauges from their owner's state. */
typedef void (*metrics_collect_fn)(void *arg);
int metrics_add_collector(struct metrics *m, metrics_collect_fn fn,
    void *arg);
void metrics_remove_collector(struct metrics *m, metrics_collect_fn fn,
    void *arg);

/* The whole registry as text: *out is malloc'd and NUL-terminated, every
 * line ends in "\n". Families appear in registration order. */
int metrics_render(struct metrics *m, char **out, size_t *lenp);

#endif
