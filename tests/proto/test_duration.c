/*
 * proto.duration: "90", "30m", "1h30m", "2d"...: whole numbers with units
 * s, m, h, d chained in decreasing order, each at most once; a bare
 * number is seconds; anything else, and anything over ten years, is
 * refused. Formatting gives back the same syntax.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "duration.h"
#include "ramkey_err.h"

static uint64_t parse_ok(const char *s)
{
	uint64_t v = 12345;
	int r = ramkey_duration_parse(s, &v);

	if (r != 0)
		print_error("refused \"%s\"\n", s);
	assert_int_equal(r, 0);
	return v;
}

static void assert_refused(const char *s)
{
	uint64_t v = 12345;
	int r = ramkey_duration_parse(s, &v);

	if (r == 0)
		print_error(
		    "accepted \"%s\" as %llu\n", s, (unsigned long long)v);
	assert_int_equal(r, RAMKEY_ERR_INVALID);
	assert_int_equal(v, 0); /* output cleared on failure */
}

static void test_bare_number_is_seconds(void **state)
{
	assert_int_equal(parse_ok("90"), 90);
	assert_int_equal(parse_ok("1"), 1);
	assert_int_equal(parse_ok("0"), 0); /* zero parses; TTLs refuse it */
	assert_int_equal(parse_ok("007"), 7);
}

static void test_single_units(void **state)
{
	assert_int_equal(parse_ok("45s"), 45);
	assert_int_equal(parse_ok("30m"), 1800);
	assert_int_equal(parse_ok("12h"), 43200);
	assert_int_equal(parse_ok("2d"), 172800);
	assert_int_equal(parse_ok("0s"), 0);
}

static void test_chained_units(void **state)
{
	assert_int_equal(parse_ok("1h30m"), 5400);
	assert_int_equal(parse_ok("1d2h3m4s"), 86400 + 7200 + 180 + 4);
	assert_int_equal(parse_ok("1d4s"), 86404);
	assert_int_equal(parse_ok("2h0m"), 7200);
	assert_int_equal(parse_ok("90m"), 5400); /* no carry rule */
}

static void test_malformed_refused(void **state)
{
	assert_refused("");
	assert_refused("h");
	assert_refused("1x");
	assert_refused("1H");
	assert_refused("1.5h");
	assert_refused(" 1h");
	assert_refused("1h ");
	assert_refused("1 h");
	assert_refused("-1");
	assert_refused("+1");
	assert_refused("1h30"); /* a bare number only on its own */
	assert_refused("1hm");
	assert_refused("1e3");
	assert_refused("0x10");
	assert_refused("1h\n");
	assert_refused("1s1");
}

static void test_repeated_unit_refused(void **state)
{
	assert_refused("1h1h");
	assert_refused("1s1s");
	assert_refused("1d1d");
}

static void test_units_out_of_order_refused(void **state)
{
	assert_refused("30m1h");
	assert_refused("1s1m");
	assert_refused("1h1d");
	assert_refused("1m1h30s");
}

static void test_overflow_refused(void **state)
{
	char buf[64];

	/* Ten years is the most; one second more is refused. */
	assert_int_equal(parse_ok("3650d"), RAMKEY_DURATION_MAX);
	snprintf(
	    buf, sizeof(buf), "%llu", (unsigned long long)RAMKEY_DURATION_MAX);
	assert_int_equal(parse_ok(buf), RAMKEY_DURATION_MAX);
	snprintf(buf, sizeof(buf), "%llu",
	    (unsigned long long)RAMKEY_DURATION_MAX + 1);
	assert_refused(buf);
	assert_refused("3650d1s");
	assert_refused("3651d");
	assert_refused("99999999999999999999");
	assert_refused("18446744073709551616");
	assert_refused("18446744073709551617s");
	assert_refused("99999999999999999999999999999999d");
	assert_refused("1000000000h");
}

static void test_format_examples(void **state)
{
	char buf[64];

	ramkey_duration_format(0, buf, sizeof(buf));
	assert_string_equal(buf, "0s");
	ramkey_duration_format(90, buf, sizeof(buf));
	assert_string_equal(buf, "1m30s");
	ramkey_duration_format(5400, buf, sizeof(buf));
	assert_string_equal(buf, "1h30m");
	ramkey_duration_format(86400 + 7200 + 180 + 4, buf, sizeof(buf));
	assert_string_equal(buf, "1d2h3m4s");
	ramkey_duration_format(43200, buf, sizeof(buf));
	assert_string_equal(buf, "12h");
}

static void test_format_round_trip(void **state)
{
	static const uint64_t values[] = {0, 1, 59, 60, 61, 3599, 3600, 3601,
	    86399, 86400, 86401, 90061, 1234567, RAMKEY_DURATION_MAX - 1,
	    RAMKEY_DURATION_MAX};
	size_t i;

	for (i = 0; i < sizeof(values) / sizeof(values[0]); i++) {
		char buf[64];

		ramkey_duration_format(values[i], buf, sizeof(buf));
		assert_int_equal(parse_ok(buf), values[i]);
	}
	for (uint64_t v = 0; v < 200000; v += 97) {
		char buf[64];

		ramkey_duration_format(v, buf, sizeof(buf));
		assert_int_equal(parse_ok(buf), v);
	}
}

static void test_format_never_overruns_small_buffer(void **state)
{
	char buf[8];

	memset(buf, 'Z', sizeof(buf));
	ramkey_duration_format(86400 + 7200 + 180 + 4, buf, 5);
	assert_true(memchr(buf, '\0', 5) != NULL);
	assert_int_equal(buf[5], 'Z');
	buf[0] = 'Z';
	ramkey_duration_format(5, buf, 0); /* nothing written */
	assert_int_equal(buf[0], 'Z');
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_bare_number_is_seconds),
	    cmocka_unit_test(test_single_units),
	    cmocka_unit_test(test_chained_units),
	    cmocka_unit_test(test_malformed_refused),
	    cmocka_unit_test(test_repeated_unit_refused),
	    cmocka_unit_test(test_units_out_of_order_refused),
	    cmocka_unit_test(test_overflow_refused),
	    cmocka_unit_test(test_format_examples),
	    cmocka_unit_test(test_format_round_trip),
	    cmocka_unit_test(test_format_never_overruns_small_buffer),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
