/*
 * proto.default_path: the one rule for where a secret_file goes when
 * nobody names a path. With a runtime directory:
 * RUNTIME_DIR/ramkey/credentials.json; without: HOME/.alibabacloud/
 * ramkey.json. A runtime directory is usable only when it is an absolute
 * path naming a directory (not a symbolic link) owned by the user. The
 * PAM module takes XDG_RUNTIME_DIR (and fails when it is set but not
 * usable); the client takes /run/user/UID when usable, else the home.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "default_path.h"
#include "message.h"
#include "ramkey_err.h"

static char *base; /* scratch directory, mode 0755, ours */

static char *join(const char *a, const char *b)
{
	char *p = NULL;

	assert_true(asprintf(&p, "%s/%s", a, b) > 0);
	return p;
}

static void expect_path(const char *rdir, const char *home, const char *want)
{
	char *out = (char *)1;

	assert_int_equal(ramkey_default_secret_file(rdir, home, &out), 0);
	assert_non_null(out);
	assert_string_equal(out, want);
	free(out);
}

static void expect_invalid(const char *rdir, const char *home)
{
	char *out = (char *)1;

	assert_int_equal(
	    ramkey_default_secret_file(rdir, home, &out), RAMKEY_ERR_INVALID);
	assert_null(out);
}

/* ---- the path ---- */

static void test_runtime_dir_given(void **state)
{
	expect_path("/run/user/1000", "/home/alice",
	    "/run/user/1000/ramkey/credentials.json");
	/* The home plays no part then, even a useless one. */
	expect_path("/run/user/1000", NULL,
	    "/run/user/1000/ramkey/credentials.json");
	expect_path("/run/user/1000", "relative",
	    "/run/user/1000/ramkey/credentials.json");
}

static void test_no_runtime_dir_home(void **state)
{
	expect_path(NULL, "/home/alice",
	    "/home/alice/.alibabacloud/ramkey.json");
	expect_path(NULL, "/var/lib/svc home",
	    "/var/lib/svc home/.alibabacloud/ramkey.json");
}

static void test_trailing_slashes_not_doubled(void **state)
{
	expect_path("/run/user/1000/", NULL,
	    "/run/user/1000/ramkey/credentials.json");
	expect_path("/run/user/1000//", NULL,
	    "/run/user/1000/ramkey/credentials.json");
	expect_path(NULL, "/home/alice/",
	    "/home/alice/.alibabacloud/ramkey.json");
	expect_path(NULL, "/", "/.alibabacloud/ramkey.json");
	expect_path(NULL, "//", "/.alibabacloud/ramkey.json");
	expect_path("/", NULL, "/ramkey/credentials.json");
}

static void test_directory_must_be_absolute(void **state)
{
	expect_invalid(NULL, NULL);
	expect_invalid(NULL, "");
	expect_invalid(NULL, "home/alice");
	expect_invalid(NULL, "./alice");
	expect_invalid("run/user/1000", "/home/alice");
	expect_invalid("", "/home/alice");
}

static void test_result_shorter_than_path_max(void **state)
{
	size_t fits = RAMKEY_PATH_MAX - 1 -
	    strlen("/.alibabacloud/ramkey.json");
	char *home = malloc(RAMKEY_PATH_MAX + 1), *out = NULL;

	assert_non_null(home);
	memset(home, 'h', RAMKEY_PATH_MAX);
	home[0] = '/';
	home[fits] = '\0';
	assert_int_equal(ramkey_default_secret_file(NULL, home, &out), 0);
	assert_int_equal(strlen(out), RAMKEY_PATH_MAX - 1);
	free(out);
	home[fits] = 'h';
	home[fits + 1] = '\0';
	expect_invalid(NULL, home);
	/* The same bound for a runtime directory. */
	memset(home + 1, 'r', RAMKEY_PATH_MAX - 1);
	home[RAMKEY_PATH_MAX - strlen("/ramkey/credentials.json")] = '\0';
	expect_invalid(home, "/home/alice");
	free(home);
}

/* ---- the runtime directory check ---- */

static void test_runtime_dir_owned_directory_usable(void **state)
{
	char *d = join(base, "run-ok");

	assert_int_equal(mkdir(d, 0700), 0);
	assert_int_equal(ramkey_runtime_dir_check(d, geteuid(), NULL, 0), 0);
	/* Mode does not matter: pam_systemd's is 0700, but a 0755 one is
	 * still the user's. */
	assert_int_equal(chmod(d, 0755), 0);
	assert_int_equal(ramkey_runtime_dir_check(d, geteuid(), NULL, 0), 0);
	free(d);
}

static void test_runtime_dir_of_another_uid_unusable(void **state)
{
	char why[256] = "";
	char *d = join(base, "run-other");

	assert_int_equal(mkdir(d, 0700), 0);
	assert_int_equal(ramkey_runtime_dir_check(d, geteuid() + 1, why,
	    sizeof(why)), RAMKEY_ERR_UNSAFE_PATH);
	assert_non_null(strstr(why, d));
	if (geteuid() == 0) {
		/* Really another user's. */
		assert_int_equal(chown(d, 4242, 4242), 0);
		assert_int_equal(ramkey_runtime_dir_check(d, 0, NULL, 0),
		    RAMKEY_ERR_UNSAFE_PATH);
		assert_int_equal(ramkey_runtime_dir_check(d, 4242, NULL, 0), 0);
	}
	free(d);
}

static void test_runtime_dir_symlink_unusable(void **state)
{
	char *d = join(base, "run-target"), *l = join(base, "run-link");

	assert_int_equal(mkdir(d, 0700), 0);
	assert_int_equal(symlink(d, l), 0);
	assert_int_equal(ramkey_runtime_dir_check(l, geteuid(), NULL, 0),
	    RAMKEY_ERR_UNSAFE_PATH);
	free(d);
	free(l);
}

static void test_runtime_dir_not_a_directory_unusable(void **state)
{
	char *f = join(base, "run-file"), *m = join(base, "run-missing");
	FILE *fp = fopen(f, "w");

	assert_non_null(fp);
	fclose(fp);
	assert_int_equal(ramkey_runtime_dir_check(f, geteuid(), NULL, 0),
	    RAMKEY_ERR_UNSAFE_PATH);
	assert_int_equal(ramkey_runtime_dir_check(m, geteuid(), NULL, 0),
	    RAMKEY_ERR_UNSAFE_PATH);
	free(f);
	free(m);
}

static void test_runtime_dir_relative_or_missing_unusable(void **state)
{
	char why[256] = "";
	char *cwd = getcwd(NULL, 0);

	assert_non_null(cwd);
	assert_int_equal(chdir(base), 0);
	assert_int_equal(mkdir("rel", 0700), 0);
	/* A directory of ours, but named relatively: not usable. */
	assert_int_equal(ramkey_runtime_dir_check("rel", geteuid(), why,
	    sizeof(why)), RAMKEY_ERR_UNSAFE_PATH);
	assert_non_null(strstr(why, "absolute"));
	assert_int_equal(chdir(cwd), 0);
	free(cwd);
	assert_int_equal(ramkey_runtime_dir_check(NULL, geteuid(), why,
	    sizeof(why)), RAMKEY_ERR_UNSAFE_PATH);
	assert_int_equal(ramkey_runtime_dir_check("", geteuid(), NULL, 0),
	    RAMKEY_ERR_UNSAFE_PATH);
}

static int setup(void **state)
{
	char tmpl[] = "/tmp/ramkey-dp-XXXXXX";

	if (mkdtemp(tmpl) == NULL || chmod(tmpl, 0755) != 0)
		return -1;
	base = strdup(tmpl);
	return base != NULL ? 0 : -1;
}

static int teardown(void **state)
{
	char *cmd = NULL;

	if (asprintf(&cmd, "rm -rf '%s'", base) > 0 && system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", base);
	free(cmd);
	free(base);
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_runtime_dir_given),
	    cmocka_unit_test(test_no_runtime_dir_home),
	    cmocka_unit_test(test_trailing_slashes_not_doubled),
	    cmocka_unit_test(test_directory_must_be_absolute),
	    cmocka_unit_test(test_result_shorter_than_path_max),
	    cmocka_unit_test(test_runtime_dir_owned_directory_usable),
	    cmocka_unit_test(test_runtime_dir_of_another_uid_unusable),
	    cmocka_unit_test(test_runtime_dir_symlink_unusable),
	    cmocka_unit_test(test_runtime_dir_not_a_directory_unusable),
	    cmocka_unit_test(test_runtime_dir_relative_or_missing_unusable),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
