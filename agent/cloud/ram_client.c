/*
 * RAM API client: libcurl's multi "socket" interface driven by an evloop.
 *
 * One CURLM per client keeps the connection cache (keep-alive, reuse across
 * calls); every try of every call gets a fresh easy handle with a fresh
 * nonce, timestamp and signature. Each call has one ev_timer that starts
 * its tries (the first one too, so callbacks never run inside the function
 * that started the call) and ends backoff sleeps.
 *
 * Deadlines: a try's CURLOPT_TIMEOUT_MS is the time left to the call's
 * deadline, and a backoff sleep that would pass the deadline sleeps until
 * the deadline instead; either way the call fails with RAMKEY_ERR_RAM_TIMEOUT
 * at the deadline, not before and not much later.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <sodium.h>

#include "curl_loop.h"
#include "curl_trust.h"
#include "http_body.h"
#include "evloop.h"
#include "metrics.h"
#include "ram_client.h"
#include "ram_response.h"
#include "ram_sign.h"
#include "ramkey_err.h"

#define RAM_API_VERSION "2015-05-01"
#define RAM_PARAMS_MAX 8
#define RAM_DEFAULT_ENDPOINT "https://ram.aliyuncs.com"
#define RAM_USER_AGENT "ramkey/" RAMKEY_VERSION

/* Connection cache: kept-alive connections for reuse (each TLS connection
 * costs about 80 KiB); a burst opens more, the pool keeps this many. */
#define RAM_MAXCONNECTS 64L
#define RAM_CONNECT_TIMEOUT_MS 10000
/* Retry backoff (rule R5): 500 ms doubling to 8 s, "equal jitter". */
#define RAM_BACKOFF_INITIAL_MS 500
#define RAM_BACKOFF_FACTOR 2
#define RAM_BACKOFF_MAX_MS 8000
/* Defaults when the config leaves a timeout at 0. */
#define RAM_DEFAULT_WRITE_TIMEOUT_MS (5 * 60 * 1000ULL)
#define RAM_DEFAULT_READ_TIMEOUT_MS (60 * 1000ULL)
#define RAM_TIMEOUT_MAX_MS (7 * 24 * 3600 * 1000ULL)
#define RAM_SECRET_IN_MAX 1024

enum timer_action { TIMER_TRY, TIMER_DEADLINE };

struct ram_call {
	struct ram_client *c;
	struct ram_call *prev, *next;
	enum ram_action act;
	struct ram_param params[RAM_PARAMS_MAX]; /* owned name/value pairs */
	size_t nparams;
	ram_done_fn fn;
	ram_retry_fn on_retry;
	void *arg;
	int64_t server_date;	/* the Date header of the last answer */
	uint64_t start, deadline, timeout_ms;
	uint64_t start_us;	/* for the latency histogram */
	unsigned attempts;
	struct ev_timer timer;
	enum timer_action timer_action;
	/* The try in progress. */
	CURL *easy;
	struct curl_slist *headers;
	char *url;
	char *post;
	struct http_body body;
	char errbuf[CURL_ERROR_SIZE];
	char unavailable[RAM_MESSAGE_MAX]; /* why there is no credential */
	/* Outcome of the last finished try. */
	struct ram_error err;
	bool unknown_outcome; /* a try failed without a definite answer */
	bool in_callback;
	bool in_retry_cb, cancel_pending;
	/* Circuit breaker: waiting for a probe, or being the probe. */
	bool parked, is_probe;
	struct ram_call *park_prev, *park_next;
};

struct ram_client {
	struct evloop *loop;
	CURLM *multi;
	CURLSH *share;
	struct curl_loop cl;      /* libcurl on the event loop */
	char *base_url;           /* scheme://host[:port]/ */
	char *host;               /* host[:port] as the Host header */
	const char *protocols;    /* "https" or "http,https" */
	struct curl_trust trust;  /* verification and the CA store */
	char *proxy;
	enum ram_signature signature;
	char *api_version;
	uint64_t timeout_ms[RAM_ACT_COUNT];
	char *key_id;		/* static credentials, or: */
	char *secret;		/* sodium_malloc: secret, NUL */
	size_t secret_len;
	ram_credential_fn cred_fn;
	void *cred_arg;
	struct ram_call *calls;
	size_t in_flight;
	bool degraded;
	struct ram_error last_err; /* of the last finished try */
	bool last_failed;
	/* Circuit breaker (see ram_client.h). */
	unsigned consecutive_failures;
	unsigned probe_round;
	bool probe_in_flight;
	uint64_t probe_next;
	struct ev_timer probe_timer;
	struct ram_call *parked_head, *parked_tail;
	unsigned busy; /* > 0 while we dispatch; free is deferred */
	bool dying;
	/* Metrics (NULL: not counted). */
	struct metric *m_calls, *m_retries, *m_duration;
};

const char *ram_error_kind_name(enum ram_error_kind kind)
{
	switch (kind) {
	case RAM_ERRK_NONE:
		return "none";
	case RAM_ERRK_API:
		return "api";
	case RAM_ERRK_HTTP:
		return "http";
	case RAM_ERRK_TRANSPORT:
		return "transport";
	case RAM_ERRK_TIMEOUT:
		return "timeout";
	case RAM_ERRK_PARSE:
		return "parse";
	case RAM_ERRK_LOCAL:
		return "local";
	}
	return "unknown";
}

/* --- Metrics --- */

/* Label values: action names (filled from ram_action_name()), results
 * and retry reasons. */
static const char *action_values[RAM_ACT_COUNT + 1];
static const char *const result_values[] = { "ok", "api_error",
	"http_error", "transport_error", "timeout", "parse_error",
	"local_error", NULL };
static const char *const retry_values[] = { "throttled", "server_error",
	"transport_error", "other", NULL };
/* Call latency, retries included: up to the 5-minute timeouts. */
static const double duration_bounds[] = { 0.005, 0.01, 0.025, 0.05, 0.1,
	0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300 };

static uint64_t now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

static const char *result_value(int rc, const struct ram_error *e)
{
	if (rc == 0)
		return "ok";
	switch (e->kind) {
	case RAM_ERRK_API:
		return "api_error";
	case RAM_ERRK_HTTP:
		return "http_error";
	case RAM_ERRK_TRANSPORT:
		return "transport_error";
	case RAM_ERRK_TIMEOUT:
		return "timeout";
	case RAM_ERRK_PARSE:
		return "parse_error";
	default:
		return "local_error";
	}
}

static const char *retry_value(const struct ram_error *e)
{
	if (e->kind == RAM_ERRK_API && strncmp(e->code, "Throttling", 10) == 0)
		return "throttled";
	if (e->kind == RAM_ERRK_TRANSPORT)
		return "transport_error";
	if (e->transport_or_5xx)
		return "server_error";
	return "other";
}

void ram_client_share_metrics(struct ram_client *c,
    const struct ram_client *from)
{
	if (c == NULL || from == NULL)
		return;
	c->m_calls = from->m_calls;
	c->m_retries = from->m_retries;
	c->m_duration = from->m_duration;
}

int ram_client_set_metrics(struct ram_client *c, struct metrics *m)
{
	const struct metric_label calls[] = { { "action", action_values },
		{ "result", result_values } };
	const struct metric_label retries[] = { { "action", action_values },
		{ "reason", retry_values } };
	const struct metric_label action[] = { { "action", action_values } };
	int r, i;

	for (i = 0; i < RAM_ACT_COUNT; i++)
		action_values[i] = ram_action_name((enum ram_action)i);
	if ((r = metrics_counter(m, "ramkey_cloud_calls_total", "Cloud API "
	    "calls (RAM, STS) finished, by action and by result, retries "
	    "included in one call.", calls, 2, &c->m_calls)) != 0 ||
	    (r = metrics_counter(m, "ramkey_cloud_retries_total", "Tries of "
	    "cloud API calls that failed and were tried again, by action and "
	    "by reason.", retries, 2, &c->m_retries)) != 0 ||
	    (r = metrics_histogram(m, "ramkey_cloud_call_duration_seconds",
	    "Time a cloud API call took, retries included, by action.",
	    action, 1, duration_bounds, sizeof(duration_bounds) /
	    sizeof(duration_bounds[0]), &c->m_duration)) != 0) {
		c->m_calls = c->m_retries = c->m_duration = NULL;
		return r;
	}
	return 0;
}

/* --- Small helpers --- */

/* Copy src into dst (size n), cutting on a UTF-8 character boundary. */
static void copy_trunc(char *dst, size_t n, const char *src)
{
	size_t len = strlen(src);

	if (n == 0)
		return;
	if (len >= n) {
		len = n - 1;
		/* back off continuation bytes of a cut character */
		while (len > 0 && ((unsigned char)src[len] & 0xc0) == 0x80)
			len--;
	}
	memcpy(dst, src, len);
	dst[len] = '\0';
}

/* --- libcurl <-> evloop --- */

static void client_destroy(struct ram_client *c);

static void leave(struct ram_client *c)
{
	if (--c->busy == 0 && c->dying)
		client_destroy(c);
}

/* curl_loop's action: let libcurl move, then finish what completed. */
static void on_curl(void *owner, curl_socket_t fd, int flags)
{
	struct ram_client *c = owner;

	c->busy++;
	curl_loop_drive(&c->cl, fd, flags, &c->dying);
	leave(c);
}

/* --- Calls --- */

static uint64_t op_timeout(const struct ram_client *c, enum ram_action act)
{
	return c->timeout_ms[act];
}

/* End the try in progress, if any, and forget its buffers. */
static void try_detach(struct ram_call *call)
{
	struct ram_client *c = call->c;

	if (call->easy != NULL) {
		curl_multi_remove_handle(c->multi, call->easy);
		curl_easy_cleanup(call->easy);
		call->easy = NULL;
	}
	curl_slist_free_all(call->headers);
	call->headers = NULL;
	free(call->url);
	call->url = NULL;
	free(call->post);
	call->post = NULL;
	http_body_clear(&call->body);
}

static void unpark(struct ram_call *call);
static void arm_probe_timer(struct ram_client *c);

static void call_unlink(struct ram_call *call)
{
	struct ram_client *c = call->c;

	if (call->parked)
		unpark(call);
	if (call->is_probe) {
		call->is_probe = false;
		c->probe_in_flight = false;
		arm_probe_timer(c);
	}
	if (call->prev != NULL)
		call->prev->next = call->next;
	else if (c->calls == call)
		c->calls = call->next;
	if (call->next != NULL)
		call->next->prev = call->prev;
	call->prev = call->next = NULL;
	c->in_flight--;
}

static void params_free(struct ram_call *call)
{
	size_t i;

	for (i = 0; i < call->nparams; i++) {
		free((char *)call->params[i].value);
		call->params[i].value = NULL;
	}
	call->nparams = 0;
}

static void call_free(struct ram_call *call)
{
	if (call == NULL)
		return;
	try_detach(call);
	evloop_timer_cancel(call->c->loop, &call->timer);
	params_free(call);
	free(call);
}

/* Run the callback once, from the loop, then free the call. */
static void call_complete(
    struct ram_call *call, int rc, const struct ram_result *res)
{
	struct ram_client *c = call->c;

	try_detach(call);
	evloop_timer_cancel(c->loop, &call->timer);
	call_unlink(call);
	metric_inc(c->m_calls, ram_action_name(call->act),
	    result_value(rc, &call->err));
	metric_observe(c->m_duration, ram_action_name(call->act), NULL,
	    (double)(now_us() - call->start_us) / 1e6);
	call->in_callback = true;
	call->fn(
	    call->arg, rc, rc == 0 ? res : NULL, rc == 0 ? NULL : &call->err);
	call_free(call);
}

static void fail_timeout(struct ram_call *call)
{
	struct ram_error *e = &call->err;
	char last[RAM_CODE_MAX + RAM_MESSAGE_MAX + 4];
	char msg[RAM_CODE_MAX + RAM_MESSAGE_MAX + 160];

	if (e->kind == RAM_ERRK_NONE)
		snprintf(last, sizeof(last), "none");
	else if (e->code[0] != '\0' && e->message[0] != '\0')
		snprintf(last, sizeof(last), "%s: %s", e->code, e->message);
	else if (e->code[0] != '\0')
		snprintf(last, sizeof(last), "%s", e->code);
	else
		snprintf(last, sizeof(last), "%s", e->message);
	snprintf(msg, sizeof(msg),
	    "timed out after %llu ms (%u attempt%s; "
	    "last error: %s)",
	    (unsigned long long)call->timeout_ms, call->attempts,
	    call->attempts == 1 ? "" : "s", last);
	/* keep the closing parenthesis if the text had to be cut */
	if (strlen(msg) >= sizeof(e->message)) {
		copy_trunc(e->message, sizeof(e->message) - 4, msg);
		memcpy(e->message + strlen(e->message), "...)", 5);
	} else {
		copy_trunc(e->message, sizeof(e->message), msg);
	}
	e->kind = RAM_ERRK_TIMEOUT;
	e->attempts = call->attempts;
	e->earlier_try_unknown = call->unknown_outcome;
	call_complete(call, RAMKEY_ERR_RAM_TIMEOUT, NULL);
}

/* No credential to sign with: say why, at once, without retrying. */
static void fail_unavailable(struct ram_call *call)
{
	struct ram_error *e = &call->err;

	e->kind = RAM_ERRK_LOCAL;
	e->code[0] = e->request_id[0] = '\0';
	e->http_status = 0;
	e->transport_or_5xx = false;
	e->attempts = call->attempts;
	/* Nothing was sent now; an earlier try may still have been. */
	e->earlier_try_unknown = call->unknown_outcome;
	snprintf(e->message, sizeof(e->message), "the agent has no usable "
	    "credential of its own: %.330s", call->unavailable);
	call_complete(call, RAMKEY_ERR_UNAVAILABLE, NULL);
}

static void fail_local(struct ram_call *call, int rc, const char *what)
{
	struct ram_error *e = &call->err;

	e->kind = RAM_ERRK_LOCAL;
	e->code[0] = e->request_id[0] = '\0';
	e->http_status = 0;
	e->transport_or_5xx = false;
	e->attempts = call->attempts;
	snprintf(e->message, sizeof(e->message), "%s: %s", what,
	    ramkey_strerror(rc));
	call_complete(call, rc, NULL);
}

static int add_header(
    struct curl_slist **list, const char *name, const char *value)
{
	struct curl_slist *l;
	char *h;

	if (asprintf(&h, "%s:%s%s", name, value[0] ? " " : "", value) < 0)
		return RAMKEY_ERR_NOMEM;
	l = curl_slist_append(*list, h);
	free(h);
	if (l == NULL)
		return RAMKEY_ERR_NOMEM;
	*list = l;
	return 0;
}

/* Operation parameters; empty values are never sent. */
static size_t op_params(const struct ram_call *call, struct ram_param *p)
{
	size_t n = 0, i;

	for (i = 0; i < call->nparams; i++)
		if (call->params[i].value != NULL &&
		    call->params[i].value[0] != '\0')
			p[n++] = call->params[i];
	return n;
}

/* The credential to sign this try with. */
static int signing_credential(struct ram_client *c, struct ram_credential *cr,
    char *why, size_t whylen)
{
	memset(cr, 0, sizeof(*cr));
	if (c->cred_fn != NULL)
		return c->cred_fn(c->cred_arg, cr, why, whylen);
	if (c->key_id == NULL || c->secret == NULL) {
		snprintf(why, whylen, "no credentials to sign with");
		return RAMKEY_ERR_UNAVAILABLE;
	}
	cr->key_id = c->key_id;
	cr->secret = c->secret;
	cr->secret_len = c->secret_len;
	return 0;
}

/*
 * v1: POST, every parameter (Signature included) in a form body. A
 * temporary credential adds SecurityToken, signed with the rest.
 */
static int build_v1(struct ram_call *call, const struct ram_credential *cr)
{
	struct ram_client *c = call->c;
	struct ram_param p[24];
	char nonce[RAM_NONCE_LEN + 1], ts[RAM_TIMESTAMP_LEN + 1];
	char sig[RAM_V1_SIGNATURE_LEN + 1];
	char *cq = NULL, *sts = NULL;
	struct ram_buf body = {0};
	size_t n;
	int r;

	ram_nonce(nonce);
	if ((r = ram_timestamp(time(NULL), ts)) != 0)
		goto out;
	n = op_params(call, p);
	p[n++] = (struct ram_param){"Action", ram_action_name(call->act)};
	p[n++] = (struct ram_param){"Version", c->api_version};
	p[n++] = (struct ram_param){"Format", "JSON"};
	p[n++] = (struct ram_param){"AccessKeyId", cr->key_id};
	if (cr->token != NULL)
		p[n++] = (struct ram_param){"SecurityToken", cr->token};
	p[n++] = (struct ram_param){"SignatureMethod", "HMAC-SHA1"};
	p[n++] = (struct ram_param){"SignatureVersion", "1.0"};
	p[n++] = (struct ram_param){"SignatureNonce", nonce};
	p[n++] = (struct ram_param){"Timestamp", ts};
	if ((r = ram_canonical_query(p, n, &cq)) != 0 ||
	    (r = ram_v1_string_to_sign("POST", cq, &sts)) != 0 ||
	    (r = ram_v1_signature(sts, cr->secret, cr->secret_len, sig)) != 0)
		goto out;
	if ((r = ram_buf_appends(&body, cq)) != 0 ||
	    (r = ram_buf_appends(&body, "&Signature=")) != 0 ||
	    (r = ram_buf_append_enc(&body, sig, strlen(sig))) != 0 ||
	    (r = ram_buf_steal(&body, &call->post)) != 0)
		goto out;
	if ((call->url = strdup(c->base_url)) == NULL) {
		r = RAMKEY_ERR_NOMEM;
		goto out;
	}
	if ((r = add_header(&call->headers, "Content-Type",
		 "application/x-www-form-urlencoded")) != 0)
		goto out;
out:
	free(cq);
	free(sts);
	ram_buf_free(&body);
	return r;
}

/*
 * v3: POST with the operation parameters in the query string and an empty
 * body, like the official SDK. curl's default Content-Type for a POST is
 * suppressed, so the signed headers are exactly host and x-acs-*.
 */
static int build_v3(struct ram_call *call, const struct ram_credential *cr)
{
	struct ram_client *c = call->c;
	struct ram_param q[RAM_PARAMS_MAX], h[7];
	char nonce[RAM_NONCE_LEN + 1], ts[RAM_TIMESTAMP_LEN + 1];
	struct ram_v3_request req;
	struct ram_v3_signed s = {0};
	size_t nq, nh, i;
	int r;

	ram_nonce(nonce);
	if ((r = ram_timestamp(time(NULL), ts)) != 0)
		goto out;
	nq = op_params(call, q);
	h[0] = (struct ram_param){"host", c->host};
	h[1] = (struct ram_param){"x-acs-action", ram_action_name(call->act)};
	h[2] = (struct ram_param){"x-acs-version", c->api_version};
	h[3] = (struct ram_param){"x-acs-date", ts};
	h[4] = (struct ram_param){"x-acs-signature-nonce", nonce};
	h[5] = (struct ram_param){"x-acs-content-sha256", RAM_EMPTY_SHA256};
	nh = 6;
	/* A temporary credential's token is signed like any x-acs header. */
	if (cr->token != NULL)
		h[nh++] = (struct ram_param){"x-acs-security-token", cr->token};
	memset(&req, 0, sizeof(req));
	req.method = "POST";
	req.uri = "/";
	req.query = q;
	req.nquery = nq;
	req.headers = h;
	req.nheaders = nh;
	req.hashed_payload = RAM_EMPTY_SHA256;
	req.access_key_id = cr->key_id;
	if ((r = ram_v3_sign(&req, cr->secret, cr->secret_len, &s)) != 0)
		goto out;
	if (asprintf(&call->url, "%s%s%s", c->base_url,
		s.canonical_query[0] ? "?" : "", s.canonical_query) < 0) {
		call->url = NULL;
		r = RAMKEY_ERR_NOMEM;
		goto out;
	}
	for (i = 0; i < nh; i++)
		if ((r = add_header(&call->headers, i == 0 ? "Host" : h[i].name,
			 h[i].value)) != 0)
			goto out;
	if ((r = add_header(
		 &call->headers, "Authorization", s.authorization)) != 0 ||
	    (r = add_header(&call->headers, "Content-Type", "")) != 0)
		goto out;
	if ((call->post = strdup("")) == NULL) {
		r = RAMKEY_ERR_NOMEM;
		goto out;
	}
out:
	ram_v3_signed_clear(&s);
	return r;
}

#define SETOPT(e, opt, val)                                                    \
	do {                                                                   \
		if (curl_easy_setopt((e), (opt), (val)) != CURLE_OK)           \
			goto out;                                              \
	} while (0)

/* The Date header: STS expiry is judged against the server's clock. */
static size_t on_header(char *p, size_t size, size_t nmemb, void *arg)
{
	struct ram_call *call = arg;
	size_t n = size * nmemb;
	char buf[80];

	if (n > 5 && n < sizeof(buf) && strncasecmp(p, "Date:", 5) == 0) {
		time_t t;

		memcpy(buf, p + 5, n - 5);
		buf[n - 5] = '\0';
		if ((t = curl_getdate(buf, NULL)) > 0)
			call->server_date = (int64_t)t;
	}
	return n;
}

static int try_start(struct ram_call *call)
{
	struct ram_client *c = call->c;
	uint64_t now = evloop_now(), left;
	struct ram_credential cr;
	CURL *e = NULL;
	int r;

	left = call->deadline > now ? call->deadline - now : 0;
	if (left == 0)
		return RAMKEY_ERR_TIMEOUT;
	call->errbuf[0] = '\0';
	call->body.max = RAM_BODY_MAX;
	call->server_date = 0;
	call->unavailable[0] = '\0';
	if ((r = signing_credential(c, &cr, call->unavailable,
	    sizeof(call->unavailable))) != 0)
		goto out;
	r = c->signature == RAM_SIG_V1 ? build_v1(call, &cr) :
	    build_v3(call, &cr);
	if (r != 0)
		goto out;
	if ((r = add_header(&call->headers, "Accept", "application/json")) !=
		0 ||
	    (r = add_header(&call->headers, "Expect", "")) != 0)
		goto out;
	r = RAMKEY_ERR_NOMEM;
	if ((e = curl_easy_init()) == NULL)
		goto out;
	r = RAMKEY_ERR_INTERNAL;
	SETOPT(e, CURLOPT_URL, call->url);
	SETOPT(e, CURLOPT_PRIVATE, call);
	SETOPT(e, CURLOPT_SHARE, c->share);
	SETOPT(e, CURLOPT_NOSIGNAL, 1L);
	SETOPT(e, CURLOPT_PROTOCOLS_STR, c->protocols);
	SETOPT(e, CURLOPT_REDIR_PROTOCOLS_STR, c->protocols);
	SETOPT(e, CURLOPT_FOLLOWLOCATION, 0L);
	if (curl_trust_apply(e, &c->trust) != CURLE_OK)
		goto out;
	if (c->proxy != NULL)
		SETOPT(e, CURLOPT_PROXY, c->proxy);
	SETOPT(e, CURLOPT_TIMEOUT_MS,
	    (long)(left < RAM_TRY_MAX_MS ? left : RAM_TRY_MAX_MS));
	SETOPT(e, CURLOPT_CONNECTTIMEOUT_MS,
	    (long)(left < RAM_CONNECT_TIMEOUT_MS ? left
						 : RAM_CONNECT_TIMEOUT_MS));
	SETOPT(e, CURLOPT_TCP_KEEPALIVE, 1L);
	SETOPT(e, CURLOPT_USERAGENT, RAM_USER_AGENT);
	SETOPT(e, CURLOPT_HTTPHEADER, call->headers);
	SETOPT(e, CURLOPT_POST, 1L);
	SETOPT(e, CURLOPT_POSTFIELDS, call->post);
	SETOPT(e, CURLOPT_POSTFIELDSIZE, (long)strlen(call->post));
	SETOPT(e, CURLOPT_WRITEFUNCTION, http_body_write);
	SETOPT(e, CURLOPT_WRITEDATA, &call->body);
	SETOPT(e, CURLOPT_HEADERFUNCTION, on_header);
	SETOPT(e, CURLOPT_HEADERDATA, call);
	SETOPT(e, CURLOPT_ERRORBUFFER, call->errbuf);
	SETOPT(e, CURLOPT_OPENSOCKETFUNCTION, curl_loop_open_socket);
	if (curl_multi_add_handle(c->multi, e) != CURLM_OK)
		goto out;
	call->easy = e;
	e = NULL;
	call->attempts++;
	r = 0;
out:
	curl_easy_cleanup(e);
	if (r != 0)
		try_detach(call);
	return r;
}

static void schedule_retry(struct ram_call *call)
{
	struct ram_client *c = call->c;
	uint64_t now = evloop_now(), delay = RAM_BACKOFF_INITIAL_MS, wait;
	unsigned i;

	for (i = 1; i < call->attempts && delay < RAM_BACKOFF_MAX_MS; i++)
		delay *= RAM_BACKOFF_FACTOR;
	if (delay > RAM_BACKOFF_MAX_MS)
		delay = RAM_BACKOFF_MAX_MS;
	wait = delay / 2 + randombytes_uniform((uint32_t)(delay / 2 + 1));
	if (now >= call->deadline) {
		fail_timeout(call);
		return;
	}
	metric_inc(c->m_retries, ram_action_name(call->act),
	    retry_value(&call->err));
	if (call->on_retry != NULL) {
		/* The caller may cancel the call from here. */
		call->in_retry_cb = true;
		call->on_retry(call->arg, &call->err);
		call->in_retry_cb = false;
		if (call->cancel_pending) {
			call_unlink(call);
			call_free(call);
			return;
		}
	}
	if (now + wait >= call->deadline) {
		call->timer_action = TIMER_DEADLINE;
		wait = call->deadline - now;
	} else {
		call->timer_action = TIMER_TRY;
	}
	if (evloop_timer_arm(c->loop, &call->timer, now + wait) != 0)
		fail_local(call, RAMKEY_ERR_NOMEM, "scheduling a retry");
}

/* --- Circuit breaker --- */

static void unpark(struct ram_call *call)
{
	struct ram_client *c = call->c;

	if (call->park_prev != NULL)
		call->park_prev->park_next = call->park_next;
	else
		c->parked_head = call->park_next;
	if (call->park_next != NULL)
		call->park_next->park_prev = call->park_prev;
	else
		c->parked_tail = call->park_prev;
	call->park_prev = call->park_next = NULL;
	call->parked = false;
}

static void arm_probe_timer(struct ram_client *c)
{
	uint64_t now = evloop_now();

	if (c->probe_in_flight || c->parked_head == NULL || c->dying)
		return;
	(void)evloop_timer_arm(c->loop, &c->probe_timer,
	    c->probe_next > now ? c->probe_next : now);
}

/* Let every waiting call try again now. */
static void release_parked(struct ram_client *c)
{
	uint64_t now = evloop_now();

	while (c->parked_head != NULL) {
		struct ram_call *call = c->parked_head;

		unpark(call);
		call->timer_action = TIMER_TRY;
		(void)evloop_timer_arm(c->loop, &call->timer, now);
	}
}

/* May this call send a try now? If not, it waits for the probe. */
static bool gate(struct ram_call *call)
{
	struct ram_client *c = call->c;

	if (c->consecutive_failures < RAM_BREAKER_THRESHOLD)
		return true;
	if (!c->probe_in_flight && evloop_now() >= c->probe_next) {
		c->probe_in_flight = true;
		call->is_probe = true;
		return true;
	}
	call->parked = true;
	call->park_prev = c->parked_tail;
	if (c->parked_tail != NULL)
		c->parked_tail->park_next = call;
	else
		c->parked_head = call;
	c->parked_tail = call;
	/* It still ends at its own deadline. */
	call->timer_action = TIMER_DEADLINE;
	(void)evloop_timer_arm(c->loop, &call->timer, call->deadline);
	arm_probe_timer(c);
	return false;
}

static void start_try(struct ram_call *call)
{
	int r;

	if ((r = try_start(call)) == RAMKEY_ERR_TIMEOUT)
		fail_timeout(call);
	else if (r == RAMKEY_ERR_UNAVAILABLE)
		fail_unavailable(call);
	else if (r != 0)
		fail_local(call,
		    r == RAMKEY_ERR_INTERNAL ? RAMKEY_ERR_NOMEM : r,
		    "preparing the request");
}

static void on_probe_timer(void *arg)
{
	struct ram_client *c = arg;
	struct ram_call *call;

	c->busy++;
	if (c->consecutive_failures < RAM_BREAKER_THRESHOLD) {
		release_parked(c);
	} else if (!c->probe_in_flight && (call = c->parked_head) != NULL) {
		unpark(call);
		evloop_timer_cancel(c->loop, &call->timer);
		c->probe_in_flight = true;
		call->is_probe = true;
		start_try(call);
	}
	leave(c);
}

/* Account for a finished try in the breaker. */
static void breaker_update(struct ram_call *call, int rc)
{
	struct ram_client *c = call->c;
	bool failure = rc != 0 && call->err.transport_or_5xx;

	if (call->is_probe) {
		call->is_probe = false;
		c->probe_in_flight = false;
	}
	if (failure) {
		if (++c->consecutive_failures >= RAM_BREAKER_THRESHOLD) {
			uint64_t d = 1000ULL << (c->probe_round < 3 ?
			    c->probe_round : 3);

			if (c->probe_round < 3)
				c->probe_round++;
			c->probe_next = evloop_now() + d / 2 +
			    randombytes_uniform((uint32_t)(d / 2 + 1));
		}
	} else if (rc == 0 || call->err.kind == RAM_ERRK_API) {
		/* RAM answered: everybody may go. */
		c->consecutive_failures = 0;
		c->probe_round = 0;
		release_parked(c);
	}
	arm_probe_timer(c);
}

static void on_call_timer(void *arg)
{
	struct ram_call *call = arg;
	struct ram_client *c = call->c;
	int r;

	c->busy++;
	/* Two branches end in fail_timeout(): the deadline's timer, and
	 * try_start() finding the deadline passed. */
	/* NOLINTNEXTLINE(bugprone-branch-clone) */
	if (call->timer_action == TIMER_DEADLINE) {
		fail_timeout(call);
	} else if (!gate(call)) {
		/* parked until a probe gets an answer */
	} else if ((r = try_start(call)) == RAMKEY_ERR_TIMEOUT) {
		fail_timeout(call);
	} else if (r == RAMKEY_ERR_UNAVAILABLE) {
		fail_unavailable(call);
	} else if (r != 0) {
		fail_local(call,
		    r == RAMKEY_ERR_INTERNAL ? RAMKEY_ERR_NOMEM : r,
		    "preparing the request");
	}
	leave(c);
}

static bool transport_permanent(CURLcode cr)
{
	switch (cr) {
	case CURLE_UNSUPPORTED_PROTOCOL:
	case CURLE_URL_MALFORMAT:
	case CURLE_NOT_BUILT_IN:
	case CURLE_PEER_FAILED_VERIFICATION:
	case CURLE_SSL_CACERT_BADFILE:
	case CURLE_SSL_CERTPROBLEM:
	case CURLE_SSL_CRL_BADFILE:
	case CURLE_SSL_ISSUER_ERROR:
	case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
	case CURLE_BAD_FUNCTION_ARGUMENT:
	case CURLE_OUT_OF_MEMORY:
		return true;
	default:
		return false;
	}
}

/* RAM's message must never carry our own secret. */
static void redact(struct ram_client *c, struct ram_error *e)
{
	struct ram_credential cr;
	char why[8];

	if (signing_credential(c, &cr, why, sizeof(why)) != 0 ||
	    cr.secret_len == 0)
		return;
	if (memmem(e->message, strlen(e->message), cr.secret,
	    cr.secret_len) != NULL ||
	    (cr.token != NULL && memmem(e->message, strlen(e->message),
	    cr.token, strlen(cr.token)) != NULL))
		snprintf(e->message, sizeof(e->message),
		    "(message withheld: it contained the client's secret)");
}

/*
 * Classify a finished try. Returns true when the call is over (rc and,
 * on success, *res set); false when the try should be retried.
 */
static bool try_outcome(
    struct ram_call *call, CURLcode cr, struct ram_result *res, int *rc)
{
	struct ram_client *c = call->c;
	struct ram_error *e = &call->err;
	char detail[96];
	long status = 0;
	bool too_large;
	int r;

	curl_easy_getinfo(call->easy, CURLINFO_RESPONSE_CODE, &status);
	memset(e, 0, sizeof(*e));
	copy_trunc(e->op, sizeof(e->op), ram_action_name(call->act));
	e->attempts = call->attempts;
	e->http_status = status;
	too_large = call->body.overflow && cr == CURLE_WRITE_ERROR;

	if (cr != CURLE_OK && !too_large) {
		const char *why =
		    call->errbuf[0] ? call->errbuf : curl_easy_strerror(cr);

		e->kind = RAM_ERRK_TRANSPORT;
		e->transport_or_5xx = true;
		ram_scrub_message(
		    NULL, why, strlen(why), e->message, sizeof(e->message));
		if (cr == CURLE_OUT_OF_MEMORY) {
			e->kind = RAM_ERRK_LOCAL;
			e->transport_or_5xx = false;
			*rc = RAMKEY_ERR_NOMEM;
			return true;
		}
		*rc = RAMKEY_ERR_RAM;
		return transport_permanent(cr);
	}
	if (too_large) {
		e->kind = status >= 500 ? RAM_ERRK_HTTP : RAM_ERRK_PARSE;
		e->transport_or_5xx = status >= 500;
		snprintf(e->message, sizeof(e->message),
		    "HTTP %ld with a body over %d bytes", status, RAM_BODY_MAX);
		*rc = RAMKEY_ERR_RAM;
		return status < 500;
	}
	if (status >= 200 && status <= 299) {
		r = ram_parse_success(call->act, call->body.data,
		    call->body.len, res, detail, sizeof(detail));
		if (r == 0) {
			*rc = 0;
			return true;
		}
		if (r == RAMKEY_ERR_NOMEM) {
			e->kind = RAM_ERRK_LOCAL;
			snprintf(e->message, sizeof(e->message),
			    "parsing the answer: out of memory");
			*rc = RAMKEY_ERR_NOMEM;
			return true;
		}
		/* A 2xx that is really an error body is treated as one. */
		if (ram_parse_error(call->body.data, call->body.len, e) != 0) {
			e->kind = RAM_ERRK_PARSE;
			snprintf(e->message, sizeof(e->message),
			    "malformed %s answer (HTTP %ld): %s", e->op, status,
			    detail);
			*rc = RAMKEY_ERR_RAM;
			return true;
		}
	} else if (ram_parse_error(call->body.data, call->body.len, e) != 0) {
		e->kind = RAM_ERRK_HTTP;
		e->transport_or_5xx = status >= 500;
		snprintf(e->message, sizeof(e->message),
		    "HTTP %ld without a RAM error code", status);
		*rc = RAMKEY_ERR_RAM;
		return status < 500;
	}
	/* RAM answered with a Code: decide on it, not on the status. */
	e->kind = RAM_ERRK_API;
	e->transport_or_5xx = status >= 500;
	redact(c, e);
	if (call->act == RAM_ACT_DELETE_ACCESS_KEY &&
	    (strcmp(e->code, "EntityNotExist.User.AccessKey") == 0 ||
		strcmp(e->code, "EntityNotExist.User") == 0)) {
		memset(res, 0, sizeof(*res));
		copy_trunc(
		    res->request_id, sizeof(res->request_id), e->request_id);
		*rc = 0;
		return true;
	}
	*rc = strcmp(e->code, "LimitExceeded.User.AccessKey") == 0
	    ? RAMKEY_ERR_LIMIT
	    : RAMKEY_ERR_RAM;
	return !ram_code_retryable(e->code);
}

static void try_done(struct ram_call *call, CURLcode cr)
{
	struct ram_client *c = call->c;
	struct ram_result res;
	bool over;
	int rc = RAMKEY_ERR_INTERNAL;

	memset(&res, 0, sizeof(res));
	over = try_outcome(call, cr, &res, &rc);
	/* Health: the last finished try of any call. */
	c->degraded = rc != 0 && call->err.transport_or_5xx;
	c->last_failed = rc != 0;
	if (rc != 0)
		c->last_err = call->err;
	breaker_update(call, rc);
	res.attempts = call->attempts;
	res.server_date = call->server_date;
	res.earlier_try_unknown = call->unknown_outcome;
	call->err.earlier_try_unknown = call->unknown_outcome;
	if (rc != 0 && call->err.transport_or_5xx)
		call->unknown_outcome = true;
	try_detach(call); /* wipes the body */
	if (over) {
		call_complete(call, rc, &res);
		ram_result_clear(&res);
		return;
	}
	schedule_retry(call);
}

/* curl_loop's done: a try finished. */
static void on_done(void *owner, void *priv, CURL *easy, CURLcode result)
{
	struct ram_call *call = priv;

	(void)owner;
	if (call->easy == easy)
		try_done(call, result);
}

/* --- Client --- */

/* Check the endpoint and derive the base URL and the Host header. */
static int setup_endpoint(
    struct ram_client *c, const char *endpoint, bool allow_http)
{
	CURLU *u = NULL;
	char *scheme = NULL, *host = NULL, *port = NULL, *path = NULL;
	char *query = NULL, *frag = NULL, *user = NULL, *pass = NULL;
	int r = RAMKEY_ERR_CONFIG;

	if ((u = curl_url()) == NULL)
		return RAMKEY_ERR_NOMEM;
	if (curl_url_set(u, CURLUPART_URL, endpoint, 0) != CURLUE_OK)
		goto out;
	if (curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
	    curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK ||
	    host[0] == '\0')
		goto out;
	curl_url_get(u, CURLUPART_PORT, &port, 0);
	curl_url_get(u, CURLUPART_PATH, &path, 0);
	curl_url_get(u, CURLUPART_QUERY, &query, 0);
	curl_url_get(u, CURLUPART_FRAGMENT, &frag, 0);
	curl_url_get(u, CURLUPART_USER, &user, 0);
	curl_url_get(u, CURLUPART_PASSWORD, &pass, 0);
	if (strcmp(scheme, "https") == 0)
		c->protocols = "https";
	else if (strcmp(scheme, "http") == 0 && allow_http)
		c->protocols = "http,https";
	else
		goto out;
	if (query != NULL || frag != NULL || user != NULL || pass != NULL ||
	    (path != NULL && strcmp(path, "/") != 0 && path[0] != '\0'))
		goto out;
	r = RAMKEY_ERR_NOMEM;
	if (asprintf(&c->host, "%s%s%s", host, port ? ":" : "",
		port ? port : "") < 0) {
		c->host = NULL;
		goto out;
	}
	if (asprintf(&c->base_url, "%s://%s/", scheme, c->host) < 0) {
		c->base_url = NULL;
		goto out;
	}
	r = 0;
out:
	curl_free(scheme);
	curl_free(host);
	curl_free(port);
	curl_free(path);
	curl_free(query);
	curl_free(frag);
	curl_free(user);
	curl_free(pass);
	curl_url_cleanup(u);
	return r;
}

int ram_client_new(struct evloop *loop, const struct ram_client_config *cfg,
    struct ram_client **ret)
{
	struct ram_client *c = NULL;
	size_t i;
	int r = RAMKEY_ERR_NOMEM;

	*ret = NULL;
	if (loop == NULL || cfg == NULL)
		return RAMKEY_ERR_INVALID;
	if (cfg->signature != RAM_SIG_V1 && cfg->signature != RAM_SIG_V3)
		return RAMKEY_ERR_CONFIG;
	if (sodium_init() < 0)
		return RAMKEY_ERR_CRYPTO;
	if ((c = calloc(1, sizeof(*c))) == NULL)
		goto out;
	c->loop = loop;
	c->signature = cfg->signature;
	if ((c->api_version = strdup(cfg->api_version != NULL ?
	    cfg->api_version : RAM_API_VERSION)) == NULL)
		goto out;
	ev_timer_init(&c->probe_timer, on_probe_timer, c);
	c->timeout_ms[RAM_ACT_CREATE_ACCESS_KEY] = cfg->create_timeout_ms
	    ? cfg->create_timeout_ms
	    : RAM_DEFAULT_WRITE_TIMEOUT_MS;
	c->timeout_ms[RAM_ACT_UPDATE_ACCESS_KEY] = cfg->update_timeout_ms
	    ? cfg->update_timeout_ms
	    : RAM_DEFAULT_WRITE_TIMEOUT_MS;
	c->timeout_ms[RAM_ACT_DELETE_ACCESS_KEY] = cfg->delete_timeout_ms
	    ? cfg->delete_timeout_ms
	    : RAM_DEFAULT_WRITE_TIMEOUT_MS;
	c->timeout_ms[RAM_ACT_LIST_ACCESS_KEYS] = cfg->read_timeout_ms
	    ? cfg->read_timeout_ms
	    : RAM_DEFAULT_READ_TIMEOUT_MS;
	c->timeout_ms[RAM_ACT_GET_USER] =
	    c->timeout_ms[RAM_ACT_LIST_ACCESS_KEYS];
	c->timeout_ms[RAM_ACT_LIST_USERS] =
	    c->timeout_ms[RAM_ACT_LIST_ACCESS_KEYS];
	c->timeout_ms[RAM_ACT_LIST_USERS_FOR_GROUP] =
	    c->timeout_ms[RAM_ACT_LIST_ACCESS_KEYS];
	c->timeout_ms[STS_ACT_GET_CALLER_IDENTITY] =
	    c->timeout_ms[RAM_ACT_LIST_ACCESS_KEYS];
	c->timeout_ms[STS_ACT_ASSUME_ROLE] =
	    c->timeout_ms[RAM_ACT_CREATE_ACCESS_KEY];
	for (i = 0; i < sizeof(c->timeout_ms) / sizeof(c->timeout_ms[0]); i++)
		if (c->timeout_ms[i] > RAM_TIMEOUT_MAX_MS)
			c->timeout_ms[i] = RAM_TIMEOUT_MAX_MS;
	if ((r = setup_endpoint(c,
		 cfg->endpoint ? cfg->endpoint : RAM_DEFAULT_ENDPOINT,
		 cfg->allow_http)) != 0 ||
	    (r = curl_trust_init(&c->trust, cfg->ca_file, true,
		 cfg->proxy)) != 0)
		goto out;
	r = RAMKEY_ERR_NOMEM;
	if (cfg->proxy != NULL && cfg->proxy[0] != '\0' &&
	    (c->proxy = strdup(cfg->proxy)) == NULL)
		goto out;
	if ((c->multi = curl_multi_init()) == NULL ||
	    (c->share = curl_share_init()) == NULL)
		goto out;
	r = RAMKEY_ERR_INTERNAL;
	if (curl_share_setopt(c->share, CURLSHOPT_SHARE,
		CURL_LOCK_DATA_SSL_SESSION) != CURLSHE_OK ||
	    curl_share_setopt(c->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS) !=
		CURLSHE_OK ||
	    curl_loop_init(&c->cl, loop, c->multi, on_curl, on_done, c) != 0 ||
	    curl_multi_setopt(
		c->multi, CURLMOPT_MAXCONNECTS, RAM_MAXCONNECTS) != CURLM_OK)
		goto out;
	*ret = c;
	c = NULL;
	r = 0;
out:
	client_destroy(c);
	return r;
}

/* End every call without its callback. */
static void drop_calls(struct ram_client *c)
{
	struct ram_call *call;

	/* Off the list here: the loop does not depend on call->c. */
	while ((call = c->calls) != NULL) {
		c->calls = call->next;
		if (c->calls != NULL)
			c->calls->prev = NULL;
		call->next = NULL;
		call_unlink(call);
		call_free(call);
	}
}

static void client_destroy(struct ram_client *c)
{
	if (c == NULL)
		return;
	drop_calls(c);
	if (c->multi != NULL)
		curl_multi_cleanup(c->multi); /* closes pooled connections */
	if (c->share != NULL)
		curl_share_cleanup(c->share);
	curl_loop_cleanup(&c->cl);
	evloop_timer_cancel(c->loop, &c->probe_timer);
	free(c->base_url);
	free(c->api_version);
	free(c->host);
	curl_trust_clear(&c->trust);
	free(c->proxy);
	free(c->key_id);
	if (c->secret != NULL)
		sodium_free(c->secret);
	free(c);
}

void ram_client_free(struct ram_client *c)
{
	if (c == NULL)
		return;
	if (c->busy > 0) {
		/* Inside one of our own callbacks: finish when it returns. */
		drop_calls(c);
		c->dying = true;
		return;
	}
	client_destroy(c);
}

int ram_client_set_credentials(
    struct ram_client *c, const char *key_id, const char *secret)
{
	char *id = NULL, *s = NULL;
	size_t len;

	if (c == NULL || key_id == NULL || secret == NULL)
		return RAMKEY_ERR_INVALID;
	len = strnlen(secret, RAM_SECRET_IN_MAX + 1);
	if (!ram_key_id_valid(key_id, strlen(key_id)) || len == 0 ||
	    len > RAM_SECRET_IN_MAX)
		return RAMKEY_ERR_INVALID;
	if ((id = strdup(key_id)) == NULL)
		return RAMKEY_ERR_NOMEM;
	if ((s = sodium_malloc(len + 2)) == NULL) {
		free(id);
		return RAMKEY_ERR_NOMEM;
	}
	memcpy(s, secret, len);
	s[len] = '\0';
	free(c->key_id);
	if (c->secret != NULL)
		sodium_free(c->secret);
	c->key_id = id;
	c->secret = s;
	c->secret_len = len;
	return 0;
}

static bool opt_user_valid(const char *user)
{
	return user == NULL || user[0] == '\0' ||
	    ram_user_name_valid(user, strlen(user));
}


static int call_start(struct ram_client *c, enum ram_action act,
    const struct ram_param *params, size_t nparams, ram_done_fn fn,
    ram_retry_fn on_retry, void *arg, struct ram_call **ret)
{
	struct ram_call *call = NULL;
	uint64_t now;
	size_t i;
	int r = RAMKEY_ERR_INVALID;

	if (ret != NULL)
		*ret = NULL;
	if (c == NULL || fn == NULL || c->dying || nparams > RAM_PARAMS_MAX)
		goto out;
	if (c->cred_fn == NULL && (c->key_id == NULL || c->secret == NULL)) {
		r = RAMKEY_ERR_CONFIG;
		goto out;
	}
	r = RAMKEY_ERR_NOMEM;
	if ((call = calloc(1, sizeof(*call))) == NULL)
		goto out;
	call->c = c;
	call->act = act;
	call->fn = fn;
	call->on_retry = on_retry;
	call->arg = arg;
	ev_timer_init(&call->timer, on_call_timer, call);
	for (i = 0; i < nparams; i++) {
		if (params[i].value == NULL || params[i].value[0] == '\0')
			continue;
		call->params[call->nparams].name = params[i].name;
		if ((call->params[call->nparams].value =
		    strdup(params[i].value)) == NULL)
			goto out;
		call->nparams++;
	}
	now = evloop_now();
	call->start = now;
	call->start_us = now_us();
	call->timeout_ms = op_timeout(c, act);
	/* +1: evloop_now() truncates, so "now" may be up to 1 ms in the
	 * past; never end a call before its full timeout. */
	call->deadline = now + call->timeout_ms + 1;
	call->timer_action = TIMER_TRY;
	copy_trunc(call->err.op, sizeof(call->err.op), ram_action_name(act));
	/* The first try starts from the loop, never from here. */
	if ((r = evloop_timer_arm(c->loop, &call->timer, now)) != 0)
		goto out;
	call->next = c->calls;
	if (c->calls != NULL)
		c->calls->prev = call;
	c->calls = call;
	c->in_flight++;
	if (ret != NULL)
		*ret = call;
	call = NULL;
	r = 0;
out:
	if (call != NULL) {
		evloop_timer_cancel(c->loop, &call->timer);
		params_free(call);
		free(call);
	}
	return r;
}

/* The RAM operations on a user (and a key). */
static int user_call(struct ram_client *c, enum ram_action act,
    const char *user, const char *key_id, const char *status, ram_done_fn fn,
    void *arg, struct ram_call **ret)
{
	struct ram_param p[3] = {
		{ "UserName", user },
		{ "UserAccessKeyId", key_id },
		{ "Status", status },
	};

	if (ret != NULL)
		*ret = NULL;
	if (!opt_user_valid(user))
		return RAMKEY_ERR_INVALID;
	return call_start(c, act, p, 3, fn, NULL, arg, ret);
}

int ram_create_access_key(struct ram_client *c, const char *user,
    ram_done_fn fn, void *arg, struct ram_call **ret)
{
	return user_call(
	    c, RAM_ACT_CREATE_ACCESS_KEY, user, NULL, NULL, fn, arg, ret);
}

int ram_update_access_key(struct ram_client *c, const char *user,
    const char *key_id, const char *status, ram_done_fn fn, void *arg,
    struct ram_call **ret)
{
	if (ret != NULL)
		*ret = NULL;
	if (key_id == NULL || !ram_key_id_valid(key_id, strlen(key_id)) ||
	    status == NULL ||
	    (strcmp(status, "Active") != 0 && strcmp(status, "Inactive") != 0))
		return RAMKEY_ERR_INVALID;
	return user_call(
	    c, RAM_ACT_UPDATE_ACCESS_KEY, user, key_id, status, fn, arg, ret);
}

int ram_delete_access_key(struct ram_client *c, const char *user,
    const char *key_id, ram_done_fn fn, void *arg, struct ram_call **ret)
{
	if (ret != NULL)
		*ret = NULL;
	if (key_id == NULL || !ram_key_id_valid(key_id, strlen(key_id)))
		return RAMKEY_ERR_INVALID;
	return user_call(
	    c, RAM_ACT_DELETE_ACCESS_KEY, user, key_id, NULL, fn, arg, ret);
}

int ram_list_access_keys(struct ram_client *c, const char *user, ram_done_fn fn,
    void *arg, struct ram_call **ret)
{
	return user_call(
	    c, RAM_ACT_LIST_ACCESS_KEYS, user, NULL, NULL, fn, arg, ret);
}

int ram_get_user(struct ram_client *c, const char *user, ram_done_fn fn,
    void *arg, struct ram_call **ret)
{
	if (ret != NULL)
		*ret = NULL;
	if (user == NULL || user[0] == '\0')
		return RAMKEY_ERR_INVALID;
	return user_call(c, RAM_ACT_GET_USER, user, NULL, NULL, fn, arg, ret);
}

int ram_list_users(struct ram_client *c, const char *marker, ram_done_fn fn,
    void *arg, struct ram_call **ret)
{
	struct ram_param p[2] = { { "Marker", marker }, { "MaxItems", "100" } };

	return call_start(c, RAM_ACT_LIST_USERS, p, 2, fn, NULL, arg, ret);
}

int ram_list_users_for_group(struct ram_client *c, const char *group,
    const char *marker, ram_done_fn fn, void *arg, struct ram_call **ret)
{
	struct ram_param p[3] = { { "GroupName", group }, { "Marker", marker },
		{ "MaxItems", "100" } };

	if (ret != NULL)
		*ret = NULL;
	if (group == NULL || !ram_user_name_valid(group, strlen(group)))
		return RAMKEY_ERR_INVALID;
	return call_start(c, RAM_ACT_LIST_USERS_FOR_GROUP, p, 3, fn, NULL, arg,
	    ret);
}

int ram_assume_role(struct ram_client *c, const struct ram_assume_role *a,
    ram_done_fn fn, ram_retry_fn on_retry, void *arg, struct ram_call **ret)
{
	char dur[16];
	struct ram_param p[5] = {
		{ "RoleArn", a->role_arn },
		{ "RoleSessionName", a->session_name },
		{ "DurationSeconds", dur },
		{ "Policy", a->policy },
		{ "ExternalId", a->external_id },
	};

	if (ret != NULL)
		*ret = NULL;
	if (a->role_arn == NULL || a->session_name == NULL ||
	    a->duration_s < 900 || a->duration_s > 43200)
		return RAMKEY_ERR_INVALID;
	snprintf(dur, sizeof(dur), "%u", (unsigned)a->duration_s);
	return call_start(c, STS_ACT_ASSUME_ROLE, p, 5, fn, on_retry, arg, ret);
}

int ram_get_caller_identity(struct ram_client *c, ram_done_fn fn, void *arg,
    struct ram_call **ret)
{
	return call_start(c, STS_ACT_GET_CALLER_IDENTITY, NULL, 0, fn, NULL,
	    arg, ret);
}

void ram_client_set_credential_source(struct ram_client *c,
    ram_credential_fn fn, void *arg)
{
	c->cred_fn = fn;
	c->cred_arg = arg;
}

void ram_call_cancel(struct ram_call *call)
{
	if (call == NULL || call->in_callback)
		return;
	if (call->in_retry_cb) {
		call->cancel_pending = true;
		return;
	}
	call_unlink(call);
	call_free(call);
}

const struct ram_error *ram_client_last_error(const struct ram_client *c)
{
	return c != NULL && c->last_failed ? &c->last_err : NULL;
}

bool ram_client_degraded(const struct ram_client *c)
{
	return c != NULL && c->degraded;
}

size_t ram_client_in_flight(const struct ram_client *c)
{
	return c == NULL ? 0 : c->in_flight;
}

struct evloop *ram_client_loop(const struct ram_client *c)
{
	return c->loop;
}
