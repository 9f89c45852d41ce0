/*
 * Secrets in libcurl's and OpenSSL's own memory. A CreateAccessKey or
 * AssumeRole answer (and a metadata-service credential) passes through
 * libcurl's receive buffer and, over HTTPS, OpenSSL's record buffer
 * before it reaches http_body and the locked arena. Left alone, those
 * buffers keep the plaintext: freed unwiped, or, for the record buffer of
 * a kept-alive connection, alive until the next answer overwrites it.
 *
 * - cloud_global_init(): instead of curl_global_init(), before any other
 *   use of libcurl or OpenSSL: every block libcurl or OpenSSL frees (or
 *   moves, in realloc) is wiped first.
 * - cloud_tls_wipe(): CURLOPT_SSL_CTX_FUNCTION for every easy handle
 *   (curl_trust_apply() sets it): SSL_OP_CLEANSE_PLAINTEXT, so that
 *   OpenSSL wipes a record's plaintext as soon as libcurl has read it.
 *
 * Cost (measured, docs/ARCHITECTURE.md "Secrets in memory"): a memset of
 * each freed block, 260-520 KB (5-15 us) per AccessKey mint against about
 * 1 ms of agent CPU; no connection is given up, no handshake added.
 */
#ifndef RAMKEY_WIPE_MEM_H
#define RAMKEY_WIPE_MEM_H

#include <stdbool.h>

#include <curl/curl.h>

struct cloud_wipe_status {
	bool curl_hooks;	/* libcurl's blocks are wiped when freed */
	bool openssl_hooks;	/* OpenSSL's blocks are wiped when freed */
	bool tls_cleanse;	/* the TLS backend is OpenSSL: records wiped */
};

/*
 * Install the allocators and initialise libcurl (CURL_GLOBAL_DEFAULT).
 * Returns 0, or RAMKEY_ERR_INTERNAL when libcurl cannot be initialised.
 * *st says what is in force: OpenSSL's allocators can no longer be
 * replaced once OpenSSL has allocated anything, and a libcurl built on
 * another TLS library has no record buffer to cleanse.
 */
int cloud_global_init(struct cloud_wipe_status *st);
/* curl_global_cleanup(). */
void cloud_global_cleanup(void);

/* CURLOPT_SSL_CTX_FUNCTION (OpenSSL backend only). */
CURLcode cloud_tls_wipe(CURL *curl, void *ssl_ctx, void *arg);
/* Whether cloud_tls_wipe may be set (the TLS backend is OpenSSL). */
bool cloud_tls_wipe_available(void);

#endif
