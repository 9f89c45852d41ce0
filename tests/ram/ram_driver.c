/*
 * ram_driver: drives the RAM client (agent/ram_client.c) for the
 * integration tests in test_ram_client.py. The client configuration comes
 * from the environment; commands come on stdin, one per line, and every
 * command prints one JSON object on stdout. Minted secrets stay inside
 * the driver (only their length and SHA-256 are printed).
 *
 * Environment: RAM_ENDPOINT, RAM_CA_FILE, RAM_KEY_ID, RAM_SECRET,
 * RAM_SIGNATURE (v1|v3), RAM_ALLOW_HTTP (0|1), RAM_TIMEOUT_MS.
 *
 * Commands (USER "-" = none):
 *   create USER | update USER KEYID STATUS | delete USER KEYID
 *   list USER | getuser USER
 *   as KEYID <command>	run it with the minted key KEYID's credentials
 *   concurrent_create N PREFIX	N creates for PREFIX0..N-1 at once
 *   sequential_create N PREFIX	the same, one after the other
 *   cancel_create USER DELAY_MS	start, run the loop DELAY_MS, cancel
 *   free_inflight USER		start calls, free the client under them
 *   newclient ENDPOINT ALLOW_HTTP CA	ram_client_new() result only
 *   sleep MS | fds | stats | reset | quit
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>
#include <json-c/json.h>
#include <sodium.h>

#include "evloop.h"
#include "ram_client.h"
#include "ram_sign.h"
#include "ramkey_err.h"

#define MAX_MINTED 1024
#define MAX_CLIENTS 64

struct minted {
	char id[RAM_KEY_ID_MAX + 1];
	char *secret; /* sodium_malloc */
};

struct client_slot {
	char id[RAM_KEY_ID_MAX + 1]; /* "" = the admin client */
	struct ram_client *c;
};

struct op {
	const char *cmd;
	char user[RAM_USER_NAME_MAX + 1];
	double start, end;
	bool done;
	int rc;
	struct json_object *out;
};

static struct evloop *loop;
static struct ram_client_config cfg;
static const char *admin_id, *admin_secret;
static struct minted minted[MAX_MINTED];
static size_t nminted;
static struct client_slot clients[MAX_CLIENTS];
static size_t nclients;
static bool in_start;           /* a ram_*() call is running */
static unsigned sync_callbacks; /* callbacks run from inside one */
static unsigned callbacks_after_cancel;

static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1000.0 + (double)ts.tv_nsec / 1e6;
}

static void emit(struct json_object *o)
{
	printf("%s\n",
	    json_object_to_json_string_ext(
		o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
	fflush(stdout);
	json_object_put(o);
}

static void add_str(struct json_object *o, const char *k, const char *v)
{
	json_object_object_add(o, k, json_object_new_string(v));
}

static void add_int(struct json_object *o, const char *k, int64_t v)
{
	json_object_object_add(o, k, json_object_new_int64(v));
}

static void add_bool(struct json_object *o, const char *k, bool v)
{
	json_object_object_add(o, k, json_object_new_boolean(v));
}

static struct json_object *key_json(const struct ram_access_key *k)
{
	struct json_object *o = json_object_new_object();

	add_str(o, "id", k->id);
	add_str(o, "status", k->status);
	add_str(o, "create_date", k->create_date);
	add_int(o, "create_time", k->create_time);
	return o;
}

static struct json_object *err_json(const struct ram_error *e)
{
	struct json_object *o = json_object_new_object();

	add_str(o, "kind", ram_error_kind_name(e->kind));
	add_int(o, "http_status", e->http_status);
	add_str(o, "op", e->op);
	add_str(o, "code", e->code);
	add_str(o, "message", e->message);
	add_str(o, "request_id", e->request_id);
	add_int(o, "attempts", e->attempts);
	add_bool(o, "transport_or_5xx", e->transport_or_5xx);
	return o;
}

static void remember_secret(const struct ram_access_key *k)
{
	struct minted *m;

	if (nminted == MAX_MINTED)
		return;
	m = &minted[nminted++];
	snprintf(m->id, sizeof(m->id), "%s", k->id);
	m->secret = sodium_malloc(k->secret_len + 1);
	if (m->secret == NULL)
		abort();
	memcpy(m->secret, k->secret, k->secret_len + 1);
}

static void on_done(void *arg, int rc, const struct ram_result *res,
    const struct ram_error *err)
{
	struct op *op = arg;
	struct json_object *o = json_object_new_object();

	if (in_start)
		sync_callbacks++;
	op->end = now_ms();
	op->done = true;
	op->rc = rc;
	add_str(o, "cmd", op->cmd);
	add_str(o, "user", op->user);
	add_int(o, "rc", rc);
	add_str(o, "rc_name", rc == 0 ? "ok" : ramkey_err_name(rc));
	json_object_object_add(
	    o, "elapsed_ms", json_object_new_double(op->end - op->start));
	if (rc == 0) {
		struct json_object *r = json_object_new_object();

		add_str(r, "request_id", res->request_id);
		if (res->key.id[0] != '\0') {
			char h[RAM_SHA256_HEX_LEN + 1];
			struct json_object *k = key_json(&res->key);

			if (res->key.secret != NULL) {
				ram_sha256_hex(
				    res->key.secret, res->key.secret_len, h);
				add_str(k, "secret_sha256", h);
				add_int(k, "secret_len",
				    (int64_t)res->key.secret_len);
				remember_secret(&res->key);
			}
			json_object_object_add(r, "key", k);
		}
		if (strcmp(op->cmd, "list") == 0) {
			struct json_object *a = json_object_new_array();
			size_t i;

			for (i = 0; i < res->nkeys; i++)
				json_object_array_add(
				    a, key_json(&res->keys[i]));
			json_object_object_add(r, "keys", a);
		}
		if (res->user_name[0] != '\0') {
			add_str(r, "user_name", res->user_name);
			add_str(r, "user_id", res->user_id);
		}
		json_object_object_add(o, "result", r);
	} else {
		json_object_object_add(o, "err", err_json(err));
	}
	op->out = o;
}

/* For calls the driver means to abandon: arg, if set, is a "completed"
 * flag (the handle is invalid once the callback ran). */
static void on_cancelled_done(void *arg, int rc, const struct ram_result *res,
    const struct ram_error *err)
{
	if (arg != NULL)
		*(bool *)arg = true;
	else
		callbacks_after_cancel++;
}

static int new_client(
    const char *key_id, const char *secret, struct ram_client **ret)
{
	int r;

	if ((r = ram_client_new(loop, &cfg, ret)) != 0)
		return r;
	if ((r = ram_client_set_credentials(*ret, key_id, secret)) != 0) {
		ram_client_free(*ret);
		*ret = NULL;
	}
	return r;
}

/* The admin client (id "") or the one signing with a minted key. */
static struct ram_client *get_client(const char *id, int *rc)
{
	const char *secret = NULL;
	struct ram_client *c;
	size_t i;

	for (i = 0; i < nclients; i++)
		if (strcmp(clients[i].id, id) == 0)
			return clients[i].c;
	if (id[0] == '\0') {
		secret = admin_secret;
	} else {
		for (i = 0; i < nminted; i++)
			if (strcmp(minted[i].id, id) == 0)
				secret = minted[i].secret;
	}
	if (secret == NULL || nclients == MAX_CLIENTS) {
		*rc = RAMKEY_ERR_NOT_FOUND;
		return NULL;
	}
	if ((*rc = new_client(id[0] ? id : admin_id, secret, &c)) != 0)
		return NULL;
	snprintf(clients[nclients].id, sizeof(clients[nclients].id), "%s", id);
	clients[nclients++].c = c;
	return c;
}

static void free_clients(void)
{
	size_t i;

	for (i = 0; i < nclients; i++)
		ram_client_free(clients[i].c);
	nclients = 0;
}

static const char *opt_user(const char *u)
{
	return u == NULL || strcmp(u, "-") == 0 ? NULL : u;
}

/* Start one operation; the callback fills op. */
static int start_op(struct ram_client *c, struct op *op, char **argv, int argc,
    struct ram_call **call)
{
	const char *cmd = argv[0];
	int r = RAMKEY_ERR_INVALID;

	memset(op, 0, sizeof(*op));
	op->start = now_ms();
	snprintf(op->user, sizeof(op->user), "%s", argc > 1 ? argv[1] : "");
	in_start = true;
	if (strcmp(cmd, "create") == 0 && argc == 2) {
		op->cmd = "create";
		r = ram_create_access_key(
		    c, opt_user(argv[1]), on_done, op, call);
	} else if (strcmp(cmd, "update") == 0 && argc == 4) {
		op->cmd = "update";
		r = ram_update_access_key(
		    c, opt_user(argv[1]), argv[2], argv[3], on_done, op, call);
	} else if (strcmp(cmd, "delete") == 0 && argc == 3) {
		op->cmd = "delete";
		r = ram_delete_access_key(
		    c, opt_user(argv[1]), argv[2], on_done, op, call);
	} else if (strcmp(cmd, "list") == 0 && argc <= 2) {
		op->cmd = "list";
		r = ram_list_access_keys(
		    c, opt_user(argv[1]), on_done, op, call);
	} else if (strcmp(cmd, "getuser") == 0 && argc == 2) {
		op->cmd = "getuser";
		r = ram_get_user(c, opt_user(argv[1]), on_done, op, call);
	}
	in_start = false;
	return r;
}

static void run_until(bool (*pred)(void *), void *arg)
{
	while (!pred(arg))
		if (evloop_run_once(loop, 1000) != 0)
			abort();
}

static void run_for(double ms)
{
	double end = now_ms() + ms;

	while (now_ms() < end)
		evloop_run_once(loop, (int)(end - now_ms()) + 1);
}

static bool op_done(void *arg)
{
	return ((struct op *)arg)->done;
}

struct many {
	struct op *ops;
	int n;
};

static bool all_done(void *arg)
{
	struct many *m = arg;
	int i;

	for (i = 0; i < m->n; i++)
		if (!m->ops[i].done)
			return false;
	return true;
}

static void start_failed(const char *cmd, int r)
{
	struct json_object *o = json_object_new_object();

	add_str(o, "cmd", cmd);
	add_int(o, "rc", r);
	add_str(o, "rc_name", ramkey_err_name(r));
	add_bool(o, "start_failed", true);
	emit(o);
}

static void cmd_single(const char *client_id, char **argv, int argc)
{
	struct ram_client *c;
	struct op op;
	int r;

	if ((c = get_client(client_id, &r)) == NULL) {
		start_failed(argv[0], r);
		return;
	}
	if ((r = start_op(c, &op, argv, argc, NULL)) != 0) {
		start_failed(argv[0], r);
		return;
	}
	run_until(op_done, &op);
	add_bool(op.out, "degraded", ram_client_degraded(c));
	add_int(op.out, "in_flight", (int64_t)ram_client_in_flight(c));
	emit(op.out);
}

static void cmd_many(bool concurrent, int n, const char *prefix)
{
	struct ram_client *c;
	struct json_object *o, *codes;
	struct many m;
	double t0, t1;
	int i, r, ok = 0;
	double max_ms = 0;

	if (n <= 0 || n > 10000 || (c = get_client("", &r)) == NULL) {
		start_failed(
		    concurrent ? "concurrent_create" : "sequential_create",
		    RAMKEY_ERR_INVALID);
		return;
	}
	m.ops = calloc((size_t)n, sizeof(*m.ops));
	m.n = n;
	if (m.ops == NULL)
		abort();
	t0 = now_ms();
	for (i = 0; i < n; i++) {
		char user[RAM_USER_NAME_MAX + 1];
		char *argv[2] = {"create", user};

		snprintf(user, sizeof(user), "%s%d", prefix, i);
		if ((r = start_op(c, &m.ops[i], argv, 2, NULL)) != 0)
			abort();
		if (!concurrent)
			run_until(op_done, &m.ops[i]);
	}
	if (concurrent && ram_client_in_flight(c) != (size_t)n)
		abort();
	run_until(all_done, &m);
	t1 = now_ms();
	codes = json_object_new_object();
	for (i = 0; i < n; i++) {
		const char *name =
		    m.ops[i].rc == 0 ? "ok" : ramkey_err_name(m.ops[i].rc);
		struct json_object *cnt;

		if (m.ops[i].rc == 0)
			ok++;
		if (m.ops[i].end - m.ops[i].start > max_ms)
			max_ms = m.ops[i].end - m.ops[i].start;
		if (json_object_object_get_ex(codes, name, &cnt))
			json_object_set_int(cnt, json_object_get_int(cnt) + 1);
		else
			add_int(codes, name, 1);
		if (m.ops[i].rc != 0 && i < 3) {
			/* a sample of the failures, for the test log */
			emit(json_object_get(m.ops[i].out));
		}
		json_object_put(m.ops[i].out);
	}
	o = json_object_new_object();
	add_str(
	    o, "cmd", concurrent ? "concurrent_create" : "sequential_create");
	add_int(o, "n", n);
	add_int(o, "ok", ok);
	json_object_object_add(o, "rcs", codes);
	json_object_object_add(
	    o, "elapsed_ms", json_object_new_double(t1 - t0));
	json_object_object_add(o, "max_op_ms", json_object_new_double(max_ms));
	add_int(o, "in_flight", (int64_t)ram_client_in_flight(c));
	emit(o);
	free(m.ops);
}

static void cmd_cancel(const char *user, int delay_ms)
{
	struct ram_client *c;
	struct ram_call *call = NULL;
	struct json_object *o;
	bool completed = false, was_completed;
	int r;

	if ((c = get_client("", &r)) == NULL) {
		start_failed("cancel_create", r);
		return;
	}
	in_start = true;
	r = ram_create_access_key(
	    c, opt_user(user), on_cancelled_done, &completed, &call);
	in_start = false;
	if (r != 0) {
		start_failed("cancel_create", r);
		return;
	}
	if (delay_ms > 0)
		run_for(delay_ms);
	o = json_object_new_object();
	add_int(o, "in_flight_before", (int64_t)ram_client_in_flight(c));
	/* It may have completed already (a slow run, valgrind): then the
	 * handle is gone and there is nothing to cancel. */
	was_completed = completed;
	add_bool(o, "completed_before_cancel", completed);
	if (!completed)
		ram_call_cancel(call);
	add_int(o, "in_flight_after", (int64_t)ram_client_in_flight(c));
	run_for(300);
	add_str(o, "cmd", "cancel_create");
	/* a cancelled call's callback would set the flag now */
	add_bool(o, "callback_ran", !was_completed && completed);
	emit(o);
}

static void cmd_free_inflight(const char *user)
{
	struct ram_client *c;
	struct json_object *o;
	unsigned before = callbacks_after_cancel;
	int i, r;

	if ((r = new_client(admin_id, admin_secret, &c)) != 0) {
		start_failed("free_inflight", r);
		return;
	}
	for (i = 0; i < 3; i++) {
		in_start = true;
		r = i == 0 ? ram_create_access_key(c, opt_user(user),
				 on_cancelled_done, NULL, NULL)
			   : ram_list_access_keys(c, opt_user(user),
				 on_cancelled_done, NULL, NULL);
		in_start = false;
		if (r != 0)
			abort();
	}
	run_for(100);
	o = json_object_new_object();
	add_str(o, "cmd", "free_inflight");
	add_int(o, "in_flight", (int64_t)ram_client_in_flight(c));
	ram_client_free(c);
	run_for(300);
	add_bool(o, "callback_ran", callbacks_after_cancel != before);
	emit(o);
}

static void cmd_newclient(
    const char *endpoint, const char *allow, const char *ca)
{
	struct ram_client_config k = cfg;
	struct ram_client *c = NULL;
	struct json_object *o = json_object_new_object();
	int r;

	k.endpoint = endpoint;
	k.allow_http = strcmp(allow, "1") == 0;
	k.ca_file = strcmp(ca, "-") == 0 ? NULL : ca;
	r = ram_client_new(loop, &k, &c);
	add_str(o, "cmd", "newclient");
	add_int(o, "rc", r);
	add_str(o, "rc_name", r == 0 ? "ok" : ramkey_err_name(r));
	add_bool(o, "client", c != NULL);
	ram_client_free(c);
	emit(o);
}

static int count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *de;
	int n = 0;

	if (d == NULL)
		return -1;
	while ((de = readdir(d)) != NULL)
		if (de->d_name[0] != '.')
			n++;
	closedir(d);
	return n - 1; /* the directory's own fd */
}

static void cmd_stats(void)
{
	struct json_object *o = json_object_new_object();
	struct ram_client *c = nclients > 0 ? clients[0].c : NULL;

	add_str(o, "cmd", "stats");
	add_int(o, "sync_callbacks", sync_callbacks);
	add_int(o, "callbacks_after_cancel", callbacks_after_cancel);
	add_int(o, "fds", count_fds());
	add_int(o, "clients", (int64_t)nclients);
	add_bool(o, "degraded", ram_client_degraded(c));
	emit(o);
}

static void dispatch(char **argv, int argc)
{
	if (strcmp(argv[0], "as") == 0 && argc >= 3) {
		cmd_single(argv[1], argv + 2, argc - 2);
	} else if ((strcmp(argv[0], "concurrent_create") == 0 ||
		       strcmp(argv[0], "sequential_create") == 0) &&
	    argc == 3) {
		cmd_many(argv[0][0] == 'c', atoi(argv[1]), argv[2]);
	} else if (strcmp(argv[0], "cancel_create") == 0 && argc == 3) {
		cmd_cancel(argv[1], atoi(argv[2]));
	} else if (strcmp(argv[0], "free_inflight") == 0 && argc == 2) {
		cmd_free_inflight(argv[1]);
	} else if (strcmp(argv[0], "newclient") == 0 && argc == 4) {
		cmd_newclient(argv[1], argv[2], argv[3]);
	} else if (strcmp(argv[0], "sleep") == 0 && argc == 2) {
		struct json_object *o = json_object_new_object();

		run_for(atoi(argv[1]));
		add_str(o, "cmd", "sleep");
		emit(o);
	} else if (strcmp(argv[0], "reset") == 0) {
		struct json_object *o = json_object_new_object();

		free_clients();
		add_str(o, "cmd", "reset");
		emit(o);
	} else if (strcmp(argv[0], "stats") == 0 ||
	    strcmp(argv[0], "fds") == 0) {
		cmd_stats();
	} else {
		cmd_single("", argv, argc);
	}
}

static const char *env(const char *name, const char *def)
{
	const char *v = getenv(name);

	return v != NULL && v[0] != '\0' ? v : def;
}

int main(void)
{
	char line[1024];
	uint64_t t;
	size_t i;

	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK ||
	    sodium_init() < 0 || evloop_new(&loop) != 0)
		return 2;
	memset(&cfg, 0, sizeof(cfg));
	cfg.endpoint = env("RAM_ENDPOINT", NULL);
	cfg.ca_file = env("RAM_CA_FILE", NULL);
	cfg.allow_http = strcmp(env("RAM_ALLOW_HTTP", "0"), "1") == 0;
	cfg.signature = strcmp(env("RAM_SIGNATURE", "v3"), "v1") == 0
	    ? RAM_SIG_V1
	    : RAM_SIG_V3;
	t = strtoull(env("RAM_TIMEOUT_MS", "30000"), NULL, 10);
	cfg.create_timeout_ms = cfg.update_timeout_ms = t;
	cfg.delete_timeout_ms = cfg.read_timeout_ms = t;
	admin_id = env("RAM_KEY_ID", "");
	admin_secret = env("RAM_SECRET", "");

	while (fgets(line, sizeof(line), stdin) != NULL) {
		char *argv[16], *save = NULL, *tok;
		int argc = 0;

		for (tok = strtok_r(line, " \t\r\n", &save);
		     tok != NULL && argc < 16;
		     tok = strtok_r(NULL, " \t\r\n", &save))
			argv[argc++] = tok;
		if (argc == 0 || argv[0][0] == '#')
			continue;
		if (strcmp(argv[0], "quit") == 0)
			break;
		dispatch(argv, argc);
	}
	free_clients();
	for (i = 0; i < nminted; i++)
		sodium_free(minted[i].secret);
	evloop_free(loop);
	curl_global_cleanup();
	return 0;
}
