/*
 * Fuzz target: the templates (proto/template.c) of ram_user, role_arn,
 * role_session_name, secret_file and pgp_key_file, and what is made of
 * their expansions: the STS session name (agent/credential/sts.c,
 * sts_session_name()) and the default secret file path
 * (proto/default_path.c). The input is the template, then the user, home,
 * host and runtime directory, separated by NUL bytes (missing ones are
 * unknown). The expansion must equal a reference expansion written here,
 * syntax checks must agree with it, and a session name must be what STS
 * accepts.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "default_path.h"
#include "message.h"
#include "ramkey_err.h"
#include "sts.h"
#include "template.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(x)                                                               \
	do {                                                                   \
		if (!(x))                                                      \
			abort();                                               \
	} while (0)

#define FIELDS 5

/* The reference: RAMKEY_ERR_INVALID (syntax or a missing value),
 * RAMKEY_ERR_TOO_LARGE, or 0 with out filled. */
static int reference(const char *t, const struct ramkey_template_vars *v,
    char *out, size_t cap)
{
	size_t o = 0;
	int invalid = 0, missing = 0;
	const char *p;

	/* Syntax first, over the whole template. */
	for (p = t; *p != '\0'; p++) {
		if (*p != '%')
			continue;
		p++;
		if (*p == '\0' || strchr("uUhHr%", *p) == NULL)
			return RAMKEY_ERR_INVALID;
	}
	for (p = t; *p != '\0'; p++) {
		char num[32];
		const char *sub;

		if (*p != '%') {
			num[0] = *p;
			num[1] = '\0';
			sub = num;
		} else {
			switch (*++p) {
			case 'u':
				sub = v->user;
				break;
			case 'U':
				snprintf(num, sizeof(num), "%lu",
				    (unsigned long)v->uid);
				sub = num;
				break;
			case 'h':
				sub = v->home;
				break;
			case 'H':
				sub = v->host;
				break;
			case 'r':
				sub = v->runtime_dir;
				break;
			default:
				sub = "%";
				break;
			}
		}
		if (sub == NULL) {
			missing = 1;
			break;
		}
		if (o + strlen(sub) >= cap) {
			invalid = 1;
			break;
		}
		memcpy(out + o, sub, strlen(sub));
		o += strlen(sub);
	}
	out[o] = '\0';
	if (missing)
		return RAMKEY_ERR_INVALID;
	return invalid ? RAMKEY_ERR_TOO_LARGE : 0;
}

static int name_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	    (c >= '0' && c <= '9') || c == '.' || c == '@' || c == '-' ||
	    c == '_';
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static char ref[RAMKEY_TEMPLATE_OUT_MAX];
	const char *f[FIELDS] = {NULL, NULL, NULL, NULL, NULL};
	struct ramkey_template_vars vars;
	char *buf, *out = NULL, *path = NULL, session[65];
	const char *why = NULL;
	size_t i, n = 0;
	int r, want, rc0, rc1;

	if (size > 16 * 1024 || (buf = malloc(size + 1)) == NULL)
		return 0;
	memcpy(buf, data, size);
	buf[size] = '\0';
	/* Split at NUL bytes: template, user, home, host, runtime dir. */
	f[n++] = buf;
	for (i = 0; i < size && n < FIELDS; i++)
		if (buf[i] == '\0')
			f[n++] = buf + i + 1;
	memset(&vars, 0, sizeof(vars));
	vars.user = f[1];
	vars.uid = (uid_t)(size * 7919u);
	vars.home = f[2];
	vars.host = f[3] != NULL ? f[3] : "host";
	vars.runtime_dir = f[4];

	rc0 = ramkey_template_check(f[0], 0, &why);
	CHECK(rc0 == 0 ? why == NULL : why != NULL);
	rc1 = ramkey_template_check(f[0], 1, &why);
	CHECK(rc1 == 0 || rc1 == RAMKEY_ERR_INVALID);
	/* Allowing %r only ever accepts more. */
	CHECK(rc0 != 0 || rc1 == 0);

	want = reference(f[0], &vars, ref, sizeof(ref));
	why = NULL;
	r = ramkey_template_expand(f[0], &vars, &out, &why);
	CHECK(r == want);
	CHECK((rc1 != 0) <= (r != 0));
	if (r == 0) {
		CHECK(out != NULL && strcmp(out, ref) == 0);
		free(out);
	} else {
		CHECK(out == NULL && why != NULL);
	}

	/* The STS session name of the same template, for the user (the
	 * agent checks role_session_name with allow_r = 0). */
	if (rc0 == 0 && f[1] != NULL) {
		r = sts_session_name(f[0], f[1], 1000, vars.host, session);
		if (r == 0) {
			size_t len = strlen(session);

			CHECK(len >= 2 && len <= 64);
			for (i = 0; i < len; i++)
				CHECK(name_char(session[i]));
		} else {
			CHECK(r == RAMKEY_ERR_INVALID ||
			    r == RAMKEY_ERR_TOO_LARGE);
		}
	}

	/* The default secret file from the same runtime dir and home. */
	if (f[2] != NULL) {
		r = ramkey_default_secret_file(f[4], f[2], &path);
		if (r == 0) {
			CHECK(path != NULL && path[0] == '/');
			CHECK(strlen(path) < RAMKEY_PATH_MAX);
			free(path);
		} else {
			CHECK(path == NULL && (r == RAMKEY_ERR_INVALID ||
			    r == RAMKEY_ERR_NOMEM));
		}
	}
	free(buf);
	return 0;
}
