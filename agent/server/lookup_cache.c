#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lookup_cache.h"
#include "ramkey_err.h"
#include "server_int.h"
#include "strmap.h"

struct entry {
	char *key;
	uint64_t expires_ms;
	char *own, *user, *home, *principal;
	char *why;		/* why there is no principal, or NULL */
	uid_t uid;
	gid_t gid;
	bool in_group;
	bool no_role;
};

struct lookup_cache {
	struct strmap *map;
	uint64_t swept_ms;	/* when expired entries last went */
};

static const char *entry_key(const void *v)
{
	return ((const struct entry *)v)->key;
}

static void entry_free(struct entry *e)
{
	if (e == NULL)
		return;
	free(e->key);
	free(e->own);
	free(e->user);
	free(e->home);
	free(e->principal);
	free(e->why);
	free(e);
}

/* The inputs a lookup's results depend on (the policy's are fixed until a
 * reload clears the cache). */
static char *key_of(const struct lookup *lk)
{
	char *k;

	if (asprintf(&k, "%c%lu\n%s\n%d", lk->want_own ? 'p' : 't',
	    lk->want_own ? (unsigned long)lk->peer_uid : 0UL,
	    lk->target != NULL ? lk->target : "", lk->for_keys ? 1 : 0) < 0)
		return NULL;
	return k;
}

int lookup_cache_new(struct lookup_cache **ret)
{
	struct lookup_cache *c = calloc(1, sizeof(*c));

	*ret = NULL;
	if (c == NULL || (c->map = strmap_new(entry_key)) == NULL) {
		free(c);
		return RAMKEY_ERR_NOMEM;
	}
	*ret = c;
	return 0;
}

void lookup_cache_clear(struct lookup_cache *c)
{
	struct strmap_iter it;
	struct entry **all;
	size_t n = 0, i;
	void *v;

	if (c == NULL || strmap_count(c->map) == 0)
		return;
	if ((all = calloc(strmap_count(c->map), sizeof(*all))) == NULL)
		return;
	strmap_iter_init(&it);
	while (strmap_next(c->map, &it, NULL, &v))
		all[n++] = v;
	for (i = 0; i < n; i++) {
		strmap_del(c->map, all[i]->key);
		entry_free(all[i]);
	}
	free(all);
}

void lookup_cache_free(struct lookup_cache *c)
{
	if (c == NULL)
		return;
	lookup_cache_clear(c);
	strmap_free(c->map);
	free(c);
}

static int dup_opt(char **dst, const char *src)
{
	*dst = NULL;
	return src != NULL && (*dst = strdup(src)) == NULL ? -1 : 0;
}

bool lookup_cache_get(struct lookup_cache *c, struct lookup *lk,
    uint64_t now_ms)
{
	struct entry *e;
	char *k = key_of(lk);

	if (k == NULL)
		return false;
	e = strmap_get(c->map, k);
	free(k);
	if (e == NULL)
		return false;
	if (now_ms >= e->expires_ms) {
		strmap_del(c->map, e->key);
		entry_free(e);
		return false;
	}
	if (dup_opt(&lk->own, e->own) != 0 || dup_opt(&lk->user, e->user) ||
	    dup_opt(&lk->home, e->home) != 0 ||
	    dup_opt(&lk->principal, e->principal) != 0) {
		free(lk->own);
		free(lk->user);
		free(lk->home);
		free(lk->principal);
		lk->own = lk->user = lk->home = lk->principal = NULL;
		return false;
	}
	lk->rc = 0;
	lk->uid = e->uid;
	lk->gid = e->gid;
	lk->in_group = e->in_group;
	lk->no_role = e->no_role;
	snprintf(lk->why, sizeof(lk->why), "%s", e->why != NULL ? e->why : "");
	return true;
}

/* Expired entries go, at most once per TTL (or when the cache is full):
 * a burst of distinct users leaves nothing behind for long. */
static void sweep(struct lookup_cache *c, uint64_t now_ms)
{
	struct strmap_iter it;
	struct entry **gone;
	size_t n = 0, i;
	void *v;

	if (strmap_count(c->map) < LOOKUP_CACHE_MAX &&
	    now_ms - c->swept_ms < LOOKUP_CACHE_TTL_MS)
		return;
	c->swept_ms = now_ms;
	if (strmap_count(c->map) == 0 ||
	    (gone = calloc(strmap_count(c->map), sizeof(*gone))) == NULL)
		return;
	strmap_iter_init(&it);
	while (strmap_next(c->map, &it, NULL, &v))
		if (now_ms >= ((struct entry *)v)->expires_ms)
			gone[n++] = v;
	for (i = 0; i < n; i++) {
		strmap_del(c->map, gone[i]->key);
		entry_free(gone[i]);
	}
	free(gone);
}

void lookup_cache_put(struct lookup_cache *c, const struct lookup *lk,
    uint64_t now_ms)
{
	struct entry *e, *old;

	if (lk->rc != 0 || lk->user == NULL)
		return;
	sweep(c, now_ms);
	if (strmap_count(c->map) >= LOOKUP_CACHE_MAX ||
	    (e = calloc(1, sizeof(*e))) == NULL)
		return;
	if ((e->key = key_of(lk)) == NULL || dup_opt(&e->own, lk->own) ||
	    dup_opt(&e->user, lk->user) || dup_opt(&e->home, lk->home) ||
	    dup_opt(&e->principal, lk->principal) ||
	    dup_opt(&e->why, lk->why[0] != '\0' ? lk->why : NULL)) {
		entry_free(e);
		return;
	}
	e->expires_ms = now_ms + LOOKUP_CACHE_TTL_MS;
	e->uid = lk->uid;
	e->gid = lk->gid;
	e->in_group = lk->in_group;
	e->no_role = lk->no_role;
	old = strmap_get(c->map, e->key);
	if (strmap_put(c->map, e) != 0) {
		entry_free(e);
		return;
	}
	entry_free(old);
}
