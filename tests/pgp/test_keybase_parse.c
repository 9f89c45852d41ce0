/*
 * keybase_parse_lookup(): the Keybase lookup answer, Terraform's way
 * (status.name "OK", them[0].public_keys.primary.bundle), and the error
 * classes: no such user / no key -> RAMKEY_ERR_KEYBASE_USER; HTTP errors,
 * garbage, other statuses -> RAMKEY_ERR_KEYBASE.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "keybase.h"
#include "ramkey_err.h"

#define BUNDLE                                                                 \
	"-----BEGIN PGP PUBLIC KEY BLOCK-----\\n\\nxx\\n-----END PGP PUBLIC "  \
	"KEY BLOCK-----\\n"
#define BUNDLE_RAW                                                             \
	"-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nxx\n-----END PGP PUBLIC KEY " \
	"BLOCK-----\n"

static int parse(const char *body, long status, char **bundle, char *why)
{
	return keybase_parse_lookup(
	    body, strlen(body), status, "alice", bundle, why, 256);
}

static void test_ok(void **state)
{
	const char *body = "{\"status\":{\"code\":0,\"name\":\"OK\"},"
			   "\"them\":[{\"id\":\"x\",\"basics\":{\"username\":"
			   "\"alice\"},\"public_keys\":{\"primary\":{\"kid\":"
			   "\"0101\",\"bundle\":\"" BUNDLE "\"}}}]}\n";
	char *bundle = NULL, why[256];

	assert_int_equal(parse(body, 200, &bundle, why), 0);
	assert_non_null(bundle);
	assert_string_equal(bundle, BUNDLE_RAW);
	free(bundle);
}

static void expect(const char *body, long status, int rc, const char *why_want)
{
	char *bundle = (char *)1, why[256];

	assert_int_equal(parse(body, status, &bundle, why), rc);
	assert_null(bundle);
	assert_non_null(strstr(why, why_want));
	assert_null(strchr(why, '\n'));
}

static void test_user_missing(void **state)
{
	expect("{\"status\":{\"code\":0,\"name\":\"OK\"},\"them\":[null]}", 200,
	    RAMKEY_ERR_KEYBASE_USER, "Keybase user alice not found");
	expect("{\"status\":{\"code\":0,\"name\":\"OK\"},\"them\":[]}", 200,
	    RAMKEY_ERR_KEYBASE_USER, "Keybase user alice not found");
	expect("{\"status\":{\"code\":0,\"name\":\"OK\"}}", 200,
	    RAMKEY_ERR_KEYBASE_USER, "Keybase user alice not found");
	expect("{\"status\":{\"code\":0,\"name\":\"OK\"},\"them\":null}", 200,
	    RAMKEY_ERR_KEYBASE_USER, "Keybase user alice not found");
	expect("{\"status\":{\"code\":205,\"name\":\"NOT_FOUND\",\"desc\":"
	       "\"Not found\"}}",
	    404, RAMKEY_ERR_KEYBASE_USER, "Keybase user alice not found");
	expect("{\"status\":{\"code\":205,\"name\":\"NOT_FOUND\"}}", 200,
	    RAMKEY_ERR_KEYBASE_USER, "Keybase user alice not found");
}

static void test_no_key(void **state)
{
	expect("{\"status\":{\"name\":\"OK\"},\"them\":[{\"id\":\"x\"}]}", 200,
	    RAMKEY_ERR_KEYBASE_USER, "Keybase user alice has no PGP key");
	expect("{\"status\":{\"name\":\"OK\"},\"them\":[{\"public_keys\":{}}]}",
	    200, RAMKEY_ERR_KEYBASE_USER, "has no PGP key");
	expect("{\"status\":{\"name\":\"OK\"},\"them\":[{\"public_keys\":"
	       "{\"primary\":null}}]}",
	    200, RAMKEY_ERR_KEYBASE_USER, "has no PGP key");
	expect("{\"status\":{\"name\":\"OK\"},\"them\":[{\"public_keys\":"
	       "{\"primary\":{\"bundle\":\"\"}}}]}",
	    200, RAMKEY_ERR_KEYBASE_USER, "has no PGP key");
}

static void test_garbage(void **state)
{
	expect(
	    "<html>oops</html>", 200, RAMKEY_ERR_KEYBASE, "not a lookup reply");
	expect("oops", 500, RAMKEY_ERR_KEYBASE, "Keybase answered HTTP 500");
	expect("{\"status\":{\"name\":\"OK\"},\"them\":[{\"public_keys\":"
	       "{\"primary\":{\"bundle\":\"" BUNDLE "\"}}}]}",
	    502, RAMKEY_ERR_KEYBASE, "HTTP 502");
	expect("{}", 200, RAMKEY_ERR_KEYBASE, "not a lookup reply");
	expect("[]", 200, RAMKEY_ERR_KEYBASE, "not a lookup reply");
	expect("{\"status\":\"OK\"}", 200, RAMKEY_ERR_KEYBASE,
	    "not a lookup reply");
	expect("{\"status\":{\"name\":\"OK\"},\"them\":{}}", 200,
	    RAMKEY_ERR_KEYBASE, "not a lookup reply");
	expect("{\"status\":{\"name\":\"OK\"},\"them\":[7]}", 200,
	    RAMKEY_ERR_KEYBASE, "not a lookup reply");
	expect("{\"status\":{\"name\":\"OK\"},\"them\":[{\"public_keys\":7}]}",
	    200, RAMKEY_ERR_KEYBASE, "not a lookup reply");
	expect("{\"status\":{\"name\":\"OK\"},\"them\":[{\"public_keys\":"
	       "{\"primary\":{\"bundle\":7}}}]}",
	    200, RAMKEY_ERR_KEYBASE, "not a lookup reply");
	expect("{\"status\":{\"name\":\"OK\"},\"them\":[]} trailing", 200,
	    RAMKEY_ERR_KEYBASE, "not a lookup reply");
	expect("{\"status\":{\"name\":\"OK\"},\"them\":[", 200,
	    RAMKEY_ERR_KEYBASE, "not a lookup reply");
	expect("", 200, RAMKEY_ERR_KEYBASE, "not a lookup reply");
	/* a NUL byte in the bundle would cut the key short (fuzz_keybase) */
	expect("{\"status\":{\"name\":\"OK\"},\"them\":[{\"public_keys\":"
	       "{\"primary\":{\"bundle\":\"\\u0000-----BEGIN\"}}}]}",
	    200, RAMKEY_ERR_KEYBASE, "not a lookup reply");
	expect("{\"status\":{\"name\":\"OK\"},\"them\":[{\"public_keys\":"
	       "{\"primary\":{\"bundle\":\"-----BEGIN\\u0000x\"}}}]}",
	    200, RAMKEY_ERR_KEYBASE, "not a lookup reply");
	/* a status we do not know, with a control character in it */
	expect("{\"status\":{\"code\":100,\"name\":\"INPUT\\nERROR\"}}", 200,
	    RAMKEY_ERR_KEYBASE, "Keybase refused the lookup (INPUT?ERROR)");
}

static void test_names(void **state)
{
	char long_name[KEYBASE_NAME_MAX + 2];

	assert_true(keybase_name_valid("alice"));
	assert_true(keybase_name_valid("A_b_9"));
	assert_false(keybase_name_valid(""));
	assert_false(keybase_name_valid(NULL));
	assert_false(keybase_name_valid("a-b"));
	assert_false(keybase_name_valid("a b"));
	assert_false(keybase_name_valid("a&fields=x"));
	assert_false(keybase_name_valid("\xc3\xa9"));
	memset(long_name, 'a', sizeof(long_name));
	long_name[KEYBASE_NAME_MAX] = '\0';
	assert_true(keybase_name_valid(long_name));
	long_name[KEYBASE_NAME_MAX] = 'a';
	long_name[KEYBASE_NAME_MAX + 1] = '\0';
	assert_false(keybase_name_valid(long_name));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_ok),
	    cmocka_unit_test(test_user_missing),
	    cmocka_unit_test(test_no_key),
	    cmocka_unit_test(test_garbage),
	    cmocka_unit_test(test_names),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
