/*
 * proto.pgp_key_file: the one reader of a PGP public key file (the
 * client's --pgp-key @FILE, the PAM module's pgp_key_file=). A regular
 * file only, never through a symbolic link; a FIFO (with or without a
 * writer) is refused at once instead of blocking; 1 to RAMKEY_PGP_KEY_MAX
 * bytes, no NUL byte; trailing newlines are not part of the key. As root
 * it reads with the given user's identity.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/fsuid.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "frame.h"
#include "message.h"
#include "pgp_key_file.h"
#include "ramkey_err.h"

#define KEY "mQENBGV4ZXhhbXBsZQ=="

static char *base;
static unsigned serial;

static char *new_path(void)
{
	char *p = NULL;

	assert_true(asprintf(&p, "%s/k%u", base, serial++) > 0);
	return p;
}

static char *file_with(const void *data, size_t len, mode_t mode)
{
	char *p = new_path();
	int fd = open(p, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);

	assert_true(fd >= 0);
	assert_int_equal(write(fd, data, len), (ssize_t)len);
	assert_int_equal(close(fd), 0);
	assert_int_equal(chmod(p, mode), 0);
	return p;
}

static char *text_file(const char *s)
{
	return file_with(s, strlen(s), 0644);
}

/* Read path as ourselves; return the code, the key in *keyp. */
static int rd(const char *path, char **keyp, char *why, size_t whylen)
{
	*keyp = (char *)1;
	return ramkey_pgp_key_file_read(path, NULL, keyp, why, whylen);
}

static void expect_key(const char *path, const char *want)
{
	char why[256] = "", *key;

	assert_int_equal(rd(path, &key, why, sizeof(why)), 0);
	assert_non_null(key);
	assert_string_equal(key, want);
	assert_string_equal(why, "");
	free(key);
}

static void expect_refused(const char *path, int code, const char *words)
{
	char why[512] = "", *key;

	assert_int_equal(rd(path, &key, why, sizeof(why)), code);
	assert_null(key);
	if (strstr(why, path) == NULL || strstr(why, words) == NULL)
		fail_msg("why %s: want %s and %s", why, path, words);
}

static void test_regular_file_read(void **state)
{
	char *p = text_file(KEY);

	expect_key(p, KEY);
	free(p);
}

static void test_armored_key_keeps_inner_newlines(void **state)
{
	static const char armored[] =
	    "-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nmQENBGV4\nZXhh\n=abcd\n"
	    "-----END PGP PUBLIC KEY BLOCK-----";
	char *p, *with_nl = NULL;

	assert_true(asprintf(&with_nl, "%s\n", armored) > 0);
	p = text_file(with_nl);
	expect_key(p, armored);
	free(p);
	free(with_nl);
}

static void test_trailing_newlines_trimmed(void **state)
{
	static const char *const files[] = {
	    KEY "\n", KEY "\r\n", KEY "\n\n\n", KEY "\r\n\r\n", KEY "\n\r\n",
	};
	size_t i;

	for (i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
		char *p = text_file(files[i]);

		expect_key(p, KEY);
		free(p);
	}
	/* Only trailing ones: leading and inner whitespace is the agent's
	 * to judge. */
	{
		char *p = text_file("\n" KEY " x\n");

		expect_key(p, "\n" KEY " x");
		free(p);
	}
}

static void test_empty_file_refused(void **state)
{
	char *p = text_file("");

	expect_refused(p, RAMKEY_ERR_INVALID, "no key");
	free(p);
	/* Newlines only: nothing left once they are trimmed. */
	p = text_file("\n");
	expect_refused(p, RAMKEY_ERR_INVALID, "no key");
	free(p);
	p = text_file("\r\n\n");
	expect_refused(p, RAMKEY_ERR_INVALID, "no key");
	free(p);
}

static void test_nul_byte_refused(void **state)
{
	static const char with_nul[] = "mQEN\0BGV4\n";
	char *p = file_with(with_nul, sizeof(with_nul) - 1, 0644);

	expect_refused(p, RAMKEY_ERR_INVALID, "NUL");
	free(p);
	p = file_with("\0", 1, 0644);
	expect_refused(p, RAMKEY_ERR_INVALID, "NUL");
	free(p);
}

static void test_size_limit(void **state)
{
	char *big = malloc(RAMKEY_PGP_KEY_MAX + 1), *p, *key;

	assert_non_null(big);
	memset(big, 'A', RAMKEY_PGP_KEY_MAX + 1);
	/* Exactly the limit is fine. */
	p = file_with(big, RAMKEY_PGP_KEY_MAX, 0644);
	assert_int_equal(rd(p, &key, NULL, 0), 0);
	assert_int_equal(strlen(key), RAMKEY_PGP_KEY_MAX);
	free(key);
	free(p);
	/* One byte more is not, even a newline that would be trimmed. */
	p = file_with(big, RAMKEY_PGP_KEY_MAX + 1, 0644);
	expect_refused(p, RAMKEY_ERR_TOO_LARGE, "larger");
	free(p);
	big[RAMKEY_PGP_KEY_MAX] = '\n';
	p = file_with(big, RAMKEY_PGP_KEY_MAX + 1, 0644);
	expect_refused(p, RAMKEY_ERR_TOO_LARGE, "larger");
	free(p);
	free(big);
}

static void test_fifo_refused_at_once(void **state)
{
	char *p = new_path();
	uint64_t t0;
	int w;

	assert_int_equal(mkfifo(p, 0644), 0);
	/* Nobody writing: an open without O_NONBLOCK would wait for one. */
	t0 = ramkey_now_ms();
	expect_refused(p, RAMKEY_ERR_INVALID, "not a regular file");
	assert_in_range(ramkey_now_ms() - t0, 0, 500);
	/* A writer that never writes: a blocking read would wait for it. */
	w = open(p, O_RDWR | O_NONBLOCK | O_CLOEXEC);
	assert_true(w >= 0);
	t0 = ramkey_now_ms();
	expect_refused(p, RAMKEY_ERR_INVALID, "not a regular file");
	assert_in_range(ramkey_now_ms() - t0, 0, 500);
	close(w);
	free(p);
}

static void test_directory_and_device_refused(void **state)
{
	char *p = new_path();

	assert_int_equal(mkdir(p, 0755), 0);
	expect_refused(p, RAMKEY_ERR_INVALID, "not a regular file");
	free(p);
	expect_refused("/dev/null", RAMKEY_ERR_INVALID, "not a regular file");
}

static void test_symlink_refused(void **state)
{
	char *target = text_file(KEY), *link = new_path();

	assert_int_equal(symlink(target, link), 0);
	expect_refused(link, RAMKEY_ERR_UNSAFE_PATH, "symbolic link");
	/* Even to a FIFO: refused before anything is opened. */
	free(target);
	target = new_path();
	assert_int_equal(mkfifo(target, 0644), 0);
	assert_int_equal(unlink(link), 0);
	assert_int_equal(symlink(target, link), 0);
	expect_refused(link, RAMKEY_ERR_UNSAFE_PATH, "symbolic link");
	free(target);
	free(link);
}

static void test_missing_file_is_io_error(void **state)
{
	char *p = new_path();
	char why[256], *key;

	errno = 0;
	assert_int_equal(rd(p, &key, why, sizeof(why)), RAMKEY_ERR_IO);
	assert_int_equal(errno, ENOENT);
	assert_null(key);
	assert_non_null(strstr(why, "No such file"));
	free(p);
	assert_int_equal(rd("", &key, why, sizeof(why)), RAMKEY_ERR_INVALID);
	assert_null(key);
}

static void test_why_may_be_null(void **state)
{
	char *p = text_file(""), *key;

	assert_int_equal(rd(p, &key, NULL, 0), RAMKEY_ERR_INVALID);
	assert_null(key);
	free(p);
}

/* As root: the file is read with the user's identity, so a file only
 * root may read is refused, and the identity comes back afterwards. */
static void test_read_as_user(void **state)
{
	struct ramkey_owner o = { NULL, 4242, 4242 };
	struct ramkey_fsid_user u;
	char why[256] = "", *key = (char *)1;
	char *secret = file_with(KEY, strlen(KEY), 0600);
	char *open_one = text_file(KEY "\n");

	if (geteuid() != 0) {
		/* Not root: only ourselves. */
		o.uid = geteuid();
		o.gid = getegid();
		assert_int_equal(ramkey_fsid_user_lookup(&o, &u), 0);
		assert_int_equal(ramkey_pgp_key_file_read(open_one, &u, &key,
		    why, sizeof(why)), 0);
		free(key);
		o.uid = geteuid() + 1;
		ramkey_fsid_user_clear(&u);
		assert_int_equal(ramkey_fsid_user_lookup(&o, &u), 0);
		assert_int_equal(ramkey_pgp_key_file_read(open_one, &u, &key,
		    why, sizeof(why)), RAMKEY_ERR_DENIED);
		assert_null(key);
		ramkey_fsid_user_clear(&u);
		free(secret);
		free(open_one);
		return;
	}
	assert_int_equal(ramkey_fsid_user_lookup(&o, &u), 0);
	assert_int_equal(ramkey_pgp_key_file_read(secret, &u, &key, why,
	    sizeof(why)), RAMKEY_ERR_IO);
	assert_int_equal(errno, EACCES);
	assert_null(key);
	assert_int_equal(ramkey_pgp_key_file_read(open_one, &u, &key, why,
	    sizeof(why)), 0);
	assert_string_equal(key, KEY);
	free(key);
	/* Root again. */
	assert_int_equal(setfsuid((uid_t)-1), 0);
	expect_key(secret, KEY);
	ramkey_fsid_user_clear(&u);
	ramkey_fsid_user_clear(NULL);
	free(secret);
	free(open_one);
}

static int setup(void **state)
{
	char tmpl[] = "/tmp/ramkey-pk-XXXXXX";

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
	    cmocka_unit_test(test_regular_file_read),
	    cmocka_unit_test(test_armored_key_keeps_inner_newlines),
	    cmocka_unit_test(test_trailing_newlines_trimmed),
	    cmocka_unit_test(test_empty_file_refused),
	    cmocka_unit_test(test_nul_byte_refused),
	    cmocka_unit_test(test_size_limit),
	    cmocka_unit_test(test_fifo_refused_at_once),
	    cmocka_unit_test(test_directory_and_device_refused),
	    cmocka_unit_test(test_symlink_refused),
	    cmocka_unit_test(test_missing_file_is_io_error),
	    cmocka_unit_test(test_why_may_be_null),
	    cmocka_unit_test(test_read_as_user),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
