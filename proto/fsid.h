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

struct ramkey_fsid {
	bool active;
	uid_t saved_fsuid;
	gid_t saved_fsgid;
	int saved_ngroups;
	gid_t *saved_groups;
};

/*
 * Become user (name, uid, gid) for file access. When not running as root,
 * succeeds without change if uid is the caller's own and fails with
 * RAMKEY_ERR_DENIED otherwise. name may be NULL (no supplementary groups).
 */
int ramkey_fsid_drop(const char *name, uid_t uid, gid_t gid,
    struct ramkey_fsid *saved);

/* Undo ramkey_fsid_drop(); a no-op if nothing was dropped. */
int ramkey_fsid_restore(struct ramkey_fsid *saved);

#endif
