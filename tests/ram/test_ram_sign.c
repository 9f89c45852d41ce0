/*
 * ram.sign: RFC 3986 encoding and both signature methods against every
 * vector in tests/vectors/signature-v1.json and signature-v3.json (loaded
 * at run time), plus the SDK and documentation cases of ram-api.md.
 * Usage: ram.sign [VECTORS_DIR] (default: the source tree's).
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

#include "ram_sign.h"
#include "ramkey_err.h"

#ifndef RAMKEY_VECTORS_DIR
#define RAMKEY_VECTORS_DIR "tests/vectors"
#endif

static const char *vectors_dir = RAMKEY_VECTORS_DIR;

static struct json_object *load_vectors(const char *name)
{
	char path[4096];
	struct json_object *root, *v;

	snprintf(path, sizeof(path), "%s/%s", vectors_dir, name);
	root = json_object_from_file(path);
	if (root == NULL)
		fail_msg("cannot load %s", path);
	assert_true(json_object_object_get_ex(root, "vectors", &v));
	assert_true(json_object_is_type(v, json_type_array));
	assert_true(json_object_array_length(v) > 0);
	return root;
}

static const char *jstr(struct json_object *o, const char *key)
{
	struct json_object *v;

	if (!json_object_object_get_ex(o, key, &v))
		fail_msg("vector lacks %s", key);
	return json_object_get_string(v);
}

/* An object's members as ram_params (pointers into the object). */
static size_t to_params(struct json_object *o, struct ram_param *p, size_t max)
{
	size_t n = 0;

	json_object_object_foreach(o, k, v)
	{
		assert_true(n < max);
		p[n].name = k;
		p[n].value = json_object_get_string(v);
		n++;
	}
	return n;
}

static void assert_enc(const char *in, const char *want)
{
	char *out = NULL;

	assert_int_equal(ram_percent_encode(in, strlen(in), &out), 0);
	assert_string_equal(out, want);
	free(out);
}

static void test_percent_encoding(void **state)
{
	char *out = NULL;
	unsigned c;

	/* ram-api.md §2: pop-core and darabonba cases */
	assert_enc("str'str", "str%27str");
	assert_enc("str(str", "str%28str");
	assert_enc("str)str", "str%29str");
	assert_enc("str*str", "str%2Astr");
	assert_enc(" ~/*-+", "%20~%2F%2A-%2B");
	assert_enc("!", "%21");
	assert_enc("a b", "a%20b");
	assert_enc("2016-02-23T12:46:24Z", "2016-02-23T12%3A46%3A24Z");
	assert_enc("test@example.onaliyun.com", "test%40example.onaliyun.com");
	/* UTF-8 bytes, uppercase hex */
	assert_enc("中", "%E4%B8%AD");
	assert_enc("café", "caf%C3%A9");
	assert_enc("😀", "%F0%9F%98%80");
	assert_enc("", "");
	assert_enc("AZaz09-_.~", "AZaz09-_.~");
	/* every other byte is escaped */
	for (c = 1; c < 256; c++) {
		char in[2] = {(char)c, 0}, want[4];
		bool keep = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
		    (c >= '0' && c <= '9') || c == '-' || c == '_' ||
		    c == '.' || c == '~';

		if (keep)
			snprintf(want, sizeof(want), "%c", c);
		else
			snprintf(want, sizeof(want), "%%%02X", c);
		assert_enc(in, want);
	}
	/* embedded NUL with an explicit length */
	assert_int_equal(ram_percent_encode("a\0b", 3, &out), 0);
	assert_string_equal(out, "a%00b");
	free(out);
}

static void test_canonical_query(void **state)
{
	struct ram_param p[] = {{"test", " ~/*-+"}};
	struct ram_param sorted[] = {{"Action", "x"}, {"AccessKeyId", "y"},
	    {"b", "1"}, {"Z", "2"}, {"skipped", NULL}};
	struct ram_param dup[] = {{"a", "1"}, {"a", "2"}};
	struct ram_param empty[] = {{"UserName", ""}};
	char *out = NULL;

	assert_int_equal(ram_canonical_query(p, 1, &out), 0);
	assert_string_equal(out, "test=%20~%2F%2A-%2B");
	free(out);
	/* byte order: "AccessKeyId" < "Action", uppercase before lowercase */
	assert_int_equal(ram_canonical_query(sorted, 5, &out), 0);
	assert_string_equal(out, "AccessKeyId=y&Action=x&Z=2&b=1");
	free(out);
	assert_int_equal(ram_canonical_query(dup, 2, &out), RAMKEY_ERR_INVALID);
	assert_null(out);
	assert_int_equal(ram_canonical_query(empty, 1, &out), 0);
	assert_string_equal(out, "UserName=");
	free(out);
	assert_int_equal(ram_canonical_query(NULL, 0, &out), 0);
	assert_string_equal(out, "");
	free(out);
}

static void test_v1_vectors(void **state)
{
	struct json_object *root = load_vectors("signature-v1.json"), *vecs;
	size_t i, n;

	json_object_object_get_ex(root, "vectors", &vecs);
	n = json_object_array_length(vecs);
	for (i = 0; i < n; i++) {
		struct json_object *v = json_object_array_get_idx(vecs, i);
		struct json_object *params, *wire, *body = NULL, *query = NULL;
		struct ram_param p[32];
		char sig[RAM_V1_SIGNATURE_LEN + 1],
		    sig2[RAM_V1_SIGNATURE_LEN + 1];
		char *cq = NULL, *sts = NULL, *wired = NULL;
		const char *secret = jstr(v, "secret"),
			   *hk = jstr(v, "hmac_key");
		size_t np;

		print_message("v1 vector %s\n", jstr(v, "name"));
		assert_true(json_object_object_get_ex(v, "params", &params));
		np = to_params(params, p, 32);
		assert_int_equal(ram_canonical_query(p, np, &cq), 0);
		assert_string_equal(cq, jstr(v, "canonicalized_query"));
		assert_int_equal(
		    ram_v1_string_to_sign(jstr(v, "method"), cq, &sts), 0);
		assert_string_equal(sts, jstr(v, "string_to_sign"));
		assert_int_equal(
		    ram_v1_signature(sts, secret, strlen(secret), sig), 0);
		assert_string_equal(sig, jstr(v, "signature"));
		assert_int_equal(ram_v1_hmac(sts, hk, strlen(hk), sig2), 0);
		assert_string_equal(sig2, jstr(v, "signature"));
		/* What goes on the wire: the query or form body, Signature
		 * last and percent-encoded like every other value. */
		assert_true(json_object_object_get_ex(v, "wire", &wire));
		json_object_object_get_ex(wire, "body", &body);
		json_object_object_get_ex(wire, "query", &query);
		{
			struct ram_buf b = {0};

			assert_int_equal(ram_buf_appends(&b, cq), 0);
			assert_int_equal(ram_buf_appends(&b, "&Signature="), 0);
			assert_int_equal(
			    ram_buf_append_enc(&b, sig, strlen(sig)), 0);
			assert_int_equal(ram_buf_steal(&b, &wired), 0);
			ram_buf_free(&b);
		}
		assert_string_equal(
		    wired, json_object_get_string(body != NULL ? body : query));
		free(wired);
		free(cq);
		free(sts);
	}
	json_object_put(root);
}

static void test_v3_vectors(void **state)
{
	struct json_object *root = load_vectors("signature-v3.json"), *vecs;
	size_t i, n;

	json_object_object_get_ex(root, "vectors", &vecs);
	n = json_object_array_length(vecs);
	for (i = 0; i < n; i++) {
		struct json_object *v = json_object_array_get_idx(vecs, i);
		struct json_object *in, *exp, *q, *h;
		struct ram_param qp[16], hp[16];
		struct ram_v3_request req;
		struct ram_v3_signed s;
		char hash[RAM_SHA256_HEX_LEN + 1];
		const char *secret, *body;

		print_message("v3 vector %s\n", jstr(v, "name"));
		assert_true(json_object_object_get_ex(v, "input", &in));
		assert_true(json_object_object_get_ex(v, "expected", &exp));
		assert_true(json_object_object_get_ex(in, "query", &q));
		assert_true(json_object_object_get_ex(in, "headers", &h));
		body = jstr(in, "body");
		assert_int_equal(ram_sha256_hex(body, strlen(body), hash), 0);
		assert_string_equal(hash, jstr(exp, "hashed_payload"));
		memset(&req, 0, sizeof(req));
		req.method = jstr(in, "method");
		req.uri = jstr(in, "pathname");
		req.query = qp;
		req.nquery = to_params(q, qp, 16);
		req.headers = hp;
		req.nheaders = to_params(h, hp, 16);
		req.hashed_payload = hash;
		req.access_key_id = jstr(in, "access_key_id");
		secret = jstr(in, "secret");
		assert_int_equal(
		    ram_v3_sign(&req, secret, strlen(secret), &s), 0);
		assert_string_equal(
		    s.canonical_request, jstr(exp, "canonical_request"));
		assert_string_equal(
		    s.signed_headers, jstr(exp, "signed_headers"));
		assert_string_equal(
		    s.string_to_sign, jstr(exp, "string_to_sign"));
		assert_string_equal(s.signature, jstr(exp, "signature"));
		assert_string_equal(
		    s.authorization, jstr(exp, "authorization"));
		/* no space after the commas */
		assert_null(strstr(s.authorization, ", "));
		ram_v3_signed_clear(&s);
	}
	json_object_put(root);
}

/* ram-api.md §2 C: SDK unit-test vectors. */
static void test_v1_sdk_cases(void **state)
{
	struct ram_param ok[] = {{"test", "ok"}};
	struct ram_param qb[] = {{"query", "test"}, {"body", "test"}};
	char sig[RAM_V1_SIGNATURE_LEN + 1];
	char *cq = NULL, *sts = NULL;

	assert_int_equal(ram_canonical_query(ok, 1, &cq), 0);
	assert_int_equal(ram_v1_string_to_sign("", cq, &sts), 0);
	assert_string_equal(sts, "&%2F&test%3Dok");
	assert_int_equal(ram_v1_signature(sts, "accessKeySecret", 15, sig), 0);
	assert_string_equal(sig, "jHx/oHoHNrbVfhncHEvPdHXZwHU=");
	free(sts);
	assert_int_equal(ram_v1_string_to_sign("GET", cq, &sts), 0);
	assert_int_equal(ram_v1_signature(sts, "accessKeySecret", 15, sig), 0);
	assert_string_equal(sig, "hs563c5SfRoGIFjN3KNTp5zjTNc=");
	free(sts);
	free(cq);

	assert_int_equal(ram_canonical_query(qb, 2, &cq), 0);
	assert_int_equal(ram_v1_string_to_sign("GET", cq, &sts), 0);
	assert_string_equal(sts, "GET&%2F&body%3Dtest%26query%3Dtest");
	assert_int_equal(ram_v1_signature(sts, "secret", 6, sig), 0);
	assert_string_equal(sig, "XlUyV4sXjOuX5FnjUz9IF9tm5rU=");
	free(sts);
	free(cq);

	/* raw HMAC primitive, key used as is */
	assert_int_equal(ram_v1_hmac("source", "secret", 6, sig), 0);
	assert_string_equal(sig, "Jv4yi8SobFhg5t1C7nWLbhBSFZQ=");
	assert_int_equal(ram_v1_hmac("中文unicode", "secret", 6, sig), 0);
	assert_string_equal(sig, "szlfHs3WVaO/HgY3Cg7/uyXDaRw=");
}

/* ram-api.md §3: the documentation's RunInstances vector and the Go SDK's
 * duplicate-header case. */
static void test_v3_doc_cases(void **state)
{
	struct ram_param q[] = {
	    {"ImageId", "win2019_1809_x64_dtc_zh-cn_40G_alibase_20230811.vhd"},
	    {"RegionId", "cn-shanghai"}};
	struct ram_param h[] = {{"host", "ecs.cn-shanghai.aliyuncs.com"},
	    {"x-acs-action", "RunInstances"}, {"x-acs-version", "2014-05-26"},
	    {"x-acs-date", "2023-10-26T10:22:32Z"},
	    {"x-acs-signature-nonce", "3156853299f313e23d1673dc12e1703d"},
	    {"x-acs-content-sha256", RAM_EMPTY_SHA256},
	    {"Accept", "application/json"}, {"User-Agent", "x"}};
	struct ram_param gq[] = {{"test", "ok"}, {"empty", ""}};
	struct ram_param gh[] = {
	    {"x-acs-test", "http"}, {"x-acs-TEST", " https "}};
	struct ram_v3_request req;
	struct ram_v3_signed s;

	memset(&req, 0, sizeof(req));
	req.method = "POST";
	req.uri = "/";
	req.query = q;
	req.nquery = 2;
	req.headers = h;
	req.nheaders = 8;
	req.hashed_payload = RAM_EMPTY_SHA256;
	req.access_key_id = "YourAccessKeyId";
	assert_int_equal(ram_v3_sign(&req, "YourAccessKeySecret", 19, &s), 0);
	assert_string_equal(s.string_to_sign,
	    "ACS3-HMAC-SHA256\n"
	    "7ea06492da5221eba5297e897ce16e55f964061054b7695beedaac1145b1e259");
	assert_string_equal(s.signature,
	    "06563a9e1b43f5dfe96b81484da74bceab24a1d853912eee15083a6f0f3283c0");
	assert_string_equal(s.authorization,
	    "ACS3-HMAC-SHA256 Credential=YourAccessKeyId,SignedHeaders=host;"
	    "x-acs-action;x-acs-content-sha256;x-acs-date;"
	    "x-acs-signature-nonce;x-acs-version,Signature="
	    "06563a9e1b43f5dfe96b81484da74bceab24a1d853912eee15083a6f0f3283c0");
	ram_v3_signed_clear(&s);

	memset(&req, 0, sizeof(req));
	req.method = "";
	req.uri = "/";
	req.query = gq;
	req.nquery = 2;
	req.headers = gh;
	req.nheaders = 2;
	req.hashed_payload =
	    "55e12e91650d2fec56ec74e1d3e4ddbfce2ef3a65890c2a19ecf88a307e76a23";
	req.access_key_id = "acesskey";
	assert_int_equal(ram_v3_sign(&req, "secret", 6, &s), 0);
	assert_string_equal(s.canonical_request,
	    "\n/\nempty=&test=ok\nx-acs-test:http,https\n\nx-acs-test\n"
	    "55e12e91650d2fec56ec74e1d3e4ddbfce2ef3a65890c2a19ecf88a307e76a23");
	assert_string_equal(s.signature,
	    "4ab59fffe3c5738ff8a2729f90cc04fe18b02a4b15b2102cbaf92f9ff3df2ea3");
	ram_v3_signed_clear(&s);
}

static void test_nonce_timestamp(void **state)
{
	char a[RAM_NONCE_LEN + 1], b[RAM_NONCE_LEN + 1];
	char ts[RAM_TIMESTAMP_LEN + 1];
	size_t i;

	ram_nonce(a);
	ram_nonce(b);
	assert_int_equal(strlen(a), 36);
	assert_string_not_equal(a, b);
	for (i = 0; i < 36; i++) {
		if (i == 8 || i == 13 || i == 18 || i == 23)
			assert_int_equal(a[i], '-');
		else
			assert_non_null(strchr("0123456789abcdef", a[i]));
	}
	assert_int_equal(a[14], '4');
	assert_int_equal(ram_timestamp(1422016398, ts), 0);
	assert_string_equal(ts, "2015-01-23T12:33:18Z");
	assert_int_equal(ram_timestamp(0, ts), 0);
	assert_string_equal(ts, "1970-01-01T00:00:00Z");
}

static void test_buf(void **state)
{
	struct ram_buf b = {0};
	char *s = NULL;
	size_t i;

	assert_int_equal(ram_buf_steal(&b, &s), 0);
	assert_string_equal(s, "");
	free(s);
	b.max = 1000;
	for (i = 0; i < 100; i++)
		assert_int_equal(ram_buf_appends(&b, "0123456789"), 0);
	assert_int_equal(b.len, 1000);
	assert_int_equal(ram_buf_append(&b, "x", 1), RAMKEY_ERR_TOO_LARGE);
	assert_int_equal(b.len, 1000);
	ram_buf_free(&b);
	ram_buf_free(&b);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_percent_encoding),
	    cmocka_unit_test(test_canonical_query),
	    cmocka_unit_test(test_v1_vectors),
	    cmocka_unit_test(test_v3_vectors),
	    cmocka_unit_test(test_v1_sdk_cases),
	    cmocka_unit_test(test_v3_doc_cases),
	    cmocka_unit_test(test_nonce_timestamp),
	    cmocka_unit_test(test_buf),
	};

	if (argc > 1)
		vectors_dir = argv[1];
	if (sodium_init() < 0)
		return 1;
	return cmocka_run_group_tests_name("ram.sign", tests, NULL, NULL);
}
