/*
 * Start-up recovery (DESIGN §6): resume pending revocations, end sessions
 * whose process is gone, revoke stored leases with no live holder, and
 * reconcile RAM users with an unfinished mint intent.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent.h"
#include "lease_store.h"
#include "log.h"
#include "ramkey_err.h"
#include "strmap.h"
#include "util.h"

#define RECONCILE_RETRY_MS 5000
#define RECONCILE_POLL_MS 2000

/* Ambiguous keys that RAM no longer lists need no more attention. */
void clear_gone_ambiguous(struct agent *a, const char *ram_user,
    const struct ram_result *res)
{
	struct strmap_iter it;
	const char *kid;
	void *v;
	char *gone[16];
	size_t ngone = 0, i, j;

	strmap_iter_init(&it);
	while (ngone < 16 && strmap_next(a->ambiguous, &it, &kid, &v)) {
		bool listed = false;

		if (strcmp(v, ram_user) != 0)
			continue;
		for (j = 0; j < res->nkeys && !listed; j++)
			listed = strcmp(res->keys[j].id, kid) == 0;
		if (!listed && (gone[ngone] = strdup(kid)) != NULL)
			ngone++;
	}
	for (i = 0; i < ngone; i++) {
		free(strmap_del(a->ambiguous, gone[i]));
		store_del_ambiguous(a->store, gone[i]);
		free(gone[i]);
	}
}

static void reconcile_done(void *arg, int rc, const struct ram_result *res,
    const struct ram_error *err)
{
	struct ram_user_state *rs = arg;
	struct agent *a = rs->agent;
	struct intent *in = rs->intent;
	const struct ram_access_key *found[8];
	size_t i, j, nfound = 0;
	int64_t since;

	rs->reconcile_call = NULL;
	if (in == NULL) {
		rs->reconciling = false;
		mint_ram_user_ready(a, rs);
		return;
	}
	if (rc != 0) {
		log_warn("checking for a lost mint of RAM user %s failed (%s); "
		    "retrying; no new key for this RAM user until then",
		    rs->name, err != NULL && err->code[0] ? err->code :
		    err != NULL ? err->message : "error");
		evloop_timer_arm(a->loop, &rs->reconcile_timer,
		    evloop_now() + RECONCILE_RETRY_MS);
		return;
	}
	/* RAM dates have one-second precision. */
	since = in->started_ms / 1000 - 2;
	for (i = 0; i < res->nkeys; i++) {
		const struct ram_access_key *k = &res->keys[i];
		bool known = strmap_get(a->leases, k->id) != NULL;

		for (j = 0; !known && j < in->nsnapshot; j++)
			known = strcmp(in->snapshot[j], k->id) == 0;
		if (known || k->create_time < since)
			continue;
		if (nfound < sizeof(found) / sizeof(found[0]))
			found[nfound] = k;
		nfound++;
	}
	clear_gone_ambiguous(a, rs->name, res);
	if (nfound == 0 && wall_ms() < in->settle_until_ms) {
		/* A try of the lost CreateAccessKey may still land: look
		 * again before declaring that none was made. */
		int64_t left = in->settle_until_ms - wall_ms();

		evloop_timer_arm(a->loop, &rs->reconcile_timer, evloop_now() +
		    (uint64_t)(left < RECONCILE_POLL_MS ? left :
		    RECONCILE_POLL_MS));
		return;
	}
	if (nfound == 1) {
		char masked[RAMKEY_MASKED_MAX];

		ramkey_mask_key_id(found[0]->id, masked);
		log_warn("key %s of RAM user %s appeared during an unfinished "
		    "mint; it is the lost mint and is revoked", masked,
		    rs->name);
		revoke_orphan_key(a, in->user, rs->name, found[0]->id,
		    found[0]->create_date);
	} else if (nfound > 1) {
		for (i = 0; i < nfound && i < sizeof(found) / sizeof(found[0]);
		    i++) {
			char masked[RAMKEY_MASKED_MAX], *dup;

			ramkey_mask_key_id(found[i]->id, masked);
			log_err("ambiguous key %s of RAM user %s: created during "
			    "an unfinished mint, but so were %zu others; not "
			    "deleting it, check it by hand", masked, rs->name,
			    nfound - 1);
			if ((dup = strdup(rs->name)) != NULL &&
			    strmap_put(a->ambiguous, found[i]->id, dup) != 0)
				free(dup);
			store_put_ambiguous(a->store, found[i]->id, rs->name);
		}
	}
	store_del_intent(a->store, in->id);
	rs->intent = NULL;
	rs->reconciling = false;
	intent_free(in);
	evloop_wake(a->loop);
	mint_ram_user_ready(a, rs);
}

void reconcile_intent(struct agent *a, struct ram_user_state *rs)
{
	if (rs->intent == NULL || rs->reconcile_call != NULL)
		return;
	rs->reconciling = true;
	evloop_timer_cancel(a->loop, &rs->reconcile_timer);
	if (ram_list_access_keys(a->ram, rs->name, reconcile_done, rs,
	    &rs->reconcile_call) != 0) {
		rs->reconcile_call = NULL;
		evloop_timer_arm(a->loop, &rs->reconcile_timer,
		    evloop_now() + RECONCILE_RETRY_MS);
	}
}

static bool session_alive(struct agent *a, struct session *s)
{
	if (strcmp(s->boot_id, a->boot_id) != 0)
		return false; /* the host rebooted: every process is gone */
	return session_watch(a, s) == 0;
}

int recovery_load(struct agent *a)
{
	struct strmap_iter it;
	struct session **dead = NULL;
	struct lease **ending = NULL;
	size_t ndead = 0, nending = 0, nlive = 0, i, n;
	int64_t now = wall_ms();
	void *v;
	int r;

	if ((r = store_load(a->store, a)) != 0)
		return r;
	n = strmap_count(a->sessions);
	if ((dead = calloc(n + 1, sizeof(*dead))) == NULL)
		return RAMKEY_ERR_NOMEM;
	strmap_iter_init(&it);
	while (strmap_next(a->sessions, &it, NULL, &v))
		if (!session_alive(a, v))
			dead[ndead++] = v;
	for (i = 0; i < ndead; i++)
		session_end_dead(a, dead[i], "its process is gone (found at "
		    "agent start)");
	free(dead);

	n = strmap_count(a->leases);
	if ((ending = calloc(n + 1, sizeof(*ending))) == NULL)
		return RAMKEY_ERR_NOMEM;
	strmap_iter_init(&it);
	while (strmap_next(a->leases, &it, NULL, &v)) {
		struct lease *l = v;

		if (l->state == LEASE_REVOKING) {
			revoke_start(a, l);
			continue;
		}
		if (l->state != LEASE_LIVE)
			continue;
		if (now >= lease_expires_ms(a, l) ||
		    (l->nsessions == 0 && l->ttl_expires_ms <= now))
			ending[nending++] = l;
		else {
			lease_arm_timers(a, l);
			nlive++;
		}
	}
	for (i = 0; i < nending; i++)
		lease_end(a, ending[i], now >= lease_expires_ms(a, ending[i]) ?
		    "max_ttl passed while the agent was down" :
		    "no live holder at agent start");
	free(ending);

	strmap_iter_init(&it);
	while (strmap_next(a->ram_users, &it, NULL, &v)) {
		struct ram_user_state *rs = v;

		if (rs->intent != NULL) {
			/* The crashed agent's last try may still land. */
			rs->intent->settle_until_ms = now + INTENT_SETTLE_MS;
			log_warn("RAM user %s has an unfinished mint from "
			    "before a crash; checking RAM for a lost key",
			    rs->name);
			reconcile_intent(a, rs);
		}
	}
	log_info("recovered %zu live lease(s), %zu ended at start, %u "
	    "revocation(s) pending, %zu dead session(s)", nlive, nending,
	    a->pending_revocations, ndead);
	return 0;
}
