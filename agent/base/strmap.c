/*
 * Open addressing with linear probing and backward-shift deletion (no
 * tombstones, so lookups stay short however many entries come and go).
 * A strmap slot is the value pointer alone; its key is key_of(value), its
 * hash recomputed when needed (on a resize, or a deletion's shift).
 * Tables grow at 3/4 full and shrink at 1/8 full, never below MIN_SLOTS.
 * An empty slot has value NULL: values are never NULL.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ramkey_err.h"
#include "strmap.h"

#define MIN_SLOTS 16

struct strmap {
	void **slots;
	size_t mask;		/* slots - 1 */
	size_t count;
	strmap_key_fn key_of;
};

struct islot {
	uint64_t key;
	void *value;
};

struct idmap {
	struct islot *slots;
	size_t mask;
	size_t count;
};

/* FNV-1a: keys are user names, tokens, key ids and a user's own file
 * paths; per-uid limits bound how many one user can insert. */
static uint64_t hash_str(const char *s)
{
	uint64_t h = 1469598103934665603ULL;

	for (; *s != '\0'; s++) {
		h ^= (unsigned char)*s;
		h *= 1099511628211ULL;
	}
	return h;
}

/* splitmix64's finaliser: ids are sequential, slots must not be. */
static uint64_t hash_id(uint64_t x)
{
	x ^= x >> 30;
	x *= 0xbf58476d1ce4e5b9ULL;
	x ^= x >> 27;
	x *= 0x94d049bb133111ebULL;
	return x ^ (x >> 31);
}

/* ---- strmap ---- */

struct strmap *strmap_new(strmap_key_fn key_of)
{
	struct strmap *m = calloc(1, sizeof(*m));

	if (m == NULL)
		return NULL;
	if ((m->slots = calloc(MIN_SLOTS, sizeof(*m->slots))) == NULL) {
		free(m);
		return NULL;
	}
	m->mask = MIN_SLOTS - 1;
	m->key_of = key_of;
	return m;
}

void strmap_free(struct strmap *m)
{
	if (m == NULL)
		return;
	free(m->slots);
	free(m);
}

static size_t home_of(const struct strmap *m, const void *value)
{
	return hash_str(m->key_of(value)) & m->mask;
}

static size_t sfind(const struct strmap *m, const char *key)
{
	size_t i = hash_str(key) & m->mask;

	for (; m->slots[i] != NULL; i = (i + 1) & m->mask)
		if (strcmp(m->key_of(m->slots[i]), key) == 0)
			break;
	return i;
}

static int sresize(struct strmap *m, size_t n)
{
	void **s = calloc(n, sizeof(*s)), **old = m->slots;
	size_t i, oldn = m->mask + 1;

	if (s == NULL)
		return RAMKEY_ERR_NOMEM;
	m->slots = s;
	m->mask = n - 1;
	for (i = 0; i < oldn; i++)
		if (old[i] != NULL) {
			size_t j = home_of(m, old[i]);

			while (s[j] != NULL)
				j = (j + 1) & m->mask;
			s[j] = old[i];
		}
	free(old);
	return 0;
}

void *strmap_get(const struct strmap *m, const char *key)
{
	return m->slots[sfind(m, key)];
}

int strmap_put(struct strmap *m, void *value)
{
	const char *key;
	size_t i;

	if (value == NULL)
		return RAMKEY_ERR_INVALID;
	key = m->key_of(value);
	i = sfind(m, key);
	if (m->slots[i] == NULL) {
		if ((m->count + 1) * 4 > (m->mask + 1) * 3) {
			if (sresize(m, (m->mask + 1) * 2) != 0)
				return RAMKEY_ERR_NOMEM;
			i = sfind(m, key);
		}
		m->count++;
	}
	m->slots[i] = value;
	return 0;
}

void *strmap_del(struct strmap *m, const char *key)
{
	size_t i = sfind(m, key), j;
	void *v = m->slots[i];

	if (v == NULL)
		return NULL;
	/* Backward shift: pull later entries of the run into the hole when
	 * their home slot is not between the hole and them. */
	for (j = (i + 1) & m->mask; m->slots[j] != NULL;
	    j = (j + 1) & m->mask) {
		size_t home = home_of(m, m->slots[j]);

		if (((j - home) & m->mask) >= ((j - i) & m->mask)) {
			m->slots[i] = m->slots[j];
			i = j;
		}
	}
	m->slots[i] = NULL;
	m->count--;
	if (m->mask + 1 > MIN_SLOTS && m->count * 8 < m->mask + 1)
		(void)sresize(m, (m->mask + 1) / 2); /* on failure: stay big */
	return v;
}

size_t strmap_count(const struct strmap *m)
{
	return m->count;
}

void strmap_iter_init(struct strmap_iter *it)
{
	it->slot = 0;
}

bool strmap_next(const struct strmap *m, struct strmap_iter *it,
    const char **key, void **value)
{
	while (it->slot <= m->mask) {
		void *v = m->slots[it->slot++];

		if (v != NULL) {
			if (key != NULL)
				*key = m->key_of(v);
			if (value != NULL)
				*value = v;
			return true;
		}
	}
	return false;
}

/* ---- idmap ---- */

struct idmap *idmap_new(void)
{
	struct idmap *m = calloc(1, sizeof(*m));

	if (m == NULL)
		return NULL;
	if ((m->slots = calloc(MIN_SLOTS, sizeof(*m->slots))) == NULL) {
		free(m);
		return NULL;
	}
	m->mask = MIN_SLOTS - 1;
	return m;
}

void idmap_free(struct idmap *m)
{
	if (m == NULL)
		return;
	free(m->slots);
	free(m);
}

static size_t ifind(const struct idmap *m, uint64_t key)
{
	size_t i = hash_id(key) & m->mask;

	for (; m->slots[i].value != NULL; i = (i + 1) & m->mask)
		if (m->slots[i].key == key)
			break;
	return i;
}

static int iresize(struct idmap *m, size_t n)
{
	struct islot *s = calloc(n, sizeof(*s)), *old = m->slots;
	size_t i, oldn = m->mask + 1;

	if (s == NULL)
		return RAMKEY_ERR_NOMEM;
	m->slots = s;
	m->mask = n - 1;
	for (i = 0; i < oldn; i++)
		if (old[i].value != NULL) {
			size_t j = hash_id(old[i].key) & m->mask;

			while (s[j].value != NULL)
				j = (j + 1) & m->mask;
			s[j] = old[i];
		}
	free(old);
	return 0;
}

void *idmap_get(const struct idmap *m, uint64_t key)
{
	return m->slots[ifind(m, key)].value;
}

int idmap_put(struct idmap *m, uint64_t key, void *value)
{
	size_t i;

	if (value == NULL)
		return RAMKEY_ERR_INVALID;
	i = ifind(m, key);
	if (m->slots[i].value == NULL) {
		if ((m->count + 1) * 4 > (m->mask + 1) * 3) {
			if (iresize(m, (m->mask + 1) * 2) != 0)
				return RAMKEY_ERR_NOMEM;
			i = ifind(m, key);
		}
		m->count++;
	}
	m->slots[i].key = key;
	m->slots[i].value = value;
	return 0;
}

void *idmap_del(struct idmap *m, uint64_t key)
{
	size_t i = ifind(m, key), j;
	void *v = m->slots[i].value;

	if (v == NULL)
		return NULL;
	for (j = (i + 1) & m->mask; m->slots[j].value != NULL;
	    j = (j + 1) & m->mask) {
		size_t home = hash_id(m->slots[j].key) & m->mask;

		if (((j - home) & m->mask) >= ((j - i) & m->mask)) {
			m->slots[i] = m->slots[j];
			i = j;
		}
	}
	memset(&m->slots[i], 0, sizeof(m->slots[i]));
	m->count--;
	if (m->mask + 1 > MIN_SLOTS && m->count * 8 < m->mask + 1)
		(void)iresize(m, (m->mask + 1) / 2);
	return v;
}

size_t idmap_count(const struct idmap *m)
{
	return m->count;
}

bool idmap_next(const struct idmap *m, struct strmap_iter *it,
    uint64_t *key, void **value)
{
	while (it->slot <= m->mask) {
		const struct islot *s = &m->slots[it->slot++];

		if (s->value != NULL) {
			if (key != NULL)
				*key = s->key;
			if (value != NULL)
				*value = s->value;
			return true;
		}
	}
	return false;
}
