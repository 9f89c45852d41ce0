/*
 * Locked buffers for secrets held briefly: a cloud answer's secret and
 * token, from parsing until the lease core has copied them into its arena.
 * Each sodium_malloc() maps, guards and locks fresh pages, and each
 * sodium_free() unlocks and unmaps them: about ten system calls and a TLB
 * shootdown across the agent's threads per buffer, a tenth of the agent's
 * CPU in a login storm. A released buffer is wiped and kept for the next
 * one instead (up to SECURE_BUF_KEEP of each size); it stays guarded,
 * locked and out of core dumps. Safe to call from any thread.
 */
#ifndef RAMKEY_SECURE_BUF_H
#define RAMKEY_SECURE_BUF_H

#include <stddef.h>

#define SECURE_BUF_KEEP 32 /* released buffers kept, per size */

/* At least len bytes of locked memory, or NULL. */
void *secure_buf_alloc(size_t len);
/* Wipe and release (keep for reuse or unmap); NULL is ignored. */
void secure_buf_free(void *p);
/* Unmap every kept buffer (at exit, so leak checkers see nothing). */
void secure_buf_drain(void);

#endif
