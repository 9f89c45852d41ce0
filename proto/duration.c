#include <stdio.h>
#include <string.h>

#include "duration.h"
#include "ramkey_err.h"

static int unit_seconds(char c, uint64_t *mult, int *rank)
{
	switch (c) {
	case 'd':
		*mult = 86400;
		*rank = 4;
		return 0;
	case 'h':
		*mult = 3600;
		*rank = 3;
		return 0;
	case 'm':
		*mult = 60;
		*rank = 2;
		return 0;
	case 's':
		*mult = 1;
		*rank = 1;
		return 0;
	default:
		return RAMKEY_ERR_INVALID;
	}
}

int ramkey_duration_parse(const char *s, uint64_t *secondsp)
{
	uint64_t total = 0;
	int last_rank = 5;
	const char *p = s;

	*secondsp = 0;
	if (s == NULL || *s == '\0')
		return RAMKEY_ERR_INVALID;
	while (*p != '\0') {
		uint64_t n = 0, mult;
		int digits = 0, rank;

		while (*p >= '0' && *p <= '9') {
			n = n * 10 + (uint64_t)(*p - '0');
			if (n > RAMKEY_DURATION_MAX)
				return RAMKEY_ERR_INVALID;
			p++;
			digits++;
		}
		if (digits == 0)
			return RAMKEY_ERR_INVALID;
		if (*p == '\0') {
			/* A bare number is seconds, but only on its own. */
			if (p - s != digits)
				return RAMKEY_ERR_INVALID;
			mult = 1;
		} else {
			if (unit_seconds(*p, &mult, &rank) != 0 ||
			    rank >= last_rank)
				return RAMKEY_ERR_INVALID;
			last_rank = rank;
			p++;
		}
		total += n * mult;
		if (total > RAMKEY_DURATION_MAX)
			return RAMKEY_ERR_INVALID;
	}
	*secondsp = total;
	return 0;
}

void ramkey_duration_format(uint64_t seconds, char *buf, size_t len)
{
	static const struct {
		char unit;
		uint64_t mult;
	} units[] = { { 'd', 86400 }, { 'h', 3600 }, { 'm', 60 }, { 's', 1 } };
	size_t off = 0, i;

	if (len == 0)
		return;
	buf[0] = '\0';
	if (seconds == 0) {
		snprintf(buf, len, "0s");
		return;
	}
	for (i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
		uint64_t q = seconds / units[i].mult;
		int n;

		if (q == 0)
			continue;
		seconds -= q * units[i].mult;
		n = snprintf(buf + off, len - off, "%llu%c",
		    (unsigned long long)q, units[i].unit);
		if (n < 0 || (size_t)n >= len - off)
			return;
		off += (size_t)n;
	}
}
