/*
 * The durable lease store: SQLite (WAL, synchronous=FULL, exclusive lock)
 * in state_dir/leases.db. It records leases, their PAM sessions, pending
 * revocations (leases in state "revoking"), write-ahead mint intents,
 * which key was written to which secret file, and ambiguous keys, never a
 * secret.
 *
 * Writes are staged on the event loop into a batch; a committer thread
 * runs each batch as one transaction and syncs it while the loop goes on
 * (pipelined group commit). Whatever depends on a write waits for its
 * batch with store_after_commit(), so no reply goes out before its record
 * is durable. If a batch fails (disk full, read-only), the store is
 * "broken": waiters learn it, later writes are skipped, and the whole
 * state is rewritten from memory once the disk accepts writes again.
 */
#ifndef RAMKEY_LEASE_STORE_H
#define RAMKEY_LEASE_STORE_H

#include <stdbool.h>
#include <stdint.h>

struct agent;
struct evloop;
struct lease;
struct session;
struct intent;
struct lease_store;

typedef void (*store_commit_fn)(void *arg, bool ok);

/* Open (creating if needed) the store. Errors: RAMKEY_ERR_STORE with *errp
 * (malloc'd) saying why, e.g. locked by another agent. */
int lease_store_open(const char *state_dir, struct lease_store **ret,
    char **errp);
/* Start the committer (after store_load). */
int lease_store_start(struct lease_store *s, struct evloop *loop);
/* Commit everything staged and wait for it (at exit). Flushes, waits and
 * closes. */
void store_flush(struct lease_store *s);
void lease_store_close(struct lease_store *s);

void store_put_lease(struct lease_store *s, const struct lease *l);
void store_del_lease(struct lease_store *s, uint64_t id);
void store_put_session(struct lease_store *s, const struct session *ss);
void store_del_session(struct lease_store *s, const char *token);
void store_put_intent(struct lease_store *s, const struct intent *in);
void store_del_intent(struct lease_store *s, uint64_t id);
void store_put_file(struct lease_store *s, const char *user,
    const struct file_rec *f);
void store_del_file(struct lease_store *s, const char *user,
    const char *path);
void store_put_ambiguous(struct lease_store *s, const char *key_id,
    const char *ram_user);
void store_del_ambiguous(struct lease_store *s, const char *key_id);

/* Run fn(arg, ok) once the writes staged so far are committed (ok) or
 * lost (!ok). */
int store_after_commit(struct lease_store *s, store_commit_fn fn, void *arg);
/* Cancel a pending after-commit callback (its owner went away). */
void store_cancel_after_commit(struct lease_store *s, void *arg);

/* Hand the staged batch to the committer if none is in flight; its
 * after-commit callbacks run on the loop once it is durable. */
void store_commit(struct lease_store *s);
/* Is there a batch that store_commit() would hand over now? */
bool store_has_pending(const struct lease_store *s);

/* True while writes fail; the agent then mints nothing. */
bool store_broken(const struct lease_store *s);
/* Try to rewrite everything from memory; clears "broken" on success. */
int store_resync(struct lease_store *s, struct agent *a);

/* Load every record into the agent's model (at start). */
int store_load(struct lease_store *s, struct agent *a);

#endif
