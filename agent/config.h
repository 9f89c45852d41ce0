/*
 * agent.conf (ramkey-agent.conf(5)): one "key = value" per line, whitespace
 * around "=" and at both ends trimmed, no quoting, "#" or ";" comment
 * lines, an empty value means unset. Unknown keys, duplicates and bad
 * values are errors naming the file, the line and the key.
 */
#ifndef RAMKEY_CONFIG_H
#define RAMKEY_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "ram_client.h"
#include "source.h"

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

/* Where the agent's own credential comes from (credential_source). */
enum credential_source {
	CRED_SOURCE_AUTO = 0,
	CRED_SOURCE_ENV,
	CRED_SOURCE_FILE,
	CRED_SOURCE_ECS_RAM_ROLE,
};

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
	enum credential_source credential_source;
	char *metadata_url;	/* the instance metadata service */
	bool imds_v1;		/* token-less metadata requests allowed */
	bool imds_unrestricted_ok; /* ecs_ram_role without the firewall rule */
	char *sts_endpoint;	/* STS: users' roles (credential = sts) and
				 * a chained role (ram_role_arn) */
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
	char *external_id;
	char *metrics_file;	   /* node_exporter textfile, or NULL */
	uint64_t metrics_interval; /* seconds between rewrites */
	char *sweep_group;	   /* RAM group of the users ramkey serves */
	char *sweep_prefix;	   /* or their common user name prefix */
	uint64_t sweep_min_age;	   /* seconds, at least the floor below */
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

/*
 * The youngest key the fleet sweep may delete: max_ttl + create_timeout +
 * SWEEP_MARGIN_S. A live lease's key is never older than max_ttl plus the
 * time its mint took, so with the fleet's longest max_ttl no live key is
 * that old. sweep_min_age defaults to this and may not be below it.
 */
#define SWEEP_MARGIN_S 600
uint64_t config_sweep_min_age_floor(const struct config *cfg);
/* root, the agent's own user, or the RAMKEY_USER account. */
bool config_owner_ok(uid_t uid);

/*
 * Resolve credential_source into what the agent signs with:
 *   env            ALIBABA_CLOUD_ACCESS_KEY_ID and _SECRET, optionally
 *                  ALIBABA_CLOUD_SECURITY_TOKEN (and, if the issuer said,
 *                  ALIBABA_CLOUD_SECURITY_TOKEN_EXPIRATION, RFC 3339 UTC);
 *   file           cfg->credentials_file, INI, profile [default], type
 *                  access_key, ecs_ram_role (optional role_name) or
 *                  ram_role_arn (access_key_id, access_key_secret,
 *                  role_arn, optional role_session_name, external_id);
 *                  refused if group- or world-readable or -writable, or
 *                  not owned by the agent's user or root;
 *   ecs_ram_role   the instance metadata service at cfg->metadata_url;
 *   auto           env if both variables are set, else file if it
 *                  exists, else ecs_ram_role on Alibaba Cloud hardware
 *                  (DMI sys_vendor), else an error.
 * Nothing is contacted. spec->choice says which source was chosen and
 * which others are present. On error *errp is one malloc'd line that
 * names the file or variable and why.
 */
int source_resolve(const struct config *cfg, struct source_spec **ret,
    char **errp);

/* Is this DMI sys_vendor text Alibaba Cloud's? (For auto; tests.) */
bool config_dmi_is_alibaba(const char *sys_vendor);

/*
 * The files the configuration names and the agent opens, for checking
 * that the agent's account can open them. One line per key in config.c.
 */
struct config_file {
	const char *key;	/* "ca_file" */
	const char *path;
};
#define CONFIG_FILES_MAX 8
size_t config_named_files(const struct config *cfg,
    const struct source_spec *spec, struct config_file *out, size_t max);

/*
 * A warning for a ram_user template whose expansion starts with a
 * user-dependent specifier (%u, %U, %h): the agent's RAM policy must
 * then name every RAM user of the account. Returns false when there is
 * nothing to say.
 */
bool config_ram_user_warning(const struct config *cfg, char *buf,
    size_t len);

#endif
