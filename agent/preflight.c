/* Checks before the start (preflight.h). */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <netdb.h>
#include <poll.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "imds.h"
#include "preflight.h"
#include "ramkey_err.h"

#define GROUPS_MAX 256

static int fail(char **errp, int rc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail(char **errp, int rc, const char *fmt, ...)
{
	va_list ap;
	char *s = NULL;

	va_start(ap, fmt);
	if (vasprintf(&s, fmt, ap) < 0)
		s = NULL;
	va_end(ap);
	if (errp != NULL)
		*errp = s;
	else
		free(s);
	return rc;
}

void preflight_self(struct preflight_account *out)
{
	struct passwd *pw = getpwuid(geteuid());

	memset(out, 0, sizeof(*out));
	out->uid = geteuid();
	out->gid = getegid();
	if (pw != NULL)
		snprintf(out->name, sizeof(out->name), "%s", pw->pw_name);
	else
		snprintf(out->name, sizeof(out->name), "uid %lu",
		    (unsigned long)out->uid);
}

int preflight_account(const char *as_user, struct preflight_account *out,
    char **errp)
{
	struct passwd *pw = NULL;
	char *end;
	unsigned long n;

	if (errp != NULL)
		*errp = NULL;
	preflight_self(out);
	if (as_user != NULL) {
		errno = 0;
		n = strtoul(as_user, &end, 10);
		if (*as_user != '\0' && *end == '\0' && errno == 0)
			pw = getpwuid((uid_t)n);
		else
			pw = getpwnam(as_user);
		if (pw == NULL)
			return fail(errp, RAMKEY_ERR_CONFIG, "--check-as %s: "
			    "no such account", as_user);
	} else if (geteuid() == 0) {
		pw = getpwnam(RAMKEY_USER);
	}
	if (pw == NULL)
		return 0;
	out->uid = pw->pw_uid;
	out->gid = pw->pw_gid;
	snprintf(out->name, sizeof(out->name), "%s", pw->pw_name);
	out->other = pw->pw_uid != geteuid();
	if (out->other && geteuid() != 0)
		return fail(errp, RAMKEY_ERR_CONFIG, "cannot check as %s: only "
		    "root can", out->name);
	return 0;
}

/* 0, or the errno of the failure (EISDIR-ish for not a regular file). */
static int try_open(const char *path, bool *not_regular)
{
	struct stat st;
	int fd, e = 0;

	*not_regular = false;
	if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK)) <
	    0)
		return errno != 0 ? errno : EIO;
	if (fstat(fd, &st) != 0)
		e = errno != 0 ? errno : EIO;
	else if (!S_ISREG(st.st_mode))
		*not_regular = true;
	close(fd);
	return e;
}

/* What the child reports: the index of the failed file and why. */
struct verdict {
	int index;	/* -1: all opened */
	int err;
	int not_regular;
};

static void child_open(const struct preflight_account *acct,
    const gid_t *groups, int ngroups, const struct config_file *files,
    size_t n, int fd)
{
	struct verdict v = { -1, 0, 0 };
	size_t i;

	if (setgroups((size_t)ngroups, groups) != 0 ||
	    setgid(acct->gid) != 0 || setuid(acct->uid) != 0 ||
	    (acct->uid != 0 && setuid(0) == 0))
		_exit(2);
	for (i = 0; i < n; i++) {
		bool nr;

		if ((v.err = try_open(files[i].path, &nr)) != 0 || nr) {
			v.index = (int)i;
			v.not_regular = nr;
			break;
		}
	}
	if (write(fd, &v, sizeof(v)) != (ssize_t)sizeof(v))
		_exit(2);
	_exit(0);
}

int preflight_files(const struct preflight_account *acct,
    const struct config_file *files, size_t n, char **errp)
{
	struct verdict v = { -1, 0, 0 };
	gid_t groups[GROUPS_MAX];
	int ngroups = GROUPS_MAX, pipefd[2] = { -1, -1 }, status = 0;
	pid_t pid;
	ssize_t got;
	size_t i;
	int r;

	if (errp != NULL)
		*errp = NULL;
	if (!acct->other) {
		for (i = 0; i < n; i++) {
			bool nr;

			if ((v.err = try_open(files[i].path, &nr)) != 0 || nr) {
				v.index = (int)i;
				v.not_regular = nr;
				break;
			}
		}
		goto verdict;
	}
	/* The groups are looked up here: the child only switches. */
	if (getgrouplist(acct->name, acct->gid, groups, &ngroups) < 0) {
		ngroups = 1;
		groups[0] = acct->gid;
	}
	if (pipe2(pipefd, O_CLOEXEC) != 0)
		return fail(errp, RAMKEY_ERR_SYSTEM, "cannot check the files "
		    "as %s: pipe: %s", acct->name, strerror(errno));
	if ((pid = fork()) < 0) {
		r = fail(errp, RAMKEY_ERR_SYSTEM, "cannot check the files as "
		    "%s: fork: %s", acct->name, strerror(errno));
		close(pipefd[0]);
		close(pipefd[1]);
		return r;
	}
	if (pid == 0) {
		close(pipefd[0]);
		child_open(acct, groups, ngroups, files, n, pipefd[1]);
	}
	close(pipefd[1]);
	do
		got = read(pipefd[0], &v, sizeof(v));
	while (got < 0 && errno == EINTR);
	close(pipefd[0]);
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	if (got != (ssize_t)sizeof(v) || !WIFEXITED(status) ||
	    WEXITSTATUS(status) != 0)
		return fail(errp, RAMKEY_ERR_SYSTEM, "cannot check the files "
		    "as %s (uid %lu): the checking process failed", acct->name,
		    (unsigned long)acct->uid);
verdict:
	if (v.index < 0 || (size_t)v.index >= n)
		return 0;
	if (v.not_regular)
		return fail(errp, RAMKEY_ERR_CONFIG, "%s %s: not a regular "
		    "file", files[v.index].key, files[v.index].path);
	return fail(errp, RAMKEY_ERR_CONFIG, "%s %s: cannot open as %s: %s",
	    files[v.index].key, files[v.index].path, acct->name,
	    strerror(v.err));
}

/* ---- the metadata service ---- */

/* Connect within the timeout: 0, or the errno (ETIMEDOUT). */
static int probe(const struct addrinfo *ai)
{
	struct pollfd p;
	socklen_t len = sizeof(int);
	int fd, e = 0, n;

	if ((fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK |
	    SOCK_CLOEXEC, ai->ai_protocol)) < 0)
		return errno;
	if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
		goto out;
	if (errno != EINPROGRESS) {
		e = errno;
		goto out;
	}
	p.fd = fd;
	p.events = POLLOUT;
	do
		n = poll(&p, 1, PREFLIGHT_PROBE_TIMEOUT_MS);
	while (n < 0 && errno == EINTR);
	if (n == 0)
		e = ETIMEDOUT;
	else if (n < 0 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &len) != 0)
		e = errno != 0 ? errno : EIO;
out:
	close(fd);
	return e;
}

/* The probe as nobody, from a child; its errno, or -1 if it failed. */
static int probe_as_nobody(const struct addrinfo *ai)
{
	int status = 0;
	pid_t pid;

	if ((pid = fork()) < 0)
		return -1;
	if (pid == 0) {
		int e;

		if (setgroups(0, NULL) != 0 ||
		    setgid(PREFLIGHT_PROBE_GID) != 0 ||
		    setuid(PREFLIGHT_PROBE_UID) != 0 || setuid(0) == 0)
			_exit(255);
		e = probe(ai);
		_exit(e == 0 ? 0 : e > 0 && e < 255 ? e : EIO);
	}
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	if (!WIFEXITED(status) || WEXITSTATUS(status) == 255)
		return -1;
	return WEXITSTATUS(status);
}

enum preflight_imds preflight_imds(const char *url, char *detail, size_t len)
{
	struct addrinfo hints, *ai = NULL;
	enum preflight_imds out = PREFLIGHT_IMDS_UNKNOWN;
	char *host = NULL, port[8];
	unsigned portn;
	int e_root, e_nobody;

	detail[0] = '\0';
	if (geteuid() != 0) {
		snprintf(detail, len, "only root can check (running as uid "
		    "%lu)", (unsigned long)geteuid());
		return PREFLIGHT_IMDS_UNKNOWN;
	}
	if (imds_url_parse(url, &host, &portn) != 0) {
		snprintf(detail, len, "%s is not a metadata URL", url);
		goto out;
	}
	snprintf(port, sizeof(port), "%u", portn);
	memset(&hints, 0, sizeof(hints));
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_NUMERICSERV;
	if (getaddrinfo(host, port, &hints, &ai) != 0 || ai == NULL) {
		snprintf(detail, len, "cannot resolve %s", host);
		goto out;
	}
	e_root = probe(ai);
	e_nobody = probe_as_nobody(ai);
	if (e_nobody == 0) {
		snprintf(detail, len, "uid %d connected to %s port %s",
		    PREFLIGHT_PROBE_UID, host, port);
		out = PREFLIGHT_IMDS_OPEN;
	} else if (e_nobody < 0) {
		snprintf(detail, len, "the probe as uid %d failed to run",
		    PREFLIGHT_PROBE_UID);
	} else if (e_root != 0) {
		/* Nobody answers anyone: no verdict on the rule. */
		snprintf(detail, len, "the service at %s port %s does not "
		    "answer root either (%s)", host, port, strerror(e_root));
	} else {
		snprintf(detail, len, "root connects to %s port %s, uid %d "
		    "does not (%s)", host, port, PREFLIGHT_PROBE_UID,
		    strerror(e_nobody));
		out = PREFLIGHT_IMDS_RESTRICTED;
	}
out:
	if (ai != NULL)
		freeaddrinfo(ai);
	free(host);
	return out;
}
