#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>

#include "curl_trust.h"
#include "ramkey_err.h"
#include "wipe_mem.h"

/* Largest CA bundle read when ca_file has to be merged in memory. */
#define CA_BUNDLE_MAX (16 * 1024 * 1024)

static int readable_file(const char *path)
{
	struct stat st;
	int fd, r = RAMKEY_ERR_CONFIG;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY)) == -1)
		return RAMKEY_ERR_CONFIG;
	if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode))
		r = 0;
	close(fd);
	return r;
}

/* Append a file to *buf (malloc'd), bounded by CA_BUNDLE_MAX. */
static int append_file(const char *path, char **buf, size_t *len)
{
	char chunk[8192];
	ssize_t n;
	int fd, r = 0;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY)) == -1)
		return RAMKEY_ERR_CONFIG;
	while ((n = read(fd, chunk, sizeof(chunk))) != 0) {
		char *nb;

		if (n < 0) {
			if (errno == EINTR)
				continue;
			r = RAMKEY_ERR_CONFIG;
			break;
		}
		if (*len + (size_t)n + 1 > CA_BUNDLE_MAX) {
			r = RAMKEY_ERR_TOO_LARGE;
			break;
		}
		if ((nb = realloc(*buf, *len + (size_t)n + 1)) == NULL) {
			r = RAMKEY_ERR_NOMEM;
			break;
		}
		*buf = nb;
		memcpy(*buf + *len, chunk, (size_t)n);
		*len += (size_t)n;
		(*buf)[*len] = '\n'; /* separates two bundles */
	}
	close(fd);
	if (r == 0 && *buf != NULL)
		(*len)++;
	return r;
}

static bool is_dir(const char *path)
{
	struct stat st;

	return path != NULL && stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/*
 * The shared store: the system's trust (libcurl's default bundle, loaded
 * once, and the hashed CA directory, looked up as needed) plus ca_file.
 */
static int build_store(struct curl_trust *t, const char *def_file,
    const char *dir, const char *ca_file)
{
	X509_STORE *st;

	if ((st = X509_STORE_new()) == NULL)
		return RAMKEY_ERR_NOMEM;
	if ((def_file != NULL && readable_file(def_file) == 0 &&
		X509_STORE_load_file(st, def_file) != 1) ||
	    (dir != NULL && X509_STORE_load_path(st, dir) != 1) ||
	    (ca_file != NULL && X509_STORE_load_file(st, ca_file) != 1)) {
		X509_STORE_free(st);
		return RAMKEY_ERR_CONFIG;
	}
	t->store = st;
	return 0;
}

/*
 * With libcurl on OpenSSL, the shared store holds the union. Otherwise
 * CURLOPT_CAINFO alone would replace libcurl's default bundle, so next to
 * it goes CURLOPT_CAPATH, the system's hashed CA directory (libcurl's
 * built-in default, /etc/ssl/certs on Debian, kept by
 * update-ca-certificates): the TLS library then trusts the union of the
 * two. Only if there is no CA directory do we build one in-memory bundle,
 * the system bundle plus ca_file, for CURLOPT_CAINFO_BLOB. An HTTPS
 * proxy's TLS uses the files (CURLOPT_PROXY_CAINFO, CURLOPT_PROXY_CAPATH).
 */
/* A proxy libcurl would take from the environment for https:// URLs. */
static bool proxy_in_env(void)
{
	static const char *const vars[] = {"https_proxy", "HTTPS_PROXY",
	    "all_proxy", "ALL_PROXY"};
	size_t i;

	for (i = 0; i < sizeof(vars) / sizeof(vars[0]); i++) {
		const char *v = getenv(vars[i]);

		if (v != NULL && v[0] != '\0')
			return true;
	}
	return false;
}

int curl_trust_init(struct curl_trust *t, const char *ca_file,
    bool share_store, const char *proxy)
{
	char *def_path = NULL, *def_file = NULL, *buf = NULL;
	const char *dir = NULL;
	size_t len = 0;
	CURL *e;
	int r = 0;

	memset(t, 0, sizeof(*t));
	if (ca_file != NULL && ca_file[0] == '\0')
		ca_file = NULL;
	if (ca_file != NULL && (r = readable_file(ca_file)) != 0)
		return r;
	if ((e = curl_easy_init()) == NULL)
		return RAMKEY_ERR_NOMEM;
	curl_easy_getinfo(e, CURLINFO_CAPATH, &def_path);
	curl_easy_getinfo(e, CURLINFO_CAINFO, &def_file);
	if (is_dir(def_path))
		dir = def_path;
	else if (is_dir("/etc/ssl/certs"))
		dir = "/etc/ssl/certs";
	if (share_store && cloud_tls_wipe_available() &&
	    (proxy == NULL || proxy[0] == '\0') && !proxy_in_env())
		r = build_store(t, def_file, dir, ca_file);
	if (r == 0 && ca_file != NULL) {
		if ((t->ca_file = strdup(ca_file)) == NULL) {
			r = RAMKEY_ERR_NOMEM;
		} else if (dir != NULL) {
			if ((t->ca_path = strdup(dir)) == NULL)
				r = RAMKEY_ERR_NOMEM;
		} else if (t->store == NULL && def_file != NULL &&
		    readable_file(def_file) == 0) {
			if ((r = append_file(def_file, &buf, &len)) == 0 &&
			    (r = append_file(ca_file, &buf, &len)) == 0) {
				t->blob.data = buf;
				t->blob.len = len;
				/* libcurl copies it: a reload may free ours
				 * while transfers still run. */
				t->blob.flags = CURL_BLOB_COPY;
				buf = NULL;
			}
		}
	}
	free(buf);
	curl_easy_cleanup(e);
	if (r != 0)
		curl_trust_clear(t);
	return r;
}

void curl_trust_clear(struct curl_trust *t)
{
	X509_STORE_free(t->store);
	free(t->ca_file);
	free(t->ca_path);
	free(t->blob.data);
	memset(t, 0, sizeof(*t));
}

int curl_trust_check_file(const char *path)
{
	X509_STORE *st;
	int r = RAMKEY_ERR_CONFIG;

	if (readable_file(path) != 0)
		return RAMKEY_ERR_CONFIG;
	if ((st = X509_STORE_new()) == NULL)
		return RAMKEY_ERR_NOMEM;
	if (X509_STORE_load_file(st, path) == 1)
		r = 0;
	X509_STORE_free(st);
	return r;
}

/* CURLOPT_SSL_CTX_FUNCTION: the record cleansing, and the shared store. */
static CURLcode trust_ssl_ctx(CURL *curl, void *ssl_ctx, void *arg)
{
	CURLcode c = cloud_tls_wipe(curl, ssl_ctx, NULL);

	if (c == CURLE_OK && arg != NULL)
		SSL_CTX_set1_cert_store((SSL_CTX *)ssl_ctx, arg);
	return c;
}

CURLcode curl_trust_apply(CURL *e, const struct curl_trust *t)
{
	CURLcode c;

#define SET(opt, val)                                                       \
	do {                                                                \
		if ((c = curl_easy_setopt(e, (opt), (val))) != CURLE_OK)    \
			return c;                                           \
	} while (0)
	SET(CURLOPT_SSL_VERIFYPEER, 1L);
	SET(CURLOPT_SSL_VERIFYHOST, 2L);
	SET(CURLOPT_PROXY_SSL_VERIFYPEER, 1L);
	SET(CURLOPT_PROXY_SSL_VERIFYHOST, 2L);
	/* Received plaintext is wiped from OpenSSL's record buffer once read
	 * (wipe_mem.h). */
	if (cloud_tls_wipe_available()) {
		SET(CURLOPT_SSL_CTX_FUNCTION, trust_ssl_ctx);
		SET(CURLOPT_SSL_CTX_DATA, t->store);
	}
	if (t->store != NULL) {
		/* No CA files for libcurl to load: trust_ssl_ctx() sets the
		 * store (there is no proxy: curl_trust_init()). */
		SET(CURLOPT_CAINFO, NULL);
		SET(CURLOPT_CAPATH, NULL);
	} else if (t->blob.data != NULL) {
		SET(CURLOPT_CAINFO_BLOB, &t->blob);
		SET(CURLOPT_PROXY_CAINFO_BLOB, &t->blob);
	} else if (t->ca_file != NULL) {
		SET(CURLOPT_CAINFO, t->ca_file);
		SET(CURLOPT_PROXY_CAINFO, t->ca_file);
		if (t->ca_path != NULL) {
			SET(CURLOPT_CAPATH, t->ca_path);
			SET(CURLOPT_PROXY_CAPATH, t->ca_path);
		}
	}
#undef SET
	return CURLE_OK;
}
