/*
 * Fuzz target: Keybase's answer to a user lookup (agent/cloud/keybase.c,
 * keybase_parse_lookup()), which decides the PGP key a secret is
 * encrypted to for "keybase:NAME". The first input byte picks the HTTP
 * status the answer came with; the rest is the body. A key is returned
 * only for status "OK" with a 2xx status, as a non-empty bundle; any
 * other outcome gives one printable line.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "keybase.h"
#include "ramkey_err.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(x)                                                               \
	do {                                                                   \
		if (!(x))                                                      \
			abort();                                               \
	} while (0)

static int printable_line(const char *s)
{
	for (; *s != '\0'; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			return 0;
	return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const long statuses[] = {200, 0, 404, 500, 204, 302, 429, 299};
	char why[256], *bundle = NULL;
	long status;
	int r;

	if (size < 1)
		return 0;
	status = statuses[data[0] % (sizeof(statuses) / sizeof(statuses[0]))];
	r = keybase_parse_lookup((const char *)data + 1, size - 1, status,
	    "alice", &bundle, why, sizeof(why));
	if (r == 0) {
		CHECK(bundle != NULL && bundle[0] != '\0');
		CHECK(why[0] == '\0');
		CHECK(status == 0 || (status >= 200 && status <= 299));
		free(bundle);
		return 0;
	}
	CHECK(bundle == NULL);
	CHECK(r == RAMKEY_ERR_KEYBASE || r == RAMKEY_ERR_KEYBASE_USER ||
	    r == RAMKEY_ERR_NOMEM);
	CHECK(why[0] != '\0' && printable_line(why));
	return 0;
}
