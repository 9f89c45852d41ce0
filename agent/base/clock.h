/*
 * The agent's two clocks: wall time (CLOCK_REALTIME, for what is stored
 * and shown: create times, expiries) and monotonic time (for timers).
 * Both go through here so that unit tests can run the lease core on a
 * fake clock they move by hand.
 */
#ifndef RAMKEY_CLOCK_H
#define RAMKEY_CLOCK_H

#include <stdint.h>

struct clock_source {
	int64_t (*wall_ms)(void *arg);
	uint64_t (*mono_ms)(void *arg);
	void *arg;
};

/* Milliseconds since the Unix epoch. */
int64_t clock_wall_ms(void);
/* Milliseconds on a monotonic clock. */
uint64_t clock_mono_ms(void);
/* The monotonic deadline of a wall-clock instant (now if it has passed). */
uint64_t clock_wall_to_mono(int64_t wall_ms);

/* Replace both clocks (tests); NULL restores the real ones. Not
 * thread-safe: set it before any thread starts. */
void clock_set_source(const struct clock_source *src);

#endif
