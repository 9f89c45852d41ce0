#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ramkey_err.h"
#include "template.h"

int ramkey_short_hostname(char *buf, size_t len)
{
	char *dot;

	if (len == 0)
		return RAMKEY_ERR_INVALID;
	if (gethostname(buf, len) != 0)
		return RAMKEY_ERR_SYSTEM;
	buf[len - 1] = '\0';
	if ((dot = strchr(buf, '.')) != NULL)
		*dot = '\0';
	return 0;
}

int ramkey_template_check(const char *tmpl, int allow_r, const char **why)
{
	const char *p;

	if (why != NULL)
		*why = NULL;
	for (p = tmpl; *p != '\0'; p++) {
		if (*p != '%')
			continue;
		switch (*++p) {
		case 'u':
		case 'U':
		case 'h':
		case 'H':
		case '%':
			break;
		case 'r':
			if (!allow_r) {
				if (why != NULL)
					*why = "%r (XDG_RUNTIME_DIR) is only "
					       "available in the PAM module";
				return RAMKEY_ERR_INVALID;
			}
			break;
		case '\0':
			if (why != NULL)
				*why = "template ends with a lone %";
			return RAMKEY_ERR_INVALID;
		default:
			if (why != NULL)
				*why = "unknown % specifier (use %u, %U, %h, "
				       "%H, %r or %%)";
			return RAMKEY_ERR_INVALID;
		}
	}
	return 0;
}

static int append(char *out, size_t *off, const char *s)
{
	size_t n = strlen(s);

	if (*off + n >= RAMKEY_TEMPLATE_OUT_MAX)
		return RAMKEY_ERR_TOO_LARGE;
	memcpy(out + *off, s, n + 1); /* with its NUL: out stays a string */
	*off += n;
	return 0;
}

int ramkey_template_expand(const char *tmpl,
    const struct ramkey_template_vars *vars, char **out, const char **why)
{
	char *buf = NULL, num[32], host[256], ch[2] = { 0, 0 };
	const char *p, *sub;
	size_t off = 0;
	int r;

	*out = NULL;
	if ((r = ramkey_template_check(tmpl, 1, why)) != 0)
		return r;
	if ((buf = malloc(RAMKEY_TEMPLATE_OUT_MAX)) == NULL)
		return RAMKEY_ERR_NOMEM;
	for (p = tmpl; *p != '\0'; p++) {
		if (*p != '%') {
			ch[0] = *p;
			sub = ch;
		} else {
			switch (*++p) {
			case 'u':
				sub = vars->user;
				break;
			case 'U':
				snprintf(num, sizeof(num), "%lu",
				    (unsigned long)vars->uid);
				sub = num;
				break;
			case 'h':
				sub = vars->home;
				break;
			case 'H':
				if (vars->host != NULL) {
					sub = vars->host;
				} else if (ramkey_short_hostname(host,
				    sizeof(host)) == 0) {
					sub = host;
				} else {
					sub = NULL;
				}
				break;
			case 'r':
				sub = vars->runtime_dir;
				if (sub == NULL && why != NULL)
					*why = "%r needs XDG_RUNTIME_DIR, "
					       "which is not set";
				break;
			default: /* '%' */
				sub = "%";
				break;
			}
			if (sub == NULL) {
				if (why != NULL && *why == NULL)
					*why = "a value the template needs is "
					       "unknown";
				r = RAMKEY_ERR_INVALID;
				goto out;
			}
		}
		if ((r = append(buf, &off, sub)) != 0) {
			if (why != NULL)
				*why = "expanded template is too long";
			goto out;
		}
	}
	buf[off] = '\0';
	*out = buf;
	buf = NULL;
out:
	free(buf);
	return r;
}
