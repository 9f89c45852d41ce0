/* The server's life: creation, configuration, freeing. */
#include <stdlib.h>
#include <string.h>

#include "evloop.h"
#include "ramkey_err.h"
#include "lookup_cache.h"
#include "server_int.h"
#include "strmap.h"

void server_roles_release(struct server_roles *r)
{
	size_t i;

	if (r == NULL || --r->refs > 0)
		return;
	for (i = 0; i < r->nrules; i++) {
		free((char *)r->rules[i].name);
		free((char *)r->rules[i].arn);
	}
	free(r->rules);
	free(r->role_arn);
	free(r);
}

static struct server_roles *roles_copy(const struct server_config *in)
{
	struct server_roles *r = calloc(1, sizeof(*r));
	size_t i;

	if (r == NULL)
		return NULL;
	r->refs = 1;
	if ((in->role_arn != NULL &&
	    (r->role_arn = strdup(in->role_arn)) == NULL) ||
	    (in->nrole_rules > 0 && (r->rules = calloc(in->nrole_rules,
	    sizeof(*r->rules))) == NULL))
		goto nomem;
	for (i = 0; i < in->nrole_rules; i++) {
		r->rules[i].group = in->role_rules[i].group;
		r->nrules++;
		if ((r->rules[i].name = strdup(in->role_rules[i].name)) ==
		    NULL || (r->rules[i].arn = strdup(
		    in->role_rules[i].arn)) == NULL)
			goto nomem;
	}
	return r;
nomem:
	server_roles_release(r);
	return NULL;
}

static void cfg_clear(struct server_cfg *c)
{
	server_roles_release(c->roles);
	free(c->socket);
	free(c->trusted_uids);
	free(c->allowed_group);
	free(c->kind);
	free(c->ram_user);
	free(c->region_id);
	memset(c, 0, sizeof(*c));
}

static int dup_str(char **dst, const char *src)
{
	*dst = NULL;
	if (src == NULL)
		return 0;
	return (*dst = strdup(src)) == NULL ? RAMKEY_ERR_NOMEM : 0;
}

static int cfg_copy(struct server_cfg *c, const struct server_config *in)
{
	memset(c, 0, sizeof(*c));
	if (dup_str(&c->socket, in->socket) != 0 ||
	    dup_str(&c->allowed_group, in->allowed_group) != 0 ||
	    dup_str(&c->kind, in->kind) != 0 ||
	    dup_str(&c->ram_user, in->ram_user) != 0 ||
	    dup_str(&c->region_id, in->region_id) != 0 ||
	    (c->roles = roles_copy(in)) == NULL)
		goto nomem;
	c->sts = in->kind != NULL && strcmp(in->kind, "sts") == 0;
	if (in->ntrusted_uids > 0) {
		if ((c->trusted_uids = calloc(in->ntrusted_uids,
		    sizeof(uid_t))) == NULL)
			goto nomem;
		memcpy(c->trusted_uids, in->trusted_uids,
		    in->ntrusted_uids * sizeof(uid_t));
	}
	c->ntrusted_uids = in->ntrusted_uids;
	c->min_uid = in->min_uid;
	c->allowed_gid = in->allowed_gid;
	c->max_ttl = in->max_ttl;
	c->fetch_ttl = in->fetch_ttl;
	c->max_connections_per_uid = in->max_connections_per_uid;
	c->change_burst = in->change_burst;
	c->change_interval_s = in->change_interval_s;
	return 0;
nomem:
	cfg_clear(c);
	return RAMKEY_ERR_NOMEM;
}

int server_new(const struct server_deps *deps, const struct server_config *cfg,
    struct server **ret)
{
	struct server *s;
	int r;

	*ret = NULL;
	if ((s = calloc(1, sizeof(*s))) == NULL)
		return RAMKEY_ERR_NOMEM;
	s->loop = deps->loop;
	s->core = deps->core;
	s->pgp = deps->pgp;
	s->workers = deps->workers;
	s->health = deps->health;
	s->metrics = deps->metrics;
	s->listen_fd = -1;
	if ((r = cfg_copy(&s->cfg, cfg)) != 0 ||
	    (s->uids = idmap_new()) == NULL ||
	    (r = lookup_cache_new(&s->lookups)) != 0 ||
	    (r = conn_setup(s)) != 0) {
		server_free(s);
		return r != 0 ? r : RAMKEY_ERR_NOMEM;
	}
	*ret = s;
	return 0;
}

int server_set_config(struct server *s, const struct server_config *cfg)
{
	struct server_cfg c;
	int r;

	if ((r = cfg_copy(&c, cfg)) != 0)
		return r;
	/* The socket is bound: it changes only at restart. */
	free(c.socket);
	c.socket = s->cfg.socket;
	s->cfg.socket = NULL;
	cfg_clear(&s->cfg);
	s->cfg = c;
	/* The key policy may have changed: look everyone up afresh. */
	lookup_cache_clear(s->lookups);
	return 0;
}

bool server_socket_activated(const struct server *s)
{
	return s->socket_activated;
}

void server_free(struct server *s)
{
	struct strmap_iter it;
	void *v;

	if (s == NULL)
		return;
	server_close(s);
	conns_free_all(s);
	evloop_timer_cancel(s->loop, &s->accept_timer);
	if (s->uids != NULL) {
		strmap_iter_init(&it);
		while (idmap_next(s->uids, &it, NULL, &v))
			free(v);
		idmap_free(s->uids);
	}
	lookup_cache_free(s->lookups);
	cfg_clear(&s->cfg);
	free(s);
}
