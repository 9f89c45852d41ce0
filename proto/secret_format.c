#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include <sodium.h>

#include "message.h"
#include "ramkey_err.h"
#include "seal.h"
#include "secret_format.h"
#include "util.h"

/* A string builder in locked memory: it holds the secret. */
struct sbuf {
	char *p;
	size_t len, cap;
	int err;
};

static void sb_reserve(struct sbuf *b, size_t more)
{
	char *np;
	size_t ncap;

	if (b->err != 0)
		return;
	if (b->len + more + 1 <= b->cap)
		return;
	ncap = b->cap ? b->cap : 256;
	while (ncap < b->len + more + 1)
		ncap *= 2;
	if ((np = ramkey_secure_alloc(ncap)) == NULL) {
		b->err = RAMKEY_ERR_NOMEM;
		return;
	}
	if (b->p != NULL) {
		memcpy(np, b->p, b->len);
		ramkey_secure_free(b->p);
	}
	b->p = np;
	b->cap = ncap;
}

static void sb_putn(struct sbuf *b, const char *s, size_t n)
{
	sb_reserve(b, n);
	if (b->err != 0)
		return;
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
}

static void sb_puts(struct sbuf *b, const char *s)
{
	sb_putn(b, s, strlen(s));
}

static void sb_json_str(struct sbuf *b, const char *s)
{
	static const char hex[] = "0123456789abcdef";

	sb_puts(b, "\"");
	for (; *s != '\0'; s++) {
		unsigned char c = (unsigned char)*s;
		char esc[7];

		if (c == '"' || c == '\\') {
			esc[0] = '\\';
			esc[1] = (char)c;
			sb_putn(b, esc, 2);
		} else if (c < 0x20 || c == 0x7f) {
			/* esc is counted, not a string */
			// NOLINTNEXTLINE(bugprone-not-null-terminated-result)
			memcpy(esc, "\\u00", 4);
			esc[4] = hex[c >> 4];
			esc[5] = hex[c & 15];
			sb_putn(b, esc, 6);
		} else {
			sb_putn(b, (const char *)&c, 1);
		}
	}
	sb_puts(b, "\"");
}

/* POSIX sh single quotes keep every byte but the quote itself. */
static void sb_sh_str(struct sbuf *b, const char *s)
{
	sb_puts(b, "'");
	for (; *s != '\0'; s++) {
		if (*s == '\'')
			sb_puts(b, "'\\''");
		else
			sb_putn(b, s, 1);
	}
	sb_puts(b, "'");
}

/*
 * INI readers disagree on quoting, so plain values (all real RAM ids and
 * secrets) are written bare; anything else is written as a JSON string in
 * double quotes, which the npm `ini` parser used by Alibaba's Node.js
 * credentials provider decodes.
 */
static void sb_ini_value(struct sbuf *b, const char *s)
{
	const char *p;
	bool plain = *s != '\0';

	for (p = s; *p != '\0'; p++) {
		unsigned char c = (unsigned char)*p;

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		    (c >= '0' && c <= '9') || c == '+' || c == '/' ||
		    c == '=' || c == '.' || c == '_' || c == '-'))
			plain = false;
	}
	if (plain)
		sb_puts(b, s);
	else
		sb_json_str(b, s);
}

static void sb_json_field(struct sbuf *b, const char *indent, const char *k,
    const char *v, bool last)
{
	sb_puts(b, indent);
	sb_json_str(b, k);
	sb_puts(b, ": ");
	sb_json_str(b, v);
	sb_puts(b, last ? "\n" : ",\n");
}

static const char *nz(const char *s)
{
	return s != NULL ? s : "";
}

static void expiration_text(const struct ramkey_credential *c, char out[32])
{
	out[0] = '\0';
	if (c->expiration > 0)
		ramkey_format_time(c->expiration, out);
}

static void render_json(struct sbuf *b, const struct ramkey_credential *c)
{
	char exp[32];

	/* The Terraform provider's layout: tab-indented, keys sorted. */
	expiration_text(c, exp);
	sb_puts(b, "{\n");
	sb_json_field(b, "\t", "AccessKeyId", c->access_key_id, false);
	if (c->secret != NULL)
		sb_json_field(b, "\t", "AccessKeySecret", c->secret, false);
	sb_json_field(b, "\t", "CreateDate", nz(c->create_date), false);
	if (c->secret == NULL)
		sb_json_field(b, "\t", "EncryptedSecret", c->encrypted_secret,
		    false);
	if (c->security_token != NULL)
		sb_json_field(b, "\t", "Expiration", exp, false);
	if (c->secret == NULL)
		sb_json_field(b, "\t", "KeyFingerprint", c->key_fingerprint,
		    false);
	if (c->security_token != NULL)
		sb_json_field(b, "\t", "SecurityToken", c->security_token,
		    false);
	sb_json_field(b, "\t", "Status", nz(c->status), true);
	sb_puts(b, "}\n");
}

static void render_ini(struct sbuf *b, const struct ramkey_credential *c)
{
	sb_puts(b, "[default]\ntype = access_key\naccess_key_id = ");
	sb_ini_value(b, c->access_key_id);
	sb_puts(b, "\naccess_key_secret = ");
	sb_ini_value(b, c->secret);
	sb_puts(b, "\n");
}

static void render_env(struct sbuf *b, const struct ramkey_credential *c)
{
	sb_puts(b, "export ALIBABA_CLOUD_ACCESS_KEY_ID=");
	sb_sh_str(b, c->access_key_id);
	sb_puts(b, "\nexport ALIBABA_CLOUD_ACCESS_KEY_SECRET=");
	sb_sh_str(b, c->secret);
	if (c->security_token != NULL) {
		sb_puts(b, "\nexport ALIBABA_CLOUD_SECURITY_TOKEN=");
		sb_sh_str(b, c->security_token);
	}
	sb_puts(b, "\n");
}

static void render_cli(struct sbuf *b, const struct ramkey_credential *c)
{
	sb_puts(b, "{\n\t\"current\": \"default\",\n\t\"profiles\": [\n"
		   "\t\t{\n");
	sb_json_field(b, "\t\t\t", "name", "default", false);
	sb_json_field(b, "\t\t\t", "mode", c->security_token != NULL ?
	    "StsToken" : "AK", false);
	sb_json_field(b, "\t\t\t", "access_key_id", c->access_key_id, false);
	sb_json_field(b, "\t\t\t", "access_key_secret", c->secret, false);
	if (c->security_token != NULL)
		sb_json_field(b, "\t\t\t", "sts_token", c->security_token,
		    false);
	sb_json_field(b, "\t\t\t", "region_id",
	    c->region_id != NULL ? c->region_id : "cn-hangzhou", true);
	sb_puts(b, "\t\t}\n\t]\n}\n");
}

static void render_external(struct sbuf *b, const struct ramkey_credential *c)
{
	char exp[32];

	sb_puts(b, c->security_token != NULL ? "{\"mode\":\"StsToken\"," :
	    "{\"mode\":\"AK\",");
	sb_puts(b, "\"access_key_id\":");
	sb_json_str(b, c->access_key_id);
	sb_puts(b, ",\"access_key_secret\":");
	sb_json_str(b, c->secret);
	if (c->security_token != NULL) {
		expiration_text(c, exp);
		sb_puts(b, ",\"sts_token\":");
		sb_json_str(b, c->security_token);
		sb_puts(b, ",\"expiration\":");
		sb_json_str(b, exp);
	}
	sb_puts(b, "}\n");
}

static const char *const format_names[] = {
	[RAMKEY_FORMAT_JSON] = "json",
	[RAMKEY_FORMAT_INI] = "ini",
	[RAMKEY_FORMAT_ENV] = "env",
	[RAMKEY_FORMAT_CLI] = "cli",
	[RAMKEY_FORMAT_EXTERNAL] = "external",
};

void ramkey_credential_from_reply(struct ramkey_credential *cred,
    const struct ramkey_reply *rep, const char *secret)
{
	memset(cred, 0, sizeof(*cred));
	cred->access_key_id = rep->key.access_key_id;
	cred->secret = secret;
	cred->create_date = rep->key.create_date;
	cred->status = rep->key.status;
	cred->encrypted_secret = rep->key.encrypted_secret;
	cred->key_fingerprint = rep->key.key_fingerprint;
	cred->region_id = rep->region_id;
	cred->security_token = rep->key.security_token;
	cred->expiration = rep->key.expiration;
}

int ramkey_format_parse(const char *s, enum ramkey_format *fmt)
{
	int i;

	for (i = RAMKEY_FORMAT_JSON; i <= RAMKEY_FORMAT_CLI; i++)
		if (s != NULL && strcmp(s, format_names[i]) == 0) {
			*fmt = (enum ramkey_format)i;
			return 0;
		}
	return RAMKEY_ERR_INVALID;
}

const char *ramkey_format_name(enum ramkey_format fmt)
{
	if ((int)fmt < 0 || fmt > RAMKEY_FORMAT_EXTERNAL)
		return "?";
	return format_names[fmt];
}

int ramkey_format_render(enum ramkey_format fmt,
    const struct ramkey_credential *cred, char **out, size_t *lenp)
{
	struct sbuf b = { 0 };

	*out = NULL;
	*lenp = 0;
	/* Locked memory comes from sodium_malloc, which aborts when libsodium
	 * is not initialised. */
	if (sodium_init() < 0)
		return RAMKEY_ERR_CRYPTO;
	if (cred->access_key_id == NULL)
		return RAMKEY_ERR_INVALID;
	if (cred->secret == NULL && (fmt != RAMKEY_FORMAT_JSON ||
	    cred->encrypted_secret == NULL || cred->key_fingerprint == NULL))
		return RAMKEY_ERR_INVALID;
	if (cred->security_token != NULL && fmt == RAMKEY_FORMAT_INI)
		return RAMKEY_ERR_INVALID;
	switch (fmt) {
	case RAMKEY_FORMAT_JSON:
		render_json(&b, cred);
		break;
	case RAMKEY_FORMAT_INI:
		render_ini(&b, cred);
		break;
	case RAMKEY_FORMAT_ENV:
		render_env(&b, cred);
		break;
	case RAMKEY_FORMAT_CLI:
		render_cli(&b, cred);
		break;
	case RAMKEY_FORMAT_EXTERNAL:
		render_external(&b, cred);
		break;
	default:
		return RAMKEY_ERR_INVALID;
	}
	if (b.err != 0) {
		ramkey_secure_free(b.p);
		return b.err;
	}
	*out = b.p;
	*lenp = b.len;
	return 0;
}
