#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <sodium.h>

#include "clock.h"
#include "evloop.h"
#include "harness.h"
#include "ramkey_err.h"
#include "util.h"

/* ---- the clock ---- */

static int64_t fake_wall;
static uint64_t fake_mono;

static int64_t wall_fn(void *arg)
{
	(void)arg;
	return fake_wall;
}

static uint64_t mono_fn(void *arg)
{
	(void)arg;
	return fake_mono;
}

static const struct clock_source fake_source = { wall_fn, mono_fn, NULL };

void h_clock_init(int64_t wall_ms)
{
	fake_wall = wall_ms;
	fake_mono = 1000000;
	clock_set_source(&fake_source);
}

void h_advance(int64_t ms)
{
	fake_wall += ms;
	fake_mono += (uint64_t)ms;
}

int64_t h_now(void)
{
	return fake_wall;
}

/* ---- the store ---- */

struct row {
	struct row *next;
	char key[256];	/* lease id, token, intent id, user\npath, ns\nkey */
	char cred_id[CRED_ID_MAX + 1];
	char state[16];
	char *blob;	/* every column, for reloading */
};

struct waiter {
	struct waiter *next;
	store_commit_fn fn;
	void *arg;
};

struct fake_store {
	struct row *leases, *sessions, *intents, *files, *notes;
	struct waiter *waiters;
	bool broken;
	bool failed;	/* writes were dropped since the last commit */
	unsigned commits;
	/* Rows kept whole for reloading. */
	struct store_lease_row *lrows;
	size_t nlrows;
};

struct fake_store *fs_new(void)
{
	return calloc(1, sizeof(struct fake_store));
}

static void rows_free(struct row *r)
{
	while (r != NULL) {
		struct row *next = r->next;

		free(r->blob);
		free(r);
		r = next;
	}
}

void fs_free(struct fake_store *s)
{
	struct waiter *w;

	if (s == NULL)
		return;
	rows_free(s->leases);
	rows_free(s->sessions);
	rows_free(s->intents);
	rows_free(s->files);
	rows_free(s->notes);
	while ((w = s->waiters) != NULL) {
		s->waiters = w->next;
		free(w);
	}
	free(s);
}

void fs_set_broken(struct fake_store *s, bool broken)
{
	s->broken = broken;
}

unsigned fs_commits(struct fake_store *s)
{
	return s->commits;
}

static struct row **row_find(struct row **list, const char *key)
{
	for (; *list != NULL; list = &(*list)->next)
		if (strcmp((*list)->key, key) == 0)
			return list;
	return list;
}

static struct row *row_put(struct row **list, const char *key)
{
	struct row **pp = row_find(list, key), *r = *pp;

	if (r != NULL)
		return r;
	r = calloc(1, sizeof(*r));
	snprintf(r->key, sizeof(r->key), "%s", key);
	/* Append: rows load in the order they were made. */
	*pp = r;
	return r;
}

static void row_del(struct row **list, const char *key)
{
	struct row **pp = row_find(list, key), *r = *pp;

	if (r == NULL)
		return;
	*pp = r->next;
	free(r->blob);
	free(r);
}

static bool writable(struct fake_store *s)
{
	if (s->broken)
		s->failed = true;
	return !s->broken;
}

/* Rows are kept as "\x1f"-separated columns. */
static char *join(const char *const *v, size_t n)
{
	size_t len = 1, i;
	char *out, *p;

	for (i = 0; i < n; i++)
		len += (v[i] != NULL ? strlen(v[i]) : 2) + 1;
	p = out = malloc(len);
	for (i = 0; i < n; i++)
		p += sprintf(p, "%s\x1f", v[i] != NULL ? v[i] : "\x01");
	*p = '\0';
	return out;
}

static size_t split(char *blob, char **v, size_t max)
{
	size_t n = 0;
	char *p = blob, *e;

	while (n < max && (e = strchr(p, '\x1f')) != NULL) {
		*e = '\0';
		v[n++] = strcmp(p, "\x01") == 0 ? NULL : p;
		p = e + 1;
	}
	return n;
}

static void put_lease(void *arg, const struct store_lease_row *r)
{
	struct fake_store *s = arg;
	char id[24], uid[24], gid[24], rec[24], exp[24], ttl[24];
	const char *v[15];
	struct row *row;

	if (!writable(s))
		return;
	snprintf(id, sizeof(id), "%llu", (unsigned long long)r->id);
	snprintf(uid, sizeof(uid), "%lu", (unsigned long)r->uid);
	snprintf(gid, sizeof(gid), "%lu", (unsigned long)r->gid);
	snprintf(rec, sizeof(rec), "%lld", (long long)r->received_ms);
	snprintf(exp, sizeof(exp), "%lld", (long long)r->expiration);
	snprintf(ttl, sizeof(ttl), "%lld", (long long)r->ttl_expires_ms);
	v[0] = id; v[1] = r->kind; v[2] = r->user; v[3] = uid; v[4] = gid;
	v[5] = r->principal; v[6] = r->cred_id; v[7] = r->create_date;
	v[8] = rec; v[9] = exp; v[10] = r->status; v[11] = r->state;
	v[12] = r->kind_state; v[13] = ttl; v[14] = r->key_fingerprint;
	row = row_put(&s->leases, id);
	snprintf(row->cred_id, sizeof(row->cred_id), "%s", r->cred_id);
	snprintf(row->state, sizeof(row->state), "%s", r->state);
	free(row->blob);
	row->blob = join(v, 15);
}

static void del_lease(void *arg, uint64_t id)
{
	struct fake_store *s = arg;
	char key[24];
	struct row **pp;

	if (!writable(s))
		return;
	snprintf(key, sizeof(key), "%llu", (unsigned long long)id);
	row_del(&s->leases, key);
	/* and its sessions */
	for (pp = &s->sessions; *pp != NULL;) {
		char *v[11], *copy = strdup((*pp)->blob);

		split(copy, v, 11);
		if (strcmp(v[1], key) == 0) {
			struct row *r = *pp;

			*pp = r->next;
			free(r->blob);
			free(r);
		} else {
			pp = &(*pp)->next;
		}
		free(copy);
	}
}

static void put_session(void *arg, const struct store_session_row *r)
{
	struct fake_store *s = arg;
	char lid[24], pid[24], st[24], puid[24], opened[24];
	const char *v[11];
	struct row *row;

	if (!writable(s))
		return;
	snprintf(lid, sizeof(lid), "%llu", (unsigned long long)r->lease_id);
	snprintf(pid, sizeof(pid), "%ld", (long)r->pid);
	snprintf(st, sizeof(st), "%llu", (unsigned long long)r->start_time);
	snprintf(puid, sizeof(puid), "%lu", (unsigned long)r->peer_uid);
	snprintf(opened, sizeof(opened), "%lld", (long long)r->opened_ms);
	v[0] = r->token; v[1] = lid; v[2] = pid; v[3] = st; v[4] = r->boot_id;
	v[5] = puid; v[6] = r->secret_file; v[7] = r->rhost; v[8] = r->tty;
	v[9] = r->service; v[10] = opened;
	row = row_put(&s->sessions, r->token);
	free(row->blob);
	row->blob = join(v, 11);
}

static void del_session(void *arg, const char *token)
{
	struct fake_store *s = arg;

	if (writable(s))
		row_del(&s->sessions, token);
}

static void put_intent(void *arg, const struct store_intent_row *r)
{
	struct fake_store *s = arg;
	char id[24], started[24];
	const char *v[6];
	struct row *row;

	if (!writable(s))
		return;
	snprintf(id, sizeof(id), "%llu", (unsigned long long)r->id);
	snprintf(started, sizeof(started), "%lld", (long long)r->started_ms);
	v[0] = id; v[1] = r->kind; v[2] = r->principal; v[3] = r->user;
	v[4] = started; v[5] = r->data;
	row = row_put(&s->intents, id);
	free(row->blob);
	row->blob = join(v, 6);
}

static void del_intent(void *arg, uint64_t id)
{
	struct fake_store *s = arg;
	char key[24];

	snprintf(key, sizeof(key), "%llu", (unsigned long long)id);
	if (writable(s))
		row_del(&s->intents, key);
}

static void put_file(void *arg, const struct store_file_row *r)
{
	struct fake_store *s = arg;
	char key[256], w[24];
	const char *v[5];
	struct row *row;

	if (!writable(s))
		return;
	snprintf(key, sizeof(key), "%s\n%s", r->user, r->path);
	snprintf(w, sizeof(w), "%lld", (long long)r->written_ms);
	v[0] = r->user; v[1] = r->path; v[2] = r->cred_id; v[3] = r->token;
	v[4] = w;
	row = row_put(&s->files, key);
	free(row->blob);
	row->blob = join(v, 5);
}

static void del_file(void *arg, const char *user, const char *path)
{
	struct fake_store *s = arg;
	char key[256];

	snprintf(key, sizeof(key), "%s\n%s", user, path);
	if (writable(s))
		row_del(&s->files, key);
}

static void put_note(void *arg, const struct store_note_row *r)
{
	struct fake_store *s = arg;
	char key[256];
	const char *v[3] = { r->ns, r->key, r->value };
	struct row *row;

	if (!writable(s))
		return;
	snprintf(key, sizeof(key), "%s\n%s", r->ns, r->key);
	row = row_put(&s->notes, key);
	free(row->blob);
	row->blob = join(v, 3);
}

static void del_note(void *arg, const char *ns, const char *k)
{
	struct fake_store *s = arg;
	char key[256];

	snprintf(key, sizeof(key), "%s\n%s", ns, k);
	if (writable(s))
		row_del(&s->notes, key);
}

static int after_commit(void *arg, store_commit_fn fn, void *warg)
{
	struct fake_store *s = arg;
	struct waiter *w = calloc(1, sizeof(*w)), **pp;

	if (w == NULL)
		return RAMKEY_ERR_NOMEM;
	w->fn = fn;
	w->arg = warg;
	for (pp = &s->waiters; *pp != NULL; pp = &(*pp)->next)
		;
	*pp = w;
	return 0;
}

static void cancel_after_commit(void *arg, void *warg)
{
	struct fake_store *s = arg;
	struct waiter *w;

	for (w = s->waiters; w != NULL; w = w->next)
		if (w->arg == warg)
			w->fn = NULL;
}

static bool broken(void *arg)
{
	struct fake_store *s = arg;

	return s->broken || s->failed;
}

static bool resync_begin(void *arg)
{
	struct fake_store *s = arg;

	if (s->broken)
		return false;
	rows_free(s->leases);
	rows_free(s->sessions);
	rows_free(s->intents);
	rows_free(s->files);
	rows_free(s->notes);
	s->leases = s->sessions = s->intents = s->files = s->notes = NULL;
	s->failed = false;
	return true;
}

static int resync_end(void *arg)
{
	(void)arg;
	return 0;
}

static int load(void *arg, const struct store_loader *ld)
{
	struct fake_store *s = arg;
	struct row *r;
	int rc = 0;

	for (r = s->leases; r != NULL && rc == 0; r = r->next) {
		char *v[15], *copy = strdup(r->blob);
		struct store_lease_row row;

		split(copy, v, 15);
		memset(&row, 0, sizeof(row));
		row.id = strtoull(v[0], NULL, 10);
		row.kind = v[1];
		row.user = v[2];
		row.uid = (uid_t)strtoul(v[3], NULL, 10);
		row.gid = (gid_t)strtoul(v[4], NULL, 10);
		row.principal = v[5];
		row.cred_id = v[6];
		row.create_date = v[7];
		row.received_ms = strtoll(v[8], NULL, 10);
		row.expiration = strtoll(v[9], NULL, 10);
		row.status = v[10];
		row.state = v[11];
		row.kind_state = v[12];
		row.ttl_expires_ms = strtoll(v[13], NULL, 10);
		row.key_fingerprint = v[14];
		rc = ld->lease(ld->arg, &row);
		free(copy);
	}
	for (r = s->sessions; r != NULL && rc == 0; r = r->next) {
		char *v[11], *copy = strdup(r->blob);
		struct store_session_row row;

		split(copy, v, 11);
		memset(&row, 0, sizeof(row));
		row.token = v[0];
		row.lease_id = strtoull(v[1], NULL, 10);
		row.pid = (pid_t)strtol(v[2], NULL, 10);
		row.start_time = strtoull(v[3], NULL, 10);
		row.boot_id = v[4];
		row.peer_uid = (uid_t)strtoul(v[5], NULL, 10);
		row.secret_file = v[6];
		row.rhost = v[7];
		row.tty = v[8];
		row.service = v[9];
		row.opened_ms = strtoll(v[10], NULL, 10);
		rc = ld->session(ld->arg, &row);
		free(copy);
	}
	for (r = s->intents; r != NULL && rc == 0; r = r->next) {
		char *v[6], *copy = strdup(r->blob);
		struct store_intent_row row;

		split(copy, v, 6);
		row.id = strtoull(v[0], NULL, 10);
		row.kind = v[1];
		row.principal = v[2];
		row.user = v[3];
		row.started_ms = strtoll(v[4], NULL, 10);
		row.data = v[5];
		rc = ld->intent(ld->arg, &row);
		free(copy);
	}
	for (r = s->files; r != NULL && rc == 0; r = r->next) {
		char *v[5], *copy = strdup(r->blob);
		struct store_file_row row;

		split(copy, v, 5);
		row.user = v[0];
		row.path = v[1];
		row.cred_id = v[2];
		row.token = v[3];
		row.written_ms = strtoll(v[4], NULL, 10);
		rc = ld->file(ld->arg, &row);
		free(copy);
	}
	for (r = s->notes; r != NULL && rc == 0; r = r->next) {
		char *v[3], *copy = strdup(r->blob);
		struct store_note_row row;

		split(copy, v, 3);
		row.ns = v[0];
		row.key = v[1];
		row.value = v[2];
		rc = ld->note(ld->arg, &row);
		free(copy);
	}
	return rc;
}

/* Deliver commit callbacks: the batch is durable unless writes failed. */
static bool fs_commit(struct fake_store *s)
{
	struct waiter *list = s->waiters, *w;
	bool ok = !s->broken && !s->failed;

	if (list == NULL)
		return false;
	s->waiters = NULL;
	s->commits++;
	while ((w = list) != NULL) {
		list = w->next;
		if (w->fn != NULL)
			w->fn(w->arg, ok);
		free(w);
	}
	return true;
}

unsigned fs_count_leases(struct fake_store *s, const char *state)
{
	struct row *r;
	unsigned n = 0;

	for (r = s->leases; r != NULL; r = r->next)
		if (state == NULL || strcmp(r->state, state) == 0)
			n++;
	return n;
}

unsigned fs_count_sessions(struct fake_store *s)
{
	struct row *r;
	unsigned n = 0;

	for (r = s->sessions; r != NULL; r = r->next)
		n++;
	return n;
}

unsigned fs_count_intents(struct fake_store *s)
{
	struct row *r;
	unsigned n = 0;

	for (r = s->intents; r != NULL; r = r->next)
		n++;
	return n;
}

const char *fs_lease_state(struct fake_store *s, const char *cred_id)
{
	struct row *r;

	for (r = s->leases; r != NULL; r = r->next)
		if (strcmp(r->cred_id, cred_id) == 0)
			return r->state;
	return NULL;
}

/* ---- the kind ---- */

static struct fk_op *fk_op_new(struct fake_kind *k, enum fk_type type,
    const char *principal, void *arg)
{
	struct fk_op *op = calloc(1, sizeof(*op)), **pp;

	op->type = type;
	op->arg = arg;
	snprintf(op->principal, sizeof(op->principal), "%s", principal);
	for (pp = &k->pending; *pp != NULL; pp = &(*pp)->next)
		;
	*pp = op;
	k->started[type]++;
	return op;
}

static void fk_op_remove(struct fake_kind *k, struct fk_op *op)
{
	struct fk_op **pp;

	for (pp = &k->pending; *pp != NULL; pp = &(*pp)->next)
		if (*pp == op) {
			*pp = op->next;
			free(op);
			return;
		}
}

static void fk_attach(void *kind, const struct kind_port *port)
{
	struct fake_kind *k = kind;

	k->port = *port;
}

static int fk_prepare(void *kind, const char *principal, const char *user,
    kind_prepare_fn fn, void *arg, struct kind_op **opp)
{
	struct fk_op *op = fk_op_new(kind, FK_PREPARE, principal, arg);

	snprintf(op->user, sizeof(op->user), "%s", user);
	op->fn.prepare = fn;
	*opp = (struct kind_op *)op;
	return 0;
}

static int fk_obtain(void *kind, const struct kind_obtain *req,
    kind_obtain_fn fn, void *arg, struct kind_op **opp)
{
	struct fk_op *op = fk_op_new(kind, FK_OBTAIN, req->principal, arg);

	snprintf(op->user, sizeof(op->user), "%s", req->user);
	snprintf(op->intent, sizeof(op->intent), "%s",
	    req->intent != NULL ? req->intent : "");
	op->renewal = req->renewal;
	op->lease_end_ms = req->lease_end_ms;
	op->fn.obtain = fn;
	op->progress = req->progress;
	*opp = (struct kind_op *)op;
	return 0;
}

static int fk_reconcile(void *kind, const struct kind_intent *in,
    kind_reconcile_fn fn, void *arg, struct kind_op **opp)
{
	struct fk_op *op = fk_op_new(kind, FK_RECONCILE, in->principal, arg);

	snprintf(op->user, sizeof(op->user), "%s", in->user);
	snprintf(op->intent, sizeof(op->intent), "%s", in->data);
	op->fn.reconcile = fn;
	*opp = (struct kind_op *)op;
	return 0;
}

static int fk_end(void *kind, const struct kind_lease *kl, bool purge,
    kind_save_fn save, kind_end_fn fn, void *arg, struct kind_op **opp)
{
	struct fk_op *op = fk_op_new(kind, FK_END, kl->principal, arg);

	snprintf(op->cred_id, sizeof(op->cred_id), "%s", kl->cred_id);
	snprintf(op->kind_state, sizeof(op->kind_state), "%s", kl->kind_state);
	op->purge = purge;
	op->save = save;
	op->fn.end = fn;
	*opp = (struct kind_op *)op;
	return 0;
}

static int fk_set_status(void *kind, const struct kind_lease *kl,
    const char *status, kind_done_fn fn, void *arg, struct kind_op **opp)
{
	struct fk_op *op = fk_op_new(kind, FK_STATUS, kl->principal, arg);

	snprintf(op->cred_id, sizeof(op->cred_id), "%s", kl->cred_id);
	snprintf(op->kind_state, sizeof(op->kind_state), "%s", status);
	op->fn.done = fn;
	*opp = (struct kind_op *)op;
	return 0;
}

static enum kind_fresh fk_freshness(void *kind, const struct kind_lease *kl,
    int64_t now_ms)
{
	struct fake_kind *k = kind;
	int64_t left;

	if (kl->expiration == 0)
		return KIND_FRESH;
	left = kl->expiration * 1000 - now_ms;
	if (left >= k->renew_before_s * 1000)
		return KIND_FRESH;
	/* After a failed renewal try, a credential with a quarter of the
	 * margin left is handed out meanwhile. */
	if (kl->renewal_failed && left >= k->renew_before_s * 250)
		return KIND_FRESH_RENEW;
	return KIND_STALE_RENEW;
}

static int64_t fk_retain_until(void *kind, const struct kind_lease *kl)
{
	(void)kind;
	return kl->expiration * 1000;
}

static void fk_cancel(void *kind, struct kind_op *op)
{
	struct fake_kind *k = kind;

	k->cancelled++;
	fk_op_remove(k, (struct fk_op *)op);
}

static void fk_free(void *kind)
{
	struct fake_kind *k = kind;

	while (k->pending != NULL)
		fk_op_remove(k, k->pending);
	free(k);
}

struct fake_kind *fk_new(const char *name, unsigned capacity, bool renews)
{
	struct fake_kind *k = calloc(1, sizeof(*k));

	k->ops.name = name;
	k->ops.capacity = capacity;
	k->ops.renews_in_place = renews;
	k->ops.attach = fk_attach;
	k->ops.prepare = capacity > 0 ? fk_prepare : NULL;
	k->ops.obtain = fk_obtain;
	k->ops.reconcile = fk_reconcile;
	k->ops.end = fk_end;
	k->ops.set_status = capacity > 0 ? fk_set_status : NULL;
	k->ops.freshness = renews ? fk_freshness : NULL;
	k->ops.retain_until = fk_retain_until;
	k->ops.cancel = fk_cancel;
	k->ops.free = fk_free;
	k->with_intent = capacity > 0;
	k->renew_before_s = 20;
	return k;
}

struct fk_op *fk_pending(struct fake_kind *k, enum fk_type type)
{
	struct fk_op *op;

	for (op = k->pending; op != NULL; op = op->next)
		if (op->type == type)
			return op;
	return NULL;
}

unsigned fk_count_pending(struct fake_kind *k, enum fk_type type)
{
	struct fk_op *op;
	unsigned n = 0;

	for (op = k->pending; op != NULL; op = op->next)
		n += op->type == type;
	return n;
}

static void fk_error(struct kind_error *e, int rc, bool unknown)
{
	kind_error_set(e, rc, "Test.Failure", "the fake cloud said no");
	e->outcome_unknown = unknown;
	e->transient = unknown;
}

void fk_prepare_done(struct fake_kind *k, struct fk_op *op, int rc)
{
	struct kind_error e;
	kind_prepare_fn fn = op->fn.prepare;
	void *arg = op->arg;

	fk_op_remove(k, op);
	if (rc != 0) {
		fk_error(&e, rc, false);
		fn(arg, rc, NULL, &e);
	} else {
		fn(arg, 0, k->with_intent ? "[\"snapshot\"]" : NULL, NULL);
	}
}

const char *fk_obtain_done(struct fake_kind *k, struct fk_op *op, int rc,
    bool outcome_unknown)
{
	static char id[CRED_ID_MAX + 1];
	char secret[96], date[32];
	struct credential cred;
	struct kind_error e;
	kind_obtain_fn fn = op->fn.obtain;
	void *arg = op->arg;
	int64_t now = h_now() / 1000;

	fk_op_remove(k, op);
	if (rc != 0) {
		fk_error(&e, rc, outcome_unknown);
		fn(arg, rc, NULL, NULL, &e);
		return NULL;
	}
	snprintf(id, sizeof(id), "KEY%04u", ++k->next_cred);
	snprintf(secret, sizeof(secret), "secret-of-%s", id);
	ramkey_format_time(now, date);
	memset(&cred, 0, sizeof(cred));
	cred.id = id;
	cred.secret = secret;
	cred.secret_len = strlen(secret);
	cred.token = k->lifetime_s != 0 ? "token" : NULL;
	cred.create_date = date;
	cred.create_time = now;
	cred.expiration = k->lifetime_s != 0 ? now + k->lifetime_s : 0;
	cred.status = "Active";
	fn(arg, 0, &cred, outcome_unknown ? "[\"snapshot\"]" : NULL, NULL);
	return id;
}

void fk_reconcile_done(struct fake_kind *k, struct fk_op *op, int rc)
{
	struct kind_error e;
	kind_reconcile_fn fn = op->fn.reconcile;
	void *arg = op->arg;

	fk_op_remove(k, op);
	if (rc != 0) {
		fk_error(&e, rc, false);
		fn(arg, rc, &e);
	} else {
		fn(arg, 0, NULL);
	}
}

void fk_end_done(struct fake_kind *k, struct fk_op *op, int rc,
    enum kind_end result)
{
	struct kind_error e;
	kind_end_fn fn = op->fn.end;
	void *arg = op->arg;

	fk_op_remove(k, op);
	if (rc != 0) {
		fk_error(&e, rc, true);
		fn(arg, rc, result, NULL, &e);
	} else {
		fn(arg, 0, result, result == KIND_END_GONE ? "deleted" :
		    "retained", NULL);
	}
}

void fk_status_done(struct fake_kind *k, struct fk_op *op, int rc)
{
	struct kind_error e;
	kind_done_fn fn = op->fn.done;
	void *arg = op->arg;

	fk_op_remove(k, op);
	if (rc != 0) {
		fk_error(&e, rc, false);
		fn(arg, rc, &e);
	} else {
		fn(arg, 0, NULL);
	}
}

/* ---- the core on a loop ---- */

static void remove_file(void *arg, const char *user, uid_t uid, gid_t gid,
    const char *path)
{
	struct harness *h = arg;

	(void)user;
	(void)uid;
	(void)gid;
	h->removed_files++;
	snprintf(h->removed_path, sizeof(h->removed_path), "%s", path);
}

void h_setup(struct harness *h, struct fake_kind *k, struct fake_store *st)
{
	struct lease_store_port sp;
	struct lease_effects fx = { h, remove_file };
	struct credential_kind ck;

	if (sodium_init() < 0)
		abort();
	if (h->cfg.max_ttl_s == 0) {
		h->cfg.max_ttl_s = 3600;
		h->cfg.mint_rate = 20;
		h->cfg.mint_rate_period_s = 3600;
		h->cfg.fetch_paths_max = 8;
	}
	if (h->boot_id[0] == '\0')
		snprintf(h->boot_id, sizeof(h->boot_id), "%s",
		    "00000000-0000-0000-0000-000000000001");
	if (evloop_new(&h->loop) != 0)
		abort();
	h->store = st != NULL ? st : fs_new();
	h->kind = k;
	sp.s = h->store;
	sp.put_lease = put_lease;
	sp.del_lease = del_lease;
	sp.put_session = put_session;
	sp.del_session = del_session;
	sp.put_intent = put_intent;
	sp.del_intent = del_intent;
	sp.put_file = put_file;
	sp.del_file = del_file;
	sp.put_note = put_note;
	sp.del_note = del_note;
	sp.after_commit = after_commit;
	sp.cancel_after_commit = cancel_after_commit;
	sp.broken = broken;
	sp.resync_begin = resync_begin;
	sp.resync_end = resync_end;
	sp.load = load;
	if (lease_core_new(h->loop, &h->cfg, &sp, &fx, &h->core) != 0)
		abort();
	ck.ops = &k->ops;
	ck.state = k;
	if (lease_core_add_kind(h->core, &ck) != 0 ||
	    lease_core_recover(h->core, h->boot_id) != 0)
		abort();
	h_pump(h);
}

void h_pump(struct harness *h)
{
	int i;

	for (i = 0; i < 100; i++) {
		(void)evloop_run_once(h->loop, 0);
		if (!fs_commit(h->store))
			(void)evloop_run_once(h->loop, 0);
		if (h->store->waiters == NULL)
			break;
	}
}

struct fake_store *h_crash(struct harness *h)
{
	struct fake_store *st = h->store;
	struct waiter *w;

	/* Whatever was not committed is lost with the process... */
	while ((w = st->waiters) != NULL) {
		st->waiters = w->next;
		free(w);
	}
	lease_core_free(h->core);
	evloop_free(h->loop);
	h->core = NULL;
	h->loop = NULL;
	h->store = NULL;
	h->kind = NULL;
	return st;
}

void h_teardown(struct harness *h)
{
	struct fake_store *st = h_crash(h);

	fs_free(st);
	clock_set_source(NULL);
}

pid_t h_child(void)
{
	pid_t pid = fork();

	if (pid == 0) {
		for (;;)
			pause();
	}
	return pid;
}

void h_kill(pid_t pid)
{
	kill(pid, SIGKILL);
	(void)waitpid(pid, NULL, 0);
}

static void ready(void *arg, int rc, const struct lease_grant *g,
    const struct lease_failure *f)
{
	struct req *r = arg;

	r->done = true;
	r->rc = rc;
	r->wait = NULL;
	if (rc == 0) {
		r->lease_id = g->lease_id;
		r->minted = g->minted;
		snprintf(r->session, sizeof(r->session), "%s",
		    g->session != NULL ? g->session : "");
	} else {
		snprintf(r->message, sizeof(r->message), "%s",
		    f != NULL && f->message != NULL ? f->message : "");
	}
}

static void acquire(struct harness *h, struct req *r, struct lease_want *w)
{
	memset(r, 0, sizeof(*r));
	w->kind = h->kind->ops.name;
	if (lease_acquire(h->core, w, ready, r, &r->wait) != 0)
		abort();
	h_pump(h);
}

void h_acquire_session(struct harness *h, struct req *r, const char *user,
    const char *principal, pid_t pid)
{
	struct lease_want w;
	static char path[128];

	memset(&w, 0, sizeof(w));
	snprintf(path, sizeof(path), "/run/user/1000/%s.json", user);
	w.user = user;
	w.uid = 1000;
	w.gid = 1000;
	w.principal = principal;
	w.holder = LEASE_HOLD_SESSION;
	w.session_pid = pid;
	w.session_peer_uid = 0;
	w.secret_file = path;
	acquire(h, r, &w);
}

void h_acquire_ttl(struct harness *h, struct req *r, const char *user,
    const char *principal, uint64_t ttl_s)
{
	struct lease_want w;

	memset(&w, 0, sizeof(w));
	w.user = user;
	w.uid = 1000;
	w.gid = 1000;
	w.principal = principal;
	w.holder = LEASE_HOLD_TTL;
	w.ttl_s = ttl_s;
	acquire(h, r, &w);
}

int h_lease_state(struct harness *h, uint64_t id)
{
	struct lease_info li;

	if (lease_get(h->core, id, &li) != 0)
		return -1;
	return (int)li.state;
}
