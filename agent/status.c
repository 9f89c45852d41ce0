/* The `status` document (DESIGN §3.2): key ids masked, times RFC 3339. */
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "agent.h"
#include "lease_store.h"
#include "strmap.h"
#include "util.h"

bool agent_healthy(struct agent *a)
{
	return !store_broken(a->store) && !ram_client_degraded(a->ram);
}

static int by_user_then_age(const void *x, const void *y)
{
	const struct lease *a = *(const struct lease *const *)x;
	const struct lease *b = *(const struct lease *const *)y;
	int c = strcmp(a->user, b->user);

	if (c != 0)
		return c;
	return a->received_ms < b->received_ms ? -1 :
	    a->received_ms > b->received_ms;
}

static struct json_object *time_or_null(int64_t ms)
{
	char buf[32];

	if (ms <= 0)
		return NULL;
	ramkey_format_time(ms / 1000, buf);
	return json_object_new_string(buf);
}

static struct json_object *lease_json(struct agent *a, const struct lease *l)
{
	struct json_object *o = json_object_new_object();
	char masked[RAMKEY_MASKED_MAX];

	if (o == NULL)
		return NULL;
	ramkey_mask_key_id(l->key_id, masked);
	json_object_object_add(o, "user", json_object_new_string(l->user));
	json_object_object_add(o, "ram_user",
	    json_object_new_string(l->ram_user));
	json_object_object_add(o, "access_key_id",
	    json_object_new_string(masked));
	json_object_object_add(o, "status", json_object_new_string(l->status));
	json_object_object_add(o, "create_time",
	    json_object_new_string(l->create_date));
	json_object_object_add(o, "expires", l->state == LEASE_LIVE ?
	    time_or_null(lease_expires_ms(a, l)) : NULL);
	json_object_object_add(o, "sessions",
	    json_object_new_int((int)l->nsessions));
	json_object_object_add(o, "ttl_holder_expires",
	    time_or_null(l->ttl_expires_ms));
	json_object_object_add(o, "pending_revocation",
	    json_object_new_boolean(l->state == LEASE_REVOKING));
	json_object_object_add(o, "key_fingerprint", l->key_fingerprint ?
	    json_object_new_string(l->key_fingerprint) : NULL);
	return o;
}

struct json_object *status_document(struct agent *a, const char *user)
{
	struct json_object *doc = NULL, *leases, *ambig;
	struct lease **list = NULL;
	struct strmap_iter it;
	size_t n = 0, i, pending = 0;
	const char *k;
	void *v;

	if ((doc = json_object_new_object()) == NULL ||
	    (leases = json_object_new_array()) == NULL)
		goto fail;
	json_object_object_add(doc, "leases", leases);
	if ((list = calloc(strmap_count(a->leases) + 1, sizeof(*list))) ==
	    NULL)
		goto fail;
	strmap_iter_init(&it);
	while (strmap_next(a->leases, &it, NULL, &v)) {
		struct lease *l = v;

		if (user == NULL || strcmp(l->user, user) == 0)
			list[n++] = l;
	}
	qsort(list, n, sizeof(*list), by_user_then_age);
	for (i = 0; i < n; i++) {
		struct json_object *o = lease_json(a, list[i]);

		if (o == NULL)
			goto fail;
		json_object_array_add(leases, o);
		if (list[i]->state == LEASE_REVOKING)
			pending++;
	}
	json_object_object_add(doc, "pending_revocations",
	    json_object_new_int64((int64_t)pending));
	if ((ambig = json_object_new_array()) == NULL)
		goto fail;
	json_object_object_add(doc, "ambiguous_keys", ambig);
	/* Ambiguous keys have no local owner we could vouch for: only
	 * the whole-agent view (trusted callers) lists them. */
	strmap_iter_init(&it);
	while (user == NULL && strmap_next(a->ambiguous, &it, &k, &v)) {
		struct json_object *o = json_object_new_object();
		char masked[RAMKEY_MASKED_MAX];

		if (o == NULL)
			goto fail;
		ramkey_mask_key_id(k, masked);
		json_object_object_add(o, "access_key_id",
		    json_object_new_string(masked));
		json_object_object_add(o, "ram_user",
		    json_object_new_string(v));
		json_object_array_add(ambig, o);
	}
	free(list);
	return doc;
fail:
	free(list);
	json_object_put(doc);
	return NULL;
}
