#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audit.h"
#include "config.h"
#include "duration.h"
#include "evloop.h"
#include "log.h"
#include "ram_client.h"
#include "ramkey_err.h"
#include "source.h"
#include "sweep.h"
#include "util.h"

/* Pages of ListUsers (100 users each) before we suspect a loop. */
#define PAGES_MAX 100000

/* A key as ListAccessKeys listed it (no secret). */
struct sweep_key {
	char id[RAM_KEY_ID_MAX + 1];
	char status[RAM_STATUS_MAX];
	char create_date[RAM_DATE_MAX];
	int64_t create_time;
};

struct sweep {
	const struct config *cfg;
	struct evloop *loop;
	struct ram_client *ram;
	struct source *src;	/* the credential it signs with */
	FILE *out;
	bool apply;
	/* The dedicated RAM users. */
	char **users;
	size_t nusers, cap;
	/* The call in progress, done synchronously. */
	bool done;
	int rc;
	struct ram_error err;
	bool nomem;
	int64_t server_date;
	bool truncated;
	char marker[RAM_MARKER_MAX + 1];
	struct sweep_key *keys;
	size_t nkeys;
	/* Totals. */
	size_t keys_seen, old, deleted, failed;
};

static bool dedicated(const struct sweep *sw, const char *name)
{
	const char *p = sw->cfg->sweep_prefix;

	return p == NULL || strncmp(name, p, strlen(p)) == 0;
}

static int add_user(struct sweep *sw, const char *name)
{
	char *d;

	if (!dedicated(sw, name))
		return 0;
	if (sw->nusers == sw->cap) {
		size_t n = sw->cap ? sw->cap * 2 : 64;
		char **v = realloc(sw->users, n * sizeof(*v));

		if (v == NULL)
			return RAMKEY_ERR_NOMEM;
		sw->users = v;
		sw->cap = n;
	}
	if ((d = strdup(name)) == NULL)
		return RAMKEY_ERR_NOMEM;
	sw->users[sw->nusers++] = d;
	return 0;
}

/* Results are valid during the callback only: keep what we need. */
static void call_done(void *arg, int rc, const struct ram_result *res,
    const struct ram_error *err)
{
	struct sweep *sw = arg;
	size_t i;

	sw->done = true;
	sw->rc = rc;
	if (rc != 0) {
		sw->err = *err;
		return;
	}
	sw->server_date = res->server_date;
	sw->truncated = res->truncated;
	snprintf(sw->marker, sizeof(sw->marker), "%s", res->marker);
	for (i = 0; i < res->nusers; i++)
		if (add_user(sw, res->users[i]) != 0)
			sw->nomem = true;
	free(sw->keys);
	sw->keys = NULL;
	sw->nkeys = 0;
	if (res->nkeys > 0 &&
	    (sw->keys = calloc(res->nkeys, sizeof(*sw->keys))) == NULL) {
		sw->nomem = true;
		return;
	}
	for (i = 0; i < res->nkeys; i++) {
		struct sweep_key *k = &sw->keys[sw->nkeys++];

		snprintf(k->id, sizeof(k->id), "%s", res->keys[i].id);
		snprintf(k->status, sizeof(k->status), "%s",
		    res->keys[i].status);
		snprintf(k->create_date, sizeof(k->create_date), "%s",
		    res->keys[i].create_date);
		k->create_time = res->keys[i].create_time;
	}
}

/* Wait for the call started with r (its return value). */
static int wait_call(struct sweep *sw, int r)
{
	if (r != 0) {
		memset(&sw->err, 0, sizeof(sw->err));
		snprintf(sw->err.message, sizeof(sw->err.message),
		    "cannot start the call: %s", ramkey_strerror(r));
		return r;
	}
	while (!sw->done)
		if (evloop_run_once(sw->loop, -1) != 0) {
			snprintf(sw->err.message, sizeof(sw->err.message),
			    "the event loop failed");
			return RAMKEY_ERR_SYSTEM;
		}
	if (sw->rc == 0 && sw->nomem) {
		snprintf(sw->err.message, sizeof(sw->err.message),
		    "out of memory");
		return RAMKEY_ERR_NOMEM;
	}
	return sw->rc;
}

static void call_reset(struct sweep *sw)
{
	sw->done = false;
	sw->rc = 0;
	sw->nomem = false;
	sw->server_date = 0;
	sw->truncated = false;
	memset(&sw->err, 0, sizeof(sw->err));
}

/* "Code: message", or the message alone. */
static const char *err_text(const struct sweep *sw, char *buf, size_t len)
{
	snprintf(buf, len, "%s%s%s", sw->err.code, sw->err.code[0] ? ": " :
	    "", sw->err.message);
	return buf;
}

static int list_users(struct sweep *sw)
{
	const char *group = sw->cfg->sweep_group;
	char buf[RAM_CODE_MAX + RAM_MESSAGE_MAX + 4];
	unsigned pages = 0;
	int r;

	sw->marker[0] = '\0';
	do {
		const char *marker = sw->marker[0] != '\0' ? sw->marker : NULL;

		call_reset(sw);
		r = group != NULL ?
		    ram_list_users_for_group(sw->ram, group, marker, call_done,
		    sw, NULL) :
		    ram_list_users(sw->ram, marker, call_done, sw, NULL);
		if ((r = wait_call(sw, r)) != 0) {
			log_err("sweep: %s failed: %s",
			    group != NULL ? "ListUsersForGroup" : "ListUsers",
			    err_text(sw, buf, sizeof(buf)));
			return r;
		}
	} while (sw->truncated && sw->marker[0] != '\0' &&
	    ++pages < PAGES_MAX);
	return 0;
}

static void key_line(struct sweep *sw, const char *what, const char *user,
    const struct sweep_key *k, uint64_t age, const char *why)
{
	char masked[RAMKEY_MASKED_MAX], agebuf[32];

	ramkey_mask_key_id(k->id, masked);
	ramkey_duration_format(age, agebuf, sizeof(agebuf));
	fprintf(sw->out, "%s: ram_user=%s key=%s status=%s created=%s "
	    "age=%s%s%s\n", what, user, masked, k->status, k->create_date,
	    agebuf, why != NULL ? ": " : "", why != NULL ? why : "");
	fflush(sw->out);
}

static int delete_key(struct sweep *sw, const char *user,
    const struct sweep_key *k, uint64_t age)
{
	char buf[RAM_CODE_MAX + RAM_MESSAGE_MAX + 4], extra[128], ages[32];
	int r;

	ramkey_duration_format(age, ages, sizeof(ages));
	snprintf(extra, sizeof(extra), "created=%s age=%s", k->create_date,
	    ages);
	call_reset(sw);
	r = ram_delete_access_key(sw->ram, user, k->id, call_done, sw, NULL);
	if ((r = wait_call(sw, r)) != 0) {
		err_text(sw, buf, sizeof(buf));
		key_line(sw, "delete failed", user, k, age, buf);
		audit_line("sweep-delete-failed", NULL, "ram_user", user, k->id,
		    NULL, extra);
		return r;
	}
	key_line(sw, "deleted", user, k, age, NULL);
	audit_line("sweep-delete", NULL, "ram_user", user, k->id, NULL,
	    extra);
	return 0;
}

/* One user's keys: list them, report (and delete) the old ones. */
static int sweep_user(struct sweep *sw, const char *user)
{
	char buf[RAM_CODE_MAX + RAM_MESSAGE_MAX + 4];
	struct sweep_key *keys = NULL;
	size_t i, nkeys;
	int64_t now;
	int r, status = 0;

	call_reset(sw);
	r = ram_list_access_keys(sw->ram, user, call_done, sw, NULL);
	if ((r = wait_call(sw, r)) != 0) {
		/* Deleted since it was listed: nothing left to sweep. */
		if (strcmp(sw->err.code, "EntityNotExist.User") == 0)
			return 0;
		log_err("sweep: ListAccessKeys of RAM user %s failed: %s",
		    user, err_text(sw, buf, sizeof(buf)));
		return r;
	}
	/* RAM's clock, which also set CreateDate; ours if it sent none. */
	now = sw->server_date > 0 ? sw->server_date : ramkey_wall_now();
	/* Ours now: the deletions below are calls of their own. */
	keys = sw->keys;
	nkeys = sw->nkeys;
	sw->keys = NULL;
	sw->nkeys = 0;
	sw->keys_seen += nkeys;
	for (i = 0; i < nkeys; i++) {
		const struct sweep_key *k = &keys[i];
		uint64_t age = now > k->create_time ?
		    (uint64_t)(now - k->create_time) : 0;

		if (age < sw->cfg->sweep_min_age)
			continue;
		sw->old++;
		if (!sw->apply) {
			key_line(sw, "would delete", user, k, age, NULL);
			continue;
		}
		if ((r = delete_key(sw, user, k, age)) != 0) {
			sw->failed++;
			status = r;
		} else {
			sw->deleted++;
		}
	}
	free(keys);
	return status;
}

static void sweep_free(struct sweep *sw)
{
	size_t i;

	for (i = 0; i < sw->nusers; i++)
		free(sw->users[i]);
	free(sw->users);
	free(sw->keys);
	ram_client_free(sw->ram);
	source_free(sw->src);
	evloop_free(sw->loop);
}

/* A temporary credential (instance role, chained role) is fetched before
 * the first call; give it as long as a RAM call may take. */
static int source_wait(struct sweep *sw, uint64_t timeout_ms)
{
	uint64_t deadline = evloop_now() + timeout_ms;
	struct source_status st;

	if (source_start(sw->src) != 0)
		return RAMKEY_ERR_NOMEM;
	while (!source_usable(sw->src)) {
		if (evloop_now() >= deadline) {
			source_get_status(sw->src, &st);
			log_err("no usable credential to sweep with: %s",
			    st.why[0] ? st.why : "none came in time");
			return RAMKEY_ERR_UNAVAILABLE;
		}
		if (evloop_run_once(sw->loop, 200) != 0)
			return RAMKEY_ERR_SYSTEM;
	}
	return 0;
}

int sweep_run(const struct config *cfg, const struct source_spec *spec,
    bool apply, FILE *out)
{
	struct ram_client_config rc;
	struct sweep sw;
	char age[32], who[160];
	size_t i;
	int status = SWEEP_EXIT_START;
	bool ram_failed = false;

	memset(&sw, 0, sizeof(sw));
	sw.cfg = cfg;
	sw.out = out;
	sw.apply = apply;
	if (cfg->sweep_group == NULL && cfg->sweep_prefix == NULL) {
		log_err("%s: --sweep needs sweep_group or sweep_prefix: the "
		    "RAM users dedicated to ramkey, the only ones the sweep "
		    "may touch", cfg->path);
		return SWEEP_EXIT_CONFIG;
	}
	memset(&rc, 0, sizeof(rc));
	rc.endpoint = cfg->endpoint;
	rc.ca_file = cfg->ca_file;
	rc.proxy = cfg->proxy;
	rc.allow_http = cfg->allow_http;
	rc.signature = cfg->signature;
	rc.create_timeout_ms = cfg->create_timeout * 1000;
	rc.update_timeout_ms = cfg->update_timeout * 1000;
	rc.delete_timeout_ms = cfg->delete_timeout * 1000;
	/* The reads wait as long as a mint's ListAccessKeys does. */
	rc.read_timeout_ms = cfg->create_timeout * 1000;
	if (evloop_new(&sw.loop) != 0 ||
	    ram_client_new(sw.loop, &rc, &sw.ram) != 0 ||
	    source_new(sw.loop, spec, &rc, &sw.src) != 0) {
		log_err("%s: endpoint %s: cannot set up the RAM client",
		    cfg->path, cfg->endpoint);
		goto out;
	}
	ram_client_set_credential_source(sw.ram, source_credential, sw.src);
	if (source_wait(&sw, rc.read_timeout_ms) != 0) {
		status = SWEEP_EXIT_RAM;
		goto out;
	}
	ramkey_duration_format(cfg->sweep_min_age, age, sizeof(age));
	if (cfg->sweep_group != NULL)
		snprintf(who, sizeof(who), "members of RAM group %s%s%s",
		    cfg->sweep_group, cfg->sweep_prefix != NULL ?
		    " named " : "", cfg->sweep_prefix != NULL ?
		    cfg->sweep_prefix : "");
	else
		snprintf(who, sizeof(who), "RAM users named %s*",
		    cfg->sweep_prefix);
	if (cfg->sweep_group != NULL && cfg->sweep_prefix != NULL)
		strncat(who, "*", sizeof(who) - strlen(who) - 1);
	fprintf(out, "sweep%s: keys older than %s of %s\n",
	    apply ? "" : " (dry run)", age, who);
	fflush(out);
	if (list_users(&sw) != 0) {
		status = SWEEP_EXIT_RAM;
		goto out;
	}
	for (i = 0; i < sw.nusers; i++)
		if (sweep_user(&sw, sw.users[i]) != 0)
			ram_failed = true;
	if (sw.old == 0)
		fprintf(out, "nothing to delete: %zu RAM user(s), %zu key(s), "
		    "none older than %s\n", sw.nusers, sw.keys_seen, age);
	else if (!apply)
		fprintf(out, "dry run: would delete %zu of %zu key(s) of %zu "
		    "RAM user(s); --apply deletes them\n", sw.old,
		    sw.keys_seen, sw.nusers);
	else
		fprintf(out, "deleted %zu of %zu key(s) older than %s "
		    "(%zu failed) of %zu RAM user(s)\n", sw.deleted, sw.old,
		    age, sw.failed, sw.nusers);
	if (apply && sw.deleted > 0)
		log_info("sweep: deleted %zu key(s) older than %s of %s",
		    sw.deleted, age, who);
	if (ram_failed)
		log_err("sweep: some RAM calls failed (see above); run it "
		    "again");
	status = ram_failed ? SWEEP_EXIT_RAM : SWEEP_EXIT_OK;
out:
	fflush(out);
	sweep_free(&sw);
	return status;
}
