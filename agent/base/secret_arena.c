#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "ramkey_err.h"
#include "secret_arena.h"

#define SLOT_SIZE 128
#define SLOTS_PER_CHUNK 512 /* 64 KiB of locked memory per chunk */

/* Slot layout: [0] length (0 = free), [1..] secret, NUL. */
struct secret_arena {
	uint8_t **chunks;
	size_t nchunks;
	uint32_t *free_slots; /* stack of free slot numbers */
	size_t nfree, free_cap;
	size_t used;
};

int secret_arena_new(struct secret_arena **ret)
{
	struct secret_arena *a;

	*ret = NULL;
	if (sodium_init() < 0)
		return RAMKEY_ERR_CRYPTO;
	if ((a = calloc(1, sizeof(*a))) == NULL)
		return RAMKEY_ERR_NOMEM;
	*ret = a;
	return 0;
}

void secret_arena_free(struct secret_arena *a)
{
	size_t i;

	if (a == NULL)
		return;
	for (i = 0; i < a->nchunks; i++)
		sodium_free(a->chunks[i]); /* wipes */
	free(a->chunks);
	free(a->free_slots);
	free(a);
}

static int add_chunk(struct secret_arena *a)
{
	uint8_t **nc, *chunk;
	uint32_t *nf, base;
	size_t i;

	if ((chunk = sodium_malloc(SLOT_SIZE * SLOTS_PER_CHUNK)) == NULL)
		return RAMKEY_ERR_NOMEM;
	sodium_memzero(chunk, SLOT_SIZE * SLOTS_PER_CHUNK);
	if ((nc = realloc(a->chunks, (a->nchunks + 1) * sizeof(*nc))) == NULL)
		goto fail;
	a->chunks = nc;
	/* Every slot may be free at once: room for all of them. */
	if ((a->nchunks + 1) * SLOTS_PER_CHUNK > a->free_cap) {
		size_t cap = (a->nchunks + 1) * SLOTS_PER_CHUNK;

		if ((nf = realloc(a->free_slots, cap * sizeof(*nf))) == NULL)
			goto fail;
		a->free_slots = nf;
		a->free_cap = cap;
	}
	a->chunks[a->nchunks] = chunk;
	base = (uint32_t)(a->nchunks * SLOTS_PER_CHUNK);
	/* Push in reverse so low slots are handed out first. */
	for (i = SLOTS_PER_CHUNK; i > 0; i--)
		a->free_slots[a->nfree++] = base + (uint32_t)(i - 1) + 1;
	a->nchunks++;
	return 0;
fail:
	sodium_free(chunk);
	return RAMKEY_ERR_NOMEM;
}

static uint8_t *slot_ptr(const struct secret_arena *a, uint32_t slot)
{
	uint32_t idx;

	if (slot == 0)
		return NULL;
	idx = slot - 1;
	if (idx / SLOTS_PER_CHUNK >= a->nchunks)
		return NULL;
	return a->chunks[idx / SLOTS_PER_CHUNK] +
	    (size_t)(idx % SLOTS_PER_CHUNK) * SLOT_SIZE;
}

int secret_arena_put(struct secret_arena *a, const char *secret, size_t len,
    uint32_t *slotp)
{
	uint8_t *p;
	uint32_t slot;
	int r;

	*slotp = 0;
	if (len == 0 || len > ARENA_SECRET_MAX)
		return RAMKEY_ERR_TOO_LARGE;
	if (a->nfree == 0 && (r = add_chunk(a)) != 0)
		return r;
	slot = a->free_slots[--a->nfree];
	p = slot_ptr(a, slot);
	p[0] = (uint8_t)len;
	memcpy(p + 1, secret, len);
	p[1 + len] = '\0';
	a->used++;
	*slotp = slot;
	return 0;
}

const char *secret_arena_get(const struct secret_arena *a, uint32_t slot,
    size_t *lenp)
{
	uint8_t *p = slot_ptr(a, slot);

	if (p == NULL || p[0] == 0)
		return NULL;
	if (lenp != NULL)
		*lenp = p[0];
	return (const char *)p + 1;
}

void secret_arena_release(struct secret_arena *a, uint32_t slot)
{
	uint8_t *p = slot_ptr(a, slot);

	if (p == NULL || p[0] == 0)
		return;
	sodium_memzero(p, SLOT_SIZE);
	if (a->nfree >= a->free_cap)
		abort(); /* cannot happen: free_cap covers every slot */
	a->free_slots[a->nfree++] = slot;
	a->used--;
}

size_t secret_arena_used(const struct secret_arena *a)
{
	return a->used;
}
