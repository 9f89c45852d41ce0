/*
 * A small pool of threads for work that may block: user and group
 * lookups (NSS can be a slow directory service), and file effects in
 * users' directories. The event loop never waits on any of it.
 *
 * Fairness: every task is queued under a key (the local user it concerns,
 * or the calling uid). Tasks of one key run one at a time, in order; keys
 * with work take turns. One user whose lookups hang therefore holds at
 * most one thread, and everyone else's tasks go on.
 *
 * Deadlines: a task whose deadline passes (queued or running) is answered
 * at the deadline with RAMKEY_ERR_TIMEOUT; if it was running, the thread
 * finishes it in its own time and the result is dropped.
 *
 * Lifetime: the caller embeds struct worker_task in its own allocation.
 * done() runs once on the loop (unless cancelled); release() runs once on
 * the loop after done() (or the cancel) and after the thread is finished
 * with the task: free the allocation there, not in done().
 */
#ifndef RAMKEY_WORKER_H
#define RAMKEY_WORKER_H

#include <stdbool.h>
#include <stdint.h>

#include "evloop.h"

struct evloop;
struct worker_pool;
struct worker_task;

/* On a worker thread. Must not touch loop-thread state. */
typedef void (*worker_run_fn)(struct worker_task *t);
/* On the loop: rc 0 (run() finished) or RAMKEY_ERR_TIMEOUT. */
typedef void (*worker_done_fn)(struct worker_task *t, int rc);
/* On the loop, last: the pool is done with t. */
typedef void (*worker_release_fn)(struct worker_task *t);

struct worker_key;

struct worker_task {
	/* Private to the pool. */
	struct worker_pool *pool;
	struct worker_task *next;	/* in its key's queue */
	struct worker_key *key;
	worker_run_fn run;
	worker_done_fn done;
	worker_release_fn release;
	uint64_t deadline;
	int state;
	bool answered;			/* done() ran, or cancelled */
	struct worker_task *done_next;	/* finished, waiting for the loop */
	struct ev_timer deadline_timer;
};

/* nthreads: 1..16. */
int worker_pool_new(struct evloop *loop, unsigned nthreads,
    struct worker_pool **ret);
/* Waits for running tasks; queued ones are released without done(). */
void worker_pool_free(struct worker_pool *p);

/*
 * Queue t under key (copied). deadline_ms: monotonic, 0 = none. On
 * failure (RAMKEY_ERR_NOMEM, RAMKEY_ERR_INVALID) nothing is called back.
 */
int worker_submit(struct worker_pool *p, struct worker_task *t,
    const char *key, uint64_t deadline_ms, worker_run_fn run,
    worker_done_fn done, worker_release_fn release);

/* The caller no longer wants the answer: done() will not run; release()
 * still will (maybe from inside this call, if nothing runs t). */
void worker_cancel(struct worker_task *t);

/* Tasks queued or running (for status and tests). */
unsigned worker_pool_pending(const struct worker_pool *p);

#endif
