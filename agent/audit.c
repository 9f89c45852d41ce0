/* The audit trail (DESIGN §5): one line per mint, attach, detach, revoke
 * and denial, with masked key ids and never a secret. */
#include <stdio.h>

#include "agent.h"
#include "log.h"
#include "util.h"

void audit(const char *event, const char *user, const char *ram_user,
    const char *key_id, const struct ucred *peer, const char *rhost,
    const char *tty, const char *extra)
{
	char masked[RAMKEY_MASKED_MAX] = "-", who[64] = "";

	if (key_id != NULL)
		ramkey_mask_key_id(key_id, masked);
	if (peer != NULL)
		snprintf(who, sizeof(who), " peer_uid=%lu peer_pid=%ld",
		    (unsigned long)peer->uid, (long)peer->pid);
	log_info("audit: event=%s user=%s ram_user=%s key=%s%s%s%s%s%s%s%s",
	    event, user != NULL ? user : "-", ram_user != NULL ? ram_user : "-",
	    masked, who, rhost != NULL ? " rhost=" : "", rhost ? rhost : "",
	    tty != NULL ? " tty=" : "", tty ? tty : "", extra ? " " : "",
	    extra ? extra : "");
}

#define FLOOD_AUDIT_MS 10000

void audit_flood_deny(struct uid_stats *u, const char *user,
    const struct ucred *peer, const char *op, const char *reason)
{
	uint64_t now = evloop_now();
	char extra[256];

	if (u->flood_audit_ms != 0 && now - u->flood_audit_ms <
	    FLOOD_AUDIT_MS) {
		u->flood_suppressed++;
		return;
	}
	snprintf(extra, sizeof(extra), "op=%s reason=\"%s\" suppressed=%lu",
	    op, reason, (unsigned long)u->flood_suppressed);
	audit("deny", user, NULL, NULL, peer, NULL, NULL, extra);
	u->flood_audit_ms = now;
	u->flood_suppressed = 0;
}
