/*
 * Secrets cross the agent socket only as libsodium sealed boxes
 * (crypto_box_seal) to an X25519 key the requester makes for each request.
 */
#ifndef RAMKEY_SEAL_H
#define RAMKEY_SEAL_H

#include <stddef.h>
#include <stdint.h>

#include <sodium.h>

#include "secure_mem.h"

#define RAMKEY_SECRET_MAX 1024

struct ramkey_seal_keypair {
	uint8_t pk[crypto_box_PUBLICKEYBYTES];
	uint8_t *sk; /* locked: ramkey_secure_alloc() */
};

/* sodium_init(); safe to call more than once. */
int ramkey_crypto_init(void);

int ramkey_seal_keypair_new(struct ramkey_seal_keypair **ret);
void ramkey_seal_keypair_free(struct ramkey_seal_keypair *kp);

/* Seal msg to pk; *out is malloc'd (ciphertext is not secret). */
int ramkey_seal(const uint8_t pk[crypto_box_PUBLICKEYBYTES],
    const void *msg, size_t len, uint8_t **out, size_t *outlen);

/*
 * Open a sealed box. *secretp is locked memory (ramkey_secure_alloc()) and
 * NUL-terminated; free it with ramkey_secure_free(). Fails with
 * RAMKEY_ERR_CRYPTO if the box does not open or holds a NUL byte,
 * RAMKEY_ERR_TOO_LARGE past RAMKEY_SECRET_MAX.
 */
int ramkey_seal_open(const struct ramkey_seal_keypair *kp, const uint8_t *c,
    size_t clen, char **secretp, size_t *lenp)
    __attribute__((warn_unused_result));

#endif
