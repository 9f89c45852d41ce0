/*
 * The requester sequence, written once for the PAM module (open_session)
 * and the client (fetch, credential-process):
 *
 *   ramkey_obtain_start():  connect to the agent and check it is the real
 *                           one, make the one-time X25519 key pair (unless
 *                           the request carries a PGP key), send;
 *   (the caller may do slow local work here while the agent works: the
 *    PAM module looks up the user's groups for writing the file)
 *   ramkey_obtain_finish(): read the reply, check that the secret came in
 *                           the form asked for (sealed to our key, or
 *                           PGP-encrypted), open it into sodium memory
 *                           and build the credential the formats render;
 *   ramkey_deliver():       render a format and write the secret_file as
 *                           the user (deliver.h).
 *
 * A reply whose secret is not in the form asked for is not an answer from
 * the agent we asked: it is never used. The secret stays in sodium_malloc
 * memory and is wiped by ramkey_obtain_free().
 */
#ifndef RAMKEY_OBTAIN_H
#define RAMKEY_OBTAIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "message.h"
#include "seal.h"
#include "secret_format.h"

enum ramkey_obtain_state {
	RAMKEY_OBTAIN_WAITING = 0, /* sent; ramkey_obtain_finish() is next */
	RAMKEY_OBTAIN_NO_REPLY,	   /* no usable reply: unreachable, silent,
				    * cut off or malformed (why says which) */
	RAMKEY_OBTAIN_REFUSED,	   /* the agent said no: reply->error and
				    * reply->error_message */
	RAMKEY_OBTAIN_UNUSABLE,	   /* the secret is not in the form asked
				    * for; reply->session, if any, names the
				    * session to end (close_session aborted) */
	RAMKEY_OBTAIN_DONE,	   /* cred holds the key */
};

struct ramkey_obtain {
	enum ramkey_obtain_state state;
	struct ramkey_reply *reply;    /* REFUSED, UNUSABLE, DONE */
	char *secret;		       /* DONE without PGP: sodium_malloc'd */
	size_t secret_len;
	struct ramkey_credential cred; /* DONE: borrows from reply, secret */
	/* Private. */
	int fd;
	enum ramkey_op op;
	uint64_t deadline_ms;
	struct ramkey_seal_keypair *kp; /* NULL when PGP was asked for */
};

/*
 * Start asking the agent at socket for the key req asks for (open_session
 * or fetch; anything else is RAMKEY_ERR_INVALID). The whole exchange may
 * take wait_ms from now; the request tells the agent a little less
 * (timeout_ms), so that its answer, with its reason, arrives first. Fills
 * in req's seal key (when req->pgp_key is NULL) and timeout_ms.
 * Returns 0 and *op, or an error with why: those of ramkey_agent_connect(),
 * RAMKEY_ERR_CRYPTO or RAMKEY_ERR_NOMEM (nothing was sent), or those of
 * ramkey_agent_send().
 */
int ramkey_obtain_start(const char *socket, struct ramkey_request *req,
    uint64_t wait_ms, struct ramkey_obtain **op, char *why, size_t whylen);

/*
 * Read the agent's answer and open the key. Returns 0 (state DONE), or an
 * error with why and the state saying whose it is: NO_REPLY (the code of
 * ramkey_agent_receive()), REFUSED (the agent's code), UNUSABLE
 * (RAMKEY_ERR_CRYPTO, or RAMKEY_ERR_NOMEM).
 */
int ramkey_obtain_finish(struct ramkey_obtain *o, char *why, size_t whylen);

/* Close, wipe and free; accepts NULL. */
void ramkey_obtain_free(struct ramkey_obtain *o);

#endif
