/*
 * The fleet sweep (ramkey-agent --sweep [--apply]): a one-shot run of the
 * agent's binary, without its socket or its state, that finds AccessKeys
 * left behind by hosts that disappeared with live leases, and deletes
 * them.
 *
 * It looks only at RAM users dedicated to ramkey: the members of
 * sweep_group (ListUsersForGroup), or the users whose names start with
 * sweep_prefix (ListUsers); with both, members of the group with the
 * prefix. Of their keys (ListAccessKeys, one user at a time) it takes
 * those older than sweep_min_age by RAM's clock (the answer's Date
 * header), Active or Inactive: no live lease of a host whose max_ttl is
 * at most this configuration's has a key that old. A dry run prints them;
 * --apply deletes them (DeleteAccessKey), one at a time, and logs an
 * audit line per deletion. The RAM client retries throttling with backoff
 * within the configured timeouts.
 */
#ifndef RAMKEY_SWEEP_H
#define RAMKEY_SWEEP_H

#include <stdbool.h>
#include <stdio.h>

struct config;
struct source_spec;

#define SWEEP_EXIT_OK 0
#define SWEEP_EXIT_CONFIG 1	/* no sweep_group or sweep_prefix, ... */
#define SWEEP_EXIT_START 3	/* cannot set up the loop or the client */
#define SWEEP_EXIT_RAM 5	/* a RAM call failed: listing or deleting */

/* Run the sweep, signing with the agent's own credential as spec says
 * (a temporary one is fetched first); what it finds and does goes to out,
 * one line each. Returns one of the SWEEP_EXIT_* statuses. */
int sweep_run(const struct config *cfg, const struct source_spec *spec,
    bool apply, FILE *out);

#endif
