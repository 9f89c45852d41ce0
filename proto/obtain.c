#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sodium.h>

#include "frame.h"
#include "obtain.h"
#include "ramkey_err.h"
#include "requester.h"

static void say(char *why, size_t whylen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void say(char *why, size_t whylen, const char *fmt, ...)
{
	va_list ap;

	if (why == NULL || whylen == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(why, whylen, fmt, ap);
	va_end(ap);
}

int ramkey_obtain_start(const char *socket, struct ramkey_request *req,
    uint64_t wait_ms, struct ramkey_obtain **op, char *why, size_t whylen)
{
	struct ramkey_obtain *o = NULL;
	int r;

	*op = NULL;
	if (why != NULL && whylen > 0)
		why[0] = '\0';
	if (req == NULL || (req->op != RAMKEY_OP_OPEN_SESSION &&
	    req->op != RAMKEY_OP_FETCH)) {
		say(why, whylen, "only open_session and fetch return a key");
		return RAMKEY_ERR_INVALID;
	}
	if ((o = calloc(1, sizeof(*o))) == NULL) {
		say(why, whylen, "out of memory");
		return RAMKEY_ERR_NOMEM;
	}
	o->fd = -1;
	o->op = req->op;
	o->deadline_ms = ramkey_now_ms() + wait_ms;
	/* Connect (and check the agent) first: the agent accepts the
	 * connection while we make the key pair. */
	if ((r = ramkey_agent_connect(socket, o->deadline_ms, &o->fd, why,
	    whylen)) != 0)
		goto out;
	/* Before any sodium_malloc: libsodium aborts the process when it is
	 * used uninitialised, and a PGP request makes no key pair. */
	if ((r = ramkey_crypto_init()) != 0) {
		say(why, whylen, "cannot initialise libsodium");
		goto out;
	}
	req->has_seal_pk = false;
	if (req->pgp_key == NULL) {
		if ((r = ramkey_seal_keypair_new(&o->kp)) != 0) {
			say(why, whylen, "cannot make a one-time sealing "
			    "key: %s", ramkey_strerror(r));
			goto out;
		}
		memcpy(req->seal_pk, o->kp->pk, sizeof(req->seal_pk));
		req->has_seal_pk = true;
	}
	req->has_timeout = true;
	req->timeout_ms = ramkey_request_timeout_ms(wait_ms);
	if ((r = ramkey_agent_send(o->fd, req, o->deadline_ms, why,
	    whylen)) != 0)
		goto out;
	o->state = RAMKEY_OBTAIN_WAITING;
	*op = o;
	o = NULL;
out:
	ramkey_obtain_free(o);
	return r;
}

/* Is the secret in the form asked for? Opens it when sealed. */
static int open_secret(struct ramkey_obtain *o, char *why, size_t whylen)
{
	const struct ramkey_key_info *k = &o->reply->key;
	int r;

	if (o->kp == NULL) {
		if (k->sealed != NULL || k->encrypted_secret == NULL ||
		    k->key_fingerprint == NULL) {
			say(why, whylen, "the agent's secret is not "
			    "PGP-encrypted as this request asked");
			return RAMKEY_ERR_CRYPTO;
		}
		return 0;
	}
	if (k->sealed == NULL || k->encrypted_secret != NULL) {
		say(why, whylen, "the agent's secret is not sealed to this "
		    "request's one-time key");
		return RAMKEY_ERR_CRYPTO;
	}
	r = ramkey_seal_open(o->kp, k->sealed, k->sealed_len, &o->secret,
	    &o->secret_len);
	if (r == RAMKEY_ERR_NOMEM) {
		say(why, whylen, "out of memory");
		return r;
	}
	if (r != 0) {
		say(why, whylen, "the agent's secret is not sealed to this "
		    "request's one-time key");
		return RAMKEY_ERR_CRYPTO;
	}
	return 0;
}

int ramkey_obtain_finish(struct ramkey_obtain *o, char *why, size_t whylen)
{
	int r;

	if (why != NULL && whylen > 0)
		why[0] = '\0';
	if (o == NULL || o->state != RAMKEY_OBTAIN_WAITING) {
		say(why, whylen, "no request is waiting for its answer");
		return RAMKEY_ERR_INVALID;
	}
	r = ramkey_agent_receive(o->fd, o->op, o->deadline_ms, &o->reply, why,
	    whylen);
	close(o->fd);
	o->fd = -1;
	if (r != 0) {
		o->state = RAMKEY_OBTAIN_NO_REPLY;
		return r;
	}
	if (o->reply->error != 0) {
		o->state = RAMKEY_OBTAIN_REFUSED;
		say(why, whylen, "%s", o->reply->error_message != NULL ?
		    o->reply->error_message : ramkey_strerror(o->reply->error));
		return o->reply->error;
	}
	if ((r = open_secret(o, why, whylen)) != 0) {
		o->state = RAMKEY_OBTAIN_UNUSABLE;
		return r;
	}
	/* The one-time key has done its job. */
	ramkey_seal_keypair_free(o->kp);
	o->kp = NULL;
	ramkey_credential_from_reply(&o->cred, o->reply, o->secret);
	o->state = RAMKEY_OBTAIN_DONE;
	return 0;
}

void ramkey_obtain_free(struct ramkey_obtain *o)
{
	if (o == NULL)
		return;
	if (o->fd >= 0)
		close(o->fd);
	if (o->secret != NULL)
		ramkey_secure_free(o->secret);
	ramkey_seal_keypair_free(o->kp);
	ramkey_reply_free(o->reply);
	sodium_memzero(o, sizeof(*o));
	free(o);
}
