/*
 * The lease core's rules (docs/ARCHITECTURE.md, L1-L9 and R1-R7), one test
 * each, on a fake kind, an in-memory store and a fake clock.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"
#include "metrics.h"
#include "ramkey_err.h"

#define T0 1800000000000LL /* 2027-01-15, ms */
#define USER "alice"
#define RAMU "alice.ram"

static struct harness H;

static int setup_ak(void **state)
{
	(void)state;
	memset(&H, 0, sizeof(H));
	h_clock_init(T0);
	h_setup(&H, fk_new("access_key", 2, false), NULL);
	return 0;
}

static int setup_sts(void **state)
{
	struct fake_kind *k = fk_new("sts", 0, true);

	(void)state;
	memset(&H, 0, sizeof(H));
	h_clock_init(T0);
	k->lifetime_s = 60;
	k->renew_before_s = 20;
	h_setup(&H, k, NULL);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	h_teardown(&H);
	return 0;
}

/* Complete the pending obtain (prepare first if there is one). */
static const char *mint(struct harness *h)
{
	struct fk_op *op;
	const char *id;

	if ((op = fk_pending(h->kind, FK_PREPARE)) != NULL) {
		fk_prepare_done(h->kind, op, 0);
		h_pump(h);
	}
	op = fk_pending(h->kind, FK_OBTAIN);
	assert_non_null(op);
	id = fk_obtain_done(h->kind, op, 0, false);
	h_pump(h);
	return id;
}

/* End every pending end as done (the credential is gone). */
static unsigned finish_ends(struct harness *h)
{
	struct fk_op *op;
	unsigned n = 0;

	while ((op = fk_pending(h->kind, FK_END)) != NULL) {
		fk_end_done(h->kind, op, 0, KIND_END_GONE);
		n++;
	}
	h_pump(h);
	return n;
}

/* L1: one credential per (user, principal), held by sessions and at most
 * one TTL holder. */
static void L1_one_lease_per_user_and_principal(void **state)
{
	struct req a, b, c;
	pid_t p1 = h_child(), p2 = h_child();
	struct lease_info li;

	(void)state;
	h_acquire_session(&H, &a, USER, RAMU, p1);
	mint(&H);
	assert_true(a.done);
	assert_int_equal(a.rc, 0);
	h_acquire_session(&H, &b, USER, RAMU, p2);
	h_acquire_ttl(&H, &c, USER, RAMU, 600);
	assert_true(b.done && c.done);
	assert_int_equal(b.lease_id, a.lease_id);
	assert_int_equal(c.lease_id, a.lease_id);
	assert_int_equal(H.kind->started[FK_OBTAIN], 1);
	assert_int_equal(lease_get(H.core, a.lease_id, &li), 0);
	assert_int_equal(li.sessions, 2);
	/* A PAM session holds it: fetch adds no TTL holder. */
	assert_int_equal(li.ttl_expires_ms, 0);
	h_kill(p1);
	h_kill(p2);
}

/* L2: concurrent requests share one in-flight obtain; obtains for one
 * principal with a limit run one at a time. */
static void L2_single_flight(void **state)
{
	struct req r[5], other;
	pid_t pids[5];
	int i;

	(void)state;
	for (i = 0; i < 5; i++) {
		pids[i] = h_child();
		h_acquire_session(&H, &r[i], USER, RAMU, pids[i]);
	}
	/* Another local user mapped to the same RAM user queues behind. */
	h_acquire_ttl(&H, &other, "bob", RAMU, 600);
	assert_int_equal(H.kind->started[FK_PREPARE], 1);
	mint(&H);
	for (i = 0; i < 5; i++) {
		assert_true(r[i].done);
		assert_int_equal(r[i].rc, 0);
		assert_int_equal(r[i].lease_id, r[0].lease_id);
	}
	assert_int_equal(H.kind->started[FK_OBTAIN], 1);
	/* Only now does bob's obtain start. */
	assert_false(other.done);
	assert_int_equal(H.kind->started[FK_PREPARE], 2);
	mint(&H);
	assert_true(other.done);
	assert_int_not_equal(other.lease_id, r[0].lease_id);
	for (i = 0; i < 5; i++)
		h_kill(pids[i]);
}

/* L3: the secret lives only in memory while the lease lives; after a
 * restart the lease is known but not its secret, and a request gets a new
 * credential (in the second slot) rather than the old one. */
static void L3_secret_only_in_memory(void **state)
{
	struct req a, b;
	const char *secret;
	struct fake_store *st;
	size_t len;
	uint64_t first;

	(void)state;
	h_acquire_ttl(&H, &a, USER, RAMU, 600);
	mint(&H);
	assert_int_equal(lease_secret(H.core, a.lease_id, &secret, &len, NULL),
	    0);
	assert_string_equal(secret, "secret-of-KEY0001");
	first = a.lease_id;
	st = h_crash(&H);
	h_setup(&H, fk_new("access_key", 2, false), st);
	assert_int_equal(h_lease_state(&H, first), LEASE_LIVE);
	assert_int_not_equal(lease_secret(H.core, first, &secret, &len, NULL),
	    0);
	h_acquire_ttl(&H, &b, USER, RAMU, 600);
	assert_false(b.done);
	mint(&H);
	assert_true(b.done);
	assert_int_not_equal(b.lease_id, first);
	/* The old lease lives on with its holder. */
	assert_int_equal(h_lease_state(&H, first), LEASE_LIVE);
	/* Its end wipes the secret. */
	lease_revoke(H.core, b.lease_id, NULL, "test", &(unsigned){ 0 }, NULL);
	assert_int_not_equal(lease_secret(H.core, b.lease_id, &secret, &len,
	    NULL), 0);
}

/* L4: a lease ends when its last holder goes, at max_ttl even with
 * holders, or on revoke. */
static void L4_last_holder_ends_the_lease(void **state)
{
	struct req a, b;
	pid_t p1 = h_child(), p2 = h_child();
	bool found, last, ended;
	const char *owner;

	(void)state;
	h_acquire_session(&H, &a, USER, RAMU, p1);
	mint(&H);
	h_acquire_session(&H, &b, USER, RAMU, p2);
	lease_close_session(H.core, a.session, false, &found, &owner, &last,
	    &ended);
	assert_true(found);
	assert_false(last);
	assert_false(ended);
	assert_int_equal(h_lease_state(&H, a.lease_id), LEASE_LIVE);
	lease_close_session(H.core, b.session, false, &found, &owner, &last,
	    &ended);
	assert_true(last);
	assert_true(ended);
	assert_int_equal(h_lease_state(&H, a.lease_id), LEASE_ENDING);
	assert_int_equal(finish_ends(&H), 1);
	assert_int_equal(h_lease_state(&H, a.lease_id), -1);
	h_kill(p1);
	h_kill(p2);
}

static void L4_ttl_holder_expiry_ends_the_lease(void **state)
{
	struct req a;

	(void)state;
	h_acquire_ttl(&H, &a, USER, RAMU, 60);
	mint(&H);
	h_advance(59000);
	h_pump(&H);
	assert_int_equal(h_lease_state(&H, a.lease_id), LEASE_LIVE);
	h_advance(2000);
	h_pump(&H);
	assert_int_equal(h_lease_state(&H, a.lease_id), LEASE_ENDING);
}

static void L4_max_ttl_ends_a_held_lease(void **state)
{
	struct req a;
	pid_t p = h_child();

	(void)state;
	h_acquire_session(&H, &a, USER, RAMU, p);
	mint(&H);
	h_advance((int64_t)H.cfg.max_ttl_s * 1000 - 1000);
	h_pump(&H);
	assert_int_equal(h_lease_state(&H, a.lease_id), LEASE_LIVE);
	h_advance(1000);
	h_pump(&H);
	assert_int_equal(h_lease_state(&H, a.lease_id), LEASE_ENDING);
	h_kill(p);
}

static void L4_revoke_ends_every_live_lease_of_the_user(void **state)
{
	struct req a;
	unsigned n;

	(void)state;
	h_acquire_ttl(&H, &a, USER, RAMU, 600);
	mint(&H);
	lease_revoke(H.core, 0, USER, "revoked by test", &n, NULL);
	assert_int_equal(n, 1);
	assert_int_equal(h_lease_state(&H, a.lease_id), LEASE_ENDING);
	lease_revoke(H.core, 0, USER, "again", &n, NULL);
	assert_int_equal(n, 0);
}

/* L5: past 80% of max_ttl, new requests get a new credential in the
 * second slot; the old lease ends with its holders. */
static void L5_rotation_at_80_percent_of_max_ttl(void **state)
{
	struct req a, b, c;
	pid_t p = h_child();

	(void)state;
	h_acquire_session(&H, &a, USER, RAMU, p);
	mint(&H);
	h_advance((int64_t)H.cfg.max_ttl_s * 790);
	h_acquire_ttl(&H, &b, USER, RAMU, 60);
	assert_true(b.done);
	assert_int_equal(b.lease_id, a.lease_id);
	h_advance((int64_t)H.cfg.max_ttl_s * 20);
	h_acquire_ttl(&H, &c, USER, RAMU, 60);
	assert_false(c.done);
	mint(&H);
	assert_true(c.done);
	assert_int_not_equal(c.lease_id, a.lease_id);
	assert_int_equal(h_lease_state(&H, a.lease_id), LEASE_LIVE);
	h_kill(p);
	h_pump(&H);
	assert_int_equal(h_lease_state(&H, a.lease_id), LEASE_ENDING);
}

/* L6: an obtain whose requesters all gave up is ended at once; one that
 * somebody still waits for is kept. */
static void L6_requester_gave_up(void **state)
{
	struct req a, b;

	(void)state;
	h_acquire_ttl(&H, &a, USER, RAMU, 600);
	fk_prepare_done(H.kind, fk_pending(H.kind, FK_PREPARE), 0);
	h_pump(&H);
	lease_wait_cancel(a.wait);
	fk_obtain_done(H.kind, fk_pending(H.kind, FK_OBTAIN), 0, false);
	h_pump(&H);
	/* Nobody holds it: it is ended right away. */
	assert_int_equal(fk_count_pending(H.kind, FK_END), 1);
	assert_int_equal(fs_count_leases(H.store, "ending"), 1);
	finish_ends(&H);
	/* Two wait, one gives up: the other gets it, and it lives. */
	h_acquire_ttl(&H, &a, USER, RAMU, 600);
	h_acquire_ttl(&H, &b, USER, RAMU, 600);
	lease_wait_cancel(a.wait);
	mint(&H);
	assert_false(a.done);
	assert_true(b.done);
	assert_int_equal(h_lease_state(&H, b.lease_id), LEASE_LIVE);
	assert_int_equal(fk_count_pending(H.kind, FK_END), 0);
}

/* L7: max_ttl counts from when the credential arrived, not from when it
 * was asked for. */
static void L7_max_ttl_counts_from_receipt(void **state)
{
	struct req a;
	struct lease_info li;

	(void)state;
	h_acquire_ttl(&H, &a, USER, RAMU, 7200);
	h_advance(30000); /* the cloud is slow */
	mint(&H);
	assert_int_equal(lease_get(H.core, a.lease_id, &li), 0);
	assert_int_equal(li.received_ms, h_now());
	assert_int_equal(li.lease_end_ms,
	    h_now() + (int64_t)H.cfg.max_ttl_s * 1000);
	h_advance((int64_t)H.cfg.max_ttl_s * 1000 - 1);
	h_pump(&H);
	assert_int_equal(h_lease_state(&H, a.lease_id), LEASE_LIVE);
	h_advance(1);
	h_pump(&H);
	assert_int_equal(h_lease_state(&H, a.lease_id), LEASE_ENDING);
}

/* L8: the core only ever ends credentials it leases: a credential id it
 * did not obtain cannot be found, revoked or have its status set. */
static void L8_never_touches_a_credential_it_did_not_make(void **state)
{
	struct req a;
	struct lease_info li;
	unsigned n;

	(void)state;
	h_acquire_ttl(&H, &a, USER, RAMU, 600);
	mint(&H);
	assert_int_equal(lease_find(H.core, "LTAIsomeoneelse", &li),
	    RAMKEY_ERR_NOT_FOUND);
	lease_revoke(H.core, 0, "bob", "test", &n, NULL);
	assert_int_equal(n, 0);
	assert_int_equal(H.kind->started[FK_END], 0);
	assert_int_equal(lease_find(H.core, "KEY0001", &li), 0);
}

/* L9: after the last session ends and no TTL holder remains, nothing the
 * core obtained for the user is live, and every credential got an end;
 * while a session is open its lease is live. */
static void L9_nothing_live_after_the_last_holder(void **state)
{
	struct req r[6];
	pid_t pids[6];
	bool found, last, ended;
	const char *owner;
	int i;

	(void)state;
	for (i = 0; i < 6; i++) {
		pids[i] = h_child();
		h_acquire_session(&H, &r[i], USER, RAMU, pids[i]);
		if (i == 0)
			mint(&H);
		if (i == 3) {
			/* rotation: a second credential */
			h_advance((int64_t)H.cfg.max_ttl_s * 810);
			h_pump(&H);
		}
	}
	mint(&H);
	for (i = 0; i < 6; i++) {
		assert_true(r[i].done);
		assert_int_equal(h_lease_state(&H, r[i].lease_id), LEASE_LIVE);
	}
	/* Sessions go: closed, or their process killed. */
	for (i = 0; i < 6; i++) {
		if (i % 2 == 0) {
			lease_close_session(H.core, r[i].session, false, &found,
			    &owner, &last, &ended);
		} else {
			h_kill(pids[i]);
			h_pump(&H);
		}
		if (i < 5)
			assert_int_equal(h_lease_state(&H, r[5].lease_id),
			    LEASE_LIVE);
	}
	h_pump(&H);
	assert_int_equal(lease_count_live(H.core), 0);
	assert_int_equal(finish_ends(&H), H.kind->started[FK_OBTAIN]);
	assert_int_equal(fs_count_leases(H.store, NULL), 0);
	for (i = 0; i < 6; i += 2)
		h_kill(pids[i]);
}

/* R1: a revocation is in the store before the core says the change is
 * done, and is resumed after a restart until the kind confirms it. */
struct commit_probe {
	struct fake_store *st;
	bool called, ok;
	unsigned ending_rows;
};

static void probe_committed(void *arg, bool ok)
{
	struct commit_probe *p = arg;

	p->called = true;
	p->ok = ok;
	p->ending_rows = fs_count_leases(p->st, "ending");
}

static void R1_revocation_is_durable_before_the_answer(void **state)
{
	struct commit_probe probe = { H.store, false, false, 0 };
	struct fake_store *st;
	struct req a;
	unsigned n;

	(void)state;
	h_acquire_ttl(&H, &a, USER, RAMU, 600);
	mint(&H);
	lease_revoke(H.core, a.lease_id, NULL, "test", &n, NULL);
	assert_int_equal(lease_after_commit(H.core, probe_committed, &probe),
	    0);
	h_pump(&H);
	assert_true(probe.called && probe.ok);
	assert_int_equal(probe.ending_rows, 1);
	/* The end fails, the agent crashes: it is resumed at start. */
	fk_end_done(H.kind, fk_pending(H.kind, FK_END), RAMKEY_ERR_RAM,
	    KIND_END_GONE);
	st = h_crash(&H);
	h_setup(&H, fk_new("access_key", 2, false), st);
	assert_int_equal(lease_pending_ends(H.core), 1);
	assert_int_equal(fk_count_pending(H.kind, FK_END), 1);
	/* Failures are retried with backoff until the kind confirms. */
	fk_end_done(H.kind, fk_pending(H.kind, FK_END), RAMKEY_ERR_RAM,
	    KIND_END_GONE);
	h_pump(&H);
	assert_int_equal(fk_count_pending(H.kind, FK_END), 0);
	h_advance(1100);
	h_pump(&H);
	assert_int_equal(fk_count_pending(H.kind, FK_END), 1);
	finish_ends(&H);
	assert_int_equal(lease_pending_ends(H.core), 0);
	assert_int_equal(fs_count_leases(H.store, NULL), 0);
}

/* R2: the intent is durable before the obtain starts; an obtain of
 * unknown outcome keeps it, and the kind reconciles it before the
 * principal obtains again (also after a restart). */
static void R2_intent_before_obtain_and_reconcile_first(void **state)
{
	struct req a, b;
	struct fake_store *st;

	(void)state;
	h_acquire_ttl(&H, &a, USER, RAMU, 600);
	fk_prepare_done(H.kind, fk_pending(H.kind, FK_PREPARE), 0);
	/* Not before the intent is committed. */
	assert_int_equal(H.kind->started[FK_OBTAIN], 0);
	h_pump(&H);
	assert_int_equal(fs_count_intents(H.store), 1);
	assert_int_equal(H.kind->started[FK_OBTAIN], 1);
	assert_string_equal(fk_pending(H.kind, FK_OBTAIN)->intent,
	    "[\"snapshot\"]");
	fk_obtain_done(H.kind, fk_pending(H.kind, FK_OBTAIN), RAMKEY_ERR_RAM,
	    true);
	h_pump(&H);
	assert_true(a.done);
	assert_int_not_equal(a.rc, 0);
	assert_int_equal(fs_count_intents(H.store), 1);
	assert_int_equal(fk_count_pending(H.kind, FK_RECONCILE), 1);
	/* A new request waits for the reconciliation. */
	h_acquire_ttl(&H, &b, USER, RAMU, 600);
	assert_int_equal(H.kind->started[FK_PREPARE], 1);
	/* Crash now: at start the intent is reconciled first. */
	st = h_crash(&H);
	h_setup(&H, fk_new("access_key", 2, false), st);
	assert_int_equal(fk_count_pending(H.kind, FK_RECONCILE), 1);
	h_acquire_ttl(&H, &b, USER, RAMU, 600);
	assert_int_equal(H.kind->started[FK_PREPARE], 0);
	/* The kind found the lost credential: the core ends it. */
	H.kind->port.adopt_orphan(H.kind->port.core, RAMU, USER, "LOST0001",
	    "2027-01-15T00:00:00Z");
	fk_reconcile_done(H.kind, fk_pending(H.kind, FK_RECONCILE), 0);
	h_pump(&H);
	assert_int_equal(fs_count_intents(H.store), 0);
	assert_string_equal(fs_lease_state(H.store, "LOST0001"), "ending");
	assert_int_equal(H.kind->started[FK_PREPARE], 1);
	mint(&H);
	assert_true(b.done);
	assert_int_equal(b.rc, 0);
}

/* R3: at start every stored lease with no live holder ends. */
static void R3_restart_ends_leases_without_holders(void **state)
{
	struct req a, b;
	pid_t p = h_child();
	struct fake_store *st;

	(void)state;
	h_acquire_ttl(&H, &a, USER, RAMU, 60);
	mint(&H);
	h_acquire_session(&H, &b, "bob", "bob.ram", p);
	mint(&H);
	st = h_crash(&H);
	h_advance(61000); /* the TTL holder expired while it was down */
	h_setup(&H, fk_new("access_key", 2, false), st);
	assert_int_equal(h_lease_state(&H, a.lease_id), LEASE_ENDING);
	/* The session's process still runs: that lease lives on. */
	assert_int_equal(h_lease_state(&H, b.lease_id), LEASE_LIVE);
	h_kill(p);
}

/* R4: a session whose process dies ends (the file is removed when it was
 * the user's last session), also when it died while the agent was down. */
static void R4_dead_session_process_ends_the_session(void **state)
{
	struct req a, b;
	pid_t p1 = h_child(), p2 = h_child();
	struct fake_store *st;

	(void)state;
	h_acquire_session(&H, &a, USER, RAMU, p1);
	mint(&H);
	h_kill(p1);
	h_pump(&H);
	assert_int_equal(h_lease_state(&H, a.lease_id), LEASE_ENDING);
	assert_int_equal(H.removed_files, 1);
	finish_ends(&H);
	h_acquire_session(&H, &b, USER, RAMU, p2);
	mint(&H);
	st = h_crash(&H);
	h_kill(p2);
	h_setup(&H, fk_new("access_key", 2, false), st);
	assert_int_equal(h_lease_state(&H, b.lease_id), LEASE_ENDING);
	assert_int_equal(H.removed_files, 2);
}

static void R4_a_reboot_ends_every_stored_session(void **state)
{
	struct req a;
	pid_t p = h_child();
	struct fake_store *st;

	(void)state;
	h_acquire_session(&H, &a, USER, RAMU, p);
	mint(&H);
	st = h_crash(&H);
	/* The same pid still runs, but the boot id says the host rebooted:
	 * it cannot be the same process. */
	snprintf(H.boot_id, sizeof(H.boot_id), "%s",
	    "00000000-0000-0000-0000-000000000002");
	h_setup(&H, fk_new("access_key", 2, false), st);
	assert_int_equal(h_lease_state(&H, a.lease_id), LEASE_ENDING);
	h_kill(p);
}

/* R5 (the core's part): an end that fails is retried with capped
 * exponential backoff, never given up. */
static void R5_failed_ends_are_retried_with_backoff(void **state)
{
	struct req a;
	unsigned n, i;
	int64_t waited = 0;

	(void)state;
	h_acquire_ttl(&H, &a, USER, RAMU, 600);
	mint(&H);
	lease_revoke(H.core, a.lease_id, NULL, "test", &n, NULL);
	for (i = 0; i < 12; i++) {
		assert_int_equal(fk_count_pending(H.kind, FK_END), 1);
		fk_end_done(H.kind, fk_pending(H.kind, FK_END), RAMKEY_ERR_RAM,
		    KIND_END_GONE);
		h_pump(&H);
		while (fk_count_pending(H.kind, FK_END) == 0) {
			h_advance(250);
			waited += 250;
			h_pump(&H);
			assert_true(waited < 3600000);
		}
	}
	/* Backoff is capped at a minute: twelve tries within 12 minutes. */
	assert_true(waited <= 12 * 60000);
	assert_true(waited >= 5 * 60000 / 2);
	finish_ends(&H);
	assert_int_equal(lease_pending_ends(H.core), 0);
}

/* R6: a store that refuses writes: nothing new is obtained, but ends
 * still happen; the core rewrites the store from memory later. */
static void R6_store_refusing_writes_mints_nothing(void **state)
{
	struct req a, b;
	unsigned n;

	(void)state;
	h_acquire_ttl(&H, &a, USER, RAMU, 600);
	mint(&H);
	fs_set_broken(H.store, true);
	h_acquire_ttl(&H, &b, "bob", "bob.ram", 600);
	assert_true(b.done);
	assert_int_equal(b.rc, RAMKEY_ERR_STORE);
	assert_int_equal(H.kind->started[FK_PREPARE], 1);
	lease_revoke(H.core, a.lease_id, NULL, "test", &n, NULL);
	assert_int_equal(fk_count_pending(H.kind, FK_END), 1);
	fs_set_broken(H.store, false);
	assert_int_equal(lease_core_resync(H.core), 0);
	assert_string_equal(fs_lease_state(H.store, "KEY0001"), "ending");
}

/* R7 (the core's part): a requester is never called back from inside
 * its own call. */
static void record(void *arg, int rc, const struct lease_grant *g,
    const struct lease_failure *f)
{
	struct req *r = arg;

	(void)g;
	(void)f;
	r->done = true;
	r->rc = rc;
}

static void R7_callbacks_come_from_the_loop(void **state)
{
	struct req a, b;
	struct lease_want w;

	(void)state;
	h_acquire_ttl(&H, &b, USER, RAMU, 600);
	mint(&H);
	memset(&w, 0, sizeof(w));
	w.kind = "access_key";
	w.user = USER;
	w.uid = 1000;
	w.principal = RAMU;
	w.holder = LEASE_HOLD_TTL;
	w.ttl_s = 60;
	/* A lease at hand, and a failure: neither answers inside the call. */
	memset(&a, 0, sizeof(a));
	assert_int_equal(lease_acquire(H.core, &w, record, &a, NULL), 0);
	assert_false(a.done);
	h_pump(&H);
	assert_true(a.done);
	assert_int_equal(a.rc, 0);
	fs_set_broken(H.store, true);
	memset(&a, 0, sizeof(a));
	assert_int_equal(lease_acquire(H.core, &w, record, &a, NULL), 0);
	assert_false(a.done);
	h_pump(&H);
	assert_true(a.done);
	assert_int_equal(a.rc, RAMKEY_ERR_STORE);
}

/* Renewal in place (STS-like kinds): one renewal per lease, on request,
 * the current credential meanwhile while it has enough left. */
static void renewal_on_request_only(void **state)
{
	struct req a, b, c;
	struct lease_info li;

	(void)state;
	h_acquire_ttl(&H, &a, USER, "role", 600);
	mint(&H);
	assert_true(a.done);
	/* No timer renews it. */
	h_advance(45000);
	h_pump(&H);
	assert_int_equal(H.kind->started[FK_OBTAIN], 1);
	/* 15 s left < 20 s: the next request waits for one renewal. */
	h_acquire_ttl(&H, &b, USER, "role", 600);
	h_acquire_ttl(&H, &c, USER, "role", 600);
	assert_false(b.done || c.done);
	assert_int_equal(H.kind->started[FK_OBTAIN], 2);
	assert_true(fk_pending(H.kind, FK_OBTAIN)->renewal);
	/* Its first try fails: the current one (15 s >= 5 s) is handed out. */
	fk_pending(H.kind, FK_OBTAIN)->progress(
	    fk_pending(H.kind, FK_OBTAIN)->arg, NULL);
	h_pump(&H);
	assert_true(b.done && c.done);
	assert_int_equal(b.lease_id, a.lease_id);
	fk_obtain_done(H.kind, fk_pending(H.kind, FK_OBTAIN), 0, false);
	h_pump(&H);
	assert_int_equal(lease_get(H.core, a.lease_id, &li), 0);
	assert_string_equal(li.cred_id, "KEY0002");
	assert_int_equal(H.kind->started[FK_OBTAIN], 2);
}

/* mint_rate: at most N obtains per principal in any window of the period;
 * an obtain leaves the window a period later. */
static void mint_rate_counts_obtains_in_the_window(void **state)
{
	struct lease_config cfg = H.cfg;
	struct req r[4];
	unsigned i;

	(void)state;
	cfg.mint_rate = 3;
	cfg.mint_rate_period_s = 600;
	lease_core_set_config(H.core, &cfg);
	for (i = 0; i < 3; i++) {
		h_acquire_ttl(&H, &r[i], USER, RAMU, 600);
		mint(&H);
		assert_true(r[i].done);
		assert_int_equal(r[i].rc, 0);
		/* Revoked: the next request obtains anew. */
		lease_revoke(H.core, r[i].lease_id, NULL, "test",
		    &(unsigned){ 0 }, NULL);
		h_pump(&H);
		h_advance(100 * 1000);
	}
	h_acquire_ttl(&H, &r[3], USER, RAMU, 600);
	assert_true(r[3].done);
	assert_int_equal(r[3].rc, RAMKEY_ERR_RATE);
	assert_int_equal(H.kind->started[FK_OBTAIN], 3);
	/* 600 s after the first obtain it is out of the window. */
	h_advance(301 * 1000);
	h_acquire_ttl(&H, &r[3], USER, RAMU, 600);
	mint(&H);
	assert_true(r[3].done);
	assert_int_equal(r[3].rc, 0);
	assert_int_equal(H.kind->started[FK_OBTAIN], 4);
}

/* Metrics: mints and revocations counted where the core decides them,
 * by result, never by user. */
static void metrics_count_mints_and_revocations(void **state)
{
	struct metrics *m;
	struct metric *mints, *ends;
	struct req a, b, c;
	char *text;
	unsigned n;

	(void)state;
	assert_int_equal(metrics_new(&m), 0);
	assert_int_equal(lease_core_set_metrics(H.core, m), 0);
	assert_int_equal(metrics_counter(m, "ramkey_mints_total", "x",
	    (const struct metric_label[]){ { "result",
	    (const char *const[]){ "ok", "refused", "failed", "rate_limited",
	    NULL } } }, 1, &mints), 0);
	assert_int_equal(metrics_counter(m, "ramkey_revocations_total", "x",
	    (const struct metric_label[]){ { "result",
	    (const char *const[]){ "deleted", "already_gone", "deactivated",
	    "left_to_expire", "other", "failed_try", NULL } } }, 1, &ends), 0);
	h_acquire_ttl(&H, &a, USER, RAMU, 600);
	mint(&H);
	/* The cloud says no (a Code, not transient): refused. */
	h_acquire_ttl(&H, &b, "bob", "bob.ram", 600);
	fk_prepare_done(H.kind, fk_pending(H.kind, FK_PREPARE), 0);
	h_pump(&H);
	fk_obtain_done(H.kind, fk_pending(H.kind, FK_OBTAIN), RAMKEY_ERR_RAM,
	    false);
	h_pump(&H);
	/* Outcome unknown (a timeout, a transport error): failed. */
	h_acquire_ttl(&H, &c, "carol", "carol.ram", 600);
	fk_prepare_done(H.kind, fk_pending(H.kind, FK_PREPARE), 0);
	h_pump(&H);
	fk_obtain_done(H.kind, fk_pending(H.kind, FK_OBTAIN),
	    RAMKEY_ERR_RAM_TIMEOUT, true);
	h_pump(&H);
	assert_int_equal(metric_value(mints, "ok", NULL), 1);
	assert_int_equal(metric_value(mints, "refused", NULL), 1);
	assert_int_equal(metric_value(mints, "failed", NULL), 1);
	/* One failed try, then the end completes. */
	lease_revoke(H.core, a.lease_id, NULL, "test", &n, NULL);
	fk_end_done(H.kind, fk_pending(H.kind, FK_END), RAMKEY_ERR_RAM,
	    KIND_END_GONE);
	h_pump(&H);
	assert_int_equal(metric_value(ends, "failed_try", NULL), 1);
	while (fk_count_pending(H.kind, FK_END) == 0) {
		h_advance(250);
		h_pump(&H);
	}
	finish_ends(&H);
	assert_int_equal(metric_value(ends, "deleted", NULL), 1);
	assert_int_equal(metrics_render(m, &text, NULL), 0);
	assert_null(strstr(text, USER));
	assert_null(strstr(text, RAMU));
	assert_null(strstr(text, "KEY0001"));
	free(text);
	/* The lease core goes first: it holds the families. */
	h_teardown(&H);
	memset(&H, 0, sizeof(H));
	metrics_free(m);
	h_setup(&H, fk_new("access_key", 2, false), NULL);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest ak[] = {
		cmocka_unit_test_setup_teardown(
		    L1_one_lease_per_user_and_principal, setup_ak, teardown),
		cmocka_unit_test_setup_teardown(
		    L2_single_flight, setup_ak, teardown),
		cmocka_unit_test_setup_teardown(
		    mint_rate_counts_obtains_in_the_window, setup_ak, teardown),
		cmocka_unit_test_setup_teardown(
		    L3_secret_only_in_memory, setup_ak, teardown),
		cmocka_unit_test_setup_teardown(
		    L4_last_holder_ends_the_lease, setup_ak, teardown),
		cmocka_unit_test_setup_teardown(
		    L4_ttl_holder_expiry_ends_the_lease, setup_ak, teardown),
		cmocka_unit_test_setup_teardown(
		    L4_max_ttl_ends_a_held_lease, setup_ak, teardown),
		cmocka_unit_test_setup_teardown(
		    L4_revoke_ends_every_live_lease_of_the_user,
		    setup_ak, teardown),
		cmocka_unit_test_setup_teardown(
		    L5_rotation_at_80_percent_of_max_ttl, setup_ak, teardown),
		cmocka_unit_test_setup_teardown(
		    L6_requester_gave_up, setup_ak, teardown),
		cmocka_unit_test_setup_teardown(
		    L7_max_ttl_counts_from_receipt, setup_ak, teardown),
		cmocka_unit_test_setup_teardown(
		    L8_never_touches_a_credential_it_did_not_make,
		    setup_ak, teardown),
		cmocka_unit_test_setup_teardown(
		    L9_nothing_live_after_the_last_holder, setup_ak, teardown),
		cmocka_unit_test_setup_teardown(
		    R1_revocation_is_durable_before_the_answer,
		    setup_ak, teardown),
		cmocka_unit_test_setup_teardown(
		    R2_intent_before_obtain_and_reconcile_first,
		    setup_ak, teardown),
		cmocka_unit_test_setup_teardown(
		    R3_restart_ends_leases_without_holders, setup_ak, teardown),
		cmocka_unit_test_setup_teardown(
		    R4_dead_session_process_ends_the_session,
		    setup_ak, teardown),
		cmocka_unit_test_setup_teardown(
		    R4_a_reboot_ends_every_stored_session, setup_ak, teardown),
		cmocka_unit_test_setup_teardown(
		    R5_failed_ends_are_retried_with_backoff,
		    setup_ak, teardown),
		cmocka_unit_test_setup_teardown(
		    R6_store_refusing_writes_mints_nothing, setup_ak, teardown),
		cmocka_unit_test_setup_teardown(
		    R7_callbacks_come_from_the_loop, setup_ak, teardown),
		cmocka_unit_test_setup_teardown(
		    renewal_on_request_only, setup_sts, teardown),
		cmocka_unit_test_setup_teardown(
		    metrics_count_mints_and_revocations, setup_ak, teardown),
	};

	size_t i, n = sizeof(ak) / sizeof(ak[0]);

	/* ctest runs one rule at a time, by name; a name that matches no
	 * test is an error, not a pass. */
	if (argc < 2)
		return cmocka_run_group_tests(ak, NULL, NULL);
	for (i = 0; i < n; i++)
		if (strcmp(ak[i].name, argv[1]) == 0)
			return _cmocka_run_group_tests(argv[1], &ak[i], 1, NULL,
			    NULL);
	fprintf(stderr, "no test named %s\n", argv[1]);
	return 2;
}
