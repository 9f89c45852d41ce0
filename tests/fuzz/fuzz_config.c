/*
 * Fuzz target: the agent's configuration parser (agent/config.c). The
 * input is written to a file and loaded as agent.conf, then loaded again
 * as the admin credentials file (INI, mode 0600). Accepted configurations
 * must satisfy every invariant the agent relies on; errors must be one
 * line naming the file.
 */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "duration.h"
#include "ramkey_err.h"
#include "template.h"
#include "util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(x)                                                               \
	do {                                                                   \
		if (!(x))                                                      \
			abort();                                               \
	} while (0)

static char dir[64], conf_path[96], cred_path[96];

static void cleanup(void)
{
	unlink(conf_path);
	unlink(cred_path);
	rmdir(dir);
}

static int init(void)
{
	static int done;
	struct stat st;

	if (done)
		return 0;
	/* tmpfs if there is one: rewriting a file thousands of times a
	 * second on ext4 waits for its writeback. */
	snprintf(dir, sizeof(dir), "%s/ramkey-fuzz-config-XXXXXX",
	    stat("/dev/shm", &st) == 0 && S_ISDIR(st.st_mode) &&
		    access("/dev/shm", W_OK) == 0
		? "/dev/shm"
		: "/tmp");
	if (mkdtemp(dir) == NULL)
		return -1;
	snprintf(conf_path, sizeof(conf_path), "%s/agent.conf", dir);
	snprintf(cred_path, sizeof(cred_path), "%s/credentials", dir);
	unsetenv("ALIBABA_CLOUD_ACCESS_KEY_ID");
	unsetenv("ALIBABA_CLOUD_ACCESS_KEY_SECRET");
	atexit(cleanup);
	done = 1;
	return 0;
}

static int put(const char *path, const uint8_t *data, size_t size)
{
	size_t off = 0;
	int fd;

	/* A new file each time, never a truncated one. */
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

static void check_error(char *err, const char *path)
{
	CHECK(err != NULL);
	CHECK(strncmp(err, path, strlen(path)) == 0);
	CHECK(strchr(err, '\n') == NULL);
	free(err);
}

static void check_config(const struct config *c)
{
	CHECK(c->socket != NULL && c->socket[0] == '/' &&
	    strlen(c->socket) < 108);
	CHECK(c->state_dir != NULL && c->state_dir[0] == '/');
	CHECK(c->credentials_file != NULL && c->credentials_file[0] == '/');
	CHECK(c->ca_file == NULL || c->ca_file[0] == '/');
	CHECK(c->endpoint != NULL && c->keybase_url != NULL &&
	    c->region_id != NULL);
	if (!c->allow_http) {
		CHECK(strncmp(c->endpoint, "https://", 8) == 0);
		CHECK(strncmp(c->keybase_url, "https://", 8) == 0);
	}
	CHECK(c->ram_user != NULL &&
	    ramkey_template_check(c->ram_user, 0, NULL) == 0);
	CHECK(c->min_uid >= 1);
	CHECK(c->ntrusted_uids >= 1 && c->trusted_uids != NULL);
	CHECK(c->max_ttl >= 1 && c->max_ttl <= RAMKEY_DURATION_MAX);
	CHECK(c->fetch_ttl >= 1 && c->fetch_ttl <= c->max_ttl);
	CHECK(c->mint_rate >= 1 && c->mint_rate_period >= 1);
	CHECK(c->max_connections_per_uid >= 1);
	CHECK(c->create_timeout >= 1 && c->update_timeout >= 1 &&
	    c->delete_timeout >= 1);
	CHECK((c->allowed_group == NULL) || c->allowed_group[0] != '\0');
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct config *c = NULL, cred_cfg;
	struct source_spec *ac = NULL;
	char *err = NULL;
	int r;

	if (init() != 0 || size > 256 * 1024)
		return 0;
	if (put(conf_path, data, size) != 0 || put(cred_path, data, size) != 0)
		return 0;

	r = config_load(conf_path, true, &c, &err);
	if (r == 0) {
		CHECK(c != NULL && err == NULL);
		check_config(c);
		config_free(c);
	} else {
		CHECK(r == RAMKEY_ERR_CONFIG && c == NULL);
		check_error(err, conf_path);
	}

	memset(&cred_cfg, 0, sizeof(cred_cfg));
	cred_cfg.credentials_file = cred_path;
	cred_cfg.credential_source = CRED_SOURCE_FILE;
	cred_cfg.metadata_url = (char *)"http://100.100.100.200";
	cred_cfg.sts_endpoint = (char *)"https://sts.aliyuncs.com";
	err = NULL;
	r = source_resolve(&cred_cfg, &ac, &err);
	if (r == 0) {
		CHECK(ac != NULL);
		CHECK(ac->type == SOURCE_IMDS ||
		    (ramkey_valid_key_id(ac->key_id) &&
		    ac->secret != NULL && ac->secret[0] != '\0'));
		CHECK(ac->type != SOURCE_ASSUME_ROLE || ac->role_arn != NULL);
		CHECK(ac->where != NULL && strcmp(ac->where, cred_path) == 0);
		source_spec_free(ac);
	} else {
		CHECK(ac == NULL);
		if (r == RAMKEY_ERR_CONFIG)
			check_error(err, cred_path);
		else
			free(err);
	}
	return 0;
}
