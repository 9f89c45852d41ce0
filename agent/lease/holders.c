/*
 * Holders of a lease: PAM sessions (each watched through a pidfd of the
 * process that opened it, since a killed sshd never closes its session)
 * and at most one TTL holder (fetch). When the last holder goes, the
 * lease ends, unless sessions of the user read its credential from a file
 * they share (one user, one file): then they move to it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sodium.h>

#include "clock.h"
#include "lease_int.h"
#include "log.h"
#include "ramkey_err.h"
#include "strmap.h"
#include "util.h"

static size_t opt_len(const char *s)
{
	return s != NULL ? strlen(s) + 1 : 0;
}

static const char *opt_put(char **p, const char *s)
{
	const char *at = *p;
	size_t n = opt_len(s);

	if (n == 0)
		return NULL;
	memcpy(*p, s, n);
	*p += n;
	return at;
}

struct session *session_new(const char *secret_file, const char *rhost,
    const char *tty, const char *service)
{
	size_t n = opt_len(secret_file) + opt_len(rhost) + opt_len(tty) +
	    opt_len(service);
	struct session *s = calloc(1, sizeof(*s) + n);
	char *p;

	if (s == NULL)
		return NULL;
	p = (char *)(s + 1);
	s->secret_file = opt_put(&p, secret_file);
	s->rhost = opt_put(&p, rhost);
	s->tty = opt_put(&p, tty);
	s->service = opt_put(&p, service);
	s->pidfd = -1;
	return s;
}

void session_free(struct session *s)
{
	free(s);
}

void session_row(const struct session *s, struct store_session_row *r,
    const char *boot_id)
{
	memset(r, 0, sizeof(*r));
	r->token = s->token;
	r->lease_id = s->lease->id;
	r->pid = s->pid;
	r->start_time = s->start_time;
	r->boot_id = boot_id;
	r->peer_uid = s->peer_uid;
	r->secret_file = s->secret_file;
	r->rhost = s->rhost;
	r->tty = s->tty;
	r->service = s->service;
	r->opened_ms = s->opened_ms;
}

static void session_save(struct session *s)
{
	struct lease_core *c = s->lease->core;
	struct store_session_row r;

	session_row(s, &r, c->boot_id);
	c->store.put_session(c->store.s, &r);
}

bool lease_held(const struct lease *l)
{
	return l->nsessions > 0 ||
	    (l->ttl_expires_ms != 0 && l->ttl_expires_ms > clock_wall_ms());
}

static void pidfd_ready(void *arg, int fd, uint32_t events)
{
	struct session *s = arg;

	(void)fd;
	(void)events;
	session_end_dead(s, "the session's process exited");
}

int session_watch(struct session *s)
{
	struct lease_core *c = s->lease->core;
	int fd, r;

	if ((r = proc_watch_open(s->pid, s->start_time, &fd)) != 0)
		return r;
	if ((r = evloop_add(c->loop, fd, EPOLLIN, pidfd_ready, s)) != 0) {
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

int session_attach(struct lease *l, const struct lease_want *w,
    struct session **ret)
{
	struct lease_core *c = l->core;
	struct session *s;
	int r;

	*ret = NULL;
	if ((s = session_new(w->secret_file, w->peer.rhost, w->peer.tty,
	    w->service)) == NULL)
		return RAMKEY_ERR_NOMEM;
	do {
		make_token(s->token);
	} while (strmap_get(c->sessions, s->token) != NULL);
	s->lease = l;
	s->pid = w->session_pid;
	s->peer_uid = w->session_peer_uid;
	s->opened_ms = clock_wall_ms();
	if ((r = strmap_put(c->sessions, s)) != 0) {
		session_free(s);
		return r;
	}
	/* Watch the opening process: a SIGKILLed sshd never calls close.
	 * A session nobody can watch could outlive its login: refuse it. */
	if (proc_watch_new(s->pid, &s->pidfd, &s->start_time) != 0 ||
	    evloop_add(c->loop, s->pidfd, EPOLLIN, pidfd_ready, s) != 0) {
		if (s->pidfd >= 0)
			close(s->pidfd);
		log_warn("cannot watch process %ld of a session of %s; "
		    "refusing the session", (long)s->pid, l->u->name);
		strmap_del(c->sessions, s->token);
		session_free(s);
		return RAMKEY_ERR_UNAVAILABLE;
	}
	s->next_in_lease = l->sessions;
	l->sessions = s;
	l->nsessions++;
	session_save(s);
	*ret = s;
	return 0;
}

void session_detach(struct session *s)
{
	struct lease *l = s->lease;
	struct lease_core *c = l->core;
	struct session **pp;

	for (pp = &l->sessions; *pp != NULL; pp = &(*pp)->next_in_lease)
		if (*pp == s) {
			*pp = s->next_in_lease;
			l->nsessions--;
			break;
		}
	if (strmap_get(c->sessions, s->token) == s)
		strmap_del(c->sessions, s->token);
	if (s->pidfd >= 0) {
		evloop_del(c->loop, s->pidfd);
		close(s->pidfd);
	}
	c->store.del_session(c->store.s, s->token);
	session_free(s);
}

void audit_detach(const struct session *s, const char *why)
{
	const struct lease *l = s->lease;
	struct lease_peer peer = { s->peer_uid, s->pid, s->rhost, s->tty };
	char extra[256];

	snprintf(extra, sizeof(extra), "reason=\"%s\" sessions_left=%u", why,
	    l->nsessions > 0 ? l->nsessions - 1 : 0);
	core_audit("detach", l, &peer, extra);
}

void session_end(struct session *s, const char *why)
{
	struct lease *l = s->lease;

	audit_detach(s, why);
	session_detach(s);
	if (l->state == LEASE_LIVE && !lease_held(l))
		holders_gone(l, "last holder gone");
}

/*
 * The process that opened a session died without closing it (sshd
 * killed): nobody will remove its secret file, so the agent has it done
 * when it was the user's last session, exactly as the module would.
 * Only a path the root PAM module registered: other trusted peers must
 * not gain "unlink as any user" from this.
 */
void session_end_dead(struct session *s, const char *why)
{
	struct lease_core *c = s->lease->core;
	struct lease_user *u = s->lease->u;
	char *path = s->secret_file != NULL && s->peer_uid == 0 ?
	    strdup(s->secret_file) : NULL;

	session_end(s, why);
	if (path != NULL && user_live_sessions(u) == 0 &&
	    c->fx.remove_file != NULL)
		c->fx.remove_file(c->fx.arg, u->name, u->uid, u->gid, path);
	free(path);
}

void lease_set_ttl_holder(struct lease *l, int64_t until_ms)
{
	int64_t end = lease_end_ms(l);

	if (until_ms > end)
		until_ms = end;
	if (until_ms > l->ttl_expires_ms)
		l->ttl_expires_ms = until_ms;
	lease_save(l);
	lease_arm(l);
}

unsigned user_live_sessions(const struct lease_user *u)
{
	const struct lease *l;
	unsigned n = 0;

	for (l = u->leases; l != NULL; l = l->next_of_user)
		if (l->state == LEASE_LIVE)
			n += l->nsessions;
	return n;
}

struct session *user_latest_session(struct lease_user *u)
{
	struct session *best = NULL, *s;
	struct lease *l;

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

/* ---- secret files shared by sessions ---- */

void file_rec_free(struct file_rec *f)
{
	free(f);
}

static char *file_key(const char *user, const char *path)
{
	char *k;

	return asprintf(&k, "%s\n%s", user, path) < 0 ? NULL : k;
}

/* A record for user's path, not yet in the map; NULL if out of memory. */
struct file_rec *file_rec_new(const char *user, const char *path)
{
	size_t ulen = strlen(user), plen = strlen(path);
	struct file_rec *f = calloc(1, sizeof(*f) + ulen + plen + 2);

	if (f == NULL)
		return NULL;
	f->key = (char *)(f + 1);
	memcpy(f->key, user, ulen + 1);
	f->key[ulen] = '\n'; /* "user\npath": the NUL copied is overwritten */
	memcpy(f->key + ulen + 1, path, plen + 1);
	f->path = f->key + ulen + 1;
	return f;
}

static bool path_of_live_session(const struct lease_user *u, const char *path)
{
	const struct lease *l;
	const struct session *s;

	for (l = u->leases; l != NULL; l = l->next_of_user)
		for (s = l->state == LEASE_LIVE ? l->sessions : NULL;
		    s != NULL; s = s->next_in_lease)
			if (s->secret_file != NULL &&
			    strcmp(s->secret_file, path) == 0)
				return true;
	return false;
}

static void file_drop(struct lease_core *c, struct lease_user *u,
    struct file_rec **pp)
{
	struct file_rec *f = *pp;

	*pp = f->next;
	if (f->token[0] == '\0')
		u->nfetch_files--;
	if (strmap_get(c->files, f->key) == f)
		strmap_del(c->files, f->key);
	c->store.del_file(c->store.s, u->name, f->path);
	file_rec_free(f);
}

/* Paths named by fetch are kept up to a small number per user, oldest
 * dropped first; paths of live PAM sessions are never dropped. */
static void files_trim(struct lease_core *c, struct lease_user *u)
{
	while (u->nfetch_files > c->cfg.fetch_paths_max) {
		struct file_rec **pp, **oldest = NULL;

		for (pp = &u->files; *pp != NULL; pp = &(*pp)->next)
			if ((*pp)->token[0] == '\0' &&
			    !path_of_live_session(u, (*pp)->path))
				oldest = pp;
		if (oldest == NULL)
			return;
		file_drop(c, u, oldest);
	}
}

static void file_save(struct lease_core *c, const struct lease_user *u,
    const struct file_rec *f)
{
	struct store_file_row r = { u->name, f->path, f->cred_id, f->token,
		f->written_ms };

	c->store.put_file(c->store.s, &r);
}

void file_written(struct lease_core *c, struct lease_user *u,
    const char *path, const char *cred_id, const char *token)
{
	struct file_rec *f, **pp;
	char *k;

	if (path == NULL || (k = file_key(u->name, path)) == NULL)
		return;
	f = strmap_get(c->files, k);
	free(k);
	if (f != NULL) {
		/* Most recent first: move it to the front. */
		for (pp = &u->files; *pp != NULL; pp = &(*pp)->next)
			if (*pp == f) {
				*pp = f->next;
				break;
			}
		if (f->token[0] == '\0')
			u->nfetch_files--;
	} else {
		if ((f = file_rec_new(u->name, path)) == NULL ||
		    strmap_put(c->files, f) != 0) {
			file_rec_free(f);
			return;
		}
	}
	f->next = u->files;
	u->files = f;
	snprintf(f->cred_id, sizeof(f->cred_id), "%s", cred_id);
	snprintf(f->token, sizeof(f->token), "%s", token != NULL ? token : "");
	f->written_ms = clock_wall_ms();
	if (f->token[0] == '\0')
		u->nfetch_files++;
	file_save(c, u, f);
	files_trim(c, u);
}

void file_unwritten(struct lease_core *c, struct lease_user *u,
    const char *path, const char *token)
{
	struct file_rec **pp;

	if (path == NULL)
		return;
	for (pp = &u->files; *pp != NULL; pp = &(*pp)->next)
		if (strcmp((*pp)->path, path) == 0) {
			if (strcmp((*pp)->token, token) == 0)
				file_drop(c, u, pp);
			return;
		}
}

/* A credential that is gone is no longer in any file we care about. */
void files_forget_cred(struct lease_core *c, struct lease_user *u,
    const char *cred_id)
{
	struct file_rec **pp;

	for (pp = &u->files; *pp != NULL;) {
		if (strcmp((*pp)->cred_id, cred_id) == 0)
			file_drop(c, u, pp);
		else
			pp = &(*pp)->next;
	}
}

/* Move session s to lease to (its file now holds to's credential). */
static void session_move(struct session *s, struct lease *to)
{
	struct lease *from = s->lease;
	struct session **pp;
	struct lease_peer peer = { s->peer_uid, s->pid, s->rhost, s->tty };
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
	session_save(s);
	ramkey_mask_key_id(from->cred_id, masked);
	snprintf(extra, sizeof(extra), "holder=session moved_from=%s", masked);
	peer.uid = s->peer_uid;
	core_audit("attach", to, &peer, extra);
}

/*
 * Lease l lost its last holder. If its credential is the one last written
 * to a path that live sessions of the user (on other leases) share, those
 * sessions use l's credential now: they move to l, which lives on; the
 * leases they leave end if nothing else holds them. Returns whether l
 * lives on.
 */
static bool adopt_file_sessions(struct lease *l)
{
	struct lease_user *u = l->u;
	struct lease *o, *emptied[16];
	struct file_rec *f;
	size_t nemptied = 0, i;
	bool adopted = false;

	for (f = u->files; f != NULL; f = f->next) {
		if (strcmp(f->cred_id, l->cred_id) != 0)
			continue;
		for (o = u->leases; o != NULL; o = o->next_of_user) {
			struct session *s, *next;

			if (o == l || o->state != LEASE_LIVE ||
			    o->p != l->p)
				continue;
			for (s = o->sessions; s != NULL; s = next) {
				next = s->next_in_lease;
				if (s->secret_file == NULL ||
				    strcmp(s->secret_file, f->path) != 0)
					continue;
				session_move(s, l);
				adopted = true;
				if (o->nsessions == 0 && nemptied < 16)
					emptied[nemptied++] = o;
			}
		}
	}
	for (i = 0; i < nemptied; i++)
		if (emptied[i]->state == LEASE_LIVE && !lease_held(emptied[i]))
			lease_end(emptied[i], "its sessions read a newer key "
			    "from their shared file");
	return adopted;
}

void holders_gone(struct lease *l, const char *why)
{
	if (adopt_file_sessions(l))
		return;
	lease_end(l, why);
}
