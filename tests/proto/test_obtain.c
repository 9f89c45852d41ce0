/*
 * proto.obtain: the requester sequence of the PAM module and the client
 * (ramkey_obtain_start/finish, ramkey_deliver) against a fake agent in a
 * thread. The secret is used only when it comes in the form asked for:
 * sealed to this request's one-time key, or, when a PGP key was given,
 * PGP-encrypted; anything else is "unusable" (and the session the reply
 * names is there to be ended). Refusals and silence are told apart.
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cmocka.h>

#include "deliver.h"
#include "frame.h"
#include "fsid.h"
#include "message.h"
#include "obtain.h"
#include "ramkey_err.h"
#include "seal.h"

#define SECRET "Zk3vQ0exampleSecretValue0000000"
#define KEY_ID "LTAI5tExample00000000001"
#define TOKEN "0123456789abcdef0123456789abcdef"
#define FPR "0123456789abcdef0123456789abcdef01234567"
#define ENC "hQEMA3b1ZXhhbXBsZQ=="

enum mode {
	SEALED,		   /* sealed to the request's key: good */
	SEALED_TO_OTHER,   /* sealed to someone else's key */
	ENCRYPTED,	   /* PGP-encrypted */
	SEALED_AND_ENCRYPTED,
	REFUSED,	   /* ok:false, limit_exceeded */
	HANG_UP,	   /* reads the request, closes */
	SILENT,		   /* reads the request, never answers */
};

struct fake {
	int lfd;
	enum mode mode;
	pthread_t thread;
	struct ramkey_request *got; /* the request as the agent saw it */
};

static char *dir, *sock;

static void reply_key(struct ramkey_reply *rep,
    const struct ramkey_request *req, enum mode mode)
{
	struct ramkey_seal_keypair *other = NULL;

	rep->key.access_key_id = strdup(KEY_ID);
	rep->key.create_date = strdup("2026-11-27T20:18:10Z");
	rep->key.status = strdup("Active");
	rep->key.expires = 1795853890;
	rep->region_id = strdup("cn-hangzhou");
	if (req->op == RAMKEY_OP_OPEN_SESSION)
		rep->session = strdup(TOKEN);
	/* No cmocka assertions here: this runs in the fake's thread. */
	if ((mode == SEALED || mode == SEALED_AND_ENCRYPTED) &&
	    req->has_seal_pk)
		(void)ramkey_seal(req->seal_pk, SECRET, strlen(SECRET),
		    &rep->key.sealed, &rep->key.sealed_len);
	else if (mode != ENCRYPTED &&
	    ramkey_seal_keypair_new(&other) == 0) {
		(void)ramkey_seal(other->pk, SECRET, strlen(SECRET),
		    &rep->key.sealed, &rep->key.sealed_len);
		ramkey_seal_keypair_free(other);
	}
	if (mode == ENCRYPTED || mode == SEALED_AND_ENCRYPTED) {
		rep->key.encrypted_secret = strdup(ENC);
		rep->key.key_fingerprint = strdup(FPR);
	}
}

static void *serve(void *arg)
{
	struct fake *f = arg;
	struct ramkey_reply *rep = NULL;
	uint8_t *body = NULL;
	char *text = NULL;
	size_t len = 0;
	int fd;

	fd = accept4(f->lfd, NULL, NULL, SOCK_CLOEXEC);
	if (fd < 0)
		return NULL;
	if (ramkey_frame_recv(fd, RAMKEY_FRAME_MAX, &body, &len,
	    ramkey_now_ms() + 5000) != 0 ||
	    ramkey_request_decode(body, len, &f->got) != 0)
		goto out;
	if (f->mode == HANG_UP)
		goto out;
	if (f->mode == SILENT) {
		struct pollfd p = { fd, POLLIN, 0 };

		(void)poll(&p, 1, 5000); /* until the requester gives up */
		goto out;
	}
	rep = ramkey_reply_new(f->got->op);
	if (f->mode == REFUSED)
		ramkey_reply_set_error(rep, RAMKEY_ERR_LIMIT,
		    "RAM user alice already has two AccessKeys");
	else
		reply_key(rep, f->got, f->mode);
	if (ramkey_reply_encode(rep, &text, &len) == 0)
		(void)ramkey_frame_send(fd, text, len, ramkey_now_ms() + 5000);
out:
	free(text);
	free(body);
	ramkey_reply_free(rep);
	close(fd);
	return NULL;
}

static struct fake *fake_start(enum mode mode)
{
	struct fake *f = calloc(1, sizeof(*f));
	struct sockaddr_un sa = { .sun_family = AF_UNIX };

	assert_non_null(f);
	f->mode = mode;
	unlink(sock);
	f->lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(f->lfd >= 0);
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", sock);
	assert_int_equal(bind(f->lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(f->lfd, 4), 0);
	assert_int_equal(pthread_create(&f->thread, NULL, serve, f), 0);
	return f;
}

static void fake_stop(struct fake *f)
{
	pthread_join(f->thread, NULL);
	close(f->lfd);
	ramkey_request_free(f->got);
	free(f);
}

static struct ramkey_request *open_req(const char *pgp)
{
	struct ramkey_request *req = ramkey_request_new(RAMKEY_OP_OPEN_SESSION);

	assert_non_null(req);
	req->user = strdup("alice");
	if (pgp != NULL)
		req->pgp_key = strdup(pgp);
	return req;
}

/* Run the sequence against a fake in mode; returns finish's code. */
static int run(enum mode mode, struct ramkey_request *req, uint64_t wait_ms,
    struct ramkey_obtain **op, struct fake **fp, char *why, size_t whylen)
{
	struct fake *f = fake_start(mode);
	int r;

	assert_int_equal(ramkey_obtain_start(sock, req, wait_ms, op, why,
	    whylen), 0);
	assert_non_null(*op);
	assert_int_equal((*op)->state, RAMKEY_OBTAIN_WAITING);
	r = ramkey_obtain_finish(*op, why, whylen);
	pthread_join(f->thread, NULL);
	f->thread = pthread_self(); /* joined */
	*fp = f;
	return r;
}

static void done(struct fake *f, struct ramkey_obtain *o,
    struct ramkey_request *req)
{
	close(f->lfd);
	ramkey_request_free(f->got);
	free(f);
	ramkey_obtain_free(o);
	ramkey_request_free(req);
}

/* ---- the good cases ---- */

static void test_sealed_secret_opened(void **state)
{
	struct ramkey_request *req = open_req(NULL);
	struct ramkey_obtain *o = NULL;
	struct fake *f;
	char why[256];

	assert_int_equal(run(SEALED, req, 5000, &o, &f, why, sizeof(why)), 0);
	assert_int_equal(o->state, RAMKEY_OBTAIN_DONE);
	assert_string_equal(o->secret, SECRET);
	assert_int_equal(o->secret_len, strlen(SECRET));
	assert_string_equal(o->cred.secret, SECRET);
	assert_string_equal(o->cred.access_key_id, KEY_ID);
	assert_string_equal(o->cred.status, "Active");
	assert_string_equal(o->cred.region_id, "cn-hangzhou");
	assert_null(o->cred.encrypted_secret);
	assert_string_equal(o->reply->session, TOKEN);
	/* What went out: a fresh seal key, and a timeout a little shorter
	 * than our own wait. */
	assert_true(f->got->has_seal_pk);
	assert_memory_equal(f->got->seal_pk, req->seal_pk,
	    sizeof(req->seal_pk));
	assert_null(f->got->pgp_key);
	assert_true(f->got->has_timeout);
	assert_in_range(f->got->timeout_ms, 4000, 4999);
	done(f, o, req);
}

static void test_pgp_secret_kept_encrypted(void **state)
{
	struct ramkey_request *req = open_req("keybase:alice");
	struct ramkey_obtain *o = NULL;
	struct fake *f;
	char why[256];

	assert_int_equal(
	    run(ENCRYPTED, req, 5000, &o, &f, why, sizeof(why)), 0);
	assert_int_equal(o->state, RAMKEY_OBTAIN_DONE);
	assert_null(o->secret);
	assert_null(o->cred.secret);
	assert_string_equal(o->cred.encrypted_secret, ENC);
	assert_string_equal(o->cred.key_fingerprint, FPR);
	/* No seal key when the secret is to be PGP-encrypted. */
	assert_false(f->got->has_seal_pk);
	assert_string_equal(f->got->pgp_key, "keybase:alice");
	done(f, o, req);
}

static void test_fetch_too(void **state)
{
	struct ramkey_request *req = ramkey_request_new(RAMKEY_OP_FETCH);
	struct ramkey_obtain *o = NULL;
	struct fake *f;
	char why[256];

	assert_int_equal(run(SEALED, req, 5000, &o, &f, why, sizeof(why)), 0);
	assert_string_equal(o->cred.secret, SECRET);
	assert_null(o->reply->session);
	assert_int_equal(f->got->op, RAMKEY_OP_FETCH);
	done(f, o, req);
}

/* ---- a secret not in the form asked for is never used ---- */

static void expect_unusable(enum mode mode, const char *pgp)
{
	struct ramkey_request *req = open_req(pgp);
	struct ramkey_obtain *o = NULL;
	struct fake *f;
	char why[256] = "";

	assert_int_equal(run(mode, req, 5000, &o, &f, why, sizeof(why)),
	    RAMKEY_ERR_CRYPTO);
	assert_int_equal(o->state, RAMKEY_OBTAIN_UNUSABLE);
	assert_null(o->secret);
	assert_null(o->cred.access_key_id);
	assert_non_null(strstr(why, pgp ? "PGP-encrypted" : "sealed"));
	/* The session the reply opened, for the requester to end. */
	assert_non_null(o->reply);
	assert_string_equal(o->reply->session, TOKEN);
	done(f, o, req);
}

static void test_sealed_to_another_key_unusable(void **state)
{
	expect_unusable(SEALED_TO_OTHER, NULL);
}

static void test_encrypted_when_sealed_asked_unusable(void **state)
{
	expect_unusable(ENCRYPTED, NULL);
	expect_unusable(SEALED_AND_ENCRYPTED, NULL);
}

static void test_sealed_when_pgp_asked_unusable(void **state)
{
	/* A sealed box when the secret was to leave the agent only
	 * PGP-encrypted: the agent we asked would never send one. */
	expect_unusable(SEALED_TO_OTHER, "keybase:alice");
	expect_unusable(SEALED_AND_ENCRYPTED, "keybase:alice");
}

/* ---- refusals and silence ---- */

static void test_refusal_is_the_agents_code(void **state)
{
	struct ramkey_request *req = open_req(NULL);
	struct ramkey_obtain *o = NULL;
	struct fake *f;
	char why[256] = "";

	assert_int_equal(run(REFUSED, req, 5000, &o, &f, why, sizeof(why)),
	    RAMKEY_ERR_LIMIT);
	assert_int_equal(o->state, RAMKEY_OBTAIN_REFUSED);
	assert_int_equal(o->reply->error, RAMKEY_ERR_LIMIT);
	assert_string_equal(why, "RAM user alice already has two AccessKeys");
	done(f, o, req);
}

static void test_hang_up_is_no_reply(void **state)
{
	struct ramkey_request *req = open_req(NULL);
	struct ramkey_obtain *o = NULL;
	struct fake *f;
	char why[256] = "";

	assert_int_equal(run(HANG_UP, req, 5000, &o, &f, why, sizeof(why)),
	    RAMKEY_ERR_EOF);
	assert_int_equal(o->state, RAMKEY_OBTAIN_NO_REPLY);
	assert_null(o->reply);
	assert_string_not_equal(why, "");
	done(f, o, req);
}

static void test_silence_ends_at_the_deadline(void **state)
{
	struct ramkey_request *req = open_req(NULL);
	struct ramkey_obtain *o = NULL;
	struct fake *f = fake_start(SILENT);
	char why[256] = "";
	uint64_t t0 = ramkey_now_ms();

	assert_int_equal(ramkey_obtain_start(sock, req, 300, &o, why,
	    sizeof(why)), 0);
	assert_int_equal(ramkey_obtain_finish(o, why, sizeof(why)),
	    RAMKEY_ERR_TIMEOUT);
	assert_in_range(ramkey_now_ms() - t0, 250, 1500);
	assert_int_equal(o->state, RAMKEY_OBTAIN_NO_REPLY);
	assert_non_null(strstr(why, "in time"));
	/* finish closed the connection: the fake sees it and returns. */
	fake_stop(f);
	ramkey_obtain_free(o);
	ramkey_request_free(req);
}

/* The caller's own work between start and finish (the PAM module's NSS
 * group lookup) may outlast the deadline: an answer that came in time is
 * still used. */
static void test_answer_in_time_used_after_slow_local_work(void **state)
{
	struct ramkey_request *req = open_req(NULL);
	struct ramkey_obtain *o = NULL;
	struct fake *f = fake_start(SEALED);
	char why[256] = "";

	assert_int_equal(ramkey_obtain_start(sock, req, 200, &o, why,
	    sizeof(why)), 0);
	pthread_join(f->thread, NULL); /* the answer is here */
	f->thread = pthread_self();
	usleep(300 * 1000);	       /* slow local work */
	assert_int_equal(ramkey_obtain_finish(o, why, sizeof(why)), 0);
	assert_string_equal(o->cred.secret, SECRET);
	done(f, o, req);
}

/* ---- misuse ---- */

static void test_only_key_requests(void **state)
{
	struct ramkey_request *req = ramkey_request_new(RAMKEY_OP_STATUS);
	struct ramkey_obtain *o = (struct ramkey_obtain *)1;

	assert_int_equal(ramkey_obtain_start(sock, req, 1000, &o, NULL, 0),
	    RAMKEY_ERR_INVALID);
	assert_null(o);
	ramkey_request_free(req);
	assert_int_equal(ramkey_obtain_finish(NULL, NULL, 0),
	    RAMKEY_ERR_INVALID);
	ramkey_obtain_free(NULL);
}

static void test_nobody_listening(void **state)
{
	struct ramkey_request *req = open_req(NULL);
	struct ramkey_obtain *o = (struct ramkey_obtain *)1;
	char why[256] = "";

	unlink(sock);
	assert_int_equal(ramkey_obtain_start(sock, req, 1000, &o, why,
	    sizeof(why)), RAMKEY_ERR_CONNECT);
	assert_null(o);
	assert_non_null(strstr(why, sock));
	ramkey_request_free(req);
}

static void test_finish_twice_refused(void **state)
{
	struct ramkey_request *req = open_req(NULL);
	struct ramkey_obtain *o = NULL;
	struct fake *f;
	char why[256];

	assert_int_equal(run(SEALED, req, 5000, &o, &f, why, sizeof(why)), 0);
	assert_int_equal(ramkey_obtain_finish(o, why, sizeof(why)),
	    RAMKEY_ERR_INVALID);
	assert_int_equal(o->state, RAMKEY_OBTAIN_DONE);
	done(f, o, req);
}

/* ---- delivery ---- */

static void test_deliver_writes_the_format(void **state)
{
	struct ramkey_request *req = open_req(NULL);
	struct ramkey_obtain *o = NULL;
	struct ramkey_owner me = { NULL, geteuid(), getegid() };
	struct ramkey_fsid_user u;
	struct fake *f;
	struct stat st;
	char why[256], *path = NULL, buf[1024];
	FILE *fp;
	size_t n;

	assert_int_equal(run(SEALED, req, 5000, &o, &f, why, sizeof(why)), 0);
	assert_int_equal(ramkey_fsid_user_lookup(&me, &u), 0);
	assert_true(asprintf(&path, "%s/out/ramkey.ini", dir) > 0);
	assert_int_equal(ramkey_deliver(&o->cred, RAMKEY_FORMAT_INI, path, &u,
	    why, sizeof(why)), 0);
	assert_int_equal(lstat(path, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0600);
	fp = fopen(path, "r");
	assert_non_null(fp);
	n = fread(buf, 1, sizeof(buf) - 1, fp);
	buf[n] = '\0';
	fclose(fp);
	assert_non_null(strstr(buf, SECRET));
	assert_non_null(strstr(buf, KEY_ID));
	ramkey_fsid_user_clear(&u);
	free(path);
	done(f, o, req);
}

static void test_deliver_pgp_needs_json(void **state)
{
	struct ramkey_request *req = open_req("keybase:alice");
	struct ramkey_obtain *o = NULL;
	struct ramkey_owner me = { NULL, geteuid(), getegid() };
	struct ramkey_fsid_user u;
	struct fake *f;
	char why[256], *path = NULL;

	assert_int_equal(
	    run(ENCRYPTED, req, 5000, &o, &f, why, sizeof(why)), 0);
	assert_int_equal(ramkey_fsid_user_lookup(&me, &u), 0);
	assert_true(asprintf(&path, "%s/pgp.env", dir) > 0);
	assert_int_equal(ramkey_deliver(&o->cred, RAMKEY_FORMAT_ENV, path, &u,
	    why, sizeof(why)), RAMKEY_ERR_INVALID);
	assert_non_null(strstr(why, "plaintext"));
	assert_int_equal(access(path, F_OK), -1);
	free(path);
	assert_true(asprintf(&path, "%s/pgp.json", dir) > 0);
	assert_int_equal(ramkey_deliver(&o->cred, RAMKEY_FORMAT_JSON, path, &u,
	    why, sizeof(why)), 0);
	assert_int_equal(access(path, F_OK), 0);
	ramkey_fsid_user_clear(&u);
	free(path);
	done(f, o, req);
}

static int setup(void **state)
{
	char tmpl[] = "/tmp/ramkey-ob-XXXXXX";

	if (ramkey_crypto_init() != 0 || mkdtemp(tmpl) == NULL ||
	    chmod(tmpl, 0755) != 0)
		return -1;
	dir = strdup(tmpl);
	if (dir == NULL || asprintf(&sock, "%s/agent.sock", dir) < 0)
		return -1;
	return 0;
}

static int teardown(void **state)
{
	char *cmd = NULL;

	if (asprintf(&cmd, "rm -rf '%s'", dir) > 0 && system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", dir);
	free(cmd);
	free(sock);
	free(dir);
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_sealed_secret_opened),
	    cmocka_unit_test(test_pgp_secret_kept_encrypted),
	    cmocka_unit_test(test_fetch_too),
	    cmocka_unit_test(test_sealed_to_another_key_unusable),
	    cmocka_unit_test(test_encrypted_when_sealed_asked_unusable),
	    cmocka_unit_test(test_sealed_when_pgp_asked_unusable),
	    cmocka_unit_test(test_refusal_is_the_agents_code),
	    cmocka_unit_test(test_hang_up_is_no_reply),
	    cmocka_unit_test(test_silence_ends_at_the_deadline),
	    cmocka_unit_test(test_answer_in_time_used_after_slow_local_work),
	    cmocka_unit_test(test_only_key_requests),
	    cmocka_unit_test(test_nobody_listening),
	    cmocka_unit_test(test_finish_twice_refused),
	    cmocka_unit_test(test_deliver_writes_the_format),
	    cmocka_unit_test(test_deliver_pgp_needs_json),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
