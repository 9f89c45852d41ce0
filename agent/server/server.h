/*
 * The agent's socket side: the listener, connections identified by
 * SO_PEERCRED only, the request handlers and their authorisation, the
 * audit of denials, and the status document. It asks the lease core for
 * leases and never touches a lease itself.
 */
#ifndef RAMKEY_SERVER_H
#define RAMKEY_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct evloop;
struct metrics;
struct lease_core;
struct pgp_worker;
struct worker_pool;
struct server;
struct json_object;

/* role_map: the first rule that matches a user gives its role (STS). */
struct server_role_rule {
	bool group;		/* name is a group */
	const char *name;
	const char *arn;	/* template */
};

/* What the server needs of agent.conf. Strings are copied. */
struct server_config {
	const char *socket;
	const uid_t *trusted_uids;
	size_t ntrusted_uids;
	uid_t min_uid;
	const char *allowed_group; /* NULL: anyone */
	gid_t allowed_gid;
	const char *kind;	   /* the credential kind new leases get */
	const char *ram_user;	   /* template (access_key) */
	const char *role_arn;	   /* template (sts), or NULL */
	const struct server_role_rule *role_rules; /* (sts) */
	size_t nrole_rules;
	uint64_t max_ttl;	   /* seconds */
	uint64_t fetch_ttl;
	uint32_t max_connections_per_uid;
	const char *region_id;
	/* set-status and revoke: a burst, then one per this many seconds,
	 * per calling uid */
	uint32_t change_burst;
	uint32_t change_interval_s;
};

/* What the server reports about the cloud, for status and deadlines. */
struct server_health {
	void *arg;
	/* false: the last cloud call failed for a transport or 5xx reason
	 * and none has succeeded since, or the agent has no usable
	 * credential of its own */
	bool (*cloud_ok)(void *arg);
	/* The last cloud error, one line, or NULL. */
	const char *(*last_error)(void *arg, char *buf, size_t len);
	/* Add kind-neutral facts to the status document (JSON object). */
	void (*status_extra)(void *arg, struct json_object *doc);
};

struct server_deps {
	struct evloop *loop;
	struct lease_core *core;
	struct pgp_worker *pgp;
	struct worker_pool *workers;
	struct server_health health;
	/* Rendered for the `metrics` request (trusted callers); NULL: the
	 * request is answered "unavailable". */
	struct metrics *metrics;
};

int server_new(const struct server_deps *deps, const struct server_config *cfg,
    struct server **ret);
/* Listen (or take the socket systemd passed). *errp: why not (malloc'd). */
int server_listen(struct server *s, char **errp);
bool server_socket_activated(const struct server *s);
int server_set_config(struct server *s, const struct server_config *cfg);
/* Stop listening and remove the socket if it is ours. */
void server_close(struct server *s);
/* Free every connection and request (exit). */
void server_free(struct server *s);

#endif
