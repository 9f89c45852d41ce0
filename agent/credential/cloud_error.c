/* Cloud API errors (RAM, STS) as kind errors: one line that says what
 * failed, for which principal, and what to do. */
#include <stdio.h>
#include <string.h>

#include "cloud_error.h"
#include "evloop.h"
#include "log.h"
#include "ramkey_err.h"

void cloud_clock_hint(const struct ram_error *err)
{
	static uint64_t last_ms;
	uint64_t now = evloop_now();

	if (err == NULL || err->kind != RAM_ERRK_API ||
	    strcmp(err->code, "InvalidTimeStamp.Expired") != 0 ||
	    (last_ms != 0 && now - last_ms < 60000))
		return;
	last_ms = now;
	log_err("the cloud API says our timestamp is expired: this host's "
	    "clock is off by more than 15 minutes; fix time synchronisation");
}

void cloud_error_to_kind(int rc, const struct ram_error *err,
    const char *what, const char *word, const char *principal,
    struct kind_error *out)
{
	const char *code = err != NULL && err->code[0] ? err->code : NULL;

	cloud_clock_hint(err);
	if (rc == RAMKEY_ERR_UNAVAILABLE) {
		/* The agent had nothing to sign with: the reason is the
		 * whole story, and nothing was sent this time. */
		kind_error_set(out, rc, NULL, "%s", err != NULL &&
		    err->message[0] ? err->message : "the agent has no usable "
		    "credential of its own");
		out->transient = true;
		out->outcome_unknown = err != NULL && err->earlier_try_unknown;
		return;
	}
	if (rc == RAMKEY_ERR_LIMIT)
		kind_error_set(out, rc, code, "RAM user %s already has two "
		    "AccessKeys (LimitExceeded.User.AccessKey): RAM allows two "
		    "per user, account-wide, so one person can hold keys on at "
		    "most two hosts at once; log out elsewhere, delete an "
		    "unused key, or set credential = sts (fleet mode, no such "
		    "limit)", principal);
	else if (code != NULL && strcmp(code, "EntityNotExist.User") == 0)
		kind_error_set(out, RAMKEY_ERR_RAM, code, "RAM user %s does "
		    "not exist (EntityNotExist.User); create it, or fix "
		    "ram_user in agent.conf", principal);
	else if (code != NULL && strcmp(code, "EntityNotExist.Role") == 0)
		kind_error_set(out, RAMKEY_ERR_RAM, code, "role %s does not "
		    "exist (EntityNotExist.Role); create it, or fix role_arn / "
		    "role_map in agent.conf", principal);
	else if (code != NULL && strcmp(code, "NoPermission") == 0)
		kind_error_set(out, RAMKEY_ERR_RAM, code, "%s for %s %s was "
		    "refused (NoPermission): the agent's own credential may "
		    "not do this, or the role does not trust it; check the "
		    "RAM policies", what, word, principal);
	else if (rc == RAMKEY_ERR_RAM_TIMEOUT)
		kind_error_set(out, rc, code, "%s for %s %s: %s", what, word,
		    principal, err != NULL ? err->message : "timed out");
	else
		kind_error_set(out, rc == RAMKEY_ERR_NOMEM ? rc :
		    RAMKEY_ERR_RAM, code, "%s for %s %s failed: %s%s%s", what,
		    word, principal, code != NULL ? code : "",
		    code != NULL ? ": " : "",
		    err != NULL && err->message[0] ? err->message :
		    ram_error_kind_name(err != NULL ? err->kind :
		    RAM_ERRK_LOCAL));
	if (err != NULL) {
		out->transient = err->transport_or_5xx ||
		    (err->code[0] && ram_code_retryable(err->code));
		/* RAM answered with a Code and nothing earlier was in doubt:
		 * nothing was made. Anything else may have made something. */
		out->outcome_unknown = !(err->kind == RAM_ERRK_API &&
		    !err->earlier_try_unknown);
	}
}
