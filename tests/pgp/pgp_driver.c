/*
 * pgp_driver: drives the PGP module (agent/pgp/pgp.c with the helper it
 * runs, agent/cloud/keybase.c) on a real evloop for test_pgp.py and
 * test_pgp_helper.py. Commands come on stdin (read from the loop, so the
 * loop keeps running while jobs are in flight); every command and
 * every completion prints one JSON object on stdout. A 50 ms ticker runs
 * on the loop the whole time, so the test can see the loop never stalls.
 *
 * Every callback also reports whether it ran on the loop thread and
 * whether it ran inside pgp_key_prepare()/pgp_encrypt() (it must not).
 *
 * Commands (ID: 0..MAX_SLOTS-1; "-" = none):
 *   new URL ALLOW_HTTP CA PROXY [DEADLINE_MS [HELPERS]]
 *				pgp_worker_new (frees the old one)
 *   reconf URL ALLOW_HTTP CA PROXY	pgp_worker_reconfigure
 *   prepare ID FILE		pgp_key_prepare(spec = FILE's contents)
 *   prepare_as ID OWNER FILE	pgp_key_prepare for OWNER (the others: "test")
 *   prepare_str ID SPEC...	pgp_key_prepare(spec = rest of the line)
 *   prepare_cancel ID FILE	prepare, then cancel at once
 *   prepare_block_cancel ID FILE MS  prepare, block the loop MS, cancel
 *   prepare_free ID FILE		prepare; its callback frees the worker
 *   encrypt ID KEY SECRET	pgp_encrypt(key of prepare KEY, SECRET)
 *   cancel ID			pgp_job_cancel
 *   freekey KEY			pgp_key_free
 *   free				pgp_worker_free (pending jobs dropped)
 *   status			pgp_worker_status, pgp_worker_unavailable
 *   ticks_reset | ticks | quit
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <sodium.h>

#include "keybase.h"
#include "evloop.h"
#include "pgp.h"
#include "ramkey_err.h"

#define MAX_SLOTS 256
#define LINE_MAX_ 4096
#define TICK_MS 50

struct slot {
	struct pgp_job *job;
	struct pgp_key *key;
	bool busy;
	bool free_worker; /* the callback frees the worker */
};

static struct evloop *loop;
static struct pgp_worker *worker;
static struct slot slots[MAX_SLOTS];
static pthread_t loop_thread;
static bool in_api;
static char inbuf[1 << 20];
static size_t inlen;
static struct ev_timer ticker;
static uint64_t last_tick, max_gap;
static unsigned long nticks;

/*
 * Output: lines are built here and leave with one write(2). No stdio:
 * GPGME forks from the worker thread, and under valgrind the child runs
 * __libc_freeres at _exit, flushing whatever stdio state it inherited.
 */
static char obuf[1 << 16];
static size_t olen;

static void out(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void out(const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(obuf + olen, sizeof(obuf) - olen, fmt, ap);
	va_end(ap);
	if (n < 0)
		abort();
	olen += (size_t)n < sizeof(obuf) - olen ? (size_t)n
						: sizeof(obuf) - olen - 1;
	if (olen > 0 && obuf[olen - 1] == '\n') {
		size_t off = 0;

		while (off < olen) {
			ssize_t w =
			    write(STDOUT_FILENO, obuf + off, olen - off);

			if (w < 0 && errno == EINTR)
				continue;
			if (w <= 0)
				abort();
			off += (size_t)w;
		}
		olen = 0;
	}
}

static void json_str(const char *s)
{
	out("\"");
	for (; s != NULL && *s != '\0'; s++) {
		unsigned char c = (unsigned char)*s;

		if (c == '"' || c == '\\')
			out("\\%c", c);
		else if (c < 0x20 || c >= 0x7f)
			out("\\u%04x", c);
		else
			out("%c", c);
	}
	out("\"");
}

static void print_cb(const char *ev, int id, int rc, const char *why)
{
	out("{\"ev\":\"%s\",\"id\":%d,\"rc\":%d,\"why\":", ev, id, rc);
	if (why != NULL)
		json_str(why);
	else
		out("null");
	out(",\"on_loop\":%s,\"inside\":%s",
	    pthread_equal(pthread_self(), loop_thread) ? "true" : "false",
	    in_api ? "true" : "false");
}

static void key_done(void *arg, int rc, struct pgp_key *key, const char *why)
{
	int id = (int)(intptr_t)arg;
	struct slot *s = &slots[id];

	print_cb("key", id, rc, why);
	out(",\"fpr\":");
	if (key != NULL)
		json_str(pgp_key_fingerprint(key));
	else
		out("null");
	out(",\"key\":%s}\n", key != NULL ? "true" : "false");
	s->job = NULL;
	s->busy = false;
	pgp_key_free(s->key);
	s->key = key;
	if (s->free_worker) {
		s->free_worker = false;
		pgp_worker_free(worker);
		worker = NULL;
		out("{\"ev\":\"freed_in_callback\",\"id\":%d}\n", id);
	}
}

static void enc_done(void *arg, int rc, const char *b64, const char *why)
{
	int id = (int)(intptr_t)arg;

	print_cb("enc", id, rc, why);
	out(",\"b64\":");
	if (b64 != NULL)
		json_str(b64);
	else
		out("null");
	out("}\n");
	slots[id].job = NULL;
	slots[id].busy = false;
}

static int parse_id(const char *s)
{
	char *end;
	long v;

	if (s == NULL)
		return -1;
	v = strtol(s, &end, 10);
	if (*end != '\0' || v < 0 || v >= MAX_SLOTS)
		return -1;
	return (int)v;
}

static char *read_file(const char *path)
{
	FILE *f = fopen(path, "rb");
	char *buf = NULL;
	long n;

	if (f == NULL)
		return NULL;
	if (fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) >= 0 &&
	    fseek(f, 0, SEEK_SET) == 0 &&
	    (buf = malloc((size_t)n + 1)) != NULL) {
		if (fread(buf, 1, (size_t)n, f) != (size_t)n) {
			free(buf);
			buf = NULL;
		} else {
			buf[n] = '\0';
		}
	}
	fclose(f);
	return buf;
}

static const char *opt(const char *s)
{
	return s == NULL || strcmp(s, "-") == 0 ? NULL : s;
}

static struct keybase *kb;

static void fill_config(struct keybase_config *c, char **argv)
{
	memset(c, 0, sizeof(*c));
	c->url = opt(argv[0]);
	c->allow_http = argv[1] != NULL && strcmp(argv[1], "1") == 0;
	c->ca_file = opt(argv[2]);
	c->proxy = opt(argv[3]);
}

/* The agent wires Keybase into the PGP layer the same way. */
static int kb_fetch(void *ctx, const char *name, pgp_fetched_fn fn, void *arg,
    void **handle)
{
	struct keybase_req *req = NULL;
	int r = keybase_lookup(ctx, name, (keybase_fn)fn, arg, &req);

	*handle = req;
	return r;
}

static void kb_cancel(void *ctx, void *handle)
{
	(void)ctx;
	keybase_cancel(handle);
}

static int start_prepare(int id, const char *spec, const char *owner)
{
	int r;

	in_api = true;
	r = pgp_key_prepare(worker, spec, owner, key_done,
	    (void *)(intptr_t)id, &slots[id].job);
	in_api = false;
	slots[id].busy = r == 0;
	return r;
}

static void block_loop(long ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};

	while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
		;
}

static void quit(void)
{
	int i;

	pgp_worker_free(worker);
	worker = NULL;
	keybase_free(kb);
	kb = NULL;
	for (i = 0; i < MAX_SLOTS; i++) {
		pgp_key_free(slots[i].key);
		slots[i].key = NULL;
	}
	evloop_stop(loop);
}

static void command(char *line)
{
	char *argv[8] = {0}, *save = NULL, *rest = NULL;
	int argc = 0, id, r;
	char *p;

	/* prepare_str keeps the rest of its line as it is */
	if (strncmp(line, "prepare_str ", 12) == 0) {
		p = line + 12;
		id = (int)strtol(p, &rest, 10);
		if (rest == p || *rest != ' ' || id < 0 || id >= MAX_SLOTS) {
			out("{\"ev\":\"error\",\"msg\":\"bad prepare_str\"}\n");
			return;
		}
		r = start_prepare(id, rest + 1, "test");
		out("{\"ev\":\"started\",\"id\":%d,\"rc\":%d}\n", id, r);
		return;
	}
	for (p = strtok_r(line, " ", &save); p != NULL && argc < 8;
	     p = strtok_r(NULL, " ", &save))
		argv[argc++] = p;
	if (argc == 0)
		return;
	if (strcmp(argv[0], "new") == 0 && argc >= 5 && argc <= 7) {
		struct keybase_config c;
		struct pgp_fetcher f;
		struct pgp_config pc;

		pgp_worker_free(worker);
		worker = NULL;
		keybase_free(kb);
		kb = NULL;
		fill_config(&c, argv + 1);
		r = keybase_new(loop, &c, &kb);
		f.ctx = kb;
		f.fetch = kb_fetch;
		f.cancel = kb_cancel;
		memset(&pc, 0, sizeof(pc));
		pc.helper = RAMKEY_TEST_PGP_HELPER;
		if (argc >= 6)
			pc.deadline_ms = (unsigned)atol(argv[5]);
		if (argc >= 7)
			pc.helpers_max = (unsigned)atol(argv[6]);
		if (r == 0)
			r = pgp_worker_new(loop, &pc, &f, &worker);
		out("{\"ev\":\"new\",\"rc\":%d}\n", r);
	} else if (strcmp(argv[0], "reconf") == 0 && argc == 5) {
		struct keybase_config c;

		fill_config(&c, argv + 1);
		r = keybase_reconfigure(kb, &c);
		out("{\"ev\":\"reconf\",\"rc\":%d}\n", r);
	} else if ((strcmp(argv[0], "prepare") == 0 ||
		       strcmp(argv[0], "prepare_cancel") == 0 ||
		       strcmp(argv[0], "prepare_free") == 0) &&
	    argc == 3 && (id = parse_id(argv[1])) >= 0) {
		char *spec = read_file(argv[2]);

		if (spec == NULL) {
			out("{\"ev\":\"error\",\"msg\":\"cannot read\"}\n");
			return;
		}
		r = start_prepare(id, spec, "test");
		free(spec); /* the module must have copied what it needs */
		if (r == 0 && strcmp(argv[0], "prepare_free") == 0)
			slots[id].free_worker = true;
		if (r == 0 && strcmp(argv[0], "prepare_cancel") == 0) {
			pgp_job_cancel(slots[id].job);
			slots[id].job = NULL;
			slots[id].busy = false;
		}
		out("{\"ev\":\"started\",\"id\":%d,\"rc\":%d}\n", id, r);
	} else if (strcmp(argv[0], "prepare_as") == 0 && argc == 4 &&
	    (id = parse_id(argv[1])) >= 0) {
		char *spec = read_file(argv[3]);

		if (spec == NULL) {
			out("{\"ev\":\"error\",\"msg\":\"cannot read\"}\n");
			return;
		}
		r = start_prepare(id, spec, argv[2]);
		free(spec);
		out("{\"ev\":\"started\",\"id\":%d,\"rc\":%d}\n", id, r);
	} else if (strcmp(argv[0], "status") == 0) {
		struct pgp_status st;
		size_t i;

		pgp_worker_status(worker, &st);
		out("{\"ev\":\"status\",\"confinement\":[");
		for (i = 0; st.confinement[i] != NULL; i++)
			out("%s\"%s\"", i > 0 ? "," : "", st.confinement[i]);
		out("],\"lacking\":");
		json_str(st.lacking);
		out(",\"unavailable\":");
		if (pgp_worker_unavailable(worker) != NULL)
			json_str(pgp_worker_unavailable(worker));
		else
			out("null");
		out(",\"landlock_abi\":%u,\"running\":%u,\"queued\":%u,"
		    "\"helpers_max\":%u,\"deadline_ms\":%u}\n",
		    st.landlock_abi, st.running, st.queued, st.helpers_max,
		    st.deadline_ms);
	} else if (strcmp(argv[0], "prepare_block_cancel") == 0 && argc == 4 &&
	    (id = parse_id(argv[1])) >= 0) {
		char *spec = read_file(argv[2]);

		if (spec == NULL) {
			out("{\"ev\":\"error\",\"msg\":\"cannot read\"}\n");
			return;
		}
		r = start_prepare(id, spec, "test");
		free(spec);
		if (r == 0) {
			block_loop(atol(argv[3]));
			pgp_job_cancel(slots[id].job);
			slots[id].job = NULL;
			slots[id].busy = false;
		}
		out("{\"ev\":\"started\",\"id\":%d,\"rc\":%d}\n", id, r);
	} else if (strcmp(argv[0], "encrypt") == 0 && argc == 4 &&
	    (id = parse_id(argv[1])) >= 0) {
		int k = parse_id(argv[2]);
		char *secret;
		size_t len = strlen(argv[3]);

		/* the caller's copy lives in locked memory and is wiped */
		if ((secret = sodium_malloc(len + 1)) == NULL)
			abort();
		memcpy(secret, argv[3], len + 1);
		sodium_memzero(argv[3], len);
		in_api = true;
		r = pgp_encrypt(worker, k >= 0 ? slots[k].key : NULL, "test",
		    secret, len, enc_done, (void *)(intptr_t)id,
		    &slots[id].job);
		in_api = false;
		sodium_free(secret);
		slots[id].busy = r == 0;
		out("{\"ev\":\"started\",\"id\":%d,\"rc\":%d}\n", id, r);
	} else if (strcmp(argv[0], "cancel") == 0 && argc == 2 &&
	    (id = parse_id(argv[1])) >= 0) {
		pgp_job_cancel(slots[id].job);
		slots[id].job = NULL;
		slots[id].busy = false;
		out("{\"ev\":\"cancelled\",\"id\":%d}\n", id);
	} else if (strcmp(argv[0], "freekey") == 0 && argc == 2 &&
	    (id = parse_id(argv[1])) >= 0) {
		pgp_key_free(slots[id].key);
		slots[id].key = NULL;
		out("{\"ev\":\"freekey\",\"id\":%d}\n", id);
	} else if (strcmp(argv[0], "free") == 0) {
		int i;

		pgp_worker_free(worker);
		worker = NULL;
		for (i = 0; i < MAX_SLOTS; i++) {
			slots[i].job = NULL;
			slots[i].busy = false;
		}
		out("{\"ev\":\"freed\"}\n");
	} else if (strcmp(argv[0], "ticks_reset") == 0) {
		nticks = 0;
		max_gap = 0;
		last_tick = evloop_now();
		out("{\"ev\":\"ticks_reset\"}\n");
	} else if (strcmp(argv[0], "ticks") == 0) {
		uint64_t gap = evloop_now() - last_tick;

		out("{\"ev\":\"ticks\",\"n\":%lu,\"max_gap\":%llu}\n", nticks,
		    (unsigned long long)(gap > max_gap ? gap : max_gap));
	} else if (strcmp(argv[0], "quit") == 0) {
		quit();
		out("{\"ev\":\"bye\"}\n");
	} else {
		out("{\"ev\":\"error\",\"msg\":\"unknown command\"}\n");
	}
}

static void on_stdin(void *arg, int fd, uint32_t events)
{
	size_t start = 0, i;
	ssize_t n;
	char *nl;

	n = read(fd, inbuf + inlen, sizeof(inbuf) - 1 - inlen);
	if (n <= 0) {
		if (n < 0 && errno == EINTR)
			return;
		evloop_del(loop, fd);
		quit();
		return;
	}
	inlen += (size_t)n;
	while (start < inlen &&
	    (nl = memchr(inbuf + start, '\n', inlen - start)) != NULL) {
		*nl = '\0';
		command(inbuf + start);
		start = (size_t)(nl - inbuf) + 1;
		if (evloop_stopped(loop))
			return;
	}
	/* keep the incomplete line, at the front */
	for (i = 0; start + i < inlen; i++)
		inbuf[i] = inbuf[start + i];
	inlen -= start;
	if (inlen == sizeof(inbuf) - 1)
		inlen = 0; /* a line too long: drop it */
}

static void on_tick(void *arg)
{
	uint64_t now = evloop_now();

	if (now - last_tick > max_gap)
		max_gap = now - last_tick;
	last_tick = now;
	nticks++;
	evloop_timer_arm(loop, &ticker, now + TICK_MS);
}

int main(void)
{
	if (sodium_init() < 0 || curl_global_init(CURL_GLOBAL_DEFAULT) != 0)
		return 1;
	loop_thread = pthread_self();
	if (evloop_new(&loop) != 0)
		return 1;
	if (evloop_add(loop, STDIN_FILENO, EPOLLIN, on_stdin, NULL) != 0)
		return 1;
	ev_timer_init(&ticker, on_tick, NULL);
	last_tick = evloop_now();
	evloop_timer_arm(loop, &ticker, last_tick + TICK_MS);
	out("{\"ev\":\"ready\"}\n");
	evloop_run(loop);
	evloop_timer_cancel(loop, &ticker);
	evloop_free(loop);
	curl_global_cleanup();
	return 0;
}
