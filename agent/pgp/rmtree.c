/*
 * Removing GnuPG homes (rmtree.h).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include "rmtree.h"

#define RM_DEPTH_MAX 8

static int rm_entries(DIR *d, int depth);

static int rm_at(int dfd, const char *name, int depth)
{
	DIR *d;
	int fd, r = 0, pass;

	if (unlinkat(dfd, name, 0) == 0 || errno == ENOENT)
		return 0;
	if ((errno != EISDIR && errno != EPERM) || depth >= RM_DEPTH_MAX)
		return -1;
	fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd == -1)
		return -1;
	if ((d = fdopendir(fd)) == NULL) {
		close(fd);
		return -1;
	}
	/* gpg may still be writing (a killed helper): try a few times. */
	for (pass = 0; pass < 3; pass++) {
		/* What could not go shows as the directory not being empty. */
		(void)rm_entries(d, depth);
		if (unlinkat(dfd, name, AT_REMOVEDIR) == 0 || errno == ENOENT) {
			r = 0;
			break;
		}
		r = -1;
		if (errno != ENOTEMPTY && errno != EEXIST)
			break;
		rewinddir(d);
	}
	closedir(d);
	return r;
}

static int rm_entries(DIR *d, int depth)
{
	struct dirent *de;
	int r = 0;

	while ((de = readdir(d)) != NULL) {
		if (strcmp(de->d_name, ".") == 0 ||
		    strcmp(de->d_name, "..") == 0)
			continue;
		if (rm_at(dirfd(d), de->d_name, depth + 1) != 0)
			r = -1;
	}
	return r;
}

int pgp_rm_tree_at(int dfd, const char *name)
{
	return rm_at(dfd, name, 0);
}

int pgp_empty_dir(const char *path)
{
	DIR *d;
	int fd, r;

	fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd == -1)
		return -1;
	if ((d = fdopendir(fd)) == NULL) {
		close(fd);
		return -1;
	}
	r = rm_entries(d, 0);
	closedir(d);
	return r;
}
