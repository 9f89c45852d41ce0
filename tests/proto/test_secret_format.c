/*
 * proto.secret_format: the secret_file formats (json, ini, env, cli) and the
 * External-mode JSON of credential-process. json is exactly the Terraform
 * resource's file; every format keeps any secret intact through its own
 * reader (a JSON parser, sh, an INI reader); only json can carry a
 * PGP-encrypted secret.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <json-c/json.h>
#include <sodium.h>

#include "locked_mem.h"
#include "ramkey_err.h"
#include "seal.h"
#include "secret_format.h"

#define KEY_ID "LTAI5tExample00000000001"
#define SECRET "PupkTg8jdmau1cXxYacgE736PJabcd"
#define DATE "2026-11-27T20:18:10Z"
#define FPR "0123456789abcdef0123456789abcdef01234567"

/* Secrets a RAM emulator (or a hostile one) may hand out. */
static const char *const tricky[] = {
    "it's",
    "say \"hi\"",
    "back\\slash\\",
    "$HOME${HOME}$(id)",
    "`id`",
    "with space",
    "two\nlines",
    "trailing newline\n",
    "\ttab\r\x01\x1f\x7f",
    "'\"$\\` \n",
    "''''",
    "a=b;c#d[e]",
    "\xc3\xa9t\xc3\xa9 \xe2\x82\xac",
    "-n",
    "%s%n",
    "=",
    " leading and trailing ",
};

static struct ramkey_credential plain_cred(const char *secret)
{
	struct ramkey_credential c = {
	    .access_key_id = KEY_ID,
	    .secret = secret,
	    .create_date = DATE,
	    .status = "Active",
	    .region_id = "cn-shanghai",
	};

	return c;
}

static char *render_ok(
    enum ramkey_format f, const struct ramkey_credential *c, size_t *lenp)
{
	char *out = NULL;
	size_t len = 0;

	assert_int_equal(ramkey_format_render(f, c, &out, &len), 0);
	assert_non_null(out);
	assert_int_equal(strlen(out), len);
	if (lenp != NULL)
		*lenp = len;
	return out;
}

static struct json_object *parse_json_strict(const char *text)
{
	struct json_tokener *tok = json_tokener_new();
	struct json_object *o;

	assert_non_null(tok);
	json_tokener_set_flags(
	    tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
	o = json_tokener_parse_ex(tok, text, (int)strlen(text));
	if (o == NULL)
		print_error("not JSON: %s\n---\n%s\n---\n",
		    json_tokener_error_desc(json_tokener_get_error(tok)), text);
	assert_non_null(o);
	json_tokener_free(tok);
	return o;
}

static const char *member(struct json_object *o, const char *k)
{
	struct json_object *v;

	assert_true(json_object_object_get_ex(o, k, &v));
	assert_true(json_object_is_type(v, json_type_string));
	return json_object_get_string(v);
}

static size_t member_count(struct json_object *o)
{
	return (size_t)json_object_object_length(o);
}

/* ---- format names ---- */

static void test_format_names(void **state)
{
	enum ramkey_format f = RAMKEY_FORMAT_EXTERNAL;

	assert_int_equal(ramkey_format_parse("json", &f), 0);
	assert_int_equal(f, RAMKEY_FORMAT_JSON);
	assert_int_equal(ramkey_format_parse("ini", &f), 0);
	assert_int_equal(f, RAMKEY_FORMAT_INI);
	assert_int_equal(ramkey_format_parse("env", &f), 0);
	assert_int_equal(f, RAMKEY_FORMAT_ENV);
	assert_int_equal(ramkey_format_parse("cli", &f), 0);
	assert_int_equal(f, RAMKEY_FORMAT_CLI);
	/* External mode is credential-process output, not a file format. */
	assert_int_equal(
	    ramkey_format_parse("external", &f), RAMKEY_ERR_INVALID);
	assert_int_equal(ramkey_format_parse("JSON", &f), RAMKEY_ERR_INVALID);
	assert_int_equal(ramkey_format_parse("", &f), RAMKEY_ERR_INVALID);
	assert_int_equal(ramkey_format_parse(NULL, &f), RAMKEY_ERR_INVALID);
	assert_string_equal(ramkey_format_name(RAMKEY_FORMAT_JSON), "json");
	assert_string_equal(ramkey_format_name(RAMKEY_FORMAT_CLI), "cli");
	assert_string_equal(
	    ramkey_format_name(RAMKEY_FORMAT_EXTERNAL), "external");
	assert_string_equal(ramkey_format_name((enum ramkey_format)77), "?");
}

/* ---- json ---- */

static void test_json_is_terraform_layout(void **state)
{
	struct ramkey_credential c = plain_cred(SECRET);
	char *out = render_ok(RAMKEY_FORMAT_JSON, &c, NULL);

	/* json.MarshalIndent(AccessKey, "", "\t"): tab indent, keys in
	 * sorted order, ": " between key and value. */
	assert_string_equal(out,
	    "{\n"
	    "\t\"AccessKeyId\": \"" KEY_ID "\",\n"
	    "\t\"AccessKeySecret\": \"" SECRET "\",\n"
	    "\t\"CreateDate\": \"" DATE "\",\n"
	    "\t\"Status\": \"Active\"\n"
	    "}\n");
	ramkey_secure_free(out);
}

static void test_json_output_is_in_locked_memory(void **state)
{
	struct ramkey_credential c = plain_cred(SECRET);
	char *out = render_ok(RAMKEY_FORMAT_JSON, &c, NULL);

	(void)state;
#ifndef MLOCK_IS_A_NO_OP
	assert_true(mapping_locked_kb(out) > 0);
#endif
	ramkey_secure_free(out);
}

static void test_json_parses_with_tricky_secrets(void **state)
{
	size_t i;

	for (i = 0; i < sizeof(tricky) / sizeof(tricky[0]); i++) {
		struct ramkey_credential c = plain_cred(tricky[i]);
		char *out = render_ok(RAMKEY_FORMAT_JSON, &c, NULL);
		struct json_object *o = parse_json_strict(out);
		const char *p;

		assert_string_equal(member(o, "AccessKeySecret"), tricky[i]);
		assert_string_equal(member(o, "AccessKeyId"), KEY_ID);
		assert_string_equal(member(o, "CreateDate"), DATE);
		assert_string_equal(member(o, "Status"), "Active");
		assert_int_equal(member_count(o), 4);
		/* No raw control character reaches the file. */
		for (p = out; *p != '\0'; p++)
			assert_true((unsigned char)*p >= 0x20 || *p == '\n' ||
			    *p == '\t');
		json_object_put(o);
		ramkey_secure_free(out);
	}
}

static void test_json_pgp_variant(void **state)
{
	struct ramkey_credential c = {
	    .access_key_id = KEY_ID,
	    .secret = NULL,
	    .create_date = DATE,
	    .status = "Active",
	    .encrypted_secret = "wcBMA0Xw8dGhQ0a9AQgA+/example==",
	    .key_fingerprint = FPR,
	};
	char *out = render_ok(RAMKEY_FORMAT_JSON, &c, NULL);
	struct json_object *o;

	assert_string_equal(out,
	    "{\n"
	    "\t\"AccessKeyId\": \"" KEY_ID "\",\n"
	    "\t\"CreateDate\": \"" DATE "\",\n"
	    "\t\"EncryptedSecret\": "
	    "\"wcBMA0Xw8dGhQ0a9AQgA+/example==\",\n"
	    "\t\"KeyFingerprint\": \"" FPR "\",\n"
	    "\t\"Status\": \"Active\"\n"
	    "}\n");
	o = parse_json_strict(out);
	assert_false(json_object_object_get_ex(o, "AccessKeySecret", NULL));
	assert_int_equal(member_count(o), 5);
	json_object_put(o);
	ramkey_secure_free(out);
}

static void test_json_pgp_needs_secret_and_fingerprint(void **state)
{
	struct ramkey_credential c = {
	    .access_key_id = KEY_ID,
	    .create_date = DATE,
	    .status = "Active",
	    .encrypted_secret = "aGk=",
	};
	char *out = (char *)"x";
	size_t len = 3;

	assert_int_equal(
	    ramkey_format_render(RAMKEY_FORMAT_JSON, &c, &out, &len),
	    RAMKEY_ERR_INVALID);
	assert_null(out);
	assert_int_equal(len, 0);
	c.encrypted_secret = NULL;
	c.key_fingerprint = FPR;
	assert_int_equal(
	    ramkey_format_render(RAMKEY_FORMAT_JSON, &c, &out, &len),
	    RAMKEY_ERR_INVALID);
	c.key_fingerprint = NULL;
	assert_int_equal(
	    ramkey_format_render(RAMKEY_FORMAT_JSON, &c, &out, &len),
	    RAMKEY_ERR_INVALID);
	c = plain_cred(SECRET);
	c.access_key_id = NULL;
	assert_int_equal(
	    ramkey_format_render(RAMKEY_FORMAT_JSON, &c, &out, &len),
	    RAMKEY_ERR_INVALID);
}

static void test_json_plaintext_wins_over_encrypted(void **state)
{
	struct ramkey_credential c = plain_cred(SECRET);
	struct json_object *o;
	char *out;

	c.encrypted_secret = "aGk=";
	c.key_fingerprint = FPR;
	out = render_ok(RAMKEY_FORMAT_JSON, &c, NULL);
	o = parse_json_strict(out);
	assert_string_equal(member(o, "AccessKeySecret"), SECRET);
	assert_false(json_object_object_get_ex(o, "EncryptedSecret", NULL));
	json_object_put(o);
	ramkey_secure_free(out);
}

/* ---- formats that need the plaintext ---- */

static void test_only_json_takes_an_encrypted_secret(void **state)
{
	static const enum ramkey_format fmts[] = {RAMKEY_FORMAT_INI,
	    RAMKEY_FORMAT_ENV, RAMKEY_FORMAT_CLI, RAMKEY_FORMAT_EXTERNAL};
	struct ramkey_credential c = {
	    .access_key_id = KEY_ID,
	    .create_date = DATE,
	    .status = "Active",
	    .encrypted_secret = "aGk=",
	    .key_fingerprint = FPR,
	};
	size_t i;

	for (i = 0; i < sizeof(fmts) / sizeof(fmts[0]); i++) {
		char *out = (char *)"x";
		size_t len = 3;

		assert_int_equal(ramkey_format_render(fmts[i], &c, &out, &len),
		    RAMKEY_ERR_INVALID);
		assert_null(out);
		assert_int_equal(len, 0);
	}
}

static void test_unknown_format_refused(void **state)
{
	struct ramkey_credential c = plain_cred(SECRET);
	char *out = (char *)"x";
	size_t len = 3;

	assert_int_equal(
	    ramkey_format_render((enum ramkey_format)42, &c, &out, &len),
	    RAMKEY_ERR_INVALID);
	assert_null(out);
}

/* ---- ini ---- */

static void test_ini_layout(void **state)
{
	struct ramkey_credential c = plain_cred(SECRET);
	char *out = render_ok(RAMKEY_FORMAT_INI, &c, NULL);

	assert_string_equal(out,
	    "[default]\n"
	    "type = access_key\n"
	    "access_key_id = " KEY_ID "\n"
	    "access_key_secret = " SECRET "\n");
	ramkey_secure_free(out);
	c.secret = "abc+/=9.-_XYZ"; /* base64-ish: written bare */
	out = render_ok(RAMKEY_FORMAT_INI, &c, NULL);
	assert_non_null(strstr(out, "\naccess_key_secret = abc+/=9.-_XYZ\n"));
	ramkey_secure_free(out);
}

/* The value of `key = ` in an INI text, decoded as a reader following
 * the writer's rule would: bare, or a JSON string in double quotes. */
static char *ini_value(const char *ini, const char *key)
{
	char *copy = strdup(ini), *line, *save = NULL, *res = NULL;

	assert_non_null(copy);
	for (line = strtok_r(copy, "\n", &save); line != NULL;
	     line = strtok_r(NULL, "\n", &save)) {
		size_t kl = strlen(key);

		if (strncmp(line, key, kl) != 0 ||
		    strncmp(line + kl, " = ", 3) != 0)
			continue;
		line += kl + 3;
		if (line[0] == '"') {
			struct json_object *o = parse_json_strict(line);

			assert_true(json_object_is_type(o, json_type_string));
			res = strdup(json_object_get_string(o));
			json_object_put(o);
		} else {
			res = strdup(line);
		}
		break;
	}
	sodium_memzero(copy, strlen(ini));
	free(copy);
	assert_non_null(res);
	return res;
}

static void test_ini_quotes_special_values(void **state)
{
	size_t i;

	for (i = 0; i < sizeof(tricky) / sizeof(tricky[0]); i++) {
		struct ramkey_credential c = plain_cred(tricky[i]);
		char *out = render_ok(RAMKEY_FORMAT_INI, &c, NULL);
		char *v;
		size_t lines = 0;
		const char *p;

		/* Four lines, whatever the secret holds. */
		for (p = out; *p != '\0'; p++)
			lines += *p == '\n';
		assert_int_equal(lines, 4);
		v = ini_value(out, "access_key_secret");
		assert_string_equal(v, tricky[i]);
		free(v);
		v = ini_value(out, "access_key_id");
		assert_string_equal(v, KEY_ID);
		free(v);
		assert_int_equal(
		    strncmp(out, "[default]\ntype = access_key\n", 28), 0);
		ramkey_secure_free(out);
	}
}

/* ---- env ---- */

static char *tmpdir;

static int setup_tmpdir(void **state)
{
	char tmpl[] = "/tmp/ramkey-fmt-XXXXXX";

	if (mkdtemp(tmpl) == NULL)
		return -1;
	tmpdir = strdup(tmpl);
	return tmpdir != NULL ? 0 : -1;
}

static int teardown_tmpdir(void **state)
{
	char cmd[256];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
	if (system(cmd) != 0)
		return -1;
	free(tmpdir);
	return 0;
}

/* Source the file in sh and print one variable exactly. */
static char *sh_value(const char *text, const char *var)
{
	char path[512], cmd[1024], *buf;
	size_t cap = 4096, n = 0, got;
	FILE *f, *p;

	snprintf(path, sizeof(path), "%s/env", tmpdir);
	f = fopen(path, "w");
	assert_non_null(f);
	assert_int_equal(fputs(text, f) >= 0, 1);
	assert_int_equal(fclose(f), 0);
	snprintf(cmd, sizeof(cmd),
	    "cd '%s' && env -i PATH=/usr/bin:/bin sh -c "
	    "'set -eu; . ./env; printf %%s \"$%s\"'",
	    tmpdir, var);
	p = popen(cmd, "r");
	assert_non_null(p);
	buf = malloc(cap);
	assert_non_null(buf);
	while ((got = fread(buf + n, 1, cap - n - 1, p)) > 0)
		n += got;
	buf[n] = '\0';
	assert_int_equal(pclose(p), 0);
	unlink(path);
	return buf;
}

static void test_env_layout(void **state)
{
	struct ramkey_credential c = plain_cred(SECRET);
	char *out = render_ok(RAMKEY_FORMAT_ENV, &c, NULL);

	assert_string_equal(out,
	    "export ALIBABA_CLOUD_ACCESS_KEY_ID='" KEY_ID "'\n"
	    "export ALIBABA_CLOUD_ACCESS_KEY_SECRET='" SECRET "'\n");
	ramkey_secure_free(out);
}

static void test_env_values_survive_sh(void **state)
{
	size_t i;

	for (i = 0; i < sizeof(tricky) / sizeof(tricky[0]); i++) {
		struct ramkey_credential c = plain_cred(tricky[i]);
		char *out = render_ok(RAMKEY_FORMAT_ENV, &c, NULL), *v;

		v = sh_value(out, "ALIBABA_CLOUD_ACCESS_KEY_SECRET");
		if (strcmp(v, tricky[i]) != 0)
			print_error("secret #%zu came back as [%s]\n", i, v);
		assert_string_equal(v, tricky[i]);
		free(v);
		v = sh_value(out, "ALIBABA_CLOUD_ACCESS_KEY_ID");
		assert_string_equal(v, KEY_ID);
		free(v);
		ramkey_secure_free(out);
	}
}

static void test_env_runs_no_command(void **state)
{
	char marker[512], secret[2048], *out, *v;
	struct ramkey_credential c;
	struct stat st;

	snprintf(marker, sizeof(marker), "%s/pwned", tmpdir);
	snprintf(secret, sizeof(secret), "$(touch %s)`touch %s`'; touch %s; '",
	    marker, marker, marker);
	c = plain_cred(secret);
	out = render_ok(RAMKEY_FORMAT_ENV, &c, NULL);
	v = sh_value(out, "ALIBABA_CLOUD_ACCESS_KEY_SECRET");
	assert_string_equal(v, secret);
	assert_int_equal(stat(marker, &st), -1);
	assert_int_equal(errno, ENOENT);
	free(v);
	ramkey_secure_free(out);
}

/* ---- cli and external ---- */

static void test_cli_is_aliyun_config(void **state)
{
	size_t i;

	for (i = 0; i < sizeof(tricky) / sizeof(tricky[0]); i++) {
		struct ramkey_credential c = plain_cred(tricky[i]);
		char *out = render_ok(RAMKEY_FORMAT_CLI, &c, NULL);
		struct json_object *o = parse_json_strict(out), *profiles, *p;

		assert_string_equal(member(o, "current"), "default");
		assert_true(
		    json_object_object_get_ex(o, "profiles", &profiles));
		assert_true(json_object_is_type(profiles, json_type_array));
		assert_int_equal(json_object_array_length(profiles), 1);
		p = json_object_array_get_idx(profiles, 0);
		assert_string_equal(member(p, "name"), "default");
		assert_string_equal(member(p, "mode"), "AK");
		assert_string_equal(member(p, "access_key_id"), KEY_ID);
		assert_string_equal(member(p, "access_key_secret"), tricky[i]);
		assert_string_equal(member(p, "region_id"), "cn-shanghai");
		json_object_put(o);
		ramkey_secure_free(out);
	}
}

static void test_cli_region_defaults_to_cn_hangzhou(void **state)
{
	struct ramkey_credential c = plain_cred(SECRET);
	struct json_object *o, *profiles;
	char *out;

	c.region_id = NULL;
	out = render_ok(RAMKEY_FORMAT_CLI, &c, NULL);
	o = parse_json_strict(out);
	assert_true(json_object_object_get_ex(o, "profiles", &profiles));
	assert_string_equal(
	    member(json_object_array_get_idx(profiles, 0), "region_id"),
	    "cn-hangzhou");
	json_object_put(o);
	ramkey_secure_free(out);
}

static void test_external_is_ak_mode(void **state)
{
	size_t i;

	for (i = 0; i < sizeof(tricky) / sizeof(tricky[0]); i++) {
		struct ramkey_credential c = plain_cred(tricky[i]);
		char *out = render_ok(RAMKEY_FORMAT_EXTERNAL, &c, NULL);
		struct json_object *o = parse_json_strict(out);

		assert_string_equal(member(o, "mode"), "AK");
		assert_string_equal(member(o, "access_key_id"), KEY_ID);
		assert_string_equal(member(o, "access_key_secret"), tricky[i]);
		assert_int_equal(member_count(o), 3);
		/* One line on stdout. */
		assert_int_equal(out[strlen(out) - 1], '\n');
		assert_ptr_equal(strchr(out, '\n'), out + strlen(out) - 1);
		json_object_put(o);
		ramkey_secure_free(out);
	}
}

static void test_long_secret_renders_whole(void **state)
{
	char secret[RAMKEY_SECRET_MAX + 1];
	size_t i;

	for (i = 0; i < RAMKEY_SECRET_MAX; i++)
		secret[i] = (char)(i % 2 ? '"' : '\\');
	secret[RAMKEY_SECRET_MAX] = '\0';
	for (i = RAMKEY_FORMAT_JSON; i <= RAMKEY_FORMAT_EXTERNAL; i++) {
		struct ramkey_credential c = plain_cred(secret);
		size_t len = 0;
		char *out = render_ok((enum ramkey_format)i, &c, &len);

		assert_true(len > RAMKEY_SECRET_MAX);
		ramkey_secure_free(out);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_format_names),
	    cmocka_unit_test(test_json_is_terraform_layout),
	    cmocka_unit_test(test_json_output_is_in_locked_memory),
	    cmocka_unit_test(test_json_parses_with_tricky_secrets),
	    cmocka_unit_test(test_json_pgp_variant),
	    cmocka_unit_test(test_json_pgp_needs_secret_and_fingerprint),
	    cmocka_unit_test(test_json_plaintext_wins_over_encrypted),
	    cmocka_unit_test(test_only_json_takes_an_encrypted_secret),
	    cmocka_unit_test(test_unknown_format_refused),
	    cmocka_unit_test(test_ini_layout),
	    cmocka_unit_test(test_ini_quotes_special_values),
	    cmocka_unit_test(test_env_layout),
	    cmocka_unit_test(test_env_values_survive_sh),
	    cmocka_unit_test(test_env_runs_no_command),
	    cmocka_unit_test(test_cli_is_aliyun_config),
	    cmocka_unit_test(test_cli_region_defaults_to_cn_hangzhou),
	    cmocka_unit_test(test_external_is_ak_mode),
	    cmocka_unit_test(test_long_secret_renders_whole),
	};

	if (sodium_init() < 0)
		return 1;
	return cmocka_run_group_tests(tests, setup_tmpdir, teardown_tmpdir);
}
