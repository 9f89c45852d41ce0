#include <stddef.h>
#include <stdlib.h> /* __GLIBC__ */

#ifdef __GLIBC__
#include <malloc.h>
#endif

#include "heap_trim.h"

static void heap_trim_fired(void *arg)
{
	struct heap_trim *h = arg;

#ifdef __GLIBC__
	struct mallinfo2 mi = mallinfo2();

	/* fordblks: free bytes in the heaps, not counting fast bins. */
	if (mi.fordblks + mi.fsmblks > HEAP_TRIM_FREE_MIN)
		(void)malloc_trim(0);
#endif
	(void)evloop_timer_arm(h->loop, &h->timer,
	    evloop_now() + HEAP_TRIM_INTERVAL_MS);
}

int heap_trim_start(struct heap_trim *h, struct evloop *loop)
{
	h->loop = loop;
	ev_timer_init(&h->timer, heap_trim_fired, h);
	return evloop_timer_arm(loop, &h->timer,
	    evloop_now() + HEAP_TRIM_INTERVAL_MS);
}

void heap_trim_stop(struct heap_trim *h)
{
	if (h == NULL || h->loop == NULL)
		return;
	evloop_timer_cancel(h->loop, &h->timer);
}
