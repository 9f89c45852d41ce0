#include <errno.h>
#include <string.h>

#include "ramkey_err.h"

struct err_entry {
	int code;
	const char *name;
	const char *text;
};

static const struct err_entry errs[] = {
	{ RAMKEY_OK, "ok", "success" },
	{ RAMKEY_ERR_INTERNAL, "internal", "internal error" },
	{ RAMKEY_ERR_NOMEM, "no_memory", "out of memory" },
	{ RAMKEY_ERR_SYSTEM, "system", "system error" },
	{ RAMKEY_ERR_INVALID, "invalid", "invalid input" },
	{ RAMKEY_ERR_TOO_LARGE, "too_large", "input too large" },
	{ RAMKEY_ERR_PROTOCOL, "protocol", "malformed message" },
	{ RAMKEY_ERR_VERSION, "version", "unsupported protocol version" },
	{ RAMKEY_ERR_TIMEOUT, "timeout", "timed out" },
	{ RAMKEY_ERR_CONNECT, "connect", "agent unreachable" },
	{ RAMKEY_ERR_UNTRUSTED, "untrusted", "not the real agent" },
	{ RAMKEY_ERR_DENIED, "denied", "permission denied" },
	{ RAMKEY_ERR_EXCLUDED, "excluded", "user excluded by policy" },
	{ RAMKEY_ERR_NO_USER, "no_such_user", "no such local user" },
	{ RAMKEY_ERR_RATE, "rate_limited", "rate limit exceeded" },
	{ RAMKEY_ERR_RAM, "ram_error", "RAM refused or failed" },
	{ RAMKEY_ERR_LIMIT, "limit_exceeded", "AccessKey limit exceeded" },
	{ RAMKEY_ERR_STORE, "store_unavailable", "state store not writable" },
	{ RAMKEY_ERR_CRYPTO, "crypto", "encryption failed" },
	{ RAMKEY_ERR_PGP_KEY, "pgp_key_invalid", "unusable PGP key" },
	{ RAMKEY_ERR_KEYBASE, "keybase_unreachable", "Keybase unreachable" },
	{ RAMKEY_ERR_NOT_FOUND, "not_found", "not found" },
	{ RAMKEY_ERR_UNSAFE_PATH, "unsafe_path", "unsafe path" },
	{ RAMKEY_ERR_CONFIG, "config", "configuration error" },
	{ RAMKEY_ERR_BUSY, "busy", "too many requests" },
	{ RAMKEY_ERR_UNAVAILABLE, "unavailable", "agent cannot serve" },
	{ RAMKEY_ERR_IS_DIR, "is_directory", "is a directory" },
	{ RAMKEY_ERR_KEYBASE_USER, "keybase_no_such_user",
	    "Keybase name does not resolve" },
	{ RAMKEY_ERR_RAM_TIMEOUT, "ram_timeout", "RAM operation timed out" },
	{ RAMKEY_ERR_EOF, "eof", "connection closed by peer" },
	{ RAMKEY_ERR_IO, "io", "I/O error" },
};

static const struct err_entry *lookup(int err)
{
	size_t i;

	for (i = 0; i < sizeof(errs) / sizeof(errs[0]); i++)
		if (errs[i].code == err)
			return &errs[i];
	return NULL;
}

const char *ramkey_strerror(int err)
{
	const struct err_entry *e;

	if (err == RAMKEY_ERR_SYSTEM || err == RAMKEY_ERR_IO)
		return strerror(errno);
	if ((e = lookup(err)) == NULL)
		return "unknown error";
	return e->text;
}

const char *ramkey_err_name(int err)
{
	const struct err_entry *e;

	if ((e = lookup(err)) == NULL)
		return "internal";
	return e->name;
}

int ramkey_err_from_name(const char *name)
{
	size_t i;

	if (name == NULL)
		return RAMKEY_ERR_INTERNAL;
	for (i = 0; i < sizeof(errs) / sizeof(errs[0]); i++)
		if (strcmp(errs[i].name, name) == 0)
			return errs[i].code;
	return RAMKEY_ERR_INTERNAL;
}
