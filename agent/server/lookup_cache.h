/*
 * Recent user lookups, so that a user who logs in and out in a burst (or
 * a fetch loop) costs one trip to the directory service, not one per
 * request. Like nscd and SSSD, the agent trusts an answer for a short
 * while: LOOKUP_CACHE_TTL_MS. Only complete answers are kept (a user that
 * exists, with the policy's inputs resolved); a reload empties the cache,
 * as the key policy (ram_user, roles, allowed_group) may have changed.
 * At most LOOKUP_CACHE_MAX entries: every entry is an existing local
 * user, so this bounds nothing a caller controls, but it bounds memory.
 */
#ifndef RAMKEY_LOOKUP_CACHE_H
#define RAMKEY_LOOKUP_CACHE_H

#include <stdbool.h>
#include <stdint.h>

#define LOOKUP_CACHE_TTL_MS 10000
#define LOOKUP_CACHE_MAX 1024

struct lookup;
struct lookup_cache;

int lookup_cache_new(struct lookup_cache **ret);
void lookup_cache_free(struct lookup_cache *c);
void lookup_cache_clear(struct lookup_cache *c);

/* Fill lk's results from a fresh entry for lk's inputs: true on a hit. */
bool lookup_cache_get(struct lookup_cache *c, struct lookup *lk,
    uint64_t now_ms);
/* Remember lk's results (a successful lookup only). */
void lookup_cache_put(struct lookup_cache *c, const struct lookup *lk,
    uint64_t now_ms);

#endif
