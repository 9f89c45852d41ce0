/*
 * The agent's own credential: what signs its RAM calls. This module owns
 * it: where it comes from, its kind (static or temporary), the current key
 * id, secret (sodium_malloc) and security token, its expiry, the renewal
 * timer and backoff, and whether the agent has a usable credential at all.
 * The RAM client asks for it at every try (source_credential(), a
 * ram_credential_fn).
 *
 * Sources:
 *   SOURCE_STATIC       an AccessKey from the environment or the
 *                       credentials file; from the environment possibly
 *                       with a security token, which cannot be renewed
 *   SOURCE_IMDS         the ECS instance RAM role, from the instance
 *                       metadata service (imds.h)
 *   SOURCE_ASSUME_ROLE  ram_role_arn: STS AssumeRole of the agent's own
 *                       role, through a second RAM/STS client that signs
 *                       with a static key allowed nothing but that
 *
 * Renewal of a temporary credential: when it has more than
 * SOURCE_RENEW_BEFORE_MS left, the next fetch is that long before its
 * expiry; after that, the source is asked again after the smaller of
 * SOURCE_POLL_MAX_MS and a third of the time left, never sooner than
 * SOURCE_POLL_MIN_MS (the service may keep handing out the same
 * credential until it rotates it). A failed fetch is retried with backoff
 * (1 s doubling, capped at SOURCE_BACKOFF_MAX_MS) while the old credential
 * stays in use until it expires. Once it has expired, or before the first
 * answer, RAM calls fail at once with the reason; each such call also asks
 * for a fetch, but never more than one per SOURCE_POLL_MIN_MS.
 *
 * Expiry is judged on the monotonic clock from the time left at the
 * answer (Expiration minus the answer's Date header, or minus the local
 * clock without one), and a credential counts as expired
 * SOURCE_EXPIRY_MARGIN_MS early so that no call is signed with one about
 * to run out.
 *
 * Log lines name the source, the kind, masked key ids and expiry; never a
 * secret or a token.
 */
#ifndef RAMKEY_SOURCE_H
#define RAMKEY_SOURCE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ram_client.h"

struct evloop;
struct source;

#define SOURCE_RENEW_BEFORE_MS (15 * 60 * 1000ULL)
#define SOURCE_POLL_MIN_MS 1000ULL
#define SOURCE_POLL_MAX_MS 60000ULL
#define SOURCE_BACKOFF_MAX_MS 60000ULL
#define SOURCE_EXPIRY_MARGIN_MS 3000ULL
/* AssumeRole of the agent's own role. */
#define SOURCE_ROLE_DURATION_S 3600
#define SOURCE_STS_TIMEOUT_MS 20000
#define SOURCE_WHY_MAX 384

enum source_type {
	SOURCE_STATIC = 0,
	SOURCE_IMDS,
	SOURCE_ASSUME_ROLE,
};

/*
 * What the configuration chose (agent.conf's credential_source and the
 * credentials file), as config.c resolves it. Owned strings; secret and
 * token in sodium_malloc memory. source_spec_free() wipes and frees.
 */
struct source_spec {
	char *origin;		/* "env", "file" or "ecs_ram_role" */
	char *where;		/* "the environment", the file, the URL */
	char *profile_type;	/* access_key, ecs_ram_role, ram_role_arn */
	enum source_type type;
	/* SOURCE_STATIC, and the static key of SOURCE_ASSUME_ROLE */
	char *key_id;
	char *secret;
	char *token;		/* SOURCE_STATIC from the environment */
	int64_t token_expires;	/* Unix s; 0: not known */
	/* SOURCE_IMDS */
	char *metadata_url;
	char *role_name;	/* NULL: ask the service */
	bool imds_v1;
	/* SOURCE_ASSUME_ROLE */
	char *role_arn;
	char *session_name;	/* NULL: ramkey-agent@HOST */
	char *external_id;	/* or NULL */
	char *sts_endpoint;
	/* Which source was chosen and what else is present (for the log). */
	char *choice;
};

void source_spec_free(struct source_spec *spec);
/* "the instance metadata service at URL", "AssumeRole of ARN", ... */
void source_spec_describe(const struct source_spec *spec, char *buf,
    size_t len);

/*
 * Make the source. net gives the STS client's ca_file, proxy, allow_http
 * and signature (its endpoint, version and timeouts are the source's).
 * Nothing is fetched before source_start().
 */
int source_new(struct evloop *loop, const struct source_spec *spec,
    const struct ram_client_config *net, struct source **ret);
/* Start fetching (a temporary source); from the loop, never inline. */
int source_start(struct source *s);
/* Accepts NULL; wipes the credential. */
void source_free(struct source *s);

/* A ram_credential_fn; arg is the struct source. */
int source_credential(void *arg, struct ram_credential *out, char *why,
    size_t whylen);

/* Is there a credential the agent can sign with now? */
bool source_usable(const struct source *s);

struct source_status {
	const char *origin;	/* "env", "file", "ecs_ram_role" */
	const char *type;	/* "access_key", "ecs_ram_role", ... */
	bool temporary;
	bool renewable;
	bool usable;
	int64_t expires;	/* Unix s; 0: never or not known */
	char key_id[32];	/* masked; "" before the first credential */
	const char *role;	/* role name or ARN, or NULL */
	char why[SOURCE_WHY_MAX]; /* why not usable, or the last failure */
};
void source_get_status(const struct source *s, struct source_status *st);

/*
 * SIGHUP: take a new static key from spec (a rotated key in the
 * credentials file). RAMKEY_ERR_CONFIG when spec is another kind of source
 * or another role: that changes only at restart.
 */
int source_update(struct source *s, const struct source_spec *spec);

/* The schedule, for tests: the delay before asking again when the
 * credential has remaining_ms left, and the backoff after the n-th
 * failure in a row (without jitter). */
uint64_t source_poll_delay_ms(uint64_t remaining_ms);
uint64_t source_backoff_ms(unsigned failures);

#endif
