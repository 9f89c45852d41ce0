/*
 * ramkey-agent-client: the command line. Everything it does on the wire and
 * on disk lives in libramkey-proto; this file parses options, maps errors
 * to exit codes and prints one line.
 */
#include <errno.h>
#include <getopt.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>

#include "default_path.h"
#include "deliver.h"
#include "duration.h"
#include "frame.h"
#include "fsid.h"
#include "message.h"
#include "obtain.h"
#include "pgp_key_file.h"
#include "ramkey_err.h"
#include "requester.h"
#include "seal.h"
#include "secret_format.h"
#include "util.h"

#define EXIT_OK 0
#define EXIT_USAGE 2
#define EXIT_AGENT 3
#define EXIT_DENIED 4
#define EXIT_RAM 5
#define EXIT_LOCAL_IO 6
#define EXIT_UNAVAILABLE 7

static const char *prog = "ramkey-agent-client";
static const char *command = NULL;

struct globals {
	const char *socket;
	uint64_t timeout_ms;
};

static int die(int code, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* One line on stderr naming what failed and what to do. */
static int die(int code, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "%s: %s%s", prog, command ? command : "",
	    command ? ": " : "");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	return code;
}

static int exit_code(int err)
{
	switch (err) {
	case 0:
		return EXIT_OK;
	case RAMKEY_ERR_INVALID:
	case RAMKEY_ERR_PGP_KEY:
	case RAMKEY_ERR_KEYBASE_USER:
	case RAMKEY_ERR_TOO_LARGE:
		return EXIT_USAGE;
	case RAMKEY_ERR_CONNECT:
	case RAMKEY_ERR_UNTRUSTED:
	case RAMKEY_ERR_TIMEOUT:
	case RAMKEY_ERR_PROTOCOL:
	case RAMKEY_ERR_VERSION:
	case RAMKEY_ERR_EOF:
		return EXIT_AGENT;
	case RAMKEY_ERR_DENIED:
	case RAMKEY_ERR_EXCLUDED:
	case RAMKEY_ERR_NO_USER:
	case RAMKEY_ERR_RATE:
	case RAMKEY_ERR_NOT_FOUND:
		return EXIT_DENIED;
	case RAMKEY_ERR_RAM:
	case RAMKEY_ERR_LIMIT:
	case RAMKEY_ERR_KEYBASE:
	case RAMKEY_ERR_RAM_TIMEOUT:
		return EXIT_RAM;
	case RAMKEY_ERR_IO:
	case RAMKEY_ERR_UNSAFE_PATH:
	case RAMKEY_ERR_IS_DIR:
		return EXIT_LOCAL_IO;
	default:
		return EXIT_UNAVAILABLE;
	}
}

/* ---- help ---- */

static void usage_main(FILE *f)
{
	fprintf(f,
	    "usage: %s [--socket PATH] [--timeout SECONDS] COMMAND [options]\n"
	    "\n"
	    "Commands:\n"
	    "  fetch               get your AccessKey and write it to a "
	    "secret file\n"
	    "  credential-process  print the key as aliyun CLI External-mode "
	    "JSON\n"
	    "  revoke              end your leases now (their keys are "
	    "revoked); --all: every\n"
	    "                      user's (trusted callers only)\n"
	    "  status              show your leases\n"
	    "  set-status          set a key Active or Inactive\n"
	    "  metrics             print the agent's metrics (trusted callers "
	    "only)\n"
	    "\n"
	    "Global options:\n"
	    "  --socket PATH       agent socket (default $RAMKEY_SOCKET or "
	    "%s)\n"
	    "  --timeout SECONDS   how long to wait for the agent (default "
	    "30)\n"
	    "  -h, --help          this text; COMMAND --help for a command\n"
	    "  -V, --version       print the version\n"
	    "\n"
	    "Exit status: 0 done, 2 usage or invalid input, 3 agent "
	    "unreachable or not\nthe real agent, 4 denied, 5 RAM or Keybase "
	    "failed, 6 writing the secret file\nfailed, 7 the agent cannot "
	    "serve.\n", prog, RAMKEY_DEFAULT_SOCKET);
}

static void usage_fetch(FILE *f, bool external)
{
	if (external) {
		fprintf(f,
		    "usage: %s credential-process [--user USER] "
		    "[--ttl DURATION]\n"
		    "\n"
		    "Print {\"mode\":\"AK\",\"access_key_id\":...,"
		    "\"access_key_secret\":...} on stdout\nfor an aliyun CLI "
		    "External-mode profile (process_command). Writes no file;\n"
		    "stdout stays empty on failure. The key is held like "
		    "fetch's.\n"
		    "\n"
		    "  --user USER     another local user (trusted callers "
		    "only)\n"
		    "  --ttl DURATION  hold the key this long when no login "
		    "session holds it\n"
		    "                  (default: the agent's fetch_ttl; e.g. "
		    "30m, 2h)\n", prog);
		return;
	}
	fprintf(f,
	    "usage: %s fetch [--user USER] [--secret-file PATH]\n"
	    "       [--format json|ini|env|cli] [--pgp-key KEY|@FILE] "
	    "[--ttl DURATION] [--follow]\n"
	    "\n"
	    "Get the key of your lease (minting one if needed) and write it, "
	    "mode 0600,\nowned by you, to the secret file. Prints the masked "
	    "AccessKeyId and the path.\n"
	    "\n"
	    "  --user USER         another local user (trusted callers only);"
	    " the file is\n"
	    "                      written as that user\n"
	    "  --secret-file PATH  where to write (default: the file your "
	    "login session\n"
	    "                      wrote, else /run/user/UID/ramkey/"
	    "credentials.json,\n"
	    "                      else ~/.alibabacloud/ramkey.json)\n"
	    "  --format FORMAT     json (default), ini, env or cli\n"
	    "  --pgp-key KEY|@FILE encrypt the secret to this PGP public key "
	    "(base64, armored,\n"
	    "                      or keybase:NAME; @FILE: read from a regular "
	    "file); json\n"
	    "                      format only\n"
	    "  --ttl DURATION      hold the key this long when no login "
	    "session holds it\n"
	    "                      (default: the agent's fetch_ttl)\n"
	    "  --follow            keep running and keep the file fresh: fetch "
	    "again when\n"
	    "                      the agent renews or rotates the credential "
	    "(until\n"
	    "                      SIGTERM or SIGINT)\n", prog);
}

static void usage_revoke(FILE *f)
{
	fprintf(f,
	    "usage: %s revoke [--user USER] [--key-id ID]\n"
	    "       %s revoke --all\n"
	    "\n"
	    "End your leases now: their holders are detached and the keys "
	    "revoked at RAM\n(status shows pending revocations). With "
	    "--key-id, only that key.\n"
	    "\n"
	    "  --user USER  another local user's leases (trusted callers "
	    "only)\n"
	    "  --key-id ID  only the lease of this AccessKeyId\n"
	    "  --all        every lease of every user, e.g. before removing "
	    "the agent\n"
	    "               (trusted callers only; not with --user or "
	    "--key-id)\n", prog, prog);
}

static void usage_status(FILE *f)
{
	fprintf(f,
	    "usage: %s status [--user USER] [--json]\n"
	    "\n"
	    "Show leases (yours; trusted callers see all). Exit 0 when the "
	    "agent is\nhealthy, 7 when its store is not writable or RAM is "
	    "failing.\n", prog);
}

static void usage_set_status(FILE *f)
{
	fprintf(f,
	    "usage: %s set-status --key-id ID Active|Inactive\n"
	    "\n"
	    "Set a key of your live leases Active or Inactive (the Terraform "
	    "status).\n", prog);
}

static void usage_metrics(FILE *f)
{
	fprintf(f,
	    "usage: %s metrics\n"
	    "\n"
	    "Print the agent's metrics in the Prometheus text format "
	    "(version 0.0.4):\nleases, mints and revocations by result, "
	    "cloud API calls and their latency.\nFor the agent's "
	    "trusted_uids only (exit 4 otherwise).\n", prog);
}

/* ---- helpers ---- */

static uint64_t deadline_of(const struct globals *g)
{
	return ramkey_now_ms() + g->timeout_ms;
}

static int call_agent(const struct globals *g, struct ramkey_request *req,
    struct ramkey_reply **repp)
{
	char why[512];
	int r;

	*repp = NULL;
	r = ramkey_agent_call(g->socket, req, deadline_of(g), repp, why,
	    sizeof(why));
	if (r != 0) {
		if (r == RAMKEY_ERR_TIMEOUT)
			return die(EXIT_AGENT, "%s (--timeout %llu s); is "
			    "ramkey-agent overloaded or stuck?", why,
			    (unsigned long long)(g->timeout_ms / 1000));
		return die(exit_code(r) == EXIT_USAGE ? EXIT_AGENT :
		    exit_code(r), "%s", why);
	}
	if ((*repp)->error != 0) {
		int code = exit_code((*repp)->error);

		die(code, "%s", (*repp)->error_message);
		ramkey_reply_free(*repp);
		*repp = NULL;
		return code;
	}
	return 0;
}

/* The default secret_file: the file the user's live login session
 * wrote (the agent names it), else /run/user/UID/ramkey/credentials.json
 * when /run/user/UID is the user's, else ~/.alibabacloud/ramkey.json. */
static int default_path(const struct passwd *pw, const char *from_agent,
    char **out)
{
	char run[64];

	*out = NULL;
	if (from_agent != NULL)
		return (*out = strdup(from_agent)) != NULL ? 0 :
		    RAMKEY_ERR_NOMEM;
	snprintf(run, sizeof(run), RAMKEY_RUN_USER_DIR "/%lu",
	    (unsigned long)pw->pw_uid);
	return ramkey_default_secret_file(ramkey_runtime_dir_check(run,
	    pw->pw_uid, NULL, 0) == 0 ? run : NULL, pw->pw_dir, out);
}

static int absolute_path(const char *p, char **out)
{
	char cwd[4096];

	if (p[0] == '/') {
		*out = strdup(p);
	} else {
		if (getcwd(cwd, sizeof(cwd)) == NULL)
			return RAMKEY_ERR_SYSTEM;
		if (asprintf(out, "%s/%s", cwd, p) < 0)
			*out = NULL;
	}
	return *out != NULL ? 0 : RAMKEY_ERR_NOMEM;
}

/* ---- fetch / credential-process ---- */

struct fetch_opts {
	const char *user;
	const char *secret_file;
	const char *format;
	const char *pgp_key;
	const char *ttl;
	bool external;
	bool follow;
	int64_t refresh_at;	/* out: when to fetch again (Unix s) */
};

/* Exit status and one line for a failed ramkey_obtain_start() or
 * ramkey_obtain_finish(). */
static int obtain_failed(const struct globals *g,
    const struct ramkey_obtain *ob, int r, const char *why)
{
	if (ob != NULL && ob->state == RAMKEY_OBTAIN_REFUSED)
		return die(exit_code(r), "%s", why);
	if (ob != NULL && ob->state == RAMKEY_OBTAIN_UNUSABLE)
		return r == RAMKEY_ERR_NOMEM ?
		    die(EXIT_UNAVAILABLE, "%s", why) :
		    die(EXIT_AGENT, "%s; not the real agent?", why);
	if (r == RAMKEY_ERR_TIMEOUT)
		return die(EXIT_AGENT, "%s (--timeout %llu s); is ramkey-agent "
		    "overloaded or stuck?", why,
		    (unsigned long long)(g->timeout_ms / 1000));
	return die(exit_code(r) == EXIT_USAGE ? EXIT_AGENT : exit_code(r),
	    "%s", why);
}

static int get_key(const struct globals *g, struct fetch_opts *o)
{
	struct ramkey_request *req = NULL;
	struct ramkey_obtain *ob = NULL;
	struct ramkey_fsid_user writer;
	enum ramkey_format fmt = RAMKEY_FORMAT_JSON;
	struct passwd pw, *pwp = NULL;
	char pwbuf[4096], *pgp = NULL, *rendered = NULL;
	char *path = NULL, why[512], masked[RAMKEY_MASKED_MAX], when[32];
	size_t rendered_len = 0;
	uint64_t ttl = 0;
	int r, code = EXIT_UNAVAILABLE;

	memset(&writer, 0, sizeof(writer));
	if (o->format != NULL && ramkey_format_parse(o->format, &fmt) != 0)
		return die(EXIT_USAGE, "unknown --format %s (use json, ini, "
		    "env or cli)", o->format);
	if (o->ttl != NULL && (ramkey_duration_parse(o->ttl, &ttl) != 0 ||
	    ttl == 0))
		return die(EXIT_USAGE, "--ttl %s is not a duration above zero "
		    "(examples: 90, 30m, 1h30m)", o->ttl);
	if (o->pgp_key != NULL && fmt != RAMKEY_FORMAT_JSON)
		return die(EXIT_USAGE,
		    "--format %s needs the plaintext secret; "
		    "with --pgp-key only json is possible", o->format);
	if (o->user != NULL && !ramkey_valid_user_name(o->user))
		return die(EXIT_USAGE, "--user %s is not a valid user name",
		    o->user);
	if (o->pgp_key != NULL && o->pgp_key[0] == '@') {
		/* Read as ourselves: the file is the caller's choice. */
		if ((r = ramkey_pgp_key_file_read(o->pgp_key + 1, NULL, &pgp,
		    why, sizeof(why))) != 0)
			return die(r == RAMKEY_ERR_NOMEM ||
			    r == RAMKEY_ERR_SYSTEM ? EXIT_UNAVAILABLE :
			    EXIT_USAGE, "%s", why);
	} else if (o->pgp_key != NULL && (pgp = strdup(o->pgp_key)) == NULL) {
		return die(EXIT_UNAVAILABLE, "out of memory");
	}
	if (pgp != NULL && pgp[0] == '\0') {
		code = die(EXIT_USAGE, "the PGP key is empty; give base64 of a "
		    "binary key, an armored key, @FILE or keybase:NAME");
		goto out;
	}
	if (pgp != NULL && strlen(pgp) > RAMKEY_PGP_KEY_MAX) {
		code = die(EXIT_USAGE, "the PGP key is larger than %d bytes",
		    RAMKEY_PGP_KEY_MAX);
		goto out;
	}
	if ((req = ramkey_request_new(RAMKEY_OP_FETCH)) == NULL ||
	    (o->user != NULL && (req->user = strdup(o->user)) == NULL)) {
		code = die(EXIT_UNAVAILABLE, "out of memory");
		goto out;
	}
	req->pgp_key = pgp;
	pgp = NULL;
	if (ttl != 0) {
		req->has_ttl = true;
		req->ttl = ttl;
	}
	/* Tell the agent where the key goes when we know already (a file
	 * shared with login sessions then keeps a held key). */
	if (!o->external && o->secret_file != NULL &&
	    absolute_path(o->secret_file, &req->secret_file) != 0) {
		code = die(EXIT_LOCAL_IO, "cannot work out the secret file "
		    "path");
		goto out;
	}
	req->default_file = !o->external && o->secret_file == NULL;
	if ((r = ramkey_obtain_start(g->socket, req, g->timeout_ms, &ob, why,
	    sizeof(why))) != 0) {
		code = obtain_failed(g, NULL, r, why);
		goto out;
	}
	if ((r = ramkey_obtain_finish(ob, why, sizeof(why))) != 0) {
		code = obtain_failed(g, ob, r, why);
		goto out;
	}
	o->refresh_at = ob->reply->key.refresh_at;
	if (o->external) {
		if (ob->secret == NULL) {
			code = die(EXIT_USAGE, "credential-process needs the "
			    "plaintext secret");
			goto out;
		}
		if (ramkey_format_render(RAMKEY_FORMAT_EXTERNAL, &ob->cred,
		    &rendered, &rendered_len) != 0 ||
		    fwrite(rendered, 1, rendered_len, stdout) != rendered_len ||
		    fflush(stdout) != 0) {
			code = die(EXIT_LOCAL_IO, "cannot write to stdout");
			goto out;
		}
		code = EXIT_OK;
		goto out;
	}
	/* The file belongs to the key's user and is written as that user. */
	r = o->user != NULL ?
	    getpwnam_r(o->user, &pw, pwbuf, sizeof(pwbuf), &pwp) :
	    getpwuid_r(getuid(), &pw, pwbuf, sizeof(pwbuf), &pwp);
	if (r != 0 || pwp == NULL) {
		code = die(EXIT_DENIED, "no local account for %s",
		    o->user ? o->user : "the caller");
		goto out;
	}
	r = o->secret_file != NULL ? absolute_path(o->secret_file, &path) :
	    default_path(&pw, ob->reply->secret_file, &path);
	if (r != 0) {
		code = die(EXIT_LOCAL_IO, "cannot work out the secret file "
		    "path");
		goto out;
	}
	{
		struct ramkey_owner owner = { pw.pw_name, pw.pw_uid,
			pw.pw_gid };

		if (ramkey_fsid_user_lookup(&owner, &writer) != 0) {
			code = die(EXIT_UNAVAILABLE, "cannot look up the "
			    "groups of %s", pw.pw_name);
			goto out;
		}
	}
	if (ob->cred.security_token != NULL && fmt == RAMKEY_FORMAT_INI) {
		code = die(EXIT_USAGE,
		    "--format ini cannot carry this temporary (STS) "
		    "credential's token: the official SDKs read no type = sts "
		    "from a credentials file; "
		    "use --format json, env or cli, or credential-process");
		goto out;
	}
	if ((r = ramkey_deliver(&ob->cred, fmt, path, &writer, why,
	    sizeof(why))) != 0) {
		code = die(r == RAMKEY_ERR_DENIED ? EXIT_DENIED :
		    r == RAMKEY_ERR_NOMEM ? EXIT_UNAVAILABLE : EXIT_LOCAL_IO,
		    "cannot write the secret file: %s",
		    why[0] ? why : ramkey_strerror(r));
		goto out;
	}
	ramkey_mask_key_id(ob->cred.access_key_id, masked);
	ramkey_format_time(ob->reply->key.expires, when);
	if (ob->cred.expiration > 0) {
		char exp[32];

		ramkey_format_time(ob->cred.expiration, exp);
		printf("%s %s written to %s (%s%s, credential expires at %s, "
		    "lease ends by %s)\n", masked, ob->cred.status, path,
		    ramkey_format_name(fmt), ob->cred.encrypted_secret ?
		    ", PGP-encrypted" : "", exp, when);
	} else {
		printf("%s %s written to %s (%s%s, lease ends by %s)\n",
		    masked, ob->cred.status, path, ramkey_format_name(fmt),
		    ob->cred.encrypted_secret ? ", PGP-encrypted" : "", when);
	}
	fflush(stdout);
	code = EXIT_OK;
out:
	if (rendered != NULL)
		ramkey_secure_free(rendered);
	free(pgp);
	ramkey_fsid_user_clear(&writer);
	ramkey_obtain_free(ob);
	ramkey_request_free(req);
	free(path);
	return code;
}

/* ---- fetch --follow ---- */

static volatile sig_atomic_t stop_signal;

static void on_stop(int sig)
{
	stop_signal = sig;
}

/* Sleep until the wall-clock time when (Unix s), or a signal. */
static void sleep_until(int64_t when)
{
	while (!stop_signal) {
		int64_t left = when - ramkey_wall_now();
		struct timespec ts;

		if (left <= 0)
			return;
		ts.tv_sec = left > 60 ? 60 : left;
		ts.tv_nsec = 0;
		(void)nanosleep(&ts, NULL);
	}
}

/*
 * Keep the file fresh for as long as we run: fetch again when the agent
 * said a newer credential is due (a renewed STS credential, a rotated
 * AccessKey), a second after it. A failed fetch is retried with backoff;
 * the file keeps what it had meanwhile. SIGTERM or SIGINT end it (exit 0).
 */
static int follow(const struct globals *g, struct fetch_opts *o)
{
	struct sigaction sa;
	unsigned failures = 0;
	int code;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_stop;
	sigemptyset(&sa.sa_mask);
	(void)sigaction(SIGTERM, &sa, NULL);
	(void)sigaction(SIGINT, &sa, NULL);
	while (!stop_signal) {
		int64_t now = ramkey_wall_now(), next;

		o->refresh_at = 0;
		code = get_key(g, o);
		if (code == EXIT_USAGE || code == EXIT_DENIED)
			return code; /* asking again will not help */
		if (code != EXIT_OK) {
			/* 2 s doubling to a minute. */
			next = now + (failures < 5 ? 2LL << failures : 60);
			failures++;
		} else {
			failures = 0;
			next = o->refresh_at > now ? o->refresh_at + 1 :
			    now + 60;
		}
		sleep_until(next);
	}
	return EXIT_OK;
}

/* ---- revoke, status, set-status ---- */

static int do_revoke(const struct globals *g, const char *user,
    const char *key_id, bool all)
{
	struct ramkey_request *req = NULL;
	struct ramkey_reply *rep = NULL;
	int code;

	if (all && (user != NULL || key_id != NULL))
		return die(EXIT_USAGE, "--all ends every user's leases; it "
		    "takes no --user or --key-id");
	if (key_id != NULL && !ramkey_valid_key_id(key_id))
		return die(EXIT_USAGE, "--key-id %s is not an AccessKeyId",
		    key_id);
	if ((req = ramkey_request_new(RAMKEY_OP_REVOKE)) == NULL ||
	    (user != NULL && (req->user = strdup(user)) == NULL) ||
	    (key_id != NULL && (req->key_id = strdup(key_id)) == NULL)) {
		ramkey_request_free(req);
		return die(EXIT_UNAVAILABLE, "out of memory");
	}
	req->all = all;
	if ((code = call_agent(g, req, &rep)) == 0) {
		/* call_agent() returns 0 only with the reply; the analyzer
		 * cannot follow die(), which is variadic. */
		/* NOLINTNEXTLINE(clang-analyzer-core.NullDereference) */
		if (rep->revoked == 0) {
			printf("nothing to revoke\n");
		} else if (rep->valid_until > 0) {
			char until[32];

			ramkey_format_time(rep->valid_until, until);
			printf("ended %u lease(s); STS cannot revoke a token: "
			    "it stays valid at RAM until %s\n", rep->revoked,
			    until);
		} else {
			printf("revoked %u key(s); RAM confirms in the "
			    "background (see status)\n", rep->revoked);
		}
	}
	ramkey_request_free(req);
	ramkey_reply_free(rep);
	return code;
}

static const char *jstr(struct json_object *o, const char *k)
{
	struct json_object *v;

	if (!json_object_object_get_ex(o, k, &v) || v == NULL)
		return "-";
	return json_object_get_string(v);
}

static void print_status(struct json_object *doc, bool healthy)
{
	struct json_object *leases = NULL, *amb = NULL, *pend = NULL;
	struct json_object *src = NULL;
	size_t i, n;

	json_object_object_get_ex(doc, "leases", &leases);
	json_object_object_get_ex(doc, "ambiguous_keys", &amb);
	json_object_object_get_ex(doc, "pending_revocations", &pend);
	n = json_object_array_length(leases);
	if (n == 0)
		printf("no leases\n");
	else
		printf("%-16s %-16s %-12s %-8s %-20s %-20s %-8s %s\n", "USER",
		    "RAM USER", "KEY", "STATUS", "CREATED", "EXPIRES",
		    "SESSIONS", "NOTES");
	for (i = 0; i < n; i++) {
		struct json_object *l = json_object_array_get_idx(leases, i);
		struct json_object *pr = NULL;
		char notes[160] = "";

		if (json_object_object_get_ex(l, "pending_revocation", &pr) &&
		    json_object_get_boolean(pr))
			snprintf(notes, sizeof(notes), "revocation pending");
		if (strcmp(jstr(l, "ttl_holder_expires"), "-") != 0)
			snprintf(notes + strlen(notes),
			    sizeof(notes) - strlen(notes), "%sheld until %s",
			    notes[0] ? "; " : "",
			    jstr(l, "ttl_holder_expires"));
		if (strcmp(jstr(l, "credential_expires"), "-") != 0) {
			struct json_object *ended = NULL;
			bool gone = json_object_object_get_ex(l, "ended",
			    &ended) && json_object_get_boolean(ended);

			snprintf(notes + strlen(notes),
			    sizeof(notes) - strlen(notes), "%s%s %s",
			    notes[0] ? "; " : "",
			    gone ? "ended; token valid at RAM until" :
			    "credential expires",
			    jstr(l, "credential_expires"));
		}
		if (strcmp(jstr(l, "key_fingerprint"), "-") != 0)
			snprintf(notes + strlen(notes),
			    sizeof(notes) - strlen(notes), "%spgp %s",
			    notes[0] ? "; " : "", jstr(l, "key_fingerprint"));
		printf("%-16s %-16s %-12s %-8s %-20s %-20s %-8s %s\n",
		    jstr(l, "user"), jstr(l, "ram_user"),
		    jstr(l, "access_key_id"), jstr(l, "status"),
		    jstr(l, "create_time"), jstr(l, "expires"),
		    jstr(l, "sessions"), notes);
	}
	printf("pending revocations: %s\n", pend ? json_object_get_string(pend)
	    : "0");
	for (i = 0; amb != NULL && i < json_object_array_length(amb); i++) {
		struct json_object *k = json_object_array_get_idx(amb, i);

		printf("ambiguous key %s of RAM user %s: check it by hand\n",
		    jstr(k, "access_key_id"), jstr(k, "ram_user"));
	}
	if (json_object_object_get_ex(doc, "source", &src) && src != NULL) {
		struct json_object *u = NULL;

		const char *from = jstr(src, "source");
		const char *type = jstr(src, "type");

		printf("agent credential: %s%s%s (%s), expires %s\n", from,
		    strcmp(from, type) != 0 ? ", " : "",
		    strcmp(from, type) != 0 ? type : "", jstr(src, "kind"),
		    strcmp(jstr(src, "expires"), "-") != 0 ?
		    jstr(src, "expires") : "never");
		if (json_object_object_get_ex(src, "usable", &u) &&
		    !json_object_get_boolean(u))
			printf("agent credential unusable: %s\n",
			    jstr(src, "error"));
	}
	if (!healthy)
		printf("agent unhealthy: its state store is not writable, its "
		    "last RAM call failed, or it has no usable credential of "
		    "its own\n");
}

static int do_status(const struct globals *g, const char *user, bool json)
{
	struct ramkey_request *req = ramkey_request_new(RAMKEY_OP_STATUS);
	struct ramkey_reply *rep = NULL;
	int code;

	if (req == NULL)
		return die(EXIT_UNAVAILABLE, "out of memory");
	req->user = user ? strdup(user) : NULL;
	if ((code = call_agent(g, req, &rep)) == 0) {
		if (json)
			printf("%s\n", json_object_to_json_string_ext(
			    rep->status, JSON_C_TO_STRING_PLAIN |
			    JSON_C_TO_STRING_NOSLASHESCAPE));
		else
			print_status(rep->status, rep->healthy);
		code = rep->healthy ? EXIT_OK : EXIT_UNAVAILABLE;
	}
	ramkey_request_free(req);
	ramkey_reply_free(rep);
	return code;
}

static int do_set_status(const struct globals *g, const char *key_id,
    const char *status)
{
	struct ramkey_request *req;
	struct ramkey_reply *rep = NULL;
	char masked[RAMKEY_MASKED_MAX];
	int code;

	if (key_id == NULL || !ramkey_valid_key_id(key_id))
		return die(EXIT_USAGE, "--key-id ID is required (an "
		    "AccessKeyId)");
	if (status == NULL || (strcmp(status, "Active") != 0 &&
	    strcmp(status, "Inactive") != 0))
		return die(EXIT_USAGE, "the new status must be Active or "
		    "Inactive");
	if ((req = ramkey_request_new(RAMKEY_OP_SET_STATUS)) == NULL)
		return die(EXIT_UNAVAILABLE, "out of memory");
	req->key_id = strdup(key_id);
	req->status = strdup(status);
	if ((code = call_agent(g, req, &rep)) == 0) {
		ramkey_mask_key_id(key_id, masked);
		printf("%s is now %s\n", masked, status);
	}
	ramkey_request_free(req);
	ramkey_reply_free(rep);
	return code;
}

static int do_metrics(const struct globals *g)
{
	struct ramkey_request *req = ramkey_request_new(RAMKEY_OP_METRICS);
	struct ramkey_reply *rep = NULL;
	int code;

	if (req == NULL)
		return die(EXIT_UNAVAILABLE, "out of memory");
	if ((code = call_agent(g, req, &rep)) == 0 &&
	    (fputs(rep->metrics, stdout) == EOF || fflush(stdout) != 0))
		code = die(EXIT_LOCAL_IO, "cannot write to stdout");
	ramkey_request_free(req);
	ramkey_reply_free(rep);
	return code;
}

/* ---- option parsing ---- */

enum {
	O_SOCKET = 1000,
	O_TIMEOUT,
	O_USER,
	O_SECRET_FILE,
	O_FORMAT,
	O_PGP_KEY,
	O_TTL,
	O_KEY_ID,
	O_JSON,
	O_ALL,
	O_FOLLOW,
};

static int set_timeout(struct globals *g, const char *v)
{
	char *end;
	unsigned long s;

	errno = 0;
	s = strtoul(v, &end, 10);
	if (errno != 0 || *end != '\0' || v[0] == '\0' || s == 0 ||
	    s > 86400)
		return die(EXIT_USAGE, "--timeout %s: give whole seconds "
		    "between 1 and 86400", v);
	g->timeout_ms = (uint64_t)s * 1000;
	return 0;
}

int main(int argc, char **argv)
{
	static const struct option gopts[] = {
		{ "socket", required_argument, NULL, O_SOCKET },
		{ "timeout", required_argument, NULL, O_TIMEOUT },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	static const struct option copts[] = {
		{ "socket", required_argument, NULL, O_SOCKET },
		{ "timeout", required_argument, NULL, O_TIMEOUT },
		{ "user", required_argument, NULL, O_USER },
		{ "secret-file", required_argument, NULL, O_SECRET_FILE },
		{ "format", required_argument, NULL, O_FORMAT },
		{ "pgp-key", required_argument, NULL, O_PGP_KEY },
		{ "ttl", required_argument, NULL, O_TTL },
		{ "key-id", required_argument, NULL, O_KEY_ID },
		{ "json", no_argument, NULL, O_JSON },
		{ "all", no_argument, NULL, O_ALL },
		{ "follow", no_argument, NULL, O_FOLLOW },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct globals g = { NULL, 30000 };
	struct fetch_opts fo;
	const char *key_id = NULL;
	struct rlimit rl = { 0, 0 };
	bool json = false, help = false, all = false;
	unsigned allowed = 0;
	int c, code;

	/* The secret passes through our memory: no core dumps. */
	(void)setrlimit(RLIMIT_CORE, &rl);
	memset(&fo, 0, sizeof(fo));
	g.socket = getenv("RAMKEY_SOCKET");
	if (g.socket == NULL || g.socket[0] == '\0')
		g.socket = RAMKEY_DEFAULT_SOCKET;
	/* Global options, up to the command word. */
	while ((c = getopt_long(argc, argv, "+hV", gopts, NULL)) != -1) {
		switch (c) {
		case O_SOCKET:
			g.socket = optarg;
			break;
		case O_TIMEOUT:
			if ((code = set_timeout(&g, optarg)) != 0)
				return code;
			break;
		case 'h':
			usage_main(stdout);
			return EXIT_OK;
		case 'V':
			printf("ramkey-agent-client %s\n", RAMKEY_VERSION);
			return EXIT_OK;
		default:
			usage_main(stderr);
			return EXIT_USAGE;
		}
	}
	if (optind >= argc) {
		usage_main(stderr);
		return EXIT_USAGE;
	}
	command = argv[optind];
	if (strcmp(command, "help") == 0) {
		usage_main(stdout);
		return EXIT_OK;
	}
	enum { A_USER = 1, A_FILE = 2, A_FORMAT = 4, A_PGP = 8, A_TTL = 16,
		A_KEY = 32, A_JSON = 64, A_ALL = 128, A_FOLLOW = 256 };
	if (strcmp(command, "fetch") == 0)
		allowed = A_USER | A_FILE | A_FORMAT | A_PGP | A_TTL |
		    A_FOLLOW;
	else if (strcmp(command, "credential-process") == 0)
		allowed = A_USER | A_TTL;
	else if (strcmp(command, "revoke") == 0)
		allowed = A_USER | A_KEY | A_ALL;
	else if (strcmp(command, "status") == 0)
		allowed = A_USER | A_JSON;
	else if (strcmp(command, "set-status") == 0)
		allowed = A_KEY;
	else if (strcmp(command, "metrics") == 0)
		allowed = 0;
	else {
		command = NULL;
		return die(EXIT_USAGE, "unknown command %s (try --help)",
		    argv[optind]);
	}
	optind++;
	while ((c = getopt_long(argc, argv, "+h", copts, NULL)) != -1) {
		unsigned need = c == O_USER ? A_USER : c == O_SECRET_FILE ?
		    A_FILE : c == O_FORMAT ? A_FORMAT : c == O_PGP_KEY ? A_PGP :
		    c == O_TTL ? A_TTL : c == O_KEY_ID ? A_KEY : c == O_JSON ?
		    A_JSON : c == O_ALL ? A_ALL : c == O_FOLLOW ? A_FOLLOW : 0;

		if (need != 0 && (allowed & need) == 0) {
			const char *name = "?";

			for (size_t i = 0; copts[i].name != NULL; i++)
				if (copts[i].val == c)
					name = copts[i].name;
			return die(EXIT_USAGE, "option --%s does not apply to "
			    "this command (try %s --help)", name, command);
		}
		switch (c) {
		case O_SOCKET:
			g.socket = optarg;
			break;
		case O_TIMEOUT:
			if ((code = set_timeout(&g, optarg)) != 0)
				return code;
			break;
		case O_USER:
			fo.user = optarg;
			break;
		case O_SECRET_FILE:
			fo.secret_file = optarg;
			break;
		case O_FORMAT:
			fo.format = optarg;
			break;
		case O_PGP_KEY:
			fo.pgp_key = optarg;
			break;
		case O_TTL:
			fo.ttl = optarg;
			break;
		case O_KEY_ID:
			key_id = optarg;
			break;
		case O_JSON:
			json = true;
			break;
		case O_ALL:
			all = true;
			break;
		case O_FOLLOW:
			fo.follow = true;
			break;
		case 'h':
			help = true;
			break;
		default:
			return die(EXIT_USAGE, "bad option (try %s --help)",
			    command);
		}
	}
	if (help) {
		if (strcmp(command, "fetch") == 0)
			usage_fetch(stdout, false);
		else if (strcmp(command, "credential-process") == 0)
			usage_fetch(stdout, true);
		else if (strcmp(command, "revoke") == 0)
			usage_revoke(stdout);
		else if (strcmp(command, "status") == 0)
			usage_status(stdout);
		else if (strcmp(command, "metrics") == 0)
			usage_metrics(stdout);
		else
			usage_set_status(stdout);
		return EXIT_OK;
	}
	if (ramkey_crypto_init() != 0)
		return die(EXIT_UNAVAILABLE, "cannot initialise libsodium");
	if (strcmp(command, "set-status") == 0) {
		if (optind != argc - 1)
			return die(EXIT_USAGE, "give exactly one new status, "
			    "Active or Inactive");
		return do_set_status(&g, key_id, argv[optind]);
	}
	if (optind != argc)
		return die(EXIT_USAGE, "unexpected argument %s", argv[optind]);
	if (strcmp(command, "fetch") == 0)
		return fo.follow ? follow(&g, &fo) : get_key(&g, &fo);
	if (strcmp(command, "credential-process") == 0) {
		fo.external = true;
		return get_key(&g, &fo);
	}
	if (strcmp(command, "revoke") == 0)
		return do_revoke(&g, fo.user, key_id, all);
	if (strcmp(command, "metrics") == 0)
		return do_metrics(&g);
	return do_status(&g, fo.user, json);
}
