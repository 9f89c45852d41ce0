/*
 * The agent's own credential (source.h). One fetch at a time, started by
 * one timer (the renewal schedule, the backoff and the on-demand kicks all
 * arm it); a second timer notes the moment the credential runs out.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "evloop.h"
#include "imds.h"
#include "log.h"
#include "ram_client.h"
#include "ramkey_err.h"
#include "source.h"
#include "template.h"
#include "util.h"

/* A failure is logged when its reason changes, else once a minute. */
#define FAIL_LOG_EVERY_MS 60000ULL
#define SESSION_NAME_MAX 64

struct source {
	struct evloop *loop;
	enum source_type type;
	char *origin;
	char *profile_type;
	char *desc;		/* where it comes from, for the log */
	char *role;		/* IMDS role name or role ARN */
	bool role_configured;	/* IMDS: named in the credentials file */
	/* The current credential. */
	char *key_id;
	char *secret;		/* sodium_malloc */
	size_t secret_len;
	char *token;		/* sodium_malloc, or NULL */
	int64_t expiration;	/* Unix s as the source said; 0: none */
	uint64_t expires_mono;	/* evloop ms; 0: never */
	bool renewable;
	bool expired_logged;
	bool ever_usable;	/* a credential has been usable before */
	/* Fetching. */
	struct imds *imds;
	struct ram_client *sts;
	struct ram_call *call;
	char *role_arn, *session_name, *external_id;
	bool in_flight;
	bool started;
	struct ev_timer timer;
	struct ev_timer expiry_timer;
	uint64_t last_try;	/* evloop ms of the last fetch's start */
	unsigned failures;
	uint64_t last_fail_log;
	char why[SOURCE_WHY_MAX];	/* why there is no usable one */
	char last_fail[SOURCE_WHY_MAX];
};

uint64_t source_poll_delay_ms(uint64_t remaining_ms)
{
	uint64_t d;

	if (remaining_ms > SOURCE_RENEW_BEFORE_MS)
		return remaining_ms - SOURCE_RENEW_BEFORE_MS;
	d = remaining_ms / 3;
	if (d > SOURCE_POLL_MAX_MS)
		d = SOURCE_POLL_MAX_MS;
	if (d < SOURCE_POLL_MIN_MS)
		d = SOURCE_POLL_MIN_MS;
	return d;
}

uint64_t source_backoff_ms(unsigned failures)
{
	uint64_t d = SOURCE_POLL_MIN_MS;
	unsigned i;

	for (i = 1; i < failures && d < SOURCE_BACKOFF_MAX_MS; i++)
		d *= 2;
	return d < SOURCE_BACKOFF_MAX_MS ? d : SOURCE_BACKOFF_MAX_MS;
}

/* A reason or a log text cut to fit, whatever its parts' lengths. */
static void why_set(char *buf, size_t len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void why_set(char *buf, size_t len, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, len, fmt, ap);
	va_end(ap);
}

/* ---- the spec ---- */

static void secret_str_free(char *s)
{
	if (s != NULL)
		sodium_free(s);
}

void source_spec_free(struct source_spec *spec)
{
	if (spec == NULL)
		return;
	free(spec->origin);
	free(spec->where);
	free(spec->profile_type);
	free(spec->key_id);
	secret_str_free(spec->secret);
	secret_str_free(spec->token);
	free(spec->metadata_url);
	free(spec->role_name);
	free(spec->role_arn);
	free(spec->session_name);
	free(spec->external_id);
	free(spec->sts_endpoint);
	free(spec->choice);
	free(spec);
}

void source_spec_describe(const struct source_spec *spec, char *buf,
    size_t len)
{
	switch (spec->type) {
	case SOURCE_IMDS:
		snprintf(buf, len, "the instance metadata service at %s%s%s",
		    spec->metadata_url != NULL ? spec->metadata_url :
		    IMDS_DEFAULT_URL, spec->role_name != NULL ? ", role " : "",
		    spec->role_name != NULL ? spec->role_name : "");
		break;
	case SOURCE_ASSUME_ROLE:
		snprintf(buf, len, "AssumeRole of %s at %s with the key in %s",
		    spec->role_arn, spec->sts_endpoint, spec->where);
		break;
	case SOURCE_STATIC:
	default:
		snprintf(buf, len, "%s%s", spec->where, spec->token != NULL ?
		    " (with a security token)" : "");
		break;
	}
}

/* ---- the current credential ---- */

static int secret_copy(const char *s, size_t len, char **out)
{
	char *d;

	*out = NULL;
	if ((d = sodium_malloc(len + 1)) == NULL)
		return RAMKEY_ERR_NOMEM;
	memcpy(d, s, len);
	d[len] = '\0';
	*out = d;
	return 0;
}

static void cred_clear(struct source *s)
{
	free(s->key_id);
	s->key_id = NULL;
	secret_str_free(s->secret);
	s->secret = NULL;
	s->secret_len = 0;
	secret_str_free(s->token);
	s->token = NULL;
	s->expiration = 0;
	s->expires_mono = 0;
}

/* Take a credential; the old one is wiped only once the new is copied. */
static int cred_set(struct source *s, const char *id, const char *secret,
    size_t secret_len, const char *token, size_t token_len)
{
	char *nid = NULL, *nsecret = NULL, *ntoken = NULL;

	if ((nid = strdup(id)) == NULL ||
	    secret_copy(secret, secret_len, &nsecret) != 0 ||
	    (token != NULL && secret_copy(token, token_len, &ntoken) != 0)) {
		free(nid);
		secret_str_free(nsecret);
		return RAMKEY_ERR_NOMEM;
	}
	cred_clear(s);
	s->key_id = nid;
	s->secret = nsecret;
	s->secret_len = secret_len;
	s->token = ntoken;
	return 0;
}

static bool usable_at(const struct source *s, uint64_t now)
{
	if (s->key_id == NULL || s->secret == NULL)
		return false;
	return s->expires_mono == 0 ||
	    now + SOURCE_EXPIRY_MARGIN_MS < s->expires_mono;
}

bool source_usable(const struct source *s)
{
	return s != NULL && usable_at(s, evloop_now());
}

static void fmt_time(int64_t t, char *buf)
{
	if (t > 0)
		ramkey_format_time(t, buf);
	else
		snprintf(buf, 32, "an unknown time");
}

/* ---- fetching ---- */

static void arm_fetch(struct source *s, uint64_t at)
{
	if (s->type == SOURCE_STATIC || s->in_flight)
		return;
	(void)evloop_timer_arm(s->loop, &s->timer, at);
}

/* A call found no usable credential: ask again soon, at most once a
 * second. */
static void kick(struct source *s)
{
	uint64_t now = evloop_now(), at;

	if (s->type == SOURCE_STATIC || s->in_flight || !s->started)
		return;
	at = s->last_try + SOURCE_POLL_MIN_MS;
	if (at < now)
		at = now;
	if (!ev_timer_armed(&s->timer) || s->timer.deadline > at)
		arm_fetch(s, at);
}

static void expiry_check(void *arg)
{
	struct source *s = arg;
	char t[32];

	if (usable_at(s, evloop_now()) || s->key_id == NULL ||
	    s->expired_logged)
		return;
	s->expired_logged = true;
	fmt_time(s->expiration, t);
	if (!s->ever_usable && s->renewable) {
		char masked[RAMKEY_MASKED_MAX];

		ramkey_mask_key_id(s->key_id, masked);
		why_set(s->why, sizeof(s->why), "%s handed out credential %s, "
		    "which has run out (Expiration %s); asking again", s->desc,
		    masked, t);
		return;
	} else if (!s->renewable) {
		why_set(s->why, sizeof(s->why), "its credential from %s has "
		    "run out (Expiration %s) and cannot be renewed; restart "
		    "the agent with a new one", s->desc, t);
	} else {
		char masked[RAMKEY_MASKED_MAX];

		ramkey_mask_key_id(s->key_id, masked);
		why_set(s->why, sizeof(s->why), "its credential %s from %s "
		    "has run out (Expiration %s) and renewing it has "
		    "failed%s%s", masked, s->desc, t,
		    s->last_fail[0] ? ": " : "", s->last_fail);
	}
	log_err("agent credential: %s; RAM calls fail until %s", s->why,
	    s->renewable ? "the source answers again" : "then");
}

static void arm_expiry(struct source *s)
{
	s->expired_logged = false;
	if (s->expires_mono == 0) {
		evloop_timer_cancel(s->loop, &s->expiry_timer);
		return;
	}
	(void)evloop_timer_arm(s->loop, &s->expiry_timer,
	    s->expires_mono > SOURCE_EXPIRY_MARGIN_MS ?
	    s->expires_mono - SOURCE_EXPIRY_MARGIN_MS : 0);
}

static void fetched(struct source *s, const char *id, const char *secret,
    size_t secret_len, const char *token, size_t token_len,
    int64_t expiration, int64_t server_date)
{
	uint64_t now = evloop_now(), remaining_ms = 0;
	bool was_usable = usable_at(s, now);
	bool same = s->key_id != NULL && strcmp(s->key_id, id) == 0;
	char masked[RAMKEY_MASKED_MAX], t[32];
	int64_t left;

	s->in_flight = false;
	if (cred_set(s, id, secret, secret_len, token, token_len) != 0) {
		why_set(s->last_fail, sizeof(s->last_fail), "out of memory");
		s->failures++;
		arm_fetch(s, now + source_backoff_ms(s->failures));
		return;
	}
	left = expiration - (server_date > 0 ? server_date : ramkey_wall_now());
	if (left > 0)
		remaining_ms = (uint64_t)left * 1000;
	s->expiration = expiration;
	s->expires_mono = now + remaining_ms;
	if (s->expires_mono == 0)
		s->expires_mono = 1;
	s->failures = 0;
	s->last_fail[0] = '\0';
	ramkey_mask_key_id(id, masked);
	fmt_time(expiration, t);
	if (!usable_at(s, now))
		why_set(s->why, sizeof(s->why), "%s handed out credential %s, "
		    "which has run out (Expiration %s); asking again", s->desc,
		    masked, t);
	else
		s->why[0] = '\0';
	if (!same)
		log_info("agent credential: %s from %s, temporary, expires %s",
		    masked, s->desc, t);
	else
		log_debug("agent credential: %s still hands out %s "
		    "(expires %s)", s->desc, masked, t);
	if (usable_at(s, now)) {
		if (!was_usable && s->ever_usable)
			log_info("agent credential: usable again");
		s->ever_usable = true;
	}
	s->started = true;
	arm_expiry(s);
	arm_fetch(s, now + source_poll_delay_ms(remaining_ms));
}

static void fetch_failed(struct source *s, const char *why)
{
	uint64_t now = evloop_now(), delay;
	char masked[RAMKEY_MASKED_MAX], t[32];
	bool log_it;

	s->in_flight = false;
	s->failures++;
	log_it = strcmp(why, s->last_fail) != 0 || s->last_fail_log == 0 ||
	    now - s->last_fail_log >= FAIL_LOG_EVERY_MS;
	why_set(s->last_fail, sizeof(s->last_fail), "%s", why);
	delay = source_backoff_ms(s->failures);
	/* Some jitter above the first second (a fleet is not in step). */
	if (delay > SOURCE_POLL_MIN_MS)
		delay -= randombytes_uniform((uint32_t)(delay / 4));
	if (usable_at(s, now)) {
		ramkey_mask_key_id(s->key_id, masked);
		fmt_time(s->expiration, t);
		if (log_it)
			log_warn("agent credential: renewing from %s failed: "
			    "%s; %s stays in use until it expires at %s",
			    s->desc, why, masked, t);
	} else {
		if (s->key_id == NULL) {
			why_set(s->why, sizeof(s->why), "no credential yet "
			    "from %s: %s", s->desc, why);
		} else {
			if (!s->expired_logged)
				expiry_check(s);
			ramkey_mask_key_id(s->key_id, masked);
			fmt_time(s->expiration, t);
			why_set(s->why, sizeof(s->why), "its credential %s "
			    "from %s has run out (Expiration %s) and renewing "
			    "it has failed: %s", masked, s->desc, t, why);
		}
		if (log_it)
			log_err("agent credential: %s failed: %s; RAM calls "
			    "fail until it answers", s->desc, why);
	}
	if (log_it)
		s->last_fail_log = now;
	s->started = true;
	arm_fetch(s, now + delay);
}

static void imds_done(void *arg, int rc, const struct imds_result *res,
    const char *why)
{
	struct source *s = arg;

	if (rc != 0) {
		fetch_failed(s, why != NULL ? why : ramkey_strerror(rc));
		return;
	}
	/* The role the service named, for status (when not configured). */
	if (res->role != NULL && !s->role_configured && (s->role == NULL ||
	    strcmp(s->role, res->role) != 0)) {
		char *r = strdup(res->role);

		if (r != NULL) {
			free(s->role);
			s->role = r;
		}
	}
	if (res->token_less && s->key_id == NULL)
		log_warn("agent credential: the metadata service gave no "
		    "session token; using token-less requests (imds_v1 = yes)");
	fetched(s, res->cred->id, res->cred->secret, res->cred->secret_len,
	    res->cred->token, res->cred->token_len,
	    res->cred->expiration_time, res->server_date);
}

static void sts_done(void *arg, int rc, const struct ram_result *res,
    const struct ram_error *err)
{
	struct source *s = arg;
	char why[SOURCE_WHY_MAX];

	s->call = NULL;
	if (rc != 0) {
		why_set(why, sizeof(why), "%s%s%s", err != NULL &&
		    err->code[0] ? err->code : "", err != NULL &&
		    err->code[0] && err->message[0] ? ": " : "",
		    err != NULL && err->message[0] ? err->message :
		    ramkey_strerror(rc));
		fetch_failed(s, why);
		return;
	}
	fetched(s, res->sts.id, res->sts.secret, res->sts.secret_len,
	    res->sts.token, res->sts.token_len, res->sts.expiration_time,
	    res->server_date);
}

static void fetch_start(void *arg)
{
	struct source *s = arg;
	struct ram_assume_role a;
	int r = 0;

	if (s->in_flight)
		return;
	s->last_try = evloop_now();
	s->in_flight = true;
	if (s->type == SOURCE_IMDS) {
		r = imds_fetch(s->imds, imds_done, s);
	} else if (s->type == SOURCE_ASSUME_ROLE) {
		memset(&a, 0, sizeof(a));
		a.role_arn = s->role_arn;
		a.session_name = s->session_name;
		a.duration_s = SOURCE_ROLE_DURATION_S;
		a.external_id = s->external_id;
		r = ram_assume_role(s->sts, &a, sts_done, NULL, s, &s->call);
	} else {
		s->in_flight = false;
		return;
	}
	if (r != 0) {
		s->call = NULL;
		fetch_failed(s, ramkey_strerror(r));
	}
}

/* ---- the ram_credential_fn ---- */

int source_credential(void *arg, struct ram_credential *out, char *why,
    size_t whylen)
{
	struct source *s = arg;

	memset(out, 0, sizeof(*out));
	if (!usable_at(s, evloop_now())) {
		if (s->key_id != NULL && s->why[0] == '\0')
			expiry_check(s);
		why_set(why, whylen, "%s", s->why[0] ? s->why :
		    "no credential yet");
		kick(s);
		return RAMKEY_ERR_UNAVAILABLE;
	}
	out->key_id = s->key_id;
	out->secret = s->secret;
	out->secret_len = s->secret_len;
	out->token = s->token;
	return 0;
}

/* ---- life ---- */

/* RoleSessionName: 2-64 of A-Za-z0-9.@-_ */
static char *default_session_name(void)
{
	char host[256], *out;
	size_t i, n;

	if (ramkey_short_hostname(host, sizeof(host)) != 0)
		snprintf(host, sizeof(host), "host");
	if (asprintf(&out, "ramkey-agent@%s", host) < 0)
		return NULL;
	n = strlen(out);
	if (n > SESSION_NAME_MAX)
		out[n = SESSION_NAME_MAX] = '\0';
	for (i = 0; i < n; i++)
		if (!((out[i] >= 'a' && out[i] <= 'z') ||
		    (out[i] >= 'A' && out[i] <= 'Z') ||
		    (out[i] >= '0' && out[i] <= '9') || out[i] == '.' ||
		    out[i] == '@' || out[i] == '-' || out[i] == '_'))
			out[i] = '-';
	return out;
}

int source_new(struct evloop *loop, const struct source_spec *spec,
    const struct ram_client_config *net, struct source **ret)
{
	struct source *s = NULL;
	char desc[SOURCE_WHY_MAX];
	int r = RAMKEY_ERR_NOMEM;

	*ret = NULL;
	if (loop == NULL || spec == NULL)
		return RAMKEY_ERR_INVALID;
	if (sodium_init() < 0)
		return RAMKEY_ERR_CRYPTO;
	if ((s = calloc(1, sizeof(*s))) == NULL)
		goto out;
	s->loop = loop;
	s->type = spec->type;
	ev_timer_init(&s->timer, fetch_start, s);
	ev_timer_init(&s->expiry_timer, expiry_check, s);
	source_spec_describe(spec, desc, sizeof(desc));
	if ((s->origin = strdup(spec->origin ? spec->origin : "file")) ==
	    NULL || (s->profile_type = strdup(spec->profile_type ?
	    spec->profile_type : "access_key")) == NULL ||
	    (s->desc = strdup(desc)) == NULL)
		goto out;
	switch (spec->type) {
	case SOURCE_STATIC:
		r = RAMKEY_ERR_INVALID;
		if (spec->key_id == NULL || spec->secret == NULL)
			goto out;
		r = RAMKEY_ERR_NOMEM;
		if (cred_set(s, spec->key_id, spec->secret,
		    strlen(spec->secret), spec->token, spec->token != NULL ?
		    strlen(spec->token) : 0) != 0)
			goto out;
		if (spec->token != NULL) {
			int64_t left = spec->token_expires - ramkey_wall_now();

			s->expiration = spec->token_expires;
			if (spec->token_expires > 0)
				s->expires_mono = evloop_now() + (left > 0 ?
				    (uint64_t)left * 1000 : 0) + 1;
		}
		s->started = true;
		break;
	case SOURCE_IMDS: {
		struct imds_config ic = {
			spec->metadata_url, spec->role_name, spec->imds_v1,
		};

		s->renewable = true;
		s->role_configured = spec->role_name != NULL;
		if (spec->role_name != NULL &&
		    (s->role = strdup(spec->role_name)) == NULL)
			goto out;
		if ((r = imds_new(loop, &ic, &s->imds)) != 0)
			goto out;
		why_set(s->why, sizeof(s->why), "waiting for the first answer "
		    "from %s", s->desc);
		break;
	}
	case SOURCE_ASSUME_ROLE: {
		struct ram_client_config rc;

		s->renewable = true;
		r = RAMKEY_ERR_INVALID;
		if (spec->role_arn == NULL || spec->key_id == NULL ||
		    spec->secret == NULL || spec->sts_endpoint == NULL)
			goto out;
		r = RAMKEY_ERR_NOMEM;
		if ((s->role = strdup(spec->role_arn)) == NULL ||
		    (s->role_arn = strdup(spec->role_arn)) == NULL ||
		    (spec->external_id != NULL && (s->external_id =
		    strdup(spec->external_id)) == NULL))
			goto out;
		s->session_name = spec->session_name != NULL ?
		    strdup(spec->session_name) : default_session_name();
		if (s->session_name == NULL)
			goto out;
		memset(&rc, 0, sizeof(rc));
		if (net != NULL)
			rc = *net;
		rc.endpoint = spec->sts_endpoint;
		rc.api_version = "2015-04-01";
		rc.create_timeout_ms = rc.update_timeout_ms =
		    rc.delete_timeout_ms = rc.read_timeout_ms =
		    SOURCE_STS_TIMEOUT_MS;
		if ((r = ram_client_new(loop, &rc, &s->sts)) != 0 ||
		    (r = ram_client_set_credentials(s->sts, spec->key_id,
		    spec->secret)) != 0)
			goto out;
		why_set(s->why, sizeof(s->why), "waiting for the first answer "
		    "from %s", s->desc);
		break;
	}
	default:
		r = RAMKEY_ERR_INVALID;
		goto out;
	}
	*ret = s;
	s = NULL;
	r = 0;
out:
	source_free(s);
	return r;
}

int source_start(struct source *s)
{
	if (s == NULL)
		return RAMKEY_ERR_INVALID;
	if (s->type == SOURCE_STATIC) {
		char masked[RAMKEY_MASKED_MAX], t[32];

		ramkey_mask_key_id(s->key_id, masked);
		fmt_time(s->expiration, t);
		if (s->token != NULL)
			log_info("agent credential: %s from %s, temporary, "
			    "expires %s, cannot be renewed", masked, s->desc,
			    t);
		else
			log_info("agent credential: %s from %s, static (does "
			    "not expire)", masked, s->desc);
		arm_expiry(s);
		return 0;
	}
	s->started = true;
	return evloop_timer_arm(s->loop, &s->timer, evloop_now());
}

void source_free(struct source *s)
{
	if (s == NULL)
		return;
	evloop_timer_cancel(s->loop, &s->timer);
	evloop_timer_cancel(s->loop, &s->expiry_timer);
	if (s->call != NULL)
		ram_call_cancel(s->call);
	ram_client_free(s->sts);
	imds_free(s->imds);
	cred_clear(s);
	free(s->origin);
	free(s->profile_type);
	free(s->desc);
	free(s->role);
	free(s->role_arn);
	free(s->session_name);
	free(s->external_id);
	free(s);
}

void source_get_status(const struct source *s, struct source_status *st)
{
	memset(st, 0, sizeof(*st));
	st->origin = s->origin;
	st->type = s->profile_type;
	st->temporary = s->token != NULL || s->type != SOURCE_STATIC;
	st->renewable = s->renewable;
	st->usable = usable_at(s, evloop_now());
	st->expires = st->temporary ? s->expiration : 0;
	if (s->key_id != NULL)
		ramkey_mask_key_id(s->key_id, st->key_id);
	st->role = s->role;
	if (!st->usable)
		why_set(st->why, sizeof(st->why), "%s", s->why[0] ? s->why :
		    "no credential yet");
	else
		why_set(st->why, sizeof(st->why), "%s", s->last_fail);
}

int source_update(struct source *s, const struct source_spec *spec)
{
	if (s == NULL || spec == NULL)
		return RAMKEY_ERR_INVALID;
	if (spec->type != s->type ||
	    strcmp(spec->origin ? spec->origin : "file", s->origin) != 0)
		return RAMKEY_ERR_CONFIG;
	switch (s->type) {
	case SOURCE_STATIC:
		if (spec->token != NULL || s->token != NULL)
			return RAMKEY_ERR_CONFIG;
		return cred_set(s, spec->key_id, spec->secret,
		    strlen(spec->secret), NULL, 0);
	case SOURCE_ASSUME_ROLE:
		if (strcmp(spec->role_arn, s->role_arn) != 0)
			return RAMKEY_ERR_CONFIG;
		return ram_client_set_credentials(s->sts, spec->key_id,
		    spec->secret);
	case SOURCE_IMDS:
	default:
		if ((spec->role_name == NULL) != !s->role_configured ||
		    (spec->role_name != NULL &&
		    strcmp(spec->role_name, s->role) != 0))
			return RAMKEY_ERR_CONFIG;
		return 0;
	}
}
