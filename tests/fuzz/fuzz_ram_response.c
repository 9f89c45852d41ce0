/*
 * Fuzz target: every RAM response parser (agent/ram_response.c) on the
 * same bytes: the five success shapes, the error body, and the date and
 * message helpers.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ram_response.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const enum ram_action acts[] = {RAM_ACT_CREATE_ACCESS_KEY,
	    RAM_ACT_UPDATE_ACCESS_KEY, RAM_ACT_DELETE_ACCESS_KEY,
	    RAM_ACT_LIST_ACCESS_KEYS, RAM_ACT_GET_USER};
	const char *body = (const char *)data;
	struct ram_result res;
	struct ram_error err;
	char detail[128], msg[RAM_MESSAGE_MAX];
	int64_t t;
	size_t i;

	for (i = 0; i < sizeof(acts) / sizeof(acts[0]); i++) {
		if (ram_parse_success(acts[i], body, size, &res, detail,
			sizeof(detail)) == 0) {
			/* everything returned must be usable as a C string */
			if (strlen(res.request_id) >= sizeof(res.request_id) ||
			    (res.key.secret != NULL &&
				strlen(res.key.secret) != res.key.secret_len) ||
			    (res.nkeys > 0 && res.keys == NULL))
				abort();
			ram_result_clear(&res);
		}
	}
	memset(&err, 0, sizeof(err));
	if (ram_parse_error(body, size, &err) == 0 &&
	    (err.code[0] == '\0' || strlen(err.message) >= sizeof(err.message)))
		abort();
	ram_scrub_message(
	    "SignatureDoesNotMatch", body, size, msg, sizeof(msg));
	ram_scrub_message(NULL, body, size, msg, sizeof(msg));
	ram_parse_date(body, size, &t);
	return 0;
}
