/*
 * Revocation never gives up (DESIGN §6): a lease in state "revoking" is in
 * the store until RAM confirms, and is retried with capped exponential
 * backoff across restarts. revoke = delete: UpdateAccessKey Inactive, then
 * DeleteAccessKey. revoke = deactivate: UpdateAccessKey Inactive, then the
 * lease is parked until its slot is needed.
 */
#include <stdio.h>
#include <string.h>

#include <sodium.h>

#include "agent.h"
#include "lease_store.h"
#include "log.h"
#include "ramkey_err.h"
#include "strmap.h"
#include "util.h"

#define RETRY_BASE_MS 1000
#define RETRY_CAP_MS 60000

static void revoke_try(struct agent *a, struct lease *l);

static void revoke_timer_fired(void *arg)
{
	struct lease *l = arg;

	revoke_try(l->agent, l);
}

static void arm_revoke_timer(struct agent *a, struct lease *l, uint64_t when)
{
	/* Leases loaded from the store start with a zeroed timer. */
	if (!ev_timer_armed(&l->revoke_timer))
		ev_timer_init(&l->revoke_timer, revoke_timer_fired, l);
	evloop_timer_arm(a->loop, &l->revoke_timer, when);
}

static bool key_gone(const struct ram_error *err)
{
	return err != NULL && err->kind == RAM_ERRK_API &&
	    (strcmp(err->code, "EntityNotExist.User.AccessKey") == 0 ||
	    strcmp(err->code, "EntityNotExist.User") == 0);
}

static void schedule_retry(struct agent *a, struct lease *l,
    const struct ram_error *err)
{
	uint64_t delay = RETRY_BASE_MS;
	char masked[RAMKEY_MASKED_MAX];
	unsigned i;

	for (i = 0; i < l->revoke_attempts && delay < RETRY_CAP_MS; i++)
		delay *= 2;
	if (delay > RETRY_CAP_MS)
		delay = RETRY_CAP_MS;
	delay = delay / 2 + randombytes_uniform((uint32_t)(delay / 2) + 1);
	l->revoke_attempts++;
	ram_error_clock_hint(err);
	ramkey_mask_key_id(l->key_id, masked);
	log_warn("revoking %s of RAM user %s failed (%s%s%s); retrying in "
	    "%llu ms", masked, l->ram_user, err != NULL ? err->op : "",
	    err != NULL ? ": " : "",
	    err != NULL ? (err->code[0] ? err->code : err->message) : "error",
	    (unsigned long long)delay);
	arm_revoke_timer(a, l, evloop_now() + delay);
}

static void confirmed(struct agent *a, struct lease *l, const char *how)
{
	char extra[96];

	snprintf(extra, sizeof(extra), "result=%s attempts=%u", how,
	    l->revoke_attempts + 1);
	audit("revoked", l->user, l->ram_user, l->key_id, NULL, NULL, NULL,
	    extra);
	lease_forget(a, l);
}

static void delete_done(void *arg, int rc, const struct ram_result *res,
    const struct ram_error *err)
{
	struct lease *l = arg;
	struct agent *a = l->agent;

	(void)res;
	l->revoke_call = NULL;
	if (rc == 0 || key_gone(err)) {
		confirmed(a, l, "deleted");
		return;
	}
	schedule_retry(a, l, err);
}

static void update_done(void *arg, int rc, const struct ram_result *res,
    const struct ram_error *err)
{
	struct lease *l = arg;
	struct agent *a = l->agent;

	(void)res;
	l->revoke_call = NULL;
	if (key_gone(err)) {
		confirmed(a, l, "already-gone");
		return;
	}
	if (rc != 0) {
		schedule_retry(a, l, err);
		return;
	}
	snprintf(l->status, sizeof(l->status), "Inactive");
	if (a->cfg->revoke == REVOKE_DEACTIVATE) {
		l->state = LEASE_PARKED;
		if (a->pending_revocations > 0)
			a->pending_revocations--;
		store_put_lease(a->store, l);
		audit("revoked", l->user, l->ram_user, l->key_id, NULL, NULL,
		    NULL, "result=deactivated");
		return;
	}
	l->revoke_deleting = true;
	store_put_lease(a->store, l);
	revoke_try(a, l);
}

static void revoke_try(struct agent *a, struct lease *l)
{
	int r;

	if (l->revoke_call != NULL || a->stopping)
		return;
	if (l->status_call != NULL) {
		/* Let the user's set-status land first, then override it. */
		arm_revoke_timer(a, l, evloop_now() + 200);
		return;
	}
	if (l->state == LEASE_PARKED || l->revoke_deleting ||
	    strcmp(l->status, "Inactive") == 0) {
		if (l->state == LEASE_REVOKING &&
		    a->cfg->revoke == REVOKE_DEACTIVATE &&
		    !l->revoke_deleting) {
			/* Already Inactive: parking is all there is to do. */
			l->state = LEASE_PARKED;
			if (a->pending_revocations > 0)
				a->pending_revocations--;
			store_put_lease(a->store, l);
			return;
		}
		r = ram_delete_access_key(a->ram, l->ram_user, l->key_id,
		    delete_done, l, &l->revoke_call);
	} else {
		r = ram_update_access_key(a->ram, l->ram_user, l->key_id,
		    "Inactive", update_done, l, &l->revoke_call);
	}
	if (r != 0) {
		l->revoke_call = NULL;
		schedule_retry(a, l, NULL);
	}
}

void revoke_start(struct agent *a, struct lease *l)
{
	l->revoke_attempts = 0;
	evloop_timer_cancel(a->loop, &l->revoke_timer);
	revoke_try(a, l);
}

/* Delete a parked (Inactive) key to free its slot. */
void revoke_parked(struct agent *a, struct lease *l)
{
	if (l->state != LEASE_PARKED)
		return;
	l->state = LEASE_REVOKING;
	l->revoke_deleting = true;
	a->pending_revocations++;
	store_put_lease(a->store, l);
	revoke_start(a, l);
}

void revoke_orphan_key(struct agent *a, const char *user,
    const char *ram_user, const char *key_id, const char *create_date)
{
	struct lease *l;

	if (strmap_get(a->leases, key_id) != NULL)
		return;
	if ((l = lease_new(a, user, 0, 0, ram_user)) == NULL) {
		log_err("out of memory recording the revocation of a key of "
		    "RAM user %s", ram_user);
		return;
	}
	l->id = a->next_lease_id++;
	snprintf(l->key_id, sizeof(l->key_id), "%s", key_id);
	snprintf(l->create_date, sizeof(l->create_date), "%s",
	    create_date != NULL ? create_date : "1970-01-01T00:00:00Z");
	(void)ramkey_parse_time(l->create_date, &l->create_time);
	l->received_ms = wall_ms();
	l->state = LEASE_REVOKING;
	lease_link(a, l);
	store_put_lease(a->store, l);
	audit("revoke", user, ram_user, key_id, NULL, NULL, NULL,
	    "reason=\"lost mint found after a crash\"");
	revoke_start(a, l);
}
