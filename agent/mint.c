/*
 * Minting (DESIGN §4, §6). Concurrent requests for one local user share one
 * in-flight mint (single-flight). Mints for one RAM user run one at a time,
 * and none starts while that RAM user has an unresolved intent. Each mint:
 *
 *   ListAccessKeys (snapshot) -> intent, durable -> CreateAccessKey
 *   -> lease, durable (intent dropped in the same commit) -> holders
 *
 * A CreateAccessKey that ends without a definite answer (timeout,
 * transport, 5xx) leaves the intent in place and reconciles it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent.h"
#include "lease_store.h"
#include "log.h"
#include "ramkey_err.h"
#include "secret_arena.h"
#include "strmap.h"
#include "util.h"

struct mint {
	struct agent *agent;
	struct user_state *us;
	struct ram_user_state *rs;
	char *user;
	uid_t uid;
	gid_t gid;
	char *ram_user;
	struct request *waiters;
	struct mint *next_in_queue;
	struct intent *intent;
	struct ram_call *call;
	struct ev_timer relist; /* waiting for a slot being freed */
	unsigned relists;
	bool committing;
};

/*
 * At the two-key limit with one of our own keys on its way out (parked or
 * being revoked), wait for it to go rather than fail with LimitExceeded.
 * The requester's deadline bounds the wait; this bounds a stuck revocation.
 */
#define SLOT_RELIST_MS 300
#define SLOT_RELIST_MAX 40

void intent_free(struct intent *in)
{
	size_t i;

	if (in == NULL)
		return;
	free(in->ram_user);
	free(in->user);
	for (i = 0; i < in->nsnapshot; i++)
		free(in->snapshot[i]);
	free(in->snapshot);
	free(in);
}

static void mint_free(struct mint *m)
{
	if (m == NULL)
		return;
	if (ev_timer_armed(&m->relist))
		evloop_timer_cancel(m->agent->loop, &m->relist);
	intent_free(m->intent);
	free(m->user);
	free(m->ram_user);
	free(m);
}

/* Prune the window and tell whether one more mint would exceed it. */
bool mint_rate_exceeded(struct agent *a, struct ram_user_state *rs)
{
	int64_t now = wall_ms(), window = (int64_t)a->cfg->mint_rate_period *
	    1000;
	uint32_t i, n = 0;

	if (rs->mint_times == NULL || rs->nmint_times != a->cfg->mint_rate) {
		int64_t *t = calloc(a->cfg->mint_rate, sizeof(*t));

		if (t == NULL)
			return true;
		free(rs->mint_times);
		rs->mint_times = t;
		rs->nmint_times = a->cfg->mint_rate;
		rs->mint_head = 0;
	}
	for (i = 0; i < rs->nmint_times; i++)
		if (rs->mint_times[i] != 0 && now - rs->mint_times[i] < window)
			n++;
	return n >= rs->nmint_times;
}

static void mint_rate_record(struct ram_user_state *rs)
{
	if (rs->mint_times == NULL || rs->nmint_times == 0)
		return;
	rs->mint_times[rs->mint_head] = wall_ms();
	rs->mint_head = (rs->mint_head + 1) % rs->nmint_times;
}

/* Every waiter fails with the same error. */
static void fail_waiters(struct mint *m, int err, const char *ram_code,
    const char *msg)
{
	struct request *req, *next;

	for (req = m->waiters; req != NULL; req = next) {
		next = req->next_waiter;
		req->mint = NULL;
		req->next_waiter = NULL;
		request_fail(req, err, ram_code, "%s", msg);
	}
	m->waiters = NULL;
}

/* The mint is over: free the slots it held and let the next one run. */
static void mint_finish(struct agent *a, struct mint *m)
{
	struct ram_user_state *rs = m->rs;

	if (m->us->mint == m)
		m->us->mint = NULL;
	if (rs->running == m)
		rs->running = NULL;
	mint_free(m);
	mint_ram_user_ready(a, rs);
}

/* RAM refuses every signed call from a host whose clock is off: say so in
 * words, at most once a minute, whichever call hit it. */
void ram_error_clock_hint(const struct ram_error *err)
{
	static uint64_t last_ms;
	uint64_t now = evloop_now();

	if (err == NULL || err->kind != RAM_ERRK_API ||
	    strcmp(err->code, "InvalidTimeStamp.Expired") != 0 ||
	    (last_ms != 0 && now - last_ms < 60000))
		return;
	last_ms = now;
	log_err("RAM says our timestamp is expired: this host's clock is off "
	    "by more than 15 minutes; fix time synchronisation");
}

static void fail_ram(struct mint *m, const char *what, int rc,
    const struct ram_error *err)
{
	char msg[RAMKEY_MESSAGE_TEXT_MAX];
	const char *code = err != NULL && err->code[0] ? err->code : NULL;

	if (rc == RAMKEY_ERR_LIMIT)
		snprintf(msg, sizeof(msg), "RAM user %s already has two "
		    "AccessKeys (LimitExceeded.User.AccessKey): RAM allows "
		    "two per user, so one person can hold keys on at most two "
		    "hosts at once; log out elsewhere or delete an unused key "
		    "(STS mode, planned, lifts this limit)", m->ram_user);
	else if (code != NULL && strcmp(code, "EntityNotExist.User") == 0)
		snprintf(msg, sizeof(msg), "RAM user %s does not exist "
		    "(EntityNotExist.User); create it, or fix ram_user in "
		    "agent.conf", m->ram_user);
	else if (rc == RAMKEY_ERR_RAM_TIMEOUT)
		snprintf(msg, sizeof(msg), "%s for RAM user %s: %s", what,
		    m->ram_user, err != NULL ? err->message : "timed out");
	else
		snprintf(msg, sizeof(msg), "%s for RAM user %s failed: %s%s%s",
		    what, m->ram_user, code != NULL ? code : "",
		    code != NULL ? ": " : "",
		    err != NULL && err->message[0] ? err->message :
		    ram_error_kind_name(err != NULL ? err->kind :
		    RAM_ERRK_LOCAL));
	ram_error_clock_hint(err);
	log_warn("%s", msg);
	fail_waiters(m, rc == RAMKEY_ERR_LIMIT ? RAMKEY_ERR_LIMIT :
	    RAMKEY_ERR_RAM, code, msg);
}

static void create_done(void *arg, int rc, const struct ram_result *res,
    const struct ram_error *err);

static void intent_committed(void *arg, bool ok)
{
	struct mint *m = arg;
	struct agent *a = m->agent;
	int r;

	m->committing = false;
	if (ok && a->stopping) {
		/* Do not mint on the way out. */
		store_del_intent(a->store, m->intent->id);
		fail_waiters(m, RAMKEY_ERR_UNAVAILABLE, NULL, "the agent is "
		    "stopping; try again when it is back");
		mint_finish(a, m);
		return;
	}
	if (ok && m->waiters == NULL) {
		/* Everybody gave up: do not create a key nobody will hold. */
		store_del_intent(a->store, m->intent->id);
		mint_finish(a, m);
		return;
	}
	if (!ok) {
		fail_waiters(m, RAMKEY_ERR_STORE, NULL, "the agent's state "
		    "store is not writable (disk full or read-only?), so no "
		    "key was minted; check state_dir");
		mint_finish(a, m);
		return;
	}
	m->intent->create_sent = true;
	r = ram_create_access_key(a->ram, m->ram_user, create_done, m,
	    &m->call);
	if (r != 0) {
		/* Nothing was sent: the intent can go. */
		store_del_intent(a->store, m->intent->id);
		fail_waiters(m, RAMKEY_ERR_INTERNAL, NULL, "cannot start "
		    "CreateAccessKey");
		mint_finish(a, m);
	}
}

static void write_intent(struct agent *a, struct mint *m,
    const struct ram_result *res)
{
	struct intent *in;
	size_t i;

	if ((in = calloc(1, sizeof(*in))) == NULL ||
	    (in->snapshot = calloc(res->nkeys + 1, sizeof(char *))) == NULL ||
	    (in->ram_user = strdup(m->ram_user)) == NULL ||
	    (in->user = strdup(m->user)) == NULL)
		goto nomem;
	for (i = 0; i < res->nkeys; i++) {
		if ((in->snapshot[i] = strdup(res->keys[i].id)) == NULL)
			goto nomem;
		in->nsnapshot++;
	}
	in->id = a->next_intent_id++;
	in->started_ms = wall_ms();
	m->intent = in;
	store_put_intent(a->store, in);
	m->committing = true;
	if (store_after_commit(a->store, intent_committed, m) != 0) {
		m->committing = false;
		goto nomem_noin;
	}
	evloop_wake(a->loop);
	return;
nomem:
	intent_free(in);
nomem_noin:
	fail_waiters(m, RAMKEY_ERR_NOMEM, NULL, "out of memory");
	mint_finish(a, m);
}

static bool free_own_slot(struct agent *a, const char *ram_user,
    const struct ram_result *res);

static void list_done(void *arg, int rc, const struct ram_result *res,
    const struct ram_error *err)
{
	struct mint *m = arg;
	struct agent *a = m->agent;

	m->call = NULL;
	if (rc != 0) {
		fail_ram(m, "ListAccessKeys", rc, err);
		mint_finish(a, m);
		return;
	}
	clear_gone_ambiguous(a, m->ram_user, res);
	if (m->waiters == NULL) {
		mint_finish(a, m);
		return;
	}
	if (store_broken(a->store)) {
		fail_waiters(m, RAMKEY_ERR_STORE, NULL, "the agent's state "
		    "store is not writable (disk full or read-only?), so no "
		    "key was minted; check state_dir");
		mint_finish(a, m);
		return;
	}
	if (res->nkeys >= 2 && m->relists < SLOT_RELIST_MAX &&
	    free_own_slot(a, m->ram_user, res)) {
		m->relists++;
		if (evloop_timer_arm(a->loop, &m->relist, evloop_now() +
		    SLOT_RELIST_MS) == 0)
			return;
	}
	write_intent(a, m, res);
}

/*
 * revoke = deactivate keeps Inactive keys until their slot is needed, and a
 * key whose session just ended may still be on its way out. Start deleting
 * a parked one and tell whether a slot of ours is being freed.
 */
static bool free_own_slot(struct agent *a, const char *ram_user,
    const struct ram_result *res)
{
	struct lease *oldest = NULL;
	size_t i;

	for (i = 0; i < res->nkeys; i++) {
		struct lease *l = strmap_get(a->leases, res->keys[i].id);

		if (l == NULL || strcmp(l->ram_user, ram_user) != 0)
			continue;
		if (l->state == LEASE_REVOKING)
			return true;
		if (l->state == LEASE_PARKED && (oldest == NULL ||
		    l->create_time < oldest->create_time))
			oldest = l;
	}
	if (oldest == NULL)
		return false;
	log_info("deleting a parked Inactive key of RAM user %s to free its "
	    "slot", ram_user);
	revoke_parked(a, oldest);
	return true;
}

static void relist(void *arg)
{
	struct mint *m = arg;
	struct agent *a = m->agent;

	if (m->waiters == NULL) {
		mint_finish(a, m);
		return;
	}
	if (ram_list_access_keys(a->ram, m->ram_user, list_done, m,
	    &m->call) != 0) {
		fail_waiters(m, RAMKEY_ERR_INTERNAL, NULL, "cannot start "
		    "ListAccessKeys");
		mint_finish(a, m);
	}
}

static void start_mint(struct agent *a, struct mint *m)
{
	int r;

	m->rs->running = m;
	mint_rate_record(m->rs);
	r = ram_list_access_keys(a->ram, m->ram_user, list_done, m, &m->call);
	if (r != 0) {
		fail_waiters(m, RAMKEY_ERR_INTERNAL, NULL, "cannot start "
		    "ListAccessKeys");
		mint_finish(a, m);
	}
}

void mint_ram_user_ready(struct agent *a, struct ram_user_state *rs)
{
	struct mint *m;

	while (rs->running == NULL && rs->intent == NULL && !rs->reconciling &&
	    (m = rs->queue) != NULL) {
		rs->queue = m->next_in_queue;
		m->next_in_queue = NULL;
		if (m->waiters == NULL) {
			/* Everybody gave up while it queued. */
			if (m->us->mint == m)
				m->us->mint = NULL;
			mint_free(m);
			continue;
		}
		start_mint(a, m);
	}
}

static void deliver(struct agent *a, struct mint *m, struct lease *l)
{
	struct request *req, *next;
	unsigned attached = 0;

	for (req = m->waiters; req != NULL; req = next) {
		next = req->next_waiter;
		req->mint = NULL;
		req->next_waiter = NULL;
		attached++;
		request_lease_ready(req, l);
	}
	m->waiters = NULL;
	if (attached == 0)
		lease_end(a, l, "requester gave up before the mint finished");
}

static void create_done(void *arg, int rc, const struct ram_result *res,
    const struct ram_error *err)
{
	struct mint *m = arg;
	struct agent *a = m->agent;
	struct lease *l = NULL;
	int r;

	m->call = NULL;
	if (rc == 0) {
		if ((l = lease_new(a, m->user, m->uid, m->gid,
		    m->ram_user)) == NULL ||
		    (r = secret_arena_put(a->arena, res->key.secret,
		    res->key.secret_len, &l->secret_slot)) != 0) {
			/* The key exists but cannot be kept: revoke it. */
			lease_free(l);
			log_err("cannot keep the new key of RAM user %s; "
			    "revoking it", m->ram_user);
			revoke_orphan_key(a, m->user, m->ram_user, res->key.id,
			    res->key.create_date);
			store_del_intent(a->store, m->intent->id);
			fail_waiters(m, RAMKEY_ERR_INTERNAL, NULL,
			    "out of memory");
			mint_finish(a, m);
			return;
		}
		l->id = a->next_lease_id++;
		snprintf(l->key_id, sizeof(l->key_id), "%s", res->key.id);
		snprintf(l->create_date, sizeof(l->create_date), "%s",
		    res->key.create_date);
		l->create_time = res->key.create_time;
		l->received_ms = wall_ms();
		snprintf(l->status, sizeof(l->status), "%s",
		    res->key.status[0] ? res->key.status : "Active");
		lease_link(a, l);
		store_put_lease(a->store, l);
		lease_arm_timers(a, l);
		if (res->earlier_try_unknown) {
			/* An earlier try may have minted a second key: keep
			 * the intent, with this key in its snapshot, and look
			 * for the other one. */
			char **snap = realloc(m->intent->snapshot,
			    (m->intent->nsnapshot + 2) * sizeof(char *));

			if (snap != NULL) {
				m->intent->snapshot = snap;
				snap[m->intent->nsnapshot] = strdup(l->key_id);
				if (snap[m->intent->nsnapshot] != NULL)
					m->intent->nsnapshot++;
			}
			m->intent->settle_until_ms = wall_ms() +
			    INTENT_SETTLE_MS;
			store_put_intent(a->store, m->intent);
			m->rs->intent = m->intent;
			m->intent = NULL;
		} else {
			store_del_intent(a->store, m->intent->id);
		}
		/* The audit line names who asked first. */
		{
			const struct request *w = m->waiters;

			audit("mint", l->user, l->ram_user, l->key_id,
			    w != NULL ? &w->peer : NULL,
			    w != NULL ? w->msg->rhost : NULL,
			    w != NULL ? w->msg->tty : NULL, NULL);
		}
		deliver(a, m, l);
		{
			struct ram_user_state *rs = m->rs;

			mint_finish(a, m);
			if (rs->intent != NULL)
				reconcile_intent(a, rs);
		}
		return;
	}
	if (err != NULL && err->kind == RAM_ERRK_API &&
	    !err->earlier_try_unknown) {
		/* RAM answered: no key was created. */
		store_del_intent(a->store, m->intent->id);
		fail_ram(m, "CreateAccessKey", rc, err);
		mint_finish(a, m);
		return;
	}
	/* No definite answer: a key may exist. Keep the intent and find
	 * out before this RAM user mints again. */
	fail_ram(m, "CreateAccessKey", rc, err);
	m->intent->settle_until_ms = wall_ms() + INTENT_SETTLE_MS;
	m->rs->intent = m->intent;
	m->intent = NULL;
	{
		struct ram_user_state *rs = m->rs;

		mint_finish(a, m);
		reconcile_intent(a, rs);
	}
}

int mint_request(struct agent *a, struct request *req)
{
	struct user_state *us = agent_user(a, req->user);
	struct ram_user_state *rs;
	struct mint *m, **pp;

	if (us == NULL)
		return RAMKEY_ERR_NOMEM;
	if ((m = us->mint) != NULL && strcmp(m->ram_user, req->ram_user) == 0) {
		/* Single-flight: wait on the mint already under way. */
		req->mint = m;
		req->next_waiter = m->waiters;
		m->waiters = req;
		return 0;
	}
	if (store_broken(a->store)) {
		request_fail(req, RAMKEY_ERR_STORE, NULL, "the agent's state "
		    "store is not writable (disk full or read-only?), so no "
		    "key can be minted; check state_dir");
		return 0;
	}
	if ((rs = agent_ram_user(a, req->ram_user)) == NULL)
		return RAMKEY_ERR_NOMEM;
	if (mint_rate_exceeded(a, rs)) {
		audit("deny", req->user, req->ram_user, NULL, &req->peer,
		    req->msg->rhost, req->msg->tty, "reason=mint_rate");
		request_fail(req, RAMKEY_ERR_RATE, NULL, "mint_rate exceeded "
		    "for RAM user %s (at most %u keys per %llu s); try again "
		    "later", req->ram_user, a->cfg->mint_rate,
		    (unsigned long long)a->cfg->mint_rate_period);
		return 0;
	}
	if ((m = calloc(1, sizeof(*m))) == NULL ||
	    (m->user = strdup(req->user)) == NULL ||
	    (m->ram_user = strdup(req->ram_user)) == NULL) {
		mint_free(m);
		return RAMKEY_ERR_NOMEM;
	}
	m->agent = a;
	ev_timer_init(&m->relist, relist, m);
	m->us = us;
	m->rs = rs;
	m->uid = req->uid;
	m->gid = req->gid;
	req->mint = m;
	m->waiters = req;
	if (us->mint == NULL)
		us->mint = m;
	for (pp = &rs->queue; *pp != NULL; pp = &(*pp)->next_in_queue)
		;
	*pp = m;
	mint_ram_user_ready(a, rs);
	return 0;
}

void mint_requester_gone(struct agent *a, struct request *req)
{
	struct mint *m = req->mint;
	struct request **pp;

	(void)a;
	if (m == NULL)
		return;
	for (pp = &m->waiters; *pp != NULL; pp = &(*pp)->next_waiter)
		if (*pp == req) {
			*pp = req->next_waiter;
			break;
		}
	req->mint = NULL;
	req->next_waiter = NULL;
}

void mints_free_all(struct agent *a)
{
	struct strmap_iter it;
	struct user_state *us;
	void *v;

	strmap_iter_init(&it);
	while (strmap_next(a->ram_users, &it, NULL, &v)) {
		struct ram_user_state *rs = v;
		struct mint *m, *next;

		for (m = rs->queue; m != NULL; m = next) {
			next = m->next_in_queue;
			mint_free(m);
		}
		rs->queue = NULL;
		mint_free(rs->running);
		rs->running = NULL;
		intent_free(rs->intent);
		rs->intent = NULL;
	}
	strmap_iter_init(&it);
	while (strmap_next(a->users, &it, NULL, &v)) {
		us = v;
		us->mint = NULL;
	}
}
