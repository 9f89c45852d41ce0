#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <json-c/json.h>
#include <sodium.h>

#include "config.h"
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
	K_STS_ENDPOINT,
	K_EXTERNAL_ID,
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
	[K_STS_ENDPOINT] = "sts_endpoint",
	[K_EXTERNAL_ID] = "external_id",
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
	    set_str(&c->ram_user, "%u") ||
	    set_str(&c->keybase_url, "https://keybase.io") ||
	    set_str(&c->role_session_name, "%u@%H") ||
	    set_str(&c->sts_endpoint, "https://sts.aliyuncs.com"))
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
	free(c->sts_endpoint);
	free(c->external_id);
	free(c);
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
		if (v[0] != '/' || strlen(v) >= PATH_MAX) {
			*why = "must be an absolute path";
			return -1;
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
		if (!valid_url(v)) {
			*why = "must be an http:// or https:// URL";
			return -1;
		}
		r = set_str(k == K_ENDPOINT ? &c->endpoint :
		    k == K_KEYBASE_URL ? &c->keybase_url : &c->proxy, v);
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
	case K_STS_ENDPOINT:
		if (!valid_url(v)) {
			*why = "must be an http:// or https:// URL";
			return -1;
		}
		r = set_str(&c->sts_endpoint, v);
		break;
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
	if (strncmp(c->endpoint, "http://", 7) == 0 && !c->allow_http)
		return fail(errp, "%s:%u: endpoint: plain http:// needs "
		    "allow_http = yes (use https:// in production)", c->path,
		    lines[K_ENDPOINT]);
	if (strncmp(c->keybase_url, "http://", 7) == 0 && !c->allow_http)
		return fail(errp, "%s:%u: keybase_url: plain http:// needs "
		    "allow_http = yes", c->path, lines[K_KEYBASE_URL]);
	if (c->fetch_ttl > c->max_ttl) {
		c->fetch_ttl = c->max_ttl;
		c->fetch_ttl_clamped = true;
	}
	if (c->ntrusted_uids == 0)
		return fail(errp, "%s:%u: trusted_uids: the list is empty; the "
		    "PAM module runs as root, so list at least 0", c->path,
		    lines[K_TRUSTED_UIDS]);
	if (strncmp(c->sts_endpoint, "http://", 7) == 0 && !c->allow_http)
		return fail(errp, "%s:%u: sts_endpoint: plain http:// needs "
		    "allow_http = yes", c->path, lines[K_STS_ENDPOINT]);
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

/* ---- admin credentials ---- */

void credentials_free(struct admin_credentials *c)
{
	if (c == NULL)
		return;
	free(c->key_id);
	if (c->secret != NULL)
		sodium_free(c->secret);
	free(c->source);
	free(c);
}

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

/* Parse the INI text in buf (which holds the secret; caller wipes). */
static int parse_credentials(const char *path, char *buf,
    struct admin_credentials *c, char **errp)
{
	char *line, *save = NULL, *type = NULL;
	bool in_default = false;
	unsigned lineno = 0;

	for (line = strtok_r(buf, "\n", &save); line != NULL;
	    line = strtok_r(NULL, "\n", &save)) {
		char *s = trim(line), *eq, *k, *v;

		lineno++;
		if (*s == '\0' || *s == '#' || *s == ';')
			continue;
		if (*s == '[') {
			in_default = strcmp(s, "[default]") == 0;
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
		if (strcmp(k, "type") == 0) {
			type = v;
		} else if (strcmp(k, "access_key_id") == 0) {
			free(c->key_id);
			if ((c->key_id = strdup(v)) == NULL)
				return RAMKEY_ERR_NOMEM;
		} else if (strcmp(k, "access_key_secret") == 0) {
			if (c->secret != NULL)
				sodium_free(c->secret);
			c->secret = NULL;
			if (secret_dup(v, strlen(v), &c->secret) != 0)
				return RAMKEY_ERR_NOMEM;
		}
	}
	if (type != NULL && strcmp(type, "access_key") != 0)
		return fail(errp, "%s: [default] type = %s is not supported; "
		    "use type = access_key", path, type);
	if (c->key_id == NULL || c->secret == NULL || c->secret[0] == '\0' ||
	    !ramkey_valid_key_id(c->key_id))
		return fail(errp, "%s: [default] needs access_key_id and "
		    "access_key_secret", path);
	return 0;
}

int credentials_load(const struct config *cfg, struct admin_credentials **ret,
    char **errp)
{
	const char *env_id = getenv("ALIBABA_CLOUD_ACCESS_KEY_ID");
	const char *env_secret = getenv("ALIBABA_CLOUD_ACCESS_KEY_SECRET");
	struct admin_credentials *c;
	char *buf = NULL;
	struct stat st;
	ssize_t n = 0;
	int fd = -1, r;

	*ret = NULL;
	if (sodium_init() < 0)
		return fail(errp, "cannot initialise libsodium");
	if ((c = calloc(1, sizeof(*c))) == NULL)
		return fail(errp, "out of memory");
	if (env_id != NULL && *env_id != '\0' && env_secret != NULL &&
	    *env_secret != '\0') {
		if (!ramkey_valid_key_id(env_id)) {
			r = fail(errp, "ALIBABA_CLOUD_ACCESS_KEY_ID is not a "
			    "valid AccessKeyId");
			goto out;
		}
		if ((c->key_id = strdup(env_id)) == NULL ||
		    (c->source = strdup("environment")) == NULL ||
		    secret_dup(env_secret, strlen(env_secret),
		    &c->secret) != 0) {
			r = fail(errp, "out of memory");
			goto out;
		}
		*ret = c;
		return 0;
	}
	if ((fd = open(cfg->credentials_file, O_RDONLY | O_CLOEXEC |
	    O_NOFOLLOW | O_NOCTTY | O_NONBLOCK)) < 0) {
		r = fail(errp, "%s: cannot open the admin credentials: %s "
		    "(or set ALIBABA_CLOUD_ACCESS_KEY_ID and "
		    "ALIBABA_CLOUD_ACCESS_KEY_SECRET)", cfg->credentials_file,
		    strerror(errno));
		goto out;
	}
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		r = fail(errp, "%s: not a regular file", cfg->credentials_file);
		goto out;
	}
	if (!config_owner_ok(st.st_uid)) {
		r = fail(errp, "%s: owned by uid %lu; it must belong to root "
		    "or to the agent's account (%s)", cfg->credentials_file,
		    (unsigned long)st.st_uid, RAMKEY_USER);
		goto out;
	}
	if ((st.st_mode & 0066) != 0) {
		r = fail(errp, "%s: mode %04o lets group or others read or "
		    "write the admin key; run chmod 600 %s",
		    cfg->credentials_file, (unsigned)(st.st_mode & 07777),
		    cfg->credentials_file);
		goto out;
	}
	if (st.st_size > CRED_FILE_MAX) {
		r = fail(errp, "%s: larger than %d bytes",
		    cfg->credentials_file, CRED_FILE_MAX);
		goto out;
	}
	if ((buf = sodium_malloc((size_t)st.st_size + 1)) == NULL) {
		r = fail(errp, "out of memory");
		goto out;
	}
	for (size_t have = 0; have < (size_t)st.st_size; have += (size_t)n) {
		n = read(fd, buf + have, (size_t)st.st_size - have);
		if (n <= 0) {
			r = fail(errp, "%s: read error", cfg->credentials_file);
			goto out;
		}
	}
	buf[st.st_size] = '\0';
	if (memchr(buf, '\0', (size_t)st.st_size) != NULL) {
		r = fail(errp, "%s: contains a NUL byte; not a credentials "
		    "file", cfg->credentials_file);
		goto out;
	}
	if ((r = parse_credentials(cfg->credentials_file, buf, c, errp)) != 0)
		goto out;
	if ((c->source = strdup(cfg->credentials_file)) == NULL) {
		r = fail(errp, "out of memory");
		goto out;
	}
	*ret = c;
	c = NULL;
	r = 0;
out:
	if (fd >= 0)
		close(fd);
	if (buf != NULL)
		sodium_free(buf);
	credentials_free(c);
	return r;
}
