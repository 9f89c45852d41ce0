/*
 * PGP-encrypted secrets: the agent's side (pgp.h). Everything here runs
 * on the loop thread.
 *
 * A job moves: fetching (Keybase, through the fetcher) -> queued (in its
 * owner's queue) -> running (in a helper process) -> done -> callback.
 * Results, including those known at once, are delivered from the loop
 * through an eventfd, so callbacks never run inside pgp_key_prepare() or
 * pgp_encrypt().
 *
 * The queue: one FIFO per owner (the user the key is for) and a ring of
 * owners that have a job waiting and none running. pump() starts the job
 * at the head of the first owner of the ring whenever fewer than
 * helpers_max helpers run; the owner leaves the ring while its job runs
 * and rejoins at the tail if it has more.
 *
 * A helper: posix_spawn() of ramkey-pgp-helper (a fresh exec, never a
 * fork that keeps the agent's memory) with a new empty GnuPG home
 * (mkdtemp, 0700, under $TMPDIR or /tmp) as its argument, the request pipe
 * on its standard input, the reply pipe on its standard output, /dev/null
 * on standard error, every other descriptor closed, a minimal environment,
 * all signals at their defaults and unblocked, and a process group of its
 * own. The loop writes the request (the secret straight from its locked
 * copy, wiped once written), reads the reply, and learns of the exit from
 * a pidfd (or, on kernels without pidfds, polls waitpid(WNOHANG) once the
 * reply pipe is at its end). Before reaping, it kills whatever is left of
 * the process group. Past the deadline it kills the group at once. It
 * then removes the home (the helper has emptied it, unless it was killed)
 * and delivers the result.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "evloop.h"
#include "pgp.h"
#include "pgp_spec.h"
#include "pgp_wire.h"
#include "ramkey_err.h"
#include "rmtree.h"
#include "strmap.h"
#include "util.h"

#define WHY_MAX PGP_WIRE_WHY_MAX
#define FPR_LEN PGP_WIRE_FPR_LEN
#define HOME_PREFIX "ramkey-gpg-"
#define HELPERS_MAX 16
/* Without pidfds: how often to look for the helper's exit. */
#define REAP_POLL_MS 10

#define WHY_NOT_A_KEY "not an OpenPGP public key"

struct pgp_key {
	char fpr[FPR_LEN + 1];
	uint8_t *data; /* the key, binary, minimal export */
	size_t len;
};

enum job_kind { JOB_PREPARE, JOB_ENCRYPT };

enum job_state {
	JS_NEW,
	JS_FETCH,    /* Keybase lookup in flight */
	JS_QUEUED,   /* in its owner's queue */
	JS_RUNNING,  /* in a helper */
	JS_DONE,     /* result waiting for delivery */
	JS_CALLBACK, /* being delivered */
};

struct job_list {
	struct pgp_job *head, *tail;
};

struct owner;
struct helper;

struct pgp_job {
	struct pgp_worker *w;
	struct pgp_job *prev, *next;
	enum job_kind kind;
	enum job_state state;
	char *owner_name;
	struct owner *owner;   /* while queued */
	struct helper *helper; /* while running */
	pgp_key_fn key_fn;
	pgp_encrypt_fn enc_fn;
	void *arg;
	void *fetch; /* Keybase lookup in flight */
	/* Input. */
	uint8_t *data; /* key material */
	size_t len;
	char fpr[FPR_LEN + 1]; /* encrypt: the validated key's */
	unsigned char *secret; /* encrypt: sodium_malloc */
	size_t secret_len;
	/* Output. */
	int rc;
	char why[WHY_MAX];
	struct pgp_key *key;
	char *b64;
};

/* The jobs of one user. */
struct owner {
	char *name;
	struct job_list queue;
	bool running; /* a helper of its own is alive */
	bool ready;   /* in the ring */
	struct owner *ready_next;
};

struct helper {
	struct pgp_worker *w;
	struct helper *prev, *next;
	struct pgp_job *job; /* NULL: the probe, or cancelled */
	struct owner *owner;
	pid_t pid;
	int pidfd, in_fd, out_fd;
	char *home;
	/* The request being written. */
	uint8_t head[PGP_WIRE_LEN_SIZE + PGP_WIRE_REQ_HDR];
	struct iovec iov[3];
	int iovcnt, iovidx;
	/* The reply being read. */
	uint8_t *rbuf;
	size_t rlen, rneed;
	bool reply_done; /* complete, or at its end */
	bool reaped;
	int status;
	bool deadline_passed;
	struct ev_timer deadline;
	struct ev_timer reap_poll;
};

struct pgp_worker {
	struct evloop *loop;
	struct pgp_fetcher fetcher;
	char *helper_path;
	char *tmpdir;
	unsigned helpers_max;
	unsigned deadline_ms;
	const char *unavailable; /* NULL, or unavailable_buf */
	char unavailable_buf[WHY_MAX];
	/* What the last helper reported. */
	unsigned confinement;
	unsigned landlock_abi;
	char lacking[WHY_MAX];
	int efd;
	struct strmap *owners;
	struct owner *ready_head, *ready_tail;
	struct job_list fetching, done;
	struct helper *helpers;
	unsigned nhelpers;
	unsigned queued;
	unsigned busy; /* > 0 while delivering; free is deferred */
	bool dying;
};

/* --- Job lists --- */

static void list_push(struct job_list *l, struct pgp_job *job)
{
	job->next = NULL;
	job->prev = l->tail;
	if (l->tail != NULL)
		l->tail->next = job;
	else
		l->head = job;
	l->tail = job;
}

static void list_remove(struct job_list *l, struct pgp_job *job)
{
	/* The head first: removing it always moves the head. */
	if (l->head == job)
		l->head = job->next;
	else if (job->prev != NULL)
		job->prev->next = job->next;
	if (job->next != NULL)
		job->next->prev = job->prev;
	else
		l->tail = job->prev;
	job->prev = job->next = NULL;
}

static struct pgp_job *list_pop(struct job_list *l)
{
	struct pgp_job *job = l->head;

	if (job != NULL)
		list_remove(l, job);
	return job;
}

/* --- Small helpers --- */

static void set_why(char *why, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void set_why(char *why, const char *fmt, ...)
{
	va_list ap;
	char *p;

	va_start(ap, fmt);
	vsnprintf(why, WHY_MAX, fmt, ap);
	va_end(ap);
	/* one line, printable */
	for (p = why; *p != '\0'; p++)
		if ((unsigned char)*p < 0x20 || (unsigned char)*p == 0x7f)
			*p = ' ';
}

static bool is_dir(const char *path)
{
	struct stat st;

	return path != NULL && stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static void close_fd(struct pgp_worker *w, int *fd)
{
	if (*fd < 0)
		return;
	if (w != NULL)
		evloop_del(w->loop, *fd);
	close(*fd);
	*fd = -1;
}

void pgp_key_free(struct pgp_key *key)
{
	if (key == NULL)
		return;
	free(key->data);
	free(key);
}

const char *pgp_key_fingerprint(const struct pgp_key *key)
{
	return key != NULL ? key->fpr : NULL;
}

/* --- Jobs --- */

static void job_wipe_secret(struct pgp_job *job)
{
	if (job->secret != NULL)
		sodium_free(job->secret);
	job->secret = NULL;
	job->secret_len = 0;
}

static void job_free(struct pgp_job *job)
{
	if (job == NULL)
		return;
	if (job->fetch != NULL)
		job->w->fetcher.cancel(job->w->fetcher.ctx, job->fetch);
	free(job->data);
	job_wipe_secret(job);
	pgp_key_free(job->key);
	free(job->b64);
	free(job->owner_name);
	free(job);
}

static struct pgp_job *job_new(struct pgp_worker *w, enum job_kind kind,
    const char *owner)
{
	struct pgp_job *job = calloc(1, sizeof(*job));

	if (job == NULL)
		return NULL;
	job->w = w;
	job->kind = kind;
	if ((job->owner_name = strdup(owner != NULL ? owner : "")) == NULL) {
		free(job);
		return NULL;
	}
	return job;
}

static void signal_loop(struct pgp_worker *w)
{
	uint64_t one = 1;

	/* EAGAIN: the counter is already non-zero; the loop will look. */
	while (write(w->efd, &one, sizeof(one)) < 0 && errno == EINTR)
		;
}

/* The job's result is known: deliver it from the loop. */
static void job_done(struct pgp_job *job)
{
	struct pgp_worker *w = job->w;

	job_wipe_secret(job);
	job->state = JS_DONE;
	list_push(&w->done, job);
	signal_loop(w);
}

static void job_finish(struct pgp_job *job, int rc, const char *why)
{
	job->rc = rc;
	set_why(job->why, "%s", why);
	job_done(job);
}

/* --- Owners and the ring --- */

static void owner_make_ready(struct pgp_worker *w, struct owner *o)
{
	if (o->ready || o->running || o->queue.head == NULL)
		return;
	o->ready = true;
	o->ready_next = NULL;
	if (w->ready_tail != NULL)
		w->ready_tail->ready_next = o;
	else
		w->ready_head = o;
	w->ready_tail = o;
}

/* Back in the ring if it has more, forgotten if it has nothing. */
static void owner_settle(struct pgp_worker *w, struct owner *o)
{
	owner_make_ready(w, o);
	if (o->running || o->ready || o->queue.head != NULL)
		return;
	strmap_del(w->owners, o->name);
	free(o->name);
	free(o);
}

static void owner_unready(struct pgp_worker *w, struct owner *o)
{
	struct owner **pp, *prev = NULL;

	if (!o->ready)
		return;
	for (pp = &w->ready_head; *pp != NULL; pp = &(*pp)->ready_next) {
		if (*pp == o) {
			*pp = o->ready_next;
			if (w->ready_tail == o)
				w->ready_tail = prev;
			break;
		}
		prev = *pp;
	}
	o->ready = false;
	o->ready_next = NULL;
}

static const char *owner_name(const void *value)
{
	return ((const struct owner *)value)->name;
}

static struct owner *owner_get(struct pgp_worker *w, const char *name)
{
	struct owner *o = strmap_get(w->owners, name);

	if (o != NULL)
		return o;
	if ((o = calloc(1, sizeof(*o))) == NULL)
		return NULL;
	if ((o->name = strdup(name)) == NULL ||
	    strmap_put(w->owners, o) != 0) {
		free(o->name);
		free(o);
		return NULL;
	}
	return o;
}

/* --- Helpers: starting --- */

static int sys_pidfd_open(pid_t pid)
{
#ifdef SYS_pidfd_open
	return (int)syscall(SYS_pidfd_open, pid, 0);
#else
	(void)pid;
	errno = ENOSYS;
	return -1;
#endif
}

/*
 * A pipe with both ends above standard error (dup2() onto 0 or 1 in the
 * child must not be a no-op that keeps close-on-exec), close-on-exec.
 * fds is left at -1 on failure.
 */
static int pipe_high(int fds[2])
{
	int p[2], i, e;

	fds[0] = fds[1] = -1;
	if (pipe2(p, O_CLOEXEC) != 0)
		return -1;
	for (i = 0; i < 2; i++) {
		if (p[i] <= STDERR_FILENO) {
			int fd = fcntl(p[i], F_DUPFD_CLOEXEC,
			    STDERR_FILENO + 1);

			if (fd == -1) {
				e = errno;
				close(p[0]);
				close(p[1]);
				errno = e;
				return -1;
			}
			close(p[i]);
			p[i] = fd;
		}
	}
	fds[0] = p[0];
	fds[1] = p[1];
	return 0;
}

static char *const helper_env[] = {
	"PATH=/usr/local/bin:/usr/bin:/bin",
	"LC_ALL=C",
	NULL,
};

static void helper_free(struct helper *h)
{
	if (h == NULL)
		return;
	free(h->rbuf);
	free(h->home);
	free(h);
}

/*
 * Make h's home and pipes and start the helper. On failure everything
 * made is undone and why says what failed.
 */
static int helper_spawn(struct pgp_worker *w, struct helper *h, char *why)
{
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t attr;
	sigset_t none, all;
	int req[2] = { -1, -1 }, rep[2] = { -1, -1 }, e, r = RAMKEY_ERR_SYSTEM;
	bool fa_ready = false, attr_ready = false;
	char *argv[3], err[128];

	h->pid = -1;
	h->pidfd = h->in_fd = h->out_fd = -1;
	if (asprintf(&h->home, "%s/" HOME_PREFIX "XXXXXX", w->tmpdir) < 0) {
		h->home = NULL;
		set_why(why, "out of memory");
		return RAMKEY_ERR_NOMEM;
	}
	if (mkdtemp(h->home) == NULL) {
		set_why(why, "cannot create a temporary GnuPG home in %s: %s",
		    w->tmpdir, strerror_r(errno, err, sizeof(err)));
		free(h->home);
		h->home = NULL;
		return RAMKEY_ERR_CRYPTO;
	}
	if (pipe_high(req) != 0 || pipe_high(rep) != 0) {
		set_why(why, "cannot make pipes for the PGP helper: %s",
		    strerror_r(errno, err, sizeof(err)));
		goto out;
	}
	if ((e = posix_spawn_file_actions_init(&fa)) != 0)
		goto spawn_err;
	fa_ready = true;
	if ((e = posix_spawn_file_actions_adddup2(&fa, req[0],
	    STDIN_FILENO)) != 0 ||
	    (e = posix_spawn_file_actions_adddup2(&fa, rep[1],
	    STDOUT_FILENO)) != 0 ||
	    (e = posix_spawn_file_actions_addopen(&fa, STDERR_FILENO,
	    "/dev/null", O_RDWR, 0)) != 0)
		goto spawn_err;
#if defined(__GLIBC__) &&                                                      \
    (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 34))
	/* Everything is close-on-exec already; the helper closes the rest
	 * again itself. */
	if ((e = posix_spawn_file_actions_addclosefrom_np(&fa,
	    STDERR_FILENO + 1)) != 0)
		goto spawn_err;
#endif
	if ((e = posix_spawnattr_init(&attr)) != 0)
		goto spawn_err;
	attr_ready = true;
	sigemptyset(&none);
	sigfillset(&all);
	sigdelset(&all, SIGKILL);
	sigdelset(&all, SIGSTOP);
	if ((e = posix_spawnattr_setsigmask(&attr, &none)) != 0 ||
	    (e = posix_spawnattr_setsigdefault(&attr, &all)) != 0 ||
	    (e = posix_spawnattr_setpgroup(&attr, 0)) != 0 ||
	    (e = posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK |
	    POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETPGROUP)) != 0)
		goto spawn_err;
	argv[0] = "ramkey-pgp-helper";
	argv[1] = h->home;
	argv[2] = NULL;
	if ((e = posix_spawn(&h->pid, w->helper_path, &fa, &attr, argv,
	    helper_env)) != 0) {
		h->pid = -1;
		goto spawn_err;
	}
	/* Close-on-exec, as every pidfd; -1 on kernels without pidfds. */
	h->pidfd = sys_pidfd_open(h->pid);
	h->in_fd = req[1];
	h->out_fd = rep[0];
	req[1] = rep[0] = -1;
	if (fcntl(h->in_fd, F_SETFL, O_NONBLOCK) != 0 ||
	    fcntl(h->out_fd, F_SETFL, O_NONBLOCK) != 0) {
		set_why(why, "cannot set up the PGP helper's pipes: %s",
		    strerror_r(errno, err, sizeof(err)));
		goto out;
	}
	r = 0;
	goto out;
spawn_err:
	set_why(why, "cannot start the PGP helper %s: %s", w->helper_path,
	    strerror_r(e, err, sizeof(err)));
out:
	if (fa_ready)
		posix_spawn_file_actions_destroy(&fa);
	if (attr_ready)
		posix_spawnattr_destroy(&attr);
	if (req[0] >= 0)
		close(req[0]);
	if (req[1] >= 0)
		close(req[1]);
	if (rep[0] >= 0)
		close(rep[0]);
	if (rep[1] >= 0)
		close(rep[1]);
	if (r != 0) {
		if (h->pid > 0) {
			(void)kill(-h->pid, SIGKILL);
			(void)waitpid(h->pid, NULL, 0);
			h->pid = -1;
		}
		close_fd(NULL, &h->pidfd);
		close_fd(NULL, &h->in_fd);
		close_fd(NULL, &h->out_fd);
		(void)pgp_rm_tree_at(AT_FDCWD, h->home);
		free(h->home);
		h->home = NULL;
	}
	return r;
}

static void request_setup(struct helper *h, uint8_t op, const uint8_t *key,
    size_t key_len, const char *fpr, const unsigned char *secret,
    size_t secret_len)
{
	struct pgp_wire_request req;

	memset(&req, 0, sizeof(req));
	req.op = op;
	req.key_len = (uint32_t)key_len;
	req.secret_len = (uint32_t)secret_len;
	if (fpr != NULL)
		snprintf(req.fpr, sizeof(req.fpr), "%s", fpr);
	pgp_wire_request_head(&req, h->head);
	h->iovcnt = 0;
	h->iov[h->iovcnt].iov_base = h->head;
	h->iov[h->iovcnt++].iov_len = sizeof(h->head);
	if (key_len > 0) {
		h->iov[h->iovcnt].iov_base = (void *)key;
		h->iov[h->iovcnt++].iov_len = key_len;
	}
	if (secret_len > 0) {
		h->iov[h->iovcnt].iov_base = (void *)secret;
		h->iov[h->iovcnt++].iov_len = secret_len;
	}
	h->iovidx = 0;
	h->rneed = PGP_WIRE_LEN_SIZE;
}

/* Write what the pipe takes: 1 all written, 0 more to write, -1 error. */
static int request_write(struct helper *h)
{
	while (h->iovidx < h->iovcnt) {
		ssize_t k = writev(h->in_fd, h->iov + h->iovidx,
		    h->iovcnt - h->iovidx);

		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0)
			return errno == EAGAIN ? 0 : -1;
		while (k > 0 && h->iovidx < h->iovcnt) {
			struct iovec *v = &h->iov[h->iovidx];

			if ((size_t)k >= v->iov_len) {
				k -= (ssize_t)v->iov_len;
				v->iov_len = 0;
				h->iovidx++;
			} else {
				v->iov_base = (uint8_t *)v->iov_base + k;
				v->iov_len -= (size_t)k;
				k = 0;
			}
		}
	}
	return 1;
}

/*
 * Read what the pipe has: 1 the reply is complete or the pipe at its end
 * (h->reply_done), 0 more to come, -1 error (too large, read error).
 */
static int reply_read(struct helper *h)
{
	for (;;) {
		ssize_t k;

		if (h->rlen == h->rneed) {
			uint32_t body;
			uint8_t *nb;

			if (h->rneed > PGP_WIRE_LEN_SIZE) {
				h->reply_done = true;
				return 1;
			}
			body = pgp_wire_frame_len(h->rbuf);
			if (body < PGP_WIRE_REP_HDR ||
			    body > PGP_WIRE_REP_MAX) {
				h->reply_done = true;
				return -1;
			}
			h->rneed = PGP_WIRE_LEN_SIZE + (size_t)body;
			if ((nb = realloc(h->rbuf, h->rneed)) == NULL) {
				h->reply_done = true;
				return -1;
			}
			h->rbuf = nb;
		}
		if (h->rbuf == NULL &&
		    (h->rbuf = malloc(PGP_WIRE_LEN_SIZE)) == NULL) {
			h->reply_done = true;
			return -1;
		}
		k = read(h->out_fd, h->rbuf + h->rlen, h->rneed - h->rlen);
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0 && errno == EAGAIN)
			return 0;
		if (k <= 0) {
			h->reply_done = true;
			return k == 0 ? 1 : -1;
		}
		h->rlen += (size_t)k;
	}
}

/* --- Helpers: finishing --- */

static void pump(struct pgp_worker *w);

static void helper_unlink(struct pgp_worker *w, struct helper *h)
{
	if (h->prev != NULL)
		h->prev->next = h->next;
	else
		w->helpers = h->next;
	if (h->next != NULL)
		h->next->prev = h->prev;
	h->prev = h->next = NULL;
	w->nhelpers--;
}

/* Remember how the helpers are confined (every reply says). */
static void note_confinement(struct pgp_worker *w,
    const struct pgp_wire_reply *rep)
{
	size_t n = rep->lacking_len < sizeof(w->lacking) - 1 ?
	    rep->lacking_len : sizeof(w->lacking) - 1, i;

	w->confinement = rep->confinement;
	w->landlock_abi = rep->landlock_abi;
	memcpy(w->lacking, rep->lacking, n);
	w->lacking[n] = '\0';
	/* one line, printable */
	for (i = 0; i < n; i++)
		if ((unsigned char)w->lacking[i] < 0x20 ||
		    (unsigned char)w->lacking[i] == 0x7f)
			w->lacking[i] = ' ';
}

/* Why a helper ended without a usable reply. */
static void helper_failure(const struct pgp_worker *w, const struct helper *h,
    enum job_kind kind, int *rc, char *why)
{
	if (h->deadline_passed) {
		if (kind == JOB_PREPARE) {
			*rc = RAMKEY_ERR_PGP_KEY;
			set_why(why, "checking the PGP key took longer than "
			    "%u ms; a key this costly is refused",
			    w->deadline_ms);
		} else {
			*rc = RAMKEY_ERR_CRYPTO;
			set_why(why, "encrypting to the PGP key took longer "
			    "than %u ms", w->deadline_ms);
		}
		return;
	}
	*rc = RAMKEY_ERR_CRYPTO;
	if (h->reaped && WIFSIGNALED(h->status))
		set_why(why, "the PGP helper was killed by signal %d%s",
		    WTERMSIG(h->status),
		    WTERMSIG(h->status) == SIGXCPU ||
		    WTERMSIG(h->status) == SIGKILL ? " (CPU time limit?)" :
		    "");
	else if (h->reaped && WIFEXITED(h->status) &&
	    WEXITSTATUS(h->status) != 0)
		set_why(why, "the PGP helper failed (exit status %d)",
		    WEXITSTATUS(h->status));
	else
		set_why(why, "the PGP helper gave no valid answer");
}

/* The job's result from the reply. */
static void job_result(struct pgp_worker *w, struct helper *h,
    struct pgp_job *job)
{
	struct pgp_wire_reply rep;
	struct pgp_key *key = NULL;

	if (h->deadline_passed || !h->reply_done ||
	    pgp_wire_reply_parse(h->rbuf, h->rlen, &rep) != 0) {
		helper_failure(w, h, job->kind, &job->rc, job->why);
		return;
	}
	note_confinement(w, &rep);
	job->rc = rep.rc;
	if (rep.rc != 0) {
		set_why(job->why, "%.*s", (int)rep.why_len, rep.why);
		if (job->why[0] == '\0')
			set_why(job->why, "%s", ramkey_strerror(rep.rc));
		return;
	}
	if (job->kind == JOB_ENCRYPT) {
		if (rep.data_len == 0 || strcmp(rep.fpr, job->fpr) != 0) {
			job->rc = RAMKEY_ERR_CRYPTO;
			set_why(job->why, "the PGP helper gave no valid "
			    "answer");
		} else if (ramkey_b64_encode(rep.data, rep.data_len,
		    &job->b64) != 0) {
			job->rc = RAMKEY_ERR_NOMEM;
			set_why(job->why, "out of memory");
		}
		return;
	}
	if (rep.fpr[0] == '\0' || rep.data_len == 0 ||
	    rep.data_len > PGP_KEY_EXPORT_MAX) {
		job->rc = RAMKEY_ERR_CRYPTO;
		set_why(job->why, "the PGP helper gave no valid answer");
		return;
	}
	if ((key = calloc(1, sizeof(*key))) == NULL ||
	    (key->data = malloc(rep.data_len)) == NULL) {
		free(key);
		job->rc = RAMKEY_ERR_NOMEM;
		set_why(job->why, "out of memory");
		return;
	}
	memcpy(key->data, rep.data, rep.data_len);
	key->len = rep.data_len;
	memcpy(key->fpr, rep.fpr, sizeof(key->fpr));
	job->key = key;
}

/* The helper is reaped and its reply read: clean up, deliver, go on. */
static void helper_finish(struct pgp_worker *w, struct helper *h)
{
	struct pgp_job *job = h->job;
	struct owner *o = h->owner;

	evloop_timer_cancel(w->loop, &h->deadline);
	evloop_timer_cancel(w->loop, &h->reap_poll);
	close_fd(w, &h->in_fd);
	close_fd(w, &h->out_fd);
	close_fd(w, &h->pidfd);
	(void)pgp_rm_tree_at(AT_FDCWD, h->home);
	helper_unlink(w, h);
	if (job != NULL) {
		job->helper = NULL;
		job_result(w, h, job);
		job_done(job);
	}
	helper_free(h);
	if (o != NULL) {
		o->running = false;
		owner_settle(w, o);
	}
	pump(w);
}

/*
 * Kill what is left of the group (the leader, exited or not, still holds
 * its pid, so the group's id is not reused), then reap. Returns true when
 * h is finished (and freed).
 */
static bool helper_reap(struct pgp_worker *w, struct helper *h)
{
	pid_t p;

	(void)kill(-h->pid, SIGKILL);
	while ((p = waitpid(h->pid, &h->status, WNOHANG)) < 0 &&
	    errno == EINTR)
		;
	if (p == 0)
		return false; /* not yet */
	h->reaped = true;
	if (h->out_fd >= 0 && !h->reply_done)
		(void)reply_read(h); /* what it wrote before it went */
	helper_finish(w, h);
	return true;
}

/* Without a pidfd: once the reply is in, look until it has exited. */
static void on_reap_poll(void *arg)
{
	struct helper *h = arg;
	struct pgp_worker *w = h->w;

	if (!helper_reap(w, h))
		(void)evloop_timer_arm(w->loop, &h->reap_poll,
		    evloop_now() + REAP_POLL_MS);
}

static void on_pidfd(void *arg, int fd, uint32_t events)
{
	struct helper *h = arg;

	(void)fd;
	(void)events;
	(void)helper_reap(h->w, h);
}

static void on_out(void *arg, int fd, uint32_t events)
{
	struct helper *h = arg;
	struct pgp_worker *w = h->w;

	(void)fd;
	(void)events;
	if (reply_read(h) == 0)
		return;
	/* Complete, at its end, or garbage: stop reading. */
	close_fd(w, &h->out_fd);
	if (h->pidfd < 0)
		on_reap_poll(h);
}

static void stop_writing(struct pgp_worker *w, struct helper *h)
{
	close_fd(w, &h->in_fd);
	h->iovcnt = h->iovidx = 0;
	/* The secret is in the pipe (or never will be): wipe our copy. */
	if (h->job != NULL)
		job_wipe_secret(h->job);
}

static void on_in(void *arg, int fd, uint32_t events)
{
	struct helper *h = arg;

	(void)fd;
	(void)events;
	if (request_write(h) != 0)
		stop_writing(h->w, h);
}

static void on_deadline(void *arg)
{
	struct helper *h = arg;

	h->deadline_passed = true;
	(void)kill(-h->pid, SIGKILL);
	stop_writing(h->w, h);
}

/*
 * Kill h's group and wait for it (blocking: only when freeing the worker,
 * or when a just-started helper cannot be watched), then clean up.
 */
static void helper_kill_sync(struct pgp_worker *w, struct helper *h)
{
	evloop_timer_cancel(w->loop, &h->deadline);
	evloop_timer_cancel(w->loop, &h->reap_poll);
	close_fd(w, &h->in_fd);
	close_fd(w, &h->out_fd);
	close_fd(w, &h->pidfd);
	if (!h->reaped) {
		(void)kill(-h->pid, SIGKILL);
		while (waitpid(h->pid, &h->status, 0) < 0 && errno == EINTR)
			;
		h->reaped = true;
	}
	(void)pgp_rm_tree_at(AT_FDCWD, h->home);
	if (h->job != NULL) {
		job_wipe_secret(h->job);
		h->job->helper = NULL;
		h->job = NULL;
	}
}

/* Start job in a helper: 0, or an error with job->why. */
static int helper_start(struct pgp_worker *w, struct pgp_job *job,
    struct owner *o)
{
	struct helper *h = calloc(1, sizeof(*h));
	int r;

	if (h == NULL) {
		set_why(job->why, "out of memory");
		return RAMKEY_ERR_NOMEM;
	}
	h->w = w;
	h->job = job;
	h->owner = o;
	ev_timer_init(&h->deadline, on_deadline, h);
	ev_timer_init(&h->reap_poll, on_reap_poll, h);
	if ((r = helper_spawn(w, h, job->why)) != 0) {
		helper_free(h);
		return r;
	}
	request_setup(h, job->kind == JOB_PREPARE ? PGP_OP_PREPARE :
	    PGP_OP_ENCRYPT, job->data, job->len,
	    job->kind == JOB_ENCRYPT ? job->fpr : NULL, job->secret,
	    job->secret_len);
	job->helper = h;
	if (evloop_timer_arm(w->loop, &h->deadline,
	    evloop_now() + w->deadline_ms) != 0 ||
	    evloop_add(w->loop, h->out_fd, EPOLLIN, on_out, h) != 0 ||
	    (h->pidfd >= 0 &&
	    evloop_add(w->loop, h->pidfd, EPOLLIN, on_pidfd, h) != 0) ||
	    evloop_add(w->loop, h->in_fd, EPOLLOUT, on_in, h) != 0) {
		helper_kill_sync(w, h);
		helper_free(h);
		set_why(job->why, "cannot watch the PGP helper: out of "
		    "memory");
		return RAMKEY_ERR_NOMEM;
	}
	h->next = w->helpers;
	if (w->helpers != NULL)
		w->helpers->prev = h;
	w->helpers = h;
	w->nhelpers++;
	job->state = JS_RUNNING;
	return 0;
}

/* Start queued jobs while helpers are free, owners taking turns. */
static void pump(struct pgp_worker *w)
{
	struct owner *o;
	struct pgp_job *job;
	int r;

	while (!w->dying && w->nhelpers < w->helpers_max &&
	    (o = w->ready_head) != NULL) {
		w->ready_head = o->ready_next;
		if (w->ready_head == NULL)
			w->ready_tail = NULL;
		o->ready = false;
		o->ready_next = NULL;
		job = list_pop(&o->queue);
		w->queued--;
		job->owner = NULL;
		o->running = true;
		if ((r = helper_start(w, job, o)) != 0) {
			o->running = false;
			job->rc = r;
			job_done(job);
			owner_settle(w, o);
		}
	}
}

static void job_enqueue(struct pgp_job *job)
{
	struct pgp_worker *w = job->w;
	struct owner *o = owner_get(w, job->owner_name);

	if (o == NULL) {
		job_finish(job, RAMKEY_ERR_NOMEM, "out of memory");
		return;
	}
	job->owner = o;
	job->state = JS_QUEUED;
	list_push(&o->queue, job);
	w->queued++;
	owner_make_ready(w, o);
	pump(w);
}

/* --- Delivery (from the loop, never inside an API call) --- */

static void deliver(struct pgp_job *job)
{
	const char *why = job->rc != 0 ? job->why : NULL;

	if (job->kind == JOB_PREPARE) {
		struct pgp_key *key = job->rc == 0 ? job->key : NULL;

		if (job->rc == 0)
			job->key = NULL; /* the callee owns it now */
		job->key_fn(job->arg, job->rc, key, why);
	} else {
		job->enc_fn(
		    job->arg, job->rc, job->rc == 0 ? job->b64 : NULL, why);
	}
}

static void worker_destroy(struct pgp_worker *w);

static void on_efd(void *arg, int fd, uint32_t events)
{
	struct pgp_worker *w = arg;
	struct pgp_job *job;
	uint64_t v;

	(void)events;
	while (read(fd, &v, sizeof(v)) < 0 && errno == EINTR)
		;
	w->busy++;
	while (!w->dying && (job = list_pop(&w->done)) != NULL) {
		job->state = JS_CALLBACK;
		deliver(job);
		job_free(job);
	}
	if (--w->busy == 0 && w->dying)
		worker_destroy(w);
}

/* --- Key specs and Keybase --- */

static void on_keybase(
    void *arg, int rc, const char *bundle, size_t len, const char *why)
{
	struct pgp_job *job = arg;
	struct pgp_worker *w = job->w;

	job->fetch = NULL;
	list_remove(&w->fetching, job);
	if (rc != 0) {
		job_finish(job, rc, why != NULL ? why : ramkey_strerror(rc));
		return;
	}
	if (len > PGP_WIRE_KEY_MAX) {
		job_finish(job, RAMKEY_ERR_PGP_KEY, "the Keybase user's PGP "
		    "key is larger than 256 KiB");
		return;
	}
	if ((job->data = malloc(len + 1)) == NULL) {
		job_finish(job, RAMKEY_ERR_NOMEM, "out of memory");
		return;
	}
	memcpy(job->data, bundle, len);
	job->len = len;
	job_enqueue(job);
}

/* Keybase user names: 1 to 64 of A-Z, a-z, 0-9 and _. */
static bool keybase_name_ok(const char *name)
{
	size_t i;

	for (i = 0; name[i] != '\0'; i++) {
		char c = name[i];

		if (i >= PGP_KEYBASE_NAME_MAX ||
		    !((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		    (c >= '0' && c <= '9') || c == '_'))
			return false;
	}
	return i > 0;
}

static bool b64_space(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* pgp_spec.h */
int pgp_spec_parse(const char *spec, uint8_t **data, size_t *datalen,
    char user[PGP_KEYBASE_NAME_MAX + 1], char why[PGP_SPEC_WHY_MAX])
{
	size_t len = strnlen(spec, PGP_WIRE_KEY_MAX + 1), i, n;
	char *clean = NULL;
	int r;

	*data = NULL;
	*datalen = 0;
	user[0] = '\0';
	if (len > PGP_WIRE_KEY_MAX) {
		set_why(why, "the PGP key is larger than %d KiB",
		    PGP_WIRE_KEY_MAX / 1024);
		return RAMKEY_ERR_PGP_KEY;
	}
	while (len > 0 && b64_space(*spec)) {
		spec++;
		len--;
	}
	while (len > 0 && b64_space(spec[len - 1]))
		len--;
	if (len >= 8 && strncmp(spec, "keybase:", 8) == 0) {
		if (len - 8 == 0 || len - 8 > PGP_KEYBASE_NAME_MAX) {
			set_why(why,
			    "invalid Keybase user name (1 to %d of "
			    "A-Z, a-z, 0-9 and _)",
			    PGP_KEYBASE_NAME_MAX);
			return RAMKEY_ERR_PGP_KEY;
		}
		memcpy(user, spec + 8, len - 8);
		user[len - 8] = '\0';
		if (!keybase_name_ok(user)) {
			user[0] = '\0';
			set_why(why,
			    "invalid Keybase user name (1 to %d of "
			    "A-Z, a-z, 0-9 and _)",
			    PGP_KEYBASE_NAME_MAX);
			return RAMKEY_ERR_PGP_KEY;
		}
		return 1;
	}
	if (len == 0) {
		set_why(why, WHY_NOT_A_KEY);
		return RAMKEY_ERR_PGP_KEY;
	}
	if (len >= 15 && strncmp(spec, "-----BEGIN PGP ", 15) == 0) {
		/* ASCII armor: gpg reads it as it is. */
		if ((*data = malloc(len)) == NULL)
			return RAMKEY_ERR_NOMEM;
		memcpy(*data, spec, len);
		*datalen = len;
		return 0;
	}
	/* Base64 of a binary key, maybe wrapped over several lines. */
	if ((clean = malloc(len + 1)) == NULL)
		return RAMKEY_ERR_NOMEM;
	for (i = n = 0; i < len; i++)
		if (!b64_space(spec[i]))
			clean[n++] = spec[i];
	clean[n] = '\0';
	r = ramkey_b64_decode(clean, n, data, datalen);
	free(clean);
	if (r == RAMKEY_ERR_NOMEM)
		return r;
	if (r != 0 || *datalen == 0) {
		free(*data);
		*data = NULL;
		*datalen = 0;
		set_why(why, WHY_NOT_A_KEY);
		return RAMKEY_ERR_PGP_KEY;
	}
	return 0;
}

/* --- The API --- */

int pgp_key_prepare(struct pgp_worker *w, const char *spec, const char *owner,
    pgp_key_fn fn, void *arg, struct pgp_job **ret)
{
	struct pgp_job *job = NULL;
	char why[WHY_MAX], user[PGP_KEYBASE_NAME_MAX + 1];
	int r;

	if (ret != NULL)
		*ret = NULL;
	if (w == NULL || spec == NULL || fn == NULL || w->dying)
		return RAMKEY_ERR_INVALID;
	if ((job = job_new(w, JOB_PREPARE, owner)) == NULL)
		return RAMKEY_ERR_NOMEM;
	job->key_fn = fn;
	job->arg = arg;
	if (w->unavailable != NULL) {
		job_finish(job, RAMKEY_ERR_UNAVAILABLE, w->unavailable);
		goto started;
	}
	why[0] = '\0';
	r = pgp_spec_parse(spec, &job->data, &job->len, user, why);
	if (r == RAMKEY_ERR_NOMEM) {
		job_free(job);
		return r;
	}
	if (r < 0) {
		job_finish(job, r, why);
		goto started;
	}
	if (r == 0) {
		job_enqueue(job);
		goto started;
	}
	/* keybase:NAME, validated */
	if (w->fetcher.fetch == NULL) {
		job_finish(job, RAMKEY_ERR_KEYBASE, "Keybase lookups are not "
		    "available");
		goto started;
	}
	if ((r = w->fetcher.fetch(w->fetcher.ctx, user, on_keybase, job,
	    &job->fetch)) != 0) {
		job_free(job);
		return r;
	}
	job->state = JS_FETCH;
	list_push(&w->fetching, job);
started:
	if (ret != NULL)
		*ret = job;
	return 0;
}

int pgp_encrypt(struct pgp_worker *w, const struct pgp_key *key,
    const char *owner, const char *secret, size_t len, pgp_encrypt_fn fn,
    void *arg, struct pgp_job **ret)
{
	struct pgp_job *job = NULL;

	if (ret != NULL)
		*ret = NULL;
	if (w == NULL || key == NULL || key->data == NULL || secret == NULL ||
	    len == 0 || fn == NULL || w->dying)
		return RAMKEY_ERR_INVALID;
	if (len > PGP_WIRE_SECRET_MAX)
		return RAMKEY_ERR_TOO_LARGE;
	if ((job = job_new(w, JOB_ENCRYPT, owner)) == NULL)
		return RAMKEY_ERR_NOMEM;
	job->enc_fn = fn;
	job->arg = arg;
	memcpy(job->fpr, key->fpr, sizeof(job->fpr));
	if ((job->data = malloc(key->len)) == NULL ||
	    (job->secret = sodium_malloc(len)) == NULL) {
		job_free(job);
		return RAMKEY_ERR_NOMEM;
	}
	memcpy(job->data, key->data, key->len);
	job->len = key->len;
	memcpy(job->secret, secret, len);
	job->secret_len = len;
	if (w->unavailable != NULL)
		job_finish(job, RAMKEY_ERR_UNAVAILABLE, w->unavailable);
	else
		job_enqueue(job);
	if (ret != NULL)
		*ret = job;
	return 0;
}

void pgp_job_cancel(struct pgp_job *job)
{
	struct pgp_worker *w;
	struct helper *h;

	if (job == NULL)
		return;
	w = job->w;
	switch (job->state) {
	case JS_FETCH:
		list_remove(&w->fetching, job);
		break;
	case JS_QUEUED:
		list_remove(&job->owner->queue, job);
		w->queued--;
		if (job->owner->queue.head == NULL)
			owner_unready(w, job->owner);
		owner_settle(w, job->owner);
		job->owner = NULL;
		break;
	case JS_RUNNING:
		/* Kill the helper; it is reaped (and its owner free for
		 * the next job) as usual, without a job. */
		h = job->helper;
		stop_writing(w, h);
		h->job = NULL;
		job->helper = NULL;
		(void)kill(-h->pid, SIGKILL);
		break;
	case JS_DONE:
		list_remove(&w->done, job);
		break;
	case JS_NEW:
		break;
	case JS_CALLBACK:
		return; /* being delivered: freed after the callback */
	}
	job_free(job); /* cancels a Keybase lookup, wipes a secret */
}

/* --- The probe --- */

/*
 * Run the helper once with nothing to do but confine itself and check
 * GnuPG: synchronously, within the deadline but at least the default one
 * (at start-up, before the loop serves anyone).
 */
static void probe(struct pgp_worker *w)
{
	struct pgp_wire_reply rep;
	struct helper h;
	unsigned ms = w->deadline_ms > PGP_DEADLINE_MS_DEFAULT ?
	    w->deadline_ms : PGP_DEADLINE_MS_DEFAULT;
	uint64_t end = evloop_now() + ms;
	char why[WHY_MAX];

	memset(&h, 0, sizeof(h));
	h.w = w;
	if (helper_spawn(w, &h, why) != 0) {
		set_why(w->unavailable_buf, "%s", why);
		w->unavailable = w->unavailable_buf;
		return;
	}
	request_setup(&h, PGP_OP_PROBE, NULL, 0, NULL, NULL, 0);
	while (!h.reply_done) {
		struct pollfd p[2];
		uint64_t now = evloop_now();
		int n = 0, r;

		if (now >= end) {
			h.deadline_passed = true;
			break;
		}
		if (h.in_fd >= 0) {
			p[n].fd = h.in_fd;
			p[n++].events = POLLOUT;
		}
		p[n].fd = h.out_fd;
		p[n++].events = POLLIN;
		r = poll(p, (nfds_t)n, (int)(end - now));
		if (r < 0 && errno != EINTR)
			break;
		if (h.in_fd >= 0 && request_write(&h) != 0)
			close_fd(NULL, &h.in_fd);
		if (reply_read(&h) < 0)
			break;
	}
	close_fd(NULL, &h.in_fd);
	close_fd(NULL, &h.out_fd);
	close_fd(NULL, &h.pidfd);
	(void)kill(-h.pid, SIGKILL);
	while (waitpid(h.pid, &h.status, 0) < 0 && errno == EINTR)
		;
	h.reaped = true;
	(void)pgp_rm_tree_at(AT_FDCWD, h.home);
	if (h.deadline_passed || !h.reply_done ||
	    pgp_wire_reply_parse(h.rbuf, h.rlen, &rep) != 0) {
		int rc;

		if (h.deadline_passed)
			set_why(why, "the PGP helper %s did not answer "
			    "within %u ms", w->helper_path, ms);
		else
			helper_failure(w, &h, JOB_ENCRYPT, &rc, why);
		set_why(w->unavailable_buf, "%s", why);
		w->unavailable = w->unavailable_buf;
	} else {
		note_confinement(w, &rep);
		if (rep.rc != 0) {
			set_why(w->unavailable_buf, "%.*s", (int)rep.why_len,
			    rep.why);
			w->unavailable = w->unavailable_buf;
		}
	}
	free(h.rbuf);
	free(h.home);
}

/* --- The worker --- */

int pgp_worker_new(struct evloop *loop, const struct pgp_config *cfg,
    const struct pgp_fetcher *fetcher, struct pgp_worker **ret)
{
	struct pgp_worker *w = NULL;
	struct sigaction sa;
	const char *t;
	int r = RAMKEY_ERR_NOMEM;

	*ret = NULL;
	if (loop == NULL || cfg == NULL || cfg->helper == NULL)
		return RAMKEY_ERR_INVALID;
	if (sodium_init() < 0)
		return RAMKEY_ERR_CRYPTO;
	/* A helper that dies before it has read its request must not take
	 * the process with it (the agent ignores SIGPIPE already). */
	if (sigaction(SIGPIPE, NULL, &sa) == 0 && sa.sa_handler == SIG_DFL)
		(void)signal(SIGPIPE, SIG_IGN);
	if ((w = calloc(1, sizeof(*w))) == NULL)
		goto out;
	w->loop = loop;
	w->efd = -1;
	w->helpers_max = cfg->helpers_max == 0 ? PGP_HELPERS_DEFAULT :
	    cfg->helpers_max > HELPERS_MAX ? HELPERS_MAX : cfg->helpers_max;
	w->deadline_ms = cfg->deadline_ms == 0 ? PGP_DEADLINE_MS_DEFAULT :
	    cfg->deadline_ms;
	t = cfg->tmpdir != NULL ? cfg->tmpdir : getenv("TMPDIR");
	if ((w->tmpdir = strdup(
		 t != NULL && t[0] == '/' && is_dir(t) ? t : "/tmp")) == NULL ||
	    (w->helper_path = strdup(cfg->helper)) == NULL ||
	    (w->owners = strmap_new(owner_name)) == NULL)
		goto out;
	if (fetcher != NULL)
		w->fetcher = *fetcher;
	r = RAMKEY_ERR_SYSTEM;
	if ((w->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) == -1)
		goto out;
	if ((r = evloop_add(loop, w->efd, EPOLLIN, on_efd, w)) != 0) {
		close(w->efd);
		w->efd = -1;
		goto out;
	}
	probe(w);
	*ret = w;
	w = NULL;
	r = 0;
out:
	worker_destroy(w);
	return r;
}

static void free_list(struct job_list *l)
{
	struct pgp_job *job;

	while ((job = list_pop(l)) != NULL)
		job_free(job);
}

static void worker_destroy(struct pgp_worker *w)
{
	struct strmap_iter it;
	struct helper *h, *next;
	void *v;

	if (w == NULL)
		return;
	w->dying = true;
	/* Take the whole list first: each helper is freed off-list. */
	for (h = w->helpers, w->helpers = NULL; h != NULL; h = next) {
		struct pgp_job *job = h->job;

		next = h->next;
		helper_kill_sync(w, h);
		helper_free(h);
		job_free(job);
	}
	w->nhelpers = 0;
	free_list(&w->fetching); /* cancels their lookups */
	free_list(&w->done);
	if (w->owners != NULL) {
		strmap_iter_init(&it);
		while (strmap_next(w->owners, &it, NULL, &v)) {
			struct owner *o = v;

			free_list(&o->queue);
			free(o->name);
			free(o);
		}
		strmap_free(w->owners);
	}
	if (w->efd != -1) {
		evloop_del(w->loop, w->efd);
		close(w->efd);
	}
	free(w->helper_path);
	free(w->tmpdir);
	free(w);
}

void pgp_worker_free(struct pgp_worker *w)
{
	if (w == NULL)
		return;
	if (w->busy > 0) {
		/* Inside one of our callbacks: finish when it returns. */
		w->dying = true;
		return;
	}
	worker_destroy(w);
}

const char *pgp_worker_unavailable(const struct pgp_worker *w)
{
	return w != NULL ? w->unavailable : "no PGP worker";
}

void pgp_worker_status(const struct pgp_worker *w, struct pgp_status *st)
{
	const size_t max =
	    sizeof(st->confinement) / sizeof(st->confinement[0]) - 1;
	size_t n = 0;
	unsigned bit;

	memset(st, 0, sizeof(*st));
	st->lacking = "";
	if (w == NULL)
		return;
	for (bit = 1; bit <= PGP_CONFINE_ALL; bit <<= 1)
		if ((w->confinement & bit) != 0 &&
		    pgp_confine_name(bit) != NULL &&
		    n < max)
			st->confinement[n++] = pgp_confine_name(bit);
	st->confinement[n] = NULL;
	st->lacking = w->lacking;
	st->landlock_abi = w->landlock_abi;
	st->running = w->nhelpers;
	st->queued = w->queued;
	st->helpers_max = w->helpers_max;
	st->deadline_ms = w->deadline_ms;
}
