/*
 * The lease core's own structures, shared by its files:
 *
 *   lease.c     the owner of lease state: creation, the state changes
 *               (live -> ending -> ended, and forgetting), the counters,
 *               the one timer of each lease, and its row in the store
 *   holders.c   PAM sessions and the TTL holder: attach, detach, process
 *               watch, and the secret files sessions share
 *   obtain.c    acquiring: single-flight obtains, one at a time per
 *               principal for kinds with a limit, durable intents and
 *               their reconciliation, renewal in place, mint_rate
 *   recovery.c  start-up: rows to structures, dead sessions, leases
 *               without holders, pending ends, unresolved intents
 *   query.c     what requesters read: infos, secrets, counts
 *
 * Only lease.c writes a lease's state or the counters.
 */
#ifndef RAMKEY_LEASE_INT_H
#define RAMKEY_LEASE_INT_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "credential.h"
#include "evloop.h"
#include "lease.h"
#include "message.h"
#include "proc_watch.h"

struct strmap;
struct idmap;
struct secret_arena;
struct obtain;
struct metric;

/* One registered credential kind. */
struct core_kind {
	struct lease_core *core;
	struct credential_kind k;
	struct kind_port port;
};

/* A RAM user or a role (per kind): obtains for it, its unresolved intent,
 * its mint_rate window. */
struct lease_principal {
	char *key;		/* kind name, '\n', name: the map key, after
				 * the struct */
	const char *name;	/* in key */
	struct core_kind *kind;
	struct obtain *queue_head, *queue_tail; /* capacity kinds: waiting */
	struct obtain *running;
	struct intent *intent;	/* unresolved: no new obtain until resolved */
	struct kind_op *rec_op;
	struct ev_timer rec_timer;
	uint32_t *mint_times;	/* obtain times in the window, oldest first,
				 * Unix seconds; NULL when there are none */
	uint32_t nmint, mint_cap;
	uint64_t rate_deny_ms;	/* last mint_rate deny line */
	uint32_t rate_deny_suppressed;
	unsigned nleases;
};

struct intent {
	uint64_t id;
	struct lease_principal *p;
	char *user;
	char *data;
	int64_t started_ms;
	bool recovered;
};

/* Which credential was written last to a secret file path of a user. */
struct file_rec {
	struct file_rec *next;	/* the user's records, newest first */
	const char *path;	/* in key */
	char *key;		/* user '\n' path: the files map's key,
				 * after the struct (file_rec_new()) */
	char cred_id[CRED_ID_MAX + 1];
	char token[RAMKEY_SESSION_TOKEN_LEN + 1]; /* writer session, or "" */
	int64_t written_ms;
};

/* A local user: their leases, obtains in flight, files. */
struct lease_user {
	char *name;
	uid_t uid;
	gid_t gid;
	struct lease *leases;	/* newest first */
	struct obtain *obtains;	/* in flight, one per principal */
	struct file_rec *files;
	unsigned nfetch_files;	/* records written by fetch */
};

struct session {
	char token[RAMKEY_SESSION_TOKEN_LEN + 1];
	struct lease *lease;
	struct session *next_in_lease;
	pid_t pid;		/* the process that opened it */
	uint64_t start_time;	/* its start time, clock ticks */
	int pidfd;		/* -1 if not watched */
	uid_t peer_uid;
	/* In the same allocation, after the struct (session_new()). */
	const char *secret_file;
	const char *rhost, *tty, *service;
	int64_t opened_ms;
};

struct lease {
	uint64_t id;
	struct lease_core *core;
	struct lease_user *u;
	struct lease_principal *p;
	char cred_id[CRED_ID_MAX + 1];
	char create_date[CRED_DATE_MAX];
	char status[CRED_STATUS_MAX];
	char kind_state[KIND_STATE_MAX];
	int64_t create_time;	/* Unix s */
	int64_t received_ms;	/* when the lease's first credential came */
	int64_t expiration;	/* the credential's own expiry, Unix s */
	int64_t ttl_expires_ms;	/* TTL holder; 0 = none */
	uint32_t secret_slot;	/* 0: secret unknown (agent restarted) */
	uint32_t token_slot;	/* its SecurityToken in the arena, or 0 */
	char *key_fingerprint;	/* last PGP key it was handed to */
	enum lease_state state;
	bool purge;		/* ending a retained credential */
	bool end_deferred;	/* ending waits for a status change */
	bool renewal_failed;	/* the renewal under way failed a try */
	unsigned nsessions;
	unsigned end_attempts;
	struct session *sessions;
	struct lease *next_of_user;
	struct ev_timer timer;	/* expiry, end retries, retention */
	struct kind_op *end_op;
	struct lease_op *status_op;
	struct obtain *renewal;	/* renewal in place under way */
};

struct lease_core {
	struct evloop *loop;
	struct lease_config cfg;
	struct lease_store_port store;
	struct lease_effects fx;
	struct secret_arena *arena;
	struct core_kind *kinds[4];
	unsigned nkinds;
	struct strmap *users;	   /* name -> lease_user */
	struct strmap *principals; /* key -> lease_principal */
	struct strmap *by_cred;	   /* cred id -> lease */
	struct idmap *by_id;	   /* lease id -> lease */
	struct strmap *sessions;   /* token -> session */
	struct strmap *files;	   /* user '\n' path -> file_rec */
	char boot_id[BOOT_ID_LEN + 1];
	uint64_t next_lease_id;
	uint64_t next_intent_id;
	unsigned pending_ends;	/* leases in LEASE_ENDING */
	unsigned live;		/* leases in LEASE_LIVE */
	bool stopping;
	bool recovering;
	/* Metrics (NULL: not counted). */
	struct metric *m_mints, *m_revocations;
};

/* ---- lease.c: the owner of lease state ---- */
struct lease *lease_new(struct lease_core *c, struct lease_user *u,
    struct lease_principal *p, uint64_t id);
/* Take a new credential (obtain or renewal); copies the secret into the
 * arena. */
int lease_take_credential(struct lease *l, const struct credential *cred);
void lease_link(struct lease *l, enum lease_state state);
void lease_save(struct lease *l);
void lease_arm(struct lease *l);
void lease_end(struct lease *l, const char *why);
/* A retained credential must go now (its slot is needed). */
void lease_purge(struct lease *l);
void lease_forget(struct lease *l);
/* A credential made and lost (found by reconciliation): record it as
 * ending and end it. */
void lease_adopt_orphan(struct lease_core *c, struct lease_principal *p,
    const char *user, const char *cred_id, const char *create_date);
struct lease *lease_by_id(struct lease_core *c, uint64_t id);
int64_t lease_end_ms(const struct lease *l);
int64_t lease_refresh_ms(const struct lease *l);
void lease_kind_view(const struct lease *l, struct kind_lease *kl);
/* Resume the end of a lease loaded as ending (recovery). */
void lease_resume_end(struct lease *l);
void lease_status_op_done(struct lease *l);

/* ---- users and principals (lease.c) ---- */
struct lease_user *core_user(struct lease_core *c, const char *name);
struct lease_principal *core_principal(struct lease_core *c,
    struct core_kind *k, const char *name);
struct core_kind *core_kind_by_name(struct lease_core *c, const char *name);
void core_persist(struct lease_core *c); /* nothing: commit is the store's */

/* ---- holders.c ---- */
int session_attach(struct lease *l, const struct lease_want *w,
    struct session **ret);
/* Detach one session (audit why); ends the lease if it was the last
 * holder. */
void session_end(struct session *s, const char *why);
/* The same for a session whose process died without closing it: when it
 * was the user's last session, its file is removed (lease_effects). */
void session_end_dead(struct session *s, const char *why);
/* Unhook a session from everything and free it (lease_end does this for
 * every session). */
void session_detach(struct session *s);
/* A session with copies of these strings (each may be NULL) in one
 * allocation; NULL if out of memory. */
struct session *session_new(const char *secret_file, const char *rhost,
    const char *tty, const char *service);
void session_free(struct session *s);
int session_watch(struct session *s);
void audit_detach(const struct session *s, const char *why);
void lease_set_ttl_holder(struct lease *l, int64_t until_ms);
/* The lease lost its last holder: adopt sessions that read its key from
 * a shared file, or end it. */
void holders_gone(struct lease *l, const char *why);
bool lease_held(const struct lease *l);
void file_written(struct lease_core *c, struct lease_user *u,
    const char *path, const char *cred_id, const char *token);
void file_unwritten(struct lease_core *c, struct lease_user *u,
    const char *path, const char *token);
void files_forget_cred(struct lease_core *c, struct lease_user *u,
    const char *cred_id);
struct file_rec *file_rec_new(const char *user, const char *path);
void file_rec_free(struct file_rec *f);
struct session *user_latest_session(struct lease_user *u);
unsigned user_live_sessions(const struct lease_user *u);
void session_row(const struct session *s, struct store_session_row *r,
    const char *boot_id);

/* ---- obtain.c ---- */
/* The principal may obtain again (an intent resolved, a mint finished). */
void principal_ready(struct lease_principal *p);
void intent_reconcile(struct lease_principal *p);
void intent_free(struct intent *in);
void obtains_cancel_all(struct lease_core *c);
/* A lease's renewal waiters may proceed or fail (lease ending). */
void renewal_lease_ended(struct lease *l);

/* ---- metrics (lease.c) ---- */
/* An obtain ended: "ok", "rate_limited", or a failure classified by
 * core_count_mint_failure(). */
void core_count_mint(struct lease_core *c, const char *result);
/* "refused" when the cloud answered no (err's Code, not transient),
 * "failed" otherwise (timeout, transport, the store, memory). */
void core_count_mint_failure(struct lease_core *c,
    const struct kind_error *err);

/* ---- audit lines (one per mint, attach, detach, revoke, denial) ---- */
void core_audit(const char *event, const struct lease *l,
    const struct lease_peer *peer, const char *extra);
void core_audit_principal(const char *event, const struct lease_user *u,
    const struct lease_principal *p, const struct lease_peer *peer,
    const char *extra);

#endif
