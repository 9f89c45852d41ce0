/*
 * pam_ramkey: at session open, get the user's AccessKey from ramkey-agent
 * (sealed to a one-time key) and write it to the secret_file as the user;
 * at session close, tell the agent, and remove the file when it says this
 * was the user's last session on the host. The requester sequence itself
 * (key pair, call, checks, render, write) is libramkey-proto's, shared
 * with the client (obtain.h, deliver.h); this file decides what to ask
 * for and what a failure does to the session.
 *
 * Rules kept here: the agent is checked to be the real one before
 * anything is sent; one connection per call, close-on-exec, closed before
 * returning; every wait has a deadline; files are touched only with the
 * user's filesystem identity; no global state, no exit(), no signal
 * changes, no child processes; only pam_sm_* is exported. A login pays
 * for everything here in a fresh process, so slow local work (the NSS
 * group lookup) is done while the agent works on the request.
 */
#include <errno.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <unistd.h>

#include <security/pam_ext.h>
#include <security/pam_modules.h>
#include <security/pam_modutil.h>

#include "default_path.h"
#include "deliver.h"
#include "frame.h"
#include "fsid.h"
#include "message.h"
#include "obtain.h"
#include "pgp_key_file.h"
#include "ramkey_err.h"
#include "requester.h"
#include "secret_file.h"
#include "secret_format.h"
#include "template.h"
#include "util.h"

#define DATA_NAME "pam_ramkey_session"
#define DEFAULT_TIMEOUT_S 10
#define TIMEOUT_MAX_S 600

#define PAM_EXPORT __attribute__((visibility("default")))

enum on_error {
	ON_ERROR_FAIL = 0,
	ON_ERROR_IGNORE,
};

struct options {
	const char *socket;
	const char *secret_file; /* template, NULL = default */
	enum ramkey_format format;
	const char *pgp_key;
	const char *pgp_key_file; /* template */
	const char *allowed_group; /* local pre-check, NULL = none */
	uid_t min_uid;		   /* local pre-check, 0 = none */
	unsigned timeout_s;
	enum on_error on_error;
	bool export_env;
	bool debug;
	bool invalid; /* a known option had a bad value */
};

/* What open_session leaves for close_session (pam_set_data). Never the
 * key itself. */
struct session_data {
	char token[RAMKEY_SESSION_TOKEN_LEN + 1];
	char *path;
};

static void session_data_cleanup(pam_handle_t *pamh, void *data,
    int error_status)
{
	struct session_data *sd = data;

	(void)pamh;
	(void)error_status;
	/* Only memory: files and keys are close_session's business, and
	 * with PAM_DATA_SILENT this runs in a forked child anyway. */
	if (sd == NULL)
		return;
	ramkey_free_secret_str(sd->path);
	ramkey_free_secret(sd, sizeof(*sd));
}

static const char *skip_prefix(const char *arg, const char *prefix)
{
	size_t n = strlen(prefix);

	return strncmp(arg, prefix, n) == 0 ? arg + n : NULL;
}

static void parse_options(pam_handle_t *pamh, int argc, const char **argv,
    struct options *o)
{
	const char *v;
	int i;

	memset(o, 0, sizeof(*o));
	o->socket = RAMKEY_DEFAULT_SOCKET;
	o->format = RAMKEY_FORMAT_JSON;
	o->timeout_s = DEFAULT_TIMEOUT_S;
	o->on_error = ON_ERROR_FAIL;
	for (i = 0; i < argc; i++) {
		const char *a = argv[i], *why = NULL;

		if (strcmp(a, "debug") == 0) {
			o->debug = true;
		} else if (strcmp(a, "export_env") == 0) {
			o->export_env = true;
		} else if ((v = skip_prefix(a, "socket=")) != NULL) {
			if (v[0] != '/' || strlen(v) >= 108) {
				pam_syslog(pamh, LOG_ERR, "socket=%s: give an "
				    "absolute path shorter than 108 bytes", v);
				o->invalid = true;
			}
			o->socket = v;
		} else if ((v = skip_prefix(a, "secret_file=")) != NULL) {
			if (ramkey_template_check(v, 1, &why) != 0) {
				pam_syslog(pamh, LOG_ERR, "secret_file=%s: %s",
				    v, why);
				o->invalid = true;
			}
			o->secret_file = v;
		} else if ((v = skip_prefix(a, "format=")) != NULL) {
			if (ramkey_format_parse(v, &o->format) != 0) {
				pam_syslog(pamh, LOG_ERR,
				    "format=%s: use json, ini, env or cli", v);
				o->invalid = true;
			}
		} else if ((v = skip_prefix(a, "pgp_key=")) != NULL) {
			if (*v == '\0' || strlen(v) > RAMKEY_PGP_KEY_MAX) {
				pam_syslog(pamh, LOG_ERR,
				    "pgp_key= is empty or too long");
				o->invalid = true;
			}
			o->pgp_key = v;
		} else if ((v = skip_prefix(a, "pgp_key_file=")) != NULL) {
			if (ramkey_template_check(v, 1, &why) != 0) {
				pam_syslog(pamh, LOG_ERR, "pgp_key_file=%s: %s",
				    v, why);
				o->invalid = true;
			}
			o->pgp_key_file = v;
		} else if ((v = skip_prefix(a, "timeout=")) != NULL) {
			char *end;
			unsigned long t;

			errno = 0;
			t = strtoul(v, &end, 10);
			if (errno != 0 || *end != '\0' || *v == '\0' ||
			    t == 0 || t > TIMEOUT_MAX_S) {
				pam_syslog(pamh, LOG_ERR, "timeout=%s: give "
				    "whole seconds from 1 to %d", v,
				    TIMEOUT_MAX_S);
				o->invalid = true;
			} else {
				o->timeout_s = (unsigned)t;
			}
		} else if ((v = skip_prefix(a, "min_uid=")) != NULL) {
			char *end;
			unsigned long long u;

			errno = 0;
			u = strtoull(v, &end, 10);
			if (errno != 0 || *end != '\0' || *v < '0' ||
			    *v > '9' || u >= (uid_t)-1) {
				pam_syslog(pamh, LOG_ERR, "min_uid=%s: give a "
				    "uid number", v);
				o->invalid = true;
			} else {
				o->min_uid = (uid_t)u;
			}
		} else if ((v = skip_prefix(a, "allowed_group=")) != NULL) {
			if (!ramkey_valid_user_name(v)) {
				pam_syslog(pamh, LOG_ERR, "allowed_group=%s: "
				    "give a local group name", v);
				o->invalid = true;
			}
			o->allowed_group = v;
		} else if ((v = skip_prefix(a, "on_error=")) != NULL) {
			if (strcmp(v, "fail") == 0) {
				o->on_error = ON_ERROR_FAIL;
			} else if (strcmp(v, "ignore") == 0) {
				o->on_error = ON_ERROR_IGNORE;
			} else {
				/* Fail closed on a bad security option. */
				pam_syslog(pamh, LOG_ERR, "on_error=%s: use "
				    "fail or ignore; failing", v);
				o->on_error = ON_ERROR_FAIL;
				o->invalid = true;
			}
		} else {
			pam_syslog(pamh, LOG_ERR, "unknown option %s; ignored",
			    a);
		}
	}
	if (o->pgp_key != NULL && o->pgp_key_file != NULL) {
		pam_syslog(pamh, LOG_ERR, "give pgp_key= or pgp_key_file=, "
		    "not both");
		o->invalid = true;
	}
	if ((o->pgp_key != NULL || o->pgp_key_file != NULL) &&
	    o->format != RAMKEY_FORMAT_JSON) {
		pam_syslog(pamh, LOG_ERR, "format=%s needs the plaintext "
		    "secret; with a PGP key only format=json is possible",
		    ramkey_format_name(o->format));
		o->invalid = true;
	}
}

static int failed(pam_handle_t *pamh, const struct options *o,
    const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* The one log line for a failure, and the on_error verdict. */
static int failed(pam_handle_t *pamh, const struct options *o,
    const char *fmt, ...)
{
	char buf[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	pam_syslog(pamh, LOG_ERR, "%s%s", buf, o->on_error == ON_ERROR_IGNORE ?
	    " (on_error=ignore: session continues without a key)" : "");
	return o->on_error == ON_ERROR_IGNORE ? PAM_IGNORE : PAM_SESSION_ERR;
}

static void put_env(pam_handle_t *pamh, const char *name, const char *value)
{
	char *s = NULL;

	if (asprintf(&s, "%s=%s", name, value) < 0)
		return;
	if (pam_putenv(pamh, s) != PAM_SUCCESS)
		pam_syslog(pamh, LOG_WARNING, "cannot set %s", name);
	free(s);
}

static const char *pam_item_str(pam_handle_t *pamh, int item)
{
	const void *v = NULL;

	if (pam_get_item(pamh, item, &v) != PAM_SUCCESS || v == NULL)
		return NULL;
	return v;
}

/* Best effort: end a session the agent opened for us. */
static void abort_session(pam_handle_t *pamh, const struct options *o,
    const char *user, const char *token)
{
	struct ramkey_request *req = ramkey_request_new(
	    RAMKEY_OP_CLOSE_SESSION);
	struct ramkey_reply *rep = NULL;
	char why[256];

	if (req == NULL)
		return;
	req->user = strdup(user);
	req->session = strdup(token);
	req->aborted = true; /* the file was not written: forget it */
	if (req->user != NULL && req->session != NULL &&
	    ramkey_agent_call(o->socket, req, ramkey_now_ms() + 2000, &rep,
	    why, sizeof(why)) != 0)
		pam_syslog(pamh, LOG_WARNING, "could not tell the agent to end "
		    "the session (%s); it ends when this process exits", why);
	ramkey_reply_free(rep);
	ramkey_request_free(req);
}

PAM_EXPORT int pam_sm_open_session(pam_handle_t *pamh, int flags, int argc,
    const char **argv)
{
	struct options o;
	struct ramkey_request *req = NULL;
	struct ramkey_obtain *ob = NULL;
	struct ramkey_owner owner;
	struct ramkey_fsid_user writer;
	struct ramkey_template_vars vars;
	struct session_data *sd = NULL;
	const struct passwd *pw;
	const char *user = NULL, *rdir, *twhy = NULL;
	char why[768], masked[RAMKEY_MASKED_MAX], *path = NULL;
	char *pgp_path = NULL, *pgp = NULL;
	bool have_writer = false;
	int ret, r, wr = 0;

	(void)flags;
	memset(&writer, 0, sizeof(writer));
	parse_options(pamh, argc, argv, &o);
	if (pam_get_user(pamh, &user, NULL) != PAM_SUCCESS || user == NULL ||
	    !ramkey_valid_user_name(user))
		return failed(pamh, &o, "cannot determine the user");
	if ((pw = pam_modutil_getpwnam(pamh, user)) == NULL)
		return failed(pamh, &o, "no passwd entry for %s", user);
	if (pw->pw_uid == 0) {
		/* Never in the way of a root login, agent up or not. */
		pam_syslog(pamh, LOG_INFO, "%s is root: no key (the module "
		    "does not apply)", user);
		return PAM_IGNORE;
	}
	if (o.invalid)
		return failed(pamh, &o, "invalid module options (see the "
		    "lines above); fix the PAM configuration");
	/* The agent applies the same policy; deciding it here too keeps
	 * these logins independent of the agent being up. */
	if (pw->pw_uid < o.min_uid) {
		pam_syslog(pamh, LOG_INFO, "%s: uid %lu is below min_uid=%lu "
		    "(the module does not apply)", user,
		    (unsigned long)pw->pw_uid, (unsigned long)o.min_uid);
		return PAM_IGNORE;
	}
	if (o.allowed_group != NULL && pam_modutil_user_in_group_nam_nam(pamh,
	    pw->pw_name, o.allowed_group) != 1) {
		pam_syslog(pamh, LOG_INFO, "%s: not in allowed_group=%s (the "
		    "module does not apply)", user, o.allowed_group);
		return PAM_IGNORE;
	}
	/* XDG_RUNTIME_DIR, if set, must be an absolute directory owned by
	 * the user (as pam_systemd makes it): no fallback when it is not. */
	rdir = pam_getenv(pamh, "XDG_RUNTIME_DIR");
	if (rdir != NULL && rdir[0] == '\0')
		rdir = NULL;
	if (rdir != NULL && ramkey_runtime_dir_check(rdir, pw->pw_uid, NULL,
	    0) != 0)
		return failed(pamh, &o, "XDG_RUNTIME_DIR=%s is not an absolute "
		    "directory owned by %s; check pam_systemd and the stack "
		    "order", rdir, pw->pw_name);
	memset(&vars, 0, sizeof(vars));
	vars.user = pw->pw_name;
	vars.uid = pw->pw_uid;
	vars.home = pw->pw_dir;
	vars.runtime_dir = rdir;
	if (o.secret_file != NULL) {
		if (ramkey_template_expand(o.secret_file, &vars, &path,
		    &twhy) != 0 || path[0] != '/') {
			ret = failed(pamh, &o, "secret_file=%s: %s",
			    o.secret_file, twhy ? twhy :
			    "does not give an absolute path");
			goto out;
		}
	} else if ((r = ramkey_default_secret_file(rdir, pw->pw_dir,
	    &path)) != 0) {
		ret = failed(pamh, &o, r == RAMKEY_ERR_NOMEM ? "out of memory" :
		    "no default secret file for %s: the home directory %s is "
		    "not an absolute path; give secret_file=", user,
		    pw->pw_dir);
		goto out;
	}
	owner.name = pw->pw_name;
	owner.uid = pw->pw_uid;
	owner.gid = pw->pw_gid;
	if (o.pgp_key_file != NULL) {
		if (ramkey_template_expand(o.pgp_key_file, &vars, &pgp_path,
		    &twhy) != 0) {
			ret = failed(pamh, &o, "pgp_key_file=%s: %s",
			    o.pgp_key_file, twhy ? twhy : "invalid");
			goto out;
		}
		/* Read as the user, whose groups the file is written with
		 * later too. */
		if (ramkey_fsid_user_lookup(&owner, &writer) != 0) {
			ret = failed(pamh, &o, "cannot look up the groups of "
			    "%s to read pgp_key_file %s", user, pgp_path);
			goto out;
		}
		have_writer = true;
		if (ramkey_pgp_key_file_read(pgp_path, &writer, &pgp, why,
		    sizeof(why)) != 0) {
			ret = failed(pamh, &o, "%s", why);
			goto out;
		}
	} else if (o.pgp_key != NULL && (pgp = strdup(o.pgp_key)) == NULL) {
		ret = failed(pamh, &o, "out of memory");
		goto out;
	}
	if ((req = ramkey_request_new(RAMKEY_OP_OPEN_SESSION)) == NULL ||
	    (req->user = strdup(pw->pw_name)) == NULL ||
	    (req->secret_file = strdup(path)) == NULL) {
		ret = failed(pamh, &o, "out of memory");
		goto out;
	}
	req->pgp_key = pgp;
	pgp = NULL;
	if (pam_item_str(pamh, PAM_RHOST) != NULL)
		req->rhost = strndup(pam_item_str(pamh, PAM_RHOST),
		    RAMKEY_RHOST_MAX);
	if (pam_item_str(pamh, PAM_TTY) != NULL)
		req->tty = strndup(pam_item_str(pamh, PAM_TTY), RAMKEY_TTY_MAX);
	if (pam_item_str(pamh, PAM_SERVICE) != NULL)
		req->service = strndup(pam_item_str(pamh, PAM_SERVICE),
		    RAMKEY_SERVICE_MAX);
	if ((r = ramkey_obtain_start(o.socket, req, (uint64_t)o.timeout_s *
	    1000, &ob, why, sizeof(why))) != 0) {
		ret = r == RAMKEY_ERR_NOMEM || r == RAMKEY_ERR_CRYPTO ?
		    failed(pamh, &o, "no key for %s: %s", user, why) :
		    failed(pamh, &o, "no key for %s: %s; check that "
		    "ramkey-agent is running and answers on %s", user, why,
		    o.socket);
		goto out;
	}
	/* While the agent works: the user's groups, for writing the file
	 * as the user (NSS may take a while). */
	if (!have_writer) {
		wr = ramkey_fsid_user_lookup(&owner, &writer);
		have_writer = wr == 0;
	}
	r = ramkey_obtain_finish(ob, why, sizeof(why));
	if (ob->state == RAMKEY_OBTAIN_REFUSED &&
	    r == RAMKEY_ERR_EXCLUDED) {
		pam_syslog(pamh, LOG_INFO, "%s: %s (the module does not "
		    "apply)", user, why);
		ret = PAM_IGNORE;
		goto out;
	}
	if (ob->state == RAMKEY_OBTAIN_REFUSED) {
		ret = failed(pamh, &o, "no key for %s: the agent said: %s",
		    user, why);
		goto out;
	}
	if (ob->state == RAMKEY_OBTAIN_UNUSABLE) {
		/* Not an answer from the agent we asked; if it opened a
		 * session all the same, end it. */
		if (ob->reply->session != NULL)
			abort_session(pamh, &o, pw->pw_name,
			    ob->reply->session);
		ret = r == RAMKEY_ERR_NOMEM ?
		    failed(pamh, &o, "out of memory") :
		    failed(pamh, &o, "%s; is %s the real agent?", why,
		    o.socket);
		goto out;
	}
	if (r != 0) {
		ret = failed(pamh, &o, "no key for %s: %s; check that "
		    "ramkey-agent is running and answers on %s", user, why,
		    o.socket);
		goto out;
	}
	if (!have_writer) {
		abort_session(pamh, &o, pw->pw_name, ob->reply->session);
		ret = failed(pamh, &o, "cannot look up the groups of %s to "
		    "write the secret file: %s", user, ramkey_strerror(wr));
		goto out;
	}
	if (ob->cred.security_token != NULL && o.format == RAMKEY_FORMAT_INI) {
		abort_session(pamh, &o, pw->pw_name, ob->reply->session);
		ret = failed(pamh, &o, "format=ini cannot carry the STS token "
		    "of %s's credential (the official SDKs read no type = sts "
		    "from a credentials file); use format=json, env or cli",
		    user);
		goto out;
	}
	if ((r = ramkey_deliver(&ob->cred, o.format, path, &writer, why,
	    sizeof(why))) != 0) {
		abort_session(pamh, &o, pw->pw_name, ob->reply->session);
		ret = failed(pamh, &o, "cannot write the secret file for %s: "
		    "%s", user, why[0] ? why : ramkey_strerror(r));
		goto out;
	}
	if ((sd = calloc(1, sizeof(*sd))) == NULL ||
	    (sd->path = strdup(path)) == NULL) {
		abort_session(pamh, &o, pw->pw_name, ob->reply->session);
		ret = failed(pamh, &o, "out of memory");
		goto out;
	}
	snprintf(sd->token, sizeof(sd->token), "%s", ob->reply->session);
	if (pam_set_data(pamh, DATA_NAME, sd, session_data_cleanup) !=
	    PAM_SUCCESS) {
		abort_session(pamh, &o, pw->pw_name, ob->reply->session);
		ret = failed(pamh, &o, "cannot keep the session data");
		goto out;
	}
	sd = NULL;
	if (o.export_env) {
		put_env(pamh, "RAMKEY_SECRET_FILE", path);
		if (o.format == RAMKEY_FORMAT_INI)
			put_env(pamh, "ALIBABA_CLOUD_CREDENTIALS_FILE", path);
	}
	ramkey_mask_key_id(ob->cred.access_key_id, masked);
	pam_syslog(pamh, LOG_INFO, "key %s for %s written to %s (%s%s)",
	    masked, user, path, ramkey_format_name(o.format),
	    ob->cred.encrypted_secret ? ", PGP-encrypted" : "");
	ret = PAM_SUCCESS;
out:
	if (sd != NULL)
		session_data_cleanup(pamh, sd, 0);
	free(pgp);
	free(pgp_path);
	free(path);
	ramkey_fsid_user_clear(&writer);
	ramkey_obtain_free(ob);
	ramkey_request_free(req);
	return ret;
}

PAM_EXPORT int pam_sm_close_session(pam_handle_t *pamh, int flags, int argc,
    const char **argv)
{
	struct options o;
	const struct session_data *sd = NULL;
	struct ramkey_request *req = NULL;
	struct ramkey_reply *rep = NULL;
	const struct passwd *pw;
	const char *user = NULL;
	const void *data = NULL;
	char why[768];
	bool removed = false;
	int ret, r;

	(void)flags;
	parse_options(pamh, argc, argv, &o);
	if (pam_get_data(pamh, DATA_NAME, &data) != PAM_SUCCESS ||
	    data == NULL)
		return PAM_IGNORE; /* open_session left nothing to close */
	sd = data;
	if (pam_get_user(pamh, &user, NULL) != PAM_SUCCESS || user == NULL ||
	    (pw = pam_modutil_getpwnam(pamh, user)) == NULL)
		return failed(pamh, &o, "cannot determine the user at close");
	if ((req = ramkey_request_new(RAMKEY_OP_CLOSE_SESSION)) == NULL ||
	    (req->user = strdup(pw->pw_name)) == NULL ||
	    (req->session = strdup(sd->token)) == NULL) {
		ret = failed(pamh, &o, "out of memory");
		goto out;
	}
	r = ramkey_agent_call(o.socket, req, ramkey_now_ms() +
	    (uint64_t)o.timeout_s * 1000, &rep, why, sizeof(why));
	if (r != 0 || rep->error != 0) {
		ret = failed(pamh, &o,
		    "could not tell the agent that a session of %s ended "
		    "(%s); the agent revokes the key when this process exits",
		    user, r != 0 ? why : rep->error_message);
		goto out;
	}
	if (rep->last_session) {
		struct ramkey_owner owner = { pw->pw_name, pw->pw_uid,
			pw->pw_gid };

		if (ramkey_secret_file_remove(sd->path, &owner, &removed, why,
		    sizeof(why)) != 0 || (!removed && why[0] != '\0'))
			pam_syslog(pamh, LOG_WARNING, "last session of %s: %s",
			    user, why);
	}
	if (o.debug)
		pam_syslog(pamh, LOG_DEBUG, "session of %s closed%s%s", user,
		    rep->last_session ? " (last one)" : "",
		    removed ? "; secret file removed" : "");
	/* Closed: a second close_session has nothing left to close
	 * (PAM_IGNORE) and must not tell the agent or touch the file again.
	 * This frees sd; do not use it below. */
	(void)pam_set_data(pamh, DATA_NAME, NULL, NULL);
	ret = PAM_SUCCESS;
out:
	ramkey_request_free(req);
	ramkey_reply_free(rep);
	return ret;
}
