/*
 * ram.client_api: the RAM client's contract without a server: argument
 * and configuration checks, callbacks only from the loop, cancel and free
 * with calls in flight, and the deadline of a call whose every try fails
 * (a loopback port nobody listens on).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <cmocka.h>
#include <curl/curl.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "evloop.h"
#include "ram_client.h"
#include "ramkey_err.h"

struct fixture {
	struct evloop *loop;
	struct ram_client *c;
	int sock; /* bound, never listening: connections are refused */
	char endpoint[64];
};

struct outcome {
	bool done;
	int rc;
	struct ram_error err;
	uint64_t at;
};

static bool starting; /* inside a ram_*() call */
static unsigned sync_calls;

static void on_done(void *arg, int rc, const struct ram_result *res,
    const struct ram_error *err)
{
	struct outcome *o = arg;

	if (starting)
		sync_calls++;
	o->done = true;
	o->rc = rc;
	o->at = evloop_now();
	if (err != NULL)
		o->err = *err;
	assert_true((rc == 0) == (res != NULL));
	assert_true((rc == 0) == (err == NULL));
}

static void on_never(void *arg, int rc, const struct ram_result *res,
    const struct ram_error *err)
{
	fail_msg("a cancelled call's callback ran");
}

static int setup(void **state)
{
	static struct fixture f;
	struct sockaddr_in sa;
	socklen_t len = sizeof(sa);
	struct ram_client_config cfg;

	memset(&f, 0, sizeof(f));
	f.sock = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(f.sock >= 0);
	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(f.sock, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(getsockname(f.sock, (struct sockaddr *)&sa, &len), 0);
	snprintf(f.endpoint, sizeof(f.endpoint), "https://127.0.0.1:%u",
	    ntohs(sa.sin_port));
	assert_int_equal(evloop_new(&f.loop), 0);
	memset(&cfg, 0, sizeof(cfg));
	cfg.endpoint = f.endpoint;
	cfg.signature = RAM_SIG_V3;
	cfg.create_timeout_ms = 1500;
	cfg.read_timeout_ms = 1500;
	assert_int_equal(ram_client_new(f.loop, &cfg, &f.c), 0);
	*state = &f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	ram_client_free(f->c);
	evloop_free(f->loop);
	close(f->sock);
	return 0;
}

static void run_until_done(
    struct fixture *f, struct outcome *o, unsigned max_ms)
{
	uint64_t end = evloop_now() + max_ms;

	while (!o->done && evloop_now() < end)
		assert_int_equal(evloop_run_once(f->loop, 50), 0);
}

static void test_config(void **state)
{
	struct fixture *f = *state;
	static const char *bad[] = {"http://127.0.0.1:1", "ftp://127.0.0.1/",
	    "127.0.0.1", "https://127.0.0.1/x", "https://127.0.0.1/?a=b",
	    "https://u:p@127.0.0.1/", "https://127.0.0.1/#f", "", "https://"};
	struct ram_client_config cfg;
	struct ram_client *c = (struct ram_client *)1;
	size_t i;

	memset(&cfg, 0, sizeof(cfg));
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		cfg.endpoint = bad[i];
		print_message("endpoint %s\n", bad[i]);
		assert_int_equal(
		    ram_client_new(f->loop, &cfg, &c), RAMKEY_ERR_CONFIG);
		assert_null(c);
	}
	cfg.endpoint = "http://127.0.0.1:1";
	cfg.allow_http = true;
	assert_int_equal(ram_client_new(f->loop, &cfg, &c), 0);
	ram_client_free(c);
	cfg.endpoint = "https://ram.aliyuncs.com";
	cfg.allow_http = false;
	cfg.ca_file = "/nonexistent/ca.pem";
	assert_int_equal(ram_client_new(f->loop, &cfg, &c), RAMKEY_ERR_CONFIG);
	cfg.ca_file = "/etc";
	assert_int_equal(ram_client_new(f->loop, &cfg, &c), RAMKEY_ERR_CONFIG);
	cfg.ca_file = NULL;
	cfg.signature = (enum ram_signature)7;
	assert_int_equal(ram_client_new(f->loop, &cfg, &c), RAMKEY_ERR_CONFIG);
	cfg.signature = RAM_SIG_V1;
	cfg.endpoint = NULL; /* the default, https://ram.aliyuncs.com */
	assert_int_equal(ram_client_new(f->loop, &cfg, &c), 0);
	ram_client_free(c);
	assert_int_equal(ram_client_new(f->loop, NULL, &c), RAMKEY_ERR_INVALID);
	ram_client_free(NULL);
}

static void test_arguments(void **state)
{
	struct fixture *f = *state;
	struct ram_call *call = (struct ram_call *)1;
	struct outcome o = {0};
	char longname[80];

	/* no credentials yet */
	assert_int_equal(ram_create_access_key(f->c, "u", on_done, &o, &call),
	    RAMKEY_ERR_CONFIG);
	assert_null(call);
	assert_int_equal(ram_client_set_credentials(f->c, "LTAI x", "s"),
	    RAMKEY_ERR_INVALID);
	assert_int_equal(ram_client_set_credentials(f->c, "LTAIabc", ""),
	    RAMKEY_ERR_INVALID);
	assert_int_equal(
	    ram_client_set_credentials(f->c, "", "s"), RAMKEY_ERR_INVALID);
	assert_int_equal(
	    ram_client_set_credentials(f->c, "LTAIabc", "s3cr3t"), 0);
	assert_int_equal(
	    ram_client_set_credentials(f->c, "LTAIdef", "other"), 0);
	assert_int_equal(ram_update_access_key(
			     f->c, "u", "LTAIk", "active", on_done, &o, &call),
	    RAMKEY_ERR_INVALID);
	assert_int_equal(ram_update_access_key(
			     f->c, "u", "bad id", "Active", on_done, &o, &call),
	    RAMKEY_ERR_INVALID);
	assert_int_equal(ram_update_access_key(
			     f->c, "u", NULL, "Active", on_done, &o, &call),
	    RAMKEY_ERR_INVALID);
	assert_int_equal(
	    ram_delete_access_key(f->c, "u", "", on_done, &o, &call),
	    RAMKEY_ERR_INVALID);
	assert_int_equal(
	    ram_get_user(f->c, NULL, on_done, &o, &call), RAMKEY_ERR_INVALID);
	assert_int_equal(ram_list_access_keys(f->c, "a b", on_done, &o, &call),
	    RAMKEY_ERR_INVALID);
	memset(longname, 'a', 65);
	longname[65] = '\0';
	assert_int_equal(
	    ram_create_access_key(f->c, longname, on_done, &o, &call),
	    RAMKEY_ERR_INVALID);
	assert_int_equal(ram_create_access_key(f->c, "u", NULL, &o, &call),
	    RAMKEY_ERR_INVALID);
	assert_null(call);
	assert_int_equal(ram_client_in_flight(f->c), 0);
	assert_false(o.done);
	assert_string_equal(ram_error_kind_name(RAM_ERRK_TIMEOUT), "timeout");
	assert_string_equal(ram_error_kind_name(RAM_ERRK_API), "api");
}

/* Every try is refused: the call ends at its deadline, not before and
 * not much later, with a timeout error naming the operation. */
static void test_deadline(void **state)
{
	struct fixture *f = *state;
	struct outcome o = {0};
	uint64_t t0;

	assert_int_equal(ram_client_set_credentials(f->c, "LTAIabc", "s"), 0);
	assert_false(ram_client_degraded(f->c));
	t0 = evloop_now();
	starting = true;
	assert_int_equal(
	    ram_create_access_key(f->c, "u", on_done, &o, NULL), 0);
	starting = false;
	assert_false(o.done);
	assert_int_equal(ram_client_in_flight(f->c), 1);
	run_until_done(f, &o, 5000);
	assert_true(o.done);
	assert_int_equal(sync_calls, 0);
	print_message("failed after %llu ms, %u attempts: %s\n",
	    (unsigned long long)(o.at - t0), o.err.attempts, o.err.message);
	assert_true(o.at - t0 >= 1500);
	assert_true(o.at - t0 < 2500);
	assert_int_equal(o.rc, RAMKEY_ERR_RAM_TIMEOUT);
	assert_int_equal(o.err.kind, RAM_ERRK_TIMEOUT);
	assert_string_equal(o.err.op, "CreateAccessKey");
	assert_true(o.err.attempts >= 2);
	assert_true(o.err.transport_or_5xx);
	assert_non_null(strstr(o.err.message, "timed out after 1500 ms ("));
	assert_true(ram_client_degraded(f->c));
	assert_int_equal(ram_client_in_flight(f->c), 0);
}

static void test_cancel_and_free(void **state)
{
	struct fixture *f = *state;
	struct ram_client_config cfg;
	struct ram_client *c;
	struct ram_call *a = NULL, *b = NULL;
	uint64_t end;

	assert_int_equal(ram_client_set_credentials(f->c, "LTAIabc", "s"), 0);
	assert_int_equal(
	    ram_list_access_keys(f->c, NULL, on_never, NULL, &a), 0);
	assert_int_equal(ram_get_user(f->c, "u", on_never, NULL, &b), 0);
	assert_non_null(a);
	assert_int_equal(ram_client_in_flight(f->c), 2);
	ram_call_cancel(a);
	assert_int_equal(ram_client_in_flight(f->c), 1);
	/* b gets under way (and fails a try) before it is cancelled */
	for (end = evloop_now() + 200; evloop_now() < end;)
		evloop_run_once(f->loop, 20);
	ram_call_cancel(b);
	ram_call_cancel(NULL);
	assert_int_equal(ram_client_in_flight(f->c), 0);
	for (end = evloop_now() + 100; evloop_now() < end;)
		evloop_run_once(f->loop, 20);

	/* a client freed under its calls: no callback, nothing left armed */
	memset(&cfg, 0, sizeof(cfg));
	cfg.endpoint = f->endpoint;
	assert_int_equal(ram_client_new(f->loop, &cfg, &c), 0);
	assert_int_equal(ram_client_set_credentials(c, "LTAIabc", "s"), 0);
	assert_int_equal(
	    ram_create_access_key(c, "u", on_never, NULL, NULL), 0);
	assert_int_equal(
	    ram_delete_access_key(c, "u", "LTAIk", on_never, NULL, NULL), 0);
	evloop_run_once(f->loop, 20);
	ram_client_free(c);
	for (end = evloop_now() + 100; evloop_now() < end;)
		evloop_run_once(f->loop, 20);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_config, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_arguments, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_deadline, setup, teardown),
	    cmocka_unit_test_setup_teardown(
		test_cancel_and_free, setup, teardown),
	};
	int r;

	curl_global_init(CURL_GLOBAL_DEFAULT);
	r = cmocka_run_group_tests_name("ram.client_api", tests, NULL, NULL);
	curl_global_cleanup();
	return r;
}
