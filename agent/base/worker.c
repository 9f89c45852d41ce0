#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "evloop.h"
#include "ramkey_err.h"
#include "strmap.h"
#include "worker.h"

#define WORKER_THREADS_MAX 16

enum task_state { T_QUEUED = 1, T_RUNNING, T_FINISHED };

struct worker_key {
	char *name;
	struct worker_task *head, *tail;
	bool busy;	/* one of its tasks is running */
	bool ready;	/* on the ready list */
	struct worker_key *ready_next;
};

struct worker_pool {
	struct evloop *loop;
	pthread_t threads[WORKER_THREADS_MAX];
	unsigned nthreads;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool stop;
	/* Under mu. */
	struct strmap *keys;
	struct worker_key *ready_head, *ready_tail;
	struct worker_task *finished;
	unsigned pending;
	int efd;
};

static void key_make_ready(struct worker_pool *p, struct worker_key *k)
{
	if (k->ready || k->busy || k->head == NULL)
		return;
	k->ready = true;
	k->ready_next = NULL;
	if (p->ready_tail != NULL)
		p->ready_tail->ready_next = k;
	else
		p->ready_head = k;
	p->ready_tail = k;
}

/* The pool's map of keys is keyed by each key's own name. */
static const char *worker_key_name(const void *v)
{
	return ((const struct worker_key *)v)->name;
}

/* A key with nothing queued or running is forgotten. */
static void key_maybe_drop(struct worker_pool *p, struct worker_key *k)
{
	if (k->busy || k->head != NULL || k->ready)
		return;
	strmap_del(p->keys, k->name);
	free(k->name);
	free(k);
}

static void *thread_main(void *arg)
{
	struct worker_pool *p = arg;
	uint64_t one = 1;

	pthread_mutex_lock(&p->mu);
	for (;;) {
		struct worker_key *k;
		struct worker_task *t;

		while (p->ready_head == NULL && !p->stop)
			pthread_cond_wait(&p->cv, &p->mu);
		if (p->stop)
			break;
		k = p->ready_head;
		p->ready_head = k->ready_next;
		if (p->ready_head == NULL)
			p->ready_tail = NULL;
		k->ready = false;
		t = k->head;
		k->head = t->next;
		if (k->head == NULL)
			k->tail = NULL;
		t->next = NULL;
		k->busy = true;
		t->state = T_RUNNING;
		pthread_mutex_unlock(&p->mu);
		t->run(t);
		pthread_mutex_lock(&p->mu);
		t->state = T_FINISHED;
		t->done_next = p->finished;
		p->finished = t;
		k->busy = false;
		t->key = NULL;
		key_make_ready(p, k);
		if (k->ready)
			pthread_cond_signal(&p->cv);
		else
			key_maybe_drop(p, k);
		if (write(p->efd, &one, sizeof(one)) < 0) {
			/* The counter cannot overflow here. */
		}
	}
	pthread_mutex_unlock(&p->mu);
	return NULL;
}

static void finish_on_loop(struct worker_task *t)
{
	struct worker_pool *p = t->pool;

	evloop_timer_cancel(p->loop, &t->deadline_timer);
	p->pending--;
	if (!t->answered) {
		t->answered = true;
		t->done(t, 0);
	}
	t->release(t);
}

static void on_efd(void *arg, int fd, uint32_t events)
{
	struct worker_pool *p = arg;
	struct worker_task *list, *t;
	uint64_t v;

	(void)events;
	while (read(fd, &v, sizeof(v)) < 0 && errno == EINTR)
		;
	pthread_mutex_lock(&p->mu);
	list = p->finished;
	p->finished = NULL;
	pthread_mutex_unlock(&p->mu);
	/* Oldest first. */
	{
		struct worker_task *rev = NULL;

		while (list != NULL) {
			t = list;
			list = t->done_next;
			t->done_next = rev;
			rev = t;
		}
		list = rev;
	}
	while ((t = list) != NULL) {
		list = t->done_next;
		t->done_next = NULL;
		finish_on_loop(t);
	}
}

/* Take a queued task out of its key's queue (under mu). */
static bool unqueue(struct worker_pool *p, struct worker_task *t)
{
	struct worker_key *k = t->key;
	struct worker_task **pp, *prev = NULL;

	if (t->state != T_QUEUED || k == NULL)
		return false;
	for (pp = &k->head; *pp != NULL; prev = *pp, pp = &(*pp)->next)
		if (*pp == t) {
			*pp = t->next;
			if (k->tail == t)
				k->tail = prev;
			break;
		}
	t->next = NULL;
	t->key = NULL;
	if (k->head == NULL && k->ready) {
		/* Drop it from the ready list too. */
		struct worker_key **kp;

		for (kp = &p->ready_head; *kp != NULL; kp = &(*kp)->ready_next)
			if (*kp == k) {
				*kp = k->ready_next;
				break;
			}
		p->ready_tail = NULL;
		for (struct worker_key *r = p->ready_head; r != NULL;
		    r = r->ready_next)
			p->ready_tail = r;
		k->ready = false;
	}
	key_maybe_drop(p, k);
	return true;
}

static void deadline_fired(void *arg)
{
	struct worker_task *t = arg;
	struct worker_pool *p = t->pool;
	bool was_queued;

	pthread_mutex_lock(&p->mu);
	was_queued = unqueue(p, t);
	pthread_mutex_unlock(&p->mu);
	if (!t->answered) {
		t->answered = true;
		t->done(t, RAMKEY_ERR_TIMEOUT);
	}
	if (was_queued) {
		p->pending--;
		t->release(t);
	}
	/* Running: released when the thread hands it back. */
}

int worker_submit(struct worker_pool *p, struct worker_task *t,
    const char *key, uint64_t deadline_ms, worker_run_fn run,
    worker_done_fn done, worker_release_fn release)
{
	struct worker_key *k;
	int r = 0;

	if (p == NULL || t == NULL || key == NULL || run == NULL ||
	    done == NULL || release == NULL)
		return RAMKEY_ERR_INVALID;
	memset(t, 0, sizeof(*t));
	t->pool = p;
	t->run = run;
	t->done = done;
	t->release = release;
	t->deadline = deadline_ms;
	ev_timer_init(&t->deadline_timer, deadline_fired, t);
	pthread_mutex_lock(&p->mu);
	if ((k = strmap_get(p->keys, key)) == NULL) {
		if ((k = calloc(1, sizeof(*k))) == NULL ||
		    (k->name = strdup(key)) == NULL ||
		    strmap_put(p->keys, k) != 0) {
			if (k != NULL)
				free(k->name);
			free(k);
			r = RAMKEY_ERR_NOMEM;
			goto out;
		}
	}
	t->key = k;
	t->state = T_QUEUED;
	if (k->tail != NULL)
		k->tail->next = t;
	else
		k->head = t;
	k->tail = t;
	key_make_ready(p, k);
	pthread_cond_signal(&p->cv);
	p->pending++;
out:
	pthread_mutex_unlock(&p->mu);
	if (r == 0 && deadline_ms != 0)
		(void)evloop_timer_arm(p->loop, &t->deadline_timer,
		    deadline_ms);
	return r;
}

void worker_cancel(struct worker_task *t)
{
	struct worker_pool *p;
	bool was_queued;

	if (t == NULL || t->pool == NULL)
		return;
	p = t->pool;
	evloop_timer_cancel(p->loop, &t->deadline_timer);
	t->answered = true;
	pthread_mutex_lock(&p->mu);
	was_queued = unqueue(p, t);
	pthread_mutex_unlock(&p->mu);
	if (was_queued) {
		p->pending--;
		t->release(t);
	}
}

unsigned worker_pool_pending(const struct worker_pool *p)
{
	return p != NULL ? p->pending : 0;
}

int worker_pool_new(struct evloop *loop, unsigned nthreads,
    struct worker_pool **ret)
{
	struct worker_pool *p;
	sigset_t all, old;
	unsigned i;
	int r = RAMKEY_ERR_NOMEM;

	*ret = NULL;
	if (loop == NULL || nthreads == 0 || nthreads > WORKER_THREADS_MAX)
		return RAMKEY_ERR_INVALID;
	if ((p = calloc(1, sizeof(*p))) == NULL)
		return RAMKEY_ERR_NOMEM;
	p->loop = loop;
	p->efd = -1;
	pthread_mutex_init(&p->mu, NULL);
	pthread_cond_init(&p->cv, NULL);
	if ((p->keys = strmap_new(worker_key_name)) == NULL)
		goto fail;
	r = RAMKEY_ERR_SYSTEM;
	if ((p->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) < 0)
		goto fail;
	if ((r = evloop_add(loop, p->efd, EPOLLIN, on_efd, p)) != 0)
		goto fail;
	/* Signals are the loop thread's business. */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	for (i = 0; i < nthreads; i++) {
		if (pthread_create(&p->threads[i], NULL, thread_main, p) != 0)
			break;
		p->nthreads++;
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (p->nthreads == 0) {
		r = RAMKEY_ERR_SYSTEM;
		goto fail;
	}
	*ret = p;
	return 0;
fail:
	worker_pool_free(p);
	return r;
}

static void release_queue(struct worker_task *t)
{
	while (t != NULL) {
		struct worker_task *next = t->next;

		evloop_timer_cancel(t->pool->loop, &t->deadline_timer);
		t->release(t);
		t = next;
	}
}

void worker_pool_free(struct worker_pool *p)
{
	struct strmap_iter it;
	struct worker_task *t;
	unsigned i;
	void *v;

	if (p == NULL)
		return;
	pthread_mutex_lock(&p->mu);
	p->stop = true;
	pthread_cond_broadcast(&p->cv);
	pthread_mutex_unlock(&p->mu);
	for (i = 0; i < p->nthreads; i++)
		pthread_join(p->threads[i], NULL);
	/* Finished tasks are released without their answer. */
	while ((t = p->finished) != NULL) {
		p->finished = t->done_next;
		evloop_timer_cancel(p->loop, &t->deadline_timer);
		t->release(t);
	}
	if (p->keys != NULL) {
		strmap_iter_init(&it);
		while (strmap_next(p->keys, &it, NULL, &v)) {
			struct worker_key *k = v;

			release_queue(k->head);
			free(k->name);
			free(k);
		}
		strmap_free(p->keys);
	}
	if (p->efd >= 0) {
		evloop_del(p->loop, p->efd);
		close(p->efd);
	}
	pthread_cond_destroy(&p->cv);
	pthread_mutex_destroy(&p->mu);
	free(p);
}
