/*
 * PGP-encrypted secrets (the Terraform resource's pgp_key): validate a
 * public key given as base64 of a binary OpenPGP key, as an ASCII-armored
 * key, or as "keybase:NAME" (fetched from keybase_url), and encrypt a
 * secret to it (binary OpenPGP message, returned base64).
 *
 * The agent never parses a key itself. Each job (a key check, an
 * encryption) runs in a fresh ramkey-pgp-helper process that links GPGME
 * and nothing of the agent, confines itself before it reads its input
 * (confine.h: rlimits, no_new_privs, Landlock and seccomp where the kernel
 * has them) and gets a private, empty GnuPG home, removed afterwards. The
 * agent talks to it over two pipes (pgp_wire.h) on its event loop and
 * reaps it through a pidfd: nothing here blocks the loop.
 *
 * Fairness: jobs are queued by the local user the key is for (the owner:
 * PAM's requests all come from root). Jobs of one owner run one at a
 * time, in order; owners with work take turns; at most helpers_max
 * helpers run at once. One user's big or slow keys therefore hold at most
 * one helper, and everyone else's jobs go on in the others.
 *
 * Bounds: a key spec of at most 256 KiB; after its minimal import at most
 * PGP_KEY_SUBKEYS_MAX subkeys and PGP_KEY_UIDS_MAX user IDs, and a minimal
 * export of at most PGP_KEY_EXPORT_MAX (pgp_wire.h); per job the helper's
 * rlimits (confine.h) and a wall-clock deadline, past which the agent
 * kills the helper's process group and the job fails saying so.
 *
 * Keybase lookups go through the fetcher the agent wires in.
 */
#ifndef RAMKEY_PGP_H
#define RAMKEY_PGP_H

#include <stddef.h>

struct evloop;
struct pgp_worker;
struct pgp_key;
struct pgp_job;

#define PGP_KEYBASE_NAME_MAX 64
/* Helpers running at once, by default. */
#define PGP_HELPERS_DEFAULT 2
/* Wall-clock time one job may take in its helper, by default. */
#define PGP_DEADLINE_MS_DEFAULT 10000

/*
 * Where "keybase:NAME" keys come from (the Keybase client of the cloud
 * layer, wired by the agent's start-up): fetch NAME's armored public key.
 * fn runs once from the loop unless cancelled; rc as keybase.h says.
 */
typedef void (*pgp_fetched_fn)(void *arg, int rc, const char *bundle,
    size_t len, const char *why);
struct pgp_fetcher {
	void *ctx;
	int (*fetch)(void *ctx, const char *name, pgp_fetched_fn fn, void *arg,
	    void **handle);
	void (*cancel)(void *ctx, void *handle);
};

struct pgp_config {
	const char *helper;	  /* path of ramkey-pgp-helper */
	unsigned helpers_max;	  /* 0: PGP_HELPERS_DEFAULT */
	unsigned deadline_ms;	  /* 0: PGP_DEADLINE_MS_DEFAULT */
	const char *tmpdir;	  /* GnuPG homes; NULL: $TMPDIR or /tmp */
};

/*
 * Runs the helper once (synchronously, within the deadline) to learn
 * whether GnuPG works and how the helper is confined; when it does not,
 * the worker is made all the same and pgp_worker_unavailable() says why.
 */
int pgp_worker_new(struct evloop *loop, const struct pgp_config *cfg,
    const struct pgp_fetcher *fetcher, struct pgp_worker **ret);
/* Kills running helpers and waits for them; pending jobs end without
 * their callbacks. */
void pgp_worker_free(struct pgp_worker *w);
/* Why PGP requests cannot be served (GnuPG missing...), or NULL. */
const char *pgp_worker_unavailable(const struct pgp_worker *w);

/* What the status document shows. */
struct pgp_status {
	/* The confinement the last helper reported, by name ("no_new_privs",
	 * "rlimits", "landlock", "seccomp"), NULL-terminated. */
	const char *confinement[5];
	/* What the kernel lacked (e.g. "landlock: not in this kernel"), one
	 * line, or "". */
	const char *lacking;
	unsigned landlock_abi; /* 0: none */
	unsigned running;      /* helpers now */
	unsigned queued;       /* jobs waiting for a helper */
	unsigned helpers_max;
	unsigned deadline_ms;
};
void pgp_worker_status(const struct pgp_worker *w, struct pgp_status *st);

/*
 * rc: 0 with key (the caller owns it), or
 *   RAMKEY_ERR_PGP_KEY	     malformed, expired, revoked, no key usable
 *			     for encryption, over a bound, or took longer
 *			     than the deadline (why says which)
 *   RAMKEY_ERR_KEYBASE_USER the Keybase name does not resolve
 *   RAMKEY_ERR_KEYBASE	     Keybase unreachable or answered garbage
 *   RAMKEY_ERR_UNAVAILABLE  GnuPG cannot be used
 *   RAMKEY_ERR_CRYPTO	     the helper failed
 * why is a one-line description, valid during the callback.
 */
typedef void (*pgp_key_fn)(void *arg, int rc, struct pgp_key *key,
    const char *why);
/* owner: the local user the key is for (jobs are queued fairly by it). */
int pgp_key_prepare(struct pgp_worker *w, const char *spec, const char *owner,
    pgp_key_fn fn, void *arg, struct pgp_job **ret);

/*
 * encrypted_b64 is valid during the callback only. The secret is copied
 * into locked memory, written to the helper's pipe and wiped as soon as
 * it is written (or the job ends).
 */
typedef void (*pgp_encrypt_fn)(void *arg, int rc, const char *encrypted_b64,
    const char *why);
int pgp_encrypt(struct pgp_worker *w, const struct pgp_key *key,
    const char *owner, const char *secret, size_t len, pgp_encrypt_fn fn,
    void *arg, struct pgp_job **ret);

/* The callback of a cancelled job never runs; a running helper is
 * killed. */
void pgp_job_cancel(struct pgp_job *job);

/* 40 lower-case hex characters of the primary key's fingerprint. */
const char *pgp_key_fingerprint(const struct pgp_key *key);
void pgp_key_free(struct pgp_key *key);

#endif
