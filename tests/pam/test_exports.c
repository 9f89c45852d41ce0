/*
 * pam.exports_dlsym: pam_ramkey.so exports the two session entry points
 * and nothing of libramkey-proto or the module's own helpers.
 *
 * dlsym() on a library handle also searches that library's dependencies,
 * so a symbol of a shared dependency (libpam; json-c and libsodium unless
 * they are linked in statically, RAMKEY_PAM_STATIC_DEPS) is found through
 * the handle; for those the test checks with dladdr() that the definition
 * is not in pam_ramkey.so. Symbols of the statically linked libraries
 * must not be found at all.
 */
#include <dlfcn.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#ifndef PAM_MODULE_PATH
#error "PAM_MODULE_PATH must name the built pam_ramkey.so"
#endif

static void *module;

static int setup(void **state)
{
	(void)state;
	module = dlopen(PAM_MODULE_PATH, RTLD_NOW | RTLD_LOCAL);
	if (module == NULL) {
		fprintf(stderr, "dlopen %s: %s\n", PAM_MODULE_PATH, dlerror());
		return -1;
	}
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	if (module != NULL)
		dlclose(module);
	return 0;
}

/* Is addr defined inside pam_ramkey.so itself? */
static int defined_in_module(void *addr)
{
	Dl_info info;
	void *self = dlsym(module, "pam_sm_open_session");
	Dl_info mine;

	if (addr == NULL)
		return 0;
	assert_non_null(self);
	assert_true(dladdr(self, &mine) != 0);
	assert_true(dladdr(addr, &info) != 0);
	return info.dli_fbase == mine.dli_fbase;
}

static void test_entry_points_exported(void **state)
{
	void *open_fn, *close_fn;

	(void)state;
	open_fn = dlsym(module, "pam_sm_open_session");
	close_fn = dlsym(module, "pam_sm_close_session");
	assert_non_null(open_fn);
	assert_non_null(close_fn);
	assert_true(defined_in_module(open_fn));
	assert_true(defined_in_module(close_fn));
}

static void test_other_pam_sm_absent(void **state)
{
	static const char *const absent[] = {
	    "pam_sm_authenticate",
	    "pam_sm_setcred",
	    "pam_sm_acct_mgmt",
	    "pam_sm_chauthtok",
	};
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(absent) / sizeof(absent[0]); i++) {
		void *p = dlsym(module, absent[i]);

		if (p != NULL)
			fail_msg("%s is exported", absent[i]);
	}
}

/* The module's and libramkey-proto's own functions: never visible. */
static void test_internal_symbols_hidden(void **state)
{
	static const char *const internal[] = {
	    "ramkey_secret_file_write",
	    "ramkey_secret_file_remove",
	    "ramkey_agent_call",
	    "ramkey_agent_connect",
	    "ramkey_agent_exchange",
	    "ramkey_frame_recv",
	    "ramkey_frame_send",
	    "ramkey_frame_parse_header",
	    "ramkey_request_encode",
	    "ramkey_request_new",
	    "ramkey_reply_decode",
	    "ramkey_reply_free",
	    "ramkey_seal_open",
	    "ramkey_seal_keypair_new",
	    "ramkey_secure_free",
	    "ramkey_secure_alloc",
	    "ramkey_fsid_drop",
	    "ramkey_fsid_restore",
	    "ramkey_template_expand",
	    "ramkey_template_check",
	    "ramkey_format_render",
	    "ramkey_format_parse",
	    "ramkey_mask_key_id",
	    "ramkey_strerror",
	    "ramkey_now_ms",
	    "ramkey_crypto_init",
	    "ramkey_b64_decode",
	    /* static functions of pam_ramkey.c */
	    "parse_options",
	    "failed",
	    "runtime_dir",
	    "abort_session",
	    "session_data_cleanup",
	    "read_pgp_key_file",
	    "put_env",
	};
	size_t i, found = 0;

	(void)state;
	for (i = 0; i < sizeof(internal) / sizeof(internal[0]); i++) {
		if (dlsym(module, internal[i]) != NULL) {
			print_error(
			    "internal symbol %s is exported\n", internal[i]);
			found++;
		}
	}
	assert_int_equal(found, 0);
}

/* Library functions the module uses are never exported by it: they come
 * from their shared libraries, or from a static copy that stays hidden
 * inside the module. */
static void test_dependencies_not_reexported(void **state)
{
	static const char *const deps[] = {
	    "json_object_new_object",
	    "json_tokener_parse_ex",
	    "json_object_put",
	    "sodium_init",
	    "crypto_box_seal_open",
	    "sodium_malloc",
	    "pam_syslog",
	    "pam_get_user",
	};
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(deps) / sizeof(deps[0]); i++) {
		void *p = dlsym(module, deps[i]);

		if (defined_in_module(p))
			fail_msg("%s is defined in and exported by "
				 "pam_ramkey.so",
			    deps[i]);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_entry_points_exported),
	    cmocka_unit_test(test_other_pam_sm_absent),
	    cmocka_unit_test(test_internal_symbols_hidden),
	    cmocka_unit_test(test_dependencies_not_reexported),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
