/* store.c - connection, migration runner, and the desired-state queries of
 * zlhctl and the portal side (see store.h). Every value goes to the server
 * as a parameter; the only SQL sent with PQexec is static text (BEGIN,
 * COMMIT, the bootstrap below) and the migration files themselves. */
#include "db/store.h"

#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "util.h"

DEFINE_TRIVIAL_CLEANUP_FUNC(PGresult *, PQclear)
#define _cleanup_pgresult_ _cleanup_(PQclearp)

/* Advisory lock class of the migration run (see 001_schema.sql's header). */
#define MIGRATE_LOCK_CLASS "2051801088"
/* Migration files are read whole; none is anywhere near this. */
#define MIGRATION_MAX_BYTES (4u * 1024 * 1024)
#define MIGRATIONS_MAX 1000

static void err_setv(StoreError *err, const char *sqlstate, const char *fmt, va_list ap)
{
	if (!err)
		return;
	snprintf(err->sqlstate, sizeof err->sqlstate, "%s", sqlstate ? sqlstate : "");
	vsnprintf(err->message, sizeof err->message, fmt, ap);
	err->detail[0] = '\0';
}

_printf_(3, 4) static void err_set(StoreError *err, const char *sqlstate, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	err_setv(err, sqlstate, fmt, ap);
	va_end(ap);
}

/* Prepends "prefix: " to err->message (truncating its end if needed). */
static void err_prefix(StoreError *err, const char *prefix)
{
	if (!err)
		return;
	size_t cap = sizeof err->message, p = strlen(prefix) + 2, n = strlen(err->message);
	if (p >= cap)
		return;
	if (n + p >= cap)
		n = cap - p - 1;
	memmove(err->message + p, err->message, n);
	err->message[p + n] = '\0';
	memcpy(err->message, prefix, p - 2);
	memcpy(err->message + p - 2, ": ", 2);
}

/* Strips trailing newlines (libpq messages end with one). */
static void chomp(char *s)
{
	size_t n = strlen(s);
	while (n > 0 && (s[n - 1] == '\n' || s[n - 1] == '\r'))
		s[--n] = '\0';
}

int store_errno_from_sqlstate(const char *s)
{
	if (!s || strlen(s) != 5)
		return -EIO;
	if (strcmp(s, "ZL001") == 0)
		return -EINVAL;
	if (strcmp(s, "ZL002") == 0)
		return -EDQUOT;
	if (strcmp(s, "ZL003") == 0)
		return -EEXIST;
	if (strcmp(s, "ZL004") == 0)
		return -ENOENT;
	if (strcmp(s, "ZL005") == 0)
		return -EADDRINUSE;
	if (strcmp(s, "ZL006") == 0) /* 002_runtime.sql: stale lease epoch */
		return -ESTALE;
	if (strcmp(s, "ZL007") == 0) /* 002_runtime.sql: server locked elsewhere */
		return -EBUSY;
	if (strncmp(s, "08", 2) == 0)
		return -ECONNRESET;
	if (strcmp(s, "40001") == 0 || strcmp(s, "40P01") == 0)
		return -EAGAIN;
	if (strcmp(s, "57014") == 0)
		return -ETIMEDOUT;
	if (strcmp(s, "42501") == 0)
		return -EPERM;
	if (strcmp(s, "3F000") == 0 || strcmp(s, "42P01") == 0 || strcmp(s, "42883") == 0)
		return -ENOPKG;
	if (strcmp(s, "23505") == 0)
		return -EEXIST;
	if (strncmp(s, "22", 2) == 0 || strncmp(s, "23", 2) == 0)
		return -EINVAL;
	return -EIO;
}

bool store_errno_is_connection(int r)
{
	switch (-r) {
	case ECONNREFUSED:
	case ECONNRESET:
	case EHOSTDOWN:
	case EHOSTUNREACH:
	case ETIMEDOUT:
	case EACCES:
	case ENOTCONN:
		return true;
	default:
		return false;
	}
}

int store_error_set(PGconn *conn, const PGresult *res, StoreError *err)
{
	const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
	const char *msg = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
	const char *detail = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_DETAIL) : NULL;
	int r;

	if (!conn)
		r = -ENOTCONN;
	else if (PQstatus(conn) == CONNECTION_BAD)
		r = -ECONNRESET;
	else if (state)
		r = store_errno_from_sqlstate(state);
	else if (!res)
		r = -ENOMEM;
	else
		r = -EIO;

	if (err) {
		snprintf(err->sqlstate, sizeof err->sqlstate, "%s", state ? state : "");
		if (msg)
			snprintf(err->message, sizeof err->message, "%s", msg);
		else if (conn)
			snprintf(err->message, sizeof err->message, "%s", PQerrorMessage(conn));
		else
			snprintf(err->message, sizeof err->message, "not connected");
		chomp(err->message);
		snprintf(err->detail, sizeof err->detail, "%s", detail ? detail : "");
	}
	return r;
}

/* Runs one statement with text parameters (NULL entries are SQL NULL).
 * *ret (new) set on success when ret is not NULL. */
static int q(PGconn *c, const char *sql, int n, const char *const *vals, PGresult **ret,
             StoreError *err)
{
	if (!c)
		return store_error_set(NULL, NULL, err);
	PGresult *res = PQexecParams(c, sql, n, NULL, vals, NULL, NULL, 0);
	ExecStatusType st = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;
	if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
		int r = store_error_set(c, res, err);
		PQclear(res);
		return r;
	}
	if (ret)
		*ret = res;
	else
		PQclear(res);
	return 0;
}

/* Runs static SQL (possibly several statements; no parameters). */
static int exec_static(PGconn *c, const char *sql, StoreError *err)
{
	if (!c)
		return store_error_set(NULL, NULL, err);
	_cleanup_pgresult_ PGresult *res = PQexec(c, sql);
	ExecStatusType st = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;
	if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)
		return store_error_set(c, res, err);
	return 0;
}

/* Parses a JSON text value (new). */
static int json_parse(const char *text, json_t **ret, StoreError *err)
{
	json_error_t jerr;
	json_t *j = json_loads(text, JSON_DECODE_ANY, &jerr);
	if (!j) {
		err_set(err, "", "malformed JSON from the database: %s", jerr.text);
		return -EIO;
	}
	*ret = j;
	return 0;
}

/* A statement returning one row of one JSON text column: *ret (new).
 * -ENOENT when there is no row. */
static int q_json(PGconn *c, const char *sql, int n, const char *const *vals, json_t **ret,
                  StoreError *err)
{
	_cleanup_pgresult_ PGresult *res = NULL;
	int r = q(c, sql, n, vals, &res, err);
	if (r < 0)
		return r;
	if (PQntuples(res) < 1 || PQnfields(res) < 1 || PQgetisnull(res, 0, 0)) {
		err_set(err, "", "no result");
		return -ENOENT;
	}
	return json_parse(PQgetvalue(res, 0, 0), ret, err);
}

/* --- connection ------------------------------------------------------------ */

static int connect_errno(PGconn *c, const char *msg)
{
	if (PQconnectionNeedsPassword(c))
		return -EACCES;
	if (strstr(msg, "Connection refused") || strstr(msg, "No such file or directory"))
		return -ECONNREFUSED;
	if (strstr(msg, "authentication failed") || strstr(msg, "no pg_hba.conf entry") ||
	    (strstr(msg, "role \"") && strstr(msg, "does not exist")))
		return -EACCES;
	if (strstr(msg, "timeout expired"))
		return -ETIMEDOUT;
	if (strstr(msg, "connection info string") || strstr(msg, "invalid URI") ||
	    strstr(msg, "invalid connection option"))
		return -EINVAL;
	return -EHOSTDOWN;
}

int store_connect(const char *conninfo, PGconn **ret, StoreError *err)
{
	/* dbname (expanded from conninfo) comes last, so its settings win. */
	const char *const keys[] = {"connect_timeout", "client_encoding",
	                            "fallback_application_name", "dbname", NULL};
	const char *const vals[] = {"10", "UTF8", "zlh", conninfo ? conninfo : "", NULL};
	PGconn *c = PQconnectdbParams(keys, vals, 1);
	if (!c) {
		err_set(err, "", "out of memory");
		return -ENOMEM;
	}
	if (PQstatus(c) != CONNECTION_OK) {
		char msg[1024];
		snprintf(msg, sizeof msg, "%s", PQerrorMessage(c));
		chomp(msg);
		int r = connect_errno(c, msg);
		err_set(err, "", "%s", msg);
		PQfinish(c);
		return r;
	}
	*ret = c;
	return 0;
}

/* --- transactions -------------------------------------------------------------- */

int store_begin(PGconn *conn, StoreError *err)
{
	return exec_static(conn, "BEGIN", err);
}

int store_commit(PGconn *conn, StoreError *err)
{
	if (!conn)
		return store_error_set(NULL, NULL, err);
	_cleanup_pgresult_ PGresult *res = PQexec(conn, "COMMIT");
	ExecStatusType st = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;
	if (st != PGRES_COMMAND_OK)
		return store_error_set(conn, res, err);
	/* COMMIT of a transaction that had failed answers ROLLBACK. */
	if (strcmp(PQcmdStatus(res), "ROLLBACK") == 0) {
		err_set(err, "", "the transaction had failed and was rolled back");
		return -ECANCELED;
	}
	return 0;
}

int store_rollback(PGconn *conn, StoreError *err)
{
	return exec_static(conn, "ROLLBACK", err);
}

/* --- migrations ------------------------------------------------------------------ */

typedef struct Migration {
	long version;
	char *file; /* "001_schema.sql" */
	char *sql;
	char checksum[65];
} Migration;

static void migrations_free(Migration *m, size_t n)
{
	for (size_t i = 0; m && i < n; i++) {
		free(m[i].file);
		free(m[i].sql);
	}
	free(m);
}

/* NNN_name.sql: digits, '_', at least one more character, ".sql". */
static bool migration_name(const char *f, long *ret_version)
{
	size_t d = strspn(f, "0123456789");
	if (d == 0 || d > 9 || f[d] != '_' || !str_endswith(f, ".sql") || strlen(f) < d + 6)
		return false;
	char num[16];
	memcpy(num, f, d);
	num[d] = '\0';
	int64_t v = 0;
	if (parse_int64(num, &v) < 0)
		return false;
	*ret_version = (long)v;
	return true;
}

static int migration_cmp(const void *a, const void *b)
{
	const Migration *x = a, *y = b;
	return (x->version > y->version) - (x->version < y->version);
}

static void closedirp(DIR **d)
{
	if (*d)
		closedir(*d);
}

/* Reads every migration file of dir, sorted by version. */
static int migrations_load(const char *dir, Migration **ret, size_t *ret_n, StoreError *err)
{
	_cleanup_(closedirp) DIR *d = opendir(dir);
	if (!d) {
		int r = -errno;
		err_set(err, "", "%s: %s", dir, strerror(-r));
		return r;
	}
	Migration *m = NULL;
	size_t n = 0;
	int r = 0;
	struct dirent *de;
	while ((de = readdir(d))) {
		long v;
		if (!migration_name(de->d_name, &v))
			continue;
		if (n >= MIGRATIONS_MAX) {
			err_set(err, "", "%s: more than %d migrations", dir, MIGRATIONS_MAX);
			r = -E2BIG;
			goto fail;
		}
		Migration *nm = realloc(m, (n + 1) * sizeof *m);
		if (!nm) {
			r = -ENOMEM;
			goto fail;
		}
		m = nm;
		memset(&m[n], 0, sizeof m[n]);
		m[n].version = v;
		m[n].file = strdup(de->d_name);
		n++;
		if (!m[n - 1].file) {
			r = -ENOMEM;
			goto fail;
		}
		_cleanup_free_ char *path = NULL;
		if (asprintf(&path, "%s/%s", dir, de->d_name) < 0) {
			r = -ENOMEM;
			goto fail;
		}
		size_t len = 0;
		r = file_read_all(path, MIGRATION_MAX_BYTES, &m[n - 1].sql, &len);
		if (r < 0) {
			err_set(err, "", "%s: %s", path, strerror(-r));
			goto fail;
		}
		if (strlen(m[n - 1].sql) != len) {
			err_set(err, "", "%s: contains a NUL byte", path);
			r = -EINVAL;
			goto fail;
		}
		r = sha256_hex(m[n - 1].sql, len, m[n - 1].checksum);
		if (r < 0)
			goto fail;
	}
	if (n == 0) {
		err_set(err, "", "%s: no NNN_name.sql migration files", dir);
		r = -ENOENT;
		goto fail;
	}
	qsort(m, n, sizeof *m, migration_cmp);
	for (size_t i = 1; i < n; i++)
		if (m[i].version == m[i - 1].version) {
			err_set(err, "", "%s: %s and %s have the same version", dir, m[i - 1].file,
			        m[i].file);
			r = -EINVAL;
			goto fail;
		}
	*ret = m;
	*ret_n = n;
	return 0;
fail:
	if (r == -ENOMEM)
		err_set(err, "", "out of memory");
	migrations_free(m, n);
	return r;
}

static bool is_dir(const char *p)
{
	struct stat st;
	return p && stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

int store_migrations_dir_find(const char *flag, char **ret)
{
	const char *env = getenv("ZLH_MIGRATIONS_DIR");
	const char *pick = NULL;
	if (flag)
		pick = flag;
	else if (env && *env)
		pick = env;
	if (pick) {
		if (!is_dir(pick))
			return -ENOENT;
	} else if (is_dir(ZLH_SOURCE_DIR "/db/migrations"))
		pick = ZLH_SOURCE_DIR "/db/migrations";
	else if (is_dir(ZLH_PREFIX "/share/zlh-controller/migrations"))
		pick = ZLH_PREFIX "/share/zlh-controller/migrations";
	else
		return -ENOENT;
	char *s = strdup(pick);
	if (!s)
		return -ENOMEM;
	*ret = s;
	return 0;
}

/* Applied versions and checksums; checks every recorded file's checksum.
 * *ret_pending: how many of m are not recorded; applied[i] set for those
 * that are. missing_ok: a missing zlh.schema_migrations means "none". */
static int migrations_compare(PGconn *c, const Migration *m, size_t n, bool *applied,
                              int *ret_pending, StoreError *err)
{
	_cleanup_pgresult_ PGresult *res = NULL;
	int r = q(c, "SELECT to_regclass('zlh.schema_migrations') IS NOT NULL", 0, NULL, &res, err);
	if (r < 0)
		return r;
	bool exists = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
	PQclear(TAKE_PTR(res));
	for (size_t i = 0; i < n; i++)
		applied[i] = false;
	if (exists) {
		r = q(c, "SELECT version, checksum FROM zlh.schema_migrations", 0, NULL, &res, err);
		if (r < 0)
			return r;
		for (int row = 0; row < PQntuples(res); row++) {
			int64_t v = 0;
			if (parse_int64(PQgetvalue(res, row, 0), &v) < 0)
				continue;
			for (size_t i = 0; i < n; i++) {
				if (m[i].version != v)
					continue;
				if (strcmp(PQgetvalue(res, row, 1), m[i].checksum) != 0) {
					err_set(err, "",
					        "%s: the file changed after it was applied "
					        "(checksum %.12s, "
					        "recorded %.12s); add a new migration instead",
					        m[i].file, m[i].checksum, PQgetvalue(res, row, 1));
					return -EBADMSG;
				}
				applied[i] = true;
			}
		}
	}
	int pending = 0;
	for (size_t i = 0; i < n; i++)
		pending += !applied[i];
	*ret_pending = pending;
	return 0;
}

int store_migrations_pending(PGconn *conn, const char *migrations_dir, int *ret_pending,
                             StoreError *err)
{
	Migration *m = NULL;
	size_t n = 0;
	int r = migrations_load(migrations_dir, &m, &n, err);
	if (r < 0)
		return r;
	bool *applied = calloc(n, sizeof *applied);
	int pending = 0;
	if (!applied) {
		err_set(err, "", "out of memory");
		r = -ENOMEM;
	} else
		r = migrations_compare(conn, m, n, applied, &pending, err);
	free(applied);
	migrations_free(m, n);
	if (r < 0)
		return r;
	*ret_pending = pending;
	return 0;
}

/* Checks kinds' shape before sending it. */
static int kinds_check(const json_t *kinds, StoreError *err)
{
	if (!json_is_array(kinds)) {
		err_set(err, "", "kinds: expected a JSON array");
		return -EINVAL;
	}
	size_t i;
	const json_t *k;
	json_array_foreach(kinds, i, k)
	{
		static const char *const strs[] = {"kind", "apiVersion", "plural"};
		for (size_t j = 0; j < ELEMENTSOF(strs); j++)
			if (!json_is_string(json_object_get(k, strs[j])) ||
			    json_string_length(json_object_get(k, strs[j])) == 0) {
				err_set(err, "", "kinds[%zu].%s: expected a non-empty string", i,
				        strs[j]);
				return -EINVAL;
			}
		const json_t *sh = json_object_get(k, "short");
		if (sh && !json_is_string(sh) && !json_is_null(sh)) {
			err_set(err, "", "kinds[%zu].short: expected a string", i);
			return -EINVAL;
		}
		if (!json_is_object(json_object_get(k, "schema"))) {
			err_set(err, "", "kinds[%zu].schema: expected an object", i);
			return -EINVAL;
		}
	}
	return 0;
}

static const char SQL_KINDS_UPSERT[] =
    "INSERT INTO zlh.kinds (kind, api_version, plural, short, schema)"
    " SELECT e->>'kind', e->>'apiVersion', e->>'plural', e->>'short', e->'schema'"
    " FROM jsonb_array_elements($1::jsonb) e"
    " ON CONFLICT (kind) DO UPDATE SET api_version = EXCLUDED.api_version,"
    "  plural = EXCLUDED.plural, short = EXCLUDED.short, schema = EXCLUDED.schema,"
    "  updated_at = now()"
    " WHERE (zlh.kinds.api_version, zlh.kinds.plural, zlh.kinds.short, zlh.kinds.schema)"
    "  IS DISTINCT FROM (EXCLUDED.api_version, EXCLUDED.plural, EXCLUDED.short,"
    "  EXCLUDED.schema)";

/* Creates zlh and zlh.schema_migrations when missing (under the lock). */
static const char SQL_BOOTSTRAP[] = "BEGIN;"
                                    "SET LOCAL client_min_messages = warning;"
                                    "CREATE SCHEMA IF NOT EXISTS zlh;"
                                    "CREATE TABLE IF NOT EXISTS zlh.schema_migrations ("
                                    " version integer PRIMARY KEY,"
                                    " name text NOT NULL,"
                                    " checksum text NOT NULL,"
                                    " applied_at timestamptz NOT NULL DEFAULT now());"
                                    "COMMIT";

static int migrate_locked(PGconn *c, const Migration *m, size_t n, const json_t *kinds,
                          StoreError *err)
{
	int r = exec_static(c, SQL_BOOTSTRAP, err);
	if (r < 0) {
		(void)store_rollback(c, NULL);
		return r;
	}
	_cleanup_free_ bool *applied = calloc(n, sizeof *applied);
	if (!applied) {
		err_set(err, "", "out of memory");
		return -ENOMEM;
	}
	int pending = 0;
	r = migrations_compare(c, m, n, applied, &pending, err);
	if (r < 0)
		return r;

	int done = 0;
	for (size_t i = 0; i < n; i++) {
		if (applied[i])
			continue;
		char ver[24];
		snprintf(ver, sizeof ver, "%ld", m[i].version);
		const char *vals[] = {ver, m[i].file, m[i].checksum};
		r = exec_static(c, "BEGIN; SET LOCAL client_min_messages = warning", err);
		if (r >= 0)
			r = exec_static(c, m[i].sql, err);
		if (r >= 0)
			r = q(c,
			      "INSERT INTO zlh.schema_migrations (version, name, checksum)"
			      " VALUES ($1::integer, $2, $3)",
			      3, vals, NULL, err);
		if (r >= 0)
			r = store_commit(c, err);
		if (r < 0) {
			(void)store_rollback(c, NULL);
			err_prefix(err, m[i].file);
			return r;
		}
		done++;
	}

	if (kinds) {
		r = kinds_check(kinds, err);
		if (r < 0)
			return r;
		_cleanup_free_ char *text = json_dumps(kinds, JSON_COMPACT);
		if (!text) {
			err_set(err, "", "out of memory");
			return -ENOMEM;
		}
		const char *vals[] = {text};
		r = q(c, SQL_KINDS_UPSERT, 1, vals, NULL, err);
		if (r < 0)
			return r;
	}
	return done;
}

int store_migrate(PGconn *conn, const char *migrations_dir, const json_t *kinds, StoreError *err)
{
	Migration *m = NULL;
	size_t n = 0;
	int r = migrations_load(migrations_dir, &m, &n, err);
	if (r < 0)
		return r;
	r = q(conn, "SELECT pg_advisory_lock(" MIGRATE_LOCK_CLASS ", 0)", 0, NULL, NULL, err);
	if (r >= 0) {
		r = migrate_locked(conn, m, n, kinds, err);
		if (PQstatus(conn) == CONNECTION_OK)
			(void)q(conn, "SELECT pg_advisory_unlock(" MIGRATE_LOCK_CLASS ", 0)", 0,
			        NULL, NULL, NULL);
	}
	migrations_free(m, n);
	return r;
}

/* --- desired state ------------------------------------------------------------------ */

int store_apply_server(PGconn *conn, const json_t *doc, const char *request_id_or_NULL,
                       json_t **ret_result, StoreError *err)
{
	if (!doc) {
		err_set(err, "", "no document");
		return -EINVAL;
	}
	_cleanup_free_ char *text = json_dumps(doc, JSON_COMPACT | JSON_ENCODE_ANY);
	if (!text) {
		err_set(err, "", "out of memory");
		return -ENOMEM;
	}
	const char *vals[] = {text, request_id_or_NULL};
	return q_json(conn, "SELECT zlh.apply_server($1::jsonb, $2::uuid)::text", 2, vals,
	              ret_result, err);
}

/* The owner of a name when owner_or_NULL is NULL: -ENOENT, -ENOTUNIQ. */
static int owner_resolve(PGconn *c, const char *owner_or_NULL, const char *name, char **ret,
                         StoreError *err)
{
	if (owner_or_NULL) {
		char *s = strdup(owner_or_NULL);
		if (!s)
			return -ENOMEM;
		*ret = s;
		return 0;
	}
	_cleanup_pgresult_ PGresult *res = NULL;
	const char *vals[] = {name};
	int r = q(c, "SELECT owner FROM zlh.servers WHERE name = $1 ORDER BY owner LIMIT 2", 1,
	          vals, &res, err);
	if (r < 0)
		return r;
	if (PQntuples(res) == 0) {
		err_set(err, "ZL004", "no such server: %s", name);
		return -ENOENT;
	}
	if (PQntuples(res) > 1) {
		err_set(err, "", "%s is used by several owners (%s, %s, ...); give the owner", name,
		        PQgetvalue(res, 0, 0), PQgetvalue(res, 1, 0));
		return -ENOTUNIQ;
	}
	char *s = strdup(PQgetvalue(res, 0, 0));
	if (!s)
		return -ENOMEM;
	*ret = s;
	return 0;
}

int store_delete_server(PGconn *conn, const char *owner_or_NULL, const char *name,
                        json_t **ret_result, StoreError *err)
{
	if (!name) {
		err_set(err, "", "no name");
		return -EINVAL;
	}
	_cleanup_free_ char *owner = NULL;
	int r = owner_resolve(conn, owner_or_NULL, name, &owner, err);
	if (r < 0)
		return r;
	_cleanup_json_ json_t *res = NULL;
	const char *vals[] = {owner, name};
	r = q_json(conn, "SELECT zlh.delete_server($1, $2)::text", 2, vals, &res, err);
	if (r < 0)
		return r;
	if (ret_result)
		*ret_result = TAKE_PTR(res);
	return 0;
}

/* The `get -o json` object of server s with status st (DESIGN.md 9), with
 * extra metadata and status fields (each ", 'key', value ..." or ""). */
#define SQL_TS(x) "to_char((" x ") AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')"
#define SQL_SERVER_OBJECT(meta_extra, status_extra)                                       \
	"jsonb_build_object('kind', s.kind,"                                              \
	" 'metadata', jsonb_build_object('name', s.name, 'owner', s.owner, 'uid', s.uid," \
	"  'generation', s.generation, 'labels', s.labels" meta_extra "),"                \
	" 'spec', s.spec,"                                                                \
	" 'status', jsonb_build_object('phase', coalesce(st.phase, 'Pending'),"           \
	"  'observedGeneration', coalesce(st.observed_generation, 0), 'vmid', st.vmid,"   \
	"  'node', st.node, 'ip', host(st.ip), 'hostname', st.hostname,"                  \
	"  'conditions', coalesce(st.conditions, '[]'::jsonb)" status_extra "))"

static const char SQL_LIST_SERVERS[] = "SELECT coalesce(jsonb_agg(" SQL_SERVER_OBJECT(
    "", "") " ORDER BY s.owner, s.name),"
            " '[]'::jsonb)::text"
            " FROM zlh.servers s LEFT JOIN zlh.server_status st ON st.uid = s.uid"
            " WHERE $1::text IS NULL OR s.kind IN (SELECT k.kind FROM zlh.kinds k"
            "  WHERE lower(k.kind) = lower($1) OR lower(k.plural) = lower($1)"
            "  OR lower(k.short) = lower($1))";

int store_list_servers(PGconn *conn, const char *kind_or_NULL, json_t **ret)
{
	const char *vals[] = {kind_or_NULL};
	return q_json(conn, SQL_LIST_SERVERS, 1, vals, ret, NULL);
}

static const char SQL_GET_SERVER[] = "SELECT " SQL_SERVER_OBJECT(
    ", 'annotations', s.annotations, 'createdAt', " SQL_TS(
        "s.created_at") ", 'deletionRequestedAt', " SQL_TS("s.deletion_requested_at"),
    ", 'lastError', st.last_error, 'updatedAt', " SQL_TS(
        "st.updated_at")) "::text"
                          " FROM zlh.servers s LEFT JOIN zlh.server_status st ON st.uid = s.uid"
                          " WHERE s.name = $2 AND ($1::text IS NULL OR s.owner = $1)"
                          " ORDER BY s.owner LIMIT 2";

int store_get_server(PGconn *conn, const char *owner_or_NULL, const char *name, json_t **ret,
                     StoreError *err)
{
	if (!name) {
		err_set(err, "", "no name");
		return -EINVAL;
	}
	_cleanup_pgresult_ PGresult *res = NULL;
	const char *vals[] = {owner_or_NULL, name};
	int r = q(conn, SQL_GET_SERVER, 2, vals, &res, err);
	if (r < 0)
		return r;
	if (PQntuples(res) == 0) {
		if (owner_or_NULL)
			err_set(err, "ZL004", "no such server: %s/%s", owner_or_NULL, name);
		else
			err_set(err, "ZL004", "no such server: %s", name);
		return -ENOENT;
	}
	if (PQntuples(res) > 1) {
		err_set(err, "", "%s is used by several owners; give the owner", name);
		return -ENOTUNIQ;
	}
	return json_parse(PQgetvalue(res, 0, 0), ret, err);
}

static const char SQL_LIST_EVENTS[] =
    "SELECT coalesce(jsonb_agg(jsonb_build_object('id', e.id, 'uid', e.uid, 'kind', e.kind,"
    "  'name', e.name, 'owner', e.owner, 'type', e.type, 'reason', e.reason,"
    "  'message', e.message, 'count', e.count, 'firstAt', " SQL_TS(
        "e.first_at") ","
                      "  'lastAt', " SQL_TS(
                          "e.last_at") ") ORDER BY e.id), '[]'::jsonb)::text"
                                       " FROM (SELECT * FROM zlh.events ev"
                                       "  WHERE ($1::uuid IS NULL OR ev.uid = $1::uuid) AND ev.id "
                                       "> greatest($2::bigint, 0)"
                                       "  ORDER BY CASE WHEN $2::bigint < 0 THEN -ev.id ELSE ev.id "
                                       "END"
                                       "  LIMIT $3::integer) e";

int store_list_events(PGconn *conn, const char *uid_or_NULL, int64_t after_id, int limit,
                      json_t **ret, StoreError *err)
{
	if (limit <= 0)
		limit = 100;
	if (limit > 1000)
		limit = 1000;
	char after[24], lim[16];
	snprintf(after, sizeof after, "%lld", (long long)after_id);
	snprintf(lim, sizeof lim, "%d", limit);
	const char *vals[] = {uid_or_NULL, after, lim};
	return q_json(conn, SQL_LIST_EVENTS, 3, vals, ret, err);
}

int store_quota_set(PGconn *conn, const char *owner, int64_t max_servers, int64_t max_memory_mib,
                    StoreError *err)
{
	if (!owner || max_servers < 0 || max_servers > INT32_MAX || max_memory_mib < 0) {
		err_set(err, "", "quota: owner required, limits must be >= 0 (servers <= %d)",
		        INT32_MAX);
		return -EINVAL;
	}
	char s[24], mem[24];
	snprintf(s, sizeof s, "%lld", (long long)max_servers);
	snprintf(mem, sizeof mem, "%lld", (long long)max_memory_mib);
	const char *vals[] = {owner, s, mem};
	return q(conn,
	         "INSERT INTO zlh.quotas (owner, max_servers, max_memory_mib)"
	         " VALUES ($1, $2::integer, $3::bigint)"
	         " ON CONFLICT (owner) DO UPDATE SET max_servers = EXCLUDED.max_servers,"
	         "  max_memory_mib = EXCLUDED.max_memory_mib, updated_at = now()",
	         3, vals, NULL, err);
}
