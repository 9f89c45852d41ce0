/*
 * The owner of lease state. Every change of a lease's core state goes
 * through this file, which keeps the counters:
 *
 *        obtain                 end()              kind: retained
 *   ----------> LIVE --------------------> ENDING ----------------> ENDED
 *                 |  last holder, max_ttl,   |  ^                     |
 *                 |  revoke                  |  |  purge (slot needed)|
 *                 |                          |  +---------------------+
 *                 |                          | kind: gone        retention
 *                 |                          v                   over |
 *                 +-----------------------> forgotten <---------------+
 *                   (never: a live lease always ends first)
 *
 * Ending never gives up: a failed try of the kind's end() is retried with
 * capped backoff, across restarts (the ENDING row is in the store).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "audit.h"
#include "clock.h"
#include "lease_int.h"
#include "log.h"
#include "metrics.h"
#include "ramkey_err.h"
#include "secret_arena.h"
#include "strmap.h"
#include "util.h"

#define END_RETRY_BASE_MS 1000
#define END_RETRY_CAP_MS 60000
/* A status change in flight lands before the end starts. */
#define END_DEFER_MS 200

static const char *state_name(enum lease_state st)
{
	switch (st) {
	case LEASE_ENDING:
		return STORE_STATE_ENDING;
	case LEASE_ENDED:
		return STORE_STATE_ENDED;
	default:
		return STORE_STATE_LIVE;
	}
}

/* ---- users, principals, kinds ---- */

struct lease_user *core_user(struct lease_core *c, const char *name)
{
	struct lease_user *u = strmap_get(c->users, name);

	if (u != NULL)
		return u;
	if ((u = calloc(1, sizeof(*u))) == NULL)
		return NULL;
	if ((u->name = strdup(name)) == NULL ||
	    strmap_put(c->users, u) != 0) {
		free(u->name);
		free(u);
		return NULL;
	}
	return u;
}

static void principal_rec_timer(void *arg)
{
	struct lease_principal *p = arg;

	if (p->intent != NULL)
		intent_reconcile(p);
}

struct lease_principal *core_principal(struct lease_core *c,
    struct core_kind *k, const char *name)
{
	struct lease_principal *p;
	size_t klen = strlen(k->k.ops->name), nlen = strlen(name);
	char *key;

	if ((key = malloc(klen + nlen + 2)) == NULL)
		return NULL;
	memcpy(key, k->k.ops->name, klen);
	key[klen] = '\n';
	memcpy(key + klen + 1, name, nlen + 1);
	p = strmap_get(c->principals, key);
	free(key);
	if (p != NULL)
		return p;
	/* The key lives after the struct, in the same allocation. */
	if ((p = calloc(1, sizeof(*p) + klen + nlen + 2)) == NULL)
		return NULL;
	p->key = (char *)(p + 1);
	memcpy(p->key, k->k.ops->name, klen);
	p->key[klen] = '\n';
	memcpy(p->key + klen + 1, name, nlen + 1);
	p->name = p->key + klen + 1;
	if (strmap_put(c->principals, p) != 0) {
		free(p);
		return NULL;
	}
	p->kind = k;
	ev_timer_init(&p->rec_timer, principal_rec_timer, p);
	return p;
}

struct core_kind *core_kind_by_name(struct lease_core *c, const char *name)
{
	unsigned i;

	for (i = 0; i < c->nkinds; i++)
		if (strcmp(c->kinds[i]->k.ops->name, name) == 0)
			return c->kinds[i];
	return NULL;
}

/* ---- metrics ---- */

static const char *const mint_results[] = { "ok", "refused", "failed",
	"rate_limited", NULL };
static const char *const end_results[] = { "deleted", "already_gone",
	"deactivated", "left_to_expire", "other", "failed_try", NULL };

int lease_core_set_metrics(struct lease_core *c, struct metrics *m)
{
	const struct metric_label mint[] = { { "result", mint_results } };
	const struct metric_label end[] = { { "result", end_results } };
	int r;

	if ((r = metrics_counter(m, "ramkey_mints_total", "Credentials "
	    "obtained for leases (result ok, renewals included), and obtains "
	    "that ended without one: refused by the cloud, failed, or over "
	    "mint_rate.", mint, 1, &c->m_mints)) != 0 ||
	    (r = metrics_counter(m, "ramkey_revocations_total", "Credentials "
	    "ended at the cloud, by result, and failed tries of ending one "
	    "(failed_try; retried until it succeeds).", end, 1,
	    &c->m_revocations)) != 0) {
		c->m_mints = c->m_revocations = NULL;
		return r;
	}
	return 0;
}

void core_count_mint(struct lease_core *c, const char *result)
{
	metric_inc(c->m_mints, result, NULL);
}

void core_count_mint_failure(struct lease_core *c,
    const struct kind_error *err)
{
	core_count_mint(c, err != NULL && err->code[0] != '\0' &&
	    !err->transient && err->rc != RAMKEY_ERR_RAM_TIMEOUT ?
	    "refused" : "failed");
}

/* The kind's word for a completed end (kind_end_fn) as a label value. */
static const char *end_result(const char *detail)
{
	if (detail == NULL)
		return "other";
	if (strcmp(detail, "deleted") == 0)
		return "deleted";
	if (strcmp(detail, "already-gone") == 0)
		return "already_gone";
	if (strcmp(detail, "deactivated") == 0)
		return "deactivated";
	if (strcmp(detail, "expires") == 0)
		return "left_to_expire";
	return "other";
}

/* ---- audit ---- */

static void audit_any(const char *event, const struct lease_user *u,
    const struct lease_principal *p, const char *cred_id,
    const struct lease_peer *peer, const char *extra)
{
	struct audit_who who = { 0 };

	if (peer != NULL) {
		who.known = true;
		who.uid = peer->uid;
		who.pid = peer->pid;
		who.rhost = peer->rhost;
		who.tty = peer->tty;
	}
	audit_line(event, u->name, p->kind->k.ops->capacity > 0 ?
	    "ram_user" : "role", p->name, cred_id, &who, extra);
}

void core_audit(const char *event, const struct lease *l,
    const struct lease_peer *peer, const char *extra)
{
	audit_any(event, l->u, l->p, l->cred_id, peer, extra);
}

void core_audit_principal(const char *event, const struct lease_user *u,
    const struct lease_principal *p, const struct lease_peer *peer,
    const char *extra)
{
	audit_any(event, u, p, NULL, peer, extra);
}

/* ---- a lease's life ---- */

static void lease_timer_fired(void *arg);

struct lease *lease_by_id(struct lease_core *c, uint64_t id)
{
	return idmap_get(c->by_id, id);
}

struct lease *lease_new(struct lease_core *c, struct lease_user *u,
    struct lease_principal *p, uint64_t id)
{
	struct lease *l = calloc(1, sizeof(*l));

	if (l == NULL)
		return NULL;
	l->id = id;
	l->core = c;
	l->u = u;
	l->p = p;
	l->state = LEASE_LIVE;
	snprintf(l->status, sizeof(l->status), "Active");
	ev_timer_init(&l->timer, lease_timer_fired, l);
	if (id >= c->next_lease_id)
		c->next_lease_id = id + 1;
	return l;
}

static void lease_free(struct lease *l)
{
	if (l == NULL)
		return;
	secret_arena_release(l->core->arena, l->token_slot);
	free(l->key_fingerprint);
	free(l);
}

int lease_take_credential(struct lease *l, const struct credential *cred)
{
	struct lease_core *c = l->core;
	uint32_t slot = 0, token_slot = 0;
	int r;

	if (strlen(cred->id) > CRED_ID_MAX)
		return RAMKEY_ERR_INVALID;
	if ((r = secret_arena_put(c->arena, cred->secret, cred->secret_len,
	    &slot)) != 0)
		return r;
	/* The token too is a secret: it lives in the arena. */
	if (cred->token != NULL && (r = secret_arena_put(c->arena,
	    cred->token, strlen(cred->token), &token_slot)) != 0) {
		secret_arena_release(c->arena, slot);
		return r;
	}
	if (l->cred_id[0] != '\0' && strmap_get(c->by_cred, l->cred_id) == l)
		strmap_del(c->by_cred, l->cred_id);
	secret_arena_release(c->arena, l->secret_slot);
	l->secret_slot = slot;
	secret_arena_release(c->arena, l->token_slot);
	l->token_slot = token_slot;
	snprintf(l->cred_id, sizeof(l->cred_id), "%s", cred->id);
	snprintf(l->create_date, sizeof(l->create_date), "%s",
	    cred->create_date != NULL ? cred->create_date : "");
	snprintf(l->status, sizeof(l->status), "%s",
	    cred->status != NULL && cred->status[0] ? cred->status : "Active");
	l->create_time = cred->create_time;
	l->expiration = cred->expiration;
	l->renewal_failed = false;
	if (l->id != 0 && lease_by_id(c, l->id) == l &&
	    strmap_put(c->by_cred, l) != 0)
		return RAMKEY_ERR_NOMEM;
	return 0;
}


/* Into the maps and the user's list, in the state it has (new: live;
 * loaded: what the store says). */
void lease_link(struct lease *l, enum lease_state state)
{
	struct lease_core *c = l->core;

	l->state = state;
	(void)idmap_put(c->by_id, l->id, l);
	if (l->cred_id[0] != '\0')
		(void)strmap_put(c->by_cred, l);
	l->next_of_user = l->u->leases;
	l->u->leases = l;
	l->p->nleases++;
	if (state == LEASE_LIVE)
		c->live++;
	else if (state == LEASE_ENDING)
		c->pending_ends++;
}

void lease_save(struct lease *l)
{
	struct lease_core *c = l->core;
	struct store_lease_row r = {
		.id = l->id,
		.kind = l->p->kind->k.ops->name,
		.user = l->u->name,
		.uid = l->u->uid,
		.gid = l->u->gid,
		.principal = l->p->name,
		.cred_id = l->cred_id,
		.create_date = l->create_date,
		.received_ms = l->received_ms,
		.expiration = l->expiration,
		.status = l->status,
		.state = state_name(l->state),
		.kind_state = l->kind_state[0] ? l->kind_state : NULL,
		.ttl_expires_ms = l->ttl_expires_ms,
		.key_fingerprint = l->key_fingerprint,
	};

	c->store.put_lease(c->store.s, &r);
}

int64_t lease_end_ms(const struct lease *l)
{
	return l->received_ms + (int64_t)l->core->cfg.max_ttl_s * 1000;
}

int64_t lease_refresh_ms(const struct lease *l)
{
	const struct kind_ops *ops = l->p->kind->k.ops;
	struct kind_lease kl;

	if (ops->refresh_at != NULL) {
		lease_kind_view(l, &kl);
		return ops->refresh_at(l->p->kind->k.state, &kl);
	}
	if (ops->capacity > 0)
		return l->received_ms + (int64_t)l->core->cfg.max_ttl_s * 800;
	return lease_end_ms(l);
}

/* How long an ended credential stays valid at the cloud (kinds that
 * cannot revoke, STS), wall ms, or 0. */
static int64_t valid_after_end(const struct lease *l)
{
	const struct kind_ops *ops = l->p->kind->k.ops;
	struct kind_lease kl;

	if (!ops->renews_in_place || ops->retain_until == NULL)
		return 0;
	lease_kind_view(l, &kl);
	return ops->retain_until(l->p->kind->k.state, &kl);
}

void lease_kind_view(const struct lease *l, struct kind_lease *kl)
{
	memset(kl, 0, sizeof(*kl));
	kl->principal = l->p->name;
	kl->user = l->u->name;
	kl->cred_id = l->cred_id;
	kl->kind_state = l->kind_state;
	kl->status = l->status;
	kl->create_time = l->create_time;
	kl->expiration = l->expiration;
	kl->received_ms = l->received_ms;
	kl->lease_end_ms = lease_end_ms(l);
	kl->has_secret = l->secret_slot != 0;
	kl->renewal_failed = l->renewal_failed;
}

/* The one timer of a lease: expiry while live, retries while ending,
 * the end of retention once ended. */
void lease_arm(struct lease *l)
{
	struct lease_core *c = l->core;
	const struct kind_ops *ops = l->p->kind->k.ops;
	struct kind_lease kl;
	int64_t when;

	switch (l->state) {
	case LEASE_LIVE:
		when = lease_end_ms(l);
		if (l->ttl_expires_ms != 0 && l->ttl_expires_ms < when)
			when = l->ttl_expires_ms;
		(void)evloop_timer_arm(c->loop, &l->timer,
		    clock_wall_to_mono(when));
		break;
	case LEASE_ENDED:
		lease_kind_view(l, &kl);
		when = ops->retain_until != NULL ?
		    ops->retain_until(l->p->kind->k.state, &kl) : 0;
		if (when > 0)
			(void)evloop_timer_arm(c->loop, &l->timer,
			    clock_wall_to_mono(when));
		else
			evloop_timer_cancel(c->loop, &l->timer);
		break;
	case LEASE_ENDING:
		break; /* armed by the retry logic */
	}
}

static void live_timer(struct lease *l)
{
	int64_t now = clock_wall_ms();

	if (now >= lease_end_ms(l)) {
		lease_end(l, "max_ttl reached");
		return;
	}
	if (l->ttl_expires_ms != 0 && now >= l->ttl_expires_ms) {
		l->ttl_expires_ms = 0;
		lease_save(l);
		if (l->nsessions == 0) {
			holders_gone(l, "TTL holder expired");
			if (l->state != LEASE_LIVE)
				return;
		}
	}
	lease_arm(l);
}

static void end_start(struct lease *l);

static void lease_timer_fired(void *arg)
{
	struct lease *l = arg;

	switch (l->state) {
	case LEASE_LIVE:
		live_timer(l);
		break;
	case LEASE_ENDING:
		end_start(l);
		break;
	case LEASE_ENDED:
		/* Retention is over (an STS token has expired). */
		lease_forget(l);
		break;
	}
}

/* ---- ending ---- */

static void end_save(void *arg, const char *kind_state, const char *status)
{
	struct lease *l = arg;

	snprintf(l->kind_state, sizeof(l->kind_state), "%s",
	    kind_state != NULL ? kind_state : "");
	if (status != NULL)
		snprintf(l->status, sizeof(l->status), "%s", status);
	lease_save(l);
}

static void end_retry(struct lease *l, const struct kind_error *err)
{
	struct lease_core *c = l->core;
	uint64_t delay = END_RETRY_BASE_MS;
	char masked[RAMKEY_MASKED_MAX];
	unsigned i;

	for (i = 0; i < l->end_attempts && delay < END_RETRY_CAP_MS; i++)
		delay *= 2;
	if (delay > END_RETRY_CAP_MS)
		delay = END_RETRY_CAP_MS;
	delay = delay / 2 + randombytes_uniform((uint32_t)(delay / 2) + 1);
	l->end_attempts++;
	metric_inc(c->m_revocations, "failed_try", NULL);
	ramkey_mask_key_id(l->cred_id, masked);
	log_warn("revoking %s of %s %s failed (%s); retrying in %llu ms",
	    masked, l->p->kind->k.ops->capacity > 0 ? "RAM user" : "role",
	    l->p->name, err != NULL ? (err->code[0] ? err->code :
	    err->message) : "error", (unsigned long long)delay);
	(void)evloop_timer_arm(c->loop, &l->timer, evloop_now() + delay);
}

static void end_done(void *arg, int rc, enum kind_end result,
    const char *detail, const struct kind_error *err)
{
	struct lease *l = arg;
	struct lease_core *c = l->core;
	char extra[96];

	l->end_op = NULL;
	if (rc != 0) {
		end_retry(l, err);
		return;
	}
	snprintf(extra, sizeof(extra), "result=%s attempts=%u",
	    detail != NULL ? detail : "done", l->end_attempts + 1);
	core_audit("revoked", l, NULL, extra);
	metric_inc(c->m_revocations, end_result(detail), NULL);
	if (result == KIND_END_GONE) {
		lease_forget(l);
		return;
	}
	/* Retained: parked Inactive, or valid until it expires. */
	l->state = LEASE_ENDED;
	l->purge = false;
	c->pending_ends--;
	lease_save(l);
	lease_arm(l);
	principal_ready(l->p);
}

static void end_start(struct lease *l)
{
	struct lease_core *c = l->core;
	const struct core_kind *k = l->p->kind;
	struct kind_lease kl;
	int r;

	if (l->state != LEASE_ENDING || l->end_op != NULL || c->stopping)
		return;
	if (l->status_op != NULL) {
		/* Let the user's status change land first, then override. */
		l->end_deferred = true;
		(void)evloop_timer_arm(c->loop, &l->timer,
		    evloop_now() + END_DEFER_MS);
		return;
	}
	lease_kind_view(l, &kl);
	r = k->k.ops->end(k->k.state, &kl, l->purge, end_save, end_done, l,
	    &l->end_op);
	if (r != 0) {
		l->end_op = NULL;
		end_retry(l, NULL);
	}
}

void lease_end(struct lease *l, const char *why)
{
	struct lease_core *c = l->core;
	char extra[160];

	if (l->state != LEASE_LIVE)
		return;
	while (l->sessions != NULL) {
		char reason[160];

		snprintf(reason, sizeof(reason), "lease ended: %s", why);
		audit_detach(l->sessions, reason);
		session_detach(l->sessions);
	}
	l->ttl_expires_ms = 0;
	evloop_timer_cancel(c->loop, &l->timer);
	/* The secret is wiped now; the credential is ended at the cloud
	 * (or left to expire) by the kind. */
	secret_arena_release(c->arena, l->secret_slot);
	l->secret_slot = 0;
	secret_arena_release(c->arena, l->token_slot);
	l->token_slot = 0;
	l->state = LEASE_ENDING;
	c->live--;
	c->pending_ends++;
	l->end_attempts = 0;
	lease_save(l);
	snprintf(extra, sizeof(extra), "reason=\"%s\"", why);
	core_audit("revoke", l, NULL, extra);
	renewal_lease_ended(l);
	end_start(l);
}

void lease_purge(struct lease *l)
{
	struct lease_core *c = l->core;

	if (l->state != LEASE_ENDED)
		return;
	l->state = LEASE_ENDING;
	l->purge = true;
	c->pending_ends++;
	l->end_attempts = 0;
	evloop_timer_cancel(c->loop, &l->timer);
	lease_save(l);
	end_start(l);
}

void lease_resume_end(struct lease *l)
{
	if (l->state != LEASE_ENDING)
		return;
	l->end_attempts = 0;
	end_start(l);
}

void lease_status_op_done(struct lease *l)
{
	l->status_op = NULL;
	if (l->end_deferred) {
		l->end_deferred = false;
		evloop_timer_cancel(l->core->loop, &l->timer);
		end_start(l);
	}
}

void lease_adopt_orphan(struct lease_core *c, struct lease_principal *p,
    const char *user, const char *cred_id, const char *create_date)
{
	struct lease_user *u;
	struct lease *l;

	if (strmap_get(c->by_cred, cred_id) != NULL)
		return;
	if ((u = core_user(c, user)) == NULL ||
	    (l = lease_new(c, u, p, c->next_lease_id)) == NULL) {
		log_err("out of memory recording the revocation of a lost "
		    "credential of %s", p->name);
		return;
	}
	snprintf(l->cred_id, sizeof(l->cred_id), "%s", cred_id);
	snprintf(l->create_date, sizeof(l->create_date), "%s",
	    create_date != NULL ? create_date : "1970-01-01T00:00:00Z");
	(void)ramkey_parse_time(l->create_date, &l->create_time);
	l->received_ms = clock_wall_ms();
	lease_link(l, LEASE_ENDING);
	lease_save(l);
	core_audit("revoke", l, NULL,
	    "reason=\"lost mint found after a crash\"");
	end_start(l);
}

void lease_forget(struct lease *l)
{
	struct lease_core *c = l->core;
	const struct core_kind *k = l->p->kind;
	struct lease_principal *p = l->p;
	struct lease **pp;

	while (l->sessions != NULL)
		session_detach(l->sessions);
	evloop_timer_cancel(c->loop, &l->timer);
	if (l->end_op != NULL)
		k->k.ops->cancel(k->k.state, l->end_op);
	l->end_op = NULL;
	secret_arena_release(c->arena, l->secret_slot);
	l->secret_slot = 0;
	secret_arena_release(c->arena, l->token_slot);
	l->token_slot = 0;
	if (l->state == LEASE_ENDING)
		c->pending_ends--;
	else if (l->state == LEASE_LIVE)
		c->live--;
	renewal_lease_ended(l);
	files_forget_cred(c, l->u, l->cred_id);
	if (strmap_get(c->by_cred, l->cred_id) == l)
		strmap_del(c->by_cred, l->cred_id);
	if (idmap_get(c->by_id, l->id) == l)
		idmap_del(c->by_id, l->id);
	for (pp = &l->u->leases; *pp != NULL; pp = &(*pp)->next_of_user)
		if (*pp == l) {
			*pp = l->next_of_user;
			break;
		}
	p->nleases--;
	c->store.del_lease(c->store.s, l->id);
	if (l->status_op != NULL)
		lease_status_op_done(l); /* its requester learns it failed */
	lease_free(l);
	principal_ready(p);
}

/* ---- status changes (the Terraform status argument) ---- */

struct lease_op {
	struct lease_core *core;
	uint64_t lease_id;
	struct kind_op *kop;
	char status[CRED_STATUS_MAX];
	lease_done_fn fn;
	void *arg;
	bool cancelled;
	bool committing;
};

static void status_committed(void *arg, bool ok)
{
	struct lease_op *op = arg;
	struct lease_failure f = { RAMKEY_ERR_STORE, NULL, "the change is "
	    "made but could not be recorded (state store not writable); "
	    "check state_dir" };

	if (!op->cancelled)
		op->fn(op->arg, ok ? 0 : f.rc, ok ? NULL : &f);
	free(op);
}

static void status_done(void *arg, int rc, const struct kind_error *err)
{
	struct lease_op *op = arg;
	struct lease_core *c = op->core;
	struct lease *l = lease_by_id(c, op->lease_id);
	struct lease_failure f = { 0 };
	char extra[64];

	op->kop = NULL;
	if (l != NULL && l->status_op == op)
		lease_status_op_done(l);
	if (rc != 0 || l == NULL || l->state != LEASE_LIVE) {
		f.rc = rc != 0 ? rc : RAMKEY_ERR_NOT_FOUND;
		f.code = err != NULL && err->code[0] ? err->code : NULL;
		f.message = rc != 0 && err != NULL ? err->message : "the lease "
		    "ended while its status was being changed; it is revoked";
		if (!op->cancelled)
			op->fn(op->arg, f.rc, &f);
		free(op);
		return;
	}
	snprintf(l->status, sizeof(l->status), "%s", op->status);
	lease_save(l);
	snprintf(extra, sizeof(extra), "status=%s", l->status);
	core_audit("set-status", l, NULL, extra);
	op->committing = true;
	if (c->store.after_commit(c->store.s, status_committed, op) != 0)
		status_committed(op, false);
}

int lease_set_status(struct lease_core *c, uint64_t id, const char *status,
    lease_done_fn fn, void *arg, struct lease_op **opp)
{
	struct lease *l = lease_by_id(c, id);
	const struct core_kind *k;
	struct kind_lease kl;
	struct lease_op *op;
	int r;

	*opp = NULL;
	if (l == NULL || l->state != LEASE_LIVE)
		return RAMKEY_ERR_NOT_FOUND;
	k = l->p->kind;
	if (k->k.ops->set_status == NULL)
		return RAMKEY_ERR_INVALID;
	if (l->status_op != NULL)
		return RAMKEY_ERR_BUSY;
	if ((op = calloc(1, sizeof(*op))) == NULL)
		return RAMKEY_ERR_NOMEM;
	op->core = c;
	op->lease_id = id;
	op->fn = fn;
	op->arg = arg;
	snprintf(op->status, sizeof(op->status), "%s", status);
	lease_kind_view(l, &kl);
	if ((r = k->k.ops->set_status(k->k.state, &kl, status, status_done, op,
	    &op->kop)) != 0) {
		free(op);
		return r;
	}
	l->status_op = op;
	*opp = op;
	return 0;
}

void lease_op_cancel(struct lease_op *op)
{
	if (op == NULL)
		return;
	/* The change goes on (it is the user's); only the answer is
	 * dropped. */
	op->cancelled = true;
}

void lease_set_fingerprint(struct lease_core *c, uint64_t id, const char *fpr)
{
	struct lease *l = lease_by_id(c, id);
	char *dup;

	if (l == NULL || fpr == NULL || (dup = strdup(fpr)) == NULL)
		return;
	free(l->key_fingerprint);
	l->key_fingerprint = dup;
	lease_save(l);
}

static void revoke_one(struct lease *l, const char *why, unsigned *n,
    int64_t *valid_until)
{
	int64_t v = valid_after_end(l);

	if (valid_until != NULL && v > *valid_until)
		*valid_until = v;
	lease_end(l, why);
	(*n)++;
}

void lease_revoke(struct lease_core *c, uint64_t id, const char *user,
    const char *why, unsigned *n, int64_t *valid_until)
{
	struct strmap_iter it;
	struct lease *l, *next;
	void *v;

	*n = 0;
	if (valid_until != NULL)
		*valid_until = 0;
	if (id != 0) {
		if ((l = lease_by_id(c, id)) != NULL &&
		    l->state == LEASE_LIVE)
			revoke_one(l, why, n, valid_until);
		return;
	}
	if (user != NULL) {
		struct lease_user *u = strmap_get(c->users, user);

		for (l = u != NULL ? u->leases : NULL; l != NULL; l = next) {
			next = l->next_of_user;
			if (l->state == LEASE_LIVE)
				revoke_one(l, why, n, valid_until);
		}
		return;
	}
	/* Everyone's: collect first (ending changes the maps). */
	{
		struct lease **all = calloc(c->live + 1, sizeof(*all));
		size_t k = 0, i;

		if (all == NULL)
			return;
		strmap_iter_init(&it);
		while (idmap_next(c->by_id, &it, NULL, &v))
			if (((struct lease *)v)->state == LEASE_LIVE &&
			    k < c->live)
				all[k++] = v;
		for (i = 0; i < k; i++)
			revoke_one(all[i], why, n, valid_until);
		free(all);
	}
}
