#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "http_body.h"

size_t http_body_write(char *p, size_t size, size_t nmemb, void *arg)
{
	struct http_body *b = arg;
	size_t n = size * nmemb, need, cap;
	char *d;

	if ((size != 0 && n / size != nmemb) || n > SIZE_MAX - b->len - 1 ||
	    (b->max != 0 && b->len + n > b->max)) {
		b->overflow = true;
		return 0; /* abort the transfer */
	}
	need = b->len + n + 1;
	if (need > b->cap) {
		cap = b->cap ? b->cap : 1024;
		while (cap < need)
			cap *= 2;
		/* Never realloc: the old block may hold secret bytes. */
		if ((d = malloc(cap)) == NULL) {
			b->nomem = true;
			return 0;
		}
		if (b->data != NULL) {
			memcpy(d, b->data, b->len);
			sodium_memzero(b->data, b->cap);
			free(b->data);
		}
		b->data = d;
		b->cap = cap;
	}
	memcpy(b->data + b->len, p, n);
	b->len += n;
	b->data[b->len] = '\0';
	return n;
}

void http_body_clear(struct http_body *b)
{
	if (b->data != NULL) {
		sodium_memzero(b->data, b->cap);
		free(b->data);
	}
	b->data = NULL;
	b->len = b->cap = 0;
	b->overflow = b->nomem = false;
}
