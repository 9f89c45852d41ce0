/*
 * One handler per request type. Authorisation comes from the peer's
 * credentials (DESIGN §5): trusted_uids may act for any user, anyone else
 * only for their own account; keys go only to local users at or above
 * min_uid and, when set, in allowed_group.
 */
#include <grp.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>
#include <sodium.h>

#include "agent.h"
#include "duration.h"
#include "lease_store.h"
#include "log.h"
#include "pgp.h"
#include "ramkey_err.h"
#include "seal.h"
#include "secret_arena.h"
#include "strmap.h"
#include "template.h"
#include "util.h"

/* Requests per second a non-trusted uid may make, and its burst. */
#define REQUEST_RATE 50.0
#define REQUEST_BURST 100.0

static void request_free(struct request *req)
{
	if (req == NULL)
		return;
	evloop_timer_cancel(req->agent->loop, &req->deadline);
	ramkey_request_free(req->msg);
	pgp_key_free(req->pgp);
	free(req->own);
	free(req->user);
	free(req->home);
	free(req->ram_user);
	free(req);
}

void request_discard(struct request *req)
{
	if (req->job != NULL)
		pgp_job_cancel(req->job);
	request_free(req);
}

static void request_finish(struct request *req, struct ramkey_reply *rep)
{
	req->waiting = W_NONE;
	if (req->conn != NULL)
		conn_reply(req->conn, rep);
	ramkey_reply_free(rep);
	request_free(req);
}

void request_fail(struct request *req, int err, const char *ram_code,
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
	if (ram_code != NULL)
		rep->ram_code = strdup(ram_code);
	request_finish(req, rep);
}

void request_abandon(struct request *req)
{
	struct agent *a = req->agent;

	req->gone = true;
	switch (req->waiting) {
	case W_MINT:
		mint_requester_gone(a, req);
		break;
	case W_PGP_KEY:
	case W_ENCRYPT:
		pgp_job_cancel(req->job);
		req->job = NULL;
		break;
	case W_COMMIT:
		store_cancel_after_commit(a->store, req);
		break;
	case W_RAM:
		/* The RAM call runs to its end; its callback finishes. */
		return;
	default:
		break;
	}
	if (req->conn != NULL)
		conn_release(req->conn);
	request_free(req);
}

/* ---- authorisation ---- */

static bool in_group(const char *user, gid_t gid, gid_t want)
{
	gid_t groups[256];
	int n = (int)(sizeof(groups) / sizeof(groups[0]));

	if (gid == want)
		return true;
	if (getgrouplist(user, gid, groups, &n) == -1)
		return false; /* more than 256 groups: fail closed */
	for (int i = 0; i < n; i++)
		if (groups[i] == want)
			return true;
	return false;
}

static int deny(struct request *req, int err, const char *target,
    const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static int deny(struct request *req, int err, const char *target,
    const char *fmt, ...)
{
	char buf[RAMKEY_MESSAGE_TEXT_MAX], extra[RAMKEY_MESSAGE_TEXT_MAX + 16];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	snprintf(extra, sizeof(extra), "op=%s reason=\"%s\"",
	    ramkey_op_name(req->msg->op), buf);
	audit("deny", target, NULL, NULL, &req->peer, req->msg->rhost,
	    req->msg->tty, extra);
	request_fail(req, err, NULL, "%s", buf);
	return err;
}

/*
 * Resolve the target user and check the caller may act for it. for_keys:
 * the request hands out a key, so the key policy applies too. On failure
 * the request has been answered.
 */
static int authorize(struct request *req, bool for_keys)
{
	struct agent *a = req->agent;
	const char *target = req->msg->user != NULL ? req->msg->user : req->own;
	struct ramkey_template_vars vars;
	struct passwd pw, *res = NULL;
	char buf[4096];
	const char *why = NULL;

	if (target == NULL)
		return deny(req, RAMKEY_ERR_NO_USER, NULL, "uid %lu has no "
		    "account on this host", (unsigned long)req->peer.uid);
	if (!req->trusted && (req->own == NULL || strcmp(target, req->own)))
		return deny(req, RAMKEY_ERR_DENIED, target, "uid %lu (%s) may "
		    "only act for itself, not for %s",
		    (unsigned long)req->peer.uid,
		    req->own ? req->own : "no account", target);
	if (getpwnam_r(target, &pw, buf, sizeof(buf), &res) != 0 ||
	    res == NULL)
		return deny(req, RAMKEY_ERR_NO_USER, target, "no local user "
		    "%s on this host", target);
	if ((req->user = strdup(pw.pw_name)) == NULL ||
	    (req->home = strdup(pw.pw_dir)) == NULL) {
		request_fail(req, RAMKEY_ERR_NOMEM, NULL, "out of memory");
		return RAMKEY_ERR_NOMEM;
	}
	req->uid = pw.pw_uid;
	req->gid = pw.pw_gid;
	if (!for_keys)
		return 0;
	if (pw.pw_uid == 65534 || pw.pw_uid == (uid_t)-1)
		return deny(req, RAMKEY_ERR_EXCLUDED, target, "%s (uid %lu) is "
		    "the nobody/overflow account: it never gets keys", target,
		    (unsigned long)pw.pw_uid);
	if (pw.pw_uid < a->cfg->min_uid)
		return deny(req, RAMKEY_ERR_EXCLUDED, target, "%s (uid %lu) is "
		    "below min_uid %lu: system accounts never get keys", target,
		    (unsigned long)pw.pw_uid, (unsigned long)a->cfg->min_uid);
	if (a->cfg->allowed_group != NULL &&
	    !in_group(pw.pw_name, pw.pw_gid, a->cfg->allowed_gid))
		return deny(req, RAMKEY_ERR_EXCLUDED, target, "%s is not in "
		    "allowed_group %s", target, a->cfg->allowed_group);
	memset(&vars, 0, sizeof(vars));
	vars.user = req->user;
	vars.uid = req->uid;
	vars.home = req->home;
	if (ramkey_template_expand(a->cfg->ram_user, &vars, &req->ram_user,
	    &why) != 0 || !ramkey_valid_ram_user(req->ram_user)) {
		log_err("ram_user template %s gives an invalid RAM user name "
		    "for %s (%s)", a->cfg->ram_user, target,
		    why ? why : "RAM allows 1-64 of A-Za-z0-9._-");
		request_fail(req, RAMKEY_ERR_CONFIG, NULL, "the agent's "
		    "ram_user template gives no valid RAM user name for %s; "
		    "ask the administrator to fix ram_user", target);
		return RAMKEY_ERR_CONFIG;
	}
	return 0;
}

/* Per-uid token bucket: one local user cannot flood the agent. */
static bool rate_ok(struct agent *a, struct request *req)
{
	char key[24];
	struct uid_stats *u;
	uint64_t now = evloop_now();

	if (req->trusted)
		return true;
	snprintf(key, sizeof(key), "%lu", (unsigned long)req->peer.uid);
	if ((u = strmap_get(a->uids, key)) == NULL)
		return true;
	if (u->last_refill_ms == 0)
		u->tokens = REQUEST_BURST;
	else
		u->tokens += (double)(now - u->last_refill_ms) / 1000.0 *
		    REQUEST_RATE;
	if (u->tokens > REQUEST_BURST)
		u->tokens = REQUEST_BURST;
	u->last_refill_ms = now;
	if (u->tokens < 1.0) {
		audit_flood_deny(u, req->own, &req->peer,
		    ramkey_op_name(req->msg->op), "request rate");
		return false;
	}
	u->tokens -= 1.0;
	return true;
}

/* ---- handing out a key ---- */

static void reply_key(struct request *req, const char *encrypted)
{
	struct agent *a = req->agent;
	struct lease *l = req->lease;
	struct ramkey_reply *rep = ramkey_reply_new(req->msg->op);
	const char *secret;
	size_t len = 0;
	int r = RAMKEY_ERR_NOMEM;

	if (rep == NULL)
		goto fail;
	secret = secret_arena_get(a->arena, l->secret_slot, &len);
	if (l->state != LEASE_LIVE || secret == NULL) {
		ramkey_reply_free(rep);
		request_fail(req, RAMKEY_ERR_UNAVAILABLE, NULL, "the lease "
		    "ended before its key could be handed out; try again");
		return;
	}
	if ((rep->key.access_key_id = strdup(l->key_id)) == NULL ||
	    (rep->key.create_date = strdup(l->create_date)) == NULL ||
	    (rep->key.status = strdup(l->status)) == NULL ||
	    (rep->region_id = strdup(a->cfg->region_id)) == NULL)
		goto fail;
	rep->key.expires = lease_expires_ms(a, l) / 1000;
	if (encrypted != NULL) {
		if ((rep->key.encrypted_secret = strdup(encrypted)) == NULL ||
		    (rep->key.key_fingerprint = strdup(
		    pgp_key_fingerprint(req->pgp))) == NULL)
			goto fail;
	} else if ((r = ramkey_seal(req->msg->seal_pk, secret, len,
	    &rep->key.sealed, &rep->key.sealed_len)) != 0) {
		goto fail;
	}
	if (req->session != NULL &&
	    (rep->session = strdup(req->session->token)) == NULL)
		goto fail;
	if (req->msg->op == RAMKEY_OP_FETCH) {
		struct session *s = user_latest_session(a, l->user);

		if (s != NULL && (rep->secret_file = strdup(s->secret_file)) ==
		    NULL)
			goto fail;
	}
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
	struct agent *a = req->agent;
	struct lease *l = req->lease;

	req->job = NULL;
	if (rc != 0) {
		log_err("encrypting the secret of %s to a PGP key failed: %s",
		    req->user, why ? why : ramkey_strerror(rc));
		/* Never hand out a key we could not encrypt as asked. */
		if (req->session != NULL)
			session_end(a, req->session, "PGP encryption failed");
		else if (req->minted && l->nsessions == 0)
			lease_end(a, l, "PGP encryption failed after the mint");
		request_fail(req, RAMKEY_ERR_CRYPTO, NULL, "encrypting the "
		    "secret to the PGP key failed (%s)%s", why ? why : "error",
		    req->minted ? "; the new key was revoked" : "");
		return;
	}
	free(l->key_fingerprint);
	l->key_fingerprint = strdup(pgp_key_fingerprint(req->pgp));
	store_put_lease(a->store, l);
	reply_key(req, b64);
}

static void lease_committed(void *arg, bool ok)
{
	struct request *req = arg;
	struct agent *a = req->agent;
	struct lease *l = req->lease;
	const char *secret;
	size_t len = 0;

	req->waiting = W_NONE;
	if (!ok) {
		/* Nothing unrecorded may be handed out: undo the holder. */
		if (req->session != NULL)
			session_end(a, req->session, "state store not writable");
		else if (req->minted)
			lease_end(a, l, "state store not writable");
		else if (l->state == LEASE_LIVE) {
			l->ttl_expires_ms = req->old_ttl_expires;
			lease_arm_timers(a, l);
		}
		request_fail(req, RAMKEY_ERR_STORE, NULL, "the agent's state "
		    "store is not writable (disk full or read-only?); check "
		    "state_dir");
		return;
	}
	if (req->pgp == NULL) {
		reply_key(req, NULL);
		return;
	}
	secret = secret_arena_get(a->arena, l->secret_slot, &len);
	if (secret == NULL) {
		request_fail(req, RAMKEY_ERR_UNAVAILABLE, NULL, "the lease "
		    "ended before its key could be handed out; try again");
		return;
	}
	req->waiting = W_ENCRYPT;
	if (pgp_encrypt(a->pgp, req->pgp, secret, len, encrypted, req,
	    &req->job) != 0) {
		req->waiting = W_NONE;
		encrypted(req, RAMKEY_ERR_CRYPTO, NULL, "cannot start");
	}
}

void request_lease_ready(struct request *req, struct lease *l)
{
	struct agent *a = req->agent;
	char extra[96];
	int r;

	req->lease = l;
	req->waiting = W_NONE;
	if (req->msg->op == RAMKEY_OP_OPEN_SESSION) {
		if ((r = session_attach(a, l, req, &req->session)) != 0) {
			request_fail(req, r, NULL, "cannot record the session: "
			    "%s", ramkey_strerror(r));
			if (req->minted && l->nsessions == 0 &&
			    l->ttl_expires_ms == 0)
				lease_end(a, l, "could not record its holder");
			return;
		}
		snprintf(extra, sizeof(extra), "holder=session sessions=%u",
		    l->nsessions);
	} else {
		req->old_ttl_expires = l->ttl_expires_ms;
		if (l->nsessions == 0)
			lease_set_ttl_holder(a, l,
			    wall_ms() + (int64_t)req->ttl * 1000);
		snprintf(extra, sizeof(extra), "holder=%s",
		    l->nsessions == 0 ? "ttl" : "none(pam session holds it)");
	}
	audit("attach", l->user, l->ram_user, l->key_id, &req->peer,
	    req->msg->rhost, req->msg->tty, extra);
	if (req->msg->secret_file != NULL) {
		file_written(a, l->user, req->msg->secret_file, l->key_id,
		    req->session != NULL ? req->session->token : NULL);
	} else if (req->msg->default_file) {
		/* fetch writes the file of the user's login session. */
		struct session *s = user_latest_session(a, l->user);

		if (s != NULL)
			file_written(a, l->user, s->secret_file, l->key_id,
			    NULL);
	}
	req->waiting = W_COMMIT;
	if (store_after_commit(a->store, lease_committed, req) != 0) {
		req->waiting = W_NONE;
		lease_committed(req, false);
		return;
	}
	evloop_wake(a->loop);
}

/* An existing usable lease, or a mint. */
static void get_lease(struct request *req)
{
	struct agent *a = req->agent;
	struct lease *l = user_newest_live_lease(a, req->user);
	int r;

	if (store_broken(a->store)) {
		request_fail(req, RAMKEY_ERR_STORE, NULL, "the agent's state "
		    "store is not writable (disk full or read-only?); check "
		    "state_dir");
		return;
	}
	if (l != NULL && lease_usable(a, l) &&
	    strcmp(l->ram_user, req->ram_user) == 0) {
		request_lease_ready(req, l);
		return;
	}
	req->minted = true;
	req->waiting = W_MINT;
	if ((r = mint_request(a, req)) != 0) {
		req->waiting = W_NONE;
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
		/* Checked before any mint: no key is created for nothing. */
		request_fail(req, rc, NULL, "%s", why != NULL ? why :
		    ramkey_strerror(rc));
		return;
	}
	req->pgp = key;
	get_lease(req);
}

static void start_key_request(struct request *req)
{
	struct agent *a = req->agent;

	if (req->msg->pgp_key == NULL) {
		if (!req->msg->has_seal_pk) {
			request_fail(req, RAMKEY_ERR_INVALID, NULL, "the "
			    "request carries neither a sealing key nor a PGP "
			    "key");
			return;
		}
		get_lease(req);
		return;
	}
	req->waiting = W_PGP_KEY;
	if (pgp_key_prepare(a->pgp, req->msg->pgp_key, pgp_ready, req,
	    &req->job) != 0) {
		req->waiting = W_NONE;
		request_fail(req, RAMKEY_ERR_INTERNAL, NULL, "cannot start "
		    "checking the PGP key");
	}
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
	if (authorize(req, true) != 0)
		return;
	start_key_request(req);
}

static void handle_fetch(struct request *req)
{
	struct agent *a = req->agent;

	if (authorize(req, true) != 0)
		return;
	req->ttl = req->msg->has_ttl ? req->msg->ttl : a->cfg->fetch_ttl;
	if (req->ttl > a->cfg->max_ttl) {
		char ttl[32], max[32];

		ramkey_duration_format(req->ttl, ttl, sizeof(ttl));
		ramkey_duration_format(a->cfg->max_ttl, max, sizeof(max));
		request_fail(req, RAMKEY_ERR_INVALID, NULL, "--ttl %s is "
		    "longer than the agent's max_ttl %s", ttl, max);
		return;
	}
	start_key_request(req);
}

/* ---- sessions, revocation, status ---- */

static void close_committed(void *arg, bool ok)
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
	struct agent *a = req->agent;
	struct session *s = strmap_get(a->sessions, req->msg->session);
	struct lease *l;
	const char *user;
	char *owner;

	if (s == NULL) {
		/* Already ended (revoke, max_ttl, dead process): a no-op. */
		user = req->msg->user != NULL && req->trusted ? req->msg->user :
		    req->own;
		req->last_session = user == NULL ||
		    user_pam_sessions(a, user) == 0;
		close_committed(req, true);
		return;
	}
	if (!req->trusted) {
		deny(req, RAMKEY_ERR_DENIED, s->lease->user, "close_session is "
		    "for the PAM module; uid %lu is not in trusted_uids",
		    (unsigned long)req->peer.uid);
		return;
	}
	if ((owner = strdup(s->lease->user)) == NULL) {
		request_fail(req, RAMKEY_ERR_NOMEM, NULL, "out of memory");
		return;
	}
	if (req->msg->aborted)
		file_unwritten(a, owner, s->secret_file, s->token);
	l = s->lease;
	session_end(a, s, req->msg->aborted ? "aborted by the module" :
	    "closed");
	req->last_session = user_pam_sessions(a, owner) == 0;
	free(owner);
	if (l->state == LEASE_LIVE) {
		/*
		 * Nothing ended: the answer need not wait for the sync. Were
		 * the agent to crash first, the stored session would be
		 * ended at start when its process is gone, as it soon is.
		 */
		close_committed(req, true);
		return;
	}
	/* A revocation is pending now: it is recorded before we answer. */
	req->waiting = W_COMMIT;
	if (store_after_commit(a->store, close_committed, req) != 0)
		close_committed(req, false);
	else
		evloop_wake(a->loop);
}

/* Is l one the caller may act on (revoke --key-id, set-status)? */
static bool lease_of_caller(const struct request *req, const struct lease *l)
{
	if (l == NULL || l->state != LEASE_LIVE)
		return false;
	if (req->msg->user != NULL && strcmp(l->user, req->msg->user) != 0)
		return false;
	return req->trusted || (req->own != NULL &&
	    strcmp(l->user, req->own) == 0);
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
	request_finish(req, rep);
}

static void handle_revoke(struct request *req)
{
	struct agent *a = req->agent;
	char why[64], masked[RAMKEY_MASKED_MAX];
	struct user_state *u;
	struct lease *l, *next;

	snprintf(why, sizeof(why), "revoked by uid %lu",
	    (unsigned long)req->peer.uid);
	if (req->msg->key_id != NULL) {
		/* Checked first: nobody can name a key that is not theirs. */
		l = strmap_get(a->leases, req->msg->key_id);
		if (!lease_of_caller(req, l)) {
			ramkey_mask_key_id(req->msg->key_id, masked);
			deny(req, RAMKEY_ERR_NOT_FOUND, req->msg->user,
			    "key %s is not a key of %s leases", masked,
			    req->trusted ? "this agent's live" : "your");
			return;
		}
		lease_end(a, l, why);
		req->revoked = 1;
	} else {
		if (authorize(req, false) != 0)
			return;
		u = strmap_get(a->users, req->user);
		for (l = u != NULL ? u->leases : NULL; l != NULL; l = next) {
			next = l->next_of_user;
			if (l->state != LEASE_LIVE)
				continue;
			lease_end(a, l, why);
			req->revoked++;
		}
	}
	req->waiting = W_COMMIT;
	if (store_after_commit(a->store, reply_when_committed, req) != 0)
		reply_when_committed(req, false);
	else
		evloop_wake(a->loop);
}

static void handle_status(struct request *req)
{
	struct agent *a = req->agent;
	struct ramkey_reply *rep;
	const char *user = NULL;

	if (req->msg->user != NULL || !req->trusted) {
		if (authorize(req, false) != 0)
			return;
		user = req->user;
	}
	if ((rep = ramkey_reply_new(req->msg->op)) == NULL ||
	    (rep->status = status_document(a, user)) == NULL) {
		ramkey_reply_free(rep);
		request_fail(req, RAMKEY_ERR_NOMEM, NULL, "out of memory");
		return;
	}
	rep->healthy = agent_healthy(a);
	request_finish(req, rep);
}

static void status_set(void *arg, int rc, const struct ram_result *res,
    const struct ram_error *err)
{
	struct request *req = arg;
	struct agent *a = req->agent;
	struct lease *l = req->lease;
	char extra[64];

	(void)res;
	l->status_call = NULL;
	req->waiting = W_NONE;
	if (rc != 0) {
		request_fail(req, RAMKEY_ERR_RAM, err ? err->code : NULL,
		    "UpdateAccessKey failed: %s%s%s",
		    err && err->code[0] ? err->code : "",
		    err && err->code[0] ? ": " : "",
		    err ? err->message : "error");
		return;
	}
	if (l->state != LEASE_LIVE) {
		request_fail(req, RAMKEY_ERR_NOT_FOUND, NULL, "the lease ended "
		    "while its status was being changed; it is revoked");
		return;
	}
	snprintf(l->status, sizeof(l->status), "%s", req->msg->status);
	store_put_lease(a->store, l);
	snprintf(extra, sizeof(extra), "status=%s", l->status);
	audit("set-status", l->user, l->ram_user, l->key_id, &req->peer, NULL,
	    NULL, extra);
	req->waiting = W_COMMIT;
	if (store_after_commit(a->store, reply_when_committed, req) != 0)
		reply_when_committed(req, false);
	else
		evloop_wake(a->loop);
}

static void handle_set_status(struct request *req)
{
	struct agent *a = req->agent;
	struct lease *l = strmap_get(a->leases, req->msg->key_id);
	char masked[RAMKEY_MASKED_MAX];

	if (!lease_of_caller(req, l)) {
		ramkey_mask_key_id(req->msg->key_id, masked);
		deny(req, RAMKEY_ERR_NOT_FOUND, NULL, "key %s is not a key of "
		    "%s leases", masked, req->trusted ? "this agent's live" :
		    "your");
		return;
	}
	if (l->status_call != NULL) {
		request_fail(req, RAMKEY_ERR_BUSY, NULL, "a status change of "
		    "this key is already in progress");
		return;
	}
	req->lease = l;
	req->waiting = W_RAM;
	if (ram_update_access_key(a->ram, l->ram_user, l->key_id,
	    req->msg->status, status_set, req, &l->status_call) != 0) {
		l->status_call = NULL;
		req->waiting = W_NONE;
		request_fail(req, RAMKEY_ERR_INTERNAL, NULL, "cannot start "
		    "UpdateAccessKey");
	}
}

/*
 * The requester's timeout_ms is about to run out while we still wait for
 * RAM or Keybase: answer now, with the reason, instead of letting it give
 * up blind. A mint under way goes on for any other waiter (and its key is
 * revoked at once if there is none).
 */
static void deadline_reached(void *arg)
{
	struct request *req = arg;
	struct agent *a = req->agent;
	const struct ram_error *e = ram_client_last_error(a->ram);
	char last[RAM_CODE_MAX + RAM_MESSAGE_MAX + 32] = "";

	if (e != NULL)
		snprintf(last, sizeof(last), "; last RAM error: %s%s%s",
		    e->code, e->code[0] ? ": " : "", e->message);
	switch (req->waiting) {
	case W_MINT:
		mint_requester_gone(a, req);
		req->waiting = W_NONE;
		request_fail(req, RAMKEY_ERR_RAM_TIMEOUT, e ? e->code : NULL,
		    "RAM did not complete the mint for %s within %u ms%s; "
		    "try again later",
		    req->ram_user ? req->ram_user : "this user",
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
		/* Committing or encrypting: moments away; let it finish. */
		break;
	}
}

void request_dispatch(struct conn *c, struct ramkey_request *msg)
{
	struct agent *a = c->agent;
	struct request *req = calloc(1, sizeof(*req));

	if (req == NULL) {
		ramkey_request_free(msg);
		conn_release(c);
		return;
	}
	req->agent = a;
	req->conn = c;
	req->msg = msg;
	req->peer = c->peer;
	req->trusted = c->trusted;
	if (c->peer_name != NULL)
		req->own = strdup(c->peer_name);
	ev_timer_init(&req->deadline, deadline_reached, req);
	if (msg->has_timeout)
		(void)evloop_timer_arm(a->loop, &req->deadline,
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
	if (!rate_ok(a, req)) {
		request_fail(req, RAMKEY_ERR_RATE, NULL, "too many requests "
		    "from uid %lu; slow down", (unsigned long)req->peer.uid);
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
	default:
		request_fail(req, RAMKEY_ERR_PROTOCOL, NULL, "unknown request");
		break;
	}
}
