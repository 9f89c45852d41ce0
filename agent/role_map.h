/*
 * role_map (agent.conf): which RAM role a local user assumes in STS mode,
 * per user or per group. One rule per line, "USER = ARN" or
 * "@GROUP = ARN"; '#' or ';' starts a comment line. The first rule that
 * matches wins; a user no rule matches gets role_arn. An ARN is a
 * template (%u, %U, %h, %H, %%) that must give acs:ram::<account>:role/<name>.
 * Like agent.conf, the file must belong to root or the agent's account and
 * not be writable by group or others: it decides who gets which rights.
 */
#ifndef RAMKEY_ROLE_MAP_H
#define RAMKEY_ROLE_MAP_H

#include <stdbool.h>
#include <stddef.h>

struct role_rule {
	bool group;	/* @GROUP */
	char *name;	/* user or group name */
	char *arn;	/* template */
};

struct role_map {
	struct role_rule *rules;
	size_t nrules;
};

#define ROLE_MAP_MAX_BYTES (1024 * 1024)
#define ROLE_MAP_MAX_RULES 10000

/* Parse text (len bytes) of file path (for messages). On error, *errp is
 * "PATH:LINE: problem" (malloc'd). */
int role_map_parse(const char *path, const char *text, size_t len,
    struct role_map **ret, char **errp);
/* Open (checking owner and mode), read and parse. */
int role_map_load(const char *path, struct role_map **ret, char **errp);
void role_map_free(struct role_map *m);

/*
 * Is tmpl (a role_arn template) shaped like acs:ram::<digits>:role/...
 * before its first specifier? (The whole ARN is checked once expanded.)
 */
bool role_arn_template_ok(const char *tmpl);

#endif
