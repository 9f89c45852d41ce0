/*
 * The agent's in-memory model (DESIGN §4). Memory is the truth; the lease
 * store (lease_store.c) mirrors it durably, and every change a reply
 * depends on is committed before the reply is written.
 *
 *   struct ram_user_state  one per RAM user: mint serialisation, the
 *                          write-ahead intent, mint_rate window
 *   struct lease           one AccessKey this agent minted
 *   struct session         one PAM session holding a lease
 *   struct conn / request  one client connection and its request
 */
#ifndef RAMKEY_AGENT_H
#define RAMKEY_AGENT_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

#include "config.h"
#include "evloop.h"
#include "message.h"
#include "proc_watch.h"
#include "ram_client.h"

struct lease_store;
struct secret_arena;
struct strmap;
struct pgp_worker;
struct pgp_key;
struct request;
struct mint;

enum lease_state {
	LEASE_LIVE = 0,	  /* usable, held */
	LEASE_REVOKING,	  /* ended; revocation pending at RAM */
	LEASE_PARKED,	  /* revoke = deactivate: Inactive, kept */
};

struct session {
	char token[RAMKEY_SESSION_TOKEN_LEN + 1];
	struct lease *lease;
	struct session *next_in_lease;
	pid_t pid;		/* the process that opened it */
	uint64_t start_time;	/* its start time, clock ticks */
	char boot_id[BOOT_ID_LEN + 1];
	int pidfd;		/* -1 if not watched */
	uid_t peer_uid;
	char *secret_file;
	char *rhost, *tty, *service;
	int64_t opened_ms;	/* wall clock */
	bool stored;		/* a row exists in the store */
};

struct lease {
	uint64_t id;		/* store row id, never reused */
	char *user;		/* local user */
	uid_t uid;
	gid_t gid;
	char *ram_user;
	char key_id[RAM_KEY_ID_MAX + 1];
	char create_date[RAM_DATE_MAX]; /* RAM's CreateDate */
	int64_t create_time;
	int64_t received_ms;	/* wall clock when RAM gave us the key */
	char status[RAM_STATUS_MAX]; /* Active / Inactive */
	enum lease_state state;
	uint32_t secret_slot;	/* 0: secret unknown (agent restarted) */
	char *key_fingerprint;	/* last PGP fingerprint it was handed to */
	struct session *sessions;
	unsigned nsessions;
	int64_t ttl_expires_ms; /* TTL holder; 0 = none */
	struct ev_timer max_ttl_timer;
	struct ev_timer ttl_timer;
	/* revocation */
	struct ev_timer revoke_timer;
	struct ram_call *revoke_call;
	unsigned revoke_attempts;
	bool revoke_deleting;	/* Update done, Delete next */
	/* set-status in flight */
	struct ram_call *status_call;
	struct lease *next_of_user;  /* the user's leases, newest first */
	struct agent *agent;
};

struct intent {
	uint64_t id;
	char *ram_user;
	char *user;
	int64_t started_ms;
	char **snapshot;	/* key ids present before the mint */
	size_t nsnapshot;
	bool create_sent;	/* CreateAccessKey may have reached RAM */
	/*
	 * A try sent before this time may still be carried out by RAM:
	 * until then, "no new key yet" is not an answer (memory only; after
	 * a restart it counts from the start).
	 */
	int64_t settle_until_ms;
};

/* How long a CreateAccessKey try may still land after we stop waiting
 * for it: one try's limit plus RAM's one-second dates and some slack. */
#define INTENT_SETTLE_MS (RAM_TRY_MAX_MS + 3000)

/* Which key was written last to a secret file path (see file_written). */
struct file_rec {
	struct file_rec *next;
	char *path;
	char key_id[RAM_KEY_ID_MAX + 1];
	char token[RAMKEY_SESSION_TOKEN_LEN + 1]; /* writer session, or "" */
};

/* Per local user: their leases, an in-flight mint, their files. */
struct user_state {
	char *name;
	struct lease *leases;	/* newest first */
	struct mint *mint;	/* single-flight */
	struct file_rec *files;
};

/* Per RAM user: mints are serialised, and none starts while an intent is
 * unresolved. */
struct ram_user_state {
	struct agent *agent;
	char *name;
	struct mint *queue;	/* mints waiting for their turn */
	struct mint *running;
	struct intent *intent;	/* unresolved (recovered after a crash) */
	bool reconciling;
	struct ram_call *reconcile_call;
	struct ev_timer reconcile_timer;
	int64_t *mint_times;	/* ring of recent mint times (ms) */
	uint32_t nmint_times;
	uint32_t mint_head;
};

struct uid_stats {
	uid_t uid;
	uint32_t connections;
	double tokens;		/* request-rate bucket */
	uint64_t last_refill_ms;
	uint64_t flood_audit_ms; /* last throttled deny line */
	uint32_t flood_suppressed;
};

struct conn {
	struct agent *agent;
	int fd;
	struct ucred peer;
	bool trusted;
	char *peer_name;	/* account name of peer.uid, or NULL */
	uint8_t hdr[4];
	size_t hdr_have;
	uint8_t *body;
	size_t body_len, body_have;
	struct ev_timer idle_timer;
	struct request *req;	/* request in progress */
	uint8_t *out;
	size_t out_len, out_off;
	bool dead;		/* peer gone; free once req is done */
	bool want_out;		/* watching EPOLLOUT for a partial write */
	bool close_after_write;
	struct conn *next_flush;
	bool queued;
	struct conn *prev, *next; /* all connections */
};

struct agent {
	struct config *cfg;
	struct evloop *loop;
	struct ram_client *ram;
	struct lease_store *store;
	struct secret_arena *arena;
	struct pgp_worker *pgp;
	int listen_fd;
	bool socket_activated;
	bool owns_socket_path;
	char boot_id[BOOT_ID_LEN + 1];
	struct strmap *users;	  /* local user name -> user_state */
	struct strmap *ram_users; /* RAM user name -> ram_user_state */
	struct strmap *leases;	  /* key id -> lease */
	struct strmap *sessions;  /* token -> session */
	struct strmap *uids;	  /* "uid" -> uid_stats */
	struct strmap *ambiguous; /* key id -> RAM user name (strdup) */
	uint64_t next_lease_id;
	uint64_t next_intent_id;
	struct conn *flush_list;
	struct conn *conns;
	bool stopping;
	int signal_fd;
	unsigned pending_revocations;
	struct ev_timer accept_timer; /* resumes accepting after EMFILE */
	uint64_t emfile_logged_at;
	struct ev_timer store_timer;  /* retries a broken store */
};

/* ---- lease lifecycle: leases.c ---- */
struct user_state *agent_user(struct agent *a, const char *name);
struct ram_user_state *agent_ram_user(struct agent *a, const char *name);
struct lease *lease_new(struct agent *a, const char *user, uid_t uid,
    gid_t gid, const char *ram_user);
void lease_link(struct agent *a, struct lease *l);
/* The newest live lease of a user, or NULL. */
struct lease *user_newest_live_lease(struct agent *a, const char *user);
bool lease_usable(struct agent *a, const struct lease *l);
bool lease_past_rotation(struct agent *a, const struct lease *l);
int64_t lease_expires_ms(struct agent *a, const struct lease *l);
void lease_arm_timers(struct agent *a, struct lease *l);
int session_attach(struct agent *a, struct lease *l,
    const struct request *req, struct session **ret);
/* Detach one session; ends the lease if it was the last holder. */
void session_end(struct agent *a, struct session *s, const char *why);
/* The same for a session whose process died without closing it: also
 * removes its secret file if it was the user's last session. */
void session_end_dead(struct agent *a, struct session *s, const char *why);
void lease_set_ttl_holder(struct agent *a, struct lease *l, int64_t until_ms);
/* End a lease now: detach every holder, wipe the secret, revoke. */
void lease_end(struct agent *a, struct lease *l, const char *why);
/* Forget a lease entirely (after RAM confirmed its revocation). */
void lease_forget(struct agent *a, struct lease *l);
void lease_free(struct lease *l);
void session_free(struct session *s);
unsigned user_pam_sessions(struct agent *a, const char *user);
struct session *user_latest_session(struct agent *a, const char *user);
int session_watch(struct agent *a, struct session *s);

/*
 * Secret files shared by several sessions of a user (one user, one file):
 * the agent remembers which key was written last to each path. When that
 * key's lease loses its last holder while other live sessions of the user
 * use the same path, they read that key now: they move to its lease, and
 * the lease they held before ends instead.
 */
void file_written(struct agent *a, const char *user, const char *path,
    const char *key_id, const char *token);
/* The writer never wrote it (PAM close with "aborted"). */
void file_unwritten(struct agent *a, const char *user, const char *path,
    const char *token);
void file_rec_free(struct file_rec *f);

/* ---- revocation: revoke.c ---- */
void revoke_start(struct agent *a, struct lease *l);
/* A key that must go but has no lease (a lost mint found by
 * reconciliation): record it as a pending revocation and revoke it. */
void revoke_orphan_key(struct agent *a, const char *user,
    const char *ram_user, const char *key_id, const char *create_date);
/* revoke = deactivate: delete a parked key to free its slot. */
void revoke_parked(struct agent *a, struct lease *l);

/* ---- minting: mint.c ---- */
int mint_request(struct agent *a, struct request *req);
void mint_requester_gone(struct agent *a, struct request *req);
void mint_ram_user_ready(struct agent *a, struct ram_user_state *rs);
bool mint_rate_exceeded(struct agent *a, struct ram_user_state *rs);
void intent_free(struct intent *in);
/* At exit: free every mint and intent (RAM calls already cancelled). */
void mints_free_all(struct agent *a);

/* ---- recovery: recovery.c ---- */
int recovery_load(struct agent *a);
void reconcile_intent(struct agent *a, struct ram_user_state *rs);
void clear_gone_ambiguous(struct agent *a, const char *ram_user,
    const struct ram_result *res);

/* ---- connections: conn.c ---- */
int listener_open(struct agent *a, char **errp);
void listener_close(struct agent *a);
void conn_reply(struct conn *c, struct ramkey_reply *rep);
/* At exit: free every connection and its request. */
void conns_free_all(struct agent *a);
void agent_flush(void *arg);
void agent_store_retry(void *arg);

/* ---- requests: handlers.c ---- */
enum request_wait {
	W_NONE = 0,
	W_PGP_KEY,	/* validating the PGP key */
	W_MINT,		/* waiting on a mint */
	W_COMMIT,	/* waiting for the store to commit */
	W_ENCRYPT,	/* encrypting to the PGP key */
	W_RAM,		/* set-status: UpdateAccessKey in flight */
};

struct request {
	struct agent *agent;
	struct conn *conn;	/* its connection (maybe dead) */
	struct ramkey_request *msg;
	struct ucred peer;
	bool trusted;
	bool gone;		/* the requester hung up */
	enum request_wait waiting;
	char *own;		/* the peer's account name, or NULL */
	char *user;		/* resolved target local user */
	uid_t uid;
	gid_t gid;
	char *home;
	char *ram_user;
	uint64_t ttl;		/* fetch: TTL holder length, seconds */
	struct pgp_key *pgp;	/* validated PGP key, if any */
	struct pgp_job *job;
	struct mint *mint;	/* waiting on this mint */
	struct request *next_waiter;
	struct lease *lease;	/* the lease handed out */
	struct session *session;/* open_session: the new session */
	bool minted;		/* the lease was minted for this request */
	int64_t old_ttl_expires;/* fetch: to undo a TTL holder change */
	bool last_session;	/* close_session */
	uint32_t revoked;	/* revoke */
	struct ev_timer deadline; /* the requester's timeout_ms */
};
void request_dispatch(struct conn *c, struct ramkey_request *msg);
/* The requester hung up before the answer. */
void request_abandon(struct request *req);
/* Called by mint.c when a waiting request's lease is ready. */
void request_lease_ready(struct request *req, struct lease *l);
void request_fail(struct request *req, int err, const char *ram_code,
    const char *fmt, ...) __attribute__((format(printf, 4, 5)));
/* Free a request without answering it (agent exit). */
void request_discard(struct request *req);
/* The request on c is over without a reply (its requester is gone). */
void conn_release(struct conn *c);

/* ---- status: status.c ---- */
struct json_object *status_document(struct agent *a, const char *user);
bool agent_healthy(struct agent *a);

/* ---- audit ---- */
/* Log the fix for a clock-skew refusal from RAM (throttled). */
void ram_error_clock_hint(const struct ram_error *err);
/*
 * A deny line for a flood (request rate, connection limit): at most one per
 * uid every few seconds, counting those left out, so a flood cannot flood
 * the log too.
 */
void audit_flood_deny(struct uid_stats *u, const char *user,
    const struct ucred *peer, const char *op, const char *reason);
void audit(const char *event, const char *user, const char *ram_user,
    const char *key_id, const struct ucred *peer, const char *rhost,
    const char *tty, const char *extra);

/* Helpers */
int64_t wall_ms(void);
uint64_t wall_to_mono(int64_t wall_ms_value);

#endif
