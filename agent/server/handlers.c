/*
 * One handler per request type. A request waits on one thing at a time
 * (req->waiting): a user lookup, the PGP key check, the lease core, the
 * store, the encryption, a status change. If the requester hangs up,
 * whatever it waits on is cancelled; the lease core decides what becomes
 * of a credential obtained for nobody.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>
#include <sodium.h>

#include "duration.h"
#include "log.h"
#include "metrics.h"
#include "pgp.h"
#include "ramkey_err.h"
#include "seal.h"
#include "server_int.h"
#include "util.h"

static void request_free(struct request *req)
{
	if (req == NULL)
		return;
	evloop_timer_cancel(req->srv->loop, &req->deadline);
	ramkey_request_free(req->msg);
	pgp_key_free(req->pgp);
	free(req->own);
	free(req->user);
	free(req->home);
	free(req->principal);
	free(req->grant_file);
	free(req);
}

/* Stop waiting for whatever the request waits on. */
static void request_unhook(struct request *req)
{
	switch (req->waiting) {
	case W_LOOKUP:
		authz_cancel(req);
		break;
	case W_LEASE:
		lease_wait_cancel(req->wait);
		req->wait = NULL;
		break;
	case W_PGP_KEY:
	case W_ENCRYPT:
		pgp_job_cancel(req->job);
		req->job = NULL;
		break;
	case W_COMMIT:
		lease_cancel_after_commit(req->srv->core, req);
		break;
	case W_STATUS:
		lease_op_cancel(req->op);
		req->op = NULL;
		break;
	case W_NONE:
		break;
	}
	req->waiting = W_NONE;
}

void request_discard(struct request *req)
{
	request_unhook(req);
	request_free(req);
}

void request_finish(struct request *req, struct ramkey_reply *rep)
{
	req->waiting = W_NONE;
	if (req->conn != NULL)
		conn_reply(req->conn, rep);
	ramkey_reply_free(rep);
	request_free(req);
}

void request_fail(struct request *req, int err, const char *code,
    const char *fmt, ...)
{
	struct ramkey_reply *rep = ramkey_reply_new(req->msg->op);
	char buf[RAMKEY_MESSAGE_TEXT_MAX];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (rep == NULL) {
		if (req->conn != NULL)
			conn_release(req->conn);
		request_free(req);
		return;
	}
	ramkey_reply_set_error(rep, err, "%s", buf);
	if (code != NULL)
		rep->ram_code = strdup(code);
	request_finish(req, rep);
}

void request_abandon(struct request *req)
{
	request_unhook(req);
	if (req->conn != NULL)
		conn_release(req->conn);
	request_free(req);
}

/* ---- handing out a key ---- */

static void reply_key(struct request *req, const char *encrypted)
{
	struct server *s = req->srv;
	struct ramkey_reply *rep = ramkey_reply_new(req->msg->op);
	struct lease_info li;
	const char *secret = NULL, *token = NULL;
	size_t len = 0;
	int r = RAMKEY_ERR_NOMEM;

	if (rep == NULL)
		goto fail;
	if (lease_get(s->core, req->grant.lease_id, &li) != 0 ||
	    li.state != LEASE_LIVE || lease_secret(s->core,
	    req->grant.lease_id, &secret, &len, &token) != 0) {
		ramkey_reply_free(rep);
		request_fail(req, RAMKEY_ERR_UNAVAILABLE, NULL, "the lease "
		    "ended before its key could be handed out; try again");
		return;
	}
	if ((rep->key.access_key_id = strdup(li.cred_id)) == NULL ||
	    (rep->key.create_date = strdup(li.create_date)) == NULL ||
	    (rep->key.status = strdup(li.status)) == NULL ||
	    (rep->region_id = strdup(s->cfg.region_id)) == NULL)
		goto fail;
	rep->key.expires = li.lease_end_ms / 1000;
	rep->key.expiration = li.expiration;
	rep->key.refresh_at = li.refresh_ms / 1000;
	if (token != NULL &&
	    (rep->key.security_token = strdup(token)) == NULL)
		goto fail;
	if (encrypted != NULL) {
		if ((rep->key.encrypted_secret = strdup(encrypted)) == NULL ||
		    (rep->key.key_fingerprint = strdup(
		    pgp_key_fingerprint(req->pgp))) == NULL)
			goto fail;
	} else if ((r = ramkey_seal(req->msg->seal_pk, secret, len,
	    &rep->key.sealed, &rep->key.sealed_len)) != 0) {
		goto fail;
	}
	if (req->grant.session != NULL &&
	    (rep->session = strdup(req->grant.session)) == NULL)
		goto fail;
	if (req->msg->op == RAMKEY_OP_FETCH && req->grant.secret_file != NULL &&
	    (rep->secret_file = strdup(req->grant.secret_file)) == NULL)
		goto fail;
	request_finish(req, rep);
	return;
fail:
	ramkey_reply_free(rep);
	request_fail(req, r == 0 ? RAMKEY_ERR_NOMEM : r, NULL,
	    "cannot prepare the reply: %s", ramkey_strerror(r));
}

static void encrypted(void *arg, int rc, const char *b64, const char *why)
{
	struct request *req = arg;
	struct server *s = req->srv;

	req->job = NULL;
	req->waiting = W_NONE;
	if (rc != 0) {
		log_err("encrypting the secret of %s to a PGP key failed: %s",
		    req->user, why ? why : ramkey_strerror(rc));
		/* Never hand out a key we could not encrypt as asked. */
		lease_release(s->core, &req->grant, "PGP encryption failed");
		request_fail(req, RAMKEY_ERR_CRYPTO, NULL, "encrypting the "
		    "secret to the PGP key failed (%s)%s", why ? why : "error",
		    req->grant.minted ? "; the new key was revoked" : "");
		return;
	}
	lease_set_fingerprint(s->core, req->grant.lease_id,
	    pgp_key_fingerprint(req->pgp));
	reply_key(req, b64);
}

static void lease_ready(void *arg, int rc, const struct lease_grant *g,
    const struct lease_failure *f)
{
	struct request *req = arg;
	struct server *s = req->srv;
	const char *secret;
	size_t len = 0;

	req->wait = NULL;
	req->waiting = W_NONE;
	if (rc != 0) {
		request_fail(req, rc, f != NULL ? f->code : NULL, "%s",
		    f != NULL && f->message != NULL ? f->message :
		    ramkey_strerror(rc));
		return;
	}
	/* The grant's strings live only during this call. */
	req->grant = *g;
	if (g->session != NULL) {
		snprintf(req->grant_session, sizeof(req->grant_session), "%s",
		    g->session);
		req->grant.session = req->grant_session;
	}
	if (g->secret_file != NULL &&
	    (req->grant_file = strdup(g->secret_file)) == NULL) {
		lease_release(s->core, &req->grant, "out of memory");
		request_fail(req, RAMKEY_ERR_NOMEM, NULL, "out of memory");
		return;
	}
	req->grant.secret_file = req->grant_file;
	req->granted = true;
	if (req->pgp == NULL) {
		reply_key(req, NULL);
		return;
	}
	if (lease_secret(s->core, req->grant.lease_id, &secret, &len, NULL) !=
	    0) {
		request_fail(req, RAMKEY_ERR_UNAVAILABLE, NULL, "the lease "
		    "ended before its key could be handed out; try again");
		return;
	}
	req->waiting = W_ENCRYPT;
	if (pgp_encrypt(s->pgp, req->pgp, req->user, secret, len, encrypted,
	    req, &req->job) != 0) {
		req->waiting = W_NONE;
		encrypted(req, RAMKEY_ERR_CRYPTO, NULL, "cannot start");
	}
}

static void acquire(struct request *req)
{
	struct server *s = req->srv;
	const struct ramkey_request *m = req->msg;
	struct lease_want w;
	int r;

	memset(&w, 0, sizeof(w));
	w.kind = s->cfg.kind;
	w.user = req->user;
	w.uid = req->uid;
	w.gid = req->gid;
	w.principal = req->principal;
	w.peer.uid = req->peer.uid;
	w.peer.pid = req->peer.pid;
	w.peer.rhost = m->rhost;
	w.peer.tty = m->tty;
	if (m->op == RAMKEY_OP_OPEN_SESSION) {
		w.holder = LEASE_HOLD_SESSION;
		w.session_pid = req->peer.pid;
		w.session_peer_uid = req->peer.uid;
		w.secret_file = m->secret_file;
		w.service = m->service;
	} else {
		w.holder = LEASE_HOLD_TTL;
		w.ttl_s = req->ttl;
		w.fetch_path = m->secret_file;
		w.default_file = m->default_file;
	}
	req->waiting = W_LEASE;
	if ((r = lease_acquire(s->core, &w, lease_ready, req,
	    &req->wait)) != 0) {
		req->waiting = W_NONE;
		req->wait = NULL;
		request_fail(req, r, NULL, "cannot start a mint: %s",
		    ramkey_strerror(r));
	}
}

static void pgp_ready(void *arg, int rc, struct pgp_key *key, const char *why)
{
	struct request *req = arg;

	req->job = NULL;
	req->waiting = W_NONE;
	if (rc != 0) {
		pgp_key_free(key);
		/* Checked before any mint: no key is made for nothing. */
		request_fail(req, rc, NULL, "%s", why != NULL ? why :
		    ramkey_strerror(rc));
		return;
	}
	req->pgp = key;
	acquire(req);
}

static void key_request(struct request *req)
{
	struct server *s = req->srv;

	if (req->msg->pgp_key == NULL) {
		if (!req->msg->has_seal_pk) {
			request_fail(req, RAMKEY_ERR_INVALID, NULL, "the "
			    "request carries neither a sealing key nor a PGP "
			    "key");
			return;
		}
		acquire(req);
		return;
	}
	req->waiting = W_PGP_KEY;
	if (pgp_key_prepare(s->pgp, req->msg->pgp_key, req->user, pgp_ready,
	    req, &req->job) != 0) {
		req->waiting = W_NONE;
		request_fail(req, RAMKEY_ERR_INTERNAL, NULL, "cannot start "
		    "checking the PGP key");
	}
}

static void start_authz(struct request *req, bool for_keys, authz_fn fn)
{
	int r;

	if ((r = authz_start(req, for_keys, fn)) != 0)
		request_fail(req, r, NULL, "cannot look up the user: %s",
		    ramkey_strerror(r));
}

static void handle_open(struct request *req)
{
	/* Sessions are the PAM module's business (it runs as root); anyone
	 * else holds keys through fetch, whose holder has a deadline. */
	if (!req->trusted) {
		deny(req, RAMKEY_ERR_DENIED, req->msg->user, "open_session is "
		    "for the PAM module; uid %lu is not in trusted_uids (use "
		    "ramkey-agent-client fetch)", (unsigned long)req->peer.uid);
		return;
	}
	start_authz(req, true, key_request);
}

static void fetch_authorized(struct request *req)
{
	struct server *s = req->srv;

	req->ttl = req->msg->has_ttl ? req->msg->ttl : s->cfg.fetch_ttl;
	if (req->ttl > s->cfg.max_ttl) {
		char ttl[32], max[32];

		ramkey_duration_format(req->ttl, ttl, sizeof(ttl));
		ramkey_duration_format(s->cfg.max_ttl, max, sizeof(max));
		request_fail(req, RAMKEY_ERR_INVALID, NULL,
		    "--ttl %s is longer than the agent's max_ttl %s",
		    ttl, max);
		return;
	}
	key_request(req);
}

static void handle_fetch(struct request *req)
{
	start_authz(req, true, fetch_authorized);
}

/* ---- sessions, revocation, status ---- */

static void close_reply(void *arg, bool ok)
{
	struct request *req = arg;
	struct ramkey_reply *rep = ramkey_reply_new(req->msg->op);

	(void)ok; /* the revocation goes on either way; the store catches up */
	req->waiting = W_NONE;
	if (rep == NULL) {
		request_fail(req, RAMKEY_ERR_NOMEM, NULL, "out of memory");
		return;
	}
	rep->last_session = req->last_session;
	request_finish(req, rep);
}

static void handle_close(struct request *req)
{
	struct server *s = req->srv;
	const char *owner;
	bool found, ended;

	if (!req->trusted) {
		deny(req, RAMKEY_ERR_DENIED, lease_session_user(s->core,
		    req->msg->session), "close_session is for the PAM module; "
		    "uid %lu is not in trusted_uids",
		    (unsigned long)req->peer.uid);
		return;
	}
	lease_close_session(s->core, req->msg->session, req->msg->aborted,
	    &found, &owner, &req->last_session, &ended);
	if (!found) {
		/* Already ended (revoke, max_ttl, dead process): a no-op. */
		req->last_session = req->msg->user == NULL ||
		    lease_user_sessions(s->core, req->msg->user) == 0;
		close_reply(req, true);
		return;
	}
	if (!ended) {
		/*
		 * Nothing ended: the answer need not wait for the sync. Were
		 * the agent to crash first, the stored session would be ended
		 * at start when its process is gone, as it soon is.
		 */
		close_reply(req, true);
		return;
	}
	/* A revocation is pending now: it is recorded before we answer. */
	req->waiting = W_COMMIT;
	if (lease_after_commit(s->core, close_reply, req) != 0)
		close_reply(req, false);
}

/* Is the live lease li one the caller may act on? */
static bool lease_of_caller(const struct request *req,
    const struct lease_info *li)
{
	if (req->msg->user != NULL && strcmp(li->user, req->msg->user) != 0)
		return false;
	return req->trusted || li->uid == req->peer.uid;
}

/* Reply (revoke, set-status) once the change is durable. */
static void reply_when_committed(void *arg, bool ok)
{
	struct request *req = arg;
	struct ramkey_reply *rep;

	req->waiting = W_NONE;
	if (!ok) {
		request_fail(req, RAMKEY_ERR_STORE, NULL, "the change is made "
		    "but could not be recorded (state store not writable); "
		    "check state_dir");
		return;
	}
	if ((rep = ramkey_reply_new(req->msg->op)) == NULL) {
		request_fail(req, RAMKEY_ERR_NOMEM, NULL, "out of memory");
		return;
	}
	rep->revoked = req->revoked;
	rep->valid_until = req->valid_until / 1000;
	request_finish(req, rep);
}

static void wait_commit(struct request *req)
{
	req->waiting = W_COMMIT;
	if (lease_after_commit(req->srv->core, reply_when_committed, req) != 0)
		reply_when_committed(req, false);
}

static bool change_allowed(struct request *req)
{
	uint64_t retry;
	char when[32];

	if (change_rate_ok(req, &retry))
		return true;
	ramkey_duration_format(retry, when, sizeof(when));
	log_bad_input(req->srv, req->peer.uid, req->peer.pid, "refusing %s: "
	    "too many status changes and revocations",
	    ramkey_op_name(req->msg->op));
	request_fail(req, RAMKEY_ERR_RATE, NULL, "too many set-status and "
	    "revoke requests from uid %lu (each one is a call to RAM, whose "
	    "quota everyone's logins share); try again in %s",
	    (unsigned long)req->peer.uid, when);
	return false;
}

static void revoke_user(struct request *req)
{
	char why[64];

	snprintf(why, sizeof(why), "revoked by uid %lu",
	    (unsigned long)req->peer.uid);
	lease_revoke(req->srv->core, 0, req->user, why, &req->revoked,
	    &req->valid_until);
	wait_commit(req);
}

static void handle_revoke(struct request *req)
{
	struct server *s = req->srv;
	char why[64], masked[RAMKEY_MASKED_MAX];
	struct lease_info li;

	snprintf(why, sizeof(why), "revoked by uid %lu",
	    (unsigned long)req->peer.uid);
	if (req->msg->key_id != NULL) {
		/* Checked first: nobody can name a key that is not theirs. */
		if (lease_find(s->core, req->msg->key_id, &li) != 0 ||
		    !lease_of_caller(req, &li)) {
			ramkey_mask_key_id(req->msg->key_id, masked);
			deny(req, RAMKEY_ERR_NOT_FOUND, req->msg->user,
			    "key %s is not a key of %s leases", masked,
			    req->trusted ? "this agent's live" : "your");
			return;
		}
		if (!change_allowed(req))
			return;
		lease_revoke(s->core, li.id, NULL, why, &req->revoked,
		    &req->valid_until);
		wait_commit(req);
		return;
	}
	if (req->msg->all) {
		if (!req->trusted) {
			deny(req, RAMKEY_ERR_DENIED, NULL,
			    "revoke --all is for trusted callers; "
			    "uid %lu is not in trusted_uids",
			    (unsigned long)req->peer.uid);
			return;
		}
		lease_revoke(s->core, 0, NULL, why, &req->revoked,
		    &req->valid_until);
		wait_commit(req);
		return;
	}
	if (!change_allowed(req))
		return;
	start_authz(req, false, revoke_user);
}

static void status_authorized(struct request *req)
{
	struct server *s = req->srv;
	struct ramkey_reply *rep;

	if ((rep = ramkey_reply_new(req->msg->op)) == NULL ||
	    (rep->status = status_document(s, req->user)) == NULL) {
		ramkey_reply_free(rep);
		request_fail(req, RAMKEY_ERR_NOMEM, NULL, "out of memory");
		return;
	}
	rep->healthy = server_healthy(s);
	request_finish(req, rep);
}

static void handle_status(struct request *req)
{
	if (req->msg->user != NULL || !req->trusted) {
		start_authz(req, false, status_authorized);
		return;
	}
	status_authorized(req);
}

/* The metrics text: counts of the whole agent, for trusted callers (the
 * operator, a scraper running as root) only. */
static void handle_metrics(struct request *req)
{
	struct server *s = req->srv;
	struct ramkey_reply *rep = NULL;

	if (!req->trusted) {
		deny(req, RAMKEY_ERR_DENIED, NULL, "metrics are for trusted "
		    "callers; uid %lu is not in trusted_uids",
		    (unsigned long)req->peer.uid);
		return;
	}
	if (s->metrics == NULL) {
		request_fail(req, RAMKEY_ERR_UNAVAILABLE, NULL, "this agent "
		    "keeps no metrics");
		return;
	}
	if ((rep = ramkey_reply_new(req->msg->op)) == NULL ||
	    metrics_render(s->metrics, &rep->metrics, NULL) != 0) {
		ramkey_reply_free(rep);
		request_fail(req, RAMKEY_ERR_NOMEM, NULL, "out of memory");
		return;
	}
	request_finish(req, rep);
}

static void status_changed(void *arg, int rc, const struct lease_failure *f)
{
	struct request *req = arg;

	req->op = NULL;
	req->waiting = W_NONE;
	if (rc != 0) {
		request_fail(req, rc == RAMKEY_ERR_STORE ||
		    rc == RAMKEY_ERR_NOT_FOUND ? rc : RAMKEY_ERR_RAM,
		    f != NULL ? f->code : NULL, "%s", f != NULL &&
		    f->message != NULL ? f->message : ramkey_strerror(rc));
		return;
	}
	reply_when_committed(req, true);
}

static void handle_set_status(struct request *req)
{
	struct server *s = req->srv;
	char masked[RAMKEY_MASKED_MAX];
	struct lease_info li;
	int r;

	if (lease_find(s->core, req->msg->key_id, &li) != 0 ||
	    !lease_of_caller(req, &li)) {
		ramkey_mask_key_id(req->msg->key_id, masked);
		deny(req, RAMKEY_ERR_NOT_FOUND, NULL, "key %s is not a key of "
		    "%s leases", masked, req->trusted ? "this agent's live" :
		    "your");
		return;
	}
	if (!change_allowed(req))
		return;
	req->waiting = W_STATUS;
	r = lease_set_status(s->core, li.id, req->msg->status, status_changed,
	    req, &req->op);
	if (r == 0)
		return;
	req->waiting = W_NONE;
	if (r == RAMKEY_ERR_BUSY)
		request_fail(req, r, NULL, "a status change of this key is "
		    "already in progress");
	else if (r == RAMKEY_ERR_INVALID)
		request_fail(req, r, NULL, "set-status does not apply to %s "
		    "credentials: they cannot be deactivated, only left to "
		    "expire (use revoke to end the lease)", li.kind);
	else
		request_fail(req, RAMKEY_ERR_INTERNAL, NULL, "cannot start the "
		    "status change: %s", ramkey_strerror(r));
}

/*
 * The requester's timeout_ms is about to run out while we still wait for
 * the cloud, Keybase or the directory service: answer now, with the
 * reason, instead of letting it give up blind. An obtain under way goes on
 * for any other waiter (and its credential is ended at once if there is
 * none).
 */
static void deadline_reached(void *arg)
{
	struct request *req = arg;
	struct server *s = req->srv;
	char last[RAMKEY_MESSAGE_TEXT_MAX / 2] = "",
	    buf[RAMKEY_MESSAGE_TEXT_MAX / 2];
	const char *e = s->health.last_error != NULL ?
	    s->health.last_error(s->health.arg, buf, sizeof(buf)) : NULL;

	if (e != NULL)
		snprintf(last, sizeof(last), "; last error: %s", e);
	switch (req->waiting) {
	case W_LEASE:
		lease_wait_cancel(req->wait);
		req->wait = NULL;
		req->waiting = W_NONE;
		if (s->cfg.sts)
			request_fail(req, RAMKEY_ERR_RAM_TIMEOUT, NULL,
			    "STS did not issue a credential for role %s "
			    "within %u ms%s; try again later",
			    req->principal ? req->principal : "-",
			    req->msg->timeout_ms, last);
		else
			request_fail(req, RAMKEY_ERR_RAM_TIMEOUT, NULL,
			    "RAM did not complete the mint for %s "
			    "within %u ms%s; try again later",
			    req->principal ? req->principal : "this user",
			    req->msg->timeout_ms, last);
		break;
	case W_PGP_KEY:
		pgp_job_cancel(req->job);
		req->job = NULL;
		req->waiting = W_NONE;
		request_fail(req, RAMKEY_ERR_KEYBASE, NULL, "the PGP key could "
		    "not be checked within %u ms (Keybase slow?)",
		    req->msg->timeout_ms);
		break;
	default:
		/* Looking up (the worker has its own deadline), committing or
		 * encrypting: moments away; let it finish. */
		break;
	}
}

void request_dispatch(struct conn *c, struct ramkey_request *msg)
{
	struct server *s = c->srv;
	struct request *req = calloc(1, sizeof(*req));

	if (req == NULL) {
		ramkey_request_free(msg);
		conn_release(c);
		return;
	}
	req->srv = s;
	req->conn = c;
	req->msg = msg;
	req->peer = c->peer;
	req->trusted = c->trusted;
	ev_timer_init(&req->deadline, deadline_reached, req);
	if (msg->has_timeout)
		(void)evloop_timer_arm(s->loop, &req->deadline,
		    evloop_now() + msg->timeout_ms);
	c->req = req;
	/* rhost, tty and service go into audit lines: only the PAM module
	 * (a trusted peer) may set them. */
	if (!req->trusted) {
		free(msg->rhost);
		free(msg->tty);
		free(msg->service);
		msg->rhost = msg->tty = msg->service = NULL;
	}
	if (!request_rate_ok(req)) {
		request_fail(req, RAMKEY_ERR_RATE, NULL, "too many requests "
		    "from uid %lu; slow down and try again in 1s",
		    (unsigned long)req->peer.uid);
		return;
	}
	switch (msg->op) {
	case RAMKEY_OP_OPEN_SESSION:
		handle_open(req);
		break;
	case RAMKEY_OP_CLOSE_SESSION:
		handle_close(req);
		break;
	case RAMKEY_OP_FETCH:
		handle_fetch(req);
		break;
	case RAMKEY_OP_REVOKE:
		handle_revoke(req);
		break;
	case RAMKEY_OP_STATUS:
		handle_status(req);
		break;
	case RAMKEY_OP_SET_STATUS:
		handle_set_status(req);
		break;
	case RAMKEY_OP_METRICS:
		handle_metrics(req);
		break;
	default:
		request_fail(req, RAMKEY_ERR_PROTOCOL, NULL, "unknown request");
		break;
	}
}
