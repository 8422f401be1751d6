/* Integration tests of db/: migrations, zlh.apply_server / zlh.delete_server
 * (canonical form, generations, request ids, quotas, hostnames, NOTIFY),
 * the zlh_portal role, and the store's list/get/events/quota functions,
 * against the real PostgreSQL of $ZLH_TEST_PG (test/run-tests.sh). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "db/store.h"
#include "specs/crd.h"
#include "specs/spec.h"
#include "test/lib/testutil.h"
#include "util.h"

DEFINE_TRIVIAL_CLEANUP_FUNC(PGresult *, PQclear)
#define _cleanup_pgresult_ _cleanup_(PQclearp)

static char *g_migrations; /* the source tree's db/migrations */
static json_t *g_kinds; /* crd_set_to_json of crds/ */
static char *g_db, *g_conninfo; /* one migrated database shared by most tests */

/* --- helpers --------------------------------------------------------------- */

static PGconn *conn_new(const char *conninfo)
{
	PGconn *c = NULL;
	StoreError err = {0};
	int r = store_connect(conninfo, &c, &err);
	if (r < 0)
		fail_msg("connect %s: %s", conninfo, err.message);
	return c;
}

/* Runs SQL with text parameters; returns the errno (0 on success). */
static int sqlp(PGconn *c, PGresult **ret, const char *sql, int n, const char *const *vals)
{
	PGresult *res = PQexecParams(c, sql, n, NULL, vals, NULL, NULL, 0);
	ExecStatusType st = PQresultStatus(res);
	if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
		int r = store_error_set(c, res, NULL);
		PQclear(res);
		return r;
	}
	if (ret)
		*ret = res;
	else
		PQclear(res);
	return 0;
}

/* One int64 value of a query with up to 2 parameters. */
static int64_t sql_int(PGconn *c, const char *sql, const char *p1, const char *p2)
{
	const char *vals[] = {p1, p2};
	_cleanup_pgresult_ PGresult *res = NULL;
	int r = sqlp(c, &res, sql, p2 ? 2 : p1 ? 1 : 0, vals);
	if (r < 0)
		fail_msg("%s: %s", sql, PQerrorMessage(c));
	int64_t v = 0;
	assert_int_equal(parse_int64(PQgetvalue(res, 0, 0), &v), 0);
	return v;
}

/* JSON from text written with ' for " (readable C literals). */
static json_t *jq(const char *s)
{
	_cleanup_free_ char *t = strdup(s);
	assert_non_null(t);
	for (char *p = t; *p; p++)
		if (*p == '\'')
			*p = '"';
	json_error_t e;
	json_t *j = json_loads(t, 0, &e);
	if (!j)
		fail_msg("bad test JSON %s: %s", t, e.text);
	return j;
}

/* A GameServer document; spec_extra is more spec members in ' JSON. */
static json_t *gs(const char *owner, const char *name, const char *spec_extra)
{
	char buf[2048];
	snprintf(
	    buf, sizeof buf,
	    "{'apiVersion':'zlh.dev/v1','kind':'GameServer','metadata':{'name':'%s','owner':'%s'},"
	    "'spec':{'variant':'paper','version':'1.21.4'%s%s}}",
	    name, owner, spec_extra && *spec_extra ? "," : "", spec_extra ? spec_extra : "");
	return jq(buf);
}

static int apply(PGconn *c, const json_t *doc, const char *reqid, json_t **ret, StoreError *err)
{
	StoreError dummy;
	return store_apply_server(c, doc, reqid, ret, err ? err : &dummy);
}

static int64_t jint(const json_t *o, const char *k)
{
	const json_t *v = json_object_get(o, k);
	assert_true(json_is_integer(v));
	return json_integer_value(v);
}

static bool jbool(const json_t *o, const char *k)
{
	const json_t *v = json_object_get(o, k);
	assert_true(json_is_boolean(v));
	return json_is_true(v);
}

static int64_t count_owner(PGconn *c, const char *owner)
{
	return sql_int(c, "SELECT count(*) FROM zlh.servers WHERE owner = $1", owner, NULL);
}

/* Asserts that object o has exactly the given keys (NULL-terminated). */
static void assert_keys(const json_t *o, const char *const *keys)
{
	assert_true(json_is_object(o));
	size_t n = 0;
	for (; keys[n]; n++)
		if (!json_object_get(o, keys[n]))
			fail_msg("missing key %s", keys[n]);
	assert_int_equal(json_object_size(o), n);
}

static int migrate(const char *conninfo, StoreError *err)
{
	PGconn *c = conn_new(conninfo);
	int r = store_migrate(c, g_migrations, g_kinds, err);
	PQfinish(c);
	return r;
}

/* --- migrations ------------------------------------------------------------ */

typedef struct MigrateArg {
	const char *conninfo;
	pthread_barrier_t *barrier;
	int r;
	StoreError err;
} MigrateArg;

static void *migrate_thread(void *p)
{
	MigrateArg *a = p;
	PGconn *c = NULL;
	a->r = store_connect(a->conninfo, &c, &a->err);
	pthread_barrier_wait(a->barrier);
	if (a->r >= 0)
		a->r = store_migrate(c, g_migrations, g_kinds, &a->err);
	PQfinish(c);
	return NULL;
}

static int count_files(void)
{
	int pending = 0;
	StoreError err = {0};
	/* A fresh database has every migration pending. */
	_cleanup_free_ char *name = NULL, *ci = NULL;
	assert_int_equal(tu_db_create(&name, &ci), 0);
	PGconn *c = conn_new(ci);
	assert_int_equal(store_migrations_pending(c, g_migrations, &pending, &err), 0);
	PQfinish(c);
	tu_db_drop(name);
	return pending;
}

static void migrate__twice_and_concurrently__applied_once(void **state)
{
	(void)state;
	int nfiles = count_files();
	assert_true(nfiles >= 1);

	_cleanup_free_ char *name = NULL, *ci = NULL;
	assert_int_equal(tu_db_create(&name, &ci), 0);
	pthread_barrier_t barrier;
	pthread_barrier_init(&barrier, NULL, 2);
	MigrateArg a[2] = {{ci, &barrier, 0, {{0}}}, {ci, &barrier, 0, {{0}}}};
	pthread_t t[2];
	for (int i = 0; i < 2; i++)
		assert_int_equal(pthread_create(&t[i], NULL, migrate_thread, &a[i]), 0);
	for (int i = 0; i < 2; i++)
		pthread_join(t[i], NULL);
	pthread_barrier_destroy(&barrier);
	for (int i = 0; i < 2; i++)
		if (a[i].r < 0)
			fail_msg("migrate %d: %d %s", i, a[i].r, a[i].err.message);
	/* One of them applied everything, the other found it current. */
	assert_int_equal(a[0].r + a[1].r, nfiles);
	assert_true(a[0].r == 0 || a[1].r == 0);

	StoreError err = {0};
	assert_int_equal(migrate(ci, &err), 0); /* a third time: nothing to do */

	PGconn *c = conn_new(ci);
	int pending = -1;
	assert_int_equal(store_migrations_pending(c, g_migrations, &pending, &err), 0);
	assert_int_equal(pending, 0);
	assert_int_equal(sql_int(c, "SELECT count(*) FROM zlh.schema_migrations", NULL, NULL),
	                 nfiles);
	assert_int_equal(sql_int(c, "SELECT count(*) FROM zlh.kinds", NULL, NULL),
	                 (int64_t)json_array_size(g_kinds));
	assert_int_equal(
	    sql_int(c, "SELECT max_servers FROM zlh.quotas WHERE owner = '*'", NULL, NULL), 50);
	assert_int_equal(
	    sql_int(c, "SELECT max_memory_mib FROM zlh.quotas WHERE owner = '*'", NULL, NULL),
	    262144);

	/* Kinds are upserted on every run: a changed default takes effect. */
	_cleanup_json_ json_t *kinds2 = json_deep_copy(g_kinds);
	size_t i;
	json_t *k;
	json_array_foreach(kinds2, i, k)
	{
		if (strcmp(json_string_value(json_object_get(k, "kind")), "GameServer") != 0)
			continue;
		json_t *mem = json_object_get(
		    json_object_get(
		        json_object_get(json_object_get(json_object_get(k, "schema"), "properties"),
		                        "resources"),
		        "properties"),
		    "memoryMiB");
		assert_non_null(mem);
		json_object_set_new(mem, "default", json_integer(2048));
	}
	assert_int_equal(store_migrate(c, g_migrations, kinds2, &err), 0);
	_cleanup_json_ json_t *d = gs("kinds", "k1", NULL);
	json_t *res = NULL;
	assert_int_equal(store_apply_server(c, d, NULL, &res, &err), 0);
	json_decref(res);
	assert_int_equal(
	    sql_int(c,
	            "SELECT (spec #>> '{resources,memoryMiB}')::bigint FROM zlh.servers"
	            " WHERE owner = 'kinds'",
	            NULL, NULL),
	    2048);
	/* Malformed kinds are refused before anything is sent. */
	_cleanup_json_ json_t *badk = jq("[{'kind':'X','apiVersion':'zlh.dev/v1','plural':'xs'}]");
	assert_int_equal(store_migrate(c, g_migrations, badk, &err), -EINVAL);
	assert_non_null(strstr(err.message, "kinds[0].schema"));

	/* A recorded migration whose file changed is refused, not re-run. */
	_cleanup_free_ char *dir = tu_tempdir();
	assert_non_null(dir);
	_cleanup_free_ char *src = NULL, *dst = NULL, *sql = NULL;
	assert_true(asprintf(&src, "%s/001_schema.sql", g_migrations) > 0);
	assert_true(asprintf(&dst, "%s/001_schema.sql", dir) > 0);
	size_t len = 0;
	assert_int_equal(file_read_all(src, 4 << 20, &sql, &len), 0);
	_cleanup_free_ char *changed = NULL;
	assert_true(asprintf(&changed, "%s\n-- edited\n", sql) > 0);
	assert_int_equal(tu_write_file(dst, changed), 0);
	assert_int_equal(store_migrations_pending(c, dir, &pending, &err), -EBADMSG);
	assert_non_null(strstr(err.message, "001_schema.sql"));
	assert_int_equal(store_migrate(c, dir, NULL, &err), -EBADMSG);
	/* An empty directory is an error, not "current". */
	unlink(dst);
	assert_int_equal(store_migrations_pending(c, dir, &pending, &err), -ENOENT);
	tu_rmrf(dir);

	PQfinish(c);
	tu_db_drop(name);
}

/* A migration that fails leaves nothing of itself behind, is not recorded,
 * and the next run applies it once fixed; the ones before it stay. */
static void migrate__failing_migration__rolled_back_then_retried(void **state)
{
	(void)state;
	_cleanup_free_ char *name = NULL, *ci = NULL;
	assert_int_equal(tu_db_create(&name, &ci), 0);
	_cleanup_free_ char *dir = tu_tempdir();
	assert_non_null(dir);
	_cleanup_free_ char *src = NULL, *dst = NULL, *sql = NULL, *bad = NULL;
	assert_true(asprintf(&src, "%s/001_schema.sql", g_migrations) > 0);
	assert_true(asprintf(&dst, "%s/001_schema.sql", dir) > 0);
	assert_true(asprintf(&bad, "%s/007_extra.sql", dir) > 0);
	size_t len = 0;
	assert_int_equal(file_read_all(src, 4 << 20, &sql, &len), 0);
	assert_int_equal(tu_write_file(dst, sql), 0);
	assert_int_equal(tu_write_file(bad, "CREATE TABLE zlh.t_extra (x integer);\n"
	                                    "SELECT 1 / 0;\n"),
	                 0);
	PGconn *c = conn_new(ci);
	StoreError err = {0};
	int r = store_migrate(c, dir, g_kinds, &err);
	assert_int_equal(r, -EINVAL); /* 22012 division_by_zero */
	assert_string_equal(err.sqlstate, "22012");
	assert_true(str_startswith(err.message, "007_extra.sql: "));
	assert_int_equal(sql_int(c, "SELECT count(*) FROM zlh.schema_migrations", NULL, NULL), 1);
	assert_int_equal(sql_int(c,
	                         "SELECT count(*) FROM pg_tables WHERE schemaname = 'zlh'"
	                         " AND tablename = 't_extra'",
	                         NULL, NULL),
	                 0);
	int pending = 0;
	assert_int_equal(store_migrations_pending(c, dir, &pending, &err), 0);
	assert_int_equal(pending, 1);
	/* The session is usable and the lock was released: fix and rerun. */
	assert_int_equal(tu_write_file(bad, "CREATE TABLE zlh.t_extra (x integer);\n"), 0);
	assert_int_equal(store_migrate(c, dir, g_kinds, &err), 1);
	assert_int_equal(sql_int(c,
	                         "SELECT count(*) FROM pg_tables WHERE schemaname = 'zlh'"
	                         " AND tablename = 't_extra'",
	                         NULL, NULL),
	                 1);
	assert_int_equal(store_migrations_pending(c, dir, &pending, &err), 0);
	assert_int_equal(pending, 0);
	/* A file name that is not NNN_name.sql is ignored; a duplicate version is an error. */
	_cleanup_free_ char *other = NULL, *dup = NULL;
	assert_true(asprintf(&other, "%s/README.txt", dir) > 0);
	assert_true(asprintf(&dup, "%s/007_again.sql", dir) > 0);
	assert_int_equal(tu_write_file(other, "x"), 0);
	assert_int_equal(store_migrations_pending(c, dir, &pending, &err), 0);
	assert_int_equal(tu_write_file(dup, "SELECT 1;"), 0);
	assert_int_equal(store_migrate(c, dir, NULL, &err), -EINVAL);
	assert_non_null(strstr(err.message, "same version"));
	PQfinish(c);
	tu_rmrf(dir);
	tu_db_drop(name);
}

static void migrate__dir_find__flag_env_source(void **state)
{
	(void)state;
	char *d = NULL;
	assert_int_equal(store_migrations_dir_find("/nonexistent/zlh", &d), -ENOENT);
	assert_null(d);
	assert_int_equal(store_migrations_dir_find(g_migrations, &d), 0);
	assert_string_equal(d, g_migrations);
	free(d);
	setenv("ZLH_MIGRATIONS_DIR", "/nonexistent/zlh", 1);
	assert_int_equal(store_migrations_dir_find(NULL, &d), -ENOENT);
	unsetenv("ZLH_MIGRATIONS_DIR");
	assert_int_equal(store_migrations_dir_find(NULL, &d), 0);
	assert_string_equal(d, ZLH_SOURCE_DIR "/db/migrations");
	free(d);
}

static void connect__nothing_listens__connection_error(void **state)
{
	(void)state;
	_cleanup_free_ char *dir = tu_tempdir();
	_cleanup_free_ char *ci = NULL;
	assert_true(asprintf(&ci, "host=%s port=5999 dbname=x connect_timeout=5", dir) > 0);
	PGconn *c = NULL;
	StoreError err = {0};
	int r = store_connect(ci, &c, &err);
	assert_int_equal(r, -ECONNREFUSED);
	assert_true(store_errno_is_connection(r));
	assert_null(c);
	assert_true(err.message[0] != '\0');
	tu_rmrf(dir);
}

/* --- apply: canonical form and generations ------------------------------------ */

static void apply__same_spec_or_explicit_defaults__generation_unchanged(void **state)
{
	(void)state;
	PGconn *c = conn_new(g_conninfo);
	_cleanup_json_ json_t *d1 = gs("gen", "survival-01", NULL);
	json_t *res = NULL;
	StoreError err = {0};
	assert_int_equal(apply(c, d1, NULL, &res, &err), 0);
	assert_int_equal(jint(res, "generation"), 1);
	assert_true(jbool(res, "created"));
	assert_true(jbool(res, "changed"));
	_cleanup_free_ char *uid = strdup(json_string_value(json_object_get(res, "uid")));
	assert_int_equal(strlen(uid), 36);
	json_decref(res);

	/* The same again: nothing changes. */
	assert_int_equal(apply(c, d1, NULL, &res, &err), 0);
	assert_int_equal(jint(res, "generation"), 1);
	assert_false(jbool(res, "created"));
	assert_false(jbool(res, "changed"));
	assert_string_equal(json_string_value(json_object_get(res, "uid")), uid);
	json_decref(res);

	/* Every default written out explicitly: the same canonical spec. */
	_cleanup_json_ json_t *d2 = gs(
	    "gen", "survival-01",
	    "'game':'minecraft','hostname':null,'resources':{'cores':2,'memoryMiB':4096,"
	    "'diskGiB':16},'power':'running','restartAt':null,'publish':true,'backups':{"
	    "'every':'6h','keep':7,'beforeDelete':true},'restore':null,'deletionPolicy':'Delete'");
	assert_int_equal(apply(c, d2, NULL, &res, &err), 0);
	assert_int_equal(jint(res, "generation"), 1);
	assert_false(jbool(res, "changed"));
	json_decref(res);
	/* Some defaults explicit, others left out; keys in another order. */
	_cleanup_json_ json_t *d3 =
	    jq("{'spec':{'resources':{'memoryMiB':4096},'version':'1.21.4','variant':'paper',"
	       "'backups':{}},'metadata':{'owner':'gen','name':'survival-01'},"
	       "'kind':'GameServer','apiVersion':'zlh.dev/v1'}");
	assert_int_equal(apply(c, d3, NULL, &res, &err), 0);
	assert_int_equal(jint(res, "generation"), 1);
	assert_false(jbool(res, "changed"));
	json_decref(res);

	/* The stored spec carries every default. */
	_cleanup_pgresult_ PGresult *pr = NULL;
	assert_int_equal(
	    sqlp(c, &pr, "SELECT spec = $2::jsonb FROM zlh.servers WHERE uid = $1::uuid", 2,
	         (const char *[]){uid, "{\"game\":\"minecraft\",\"variant\":\"paper\","
	                               "\"version\":\"1.21.4\",\"hostname\":null,"
	                               "\"resources\":{\"cores\":2,\"memoryMiB\":4096,"
	                               "\"diskGiB\":16},\"power\":\"running\","
	                               "\"restartAt\":null,\"publish\":true,\"backups\":{"
	                               "\"every\":\"6h\",\"keep\":7,\"beforeDelete\":true},"
	                               "\"restore\":null,\"deletionPolicy\":\"Delete\"}"}),
	    0);
	assert_string_equal(PQgetvalue(pr, 0, 0), "t");

	/* A real change: +1. */
	_cleanup_json_ json_t *d4 = gs("gen", "survival-01", "'resources':{'memoryMiB':8192}");
	assert_int_equal(apply(c, d4, NULL, &res, &err), 0);
	assert_int_equal(jint(res, "generation"), 2);
	assert_true(jbool(res, "changed"));
	assert_false(jbool(res, "created"));
	json_decref(res);

	/* Labels and annotations are stored but do not bump the generation. */
	_cleanup_json_ json_t *d5 =
	    jq("{'apiVersion':'zlh.dev/v1','kind':'GameServer','metadata':{'name':'survival-01',"
	       "'owner':'gen','labels':{'tier':'modded'},'annotations':{'zlh.dev/paused':'true'}},"
	       "'spec':{'variant':'paper','version':'1.21.4','resources':{'memoryMiB':8192}}}");
	assert_int_equal(apply(c, d5, NULL, &res, &err), 0);
	assert_int_equal(jint(res, "generation"), 2);
	assert_true(jbool(res, "changed"));
	json_decref(res);
	assert_int_equal(sql_int(c,
	                         "SELECT count(*) FROM zlh.servers WHERE uid = $1::uuid"
	                         " AND labels = '{\"tier\":\"modded\"}'"
	                         " AND annotations->>'zlh.dev/paused' = 'true'",
	                         uid, NULL),
	                 1);

	/* The spec hash follows the stored spec. */
	assert_int_equal(sql_int(c,
	                         "SELECT count(*) FROM zlh.servers WHERE uid = $1::uuid AND"
	                         " spec_hash = zlh.json_hash(spec)",
	                         uid, NULL),
	                 1);
	/* Status exists from the first apply. */
	assert_int_equal(sql_int(c,
	                         "SELECT count(*) FROM zlh.server_status WHERE uid = $1::uuid"
	                         " AND phase = 'Pending' AND conditions = '[]'"
	                         " AND observed_generation = 0",
	                         uid, NULL),
	                 1);
	PQfinish(c);
}

static void apply__devserver_minimal__defaults_filled(void **state)
{
	(void)state;
	PGconn *c = conn_new(g_conninfo);
	_cleanup_json_ json_t *d =
	    jq("{'apiVersion':'zlh.dev/v1','kind':'DevServer','metadata':{'name':'api-sandbox',"
	       "'owner':'dev'},'spec':{'runtime':'node','version':'22'}}");
	json_t *res = NULL;
	StoreError err = {0};
	assert_int_equal(apply(c, d, NULL, &res, &err), 0);
	json_decref(res);
	assert_int_equal(
	    sql_int(
	        c,
	        "SELECT count(*) FROM zlh.servers WHERE owner = 'dev' AND kind = 'DevServer'"
	        " AND spec = '{\"runtime\":\"node\",\"version\":\"22\",\"codeServer\":true,"
	        "\"hostname\":null,\"resources\":{\"cores\":2,\"memoryMiB\":4096,\"diskGiB\":16},"
	        "\"power\":\"running\",\"restartAt\":null,\"deletionPolicy\":\"Delete\"}'",
	        NULL, NULL),
	    1);
	/* The kind of a server cannot change. */
	_cleanup_json_ json_t *g = gs("dev", "api-sandbox", NULL);
	assert_int_equal(apply(c, g, NULL, &res, &err), -EINVAL);
	assert_string_equal(err.sqlstate, "ZL001");
	assert_non_null(strstr(err.message, "kind:"));
	PQfinish(c);
}

/* servers.spec_hash is specs' spec_hash() of the stored spec, byte for byte,
 * even for strings that need escaping; values the C validator accepts are
 * accepted here too. */
static void apply__spec_hash__equals_c_spec_hash(void **state)
{
	(void)state;
	PGconn *c = conn_new(g_conninfo);
	static const char *const docs[] = {
	    "{'apiVersion':'zlh.dev/v1','kind':'GameServer','metadata':{'name':'h1','owner':'hash',"
	    "'labels':{'a key with spaces':'v','zlh.dev/x':''}},'spec':{'variant':'forge',"
	    "'version':'1.20.1','restartAt':'2024-02-29T23:59:60.5+05:30',"
	    "'backups':{'every':'1h30m'},'restore':{'backup':'b\\u0001\\u001f\\t\\n"
	    "\\\"\\\\/\u00fc\u20ac\U0001F600 x','requestId':"
	    "'0B4C3A52-7F0E-4D55-9D0F-2F1C8E4B6A10'}}}",
	    "{'apiVersion':'zlh.dev/v1','kind':'DevServer','metadata':{'name':'h2','owner':'hash'},"
	    "'spec':{'runtime':'go','version':'1.22','restartAt':'2025-01-31t12:00:00z'}}",
	};
	for (size_t i = 0; i < ELEMENTSOF(docs); i++) {
		_cleanup_json_ json_t *d = jq(docs[i]);
		json_t *res = NULL;
		StoreError err = {0};
		if (apply(c, d, NULL, &res, &err) < 0)
			fail_msg("doc %zu: %s", i, err.message);
		const char *uid = json_string_value(json_object_get(res, "uid"));
		_cleanup_pgresult_ PGresult *pr = NULL;
		assert_int_equal(sqlp(c, &pr,
		                      "SELECT spec::text, spec_hash FROM zlh.servers"
		                      " WHERE uid = $1::uuid",
		                      1, (const char *[]){uid}),
		                 0);
		_cleanup_json_ json_t *spec = json_loads(PQgetvalue(pr, 0, 0), 0, NULL);
		assert_non_null(spec);
		char h[65];
		assert_int_equal(spec_hash(spec, h), 0);
		assert_string_equal(PQgetvalue(pr, 0, 1), h);
		json_decref(res);
	}
	PQfinish(c);
}

/* --- apply: concurrency ------------------------------------------------------------ */

typedef struct ApplyArg {
	const json_t *doc;
	const char *request_id;
	pthread_barrier_t *barrier;
	int r;
	int64_t generation;
	bool created;
	char *answer; /* the result, canonical text */
	StoreError err;
} ApplyArg;

static void *apply_thread(void *p)
{
	ApplyArg *a = p;
	PGconn *c = NULL;
	a->r = store_connect(g_conninfo, &c, &a->err);
	pthread_barrier_wait(a->barrier);
	if (a->r >= 0) {
		json_t *res = NULL;
		a->r = store_apply_server(c, a->doc, a->request_id, &res, &a->err);
		if (a->r >= 0) {
			a->generation = json_integer_value(json_object_get(res, "generation"));
			a->created = json_is_true(json_object_get(res, "created"));
			a->answer = json_dumps(res, JSON_COMPACT | JSON_SORT_KEYS);
		}
		json_decref(res);
	}
	PQfinish(c);
	return NULL;
}

static void run_concurrently(ApplyArg *a, size_t n)
{
	pthread_barrier_t barrier;
	pthread_barrier_init(&barrier, NULL, (unsigned)n);
	pthread_t *t = calloc(n, sizeof *t);
	assert_non_null(t);
	for (size_t i = 0; i < n; i++) {
		a[i].barrier = &barrier;
		assert_int_equal(pthread_create(&t[i], NULL, apply_thread, &a[i]), 0);
	}
	for (size_t i = 0; i < n; i++)
		pthread_join(t[i], NULL);
	free(t);
	pthread_barrier_destroy(&barrier);
}

static void args_clear(ApplyArg *a, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(a[i].answer);
	memset(a, 0, n * sizeof *a);
}

static void apply__50_concurrent_identical__one_row_generation_1(void **state)
{
	(void)state;
	enum { N = 50 };
	_cleanup_json_ json_t *d = gs("conc", "same", "'hostname':'conc-same'");
	ApplyArg a[N];
	memset(a, 0, sizeof a);
	for (int i = 0; i < N; i++)
		a[i].doc = d;
	run_concurrently(a, N);
	int created = 0;
	for (int i = 0; i < N; i++) {
		if (a[i].r < 0)
			fail_msg("apply %d: %d %s", i, a[i].r, a[i].err.message);
		assert_int_equal(a[i].generation, 1);
		created += a[i].created;
	}
	assert_int_equal(created, 1);
	args_clear(a, N);
	PGconn *c = conn_new(g_conninfo);
	assert_int_equal(count_owner(c, "conc"), 1);
	assert_int_equal(
	    sql_int(c, "SELECT generation FROM zlh.servers WHERE owner = 'conc'", NULL, NULL), 1);
	PQfinish(c);
}

static void apply__20_concurrent_at_quota_edge__never_exceeded(void **state)
{
	(void)state;
	enum { N = 20 };
	PGconn *c = conn_new(g_conninfo);
	StoreError err = {0};
	/* Count limit: 5 servers, 3 exist. */
	assert_int_equal(store_quota_set(c, "edge", 5, 1000000, &err), 0);
	json_t *res = NULL;
	for (int i = 0; i < 3; i++) {
		char name[32];
		snprintf(name, sizeof name, "pre-%d", i);
		_cleanup_json_ json_t *d = gs("edge", name, NULL);
		assert_int_equal(apply(c, d, NULL, &res, &err), 0);
		json_decref(res);
	}
	json_t *docs[N];
	ApplyArg a[N];
	memset(a, 0, sizeof a);
	for (int i = 0; i < N; i++) {
		char name[32];
		snprintf(name, sizeof name, "new-%d", i);
		docs[i] = gs("edge", name, NULL);
		a[i].doc = docs[i];
	}
	run_concurrently(a, N);
	int ok = 0;
	for (int i = 0; i < N; i++) {
		if (a[i].r == 0)
			ok++;
		else {
			assert_int_equal(a[i].r, -EDQUOT);
			assert_string_equal(a[i].err.sqlstate, "ZL002");
		}
		json_decref(docs[i]);
	}
	args_clear(a, N);
	assert_int_equal(ok, 2);
	assert_int_equal(count_owner(c, "edge"), 5);

	/* Memory limit: 3 x 4096 allowed, 20 concurrent 4096 MiB servers. */
	assert_int_equal(store_quota_set(c, "edge-mem", 100, 3 * 4096, &err), 0);
	memset(a, 0, sizeof a);
	for (int i = 0; i < N; i++) {
		char name[32];
		snprintf(name, sizeof name, "m-%d", i);
		docs[i] = gs("edge-mem", name, NULL);
		a[i].doc = docs[i];
	}
	run_concurrently(a, N);
	ok = 0;
	for (int i = 0; i < N; i++) {
		if (a[i].r == 0)
			ok++;
		else
			assert_int_equal(a[i].r, -EDQUOT);
		json_decref(docs[i]);
	}
	args_clear(a, N);
	assert_int_equal(ok, 3);
	assert_int_equal(count_owner(c, "edge-mem"), 3);

	/* Growing a server past the memory quota is refused too; shrinking is fine. */
	_cleanup_json_ json_t *big = gs("edge-mem", "m-0", "'resources':{'memoryMiB':8192}");
	_cleanup_json_ json_t *small = gs("edge-mem", "m-0", "'resources':{'memoryMiB':2048}");
	int64_t which = sql_int(c,
	                        "SELECT count(*) FROM zlh.servers WHERE owner = 'edge-mem'"
	                        " AND name = 'm-0'",
	                        NULL, NULL);
	if (which == 1) {
		assert_int_equal(apply(c, big, NULL, &res, &err), -EDQUOT);
		assert_non_null(strstr(err.message, "MiB"));
		assert_int_equal(apply(c, small, NULL, &res, &err), 0);
		json_decref(res);
	}

	/* The '*' default applies to owners without a row. */
	assert_int_equal(store_quota_set(c, "*", 1, 262144, &err), 0);
	_cleanup_json_ json_t *d1 = gs("dflt", "one", NULL);
	_cleanup_json_ json_t *d2 = gs("dflt", "two", NULL);
	assert_int_equal(apply(c, d1, NULL, &res, &err), 0);
	json_decref(res);
	assert_int_equal(apply(c, d2, NULL, &res, &err), -EDQUOT);
	assert_int_equal(store_quota_set(c, "*", 50, 262144, &err), 0);
	assert_int_equal(store_quota_set(c, "bad owner", 1, 1, &err), -EINVAL);
	assert_int_equal(store_quota_set(c, "x", -1, 1, &err), -EINVAL);
	PQfinish(c);
}

static void apply__concurrent_same_hostname_other_owners__one_wins(void **state)
{
	(void)state;
	enum { N = 10 };
	json_t *docs[N];
	ApplyArg a[N];
	memset(a, 0, sizeof a);
	for (int i = 0; i < N; i++) {
		char owner[32];
		snprintf(owner, sizeof owner, "hrace-%d", i);
		docs[i] = gs(owner, "srv", "'hostname':'race-host'");
		a[i].doc = docs[i];
	}
	run_concurrently(a, N);
	int ok = 0;
	for (int i = 0; i < N; i++) {
		if (a[i].r == 0)
			ok++;
		else if (a[i].r != -EADDRINUSE)
			fail_msg("apply %d: %d %s %s", i, a[i].r, a[i].err.sqlstate,
			         a[i].err.message);
		json_decref(docs[i]);
	}
	args_clear(a, N);
	assert_int_equal(ok, 1);
	PGconn *c = conn_new(g_conninfo);
	assert_int_equal(sql_int(c,
	                         "SELECT count(*) FROM zlh.servers WHERE spec->>'hostname' ="
	                         " 'race-host'",
	                         NULL, NULL),
	                 1);
	PQfinish(c);
}

static void apply__concurrent_same_request_id__one_answer(void **state)
{
	(void)state;
	enum { N = 10 };
	_cleanup_json_ json_t *d = gs("rrace", "srv", NULL);
	ApplyArg a[N];
	memset(a, 0, sizeof a);
	for (int i = 0; i < N; i++) {
		a[i].doc = d;
		a[i].request_id = "7a0c1e0a-8a57-4b1e-9d43-1d2b7a1f0c99";
	}
	run_concurrently(a, N);
	for (int i = 0; i < N; i++) {
		if (a[i].r < 0)
			fail_msg("apply %d: %d %s", i, a[i].r, a[i].err.message);
		/* Every caller gets the first answer, created:true included. */
		assert_string_equal(a[i].answer, a[0].answer);
		assert_true(a[i].created);
	}
	args_clear(a, N);
	PGconn *c = conn_new(g_conninfo);
	assert_int_equal(count_owner(c, "rrace"), 1);
	PQfinish(c);
}

/* --- apply: request ids -------------------------------------------------------------- */

static void apply__request_id_repeated__first_answer_or_zl003(void **state)
{
	(void)state;
	PGconn *c = conn_new(g_conninfo);
	const char *rid = "6f1c1e0a-8a57-4b1e-9d43-1d2b7a1f0c01";
	_cleanup_json_ json_t *d = gs("req", "r1", NULL);
	json_t *first = NULL, *again = NULL, *res = NULL;
	StoreError err = {0};
	assert_int_equal(apply(c, d, rid, &first, &err), 0);
	assert_true(jbool(first, "created"));

	/* Another request changes the server in between... */
	_cleanup_json_ json_t *d2 = gs("req", "r1", "'power':'stopped'");
	assert_int_equal(apply(c, d2, NULL, &res, &err), 0);
	assert_int_equal(jint(res, "generation"), 2);
	json_decref(res);

	/* ...the repeat still gets the first answer, verbatim, and writes nothing. */
	assert_int_equal(apply(c, d, rid, &again, &err), 0);
	assert_true(json_equal(first, again));
	assert_int_equal(
	    sql_int(c, "SELECT generation FROM zlh.servers WHERE owner = 'req' AND name = 'r1'",
	            NULL, NULL),
	    2);
	json_decref(again);

	/* The same id with another document: ZL003. */
	assert_int_equal(apply(c, d2, rid, &res, &err), -EEXIST);
	assert_string_equal(err.sqlstate, "ZL003");
	/* A malformed id: -EINVAL. */
	assert_int_equal(apply(c, d, "not-a-uuid", &res, &err), -EINVAL);
	json_decref(first);
	PQfinish(c);
}

/* --- apply: invalid documents --------------------------------------------------------- */

static void apply__invalid_docs__zl001_naming_the_field_nothing_written(void **state)
{
	(void)state;
	static const struct {
		const char *doc; /* ' for " */
		const char *msg; /* expected substring of the message */
	} cases[] = {
#define GSX(META, SPEC) \
	"{'apiVersion':'zlh.dev/v1','kind':'GameServer','metadata':" META ",'spec':" SPEC "}"
#define M "{'name':'bad','owner':'inv'}"
#define S(x) "{'variant':'paper','version':'1.21.4'" x "}"
	    {GSX(M, S(",'resources':{'memoryMiB':100}")),
	     "spec.resources.memoryMiB: 100 is below the minimum 512"},
	    {GSX(M, S(",'resources':{'cores':64}")),
	     "spec.resources.cores: 64 is above the maximum 32"},
	    {GSX(M, "{'variant':'paperr','version':'1'}"),
	     "spec.variant: \"paperr\" is not one of"},
	    {GSX(M, S(",'foo':1")), "spec.foo: unknown field"},
	    {GSX(M, S(",'resources':{'ram':1}")), "spec.resources.ram: unknown field"},
	    {GSX(M, "{'variant':'paper'}"), "spec.version: required field is missing"},
	    {GSX(M, S(",'resources':{'cores':'2'}")),
	     "spec.resources.cores: expected integer, got string"},
	    {GSX(M, S(",'resources':{'cores':2.5}")), "spec.resources.cores: expected integer"},
	    {GSX(M, S(",'resources':{'cores':2.0}")), "spec.resources.cores: expected integer"},
	    {GSX(M, S(",'publish':'yes'")), "spec.publish: expected boolean, got string"},
	    {GSX(M, S(",'power':null")), "spec.power: must not be null"},
	    {GSX(M, "{'variant':'paper','version':'123456789012345678901234567890123'}"),
	     "spec.version: length 33 exceeds maxLength 32"},
	    {GSX(M, "{'variant':'paper','version':''}"),
	     "spec.version: length 0 is below minLength 1"},
	    {GSX(M, "{'variant':'paper','version':'-x'}"),
	     "spec.version: \"-x\" does not match the pattern"},
	    {GSX(M, S(",'hostname':'Bad-Host'")), "spec.hostname: \"Bad-Host\" does not match"},
	    {GSX(M, S(",'restore':{'backup':'b1'}")),
	     "spec.restore.requestId: required field is missing"},
	    {GSX(M, S(",'restore':{'backup':'b1','requestId':'nope'}")),
	     "spec.restore.requestId: \"nope\" is not a UUID"},
	    {GSX(M, S(",'backups':{'every':'6 hours'}")),
	     "spec.backups.every: \"6 hours\" is not a duration"},
	    {GSX(M, S(",'restartAt':'tomorrow'")),
	     "spec.restartAt: \"tomorrow\" is not an RFC 3339"},
	    {GSX(M, S(",'restartAt':'2025-13-01T00:00:00Z'")),
	     "spec.restartAt: \"2025-13-01T00:00:00Z\" is not an RFC 3339 date-time"},
	    {GSX(M, S(",'restartAt':'2023-02-29T00:00:00Z'")), "spec.restartAt:"},
	    {GSX(M, S(",'restartAt':'2024-01-01T24:00:00Z'")), "spec.restartAt:"},
	    {GSX(M, S(",'restartAt':'2024-01-01 10:00:00Z'")), "spec.restartAt:"},
	    {GSX(M, S(",'backups':{'every':'99999999999999d'}")), "spec.backups.every:"},
	    {GSX(M, S(",'backups':{'every':'6H'}")), "spec.backups.every:"},
	    {GSX("{'name':'bad','owner':'inv','labels':null}", S("")),
	     "metadata.labels: expected a mapping of strings to strings, got null"},
	    {GSX(M, "[1]"), "spec: expected object, got array"},
	    {GSX("{'name':'Bad_Name','owner':'inv'}", S("")), "metadata.name: \"Bad_Name\""},
	    {GSX("{'name':'-bad','owner':'inv'}", S("")), "metadata.name:"},
	    {GSX("{'owner':'inv'}", S("")), "metadata.name: required field is missing"},
	    {GSX("{'name':'bad'}", S("")), "metadata.owner: required field is missing"},
	    {GSX("{'name':'bad','owner':'-inv'}", S("")), "metadata.owner:"},
	    {GSX("{'name':'bad','owner':'inv','uid':'x'}", S("")), "metadata.uid: unknown field"},
	    {GSX("{'name':'bad','owner':'inv','labels':{'a':1}}", S("")),
	     "metadata.labels.a: expected string, got number"},
	    {GSX("{'name':'bad','owner':'inv','annotations':[]}", S("")),
	     "metadata.annotations: expected a mapping of strings to strings, got array"},
	    {"{'apiVersion':'zlh.dev/v1','kind':'GameServer','metadata':" M "}",
	     "spec: required field is missing"},
	    {"{'apiVersion':'zlh.dev/v2','kind':'GameServer','metadata':" M ",'spec':" S("") "}",
	     "apiVersion: must be \"zlh.dev/v1\", got \"zlh.dev/v2\""},
	    {"{'kind':'GameServer','metadata':" M ",'spec':" S("") "}",
	     "apiVersion: required field is missing"},
	    {"{'apiVersion':'zlh.dev/v1','kind':'Pod','metadata':" M ",'spec':" S("") "}",
	     "kind: unknown kind \"Pod\" (known: DevServer, GameServer)"},
	    {"{'apiVersion':'zlh.dev/v1','kind':'GameServer','metadata':" M
	     ",'spec':" S("") ",'status':{}}",
	     "status: unknown field"},
	    {"{'apiVersion':'zlh.dev/v1','kind':'DevServer','metadata':" M
	     ",'spec':{'runtime':'node','version':'22','game':'minecraft'}}",
	     "spec.game: unknown field"},
	    {"[]", "the document must be a JSON object"},
#undef GSX
#undef M
#undef S
	};
	PGconn *c = conn_new(g_conninfo);
	for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
		_cleanup_json_ json_t *d = jq(cases[i].doc);
		json_t *res = NULL;
		StoreError err = {0};
		int r = apply(c, d, NULL, &res, &err);
		if (r != -EINVAL || strcmp(err.sqlstate, "ZL001") != 0 ||
		    !strstr(err.message, cases[i].msg))
			fail_msg("case %zu %s: r=%d sqlstate=%s message=%s (wanted %s)", i,
			         cases[i].doc, r, err.sqlstate, err.message, cases[i].msg);
		assert_null(res);
	}
	assert_int_equal(count_owner(c, "inv"), 0);
	assert_int_equal(sql_int(c, "SELECT count(*) FROM zlh.requests", NULL, NULL) >= 0, 1);
	PQfinish(c);
}

/* --- hostnames -------------------------------------------------------------------------- */

static void apply__hostname_taken__zl005(void **state)
{
	(void)state;
	PGconn *c = conn_new(g_conninfo);
	json_t *res = NULL;
	StoreError err = {0};
	_cleanup_json_ json_t *a = gs("host-a", "one", "'hostname':'shared-name'");
	_cleanup_json_ json_t *b = gs("host-b", "two", "'hostname':'shared-name'");
	assert_int_equal(apply(c, a, NULL, &res, &err), 0);
	json_decref(res);
	/* Reapplying the holder is fine. */
	assert_int_equal(apply(c, a, NULL, &res, &err), 0);
	json_decref(res);
	assert_int_equal(apply(c, b, NULL, &res, &err), -EADDRINUSE);
	assert_string_equal(err.sqlstate, "ZL005");
	assert_non_null(strstr(err.message, "spec.hostname"));
	assert_int_equal(count_owner(c, "host-b"), 0);

	/* A hostname allocated by the controller (default hostname) is taken too. */
	_cleanup_json_ json_t *d = gs("host-b", "three", NULL);
	assert_int_equal(apply(c, d, NULL, &res, &err), 0);
	const char *uid = json_string_value(json_object_get(res, "uid"));
	assert_int_equal(sqlp(c, NULL,
	                      "INSERT INTO zlh.allocations (uid, vmid, ip, hostname, node)"
	                      " VALUES ($1::uuid, 5001, '10.60.0.11', 'mc-paper-5001', 'pve1')",
	                      1, (const char *[]){uid}),
	                 0);
	json_decref(res);
	_cleanup_json_ json_t *e = gs("host-c", "four", "'hostname':'mc-paper-5001'");
	assert_int_equal(apply(c, e, NULL, &res, &err), -EADDRINUSE);
	/* ...and the other way round: an allocation cannot take a claimed name. */
	_cleanup_json_ json_t *f = gs("host-c", "five", NULL);
	assert_int_equal(apply(c, f, NULL, &res, &err), 0);
	uid = json_string_value(json_object_get(res, "uid"));
	assert_int_equal(sqlp(c, NULL,
	                      "INSERT INTO zlh.allocations (uid, vmid, ip, hostname, node)"
	                      " VALUES ($1::uuid, 5002, '10.60.0.12', 'shared-name', 'pve1')",
	                      1, (const char *[]){uid}),
	                 -EADDRINUSE);
	json_decref(res);
	PQfinish(c);
}

/* --- delete ------------------------------------------------------------------------------ */

static void delete__present_absent_ambiguous(void **state)
{
	(void)state;
	PGconn *c = conn_new(g_conninfo);
	json_t *res = NULL;
	StoreError err = {0};
	_cleanup_json_ json_t *a = gs("del-a", "gone", NULL);
	_cleanup_json_ json_t *b = gs("del-b", "gone", NULL);
	_cleanup_json_ json_t *u = gs("del-a", "unique-name-1", NULL);
	assert_int_equal(apply(c, a, NULL, &res, &err), 0);
	json_decref(res);
	assert_int_equal(apply(c, b, NULL, &res, &err), 0);
	json_decref(res);
	assert_int_equal(apply(c, u, NULL, &res, &err), 0);
	_cleanup_free_ char *uid = strdup(json_string_value(json_object_get(res, "uid")));
	json_decref(res);

	assert_int_equal(store_delete_server(c, NULL, "gone", &res, &err), -ENOTUNIQ);
	assert_int_equal(store_delete_server(c, NULL, "nothing-here", &res, &err), -ENOENT);
	assert_int_equal(store_delete_server(c, "del-a", "nothing-here", &res, &err), -ENOENT);
	assert_string_equal(err.sqlstate, "ZL004");

	/* Unique name without owner. */
	assert_int_equal(store_delete_server(c, NULL, "unique-name-1", &res, &err), 0);
	assert_string_equal(json_string_value(json_object_get(res, "uid")), uid);
	assert_true(jbool(res, "deletionRequested"));
	json_decref(res);
	int64_t t1 = sql_int(c,
	                     "SELECT (extract(epoch FROM deletion_requested_at) * 1000000)::bigint"
	                     " FROM zlh.servers WHERE uid = $1::uuid",
	                     uid, NULL);
	assert_true(t1 > 0);
	/* Idempotent: the first request time stays. */
	assert_int_equal(store_delete_server(c, "del-a", "unique-name-1", NULL, &err), 0);
	assert_int_equal(
	    sql_int(c,
	            "SELECT (extract(epoch FROM deletion_requested_at) * 1000000)::bigint"
	            " FROM zlh.servers WHERE uid = $1::uuid",
	            uid, NULL),
	    t1);
	/* Applying to a server being deleted is refused. */
	_cleanup_json_ json_t *again = gs("del-a", "unique-name-1", "'power':'stopped'");
	assert_int_equal(apply(c, again, NULL, &res, &err), -EINVAL);
	assert_non_null(strstr(err.message, "being deleted"));

	/* The SQL function directly: ZL004. */
	PGresult *pr = PQexecParams(c, "SELECT zlh.delete_server('nobody', 'nothing')", 0, NULL,
	                            NULL, NULL, NULL, 0);
	assert_string_equal(PQresultErrorField(pr, PG_DIAG_SQLSTATE), "ZL004");
	PQclear(pr);
	PQfinish(c);
}

/* --- NOTIFY ---------------------------------------------------------------------------------- */

/* Waits (deadline) for a zlh_work notification; returns its payload (new) or NULL. */
static char *wait_notify(PGconn *l, int64_t timeout_ms)
{
	int64_t deadline = now_mono_ms() + timeout_ms;
	for (;;) {
		PQconsumeInput(l);
		PGnotify *n = PQnotifies(l);
		if (n) {
			char *s = strcmp(n->relname, "zlh_work") == 0 ? strdup(n->extra) : NULL;
			PQfreemem(n);
			if (s)
				return s;
			continue;
		}
		int64_t left = deadline - now_mono_ms();
		if (left <= 0)
			return NULL;
		struct pollfd p = {.fd = PQsocket(l), .events = POLLIN};
		(void)poll(&p, 1, (int)left);
	}
}

static void notify__apply_and_delete__uid_on_zlh_work(void **state)
{
	(void)state;
	PGconn *l = conn_new(g_conninfo);
	assert_int_equal(sqlp(l, NULL, "LISTEN zlh_work", 0, NULL), 0);
	PGconn *c = conn_new(g_conninfo);
	json_t *res = NULL;
	StoreError err = {0};
	_cleanup_json_ json_t *d = gs("notif", "n1", NULL);
	assert_int_equal(apply(c, d, NULL, &res, &err), 0);
	_cleanup_free_ char *uid = strdup(json_string_value(json_object_get(res, "uid")));
	json_decref(res);
	_cleanup_free_ char *p1 = wait_notify(l, 10000);
	assert_non_null(p1);
	assert_string_equal(p1, uid);

	/* No change, no notification; a change notifies again. */
	assert_int_equal(apply(c, d, NULL, &res, &err), 0);
	json_decref(res);
	_cleanup_json_ json_t *d2 = gs("notif", "n1", "'power':'stopped'");
	assert_int_equal(apply(c, d2, NULL, &res, &err), 0);
	json_decref(res);
	_cleanup_free_ char *p2 = wait_notify(l, 10000);
	assert_non_null(p2);
	assert_string_equal(p2, uid);
	_cleanup_free_ char *none = wait_notify(l, 100);
	assert_null(none);

	/* Inside a rolled-back transaction: nothing is delivered. */
	assert_int_equal(store_begin(c, &err), 0);
	_cleanup_json_ json_t *d3 = gs("notif", "n1", "'power':'running'");
	assert_int_equal(apply(c, d3, NULL, &res, &err), 0);
	json_decref(res);
	assert_int_equal(store_rollback(c, &err), 0);
	_cleanup_free_ char *none2 = wait_notify(l, 100);
	assert_null(none2);

	assert_int_equal(store_delete_server(c, "notif", "n1", NULL, &err), 0);
	_cleanup_free_ char *p3 = wait_notify(l, 10000);
	assert_non_null(p3);
	assert_string_equal(p3, uid);
	PQfinish(c);
	PQfinish(l);
}

/* --- transactions ------------------------------------------------------------------------------ */

static void apply__several_docs_in_one_transaction__all_or_nothing(void **state)
{
	(void)state;
	PGconn *c = conn_new(g_conninfo);
	json_t *res = NULL;
	StoreError err = {0};
	_cleanup_json_ json_t *a = gs("txn", "a", NULL);
	_cleanup_json_ json_t *bad = gs("txn", "b", "'resources':{'memoryMiB':1}");
	_cleanup_json_ json_t *b = gs("txn", "b", NULL);

	assert_int_equal(store_begin(c, &err), 0);
	assert_int_equal(apply(c, a, NULL, &res, &err), 0);
	json_decref(res);
	assert_int_equal(apply(c, bad, NULL, &res, &err), -EINVAL);
	assert_int_equal(store_commit(c, &err), -ECANCELED);
	assert_int_equal(count_owner(c, "txn"), 0);

	assert_int_equal(store_begin(c, &err), 0);
	assert_int_equal(apply(c, a, NULL, &res, &err), 0);
	json_decref(res);
	assert_int_equal(apply(c, bad, NULL, &res, &err), -EINVAL);
	assert_int_equal(store_rollback(c, &err), 0);
	assert_int_equal(count_owner(c, "txn"), 0);

	assert_int_equal(store_begin(c, &err), 0);
	assert_int_equal(apply(c, a, NULL, &res, &err), 0);
	json_decref(res);
	assert_int_equal(apply(c, b, NULL, &res, &err), 0);
	json_decref(res);
	assert_int_equal(store_commit(c, &err), 0);
	assert_int_equal(count_owner(c, "txn"), 2);

	/* REPEATABLE READ would defeat the per-owner serialization: refused. */
	assert_int_equal(sqlp(c, NULL, "BEGIN ISOLATION LEVEL REPEATABLE READ", 0, NULL), 0);
	assert_true(apply(c, a, NULL, &res, &err) < 0);
	assert_non_null(strstr(err.message, "READ COMMITTED"));
	assert_int_equal(store_rollback(c, &err), 0);
	PQfinish(c);
}

/* --- the portal role ------------------------------------------------------------------------------ */

static void portal__calls_functions_reads_three_tables__nothing_else(void **state)
{
	(void)state;
	char role[64];
	snprintf(role, sizeof role, "zlh_t_portal_%d", (int)getpid());
	char sql[256];
	/* A login role that is a member of zlh_portal, like the portal's. */
	snprintf(sql, sizeof sql,
	         "DO $$BEGIN IF EXISTS (SELECT FROM pg_roles WHERE rolname = '%s') THEN"
	         " DROP ROLE %s; END IF; END$$",
	         role, role);
	assert_int_equal(tu_sql(g_conninfo, sql), 0);
	snprintf(sql, sizeof sql, "CREATE ROLE %s LOGIN IN ROLE zlh_portal", role);
	assert_int_equal(tu_sql(g_conninfo, sql), 0);

	_cleanup_free_ char *ci = tu_db_conninfo_as(g_db, role);
	PGconn *p = conn_new(ci);
	json_t *res = NULL;
	StoreError err = {0};
	_cleanup_json_ json_t *d = gs("portal-user", "web-1", NULL);
	assert_int_equal(apply(p, d, "0b7e3d2c-5a4f-4e8b-9c1d-2e3f4a5b6c7d", &res, &err), 0);
	assert_true(jbool(res, "created"));
	json_decref(res);
	assert_int_equal(store_delete_server(p, "portal-user", "web-1", &res, &err), 0);
	json_decref(res);
	assert_int_equal(sqlp(p, NULL, "SELECT * FROM zlh.servers", 0, NULL), 0);
	assert_int_equal(sqlp(p, NULL, "SELECT * FROM zlh.server_status", 0, NULL), 0);
	assert_int_equal(sqlp(p, NULL, "SELECT * FROM zlh.events", 0, NULL), 0);

	static const char *const denied[] = {
	    "UPDATE zlh.servers SET generation = generation + 1",
	    "DELETE FROM zlh.servers",
	    "INSERT INTO zlh.servers (kind, owner, name, spec, spec_hash)"
	    " VALUES ('GameServer', 'x', 'y', '{}', '')",
	    "UPDATE zlh.server_status SET phase = 'Ready'",
	    "INSERT INTO zlh.events (type, reason) VALUES ('Normal', 'x')",
	    "DELETE FROM zlh.events",
	    "SELECT * FROM zlh.operations",
	    "SELECT * FROM zlh.allocations",
	    "SELECT * FROM zlh.requests",
	    "UPDATE zlh.quotas SET max_servers = 1000",
	    "INSERT INTO zlh.kinds (kind, api_version, plural, schema) VALUES ('A','b','c','{}')",
	    "SELECT zlh.schema_apply('{}', '{}', 'x')",
	    "SELECT zlh.invalid('a', 'b')",
	};
	for (size_t i = 0; i < ELEMENTSOF(denied); i++) {
		int r = sqlp(p, NULL, denied[i], 0, NULL);
		if (r != -EPERM)
			fail_msg("%s: %d, wanted -EPERM", denied[i], r);
	}
	PQfinish(p);

	/* The catalog agrees, for every table and function in zlh (including
	 * those of later migrations). */
	PGconn *c = conn_new(g_conninfo);
	const char *vals[] = {role};
	assert_int_equal(
	    sql_int(c,
	            "SELECT count(*) FROM pg_proc f JOIN pg_namespace n ON n.oid = f.pronamespace"
	            " WHERE n.nspname = 'zlh' AND has_function_privilege($1, f.oid, 'EXECUTE')"
	            " AND f.proname NOT IN ('apply_server', 'delete_server')",
	            vals[0], NULL),
	    0);
	assert_int_equal(
	    sql_int(c,
	            "SELECT count(*) FROM pg_class t JOIN pg_namespace n ON n.oid = t.relnamespace"
	            " WHERE n.nspname = 'zlh' AND t.relkind IN ('r', 'p', 'v', 'm', 'S')"
	            " AND (has_table_privilege($1, t.oid, 'INSERT, UPDATE, DELETE, TRUNCATE,"
	            " REFERENCES, TRIGGER') OR (has_table_privilege($1, t.oid, 'SELECT')"
	            " AND t.relname NOT IN ('servers', 'server_status', 'events')))",
	            vals[0], NULL),
	    0);
	PQfinish(c);
	snprintf(sql, sizeof sql, "DROP ROLE %s", role);
	assert_int_equal(tu_sql(g_conninfo, sql), 0);
}

/* --- list / get / events -------------------------------------------------------------------------- */

static void list_get__get_o_json_shape(void **state)
{
	(void)state;
	PGconn *c = conn_new(g_conninfo);
	json_t *res = NULL;
	StoreError err = {0};
	_cleanup_json_ json_t *d =
	    jq("{'apiVersion':'zlh.dev/v1','kind':'GameServer','metadata':{'name':'shape-1',"
	       "'owner':'shape','labels':{'tier':'modded'},'annotations':{'note':'x'}},"
	       "'spec':{'variant':'fabric','version':'1.20.1'}}");
	assert_int_equal(apply(c, d, NULL, &res, &err), 0);
	_cleanup_free_ char *uid = strdup(json_string_value(json_object_get(res, "uid")));
	json_decref(res);
	assert_int_equal(sqlp(c, NULL,
	                      "UPDATE zlh.server_status SET vmid = 5100, node = 'pve2',"
	                      " ip = '10.60.0.50', hostname = 'mc-fabric-5100', phase = 'Ready',"
	                      " observed_generation = 1, conditions = '[{\"type\":\"Ready\","
	                      "\"status\":\"True\"}]' WHERE uid = $1::uuid",
	                      1, (const char *[]){uid}),
	                 0);

	_cleanup_json_ json_t *all = NULL;
	assert_int_equal(store_list_servers(c, NULL, &all), 0);
	assert_true(json_is_array(all));
	json_t *mine = NULL;
	size_t i;
	json_t *o;
	const char *prev_owner = "";
	json_array_foreach(all, i, o)
	{
		static const char *const top[] = {"kind", "metadata", "spec", "status", NULL};
		static const char *const meta[] = {"name",       "owner",  "uid",
		                                   "generation", "labels", NULL};
		static const char *const st[] = {
		    "phase", "observedGeneration", "vmid",       "node",
		    "ip",    "hostname",           "conditions", NULL};
		assert_keys(o, top);
		assert_keys(json_object_get(o, "metadata"), meta);
		assert_keys(json_object_get(o, "status"), st);
		const char *owner =
		    json_string_value(json_object_get(json_object_get(o, "metadata"), "owner"));
		assert_true(strcmp(prev_owner, owner) <= 0);
		prev_owner = owner;
		if (strcmp(
		        json_string_value(json_object_get(json_object_get(o, "metadata"), "uid")),
		        uid) == 0)
			mine = o;
	}
	assert_non_null(mine);
	_cleanup_json_ json_t *want =
	    jq("{'kind':'GameServer','metadata':{'name':'shape-1','owner':'shape','uid':'UID',"
	       "'generation':1,'labels':{'tier':'modded'}},'spec':{'game':'minecraft',"
	       "'variant':'fabric','version':'1.20.1','hostname':null,'resources':{'cores':2,"
	       "'memoryMiB':4096,'diskGiB':16},'power':'running','restartAt':null,'publish':true,"
	       "'backups':{'every':'6h','keep':7,'beforeDelete':true},'restore':null,"
	       "'deletionPolicy':'Delete'},'status':{'phase':'Ready','observedGeneration':1,"
	       "'vmid':5100,'node':'pve2','ip':'10.60.0.50','hostname':'mc-fabric-5100',"
	       "'conditions':[{'type':'Ready','status':'True'}]}}");
	json_object_set_new(json_object_get(want, "metadata"), "uid", json_string(uid));
	if (!json_equal(want, mine)) {
		_cleanup_free_ char *s = json_dumps(mine, JSON_COMPACT);
		fail_msg("got %s", s);
	}

	/* Kind filters: kind, plural, short name, any case. */
	static const char *const gsnames[] = {"GameServer", "gameservers", "gs", "GS"};
	for (size_t k = 0; k < ELEMENTSOF(gsnames); k++) {
		_cleanup_json_ json_t *l = NULL;
		assert_int_equal(store_list_servers(c, gsnames[k], &l), 0);
		assert_true(json_array_size(l) >= 1);
		json_array_foreach(l, i, o) assert_string_equal(
		    json_string_value(json_object_get(o, "kind")), "GameServer");
	}
	_cleanup_json_ json_t *none = NULL;
	assert_int_equal(store_list_servers(c, "nosuchkind", &none), 0);
	assert_int_equal(json_array_size(none), 0);

	/* get: the same object plus annotations, times, lastError. */
	_cleanup_json_ json_t *one = NULL;
	assert_int_equal(store_get_server(c, NULL, "shape-1", &one, &err), 0);
	json_t *m = json_object_get(one, "metadata");
	assert_string_equal(
	    json_string_value(json_object_get(json_object_get(m, "annotations"), "note")), "x");
	assert_true(json_is_null(json_object_get(m, "deletionRequestedAt")));
	assert_true(str_endswith(json_string_value(json_object_get(m, "createdAt")), "Z"));
	assert_true(json_is_null(json_object_get(json_object_get(one, "status"), "lastError")));
	assert_true(json_equal(json_object_get(one, "spec"), json_object_get(mine, "spec")));
	json_t *gone = NULL;
	assert_int_equal(store_get_server(c, "shape", "nope", &gone, &err), -ENOENT);
	assert_null(gone);

	/* Ambiguous without an owner. */
	_cleanup_json_ json_t *twin = gs("shape-other", "shape-1", NULL);
	assert_int_equal(apply(c, twin, NULL, &res, &err), 0);
	json_decref(res);
	assert_int_equal(store_get_server(c, NULL, "shape-1", &gone, &err), -ENOTUNIQ);
	assert_int_equal(store_get_server(c, "shape-other", "shape-1", &gone, &err), 0);
	json_decref(gone);
	PQfinish(c);
}

static void events__after_id_and_latest(void **state)
{
	(void)state;
	PGconn *c = conn_new(g_conninfo);
	StoreError err = {0};
	const char *uid = "11111111-2222-4333-8444-555555555555";
	for (int i = 0; i < 5; i++) {
		char reason[16];
		snprintf(reason, sizeof reason, "R%d", i);
		assert_int_equal(
		    sqlp(c, NULL,
		         "INSERT INTO zlh.events (uid, kind, name, owner, type, reason,"
		         " message) VALUES ($1::uuid, 'GameServer', 'ev', 'evo',"
		         " 'Normal', $2, 'hello')",
		         2, (const char *[]){uid, reason}),
		    0);
	}
	_cleanup_json_ json_t *all = NULL;
	assert_int_equal(store_list_events(c, uid, 0, 0, &all, &err), 0);
	assert_int_equal(json_array_size(all), 5);
	json_t *e0 = json_array_get(all, 0);
	static const char *const keys[] = {"id",    "uid",     "kind",   "name",
	                                   "owner", "type",    "reason", "message",
	                                   "count", "firstAt", "lastAt", NULL};
	assert_keys(e0, keys);
	assert_string_equal(json_string_value(json_object_get(e0, "reason")), "R0");
	int64_t id0 = jint(e0, "id");

	_cleanup_json_ json_t *after = NULL;
	assert_int_equal(store_list_events(c, uid, id0, 2, &after, &err), 0);
	assert_int_equal(json_array_size(after), 2);
	assert_string_equal(json_string_value(json_object_get(json_array_get(after, 0), "reason")),
	                    "R1");

	_cleanup_json_ json_t *latest = NULL;
	assert_int_equal(store_list_events(c, uid, -1, 2, &latest, &err), 0);
	assert_int_equal(json_array_size(latest), 2);
	assert_string_equal(json_string_value(json_object_get(json_array_get(latest, 0), "reason")),
	                    "R3");
	assert_string_equal(json_string_value(json_object_get(json_array_get(latest, 1), "reason")),
	                    "R4");

	_cleanup_json_ json_t *other = NULL;
	assert_int_equal(
	    store_list_events(c, "99999999-2222-4333-8444-555555555555", 0, 10, &other, &err), 0);
	assert_int_equal(json_array_size(other), 0);
	json_t *bad = NULL;
	assert_int_equal(store_list_events(c, "nope", 0, 10, &bad, &err), -EINVAL);
	PQfinish(c);
}

/* --- main ------------------------------------------------------------------------------------------ */

static int load_kinds(void)
{
	_cleanup_free_ char *dir = NULL;
	if (crd_dir_find(NULL, &dir) < 0)
		return -ENOENT;
	_cleanup_spec_errors_ SpecErrors errs = SPEC_ERRORS_INIT;
	_cleanup_crd_set_ CrdSet *set = NULL;
	int r = crd_set_load(dir, &set, &errs);
	if (r < 0) {
		spec_errors_print(&errs, stderr);
		return r;
	}
	g_kinds = crd_set_to_json(set);
	return g_kinds ? 0 : -ENOMEM;
}

static int group_setup(void **state)
{
	(void)state;
	g_migrations = tu_src("db/migrations");
	if (!g_migrations || load_kinds() < 0)
		return -1;
	if (tu_db_create(&g_db, &g_conninfo) < 0)
		return -1;
	StoreError err = {0};
	int r = migrate(g_conninfo, &err);
	if (r < 0) {
		fprintf(stderr, "migrate: %d %s\n", r, err.message);
		return -1;
	}
	return 0;
}

static int group_teardown(void **state)
{
	(void)state;
	tu_db_drop(g_db);
	free(g_db);
	free(g_conninfo);
	free(g_migrations);
	json_decref(g_kinds);
	return 0;
}

int main(void)
{
	if (!tu_pg_admin()) {
		printf("SKIP itest-db: ZLH_TEST_PG is not set (run through test/run-tests.sh)\n");
		return 0;
	}
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(migrate__twice_and_concurrently__applied_once),
	    cmocka_unit_test(migrate__failing_migration__rolled_back_then_retried),
	    cmocka_unit_test(migrate__dir_find__flag_env_source),
	    cmocka_unit_test(connect__nothing_listens__connection_error),
	    cmocka_unit_test(apply__same_spec_or_explicit_defaults__generation_unchanged),
	    cmocka_unit_test(apply__devserver_minimal__defaults_filled),
	    cmocka_unit_test(apply__spec_hash__equals_c_spec_hash),
	    cmocka_unit_test(apply__50_concurrent_identical__one_row_generation_1),
	    cmocka_unit_test(apply__20_concurrent_at_quota_edge__never_exceeded),
	    cmocka_unit_test(apply__concurrent_same_hostname_other_owners__one_wins),
	    cmocka_unit_test(apply__concurrent_same_request_id__one_answer),
	    cmocka_unit_test(apply__request_id_repeated__first_answer_or_zl003),
	    cmocka_unit_test(apply__invalid_docs__zl001_naming_the_field_nothing_written),
	    cmocka_unit_test(apply__hostname_taken__zl005),
	    cmocka_unit_test(delete__present_absent_ambiguous),
	    cmocka_unit_test(notify__apply_and_delete__uid_on_zlh_work),
	    cmocka_unit_test(apply__several_docs_in_one_transaction__all_or_nothing),
	    cmocka_unit_test(portal__calls_functions_reads_three_tables__nothing_else),
	    cmocka_unit_test(list_get__get_o_json_shape),
	    cmocka_unit_test(events__after_id_and_latest),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
