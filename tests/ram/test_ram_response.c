/*
 * ram.response: parsing of RAM answers (success shapes, error bodies),
 * validation, message scrubbing, and what happens to a minted secret.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <malloc.h>
#include <sodium.h>

#include "ram_response.h"
#include "ramkey_err.h"

#if defined(__SANITIZE_ADDRESS__)
#define HAVE_FREE_HOOK 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define HAVE_FREE_HOOK 0
#endif
#endif
#ifndef HAVE_FREE_HOOK
#define HAVE_FREE_HOOK 1
#endif

#if HAVE_FREE_HOOK
/*
 * Interpose free() and realloc() (glibc): while `watch` is set, any block
 * released that still holds `watch` is counted. This is how the test sees
 * that json-c's copies and our own buffers were wiped before being freed.
 */
extern void __libc_free(void *);
extern void *__libc_realloc(void *, size_t);
static const char *watch;
static size_t watch_len;
static unsigned watch_hits;

static void check_block(void *p)
{
	size_t n;

	if (p == NULL || watch == NULL)
		return;
	n = malloc_usable_size(p);
	if (memmem(p, n, watch, watch_len) != NULL)
		watch_hits++;
}

void free(void *p)
{
	check_block(p);
	__libc_free(p);
}

void *realloc(void *p, size_t n)
{
	check_block(p);
	return __libc_realloc(p, n);
}
#endif

static const char create_doc[] =
    "{\"RequestId\":\"04F0F334-1335-436C-A1D7-6C044FE73368\","
    "\"AccessKey\":{\"Status\":\"Active\",\"AccessKeySecret\":"
    "\"PupkTg8jdmau1cXxYacgE736PJ****\",\"CreateDate\":"
    "\"2015-01-23T12:33:18Z\",\"AccessKeyId\":\"0wNEpMMlzy7s****\"}}";

static int parse(enum ram_action act, const char *body, struct ram_result *res)
{
	char detail[128];
	int r = ram_parse_success(
	    act, body, strlen(body), res, detail, sizeof(detail));

	if (r != 0)
		print_message("refused (%d): %s\n", r, detail);
	return r;
}

static int parse_create_with(const char *ak_members)
{
	struct ram_result res;
	char body[2048];
	int r;

	snprintf(body, sizeof(body), "{\"RequestId\":\"R\",\"AccessKey\":{%s}}",
	    ak_members);
	r = parse(RAM_ACT_CREATE_ACCESS_KEY, body, &res);
	ram_result_clear(&res);
	return r;
}

static void test_create(void **state)
{
	struct ram_result res;

	/* The documentation's example masks the id with '*', which is not an
	 * AccessKeyId character: refused, and nothing is left allocated. */
	assert_int_equal(parse(RAM_ACT_CREATE_ACCESS_KEY, create_doc, &res),
	    RAMKEY_ERR_PROTOCOL);
	assert_null(res.key.secret);
	assert_string_equal(res.request_id, "");
}

static void test_create_fields(void **state)
{
	struct ram_result res;
	const char *body =
	    "{\"RequestId\":\"04F0F334-1335-436C-A1D7-6C044FE73368\","
	    "\"AccessKey\":{\"Status\":\"Active\",\"AccessKeySecret\":"
	    "\"PupkTg8jdmau1cXxYacgE736PJabcd\",\"CreateDate\":"
	    "\"2015-01-23T12:33:18Z\",\"AccessKeyId\":\"LTAI0wNEpMMlzy7sabcd\"}"
	    "}\n";

	assert_int_equal(parse(RAM_ACT_CREATE_ACCESS_KEY, body, &res), 0);
	assert_string_equal(res.key.id, "LTAI0wNEpMMlzy7sabcd");
	assert_string_equal(res.key.status, "Active");
	assert_string_equal(res.key.create_date, "2015-01-23T12:33:18Z");
	assert_int_equal(res.key.create_time, 1422016398);
	assert_non_null(res.key.secret);
	assert_int_equal(res.key.secret_len, 30);
	assert_string_equal(res.key.secret, "PupkTg8jdmau1cXxYacgE736PJabcd");
	assert_null(res.keys);
	ram_result_clear(&res);
	assert_null(res.key.secret);
	ram_result_clear(NULL);
}

static void test_create_invalid(void **state)
{
	const char *ok_id = "\"AccessKeyId\":\"LTAIabc\",";
	const char *ok_st = "\"Status\":\"Active\",";
	const char *ok_dt = "\"CreateDate\":\"2015-01-23T12:33:18Z\",";
	const char *ok_se = "\"AccessKeySecret\":\"s3cr3t\"";
	char m[1024], longid[100];

	snprintf(m, sizeof(m), "%s%s%s%s", ok_id, ok_st, ok_dt, ok_se);
	assert_int_equal(parse_create_with(m), 0);
	/* missing members */
	snprintf(m, sizeof(m), "%s%s%s", ok_st, ok_dt, ok_se);
	assert_int_equal(parse_create_with(m), RAMKEY_ERR_PROTOCOL);
	snprintf(m, sizeof(m), "%s%s%s\"x\":1", ok_id, ok_st, ok_dt);
	assert_int_equal(parse_create_with(m), RAMKEY_ERR_PROTOCOL);
	/* wrong types */
	snprintf(
	    m, sizeof(m), "\"AccessKeyId\":12,%s%s%s", ok_st, ok_dt, ok_se);
	assert_int_equal(parse_create_with(m), RAMKEY_ERR_PROTOCOL);
	snprintf(m, sizeof(m), "%s%s%s\"AccessKeySecret\":null", ok_id, ok_st,
	    ok_dt);
	assert_int_equal(parse_create_with(m), RAMKEY_ERR_PROTOCOL);
	snprintf(m, sizeof(m), "%s\"Status\":true,%s%s", ok_id, ok_dt, ok_se);
	assert_int_equal(parse_create_with(m), RAMKEY_ERR_PROTOCOL);
	/* Status exactly Active|Inactive */
	snprintf(
	    m, sizeof(m), "%s\"Status\":\"active\",%s%s", ok_id, ok_dt, ok_se);
	assert_int_equal(parse_create_with(m), RAMKEY_ERR_PROTOCOL);
	snprintf(
	    m, sizeof(m), "%s\"Status\":\"Active \",%s%s", ok_id, ok_dt, ok_se);
	assert_int_equal(parse_create_with(m), RAMKEY_ERR_PROTOCOL);
	snprintf(m, sizeof(m), "%s\"Status\":\"Inactive\",%s%s", ok_id, ok_dt,
	    ok_se);
	assert_int_equal(parse_create_with(m), 0);
	/* key id: <= 64 of [A-Za-z0-9._-] */
	memset(longid, 'A', 64);
	longid[64] = '\0';
	snprintf(m, sizeof(m), "\"AccessKeyId\":\"%s\",%s%s%s", longid, ok_st,
	    ok_dt, ok_se);
	assert_int_equal(parse_create_with(m), 0);
	longid[64] = 'A';
	longid[65] = '\0';
	snprintf(m, sizeof(m), "\"AccessKeyId\":\"%s\",%s%s%s", longid, ok_st,
	    ok_dt, ok_se);
	assert_int_equal(parse_create_with(m), RAMKEY_ERR_PROTOCOL);
	snprintf(m, sizeof(m), "\"AccessKeyId\":\"LTAI/x\",%s%s%s", ok_st,
	    ok_dt, ok_se);
	assert_int_equal(parse_create_with(m), RAMKEY_ERR_PROTOCOL);
	snprintf(
	    m, sizeof(m), "\"AccessKeyId\":\"\",%s%s%s", ok_st, ok_dt, ok_se);
	assert_int_equal(parse_create_with(m), RAMKEY_ERR_PROTOCOL);
	snprintf(m, sizeof(m), "\"AccessKeyId\":\"a\\u0000b\",%s%s%s", ok_st,
	    ok_dt, ok_se);
	assert_int_equal(parse_create_with(m), RAMKEY_ERR_PROTOCOL);
	/* secret: no control characters, not empty */
	snprintf(m, sizeof(m), "%s%s%s\"AccessKeySecret\":\"\"", ok_id, ok_st,
	    ok_dt);
	assert_int_equal(parse_create_with(m), RAMKEY_ERR_PROTOCOL);
	snprintf(m, sizeof(m), "%s%s%s\"AccessKeySecret\":\"a\\nb\"", ok_id,
	    ok_st, ok_dt);
	assert_int_equal(parse_create_with(m), RAMKEY_ERR_PROTOCOL);
	/* bad dates */
	snprintf(m, sizeof(m), "%s%s\"CreateDate\":\"2015-01-23 12:33:18Z\",%s",
	    ok_id, ok_st, ok_se);
	assert_int_equal(parse_create_with(m), RAMKEY_ERR_PROTOCOL);
	/* AccessKey missing members, or not an object */
	assert_int_equal(parse_create_with(""), RAMKEY_ERR_PROTOCOL);
	{
		struct ram_result res;

		assert_int_equal(parse(RAM_ACT_CREATE_ACCESS_KEY,
				     "{\"AccessKey\":\"x\"}", &res),
		    RAMKEY_ERR_PROTOCOL);
		assert_int_equal(parse(RAM_ACT_CREATE_ACCESS_KEY,
				     "{\"RequestId\":\"R\"}", &res),
		    RAMKEY_ERR_PROTOCOL);
	}
}

static void test_dates(void **state)
{
	static const char *bad[] = {"", "2015-01-23T12:33:18",
	    "2015-01-23 12:33:18Z", "2015-01-23T12:33:18.000Z",
	    "2015-1-23T12:33:18Z", "2015-01-23T12:33:18z",
	    "2015-01-23T12:33:18+00:00", "2015-13-01T00:00:00Z",
	    "2015-00-01T00:00:00Z", "2015-01-00T00:00:00Z",
	    "2015-02-29T00:00:00Z", "2100-02-29T00:00:00Z",
	    "2015-04-31T00:00:00Z", "2015-01-23T24:00:00Z",
	    "2015-01-23T23:60:00Z", "2015-01-23T23:59:60Z",
	    "1969-12-31T23:59:59Z", "+015-01-23T12:33:18Z",
	    "2015-01-23T12:33:1 Z", "２015-01-23T12:33:18Z",
	    " 2015-01-23T12:33:18Z"};
	int64_t t = 42;
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		print_message("date %s\n", bad[i]);
		assert_int_equal(ram_parse_date(bad[i], strlen(bad[i]), &t),
		    RAMKEY_ERR_INVALID);
		assert_int_equal(t, 0);
	}
	assert_int_equal(ram_parse_date("2015-01-23T12:33:18Z", 20, &t), 0);
	assert_int_equal(t, 1422016398);
	assert_int_equal(ram_parse_date("1970-01-01T00:00:00Z", 20, &t), 0);
	assert_int_equal(t, 0);
	assert_int_equal(ram_parse_date("2016-02-29T23:59:59Z", 20, &t), 0);
	assert_int_equal(t, 1456790399);
	assert_int_equal(ram_parse_date("2000-02-29T00:00:00Z", 20, &t), 0);
	assert_int_equal(t, 951782400);
	/* length is explicit: trailing bytes beyond it are not looked at */
	assert_int_equal(ram_parse_date("2015-01-23T12:33:18Zjunk", 20, &t), 0);
	assert_int_equal(ram_parse_date("2015-01-23T12:33:18Zjunk", 21, &t),
	    RAMKEY_ERR_INVALID);
}

static void test_list(void **state)
{
	struct ram_result res;
	const char *two =
	    "{\"RequestId\":\"4B450CA1-36E8-4AA2-8461-86B42BF4CC4E\","
	    "\"AccessKeys\":{\"AccessKey\":["
	    "{\"Status\":\"Active\",\"AccessKeyId\":\"LTAI0wNEpMMlzy7s1111\","
	    "\"CreateDate\":\"2015-01-23T12:33:18Z\"},"
	    "{\"Status\":\"Inactive\",\"AccessKeyId\":\"WnIWUruvfaDT2222\","
	    "\"CreateDate\":\"2015-03-24T21:12:21Z\"}]}}";

	assert_int_equal(parse(RAM_ACT_LIST_ACCESS_KEYS, two, &res), 0);
	assert_string_equal(
	    res.request_id, "4B450CA1-36E8-4AA2-8461-86B42BF4CC4E");
	assert_int_equal(res.nkeys, 2);
	assert_string_equal(res.keys[0].id, "LTAI0wNEpMMlzy7s1111");
	assert_string_equal(res.keys[0].status, "Active");
	assert_int_equal(res.keys[0].create_time, 1422016398);
	assert_null(res.keys[0].secret);
	assert_string_equal(res.keys[1].id, "WnIWUruvfaDT2222");
	assert_string_equal(res.keys[1].status, "Inactive");
	assert_string_equal(res.keys[1].create_date, "2015-03-24T21:12:21Z");
	ram_result_clear(&res);

	/* empty and missing arrays are an empty list */
	assert_int_equal(
	    parse(RAM_ACT_LIST_ACCESS_KEYS,
		"{\"RequestId\":\"R\",\"AccessKeys\":{\"AccessKey\":[]}}",
		&res),
	    0);
	assert_int_equal(res.nkeys, 0);
	ram_result_clear(&res);
	assert_int_equal(parse(RAM_ACT_LIST_ACCESS_KEYS,
			     "{\"RequestId\":\"R\",\"AccessKeys\":{}}", &res),
	    0);
	assert_int_equal(res.nkeys, 0);
	ram_result_clear(&res);
	assert_int_equal(
	    parse(RAM_ACT_LIST_ACCESS_KEYS, "{\"RequestId\":\"R\"}", &res), 0);
	assert_int_equal(res.nkeys, 0);
	ram_result_clear(&res);
	assert_int_equal(parse(RAM_ACT_LIST_ACCESS_KEYS,
			     "{\"AccessKeys\":{\"AccessKey\":null}}", &res),
	    0);
	ram_result_clear(&res);

	/* wrong types */
	assert_int_equal(
	    parse(RAM_ACT_LIST_ACCESS_KEYS, "{\"AccessKeys\":[]}", &res),
	    RAMKEY_ERR_PROTOCOL);
	assert_int_equal(parse(RAM_ACT_LIST_ACCESS_KEYS,
			     "{\"AccessKeys\":{\"AccessKey\":{}}}", &res),
	    RAMKEY_ERR_PROTOCOL);
	assert_int_equal(parse(RAM_ACT_LIST_ACCESS_KEYS,
			     "{\"AccessKeys\":{\"AccessKey\":[1]}}", &res),
	    RAMKEY_ERR_PROTOCOL);
	assert_int_equal(
	    parse(RAM_ACT_LIST_ACCESS_KEYS,
		"{\"AccessKeys\":{\"AccessKey\":[{\"Status\":\"Active\","
		"\"AccessKeyId\":\"LTAIx\",\"CreateDate\":\"2015-02-30T00:00:"
		"00Z\"}]}}",
		&res),
	    RAMKEY_ERR_PROTOCOL);
	assert_null(res.keys);
	assert_int_equal(res.nkeys, 0);
}

static void test_user_and_plain(void **state)
{
	struct ram_result res;
	char body[512];

	assert_int_equal(
	    parse(RAM_ACT_GET_USER,
		"{\"RequestId\":\"2D69A58F-345C-4FDE-88E4-BF5189484043\","
		"\"User\":{\"UserId\":\"122748924538****\",\"UserName\":"
		"\"alice\",\"DisplayName\":\"Alice\",\"Comments\":\"x\","
		"\"CreateDate\":\"2015-01-23T12:33:18Z\"}}",
		&res),
	    0);
	assert_string_equal(res.user_name, "alice");
	assert_string_equal(res.user_id, "122748924538****");
	ram_result_clear(&res);
	assert_int_equal(
	    parse(RAM_ACT_GET_USER,
		"{\"RequestId\":\"2D69A58F\",\"User\":{\"UserId\":"
		"\"1227489245380000\",\"UserName\":\"alice.b-c_d\"}}",
		&res),
	    0);
	assert_string_equal(res.user_name, "alice.b-c_d");
	assert_string_equal(res.user_id, "1227489245380000");
	assert_string_equal(res.request_id, "2D69A58F");
	ram_result_clear(&res);
	assert_int_equal(parse(RAM_ACT_GET_USER, "{\"User\":{}}", &res),
	    RAMKEY_ERR_PROTOCOL);
	assert_int_equal(
	    parse(RAM_ACT_GET_USER, "{\"User\":{\"UserName\":\"a b\"}}", &res),
	    RAMKEY_ERR_PROTOCOL);
	assert_int_equal(parse(RAM_ACT_GET_USER, "{\"User\":\"alice\"}", &res),
	    RAMKEY_ERR_PROTOCOL);

	assert_int_equal(
	    parse(RAM_ACT_UPDATE_ACCESS_KEY,
		"{\"RequestId\":\"04F0F334-1335-436C-A1D7-6C044FE73368\"}",
		&res),
	    0);
	assert_string_equal(
	    res.request_id, "04F0F334-1335-436C-A1D7-6C044FE73368");
	ram_result_clear(&res);
	assert_int_equal(parse(RAM_ACT_DELETE_ACCESS_KEY, "{}", &res), 0);
	assert_string_equal(res.request_id, "");
	/* RequestId: a string of at most RAM_REQUEST_ID_MAX - 1 */
	assert_int_equal(
	    parse(RAM_ACT_DELETE_ACCESS_KEY, "{\"RequestId\":5}", &res),
	    RAMKEY_ERR_PROTOCOL);
	memset(body, 0, sizeof(body));
	strcpy(body, "{\"RequestId\":\"");
	memset(body + strlen(body), 'A', RAM_REQUEST_ID_MAX);
	strcat(body, "\"}");
	assert_int_equal(
	    parse(RAM_ACT_DELETE_ACCESS_KEY, body, &res), RAMKEY_ERR_PROTOCOL);
}

static void test_malformed(void **state)
{
	static const char *bad[] = {"", " ", "{", "}", "[]", "\"x\"", "1",
	    "null", "{\"RequestId\":\"R\"", "{\"RequestId\":\"R\"}x",
	    "{\"RequestId\":\"R\"}{}", "{'RequestId':'R'}",
	    "{\"RequestId\":\"R\",}", "{\"a\":\"\xff\"}",
	    "<html><body>502 Bad Gateway</body></html>",
	    "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]"
	    "]]]]]]]]]]]]]]",
	    "{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{"
	    "\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{}}}}}}}}}}"
	    "}}}}}}}}"};
	struct ram_result res;
	struct ram_error err;
	char *big;
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_not_equal(
		    parse(RAM_ACT_DELETE_ACCESS_KEY, bad[i], &res), 0);
		assert_int_not_equal(
		    ram_parse_error(bad[i], strlen(bad[i]), &err), 0);
	}
	assert_int_equal(ram_parse_success(
			     RAM_ACT_DELETE_ACCESS_KEY, NULL, 0, &res, NULL, 0),
	    RAMKEY_ERR_PROTOCOL);
	/* the size bound comes before parsing */
	big = malloc(RAM_BODY_MAX + 2);
	assert_non_null(big);
	memset(big, ' ', RAM_BODY_MAX + 1);
	big[0] = '{';
	big[RAM_BODY_MAX - 1] = '}';
	assert_int_equal(ram_parse_success(RAM_ACT_DELETE_ACCESS_KEY, big,
			     RAM_BODY_MAX, &res, NULL, 0),
	    0);
	assert_int_equal(ram_parse_success(RAM_ACT_DELETE_ACCESS_KEY, big,
			     RAM_BODY_MAX + 1, &res, NULL, 0),
	    RAMKEY_ERR_TOO_LARGE);
	assert_int_equal(
	    ram_parse_error(big, RAM_BODY_MAX + 1, &err), RAMKEY_ERR_TOO_LARGE);
	free(big);
}

static void test_error_bodies(void **state)
{
	const char *doc =
	    "{\"RequestId\":\"7463B73D-35CC-4D19-A010-6B8D65D242EF\","
	    "\"HostId\":\"ram.aliyuncs.com\",\"Code\":"
	    "\"InvalidParameter\",\"Message\":\"The specified "
	    "parameter \\\"Action or Version\\\" is not valid.\"}";
	const char *limit =
	    "{\"RequestId\":\"R1\",\"HostId\":\"ram.aliyuncs.com\",\"Code\":"
	    "\"LimitExceeded.User.AccessKey\",\"Message\":\"The access key "
	    "count of the user access keys beyond the current limits.\","
	    "\"Recommend\":\"https://api.aliyun.com/troubleshoot?q=x\"}";
	struct ram_error err;

	memset(&err, 0, sizeof(err));
	assert_int_equal(ram_parse_error(doc, strlen(doc), &err), 0);
	assert_string_equal(err.code, "InvalidParameter");
	assert_string_equal(err.message,
	    "The specified parameter \"Action or Version\" is not valid.");
	assert_string_equal(
	    err.request_id, "7463B73D-35CC-4D19-A010-6B8D65D242EF");
	assert_int_equal(ram_parse_error(limit, strlen(limit), &err), 0);
	assert_string_equal(err.code, "LimitExceeded.User.AccessKey");
	assert_string_equal(err.request_id, "R1");
	assert_null(strstr(err.message, "troubleshoot"));

	/* no Code, wrong types, bad Code */
	assert_int_equal(ram_parse_error("{\"Message\":\"x\"}", 15, &err),
	    RAMKEY_ERR_PROTOCOL);
	assert_string_equal(err.code, "");
	assert_string_equal(err.message, "");
	assert_int_equal(
	    ram_parse_error("{\"Code\":42}", 11, &err), RAMKEY_ERR_PROTOCOL);
	assert_int_equal(
	    ram_parse_error("{\"Code\":\"\"}", 11, &err), RAMKEY_ERR_PROTOCOL);
	assert_int_equal(ram_parse_error("{\"Code\":\"a b\"}", 14, &err),
	    RAMKEY_ERR_PROTOCOL);
	/* bad Message / RequestId types are ignored, the Code is kept */
	{
		const char *b = "{\"Code\":\"Throttling.User\",\"Message\":7,"
				"\"RequestId\":[1]}";

		assert_int_equal(ram_parse_error(b, strlen(b), &err), 0);
	}
	assert_string_equal(err.code, "Throttling.User");
	assert_string_equal(err.message, "");
	assert_string_equal(err.request_id, "");
}

static void test_code_too_long(void **state)
{
	struct ram_error err;
	char body[512];

	snprintf(body, sizeof(body), "{\"Code\":\"");
	memset(body + strlen(body), 'C', RAM_CODE_MAX);
	body[9 + RAM_CODE_MAX] = '\0';
	strcat(body, "\"}");
	assert_int_equal(
	    ram_parse_error(body, strlen(body), &err), RAMKEY_ERR_PROTOCOL);
	snprintf(body, sizeof(body), "{\"Code\":\"");
	memset(body + strlen(body), 'C', RAM_CODE_MAX - 1);
	body[9 + RAM_CODE_MAX - 1] = '\0';
	strcat(body, "\"}");
	assert_int_equal(ram_parse_error(body, strlen(body), &err), 0);
	assert_int_equal(strlen(err.code), RAM_CODE_MAX - 1);
}

static void test_signature_scrub(void **state)
{
	/* As RAM (and the emulator) answer: the server's string-to-sign,
	 * which carries our AccessKeyId, is echoed in the message. */
	const char *body =
	    "{\"RequestId\":\"A57F6F5A-0000-4B4B-9D8B-0E39B2D1D8E1\","
	    "\"Message\":\"Specified signature is not matched with our "
	    "calculation. server string to sign is:POST&%2F&AccessKeyId%3D"
	    "LTAI5tExampleAdminKeyId1%26Action%3DCreateAccessKey%26Format%"
	    "3DJSON\","
	    "\"HostId\":\"ram.aliyuncs.com\",\"Code\":"
	    "\"SignatureDoesNotMatch\","
	    "\"Recommend\":\"https://api.aliyun.com/troubleshoot?q="
	    "SignatureDoesNotMatch\"}";
	const char *v3 =
	    "{\"Code\":\"SignatureDoesNotMatch\",\"Message\":\"The request "
	    "signature does not conform to Aliyun standards. StringToSign: "
	    "ACS3-HMAC-SHA256\\nabcdef GET&%2F& LTAI5tExampleAdminKeyId1\"}";
	const char *other =
	    "{\"Code\":\"IncompleteSignature\",\"Message\":\"bad. The "
	    "String To Sign was: GET&%2F&AccessKeyId%3DLTAIxyz\"}";
	struct ram_error err;

	assert_int_equal(ram_parse_error(body, strlen(body), &err), 0);
	assert_string_equal(err.code, "SignatureDoesNotMatch");
	print_message("scrubbed: [%s]\n", err.message);
	assert_string_equal(err.message,
	    "Specified signature is not matched with our calculation. server");
	assert_null(strcasestr(err.message, "string to sign"));
	assert_null(strstr(err.message, "GET&"));
	assert_null(strstr(err.message, "POST&"));
	assert_null(strstr(err.message, "LTAI5tExampleAdminKeyId1"));
	assert_null(strstr(err.message, "%2F"));

	assert_int_equal(ram_parse_error(v3, strlen(v3), &err), 0);
	print_message("scrubbed: [%s]\n", err.message);
	assert_string_equal(err.message,
	    "The request signature does not conform to Aliyun standards.");
	assert_null(strstr(err.message, "LTAI5tExampleAdminKeyId1"));

	assert_int_equal(ram_parse_error(other, strlen(other), &err), 0);
	assert_string_equal(err.message, "bad. The");
	assert_null(strstr(err.message, "LTAIxyz"));
}

static void test_scrub_text(void **state)
{
	char out[RAM_MESSAGE_MAX], small[8], big[2000];
	size_t i;

	ram_scrub_message("X",
	    "a\nb\tc\x01"
	    "d\x7f"
	    "e\r\n",
	    11, out, sizeof(out));
	assert_string_equal(out, "a b c d e");
	ram_scrub_message("X", "  lead  and   runs  ", 20, out, sizeof(out));
	assert_string_equal(out, "lead and runs");
	/* invalid UTF-8 is replaced, valid kept */
	ram_scrub_message(
	    "X", "caf\xc3\xa9 \xff\xfe ok \xe4\xb8", 14, out, sizeof(out));
	assert_string_equal(out, "caf\xc3\xa9 ok");
	/* truncation on a character boundary */
	ram_scrub_message("X", "\xe4\xb8\xad\xe4\xb8\xad\xe4\xb8\xad", 9, small,
	    sizeof(small));
	assert_string_equal(small, "\xe4\xb8\xad\xe4\xb8\xad");
	for (i = 0; i + 3 <= sizeof(big); i += 3)
		memcpy(big + i, "\xe4\xb8\xad", 3);
	ram_scrub_message("X", big, i, out, sizeof(out));
	assert_true(strlen(out) < RAM_MESSAGE_MAX);
	assert_int_equal(strlen(out) % 3, 0);
	/* the phrase is cut wherever it is, whatever the code */
	ram_scrub_message(
	    "NoPermission", "x STRING to SIGN y", 18, out, sizeof(out));
	assert_string_equal(out, "x");
	ram_scrub_message(NULL, NULL, 0, out, sizeof(out));
	assert_string_equal(out, "");
}

static void test_long_message(void **state)
{
	struct ram_error err;
	char *body = malloc(10000);
	size_t n;

	assert_non_null(body);
	strcpy(body, "{\"Code\":\"InternalError\",\"Message\":\"");
	n = strlen(body);
	memset(body + n, 'm', 5000);
	strcpy(body + n + 5000, "\"}");
	assert_int_equal(ram_parse_error(body, strlen(body), &err), 0);
	assert_int_equal(strlen(err.message), RAM_MESSAGE_MAX - 1);
	free(body);
}

static void test_retryable(void **state)
{
	assert_true(ram_code_retryable("Throttling"));
	assert_true(ram_code_retryable("Throttling.User"));
	assert_true(ram_code_retryable("Throttling.Api"));
	assert_true(ram_code_retryable("ServiceUnavailable"));
	assert_true(ram_code_retryable("InternalError"));
	assert_false(ram_code_retryable("ThrottlingX"));
	assert_false(ram_code_retryable("LimitExceeded.User.AccessKey"));
	assert_false(ram_code_retryable("EntityNotExist.User"));
	assert_false(ram_code_retryable("EntityNotExist.User.AccessKey"));
	assert_false(ram_code_retryable("NoPermission"));
	assert_false(ram_code_retryable("SignatureDoesNotMatch"));
	assert_false(ram_code_retryable("InvalidParameter"));
	assert_false(ram_code_retryable(""));
	assert_false(ram_code_retryable(NULL));
}

/*
 * The secret of a CreateAccessKey answer: returned in sodium memory, and
 * no freed block (json-c's string, its tokener buffer, our buffers) still
 * holds it. Shell-special characters force JSON escapes, so the tokener
 * assembles the string in pieces.
 */
static void test_secret_not_kept(void **state)
{
	const char *secret = "Zq9'\"$\\`x !*&;#%Zq9SECRETMARK";
	const char *json_secret = "Zq9'\\\"$\\\\`x !*&;#%Zq9SECRETMARK";
	struct ram_result res;
	char body[4096];
	int i, n;

	n = snprintf(body, sizeof(body),
	    "{\"RequestId\":\"R\",\"Padding\":\"%0512d\",\"AccessKey\":{"
	    "\"Status\":\"Active\",\"AccessKeySecret\":\"%s\","
	    "\"CreateDate\":\"2015-01-23T12:33:18Z\","
	    "\"AccessKeyId\":\"LTAIabcdefghij\"},\"Tail\":[",
	    0, json_secret);
	for (i = 0; i < 50; i++)
		n += snprintf(body + n, sizeof(body) - (size_t)n, "%s\"pad%d\"",
		    i ? "," : "", i);
	snprintf(body + n, sizeof(body) - (size_t)n, "]}");

#if HAVE_FREE_HOOK
	watch = "SECRETMARK";
	watch_len = strlen(watch);
	watch_hits = 0;
#endif
	assert_int_equal(parse(RAM_ACT_CREATE_ACCESS_KEY, body, &res), 0);
#if HAVE_FREE_HOOK
	watch = NULL;
	assert_int_equal(watch_hits, 0);
#else
	print_message("free() hook unavailable under ASan: partial check\n");
#endif
	assert_string_equal(res.key.secret, secret);
	assert_int_equal(res.key.secret_len, strlen(secret));
	/* nothing else in the result carries it */
	{
		struct ram_result copy = res;

		copy.key.secret = NULL;
		assert_null(memmem(&copy, sizeof(copy), "SECRETMARK", 10));
	}
	ram_result_clear(&res);

	/* the same when validation fails after the secret was seen */
	n = snprintf(body, sizeof(body),
	    "{\"AccessKey\":{\"AccessKeySecret\":\"%s\",\"Status\":\"Active\","
	    "\"CreateDate\":\"bad\",\"AccessKeyId\":\"LTAIx\"}}",
	    json_secret);
#if HAVE_FREE_HOOK
	watch = "SECRETMARK";
	watch_hits = 0;
#endif
	assert_int_equal(
	    parse(RAM_ACT_CREATE_ACCESS_KEY, body, &res), RAMKEY_ERR_PROTOCOL);
#if HAVE_FREE_HOOK
	watch = NULL;
	assert_int_equal(watch_hits, 0);
#endif
	assert_null(res.key.secret);
	/* and an error body that (oddly) carries one never copies it */
	{
		struct ram_error err;

		n = snprintf(body, sizeof(body),
		    "{\"Code\":\"InternalError\",\"Message\":\"x\","
		    "\"AccessKeySecret\":\"%s\"}",
		    json_secret);
#if HAVE_FREE_HOOK
		watch = "SECRETMARK";
		watch_hits = 0;
#endif
		assert_int_equal(ram_parse_error(body, (size_t)n, &err), 0);
#if HAVE_FREE_HOOK
		watch = NULL;
		assert_int_equal(watch_hits, 0);
#endif
		assert_null(memmem(&err, sizeof(err), "SECRETMARK", 10));
	}
}

/* The instance metadata service's credential document. */
static const char imds_doc[] =
    "{\n  \"AccessKeyId\" : \"STS.NUgYrLnoC37mZZCNnAbez\",\n"
    "  \"AccessKeySecret\" : \"IMDSSECRETMARKabcdefghij\",\n"
    "  \"Expiration\" : \"2026-01-02T03:04:05Z\",\n"
    "  \"SecurityToken\" : \"CAISIMDSTOKENMARK+/=\",\n"
    "  \"LastUpdated\" : \"2026-01-01T21:04:05Z\",\n"
    "  \"Code\" : \"Success\"\n}";

static int parse_imds(const char *body, struct ram_result *res, char *detail,
    size_t n)
{
	return ram_parse_imds_credential(body, strlen(body), res, detail, n);
}

static void test_imds_credential(void **state)
{
	struct ram_result res;
	char detail[128], body[1024];
	size_t i;
	static const struct {
		const char *from, *to, *detail;
	} bad[] = {
		{ "\"Success\"", "\"Failed\"", "Code is Failed" },
		{ "\"Code\" : \"Success\"", "\"Kode\" : \"Success\"", "Code" },
		{ "2026-01-02T03:04:05Z", "2026-01-02 03:04:05", "Expiration" },
		{ "STS.NUgYrLnoC37mZZCNnAbez", "STS NUg", "AccessKeyId" },
		{ "\"CAISIMDSTOKENMARK+/=\"", "7", "SecurityToken" },
		{ "\"IMDSSECRETMARKabcdefghij\"", "\"\"", "AccessKeySecret" },
	};

#if HAVE_FREE_HOOK
	watch = "SECRETMARK";
	watch_len = strlen(watch);
	watch_hits = 0;
#endif
	assert_int_equal(parse_imds(imds_doc, &res, detail, sizeof(detail)), 0);
#if HAVE_FREE_HOOK
	watch = NULL;
	assert_int_equal(watch_hits, 0);
#endif
	assert_string_equal(res.sts.id, "STS.NUgYrLnoC37mZZCNnAbez");
	assert_string_equal(res.sts.secret, "IMDSSECRETMARKabcdefghij");
	assert_int_equal(res.sts.secret_len, 24);
	assert_string_equal(res.sts.token, "CAISIMDSTOKENMARK+/=");
	assert_int_equal(res.sts.token_len, 20);
	assert_string_equal(res.sts.expiration, "2026-01-02T03:04:05Z");
	assert_int_equal(res.sts.expiration_time, 1767323045);
	/* secret and token in sodium memory */
	assert_int_equal(sodium_mprotect_readonly((void *)res.sts.secret), 0);
	assert_int_equal(sodium_mprotect_readwrite((void *)res.sts.secret), 0);
	ram_result_clear(&res);
	assert_null(res.sts.secret);
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		const char *at = strstr(imds_doc, bad[i].from);

		assert_non_null(at);
		snprintf(body, sizeof(body), "%.*s%s%s", (int)(at - imds_doc),
		    imds_doc, bad[i].to, at + strlen(bad[i].from));
#if HAVE_FREE_HOOK
		watch = "SECRETMARK";
		watch_hits = 0;
#endif
		assert_int_equal(parse_imds(body, &res, detail, sizeof(detail)),
		    RAMKEY_ERR_PROTOCOL);
#if HAVE_FREE_HOOK
		watch = NULL;
		assert_int_equal(watch_hits, 0);
#endif
		assert_null(res.sts.secret);
		assert_null(res.sts.token);
		if (strstr(detail, bad[i].detail) == NULL)
			print_error("\"%s\" lacks \"%s\"\n", detail,
			    bad[i].detail);
		assert_non_null(strstr(detail, bad[i].detail));
		assert_null(strstr(detail, "MARK"));
	}
	assert_int_equal(parse_imds("", &res, detail, sizeof(detail)),
	    RAMKEY_ERR_PROTOCOL);
	assert_int_equal(parse_imds("[]", &res, NULL, 0), RAMKEY_ERR_PROTOCOL);
	assert_int_equal(parse_imds("ramkey-instance", &res, detail,
	    sizeof(detail)), RAMKEY_ERR_PROTOCOL);
}

static void test_action_names(void **state)
{
	assert_string_equal(
	    ram_action_name(RAM_ACT_CREATE_ACCESS_KEY), "CreateAccessKey");
	assert_string_equal(
	    ram_action_name(RAM_ACT_UPDATE_ACCESS_KEY), "UpdateAccessKey");
	assert_string_equal(
	    ram_action_name(RAM_ACT_DELETE_ACCESS_KEY), "DeleteAccessKey");
	assert_string_equal(
	    ram_action_name(RAM_ACT_LIST_ACCESS_KEYS), "ListAccessKeys");
	assert_string_equal(ram_action_name(RAM_ACT_GET_USER), "GetUser");
	assert_true(ram_key_id_valid("LTAI.a_b-c", 10));
	assert_false(ram_key_id_valid("LTAI a", 6));
	assert_true(ram_user_name_valid("alice", 5));
	assert_false(ram_user_name_valid("", 0));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_create),
	    cmocka_unit_test(test_create_fields),
	    cmocka_unit_test(test_create_invalid),
	    cmocka_unit_test(test_dates),
	    cmocka_unit_test(test_list),
	    cmocka_unit_test(test_user_and_plain),
	    cmocka_unit_test(test_malformed),
	    cmocka_unit_test(test_error_bodies),
	    cmocka_unit_test(test_code_too_long),
	    cmocka_unit_test(test_signature_scrub),
	    cmocka_unit_test(test_scrub_text),
	    cmocka_unit_test(test_long_message),
	    cmocka_unit_test(test_retryable),
	    cmocka_unit_test(test_secret_not_kept),
	    cmocka_unit_test(test_imds_credential),
	    cmocka_unit_test(test_action_names),
	};

	if (sodium_init() < 0)
		return 1;
	return cmocka_run_group_tests_name("ram.response", tests, NULL, NULL);
}
