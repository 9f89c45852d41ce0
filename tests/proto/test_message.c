/*
 * proto.message: requests and replies of PROTOCOL.md. Every op's request
 * and reply survives encode -> decode; decoding is strict: unknown,
 * mistyped, missing or misplaced fields, other versions, trailing bytes,
 * NULs, bad UTF-8, deep nesting and every over-long or malformed value
 * are refused.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <json-c/json.h>
#include <sodium.h>

#include "frame.h"
#include "message.h"
#include "ramkey_err.h"
#include "util.h"

#define SEAL_KEY_B64 "ERERERERERERERERERERERERERERERERERERERERERE="
#define TOKEN "0123456789abcdef0123456789abcdef"
#define KEY_ID "LTAI5tExample00000000001"
#define FPR "0123456789abcdef0123456789abcdef01234567"
/* base64 of 66 bytes: a sealed 18-byte secret */
#define SEALED_B64                                                             \
	"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygpKiss"         \
	"LS4vMDEyMzQ1Njc4OTo7PD0+P0BB"

/* ---- helpers ---- */

static char *xstrdup(const char *s)
{
	char *p = strdup(s);

	assert_non_null(p);
	return p;
}

static char *repeat(char c, size_t n)
{
	char *p = malloc(n + 1);

	assert_non_null(p);
	memset(p, c, n);
	p[n] = '\0';
	return p;
}

/* printf into a fresh buffer */
static char *fmt(const char *f, ...) __attribute__((format(printf, 1, 2)));

static char *fmt(const char *f, ...)
{
	va_list ap;
	char *p = NULL;
	int n;

	va_start(ap, f);
	n = vasprintf(&p, f, ap);
	va_end(ap);
	assert_true(n >= 0);
	return p;
}

static int req_rc_n(const char *buf, size_t len)
{
	struct ramkey_request *req = (struct ramkey_request *)1;
	int r = ramkey_request_decode((const uint8_t *)buf, len, &req);

	if (r != 0)
		assert_null(req);
	ramkey_request_free(req);
	return r;
}

static int req_rc(const char *json)
{
	return req_rc_n(json, strlen(json));
}

static int rep_rc_n(const char *buf, size_t len, enum ramkey_op expect)
{
	struct ramkey_reply *rep = (struct ramkey_reply *)1;
	int r = ramkey_reply_decode((const uint8_t *)buf, len, expect, &rep);

	if (r != 0)
		assert_null(rep);
	ramkey_reply_free(rep);
	return r;
}

static int rep_rc(const char *json, enum ramkey_op expect)
{
	return rep_rc_n(json, strlen(json), expect);
}

#define assert_req_ok(json) assert_int_equal(req_rc(json), 0)
#define assert_req_bad(json) assert_int_equal(req_rc(json), RAMKEY_ERR_PROTOCOL)
#define assert_rep_ok(json, op) assert_int_equal(rep_rc(json, op), 0)
#define assert_rep_bad(json, op)                                               \
	assert_int_equal(rep_rc(json, op), RAMKEY_ERR_PROTOCOL)

/* The same request with one more member, e.g. extra(",\"x\":1"). */
static int status_req_with(const char *members)
{
	char *j = fmt("{\"v\":1,\"op\":\"status\"%s}", members);
	int r = req_rc(j);

	free(j);
	return r;
}

static int open_req_with(const char *members)
{
	char *j = fmt("{\"v\":1,\"op\":\"open_session\",\"user\":\"alice\","
		      "\"seal_key\":\"" SEAL_KEY_B64 "\"%s}",
	    members);
	int r = req_rc(j);

	free(j);
	return r;
}

static const char key_sealed_json[] =
    "{\"access_key_id\":\"" KEY_ID "\",\"create_date\":"
    "\"2026-11-27T20:18:10Z\",\"status\":\"Active\",\"expires\":1795853890,"
    "\"sealed_secret\":\"" SEALED_B64 "\"}";

/* A fetch reply whose key object is `key`. */
static int fetch_rep_with_key(const char *key)
{
	char *j = fmt("{\"v\":1,\"op\":\"fetch\",\"ok\":true,\"key\":%s,"
		      "\"region_id\":\"cn-hangzhou\"}",
	    key);
	int r = rep_rc(j, RAMKEY_OP_FETCH);

	free(j);
	return r;
}

static int error_rep_with(const char *error)
{
	char *j =
	    fmt("{\"v\":1,\"op\":\"fetch\",\"ok\":false,\"error\":%s}", error);
	int r = rep_rc(j, RAMKEY_OP_FETCH);

	free(j);
	return r;
}

static struct ramkey_request *round_trip_request(
    const struct ramkey_request *req)
{
	struct ramkey_request *back = NULL;
	char *text = NULL;
	size_t len = 0;

	assert_int_equal(ramkey_request_encode(req, &text, &len), 0);
	assert_non_null(text);
	assert_int_equal(strlen(text), len);
	assert_null(strchr(text, '\n')); /* compact: one line */
	assert_int_equal(
	    ramkey_request_decode((const uint8_t *)text, len, &back), 0);
	assert_non_null(back);
	free(text);
	return back;
}

static struct ramkey_reply *round_trip_reply(const struct ramkey_reply *rep)
{
	struct ramkey_reply *back = NULL;
	char *text = NULL;
	size_t len = 0;

	assert_int_equal(ramkey_reply_encode(rep, &text, &len), 0);
	assert_non_null(text);
	assert_int_equal(strlen(text), len);
	assert_int_equal(
	    ramkey_reply_decode((const uint8_t *)text, len, rep->op, &back), 0);
	assert_non_null(back);
	free(text);
	return back;
}

#define assert_str_or_null_equal(a, b)                                         \
	do {                                                                   \
		if ((b) == NULL)                                               \
			assert_null(a);                                        \
		else                                                           \
			assert_string_equal((a), (b));                         \
	} while (0)

static void assert_requests_equal(
    const struct ramkey_request *a, const struct ramkey_request *b)
{
	assert_int_equal(a->op, b->op);
	assert_str_or_null_equal(a->user, b->user);
	assert_int_equal(a->has_seal_pk, b->has_seal_pk);
	if (b->has_seal_pk)
		assert_memory_equal(a->seal_pk, b->seal_pk, sizeof(a->seal_pk));
	assert_str_or_null_equal(a->pgp_key, b->pgp_key);
	assert_str_or_null_equal(a->secret_file, b->secret_file);
	assert_str_or_null_equal(a->rhost, b->rhost);
	assert_str_or_null_equal(a->tty, b->tty);
	assert_str_or_null_equal(a->service, b->service);
	assert_str_or_null_equal(a->session, b->session);
	assert_str_or_null_equal(a->key_id, b->key_id);
	assert_str_or_null_equal(a->status, b->status);
	assert_int_equal(a->has_ttl, b->has_ttl);
	assert_int_equal(a->ttl, b->ttl);
	assert_int_equal(a->all, b->all);
}

static struct ramkey_request *new_request(enum ramkey_op op)
{
	struct ramkey_request *req = ramkey_request_new(op);

	assert_non_null(req);
	assert_int_equal(req->op, op);
	return req;
}

static void check_request_round_trip(struct ramkey_request *req)
{
	struct ramkey_request *back = round_trip_request(req);

	assert_requests_equal(back, req);
	ramkey_request_free(back);
	ramkey_request_free(req);
}

/* ---- request round trips ---- */

static void test_request_round_trip_open_session(void **state)
{
	struct ramkey_request *req = new_request(RAMKEY_OP_OPEN_SESSION);

	req->user = xstrdup("alice");
	req->has_seal_pk = true;
	memset(req->seal_pk, 0x42, sizeof(req->seal_pk));
	req->secret_file = xstrdup("/run/user/1000/ramkey/credentials.json");
	req->rhost = xstrdup("192.0.2.7");
	req->tty = xstrdup("ssh");
	req->service = xstrdup("sshd");
	check_request_round_trip(req);

	/* With a PGP key instead of a seal key. */
	req = new_request(RAMKEY_OP_OPEN_SESSION);
	req->user = xstrdup("bob");
	req->pgp_key = xstrdup("keybase:bob");
	check_request_round_trip(req);
}

static void test_request_round_trip_close_session(void **state)
{
	struct ramkey_request *req = new_request(RAMKEY_OP_CLOSE_SESSION);

	req->session = xstrdup(TOKEN);
	req->user = xstrdup("alice");
	check_request_round_trip(req);
	req = new_request(RAMKEY_OP_CLOSE_SESSION);
	req->session = xstrdup(TOKEN);
	check_request_round_trip(req);
}

static void test_request_round_trip_fetch(void **state)
{
	struct ramkey_request *req = new_request(RAMKEY_OP_FETCH);

	req->has_seal_pk = true;
	randombytes_buf(req->seal_pk, sizeof(req->seal_pk));
	req->has_ttl = true;
	req->ttl = 1800;
	check_request_round_trip(req);

	req = new_request(RAMKEY_OP_FETCH);
	req->user = xstrdup("carol");
	req->pgp_key = xstrdup("-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nmQEN"
			       "\n-----END PGP PUBLIC KEY BLOCK-----\n");
	req->has_seal_pk = true;
	req->has_ttl = true;
	req->ttl = 3153600000ULL; /* the most */
	check_request_round_trip(req);
}

static void test_request_round_trip_revoke(void **state)
{
	struct ramkey_request *req = new_request(RAMKEY_OP_REVOKE);

	check_request_round_trip(req);
	req = new_request(RAMKEY_OP_REVOKE);
	req->user = xstrdup("alice");
	req->key_id = xstrdup(KEY_ID);
	check_request_round_trip(req);
}

/* revoke --all: every lease of every user; a boolean that stands alone. */
static void test_request_round_trip_revoke_all(void **state)
{
	struct ramkey_request *req = new_request(RAMKEY_OP_REVOKE);
	char *text = NULL;

	req->all = true;
	assert_int_equal(ramkey_request_encode(req, &text, NULL), 0);
	assert_non_null(strstr(text, "\"all\":true"));
	free(text);
	check_request_round_trip(req);

	/* Left out unless set. */
	req = new_request(RAMKEY_OP_REVOKE);
	assert_int_equal(ramkey_request_encode(req, &text, NULL), 0);
	assert_null(strstr(text, "all"));
	free(text);
	ramkey_request_free(req);
}

static void test_request_revoke_all_decoded(void **state)
{
	static const char *const yes =
	    "{\"v\":1,\"op\":\"revoke\",\"all\":true}";
	static const char *const no =
	    "{\"v\":1,\"op\":\"revoke\",\"all\":false}";
	struct ramkey_request *req = NULL;

	assert_int_equal(
	    ramkey_request_decode((const uint8_t *)yes, strlen(yes), &req), 0);
	assert_int_equal(req->op, RAMKEY_OP_REVOKE);
	assert_true(req->all);
	assert_null(req->user);
	assert_null(req->key_id);
	ramkey_request_free(req);
	req = NULL;
	/* false is the same as leaving it out: the caller's own leases. */
	assert_int_equal(
	    ramkey_request_decode((const uint8_t *)no, strlen(no), &req), 0);
	assert_false(req->all);
	ramkey_request_free(req);
}

static void test_request_revoke_all_strict(void **state)
{
	/* A boolean, nothing else. */
	assert_req_bad("{\"v\":1,\"op\":\"revoke\",\"all\":1}");
	assert_req_bad("{\"v\":1,\"op\":\"revoke\",\"all\":0}");
	assert_req_bad("{\"v\":1,\"op\":\"revoke\",\"all\":\"true\"}");
	assert_req_bad("{\"v\":1,\"op\":\"revoke\",\"all\":null}");
	assert_req_bad("{\"v\":1,\"op\":\"revoke\",\"all\":[true]}");
	assert_req_bad("{\"v\":1,\"op\":\"revoke\",\"all\":{}}");
	/* Every user's leases, or some of one user's: never both. */
	assert_req_bad("{\"v\":1,\"op\":\"revoke\",\"all\":true,"
		       "\"user\":\"alice\"}");
	assert_req_bad("{\"v\":1,\"op\":\"revoke\",\"all\":true,"
		       "\"key_id\":\"" KEY_ID "\"}");
	assert_req_bad("{\"v\":1,\"op\":\"revoke\",\"user\":\"alice\","
		       "\"key_id\":\"" KEY_ID "\",\"all\":true}");
	assert_req_bad("{\"v\":1,\"op\":\"revoke\",\"all\":false,"
		       "\"user\":\"alice\"}");
	assert_req_bad("{\"v\":1,\"op\":\"revoke\",\"key_id\":\"" KEY_ID
		       "\",\"all\":false}");
	/* Only revoke knows it. */
	assert_int_equal(status_req_with(",\"all\":true"), RAMKEY_ERR_PROTOCOL);
	assert_int_equal(open_req_with(",\"all\":true"), RAMKEY_ERR_PROTOCOL);
	assert_req_bad("{\"v\":1,\"op\":\"fetch\",\"seal_key\":\"" SEAL_KEY_B64
		       "\",\"all\":true}");
	assert_req_bad("{\"v\":1,\"op\":\"close_session\",\"session\":\"" TOKEN
		       "\",\"all\":true}");
	assert_req_bad("{\"v\":1,\"op\":\"set_status\",\"key_id\":\"" KEY_ID
		       "\",\"status\":\"Active\",\"all\":true}");
}

static void test_request_encode_refuses_revoke_all_with_user(void **state)
{
	struct ramkey_request *req = new_request(RAMKEY_OP_REVOKE);
	char *text = (char *)1;
	size_t len = 1;

	req->all = true;
	req->user = xstrdup("alice");
	assert_int_equal(
	    ramkey_request_encode(req, &text, &len), RAMKEY_ERR_INVALID);
	assert_null(text);
	assert_int_equal(len, 0);
	free(req->user);
	req->user = NULL;
	req->key_id = xstrdup(KEY_ID);
	assert_int_equal(
	    ramkey_request_encode(req, &text, &len), RAMKEY_ERR_INVALID);
	assert_null(text);
	ramkey_request_free(req);
}

static void test_request_round_trip_status(void **state)
{
	struct ramkey_request *req = new_request(RAMKEY_OP_STATUS);

	check_request_round_trip(req);
	req = new_request(RAMKEY_OP_STATUS);
	req->user = xstrdup("user@EXAMPLE.COM");
	check_request_round_trip(req);
}

static void test_request_round_trip_set_status(void **state)
{
	struct ramkey_request *req = new_request(RAMKEY_OP_SET_STATUS);

	req->key_id = xstrdup(KEY_ID);
	req->status = xstrdup("Inactive");
	check_request_round_trip(req);
	req = new_request(RAMKEY_OP_SET_STATUS);
	req->key_id = xstrdup(KEY_ID);
	req->status = xstrdup("Active");
	check_request_round_trip(req);
}

static void test_request_metrics_has_no_fields(void **state)
{
	struct ramkey_request *req = NULL;
	static const char ok[] = "{\"v\":1,\"op\":\"metrics\"}";

	check_request_round_trip(new_request(RAMKEY_OP_METRICS));
	assert_int_equal(ramkey_request_decode((const uint8_t *)ok,
	    strlen(ok), &req), 0);
	assert_int_equal(req->op, RAMKEY_OP_METRICS);
	ramkey_request_free(req);
	assert_req_bad("{\"v\":1,\"op\":\"metrics\",\"user\":\"alice\"}");
	assert_req_bad("{\"v\":1,\"op\":\"metrics\",\"all\":true}");
	assert_req_bad("{\"v\":1,\"op\":\"metrics\",\"format\":\"x\"}");
}

static void test_request_decodes_protocol_example(void **state)
{
	static const char ex[] =
	    "{\"v\":1,\"op\":\"fetch\",\"seal_key\":"
	    "\"0k1lT3yGbc6m0ikV7Y3b6vq8L9h2Xq9m3F2r8aT1Yx4=\","
	    "\"ttl\":1800}";
	struct ramkey_request *req = NULL;

	assert_int_equal(
	    ramkey_request_decode((const uint8_t *)ex, strlen(ex), &req), 0);
	assert_int_equal(req->op, RAMKEY_OP_FETCH);
	assert_true(req->has_seal_pk);
	assert_true(req->has_ttl);
	assert_int_equal(req->ttl, 1800);
	assert_null(req->user);
	ramkey_request_free(req);
}

static void test_request_encode_refuses_unknown_op(void **state)
{
	struct ramkey_request *req = new_request(RAMKEY_OP_NONE);
	char *text = (char *)"x";
	size_t len = 3;

	assert_int_equal(
	    ramkey_request_encode(req, &text, &len), RAMKEY_ERR_INVALID);
	assert_null(text);
	assert_int_equal(len, 0);
	req->op = (enum ramkey_op)99;
	assert_int_equal(
	    ramkey_request_encode(req, &text, &len), RAMKEY_ERR_INVALID);
	ramkey_request_free(req);
}

static void test_request_encode_refuses_oversized(void **state)
{
	struct ramkey_request *req = new_request(RAMKEY_OP_OPEN_SESSION);
	char *text = (char *)"x";
	size_t len = 3;

	req->user = xstrdup("alice");
	req->pgp_key = repeat('k', RAMKEY_FRAME_MAX);
	assert_int_equal(
	    ramkey_request_encode(req, &text, &len), RAMKEY_ERR_TOO_LARGE);
	assert_null(text);
	ramkey_request_free(req);
}

static void test_op_names(void **state)
{
	assert_string_equal(
	    ramkey_op_name(RAMKEY_OP_OPEN_SESSION), "open_session");
	assert_string_equal(
	    ramkey_op_name(RAMKEY_OP_CLOSE_SESSION), "close_session");
	assert_string_equal(ramkey_op_name(RAMKEY_OP_FETCH), "fetch");
	assert_string_equal(ramkey_op_name(RAMKEY_OP_REVOKE), "revoke");
	assert_string_equal(ramkey_op_name(RAMKEY_OP_STATUS), "status");
	assert_string_equal(ramkey_op_name(RAMKEY_OP_SET_STATUS), "set_status");
	assert_string_equal(ramkey_op_name(RAMKEY_OP_METRICS), "metrics");
	assert_string_equal(ramkey_op_name(RAMKEY_OP_NONE), "none");
	assert_string_equal(ramkey_op_name((enum ramkey_op)42), "none");
}

/* ---- request strictness ---- */

static void test_request_unknown_field_refused(void **state)
{
	assert_int_equal(status_req_with(""), 0);
	assert_int_equal(status_req_with(",\"x\":1"), RAMKEY_ERR_PROTOCOL);
	assert_int_equal(
	    status_req_with(",\"User\":\"alice\""), RAMKEY_ERR_PROTOCOL);
	assert_int_equal(status_req_with(",\"\":1"), RAMKEY_ERR_PROTOCOL);
	assert_int_equal(status_req_with(",\"ok\":true"), RAMKEY_ERR_PROTOCOL);
	assert_int_equal(
	    open_req_with(",\"secret\":\"x\""), RAMKEY_ERR_PROTOCOL);
}

static void test_request_wrong_type_refused(void **state)
{
	assert_int_equal(status_req_with(",\"user\":5"), RAMKEY_ERR_PROTOCOL);
	assert_int_equal(
	    status_req_with(",\"user\":null"), RAMKEY_ERR_PROTOCOL);
	assert_int_equal(
	    status_req_with(",\"user\":[\"alice\"]"), RAMKEY_ERR_PROTOCOL);
	assert_int_equal(status_req_with(",\"user\":{\"n\":\"alice\"}"),
	    RAMKEY_ERR_PROTOCOL);
	assert_int_equal(open_req_with(",\"tty\":true"), RAMKEY_ERR_PROTOCOL);
	assert_int_equal(open_req_with(",\"rhost\":1.5"), RAMKEY_ERR_PROTOCOL);
	assert_int_equal(open_req_with(",\"pgp_key\":0"), RAMKEY_ERR_PROTOCOL);
	assert_req_bad("{\"v\":1,\"op\":\"fetch\",\"seal_key\":true}");
	assert_req_bad("{\"v\":1,\"op\":\"fetch\",\"seal_key\":\"" SEAL_KEY_B64
		       "\",\"ttl\":\"60\"}");
	assert_req_bad("{\"v\":1,\"op\":\"fetch\",\"seal_key\":\"" SEAL_KEY_B64
		       "\",\"ttl\":60.0}");
	assert_req_bad("{\"v\":1,\"op\":\"fetch\",\"seal_key\":\"" SEAL_KEY_B64
		       "\",\"ttl\":true}");
	assert_req_bad("{\"v\":1,\"op\":\"close_session\",\"session\":1}");
	assert_req_bad("{\"v\":1,\"op\":\"set_status\",\"key_id\":\"" KEY_ID
		       "\",\"status\":false}");
	assert_req_bad("{\"v\":1,\"op\":5}");
	assert_req_bad("{\"v\":1,\"op\":null}");
	assert_req_bad("{\"v\":\"1\",\"op\":\"status\"}");
	assert_req_bad("{\"v\":true,\"op\":\"status\"}");
}

static void test_request_missing_required_field_refused(void **state)
{
	assert_req_bad(
	    "{\"v\":1,\"op\":\"open_session\",\"seal_key\":\"" SEAL_KEY_B64
	    "\"}"); /* user */
	assert_req_bad("{\"v\":1,\"op\":\"close_session\"}");
	assert_req_bad("{\"v\":1,\"op\":\"close_session\",\"user\":\"a\"}");
	assert_req_bad(
	    "{\"v\":1,\"op\":\"set_status\",\"key_id\":\"" KEY_ID "\"}");
	assert_req_bad("{\"v\":1,\"op\":\"set_status\",\"status\":\"Active\"}");
	assert_req_bad("{\"v\":1,\"op\":\"set_status\"}");
	/* A request that returns a secret needs a way to protect it. */
	assert_req_bad("{\"v\":1,\"op\":\"open_session\",\"user\":\"a\"}");
	assert_req_bad("{\"v\":1,\"op\":\"fetch\"}");
	assert_req_bad("{\"v\":1,\"op\":\"fetch\",\"ttl\":60}");
	/* v and op themselves. */
	assert_req_bad("{\"op\":\"status\"}");
	assert_req_bad("{\"v\":1}");
	assert_req_bad("{}");
}

static void test_request_field_not_allowed_for_op_refused(void **state)
{
	assert_int_equal(status_req_with(",\"ttl\":60"), RAMKEY_ERR_PROTOCOL);
	assert_int_equal(
	    status_req_with(",\"key_id\":\"" KEY_ID "\""), RAMKEY_ERR_PROTOCOL);
	assert_int_equal(status_req_with(",\"seal_key\":\"" SEAL_KEY_B64 "\""),
	    RAMKEY_ERR_PROTOCOL);
	assert_int_equal(open_req_with(",\"ttl\":60"), RAMKEY_ERR_PROTOCOL);
	assert_int_equal(
	    open_req_with(",\"session\":\"" TOKEN "\""), RAMKEY_ERR_PROTOCOL);
	assert_int_equal(
	    open_req_with(",\"key_id\":\"" KEY_ID "\""), RAMKEY_ERR_PROTOCOL);
	assert_req_bad("{\"v\":1,\"op\":\"set_status\",\"key_id\":\"" KEY_ID
		       "\",\"status\":\"Active\",\"user\":\"alice\"}");
	assert_req_bad("{\"v\":1,\"op\":\"close_session\",\"session\":\"" TOKEN
		       "\",\"seal_key\":\"" SEAL_KEY_B64 "\"}");
	assert_req_bad("{\"v\":1,\"op\":\"revoke\",\"status\":\"Active\"}");
	assert_req_bad("{\"v\":1,\"op\":\"fetch\",\"seal_key\":\"" SEAL_KEY_B64
		       "\",\"session\":\"" TOKEN "\"}");
	assert_req_bad("{\"v\":1,\"op\":\"open_session\",\"user\":\"a\","
		       "\"seal_key\":\"" SEAL_KEY_B64 "\","
		       "\"default_file\":true}");
	assert_req_bad("{\"v\":1,\"op\":\"fetch\",\"seal_key\":\"" SEAL_KEY_B64
		       "\",\"aborted\":true}");
	assert_req_bad("{\"v\":1,\"op\":\"fetch\",\"seal_key\":\"" SEAL_KEY_B64
		       "\",\"tty\":\"pts/0\"}");
}

static void test_request_bad_version_is_version_error(void **state)
{
	assert_int_equal(
	    req_rc("{\"v\":2,\"op\":\"status\"}"), RAMKEY_ERR_VERSION);
	assert_int_equal(
	    req_rc("{\"v\":0,\"op\":\"status\"}"), RAMKEY_ERR_VERSION);
	assert_int_equal(
	    req_rc("{\"v\":-1,\"op\":\"status\"}"), RAMKEY_ERR_VERSION);
	assert_int_equal(
	    req_rc("{\"v\":4294967297,\"op\":\"status\"}"), RAMKEY_ERR_VERSION);
	/* Checked before the op: a future version's ops are unknown. */
	assert_int_equal(req_rc("{\"v\":2,\"op\":\"rotate\",\"new\":1}"),
	    RAMKEY_ERR_VERSION);
	assert_int_not_equal(req_rc("{\"v\":1.0,\"op\":\"status\"}"), 0);
}

static void test_request_unknown_op_refused(void **state)
{
	assert_req_bad("{\"v\":1,\"op\":\"rotate\"}");
	assert_req_bad("{\"v\":1,\"op\":\"none\"}");
	assert_req_bad("{\"v\":1,\"op\":\"\"}");
	assert_req_bad("{\"v\":1,\"op\":\"STATUS\"}");
	assert_req_bad("{\"v\":1,\"op\":\"status \"}");
}

static void test_request_trailing_garbage_refused(void **state)
{
	assert_req_ok("{\"v\":1,\"op\":\"status\"}");
	assert_req_ok("{\"v\":1,\"op\":\"status\"} \r\n\t");
	assert_req_ok(" \n{\"v\":1,\"op\":\"status\"}");
	assert_req_bad("{\"v\":1,\"op\":\"status\"}x");
	assert_req_bad("{\"v\":1,\"op\":\"status\"} x");
	assert_req_bad("{\"v\":1,\"op\":\"status\"}{}");
	assert_req_bad(
	    "{\"v\":1,\"op\":\"status\"}{\"v\":1,\"op\":\"status\"}");
	assert_req_bad("{\"v\":1,\"op\":\"status\"}]");
	assert_req_bad("{\"v\":1,\"op\":\"status\"}\f");
}

static void test_request_malformed_json_refused(void **state)
{
	assert_req_bad("{\"v\":1,\"op\":\"status\"");
	assert_req_bad("{\"v\":1,\"op\":\"status\",}");
	assert_req_bad("{'v':1,'op':'status'}");
	assert_req_bad("{v:1,op:\"status\"}");
	assert_req_bad("{\"v\":1,\"op\":\"status\"/*c*/}");
	assert_req_bad("{\"v\":01,\"op\":\"status\"}");
	assert_req_bad("{\"v\":1,\"op\":\"status\",\"user\":\"al\\x41\"}");
	assert_req_bad("[]");
	assert_req_bad("[{\"v\":1,\"op\":\"status\"}]");
	assert_req_bad("\"status\"");
	assert_req_bad("1");
	assert_req_bad("null");
	assert_req_bad("");
	assert_req_bad(" ");
	assert_req_bad("{");
	assert_req_bad("}");
}

static void test_request_nul_inside_refused(void **state)
{
	static const char raw[] =
	    "{\"v\":1,\"op\":\"status\",\"user\":\"al\0ce\"}";
	static const char after[] = "{\"v\":1,\"op\":\"status\"}\0";

	assert_int_equal(req_rc_n(raw, sizeof(raw) - 1), RAMKEY_ERR_PROTOCOL);
	assert_int_equal(
	    req_rc_n(after, sizeof(after) - 1), RAMKEY_ERR_PROTOCOL);
	/* An escaped NUL is a NUL all the same. */
	assert_int_equal(
	    status_req_with(",\"user\":\"al\\u0000ce\""), RAMKEY_ERR_PROTOCOL);
	assert_int_equal(open_req_with(",\"secret_file\":\"/tmp/a\\u0000b\""),
	    RAMKEY_ERR_PROTOCOL);
	assert_int_equal(
	    open_req_with(",\"pgp_key\":\"\\u0000\""), RAMKEY_ERR_PROTOCOL);
}

static void test_request_invalid_utf8_refused(void **state)
{
	/* a lone continuation byte, a truncated sequence, overlong forms,
	 * a UTF-16 surrogate, code points past U+10FFFF, 0xff: in a field
	 * whose value would otherwise be fine */
	assert_int_equal(
	    open_req_with(",\"rhost\":\"a\x80z\""), RAMKEY_ERR_PROTOCOL);
	assert_int_equal(
	    open_req_with(",\"rhost\":\"a\xc3\""), RAMKEY_ERR_PROTOCOL);
	assert_int_equal(
	    open_req_with(",\"rhost\":\"\xc0\xaf\""), RAMKEY_ERR_PROTOCOL);
	assert_int_equal(
	    open_req_with(",\"rhost\":\"\xe0\x80\xaf\""), RAMKEY_ERR_PROTOCOL);
	assert_int_equal(
	    open_req_with(",\"rhost\":\"\xed\xa0\x80\""), RAMKEY_ERR_PROTOCOL);
	assert_int_equal(open_req_with(",\"rhost\":\"\xf4\x90\x80\x80\""),
	    RAMKEY_ERR_PROTOCOL);
	assert_int_equal(open_req_with(",\"rhost\":\"\xf5\x80\x80\x80\""),
	    RAMKEY_ERR_PROTOCOL);
	assert_int_equal(
	    open_req_with(",\"rhost\":\"\xff\""), RAMKEY_ERR_PROTOCOL);
	/* Anywhere in the body, even in a name. */
	assert_int_equal(open_req_with(",\"\xc0\xaf\":1"), RAMKEY_ERR_PROTOCOL);
	assert_int_equal(
	    open_req_with(",\"pgp_key\":\"\xe2\x82\""), RAMKEY_ERR_PROTOCOL);
	/* Valid UTF-8 where printable text is allowed is fine, up to
	 * U+10FFFF; an escaped lone surrogate becomes U+FFFD. */
	assert_int_equal(open_req_with(",\"rhost\":\"h\xc3\xa9te\""), 0);
	assert_int_equal(open_req_with(",\"rhost\":\"\xe2\x82\xac\""), 0);
	assert_int_equal(open_req_with(",\"rhost\":\"\xf0\x9f\x98\x80\""), 0);
	assert_int_equal(open_req_with(",\"rhost\":\"\xf4\x8f\xbf\xbf\""), 0);
	assert_int_equal(open_req_with(",\"rhost\":\"\xef\xbf\xbd\""), 0);
	assert_int_equal(open_req_with(",\"rhost\":\"\\ud800\""), 0);
}

static void test_request_nesting_too_deep_refused(void **state)
{
	char *deep, *j;
	size_t n = 2000, i;

	deep = malloc(2 * n + 2);
	assert_non_null(deep);
	for (i = 0; i < n; i++) {
		deep[i] = '[';
		deep[2 * n - i] = ']';
	}
	deep[n] = '1';
	deep[2 * n + 1] = '\0';
	j = fmt("{\"v\":1,\"op\":\"status\",\"user\":%s}", deep);
	assert_req_bad(j);
	free(j);
	free(deep);
}

static void test_request_over_long_values_refused(void **state)
{
	char *s, *m;

	/* user: 1-256 bytes */
	s = repeat('u', 256);
	m = fmt(",\"user\":\"%s\"", s);
	assert_int_equal(status_req_with(m), 0);
	free(m);
	free(s);
	s = repeat('u', 257);
	m = fmt(",\"user\":\"%s\"", s);
	assert_int_equal(status_req_with(m), RAMKEY_ERR_PROTOCOL);
	free(m);
	free(s);
	/* secret_file: absolute, under 4096 bytes */
	s = repeat('p', 4094);
	s[0] = '/';
	m = fmt(",\"secret_file\":\"%s\"", s);
	assert_int_equal(open_req_with(m), 0);
	free(m);
	free(s);
	s = repeat('p', 4096);
	s[0] = '/';
	m = fmt(",\"secret_file\":\"%s\"", s);
	assert_int_equal(open_req_with(m), RAMKEY_ERR_PROTOCOL);
	free(m);
	free(s);
	/* tty 64, rhost 255, service 64 */
	s = repeat('t', 64);
	m = fmt(",\"tty\":\"%s\"", s);
	assert_int_equal(open_req_with(m), 0);
	free(m);
	free(s);
	s = repeat('t', 65);
	m = fmt(",\"tty\":\"%s\"", s);
	assert_int_equal(open_req_with(m), RAMKEY_ERR_PROTOCOL);
	free(m);
	free(s);
	s = repeat('r', 255);
	m = fmt(",\"rhost\":\"%s\"", s);
	assert_int_equal(open_req_with(m), 0);
	free(m);
	free(s);
	s = repeat('r', 256);
	m = fmt(",\"rhost\":\"%s\"", s);
	assert_int_equal(open_req_with(m), RAMKEY_ERR_PROTOCOL);
	free(m);
	free(s);
	s = repeat('s', 64);
	m = fmt(",\"service\":\"%s\"", s);
	assert_int_equal(open_req_with(m), 0);
	free(m);
	free(s);
	s = repeat('s', 65);
	m = fmt(",\"service\":\"%s\"", s);
	assert_int_equal(open_req_with(m), RAMKEY_ERR_PROTOCOL);
	free(m);
	free(s);
	/* pgp_key: 49152 bytes */
	s = repeat('k', RAMKEY_PGP_KEY_MAX);
	m = fmt(",\"pgp_key\":\"%s\"", s);
	assert_int_equal(open_req_with(m), 0);
	free(m);
	free(s);
	s = repeat('k', RAMKEY_PGP_KEY_MAX + 1);
	m = fmt(",\"pgp_key\":\"%s\"", s);
	assert_int_equal(open_req_with(m), RAMKEY_ERR_PROTOCOL);
	free(m);
	free(s);
}

static void test_request_body_over_frame_limit_refused(void **state)
{
	char *big = repeat(' ', RAMKEY_FRAME_MAX + 1);

	memcpy(big, "{\"v\":1,\"op\":\"status\"}", 21);
	assert_int_equal(req_rc_n(big, RAMKEY_FRAME_MAX), 0);
	assert_int_equal(
	    req_rc_n(big, RAMKEY_FRAME_MAX + 1), RAMKEY_ERR_TOO_LARGE);
	free(big);
	assert_int_equal(req_rc_n("", 0), RAMKEY_ERR_PROTOCOL);
}

static void test_request_bad_user_refused(void **state)
{
	assert_int_equal(
	    status_req_with(",\"user\":\"\""), RAMKEY_ERR_PROTOCOL);
	assert_int_equal(
	    status_req_with(",\"user\":\"-alice\""), RAMKEY_ERR_PROTOCOL);
	assert_int_equal(
	    status_req_with(",\"user\":\"a/b\""), RAMKEY_ERR_PROTOCOL);
	assert_int_equal(
	    status_req_with(",\"user\":\"a:b\""), RAMKEY_ERR_PROTOCOL);
	assert_int_equal(
	    status_req_with(",\"user\":\"a,b\""), RAMKEY_ERR_PROTOCOL);
	assert_int_equal(
	    status_req_with(",\"user\":\"a b\""), RAMKEY_ERR_PROTOCOL);
	assert_int_equal(
	    status_req_with(",\"user\":\"a\\nb\""), RAMKEY_ERR_PROTOCOL);
	assert_int_equal(
	    status_req_with(",\"user\":\"\xc3\xa9\""), RAMKEY_ERR_PROTOCOL);
}

static void test_request_bad_path_refused(void **state)
{
	assert_int_equal(open_req_with(",\"secret_file\":\"relative/x\""),
	    RAMKEY_ERR_PROTOCOL);
	assert_int_equal(
	    open_req_with(",\"secret_file\":\"\""), RAMKEY_ERR_PROTOCOL);
	assert_int_equal(
	    open_req_with(",\"secret_file\":\"/\""), RAMKEY_ERR_PROTOCOL);
	assert_int_equal(open_req_with(",\"secret_file\":\"/tmp/a\\nb\""),
	    RAMKEY_ERR_PROTOCOL);
	assert_int_equal(open_req_with(",\"secret_file\":\"/tmp/\\u001b[0m\""),
	    RAMKEY_ERR_PROTOCOL);
	assert_int_equal(open_req_with(",\"secret_file\":\"/tmp/a\\u007f\""),
	    RAMKEY_ERR_PROTOCOL);
	assert_int_equal(
	    open_req_with(",\"tty\":\"pts/0\\r\""), RAMKEY_ERR_PROTOCOL);
	assert_int_equal(
	    open_req_with(",\"rhost\":\"a\\tb\""), RAMKEY_ERR_PROTOCOL);
	assert_int_equal(
	    open_req_with(",\"service\":\"\\u0007\""), RAMKEY_ERR_PROTOCOL);
}

static void test_request_bad_session_token_refused(void **state)
{
	assert_req_ok(
	    "{\"v\":1,\"op\":\"close_session\",\"session\":\"" TOKEN "\"}");
	assert_req_bad("{\"v\":1,\"op\":\"close_session\",\"session\":"
		       "\"0123456789abcdef0123456789abcde\"}"); /* 31 */
	assert_req_bad("{\"v\":1,\"op\":\"close_session\",\"session\":"
		       "\"0123456789abcdef0123456789abcdef0\"}"); /* 33 */
	assert_req_bad("{\"v\":1,\"op\":\"close_session\",\"session\":"
		       "\"0123456789ABCDEF0123456789abcdef\"}");
	assert_req_bad("{\"v\":1,\"op\":\"close_session\",\"session\":"
		       "\"0123456789abcdeg0123456789abcdef\"}");
	assert_req_bad("{\"v\":1,\"op\":\"close_session\",\"session\":"
		       "\"\"}");
}

static void test_request_bad_key_id_refused(void **state)
{
	char *s = repeat('K', 65), *m;

	assert_req_bad("{\"v\":1,\"op\":\"revoke\",\"key_id\":\"\"}");
	assert_req_bad(
	    "{\"v\":1,\"op\":\"revoke\",\"key_id\":\"LTAI****abcd\"}");
	assert_req_bad("{\"v\":1,\"op\":\"revoke\",\"key_id\":\"LTAI abcd\"}");
	assert_req_bad("{\"v\":1,\"op\":\"revoke\",\"key_id\":\"../x\"}");
	m = fmt("{\"v\":1,\"op\":\"revoke\",\"key_id\":\"%s\"}", s);
	assert_req_bad(m);
	free(m);
	s[64] = '\0';
	m = fmt("{\"v\":1,\"op\":\"revoke\",\"key_id\":\"%s\"}", s);
	assert_req_ok(m);
	free(m);
	free(s);
}

static void test_request_bad_status_refused(void **state)
{
	static const char *const bad[] = {
	    "active", "ACTIVE", "Deleted", "", "Active ", "Inactive\\n"};
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char *m =
		    fmt("{\"v\":1,\"op\":\"set_status\",\"key_id\":\"" KEY_ID
			"\",\"status\":\"%s\"}",
			bad[i]);

		assert_req_bad(m);
		free(m);
	}
}

static void test_request_bad_ttl_refused(void **state)
{
	static const char *const bad[] = {"0", "-1", "-3600", "3153600001",
	    "9223372036854775807", "18446744073709551615",
	    "99999999999999999999", "1.5", "1e3", "\"60\"", "null"};
	size_t i;

	assert_int_equal(
	    req_rc("{\"v\":1,\"op\":\"fetch\",\"seal_key\":\"" SEAL_KEY_B64
		   "\",\"ttl\":3153600000}"),
	    0);
	assert_int_equal(
	    req_rc("{\"v\":1,\"op\":\"fetch\",\"seal_key\":\"" SEAL_KEY_B64
		   "\",\"ttl\":1}"),
	    0);
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char *m =
		    fmt("{\"v\":1,\"op\":\"fetch\",\"seal_key\":\"" SEAL_KEY_B64
			"\",\"ttl\":%s}",
			bad[i]);

		if (req_rc(m) == 0)
			print_error("ttl %s accepted\n", bad[i]);
		assert_int_not_equal(req_rc(m), 0);
		free(m);
	}
}

static void test_request_bad_seal_key_refused(void **state)
{
	static const char *const bad[] = {
	    "EREREREREREREREREREREREREREREREREREREREREQ==", /* 31 bytes */
	    "ERERERERERERERERERERERERERERERERERERERERERER", /* 33 bytes */
	    "ERERERERERERERERERERERERERERERERERERERERERE",  /* no pad */
	    "ERERERERERERERERERERERERERERERERERERERERERF=", /* bad bits */
	    "ERERERERERERERERERERERERERERERERERERERERE-E=", /* url-safe */
	    "ERERERERERERERERERERERERERERERERERERERERERE=\\n",
	    "",
	};
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char *m = fmt(
		    "{\"v\":1,\"op\":\"fetch\",\"seal_key\":\"%s\"}", bad[i]);

		if (req_rc(m) == 0)
			print_error("seal_key %s accepted\n", bad[i]);
		assert_int_equal(req_rc(m), RAMKEY_ERR_PROTOCOL);
		free(m);
	}
	assert_int_equal(
	    open_req_with(",\"pgp_key\":\"\""), RAMKEY_ERR_PROTOCOL);
}

/* ---- reply round trips ---- */

static struct ramkey_reply *new_reply(enum ramkey_op op)
{
	struct ramkey_reply *rep = ramkey_reply_new(op);

	assert_non_null(rep);
	assert_int_equal(rep->op, op);
	return rep;
}

static void fill_key_sealed(struct ramkey_key_info *k)
{
	k->access_key_id = xstrdup(KEY_ID);
	k->create_date = xstrdup("2026-11-27T20:18:10Z");
	k->status = xstrdup("Active");
	k->sealed_len = 30 + crypto_box_SEALBYTES;
	k->sealed = malloc(k->sealed_len);
	assert_non_null(k->sealed);
	randombytes_buf(k->sealed, k->sealed_len);
	k->expires = 1795853890;
}

static void assert_keys_equal(
    const struct ramkey_key_info *a, const struct ramkey_key_info *b)
{
	assert_string_equal(a->access_key_id, b->access_key_id);
	assert_string_equal(a->create_date, b->create_date);
	assert_string_equal(a->status, b->status);
	assert_int_equal(a->sealed_len, b->sealed_len);
	if (b->sealed != NULL)
		assert_memory_equal(a->sealed, b->sealed, b->sealed_len);
	else
		assert_null(a->sealed);
	assert_str_or_null_equal(a->encrypted_secret, b->encrypted_secret);
	assert_str_or_null_equal(a->key_fingerprint, b->key_fingerprint);
	assert_int_equal(a->expires, b->expires);
}

static void test_reply_round_trip_open_session(void **state)
{
	struct ramkey_reply *rep = new_reply(RAMKEY_OP_OPEN_SESSION), *back;

	fill_key_sealed(&rep->key);
	rep->session = xstrdup(TOKEN);
	rep->region_id = xstrdup("cn-hangzhou");
	back = round_trip_reply(rep);
	assert_int_equal(back->error, 0);
	assert_keys_equal(&back->key, &rep->key);
	assert_string_equal(back->session, TOKEN);
	assert_string_equal(back->region_id, "cn-hangzhou");
	assert_null(back->secret_file);
	ramkey_reply_free(back);
	ramkey_reply_free(rep);
}

static void test_reply_round_trip_fetch(void **state)
{
	struct ramkey_reply *rep = new_reply(RAMKEY_OP_FETCH), *back;

	fill_key_sealed(&rep->key);
	rep->secret_file = xstrdup("/run/user/1000/ramkey/credentials.json");
	rep->region_id = xstrdup("eu-central-1");
	back = round_trip_reply(rep);
	assert_keys_equal(&back->key, &rep->key);
	assert_string_equal(back->secret_file, rep->secret_file);
	assert_string_equal(back->region_id, "eu-central-1");
	assert_null(back->session);
	ramkey_reply_free(back);
	ramkey_reply_free(rep);

	/* PGP: encrypted secret and fingerprint instead of a sealed box. */
	rep = new_reply(RAMKEY_OP_FETCH);
	rep->key.access_key_id = xstrdup(KEY_ID);
	rep->key.create_date = xstrdup("2026-11-27T20:18:10Z");
	rep->key.status = xstrdup("Inactive");
	rep->key.encrypted_secret = xstrdup("wcBMA0Xw8dGhQ0a9AQgAexample==");
	rep->key.key_fingerprint = xstrdup(FPR);
	rep->key.expires = 1;
	back = round_trip_reply(rep);
	assert_keys_equal(&back->key, &rep->key);
	assert_null(back->secret_file);
	assert_null(back->region_id);
	ramkey_reply_free(back);
	ramkey_reply_free(rep);
}

static void test_reply_round_trip_close_session(void **state)
{
	bool v;

	for (v = false;; v = true) {
		struct ramkey_reply *rep = new_reply(RAMKEY_OP_CLOSE_SESSION);
		struct ramkey_reply *back;

		rep->last_session = v;
		back = round_trip_reply(rep);
		assert_int_equal(back->last_session, v);
		ramkey_reply_free(back);
		ramkey_reply_free(rep);
		if (v)
			break;
	}
}

static void test_reply_round_trip_revoke(void **state)
{
	static const uint32_t counts[] = {0, 1, 3, UINT32_MAX};
	size_t i;

	for (i = 0; i < sizeof(counts) / sizeof(counts[0]); i++) {
		struct ramkey_reply *rep = new_reply(RAMKEY_OP_REVOKE), *back;

		rep->revoked = counts[i];
		back = round_trip_reply(rep);
		assert_int_equal(back->revoked, counts[i]);
		ramkey_reply_free(back);
		ramkey_reply_free(rep);
	}
}

static const char status_doc[] =
    "{\"leases\":[{\"user\":\"alice\",\"ram_user\":\"alice\","
    "\"access_key_id\":\"LTAI****0001\",\"status\":\"Active\","
    "\"create_time\":\"2026-11-27T20:18:10Z\",\"expires\":"
    "\"2026-11-28T08:18:10Z\",\"sessions\":2,\"ttl_holder_expires\":null,"
    "\"pending_revocation\":false,\"key_fingerprint\":null}],"
    "\"pending_revocations\":1,\"ambiguous_keys\":[\"LTAI****0002\"]}";

static void test_reply_round_trip_status(void **state)
{
	struct ramkey_reply *rep = new_reply(RAMKEY_OP_STATUS), *back;
	struct json_object *lease, *v;

	rep->status = json_tokener_parse(status_doc);
	assert_non_null(rep->status);
	rep->healthy = false;
	back = round_trip_reply(rep);
	assert_false(back->healthy);
	assert_non_null(back->status);
	assert_true(json_object_equal(back->status, rep->status));
	lease = json_object_array_get_idx(
	    json_object_object_get(back->status, "leases"), 0);
	assert_true(json_object_object_get_ex(lease, "sessions", &v));
	assert_int_equal(json_object_get_int(v), 2);
	ramkey_reply_free(back);
	rep->healthy = true;
	back = round_trip_reply(rep);
	assert_true(back->healthy);
	ramkey_reply_free(back);
	ramkey_reply_free(rep);
}

static void test_reply_status_needs_document_to_encode(void **state)
{
	struct ramkey_reply *rep = new_reply(RAMKEY_OP_STATUS);
	char *text = (char *)"x";
	size_t len = 1;

	assert_int_equal(
	    ramkey_reply_encode(rep, &text, &len), RAMKEY_ERR_INVALID);
	assert_null(text);
	ramkey_reply_free(rep);
}

static void test_reply_round_trip_set_status(void **state)
{
	struct ramkey_reply *rep = new_reply(RAMKEY_OP_SET_STATUS), *back;

	back = round_trip_reply(rep);
	assert_int_equal(back->error, 0);
	assert_int_equal(back->op, RAMKEY_OP_SET_STATUS);
	ramkey_reply_free(back);
	ramkey_reply_free(rep);
}

#define METRICS_TEXT                                                           \
	"# HELP ramkey_leases_live Leases live.\n"                           \
	"# TYPE ramkey_leases_live gauge\n"                                  \
	"ramkey_leases_live 3\n"                                             \
	"ramkey_mints_total{result=\"ok\"} 7\n"

static void test_reply_round_trip_metrics(void **state)
{
	struct ramkey_reply *rep = new_reply(RAMKEY_OP_METRICS), *back;
	char *text = (char *)"x";
	size_t len = 1;

	/* Nothing to send: refused. */
	assert_int_equal(ramkey_reply_encode(rep, &text, &len),
	    RAMKEY_ERR_INVALID);
	rep->metrics = xstrdup(METRICS_TEXT);
	back = round_trip_reply(rep);
	assert_string_equal(back->metrics, METRICS_TEXT);
	ramkey_reply_free(back);
	/* Only printable lines, each ending in a newline. */
	free(rep->metrics);
	rep->metrics = xstrdup("ramkey_leases_live 3");
	assert_int_equal(ramkey_reply_encode(rep, &text, &len),
	    RAMKEY_ERR_INVALID);
	free(rep->metrics);
	rep->metrics = xstrdup("a\tb\n");
	assert_int_equal(ramkey_reply_encode(rep, &text, &len),
	    RAMKEY_ERR_INVALID);
	ramkey_reply_free(rep);
	assert_rep_bad("{\"v\":1,\"op\":\"metrics\",\"ok\":true}",
	    RAMKEY_OP_METRICS);
	assert_rep_bad("{\"v\":1,\"op\":\"metrics\",\"ok\":true,"
	    "\"metrics\":1}", RAMKEY_OP_METRICS);
	assert_rep_bad("{\"v\":1,\"op\":\"metrics\",\"ok\":true,"
	    "\"metrics\":\"x 1\\u0007\\n\"}", RAMKEY_OP_METRICS);
	assert_rep_bad("{\"v\":1,\"op\":\"metrics\",\"ok\":true,"
	    "\"metrics\":\"x 1\\n\",\"status\":{}}", RAMKEY_OP_METRICS);
	/* The reply may be larger than an ordinary frame, as status's. */
	assert_int_equal(ramkey_reply_frame_max(RAMKEY_OP_METRICS),
	    RAMKEY_STATUS_FRAME_MAX);
	assert_int_equal(ramkey_reply_frame_max(RAMKEY_OP_FETCH),
	    RAMKEY_FRAME_MAX);
}

static void test_reply_round_trip_error(void **state)
{
	struct ramkey_reply *rep = new_reply(RAMKEY_OP_FETCH), *back;

	ramkey_reply_set_error(rep, RAMKEY_ERR_LIMIT,
	    "RAM user %s already has two AccessKeys", "alice");
	rep->ram_code = xstrdup("LimitExceeded.User.AccessKey");
	back = round_trip_reply(rep);
	assert_int_equal(back->error, RAMKEY_ERR_LIMIT);
	assert_string_equal(
	    back->error_message, "RAM user alice already has two AccessKeys");
	assert_string_equal(back->ram_code, "LimitExceeded.User.AccessKey");
	assert_null(back->key.access_key_id);
	ramkey_reply_free(back);
	ramkey_reply_free(rep);
}

static void test_reply_round_trip_every_error_code(void **state)
{
	enum ramkey_op ops[] = {RAMKEY_OP_OPEN_SESSION, RAMKEY_OP_CLOSE_SESSION,
	    RAMKEY_OP_FETCH, RAMKEY_OP_REVOKE, RAMKEY_OP_STATUS,
	    RAMKEY_OP_SET_STATUS};
	int code;

	for (code = RAMKEY_ERR_MIN_; code < 0; code++) {
		struct ramkey_reply *rep, *back;

		rep = new_reply(ops[(size_t)-code % 6]);
		ramkey_reply_set_error(
		    rep, code, "failed: %s", ramkey_strerror(code));
		back = round_trip_reply(rep);
		assert_int_equal(back->error, code);
		assert_non_null(back->error_message);
		ramkey_reply_free(back);
		ramkey_reply_free(rep);
	}
}

static void test_reply_set_error_makes_one_printable_line(void **state)
{
	struct ramkey_reply *rep = new_reply(RAMKEY_OP_FETCH), *back;
	char *big = repeat('m', 2000);

	ramkey_reply_set_error(
	    rep, RAMKEY_ERR_RAM, "line one\nline\ttwo\x1b[0m");
	assert_string_equal(rep->error_message, "line one line two [0m");
	back = round_trip_reply(rep);
	assert_string_equal(back->error_message, rep->error_message);
	ramkey_reply_free(back);
	/* Long messages are cut to what a reply may carry. */
	ramkey_reply_set_error(rep, RAMKEY_ERR_RAM, "%s", big);
	assert_true(strlen(rep->error_message) < RAMKEY_MESSAGE_TEXT_MAX);
	back = round_trip_reply(rep);
	ramkey_reply_free(back);
	/* A non-negative "error" is never success on the wire. */
	ramkey_reply_set_error(rep, 5, "odd");
	assert_int_equal(rep->error, RAMKEY_ERR_INTERNAL);
	free(big);
	ramkey_reply_free(rep);
}

static void test_reply_decodes_protocol_example(void **state)
{
	static const char ex[] =
	    "{\"v\":1,\"op\":\"fetch\",\"ok\":true,\"key\":{\"access_key_id\":"
	    "\"LTAI5tExample00000000001\",\n \"create_date\":"
	    "\"2026-11-27T20:18:10Z\",\"status\":\"Active\",\"expires\":"
	    "1764310690,\n \"sealed_secret\":\"" SEALED_B64
	    "\"},\"secret_file\":\"/run/user/1000/ramkey/credentials.json\",\n"
	    " \"region_id\":\"cn-hangzhou\"}";
	struct ramkey_reply *rep = NULL;

	assert_int_equal(ramkey_reply_decode((const uint8_t *)ex, strlen(ex),
			     RAMKEY_OP_FETCH, &rep),
	    0);
	assert_string_equal(rep->key.access_key_id, KEY_ID);
	assert_int_equal(rep->key.expires, 1764310690);
	assert_int_equal(rep->key.sealed_len, 66);
	assert_string_equal(
	    rep->secret_file, "/run/user/1000/ramkey/credentials.json");
	ramkey_reply_free(rep);
}

static void test_error_names_round_trip(void **state)
{
	int code;

	assert_string_equal(ramkey_err_name(0), "ok");
	assert_string_equal(
	    ramkey_err_name(RAMKEY_ERR_LIMIT), "limit_exceeded");
	assert_string_equal(ramkey_err_name(RAMKEY_ERR_DENIED), "denied");
	assert_string_equal(ramkey_err_name(-9999), "internal");
	for (code = RAMKEY_ERR_MIN_; code <= 0; code++) {
		const char *name = ramkey_err_name(code);

		assert_int_equal(ramkey_err_from_name(name), code);
		assert_non_null(ramkey_strerror(code));
	}
	assert_int_equal(ramkey_err_from_name(NULL), RAMKEY_ERR_INTERNAL);
	assert_string_equal(ramkey_strerror(-9999), "unknown error");
}

/* ---- reply strictness ---- */

static void test_reply_op_mismatch_refused(void **state)
{
	assert_rep_ok("{\"v\":1,\"op\":\"set_status\",\"ok\":true}",
	    RAMKEY_OP_SET_STATUS);
	assert_rep_bad(
	    "{\"v\":1,\"op\":\"set_status\",\"ok\":true}", RAMKEY_OP_REVOKE);
	assert_rep_bad("{\"v\":1,\"op\":\"revoke\",\"ok\":true,\"revoked\":0}",
	    RAMKEY_OP_STATUS);
	assert_rep_bad("{\"v\":1,\"op\":\"fetch\",\"ok\":false,\"error\":"
		       "{\"code\":\"denied\",\"message\":\"no\"}}",
	    RAMKEY_OP_OPEN_SESSION);
	assert_rep_bad(
	    "{\"v\":1,\"op\":\"bogus\",\"ok\":true}", RAMKEY_OP_SET_STATUS);
}

static void test_reply_bad_version_is_version_error(void **state)
{
	assert_int_equal(rep_rc("{\"v\":2,\"op\":\"set_status\",\"ok\":true}",
			     RAMKEY_OP_SET_STATUS),
	    RAMKEY_ERR_VERSION);
	assert_int_equal(rep_rc("{\"v\":0,\"op\":\"set_status\",\"ok\":true}",
			     RAMKEY_OP_SET_STATUS),
	    RAMKEY_ERR_VERSION);
	assert_rep_bad(
	    "{\"op\":\"set_status\",\"ok\":true}", RAMKEY_OP_SET_STATUS);
}

static void test_reply_ok_flag_required_and_boolean(void **state)
{
	assert_rep_bad("{\"v\":1,\"op\":\"set_status\"}", RAMKEY_OP_SET_STATUS);
	assert_rep_bad(
	    "{\"v\":1,\"op\":\"set_status\",\"ok\":1}", RAMKEY_OP_SET_STATUS);
	assert_rep_bad("{\"v\":1,\"op\":\"set_status\",\"ok\":\"true\"}",
	    RAMKEY_OP_SET_STATUS);
	assert_rep_bad("{\"v\":1,\"op\":\"set_status\",\"ok\":null}",
	    RAMKEY_OP_SET_STATUS);
}

static void test_reply_unknown_field_refused(void **state)
{
	assert_rep_bad("{\"v\":1,\"op\":\"set_status\",\"ok\":true,\"x\":1}",
	    RAMKEY_OP_SET_STATUS);
	assert_rep_bad("{\"v\":1,\"op\":\"revoke\",\"ok\":true,\"revoked\":1,"
		       "\"session\":\"" TOKEN "\"}",
	    RAMKEY_OP_REVOKE);
	/* Fields of another op's reply are unknown here. */
	assert_rep_bad("{\"v\":1,\"op\":\"close_session\",\"ok\":true,"
		       "\"revoked\":1}",
	    RAMKEY_OP_CLOSE_SESSION);
	assert_int_equal(fetch_rep_with_key(key_sealed_json), 0);
	{
		char *j =
		    fmt("{\"v\":1,\"op\":\"fetch\",\"ok\":true,\"key\":%s,"
			"\"session\":\"" TOKEN "\"}",
			key_sealed_json);

		assert_rep_bad(j, RAMKEY_OP_FETCH);
		free(j);
		j = fmt(
		    "{\"v\":1,\"op\":\"open_session\",\"ok\":true,\"key\":%s,"
		    "\"session\":\"" TOKEN "\",\"secret_file\":\"/x/y\"}",
		    key_sealed_json);
		assert_rep_bad(j, RAMKEY_OP_OPEN_SESSION);
		free(j);
	}
}

static void test_reply_wrong_types_refused(void **state)
{
	assert_rep_bad("{\"v\":1,\"op\":\"close_session\",\"ok\":true,"
		       "\"last_session\":\"yes\"}",
	    RAMKEY_OP_CLOSE_SESSION);
	assert_rep_bad("{\"v\":1,\"op\":\"close_session\",\"ok\":true,"
		       "\"last_session\":1}",
	    RAMKEY_OP_CLOSE_SESSION);
	assert_rep_bad("{\"v\":1,\"op\":\"revoke\",\"ok\":true,\"revoked\":-1}",
	    RAMKEY_OP_REVOKE);
	assert_rep_bad("{\"v\":1,\"op\":\"revoke\",\"ok\":true,"
		       "\"revoked\":4294967296}",
	    RAMKEY_OP_REVOKE);
	assert_rep_bad(
	    "{\"v\":1,\"op\":\"revoke\",\"ok\":true,\"revoked\":1.0}",
	    RAMKEY_OP_REVOKE);
	assert_rep_bad(
	    "{\"v\":1,\"op\":\"revoke\",\"ok\":true,\"revoked\":\"1\"}",
	    RAMKEY_OP_REVOKE);
	assert_rep_bad("{\"v\":1,\"op\":\"status\",\"ok\":true,\"healthy\":1,"
		       "\"status\":{\"leases\":[],\"pending_revocations\":0,"
		       "\"ambiguous_keys\":[]}}",
	    RAMKEY_OP_STATUS);
	{
		char *j =
		    fmt("{\"v\":1,\"op\":\"fetch\",\"ok\":true,\"key\":%s,"
			"\"region_id\":5}",
			key_sealed_json);

		assert_rep_bad(j, RAMKEY_OP_FETCH);
		free(j);
		j = fmt("{\"v\":1,\"op\":\"fetch\",\"ok\":true,\"key\":%s,"
			"\"region_id\":\"cn\\nx\"}",
		    key_sealed_json);
		assert_rep_bad(j, RAMKEY_OP_FETCH);
		free(j);
		j = fmt("{\"v\":1,\"op\":\"fetch\",\"ok\":true,\"key\":%s,"
			"\"secret_file\":\"relative\"}",
		    key_sealed_json);
		assert_rep_bad(j, RAMKEY_OP_FETCH);
		free(j);
	}
	assert_int_equal(fetch_rep_with_key("[]"), RAMKEY_ERR_PROTOCOL);
	assert_int_equal(fetch_rep_with_key("\"key\""), RAMKEY_ERR_PROTOCOL);
}

static void test_reply_missing_required_parts_refused(void **state)
{
	/* open_session and fetch need a key; open_session a session. */
	assert_rep_bad(
	    "{\"v\":1,\"op\":\"fetch\",\"ok\":true}", RAMKEY_OP_FETCH);
	assert_rep_bad("{\"v\":1,\"op\":\"open_session\",\"ok\":true,"
		       "\"session\":\"" TOKEN "\"}",
	    RAMKEY_OP_OPEN_SESSION);
	{
		char *j = fmt("{\"v\":1,\"op\":\"open_session\",\"ok\":true,"
			      "\"key\":%s}",
		    key_sealed_json);

		assert_rep_bad(j, RAMKEY_OP_OPEN_SESSION);
		free(j);
		j = fmt("{\"v\":1,\"op\":\"open_session\",\"ok\":true,"
			"\"key\":%s,\"session\":\"" TOKEN "\"}",
		    key_sealed_json);
		assert_rep_ok(j, RAMKEY_OP_OPEN_SESSION);
		free(j);
		j = fmt("{\"v\":1,\"op\":\"open_session\",\"ok\":true,"
			"\"key\":%s,\"session\":\"" TOKEN "X\"}",
		    key_sealed_json);
		assert_rep_bad(j, RAMKEY_OP_OPEN_SESSION);
		free(j);
	}
	assert_rep_bad(
	    "{\"v\":1,\"op\":\"status\",\"ok\":true,\"healthy\":true}",
	    RAMKEY_OP_STATUS);
}

static void test_reply_error_with_unknown_code_refused(void **state)
{
	assert_int_equal(error_rep_with("{\"code\":\"denied\",\"message\":"
					"\"not yours\"}"),
	    0);
	assert_int_equal(error_rep_with("{\"code\":\"internal\",\"message\":"
					"\"bug\"}"),
	    0);
	/* A code this requester does not know is not "internal". */
	assert_int_equal(error_rep_with("{\"code\":\"no_such_code\","
					"\"message\":\"x\"}"),
	    RAMKEY_ERR_PROTOCOL);
	assert_int_equal(error_rep_with("{\"code\":\"DENIED\",\"message\":"
					"\"x\"}"),
	    RAMKEY_ERR_PROTOCOL);
	assert_int_equal(error_rep_with("{\"code\":\"\",\"message\":\"x\"}"),
	    RAMKEY_ERR_PROTOCOL);
	/* "ok" is not an error. */
	assert_int_equal(error_rep_with("{\"code\":\"ok\",\"message\":\"x\"}"),
	    RAMKEY_ERR_PROTOCOL);
}

static void test_reply_error_shape_is_strict(void **state)
{
	char *m, *j;

	assert_int_equal(error_rep_with("{\"code\":\"ram_error\",\"message\":"
					"\"x\",\"ram_code\":\"Throttling\"}"),
	    0);
	assert_int_equal(
	    error_rep_with("{\"code\":\"denied\"}"), RAMKEY_ERR_PROTOCOL);
	assert_int_equal(
	    error_rep_with("{\"message\":\"x\"}"), RAMKEY_ERR_PROTOCOL);
	assert_int_equal(error_rep_with("{}"), RAMKEY_ERR_PROTOCOL);
	assert_int_equal(error_rep_with("\"denied\""), RAMKEY_ERR_PROTOCOL);
	assert_int_equal(error_rep_with("{\"code\":\"denied\",\"message\":"
					"\"x\",\"detail\":1}"),
	    RAMKEY_ERR_PROTOCOL);
	assert_int_equal(error_rep_with("{\"code\":\"denied\",\"message\":"
					"\"a\\nb\"}"),
	    RAMKEY_ERR_PROTOCOL);
	assert_int_equal(error_rep_with("{\"code\":\"denied\",\"message\":"
					"\"x\",\"ram_code\":\"a\\u001bb\"}"),
	    RAMKEY_ERR_PROTOCOL);
	assert_int_equal(error_rep_with("{\"code\":5,\"message\":\"x\"}"),
	    RAMKEY_ERR_PROTOCOL);
	m = repeat('m', RAMKEY_MESSAGE_TEXT_MAX + 1);
	j = fmt("{\"code\":\"denied\",\"message\":\"%s\"}", m);
	assert_int_equal(error_rep_with(j), RAMKEY_ERR_PROTOCOL);
	free(j);
	free(m);
	/* ok:false without an error, or with success fields. */
	assert_rep_bad(
	    "{\"v\":1,\"op\":\"fetch\",\"ok\":false}", RAMKEY_OP_FETCH);
	j = fmt("{\"v\":1,\"op\":\"fetch\",\"ok\":false,\"error\":{\"code\":"
		"\"denied\",\"message\":\"x\"},\"key\":%s}",
	    key_sealed_json);
	assert_rep_bad(j, RAMKEY_OP_FETCH);
	free(j);
	/* ok:true with an error. */
	assert_rep_bad("{\"v\":1,\"op\":\"set_status\",\"ok\":true,\"error\":"
		       "{\"code\":\"denied\",\"message\":\"x\"}}",
	    RAMKEY_OP_SET_STATUS);
}

static void test_reply_key_without_secret_refused(void **state)
{
	assert_int_equal(fetch_rep_with_key("{\"access_key_id\":\"" KEY_ID
					    "\",\"create_date\":"
					    "\"2026-11-27T20:18:10Z\","
					    "\"status\":\"Active\"}"),
	    RAMKEY_ERR_PROTOCOL);
	/* An empty box or an empty PGP message is no secret either. */
	assert_int_equal(fetch_rep_with_key("{\"access_key_id\":\"" KEY_ID
					    "\",\"create_date\":"
					    "\"2026-11-27T20:18:10Z\","
					    "\"status\":\"Active\","
					    "\"sealed_secret\":\"\"}"),
	    RAMKEY_ERR_PROTOCOL);
	assert_int_equal(fetch_rep_with_key("{\"access_key_id\":\"" KEY_ID
					    "\",\"create_date\":"
					    "\"2026-11-27T20:18:10Z\","
					    "\"status\":\"Active\","
					    "\"encrypted_secret\":\"\","
					    "\"key_fingerprint\":\"" FPR "\"}"),
	    RAMKEY_ERR_PROTOCOL);
	/* A PGP secret needs its fingerprint. */
	assert_int_equal(fetch_rep_with_key("{\"access_key_id\":\"" KEY_ID
					    "\",\"create_date\":"
					    "\"2026-11-27T20:18:10Z\","
					    "\"status\":\"Active\","
					    "\"encrypted_secret\":\"aGk=\"}"),
	    RAMKEY_ERR_PROTOCOL);
	assert_int_equal(fetch_rep_with_key("{\"access_key_id\":\"" KEY_ID
					    "\",\"create_date\":"
					    "\"2026-11-27T20:18:10Z\","
					    "\"status\":\"Active\","
					    "\"encrypted_secret\":\"aGk=\","
					    "\"key_fingerprint\":\"" FPR "\"}"),
	    0);
	/* Sealed secret must be base64. */
	assert_int_equal(
	    fetch_rep_with_key(
		"{\"access_key_id\":\"" KEY_ID "\",\"create_date\":"
		"\"2026-11-27T20:18:10Z\","
		"\"status\":\"Active\","
		"\"sealed_secret\":\"not base64!\"}"),
	    RAMKEY_ERR_PROTOCOL);
}

static void test_reply_key_fields_validated(void **state)
{
	static const char *const bad[] = {
	    /* id, date, status missing in turn */
	    "{\"create_date\":\"2026-11-27T20:18:10Z\",\"status\":\"Active\","
	    "\"sealed_secret\":\"" SEALED_B64 "\"}",
	    "{\"access_key_id\":\"" KEY_ID "\",\"status\":\"Active\","
	    "\"sealed_secret\":\"" SEALED_B64 "\"}",
	    "{\"access_key_id\":\"" KEY_ID "\",\"create_date\":"
	    "\"2026-11-27T20:18:10Z\",\"sealed_secret\":\"" SEALED_B64 "\"}",
	    /* bad id, date, status, expires, unknown member */
	    "{\"access_key_id\":\"LTAI****0001\",\"create_date\":"
	    "\"2026-11-27T20:18:10Z\",\"status\":\"Active\","
	    "\"sealed_secret\":\"" SEALED_B64 "\"}",
	    "{\"access_key_id\":\"" KEY_ID "\",\"create_date\":"
	    "\"2026-02-31T20:18:10Z\",\"status\":\"Active\","
	    "\"sealed_secret\":\"" SEALED_B64 "\"}",
	    "{\"access_key_id\":\"" KEY_ID "\",\"create_date\":"
	    "\"2026-11-27 20:18:10\",\"status\":\"Active\","
	    "\"sealed_secret\":\"" SEALED_B64 "\"}",
	    "{\"access_key_id\":\"" KEY_ID "\",\"create_date\":"
	    "\"2026-11-27T20:18:10Z\",\"status\":\"active\","
	    "\"sealed_secret\":\"" SEALED_B64 "\"}",
	    "{\"access_key_id\":\"" KEY_ID "\",\"create_date\":"
	    "\"2026-11-27T20:18:10Z\",\"status\":\"Deleted\","
	    "\"sealed_secret\":\"" SEALED_B64 "\"}",
	    "{\"access_key_id\":\"" KEY_ID "\",\"create_date\":"
	    "\"2026-11-27T20:18:10Z\",\"status\":\"Active\",\"expires\":\"1\","
	    "\"sealed_secret\":\"" SEALED_B64 "\"}",
	    "{\"access_key_id\":\"" KEY_ID "\",\"create_date\":"
	    "\"2026-11-27T20:18:10Z\",\"status\":\"Active\","
	    "\"AccessKeySecret\":\"plain\","
	    "\"sealed_secret\":\"" SEALED_B64 "\"}",
	};
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (fetch_rep_with_key(bad[i]) == 0)
			print_error("accepted key %s\n", bad[i]);
		assert_int_equal(
		    fetch_rep_with_key(bad[i]), RAMKEY_ERR_PROTOCOL);
	}
}

static void test_reply_fingerprint_must_be_40_hex(void **state)
{
	static const char *const bad[] = {
	    "0123456789abcdef0123456789abcdef0123456",   /* 39 */
	    "0123456789abcdef0123456789abcdef012345678", /* 41 */
	    "0123456789ABCDEF0123456789abcdef01234567",  /* upper case */
	    "0123456789abcdef0123456789abcdef0123456g",
	    "0123 456789abcdef0123456789abcdef0123456",
	    "",
	};
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char *k =
		    fmt("{\"access_key_id\":\"" KEY_ID "\",\"create_date\":"
			"\"2026-11-27T20:18:10Z\",\"status\":\"Active\","
			"\"encrypted_secret\":\"aGk=\","
			"\"key_fingerprint\":\"%s\"}",
			bad[i]);

		assert_int_equal(fetch_rep_with_key(k), RAMKEY_ERR_PROTOCOL);
		free(k);
	}
}

static int status_rep_with_doc(const char *doc)
{
	char *j = fmt("{\"v\":1,\"op\":\"status\",\"ok\":true,\"healthy\":true,"
		      "\"status\":%s}",
	    doc);
	int r = rep_rc(j, RAMKEY_OP_STATUS);

	free(j);
	return r;
}

static void test_reply_status_document_shape_checked(void **state)
{
	assert_int_equal(status_rep_with_doc(status_doc), 0);
	assert_int_equal(status_rep_with_doc("{\"leases\":[],"
					     "\"pending_revocations\":0,"
					     "\"ambiguous_keys\":[]}"),
	    0);
	assert_int_equal(status_rep_with_doc("{\"pending_revocations\":0,"
					     "\"ambiguous_keys\":[]}"),
	    RAMKEY_ERR_PROTOCOL);
	assert_int_equal(status_rep_with_doc("{\"leases\":{},"
					     "\"pending_revocations\":0,"
					     "\"ambiguous_keys\":[]}"),
	    RAMKEY_ERR_PROTOCOL);
	assert_int_equal(status_rep_with_doc("{\"leases\":[1],"
					     "\"pending_revocations\":0,"
					     "\"ambiguous_keys\":[]}"),
	    RAMKEY_ERR_PROTOCOL);
	assert_int_equal(status_rep_with_doc("{\"leases\":[],"
					     "\"pending_revocations\":\"0\","
					     "\"ambiguous_keys\":[]}"),
	    RAMKEY_ERR_PROTOCOL);
	assert_int_equal(status_rep_with_doc("{\"leases\":[],"
					     "\"pending_revocations\":0}"),
	    RAMKEY_ERR_PROTOCOL);
	assert_int_equal(status_rep_with_doc("[]"), RAMKEY_ERR_PROTOCOL);
	assert_int_equal(status_rep_with_doc("null"), RAMKEY_ERR_PROTOCOL);
}

/* A status reply whose one lease holds `levels` nested arrays. */
static int status_rep_nested(size_t levels)
{
	char *open = repeat('[', levels), *close = repeat(']', levels), *doc;
	int r;

	doc = fmt("{\"leases\":[{\"x\":%s1%s}],\"pending_revocations\":0,"
		  "\"ambiguous_keys\":[]}",
	    open, close);
	r = status_rep_with_doc(doc);
	free(doc);
	free(open);
	free(close);
	return r;
}

static void test_reply_nesting_too_deep_refused(void **state)
{
	/* The reply object, its status, leases and lease are four levels:
	 * with 11 more the document is 15 deep, within the limit of 16. */
	assert_int_equal(status_rep_nested(11), 0);
	assert_int_equal(status_rep_nested(13), RAMKEY_ERR_PROTOCOL);
	assert_int_equal(status_rep_nested(100), RAMKEY_ERR_PROTOCOL);
	assert_int_equal(status_rep_nested(30000), RAMKEY_ERR_PROTOCOL);
}

static void test_reply_nul_and_bad_utf8_refused(void **state)
{
	static const char nul[] =
	    "{\"v\":1,\"op\":\"set_status\",\"ok\":true}\0";
	char *j;

	assert_int_equal(rep_rc_n(nul, sizeof(nul) - 1, RAMKEY_OP_SET_STATUS),
	    RAMKEY_ERR_PROTOCOL);
	assert_int_equal(error_rep_with("{\"code\":\"denied\",\"message\":"
					"\"a\\u0000b\"}"),
	    RAMKEY_ERR_PROTOCOL);
	assert_int_equal(error_rep_with("{\"code\":\"denied\",\"message\":"
					"\"a\xff\"}"),
	    RAMKEY_ERR_PROTOCOL);
	j = fmt("{\"v\":1,\"op\":\"fetch\",\"ok\":true,\"key\":%s,"
		"\"region_id\":\"cn\xc3\"}",
	    key_sealed_json);
	assert_rep_bad(j, RAMKEY_OP_FETCH);
	free(j);
	assert_rep_bad("{\"v\":1,\"op\":\"set_status\",\"ok\":true} x",
	    RAMKEY_OP_SET_STATUS);
	assert_int_equal(
	    rep_rc_n("", 0, RAMKEY_OP_SET_STATUS), RAMKEY_ERR_PROTOCOL);
}

/* The agent must answer before the caller gives up: a quarter of the
 * wait, at most 250 ms, is left for the answer to travel. */
static void test_request_timeout_leaves_a_margin(void **state)
{
	(void)state;
	assert_int_equal(ramkey_request_timeout_ms(10000), 9750);
	assert_int_equal(ramkey_request_timeout_ms(1000), 750);
	assert_int_equal(ramkey_request_timeout_ms(800), 600);
	assert_int_equal(ramkey_request_timeout_ms(4), 3);
	assert_int_equal(ramkey_request_timeout_ms(1), 1);
	assert_int_equal(ramkey_request_timeout_ms(0), 1);
	assert_int_equal(ramkey_request_timeout_ms(UINT64_C(1) << 40),
	    RAMKEY_TIMEOUT_MS_MAX);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_request_round_trip_open_session),
	    cmocka_unit_test(test_request_round_trip_close_session),
	    cmocka_unit_test(test_request_round_trip_fetch),
	    cmocka_unit_test(test_request_round_trip_revoke),
	    cmocka_unit_test(test_request_round_trip_revoke_all),
	    cmocka_unit_test(test_request_revoke_all_decoded),
	    cmocka_unit_test(test_request_revoke_all_strict),
	    cmocka_unit_test(test_request_encode_refuses_revoke_all_with_user),
	    cmocka_unit_test(test_request_round_trip_status),
	    cmocka_unit_test(test_request_round_trip_set_status),
	    cmocka_unit_test(test_request_decodes_protocol_example),
	    cmocka_unit_test(test_request_encode_refuses_unknown_op),
	    cmocka_unit_test(test_request_encode_refuses_oversized),
	    cmocka_unit_test(test_op_names),
	    cmocka_unit_test(test_request_metrics_has_no_fields),
	    cmocka_unit_test(test_request_unknown_field_refused),
	    cmocka_unit_test(test_request_wrong_type_refused),
	    cmocka_unit_test(test_request_missing_required_field_refused),
	    cmocka_unit_test(test_request_field_not_allowed_for_op_refused),
	    cmocka_unit_test(test_request_bad_version_is_version_error),
	    cmocka_unit_test(test_request_unknown_op_refused),
	    cmocka_unit_test(test_request_trailing_garbage_refused),
	    cmocka_unit_test(test_request_malformed_json_refused),
	    cmocka_unit_test(test_request_nul_inside_refused),
	    cmocka_unit_test(test_request_invalid_utf8_refused),
	    cmocka_unit_test(test_request_nesting_too_deep_refused),
	    cmocka_unit_test(test_request_over_long_values_refused),
	    cmocka_unit_test(test_request_body_over_frame_limit_refused),
	    cmocka_unit_test(test_request_bad_user_refused),
	    cmocka_unit_test(test_request_bad_path_refused),
	    cmocka_unit_test(test_request_bad_session_token_refused),
	    cmocka_unit_test(test_request_bad_key_id_refused),
	    cmocka_unit_test(test_request_bad_status_refused),
	    cmocka_unit_test(test_request_bad_ttl_refused),
	    cmocka_unit_test(test_request_bad_seal_key_refused),
	    cmocka_unit_test(test_reply_round_trip_open_session),
	    cmocka_unit_test(test_reply_round_trip_fetch),
	    cmocka_unit_test(test_reply_round_trip_close_session),
	    cmocka_unit_test(test_reply_round_trip_revoke),
	    cmocka_unit_test(test_reply_round_trip_status),
	    cmocka_unit_test(test_reply_status_needs_document_to_encode),
	    cmocka_unit_test(test_reply_round_trip_set_status),
	    cmocka_unit_test(test_reply_round_trip_metrics),
	    cmocka_unit_test(test_reply_round_trip_error),
	    cmocka_unit_test(test_reply_round_trip_every_error_code),
	    cmocka_unit_test(test_reply_set_error_makes_one_printable_line),
	    cmocka_unit_test(test_reply_decodes_protocol_example),
	    cmocka_unit_test(test_error_names_round_trip),
	    cmocka_unit_test(test_reply_op_mismatch_refused),
	    cmocka_unit_test(test_reply_bad_version_is_version_error),
	    cmocka_unit_test(test_reply_ok_flag_required_and_boolean),
	    cmocka_unit_test(test_reply_unknown_field_refused),
	    cmocka_unit_test(test_reply_wrong_types_refused),
	    cmocka_unit_test(test_reply_missing_required_parts_refused),
	    cmocka_unit_test(test_reply_error_with_unknown_code_refused),
	    cmocka_unit_test(test_reply_error_shape_is_strict),
	    cmocka_unit_test(test_reply_key_without_secret_refused),
	    cmocka_unit_test(test_reply_key_fields_validated),
	    cmocka_unit_test(test_reply_fingerprint_must_be_40_hex),
	    cmocka_unit_test(test_reply_status_document_shape_checked),
	    cmocka_unit_test(test_reply_nesting_too_deep_refused),
	    cmocka_unit_test(test_reply_nul_and_bad_utf8_refused),
	    cmocka_unit_test(test_request_timeout_leaves_a_margin),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
