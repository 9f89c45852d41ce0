#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <sodium.h>

#include "ram_sign.h"
#include "ramkey_err.h"

/* --- Growable buffer --- */

int ram_buf_append(struct ram_buf *b, const void *p, size_t n)
{
	size_t need, cap;
	char *d;

	if (n > SIZE_MAX - b->len - 1)
		return RAMKEY_ERR_TOO_LARGE;
	need = b->len + n + 1;
	if (b->max != 0 && need - 1 > b->max)
		return RAMKEY_ERR_TOO_LARGE;
	if (need > b->cap) {
		cap = b->cap ? b->cap : 256;
		while (cap < need)
			cap = cap > SIZE_MAX / 2 ? need : cap * 2;
		/* Never realloc: the old block may hold secret bytes. */
		if ((d = malloc(cap)) == NULL)
			return RAMKEY_ERR_NOMEM;
		if (b->data != NULL) {
			memcpy(d, b->data, b->len);
			sodium_memzero(b->data, b->cap);
			free(b->data);
		}
		b->data = d;
		b->cap = cap;
	}
	if (n > 0)
		memcpy(b->data + b->len, p, n);
	b->len += n;
	b->data[b->len] = '\0';
	return 0;
}

int ram_buf_appends(struct ram_buf *b, const char *s)
{
	return ram_buf_append(b, s, strlen(s));
}

static bool unreserved(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
	    (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.' ||
	    c == '~';
}

int ram_buf_append_enc(struct ram_buf *b, const char *s, size_t n)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t i, start = 0;
	char esc[3];
	int r;

	for (i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];

		if (unreserved(c))
			continue;
		if ((r = ram_buf_append(b, s + start, i - start)) != 0)
			return r;
		esc[0] = '%';
		esc[1] = hex[c >> 4];
		esc[2] = hex[c & 0xf];
		if ((r = ram_buf_append(b, esc, 3)) != 0)
			return r;
		start = i + 1;
	}
	return ram_buf_append(b, s + start, n - start);
}

int ram_buf_steal(struct ram_buf *b, char **ret)
{
	int r;

	*ret = NULL;
	if (b->data == NULL && (r = ram_buf_append(b, "", 0)) != 0)
		return r;
	*ret = b->data;
	b->data = NULL;
	b->len = b->cap = 0;
	return 0;
}

void ram_buf_free(struct ram_buf *b)
{
	if (b == NULL)
		return;
	if (b->data != NULL) {
		sodium_memzero(b->data, b->cap);
		free(b->data);
	}
	b->data = NULL;
	b->len = b->cap = 0;
}

int ram_percent_encode(const char *s, size_t n, char **ret)
{
	struct ram_buf b = {0};
	int r;

	*ret = NULL;
	if ((r = ram_buf_append_enc(&b, s, n)) != 0 ||
	    (r = ram_buf_steal(&b, ret)) != 0)
		goto out;
out:
	ram_buf_free(&b);
	return r;
}

/* --- Canonical query --- */

static int param_cmp(const void *a, const void *b)
{
	const struct ram_param *pa = *(const struct ram_param *const *)a;
	const struct ram_param *pb = *(const struct ram_param *const *)b;

	return strcmp(pa->name, pb->name); /* unsigned bytes: byte order */
}

int ram_canonical_query(const struct ram_param *params, size_t n, char **ret)
{
	const struct ram_param **v = NULL;
	struct ram_buf b = {0};
	size_t i, m = 0;
	int r = RAMKEY_ERR_NOMEM;

	*ret = NULL;
	if (n > 0 && (v = calloc(n, sizeof(*v))) == NULL)
		goto out;
	for (i = 0; i < n; i++) {
		if (params[i].name == NULL || params[i].name[0] == '\0') {
			r = RAMKEY_ERR_INVALID;
			goto out;
		}
		if (params[i].value != NULL)
			v[m++] = &params[i];
	}
	if (m > 1)
		qsort(v, m, sizeof(*v), param_cmp);
	for (i = 0; i < m; i++) {
		if (i > 0 && strcmp(v[i - 1]->name, v[i]->name) == 0) {
			r = RAMKEY_ERR_INVALID;
			goto out;
		}
		if ((i > 0 && (r = ram_buf_append(&b, "&", 1)) != 0) ||
		    (r = ram_buf_append_enc(
			 &b, v[i]->name, strlen(v[i]->name))) != 0 ||
		    (r = ram_buf_append(&b, "=", 1)) != 0 ||
		    (r = ram_buf_append_enc(
			 &b, v[i]->value, strlen(v[i]->value))) != 0)
			goto out;
	}
	r = ram_buf_steal(&b, ret);
out:
	free(v);
	ram_buf_free(&b);
	return r;
}

/* --- v1 --- */

int ram_v1_string_to_sign(
    const char *method, const char *canonical_query, char **ret)
{
	struct ram_buf b = {0};
	int r;

	*ret = NULL;
	if ((r = ram_buf_appends(&b, method)) != 0 ||
	    (r = ram_buf_appends(&b, "&%2F&")) != 0 ||
	    (r = ram_buf_append_enc(
		 &b, canonical_query, strlen(canonical_query))) != 0 ||
	    (r = ram_buf_steal(&b, ret)) != 0)
		goto out;
out:
	ram_buf_free(&b);
	return r;
}

int ram_v1_hmac(const char *string_to_sign, const void *key, size_t key_len,
    char sig[RAM_V1_SIGNATURE_LEN + 1])
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;
	int r = RAMKEY_ERR_CRYPTO;

	sig[0] = '\0';
	if (key_len > INT32_MAX)
		return RAMKEY_ERR_TOO_LARGE;
	if (HMAC(EVP_sha1(), key, (int)key_len,
		(const unsigned char *)string_to_sign, strlen(string_to_sign),
		md, &mdlen) == NULL ||
	    mdlen != 20)
		goto out;
	if (EVP_EncodeBlock((unsigned char *)sig, md, (int)mdlen) !=
	    RAM_V1_SIGNATURE_LEN)
		goto out;
	r = 0;
out:
	sodium_memzero(md, sizeof(md));
	if (r != 0)
		sig[0] = '\0';
	return r;
}

int ram_v1_signature(const char *string_to_sign, const char *secret,
    size_t secret_len, char sig[RAM_V1_SIGNATURE_LEN + 1])
{
	char *key = NULL;
	int r;

	sig[0] = '\0';
	if (secret_len > INT32_MAX - 1)
		return RAMKEY_ERR_TOO_LARGE;
	if ((key = malloc(secret_len + 1)) == NULL)
		return RAMKEY_ERR_NOMEM;
	memcpy(key, secret, secret_len);
	key[secret_len] = '&';
	r = ram_v1_hmac(string_to_sign, key, secret_len + 1, sig);
	sodium_memzero(key, secret_len + 1);
	free(key);
	return r;
}

/* --- v3 --- */

static void to_hex(const unsigned char *in, size_t n, char *out)
{
	static const char hex[] = "0123456789abcdef";
	size_t i;

	for (i = 0; i < n; i++) {
		out[2 * i] = hex[in[i] >> 4];
		out[2 * i + 1] = hex[in[i] & 0xf];
	}
	out[2 * n] = '\0';
}

/*
 * v3's SHA-256 and HMAC-SHA256 are libsodium's: OpenSSL 3 looks the
 * algorithm up by name on every EVP_sha256() call, which cost more than the
 * hashing of a request this size.
 */
int ram_sha256_hex(
    const void *data, size_t len, char out[RAM_SHA256_HEX_LEN + 1])
{
	unsigned char md[crypto_hash_sha256_BYTES];

	if (crypto_hash_sha256(md, data, len) != 0) {
		out[0] = '\0';
		return RAMKEY_ERR_CRYPTO;
	}
	to_hex(md, sizeof(md), out);
	return 0;
}

struct v3_header {
	char *name;        /* lowercased */
	const char *value; /* trimmed: value[0..vlen) */
	size_t vlen;
	size_t order; /* input position, to keep duplicates stable */
};

static int v3_header_cmp(const void *a, const void *b)
{
	const struct v3_header *ha = a, *hb = b;
	int c = strcmp(ha->name, hb->name);

	if (c != 0)
		return c;
	return ha->order < hb->order ? -1 : ha->order > hb->order;
}

static bool v3_signed_name(const char *lname)
{
	return strcmp(lname, "host") == 0 ||
	    strcmp(lname, "content-type") == 0 ||
	    strncmp(lname, "x-acs-", 6) == 0;
}

static int v3_headers(const struct ram_v3_request *req, struct ram_buf *canon,
    struct ram_buf *names)
{
	struct v3_header *h = NULL;
	size_t i, j, m = 0;
	int r = RAMKEY_ERR_NOMEM;

	if (req->nheaders > 0 &&
	    (h = calloc(req->nheaders, sizeof(*h))) == NULL)
		goto out;
	for (i = 0; i < req->nheaders; i++) {
		const char *n = req->headers[i].name,
			   *v = req->headers[i].value;
		size_t vlen;
		char *ln;

		if (n == NULL || v == NULL)
			continue;
		if ((ln = strdup(n)) == NULL)
			goto out;
		for (j = 0; ln[j] != '\0'; j++)
			if (ln[j] >= 'A' && ln[j] <= 'Z')
				ln[j] = (char)(ln[j] - 'A' + 'a');
		if (!v3_signed_name(ln)) {
			free(ln);
			continue;
		}
		while (*v == ' ' || *v == '\t')
			v++;
		vlen = strlen(v);
		while (vlen > 0 && (v[vlen - 1] == ' ' || v[vlen - 1] == '\t'))
			vlen--;
		h[m].name = ln;
		h[m].value = v;
		h[m].vlen = vlen;
		h[m].order = i;
		m++;
	}
	if (m > 1)
		qsort(h, m, sizeof(*h), v3_header_cmp);
	for (i = 0; i < m; i++) {
		bool dup = i > 0 && strcmp(h[i - 1].name, h[i].name) == 0;

		if (dup) {
			/* "name:v1,v2\n": replace the previous newline. */
			canon->data[--canon->len] = '\0';
			if ((r = ram_buf_append(canon, ",", 1)) != 0)
				goto out;
		} else {
			if ((names->len > 0 &&
				(r = ram_buf_append(names, ";", 1)) != 0) ||
			    (r = ram_buf_appends(names, h[i].name)) != 0 ||
			    (r = ram_buf_appends(canon, h[i].name)) != 0 ||
			    (r = ram_buf_append(canon, ":", 1)) != 0)
				goto out;
		}
		if ((r = ram_buf_append(canon, h[i].value, h[i].vlen)) != 0 ||
		    (r = ram_buf_append(canon, "\n", 1)) != 0)
			goto out;
	}
	r = 0;
out:
	if (h != NULL)
		for (i = 0; i < m; i++)
			free(h[i].name);
	free(h);
	return r;
}

void ram_v3_signed_clear(struct ram_v3_signed *s)
{
	if (s == NULL)
		return;
	free(s->canonical_query);
	free(s->canonical_request);
	free(s->signed_headers);
	free(s->string_to_sign);
	free(s->authorization);
	memset(s, 0, sizeof(*s));
}

int ram_v3_sign(const struct ram_v3_request *req, const char *secret,
    size_t secret_len, struct ram_v3_signed *out)
{
	struct ram_buf creq = {0}, canon = {0}, names = {0}, b = {0};
	char hash[RAM_SHA256_HEX_LEN + 1];
	unsigned char md[crypto_auth_hmacsha256_BYTES];
	crypto_auth_hmacsha256_state st;
	const char *uri;
	int r;

	memset(out, 0, sizeof(*out));
	if (req->method == NULL || req->hashed_payload == NULL ||
	    req->access_key_id == NULL || secret_len > INT32_MAX)
		return RAMKEY_ERR_INVALID;
	uri = req->uri == NULL || req->uri[0] == '\0' ? "/" : req->uri;
	if ((r = ram_canonical_query(
		 req->query, req->nquery, &out->canonical_query)) != 0 ||
	    (r = v3_headers(req, &canon, &names)) != 0)
		goto out;
	if ((r = ram_buf_appends(&creq, req->method)) != 0 ||
	    (r = ram_buf_append(&creq, "\n", 1)) != 0 ||
	    (r = ram_buf_appends(&creq, uri)) != 0 ||
	    (r = ram_buf_append(&creq, "\n", 1)) != 0 ||
	    (r = ram_buf_appends(&creq, out->canonical_query)) != 0 ||
	    (r = ram_buf_append(&creq, "\n", 1)) != 0 ||
	    (canon.len > 0 &&
		(r = ram_buf_append(&creq, canon.data, canon.len)) != 0) ||
	    (r = ram_buf_append(&creq, "\n", 1)) != 0 ||
	    (names.len > 0 &&
		(r = ram_buf_append(&creq, names.data, names.len)) != 0) ||
	    (r = ram_buf_append(&creq, "\n", 1)) != 0 ||
	    (r = ram_buf_appends(&creq, req->hashed_payload)) != 0)
		goto out;
	if ((r = ram_sha256_hex(creq.data, creq.len, hash)) != 0)
		goto out;
	if ((r = ram_buf_appends(&b, RAM_V3_ALGORITHM "\n")) != 0 ||
	    (r = ram_buf_appends(&b, hash)) != 0 ||
	    (r = ram_buf_steal(&b, &out->string_to_sign)) != 0)
		goto out;
	if (crypto_auth_hmacsha256_init(&st, (const unsigned char *)secret,
		secret_len) != 0 ||
	    crypto_auth_hmacsha256_update(&st,
		(const unsigned char *)out->string_to_sign,
		strlen(out->string_to_sign)) != 0 ||
	    crypto_auth_hmacsha256_final(&st, md) != 0) {
		r = RAMKEY_ERR_CRYPTO;
		goto out;
	}
	to_hex(md, sizeof(md), out->signature);
	if ((r = ram_buf_appends(&b, RAM_V3_ALGORITHM " Credential=")) != 0 ||
	    (r = ram_buf_appends(&b, req->access_key_id)) != 0 ||
	    (r = ram_buf_appends(&b, ",SignedHeaders=")) != 0 ||
	    (names.len > 0 &&
		(r = ram_buf_append(&b, names.data, names.len)) != 0) ||
	    (r = ram_buf_appends(&b, ",Signature=")) != 0 ||
	    (r = ram_buf_appends(&b, out->signature)) != 0 ||
	    (r = ram_buf_steal(&b, &out->authorization)) != 0)
		goto out;
	if ((r = ram_buf_steal(&creq, &out->canonical_request)) != 0 ||
	    (r = ram_buf_steal(&names, &out->signed_headers)) != 0)
		goto out;
out:
	sodium_memzero(md, sizeof(md));
	sodium_memzero(&st, sizeof(st));
	ram_buf_free(&creq);
	ram_buf_free(&canon);
	ram_buf_free(&names);
	ram_buf_free(&b);
	if (r != 0)
		ram_v3_signed_clear(out);
	return r;
}

/* --- Nonce and timestamp --- */

void ram_nonce(char out[RAM_NONCE_LEN + 1])
{
	unsigned char u[16];
	char hex[33];

	randombytes_buf(u, sizeof(u));
	u[6] = (unsigned char)((u[6] & 0x0f) | 0x40); /* version 4 */
	u[8] = (unsigned char)((u[8] & 0x3f) | 0x80); /* RFC 4122 variant */
	to_hex(u, sizeof(u), hex);
	memcpy(out, hex, 8);
	out[8] = '-';
	memcpy(out + 9, hex + 8, 4);
	out[13] = '-';
	memcpy(out + 14, hex + 12, 4);
	out[18] = '-';
	memcpy(out + 19, hex + 16, 4);
	out[23] = '-';
	memcpy(out + 24, hex + 20, 12);
	out[36] = '\0';
}

int ram_timestamp(time_t t, char out[RAM_TIMESTAMP_LEN + 1])
{
	struct tm tm;

	out[0] = '\0';
	if (gmtime_r(&t, &tm) == NULL ||
	    strftime(out, RAM_TIMESTAMP_LEN + 1, "%Y-%m-%dT%H:%M:%SZ", &tm) !=
		RAM_TIMESTAMP_LEN) {
		out[0] = '\0';
		return RAMKEY_ERR_INVALID;
	}
	return 0;
}
