#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <json-c/json.h>
#include <sqlite3.h>

#include "agent.h"
#include "lease_store.h"
#include "log.h"
#include "ramkey_err.h"
#include "secret_arena.h"
#include "strmap.h"
#include "util.h"

#define SCHEMA_VERSION "1"

static const char schema[] =
    "CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT NOT NULL);"
    "CREATE TABLE IF NOT EXISTS leases ("
    " id INTEGER PRIMARY KEY, user TEXT NOT NULL, uid INTEGER NOT NULL,"
    " gid INTEGER NOT NULL, ram_user TEXT NOT NULL,"
    " key_id TEXT NOT NULL UNIQUE, create_date TEXT NOT NULL,"
    " received_ms INTEGER NOT NULL, status TEXT NOT NULL,"
    " state TEXT NOT NULL, ttl_expires_ms INTEGER NOT NULL,"
    " key_fingerprint TEXT);"
    "CREATE TABLE IF NOT EXISTS sessions ("
    " token TEXT PRIMARY KEY, lease_id INTEGER NOT NULL,"
    " pid INTEGER NOT NULL, start_time INTEGER NOT NULL,"
    " boot_id TEXT NOT NULL, peer_uid INTEGER NOT NULL, secret_file TEXT,"
    " rhost TEXT, tty TEXT, service TEXT, opened_ms INTEGER NOT NULL);"
    "CREATE TABLE IF NOT EXISTS intents ("
    " id INTEGER PRIMARY KEY, ram_user TEXT NOT NULL, user TEXT NOT NULL,"
    " started_ms INTEGER NOT NULL, create_sent INTEGER NOT NULL,"
    " snapshot TEXT NOT NULL);"
    "CREATE TABLE IF NOT EXISTS files ("
    " user TEXT NOT NULL, path TEXT NOT NULL, key_id TEXT NOT NULL,"
    " token TEXT NOT NULL, PRIMARY KEY (user, path));"
    "CREATE TABLE IF NOT EXISTS ambiguous ("
    " key_id TEXT PRIMARY KEY, ram_user TEXT NOT NULL,"
    " found_ms INTEGER NOT NULL);";

enum stmt_id {
	S_PUT_LEASE,
	S_DEL_LEASE,
	S_DEL_LEASE_SESSIONS,
	S_PUT_SESSION,
	S_DEL_SESSION,
	S_PUT_INTENT,
	S_DEL_INTENT,
	S_PUT_AMBIG,
	S_DEL_AMBIG,
	S_PUT_FILE,
	S_DEL_FILE,
	S_COUNT
};

static const char *const stmt_sql[S_COUNT] = {
	[S_PUT_LEASE] = "INSERT OR REPLACE INTO leases (id, user, uid, gid,"
	    " ram_user, key_id, create_date, received_ms, status, state,"
	    " ttl_expires_ms, key_fingerprint)"
	    " VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
	[S_DEL_LEASE] = "DELETE FROM leases WHERE id = ?",
	[S_DEL_LEASE_SESSIONS] = "DELETE FROM sessions WHERE lease_id = ?",
	[S_PUT_SESSION] = "INSERT OR REPLACE INTO sessions (token, lease_id,"
	    " pid, start_time, boot_id, peer_uid, secret_file, rhost, tty,"
	    " service, opened_ms) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
	[S_DEL_SESSION] = "DELETE FROM sessions WHERE token = ?",
	[S_PUT_INTENT] = "INSERT OR REPLACE INTO intents (id, ram_user, user,"
	    " started_ms, create_sent, snapshot) VALUES (?,?,?,?,?,?)",
	[S_DEL_INTENT] = "DELETE FROM intents WHERE id = ?",
	[S_PUT_AMBIG] = "INSERT OR REPLACE INTO ambiguous (key_id, ram_user,"
	    " found_ms) VALUES (?,?,?)",
	[S_DEL_AMBIG] = "DELETE FROM ambiguous WHERE key_id = ?",
	[S_PUT_FILE] = "INSERT OR REPLACE INTO files (user, path, key_id,"
	    " token) VALUES (?,?,?,?)",
	[S_DEL_FILE] = "DELETE FROM files WHERE user = ? AND path = ?",
};

struct waiter {
	store_commit_fn fn;
	void *arg;
};

struct lease_store {
	sqlite3 *db;
	sqlite3_stmt *stmt[S_COUNT];
	bool in_txn;
	bool failed_batch; /* a write in the open batch failed */
	bool broken;
	struct waiter *waiters;
	size_t nwaiters, cap;
};

static int exec(sqlite3 *db, const char *sql)
{
	return sqlite3_exec(db, sql, NULL, NULL, NULL) == SQLITE_OK ? 0 :
	    RAMKEY_ERR_STORE;
}

int lease_store_open(const char *state_dir, struct lease_store **ret,
    char **errp)
{
	struct lease_store *s = NULL;
	char path[4200], msg[8192];
	struct stat st;
	mode_t old;
	int i, rc;

	*ret = NULL;
	*errp = NULL;
	if (mkdir(state_dir, 0700) != 0 && errno != EEXIST) {
		snprintf(msg, sizeof(msg), "state_dir %s: cannot create: %s",
		    state_dir, strerror(errno));
		goto fail;
	}
	if (stat(state_dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
		snprintf(msg, sizeof(msg), "state_dir %s: not a directory",
		    state_dir);
		goto fail;
	}
	if ((st.st_mode & 0022) != 0 ||
	    (st.st_uid != 0 && st.st_uid != geteuid())) {
		snprintf(msg, sizeof(msg), "state_dir %s: must belong to the "
		    "agent's user or root and not be writable by others",
		    state_dir);
		goto fail;
	}
	snprintf(path, sizeof(path), "%s/leases.db", state_dir);
	if ((s = calloc(1, sizeof(*s))) == NULL) {
		snprintf(msg, sizeof(msg), "out of memory");
		goto fail;
	}
	old = umask(0077);
	rc = sqlite3_open_v2(path, &s->db, SQLITE_OPEN_READWRITE |
	    SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
	umask(old);
	if (rc != SQLITE_OK) {
		snprintf(msg, sizeof(msg), "%s: %s", path,
		    s->db ? sqlite3_errmsg(s->db) : "cannot open");
		goto fail;
	}
	/* Exclusive locking: a second agent on the same state_dir fails
	 * here instead of corrupting the first one's view. */
	if (exec(s->db, "PRAGMA locking_mode=EXCLUSIVE") != 0 ||
	    exec(s->db, "PRAGMA journal_mode=WAL") != 0 ||
	    exec(s->db, "PRAGMA synchronous=FULL") != 0 ||
	    exec(s->db, "PRAGMA journal_size_limit=0") != 0 ||
	    exec(s->db, "BEGIN IMMEDIATE") != 0) {
		snprintf(msg, sizeof(msg), "%s: %s (is another ramkey-agent "
		    "using this state_dir?)", path, sqlite3_errmsg(s->db));
		goto fail;
	}
	if (exec(s->db, schema) != 0 ||
	    exec(s->db, "INSERT OR IGNORE INTO meta VALUES ('schema', '"
	    SCHEMA_VERSION "')") != 0 ||
	    exec(s->db, "COMMIT") != 0) {
		snprintf(msg, sizeof(msg), "%s: %s", path,
		    sqlite3_errmsg(s->db));
		goto fail;
	}
	for (i = 0; i < S_COUNT; i++)
		if (sqlite3_prepare_v2(s->db, stmt_sql[i], -1, &s->stmt[i],
		    NULL) != SQLITE_OK) {
			snprintf(msg, sizeof(msg), "%s: %s", path,
			    sqlite3_errmsg(s->db));
			goto fail;
		}
	*ret = s;
	return 0;
fail:
	*errp = strdup(msg);
	lease_store_close(s);
	return RAMKEY_ERR_STORE;
}

void lease_store_close(struct lease_store *s)
{
	int i;

	if (s == NULL)
		return;
	for (i = 0; i < S_COUNT; i++)
		sqlite3_finalize(s->stmt[i]);
	if (s->db != NULL) {
		if (s->in_txn)
			(void)exec(s->db, "ROLLBACK");
		sqlite3_close(s->db);
	}
	free(s->waiters);
	free(s);
}

bool store_broken(const struct lease_store *s)
{
	return s->broken;
}

bool store_has_pending(const struct lease_store *s)
{
	return s->in_txn || s->nwaiters > 0 || s->failed_batch;
}

/* Begin the batch's transaction if needed; false if writes are off. */
static bool batch_begin(struct lease_store *s)
{
	if (s->broken || s->failed_batch)
		return false;
	if (s->in_txn)
		return true;
	if (exec(s->db, "BEGIN IMMEDIATE") != 0) {
		s->failed_batch = true;
		return false;
	}
	s->in_txn = true;
	return true;
}

static void run_stmt(struct lease_store *s, sqlite3_stmt *st)
{
	int rc = sqlite3_step(st);

	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	if (rc != SQLITE_DONE) {
		log_err("state store write failed: %s", sqlite3_errmsg(s->db));
		s->failed_batch = true;
	}
}

static void bind_text(sqlite3_stmt *st, int i, const char *v)
{
	if (v != NULL)
		sqlite3_bind_text(st, i, v, -1, SQLITE_STATIC);
	else
		sqlite3_bind_null(st, i);
}

static const char *state_name(enum lease_state st)
{
	switch (st) {
	case LEASE_REVOKING:
		return "revoking";
	case LEASE_PARKED:
		return "parked";
	default:
		return "live";
	}
}

void store_put_lease(struct lease_store *s, const struct lease *l)
{
	sqlite3_stmt *st = s->stmt[S_PUT_LEASE];

	if (!batch_begin(s))
		return;
	sqlite3_bind_int64(st, 1, (sqlite3_int64)l->id);
	bind_text(st, 2, l->user);
	sqlite3_bind_int64(st, 3, l->uid);
	sqlite3_bind_int64(st, 4, l->gid);
	bind_text(st, 5, l->ram_user);
	bind_text(st, 6, l->key_id);
	bind_text(st, 7, l->create_date);
	sqlite3_bind_int64(st, 8, l->received_ms);
	bind_text(st, 9, l->status);
	bind_text(st, 10, state_name(l->state));
	sqlite3_bind_int64(st, 11, l->ttl_expires_ms);
	bind_text(st, 12, l->key_fingerprint);
	run_stmt(s, st);
}

void store_del_lease(struct lease_store *s, uint64_t id)
{
	if (!batch_begin(s))
		return;
	sqlite3_bind_int64(s->stmt[S_DEL_LEASE_SESSIONS], 1,
	    (sqlite3_int64)id);
	run_stmt(s, s->stmt[S_DEL_LEASE_SESSIONS]);
	sqlite3_bind_int64(s->stmt[S_DEL_LEASE], 1, (sqlite3_int64)id);
	run_stmt(s, s->stmt[S_DEL_LEASE]);
}

void store_put_session(struct lease_store *s, const struct session *ss)
{
	sqlite3_stmt *st = s->stmt[S_PUT_SESSION];

	if (!batch_begin(s))
		return;
	bind_text(st, 1, ss->token);
	sqlite3_bind_int64(st, 2, (sqlite3_int64)ss->lease->id);
	sqlite3_bind_int64(st, 3, ss->pid);
	sqlite3_bind_int64(st, 4, (sqlite3_int64)ss->start_time);
	bind_text(st, 5, ss->boot_id);
	sqlite3_bind_int64(st, 6, ss->peer_uid);
	bind_text(st, 7, ss->secret_file);
	bind_text(st, 8, ss->rhost);
	bind_text(st, 9, ss->tty);
	bind_text(st, 10, ss->service);
	sqlite3_bind_int64(st, 11, ss->opened_ms);
	run_stmt(s, st);
}

void store_del_session(struct lease_store *s, const char *token)
{
	if (!batch_begin(s))
		return;
	bind_text(s->stmt[S_DEL_SESSION], 1, token);
	run_stmt(s, s->stmt[S_DEL_SESSION]);
}

static char *snapshot_json(const struct intent *in)
{
	struct json_object *a = json_object_new_array();
	char *out = NULL;
	size_t i;

	if (a == NULL)
		return NULL;
	for (i = 0; i < in->nsnapshot; i++)
		json_object_array_add(a, json_object_new_string(
		    in->snapshot[i]));
	out = strdup(json_object_to_json_string_ext(a,
	    JSON_C_TO_STRING_PLAIN));
	json_object_put(a);
	return out;
}

void store_put_intent(struct lease_store *s, const struct intent *in)
{
	sqlite3_stmt *st = s->stmt[S_PUT_INTENT];
	char *snap;

	if (!batch_begin(s))
		return;
	if ((snap = snapshot_json(in)) == NULL) {
		s->failed_batch = true;
		return;
	}
	sqlite3_bind_int64(st, 1, (sqlite3_int64)in->id);
	bind_text(st, 2, in->ram_user);
	bind_text(st, 3, in->user);
	sqlite3_bind_int64(st, 4, in->started_ms);
	sqlite3_bind_int(st, 5, in->create_sent ? 1 : 0);
	bind_text(st, 6, snap);
	run_stmt(s, st);
	free(snap);
}

void store_del_intent(struct lease_store *s, uint64_t id)
{
	if (!batch_begin(s))
		return;
	sqlite3_bind_int64(s->stmt[S_DEL_INTENT], 1, (sqlite3_int64)id);
	run_stmt(s, s->stmt[S_DEL_INTENT]);
}

void store_put_ambiguous(struct lease_store *s, const char *key_id,
    const char *ram_user)
{
	sqlite3_stmt *st = s->stmt[S_PUT_AMBIG];

	if (!batch_begin(s))
		return;
	bind_text(st, 1, key_id);
	bind_text(st, 2, ram_user);
	sqlite3_bind_int64(st, 3, wall_ms());
	run_stmt(s, st);
}

void store_del_ambiguous(struct lease_store *s, const char *key_id)
{
	if (!batch_begin(s))
		return;
	bind_text(s->stmt[S_DEL_AMBIG], 1, key_id);
	run_stmt(s, s->stmt[S_DEL_AMBIG]);
}

void store_put_file(struct lease_store *s, const char *user,
    const struct file_rec *f)
{
	sqlite3_stmt *st = s->stmt[S_PUT_FILE];

	if (!batch_begin(s))
		return;
	bind_text(st, 1, user);
	bind_text(st, 2, f->path);
	bind_text(st, 3, f->key_id);
	bind_text(st, 4, f->token);
	run_stmt(s, st);
}

void store_del_file(struct lease_store *s, const char *user,
    const char *path)
{
	if (!batch_begin(s))
		return;
	bind_text(s->stmt[S_DEL_FILE], 1, user);
	bind_text(s->stmt[S_DEL_FILE], 2, path);
	run_stmt(s, s->stmt[S_DEL_FILE]);
}

int store_after_commit(struct lease_store *s, store_commit_fn fn, void *arg)
{
	if (s->nwaiters == s->cap) {
		size_t n = s->cap ? s->cap * 2 : 16;
		struct waiter *w = realloc(s->waiters, n * sizeof(*w));

		if (w == NULL)
			return RAMKEY_ERR_NOMEM;
		s->waiters = w;
		s->cap = n;
	}
	s->waiters[s->nwaiters].fn = fn;
	s->waiters[s->nwaiters].arg = arg;
	s->nwaiters++;
	return 0;
}

void store_cancel_after_commit(struct lease_store *s, void *arg)
{
	size_t i;

	for (i = 0; i < s->nwaiters; i++)
		if (s->waiters[i].arg == arg)
			s->waiters[i].fn = NULL;
}

void store_commit(struct lease_store *s)
{
	struct waiter *w;
	size_t n, i;
	bool ok;

	if (s->in_txn && !s->failed_batch) {
		if (exec(s->db, "COMMIT") != 0) {
			log_err("state store commit failed: %s",
			    sqlite3_errmsg(s->db));
			s->failed_batch = true;
		} else {
			s->in_txn = false;
		}
	}
	if (s->failed_batch) {
		if (s->in_txn)
			(void)exec(s->db, "ROLLBACK");
		s->in_txn = false;
		if (!s->broken)
			log_err("state store is not writable; no new keys "
			    "until it is (revocations go on)");
		s->broken = true;
		s->failed_batch = false;
	}
	ok = !s->broken;
	/* Callbacks may stage more writes and register more waiters for
	 * the next batch; take this batch's list first. */
	w = s->waiters;
	n = s->nwaiters;
	s->waiters = NULL;
	s->nwaiters = s->cap = 0;
	for (i = 0; i < n; i++)
		if (w[i].fn != NULL)
			w[i].fn(w[i].arg, ok);
	free(w);
}

int store_resync(struct lease_store *s, struct agent *a)
{
	struct strmap_iter it;
	void *v;
	const char *k;
	bool was = s->broken;

	if (s->in_txn)
		return 0;
	s->broken = false;
	s->failed_batch = false;
	if (!batch_begin(s)) {
		s->broken = was;
		return RAMKEY_ERR_STORE;
	}
	if (exec(s->db, "DELETE FROM sessions; DELETE FROM leases; "
	    "DELETE FROM intents; DELETE FROM ambiguous; "
	    "DELETE FROM files;") != 0)
		s->failed_batch = true;
	strmap_iter_init(&it);
	while (!s->failed_batch && strmap_next(a->leases, &it, &k, &v)) {
		struct lease *l = v;
		struct session *ss;

		store_put_lease(s, l);
		for (ss = l->sessions; ss != NULL; ss = ss->next_in_lease)
			store_put_session(s, ss);
	}
	strmap_iter_init(&it);
	while (!s->failed_batch && strmap_next(a->ram_users, &it, &k, &v)) {
		struct ram_user_state *rs = v;

		/* A running mint's own intent is not durable yet: mint.c
		 * stages it, and waits for its commit, before sending. */
		if (rs->intent != NULL)
			store_put_intent(s, rs->intent);
	}
	strmap_iter_init(&it);
	while (!s->failed_batch && strmap_next(a->users, &it, &k, &v)) {
		struct file_rec *f;

		for (f = ((struct user_state *)v)->files; f != NULL;
		    f = f->next)
			store_put_file(s, k, f);
	}
	strmap_iter_init(&it);
	while (!s->failed_batch && strmap_next(a->ambiguous, &it, &k, &v))
		store_put_ambiguous(s, k, v);
	if (!s->failed_batch && exec(s->db, "COMMIT") == 0) {
		s->in_txn = false;
		log_info("state store is writable again; state rewritten "
		    "from memory");
		return 0;
	}
	(void)exec(s->db, "ROLLBACK");
	s->in_txn = false;
	s->failed_batch = false;
	s->broken = true;
	return RAMKEY_ERR_STORE;
}

/* ---- loading ---- */

static char *col_dup(sqlite3_stmt *st, int i)
{
	const unsigned char *t = sqlite3_column_text(st, i);

	return t != NULL ? strdup((const char *)t) : NULL;
}

static int load_leases(struct lease_store *s, struct agent *a)
{
	sqlite3_stmt *st = NULL;
	int rc, r = 0;

	if (sqlite3_prepare_v2(s->db, "SELECT id, user, uid, gid, ram_user,"
	    " key_id, create_date, received_ms, status, state,"
	    " ttl_expires_ms, key_fingerprint FROM leases ORDER BY id",
	    -1, &st, NULL) != SQLITE_OK)
		return RAMKEY_ERR_STORE;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		const char *user = (const char *)sqlite3_column_text(st, 1);
		const char *ram = (const char *)sqlite3_column_text(st, 4);
		const char *kid = (const char *)sqlite3_column_text(st, 5);
		const char *cd = (const char *)sqlite3_column_text(st, 6);
		const char *status = (const char *)sqlite3_column_text(st, 8);
		const char *state = (const char *)sqlite3_column_text(st, 9);
		struct lease *l;

		if (user == NULL || ram == NULL || kid == NULL || cd == NULL ||
		    status == NULL || state == NULL ||
		    !ramkey_valid_key_id(kid)) {
			log_warn("state store: skipping a malformed lease row");
			continue;
		}
		l = lease_new(a, user, (uid_t)sqlite3_column_int64(st, 2),
		    (gid_t)sqlite3_column_int64(st, 3), ram);
		if (l == NULL) {
			r = RAMKEY_ERR_NOMEM;
			break;
		}
		l->id = (uint64_t)sqlite3_column_int64(st, 0);
		snprintf(l->key_id, sizeof(l->key_id), "%s", kid);
		snprintf(l->create_date, sizeof(l->create_date), "%s", cd);
		(void)ramkey_parse_time(l->create_date, &l->create_time);
		l->received_ms = sqlite3_column_int64(st, 7);
		snprintf(l->status, sizeof(l->status), "%s", status);
		l->state = strcmp(state, "revoking") == 0 ? LEASE_REVOKING :
		    strcmp(state, "parked") == 0 ? LEASE_PARKED : LEASE_LIVE;
		l->ttl_expires_ms = sqlite3_column_int64(st, 10);
		l->key_fingerprint = col_dup(st, 11);
		if (l->id >= a->next_lease_id)
			a->next_lease_id = l->id + 1;
		lease_link(a, l);
	}
	sqlite3_finalize(st);
	return rc == SQLITE_DONE ? r : RAMKEY_ERR_STORE;
}

static struct lease *lease_by_id(struct agent *a, uint64_t id)
{
	struct strmap_iter it;
	void *v;

	strmap_iter_init(&it);
	while (strmap_next(a->leases, &it, NULL, &v))
		if (((struct lease *)v)->id == id)
			return v;
	return NULL;
}

static int load_sessions(struct lease_store *s, struct agent *a)
{
	sqlite3_stmt *st = NULL;
	int rc;

	if (sqlite3_prepare_v2(s->db, "SELECT token, lease_id, pid,"
	    " start_time, boot_id, peer_uid, secret_file, rhost, tty, service,"
	    " opened_ms FROM sessions", -1, &st, NULL) != SQLITE_OK)
		return RAMKEY_ERR_STORE;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		const char *token = (const char *)sqlite3_column_text(st, 0);
		const char *boot = (const char *)sqlite3_column_text(st, 4);
		struct lease *l = lease_by_id(a,
		    (uint64_t)sqlite3_column_int64(st, 1));
		struct session *ss;

		if (token == NULL || boot == NULL || l == NULL ||
		    strlen(token) != RAMKEY_SESSION_TOKEN_LEN)
			continue;
		if ((ss = calloc(1, sizeof(*ss))) == NULL)
			break;
		snprintf(ss->token, sizeof(ss->token), "%s", token);
		ss->pid = (pid_t)sqlite3_column_int64(st, 2);
		ss->start_time = (uint64_t)sqlite3_column_int64(st, 3);
		snprintf(ss->boot_id, sizeof(ss->boot_id), "%s", boot);
		ss->peer_uid = (uid_t)sqlite3_column_int64(st, 5);
		ss->secret_file = col_dup(st, 6);
		ss->rhost = col_dup(st, 7);
		ss->tty = col_dup(st, 8);
		ss->service = col_dup(st, 9);
		ss->opened_ms = sqlite3_column_int64(st, 10);
		ss->pidfd = -1;
		ss->stored = true;
		ss->lease = l;
		ss->next_in_lease = l->sessions;
		l->sessions = ss;
		l->nsessions++;
		strmap_put(a->sessions, ss->token, ss);
	}
	sqlite3_finalize(st);
	return rc == SQLITE_DONE ? 0 : RAMKEY_ERR_STORE;
}

static int load_intents(struct lease_store *s, struct agent *a)
{
	sqlite3_stmt *st = NULL;
	int rc;

	if (sqlite3_prepare_v2(s->db, "SELECT id, ram_user, user, started_ms,"
	    " create_sent, snapshot FROM intents ORDER BY id", -1, &st,
	    NULL) != SQLITE_OK)
		return RAMKEY_ERR_STORE;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		const char *ram = (const char *)sqlite3_column_text(st, 1);
		const char *user = (const char *)sqlite3_column_text(st, 2);
		const char *snap = (const char *)sqlite3_column_text(st, 5);
		struct ram_user_state *rs;
		struct json_object *arr;
		struct intent *in;
		size_t i, n;

		if (ram == NULL || user == NULL || snap == NULL)
			continue;
		if ((rs = agent_ram_user(a, ram)) == NULL ||
		    (in = calloc(1, sizeof(*in))) == NULL)
			break;
		in->id = (uint64_t)sqlite3_column_int64(st, 0);
		in->ram_user = strdup(ram);
		in->user = strdup(user);
		in->started_ms = sqlite3_column_int64(st, 3);
		in->create_sent = sqlite3_column_int(st, 4) != 0;
		arr = json_tokener_parse(snap);
		n = arr != NULL && json_object_is_type(arr, json_type_array) ?
		    json_object_array_length(arr) : 0;
		in->snapshot = calloc(n + 1, sizeof(char *));
		for (i = 0; in->snapshot != NULL && i < n; i++) {
			const char *kid = json_object_get_string(
			    json_object_array_get_idx(arr, i));

			if (kid != NULL)
				in->snapshot[in->nsnapshot++] = strdup(kid);
		}
		if (arr != NULL)
			json_object_put(arr);
		if (in->id >= a->next_intent_id)
			a->next_intent_id = in->id + 1;
		if (rs->intent != NULL) {
			/* Only one mint per RAM user runs at a time, so
			 * there is at most one intent; keep the older. */
			store_del_intent(s, in->id);
			free(in->ram_user);
			free(in->user);
			for (i = 0; i < in->nsnapshot; i++)
				free(in->snapshot[i]);
			free(in->snapshot);
			free(in);
			continue;
		}
		rs->intent = in;
	}
	sqlite3_finalize(st);
	return rc == SQLITE_DONE ? 0 : RAMKEY_ERR_STORE;
}

static int load_ambiguous(struct lease_store *s, struct agent *a)
{
	sqlite3_stmt *st = NULL;
	int rc;

	if (sqlite3_prepare_v2(s->db, "SELECT key_id, ram_user FROM ambiguous",
	    -1, &st, NULL) != SQLITE_OK)
		return RAMKEY_ERR_STORE;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		const char *kid = (const char *)sqlite3_column_text(st, 0);
		const char *ram = (const char *)sqlite3_column_text(st, 1);
		char *dup;

		if (kid == NULL || ram == NULL || (dup = strdup(ram)) == NULL)
			continue;
		free(strmap_del(a->ambiguous, kid));
		if (strmap_put(a->ambiguous, kid, dup) != 0)
			free(dup);
	}
	sqlite3_finalize(st);
	return rc == SQLITE_DONE ? 0 : RAMKEY_ERR_STORE;
}

static int load_files(struct lease_store *s, struct agent *a)
{
	sqlite3_stmt *st = NULL;
	int rc;

	if (sqlite3_prepare_v2(s->db, "SELECT user, path, key_id, token FROM"
	    " files", -1, &st, NULL) != SQLITE_OK)
		return RAMKEY_ERR_STORE;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		const char *user = (const char *)sqlite3_column_text(st, 0);
		const char *path = (const char *)sqlite3_column_text(st, 1);
		const char *kid = (const char *)sqlite3_column_text(st, 2);
		const char *token = (const char *)sqlite3_column_text(st, 3);
		struct user_state *u;
		struct file_rec *f;

		if (user == NULL || path == NULL || kid == NULL ||
		    token == NULL || !ramkey_valid_key_id(kid) ||
		    strlen(token) > RAMKEY_SESSION_TOKEN_LEN ||
		    (u = agent_user(a, user)) == NULL ||
		    (f = calloc(1, sizeof(*f))) == NULL)
			continue;
		if ((f->path = strdup(path)) == NULL) {
			free(f);
			continue;
		}
		snprintf(f->key_id, sizeof(f->key_id), "%s", kid);
		snprintf(f->token, sizeof(f->token), "%s", token);
		f->next = u->files;
		u->files = f;
	}
	sqlite3_finalize(st);
	return rc == SQLITE_DONE ? 0 : RAMKEY_ERR_STORE;
}

int store_load(struct lease_store *s, struct agent *a)
{
	int r;

	if ((r = load_leases(s, a)) != 0 || (r = load_sessions(s, a)) != 0 ||
	    (r = load_intents(s, a)) != 0 || (r = load_ambiguous(s, a)) != 0 ||
	    (r = load_files(s, a)) != 0)
		return r;
	if (a->next_lease_id == 0)
		a->next_lease_id = 1;
	if (a->next_intent_id == 0)
		a->next_intent_id = 1;
	return 0;
}
