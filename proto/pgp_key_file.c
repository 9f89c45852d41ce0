#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "message.h"
#include "pgp_key_file.h"
#include "ramkey_err.h"

static void say(char *why, size_t whylen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void say(char *why, size_t whylen, const char *fmt, ...)
{
	va_list ap;

	if (why == NULL || whylen == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(why, whylen, fmt, ap);
	va_end(ap);
}

/* Read the key with whatever identity we have now. */
static int read_key(const char *path, char **keyp, char *why, size_t whylen)
{
	struct stat st;
	char *buf = NULL;
	size_t have = 0, size;
	ssize_t n;
	int fd = -1, r, e;

	fd = open(path, O_RDONLY | O_NONBLOCK | O_NOFOLLOW | O_CLOEXEC |
	    O_NOCTTY);
	if (fd < 0) {
		e = errno;
		if (e == ELOOP) {
			say(why, whylen, "PGP key file %s is a symbolic link; "
			    "give the file itself", path);
			r = RAMKEY_ERR_UNSAFE_PATH;
		} else {
			say(why, whylen, "cannot open the PGP key file %s: %s",
			    path, strerror(e));
			r = RAMKEY_ERR_IO;
		}
		errno = e;
		goto out;
	}
	if (fstat(fd, &st) != 0) {
		e = errno;
		say(why, whylen, "PGP key file %s: %s", path, strerror(e));
		errno = e;
		r = RAMKEY_ERR_IO;
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		say(why, whylen, "PGP key file %s is not a regular file", path);
		r = RAMKEY_ERR_INVALID;
		goto out;
	}
	if (st.st_size > RAMKEY_PGP_KEY_MAX) {
		say(why, whylen, "PGP key file %s is larger than %d bytes",
		    path, RAMKEY_PGP_KEY_MAX);
		r = RAMKEY_ERR_TOO_LARGE;
		goto out;
	}
	size = (size_t)st.st_size;
	if ((buf = malloc(size + 1)) == NULL) {
		r = RAMKEY_ERR_NOMEM;
		say(why, whylen, "out of memory");
		goto out;
	}
	/* Up to the size fstat() saw: a file growing meanwhile cannot make
	 * us read more than the limit. */
	while (have < size) {
		n = read(fd, buf + have, size - have);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			e = errno;
			say(why, whylen, "cannot read the PGP key file %s: %s",
			    path, strerror(e));
			errno = e;
			r = RAMKEY_ERR_IO;
			goto out;
		}
		if (n == 0)
			break;
		have += (size_t)n;
	}
	buf[have] = '\0';
	if (memchr(buf, '\0', have) != NULL) {
		say(why, whylen, "PGP key file %s holds a NUL byte; give "
		    "base64 of a binary key or an armored key", path);
		r = RAMKEY_ERR_INVALID;
		goto out;
	}
	while (have > 0 && (buf[have - 1] == '\n' || buf[have - 1] == '\r'))
		buf[--have] = '\0';
	if (have == 0) {
		say(why, whylen, "PGP key file %s holds no key", path);
		r = RAMKEY_ERR_INVALID;
		goto out;
	}
	*keyp = buf;
	buf = NULL;
	r = 0;
out:
	free(buf);
	if (fd >= 0)
		close(fd);
	return r;
}

int ramkey_pgp_key_file_read(const char *path,
    const struct ramkey_fsid_user *as, char **keyp, char *why,
    size_t whylen)
{
	struct ramkey_fsid fsid;
	int r, e;

	*keyp = NULL;
	if (why != NULL && whylen > 0)
		why[0] = '\0';
	if (path == NULL || path[0] == '\0') {
		say(why, whylen, "no PGP key file named");
		return RAMKEY_ERR_INVALID;
	}
	if (as == NULL)
		return read_key(path, keyp, why, whylen);
	if ((r = ramkey_fsid_drop_user(as, &fsid)) != 0) {
		say(why, whylen, "cannot act as uid %lu to read the PGP key "
		    "file %s", (unsigned long)as->uid, path);
		return r;
	}
	r = read_key(path, keyp, why, whylen);
	e = errno;
	if (ramkey_fsid_restore(&fsid) != 0) {
		free(*keyp);
		*keyp = NULL;
		say(why, whylen, "cannot restore the file-system identity "
		    "after reading %s", path);
		return RAMKEY_ERR_SYSTEM;
	}
	errno = e;
	return r;
}
