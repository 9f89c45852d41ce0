/*
 * Durations as in agent.conf and `--ttl`: a whole number with a unit s, m,
 * h or d; units may be chained in decreasing order, each at most once
 * ("1h30m"); a bare number is seconds.
 */
#ifndef RAMKEY_DURATION_H
#define RAMKEY_DURATION_H

#include <stddef.h>
#include <stdint.h>

/* Longest accepted duration: ten years. */
#define RAMKEY_DURATION_MAX (10ULL * 365 * 86400)

/* Parse s into seconds. Zero is accepted here; TTLs reject it. */
int ramkey_duration_parse(const char *s, uint64_t *secondsp);

/* Format seconds the same way ("1h30m", "0s"). */
void ramkey_duration_format(uint64_t seconds, char *buf, size_t len);

#endif
