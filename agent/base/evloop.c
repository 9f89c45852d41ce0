#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "evloop.h"
#include "ramkey_err.h"

#define MAX_EVENTS 128

struct io_slot {
	evloop_io_fn fn;
	void *arg;
	uint32_t gen; /* bumped on every add, to drop stale events */
	bool used;
};

struct hook {
	evloop_hook_fn fn;
	void *arg;
};

struct evloop {
	int epfd;
	struct io_slot *slots;
	size_t nslots;
	struct ev_timer **heap;
	size_t nheap, heap_cap;
	uint64_t timer_seq;
	struct hook *hooks;
	size_t nhooks;
	bool stop;
	bool wake;
};

uint64_t evloop_now(void)
{
	return clock_mono_ms();
}

int evloop_new(struct evloop **ret)
{
	struct evloop *loop;

	*ret = NULL;
	if ((loop = calloc(1, sizeof(*loop))) == NULL)
		return RAMKEY_ERR_NOMEM;
	if ((loop->epfd = epoll_create1(EPOLL_CLOEXEC)) == -1) {
		free(loop);
		return RAMKEY_ERR_SYSTEM;
	}
	*ret = loop;
	return 0;
}

void evloop_free(struct evloop *loop)
{
	size_t i;

	if (loop == NULL)
		return;
	for (i = 0; i < loop->nheap; i++)
		loop->heap[i]->heap_idx = 0;
	close(loop->epfd);
	free(loop->slots);
	free(loop->heap);
	free(loop->hooks);
	free(loop);
}

static int grow_slots(struct evloop *loop, int fd)
{
	size_t n = loop->nslots ? loop->nslots : 64;
	struct io_slot *s;

	while (n <= (size_t)fd)
		n *= 2;
	if (n == loop->nslots)
		return 0;
	if ((s = realloc(loop->slots, n * sizeof(*s))) == NULL)
		return RAMKEY_ERR_NOMEM;
	memset(s + loop->nslots, 0, (n - loop->nslots) * sizeof(*s));
	loop->slots = s;
	loop->nslots = n;
	return 0;
}

int evloop_add(struct evloop *loop, int fd, uint32_t events, evloop_io_fn fn,
    void *arg)
{
	struct epoll_event ev;
	struct io_slot *s;
	int r;

	if (fd < 0 || fn == NULL)
		return RAMKEY_ERR_INVALID;
	if ((size_t)fd >= loop->nslots && (r = grow_slots(loop, fd)) != 0)
		return r;
	s = &loop->slots[fd];
	if (s->used)
		return RAMKEY_ERR_INVALID;
	s->gen++;
	memset(&ev, 0, sizeof(ev));
	ev.events = events;
	ev.data.u64 = ((uint64_t)s->gen << 32) | (uint32_t)fd;
	if (epoll_ctl(loop->epfd, EPOLL_CTL_ADD, fd, &ev) == -1)
		return RAMKEY_ERR_SYSTEM;
	s->fn = fn;
	s->arg = arg;
	s->used = true;
	return 0;
}

int evloop_mod(struct evloop *loop, int fd, uint32_t events)
{
	struct epoll_event ev;

	if (fd < 0 || (size_t)fd >= loop->nslots || !loop->slots[fd].used)
		return RAMKEY_ERR_INVALID;
	memset(&ev, 0, sizeof(ev));
	ev.events = events;
	ev.data.u64 = ((uint64_t)loop->slots[fd].gen << 32) | (uint32_t)fd;
	if (epoll_ctl(loop->epfd, EPOLL_CTL_MOD, fd, &ev) == -1)
		return RAMKEY_ERR_SYSTEM;
	return 0;
}

void evloop_del(struct evloop *loop, int fd)
{
	if (fd < 0 || (size_t)fd >= loop->nslots || !loop->slots[fd].used)
		return;
	/* Fails harmlessly if the fd was already closed. */
	(void)epoll_ctl(loop->epfd, EPOLL_CTL_DEL, fd, NULL);
	loop->slots[fd].used = false;
	loop->slots[fd].fn = NULL;
	loop->slots[fd].arg = NULL;
	loop->slots[fd].gen++;
}

/* Timer heap. heap_idx is 1-based so that 0 means "not armed". */

static bool timer_less(const struct ev_timer *a, const struct ev_timer *b)
{
	if (a->deadline != b->deadline)
		return a->deadline < b->deadline;
	return a->seq < b->seq;
}

static void heap_set(struct evloop *loop, size_t i, struct ev_timer *t)
{
	loop->heap[i] = t;
	t->heap_idx = i + 1;
}

static void heap_up(struct evloop *loop, size_t i)
{
	struct ev_timer *t = loop->heap[i];

	while (i > 0) {
		size_t p = (i - 1) / 2;
		if (!timer_less(t, loop->heap[p]))
			break;
		heap_set(loop, i, loop->heap[p]);
		i = p;
	}
	heap_set(loop, i, t);
}

static void heap_down(struct evloop *loop, size_t i)
{
	struct ev_timer *t = loop->heap[i];

	for (;;) {
		size_t l = 2 * i + 1, r = l + 1, m = i;
		const struct ev_timer *best = t;

		if (l < loop->nheap && timer_less(loop->heap[l], best)) {
			m = l;
			best = loop->heap[l];
		}
		if (r < loop->nheap && timer_less(loop->heap[r], best))
			m = r;
		if (m == i)
			break;
		heap_set(loop, i, loop->heap[m]);
		i = m;
	}
	heap_set(loop, i, t);
}

static void heap_remove(struct evloop *loop, struct ev_timer *t)
{
	size_t i = t->heap_idx - 1;
	struct ev_timer *last;

	t->heap_idx = 0;
	last = loop->heap[--loop->nheap];
	if (i == loop->nheap)
		return;
	heap_set(loop, i, last);
	heap_up(loop, i);
	heap_down(loop, last->heap_idx - 1);
}

void ev_timer_init(struct ev_timer *t, evloop_timer_fn fn, void *arg)
{
	memset(t, 0, sizeof(*t));
	t->fn = fn;
	t->arg = arg;
}

bool ev_timer_armed(const struct ev_timer *t)
{
	return t->heap_idx != 0;
}

int evloop_timer_arm(struct evloop *loop, struct ev_timer *t,
    uint64_t deadline_ms)
{
	if (t->heap_idx != 0)
		heap_remove(loop, t);
	if (loop->nheap == loop->heap_cap) {
		size_t n = loop->heap_cap ? loop->heap_cap * 2 : 64;
		struct ev_timer **h = realloc(loop->heap, n * sizeof(*h));

		if (h == NULL)
			return RAMKEY_ERR_NOMEM;
		loop->heap = h;
		loop->heap_cap = n;
	}
	t->deadline = deadline_ms;
	t->seq = ++loop->timer_seq;
	loop->heap[loop->nheap] = t;
	t->heap_idx = ++loop->nheap;
	heap_up(loop, loop->nheap - 1);
	return 0;
}

void evloop_timer_cancel(struct evloop *loop, struct ev_timer *t)
{
	if (t != NULL && t->heap_idx != 0)
		heap_remove(loop, t);
}

int evloop_add_prepare(struct evloop *loop, evloop_hook_fn fn, void *arg)
{
	struct hook *h;

	h = realloc(loop->hooks, (loop->nhooks + 1) * sizeof(*h));
	if (h == NULL)
		return RAMKEY_ERR_NOMEM;
	loop->hooks = h;
	h[loop->nhooks].fn = fn;
	h[loop->nhooks].arg = arg;
	loop->nhooks++;
	return 0;
}

void evloop_wake(struct evloop *loop)
{
	loop->wake = true;
}

static void run_timers(struct evloop *loop)
{
	uint64_t now = evloop_now();
	/* Timers armed by callbacks for "now" wait for the next round. */
	uint64_t limit = loop->timer_seq;

	while (loop->nheap > 0 && loop->heap[0]->deadline <= now &&
	    !loop->stop) {
		struct ev_timer *t = loop->heap[0];

		if (t->seq > limit)
			break;
		heap_remove(loop, t);
		t->fn(t->arg);
	}
}

int evloop_run_once(struct evloop *loop, int max_wait_ms)
{
	struct epoll_event evs[MAX_EVENTS];
	int timeout = max_wait_ms, n, i;
	size_t h;

	for (h = 0; h < loop->nhooks; h++)
		loop->hooks[h].fn(loop->hooks[h].arg);
	if (loop->nheap > 0) {
		uint64_t now = evloop_now(), d = loop->heap[0]->deadline;
		int t = d <= now ? 0 :
		    (d - now > 60000 ? 60000 : (int)(d - now));

		if (timeout < 0 || t < timeout)
			timeout = t;
	}
	if (loop->wake || loop->stop) {
		timeout = 0;
		loop->wake = false;
	}
	n = epoll_wait(loop->epfd, evs, MAX_EVENTS, timeout);
	if (n == -1) {
		if (errno != EINTR)
			return RAMKEY_ERR_SYSTEM;
		n = 0;
	}
	for (i = 0; i < n && !loop->stop; i++) {
		int fd = (int)(uint32_t)evs[i].data.u64;
		uint32_t gen = (uint32_t)(evs[i].data.u64 >> 32);
		struct io_slot *s;

		if ((size_t)fd >= loop->nslots)
			continue;
		s = &loop->slots[fd];
		if (!s->used || s->gen != gen)
			continue;
		s->fn(s->arg, fd, evs[i].events);
	}
	run_timers(loop);
	return 0;
}

int evloop_run(struct evloop *loop)
{
	int r;

	loop->stop = false;
	while (!loop->stop)
		if ((r = evloop_run_once(loop, -1)) != 0)
			return r;
	return 0;
}

void evloop_stop(struct evloop *loop)
{
	loop->stop = true;
}

bool evloop_stopped(const struct evloop *loop)
{
	return loop->stop;
}
