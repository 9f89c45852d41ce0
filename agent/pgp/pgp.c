/*
 * PGP-encrypted secrets.
 *
 * Threads: the loop thread parses specs, runs Keybase lookups (through
 * the fetcher) and delivers results; one worker thread runs GPGME. Jobs move between
 * four lists under one mutex: fetching (Keybase, loop only) -> queue ->
 * running (worker) -> done -> callback (loop). The worker wakes the loop
 * through an eventfd; callbacks therefore always run on the loop thread
 * and never inside pgp_key_prepare() or pgp_encrypt().
 *
 * GnuPG: every job gets its own GnuPG home, mkdtemp()'d (0700) under
 * $TMPDIR or /tmp and removed recursively before the job's result is
 * posted, on every path. Its gpg.conf says no-autostart, so gpg never
 * starts a gpg-agent, dirmngr or keyboxd (importing public keys and
 * encrypting do not need them); the context is also offline, so nothing
 * reaches the network. Nothing ever touches the agent user's own keyring.
 *
 * The secret to encrypt is copied into sodium_malloc memory for the job and
 * freed (wiped) by the worker as soon as gpg has it. GPGME copies plaintext
 * through an internal buffer of the data object on its way to gpg; we feed
 * the data object through our own read callback, remember the buffers
 * GPGME hands it and wipe them before the object is released (GPGME >= 1.19
 * also honours the "sensitive" flag we set, which does the same).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <gpgme.h>
#include <sodium.h>

#include "evloop.h"
#include "pgp.h"
#include "pgp_spec.h"
#include "ramkey_err.h"
#include "util.h"

/* Largest secret encrypted (AccessKey secrets are 30 characters). */
#define PGP_SECRET_MAX 4096
#define WHY_MAX PGP_SPEC_WHY_MAX
#define FPR_LEN 40
#define HOME_PREFIX "ramkey-gpg-"
#define RM_DEPTH_MAX 8
#define PLAIN_BUFS_MAX 8

#define WHY_NOT_A_KEY "not an OpenPGP public key"
#define WHY_REVOKED "the PGP key is revoked"
#define WHY_NO_ENC_SUBKEY "the PGP key cannot encrypt (no encryption subkey)"
#define WHY_ENC_SUBKEYS_DEAD                                                   \
	"the PGP key cannot encrypt (its encryption subkeys are expired or "   \
	"revoked)"
#define WHY_SECRET_KEY                                                         \
	"the key block holds a secret key; give the public key only"

/*
 * The private home's configuration. no-autostart: never start gpg-agent,
 * dirmngr or keyboxd. The rest keeps gpg local and quiet, and the
 * keyring small.
 */
static const char gpg_conf[] = "no-autostart\n"
                               "disable-dirmngr\n"
                               "no-auto-key-retrieve\n"
                               "no-auto-key-locate\n"
                               "no-auto-check-trustdb\n"
                               "trust-model always\n"
                               "no-random-seed-file\n"
                               "no-greeting\n";
/* GnuPG >= 2.2.17: drop third-party signatures (certificate flooding). */
static const char gpg_conf_import[] = "import-options self-sigs-only "
                                      "import-clean\n";

struct pgp_key {
	char fpr[FPR_LEN + 1];
	uint8_t *data; /* the key, binary, minimal export */
	size_t len;
};

enum job_kind { JOB_PREPARE, JOB_ENCRYPT };

enum job_state {
	JS_FETCH,    /* Keybase lookup in flight (loop) */
	JS_QUEUED,   /* waiting for the worker */
	JS_RUNNING,  /* in the worker */
	JS_DONE,     /* result waiting for the loop */
	JS_CALLBACK, /* being delivered */
};

struct job_list {
	struct pgp_job *head, *tail;
};

struct pgp_job {
	struct pgp_worker *w;
	struct pgp_job *prev, *next;
	enum job_kind kind;
	enum job_state state;
	bool cancelled; /* while running: drop the result */
	pgp_key_fn key_fn;
	pgp_encrypt_fn enc_fn;
	void *arg;
	void *fetch;		/* Keybase lookup in flight */
	/* Input. */
	uint8_t *data; /* key material to import */
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

struct pgp_worker {
	struct evloop *loop;
	struct pgp_fetcher fetcher;
	char *tmpdir;            /* where the GnuPG homes go */
	const char *unavailable; /* why GnuPG cannot be used, or NULL */
	bool self_sigs_only;
	int efd;
	pthread_t thread;
	bool thread_started;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool locks_ready;
	bool stop;
	struct job_list fetching, queue, done;
	struct pgp_job *running;
	unsigned busy; /* > 0 while delivering; free is deferred */
	bool dying;
};

/* --- GPGME, once per process --- */

static pthread_once_t gpgme_once = PTHREAD_ONCE_INIT;
static const char *gpgme_unavailable;
static bool gpgme_self_sigs_only;

/*
 * The worker blocks every signal (they are the loop thread's business),
 * and a forked child keeps its thread's mask across exec. So that gpg does
 * not run with SIGTERM and friends blocked, the children GPGME forks from
 * the worker start from an empty mask. Other threads' forks are untouched.
 */
static __thread bool in_worker;

static void atfork_child(void)
{
	sigset_t none;

	if (!in_worker)
		return;
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL); /* async-signal-safe */
}

static void version_parse(const char *v, unsigned out[3])
{
	unsigned i;

	out[0] = out[1] = out[2] = 0;
	for (i = 0; i < 3 && v != NULL; i++) {
		char *end;
		unsigned long n = strtoul(v, &end, 10);

		if (end == v)
			break;
		out[i] = n > 1000000 ? 1000000 : (unsigned)n;
		v = *end == '.' ? end + 1 : NULL;
	}
}

static bool version_at_least(
    const unsigned v[3], unsigned a, unsigned b, unsigned c)
{
	if (v[0] != a)
		return v[0] > a;
	if (v[1] != b)
		return v[1] > b;
	return v[2] >= c;
}

/*
 * gpgme_check_version() initialises GPGME (and sets SIGPIPE to SIG_IGN, so
 * a dying gpg cannot kill the agent); it must run before any thread uses
 * the library. No locale is set: nothing gpg prints reaches anyone.
 */
static void gpgme_init_once(void)
{
	gpgme_engine_info_t info = NULL;
	unsigned v[3];

	if (gpgme_check_version(GPGME_VERSION) == NULL) {
		gpgme_unavailable = "the GPGME library is older than the one "
		                    "ramkey was built with";
		return;
	}
	if (gpgme_engine_check_version(GPGME_PROTOCOL_OpenPGP) != 0 ||
	    gpgme_get_engine_info(&info) != 0) {
		gpgme_unavailable = "GnuPG (gpg) is not installed on the "
		                    "agent's host, so PGP keys cannot be used";
		return;
	}
	for (; info != NULL; info = info->next)
		if (info->protocol == GPGME_PROTOCOL_OpenPGP)
			break;
	if (info == NULL || info->version == NULL) {
		gpgme_unavailable = "GnuPG (gpg) is not installed on the "
		                    "agent's host, so PGP keys cannot be used";
		return;
	}
	version_parse(info->version, v);
	if (!version_at_least(v, 2, 2, 0)) {
		gpgme_unavailable = "GnuPG (gpg) on the agent's host is older "
		                    "than 2.2, so PGP keys cannot be used";
		return;
	}
	gpgme_self_sigs_only = version_at_least(v, 2, 2, 17);
	if (pthread_atfork(NULL, NULL, atfork_child) != 0)
		gpgme_unavailable = "cannot set up the GnuPG worker "
		                    "(pthread_atfork failed)";
}

/* --- Job lists (under w->mu) --- */

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

static void gpg_why(char *why, const char *what, gpgme_error_t err)
{
	char buf[128];

	if (gpgme_strerror_r(err, buf, sizeof(buf)) != 0)
		snprintf(buf, sizeof(buf), "error %u", gpgme_err_code(err));
	set_why(why, "%s: %s", what, buf);
}

static bool is_dir(const char *path)
{
	struct stat st;

	return path != NULL && stat(path, &st) == 0 && S_ISDIR(st.st_mode);
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

/* --- Temporary GnuPG homes (worker thread) --- */

/* Remove name (under dfd) and everything below it, never following links. */
static int rm_tree_at(int dfd, const char *name, int depth)
{
	struct dirent *de;
	DIR *d;
	int fd, r = 0, pass;

	if (unlinkat(dfd, name, 0) == 0 || errno == ENOENT)
		return 0;
	if ((errno != EISDIR && errno != EPERM) || depth >= RM_DEPTH_MAX)
		return -1;
	fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd == -1)
		return -1;
	if ((d = fdopendir(fd)) == NULL) {
		close(fd);
		return -1;
	}
	for (pass = 0; pass < 3; pass++) {
		/* What could not go shows as the directory not being empty. */
		while ((de = readdir(d)) != NULL) {
			if (strcmp(de->d_name, ".") == 0 ||
			    strcmp(de->d_name, "..") == 0)
				continue;
			(void)rm_tree_at(dirfd(d), de->d_name, depth + 1);
		}
		if (unlinkat(dfd, name, AT_REMOVEDIR) == 0 || errno == ENOENT) {
			r = 0;
			break;
		}
		r = -1;
		if (errno != ENOTEMPTY && errno != EEXIST)
			break;
		rewinddir(d);
	}
	closedir(d);
	return r;
}

static void home_remove(char *home)
{
	if (home == NULL)
		return;
	(void)rm_tree_at(AT_FDCWD, home, 0);
	free(home);
}

static int write_all(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t k = write(fd, p, n);

		if (k < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		p += k;
		n -= (size_t)k;
	}
	return 0;
}

/* Write name in home with contents; 0 or -1 (errno). */
static int home_file(
    const char *home, const char *name, const char *a, const char *b)
{
	char path[4096];
	int fd, r = -1;

	if ((size_t)snprintf(path, sizeof(path), "%s/%s", home, name) >=
	    sizeof(path)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	fd = open(
	    path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd == -1)
		return -1;
	if (write_all(fd, a, strlen(a)) == 0 &&
	    (b == NULL || write_all(fd, b, strlen(b)) == 0))
		r = 0;
	if (close(fd) != 0)
		r = -1;
	return r;
}

static int home_make(const struct pgp_worker *w, char **ret, char *why)
{
	char *home = NULL, err[128];
	int e;

	*ret = NULL;
	if (asprintf(&home, "%s/" HOME_PREFIX "XXXXXX", w->tmpdir) < 0) {
		set_why(why, "out of memory");
		return RAMKEY_ERR_NOMEM;
	}
	if (mkdtemp(home) == NULL) {
		e = errno;
		set_why(why, "cannot create a temporary GnuPG home in %s: %s",
		    w->tmpdir, strerror_r(e, err, sizeof(err)));
		free(home);
		return RAMKEY_ERR_CRYPTO;
	}
	/*
	 * An empty common.conf keeps GnuPG >= 2.4 from writing one that
	 * turns on keyboxd for a new home.
	 */
	if (home_file(home, "gpg.conf", gpg_conf,
	        w->self_sigs_only ? gpg_conf_import : NULL) != 0 ||
	    home_file(home, "common.conf", "", NULL) != 0) {
		e = errno;
		set_why(why, "cannot set up a temporary GnuPG home: %s",
		    strerror_r(e, err, sizeof(err)));
		home_remove(home);
		return RAMKEY_ERR_CRYPTO;
	}
	*ret = home;
	return 0;
}

/* --- GPGME work (worker thread) --- */

static int ctx_new(const char *home, gpgme_ctx_t *ret, char *why)
{
	gpgme_ctx_t ctx = NULL;
	gpgme_error_t err;

	*ret = NULL;
	if ((err = gpgme_new(&ctx)) != 0 ||
	    (err = gpgme_set_protocol(ctx, GPGME_PROTOCOL_OpenPGP)) != 0 ||
	    (err = gpgme_ctx_set_engine_info(
	         ctx, GPGME_PROTOCOL_OpenPGP, NULL, home)) != 0 ||
	    (err = gpgme_set_keylist_mode(ctx, GPGME_KEYLIST_MODE_LOCAL)) !=
	        0) {
		gpg_why(why, "cannot set up GPGME", err);
		gpgme_release(ctx);
		return gpgme_err_code(err) == GPG_ERR_ENOMEM
		    ? RAMKEY_ERR_NOMEM
		    : RAMKEY_ERR_CRYPTO;
	}
	gpgme_set_armor(ctx, 0);
	gpgme_set_textmode(ctx, 0);
	gpgme_set_offline(ctx, 1);
	*ret = ctx;
	return 0;
}

/*
 * Import len bytes into ctx's (fresh) home; exactly one public key must
 * land there. Returns 0 with *keyp (the caller unrefs it), else an error
 * code and why.
 */
static int import_one(gpgme_ctx_t ctx, const uint8_t *data, size_t len,
    gpgme_key_t *keyp, char *why)
{
	gpgme_data_t in = NULL;
	gpgme_import_result_t res;
	gpgme_import_status_t st;
	gpgme_key_t k = NULL, first = NULL;
	gpgme_error_t err;
	size_t n = 0;
	int r = RAMKEY_ERR_PGP_KEY;

	*keyp = NULL;
	if (len == 0) {
		set_why(why, WHY_NOT_A_KEY);
		goto out;
	}
	if ((err = gpgme_data_new_from_mem(&in, (const char *)data, len, 0)) !=
	    0) {
		gpg_why(why, "GPGME", err);
		r = RAMKEY_ERR_NOMEM;
		goto out;
	}
	err = gpgme_op_import(ctx, in);
	res = gpgme_op_import_result(ctx);
	/* Checked first: without an agent, gpg fails on the secret part. */
	if (res != NULL && res->secret_read > 0) {
		set_why(why, WHY_SECRET_KEY);
		goto out;
	}
	if (gpgme_err_code(err) == GPG_ERR_NO_DATA ||
	    (res != NULL && res->considered == 0)) {
		set_why(why, WHY_NOT_A_KEY);
		goto out;
	}
	if (res == NULL) {
		/* gpg did not run or said nothing: our problem, not the key's
		 */
		if (err != 0)
			gpg_why(why, "GnuPG could not import the key", err);
		else
			set_why(why, "GnuPG gave no import result");
		r = RAMKEY_ERR_CRYPTO;
		goto out;
	}
	/* Else see what landed, even if gpg complained about a part. */
	/* The home was empty: what it holds now is what was imported. */
	if ((err = gpgme_op_keylist_start(ctx, NULL, 0)) != 0) {
		gpg_why(why, "GnuPG could not list the key", err);
		r = RAMKEY_ERR_CRYPTO;
		goto out;
	}
	while (gpgme_op_keylist_next(ctx, &k) == 0) {
		if (first == NULL)
			first = k;
		else
			gpgme_key_unref(k);
		n++;
	}
	gpgme_op_keylist_end(ctx);
	if (n == 0) {
		for (st = res->imports; st != NULL; st = st->next)
			if (st->result != 0)
				break;
		if (st != NULL)
			gpg_why(why, "the PGP key could not be imported",
			    st->result);
		else
			set_why(why,
			    "the PGP key could not be imported (no "
			    "valid user ID or self-signature?)");
		goto out;
	}
	if (n > 1) {
		set_why(
		    why, "the key block holds %zu keys; give exactly one", n);
		goto out;
	}
	*keyp = first;
	first = NULL;
	r = 0;
out:
	gpgme_key_unref(first);
	gpgme_data_release(in);
	return r;
}

/* 40 lower-case hex of the primary key, or false. */
static bool key_fpr(gpgme_key_t k, char out[FPR_LEN + 1])
{
	const char *f = k->subkeys != NULL ? k->subkeys->fpr : NULL;
	size_t i;

	if (f == NULL || strlen(f) != FPR_LEN)
		return false;
	for (i = 0; i < FPR_LEN; i++) {
		char c = f[i];

		if (c >= 'A' && c <= 'F')
			c = (char)(c - 'A' + 'a');
		if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
			return false;
		out[i] = c;
	}
	out[FPR_LEN] = '\0';
	return true;
}

static bool subkey_usable(gpgme_subkey_t sk)
{
	return sk->can_encrypt && !sk->revoked && !sk->expired &&
	    !sk->invalid && !sk->disabled;
}

static int check_key(gpgme_key_t k, char *why)
{
	gpgme_subkey_t sk;
	bool capable = false, usable = false;

	if (k->revoked) {
		set_why(why, WHY_REVOKED);
		return RAMKEY_ERR_PGP_KEY;
	}
	if (k->expired) {
		time_t t = k->subkeys != NULL ? (time_t)k->subkeys->expires : 0;
		struct tm tm;
		char day[16];

		if (t > 0 && gmtime_r(&t, &tm) != NULL &&
		    strftime(day, sizeof(day), "%Y-%m-%d", &tm) > 0)
			set_why(why, "the PGP key expired on %s", day);
		else
			set_why(why, "the PGP key expired");
		return RAMKEY_ERR_PGP_KEY;
	}
	if (k->invalid || k->disabled) {
		set_why(why,
		    "the PGP key is not valid (no valid "
		    "self-signature?)");
		return RAMKEY_ERR_PGP_KEY;
	}
	for (sk = k->subkeys; sk != NULL; sk = sk->next) {
		if (sk->can_encrypt)
			capable = true;
		if (subkey_usable(sk))
			usable = true;
	}
	if (!capable) {
		set_why(why, WHY_NO_ENC_SUBKEY);
		return RAMKEY_ERR_PGP_KEY;
	}
	if (!usable) {
		set_why(why, WHY_ENC_SUBKEYS_DEAD);
		return RAMKEY_ERR_PGP_KEY;
	}
	return 0;
}

/* The plaintext, fed to GPGME by callback (see the top of the file). */
struct plain_src {
	const unsigned char *p;
	size_t len, off;
	void *bufs[PLAIN_BUFS_MAX];
	size_t sizes[PLAIN_BUFS_MAX];
	unsigned nbufs;
};

static gpgme_ssize_t plain_read(void *handle, void *buffer, size_t size)
{
	struct plain_src *s = handle;
	size_t n = s->len - s->off;
	unsigned i;

	if (n > size)
		n = size;
	if (n == 0)
		return 0;
	for (i = 0; i < s->nbufs; i++)
		if (s->bufs[i] == buffer)
			break;
	if (i == s->nbufs) {
		if (s->nbufs == PLAIN_BUFS_MAX) {
			/* could not wipe it later: refuse */
			errno = EIO;
			return -1;
		}
		s->bufs[s->nbufs] = buffer;
		s->sizes[s->nbufs++] = size;
	} else if (size > s->sizes[i]) {
		s->sizes[i] = size;
	}
	memcpy(buffer, s->p + s->off, n);
	s->off += n;
	return (gpgme_ssize_t)n;
}

static gpgme_off_t plain_seek(void *handle, gpgme_off_t offset, int whence)
{
	struct plain_src *s = handle;
	gpgme_off_t base;

	switch (whence) {
	case SEEK_SET:
		base = 0;
		break;
	case SEEK_CUR:
		base = (gpgme_off_t)s->off;
		break;
	case SEEK_END:
		base = (gpgme_off_t)s->len;
		break;
	default:
		errno = EINVAL;
		return -1;
	}
	if (offset < -base || base + offset > (gpgme_off_t)s->len) {
		errno = EINVAL;
		return -1;
	}
	s->off = (size_t)(base + offset);
	return (gpgme_off_t)s->off;
}

static void plain_wipe(struct plain_src *s)
{
	unsigned i;

	for (i = 0; i < s->nbufs; i++)
		sodium_memzero(s->bufs[i], s->sizes[i]);
	s->nbufs = 0;
}

static struct gpgme_data_cbs plain_cbs = {
    .read = plain_read,
    .seek = plain_seek,
};

/*
 * Encrypt len bytes at p to k: binary OpenPGP message, no signature, no
 * compression, no default recipients. *out (*outlen bytes): malloc'd.
 */
static int encrypt_to(gpgme_ctx_t ctx, gpgme_key_t k, const unsigned char *p,
    size_t len, uint8_t **out, size_t *outlen, char *why)
{
	struct plain_src src;
	gpgme_data_t plain = NULL, cipher = NULL;
	gpgme_key_t keys[2] = {k, NULL};
	gpgme_encrypt_result_t res;
	gpgme_error_t err;
	char *mem = NULL;
	size_t n = 0;
	int r = RAMKEY_ERR_CRYPTO;

	*out = NULL;
	*outlen = 0;
	memset(&src, 0, sizeof(src));
	src.p = p;
	src.len = len;
	if ((err = gpgme_data_new_from_cbs(&plain, &plain_cbs, &src)) != 0 ||
	    (err = gpgme_data_new(&cipher)) != 0) {
		gpg_why(why, "GPGME", err);
		r = RAMKEY_ERR_NOMEM;
		goto out;
	}
	(void)gpgme_data_set_flag(plain, "sensitive", "1"); /* GPGME >= 1.19 */
	gpgme_signers_clear(ctx);
	err = gpgme_op_encrypt(ctx, keys,
	    GPGME_ENCRYPT_ALWAYS_TRUST | GPGME_ENCRYPT_NO_ENCRYPT_TO |
	        GPGME_ENCRYPT_NO_COMPRESS,
	    plain, cipher);
	res = gpgme_op_encrypt_result(ctx);
	if (res != NULL && res->invalid_recipients != NULL) {
		gpg_why(why, "GnuPG cannot encrypt to the key",
		    res->invalid_recipients->reason);
		r = RAMKEY_ERR_PGP_KEY;
		goto out;
	}
	if (err != 0) {
		gpg_why(why, "GnuPG could not encrypt", err);
		goto out;
	}
	mem = gpgme_data_release_and_get_mem(cipher, &n);
	cipher = NULL;
	if (mem == NULL || n == 0) {
		set_why(why, "GnuPG produced no encrypted message");
		goto out;
	}
	if ((*out = malloc(n)) == NULL) {
		set_why(why, "out of memory");
		r = RAMKEY_ERR_NOMEM;
		goto out;
	}
	memcpy(*out, mem, n);
	*outlen = n;
	r = 0;
out:
	plain_wipe(&src);
	gpgme_data_release(plain);
	gpgme_data_release(cipher);
	gpgme_free(mem);
	return r;
}

static int export_key(
    gpgme_ctx_t ctx, const char *fpr, struct pgp_key *key, char *why)
{
	gpgme_data_t out = NULL;
	gpgme_error_t err;
	char *mem = NULL;
	size_t n = 0;
	int r = RAMKEY_ERR_CRYPTO;

	if ((err = gpgme_data_new(&out)) != 0) {
		gpg_why(why, "GPGME", err);
		return RAMKEY_ERR_NOMEM;
	}
	if ((err = gpgme_op_export(ctx, fpr, GPGME_EXPORT_MODE_MINIMAL, out)) !=
	    0) {
		gpg_why(why, "GnuPG could not export the key", err);
		goto out;
	}
	mem = gpgme_data_release_and_get_mem(out, &n);
	out = NULL;
	if (mem == NULL || n == 0) {
		set_why(why, "GnuPG exported nothing");
		goto out;
	}
	if ((key->data = malloc(n)) == NULL) {
		set_why(why, "out of memory");
		r = RAMKEY_ERR_NOMEM;
		goto out;
	}
	memcpy(key->data, mem, n);
	key->len = n;
	r = 0;
out:
	gpgme_data_release(out);
	gpgme_free(mem);
	return r;
}

/* Not secret: only proves the key can take an encryption. */
static const unsigned char probe[] = "ramkey: can this key encrypt?";

static void run_prepare(struct pgp_worker *w, struct pgp_job *job)
{
	struct pgp_key *key = NULL;
	gpgme_ctx_t ctx = NULL;
	gpgme_key_t k = NULL;
	uint8_t *msg = NULL;
	size_t msglen = 0;
	char *home = NULL;
	int r;

	if ((r = home_make(w, &home, job->why)) != 0 ||
	    (r = ctx_new(home, &ctx, job->why)) != 0 ||
	    (r = import_one(ctx, job->data, job->len, &k, job->why)) != 0 ||
	    (r = check_key(k, job->why)) != 0)
		goto out;
	if ((key = calloc(1, sizeof(*key))) == NULL) {
		r = RAMKEY_ERR_NOMEM;
		set_why(job->why, "out of memory");
		goto out;
	}
	if (!key_fpr(k, key->fpr)) {
		r = RAMKEY_ERR_PGP_KEY;
		set_why(job->why, "the PGP key is not a version 4 key");
		goto out;
	}
	/* Fail now, before any mint, rather than after it. */
	if ((r = encrypt_to(ctx, k, probe, sizeof(probe) - 1, &msg, &msglen,
	         job->why)) != 0) {
		if (r == RAMKEY_ERR_PGP_KEY)
			set_why(job->why,
			    "the PGP key cannot encrypt (GnuPG "
			    "refuses it)");
		goto out;
	}
	if ((r = export_key(ctx, k->subkeys->fpr, key, job->why)) != 0)
		goto out;
	job->key = key;
	key = NULL;
out:
	free(msg);
	pgp_key_free(key);
	gpgme_key_unref(k);
	gpgme_release(ctx);
	home_remove(home);
	job->rc = r;
}

static void run_encrypt(struct pgp_worker *w, struct pgp_job *job)
{
	gpgme_ctx_t ctx = NULL;
	gpgme_key_t k = NULL;
	uint8_t *msg = NULL;
	size_t msglen = 0;
	char fpr[FPR_LEN + 1];
	char *home = NULL;
	int r;

	if ((r = home_make(w, &home, job->why)) != 0 ||
	    (r = ctx_new(home, &ctx, job->why)) != 0 ||
	    (r = import_one(ctx, job->data, job->len, &k, job->why)) != 0)
		goto out;
	if (!key_fpr(k, fpr) || strcmp(fpr, job->fpr) != 0) {
		r = RAMKEY_ERR_CRYPTO;
		set_why(job->why, "the PGP key changed since it was checked");
		goto out;
	}
	if ((r = encrypt_to(ctx, k, job->secret, job->secret_len, &msg, &msglen,
	         job->why)) != 0)
		goto out;
	if ((r = ramkey_b64_encode(msg, msglen, &job->b64)) != 0)
		set_why(job->why, "out of memory");
out:
	/* gpg has had the secret (or never will): drop our copy now. */
	sodium_free(job->secret);
	job->secret = NULL;
	job->secret_len = 0;
	free(msg);
	gpgme_key_unref(k);
	gpgme_release(ctx);
	home_remove(home);
	job->rc = r;
}

static void signal_loop(struct pgp_worker *w)
{
	uint64_t one = 1;

	/* EAGAIN: the counter is already non-zero; the loop will look. */
	while (write(w->efd, &one, sizeof(one)) < 0 && errno == EINTR)
		;
}

static void *worker_main(void *arg)
{
	struct pgp_worker *w = arg;
	struct pgp_job *job;

	in_worker = true;
	pthread_mutex_lock(&w->mu);
	for (;;) {
		while (!w->stop && w->queue.head == NULL)
			pthread_cond_wait(&w->cv, &w->mu);
		if (w->stop)
			break;
		job = list_pop(&w->queue);
		job->state = JS_RUNNING;
		w->running = job;
		pthread_mutex_unlock(&w->mu);

		if (job->kind == JOB_PREPARE)
			run_prepare(w, job);
		else
			run_encrypt(w, job);

		pthread_mutex_lock(&w->mu);
		w->running = NULL;
		job->state = JS_DONE;
		list_push(&w->done, job);
		signal_loop(w);
	}
	pthread_mutex_unlock(&w->mu);
	return NULL;
}

/* --- Jobs (loop thread) --- */

static void job_free(struct pgp_job *job)
{
	if (job == NULL)
		return;
	if (job->fetch != NULL)
		job->w->fetcher.cancel(job->w->fetcher.ctx, job->fetch);
	free(job->data);
	if (job->secret != NULL)
		sodium_free(job->secret);
	pgp_key_free(job->key);
	free(job->b64);
	free(job);
}

static struct pgp_job *job_new(struct pgp_worker *w, enum job_kind kind)
{
	struct pgp_job *job = calloc(1, sizeof(*job));

	if (job == NULL)
		return NULL;
	job->w = w;
	job->kind = kind;
	return job;
}

/* A result known on the loop: delivered from the loop all the same. */
static void job_finish(struct pgp_job *job, int rc, const char *why)
{
	struct pgp_worker *w = job->w;

	job->rc = rc;
	set_why(job->why, "%s", why);
	pthread_mutex_lock(&w->mu);
	job->state = JS_DONE;
	list_push(&w->done, job);
	pthread_mutex_unlock(&w->mu);
	signal_loop(w);
}

static void job_enqueue(struct pgp_job *job)
{
	struct pgp_worker *w = job->w;

	pthread_mutex_lock(&w->mu);
	job->state = JS_QUEUED;
	list_push(&w->queue, job);
	pthread_cond_signal(&w->cv);
	pthread_mutex_unlock(&w->mu);
}

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
	bool cancelled;

	while (read(fd, &v, sizeof(v)) < 0 && errno == EINTR)
		;
	w->busy++;
	while (!w->dying) {
		pthread_mutex_lock(&w->mu);
		if ((job = list_pop(&w->done)) != NULL)
			job->state = JS_CALLBACK;
		cancelled = job != NULL && job->cancelled;
		pthread_mutex_unlock(&w->mu);
		if (job == NULL)
			break;
		if (!cancelled)
			deliver(job);
		job_free(job);
	}
	if (--w->busy == 0 && w->dying)
		worker_destroy(w);
}

static void on_keybase(
    void *arg, int rc, const char *bundle, size_t len, const char *why)
{
	struct pgp_job *job = arg;
	struct pgp_worker *w = job->w;

	job->fetch = NULL;
	pthread_mutex_lock(&w->mu);
	list_remove(&w->fetching, job);
	pthread_mutex_unlock(&w->mu);
	if (rc != 0) {
		job_finish(job, rc, why != NULL ? why : ramkey_strerror(rc));
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
	size_t len = strnlen(spec, PGP_SPEC_MAX + 1), i, n;
	char *clean = NULL;
	int r;

	*data = NULL;
	*datalen = 0;
	user[0] = '\0';
	if (len > PGP_SPEC_MAX) {
		set_why(why, "the PGP key is larger than %d KiB",
		    PGP_SPEC_MAX / 1024);
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
	if ((job = job_new(w, JOB_PREPARE)) == NULL)
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
	pthread_mutex_lock(&w->mu);
	job->state = JS_FETCH;
	list_push(&w->fetching, job);
	pthread_mutex_unlock(&w->mu);
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
	if (len > PGP_SECRET_MAX)
		return RAMKEY_ERR_TOO_LARGE;
	if ((job = job_new(w, JOB_ENCRYPT)) == NULL)
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

	if (job == NULL)
		return;
	w = job->w;
	pthread_mutex_lock(&w->mu);
	switch (job->state) {
	case JS_FETCH:
		list_remove(&w->fetching, job);
		break;
	case JS_QUEUED:
		list_remove(&w->queue, job);
		break;
	case JS_DONE:
		list_remove(&w->done, job);
		break;
	case JS_RUNNING:
		/* The worker finishes it; the loop drops the result. */
		job->cancelled = true;
		/* fall through */
	case JS_CALLBACK:
		pthread_mutex_unlock(&w->mu);
		return;
	}
	pthread_mutex_unlock(&w->mu);
	job_free(job); /* cancels a Keybase lookup, wipes a secret */
}

/* --- The worker --- */

int pgp_worker_new(struct evloop *loop, const struct pgp_fetcher *fetcher,
    struct pgp_worker **ret)
{
	struct pgp_worker *w = NULL;
	sigset_t all, old;
	const char *t;
	int r = RAMKEY_ERR_NOMEM;

	*ret = NULL;
	if (loop == NULL)
		return RAMKEY_ERR_INVALID;
	if (sodium_init() < 0)
		return RAMKEY_ERR_CRYPTO;
	pthread_once(&gpgme_once, gpgme_init_once);
	if ((w = calloc(1, sizeof(*w))) == NULL)
		goto out;
	w->loop = loop;
	w->efd = -1;
	w->unavailable = gpgme_unavailable;
	w->self_sigs_only = gpgme_self_sigs_only;
	t = getenv("TMPDIR");
	if ((w->tmpdir = strdup(
	         t != NULL && t[0] == '/' && is_dir(t) ? t : "/tmp")) == NULL)
		goto out;
	if (fetcher != NULL)
		w->fetcher = *fetcher;
	r = RAMKEY_ERR_SYSTEM;
	if (pthread_mutex_init(&w->mu, NULL) != 0)
		goto out;
	if (pthread_cond_init(&w->cv, NULL) != 0) {
		pthread_mutex_destroy(&w->mu);
		goto out;
	}
	w->locks_ready = true;
	if ((w->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) == -1)
		goto out;
	if ((r = evloop_add(loop, w->efd, EPOLLIN, on_efd, w)) != 0) {
		close(w->efd);
		w->efd = -1;
		goto out;
	}
	/* Signals are the loop thread's business, never the worker's. */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	r = pthread_create(&w->thread, NULL, worker_main, w);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (r != 0) {
		errno = r;
		r = RAMKEY_ERR_SYSTEM;
		goto out;
	}
	w->thread_started = true;
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
	if (w == NULL)
		return;
	if (w->thread_started) {
		/* A job in the worker runs to its end (and cleans up). */
		pthread_mutex_lock(&w->mu);
		w->stop = true;
		pthread_cond_broadcast(&w->cv);
		pthread_mutex_unlock(&w->mu);
		pthread_join(w->thread, NULL);
		w->thread_started = false;
	}
	free_list(&w->fetching); /* cancels their lookups */
	free_list(&w->queue);
	free_list(&w->done);
	job_free(w->running); /* NULL once the thread is joined */
	if (w->efd != -1) {
		evloop_del(w->loop, w->efd);
		close(w->efd);
	}
	if (w->locks_ready) {
		pthread_cond_destroy(&w->cv);
		pthread_mutex_destroy(&w->mu);
	}
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
