/*
 * agentunit.metrics: the metrics registry and its text rendering.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "metrics.h"
#include "ramkey_err.h"

static const char *const results[] = { "ok", "failed", NULL };
static const char *const actions[] = { "Create", "Delete", NULL };

static char *render(struct metrics *m)
{
	char *text = NULL;
	size_t len = 0;

	assert_int_equal(metrics_render(m, &text, &len), 0);
	assert_non_null(text);
	assert_int_equal(strlen(text), len);
	return text;
}

static void counter_series_start_at_zero_and_count(void **state)
{
	const struct metric_label l[] = { { "action", actions },
		{ "result", results } };
	struct metrics *m;
	struct metric *c, *again;
	char *text;

	(void)state;
	assert_int_equal(metrics_new(&m), 0);
	assert_int_equal(metrics_counter(m, "x_calls_total", "Calls.", l, 2,
	    &c), 0);
	metric_inc(c, "Create", "ok");
	metric_add(c, "Delete", "failed", 3);
	/* Values outside the fixed lists are ignored. */
	metric_inc(c, "alice", "ok");
	metric_inc(c, "Create", NULL);
	assert_int_equal(metric_value(c, "Create", "ok"), 1);
	assert_int_equal(metric_value(c, "Delete", "failed"), 3);
	/* Registering again shares the family. */
	assert_int_equal(metrics_counter(m, "x_calls_total", "Calls.", l, 2,
	    &again), 0);
	assert_ptr_equal(again, c);
	text = render(m);
	assert_string_equal(text,
	    "# HELP x_calls_total Calls.\n"
	    "# TYPE x_calls_total counter\n"
	    "x_calls_total{action=\"Create\",result=\"ok\"} 1\n"
	    "x_calls_total{action=\"Create\",result=\"failed\"} 0\n"
	    "x_calls_total{action=\"Delete\",result=\"ok\"} 0\n"
	    "x_calls_total{action=\"Delete\",result=\"failed\"} 3\n");
	free(text);
	metrics_free(m);
}

static void refuses_bad_names_and_clashes(void **state)
{
	const struct metric_label l[] = { { "result", results } };
	const struct metric_label le[] = { { "le", results } };
	const double bad_bounds[] = { 1, 1 };
	struct metrics *m;
	struct metric *f;

	(void)state;
	assert_int_equal(metrics_new(&m), 0);
	assert_int_equal(metrics_counter(m, "x_calls", "no _total", NULL, 0,
	    &f), RAMKEY_ERR_INVALID);
	assert_int_equal(metrics_gauge(m, "9x", "bad", NULL, 0, &f),
	    RAMKEY_ERR_INVALID);
	assert_int_equal(metrics_gauge(m, "x-y", "bad", NULL, 0, &f),
	    RAMKEY_ERR_INVALID);
	assert_int_equal(metrics_gauge(m, "x", "two\nlines", NULL, 0, &f),
	    RAMKEY_ERR_INVALID);
	assert_int_equal(metrics_histogram(m, "h", "le is reserved", le, 1,
	    NULL, 0, &f), RAMKEY_ERR_INVALID);
	assert_int_equal(metrics_histogram(m, "h", "bounds must increase",
	    NULL, 0, bad_bounds, 2, &f), RAMKEY_ERR_INVALID);
	assert_int_equal(metrics_gauge(m, "x", "ok", l, 1, &f), 0);
	/* The same name as another type, or with other labels. */
	assert_int_equal(metrics_counter(m, "x", "clash", l, 1, &f),
	    RAMKEY_ERR_INVALID);
	assert_int_equal(metrics_gauge(m, "x", "clash", NULL, 0, &f),
	    RAMKEY_ERR_INVALID);
	metrics_free(m);
	metrics_free(NULL);
}

static void gauges_render_only_once_set(void **state)
{
	struct metrics *m;
	struct metric *g, *t;
	char *text;

	(void)state;
	assert_int_equal(metrics_new(&m), 0);
	assert_int_equal(metrics_gauge(m, "x_live", "Live.", NULL, 0, &g), 0);
	assert_int_equal(metrics_gauge(m, "x_expiry_timestamp_seconds",
	    "Expiry.", NULL, 0, &t), 0);
	metric_set(g, NULL, NULL, 7);
	text = render(m);
	assert_string_equal(text,
	    "# HELP x_live Live.\n# TYPE x_live gauge\nx_live 7\n"
	    "# HELP x_expiry_timestamp_seconds Expiry.\n"
	    "# TYPE x_expiry_timestamp_seconds gauge\n");
	free(text);
	metric_set(t, NULL, NULL, 1795853890);
	metric_set(g, NULL, NULL, 0.5);
	text = render(m);
	assert_non_null(strstr(text, "\nx_expiry_timestamp_seconds "
	    "1795853890\n"));
	assert_non_null(strstr(text, "\nx_live 0.5\n"));
	free(text);
	metric_unset(t, NULL, NULL);
	text = render(m);
	assert_null(strstr(text, "\nx_expiry_timestamp_seconds "));
	free(text);
	metrics_free(m);
}

static void histogram_buckets_are_cumulative(void **state)
{
	const struct metric_label l[] = { { "action", actions } };
	const double bounds[] = { 0.01, 0.1, 1 };
	struct metrics *m;
	struct metric *h;
	char *text;

	(void)state;
	assert_int_equal(metrics_new(&m), 0);
	assert_int_equal(metrics_histogram(m, "x_seconds", "Latency.", l, 1,
	    bounds, 3, &h), 0);
	metric_observe(h, "Create", NULL, 0.005);
	metric_observe(h, "Create", NULL, 0.1);	/* le is inclusive */
	metric_observe(h, "Create", NULL, 2.25);
	assert_int_equal(metric_value(h, "Create", NULL), 3);
	text = render(m);
	assert_non_null(strstr(text,
	    "# TYPE x_seconds histogram\n"
	    "x_seconds_bucket{action=\"Create\",le=\"0.01\"} 1\n"
	    "x_seconds_bucket{action=\"Create\",le=\"0.1\"} 2\n"
	    "x_seconds_bucket{action=\"Create\",le=\"1\"} 2\n"
	    "x_seconds_bucket{action=\"Create\",le=\"+Inf\"} 3\n"
	    "x_seconds_sum{action=\"Create\"} 2.355000\n"
	    "x_seconds_count{action=\"Create\"} 3\n"
	    "x_seconds_bucket{action=\"Delete\",le=\"0.01\"} 0\n"));
	assert_non_null(strstr(text, "x_seconds_count{action=\"Delete\"} 0\n"));
	free(text);
	metrics_free(m);
}

static int collected;

static void collect(void *arg)
{
	struct metric *g = arg;

	collected++;
	metric_set(g, NULL, NULL, collected);
}

static void collectors_run_before_rendering(void **state)
{
	struct metrics *m;
	struct metric *g;
	char *text;

	(void)state;
	assert_int_equal(metrics_new(&m), 0);
	assert_int_equal(metrics_gauge(m, "x_n", "N.", NULL, 0, &g), 0);
	assert_int_equal(metrics_add_collector(m, collect, g), 0);
	text = render(m);
	assert_non_null(strstr(text, "\nx_n 1\n"));
	free(text);
	metrics_remove_collector(m, collect, g);
	text = render(m);
	assert_non_null(strstr(text, "\nx_n 1\n"));
	assert_int_equal(collected, 1);
	free(text);
	metrics_free(m);
}

static void null_family_is_a_no_op(void **state)
{
	(void)state;
	metric_inc(NULL, "a", "b");
	metric_set(NULL, NULL, NULL, 1);
	metric_observe(NULL, NULL, NULL, 1);
	assert_int_equal(metric_value(NULL, NULL, NULL), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(counter_series_start_at_zero_and_count),
		cmocka_unit_test(refuses_bad_names_and_clashes),
		cmocka_unit_test(gauges_render_only_once_set),
		cmocka_unit_test(histogram_buckets_are_cumulative),
		cmocka_unit_test(collectors_run_before_rendering),
		cmocka_unit_test(null_family_is_a_no_op),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
