/*
 * agentconf.config: agent.conf (ramkey-agent.conf(5)) and the admin credentials
 * (environment or an INI file of the ~/.alibabacloud/credentials shape).
 * Every key, the syntax rules, and the "FILE:LINE: key: problem" shape
 * of every error.
 */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <sodium.h>

#include "config.h"
#include "ramkey_err.h"

#define KEY_ID "LTAI5tAdmin000000000001"

static char *tmpdir;
static unsigned serial;

static char *fmt(const char *f, ...) __attribute__((format(printf, 1, 2)));

static char *fmt(const char *f, ...)
{
	va_list ap;
	char *p = NULL;

	va_start(ap, f);
	assert_true(vasprintf(&p, f, ap) >= 0);
	va_end(ap);
	return p;
}

/* Write text to a fresh file with the given mode; returns its path. */
static char *put(const char *text, mode_t mode)
{
	char *path = fmt("%s/f%u", tmpdir, serial++);
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);

	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	assert_int_equal(close(fd), 0);
	assert_int_equal(chmod(path, mode), 0);
	return path;
}

static struct config *load_ok(const char *text)
{
	char *path = put(text, 0644), *err = (char *)"x";
	struct config *c = NULL;
	int r = config_load(path, true, &c, &err);

	if (r != 0)
		print_error("refused: %s\n---\n%s---\n", err, text);
	assert_int_equal(r, 0);
	assert_non_null(c);
	assert_null(err);
	assert_string_equal(c->path, path);
	free(path);
	return c;
}

/*
 * Load text, expect a configuration error, and check it has the shape
 * "FILE:LINE: key: problem" (a problem text follows the key).
 */
static void assert_load_error(const char *text, unsigned line, const char *key)
{
	char *path = put(text, 0644), *err = NULL, *prefix;
	struct config *c = (struct config *)1;
	int r = config_load(path, true, &c, &err);

	if (r == 0)
		print_error("accepted:\n%s", text);
	assert_int_equal(r, RAMKEY_ERR_CONFIG);
	assert_null(c);
	assert_non_null(err);
	prefix = fmt("%s:%u: %s: ", path, line, key);
	if (strncmp(err, prefix, strlen(prefix)) != 0)
		print_error(
		    "error \"%s\" does not start with \"%s\"\n", err, prefix);
	assert_int_equal(strncmp(err, prefix, strlen(prefix)), 0);
	assert_true(strlen(err) > strlen(prefix) + 3);
	assert_null(strchr(err, '\n'));
	free(prefix);
	free(err);
	free(path);
}

static int setup(void **state)
{
	char tmpl[] = "/tmp/ramkey-conf-XXXXXX";

	if (sodium_init() < 0 || mkdtemp(tmpl) == NULL)
		return -1;
	tmpdir = strdup(tmpl);
	unsetenv("ALIBABA_CLOUD_ACCESS_KEY_ID");
	unsetenv("ALIBABA_CLOUD_ACCESS_KEY_SECRET");
	unsetenv("ALIBABA_CLOUD_SECURITY_TOKEN");
	unsetenv("ALIBABA_CLOUD_SECURITY_TOKEN_EXPIRATION");
	return 0;
}

static int teardown(void **state)
{
	char *cmd = fmt("rm -rf '%s'", tmpdir);
	int r = system(cmd);

	free(cmd);
	free(tmpdir);
	return r == 0 ? 0 : -1;
}

static void assert_defaults(const struct config *c)
{
	assert_string_equal(c->socket, RAMKEY_DEFAULT_SOCKET);
	assert_string_equal(c->state_dir, "/var/lib/ramkey");
	assert_string_equal(c->endpoint, "https://ram.aliyuncs.com");
	assert_string_equal(c->region_id, "cn-hangzhou");
	assert_null(c->ca_file);
	assert_null(c->proxy);
	assert_false(c->allow_http);
	assert_string_equal(c->credentials_file, "/etc/ramkey/credentials");
	assert_int_equal(c->signature, RAM_SIG_V3);
	assert_string_equal(c->ram_user, "%u");
	assert_int_equal(c->min_uid, 1000);
	assert_null(c->allowed_group);
	assert_int_equal(c->ntrusted_uids, 1);
	assert_int_equal(c->trusted_uids[0], 0);
	assert_int_equal(c->max_ttl, 12 * 3600);
	assert_int_equal(c->fetch_ttl, 3600);
	assert_false(c->fetch_ttl_clamped);
	assert_int_equal(c->revoke, REVOKE_DELETE);
	assert_int_equal(c->mint_rate, 20);
	assert_int_equal(c->mint_rate_period, 3600);
	assert_string_equal(c->keybase_url, "https://keybase.io");
	assert_int_equal(c->max_connections_per_uid, 64);
	assert_int_equal(c->create_timeout, 300);
	assert_int_equal(c->update_timeout, 300);
	assert_int_equal(c->delete_timeout, 300);
	assert_null(c->metrics_file);
	assert_int_equal(c->metrics_interval, 15);
	assert_null(c->sweep_group);
	assert_null(c->sweep_prefix);
	/* max_ttl + create_timeout + 10m */
	assert_int_equal(c->sweep_min_age, 12 * 3600 + 300 + 600);
	assert_int_equal(c->credential_source, CRED_SOURCE_AUTO);
	assert_string_equal(c->metadata_url, "http://100.100.100.200");
	assert_false(c->imds_v1);
	assert_false(c->imds_unrestricted_ok);
	assert_string_equal(c->sts_endpoint, "https://sts.aliyuncs.com");
}

/* ---- loading ---- */

static void test_defaults_when_file_missing_without_c(void **state)
{
	char *path = fmt("%s/no-such-dir/agent.conf", tmpdir), *err = NULL;
	struct config *c = NULL;

	assert_int_equal(config_load(path, false, &c, &err), 0);
	assert_non_null(c);
	assert_null(err);
	assert_defaults(c);
	assert_true(config_uid_trusted(c, 0));
	assert_false(config_uid_trusted(c, 1000));
	config_free(c);
	free(path);
}

static void test_missing_file_with_c_is_error(void **state)
{
	char *path = fmt("%s/absent.conf", tmpdir), *err = NULL;
	struct config *c = (struct config *)1;

	assert_int_equal(config_load(path, true, &c, &err), RAMKEY_ERR_CONFIG);
	assert_null(c);
	assert_non_null(err);
	assert_int_equal(strncmp(err, path, strlen(path)), 0);
	assert_non_null(strstr(err, strerror(ENOENT)));
	free(err);
	free(path);
}

static void test_empty_file_gives_defaults(void **state)
{
	struct config *c = load_ok("");

	assert_defaults(c);
	config_free(c);
	c = load_ok("\n\n   \n\t\n");
	assert_defaults(c);
	config_free(c);
}

static void test_every_key_parsed(void **state)
{
	struct group *g = getgrgid(getegid());
	char *text;
	struct config *c;

	assert_non_null(g);
	text = fmt("socket = /run/rk/agent.sock\n"
		   "state_dir = /srv/ramkey/state\n"
		   "endpoint = http://127.0.0.1:8443/ram\n"
		   "region_id = eu-central-1\n"
		   "ca_file = /etc/ramkey/ca.pem\n"
		   "proxy = http://proxy.example:3128\n"
		   "allow_http = yes\n"
		   "credentials_file = /etc/ramkey/admin.ini\n"
		   "credential_source = ecs_ram_role\n"
		   "metadata_url = http://127.0.0.1:8081\n"
		   "imds_v1 = yes\n"
		   "imds_unrestricted_ok = yes\n"
		   "sts_endpoint = http://127.0.0.1:8443\n"
		   "signature = v1\n"
		   "ram_user = corp-%%u-%%H\n"
		   "min_uid = 2000\n"
		   "allowed_group = %s\n"
		   "trusted_uids = 0, 998\n"
		   "max_ttl = 8h\n"
		   "fetch_ttl = 30m\n"
		   "revoke = deactivate\n"
		   "mint_rate = 5/m\n"
		   "keybase_url = http://127.0.0.1:9000\n"
		   "max_connections_per_uid = 8\n"
		   "create_timeout = 90\n"
		   "update_timeout = 1m30s\n"
		   "delete_timeout = 2h\n",
	    g->gr_name);
	c = load_ok(text);
	assert_string_equal(c->socket, "/run/rk/agent.sock");
	assert_string_equal(c->state_dir, "/srv/ramkey/state");
	assert_string_equal(c->endpoint, "http://127.0.0.1:8443/ram");
	assert_string_equal(c->region_id, "eu-central-1");
	assert_string_equal(c->ca_file, "/etc/ramkey/ca.pem");
	assert_string_equal(c->proxy, "http://proxy.example:3128");
	assert_true(c->allow_http);
	assert_string_equal(c->credentials_file, "/etc/ramkey/admin.ini");
	assert_int_equal(c->credential_source, CRED_SOURCE_ECS_RAM_ROLE);
	assert_string_equal(c->metadata_url, "http://127.0.0.1:8081");
	assert_true(c->imds_v1);
	assert_true(c->imds_unrestricted_ok);
	assert_string_equal(c->sts_endpoint, "http://127.0.0.1:8443");
	assert_int_equal(c->signature, RAM_SIG_V1);
	assert_string_equal(c->ram_user, "corp-%u-%H");
	assert_int_equal(c->min_uid, 2000);
	assert_string_equal(c->allowed_group, g->gr_name);
	assert_int_equal(c->allowed_gid, getegid());
	assert_int_equal(c->ntrusted_uids, 2);
	assert_int_equal(c->trusted_uids[0], 0);
	assert_int_equal(c->trusted_uids[1], 998);
	assert_int_equal(c->max_ttl, 8 * 3600);
	assert_int_equal(c->fetch_ttl, 1800);
	assert_false(c->fetch_ttl_clamped);
	assert_int_equal(c->revoke, REVOKE_DEACTIVATE);
	assert_int_equal(c->mint_rate, 5);
	assert_int_equal(c->mint_rate_period, 60);
	assert_string_equal(c->keybase_url, "http://127.0.0.1:9000");
	assert_int_equal(c->max_connections_per_uid, 8);
	assert_int_equal(c->create_timeout, 90);
	assert_int_equal(c->update_timeout, 90);
	assert_int_equal(c->delete_timeout, 7200);
	config_free(c);
	free(text);
}

static void test_other_accepted_values(void **state)
{
	struct config *c;

	c = load_ok("signature = v3\nrevoke = delete\nallow_http = no\n"
		    "endpoint = https://ram.example:443/\n");
	assert_int_equal(c->signature, RAM_SIG_V3);
	assert_int_equal(c->revoke, REVOKE_DELETE);
	assert_false(c->allow_http);
	assert_string_equal(c->endpoint, "https://ram.example:443/");
	config_free(c);
	c = load_ok("allow_http = true\n");
	assert_true(c->allow_http);
	config_free(c);
	c = load_ok("allow_http = on\n");
	assert_true(c->allow_http);
	config_free(c);
	c = load_ok("allow_http = off\n");
	assert_false(c->allow_http);
	config_free(c);
	c = load_ok("max_connections_per_uid = 100000\nmin_uid = 1\n");
	assert_int_equal(c->max_connections_per_uid, 100000);
	assert_int_equal(c->min_uid, 1);
	config_free(c);
}

static void test_whitespace_trimmed(void **state)
{
	struct config *c = load_ok("   socket\t=\t/run/x.sock  \t\n"
				   "state_dir=/srv/state\n"
				   "\tregion_id   =    cn-beijing\r\n"
				   "max_ttl =2h   \n"
				   "  min_uid= 1500\n");

	assert_string_equal(c->socket, "/run/x.sock");
	assert_string_equal(c->state_dir, "/srv/state");
	assert_string_equal(c->region_id, "cn-beijing");
	assert_int_equal(c->max_ttl, 7200);
	assert_int_equal(c->min_uid, 1500);
	config_free(c);
}

static void test_comments_skipped(void **state)
{
	struct config *c = load_ok("# a comment\n"
				   "; another comment\n"
				   "   # indented comment = with equals\n"
				   "\t; socket = /not/this\n"
				   "#socket = /nor/this\n"
				   "socket = /run/yes.sock\n"
				   "#\n;\n");

	assert_string_equal(c->socket, "/run/yes.sock");
	config_free(c);
}

static void test_hash_inside_value_is_not_a_comment(void **state)
{
	struct config *c = load_ok("state_dir = /srv/ramkey#1\n");

	/* Only whole lines are comments; there is no quoting. */
	assert_string_equal(c->state_dir, "/srv/ramkey#1");
	config_free(c);
}

static void test_empty_value_means_unset(void **state)
{
	struct config *c = load_ok("endpoint =\n"
				   "trusted_uids =   \n"
				   "min_uid=\n"
				   "ca_file = \n"
				   "allowed_group =\n"
				   "mint_rate =\n");

	assert_defaults(c);
	config_free(c);
	/* Given (even empty) counts as given: twice is still an error. */
	assert_load_error(
	    "endpoint =\nendpoint = https://x.example\n", 2, "endpoint");
}

static void test_unknown_key_error(void **state)
{
	assert_load_error("socket = /run/a.sock\n\nbogus = 1\n", 3, "bogus");
	assert_load_error("Socket = /run/a.sock\n", 1, "Socket");
	assert_load_error("# c\nmax-ttl = 1h\n", 2, "max-ttl");
	assert_load_error("socket.path = /x\n", 1, "socket.path");
}

static void test_duplicate_key_error(void **state)
{
	assert_load_error("socket = /run/a.sock\n# x\nmax_ttl = 1h\n"
			  "socket = /run/b.sock\n",
	    4, "socket");
	assert_load_error("max_ttl = 1h\nmax_ttl = 1h\n", 2, "max_ttl");
}

static void test_bad_duration_error(void **state)
{
	assert_load_error("max_ttl = 1x\n", 1, "max_ttl");
	assert_load_error("\nfetch_ttl = 1h1h\n", 2, "fetch_ttl");
	assert_load_error("create_timeout = -1\n", 1, "create_timeout");
	assert_load_error("update_timeout = 30m1h\n", 1, "update_timeout");
	assert_load_error("delete_timeout = 1.5h\n", 1, "delete_timeout");
	assert_load_error("max_ttl = 3651d\n", 1, "max_ttl");
	assert_load_error("max_ttl = 1 h\n", 1, "max_ttl");
}

static void test_zero_ttl_error(void **state)
{
	assert_load_error("max_ttl = 0\n", 1, "max_ttl");
	assert_load_error("fetch_ttl = 0s\n", 1, "fetch_ttl");
	assert_load_error("create_timeout = 0m\n", 1, "create_timeout");
	assert_load_error("delete_timeout = 0d\n", 1, "delete_timeout");
}

static void test_bad_bool_error(void **state)
{
	assert_load_error("allow_http = maybe\n", 1, "allow_http");
	assert_load_error("allow_http = YES\n", 1, "allow_http");
	assert_load_error("allow_http = 2\n", 1, "allow_http");
}

static void test_bad_url_error(void **state)
{
	assert_load_error("endpoint = ftp://ram.example\n", 1, "endpoint");
	assert_load_error("endpoint = ram.aliyuncs.com\n", 1, "endpoint");
	assert_load_error("endpoint = https://\n", 1, "endpoint");
	assert_load_error("endpoint = https:///path\n", 1, "endpoint");
	assert_load_error("endpoint = https://a b\n", 1, "endpoint");
	assert_load_error("keybase_url = keybase.io\n", 1, "keybase_url");
	assert_load_error("proxy = socks://p:1080\n", 1, "proxy");
}

static void test_http_endpoint_needs_allow_http(void **state)
{
	struct config *c;

	assert_load_error(
	    "# test\nendpoint = http://127.0.0.1:8080\n", 2, "endpoint");
	assert_load_error(
	    "allow_http = no\n\nendpoint = http://127.0.0.1\n", 3, "endpoint");
	assert_load_error(
	    "keybase_url = http://127.0.0.1:9000\n", 1, "keybase_url");
	/* allow_http may come before or after. */
	c = load_ok("endpoint = http://127.0.0.1:8080\nallow_http = yes\n");
	assert_string_equal(c->endpoint, "http://127.0.0.1:8080");
	config_free(c);
	c = load_ok("allow_http = yes\nkeybase_url = http://127.0.0.1:9000\n");
	config_free(c);
	/* An http:// proxy is an ordinary HTTPS proxy: no flag needed. */
	c = load_ok("proxy = http://proxy.example:3128\n");
	assert_string_equal(c->proxy, "http://proxy.example:3128");
	config_free(c);
}

static void test_min_uid_zero_error(void **state)
{
	assert_load_error("min_uid = 0\n", 1, "min_uid");
	assert_load_error("min_uid = -1\n", 1, "min_uid");
	assert_load_error("min_uid = abc\n", 1, "min_uid");
	assert_load_error("min_uid = 4294967295\n", 1, "min_uid");
	assert_load_error("min_uid = 99999999999999999999999\n", 1, "min_uid");
	assert_load_error("min_uid = 10 00\n", 1, "min_uid");
}

static void test_unknown_allowed_group_error(void **state)
{
	assert_load_error(
	    "allowed_group = no-such-group-ramkey-test\n", 1, "allowed_group");
}

static void test_bad_mint_rate_error(void **state)
{
	static const char *const bad[] = {"20", "0/h", "x/h", "20/x", "20/0",
	    "-1/h", "20/h/2", "1000001/h", "/h", "20/", "20/hh", "20/1h1h",
	    "1.5/h"};
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char *t = fmt("# rate\nmint_rate = %s\n", bad[i]);

		assert_load_error(t, 2, "mint_rate");
		free(t);
	}
}

static void test_mint_rate_forms(void **state)
{
	static const struct {
		const char *v;
		uint32_t n;
		uint64_t per;
	} ok[] = {
	    {"20/h", 20, 3600},
	    {"5/m", 5, 60},
	    {"100/d", 100, 86400},
	    {"3/2h", 3, 7200},
	    {"1/s", 1, 1},
	    {"10/90", 10, 90},
	    {"7 / 30m", 7, 1800},
	    {"1000000/1h30m", 1000000, 5400},
	};
	size_t i;

	for (i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		char *t = fmt("mint_rate = %s\n", ok[i].v);
		struct config *c = load_ok(t);

		assert_int_equal(c->mint_rate, ok[i].n);
		assert_int_equal(c->mint_rate_period, ok[i].per);
		config_free(c);
		free(t);
	}
}

static void test_mint_rate_long_value_not_truncated(void **state)
{
	char zeros[60], *t;

	/* A value longer than any internal buffer is judged whole, never
	 * cut into something that parses: "1/000...01hxyz" is no rate even
	 * though its first 63 bytes are. */
	memset(zeros, '0', 59);
	zeros[59] = '\0';
	t = fmt("mint_rate = 1/%s1hxyz\n", zeros);
	assert_load_error(t, 1, "mint_rate");
	free(t);
	t = fmt("mint_rate = 1/%s1h\n", zeros);
	config_free(load_ok(t));
	free(t);
}

static void test_fetch_ttl_clamped_to_max_ttl(void **state)
{
	struct config *c;

	c = load_ok("max_ttl = 1h\nfetch_ttl = 2h\n");
	assert_int_equal(c->max_ttl, 3600);
	assert_int_equal(c->fetch_ttl, 3600);
	assert_true(c->fetch_ttl_clamped);
	config_free(c);
	c = load_ok("fetch_ttl = 13h\n"); /* above the default max_ttl */
	assert_int_equal(c->fetch_ttl, 12 * 3600);
	assert_true(c->fetch_ttl_clamped);
	config_free(c);
	c = load_ok("fetch_ttl = 30m\nmax_ttl = 10m\n");
	assert_int_equal(c->fetch_ttl, 600);
	assert_true(c->fetch_ttl_clamped);
	config_free(c);
	c = load_ok("max_ttl = 1h\nfetch_ttl = 1h\n");
	assert_int_equal(c->fetch_ttl, 3600);
	assert_false(c->fetch_ttl_clamped);
	config_free(c);
}

static void test_trusted_uids_names_and_numbers(void **state)
{
	struct passwd *pw = getpwuid(geteuid());
	struct config *c;
	char *t;

	assert_non_null(pw);
	t = fmt("trusted_uids = 0, %s ,1234,,4294967294\n", pw->pw_name);
	c = load_ok(t);
	assert_int_equal(c->ntrusted_uids, 4);
	assert_int_equal(c->trusted_uids[0], 0);
	assert_int_equal(c->trusted_uids[1], geteuid());
	assert_int_equal(c->trusted_uids[2], 1234);
	assert_int_equal(c->trusted_uids[3], 4294967294u);
	assert_true(config_uid_trusted(c, 1234));
	assert_true(config_uid_trusted(c, 0));
	assert_false(config_uid_trusted(c, 1235));
	config_free(c);
	free(t);
	/* Replacing the default: 0 is trusted only if listed. */
	c = load_ok("trusted_uids = 1234\n");
	assert_int_equal(c->ntrusted_uids, 1);
	assert_false(config_uid_trusted(c, 0));
	config_free(c);
}

static void test_trusted_uids_bad_entries_error(void **state)
{
	assert_load_error(
	    "trusted_uids = 0, no-such-user-ramkey-test\n", 1, "trusted_uids");
	assert_load_error("trusted_uids = -1\n", 1, "trusted_uids");
	assert_load_error("trusted_uids = 4294967295\n", 1, "trusted_uids");
	assert_load_error("\ntrusted_uids = , ,\n", 2, "trusted_uids");
}

static void test_other_bad_values_error(void **state)
{
	char *t, *longsock;

	assert_load_error("signature = v2\n", 1, "signature");
	assert_load_error("signature = V3\n", 1, "signature");
	assert_load_error("revoke = destroy\n", 1, "revoke");
	assert_load_error("region_id = CN_Hangzhou\n", 1, "region_id");
	assert_load_error("region_id = cn hangzhou\n", 1, "region_id");
	assert_load_error("socket = run/agent.sock\n", 1, "socket");
	assert_load_error("state_dir = var/lib/ramkey\n", 1, "state_dir");
	assert_load_error("ca_file = ca.pem\n", 1, "ca_file");
	assert_load_error(
	    "credentials_file = ~/creds\n", 1, "credentials_file");
	assert_load_error("ram_user = %r\n", 1, "ram_user");
	assert_load_error("ram_user = %x\n", 1, "ram_user");
	assert_load_error("ram_user = user%\n", 1, "ram_user");
	assert_load_error(
	    "max_connections_per_uid = 0\n", 1, "max_connections_per_uid");
	assert_load_error(
	    "max_connections_per_uid = 100001\n", 1, "max_connections_per_uid");
	longsock = malloc(120);
	assert_non_null(longsock);
	memset(longsock, 's', 119);
	longsock[0] = '/';
	longsock[108] = '\0';
	t = fmt("socket = %s\n", longsock);
	assert_load_error(t, 1, "socket");
	free(t);
	longsock[107] = '\0';
	t = fmt("socket = %s\n", longsock);
	config_free(load_ok(t));
	free(t);
	free(longsock);
}

static void test_metrics_and_sweep_keys(void **state)
{
	struct config *c;

	c = load_ok("metrics_file = /var/lib/node/ramkey.prom\n"
	    "metrics_interval = 1m\n"
	    "sweep_group = ramkey-users\n"
	    "sweep_prefix = ramkey-\n"
	    "max_ttl = 8h\n"
	    "create_timeout = 2m\n");
	assert_string_equal(c->metrics_file, "/var/lib/node/ramkey.prom");
	assert_int_equal(c->metrics_interval, 60);
	assert_string_equal(c->sweep_group, "ramkey-users");
	assert_string_equal(c->sweep_prefix, "ramkey-");
	/* The default follows max_ttl and create_timeout. */
	assert_int_equal(c->sweep_min_age, 8 * 3600 + 120 + 600);
	assert_int_equal(config_sweep_min_age_floor(c), 8 * 3600 + 120 + 600);
	config_free(c);
	/* At the bound, and above it. */
	c = load_ok("max_ttl = 8h\ncreate_timeout = 2m\nsweep_min_age = "
	    "8h12m\n");
	assert_int_equal(c->sweep_min_age, 8 * 3600 + 12 * 60);
	config_free(c);
	c = load_ok("sweep_min_age = 2d\n");
	assert_int_equal(c->sweep_min_age, 2 * 86400);
	config_free(c);
	/* Below it, whichever order the keys come in. */
	assert_load_error("sweep_min_age = 8h11m\nmax_ttl = 8h\n"
	    "create_timeout = 2m\n", 1, "sweep_min_age");
	assert_load_error("sweep_min_age = 12h\n", 1, "sweep_min_age");
	assert_load_error("sweep_min_age = 0\n", 1, "sweep_min_age");
	assert_load_error("metrics_file = ramkey.prom\n", 1, "metrics_file");
	assert_load_error("metrics_file = /var/lib/node/\n", 1,
	    "metrics_file");
	assert_load_error("metrics_interval = 0\n", 1, "metrics_interval");
	assert_load_error("metrics_interval = soon\n", 1,
	    "metrics_interval");
	assert_load_error("sweep_group = ram users\n", 1, "sweep_group");
	assert_load_error("sweep_prefix = ramkey/\n", 1, "sweep_prefix");
}

static void test_line_without_equals_error(void **state)
{
	char *path = put("socket = /run/a.sock\njust words\n", 0644);
	char *err = NULL, *prefix = fmt("%s:2: ", path);
	struct config *c = NULL;

	assert_int_equal(config_load(path, true, &c, &err), RAMKEY_ERR_CONFIG);
	assert_null(c);
	assert_int_equal(strncmp(err, prefix, strlen(prefix)), 0);
	free(err);
	free(prefix);
	free(path);
}

static void test_overlong_line_error(void **state)
{
	char *big = malloc(5000), *t, *path, *err = NULL, *prefix;
	struct config *c = NULL;

	assert_non_null(big);
	memset(big, 'a', 4999);
	big[4999] = '\0';
	t = fmt("# ok\nram_user = %s\n", big);
	path = put(t, 0644);
	prefix = fmt("%s:2: ", path);
	assert_int_equal(config_load(path, true, &c, &err), RAMKEY_ERR_CONFIG);
	assert_int_equal(strncmp(err, prefix, strlen(prefix)), 0);
	free(err);
	free(prefix);
	free(path);
	free(t);
	free(big);
}

/* Load raw bytes (which may hold a NUL) and expect an error at line. */
static void assert_raw_load_error(const char *buf, size_t len, unsigned line)
{
	char *path = fmt("%s/raw%u", tmpdir, serial++), *err = NULL, *prefix;
	struct config *c = (struct config *)1;
	FILE *f = fopen(path, "w");

	assert_non_null(f);
	assert_int_equal(fwrite(buf, 1, len, f), len);
	assert_int_equal(fclose(f), 0);
	assert_int_equal(config_load(path, true, &c, &err), RAMKEY_ERR_CONFIG);
	assert_null(c);
	prefix = fmt("%s:%u: ", path, line);
	assert_int_equal(strncmp(err, prefix, strlen(prefix)), 0);
	free(prefix);
	free(err);
	free(path);
}

static void test_nul_byte_in_line_error(void **state)
{
	static const char a[] = "# ok\nsocket = /run/a.sock\0/../../x\n";
	static const char b[] = "\0socket = /run/a.sock\n";

	/* Never silently cut a line short. */
	assert_raw_load_error(a, sizeof(a) - 1, 2);
	assert_raw_load_error(b, sizeof(b) - 1, 1);
}

static void test_errp_may_be_null(void **state)
{
	char *path = put("bogus = 1\n", 0644);
	struct config *c = NULL;

	assert_int_equal(config_load(path, true, &c, NULL), RAMKEY_ERR_CONFIG);
	assert_null(c);
	free(path);
}

/* ---- admin credentials ---- */

static struct config *with_credentials_file(const char *path)
{
	char *t = fmt("credentials_file = %s\n", path);
	struct config *c = load_ok(t);

	free(t);
	return c;
}

static const char good_ini[] = "[default]\n"
			       "type = access_key\n"
			       "access_key_id = " KEY_ID "\n"
			       "access_key_secret = s3cr3t/+=value\n";

static void assert_secret_in_sodium_memory(char *secret)
{
	/* sodium_malloc memory can be protected; plain heap cannot. */
	assert_int_equal(sodium_mprotect_readonly(secret), 0);
	assert_int_equal(sodium_mprotect_readwrite(secret), 0);
}

static void test_credentials_from_environment(void **state)
{
	char *missing = fmt("%s/no-credentials", tmpdir);
	struct config *c = with_credentials_file(missing);
	struct source_spec *ac = NULL;
	char *err = NULL;

	setenv("ALIBABA_CLOUD_ACCESS_KEY_ID", KEY_ID, 1);
	setenv("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "env secret with spaces", 1);
	assert_int_equal(source_resolve(c, &ac, &err), 0);
	unsetenv("ALIBABA_CLOUD_ACCESS_KEY_ID");
	unsetenv("ALIBABA_CLOUD_ACCESS_KEY_SECRET");
	assert_non_null(ac);
	assert_string_equal(ac->key_id, KEY_ID);
	assert_string_equal(ac->secret, "env secret with spaces");
	assert_string_equal(ac->where, "the environment");
	assert_string_equal(ac->origin, "env");
	assert_null(ac->token);
	assert_secret_in_sodium_memory(ac->secret);
	source_spec_free(ac);
	source_spec_free(NULL);
	config_free(c);
	free(missing);
}

static void test_credentials_environment_needs_both(void **state)
{
	char *missing = fmt("%s/no-credentials", tmpdir);
	struct config *c = with_credentials_file(missing);
	struct source_spec *ac = NULL;
	char *err = NULL;

	/* One of the two is not enough: the file is used, and it is
	 * missing. */
	setenv("ALIBABA_CLOUD_ACCESS_KEY_ID", KEY_ID, 1);
	setenv("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "", 1);
	assert_int_equal(source_resolve(c, &ac, &err), RAMKEY_ERR_CONFIG);
	unsetenv("ALIBABA_CLOUD_ACCESS_KEY_ID");
	unsetenv("ALIBABA_CLOUD_ACCESS_KEY_SECRET");
	assert_null(ac);
	assert_non_null(strstr(err, missing));
	assert_non_null(strstr(err, "ALIBABA_CLOUD_ACCESS_KEY_ID"));
	free(err);
	config_free(c);
	free(missing);
}

static void test_credentials_environment_bad_key_id(void **state)
{
	struct config *c = with_credentials_file("/nonexistent");
	struct source_spec *ac = NULL;
	char *err = NULL;

	setenv("ALIBABA_CLOUD_ACCESS_KEY_ID", "LTAI bad id", 1);
	setenv("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "x", 1);
	assert_int_equal(source_resolve(c, &ac, &err), RAMKEY_ERR_CONFIG);
	unsetenv("ALIBABA_CLOUD_ACCESS_KEY_ID");
	unsetenv("ALIBABA_CLOUD_ACCESS_KEY_SECRET");
	assert_null(ac);
	assert_non_null(strstr(err, "ALIBABA_CLOUD_ACCESS_KEY_ID"));
	free(err);
	config_free(c);
}

static void test_credentials_from_file_0600(void **state)
{
	char *path = put(good_ini, 0600);
	struct config *c = with_credentials_file(path);
	struct source_spec *ac = NULL;
	char *err = NULL;

	assert_int_equal(source_resolve(c, &ac, &err), 0);
	assert_null(err);
	assert_string_equal(ac->key_id, KEY_ID);
	assert_string_equal(ac->secret, "s3cr3t/+=value");
	assert_string_equal(ac->where, path);
	assert_string_equal(ac->origin, "file");
	assert_int_equal(ac->type, SOURCE_STATIC);
	assert_secret_in_sodium_memory(ac->secret);
	source_spec_free(ac);
	/* 0400 is as good. */
	assert_int_equal(chmod(path, 0400), 0);
	assert_int_equal(source_resolve(c, &ac, &err), 0);
	source_spec_free(ac);
	config_free(c);
	free(path);
}

static void test_credentials_group_or_world_access_refused(void **state)
{
	static const mode_t modes[] = {
	    0640, 0604, 0660, 0606, 0620, 0602, 0644};
	size_t i;

	for (i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
		char *path = put(good_ini, modes[i]), *want;
		struct config *c = with_credentials_file(path);
		struct source_spec *ac = NULL;
		char *err = NULL;

		assert_int_equal(
		    source_resolve(c, &ac, &err), RAMKEY_ERR_CONFIG);
		assert_null(ac);
		assert_non_null(err);
		want = fmt("%04o", (unsigned)modes[i]);
		if (strstr(err, want) == NULL)
			print_error(
			    "\"%s\" does not name mode %s\n", err, want);
		assert_non_null(strstr(err, want));
		assert_non_null(strstr(err, "chmod 600"));
		assert_non_null(strstr(err, path));
		assert_null(strstr(err, "s3cr3t"));
		free(want);
		free(err);
		config_free(c);
		free(path);
	}
}

static void test_credentials_owned_by_other_user_refused(void **state)
{
	char *path, *err = NULL;
	struct config *c;
	struct source_spec *ac = NULL;

	if (geteuid() != 0) {
		print_message("needs root; skipped\n");
		skip();
	}
	path = put(good_ini, 0600);
	assert_int_equal(chown(path, 4242, 4242), 0);
	c = with_credentials_file(path);
	assert_int_equal(source_resolve(c, &ac, &err), RAMKEY_ERR_CONFIG);
	assert_null(ac);
	assert_non_null(strstr(err, "4242"));
	assert_non_null(strstr(err, path));
	free(err);
	config_free(c);
	free(path);
}

static void assert_credentials_refused(const char *text, const char *needle)
{
	char *path = put(text, 0600), *err = NULL;
	struct config *c = with_credentials_file(path);
	struct source_spec *ac = (struct source_spec *)1;

	assert_int_equal(source_resolve(c, &ac, &err), RAMKEY_ERR_CONFIG);
	assert_null(ac);
	assert_non_null(err);
	assert_non_null(strstr(err, path));
	if (needle != NULL && strstr(err, needle) == NULL)
		print_error("\"%s\" does not mention \"%s\"\n", err, needle);
	if (needle != NULL)
		assert_non_null(strstr(err, needle));
	assert_null(strstr(err, "s3cr3t"));
	free(err);
	config_free(c);
	free(path);
}

static void test_credentials_missing_keys_refused(void **state)
{
	assert_credentials_refused("[default]\ntype = access_key\n"
				   "access_key_id = " KEY_ID "\n",
	    "access_key_secret");
	assert_credentials_refused("[default]\ntype = access_key\n"
				   "access_key_secret = s3cr3t\n",
	    "access_key_id");
	assert_credentials_refused("[default]\naccess_key_id = " KEY_ID "\n"
				   "access_key_secret =\n",
	    "access_key_secret");
	assert_credentials_refused("[default]\naccess_key_id = bad id\n"
				   "access_key_secret = s3cr3t\n",
	    NULL);
	assert_credentials_refused("", NULL);
	assert_credentials_refused("[default]\nthis is not ini\n", NULL);
}

static void test_credentials_default_section_only(void **state)
{
	static const char text[] = "[prod]\n"
				   "access_key_id = LTAIprod0000000000001\n"
				   "access_key_secret = prod-secret\n"
				   "\n"
				   "[default]\n"
				   "type = access_key\n"
				   "access_key_id = " KEY_ID "\n"
				   "access_key_secret = default-secret\n"
				   "[other]\n"
				   "access_key_id = LTAIother000000000001\n"
				   "access_key_secret = other-secret\n";
	char *path = put(text, 0600), *err = NULL;
	struct config *c = with_credentials_file(path);
	struct source_spec *ac = NULL;

	assert_int_equal(source_resolve(c, &ac, &err), 0);
	assert_string_equal(ac->key_id, KEY_ID);
	assert_string_equal(ac->secret, "default-secret");
	source_spec_free(ac);
	config_free(c);
	free(path);
	/* Keys outside [default] are never used. */
	assert_credentials_refused("[prod]\naccess_key_id = " KEY_ID "\n"
				   "access_key_secret = s3cr3t\n",
	    "[default]");
	assert_credentials_refused("access_key_id = " KEY_ID "\n"
				   "access_key_secret = s3cr3t\n",
	    "[default]");
}

static void test_credentials_unknown_type_refused(void **state)
{
	assert_credentials_refused("[default]\ntype = sts\n"
				   "access_key_id = " KEY_ID "\n"
				   "access_key_secret = s3cr3t\n",
	    "access_key, ecs_ram_role or ram_role_arn");
}

static void test_credentials_comments_whitespace_crlf(void **state)
{
	static const char text[] = "# admin key\r\n"
				   "; managed by hand\r\n"
				   "[default]\r\n"
				   "  type=access_key  \r\n"
				   "\taccess_key_id\t=\t" KEY_ID "\r\n"
				   "access_key_secret =   spaced-secret   \r\n";
	char *path = put(text, 0600), *err = NULL;
	struct config *c = with_credentials_file(path);
	struct source_spec *ac = NULL;

	assert_int_equal(source_resolve(c, &ac, &err), 0);
	assert_string_equal(ac->key_id, KEY_ID);
	assert_string_equal(ac->secret, "spaced-secret");
	source_spec_free(ac);
	config_free(c);
	free(path);
}

static void test_credentials_nul_byte_refused(void **state)
{
	static const char text[] = "[default]\naccess_key_id = " KEY_ID "\n"
				   "access_key_secret = s3cr3t\0tail\n";
	char *path = fmt("%s/nul%u", tmpdir, serial++), *err = NULL;
	struct config *c;
	struct source_spec *ac = NULL;
	FILE *f = fopen(path, "w");

	/* The secret is not silently cut at the NUL. */
	assert_non_null(f);
	assert_int_equal(
	    fwrite(text, 1, sizeof(text) - 1, f), sizeof(text) - 1);
	assert_int_equal(fclose(f), 0);
	assert_int_equal(chmod(path, 0600), 0);
	c = with_credentials_file(path);
	assert_int_equal(source_resolve(c, &ac, &err), RAMKEY_ERR_CONFIG);
	assert_null(ac);
	assert_non_null(strstr(err, path));
	assert_null(strstr(err, "s3cr3t"));
	free(err);
	config_free(c);
	free(path);
}

static void test_credentials_symlink_or_directory_refused(void **state)
{
	char *real = put(good_ini, 0600), *link = fmt("%s/link", tmpdir);
	char *dir = fmt("%s/dir", tmpdir), *err = NULL;
	struct config *c;
	struct source_spec *ac = NULL;

	assert_int_equal(symlink(real, link), 0);
	c = with_credentials_file(link);
	assert_int_equal(source_resolve(c, &ac, &err), RAMKEY_ERR_CONFIG);
	assert_null(ac);
	free(err);
	config_free(c);
	assert_int_equal(mkdir(dir, 0700), 0);
	c = with_credentials_file(dir);
	err = NULL;
	assert_int_equal(source_resolve(c, &ac, &err), RAMKEY_ERR_CONFIG);
	assert_null(ac);
	assert_non_null(strstr(err, dir));
	free(err);
	config_free(c);
	free(dir);
	free(link);
	free(real);
}

/* ---- the agent's own credential: credential_source and the file ---- */

static void test_credential_source_keys(void **state)
{
	struct config *c;

	c = load_ok("credential_source = env\n");
	assert_int_equal(c->credential_source, CRED_SOURCE_ENV);
	config_free(c);
	c = load_ok("credential_source = file\n");
	assert_int_equal(c->credential_source, CRED_SOURCE_FILE);
	config_free(c);
	c = load_ok("credential_source = auto\n"
		    "metadata_url = http://[fd00::200]:8080/\n");
	assert_int_equal(c->credential_source, CRED_SOURCE_AUTO);
	assert_string_equal(c->metadata_url, "http://[fd00::200]:8080/");
	config_free(c);
	assert_load_error("credential_source = ecs\n", 1, "credential_source");
	assert_load_error("credential_source = ENV\n", 1, "credential_source");
	/* The metadata service is plain http, without a path. */
	assert_load_error("metadata_url = https://100.100.100.200\n", 1,
	    "metadata_url");
	assert_load_error("metadata_url = http://100.100.100.200/latest\n", 1,
	    "metadata_url");
	assert_load_error("metadata_url = http://u@100.100.100.200\n", 1,
	    "metadata_url");
	assert_load_error("metadata_url = http://100.100.100.200:0\n", 1,
	    "metadata_url");
	assert_load_error("imds_v1 = sometimes\n", 1, "imds_v1");
	assert_load_error("imds_unrestricted_ok = 2\n", 1,
	    "imds_unrestricted_ok");
	assert_load_error("sts_endpoint = sts.aliyuncs.com\n", 1,
	    "sts_endpoint");
	assert_load_error("sts_endpoint = http://127.0.0.1:1\n", 1,
	    "sts_endpoint");
	c = load_ok("sts_endpoint = http://127.0.0.1:1\nallow_http = yes\n");
	config_free(c);
}

static struct config *with_source(const char *source, const char *path)
{
	char *t = fmt("credential_source = %s\ncredentials_file = %s\n"
	    "metadata_url = http://127.0.0.1:9\n", source, path);
	struct config *c = load_ok(t);

	free(t);
	return c;
}

static struct source_spec *resolve_ok(struct config *c)
{
	struct source_spec *spec = NULL;
	char *err = NULL;
	int r = source_resolve(c, &spec, &err);

	if (r != 0)
		print_error("refused: %s\n", err);
	assert_int_equal(r, 0);
	assert_null(err);
	assert_non_null(spec->choice);
	assert_null(strchr(spec->choice, '\n'));
	return spec;
}

static char *resolve_error(struct config *c)
{
	struct source_spec *spec = (struct source_spec *)1;
	char *err = NULL;

	assert_int_equal(source_resolve(c, &spec, &err), RAMKEY_ERR_CONFIG);
	assert_null(spec);
	assert_non_null(err);
	assert_null(strchr(err, '\n'));
	return err;
}

static void test_source_auto_order(void **state)
{
	char *file = put(good_ini, 0600), *missing = fmt("%s/none", tmpdir);
	struct config *c = with_source("auto", file);
	struct source_spec *spec;
	char *err;

	/* env first, and the file named as present but not used */
	setenv("ALIBABA_CLOUD_ACCESS_KEY_ID", KEY_ID, 1);
	setenv("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "env-secret", 1);
	spec = resolve_ok(c);
	assert_string_equal(spec->origin, "env");
	assert_int_equal(spec->type, SOURCE_STATIC);
	assert_string_equal(spec->secret, "env-secret");
	assert_non_null(strstr(spec->choice, "the environment"));
	assert_non_null(strstr(spec->choice, "also present, not used"));
	assert_non_null(strstr(spec->choice, file));
	assert_null(strstr(spec->choice, "env-secret"));
	source_spec_free(spec);
	/* credential_source = file: the file, the environment ignored */
	config_free(c);
	c = with_source("file", file);
	spec = resolve_ok(c);
	assert_string_equal(spec->origin, "file");
	assert_string_equal(spec->secret, "s3cr3t/+=value");
	assert_non_null(strstr(spec->choice,
	    "ALIBABA_CLOUD_ACCESS_KEY_ID in the environment"));
	source_spec_free(spec);
	unsetenv("ALIBABA_CLOUD_ACCESS_KEY_ID");
	unsetenv("ALIBABA_CLOUD_ACCESS_KEY_SECRET");
	/* auto without the environment: the file, nothing else present */
	config_free(c);
	c = with_source("auto", file);
	spec = resolve_ok(c);
	assert_string_equal(spec->origin, "file");
	assert_null(strstr(spec->choice, "also present"));
	source_spec_free(spec);
	/* neither: not Alibaba Cloud hardware here, so an error that says
	 * what was looked for (the metadata service is never asked) */
	config_free(c);
	c = with_source("auto", missing);
	err = resolve_error(c);
	assert_non_null(strstr(err, missing));
	assert_non_null(strstr(err, "ALIBABA_CLOUD_ACCESS_KEY_ID"));
	assert_non_null(strstr(err, "Alibaba Cloud"));
	free(err);
	/* env asked for and missing */
	config_free(c);
	c = with_source("env", file);
	err = resolve_error(c);
	assert_non_null(strstr(err, "ALIBABA_CLOUD_ACCESS_KEY_SECRET"));
	free(err);
	/* ecs_ram_role: the metadata service, role asked for there */
	config_free(c);
	c = with_source("ecs_ram_role", file);
	spec = resolve_ok(c);
	assert_string_equal(spec->origin, "ecs_ram_role");
	assert_int_equal(spec->type, SOURCE_IMDS);
	assert_string_equal(spec->metadata_url, "http://127.0.0.1:9");
	assert_null(spec->role_name);
	assert_null(spec->secret);
	assert_non_null(strstr(spec->choice, file));
	source_spec_free(spec);
	config_free(c);
	free(missing);
	free(file);
}

static void test_dmi_vendor(void **state)
{
	assert_true(config_dmi_is_alibaba("Alibaba Cloud\n"));
	assert_true(config_dmi_is_alibaba("Alibaba Cloud ECS"));
	assert_true(config_dmi_is_alibaba("alibaba cloud"));
	assert_false(config_dmi_is_alibaba("QEMU\n"));
	assert_false(config_dmi_is_alibaba("Amazon EC2"));
	assert_false(config_dmi_is_alibaba(""));
	assert_false(config_dmi_is_alibaba(NULL));
}

static void test_source_env_security_token(void **state)
{
	struct config *c = with_source("env", "/nonexistent");
	struct source_spec *spec;
	char *err;

	setenv("ALIBABA_CLOUD_ACCESS_KEY_ID", "STS.env0000000000000000001", 1);
	setenv("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "env-secret", 1);
	setenv("ALIBABA_CLOUD_SECURITY_TOKEN", "CAIStokentoken", 1);
	spec = resolve_ok(c);
	assert_string_equal(spec->token, "CAIStokentoken");
	assert_secret_in_sodium_memory(spec->token);
	assert_string_equal(spec->profile_type, "sts_token");
	assert_int_equal(spec->token_expires, 0);
	assert_non_null(strstr(spec->choice, "security token"));
	source_spec_free(spec);
	setenv("ALIBABA_CLOUD_SECURITY_TOKEN_EXPIRATION",
	    "2030-01-02T03:04:05Z", 1);
	spec = resolve_ok(c);
	assert_int_equal(spec->token_expires, 1893553445);
	source_spec_free(spec);
	setenv("ALIBABA_CLOUD_SECURITY_TOKEN_EXPIRATION", "tomorrow", 1);
	err = resolve_error(c);
	assert_non_null(strstr(err, "ALIBABA_CLOUD_SECURITY_TOKEN_EXPIRATION"));
	assert_null(strstr(err, "CAIS"));
	free(err);
	unsetenv("ALIBABA_CLOUD_SECURITY_TOKEN_EXPIRATION");
	unsetenv("ALIBABA_CLOUD_SECURITY_TOKEN");
	unsetenv("ALIBABA_CLOUD_ACCESS_KEY_ID");
	unsetenv("ALIBABA_CLOUD_ACCESS_KEY_SECRET");
	config_free(c);
}

static void test_credentials_ecs_ram_role_profile(void **state)
{
	char *path = put("[default]\ntype = ecs_ram_role\n"
	    "role_name = my-role.1\n", 0600);
	struct config *c = with_source("file", path);
	struct source_spec *spec = resolve_ok(c);

	assert_string_equal(spec->origin, "file");
	assert_int_equal(spec->type, SOURCE_IMDS);
	assert_string_equal(spec->profile_type, "ecs_ram_role");
	assert_string_equal(spec->role_name, "my-role.1");
	assert_string_equal(spec->metadata_url, "http://127.0.0.1:9");
	assert_string_equal(spec->where, path);
	assert_null(spec->key_id);
	source_spec_free(spec);
	config_free(c);
	free(path);
	/* role_name is optional */
	path = put("[default]\ntype = ecs_ram_role\n", 0600);
	c = with_source("file", path);
	spec = resolve_ok(c);
	assert_null(spec->role_name);
	source_spec_free(spec);
	config_free(c);
	free(path);
	assert_credentials_refused("[default]\ntype = ecs_ram_role\n"
	    "role_name = ../../etc\n", "role_name");
}

static void test_credentials_ram_role_arn_profile(void **state)
{
	static const char arn[] = "acs:ram::1234567890123456:role/ramkey-agent";
	char *text = fmt("[default]\ntype = ram_role_arn\n"
	    "access_key_id = " KEY_ID "\naccess_key_secret = s3cr3t\n"
	    "role_arn = %s\nrole_session_name = agent@host-1\n"
	    "external_id = abc:123/x\n", arn);
	char *path = put(text, 0600);
	struct config *c = with_source("auto", path);
	struct source_spec *spec = resolve_ok(c);

	assert_string_equal(spec->origin, "file");
	assert_int_equal(spec->type, SOURCE_ASSUME_ROLE);
	assert_string_equal(spec->profile_type, "ram_role_arn");
	assert_string_equal(spec->key_id, KEY_ID);
	assert_string_equal(spec->secret, "s3cr3t");
	assert_secret_in_sodium_memory(spec->secret);
	assert_string_equal(spec->role_arn, arn);
	assert_string_equal(spec->session_name, "agent@host-1");
	assert_string_equal(spec->external_id, "abc:123/x");
	assert_string_equal(spec->sts_endpoint, "https://sts.aliyuncs.com");
	assert_non_null(strstr(spec->choice, arn));
	assert_null(strstr(spec->choice, "s3cr3t"));
	source_spec_free(spec);
	config_free(c);
	free(path);
	free(text);
	assert_credentials_refused("[default]\ntype = ram_role_arn\n"
	    "access_key_id = " KEY_ID "\naccess_key_secret = s3cr3t\n",
	    "role_arn");
	assert_credentials_refused("[default]\ntype = ram_role_arn\n"
	    "access_key_id = " KEY_ID "\naccess_key_secret = s3cr3t\n"
	    "role_arn = acs:ram::12:user/x\n", "role_arn");
	assert_credentials_refused("[default]\ntype = ram_role_arn\n"
	    "role_arn = acs:ram::12:role/x\n", "access_key_id");
	assert_credentials_refused("[default]\ntype = ram_role_arn\n"
	    "access_key_id = " KEY_ID "\naccess_key_secret = s3cr3t\n"
	    "role_arn = acs:ram::12:role/x\nrole_session_name = a b\n",
	    "role_session_name");
	assert_credentials_refused("[default]\ntype = ram_role_arn\n"
	    "access_key_id = " KEY_ID "\naccess_key_secret = s3cr3t\n"
	    "role_arn = acs:ram::12:role/x\nexternal_id = x\n",
	    "external_id");
}

static void test_named_files(void **state)
{
	char *file = put(good_ini, 0600), *t;
	struct config_file files[CONFIG_FILES_MAX];
	struct config *c;
	struct source_spec *spec;
	size_t n;

	t = fmt("ca_file = /etc/ramkey/ca.pem\ncredentials_file = %s\n", file);
	c = load_ok(t);
	spec = resolve_ok(c);
	n = config_named_files(c, spec, files, CONFIG_FILES_MAX);
	assert_int_equal(n, 2);
	assert_string_equal(files[0].key, "ca_file");
	assert_string_equal(files[0].path, "/etc/ramkey/ca.pem");
	assert_string_equal(files[1].key, "credentials_file");
	assert_string_equal(files[1].path, file);
	source_spec_free(spec);
	/* The credentials file is not opened when another source is used. */
	setenv("ALIBABA_CLOUD_ACCESS_KEY_ID", KEY_ID, 1);
	setenv("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "env-secret", 1);
	spec = resolve_ok(c);
	n = config_named_files(c, spec, files, CONFIG_FILES_MAX);
	assert_int_equal(n, 1);
	assert_string_equal(files[0].key, "ca_file");
	unsetenv("ALIBABA_CLOUD_ACCESS_KEY_ID");
	unsetenv("ALIBABA_CLOUD_ACCESS_KEY_SECRET");
	source_spec_free(spec);
	config_free(c);
	free(t);
	free(file);
}

static void test_ram_user_prefix_warning(void **state)
{
	static const struct {
		const char *tmpl;
		bool warns;
	} cases[] = {
		{ "%u", true }, { "%U", true }, { "%h", true },
		{ "%u-ramkey", true }, { "ramkey-%u", false },
		{ "r%u", false }, { "%H-%u", false }, { "%%u", false },
	};
	char buf[512], *t;
	struct config *c;
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		t = fmt("ram_user = %s\n", cases[i].tmpl);
		c = load_ok(t);
		buf[0] = '\0';
		assert_int_equal(config_ram_user_warning(c, buf, sizeof(buf)),
		    cases[i].warns);
		if (cases[i].warns) {
			assert_non_null(strstr(buf, "user/*"));
			assert_non_null(strstr(buf, "ramkey-%u"));
		}
		config_free(c);
		free(t);
	}
}

/* The role map's own errors (it is another file) come after the line of
 * agent.conf that named it (fuzz_config). */
static void test_role_map_errors_name_the_config_line(void **state)
{
	char *map = put("alice = not-an-arn\n", 0644);
	char *text = fmt("credential = sts\n# the map\nrole_map = %s\n", map);

	assert_load_error(text, 3, "role_map");
	assert_load_error("credential = sts\nrole_map = /%r\n", 2, "role_map");
	free(text);
	free(map);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_defaults_when_file_missing_without_c),
	    cmocka_unit_test(test_missing_file_with_c_is_error),
	    cmocka_unit_test(test_empty_file_gives_defaults),
	    cmocka_unit_test(test_every_key_parsed),
	    cmocka_unit_test(test_other_accepted_values),
	    cmocka_unit_test(test_whitespace_trimmed),
	    cmocka_unit_test(test_comments_skipped),
	    cmocka_unit_test(test_hash_inside_value_is_not_a_comment),
	    cmocka_unit_test(test_empty_value_means_unset),
	    cmocka_unit_test(test_unknown_key_error),
	    cmocka_unit_test(test_duplicate_key_error),
	    cmocka_unit_test(test_bad_duration_error),
	    cmocka_unit_test(test_zero_ttl_error),
	    cmocka_unit_test(test_bad_bool_error),
	    cmocka_unit_test(test_bad_url_error),
	    cmocka_unit_test(test_http_endpoint_needs_allow_http),
	    cmocka_unit_test(test_min_uid_zero_error),
	    cmocka_unit_test(test_unknown_allowed_group_error),
	    cmocka_unit_test(test_bad_mint_rate_error),
	    cmocka_unit_test(test_mint_rate_forms),
	    cmocka_unit_test(test_mint_rate_long_value_not_truncated),
	    cmocka_unit_test(test_fetch_ttl_clamped_to_max_ttl),
	    cmocka_unit_test(test_trusted_uids_names_and_numbers),
	    cmocka_unit_test(test_trusted_uids_bad_entries_error),
	    cmocka_unit_test(test_other_bad_values_error),
	    cmocka_unit_test(test_metrics_and_sweep_keys),
	    cmocka_unit_test(test_line_without_equals_error),
	    cmocka_unit_test(test_overlong_line_error),
	    cmocka_unit_test(test_nul_byte_in_line_error),
	    cmocka_unit_test(test_errp_may_be_null),
	    cmocka_unit_test(test_credentials_from_environment),
	    cmocka_unit_test(test_credentials_environment_needs_both),
	    cmocka_unit_test(test_credentials_environment_bad_key_id),
	    cmocka_unit_test(test_credentials_from_file_0600),
	    cmocka_unit_test(test_credentials_group_or_world_access_refused),
	    cmocka_unit_test(test_credentials_owned_by_other_user_refused),
	    cmocka_unit_test(test_credentials_missing_keys_refused),
	    cmocka_unit_test(test_credentials_default_section_only),
	    cmocka_unit_test(test_credentials_unknown_type_refused),
	    cmocka_unit_test(test_credential_source_keys),
	    cmocka_unit_test(test_source_auto_order),
	    cmocka_unit_test(test_dmi_vendor),
	    cmocka_unit_test(test_source_env_security_token),
	    cmocka_unit_test(test_credentials_ecs_ram_role_profile),
	    cmocka_unit_test(test_credentials_ram_role_arn_profile),
	    cmocka_unit_test(test_named_files),
	    cmocka_unit_test(test_ram_user_prefix_warning),
	    cmocka_unit_test(test_credentials_comments_whitespace_crlf),
	    cmocka_unit_test(test_credentials_nul_byte_refused),
	    cmocka_unit_test(test_credentials_symlink_or_directory_refused),
	    cmocka_unit_test(test_role_map_errors_name_the_config_line),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
