/*
 * TLS trust for the agent's HTTPS calls (RAM, Keybase): verification is
 * always on, and ca_file ADDS a CA to the system store, never replaces it.
 */
#ifndef RAMKEY_CURL_TRUST_H
#define RAMKEY_CURL_TRUST_H

#include <stdbool.h>

#include <curl/curl.h>

struct x509_store_st;

struct curl_trust {
	/*
	 * With libcurl on OpenSSL and share_store: one certificate store,
	 * built here, that every connection's TLS context shares. libcurl
	 * would otherwise parse the CA files again for each new connection
	 * (its own cache is off when a CA directory is set), several
	 * milliseconds for the system bundle, all of it on the event loop.
	 */
	struct x509_store_st *store;
	char *ca_file;		/* extra CA file, or NULL */
	char *ca_path;		/* system CA directory kept next to it */
	struct curl_blob blob;	/* or: system bundle + extra, in memory */
};

/*
 * Prepare for ca_file (NULL or "": the system store alone). share_store:
 * build the shared store; it is used only when no proxy can apply (proxy
 * NULL or "", and none in libcurl's environment variables), because
 * libcurl loads a proxy's CA files into the context's store, which would
 * then be the shared one. The store is read once: after
 * update-ca-certificates, the owner must be rebuilt (the agent: a
 * restart). Returns 0, RAMKEY_ERR_CONFIG (not a readable regular file or
 * not certificates) or RAMKEY_ERR_NOMEM.
 */
int curl_trust_init(struct curl_trust *t, const char *ca_file,
    bool share_store, const char *proxy);
void curl_trust_clear(struct curl_trust *t);

/* 0 if path holds at least one PEM certificate OpenSSL reads, else
 * RAMKEY_ERR_CONFIG. */
int curl_trust_check_file(const char *path);

/* Verification on, and the trust store, for the server and a proxy. A
 * handle given the shared store refers to it until it is cleaned up: t
 * must outlive every such handle. */
CURLcode curl_trust_apply(CURL *e, const struct curl_trust *t);

#endif
