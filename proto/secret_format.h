/*
 * secret_file formats (json, ini, env, cli) and the External-mode JSON of
 * `credential-process`. Output goes into sodium_malloc memory because it
 * holds the secret; free it with ramkey_secure_free().
 */
#ifndef RAMKEY_SECRET_FORMAT_H
#define RAMKEY_SECRET_FORMAT_H

#include <stddef.h>
#include <stdint.h>

enum ramkey_format {
	RAMKEY_FORMAT_JSON = 0, /* the Terraform resource's AccessKey object */
	RAMKEY_FORMAT_INI,	/* ~/.alibabacloud/credentials shape */
	RAMKEY_FORMAT_ENV,	/* sh-quoted export lines */
	RAMKEY_FORMAT_CLI,	/* aliyun CLI config.json */
	RAMKEY_FORMAT_EXTERNAL, /* aliyun CLI External-mode process output */
};

struct ramkey_credential {
	const char *access_key_id;
	const char *secret; /* NULL when handed out PGP-encrypted */
	const char *create_date;
	const char *status;
	const char *encrypted_secret; /* base64 OpenPGP message */
	const char *key_fingerprint;
	const char *region_id; /* cli format */
	/* STS: the token, and when the credential expires (0: never) */
	const char *security_token;
	int64_t expiration;
};

struct ramkey_reply;

/* The credential a reply hands out; secret is the opened sealed box, or
 * NULL when the reply carries a PGP-encrypted secret. Borrows from rep. */
void ramkey_credential_from_reply(struct ramkey_credential *cred,
    const struct ramkey_reply *rep, const char *secret);

/* "json", "ini", "env", "cli" -> format; RAMKEY_ERR_INVALID otherwise. */
int ramkey_format_parse(const char *s, enum ramkey_format *fmt);
const char *ramkey_format_name(enum ramkey_format fmt);

/*
 * Render. Formats other than json need the plaintext secret: with only an
 * encrypted secret they fail with RAMKEY_ERR_INVALID. ini cannot carry an
 * STS token (the official SDKs read no type = sts there): RAMKEY_ERR_INVALID.
 * With a token: json adds SecurityToken and Expiration, env adds
 * ALIBABA_CLOUD_SECURITY_TOKEN, cli writes a StsToken profile, and the
 * External-mode output is {"mode":"StsToken",...,"sts_token","expiration"}.
 */
int ramkey_format_render(enum ramkey_format fmt,
    const struct ramkey_credential *cred, char **out, size_t *lenp);

#endif
