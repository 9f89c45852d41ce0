/*
 * Start-up recovery: turn the store's rows back into leases, sessions,
 * intents and file records; then end sessions whose process is gone (or
 * whose host rebooted), end live leases with no live holder or past
 * max_ttl, resume every pending end, and have the kinds reconcile
 * unresolved intents before their principals obtain again.
 *
 * Secrets are never stored: a recovered lease's secret is unknown. A kind
 * that renews in place gets a fresh credential into it at the next
 * request; other kinds make a new lease.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "lease_int.h"
#include "log.h"
#include "ramkey_err.h"
#include "strmap.h"
#include "util.h"

struct loading {
	struct lease_core *c;
	struct session **stale;	/* sessions of an earlier boot */
	size_t nstale, cap;
};

static int load_lease(void *arg, const struct store_lease_row *r)
{
	struct loading *ld = arg;
	struct lease_core *c = ld->c;
	struct core_kind *k = core_kind_by_name(c, r->kind);
	enum lease_state st;
	struct lease_user *u;
	struct lease_principal *p;
	struct lease *l;

	if (k == NULL) {
		log_warn("state store: lease %llu is of an unknown kind %s; "
		    "left alone", (unsigned long long)r->id, r->kind);
		return 0;
	}
	if (strlen(r->cred_id) > CRED_ID_MAX ||
	    !ramkey_valid_key_id(r->cred_id)) {
		log_warn("state store: skipping a malformed lease row");
		return 0;
	}
	if (strcmp(r->state, STORE_STATE_ENDING) == 0)
		st = LEASE_ENDING;
	else if (strcmp(r->state, STORE_STATE_ENDED) == 0)
		st = LEASE_ENDED;
	else
		st = LEASE_LIVE;
	if ((u = core_user(c, r->user)) == NULL ||
	    (p = core_principal(c, k, r->principal)) == NULL ||
	    (l = lease_new(c, u, p, r->id)) == NULL)
		return RAMKEY_ERR_NOMEM;
	u->uid = r->uid;
	u->gid = r->gid;
	snprintf(l->cred_id, sizeof(l->cred_id), "%s", r->cred_id);
	snprintf(l->create_date, sizeof(l->create_date), "%s", r->create_date);
	(void)ramkey_parse_time(l->create_date, &l->create_time);
	snprintf(l->status, sizeof(l->status), "%s", r->status);
	snprintf(l->kind_state, sizeof(l->kind_state), "%s",
	    r->kind_state != NULL ? r->kind_state : "");
	l->received_ms = r->received_ms;
	l->expiration = r->expiration;
	l->ttl_expires_ms = st == LEASE_LIVE ? r->ttl_expires_ms : 0;
	if (r->key_fingerprint != NULL &&
	    (l->key_fingerprint = strdup(r->key_fingerprint)) == NULL) {
		free(l);
		return RAMKEY_ERR_NOMEM;
	}
	lease_link(l, st);
	return 0;
}

static int load_session(void *arg, const struct store_session_row *r)
{
	struct loading *ld = arg;
	struct lease_core *c = ld->c;
	struct lease *l = lease_by_id(c, r->lease_id);
	struct session *s;

	if (l == NULL || l->state != LEASE_LIVE ||
	    strlen(r->token) != RAMKEY_SESSION_TOKEN_LEN)
		return 0;
	if ((s = session_new(r->secret_file, r->rhost, r->tty, r->service)) ==
	    NULL)
		return RAMKEY_ERR_NOMEM;
	snprintf(s->token, sizeof(s->token), "%s", r->token);
	s->pid = r->pid;
	s->start_time = r->start_time;
	s->peer_uid = r->peer_uid;
	s->opened_ms = r->opened_ms;
	s->lease = l;
	if (strmap_put(c->sessions, s) != 0) {
		session_free(s);
		return RAMKEY_ERR_NOMEM;
	}
	s->next_in_lease = l->sessions;
	l->sessions = s;
	l->nsessions++;
	/* The host rebooted since: every process of that boot is gone. */
	if (strcmp(r->boot_id, c->boot_id) != 0) {
		if (ld->nstale == ld->cap) {
			size_t n = ld->cap ? ld->cap * 2 : 16;
			struct session **a = realloc(ld->stale,
			    n * sizeof(*a));

			if (a == NULL)
				return RAMKEY_ERR_NOMEM;
			ld->stale = a;
			ld->cap = n;
		}
		ld->stale[ld->nstale++] = s;
	}
	return 0;
}

static int load_intent(void *arg, const struct store_intent_row *r)
{
	struct loading *ld = arg;
	struct lease_core *c = ld->c;
	struct core_kind *k = core_kind_by_name(c, r->kind);
	struct lease_principal *p;
	struct intent *in;

	if (k == NULL)
		return 0;
	if ((p = core_principal(c, k, r->principal)) == NULL ||
	    (in = calloc(1, sizeof(*in))) == NULL)
		return RAMKEY_ERR_NOMEM;
	in->id = r->id;
	in->p = p;
	in->started_ms = r->started_ms;
	in->recovered = true;
	if ((in->user = strdup(r->user)) == NULL ||
	    (in->data = strdup(r->data)) == NULL) {
		intent_free(in);
		return RAMKEY_ERR_NOMEM;
	}
	if (in->id >= c->next_intent_id)
		c->next_intent_id = in->id + 1;
	if (p->intent != NULL) {
		/* Obtains for a principal with intents run one at a time, so
		 * there is at most one; keep the older. */
		c->store.del_intent(c->store.s, in->id);
		intent_free(in);
		return 0;
	}
	p->intent = in;
	return 0;
}

static int load_file(void *arg, const struct store_file_row *r)
{
	struct loading *ld = arg;
	struct lease_core *c = ld->c;
	struct lease_user *u;
	struct file_rec *f;

	if (!ramkey_valid_key_id(r->cred_id) ||
	    strlen(r->token) > RAMKEY_SESSION_TOKEN_LEN)
		return 0;
	if ((u = core_user(c, r->user)) == NULL ||
	    (f = file_rec_new(u->name, r->path)) == NULL)
		return RAMKEY_ERR_NOMEM;
	if (strmap_get(c->files, f->key) != NULL ||
	    strmap_put(c->files, f) != 0) {
		file_rec_free(f);
		return 0;
	}
	snprintf(f->cred_id, sizeof(f->cred_id), "%s", r->cred_id);
	snprintf(f->token, sizeof(f->token), "%s", r->token);
	f->written_ms = r->written_ms;
	/* Rows come oldest first: the list stays newest first. */
	f->next = u->files;
	u->files = f;
	if (f->token[0] == '\0')
		u->nfetch_files++;
	return 0;
}

static int load_note(void *arg, const struct store_note_row *r)
{
	struct loading *ld = arg;
	struct lease_core *c = ld->c;
	unsigned i;

	/* A note's namespace starts with its kind's name. */
	for (i = 0; i < c->nkinds; i++) {
		const struct core_kind *k = c->kinds[i];
		size_t n = strlen(k->k.ops->name);

		if (strncmp(r->ns, k->k.ops->name, n) == 0 &&
		    r->ns[n] == '.' && k->k.ops->load_note != NULL)
			k->k.ops->load_note(k->k.state, r->ns, r->key,
			    r->value);
	}
	return 0;
}

int lease_core_recover(struct lease_core *c, const char *boot_id)
{
	struct loading ld = { c, NULL, 0, 0 };
	struct store_loader loader = { load_lease, load_session, load_intent,
		load_file, load_note, &ld };
	struct strmap_iter it;
	struct session **dead = NULL;
	struct lease **ending = NULL;
	size_t ndead = 0, nending = 0, nlive = 0, i, n;
	int64_t now = clock_wall_ms();
	void *v;
	int r;

	snprintf(c->boot_id, sizeof(c->boot_id), "%s", boot_id);
	c->recovering = true;
	r = c->store.load(c->store.s, &loader);
	if (r != 0)
		goto out;
	/* Sessions whose process is gone end first. */
	n = strmap_count(c->sessions);
	if ((dead = calloc(n + 1, sizeof(*dead))) == NULL) {
		r = RAMKEY_ERR_NOMEM;
		goto out;
	}
	for (i = 0; i < ld.nstale; i++)
		dead[ndead++] = ld.stale[i];
	strmap_iter_init(&it);
	while (strmap_next(c->sessions, &it, NULL, &v)) {
		struct session *s = v;
		bool stale = false;

		for (i = 0; i < ld.nstale && !stale; i++)
			stale = ld.stale[i] == s;
		/* Only the same process (pid and start time) is watched
		 * again; a reused pid is another process. */
		if (!stale && session_watch(s) != 0)
			dead[ndead++] = s;
	}
	for (i = 0; i < ndead; i++)
		session_end_dead(dead[i], "its process is gone (found at "
		    "agent start)");
	/* Leases. */
	n = idmap_count(c->by_id);
	if ((ending = calloc(n + 1, sizeof(*ending))) == NULL) {
		r = RAMKEY_ERR_NOMEM;
		goto out;
	}
	strmap_iter_init(&it);
	while (idmap_next(c->by_id, &it, NULL, &v)) {
		struct lease *l = v;

		switch (l->state) {
		case LEASE_ENDING:
			break;
		case LEASE_ENDED:
			lease_arm(l);
			break;
		case LEASE_LIVE:
			if (now >= lease_end_ms(l) || !lease_held(l))
				ending[nending++] = l;
			else {
				lease_arm(l);
				nlive++;
			}
			break;
		}
	}
	for (i = 0; i < nending; i++)
		lease_end(ending[i], now >= lease_end_ms(ending[i]) ?
		    "max_ttl passed while the agent was down" :
		    "no live holder at agent start");
	/* Every pending end resumes (those just ended have started). */
	strmap_iter_init(&it);
	while (idmap_next(c->by_id, &it, NULL, &v))
		lease_resume_end(v);
	/* Unresolved intents: the crashed agent's last try may still land. */
	strmap_iter_init(&it);
	while (strmap_next(c->principals, &it, NULL, &v)) {
		struct lease_principal *p = v;

		if (p->intent != NULL) {
			log_warn("%s %s has an unfinished mint from before a "
			    "crash; checking for a lost key",
			    p->kind->k.ops->capacity > 0 ? "RAM user" : "role",
			    p->name);
			intent_reconcile(p);
		}
	}
	log_info("recovered %zu live lease(s), %zu ended at start, %u "
	    "revocation(s) pending, %zu dead session(s)", nlive, nending,
	    c->pending_ends, ndead);
	r = 0;
out:
	c->recovering = false;
	free(ld.stale);
	free(dead);
	free(ending);
	return r;
}
