/*
 * Fuzz target: the instance metadata service's answers as the agent reads
 * them (agent/cloud/ram_response.c, imds.c): the credential document and
 * the role-name and metadata-URL checks, on the same bytes.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "imds.h"
#include "ram_response.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *body = (const char *)data;
	struct ram_result res;
	char detail[128], *text, *host = NULL;
	unsigned port;

	if (ram_parse_imds_credential(body, size, &res, detail,
	    sizeof(detail)) == 0) {
		/* everything returned is a usable C string of its length */
		if (res.sts.secret == NULL || res.sts.token == NULL ||
		    strlen(res.sts.secret) != res.sts.secret_len ||
		    strlen(res.sts.token) != res.sts.token_len ||
		    res.sts.secret_len == 0 || res.sts.token_len == 0 ||
		    strlen(res.sts.id) == 0 ||
		    strlen(res.sts.expiration) >= sizeof(res.sts.expiration))
			abort();
		ram_result_clear(&res);
	} else if (res.sts.secret != NULL || res.sts.token != NULL) {
		abort();
	}
	if (memchr(detail, '\0', sizeof(detail)) == NULL)
		abort();
	(void)imds_role_valid(body, size);
	if ((text = malloc(size + 1)) == NULL)
		return 0;
	memcpy(text, body, size);
	text[size] = '\0';
	if (imds_url_parse(text, &host, &port) == 0 &&
	    (host == NULL || host[0] == '\0' || port == 0 || port > 65535))
		abort();
	free(host);
	free(text);
	return 0;
}
