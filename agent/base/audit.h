/*
 * The audit trail: one log line per mint, attach, detach, revoke and
 * denial, with the local user, the principal (RAM user or role), the
 * masked key id, the peer, and the PAM rhost and tty when known. Never a
 * secret.
 */
#ifndef RAMKEY_AUDIT_H
#define RAMKEY_AUDIT_H

#include <stdbool.h>
#include <sys/types.h>

struct audit_who {
	bool known;	/* peer_uid/peer_pid are printed only if known */
	uid_t uid;
	pid_t pid;
	const char *rhost;
	const char *tty;
};

/*
 * "audit: event=E user=U <label>=P key=K [peer_uid=.. peer_pid=..]
 * [rhost=..] [tty=..] [extra]". label is "ram_user" or "role"; NULL
 * arguments print as "-".
 */
void audit_line(const char *event, const char *user, const char *label,
    const char *principal, const char *key_id, const struct audit_who *who,
    const char *extra);

#endif
