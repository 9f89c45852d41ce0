/*
 * proto.template: %u %U %h %H %r %% expansion for ram_user, secret_file
 * and pgp_key_file; unknown specifiers, a lone %, %r without a runtime
 * dir and over-long results are refused with a reason.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "ramkey_err.h"
#include "template.h"

static const struct ramkey_template_vars vars = {
    .user = "alice",
    .uid = 1234,
    .home = "/home/alice",
    .host = "web1",
    .runtime_dir = "/run/user/1234",
};

static char *expand_ok(const char *tmpl, const struct ramkey_template_vars *v)
{
	const char *why = "unset";
	char *out = NULL;
	int r = ramkey_template_expand(tmpl, v, &out, &why);

	if (r != 0)
		print_error("\"%s\" refused: %s\n", tmpl, why ? why : "?");
	assert_int_equal(r, 0);
	assert_non_null(out);
	return out;
}

static void assert_expands(const char *tmpl, const char *want)
{
	char *out = expand_ok(tmpl, &vars);

	assert_string_equal(out, want);
	free(out);
}

static const char *expand_fails(
    const char *tmpl, const struct ramkey_template_vars *v, int want)
{
	const char *why = NULL;
	char *out = (char *)"x";

	assert_int_equal(ramkey_template_expand(tmpl, v, &out, &why), want);
	assert_null(out);
	assert_non_null(why);
	assert_true(strlen(why) > 0);
	return why;
}

static void test_each_specifier_expands(void **state)
{
	assert_expands("%u", "alice");
	assert_expands("%U", "1234");
	assert_expands("%h", "/home/alice");
	assert_expands("%H", "web1");
	assert_expands("%r", "/run/user/1234");
	assert_expands("%%", "%");
}

static void test_specifiers_combine_with_text(void **state)
{
	assert_expands("%r/ramkey/credentials.json",
	    "/run/user/1234/ramkey/credentials.json");
	assert_expands("%h/.alibabacloud/ramkey.json",
	    "/home/alice/.alibabacloud/ramkey.json");
	assert_expands("ram-%u-%H", "ram-alice-web1");
	assert_expands("%u%U%%%u", "alice1234%alice");
	assert_expands("100%%", "100%");
	assert_expands("%%u", "%u"); /* %% first, then a plain u */
	assert_expands("plain", "plain");
	assert_expands("", "");
}

static void test_uid_zero_and_large(void **state)
{
	struct ramkey_template_vars v = vars;
	char *out;

	v.uid = 0;
	out = expand_ok("%U", &v);
	assert_string_equal(out, "0");
	free(out);
	v.uid = 4294967294u;
	out = expand_ok("%U", &v);
	assert_string_equal(out, "4294967294");
	free(out);
}

static void test_host_looked_up_when_not_given(void **state)
{
	struct ramkey_template_vars v = vars;
	char want[256], *out;

	v.host = NULL;
	assert_int_equal(ramkey_short_hostname(want, sizeof(want)), 0);
	assert_null(strchr(want, '.'));
	out = expand_ok("%H", &v);
	assert_string_equal(out, want);
	free(out);
}

static void test_unknown_specifier_refused(void **state)
{
	const char *why;

	why = expand_fails("%x", &vars, RAMKEY_ERR_INVALID);
	assert_non_null(strstr(why, "unknown"));
	expand_fails("/home/%g/file", &vars, RAMKEY_ERR_INVALID);
	expand_fails("%-", &vars, RAMKEY_ERR_INVALID);
	expand_fails("%R", &vars, RAMKEY_ERR_INVALID);
	expand_fails("% u", &vars, RAMKEY_ERR_INVALID);
	assert_int_equal(
	    ramkey_template_check("%x", 1, &why), RAMKEY_ERR_INVALID);
	assert_non_null(why);
}

static void test_lone_percent_refused(void **state)
{
	const char *why;

	why = expand_fails("%", &vars, RAMKEY_ERR_INVALID);
	assert_non_null(strstr(why, "%"));
	expand_fails("abc%", &vars, RAMKEY_ERR_INVALID);
	expand_fails("%%%", &vars, RAMKEY_ERR_INVALID);
	assert_int_equal(
	    ramkey_template_check("a%", 1, &why), RAMKEY_ERR_INVALID);
	assert_non_null(why);
}

static void test_runtime_dir_missing_refused(void **state)
{
	struct ramkey_template_vars v = vars;
	const char *why;

	v.runtime_dir = NULL;
	why =
	    expand_fails("%r/ramkey/credentials.json", &v, RAMKEY_ERR_INVALID);
	assert_non_null(strstr(why, "XDG_RUNTIME_DIR"));
	/* Without %r the runtime dir is not needed. */
	{
		char *out = expand_ok("%h/x", &v);

		assert_string_equal(out, "/home/alice/x");
		free(out);
	}
}

static void test_missing_value_refused(void **state)
{
	struct ramkey_template_vars v = vars;

	v.home = NULL;
	expand_fails("%h/x", &v, RAMKEY_ERR_INVALID);
	v = vars;
	v.user = NULL;
	expand_fails("%u", &v, RAMKEY_ERR_INVALID);
}

static void test_check_allows_r_only_when_asked(void **state)
{
	const char *why = "x";

	assert_int_equal(ramkey_template_check("%r/x", 1, &why), 0);
	assert_null(why);
	assert_int_equal(
	    ramkey_template_check("%r/x", 0, &why), RAMKEY_ERR_INVALID);
	assert_non_null(why);
	assert_non_null(strstr(why, "PAM"));
	assert_int_equal(ramkey_template_check("%u-%U-%h-%H-%%", 0, &why), 0);
	assert_int_equal(ramkey_template_check("%u", 0, NULL), 0);
	assert_int_equal(
	    ramkey_template_check("%q", 0, NULL), RAMKEY_ERR_INVALID);
}

static void test_over_long_result_refused(void **state)
{
	struct ramkey_template_vars v = vars;
	char *home, *tmpl, *out = NULL;
	const char *why;

	/* A result of RAMKEY_TEMPLATE_OUT_MAX - 1 bytes fits... */
	tmpl = malloc(RAMKEY_TEMPLATE_OUT_MAX + 1);
	assert_non_null(tmpl);
	memset(tmpl, 'a', RAMKEY_TEMPLATE_OUT_MAX - 1);
	tmpl[RAMKEY_TEMPLATE_OUT_MAX - 1] = '\0';
	out = expand_ok(tmpl, &v);
	assert_int_equal(strlen(out), RAMKEY_TEMPLATE_OUT_MAX - 1);
	free(out);
	/* ...one more byte does not. */
	tmpl[RAMKEY_TEMPLATE_OUT_MAX - 1] = 'a';
	tmpl[RAMKEY_TEMPLATE_OUT_MAX] = '\0';
	why = expand_fails(tmpl, &v, RAMKEY_ERR_TOO_LARGE);
	assert_non_null(strstr(why, "long"));
	free(tmpl);
	/* A short template whose values make it too long. */
	home = malloc(3000);
	assert_non_null(home);
	memset(home, 'h', 2999);
	home[2999] = '\0';
	v.home = home;
	expand_fails("%h/%h", &v, RAMKEY_ERR_TOO_LARGE);
	free(home);
}

static void test_why_may_be_null(void **state)
{
	char *out = (char *)"x";

	assert_int_equal(ramkey_template_expand("%x", &vars, &out, NULL),
	    RAMKEY_ERR_INVALID);
	assert_null(out);
	out = NULL;
	assert_int_equal(ramkey_template_expand("%u", &vars, &out, NULL), 0);
	assert_string_equal(out, "alice");
	free(out);
}

static void test_short_hostname(void **state)
{
	char buf[256], full[256];

	assert_int_equal(ramkey_short_hostname(buf, sizeof(buf)), 0);
	assert_int_equal(gethostname(full, sizeof(full)), 0);
	full[sizeof(full) - 1] = '\0';
	assert_int_equal(strncmp(full, buf, strlen(buf)), 0);
	assert_true(full[strlen(buf)] == '\0' || full[strlen(buf)] == '.');
	assert_int_equal(ramkey_short_hostname(buf, 0), RAMKEY_ERR_INVALID);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_each_specifier_expands),
	    cmocka_unit_test(test_specifiers_combine_with_text),
	    cmocka_unit_test(test_uid_zero_and_large),
	    cmocka_unit_test(test_host_looked_up_when_not_given),
	    cmocka_unit_test(test_unknown_specifier_refused),
	    cmocka_unit_test(test_lone_percent_refused),
	    cmocka_unit_test(test_runtime_dir_missing_refused),
	    cmocka_unit_test(test_missing_value_refused),
	    cmocka_unit_test(test_check_allows_r_only_when_asked),
	    cmocka_unit_test(test_over_long_result_refused),
	    cmocka_unit_test(test_why_may_be_null),
	    cmocka_unit_test(test_short_hostname),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
