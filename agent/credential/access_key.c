/*
 * The access_key kind (access_key.h). Its sub-states of an ending lease:
 *
 *   ""         Active: UpdateAccessKey Inactive first
 *   inactive   Inactive: DeleteAccessKey next
 *   parked     Inactive and kept (revoke = deactivate) until its slot is
 *              needed; then it is purged (deleted)
 *
 * Intents are the JSON array of the RAM user's key ids before the
 * CreateAccessKey.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "access_key.h"
#include "clock.h"
#include "cloud_error.h"
#include "evloop.h"
#include "log.h"
#include "ram_client.h"
#include "ramkey_err.h"
#include "strmap.h"
#include "util.h"

#define WORD "RAM user"
/*
 * At the two-key limit with one of our own keys on its way out (parked or
 * being revoked), wait for it to go rather than fail with LimitExceeded.
 * The requester's deadline bounds the wait; this bounds a stuck one.
 */
#define SLOT_RELIST_MS 300
#define SLOT_RELIST_MAX 40
/* A CreateAccessKey try may still land after we stop waiting for it:
 * one try's limit plus RAM's one-second dates and some slack. */
#define SETTLE_MS (RAM_TRY_MAX_MS + 3000)
#define SETTLE_POLL_MS 2000
#define SNAPSHOT_MAX 64

enum op_type { OP_PREPARE, OP_OBTAIN, OP_RECONCILE, OP_END, OP_STATUS };

struct ak {
	struct ram_client *ram;
	struct kind_port port;
	enum access_key_revoke revoke;
	struct strmap *ambiguous; /* key id -> RAM user, key id after it */
	struct kind_op *ops;	  /* in flight */
};

struct kind_op {
	struct ak *ak;
	struct kind_op *prev, *next;
	enum op_type type;
	char *principal;
	char *user;
	char cred_id[CRED_ID_MAX + 1];
	struct ram_call *call;
	struct ev_timer timer;
	void *arg;
	union {
		kind_prepare_fn prepare;
		kind_obtain_fn obtain;
		kind_reconcile_fn reconcile;
		kind_end_fn end;
		kind_done_fn done;
	} fn;
	unsigned relists;
	/* obtain, reconcile */
	char **snapshot;
	size_t nsnapshot;
	int64_t started_ms;
	int64_t settle_until_ms;
	/* end */
	bool purge;
	kind_save_fn save;
	/* set_status */
	char status[CRED_STATUS_MAX];
};

/* ---- operations ---- */

static struct kind_op *op_new(struct ak *ak, enum op_type type,
    const char *principal, void *arg)
{
	struct kind_op *op = calloc(1, sizeof(*op));

	if (op == NULL)
		return NULL;
	if ((op->principal = strdup(principal)) == NULL) {
		free(op);
		return NULL;
	}
	op->ak = ak;
	op->type = type;
	op->arg = arg;
	op->next = ak->ops;
	if (ak->ops != NULL)
		ak->ops->prev = op;
	ak->ops = op;
	return op;
}

static void op_free(struct kind_op *op)
{
	struct ak *ak;
	size_t i;

	if (op == NULL)
		return;
	ak = op->ak;
	if (op->prev != NULL)
		op->prev->next = op->next;
	else if (ak->ops == op)
		ak->ops = op->next;
	if (op->next != NULL)
		op->next->prev = op->prev;
	if (op->call != NULL)
		ram_call_cancel(op->call);
	if (ev_timer_armed(&op->timer))
		evloop_timer_cancel(ram_client_loop(ak->ram), &op->timer);
	for (i = 0; i < op->nsnapshot; i++)
		free(op->snapshot[i]);
	free(op->snapshot);
	free(op->principal);
	free(op->user);
	free(op);
}

static void ak_cancel(void *kind, struct kind_op *op)
{
	(void)kind;
	op_free(op);
}

/* ---- ambiguous keys ---- */

/* One entry: the RAM user, then the key id (the map's key) in the same
 * allocation. */
static const char *ambiguous_key(const void *v)
{
	const char *e = v;

	return e + strlen(e) + 1;
}

static int ambiguous_put(struct ak *ak, const char *principal,
    const char *cred_id)
{
	size_t plen = strlen(principal), klen = strlen(cred_id);
	char *e = malloc(plen + klen + 2);

	if (e == NULL)
		return RAMKEY_ERR_NOMEM;
	memcpy(e, principal, plen + 1);
	memcpy(e + plen + 1, cred_id, klen + 1);
	free(strmap_del(ak->ambiguous, cred_id));
	if (strmap_put(ak->ambiguous, e) != 0) {
		free(e);
		return RAMKEY_ERR_NOMEM;
	}
	return 0;
}

static void ambiguous_add(struct ak *ak, const char *principal,
    const char *cred_id)
{
	if (ambiguous_put(ak, principal, cred_id) != 0)
		return;
	ak->port.note_put(ak->port.core, ACCESS_KEY_NOTE_AMBIGUOUS, cred_id,
	    principal);
}

/* Ambiguous keys that RAM no longer lists need no more attention. */
static void ambiguous_clear_gone(struct ak *ak, const char *principal,
    const struct ram_result *res)
{
	struct strmap_iter it;
	const char *kid;
	void *v;
	char *gone[16];
	size_t ngone = 0, i, j;

	strmap_iter_init(&it);
	while (ngone < 16 && strmap_next(ak->ambiguous, &it, &kid, &v)) {
		bool listed = false;

		if (strcmp(v, principal) != 0)
			continue;
		for (j = 0; j < res->nkeys && !listed; j++)
			listed = strcmp(res->keys[j].id, kid) == 0;
		if (!listed && (gone[ngone] = strdup(kid)) != NULL)
			ngone++;
	}
	for (i = 0; i < ngone; i++) {
		free(strmap_del(ak->ambiguous, gone[i]));
		ak->port.note_del(ak->port.core, ACCESS_KEY_NOTE_AMBIGUOUS,
		    gone[i]);
		free(gone[i]);
	}
}

static void ak_load_note(void *kind, const char *ns, const char *key,
    const char *value)
{
	struct ak *ak = kind;

	if (strcmp(ns, ACCESS_KEY_NOTE_AMBIGUOUS) != 0 ||
	    !ramkey_valid_key_id(key))
		return;
	(void)ambiguous_put(ak, value, key);
}

static void ak_foreach_ambiguous(void *kind, void (*fn)(void *arg,
    const char *principal, const char *cred_id), void *arg)
{
	struct ak *ak = kind;
	struct strmap_iter it;
	const char *k;
	void *v;

	strmap_iter_init(&it);
	while (strmap_next(ak->ambiguous, &it, &k, &v))
		fn(arg, v, k);
}

static void ak_resync(void *kind)
{
	struct ak *ak = kind;
	struct strmap_iter it;
	const char *k;
	void *v;

	strmap_iter_init(&it);
	while (strmap_next(ak->ambiguous, &it, &k, &v))
		ak->port.note_put(ak->port.core, ACCESS_KEY_NOTE_AMBIGUOUS, k,
		    v);
}

/* ---- snapshots (the intent) ---- */

static char *snapshot_text(char *const *ids, size_t n, const char *extra)
{
	struct json_object *a = json_object_new_array();
	char *out = NULL;
	size_t i;

	if (a == NULL)
		return NULL;
	for (i = 0; i < n; i++)
		json_object_array_add(a, json_object_new_string(ids[i]));
	if (extra != NULL)
		json_object_array_add(a, json_object_new_string(extra));
	out = strdup(json_object_to_json_string_ext(a,
	    JSON_C_TO_STRING_PLAIN));
	json_object_put(a);
	return out;
}

static int snapshot_parse(const char *text, struct kind_op *op)
{
	struct json_object *arr = json_tokener_parse(text);
	size_t i, n;
	int r = 0;

	if (arr == NULL || !json_object_is_type(arr, json_type_array)) {
		r = RAMKEY_ERR_PROTOCOL;
		goto out;
	}
	n = json_object_array_length(arr);
	if (n > SNAPSHOT_MAX) {
		r = RAMKEY_ERR_TOO_LARGE;
		goto out;
	}
	if ((op->snapshot = calloc(n + 1, sizeof(char *))) == NULL) {
		r = RAMKEY_ERR_NOMEM;
		goto out;
	}
	for (i = 0; i < n; i++) {
		const char *kid = json_object_get_string(
		    json_object_array_get_idx(arr, i));

		if (kid == NULL || !ramkey_valid_key_id(kid))
			continue;
		if ((op->snapshot[op->nsnapshot] = strdup(kid)) == NULL) {
			r = RAMKEY_ERR_NOMEM;
			goto out;
		}
		op->nsnapshot++;
	}
out:
	if (arr != NULL)
		json_object_put(arr);
	return r;
}

/* ---- prepare: the snapshot, and a slot ---- */

static void prepare_list(struct kind_op *op);

/*
 * revoke = deactivate keeps Inactive keys until their slot is needed, and
 * a key whose lease just ended may still be on its way out. Start purging
 * a parked one and tell whether a slot of ours is being freed.
 */
static bool free_own_slot(struct ak *ak, const char *principal,
    const struct ram_result *res)
{
	const struct ram_access_key *oldest = NULL;
	size_t i;

	for (i = 0; i < res->nkeys; i++) {
		enum kind_cred_state st = ak->port.cred_state(ak->port.core,
		    principal, res->keys[i].id);

		if (st == KIND_CRED_ENDING)
			return true;
		if (st == KIND_CRED_RETAINED && (oldest == NULL ||
		    res->keys[i].create_time < oldest->create_time))
			oldest = &res->keys[i];
	}
	if (oldest == NULL)
		return false;
	log_info("deleting a parked Inactive key of RAM user %s to free its "
	    "slot", principal);
	ak->port.release_retained(ak->port.core, principal, oldest->id);
	return true;
}

static void prepare_listed(void *arg, int rc, const struct ram_result *res,
    const struct ram_error *err)
{
	struct kind_op *op = arg;
	struct ak *ak = op->ak;
	struct kind_error ke;
	char **ids = NULL, *text;
	size_t i;

	op->call = NULL;
	if (rc != 0) {
		cloud_error_to_kind(rc, err, "ListAccessKeys", WORD,
		    op->principal, &ke);
		op->fn.prepare(op->arg, ke.rc, NULL, &ke);
		op_free(op);
		return;
	}
	ambiguous_clear_gone(ak, op->principal, res);
	if (res->nkeys >= 2 && op->relists < SLOT_RELIST_MAX &&
	    free_own_slot(ak, op->principal, res)) {
		op->relists++;
		if (evloop_timer_arm(ram_client_loop(ak->ram), &op->timer,
		    evloop_now() + SLOT_RELIST_MS) == 0)
			return;
	}
	if ((ids = calloc(res->nkeys + 1, sizeof(*ids))) == NULL)
		goto nomem;
	for (i = 0; i < res->nkeys; i++)
		ids[i] = (char *)res->keys[i].id;
	text = snapshot_text(ids, res->nkeys, NULL);
	free(ids);
	if (text == NULL)
		goto nomem;
	op->fn.prepare(op->arg, 0, text, NULL);
	free(text);
	op_free(op);
	return;
nomem:
	kind_error_set(&ke, RAMKEY_ERR_NOMEM, NULL, "out of memory");
	op->fn.prepare(op->arg, ke.rc, NULL, &ke);
	op_free(op);
}

static void prepare_relist(void *arg)
{
	prepare_list(arg);
}

static void prepare_list(struct kind_op *op)
{
	struct kind_error ke;

	if (ram_list_access_keys(op->ak->ram, op->principal, prepare_listed,
	    op, &op->call) != 0) {
		op->call = NULL;
		kind_error_set(&ke, RAMKEY_ERR_INTERNAL, NULL, "cannot start "
		    "ListAccessKeys");
		op->fn.prepare(op->arg, ke.rc, NULL, &ke);
		op_free(op);
	}
}

static int ak_prepare(void *kind, const char *principal, const char *user,
    kind_prepare_fn fn, void *arg, struct kind_op **ret)
{
	struct ak *ak = kind;
	struct kind_op *op;
	int r;

	(void)user;
	*ret = NULL;
	if ((op = op_new(ak, OP_PREPARE, principal, arg)) == NULL)
		return RAMKEY_ERR_NOMEM;
	op->fn.prepare = fn;
	ev_timer_init(&op->timer, prepare_relist, op);
	if ((r = ram_list_access_keys(ak->ram, principal, prepare_listed, op,
	    &op->call)) != 0) {
		op->call = NULL;
		op_free(op);
		return r;
	}
	*ret = op;
	return 0;
}

/* ---- obtain: CreateAccessKey ---- */

static void created(void *arg, int rc, const struct ram_result *res,
    const struct ram_error *err)
{
	struct kind_op *op = arg;
	struct kind_error ke;
	struct credential cred;
	char *update = NULL;

	op->call = NULL;
	if (rc != 0) {
		cloud_error_to_kind(rc, err, "CreateAccessKey", WORD,
		    op->principal, &ke);
		op->fn.obtain(op->arg, ke.rc, NULL, NULL, &ke);
		op_free(op);
		return;
	}
	memset(&cred, 0, sizeof(cred));
	cred.id = res->key.id;
	cred.secret = res->key.secret;
	cred.secret_len = res->key.secret_len;
	cred.create_date = res->key.create_date;
	cred.create_time = res->key.create_time;
	cred.status = res->key.status[0] ? res->key.status : "Active";
	if (res->earlier_try_unknown)
		/* An earlier try may have made a second key: it is not the
		 * one we got. */
		update = snapshot_text(op->snapshot, op->nsnapshot, cred.id);
	op->fn.obtain(op->arg, 0, &cred, res->earlier_try_unknown ?
	    (update != NULL ? update : "[]") : NULL, NULL);
	free(update);
	op_free(op);
}

static int ak_obtain(void *kind, const struct kind_obtain *req,
    kind_obtain_fn fn, void *arg, struct kind_op **ret)
{
	struct ak *ak = kind;
	struct kind_op *op;
	int r;

	*ret = NULL;
	if ((op = op_new(ak, OP_OBTAIN, req->principal, arg)) == NULL)
		return RAMKEY_ERR_NOMEM;
	op->fn.obtain = fn;
	if (req->intent != NULL && (r = snapshot_parse(req->intent, op)) !=
	    0) {
		op_free(op);
		return r;
	}
	if ((r = ram_create_access_key(ak->ram, req->principal, created, op,
	    &op->call)) != 0) {
		op->call = NULL;
		op_free(op);
		return r;
	}
	*ret = op;
	return 0;
}

/* ---- reconcile: was a key made and lost? ---- */

static void reconcile_list(struct kind_op *op);

static void reconcile_listed(void *arg, int rc, const struct ram_result *res,
    const struct ram_error *err)
{
	struct kind_op *op = arg;
	struct ak *ak = op->ak;
	const struct ram_access_key *found[8];
	struct kind_error ke;
	size_t i, j, nfound = 0;
	int64_t since, now = clock_wall_ms();

	op->call = NULL;
	if (rc != 0) {
		cloud_error_to_kind(rc, err, "ListAccessKeys", WORD,
		    op->principal, &ke);
		op->fn.reconcile(op->arg, ke.rc, &ke);
		op_free(op);
		return;
	}
	/* RAM dates have one-second precision. */
	since = op->started_ms / 1000 - 2;
	for (i = 0; i < res->nkeys; i++) {
		const struct ram_access_key *k = &res->keys[i];
		bool known = ak->port.cred_state(ak->port.core, op->principal,
		    k->id) != KIND_CRED_UNKNOWN;

		for (j = 0; !known && j < op->nsnapshot; j++)
			known = strcmp(op->snapshot[j], k->id) == 0;
		if (known || k->create_time < since)
			continue;
		if (nfound < sizeof(found) / sizeof(found[0]))
			found[nfound] = k;
		nfound++;
	}
	ambiguous_clear_gone(ak, op->principal, res);
	if (nfound == 0 && now < op->settle_until_ms) {
		/* A try of the lost CreateAccessKey may still land: look
		 * again before declaring that none was made. */
		int64_t left = op->settle_until_ms - now;

		(void)evloop_timer_arm(ram_client_loop(ak->ram), &op->timer,
		    evloop_now() + (uint64_t)(left < SETTLE_POLL_MS ? left :
		    SETTLE_POLL_MS));
		return;
	}
	if (nfound == 1) {
		char masked[RAMKEY_MASKED_MAX];

		ramkey_mask_key_id(found[0]->id, masked);
		log_warn("key %s of RAM user %s appeared during an unfinished "
		    "mint; it is the lost mint and is revoked", masked,
		    op->principal);
		ak->port.adopt_orphan(ak->port.core, op->principal, op->user,
		    found[0]->id, found[0]->create_date);
	} else if (nfound > 1) {
		for (i = 0; i < nfound && i < sizeof(found) / sizeof(found[0]);
		    i++) {
			char masked[RAMKEY_MASKED_MAX];

			ramkey_mask_key_id(found[i]->id, masked);
			log_err("ambiguous key %s of RAM user %s: created "
			    "during an unfinished mint, but so were %zu "
			    "others; not deleting it, check it by hand",
			    masked, op->principal, nfound - 1);
			ambiguous_add(ak, op->principal, found[i]->id);
		}
	}
	op->fn.reconcile(op->arg, 0, NULL);
	op_free(op);
}

static void reconcile_poll(void *arg)
{
	reconcile_list(arg);
}

static void reconcile_list(struct kind_op *op)
{
	struct kind_error ke;

	if (ram_list_access_keys(op->ak->ram, op->principal,
	    reconcile_listed, op, &op->call) != 0) {
		op->call = NULL;
		kind_error_set(&ke, RAMKEY_ERR_INTERNAL, NULL, "cannot start "
		    "ListAccessKeys");
		op->fn.reconcile(op->arg, ke.rc, &ke);
		op_free(op);
	}
}

static int ak_reconcile(void *kind, const struct kind_intent *in,
    kind_reconcile_fn fn, void *arg, struct kind_op **ret)
{
	struct ak *ak = kind;
	struct kind_op *op;
	int r;

	*ret = NULL;
	if ((op = op_new(ak, OP_RECONCILE, in->principal, arg)) == NULL ||
	    (op->user = strdup(in->user)) == NULL) {
		op_free(op);
		return RAMKEY_ERR_NOMEM;
	}
	op->fn.reconcile = fn;
	op->started_ms = in->started_ms;
	/* The last try (the crashed agent's, or the one that timed out) may
	 * still be carried out by RAM until then. */
	op->settle_until_ms = clock_wall_ms() + SETTLE_MS;
	ev_timer_init(&op->timer, reconcile_poll, op);
	if ((r = snapshot_parse(in->data, op)) != 0 &&
	    r != RAMKEY_ERR_PROTOCOL) {
		op_free(op);
		return r;
	}
	if ((r = ram_list_access_keys(ak->ram, in->principal,
	    reconcile_listed, op, &op->call)) != 0) {
		op->call = NULL;
		op_free(op);
		return r;
	}
	*ret = op;
	return 0;
}

/* ---- end: deactivate, then delete (or park) ---- */

static bool key_gone(const struct ram_error *err)
{
	return err != NULL && err->kind == RAM_ERRK_API &&
	    (strcmp(err->code, "EntityNotExist.User.AccessKey") == 0 ||
	    strcmp(err->code, "EntityNotExist.User") == 0);
}

static void end_fail(struct kind_op *op, int rc, const struct ram_error *err,
    const char *what)
{
	struct kind_error ke;

	cloud_error_to_kind(rc, err, what, WORD, op->principal, &ke);
	op->fn.end(op->arg, ke.rc, KIND_END_GONE, NULL, &ke);
	op_free(op);
}

static void end_finish(struct kind_op *op, enum kind_end result,
    const char *detail)
{
	op->fn.end(op->arg, 0, result, detail, NULL);
	op_free(op);
}

static void deleted(void *arg, int rc, const struct ram_result *res,
    const struct ram_error *err)
{
	struct kind_op *op = arg;

	(void)res;
	op->call = NULL;
	if (rc == 0 || key_gone(err)) {
		end_finish(op, KIND_END_GONE, "deleted");
		return;
	}
	end_fail(op, rc, err, "DeleteAccessKey");
}

static void end_delete(struct kind_op *op)
{
	int r;

	if ((r = ram_delete_access_key(op->ak->ram, op->principal, op->cred_id,
	    deleted, op, &op->call)) != 0) {
		op->call = NULL;
		end_fail(op, r, NULL, "DeleteAccessKey");
	}
}

/* Inactive now: park it, or delete it. */
static void end_after_inactive(struct kind_op *op)
{
	if (op->ak->revoke == ACCESS_KEY_REVOKE_DEACTIVATE) {
		op->save(op->arg, "parked", "Inactive");
		end_finish(op, KIND_END_RETAINED, "deactivated");
		return;
	}
	op->save(op->arg, "inactive", "Inactive");
	end_delete(op);
}

static void deactivated(void *arg, int rc, const struct ram_result *res,
    const struct ram_error *err)
{
	struct kind_op *op = arg;

	(void)res;
	op->call = NULL;
	if (key_gone(err)) {
		end_finish(op, KIND_END_GONE, "already-gone");
		return;
	}
	if (rc != 0) {
		end_fail(op, rc, err, "UpdateAccessKey");
		return;
	}
	end_after_inactive(op);
}

/* The loop runs the first step, never the caller. */
static void end_step(void *arg)
{
	struct kind_op *op = arg;
	int r;

	if (op->purge) {
		end_delete(op);
		return;
	}
	if ((r = ram_update_access_key(op->ak->ram, op->principal,
	    op->cred_id, "Inactive", deactivated, op, &op->call)) != 0) {
		op->call = NULL;
		end_fail(op, r, NULL, "UpdateAccessKey");
	}
}

static void end_inactive_step(void *arg)
{
	end_after_inactive(arg);
}

static int ak_end(void *kind, const struct kind_lease *kl, bool purge,
    kind_save_fn save, kind_end_fn fn, void *arg, struct kind_op **ret)
{
	struct ak *ak = kind;
	struct kind_op *op;
	bool inactive = strcmp(kl->kind_state, "inactive") == 0 ||
	    strcmp(kl->kind_state, "parked") == 0 ||
	    strcmp(kl->status, "Inactive") == 0;

	*ret = NULL;
	if (!ramkey_valid_key_id(kl->cred_id))
		return RAMKEY_ERR_INVALID;
	if ((op = op_new(ak, OP_END, kl->principal, arg)) == NULL)
		return RAMKEY_ERR_NOMEM;
	snprintf(op->cred_id, sizeof(op->cred_id), "%s", kl->cred_id);
	op->fn.end = fn;
	op->save = save;
	op->purge = purge;
	/* Already Inactive: straight to parking or deleting. */
	ev_timer_init(&op->timer, inactive && !purge ? end_inactive_step :
	    end_step, op);
	(void)evloop_timer_arm(ram_client_loop(ak->ram), &op->timer,
	    evloop_now());
	*ret = op;
	return 0;
}

/* ---- set_status: the Terraform status argument ---- */

static void status_set(void *arg, int rc, const struct ram_result *res,
    const struct ram_error *err)
{
	struct kind_op *op = arg;
	struct kind_error ke;

	(void)res;
	op->call = NULL;
	if (rc != 0) {
		cloud_clock_hint(err);
		kind_error_set(&ke, RAMKEY_ERR_RAM, err != NULL ? err->code :
		    NULL, "UpdateAccessKey failed: %s%s%s",
		    err != NULL && err->code[0] ? err->code : "",
		    err != NULL && err->code[0] ? ": " : "",
		    err != NULL ? err->message : "error");
		op->fn.done(op->arg, ke.rc, &ke);
	} else {
		op->fn.done(op->arg, 0, NULL);
	}
	op_free(op);
}

static int ak_set_status(void *kind, const struct kind_lease *kl,
    const char *status, kind_done_fn fn, void *arg, struct kind_op **ret)
{
	struct ak *ak = kind;
	struct kind_op *op;
	int r;

	*ret = NULL;
	if ((op = op_new(ak, OP_STATUS, kl->principal, arg)) == NULL)
		return RAMKEY_ERR_NOMEM;
	op->fn.done = fn;
	snprintf(op->status, sizeof(op->status), "%s", status);
	if ((r = ram_update_access_key(ak->ram, kl->principal, kl->cred_id,
	    status, status_set, op, &op->call)) != 0) {
		op->call = NULL;
		op_free(op);
		return r;
	}
	*ret = op;
	return 0;
}

/* ---- the kind ---- */

static void ak_attach(void *kind, const struct kind_port *port)
{
	struct ak *ak = kind;

	ak->port = *port;
}

static int64_t ak_retain_until(void *kind, const struct kind_lease *kl)
{
	(void)kind;
	(void)kl;
	return 0; /* a parked key stays until its slot is needed */
}

static void ak_free(void *kind)
{
	struct ak *ak = kind;
	struct kind_op *op;
	struct strmap_iter it;
	void *v;

	if (ak == NULL)
		return;
	/* Off the list here: the loop does not depend on op->k. */
	while ((op = ak->ops) != NULL) {
		ak->ops = op->next;
		if (ak->ops != NULL)
			ak->ops->prev = NULL;
		op->next = NULL;
		op_free(op);
	}
	if (ak->ambiguous != NULL) {
		strmap_iter_init(&it);
		while (strmap_next(ak->ambiguous, &it, NULL, &v))
			free(v);
		strmap_free(ak->ambiguous);
	}
	free(ak);
}

static const struct kind_ops access_key_ops = {
	.name = ACCESS_KEY_KIND,
	.capacity = 2,
	.renews_in_place = false,
	.attach = ak_attach,
	.load_note = ak_load_note,
	.prepare = ak_prepare,
	.obtain = ak_obtain,
	.reconcile = ak_reconcile,
	.end = ak_end,
	.set_status = ak_set_status,
	.freshness = NULL,
	.retain_until = ak_retain_until,
	.cancel = ak_cancel,
	.foreach_ambiguous = ak_foreach_ambiguous,
	.resync = ak_resync,
	.free = ak_free,
};

int access_key_kind_new(struct ram_client *ram,
    const struct access_key_config *cfg, struct credential_kind *out)
{
	struct ak *ak;

	memset(out, 0, sizeof(*out));
	if (ram == NULL || cfg == NULL)
		return RAMKEY_ERR_INVALID;
	if ((ak = calloc(1, sizeof(*ak))) == NULL)
		return RAMKEY_ERR_NOMEM;
	if ((ak->ambiguous = strmap_new(ambiguous_key)) == NULL) {
		free(ak);
		return RAMKEY_ERR_NOMEM;
	}
	ak->ram = ram;
	ak->revoke = cfg->revoke;
	out->ops = &access_key_ops;
	out->state = ak;
	return 0;
}

void access_key_kind_reconfigure(struct credential_kind *k,
    const struct access_key_config *cfg)
{
	struct ak *ak = k->state;

	ak->revoke = cfg->revoke;
}
