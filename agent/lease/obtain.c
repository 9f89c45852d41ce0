/*
 * Acquiring a lease. A requester either gets the user's current lease of
 * the principal at once, or waits on an obtain: concurrent requesters for
 * the same user and principal share one (single-flight). For kinds with
 * a limit per principal (AccessKeys: two per RAM user), obtains for one
 * principal run one at a time, and none starts while the principal has
 * an unresolved intent. One obtain:
 *
 *   prepare (kind: e.g. a snapshot) -> intent, durable -> obtain (kind)
 *   -> lease, durable (intent dropped in the same commit) -> holders
 *
 * An obtain whose outcome is unknown (a timeout, a transport error) keeps
 * its intent, and the kind reconciles it before the principal obtains
 * again. Kinds that renew in place (STS) get a fresh credential into the
 * same lease when theirs runs low, one renewal at a time per lease.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "lease_int.h"
#include "log.h"
#include "ramkey_err.h"
#include "strmap.h"
#include "util.h"

#define RECONCILE_RETRY_MS 5000

#define STORE_BROKEN_MSG                                                    \
	"the agent's state store is not writable (disk full or read-only?), " \
	"so no key was minted; check state_dir"

struct obtain {
	struct lease_core *core;
	struct lease_user *u;
	struct lease_principal *p;
	struct lease *renew;		/* renewal in place of this lease */
	bool renewal;			/* (renew is NULL once it ended) */
	struct lease_wait *waiters;
	struct obtain *next_of_user;
	struct obtain *next_in_queue;
	struct intent *intent;		/* made durable for this obtain */
	struct kind_op *op;
	bool queued;
	bool committing;
};

enum wait_phase { W_DEFERRED, W_OBTAIN, W_COMMIT };

struct lease_wait {
	struct lease_core *core;
	struct lease_want want;		/* strings borrowed from the caller */
	lease_ready_fn fn;
	void *arg;
	enum wait_phase phase;
	struct obtain *ob;
	struct lease_wait *next;
	struct lease_user *u;
	struct lease_principal *p;
	/* The grant. */
	uint64_t lease_id;
	char token[RAMKEY_SESSION_TOKEN_LEN + 1];
	char *reply_file;
	bool minted;
	int64_t old_ttl;
	/* A failure delivered from the loop. */
	struct ev_timer timer;
	int rc;
	char code[KIND_CODE_MAX];
	char message[KIND_MESSAGE_MAX];
};

static void wait_free(struct lease_wait *w)
{
	if (w == NULL)
		return;
	evloop_timer_cancel(w->core->loop, &w->timer);
	free(w->reply_file);
	free(w);
}

static void wait_deliver_failure(void *arg)
{
	struct lease_wait *w = arg;
	struct lease_failure f = { w->rc, w->code[0] ? w->code : NULL,
		w->message };

	w->fn(w->arg, w->rc, NULL, &f);
	wait_free(w);
}

/* Fail w from the loop (never inside the caller's own call). */
static void wait_fail(struct lease_wait *w, int rc, const char *code,
    const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static void wait_fail(struct lease_wait *w, int rc, const char *code,
    const char *fmt, ...)
{
	va_list ap;

	w->phase = W_DEFERRED;
	w->ob = NULL;
	w->rc = rc;
	snprintf(w->code, sizeof(w->code), "%s", code != NULL ? code : "");
	va_start(ap, fmt);
	vsnprintf(w->message, sizeof(w->message), fmt, ap);
	va_end(ap);
	(void)evloop_timer_arm(w->core->loop, &w->timer, evloop_now());
}

static const char *principal_word(const struct lease_principal *p)
{
	return p->kind->k.ops->capacity > 0 ? "RAM user" : "role";
}

/* ---- handing a lease to a waiter ---- */

static void wait_committed(void *arg, bool ok)
{
	struct lease_wait *w = arg;
	struct lease_core *c = w->core;
	struct lease *l = lease_by_id(c, w->lease_id);
	struct lease_grant g;

	if (!ok) {
		/* Nothing unrecorded may be handed out: undo the holder. */
		struct session *s = w->token[0] ?
		    strmap_get(c->sessions, w->token) : NULL;

		if (s != NULL)
			session_end(s, "state store not writable");
		else if (l != NULL && l->state == LEASE_LIVE && w->minted &&
		    !lease_held(l))
			lease_end(l, "state store not writable");
		else if (l != NULL && l->state == LEASE_LIVE &&
		    w->want.holder == LEASE_HOLD_TTL) {
			l->ttl_expires_ms = w->old_ttl;
			lease_arm(l);
		}
		w->rc = RAMKEY_ERR_STORE;
		w->code[0] = '\0';
		snprintf(w->message, sizeof(w->message), "the agent's state "
		    "store is not writable (disk full or read-only?); check "
		    "state_dir");
		wait_deliver_failure(w);
		return;
	}
	memset(&g, 0, sizeof(g));
	g.lease_id = w->lease_id;
	g.session = w->token[0] ? w->token : NULL;
	g.secret_file = w->reply_file;
	g.minted = w->minted;
	w->fn(w->arg, 0, &g, NULL);
	wait_free(w);
}

/* Attach w's holder to l, record the file, and answer once durable. */
static void wait_grant(struct lease_wait *w, struct lease *l, bool minted)
{
	struct lease_core *c = w->core;
	const struct lease_want *want = &w->want;
	struct lease_user *u = l->u;
	struct session *s = NULL, *latest;
	char extra[96];
	int r;

	w->ob = NULL;
	w->lease_id = l->id;
	w->minted = minted;
	if (want->holder == LEASE_HOLD_SESSION) {
		if ((r = session_attach(l, want, &s)) != 0) {
			if (minted && !lease_held(l))
				lease_end(l, "could not record its holder");
			wait_fail(w, r, NULL, "cannot record the session: %s",
			    ramkey_strerror(r));
			return;
		}
		snprintf(w->token, sizeof(w->token), "%s", s->token);
		snprintf(extra, sizeof(extra), "holder=session sessions=%u",
		    l->nsessions);
	} else {
		w->old_ttl = l->ttl_expires_ms;
		if (l->nsessions == 0)
			lease_set_ttl_holder(l, clock_wall_ms() +
			    (int64_t)want->ttl_s * 1000);
		snprintf(extra, sizeof(extra), "holder=%s", l->nsessions == 0 ?
		    "ttl" : "none(pam session holds it)");
	}
	core_audit("attach", l, &want->peer, extra);
	latest = user_latest_session(u);
	if (want->holder == LEASE_HOLD_SESSION)
		file_written(c, u, want->secret_file, l->cred_id, w->token);
	else if (want->fetch_path != NULL)
		file_written(c, u, want->fetch_path, l->cred_id, NULL);
	else if (want->default_file && latest != NULL)
		/* fetch writes the file of the user's login session. */
		file_written(c, u, latest->secret_file, l->cred_id, NULL);
	if (want->holder == LEASE_HOLD_TTL && latest != NULL &&
	    (w->reply_file = strdup(latest->secret_file)) == NULL) {
		wait_fail(w, RAMKEY_ERR_NOMEM, NULL, "out of memory");
		return;
	}
	w->phase = W_COMMIT;
	if (c->store.after_commit(c->store.s, wait_committed, w) != 0)
		wait_committed(w, false);
}

/* ---- mint_rate: obtains per principal per period ---- */

/* Only the obtains inside the window are kept, in an array that grows
 * with them (up to mint_rate) and goes when the window is empty: a
 * principal that obtained once costs a few bytes, not mint_rate slots. */
static void rate_expire(struct lease_core *c, struct lease_principal *p,
    uint32_t now)
{
	uint32_t i = 0;

	while (i < p->nmint && (uint64_t)(now - p->mint_times[i]) >=
	    c->cfg.mint_rate_period_s)
		i++;
	if (i == 0)
		return;
	p->nmint -= i;
	memmove(p->mint_times, p->mint_times + i,
	    p->nmint * sizeof(*p->mint_times));
	if (p->nmint == 0) {
		free(p->mint_times);
		p->mint_times = NULL;
		p->mint_cap = 0;
	}
}

static bool rate_exceeded(struct lease_core *c, struct lease_principal *p)
{
	if (c->cfg.mint_rate == 0)
		return false;
	rate_expire(c, p, (uint32_t)(clock_wall_ms() / 1000));
	return p->nmint >= c->cfg.mint_rate;
}

static void rate_record(struct lease_core *c, struct lease_principal *p)
{
	uint32_t now = (uint32_t)(clock_wall_ms() / 1000);

	if (c->cfg.mint_rate == 0)
		return;
	rate_expire(c, p, now);
	if (p->nmint >= c->cfg.mint_rate) {
		/* mint_rate lowered by a reload: keep the newest. */
		uint32_t drop = p->nmint - c->cfg.mint_rate + 1;

		p->nmint -= drop;
		memmove(p->mint_times, p->mint_times + drop,
		    p->nmint * sizeof(*p->mint_times));
	}
	if (p->nmint == p->mint_cap) {
		uint32_t cap = p->mint_cap ? p->mint_cap * 2 : 2;
		uint32_t *t;

		if (cap > c->cfg.mint_rate)
			cap = c->cfg.mint_rate;
		if ((t = realloc(p->mint_times, cap * sizeof(*t))) == NULL)
			return; /* this obtain goes uncounted */
		p->mint_times = t;
		p->mint_cap = cap;
	}
	p->mint_times[p->nmint++] = now;
}

/* ---- obtains ---- */

void intent_free(struct intent *in)
{
	if (in == NULL)
		return;
	free(in->user);
	free(in->data);
	free(in);
}

static void intent_save(struct lease_core *c, const struct intent *in)
{
	struct store_intent_row r = { in->id, in->p->kind->k.ops->name,
		in->p->name, in->user, in->started_ms, in->data };

	c->store.put_intent(c->store.s, &r);
}

static void intent_drop(struct lease_core *c, struct intent *in)
{
	c->store.del_intent(c->store.s, in->id);
	intent_free(in);
}

static void ob_free(struct obtain *ob)
{
	struct obtain **pp;

	if (ob == NULL)
		return;
	if (ob->u != NULL)
		for (pp = &ob->u->obtains; *pp != NULL;
		    pp = &(*pp)->next_of_user)
			if (*pp == ob) {
				*pp = ob->next_of_user;
				break;
			}
	if (ob->renew != NULL && ob->renew->renewal == ob)
		ob->renew->renewal = NULL;
	if (ob->committing)
		ob->core->store.cancel_after_commit(ob->core->store.s, ob);
	intent_free(ob->intent);
	free(ob);
}

/* The obtain is over: let the principal's next one run. */
static void ob_finish(struct obtain *ob)
{
	struct lease_principal *p = ob->p;

	if (p->running == ob)
		p->running = NULL;
	ob_free(ob);
	principal_ready(p);
}

static void ob_fail(struct obtain *ob, int rc, const char *code,
    const char *msg)
{
	struct lease_wait *w, *next;

	for (w = ob->waiters; w != NULL; w = next) {
		next = w->next;
		w->next = NULL;
		wait_fail(w, rc, code, "%s", msg);
	}
	ob->waiters = NULL;
}

static void ob_fail_kind(struct obtain *ob, const char *what,
    const struct kind_error *err)
{
	char msg[KIND_MESSAGE_MAX];
	int rc = err != NULL ? err->rc : RAMKEY_ERR_INTERNAL;

	if (err != NULL && err->message[0] != '\0')
		snprintf(msg, sizeof(msg), "%s", err->message);
	else
		snprintf(msg, sizeof(msg), "%s for %s %s failed", what,
		    principal_word(ob->p), ob->p->name);
	log_warn("%s", msg);
	ob_fail(ob, rc, err != NULL && err->code[0] ? err->code : NULL, msg);
}

static void obtain_done(void *arg, int rc, const struct credential *cred,
    const char *intent_update, const struct kind_error *err);
static void obtain_progress(void *arg, const struct kind_error *err);

static void ob_obtain(struct obtain *ob)
{
	struct lease_core *c = ob->core;
	const struct core_kind *k = ob->p->kind;
	struct kind_obtain req;

	memset(&req, 0, sizeof(req));
	req.principal = ob->p->name;
	req.user = ob->u->name;
	req.uid = ob->u->uid;
	req.intent = ob->intent != NULL ? ob->intent->data : NULL;
	req.renewal = ob->renewal;
	req.lease_end_ms = ob->renew != NULL ? lease_end_ms(ob->renew) :
	    clock_wall_ms() + (int64_t)c->cfg.max_ttl_s * 1000;
	req.progress = obtain_progress;
	if (k->k.ops->obtain(k->k.state, &req, obtain_done, ob,
	    &ob->op) != 0) {
		ob->op = NULL;
		if (ob->intent != NULL) {
			/* Nothing was sent: the intent can go. */
			intent_drop(c, ob->intent);
			ob->intent = NULL;
		}
		core_count_mint(c, "failed");
		ob_fail(ob, RAMKEY_ERR_INTERNAL, NULL, "cannot start obtaining "
		    "a credential");
		ob_finish(ob);
	}
}

static void intent_committed(void *arg, bool ok)
{
	struct obtain *ob = arg;
	struct lease_core *c = ob->core;

	ob->committing = false;
	if (ok && c->stopping) {
		/* Nothing is obtained on the way out. */
		intent_drop(c, ob->intent);
		ob->intent = NULL;
		ob_fail(ob, RAMKEY_ERR_UNAVAILABLE, NULL, "the agent is "
		    "stopping; try again when it is back");
		ob_finish(ob);
		return;
	}
	if (!ok) {
		intent_free(ob->intent);
		ob->intent = NULL;
		core_count_mint(c, "failed");
		ob_fail(ob, RAMKEY_ERR_STORE, NULL, STORE_BROKEN_MSG);
		ob_finish(ob);
		return;
	}
	if (ob->waiters == NULL) {
		/* Everybody gave up: obtain nothing nobody will hold. */
		intent_drop(c, ob->intent);
		ob->intent = NULL;
		ob_finish(ob);
		return;
	}
	ob_obtain(ob);
}

static void prepare_done(void *arg, int rc, const char *intent,
    const struct kind_error *err)
{
	struct obtain *ob = arg;
	struct lease_core *c = ob->core;
	struct intent *in;

	ob->op = NULL;
	if (rc != 0) {
		core_count_mint_failure(c, err);
		ob_fail_kind(ob, "preparing", err);
		ob_finish(ob);
		return;
	}
	if (ob->waiters == NULL) {
		ob_finish(ob);
		return;
	}
	if (c->store.broken(c->store.s)) {
		core_count_mint(c, "failed");
		ob_fail(ob, RAMKEY_ERR_STORE, NULL, STORE_BROKEN_MSG);
		ob_finish(ob);
		return;
	}
	if (intent == NULL) {
		ob_obtain(ob);
		return;
	}
	if ((in = calloc(1, sizeof(*in))) == NULL ||
	    (in->user = strdup(ob->u->name)) == NULL ||
	    (in->data = strdup(intent)) == NULL) {
		intent_free(in);
		core_count_mint(c, "failed");
		ob_fail(ob, RAMKEY_ERR_NOMEM, NULL, "out of memory");
		ob_finish(ob);
		return;
	}
	in->id = c->next_intent_id++;
	in->p = ob->p;
	in->started_ms = clock_wall_ms();
	ob->intent = in;
	intent_save(c, in);
	ob->committing = true;
	if (c->store.after_commit(c->store.s, intent_committed, ob) != 0) {
		ob->committing = false;
		intent_committed(ob, false);
		return;
	}
	evloop_wake(c->loop);
}

static void ob_run(struct obtain *ob)
{
	const struct core_kind *k = ob->p->kind;

	if (k->k.ops->capacity > 0)
		ob->p->running = ob;
	rate_record(ob->p->kind->core, ob->p);
	if (ob->renewal || k->k.ops->prepare == NULL) {
		ob_obtain(ob);
		return;
	}
	if (k->k.ops->prepare(k->k.state, ob->p->name, ob->u->name,
	    prepare_done, ob, &ob->op) != 0) {
		ob->op = NULL;
		core_count_mint(ob->core, "failed");
		ob_fail(ob, RAMKEY_ERR_INTERNAL, NULL, "cannot start obtaining "
		    "a credential");
		ob_finish(ob);
	}
}

void principal_ready(struct lease_principal *p)
{
	struct obtain *ob;

	while (p->running == NULL && p->intent == NULL && p->rec_op == NULL &&
	    (ob = p->queue_head) != NULL) {
		p->queue_head = ob->next_in_queue;
		if (p->queue_head == NULL)
			p->queue_tail = NULL;
		ob->next_in_queue = NULL;
		ob->queued = false;
		if (ob->waiters == NULL) {
			/* Everybody gave up while it queued. */
			ob_free(ob);
			continue;
		}
		ob_run(ob);
	}
}

/* Hand a new credential to the waiters: each attaches its holder. */
static void deliver(struct obtain *ob, struct lease *l, bool minted)
{
	struct lease_wait *w, *next;
	unsigned n = 0;

	for (w = ob->waiters; w != NULL; w = next) {
		next = w->next;
		w->next = NULL;
		n++;
		wait_grant(w, l, minted);
	}
	ob->waiters = NULL;
	if (n == 0 && minted && l->state == LEASE_LIVE && !lease_held(l))
		lease_end(l, "requester gave up before the mint finished");
}

static void renewal_done(struct obtain *ob, int rc,
    const struct credential *cred, const struct kind_error *err)
{
	struct lease *l = ob->renew;
	char extra[64];
	int r;

	if (rc != 0)
		core_count_mint_failure(ob->core, err);
	else if (l == NULL || l->state != LEASE_LIVE)
		core_count_mint(ob->core, "ok"); /* made, and let expire */
	if (rc != 0 || l == NULL || l->state != LEASE_LIVE) {
		if (l != NULL)
			l->renewal_failed = true;
		ob_fail_kind(ob, "renewing", err);
		ob_finish(ob);
		return;
	}
	if ((r = lease_take_credential(l, cred)) != 0) {
		core_count_mint(ob->core, "failed");
		ob_fail(ob, r, NULL, "cannot keep the renewed credential");
		ob_finish(ob);
		return;
	}
	lease_save(l);
	core_count_mint(ob->core, "ok");
	snprintf(extra, sizeof(extra), "renewal=yes");
	core_audit("mint", l, ob->waiters != NULL ? &ob->waiters->want.peer :
	    NULL, extra);
	deliver(ob, l, false);
	ob_finish(ob);
}

static void obtain_progress(void *arg, const struct kind_error *err)
{
	struct obtain *ob = arg;
	struct lease *l = ob->renew;
	struct lease_wait *w, **pp;
	struct kind_lease kl;
	enum kind_fresh f;

	(void)err;
	if (l == NULL || l->state != LEASE_LIVE)
		return;
	l->renewal_failed = true;
	/* The current credential may do meanwhile. */
	lease_kind_view(l, &kl);
	f = l->p->kind->k.ops->freshness != NULL ?
	    l->p->kind->k.ops->freshness(l->p->kind->k.state, &kl,
	    clock_wall_ms()) : KIND_FRESH;
	if (f != KIND_FRESH && f != KIND_FRESH_RENEW)
		return;
	if (err != NULL)
		log_warn("renewing the credential of %s %s failed a try (%s); "
		    "handing out the current one meanwhile",
		    principal_word(l->p), l->p->name,
		    err->code[0] ? err->code : err->message);
	for (pp = &ob->waiters; (w = *pp) != NULL;) {
		*pp = w->next;
		w->next = NULL;
		wait_grant(w, l, false);
	}
}

static void obtain_done(void *arg, int rc, const struct credential *cred,
    const char *intent_update, const struct kind_error *err)
{
	struct obtain *ob = arg;
	struct lease_core *c = ob->core;
	struct lease_principal *p = ob->p;
	struct lease *l;

	ob->op = NULL;
	if (ob->renewal) {
		renewal_done(ob, rc, cred, err);
		return;
	}
	if (rc != 0) {
		core_count_mint_failure(c, err);
		ob_fail_kind(ob, "obtaining", err);
		if (ob->intent != NULL) {
			if (err != NULL && err->outcome_unknown &&
			    p->intent == NULL) {
				/* A credential may exist: find out before
				 * this principal obtains again. */
				p->intent = ob->intent;
			} else {
				intent_drop(c, ob->intent);
			}
			ob->intent = NULL;
		}
		ob_finish(ob);
		if (p->intent != NULL)
			intent_reconcile(p);
		return;
	}
	if ((l = lease_new(c, ob->u, p, c->next_lease_id)) == NULL ||
	    lease_take_credential(l, cred) != 0) {
		/* It exists but cannot be kept: end it. */
		free(l);
		log_err("cannot keep the new credential of %s %s; ending it",
		    principal_word(p), p->name);
		lease_adopt_orphan(c, p, ob->u->name, cred->id,
		    cred->create_date);
		core_count_mint(c, "failed");
		if (ob->intent != NULL) {
			intent_drop(c, ob->intent);
			ob->intent = NULL;
		}
		ob_fail(ob, RAMKEY_ERR_INTERNAL, NULL, "out of memory");
		ob_finish(ob);
		return;
	}
	l->received_ms = clock_wall_ms();
	lease_link(l, LEASE_LIVE);
	lease_save(l);
	lease_arm(l);
	if (ob->intent != NULL) {
		if (intent_update != NULL && p->intent == NULL) {
			/* An earlier try may have made another one: keep the
			 * intent and look for it. */
			char *d = strdup(intent_update);

			if (d != NULL) {
				free(ob->intent->data);
				ob->intent->data = d;
			}
			intent_save(c, ob->intent);
			p->intent = ob->intent;
		} else {
			intent_drop(c, ob->intent);
		}
		ob->intent = NULL;
	}
	/* The audit line names who asked first. */
	core_count_mint(c, "ok");
	core_audit("mint", l, ob->waiters != NULL ? &ob->waiters->want.peer :
	    NULL, NULL);
	deliver(ob, l, true);
	ob_finish(ob);
	if (p->intent != NULL)
		intent_reconcile(p);
}

/* ---- reconciliation of an unresolved intent ---- */

static void reconcile_done(void *arg, int rc, const struct kind_error *err)
{
	struct lease_principal *p = arg;
	struct lease_core *c = p->kind->core;

	p->rec_op = NULL;
	if (p->intent == NULL) {
		principal_ready(p);
		return;
	}
	if (rc != 0) {
		log_warn("checking for a lost mint of %s %s failed (%s); "
		    "retrying; no new key for it until then",
		    principal_word(p), p->name, err != NULL &&
		    err->code[0] ? err->code : err != NULL ? err->message :
		    "error");
		(void)evloop_timer_arm(c->loop, &p->rec_timer,
		    evloop_now() + RECONCILE_RETRY_MS);
		return;
	}
	intent_drop(c, p->intent);
	p->intent = NULL;
	evloop_wake(c->loop);
	principal_ready(p);
}

void intent_reconcile(struct lease_principal *p)
{
	struct lease_core *c = p->kind->core;
	const struct core_kind *k = p->kind;
	struct kind_intent ki;

	if (p->intent == NULL || p->rec_op != NULL || c->stopping)
		return;
	if (k->k.ops->reconcile == NULL) {
		intent_drop(c, p->intent);
		p->intent = NULL;
		principal_ready(p);
		return;
	}
	evloop_timer_cancel(c->loop, &p->rec_timer);
	memset(&ki, 0, sizeof(ki));
	ki.principal = p->name;
	ki.user = p->intent->user;
	ki.data = p->intent->data;
	ki.started_ms = p->intent->started_ms;
	ki.recovered = p->intent->recovered;
	if (k->k.ops->reconcile(k->k.state, &ki, reconcile_done, p,
	    &p->rec_op) != 0) {
		p->rec_op = NULL;
		(void)evloop_timer_arm(c->loop, &p->rec_timer,
		    evloop_now() + RECONCILE_RETRY_MS);
	}
}

/* ---- acquire ---- */

static struct lease *current_lease(struct lease_user *u,
    struct lease_principal *p)
{
	struct lease *l, *best = NULL;

	for (l = u->leases; l != NULL; l = l->next_of_user)
		if (l->state == LEASE_LIVE && l->p == p &&
		    (best == NULL || l->received_ms > best->received_ms))
			best = l;
	return best;
}

static enum kind_fresh lease_freshness(struct lease *l)
{
	const struct kind_ops *ops = l->p->kind->k.ops;
	struct kind_lease kl;
	int64_t now = clock_wall_ms();

	if (l->secret_slot == 0)
		return ops->renews_in_place ? KIND_STALE_RENEW : KIND_REPLACE;
	/* L5: past 80% of max_ttl, a principal with a limit gets a new
	 * credential in its other slot. */
	if (ops->capacity > 0 && now - l->received_ms >
	    (int64_t)l->core->cfg.max_ttl_s * 800)
		return KIND_REPLACE;
	if (ops->freshness == NULL)
		return KIND_FRESH;
	lease_kind_view(l, &kl);
	return ops->freshness(l->p->kind->k.state, &kl, now);
}

static struct obtain *ob_new(struct lease_core *c, struct lease_user *u,
    struct lease_principal *p, struct lease *renew)
{
	struct obtain *ob = calloc(1, sizeof(*ob));

	if (ob == NULL)
		return NULL;
	ob->core = c;
	ob->u = u;
	ob->p = p;
	ob->renew = renew;
	ob->renewal = renew != NULL;
	ob->next_of_user = u->obtains;
	u->obtains = ob;
	if (renew != NULL)
		renew->renewal = ob;
	return ob;
}

static void ob_add_waiter(struct obtain *ob, struct lease_wait *w)
{
	struct lease_wait **pp;

	w->phase = W_OBTAIN;
	w->ob = ob;
	for (pp = &ob->waiters; *pp != NULL; pp = &(*pp)->next)
		;
	*pp = w;
}

/* Start a renewal of l (one at a time per lease). */
static int renewal_start(struct lease *l, struct obtain **ret)
{
	struct lease_core *c = l->core;
	struct obtain *ob;

	*ret = l->renewal;
	if (l->renewal != NULL)
		return 0;
	if (rate_exceeded(c, l->p))
		return RAMKEY_ERR_RATE;
	if ((ob = ob_new(c, l->u, l->p, l)) == NULL)
		return RAMKEY_ERR_NOMEM;
	l->renewal_failed = false;
	*ret = ob;
	ob_run(ob);
	return 0;
}

/* Past mint_rate, every request for the principal is refused: one deny
 * line per period, the next one counting those left out. */
#define RATE_DENY_AUDIT_MS 5000

static void deny_rate(struct lease_wait *w)
{
	struct lease_core *c = w->core;
	struct lease_principal *p = w->p;
	uint64_t now = evloop_now();
	char extra[64];

	core_count_mint(c, "rate_limited");
	if (p->rate_deny_ms != 0 &&
	    now - p->rate_deny_ms < RATE_DENY_AUDIT_MS) {
		p->rate_deny_suppressed++;
	} else {
		snprintf(extra, sizeof(extra), "reason=mint_rate");
		if (p->rate_deny_suppressed > 0)
			snprintf(extra, sizeof(extra), "reason=mint_rate "
			    "suppressed=%lu",
			    (unsigned long)p->rate_deny_suppressed);
		core_audit_principal("deny", w->u, p, &w->want.peer, extra);
		p->rate_deny_ms = now;
		p->rate_deny_suppressed = 0;
	}
	wait_fail(w, RAMKEY_ERR_RATE, NULL, "mint_rate exceeded for %s %s (at "
	    "most %u keys per %llu s); try again later", principal_word(w->p),
	    w->p->name, c->cfg.mint_rate,
	    (unsigned long long)c->cfg.mint_rate_period_s);
}

int lease_acquire(struct lease_core *c, const struct lease_want *want,
    lease_ready_fn fn, void *arg, struct lease_wait **waitp)
{
	struct core_kind *k;
	struct lease_wait *w;
	struct obtain *ob;
	struct lease *l;
	int r;

	if (waitp != NULL)
		*waitp = NULL;
	if (want->user == NULL || want->principal == NULL || fn == NULL ||
	    want->kind == NULL || (k = core_kind_by_name(c, want->kind)) ==
	    NULL)
		return RAMKEY_ERR_INVALID;
	if ((w = calloc(1, sizeof(*w))) == NULL)
		return RAMKEY_ERR_NOMEM;
	w->core = c;
	w->want = *want;
	w->fn = fn;
	w->arg = arg;
	ev_timer_init(&w->timer, wait_deliver_failure, w);
	if ((w->u = core_user(c, want->user)) == NULL ||
	    (w->p = core_principal(c, k, want->principal)) == NULL) {
		free(w);
		return RAMKEY_ERR_NOMEM;
	}
	w->u->uid = want->uid;
	w->u->gid = want->gid;
	if (waitp != NULL)
		*waitp = w;
	if (c->stopping) {
		wait_fail(w, RAMKEY_ERR_UNAVAILABLE, NULL, "the agent is "
		    "stopping; try again when it is back");
		return 0;
	}
	if (c->store.broken(c->store.s)) {
		wait_fail(w, RAMKEY_ERR_STORE, NULL, "the agent's state store "
		    "is not writable (disk full or read-only?); check "
		    "state_dir");
		return 0;
	}
	l = current_lease(w->u, w->p);
	switch (l != NULL ? lease_freshness(l) : KIND_REPLACE) {
	case KIND_FRESH:
		wait_grant(w, l, false);
		return 0;
	case KIND_FRESH_RENEW:
		(void)renewal_start(l, &ob);
		wait_grant(w, l, false);
		return 0;
	case KIND_STALE_RENEW:
		if ((r = renewal_start(l, &ob)) == RAMKEY_ERR_RATE) {
			deny_rate(w);
			return 0;
		}
		if (r != 0) {
			wait_fail(w, r, NULL, "cannot renew the credential: %s",
			    ramkey_strerror(r));
			return 0;
		}
		ob_add_waiter(ob, w);
		return 0;
	case KIND_REPLACE:
		break;
	}
	/* Single-flight: wait on the obtain already under way. */
	for (ob = w->u->obtains; ob != NULL; ob = ob->next_of_user)
		if (ob->p == w->p && !ob->renewal) {
			ob_add_waiter(ob, w);
			return 0;
		}
	if (rate_exceeded(c, w->p)) {
		deny_rate(w);
		return 0;
	}
	if ((ob = ob_new(c, w->u, w->p, NULL)) == NULL) {
		wait_fail(w, RAMKEY_ERR_NOMEM, NULL, "out of memory");
		return 0;
	}
	ob_add_waiter(ob, w);
	if (k->k.ops->capacity == 0) {
		ob_run(ob);
		return 0;
	}
	ob->queued = true;
	if (w->p->queue_tail != NULL)
		w->p->queue_tail->next_in_queue = ob;
	else
		w->p->queue_head = ob;
	w->p->queue_tail = ob;
	principal_ready(w->p);
	return 0;
}

void lease_wait_cancel(struct lease_wait *w)
{
	struct lease_wait **pp;

	if (w == NULL)
		return;
	switch (w->phase) {
	case W_OBTAIN:
		for (pp = &w->ob->waiters; *pp != NULL; pp = &(*pp)->next)
			if (*pp == w) {
				*pp = w->next;
				break;
			}
		break;
	case W_COMMIT:
		w->core->store.cancel_after_commit(w->core->store.s, w);
		break;
	case W_DEFERRED:
		break;
	}
	wait_free(w);
}

/* A lease being renewed ended: its waiters learn it. */
void renewal_lease_ended(struct lease *l)
{
	struct obtain *ob = l->renewal;

	if (ob == NULL)
		return;
	ob->renew = NULL;
	l->renewal = NULL;
	ob_fail(ob, RAMKEY_ERR_UNAVAILABLE, NULL, "the lease ended while its "
	    "credential was being renewed; try again");
	/* The kind's obtain runs to its end; renewal_done sees no lease. */
}

void obtains_cancel_all(struct lease_core *c)
{
	struct strmap_iter it;
	void *v;

	strmap_iter_init(&it);
	while (strmap_next(c->users, &it, NULL, &v)) {
		struct lease_user *u = v;

		while (u->obtains != NULL) {
			struct obtain *ob = u->obtains;
			struct lease_wait *w, *next;
			const struct core_kind *k = ob->p->kind;

			if (ob->op != NULL)
				k->k.ops->cancel(k->k.state, ob->op);
			ob->op = NULL;
			for (w = ob->waiters; w != NULL; w = next) {
				next = w->next;
				wait_free(w);
			}
			ob->waiters = NULL;
			ob->p->running = NULL;
			ob->p->queue_head = ob->p->queue_tail = NULL;
			/* Off the user's list here, whatever ob->u says. */
			u->obtains = ob->next_of_user;
			ob->u = NULL;
			ob_free(ob);
		}
	}
}
