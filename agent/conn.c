/*
 * The agent socket: a listener (created safely, or from systemd socket
 * activation), connections identified by SO_PEERCRED only, a 5-second
 * deadline for each complete request, frames bounded before allocation,
 * per-uid connection limits, and replies written only after the store has
 * committed what they report.
 */
#include <errno.h>
#include <fcntl.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <sodium.h>

#include "agent.h"
#include "frame.h"
#include "lease_store.h"
#include "log.h"
#include "ramkey_err.h"
#include "strmap.h"

#define REQUEST_DEADLINE_MS 5000
#define LISTEN_BACKLOG 512
#define ACCEPT_BATCH 64
#define STORE_RETRY_MS 5000

static struct uid_stats *uid_stats_get(struct agent *a, uid_t uid)
{
	char key[24];
	struct uid_stats *u;

	snprintf(key, sizeof(key), "%lu", (unsigned long)uid);
	if ((u = strmap_get(a->uids, key)) != NULL)
		return u;
	if ((u = calloc(1, sizeof(*u))) == NULL)
		return NULL;
	u->uid = uid;
	if (strmap_put(a->uids, key, u) != 0) {
		free(u);
		return NULL;
	}
	return u;
}

static void conn_free(struct conn *c)
{
	struct agent *a = c->agent;
	struct uid_stats *u;

	evloop_timer_cancel(a->loop, &c->idle_timer);
	if (c->fd >= 0) {
		evloop_del(a->loop, c->fd);
		close(c->fd);
		c->fd = -1;
	}
	if (c->prev != NULL)
		c->prev->next = c->next;
	else if (a->conns == c)
		a->conns = c->next;
	if (c->next != NULL)
		c->next->prev = c->prev;
	if ((u = uid_stats_get(a, c->peer.uid)) != NULL &&
	    u->connections > 0)
		u->connections--;
	if (c->body != NULL) {
		sodium_memzero(c->body, c->body_len);
		free(c->body);
	}
	if (c->out != NULL) {
		sodium_memzero(c->out, c->out_len);
		free(c->out);
	}
	free(c->peer_name);
	free(c);
}

/* The peer is gone (or misbehaved): close now, free once idle. */
static void conn_kill(struct conn *c)
{
	struct agent *a = c->agent;

	if (c->dead)
		return;
	c->dead = true;
	evloop_timer_cancel(a->loop, &c->idle_timer);
	if (c->fd >= 0) {
		evloop_del(a->loop, c->fd);
		close(c->fd);
		c->fd = -1;
	}
	if (c->req != NULL) {
		request_abandon(c->req);
		return; /* freed when the request completes */
	}
	if (!c->queued)
		conn_free(c);
}

static void idle_expired(void *arg)
{
	struct conn *c = arg;

	log_debug("closing connection from uid %lu pid %ld: no complete "
	    "request within %d ms", (unsigned long)c->peer.uid,
	    (long)c->peer.pid, REQUEST_DEADLINE_MS);
	conn_kill(c);
}

static void conn_io(void *arg, int fd, uint32_t events);

static void read_request(struct conn *c)
{
	struct ramkey_request *msg = NULL;
	ssize_t n;
	int r;

	for (;;) {
		if (c->hdr_have < sizeof(c->hdr)) {
			n = recv(c->fd, c->hdr + c->hdr_have,
			    sizeof(c->hdr) - c->hdr_have, MSG_DONTWAIT);
		} else {
			n = recv(c->fd, c->body + c->body_have,
			    c->body_len - c->body_have, MSG_DONTWAIT);
		}
		if (n == 0) {
			conn_kill(c);
			return;
		}
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN && errno != EWOULDBLOCK)
				conn_kill(c);
			return;
		}
		if (c->hdr_have < sizeof(c->hdr)) {
			c->hdr_have += (size_t)n;
			if (c->hdr_have < sizeof(c->hdr))
				continue;
			if ((r = ramkey_frame_parse_header(c->hdr,
			    &c->body_len)) != 0) {
				log_warn("closing connection from uid %lu: "
				    "bad frame header (%s)",
				    (unsigned long)c->peer.uid,
				    ramkey_strerror(r));
				conn_kill(c);
				return;
			}
			if ((c->body = malloc(c->body_len)) == NULL) {
				conn_kill(c);
				return;
			}
			c->body_have = 0;
			continue;
		}
		c->body_have += (size_t)n;
		if (c->body_have == c->body_len)
			break;
	}
	/* A whole request: stop the clock, stop reading, dispatch. */
	evloop_timer_cancel(c->agent->loop, &c->idle_timer);
	r = ramkey_request_decode(c->body, c->body_len, &msg);
	sodium_memzero(c->body, c->body_len);
	free(c->body);
	c->body = NULL;
	c->hdr_have = c->body_len = c->body_have = 0;
	if (r != 0) {
		log_warn("closing connection from uid %lu pid %ld: malformed "
		    "request (%s)", (unsigned long)c->peer.uid,
		    (long)c->peer.pid, ramkey_strerror(r));
		conn_kill(c);
		return;
	}
	request_dispatch(c, msg);
}

static void write_out(struct conn *c)
{
	while (c->out_off < c->out_len) {
		ssize_t n = send(c->fd, c->out + c->out_off,
		    c->out_len - c->out_off, MSG_NOSIGNAL | MSG_DONTWAIT);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK) {
				evloop_mod(c->agent->loop, c->fd,
				    EPOLLOUT | EPOLLRDHUP);
				c->want_out = true;
				return;
			}
			conn_kill(c);
			return;
		}
		c->out_off += (size_t)n;
	}
	sodium_memzero(c->out, c->out_len);
	free(c->out);
	c->out = NULL;
	c->out_len = c->out_off = 0;
	if (c->close_after_write) {
		conn_kill(c);
		return;
	}
	/* Ready for the next request, with a fresh deadline. */
	if (c->want_out) {
		evloop_mod(c->agent->loop, c->fd, EPOLLIN | EPOLLRDHUP);
		c->want_out = false;
	}
	evloop_timer_arm(c->agent->loop, &c->idle_timer,
	    evloop_now() + REQUEST_DEADLINE_MS);
}

static void conn_io(void *arg, int fd, uint32_t events)
{
	struct conn *c = arg;

	(void)fd;
	if (c->out != NULL && (events & EPOLLOUT)) {
		write_out(c);
		return;
	}
	if (c->req != NULL || c->out != NULL) {
		/* Busy: any readiness here means the peer hung up, or sent
		 * another request before reading the reply to this one,
		 * which the protocol treats as hanging up. */
		if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
			conn_kill(c);
		return;
	}
	if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
		read_request(c);
}

void conn_release(struct conn *c)
{
	c->req = NULL;
	if (c->dead && !c->queued)
		conn_free(c);
	else if (!c->dead)
		conn_kill(c);
}

void conn_reply(struct conn *c, struct ramkey_reply *rep)
{
	struct agent *a = c->agent;
	char *text = NULL;
	size_t len = 0;
	int r;

	c->req = NULL;
	if (c->dead) {
		if (!c->queued)
			conn_free(c);
		return;
	}
	if ((r = ramkey_reply_encode(rep, &text, &len)) != 0 ||
	    (c->out = malloc(len + RAMKEY_FRAME_HDR)) == NULL) {
		log_err("cannot encode a reply: %s", ramkey_strerror(r));
		free(text);
		conn_kill(c);
		return;
	}
	/* The encoder kept the body within the op's limit. */
	ramkey_frame_put_header_max(c->out, len, RAMKEY_STATUS_FRAME_MAX);
	memcpy(c->out + RAMKEY_FRAME_HDR, text, len);
	sodium_memzero(text, len);
	free(text);
	c->out_len = len + RAMKEY_FRAME_HDR;
	c->out_off = 0;
	if (!c->queued) {
		c->queued = true;
		c->next_flush = a->flush_list;
		a->flush_list = c;
	}
}

/* Prepare hook: commit the store, then send the replies it allowed. */
void agent_flush(void *arg)
{
	struct agent *a = arg;
	struct conn *c, *next;

	if (store_has_pending(a->store))
		store_commit(a->store);
	/* Commit callbacks may have queued more work for the next batch. */
	if (store_has_pending(a->store))
		evloop_wake(a->loop);
	c = a->flush_list;
	a->flush_list = NULL;
	for (; c != NULL; c = next) {
		next = c->next_flush;
		c->queued = false;
		c->next_flush = NULL;
		if (c->dead) {
			if (c->req == NULL)
				conn_free(c);
			continue;
		}
		if (c->out != NULL)
			write_out(c);
	}
	if (store_broken(a->store) && !ev_timer_armed(&a->store_timer))
		(void)evloop_timer_arm(a->loop, &a->store_timer,
		    evloop_now() + STORE_RETRY_MS);
}

/* While the store is broken, try every few seconds to rewrite it. */
void agent_store_retry(void *arg)
{
	struct agent *a = arg;

	if (store_broken(a->store) && store_resync(a->store, a) != 0)
		(void)evloop_timer_arm(a->loop, &a->store_timer,
		    evloop_now() + STORE_RETRY_MS);
}

void conns_free_all(struct agent *a)
{
	while (a->conns != NULL) {
		struct conn *c = a->conns;

		if (c->req != NULL) {
			request_discard(c->req);
			c->req = NULL;
		}
		conn_free(c);
	}
	a->flush_list = NULL;
}

static char *peer_account(uid_t uid)
{
	struct passwd pw, *res = NULL;
	char buf[4096];

	if (getpwuid_r(uid, &pw, buf, sizeof(buf), &res) != 0 || res == NULL)
		return NULL;
	return strdup(res->pw_name);
}

static void accept_resume(void *arg)
{
	struct agent *a = arg;

	if (a->listen_fd >= 0)
		(void)evloop_mod(a->loop, a->listen_fd, EPOLLIN);
}

/*
 * Out of file descriptors: a waiting connection would make the listening
 * socket readable forever. Stop listening for a moment instead of
 * spinning, and say so once.
 */
static void accept_pause(struct agent *a)
{
	uint64_t now = evloop_now();

	if (now >= a->emfile_logged_at + 60000) {
		log_err("accept: %s; pausing new connections (raise "
		    "LimitNOFILE / ulimit -n?)", strerror(errno));
		a->emfile_logged_at = now;
	}
	(void)evloop_mod(a->loop, a->listen_fd, 0);
	ev_timer_init(&a->accept_timer, accept_resume, a);
	(void)evloop_timer_arm(a->loop, &a->accept_timer, now + 100);
}

static void accept_ready(void *arg, int fd, uint32_t events)
{
	struct agent *a = arg;
	int i;

	(void)events;
	for (i = 0; i < ACCEPT_BATCH; i++) {
		struct ucred cred;
		socklen_t clen = sizeof(cred);
		struct uid_stats *u;
		struct conn *c;
		int cfd;

		cfd = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (cfd < 0) {
			if (errno == EMFILE || errno == ENFILE ||
			    errno == ENOBUFS || errno == ENOMEM)
				accept_pause(a);
			else if (errno != EAGAIN && errno != EWOULDBLOCK &&
			    errno != EINTR && errno != ECONNABORTED)
				log_warn("accept: %s", strerror(errno));
			return;
		}
		/* The kernel says who is calling; nothing else does. */
		if (getsockopt(cfd, SOL_SOCKET, SO_PEERCRED, &cred, &clen) !=
		    0 || clen != sizeof(cred)) {
			close(cfd);
			continue;
		}
		if ((u = uid_stats_get(a, cred.uid)) == NULL) {
			close(cfd);
			continue;
		}
		if (!config_uid_trusted(a->cfg, cred.uid) &&
		    u->connections >= a->cfg->max_connections_per_uid) {
			audit_flood_deny(u, NULL, &cred, "connect",
			    "max_connections_per_uid reached");
			close(cfd);
			continue;
		}
		if ((c = calloc(1, sizeof(*c))) == NULL) {
			close(cfd);
			continue;
		}
		c->agent = a;
		c->fd = cfd;
		c->peer = cred;
		c->trusted = config_uid_trusted(a->cfg, cred.uid);
		c->peer_name = peer_account(cred.uid);
		ev_timer_init(&c->idle_timer, idle_expired, c);
		u->connections++;
		c->next = a->conns;
		if (a->conns != NULL)
			a->conns->prev = c;
		a->conns = c;
		if (evloop_add(a->loop, cfd, EPOLLIN | EPOLLRDHUP, conn_io,
		    c) != 0) {
			conn_free(c);
			continue;
		}
		evloop_timer_arm(a->loop, &c->idle_timer,
		    evloop_now() + REQUEST_DEADLINE_MS);
	}
}

/* systemd socket activation: LISTEN_PID/LISTEN_FDS, one stream socket. */
static int activated_socket(struct agent *a, char **errp)
{
	const char *pid = getenv("LISTEN_PID"), *fds = getenv("LISTEN_FDS");
	int type = 0, listening = 0;
	socklen_t len = sizeof(type);
	char buf[256];

	if (pid == NULL || fds == NULL || strtol(pid, NULL, 10) != getpid())
		return -1;
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
	a->listen_fd = 3;
	a->socket_activated = true;
	return 0;
}

int listener_open(struct agent *a, char **errp)
{
	const char *path = a->cfg->socket;
	struct sockaddr_un sa;
	char dir[sizeof(sa.sun_path)], buf[512], *slash;
	struct stat st;
	mode_t old;
	int fd = -1, r;

	*errp = NULL;
	a->listen_fd = -1;
	if ((r = activated_socket(a, errp)) == 0)
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
	a->owns_socket_path = true;
	if (listen(fd, LISTEN_BACKLOG) != 0) {
		snprintf(buf, sizeof(buf), "listen: %s", strerror(errno));
		goto fail;
	}
	a->listen_fd = fd;
listen_ok:
	if (evloop_add(a->loop, a->listen_fd, EPOLLIN, accept_ready, a) != 0) {
		snprintf(buf, sizeof(buf), "cannot watch the listening socket");
		fd = a->socket_activated ? -1 : a->listen_fd;
		goto fail;
	}
	return 0;
fail:
	if (fd >= 0)
		close(fd);
	if (a->owns_socket_path)
		unlink(path);
	a->owns_socket_path = false;
	a->listen_fd = -1;
	*errp = strdup(buf);
	return RAMKEY_ERR_SYSTEM;
}

void listener_close(struct agent *a)
{
	if (a->listen_fd < 0)
		return;
	evloop_del(a->loop, a->listen_fd);
	close(a->listen_fd);
	a->listen_fd = -1;
	/* Remove the socket only if it is still ours. */
	if (a->owns_socket_path)
		unlink(a->cfg->socket);
	a->owns_socket_path = false;
}
