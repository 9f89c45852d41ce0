#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "fsid.h"
#include "ramkey_err.h"
#include "secret_file.h"

#define SYMLINK_BUDGET 40

struct walk {
	int dfd;	 /* directory reached so far (O_PATH) */
	bool trusted;	 /* only root controls everything up to dfd */
	int links_left;	 /* symlinks we may still follow */
	char *why;
	size_t whylen;
};

static void say(struct walk *w, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void say(struct walk *w, const char *fmt, ...)
{
	va_list ap;

	if (w->why == NULL || w->whylen == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(w->why, w->whylen, fmt, ap);
	va_end(ap);
}

/* A directory only root can change: owned by root, not group/other
 * writable (sticky or not: a world-writable directory is user-controlled). */
static bool root_controlled(const struct stat *st)
{
	return st->st_uid == 0 && (st->st_mode & (S_IWGRP | S_IWOTH)) == 0;
}

static int walk_path(struct walk *w, const char *path, bool in_link,
    const char *shown);

/* Move w->dfd into a newly opened directory fd, updating trust. */
static int enter(struct walk *w, int fd, const char *shown)
{
	struct stat st;

	if (fstat(fd, &st) != 0) {
		say(w, "%s: %s", shown, strerror(errno));
		close(fd);
		return RAMKEY_ERR_IO;
	}
	if (!S_ISDIR(st.st_mode)) {
		say(w, "%s: not a directory", shown);
		close(fd);
		return RAMKEY_ERR_UNSAFE_PATH;
	}
	/* Trust never comes back once lost: a user who controls a directory
	 * controls everything below it. */
	w->trusted = w->trusted && root_controlled(&st);
	close(w->dfd);
	w->dfd = fd;
	return 0;
}

static int follow_link(struct walk *w, const char *comp, const char *shown)
{
	char target[PATH_MAX];
	ssize_t n;
	int fd;

	if (w->links_left-- <= 0) {
		say(w, "%s: too many levels of symbolic links", shown);
		return RAMKEY_ERR_UNSAFE_PATH;
	}
	n = readlinkat(w->dfd, comp, target, sizeof(target) - 1);
	if (n < 0) {
		say(w, "%s: %s", shown, strerror(errno));
		return RAMKEY_ERR_IO;
	}
	target[n] = '\0';
	if (target[0] == '/') {
		if ((fd = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC)) < 0) {
			say(w, "/: %s", strerror(errno));
			return RAMKEY_ERR_IO;
		}
		close(w->dfd);
		w->dfd = fd;
		w->trusted = true;
	}
	return walk_path(w, target, true, shown);
}

static int step(struct walk *w, const char *comp, bool in_link,
    const char *shown, bool create)
{
	struct stat lst;
	int fd;

	if (strcmp(comp, "..") == 0) {
		/* Only a root-owned link target may climb, and only while
		 * everything so far is root's. */
		if (!in_link || !w->trusted) {
			say(w, "%s: \"..\" is not allowed in the path", shown);
			return RAMKEY_ERR_INVALID;
		}
		if ((fd = openat(w->dfd, "..", O_PATH | O_DIRECTORY |
		    O_CLOEXEC)) < 0) {
			say(w, "%s: %s", shown, strerror(errno));
			return RAMKEY_ERR_IO;
		}
		return enter(w, fd, shown);
	}
	if (strcmp(comp, ".") == 0) {
		if (!in_link) {
			say(w, "%s: \".\" is not allowed in the path", shown);
			return RAMKEY_ERR_INVALID;
		}
		return 0;
	}
	if (create && mkdirat(w->dfd, comp, 0700) != 0 && errno != EEXIST) {
		say(w, "cannot create directory %s: %s", shown,
		    strerror(errno));
		return RAMKEY_ERR_IO;
	}
	fd = openat(w->dfd, comp, O_PATH | O_DIRECTORY | O_NOFOLLOW |
	    O_CLOEXEC);
	if (fd >= 0)
		return enter(w, fd, shown);
	if (errno != ENOTDIR && errno != ELOOP) {
		int e = errno;

		say(w, "%s: %s", shown, strerror(e));
		errno = e;
		return RAMKEY_ERR_IO;
	}
	if (fstatat(w->dfd, comp, &lst, AT_SYMLINK_NOFOLLOW) != 0) {
		say(w, "%s: %s", shown, strerror(errno));
		return RAMKEY_ERR_IO;
	}
	if (!S_ISLNK(lst.st_mode)) {
		say(w, "%s: not a directory", shown);
		return RAMKEY_ERR_UNSAFE_PATH;
	}
	if (!w->trusted || lst.st_uid != 0) {
		say(w, "%s: refusing to follow a symbolic link in a "
		       "directory the user controls", shown);
		return RAMKEY_ERR_UNSAFE_PATH;
	}
	return follow_link(w, comp, shown);
}

/*
 * Walk every component of path (all are directories). The user's own path
 * (in_link false) must be absolute and free of "." and "..".
 */
static int walk_path(struct walk *w, const char *path, bool in_link,
    const char *shown)
{
	char *copy, *p, *comp, *save = NULL;
	int r = 0;

	if ((copy = strdup(path)) == NULL)
		return RAMKEY_ERR_NOMEM;
	p = copy;
	while ((comp = strtok_r(p, "/", &save)) != NULL) {
		p = NULL;
		if ((r = step(w, comp, in_link, in_link ? shown : path,
		    false)) != 0)
			break;
	}
	free(copy);
	return r;
}

/*
 * Open the directory that holds path's last component. *namep points into
 * *bufp (free it). create: make the last directory (0700) if missing.
 */
static int open_parent(struct walk *w, const char *path, bool create,
    char **bufp, const char **namep)
{
	char *buf, *slash, *dir;
	const char *name;
	int fd, r;

	*bufp = NULL;
	*namep = NULL;
	if (path == NULL || path[0] != '/' || strlen(path) >= PATH_MAX) {
		say(w, "%s: not an absolute path", path ? path : "(null)");
		return RAMKEY_ERR_INVALID;
	}
	if ((buf = strdup(path)) == NULL)
		return RAMKEY_ERR_NOMEM;
	slash = strrchr(buf, '/');
	name = slash + 1;
	*slash = '\0';
	dir = buf;
	/* "a//b" is "a/b": the last directory is the last non-empty
	 * component. */
	while (slash > buf && slash[-1] == '/')
		*--slash = '\0';
	if (*name == '\0' || strcmp(name, ".") == 0 ||
	    strcmp(name, "..") == 0) {
		say(w, "%s: does not name a file", path);
		free(buf);
		return RAMKEY_ERR_INVALID;
	}
	if ((fd = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC)) < 0) {
		say(w, "/: %s", strerror(errno));
		free(buf);
		return RAMKEY_ERR_IO;
	}
	w->dfd = fd;
	w->trusted = true;
	w->links_left = SYMLINK_BUDGET;
	if (create && *dir != '\0') {
		/* Walk to the parent of the last directory, then create
		 * and enter the last directory itself. */
		char *last = strrchr(dir, '/');

		*last = '\0';
		if ((r = walk_path(w, dir, false, path)) == 0)
			r = step(w, last + 1, false, path, true);
		*last = '/';
	} else {
		r = walk_path(w, dir, false, path);
	}
	if (r != 0) {
		free(buf);
		return r;
	}
	*bufp = buf;
	*namep = name;
	return 0;
}

static int write_all(int fd, const uint8_t *p, size_t len)
{
	while (len > 0) {
		ssize_t n = write(fd, p, len);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return RAMKEY_ERR_IO;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static void tmp_name(char *out, size_t outlen, const char *name)
{
	static const char chars[] =
	    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
	uint8_t bytes[12];
	char rnd[sizeof(bytes) + 1];
	size_t i;

	/* Twelve characters from one call. The slight bias toward two of
	 * them does not matter: the name must only not collide by chance,
	 * and O_EXCL catches a collision. */
	randombytes_buf(bytes, sizeof(bytes));
	for (i = 0; i < sizeof(bytes); i++)
		rnd[i] = chars[(bytes[i] & 63) % (sizeof(chars) - 1)];
	rnd[sizeof(bytes)] = '\0';
	sodium_memzero(bytes, sizeof(bytes));
	snprintf(out, outlen, ".%s.%s.tmp", name, rnd);
}

static int check_target_dir(struct walk *w, uid_t uid, const char *path)
{
	struct stat st;

	if (fstat(w->dfd, &st) != 0) {
		say(w, "%s: %s", path, strerror(errno));
		return RAMKEY_ERR_IO;
	}
	if (st.st_uid != uid && st.st_uid != 0) {
		say(w, "%s: the directory belongs to uid %lu, not to the "
		       "user", path, (unsigned long)st.st_uid);
		return RAMKEY_ERR_UNSAFE_PATH;
	}
	if ((st.st_mode & (S_IWGRP | S_IWOTH)) != 0) {
		say(w, "%s: the directory is writable by group or others",
		    path);
		return RAMKEY_ERR_UNSAFE_PATH;
	}
	return 0;
}

static int write_as_user(struct walk *w, const char *path, uid_t uid,
    const void *data, size_t len)
{
	char *buf = NULL, tmp[NAME_MAX + 1];
	const char *name;
	struct stat st;
	int fd = -1, r, tries;
	bool created = false;

	if ((r = open_parent(w, path, true, &buf, &name)) != 0)
		goto out;
	if ((r = check_target_dir(w, uid, path)) != 0)
		goto out;
	if (strlen(name) > NAME_MAX - 20) {
		say(w, "%s: file name too long", path);
		r = RAMKEY_ERR_INVALID;
		goto out;
	}
	if (fstatat(w->dfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
	    S_ISDIR(st.st_mode)) {
		say(w, "%s: is a directory", path);
		r = RAMKEY_ERR_IS_DIR;
		goto out;
	}
	for (tries = 0; tries < 16; tries++) {
		tmp_name(tmp, sizeof(tmp), name);
		fd = openat(w->dfd, tmp, O_WRONLY | O_CREAT | O_EXCL |
		    O_NOFOLLOW | O_CLOEXEC | O_NOCTTY, 0600);
		if (fd >= 0 || errno != EEXIST)
			break;
	}
	if (fd < 0) {
		say(w, "%s: cannot create a file in this directory: %s", path,
		    strerror(errno));
		r = RAMKEY_ERR_IO;
		goto out;
	}
	created = true;
	if (fstat(fd, &st) != 0) {
		say(w, "%s: %s", path, strerror(errno));
		r = RAMKEY_ERR_IO;
		goto out;
	}
	/* The umask may have taken bits away (never added any): make it
	 * exactly 0600 when it is not. */
	if ((st.st_mode & 07777) != 0600 && fchmod(fd, 0600) != 0) {
		say(w, "%s: %s", path, strerror(errno));
		r = RAMKEY_ERR_IO;
		goto out;
	}
	if (st.st_uid != uid) {
		say(w, "%s: new file is owned by uid %lu, not the user", path,
		    (unsigned long)st.st_uid);
		r = RAMKEY_ERR_UNSAFE_PATH;
		goto out;
	}
	/* Written and synced before the rename, so the final name never
	 * holds a partly written or empty file, even after a crash. */
	if (write_all(fd, data, len) != 0 || fsync(fd) != 0) {
		say(w, "%s: write failed: %s", path, strerror(errno));
		r = RAMKEY_ERR_IO;
		goto out;
	}
	if (close(fd) != 0) {
		fd = -1;
		say(w, "%s: write failed: %s", path, strerror(errno));
		r = RAMKEY_ERR_IO;
		goto out;
	}
	fd = -1;
	if (renameat(w->dfd, tmp, w->dfd, name) != 0) {
		say(w, "%s: cannot replace the file: %s", path,
		    strerror(errno));
		r = errno == EISDIR ? RAMKEY_ERR_IS_DIR : RAMKEY_ERR_IO;
		goto out;
	}
	created = false;
	/* The directory is not synced: after a crash the name may still
	 * show the previous file (whose key is revoked) or none, never a
	 * torn one; a login should not wait for a journal commit. */
	r = 0;
out:
	if (fd >= 0)
		close(fd);
	if (created)
		(void)unlinkat(w->dfd, tmp, 0);
	free(buf);
	return r;
}

static int remove_as_user(struct walk *w, const char *path, uid_t uid,
    bool *removed)
{
	char *buf = NULL;
	const char *name;
	struct stat st;
	int r;

	if ((r = open_parent(w, path, false, &buf, &name)) != 0) {
		/* A directory that is gone took the file with it. */
		if (r == RAMKEY_ERR_IO && errno == ENOENT)
			r = 0;
		goto out;
	}
	if (fstatat(w->dfd, name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
		if (errno != ENOENT) {
			say(w, "%s: %s", path, strerror(errno));
			r = RAMKEY_ERR_IO;
		}
		goto out;
	}
	if (!S_ISREG(st.st_mode) || st.st_uid != uid) {
		say(w, "%s: not a regular file owned by the user; left alone",
		    path);
		goto out;
	}
	if (unlinkat(w->dfd, name, 0) != 0) {
		if (errno != ENOENT) {
			say(w, "%s: cannot remove: %s", path, strerror(errno));
			r = RAMKEY_ERR_IO;
		}
		goto out;
	}
	*removed = true;
out:
	free(buf);
	return r;
}

/* What to do once we act as the owner. */
struct job {
	const char *path;
	const void *data; /* write */
	size_t len;
	bool *removed;	  /* remove */
};

/*
 * Run the job with u's file-system identity, then restore ours (errno
 * from the job is kept). A failed restore is reported as
 * RAMKEY_ERR_SYSTEM whatever the job did: the caller must not go on.
 */
static int as_user(const struct job *j, const struct ramkey_fsid_user *u,
    char *why, size_t whylen)
{
	struct walk w = { .dfd = -1, .why = why, .whylen = whylen };
	struct ramkey_fsid fsid;
	int r, e;

	if (why != NULL && whylen > 0)
		why[0] = '\0';
	if ((r = ramkey_fsid_drop_user(u, &fsid)) != 0) {
		say(&w, "cannot act as uid %lu", (unsigned long)u->uid);
		return r;
	}
	r = j->removed != NULL ? remove_as_user(&w, j->path, u->uid,
	    j->removed) : write_as_user(&w, j->path, u->uid, j->data, j->len);
	e = errno;
	if (w.dfd >= 0)
		close(w.dfd);
	if (ramkey_fsid_restore(&fsid) != 0) {
		say(&w, "cannot restore the file-system identity");
		return RAMKEY_ERR_SYSTEM;
	}
	errno = e;
	return r;
}

/* The same with the owner's identity looked up first. */
static int as_owner(const struct job *j, const struct ramkey_owner *owner,
    char *why, size_t whylen)
{
	struct ramkey_fsid_user u;
	int r;

	if (why != NULL && whylen > 0)
		why[0] = '\0';
	if ((r = ramkey_fsid_user_lookup(owner, &u)) != 0) {
		if (why != NULL && whylen > 0)
			snprintf(why, whylen, "cannot look up the groups of "
			    "uid %lu", (unsigned long)owner->uid);
		return r;
	}
	r = as_user(j, &u, why, whylen);
	ramkey_fsid_user_clear(&u);
	return r;
}

int ramkey_secret_file_write(const char *path, const struct ramkey_owner *owner,
    const void *data, size_t len, char *why, size_t whylen)
{
	struct job j = { path, data, len, NULL };

	return as_owner(&j, owner, why, whylen);
}

int ramkey_secret_file_write_user(const char *path,
    const struct ramkey_fsid_user *u, const void *data, size_t len,
    char *why, size_t whylen)
{
	struct job j = { path, data, len, NULL };

	return as_user(&j, u, why, whylen);
}

int ramkey_secret_file_remove(const char *path,
    const struct ramkey_owner *owner, bool *removed, char *why,
    size_t whylen)
{
	struct job j = { path, NULL, 0, removed };

	*removed = false;
	return as_owner(&j, owner, why, whylen);
}
