/*
 * Fuzz target: a PGP key on its way to GnuPG. The input is written as a
 * file and read as the client's --pgp-key @FILE and the PAM module's
 * pgp_key_file= read it (proto/pgp_key_file.c); what that gives, and the
 * raw input as a requester may send it, then go through the agent's
 * reading of a pgp_key (agent/pgp/pgp.c, pgp_spec_parse()): keybase:NAME,
 * an armored key passed on as it is, or base64 of a binary key.
 */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "message.h"
#include "pgp_key_file.h"
#include "pgp_spec.h"
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
	snprintf(dir, sizeof(dir), "%s/ramkey-fuzz-pgp-XXXXXX",
	    stat("/dev/shm", &st) == 0 && S_ISDIR(st.st_mode) &&
		    access("/dev/shm", W_OK) == 0
		? "/dev/shm"
		: "/tmp");
	if (mkdtemp(dir) == NULL)
		return -1;
	snprintf(path, sizeof(path), "%s/key.asc", dir);
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

static int space(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static int printable_line(const char *s)
{
	for (; *s != '\0'; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			return 0;
	return 1;
}

static void check_spec(const char *spec)
{
	char user[PGP_KEYBASE_NAME_MAX + 1], why[PGP_SPEC_WHY_MAX];
	const char *t = spec;
	size_t tlen = strlen(spec), i, n;
	uint8_t *key = NULL;
	size_t keylen = 0;
	int r;

	while (tlen > 0 && space(*t)) {
		t++;
		tlen--;
	}
	while (tlen > 0 && space(t[tlen - 1]))
		tlen--;
	why[0] = '\0';
	r = pgp_spec_parse(spec, &key, &keylen, user, why);
	if (r == 1) {
		/* A Keybase name, exactly what followed "keybase:". */
		CHECK(key == NULL && keylen == 0);
		CHECK(tlen > 8 && strncmp(t, "keybase:", 8) == 0);
		CHECK(strlen(user) == tlen - 8 &&
		    memcmp(user, t + 8, tlen - 8) == 0);
		for (i = 0; user[i] != '\0'; i++)
			CHECK(user[i] == '_' || (user[i] >= '0' &&
			    user[i] <= '9') || (user[i] >= 'a' &&
			    user[i] <= 'z') || (user[i] >= 'A' &&
			    user[i] <= 'Z'));
		CHECK(i >= 1 && i <= PGP_KEYBASE_NAME_MAX);
		return;
	}
	CHECK(user[0] == '\0');
	if (r != 0) {
		CHECK(r == RAMKEY_ERR_PGP_KEY || r == RAMKEY_ERR_NOMEM);
		CHECK(key == NULL && keylen == 0);
		if (r == RAMKEY_ERR_PGP_KEY)
			CHECK(why[0] != '\0' && printable_line(why));
		return;
	}
	CHECK(key != NULL && keylen >= 1 && tlen <= PGP_SPEC_MAX);
	if (tlen >= 15 && strncmp(t, "-----BEGIN PGP ", 15) == 0) {
		/* Armor goes to gpg as it is, trimmed. */
		CHECK(keylen == tlen && memcmp(key, t, tlen) == 0);
	} else {
		/* Base64: encoding the key again gives the input without its
		 * whitespace (the decoding is strict). */
		char *b64 = NULL;

		CHECK(ramkey_b64_encode(key, keylen, &b64) == 0);
		for (i = n = 0; i < tlen; i++) {
			if (space(t[i]))
				continue;
			CHECK(b64[n] == t[i]);
			n++;
		}
		CHECK(b64[n] == '\0');
		free(b64);
	}
	free(key);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char why[256], *key = NULL, *raw;
	size_t len;
	int r;

	if (init() != 0 || size > RAMKEY_PGP_KEY_MAX + 16)
		return 0;
	if (put(data, size) == 0) {
		r = ramkey_pgp_key_file_read(path, NULL, &key, why,
		    sizeof(why));
		if (r == 0) {
			len = strlen(key);
			/* Not empty, no NUL inside, no trailing newline. */
			CHECK(len >= 1 && len <= size &&
			    memcmp(key, data, len) == 0);
			CHECK(key[len - 1] != '\n' && key[len - 1] != '\r');
			check_spec(key);
			free(key);
		} else {
			CHECK(key == NULL);
			CHECK(r == RAMKEY_ERR_INVALID ||
			    r == RAMKEY_ERR_TOO_LARGE);
			CHECK(why[0] != '\0' && strchr(why, '\n') == NULL);
		}
	}
	/* The same bytes as a requester's pgp_key (up to a NUL). */
	if ((raw = malloc(size + 1)) != NULL) {
		memcpy(raw, data, size);
		raw[size] = '\0';
		check_spec(raw);
		free(raw);
	}
	return 0;
}
