/*
 * Connections: frames bounded before allocation, a 5-second deadline for
 * each complete request, one request at a time, replies queued and
 * written from the loop's prepare hook (after the store has committed
 * what they report), per-uid limits, and rate-limited lines about bad
 * input so that one user's garbage cannot flood the log.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <sodium.h>

#include "audit.h"
#include "frame.h"
#include "log.h"
#include "ramkey_err.h"
#include "server_int.h"
#include "strmap.h"

#define REQUEST_DEADLINE_MS 5000
/* At most one line about a uid's bad input per period. */
#define BAD_INPUT_LOG_MS 5000
#define FLOOD_AUDIT_MS 10000

struct uid_stats *uid_stats_get(struct server *s, uid_t uid)
{
	struct uid_stats *u;

	if ((u = idmap_get(s->uids, uid)) != NULL)
		return u;
	if ((u = calloc(1, sizeof(*u))) == NULL)
		return NULL;
	u->uid = uid;
	if (idmap_put(s->uids, uid, u) != 0) {
		free(u);
		return NULL;
	}
	return u;
}

bool server_uid_trusted(const struct server *s, uid_t uid)
{
	size_t i;

	for (i = 0; i < s->cfg.ntrusted_uids; i++)
		if (s->cfg.trusted_uids[i] == uid)
			return true;
	return false;
}

void log_bad_input(struct server *s, uid_t uid, pid_t pid, const char *fmt,
    ...)
{
	struct uid_stats *u = uid_stats_get(s, uid);
	uint64_t now = evloop_now();
	char buf[RAMKEY_MESSAGE_TEXT_MAX];
	va_list ap;

	if (u != NULL && u->badinput_log_ms != 0 &&
	    now - u->badinput_log_ms < BAD_INPUT_LOG_MS) {
		u->badinput_suppressed++;
		return;
	}
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	log_warn("%s (uid %lu pid %ld; %lu similar line(s) suppressed before "
	    "this one)", buf, (unsigned long)uid, (long)pid,
	    (unsigned long)(u != NULL ? u->badinput_suppressed : 0));
	if (u != NULL) {
		u->badinput_log_ms = now;
		u->badinput_suppressed = 0;
	}
}

void audit_flood_deny(struct uid_stats *u, const char *user,
    const struct ucred *peer, const char *op, const char *reason)
{
	uint64_t now = evloop_now();
	struct audit_who who = { 0 };
	char extra[256];

	if (u->flood_audit_ms != 0 && now - u->flood_audit_ms <
	    FLOOD_AUDIT_MS) {
		u->flood_suppressed++;
		return;
	}
	snprintf(extra, sizeof(extra), "op=%s reason=\"%s\" suppressed=%lu",
	    op, reason, (unsigned long)u->flood_suppressed);
	if (peer != NULL) {
		who.known = true;
		who.uid = peer->uid;
		who.pid = peer->pid;
	}
	audit_line("deny", user, "ram_user", NULL, NULL, &who, extra);
	u->flood_audit_ms = now;
	u->flood_suppressed = 0;
}

static void conn_free(struct conn *c)
{
	struct server *s = c->srv;
	struct uid_stats *u;

	evloop_timer_cancel(s->loop, &c->idle_timer);
	if (c->fd >= 0) {
		evloop_del(s->loop, c->fd);
		close(c->fd);
		c->fd = -1;
	}
	if (c->prev != NULL)
		c->prev->next = c->next;
	else if (s->conns == c)
		s->conns = c->next;
	if (c->next != NULL)
		c->next->prev = c->prev;
	if ((u = uid_stats_get(s, c->peer.uid)) != NULL && u->connections > 0)
		u->connections--;
	ramkey_frame_reader_clear(&c->in);
	if (c->out != NULL) {
		sodium_memzero(c->out, c->out_len);
		free(c->out);
	}
	free(c);
}

/* The peer is gone (or misbehaved): close now, free once idle. */
static void conn_kill(struct conn *c)
{
	struct server *s = c->srv;

	if (c->dead)
		return;
	c->dead = true;
	evloop_timer_cancel(s->loop, &c->idle_timer);
	if (c->fd >= 0) {
		evloop_del(s->loop, c->fd);
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

static void read_request(struct conn *c)
{
	struct ramkey_request *msg = NULL;
	uint8_t *buf;
	size_t want, len;
	ssize_t n;
	int r;

	for (;;) {
		ramkey_frame_reader_space(&c->in, &buf, &want);
		n = recv(c->fd, buf, want, MSG_DONTWAIT);
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
		if ((r = ramkey_frame_reader_got(&c->in, (size_t)n)) == 1)
			break;
		if (r == RAMKEY_ERR_TOO_LARGE || r == RAMKEY_ERR_PROTOCOL) {
			log_bad_input(c->srv, c->peer.uid, c->peer.pid,
			    "closing a connection: bad frame header (%s)",
			    ramkey_strerror(r));
			conn_kill(c);
			return;
		}
		if (r != 0) {
			conn_kill(c);
			return;
		}
	}
	/* A whole request: stop the clock, stop reading, dispatch. */
	evloop_timer_cancel(c->srv->loop, &c->idle_timer);
	ramkey_frame_reader_take(&c->in, &buf, &len);
	r = ramkey_request_decode(buf, len, &msg);
	sodium_memzero(buf, len);
	free(buf);
	if (r != 0) {
		log_bad_input(c->srv, c->peer.uid, c->peer.pid, "closing a "
		    "connection: malformed request (%s)", ramkey_strerror(r));
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
				evloop_mod(c->srv->loop, c->fd,
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
	/* Ready for the next request, with a fresh deadline. */
	if (c->want_out) {
		evloop_mod(c->srv->loop, c->fd, EPOLLIN | EPOLLRDHUP);
		c->want_out = false;
	}
	evloop_timer_arm(c->srv->loop, &c->idle_timer,
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
	struct server *s = c->srv;
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
		c->next_flush = s->flush_list;
		s->flush_list = c;
	}
}

/* Prepare hook: send the replies the committed store allowed. */
static void server_flush(void *arg)
{
	struct server *s = arg;
	struct conn *c, *next;

	c = s->flush_list;
	s->flush_list = NULL;
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
}

/* A new connection from an accepted fd (listener.c). */
int conn_new(struct server *s, int fd, const struct ucred *cred)
{
	struct uid_stats *u;
	struct conn *c;

	if ((u = uid_stats_get(s, cred->uid)) == NULL)
		return RAMKEY_ERR_NOMEM;
	if (!server_uid_trusted(s, cred->uid) &&
	    u->connections >= s->cfg.max_connections_per_uid) {
		audit_flood_deny(u, NULL, cred, "connect",
		    "max_connections_per_uid reached");
		return RAMKEY_ERR_BUSY;
	}
	if ((c = calloc(1, sizeof(*c))) == NULL)
		return RAMKEY_ERR_NOMEM;
	c->srv = s;
	c->fd = fd;
	c->peer = *cred;
	c->trusted = server_uid_trusted(s, cred->uid);
	ramkey_frame_reader_init(&c->in, RAMKEY_FRAME_MAX);
	ev_timer_init(&c->idle_timer, idle_expired, c);
	u->connections++;
	c->next = s->conns;
	if (s->conns != NULL)
		s->conns->prev = c;
	s->conns = c;
	if (evloop_add(s->loop, fd, EPOLLIN | EPOLLRDHUP, conn_io, c) != 0) {
		c->fd = -1; /* the caller closes it */
		conn_free(c);
		return RAMKEY_ERR_SYSTEM;
	}
	evloop_timer_arm(s->loop, &c->idle_timer,
	    evloop_now() + REQUEST_DEADLINE_MS);
	return 0;
}

int conn_setup(struct server *s)
{
	return evloop_add_prepare(s->loop, server_flush, s);
}

void conns_free_all(struct server *s)
{
	struct conn *c;

	/* Off the list here: the loop does not depend on c->srv. */
	while ((c = s->conns) != NULL) {
		s->conns = c->next;
		if (s->conns != NULL)
			s->conns->prev = NULL;
		c->next = NULL;
		if (c->req != NULL) {
			request_discard(c->req);
			c->req = NULL;
		}
		conn_free(c);
	}
	s->flush_list = NULL;
}
