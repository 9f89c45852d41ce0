/* The lease core's store port, wired to the SQLite store. */
#include "lease.h"
#include "store.h"

static void put_lease(void *s, const struct store_lease_row *r)
{
	store_put_lease(s, r);
}

static void del_lease(void *s, uint64_t id)
{
	store_del_lease(s, id);
}

static void put_session(void *s, const struct store_session_row *r)
{
	store_put_session(s, r);
}

static void del_session(void *s, const char *token)
{
	store_del_session(s, token);
}

static void put_intent(void *s, const struct store_intent_row *r)
{
	store_put_intent(s, r);
}

static void del_intent(void *s, uint64_t id)
{
	store_del_intent(s, id);
}

static void put_file(void *s, const struct store_file_row *r)
{
	store_put_file(s, r);
}

static void del_file(void *s, const char *user, const char *path)
{
	store_del_file(s, user, path);
}

static void put_note(void *s, const struct store_note_row *r)
{
	store_put_note(s, r);
}

static void del_note(void *s, const char *ns, const char *key)
{
	store_del_note(s, ns, key);
}

static int after_commit(void *s, store_commit_fn fn, void *arg)
{
	return store_after_commit(s, fn, arg);
}

static void cancel_after_commit(void *s, void *arg)
{
	store_cancel_after_commit(s, arg);
}

static bool broken(void *s)
{
	return store_broken(s);
}

static bool resync_begin(void *s)
{
	return store_resync_begin(s);
}

static int resync_end(void *s)
{
	return store_resync_end(s);
}

static int load(void *s, const struct store_loader *ld)
{
	return store_load(s, ld);
}

void lease_store_port_sqlite(struct lease_store_port *p, struct store *s)
{
	p->s = s;
	p->put_lease = put_lease;
	p->del_lease = del_lease;
	p->put_session = put_session;
	p->del_session = del_session;
	p->put_intent = put_intent;
	p->del_intent = del_intent;
	p->put_file = put_file;
	p->del_file = del_file;
	p->put_note = put_note;
	p->del_note = del_note;
	p->after_commit = after_commit;
	p->cancel_after_commit = cancel_after_commit;
	p->broken = broken;
	p->resync_begin = resync_begin;
	p->resync_end = resync_end;
	p->load = load;
}
