/* Lease lifecycle: holders attach and detach, timers end leases, and an
 * ended lease hands its key to the revoker. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "agent.h"
#include "lease_store.h"
#include "log.h"
#include "ramkey_err.h"
#include "secret_arena.h"
#include "secret_file.h"
#include "strmap.h"
#include "util.h"

int64_t wall_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Monotonic deadline for a wall-clock instant (timers run on the
 * monotonic clock; records carry wall-clock times across restarts). */
uint64_t wall_to_mono(int64_t when)
{
	int64_t delta = when - wall_ms();
	uint64_t now = evloop_now();

	if (delta <= 0)
		return now;
	return now + (uint64_t)delta;
}

struct user_state *agent_user(struct agent *a, const char *name)
{
	struct user_state *u = strmap_get(a->users, name);

	if (u != NULL)
		return u;
	if ((u = calloc(1, sizeof(*u))) == NULL)
		return NULL;
	if ((u->name = strdup(name)) == NULL ||
	    strmap_put(a->users, name, u) != 0) {
		free(u->name);
		free(u);
		return NULL;
	}
	return u;
}

static void reconcile_timer_fired(void *arg);

struct ram_user_state *agent_ram_user(struct agent *a, const char *name)
{
	struct ram_user_state *rs = strmap_get(a->ram_users, name);

	if (rs != NULL)
		return rs;
	if ((rs = calloc(1, sizeof(*rs))) == NULL)
		return NULL;
	if ((rs->name = strdup(name)) == NULL ||
	    strmap_put(a->ram_users, name, rs) != 0) {
		free(rs->name);
		free(rs);
		return NULL;
	}
	rs->agent = a;
	ev_timer_init(&rs->reconcile_timer, reconcile_timer_fired, rs);
	return rs;
}

static void reconcile_timer_fired(void *arg)
{
	struct ram_user_state *rs = arg;

	if (rs->intent != NULL)
		reconcile_intent(rs->agent, rs);
}

static void max_ttl_fired(void *arg);
static void ttl_fired(void *arg);
static void holders_gone(struct agent *a, struct lease *l, const char *why);
static void files_forget_key(struct agent *a, const struct lease *l);

struct lease *lease_new(struct agent *a, const char *user, uid_t uid,
    gid_t gid, const char *ram_user)
{
	struct lease *l = calloc(1, sizeof(*l));

	if (l == NULL)
		return NULL;
	if ((l->user = strdup(user)) == NULL ||
	    (l->ram_user = strdup(ram_user)) == NULL) {
		lease_free(l);
		return NULL;
	}
	l->uid = uid;
	l->gid = gid;
	l->agent = a;
	snprintf(l->status, sizeof(l->status), "Active");
	ev_timer_init(&l->max_ttl_timer, max_ttl_fired, l);
	ev_timer_init(&l->ttl_timer, ttl_fired, l);
	return l;
}

void session_free(struct session *s)
{
	if (s == NULL)
		return;
	free(s->secret_file);
	free(s->rhost);
	free(s->tty);
	free(s->service);
	free(s);
}

void lease_free(struct lease *l)
{
	if (l == NULL)
		return;
	free(l->user);
	free(l->ram_user);
	free(l->key_fingerprint);
	free(l);
}

void lease_link(struct agent *a, struct lease *l)
{
	struct user_state *u = agent_user(a, l->user);

	strmap_put(a->leases, l->key_id, l);
	if (u != NULL) {
		l->next_of_user = u->leases;
		u->leases = l;
	}
	if (l->state == LEASE_REVOKING)
		a->pending_revocations++;
}

static void lease_unlink(struct agent *a, struct lease *l)
{
	struct user_state *u = strmap_get(a->users, l->user);
	struct lease **pp;

	if (strmap_get(a->leases, l->key_id) == l)
		strmap_del(a->leases, l->key_id);
	if (u == NULL)
		return;
	for (pp = &u->leases; *pp != NULL; pp = &(*pp)->next_of_user)
		if (*pp == l) {
			*pp = l->next_of_user;
			break;
		}
}

int64_t lease_expires_ms(struct agent *a, const struct lease *l)
{
	return l->received_ms + (int64_t)a->cfg->max_ttl * 1000;
}

bool lease_past_rotation(struct agent *a, const struct lease *l)
{
	/* 80% of max_ttl: new holders get a new key in the second slot. */
	return wall_ms() - l->received_ms >
	    (int64_t)a->cfg->max_ttl * 800;
}

/*
 * Status is the holder's choice (set-status): an Inactive key is handed out
 * as it is, not replaced behind their back by a second one.
 */
bool lease_usable(struct agent *a, const struct lease *l)
{
	return l->state == LEASE_LIVE && l->secret_slot != 0 &&
	    !lease_past_rotation(a, l);
}

struct lease *user_newest_live_lease(struct agent *a, const char *user)
{
	struct user_state *u = strmap_get(a->users, user);
	struct lease *l, *best = NULL;

	if (u == NULL)
		return NULL;
	for (l = u->leases; l != NULL; l = l->next_of_user)
		if (l->state == LEASE_LIVE &&
		    (best == NULL || l->received_ms > best->received_ms))
			best = l;
	return best;
}

unsigned user_pam_sessions(struct agent *a, const char *user)
{
	struct user_state *u = strmap_get(a->users, user);
	struct lease *l;
	unsigned n = 0;

	if (u == NULL)
		return 0;
	for (l = u->leases; l != NULL; l = l->next_of_user)
		if (l->state == LEASE_LIVE)
			n += l->nsessions;
	return n;
}

struct session *user_latest_session(struct agent *a, const char *user)
{
	struct user_state *u = strmap_get(a->users, user);
	struct session *best = NULL, *s;
	struct lease *l;

	if (u == NULL)
		return NULL;
	for (l = u->leases; l != NULL; l = l->next_of_user) {
		if (l->state != LEASE_LIVE)
			continue;
		for (s = l->sessions; s != NULL; s = s->next_in_lease)
			if (s->secret_file != NULL &&
			    (best == NULL || s->opened_ms > best->opened_ms))
				best = s;
	}
	return best;
}

void lease_arm_timers(struct agent *a, struct lease *l)
{
	if (l->state != LEASE_LIVE)
		return;
	evloop_timer_arm(a->loop, &l->max_ttl_timer,
	    wall_to_mono(lease_expires_ms(a, l)));
	if (l->ttl_expires_ms != 0)
		evloop_timer_arm(a->loop, &l->ttl_timer,
		    wall_to_mono(l->ttl_expires_ms));
	else
		evloop_timer_cancel(a->loop, &l->ttl_timer);
}

static void max_ttl_fired(void *arg)
{
	struct lease *l = arg;

	lease_end(l->agent, l, "max_ttl reached");
}

static void ttl_fired(void *arg)
{
	struct lease *l = arg;
	struct agent *a = l->agent;

	if (l->state != LEASE_LIVE || l->ttl_expires_ms == 0)
		return;
	if (wall_ms() < l->ttl_expires_ms) {
		/* The clock moved; wait for the real expiry. */
		evloop_timer_arm(a->loop, &l->ttl_timer,
		    wall_to_mono(l->ttl_expires_ms));
		return;
	}
	l->ttl_expires_ms = 0;
	store_put_lease(a->store, l);
	if (l->nsessions == 0)
		holders_gone(a, l, "TTL holder expired");
}

void lease_set_ttl_holder(struct agent *a, struct lease *l, int64_t until_ms)
{
	int64_t end = lease_expires_ms(a, l);

	if (until_ms > end)
		until_ms = end;
	if (until_ms > l->ttl_expires_ms)
		l->ttl_expires_ms = until_ms;
	store_put_lease(a->store, l);
	lease_arm_timers(a, l);
}

static void pidfd_ready(void *arg, int fd, uint32_t events)
{
	struct session *s = arg;

	(void)fd;
	(void)events;
	session_end_dead(s->lease->agent, s, "the session's process exited");
}

int session_watch(struct agent *a, struct session *s)
{
	int fd, r;

	if ((r = proc_watch_open(s->pid, s->start_time, &fd)) != 0)
		return r;
	if ((r = evloop_add(a->loop, fd, EPOLLIN, pidfd_ready, s)) != 0) {
		close(fd);
		return r;
	}
	s->pidfd = fd;
	return 0;
}

static void make_token(char out[RAMKEY_SESSION_TOKEN_LEN + 1])
{
	uint8_t rnd[RAMKEY_SESSION_TOKEN_LEN / 2];

	randombytes_buf(rnd, sizeof(rnd));
	sodium_bin2hex(out, RAMKEY_SESSION_TOKEN_LEN + 1, rnd, sizeof(rnd));
}

static int dup_opt(char **dst, const char *src)
{
	if (src == NULL)
		return 0;
	return (*dst = strdup(src)) == NULL ? RAMKEY_ERR_NOMEM : 0;
}

int session_attach(struct agent *a, struct lease *l,
    const struct request *req, struct session **ret)
{
	struct session *s;
	int r;

	*ret = NULL;
	if ((s = calloc(1, sizeof(*s))) == NULL)
		return RAMKEY_ERR_NOMEM;
	s->pidfd = -1;
	do {
		make_token(s->token);
	} while (strmap_get(a->sessions, s->token) != NULL);
	s->lease = l;
	s->pid = req->peer.pid;
	s->peer_uid = req->peer.uid;
	s->opened_ms = wall_ms();
	snprintf(s->boot_id, sizeof(s->boot_id), "%s", a->boot_id);
	if ((r = dup_opt(&s->secret_file, req->msg->secret_file)) != 0 ||
	    (r = dup_opt(&s->rhost, req->msg->rhost)) != 0 ||
	    (r = dup_opt(&s->tty, req->msg->tty)) != 0 ||
	    (r = dup_opt(&s->service, req->msg->service)) != 0 ||
	    (r = strmap_put(a->sessions, s->token, s)) != 0) {
		session_free(s);
		return r;
	}
	/* Watch the opening process: a SIGKILLed sshd never calls close.
	 * A session nobody can watch could outlive its login: refuse it. */
	if ((r = proc_watch_new(s->pid, &s->pidfd, &s->start_time)) != 0 ||
	    (r = evloop_add(a->loop, s->pidfd, EPOLLIN, pidfd_ready, s)) != 0) {
		if (s->pidfd >= 0)
			close(s->pidfd);
		log_warn("cannot watch process %ld of a session of %s; "
		    "refusing the session", (long)s->pid, l->user);
		strmap_del(a->sessions, s->token);
		session_free(s);
		return RAMKEY_ERR_UNAVAILABLE;
	}
	s->next_in_lease = l->sessions;
	l->sessions = s;
	l->nsessions++;
	s->stored = true;
	store_put_session(a->store, s);
	*ret = s;
	return 0;
}

/* Unhook a session from its lease and everything else; free it. */
static void session_detach(struct agent *a, struct session *s)
{
	struct lease *l = s->lease;
	struct session **pp;

	for (pp = &l->sessions; *pp != NULL; pp = &(*pp)->next_in_lease)
		if (*pp == s) {
			*pp = s->next_in_lease;
			l->nsessions--;
			break;
		}
	if (strmap_get(a->sessions, s->token) == s)
		strmap_del(a->sessions, s->token);
	if (s->pidfd >= 0) {
		evloop_del(a->loop, s->pidfd);
		close(s->pidfd);
	}
	if (s->stored)
		store_del_session(a->store, s->token);
	session_free(s);
}

/*
 * The process that opened a session died without closing it (sshd killed):
 * nobody will remove its secret file, so the agent does when it was the
 * user's last session, acting as the user, exactly as the module would.
 * Only an agent running as root can; the key itself is revoked anyway.
 */
static void remove_stale_file(struct agent *a, const char *user, uid_t uid,
    gid_t gid, const char *path)
{
	struct ramkey_owner owner = { user, uid, gid };
	char why[512];
	bool removed = false;

	if (path == NULL || geteuid() != 0 || user_pam_sessions(a, user) != 0)
		return;
	if (ramkey_secret_file_remove(path, &owner, &removed, why,
	    sizeof(why)) != 0)
		log_warn("cannot remove %s, the secret file of a session of %s "
		    "whose process died: %s", path, user, why);
	else if (removed)
		log_info("removed %s, the secret file of the last session of "
		    "%s, whose process died", path, user);
}

void session_end_dead(struct agent *a, struct session *s, const char *why)
{
	/* Only a path the root PAM module registered is removed: other
	 * trusted peers must not gain "unlink as any user" from this. */
	char *path = s->secret_file != NULL && s->peer_uid == 0 ?
	    strdup(s->secret_file) : NULL;
	char *user = strdup(s->lease->user);
	uid_t uid = s->lease->uid;
	gid_t gid = s->lease->gid;

	session_end(a, s, why);
	if (user != NULL)
		remove_stale_file(a, user, uid, gid, path);
	free(path);
	free(user);
}

static void audit_detach(const struct session *s, const char *why)
{
	const struct lease *l = s->lease;
	struct ucred peer = { .pid = s->pid, .uid = s->peer_uid, .gid = 0 };
	char extra[192];

	snprintf(extra, sizeof(extra), "reason=\"%s\" sessions_left=%u", why,
	    l->nsessions > 0 ? l->nsessions - 1 : 0);
	audit("detach", l->user, l->ram_user, l->key_id, &peer, s->rhost,
	    s->tty, extra);
}

void session_end(struct agent *a, struct session *s, const char *why)
{
	struct lease *l = s->lease;

	audit_detach(s, why);
	session_detach(a, s);
	if (l->state == LEASE_LIVE && l->nsessions == 0 &&
	    (l->ttl_expires_ms == 0 || l->ttl_expires_ms <= wall_ms()))
		holders_gone(a, l, "last holder gone");
}

void lease_end(struct agent *a, struct lease *l, const char *why)
{
	char extra[128];

	if (l->state != LEASE_LIVE)
		return;
	while (l->sessions != NULL) {
		char reason[128];

		snprintf(reason, sizeof(reason), "lease ended: %s", why);
		audit_detach(l->sessions, reason);
		session_detach(a, l->sessions);
	}
	l->ttl_expires_ms = 0;
	evloop_timer_cancel(a->loop, &l->max_ttl_timer);
	evloop_timer_cancel(a->loop, &l->ttl_timer);
	/* A set-status in flight finishes first (the revoker waits for it),
	 * so its UpdateAccessKey cannot land after the revocation's. */
	secret_arena_release(a->arena, l->secret_slot);
	l->secret_slot = 0;
	l->state = LEASE_REVOKING;
	a->pending_revocations++;
	store_put_lease(a->store, l);
	snprintf(extra, sizeof(extra), "reason=\"%s\"", why);
	audit("revoke", l->user, l->ram_user, l->key_id, NULL, NULL, NULL,
	    extra);
	revoke_start(a, l);
}

void lease_forget(struct agent *a, struct lease *l)
{
	while (l->sessions != NULL)
		session_detach(a, l->sessions);
	evloop_timer_cancel(a->loop, &l->max_ttl_timer);
	evloop_timer_cancel(a->loop, &l->ttl_timer);
	evloop_timer_cancel(a->loop, &l->revoke_timer);
	if (l->revoke_call != NULL)
		ram_call_cancel(l->revoke_call);
	if (l->status_call != NULL)
		ram_call_cancel(l->status_call);
	secret_arena_release(a->arena, l->secret_slot);
	if (l->state == LEASE_REVOKING && a->pending_revocations > 0)
		a->pending_revocations--;
	files_forget_key(a, l);
	lease_unlink(a, l);
	store_del_lease(a->store, l->id);
	lease_free(l);
}

/* ---- secret files shared by sessions ---- */

void file_rec_free(struct file_rec *f)
{
	if (f == NULL)
		return;
	free(f->path);
	free(f);
}

void file_written(struct agent *a, const char *user, const char *path,
    const char *key_id, const char *token)
{
	struct user_state *u = agent_user(a, user);
	struct file_rec *f;

	if (u == NULL || path == NULL)
		return;
	for (f = u->files; f != NULL; f = f->next)
		if (strcmp(f->path, path) == 0)
			break;
	if (f == NULL) {
		if ((f = calloc(1, sizeof(*f))) == NULL ||
		    (f->path = strdup(path)) == NULL) {
			free(f);
			return;
		}
		f->next = u->files;
		u->files = f;
	}
	snprintf(f->key_id, sizeof(f->key_id), "%s", key_id);
	snprintf(f->token, sizeof(f->token), "%s", token ? token : "");
	store_put_file(a->store, user, f);
}

static void file_drop(struct agent *a, struct user_state *u,
    struct file_rec **pp)
{
	struct file_rec *f = *pp;

	*pp = f->next;
	store_del_file(a->store, u->name, f->path);
	file_rec_free(f);
}

void file_unwritten(struct agent *a, const char *user, const char *path,
    const char *token)
{
	struct user_state *u = strmap_get(a->users, user);
	struct file_rec **pp;

	if (u == NULL || path == NULL)
		return;
	for (pp = &u->files; *pp != NULL; pp = &(*pp)->next)
		if (strcmp((*pp)->path, path) == 0) {
			if (strcmp((*pp)->token, token) == 0)
				file_drop(a, u, pp);
			return;
		}
}

/* A key that is gone is no longer in any file we care about. */
static void files_forget_key(struct agent *a, const struct lease *l)
{
	struct user_state *u = strmap_get(a->users, l->user);
	struct file_rec **pp;

	if (u == NULL)
		return;
	for (pp = &u->files; *pp != NULL;) {
		if (strcmp((*pp)->key_id, l->key_id) == 0)
			file_drop(a, u, pp);
		else
			pp = &(*pp)->next;
	}
}

/* Move session s to lease to (its file now holds to's key). */
static void session_move(struct agent *a, struct session *s,
    struct lease *to)
{
	struct lease *from = s->lease;
	struct session **pp;
	char extra[96], masked[RAMKEY_MASKED_MAX];

	for (pp = &from->sessions; *pp != NULL; pp = &(*pp)->next_in_lease)
		if (*pp == s) {
			*pp = s->next_in_lease;
			from->nsessions--;
			break;
		}
	s->lease = to;
	s->next_in_lease = to->sessions;
	to->sessions = s;
	to->nsessions++;
	store_put_session(a->store, s);
	ramkey_mask_key_id(from->key_id, masked);
	snprintf(extra, sizeof(extra), "holder=session moved_from=%s", masked);
	audit("attach", to->user, to->ram_user, to->key_id, NULL, s->rhost,
	    s->tty, extra);
}

/*
 * Lease l lost its last holder. If its key is the one last written to a
 * path that live sessions of the user (on other leases) share, those
 * sessions use l's key now: they move to l, which lives on; the leases
 * they leave end if nothing else holds them. Returns whether l lives on.
 */
static bool adopt_file_sessions(struct agent *a, struct lease *l)
{
	struct user_state *u = strmap_get(a->users, l->user);
	struct lease *o, *emptied[16];
	struct file_rec *f;
	size_t nemptied = 0, i;
	bool adopted = false;

	if (u == NULL)
		return false;
	for (f = u->files; f != NULL; f = f->next) {
		if (strcmp(f->key_id, l->key_id) != 0)
			continue;
		for (o = u->leases; o != NULL; o = o->next_of_user) {
			struct session *s, *next;

			if (o == l || o->state != LEASE_LIVE)
				continue;
			for (s = o->sessions; s != NULL; s = next) {
				next = s->next_in_lease;
				if (s->secret_file == NULL ||
				    strcmp(s->secret_file, f->path) != 0)
					continue;
				session_move(a, s, l);
				adopted = true;
				if (o->nsessions == 0 && nemptied < 16)
					emptied[nemptied++] = o;
			}
		}
	}
	for (i = 0; i < nemptied; i++)
		if (emptied[i]->nsessions == 0 &&
		    (emptied[i]->ttl_expires_ms == 0 ||
		    emptied[i]->ttl_expires_ms <= wall_ms()))
			lease_end(a, emptied[i], "its sessions read a newer key "
			    "from their shared file");
	return adopted;
}

static void holders_gone(struct agent *a, struct lease *l, const char *why)
{
	if (adopt_file_sessions(a, l))
		return;
	lease_end(a, l, why);
}
