/* The status document: key ids masked, times RFC 3339 UTC. */
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "server_int.h"
#include "util.h"

bool server_healthy(struct server *s)
{
	return !lease_store_broken(s->core) && (s->health.cloud_ok == NULL ||
	    s->health.cloud_ok(s->health.arg));
}

static struct json_object *time_or_null(int64_t ms)
{
	char buf[32];

	if (ms <= 0)
		return NULL;
	ramkey_format_time(ms / 1000, buf);
	return json_object_new_string(buf);
}

struct collect {
	struct lease_info *v;
	char **strs;	/* copies: infos are borrowed */
	size_t n, cap;
	bool nomem;
};

static char *dup_or_null(struct collect *col, const char *s)
{
	char *d;

	if (s == NULL)
		return NULL;
	if ((d = strdup(s)) == NULL)
		col->nomem = true;
	return d;
}

static void collect_one(void *arg, const struct lease_info *li)
{
	struct collect *col = arg;
	struct lease_info *c;

	if (col->n == col->cap) {
		size_t n = col->cap ? col->cap * 2 : 64;
		struct lease_info *v = realloc(col->v, n * sizeof(*v));

		if (v == NULL) {
			col->nomem = true;
			return;
		}
		col->v = v;
		col->cap = n;
	}
	c = &col->v[col->n++];
	*c = *li;
	c->kind = li->kind; /* static */
	c->user = dup_or_null(col, li->user);
	c->principal = dup_or_null(col, li->principal);
	c->cred_id = dup_or_null(col, li->cred_id);
	c->create_date = dup_or_null(col, li->create_date);
	c->status = dup_or_null(col, li->status);
	c->key_fingerprint = dup_or_null(col, li->key_fingerprint);
}

static void collect_free(struct collect *col)
{
	size_t i;

	for (i = 0; i < col->n; i++) {
		free((char *)col->v[i].user);
		free((char *)col->v[i].principal);
		free((char *)col->v[i].cred_id);
		free((char *)col->v[i].create_date);
		free((char *)col->v[i].status);
		free((char *)col->v[i].key_fingerprint);
	}
	free(col->v);
}

static int by_user_then_age(const void *x, const void *y)
{
	const struct lease_info *a = x, *b = y;
	int c = strcmp(a->user, b->user);

	if (c != 0)
		return c;
	return a->received_ms < b->received_ms ? -1 :
	    a->received_ms > b->received_ms;
}

static struct json_object *lease_json(const struct lease_info *li)
{
	struct json_object *o = json_object_new_object();
	char masked[RAMKEY_MASKED_MAX];

	if (o == NULL)
		return NULL;
	ramkey_mask_key_id(li->cred_id, masked);
	json_object_object_add(o, "user", json_object_new_string(li->user));
	json_object_object_add(o, "ram_user",
	    json_object_new_string(li->principal));
	json_object_object_add(o, "access_key_id",
	    json_object_new_string(masked));
	json_object_object_add(o, "status", json_object_new_string(li->status));
	json_object_object_add(o, "create_time",
	    json_object_new_string(li->create_date));
	json_object_object_add(o, "expires", li->state == LEASE_LIVE ?
	    time_or_null(li->lease_end_ms) : NULL);
	json_object_object_add(o, "sessions",
	    json_object_new_int((int)li->sessions));
	json_object_object_add(o, "ttl_holder_expires",
	    time_or_null(li->ttl_expires_ms));
	json_object_object_add(o, "pending_revocation",
	    json_object_new_boolean(li->state == LEASE_ENDING));
	json_object_object_add(o, "key_fingerprint", li->key_fingerprint ?
	    json_object_new_string(li->key_fingerprint) : NULL);
	/* Credentials that expire by themselves (STS) say when, and which
	 * kind they are; an AccessKey lease keeps the shape it always had. */
	if (li->expiration != 0) {
		json_object_object_add(o, "kind",
		    json_object_new_string(li->kind));
		json_object_object_add(o, "credential_expires",
		    time_or_null(li->expiration * 1000));
		json_object_object_add(o, "ended",
		    json_object_new_boolean(li->state != LEASE_LIVE));
	}
	return o;
}

static void ambiguous_one(void *arg, const char *principal,
    const char *cred_id)
{
	struct json_object *ambig = arg, *o = json_object_new_object();
	char masked[RAMKEY_MASKED_MAX];

	if (o == NULL)
		return;
	ramkey_mask_key_id(cred_id, masked);
	json_object_object_add(o, "access_key_id",
	    json_object_new_string(masked));
	json_object_object_add(o, "ram_user",
	    json_object_new_string(principal));
	json_object_array_add(ambig, o);
}

struct json_object *status_document(struct server *s, const char *user)
{
	struct json_object *doc = NULL, *leases, *ambig;
	struct collect col = { 0 };
	size_t i, pending = 0;

	if ((doc = json_object_new_object()) == NULL ||
	    (leases = json_object_new_array()) == NULL)
		goto fail;
	json_object_object_add(doc, "leases", leases);
	lease_foreach(s->core, user, collect_one, &col);
	if (col.nomem)
		goto fail;
	if (col.n > 1) /* qsort() may not be given NULL, even for nothing */
		qsort(col.v, col.n, sizeof(*col.v), by_user_then_age);
	for (i = 0; i < col.n; i++) {
		struct json_object *o = lease_json(&col.v[i]);

		if (o == NULL)
			goto fail;
		json_object_array_add(leases, o);
		if (col.v[i].state == LEASE_ENDING)
			pending++;
	}
	json_object_object_add(doc, "pending_revocations",
	    json_object_new_int64((int64_t)pending));
	if ((ambig = json_object_new_array()) == NULL)
		goto fail;
	json_object_object_add(doc, "ambiguous_keys", ambig);
	/* Ambiguous keys have no local owner we could vouch for: only the
	 * whole-agent view (trusted callers) lists them. */
	if (user == NULL)
		lease_foreach_ambiguous(s->core, ambiguous_one, ambig);
	if (s->health.status_extra != NULL)
		s->health.status_extra(s->health.arg, doc);
	collect_free(&col);
	return doc;
fail:
	collect_free(&col);
	json_object_put(doc);
	return NULL;
}
