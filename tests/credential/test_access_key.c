/*
 * The access_key kind's own rules (agent/credential/access_key.c), against
 * a fake RAM client and a fake clock: no emulator, no network, no root.
 * The fake replaces ram_client.c at link time (the kind's sources are
 * compiled into this test, not the ramkey_cloud library) and answers every
 * call from the event loop, as the real client does.
 *
 *   R2 a key made and lost during an unfinished mint is found and revoked;
 *      two such keys are ambiguous and left alone (noted, never touched);
 *      keys older than the mint, in its snapshot, or the agent's own are
 *      not candidates (rule L8);
 *      a mint that made nothing resolves once the last try cannot land;
 *      a mint whose earlier try may have made a key keeps its intent.
 *   revoke = deactivate: a parked key is deleted to free a slot when a
 *      mint needs one.
 *   end: UpdateAccessKey Inactive, then DeleteAccessKey; a key already
 *      gone ends as gone.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "access_key.h"
#include "clock.h"
#include "credential.h"
#include "evloop.h"
#include "ram_client.h"
#include "ram_response.h"
#include "ramkey_err.h"

/* ---- a fake clock ---- */

static int64_t fake_wall;
static uint64_t fake_mono;

static int64_t wall_fn(void *arg)
{
	(void)arg;
	return fake_wall;
}

static uint64_t mono_fn(void *arg)
{
	(void)arg;
	return fake_mono;
}

static const struct clock_source fake_clock = { wall_fn, mono_fn, NULL };

/* ---- a fake RAM ---- */

#define KEYS_MAX 16

struct fake_key {
	char principal[64];
	char id[RAM_KEY_ID_MAX + 1];
	char status[RAM_STATUS_MAX];
	int64_t create_time;
};

enum call_op { C_LIST, C_CREATE, C_UPDATE, C_DELETE };

struct ram_call {
	struct ev_timer timer;
	enum call_op op;
	char principal[64];
	char key_id[RAM_KEY_ID_MAX + 1];
	char status[RAM_STATUS_MAX];
	ram_done_fn fn;
	void *arg;
};

static struct {
	struct evloop *loop;
	struct fake_key keys[KEYS_MAX];
	size_t nkeys;
	unsigned next_id;
	unsigned lists, creates, updates, deletes;
	bool earlier_try_unknown; /* CreateAccessKey's answer says so */
	unsigned in_flight;
} ram;

/* Never dereferenced: the kind only hands it back to the fake. */
static struct ram_client *const RAM_HANDLE = (struct ram_client *)&ram;

static struct fake_key *key_find(const char *principal, const char *id)
{
	size_t i;

	for (i = 0; i < ram.nkeys; i++)
		if (strcmp(ram.keys[i].principal, principal) == 0 &&
		    strcmp(ram.keys[i].id, id) == 0)
			return &ram.keys[i];
	return NULL;
}

/* A new key; returns its id (a copy that stays put when keys go). */
static const char *key_add(const char *principal, int64_t create_time)
{
	static char ids[64][RAM_KEY_ID_MAX + 1];
	struct fake_key *k;

	assert_true(ram.nkeys < KEYS_MAX && ram.next_id < 64);
	k = &ram.keys[ram.nkeys++];
	snprintf(k->principal, sizeof(k->principal), "%s", principal);
	snprintf(k->id, sizeof(k->id), "LTAIfake%016u", ++ram.next_id);
	snprintf(k->status, sizeof(k->status), "Active");
	k->create_time = create_time;
	snprintf(ids[ram.next_id - 1], sizeof(ids[0]), "%s", k->id);
	return ids[ram.next_id - 1];
}

static void key_remove(struct fake_key *k)
{
	size_t i = (size_t)(k - ram.keys);

	memmove(&ram.keys[i], &ram.keys[i + 1],
	    (ram.nkeys - i - 1) * sizeof(ram.keys[0]));
	ram.nkeys--;
}

static void date_of(int64_t t, char out[RAM_DATE_MAX])
{
	time_t tt = (time_t)t;
	struct tm tm;

	gmtime_r(&tt, &tm);
	strftime(out, RAM_DATE_MAX, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static void fill_key(struct ram_access_key *out, const struct fake_key *k)
{
	memset(out, 0, sizeof(*out));
	snprintf(out->id, sizeof(out->id), "%s", k->id);
	snprintf(out->status, sizeof(out->status), "%s", k->status);
	date_of(k->create_time, out->create_date);
	out->create_time = k->create_time;
}

static void gone_error(struct ram_error *err, const char *op)
{
	memset(err, 0, sizeof(*err));
	err->kind = RAM_ERRK_API;
	err->http_status = 404;
	snprintf(err->op, sizeof(err->op), "%s", op);
	snprintf(err->code, sizeof(err->code),
	    "EntityNotExist.User.AccessKey");
	snprintf(err->message, sizeof(err->message),
	    "The specified access key does not exist.");
}

static void call_fire(void *arg)
{
	struct ram_call *c = arg;
	struct ram_access_key listed[KEYS_MAX];
	struct ram_result res;
	struct ram_error err;
	struct fake_key *k;
	char secret[] = "fake-secret-of-thirty-chars-xx";
	int rc = 0;
	size_t i;

	memset(&res, 0, sizeof(res));
	switch (c->op) {
	case C_LIST:
		for (i = 0; i < ram.nkeys; i++)
			if (strcmp(ram.keys[i].principal, c->principal) == 0)
				fill_key(&listed[res.nkeys++], &ram.keys[i]);
		res.keys = listed;
		break;
	case C_CREATE:
		k = key_find(c->principal,
		    key_add(c->principal, fake_wall / 1000));
		assert_non_null(k);
		fill_key(&res.key, k);
		res.key.secret = secret;
		res.key.secret_len = strlen(secret);
		res.earlier_try_unknown = ram.earlier_try_unknown;
		break;
	case C_UPDATE:
		if ((k = key_find(c->principal, c->key_id)) == NULL) {
			gone_error(&err, "UpdateAccessKey");
			rc = RAMKEY_ERR_RAM;
			break;
		}
		snprintf(k->status, sizeof(k->status), "%s", c->status);
		break;
	case C_DELETE:
		if ((k = key_find(c->principal, c->key_id)) == NULL) {
			gone_error(&err, "DeleteAccessKey");
			rc = RAMKEY_ERR_RAM;
			break;
		}
		key_remove(k);
		break;
	}
	ram.in_flight--;
	c->fn(c->arg, rc, rc == 0 ? &res : NULL, rc == 0 ? NULL : &err);
	free(c);
}

static int call_start(enum call_op op, const char *user, const char *key_id,
    const char *status, ram_done_fn fn, void *arg, struct ram_call **ret)
{
	struct ram_call *c = calloc(1, sizeof(*c));

	if (c == NULL)
		return RAMKEY_ERR_NOMEM;
	c->op = op;
	snprintf(c->principal, sizeof(c->principal), "%s", user);
	snprintf(c->key_id, sizeof(c->key_id), "%s", key_id ? key_id : "");
	snprintf(c->status, sizeof(c->status), "%s", status ? status : "");
	c->fn = fn;
	c->arg = arg;
	ev_timer_init(&c->timer, call_fire, c);
	if (evloop_timer_arm(ram.loop, &c->timer, evloop_now()) != 0) {
		free(c);
		return RAMKEY_ERR_NOMEM;
	}
	ram.in_flight++;
	if (ret != NULL)
		*ret = c;
	return 0;
}

int ram_list_access_keys(struct ram_client *c, const char *user,
    ram_done_fn fn, void *arg, struct ram_call **ret)
{
	assert_ptr_equal(c, RAM_HANDLE);
	ram.lists++;
	return call_start(C_LIST, user, NULL, NULL, fn, arg, ret);
}

int ram_create_access_key(struct ram_client *c, const char *user,
    ram_done_fn fn, void *arg, struct ram_call **ret)
{
	assert_ptr_equal(c, RAM_HANDLE);
	ram.creates++;
	return call_start(C_CREATE, user, NULL, NULL, fn, arg, ret);
}

int ram_update_access_key(struct ram_client *c, const char *user,
    const char *key_id, const char *status, ram_done_fn fn, void *arg,
    struct ram_call **ret)
{
	assert_ptr_equal(c, RAM_HANDLE);
	ram.updates++;
	return call_start(C_UPDATE, user, key_id, status, fn, arg, ret);
}

int ram_delete_access_key(struct ram_client *c, const char *user,
    const char *key_id, ram_done_fn fn, void *arg, struct ram_call **ret)
{
	assert_ptr_equal(c, RAM_HANDLE);
	ram.deletes++;
	return call_start(C_DELETE, user, key_id, NULL, fn, arg, ret);
}

void ram_call_cancel(struct ram_call *call)
{
	if (call == NULL)
		return;
	evloop_timer_cancel(ram.loop, &call->timer);
	ram.in_flight--;
	free(call);
}

struct evloop *ram_client_loop(const struct ram_client *c)
{
	(void)c;
	return ram.loop;
}

bool ram_code_retryable(const char *code)
{
	return code != NULL && strncmp(code, "Throttling", 10) == 0;
}

const char *ram_error_kind_name(enum ram_error_kind kind)
{
	return kind == RAM_ERRK_API ? "api" : "other";
}

/* ---- a fake core (the kind's port) ---- */

static struct {
	/* cred_state() answers */
	char live[4][RAM_KEY_ID_MAX + 1];
	char retained[4][RAM_KEY_ID_MAX + 1];
	/* what the kind told the core */
	char adopted[4][RAM_KEY_ID_MAX + 1];
	unsigned nadopted;
	char released[4][RAM_KEY_ID_MAX + 1];
	unsigned nreleased;
	char noted[4][RAM_KEY_ID_MAX + 1];
	unsigned nnoted;
	/* the last callback */
	bool done;
	int rc;
	char intent[1024];
	bool has_intent_update;
	char cred_id[CRED_ID_MAX + 1];
	enum kind_end end_result;
	char end_detail[32];
	char saved[4][KIND_STATE_MAX];
	unsigned nsaved;
} core;

static bool in(char list[][RAM_KEY_ID_MAX + 1], size_t n, const char *id)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (strcmp(list[i], id) == 0)
			return true;
	return false;
}

static enum kind_cred_state port_cred_state(void *c, const char *principal,
    const char *cred_id)
{
	(void)c;
	(void)principal;
	if (in(core.live, 4, cred_id))
		return KIND_CRED_LIVE;
	if (in(core.retained, 4, cred_id))
		return KIND_CRED_RETAINED;
	return KIND_CRED_UNKNOWN;
}

/* The core ends a released key at once: RAM deletes it. */
static void port_release_retained(void *c, const char *principal,
    const char *cred_id)
{
	struct fake_key *k = key_find(principal, cred_id);

	(void)c;
	snprintf(core.released[core.nreleased++], RAM_KEY_ID_MAX + 1, "%s",
	    cred_id);
	if (k != NULL)
		key_remove(k);
}

static void port_adopt_orphan(void *c, const char *principal,
    const char *user, const char *cred_id, const char *create_date)
{
	(void)c;
	(void)principal;
	(void)user;
	assert_non_null(create_date);
	snprintf(core.adopted[core.nadopted++], RAM_KEY_ID_MAX + 1, "%s",
	    cred_id);
}

static void port_note_put(void *c, const char *ns, const char *key,
    const char *value)
{
	(void)c;
	(void)value;
	assert_string_equal(ns, ACCESS_KEY_NOTE_AMBIGUOUS);
	snprintf(core.noted[core.nnoted++], RAM_KEY_ID_MAX + 1, "%s", key);
}

static void port_note_del(void *c, const char *ns, const char *key)
{
	(void)c;
	(void)ns;
	(void)key;
}

static const struct kind_port port = {
	NULL, port_cred_state, port_release_retained, port_adopt_orphan,
	port_note_put, port_note_del,
};

/* ---- harness ---- */

static struct credential_kind kind;

static int setup(void **state)
{
	struct access_key_config cfg = { ACCESS_KEY_REVOKE_DELETE };

	(void)state;
	memset(&ram, 0, sizeof(ram));
	memset(&core, 0, sizeof(core));
	fake_wall = 1800000000000LL; /* 2027-01-15 */
	fake_mono = 1000000;
	clock_set_source(&fake_clock);
	if (evloop_new(&ram.loop) != 0 ||
	    access_key_kind_new(RAM_HANDLE, &cfg, &kind) != 0)
		return -1;
	kind.ops->attach(kind.state, &port);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	kind.ops->free(kind.state);
	evloop_free(ram.loop);
	clock_set_source(NULL);
	return 0;
}

static void advance(int64_t ms)
{
	fake_wall += ms;
	fake_mono += (uint64_t)ms;
}

/* Run the loop until the last callback came, moving the clock by step_ms
 * whenever nothing is due (the kind's timers). */
static void run(int64_t step_ms)
{
	int i;

	for (i = 0; i < 200 && !core.done; i++) {
		(void)evloop_run_once(ram.loop, 0);
		if (!core.done && ram.in_flight == 0)
			advance(step_ms);
	}
	assert_true(core.done);
}

static void on_reconcile(void *arg, int rc, const struct kind_error *err)
{
	(void)arg;
	(void)err;
	core.done = true;
	core.rc = rc;
}

static void reconcile(const char *snapshot, int64_t started_ms)
{
	struct kind_intent in = { "alice", "alice", snapshot, started_ms,
		true };
	struct kind_op *op = NULL;

	core.done = false;
	assert_int_equal(kind.ops->reconcile(kind.state, &in, on_reconcile,
	    NULL, &op), 0);
	assert_non_null(op);
	assert_false(core.done); /* from the loop, never inline */
	run(500);
}

static void snapshot_of(const char *a, const char *b, char out[128])
{
	if (b != NULL)
		snprintf(out, 128, "[\"%s\",\"%s\"]", a, b);
	else if (a != NULL)
		snprintf(out, 128, "[\"%s\"]", a);
	else
		snprintf(out, 128, "[]");
}

/* ---- R2 ---- */

static void R2_lost_mint_is_found_and_revoked(void **state)
{
	int64_t started = fake_wall - 5000;
	const char *before = key_add("alice", started / 1000 - 3600);
	const char *lost;
	char snap[128];

	(void)state;
	snapshot_of(before, NULL, snap);
	/* The crashed agent's CreateAccessKey landed after its intent. */
	lost = key_add("alice", started / 1000 + 1);
	reconcile(snap, started);
	assert_int_equal(core.rc, 0);
	assert_int_equal(core.nadopted, 1);
	assert_string_equal(core.adopted[0], lost);
	assert_int_equal(core.nnoted, 0);
	/* Reconciling only looks: the core ends the adopted key. */
	assert_int_equal(ram.updates + ram.deletes + ram.creates, 0);
}

static void R2_two_lost_keys_are_ambiguous_and_left_alone(void **state)
{
	int64_t started = fake_wall - 5000;
	const char *a, *b;
	char snap[128];

	(void)state;
	snapshot_of(NULL, NULL, snap);
	a = key_add("alice", started / 1000 + 1);
	b = key_add("alice", started / 1000 + 2);
	reconcile(snap, started);
	assert_int_equal(core.rc, 0);
	assert_int_equal(core.nadopted, 0);
	assert_int_equal(core.nnoted, 2);
	assert_true(in(core.noted, 2, a) && in(core.noted, 2, b));
	assert_int_equal(ram.updates + ram.deletes, 0);
	assert_non_null(key_find("alice", a));
	assert_non_null(key_find("alice", b));
}

static void R2_keys_before_the_mint_or_known_are_not_candidates(void **state)
{
	int64_t started = fake_wall - 5000;
	const char *old, *snapped, *own;
	char snap[128];

	(void)state;
	/* Made by someone else before the mint started (rule L8). */
	old = key_add("alice", started / 1000 - 60);
	/* In the intent's snapshot, whatever its date. */
	snapped = key_add("alice", started / 1000 + 1);
	/* A key this agent already knows as a lease's. */
	own = key_add("alice", started / 1000 + 1);
	snprintf(core.live[0], sizeof(core.live[0]), "%s", own);
	snapshot_of(snapped, NULL, snap);
	advance(60000); /* past the settle window: nothing was lost */
	reconcile(snap, started);
	assert_int_equal(core.rc, 0);
	assert_int_equal(core.nadopted, 0);
	assert_int_equal(core.nnoted, 0);
	assert_non_null(key_find("alice", old));
	assert_int_equal(ram.updates + ram.deletes, 0);
}

static void R2_nothing_made_resolves_after_the_settle_window(void **state)
{
	int64_t started = fake_wall - 1000;
	unsigned lists;
	char snap[128];

	(void)state;
	snapshot_of(NULL, NULL, snap);
	reconcile(snap, started);
	lists = ram.lists;
	assert_int_equal(core.rc, 0);
	assert_int_equal(core.nadopted, 0);
	/* It looked again while a last try could still land. */
	assert_true(lists >= 2);
	assert_true(fake_wall - started >= RAM_TRY_MAX_MS);
}

static void on_obtain(void *arg, int rc, const struct credential *cred,
    const char *intent_update, const struct kind_error *err)
{
	(void)arg;
	(void)err;
	core.done = true;
	core.rc = rc;
	core.has_intent_update = intent_update != NULL;
	if (intent_update != NULL)
		snprintf(core.intent, sizeof(core.intent), "%s",
		    intent_update);
	if (cred != NULL)
		snprintf(core.cred_id, sizeof(core.cred_id), "%s", cred->id);
}

static void R2_an_earlier_try_of_unknown_outcome_keeps_the_intent(
    void **state)
{
	const char *prev = key_add("alice", fake_wall / 1000 - 100);
	struct kind_obtain req;
	struct kind_op *op = NULL;
	char snap[128];

	(void)state;
	snapshot_of(prev, NULL, snap);
	memset(&req, 0, sizeof(req));
	req.principal = "alice";
	req.user = "alice";
	req.intent = snap;
	/* Plain answer: the intent is done with. */
	assert_int_equal(kind.ops->obtain(kind.state, &req, on_obtain, NULL,
	    &op), 0);
	run(0);
	assert_int_equal(core.rc, 0);
	assert_false(core.has_intent_update);
	/* A try before the answer failed without one: a second key may
	 * exist, so the intent stays, now naming the key we got too. */
	ram.earlier_try_unknown = true;
	core.done = false;
	assert_int_equal(kind.ops->obtain(kind.state, &req, on_obtain, NULL,
	    &op), 0);
	run(0);
	assert_int_equal(core.rc, 0);
	assert_true(core.has_intent_update);
	assert_non_null(strstr(core.intent, prev));
	assert_non_null(strstr(core.intent, core.cred_id));
	assert_int_equal(ram.creates, 2);
}

/* ---- slots ---- */

static void on_prepare(void *arg, int rc, const char *intent,
    const struct kind_error *err)
{
	(void)arg;
	(void)err;
	core.done = true;
	core.rc = rc;
	snprintf(core.intent, sizeof(core.intent), "%s",
	    intent != NULL ? intent : "");
}

static void parked_key_is_deleted_to_free_a_slot(void **state)
{
	const char *parked_old, *parked_new, *other;
	struct kind_op *op = NULL;

	(void)state;
	parked_old = key_add("alice", fake_wall / 1000 - 7200);
	parked_new = key_add("alice", fake_wall / 1000 - 3600);
	snprintf(core.retained[0], sizeof(core.retained[0]), "%s",
	    parked_new);
	snprintf(core.retained[1], sizeof(core.retained[1]), "%s",
	    parked_old);
	assert_int_equal(kind.ops->prepare(kind.state, "alice", "alice",
	    on_prepare, NULL, &op), 0);
	run(300);
	assert_int_equal(core.rc, 0);
	/* The oldest parked key went; the snapshot is what is left. */
	assert_int_equal(core.nreleased, 1);
	assert_string_equal(core.released[0], parked_old);
	assert_null(key_find("alice", parked_old));
	assert_non_null(strstr(core.intent, parked_new));
	assert_null(strstr(core.intent, parked_old));
	assert_true(ram.lists >= 2);
	/* Two keys that are not ours: nothing is freed, RAM will say
	 * LimitExceeded at the mint. */
	memset(&core, 0, sizeof(core));
	ram.nkeys = 0;
	other = key_add("alice", fake_wall / 1000 - 50);
	(void)key_add("alice", fake_wall / 1000 - 40);
	assert_int_equal(kind.ops->prepare(kind.state, "alice", "alice",
	    on_prepare, NULL, &op), 0);
	run(300);
	assert_int_equal(core.rc, 0);
	assert_int_equal(core.nreleased, 0);
	assert_non_null(strstr(core.intent, other));
}

/* ---- end ---- */

static void on_save(void *arg, const char *kind_state, const char *status)
{
	(void)arg;
	(void)status;
	snprintf(core.saved[core.nsaved++], KIND_STATE_MAX, "%s", kind_state);
}

static void on_end(void *arg, int rc, enum kind_end result,
    const char *detail, const struct kind_error *err)
{
	(void)arg;
	(void)err;
	core.done = true;
	core.rc = rc;
	core.end_result = result;
	snprintf(core.end_detail, sizeof(core.end_detail), "%s",
	    detail != NULL ? detail : "");
}

static void end_key(const char *id)
{
	struct kind_lease kl;
	struct kind_op *op = NULL;

	memset(&kl, 0, sizeof(kl));
	kl.principal = "alice";
	kl.user = "alice";
	kl.cred_id = id;
	kl.kind_state = "";
	kl.status = "Active";
	core.done = false;
	core.nsaved = 0;
	assert_int_equal(kind.ops->end(kind.state, &kl, false, on_save, on_end,
	    NULL, &op), 0);
	assert_false(core.done);
	run(0);
}

static void end_deactivates_then_deletes(void **state)
{
	const char *id = key_add("alice", fake_wall / 1000 - 10);

	(void)state;
	end_key(id);
	assert_int_equal(core.rc, 0);
	assert_int_equal(core.end_result, KIND_END_GONE);
	assert_string_equal(core.end_detail, "deleted");
	assert_int_equal(ram.updates, 1);
	assert_int_equal(ram.deletes, 1);
	assert_int_equal(core.nsaved, 1);
	assert_string_equal(core.saved[0], "inactive");
	assert_null(key_find("alice", id));
}

static void end_with_revoke_deactivate_parks(void **state)
{
	struct access_key_config cfg = { ACCESS_KEY_REVOKE_DEACTIVATE };
	const char *id = key_add("alice", fake_wall / 1000 - 10);

	(void)state;
	access_key_kind_reconfigure(&kind, &cfg);
	end_key(id);
	assert_int_equal(core.rc, 0);
	assert_int_equal(core.end_result, KIND_END_RETAINED);
	assert_string_equal(core.end_detail, "deactivated");
	assert_string_equal(core.saved[0], "parked");
	assert_int_equal(ram.deletes, 0);
	assert_string_equal(key_find("alice", id)->status, "Inactive");
}

static void end_of_a_key_already_gone(void **state)
{
	(void)state;
	end_key("LTAIfakeNeverMade000000");
	assert_int_equal(core.rc, 0);
	assert_int_equal(core.end_result, KIND_END_GONE);
	assert_string_equal(core.end_detail, "already-gone");
	assert_int_equal(ram.deletes, 0);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(
		    R2_lost_mint_is_found_and_revoked, setup, teardown),
		cmocka_unit_test_setup_teardown(
		    R2_two_lost_keys_are_ambiguous_and_left_alone, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(
		    R2_keys_before_the_mint_or_known_are_not_candidates,
		    setup, teardown),
		cmocka_unit_test_setup_teardown(
		    R2_nothing_made_resolves_after_the_settle_window, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(
		    R2_an_earlier_try_of_unknown_outcome_keeps_the_intent,
		    setup, teardown),
		cmocka_unit_test_setup_teardown(
		    parked_key_is_deleted_to_free_a_slot, setup, teardown),
		cmocka_unit_test_setup_teardown(
		    end_deactivates_then_deletes, setup, teardown),
		cmocka_unit_test_setup_teardown(
		    end_with_revoke_deactivate_parks, setup, teardown),
		cmocka_unit_test_setup_teardown(
		    end_of_a_key_already_gone, setup, teardown),
	};

	/* One test by name (ctest runs each on its own). */
	if (argc > 1)
		cmocka_set_test_filter(argv[1]);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
