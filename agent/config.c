#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <json-c/json.h>
#include <sodium.h>

#include "config.h"
#include "imds.h"
#include "duration.h"
#include "ramkey_err.h"
#include "role_map.h"
#include "template.h"
#include "util.h"

#define LINE_MAX_LEN 4096
#define CRED_FILE_MAX (64 * 1024)

enum key_id {
	K_SOCKET,
	K_STATE_DIR,
	K_ENDPOINT,
	K_REGION_ID,
	K_CA_FILE,
	K_PROXY,
	K_ALLOW_HTTP,
	K_CREDENTIALS_FILE,
	K_CREDENTIAL_SOURCE,
	K_METADATA_URL,
	K_IMDS_V1,
	K_IMDS_UNRESTRICTED_OK,
	K_STS_ENDPOINT,
	K_SIGNATURE,
	K_RAM_USER,
	K_MIN_UID,
	K_ALLOWED_GROUP,
	K_TRUSTED_UIDS,
	K_MAX_TTL,
	K_FETCH_TTL,
	K_REVOKE,
	K_MINT_RATE,
	K_KEYBASE_URL,
	K_MAX_CONN,
	K_CREATE_TIMEOUT,
	K_UPDATE_TIMEOUT,
	K_DELETE_TIMEOUT,
	K_CREDENTIAL,
	K_ROLE_ARN,
	K_ROLE_MAP,
	K_ROLE_SESSION_NAME,
	K_STS_DURATION,
	K_STS_RENEW_BEFORE,
	K_STS_POLICY_FILE,
	K_EXTERNAL_ID,
	K_METRICS_FILE,
	K_METRICS_INTERVAL,
	K_SWEEP_GROUP,
	K_SWEEP_PREFIX,
	K_SWEEP_MIN_AGE,
	K_COUNT
};

static const char *const key_names[K_COUNT] = {
	[K_SOCKET] = "socket",
	[K_STATE_DIR] = "state_dir",
	[K_ENDPOINT] = "endpoint",
	[K_REGION_ID] = "region_id",
	[K_CA_FILE] = "ca_file",
	[K_PROXY] = "proxy",
	[K_ALLOW_HTTP] = "allow_http",
	[K_CREDENTIALS_FILE] = "credentials_file",
	[K_CREDENTIAL_SOURCE] = "credential_source",
	[K_METADATA_URL] = "metadata_url",
	[K_IMDS_V1] = "imds_v1",
	[K_IMDS_UNRESTRICTED_OK] = "imds_unrestricted_ok",
	[K_STS_ENDPOINT] = "sts_endpoint",
	[K_SIGNATURE] = "signature",
	[K_RAM_USER] = "ram_user",
	[K_MIN_UID] = "min_uid",
	[K_ALLOWED_GROUP] = "allowed_group",
	[K_TRUSTED_UIDS] = "trusted_uids",
	[K_MAX_TTL] = "max_ttl",
	[K_FETCH_TTL] = "fetch_ttl",
	[K_REVOKE] = "revoke",
	[K_MINT_RATE] = "mint_rate",
	[K_KEYBASE_URL] = "keybase_url",
	[K_MAX_CONN] = "max_connections_per_uid",
	[K_CREATE_TIMEOUT] = "create_timeout",
	[K_UPDATE_TIMEOUT] = "update_timeout",
	[K_DELETE_TIMEOUT] = "delete_timeout",
	[K_CREDENTIAL] = "credential",
	[K_ROLE_ARN] = "role_arn",
	[K_ROLE_MAP] = "role_map",
	[K_ROLE_SESSION_NAME] = "role_session_name",
	[K_STS_DURATION] = "sts_duration",
	[K_STS_RENEW_BEFORE] = "sts_renew_before",
	[K_STS_POLICY_FILE] = "sts_policy_file",
	[K_EXTERNAL_ID] = "external_id",
	[K_METRICS_FILE] = "metrics_file",
	[K_METRICS_INTERVAL] = "metrics_interval",
	[K_SWEEP_GROUP] = "sweep_group",
	[K_SWEEP_PREFIX] = "sweep_prefix",
	[K_SWEEP_MIN_AGE] = "sweep_min_age",
};

static int fail(char **errp, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static int fail(char **errp, const char *fmt, ...)
{
	char buf[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (errp != NULL)
		*errp = strdup(buf);
	return RAMKEY_ERR_CONFIG;
}

/*
 * Who may own the files that decide who gets keys: root, the agent's own
 * user, and the RAMKEY_USER account (the check runs as root before the
 * unprivileged agent starts, and must accept what that agent will).
 */
bool config_owner_ok(uid_t uid)
{
	struct passwd *pw;

	if (uid == 0 || uid == geteuid())
		return true;
	pw = getpwnam(RAMKEY_USER);
	return pw != NULL && pw->pw_uid == uid;
}

static int set_str(char **dst, const char *v)
{
	char *s = strdup(v);

	if (s == NULL)
		return RAMKEY_ERR_NOMEM;
	free(*dst);
	*dst = s;
	return 0;
}

static int defaults(struct config *c)
{
	if (set_str(&c->socket, RAMKEY_DEFAULT_SOCKET) ||
	    set_str(&c->state_dir, "/var/lib/ramkey") ||
	    set_str(&c->endpoint, "https://ram.aliyuncs.com") ||
	    set_str(&c->region_id, "cn-hangzhou") ||
	    set_str(&c->credentials_file, "/etc/ramkey/credentials") ||
	    set_str(&c->metadata_url, IMDS_DEFAULT_URL) ||
	    set_str(&c->sts_endpoint, "https://sts.aliyuncs.com") ||
	    set_str(&c->ram_user, "%u") ||
	    set_str(&c->keybase_url, "https://keybase.io") ||
	    set_str(&c->role_session_name, "%u@%H"))
		return RAMKEY_ERR_NOMEM;
	c->credential = CREDENTIAL_ACCESS_KEY;
	c->sts_duration = 3600;
	c->sts_renew_before = 20 * 60;
	c->signature = RAM_SIG_V3;
	c->min_uid = 1000;
	if ((c->trusted_uids = calloc(1, sizeof(uid_t))) == NULL)
		return RAMKEY_ERR_NOMEM;
	c->trusted_uids[0] = 0;
	c->ntrusted_uids = 1;
	c->max_ttl = 12 * 3600;
	c->fetch_ttl = 3600;
	c->revoke = REVOKE_DELETE;
	c->mint_rate = 20;
	c->mint_rate_period = 3600;
	c->max_connections_per_uid = 64;
	c->create_timeout = c->update_timeout = c->delete_timeout = 300;
	c->metrics_interval = 15;
	return 0;
}

void config_free(struct config *c)
{
	if (c == NULL)
		return;
	free(c->path);
	free(c->socket);
	free(c->state_dir);
	free(c->endpoint);
	free(c->region_id);
	free(c->ca_file);
	free(c->proxy);
	free(c->credentials_file);
	free(c->metadata_url);
	free(c->sts_endpoint);
	free(c->ram_user);
	free(c->allowed_group);
	free(c->trusted_uids);
	free(c->keybase_url);
	free(c->role_arn);
	free(c->role_map_path);
	role_map_free(c->role_map);
	free(c->role_session_name);
	free(c->sts_policy_file);
	free(c->sts_policy);
	free(c->external_id);
	free(c->metrics_file);
	free(c->sweep_group);
	free(c->sweep_prefix);
	free(c);
}

uint64_t config_sweep_min_age_floor(const struct config *cfg)
{
	return cfg->max_ttl + cfg->create_timeout + SWEEP_MARGIN_S;
}

bool config_uid_trusted(const struct config *cfg, uid_t uid)
{
	size_t i;

	for (i = 0; i < cfg->ntrusted_uids; i++)
		if (cfg->trusted_uids[i] == uid)
			return true;
	return false;
}

static char *trim(char *s)
{
	char *e;

	while (isspace((unsigned char)*s))
		s++;
	e = s + strlen(s);
	while (e > s && isspace((unsigned char)e[-1]))
		*--e = '\0';
	return s;
}

static int parse_uint(const char *v, unsigned long long max,
    unsigned long long *out)
{
	unsigned long long x;
	char *end;

	if (!isdigit((unsigned char)v[0]))
		return -1;
	errno = 0;
	x = strtoull(v, &end, 10);
	if (errno != 0 || *end != '\0' || x > max)
		return -1;
	*out = x;
	return 0;
}

static int parse_bool(const char *v, bool *out)
{
	if (!strcmp(v, "yes") || !strcmp(v, "true") || !strcmp(v, "on") ||
	    !strcmp(v, "1")) {
		*out = true;
		return 0;
	}
	if (!strcmp(v, "no") || !strcmp(v, "false") || !strcmp(v, "off") ||
	    !strcmp(v, "0")) {
		*out = false;
		return 0;
	}
	return -1;
}

static bool valid_url(const char *v)
{
	const char *host;

	if (strncmp(v, "https://", 8) == 0)
		host = v + 8;
	else if (strncmp(v, "http://", 7) == 0)
		host = v + 7;
	else
		return false;
	if (*host == '\0' || *host == '/')
		return false;
	for (; *v != '\0'; v++)
		if ((unsigned char)*v <= 0x20 || *v == 0x7f)
			return false;
	return true;
}

static int parse_ttl(const char *v, uint64_t *out, const char **why)
{
	if (ramkey_duration_parse(v, out) != 0) {
		*why = "not a duration (examples: 90, 30m, 1h30m, 2d)";
		return -1;
	}
	if (*out == 0) {
		*why = "must be longer than zero";
		return -1;
	}
	return 0;
}

static int parse_uid_list(struct config *c, char *v, const char **why)
{
	uid_t *list = NULL;
	size_t n = 0;
	char *save = NULL, *tok;

	for (tok = strtok_r(v, ",", &save); tok != NULL;
	    tok = strtok_r(NULL, ",", &save)) {
		unsigned long long x;
		uid_t *nl;

		tok = trim(tok);
		if (*tok == '\0')
			continue;
		if (parse_uint(tok, 0xfffffffeULL, &x) != 0) {
			struct passwd *pw = getpwnam(tok);

			if (pw == NULL) {
				*why = "not a uid or a known user name";
				free(list);
				return -1;
			}
			x = pw->pw_uid;
		}
		if ((nl = realloc(list, (n + 1) * sizeof(*nl))) == NULL) {
			free(list);
			*why = "out of memory";
			return -1;
		}
		list = nl;
		list[n++] = (uid_t)x;
	}
	free(c->trusted_uids);
	c->trusted_uids = list;
	c->ntrusted_uids = n;
	return 0;
}

static int parse_rate(struct config *c, const char *v, const char **why)
{
	char buf[64], *slash;
	unsigned long long n;
	uint64_t per;

	if (strlen(v) >= sizeof(buf)) {
		*why = "too long; expected COUNT/PERIOD, e.g. 20/h";
		return -1;
	}
	snprintf(buf, sizeof(buf), "%s", v);
	if ((slash = strchr(buf, '/')) == NULL) {
		*why = "expected COUNT/PERIOD, e.g. 20/h";
		return -1;
	}
	*slash = '\0';
	if (parse_uint(trim(buf), 1000000, &n) != 0 || n == 0) {
		*why = "the count must be a whole number above zero";
		return -1;
	}
	/* "/h" means per hour: a bare unit is one of it. */
	{
		char period[64];
		const char *p = trim(slash + 1);

		if (*p != '\0' && !isdigit((unsigned char)*p)) {
			snprintf(period, sizeof(period), "1%s", p);
			p = period;
		}
		if (parse_ttl(p, &per, why) != 0)
			return -1;
	}
	c->mint_rate = (uint32_t)n;
	c->mint_rate_period = per;
	return 0;
}

/* Apply one key; on failure *why says what is wrong with the value. */
static int apply(struct config *c, enum key_id k, char *v, const char **why)
{
	unsigned long long x;
	int r = 0;

	switch (k) {
	case K_SOCKET:
	case K_STATE_DIR:
	case K_CA_FILE:
	case K_CREDENTIALS_FILE:
	case K_METRICS_FILE:
		if (v[0] != '/' || strlen(v) >= PATH_MAX) {
			*why = "must be an absolute path";
			return -1;
		}
		if (k == K_METRICS_FILE) {
			if (v[strlen(v) - 1] == '/') {
				*why = "must name a file, not a directory";
				return -1;
			}
			r = set_str(&c->metrics_file, v);
			break;
		}
		if (k == K_SOCKET && strlen(v) >= 108) {
			*why = "socket path is longer than 107 bytes";
			return -1;
		}
		r = set_str(k == K_SOCKET ? &c->socket :
		    k == K_STATE_DIR ? &c->state_dir :
		    k == K_CA_FILE ? &c->ca_file : &c->credentials_file, v);
		break;
	case K_ENDPOINT:
	case K_KEYBASE_URL:
	case K_PROXY:
	case K_STS_ENDPOINT:
		if (!valid_url(v)) {
			*why = "must be an http:// or https:// URL";
			return -1;
		}
		r = set_str(k == K_ENDPOINT ? &c->endpoint :
		    k == K_KEYBASE_URL ? &c->keybase_url :
		    k == K_STS_ENDPOINT ? &c->sts_endpoint : &c->proxy, v);
		break;
	case K_METADATA_URL: {
		char *host = NULL;
		unsigned port;

		if (!valid_url(v) || imds_url_parse(v, &host, &port) != 0) {
			*why = "must be a plain http://HOST[:PORT] URL without "
			    "a path (the metadata service speaks plain HTTP)";
			return -1;
		}
		free(host);
		r = set_str(&c->metadata_url, v);
		break;
	}
	case K_CREDENTIAL_SOURCE:
		if (strcmp(v, "auto") == 0)
			c->credential_source = CRED_SOURCE_AUTO;
		else if (strcmp(v, "env") == 0)
			c->credential_source = CRED_SOURCE_ENV;
		else if (strcmp(v, "file") == 0)
			c->credential_source = CRED_SOURCE_FILE;
		else if (strcmp(v, "ecs_ram_role") == 0)
			c->credential_source = CRED_SOURCE_ECS_RAM_ROLE;
		else {
			*why = "must be auto, env, file or ecs_ram_role";
			return -1;
		}
		break;
	case K_IMDS_V1:
	case K_IMDS_UNRESTRICTED_OK:
		if (parse_bool(v, k == K_IMDS_V1 ? &c->imds_v1 :
		    &c->imds_unrestricted_ok) != 0) {
			*why = "must be yes or no";
			return -1;
		}
		break;
	case K_REGION_ID:
		for (const char *p = v; *p != '\0'; p++)
			if (!islower((unsigned char)*p) &&
			    !isdigit((unsigned char)*p) && *p != '-') {
				*why = "must look like cn-hangzhou";
				return -1;
			}
		r = set_str(&c->region_id, v);
		break;
	case K_ALLOW_HTTP:
		if (parse_bool(v, &c->allow_http) != 0) {
			*why = "must be yes or no";
			return -1;
		}
		break;
	case K_SIGNATURE:
		if (strcmp(v, "v3") == 0)
			c->signature = RAM_SIG_V3;
		else if (strcmp(v, "v1") == 0)
			c->signature = RAM_SIG_V1;
		else {
			*why = "must be v3 or v1";
			return -1;
		}
		break;
	case K_RAM_USER:
		if (ramkey_template_check(v, 0, why) != 0)
			return -1;
		r = set_str(&c->ram_user, v);
		break;
	case K_MIN_UID:
		if (parse_uint(v, 0xfffffffeULL, &x) != 0) {
			*why = "must be a uid";
			return -1;
		}
		if (x == 0) {
			*why = "must be at least 1 (root never gets keys)";
			return -1;
		}
		c->min_uid = (uid_t)x;
		break;
	case K_ALLOWED_GROUP: {
		struct group *g = getgrnam(v);

		if (g == NULL) {
			*why = "no such group";
			return -1;
		}
		c->allowed_gid = g->gr_gid;
		r = set_str(&c->allowed_group, v);
		break;
	}
	case K_TRUSTED_UIDS:
		if (parse_uid_list(c, v, why) != 0)
			return -1;
		break;
	case K_MAX_TTL:
		return parse_ttl(v, &c->max_ttl, why);
	case K_FETCH_TTL:
		return parse_ttl(v, &c->fetch_ttl, why);
	case K_REVOKE:
		if (strcmp(v, "delete") == 0)
			c->revoke = REVOKE_DELETE;
		else if (strcmp(v, "deactivate") == 0)
			c->revoke = REVOKE_DEACTIVATE;
		else {
			*why = "must be delete or deactivate";
			return -1;
		}
		break;
	case K_MINT_RATE:
		return parse_rate(c, v, why);
	case K_MAX_CONN:
		if (parse_uint(v, 100000, &x) != 0 || x == 0) {
			*why = "must be a whole number above zero";
			return -1;
		}
		c->max_connections_per_uid = (uint32_t)x;
		break;
	case K_CREDENTIAL:
		if (strcmp(v, "access_key") == 0)
			c->credential = CREDENTIAL_ACCESS_KEY;
		else if (strcmp(v, "sts") == 0)
			c->credential = CREDENTIAL_STS;
		else {
			*why = "must be access_key or sts";
			return -1;
		}
		break;
	case K_ROLE_ARN:
		if (!role_arn_template_ok(v)) {
			*why = "must be a role ARN, acs:ram::<account id>:role/"
			    "<name> (the name may use %u, %U, %h, %H)";
			return -1;
		}
		r = set_str(&c->role_arn, v);
		break;
	case K_ROLE_MAP:
	case K_STS_POLICY_FILE:
		if (v[0] != '/' || strlen(v) >= PATH_MAX) {
			*why = "must be an absolute path";
			return -1;
		}
		r = set_str(k == K_ROLE_MAP ? &c->role_map_path :
		    &c->sts_policy_file, v);
		break;
	case K_ROLE_SESSION_NAME:
		if (ramkey_template_check(v, 0, why) != 0)
			return -1;
		r = set_str(&c->role_session_name, v);
		break;
	case K_STS_DURATION:
		if (parse_ttl(v, &c->sts_duration, why) != 0)
			return -1;
		if (c->sts_duration < 900 || c->sts_duration > 43200) {
			*why = "must be from 15m to 12h (STS's limits)";
			return -1;
		}
		break;
	case K_STS_RENEW_BEFORE:
		return parse_ttl(v, &c->sts_renew_before, why);
	case K_EXTERNAL_ID: {
		size_t n = strlen(v);

		if (n < 2 || n > 1224 || strspn(v, "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
		    "abcdefghijklmnopqrstuvwxyz0123456789_+=,.@:/-") != n) {
			*why = "must be 2-1224 of A-Za-z0-9_+=,.@:/-";
			return -1;
		}
		r = set_str(&c->external_id, v);
		break;
	}
	case K_CREATE_TIMEOUT:
		return parse_ttl(v, &c->create_timeout, why);
	case K_UPDATE_TIMEOUT:
		return parse_ttl(v, &c->update_timeout, why);
	case K_DELETE_TIMEOUT:
		return parse_ttl(v, &c->delete_timeout, why);
	case K_METRICS_INTERVAL:
		return parse_ttl(v, &c->metrics_interval, why);
	case K_SWEEP_GROUP:
	case K_SWEEP_PREFIX:
		/* RAM's rule for user and group names. */
		if (!ramkey_valid_ram_user(v)) {
			*why = "must be 1-64 of A-Za-z0-9._- (a RAM name)";
			return -1;
		}
		r = set_str(k == K_SWEEP_GROUP ? &c->sweep_group :
		    &c->sweep_prefix, v);
		break;
	case K_SWEEP_MIN_AGE:
		return parse_ttl(v, &c->sweep_min_age, why);
	default:
		*why = "internal error";
		return -1;
	}
	if (r != 0) {
		*why = "out of memory";
		return -1;
	}
	return 0;
}

/* The STS files agent.conf names: the role map and the session policy. */
static int sts_files(struct config *c, const unsigned *lines, char **errp)
{
	struct json_object *o;
	char *buf = NULL, *why = NULL;
	size_t have = 0;
	struct stat st;
	ssize_t n;
	int fd, r;

	/* Its own errors name the role map; say which line named it. */
	if (c->role_map_path != NULL &&
	    role_map_load(c->role_map_path, &c->role_map, &why) != 0) {
		r = fail(errp, "%s:%u: role_map: %s", c->path,
		    lines[K_ROLE_MAP], why != NULL ? why : "out of memory");
		free(why);
		return r;
	}
	if (c->sts_policy_file == NULL)
		return 0;
	if ((fd = open(c->sts_policy_file, O_RDONLY | O_CLOEXEC | O_NOCTTY |
	    O_NONBLOCK)) < 0)
		return fail(errp, "%s:%u: sts_policy_file: cannot open %s: %s",
		    c->path, lines[K_STS_POLICY_FILE], c->sts_policy_file,
		    strerror(errno));
	r = RAMKEY_ERR_CONFIG;
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size <= 0 ||
	    st.st_size > 2048) {
		fail(errp, "%s:%u: sts_policy_file: %s must be a regular file "
		    "of 1 to 2048 characters (STS's limit)", c->path,
		    lines[K_STS_POLICY_FILE], c->sts_policy_file);
		goto out;
	}
	if ((buf = calloc(1, (size_t)st.st_size + 1)) == NULL) {
		r = fail(errp, "out of memory");
		goto out;
	}
	while (have < (size_t)st.st_size &&
	    (n = read(fd, buf + have, (size_t)st.st_size - have)) > 0)
		have += (size_t)n;
	if ((o = json_tokener_parse(buf)) == NULL ||
	    !json_object_is_type(o, json_type_object)) {
		json_object_put(o);
		fail(errp, "%s:%u: sts_policy_file: %s is not a JSON policy "
		    "document", c->path, lines[K_STS_POLICY_FILE],
		    c->sts_policy_file);
		goto out;
	}
	json_object_put(o);
	c->sts_policy = buf;
	buf = NULL;
	r = 0;
out:
	free(buf);
	close(fd);
	return r;
}

/* Checks that involve more than one key; lines[k] is where key k was
 * given (the defaults never fail these checks). */
static int cross_check(struct config *c, const unsigned *lines, char **errp)
{
	uint64_t floor;

	if (strncmp(c->endpoint, "http://", 7) == 0 && !c->allow_http)
		return fail(errp, "%s:%u: endpoint: plain http:// needs "
		    "allow_http = yes (use https:// in production)", c->path,
		    lines[K_ENDPOINT]);
	if (strncmp(c->keybase_url, "http://", 7) == 0 && !c->allow_http)
		return fail(errp, "%s:%u: keybase_url: plain http:// needs "
		    "allow_http = yes", c->path, lines[K_KEYBASE_URL]);
	if (strncmp(c->sts_endpoint, "http://", 7) == 0 && !c->allow_http)
		return fail(errp, "%s:%u: sts_endpoint: plain http:// needs "
		    "allow_http = yes (use https:// in production)", c->path,
		    lines[K_STS_ENDPOINT]);
	if (c->fetch_ttl > c->max_ttl) {
		c->fetch_ttl = c->max_ttl;
		c->fetch_ttl_clamped = true;
	}
	if (c->ntrusted_uids == 0)
		return fail(errp, "%s:%u: trusted_uids: the list is empty; the "
		    "PAM module runs as root, so list at least 0", c->path,
		    lines[K_TRUSTED_UIDS]);
	if (c->sts_renew_before * 2 >= c->sts_duration)
		return fail(errp, "%s:%u: sts_renew_before: must be under half "
		    "of sts_duration (%llu s)", c->path,
		    lines[K_STS_RENEW_BEFORE] ? lines[K_STS_RENEW_BEFORE] :
		    lines[K_STS_DURATION],
		    (unsigned long long)c->sts_duration);
	if (c->credential == CREDENTIAL_STS && c->role_arn == NULL &&
	    c->role_map_path == NULL)
		return fail(errp, "%s:%u: credential: sts needs role_arn or "
		    "role_map (which role each user assumes)", c->path,
		    lines[K_CREDENTIAL]);
	/* A key younger than the bound may belong to a live lease. */
	floor = config_sweep_min_age_floor(c);
	if (c->sweep_min_age == 0) {
		c->sweep_min_age = floor;
	} else if (c->sweep_min_age < floor) {
		char have[32], bound[32];

		ramkey_duration_format(c->sweep_min_age, have, sizeof(have));
		ramkey_duration_format(floor, bound, sizeof(bound));
		return fail(errp, "%s:%u: sweep_min_age: %s is below %s, the "
		    "youngest a key of no live lease can be (max_ttl + "
		    "create_timeout + 10m); set it to %s or more, or leave it "
		    "unset", c->path, lines[K_SWEEP_MIN_AGE], have, bound,
		    bound);
	}
	return sts_files(c, lines, errp);
}

int config_load(const char *path, bool must_exist, struct config **ret,
    char **errp)
{
	struct config *c = NULL;
	unsigned seen[K_COUNT] = { 0 }; /* the line a key was given on */
	char *line = NULL;
	size_t cap = 0;
	FILE *f = NULL;
	unsigned lineno = 0;
	int r;

	*ret = NULL;
	if (errp != NULL)
		*errp = NULL;
	if ((c = calloc(1, sizeof(*c))) == NULL ||
	    (c->path = strdup(path)) == NULL || defaults(c) != 0) {
		config_free(c);
		return fail(errp, "out of memory");
	}
	if ((f = fopen(path, "re")) == NULL) {
		if (errno == ENOENT && !must_exist)
			goto done;
		r = fail(errp, "%s: cannot open: %s", path, strerror(errno));
		goto out;
	}
	/* It decides who is trusted and where keys come from: only root or
	 * the agent's user may be able to change it. */
	{
		struct stat st;

		if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
			r = fail(errp, "%s: not a regular file", path);
			goto out;
		}
		if (!config_owner_ok(st.st_uid) ||
		    (st.st_mode & 0022) != 0) {
			r = fail(errp, "%s: must belong to root or the agent's "
			    "user and not be writable by group or others "
			    "(chmod go-w %s)", path, path);
			goto out;
		}
	}
	for (;;) {
		ssize_t n = getline(&line, &cap, f);
		char *s, *eq, *k, *v;
		const char *why = NULL;
		int i;

		if (n < 0)
			break;
		lineno++;
		if (n > LINE_MAX_LEN) {
			r = fail(errp, "%s:%u: line longer than %d bytes", path,
			    lineno, LINE_MAX_LEN);
			goto out;
		}
		if (memchr(line, '\0', (size_t)n) != NULL) {
			r = fail(errp, "%s:%u: line contains a NUL byte", path,
			    lineno);
			goto out;
		}
		s = trim(line);
		if (*s == '\0' || *s == '#' || *s == ';')
			continue;
		if ((eq = strchr(s, '=')) == NULL) {
			r = fail(errp, "%s:%u: expected \"key = value\"", path,
			    lineno);
			goto out;
		}
		*eq = '\0';
		k = trim(s);
		v = trim(eq + 1);
		for (i = 0; i < K_COUNT; i++)
			if (strcmp(k, key_names[i]) == 0)
				break;
		if (i == K_COUNT) {
			r = fail(errp, "%s:%u: %s: unknown key", path, lineno,
			    k);
			goto out;
		}
		if (seen[i] != 0) {
			r = fail(errp, "%s:%u: %s: given twice", path, lineno,
			    k);
			goto out;
		}
		seen[i] = lineno;
		if (*v == '\0')
			continue; /* unset: keep the default */
		if (apply(c, (enum key_id)i, v, &why) != 0) {
			r = fail(errp, "%s:%u: %s: %s", path, lineno, k, why);
			goto out;
		}
	}
	if (ferror(f)) {
		r = fail(errp, "%s: read error: %s", path, strerror(errno));
		goto out;
	}
done:
	if ((r = cross_check(c, seen, errp)) != 0)
		goto out;
	*ret = c;
	c = NULL;
	r = 0;
out:
	if (f != NULL)
		fclose(f);
	free(line);
	config_free(c);
	return r;
}

/* ---- the agent's own credential ---- */

#define DMI_SYS_VENDOR "/sys/class/dmi/id/sys_vendor"
#define ENV_ID "ALIBABA_CLOUD_ACCESS_KEY_ID"
#define ENV_SECRET "ALIBABA_CLOUD_ACCESS_KEY_SECRET"
#define ENV_TOKEN "ALIBABA_CLOUD_SECURITY_TOKEN"
#define ENV_TOKEN_EXPIRATION "ALIBABA_CLOUD_SECURITY_TOKEN_EXPIRATION"
#define TOKEN_MAX 8192
#define EXTERNAL_ID_MAX 1224

static int secret_dup(const char *s, size_t n, char **out)
{
	char *p;

	if ((p = sodium_malloc(n + 1)) == NULL)
		return RAMKEY_ERR_NOMEM;
	memcpy(p, s, n);
	p[n] = '\0';
	*out = p;
	return 0;
}

static bool env_set(const char *name)
{
	const char *v = getenv(name);

	return v != NULL && *v != '\0';
}

bool config_dmi_is_alibaba(const char *v)
{
	while (v != NULL && isspace((unsigned char)*v))
		v++;
	return v != NULL && strncasecmp(v, "Alibaba Cloud", 13) == 0;
}

/* Alibaba Cloud hardware? The DMI vendor says so (read, not contacted). */
static bool on_alibaba_hardware(void)
{
	char buf[128];
	ssize_t n;
	int fd;

	if ((fd = open(DMI_SYS_VENDOR, O_RDONLY | O_CLOEXEC | O_NOCTTY)) < 0)
		return false;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return false;
	buf[n] = '\0';
	return config_dmi_is_alibaba(buf);
}

/* RoleArn: acs:ram::ACCOUNT:role/NAME */
static bool role_arn_valid(const char *v)
{
	const char *p = v + 9, *q;
	size_t n;

	if (strncmp(v, "acs:ram::", 9) != 0 || !isdigit((unsigned char)*p))
		return false;
	while (isdigit((unsigned char)*p))
		p++;
	if (strncmp(p, ":role/", 6) != 0)
		return false;
	p += 6;
	if ((n = strlen(p)) == 0 || n > 64)
		return false;
	for (q = p; *q != '\0'; q++)
		if (!isalnum((unsigned char)*q) && *q != '.' && *q != '-' &&
		    *q != '_')
			return false;
	return true;
}

/* RoleSessionName: 2-64 of A-Za-z0-9.@-_ */
static bool session_name_valid(const char *v)
{
	size_t n = strlen(v);

	if (n < 2 || n > 64)
		return false;
	for (; *v != '\0'; v++)
		if (!isalnum((unsigned char)*v) && *v != '.' && *v != '@' &&
		    *v != '-' && *v != '_')
			return false;
	return true;
}

/* ExternalId: 2-1224 of A-Za-z0-9_+=,.@:/- */
static bool external_id_valid(const char *v)
{
	size_t n = strlen(v);

	if (n < 2 || n > EXTERNAL_ID_MAX)
		return false;
	for (; *v != '\0'; v++)
		if (!isalnum((unsigned char)*v) && strchr("_+=,.@:/-", *v) ==
		    NULL)
			return false;
	return true;
}

/* The [default] profile of a credentials file; every value a pointer
 * into the (wiped by the caller) file buffer. */
struct profile {
	const char *type, *key_id, *secret, *role_name, *role_arn,
	    *session_name, *external_id;
};

static int parse_profile(const char *path, char *buf, struct profile *pr,
    char **errp)
{
	char *line, *save = NULL;
	bool in_default = false, seen_default = false;
	unsigned lineno = 0;

	memset(pr, 0, sizeof(*pr));
	for (line = strtok_r(buf, "\n", &save); line != NULL;
	    line = strtok_r(NULL, "\n", &save)) {
		char *s = trim(line), *eq, *k, *v;

		lineno++;
		if (*s == '\0' || *s == '#' || *s == ';')
			continue;
		if (*s == '[') {
			in_default = strcmp(s, "[default]") == 0;
			seen_default |= in_default;
			continue;
		}
		if (!in_default)
			continue;
		if ((eq = strchr(s, '=')) == NULL)
			return fail(errp, "%s: line %u: expected \"key = "
			    "value\"", path, lineno);
		*eq = '\0';
		k = trim(s);
		v = trim(eq + 1);
		if (strcmp(k, "type") == 0)
			pr->type = v;
		else if (strcmp(k, "access_key_id") == 0)
			pr->key_id = v;
		else if (strcmp(k, "access_key_secret") == 0)
			pr->secret = v;
		else if (strcmp(k, "role_name") == 0)
			pr->role_name = v;
		else if (strcmp(k, "role_arn") == 0)
			pr->role_arn = v;
		else if (strcmp(k, "role_session_name") == 0)
			pr->session_name = v;
		else if (strcmp(k, "external_id") == 0)
			pr->external_id = v;
	}
	(void)seen_default;
	return 0;
}

static int strdup_to(char **dst, const char *v)
{
	if (v == NULL || *v == '\0')
		return 0;
	return (*dst = strdup(v)) == NULL ? RAMKEY_ERR_NOMEM : 0;
}

/* The profile into spec, checked for its type. */
static int profile_to_spec(const struct config *cfg, const char *path,
    const struct profile *pr, struct source_spec *spec, char **errp)
{
	const char *type = pr->type != NULL && *pr->type ? pr->type :
	    "access_key";
	bool needs_key;

	if (strcmp(type, "access_key") == 0) {
		spec->type = SOURCE_STATIC;
	} else if (strcmp(type, "ecs_ram_role") == 0) {
		spec->type = SOURCE_IMDS;
	} else if (strcmp(type, "ram_role_arn") == 0) {
		spec->type = SOURCE_ASSUME_ROLE;
	} else {
		return fail(errp, "%s: [default] type = %s is not supported; "
		    "use type = access_key, ecs_ram_role or ram_role_arn",
		    path, type);
	}
	needs_key = spec->type != SOURCE_IMDS;
	if (needs_key && (pr->key_id == NULL || pr->secret == NULL ||
	    *pr->secret == '\0' || !ramkey_valid_key_id(pr->key_id)))
		return fail(errp, "%s: [default] needs access_key_id and "
		    "access_key_secret%s", path, spec->type ==
		    SOURCE_ASSUME_ROLE ? " (the key that assumes role_arn)" :
		    "");
	if (spec->type == SOURCE_IMDS && pr->role_name != NULL &&
	    *pr->role_name != '\0' && !imds_role_valid(pr->role_name,
	    strlen(pr->role_name)))
		return fail(errp, "%s: [default] role_name: not a RAM role "
		    "name (1-64 of A-Za-z0-9 . _ -)", path);
	if (spec->type == SOURCE_ASSUME_ROLE) {
		if (pr->role_arn == NULL || !role_arn_valid(pr->role_arn))
			return fail(errp, "%s: [default] type = ram_role_arn "
			    "needs role_arn = acs:ram::ACCOUNT:role/NAME",
			    path);
		if (pr->session_name != NULL && *pr->session_name != '\0' &&
		    !session_name_valid(pr->session_name))
			return fail(errp, "%s: [default] role_session_name: "
			    "2-64 of A-Za-z0-9 . @ - _", path);
		if (pr->external_id != NULL && *pr->external_id != '\0' &&
		    !external_id_valid(pr->external_id))
			return fail(errp, "%s: [default] external_id: 2-%d of "
			    "A-Za-z0-9 _ + = , . @ : / -", path,
			    EXTERNAL_ID_MAX);
	}
	if ((spec->profile_type = strdup(type)) == NULL)
		return RAMKEY_ERR_NOMEM;
	if (needs_key && ((spec->key_id = strdup(pr->key_id)) == NULL ||
	    secret_dup(pr->secret, strlen(pr->secret), &spec->secret) != 0))
		return fail(errp, "out of memory");
	if (spec->type == SOURCE_IMDS &&
	    (strdup_to(&spec->role_name, pr->role_name) != 0 ||
	    strdup_to(&spec->metadata_url, cfg->metadata_url) != 0))
		return fail(errp, "out of memory");
	spec->imds_v1 = cfg->imds_v1;
	if (spec->type == SOURCE_ASSUME_ROLE &&
	    (strdup_to(&spec->role_arn, pr->role_arn) != 0 ||
	    strdup_to(&spec->session_name, pr->session_name) != 0 ||
	    strdup_to(&spec->external_id, pr->external_id) != 0 ||
	    strdup_to(&spec->sts_endpoint, cfg->sts_endpoint) != 0))
		return fail(errp, "out of memory");
	return 0;
}

/* The credentials file, with the checks of who may own and read it. */
static int from_file(const struct config *cfg, struct source_spec *spec,
    char **errp)
{
	const char *path = cfg->credentials_file;
	struct profile pr;
	char *buf = NULL;
	struct stat st;
	ssize_t n = 0;
	int fd = -1, r;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY |
	    O_NONBLOCK)) < 0) {
		r = fail(errp, "%s: cannot open the agent's credentials: %s",
		    path, strerror(errno));
		goto out;
	}
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		r = fail(errp, "%s: not a regular file", path);
		goto out;
	}
	if (!config_owner_ok(st.st_uid)) {
		r = fail(errp, "%s: owned by uid %lu; it must belong to root "
		    "or to the agent's account (%s)", path,
		    (unsigned long)st.st_uid, RAMKEY_USER);
		goto out;
	}
	if ((st.st_mode & 0066) != 0) {
		r = fail(errp, "%s: mode %04o lets group or others read or "
		    "write the agent's credentials; run chmod 600 %s", path,
		    (unsigned)(st.st_mode & 07777), path);
		goto out;
	}
	if (st.st_size > CRED_FILE_MAX) {
		r = fail(errp, "%s: larger than %d bytes", path,
		    CRED_FILE_MAX);
		goto out;
	}
	if ((buf = sodium_malloc((size_t)st.st_size + 1)) == NULL) {
		r = fail(errp, "out of memory");
		goto out;
	}
	for (size_t have = 0; have < (size_t)st.st_size; have += (size_t)n) {
		n = read(fd, buf + have, (size_t)st.st_size - have);
		if (n <= 0) {
			r = fail(errp, "%s: read error", path);
			goto out;
		}
	}
	buf[st.st_size] = '\0';
	if (memchr(buf, '\0', (size_t)st.st_size) != NULL) {
		r = fail(errp, "%s: contains a NUL byte; not a credentials "
		    "file", path);
		goto out;
	}
	if ((r = parse_profile(path, buf, &pr, errp)) != 0 ||
	    (r = profile_to_spec(cfg, path, &pr, spec, errp)) != 0)
		goto out;
	if ((spec->where = strdup(path)) == NULL) {
		r = fail(errp, "out of memory");
		goto out;
	}
	r = 0;
out:
	if (fd >= 0)
		close(fd);
	if (buf != NULL)
		sodium_free(buf);
	return r;
}

static int from_env(struct source_spec *spec, char **errp)
{
	const char *id = getenv(ENV_ID), *secret = getenv(ENV_SECRET);
	const char *token = getenv(ENV_TOKEN);
	const char *exp = getenv(ENV_TOKEN_EXPIRATION);

	if (id == NULL || *id == '\0' || secret == NULL || *secret == '\0')
		return fail(errp, "credential_source = env: " ENV_ID " and "
		    ENV_SECRET " are not both set");
	if (!ramkey_valid_key_id(id))
		return fail(errp, ENV_ID " is not a valid AccessKeyId");
	spec->type = SOURCE_STATIC;
	if (token != NULL && *token != '\0') {
		size_t n = strlen(token);

		if (n > TOKEN_MAX || strpbrk(token, " \t\r\n") != NULL)
			return fail(errp, ENV_TOKEN " is not a security token");
		if (secret_dup(token, n, &spec->token) != 0)
			return fail(errp, "out of memory");
		if (exp != NULL && *exp != '\0' &&
		    ramkey_parse_time(exp, &spec->token_expires) != 0)
			return fail(errp, ENV_TOKEN_EXPIRATION " is not a time "
			    "like 2026-01-02T03:04:05Z");
	}
	if ((spec->key_id = strdup(id)) == NULL ||
	    (spec->where = strdup("the environment")) == NULL ||
	    (spec->profile_type = strdup(spec->token != NULL ? "sts_token" :
	    "access_key")) == NULL ||
	    secret_dup(secret, strlen(secret), &spec->secret) != 0)
		return fail(errp, "out of memory");
	return 0;
}

static int from_imds(const struct config *cfg, struct source_spec *spec,
    char **errp)
{
	spec->type = SOURCE_IMDS;
	spec->imds_v1 = cfg->imds_v1;
	if ((spec->metadata_url = strdup(cfg->metadata_url)) == NULL ||
	    (spec->where = strdup(cfg->metadata_url)) == NULL ||
	    (spec->profile_type = strdup("ecs_ram_role")) == NULL)
		return fail(errp, "out of memory");
	return 0;
}

static const char *const origin_names[] = {
	[CRED_SOURCE_AUTO] = "auto",
	[CRED_SOURCE_ENV] = "env",
	[CRED_SOURCE_FILE] = "file",
	[CRED_SOURCE_ECS_RAM_ROLE] = "ecs_ram_role",
};

int source_resolve(const struct config *cfg, struct source_spec **ret,
    char **errp)
{
	struct source_spec *spec = NULL;
	enum credential_source use = cfg->credential_source;
	bool env = env_set(ENV_ID) && env_set(ENV_SECRET);
	bool file, alibaba = on_alibaba_hardware();
	char others[512] = "", desc[SOURCE_WHY_MAX];
	struct stat st;
	int r;

	*ret = NULL;
	if (errp != NULL)
		*errp = NULL;
	if (sodium_init() < 0)
		return fail(errp, "cannot initialise libsodium");
	file = lstat(cfg->credentials_file, &st) == 0;
	if (use == CRED_SOURCE_AUTO) {
		if (env)
			use = CRED_SOURCE_ENV;
		else if (file)
			use = CRED_SOURCE_FILE;
		else if (alibaba)
			use = CRED_SOURCE_ECS_RAM_ROLE;
		else
			return fail(errp, "no credential for the agent: "
			    "credential_source = auto found neither " ENV_ID
			    " and " ENV_SECRET " in the environment, nor %s, "
			    "and this is not an Alibaba Cloud instance (DMI "
			    "sys_vendor); set one up, or set credential_source",
			    cfg->credentials_file);
	}
	if ((spec = calloc(1, sizeof(*spec))) == NULL ||
	    (spec->origin = strdup(origin_names[use])) == NULL) {
		r = fail(errp, "out of memory");
		goto out;
	}
	switch (use) {
	case CRED_SOURCE_ENV:
		r = from_env(spec, errp);
		break;
	case CRED_SOURCE_FILE:
		r = from_file(cfg, spec, errp);
		break;
	case CRED_SOURCE_ECS_RAM_ROLE:
	default:
		r = from_imds(cfg, spec, errp);
		break;
	}
	if (r != 0)
		goto out;
	/* What else is there, that the log should mention. */
	if (env && use != CRED_SOURCE_ENV)
		snprintf(others + strlen(others), sizeof(others) -
		    strlen(others), "%s" ENV_ID " in the environment",
		    others[0] ? ", " : "");
	if (file && use != CRED_SOURCE_FILE)
		snprintf(others + strlen(others), sizeof(others) -
		    strlen(others), "%s%.200s", others[0] ? ", " : "",
		    cfg->credentials_file);
	if (alibaba && use != CRED_SOURCE_ECS_RAM_ROLE)
		snprintf(others + strlen(others), sizeof(others) -
		    strlen(others), "%sthe instance metadata service (this is "
		    "an Alibaba Cloud instance)", others[0] ? ", " : "");
	source_spec_describe(spec, desc, sizeof(desc));
	if (asprintf(&spec->choice, "credential_source = %s: using %s (%s)%s%s",
	    origin_names[cfg->credential_source], desc, origin_names[use],
	    others[0] ? "; also present, not used: " : "", others) < 0) {
		spec->choice = NULL;
		r = fail(errp, "out of memory");
		goto out;
	}
	*ret = spec;
	spec = NULL;
	r = 0;
out:
	source_spec_free(spec);
	return r;
}

/*
 * The files the agent opens, by the key that names them; more files are
 * one line each. A file that matters only for one source says which.
 */
static const struct {
	const char *key;
	size_t off;
	const char *only_for_origin; /* NULL: always, when set */
} named_files[] = {
	{ "ca_file", offsetof(struct config, ca_file), NULL },
	{ "credentials_file", offsetof(struct config, credentials_file),
	    "file" },
};

size_t config_named_files(const struct config *cfg,
    const struct source_spec *spec, struct config_file *out, size_t max)
{
	size_t i, n = 0;

	for (i = 0; i < sizeof(named_files) / sizeof(named_files[0]) &&
	    n < max; i++) {
		const char *path = *(char *const *)(const void *)
		    ((const char *)cfg + named_files[i].off);

		if (path == NULL || *path == '\0')
			continue;
		if (named_files[i].only_for_origin != NULL && (spec == NULL ||
		    strcmp(spec->origin, named_files[i].only_for_origin) != 0))
			continue;
		out[n].key = named_files[i].key;
		out[n].path = path;
		n++;
	}
	return n;
}

bool config_ram_user_warning(const struct config *cfg, char *buf, size_t len)
{
	const char *t = cfg->ram_user;

	if (t[0] != '%' || (t[1] != 'u' && t[1] != 'U' && t[1] != 'h'))
		return false;
	snprintf(buf, len, "ram_user = %s starts with %%%c, so it has no fixed "
	    "prefix: the agent's RAM policy must then allow the AccessKey "
	    "actions on user/* (every RAM user, human administrators "
	    "included); give it a prefix (ram_user = ramkey-%%u) and name "
	    "only acs:ram:*:ACCOUNT:user/ramkey-* in the policy", t, t[1]);
	return true;
}
