/*
 * Hash maps of pointers for the agent's indexes: open addressing, linear
 * probing, power-of-two tables, no allocation per entry.
 *
 * strmap: keyed by a string inside each value (a lease's key id, a
 * session's token, a user's name), found by the map's key_of function. A
 * slot is one pointer: the map keeps no copy of the key and no hash. The
 * key must not change while its value is in the map.
 *
 * idmap: keyed by a 64-bit integer (lease ids, uids).
 *
 * Iteration visits every entry once; do not insert or delete meanwhile.
 */
#ifndef RAMKEY_STRMAP_H
#define RAMKEY_STRMAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct strmap;

typedef const char *(*strmap_key_fn)(const void *value);

struct strmap *strmap_new(strmap_key_fn key_of);
void strmap_free(struct strmap *m);
void *strmap_get(const struct strmap *m, const char *key);
/* Insert, or replace the value with the same key. */
int strmap_put(struct strmap *m, void *value);
/* Remove; returns the old value or NULL. */
void *strmap_del(struct strmap *m, const char *key);
size_t strmap_count(const struct strmap *m);

struct strmap_iter {
	size_t slot;
};
void strmap_iter_init(struct strmap_iter *it);
bool strmap_next(const struct strmap *m, struct strmap_iter *it,
    const char **key, void **value);

struct idmap;

struct idmap *idmap_new(void);
void idmap_free(struct idmap *m);
void *idmap_get(const struct idmap *m, uint64_t key);
int idmap_put(struct idmap *m, uint64_t key, void *value);
void *idmap_del(struct idmap *m, uint64_t key);
size_t idmap_count(const struct idmap *m);
/* The same iterator type as strmap's. */
bool idmap_next(const struct idmap *m, struct strmap_iter *it,
    uint64_t *key, void **value);

#endif
