#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

#include <sodium.h>

#include "secure_mem.h"

#define UNIT 64
#define UNITS (RAMKEY_SECURE_REGION / UNIT)

/* One region per process; a mutex, as PAM modules can share a process
 * with other threads. */
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static unsigned char *region;
static uint16_t run[UNITS];	/* at a buffer's first unit: its units */
static bool used[UNITS];

/* First fit: the index of `units` free units in a row, or -1. */
static int find_free(size_t units)
{
	size_t i = 0, j;

	while (i + units <= UNITS) {
		for (j = 0; j < units && !used[i + j]; j++)
			;
		if (j == units)
			return (int)i;
		i += j + 1;
	}
	return -1;
}

void *ramkey_secure_alloc(size_t n)
{
	size_t units, j;
	void *p = NULL;
	int i;

	if (n == 0)
		return NULL;
	/* Larger requests get their own (n is not rounded: no overflow). */
	if (n <= RAMKEY_SECURE_REGION / 2) {
		units = (n + UNIT - 1) / UNIT;
		pthread_mutex_lock(&lock);
		if (region == NULL)
			region = sodium_malloc(RAMKEY_SECURE_REGION);
		if (region != NULL && (i = find_free(units)) >= 0) {
			for (j = 0; j < units; j++)
				used[(size_t)i + j] = true;
			run[i] = (uint16_t)units;
			p = region + (size_t)i * UNIT;
		}
		pthread_mutex_unlock(&lock);
	}
	return p != NULL ? p : sodium_malloc(n);
}

/*
 * When the PAM module is unloaded (dlclose), give the region back, so that
 * a long-lived process that loads it for each session does not collect
 * locked regions. One still in use (a buffer never freed) is left alone.
 */
__attribute__((destructor)) static void region_release(void)
{
	size_t i;

	pthread_mutex_lock(&lock);
	for (i = 0; i < UNITS && !used[i]; i++)
		;
	if (region != NULL && i == UNITS) {
		sodium_free(region);
		region = NULL;
	}
	pthread_mutex_unlock(&lock);
}

void ramkey_secure_free(void *p)
{
	unsigned char *c = p;
	size_t i, j, off;

	if (p == NULL)
		return;
	pthread_mutex_lock(&lock);
	if (region == NULL || c < region ||
	    c >= region + RAMKEY_SECURE_REGION) {
		pthread_mutex_unlock(&lock);
		sodium_free(p);
		return;
	}
	off = (size_t)(c - region);
	i = off / UNIT;
	if (off % UNIT != 0 || run[i] == 0)
		abort(); /* not a buffer's start: a double or stray free */
	sodium_memzero(c, (size_t)run[i] * UNIT);
	for (j = 0; j < run[i]; j++)
		used[i + j] = false;
	run[i] = 0;
	pthread_mutex_unlock(&lock);
}
