/*
 * The durable state store: SQLite (WAL, exclusive lock) in
 * state_dir/leases.db. It keeps plain rows (leases, their PAM sessions,
 * obtain intents, secret file records, and small notes a credential kind
 * keeps for itself) and never a secret. It knows nothing of the lease
 * core's structures: the core hands it rows and gets rows back at start.
 *
 * Writes are staged on the event loop into a batch; a committer thread
 * runs each batch as one transaction while the loop goes on (a pipelined
 * group commit). Whatever depends on a write waits for its batch with
 * store_after_commit(), so no reply goes out before what it reports is
 * recorded.
 *
 * Durability classes: a row that must survive a power failure (a lease, a
 * pending revocation, an intent, a TTL holder) makes its batch fsync the
 * log (synchronous=FULL). A batch of session rows only is written without
 * a sync (it survives a crash of the agent, not of the host): sessions
 * live only as long as the host is up, and after a reboot every stored
 * session is dead anyway, so a session row lost with the power changes
 * nothing a restart would not do. Commits stay in order, so a later synced
 * batch makes the earlier unsynced ones durable too.
 *
 * If a batch fails (disk full, read-only), the store is "broken": waiters
 * learn it, later writes are skipped, and the owner rewrites its whole
 * state (store_resync) once the disk accepts writes again.
 */
#ifndef RAMKEY_STORE_H
#define RAMKEY_STORE_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

struct evloop;
struct store;

/* Lease core states as stored. */
#define STORE_STATE_LIVE "live"
#define STORE_STATE_ENDING "ending"
#define STORE_STATE_ENDED "ended"

struct store_lease_row {
	uint64_t id;
	const char *kind;	 /* "access_key", "sts" */
	const char *user;	 /* local user */
	uid_t uid;
	gid_t gid;
	const char *principal;	 /* RAM user name or role ARN */
	const char *cred_id;	 /* AccessKeyId */
	const char *create_date; /* as the cloud sent it */
	int64_t received_ms;
	int64_t expiration;	 /* Unix s, 0 = none */
	const char *status;	 /* Active / Inactive */
	const char *state;	 /* STORE_STATE_* */
	const char *kind_state;	 /* the kind's own sub-state, or NULL */
	int64_t ttl_expires_ms;	 /* 0 = no TTL holder */
	const char *key_fingerprint;
};

struct store_session_row {
	const char *token;
	uint64_t lease_id;
	pid_t pid;
	uint64_t start_time;
	const char *boot_id;
	uid_t peer_uid;
	const char *secret_file;
	const char *rhost, *tty, *service;
	int64_t opened_ms;
};

struct store_intent_row {
	uint64_t id;
	const char *kind;
	const char *principal;
	const char *user;
	int64_t started_ms;
	const char *data; /* the kind's opaque text */
};

struct store_file_row {
	const char *user;
	const char *path;
	const char *cred_id;
	const char *token; /* the session that wrote it, or "" */
	int64_t written_ms;
};

struct store_note_row {
	const char *ns;	  /* owner, e.g. "access_key.ambiguous" */
	const char *key;
	const char *value;
};

/* Called once per row at load; return 0 to go on. Strings are valid
 * during the call only. */
struct store_loader {
	int (*lease)(void *arg, const struct store_lease_row *r);
	int (*session)(void *arg, const struct store_session_row *r);
	int (*intent)(void *arg, const struct store_intent_row *r);
	int (*file)(void *arg, const struct store_file_row *r);
	int (*note)(void *arg, const struct store_note_row *r);
	void *arg;
};

typedef void (*store_commit_fn)(void *arg, bool ok);

/* Open (creating if needed) the store. Errors: RAMKEY_ERR_STORE with *errp
 * (malloc'd) saying why, e.g. locked by another agent. */
int store_open(const char *state_dir, struct store **ret, char **errp);
/* Load every row, leases first, then sessions, intents, files, notes. */
int store_load(struct store *s, const struct store_loader *ld);
/* Start the committer thread (after loading). */
int store_start(struct store *s, struct evloop *loop);
/* Commit everything staged and wait for it (exit). */
void store_flush(struct store *s);
void store_close(struct store *s);

void store_put_lease(struct store *s, const struct store_lease_row *r);
void store_del_lease(struct store *s, uint64_t id); /* and its sessions */
void store_put_session(struct store *s, const struct store_session_row *r);
void store_del_session(struct store *s, const char *token);
void store_put_intent(struct store *s, const struct store_intent_row *r);
void store_del_intent(struct store *s, uint64_t id);
void store_put_file(struct store *s, const struct store_file_row *r);
void store_del_file(struct store *s, const char *user, const char *path);
void store_put_note(struct store *s, const struct store_note_row *r);
void store_del_note(struct store *s, const char *ns, const char *key);

/* Run fn(arg, ok) once the writes staged so far are committed (ok) or
 * lost (!ok). */
int store_after_commit(struct store *s, store_commit_fn fn, void *arg);
/* Cancel a pending after-commit callback (its owner went away). */
void store_cancel_after_commit(struct store *s, void *arg);

/* Hand the staged batch to the committer if none is in flight. */
void store_commit(struct store *s);
/* Is there a batch that store_commit() would hand over now? */
bool store_has_pending(const struct store *s);

/* True while writes fail. */
bool store_broken(const struct store *s);
/*
 * Rewrite everything: clear all rows, then the owner puts every row it
 * has between store_resync_begin() and store_resync_end(). No-op (returns
 * false from begin) unless the store is broken and idle.
 */
bool store_resync_begin(struct store *s);
int store_resync_end(struct store *s);

/* Batches committed with and without a sync (for tests and metrics). */
void store_counts(const struct store *s, uint64_t *synced,
    uint64_t *unsynced);

#endif
