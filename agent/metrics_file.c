#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "evloop.h"
#include "log.h"
#include "metrics.h"
#include "metrics_file.h"
#include "ramkey_err.h"
#include "worker.h"

/* A write that takes longer (a hung filesystem) is given up on; the next
 * one starts when the thread is free again. */
#define WRITE_DEADLINE_MS 30000

struct metrics_file;

/* One write, self-contained: it may outlive its metrics_file. */
struct write_task {
	struct worker_task task; /* first: the pool's part */
	struct metrics_file *mf; /* NULL once the owner is gone */
	char *path;
	char *text;
	size_t len;
	int rc;
	char why[256];
};

struct metrics_file {
	struct evloop *loop;
	struct worker_pool *workers;
	struct metrics *m;
	char *path;
	uint64_t interval_ms;
	struct ev_timer timer;
	struct write_task *inflight;
	bool failing;		/* the last write failed (logged once) */
};

int metrics_file_write(const char *path, const char *text, size_t len,
    char *why, size_t whylen)
{
	const char *slash = strrchr(path, '/');
	char *tmp = NULL;
	size_t off = 0;
	int fd = -1, r = RAMKEY_ERR_IO;

	why[0] = '\0';
	if (slash == NULL || slash[1] == '\0') {
		snprintf(why, whylen, "not a file path");
		return RAMKEY_ERR_INVALID;
	}
	if (asprintf(&tmp, "%.*s/.%s.XXXXXX", (int)(slash - path), path,
	    slash + 1) < 0) {
		tmp = NULL;
		snprintf(why, whylen, "out of memory");
		return RAMKEY_ERR_NOMEM;
	}
	if ((fd = mkostemp(tmp, O_CLOEXEC)) < 0) {
		snprintf(why, whylen, "cannot create a file in its directory: "
		    "%s", strerror(errno));
		free(tmp);
		return RAMKEY_ERR_IO;
	}
	while (off < len) {
		ssize_t n = write(fd, text + off, len - off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			snprintf(why, whylen, "write: %s", n < 0 ?
			    strerror(errno) : "no progress");
			goto out;
		}
		off += (size_t)n;
	}
	/* Readable by the collector, whoever it runs as; the agent's umask
	 * is 0077. */
	if (fchmod(fd, 0644) != 0) {
		snprintf(why, whylen, "chmod: %s", strerror(errno));
		goto out;
	}
	if (fsync(fd) != 0) {
		snprintf(why, whylen, "fsync: %s", strerror(errno));
		goto out;
	}
	if (close(fd) != 0) {
		fd = -1;
		snprintf(why, whylen, "close: %s", strerror(errno));
		goto out;
	}
	fd = -1;
	if (rename(tmp, path) != 0) {
		snprintf(why, whylen, "rename: %s", strerror(errno));
		goto out;
	}
	r = 0;
out:
	if (fd >= 0)
		close(fd);
	if (r != 0)
		(void)unlink(tmp);
	free(tmp);
	return r;
}

static void task_run(struct worker_task *t)
{
	struct write_task *w = (struct write_task *)t;

	w->rc = metrics_file_write(w->path, w->text, w->len, w->why,
	    sizeof(w->why));
}

static void task_done(struct worker_task *t, int rc)
{
	struct write_task *w = (struct write_task *)t;
	struct metrics_file *mf = w->mf;

	if (mf == NULL)
		return;
	mf->inflight = NULL;
	w->mf = NULL;
	if (rc == 0)
		rc = w->rc;
	if (rc != 0 && !mf->failing)
		log_warn("metrics_file %s: %s; retrying every interval",
		    w->path, rc == RAMKEY_ERR_TIMEOUT ? "writing it took "
		    "too long" : w->why);
	else if (rc == 0 && mf->failing)
		log_info("metrics_file %s: written again", w->path);
	mf->failing = rc != 0;
}

static void task_release(struct worker_task *t)
{
	struct write_task *w = (struct write_task *)t;

	if (w->mf != NULL)
		w->mf->inflight = NULL;
	free(w->path);
	free(w->text);
	free(w);
}

static void tick(void *arg)
{
	struct metrics_file *mf = arg;
	struct write_task *w = NULL;

	if (mf->path == NULL)
		return;
	(void)evloop_timer_arm(mf->loop, &mf->timer,
	    evloop_now() + mf->interval_ms);
	/* A slow disk: skip this round rather than queue writes up. */
	if (mf->inflight != NULL)
		return;
	if ((w = calloc(1, sizeof(*w))) == NULL ||
	    (w->path = strdup(mf->path)) == NULL ||
	    metrics_render(mf->m, &w->text, &w->len) != 0) {
		log_err("metrics_file %s: out of memory", mf->path);
		goto fail;
	}
	w->mf = mf;
	if (worker_submit(mf->workers, &w->task, "metrics_file",
	    evloop_now() + WRITE_DEADLINE_MS, task_run, task_done,
	    task_release) != 0) {
		log_err("metrics_file %s: cannot queue the write", mf->path);
		goto fail;
	}
	mf->inflight = w;
	return;
fail:
	if (w != NULL) {
		w->mf = NULL;
		task_release(&w->task);
	}
}

int metrics_file_new(struct evloop *loop, struct worker_pool *workers,
    struct metrics *m, struct metrics_file **ret)
{
	struct metrics_file *mf;

	*ret = NULL;
	if ((mf = calloc(1, sizeof(*mf))) == NULL)
		return RAMKEY_ERR_NOMEM;
	mf->loop = loop;
	mf->workers = workers;
	mf->m = m;
	ev_timer_init(&mf->timer, tick, mf);
	*ret = mf;
	return 0;
}

int metrics_file_configure(struct metrics_file *mf, const char *path,
    uint64_t interval_s)
{
	char *p = NULL;

	if (path != NULL && (p = strdup(path)) == NULL)
		return RAMKEY_ERR_NOMEM;
	if (mf->path == NULL || p == NULL || strcmp(mf->path, p) != 0)
		mf->failing = false;
	free(mf->path);
	mf->path = p;
	mf->interval_ms = (interval_s > 0 ? interval_s : 1) * 1000;
	if (p == NULL) {
		evloop_timer_cancel(mf->loop, &mf->timer);
		return 0;
	}
	return evloop_timer_arm(mf->loop, &mf->timer, evloop_now());
}

void metrics_file_free(struct metrics_file *mf)
{
	if (mf == NULL)
		return;
	evloop_timer_cancel(mf->loop, &mf->timer);
	if (mf->inflight != NULL) {
		struct write_task *w = mf->inflight;

		/* The write finishes on its thread; release() frees it. */
		mf->inflight = NULL;
		w->mf = NULL;
		worker_cancel(&w->task);
	}
	free(mf->path);
	free(mf);
}
