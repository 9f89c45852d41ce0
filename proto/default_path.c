#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "default_path.h"
#include "message.h"
#include "ramkey_err.h"

#define RUNTIME_FILE "ramkey/credentials.json"
#define HOME_FILE ".alibabacloud/ramkey.json"

int ramkey_runtime_dir_check(const char *dir, uid_t uid, char *why,
    size_t whylen)
{
	struct stat st;

	if (dir != NULL && dir[0] == '/' && lstat(dir, &st) == 0 &&
	    S_ISDIR(st.st_mode) && st.st_uid == uid)
		return 0;
	if (why != NULL && whylen > 0)
		snprintf(why, whylen, "%s is not an absolute directory owned "
		    "by uid %lu", dir != NULL ? dir : "(none)",
		    (unsigned long)uid);
	return RAMKEY_ERR_UNSAFE_PATH;
}

int ramkey_default_secret_file(const char *runtime_dir, const char *home,
    char **out)
{
	const char *dir = runtime_dir != NULL ? runtime_dir : home;
	const char *file = runtime_dir != NULL ? RUNTIME_FILE : HOME_FILE;
	size_t n;
	char *p;

	*out = NULL;
	if (dir == NULL || dir[0] != '/')
		return RAMKEY_ERR_INVALID;
	n = strlen(dir);
	while (n > 1 && dir[n - 1] == '/')
		n--;
	if (n == 1) /* "/" */
		n = 0;
	if (n + 1 + strlen(file) >= RAMKEY_PATH_MAX)
		return RAMKEY_ERR_INVALID;
	if (asprintf(&p, "%.*s/%s", (int)n, dir, file) < 0)
		return RAMKEY_ERR_NOMEM;
	*out = p;
	return 0;
}
