/*
 * proto.seal: crypto_box_seal to a one-time X25519 key: what is sealed
 * opens to the same bytes with the right key only; anything truncated,
 * garbled, holding a NUL or over RAMKEY_SECRET_MAX does not open.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <sodium.h>

#include "locked_mem.h"
#include "ramkey_err.h"
#include "seal.h"

static int setup(void **state)
{
	return ramkey_crypto_init() == 0 ? 0 : -1;
}

static struct ramkey_seal_keypair *keypair(void)
{
	struct ramkey_seal_keypair *kp = NULL;

	assert_int_equal(ramkey_seal_keypair_new(&kp), 0);
	assert_non_null(kp);
	assert_non_null(kp->sk);
	return kp;
}

static void seal_to(const struct ramkey_seal_keypair *kp, const void *m,
    size_t n, uint8_t **c, size_t *clen)
{
	assert_int_equal(ramkey_seal(kp->pk, m, n, c, clen), 0);
	assert_int_equal(*clen, n + crypto_box_SEALBYTES);
}

static void test_open_of_seal_gives_the_secret(void **state)
{
	static const char *const secrets[] = {"PupkTg8jdmau1cXxYacgE736PJabcd",
	    "x", "it's \"quoted\" $HOME `id` \\ \n\t\x7f\xc3\xa9", ""};
	struct ramkey_seal_keypair *kp = keypair();
	size_t i;

	for (i = 0; i < sizeof(secrets) / sizeof(secrets[0]); i++) {
		uint8_t *c = NULL;
		size_t clen = 0, n = 99;
		char *out = NULL;

		seal_to(kp, secrets[i], strlen(secrets[i]), &c, &clen);
		assert_int_equal(ramkey_seal_open(kp, c, clen, &out, &n), 0);
		assert_int_equal(n, strlen(secrets[i]));
		assert_string_equal(out, secrets[i]); /* NUL-terminated */
		ramkey_secure_free(out);
		free(c);
	}
	ramkey_seal_keypair_free(kp);
}

static void test_seal_is_randomised(void **state)
{
	struct ramkey_seal_keypair *kp = keypair();
	uint8_t *a = NULL, *b = NULL;
	size_t alen, blen;

	seal_to(kp, "same secret", 11, &a, &alen);
	seal_to(kp, "same secret", 11, &b, &blen);
	assert_int_equal(alen, blen);
	assert_memory_not_equal(a, b, alen); /* fresh ephemeral key */
	free(a);
	free(b);
	ramkey_seal_keypair_free(kp);
}

static void test_largest_secret_round_trips(void **state)
{
	struct ramkey_seal_keypair *kp = keypair();
	char m[RAMKEY_SECRET_MAX], *out = NULL;
	uint8_t *c = NULL;
	size_t clen = 0, n = 0;

	memset(m, 'S', sizeof(m));
	seal_to(kp, m, sizeof(m), &c, &clen);
	assert_int_equal(ramkey_seal_open(kp, c, clen, &out, &n), 0);
	assert_int_equal(n, sizeof(m));
	assert_memory_equal(out, m, n);
	ramkey_secure_free(out);
	free(c);
	ramkey_seal_keypair_free(kp);
}

static void test_wrong_key_does_not_open(void **state)
{
	struct ramkey_seal_keypair *kp = keypair(), *other = keypair();
	uint8_t *c = NULL;
	size_t clen = 0, n = 5;
	char *out = (char *)"x";

	assert_memory_not_equal(kp->pk, other->pk, sizeof(kp->pk));
	seal_to(kp, "secret", 6, &c, &clen);
	assert_int_equal(
	    ramkey_seal_open(other, c, clen, &out, &n), RAMKEY_ERR_CRYPTO);
	assert_null(out);
	assert_int_equal(n, 0);
	free(c);
	ramkey_seal_keypair_free(kp);
	ramkey_seal_keypair_free(other);
}

static void test_truncated_box_does_not_open(void **state)
{
	struct ramkey_seal_keypair *kp = keypair();
	uint8_t *c = NULL;
	size_t clen = 0, cut;

	seal_to(kp, "secret-value", 12, &c, &clen);
	for (cut = 0; cut < clen; cut++) {
		char *out = NULL;
		size_t n = 0;

		assert_int_equal(
		    ramkey_seal_open(kp, c, cut, &out, &n), RAMKEY_ERR_CRYPTO);
		assert_null(out);
	}
	free(c);
	ramkey_seal_keypair_free(kp);
}

static void test_garbled_box_does_not_open(void **state)
{
	struct ramkey_seal_keypair *kp = keypair();
	uint8_t *c = NULL;
	size_t clen = 0, i;

	seal_to(kp, "secret-value", 12, &c, &clen);
	for (i = 0; i < clen; i++) {
		char *out = NULL;
		size_t n = 0;

		c[i] ^= 0x01;
		assert_int_equal(
		    ramkey_seal_open(kp, c, clen, &out, &n), RAMKEY_ERR_CRYPTO);
		assert_null(out);
		c[i] ^= 0x01;
	}
	/* A byte appended is garbling too. */
	{
		uint8_t *longer = malloc(clen + 1);
		char *out = NULL;
		size_t n = 0;

		assert_non_null(longer);
		memcpy(longer, c, clen);
		longer[clen] = 0;
		assert_int_equal(
		    ramkey_seal_open(kp, longer, clen + 1, &out, &n),
		    RAMKEY_ERR_CRYPTO);
		free(longer);
	}
	free(c);
	ramkey_seal_keypair_free(kp);
}

static void test_secret_with_nul_rejected(void **state)
{
	struct ramkey_seal_keypair *kp = keypair();
	static const char m[] = "abc\0def";
	uint8_t *c = NULL;
	size_t clen = 0, n = 3;
	char *out = (char *)"x";

	/* Sealing raw bytes works; the opener refuses a secret that would
	 * be cut short as a C string. */
	seal_to(kp, m, sizeof(m) - 1, &c, &clen);
	assert_int_equal(
	    ramkey_seal_open(kp, c, clen, &out, &n), RAMKEY_ERR_CRYPTO);
	assert_null(out);
	assert_int_equal(n, 0);
	free(c);
	ramkey_seal_keypair_free(kp);
}

static void test_secret_over_max_rejected(void **state)
{
	struct ramkey_seal_keypair *kp = keypair();
	static char m[RAMKEY_SECRET_MAX + 1];
	uint8_t *c = (uint8_t *)"x", *raw;
	size_t clen = 9, n = 3;
	char *out = (char *)"x";

	memset(m, 'S', sizeof(m));
	assert_int_equal(
	    ramkey_seal(kp->pk, m, sizeof(m), &c, &clen), RAMKEY_ERR_TOO_LARGE);
	assert_null(c);
	assert_int_equal(clen, 0);
	/* A box made elsewhere around a too-long secret is refused before
	 * it is opened. */
	clen = sizeof(m) + crypto_box_SEALBYTES;
	raw = malloc(clen);
	assert_non_null(raw);
	assert_int_equal(
	    crypto_box_seal(raw, (const uint8_t *)m, sizeof(m), kp->pk), 0);
	assert_int_equal(
	    ramkey_seal_open(kp, raw, clen, &out, &n), RAMKEY_ERR_TOO_LARGE);
	assert_null(out);
	assert_int_equal(n, 0);
	free(raw);
	ramkey_seal_keypair_free(kp);
}

static void test_secret_and_key_are_in_locked_memory(void **state)
{
	struct ramkey_seal_keypair *kp = keypair();
	uint8_t *c = NULL;
	size_t clen = 0, n = 0;
	char *out = NULL;

	(void)state;
	seal_to(kp, "guarded", 7, &c, &clen);
	assert_int_equal(ramkey_seal_open(kp, c, clen, &out, &n), 0);
	assert_string_equal(out, "guarded");
#ifndef MLOCK_IS_A_NO_OP
	assert_true(mapping_locked_kb(out) > 0);
	assert_true(mapping_locked_kb(kp->sk) > 0);
#endif
	ramkey_secure_free(out);
	ramkey_secure_free(NULL);
	ramkey_seal_keypair_free(NULL);
	free(c);
	ramkey_seal_keypair_free(kp);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_open_of_seal_gives_the_secret),
	    cmocka_unit_test(test_seal_is_randomised),
	    cmocka_unit_test(test_largest_secret_round_trips),
	    cmocka_unit_test(test_wrong_key_does_not_open),
	    cmocka_unit_test(test_truncated_box_does_not_open),
	    cmocka_unit_test(test_garbled_box_does_not_open),
	    cmocka_unit_test(test_secret_with_nul_rejected),
	    cmocka_unit_test(test_secret_over_max_rejected),
	    cmocka_unit_test(test_secret_and_key_are_in_locked_memory),
	};

	return cmocka_run_group_tests(tests, setup, NULL);
}
