/*
 * ramkey-pgp-helper: one PGP job of ramkey-agent in a fresh process.
 *
 *   ramkey-pgp-helper HOME    request on standard input, reply on
 *                             standard output (pgp_wire.h)
 *
 * The agent starts it (posix_spawn, never a plain fork of its own address
 * space) with an empty GnuPG home it made for the job, a pipe on each of
 * standard input and output, /dev/null on standard error, no other
 * descriptor and a minimal environment, as the leader of a process group
 * of its own. It links GPGME and libsodium and nothing of the agent: its
 * memory holds the job's input and nothing else.
 *
 * Before it reads a byte it confines itself (confine.h); gpg and gpgconf,
 * which GPGME runs from it, inherit the confinement. It then reads the
 * request, does the one job, writes the reply, wipes the secret and what
 * GPGME copied of it, empties its home and exits. The agent removes the
 * (empty) home afterwards, and kills the process group if the job outlives
 * its deadline.
 *
 * GnuPG: the home's gpg.conf says no-autostart, so gpg never starts a
 * gpg-agent, dirmngr or keyboxd (importing public keys and encrypting do
 * not need them); the context is also offline. GPGME copies plaintext
 * through an internal buffer of the data object on its way to gpg; we feed
 * the data object through our own read callback, remember the buffers
 * GPGME hands it and wipe them before the object is released (GPGME >=
 * 1.19 also honours the "sensitive" flag we set, which does the same).
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <gpgme.h>
#include <sodium.h>

#include "confine.h"
#include "pgp_wire.h"
#include "ramkey_err.h"
#include "rmtree.h"

#define WHY_MAX PGP_WIRE_WHY_MAX
#define FPR_LEN PGP_WIRE_FPR_LEN
#define PLAIN_BUFS_MAX 8

#define WHY_NOT_A_KEY "not an OpenPGP public key"
#define WHY_REVOKED "the PGP key is revoked"
#define WHY_NO_ENC_SUBKEY "the PGP key cannot encrypt (no encryption subkey)"
#define WHY_ENC_SUBKEYS_DEAD                                                   \
	"the PGP key cannot encrypt (its encryption subkeys are expired or "   \
	"revoked)"
#define WHY_SECRET_KEY                                                         \
	"the key block holds a secret key; give the public key only"
#define WHY_NO_GPG                                                             \
	"GnuPG (gpg) is not installed on the agent's host, so PGP keys "       \
	"cannot be used"

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

/* The job: its input, its result. */
struct job {
	struct pgp_wire_request req;
	uint8_t *key;	       /* key material (malloc) */
	unsigned char *secret; /* sodium_malloc */
	int rc;
	char why[WHY_MAX];
	char fpr[FPR_LEN + 1];
	uint8_t *data; /* export or message (malloc) */
	size_t data_len;
};

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

static int read_full(int fd, void *buf, size_t n)
{
	uint8_t *p = buf;

	while (n > 0) {
		ssize_t k = read(fd, p, n);

		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			return -1;
		p += k;
		n -= (size_t)k;
	}
	return 0;
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

/* --- GPGME, once --- */

/*
 * gpg starts with no signal blocked whatever the helper's mask (the agent
 * starts the helper with an empty one; this makes it so for gpg too).
 */
static void atfork_child(void)
{
	sigset_t none;

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
 * Initialise GPGME (which also sets SIGPIPE to SIG_IGN) and check GnuPG.
 * No locale is set: nothing gpg prints reaches anyone.
 */
static int gpgme_setup(bool *self_sigs_only, char *why)
{
	gpgme_engine_info_t info = NULL;
	unsigned v[3];

	*self_sigs_only = false;
	if (gpgme_check_version(GPGME_VERSION) == NULL) {
		set_why(why, "the GPGME library is older than the one ramkey "
		    "was built with");
		return RAMKEY_ERR_UNAVAILABLE;
	}
	if (gpgme_engine_check_version(GPGME_PROTOCOL_OpenPGP) != 0 ||
	    gpgme_get_engine_info(&info) != 0) {
		set_why(why, WHY_NO_GPG);
		return RAMKEY_ERR_UNAVAILABLE;
	}
	for (; info != NULL; info = info->next)
		if (info->protocol == GPGME_PROTOCOL_OpenPGP)
			break;
	if (info == NULL || info->version == NULL) {
		set_why(why, WHY_NO_GPG);
		return RAMKEY_ERR_UNAVAILABLE;
	}
	version_parse(info->version, v);
	if (!version_at_least(v, 2, 2, 0)) {
		set_why(why, "GnuPG (gpg) on the agent's host is older than "
		    "2.2, so PGP keys cannot be used");
		return RAMKEY_ERR_UNAVAILABLE;
	}
	*self_sigs_only = version_at_least(v, 2, 2, 17);
	if (pthread_atfork(NULL, NULL, atfork_child) != 0) {
		set_why(why, "cannot set up the PGP helper (pthread_atfork "
		    "failed)");
		return RAMKEY_ERR_UNAVAILABLE;
	}
	return 0;
}

static int home_setup(const char *home, bool self_sigs_only, char *why)
{
	char err[128];

	/*
	 * An empty common.conf keeps GnuPG >= 2.4 from writing one that
	 * turns on keyboxd for a new home.
	 */
	if (home_file(home, "gpg.conf", gpg_conf,
		self_sigs_only ? gpg_conf_import : NULL) != 0 ||
	    home_file(home, "common.conf", "", NULL) != 0) {
		set_why(why, "cannot set up a temporary GnuPG home: %s",
		    strerror_r(errno, err, sizeof(err)));
		return RAMKEY_ERR_CRYPTO;
	}
	return 0;
}

/* --- GPGME work --- */

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
		/* gpg did not run or said nothing: our problem, not the
		 * key's */
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
	gpgme_user_id_t uid;
	bool capable = false, usable = false;
	size_t nsub = 0, nuid = 0;

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
		if (sk != k->subkeys)
			nsub++;
		if (sk->can_encrypt)
			capable = true;
		if (subkey_usable(sk))
			usable = true;
	}
	for (uid = k->uids; uid != NULL; uid = uid->next)
		nuid++;
	if (nsub > PGP_KEY_SUBKEYS_MAX) {
		set_why(why, "the PGP key has %zu subkeys; at most %d are "
		    "accepted", nsub, PGP_KEY_SUBKEYS_MAX);
		return RAMKEY_ERR_PGP_KEY;
	}
	if (nuid > PGP_KEY_UIDS_MAX) {
		set_why(why, "the PGP key has %zu user IDs; at most %d are "
		    "accepted", nuid, PGP_KEY_UIDS_MAX);
		return RAMKEY_ERR_PGP_KEY;
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
	if (n > PGP_WIRE_DATA_MAX) {
		set_why(why, "GnuPG produced an encrypted message of %zu "
		    "bytes", n);
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

static int export_key(gpgme_ctx_t ctx, const char *fpr, uint8_t **data,
    size_t *len, char *why)
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
	if (n > PGP_KEY_EXPORT_MAX) {
		set_why(why, "the PGP key is %zu KiB after a minimal export; "
		    "at most %d KiB is accepted", (n + 1023) / 1024,
		    PGP_KEY_EXPORT_MAX / 1024);
		r = RAMKEY_ERR_PGP_KEY;
		goto out;
	}
	if ((*data = malloc(n)) == NULL) {
		set_why(why, "out of memory");
		r = RAMKEY_ERR_NOMEM;
		goto out;
	}
	memcpy(*data, mem, n);
	*len = n;
	r = 0;
out:
	gpgme_data_release(out);
	gpgme_free(mem);
	return r;
}

/* Not secret: only proves the key can take an encryption. */
static const unsigned char probe[] = "ramkey: can this key encrypt?";

static void run_prepare(const char *home, struct job *job)
{
	gpgme_ctx_t ctx = NULL;
	gpgme_key_t k = NULL;
	uint8_t *msg = NULL;
	size_t msglen = 0;
	int r;

	if ((r = ctx_new(home, &ctx, job->why)) != 0 ||
	    (r = import_one(ctx, job->key, job->req.key_len, &k,
		job->why)) != 0 ||
	    (r = check_key(k, job->why)) != 0)
		goto out;
	if (!key_fpr(k, job->fpr)) {
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
	r = export_key(ctx, k->subkeys->fpr, &job->data, &job->data_len,
	    job->why);
out:
	if (r != 0)
		job->fpr[0] = '\0';
	free(msg);
	gpgme_key_unref(k);
	gpgme_release(ctx);
	job->rc = r;
}

static void run_encrypt(const char *home, struct job *job)
{
	gpgme_ctx_t ctx = NULL;
	gpgme_key_t k = NULL;
	char fpr[FPR_LEN + 1];
	int r;

	if ((r = ctx_new(home, &ctx, job->why)) != 0 ||
	    (r = import_one(ctx, job->key, job->req.key_len, &k,
		job->why)) != 0)
		goto out;
	if (!key_fpr(k, fpr) || strcmp(fpr, job->req.fpr) != 0) {
		r = RAMKEY_ERR_CRYPTO;
		set_why(job->why, "the PGP key changed since it was checked");
		goto out;
	}
	r = encrypt_to(ctx, k, job->secret, job->req.secret_len, &job->data,
	    &job->data_len, job->why);
	if (r == 0)
		memcpy(job->fpr, fpr, sizeof(job->fpr));
out:
	/* gpg has had the secret (or never will): drop our copy now. */
	sodium_free(job->secret);
	job->secret = NULL;
	gpgme_key_unref(k);
	gpgme_release(ctx);
	job->rc = r;
}

/* --- The request and the reply --- */

static int read_request(struct job *job, char *why)
{
	uint8_t head[PGP_WIRE_LEN_SIZE + PGP_WIRE_REQ_HDR];

	if (read_full(STDIN_FILENO, head, sizeof(head)) != 0 ||
	    pgp_wire_request_parse(head, &job->req) != 0) {
		set_why(why, "the PGP helper got a malformed request");
		return RAMKEY_ERR_PROTOCOL;
	}
	if (job->req.key_len > 0) {
		if ((job->key = malloc(job->req.key_len)) == NULL) {
			set_why(why, "out of memory");
			return RAMKEY_ERR_NOMEM;
		}
		if (read_full(STDIN_FILENO, job->key, job->req.key_len) != 0)
			goto short_read;
	}
	if (job->req.secret_len > 0) {
		if ((job->secret = sodium_malloc(job->req.secret_len)) ==
		    NULL) {
			set_why(why, "out of memory");
			return RAMKEY_ERR_NOMEM;
		}
		if (read_full(STDIN_FILENO, job->secret,
			job->req.secret_len) != 0)
			goto short_read;
	}
	return 0;
short_read:
	set_why(why, "the PGP helper got a truncated request");
	return RAMKEY_ERR_PROTOCOL;
}

static int write_reply(const struct job *job, const struct pgp_confined *c)
{
	uint8_t head[PGP_WIRE_LEN_SIZE + PGP_WIRE_REP_HDR];
	struct pgp_wire_reply rep;
	struct iovec iov[4];
	size_t done = 0, total = 0;
	int i, n = 0;

	memset(&rep, 0, sizeof(rep));
	rep.rc = job->rc;
	rep.confinement = c->applied;
	rep.landlock_abi = (uint8_t)c->landlock_abi;
	memcpy(rep.fpr, job->fpr, sizeof(rep.fpr));
	rep.data_len = job->rc == 0 ? (uint32_t)job->data_len : 0;
	rep.why_len = job->rc != 0 ? (uint32_t)strlen(job->why) : 0;
	rep.lacking_len = (uint32_t)strlen(c->lacking);
	pgp_wire_reply_head(&rep, head);
	iov[n].iov_base = head;
	iov[n++].iov_len = sizeof(head);
	iov[n].iov_base = job->data;
	iov[n++].iov_len = rep.data_len;
	iov[n].iov_base = (void *)job->why;
	iov[n++].iov_len = rep.why_len;
	iov[n].iov_base = (void *)c->lacking;
	iov[n++].iov_len = rep.lacking_len;
	for (i = 0; i < n; i++)
		total += iov[i].iov_len;
	i = 0;
	while (done < total) {
		ssize_t k = writev(STDOUT_FILENO, iov + i, n - i);

		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0)
			return -1;
		done += (size_t)k;
		while (k > 0 && i < n) {
			if ((size_t)k >= iov[i].iov_len) {
				k -= (ssize_t)iov[i].iov_len;
				iov[i++].iov_len = 0;
			} else {
				iov[i].iov_base =
				    (uint8_t *)iov[i].iov_base + k;
				iov[i].iov_len -= (size_t)k;
				k = 0;
			}
		}
	}
	return 0;
}

static void usage(void)
{
	fprintf(stderr,
	    "usage: ramkey-pgp-helper HOME\n"
	    "\n"
	    "Runs one PGP job of ramkey-agent (which starts it; not for use by "
	    "hand):\nthe request on standard input, the reply on standard "
	    "output, HOME an empty\ndirectory for GnuPG.\n");
}

int main(int argc, char **argv)
{
	struct pgp_confined conf;
	struct job job;
	const char *home;
	bool self_sigs_only = false;
	int status = 1;

	memset(&job, 0, sizeof(job));
	memset(&conf, 0, sizeof(conf));
	if (argc != 2 || argv[1][0] != '/') {
		usage();
		return 2;
	}
	home = argv[1];
	/* If the agent goes, so does the job. */
	(void)prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
	if ((job.rc = pgp_confine(home, &conf, job.why, sizeof(job.why))) !=
	    0)
		goto reply;
	if (sodium_init() < 0) {
		job.rc = RAMKEY_ERR_CRYPTO;
		set_why(job.why, "the PGP helper cannot initialise libsodium");
		goto reply;
	}
	if ((job.rc = read_request(&job, job.why)) != 0)
		goto reply;
	if ((job.rc = gpgme_setup(&self_sigs_only, job.why)) != 0 ||
	    job.req.op == PGP_OP_PROBE)
		goto reply;
	if ((job.rc = home_setup(home, self_sigs_only, job.why)) != 0)
		goto reply;
	if (job.req.op == PGP_OP_PREPARE)
		run_prepare(home, &job);
	else
		run_encrypt(home, &job);
reply:
	if (job.secret != NULL)
		sodium_free(job.secret);
	job.secret = NULL;
	if (write_reply(&job, &conf) == 0)
		status = 0;
	(void)pgp_empty_dir(home);
	free(job.key);
	free(job.data);
	/* No atexit handlers: there is nothing to flush, and a sanitizer's
	 * leak check would need /proc and ptrace, which are refused. */
	_exit(status);
}
