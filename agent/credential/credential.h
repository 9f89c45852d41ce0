/*
 * Credential kinds: how a lease's credential is obtained, renewed and
 * ended, behind one interface the lease core drives (docs/ARCHITECTURE.md).
 *
 *   access_key  RAM CreateAccessKey for a RAM user; revoked at the end
 *               (UpdateAccessKey Inactive, then DeleteAccessKey); two per
 *               RAM user; an intent with a ListAccessKeys snapshot is made
 *               durable before CreateAccessKey.
 *   sts         STS AssumeRole of a role; expires by itself; unlimited;
 *               renewed on request.
 *
 * The core knows a kind only through struct kind_ops. A kind knows the
 * core only through struct kind_port (callbacks the core hands it). A
 * kind's own sub-states (deactivating, deleting, parked) stay inside the
 * kind: the core persists them as an opaque string with the lease.
 *
 * All callbacks run on the event loop, never inside the function that
 * started the operation. An operation handle is valid until its callback
 * has run or it was cancelled.
 */
#ifndef RAMKEY_CREDENTIAL_H
#define RAMKEY_CREDENTIAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CRED_ID_MAX 64
#define CRED_DATE_MAX 32
#define CRED_STATUS_MAX 16
#define KIND_CODE_MAX 96
#define KIND_MESSAGE_MAX 512
#define KIND_STATE_MAX 32

/* A credential as a kind obtained it. Borrowed: valid during the
 * callback that carries it. */
struct credential {
	const char *id;		 /* AccessKeyId ("STS.…" for STS) */
	const char *secret;	 /* AccessKeySecret */
	size_t secret_len;
	const char *token;	 /* SecurityToken, or NULL */
	const char *create_date; /* RFC 3339 UTC as the cloud sent it */
	int64_t create_time;	 /* the same, Unix seconds */
	int64_t expiration;	 /* Unix seconds it stops working; 0: never */
	const char *status;	 /* "Active" or "Inactive" */
};

/* Why an operation failed: one line for the user, never a secret. */
struct kind_error {
	int rc;				/* RAMKEY_ERR_* */
	char code[KIND_CODE_MAX];	/* the cloud's Code, "" if none */
	char message[KIND_MESSAGE_MAX];
	bool transient;			/* transport, 5xx, throttling */
	bool outcome_unknown;		/* obtain: a credential may exist */
};

/* What a kind needs to know of a lease. Borrowed. */
struct kind_lease {
	const char *principal;	/* RAM user name or role ARN */
	const char *user;	/* local user */
	const char *cred_id;
	const char *kind_state;	/* the kind's sub-state, "" at first */
	const char *status;
	int64_t create_time;	/* Unix s */
	int64_t expiration;	/* Unix s, 0 = none */
	int64_t received_ms;	/* when the current credential arrived */
	int64_t lease_end_ms;	/* max_ttl: the lease ends then at the latest */
	bool has_secret;	/* the agent holds its secret */
	bool renewal_failed;	/* the last renewal try failed */
};

struct kind_error;
/* An obtain's try failed and the kind tries again (called with the
 * obtain's arg). */
typedef void (*kind_progress_fn)(void *arg, const struct kind_error *err);

/* An obtain request (a first credential, or a renewal of a lease's). */
struct kind_obtain {
	const char *principal;
	const char *user;	/* local user (session names) */
	unsigned long uid;	/* its uid */
	const char *intent;	/* what prepare() asked to make durable, or
				 * NULL */
	int64_t lease_end_ms;	/* the lease's max_ttl deadline (wall ms) */
	bool renewal;		/* the lease exists: a fresh credential for
				 * it */
	kind_progress_fn progress; /* may be NULL */
};

/* An unresolved intent (after a crash, or an obtain of unknown outcome). */
struct kind_intent {
	const char *principal;
	const char *user;
	const char *data;
	int64_t started_ms;
	bool recovered;		/* found at start-up */
};

/* How a lease's current credential may be used (see freshness()). */
enum kind_fresh {
	KIND_FRESH = 0,		/* hand it out */
	KIND_FRESH_RENEW,	/* hand it out, and renew it in the
				 * background */
	KIND_STALE_RENEW,	/* do not hand it out: wait for a renewal */
	KIND_REPLACE,		/* unusable: a new lease is needed */
};

/* The result of end(). */
enum kind_end {
	KIND_END_GONE = 0,	/* the credential no longer exists */
	KIND_END_RETAINED,	/* it exists, unusable (parked, or valid until
				 * it expires): the core keeps the record */
};

/* The state a core gives for a credential id (kind_port.cred_state). */
enum kind_cred_state {
	KIND_CRED_UNKNOWN = 0,	/* not one of this agent's */
	KIND_CRED_LIVE,
	KIND_CRED_ENDING,	/* being ended now */
	KIND_CRED_RETAINED,	/* ended, kept (parked) */
};

struct kind_op;

typedef void (*kind_prepare_fn)(void *arg, int rc, const char *intent,
    const struct kind_error *err);
/*
 * rc 0: cred is the new credential; intent_update non-NULL means an
 * earlier try may have made another one: the intent stays (with this
 * text) and is reconciled. rc != 0: err says why; err->outcome_unknown
 * means a credential may exist anyway (the intent stays).
 */
typedef void (*kind_obtain_fn)(void *arg, int rc,
    const struct credential *cred, const char *intent_update,
    const struct kind_error *err);
/* rc 0: the intent is resolved (lost credentials were handed to
 * port.adopt_orphan); else try again later. */
typedef void (*kind_reconcile_fn)(void *arg, int rc,
    const struct kind_error *err);
/* rc 0 with result and a word for the audit line ("deleted",
 * "already-gone", "deactivated", "expires"); else err (the core retries
 * with backoff). */
typedef void (*kind_end_fn)(void *arg, int rc, enum kind_end result,
    const char *detail, const struct kind_error *err);
/* Persist a progressed sub-state of a lease being ended, and the
 * credential's status at the cloud if it changed (else NULL). */
typedef void (*kind_save_fn)(void *arg, const char *kind_state,
    const char *status);
typedef void (*kind_done_fn)(void *arg, int rc, const struct kind_error *err);

/* What the core offers a kind. */
struct kind_port {
	void *core;
	enum kind_cred_state (*cred_state)(void *core, const char *principal,
	    const char *cred_id);
	/* End a retained credential of principal now (to free its slot). */
	void (*release_retained)(void *core, const char *principal,
	    const char *cred_id);
	/* A credential found during reconciliation that this agent made and
	 * lost: the core records it and ends it. */
	void (*adopt_orphan)(void *core, const char *principal,
	    const char *user, const char *cred_id, const char *create_date);
	/* Small durable notes the kind keeps for itself (ambiguous keys). */
	void (*note_put)(void *core, const char *ns, const char *key,
	    const char *value);
	void (*note_del)(void *core, const char *ns, const char *key);
};

struct kind_ops {
	const char *name;	/* "access_key", "sts": stored with leases */
	/* Credentials one principal may hold at once, account-wide; 0 =
	 * unlimited. With a limit, obtains for a principal run one at a time
	 * and a lease past 80% of max_ttl is replaced by a new one. */
	unsigned capacity;
	/* A lease's credential is renewed in place (new credentials into
	 * the same lease) instead of a new lease being made. */
	bool renews_in_place;

	void (*attach)(void *kind, const struct kind_port *port);
	/* A note loaded from the store at start. */
	void (*load_note)(void *kind, const char *ns, const char *key,
	    const char *value);

	/* Before an obtain (may be NULL): answers the intent text to make
	 * durable before obtain() runs, or NULL for none. */
	int (*prepare)(void *kind, const char *principal, const char *user,
	    kind_prepare_fn fn, void *arg, struct kind_op **op);
	int (*obtain)(void *kind, const struct kind_obtain *req,
	    kind_obtain_fn fn, void *arg, struct kind_op **op);
	/* May be NULL for kinds without intents. */
	int (*reconcile)(void *kind, const struct kind_intent *in,
	    kind_reconcile_fn fn, void *arg, struct kind_op **op);
	/*
	 * End a credential. purge: it was retained and must go now. save()
	 * persists progress (the sub-state); the core keeps it with the lease
	 * and passes it back in kl->kind_state after a restart.
	 */
	int (*end)(void *kind, const struct kind_lease *kl, bool purge,
	    kind_save_fn save, kind_end_fn fn, void *arg, struct kind_op **op);
	/* Active / Inactive at the cloud; NULL if the kind has no status. */
	int (*set_status)(void *kind, const struct kind_lease *kl,
	    const char *status, kind_done_fn fn, void *arg,
	    struct kind_op **op);
	/* How the lease's credential may be used now (wall ms). */
	enum kind_fresh (*freshness)(void *kind, const struct kind_lease *kl,
	    int64_t now_ms);
	/* When a retained credential may be forgotten (wall ms; 0 = only when
	 * purged). */
	int64_t (*retain_until)(void *kind, const struct kind_lease *kl);
	/* When a request will get a newer credential than this one (wall
	 * ms); NULL: the core's rotation point or the lease's end. */
	int64_t (*refresh_at)(void *kind, const struct kind_lease *kl);
	/* Cancel an operation: its callback will not run. */
	void (*cancel)(void *kind, struct kind_op *op);
	/* Credentials the kind could not attribute and left alone (R2's
	 * ambiguous keys): fn once per credential. */
	void (*foreach_ambiguous)(void *kind, void (*fn)(void *arg,
	    const char *principal, const char *cred_id), void *arg);
	/* The store was rewritten from memory: put every note again. */
	void (*resync)(void *kind);
	/* Free the kind's state; operations still in flight end without
	 * their callbacks. */
	void (*free)(void *kind);
};

/* A kind instance: its operations and its state. */
struct credential_kind {
	const struct kind_ops *ops;
	void *state;
};

/* Fill err (one line, printf-style). */
void kind_error_set(struct kind_error *err, int rc, const char *code,
    const char *fmt, ...) __attribute__((format(printf, 4, 5)));

#endif
