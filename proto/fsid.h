/*
 * Act on files with another user's filesystem identity: setfsuid/setfsgid
 * and that user's supplementary groups, checked, and restored afterwards.
 * This is what pam_modutil_drop_priv() does; proto cannot link libpam.
 * Only the calling thread's fsuid/fsgid change.
 */
#ifndef RAMKEY_FSID_H
#define RAMKEY_FSID_H

#include <stdbool.h>
#include <sys/types.h>

/* Whose files: the user's name (for the supplementary groups; may be
 * NULL: the primary group only), uid and primary gid. */
struct ramkey_owner {
	const char *name;
	uid_t uid;
	gid_t gid;
};

/*
 * A user's complete filesystem identity: uid, primary gid and the
 * supplementary groups. Looking the groups up asks NSS (files, systemd,
 * LDAP...), which costs a noticeable part of a login the first time in a
 * process; look them up once, and where possible while waiting for
 * something else, then act as the user as often as needed.
 */
struct ramkey_fsid_user {
	uid_t uid;
	gid_t gid;
	int ngroups;
	gid_t *groups; /* NULL when not running as root: nothing to drop */
};

/*
 * Look up owner's identity into *u (cleared first; free with
 * ramkey_fsid_user_clear()). When not running as root there is no other
 * identity to take, and nothing is looked up.
 */
int ramkey_fsid_user_lookup(const struct ramkey_owner *owner,
    struct ramkey_fsid_user *u);

/* Free what ramkey_fsid_user_lookup() allocated; accepts NULL. */
void ramkey_fsid_user_clear(struct ramkey_fsid_user *u);

struct ramkey_fsid {
	bool active;
	uid_t saved_fsuid;
	gid_t saved_fsgid;
	int saved_ngroups;
	gid_t *saved_groups;
};

/*
 * Become u for file access. When not running as root, succeeds without
 * change if u is the caller itself and fails with RAMKEY_ERR_DENIED
 * otherwise.
 */
int ramkey_fsid_drop_user(const struct ramkey_fsid_user *u,
    struct ramkey_fsid *saved);

/*
 * Become user (name, uid, gid) for file access: ramkey_fsid_user_lookup()
 * and ramkey_fsid_drop_user() in one. name may be NULL (no supplementary
 * groups).
 */
int ramkey_fsid_drop(const char *name, uid_t uid, gid_t gid,
    struct ramkey_fsid *saved);

/* Undo a drop; a no-op if nothing was dropped. */
int ramkey_fsid_restore(struct ramkey_fsid *saved);

#endif
