#include <grp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/fsuid.h>
#include <unistd.h>

#include "fsid.h"
#include "ramkey_err.h"

#define GROUPS_MAX 65536

/* setfsuid() returns the previous value and never fails visibly: calling it
 * twice is the only way to know the change took. */
static int set_fsuid_checked(uid_t uid)
{
	setfsuid(uid);
	return (uid_t)setfsuid(uid) == uid ? 0 : RAMKEY_ERR_SYSTEM;
}

static int set_fsgid_checked(gid_t gid)
{
	setfsgid(gid);
	return (gid_t)setfsgid(gid) == gid ? 0 : RAMKEY_ERR_SYSTEM;
}

static int user_groups(const char *name, gid_t gid, gid_t **ret, int *nret)
{
	gid_t *g = NULL;
	int n = 32;

	*ret = NULL;
	*nret = 0;
	if (name == NULL) {
		if ((g = malloc(sizeof(*g))) == NULL)
			return RAMKEY_ERR_NOMEM;
		g[0] = gid;
		*ret = g;
		*nret = 1;
		return 0;
	}
	for (;;) {
		int want = n;
		gid_t *ng = realloc(g, (size_t)n * sizeof(*g));

		if (ng == NULL) {
			free(g);
			return RAMKEY_ERR_NOMEM;
		}
		g = ng;
		if (getgrouplist(name, gid, g, &want) != -1) {
			n = want;
			break;
		}
		if (want <= n)
			want = n * 2;
		if (want > GROUPS_MAX) {
			free(g);
			return RAMKEY_ERR_TOO_LARGE;
		}
		n = want;
	}
	*ret = g;
	*nret = n;
	return 0;
}

int ramkey_fsid_user_lookup(const struct ramkey_owner *owner,
    struct ramkey_fsid_user *u)
{
	int r;

	memset(u, 0, sizeof(*u));
	u->uid = owner->uid;
	u->gid = owner->gid;
	if (geteuid() != 0)
		return 0;
	if ((r = user_groups(owner->name, owner->gid, &u->groups,
	    &u->ngroups)) != 0)
		memset(u, 0, sizeof(*u));
	return r;
}

void ramkey_fsid_user_clear(struct ramkey_fsid_user *u)
{
	if (u == NULL)
		return;
	free(u->groups);
	memset(u, 0, sizeof(*u));
}

int ramkey_fsid_drop_user(const struct ramkey_fsid_user *u,
    struct ramkey_fsid *saved)
{
	int r;

	memset(saved, 0, sizeof(*saved));
	if (geteuid() != 0)
		return u->uid == geteuid() ? 0 : RAMKEY_ERR_DENIED;
	if (u->groups == NULL || u->ngroups < 1)
		return RAMKEY_ERR_INVALID; /* not looked up as root */
	saved->saved_ngroups = getgroups(0, NULL);
	if (saved->saved_ngroups < 0) {
		r = RAMKEY_ERR_SYSTEM;
		goto out;
	}
	if ((saved->saved_groups = calloc((size_t)saved->saved_ngroups + 1,
	    sizeof(gid_t))) == NULL) {
		r = RAMKEY_ERR_NOMEM;
		goto out;
	}
	if (getgroups(saved->saved_ngroups, saved->saved_groups) < 0) {
		r = RAMKEY_ERR_SYSTEM;
		goto out;
	}
	saved->saved_fsuid = (uid_t)setfsuid((uid_t)-1);
	saved->saved_fsgid = (gid_t)setfsgid((gid_t)-1);
	if (setgroups((size_t)u->ngroups, u->groups) != 0) {
		r = RAMKEY_ERR_SYSTEM;
		goto out;
	}
	saved->active = true;
	if ((r = set_fsgid_checked(u->gid)) != 0 ||
	    (r = set_fsuid_checked(u->uid)) != 0) {
		(void)ramkey_fsid_restore(saved);
		goto out;
	}
	r = 0;
out:
	if (r != 0 && !saved->active) {
		free(saved->saved_groups);
		memset(saved, 0, sizeof(*saved));
	}
	return r;
}

int ramkey_fsid_drop(const char *name, uid_t uid, gid_t gid,
    struct ramkey_fsid *saved)
{
	struct ramkey_owner owner = { name, uid, gid };
	struct ramkey_fsid_user u;
	int r;

	memset(saved, 0, sizeof(*saved));
	if ((r = ramkey_fsid_user_lookup(&owner, &u)) != 0)
		return r;
	r = ramkey_fsid_drop_user(&u, saved);
	ramkey_fsid_user_clear(&u);
	return r;
}

int ramkey_fsid_restore(struct ramkey_fsid *saved)
{
	int r = 0;

	if (!saved->active)
		return 0;
	/* Try all three even if one fails: leave as little changed as
	 * possible; the caller treats any failure as fatal. */
	if (set_fsuid_checked(saved->saved_fsuid) != 0)
		r = RAMKEY_ERR_SYSTEM;
	if (set_fsgid_checked(saved->saved_fsgid) != 0)
		r = RAMKEY_ERR_SYSTEM;
	if (setgroups((size_t)saved->saved_ngroups, saved->saved_groups) != 0)
		r = RAMKEY_ERR_SYSTEM;
	free(saved->saved_groups);
	memset(saved, 0, sizeof(*saved));
	return r;
}
