/*
 * Fuzz target: the agent's credentials file (agent/config.c,
 * source_resolve() with credential_source = file: INI, profile [default],
 * type access_key, ecs_ram_role or ram_role_arn). The input is written as
 * a mode-0600 file on a tmpfs and resolved. An accepted file gives a
 * valid AccessKeyId and a non-empty secret, trimmed and on one line
 * (access_key, ram_role_arn), a role ARN (ram_role_arn), or the metadata
 * service (ecs_ram_role); a refused one one line that names the file.
 */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "source.h"
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
	struct source_spec *spec = NULL;
	struct config cfg;
	char *err = NULL;
	int r;

	if (init() != 0 || size > 128 * 1024 || put(data, size) != 0)
		return 0;
	memset(&cfg, 0, sizeof(cfg));
	cfg.credentials_file = path;
	cfg.credential_source = CRED_SOURCE_FILE;
	cfg.metadata_url = (char *)"http://100.100.100.200";
	cfg.sts_endpoint = (char *)"https://sts.aliyuncs.com";
	r = source_resolve(&cfg, &spec, &err);
	if (r == 0) {
		CHECK(spec != NULL && err == NULL);
		CHECK(spec->where != NULL && strcmp(spec->where, path) == 0);
		CHECK(spec->choice != NULL &&
		    strchr(spec->choice, '\n') == NULL);
		if (spec->type == SOURCE_IMDS) {
			CHECK(spec->key_id == NULL && spec->secret == NULL);
		} else {
			CHECK(ramkey_valid_key_id(spec->key_id));
			CHECK(spec->secret != NULL &&
			    trimmed_line(spec->secret));
		}
		CHECK(spec->type != SOURCE_ASSUME_ROLE ||
		    (spec->role_arn != NULL && trimmed_line(spec->role_arn)));
		source_spec_free(spec);
		return 0;
	}
	CHECK(spec == NULL);
	CHECK(r == RAMKEY_ERR_CONFIG || r == RAMKEY_ERR_NOMEM);
	if (r == RAMKEY_ERR_CONFIG) {
		CHECK(err != NULL && strncmp(err, path, strlen(path)) == 0 &&
		    strchr(err, '\n') == NULL);
	}
	free(err);
	return 0;
}
