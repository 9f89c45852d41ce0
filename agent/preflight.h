/*
 * Checks that need the process's own privileges, run before the agent
 * starts and by --check-config (before any thread exists: they fork):
 *
 *   - every file the configuration names can be opened as the agent's
 *     account would open it (run as root for the unit, the account is the
 *     one the unit runs the agent as);
 *   - whether an ordinary account can reach the instance metadata
 *     service, which hands the instance role's credential to anyone who
 *     asks: root probes from a child that drops to an unprivileged uid.
 */
#ifndef RAMKEY_PREFLIGHT_H
#define RAMKEY_PREFLIGHT_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "config.h"

/* The uid the metadata probe runs as: nobody. */
#define PREFLIGHT_PROBE_UID 65534
#define PREFLIGHT_PROBE_GID 65534
#define PREFLIGHT_PROBE_TIMEOUT_MS 2000

struct preflight_account {
	uid_t uid;
	gid_t gid;
	char name[64];
	bool other;	/* not this process: open the files from a child */
};

/*
 * The account the files are opened as: as_user when given (a name or a
 * uid); else, when root, the RAMKEY_USER account (the unit's User=) if it
 * exists; else this process's own. *errp (malloc'd) for an unknown name.
 */
int preflight_account(const char *as_user, struct preflight_account *out,
    char **errp);
/* This process, as it is. */
void preflight_self(struct preflight_account *out);

/*
 * Open each file for reading as acct. On the first failure *errp is one
 * malloc'd line: "KEY PATH: cannot open as NAME: REASON" (or "not a
 * regular file"). Returns 0 or RAMKEY_ERR_CONFIG (RAMKEY_ERR_SYSTEM when
 * the check itself failed, with *errp saying so).
 */
int preflight_files(const struct preflight_account *acct,
    const struct config_file *files, size_t n, char **errp);

enum preflight_imds {
	PREFLIGHT_IMDS_RESTRICTED,	/* root reaches it, nobody not */
	PREFLIGHT_IMDS_OPEN,		/* an ordinary uid reaches it */
	PREFLIGHT_IMDS_UNKNOWN,		/* cannot tell (detail: why) */
};

/*
 * Can an ordinary account connect to the metadata service at url? Only
 * root can tell (it probes as itself and from a child as
 * PREFLIGHT_PROBE_UID); otherwise the answer is UNKNOWN. detail: one line
 * about what was seen.
 */
enum preflight_imds preflight_imds(const char *url, char *detail,
    size_t len);

#endif
