/*
 * PGP-encrypted secrets (the Terraform resource's pgp_key): validate a public key given as
 * base64 of a binary OpenPGP key, as an ASCII-armored key, or as
 * "keybase:NAME" (fetched from keybase_url), and encrypt a secret to it
 * (binary OpenPGP message, returned base64). GPGME runs in a worker thread
 * with a private, temporary GnuPG home per job, removed afterwards; Keybase
 * lookups go through the fetcher the agent wires in. Nothing here blocks
 * the loop.
 */
#ifndef RAMKEY_PGP_H
#define RAMKEY_PGP_H

#include <stddef.h>

struct evloop;
struct pgp_worker;
struct pgp_key;
struct pgp_job;

#define PGP_KEYBASE_NAME_MAX 64

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

int pgp_worker_new(struct evloop *loop, const struct pgp_fetcher *fetcher,
    struct pgp_worker **ret);
/* Joins the worker thread; pending jobs end without their callbacks. */
void pgp_worker_free(struct pgp_worker *w);
/* Why PGP requests cannot be served (GnuPG missing...), or NULL. */
const char *pgp_worker_unavailable(const struct pgp_worker *w);

/*
 * rc: 0 with key (the caller owns it), or
 *   RAMKEY_ERR_PGP_KEY	     malformed, expired, revoked, or no key usable
 *			     for encryption (why says which)
 *   RAMKEY_ERR_KEYBASE_USER the Keybase name does not resolve
 *   RAMKEY_ERR_KEYBASE	     Keybase unreachable or answered garbage
 * why is a one-line description, valid during the callback.
 */
typedef void (*pgp_key_fn)(void *arg, int rc, struct pgp_key *key,
    const char *why);
/* owner: the local user the key is for (jobs are queued fairly by it). */
int pgp_key_prepare(struct pgp_worker *w, const char *spec, const char *owner,
    pgp_key_fn fn, void *arg, struct pgp_job **ret);

/* encrypted_b64 is valid during the callback only. */
typedef void (*pgp_encrypt_fn)(void *arg, int rc, const char *encrypted_b64,
    const char *why);
int pgp_encrypt(struct pgp_worker *w, const struct pgp_key *key,
    const char *owner, const char *secret, size_t len, pgp_encrypt_fn fn,
    void *arg, struct pgp_job **ret);

/* The callback of a cancelled job never runs. */
void pgp_job_cancel(struct pgp_job *job);

/* 40 lower-case hex characters of the primary key's fingerprint. */
const char *pgp_key_fingerprint(const struct pgp_key *key);
void pgp_key_free(struct pgp_key *key);

#endif
