#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "curl_loop.h"
#include "ramkey_err.h"

static int fd_track(struct curl_loop *cl, int fd, bool on)
{
	if (fd < 0)
		return RAMKEY_ERR_INVALID;
	if ((size_t)fd >= cl->nfds) {
		size_t n = cl->nfds ? cl->nfds : 64;
		unsigned char *p;

		if (!on)
			return 0;
		while (n <= (size_t)fd)
			n *= 2;
		if ((p = realloc(cl->fds, n)) == NULL)
			return RAMKEY_ERR_NOMEM;
		memset(p + cl->nfds, 0, n - cl->nfds);
		cl->fds = p;
		cl->nfds = n;
	}
	cl->fds[fd] = on;
	return 0;
}

static bool fd_tracked(const struct curl_loop *cl, int fd)
{
	return fd >= 0 && (size_t)fd < cl->nfds && cl->fds[fd];
}

static void on_io(void *arg, int fd, uint32_t events)
{
	struct curl_loop *cl = arg;
	int flags = 0;

	if (events & (EPOLLIN | EPOLLHUP | EPOLLRDHUP))
		flags |= CURL_CSELECT_IN;
	if (events & EPOLLOUT)
		flags |= CURL_CSELECT_OUT;
	if (events & EPOLLERR)
		flags |= CURL_CSELECT_ERR;
	cl->action(cl->owner, fd, flags);
}

static void on_timer(void *arg)
{
	struct curl_loop *cl = arg;

	cl->action(cl->owner, CURL_SOCKET_TIMEOUT, 0);
}

static int socket_cb(CURL *e, curl_socket_t s, int what, void *userp,
    void *socketp)
{
	struct curl_loop *cl = userp;
	uint32_t ev = 0;

	(void)e;
	(void)socketp;
	if (what == CURL_POLL_REMOVE) {
		if (fd_tracked(cl, s)) {
			evloop_del(cl->loop, s);
			fd_track(cl, s, false);
		}
		return 0;
	}
	if (what & CURL_POLL_IN)
		ev |= EPOLLIN;
	if (what & CURL_POLL_OUT)
		ev |= EPOLLOUT;
	if (fd_tracked(cl, s)) {
		if (evloop_mod(cl->loop, s, ev) == 0)
			return 0;
		/* A stale registration (the number was closed and reused
		 * without a REMOVE): start afresh. */
		evloop_del(cl->loop, s);
		fd_track(cl, s, false);
	}
	if (fd_track(cl, s, true) != 0)
		return -1;
	if (evloop_add(cl->loop, s, ev, on_io, cl) != 0) {
		fd_track(cl, s, false);
		return -1;
	}
	return 0;
}

static int timer_cb(CURLM *m, long timeout_ms, void *userp)
{
	struct curl_loop *cl = userp;

	(void)m;
	if (timeout_ms < 0) {
		evloop_timer_cancel(cl->loop, &cl->timer);
		return 0;
	}
	return evloop_timer_arm(cl->loop, &cl->timer,
	    evloop_now() + (uint64_t)timeout_ms) == 0 ? 0 : -1;
}

void curl_loop_drive(struct curl_loop *cl, curl_socket_t fd, int flags,
    const bool *stop)
{
	CURLMsg *m;
	int running = 0, q;

	curl_multi_socket_action(cl->multi, fd, flags, &running);
	while (!*stop && (m = curl_multi_info_read(cl->multi, &q)) != NULL) {
		char *priv = NULL;

		if (m->msg != CURLMSG_DONE)
			continue;
		curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, &priv);
		if (priv != NULL)
			cl->done(cl->owner, priv, m->easy_handle,
			    m->data.result);
	}
}

int curl_loop_init(struct curl_loop *cl, struct evloop *loop, CURLM *multi,
    curl_loop_action_fn action, curl_loop_done_fn done, void *owner)
{
	memset(cl, 0, sizeof(*cl));
	cl->loop = loop;
	cl->multi = multi;
	cl->action = action;
	cl->done = done;
	cl->owner = owner;
	ev_timer_init(&cl->timer, on_timer, cl);
	if (curl_multi_setopt(multi, CURLMOPT_SOCKETFUNCTION, socket_cb) !=
	    CURLM_OK ||
	    curl_multi_setopt(multi, CURLMOPT_SOCKETDATA, cl) != CURLM_OK ||
	    curl_multi_setopt(multi, CURLMOPT_TIMERFUNCTION, timer_cb) !=
	    CURLM_OK ||
	    curl_multi_setopt(multi, CURLMOPT_TIMERDATA, cl) != CURLM_OK)
		return RAMKEY_ERR_INTERNAL;
	return 0;
}

void curl_loop_cleanup(struct curl_loop *cl)
{
	size_t fd;

	if (cl->loop == NULL)
		return;
	evloop_timer_cancel(cl->loop, &cl->timer);
	/* Whatever libcurl did not report removed. */
	for (fd = 0; fd < cl->nfds; fd++)
		if (cl->fds[fd])
			evloop_del(cl->loop, (int)fd);
	free(cl->fds);
	cl->fds = NULL;
	cl->nfds = 0;
}

curl_socket_t curl_loop_open_socket(void *clientp, curlsocktype purpose,
    struct curl_sockaddr *a)
{
	int fd;

	(void)clientp;
	(void)purpose;
	fd = socket(a->family, a->socktype | SOCK_CLOEXEC, a->protocol);
	return fd == -1 ? CURL_SOCKET_BAD : fd;
}
