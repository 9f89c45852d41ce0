#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ramkey_err.h"
#include "strmap.h"

struct node {
	struct node *next;
	uint64_t hash;
	void *value;
	char key[];
};

struct strmap {
	struct node **buckets;
	size_t nbuckets;
	size_t count;
};

/* FNV-1a: keys are user names, tokens and key ids, not attacker-chosen
 * in bulk (per-uid limits bound what one user can insert). */
static uint64_t hash_str(const char *s)
{
	uint64_t h = 1469598103934665603ULL;

	for (; *s != '\0'; s++) {
		h ^= (unsigned char)*s;
		h *= 1099511628211ULL;
	}
	return h;
}

struct strmap *strmap_new(void)
{
	struct strmap *m = calloc(1, sizeof(*m));

	if (m == NULL)
		return NULL;
	m->nbuckets = 64;
	if ((m->buckets = calloc(m->nbuckets, sizeof(*m->buckets))) == NULL) {
		free(m);
		return NULL;
	}
	return m;
}

void strmap_free(struct strmap *m)
{
	size_t i;

	if (m == NULL)
		return;
	for (i = 0; i < m->nbuckets; i++) {
		struct node *n = m->buckets[i], *next;

		for (; n != NULL; n = next) {
			next = n->next;
			free(n);
		}
	}
	free(m->buckets);
	free(m);
}

static struct node **find(const struct strmap *m, const char *key,
    uint64_t h)
{
	struct node **pp = &m->buckets[h & (m->nbuckets - 1)];

	for (; *pp != NULL; pp = &(*pp)->next)
		if ((*pp)->hash == h && strcmp((*pp)->key, key) == 0)
			return pp;
	return pp;
}

void *strmap_get(const struct strmap *m, const char *key)
{
	struct node **pp = find(m, key, hash_str(key));

	return *pp != NULL ? (*pp)->value : NULL;
}

static void grow(struct strmap *m)
{
	size_t n = m->nbuckets * 2, i;
	struct node **b = calloc(n, sizeof(*b));

	if (b == NULL)
		return; /* keep working with longer chains */
	for (i = 0; i < m->nbuckets; i++) {
		struct node *x = m->buckets[i], *next;

		for (; x != NULL; x = next) {
			next = x->next;
			x->next = b[x->hash & (n - 1)];
			b[x->hash & (n - 1)] = x;
		}
	}
	free(m->buckets);
	m->buckets = b;
	m->nbuckets = n;
}

int strmap_put(struct strmap *m, const char *key, void *value)
{
	uint64_t h = hash_str(key);
	struct node **pp = find(m, key, h), *n;
	size_t klen;

	if (*pp != NULL) {
		(*pp)->value = value;
		return 0;
	}
	klen = strlen(key);
	if ((n = malloc(sizeof(*n) + klen + 1)) == NULL)
		return RAMKEY_ERR_NOMEM;
	n->hash = h;
	n->value = value;
	memcpy(n->key, key, klen + 1);
	n->next = NULL;
	*pp = n;
	if (++m->count > m->nbuckets)
		grow(m);
	return 0;
}

void *strmap_del(struct strmap *m, const char *key)
{
	struct node **pp = find(m, key, hash_str(key)), *n;
	void *v;

	if ((n = *pp) == NULL)
		return NULL;
	*pp = n->next;
	v = n->value;
	free(n);
	m->count--;
	return v;
}

size_t strmap_count(const struct strmap *m)
{
	return m->count;
}

void strmap_iter_init(struct strmap_iter *it)
{
	it->bucket = 0;
	it->node = NULL;
}

bool strmap_next(const struct strmap *m, struct strmap_iter *it,
    const char **key, void **value)
{
	struct node *n = it->node;

	if (n != NULL)
		n = n->next;
	while (n == NULL && it->bucket < m->nbuckets)
		n = m->buckets[it->bucket++];
	it->node = n;
	if (n == NULL)
		return false;
	if (key != NULL)
		*key = n->key;
	if (value != NULL)
		*value = n->value;
	return true;
}
