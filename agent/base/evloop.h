/*
 * A small single-threaded event loop: epoll for file descriptors, a binary
 * heap of monotonic-clock timers, and "prepare" hooks that run once per
 * iteration before the loop sleeps (the agent commits its store and flushes
 * replies there, so a reply never goes out before its record is durable).
 */
#ifndef RAMKEY_EVLOOP_H
#define RAMKEY_EVLOOP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/epoll.h> /* EPOLLIN, EPOLLOUT... for evloop_add() */

struct evloop;

typedef void (*evloop_io_fn)(void *arg, int fd, uint32_t events);
typedef void (*evloop_timer_fn)(void *arg);
typedef void (*evloop_hook_fn)(void *arg);

/* Embedded in its owner; no allocation. Zero it or ev_timer_init() it. */
struct ev_timer {
	uint64_t deadline; /* CLOCK_MONOTONIC milliseconds */
	uint64_t seq;	   /* FIFO order among equal deadlines */
	size_t heap_idx;   /* 0 = not armed; else index + 1 */
	evloop_timer_fn fn;
	void *arg;
};

/* Milliseconds on CLOCK_MONOTONIC. */
uint64_t evloop_now(void);

int evloop_new(struct evloop **ret);
void evloop_free(struct evloop *loop);

/* Watch fd for events (EPOLLIN, EPOLLOUT...). One registration per fd. */
int evloop_add(struct evloop *loop, int fd, uint32_t events, evloop_io_fn fn,
    void *arg);
int evloop_mod(struct evloop *loop, int fd, uint32_t events);
/* Stop watching fd; pending events for it in this iteration are dropped. */
void evloop_del(struct evloop *loop, int fd);

void ev_timer_init(struct ev_timer *t, evloop_timer_fn fn, void *arg);
/* Arm (or re-arm) t to fire once at the monotonic time deadline_ms. */
int evloop_timer_arm(struct evloop *loop, struct ev_timer *t,
    uint64_t deadline_ms);
void evloop_timer_cancel(struct evloop *loop, struct ev_timer *t);
bool ev_timer_armed(const struct ev_timer *t);

/* Hooks run in registration order before every wait. */
int evloop_add_prepare(struct evloop *loop, evloop_hook_fn fn, void *arg);

/*
 * Run one iteration: prepare hooks, wait at most max_wait_ms (or until the
 * next timer; -1 = no limit), dispatch I/O, then run due timers.
 * Returns 0, or RAMKEY_ERR_SYSTEM if epoll_wait failed (not for EINTR).
 */
int evloop_run_once(struct evloop *loop, int max_wait_ms);

/* Iterate until evloop_stop() is called. */
int evloop_run(struct evloop *loop);
void evloop_stop(struct evloop *loop);
bool evloop_stopped(const struct evloop *loop);

/* Ask the loop not to sleep in its next wait (work was queued by a hook). */
void evloop_wake(struct evloop *loop);

#endif
