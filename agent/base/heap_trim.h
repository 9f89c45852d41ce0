/*
 * Give free heap back to the kernel. A burst of logins (thousands of mints
 * with their TLS, JSON and store buffers) leaves free memory inside the
 * heap that the allocator keeps; the agent is long-lived and mostly idle,
 * so a timer checks every HEAP_TRIM_INTERVAL_MS and trims when more than
 * HEAP_TRIM_FREE_MIN bytes lie free. A no-op where the C library has no
 * malloc_trim().
 */
#ifndef RAMKEY_HEAP_TRIM_H
#define RAMKEY_HEAP_TRIM_H

#include "evloop.h"

#define HEAP_TRIM_INTERVAL_MS 2000
#define HEAP_TRIM_FREE_MIN (1024 * 1024)

struct heap_trim {
	struct evloop *loop;
	struct ev_timer timer;
};

/* Start the timer; nothing to free (stops with the loop). */
int heap_trim_start(struct heap_trim *h, struct evloop *loop);
void heap_trim_stop(struct heap_trim *h);

#endif
