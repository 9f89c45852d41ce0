/*
 * The lease core's life (creation, kinds, configuration, stopping,
 * freeing), the port it gives credential kinds, and what requesters read
 * and ask of it besides acquiring.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "clock.h"
#include "lease_int.h"
#include "log.h"
#include "ramkey_err.h"
#include "secret_arena.h"
#include "strmap.h"
#include "util.h"

/* ---- the port kinds get ---- */

static struct lease *lease_of_cred(struct lease_core *c,
    const char *principal, const char *cred_id)
{
	struct lease *l = strmap_get(c->by_cred, cred_id);

	return l != NULL && strcmp(l->p->name, principal) == 0 ? l : NULL;
}

static enum kind_cred_state port_cred_state(void *core, const char *principal,
    const char *cred_id)
{
	struct lease *l = lease_of_cred(core, principal, cred_id);

	if (l == NULL)
		return KIND_CRED_UNKNOWN;
	switch (l->state) {
	case LEASE_LIVE:
		return KIND_CRED_LIVE;
	case LEASE_ENDING:
		return KIND_CRED_ENDING;
	default:
		return KIND_CRED_RETAINED;
	}
}

static void port_release_retained(void *core, const char *principal,
    const char *cred_id)
{
	struct lease *l = lease_of_cred(core, principal, cred_id);

	if (l != NULL && l->state == LEASE_ENDED)
		lease_purge(l);
}

static void port_adopt_orphan(void *core, const char *principal,
    const char *user, const char *cred_id, const char *create_date)
{
	struct lease_core *c = core;
	struct strmap_iter it;
	void *v;

	/* The principal of an intent is known: find its structure. */
	strmap_iter_init(&it);
	while (strmap_next(c->principals, &it, NULL, &v)) {
		struct lease_principal *p = v;

		if (strcmp(p->name, principal) == 0 && p->intent != NULL) {
			lease_adopt_orphan(c, p, user, cred_id, create_date);
			return;
		}
	}
	strmap_iter_init(&it);
	while (strmap_next(c->principals, &it, NULL, &v))
		if (strcmp(((struct lease_principal *)v)->name, principal) ==
		    0) {
			lease_adopt_orphan(c, v, user, cred_id, create_date);
			return;
		}
}

static void port_note_put(void *core, const char *ns, const char *key,
    const char *value)
{
	struct lease_core *c = core;
	struct store_note_row r = { ns, key, value };

	c->store.put_note(c->store.s, &r);
}

static void port_note_del(void *core, const char *ns, const char *key)
{
	struct lease_core *c = core;

	c->store.del_note(c->store.s, ns, key);
}

/* ---- life ---- */

/* The keys of the core's maps, inside their values. */
static const char *user_key(const void *v)
{
	return ((const struct lease_user *)v)->name;
}

static const char *principal_key(const void *v)
{
	return ((const struct lease_principal *)v)->key;
}

static const char *lease_cred_key(const void *v)
{
	return ((const struct lease *)v)->cred_id;
}

static const char *session_key(const void *v)
{
	return ((const struct session *)v)->token;
}

static const char *file_key_of(const void *v)
{
	return ((const struct file_rec *)v)->key;
}

int lease_core_new(struct evloop *loop, const struct lease_config *cfg,
    const struct lease_store_port *store, const struct lease_effects *fx,
    struct lease_core **ret)
{
	struct lease_core *c;
	int r = RAMKEY_ERR_NOMEM;

	*ret = NULL;
	if (loop == NULL || cfg == NULL || store == NULL)
		return RAMKEY_ERR_INVALID;
	if ((c = calloc(1, sizeof(*c))) == NULL)
		return RAMKEY_ERR_NOMEM;
	c->loop = loop;
	c->cfg = *cfg;
	c->store = *store;
	if (fx != NULL)
		c->fx = *fx;
	c->next_lease_id = 1;
	c->next_intent_id = 1;
	if ((r = secret_arena_new(&c->arena)) != 0)
		goto fail;
	r = RAMKEY_ERR_NOMEM;
	if ((c->users = strmap_new(user_key)) == NULL ||
	    (c->principals = strmap_new(principal_key)) == NULL ||
	    (c->by_cred = strmap_new(lease_cred_key)) == NULL ||
	    (c->by_id = idmap_new()) == NULL ||
	    (c->sessions = strmap_new(session_key)) == NULL ||
	    (c->files = strmap_new(file_key_of)) == NULL)
		goto fail;
	*ret = c;
	return 0;
fail:
	lease_core_free(c);
	return r;
}

int lease_core_add_kind(struct lease_core *c, const struct credential_kind *k)
{
	struct core_kind *ck;

	if (c->nkinds >= sizeof(c->kinds) / sizeof(c->kinds[0]) ||
	    core_kind_by_name(c, k->ops->name) != NULL)
		return RAMKEY_ERR_INVALID;
	if ((ck = calloc(1, sizeof(*ck))) == NULL)
		return RAMKEY_ERR_NOMEM;
	ck->core = c;
	ck->k = *k;
	ck->port.core = c;
	ck->port.cred_state = port_cred_state;
	ck->port.release_retained = port_release_retained;
	ck->port.adopt_orphan = port_adopt_orphan;
	ck->port.note_put = port_note_put;
	ck->port.note_del = port_note_del;
	c->kinds[c->nkinds++] = ck;
	if (k->ops->attach != NULL)
		k->ops->attach(k->state, &ck->port);
	return 0;
}

void lease_core_set_config(struct lease_core *c, const struct lease_config *cfg)
{
	struct strmap_iter it;
	void *v;

	c->cfg = *cfg;
	/* max_ttl may have changed: every live lease's deadline too. */
	strmap_iter_init(&it);
	while (idmap_next(c->by_id, &it, NULL, &v))
		if (((struct lease *)v)->state == LEASE_LIVE)
			lease_arm(v);
}

void lease_core_stop(struct lease_core *c)
{
	c->stopping = true;
}

void lease_core_free(struct lease_core *c)
{
	struct strmap_iter it;
	unsigned i;
	void *v;

	if (c == NULL)
		return;
	c->stopping = true;
	if (c->users != NULL)
		obtains_cancel_all(c);
	if (c->by_id != NULL) {
		strmap_iter_init(&it);
		while (idmap_next(c->by_id, &it, NULL, &v)) {
			struct lease *l = v;
			const struct core_kind *k = l->p->kind;

			evloop_timer_cancel(c->loop, &l->timer);
			if (l->end_op != NULL)
				k->k.ops->cancel(k->k.state, l->end_op);
			while (l->sessions != NULL) {
				struct session *s = l->sessions;

				l->sessions = s->next_in_lease;
				if (s->pidfd >= 0) {
					evloop_del(c->loop, s->pidfd);
					close(s->pidfd);
				}
				session_free(s);
			}
			free(l->status_op);
			/* The token's slot goes with the arena, wiped. */
			free(l->key_fingerprint);
			free(l);
		}
	}
	if (c->principals != NULL) {
		strmap_iter_init(&it);
		while (strmap_next(c->principals, &it, NULL, &v)) {
			struct lease_principal *p = v;
			const struct core_kind *k = p->kind;

			evloop_timer_cancel(c->loop, &p->rec_timer);
			if (p->rec_op != NULL)
				k->k.ops->cancel(k->k.state, p->rec_op);
			intent_free(p->intent);
			free(p->mint_times);
			free(p);
		}
	}
	if (c->users != NULL) {
		strmap_iter_init(&it);
		while (strmap_next(c->users, &it, NULL, &v)) {
			struct lease_user *u = v;

			while (u->files != NULL) {
				struct file_rec *f = u->files;

				u->files = f->next;
				file_rec_free(f);
			}
			free(u->name);
			free(u);
		}
	}
	for (i = 0; i < c->nkinds; i++) {
		if (c->kinds[i]->k.ops->free != NULL)
			c->kinds[i]->k.ops->free(c->kinds[i]->k.state);
		free(c->kinds[i]);
	}
	strmap_free(c->users);
	strmap_free(c->principals);
	strmap_free(c->by_cred);
	idmap_free(c->by_id);
	strmap_free(c->sessions);
	strmap_free(c->files);
	secret_arena_free(c->arena);
	free(c);
}

/* ---- reading ---- */

static void info_of(const struct lease *l, struct lease_info *out)
{
	memset(out, 0, sizeof(*out));
	out->id = l->id;
	out->kind = l->p->kind->k.ops->name;
	out->user = l->u->name;
	out->uid = l->u->uid;
	out->principal = l->p->name;
	out->cred_id = l->cred_id;
	out->create_date = l->create_date;
	out->status = l->status;
	out->state = l->state;
	out->received_ms = l->received_ms;
	out->lease_end_ms = lease_end_ms(l);
	out->expiration = l->expiration;
	out->ttl_expires_ms = l->ttl_expires_ms;
	out->refresh_ms = lease_refresh_ms(l);
	out->sessions = l->nsessions;
	out->key_fingerprint = l->key_fingerprint;
	out->has_secret = l->secret_slot != 0;
}

int lease_get(struct lease_core *c, uint64_t id, struct lease_info *out)
{
	struct lease *l = lease_by_id(c, id);

	if (l == NULL)
		return RAMKEY_ERR_NOT_FOUND;
	info_of(l, out);
	return 0;
}

int lease_find(struct lease_core *c, const char *cred_id,
    struct lease_info *out)
{
	struct lease *l = cred_id != NULL ? strmap_get(c->by_cred, cred_id) :
	    NULL;

	if (l == NULL || l->state != LEASE_LIVE)
		return RAMKEY_ERR_NOT_FOUND;
	info_of(l, out);
	return 0;
}

int lease_secret(struct lease_core *c, uint64_t id, const char **secret,
    size_t *len, const char **token)
{
	struct lease *l = lease_by_id(c, id);
	const char *s;

	*secret = NULL;
	*len = 0;
	if (token != NULL)
		*token = NULL;
	if (l == NULL || l->state != LEASE_LIVE ||
	    (s = secret_arena_get(c->arena, l->secret_slot, len)) == NULL)
		return RAMKEY_ERR_UNAVAILABLE;
	*secret = s;
	if (token != NULL)
		*token = secret_arena_get(c->arena, l->token_slot, NULL);
	return 0;
}

void lease_foreach(struct lease_core *c, const char *user,
    void (*fn)(void *arg, const struct lease_info *li), void *arg)
{
	struct strmap_iter it;
	struct lease_info li;
	void *v;

	if (user != NULL) {
		struct lease_user *u = strmap_get(c->users, user);
		struct lease *l;

		for (l = u != NULL ? u->leases : NULL; l != NULL;
		    l = l->next_of_user) {
			info_of(l, &li);
			fn(arg, &li);
		}
		return;
	}
	strmap_iter_init(&it);
	while (idmap_next(c->by_id, &it, NULL, &v)) {
		info_of(v, &li);
		fn(arg, &li);
	}
}

void lease_foreach_ambiguous(struct lease_core *c, void (*fn)(void *arg,
    const char *principal, const char *cred_id), void *arg)
{
	unsigned i;

	for (i = 0; i < c->nkinds; i++)
		if (c->kinds[i]->k.ops->foreach_ambiguous != NULL)
			c->kinds[i]->k.ops->foreach_ambiguous(
			    c->kinds[i]->k.state, fn, arg);
}

unsigned lease_pending_ends(const struct lease_core *c)
{
	return c->pending_ends;
}

unsigned lease_count_live(const struct lease_core *c)
{
	return c->live;
}

unsigned lease_user_sessions(struct lease_core *c, const char *user)
{
	struct lease_user *u = strmap_get(c->users, user);

	return u != NULL ? user_live_sessions(u) : 0;
}

bool lease_store_broken(const struct lease_core *c)
{
	return c->store.broken(c->store.s);
}

const char *lease_session_user(struct lease_core *c, const char *token)
{
	struct session *s = token != NULL ? strmap_get(c->sessions, token) :
	    NULL;

	return s != NULL ? s->lease->u->name : NULL;
}

/* ---- changing ---- */

void lease_close_session(struct lease_core *c, const char *token,
    bool aborted, bool *found, const char **owner, bool *last, bool *ended)
{
	struct session *s = token != NULL ? strmap_get(c->sessions, token) :
	    NULL;
	struct lease_user *u;
	struct lease *l;

	*found = s != NULL;
	*owner = NULL;
	*last = false;
	*ended = false;
	if (s == NULL)
		return;
	u = s->lease->u;
	l = s->lease;
	*owner = u->name;
	if (aborted)
		file_unwritten(c, u, s->secret_file, s->token);
	session_end(s, aborted ? "aborted by the module" : "closed");
	*last = user_live_sessions(u) == 0;
	*ended = l->state != LEASE_LIVE;
}

void lease_release(struct lease_core *c, const struct lease_grant *g,
    const char *why)
{
	struct session *s = g->session != NULL ?
	    strmap_get(c->sessions, g->session) : NULL;
	struct lease *l = lease_by_id(c, g->lease_id);

	if (s != NULL)
		session_end(s, why);
	else if (g->minted && l != NULL && l->state == LEASE_LIVE &&
	    l->nsessions == 0)
		lease_end(l, why);
}

int lease_after_commit(struct lease_core *c, store_commit_fn fn, void *arg)
{
	return c->store.after_commit(c->store.s, fn, arg);
}

void lease_cancel_after_commit(struct lease_core *c, void *arg)
{
	c->store.cancel_after_commit(c->store.s, arg);
}

int lease_core_resync(struct lease_core *c)
{
	struct strmap_iter it;
	const char *k;
	void *v;

	if (!c->store.resync_begin(c->store.s))
		return c->store.broken(c->store.s) ? RAMKEY_ERR_STORE : 0;
	strmap_iter_init(&it);
	while (idmap_next(c->by_id, &it, NULL, &v)) {
		struct lease *l = v;
		struct session *s;

		lease_save(l);
		for (s = l->sessions; s != NULL; s = s->next_in_lease) {
			struct store_session_row r;

			session_row(s, &r, c->boot_id);
			c->store.put_session(c->store.s, &r);
		}
	}
	strmap_iter_init(&it);
	while (strmap_next(c->principals, &it, NULL, &v)) {
		struct lease_principal *p = v;

		/* A running obtain's own intent is not durable yet: it is
		 * staged, and waited for, before the obtain goes on. */
		if (p->intent != NULL) {
			struct store_intent_row r = { p->intent->id,
				p->kind->k.ops->name, p->name, p->intent->user,
				p->intent->started_ms, p->intent->data };

			c->store.put_intent(c->store.s, &r);
		}
	}
	strmap_iter_init(&it);
	while (strmap_next(c->users, &it, &k, &v)) {
		struct file_rec *f;

		for (f = ((struct lease_user *)v)->files; f != NULL;
		    f = f->next) {
			struct store_file_row r = { k, f->path, f->cred_id,
				f->token, f->written_ms };

			c->store.put_file(c->store.s, &r);
		}
	}
	/* The kinds' notes are theirs to rewrite. */
	{
		unsigned i;

		for (i = 0; i < c->nkinds; i++)
			if (c->kinds[i]->k.ops->resync != NULL)
				c->kinds[i]->k.ops->resync(
				    c->kinds[i]->k.state);
	}
	return c->store.resync_end(c->store.s);
}
