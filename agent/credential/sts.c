/* The sts kind (sts.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "clock.h"
#include "cloud_error.h"
#include "evloop.h"
#include "log.h"
#include "ram_client.h"
#include "ramkey_err.h"
#include "sts.h"
#include "template.h"
#include "util.h"

#define WORD "role"
#define STS_MIN_DURATION 900
#define SESSION_NAME_MAX 64
#define SESSION_HASH_LEN 8

struct sts {
	struct ram_client *sts;
	struct kind_port port;
	char *session_name;
	uint64_t duration_s;
	uint64_t renew_before_s;
	char *policy;
	char *external_id;
	char host[256];
	struct kind_op *ops;
};

enum op_type { OP_OBTAIN, OP_END };

struct kind_op {
	struct sts *k;
	struct kind_op *prev, *next;
	enum op_type type;
	struct ram_call *call;
	struct ev_timer timer;
	void *arg;
	kind_obtain_fn obtain;
	kind_progress_fn progress;
	kind_end_fn end;
	char role[RAM_ARN_MAX + 1];
};

/* ---- session names ---- */

static bool name_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	    (c >= '0' && c <= '9') || c == '.' || c == '@' || c == '-' ||
	    c == '_';
}

int sts_session_name(const char *tmpl, const char *user, unsigned long uid,
    const char *host, char out[65])
{
	struct ramkey_template_vars vars;
	unsigned char hash[4];
	char *raw = NULL, hex[SESSION_HASH_LEN + 1];
	size_t len, i, keep;
	int r;

	out[0] = '\0';
	memset(&vars, 0, sizeof(vars));
	vars.user = user;
	vars.uid = (uid_t)uid;
	vars.home = "";
	vars.host = host;
	if ((r = ramkey_template_expand(tmpl, &vars, &raw, NULL)) != 0)
		return r;
	len = strlen(raw);
	for (i = 0; i < len; i++)
		if (!name_char(raw[i]))
			raw[i] = '-';
	if (len <= SESSION_NAME_MAX) {
		/* STS wants at least two characters. */
		snprintf(out, 65, "%s%s", raw, len == 0 ? "--" : len == 1 ?
		    "-" : "");
		free(raw);
		return 0;
	}
	/* Too long: the end goes first, which is the host part of "user@host"
	 * (the user part stays whole when it fits), and a hash of the whole
	 * name keeps two long names apart. */
	crypto_generichash(hash, sizeof(hash), (const unsigned char *)raw, len,
	    NULL, 0);
	sodium_bin2hex(hex, sizeof(hex), hash, sizeof(hash));
	keep = SESSION_NAME_MAX - SESSION_HASH_LEN - 1;
	snprintf(out, 65, "%.*s-%s", (int)keep, raw, hex);
	free(raw);
	return 0;
}

/* ---- operations ---- */

static struct kind_op *op_new(struct sts *k, enum op_type type, void *arg)
{
	struct kind_op *op = calloc(1, sizeof(*op));

	if (op == NULL)
		return NULL;
	op->k = k;
	op->type = type;
	op->arg = arg;
	op->next = k->ops;
	if (k->ops != NULL)
		k->ops->prev = op;
	k->ops = op;
	return op;
}

static void op_free(struct kind_op *op)
{
	struct sts *k;

	if (op == NULL)
		return;
	k = op->k;
	if (op->prev != NULL)
		op->prev->next = op->next;
	else if (k->ops == op)
		k->ops = op->next;
	if (op->next != NULL)
		op->next->prev = op->prev;
	if (op->call != NULL)
		ram_call_cancel(op->call);
	if (ev_timer_armed(&op->timer))
		evloop_timer_cancel(ram_client_loop(k->sts), &op->timer);
	free(op);
}

static void sts_cancel(void *kind, struct kind_op *op)
{
	(void)kind;
	op_free(op);
}

/* A try failed; the client tries again within create_timeout. */
static void assume_retry(void *arg, const struct ram_error *err)
{
	struct kind_op *op = arg;
	struct kind_error ke;

	cloud_error_to_kind(RAMKEY_ERR_RAM, err, "AssumeRole", WORD, op->role,
	    &ke);
	if (op->progress != NULL)
		op->progress(op->arg, &ke);
}

static void assumed(void *arg, int rc, const struct ram_result *res,
    const struct ram_error *err)
{
	struct kind_op *op = arg;
	struct credential cred;
	struct kind_error ke;
	char date[32];
	int64_t now = clock_wall_ms() / 1000, expiration;

	op->call = NULL;
	if (rc != 0) {
		cloud_error_to_kind(rc, err, "AssumeRole", WORD, op->role, &ke);
		/* Nothing is left at RAM either way. */
		ke.outcome_unknown = false;
		op->obtain(op->arg, ke.rc, NULL, NULL, &ke);
		op_free(op);
		return;
	}
	/* The lifetime is STS's (Expiration minus its Date), counted on our
	 * clock: a host clock that is off does not make the credential
	 * outlive its real expiry here. */
	expiration = res->sts.expiration_time;
	if (res->server_date > 0)
		expiration = now +
		    (res->sts.expiration_time - res->server_date);
	ramkey_format_time(now, date);
	memset(&cred, 0, sizeof(cred));
	cred.id = res->sts.id;
	cred.secret = res->sts.secret;
	cred.secret_len = res->sts.secret_len;
	cred.token = res->sts.token;
	cred.create_date = date;
	cred.create_time = now;
	cred.expiration = expiration;
	cred.status = "Active";
	op->obtain(op->arg, 0, &cred, NULL, NULL);
	op_free(op);
}

static int sts_obtain(void *kind, const struct kind_obtain *req,
    kind_obtain_fn fn, void *arg, struct kind_op **ret)
{
	struct sts *k = kind;
	struct ram_assume_role a;
	struct kind_op *op;
	char session[65];
	int64_t left_s;
	uint64_t duration;
	int r;

	*ret = NULL;
	if ((r = sts_session_name(k->session_name, req->user, req->uid,
	    k->host, session)) != 0)
		return r;
	/* No token outlives the lease by more than STS's minimum. */
	left_s = (req->lease_end_ms - clock_wall_ms() + 999) / 1000;
	duration = k->duration_s;
	if (left_s < (int64_t)duration)
		duration = left_s > STS_MIN_DURATION ? (uint64_t)left_s :
		    STS_MIN_DURATION;
	if ((op = op_new(k, OP_OBTAIN, arg)) == NULL)
		return RAMKEY_ERR_NOMEM;
	op->obtain = fn;
	op->progress = req->progress;
	snprintf(op->role, sizeof(op->role), "%s", req->principal);
	memset(&a, 0, sizeof(a));
	a.role_arn = req->principal;
	a.session_name = session;
	a.duration_s = (uint32_t)duration;
	a.policy = k->policy;
	a.external_id = k->external_id;
	if ((r = ram_assume_role(k->sts, &a, assumed, assume_retry, op,
	    &op->call)) != 0) {
		op->call = NULL;
		op_free(op);
		return r;
	}
	*ret = op;
	return 0;
}

/* Nothing to do at RAM: the token stays valid until it expires. */
static void end_step(void *arg)
{
	struct kind_op *op = arg;

	op->end(op->arg, 0, KIND_END_RETAINED, "expires", NULL);
	op_free(op);
}

static int sts_end(void *kind, const struct kind_lease *kl, bool purge,
    kind_save_fn save, kind_end_fn fn, void *arg, struct kind_op **ret)
{
	struct sts *k = kind;
	struct kind_op *op;

	(void)kl;
	(void)purge;
	(void)save;
	*ret = NULL;
	if ((op = op_new(k, OP_END, arg)) == NULL)
		return RAMKEY_ERR_NOMEM;
	op->end = fn;
	ev_timer_init(&op->timer, end_step, op);
	(void)evloop_timer_arm(ram_client_loop(k->sts), &op->timer,
	    evloop_now());
	*ret = op;
	return 0;
}

static enum kind_fresh sts_freshness(void *kind, const struct kind_lease *kl,
    int64_t now_ms)
{
	struct sts *k = kind;
	int64_t exp_ms = kl->expiration * 1000, left = exp_ms - now_ms;
	int64_t margin = (int64_t)k->renew_before_s * 1000, jitter;
	unsigned char h[4];

	if (!kl->has_secret || left <= 0)
		return KIND_STALE_RENEW;
	/* A credential that outlives the lease is the lease's last one: it
	 * is not renewed again and again as the lease ends. */
	if (exp_ms >= kl->lease_end_ms)
		return KIND_FRESH;
	/* Renewals of many leases spread out a little (up to a tenth of the
	 * margin earlier, fixed per credential). */
	crypto_generichash(h, sizeof(h), (const unsigned char *)kl->cred_id,
	    strlen(kl->cred_id), NULL, 0);
	jitter = (int64_t)(((uint32_t)h[0] << 8 | h[1]) % 1000) * margin /
	    10000;
	if (left >= margin + jitter)
		return KIND_FRESH;
	if (kl->renewal_failed && left >= margin / 4)
		return KIND_FRESH_RENEW;
	return KIND_STALE_RENEW;
}

static int64_t sts_retain_until(void *kind, const struct kind_lease *kl)
{
	(void)kind;
	/* Listed as "valid at RAM until" its expiry, then forgotten. */
	return kl->expiration > 0 ? kl->expiration * 1000 : 1;
}

/* When freshness() stops saying KIND_FRESH. */
static int64_t sts_refresh_at(void *kind, const struct kind_lease *kl)
{
	struct sts *k = kind;
	int64_t exp_ms = kl->expiration * 1000;

	if (exp_ms >= kl->lease_end_ms)
		return kl->lease_end_ms;
	return exp_ms - (int64_t)k->renew_before_s * 1000;
}

static void sts_attach(void *kind, const struct kind_port *port)
{
	struct sts *k = kind;

	k->port = *port;
}

static void sts_free(void *kind)
{
	struct sts *k = kind;
	struct kind_op *op;

	if (k == NULL)
		return;
	/* Off the list here: the loop does not depend on op->k. */
	while ((op = k->ops) != NULL) {
		k->ops = op->next;
		if (k->ops != NULL)
			k->ops->prev = NULL;
		op->next = NULL;
		op_free(op);
	}
	free(k->session_name);
	free(k->policy);
	free(k->external_id);
	free(k);
}

static const struct kind_ops sts_ops = {
	.name = STS_KIND,
	.capacity = 0,
	.renews_in_place = true,
	.attach = sts_attach,
	.obtain = sts_obtain,
	.end = sts_end,
	.freshness = sts_freshness,
	.retain_until = sts_retain_until,
	.refresh_at = sts_refresh_at,
	.cancel = sts_cancel,
	.free = sts_free,
};

static int set_cfg(struct sts *k, const struct sts_config *cfg)
{
	char *name = strdup(cfg->session_name != NULL ? cfg->session_name :
	    "%u@%H");
	char *policy = cfg->policy != NULL ? strdup(cfg->policy) : NULL;
	char *ext = cfg->external_id != NULL ? strdup(cfg->external_id) : NULL;

	if (name == NULL || (cfg->policy != NULL && policy == NULL) ||
	    (cfg->external_id != NULL && ext == NULL)) {
		free(name);
		free(policy);
		free(ext);
		return RAMKEY_ERR_NOMEM;
	}
	free(k->session_name);
	free(k->policy);
	free(k->external_id);
	k->session_name = name;
	k->policy = policy;
	k->external_id = ext;
	k->duration_s = cfg->duration_s;
	k->renew_before_s = cfg->renew_before_s;
	if (ramkey_short_hostname(k->host, sizeof(k->host)) != 0)
		snprintf(k->host, sizeof(k->host), "localhost");
	return 0;
}

int sts_kind_new(struct ram_client *sts, const struct sts_config *cfg,
    struct credential_kind *out)
{
	struct sts *k;

	memset(out, 0, sizeof(*out));
	if (sts == NULL || cfg == NULL)
		return RAMKEY_ERR_INVALID;
	if ((k = calloc(1, sizeof(*k))) == NULL)
		return RAMKEY_ERR_NOMEM;
	k->sts = sts;
	if (set_cfg(k, cfg) != 0) {
		free(k);
		return RAMKEY_ERR_NOMEM;
	}
	out->ops = &sts_ops;
	out->state = k;
	return 0;
}

int sts_kind_reconfigure(struct credential_kind *kind,
    const struct sts_config *cfg)
{
	return set_cfg(kind->state, cfg);
}
