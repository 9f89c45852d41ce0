/*
 * Locked memory for a requester's short-lived secrets: its one-time X25519
 * secret key, an opened secret, a rendered secret file. A login needs three
 * to six such buffers, and sodium_malloc() costs about ten system calls
 * each (mapping, guard pages, mlock, unmapping), as much as the key pair
 * itself. So the buffers are carved from one region per process: a
 * sodium_malloc'd block (guard pages, locked, left out of core dumps) of
 * RAMKEY_SECURE_REGION bytes, in 64-byte units. A buffer is wiped when
 * freed. A request the region cannot hold gets its own sodium_malloc().
 */
#ifndef RAMKEY_SECURE_MEM_H
#define RAMKEY_SECURE_MEM_H

#include <stddef.h>

#define RAMKEY_SECURE_REGION 16384

/* n bytes (n > 0) of locked memory, or NULL when out of memory. The
 * process must have called ramkey_crypto_init() (sodium_init()). */
void *ramkey_secure_alloc(size_t n);

/* Wipe and release what ramkey_secure_alloc() returned; NULL is a no-op.
 * Any other pointer aborts the process, like libsodium's own checks. */
void ramkey_secure_free(void *p);

#endif
