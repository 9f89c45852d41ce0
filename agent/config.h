/*
 * agent.conf (ramkey-agent.conf(5)): one "key = value" per line, whitespace around
 * "=" and at both ends trimmed, no quoting, "#" or ";" comment lines, an
 * empty value means unset. Unknown keys, duplicates and bad values are
 * errors naming the file, the line and the key.
 */
#ifndef RAMKEY_CONFIG_H
#define RAMKEY_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "ram_client.h"

enum revoke_mode {
	REVOKE_DELETE = 0,
	REVOKE_DEACTIVATE,
};

/* What a lease holds (credential = ...). */
enum credential_mode {
	CREDENTIAL_ACCESS_KEY = 0, /* RAM CreateAccessKey for ram_user */
	CREDENTIAL_STS,		   /* STS AssumeRole of role_arn / role_map */
};

struct role_map;

struct config {
	char *path; /* the file this came from */
	char *socket;
	char *state_dir;
	char *endpoint;
	char *region_id;
	char *ca_file;
	char *proxy;
	bool allow_http;
	char *credentials_file;
	enum ram_signature signature;
	char *ram_user; /* template */
	uid_t min_uid;
	char *allowed_group;
	gid_t allowed_gid;
	uid_t *trusted_uids;
	size_t ntrusted_uids;
	uint64_t max_ttl;  /* seconds */
	uint64_t fetch_ttl;
	bool fetch_ttl_clamped; /* fetch_ttl was above max_ttl */
	enum revoke_mode revoke;
	uint32_t mint_rate;	   /* mints ... */
	uint64_t mint_rate_period; /* ... per this many seconds */
	char *keybase_url;
	uint32_t max_connections_per_uid;
	uint64_t create_timeout; /* seconds */
	uint64_t update_timeout;
	uint64_t delete_timeout;
	/* STS (fleet mode) */
	enum credential_mode credential;
	char *role_arn;		 /* template, or NULL */
	char *role_map_path;
	struct role_map *role_map;
	char *role_session_name; /* template */
	uint64_t sts_duration;	 /* seconds */
	uint64_t sts_renew_before;
	char *sts_policy_file;
	char *sts_policy;	 /* its text */
	char *sts_endpoint;
	char *external_id;
};

/*
 * Load and validate a configuration file. A missing file is an error only
 * if must_exist (an explicit -c). On error, *errp is a malloc'd one-line
 * message "FILE:LINE: key: problem".
 */
int config_load(const char *path, bool must_exist, struct config **ret,
    char **errp);
void config_free(struct config *cfg);

bool config_uid_trusted(const struct config *cfg, uid_t uid);
/* root, the agent's own user, or the RAMKEY_USER account. */
bool config_owner_ok(uid_t uid);

/* The admin AccessKey. The secret is in sodium_malloc memory. */
struct admin_credentials {
	char *key_id;
	char *secret;
	char *source; /* "environment" or the file path */
};

/*
 * From ALIBABA_CLOUD_ACCESS_KEY_ID/_SECRET if both are set, else from
 * cfg->credentials_file (INI, profile [default], type = access_key),
 * refused if group- or world-readable or -writable, or not owned by the
 * agent's user or root.
 */
int credentials_load(const struct config *cfg, struct admin_credentials **ret,
    char **errp);
void credentials_free(struct admin_credentials *c);

#endif
