/* A string-keyed hash map of pointers (chained, power-of-two buckets). The
 * map copies keys; values are borrowed. */
#ifndef RAMKEY_STRMAP_H
#define RAMKEY_STRMAP_H

#include <stdbool.h>
#include <stddef.h>

struct strmap;

struct strmap *strmap_new(void);
void strmap_free(struct strmap *m);
void *strmap_get(const struct strmap *m, const char *key);
/* Insert or replace. */
int strmap_put(struct strmap *m, const char *key, void *value);
/* Remove; returns the old value or NULL. */
void *strmap_del(struct strmap *m, const char *key);
size_t strmap_count(const struct strmap *m);

/* Iterate: returns false when done. Do not modify the map meanwhile. */
struct strmap_iter {
	size_t bucket;
	void *node;
};
void strmap_iter_init(struct strmap_iter *it);
bool strmap_next(const struct strmap *m, struct strmap_iter *it,
    const char **key, void **value);

#endif
