#include <malloc.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>
#include <openssl/crypto.h>
#include <openssl/ssl.h>
#include <sodium.h>

#include "ramkey_err.h"
#include "wipe_mem.h"

/* Set once, before any thread or transfer exists. */
static bool tls_is_openssl;

/*
 * The allocators. A block's size comes from the allocator itself
 * (malloc_usable_size: glibc, and the sanitizers' allocator), so no
 * header is needed and a block from plain malloc may be passed in.
 */
static void wipe_free(void *p)
{
	if (p == NULL)
		return;
	sodium_memzero(p, malloc_usable_size(p));
	free(p);
}

/* Never realloc in place or not: the old block may hold a secret, and
 * realloc would free it unwiped. */
static void *wipe_realloc(void *p, size_t n)
{
	size_t old;
	void *q;

	if (p == NULL)
		return malloc(n);
	if (n == 0) {
		wipe_free(p);
		return NULL;
	}
	old = malloc_usable_size(p);
	if (n <= old)
		return p;
	if ((q = malloc(n)) == NULL)
		return NULL;
	memcpy(q, p, old);
	wipe_free(p);
	return q;
}

static char *wipe_strdup(const char *s)
{
	size_t n = strlen(s) + 1;
	char *d = malloc(n);

	if (d != NULL)
		memcpy(d, s, n);
	return d;
}

static void *ossl_malloc(size_t n, const char *file, int line)
{
	(void)file;
	(void)line;
	return malloc(n);
}

static void *ossl_realloc(void *p, size_t n, const char *file, int line)
{
	(void)file;
	(void)line;
	return wipe_realloc(p, n);
}

static void ossl_free(void *p, const char *file, int line)
{
	(void)file;
	(void)line;
	wipe_free(p);
}

int cloud_global_init(struct cloud_wipe_status *st)
{
	const curl_version_info_data *v;

	memset(st, 0, sizeof(*st));
	if (sodium_init() < 0)
		return RAMKEY_ERR_INTERNAL;
	/* First: it fails once OpenSSL has allocated anything, and libcurl's
	 * initialisation initialises OpenSSL. */
	st->openssl_hooks = CRYPTO_set_mem_functions(ossl_malloc, ossl_realloc,
	    ossl_free) == 1;
	if (curl_global_init_mem(CURL_GLOBAL_DEFAULT, malloc, wipe_free,
	    wipe_realloc, wipe_strdup, calloc) != CURLE_OK)
		return RAMKEY_ERR_INTERNAL;
	st->curl_hooks = true;
	v = curl_version_info(CURLVERSION_NOW);
	tls_is_openssl = v != NULL && v->ssl_version != NULL &&
	    strncmp(v->ssl_version, "OpenSSL/", 8) == 0;
#ifdef SSL_OP_CLEANSE_PLAINTEXT
	st->tls_cleanse = tls_is_openssl;
#else
	tls_is_openssl = false;
#endif
	return 0;
}

void cloud_global_cleanup(void)
{
	curl_global_cleanup();
}

bool cloud_tls_wipe_available(void)
{
	return tls_is_openssl;
}

CURLcode cloud_tls_wipe(CURL *curl, void *ssl_ctx, void *arg)
{
	(void)curl;
	(void)arg;
#ifdef SSL_OP_CLEANSE_PLAINTEXT
	SSL_CTX_set_options((SSL_CTX *)ssl_ctx, SSL_OP_CLEANSE_PLAINTEXT);
#else
	(void)ssl_ctx;
#endif
	return CURLE_OK;
}
