#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "frame.h"
#include "message.h"
#include "ramkey_err.h"
#include "util.h"

#define JSON_DEPTH_MAX 16

static const struct {
	enum ramkey_op op;
	const char *name;
} op_names[] = {
	{ RAMKEY_OP_OPEN_SESSION, "open_session" },
	{ RAMKEY_OP_CLOSE_SESSION, "close_session" },
	{ RAMKEY_OP_FETCH, "fetch" },
	{ RAMKEY_OP_REVOKE, "revoke" },
	{ RAMKEY_OP_STATUS, "status" },
	{ RAMKEY_OP_SET_STATUS, "set_status" },
	{ RAMKEY_OP_METRICS, "metrics" },
};

const char *ramkey_op_name(enum ramkey_op op)
{
	size_t i;

	for (i = 0; i < sizeof(op_names) / sizeof(op_names[0]); i++)
		if (op_names[i].op == op)
			return op_names[i].name;
	return "none";
}

size_t ramkey_reply_frame_max(enum ramkey_op op)
{
	return op == RAMKEY_OP_STATUS || op == RAMKEY_OP_METRICS ?
	    RAMKEY_STATUS_FRAME_MAX : RAMKEY_FRAME_MAX;
}

static enum ramkey_op op_from_name(const char *s)
{
	size_t i;

	for (i = 0; i < sizeof(op_names) / sizeof(op_names[0]); i++)
		if (strcmp(op_names[i].name, s) == 0)
			return op_names[i].op;
	return RAMKEY_OP_NONE;
}

/* Which request fields each op accepts (bit set) and requires. */
enum {
	F_USER = 1 << 0,
	F_SEAL = 1 << 1,
	F_PGP = 1 << 2,
	F_FILE = 1 << 3,
	F_RHOST = 1 << 4,
	F_TTY = 1 << 5,
	F_SERVICE = 1 << 6,
	F_SESSION = 1 << 7,
	F_KEY_ID = 1 << 8,
	F_STATUS = 1 << 9,
	F_TTL = 1 << 10,
	F_TIMEOUT = 1 << 11,
	F_ABORTED = 1 << 12,
	F_DEFAULT_FILE = 1 << 13,
	F_ALL = 1 << 14,
};

static unsigned allowed_fields(enum ramkey_op op)
{
	switch (op) {
	case RAMKEY_OP_OPEN_SESSION:
		return F_USER | F_SEAL | F_PGP | F_FILE | F_RHOST | F_TTY |
		    F_SERVICE | F_TIMEOUT;
	case RAMKEY_OP_CLOSE_SESSION:
		return F_USER | F_SESSION | F_ABORTED;
	case RAMKEY_OP_FETCH:
		return F_USER | F_SEAL | F_PGP | F_FILE | F_DEFAULT_FILE |
		    F_TTL | F_TIMEOUT;
	case RAMKEY_OP_REVOKE:
		return F_USER | F_KEY_ID | F_ALL;
	case RAMKEY_OP_STATUS:
		return F_USER;
	case RAMKEY_OP_SET_STATUS:
		return F_KEY_ID | F_STATUS;
	default:
		return 0; /* metrics: none */
	}
}

static unsigned required_fields(enum ramkey_op op)
{
	switch (op) {
	case RAMKEY_OP_OPEN_SESSION:
		return F_USER;
	case RAMKEY_OP_CLOSE_SESSION:
		return F_SESSION;
	case RAMKEY_OP_SET_STATUS:
		return F_KEY_ID | F_STATUS;
	default:
		return 0;
	}
}

uint32_t ramkey_request_timeout_ms(uint64_t wait_ms)
{
	uint64_t margin = wait_ms / 4 < 250 ? wait_ms / 4 : 250;

	if (wait_ms - margin > RAMKEY_TIMEOUT_MS_MAX)
		return RAMKEY_TIMEOUT_MS_MAX;
	return wait_ms - margin < 1 ? 1 : (uint32_t)(wait_ms - margin);
}

struct ramkey_request *ramkey_request_new(enum ramkey_op op)
{
	struct ramkey_request *req = calloc(1, sizeof(*req));

	if (req != NULL)
		req->op = op;
	return req;
}

void ramkey_request_free(struct ramkey_request *req)
{
	if (req == NULL)
		return;
	free(req->user);
	free(req->pgp_key);
	free(req->secret_file);
	free(req->rhost);
	free(req->tty);
	free(req->service);
	free(req->session);
	free(req->key_id);
	free(req->status);
	sodium_memzero(req, sizeof(*req));
	free(req);
}

struct ramkey_reply *ramkey_reply_new(enum ramkey_op op)
{
	struct ramkey_reply *rep = calloc(1, sizeof(*rep));

	if (rep != NULL)
		rep->op = op;
	return rep;
}

static void key_info_clear(struct ramkey_key_info *k)
{
	free(k->access_key_id);
	free(k->create_date);
	free(k->status);
	ramkey_free_secret(k->sealed, k->sealed_len);
	free(k->encrypted_secret);
	free(k->key_fingerprint);
	if (k->security_token != NULL) {
		sodium_memzero(k->security_token, strlen(k->security_token));
		free(k->security_token);
	}
	memset(k, 0, sizeof(*k));
}

void ramkey_reply_free(struct ramkey_reply *rep)
{
	if (rep == NULL)
		return;
	free(rep->error_message);
	free(rep->ram_code);
	key_info_clear(&rep->key);
	free(rep->session);
	free(rep->secret_file);
	free(rep->region_id);
	free(rep->metrics);
	if (rep->status != NULL)
		json_object_put(rep->status);
	free(rep);
}

void ramkey_reply_set_error(struct ramkey_reply *rep, int err,
    const char *fmt, ...)
{
	char buf[RAMKEY_MESSAGE_TEXT_MAX];
	va_list ap;
	size_t i;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	/* One line, printable: replies end up on terminals and in logs. */
	for (i = 0; buf[i] != '\0'; i++)
		if ((unsigned char)buf[i] < 0x20 || buf[i] == 0x7f)
			buf[i] = ' ';
	free(rep->error_message);
	rep->error_message = strdup(buf);
	rep->error = err < 0 ? err : RAMKEY_ERR_INTERNAL;
}

/* ---- validation helpers ---- */

static bool printable_line(const char *s)
{
	for (; *s != '\0'; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			return false;
	return true;
}

static bool is_hex(const char *s, size_t n)
{
	size_t i;

	if (strlen(s) != n)
		return false;
	for (i = 0; i < n; i++)
		if (!((s[i] >= '0' && s[i] <= '9') ||
		    (s[i] >= 'a' && s[i] <= 'f')))
			return false;
	return true;
}

static bool valid_path(const char *s)
{
	size_t n = strlen(s);

	return n > 1 && n < RAMKEY_PATH_MAX && s[0] == '/' &&
	    printable_line(s);
}

/* The metrics text: printable ASCII lines, each ending in a newline. */
static bool metrics_text(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || s[n - 1] != '\n')
		return false;
	for (; *s != '\0'; s++)
		if (*s != '\n' && (*s < 0x20 || *s > 0x7e))
			return false;
	return true;
}

static bool valid_status(const char *s)
{
	return strcmp(s, "Active") == 0 || strcmp(s, "Inactive") == 0;
}

/* Copy a JSON string field, checking type, length and embedded NULs. */
static int get_str(struct json_object *v, size_t maxlen, char **out)
{
	const char *s;
	int n;

	if (!json_object_is_type(v, json_type_string))
		return RAMKEY_ERR_PROTOCOL;
	s = json_object_get_string(v);
	n = json_object_get_string_len(v);
	if (n < 0 || (size_t)n > maxlen || strlen(s) != (size_t)n)
		return RAMKEY_ERR_PROTOCOL;
	/* Given twice: refused, never overwritten (and leaked). */
	if (*out != NULL)
		return RAMKEY_ERR_PROTOCOL;
	if ((*out = strdup(s)) == NULL)
		return RAMKEY_ERR_NOMEM;
	return 0;
}

/*
 * Strict UTF-8 (RFC 3629): no overlong forms, no UTF-16 surrogates,
 * nothing past U+10FFFF. json-c's own check only looks at the shape of
 * each sequence.
 */
static bool valid_utf8(const uint8_t *s, size_t len)
{
	size_t i = 0;

	while (i < len) {
		uint8_t c = s[i];
		size_t n;
		uint8_t lo = 0x80, hi = 0xbf;

		if (c < 0x80) {
			i++;
			continue;
		}
		if (c >= 0xc2 && c <= 0xdf)
			n = 1;
		else if (c >= 0xe0 && c <= 0xef)
			n = 2;
		else if (c >= 0xf0 && c <= 0xf4)
			n = 3;
		else
			return false;
		/* The first continuation byte's range rules out overlong
		 * forms, surrogates and code points past U+10FFFF. */
		if (c == 0xe0)
			lo = 0xa0;
		else if (c == 0xed)
			hi = 0x9f;
		else if (c == 0xf0)
			lo = 0x90;
		else if (c == 0xf4)
			hi = 0x8f;
		if (len - i <= n || s[i + 1] < lo || s[i + 1] > hi)
			return false;
		for (size_t k = 2; k <= n; k++)
			if (s[i + k] < 0x80 || s[i + k] > 0xbf)
				return false;
		i += n + 1;
	}
	return true;
}

static int parse_json(const uint8_t *buf, size_t len, size_t max,
    struct json_object **ret)
{
	struct json_tokener *tok;
	struct json_object *obj;
	int r = RAMKEY_ERR_PROTOCOL;

	*ret = NULL;
	if (len > max)
		return RAMKEY_ERR_TOO_LARGE;
	if (len == 0 || memchr(buf, '\0', len) != NULL ||
	    !valid_utf8(buf, len))
		return RAMKEY_ERR_PROTOCOL;
	if ((tok = json_tokener_new_ex(JSON_DEPTH_MAX)) == NULL)
		return RAMKEY_ERR_NOMEM;
	json_tokener_set_flags(tok,
	    JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
	obj = json_tokener_parse_ex(tok, (const char *)buf, (int)len);
	if (obj == NULL || json_tokener_get_error(tok) != json_tokener_success)
		goto out;
	/* Nothing but whitespace may follow the object. */
	for (size_t i = json_tokener_get_parse_end(tok); i < len; i++)
		if (buf[i] != ' ' && buf[i] != '\n' && buf[i] != '\t' &&
		    buf[i] != '\r')
			goto out;
	if (!json_object_is_type(obj, json_type_object))
		goto out;
	*ret = obj;
	obj = NULL;
	r = 0;
out:
	if (obj != NULL)
		json_object_put(obj);
	json_tokener_free(tok);
	return r;
}

static int check_version(struct json_object *o)
{
	struct json_object *v;

	if (!json_object_object_get_ex(o, "v", &v) ||
	    !json_object_is_type(v, json_type_int))
		return RAMKEY_ERR_PROTOCOL;
	if (json_object_get_int64(v) != RAMKEY_PROTOCOL_VERSION)
		return RAMKEY_ERR_VERSION;
	return 0;
}

static int get_op(struct json_object *o, enum ramkey_op *op)
{
	struct json_object *v;

	if (!json_object_object_get_ex(o, "op", &v) ||
	    !json_object_is_type(v, json_type_string))
		return RAMKEY_ERR_PROTOCOL;
	if ((*op = op_from_name(json_object_get_string(v))) == RAMKEY_OP_NONE)
		return RAMKEY_ERR_PROTOCOL;
	return 0;
}

/* ---- requests ---- */

static int decode_seal_key(struct json_object *v, struct ramkey_request *req)
{
	char *s = NULL;
	uint8_t *bin = NULL;
	size_t n = 0;
	int r;

	if ((r = get_str(v, 64, &s)) != 0)
		return r;
	if ((r = ramkey_b64_decode(s, strlen(s), &bin, &n)) != 0 ||
	    n != RAMKEY_SEAL_PK_LEN) {
		r = r == RAMKEY_ERR_NOMEM ? r : RAMKEY_ERR_PROTOCOL;
		goto out;
	}
	memcpy(req->seal_pk, bin, RAMKEY_SEAL_PK_LEN);
	req->has_seal_pk = true;
out:
	free(s);
	free(bin);
	return r;
}

static int decode_request_field(struct ramkey_request *req, const char *k,
    struct json_object *v, unsigned *seen)
{
	int r;

	if (strcmp(k, "v") == 0 || strcmp(k, "op") == 0)
		return 0;
	if (strcmp(k, "user") == 0) {
		*seen |= F_USER;
		if ((r = get_str(v, 256, &req->user)) != 0)
			return r;
		return ramkey_valid_user_name(req->user) ? 0 :
							   RAMKEY_ERR_PROTOCOL;
	}
	if (strcmp(k, "seal_key") == 0) {
		*seen |= F_SEAL;
		return decode_seal_key(v, req);
	}
	if (strcmp(k, "pgp_key") == 0) {
		*seen |= F_PGP;
		if ((r = get_str(v, RAMKEY_PGP_KEY_MAX, &req->pgp_key)) != 0)
			return r;
		return req->pgp_key[0] != '\0' ? 0 : RAMKEY_ERR_PROTOCOL;
	}
	if (strcmp(k, "secret_file") == 0) {
		*seen |= F_FILE;
		if ((r = get_str(v, RAMKEY_PATH_MAX, &req->secret_file)) != 0)
			return r;
		return valid_path(req->secret_file) ? 0 : RAMKEY_ERR_PROTOCOL;
	}
	if (strcmp(k, "rhost") == 0) {
		*seen |= F_RHOST;
		if ((r = get_str(v, RAMKEY_RHOST_MAX, &req->rhost)) != 0)
			return r;
		return printable_line(req->rhost) ? 0 : RAMKEY_ERR_PROTOCOL;
	}
	if (strcmp(k, "tty") == 0) {
		*seen |= F_TTY;
		if ((r = get_str(v, RAMKEY_TTY_MAX, &req->tty)) != 0)
			return r;
		return printable_line(req->tty) ? 0 : RAMKEY_ERR_PROTOCOL;
	}
	if (strcmp(k, "service") == 0) {
		*seen |= F_SERVICE;
		if ((r = get_str(v, RAMKEY_SERVICE_MAX, &req->service)) != 0)
			return r;
		return printable_line(req->service) ? 0 : RAMKEY_ERR_PROTOCOL;
	}
	if (strcmp(k, "session") == 0) {
		*seen |= F_SESSION;
		if ((r = get_str(v, RAMKEY_SESSION_TOKEN_LEN,
		    &req->session)) != 0)
			return r;
		return is_hex(req->session, RAMKEY_SESSION_TOKEN_LEN) ?
		    0 : RAMKEY_ERR_PROTOCOL;
	}
	if (strcmp(k, "key_id") == 0) {
		*seen |= F_KEY_ID;
		if ((r = get_str(v, 64, &req->key_id)) != 0)
			return r;
		return ramkey_valid_key_id(req->key_id) ? 0 :
							  RAMKEY_ERR_PROTOCOL;
	}
	if (strcmp(k, "status") == 0) {
		*seen |= F_STATUS;
		if ((r = get_str(v, 16, &req->status)) != 0)
			return r;
		return valid_status(req->status) ? 0 : RAMKEY_ERR_PROTOCOL;
	}
	if (strcmp(k, "ttl") == 0) {
		int64_t t;

		*seen |= F_TTL;
		if (!json_object_is_type(v, json_type_int))
			return RAMKEY_ERR_PROTOCOL;
		t = json_object_get_int64(v);
		/* A hundred years is more than any max_ttl. */
		if (t <= 0 || t > 3153600000LL)
			return RAMKEY_ERR_PROTOCOL;
		req->ttl = (uint64_t)t;
		req->has_ttl = true;
		return 0;
	}
	if (strcmp(k, "default_file") == 0) {
		*seen |= F_DEFAULT_FILE;
		if (!json_object_is_type(v, json_type_boolean))
			return RAMKEY_ERR_PROTOCOL;
		req->default_file = json_object_get_boolean(v);
		return 0;
	}
	if (strcmp(k, "all") == 0) {
		*seen |= F_ALL;
		if (!json_object_is_type(v, json_type_boolean))
			return RAMKEY_ERR_PROTOCOL;
		req->all = json_object_get_boolean(v);
		return 0;
	}
	if (strcmp(k, "aborted") == 0) {
		*seen |= F_ABORTED;
		if (!json_object_is_type(v, json_type_boolean))
			return RAMKEY_ERR_PROTOCOL;
		req->aborted = json_object_get_boolean(v);
		return 0;
	}
	if (strcmp(k, "timeout_ms") == 0) {
		int64_t t;

		*seen |= F_TIMEOUT;
		if (!json_object_is_type(v, json_type_int))
			return RAMKEY_ERR_PROTOCOL;
		t = json_object_get_int64(v);
		if (t <= 0 || t > RAMKEY_TIMEOUT_MS_MAX)
			return RAMKEY_ERR_PROTOCOL;
		req->timeout_ms = (uint32_t)t;
		req->has_timeout = true;
		return 0;
	}
	return RAMKEY_ERR_PROTOCOL; /* unknown field */
}

int ramkey_request_decode(const uint8_t *buf, size_t len,
    struct ramkey_request **ret)
{
	struct json_object *o = NULL;
	struct ramkey_request *req = NULL;
	enum ramkey_op op;
	unsigned seen = 0;
	int r;

	*ret = NULL;
	if ((r = parse_json(buf, len, RAMKEY_FRAME_MAX, &o)) != 0)
		goto out;
	if ((r = check_version(o)) != 0 || (r = get_op(o, &op)) != 0)
		goto out;
	if ((req = ramkey_request_new(op)) == NULL) {
		r = RAMKEY_ERR_NOMEM;
		goto out;
	}
	json_object_object_foreach(o, k, v) {
		if ((r = decode_request_field(req, k, v, &seen)) != 0)
			goto out;
	}
	/* Validate: fields belong to the op, required ones are present. */
	if ((seen & ~allowed_fields(op)) != 0 ||
	    (seen & required_fields(op)) != required_fields(op)) {
		r = RAMKEY_ERR_PROTOCOL;
		goto out;
	}
	if ((op == RAMKEY_OP_OPEN_SESSION || op == RAMKEY_OP_FETCH) &&
	    !req->has_seal_pk && req->pgp_key == NULL) {
		r = RAMKEY_ERR_PROTOCOL;
		goto out;
	}
	/* revoke: every user's leases, or some of one user's, not both. */
	if ((seen & F_ALL) != 0 && (seen & (F_USER | F_KEY_ID)) != 0) {
		r = RAMKEY_ERR_PROTOCOL;
		goto out;
	}
	*ret = req;
	req = NULL;
out:
	ramkey_request_free(req);
	if (o != NULL)
		json_object_put(o);
	return r;
}

static int add_str(struct json_object *o, const char *k, const char *s)
{
	struct json_object *v;

	if (s == NULL)
		return 0;
	if ((v = json_object_new_string(s)) == NULL)
		return RAMKEY_ERR_NOMEM;
	if (json_object_object_add(o, k, v) != 0) {
		json_object_put(v);
		return RAMKEY_ERR_NOMEM;
	}
	return 0;
}

static int add_int(struct json_object *o, const char *k, int64_t i)
{
	struct json_object *v;

	if ((v = json_object_new_int64(i)) == NULL)
		return RAMKEY_ERR_NOMEM;
	if (json_object_object_add(o, k, v) != 0) {
		json_object_put(v);
		return RAMKEY_ERR_NOMEM;
	}
	return 0;
}

static int add_bool(struct json_object *o, const char *k, bool b)
{
	struct json_object *v;

	if ((v = json_object_new_boolean(b)) == NULL)
		return RAMKEY_ERR_NOMEM;
	if (json_object_object_add(o, k, v) != 0) {
		json_object_put(v);
		return RAMKEY_ERR_NOMEM;
	}
	return 0;
}

/*
 * A secret string of a message we encode (a reply's STS token) never
 * enters json-c: its print buffer grows by realloc, freeing the old copies
 * unwiped, and its string objects are freed unwiped too. The tree holds a
 * placeholder instead, whose serializer notes where the value goes and
 * writes as many filler bytes as the escaped value takes; to_text() writes
 * the value into its own copy of the text, which the caller wipes.
 */
struct secret_field {
	const char *value;
	size_t esc_len;		/* JSON-escaped, quotes excluded */
	size_t at;		/* offset of its opening quote in the text */
	bool placed;
};

static size_t json_escaped_len(const char *s)
{
	size_t n = 0;

	for (; *s != '\0'; s++)
		if (*s == '"' || *s == '\\')
			n += 2;
		else if ((unsigned char)*s < 0x20)
			n += 6;
		else
			n++;
	return n;
}

static void json_escape_into(char *d, const char *s)
{
	static const char hex[] = "0123456789abcdef";

	for (; *s != '\0'; s++) {
		unsigned char c = (unsigned char)*s;

		if (c == '"' || c == '\\') {
			*d++ = '\\';
			*d++ = (char)c;
		} else if (c < 0x20) {
			d[0] = '\\';
			d[1] = 'u';
			d[2] = '0';
			d[3] = '0';
			d[4] = hex[c >> 4];
			d[5] = hex[c & 15];
			d += 6;
		} else {
			*d++ = (char)c;
		}
	}
}

static int secret_field_serialize(struct json_object *jso,
    struct printbuf *pb, int level, int flags)
{
	struct secret_field *f = json_object_get_userdata(jso);

	(void)level;
	(void)flags;
	if (f->esc_len > (size_t)INT_MAX - 2 || pb->bpos < 0)
		return -1;
	f->at = (size_t)pb->bpos;
	f->placed = true;
	if (printbuf_memappend(pb, "\"", 1) < 0 ||
	    printbuf_memset(pb, -1, 'x', (int)f->esc_len) < 0 ||
	    printbuf_memappend(pb, "\"", 1) < 0)
		return -1;
	return 0;
}

static int add_secret_str(struct json_object *o, const char *k,
    struct secret_field *f, const char *value)
{
	struct json_object *v;

	memset(f, 0, sizeof(*f));
	if (value == NULL)
		return 0;
	f->value = value;
	f->esc_len = json_escaped_len(value);
	if ((v = json_object_new_boolean(0)) == NULL)
		return RAMKEY_ERR_NOMEM;
	json_object_set_serializer(v, secret_field_serialize, f, NULL);
	if (json_object_object_add(o, k, v) != 0) {
		json_object_put(v);
		return RAMKEY_ERR_NOMEM;
	}
	return 0;
}

/* o as text, in *out (malloc'd), with the secret field f (or NULL)
 * written in. */
static int to_text(struct json_object *o, size_t max, char **out,
    size_t *lenp, struct secret_field *f)
{
	const char *s;
	size_t n;

	s = json_object_to_json_string_ext(o,
	    JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
	if (s == NULL)
		return RAMKEY_ERR_NOMEM;
	n = strlen(s);
	if (n > max)
		return RAMKEY_ERR_TOO_LARGE;
	if (f != NULL && f->value != NULL && (!f->placed ||
	    f->at + f->esc_len + 1 >= n || s[f->at] != '"' ||
	    s[f->at + f->esc_len + 1] != '"'))
		return RAMKEY_ERR_INTERNAL;
	if ((*out = strdup(s)) == NULL)
		return RAMKEY_ERR_NOMEM;
	if (f != NULL && f->value != NULL)
		json_escape_into(*out + f->at + 1, f->value);
	if (lenp != NULL)
		*lenp = n;
	return 0;
}

int ramkey_request_encode(const struct ramkey_request *req, char **out,
    size_t *lenp)
{
	struct json_object *o = NULL;
	char *pk = NULL;
	int r;

	*out = NULL;
	if (lenp != NULL)
		*lenp = 0;
	if (op_from_name(ramkey_op_name(req->op)) == RAMKEY_OP_NONE)
		return RAMKEY_ERR_INVALID;
	if ((o = json_object_new_object()) == NULL)
		return RAMKEY_ERR_NOMEM;
	if (req->has_seal_pk &&
	    (r = ramkey_b64_encode(req->seal_pk, sizeof(req->seal_pk),
	    &pk)) != 0)
		goto out;
	if ((r = add_int(o, "v", RAMKEY_PROTOCOL_VERSION)) != 0 ||
	    (r = add_str(o, "op", ramkey_op_name(req->op))) != 0 ||
	    (r = add_str(o, "user", req->user)) != 0 ||
	    (r = add_str(o, "seal_key", pk)) != 0 ||
	    (r = add_str(o, "pgp_key", req->pgp_key)) != 0 ||
	    (r = add_str(o, "secret_file", req->secret_file)) != 0 ||
	    (r = add_str(o, "rhost", req->rhost)) != 0 ||
	    (r = add_str(o, "tty", req->tty)) != 0 ||
	    (r = add_str(o, "service", req->service)) != 0 ||
	    (r = add_str(o, "session", req->session)) != 0 ||
	    (r = add_str(o, "key_id", req->key_id)) != 0 ||
	    (r = add_str(o, "status", req->status)) != 0)
		goto out;
	if (req->has_ttl && (r = add_int(o, "ttl", (int64_t)req->ttl)) != 0)
		goto out;
	if (req->has_timeout &&
	    (r = add_int(o, "timeout_ms", (int64_t)req->timeout_ms)) != 0)
		goto out;
	if (req->aborted && (r = add_bool(o, "aborted", true)) != 0)
		goto out;
	if (req->default_file && (r = add_bool(o, "default_file", true)) != 0)
		goto out;
	if (req->all && (r = add_bool(o, "all", true)) != 0)
		goto out;
	if ((r = to_text(o, RAMKEY_FRAME_MAX, out, lenp, NULL)) != 0)
		goto out;
	/* Validate by the receiver's own rules. */
	{
		struct ramkey_request *check = NULL;

		r = ramkey_request_decode((const uint8_t *)*out, strlen(*out),
		    &check);
		ramkey_request_free(check);
		if (r != 0) {
			free(*out);
			*out = NULL;
			if (lenp != NULL)
				*lenp = 0;
			r = r == RAMKEY_ERR_NOMEM ? r : RAMKEY_ERR_INVALID;
		}
	}
out:
	free(pk);
	json_object_put(o);
	return r;
}

/* ---- replies ---- */

static int encode_key(struct json_object *o, const struct ramkey_key_info *k,
    struct secret_field *token)
{
	struct json_object *ko;
	char *sealed = NULL;
	int r;

	if ((ko = json_object_new_object()) == NULL)
		return RAMKEY_ERR_NOMEM;
	if (k->sealed != NULL &&
	    (r = ramkey_b64_encode(k->sealed, k->sealed_len, &sealed)) != 0)
		goto out;
	if ((r = add_str(ko, "access_key_id", k->access_key_id)) != 0 ||
	    (r = add_str(ko, "create_date", k->create_date)) != 0 ||
	    (r = add_str(ko, "status", k->status)) != 0 ||
	    (r = add_str(ko, "sealed_secret", sealed)) != 0 ||
	    (r = add_str(ko, "encrypted_secret", k->encrypted_secret)) != 0 ||
	    (r = add_str(ko, "key_fingerprint", k->key_fingerprint)) != 0 ||
	    (r = add_int(ko, "expires", k->expires)) != 0 ||
	    (r = add_secret_str(ko, "security_token", token,
	    k->security_token)) != 0 ||
	    (k->expiration != 0 &&
	    (r = add_int(ko, "expiration", k->expiration)) != 0) ||
	    (k->refresh_at != 0 &&
	    (r = add_int(ko, "refresh_at", k->refresh_at)) != 0))
		goto out;
	if (json_object_object_add(o, "key", ko) != 0) {
		r = RAMKEY_ERR_NOMEM;
		goto out;
	}
	ko = NULL;
out:
	free(sealed);
	if (ko != NULL)
		json_object_put(ko);
	return r;
}

int ramkey_reply_encode(const struct ramkey_reply *rep, char **out,
    size_t *lenp)
{
	struct json_object *o = NULL, *e = NULL;
	struct secret_field token = { 0 };
	int r;

	*out = NULL;
	if (lenp != NULL)
		*lenp = 0;
	if ((o = json_object_new_object()) == NULL)
		return RAMKEY_ERR_NOMEM;
	if ((r = add_int(o, "v", RAMKEY_PROTOCOL_VERSION)) != 0 ||
	    (r = add_str(o, "op", ramkey_op_name(rep->op))) != 0 ||
	    (r = add_bool(o, "ok", rep->error == 0)) != 0)
		goto out;
	if (rep->error != 0) {
		if ((e = json_object_new_object()) == NULL) {
			r = RAMKEY_ERR_NOMEM;
			goto out;
		}
		if ((r = add_str(e, "code",
		    ramkey_err_name(rep->error))) != 0 ||
		    (r = add_str(e, "message", rep->error_message != NULL ?
		    rep->error_message : ramkey_strerror(rep->error))) != 0 ||
		    (r = add_str(e, "ram_code", rep->ram_code)) != 0)
			goto out;
		if (json_object_object_add(o, "error", e) != 0) {
			r = RAMKEY_ERR_NOMEM;
			goto out;
		}
		e = NULL;
		r = to_text(o, RAMKEY_FRAME_MAX, out, lenp, NULL);
		goto out;
	}
	switch (rep->op) {
	case RAMKEY_OP_OPEN_SESSION:
	case RAMKEY_OP_FETCH:
		if ((r = encode_key(o, &rep->key, &token)) != 0 ||
		    (r = add_str(o, "session", rep->session)) != 0 ||
		    (r = add_str(o, "secret_file", rep->secret_file)) != 0 ||
		    (r = add_str(o, "region_id", rep->region_id)) != 0)
			goto out;
		break;
	case RAMKEY_OP_CLOSE_SESSION:
		if ((r = add_bool(o, "last_session", rep->last_session)) != 0)
			goto out;
		break;
	case RAMKEY_OP_REVOKE:
		if ((r = add_int(o, "revoked", rep->revoked)) != 0 ||
		    (rep->valid_until != 0 &&
		    (r = add_int(o, "valid_until", rep->valid_until)) != 0))
			goto out;
		break;
	case RAMKEY_OP_STATUS:
		if ((r = add_bool(o, "healthy", rep->healthy)) != 0)
			goto out;
		if (rep->status == NULL) {
			r = RAMKEY_ERR_INVALID;
			goto out;
		}
		if (json_object_object_add(o, "status",
		    json_object_get(rep->status)) != 0) {
			r = RAMKEY_ERR_NOMEM;
			goto out;
		}
		break;
	case RAMKEY_OP_SET_STATUS:
		break;
	case RAMKEY_OP_METRICS:
		if (rep->metrics == NULL || !metrics_text(rep->metrics)) {
			r = RAMKEY_ERR_INVALID;
			goto out;
		}
		if ((r = add_str(o, "metrics", rep->metrics)) != 0)
			goto out;
		break;
	default:
		r = RAMKEY_ERR_INVALID;
		goto out;
	}
	r = to_text(o, ramkey_reply_frame_max(rep->op), out, lenp, &token);
out:
	if (e != NULL)
		json_object_put(e);
	json_object_put(o);
	return r;
}

static int decode_error(struct json_object *e, struct ramkey_reply *rep)
{
	int r;

	if (!json_object_is_type(e, json_type_object))
		return RAMKEY_ERR_PROTOCOL;
	json_object_object_foreach(e, k, v) {
		if (strcmp(k, "code") == 0) {
			char *code = NULL;

			if ((r = get_str(v, 64, &code)) != 0)
				return r;
			rep->error = ramkey_err_from_name(code);
			/* Unknown names map to "internal": only the real
			 * "internal" may. */
			if (rep->error == RAMKEY_ERR_INTERNAL &&
			    strcmp(code,
			    ramkey_err_name(RAMKEY_ERR_INTERNAL)) != 0)
				rep->error = 0;
			free(code);
			if (rep->error == 0)
				return RAMKEY_ERR_PROTOCOL;
		} else if (strcmp(k, "message") == 0) {
			if ((r = get_str(v, RAMKEY_MESSAGE_TEXT_MAX,
			    &rep->error_message)) != 0)
				return r;
			if (!printable_line(rep->error_message))
				return RAMKEY_ERR_PROTOCOL;
		} else if (strcmp(k, "ram_code") == 0) {
			if ((r = get_str(v, 128, &rep->ram_code)) != 0)
				return r;
			if (!printable_line(rep->ram_code))
				return RAMKEY_ERR_PROTOCOL;
		} else {
			return RAMKEY_ERR_PROTOCOL;
		}
	}
	if (rep->error == 0 || rep->error_message == NULL)
		return RAMKEY_ERR_PROTOCOL;
	return 0;
}

/* A SecurityToken: printable ASCII, no spaces. */
static bool printable_token(const char *s)
{
	if (*s == '\0')
		return false;
	for (; *s != '\0'; s++)
		if ((unsigned char)*s <= 0x20 || (unsigned char)*s >= 0x7f)
			return false;
	return true;
}

static int decode_key(struct json_object *ko, struct ramkey_key_info *k)
{
	char *sealed = NULL;
	int r = 0;

	if (!json_object_is_type(ko, json_type_object))
		return RAMKEY_ERR_PROTOCOL;
	json_object_object_foreach(ko, name, v) {
		if (strcmp(name, "access_key_id") == 0) {
			if ((r = get_str(v, 64, &k->access_key_id)) != 0)
				goto out;
			if (!ramkey_valid_key_id(k->access_key_id))
				r = RAMKEY_ERR_PROTOCOL;
		} else if (strcmp(name, "create_date") == 0) {
			int64_t t;

			if ((r = get_str(v, 32, &k->create_date)) != 0)
				goto out;
			if (ramkey_parse_time(k->create_date, &t) != 0)
				r = RAMKEY_ERR_PROTOCOL;
		} else if (strcmp(name, "status") == 0) {
			if ((r = get_str(v, 16, &k->status)) != 0)
				goto out;
			if (!valid_status(k->status))
				r = RAMKEY_ERR_PROTOCOL;
		} else if (strcmp(name, "sealed_secret") == 0) {
			if ((r = get_str(v, 4096, &sealed)) != 0)
				goto out;
			r = ramkey_b64_decode(sealed, strlen(sealed),
			    &k->sealed, &k->sealed_len);
			if (r == RAMKEY_ERR_INVALID)
				r = RAMKEY_ERR_PROTOCOL;
		} else if (strcmp(name, "encrypted_secret") == 0) {
			if ((r = get_str(v, RAMKEY_FRAME_MAX,
			    &k->encrypted_secret)) != 0)
				goto out;
		} else if (strcmp(name, "key_fingerprint") == 0) {
			if ((r = get_str(v, 40, &k->key_fingerprint)) != 0)
				goto out;
			if (!is_hex(k->key_fingerprint, 40))
				r = RAMKEY_ERR_PROTOCOL;
		} else if (strcmp(name, "expires") == 0) {
			if (!json_object_is_type(v, json_type_int))
				r = RAMKEY_ERR_PROTOCOL;
			else
				k->expires = json_object_get_int64(v);
		} else if (strcmp(name, "security_token") == 0) {
			if ((r = get_str(v, RAMKEY_TOKEN_MAX,
			    &k->security_token)) != 0)
				goto out;
			if (!printable_token(k->security_token))
				r = RAMKEY_ERR_PROTOCOL;
		} else if (strcmp(name, "expiration") == 0 ||
		    strcmp(name, "refresh_at") == 0) {
			if (!json_object_is_type(v, json_type_int) ||
			    json_object_get_int64(v) <= 0)
				r = RAMKEY_ERR_PROTOCOL;
			else if (name[0] == 'e')
				k->expiration = json_object_get_int64(v);
			else
				k->refresh_at = json_object_get_int64(v);
		} else {
			r = RAMKEY_ERR_PROTOCOL;
		}
		if (r != 0)
			goto out;
	}
	/* A key without its id, date and status, or without its secret in
	 * one of the two forms, is useless to the requester. */
	if (k->access_key_id == NULL || k->create_date == NULL ||
	    k->status == NULL ||
	    (k->sealed == NULL && k->encrypted_secret == NULL) ||
	    (k->sealed != NULL && k->sealed_len <= crypto_box_SEALBYTES) ||
	    (k->encrypted_secret != NULL && (k->encrypted_secret[0] == '\0' ||
	    k->key_fingerprint == NULL)))
		r = RAMKEY_ERR_PROTOCOL;
out:
	free(sealed);
	return r;
}

static int decode_status_doc(struct json_object *v, struct ramkey_reply *rep)
{
	struct json_object *l, *p, *a;

	if (!json_object_is_type(v, json_type_object) ||
	    !json_object_object_get_ex(v, "leases", &l) ||
	    !json_object_is_type(l, json_type_array) ||
	    !json_object_object_get_ex(v, "pending_revocations", &p) ||
	    !json_object_is_type(p, json_type_int) ||
	    !json_object_object_get_ex(v, "ambiguous_keys", &a) ||
	    !json_object_is_type(a, json_type_array))
		return RAMKEY_ERR_PROTOCOL;
	for (size_t i = 0; i < json_object_array_length(l); i++)
		if (!json_object_is_type(json_object_array_get_idx(l, i),
		    json_type_object))
			return RAMKEY_ERR_PROTOCOL;
	rep->status = json_object_get(v);
	return 0;
}

static int decode_reply_field(struct ramkey_reply *rep, const char *k,
    struct json_object *v, bool ok)
{
	int r;

	if (strcmp(k, "v") == 0 || strcmp(k, "op") == 0 ||
	    strcmp(k, "ok") == 0)
		return 0;
	if (!ok)
		return strcmp(k, "error") == 0 ? decode_error(v, rep) :
						  RAMKEY_ERR_PROTOCOL;
	switch (rep->op) {
	case RAMKEY_OP_OPEN_SESSION:
	case RAMKEY_OP_FETCH:
		if (strcmp(k, "key") == 0)
			return decode_key(v, &rep->key);
		if (strcmp(k, "session") == 0 &&
		    rep->op == RAMKEY_OP_OPEN_SESSION) {
			if ((r = get_str(v, RAMKEY_SESSION_TOKEN_LEN,
			    &rep->session)) != 0)
				return r;
			return is_hex(rep->session, RAMKEY_SESSION_TOKEN_LEN) ?
			    0 : RAMKEY_ERR_PROTOCOL;
		}
		if (strcmp(k, "secret_file") == 0 &&
		    rep->op == RAMKEY_OP_FETCH) {
			if ((r = get_str(v, RAMKEY_PATH_MAX,
			    &rep->secret_file)) != 0)
				return r;
			return valid_path(rep->secret_file) ?
			    0 : RAMKEY_ERR_PROTOCOL;
		}
		if (strcmp(k, "region_id") == 0) {
			if ((r = get_str(v, 64, &rep->region_id)) != 0)
				return r;
			return printable_line(rep->region_id) ?
			    0 : RAMKEY_ERR_PROTOCOL;
		}
		break;
	case RAMKEY_OP_CLOSE_SESSION:
		if (strcmp(k, "last_session") == 0) {
			if (!json_object_is_type(v, json_type_boolean))
				return RAMKEY_ERR_PROTOCOL;
			rep->last_session = json_object_get_boolean(v);
			return 0;
		}
		break;
	case RAMKEY_OP_REVOKE:
		if (strcmp(k, "revoked") == 0) {
			int64_t n;

			if (!json_object_is_type(v, json_type_int))
				return RAMKEY_ERR_PROTOCOL;
			n = json_object_get_int64(v);
			if (n < 0 || n > UINT32_MAX)
				return RAMKEY_ERR_PROTOCOL;
			rep->revoked = (uint32_t)n;
			return 0;
		}
		if (strcmp(k, "valid_until") == 0) {
			if (!json_object_is_type(v, json_type_int) ||
			    json_object_get_int64(v) <= 0)
				return RAMKEY_ERR_PROTOCOL;
			rep->valid_until = json_object_get_int64(v);
			return 0;
		}
		break;
	case RAMKEY_OP_METRICS:
		if (strcmp(k, "metrics") == 0) {
			if ((r = get_str(v, RAMKEY_STATUS_FRAME_MAX,
			    &rep->metrics)) != 0)
				return r;
			return metrics_text(rep->metrics) ? 0 :
			    RAMKEY_ERR_PROTOCOL;
		}
		break;
	case RAMKEY_OP_STATUS:
		if (strcmp(k, "status") == 0)
			return decode_status_doc(v, rep);
		if (strcmp(k, "healthy") == 0) {
			if (!json_object_is_type(v, json_type_boolean))
				return RAMKEY_ERR_PROTOCOL;
			rep->healthy = json_object_get_boolean(v);
			return 0;
		}
		break;
	default:
		break;
	}
	return RAMKEY_ERR_PROTOCOL;
}

int ramkey_reply_decode(const uint8_t *buf, size_t len, enum ramkey_op expect,
    struct ramkey_reply **ret)
{
	struct json_object *o = NULL, *okv;
	struct ramkey_reply *rep = NULL;
	enum ramkey_op op;
	bool ok;
	int r;

	*ret = NULL;
	if ((r = parse_json(buf, len, ramkey_reply_frame_max(expect), &o)) != 0)
		goto out;
	if ((r = check_version(o)) != 0 || (r = get_op(o, &op)) != 0)
		goto out;
	r = RAMKEY_ERR_PROTOCOL;
	if (op != expect || !json_object_object_get_ex(o, "ok", &okv) ||
	    !json_object_is_type(okv, json_type_boolean))
		goto out;
	ok = json_object_get_boolean(okv);
	if ((rep = ramkey_reply_new(op)) == NULL) {
		r = RAMKEY_ERR_NOMEM;
		goto out;
	}
	json_object_object_foreach(o, k, v) {
		if ((r = decode_reply_field(rep, k, v, ok)) != 0)
			goto out;
	}
	r = RAMKEY_ERR_PROTOCOL;
	if (!ok && rep->error == 0)
		goto out;
	if (ok && (op == RAMKEY_OP_OPEN_SESSION || op == RAMKEY_OP_FETCH) &&
	    rep->key.access_key_id == NULL)
		goto out;
	if (ok && op == RAMKEY_OP_OPEN_SESSION && rep->session == NULL)
		goto out;
	if (ok && op == RAMKEY_OP_STATUS && rep->status == NULL)
		goto out;
	if (ok && op == RAMKEY_OP_METRICS && rep->metrics == NULL)
		goto out;
	*ret = rep;
	rep = NULL;
	r = 0;
out:
	ramkey_reply_free(rep);
	if (o != NULL)
		json_object_put(o);
	return r;
}
