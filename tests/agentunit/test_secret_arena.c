/*
 * agentunit.secret_arena: the locked arena that holds every lease secret.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "ramkey_err.h"
#include "secret_arena.h"

static void put_get_release_round_trip(void **state)
{
	struct secret_arena *a;
	uint32_t slot;
	size_t len;
	const char *s;

	(void)state;
	assert_int_equal(secret_arena_new(&a), 0);
	assert_int_equal(secret_arena_put(a, "abc", 3, &slot), 0);
	assert_int_not_equal(slot, 0);
	s = secret_arena_get(a, slot, &len);
	assert_non_null(s);
	assert_int_equal(len, 3);
	assert_string_equal(s, "abc");
	secret_arena_release(a, slot);
	assert_null(secret_arena_get(a, slot, &len));
	assert_int_equal(secret_arena_used(a), 0);
	secret_arena_free(a);
}

static void refuses_empty_and_oversized_secrets(void **state)
{
	struct secret_arena *a;
	char big[ARENA_SECRET_MAX + 2];
	uint32_t slot = 7;

	(void)state;
	memset(big, 'x', sizeof(big));
	assert_int_equal(secret_arena_new(&a), 0);
	assert_int_equal(secret_arena_put(a, big, 0, &slot),
	    RAMKEY_ERR_TOO_LARGE);
	assert_int_equal(slot, 0);
	assert_int_equal(secret_arena_put(a, big, ARENA_SECRET_MAX + 1, &slot),
	    RAMKEY_ERR_TOO_LARGE);
	assert_int_equal(secret_arena_put(a, big, ARENA_SECRET_MAX, &slot), 0);
	secret_arena_free(a);
}

/* Many chunks' worth live at once, then all released: every slot must fit
 * in the free list (this overflowed once past 512 slots). */
static void thousands_of_slots_live_then_released(void **state)
{
	enum { N = 3000 };
	struct secret_arena *a;
	uint32_t *slots = calloc(N, sizeof(*slots));
	char buf[40];
	int i, round;

	(void)state;
	assert_non_null(slots);
	assert_int_equal(secret_arena_new(&a), 0);
	for (round = 0; round < 3; round++) {
		for (i = 0; i < N; i++) {
			int n = snprintf(buf, sizeof(buf), "secret-%d-%d",
			    round, i);

			assert_int_equal(secret_arena_put(a, buf, (size_t)n,
			    &slots[i]), 0);
		}
		assert_int_equal(secret_arena_used(a), N);
		for (i = 0; i < N; i++) {
			size_t len;

			snprintf(buf, sizeof(buf), "secret-%d-%d", round, i);
			assert_string_equal(secret_arena_get(a, slots[i], &len),
			    buf);
		}
		for (i = 0; i < N; i++)
			secret_arena_release(a, slots[i]);
		assert_int_equal(secret_arena_used(a), 0);
	}
	secret_arena_free(a);
	free(slots);
}

/* An AccessKeySecret, an STS token, the largest: each in a slot of its
 * size, each read back whole, each wiped on release. */
static void sizes_take_slots_that_fit(void **state)
{
	static const size_t lens[] = { 30, 125, 126, 509, 510, 1100, 1277,
		1278, 2046, 4093, 4094, ARENA_SECRET_MAX };
	enum { N = sizeof(lens) / sizeof(lens[0]) };
	struct secret_arena *a;
	uint32_t slots[N];
	char *buf;
	size_t i, len;

	(void)state;
	assert_non_null(buf = malloc(ARENA_SECRET_MAX));
	assert_int_equal(secret_arena_new(&a), 0);
	for (i = 0; i < N; i++) {
		memset(buf, 'a' + (int)i, lens[i]);
		assert_int_equal(secret_arena_put(a, buf, lens[i], &slots[i]),
		    0);
	}
	for (i = 0; i < N; i++) {
		const char *s = secret_arena_get(a, slots[i], &len);

		assert_non_null(s);
		assert_int_equal(len, lens[i]);
		assert_int_equal(s[len], '\0');
		assert_true(s[0] == 'a' + (int)i && s[len - 1] == 'a' + (int)i);
	}
	for (i = 0; i < N; i++) {
		const char *s = secret_arena_get(a, slots[i], &len);

		secret_arena_release(a, slots[i]);
		/* The slot's bytes are zero now (the chunk stays mapped). */
		for (size_t k = 0; k < lens[i]; k++)
			assert_int_equal(s[k], 0);
		assert_null(secret_arena_get(a, slots[i], NULL));
	}
	assert_int_equal(secret_arena_used(a), 0);
	secret_arena_free(a);
	free(buf);
}

static void release_of_zero_or_free_slot_is_harmless(void **state)
{
	struct secret_arena *a;
	uint32_t slot;

	(void)state;
	assert_int_equal(secret_arena_new(&a), 0);
	secret_arena_release(a, 0);
	assert_int_equal(secret_arena_put(a, "k", 1, &slot), 0);
	secret_arena_release(a, slot);
	secret_arena_release(a, slot); /* twice: ignored */
	assert_int_equal(secret_arena_used(a), 0);
	assert_null(secret_arena_get(a, 999999, NULL));
	secret_arena_free(a);
	secret_arena_free(NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(put_get_release_round_trip),
		cmocka_unit_test(refuses_empty_and_oversized_secrets),
		cmocka_unit_test(thousands_of_slots_live_then_released),
		cmocka_unit_test(sizes_take_slots_that_fit),
		cmocka_unit_test(release_of_zero_or_free_slot_is_harmless),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
