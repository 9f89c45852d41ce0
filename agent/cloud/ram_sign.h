/*
 * Request signing for the Alibaba Cloud RPC API (RAM 2015-05-01): RFC 3986
 * percent-encoding, signature v1 (HMAC-SHA1, SignatureVersion=1.0) and v3
 * (ACS3-HMAC-SHA256). Every intermediate string (canonical query, canonical
 * request, string-to-sign, signed headers, Authorization) is returned so
 * that unit tests can check each step against the published vectors.
 *
 * Also a small growable buffer used by the RAM client, nonces and
 * timestamps. Nothing here logs; secrets are only read, never copied
 * except into wiped memory.
 */
#ifndef RAMKEY_RAM_SIGN_H
#define RAMKEY_RAM_SIGN_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

/* Growable byte buffer, always NUL-terminated once anything is appended.
 * Growing wipes the old block, so it can carry secrets. Zero it to init. */
struct ram_buf {
	char *data;
	size_t len, cap;
	size_t max; /* 0 = no limit; else appending past it fails TOO_LARGE */
};

int ram_buf_append(struct ram_buf *b, const void *p, size_t n);
int ram_buf_appends(struct ram_buf *b, const char *s);
/* Append s percent-encoded (RFC 3986, see ram_percent_encode()). */
int ram_buf_append_enc(struct ram_buf *b, const char *s, size_t n);
/* Take the string (never NULL on success: "" for an empty buffer). */
int ram_buf_steal(struct ram_buf *b, char **ret);
/* Wipe and free; accepts a zeroed buffer. */
void ram_buf_free(struct ram_buf *b);

/* One request parameter or header; value NULL means "absent". */
struct ram_param {
	const char *name;
	const char *value;
};

/*
 * RFC 3986 percent-encoding of the UTF-8 bytes of s[0..n): A-Z a-z 0-9
 * - _ . ~ stay, every other byte becomes %XY with uppercase hex (space is
 * %20, never '+'; '*' is %2A). *ret is malloc'ed.
 */
int ram_percent_encode(const char *s, size_t n, char **ret);

/*
 * Canonical query string: parameters with a non-NULL value, sorted by name
 * (byte order), name and value percent-encoded, "k=v" joined by '&'. An
 * empty value gives "k=" as both algorithms define it; the request builder
 * never passes one. Duplicate names are refused (RAMKEY_ERR_INVALID).
 */
int ram_canonical_query(const struct ram_param *params, size_t n, char **ret);

/* --- Signature v1: HMAC-SHA1, SignatureVersion=1.0 --- */

#define RAM_V1_SIGNATURE_LEN 28 /* base64 of 20 bytes */

/* method + "&%2F&" + percent-encode(canonical_query). */
int ram_v1_string_to_sign(
    const char *method, const char *canonical_query, char **ret);
/* Base64(HMAC-SHA1(key, string_to_sign)); key is used as given. */
int ram_v1_hmac(const char *string_to_sign, const void *key, size_t key_len,
    char sig[RAM_V1_SIGNATURE_LEN + 1]);
/* The same with key = secret + "&" (built in wiped memory). */
int ram_v1_signature(const char *string_to_sign, const char *secret,
    size_t secret_len, char sig[RAM_V1_SIGNATURE_LEN + 1]);

/* --- Signature v3: ACS3-HMAC-SHA256 --- */

#define RAM_V3_ALGORITHM "ACS3-HMAC-SHA256"
#define RAM_SHA256_HEX_LEN 64
/* Hex SHA-256 of the empty payload. */
#define RAM_EMPTY_SHA256                                                       \
	"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

struct ram_v3_request {
	const char *method;            /* "POST" */
	const char *uri;               /* "/" for RPC; NULL or "" = "/" */
	const struct ram_param *query; /* as sent in the URL */
	size_t nquery;
	/*
	 * Request headers, any case. Signed: host, content-type and every
	 * x-acs-*; names lowercased, values trimmed, sorted, duplicates
	 * joined with ','. Others (accept, user-agent) are ignored.
	 */
	const struct ram_param *headers;
	size_t nheaders;
	const char *hashed_payload; /* hex SHA-256 of the body */
	const char *access_key_id;
};

struct ram_v3_signed {
	char *canonical_query;
	char *canonical_request;
	char *signed_headers;
	char *string_to_sign;
	char signature[RAM_SHA256_HEX_LEN + 1];
	char *authorization; /* value of the Authorization header */
};

/* Sign with the raw secret (no '&'). out is cleared on entry. */
int ram_v3_sign(const struct ram_v3_request *req, const char *secret,
    size_t secret_len, struct ram_v3_signed *out);
void ram_v3_signed_clear(struct ram_v3_signed *s);

/* Lowercase hex SHA-256. */
int ram_sha256_hex(
    const void *data, size_t len, char out[RAM_SHA256_HEX_LEN + 1]);

/* --- Per-try freshness --- */

#define RAM_NONCE_LEN 36     /* UUID-like, version 4 layout */
#define RAM_TIMESTAMP_LEN 20 /* 2024-05-01T12:00:00Z */

/* Fresh random nonce from libsodium's CSPRNG (sodium_init() first). */
void ram_nonce(char out[RAM_NONCE_LEN + 1]);
/* t as UTC "YYYY-MM-DDTHH:MM:SSZ". */
int ram_timestamp(time_t t, char out[RAM_TIMESTAMP_LEN + 1]);

#endif
