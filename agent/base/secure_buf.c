#include <pthread.h>
#include <stdint.h>
#include <string.h>

#include <sodium.h>

#include "secure_buf.h"

/* Two sizes cover every transient secret: an AccessKeySecret (at most
 * 256 bytes) and a SecurityToken (at most 8 KiB); anything larger is
 * allocated and unmapped each time. */
#define NSIZES 2
static const size_t sizes[NSIZES] = { 512, 8448 };

/* Before the caller's bytes, inside the locked block: which size it is
 * (NSIZES: not kept) and how many bytes the caller asked for, so that a
 * release wipes only those. Kept a multiple of 16 for alignment. */
struct header {
	uint32_t size_index;
	uint32_t pad;
	size_t len;
};
#define HEADER_BYTES ((sizeof(struct header) + 15) & ~(size_t)15)

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static void *kept[NSIZES][SECURE_BUF_KEEP]; /* block starts */
static size_t nkept[NSIZES];

void *secure_buf_alloc(size_t len)
{
	struct header h = { NSIZES, 0, len };
	unsigned char *block = NULL;
	size_t i;

	for (i = 0; i < NSIZES; i++)
		if (len <= sizes[i]) {
			h.size_index = (uint32_t)i;
			break;
		}
	if (h.size_index < NSIZES) {
		pthread_mutex_lock(&lock);
		if (nkept[i] > 0)
			block = kept[i][--nkept[i]];
		pthread_mutex_unlock(&lock);
	}
	if (block == NULL) {
		size_t n = h.size_index < NSIZES ? sizes[h.size_index] : len;

		if (n > SIZE_MAX - HEADER_BYTES || sodium_init() < 0 ||
		    (block = sodium_malloc(HEADER_BYTES + n)) == NULL)
			return NULL;
	}
	memcpy(block, &h, sizeof(h));
	return block + HEADER_BYTES;
}

void secure_buf_free(void *p)
{
	unsigned char *block;
	struct header h;

	if (p == NULL)
		return;
	block = (unsigned char *)p - HEADER_BYTES;
	memcpy(&h, block, sizeof(h));
	if (h.size_index < NSIZES) {
		sodium_memzero(p, h.len);
		pthread_mutex_lock(&lock);
		if (nkept[h.size_index] < SECURE_BUF_KEEP) {
			kept[h.size_index][nkept[h.size_index]++] = block;
			block = NULL;
		}
		pthread_mutex_unlock(&lock);
	}
	sodium_free(block); /* wipes; NULL is ignored */
}

void secure_buf_drain(void)
{
	size_t i;

	pthread_mutex_lock(&lock);
	for (i = 0; i < NSIZES; i++)
		while (nkept[i] > 0)
			sodium_free(kept[i][--nkept[i]]);
	pthread_mutex_unlock(&lock);
}
