#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <json-c/json.h>
#include <json-c/printbuf.h>
#include <sodium.h>

#include "ram_response.h"
#include "ramkey_err.h"
#include "secure_buf.h"

#define JSON_DEPTH 16
#define SCRUB_SCAN_MAX 65536

const char *ram_action_name(enum ram_action act)
{
	switch (act) {
	case RAM_ACT_CREATE_ACCESS_KEY:
		return "CreateAccessKey";
	case RAM_ACT_UPDATE_ACCESS_KEY:
		return "UpdateAccessKey";
	case RAM_ACT_DELETE_ACCESS_KEY:
		return "DeleteAccessKey";
	case RAM_ACT_LIST_ACCESS_KEYS:
		return "ListAccessKeys";
	case RAM_ACT_GET_USER:
		return "GetUser";
	case RAM_ACT_LIST_USERS:
		return "ListUsers";
	case RAM_ACT_LIST_USERS_FOR_GROUP:
		return "ListUsersForGroup";
	case STS_ACT_ASSUME_ROLE:
		return "AssumeRole";
	case STS_ACT_GET_CALLER_IDENTITY:
		return "GetCallerIdentity";
	case RAM_ACT_COUNT:
		break;
	}
	return "Unknown";
}

bool ram_action_writes(enum ram_action act)
{
	return act == RAM_ACT_CREATE_ACCESS_KEY ||
	    act == RAM_ACT_UPDATE_ACCESS_KEY ||
	    act == RAM_ACT_DELETE_ACCESS_KEY || act == STS_ACT_ASSUME_ROLE;
}

/* --- Validation helpers --- */

static bool is_digit(char c)
{
	return c >= '0' && c <= '9';
}

static bool is_alnum(char c)
{
	return is_digit(c) || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
}

bool ram_key_id_valid(const char *s, size_t len)
{
	size_t i;

	if (s == NULL || len == 0 || len > RAM_KEY_ID_MAX)
		return false;
	for (i = 0; i < len; i++)
		if (!is_alnum(s[i]) && s[i] != '.' && s[i] != '_' &&
		    s[i] != '-')
			return false;
	return true;
}

bool ram_user_name_valid(const char *s, size_t len)
{
	size_t i;

	if (s == NULL || len == 0 || len > RAM_USER_NAME_MAX)
		return false;
	for (i = 0; i < len; i++)
		if (!is_alnum(s[i]) && s[i] != '.' && s[i] != '_' &&
		    s[i] != '-' && s[i] != '@')
			return false;
	return true;
}

/* Printable ASCII without space: RequestId, UserId. */
static bool token_valid(const char *s, size_t len, size_t max)
{
	size_t i;

	if (len == 0 || len > max)
		return false;
	for (i = 0; i < len; i++)
		if ((unsigned char)s[i] <= 0x20 || (unsigned char)s[i] >= 0x7f)
			return false;
	return true;
}

static bool code_valid(const char *s, size_t len)
{
	size_t i;

	if (len == 0 || len >= RAM_CODE_MAX)
		return false;
	for (i = 0; i < len; i++)
		if (!is_alnum(s[i]) && s[i] != '.' && s[i] != '_' &&
		    s[i] != '-' && s[i] != ':')
			return false;
	return true;
}

static int days_in_month(int y, int m)
{
	static const int d[12] = {
	    31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
	bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;

	return m == 2 && leap ? 29 : d[m - 1];
}

static int num(const char *s, size_t n)
{
	int v = 0;
	size_t i;

	for (i = 0; i < n; i++)
		v = v * 10 + (s[i] - '0');
	return v;
}

int ram_parse_date(const char *s, size_t len, int64_t *ret)
{
	static const char shape[] = "dddd-dd-ddTdd:dd:ddZ";
	struct tm tm;
	time_t t;
	size_t i;

	*ret = 0;
	if (s == NULL || len != sizeof(shape) - 1)
		return RAMKEY_ERR_INVALID;
	for (i = 0; i < len; i++) {
		if (shape[i] == 'd' ? !is_digit(s[i]) : s[i] != shape[i])
			return RAMKEY_ERR_INVALID;
	}
	memset(&tm, 0, sizeof(tm));
	tm.tm_year = num(s, 4) - 1900;
	tm.tm_mon = num(s + 5, 2) - 1;
	tm.tm_mday = num(s + 8, 2);
	tm.tm_hour = num(s + 11, 2);
	tm.tm_min = num(s + 14, 2);
	tm.tm_sec = num(s + 17, 2);
	if (tm.tm_year < 70 || tm.tm_mon < 0 || tm.tm_mon > 11 ||
	    tm.tm_mday < 1 ||
	    tm.tm_mday > days_in_month(tm.tm_year + 1900, tm.tm_mon + 1) ||
	    tm.tm_hour > 23 || tm.tm_min > 59 || tm.tm_sec > 59)
		return RAMKEY_ERR_INVALID;
	if ((t = timegm(&tm)) == (time_t)-1)
		return RAMKEY_ERR_INVALID;
	*ret = (int64_t)t;
	return 0;
}

bool ram_code_retryable(const char *code)
{
	static const char *const prefixes[] = {
	    "Throttling", "ServiceUnavailable", "InternalError"};
	size_t i, n;

	if (code == NULL)
		return false;
	for (i = 0; i < sizeof(prefixes) / sizeof(prefixes[0]); i++) {
		n = strlen(prefixes[i]);
		if (strncmp(code, prefixes[i], n) == 0 &&
		    (code[n] == '\0' || code[n] == '.'))
			return true;
	}
	return false;
}

/* --- Message scrubbing --- */

static const char *find_ci(const char *s, size_t len, const char *needle)
{
	size_t n = strlen(needle), i;

	if (n == 0 || n > len)
		return NULL;
	for (i = 0; i + n <= len; i++)
		if (strncasecmp(s + i, needle, n) == 0)
			return s + i;
	return NULL;
}

/* Length of the valid UTF-8 sequence at s (at most n bytes), or 0. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
	size_t len, i;
	unsigned cp;

	if (s[0] < 0x80)
		return 1;
	if (s[0] >= 0xc2 && s[0] <= 0xdf) {
		len = 2;
		cp = s[0] & 0x1f;
	} else if (s[0] >= 0xe0 && s[0] <= 0xef) {
		len = 3;
		cp = s[0] & 0x0f;
	} else if (s[0] >= 0xf0 && s[0] <= 0xf4) {
		len = 4;
		cp = s[0] & 0x07;
	} else {
		return 0;
	}
	if (len > n)
		return 0;
	for (i = 1; i < len; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = (cp << 6) | (s[i] & 0x3f);
	}
	if ((len == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
	    (len == 4 && (cp < 0x10000 || cp > 0x10ffff)))
		return 0;
	return len;
}

void ram_scrub_message(
    const char *code, const char *msg, size_t len, char *out, size_t out_size)
{
	/* What an echoed string-to-sign or canonical request starts with. */
	static const char *const sig_markers[] = {"stringtosign",
	    "string-to-sign", "string_to_sign", "canonical", "GET&", "POST&",
	    "PUT&", "DELETE&", "HEAD&", "%2F", "ACS3-", "AccessKeyId"};
	const unsigned char *s = (const unsigned char *)msg;
	const char *p;
	size_t cut = len, i, o = 0;
	bool space = true; /* suppress leading spaces */

	if (out_size == 0)
		return;
	out[0] = '\0';
	if (msg == NULL)
		return;
	/* Only the head can reach the output: bound the marker search. */
	if (len > SCRUB_SCAN_MAX)
		len = SCRUB_SCAN_MAX;
	if ((p = find_ci(msg, len, "string to sign")) != NULL)
		cut = (size_t)(p - msg);
	if (code != NULL && strcmp(code, "SignatureDoesNotMatch") == 0) {
		for (i = 0; i < sizeof(sig_markers) / sizeof(sig_markers[0]);
		     i++) {
			p = find_ci(msg, cut, sig_markers[i]);
			if (p != NULL)
				cut = (size_t)(p - msg);
		}
	}
	for (i = 0; i < cut;) {
		size_t n = utf8_len(s + i, cut - i);

		if (n == 0 || s[i] < 0x20 || s[i] == 0x7f) {
			/* control or invalid byte: becomes a space */
			i++;
			if (!space && o + 1 < out_size) {
				out[o++] = ' ';
				space = true;
			}
			continue;
		}
		if (s[i] == ' ') {
			i++;
			if (!space && o + 1 < out_size) {
				out[o++] = ' ';
				space = true;
			}
			continue;
		}
		if (o + n >= out_size)
			break; /* truncate on a character boundary */
		memcpy(out + o, s + i, n);
		o += n;
		i += n;
		space = false;
	}
	while (o > 0 && (out[o - 1] == ' ' || out[o - 1] == ':'))
		o--;
	out[o] = '\0';
}

/* --- JSON plumbing --- */

/*
 * Parse body into a JSON object. The tokener's buffer is sized to the
 * whole body first, so it is never reallocated while it holds a string
 * (realloc would free a copy we cannot wipe); it is wiped before the
 * tokener is freed.
 */
static int parse_object(const char *body, size_t len, struct json_object **ret,
    char *detail, size_t detail_size)
{
	struct json_tokener *tok = NULL;
	struct json_object *obj = NULL;
	size_t end;
	int r = RAMKEY_ERR_PROTOCOL;

	*ret = NULL;
	if (len > RAM_BODY_MAX) {
		snprintf(
		    detail, detail_size, "body over %d bytes", RAM_BODY_MAX);
		return RAMKEY_ERR_TOO_LARGE;
	}
	if (len == 0 || body == NULL) {
		snprintf(detail, detail_size, "empty body");
		return RAMKEY_ERR_PROTOCOL;
	}
	if ((tok = json_tokener_new_ex(JSON_DEPTH)) == NULL) {
		r = RAMKEY_ERR_NOMEM;
		goto out;
	}
	json_tokener_set_flags(
	    tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
	if (printbuf_memset(tok->pb, 0, 0, (int)len + 1) < 0) {
		r = RAMKEY_ERR_NOMEM;
		goto out;
	}
	printbuf_reset(tok->pb);
	obj = json_tokener_parse_ex(tok, body, (int)len);
	if (obj == NULL ||
	    json_tokener_get_error(tok) != json_tokener_success) {
		snprintf(detail, detail_size, "not JSON (%s)",
		    json_tokener_error_desc(json_tokener_get_error(tok)));
		goto out;
	}
	for (end = json_tokener_get_parse_end(tok); end < len; end++) {
		if (body[end] != ' ' && body[end] != '\t' &&
		    body[end] != '\r' && body[end] != '\n') {
			snprintf(
			    detail, detail_size, "trailing bytes after JSON");
			goto out;
		}
	}
	if (!json_object_is_type(obj, json_type_object)) {
		snprintf(detail, detail_size, "not a JSON object");
		goto out;
	}
	*ret = obj;
	obj = NULL;
	r = 0;
out:
	json_object_put(obj);
	if (tok != NULL) {
		if (tok->pb != NULL && tok->pb->buf != NULL)
			sodium_memzero(tok->pb->buf, (size_t)tok->pb->size);
		json_tokener_free(tok);
	}
	return r;
}

/* Wipe every string stored under "AccessKeySecret" or "SecurityToken",
 * anywhere. */
static void wipe_secrets(struct json_object *o, int depth)
{
	size_t i, n;

	if (o == NULL || depth > JSON_DEPTH + 1)
		return;
	if (json_object_is_type(o, json_type_array)) {
		n = json_object_array_length(o);
		for (i = 0; i < n; i++)
			wipe_secrets(
			    json_object_array_get_idx(o, i), depth + 1);
		return;
	}
	if (!json_object_is_type(o, json_type_object))
		return;
	json_object_object_foreach(o, key, val)
	{
		if ((strcmp(key, "AccessKeySecret") == 0 ||
		    strcmp(key, "SecurityToken") == 0) &&
		    json_object_is_type(val, json_type_string)) {
			int l = json_object_get_string_len(val);
			char *p = (char *)json_object_get_string(val);

			if (p != NULL && l > 0)
				sodium_memzero(p, (size_t)l);
		} else {
			wipe_secrets(val, depth + 1);
		}
	}
}

static void put_root(struct json_object *root)
{
	if (root == NULL)
		return;
	wipe_secrets(root, 0);
	json_object_put(root);
}

/* Optional string member: *s NULL when absent; wrong type is an error. */
static int get_str(struct json_object *o, const char *key, bool required,
    const char **s, size_t *len)
{
	struct json_object *v;

	*s = NULL;
	*len = 0;
	if (!json_object_object_get_ex(o, key, &v) || v == NULL)
		return required ? RAMKEY_ERR_PROTOCOL : 0;
	if (!json_object_is_type(v, json_type_string))
		return RAMKEY_ERR_PROTOCOL;
	*s = json_object_get_string(v);
	*len = (size_t)json_object_get_string_len(v);
	return 0;
}

static int get_obj(struct json_object *o, const char *key, bool required,
    struct json_object **ret)
{
	struct json_object *v;

	*ret = NULL;
	if (!json_object_object_get_ex(o, key, &v) || v == NULL)
		return required ? RAMKEY_ERR_PROTOCOL : 0;
	if (!json_object_is_type(v, json_type_object))
		return RAMKEY_ERR_PROTOCOL;
	*ret = v;
	return 0;
}

static void copy_str(char *dst, const char *src, size_t len)
{
	memcpy(dst, src, len);
	dst[len] = '\0';
}

/* AccessKeyId, Status, CreateDate of one key object. */
static int parse_key(struct json_object *o, struct ram_access_key *k,
    const char *what, char *detail, size_t detail_size)
{
	const char *s;
	size_t len;

	if (get_str(o, "AccessKeyId", true, &s, &len) != 0 ||
	    !ram_key_id_valid(s, len)) {
		snprintf(detail, detail_size,
		    "%s.AccessKeyId missing or invalid", what);
		return RAMKEY_ERR_PROTOCOL;
	}
	copy_str(k->id, s, len);
	if (get_str(o, "Status", true, &s, &len) != 0 ||
	    !((len == 6 && memcmp(s, "Active", 6) == 0) ||
		(len == 8 && memcmp(s, "Inactive", 8) == 0))) {
		snprintf(
		    detail, detail_size, "%s.Status missing or invalid", what);
		return RAMKEY_ERR_PROTOCOL;
	}
	copy_str(k->status, s, len);
	if (get_str(o, "CreateDate", true, &s, &len) != 0 ||
	    ram_parse_date(s, len, &k->create_time) != 0) {
		snprintf(detail, detail_size,
		    "%s.CreateDate missing or invalid", what);
		return RAMKEY_ERR_PROTOCOL;
	}
	copy_str(k->create_date, s, len);
	return 0;
}

static int parse_create(struct json_object *root, struct ram_result *res,
    char *detail, size_t detail_size)
{
	struct json_object *ak;
	const char *s;
	size_t len, i;
	char *secret;
	int r;

	if (get_obj(root, "AccessKey", true, &ak) != 0) {
		snprintf(detail, detail_size, "AccessKey missing or invalid");
		return RAMKEY_ERR_PROTOCOL;
	}
	if ((r = parse_key(ak, &res->key, "AccessKey", detail, detail_size)) !=
	    0)
		return r;
	if (get_str(ak, "AccessKeySecret", true, &s, &len) != 0 || len == 0 ||
	    len > RAM_SECRET_MAX) {
		snprintf(detail, detail_size,
		    "AccessKey.AccessKeySecret missing or invalid");
		return RAMKEY_ERR_PROTOCOL;
	}
	for (i = 0; i < len; i++) {
		if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f) {
			snprintf(detail, detail_size,
			    "AccessKey.AccessKeySecret missing or invalid");
			return RAMKEY_ERR_PROTOCOL;
		}
	}
	if ((secret = secure_buf_alloc(len + 1)) == NULL)
		return RAMKEY_ERR_NOMEM;
	memcpy(secret, s, len);
	secret[len] = '\0';
	res->key.secret = secret;
	res->key.secret_len = len;
	return 0;
}

static int parse_list(struct json_object *root, struct ram_result *res,
    char *detail, size_t detail_size)
{
	struct json_object *aks, *arr = NULL;
	struct ram_access_key *keys = NULL;
	size_t n = 0, i;
	int r = RAMKEY_ERR_PROTOCOL;

	if (get_obj(root, "AccessKeys", false, &aks) != 0) {
		snprintf(detail, detail_size, "AccessKeys is not an object");
		goto out;
	}
	if (aks != NULL && json_object_object_get_ex(aks, "AccessKey", &arr) &&
	    arr != NULL) {
		if (!json_object_is_type(arr, json_type_array)) {
			snprintf(detail, detail_size,
			    "AccessKeys.AccessKey is not an array");
			goto out;
		}
		n = json_object_array_length(arr);
	}
	if (n > RAM_LIST_MAX) {
		snprintf(
		    detail, detail_size, "more than %d keys", RAM_LIST_MAX);
		goto out;
	}
	if (n > 0 && (keys = calloc(n, sizeof(*keys))) == NULL) {
		r = RAMKEY_ERR_NOMEM;
		goto out;
	}
	for (i = 0; i < n; i++) {
		struct json_object *k = json_object_array_get_idx(arr, i);

		if (k == NULL || !json_object_is_type(k, json_type_object)) {
			snprintf(detail, detail_size,
			    "AccessKeys.AccessKey[%zu] is not an object", i);
			goto out;
		}
		if ((r = parse_key(k, &keys[i], "AccessKeys.AccessKey[]",
			 detail, detail_size)) != 0)
			goto out;
	}
	res->keys = keys;
	res->nkeys = n;
	keys = NULL;
	r = 0;
out:
	free(keys);
	return r;
}

static int parse_user(struct json_object *root, struct ram_result *res,
    char *detail, size_t detail_size)
{
	struct json_object *u;
	const char *s;
	size_t len;

	if (get_obj(root, "User", true, &u) != 0) {
		snprintf(detail, detail_size, "User missing or invalid");
		return RAMKEY_ERR_PROTOCOL;
	}
	if (get_str(u, "UserName", true, &s, &len) != 0 ||
	    !ram_user_name_valid(s, len)) {
		snprintf(
		    detail, detail_size, "User.UserName missing or invalid");
		return RAMKEY_ERR_PROTOCOL;
	}
	copy_str(res->user_name, s, len);
	if (get_str(u, "UserId", false, &s, &len) != 0 ||
	    (s != NULL && !token_valid(s, len, RAM_USER_NAME_MAX))) {
		snprintf(detail, detail_size, "User.UserId invalid");
		return RAMKEY_ERR_PROTOCOL;
	}
	if (s != NULL)
		copy_str(res->user_id, s, len);
	return 0;
}

/* A secret-bearing string into locked memory, refusing control bytes. */
static int secret_copy(const char *s, size_t len, size_t max, const char **out,
    size_t *outlen)
{
	char *d;
	size_t i;

	if (len == 0 || len > max)
		return RAMKEY_ERR_PROTOCOL;
	for (i = 0; i < len; i++)
		if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
			return RAMKEY_ERR_PROTOCOL;
	if ((d = secure_buf_alloc(len + 1)) == NULL)
		return RAMKEY_ERR_NOMEM;
	memcpy(d, s, len);
	d[len] = '\0';
	*out = d;
	*outlen = len;
	return 0;
}

static bool arn_valid(const char *s, size_t len)
{
	size_t i;

	if (len < 8 || len > RAM_ARN_MAX || strncmp(s, "acs:", 4) != 0)
		return false;
	for (i = 0; i < len; i++)
		if ((unsigned char)s[i] <= 0x20 || (unsigned char)s[i] >= 0x7f)
			return false;
	return true;
}

/*
 * The four members of a temporary credential (AssumeRole's Credentials,
 * or the metadata service's whole document); what names it in detail.
 */
static int parse_sts_credential(struct json_object *cr,
    struct ram_sts_credential *k, const char *what, char *detail,
    size_t detail_size)
{
	const char *s;
	size_t len;
	int r = RAMKEY_ERR_PROTOCOL;

	if (get_str(cr, "AccessKeyId", true, &s, &len) != 0 ||
	    !ram_key_id_valid(s, len)) {
		snprintf(detail, detail_size,
		    "%sAccessKeyId missing or invalid", what);
		return RAMKEY_ERR_PROTOCOL;
	}
	copy_str(k->id, s, len);
	if (get_str(cr, "Expiration", true, &s, &len) != 0 ||
	    len >= sizeof(k->expiration) ||
	    ram_parse_date(s, len, &k->expiration_time) != 0) {
		snprintf(detail, detail_size, "%sExpiration missing or invalid",
		    what);
		return RAMKEY_ERR_PROTOCOL;
	}
	copy_str(k->expiration, s, len);
	if (get_str(cr, "AccessKeySecret", true, &s, &len) != 0 ||
	    (r = secret_copy(s, len, RAM_SECRET_MAX, &k->secret,
	    &k->secret_len)) != 0) {
		snprintf(detail, detail_size,
		    "%sAccessKeySecret missing or invalid", what);
		return r == RAMKEY_ERR_NOMEM ? r : RAMKEY_ERR_PROTOCOL;
	}
	if (get_str(cr, "SecurityToken", true, &s, &len) != 0 ||
	    (r = secret_copy(s, len, RAM_TOKEN_MAX, &k->token,
	    &k->token_len)) != 0) {
		snprintf(detail, detail_size,
		    "%sSecurityToken missing or invalid", what);
		return r == RAMKEY_ERR_NOMEM ? r : RAMKEY_ERR_PROTOCOL;
	}
	return 0;
}

static int parse_assume_role(struct json_object *root, struct ram_result *res,
    char *detail, size_t detail_size)
{
	struct ram_sts_credential *k = &res->sts;
	struct json_object *cr, *u;
	const char *s;
	size_t len;
	int r;

	if (get_obj(root, "Credentials", true, &cr) != 0) {
		snprintf(detail, detail_size, "Credentials missing or invalid");
		return RAMKEY_ERR_PROTOCOL;
	}
	if ((r = parse_sts_credential(cr, k, "Credentials.", detail,
	    detail_size)) != 0)
		return r;
	if (get_obj(root, "AssumedRoleUser", false, &u) != 0) {
		snprintf(detail, detail_size, "AssumedRoleUser invalid");
		return RAMKEY_ERR_PROTOCOL;
	}
	if (u != NULL && get_str(u, "Arn", false, &s, &len) == 0 && s != NULL &&
	    arn_valid(s, len))
		copy_str(k->arn, s, len);
	return 0;
}

static int parse_identity(struct json_object *root, struct ram_result *res,
    char *detail, size_t detail_size)
{
	const char *s;
	size_t len;

	if (get_str(root, "Arn", true, &s, &len) != 0 || !arn_valid(s, len)) {
		snprintf(detail, detail_size, "Arn missing or invalid");
		return RAMKEY_ERR_PROTOCOL;
	}
	copy_str(res->arn, s, len);
	if (get_str(root, "AccountId", false, &s, &len) != 0 ||
	    (s != NULL && !token_valid(s, len, sizeof(res->account_id) - 1))) {
		snprintf(detail, detail_size, "AccountId invalid");
		return RAMKEY_ERR_PROTOCOL;
	}
	if (s != NULL)
		copy_str(res->account_id, s, len);
	if (get_str(root, "IdentityType", false, &s, &len) != 0 ||
	    (s != NULL && !token_valid(s, len, sizeof(res->identity_type) -
	    1))) {
		snprintf(detail, detail_size, "IdentityType invalid");
		return RAMKEY_ERR_PROTOCOL;
	}
	if (s != NULL)
		copy_str(res->identity_type, s, len);
	return 0;
}

/* ListUsers and ListUsersForGroup: Users.User[].UserName, IsTruncated,
 * Marker. */
static int parse_users(struct json_object *root, struct ram_result *res,
    char *detail, size_t detail_size)
{
	struct json_object *us, *arr = NULL, *t;
	char **names = NULL;
	const char *s;
	size_t n = 0, i, len;
	int r = RAMKEY_ERR_PROTOCOL;

	if (get_obj(root, "Users", false, &us) != 0) {
		snprintf(detail, detail_size, "Users is not an object");
		goto out;
	}
	if (us != NULL && json_object_object_get_ex(us, "User", &arr) &&
	    arr != NULL) {
		if (!json_object_is_type(arr, json_type_array)) {
			snprintf(detail, detail_size,
			    "Users.User is not an array");
			goto out;
		}
		n = json_object_array_length(arr);
	}
	if (n > RAM_LIST_MAX) {
		snprintf(detail, detail_size, "more than %d users",
		    RAM_LIST_MAX);
		goto out;
	}
	if ((names = calloc(n + 1, sizeof(*names))) == NULL) {
		r = RAMKEY_ERR_NOMEM;
		goto out;
	}
	for (i = 0; i < n; i++) {
		struct json_object *u = json_object_array_get_idx(arr, i);

		if (u == NULL || !json_object_is_type(u, json_type_object) ||
		    get_str(u, "UserName", true, &s, &len) != 0 ||
		    !ram_user_name_valid(s, len)) {
			snprintf(detail, detail_size,
			    "Users.User[%zu].UserName missing or invalid", i);
			goto out;
		}
		if ((names[i] = strndup(s, len)) == NULL) {
			r = RAMKEY_ERR_NOMEM;
			goto out;
		}
	}
	if (json_object_object_get_ex(root, "IsTruncated", &t) && t != NULL) {
		if (!json_object_is_type(t, json_type_boolean)) {
			snprintf(detail, detail_size, "IsTruncated invalid");
			goto out;
		}
		res->truncated = json_object_get_boolean(t);
	}
	if (get_str(root, "Marker", false, &s, &len) != 0 ||
	    (s != NULL && (len > RAM_MARKER_MAX ||
	    !token_valid(s, len, RAM_MARKER_MAX)))) {
		snprintf(detail, detail_size, "Marker invalid");
		goto out;
	}
	if (s != NULL)
		copy_str(res->marker, s, len);
	if (res->truncated && res->marker[0] == '\0') {
		snprintf(detail, detail_size, "IsTruncated without a Marker");
		goto out;
	}
	res->users = names;
	res->nusers = n;
	names = NULL;
	r = 0;
out:
	if (names != NULL) {
		for (i = 0; i < n; i++)
			free(names[i]);
		free(names);
	}
	return r;
}

int ram_parse_success(enum ram_action act, const char *body, size_t len,
    struct ram_result *res, char *detail, size_t detail_size)
{
	struct json_object *root = NULL;
	char dummy[1];
	const char *s;
	size_t slen;
	int r;

	if (detail == NULL || detail_size == 0) {
		detail = dummy;
		detail_size = sizeof(dummy);
	}
	detail[0] = '\0';
	memset(res, 0, sizeof(*res));
	if ((r = parse_object(body, len, &root, detail, detail_size)) != 0)
		goto out;
	r = RAMKEY_ERR_PROTOCOL;
	if (get_str(root, "RequestId", false, &s, &slen) != 0 ||
	    (s != NULL && !token_valid(s, slen, RAM_REQUEST_ID_MAX - 1))) {
		snprintf(detail, detail_size, "RequestId invalid");
		goto out;
	}
	if (s != NULL)
		copy_str(res->request_id, s, slen);
	switch (act) {
	case RAM_ACT_CREATE_ACCESS_KEY:
		r = parse_create(root, res, detail, detail_size);
		break;
	case RAM_ACT_LIST_ACCESS_KEYS:
		r = parse_list(root, res, detail, detail_size);
		break;
	case RAM_ACT_GET_USER:
		r = parse_user(root, res, detail, detail_size);
		break;
	case RAM_ACT_LIST_USERS:
	case RAM_ACT_LIST_USERS_FOR_GROUP:
		r = parse_users(root, res, detail, detail_size);
		break;
	case STS_ACT_ASSUME_ROLE:
		r = parse_assume_role(root, res, detail, detail_size);
		break;
	case STS_ACT_GET_CALLER_IDENTITY:
		r = parse_identity(root, res, detail, detail_size);
		break;
	case RAM_ACT_UPDATE_ACCESS_KEY:
	case RAM_ACT_DELETE_ACCESS_KEY:
		r = 0;
		break;
	default:
		r = RAMKEY_ERR_INVALID;
		break;
	}
out:
	put_root(root);
	if (r != 0)
		ram_result_clear(res);
	return r;
}

int ram_parse_imds_credential(const char *body, size_t len,
    struct ram_result *res, char *detail, size_t detail_size)
{
	struct json_object *root = NULL;
	char dummy[1];
	const char *s;
	size_t slen;
	int r;

	if (detail == NULL || detail_size == 0) {
		detail = dummy;
		detail_size = sizeof(dummy);
	}
	detail[0] = '\0';
	memset(res, 0, sizeof(*res));
	if ((r = parse_object(body, len, &root, detail, detail_size)) != 0)
		goto out;
	r = RAMKEY_ERR_PROTOCOL;
	if (get_str(root, "Code", true, &s, &slen) != 0 ||
	    !code_valid(s, slen)) {
		snprintf(detail, detail_size, "Code missing or invalid");
		goto out;
	}
	if (strcmp(s, "Success") != 0) {
		snprintf(detail, detail_size, "Code is %.*s, not Success",
		    (int)slen, s);
		goto out;
	}
	r = parse_sts_credential(root, &res->sts, "", detail, detail_size);
out:
	put_root(root);
	if (r != 0)
		ram_result_clear(res);
	return r;
}

void ram_result_clear(struct ram_result *res)
{
	if (res == NULL)
		return;
	secure_buf_free((void *)res->key.secret); /* wipes */
	secure_buf_free((void *)res->sts.secret);
	secure_buf_free((void *)res->sts.token);
	if (res->users != NULL) {
		size_t i;

		for (i = 0; i < res->nusers; i++)
			free(res->users[i]);
		free((void *)res->users);
	}
	free((void *)res->keys);
	memset(res, 0, sizeof(*res));
}

int ram_parse_error(const char *body, size_t len, struct ram_error *err)
{
	struct json_object *root = NULL;
	char detail[64];
	const char *code, *msg, *rid;
	size_t clen, mlen, rlen;
	int r;

	err->code[0] = err->message[0] = err->request_id[0] = '\0';
	if ((r = parse_object(body, len, &root, detail, sizeof(detail))) != 0)
		goto out;
	r = RAMKEY_ERR_PROTOCOL;
	if (get_str(root, "Code", true, &code, &clen) != 0 ||
	    !code_valid(code, clen))
		goto out;
	copy_str(err->code, code, clen);
	if (get_str(root, "Message", false, &msg, &mlen) == 0 && msg != NULL)
		ram_scrub_message(
		    err->code, msg, mlen, err->message, sizeof(err->message));
	if (get_str(root, "RequestId", false, &rid, &rlen) == 0 &&
	    rid != NULL && token_valid(rid, rlen, RAM_REQUEST_ID_MAX - 1))
		copy_str(err->request_id, rid, rlen);
	r = 0;
out:
	put_root(root);
	return r;
}
