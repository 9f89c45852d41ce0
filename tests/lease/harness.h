/*
 * A bench for the lease core: a fake clock, an in-memory store that can
 * refuse writes, and a fake credential kind whose operations the test
 * completes by hand. Nothing here touches the network, root or a disk.
 */
#ifndef RAMKEY_TEST_LEASE_HARNESS_H
#define RAMKEY_TEST_LEASE_HARNESS_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "credential.h"
#include "lease.h"

enum fk_type { FK_PREPARE, FK_OBTAIN, FK_RECONCILE, FK_END, FK_STATUS };

/* One operation the core started on the fake kind. */
struct fk_op {
	struct fk_op *next;
	enum fk_type type;
	char principal[128];
	char user[64];
	char cred_id[CRED_ID_MAX + 1];
	char kind_state[KIND_STATE_MAX];
	char intent[256];
	bool purge;
	bool renewal;
	int64_t lease_end_ms;
	void *arg;
	union {
		kind_prepare_fn prepare;
		kind_obtain_fn obtain;
		kind_reconcile_fn reconcile;
		kind_end_fn end;
		kind_done_fn done;
	} fn;
	kind_save_fn save;
	kind_progress_fn progress;
};

struct fake_kind {
	struct kind_ops ops;
	struct kind_port port;
	struct fk_op *pending;	/* started, not completed, not cancelled */
	unsigned started[5];	/* by enum fk_type */
	unsigned cancelled;
	unsigned next_cred;
	bool with_intent;	/* prepare answers an intent */
	int64_t lifetime_s;	/* credentials expire after this (0: never) */
	int64_t renew_before_s;	/* KIND_FRESH_RENEW / STALE below this */
};

struct fake_store;

struct harness {
	struct evloop *loop;
	struct lease_core *core;
	struct fake_store *store;
	struct fake_kind *kind;
	struct lease_config cfg;
	char boot_id[40];
	unsigned removed_files;
	char removed_path[256];
};

/* The fake clock (ms). */
void h_clock_init(int64_t wall_ms);
void h_advance(int64_t ms);
int64_t h_now(void);

/* A fake kind: capacity 2 and no renewal (like AccessKeys), or capacity
 * 0 and renewal in place (like STS). */
struct fake_kind *fk_new(const char *name, unsigned capacity, bool renews);

/* Set up a core on a new loop with this kind (and this store, or a new
 * one). */
void h_setup(struct harness *h, struct fake_kind *k, struct fake_store *st);
/* Throw the core away (as a crash does) but keep the store. */
struct fake_store *h_crash(struct harness *h);
void h_teardown(struct harness *h);
/* Run the loop until nothing is due (commits, zero timers). */
void h_pump(struct harness *h);

struct fake_store *fs_new(void);
void fs_free(struct fake_store *s);
/* The store refuses (true) or accepts writes. */
void fs_set_broken(struct fake_store *s, bool broken);
/* Rows now in the store. */
unsigned fs_count_leases(struct fake_store *s, const char *state);
unsigned fs_count_sessions(struct fake_store *s);
unsigned fs_count_intents(struct fake_store *s);
const char *fs_lease_state(struct fake_store *s, const char *cred_id);
unsigned fs_commits(struct fake_store *s);

/* The first pending op of a type (NULL if none). */
struct fk_op *fk_pending(struct fake_kind *k, enum fk_type type);
unsigned fk_count_pending(struct fake_kind *k, enum fk_type type);
/* Complete ops (each removes the op). */
void fk_prepare_done(struct fake_kind *k, struct fk_op *op, int rc);
/* rc 0: a new credential, whose id is returned (static buffer). */
const char *fk_obtain_done(struct fake_kind *k, struct fk_op *op, int rc,
    bool outcome_unknown);
void fk_reconcile_done(struct fake_kind *k, struct fk_op *op, int rc);
void fk_end_done(struct fake_kind *k, struct fk_op *op, int rc,
    enum kind_end result);
void fk_status_done(struct fake_kind *k, struct fk_op *op, int rc);

/* A child process standing for the process that opened a session. */
pid_t h_child(void);
void h_kill(pid_t pid);

/* A requester: its acquire's outcome. */
struct req {
	bool done;
	int rc;
	uint64_t lease_id;
	char session[40];
	bool minted;
	struct lease_wait *wait;
	char message[512];
};

void h_acquire_session(struct harness *h, struct req *r, const char *user,
    const char *principal, pid_t pid);
void h_acquire_ttl(struct harness *h, struct req *r, const char *user,
    const char *principal, uint64_t ttl_s);
/* The state of the lease with this id, or -1 if forgotten. */
int h_lease_state(struct harness *h, uint64_t id);

#endif
