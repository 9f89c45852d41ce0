/*
 * proto.secret_file: the safe secret_file writer and remover (the rules
 * in secret_file.h). Cases that need another uid or root-owned links run
 * only as root (they skip otherwise); the rest run everywhere with the
 * caller as the owner.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/fsuid.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "ramkey_err.h"
#include "secret_file.h"

#define OTHER_UID 4242 /* an unused uid the root-only cases write for */
#define OTHER_GID 4242
#define THIRD_UID 4243

static const char data[] =
    "{\n\t\"AccessKeyId\": \"LTAI5tExample00000000001\"\n}\n";

static char *base;      /* per-run scratch dir (mode 0755) */
static unsigned serial; /* for unique sub-directories */
static struct ramkey_owner me;

/* ---- helpers ---- */

static char *path_join(const char *a, const char *b)
{
	char *p = NULL;

	assert_true(asprintf(&p, "%s/%s", a, b) > 0);
	return p;
}

/* A fresh directory below base, mode 0700, owned by the caller. */
static char *new_dir(void)
{
	char name[32];
	char *d;

	snprintf(name, sizeof(name), "d%u", serial++);
	d = path_join(base, name);
	assert_int_equal(mkdir(d, 0700), 0);
	assert_int_equal(chmod(d, 0700), 0);
	return d;
}

static void put_file(const char *path, const char *text, mode_t mode)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);

	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	assert_int_equal(close(fd), 0);
	assert_int_equal(chmod(path, mode), 0);
}

static char *read_all(const char *path)
{
	static char buf[8192];
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
	ssize_t n;

	assert_true(fd >= 0);
	n = read(fd, buf, sizeof(buf) - 1);
	assert_true(n >= 0);
	buf[n] = '\0';
	close(fd);
	return buf;
}

/* Entries of dir other than "." and "..". */
static int count_entries(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	int n = 0;

	assert_non_null(d);
	while ((de = readdir(d)) != NULL)
		if (strcmp(de->d_name, ".") != 0 &&
		    strcmp(de->d_name, "..") != 0)
			n++;
	closedir(d);
	return n;
}

static void assert_no_temp_file(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *de;

	assert_non_null(d);
	while ((de = readdir(d)) != NULL) {
		size_t n = strlen(de->d_name);

		if (n > 4 && strcmp(de->d_name + n - 4, ".tmp") == 0)
			print_error("temp file left: %s/%s\n", dir, de->d_name);
		assert_false(n > 4 && strcmp(de->d_name + n - 4, ".tmp") == 0);
	}
	closedir(d);
}

static int write_as(
    const char *path, const struct ramkey_owner *o, char *why, size_t whylen)
{
	return ramkey_secret_file_write(
	    path, o, data, strlen(data), why, whylen);
}

static void write_ok(const char *path, const struct ramkey_owner *o)
{
	char why[512] = "";
	int r = write_as(path, o, why, sizeof(why));

	if (r != 0)
		print_error("write %s: %d %s\n", path, r, why);
	assert_int_equal(r, 0);
	assert_string_equal(why, "");
}

static void assert_written(const char *path, uid_t uid)
{
	struct stat st;

	assert_int_equal(lstat(path, &st), 0);
	assert_true(S_ISREG(st.st_mode));
	assert_int_equal(st.st_mode & 07777, 0600);
	assert_int_equal(st.st_uid, uid);
	assert_int_equal(st.st_nlink, 1);
	assert_string_equal(read_all(path), data);
}

static void rm_rf(const char *path)
{
	char *cmd = NULL;

	assert_true(asprintf(&cmd, "rm -rf '%s'", path) > 0);
	assert_int_equal(system(cmd), 0);
	free(cmd);
}

static void skip_unless_root(void)
{
	if (geteuid() != 0) {
		print_message("needs root; skipped\n");
		skip();
	}
}

static struct ramkey_owner other_owner(void)
{
	struct ramkey_owner o = {NULL, OTHER_UID, OTHER_GID};

	return o;
}

/* A directory below base owned by uid, mode 0700. */
static char *new_dir_for(uid_t uid, gid_t gid)
{
	char *d = new_dir();

	assert_int_equal(chown(d, uid, gid), 0);
	return d;
}

static int setup(void **state)
{
	char tmpl[] = "/tmp/ramkey-sf-XXXXXX";
	struct passwd *pw = getpwuid(geteuid());

	if (mkdtemp(tmpl) == NULL || chmod(tmpl, 0755) != 0)
		return -1;
	base = strdup(tmpl);
	me.name = pw != NULL ? strdup(pw->pw_name) : NULL;
	me.uid = geteuid();
	me.gid = getegid();
	return base != NULL ? 0 : -1;
}

static int teardown(void **state)
{
	rm_rf(base);
	free(base);
	free((char *)me.name);
	return 0;
}

/* ---- writing ---- */

static void test_write_creates_file_mode_0600(void **state)
{
	char *d = new_dir(), *f = path_join(d, "credentials.json");
	mode_t old;

	/* Whatever the umask, the file ends up 0600, never more or less. */
	old = umask(0);
	write_ok(f, &me);
	assert_written(f, me.uid);
	umask(0777);
	write_ok(f, &me);
	assert_written(f, me.uid);
	umask(old);
	assert_int_equal(count_entries(d), 1);
	free(f);
	free(d);
}

static void test_write_replaces_by_rename(void **state)
{
	char *d = new_dir(), *f = path_join(d, "credentials.json");
	struct stat before, after;
	char buf[64];
	int fd;
	ssize_t n;

	put_file(f, "old content", 0600);
	assert_int_equal(stat(f, &before), 0);
	fd = open(f, O_RDONLY | O_CLOEXEC);
	assert_true(fd >= 0);
	write_ok(f, &me);
	assert_int_equal(stat(f, &after), 0);
	/* A new inode took the name; the old file was never rewritten. */
	assert_true(before.st_ino != after.st_ino);
	n = pread(fd, buf, sizeof(buf) - 1, 0);
	assert_int_equal(n, 11);
	buf[n] = '\0';
	assert_string_equal(buf, "old content");
	close(fd);
	assert_written(f, me.uid);
	assert_int_equal(count_entries(d), 1);
	free(f);
	free(d);
}

static void test_write_leaves_no_temp_file_on_success(void **state)
{
	char *d = new_dir(), *f = path_join(d, "credentials.json");
	int i;

	for (i = 0; i < 5; i++)
		write_ok(f, &me);
	assert_no_temp_file(d);
	assert_int_equal(count_entries(d), 1);
	free(f);
	free(d);
}

static void test_write_leaves_no_temp_file_on_failure(void **state)
{
	char *d = new_dir(), *f = path_join(d, "credentials.json");
	struct rlimit old, small = {8, 8};
	char why[512] = "";
	void (*oldsig)(int);
	int r;

	/* Let the temporary file be created, then make the write fail
	 * (EFBIG past RLIMIT_FSIZE). */
	put_file(f, "previous", 0600);
	assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
	oldsig = signal(SIGXFSZ, SIG_IGN);
	small.rlim_max = old.rlim_max;
	assert_int_equal(setrlimit(RLIMIT_FSIZE, &small), 0);
	r = write_as(f, &me, why, sizeof(why));
	assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
	signal(SIGXFSZ, oldsig);
	assert_int_equal(r, RAMKEY_ERR_IO);
	assert_non_null(strstr(why, f));
	assert_no_temp_file(d);
	assert_int_equal(count_entries(d), 1);
	/* The previous file is untouched. */
	assert_string_equal(read_all(f), "previous");
	free(f);
	free(d);
}

static void test_write_creates_last_directory_0700(void **state)
{
	char *d = new_dir(), *sub = path_join(d, "ramkey");
	char *f = path_join(sub, "credentials.json");
	struct stat st;
	mode_t old = umask(0);

	write_ok(f, &me);
	umask(old);
	assert_int_equal(lstat(sub, &st), 0);
	assert_true(S_ISDIR(st.st_mode));
	assert_int_equal(st.st_mode & 07777, 0700);
	assert_int_equal(st.st_uid, me.uid);
	assert_written(f, me.uid);
	/* An existing last directory is used as it is. */
	write_ok(f, &me);
	assert_written(f, me.uid);
	free(f);
	free(sub);
	free(d);
}

static void test_write_creates_only_the_last_directory(void **state)
{
	char *d = new_dir(), *f = path_join(d, "a/b/credentials.json");
	char why[512] = "";
	int r;

	r = write_as(f, &me, why, sizeof(why));
	assert_int_not_equal(r, 0);
	assert_true(strlen(why) > 0);
	assert_int_equal(count_entries(d), 0);
	free(f);
	free(d);
}

static void test_write_replaces_symlink_without_touching_target(void **state)
{
	char *d = new_dir(), *f = path_join(d, "credentials.json");
	char *target = path_join(d, "precious");
	struct timeval old_times[2] = {{1000000000, 0}, {1000000000, 0}};
	struct stat before, after, st;

	put_file(target, "precious content", 0644);
	assert_int_equal(utimes(target, old_times), 0);
	assert_int_equal(stat(target, &before), 0);
	assert_int_equal(symlink(target, f), 0);
	write_ok(f, &me);
	assert_written(f, me.uid); /* a regular file now, not a link */
	assert_int_equal(lstat(target, &after), 0);
	assert_int_equal(after.st_ino, before.st_ino);
	assert_int_equal(after.st_mtime, before.st_mtime);
	assert_int_equal(after.st_size, before.st_size);
	assert_int_equal(after.st_mode, before.st_mode);
	assert_string_equal(read_all(target), "precious content");
	/* A dangling link pointing elsewhere: nothing created there. */
	free(target);
	target = path_join(d, "not-there");
	assert_int_equal(unlink(f), 0);
	assert_int_equal(symlink(target, f), 0);
	write_ok(f, &me);
	assert_written(f, me.uid);
	assert_int_equal(lstat(target, &st), -1);
	assert_int_equal(errno, ENOENT);
	free(target);
	free(f);
	free(d);
}

static void on_alarm(int sig)
{
	(void)sig;
	_exit(99); /* the writer blocked on the FIFO */
}

static void test_write_replaces_fifo_without_blocking(void **state)
{
	char *d = new_dir(), *f = path_join(d, "credentials.json");

	assert_int_equal(mkfifo(f, 0600), 0);
	signal(SIGALRM, on_alarm);
	alarm(10);
	write_ok(f, &me);
	alarm(0);
	signal(SIGALRM, SIG_DFL);
	assert_written(f, me.uid);
	free(f);
	free(d);
}

static void test_write_path_with_repeated_slashes(void **state)
{
	char *d = new_dir(), *f, *want;

	/* "a//b" names the same file as "a/b", also right before the file
	 * name and with the last directory to be created. */
	f = path_join(d, "/credentials.json");
	write_ok(f, &me);
	want = path_join(d, "credentials.json");
	assert_written(want, me.uid);
	free(want);
	free(f);
	f = path_join(d, "sub///credentials.json");
	write_ok(f, &me);
	want = path_join(d, "sub/credentials.json");
	assert_written(want, me.uid);
	free(want);
	free(f);
	f = path_join(d, "/sub2//x.json");
	write_ok(f, &me);
	want = path_join(d, "sub2/x.json");
	assert_written(want, me.uid);
	free(want);
	free(f);
	free(d);
}

static void test_write_directory_at_final_name_is_is_dir(void **state)
{
	char *d = new_dir(), *f = path_join(d, "credentials.json");
	char why[512] = "";
	struct stat st;

	assert_int_equal(mkdir(f, 0700), 0);
	assert_int_equal(write_as(f, &me, why, sizeof(why)), RAMKEY_ERR_IS_DIR);
	assert_non_null(strstr(why, f));
	assert_int_equal(lstat(f, &st), 0);
	assert_true(S_ISDIR(st.st_mode));
	assert_int_equal(count_entries(f), 0);
	assert_int_equal(count_entries(d), 1);
	free(f);
	free(d);
}

static void test_write_symlink_component_in_user_dir_is_unsafe(void **state)
{
	char *d = new_dir(), *real = path_join(d, "real");
	char *link = path_join(d, "link");
	char *f1 = path_join(link, "credentials.json");
	char *f2 = path_join(d, "link/sub/credentials.json");
	char why[512] = "", *sub;

	assert_int_equal(mkdir(real, 0700), 0);
	sub = path_join(real, "sub");
	assert_int_equal(mkdir(sub, 0700), 0);
	free(sub);
	assert_int_equal(symlink("real", link), 0);
	/* The link as the last directory, and as one further up. */
	assert_int_equal(
	    write_as(f1, &me, why, sizeof(why)), RAMKEY_ERR_UNSAFE_PATH);
	assert_non_null(strstr(why, "link"));
	assert_int_equal(
	    write_as(f2, &me, why, sizeof(why)), RAMKEY_ERR_UNSAFE_PATH);
	/* Nothing was written through the link. */
	assert_int_equal(count_entries(real), 1); /* just sub/ */
	assert_int_equal(count_entries(d), 2);
	free(f1);
	free(f2);
	free(link);
	free(real);
	free(d);
}

static void test_write_invalid_paths_refused(void **state)
{
	char *d = new_dir();
	char *dot = path_join(d, "./credentials.json");
	char *dotdot = path_join(d, "../credentials.json");
	char *enddot = path_join(d, ".");
	char *enddotdot = path_join(d, "..");
	char *slash = path_join(d, "sub/");
	char why[512];
	const char *bad[] = {"credentials.json", "relative/dir/file", "",
	    "./credentials.json", "../x", dot, dotdot, enddot, enddotdot, slash,
	    "/"};
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		why[0] = '\0';
		if (write_as(bad[i], &me, why, sizeof(why)) !=
		    RAMKEY_ERR_INVALID)
			print_error("path \"%s\" not refused\n", bad[i]);
		assert_int_equal(write_as(bad[i], &me, why, sizeof(why)),
		    RAMKEY_ERR_INVALID);
		assert_true(strlen(why) > 0);
	}
	assert_int_equal(count_entries(d), 0);
	free(dot);
	free(dotdot);
	free(enddot);
	free(enddotdot);
	free(slash);
	free(d);
}

static void test_write_dir_writable_by_group_or_others_unsafe(void **state)
{
	static const mode_t modes[] = {0770, 0707, 0777, 0720, 0702, 01777};
	char *d = new_dir(), *f = path_join(d, "credentials.json");
	char why[512];
	size_t i;

	for (i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
		assert_int_equal(chmod(d, modes[i]), 0);
		why[0] = '\0';
		assert_int_equal(
		    write_as(f, &me, why, sizeof(why)), RAMKEY_ERR_UNSAFE_PATH);
		assert_non_null(strstr(why, "writable"));
		assert_int_equal(count_entries(d), 0);
	}
	/* Readable by others is fine; the file itself is 0600. */
	assert_int_equal(chmod(d, 0755), 0);
	write_ok(f, &me);
	assert_written(f, me.uid);
	free(f);
	free(d);
}

static void test_write_not_a_directory_component_unsafe(void **state)
{
	char *d = new_dir(), *file = path_join(d, "file");
	char *f = path_join(file, "credentials.json");
	char why[512] = "";

	put_file(file, "x", 0600);
	assert_int_not_equal(write_as(f, &me, why, sizeof(why)), 0);
	assert_true(strlen(why) > 0);
	assert_string_equal(read_all(file), "x");
	free(f);
	free(file);
	free(d);
}

static void test_write_why_may_be_null(void **state)
{
	char *d = new_dir(), *f = path_join(d, "credentials.json");

	assert_int_equal(ramkey_secret_file_write(
			     "relative", &me, data, strlen(data), NULL, 0),
	    RAMKEY_ERR_INVALID);
	assert_int_equal(
	    ramkey_secret_file_write(f, &me, data, strlen(data), NULL, 0), 0);
	assert_written(f, me.uid);
	free(f);
	free(d);
}

static void test_write_empty_data(void **state)
{
	char *d = new_dir(), *f = path_join(d, "credentials.json");
	struct stat st;

	assert_int_equal(ramkey_secret_file_write(f, &me, "", 0, NULL, 0), 0);
	assert_int_equal(stat(f, &st), 0);
	assert_int_equal(st.st_size, 0);
	assert_int_equal(st.st_mode & 07777, 0600);
	free(f);
	free(d);
}

/* ---- as root, for another user ---- */

static void test_write_for_other_uid_owned_by_that_uid(void **state)
{
	struct ramkey_owner o = other_owner();
	char *d, *f, *sub, *f2;
	struct stat st;

	skip_unless_root();
	d = new_dir_for(OTHER_UID, OTHER_GID);
	f = path_join(d, "credentials.json");
	write_ok(f, &o);
	assert_written(f, OTHER_UID);
	assert_int_equal(stat(f, &st), 0);
	assert_int_equal(st.st_gid, OTHER_GID);
	/* The last directory is created as the user too. */
	sub = path_join(d, "ramkey");
	f2 = path_join(sub, "credentials.json");
	write_ok(f2, &o);
	assert_int_equal(stat(sub, &st), 0);
	assert_int_equal(st.st_uid, OTHER_UID);
	assert_int_equal(st.st_mode & 07777, 0700);
	assert_written(f2, OTHER_UID);
	/* The file-system identity is back to root's. */
	assert_int_equal(setfsuid((uid_t)-1), 0);
	assert_int_equal(setfsgid((gid_t)-1), 0);
	free(f2);
	free(sub);
	free(f);
	free(d);
}

static void test_write_for_other_uid_replaces_hard_link(void **state)
{
	struct ramkey_owner o = other_owner();
	char *d, *f, *rootfile;
	struct stat before, after;

	skip_unless_root();
	rootfile = path_join(base, "root-secret");
	put_file(rootfile, "root only", 0600);
	assert_int_equal(stat(rootfile, &before), 0);
	d = new_dir_for(OTHER_UID, OTHER_GID);
	f = path_join(d, "credentials.json");
	assert_int_equal(link(rootfile, f), 0);
	write_ok(f, &o);
	assert_written(f, OTHER_UID);
	assert_int_equal(stat(rootfile, &after), 0);
	assert_int_equal(after.st_ino, before.st_ino);
	assert_int_equal(after.st_uid, 0);
	assert_int_equal(after.st_mode, before.st_mode);
	assert_int_equal(after.st_nlink, 1);
	assert_string_equal(read_all(rootfile), "root only");
	unlink(rootfile);
	free(rootfile);
	free(f);
	free(d);
}

static void test_write_for_other_uid_in_foreign_dir_unsafe(void **state)
{
	struct ramkey_owner o = other_owner();
	char *d, *f;
	char why[512] = "";

	skip_unless_root();
	d = new_dir_for(THIRD_UID, THIRD_UID);
	assert_int_equal(chmod(d, 0755), 0);
	f = path_join(d, "credentials.json");
	assert_int_equal(
	    write_as(f, &o, why, sizeof(why)), RAMKEY_ERR_UNSAFE_PATH);
	assert_non_null(strstr(why, "4243"));
	assert_int_equal(count_entries(d), 0);
	free(f);
	free(d);
}

static void test_write_for_other_uid_in_root_dir_fails_cleanly(void **state)
{
	struct ramkey_owner o = other_owner();
	char *d, *f;
	char why[512] = "";

	/* A root-owned 0755 directory is a valid place (a user cannot be
	 * given one, but root's layout is trusted); the user just cannot
	 * create the file there. */
	skip_unless_root();
	d = new_dir();
	assert_int_equal(chmod(d, 0755), 0);
	f = path_join(d, "credentials.json");
	assert_int_equal(write_as(f, &o, why, sizeof(why)), RAMKEY_ERR_IO);
	assert_int_equal(count_entries(d), 0);
	free(f);
	free(d);
}

static void test_write_symlink_owned_by_user_not_followed(void **state)
{
	struct ramkey_owner o = other_owner();
	char *d, *real, *link, *f;

	/* Even a root caller does not follow the user's link. */
	skip_unless_root();
	d = new_dir_for(OTHER_UID, OTHER_GID);
	real = path_join(d, "real");
	assert_int_equal(mkdir(real, 0700), 0);
	assert_int_equal(chown(real, OTHER_UID, OTHER_GID), 0);
	link = path_join(d, "link");
	assert_int_equal(symlink("real", link), 0);
	assert_int_equal(lchown(link, OTHER_UID, OTHER_GID), 0);
	f = path_join(link, "credentials.json");
	assert_int_equal(write_as(f, &o, NULL, 0), RAMKEY_ERR_UNSAFE_PATH);
	/* A root-owned link inside the user's directory is no better. */
	assert_int_equal(lchown(link, 0, 0), 0);
	assert_int_equal(write_as(f, &o, NULL, 0), RAMKEY_ERR_UNSAFE_PATH);
	assert_int_equal(count_entries(real), 0);
	free(f);
	free(link);
	free(real);
	free(d);
}

/* Is every directory from / down to path owned by root and not writable
 * by group or others? */
static bool root_controlled_chain(const char *path)
{
	char *copy = strdup(path);
	struct stat st;
	bool ok = true;

	assert_non_null(copy);
	for (;;) {
		if (stat(copy[0] != '\0' ? copy : "/", &st) != 0 ||
		    st.st_uid != 0 || (st.st_mode & (S_IWGRP | S_IWOTH)) != 0) {
			ok = false;
			break;
		}
		if (copy[0] == '\0' || strrchr(copy, '/') == NULL)
			break;
		*strrchr(copy, '/') = '\0';
	}
	free(copy);
	return ok;
}

/* A scratch directory whose whole chain only root controls. */
static char *root_scratch(void)
{
	const char *env = getenv("RAMKEY_TEST_ROOT_DIR");
	const char *cands[] = {env, "/run", "/var/lib", "/root"};
	size_t i;

	for (i = 0; i < sizeof(cands) / sizeof(cands[0]); i++) {
		char *t = NULL;

		if (cands[i] == NULL || !root_controlled_chain(cands[i]))
			continue;
		assert_true(asprintf(&t, "%s/ramkey-sf-XXXXXX", cands[i]) > 0);
		if (mkdtemp(t) != NULL && chmod(t, 0755) == 0)
			return t;
		free(t);
	}
	return NULL;
}

static void test_write_follows_root_symlink_in_root_dir(void **state)
{
	struct ramkey_owner o = other_owner();
	char *top, *rootdir, *home, *link, *f, *real;

	skip_unless_root();
	if ((top = root_scratch()) == NULL) {
		print_message("no root-controlled scratch directory\n");
		skip();
	}
	/* top/rootdir (root, 0755) holds "link" -> ../home (root-owned, like
	 * /home -> /srv/home); home/4242 belongs to the user. */
	rootdir = path_join(top, "rootdir");
	home = path_join(top, "home");
	assert_int_equal(mkdir(rootdir, 0755), 0);
	assert_int_equal(mkdir(home, 0755), 0);
	real = path_join(home, "u4242");
	assert_int_equal(mkdir(real, 0700), 0);
	assert_int_equal(chown(real, OTHER_UID, OTHER_GID), 0);
	link = path_join(rootdir, "link");
	assert_int_equal(symlink("../home", link), 0);
	f = path_join(rootdir, "link/u4242/credentials.json");
	write_ok(f, &o);
	free(f);
	f = path_join(real, "credentials.json");
	assert_written(f, OTHER_UID);
	free(f);
	/* An absolute target works the same way. */
	assert_int_equal(unlink(link), 0);
	assert_int_equal(symlink(home, link), 0);
	f = path_join(rootdir, "link/u4242/other.json");
	write_ok(f, &o);
	free(f);
	f = path_join(real, "other.json");
	assert_written(f, OTHER_UID);
	free(f);
	/* A link there that is not root's is refused. */
	assert_int_equal(lchown(link, OTHER_UID, OTHER_GID), 0);
	f = path_join(rootdir, "link/u4242/third.json");
	assert_int_equal(write_as(f, &o, NULL, 0), RAMKEY_ERR_UNSAFE_PATH);
	free(f);
	rm_rf(top);
	free(link);
	free(real);
	free(home);
	free(rootdir);
	free(top);
}

static void test_write_symlink_below_world_writable_dir_not_followed(
    void **state)
{
	struct ramkey_owner o = other_owner();
	char *rootdir, *real, *link, *f;

	/* base is below /tmp (1777): a directory users can write, sticky
	 * or not. The writer treats everything below it as user-controlled
	 * and follows no link there, even a root-owned one in a root-owned
	 * directory. */
	skip_unless_root();
	rootdir = path_join(base, "rootdir");
	assert_int_equal(mkdir(rootdir, 0755), 0);
	real = new_dir_for(OTHER_UID, OTHER_GID);
	link = path_join(rootdir, "link");
	assert_int_equal(symlink(real, link), 0);
	f = path_join(link, "credentials.json");
	assert_int_equal(write_as(f, &o, NULL, 0), RAMKEY_ERR_UNSAFE_PATH);
	assert_int_equal(count_entries(real), 0);
	free(f);
	free(link);
	free(real);
	rm_rf(rootdir);
	free(rootdir);
}

static void test_write_for_other_uid_denied_without_root(void **state)
{
	char *d = new_dir(), *f = path_join(d, "credentials.json");
	pid_t pid;
	int status;

	if (geteuid() != 0) {
		struct ramkey_owner o = {NULL, geteuid() + 1, getegid()};

		assert_int_equal(write_as(f, &o, NULL, 0), RAMKEY_ERR_DENIED);
		assert_int_equal(count_entries(d), 0);
		free(f);
		free(d);
		return;
	}
	/* As root: the same from a child that gave up root. */
	assert_int_equal(chown(d, OTHER_UID, OTHER_GID), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct ramkey_owner third = {NULL, THIRD_UID, THIRD_UID};
		struct ramkey_owner self = {NULL, OTHER_UID, OTHER_GID};

		if (setgroups(0, NULL) != 0 ||
		    setresgid(OTHER_GID, OTHER_GID, OTHER_GID) != 0 ||
		    setresuid(OTHER_UID, OTHER_UID, OTHER_UID) != 0)
			_exit(10);
		if (write_as(f, &third, NULL, 0) != RAMKEY_ERR_DENIED)
			_exit(11);
		if (count_entries(d) != 0)
			_exit(12);
		if (write_as(f, &self, NULL, 0) != 0)
			_exit(13);
		_exit(0);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	assert_written(f, OTHER_UID);
	free(f);
	free(d);
}

/* ---- removing ---- */

static int remove_as(
    const char *path, const struct ramkey_owner *o, bool *removed)
{
	char why[512] = "";

	return ramkey_secret_file_remove(path, o, removed, why, sizeof(why));
}

static void test_remove_regular_file_of_user(void **state)
{
	char *d = new_dir(), *f = path_join(d, "credentials.json");
	bool removed = false;
	struct stat st;

	write_ok(f, &me);
	assert_int_equal(remove_as(f, &me, &removed), 0);
	assert_true(removed);
	assert_int_equal(lstat(f, &st), -1);
	assert_int_equal(count_entries(d), 0);
	free(f);
	free(d);
}

static void test_remove_leaves_symlink_and_target(void **state)
{
	char *d = new_dir(), *f = path_join(d, "credentials.json");
	char *target = path_join(d, "target");
	bool removed = true;
	struct stat st;

	put_file(target, "keep me", 0600);
	assert_int_equal(symlink(target, f), 0);
	assert_int_equal(remove_as(f, &me, &removed), 0);
	assert_false(removed);
	assert_int_equal(lstat(f, &st), 0);
	assert_true(S_ISLNK(st.st_mode));
	assert_string_equal(read_all(target), "keep me");
	free(target);
	free(f);
	free(d);
}

static void test_remove_leaves_fifo(void **state)
{
	char *d = new_dir(), *f = path_join(d, "credentials.json");
	bool removed = true;
	struct stat st;

	assert_int_equal(mkfifo(f, 0600), 0);
	signal(SIGALRM, on_alarm);
	alarm(10);
	assert_int_equal(remove_as(f, &me, &removed), 0);
	alarm(0);
	signal(SIGALRM, SIG_DFL);
	assert_false(removed);
	assert_int_equal(lstat(f, &st), 0);
	assert_true(S_ISFIFO(st.st_mode));
	free(f);
	free(d);
}

static void test_remove_leaves_directory(void **state)
{
	char *d = new_dir(), *f = path_join(d, "credentials.json");
	bool removed = true;
	struct stat st;

	assert_int_equal(mkdir(f, 0700), 0);
	assert_int_equal(remove_as(f, &me, &removed), 0);
	assert_false(removed);
	assert_int_equal(lstat(f, &st), 0);
	assert_true(S_ISDIR(st.st_mode));
	free(f);
	free(d);
}

static void test_remove_missing_file_or_dir_is_fine(void **state)
{
	char *d = new_dir(), *f = path_join(d, "credentials.json");
	char *g = path_join(d, "gone/credentials.json");
	bool removed = true;

	assert_int_equal(remove_as(f, &me, &removed), 0);
	assert_false(removed);
	removed = true;
	assert_int_equal(remove_as(g, &me, &removed), 0);
	assert_false(removed);
	free(g);
	free(f);
	free(d);
}

static void test_remove_invalid_path_refused(void **state)
{
	bool removed = true;

	assert_int_equal(remove_as("relative/credentials.json", &me, &removed),
	    RAMKEY_ERR_INVALID);
	assert_false(removed);
}

static void test_remove_through_user_symlink_refused(void **state)
{
	char *d = new_dir(), *real = path_join(d, "real");
	char *link = path_join(d, "link"), *f = path_join(link, "c.json");
	char *inreal = path_join(real, "c.json");
	bool removed = true;
	struct stat st;

	assert_int_equal(mkdir(real, 0700), 0);
	put_file(inreal, "x", 0600);
	assert_int_equal(symlink("real", link), 0);
	assert_int_not_equal(remove_as(f, &me, &removed), 0);
	assert_false(removed);
	assert_int_equal(stat(inreal, &st), 0);
	free(inreal);
	free(f);
	free(link);
	free(real);
	free(d);
}

static void test_remove_leaves_file_of_another_uid(void **state)
{
	struct ramkey_owner o = other_owner();
	char *d, *f;
	bool removed = true;
	struct stat st;

	skip_unless_root();
	d = new_dir_for(OTHER_UID, OTHER_GID);
	f = path_join(d, "credentials.json");
	put_file(f, "not yours", 0600);
	assert_int_equal(chown(f, THIRD_UID, THIRD_UID), 0);
	assert_int_equal(remove_as(f, &o, &removed), 0);
	assert_false(removed);
	assert_int_equal(lstat(f, &st), 0);
	/* And a root-owned file too. */
	assert_int_equal(chown(f, 0, 0), 0);
	assert_int_equal(remove_as(f, &o, &removed), 0);
	assert_false(removed);
	assert_int_equal(lstat(f, &st), 0);
	/* The user's own file goes, unlinked as the user. */
	assert_int_equal(chown(f, OTHER_UID, OTHER_GID), 0);
	assert_int_equal(remove_as(f, &o, &removed), 0);
	assert_true(removed);
	assert_int_equal(lstat(f, &st), -1);
	assert_int_equal(setfsuid((uid_t)-1), 0);
	free(f);
	free(d);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_write_creates_file_mode_0600),
	    cmocka_unit_test(test_write_replaces_by_rename),
	    cmocka_unit_test(test_write_leaves_no_temp_file_on_success),
	    cmocka_unit_test(test_write_leaves_no_temp_file_on_failure),
	    cmocka_unit_test(test_write_creates_last_directory_0700),
	    cmocka_unit_test(test_write_creates_only_the_last_directory),
	    cmocka_unit_test(
		test_write_replaces_symlink_without_touching_target),
	    cmocka_unit_test(test_write_replaces_fifo_without_blocking),
	    cmocka_unit_test(test_write_path_with_repeated_slashes),
	    cmocka_unit_test(test_write_directory_at_final_name_is_is_dir),
	    cmocka_unit_test(
		test_write_symlink_component_in_user_dir_is_unsafe),
	    cmocka_unit_test(test_write_invalid_paths_refused),
	    cmocka_unit_test(test_write_dir_writable_by_group_or_others_unsafe),
	    cmocka_unit_test(test_write_not_a_directory_component_unsafe),
	    cmocka_unit_test(test_write_why_may_be_null),
	    cmocka_unit_test(test_write_empty_data),
	    cmocka_unit_test(test_write_for_other_uid_owned_by_that_uid),
	    cmocka_unit_test(test_write_for_other_uid_replaces_hard_link),
	    cmocka_unit_test(test_write_for_other_uid_in_foreign_dir_unsafe),
	    cmocka_unit_test(
		test_write_for_other_uid_in_root_dir_fails_cleanly),
	    cmocka_unit_test(test_write_symlink_owned_by_user_not_followed),
	    cmocka_unit_test(test_write_follows_root_symlink_in_root_dir),
	    cmocka_unit_test(
		test_write_symlink_below_world_writable_dir_not_followed),
	    cmocka_unit_test(test_write_for_other_uid_denied_without_root),
	    cmocka_unit_test(test_remove_regular_file_of_user),
	    cmocka_unit_test(test_remove_leaves_symlink_and_target),
	    cmocka_unit_test(test_remove_leaves_fifo),
	    cmocka_unit_test(test_remove_leaves_directory),
	    cmocka_unit_test(test_remove_missing_file_or_dir_is_fine),
	    cmocka_unit_test(test_remove_invalid_path_refused),
	    cmocka_unit_test(test_remove_through_user_symlink_refused),
	    cmocka_unit_test(test_remove_leaves_file_of_another_uid),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
