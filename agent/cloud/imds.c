/*
 * The instance metadata service client (imds.h). One fetch at a time, in
 * up to three steps, each one easy handle started from a timer (so no
 * callback ever runs inside imds_fetch() or inside libcurl's own loop).
 */
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <curl/curl.h>
#include <sodium.h>

#include "curl_loop.h"
#include "evloop.h"
#include "http_body.h"
#include "imds.h"
#include "ram_response.h"
#include "ramkey_err.h"

#define IMDS_USER_AGENT "ramkey/" RAMKEY_VERSION
#define IMDS_TOKEN_PATH "/latest/api/token"
#define IMDS_CRED_PATH "/latest/meta-data/ram/security-credentials/"
#define IMDS_TOKEN_MAX 1024
#define IMDS_WHY_MAX 320

enum imds_step { STEP_TOKEN, STEP_ROLE, STEP_CRED };

struct imds {
	struct evloop *loop;
	CURLM *multi;
	struct curl_loop cl;
	char *base;		/* http://host[:port], no trailing '/' */
	char *role;		/* configured, or NULL */
	bool allow_v1;
	/* The fetch in progress. */
	bool active;
	enum imds_step step;
	struct ev_timer timer;	/* starts the next step */
	CURL *easy;
	struct curl_slist *headers;
	char *url;
	struct http_body body;
	char errbuf[CURL_ERROR_SIZE];
	char *token;		/* session token (sodium_malloc), or NULL */
	bool token_less;
	char role_now[IMDS_ROLE_MAX + 1];
	int64_t server_date;
	imds_done_fn fn;
	void *arg;
	unsigned busy;		/* > 0 while we dispatch */
	bool dying;
};

static void imds_destroy(struct imds *m);

bool imds_role_valid(const char *s, size_t len)
{
	size_t i;

	if (len == 0 || len > IMDS_ROLE_MAX)
		return false;
	for (i = 0; i < len; i++)
		if (!isalnum((unsigned char)s[i]) && s[i] != '.' &&
		    s[i] != '_' && s[i] != '-')
			return false;
	return true;
}

int imds_url_parse(const char *url, char **host, unsigned *port)
{
	const char *h, *e, *p;
	unsigned long n = 80;
	size_t hlen;
	char *end;

	*host = NULL;
	*port = 0;
	if (url == NULL || strncasecmp(url, "http://", 7) != 0)
		return RAMKEY_ERR_CONFIG;
	h = url + 7;
	if (*h == '[') {
		if ((e = strchr(h, ']')) == NULL || e == h + 1)
			return RAMKEY_ERR_CONFIG;
		for (p = h + 1; p < e; p++)
			if (!isxdigit((unsigned char)*p) && *p != ':' &&
			    *p != '.')
				return RAMKEY_ERR_CONFIG;
		hlen = (size_t)(e - h - 1);
		h++;
		p = e + 1;
	} else {
		for (p = h; isalnum((unsigned char)*p) || *p == '.' ||
		    *p == '-'; p++)
			;
		hlen = (size_t)(p - h);
		if (hlen == 0)
			return RAMKEY_ERR_CONFIG;
	}
	if (*p == ':') {
		if (!isdigit((unsigned char)p[1]))
			return RAMKEY_ERR_CONFIG;
		n = strtoul(p + 1, &end, 10);
		if (n == 0 || n > 65535)
			return RAMKEY_ERR_CONFIG;
		p = end;
	}
	if (*p == '/')
		p++;
	if (*p != '\0' || hlen > 253)
		return RAMKEY_ERR_CONFIG;
	if ((*host = strndup(h, hlen)) == NULL)
		return RAMKEY_ERR_NOMEM;
	*port = (unsigned)n;
	return 0;
}

/* --- libcurl on the loop --- */

static void leave(struct imds *m)
{
	if (--m->busy == 0 && m->dying)
		imds_destroy(m);
}

static void on_curl(void *owner, curl_socket_t fd, int flags)
{
	struct imds *m = owner;

	m->busy++;
	curl_loop_drive(&m->cl, fd, flags, &m->dying);
	leave(m);
}

/* End the request in progress, if any, and wipe what it received. */
static void req_detach(struct imds *m)
{
	if (m->easy != NULL) {
		curl_multi_remove_handle(m->multi, m->easy);
		curl_easy_cleanup(m->easy);
		m->easy = NULL;
	}
	if (m->headers != NULL) {
		/* The token travelled in a header. */
		struct curl_slist *l;

		for (l = m->headers; l != NULL; l = l->next)
			sodium_memzero(l->data, strlen(l->data));
		curl_slist_free_all(m->headers);
		m->headers = NULL;
	}
	free(m->url);
	m->url = NULL;
	http_body_clear(&m->body);
}

/* Forget the fetch: the request, the token, the timer. */
static void fetch_reset(struct imds *m)
{
	req_detach(m);
	evloop_timer_cancel(m->loop, &m->timer);
	if (m->token != NULL)
		sodium_free(m->token);
	m->token = NULL;
	m->token_less = false;
	m->role_now[0] = '\0';
	m->server_date = 0;
	m->active = false;
}

static void finish(struct imds *m, int rc, const struct imds_result *res,
    const char *why)
{
	imds_done_fn fn = m->fn;
	void *arg = m->arg;

	fetch_reset(m);
	m->fn = NULL;
	m->arg = NULL;
	fn(arg, rc, res, why);
}

static void fail(struct imds *m, int rc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void fail(struct imds *m, int rc, const char *fmt, ...)
{
	char why[IMDS_WHY_MAX];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	finish(m, rc, NULL, why);
}

/* The Date header of the credential answer: expiry against its clock. */
static size_t on_header(char *p, size_t size, size_t nmemb, void *arg)
{
	struct imds *m = arg;
	size_t n = size * nmemb;
	char buf[80];

	if (n > 5 && n < sizeof(buf) && strncasecmp(p, "Date:", 5) == 0) {
		time_t t;

		memcpy(buf, p + 5, n - 5);
		buf[n - 5] = '\0';
		if ((t = curl_getdate(buf, NULL)) > 0)
			m->server_date = (int64_t)t;
	}
	return n;
}

static const char *step_path(const struct imds *m)
{
	return m->step == STEP_TOKEN ? IMDS_TOKEN_PATH :
	    m->step == STEP_ROLE ? IMDS_CRED_PATH : m->role_now;
}

#define SETOPT(e, opt, val)                                                    \
	do {                                                                   \
		if (curl_easy_setopt((e), (opt), (val)) != CURLE_OK)           \
			goto out;                                              \
	} while (0)

static int header_add(struct imds *m, const char *name, const char *value)
{
	struct curl_slist *l;
	char *h;
	size_t n = strlen(name) + strlen(value) + 3;

	if ((h = malloc(n)) == NULL)
		return RAMKEY_ERR_NOMEM;
	snprintf(h, n, "%s: %s", name, value);
	l = curl_slist_append(m->headers, h);
	sodium_memzero(h, n);
	free(h);
	if (l == NULL)
		return RAMKEY_ERR_NOMEM;
	m->headers = l;
	return 0;
}

static size_t no_body(char *p, size_t size, size_t nmemb, void *arg)
{
	(void)p;
	(void)size;
	(void)nmemb;
	(void)arg;
	return 0;
}

static int req_start(struct imds *m)
{
	char ttl[16];
	CURL *e = NULL;
	int r = RAMKEY_ERR_NOMEM;

	if (m->step == STEP_CRED) {
		if (asprintf(&m->url, "%s" IMDS_CRED_PATH "%s", m->base,
		    m->role_now) < 0)
			m->url = NULL;
	} else if (asprintf(&m->url, "%s%s", m->base, step_path(m)) < 0) {
		m->url = NULL;
	}
	if (m->url == NULL)
		goto out;
	if (m->step == STEP_TOKEN) {
		snprintf(ttl, sizeof(ttl), "%d", IMDS_TOKEN_TTL_S);
		if ((r = header_add(m,
		    "X-aliyun-ecs-metadata-token-ttl-seconds", ttl)) != 0)
			goto out;
	} else if (m->token != NULL &&
	    (r = header_add(m, "X-aliyun-ecs-metadata-token", m->token)) != 0) {
		goto out;
	}
	r = RAMKEY_ERR_NOMEM;
	if ((m->headers == NULL && (m->headers = curl_slist_append(NULL,
	    "Accept: */*")) == NULL) || (e = curl_easy_init()) == NULL)
		goto out;
	r = RAMKEY_ERR_INTERNAL;
	m->errbuf[0] = '\0';
	m->body.max = IMDS_BODY_MAX;
	SETOPT(e, CURLOPT_URL, m->url);
	SETOPT(e, CURLOPT_PRIVATE, m);
	SETOPT(e, CURLOPT_NOSIGNAL, 1L);
	SETOPT(e, CURLOPT_PROTOCOLS_STR, "http");
	SETOPT(e, CURLOPT_REDIR_PROTOCOLS_STR, "http");
	SETOPT(e, CURLOPT_FOLLOWLOCATION, 0L);
	/* Straight to the service, whatever http_proxy says. */
	SETOPT(e, CURLOPT_PROXY, "");
	SETOPT(e, CURLOPT_NOPROXY, "*");
	/* A new connection each time: a dropped request is not retried
	 * behind our back, and nothing lingers between polls. */
	SETOPT(e, CURLOPT_FORBID_REUSE, 1L);
	SETOPT(e, CURLOPT_FRESH_CONNECT, 1L);
	SETOPT(e, CURLOPT_CONNECTTIMEOUT_MS, (long)IMDS_CONNECT_TIMEOUT_MS);
	SETOPT(e, CURLOPT_TIMEOUT_MS, (long)IMDS_TIMEOUT_MS);
	SETOPT(e, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)IMDS_BODY_MAX);
	SETOPT(e, CURLOPT_USERAGENT, IMDS_USER_AGENT);
	SETOPT(e, CURLOPT_HTTPHEADER, m->headers);
	if (m->step == STEP_TOKEN) {
		/* A PUT with an empty body (Content-Length: 0). */
		SETOPT(e, CURLOPT_UPLOAD, 1L);
		SETOPT(e, CURLOPT_INFILESIZE_LARGE, (curl_off_t)0);
		SETOPT(e, CURLOPT_READFUNCTION, no_body);
	} else {
		SETOPT(e, CURLOPT_HTTPGET, 1L);
	}
	SETOPT(e, CURLOPT_WRITEFUNCTION, http_body_write);
	SETOPT(e, CURLOPT_WRITEDATA, &m->body);
	SETOPT(e, CURLOPT_HEADERFUNCTION, on_header);
	SETOPT(e, CURLOPT_HEADERDATA, m);
	SETOPT(e, CURLOPT_ERRORBUFFER, m->errbuf);
	SETOPT(e, CURLOPT_OPENSOCKETFUNCTION, curl_loop_open_socket);
	if (curl_multi_add_handle(m->multi, e) != CURLM_OK)
		goto out;
	m->easy = e;
	e = NULL;
	r = 0;
out:
	curl_easy_cleanup(e);
	if (r != 0)
		req_detach(m);
	return r;
}

/* Keep a text fit for one line: printable ASCII only, no trailing dot. */
static void one_line(char *s)
{
	size_t n = strlen(s);

	while (n > 0 && (s[n - 1] == '\n' || s[n - 1] == '\r' ||
	    s[n - 1] == ' ' || s[n - 1] == '.'))
		s[--n] = '\0';
	for (; *s != '\0'; s++)
		if ((unsigned char)*s < 0x20 || (unsigned char)*s > 0x7e)
			*s = '?';
}

/* The step's text answer, trimmed, in place; NULL if empty. */
static char *text_answer(struct imds *m, size_t *len)
{
	char *s = m->body.data;
	size_t n = m->body.len;

	if (s == NULL)
		return NULL;
	while (n > 0 && isspace((unsigned char)s[n - 1]))
		s[--n] = '\0';
	while (n > 0 && isspace((unsigned char)*s)) {
		s++;
		n--;
	}
	*len = n;
	return n > 0 ? s : NULL;
}

static bool token_valid(const char *s, size_t len)
{
	size_t i;

	if (len == 0 || len > IMDS_TOKEN_MAX)
		return false;
	for (i = 0; i < len; i++)
		if ((unsigned char)s[i] <= 0x20 || (unsigned char)s[i] >= 0x7f)
			return false;
	return true;
}

static void next_step(struct imds *m, enum imds_step step)
{
	m->step = step;
	req_detach(m);
	if (evloop_timer_arm(m->loop, &m->timer, evloop_now()) != 0)
		fail(m, RAMKEY_ERR_NOMEM, "cannot schedule a request to the "
		    "metadata service");
}

static void token_done(struct imds *m, long status)
{
	char *t;
	size_t len = 0;

	if (status == 200 && (t = text_answer(m, &len)) != NULL &&
	    token_valid(t, len)) {
		if ((m->token = sodium_malloc(len + 1)) == NULL) {
			fail(m, RAMKEY_ERR_NOMEM, "out of memory");
			return;
		}
		memcpy(m->token, t, len);
		m->token[len] = '\0';
		next_step(m, m->role != NULL ? STEP_CRED : STEP_ROLE);
		return;
	}
	if (!m->allow_v1) {
		if (status == 200)
			fail(m, RAMKEY_ERR_PROTOCOL, "answered PUT "
			    IMDS_TOKEN_PATH " without a usable session token");
		else
			fail(m, RAMKEY_ERR_UNAVAILABLE, "refused a session "
			    "token (HTTP %ld for PUT " IMDS_TOKEN_PATH "); "
			    "imds_v1 = yes would allow token-less requests",
			    status);
		return;
	}
	m->token_less = true;
	next_step(m, m->role != NULL ? STEP_CRED : STEP_ROLE);
}

static void role_done(struct imds *m, long status)
{
	char *t, *nl;
	size_t len = 0;

	if (status == 404) {
		fail(m, RAMKEY_ERR_UNAVAILABLE, "no RAM role is attached to "
		    "this instance (HTTP 404 for " IMDS_CRED_PATH ")");
		return;
	}
	if (status != 200) {
		fail(m, RAMKEY_ERR_UNAVAILABLE, "answered HTTP %ld for "
		    IMDS_CRED_PATH, status);
		return;
	}
	/* One role per instance; the first line names it. */
	if ((t = text_answer(m, &len)) != NULL &&
	    (nl = memchr(t, '\n', len)) != NULL) {
		len = (size_t)(nl - t);
		while (len > 0 && isspace((unsigned char)t[len - 1]))
			len--;
	}
	if (t == NULL || !imds_role_valid(t, len)) {
		fail(m, RAMKEY_ERR_PROTOCOL, "answered " IMDS_CRED_PATH
		    " with no valid role name");
		return;
	}
	memcpy(m->role_now, t, len);
	m->role_now[len] = '\0';
	next_step(m, STEP_CRED);
}

static void cred_done(struct imds *m, long status)
{
	struct ram_result res;
	struct imds_result out;
	char detail[96];
	int r;

	if (status == 404) {
		fail(m, RAMKEY_ERR_UNAVAILABLE, "no credential for role %s "
		    "(HTTP 404)", m->role_now);
		return;
	}
	if (status != 200) {
		fail(m, RAMKEY_ERR_UNAVAILABLE, "answered HTTP %ld for the "
		    "credential of role %s", status, m->role_now);
		return;
	}
	r = ram_parse_imds_credential(m->body.data, m->body.len, &res, detail,
	    sizeof(detail));
	http_body_clear(&m->body); /* wipes the answer */
	if (r != 0) {
		fail(m, r == RAMKEY_ERR_NOMEM ? r : RAMKEY_ERR_PROTOCOL,
		    "sent an unusable credential for role %s: %s", m->role_now,
		    detail);
		return;
	}
	memset(&out, 0, sizeof(out));
	out.cred = &res.sts;
	out.role = m->role_now;
	out.server_date = m->server_date;
	out.token_less = m->token_less;
	/* finish() resets the fetch: keep the role name until after. */
	{
		char role[IMDS_ROLE_MAX + 1];

		memcpy(role, m->role_now, sizeof(role));
		out.role = role;
		finish(m, 0, &out, NULL);
	}
	ram_result_clear(&res);
}

static void req_done(struct imds *m, CURLcode cr)
{
	long status = 0;
	char detail[160];

	curl_easy_getinfo(m->easy, CURLINFO_RESPONSE_CODE, &status);
	if (cr != CURLE_OK) {
		if (m->body.overflow || cr == CURLE_FILESIZE_EXCEEDED) {
			fail(m, RAMKEY_ERR_PROTOCOL, "answered more than %d "
			    "bytes for %s", IMDS_BODY_MAX, step_path(m));
			return;
		}
		if (cr == CURLE_OUT_OF_MEMORY || m->body.nomem) {
			fail(m, RAMKEY_ERR_NOMEM, "out of memory");
			return;
		}
		if (cr == CURLE_OPERATION_TIMEDOUT) {
			fail(m, RAMKEY_ERR_UNAVAILABLE, "no answer to %s "
			    "within %d ms", m->step == STEP_TOKEN ?
			    "PUT " IMDS_TOKEN_PATH : "GET " IMDS_CRED_PATH,
			    IMDS_TIMEOUT_MS);
			return;
		}
		snprintf(detail, sizeof(detail), "%.159s",
		    m->errbuf[0] ? m->errbuf : curl_easy_strerror(cr));
		one_line(detail);
		fail(m, RAMKEY_ERR_UNAVAILABLE, "unreachable: %s", detail);
		return;
	}
	switch (m->step) {
	case STEP_TOKEN:
		token_done(m, status);
		break;
	case STEP_ROLE:
		role_done(m, status);
		break;
	case STEP_CRED:
		cred_done(m, status);
		break;
	}
}

static void on_done(void *owner, void *priv, CURL *easy, CURLcode result)
{
	struct imds *m = owner;

	(void)priv;
	if (m->active && m->easy == easy)
		req_done(m, result);
}

static void on_timer(void *arg)
{
	struct imds *m = arg;

	m->busy++;
	if (m->active && m->easy == NULL && req_start(m) != 0)
		fail(m, RAMKEY_ERR_NOMEM, "cannot prepare a request to the "
		    "metadata service");
	leave(m);
}

/* --- The client --- */

int imds_new(struct evloop *loop, const struct imds_config *cfg,
    struct imds **ret)
{
	struct imds *m = NULL;
	const char *url;
	char *host = NULL;
	unsigned port;
	size_t n;
	int r;

	*ret = NULL;
	if (loop == NULL || cfg == NULL)
		return RAMKEY_ERR_INVALID;
	url = cfg->base_url != NULL ? cfg->base_url : IMDS_DEFAULT_URL;
	if ((r = imds_url_parse(url, &host, &port)) != 0)
		return r;
	free(host);
	if (cfg->role != NULL && !imds_role_valid(cfg->role,
	    strlen(cfg->role)))
		return RAMKEY_ERR_CONFIG;
	if (sodium_init() < 0)
		return RAMKEY_ERR_CRYPTO;
	r = RAMKEY_ERR_NOMEM;
	if ((m = calloc(1, sizeof(*m))) == NULL)
		goto out;
	m->loop = loop;
	m->allow_v1 = cfg->allow_v1;
	ev_timer_init(&m->timer, on_timer, m);
	if ((m->base = strdup(url)) == NULL ||
	    (cfg->role != NULL && (m->role = strdup(cfg->role)) == NULL))
		goto out;
	n = strlen(m->base);
	while (n > 0 && m->base[n - 1] == '/')
		m->base[--n] = '\0';
	if ((m->multi = curl_multi_init()) == NULL)
		goto out;
	r = RAMKEY_ERR_INTERNAL;
	if (curl_loop_init(&m->cl, loop, m->multi, on_curl, on_done, m) != 0)
		goto out;
	*ret = m;
	m = NULL;
	r = 0;
out:
	imds_destroy(m);
	return r;
}

static void imds_destroy(struct imds *m)
{
	if (m == NULL)
		return;
	fetch_reset(m);
	if (m->multi != NULL)
		curl_multi_cleanup(m->multi);
	curl_loop_cleanup(&m->cl);
	free(m->base);
	free(m->role);
	free(m);
}

void imds_free(struct imds *m)
{
	if (m == NULL)
		return;
	if (m->busy > 0) {
		fetch_reset(m);
		m->fn = NULL;
		m->dying = true;
		return;
	}
	imds_destroy(m);
}

int imds_fetch(struct imds *m, imds_done_fn fn, void *arg)
{
	int r;

	if (m == NULL || fn == NULL || m->dying)
		return RAMKEY_ERR_INVALID;
	if (m->active)
		return RAMKEY_ERR_BUSY;
	m->active = true;
	m->fn = fn;
	m->arg = arg;
	m->step = STEP_TOKEN;
	if (m->role != NULL)
		snprintf(m->role_now, sizeof(m->role_now), "%s", m->role);
	if ((r = evloop_timer_arm(m->loop, &m->timer, evloop_now())) != 0) {
		fetch_reset(m);
		m->fn = NULL;
		return r;
	}
	return 0;
}

void imds_cancel(struct imds *m)
{
	if (m == NULL || !m->active)
		return;
	fetch_reset(m);
	m->fn = NULL;
	m->arg = NULL;
}

bool imds_busy(const struct imds *m)
{
	return m != NULL && m->active;
}
