/*
 * Fuzz target: the agent's administrator credentials file (agent/
 * config.c, credentials_load(): INI, profile [default], type =
 * access_key). The input is written as a mode-0600 file on a tmpfs and
 * loaded. An accepted file gives a valid AccessKeyId and a non-empty
 * secret in locked memory, both trimmed and on one line; a refused one
 * one line that names the file.
 */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "ramkey_err.h"
#include "util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(x)                                                               \
	do {                                                                   \
		if (!(x))                                                      \
			abort();                                               \
	} while (0)

static char dir[64], path[96];

static void cleanup(void)
{
	unlink(path);
	rmdir(dir);
}

static int init(void)
{
	static int done;
	struct stat st;

	if (done)
		return 0;
	/* tmpfs if there is one: the file is rewritten for every input. */
	snprintf(dir, sizeof(dir), "%s/ramkey-fuzz-cred-XXXXXX",
	    stat("/dev/shm", &st) == 0 && S_ISDIR(st.st_mode) &&
	            access("/dev/shm", W_OK) == 0
	        ? "/dev/shm"
	        : "/tmp");
	if (mkdtemp(dir) == NULL)
		return -1;
	snprintf(path, sizeof(path), "%s/credentials", dir);
	/* The environment would win over the file. */
	unsetenv("ALIBABA_CLOUD_ACCESS_KEY_ID");
	unsetenv("ALIBABA_CLOUD_ACCESS_KEY_SECRET");
	atexit(cleanup);
	done = 1;
	return 0;
}

static int put(const uint8_t *data, size_t size)
{
	size_t off = 0;
	int fd;

	unlink(path);
	if ((fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600)) <
	    0)
		return -1;
	while (off < size) {
		ssize_t n = write(fd, data + off, size - off);

		if (n <= 0) {
			close(fd);
			return -1;
		}
		off += (size_t)n;
	}
	return close(fd);
}

static int trimmed_line(const char *s)
{
	size_t n = strlen(s);

	return n > 0 && strchr(s, '\n') == NULL && s[0] != ' ' &&
	    s[0] != '\t' && s[n - 1] != ' ' && s[n - 1] != '\t' &&
	    s[n - 1] != '\r';
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct admin_credentials *ac = NULL;
	struct config cfg;
	char *err = NULL;
	int r;

	if (init() != 0 || size > 128 * 1024 || put(data, size) != 0)
		return 0;
	memset(&cfg, 0, sizeof(cfg));
	cfg.credentials_file = path;
	r = credentials_load(&cfg, &ac, &err);
	if (r == 0) {
		CHECK(ac != NULL && err == NULL);
		CHECK(ramkey_valid_key_id(ac->key_id));
		CHECK(ac->secret != NULL && trimmed_line(ac->secret));
		CHECK(ac->source != NULL && strcmp(ac->source, path) == 0);
		credentials_free(ac);
		return 0;
	}
	CHECK(ac == NULL);
	CHECK(r == RAMKEY_ERR_CONFIG || r == RAMKEY_ERR_NOMEM);
	if (r == RAMKEY_ERR_CONFIG) {
		CHECK(err != NULL && strncmp(err, path, strlen(path)) == 0 &&
		    strchr(err, '\n') == NULL);
	}
	free(err);
	return 0;
}
