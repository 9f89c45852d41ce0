#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "ramkey_err.h"
#include "role_map.h"
#include "template.h"
#include "util.h"

static int fail(char **errp, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static int fail(char **errp, const char *fmt, ...)
{
	char buf[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (errp != NULL)
		*errp = strdup(buf);
	return RAMKEY_ERR_CONFIG;
}

bool role_arn_template_ok(const char *tmpl)
{
	const char *p = tmpl, *pct = strchr(tmpl, '%');
	size_t lit = pct != NULL ? (size_t)(pct - tmpl) : strlen(tmpl);

	/* The literal part must hold at least acs:ram::<digits>:role/ */
	if (lit < 9 || strncmp(p, "acs:ram::", 9) != 0)
		return false;
	p += 9;
	if (!isdigit((unsigned char)*p) || p - tmpl >= (ptrdiff_t)lit)
		return false;
	while (p - tmpl < (ptrdiff_t)lit && isdigit((unsigned char)*p))
		p++;
	if ((size_t)(p - tmpl) + 6 > lit || strncmp(p, ":role/", 6) != 0)
		return false;
	return ramkey_template_check(tmpl, 0, NULL) == 0;
}

static char *trim(char *s)
{
	char *e;

	while (isspace((unsigned char)*s))
		s++;
	e = s + strlen(s);
	while (e > s && isspace((unsigned char)e[-1]))
		*--e = '\0';
	return s;
}

void role_map_free(struct role_map *m)
{
	size_t i;

	if (m == NULL)
		return;
	for (i = 0; i < m->nrules; i++) {
		free(m->rules[i].name);
		free(m->rules[i].arn);
	}
	free(m->rules);
	free(m);
}

int role_map_parse(const char *path, const char *text, size_t len,
    struct role_map **ret, char **errp)
{
	struct role_map *m = NULL;
	char *copy = NULL, *line, *next;
	unsigned lineno = 0;
	int r;

	*ret = NULL;
	if (errp != NULL)
		*errp = NULL;
	if (len > ROLE_MAP_MAX_BYTES)
		return fail(errp, "%s: larger than %d bytes", path,
		    ROLE_MAP_MAX_BYTES);
	if (memchr(text, '\0', len) != NULL)
		return fail(errp, "%s: contains a NUL byte", path);
	if ((m = calloc(1, sizeof(*m))) == NULL ||
	    (copy = calloc(1, len + 1)) == NULL) {
		r = fail(errp, "out of memory");
		goto out;
	}
	memcpy(copy, text, len);
	copy[len] = '\0';
	for (line = copy; line != NULL; line = next) {
		struct role_rule *rules, *rule;
		char *s, *eq, *k, *v;
		bool group;

		lineno++;
		if ((next = strchr(line, '\n')) != NULL)
			*next++ = '\0';
		s = trim(line);
		if (*s == '\0' || *s == '#' || *s == ';')
			continue;
		if ((eq = strchr(s, '=')) == NULL) {
			r = fail(errp, "%s:%u: expected \"USER = ARN\" or "
			    "\"@GROUP = ARN\"", path, lineno);
			goto out;
		}
		*eq = '\0';
		k = trim(s);
		v = trim(eq + 1);
		group = k[0] == '@';
		if (group)
			k++;
		if (!ramkey_valid_user_name(k)) {
			r = fail(errp, "%s:%u: \"%s\" is not a %s name", path,
			    lineno, k, group ? "group" : "user");
			goto out;
		}
		if (!role_arn_template_ok(v)) {
			r = fail(errp, "%s:%u: %s: not a role ARN (expected "
			    "acs:ram::<account>:role/<name>)", path, lineno, k);
			goto out;
		}
		if (m->nrules >= ROLE_MAP_MAX_RULES) {
			r = fail(errp, "%s:%u: more than %d rules", path,
			    lineno, ROLE_MAP_MAX_RULES);
			goto out;
		}
		if ((rules = realloc(m->rules, (m->nrules + 1) *
		    sizeof(*rules))) == NULL) {
			r = fail(errp, "out of memory");
			goto out;
		}
		m->rules = rules;
		rule = &m->rules[m->nrules];
		memset(rule, 0, sizeof(*rule));
		rule->group = group;
		if ((rule->name = strdup(k)) == NULL ||
		    (rule->arn = strdup(v)) == NULL) {
			free(rule->name);
			r = fail(errp, "out of memory");
			goto out;
		}
		m->nrules++;
	}
	*ret = m;
	m = NULL;
	r = 0;
out:
	free(copy);
	role_map_free(m);
	return r;
}

int role_map_load(const char *path, struct role_map **ret, char **errp)
{
	struct stat st;
	char *buf = NULL;
	size_t have = 0;
	ssize_t n;
	int fd, r;

	*ret = NULL;
	if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK)) <
	    0)
		return fail(errp, "%s: cannot open the role_map: %s", path,
		    strerror(errno));
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		r = fail(errp, "%s: the role_map is not a regular file", path);
		goto out;
	}
	if (!config_owner_ok(st.st_uid) || (st.st_mode & 0022) != 0) {
		r = fail(errp, "%s: the role_map must belong to root or the "
		    "agent's account and not be writable by group or others "
		    "(chmod go-w %s)", path, path);
		goto out;
	}
	if (st.st_size > ROLE_MAP_MAX_BYTES) {
		r = fail(errp, "%s: larger than %d bytes", path,
		    ROLE_MAP_MAX_BYTES);
		goto out;
	}
	if ((buf = malloc((size_t)st.st_size + 1)) == NULL) {
		r = fail(errp, "out of memory");
		goto out;
	}
	while (have < (size_t)st.st_size &&
	    (n = read(fd, buf + have, (size_t)st.st_size - have)) > 0)
		have += (size_t)n;
	r = role_map_parse(path, buf, have, ret, errp);
out:
	free(buf);
	close(fd);
	return r;
}
