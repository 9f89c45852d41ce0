/*
 * Keybase public key lookup ("keybase:NAME" PGP keys), the way
 * Terraform does it: GET <base>/_/api/1.0/user/lookup.json?usernames=NAME
 * &fields=public_keys, status.name must be "OK", and the key is
 * them[0].public_keys.primary.bundle (ASCII-armored).
 *
 * Driven by an evloop through libcurl's multi "socket" interface: nothing
 * blocks the loop. One attempt per lookup, 10 seconds in all, TLS peer and
 * host verification always on, answers bounded to KEYBASE_BODY_MAX. The
 * module never logs; failures come back as an error code and a one-line
 * reason.
 */
#ifndef RAMKEY_KEYBASE_H
#define RAMKEY_KEYBASE_H

#include <stdbool.h>
#include <stddef.h>

struct evloop;
struct keybase;
struct keybase_req;

#define KEYBASE_NAME_MAX 64
#define KEYBASE_BODY_MAX (256 * 1024)
#define KEYBASE_TIMEOUT_MS 10000
#define KEYBASE_DEFAULT_URL "https://keybase.io"

struct keybase_config {
	const char *url;     /* base URL; NULL = KEYBASE_DEFAULT_URL */
	const char *ca_file; /* extra CA file (PEM) added to the system's */
	const char *proxy;   /* or NULL for libcurl's environment rules */
	bool allow_http;     /* accept an http:// url */
};

/* True if name is 1..KEYBASE_NAME_MAX of [A-Za-z0-9_]. */
bool keybase_name_valid(const char *name);

/*
 * The strings are copied. An http:// url without allow_http, a url with a
 * query, fragment or credentials, or an unreadable ca_file is refused with
 * RAMKEY_ERR_CONFIG.
 */
int keybase_new(struct evloop *loop, const struct keybase_config *cfg,
    struct keybase **ret);
/* Lookups already started keep the settings they started with. */
int keybase_reconfigure(struct keybase *kb, const struct keybase_config *cfg);
/* Lookups in flight end without their callbacks. */
void keybase_free(struct keybase *kb);

/*
 * rc: 0 with the armored bundle (NUL-terminated, len bytes, valid during
 * the callback), or
 *   RAMKEY_ERR_KEYBASE_USER  no such user, or the user has no PGP key
 *   RAMKEY_ERR_KEYBASE	      unreachable, timed out, HTTP error, garbage
 *   RAMKEY_ERR_NOMEM
 * why: a one-line reason when rc != 0, else NULL. The callback always runs
 * from the loop, never inside keybase_lookup().
 */
typedef void (*keybase_fn)(
    void *arg, int rc, const char *bundle, size_t len, const char *why);

/* name must satisfy keybase_name_valid() (RAMKEY_ERR_INVALID otherwise). */
int keybase_lookup(struct keybase *kb, const char *name, keybase_fn fn,
    void *arg, struct keybase_req **ret);
/* The callback of a cancelled lookup never runs. */
void keybase_cancel(struct keybase_req *req);

/*
 * Interpret a lookup answer (exposed for tests). http_status is the HTTP
 * status (0 if unknown). On success *bundle is a malloc'd copy of the
 * armored key. On failure why (why_size bytes) gets a one-line reason.
 */
int keybase_parse_lookup(const char *body, size_t len, long http_status,
    const char *name, char **bundle, char *why, size_t why_size);

#endif
