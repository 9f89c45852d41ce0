/*
 * Keybase lookups: libcurl's multi "socket" interface driven by an evloop
 * through curl_loop, as the RAM client is. One CURLM per struct keybase;
 * every lookup is one easy handle, one try, KEYBASE_TIMEOUT_MS in all.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <curl/curl.h>
#include <json-c/json.h>

#include "curl_loop.h"
#include "curl_trust.h"
#include "http_body.h"
#include "evloop.h"
#include "keybase.h"
#include "ramkey_err.h"

#define KEYBASE_USER_AGENT "ramkey/" RAMKEY_VERSION
#define KEYBASE_LOOKUP_PATH "/_/api/1.0/user/lookup.json"
#define KEYBASE_URL_MAX 2048
#define WHY_MAX 256

struct keybase_req {
	struct keybase *kb;
	struct keybase_req *prev, *next;
	CURL *easy;
	char *url;
	struct curl_slist *headers;
	struct http_body body;
	char errbuf[CURL_ERROR_SIZE];
	char name[KEYBASE_NAME_MAX + 1];
	keybase_fn fn;
	void *arg;
};

/* What a lookup needs of the configuration; replaced whole on reconfigure. */
struct kb_settings {
	char *base; /* scheme://host[:port][/path], no trailing '/' */
	const char *protocols;
	struct curl_trust trust;
	char *proxy;
};

struct keybase {
	struct evloop *loop;
	CURLM *multi;
	struct curl_loop cl;   /* libcurl on the event loop */
	struct kb_settings set;
	struct keybase_req *reqs;
	unsigned busy; /* > 0 while we dispatch; free is deferred */
	bool dying;
};

/* --- Small helpers --- */

/* Keep a libcurl or server text fit for one line: printable ASCII only. */
static void one_line(char *s)
{
	size_t n = strlen(s);

	while (n > 0 &&
	    (s[n - 1] == '\n' || s[n - 1] == '\r' || s[n - 1] == ' ' ||
		s[n - 1] == '.'))
		s[--n] = '\0';
	for (; *s != '\0'; s++)
		if ((unsigned char)*s < 0x20 || (unsigned char)*s > 0x7e)
			*s = '?';
}

bool keybase_name_valid(const char *name)
{
	size_t i;

	if (name == NULL)
		return false;
	for (i = 0; name[i] != '\0'; i++) {
		char c = name[i];

		if (i >= KEYBASE_NAME_MAX)
			return false;
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
			(c >= '0' && c <= '9') || c == '_'))
			return false;
	}
	return i > 0;
}

/* --- The answer --- */

static bool http_ok(long status)
{
	return status == 0 || (status >= 200 && status <= 299);
}

static void garbage(long status, char *why, size_t why_size)
{
	if (!http_ok(status))
		snprintf(why, why_size, "Keybase answered HTTP %ld", status);
	else
		snprintf(why, why_size,
		    "Keybase answered something that is "
		    "not a lookup reply");
}

/*
 * Member key of o: 1 with *v set, 0 if absent or null, -1 if o is not an
 * object.
 */
static int member(
    struct json_object *o, const char *key, struct json_object **v)
{
	*v = NULL;
	if (o == NULL || !json_object_is_type(o, json_type_object))
		return -1;
	if (!json_object_object_get_ex(o, key, v) || *v == NULL)
		return 0;
	return 1;
}

int keybase_parse_lookup(const char *body, size_t len, long http_status,
    const char *name, char **bundle, char *why, size_t why_size)
{
	struct json_tokener *tok = NULL;
	struct json_object *root = NULL, *st, *sname, *them, *u, *pk = NULL;
	struct json_object *prim = NULL, *b = NULL;
	const char *s;
	size_t end, i;
	int r = RAMKEY_ERR_KEYBASE;

	*bundle = NULL;
	if (why_size > 0)
		why[0] = '\0';
	if (body == NULL || len == 0 || len > KEYBASE_BODY_MAX) {
		garbage(http_status, why, why_size);
		goto out;
	}
	if ((tok = json_tokener_new()) == NULL) {
		r = RAMKEY_ERR_NOMEM;
		snprintf(why, why_size, "out of memory");
		goto out;
	}
	root = json_tokener_parse_ex(tok, body, (int)len);
	if (root == NULL ||
	    json_tokener_get_error(tok) != json_tokener_success ||
	    !json_object_is_type(root, json_type_object)) {
		garbage(http_status, why, why_size);
		goto out;
	}
	end = json_tokener_get_parse_end(tok);
	for (i = end; i < len; i++)
		if (body[i] != ' ' && body[i] != '\n' && body[i] != '\r' &&
		    body[i] != '\t') {
			garbage(http_status, why, why_size);
			goto out;
		}
	if (member(root, "status", &st) != 1 ||
	    member(st, "name", &sname) != 1 ||
	    !json_object_is_type(sname, json_type_string)) {
		garbage(http_status, why, why_size);
		goto out;
	}
	s = json_object_get_string(sname);
	if (strcmp(s, "NOT_FOUND") == 0) {
		r = RAMKEY_ERR_KEYBASE_USER;
		snprintf(why, why_size, "Keybase user %s not found", name);
		goto out;
	}
	if (strcmp(s, "OK") != 0) {
		char shown[48];

		snprintf(shown, sizeof(shown), "%s", s);
		one_line(shown);
		snprintf(
		    why, why_size, "Keybase refused the lookup (%s)", shown);
		goto out;
	}
	if (!http_ok(http_status)) {
		garbage(http_status, why, why_size);
		goto out;
	}
	switch (member(root, "them", &them)) {
	case 0:
		r = RAMKEY_ERR_KEYBASE_USER;
		snprintf(why, why_size, "Keybase user %s not found", name);
		goto out;
	case 1:
		if (json_object_is_type(them, json_type_array))
			break;
		/* fall through */
	default:
		garbage(http_status, why, why_size);
		goto out;
	}
	if (json_object_array_length(them) == 0 ||
	    (u = json_object_array_get_idx(them, 0)) == NULL) {
		r = RAMKEY_ERR_KEYBASE_USER;
		snprintf(why, why_size, "Keybase user %s not found", name);
		goto out;
	}
	if (!json_object_is_type(u, json_type_object)) {
		garbage(http_status, why, why_size);
		goto out;
	}
	r = RAMKEY_ERR_KEYBASE_USER;
	if (member(u, "public_keys", &pk) != 1 ||
	    member(pk, "primary", &prim) != 1 ||
	    member(prim, "bundle", &b) != 1) {
		/* -1: a member that should be an object is not one */
		if ((pk != NULL &&
			!json_object_is_type(pk, json_type_object)) ||
		    (pk != NULL && prim != NULL &&
			!json_object_is_type(prim, json_type_object))) {
			r = RAMKEY_ERR_KEYBASE;
			garbage(http_status, why, why_size);
		} else {
			snprintf(why, why_size,
			    "Keybase user %s has no PGP "
			    "key",
			    name);
		}
		goto out;
	}
	if (!json_object_is_type(b, json_type_string)) {
		r = RAMKEY_ERR_KEYBASE;
		garbage(http_status, why, why_size);
		goto out;
	}
	if (json_object_get_string_len(b) == 0) {
		snprintf(why, why_size, "Keybase user %s has no PGP key", name);
		goto out;
	}
	/* A NUL byte (\u0000) would cut the bundle short: a key block is
	 * text and never holds one. */
	if (memchr(json_object_get_string(b), '\0',
	    (size_t)json_object_get_string_len(b)) != NULL) {
		r = RAMKEY_ERR_KEYBASE;
		garbage(http_status, why, why_size);
		goto out;
	}
	if ((*bundle = strdup(json_object_get_string(b))) == NULL) {
		r = RAMKEY_ERR_NOMEM;
		snprintf(why, why_size, "out of memory");
		goto out;
	}
	r = 0;
	if (why_size > 0)
		why[0] = '\0';
out:
	json_object_put(root);
	if (tok != NULL)
		json_tokener_free(tok);
	return r;
}

/* --- libcurl <-> evloop --- */

static void kb_destroy(struct keybase *kb);

static void leave(struct keybase *kb)
{
	if (--kb->busy == 0 && kb->dying)
		kb_destroy(kb);
}

/* curl_loop's action: let libcurl move, then finish what completed. */
static void on_curl(void *owner, curl_socket_t fd, int flags)
{
	struct keybase *kb = owner;

	kb->busy++;
	curl_loop_drive(&kb->cl, fd, flags, &kb->dying);
	leave(kb);
}

/* --- Lookups --- */

static void req_unlink(struct keybase_req *req)
{
	struct keybase *kb = req->kb;

	if (req->prev != NULL)
		req->prev->next = req->next;
	else if (kb->reqs == req)
		kb->reqs = req->next;
	if (req->next != NULL)
		req->next->prev = req->prev;
	req->prev = req->next = NULL;
}

static void req_free(struct keybase_req *req)
{
	if (req == NULL)
		return;
	if (req->easy != NULL) {
		curl_multi_remove_handle(req->kb->multi, req->easy);
		curl_easy_cleanup(req->easy);
	}
	curl_slist_free_all(req->headers);
	free(req->url);
	http_body_clear(&req->body);
	free(req);
}

static int outcome(struct keybase_req *req, CURLcode cr, char **bundle,
    char *why, size_t why_size)
{
	long status = 0;

	curl_easy_getinfo(req->easy, CURLINFO_RESPONSE_CODE, &status);
	if (req->body.overflow && cr == CURLE_WRITE_ERROR) {
		snprintf(why, why_size, "Keybase answered more than %d KiB",
		    KEYBASE_BODY_MAX / 1024);
		return RAMKEY_ERR_KEYBASE;
	}
	switch (cr) {
	case CURLE_OK:
		break;
	case CURLE_OUT_OF_MEMORY:
		snprintf(why, why_size, "out of memory");
		return RAMKEY_ERR_NOMEM;
	case CURLE_FILESIZE_EXCEEDED:
		snprintf(why, why_size, "Keybase answered more than %d KiB",
		    KEYBASE_BODY_MAX / 1024);
		return RAMKEY_ERR_KEYBASE;
	case CURLE_OPERATION_TIMEDOUT:
		snprintf(why, why_size,
		    "Keybase did not answer within %d "
		    "seconds",
		    KEYBASE_TIMEOUT_MS / 1000);
		return RAMKEY_ERR_KEYBASE;
	default: {
		char detail[160];

		/* libcurl's text, cut to keep the reason one short line */
		snprintf(detail, sizeof(detail), "%.159s",
		    req->errbuf[0] ? req->errbuf : curl_easy_strerror(cr));
		one_line(detail);
		snprintf(why, why_size, "Keybase unreachable: %s", detail);
		return RAMKEY_ERR_KEYBASE;
	}
	}
	return keybase_parse_lookup(req->body.data, req->body.len, status,
	    req->name, bundle, why, why_size);
}

static void req_done(struct keybase_req *req, CURLcode cr)
{
	char why[WHY_MAX];
	char *bundle = NULL;
	int rc;

	why[0] = '\0';
	rc = outcome(req, cr, &bundle, why, sizeof(why));
	req_unlink(req);
	/* The answer is public; nothing to wipe. */
	curl_multi_remove_handle(req->kb->multi, req->easy);
	curl_easy_cleanup(req->easy);
	req->easy = NULL;
	req->fn(req->arg, rc, rc == 0 ? bundle : NULL,
	    rc == 0 ? strlen(bundle) : 0, rc == 0 ? NULL : why);
	free(bundle);
	req_free(req);
}

/* curl_loop's done: a lookup finished. */
static void on_done(void *owner, void *priv, CURL *easy, CURLcode result)
{
	struct keybase_req *req = priv;

	(void)owner;
	if (req->easy == easy)
		req_done(req, result);
}

#define SETOPT(e, opt, val)                                                    \
	do {                                                                   \
		if (curl_easy_setopt((e), (opt), (val)) != CURLE_OK)           \
			goto out;                                              \
	} while (0)

static int req_start(struct keybase *kb, struct keybase_req *req)
{
	const struct kb_settings *s = &kb->set;
	struct curl_slist *l;
	CURL *e = NULL;
	int r = RAMKEY_ERR_NOMEM;

	if (asprintf(&req->url,
		"%s" KEYBASE_LOOKUP_PATH "?usernames=%s&fields=public_keys",
		s->base, req->name) < 0) {
		req->url = NULL;
		goto out;
	}
	if ((l = curl_slist_append(NULL, "Accept: application/json")) == NULL)
		goto out;
	req->headers = l;
	if ((e = curl_easy_init()) == NULL)
		goto out;
	r = RAMKEY_ERR_INTERNAL;
	SETOPT(e, CURLOPT_URL, req->url);
	SETOPT(e, CURLOPT_PRIVATE, req);
	SETOPT(e, CURLOPT_NOSIGNAL, 1L);
	SETOPT(e, CURLOPT_PROTOCOLS_STR, s->protocols);
	SETOPT(e, CURLOPT_REDIR_PROTOCOLS_STR, s->protocols);
	SETOPT(e, CURLOPT_FOLLOWLOCATION, 0L);
	if (curl_trust_apply(e, &s->trust) != CURLE_OK)
		goto out;
	if (s->proxy != NULL)
		SETOPT(e, CURLOPT_PROXY, s->proxy);
	SETOPT(e, CURLOPT_TIMEOUT_MS, (long)KEYBASE_TIMEOUT_MS);
	SETOPT(e, CURLOPT_CONNECTTIMEOUT_MS, (long)KEYBASE_TIMEOUT_MS);
	SETOPT(e, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)KEYBASE_BODY_MAX);
	SETOPT(e, CURLOPT_USERAGENT, KEYBASE_USER_AGENT);
	SETOPT(e, CURLOPT_HTTPHEADER, req->headers);
	SETOPT(e, CURLOPT_HTTPGET, 1L);
	SETOPT(e, CURLOPT_WRITEFUNCTION, http_body_write);
	SETOPT(e, CURLOPT_WRITEDATA, &req->body);
	SETOPT(e, CURLOPT_ERRORBUFFER, req->errbuf);
	SETOPT(e, CURLOPT_OPENSOCKETFUNCTION, curl_loop_open_socket);
	req->easy = e;
	/* With the socket API this only arms the timer: no callback here. */
	if (curl_multi_add_handle(kb->multi, e) != CURLM_OK) {
		req->easy = NULL;
		goto out;
	}
	e = NULL;
	r = 0;
out:
	curl_easy_cleanup(e);
	return r;
}

int keybase_lookup(struct keybase *kb, const char *name, keybase_fn fn,
    void *arg, struct keybase_req **ret)
{
	struct keybase_req *req = NULL;
	int r;

	if (ret != NULL)
		*ret = NULL;
	if (kb == NULL || fn == NULL || kb->dying || !keybase_name_valid(name))
		return RAMKEY_ERR_INVALID;
	if ((req = calloc(1, sizeof(*req))) == NULL)
		return RAMKEY_ERR_NOMEM;
	req->kb = kb;
	req->fn = fn;
	req->arg = arg;
	req->body.max = KEYBASE_BODY_MAX;
	snprintf(req->name, sizeof(req->name), "%s", name);
	if ((r = req_start(kb, req)) != 0) {
		req_free(req);
		return r;
	}
	req->next = kb->reqs;
	if (kb->reqs != NULL)
		kb->reqs->prev = req;
	kb->reqs = req;
	if (ret != NULL)
		*ret = req;
	return 0;
}

void keybase_cancel(struct keybase_req *req)
{
	if (req == NULL)
		return;
	req_unlink(req);
	req_free(req);
}

/* --- Configuration --- */

static void settings_clear(struct kb_settings *s)
{
	free(s->base);
	curl_trust_clear(&s->trust);
	free(s->proxy);
	memset(s, 0, sizeof(*s));
}

/* Check the base URL; keep it without trailing slashes. */
static int setup_url(struct kb_settings *s, const char *url, bool allow_http)
{
	CURLU *u = NULL;
	char *scheme = NULL, *host = NULL, *query = NULL, *frag = NULL;
	char *user = NULL, *pass = NULL, *full = NULL;
	size_t n;
	int r = RAMKEY_ERR_CONFIG;

	if (url == NULL || url[0] == '\0')
		url = KEYBASE_DEFAULT_URL;
	if (strlen(url) > KEYBASE_URL_MAX)
		return RAMKEY_ERR_CONFIG;
	if ((u = curl_url()) == NULL)
		return RAMKEY_ERR_NOMEM;
	if (curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK ||
	    curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
	    curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK ||
	    host[0] == '\0')
		goto out;
	curl_url_get(u, CURLUPART_QUERY, &query, 0);
	curl_url_get(u, CURLUPART_FRAGMENT, &frag, 0);
	curl_url_get(u, CURLUPART_USER, &user, 0);
	curl_url_get(u, CURLUPART_PASSWORD, &pass, 0);
	if (query != NULL || frag != NULL || user != NULL || pass != NULL)
		goto out;
	if (strcmp(scheme, "https") == 0)
		s->protocols = "https";
	else if (strcmp(scheme, "http") == 0 && allow_http)
		s->protocols = "http,https";
	else
		goto out;
	/* libcurl's normalised form: lower-case scheme and host. */
	if (curl_url_get(u, CURLUPART_URL, &full, 0) != CURLUE_OK)
		goto out;
	r = RAMKEY_ERR_NOMEM;
	if ((s->base = strdup(full)) == NULL)
		goto out;
	n = strlen(s->base);
	while (n > 0 && s->base[n - 1] == '/')
		s->base[--n] = '\0';
	r = 0;
out:
	curl_free(scheme);
	curl_free(host);
	curl_free(query);
	curl_free(frag);
	curl_free(user);
	curl_free(pass);
	curl_free(full);
	curl_url_cleanup(u);
	return r;
}

static int settings_build(
    struct kb_settings *s, const struct keybase_config *cfg)
{
	int r;

	memset(s, 0, sizeof(*s));
	if ((r = setup_url(s, cfg->url, cfg->allow_http)) != 0 ||
	    (r = curl_trust_init(&s->trust, cfg->ca_file, false, NULL)) != 0)
		goto out;
	if (cfg->proxy != NULL && cfg->proxy[0] != '\0' &&
	    (s->proxy = strdup(cfg->proxy)) == NULL) {
		r = RAMKEY_ERR_NOMEM;
		goto out;
	}
out:
	if (r != 0)
		settings_clear(s);
	return r;
}

int keybase_new(
    struct evloop *loop, const struct keybase_config *cfg, struct keybase **ret)
{
	struct keybase *kb = NULL;
	int r = RAMKEY_ERR_NOMEM;

	*ret = NULL;
	if (loop == NULL || cfg == NULL)
		return RAMKEY_ERR_INVALID;
	if ((kb = calloc(1, sizeof(*kb))) == NULL)
		goto out;
	kb->loop = loop;
	if ((r = settings_build(&kb->set, cfg)) != 0)
		goto out;
	r = RAMKEY_ERR_NOMEM;
	if ((kb->multi = curl_multi_init()) == NULL)
		goto out;
	r = RAMKEY_ERR_INTERNAL;
	if (curl_loop_init(&kb->cl, loop, kb->multi, on_curl, on_done, kb) != 0)
		goto out;
	*ret = kb;
	kb = NULL;
	r = 0;
out:
	kb_destroy(kb);
	return r;
}

int keybase_reconfigure(struct keybase *kb, const struct keybase_config *cfg)
{
	struct kb_settings s;
	int r;

	if (kb == NULL || cfg == NULL)
		return RAMKEY_ERR_INVALID;
	if ((r = settings_build(&s, cfg)) != 0)
		return r;
	/* libcurl copied what running lookups use: the old set can go. */
	settings_clear(&kb->set);
	kb->set = s;
	return 0;
}

static void drop_requests(struct keybase *kb)
{
	struct keybase_req *req;

	/* Off the list here: the loop does not depend on req->kb. */
	while ((req = kb->reqs) != NULL) {
		kb->reqs = req->next;
		if (kb->reqs != NULL)
			kb->reqs->prev = NULL;
		req->next = NULL;
		req_free(req);
	}
}

static void kb_destroy(struct keybase *kb)
{
	if (kb == NULL)
		return;
	drop_requests(kb);
	if (kb->multi != NULL)
		curl_multi_cleanup(kb->multi);
	curl_loop_cleanup(&kb->cl);
	settings_clear(&kb->set);
	free(kb);
}

void keybase_free(struct keybase *kb)
{
	if (kb == NULL)
		return;
	if (kb->busy > 0) {
		/* Inside one of our own callbacks: finish when it returns. */
		drop_requests(kb);
		kb->dying = true;
		return;
	}
	kb_destroy(kb);
}
