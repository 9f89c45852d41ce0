/*
 * strmap and idmap against a plain array as the reference: random
 * inserts, replacements and deletions (deletion shifts entries back, the
 * part most easily got wrong), growth and shrinking, iteration visiting
 * every entry once, keys found inside the values.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "strmap.h"

#define NKEYS 3000

struct item {
	char key[24];
	int present;
	int value_tag;
};

static struct item items[NKEYS];

static const char *item_key(const void *v)
{
	return ((const struct item *)v)->key;
}

/* xorshift: reproducible. */
static uint64_t rnd_state = 88172645463325252ULL;
static uint64_t rnd(void)
{
	rnd_state ^= rnd_state << 13;
	rnd_state ^= rnd_state >> 7;
	rnd_state ^= rnd_state << 17;
	return rnd_state;
}

static void check_all(const struct strmap *m, const struct idmap *im)
{
	size_t i, n = 0, seen = 0;
	struct strmap_iter it;
	const char *k;
	void *v;
	uint64_t id;
	char *visited = calloc(NKEYS, 1);

	assert_non_null(visited);
	for (i = 0; i < NKEYS; i++) {
		void *want = items[i].present ? &items[i] : NULL;

		assert_ptr_equal(strmap_get(m, items[i].key), want);
		assert_ptr_equal(idmap_get(im, (uint64_t)i * 7919), want);
		n += items[i].present != 0;
	}
	assert_int_equal(strmap_count(m), n);
	assert_int_equal(idmap_count(im), n);
	strmap_iter_init(&it);
	while (strmap_next(m, &it, &k, &v)) {
		struct item *x = v;
		size_t idx = (size_t)(x - items);

		assert_true(x->present);
		assert_ptr_equal(k, x->key); /* the value's own key */
		assert_int_equal(visited[idx], 0);
		visited[idx] = 1;
		seen++;
	}
	assert_int_equal(seen, n);
	memset(visited, 0, NKEYS);
	seen = 0;
	strmap_iter_init(&it);
	while (idmap_next(im, &it, &id, &v)) {
		struct item *x = v;
		size_t idx = (size_t)(x - items);

		assert_int_equal(id, (uint64_t)idx * 7919);
		assert_int_equal(visited[idx], 0);
		visited[idx] = 1;
		seen++;
	}
	assert_int_equal(seen, n);
	free(visited);
}

static void random_operations_match_the_reference(void **state)
{
	struct strmap *m = strmap_new(item_key);
	struct idmap *im = idmap_new();
	int round, op;

	(void)state;
	assert_non_null(m);
	assert_non_null(im);
	for (op = 0; op < NKEYS; op++) {
		snprintf(items[op].key, sizeof(items[op].key), "user%d", op);
		items[op].present = 0;
	}
	for (round = 0; round < 6; round++) {
		/* Fill up (growth), then thin out (backward shifts, shrinking),
		 * with a different mix each round. */
		int fill = round % 2 == 0;

		for (op = 0; op < 20000; op++) {
			size_t i = rnd() % NKEYS;
			int del = fill ? rnd() % 4 == 0 : rnd() % 4 != 0;

			if (del) {
				void *want = items[i].present ?
				    &items[i] : NULL;

				assert_ptr_equal(
				    strmap_del(m, items[i].key), want);
				assert_ptr_equal(
				    idmap_del(im, (uint64_t)i * 7919), want);
				items[i].present = 0;
			} else {
				assert_int_equal(strmap_put(m, &items[i]), 0);
				assert_int_equal(idmap_put(im,
				    (uint64_t)i * 7919, &items[i]), 0);
				items[i].present = 1;
			}
		}
		check_all(m, im);
	}
	strmap_free(m);
	idmap_free(im);
}

static void the_key_is_the_one_inside_the_value(void **state)
{
	struct strmap *m = strmap_new(item_key);
	struct item a = { "alice", 1, 0 }, b = { "alice", 1, 0 };
	char probe[] = "alice";

	(void)state;
	assert_int_equal(strmap_put(m, &a), 0);
	assert_ptr_equal(strmap_get(m, probe), &a);
	/* A value with the same key replaces the old one. */
	assert_int_equal(strmap_put(m, &b), 0);
	assert_int_equal(strmap_count(m), 1);
	memset(a.key, 'x', 5); /* a is out: its key no longer matters */
	assert_ptr_equal(strmap_get(m, "alice"), &b);
	assert_ptr_equal(strmap_del(m, "alice"), &b);
	assert_null(strmap_get(m, "alice"));
	assert_int_equal(strmap_count(m), 0);
	strmap_free(m);
}

static void null_values_are_refused_and_free_accepts_null(void **state)
{
	struct strmap *m = strmap_new(item_key);
	struct idmap *im = idmap_new();

	(void)state;
	assert_int_not_equal(strmap_put(m, NULL), 0);
	assert_int_not_equal(idmap_put(im, 1, NULL), 0);
	assert_int_equal(strmap_count(m), 0);
	assert_null(strmap_del(m, "absent"));
	assert_null(idmap_del(im, 42));
	strmap_free(m);
	idmap_free(im);
	strmap_free(NULL);
	idmap_free(NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(random_operations_match_the_reference),
		cmocka_unit_test(the_key_is_the_one_inside_the_value),
		cmocka_unit_test(null_values_are_refused_and_free_accepts_null),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
