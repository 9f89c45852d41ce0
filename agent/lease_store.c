/*
 * The lease store. Writes are staged as operations into the current batch
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
#define OP_VALUES_MAX 12

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
	S_CLEAR_ALL,
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
	/* Not prepared: run with sqlite3_exec (several statements). */
	[S_CLEAR_ALL] = "DELETE FROM sessions; DELETE FROM leases; "
	    "DELETE FROM intents; DELETE FROM ambiguous; DELETE FROM files;",
};

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
	bool nomem;	/* an operation could not be staged */
	bool ok;	/* set by the committer */
};

enum store_state {
	ST_OK = 0,
	ST_BROKEN,	/* writes fail; nothing is staged */
	ST_RESYNCING,	/* a full rewrite is in flight */
};

struct lease_store {
	sqlite3 *db;
	sqlite3_stmt *stmt[S_COUNT];
	enum store_state state;
	struct batch *open;	/* being filled on the loop */
	struct batch *flying;	/* with the committer */
	bool flying_is_resync;
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

static bool run_op(struct lease_store *s, const struct op *op)
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

/* Run a batch as one transaction; logging is thread-safe (syslog or
 * stderr lines). */
static bool commit_batch(struct lease_store *s, const struct batch *b)
{
	size_t i;

	if (b->nomem)
		return false;
	if (b->nops == 0)
		return true;
	if (exec(s->db, "BEGIN IMMEDIATE") != 0) {
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
	return true;
}

static void *committer(void *arg)
{
	struct lease_store *s = arg;
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

static void handoff(struct lease_store *s, struct batch *b, bool resync)
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

/* A batch came back: account for it, tell its waiters, send the next. */
static void collect(struct lease_store *s)
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
		 * rewrite from memory catches up once writes work. */
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
	struct lease_store *s = arg;
	uint64_t n;

	(void)events;
	if (read(fd, &n, sizeof(n)) < 0) {
		/* EAGAIN: another wake-up consumed it. */
	}
	collect(s);
	evloop_wake(s->loop);
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
	 * instead of corrupting the first one's view. WAL with FULL sync:
	 * a commit is durable when COMMIT returns. The WAL keeps its size
	 * between checkpoints (journal_size_limit) so a commit does not have
	 * to grow the file, which would make every sync a metadata sync.
	 */
	if (exec(s->db, "PRAGMA locking_mode=EXCLUSIVE") != 0 ||
	    exec(s->db, "PRAGMA journal_mode=WAL") != 0 ||
	    exec(s->db, "PRAGMA synchronous=FULL") != 0 ||
	    exec(s->db, "PRAGMA journal_size_limit=8388608") != 0 ||
	    exec(s->db, "PRAGMA cache_size=-512") != 0 ||
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
	lease_store_close(s);
	return RAMKEY_ERR_STORE;
}

int lease_store_start(struct lease_store *s, struct evloop *loop)
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
void store_flush(struct lease_store *s)
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

void lease_store_close(struct lease_store *s)
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

bool store_broken(const struct lease_store *s)
{
	return s->state == ST_BROKEN;
}

bool store_has_pending(const struct lease_store *s)
{
	/* Something staged that could be handed over now; while a batch is
	 * in flight, its completion wakes the loop instead. */
	return s->flying == NULL && !batch_empty(s->open);
}

static struct batch *open_batch(struct lease_store *s)
{
	if (s->open == NULL)
		s->open = calloc(1, sizeof(*s->open));
	return s->open;
}

/* A new operation in the open batch; NULL if writes are off. */
static struct op *stage(struct lease_store *s, enum stmt_id stmt)
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
	return op;
}

static void put_int(struct op *op, int64_t i)
{
	op->v[op->n].type = V_INT;
	op->v[op->n].i = i;
	op->n++;
}

static void put_text(struct lease_store *s, struct op *op, const char *t)
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
	struct op *op = stage(s, S_PUT_LEASE);

	if (op == NULL)
		return;
	put_int(op, (int64_t)l->id);
	put_text(s, op, l->user);
	put_int(op, l->uid);
	put_int(op, l->gid);
	put_text(s, op, l->ram_user);
	put_text(s, op, l->key_id);
	put_text(s, op, l->create_date);
	put_int(op, l->received_ms);
	put_text(s, op, l->status);
	put_text(s, op, state_name(l->state));
	put_int(op, l->ttl_expires_ms);
	put_text(s, op, l->key_fingerprint);
}

void store_del_lease(struct lease_store *s, uint64_t id)
{
	struct op *op;

	if ((op = stage(s, S_DEL_LEASE_SESSIONS)) != NULL)
		put_int(op, (int64_t)id);
	if ((op = stage(s, S_DEL_LEASE)) != NULL)
		put_int(op, (int64_t)id);
}

void store_put_session(struct lease_store *s, const struct session *ss)
{
	struct op *op = stage(s, S_PUT_SESSION);

	if (op == NULL)
		return;
	put_text(s, op, ss->token);
	put_int(op, (int64_t)ss->lease->id);
	put_int(op, ss->pid);
	put_int(op, (int64_t)ss->start_time);
	put_text(s, op, ss->boot_id);
	put_int(op, ss->peer_uid);
	put_text(s, op, ss->secret_file);
	put_text(s, op, ss->rhost);
	put_text(s, op, ss->tty);
	put_text(s, op, ss->service);
	put_int(op, ss->opened_ms);
}

void store_del_session(struct lease_store *s, const char *token)
{
	struct op *op = stage(s, S_DEL_SESSION);

	if (op != NULL)
		put_text(s, op, token);
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
	struct op *op = stage(s, S_PUT_INTENT);
	char *snap;

	if (op == NULL)
		return;
	put_int(op, (int64_t)in->id);
	put_text(s, op, in->ram_user);
	put_text(s, op, in->user);
	put_int(op, in->started_ms);
	put_int(op, in->create_sent ? 1 : 0);
	if ((snap = snapshot_json(in)) == NULL) {
		s->open->nomem = true;
		return;
	}
	op->v[op->n].type = V_TEXT;
	op->v[op->n].s = snap;
	op->n++;
}

void store_del_intent(struct lease_store *s, uint64_t id)
{
	struct op *op = stage(s, S_DEL_INTENT);

	if (op != NULL)
		put_int(op, (int64_t)id);
}

void store_put_ambiguous(struct lease_store *s, const char *key_id,
    const char *ram_user)
{
	struct op *op = stage(s, S_PUT_AMBIG);

	if (op == NULL)
		return;
	put_text(s, op, key_id);
	put_text(s, op, ram_user);
	put_int(op, wall_ms());
}

void store_del_ambiguous(struct lease_store *s, const char *key_id)
{
	struct op *op = stage(s, S_DEL_AMBIG);

	if (op != NULL)
		put_text(s, op, key_id);
}

void store_put_file(struct lease_store *s, const char *user,
    const struct file_rec *f)
{
	struct op *op = stage(s, S_PUT_FILE);

	if (op == NULL)
		return;
	put_text(s, op, user);
	put_text(s, op, f->path);
	put_text(s, op, f->key_id);
	put_text(s, op, f->token);
}

void store_del_file(struct lease_store *s, const char *user,
    const char *path)
{
	struct op *op = stage(s, S_DEL_FILE);

	if (op == NULL)
		return;
	put_text(s, op, user);
	put_text(s, op, path);
}

int store_after_commit(struct lease_store *s, store_commit_fn fn, void *arg)
{
	struct batch *b;

	if (s->state == ST_BROKEN) {
		/* Nothing can be recorded: say so at the next commit. */
		if ((b = open_batch(s)) == NULL)
			return RAMKEY_ERR_NOMEM;
		b->nomem = true;
	} else if ((b = open_batch(s)) == NULL) {
		return RAMKEY_ERR_NOMEM;
	}
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

void store_cancel_after_commit(struct lease_store *s, void *arg)
{
	/* The flying batch's waiters are only read on this thread. */
	cancel_in(s->open, arg);
	cancel_in(s->flying, arg);
}

void store_commit(struct lease_store *s)
{
	struct batch *b;

	if (s->flying != NULL || batch_empty(s->open))
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

int store_resync(struct lease_store *s, struct agent *a)
{
	struct strmap_iter it;
	struct batch *pending;
	void *v;
	const char *k;

	if (s->state != ST_BROKEN || s->flying != NULL)
		return 0;
	/* Whoever waits on a commit since the store broke learns it did
	 * not happen; then the whole state goes as one batch, and anything
	 * staged meanwhile follows in the next one. */
	pending = s->open;
	s->open = NULL;
	if (pending != NULL) {
		run_waiters(pending, false);
		batch_free(pending);
		pending = NULL;
	}
	s->state = ST_RESYNCING;
	(void)stage(s, S_CLEAR_ALL);
	strmap_iter_init(&it);
	while (strmap_next(a->leases, &it, &k, &v)) {
		struct lease *l = v;
		struct session *ss;

		store_put_lease(s, l);
		for (ss = l->sessions; ss != NULL; ss = ss->next_in_lease)
			store_put_session(s, ss);
	}
	strmap_iter_init(&it);
	while (strmap_next(a->ram_users, &it, &k, &v)) {
		struct ram_user_state *rs = v;

		/* A running mint's own intent is not durable yet: mint.c
		 * stages it, and waits for its commit, before sending. */
		if (rs->intent != NULL)
			store_put_intent(s, rs->intent);
	}
	strmap_iter_init(&it);
	while (strmap_next(a->users, &it, &k, &v)) {
		struct file_rec *f;

		for (f = ((struct user_state *)v)->files; f != NULL;
		    f = f->next)
			store_put_file(s, k, f);
	}
	strmap_iter_init(&it);
	while (strmap_next(a->ambiguous, &it, &k, &v))
		store_put_ambiguous(s, k, v);
	if (s->open == NULL) {
		s->state = ST_BROKEN;
		s->open = pending;
		return RAMKEY_ERR_NOMEM;
	}
	{
		struct batch *b = s->open;

		s->open = NULL;
		handoff(s, b, true);
		if (!s->thread_started)
			collect(s);
	}
	return 0;
}

/* ---- loading (on the loop, before the committer starts) ---- */

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
			intent_free(in);
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
