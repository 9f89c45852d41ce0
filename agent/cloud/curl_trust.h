/*
 * TLS trust for the agent's HTTPS calls (RAM, Keybase): verification is
 * always on, and ca_file ADDS a CA to the system store, never replaces it.
 */
#ifndef RAMKEY_CURL_TRUST_H
#define RAMKEY_CURL_TRUST_H

#include <curl/curl.h>

struct curl_trust {
	char *ca_file;		/* extra CA file, or NULL */
	char *ca_path;		/* system CA directory kept next to it */
	struct curl_blob blob;	/* or: system bundle + extra, in memory */
};

/* Prepare for ca_file (NULL or "": the system store alone). Returns 0,
 * RAMKEY_ERR_CONFIG (not a readable regular file) or RAMKEY_ERR_NOMEM. */
int curl_trust_init(struct curl_trust *t, const char *ca_file);
void curl_trust_clear(struct curl_trust *t);

/* Verification on, and the trust store, for the server and a proxy. */
CURLcode curl_trust_apply(CURL *e, const struct curl_trust *t);

#endif
