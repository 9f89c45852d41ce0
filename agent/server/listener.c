/*
 * The listening socket: created safely (a directory not writable by
 * others; a leftover socket nobody answers on is replaced, one an agent
 * answers on is an error), mode 0666 since peer credentials authorise,
 * or taken from systemd socket activation.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "log.h"
#include "ramkey_err.h"
#include "server_int.h"

#define LISTEN_BACKLOG 512
#define ACCEPT_BATCH 64

static void accept_resume(void *arg)
{
	struct server *s = arg;

	if (s->listen_fd >= 0)
		(void)evloop_mod(s->loop, s->listen_fd, EPOLLIN);
}

/*
 * Out of file descriptors: a waiting connection would make the listening
 * socket readable forever. Stop listening for a moment instead of
 * spinning, and say so once.
 */
static void accept_pause(struct server *s)
{
	uint64_t now = evloop_now();

	if (now >= s->emfile_logged_at + 60000) {
		log_err("accept: %s; pausing new connections (raise "
		    "LimitNOFILE / ulimit -n?)", strerror(errno));
		s->emfile_logged_at = now;
	}
	(void)evloop_mod(s->loop, s->listen_fd, 0);
	ev_timer_init(&s->accept_timer, accept_resume, s);
	(void)evloop_timer_arm(s->loop, &s->accept_timer, now + 100);
}

void listener_accept(void *arg, int fd, uint32_t events)
{
	struct server *s = arg;
	int i;

	(void)events;
	for (i = 0; i < ACCEPT_BATCH; i++) {
		struct ucred cred;
		socklen_t clen = sizeof(cred);
		int cfd;

		cfd = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (cfd < 0) {
			if (errno == EMFILE || errno == ENFILE ||
			    errno == ENOBUFS || errno == ENOMEM)
				accept_pause(s);
			else if (errno != EAGAIN && errno != EWOULDBLOCK &&
			    errno != EINTR && errno != ECONNABORTED)
				log_warn("accept: %s", strerror(errno));
			return;
		}
		/* The kernel says who is calling; nothing else does. */
		if (getsockopt(cfd, SOL_SOCKET, SO_PEERCRED, &cred, &clen) !=
		    0 || clen != sizeof(cred) || conn_new(s, cfd, &cred) != 0)
			close(cfd);
	}
}

/* systemd socket activation: LISTEN_PID/LISTEN_FDS, one stream socket. */
static int activated_socket(struct server *s, char **errp)
{
	const char *pid = getenv("LISTEN_PID"), *env = getenv("LISTEN_FDS");
	int type = 0, listening = 0;
	socklen_t len = sizeof(type);
	char buf[256], fds[16];

	if (pid == NULL || env == NULL || strtol(pid, NULL, 10) != getpid())
		return -1;
	snprintf(fds, sizeof(fds), "%s", env);
	unsetenv("LISTEN_PID");
	unsetenv("LISTEN_FDS");
	unsetenv("LISTEN_FDNAMES");
	if (strcmp(fds, "1") != 0) {
		snprintf(buf, sizeof(buf), "socket activation passed %s "
		    "sockets; ramkey-agent takes exactly one", fds);
		*errp = strdup(buf);
		return RAMKEY_ERR_CONFIG;
	}
	if (getsockopt(3, SOL_SOCKET, SO_TYPE, &type, &len) != 0 ||
	    type != SOCK_STREAM ||
	    getsockopt(3, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) != 0 ||
	    !listening) {
		*errp = strdup("socket activation: fd 3 is not a listening "
		    "stream socket");
		return RAMKEY_ERR_CONFIG;
	}
	fcntl(3, F_SETFD, FD_CLOEXEC);
	fcntl(3, F_SETFL, fcntl(3, F_GETFL) | O_NONBLOCK);
	s->listen_fd = 3;
	s->socket_activated = true;
	return 0;
}

int server_listen(struct server *s, char **errp)
{
	const char *path = s->cfg.socket;
	struct sockaddr_un sa;
	char dir[sizeof(sa.sun_path)], buf[512], *slash;
	struct stat st;
	mode_t old;
	int fd = -1, r;

	*errp = NULL;
	s->listen_fd = -1;
	if ((r = activated_socket(s, errp)) == 0)
		goto listen_ok;
	if (r != -1)
		return r;
	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	if (strlen(path) >= sizeof(sa.sun_path)) {
		*errp = strdup("socket path too long");
		return RAMKEY_ERR_CONFIG;
	}
	memcpy(sa.sun_path, path, strlen(path));
	snprintf(dir, sizeof(dir), "%s", path);
	if ((slash = strrchr(dir, '/')) != NULL && slash != dir)
		*slash = '\0';
	if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
		snprintf(buf, sizeof(buf), "cannot create socket directory "
		    "%s: %s", dir, strerror(errno));
		goto fail;
	}
	if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode) ||
	    (st.st_uid != 0 && st.st_uid != geteuid()) ||
	    (st.st_mode & (S_IWGRP | S_IWOTH)) != 0) {
		snprintf(buf, sizeof(buf), "socket directory %s must belong "
		    "to root or the agent's user and not be writable by "
		    "others (clients refuse to talk to it otherwise)", dir);
		goto fail;
	}
	if (lstat(path, &st) == 0) {
		int probe;

		if (!S_ISSOCK(st.st_mode)) {
			snprintf(buf, sizeof(buf), "%s exists and is not a "
			    "socket; remove it", path);
			goto fail;
		}
		probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (probe >= 0 && connect(probe, (struct sockaddr *)&sa,
		    sizeof(sa)) == 0) {
			close(probe);
			snprintf(buf, sizeof(buf), "another agent is answering "
			    "on %s; stop it first", path);
			goto fail;
		}
		if (probe >= 0)
			close(probe);
		/* Nobody answers: a leftover from an agent that died. */
		if (unlink(path) != 0 && errno != ENOENT) {
			snprintf(buf, sizeof(buf), "cannot remove the leftover "
			    "socket %s: %s", path, strerror(errno));
			goto fail;
		}
		log_info("replaced the leftover socket %s", path);
	}
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
	    0)) < 0) {
		snprintf(buf, sizeof(buf), "socket: %s", strerror(errno));
		goto fail;
	}
	/* Mode 0666: anyone may connect; peer credentials authorise. */
	old = umask(0111);
	r = bind(fd, (struct sockaddr *)&sa, sizeof(sa));
	umask(old);
	if (r != 0) {
		snprintf(buf, sizeof(buf), "cannot bind %s: %s", path,
		    strerror(errno));
		goto fail;
	}
	s->owns_socket_path = true;
	if (listen(fd, LISTEN_BACKLOG) != 0) {
		snprintf(buf, sizeof(buf), "listen: %s", strerror(errno));
		goto fail;
	}
	s->listen_fd = fd;
listen_ok:
	if (evloop_add(s->loop, s->listen_fd, EPOLLIN,
	    listener_accept, s) != 0) {
		snprintf(buf, sizeof(buf), "cannot watch the listening socket");
		fd = s->socket_activated ? -1 : s->listen_fd;
		goto fail;
	}
	return 0;
fail:
	if (fd >= 0)
		close(fd);
	if (s->owns_socket_path)
		unlink(path);
	s->owns_socket_path = false;
	s->listen_fd = -1;
	*errp = strdup(buf);
	return RAMKEY_ERR_SYSTEM;
}

void server_close(struct server *s)
{
	if (s->listen_fd < 0)
		return;
	evloop_del(s->loop, s->listen_fd);
	close(s->listen_fd);
	s->listen_fd = -1;
	/* Remove the socket only if it is still ours. */
	if (s->owns_socket_path)
		unlink(s->cfg.socket);
	s->owns_socket_path = false;
}
