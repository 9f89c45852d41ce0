/*
 * The ECS instance metadata service as a source of the instance RAM role's
 * temporary credential, asynchronous on the evloop (libcurl through
 * curl_loop, as the RAM client):
 *
 *   PUT /latest/api/token            X-aliyun-ecs-metadata-token-ttl-seconds
 *   GET /latest/meta-data/ram/security-credentials/        the role's name
 *   GET /latest/meta-data/ram/security-credentials/ROLE    the credential
 *
 * the two GETs with the header X-aliyun-ecs-metadata-token. A fresh
 * session token is taken for every fetch and wiped after it. Token-less
 * (v1) requests are made only when allowed and the service refuses to
 * hand out a token.
 *
 * Plain http:// to the configured base URL only: never through a proxy
 * (whatever the environment says), no redirects, a new connection per
 * request, IMDS_CONNECT_TIMEOUT_MS to connect and IMDS_TIMEOUT_MS per
 * request. Answers are bounded and wiped once parsed. The library never
 * logs; reasons come back as one line without a secret.
 */
#ifndef RAMKEY_IMDS_H
#define RAMKEY_IMDS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ram_client.h"

struct evloop;
struct imds;

#define IMDS_DEFAULT_URL "http://100.100.100.200"
#define IMDS_CONNECT_TIMEOUT_MS 1000
#define IMDS_TIMEOUT_MS 2000
#define IMDS_TOKEN_TTL_S 60
#define IMDS_ROLE_MAX 64
#define IMDS_BODY_MAX (32 * 1024)

struct imds_config {
	const char *base_url;	/* http://HOST[:PORT], NULL: the default */
	const char *role;	/* the role's name, or NULL: ask the service */
	bool allow_v1;		/* token-less if no token is given */
};

struct imds_result {
	/* secret and token in locked memory (secure_buf.h) owned by the client,
	 * valid during the callback only */
	const struct ram_sts_credential *cred;
	const char *role;
	/* the credential answer's Date header, Unix s; 0 if none */
	int64_t server_date;
	bool token_less;	/* fetched with the v1 protocol */
};

/*
 * One fetch's end: rc 0 and res, or rc RAMKEY_ERR_UNAVAILABLE (no answer,
 * an HTTP error), RAMKEY_ERR_PROTOCOL (an answer we cannot use) or
 * RAMKEY_ERR_NOMEM, with why (one line, saying what the service did:
 * "unreachable: ...", "answered HTTP 500 for ..."; the caller names the
 * service). Called from the event loop,
 * never from inside imds_fetch().
 */
typedef void (*imds_done_fn)(void *arg, int rc, const struct imds_result *res,
    const char *why);

/* RAMKEY_ERR_CONFIG for a base URL that is not plain http://HOST[:PORT]. */
int imds_new(struct evloop *loop, const struct imds_config *cfg,
    struct imds **ret);
/* In-flight fetches end without their callbacks. Accepts NULL. */
void imds_free(struct imds *m);

/* Start a fetch; one at a time (RAMKEY_ERR_BUSY otherwise). */
int imds_fetch(struct imds *m, imds_done_fn fn, void *arg);
/* Abandon the fetch in progress, if any: its callback will not run. */
void imds_cancel(struct imds *m);
bool imds_busy(const struct imds *m);

/*
 * Split a metadata base URL, "http://HOST[:PORT]" with an optional "/",
 * into its host (IPv6 without brackets) and port (80 by default). Returns
 * 0, RAMKEY_ERR_CONFIG or RAMKEY_ERR_NOMEM. host is malloc'd.
 */
int imds_url_parse(const char *url, char **host, unsigned *port);

/* A role name as the service hands it out: 1..IMDS_ROLE_MAX characters
 * of A-Za-z0-9 . _ - */
bool imds_role_valid(const char *s, size_t len);

#endif
