/*
 * The lease core: leases, their holders, single-flight obtains, expiry,
 * revocation that is never lost, and recovery after a restart. It is
 * kind-neutral (a lease is live, ending or ended; what a credential kind
 * does in between is the kind's business) and never sees a connection or
 * a request: requesters wait on it through callbacks it owns.
 *
 * The rules it keeps are listed in docs/ARCHITECTURE.md (L1-L9, R1-R7)
 * and tested one by one in tests/lease/.
 */
#ifndef RAMKEY_LEASE_H
#define RAMKEY_LEASE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "credential.h"
#include "store.h"

struct evloop;
struct metrics;
struct lease_core;
struct lease_wait;
struct lease_op;

/* What the core needs of the agent's configuration. */
struct lease_config {
	uint64_t max_ttl_s;	     /* no credential outlives its lease's */
	uint32_t mint_rate;	     /* obtains per principal ... */
	uint64_t mint_rate_period_s; /* ... per this period */
	unsigned fetch_paths_max;    /* secret_file paths kept per user from
				      * fetch (oldest dropped) */
};

/* The durable store, as the core uses it. lease_store_port_sqlite() fills
 * it for the SQLite store; tests use an in-memory one. */
struct lease_store_port {
	void *s;
	void (*put_lease)(void *s, const struct store_lease_row *r);
	void (*del_lease)(void *s, uint64_t id);
	void (*put_session)(void *s, const struct store_session_row *r);
	void (*del_session)(void *s, const char *token);
	void (*put_intent)(void *s, const struct store_intent_row *r);
	void (*del_intent)(void *s, uint64_t id);
	void (*put_file)(void *s, const struct store_file_row *r);
	void (*del_file)(void *s, const char *user, const char *path);
	void (*put_note)(void *s, const struct store_note_row *r);
	void (*del_note)(void *s, const char *ns, const char *key);
	int (*after_commit)(void *s, store_commit_fn fn, void *arg);
	void (*cancel_after_commit)(void *s, void *arg);
	bool (*broken)(void *s);
	bool (*resync_begin)(void *s);
	int (*resync_end)(void *s);
	int (*load)(void *s, const struct store_loader *ld);
};

void lease_store_port_sqlite(struct lease_store_port *p, struct store *s);

/* Effects outside the agent's memory, done for the core by its owner. */
struct lease_effects {
	void *arg;
	/*
	 * The last session of user ended because its process died: nobody
	 * will remove the file it wrote. Remove path as the user if it is a
	 * regular file of theirs (only an agent running as root can).
	 */
	void (*remove_file)(void *arg, const char *user, uid_t uid, gid_t gid,
	    const char *path);
};

int lease_core_new(struct evloop *loop, const struct lease_config *cfg,
    const struct lease_store_port *store, const struct lease_effects *fx,
    struct lease_core **ret);
/* Register a kind (before recovery). The core attaches its port. */
int lease_core_add_kind(struct lease_core *c, const struct credential_kind *k);
/*
 * Load the store and recover: end sessions whose process is gone (or
 * whose host rebooted), end leases with no live holder or past max_ttl,
 * resume every pending end, reconcile unresolved intents.
 */
int lease_core_recover(struct lease_core *c, const char *boot_id);
void lease_core_set_config(struct lease_core *c,
    const struct lease_config *cfg);
/*
 * Count in m: ramkey_mints_total{result="ok"|"refused"|"failed"|
 * "rate_limited"} (one per obtain, renewals included) and
 * ramkey_revocations_total{result="deleted"|"already_gone"|"deactivated"|
 * "left_to_expire"|"other"|"failed_try"} (one per completed end of a
 * credential, and one per failed try of it).
 */
int lease_core_set_metrics(struct lease_core *c, struct metrics *m);
/* From now on nothing new is obtained (the agent is stopping). */
void lease_core_stop(struct lease_core *c);
/* Cancels every kind operation and frees everything. */
void lease_core_free(struct lease_core *c);

/* ---- acquiring ---- */

enum lease_holder_kind {
	LEASE_HOLD_SESSION = 0, /* a PAM session, watched through its pid */
	LEASE_HOLD_TTL,	       /* fetch: until now + ttl, unless a session
				* holds the lease already */
};

/* Who asked, for the audit lines. */
struct lease_peer {
	uid_t uid;
	pid_t pid;
	const char *rhost;
	const char *tty;
};

struct lease_want {
	const char *kind;	/* kind name */
	const char *user;	/* local user, already authorised */
	uid_t uid;
	gid_t gid;
	const char *principal;
	enum lease_holder_kind holder;
	struct lease_peer peer;
	/* LEASE_HOLD_SESSION */
	pid_t session_pid;	/* the process to watch */
	uid_t session_peer_uid;
	const char *secret_file;/* the path the module writes */
	const char *service;
	/* LEASE_HOLD_TTL */
	uint64_t ttl_s;
	const char *fetch_path;	/* fetch --secret-file, or NULL */
	bool default_file;	/* fetch writes the user's session file */
};

struct lease_grant {
	uint64_t lease_id;
	const char *session;	 /* the session token (session holders) */
	const char *secret_file; /* fetch: a live PAM session's file, or NULL */
	bool minted;		 /* obtained for this request */
};

struct lease_failure {
	int rc;
	const char *code;	/* the cloud's Code, or NULL */
	const char *message;	/* one line for the requester */
};

/* rc 0: g is valid during the call, and what the grant reports is
 * durable. Else f says why. */
typedef void (*lease_ready_fn)(void *arg, int rc, const struct lease_grant *g,
    const struct lease_failure *f);

/*
 * Get the user's current lease of principal (single-flight: concurrent
 * acquires share one obtain), attach the holder, and call fn once it is
 * durable. fn may run before this returns only if the lease was at hand.
 * *waitp (if not NULL) can cancel the wait until fn has run.
 */
int lease_acquire(struct lease_core *c, const struct lease_want *w,
    lease_ready_fn fn, void *arg, struct lease_wait **waitp);
/* The requester gave up: fn will not run. An obtain under way goes on for
 * other waiters; if nobody waits, its credential is ended at once (L6). */
void lease_wait_cancel(struct lease_wait *w);

/* Undo a grant the requester could not deliver (PGP encryption failed):
 * detach its session, or end a lease minted for it that nothing holds. */
void lease_release(struct lease_core *c, const struct lease_grant *g,
    const char *why);

/* ---- reading ---- */

enum lease_state {
	LEASE_LIVE = 0,
	LEASE_ENDING,	/* ended; the kind is ending its credential */
	LEASE_ENDED,	/* ended; the credential is retained (parked, or
			 * still valid until it expires) */
};

struct lease_info {
	uint64_t id;
	const char *kind;
	const char *user;
	uid_t uid;
	const char *principal;
	const char *cred_id;
	const char *create_date;
	const char *status;
	enum lease_state state;
	int64_t received_ms;	/* when its credential arrived */
	int64_t lease_end_ms;	/* max_ttl */
	int64_t expiration;	/* the credential's own expiry, Unix s, or 0 */
	int64_t ttl_expires_ms;	/* the TTL holder, or 0 */
	int64_t refresh_ms;	/* from then on a request gets a newer
				 * credential (renewal or rotation) */
	unsigned sessions;
	const char *key_fingerprint;
	bool has_secret;
};

/* Borrowed until control returns to the loop. */
int lease_get(struct lease_core *c, uint64_t id, struct lease_info *out);
/* The live lease whose credential is cred_id, or RAMKEY_ERR_NOT_FOUND. */
int lease_find(struct lease_core *c, const char *cred_id,
    struct lease_info *out);
/* The secret (and token, maybe NULL) of a live lease, borrowed. */
int lease_secret(struct lease_core *c, uint64_t id, const char **secret,
    size_t *len, const char **token);
void lease_foreach(struct lease_core *c, const char *user,
    void (*fn)(void *arg, const struct lease_info *li), void *arg);
void lease_foreach_ambiguous(struct lease_core *c, void (*fn)(void *arg,
    const char *principal, const char *cred_id), void *arg);
unsigned lease_pending_ends(const struct lease_core *c);
unsigned lease_count_live(const struct lease_core *c);
/* PAM sessions of a user on live leases. */
unsigned lease_user_sessions(struct lease_core *c, const char *user);
bool lease_store_broken(const struct lease_core *c);

/* ---- changing ---- */

/* Remember the PGP key a lease's secret was last handed out to. */
void lease_set_fingerprint(struct lease_core *c, uint64_t id,
    const char *fpr);

/*
 * A PAM close. *found: the session existed (else: already ended, a
 * no-op). *owner: its user (borrowed, valid until the loop runs again).
 * *last: the user has no PAM session left. *ended: a lease ended, so a
 * revocation is pending: wait for lease_after_commit() before answering.
 * aborted: the module never wrote the file.
 */
void lease_close_session(struct lease_core *c, const char *token,
    bool aborted, bool *found, const char **owner, bool *last, bool *ended);
/* The user who holds session token, or NULL. */
const char *lease_session_user(struct lease_core *c, const char *token);

/* End leases now (revoke): one by id, or every live lease of user (NULL:
 * every user). *n: how many ended. *valid_until (wall ms, may be NULL):
 * the latest time until which an ended credential stays valid at the
 * cloud because its kind cannot revoke it (STS), or 0. */
void lease_revoke(struct lease_core *c, uint64_t id, const char *user,
    const char *why, unsigned *n, int64_t *valid_until);

typedef void (*lease_done_fn)(void *arg, int rc, const struct lease_failure *f);
/* Set the credential's status at the cloud (the kind must support it:
 * RAMKEY_ERR_INVALID otherwise). fn runs once the change is durable. */
int lease_set_status(struct lease_core *c, uint64_t id, const char *status,
    lease_done_fn fn, void *arg, struct lease_op **opp);
/* The requester of a set_status went away: fn will not run (the change
 * itself goes on). */
void lease_op_cancel(struct lease_op *op);

/* fn(arg, ok) once every change so far is durable. */
int lease_after_commit(struct lease_core *c, store_commit_fn fn, void *arg);
void lease_cancel_after_commit(struct lease_core *c, void *arg);
/* The store broke: rewrite it from memory (call until it succeeds). */
int lease_core_resync(struct lease_core *c);

#endif
