/*
 * One locked arena for all lease secrets (rule L3, docs/ARCHITECTURE.md):
 * fixed-size slots in sodium_malloc'd chunks (guard pages, mlock'd,
 * excluded from core dumps), rather than one sodium_malloc of at least
 * 16 KiB of address space per lease. Slots of 128 bytes (an
 * AccessKeySecret, an STS secret), 512, 1280 (an STS SecurityToken, about
 * 1 KiB), 2048, 4096 and 8320; a secret takes the smallest that fits. A
 * chunk holds up to 64 KiB of slots of one size, and is locked whole. A
 * slot is wiped when released.
 */
#ifndef RAMKEY_SECRET_ARENA_H
#define RAMKEY_SECRET_ARENA_H

#include <stddef.h>
#include <stdint.h>

#define ARENA_SECRET_MAX 8317 /* bytes of secret in the largest slot */

struct secret_arena;

int secret_arena_new(struct secret_arena **ret);
void secret_arena_free(struct secret_arena *a);

/* Store len bytes; *slotp identifies them (never 0). */
int secret_arena_put(struct secret_arena *a, const char *secret, size_t len,
    uint32_t *slotp);
/* Borrow the secret (NUL-terminated) of a slot; NULL if the slot is free. */
const char *secret_arena_get(const struct secret_arena *a, uint32_t slot,
    size_t *lenp);
/* Wipe and release a slot (0 is ignored). */
void secret_arena_release(struct secret_arena *a, uint32_t slot);

/* Slots in use. */
size_t secret_arena_used(const struct secret_arena *a);

#endif
