#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <sodium.h>

#include "frame.h"
#include "ramkey_err.h"
#include "requester.h"

#ifndef RAMKEY_USER
#define RAMKEY_USER "ramkey"
#endif

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

/* Who the agent may run as: root, ourselves, or the RAMKEY_USER account
 * (looked up at most once per connection, and only when needed). */
struct trust {
	bool looked_up;
	bool have_agent_uid;
	uid_t agent_uid;
};

static int trusted_uid(struct trust *t, uid_t uid)
{
	struct passwd pw, *res = NULL;
	char buf[4096];

	if (uid == 0 || uid == geteuid())
		return 1;
	if (!t->looked_up) {
		t->looked_up = true;
		if (getpwnam_r(RAMKEY_USER, &pw, buf, sizeof(buf), &res) == 0 &&
		    res != NULL) {
			t->have_agent_uid = true;
			t->agent_uid = res->pw_uid;
		}
	}
	return t->have_agent_uid && t->agent_uid == uid;
}

static int check_socket_path(struct trust *t, const char *path, char *why,
    size_t whylen)
{
	char dir[sizeof(((struct sockaddr_un *)0)->sun_path)];
	struct stat st;
	char *slash;

	snprintf(dir, sizeof(dir), "%s", path);
	if ((slash = strrchr(dir, '/')) == NULL) {
		say(why, whylen, "socket path %s is not absolute", path);
		return RAMKEY_ERR_INVALID;
	}
	if (slash == dir)
		slash[1] = '\0';
	else
		*slash = '\0';
	if (stat(dir, &st) != 0) {
		say(why, whylen, "agent socket directory %s: %s", dir,
		    strerror(errno));
		return RAMKEY_ERR_CONNECT;
	}
	if (!S_ISDIR(st.st_mode) || !trusted_uid(t, st.st_uid) ||
	    (st.st_mode & (S_IWGRP | S_IWOTH)) != 0) {
		say(why, whylen, "agent socket directory %s is writable by "
		    "others or not owned by root or %s; refusing to talk to "
		    "it", dir, RAMKEY_USER);
		return RAMKEY_ERR_UNTRUSTED;
	}
	if (lstat(path, &st) != 0) {
		say(why, whylen, "agent socket %s: %s (is ramkey-agent "
		    "running?)", path, strerror(errno));
		return RAMKEY_ERR_CONNECT;
	}
	if (!S_ISSOCK(st.st_mode) || !trusted_uid(t, st.st_uid)) {
		say(why, whylen, "%s is not a socket owned by root or %s; "
		    "refusing to talk to it", path, RAMKEY_USER);
		return RAMKEY_ERR_UNTRUSTED;
	}
	return 0;
}

int ramkey_agent_connect(const char *path, uint64_t deadline_ms, int *fdp,
    char *why, size_t whylen)
{
	struct sockaddr_un sa;
	struct ucred cred;
	struct trust trust = { false, false, 0 };
	socklen_t clen = sizeof(cred);
	int fd = -1, hi, r;

	*fdp = -1;
	if (path == NULL || strlen(path) >= sizeof(sa.sun_path)) {
		say(why, whylen, "agent socket path is too long");
		return RAMKEY_ERR_INVALID;
	}
	if ((r = check_socket_path(&trust, path, why, whylen)) != 0)
		return r;
	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	memcpy(sa.sun_path, path, strlen(path));
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK,
	    0)) < 0) {
		say(why, whylen, "socket: %s", strerror(errno));
		return RAMKEY_ERR_SYSTEM;
	}
	/* Keep clear of 0-2, which a login program may close or reuse. */
	if (fd <= 2) {
		if ((hi = fcntl(fd, F_DUPFD_CLOEXEC, 3)) < 0) {
			r = RAMKEY_ERR_SYSTEM;
			goto out;
		}
		close(fd);
		fd = hi;
	}
	for (;;) {
		if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0)
			break;
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN && ramkey_now_ms() < deadline_ms) {
			/* Listen backlog full: the agent is busy. */
			poll(NULL, 0, 5);
			continue;
		}
		if (errno == EAGAIN) {
			say(why, whylen, "agent at %s did not accept the "
			    "connection in time", path);
			r = RAMKEY_ERR_TIMEOUT;
		} else {
			say(why, whylen, "cannot connect to the agent at %s: "
			    "%s (is ramkey-agent running?)", path,
			    strerror(errno));
			r = RAMKEY_ERR_CONNECT;
		}
		goto out;
	}
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &clen) != 0 ||
	    clen != sizeof(cred)) {
		say(why, whylen, "cannot read the agent's credentials: %s",
		    strerror(errno));
		r = RAMKEY_ERR_UNTRUSTED;
		goto out;
	}
	if (!trusted_uid(&trust, cred.uid)) {
		say(why, whylen, "the process at %s runs as uid %lu, not as "
		    "root or %s; refusing to talk to it", path,
		    (unsigned long)cred.uid, RAMKEY_USER);
		r = RAMKEY_ERR_UNTRUSTED;
		goto out;
	}
	*fdp = fd;
	fd = -1;
	r = 0;
out:
	if (fd >= 0)
		close(fd);
	return r;
}

int ramkey_agent_send(int fd, const struct ramkey_request *req,
    uint64_t deadline_ms, char *why, size_t whylen)
{
	char *text = NULL;
	size_t len = 0;
	int r;

	if ((r = ramkey_request_encode(req, &text, &len)) != 0) {
		say(why, whylen, "cannot encode the request: %s",
		    ramkey_strerror(r));
		goto out;
	}
	if ((r = ramkey_frame_send(fd, text, len, deadline_ms)) != 0) {
		say(why, whylen, "sending the request to the agent: %s",
		    r == RAMKEY_ERR_TIMEOUT ? "no progress before the "
		    "deadline" : ramkey_strerror(r));
		goto out;
	}
out:
	if (text != NULL) {
		sodium_memzero(text, len);
		free(text);
	}
	return r;
}

int ramkey_agent_receive(int fd, enum ramkey_op op, uint64_t deadline_ms,
    struct ramkey_reply **repp, char *why, size_t whylen)
{
	uint8_t *body = NULL;
	size_t blen = 0;
	int r;

	*repp = NULL;
	if ((r = ramkey_frame_recv(fd, ramkey_reply_frame_max(op), &body,
	    &blen, deadline_ms)) != 0) {
		if (r == RAMKEY_ERR_TIMEOUT)
			say(why, whylen, "the agent did not answer in time");
		else if (r == RAMKEY_ERR_TOO_LARGE)
			say(why, whylen, "the agent's reply is larger than the "
			    "protocol allows");
		else
			say(why, whylen, "reading the agent's reply: %s",
			    ramkey_strerror(r));
		goto out;
	}
	if ((r = ramkey_reply_decode(body, blen, op, repp)) != 0) {
		say(why, whylen, "the agent's reply is malformed (%s)",
		    ramkey_strerror(r));
		goto out;
	}
out:
	if (body != NULL) {
		sodium_memzero(body, blen);
		free(body);
	}
	return r;
}

int ramkey_agent_exchange(int fd, const struct ramkey_request *req,
    uint64_t deadline_ms, struct ramkey_reply **repp, char *why,
    size_t whylen)
{
	int r;

	*repp = NULL;
	if ((r = ramkey_agent_send(fd, req, deadline_ms, why, whylen)) != 0)
		return r;
	return ramkey_agent_receive(fd, req->op, deadline_ms, repp, why,
	    whylen);
}

int ramkey_agent_call(const char *path, const struct ramkey_request *req,
    uint64_t deadline_ms, struct ramkey_reply **repp, char *why,
    size_t whylen)
{
	int fd = -1, r;

	*repp = NULL;
	if ((r = ramkey_agent_connect(path, deadline_ms, &fd, why,
	    whylen)) != 0)
		return r;
	r = ramkey_agent_exchange(fd, req, deadline_ms, repp, why, whylen);
	close(fd);
	return r;
}
