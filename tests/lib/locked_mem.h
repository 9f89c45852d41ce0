/*
 * For the C unit tests: is an address in locked memory? The kernel says
 * per mapping (/proc/self/smaps, "Locked:"). AddressSanitizer's runtime
 * turns mlock() into a no-op, so there the check is skipped
 * (MLOCK_IS_A_NO_OP); the ordinary build makes it.
 */
#ifndef RAMKEY_TEST_LOCKED_MEM_H
#define RAMKEY_TEST_LOCKED_MEM_H

#include <stdint.h>
#include <stdio.h>

#if defined(__SANITIZE_ADDRESS__)
#define MLOCK_IS_A_NO_OP 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define MLOCK_IS_A_NO_OP 1
#endif
#endif

/* kB locked in the mapping that holds p, or -1 if no mapping holds it. */
static inline long mapping_locked_kb(const void *p)
{
	uintptr_t a = (uintptr_t)p;
	unsigned long lo, hi;
	char line[512];
	long kb = -1;
	int in = 0;
	FILE *f = fopen("/proc/self/smaps", "r");

	if (f == NULL)
		return -1;
	while (fgets(line, sizeof(line), f) != NULL) {
		if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2) {
			in = a >= lo && a < hi;
			continue;
		}
		if (in && sscanf(line, "Locked: %ld kB", &kb) == 1)
			break;
	}
	fclose(f);
	return in ? kb : -1;
}

#endif
