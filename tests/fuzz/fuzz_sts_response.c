/*
 * Fuzz target: the STS answers the agent parses (agent/cloud/
 * ram_response.c): AssumeRole (the credential handed to users in STS
 * mode) and GetCallerIdentity, and the error body STS sends. Whatever is
 * accepted must hold every invariant the sts kind relies on: valid ids,
 * a strict UTC expiration, secret and token in locked memory with their
 * lengths, no control bytes, an ARN that starts with acs:.
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

static int no_controls(const char *s, size_t len)
{
	size_t i;

	for (i = 0; i < len; i++)
		if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
			return 0;
	return 1;
}

static void check_arn(const char *arn)
{
	size_t len = strlen(arn);

	CHECK(len < RAM_ARN_MAX + 1);
	if (len > 0)
		CHECK(strncmp(arn, "acs:", 4) == 0 && no_controls(arn, len) &&
		    strchr(arn, ' ') == NULL);
}

static void check_assume_role(const struct ram_result *res)
{
	const struct ram_sts_credential *k = &res->sts;
	int64_t t;

	CHECK(ram_key_id_valid(k->id, strlen(k->id)));
	CHECK(k->secret != NULL && k->secret_len >= 1 &&
	    k->secret_len <= RAM_SECRET_MAX &&
	    strlen(k->secret) == k->secret_len &&
	    no_controls(k->secret, k->secret_len));
	CHECK(k->token != NULL && k->token_len >= 1 &&
	    k->token_len <= RAM_TOKEN_MAX &&
	    strlen(k->token) == k->token_len &&
	    no_controls(k->token, k->token_len));
	CHECK(ram_parse_date(k->expiration, strlen(k->expiration), &t) == 0 &&
	    t == k->expiration_time && t > 0);
	check_arn(k->arn);
	/* Nothing of another action's shape. */
	CHECK(res->key.secret == NULL && res->keys == NULL &&
	    res->users == NULL);
}

static void check_identity(const struct ram_result *res)
{
	CHECK(res->arn[0] != '\0');
	check_arn(res->arn);
	CHECK(strlen(res->account_id) < sizeof(res->account_id));
	CHECK(strlen(res->identity_type) < sizeof(res->identity_type));
	CHECK(res->sts.secret == NULL && res->sts.token == NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *body = (const char *)data;
	struct ram_result res;
	struct ram_error err;
	char detail[128];
	int r;

	r = ram_parse_success(STS_ACT_ASSUME_ROLE, body, size, &res, detail,
	    sizeof(detail));
	if (r == 0) {
		CHECK(strlen(res.request_id) < sizeof(res.request_id));
		check_assume_role(&res);
		ram_result_clear(&res);
	} else {
		CHECK(r == RAMKEY_ERR_PROTOCOL || r == RAMKEY_ERR_TOO_LARGE);
		CHECK(detail[0] != '\0' && strchr(detail, '\n') == NULL);
		CHECK(res.sts.secret == NULL && res.sts.token == NULL);
	}
	r = ram_parse_success(STS_ACT_GET_CALLER_IDENTITY, body, size, &res,
	    detail, sizeof(detail));
	if (r == 0) {
		check_identity(&res);
		ram_result_clear(&res);
	} else {
		CHECK(r == RAMKEY_ERR_PROTOCOL || r == RAMKEY_ERR_TOO_LARGE);
	}
	memset(&err, 0, sizeof(err));
	if (ram_parse_error(body, size, &err) == 0) {
		CHECK(err.code[0] != '\0' &&
		    strlen(err.message) < sizeof(err.message) &&
		    no_controls(err.message, strlen(err.message)));
	} else {
		CHECK(err.code[0] == '\0' && err.message[0] == '\0');
	}
	return 0;
}
