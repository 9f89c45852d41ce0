#include <stdio.h>

#include "audit.h"
#include "log.h"
#include "util.h"

void audit_line(const char *event, const char *user, const char *label,
    const char *principal, const char *key_id, const struct audit_who *who,
    const char *extra)
{
	char masked[RAMKEY_MASKED_MAX] = "-", peer[64] = "";
	const char *rhost = who != NULL ? who->rhost : NULL;
	const char *tty = who != NULL ? who->tty : NULL;

	if (key_id != NULL)
		ramkey_mask_key_id(key_id, masked);
	if (who != NULL && who->known)
		snprintf(peer, sizeof(peer), " peer_uid=%lu peer_pid=%ld",
		    (unsigned long)who->uid, (long)who->pid);
	log_info("audit: event=%s user=%s %s=%s key=%s%s%s%s%s%s%s%s", event,
	    user != NULL ? user : "-", label != NULL ? label : "ram_user",
	    principal != NULL ? principal : "-", masked, peer,
	    rhost != NULL ? " rhost=" : "", rhost != NULL ? rhost : "",
	    tty != NULL ? " tty=" : "", tty != NULL ? tty : "",
	    extra != NULL ? " " : "", extra != NULL ? extra : "");
}
