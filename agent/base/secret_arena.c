#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "ramkey_err.h"
#include "secret_arena.h"

#define CHUNK_BYTES 65536
#define NCLASSES 6
/* Slot layout: [0..1] length, big-endian (0 = free), secret, NUL. */
#define SLOT_OVERHEAD 3
/* A slot number: the class in the top bits, index + 1 below. */
#define CLASS_SHIFT 28
#define INDEX_MASK ((1u << CLASS_SHIFT) - 1)

/* An AccessKeySecret or an STS secret takes 128 bytes; an STS token is
 * about 1 KiB (1280), more with a session policy. */
static const size_t slot_sizes[NCLASSES] = { 128, 512, 1280, 2048, 4096,
	8320 };

struct arena_class {
	size_t slot_size, per_chunk;
	uint8_t **chunks;
	size_t nchunks;
	uint32_t *free_slots; /* stack of free slot numbers */
	size_t nfree, free_cap;
};

struct secret_arena {
	struct arena_class cls[NCLASSES];
	size_t used;
};

int secret_arena_new(struct secret_arena **ret)
{
	struct secret_arena *a;
	size_t i;

	*ret = NULL;
	if (sodium_init() < 0)
		return RAMKEY_ERR_CRYPTO;
	if ((a = calloc(1, sizeof(*a))) == NULL)
		return RAMKEY_ERR_NOMEM;
	for (i = 0; i < NCLASSES; i++) {
		a->cls[i].slot_size = slot_sizes[i];
		a->cls[i].per_chunk = CHUNK_BYTES / slot_sizes[i];
	}
	*ret = a;
	return 0;
}

void secret_arena_free(struct secret_arena *a)
{
	size_t i, k;

	if (a == NULL)
		return;
	for (k = 0; k < NCLASSES; k++) {
		for (i = 0; i < a->cls[k].nchunks; i++)
			sodium_free(a->cls[k].chunks[i]); /* wipes */
		free(a->cls[k].chunks);
		free(a->cls[k].free_slots);
	}
	free(a);
}

static int add_chunk(struct arena_class *c, uint32_t cls)
{
	size_t bytes = c->slot_size * c->per_chunk, i;
	uint8_t **nc, *chunk;
	uint32_t *nf, base;

	if ((c->nchunks + 1) * c->per_chunk > INDEX_MASK)
		return RAMKEY_ERR_NOMEM;
	if ((chunk = sodium_malloc(bytes)) == NULL)
		return RAMKEY_ERR_NOMEM;
	sodium_memzero(chunk, bytes);
	if ((nc = realloc(c->chunks, (c->nchunks + 1) * sizeof(*nc))) == NULL)
		goto fail;
	c->chunks = nc;
	/* Every slot may be free at once: room for all of them. */
	if ((c->nchunks + 1) * c->per_chunk > c->free_cap) {
		size_t cap = (c->nchunks + 1) * c->per_chunk;

		if ((nf = realloc(c->free_slots, cap * sizeof(*nf))) == NULL)
			goto fail;
		c->free_slots = nf;
		c->free_cap = cap;
	}
	c->chunks[c->nchunks] = chunk;
	base = (uint32_t)(c->nchunks * c->per_chunk);
	/* Push in reverse so low slots are handed out first. */
	for (i = c->per_chunk; i > 0; i--)
		c->free_slots[c->nfree++] = (cls << CLASS_SHIFT) |
		    (base + (uint32_t)(i - 1) + 1);
	c->nchunks++;
	return 0;
fail:
	sodium_free(chunk);
	return RAMKEY_ERR_NOMEM;
}

static uint8_t *slot_ptr(const struct secret_arena *a, uint32_t slot)
{
	const struct arena_class *c;
	uint32_t cls = slot >> CLASS_SHIFT, idx;

	if ((slot & INDEX_MASK) == 0 || cls >= NCLASSES)
		return NULL;
	c = &a->cls[cls];
	idx = (slot & INDEX_MASK) - 1;
	if (idx / c->per_chunk >= c->nchunks)
		return NULL;
	return c->chunks[idx / c->per_chunk] +
	    (size_t)(idx % c->per_chunk) * c->slot_size;
}

int secret_arena_put(struct secret_arena *a, const char *secret, size_t len,
    uint32_t *slotp)
{
	struct arena_class *c = NULL;
	uint32_t slot, cls;
	uint8_t *p;
	int r;

	*slotp = 0;
	if (len == 0 || len > ARENA_SECRET_MAX)
		return RAMKEY_ERR_TOO_LARGE;
	for (cls = 0; cls < NCLASSES; cls++)
		if (len + SLOT_OVERHEAD <= a->cls[cls].slot_size) {
			c = &a->cls[cls];
			break;
		}
	if (c == NULL)
		return RAMKEY_ERR_TOO_LARGE;
	if (c->nfree == 0 && (r = add_chunk(c, cls)) != 0)
		return r;
	slot = c->free_slots[--c->nfree];
	p = slot_ptr(a, slot);
	p[0] = (uint8_t)(len >> 8);
	p[1] = (uint8_t)len;
	memcpy(p + 2, secret, len);
	p[2 + len] = '\0';
	a->used++;
	*slotp = slot;
	return 0;
}

const char *secret_arena_get(const struct secret_arena *a, uint32_t slot,
    size_t *lenp)
{
	uint8_t *p = slot_ptr(a, slot);
	size_t len;

	if (p == NULL || (len = (size_t)p[0] << 8 | p[1]) == 0)
		return NULL;
	if (lenp != NULL)
		*lenp = len;
	return (const char *)p + 2;
}

void secret_arena_release(struct secret_arena *a, uint32_t slot)
{
	uint8_t *p = slot_ptr(a, slot);
	struct arena_class *c;

	if (p == NULL || (p[0] == 0 && p[1] == 0))
		return;
	c = &a->cls[slot >> CLASS_SHIFT];
	sodium_memzero(p, c->slot_size);
	if (c->nfree >= c->free_cap)
		abort(); /* cannot happen: free_cap covers every slot */
	c->free_slots[c->nfree++] = slot;
	a->used--;
}

size_t secret_arena_used(const struct secret_arena *a)
{
	return a->used;
}
