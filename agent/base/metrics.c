/*
 * The metrics registry (metrics.h). A family keeps one slot per series,
 * indexed by the positions of its label values: series = i1 * n2 + i2.
 * A histogram keeps per series its bucket counts (not cumulative; made
 * cumulative when rendered), its count and its sum in microseconds, so
 * the sum renders exactly.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "metrics.h"
#include "ramkey_err.h"

#define COLLECTORS_MAX 8

enum metric_type {
	METRIC_COUNTER = 0,
	METRIC_GAUGE,
	METRIC_HISTOGRAM,
};

struct metric {
	struct metric *next;
	enum metric_type type;
	char *name;
	char *help;
	struct metric_label labels[METRICS_LABELS_MAX];
	size_t nlabels;
	size_t nvalues[METRICS_LABELS_MAX];
	size_t nseries;
	double *bounds;		/* histogram */
	size_t nbounds;
	uint64_t *counts;	/* counter: one per series; histogram:
				 * nbounds + 1 buckets per series */
	uint64_t *hcount;	/* histogram: observations per series */
	uint64_t *hsum_us;	/* histogram: sum per series, microseconds */
	double *gauge;		/* gauge: one per series */
	bool *gauge_set;
};

struct collector {
	metrics_collect_fn fn;
	void *arg;
};

struct metrics {
	struct metric *head, *tail;
	struct collector collectors[COLLECTORS_MAX];
	size_t ncollectors;
};

static void family_free(struct metric *f)
{
	if (f == NULL)
		return;
	free(f->name);
	free(f->help);
	free(f->bounds);
	free(f->counts);
	free(f->hcount);
	free(f->hsum_us);
	free(f->gauge);
	free(f->gauge_set);
	free(f);
}

int metrics_new(struct metrics **ret)
{
	*ret = calloc(1, sizeof(**ret));
	return *ret != NULL ? 0 : RAMKEY_ERR_NOMEM;
}

void metrics_free(struct metrics *m)
{
	struct metric *f, *next;

	if (m == NULL)
		return;
	for (f = m->head; f != NULL; f = next) {
		next = f->next;
		family_free(f);
	}
	free(m);
}

static bool valid_name(const char *s, bool colon)
{
	size_t i;

	if (s == NULL || s[0] == '\0' || (s[0] >= '0' && s[0] <= '9'))
		return false;
	for (i = 0; s[i] != '\0'; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') ||
		    (s[i] >= 'A' && s[i] <= 'Z') ||
		    (s[i] >= '0' && s[i] <= '9') || s[i] == '_' ||
		    (colon && s[i] == ':')))
			return false;
	return true;
}

static bool ends_with(const char *s, const char *suffix)
{
	size_t n = strlen(s), k = strlen(suffix);

	return n >= k && strcmp(s + n - k, suffix) == 0;
}

static struct metric *find(struct metrics *m, const char *name)
{
	struct metric *f;

	for (f = m->head; f != NULL; f = f->next)
		if (strcmp(f->name, name) == 0)
			return f;
	return NULL;
}

/* The same type and label names: the family can be shared. */
static bool same_shape(const struct metric *f, enum metric_type type,
    const struct metric_label *labels, size_t nlabels)
{
	size_t i;

	if (f->type != type || f->nlabels != nlabels)
		return false;
	for (i = 0; i < nlabels; i++)
		if (strcmp(f->labels[i].name, labels[i].name) != 0)
			return false;
	return true;
}

static int family_new(struct metrics *m, enum metric_type type,
    const char *name, const char *help, const struct metric_label *labels,
    size_t nlabels, const double *bounds, size_t nbounds,
    struct metric **ret)
{
	struct metric *f = NULL;
	size_t i, n;
	int r = RAMKEY_ERR_INVALID;

	*ret = NULL;
	if (m == NULL || !valid_name(name, true) || help == NULL ||
	    strchr(help, '\n') != NULL || nlabels > METRICS_LABELS_MAX ||
	    (nlabels > 0 && labels == NULL))
		return RAMKEY_ERR_INVALID;
	if (type == METRIC_COUNTER && !ends_with(name, "_total"))
		return RAMKEY_ERR_INVALID;
	if ((f = find(m, name)) != NULL) {
		if (!same_shape(f, type, labels, nlabels))
			return RAMKEY_ERR_INVALID;
		*ret = f;
		return 0;
	}
	for (i = 0; i < nlabels; i++)
		if (!valid_name(labels[i].name, false) ||
		    labels[i].values == NULL || labels[i].values[0] == NULL ||
		    (type == METRIC_HISTOGRAM &&
		    strcmp(labels[i].name, "le") == 0))
			return RAMKEY_ERR_INVALID;
	for (i = 1; i < nbounds; i++)
		if (!(bounds[i] > bounds[i - 1]))
			return RAMKEY_ERR_INVALID;
	r = RAMKEY_ERR_NOMEM;
	if ((f = calloc(1, sizeof(*f))) == NULL ||
	    (f->name = strdup(name)) == NULL ||
	    (f->help = strdup(help)) == NULL)
		goto out;
	f->type = type;
	f->nlabels = nlabels;
	f->nseries = 1;
	for (i = 0; i < nlabels; i++) {
		f->labels[i] = labels[i];
		for (n = 0; labels[i].values[n] != NULL; n++)
			;
		f->nvalues[i] = n;
		f->nseries *= n;
	}
	switch (type) {
	case METRIC_COUNTER:
		if ((f->counts = calloc(f->nseries, sizeof(uint64_t))) == NULL)
			goto out;
		break;
	case METRIC_GAUGE:
		if ((f->gauge = calloc(f->nseries, sizeof(double))) == NULL ||
		    (f->gauge_set = calloc(f->nseries, sizeof(bool))) == NULL)
			goto out;
		break;
	case METRIC_HISTOGRAM:
		f->nbounds = nbounds;
		if ((nbounds > 0 && (f->bounds = calloc(nbounds,
		    sizeof(double))) == NULL) ||
		    (f->counts = calloc(f->nseries * (nbounds + 1),
		    sizeof(uint64_t))) == NULL ||
		    (f->hcount = calloc(f->nseries,
		    sizeof(uint64_t))) == NULL ||
		    (f->hsum_us = calloc(f->nseries,
		    sizeof(uint64_t))) == NULL)
			goto out;
		if (nbounds > 0)
			memcpy(f->bounds, bounds, nbounds * sizeof(double));
		break;
	}
	if (m->tail != NULL)
		m->tail->next = f;
	else
		m->head = f;
	m->tail = f;
	*ret = f;
	f = NULL;
	r = 0;
out:
	family_free(f);
	return r;
}

int metrics_counter(struct metrics *m, const char *name, const char *help,
    const struct metric_label *labels, size_t nlabels, struct metric **ret)
{
	return family_new(m, METRIC_COUNTER, name, help, labels, nlabels, NULL,
	    0, ret);
}

int metrics_gauge(struct metrics *m, const char *name, const char *help,
    const struct metric_label *labels, size_t nlabels, struct metric **ret)
{
	return family_new(m, METRIC_GAUGE, name, help, labels, nlabels, NULL,
	    0, ret);
}

int metrics_histogram(struct metrics *m, const char *name, const char *help,
    const struct metric_label *labels, size_t nlabels, const double *bounds,
    size_t nbounds, struct metric **ret)
{
	return family_new(m, METRIC_HISTOGRAM, name, help, labels, nlabels,
	    bounds, nbounds, ret);
}

/* The series of (l1, l2), or -1 if a value is not one of the family's. */
static long series_of(const struct metric *f, const char *l1, const char *l2)
{
	const char *v[METRICS_LABELS_MAX] = { l1, l2 };
	size_t i, k, idx = 0;

	if (f->nlabels > METRICS_LABELS_MAX)
		return -1;
	for (i = 0; i < f->nlabels; i++) {
		if (v[i] == NULL)
			return -1;
		for (k = 0; k < f->nvalues[i]; k++)
			if (strcmp(f->labels[i].values[k], v[i]) == 0)
				break;
		if (k == f->nvalues[i])
			return -1;
		idx = idx * f->nvalues[i] + k;
	}
	return (long)idx;
}

void metric_add(struct metric *f, const char *l1, const char *l2,
    uint64_t n)
{
	long s;

	if (f == NULL || f->type != METRIC_COUNTER ||
	    (s = series_of(f, l1, l2)) < 0)
		return;
	f->counts[s] += n;
}

void metric_inc(struct metric *f, const char *l1, const char *l2)
{
	metric_add(f, l1, l2, 1);
}

void metric_set(struct metric *f, const char *l1, const char *l2, double v)
{
	long s;

	if (f == NULL || f->type != METRIC_GAUGE ||
	    (s = series_of(f, l1, l2)) < 0)
		return;
	f->gauge[s] = v;
	f->gauge_set[s] = true;
}

void metric_unset(struct metric *f, const char *l1, const char *l2)
{
	long s;

	if (f == NULL || f->type != METRIC_GAUGE ||
	    (s = series_of(f, l1, l2)) < 0)
		return;
	f->gauge_set[s] = false;
}

void metric_observe(struct metric *f, const char *l1, const char *l2,
    double v)
{
	size_t b;
	long s;

	if (f == NULL || f->type != METRIC_HISTOGRAM ||
	    (s = series_of(f, l1, l2)) < 0 || isnan(v))
		return;
	if (v < 0)
		v = 0;
	for (b = 0; b < f->nbounds && v > f->bounds[b]; b++)
		;
	f->counts[(size_t)s * (f->nbounds + 1) + b]++;
	f->hcount[s]++;
	f->hsum_us[s] += v < 1e12 ? (uint64_t)llround(v * 1e6) : 0;
}

uint64_t metric_value(const struct metric *f, const char *l1, const char *l2)
{
	long s;

	if (f == NULL || (s = series_of(f, l1, l2)) < 0)
		return 0;
	switch (f->type) {
	case METRIC_COUNTER:
		return f->counts[s];
	case METRIC_HISTOGRAM:
		return f->hcount[s];
	case METRIC_GAUGE:
		return f->gauge_set[s] && f->gauge[s] > 0 ?
		    (uint64_t)f->gauge[s] : 0;
	}
	return 0;
}

int metrics_add_collector(struct metrics *m, metrics_collect_fn fn,
    void *arg)
{
	if (m == NULL || fn == NULL)
		return RAMKEY_ERR_INVALID;
	if (m->ncollectors == COLLECTORS_MAX)
		return RAMKEY_ERR_NOMEM;
	m->collectors[m->ncollectors].fn = fn;
	m->collectors[m->ncollectors].arg = arg;
	m->ncollectors++;
	return 0;
}

void metrics_remove_collector(struct metrics *m, metrics_collect_fn fn,
    void *arg)
{
	size_t i;

	if (m == NULL)
		return;
	for (i = 0; i < m->ncollectors; i++)
		if (m->collectors[i].fn == fn && m->collectors[i].arg == arg) {
			memmove(&m->collectors[i], &m->collectors[i + 1],
			    (m->ncollectors - i - 1) *
			    sizeof(m->collectors[0]));
			m->ncollectors--;
			return;
		}
}

/* ---- rendering ---- */

static const char *type_name(enum metric_type t)
{
	switch (t) {
	case METRIC_COUNTER:
		return "counter";
	case METRIC_GAUGE:
		return "gauge";
	case METRIC_HISTOGRAM:
		return "histogram";
	}
	return "untyped";
}

/* HELP text: backslash and newline escaped. */
static void put_help(FILE *o, const char *s)
{
	for (; *s != '\0'; s++) {
		if (*s == '\\')
			fputs("\\\\", o);
		else if (*s == '\n')
			fputs("\\n", o);
		else
			fputc(*s, o);
	}
}

/* A label value: backslash, quote and newline escaped. */
static void put_value(FILE *o, const char *s)
{
	for (; *s != '\0'; s++) {
		if (*s == '\n') {
			fputs("\\n", o);
			continue;
		}
		if (*s == '\\' || *s == '"')
			fputc('\\', o);
		fputc(*s, o);
	}
}

static void put_double(FILE *o, double v)
{
	if (isnan(v))
		fputs("NaN", o);
	else if (isinf(v))
		fputs(v > 0 ? "+Inf" : "-Inf", o);
	else if (v == floor(v) && fabs(v) < 9007199254740992.0)
		fprintf(o, "%.0f", v);
	else
		fprintf(o, "%.17g", v);
}

/* "{a="x",b="y"" without the closing brace, or "" without labels; extra
 * labels (le) follow before the caller closes it. Returns whether a brace
 * was opened. */
static bool put_labels(FILE *o, const struct metric *f, size_t series)
{
	size_t idx[METRICS_LABELS_MAX] = { 0 }, i;

	if (f->nlabels == 0)
		return false;
	for (i = f->nlabels; i-- > 0;) {
		idx[i] = series % f->nvalues[i];
		series /= f->nvalues[i];
	}
	fputc('{', o);
	for (i = 0; i < f->nlabels; i++) {
		fprintf(o, "%s%s=\"", i > 0 ? "," : "", f->labels[i].name);
		put_value(o, f->labels[i].values[idx[i]]);
		fputc('"', o);
	}
	return true;
}

static void put_sample(FILE *o, const struct metric *f, const char *suffix,
    size_t series)
{
	fprintf(o, "%s%s", f->name, suffix);
	if (put_labels(o, f, series))
		fputc('}', o);
	fputc(' ', o);
}

static void render_histogram(FILE *o, const struct metric *f, size_t s)
{
	const uint64_t *b = f->counts + s * (f->nbounds + 1);
	uint64_t cum = 0, us = f->hsum_us[s];
	size_t i;

	for (i = 0; i <= f->nbounds; i++) {
		cum += b[i];
		fprintf(o, "%s_bucket", f->name);
		fputs(put_labels(o, f, s) ? "," : "{", o);
		fputs("le=\"", o);
		if (i < f->nbounds)
			fprintf(o, "%g", f->bounds[i]);
		else
			fputs("+Inf", o);
		fprintf(o, "\"} %llu\n", (unsigned long long)cum);
	}
	put_sample(o, f, "_sum", s);
	fprintf(o, "%llu.%06llu\n", (unsigned long long)(us / 1000000),
	    (unsigned long long)(us % 1000000));
	put_sample(o, f, "_count", s);
	fprintf(o, "%llu\n", (unsigned long long)f->hcount[s]);
}

static void render_family(FILE *o, const struct metric *f)
{
	size_t s;

	fprintf(o, "# HELP %s ", f->name);
	put_help(o, f->help);
	fprintf(o, "\n# TYPE %s %s\n", f->name, type_name(f->type));
	for (s = 0; s < f->nseries; s++) {
		switch (f->type) {
		case METRIC_COUNTER:
			put_sample(o, f, "", s);
			fprintf(o, "%llu\n", (unsigned long long)f->counts[s]);
			break;
		case METRIC_GAUGE:
			if (!f->gauge_set[s])
				break;
			put_sample(o, f, "", s);
			put_double(o, f->gauge[s]);
			fputc('\n', o);
			break;
		case METRIC_HISTOGRAM:
			render_histogram(o, f, s);
			break;
		}
	}
}

int metrics_render(struct metrics *m, char **out, size_t *lenp)
{
	struct metric *f;
	char *buf = NULL;
	size_t len = 0, i;
	FILE *o;

	*out = NULL;
	if (lenp != NULL)
		*lenp = 0;
	if (m == NULL)
		return RAMKEY_ERR_INVALID;
	for (i = 0; i < m->ncollectors; i++)
		m->collectors[i].fn(m->collectors[i].arg);
	if ((o = open_memstream(&buf, &len)) == NULL)
		return RAMKEY_ERR_NOMEM;
	for (f = m->head; f != NULL; f = f->next)
		render_family(o, f);
	if (ferror(o) != 0) {
		fclose(o);
		free(buf);
		return RAMKEY_ERR_NOMEM;
	}
	if (fclose(o) != 0 || buf == NULL) {
		free(buf);
		return RAMKEY_ERR_NOMEM;
	}
	*out = buf;
	if (lenp != NULL)
		*lenp = len;
	return 0;
}
