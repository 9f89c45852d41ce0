#include <stddef.h>
#include <time.h>

#include "clock.h"

static const struct clock_source *source;

static int64_t real_wall(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static uint64_t real_mono(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

int64_t clock_wall_ms(void)
{
	return source != NULL ? source->wall_ms(source->arg) : real_wall();
}

uint64_t clock_mono_ms(void)
{
	return source != NULL ? source->mono_ms(source->arg) : real_mono();
}

uint64_t clock_wall_to_mono(int64_t when)
{
	int64_t delta = when - clock_wall_ms();
	uint64_t now = clock_mono_ms();

	return delta <= 0 ? now : now + (uint64_t)delta;
}

void clock_set_source(const struct clock_source *src)
{
	source = src;
}
