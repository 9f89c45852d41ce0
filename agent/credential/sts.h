/*
 * The sts credential kind (fleet mode): STS AssumeRole of a RAM role per
 * user (or per team). No limit on hosts or sessions and nothing left at
 * RAM to clean up: a credential expires by itself. STS has no API to
 * revoke a token, so ending a lease wipes the secret and the lease stays
 * listed (ended) until its token expires.
 *
 * Renewal is on request only: a lease whose credential has less than
 * renew_before left (and ends before the lease does) gets a fresh one at
 * the next request; after a renewal's first failed try, the current one
 * is handed out while it has a quarter of renew_before left.
 * DurationSeconds is the smaller of duration and the time left until the
 * lease's max_ttl, but at least 900 (STS's minimum).
 */
#ifndef RAMKEY_STS_H
#define RAMKEY_STS_H

#include <stddef.h>
#include <stdint.h>

#include "credential.h"

struct ram_client;

#define STS_KIND "sts"

struct sts_config {
	const char *session_name;	/* role_session_name template */
	uint64_t duration_s;		/* sts_duration */
	uint64_t renew_before_s;	/* sts_renew_before */
	const char *policy;		/* session policy JSON, or NULL */
	const char *external_id;	/* or NULL */
};

/* sts is a client made with the STS endpoint (not owned). The strings
 * are copied. */
int sts_kind_new(struct ram_client *sts, const struct sts_config *cfg,
    struct credential_kind *out);
int sts_kind_reconfigure(struct credential_kind *k,
    const struct sts_config *cfg);

/*
 * A RoleSessionName STS accepts (2-64 of A-Za-z0-9.@-_) from tmpl for
 * user on host: other characters become '-'; when it is too long, the
 * host part (after the last '@') is shortened first, then the whole is cut
 * to 64 characters keeping a short hash of what was cut. out: 65 bytes.
 */
int sts_session_name(const char *tmpl, const char *user, unsigned long uid,
    const char *host, char out[65]);

#endif
