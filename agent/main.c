/*
 * ramkey-agent: holds the host's RAM administrator key and mints, shares
 * and revokes AccessKeys for local users over a Unix socket.
 */
#include <errno.h>
#include <getopt.h>
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
#include <sodium.h>

#include "agent.h"
#include "duration.h"
#include "lease_store.h"
#include "log.h"
#include "pgp.h"
#include "ramkey_err.h"
#include "secret_arena.h"
#include "strmap.h"

#define EXIT_CONFIG 1
#define EXIT_USAGE 2
#define EXIT_START 3

static void usage(FILE *f)
{
	fprintf(f,
	    "usage: ramkey-agent [-c FILE] [-f] [-d] [--check-config]\n"
	    "\n"
	    "  -c, --config FILE   configuration file (default %s)\n"
	    "  -f, --foreground    stay in the foreground and log to stderr\n"
	    "  -d, --debug         also log debug messages\n"
	    "      --check-config  check the configuration and the admin "
	    "credentials, then exit\n"
	    "  -h, --help          this text\n"
	    "  -V, --version       print the version\n"
	    "\n"
	    "Exit status: 0 clean stop, 1 configuration error, 2 usage, "
	    "3 cannot start.\n", RAMKEY_DEFAULT_CONFIG);
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
	log_info("config %s: socket=%s state_dir=%s endpoint=%s signature=%s "
	    "ram_user=%s min_uid=%lu max_ttl=%s fetch_ttl=%s revoke=%s",
	    c->path, c->socket, c->state_dir, c->endpoint,
	    c->signature == RAM_SIG_V1 ? "v1" : "v3", c->ram_user,
	    (unsigned long)c->min_uid, max, fetch,
	    c->revoke == REVOKE_DELETE ? "delete" : "deactivate");
	if (c->fetch_ttl_clamped)
		log_warn("fetch_ttl is longer than max_ttl; using %s", fetch);
}

static bool str_changed(const char *a, const char *b)
{
	if (a == NULL || b == NULL)
		return a != b;
	return strcmp(a, b) != 0;
}

/* SIGHUP: a new valid configuration replaces the old one; an invalid one
 * is reported and the old one kept. */
static void reload(struct agent *a)
{
	struct config *nc = NULL, *old = a->cfg;
	struct admin_credentials *cred = NULL;
	char *err = NULL;

	if (config_load(old->path, true, &nc, &err) != 0) {
		log_err("reload: %s; keeping the previous configuration", err);
		free(err);
		return;
	}
	if (credentials_load(nc, &cred, &err) != 0) {
		log_err("reload: %s; keeping the previous configuration", err);
		free(err);
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
#undef KEEP
	nc->allow_http = old->allow_http;
	nc->signature = old->signature;
	nc->create_timeout = old->create_timeout;
	nc->update_timeout = old->update_timeout;
	nc->delete_timeout = old->delete_timeout;
	if (ram_client_set_credentials(a->ram, cred->key_id, cred->secret) !=
	    0) {
		log_err("reload: cannot install the new credentials; keeping "
		    "the previous configuration");
		credentials_free(cred);
		config_free(nc);
		return;
	}
	credentials_free(cred);
	a->cfg = nc;
	if (a->pgp != NULL)
		(void)pgp_worker_reconfigure(a->pgp, nc);
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
			a->stopping = true;
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

static void agent_free(struct agent *a)
{
	struct strmap_iter it;
	void *v;

	/* Cancel outside work first so no callback runs into freed state. */
	if (a->pgp != NULL)
		pgp_worker_free(a->pgp);
	if (a->ram != NULL)
		ram_client_free(a->ram);
	if (a->loop != NULL)
		conns_free_all(a);
	if (a->ram_users != NULL)
		mints_free_all(a);
	if (a->leases != NULL) {
		strmap_iter_init(&it);
		while (strmap_next(a->leases, &it, NULL, &v)) {
			struct lease *l = v;

			/* The loop's timer heap points into the lease. */
			evloop_timer_cancel(a->loop, &l->max_ttl_timer);
			evloop_timer_cancel(a->loop, &l->ttl_timer);
			evloop_timer_cancel(a->loop, &l->revoke_timer);

			while (l->sessions != NULL) {
				struct session *s = l->sessions;

				l->sessions = s->next_in_lease;
				if (s->pidfd >= 0)
					close(s->pidfd);
				session_free(s);
			}
			lease_free(l);
		}
	}
	if (a->users != NULL) {
		strmap_iter_init(&it);
		while (strmap_next(a->users, &it, NULL, &v)) {
			struct user_state *u = v;

			while (u->files != NULL) {
				struct file_rec *f = u->files;

				u->files = f->next;
				file_rec_free(f);
			}
			free(u->name);
			free(u);
		}
	}
	if (a->ram_users != NULL) {
		strmap_iter_init(&it);
		while (strmap_next(a->ram_users, &it, NULL, &v)) {
			struct ram_user_state *rs = v;

			evloop_timer_cancel(a->loop, &rs->reconcile_timer);
			free(rs->name);
			free(rs->mint_times);
			free(rs);
		}
	}
	if (a->uids != NULL) {
		strmap_iter_init(&it);
		while (strmap_next(a->uids, &it, NULL, &v))
			free(v);
	}
	if (a->ambiguous != NULL) {
		strmap_iter_init(&it);
		while (strmap_next(a->ambiguous, &it, NULL, &v))
			free(v);
	}
	strmap_free(a->users);
	strmap_free(a->ram_users);
	strmap_free(a->leases);
	strmap_free(a->sessions);
	strmap_free(a->uids);
	strmap_free(a->ambiguous);
	lease_store_close(a->store);
	secret_arena_free(a->arena);
	if (a->loop != NULL) {
		evloop_timer_cancel(a->loop, &a->accept_timer);
		evloop_timer_cancel(a->loop, &a->store_timer);
	}
	if (a->signal_fd > 0)
		close(a->signal_fd);
	evloop_free(a->loop);
	config_free(a->cfg);
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "foreground", no_argument, NULL, 'f' },
		{ "debug", no_argument, NULL, 'd' },
		{ "check-config", no_argument, NULL, 'C' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	struct agent a;
	struct admin_credentials *cred = NULL;
	struct ram_client_config rc;
	const char *path = RAMKEY_DEFAULT_CONFIG;
	bool explicit = false, foreground = false, debug = false, check = false;
	char *err = NULL;
	int c, status = EXIT_START;

	memset(&a, 0, sizeof(a));
	a.listen_fd = -1;
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
	log_init("ramkey-agent", foreground || check, debug);
	harden();
	if (config_load(path, explicit, &a.cfg, &err) != 0) {
		log_err("%s", err);
		free(err);
		return EXIT_CONFIG;
	}
	if (credentials_load(a.cfg, &cred, &err) != 0) {
		log_err("%s", err);
		free(err);
		config_free(a.cfg);
		return EXIT_CONFIG;
	}
	if (check) {
		printf("%s: configuration OK (admin key from %s)\n",
		    a.cfg->path, cred->source);
		credentials_free(cred);
		config_free(a.cfg);
		return 0;
	}
	log_config(a.cfg);
	if (block_signals() != 0) {
		log_err("cannot block signals");
		goto out;
	}
	if (sodium_init() < 0 || curl_global_init(CURL_GLOBAL_DEFAULT) != 0) {
		log_err("cannot initialise libsodium or libcurl");
		goto out;
	}
	ev_timer_init(&a.store_timer, agent_store_retry, &a);
	if (evloop_new(&a.loop) != 0 || secret_arena_new(&a.arena) != 0 ||
	    (a.users = strmap_new()) == NULL ||
	    (a.ram_users = strmap_new()) == NULL ||
	    (a.leases = strmap_new()) == NULL ||
	    (a.sessions = strmap_new()) == NULL ||
	    (a.uids = strmap_new()) == NULL ||
	    (a.ambiguous = strmap_new()) == NULL) {
		log_err("out of memory");
		goto out;
	}
	if (proc_boot_id(a.boot_id) != 0) {
		log_err("cannot read /proc/sys/kernel/random/boot_id");
		goto out;
	}
	memset(&rc, 0, sizeof(rc));
	rc.endpoint = a.cfg->endpoint;
	rc.ca_file = a.cfg->ca_file;
	rc.proxy = a.cfg->proxy;
	rc.allow_http = a.cfg->allow_http;
	rc.signature = a.cfg->signature;
	rc.create_timeout_ms = a.cfg->create_timeout * 1000;
	rc.update_timeout_ms = a.cfg->update_timeout * 1000;
	rc.delete_timeout_ms = a.cfg->delete_timeout * 1000;
	/* ListAccessKeys is part of a mint: it shares create_timeout. */
	rc.read_timeout_ms = a.cfg->create_timeout * 1000;
	if (ram_client_new(a.loop, &rc, &a.ram) != 0 ||
	    ram_client_set_credentials(a.ram, cred->key_id, cred->secret) !=
	    0) {
		log_err("%s: endpoint %s: cannot set up the RAM client",
		    a.cfg->path, a.cfg->endpoint);
		status = EXIT_CONFIG;
		goto out;
	}
	credentials_free(cred);
	cred = NULL;
	if (pgp_worker_new(a.loop, a.cfg, &a.pgp) != 0) {
		log_err("cannot start the PGP worker");
		goto out;
	}
	if (pgp_worker_unavailable(a.pgp) != NULL)
		log_warn("PGP keys cannot be used: %s",
		    pgp_worker_unavailable(a.pgp));
	if (lease_store_open(a.cfg->state_dir, &a.store, &err) != 0) {
		log_err("%s", err);
		free(err);
		goto out;
	}
	if (recovery_load(&a) != 0) {
		log_err("cannot load the state store in %s", a.cfg->state_dir);
		goto out;
	}
	/* The admin secret has been copied into locked memory: do not
	 * leave it in the environment for children (gpg) to inherit. */
	scrub_env("ALIBABA_CLOUD_ACCESS_KEY_SECRET");
	scrub_env("ALIBABA_CLOUD_ACCESS_KEY_ID");
	if (lease_store_start(a.store, a.loop) != 0) {
		log_err("cannot start the state store's committer");
		goto out;
	}
	if (listener_open(&a, &err) != 0) {
		log_err("%s", err);
		free(err);
		goto out;
	}
	if (setup_signals(&a) != 0 ||
	    evloop_add_prepare(a.loop, agent_flush, &a) != 0) {
		log_err("cannot set up signal handling");
		goto out;
	}
	log_info("listening on %s%s (pid %ld)", a.cfg->socket,
	    a.socket_activated ? " (socket activation)" : "", (long)getpid());
	sd_notify_msg("READY=1");
	if (evloop_run(a.loop) != 0) {
		log_err("event loop failed: %s", strerror(errno));
		goto out;
	}
	sd_notify_msg("STOPPING=1");
	status = 0;
out:
	listener_close(&a);
	/* What is staged becomes durable before anything is freed. */
	if (a.store != NULL)
		store_flush(a.store);
	credentials_free(cred);
	agent_free(&a);
	curl_global_cleanup();
	return status;
}
