/*
 * Fuzz target: the role map (agent/role_map.c, role_map_parse()), the
 * file that decides which RAM role each local user assumes in STS mode.
 * An accepted map has at most ROLE_MAP_MAX_RULES rules, each a valid user
 * or group name and an ARN template whose expansion starts with
 * acs:ram::<digits>:role/ whoever it is expanded for; a refused one
 * gives one line naming the file.
 */
#include <ctype.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ramkey_err.h"
#include "role_map.h"
#include "template.h"
#include "util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(x)                                                               \
	do {                                                                   \
		if (!(x))                                                      \
			abort();                                               \
	} while (0)

#define PATH "/etc/ramkey/role_map"

/* acs:ram::<digits>:role/ at the start of s. */
static int role_prefix(const char *s)
{
	if (strncmp(s, "acs:ram::", 9) != 0)
		return 0;
	s += 9;
	if (!isdigit((unsigned char)*s))
		return 0;
	while (isdigit((unsigned char)*s))
		s++;
	return strncmp(s, ":role/", 6) == 0;
}

static void check_rule(const struct role_rule *rule)
{
	struct ramkey_template_vars vars;
	char *arn = NULL;

	CHECK(rule->name != NULL && ramkey_valid_user_name(rule->name));
	CHECK(rule->arn != NULL && role_arn_template_ok(rule->arn));
	memset(&vars, 0, sizeof(vars));
	vars.user = "alice";
	vars.uid = 1000;
	vars.home = "/home/alice";
	vars.host = "web1";
	if (ramkey_template_expand(rule->arn, &vars, &arn, NULL) == 0) {
		CHECK(role_prefix(arn));
		free(arn);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct role_map *m = NULL;
	char *err = NULL;
	size_t i;
	int r;

	r = role_map_parse(PATH, (const char *)data, size, &m, &err);
	if (r == 0) {
		CHECK(m != NULL && err == NULL);
		CHECK(m->nrules <= ROLE_MAP_MAX_RULES);
		CHECK(m->nrules == 0 || m->rules != NULL);
		for (i = 0; i < m->nrules; i++)
			check_rule(&m->rules[i]);
		role_map_free(m);
		return 0;
	}
	CHECK(r == RAMKEY_ERR_CONFIG && m == NULL);
	/* err is NULL only when even the message could not be made. */
	if (err != NULL)
		CHECK(strncmp(err, PATH, strlen(PATH)) == 0 &&
		    strchr(err, '\n') == NULL);
	free(err);
	return 0;
}
