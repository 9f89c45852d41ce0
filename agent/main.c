/*
 * ramkey-agent: holds the host's RAM administrator credential and mints,
 * shares and revokes AccessKeys for local users over a Unix socket. This
 * file starts the layers (docs/ARCHITECTURE.md) and wires them together.
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <curl/curl.h>
#include <json-c/json.h>
#include <sodium.h>

#include "access_key.h"
#include "config.h"
#include "role_map.h"
#include "sts.h"
#include "duration.h"
#include "effects.h"
#include "evloop.h"
#include "heap_trim.h"
#include "secure_buf.h"
#include "keybase.h"
#include "lease.h"
#include "log.h"
#include "metrics.h"
#include "metrics_file.h"
#include "pgp.h"
#include "preflight.h"
#include "proc_watch.h"
#include "curl_trust.h"
#include "ram_client.h"
#include "ramkey_err.h"
#include "server.h"
#include "source.h"
#include "store.h"
#include "sweep.h"
#include "util.h"
#include "wipe_mem.h"
#include "worker.h"

#define EXIT_CONFIG 1
#define EXIT_USAGE 2
#define EXIT_START 3

/* Threads for user and group lookups and file effects. */
#define WORKER_THREADS 4
/* While the store is broken, how often to try rewriting it. */
#define STORE_RETRY_MS 5000
/* set-status and revoke per non-trusted uid: a burst, then one per
 * interval (each is a call to RAM, whose quota every login shares). */
#define CHANGE_BURST 5
#define CHANGE_INTERVAL_S 600
/* Secret file paths kept per user from fetch --secret-file. */
#define FETCH_PATHS_MAX 8

struct agent {
	struct config *cfg;
	struct evloop *loop;
	struct ram_client *ram;
	struct ram_client *sts;
	struct source *src;	/* the agent's own credential */
	struct keybase *kb;
	struct pgp_worker *pgp;
	struct worker_pool *workers;
	struct store *store;
	struct lease_core *core;
	struct credential_kind access_key;
	bool kind_added;
	struct credential_kind sts_kind;
	bool sts_added;
	struct server_role_rule *role_rules;
	struct server *srv;
	char boot_id[BOOT_ID_LEN + 1];
	int signal_fd;
	struct ev_timer store_timer;
	struct heap_trim heap_trim;
	/* Metrics: the registry, the gauges the agent sets itself, and the
	 * metrics_file writer. */
	struct metrics *metrics;
	struct metric *m_build, *m_live, *m_pending, *m_store_ok, *m_cloud_ok;
	struct metric *m_source_expiry;
	bool collecting;
	struct metrics_file *mfile;
};

static void usage(FILE *f)
{
	fprintf(f,
	    "usage: ramkey-agent [-c FILE] [-f] [-d] [--check-config "
	    "[--check-as ACCOUNT]]\n"
	    "       ramkey-agent [-c FILE] [-d] --sweep [--apply]\n"
	    "\n"
	    "  -c, --config FILE   configuration file (default %s)\n"
	    "  -f, --foreground    stay in the foreground and log to stderr\n"
	    "  -d, --debug         also log debug messages\n"
	    "      --check-config  check the configuration, the agent's own "
	    "credential\n"
	    "                      and the files it names, then exit\n"
	    "      --check-as ACCOUNT\n"
	    "                      with --check-config as root: open the files "
	    "as ACCOUNT\n"
	    "                      (default: " RAMKEY_USER ", the unit's "
	    "account, if it exists)\n"
	    "      --sweep         fleet sweep, once: list the keys older "
	    "than sweep_min_age\n"
	    "                      of the RAM users in sweep_group or named "
	    "sweep_prefix*\n"
	    "      --apply         with --sweep: delete them (without it, a "
	    "dry run)\n"
	    "  -h, --help          this text\n"
	    "  -V, --version       print the version\n"
	    "\n"
	    "Exit status: 0 clean stop (--sweep: done), 1 configuration error, "
	    "2 usage,\n3 cannot start, 5 (--sweep) a RAM call failed.\n",
	    RAMKEY_DEFAULT_CONFIG);
}

/* systemd's notify protocol ($NOTIFY_SOCKET), without libsystemd. */
static void sd_notify_msg(const char *msg)
{
	const char *path = getenv("NOTIFY_SOCKET");
	struct sockaddr_un sa;
	size_t len;
	int fd;

	if (path == NULL || (path[0] != '/' && path[0] != '@') ||
	    (len = strlen(path)) >= sizeof(sa.sun_path))
		return;
	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	memcpy(sa.sun_path, path, len);
	if (sa.sun_path[0] == '@')
		sa.sun_path[0] = '\0';
	if ((fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0)) < 0)
		return;
	(void)sendto(fd, msg, strlen(msg), MSG_NOSIGNAL,
	    (struct sockaddr *)&sa,
	    (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len));
	close(fd);
}

static void log_config(const struct config *c)
{
	char max[32], fetch[32];

	ramkey_duration_format(c->max_ttl, max, sizeof(max));
	ramkey_duration_format(c->fetch_ttl, fetch, sizeof(fetch));
	static const char *const sources[] = { "auto", "env", "file",
		"ecs_ram_role" };

	log_info("config %s: socket=%s state_dir=%s endpoint=%s "
	    "credential_source=%s signature=%s ram_user=%s min_uid=%lu "
	    "max_ttl=%s fetch_ttl=%s revoke=%s",
	    c->path, c->socket, c->state_dir, c->endpoint,
	    sources[c->credential_source],
	    c->signature == RAM_SIG_V1 ? "v1" : "v3", c->ram_user,
	    (unsigned long)c->min_uid, max, fetch,
	    c->revoke == REVOKE_DELETE ? "delete" : "deactivate");
	if (c->fetch_ttl_clamped)
		log_warn("fetch_ttl is longer than max_ttl; using %s", fetch);
	if (c->metrics_file != NULL) {
		ramkey_duration_format(c->metrics_interval, max, sizeof(max));
		log_info("metrics_file %s, rewritten every %s",
		    c->metrics_file, max);
	}
}

static void lease_config_of(const struct config *c, struct lease_config *lc)
{
	memset(lc, 0, sizeof(*lc));
	lc->max_ttl_s = c->max_ttl;
	lc->mint_rate = c->mint_rate;
	lc->mint_rate_period_s = c->mint_rate_period;
	lc->fetch_paths_max = FETCH_PATHS_MAX;
}

static void sts_config_of(const struct config *c, struct sts_config *k)
{
	memset(k, 0, sizeof(*k));
	k->session_name = c->role_session_name;
	k->duration_s = c->sts_duration;
	k->renew_before_s = c->sts_renew_before;
	k->policy = c->sts_policy;
	k->external_id = c->external_id;
}

/* The role map as the server takes it (borrowing c's strings). */
static struct server_role_rule *role_rules_of(const struct config *c)
{
	struct server_role_rule *r;
	size_t i, n = c->role_map != NULL ? c->role_map->nrules : 0;

	if ((r = calloc(n + 1, sizeof(*r))) == NULL)
		return NULL;
	for (i = 0; i < n; i++) {
		r[i].group = c->role_map->rules[i].group;
		r[i].name = c->role_map->rules[i].name;
		r[i].arn = c->role_map->rules[i].arn;
	}
	return r;
}

static void server_config_of(const struct config *c, struct server_config *sc,
    const struct server_role_rule *rules)
{
	memset(sc, 0, sizeof(*sc));
	sc->socket = c->socket;
	sc->trusted_uids = c->trusted_uids;
	sc->ntrusted_uids = c->ntrusted_uids;
	sc->min_uid = c->min_uid;
	sc->allowed_group = c->allowed_group;
	sc->allowed_gid = c->allowed_gid;
	sc->kind = c->credential == CREDENTIAL_STS ? STS_KIND : ACCESS_KEY_KIND;
	sc->ram_user = c->ram_user;
	sc->role_arn = c->role_arn;
	sc->role_rules = rules;
	sc->nrole_rules = c->role_map != NULL ? c->role_map->nrules : 0;
	sc->max_ttl = c->max_ttl;
	sc->fetch_ttl = c->fetch_ttl;
	sc->max_connections_per_uid = c->max_connections_per_uid;
	sc->region_id = c->region_id;
	sc->change_burst = CHANGE_BURST;
	sc->change_interval_s = CHANGE_INTERVAL_S;
}

static void keybase_config_of(const struct config *c, struct keybase_config *k)
{
	memset(k, 0, sizeof(*k));
	k->url = c->keybase_url;
	k->ca_file = c->ca_file;
	k->proxy = c->proxy;
	k->allow_http = c->allow_http;
}

/* Hand a (new) configuration to the running layers. */
static int apply_config(struct agent *a, const struct config *c)
{
	struct lease_config lc;
	struct server_config sc;
	struct keybase_config kc;
	struct access_key_config akc = {
		c->revoke == REVOKE_DEACTIVATE ? ACCESS_KEY_REVOKE_DEACTIVATE :
		    ACCESS_KEY_REVOKE_DELETE,
	};
	struct sts_config stc;
	struct server_role_rule *rules;
	int r;

	if ((rules = role_rules_of(c)) == NULL)
		return RAMKEY_ERR_NOMEM;
	server_config_of(c, &sc, rules);
	r = server_set_config(a->srv, &sc);
	free(rules);
	if (r != 0)
		return r;
	if (a->sts_added) {
		sts_config_of(c, &stc);
		if ((r = sts_kind_reconfigure(&a->sts_kind, &stc)) != 0)
			return r;
	}
	keybase_config_of(c, &kc);
	if (keybase_reconfigure(a->kb, &kc) != 0)
		log_warn("reload: the Keybase settings are invalid; keeping "
		    "the previous ones");
	lease_config_of(c, &lc);
	lease_core_set_config(a->core, &lc);
	access_key_kind_reconfigure(&a->access_key, &akc);
	if (metrics_file_configure(a->mfile, c->metrics_file,
	    c->metrics_interval) != 0)
		log_warn("reload: cannot apply metrics_file; keeping the "
		    "previous one");
	return 0;
}

static bool str_changed(const char *a, const char *b)
{
	if (a == NULL || b == NULL)
		return a != b;
	return strcmp(a, b) != 0;
}

/*
 * SIGHUP and the agent's own credential: a key rotated in the credentials
 * file is taken; any other change of source waits for a restart (the
 * environment was read once and scrubbed, the metadata service and the
 * chained role are bound to running clients). Returns false to keep the
 * previous configuration.
 */
static bool reload_source(struct agent *a, struct config *nc)
{
	struct config *old = a->cfg;
	struct source_status st;
	struct source_spec *spec = NULL;
	char *err = NULL;
	bool ok = true;
	int r = 0;

	source_get_status(a->src, &st);
	if (nc->credential_source != old->credential_source ||
	    str_changed(nc->credentials_file, old->credentials_file) ||
	    str_changed(nc->metadata_url, old->metadata_url) ||
	    str_changed(nc->sts_endpoint, old->sts_endpoint) ||
	    nc->imds_v1 != old->imds_v1)
		log_warn("reload: credential_source, credentials_file, "
		    "metadata_url, sts_endpoint and imds_v1 change only at "
		    "restart; keeping the running credential source");
	if (strcmp(st.origin, "file") != 0 ||
	    str_changed(nc->credentials_file, old->credentials_file))
		return true;
	if (source_resolve(old, &spec, &err) != 0) {
		log_err("reload: %s; keeping the previous configuration", err);
		free(err);
		return false;
	}
	if (strcmp(spec->origin, "file") == 0 &&
	    (r = source_update(a->src, spec)) == RAMKEY_ERR_CONFIG) {
		log_warn("reload: %s now describes another kind of credential; "
		    "it is used from the next restart", old->credentials_file);
	} else if (r != 0) {
		log_err("reload: cannot install the new credentials; keeping "
		    "the previous configuration");
		ok = false;
	}
	source_spec_free(spec);
	return ok;
}

/* SIGHUP: a new valid configuration replaces the old one; an invalid one
 * is reported and the old one kept. */
static void reload(struct agent *a)
{
	struct config *nc = NULL, *old = a->cfg;
	char *err = NULL;

	if (config_load(old->path, true, &nc, &err) != 0) {
		log_err("reload: %s; keeping the previous configuration", err);
		free(err);
		return;
	}
	if (!reload_source(a, nc)) {
		config_free(nc);
		return;
	}
	/* These are bound to open resources; changing them needs a
	 * restart. Keep the running values. */
	if (str_changed(nc->socket, old->socket) ||
	    str_changed(nc->state_dir, old->state_dir) ||
	    str_changed(nc->endpoint, old->endpoint) ||
	    str_changed(nc->ca_file, old->ca_file) ||
	    str_changed(nc->proxy, old->proxy) ||
	    nc->allow_http != old->allow_http ||
	    nc->signature != old->signature ||
	    nc->create_timeout != old->create_timeout ||
	    nc->update_timeout != old->update_timeout ||
	    nc->delete_timeout != old->delete_timeout)
		log_warn("reload: socket, state_dir, endpoint, ca_file, proxy, "
		    "allow_http, signature and the timeouts change only at "
		    "restart; keeping their running values");
#define KEEP(f)                                                             \
	do {                                                                \
		char *t_ = nc->f;                                           \
		nc->f = old->f;                                             \
		old->f = t_;                                                \
	} while (0)
	KEEP(socket);
	KEEP(state_dir);
	KEEP(endpoint);
	KEEP(ca_file);
	KEEP(proxy);
	KEEP(credentials_file);
	KEEP(metadata_url);
	KEEP(sts_endpoint);
#undef KEEP
	nc->allow_http = old->allow_http;
	nc->signature = old->signature;
	nc->create_timeout = old->create_timeout;
	nc->update_timeout = old->update_timeout;
	nc->delete_timeout = old->delete_timeout;
	nc->credential_source = old->credential_source;
	nc->imds_v1 = old->imds_v1;
	if (apply_config(a, nc) != 0) {
		log_err("reload: out of memory; keeping the previous "
		    "configuration");
		config_free(nc);
		return;
	}
	a->cfg = nc;
	config_free(old);
	log_info("reloaded the configuration");
	log_config(nc);
}

static void signal_ready(void *arg, int fd, uint32_t events)
{
	struct agent *a = arg;
	struct signalfd_siginfo si;

	(void)events;
	while (read(fd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
		switch (si.ssi_signo) {
		case SIGHUP:
			reload(a);
			break;
		case SIGTERM:
		case SIGINT:
			log_info("stopping on signal %u; leases stay in the "
			    "store", si.ssi_signo);
			lease_core_stop(a->core);
			evloop_stop(a->loop);
			break;
		default:
			break;
		}
	}
}

static void handled_signals(sigset_t *set)
{
	sigemptyset(set);
	sigaddset(set, SIGTERM);
	sigaddset(set, SIGINT);
	sigaddset(set, SIGHUP);
}

/* Before any thread starts: threads inherit the mask, and a signal must
 * never reach one of them (the default action would kill the agent). */
static int block_signals(void)
{
	sigset_t set;

	signal(SIGPIPE, SIG_IGN);
	handled_signals(&set);
	return sigprocmask(SIG_BLOCK, &set, NULL) == 0 ? 0 : RAMKEY_ERR_SYSTEM;
}

static int setup_signals(struct agent *a)
{
	sigset_t set;

	handled_signals(&set);
	if ((a->signal_fd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC)) <
	    0)
		return RAMKEY_ERR_SYSTEM;
	return evloop_add(a->loop, a->signal_fd, EPOLLIN, signal_ready, a);
}

static void harden(void)
{
	struct rlimit rl = { 0, 0 };

	/* Memory holds the admin secret and minted secrets: no core dumps,
	 * no ptrace by same-uid processes. */
	(void)prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
	(void)setrlimit(RLIMIT_CORE, &rl);
	umask(0077);
	/* Every session holds a pidfd: take all the descriptors we may. */
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		(void)setrlimit(RLIMIT_NOFILE, &rl);
	}
}

static void scrub_env(const char *name)
{
	char *v = getenv(name);

	if (v != NULL)
		sodium_memzero(v, strlen(v));
	unsetenv(name);
}

/* ---- wiring ---- */

/* Keybase lookups for the PGP layer. */
static int kb_fetch(void *ctx, const char *name, pgp_fetched_fn fn, void *arg,
    void **handle)
{
	struct keybase_req *req = NULL;
	int r;

	r = keybase_lookup(ctx, name, (keybase_fn)fn, arg, &req);
	*handle = req;
	return r;
}

static void kb_cancel(void *ctx, void *handle)
{
	(void)ctx;
	keybase_cancel(handle);
}

/* The cloud API that mints users' credentials: STS in fleet mode. */
static struct ram_client *minting_client(const struct agent *a)
{
	return a->cfg->credential == CREDENTIAL_STS && a->sts != NULL ?
	    a->sts : a->ram;
}

/* Healthy: the agent has a usable credential and RAM answers. */
static bool cloud_ok(void *arg)
{
	struct agent *a = arg;

	return source_usable(a->src) && !ram_client_degraded(a->ram) &&
	    !ram_client_degraded(minting_client(a));
}

static const char *cloud_last_error(void *arg, char *buf, size_t len)
{
	struct agent *a = arg;
	const struct ram_error *e = ram_client_last_error(minting_client(a));
	struct source_status st;

	if (!source_usable(a->src)) {
		source_get_status(a->src, &st);
		snprintf(buf, len, "the agent has no usable credential of its "
		    "own: %s", st.why);
		return buf;
	}
	if (e == NULL)
		return NULL;
	snprintf(buf, len, "%s%s%s", e->code, e->code[0] ? ": " : "",
	    e->message);
	return buf;
}

/*
 * ramkey-pgp-helper: next to this program when it is there (a build
 * tree), else where it is installed.
 */
static const char *pgp_helper_path(char *buf, size_t len)
{
	ssize_t n = readlink("/proc/self/exe", buf, len - 1);
	char *slash;

	if (n > 0) {
		buf[n] = '\0';
		if ((slash = strrchr(buf, '/')) != NULL &&
		    (size_t)(slash - buf) + sizeof("/ramkey-pgp-helper") <=
		    len) {
			memcpy(slash, "/ramkey-pgp-helper",
			    sizeof("/ramkey-pgp-helper"));
			if (access(buf, X_OK) == 0)
				return buf;
		}
	}
	snprintf(buf, len, "%s", RAMKEY_PGP_HELPER);
	return buf;
}

static void log_pgp_confinement(const struct pgp_worker *pgp)
{
	struct pgp_status st;
	char names[128] = "";
	size_t i, n = 0;

	pgp_worker_status(pgp, &st);
	for (i = 0; st.confinement[i] != NULL; i++)
		n += (size_t)snprintf(names + n, n < sizeof(names) ?
		    sizeof(names) - n : 0, "%s%s", i > 0 ? " " : "",
		    st.confinement[i]);
	log_info("PGP helpers confined by: %s%s%s", names[0] ? names : "none",
	    st.lacking[0] ? "; lacking " : "", st.lacking);
}

/* The PGP helpers in the status document: how they are confined, what
 * the kernel lacked, how busy they are. */
static void status_pgp(struct agent *a, struct json_object *doc)
{
	struct json_object *pgp, *conf;
	struct pgp_status st;
	const char *why = pgp_worker_unavailable(a->pgp);
	size_t i;

	if ((pgp = json_object_new_object()) == NULL)
		return;
	json_object_object_add(doc, "pgp", pgp);
	json_object_object_add(pgp, "available",
	    json_object_new_boolean(why == NULL));
	if (why != NULL)
		json_object_object_add(pgp, "unavailable",
		    json_object_new_string(why));
	pgp_worker_status(a->pgp, &st);
	if ((conf = json_object_new_array()) == NULL)
		return;
	json_object_object_add(pgp, "confinement", conf);
	for (i = 0; st.confinement[i] != NULL; i++)
		json_object_array_add(conf,
		    json_object_new_string(st.confinement[i]));
	json_object_object_add(pgp, "lacking",
	    json_object_new_string(st.lacking));
	json_object_object_add(pgp, "landlock_abi",
	    json_object_new_int64(st.landlock_abi));
	json_object_object_add(pgp, "helpers_running",
	    json_object_new_int64(st.running));
	json_object_object_add(pgp, "helpers_max",
	    json_object_new_int64(st.helpers_max));
	json_object_object_add(pgp, "jobs_queued",
	    json_object_new_int64(st.queued));
	json_object_object_add(pgp, "deadline_ms",
	    json_object_new_int64(st.deadline_ms));
}

/* ---- metrics ---- */

static const char *const version_values[] = { RAMKEY_VERSION, NULL };

/*
 * When the agent's own credential expires (Unix seconds): no sample for
 * one that does not expire (a static AccessKey from credentials_file or
 * the environment). An alert on it tells how long the agent can still
 * reach RAM if renewals keep failing.
 */
static void collect_source_expiry(struct agent *a)
{
	struct source_status st;

	source_get_status(a->src, &st);
	if (st.temporary && st.expires > 0)
		metric_set(a->m_source_expiry, NULL, NULL, (double)st.expires);
	else
		metric_unset(a->m_source_expiry, NULL, NULL);
}

/* Before each rendering: the gauges that mirror the agent's state. */
static void collect_gauges(void *arg)
{
	struct agent *a = arg;

	metric_set(a->m_build, RAMKEY_VERSION, NULL, 1);
	metric_set(a->m_live, NULL, NULL, lease_count_live(a->core));
	metric_set(a->m_pending, NULL, NULL, lease_pending_ends(a->core));
	metric_set(a->m_store_ok, NULL, NULL,
	    lease_store_broken(a->core) ? 0 : 1);
	metric_set(a->m_cloud_ok, NULL, NULL, cloud_ok(a) ? 1 : 0);
	collect_source_expiry(a);
}

static int metrics_setup(struct agent *a)
{
	const struct metric_label version[] = { { "version",
		version_values } };
	struct metrics *m;

	if (metrics_new(&a->metrics) != 0)
		return RAMKEY_ERR_NOMEM;
	m = a->metrics;
	if (metrics_gauge(m, "ramkey_build_info", "The agent's version, in "
	    "the label; always 1.", version, 1, &a->m_build) != 0 ||
	    metrics_gauge(m, "ramkey_leases_live", "Leases live now (each "
	    "one credential held for one user).", NULL, 0, &a->m_live) != 0 ||
	    metrics_gauge(m, "ramkey_revocations_pending", "Leases ended "
	    "whose credential the cloud has not yet confirmed ended (retried "
	    "until it does).", NULL, 0, &a->m_pending) != 0 ||
	    metrics_gauge(m, "ramkey_store_writable", "1 when the state store "
	    "accepts writes; 0 when it does not (no new mints).", NULL, 0,
	    &a->m_store_ok) != 0 ||
	    metrics_gauge(m, "ramkey_cloud_healthy", "0 when the last cloud "
	    "API try failed for a transport or 5xx reason and none has "
	    "succeeded since, else 1.", NULL, 0, &a->m_cloud_ok) != 0 ||
	    metrics_gauge(m, "ramkey_source_credential_expiry_timestamp_"
	    "seconds", "When the agent's own credential expires (Unix time); "
	    "no sample for one that does not expire.", NULL, 0,
	    &a->m_source_expiry) != 0)
		return RAMKEY_ERR_NOMEM;
	return 0;
}

/* status --json: the agent's own credential, never its secret. */
static void status_source(void *arg, struct json_object *doc)
{
	struct agent *a = arg;
	struct source_status st;
	struct json_object *o;
	char t[32];

	if (a->src == NULL || (o = json_object_new_object()) == NULL)
		return;
	source_get_status(a->src, &st);
	json_object_object_add(o, "source", json_object_new_string(st.origin));
	json_object_object_add(o, "type", json_object_new_string(st.type));
	json_object_object_add(o, "kind", json_object_new_string(
	    st.temporary ? "temporary" : "static"));
	if (st.expires > 0)
		ramkey_format_time(st.expires, t);
	json_object_object_add(o, "expires", st.expires > 0 ?
	    json_object_new_string(t) : NULL);
	json_object_object_add(o, "renewable",
	    json_object_new_boolean(st.renewable));
	json_object_object_add(o, "access_key_id", st.key_id[0] ?
	    json_object_new_string(st.key_id) : NULL);
	json_object_object_add(o, "role", st.role != NULL ?
	    json_object_new_string(st.role) : NULL);
	json_object_object_add(o, "usable", json_object_new_boolean(st.usable));
	json_object_object_add(o, "error", st.why[0] ?
	    json_object_new_string(st.why) : NULL);
	json_object_object_add(doc, "source", o);
}

/* Facts the status document gets from the top: the agent's own
 * credential and its PGP helpers. */
static void status_extra(void *arg, struct json_object *doc)
{
	struct agent *a = arg;

	status_source(a, doc);
	status_pgp(a, doc);
}

/* Prepare hook: hand what is staged to the store's committer first. */
static void store_hook(void *arg)
{
	struct agent *a = arg;

	if (store_has_pending(a->store))
		store_commit(a->store);
	/* Commit callbacks may have queued more work for the next batch. */
	if (store_has_pending(a->store))
		evloop_wake(a->loop);
	if (store_broken(a->store) && !ev_timer_armed(&a->store_timer))
		(void)evloop_timer_arm(a->loop, &a->store_timer,
		    evloop_now() + STORE_RETRY_MS);
}

/* While the store is broken, try every few seconds to rewrite it. */
static void store_retry(void *arg)
{
	struct agent *a = arg;

	if (store_broken(a->store) && lease_core_resync(a->core) != 0)
		(void)evloop_timer_arm(a->loop, &a->store_timer,
		    evloop_now() + STORE_RETRY_MS);
}

static void agent_free(struct agent *a)
{
	/* Requests first (they wait on everything else), then the lease
	 * core (its kinds cancel their cloud calls), then the rest; the
	 * metrics registry last, after everything that counts in it. */
	heap_trim_stop(&a->heap_trim);
	metrics_file_free(a->mfile);
	if (a->collecting)
		metrics_remove_collector(a->metrics, collect_gauges, a);
	server_free(a->srv);
	lease_core_free(a->core);
	if (!a->kind_added && a->access_key.ops != NULL)
		a->access_key.ops->free(a->access_key.state);
	if (!a->sts_added && a->sts_kind.ops != NULL)
		a->sts_kind.ops->free(a->sts_kind.state);
	pgp_worker_free(a->pgp);
	keybase_free(a->kb);
	ram_client_free(a->sts);
	ram_client_free(a->ram);
	free(a->role_rules);
	source_free(a->src);
	store_close(a->store);
	worker_pool_free(a->workers);
	if (a->loop != NULL)
		evloop_timer_cancel(a->loop, &a->store_timer);
	if (a->signal_fd > 0)
		close(a->signal_fd);
	evloop_free(a->loop);
	metrics_free(a->metrics);
	config_free(a->cfg);
}

static int start_layers(struct agent *a, const struct source_spec *spec)
{
	struct ram_client_config rc;
	struct keybase_config kc;
	struct pgp_fetcher fetcher;
	struct pgp_config pc;
	char helper[PATH_MAX];
	struct lease_store_port sp;
	struct lease_effects fx;
	struct lease_config lc;
	struct server_config sc;
	struct server_deps deps;
	struct access_key_config akc;
	struct sts_config stc;
	char *err = NULL;
	int r;

	memset(&rc, 0, sizeof(rc));
	rc.endpoint = a->cfg->endpoint;
	rc.ca_file = a->cfg->ca_file;
	rc.proxy = a->cfg->proxy;
	rc.allow_http = a->cfg->allow_http;
	rc.signature = a->cfg->signature;
	rc.create_timeout_ms = a->cfg->create_timeout * 1000;
	rc.update_timeout_ms = a->cfg->update_timeout * 1000;
	rc.delete_timeout_ms = a->cfg->delete_timeout * 1000;
	/* ListAccessKeys is part of a mint: it shares create_timeout. */
	rc.read_timeout_ms = a->cfg->create_timeout * 1000;
	if (metrics_setup(a) != 0) {
		log_err("out of memory");
		return EXIT_START;
	}
	if ((r = ram_client_new(a->loop, &rc, &a->ram)) != 0) {
		log_err("%s: endpoint %s: cannot set up the RAM client: %s",
		    a->cfg->path, a->cfg->endpoint, ramkey_strerror(r));
		return EXIT_CONFIG;
	}
	/* The STS client of a chained role shares the RAM client's TLS and
	 * proxy settings. */
	if ((r = source_new(a->loop, spec, &rc, &a->src)) != 0) {
		log_err("%s: cannot set up the agent's credential from %s: %s",
		    a->cfg->path, spec->where, ramkey_strerror(r));
		return EXIT_CONFIG;
	}
	ram_client_set_credential_source(a->ram, source_credential, a->src);
	keybase_config_of(a->cfg, &kc);
	if (keybase_new(a->loop, &kc, &a->kb) != 0) {
		log_err("%s: keybase_url %s: cannot set up the Keybase client",
		    a->cfg->path, a->cfg->keybase_url);
		return EXIT_CONFIG;
	}
	fetcher.ctx = a->kb;
	fetcher.fetch = kb_fetch;
	fetcher.cancel = kb_cancel;
	memset(&pc, 0, sizeof(pc));
	pc.helper = pgp_helper_path(helper, sizeof(helper));
	if (pgp_worker_new(a->loop, &pc, &fetcher, &a->pgp) != 0) {
		log_err("cannot start the PGP worker");
		return EXIT_START;
	}
	if (pgp_worker_unavailable(a->pgp) != NULL)
		log_warn("PGP keys cannot be used: %s",
		    pgp_worker_unavailable(a->pgp));
	else
		log_pgp_confinement(a->pgp);
	if (worker_pool_new(a->loop, WORKER_THREADS, &a->workers) != 0) {
		log_err("cannot start the worker threads");
		return EXIT_START;
	}
	if (store_open(a->cfg->state_dir, &a->store, &err) != 0) {
		log_err("%s", err);
		free(err);
		return EXIT_START;
	}
	lease_store_port_sqlite(&sp, a->store);
	effects_init(&fx, a->workers);
	lease_config_of(a->cfg, &lc);
	akc.revoke = a->cfg->revoke == REVOKE_DEACTIVATE ?
	    ACCESS_KEY_REVOKE_DEACTIVATE : ACCESS_KEY_REVOKE_DELETE;
	if (lease_core_new(a->loop, &lc, &sp, &fx, &a->core) != 0 ||
	    access_key_kind_new(a->ram, &akc, &a->access_key) != 0 ||
	    lease_core_add_kind(a->core, &a->access_key) != 0 ||
	    lease_core_set_metrics(a->core, a->metrics) != 0 ||
	    ram_client_set_metrics(a->ram, a->metrics) != 0 ||
	    metrics_add_collector(a->metrics, collect_gauges, a) != 0) {
		log_err("out of memory");
		return EXIT_START;
	}
	a->collecting = true;
	a->kind_added = true;
	/* STS leases may be in the store even if credential = access_key
	 * now: their kind ends them as it must. */
	rc.endpoint = a->cfg->sts_endpoint;
	rc.api_version = "2015-04-01";
	sts_config_of(a->cfg, &stc);
	if ((r = ram_client_new(a->loop, &rc, &a->sts)) != 0) {
		log_err("%s: sts_endpoint %s: cannot set up the STS client: %s",
		    a->cfg->path, a->cfg->sts_endpoint, ramkey_strerror(r));
		return EXIT_CONFIG;
	}
	/* Users' STS credentials are assumed with the agent's own. */
	ram_client_set_credential_source(a->sts, source_credential, a->src);
	ram_client_share_metrics(a->sts, a->ram);
	if (sts_kind_new(a->sts, &stc, &a->sts_kind) != 0 ||
	    lease_core_add_kind(a->core, &a->sts_kind) != 0) {
		log_err("out of memory");
		return EXIT_START;
	}
	a->sts_added = true;
	if (lease_core_recover(a->core, a->boot_id) != 0) {
		log_err("cannot load the state store in %s", a->cfg->state_dir);
		return EXIT_START;
	}
	if (store_start(a->store, a->loop) != 0) {
		log_err("cannot start the state store's committer");
		return EXIT_START;
	}
	ev_timer_init(&a->store_timer, store_retry, a);
	if (heap_trim_start(&a->heap_trim, a->loop) != 0) {
		log_err("out of memory");
		return EXIT_START;
	}
	if (evloop_add_prepare(a->loop, store_hook, a) != 0) {
		log_err("out of memory");
		return EXIT_START;
	}
	memset(&deps, 0, sizeof(deps));
	deps.loop = a->loop;
	deps.core = a->core;
	deps.pgp = a->pgp;
	deps.workers = a->workers;
	deps.health.arg = a;
	deps.health.cloud_ok = cloud_ok;
	deps.health.last_error = cloud_last_error;
	if ((a->role_rules = role_rules_of(a->cfg)) == NULL) {
		log_err("out of memory");
		return EXIT_START;
	}
	deps.metrics = a->metrics;
	deps.health.status_extra = status_extra;
	server_config_of(a->cfg, &sc, a->role_rules);
	if (server_new(&deps, &sc, &a->srv) != 0) {
		log_err("out of memory");
		return EXIT_START;
	}
	if (server_listen(a->srv, &err) != 0) {
		log_err("%s", err);
		free(err);
		return EXIT_START;
	}
	if (metrics_file_new(a->loop, a->workers, a->metrics, &a->mfile) != 0 ||
	    metrics_file_configure(a->mfile, a->cfg->metrics_file,
	    a->cfg->metrics_interval) != 0) {
		log_err("out of memory");
		return EXIT_START;
	}
	/* Serve from now on; calls that need the cloud wait for it. */
	if (source_start(a->src) != 0) {
		log_err("out of memory");
		return EXIT_START;
	}
	return 0;
}

/*
 * The instance role is safe only if ordinary accounts cannot reach the
 * metadata service; only root can find out. Returns 0 or EXIT_CONFIG.
 */
static int check_imds(const struct config *cfg, const struct source_spec *spec)
{
	char d[256];

	switch (preflight_imds(spec->metadata_url, d, sizeof(d))) {
	case PREFLIGHT_IMDS_OPEN:
		if (!cfg->imds_unrestricted_ok) {
			log_err("%s: credential_source %s: an ordinary account "
			    "can reach the instance metadata service at %s "
			    "(%s), so any local user could take the instance "
			    "role's credential; load the nftables rule that "
			    "lets only root and " RAMKEY_USER " reach it "
			    "(nft -f " RAMKEY_NFT_RULE ") or set "
			    "imds_unrestricted_ok = yes", cfg->path,
			    spec->profile_type, spec->metadata_url, d);
			return EXIT_CONFIG;
		}
		log_warn("imds_unrestricted_ok = yes: ordinary accounts can "
		    "reach the instance metadata service (%s) and take the "
		    "instance role's credential", d);
		break;
	case PREFLIGHT_IMDS_RESTRICTED:
		log_info("the instance metadata service is restricted: %s", d);
		break;
	case PREFLIGHT_IMDS_UNKNOWN:
	default:
		if (geteuid() != 0)
			log_info("cannot check whether ordinary accounts can "
			    "reach the instance metadata service: %s; the unit "
			    "checks it as root before the start "
			    "(ExecStartPre=+ramkey-agent --check-config)", d);
		else
			log_warn("cannot check whether ordinary accounts can "
			    "reach the instance metadata service: %s", d);
		break;
	}
	return 0;
}

/*
 * Everything that can refuse the set-up before the agent starts, each
 * failure one line naming the file or key and why: the agent's own
 * credential, the files the configuration names (opened as the agent's
 * account would: with --check-config as root, the unit's account), and
 * for the instance role, that ordinary accounts cannot reach the metadata
 * service. Returns 0 or an exit status.
 */
static int check_setup(const struct config *cfg, bool check,
    const char *check_as, struct source_spec **specp)
{
	struct config_file files[CONFIG_FILES_MAX];
	struct preflight_account acct;
	struct source_spec *spec = NULL;
	char *err = NULL;
	size_t n;
	int status = EXIT_CONFIG;

	*specp = NULL;
	if (source_resolve(cfg, &spec, &err) != 0) {
		log_err("%s", err);
		goto out;
	}
	if (check) {
		if (preflight_account(check_as, &acct, &err) != 0) {
			log_err("%s", err);
			goto out;
		}
	} else {
		preflight_self(&acct);
	}
	n = config_named_files(cfg, spec, files, CONFIG_FILES_MAX);
	if (preflight_files(&acct, files, n, &err) != 0) {
		log_err("%s: %s", cfg->path, err);
		goto out;
	}
	if (cfg->ca_file != NULL && cfg->ca_file[0] != '\0' &&
	    curl_trust_check_file(cfg->ca_file) != 0) {
		log_err("%s: ca_file %s: holds no certificate OpenSSL can "
		    "read; it must be PEM text, one or more "
		    "-----BEGIN CERTIFICATE----- blocks", cfg->path,
		    cfg->ca_file);
		goto out;
	}
	if (spec->type == SOURCE_IMDS && check_imds(cfg, spec) != 0)
		goto out;
	*specp = spec;
	spec = NULL;
	status = 0;
out:
	free(err);
	source_spec_free(spec);
	return status;
}

/* What the log says of the configuration's choices, once it is good. */
static void log_setup(const struct config *cfg, const struct source_spec *spec)
{
	char warn[512];

	log_info("agent credential: %s", spec->choice);
	if (spec->type == SOURCE_STATIC && spec->token != NULL) {
		char t[32];

		if (spec->token_expires > 0)
			ramkey_format_time(spec->token_expires, t);
		log_warn("agent credential: ALIBABA_CLOUD_SECURITY_TOKEN is a "
		    "temporary credential the agent cannot renew: it stops "
		    "working at %s%s; restart the agent with a new one before "
		    "then", spec->token_expires > 0 ? t : "its expiry, which "
		    "the environment does not say",
		    spec->token_expires > 0 ? "" : " (set ALIBABA_CLOUD_"
		    "SECURITY_TOKEN_EXPIRATION to have it shown)");
	}
	if (config_ram_user_warning(cfg, warn, sizeof(warn)))
		log_warn("%s", warn);
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "foreground", no_argument, NULL, 'f' },
		{ "debug", no_argument, NULL, 'd' },
		{ "check-config", no_argument, NULL, 'C' },
		{ "sweep", no_argument, NULL, 'S' },
		{ "apply", no_argument, NULL, 'a' },
		{ "check-as", required_argument, NULL, 'A' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	struct agent a;
	struct source_spec *spec = NULL;
	const char *path = RAMKEY_DEFAULT_CONFIG, *check_as = NULL;
	bool explicit = false, foreground = false, debug = false, check = false;
	bool sweep = false, apply = false;
	struct cloud_wipe_status wipe;
	char *err = NULL, desc[SOURCE_WHY_MAX];
	int c, status = EXIT_START;

	memset(&a, 0, sizeof(a));
	a.signal_fd = -1;
	while ((c = getopt_long(argc, argv, "c:fdhV", opts, NULL)) != -1) {
		switch (c) {
		case 'c':
			path = optarg;
			explicit = true;
			break;
		case 'f':
			foreground = true;
			break;
		case 'd':
			debug = true;
			break;
		case 'C':
			check = true;
			break;
		case 'S':
			sweep = true;
			break;
		case 'a':
			apply = true;
			break;
		case 'A':
			check_as = optarg;
			break;
		case 'h':
			usage(stdout);
			return 0;
		case 'V':
			printf("ramkey-agent %s\n", RAMKEY_VERSION);
			return 0;
		default:
			usage(stderr);
			return EXIT_USAGE;
		}
	}
	if (optind != argc) {
		fprintf(stderr, "ramkey-agent: unexpected argument %s\n",
		    argv[optind]);
		usage(stderr);
		return EXIT_USAGE;
	}
	if (apply && !sweep) {
		fprintf(stderr, "ramkey-agent: --apply goes with --sweep\n");
		return EXIT_USAGE;
	}
	if (sweep && check) {
		fprintf(stderr, "ramkey-agent: --sweep and --check-config are "
		    "separate runs\n");
		return EXIT_USAGE;
	}
	if (check_as != NULL && !check) {
		fprintf(stderr, "ramkey-agent: --check-as goes with "
		    "--check-config\n");
		usage(stderr);
		return EXIT_USAGE;
	}
	/* --check-config and --sweep are commands run by hand or by a
	 * timer: their messages go to stderr (the journal, under systemd). */
	log_init("ramkey-agent", foreground || check || sweep, debug);
	harden();
	if (config_load(path, explicit, &a.cfg, &err) != 0) {
		log_err("%s", err);
		free(err);
		return EXIT_CONFIG;
	}
	/* First: OpenSSL's allocator can be replaced (wipe_mem.h) only
	 * before anything, the checks' metadata probe included, uses it. */
	if (sodium_init() < 0 || cloud_global_init(&wipe) != 0) {
		log_err("cannot initialise libsodium or libcurl");
		goto out;
	}
	if ((status = check_setup(a.cfg, check, check_as, &spec)) != 0)
		goto out;
	status = EXIT_START;
	if (check) {
		log_setup(a.cfg, spec);
		source_spec_describe(spec, desc, sizeof(desc));
		printf("%s: configuration OK (agent credential: %s)\n",
		    a.cfg->path, desc);
		status = 0;
		goto out;
	}
	if (sweep) {
		status = sweep_run(a.cfg, spec, apply, stdout);
		goto out;
	}
	log_config(a.cfg);
	log_setup(a.cfg, spec);
	if (block_signals() != 0) {
		log_err("cannot block signals");
		goto out;
	}
	/* Secrets in libcurl's and OpenSSL's buffers (wipe_mem.h). */
	if (!wipe.openssl_hooks)
		log_warn("OpenSSL was in use before its allocator could be "
		    "replaced: the buffers it frees are not wiped");
	if (!wipe.tls_cleanse)
		log_warn("libcurl's TLS library is not OpenSSL 3: received "
		    "plaintext stays in its buffers until overwritten");
	if (evloop_new(&a.loop) != 0) {
		log_err("out of memory");
		goto out;
	}
	if (proc_boot_id(a.boot_id) != 0) {
		log_err("cannot read /proc/sys/kernel/random/boot_id");
		goto out;
	}
	if ((status = start_layers(&a, spec)) != 0)
		goto out;
	status = EXIT_START;
	source_spec_free(spec);
	spec = NULL;
	/* The agent's credential has been copied into locked memory: do
	 * not leave it in the environment for children (gpg) to inherit. */
	scrub_env("ALIBABA_CLOUD_ACCESS_KEY_SECRET");
	scrub_env("ALIBABA_CLOUD_ACCESS_KEY_ID");
	scrub_env("ALIBABA_CLOUD_SECURITY_TOKEN");
	scrub_env("ALIBABA_CLOUD_SECURITY_TOKEN_EXPIRATION");
	if (setup_signals(&a) != 0) {
		log_err("cannot set up signal handling");
		goto out;
	}
	log_info("listening on %s%s (pid %ld)", a.cfg->socket,
	    server_socket_activated(a.srv) ? " (socket activation)" : "",
	    (long)getpid());
	sd_notify_msg("READY=1");
	if (evloop_run(a.loop) != 0) {
		log_err("event loop failed: %s", strerror(errno));
		goto out;
	}
	sd_notify_msg("STOPPING=1");
	status = 0;
out:
	if (a.srv != NULL)
		server_close(a.srv);
	if (a.core != NULL)
		lease_core_stop(a.core);
	/* What is staged becomes durable before anything is freed. */
	if (a.store != NULL)
		store_flush(a.store);
	source_spec_free(spec);
	agent_free(&a);
	secure_buf_drain();
	cloud_global_cleanup();
	return status;
}
