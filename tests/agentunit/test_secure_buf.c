/*
 * agentunit.secure_buf: the reusable locked buffers that hold a cloud
 * answer's secret and token until the lease core copies them.
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

#include "locked_mem.h"
#include "secure_buf.h"

static bool all_zero(const unsigned char *p, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (p[i] != 0)
			return false;
	return true;
}

static void buffer_is_locked_memory(void **state)
{
	void *p;

	(void)state;
#ifdef MLOCK_IS_A_NO_OP
	skip();
#endif
	secure_buf_drain();
	p = secure_buf_alloc(100);
	assert_non_null(p);
	assert_true(mapping_locked_kb(p) > 0);
	secure_buf_free(p);
	secure_buf_drain();
}

static void released_buffer_is_wiped_and_reused(void **state)
{
	unsigned char *p, *q;

	(void)state;
	secure_buf_drain();
	p = secure_buf_alloc(200);
	assert_non_null(p);
	memset(p, 'S', 200);
	secure_buf_free(p);
	q = secure_buf_alloc(150); /* the same size: the kept buffer */
	assert_ptr_equal(q, p);
	assert_true(all_zero(q, 200));
	secure_buf_free(q);
	secure_buf_drain();
}

static void token_and_oversized_sizes(void **state)
{
	unsigned char *t, *big;

	(void)state;
	t = secure_buf_alloc(8193); /* the longest SecurityToken and NUL */
	assert_non_null(t);
	memset(t, 'T', 8193);
	big = secure_buf_alloc(20000); /* larger: not kept, still locked */
	assert_non_null(big);
	memset(big, 'B', 20000);
	secure_buf_free(big);
	secure_buf_free(t);
	secure_buf_free(NULL);
	secure_buf_drain();
}

enum { NTHREADS = 4, ROUNDS = 5000 };

static void *churn(void *arg)
{
	unsigned char pattern = (unsigned char)(uintptr_t)arg;
	unsigned char *p;
	int i;

	for (i = 0; i < ROUNDS; i++) {
		size_t n = (i % 3 == 0) ? 1200 : 60;
		size_t k;

		if ((p = secure_buf_alloc(n)) == NULL)
			return (void *)1;
		memset(p, pattern, n);
		for (k = 0; k < n; k++)
			if (p[k] != pattern)
				return (void *)1; /* shared with a thread */
		secure_buf_free(p);
	}
	return NULL;
}

static void threads_never_share_a_buffer(void **state)
{
	pthread_t t[NTHREADS];
	void *ret;
	int i;

	(void)state;
	for (i = 0; i < NTHREADS; i++)
		assert_int_equal(pthread_create(&t[i], NULL, churn,
		    (void *)(uintptr_t)(i + 1)), 0);
	for (i = 0; i < NTHREADS; i++) {
		assert_int_equal(pthread_join(t[i], &ret), 0);
		assert_null(ret);
	}
	secure_buf_drain();
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(buffer_is_locked_memory),
		cmocka_unit_test(released_buffer_is_wiped_and_reused),
		cmocka_unit_test(token_and_oversized_sizes),
		cmocka_unit_test(threads_never_share_a_buffer),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
