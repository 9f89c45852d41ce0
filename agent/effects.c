#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "effects.h"
#include "evloop.h"
#include "log.h"
#include "secret_file.h"
#include "worker.h"

/* A slow filesystem (NFS homes) may take its time; not forever. */
#define REMOVE_DEADLINE_MS 30000

struct removal {
	struct worker_task task; /* first */
	char *user;
	uid_t uid;
	gid_t gid;
	char *path;
	int rc;
	bool removed;
	char why[512];
};

static void removal_run(struct worker_task *t)
{
	struct removal *rm = (struct removal *)t;
	struct ramkey_owner owner = { rm->user, rm->uid, rm->gid };

	rm->why[0] = '\0';
	rm->rc = ramkey_secret_file_remove(rm->path, &owner, &rm->removed,
	    rm->why, sizeof(rm->why));
}

static void removal_done(struct worker_task *t, int rc)
{
	struct removal *rm = (struct removal *)t;

	if (rc != 0)
		log_warn("removing %s, the secret file of the last session of "
		    "%s, whose process died, took too long", rm->path,
		    rm->user);
	else if (rm->rc != 0)
		log_warn("cannot remove %s, the secret file of a session of %s "
		    "whose process died: %s", rm->path, rm->user, rm->why);
	else if (rm->removed)
		log_info("removed %s, the secret file of the last session of "
		    "%s, whose process died", rm->path, rm->user);
}

static void removal_release(struct worker_task *t)
{
	struct removal *rm = (struct removal *)t;

	free(rm->user);
	free(rm->path);
	free(rm);
}

static void remove_file(void *arg, const char *user, uid_t uid, gid_t gid,
    const char *path)
{
	struct worker_pool *pool = arg;
	struct removal *rm;
	char key[300];

	/* Acting as another user needs root; an unprivileged agent leaves
	 * the file (its credential is revoked all the same). */
	if (geteuid() != 0)
		return;
	if ((rm = calloc(1, sizeof(*rm))) == NULL ||
	    (rm->user = strdup(user)) == NULL ||
	    (rm->path = strdup(path)) == NULL) {
		if (rm != NULL)
			removal_release(&rm->task);
		log_err("out of memory removing %s", path);
		return;
	}
	rm->uid = uid;
	rm->gid = gid;
	snprintf(key, sizeof(key), "user:%.280s", user);
	if (worker_submit(pool, &rm->task, key, evloop_now() +
	    REMOVE_DEADLINE_MS, removal_run, removal_done,
	    removal_release) != 0) {
		log_err("cannot queue the removal of %s", path);
		removal_release(&rm->task);
	}
}

void effects_init(struct lease_effects *fx, struct worker_pool *pool)
{
	memset(fx, 0, sizeof(*fx));
	fx->arg = pool;
	fx->remove_file = remove_file;
}
