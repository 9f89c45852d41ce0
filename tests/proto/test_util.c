/*
 * proto.util: AccessKeyId masking, strict RFC 3339 parsing, the name and
 * id validators, strict base64, constant-time comparison and the secret
 * wiping helpers.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "ramkey_err.h"
#include "util.h"

static void rep(char *buf, char c, size_t n)
{
	memset(buf, c, n);
	buf[n] = '\0';
}

/* ---- mask_key_id ---- */

static void test_mask_key_id_keeps_first_and_last_four(void **state)
{
	char out[RAMKEY_MASKED_MAX];

	ramkey_mask_key_id("LTAI5tExample00000000001", out);
	assert_string_equal(out, "LTAI****0001");
	ramkey_mask_key_id("LTAI0wNEpMMlzy7sabcd", out);
	assert_string_equal(out, "LTAI****abcd");
	ramkey_mask_key_id("ABCDEFGHI", out);
	assert_string_equal(out, "ABCD****FGHI");
}

static void test_mask_key_id_masks_short_ids_fully(void **state)
{
	char out[RAMKEY_MASKED_MAX];

	ramkey_mask_key_id("LTAI1234", out);
	assert_string_equal(out, "****");
	ramkey_mask_key_id("abc", out);
	assert_string_equal(out, "****");
	ramkey_mask_key_id("", out);
	assert_string_equal(out, "****");
	ramkey_mask_key_id(NULL, out);
	assert_string_equal(out, "****");
}

static void test_mask_key_id_never_overflows(void **state)
{
	char id[300], out[RAMKEY_MASKED_MAX + 8];

	memset(out, 'Z', sizeof(out));
	rep(id, 'A', 64);
	ramkey_mask_key_id(id, out);
	assert_string_equal(out, "AAAA****AAAA");
	rep(id, 'B', 299);
	ramkey_mask_key_id(id, out);
	assert_true(strlen(out) < RAMKEY_MASKED_MAX);
	assert_null(strstr(out, "BBBBB")); /* never more than 4 in a row */
	assert_int_equal(out[RAMKEY_MASKED_MAX], 'Z');
}

/* ---- time ---- */

static void test_parse_time_accepts_rfc3339_utc(void **state)
{
	int64_t t = -1;

	assert_int_equal(ramkey_parse_time("2026-11-27T20:18:10Z", &t), 0);
	assert_int_equal(t, 1795810690);
	assert_int_equal(ramkey_parse_time("1970-01-01T00:00:00Z", &t), 0);
	assert_int_equal(t, 0);
	assert_int_equal(ramkey_parse_time("2024-02-29T00:00:00Z", &t), 0);
	assert_int_equal(t, 1709164800);
	assert_int_equal(ramkey_parse_time("2015-01-23T12:33:18Z", &t), 0);
	assert_int_equal(t, 1422016398);
}

static void assert_bad_time(const char *s)
{
	int64_t t = 77;

	if (ramkey_parse_time(s, &t) == 0)
		print_error("accepted \"%s\"\n", s);
	assert_int_equal(ramkey_parse_time(s, &t), RAMKEY_ERR_INVALID);
	assert_int_equal(t, 0);
}

/* The arithmetic agrees with timegm() on every day of 1970-2199 (and
 * refuses the days timegm() would carry into the next month). */
static void test_parse_time_agrees_with_timegm(void **state)
{
	static const int mdays[] = { 31, 29, 31, 30, 31, 30, 31, 31, 30, 31,
		30, 31 };
	char buf[32];
	int y, m, d;

	for (y = 1970; y < 2200; y++)
		for (m = 1; m <= 12; m++)
			for (d = 1; d <= mdays[m - 1]; d++) {
				struct tm tm = { .tm_year = y - 1900,
					.tm_mon = m - 1, .tm_mday = d,
					.tm_hour = 23, .tm_min = 59,
					.tm_sec = 59 };
				time_t want = timegm(&tm);
				int64_t t = -1;
				int r;

				snprintf(buf, sizeof(buf),
				    "%04d-%02d-%02dT23:59:59Z", y, m, d);
				r = ramkey_parse_time(buf, &t);
				if (tm.tm_mday != d) {
					/* 29 February of a common year */
					assert_int_equal(r, RAMKEY_ERR_INVALID);
					continue;
				}
				assert_int_equal(r, 0);
				assert_int_equal(t, (int64_t)want);
			}
}

static void test_parse_time_is_strict(void **state)
{
	assert_bad_time("2026-02-31T00:00:00Z"); /* 31 February */
	assert_bad_time("2026-02-29T00:00:00Z"); /* not a leap year */
	assert_bad_time("2026-04-31T00:00:00Z");
	assert_bad_time("2026-11-27T20:18:10");  /* missing Z */
	assert_bad_time("2026-11-27t20:18:10Z"); /* lower-case t */
	assert_bad_time("2026-11-27T20:18:10z");
	assert_bad_time("2026-11-27 20:18:10Z");
	assert_bad_time("2026-11-27T20:18:10+00:00");
	assert_bad_time("2026-11-27T20:18:10.000Z");
	assert_bad_time("2026-11-27T24:00:00Z");
	assert_bad_time("2026-11-27T20:60:00Z");
	assert_bad_time("2026-13-01T00:00:00Z");
	assert_bad_time("2026-00-01T00:00:00Z");
	assert_bad_time("2026-01-00T00:00:00Z");
	assert_bad_time("2026-01-32T00:00:00Z");
	assert_bad_time("1969-12-31T23:59:59Z");
	assert_bad_time("2026-1-27T20:18:10Z");
	assert_bad_time("2026-11-27T20:18:1Z");
	assert_bad_time("+026-11-27T20:18:10Z");
	assert_bad_time("2026-11-27T2 :18:10Z");
	assert_bad_time(" 2026-11-27T20:18:10Z");
	assert_bad_time("2026-11-27T20:18:10Z ");
	assert_bad_time("");
	assert_bad_time(NULL);
}

static void test_format_time_round_trip(void **state)
{
	static const int64_t ts[] = {
	    0, 1, 951782400, 1422016398, 1709164800, 1795810690, 4102444799};
	size_t i;

	for (i = 0; i < sizeof(ts) / sizeof(ts[0]); i++) {
		char buf[32];
		int64_t back = -1;

		ramkey_format_time(ts[i], buf);
		assert_int_equal(strlen(buf), 20);
		assert_int_equal(ramkey_parse_time(buf, &back), 0);
		assert_int_equal(back, ts[i]);
	}
	{
		char buf[32];

		ramkey_format_time(1795810690, buf);
		assert_string_equal(buf, "2026-11-27T20:18:10Z");
	}
}

/* ---- validators ---- */

static void test_valid_key_id(void **state)
{
	char buf[80];

	assert_true(ramkey_valid_key_id("LTAI5tExample00000000001"));
	assert_true(ramkey_valid_key_id("a"));
	assert_true(ramkey_valid_key_id("A.b_c-9"));
	rep(buf, 'k', 64);
	assert_true(ramkey_valid_key_id(buf));
	rep(buf, 'k', 65);
	assert_false(ramkey_valid_key_id(buf));
	assert_false(ramkey_valid_key_id(""));
	assert_false(ramkey_valid_key_id(NULL));
	assert_false(ramkey_valid_key_id("LTAI****abcd"));
	assert_false(ramkey_valid_key_id("LTAI abcd"));
	assert_false(ramkey_valid_key_id("LTAI/abcd"));
	assert_false(ramkey_valid_key_id("LTAI\nabcd"));
	assert_false(ramkey_valid_key_id("LTAI\xc3\xa9"));
	assert_false(ramkey_valid_key_id("a+b"));
}

static void test_valid_user_name(void **state)
{
	char buf[300];

	assert_true(ramkey_valid_user_name("alice"));
	assert_true(ramkey_valid_user_name("a.b-c_d"));
	assert_true(ramkey_valid_user_name("user@EXAMPLE.COM"));
	assert_true(ramkey_valid_user_name("x"));
	assert_true(ramkey_valid_user_name("a-"));
	rep(buf, 'u', 256);
	assert_true(ramkey_valid_user_name(buf));
	rep(buf, 'u', 257);
	assert_false(ramkey_valid_user_name(buf));
	assert_false(ramkey_valid_user_name(""));
	assert_false(ramkey_valid_user_name(NULL));
	assert_false(ramkey_valid_user_name("-alice"));
	assert_false(ramkey_valid_user_name("a/b"));
	assert_false(ramkey_valid_user_name("a:b"));
	assert_false(ramkey_valid_user_name("a,b"));
	assert_false(ramkey_valid_user_name("a b"));
	assert_false(ramkey_valid_user_name("a\tb"));
	assert_false(ramkey_valid_user_name("a\nb"));
	assert_false(ramkey_valid_user_name("a\x7f"));
	assert_false(ramkey_valid_user_name("\xc3\xa9t\xc3\xa9"));
}

static void test_valid_ram_user(void **state)
{
	char buf[80];

	assert_true(ramkey_valid_ram_user("alice"));
	assert_true(ramkey_valid_ram_user("a.b_c-D9"));
	rep(buf, 'r', 64);
	assert_true(ramkey_valid_ram_user(buf));
	rep(buf, 'r', 65);
	assert_false(ramkey_valid_ram_user(buf));
	assert_false(ramkey_valid_ram_user(""));
	assert_false(ramkey_valid_ram_user(NULL));
	assert_false(ramkey_valid_ram_user("a@b"));
	assert_false(ramkey_valid_ram_user("a b"));
	assert_false(ramkey_valid_ram_user("a/b"));
	assert_false(ramkey_valid_ram_user("a%u"));
	assert_false(ramkey_valid_ram_user("\xc3\xa9"));
}

/* ---- base64 ---- */

static void test_b64_round_trip(void **state)
{
	uint8_t in[64];
	size_t n, i;

	for (i = 0; i < sizeof(in); i++)
		in[i] = (uint8_t)(i * 37 + 11);
	for (n = 0; n <= sizeof(in); n++) {
		char *enc = NULL;
		uint8_t *dec = NULL;
		size_t dlen = 99;

		assert_int_equal(ramkey_b64_encode(in, n, &enc), 0);
		assert_int_equal(strlen(enc), (n + 2) / 3 * 4);
		assert_int_equal(
		    ramkey_b64_decode(enc, strlen(enc), &dec, &dlen), 0);
		assert_int_equal(dlen, n);
		if (n > 0)
			assert_memory_equal(dec, in, n);
		free(enc);
		free(dec);
	}
}

static void test_b64_known_values(void **state)
{
	char *enc = NULL;
	uint8_t *dec = NULL;
	size_t n = 0;

	assert_int_equal(
	    ramkey_b64_encode((const uint8_t *)"foobar", 6, &enc), 0);
	assert_string_equal(enc, "Zm9vYmFy");
	free(enc);
	assert_int_equal(
	    ramkey_b64_encode((const uint8_t *)"\xfb\xff", 2, &enc), 0);
	assert_string_equal(enc, "+/8="); /* standard alphabet */
	free(enc);
	assert_int_equal(ramkey_b64_decode("Zm8=", 4, &dec, &n), 0);
	assert_int_equal(n, 2);
	assert_memory_equal(dec, "fo", 2);
	free(dec);
}

static void assert_b64_refused(const char *s)
{
	uint8_t *dec = (uint8_t *)"x";
	size_t n = 5;
	int r = ramkey_b64_decode(s, strlen(s), &dec, &n);

	if (r == 0)
		print_error("accepted \"%s\"\n", s);
	assert_int_equal(r, RAMKEY_ERR_INVALID);
	assert_null(dec);
	assert_int_equal(n, 0);
}

static void test_b64_decode_is_strict(void **state)
{
	assert_b64_refused("Zm8"); /* missing padding */
	assert_b64_refused("Zg");
	assert_b64_refused("Zm9="); /* non-zero bits in the padding */
	assert_b64_refused("Zh==");
	assert_b64_refused("Zm8=="); /* too much padding */
	assert_b64_refused("Zg===");
	assert_b64_refused("====");
	assert_b64_refused("=");
	assert_b64_refused("Zm8=\n"); /* whitespace */
	assert_b64_refused(" Zm8=");
	assert_b64_refused("Zm 8=");
	assert_b64_refused("-_8=");     /* URL-safe alphabet */
	assert_b64_refused("Zm8=Zm8="); /* data after padding */
	assert_b64_refused("Zm8*");
	assert_b64_refused("Z");
	/* bytes from 0x80 up (libsodium 1.0.18 reads them as '/';
	 * fuzz_pgp_key) */
	assert_b64_refused("Zm\x9b=");
	assert_b64_refused("k\x9b\xd0\xd0\xd0\xd0\xd0\xd0");
	assert_b64_refused("\xff\xff\xff\xff");
}

static void test_b64_decode_honours_length(void **state)
{
	uint8_t *dec = NULL;
	size_t n = 0;

	/* Only the first inlen bytes count. */
	assert_int_equal(ramkey_b64_decode("Zm9vYmFy!!!", 8, &dec, &n), 0);
	assert_int_equal(n, 6);
	assert_memory_equal(dec, "foobar", 6);
	free(dec);
	assert_int_equal(ramkey_b64_decode("", 0, &dec, &n), 0);
	assert_int_equal(n, 0);
	free(dec);
}

/* ---- small helpers ---- */

static void test_str_eq_ct(void **state)
{
	assert_true(ramkey_str_eq_ct("abc", "abc"));
	assert_true(ramkey_str_eq_ct("", ""));
	assert_false(ramkey_str_eq_ct("abc", "abd"));
	assert_false(ramkey_str_eq_ct("abc", "abcd"));
	assert_false(ramkey_str_eq_ct("abcd", "abc"));
	assert_false(ramkey_str_eq_ct(NULL, "a"));
	assert_false(ramkey_str_eq_ct("a", NULL));
	assert_false(ramkey_str_eq_ct(NULL, NULL));
}

static void test_free_secret_accepts_null(void **state)
{
	char *s = strdup("secret");

	ramkey_free_secret_str(NULL);
	ramkey_free_secret(NULL, 10);
	ramkey_free_secret_str(s);
	s = malloc(8);
	assert_non_null(s);
	memset(s, 'x', 8);
	ramkey_free_secret(s, 8);
}

static void test_wall_now_is_plausible(void **state)
{
	int64_t now = ramkey_wall_now();

	assert_true(now > 1700000000); /* after November 2023 */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_mask_key_id_keeps_first_and_last_four),
	    cmocka_unit_test(test_mask_key_id_masks_short_ids_fully),
	    cmocka_unit_test(test_mask_key_id_never_overflows),
	    cmocka_unit_test(test_parse_time_accepts_rfc3339_utc),
	    cmocka_unit_test(test_parse_time_is_strict),
	    cmocka_unit_test(test_parse_time_agrees_with_timegm),
	    cmocka_unit_test(test_format_time_round_trip),
	    cmocka_unit_test(test_valid_key_id),
	    cmocka_unit_test(test_valid_user_name),
	    cmocka_unit_test(test_valid_ram_user),
	    cmocka_unit_test(test_b64_round_trip),
	    cmocka_unit_test(test_b64_known_values),
	    cmocka_unit_test(test_b64_decode_is_strict),
	    cmocka_unit_test(test_b64_decode_honours_length),
	    cmocka_unit_test(test_str_eq_ct),
	    cmocka_unit_test(test_free_secret_accepts_null),
	    cmocka_unit_test(test_wall_now_is_plausible),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
