/*
 * Fuzz target: the ListUsers and ListUsersForGroup answers the fleet
 * sweep pages through (agent/cloud/ram_response.c). Accepted pages must
 * give at most RAM_LIST_MAX valid RAM user names, and a truncated page a
 * marker to continue from: the sweep decides from them whose keys it may
 * delete.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ram_response.h"
#include "ramkey_err.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(x)                                                               \
	do {                                                                   \
		if (!(x))                                                      \
			abort();                                               \
	} while (0)

static void check_page(const struct ram_result *res)
{
	size_t i, mlen = strlen(res->marker);

	CHECK(res->nusers <= RAM_LIST_MAX);
	CHECK(res->users != NULL);
	for (i = 0; i < res->nusers; i++)
		CHECK(res->users[i] != NULL &&
		    ram_user_name_valid(res->users[i], strlen(res->users[i])));
	/* The list ends with NULL. */
	CHECK(res->users[res->nusers] == NULL);
	CHECK(mlen <= RAM_MARKER_MAX);
	for (i = 0; i < mlen; i++)
		CHECK((unsigned char)res->marker[i] > 0x20 &&
		    (unsigned char)res->marker[i] < 0x7f);
	CHECK(!res->truncated || mlen > 0);
	CHECK(res->key.secret == NULL && res->sts.secret == NULL &&
	    res->keys == NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const enum ram_action acts[] = {
	    RAM_ACT_LIST_USERS, RAM_ACT_LIST_USERS_FOR_GROUP};
	struct ram_result res;
	char detail[128];
	size_t i;
	int r;

	for (i = 0; i < sizeof(acts) / sizeof(acts[0]); i++) {
		r = ram_parse_success(acts[i], (const char *)data, size, &res,
		    detail, sizeof(detail));
		if (r == 0) {
			check_page(&res);
			ram_result_clear(&res);
			CHECK(res.users == NULL && res.nusers == 0);
		} else {
			CHECK(r == RAMKEY_ERR_PROTOCOL ||
			    r == RAMKEY_ERR_TOO_LARGE);
			CHECK(detail[0] != '\0' &&
			    strchr(detail, '\n') == NULL);
			CHECK(res.users == NULL);
		}
	}
	return 0;
}
