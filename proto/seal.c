#include <stdlib.h>
#include <string.h>

#include "ramkey_err.h"
#include "seal.h"

int ramkey_crypto_init(void)
{
	return sodium_init() < 0 ? RAMKEY_ERR_CRYPTO : 0;
}

int ramkey_seal_keypair_new(struct ramkey_seal_keypair **ret)
{
	struct ramkey_seal_keypair *kp;

	*ret = NULL;
	if (ramkey_crypto_init() != 0)
		return RAMKEY_ERR_CRYPTO;
	if ((kp = calloc(1, sizeof(*kp))) == NULL)
		return RAMKEY_ERR_NOMEM;
	if ((kp->sk = ramkey_secure_alloc(crypto_box_SECRETKEYBYTES)) == NULL) {
		free(kp);
		return RAMKEY_ERR_NOMEM;
	}
	if (crypto_box_keypair(kp->pk, kp->sk) != 0) {
		ramkey_seal_keypair_free(kp);
		return RAMKEY_ERR_CRYPTO;
	}
	*ret = kp;
	return 0;
}

void ramkey_seal_keypair_free(struct ramkey_seal_keypair *kp)
{
	if (kp == NULL)
		return;
	ramkey_secure_free(kp->sk);
	sodium_memzero(kp, sizeof(*kp));
	free(kp);
}

int ramkey_seal(const uint8_t pk[crypto_box_PUBLICKEYBYTES],
    const void *msg, size_t len, uint8_t **out, size_t *outlen)
{
	uint8_t *c;
	size_t n = len + crypto_box_SEALBYTES;

	*out = NULL;
	*outlen = 0;
	if (len > RAMKEY_SECRET_MAX)
		return RAMKEY_ERR_TOO_LARGE;
	if ((c = malloc(n)) == NULL)
		return RAMKEY_ERR_NOMEM;
	if (crypto_box_seal(c, msg, len, pk) != 0) {
		free(c);
		return RAMKEY_ERR_CRYPTO;
	}
	*out = c;
	*outlen = n;
	return 0;
}

int ramkey_seal_open(const struct ramkey_seal_keypair *kp, const uint8_t *c,
    size_t clen, char **secretp, size_t *lenp)
{
	char *m;
	size_t n;

	*secretp = NULL;
	*lenp = 0;
	if (clen < crypto_box_SEALBYTES)
		return RAMKEY_ERR_CRYPTO;
	n = clen - crypto_box_SEALBYTES;
	if (n > RAMKEY_SECRET_MAX)
		return RAMKEY_ERR_TOO_LARGE;
	if ((m = ramkey_secure_alloc(n + 1)) == NULL)
		return RAMKEY_ERR_NOMEM;
	if (crypto_box_seal_open((uint8_t *)m, c, clen, kp->pk, kp->sk) != 0 ||
	    memchr(m, '\0', n) != NULL) {
		ramkey_secure_free(m);
		return RAMKEY_ERR_CRYPTO;
	}
	m[n] = '\0';
	*secretp = m;
	*lenp = n;
	return 0;
}
