/*
 * Authorisation. The caller's uid comes from the kernel (SO_PEERCRED);
 * trusted_uids may act for any user, anyone else only for their own
 * account. Keys go only to local users at or above min_uid, never to the
 * overflow account, and, when set, only to members of allowed_group.
 *
 * User and group lookups can block (NSS may be a slow directory
 * service): they run on a worker thread, queued per caller (untrusted
 * callers) or per target user (trusted callers), with a deadline, so one
 * user's slow lookups delay nobody else. The decisions are taken back on
 * the loop.
 */
#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audit.h"
#include "log.h"
#include "lookup_cache.h"
#include "ramkey_err.h"
#include "server_int.h"
#include "strmap.h"
#include "template.h"
#include "util.h"

/* How long a lookup may take when the requester gave no timeout. */
#define LOOKUP_DEADLINE_MS 10000
#define PW_BUF_MAX (1 << 20)
/* At most one deny line per this period per untrusted uid. */
#define DENY_AUDIT_MS 5000
/* Requests per second a non-trusted uid may make, and its burst. */
#define REQUEST_RATE 50.0
#define REQUEST_BURST 100.0

/*
 * Deny lines of an untrusted caller: the first, then at most one per
 * period with the count of those left out, so that one user's requests
 * for what it may not have (at the request rate, 50 a second) cannot
 * flood the log. Denials of trusted callers (the PAM module's logins)
 * each get their line.
 */
int deny(struct request *req, int err, const char *target, const char *fmt,
    ...)
{
	char buf[RAMKEY_MESSAGE_TEXT_MAX], extra[RAMKEY_MESSAGE_TEXT_MAX + 48];
	struct audit_who who = { true, req->peer.uid, req->peer.pid,
		req->msg->rhost, req->msg->tty };
	struct uid_stats *u = req->trusted ? NULL :
	    uid_stats_get(req->srv, req->peer.uid);
	uint64_t now = evloop_now();
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (u != NULL && u->deny_audit_ms != 0 &&
	    now - u->deny_audit_ms < DENY_AUDIT_MS) {
		u->deny_suppressed++;
	} else {
		snprintf(extra, sizeof(extra), "op=%s reason=\"%s\"",
		    ramkey_op_name(req->msg->op), buf);
		if (u != NULL && u->deny_suppressed > 0)
			snprintf(extra + strlen(extra), sizeof(extra) -
			    strlen(extra), " suppressed=%lu",
			    (unsigned long)u->deny_suppressed);
		audit_line("deny", target, "ram_user", NULL, NULL, &who, extra);
		if (u != NULL) {
			u->deny_audit_ms = now;
			u->deny_suppressed = 0;
		}
	}
	request_fail(req, err, NULL, "%s", buf);
	return err;
}

/* ---- on the worker ---- */

static int lookup_pw(bool by_uid, uid_t uid, const char *name,
    struct passwd *pw, char **bufp)
{
	struct passwd *res = NULL;
	size_t len = 4096;
	char *buf = NULL;
	int r;

	for (;;) {
		char *nb = realloc(buf, len);

		if (nb == NULL) {
			free(buf);
			return RAMKEY_ERR_NOMEM;
		}
		buf = nb;
		r = by_uid ? getpwuid_r(uid, pw, buf, len, &res) :
		    getpwnam_r(name, pw, buf, len, &res);
		if (r != ERANGE || len >= PW_BUF_MAX)
			break;
		len *= 2;
	}
	if (r != 0 || res == NULL) {
		free(buf);
		return RAMKEY_ERR_NO_USER;
	}
	*bufp = buf;
	return 0;
}

static bool member_of(const char *user, gid_t gid, gid_t want)
{
	gid_t groups[256];
	int n = (int)(sizeof(groups) / sizeof(groups[0]));

	if (gid == want)
		return true;
	if (getgrouplist(user, gid, groups, &n) == -1)
		return false; /* more than 256 groups: fail closed */
	for (int i = 0; i < n; i++)
		if (groups[i] == want)
			return true;
	return false;
}

/* Is user a member of the group called name? */
static bool member_of_named(const char *user, gid_t gid, const char *name)
{
	struct group gr, *res = NULL;
	char buf[8192];

	if (getgrnam_r(name, &gr, buf, sizeof(buf), &res) != 0 || res == NULL)
		return false;
	return member_of(user, gid, res->gr_gid);
}

/* acs:ram::<account>:role/<name>, name 1-64 of A-Za-z0-9.- */
static bool role_arn_valid(const char *arn)
{
	const char *p = arn, *name;
	size_t n;

	if (strncmp(p, "acs:ram::", 9) != 0)
		return false;
	p += 9;
	if ((n = strspn(p, "0123456789")) == 0)
		return false;
	p += n;
	if (strncmp(p, ":role/", 6) != 0)
		return false;
	name = p + 6;
	n = strlen(name);
	return n >= 1 && n <= 64 && strspn(name, "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
	    "abcdefghijklmnopqrstuvwxyz0123456789.-") == n;
}

/* STS: the first role_map rule that matches, else role_arn. */
static void resolve_role(struct lookup *lk,
    const struct ramkey_template_vars *vars)
{
	const struct server_roles *r = lk->roles;
	const char *tmpl = NULL, *why = NULL;
	size_t i;

	for (i = 0; i < r->nrules && tmpl == NULL; i++)
		if (r->rules[i].group ? member_of_named(lk->user, lk->gid,
		    r->rules[i].name) : strcmp(r->rules[i].name, lk->user) == 0)
			tmpl = r->rules[i].arn;
	if (tmpl == NULL)
		tmpl = r->role_arn;
	if (tmpl == NULL) {
		lk->no_role = true;
		return;
	}
	if (ramkey_template_expand(tmpl, vars, &lk->principal, &why) != 0 ||
	    !role_arn_valid(lk->principal)) {
		free(lk->principal);
		lk->principal = NULL;
		snprintf(lk->why, sizeof(lk->why), "%s gives %s", tmpl,
		    why != NULL ? why : "no valid role ARN "
		    "(acs:ram::<account>:role/<1-64 of A-Za-z0-9.->)");
	}
}

static void lookup_run(struct worker_task *t)
{
	struct lookup *lk = (struct lookup *)t;
	struct ramkey_template_vars vars;
	struct passwd pw;
	const char *target, *why = NULL;
	char *buf = NULL;

	if (lk->want_own &&
	    lookup_pw(true, lk->peer_uid, NULL, &pw, &buf) == 0) {
		lk->own = strdup(pw.pw_name);
		free(buf);
		buf = NULL;
	}
	target = lk->target != NULL ? lk->target : lk->own;
	if (target == NULL) {
		lk->rc = RAMKEY_ERR_NO_USER;
		return;
	}
	if ((lk->rc = lookup_pw(false, 0, target, &pw, &buf)) != 0)
		return;
	lk->uid = pw.pw_uid;
	lk->gid = pw.pw_gid;
	if ((lk->user = strdup(pw.pw_name)) == NULL ||
	    (lk->home = strdup(pw.pw_dir)) == NULL) {
		lk->rc = RAMKEY_ERR_NOMEM;
		goto out;
	}
	if (lk->for_keys && lk->check_group)
		lk->in_group = member_of(pw.pw_name, pw.pw_gid,
		    lk->allowed_gid);
	memset(&vars, 0, sizeof(vars));
	vars.user = lk->user;
	vars.uid = lk->uid;
	vars.home = lk->home;
	if (lk->for_keys && lk->roles != NULL) {
		resolve_role(lk, &vars);
	} else if (lk->for_keys && lk->ram_user_tmpl != NULL) {
		if (ramkey_template_expand(lk->ram_user_tmpl, &vars,
		    &lk->principal, &why) != 0 ||
		    !ramkey_valid_ram_user(lk->principal)) {
			free(lk->principal);
			lk->principal = NULL;
			snprintf(lk->why, sizeof(lk->why), "%s", why != NULL ?
			    why : "RAM allows 1-64 of A-Za-z0-9._-");
		}
	}
out:
	free(buf);
}

/* ---- on the loop ---- */

static void lookup_release(struct worker_task *t)
{
	struct lookup *lk = (struct lookup *)t;

	free(lk->target);
	free(lk->ram_user_tmpl);
	free(lk->own);
	free(lk->user);
	free(lk->home);
	free(lk->principal);
	server_roles_release(lk->roles);
	free(lk);
}

static void decide(struct request *req, struct lookup *lk, bool for_keys,
    authz_fn fn)
{
	struct server *s = req->srv;
	const char *target = lk->target != NULL ? lk->target : lk->own;

	if (lk->own != NULL && (req->own = strdup(lk->own)) == NULL) {
		request_fail(req, RAMKEY_ERR_NOMEM, NULL, "out of memory");
		return;
	}
	if (target == NULL) {
		deny(req, RAMKEY_ERR_NO_USER, NULL, "uid %lu has no account on "
		    "this host", (unsigned long)req->peer.uid);
		return;
	}
	if (!req->trusted && (req->own == NULL ||
	    strcmp(target, req->own) != 0)) {
		deny(req, RAMKEY_ERR_DENIED, target,
		    "uid %lu (%s) may only act for itself, not for %s",
		    (unsigned long)req->peer.uid,
		    req->own ? req->own : "no account", target);
		return;
	}
	if (lk->rc == RAMKEY_ERR_NOMEM) {
		request_fail(req, RAMKEY_ERR_NOMEM, NULL, "out of memory");
		return;
	}
	if (lk->rc != 0) {
		deny(req, RAMKEY_ERR_NO_USER, target,
		    "no local user %s on this host", target);
		return;
	}
	req->user = lk->user;
	req->home = lk->home;
	lk->user = lk->home = NULL;
	req->uid = lk->uid;
	req->gid = lk->gid;
	if (!for_keys) {
		fn(req);
		return;
	}
	if (lk->uid == 65534 || lk->uid == (uid_t)-1) {
		deny(req, RAMKEY_ERR_EXCLUDED, target, "%s (uid %lu) is the "
		    "nobody/overflow account: it never gets keys", target,
		    (unsigned long)lk->uid);
		return;
	}
	if (lk->uid < s->cfg.min_uid) {
		deny(req, RAMKEY_ERR_EXCLUDED, target, "%s (uid %lu) is below "
		    "min_uid %lu: system accounts never get keys", target,
		    (unsigned long)lk->uid, (unsigned long)s->cfg.min_uid);
		return;
	}
	if (lk->check_group && !lk->in_group) {
		deny(req, RAMKEY_ERR_EXCLUDED, target, "%s is not in "
		    "allowed_group %s", target, s->cfg.allowed_group);
		return;
	}
	if (lk->no_role) {
		deny(req, RAMKEY_ERR_EXCLUDED, target, "%s has no role: no "
		    "role_map rule matches and role_arn is not set", target);
		return;
	}
	if (lk->principal == NULL && lk->roles != NULL) {
		log_err("role for %s: %s", target, lk->why);
		request_fail(req, RAMKEY_ERR_CONFIG, NULL, "the agent's "
		    "role_arn or role_map gives no valid role for %s; ask the "
		    "administrator to fix them", target);
		return;
	}
	if (lk->principal == NULL) {
		log_err("ram_user template %s gives an invalid RAM user name "
		    "for %s (%s)", s->cfg.ram_user, target, lk->why);
		request_fail(req, RAMKEY_ERR_CONFIG, NULL, "the agent's "
		    "ram_user template gives no valid RAM user name for %s; "
		    "ask the administrator to fix ram_user", target);
		return;
	}
	req->principal = lk->principal;
	lk->principal = NULL;
	fn(req);
}

static void lookup_done(struct worker_task *t, int rc)
{
	struct lookup *lk = (struct lookup *)t;
	struct request *req = lk->req;

	if (req == NULL)
		return;
	req->lookup = NULL;
	req->waiting = W_NONE;
	if (rc == RAMKEY_ERR_TIMEOUT) {
		/* One line per period per uid: a requester's timeout_ms
		 * decides when this happens. */
		log_bad_input(req->srv, req->peer.uid, req->peer.pid,
		    "looking up %s took too long; is the directory service "
		    "slow?", lk->target != NULL ? lk->target : "the caller");
		request_fail(req, RAMKEY_ERR_UNAVAILABLE, NULL, "looking up "
		    "the user in the directory service took too long; try "
		    "again");
		return;
	}
	lookup_cache_put(req->srv->lookups, lk, evloop_now());
	decide(req, lk, lk->for_keys, lk->fn);
}

int authz_start(struct request *req, bool for_keys, authz_fn fn)
{
	struct server *s = req->srv;
	struct lookup *lk;
	char key[48];
	uint64_t deadline;
	int r;

	if ((lk = calloc(1, sizeof(*lk))) == NULL)
		return RAMKEY_ERR_NOMEM;
	lk->req = req;
	lk->fn = fn;
	lk->peer_uid = req->peer.uid;
	lk->want_own = !req->trusted || req->msg->user == NULL;
	lk->for_keys = for_keys;
	lk->check_group = s->cfg.allowed_group != NULL;
	lk->allowed_gid = s->cfg.allowed_gid;
	if (for_keys && s->cfg.sts) {
		lk->roles = s->cfg.roles;
		lk->roles->refs++;
	}
	if ((req->msg->user != NULL &&
	    (lk->target = strdup(req->msg->user)) == NULL) ||
	    (for_keys && !s->cfg.sts &&
	    (lk->ram_user_tmpl = strdup(s->cfg.ram_user)) == NULL)) {
		lookup_release(&lk->task);
		return RAMKEY_ERR_NOMEM;
	}
	if (lookup_cache_get(s->lookups, lk, evloop_now())) {
		decide(req, lk, for_keys, fn);
		lookup_release(&lk->task);
		return 0;
	}
	/* One user's slow lookups queue behind each other, not before
	 * anyone else's. */
	if (req->trusted && lk->target != NULL)
		snprintf(key, sizeof(key), "user:%.40s", lk->target);
	else
		snprintf(key, sizeof(key), "uid:%lu",
		    (unsigned long)req->peer.uid);
	deadline = evloop_now() + (req->msg->has_timeout &&
	    req->msg->timeout_ms < LOOKUP_DEADLINE_MS ? req->msg->timeout_ms :
	    LOOKUP_DEADLINE_MS);
	req->waiting = W_LOOKUP;
	req->lookup = lk;
	if ((r = worker_submit(s->workers, &lk->task, key, deadline,
	    lookup_run, lookup_done, lookup_release)) != 0) {
		req->waiting = W_NONE;
		req->lookup = NULL;
		lookup_release(&lk->task);
		return r;
	}
	return 0;
}

void authz_cancel(struct request *req)
{
	struct lookup *lk = req->lookup;

	if (lk == NULL)
		return;
	req->lookup = NULL;
	lk->req = NULL;
	worker_cancel(&lk->task);
}

/* ---- rates ---- */

static bool bucket_take(double *tokens, uint64_t *last, double rate,
    double burst, uint64_t now)
{
	if (*last == 0)
		*tokens = burst;
	else
		*tokens += (double)(now - *last) / 1000.0 * rate;
	if (*tokens > burst)
		*tokens = burst;
	*last = now;
	if (*tokens < 1.0)
		return false;
	*tokens -= 1.0;
	return true;
}

bool request_rate_ok(struct request *req)
{
	struct server *s = req->srv;
	struct uid_stats *u;

	if (req->trusted || (u = uid_stats_get(s, req->peer.uid)) == NULL)
		return true;
	if (bucket_take(&u->tokens, &u->last_refill_ms, REQUEST_RATE,
	    REQUEST_BURST, evloop_now()))
		return true;
	audit_flood_deny(u, NULL, &req->peer, ramkey_op_name(req->msg->op),
	    "request rate");
	return false;
}

bool change_rate_ok(struct request *req, uint64_t *retry_s)
{
	struct server *s = req->srv;
	struct uid_stats *u;
	double rate;

	*retry_s = 0;
	if (req->trusted || s->cfg.change_interval_s == 0 ||
	    (u = uid_stats_get(s, req->peer.uid)) == NULL)
		return true;
	rate = 1.0 / (double)s->cfg.change_interval_s;
	if (bucket_take(&u->change_tokens, &u->change_refill_ms, rate,
	    (double)s->cfg.change_burst, evloop_now()))
		return true;
	*retry_s = (uint64_t)((1.0 - u->change_tokens) / rate) + 1;
	return false;
}
