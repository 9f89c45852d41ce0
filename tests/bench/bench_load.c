/*
 * bench_load: the load generator behind the benchmarks
 * (tests/bench/README.md). It speaks the agent protocol through
 * libramkey-proto exactly as the PAM module does (one connection per
 * request, ramkey_agent_call), and prints its results as one JSON object
 * per line for the Python drivers (tests/bench/bench_*.py) to turn into
 * figures.
 *
 *   bench_load crypto [-n N]
 *       The crypto floor's parts, measured in this process: key pair
 *       (ramkey_seal_keypair_new), seal (ramkey_seal), seal-open
 *       (ramkey_seal_open), a Unix-socket round trip on an open connection
 *       and one with connect/accept/close, each in microseconds.
 *
 *   bench_load floor-server SOCKET
 *       The floor: the same socket round trips and the same seal per open
 *       as the agent, with no agent logic (no JSON library, no lease, no
 *       store, no log). One thread, epoll, like the agent. Prints "ready"
 *       and serves until SIGTERM.
 *
 *   bench_load load SOCKET -p PREFIX -f FIRST -c COUNT -j CLIENTS
 *                  (-s SECONDS | -r REQUESTS) [-w WARMUP_S] [-x]
 *                  [-R PID -e EVERY]
 *       CLIENTS threads each loop: open_session for user PREFIX<i> (a fresh
 *       X25519 key pair, then seal-open of the reply), close_session.
 *       -x: no requester crypto (a random seal key, the box is not opened):
 *       only the agent's cost. -R/-e: every EVERY requests print the VmRSS
 *       of process PID.
 *
 *   bench_load hold SOCKET -p PREFIX -f FIRST -c COUNT -j CONCURRENCY
 *                  [-o open|fetch] [-t TTL] [-W]
 *       One open_session (or fetch with a TTL) for each of COUNT users,
 *       CONCURRENCY worker processes at a time; prints the wall time and
 *       latencies. -W: then keep the sessions (the workers are their
 *       watched processes) until stdin closes.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "frame.h"
#include "message.h"
#include "ramkey_err.h"
#include "requester.h"
#include "seal.h"

#define DEADLINE_MS 60000
#define SECRET "bench0secret0bench0secret0abcd" /* 30 characters, as RAM */

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void die(const char *what)
{
	fprintf(stderr, "bench_load: %s: %s\n", what, strerror(errno));
	exit(1);
}

static void *xcalloc(size_t n, size_t size)
{
	void *p = calloc(n, size);

	if (p == NULL)
		die("calloc");
	return p;
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

static uint32_t pct(const uint32_t *v, size_t n, double p)
{
	size_t i;

	if (n == 0)
		return 0;
	i = (size_t)(p * (double)(n - 1) + 0.5);
	return v[i < n ? i : n - 1];
}

/* ---- latency samples (microseconds) ---- */

struct samples {
	uint32_t *v;
	size_t n, cap;
};

static void samples_add(struct samples *s, uint64_t ns)
{
	if (s->n == s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 4096;
		uint32_t *v = realloc(s->v, cap * sizeof(*v));

		if (v == NULL)
			die("realloc");
		s->v = v;
		s->cap = cap;
	}
	s->v[s->n++] = (uint32_t)(ns / 1000 > UINT32_MAX ? UINT32_MAX :
	    ns / 1000);
}

static void samples_print(const char *name, struct samples *s)
{
	qsort(s->v, s->n, sizeof(*s->v), cmp_u32);
	printf("\"%s_p50_us\":%" PRIu32 ",\"%s_p90_us\":%" PRIu32
	    ",\"%s_p99_us\":%" PRIu32 ",\"%s_max_us\":%" PRIu32, name,
	    pct(s->v, s->n, 0.50), name, pct(s->v, s->n, 0.90), name,
	    pct(s->v, s->n, 0.99), name, s->n ? s->v[s->n - 1] : 0);
}

/* ---- VmRSS of another process ---- */

static long rss_kb(pid_t pid)
{
	char path[64], buf[4096], *p;
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "/proc/%ld/status", (long)pid);
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
		return -1;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return -1;
	buf[n] = '\0';
	if ((p = strstr(buf, "VmRSS:")) == NULL)
		return -1;
	return strtol(p + 6, NULL, 10);
}

/* ---- crypto: the parts of the floor ---- */

static void *rtt_echo(void *arg)
{
	int fd = *(int *)arg;
	char buf[512];
	static const char reply[320] = "r";

	for (;;) {
		ssize_t n = read(fd, buf, sizeof(buf));

		if (n <= 0)
			break;
		if (write(fd, reply, sizeof(reply)) != (ssize_t)sizeof(reply))
			break;
	}
	return NULL;
}

struct conn_server {
	int lfd;
	int n;
};

static void *conn_echo(void *arg)
{
	struct conn_server *cs = arg;
	char buf[512];
	static const char reply[320] = "r";
	int i;

	for (i = 0; i < cs->n; i++) {
		int fd = accept4(cs->lfd, NULL, NULL, SOCK_CLOEXEC);

		if (fd < 0)
			die("accept4");
		if (read(fd, buf, sizeof(buf)) > 0 &&
		    write(fd, reply, sizeof(reply)) < 0)
			die("write");
		/* wait for the peer's close, as the agent does */
		while (read(fd, buf, sizeof(buf)) > 0)
			;
		close(fd);
	}
	return NULL;
}

static int mode_crypto(int argc, char **argv)
{
	int n = 2000, i, opt, sv[2], lfd;
	uint8_t pk[32], sk[32], box[30 + crypto_box_SEALBYTES];
	struct ramkey_seal_keypair *kp = NULL;
	uint64_t t0;
	double kp_us, kpraw_us, seal_us, open_us, rtt_us, crtt_us;
	char buf[512], path[108];
	static const char req[200] = "q";
	pthread_t th;
	struct sockaddr_un sa;
	struct conn_server cs;

	while ((opt = getopt(argc, argv, "n:")) != -1) {
		if (opt == 'n')
			n = atoi(optarg);
		else
			return 2;
	}
	if (ramkey_crypto_init() != 0)
		return 1;

	t0 = now_ns();
	for (i = 0; i < n; i++) {
		if (ramkey_seal_keypair_new(&kp) != 0)
			return 1;
		ramkey_seal_keypair_free(kp);
	}
	kp_us = (double)(now_ns() - t0) / 1e3 / n;

	t0 = now_ns();
	for (i = 0; i < n; i++)
		crypto_box_keypair(pk, sk);
	kpraw_us = (double)(now_ns() - t0) / 1e3 / n;

	if (ramkey_seal_keypair_new(&kp) != 0)
		return 1;
	t0 = now_ns();
	for (i = 0; i < n; i++) {
		uint8_t *c = NULL;
		size_t clen = 0;

		if (ramkey_seal(kp->pk, SECRET, 30, &c, &clen) != 0)
			return 1;
		memcpy(box, c, sizeof(box));
		free(c);
	}
	seal_us = (double)(now_ns() - t0) / 1e3 / n;

	t0 = now_ns();
	for (i = 0; i < n; i++) {
		char *m = NULL;
		size_t mlen = 0;

		if (ramkey_seal_open(kp, box, sizeof(box), &m, &mlen) != 0)
			return 1;
		ramkey_secure_free(m);
	}
	open_us = (double)(now_ns() - t0) / 1e3 / n;
	ramkey_seal_keypair_free(kp);

	/* A round trip on an open connection: 200 bytes out, 320 back. */
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
		die("socketpair");
	if (pthread_create(&th, NULL, rtt_echo, &sv[1]) != 0)
		die("pthread_create");
	t0 = now_ns();
	for (i = 0; i < n; i++) {
		if (write(sv[0], req, sizeof(req)) != (ssize_t)sizeof(req) ||
		    read(sv[0], buf, sizeof(buf)) <= 0)
			die("round trip");
	}
	rtt_us = (double)(now_ns() - t0) / 1e3 / n;
	close(sv[0]);
	pthread_join(th, NULL);
	close(sv[1]);

	/* The same with connect / accept / close around it. */
	snprintf(path, sizeof(path), "/tmp/bench_load.%ld.sock",
	    (long)getpid());
	unlink(path);
	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	memcpy(sa.sun_path, path, strlen(path));
	if ((lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0 ||
	    bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
	    listen(lfd, 64) != 0)
		die("listen");
	cs.lfd = lfd;
	cs.n = n;
	if (pthread_create(&th, NULL, conn_echo, &cs) != 0)
		die("pthread_create");
	t0 = now_ns();
	for (i = 0; i < n; i++) {
		int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

		if (fd < 0 || connect(fd, (struct sockaddr *)&sa,
		    sizeof(sa)) != 0)
			die("connect");
		if (write(fd, req, sizeof(req)) != (ssize_t)sizeof(req) ||
		    read(fd, buf, sizeof(buf)) <= 0)
			die("round trip");
		close(fd);
	}
	crtt_us = (double)(now_ns() - t0) / 1e3 / n;
	pthread_join(th, NULL);
	close(lfd);
	unlink(path);

	printf("{\"mode\":\"crypto\",\"n\":%d,\"keypair_us\":%.1f,"
	    "\"keypair_raw_us\":%.1f,\"seal_us\":%.1f,\"open_us\":%.1f,"
	    "\"rtt_us\":%.1f,\"connect_rtt_us\":%.1f,\"ncpu\":%ld}\n", n,
	    kp_us, kpraw_us, seal_us, open_us, rtt_us, crtt_us,
	    sysconf(_SC_NPROCESSORS_ONLN));
	return 0;
}

/* ---- floor-server: crypto and round trips, nothing else ---- */

struct fconn {
	int fd;
	uint8_t buf[4096];
	size_t len;
};

static volatile sig_atomic_t stop_flag;

static void on_stop(int sig)
{
	(void)sig;
	stop_flag = 1;
}

/* The value of "key":"..." in a JSON text, without a JSON library. */
static int find_str(const char *body, const char *key, const char **v,
    size_t *vlen)
{
	const char *p = strstr(body, key), *e;

	if (p == NULL)
		return -1;
	p += strlen(key);
	while (*p == ' ' || *p == ':')
		p++;
	if (*p++ != '"' || (e = strchr(p, '"')) == NULL)
		return -1;
	*v = p;
	*vlen = (size_t)(e - p);
	return 0;
}

static int floor_answer(struct fconn *c, const char *body)
{
	char out[2048], b64[256];
	uint8_t pk[32], box[30 + crypto_box_SEALBYTES], tok[16];
	char tokhex[33];
	const char *v;
	size_t vlen, pklen = 0;
	int n;

	if (strstr(body, "\"open_session\"") != NULL) {
		if (find_str(body, "\"seal_key\"", &v, &vlen) != 0 ||
		    sodium_base642bin(pk, sizeof(pk), v, vlen, NULL, &pklen,
		    NULL, sodium_base64_VARIANT_ORIGINAL) != 0 || pklen != 32)
			return -1;
		if (crypto_box_seal(box, (const uint8_t *)SECRET, 30, pk) != 0)
			return -1;
		sodium_bin2base64(b64, sizeof(b64), box, sizeof(box),
		    sodium_base64_VARIANT_ORIGINAL);
		randombytes_buf(tok, sizeof(tok));
		sodium_bin2hex(tokhex, sizeof(tokhex), tok, sizeof(tok));
		n = snprintf(out + 4, sizeof(out) - 4,
		    "{\"v\":1,\"op\":\"open_session\",\"ok\":true,\"key\":{"
		    "\"access_key_id\":\"LTAI5tBenchFloor000000001\","
		    "\"create_date\":\"2026-11-27T20:18:10Z\",\"status\":"
		    "\"Active\",\"expires\":1764310690,"
		    "\"sealed_secret\":\"%s\"},"
		    "\"session\":\"%s\",\"region_id\":\"cn-hangzhou\"}", b64,
		    tokhex);
	} else if (strstr(body, "\"close_session\"") != NULL) {
		n = snprintf(out + 4, sizeof(out) - 4,
		    "{\"v\":1,\"op\":\"close_session\",\"ok\":true,"
		    "\"last_session\":false}");
	} else {
		return -1;
	}
	ramkey_frame_put_header((uint8_t *)out, (size_t)n);
	n += 4;
	for (ssize_t off = 0; off < n;) {
		ssize_t w = send(c->fd, out + off, (size_t)(n - off),
		    MSG_NOSIGNAL);

		if (w < 0 && errno == EAGAIN) {
			usleep(100);
			continue;
		}
		if (w <= 0)
			return -1;
		off += w;
	}
	return 0;
}

static int mode_floor_server(int argc, char **argv)
{
	struct sockaddr_un sa;
	struct epoll_event ev, evs[64];
	struct sigaction sact;
	int lfd, ep, i, n;

	if (argc < 2)
		return 2;
	if (ramkey_crypto_init() != 0)
		return 1;
	memset(&sact, 0, sizeof(sact));
	sact.sa_handler = on_stop;
	sigaction(SIGTERM, &sact, NULL);
	sigaction(SIGINT, &sact, NULL);
	signal(SIGPIPE, SIG_IGN);
	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	if (strlen(argv[1]) >= sizeof(sa.sun_path))
		return 2;
	memcpy(sa.sun_path, argv[1], strlen(argv[1]));
	unlink(argv[1]);
	if ((lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK,
	    0)) < 0 || bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
	    listen(lfd, 512) != 0)
		die("listen");
	chmod(argv[1], 0666);
	if ((ep = epoll_create1(EPOLL_CLOEXEC)) < 0)
		die("epoll_create1");
	memset(&ev, 0, sizeof(ev));
	ev.events = EPOLLIN;
	ev.data.ptr = NULL;
	if (epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev) != 0)
		die("epoll_ctl");
	printf("ready\n");
	fflush(stdout);
	while (!stop_flag) {
		if ((n = epoll_wait(ep, evs, 64, 200)) < 0) {
			if (errno == EINTR)
				continue;
			die("epoll_wait");
		}
		for (i = 0; i < n; i++) {
			struct fconn *c = evs[i].data.ptr;
			ssize_t r;
			size_t blen;

			if (c == NULL) {
				int fd;

				while ((fd = accept4(lfd, NULL, NULL,
				    SOCK_CLOEXEC | SOCK_NONBLOCK)) >= 0) {
					c = xcalloc(1, sizeof(*c));
					c->fd = fd;
					ev.events = EPOLLIN;
					ev.data.ptr = c;
					if (epoll_ctl(ep, EPOLL_CTL_ADD, fd,
					    &ev) != 0)
						die("epoll_ctl");
				}
				continue;
			}
			r = read(c->fd, c->buf + c->len,
			    sizeof(c->buf) - 1 - c->len);
			if (r < 0 && errno == EAGAIN)
				continue;
			if (r <= 0)
				goto drop;
			c->len += (size_t)r;
			if (c->len < 4)
				continue;
			if (ramkey_frame_parse_header(c->buf, &blen) != 0 ||
			    blen + 4 > sizeof(c->buf) - 1)
				goto drop;
			if (c->len < blen + 4)
				continue;
			c->buf[blen + 4] = '\0';
			if (floor_answer(c, (const char *)c->buf + 4) != 0)
				goto drop;
			c->len = 0;
			continue;
drop:
			epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
			close(c->fd);
			free(c);
		}
	}
	unlink(argv[1]);
	return 0;
}

/* ---- the requester side ---- */

struct opts {
	const char *sock;
	const char *prefix;
	unsigned first, count, clients;
	double seconds, warmup;
	uint64_t requests;
	bool no_crypto;
	pid_t rss_pid;
	uint64_t rss_every;
	bool fetch;
	uint64_t ttl;
	bool wait_stdin;
};

static struct opts o = {
	.prefix = "rkb", .count = 1, .clients = 1, .ttl = 3600,
};

/* Shared by the worker threads or processes (MAP_SHARED). */
struct shared {
	atomic_uint_fast64_t next_index;
	atomic_uint_fast64_t requests_done;
	atomic_uint_fast64_t rss_next;
	atomic_bool running;
	atomic_bool measuring;
	atomic_uint_fast64_t nerrors;
	atomic_uint_fast64_t last_end_ns; /* when the last worker stopped */
	pthread_mutex_t print_lock;
	char first_error[512];
};

static struct shared *sh;

static void shared_init(void)
{
	pthread_mutexattr_t ma;

	sh = mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE,
	    MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (sh == MAP_FAILED)
		die("mmap");
	memset(sh, 0, sizeof(*sh));
	atomic_store(&sh->running, true);
	pthread_mutexattr_init(&ma);
	pthread_mutexattr_setpshared(&ma, PTHREAD_PROCESS_SHARED);
	pthread_mutex_init(&sh->print_lock, &ma);
	pthread_mutexattr_destroy(&ma);
}

static void note_error(const char *what, int r, const char *why)
{
	pthread_mutex_lock(&sh->print_lock);
	if (sh->first_error[0] == '\0')
		snprintf(sh->first_error, sizeof(sh->first_error),
		    "%s: %s (%s)", what, ramkey_strerror(r),
		    why != NULL ? why : "");
	pthread_mutex_unlock(&sh->print_lock);
	atomic_fetch_add(&sh->nerrors, 1);
}

static void json_str(const char *s)
{
	putchar('"');
	for (; *s; s++) {
		if (*s == '"' || *s == '\\')
			printf("\\%c", *s);
		else if ((unsigned char)*s < 0x20)
			printf("\\u%04x", (unsigned char)*s);
		else
			putchar(*s);
	}
	putchar('"');
}

static void count_request(void)
{
	uint64_t done = atomic_fetch_add(&sh->requests_done, 1) + 1;
	uint64_t want = atomic_load(&sh->rss_next);

	if (o.rss_pid > 0 && done >= want &&
	    atomic_compare_exchange_strong(&sh->rss_next, &want,
	    want + o.rss_every)) {
		long kb = rss_kb(o.rss_pid);

		pthread_mutex_lock(&sh->print_lock);
		printf("{\"rss_kb\":%ld,\"requests\":%" PRIu64 "}\n", kb,
		    done);
		fflush(stdout);
		pthread_mutex_unlock(&sh->print_lock);
	}
}

/*
 * One open_session for user, as the PAM module sends it. With crypto, a
 * fresh key pair and a seal-open of the reply; token receives the session.
 */
static int do_open(const char *user, char token[RAMKEY_SESSION_TOKEN_LEN + 1],
    bool crypto)
{
	struct ramkey_request *req = NULL;
	struct ramkey_reply *rep = NULL;
	struct ramkey_seal_keypair *kp = NULL;
	char why[256] = "", path[128], *secret = NULL;
	size_t slen = 0;
	int r = RAMKEY_ERR_NOMEM;

	if ((req = ramkey_request_new(o.fetch ? RAMKEY_OP_FETCH :
	    RAMKEY_OP_OPEN_SESSION)) == NULL ||
	    (req->user = strdup(user)) == NULL)
		goto out;
	req->has_seal_pk = true;
	if (crypto) {
		if ((r = ramkey_seal_keypair_new(&kp)) != 0)
			goto out;
		memcpy(req->seal_pk, kp->pk, sizeof(req->seal_pk));
	} else {
		randombytes_buf(req->seal_pk, sizeof(req->seal_pk));
	}
	if (o.fetch) {
		req->has_ttl = true;
		req->ttl = o.ttl;
	} else {
		snprintf(path, sizeof(path),
		    "/run/user/%s/ramkey/credentials.json", user);
		r = RAMKEY_ERR_NOMEM;
		if ((req->secret_file = strdup(path)) == NULL ||
		    (req->rhost = strdup("192.0.2.10")) == NULL ||
		    (req->tty = strdup("ssh")) == NULL ||
		    (req->service = strdup("sshd")) == NULL)
			goto out;
	}
	if ((r = ramkey_agent_call(o.sock, req, ramkey_now_ms() + DEADLINE_MS,
	    &rep, why, sizeof(why))) != 0) {
		note_error("call", r, why);
		goto out;
	}
	if (rep->error != 0) {
		r = rep->error;
		note_error("agent", r, rep->error_message);
		goto out;
	}
	r = RAMKEY_ERR_PROTOCOL;
	if (rep->key.sealed == NULL || (!o.fetch && rep->session == NULL)) {
		note_error("reply", r, "no sealed secret or session");
		goto out;
	}
	if (crypto) {
		if ((r = ramkey_seal_open(kp, rep->key.sealed,
		    rep->key.sealed_len, &secret, &slen)) != 0) {
			note_error("seal-open", r, NULL);
			goto out;
		}
		ramkey_secure_free(secret);
	}
	if (token != NULL && rep->session != NULL)
		snprintf(token, RAMKEY_SESSION_TOKEN_LEN + 1, "%s",
		    rep->session);
	r = 0;
out:
	ramkey_seal_keypair_free(kp);
	ramkey_reply_free(rep);
	ramkey_request_free(req);
	return r;
}

static int do_close(const char *user, const char *token)
{
	struct ramkey_request *req = NULL;
	struct ramkey_reply *rep = NULL;
	char why[256] = "";
	int r = RAMKEY_ERR_NOMEM;

	if ((req = ramkey_request_new(RAMKEY_OP_CLOSE_SESSION)) == NULL ||
	    (req->user = strdup(user)) == NULL ||
	    (req->session = strdup(token)) == NULL)
		goto out;
	if ((r = ramkey_agent_call(o.sock, req, ramkey_now_ms() + DEADLINE_MS,
	    &rep, why, sizeof(why))) != 0) {
		note_error("call", r, why);
		goto out;
	}
	if (rep->error != 0) {
		r = rep->error;
		note_error("agent", r, rep->error_message);
		goto out;
	}
	r = 0;
out:
	ramkey_reply_free(rep);
	ramkey_request_free(req);
	return r;
}

struct worker {
	pthread_t th;
	struct samples open_lat, pair_lat;
	uint64_t pairs;
};

static void *load_worker(void *arg)
{
	struct worker *w = arg;
	char user[128], token[RAMKEY_SESSION_TOKEN_LEN + 1];

	while (atomic_load(&sh->running)) {
		uint64_t i = atomic_fetch_add(&sh->next_index, 1), t0, t1, t2;
		bool m;

		if (o.requests != 0 && i >= o.requests / 2)
			break;
		snprintf(user, sizeof(user), "%s%u", o.prefix,
		    o.first + (unsigned)(i % o.count));
		m = atomic_load(&sh->measuring);
		t0 = now_ns();
		if (do_open(user, token, !o.no_crypto) != 0)
			continue;
		t1 = now_ns();
		count_request();
		if (do_close(user, token) != 0)
			continue;
		t2 = now_ns();
		count_request();
		if (m && atomic_load(&sh->measuring)) {
			w->pairs++;
			samples_add(&w->open_lat, t1 - t0);
			samples_add(&w->pair_lat, t2 - t0);
		}
	}
	return NULL;
}

static void parse_client_opts(int argc, char **argv)
{
	int opt;

	while ((opt = getopt(argc, argv, "p:f:c:j:s:r:w:xR:e:o:t:W")) != -1) {
		switch (opt) {
		case 'p': o.prefix = optarg; break;
		case 'f': o.first = (unsigned)strtoul(optarg, NULL, 10); break;
		case 'c': o.count = (unsigned)strtoul(optarg, NULL, 10); break;
		case 'j':
			o.clients = (unsigned)strtoul(optarg, NULL, 10);
			break;
		case 's': o.seconds = strtod(optarg, NULL); break;
		case 'r': o.requests = strtoull(optarg, NULL, 10); break;
		case 'w': o.warmup = strtod(optarg, NULL); break;
		case 'x': o.no_crypto = true; break;
		case 'R': o.rss_pid = (pid_t)strtol(optarg, NULL, 10); break;
		case 'e': o.rss_every = strtoull(optarg, NULL, 10); break;
		case 'o': o.fetch = strcmp(optarg, "fetch") == 0; break;
		case 't': o.ttl = strtoull(optarg, NULL, 10); break;
		case 'W': o.wait_stdin = true; break;
		default:
			fprintf(stderr, "bench_load: bad option\n");
			exit(2);
		}
	}
	if (o.count == 0 || o.clients == 0) {
		fprintf(stderr, "bench_load: -c and -j must be > 0\n");
		exit(2);
	}
}

/* A worker process: run the loop, then send the samples up the pipe. */
static void write_all(int fd, const void *buf, size_t len)
{
	const uint8_t *p = buf;

	while (len > 0) {
		ssize_t n = write(fd, p, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			_exit(1);
		p += n;
		len -= (size_t)n;
	}
}

static int read_all(int fd, void *buf, size_t len)
{
	uint8_t *p = buf;

	while (len > 0) {
		ssize_t n = read(fd, p, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static void worker_child(int fd)
{
	struct worker w;
	uint64_t hdr[3];

	uint64_t end, prev;

	memset(&w, 0, sizeof(w));
	load_worker(&w);
	end = now_ns();
	prev = atomic_load(&sh->last_end_ns);
	while (prev < end &&
	    !atomic_compare_exchange_weak(&sh->last_end_ns, &prev, end))
		;
	hdr[0] = w.pairs;
	hdr[1] = w.open_lat.n;
	hdr[2] = w.pair_lat.n;
	write_all(fd, hdr, sizeof(hdr));
	write_all(fd, w.open_lat.v, w.open_lat.n * sizeof(uint32_t));
	write_all(fd, w.pair_lat.v, w.pair_lat.n * sizeof(uint32_t));
	close(fd);
	_exit(0);
}

static void read_samples(int fd, struct samples *s, uint64_t n)
{
	uint32_t *v;

	if (n == 0)
		return;
	v = xcalloc(n, sizeof(*v));
	if (read_all(fd, v, n * sizeof(*v)) != 0)
		die("reading a worker's samples");
	while (s->cap < s->n + n) {
		size_t cap = s->cap ? s->cap * 2 : 4096;
		uint32_t *nv = realloc(s->v, cap * sizeof(*nv));

		if (nv == NULL)
			die("realloc");
		s->v = nv;
		s->cap = cap;
	}
	memcpy(s->v + s->n, v, n * sizeof(*v));
	s->n += n;
	free(v);
}

/*
 * Fork o.clients workers. Each runs child(fd, ctx), fd being the write end
 * of its own result pipe, and never returns; fds[i] gets the read end.
 */
static void spawn_workers(pid_t *pids, int *fds, void (*child)(int, void *),
    void *ctx)
{
	int pfd[2];
	unsigned i;

	fflush(stdout);
	for (i = 0; i < o.clients; i++) {
		if (pipe2(pfd, O_CLOEXEC) != 0)
			die("pipe2");
		if ((pids[i] = fork()) < 0)
			die("fork");
		if (pids[i] == 0) {
			close(pfd[0]);
			child(pfd[1], ctx);
		}
		close(pfd[1]);
		fds[i] = pfd[0];
	}
}

static void load_child(int fd, void *ctx)
{
	(void)ctx;
	worker_child(fd);
}

/*
 * Workers are processes, not threads: each requester (an sshd session's
 * PAM module) is its own process, and sodium_malloc's mmap/munmap in one
 * multi-threaded process would cost TLB shootdowns the real requesters
 * never pay.
 */
static int mode_load(int argc, char **argv)
{
	struct samples open_lat = { 0 }, pair_lat = { 0 };
	uint64_t pairs = 0, t0, t1 = 0, hdr[3];
	pid_t *pids;
	int *fds, st;
	unsigned i;

	if (argc < 2)
		return 2;
	o.sock = argv[1];
	parse_client_opts(argc - 1, argv + 1);
	if (o.seconds <= 0 && o.requests == 0)
		o.seconds = 5;
	if (o.rss_pid > 0 && o.rss_every == 0)
		o.rss_every = 100000;
	atomic_store(&sh->rss_next, o.rss_every);
	if (ramkey_crypto_init() != 0)
		return 1;
	signal(SIGPIPE, SIG_IGN);
	pids = xcalloc(o.clients, sizeof(*pids));
	fds = xcalloc(o.clients, sizeof(*fds));
	if (o.rss_pid > 0) {
		printf("{\"rss_kb\":%ld,\"requests\":0}\n", rss_kb(o.rss_pid));
	}
	atomic_store(&sh->measuring, o.warmup <= 0);
	spawn_workers(pids, fds, load_child, NULL);
	if (o.warmup > 0) {
		usleep((useconds_t)(o.warmup * 1e6));
		atomic_store(&sh->measuring, true);
	}
	t0 = now_ns();
	if (o.seconds > 0) {
		usleep((useconds_t)(o.seconds * 1e6));
		atomic_store(&sh->measuring, false);
		t1 = now_ns();
		atomic_store(&sh->running, false);
	}
	for (i = 0; i < o.clients; i++) {
		if (read_all(fds[i], hdr, sizeof(hdr)) != 0)
			die("reading a worker's result");
		pairs += hdr[0];
		read_samples(fds[i], &open_lat, hdr[1]);
		read_samples(fds[i], &pair_lat, hdr[2]);
		close(fds[i]);
		if (waitpid(pids[i], &st, 0) < 0 || !WIFEXITED(st) ||
		    WEXITSTATUS(st) != 0) {
			fprintf(stderr, "bench_load: a worker failed\n");
			return 1;
		}
	}
	if (o.seconds <= 0)
		t1 = atomic_load(&sh->last_end_ns);
	printf("{\"mode\":\"load\",\"clients\":%u,\"crypto\":%s,\"pairs\":%"
	    PRIu64 ",\"seconds\":%.3f,\"pairs_per_s\":%.1f,\"errors\":%"
	    PRIu64 ",\"requests_total\":%" PRIu64 ",", o.clients,
	    o.no_crypto ? "false" : "true", pairs, (double)(t1 - t0) / 1e9,
	    (double)pairs / ((double)(t1 - t0) / 1e9),
	    (uint64_t)atomic_load(&sh->nerrors),
	    (uint64_t)atomic_load(&sh->requests_done));
	samples_print("open", &open_lat);
	putchar(',');
	samples_print("pair", &pair_lat);
	if (o.rss_pid > 0)
		printf(",\"rss_kb\":%ld", rss_kb(o.rss_pid));
	printf(",\"first_error\":");
	json_str(sh->first_error);
	printf("}\n");
	fflush(stdout);
	return 0;
}

/* ---- hold: one open per user, then keep the sessions ---- */

static void *hold_worker(void *arg)
{
	struct worker *w = arg;
	char user[128];

	for (;;) {
		uint64_t i = atomic_fetch_add(&sh->next_index, 1), t0;

		if (i >= o.count)
			break;
		snprintf(user, sizeof(user), "%s%u", o.prefix,
		    o.first + (unsigned)i);
		t0 = now_ns();
		if (do_open(user, NULL, true) != 0)
			continue;
		samples_add(&w->open_lat, now_ns() - t0);
		w->pairs++;
	}
	return NULL;
}

/*
 * A hold worker process: wait for the start (EOF on go), open its share of
 * the sessions, report, then stay alive, the sessions' watched process,
 * until keep reaches EOF (the parent is done or gone).
 */
static void hold_child(int go, int keep, int fd)
{
	struct worker w;
	uint64_t hdr[2], end, prev;
	char c;

	memset(&w, 0, sizeof(w));
	while (read(go, &c, 1) < 0 && errno == EINTR)
		;
	hold_worker(&w);
	end = now_ns();
	prev = atomic_load(&sh->last_end_ns);
	while (prev < end &&
	    !atomic_compare_exchange_weak(&sh->last_end_ns, &prev, end))
		;
	hdr[0] = w.pairs;
	hdr[1] = w.open_lat.n;
	write_all(fd, hdr, sizeof(hdr));
	write_all(fd, w.open_lat.v, w.open_lat.n * sizeof(uint32_t));
	close(fd);
	while (read(keep, &c, 1) < 0 && errno == EINTR)
		;
	_exit(0);
}

struct hold_pipes {
	int *go, *keep;
};

static void hold_spawned(int fd, void *ctx)
{
	struct hold_pipes *p = ctx;

	close(p->go[1]);
	close(p->keep[1]);
	hold_child(p->go[0], p->keep[0], fd);
}

/*
 * Requesters are processes, as in load (each PAM module is its own
 * process): threads of one process would pay sodium_malloc's TLB
 * shootdowns, a cost of this harness that real logins never pay.
 */
static int mode_hold(int argc, char **argv)
{
	struct samples lat = { 0 };
	uint64_t ok = 0, t0, t1, hdr[2];
	struct hold_pipes pipes;
	int go[2], keep[2], *fds, st, rc = 0;
	pid_t *pids;
	unsigned i;
	char buf[64];

	if (argc < 2)
		return 2;
	o.sock = argv[1];
	parse_client_opts(argc - 1, argv + 1);
	if (ramkey_crypto_init() != 0)
		return 1;
	signal(SIGPIPE, SIG_IGN);
	pids = xcalloc(o.clients, sizeof(*pids));
	fds = xcalloc(o.clients, sizeof(*fds));
	if (pipe2(go, O_CLOEXEC) != 0 || pipe2(keep, O_CLOEXEC) != 0)
		die("pipe2");
	pipes.go = go;
	pipes.keep = keep;
	spawn_workers(pids, fds, hold_spawned, &pipes);
	close(go[0]);
	close(keep[0]);
	t0 = now_ns();
	close(go[1]);                   /* every worker starts now */
	for (i = 0; i < o.clients; i++) {
		if (read_all(fds[i], hdr, sizeof(hdr)) != 0)
			die("reading a worker's result");
		ok += hdr[0];
		read_samples(fds[i], &lat, hdr[1]);
		close(fds[i]);
	}
	t1 = atomic_load(&sh->last_end_ns);
	printf("{\"mode\":\"hold\",\"op\":\"%s\",\"users\":%u,"
	    "\"concurrency\":%u,"
	    "\"ok\":%" PRIu64 ",\"errors\":%" PRIu64 ",\"wall_s\":%.3f,",
	    o.fetch ? "fetch" : "open_session", o.count, o.clients, ok,
	    (uint64_t)atomic_load(&sh->nerrors), (double)(t1 - t0) / 1e9);
	samples_print("open", &lat);
	printf(",\"first_error\":");
	json_str(sh->first_error);
	printf("}\n");
	fflush(stdout);
	if (o.wait_stdin)
		while (fgets(buf, sizeof(buf), stdin) != NULL)
			;
	close(keep[1]);                 /* the workers exit */
	for (i = 0; i < o.clients; i++)
		if (waitpid(pids[i], &st, 0) < 0 || !WIFEXITED(st) ||
		    WEXITSTATUS(st) != 0)
			rc = 1;
	if (rc != 0)
		fprintf(stderr, "bench_load: a hold worker failed\n");
	free(pids);
	free(fds);
	return rc;
}

int main(int argc, char **argv)
{
	shared_init();
	if (argc < 2) {
		fprintf(stderr,
		    "usage: bench_load crypto|floor-server|load|hold ...\n");
		return 2;
	}
	if (strcmp(argv[1], "crypto") == 0)
		return mode_crypto(argc - 1, argv + 1);
	if (strcmp(argv[1], "floor-server") == 0)
		return mode_floor_server(argc - 1, argv + 1);
	if (strcmp(argv[1], "load") == 0)
		return mode_load(argc - 1, argv + 1);
	if (strcmp(argv[1], "hold") == 0)
		return mode_hold(argc - 1, argv + 1);
	fprintf(stderr, "bench_load: unknown mode %s\n", argv[1]);
	return 2;
}
