/*
 * Effects on users' files that the lease core asks for (the removal of a
 * dead last session's secret file), done on a worker thread with the
 * user's filesystem identity, never on the event loop.
 */
#ifndef RAMKEY_EFFECTS_H
#define RAMKEY_EFFECTS_H

#include "lease.h"

struct worker_pool;

/* fx->remove_file queues the removal on pool. */
void effects_init(struct lease_effects *fx, struct worker_pool *pool);

#endif
