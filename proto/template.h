/*
 * Templates for ram_user, secret_file and pgp_key_file: %u local user name,
 * %U uid, %h home directory, %H short host name, %r XDG_RUNTIME_DIR (PAM
 * only), %% a percent sign. Anything else after % is an error.
 */
#ifndef RAMKEY_TEMPLATE_H
#define RAMKEY_TEMPLATE_H

#include <stddef.h>
#include <sys/types.h>

struct ramkey_template_vars {
	const char *user;
	uid_t uid;
	const char *home;
	const char *host;	 /* NULL: the short host name, looked up */
	const char *runtime_dir; /* NULL: %r is not available */
};

#define RAMKEY_TEMPLATE_OUT_MAX 4096

/*
 * Expand tmpl into *out (malloc'd). On error, *why (if not NULL) points to
 * a static description of what was wrong.
 */
int ramkey_template_expand(const char *tmpl,
    const struct ramkey_template_vars *vars, char **out, const char **why);

/* Check a template's syntax without expanding it (config validation).
 * allow_r: whether %r may appear. */
int ramkey_template_check(const char *tmpl, int allow_r, const char **why);

/* The short host name (up to the first dot) into buf. */
int ramkey_short_hostname(char *buf, size_t len);

#endif
