/*
 * proto.secure_mem: a requester's locked buffers: they are locked, never
 * overlap, are wiped when freed, and requests the region cannot hold
 * still get locked memory of their own.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <sodium.h>

#include "locked_mem.h"
#include "secure_mem.h"

static int setup(void **state)
{
	(void)state;
	return sodium_init() < 0 ? -1 : 0;
}

static bool all_bytes(const unsigned char *p, size_t n, unsigned char v)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (p[i] != v)
			return false;
	return true;
}

static void test_buffers_are_locked(void **state)
{
	void *small, *big;

	(void)state;
#ifdef MLOCK_IS_A_NO_OP
	skip();
#endif
	small = ramkey_secure_alloc(32);
	big = ramkey_secure_alloc(RAMKEY_SECURE_REGION); /* its own */
	assert_non_null(small);
	assert_non_null(big);
	assert_true(mapping_locked_kb(small) > 0);
	assert_true(mapping_locked_kb(big) > 0);
	ramkey_secure_free(small);
	ramkey_secure_free(big);
}

static void test_buffers_do_not_overlap(void **state)
{
	unsigned char *p[40];
	size_t sizes[40], i, j;

	(void)state;
	for (i = 0; i < 40; i++) {
		sizes[i] = 1 + (i * 97) % 700;
		p[i] = ramkey_secure_alloc(sizes[i]);
		assert_non_null(p[i]);
		memset(p[i], (int)(i + 1), sizes[i]);
	}
	for (i = 0; i < 40; i++) {
		assert_true(all_bytes(p[i], sizes[i], (unsigned char)(i + 1)));
		for (j = 0; j < 40; j++)
			if (i != j)
				assert_true(p[i] + sizes[i] <= p[j] ||
				    p[j] + sizes[j] <= p[i]);
	}
	for (i = 0; i < 40; i++)
		ramkey_secure_free(p[i]);
}

static void test_freed_buffer_is_wiped_and_reused(void **state)
{
	unsigned char *p, *q;

	(void)state;
	p = ramkey_secure_alloc(100);
	assert_non_null(p);
	memset(p, 0xA5, 100);
	ramkey_secure_free(p);
	/* Still mapped: the region outlives its buffers. */
	assert_true(all_bytes(p, 100, 0));
	q = ramkey_secure_alloc(100);
	assert_ptr_equal(q, p); /* first fit: the same units again */
	ramkey_secure_free(q);
}

static void test_impossible_size_touches_nothing(void **state)
{
	unsigned char *live = ramkey_secure_alloc(64);

	(void)state;
	assert_non_null(live);
	memset(live, 0x3C, 64);
	/* Rounding SIZE_MAX up to whole units would wrap to zero. */
	assert_null(ramkey_secure_alloc(SIZE_MAX));
	assert_null(ramkey_secure_alloc(SIZE_MAX - 10));
	assert_true(all_bytes(live, 64, 0x3C));
	ramkey_secure_free(live);
}

static void test_full_region_falls_back(void **state)
{
	void *p[RAMKEY_SECURE_REGION / 64 + 8];
	size_t i, n = sizeof(p) / sizeof(p[0]);

	(void)state;
	for (i = 0; i < n; i++) {
		p[i] = ramkey_secure_alloc(64);
		assert_non_null(p[i]);
		memset(p[i], 0x5A, 64);
	}
	for (i = 0; i < n; i++)
		ramkey_secure_free(p[i]);
	assert_null(ramkey_secure_alloc(0));
	ramkey_secure_free(NULL);
}

static void *churn(void *arg)
{
	unsigned char tag = (unsigned char)(uintptr_t)arg, *p;
	int i;

	for (i = 0; i < 2000; i++) {
		size_t n = 1 + (size_t)(i * 31 % 300);

		if ((p = ramkey_secure_alloc(n)) == NULL)
			return (void *)1;
		memset(p, tag, n);
		if (!all_bytes(p, n, tag))
			return (void *)1;
		ramkey_secure_free(p);
	}
	return NULL;
}

static void test_threads_never_share_a_buffer(void **state)
{
	pthread_t th[4];
	void *rv;
	uintptr_t i;

	(void)state;
	for (i = 0; i < 4; i++)
		assert_int_equal(pthread_create(&th[i], NULL, churn,
				     (void *)(i + 1)), 0);
	for (i = 0; i < 4; i++) {
		assert_int_equal(pthread_join(th[i], &rv), 0);
		assert_null(rv);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_buffers_are_locked),
	    cmocka_unit_test(test_buffers_do_not_overlap),
	    cmocka_unit_test(test_freed_buffer_is_wiped_and_reused),
	    cmocka_unit_test(test_impossible_size_touches_nothing),
	    cmocka_unit_test(test_full_region_falls_back),
	    cmocka_unit_test(test_threads_never_share_a_buffer),
	};

	return cmocka_run_group_tests(tests, setup, NULL);
}
