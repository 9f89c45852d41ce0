/*
 * source.schedule: the agent's own credential (agent/cloud/source.c)
 * without a cloud: the renewal schedule, the backoff, a static key, a
 * security token from the environment that has expired, and a metadata
 * service that does not answer (calls fail at once with the reason, and
 * ask again at most once a second).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <curl/curl.h>
#include <sodium.h>

#include "evloop.h"
#include "ramkey_err.h"
#include "source.h"
#include "util.h"

#define MIN 60000ULL

static void test_poll_delay(void **state)
{
	(void)state;
	/* More than 15 minutes left: ask 15 minutes before the end. */
	assert_int_equal(source_poll_delay_ms(6 * 60 * MIN), 6 * 60 * MIN -
	    15 * MIN);
	assert_int_equal(source_poll_delay_ms(16 * MIN), MIN);
	/* Inside the window: a third of what is left, at most a minute... */
	assert_int_equal(source_poll_delay_ms(15 * MIN), MIN);
	assert_int_equal(source_poll_delay_ms(3 * MIN), MIN);
	assert_int_equal(source_poll_delay_ms(90000), 30000);
	assert_int_equal(source_poll_delay_ms(9000), 3000);
	/* ...and never under a second, expired or not. */
	assert_int_equal(source_poll_delay_ms(2000), 1000);
	assert_int_equal(source_poll_delay_ms(0), 1000);
}

static void test_backoff(void **state)
{
	(void)state;
	assert_int_equal(source_backoff_ms(1), 1000);
	assert_int_equal(source_backoff_ms(2), 2000);
	assert_int_equal(source_backoff_ms(3), 4000);
	assert_int_equal(source_backoff_ms(6), 32000);
	assert_int_equal(source_backoff_ms(7), 60000);
	assert_int_equal(source_backoff_ms(100), 60000);
}

static char *secret(const char *s)
{
	char *p = sodium_malloc(strlen(s) + 1);

	assert_non_null(p);
	memcpy(p, s, strlen(s) + 1);
	return p;
}

static struct source_spec *static_spec(const char *token, int64_t expires)
{
	struct source_spec *spec = calloc(1, sizeof(*spec));

	assert_non_null(spec);
	spec->origin = strdup("env");
	spec->where = strdup("the environment");
	spec->profile_type = strdup(token ? "sts_token" : "access_key");
	spec->type = SOURCE_STATIC;
	spec->key_id = strdup("LTAI5tStatic0000000001");
	spec->secret = secret("static-secret");
	spec->token = token != NULL ? secret(token) : NULL;
	spec->token_expires = expires;
	return spec;
}

static void test_static_key(void **state)
{
	struct evloop *loop = NULL;
	struct source_spec *spec = static_spec(NULL, 0);
	struct source *s = NULL;
	struct ram_credential cr;
	struct source_status st;
	char why[256];

	(void)state;
	assert_int_equal(evloop_new(&loop), 0);
	assert_int_equal(source_new(loop, spec, NULL, &s), 0);
	source_spec_free(spec);
	assert_int_equal(source_start(s), 0);
	assert_true(source_usable(s));
	assert_int_equal(source_credential(s, &cr, why, sizeof(why)), 0);
	assert_string_equal(cr.key_id, "LTAI5tStatic0000000001");
	assert_string_equal(cr.secret, "static-secret");
	assert_int_equal(cr.secret_len, strlen("static-secret"));
	assert_null(cr.token);
	source_get_status(s, &st);
	assert_string_equal(st.origin, "env");
	assert_string_equal(st.type, "access_key");
	assert_false(st.temporary);
	assert_false(st.renewable);
	assert_int_equal(st.expires, 0);
	assert_string_equal(st.key_id, "LTAI****0001");
	source_free(s);
	source_free(NULL);
	evloop_free(loop);
}

static void test_environment_token_expired(void **state)
{
	struct evloop *loop = NULL;
	struct source_spec *spec;
	struct source *s = NULL;
	struct ram_credential cr;
	struct source_status st;
	char why[384];

	(void)state;
	assert_int_equal(evloop_new(&loop), 0);
	/* Valid for an hour: usable, with its token. */
	spec = static_spec("CAIStoken", ramkey_wall_now() + 3600);
	assert_int_equal(source_new(loop, spec, NULL, &s), 0);
	source_spec_free(spec);
	assert_int_equal(source_start(s), 0);
	assert_int_equal(source_credential(s, &cr, why, sizeof(why)), 0);
	assert_string_equal(cr.token, "CAIStoken");
	source_get_status(s, &st);
	assert_true(st.temporary);
	assert_false(st.renewable);
	assert_true(st.expires > 0);
	source_free(s);
	/* Expired: no credential, and the reason says it cannot be
	 * renewed, without the token or the secret. */
	spec = static_spec("CAIStoken", ramkey_wall_now() - 10);
	assert_int_equal(source_new(loop, spec, NULL, &s), 0);
	source_spec_free(spec);
	assert_int_equal(source_start(s), 0);
	assert_false(source_usable(s));
	assert_int_equal(source_credential(s, &cr, why, sizeof(why)),
	    RAMKEY_ERR_UNAVAILABLE);
	assert_null(cr.key_id);
	assert_non_null(strstr(why, "cannot be renewed"));
	assert_null(strstr(why, "CAIStoken"));
	assert_null(strstr(why, "static-secret"));
	source_free(s);
	evloop_free(loop);
}

static void test_metadata_service_away(void **state)
{
	struct evloop *loop = NULL;
	struct source_spec *spec = calloc(1, sizeof(*spec));
	struct source *s = NULL;
	struct ram_credential cr;
	struct source_status st;
	char why[384];
	uint64_t start;
	int i;

	(void)state;
	assert_non_null(spec);
	spec->origin = strdup("ecs_ram_role");
	spec->where = strdup("http://127.0.0.1:1");
	spec->profile_type = strdup("ecs_ram_role");
	spec->type = SOURCE_IMDS;
	spec->metadata_url = strdup("http://127.0.0.1:1");
	assert_int_equal(evloop_new(&loop), 0);
	assert_int_equal(source_new(loop, spec, NULL, &s), 0);
	source_spec_free(spec);
	/* Before the first answer: unusable, and says it is waiting. */
	assert_int_equal(source_credential(s, &cr, why, sizeof(why)),
	    RAMKEY_ERR_UNAVAILABLE);
	assert_non_null(strstr(why, "waiting for the first answer"));
	assert_int_equal(source_start(s), 0);
	start = evloop_now();
	while (evloop_now() - start < 300)
		assert_int_equal(evloop_run_once(loop, 50), 0);
	assert_false(source_usable(s));
	assert_int_equal(source_credential(s, &cr, why, sizeof(why)),
	    RAMKEY_ERR_UNAVAILABLE);
	assert_non_null(strstr(why, "127.0.0.1:1"));
	assert_non_null(strstr(why, "unreachable"));
	source_get_status(s, &st);
	assert_false(st.usable);
	assert_true(st.temporary);
	assert_true(st.renewable);
	assert_string_equal(st.key_id, "");
	assert_non_null(strstr(st.why, "no credential yet"));
	/* Calls every 10 ms keep failing at once with the reason (the
	 * pace of the fetches they ask for is checked against the
	 * emulator's metadata service in source.imds_outage). */
	start = evloop_now();
	for (i = 0; evloop_now() - start < 1500; i++) {
		assert_int_equal(source_credential(s, &cr, why, sizeof(why)),
		    RAMKEY_ERR_UNAVAILABLE);
		assert_int_equal(evloop_run_once(loop, 10), 0);
	}
	assert_true(i > 50);
	source_free(s);
	evloop_free(loop);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_poll_delay),
		cmocka_unit_test(test_backoff),
		cmocka_unit_test(test_static_key),
		cmocka_unit_test(test_environment_token_expired),
		cmocka_unit_test(test_metadata_service_away),
	};

	if (sodium_init() < 0 ||
	    curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
		return 1;
	return cmocka_run_group_tests(tests, NULL, NULL);
}
