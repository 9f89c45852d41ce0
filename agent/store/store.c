/*
 * The state store. Writes are staged as operations into the current batch
 * on the event loop; a committer thread runs each batch as one SQLite
 * transaction and syncs it, while the loop goes on serving (a pipelined
 * group commit). When a batch is durable, its after-commit callbacks run
 * on the loop. Loading happens on the loop before the committer starts.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sqlite3.h>

#include "evloop.h"
#include "log.h"
#include "ramkey_err.h"
#include "store.h"

#define SCHEMA_VERSION 2
#define OP_VALUES_MAX 16

static const char schema[] =
    "CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT NOT NULL);"
    "CREATE TABLE IF NOT EXISTS leases ("
    " id INTEGER PRIMARY KEY, kind TEXT NOT NULL, user TEXT NOT NULL,"
    " uid INTEGER NOT NULL, gid INTEGER NOT NULL, principal TEXT NOT NULL,"
    " cred_id TEXT NOT NULL, create_date TEXT NOT NULL,"
    " received_ms INTEGER NOT NULL, expiration INTEGER NOT NULL,"
    " status TEXT NOT NULL, state TEXT NOT NULL, kind_state TEXT,"
    " ttl_expires_ms INTEGER NOT NULL, key_fingerprint TEXT);"
    "CREATE TABLE IF NOT EXISTS sessions ("
    " token TEXT PRIMARY KEY, lease_id INTEGER NOT NULL,"
    " pid INTEGER NOT NULL, start_time INTEGER NOT NULL,"
    " boot_id TEXT NOT NULL, peer_uid INTEGER NOT NULL, secret_file TEXT,"
    " rhost TEXT, tty TEXT, service TEXT, opened_ms INTEGER NOT NULL);"
    "CREATE TABLE IF NOT EXISTS intents ("
    " id INTEGER PRIMARY KEY, kind TEXT NOT NULL, principal TEXT NOT NULL,"
    " user TEXT NOT NULL, started_ms INTEGER NOT NULL, data TEXT NOT NULL);"
    "CREATE TABLE IF NOT EXISTS files ("
    " user TEXT NOT NULL, path TEXT NOT NULL, cred_id TEXT NOT NULL,"
    " token TEXT NOT NULL, written_ms INTEGER NOT NULL,"
    " PRIMARY KEY (user, path));"
    "CREATE TABLE IF NOT EXISTS notes ("
    " ns TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL,"
    " PRIMARY KEY (ns, key));";

/*
 * Version 1 (ramkey 0.1) knew only AccessKeys: its lease states were
 * live, revoking and parked, and ambiguous keys had a table of their own.
 * Rows keep their meaning: revoking is ending, parked is ended with the
 * AccessKey kind's sub-state "parked".
 */
static const char migrate_v1[] =
    "ALTER TABLE leases RENAME TO leases_v1;"
    "ALTER TABLE intents RENAME TO intents_v1;"
    "ALTER TABLE files RENAME TO files_v1;"
    "%SCHEMA%"
    "INSERT INTO leases SELECT id, 'access_key', user, uid, gid, ram_user,"
    " key_id, create_date, received_ms, 0, status,"
    " CASE state WHEN 'revoking' THEN 'ending' WHEN 'parked' THEN 'ended'"
    " ELSE 'live' END, CASE state WHEN 'parked' THEN 'parked' ELSE NULL END,"
    " ttl_expires_ms, key_fingerprint FROM leases_v1;"
    "INSERT INTO intents SELECT id, 'access_key', ram_user, user,"
    " started_ms, snapshot FROM intents_v1;"
    "INSERT INTO files SELECT user, path, key_id, token, 0 FROM files_v1;"
    "INSERT INTO notes SELECT 'access_key.ambiguous', key_id, ram_user"
    " FROM ambiguous;"
    "DROP TABLE leases_v1; DROP TABLE intents_v1; DROP TABLE files_v1;"
    "DROP TABLE ambiguous;"
    "UPDATE meta SET v = '2' WHERE k = 'schema';";

enum stmt_id {
	S_PUT_LEASE,
	S_DEL_LEASE,
	S_DEL_LEASE_SESSIONS,
	S_PUT_SESSION,
	S_DEL_SESSION,
	S_PUT_INTENT,
	S_DEL_INTENT,
	S_PUT_FILE,
	S_DEL_FILE,
	S_PUT_NOTE,
	S_DEL_NOTE,
	S_CLEAR_ALL,
	S_COUNT
};

static const char *const stmt_sql[S_COUNT] = {
	[S_PUT_LEASE] = "INSERT OR REPLACE INTO leases (id, kind, user, uid,"
	    " gid, principal, cred_id, create_date, received_ms, expiration,"
	    " status, state, kind_state, ttl_expires_ms, key_fingerprint)"
	    " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
	[S_DEL_LEASE] = "DELETE FROM leases WHERE id = ?",
	[S_DEL_LEASE_SESSIONS] = "DELETE FROM sessions WHERE lease_id = ?",
	[S_PUT_SESSION] = "INSERT OR REPLACE INTO sessions (token, lease_id,"
	    " pid, start_time, boot_id, peer_uid, secret_file, rhost, tty,"
	    " service, opened_ms) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
	[S_DEL_SESSION] = "DELETE FROM sessions WHERE token = ?",
	[S_PUT_INTENT] = "INSERT OR REPLACE INTO intents (id, kind, principal,"
	    " user, started_ms, data) VALUES (?,?,?,?,?,?)",
	[S_DEL_INTENT] = "DELETE FROM intents WHERE id = ?",
	[S_PUT_FILE] = "INSERT OR REPLACE INTO files (user, path, cred_id,"
	    " token, written_ms) VALUES (?,?,?,?,?)",
	[S_DEL_FILE] = "DELETE FROM files WHERE user = ? AND path = ?",
	[S_PUT_NOTE] = "INSERT OR REPLACE INTO notes (ns, key, value)"
	    " VALUES (?,?,?)",
	[S_DEL_NOTE] = "DELETE FROM notes WHERE ns = ? AND key = ?",
	/* Not prepared: run with sqlite3_exec (several statements). */
	[S_CLEAR_ALL] = "DELETE FROM sessions; DELETE FROM leases; "
	    "DELETE FROM intents; DELETE FROM files; DELETE FROM notes;",
};

/* Rows that may be lost with the host's power: see store.h. */
static bool stmt_needs_sync(enum stmt_id st)
{
	switch (st) {
	case S_PUT_SESSION:
	case S_DEL_SESSION:
	case S_PUT_FILE:
	case S_DEL_FILE:
		return false;
	default:
		return true;
	}
}

/* One bound statement, its values copied (the loop's objects change). */
struct op {
	enum stmt_id stmt;
	int n;
	struct {
		enum { V_NULL, V_INT, V_TEXT } type;
		int64_t i;
		char *s;
	} v[OP_VALUES_MAX];
};

struct waiter {
	store_commit_fn fn;
	void *arg;
};

struct batch {
	struct op *ops;
	size_t nops, cap;
	struct waiter *waiters;
	size_t nwaiters, wcap;
	bool sync;	/* some row must survive a power failure */
	bool nomem;	/* an operation could not be staged */
	bool ok;	/* set by the committer */
};

enum store_state {
	ST_OK = 0,
	ST_BROKEN,	/* writes fail; nothing is staged */
	ST_RESYNCING,	/* a full rewrite is being staged or in flight */
};

struct store {
	sqlite3 *db;
	sqlite3_stmt *stmt[S_COUNT];
	enum store_state state;
	struct batch *open;	/* being filled on the loop */
	struct batch *flying;	/* with the committer */
	bool flying_is_resync;
	bool staging_resync;	/* between resync_begin and resync_end */
	/* The committer thread. */
	struct evloop *loop;
	pthread_t thread;
	bool thread_started;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct batch *todo;	/* handed over, not taken yet */
	struct batch *done;	/* committed (or not), not collected yet */
	bool quit;
	int efd;
	/* Committer only. */
	bool synchronous_full;
	uint64_t n_synced, n_unsynced;
};

static int exec(sqlite3 *db, const char *sql)
{
	return sqlite3_exec(db, sql, NULL, NULL, NULL) == SQLITE_OK ? 0 :
	    RAMKEY_ERR_STORE;
}

static void batch_free(struct batch *b)
{
	size_t i;
	int k;

	if (b == NULL)
		return;
	for (i = 0; i < b->nops; i++)
		for (k = 0; k < b->ops[i].n; k++)
			free(b->ops[i].v[k].s);
	free(b->ops);
	free(b->waiters);
	free(b);
}

static bool batch_empty(const struct batch *b)
{
	return b == NULL || (b->nops == 0 && b->nwaiters == 0 && !b->nomem);
}

/* ---- on the committer thread ---- */

static bool run_op(struct store *s, const struct op *op)
{
	sqlite3_stmt *st;
	int k, rc;

	if (op->stmt == S_CLEAR_ALL)
		return exec(s->db, stmt_sql[S_CLEAR_ALL]) == 0;
	st = s->stmt[op->stmt];
	for (k = 0; k < op->n; k++) {
		switch (op->v[k].type) {
		case V_INT:
			sqlite3_bind_int64(st, k + 1, op->v[k].i);
			break;
		case V_TEXT:
			sqlite3_bind_text(st, k + 1, op->v[k].s, -1,
			    SQLITE_STATIC);
			break;
		default:
			sqlite3_bind_null(st, k + 1);
			break;
		}
	}
	rc = sqlite3_step(st);
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	return rc == SQLITE_DONE;
}

/* FULL syncs the log at each commit; NORMAL (in WAL mode) leaves it to
 * the next FULL commit or checkpoint. */
static bool set_sync(struct store *s, bool full)
{
	if (s->synchronous_full == full)
		return true;
	if (exec(s->db, full ? "PRAGMA synchronous=FULL" :
	    "PRAGMA synchronous=NORMAL") != 0)
		return false;
	s->synchronous_full = full;
	return true;
}

/* Run a batch as one transaction; logging is thread-safe (syslog or
 * stderr lines). */
static bool commit_batch(struct store *s, const struct batch *b)
{
	size_t i;

	if (b->nomem)
		return false;
	if (b->nops == 0)
		return true;
	if (!set_sync(s, b->sync) || exec(s->db, "BEGIN IMMEDIATE") != 0) {
		log_err("state store: cannot begin a transaction: %s",
		    sqlite3_errmsg(s->db));
		return false;
	}
	for (i = 0; i < b->nops; i++)
		if (!run_op(s, &b->ops[i])) {
			log_err("state store write failed: %s",
			    sqlite3_errmsg(s->db));
			(void)exec(s->db, "ROLLBACK");
			return false;
		}
	if (exec(s->db, "COMMIT") != 0) {
		log_err("state store commit failed: %s", sqlite3_errmsg(s->db));
		(void)exec(s->db, "ROLLBACK");
		return false;
	}
	if (b->sync)
		s->n_synced++;
	else
		s->n_unsynced++;
	return true;
}

static void *committer(void *arg)
{
	struct store *s = arg;
	uint64_t one = 1;

	pthread_mutex_lock(&s->lock);
	for (;;) {
		struct batch *b;

		while (s->todo == NULL && !s->quit)
			pthread_cond_wait(&s->cond, &s->lock);
		if (s->todo == NULL)
			break;
		b = s->todo;
		s->todo = NULL;
		pthread_mutex_unlock(&s->lock);
		b->ok = commit_batch(s, b);
		pthread_mutex_lock(&s->lock);
		s->done = b;
		pthread_cond_broadcast(&s->cond);
		if (write(s->efd, &one, sizeof(one)) < 0) {
			/* The counter cannot overflow here; nothing to do. */
		}
	}
	pthread_mutex_unlock(&s->lock);
	return NULL;
}

/* ---- on the loop ---- */

static void handoff(struct store *s, struct batch *b, bool resync)
{
	s->flying = b;
	s->flying_is_resync = resync;
	if (!s->thread_started) {
		/* Before start (loading) or after close: commit inline. */
		b->ok = commit_batch(s, b);
		s->done = b;
		return;
	}
	pthread_mutex_lock(&s->lock);
	s->todo = b;
	pthread_cond_signal(&s->cond);
	pthread_mutex_unlock(&s->lock);
}

static void run_waiters(struct batch *b, bool ok)
{
	size_t i;

	for (i = 0; i < b->nwaiters; i++)
		if (b->waiters[i].fn != NULL)
			b->waiters[i].fn(b->waiters[i].arg, ok);
}

/* A batch came back: account for it, tell its waiters. */
static void collect(struct store *s)
{
	struct batch *b;
	bool resync;

	pthread_mutex_lock(&s->lock);
	b = s->done;
	s->done = NULL;
	pthread_mutex_unlock(&s->lock);
	if (b == NULL)
		return;
	resync = s->flying_is_resync;
	s->flying = NULL;
	if (!b->ok) {
		if (s->state != ST_BROKEN)
			log_err("state store is not writable; no new keys "
			    "until it is (revocations go on)");
		s->state = ST_BROKEN;
		/* Later changes assumed this batch: drop them too; a full
		 * rewrite catches up once writes work. */
		if (s->open != NULL) {
			run_waiters(s->open, false);
			batch_free(s->open);
			s->open = NULL;
		}
	} else if (resync) {
		s->state = ST_OK;
		log_info("state store is writable again; state rewritten "
		    "from memory");
	}
	run_waiters(b, b->ok);
	batch_free(b);
}

static void efd_ready(void *arg, int fd, uint32_t events)
{
	struct store *s = arg;
	uint64_t n;

	(void)events;
	if (read(fd, &n, sizeof(n)) < 0) {
		/* EAGAIN: another wake-up consumed it. */
	}
	collect(s);
	evloop_wake(s->loop);
}

static int schema_version(sqlite3 *db)
{
	sqlite3_stmt *st = NULL;
	int v = 0;

	if (sqlite3_prepare_v2(db, "SELECT v FROM meta WHERE k = 'schema'",
	    -1, &st, NULL) != SQLITE_OK)
		return 0; /* no meta table: a new store */
	if (sqlite3_step(st) == SQLITE_ROW)
		v = sqlite3_column_int(st, 0);
	sqlite3_finalize(st);
	return v;
}

/* Create the schema, or bring an older one up to date, in one
 * transaction. */
static int schema_setup(struct store *s, char *msg, size_t msglen,
    const char *path)
{
	int v = schema_version(s->db);
	char *sql = NULL;
	const char *mark;

	if (v > SCHEMA_VERSION) {
		snprintf(msg, msglen, "%s: written by a newer ramkey (schema "
		    "%d); upgrade ramkey or move the file away", path, v);
		return RAMKEY_ERR_STORE;
	}
	if (v == 1) {
		/* The migration script embeds the new schema. */
		mark = strstr(migrate_v1, "%SCHEMA%");
		if (asprintf(&sql, "%.*s%s%s", (int)(mark - migrate_v1),
		    migrate_v1, schema, mark + 8) < 0) {
			snprintf(msg, msglen, "out of memory");
			return RAMKEY_ERR_NOMEM;
		}
		if (exec(s->db, sql) != 0) {
			snprintf(msg, msglen, "%s: cannot upgrade the state "
			    "from schema 1: %s", path, sqlite3_errmsg(s->db));
			free(sql);
			return RAMKEY_ERR_STORE;
		}
		free(sql);
		log_info("state store %s upgraded from schema 1 to 2", path);
		return 0;
	}
	if (exec(s->db, schema) != 0 ||
	    exec(s->db, "INSERT OR IGNORE INTO meta VALUES ('schema', '2')") !=
	    0) {
		snprintf(msg, msglen, "%s: %s", path, sqlite3_errmsg(s->db));
		return RAMKEY_ERR_STORE;
	}
	return 0;
}

int store_open(const char *state_dir, struct store **ret, char **errp)
{
	struct store *s = NULL;
	char path[4200], msg[8192] = "";
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
	s->efd = -1;
	pthread_mutex_init(&s->lock, NULL);
	pthread_cond_init(&s->cond, NULL);
	old = umask(0077);
	rc = sqlite3_open_v2(path, &s->db, SQLITE_OPEN_READWRITE |
	    SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
	umask(old);
	if (rc != SQLITE_OK) {
		snprintf(msg, sizeof(msg), "%s: %s", path,
		    s->db ? sqlite3_errmsg(s->db) : "cannot open");
		goto fail;
	}
	/*
	 * Exclusive locking: a second agent on the same state_dir fails here
	 * instead of corrupting the first one's view. WAL: a FULL commit is
	 * durable when COMMIT returns. The WAL keeps its size between
	 * checkpoints (journal_size_limit) so a commit does not have to grow
	 * the file, which would make every sync a metadata sync. A
	 * checkpoint every 256 pages (SQLite's default is 1000) keeps that
	 * size near 1 MiB: whatever one user makes the agent write (a
	 * fetch path is a row), state_dir grows by about that much at most.
	 */
	if (exec(s->db, "PRAGMA locking_mode=EXCLUSIVE") != 0 ||
	    exec(s->db, "PRAGMA journal_mode=WAL") != 0 ||
	    exec(s->db, "PRAGMA synchronous=FULL") != 0 ||
	    exec(s->db, "PRAGMA journal_size_limit=8388608") != 0 ||
	    exec(s->db, "PRAGMA wal_autocheckpoint=256") != 0 ||
	    exec(s->db, "PRAGMA cache_size=-256") != 0 ||
	    exec(s->db, "BEGIN IMMEDIATE") != 0) {
		snprintf(msg, sizeof(msg), "%s: %s (is another ramkey-agent "
		    "using this state_dir?)", path, sqlite3_errmsg(s->db));
		goto fail;
	}
	s->synchronous_full = true;
	if (schema_setup(s, msg, sizeof(msg), path) != 0 ||
	    exec(s->db, "COMMIT") != 0) {
		if (msg[0] == '\0' || strncmp(msg, path, strlen(path)) != 0)
			snprintf(msg, sizeof(msg), "%s: %s", path,
			    sqlite3_errmsg(s->db));
		goto fail;
	}
	for (i = 0; i < S_COUNT; i++)
		if (i != S_CLEAR_ALL && sqlite3_prepare_v2(s->db, stmt_sql[i],
		    -1, &s->stmt[i], NULL) != SQLITE_OK) {
			snprintf(msg, sizeof(msg), "%s: %s", path,
			    sqlite3_errmsg(s->db));
			goto fail;
		}
	*ret = s;
	return 0;
fail:
	*errp = strdup(msg);
	store_close(s);
	return RAMKEY_ERR_STORE;
}

int store_start(struct store *s, struct evloop *loop)
{
	int r;

	s->loop = loop;
	if ((s->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) < 0)
		return RAMKEY_ERR_SYSTEM;
	if ((r = evloop_add(loop, s->efd, EPOLLIN, efd_ready, s)) != 0)
		return r;
	if (pthread_create(&s->thread, NULL, committer, s) != 0)
		return RAMKEY_ERR_SYSTEM;
	s->thread_started = true;
	return 0;
}

/* Wait until nothing is in flight or staged (exit). */
void store_flush(struct store *s)
{
	for (;;) {
		if (s->flying != NULL) {
			pthread_mutex_lock(&s->lock);
			while (s->done == NULL && s->thread_started)
				pthread_cond_wait(&s->cond, &s->lock);
			pthread_mutex_unlock(&s->lock);
			collect(s);
			continue;
		}
		if (batch_empty(s->open))
			return;
		store_commit(s);
	}
}

void store_close(struct store *s)
{
	int i;

	if (s == NULL)
		return;
	if (s->thread_started) {
		store_flush(s);
		pthread_mutex_lock(&s->lock);
		s->quit = true;
		pthread_cond_signal(&s->cond);
		pthread_mutex_unlock(&s->lock);
		pthread_join(s->thread, NULL);
		s->thread_started = false;
		evloop_del(s->loop, s->efd);
	}
	if (s->efd >= 0)
		close(s->efd);
	batch_free(s->open);
	for (i = 0; i < S_COUNT; i++)
		sqlite3_finalize(s->stmt[i]);
	if (s->db != NULL)
		sqlite3_close(s->db);
	pthread_mutex_destroy(&s->lock);
	pthread_cond_destroy(&s->cond);
	free(s);
}

bool store_broken(const struct store *s)
{
	return s->state == ST_BROKEN;
}

bool store_has_pending(const struct store *s)
{
	/* Something staged that could be handed over now; while a batch is
	 * in flight, its completion wakes the loop instead. */
	return s->flying == NULL && !s->staging_resync && !batch_empty(s->open);
}

void store_counts(const struct store *s, uint64_t *synced, uint64_t *unsynced)
{
	/* Read on the loop; the committer's counters are plain words. */
	*synced = s->n_synced;
	*unsynced = s->n_unsynced;
}

static struct batch *open_batch(struct store *s)
{
	if (s->open == NULL)
		s->open = calloc(1, sizeof(*s->open));
	return s->open;
}

/* A new operation in the open batch; NULL if writes are off. */
static struct op *stage(struct store *s, enum stmt_id stmt)
{
	struct batch *b;
	struct op *op;

	if (s->state == ST_BROKEN || (b = open_batch(s)) == NULL)
		return NULL;
	if (b->nops == b->cap) {
		size_t n = b->cap ? b->cap * 2 : 32;
		struct op *o = realloc(b->ops, n * sizeof(*o));

		if (o == NULL) {
			b->nomem = true;
			return NULL;
		}
		b->ops = o;
		b->cap = n;
	}
	op = &b->ops[b->nops++];
	memset(op, 0, sizeof(*op));
	op->stmt = stmt;
	if (stmt_needs_sync(stmt))
		b->sync = true;
	return op;
}

static void put_int(struct op *op, int64_t i)
{
	op->v[op->n].type = V_INT;
	op->v[op->n].i = i;
	op->n++;
}

static void put_text(struct store *s, struct op *op, const char *t)
{
	if (t == NULL) {
		op->v[op->n].type = V_NULL;
	} else {
		op->v[op->n].type = V_TEXT;
		if ((op->v[op->n].s = strdup(t)) == NULL)
			s->open->nomem = true;
	}
	op->n++;
}

void store_put_lease(struct store *s, const struct store_lease_row *r)
{
	struct op *op = stage(s, S_PUT_LEASE);

	if (op == NULL)
		return;
	put_int(op, (int64_t)r->id);
	put_text(s, op, r->kind);
	put_text(s, op, r->user);
	put_int(op, r->uid);
	put_int(op, r->gid);
	put_text(s, op, r->principal);
	put_text(s, op, r->cred_id);
	put_text(s, op, r->create_date);
	put_int(op, r->received_ms);
	put_int(op, r->expiration);
	put_text(s, op, r->status);
	put_text(s, op, r->state);
	put_text(s, op, r->kind_state);
	put_int(op, r->ttl_expires_ms);
	put_text(s, op, r->key_fingerprint);
}

void store_del_lease(struct store *s, uint64_t id)
{
	struct op *op;

	if ((op = stage(s, S_DEL_LEASE_SESSIONS)) != NULL)
		put_int(op, (int64_t)id);
	if ((op = stage(s, S_DEL_LEASE)) != NULL)
		put_int(op, (int64_t)id);
}

void store_put_session(struct store *s, const struct store_session_row *r)
{
	struct op *op = stage(s, S_PUT_SESSION);

	if (op == NULL)
		return;
	put_text(s, op, r->token);
	put_int(op, (int64_t)r->lease_id);
	put_int(op, r->pid);
	put_int(op, (int64_t)r->start_time);
	put_text(s, op, r->boot_id);
	put_int(op, r->peer_uid);
	put_text(s, op, r->secret_file);
	put_text(s, op, r->rhost);
	put_text(s, op, r->tty);
	put_text(s, op, r->service);
	put_int(op, r->opened_ms);
}

void store_del_session(struct store *s, const char *token)
{
	struct op *op = stage(s, S_DEL_SESSION);

	if (op != NULL)
		put_text(s, op, token);
}

void store_put_intent(struct store *s, const struct store_intent_row *r)
{
	struct op *op = stage(s, S_PUT_INTENT);

	if (op == NULL)
		return;
	put_int(op, (int64_t)r->id);
	put_text(s, op, r->kind);
	put_text(s, op, r->principal);
	put_text(s, op, r->user);
	put_int(op, r->started_ms);
	put_text(s, op, r->data != NULL ? r->data : "");
}

void store_del_intent(struct store *s, uint64_t id)
{
	struct op *op = stage(s, S_DEL_INTENT);

	if (op != NULL)
		put_int(op, (int64_t)id);
}

void store_put_file(struct store *s, const struct store_file_row *r)
{
	struct op *op = stage(s, S_PUT_FILE);

	if (op == NULL)
		return;
	put_text(s, op, r->user);
	put_text(s, op, r->path);
	put_text(s, op, r->cred_id);
	put_text(s, op, r->token != NULL ? r->token : "");
	put_int(op, r->written_ms);
}

void store_del_file(struct store *s, const char *user, const char *path)
{
	struct op *op = stage(s, S_DEL_FILE);

	if (op == NULL)
		return;
	put_text(s, op, user);
	put_text(s, op, path);
}

void store_put_note(struct store *s, const struct store_note_row *r)
{
	struct op *op = stage(s, S_PUT_NOTE);

	if (op == NULL)
		return;
	put_text(s, op, r->ns);
	put_text(s, op, r->key);
	put_text(s, op, r->value);
}

void store_del_note(struct store *s, const char *ns, const char *key)
{
	struct op *op = stage(s, S_DEL_NOTE);

	if (op == NULL)
		return;
	put_text(s, op, ns);
	put_text(s, op, key);
}

int store_after_commit(struct store *s, store_commit_fn fn, void *arg)
{
	struct batch *b;

	if ((b = open_batch(s)) == NULL)
		return RAMKEY_ERR_NOMEM;
	if (s->state == ST_BROKEN)
		b->nomem = true; /* nothing can be recorded: say so */
	if (b->nwaiters == b->wcap) {
		size_t n = b->wcap ? b->wcap * 2 : 16;
		struct waiter *w = realloc(b->waiters, n * sizeof(*w));

		if (w == NULL)
			return RAMKEY_ERR_NOMEM;
		b->waiters = w;
		b->wcap = n;
	}
	b->waiters[b->nwaiters].fn = fn;
	b->waiters[b->nwaiters].arg = arg;
	b->nwaiters++;
	return 0;
}

static void cancel_in(struct batch *b, void *arg)
{
	size_t i;

	for (i = 0; b != NULL && i < b->nwaiters; i++)
		if (b->waiters[i].arg == arg)
			b->waiters[i].fn = NULL;
}

void store_cancel_after_commit(struct store *s, void *arg)
{
	/* The flying batch's waiters are only read on this thread. */
	cancel_in(s->open, arg);
	cancel_in(s->flying, arg);
}

void store_commit(struct store *s)
{
	struct batch *b;

	if (s->flying != NULL || s->staging_resync || batch_empty(s->open))
		return; /* the next handoff takes everything staged so far */
	b = s->open;
	s->open = NULL;
	if (s->state == ST_BROKEN) {
		/* Writes are off: only waiters were staged; they learn it. */
		run_waiters(b, false);
		batch_free(b);
		return;
	}
	handoff(s, b, false);
	if (!s->thread_started)
		collect(s);
}

bool store_resync_begin(struct store *s)
{
	struct batch *pending;

	if (s->state != ST_BROKEN || s->flying != NULL)
		return false;
	/* Whoever waits on a commit since the store broke learns it did not
	 * happen; then the whole state goes as one batch. */
	pending = s->open;
	s->open = NULL;
	if (pending != NULL) {
		run_waiters(pending, false);
		batch_free(pending);
	}
	s->state = ST_RESYNCING;
	s->staging_resync = true;
	(void)stage(s, S_CLEAR_ALL);
	return true;
}

int store_resync_end(struct store *s)
{
	struct batch *b;

	s->staging_resync = false;
	if (s->state != ST_RESYNCING)
		return RAMKEY_ERR_INVALID;
	if ((b = s->open) == NULL || b->nomem) {
		batch_free(b);
		s->open = NULL;
		s->state = ST_BROKEN;
		return RAMKEY_ERR_NOMEM;
	}
	s->open = NULL;
	b->sync = true;
	handoff(s, b, true);
	if (!s->thread_started)
		collect(s);
	return 0;
}

/* ---- loading (on the loop, before the committer starts) ---- */

static const char *col(sqlite3_stmt *st, int i)
{
	return (const char *)sqlite3_column_text(st, i);
}

static int load_leases(struct store *s, const struct store_loader *ld)
{
	sqlite3_stmt *st = NULL;
	int rc, r = 0;

	if (sqlite3_prepare_v2(s->db, "SELECT id, kind, user, uid, gid,"
	    " principal, cred_id, create_date, received_ms, expiration, status,"
	    " state, kind_state, ttl_expires_ms, key_fingerprint FROM leases"
	    " ORDER BY id", -1, &st, NULL) != SQLITE_OK)
		return RAMKEY_ERR_STORE;
	while (r == 0 && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		struct store_lease_row row = {
			.id = (uint64_t)sqlite3_column_int64(st, 0),
			.kind = col(st, 1),
			.user = col(st, 2),
			.uid = (uid_t)sqlite3_column_int64(st, 3),
			.gid = (gid_t)sqlite3_column_int64(st, 4),
			.principal = col(st, 5),
			.cred_id = col(st, 6),
			.create_date = col(st, 7),
			.received_ms = sqlite3_column_int64(st, 8),
			.expiration = sqlite3_column_int64(st, 9),
			.status = col(st, 10),
			.state = col(st, 11),
			.kind_state = col(st, 12),
			.ttl_expires_ms = sqlite3_column_int64(st, 13),
			.key_fingerprint = col(st, 14),
		};

		if (row.kind == NULL || row.user == NULL ||
		    row.principal == NULL || row.cred_id == NULL ||
		    row.create_date == NULL || row.status == NULL ||
		    row.state == NULL) {
			log_warn("state store: skipping a malformed lease row");
			continue;
		}
		r = ld->lease(ld->arg, &row);
	}
	sqlite3_finalize(st);
	return r != 0 ? r : rc == SQLITE_DONE ? 0 : RAMKEY_ERR_STORE;
}

static int load_sessions(struct store *s, const struct store_loader *ld)
{
	sqlite3_stmt *st = NULL;
	int rc, r = 0;

	if (sqlite3_prepare_v2(s->db, "SELECT token, lease_id, pid,"
	    " start_time, boot_id, peer_uid, secret_file, rhost, tty, service,"
	    " opened_ms FROM sessions", -1, &st, NULL) != SQLITE_OK)
		return RAMKEY_ERR_STORE;
	while (r == 0 && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		struct store_session_row row = {
			.token = col(st, 0),
			.lease_id = (uint64_t)sqlite3_column_int64(st, 1),
			.pid = (pid_t)sqlite3_column_int64(st, 2),
			.start_time = (uint64_t)sqlite3_column_int64(st, 3),
			.boot_id = col(st, 4),
			.peer_uid = (uid_t)sqlite3_column_int64(st, 5),
			.secret_file = col(st, 6),
			.rhost = col(st, 7),
			.tty = col(st, 8),
			.service = col(st, 9),
			.opened_ms = sqlite3_column_int64(st, 10),
		};

		if (row.token == NULL || row.boot_id == NULL)
			continue;
		r = ld->session(ld->arg, &row);
	}
	sqlite3_finalize(st);
	return r != 0 ? r : rc == SQLITE_DONE ? 0 : RAMKEY_ERR_STORE;
}

static int load_intents(struct store *s, const struct store_loader *ld)
{
	sqlite3_stmt *st = NULL;
	int rc, r = 0;

	if (sqlite3_prepare_v2(s->db, "SELECT id, kind, principal, user,"
	    " started_ms, data FROM intents ORDER BY id", -1, &st, NULL) !=
	    SQLITE_OK)
		return RAMKEY_ERR_STORE;
	while (r == 0 && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		struct store_intent_row row = {
			.id = (uint64_t)sqlite3_column_int64(st, 0),
			.kind = col(st, 1),
			.principal = col(st, 2),
			.user = col(st, 3),
			.started_ms = sqlite3_column_int64(st, 4),
			.data = col(st, 5),
		};

		if (row.kind == NULL || row.principal == NULL ||
		    row.user == NULL || row.data == NULL)
			continue;
		r = ld->intent(ld->arg, &row);
	}
	sqlite3_finalize(st);
	return r != 0 ? r : rc == SQLITE_DONE ? 0 : RAMKEY_ERR_STORE;
}

static int load_files(struct store *s, const struct store_loader *ld)
{
	sqlite3_stmt *st = NULL;
	int rc, r = 0;

	if (sqlite3_prepare_v2(s->db, "SELECT user, path, cred_id, token,"
	    " written_ms FROM files ORDER BY written_ms", -1, &st, NULL) !=
	    SQLITE_OK)
		return RAMKEY_ERR_STORE;
	while (r == 0 && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		struct store_file_row row = {
			.user = col(st, 0),
			.path = col(st, 1),
			.cred_id = col(st, 2),
			.token = col(st, 3),
			.written_ms = sqlite3_column_int64(st, 4),
		};

		if (row.user == NULL || row.path == NULL ||
		    row.cred_id == NULL || row.token == NULL)
			continue;
		r = ld->file(ld->arg, &row);
	}
	sqlite3_finalize(st);
	return r != 0 ? r : rc == SQLITE_DONE ? 0 : RAMKEY_ERR_STORE;
}

static int load_notes(struct store *s, const struct store_loader *ld)
{
	sqlite3_stmt *st = NULL;
	int rc, r = 0;

	if (sqlite3_prepare_v2(s->db, "SELECT ns, key, value FROM notes", -1,
	    &st, NULL) != SQLITE_OK)
		return RAMKEY_ERR_STORE;
	while (r == 0 && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		struct store_note_row row = {
			.ns = col(st, 0),
			.key = col(st, 1),
			.value = col(st, 2),
		};

		if (row.ns == NULL || row.key == NULL || row.value == NULL)
			continue;
		r = ld->note(ld->arg, &row);
	}
	sqlite3_finalize(st);
	return r != 0 ? r : rc == SQLITE_DONE ? 0 : RAMKEY_ERR_STORE;
}

int store_load(struct store *s, const struct store_loader *ld)
{
	int r;

	if ((r = load_leases(s, ld)) != 0 || (r = load_sessions(s, ld)) != 0 ||
	    (r = load_intents(s, ld)) != 0 || (r = load_files(s, ld)) != 0 ||
	    (r = load_notes(s, ld)) != 0)
		return r;
	return 0;
}
