/*
 * Requests and replies on the agent socket (see PROTOCOL.md). Each is one
 * JSON object in one frame. Decoding parses, validates every field's type,
 * length and syntax, and rejects unknown fields.
 */
#ifndef RAMKEY_MESSAGE_H
#define RAMKEY_MESSAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <sodium.h>

#define RAMKEY_PROTOCOL_VERSION 1

#define RAMKEY_SESSION_TOKEN_LEN 32 /* hex characters */
#define RAMKEY_SEAL_PK_LEN crypto_box_PUBLICKEYBYTES
#define RAMKEY_PATH_MAX 4096
#define RAMKEY_PGP_KEY_MAX (48 * 1024)
#define RAMKEY_RHOST_MAX 255
#define RAMKEY_TTY_MAX 64
#define RAMKEY_SERVICE_MAX 64
#define RAMKEY_MESSAGE_TEXT_MAX 512

enum ramkey_op {
	RAMKEY_OP_NONE = 0,
	RAMKEY_OP_OPEN_SESSION,
	RAMKEY_OP_CLOSE_SESSION,
	RAMKEY_OP_FETCH,
	RAMKEY_OP_REVOKE,
	RAMKEY_OP_STATUS,
	RAMKEY_OP_SET_STATUS,
	RAMKEY_OP_METRICS,
};

const char *ramkey_op_name(enum ramkey_op op);
/* The largest reply body to a request of op: RAMKEY_FRAME_MAX, or
 * RAMKEY_STATUS_FRAME_MAX for the replies that list the whole agent
 * (status, metrics). */
size_t ramkey_reply_frame_max(enum ramkey_op op);

struct ramkey_request {
	enum ramkey_op op;
	char *user;	   /* target local user; NULL = the caller */
	bool has_seal_pk;
	uint8_t seal_pk[RAMKEY_SEAL_PK_LEN]; /* requester's X25519 key */
	char *pgp_key;	   /* base64, armored, or "keybase:NAME" */
	char *secret_file; /* absolute path the requester writes */
	char *rhost;	   /* PAM_RHOST, for the audit line */
	char *tty;	   /* PAM_TTY */
	char *service;	   /* PAM service name */
	char *session;	   /* session token (close_session) */
	char *key_id;	   /* revoke --key-id, set-status */
	char *status;	   /* set-status: "Active" or "Inactive" */
	bool has_ttl;
	uint64_t ttl;	   /* fetch --ttl, seconds */
	bool has_timeout;
	uint32_t timeout_ms; /* how long the requester will wait for a key */
	bool aborted;	     /* close_session: the file was never written */
	bool default_file;   /* fetch: will write the default path */
	bool all;	     /* revoke: every lease of every user; excludes
			      * user and key_id (trusted callers only) */
};

#define RAMKEY_TIMEOUT_MS_MAX 3600000

/* The key handed to a requester (open_session, fetch). */
struct ramkey_key_info {
	char *access_key_id;
	char *create_date; /* RAM's CreateDate, RFC 3339 */
	char *status;	   /* "Active" or "Inactive" */
	uint8_t *sealed;   /* crypto_box_seal of the secret; NULL with PGP */
	size_t sealed_len;
	char *encrypted_secret; /* base64 OpenPGP message, PGP only */
	char *key_fingerprint;	/* 40 lower-case hex, PGP only */
	int64_t expires;	/* when the lease ends at the latest */
	/* Temporary (STS) credentials; NULL / 0 for AccessKeys. */
	char *security_token;
	int64_t expiration;	/* when the credential stops working */
	int64_t refresh_at;	/* from then on, ask again for a fresh one */
};

#define RAMKEY_TOKEN_MAX 8192

struct json_object;

struct ramkey_reply {
	enum ramkey_op op;
	int error;	       /* 0, or a RAMKEY_ERR_* code */
	char *error_message;   /* one line, for the user */
	char *ram_code;	       /* RAM's Code when RAM refused */
	/* open_session, fetch */
	struct ramkey_key_info key;
	char *session;	       /* open_session: the session token */
	char *secret_file;     /* fetch: path a live PAM session wrote */
	char *region_id;
	/* close_session */
	bool last_session;
	/* revoke */
	uint32_t revoked;
	int64_t valid_until;	/* revoke: ended STS tokens work until then */
	/* status: the document `status --json` prints, owned */
	struct json_object *status;
	bool healthy;	       /* status: false = exit 7 */
	/* metrics: the Prometheus text exposition (printable ASCII lines,
	 * each ending in a newline) */
	char *metrics;
};

/* Allocate an empty request/reply. */
struct ramkey_request *ramkey_request_new(enum ramkey_op op);
/*
 * The timeout_ms to send when the caller waits wait_ms in all: a little
 * less (a quarter of it, at most 250 ms), so the agent's answer, with its
 * reason, arrives before the caller gives up.
 */
uint32_t ramkey_request_timeout_ms(uint64_t wait_ms);
void ramkey_request_free(struct ramkey_request *req);
struct ramkey_reply *ramkey_reply_new(enum ramkey_op op);
void ramkey_reply_free(struct ramkey_reply *rep);

/*
 * Encode to a JSON text (malloc'd, NUL-terminated). A request is checked
 * by decoding what was encoded, so nothing goes out that the agent would
 * refuse (RAMKEY_ERR_INVALID); replies are built by the agent from values
 * it has already validated.
 */
int ramkey_request_encode(const struct ramkey_request *req, char **out,
    size_t *lenp);
int ramkey_reply_encode(const struct ramkey_reply *rep, char **out,
    size_t *lenp);

/*
 * Decode a frame body. For replies, expect is the op of the request; a
 * reply for another op is a protocol error. Return 0, RAMKEY_ERR_PROTOCOL,
 * RAMKEY_ERR_VERSION, RAMKEY_ERR_TOO_LARGE or RAMKEY_ERR_NOMEM.
 */
int ramkey_request_decode(const uint8_t *buf, size_t len,
    struct ramkey_request **ret);
int ramkey_reply_decode(const uint8_t *buf, size_t len, enum ramkey_op expect,
    struct ramkey_reply **ret);

/* Set rep->error and a formatted message. */
void ramkey_reply_set_error(struct ramkey_reply *rep, int err,
    const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#endif
