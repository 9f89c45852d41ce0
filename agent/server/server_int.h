/*
 * The server's own structures: connections and requests. Only the files
 * of this folder see them (the connection layer and the request handlers
 * call each other, as one module).
 */
#ifndef RAMKEY_SERVER_INT_H
#define RAMKEY_SERVER_INT_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

#include "evloop.h"
#include "frame.h"
#include "lease.h"
#include "message.h"
#include "server.h"
#include "worker.h"

struct strmap;
struct pgp_key;
struct pgp_job;
struct request;

/* Per calling uid: connections, request rate, change rate, log rate. */
struct uid_stats {
	uid_t uid;
	uint32_t connections;
	double tokens;		/* request-rate bucket */
	uint64_t last_refill_ms;
	double change_tokens;	/* set-status / revoke bucket */
	uint64_t change_refill_ms;
	uint64_t flood_audit_ms; /* last throttled deny line */
	uint32_t flood_suppressed;
	uint64_t badinput_log_ms; /* last bad-input line */
	uint32_t badinput_suppressed;
	uint64_t deny_audit_ms;	/* last deny line (untrusted callers) */
	uint32_t deny_suppressed;
};

struct conn {
	struct server *srv;
	int fd;
	struct ucred peer;
	bool trusted;
	struct ramkey_frame_reader in; /* the request being read */
	struct ev_timer idle_timer;
	struct request *req;	/* request in progress */
	uint8_t *out;
	size_t out_len, out_off;
	bool dead;		/* peer gone; free once req is done */
	bool want_out;		/* watching EPOLLOUT for a partial write */
	struct conn *next_flush;
	bool queued;
	struct conn *prev, *next; /* all connections */
};

/* The role rules, shared (read-only) with lookups on worker threads. */
struct server_roles {
	unsigned refs;		/* changed on the loop only */
	char *role_arn;
	struct server_role_rule *rules;
	size_t nrules;
};

struct server_cfg {
	char *socket;
	uid_t *trusted_uids;
	size_t ntrusted_uids;
	uid_t min_uid;
	char *allowed_group;
	gid_t allowed_gid;
	char *kind;
	char *ram_user;
	struct server_roles *roles;
	bool sts;		/* kind is sts: principals are roles */
	uint64_t max_ttl;
	uint64_t fetch_ttl;
	uint32_t max_connections_per_uid;
	char *region_id;
	uint32_t change_burst;
	uint32_t change_interval_s;
};

struct server {
	struct evloop *loop;
	struct lease_core *core;
	struct pgp_worker *pgp;
	struct worker_pool *workers;
	struct server_health health;
	struct metrics *metrics;
	struct server_cfg cfg;
	int listen_fd;
	bool socket_activated;
	bool owns_socket_path;
	struct idmap *uids;	/* uid -> uid_stats */
	struct lookup_cache *lookups; /* recent user lookups */
	struct conn *conns;
	struct conn *flush_list;
	struct ev_timer accept_timer; /* resumes accepting after EMFILE */
	uint64_t emfile_logged_at;
};

enum request_wait {
	W_NONE = 0,
	W_LOOKUP,	/* user and group lookups (worker) */
	W_PGP_KEY,	/* validating the PGP key */
	W_LEASE,	/* waiting on the lease core */
	W_COMMIT,	/* waiting for the store to commit */
	W_ENCRYPT,	/* encrypting to the PGP key */
	W_STATUS,	/* set-status at the cloud */
};

typedef void (*authz_fn)(struct request *req);

/* The result of the user lookup, done on a worker thread. */
struct lookup {
	struct worker_task task;	/* first: the pool's part */
	struct request *req;		/* NULL once the request is gone */
	authz_fn fn;
	/* In. */
	uid_t peer_uid;
	bool want_own;			/* resolve the caller's name */
	char *target;			/* NULL: the caller */
	bool for_keys;			/* check the key policy */
	gid_t allowed_gid;
	bool check_group;
	char *ram_user_tmpl;
	struct server_roles *roles;	/* sts: the principal is a role */
	bool no_role;
	/* Out. */
	int rc;
	char why[RAMKEY_MESSAGE_TEXT_MAX];
	char *own;
	char *user;
	uid_t uid;
	gid_t gid;
	char *home;
	bool in_group;
	char *principal;
};

struct request {
	struct server *srv;
	struct conn *conn;	/* its connection */
	struct ramkey_request *msg;
	struct ucred peer;
	bool trusted;
	enum request_wait waiting;
	char *own;		/* the peer's account name, or NULL */
	char *user;		/* resolved target local user */
	uid_t uid;
	gid_t gid;
	char *home;
	char *principal;	/* RAM user or role */
	uint64_t ttl;		/* fetch: TTL holder length, seconds */
	struct pgp_key *pgp;	/* validated PGP key, if any */
	struct pgp_job *job;
	struct lookup *lookup;
	struct lease_wait *wait;
	struct lease_op *op;
	struct lease_grant grant;
	char grant_session[RAMKEY_SESSION_TOKEN_LEN + 1];
	char *grant_file;
	bool granted;
	uint32_t revoked;
	int64_t valid_until;	/* revoke: ended STS tokens valid until */
	bool last_session;
	struct ev_timer deadline; /* the requester's timeout_ms */
};

/* ---- conn.c ---- */
void conn_reply(struct conn *c, struct ramkey_reply *rep);
/* The request on c is over without a reply (its requester is gone). */
void conn_release(struct conn *c);
struct uid_stats *uid_stats_get(struct server *s, uid_t uid);
bool server_uid_trusted(const struct server *s, uid_t uid);
/* A line about bad input from uid: at most one per period per uid,
 * counting those left out. */
void log_bad_input(struct server *s, uid_t uid, pid_t pid,
    const char *fmt, ...) __attribute__((format(printf, 4, 5)));

int conn_new(struct server *s, int fd, const struct ucred *cred);
int conn_setup(struct server *s);
void conns_free_all(struct server *s);

/* ---- listener.c ---- */
void listener_accept(void *arg, int fd, uint32_t events);

/* ---- handlers.c ---- */
void request_dispatch(struct conn *c, struct ramkey_request *msg);
/* The requester hung up before the answer. */
void request_abandon(struct request *req);
/* Free a request without answering it (exit). */
void request_discard(struct request *req);

/* ---- authz.c ---- */
/* Resolve the caller and the target user (on a worker) and check the
 * caller may act for it; for_keys: the key policy too, and the
 * principal. Calls fn when the request may go on; answers the request
 * itself otherwise. */
int authz_start(struct request *req, bool for_keys, authz_fn fn);
void authz_cancel(struct request *req);
bool request_rate_ok(struct request *req);
/* set-status and revoke: a small burst, then a rate per uid. */
bool change_rate_ok(struct request *req, uint64_t *retry_s);
int deny(struct request *req, int err, const char *target,
    const char *fmt, ...) __attribute__((format(printf, 4, 5)));

void server_roles_release(struct server_roles *r);

/* ---- status.c ---- */
struct json_object *status_document(struct server *s, const char *user);
bool server_healthy(struct server *s);

/* ---- flood audit ---- */
void audit_flood_deny(struct uid_stats *u, const char *user,
    const struct ucred *peer, const char *op, const char *reason);

/* Helpers shared by the handlers. */
void request_fail(struct request *req, int err, const char *code,
    const char *fmt, ...) __attribute__((format(printf, 4, 5)));
void request_finish(struct request *req, struct ramkey_reply *rep);

#endif
