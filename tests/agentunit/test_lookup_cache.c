/*
 * The agent's cache of user lookups: a hit gives back what the lookup
 * found, for the same inputs only; entries expire; clearing (a reload)
 * empties it; failed lookups are not kept; it stops growing at its cap.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "lookup_cache.h"
#include "ramkey_err.h"
#include "server_int.h"

static void found(struct lookup *lk, const char *target, uid_t uid)
{
	memset(lk, 0, sizeof(*lk));
	lk->target = (char *)target;
	lk->for_keys = true;
	lk->user = strdup(target);
	lk->home = strdup("/home/x");
	lk->principal = strdup("ram-x");
	lk->uid = uid;
	lk->gid = uid;
	lk->in_group = true;
}

static void release(struct lookup *lk)
{
	free(lk->own);
	free(lk->user);
	free(lk->home);
	free(lk->principal);
	memset(lk, 0, sizeof(*lk));
}

static void query(struct lookup *lk, const char *target, bool for_keys)
{
	memset(lk, 0, sizeof(*lk));
	lk->target = (char *)target;
	lk->for_keys = for_keys;
}

static void a_hit_gives_back_the_lookup_for_the_same_inputs(void **state)
{
	struct lookup_cache *c;
	struct lookup in, out;

	(void)state;
	assert_int_equal(lookup_cache_new(&c), 0);
	found(&in, "alice", 1001);
	lookup_cache_put(c, &in, 1000);
	release(&in);
	query(&out, "alice", true);
	assert_true(lookup_cache_get(c, &out, 2000));
	assert_string_equal(out.user, "alice");
	assert_string_equal(out.home, "/home/x");
	assert_string_equal(out.principal, "ram-x");
	assert_int_equal(out.uid, 1001);
	assert_true(out.in_group);
	release(&out);
	/* Other inputs: another user, or no key policy asked for. */
	query(&out, "bob", true);
	assert_false(lookup_cache_get(c, &out, 2000));
	query(&out, "alice", false);
	assert_false(lookup_cache_get(c, &out, 2000));
	lookup_cache_free(c);
}

static void entries_expire_and_a_reload_clears_them(void **state)
{
	struct lookup_cache *c;
	struct lookup in, out;

	(void)state;
	assert_int_equal(lookup_cache_new(&c), 0);
	found(&in, "alice", 1001);
	lookup_cache_put(c, &in, 1000);
	query(&out, "alice", true);
	assert_false(lookup_cache_get(c, &out, 1000 + LOOKUP_CACHE_TTL_MS));
	lookup_cache_put(c, &in, 5000);
	lookup_cache_clear(c);
	assert_false(lookup_cache_get(c, &out, 5001));
	release(&in);
	lookup_cache_free(c);
}

static void failed_lookups_are_not_kept(void **state)
{
	struct lookup_cache *c;
	struct lookup in, out;

	(void)state;
	assert_int_equal(lookup_cache_new(&c), 0);
	found(&in, "alice", 1001);
	in.rc = RAMKEY_ERR_NO_USER;
	lookup_cache_put(c, &in, 1000);
	query(&out, "alice", true);
	assert_false(lookup_cache_get(c, &out, 1001));
	release(&in);
	lookup_cache_free(c);
}

static void it_stops_growing_at_its_cap(void **state)
{
	struct lookup_cache *c;
	struct lookup in, out;
	char name[32];
	unsigned i;

	(void)state;
	assert_int_equal(lookup_cache_new(&c), 0);
	for (i = 0; i <= LOOKUP_CACHE_MAX; i++) {
		snprintf(name, sizeof(name), "user%u", i);
		found(&in, name, 1000 + i);
		lookup_cache_put(c, &in, 1000);
		release(&in);
	}
	query(&out, "user0", true);
	assert_true(lookup_cache_get(c, &out, 1001));
	release(&out);
	snprintf(name, sizeof(name), "user%u", LOOKUP_CACHE_MAX);
	query(&out, name, true);
	assert_false(lookup_cache_get(c, &out, 1001));
	/* Once entries have expired there is room again. */
	found(&in, name, 9999);
	lookup_cache_put(c, &in, 1000 + LOOKUP_CACHE_TTL_MS);
	release(&in);
	query(&out, name, true);
	assert_true(lookup_cache_get(c, &out, 1001 + LOOKUP_CACHE_TTL_MS));
	release(&out);
	lookup_cache_free(c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(
		    a_hit_gives_back_the_lookup_for_the_same_inputs),
		cmocka_unit_test(entries_expire_and_a_reload_clears_them),
		cmocka_unit_test(failed_lookups_are_not_kept),
		cmocka_unit_test(it_stops_growing_at_its_cap),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
