/*
 * Asynchronous client for the Alibaba Cloud RPC-style APIs the agent uses:
 * RAM (2015-05-01) and, with its own instance, STS (2015-04-01), driven by
 * an evloop through libcurl's multi interface. Connections are
 * kept alive and reused; one slow call never blocks another.
 *
 * Every operation retries on Throttling*, ServiceUnavailable, InternalError,
 * HTTP 5xx and transport errors, with exponential backoff and jitter and a
 * fresh nonce and timestamp per try, until the operation's timeout. It never
 * retries LimitExceeded.*, EntityNotExist.*, NoPermission or
 * SignatureDoesNotMatch. Decisions are taken on RAM's Code, not on the HTTP
 * status. One try lasts at most RAM_TRY_MAX_MS.
 *
 * When RAM fails over and over (transport errors or 5xx on
 * RAM_BREAKER_THRESHOLD tries in a row, across calls), the client stops
 * sending every call's retries and sends one probe at a time instead, with
 * its own backoff (1 s doubling to 8 s); the others wait for it (within
 * their own timeouts) and all go as soon as a probe gets an answer. An
 * outage therefore costs a few calls, not a few per pending operation.
 *
 * The library never logs. Errors come back as a struct ram_error whose
 * message has been scrubbed (RAM echoes the string-to-sign in
 * SignatureDoesNotMatch) and never contains a secret.
 */
#ifndef RAMKEY_RAM_CLIENT_H
#define RAMKEY_RAM_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct evloop;
struct metrics;
struct ram_client;
struct ram_call;

enum ram_signature {
	RAM_SIG_V3 = 0, /* ACS3-HMAC-SHA256 */
	RAM_SIG_V1 = 1, /* HMAC-SHA1, SignatureVersion=1.0 */
};

struct ram_client_config {
	const char *endpoint;	/* base URL, e.g. "https://ram.aliyuncs.com" */
	const char *api_version;/* NULL: RAM's 2015-05-01 (STS: 2015-04-01) */
	const char *ca_file;	/* extra CA bundle (PEM) or NULL */
	const char *proxy;	/* HTTPS proxy, or NULL for libcurl's env
				 * rules */
	bool allow_http;	/* accept an http:// endpoint (tests, demo) */
	enum ram_signature signature;
	uint64_t create_timeout_ms; /* CreateAccessKey, AssumeRole: retries
				     * included */
	uint64_t update_timeout_ms; /* UpdateAccessKey */
	uint64_t delete_timeout_ms; /* DeleteAccessKey */
	uint64_t read_timeout_ms;   /* the reads; 0 = 60 s */
};

#define RAM_KEY_ID_MAX 64
#define RAM_STATUS_MAX 16
#define RAM_DATE_MAX 32
#define RAM_CODE_MAX 96
#define RAM_MESSAGE_MAX 384
#define RAM_REQUEST_ID_MAX 80
#define RAM_USER_NAME_MAX 64
#define RAM_OP_MAX 32
#define RAM_ARN_MAX 512
#define RAM_MARKER_MAX 512
#define RAM_TRY_MAX_MS 10000
#define RAM_BREAKER_THRESHOLD 5

enum ram_error_kind {
	RAM_ERRK_NONE = 0,
	RAM_ERRK_API,	    /* RAM answered with a Code */
	RAM_ERRK_HTTP,	    /* non-2xx answer without a usable Code */
	RAM_ERRK_TRANSPORT, /* connect, TLS, reset, ... */
	RAM_ERRK_TIMEOUT,   /* the operation's timeout ran out */
	RAM_ERRK_PARSE,	    /* a 2xx answer we could not parse */
	RAM_ERRK_LOCAL,	    /* out of memory, bad argument */
};

struct ram_error {
	enum ram_error_kind kind;
	long http_status;		     /* last HTTP status, 0 if none */
	char op[RAM_OP_MAX];		     /* "CreateAccessKey" */
	char code[RAM_CODE_MAX];	     /* RAM's Code, "" if none */
	char message[RAM_MESSAGE_MAX];	     /* scrubbed, one line */
	char request_id[RAM_REQUEST_ID_MAX]; /* RAM's RequestId, "" if none */
	unsigned attempts;		     /* tries made */
	bool transport_or_5xx;		     /* the last try failed that way */
	/* An earlier try ended without a definite answer (see ram_result). */
	bool earlier_try_unknown;
};

struct ram_access_key {
	char id[RAM_KEY_ID_MAX + 1];
	char status[RAM_STATUS_MAX];	 /* "Active" or "Inactive" */
	char create_date[RAM_DATE_MAX];	 /* as RAM sent it,
					  * "2015-01-23T12:33:18Z" */
	int64_t create_time;		 /* the same, Unix seconds */
	/*
	 * CreateAccessKey only: the secret, NUL-terminated, in locked memory
	 * (secure_buf.h) owned by the client. Valid only during the callback;
	 * it is wiped and freed when the callback returns. Copy it if needed.
	 */
	const char *secret;
	size_t secret_len;
};

/* AssumeRole's credential. secret and token are NUL-terminated, in locked
 * memory (secure_buf.h) owned by the client, valid during the callback. */
struct ram_sts_credential {
	char id[RAM_KEY_ID_MAX + 1];
	const char *secret;
	size_t secret_len;
	const char *token;
	size_t token_len;
	char expiration[RAM_DATE_MAX];	/* as STS sent it */
	int64_t expiration_time;	/* the same, Unix seconds */
	char arn[RAM_ARN_MAX + 1];	/* AssumedRoleUser.Arn */
};

struct ram_result {
	char request_id[RAM_REQUEST_ID_MAX];
	unsigned attempts; /* tries made */
	int64_t server_date; /* the answer's Date header, Unix s; 0 if none */
	/*
	 * An earlier try failed without a definite answer (transport error,
	 * timeout, 5xx): it may have been carried out by RAM all the same.
	 * For CreateAccessKey this means a second key may exist.
	 */
	bool earlier_try_unknown;
	/* CreateAccessKey */
	struct ram_access_key key;
	/* ListAccessKeys: owned by the client, valid during the callback */
	const struct ram_access_key *keys;
	size_t nkeys;
	/* GetUser */
	char user_name[RAM_USER_NAME_MAX + 1];
	char user_id[RAM_USER_NAME_MAX + 1];
	/* ListUsers, ListUsersForGroup: names owned by the client, valid
	 * during the callback; marker continues a truncated list. */
	char *const *users;
	size_t nusers;
	bool truncated;
	char marker[RAM_MARKER_MAX + 1];
	/* AssumeRole */
	struct ram_sts_credential sts;
	/* GetCallerIdentity */
	char arn[RAM_ARN_MAX + 1];
	char account_id[32];
	char identity_type[32];
};

/*
 * Completion callback, called exactly once per started call (unless the
 * call was cancelled or the client freed first), always from the event
 * loop, never from inside the function that started the call.
 * rc is 0 on success, else:
 *   RAMKEY_ERR_LIMIT	    LimitExceeded.User.AccessKey (err->code says so)
 *   RAMKEY_ERR_RAM	    any other refusal or failure (err->code, kind)
 *   RAMKEY_ERR_RAM_TIMEOUT the operation's timeout ran out (err->op names it)
 *   RAMKEY_ERR_NOMEM	    local failure
 * res is NULL unless rc is 0; err is NULL when rc is 0.
 */
typedef void (*ram_done_fn)(void *arg, int rc, const struct ram_result *res,
    const struct ram_error *err);

/*
 * Create a client. The config strings are copied. http:// endpoints are
 * refused with RAMKEY_ERR_CONFIG unless allow_http; TLS peer and host
 * verification are always on and cannot be turned off.
 */
int ram_client_new(struct evloop *loop, const struct ram_client_config *cfg,
    struct ram_client **ret);
/* Frees the client; in-flight calls end without their callbacks. */
void ram_client_free(struct ram_client *c);

/* Set (or replace) static credentials to sign with. Both are copied; the
 * secret into locked memory. */
int ram_client_set_credentials(struct ram_client *c, const char *key_id,
    const char *secret);

/*
 * Count calls in m (may be shared by clients): ramkey_cloud_calls_total
 * {action,result}, ramkey_cloud_retries_total{action,reason} and the
 * histogram ramkey_cloud_call_duration_seconds{action}. Labels name the
 * action and the outcome only, never a user or a key.
 */
int ram_client_set_metrics(struct ram_client *c, struct metrics *m);
/* Count c's calls in the families another client registered (the RAM and
 * the STS client share ramkey_cloud_*: the action label tells them apart). */
void ram_client_share_metrics(struct ram_client *c,
    const struct ram_client *from);

/*
 * Or take the credential to sign with from a source at every try (the
 * agent's own credential may be temporary and renewed). The strings are
 * borrowed for the try being built. Return 0, or RAMKEY_ERR_UNAVAILABLE
 * with why (one line): the call then fails at once, with that reason.
 */
struct ram_credential {
	const char *key_id;
	const char *secret;
	size_t secret_len;
	const char *token;	/* STS SecurityToken, or NULL */
};
typedef int (*ram_credential_fn)(void *arg, struct ram_credential *out,
    char *why, size_t whylen);
void ram_client_set_credential_source(struct ram_client *c,
    ram_credential_fn fn, void *arg);

/*
 * Operations. user may be NULL where RAM allows it (the caller's own
 * identity). ret, if not NULL, receives a handle for ram_call_cancel();
 * the handle is invalid once the callback has run.
 * Return 0 if the call was started, else a RAMKEY_ERR_* code (and the
 * callback will not be called).
 */
int ram_create_access_key(struct ram_client *c, const char *user,
    ram_done_fn fn, void *arg, struct ram_call **ret);
/* status: "Active" or "Inactive" */
int ram_update_access_key(struct ram_client *c, const char *user,
    const char *key_id, const char *status, ram_done_fn fn, void *arg,
    struct ram_call **ret);
/* A key (or user) that is already gone counts as success. */
int ram_delete_access_key(struct ram_client *c, const char *user,
    const char *key_id, ram_done_fn fn, void *arg, struct ram_call **ret);
int ram_list_access_keys(struct ram_client *c, const char *user,
    ram_done_fn fn, void *arg, struct ram_call **ret);
int ram_get_user(struct ram_client *c, const char *user, ram_done_fn fn,
    void *arg, struct ram_call **ret);
/* marker: NULL for the first page. */
int ram_list_users(struct ram_client *c, const char *marker, ram_done_fn fn,
    void *arg, struct ram_call **ret);
int ram_list_users_for_group(struct ram_client *c, const char *group,
    const char *marker, ram_done_fn fn, void *arg, struct ram_call **ret);

/* STS (a client made with the STS endpoint and api_version). */
struct ram_assume_role {
	const char *role_arn;
	const char *session_name;
	uint32_t duration_s;	/* 900..43200 */
	const char *policy;	/* session policy JSON, or NULL */
	const char *external_id;/* or NULL */
};
/* A try failed and another follows (err says why). */
typedef void (*ram_retry_fn)(void *arg, const struct ram_error *err);
int ram_assume_role(struct ram_client *c, const struct ram_assume_role *a,
    ram_done_fn fn, ram_retry_fn on_retry, void *arg, struct ram_call **ret);
int ram_get_caller_identity(struct ram_client *c, ram_done_fn fn, void *arg,
    struct ram_call **ret);

/* Abandon a call: its callback will not run. */
void ram_call_cancel(struct ram_call *call);

/*
 * Health, for `status`: true when the last completed try of any call
 * failed for a transport or 5xx reason and no try has succeeded since.
 */
bool ram_client_degraded(const struct ram_client *c);

/*
 * The error of the last finished try of any call, or NULL if it
 * succeeded: for telling a waiting requester why RAM is slow.
 */
const struct ram_error *ram_client_last_error(const struct ram_client *c);

/* The event loop the client runs on (for its callers' timers). */
struct evloop *ram_client_loop(const struct ram_client *c);

/* Number of calls started and not yet completed. */
size_t ram_client_in_flight(const struct ram_client *c);

/* Human-readable one-line text for an error (no secrets). */
const char *ram_error_kind_name(enum ram_error_kind kind);

#endif
