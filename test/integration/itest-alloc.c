/* Integration tests of db/alloc.c against the real PostgreSQL of
 * $ZLH_TEST_PG (test/run-tests.sh): allocation in one transaction with its
 * intent, lowest free vmid / address (network, gateway and broadcast
 * skipped), default hostnames and spec.hostname collisions, exhaustion,
 * quarantine, release and reuse, migrations followed, memory reserved per
 * node, the incarnation's compare-and-set, fencing and the server lock, and
 * 8 concurrent allocators over 200 servers. Each test gets its own freshly
 * migrated database (allocation is global state). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "db/alloc.h"
#include "db/journal.h"
#include "db/runtime.h"
#include "db/store.h"
#include "specs/crd.h"
#include "specs/spec.h"
#include "test/lib/testutil.h"
#include "util.h"

DEFINE_TRIVIAL_CLEANUP_FUNC(PGresult *, PQclear)
#define _cleanup_pgresult_ _cleanup_(PQclearp)

static char *g_migrations;
static json_t *g_kinds;

/* One test's database. */
typedef struct Fix {
	char *db, *conninfo;
	PGconn *c;
	int64_t epoch;
} Fix;

static const AllocPool POOL = {5000, 5009, "10.70.0.0/24", "10.70.0.1"};

/* --- helpers --------------------------------------------------------------- */

static PGconn *conn_new(const Fix *f)
{
	PGconn *c = NULL;
	StoreError err = {0};
	if (store_connect(f->conninfo, &c, &err) < 0)
		fail_msg("connect: %s", err.message);
	return c;
}

static int64_t sql_int(const Fix *f, const char *sql, const char *p1)
{
	const char *vals[] = {p1};
	_cleanup_pgresult_ PGresult *res =
	    PQexecParams(f->c, sql, p1 ? 1 : 0, NULL, vals, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_TUPLES_OK)
		fail_msg("%s: %s", sql, PQerrorMessage(f->c));
	if (PQgetisnull(res, 0, 0))
		return -1;
	int64_t v = 0;
	assert_int_equal(parse_int64(PQgetvalue(res, 0, 0), &v), 0);
	return v;
}

/* One text value (new; NULL for SQL NULL). */
static char *sql_text(const Fix *f, const char *sql, const char *p1)
{
	const char *vals[] = {p1};
	_cleanup_pgresult_ PGresult *res =
	    PQexecParams(f->c, sql, p1 ? 1 : 0, NULL, vals, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_TUPLES_OK)
		fail_msg("%s: %s", sql, PQerrorMessage(f->c));
	if (PQntuples(res) == 0 || PQgetisnull(res, 0, 0))
		return NULL;
	char *s = strdup(PQgetvalue(res, 0, 0));
	assert_non_null(s);
	return s;
}

static void sql_exec(const Fix *f, const char *sql, const char *p1)
{
	const char *vals[] = {p1};
	_cleanup_pgresult_ PGresult *res =
	    PQexecParams(f->c, sql, p1 ? 1 : 0, NULL, vals, NULL, NULL, 0);
	ExecStatusType st = PQresultStatus(res);
	if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK)
		fail_msg("%s: %s", sql, PQerrorMessage(f->c));
}

/* Applies a server; returns its uid (static buffer rotated per call site:
 * the caller copies). hostname may be NULL; kind "GameServer"/"DevServer". */
static void server_new(const Fix *f, const char *kind, const char *owner, const char *name,
                       const char *hostname, int64_t memory_mib, char uid[37])
{
	json_t *spec = strcmp(kind, "DevServer") == 0
	                   ? json_pack("{s:s,s:s}", "runtime", "node", "version", "22")
	                   : json_pack("{s:s,s:s}", "variant", "paper", "version", "1.21.4");
	assert_non_null(spec);
	json_object_set_new(spec, "resources",
	                    json_pack("{s:I}", "memoryMiB", (json_int_t)memory_mib));
	if (hostname)
		json_object_set_new(spec, "hostname", json_string(hostname));
	_cleanup_json_ json_t *doc =
	    json_pack("{s:s,s:s,s:{s:s,s:s},s:o}", "apiVersion", "zlh.dev/v1", "kind", kind,
	              "metadata", "name", name, "owner", owner, "spec", spec);
	assert_non_null(doc);
	_cleanup_json_ json_t *res = NULL;
	StoreError err = {0};
	int r = store_apply_server(f->c, doc, NULL, &res, &err);
	if (r < 0)
		fail_msg("apply %s/%s: %d %s", owner, name, r, err.message);
	snprintf(uid, 37, "%s", json_string_value(json_object_get(res, "uid")));
}

static int take(const Fix *f, const char *uid, const char *node, const AllocPool *pool,
                const char *hostname, Allocation *ret, StoreError *err)
{
	return alloc_take(f->c, f->epoch, uid, node, pool, hostname, "mc-paper-", 4096, NULL, ret,
	                  NULL, err);
}

/* take() that must succeed with a new allocation. */
static Allocation take_new(const Fix *f, const char *uid, const char *node, const AllocPool *pool)
{
	Allocation a;
	StoreError err = {0};
	int r = take(f, uid, node, pool, NULL, &a, &err);
	if (r != 1)
		fail_msg("take %s: %d %s", uid, r, err.message);
	return a;
}

static int64_t count_allocations(const Fix *f)
{
	return sql_int(f, "SELECT count(*) FROM zlh.allocations", NULL);
}

/* Takes the lease over as another holder: f->epoch becomes stale. Returns
 * the new epoch. */
static int64_t takeover(const Fix *f)
{
	StoreError err = {0};
	LeaseClaim lc = {0};
	assert_int_equal(
	    runtime_lease_release(f->c, RUNTIME_LEASE_DEFAULT, "itest-alloc", f->epoch, &err), 1);
	assert_int_equal(
	    runtime_lease_claim(f->c, RUNTIME_LEASE_DEFAULT, "itest-alloc-b", 0, 600000, &lc, &err),
	    0);
	assert_true(lc.acquired);
	assert_int_equal(lc.epoch, f->epoch + 1);
	return lc.epoch;
}

/* --- fixture ------------------------------------------------------------------ */

static int fix_setup(void **state)
{
	Fix *f = calloc(1, sizeof *f);
	if (!f || tu_db_create(&f->db, &f->conninfo) < 0)
		return -1;
	StoreError err = {0};
	if (store_connect(f->conninfo, &f->c, &err) < 0 ||
	    store_migrate(f->c, g_migrations, g_kinds, &err) < 0) {
		fprintf(stderr, "setup: %s\n", err.message);
		return -1;
	}
	LeaseClaim lc = {0};
	if (runtime_lease_claim(f->c, RUNTIME_LEASE_DEFAULT, "itest-alloc", 0, 600000, &lc, &err) <
	        0 ||
	    !lc.acquired)
		return -1;
	f->epoch = lc.epoch;
	*state = f;
	return 0;
}

static int fix_teardown(void **state)
{
	Fix *f = *state;
	if (!f)
		return 0;
	PQfinish(f->c);
	tu_db_drop(f->db);
	free(f->db);
	free(f->conninfo);
	free(f);
	return 0;
}

/* --- take ------------------------------------------------------------------------- */

static void take__first__lowest_vmid_first_host_with_intent(void **state)
{
	Fix *f = *state;
	char uid[37];
	server_new(f, "GameServer", "o1", "alpha", NULL, 2048, uid);
	char key[JOURNAL_KEY_MAX];
	assert_true(journal_key_gen(uid, "create", 1, 1, key, sizeof key) > 0);
	_cleanup_json_ json_t *payload = json_pack("{s:s}", "mode", "create");
	AllocIntent in = {"create", key, payload, 1};
	Allocation a;
	JournalOp op = {0};
	StoreError err = {0};

	assert_int_equal(alloc_take(f->c, f->epoch, uid, "pve1", &POOL, NULL, "mc-paper-", 2048,
	                            &in, &a, &op, &err),
	                 1);
	assert_string_equal(a.uid, uid);
	assert_int_equal(a.vmid, 5000);
	assert_string_equal(a.ip, "10.70.0.2"); /* .0 network, .1 gateway */
	assert_string_equal(a.hostname, "mc-paper-5000");
	assert_string_equal(a.node, "pve1");
	assert_int_equal(a.memory_mib, 2048);
	assert_true(op.id > 0);
	assert_false(op.existed);
	assert_int_equal(op.step, JOURNAL_STEP_INTENT);
	assert_string_equal(op.idem_key, key);
	assert_string_equal(op.action, "create");
	assert_int_equal(op.incarnation, 1);
	assert_true(json_equal(op.payload, payload));

	/* The status shows it (same transaction). */
	_cleanup_runtime_server_ RuntimeServer *s = NULL;
	assert_int_equal(runtime_server_load(f->c, uid, &s, &err), 0);
	assert_int_equal(s->vmid, 5000);
	assert_string_equal(s->node, "pve1");
	assert_string_equal(s->ip, "10.70.0.2");
	assert_string_equal(s->hostname, "mc-paper-5000");

	/* Again (a retry after a crash): the same allocation and intent. */
	Allocation b;
	JournalOp op2 = {0};
	assert_int_equal(alloc_take(f->c, f->epoch, uid, "pve2", &POOL, NULL, "mc-paper-", 9999,
	                            &in, &b, &op2, &err),
	                 0);
	assert_memory_equal(&a, &b, sizeof a);
	assert_int_equal(op2.id, op.id);
	assert_true(op2.existed);
	assert_int_equal(sql_int(f, "SELECT count(*) FROM zlh.operations", NULL), 1);

	Allocation g;
	assert_int_equal(alloc_get(f->c, uid, &g, &err), 0);
	assert_memory_equal(&a, &g, sizeof a);
	int64_t inc = 0;
	assert_int_equal(alloc_incarnation(f->c, uid, &inc, &err), 0);
	assert_int_equal(inc, 1);

	/* A second server gets the next of each. */
	char uid2[37];
	server_new(f, "DevServer", "o1", "beta", NULL, 1024, uid2);
	Allocation c2;
	assert_int_equal(alloc_take(f->c, f->epoch, uid2, "pve1", &POOL, NULL, "dev-", 1024, NULL,
	                            &c2, NULL, &err),
	                 1);
	assert_int_equal(c2.vmid, 5001);
	assert_string_equal(c2.ip, "10.70.0.3");
	assert_string_equal(c2.hostname, "dev-5001");

	journal_op_clear(&op);
	journal_op_clear(&op2);
}

static void take__stale_incarnation_or_no_server__refused(void **state)
{
	Fix *f = *state;
	char uid[37];
	server_new(f, "GameServer", "o1", "alpha", NULL, 2048, uid);
	StoreError err = {0};
	Allocation a;
	JournalOp op = {0};
	AllocIntent in = {"create", "k-inc-2", NULL, 2}; /* the server is at 1 */
	assert_int_equal(alloc_take(f->c, f->epoch, uid, "pve1", &POOL, NULL, "mc-paper-", 1, &in,
	                            &a, &op, &err),
	                 -EALREADY);
	assert_int_equal(count_allocations(f), 0);
	assert_int_equal(sql_int(f, "SELECT count(*) FROM zlh.operations", NULL), 0);

	assert_int_equal(
	    take(f, "99999999-9999-4999-8999-999999999999", "pve1", &POOL, NULL, &a, &err),
	    -ENOENT);
	assert_int_equal(alloc_get(f->c, uid, &a, &err), -ENOENT);
	int64_t inc;
	assert_int_equal(
	    alloc_incarnation(f->c, "99999999-9999-4999-8999-999999999999", &inc, &err), -ENOENT);

	/* Bad arguments, in C or in SQL: nothing written. */
	AllocPool v6 = {5000, 5009, "fd00::/64", "fd00::1"};
	AllocPool backwards = {5009, 5000, "10.70.0.0/24", "10.70.0.1"};
	AllocPool garbage = {5000, 5009, "not-a-network", "10.70.0.1"};
	AllocPool low = {1, 50, "10.70.0.0/24", "10.70.0.1"};
	assert_int_equal(take(f, uid, "pve1", &v6, NULL, &a, &err), -EINVAL);
	assert_int_equal(take(f, uid, "pve1", &backwards, NULL, &a, &err), -EINVAL);
	assert_int_equal(take(f, uid, "pve1", &garbage, NULL, &a, &err), -EINVAL);
	assert_int_equal(take(f, uid, "pve1", &low, NULL, &a, &err), -EINVAL);
	assert_int_equal(take(f, uid, "", &POOL, NULL, &a, &err), -EINVAL);
	assert_int_equal(take(f, "nope", "pve1", &POOL, NULL, &a, &err), -EINVAL);
	assert_int_equal(alloc_take(f->c, f->epoch, uid, "pve1", &POOL, NULL, "Bad Prefix", 1, NULL,
	                            &a, NULL, &err),
	                 -EINVAL);
	assert_int_equal(count_allocations(f), 0);
}

static void take__small_network__skips_network_gateway_broadcast_then_enospc(void **state)
{
	Fix *f = *state;
	/* 10.80.0.0/29: .0 network, .7 broadcast, gateway .3 in the middle. */
	AllocPool pool = {5000, 5099, "10.80.0.0/29", "10.80.0.3"};
	const char *want[] = {"10.80.0.1", "10.80.0.2", "10.80.0.4", "10.80.0.5", "10.80.0.6"};
	char uid[6][37];
	for (int i = 0; i < 6; i++) {
		char name[16];
		snprintf(name, sizeof name, "s%d", i);
		server_new(f, "GameServer", "o1", name, NULL, 512, uid[i]);
	}
	for (int i = 0; i < 5; i++) {
		Allocation a = take_new(f, uid[i], "pve1", &pool);
		assert_string_equal(a.ip, want[i]);
		assert_int_equal(a.vmid, 5000 + i);
	}
	StoreError err = {0};
	Allocation a;
	AllocIntent in = {"create", "k-full", NULL, 1};
	JournalOp op = {0};
	assert_int_equal(alloc_take(f->c, f->epoch, uid[5], "pve1", &pool, NULL, "mc-paper-", 512,
	                            &in, &a, &op, &err),
	                 -ENOSPC);
	assert_non_null(strstr(err.message, "no free address"));
	/* Nothing half-written: no allocation, no intent, no status. */
	assert_int_equal(count_allocations(f), 5);
	assert_int_equal(sql_int(f, "SELECT count(*) FROM zlh.operations", NULL), 0);
	assert_int_equal(sql_int(f, "SELECT vmid FROM zlh.server_status WHERE uid = $1", uid[5]),
	                 -1);

	/* Allocated addresses are stored as hosts (/32) and never the gateway. */
	assert_int_equal(sql_int(f,
	                         "SELECT count(*) FROM zlh.allocations WHERE masklen(ip) <> 32 "
	                         "OR host(ip) IN ('10.80.0.0', '10.80.0.3', '10.80.0.7')",
	                         NULL),
	                 0);

	/* A freed address is the next one handed out. */
	assert_int_equal(alloc_release(f->c, f->epoch, uid[2], 0, &err), 1);
	Allocation b = take_new(f, uid[5], "pve1", &pool);
	assert_string_equal(b.ip, "10.80.0.4");
	assert_int_equal(b.vmid, 5002);
}

static void take__gateway_first_host_and_slash_31__edges(void **state)
{
	Fix *f = *state;
	char u1[37], u2[37];
	server_new(f, "GameServer", "o1", "a", NULL, 512, u1);
	server_new(f, "GameServer", "o1", "b", NULL, 512, u2);
	StoreError err = {0};
	Allocation a;
	/* A gateway outside the network excludes nothing inside it. */
	AllocPool outside = {5000, 5099, "10.81.0.0/30", "10.99.0.1"};
	a = take_new(f, u1, "pve1", &outside);
	assert_string_equal(a.ip, "10.81.0.1");
	a = take_new(f, u2, "pve1", &outside);
	assert_string_equal(a.ip, "10.81.0.2");
	/* A /31 and a /32 have no host address besides network/broadcast. */
	char u3[37];
	server_new(f, "GameServer", "o1", "c", NULL, 512, u3);
	AllocPool p31 = {5000, 5099, "10.82.0.0/31", "10.82.0.0"};
	AllocPool p32 = {5000, 5099, "10.83.0.9/32", "10.83.0.9"};
	assert_int_equal(take(f, u3, "pve1", &p31, NULL, &a, &err), -ENOSPC);
	assert_int_equal(take(f, u3, "pve1", &p32, NULL, &a, &err), -ENOSPC);
	/* A host address with its prefix names its network. */
	AllocPool hostform = {5000, 5099, "10.84.0.77/24", "10.84.0.1"};
	a = take_new(f, u3, "pve1", &hostform);
	assert_string_equal(a.ip, "10.84.0.2");
}

static void take__vmid_range_exhausted__enospc_nothing_written(void **state)
{
	Fix *f = *state;
	AllocPool pool = {5000, 5002, "10.70.0.0/24", "10.70.0.1"};
	char uid[4][37];
	for (int i = 0; i < 4; i++) {
		char name[16];
		snprintf(name, sizeof name, "s%d", i);
		server_new(f, "GameServer", "o1", name, NULL, 512, uid[i]);
	}
	for (int i = 0; i < 3; i++)
		assert_int_equal(take_new(f, uid[i], "pve1", &pool).vmid, 5000 + i);
	StoreError err = {0};
	Allocation a;
	assert_int_equal(take(f, uid[3], "pve1", &pool, NULL, &a, &err), -ENOSPC);
	assert_non_null(strstr(err.message, "no free vmid in 5000..5002"));
	assert_int_equal(count_allocations(f), 3);
	/* The servers that have one still get it back. */
	assert_int_equal(take(f, uid[1], "pve1", &pool, NULL, &a, &err), 0);
	assert_int_equal(a.vmid, 5001);
}

/* --- hostnames ----------------------------------------------------------------------- */

static void hostname__spec_hostname_equals_a_default__next_vmid(void **state)
{
	Fix *f = *state;
	char x[37], y[37], z[37], w[37];
	/* x claims "mc-paper-5000" as its spec.hostname but is not allocated. */
	server_new(f, "GameServer", "o1", "x", "mc-paper-5000", 512, x);
	server_new(f, "GameServer", "o1", "y", NULL, 512, y);
	server_new(f, "DevServer", "o1", "z", NULL, 512, z);
	server_new(f, "GameServer", "o2", "w", "survival", 512, w);
	StoreError err = {0};

	Allocation ay = take_new(f, y, "pve1", &POOL);
	assert_int_equal(ay.vmid, 5001); /* 5000's default name is x's */
	assert_string_equal(ay.hostname, "mc-paper-5001");
	/* x gets the lowest free vmid with its own name. */
	Allocation ax;
	assert_int_equal(take(f, x, "pve1", &POOL, "mc-paper-5000", &ax, &err), 1);
	assert_int_equal(ax.vmid, 5000);
	assert_string_equal(ax.hostname, "mc-paper-5000");
	Allocation az;
	assert_int_equal(
	    alloc_take(f->c, f->epoch, z, "pve1", &POOL, NULL, "dev-", 512, NULL, &az, NULL, &err),
	    1);
	assert_int_equal(az.vmid, 5002);
	assert_string_equal(az.hostname, "dev-5002");
	Allocation aw;
	assert_int_equal(take(f, w, "pve1", &POOL, "survival", &aw, &err), 1);
	assert_int_equal(aw.vmid, 5003);
	assert_string_equal(aw.hostname, "survival");

	/* w's spec.hostname changes to "mc-paper-5005": its allocation follows
	 * (alloc_set_hostname) and holds that name, so a later default
	 * allocation at 5005 collides on the unique constraint and moves on. */
	assert_int_equal(alloc_set_hostname(f->c, f->epoch, w, "mc-paper-5005", NULL, &aw, &err),
	                 1);
	assert_string_equal(aw.hostname, "mc-paper-5005");
	assert_int_equal(alloc_set_hostname(f->c, f->epoch, w, "mc-paper-5005", NULL, NULL, &err),
	                 0);
	_cleanup_free_ char *st =
	    sql_text(f, "SELECT hostname FROM zlh.server_status WHERE uid = $1", w);
	assert_string_equal(st, "mc-paper-5005");
	char v1[37], v2[37];
	server_new(f, "GameServer", "o3", "v1", NULL, 512, v1);
	server_new(f, "GameServer", "o3", "v2", NULL, 512, v2);
	assert_int_equal(take_new(f, v1, "pve1", &POOL).vmid, 5004);
	/* 5005's default name is held by w's allocation (unique constraint). */
	Allocation av2 = take_new(f, v2, "pve1", &POOL);
	assert_int_equal(av2.vmid, 5006);
	assert_string_equal(av2.hostname, "mc-paper-5006");

	/* Back to the default name; a name claimed elsewhere is refused. */
	assert_int_equal(alloc_set_hostname(f->c, f->epoch, w, NULL, "mc-paper-", &aw, &err), 1);
	assert_string_equal(aw.hostname, "mc-paper-5003");
	assert_int_equal(alloc_set_hostname(f->c, f->epoch, w, "mc-paper-5000", NULL, &aw, &err),
	                 -EADDRINUSE);
	assert_int_equal(alloc_set_hostname(f->c, f->epoch, w, "mc-paper-5006", NULL, &aw, &err),
	                 -EADDRINUSE);
	assert_int_equal(alloc_get(f->c, w, &aw, &err), 0);
	assert_string_equal(aw.hostname, "mc-paper-5003");
	char none[37];
	server_new(f, "GameServer", "o3", "none", NULL, 512, none);
	assert_int_equal(alloc_set_hostname(f->c, f->epoch, none, "free-name", NULL, NULL, &err),
	                 -ENOENT);

	/* A spec.hostname held by another allocation (only reachable by
	 * writing the spec behind apply_server's back): -EADDRINUSE, no retry. */
	char h[37];
	server_new(f, "GameServer", "o4", "h", NULL, 512, h);
	sql_exec(f,
	         "UPDATE zlh.servers SET spec = jsonb_set(spec, '{hostname}', '\"mc-paper-5004\"') "
	         "WHERE uid = $1",
	         h);
	Allocation ah;
	assert_int_equal(take(f, h, "pve1", &POOL, "mc-paper-5004", &ah, &err), -EADDRINUSE);
	assert_int_equal(alloc_get(f->c, h, &ah, &err), -ENOENT);
}

/* --- quarantine, release, follow ------------------------------------------------------- */

static void quarantine__vmid_never_handed_out_again(void **state)
{
	Fix *f = *state;
	char a[37], b[37], c[37];
	server_new(f, "GameServer", "o1", "a", NULL, 512, a);
	server_new(f, "GameServer", "o1", "b", NULL, 512, b);
	server_new(f, "GameServer", "o1", "c", NULL, 512, c);
	StoreError err = {0};
	Allocation x = take_new(f, a, "pve1", &POOL);
	assert_int_equal(x.vmid, 5000);

	/* A stale plan (wrong incarnation) writes nothing. */
	int64_t inc = -1;
	assert_int_equal(
	    alloc_quarantine(f->c, f->epoch, a, 5000, "pve1", "foreign", 7, &inc, &err), -EALREADY);
	assert_int_equal(inc, -1);
	assert_int_equal(sql_int(f, "SELECT count(*) FROM zlh.quarantined_vmids", NULL), 0);
	assert_int_equal(count_allocations(f), 1);

	assert_int_equal(alloc_quarantine(f->c, f->epoch, a, 5000, "pve1", "a VM of someone else",
	                                  1, &inc, &err),
	                 1);
	assert_int_equal(inc, 2);
	assert_int_equal(alloc_get(f->c, a, &x, &err), -ENOENT);
	assert_int_equal(sql_int(f, "SELECT vmid FROM zlh.server_status WHERE uid = $1", a), -1);
	assert_int_equal(sql_int(f, "SELECT incarnation FROM zlh.server_status WHERE uid = $1", a),
	                 2);
	/* Repeated (a retry after a crash): recorded once, nothing else. */
	assert_int_equal(alloc_quarantine(f->c, f->epoch, a, 5000, "pve1", NULL, 1, &inc, &err), 0);
	assert_int_equal(inc, 2);

	/* The next allocation, under the new incarnation, is another vmid. */
	AllocIntent in = {"create", "k-a-create-1-2", NULL, 2};
	JournalOp op = {0};
	assert_int_equal(alloc_take(f->c, f->epoch, a, "pve1", &POOL, NULL, "mc-paper-", 512, &in,
	                            &x, &op, &err),
	                 1);
	assert_int_equal(x.vmid, 5001);
	assert_int_equal(op.incarnation, 2);
	journal_op_clear(&op);
	assert_int_equal(take_new(f, b, "pve1", &POOL).vmid, 5002);
	/* Released vmids are reused; the quarantined one never is. */
	assert_int_equal(alloc_release(f->c, f->epoch, b, 5002, &err), 1);
	assert_int_equal(take_new(f, c, "pve1", &POOL).vmid, 5002);
	assert_int_equal(take_new(f, b, "pve1", &POOL).vmid, 5003);

	/* A vmid seen foreign outside any server: recorded only. */
	assert_int_equal(
	    alloc_quarantine(f->c, f->epoch, NULL, 5004, "pve2", "untagged", 0, &inc, &err), 0);
	assert_int_equal(inc, 0);
	AllocQuarantined *ql = NULL;
	size_t qn = 0;
	assert_int_equal(alloc_quarantined_list(f->c, &ql, &qn, &err), 2);
	assert_int_equal(ql[0].vmid, 5000);
	assert_string_equal(ql[0].node, "pve1");
	assert_string_equal(ql[0].reason, "a VM of someone else");
	assert_true(ql[0].seen_ms >= ql[0].created_ms);
	assert_int_equal(ql[1].vmid, 5004);
	free(ql);
	char d[37];
	server_new(f, "GameServer", "o1", "d", NULL, 512, d);
	assert_int_equal(take_new(f, d, "pve1", &POOL).vmid, 5005);

	/* Quarantining a vmid that is not the server's allocation keeps it. */
	assert_int_equal(alloc_quarantine(f->c, f->epoch, d, 5009, NULL, NULL, 0, &inc, &err), 0);
	assert_int_equal(alloc_get(f->c, d, &x, &err), 0);
	assert_int_equal(x.vmid, 5005);
	assert_int_equal(alloc_quarantine(f->c, f->epoch, "99999999-9999-4999-8999-999999999999",
	                                  5008, NULL, NULL, 0, &inc, &err),
	                 -ENOENT);
}

static void release__frees_vmid_ip_hostname_for_reuse(void **state)
{
	Fix *f = *state;
	char a[37], b[37], c[37];
	server_new(f, "GameServer", "o1", "a", NULL, 512, a);
	server_new(f, "GameServer", "o1", "b", NULL, 512, b);
	server_new(f, "GameServer", "o1", "c", NULL, 512, c);
	StoreError err = {0};
	Allocation xa = take_new(f, a, "pve1", &POOL);
	take_new(f, b, "pve1", &POOL);

	/* A stale plan naming another vmid frees nothing. */
	assert_int_equal(alloc_release(f->c, f->epoch, a, 5007, &err), 0);
	assert_int_equal(count_allocations(f), 2);

	assert_int_equal(alloc_release(f->c, f->epoch, a, 0, &err), 1);
	assert_int_equal(alloc_release(f->c, f->epoch, a, 0, &err), 0); /* idempotent */
	assert_int_equal(alloc_get(f->c, a, &xa, &err), -ENOENT);
	assert_int_equal(
	    sql_int(f,
	            "SELECT count(*) FROM zlh.server_status WHERE uid = $1 AND vmid IS "
	            "NULL AND node IS NULL AND ip IS NULL AND hostname IS NULL",
	            a),
	    1);
	Allocation xc = take_new(f, c, "pve2", &POOL);
	assert_int_equal(xc.vmid, 5000);
	assert_string_equal(xc.ip, "10.70.0.2");
	assert_string_equal(xc.hostname, "mc-paper-5000");
	/* Releasing a server that does not exist is nothing to do. */
	assert_int_equal(
	    alloc_release(f->c, f->epoch, "99999999-9999-4999-8999-999999999999", 0, &err), 0);
}

static void follow__node_changes_allocation_and_status(void **state)
{
	Fix *f = *state;
	char a[37], b[37];
	server_new(f, "GameServer", "o1", "a", NULL, 512, a);
	server_new(f, "GameServer", "o1", "b", NULL, 512, b);
	StoreError err = {0};
	take_new(f, a, "pve1", &POOL);
	assert_int_equal(alloc_follow_node(f->c, f->epoch, a, "pve3", &err), 0);
	Allocation x;
	assert_int_equal(alloc_get(f->c, a, &x, &err), 0);
	assert_string_equal(x.node, "pve3");
	assert_int_equal(x.vmid, 5000);
	_cleanup_free_ char *node =
	    sql_text(f, "SELECT node FROM zlh.server_status WHERE uid = $1", a);
	assert_string_equal(node, "pve3");
	assert_int_equal(alloc_follow_node(f->c, f->epoch, b, "pve3", &err), -ENOENT);
	assert_int_equal(alloc_follow_node(f->c, f->epoch, a, "", &err), -EINVAL);
}

/* --- reserved memory, lists ------------------------------------------------------------------ */

static const AllocReserved *find_node(const AllocReserved *r, size_t n, const char *node)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(r[i].node, node) == 0)
			return &r[i];
	return NULL;
}

static void reserved__sums_spec_memory_per_node(void **state)
{
	Fix *f = *state;
	char m1[37], m2[37], m3[37], m4[37];
	server_new(f, "GameServer", "o1", "m1", NULL, 1024, m1);
	server_new(f, "GameServer", "o1", "m2", NULL, 2048, m2);
	server_new(f, "DevServer", "o1", "m3", NULL, 4096, m3);
	server_new(f, "GameServer", "o1", "m4", NULL, 512, m4); /* never allocated */
	StoreError err = {0};
	AllocReserved *r = NULL;
	size_t n = 99;
	assert_int_equal(alloc_reserved_by_node(f->c, &r, &n, &err), 0);
	assert_null(r);
	assert_int_equal(n, 0);

	take_new(f, m1, "pve1", &POOL);
	take_new(f, m2, "pve1", &POOL);
	take_new(f, m3, "pve2", &POOL);
	assert_int_equal(alloc_reserved_by_node(f->c, &r, &n, &err), 2);
	assert_string_equal(r[0].node, "pve1"); /* ordered by node */
	assert_int_equal(r[0].reserved_mib, 3072);
	assert_int_equal(r[0].servers, 2);
	assert_int_equal(find_node(r, n, "pve2")->reserved_mib, 4096);
	free(r);

	/* Migration moves the reservation; the spec's memory is what counts. */
	assert_int_equal(alloc_follow_node(f->c, f->epoch, m2, "pve2", &err), 0);
	server_new(f, "GameServer", "o1", "m1", NULL, 8192, m1); /* resize via apply */
	assert_int_equal(alloc_reserved_by_node(f->c, &r, &n, &err), 2);
	assert_int_equal(find_node(r, n, "pve1")->reserved_mib, 8192);
	assert_int_equal(find_node(r, n, "pve2")->reserved_mib, 6144);
	assert_int_equal(find_node(r, n, "pve2")->servers, 2);
	free(r);

	assert_int_equal(alloc_release(f->c, f->epoch, m1, 0, &err), 1);
	assert_int_equal(alloc_reserved_by_node(f->c, &r, &n, &err), 1);
	assert_string_equal(r[0].node, "pve2");
	assert_int_equal(r[0].reserved_mib, 6144);
	free(r);

	/* Every allocation, by vmid (orphan detection). */
	Allocation *all = NULL;
	assert_int_equal(alloc_list_all(f->c, &all, &n, &err), 2);
	assert_int_equal(all[0].vmid, 5001);
	assert_string_equal(all[0].uid, m2);
	assert_int_equal(all[1].vmid, 5002);
	assert_string_equal(all[1].uid, m3);
	assert_string_equal(all[1].hostname, "mc-paper-5002");
	free(all);
	(void)m4;
}

/* --- incarnation -------------------------------------------------------------------------------- */

typedef struct BumpArg {
	const Fix *f;
	const char *uid;
	pthread_barrier_t *barrier;
	int r;
	int64_t got;
	int busy;
} BumpArg;

static void *bump_thread(void *p)
{
	BumpArg *a = p;
	PGconn *c = conn_new(a->f);
	pthread_barrier_wait(a->barrier);
	/* -EBUSY: another transaction holds the server right now; retry. */
	for (int i = 0; i < 100000; i++) {
		a->r = alloc_bump_incarnation(c, a->f->epoch, a->uid, 2, &a->got, NULL);
		if (a->r != -EBUSY)
			break;
		a->busy++;
		sched_yield();
	}
	PQfinish(c);
	return NULL;
}

static void incarnation__compare_and_set__one_winner(void **state)
{
	Fix *f = *state;
	char uid[37];
	server_new(f, "GameServer", "o1", "a", NULL, 512, uid);
	StoreError err = {0};
	int64_t inc = 0, got = -1;
	assert_int_equal(alloc_incarnation(f->c, uid, &inc, &err), 0);
	assert_int_equal(inc, 1);
	assert_int_equal(alloc_bump_incarnation(f->c, f->epoch, uid, 1, &got, &err), 0);
	assert_int_equal(got, 2);
	got = -1;
	assert_int_equal(alloc_bump_incarnation(f->c, f->epoch, uid, 1, &got, &err), -EALREADY);
	assert_int_equal(got, -1);
	assert_string_equal(err.sqlstate, "ZL010");
	assert_int_equal(alloc_bump_incarnation(
	                     f->c, f->epoch, "99999999-9999-4999-8999-999999999999", 1, &got, &err),
	                 -ENOENT);

	/* 8 passes planned with incarnation 2 race: exactly one bumps it. */
	enum { N = 8 };
	pthread_barrier_t barrier;
	pthread_barrier_init(&barrier, NULL, N);
	BumpArg a[N];
	pthread_t t[N];
	for (int i = 0; i < N; i++) {
		a[i] = (BumpArg){.f = f, .uid = uid, .barrier = &barrier};
		assert_int_equal(pthread_create(&t[i], NULL, bump_thread, &a[i]), 0);
	}
	for (int i = 0; i < N; i++)
		pthread_join(t[i], NULL);
	pthread_barrier_destroy(&barrier);
	int won = 0;
	for (int i = 0; i < N; i++) {
		if (a[i].r == 0) {
			won++;
			assert_int_equal(a[i].got, 3);
		} else {
			assert_int_equal(a[i].r, -EALREADY);
		}
	}
	assert_int_equal(won, 1);
	assert_int_equal(alloc_incarnation(f->c, uid, &inc, &err), 0);
	assert_int_equal(inc, 3);

	/* RECREATE: the same allocation, a new create intent under the new
	 * incarnation (the old incarnation's intent stays as it was). */
	char k1[JOURNAL_KEY_MAX], k3[JOURNAL_KEY_MAX];
	assert_true(journal_key_gen(uid, "create", 1, 1, k1, sizeof k1) > 0);
	assert_true(journal_key_gen(uid, "create", 1, 3, k3, sizeof k3) > 0);
	Allocation x, y;
	JournalOp o1 = {0}, o3 = {0};
	AllocIntent stale = {"create", k1, NULL, 1};
	assert_int_equal(alloc_take(f->c, f->epoch, uid, "pve1", &POOL, NULL, "mc-paper-", 512,
	                            &stale, &x, &o1, &err),
	                 -EALREADY);
	AllocIntent in3 = {"create", k3, NULL, 3};
	assert_int_equal(alloc_take(f->c, f->epoch, uid, "pve1", &POOL, NULL, "mc-paper-", 512,
	                            &in3, &x, &o3, &err),
	                 1);
	journal_op_clear(&o3);
	assert_int_equal(alloc_bump_incarnation(f->c, f->epoch, uid, 3, &got, &err), 0);
	char k4[JOURNAL_KEY_MAX];
	assert_true(journal_key_gen(uid, "create", 1, 4, k4, sizeof k4) > 0);
	AllocIntent in4 = {"create", k4, NULL, 4};
	assert_int_equal(alloc_take(f->c, f->epoch, uid, "pve2", &POOL, NULL, "mc-paper-", 512,
	                            &in4, &y, &o3, &err),
	                 0);
	assert_memory_equal(&x, &y, sizeof x);
	assert_false(o3.existed);
	assert_int_equal(o3.incarnation, 4);
	assert_string_equal(o3.idem_key, k4);
	journal_op_clear(&o3);
	assert_int_equal(sql_int(f, "SELECT count(*) FROM zlh.operations", NULL), 2);
}

/* --- fencing and the server lock ------------------------------------------------------------- */

static void stale_epoch__every_write_refused_nothing_written(void **state)
{
	Fix *f = *state;
	char a[37], b[37];
	server_new(f, "GameServer", "o1", "a", NULL, 512, a);
	server_new(f, "GameServer", "o1", "b", NULL, 512, b);
	StoreError err = {0};
	Allocation xa = take_new(f, a, "pve1", &POOL);
	int64_t old = f->epoch;
	int64_t now = takeover(f);

	Allocation x;
	JournalOp op = {0};
	int64_t v = -1;
	AllocIntent in = {"create", "k-stale", NULL, 1};
	assert_int_equal(
	    alloc_take(f->c, old, b, "pve1", &POOL, NULL, "mc-paper-", 512, &in, &x, &op, &err),
	    -ESTALE);
	assert_string_equal(err.sqlstate, "ZL006");
	assert_int_equal(
	    alloc_take(f->c, old, a, "pve1", &POOL, NULL, "mc-paper-", 512, NULL, &x, NULL, &err),
	    -ESTALE); /* even the idempotent read-back */
	assert_int_equal(alloc_quarantine(f->c, old, a, xa.vmid, NULL, NULL, 1, &v, &err), -ESTALE);
	assert_int_equal(alloc_quarantine(f->c, old, NULL, 5009, NULL, NULL, 0, &v, &err), -ESTALE);
	assert_int_equal(alloc_follow_node(f->c, old, a, "pve9", &err), -ESTALE);
	assert_int_equal(alloc_set_hostname(f->c, old, a, "renamed", NULL, NULL, &err), -ESTALE);
	assert_int_equal(alloc_release(f->c, old, a, 0, &err), -ESTALE);
	assert_int_equal(alloc_bump_incarnation(f->c, old, a, 1, &v, &err), -ESTALE);
	assert_int_equal(v, -1);

	assert_int_equal(count_allocations(f), 1);
	assert_int_equal(alloc_get(f->c, a, &x, &err), 0);
	assert_memory_equal(&x, &xa, sizeof x);
	assert_int_equal(sql_int(f, "SELECT count(*) FROM zlh.quarantined_vmids", NULL), 0);
	assert_int_equal(sql_int(f, "SELECT count(*) FROM zlh.operations", NULL), 0);
	assert_int_equal(sql_int(f, "SELECT max(incarnation) FROM zlh.server_status", NULL), 1);

	/* The new holder can. */
	f->epoch = now;
	assert_int_equal(take(f, b, "pve1", &POOL, NULL, &x, &err), 1);
}

static void server_lock__held_elsewhere__ebusy_then_ok(void **state)
{
	Fix *f = *state;
	char a[37];
	server_new(f, "GameServer", "o1", "a", NULL, 512, a);
	StoreError err = {0};
	PGconn *other = conn_new(f);
	const char *vals[] = {a};
	PQclear(PQexec(other, "BEGIN"));
	PGresult *res = PQexecParams(other, "SELECT zlh.server_xact_lock($1::uuid)", 1, NULL, vals,
	                             NULL, NULL, 0);
	assert_int_equal(PQresultStatus(res), PGRES_TUPLES_OK);
	PQclear(res);

	Allocation x;
	int64_t v;
	assert_int_equal(take(f, a, "pve1", &POOL, NULL, &x, &err), -EBUSY);
	assert_int_equal(alloc_bump_incarnation(f->c, f->epoch, a, 1, &v, &err), -EBUSY);
	assert_int_equal(alloc_release(f->c, f->epoch, a, 0, &err), -EBUSY);
	assert_int_equal(count_allocations(f), 0);

	PQclear(PQexec(other, "COMMIT"));
	PQfinish(other);
	assert_int_equal(take(f, a, "pve1", &POOL, NULL, &x, &err), 1);
}

/* --- concurrency ------------------------------------------------------------------------------- */

enum { CT_THREADS = 8, CT_OWNERS = 8, CT_PER_OWNER = 25, CT_SERVERS = CT_OWNERS * CT_PER_OWNER };

typedef struct ConcArg {
	const Fix *f;
	int idx;
	char (*uids)[37];
	pthread_barrier_t *barrier;
	int64_t vmid[CT_SERVERS];
	char ip[CT_SERVERS][ALLOC_IP_MAX];
	int64_t op_id[CT_SERVERS];
	int created;
	int busy;
	int r; /* first failure */
	StoreError err;
} ConcArg;

static void *conc_thread(void *p)
{
	ConcArg *a = p;
	const AllocPool pool = {6000, 6000 + CT_SERVERS - 1, "10.90.0.0/24", "10.90.0.1"};
	PGconn *c = conn_new(a->f);
	pthread_barrier_wait(a->barrier);
	/* Every thread allocates every server. Threads i and i + 4 start at
	 * the same server (they race for each one at the same moment), the 4
	 * pairs start 50 apart (they race for the pool): the first writer of a
	 * server wins, every other one must get the same allocation back. */
	for (int k = 0; k < CT_SERVERS && a->r == 0; k++) {
		int s = (a->idx % 4 * (CT_SERVERS / 4) + k) % CT_SERVERS;
		char node[16], key[JOURNAL_KEY_MAX];
		snprintf(node, sizeof node, "pve%d", s % 3 + 1);
		if (journal_key_gen(a->uids[s], "create", 1, 1, key, sizeof key) < 0) {
			a->r = -EINVAL;
			break;
		}
		AllocIntent in = {"create", key, NULL, 1};
		Allocation al;
		JournalOp op = {0};
		int r = -EBUSY;
		for (int i = 0; i < 100000 && r == -EBUSY; i++) {
			r = alloc_take(c, a->f->epoch, a->uids[s], node, &pool, NULL, "mc-paper-",
			               4096, &in, &al, &op, &a->err);
			if (r == -EBUSY) {
				a->busy++;
				sched_yield();
			}
		}
		if (r < 0) {
			a->r = r;
			break;
		}
		a->created += r;
		a->vmid[s] = al.vmid;
		snprintf(a->ip[s], sizeof a->ip[s], "%s", al.ip);
		a->op_id[s] = op.id;
		journal_op_clear(&op);
	}
	PQfinish(c);
	return NULL;
}

static void concurrent__8_threads_200_servers__unique_and_complete(void **state)
{
	Fix *f = *state;
	static char uids[CT_SERVERS][37];
	for (int o = 0; o < CT_OWNERS; o++)
		for (int i = 0; i < CT_PER_OWNER; i++) {
			char owner[16], name[16];
			snprintf(owner, sizeof owner, "owner%d", o);
			snprintf(name, sizeof name, "s%d", i);
			server_new(f, "GameServer", owner, name, NULL, 4096,
			           uids[o * CT_PER_OWNER + i]);
		}

	pthread_barrier_t barrier;
	pthread_barrier_init(&barrier, NULL, CT_THREADS);
	ConcArg *a = calloc(CT_THREADS, sizeof *a);
	assert_non_null(a);
	pthread_t t[CT_THREADS];
	for (int i = 0; i < CT_THREADS; i++) {
		a[i].f = f;
		a[i].idx = i;
		a[i].uids = uids;
		a[i].barrier = &barrier;
		assert_int_equal(pthread_create(&t[i], NULL, conc_thread, &a[i]), 0);
	}
	for (int i = 0; i < CT_THREADS; i++)
		pthread_join(t[i], NULL);
	pthread_barrier_destroy(&barrier);

	int created = 0, busy = 0;
	for (int i = 0; i < CT_THREADS; i++) {
		if (a[i].r < 0)
			fail_msg("thread %d: %d %s", i, a[i].r, a[i].err.message);
		created += a[i].created;
		busy += a[i].busy;
	}
	print_message("allocations: %d created, %d busy retries\n", created, busy);
	assert_int_equal(created, CT_SERVERS); /* each server allocated exactly once */
	/* Every thread saw the same allocation and intent for each server. */
	for (int s = 0; s < CT_SERVERS; s++)
		for (int i = 1; i < CT_THREADS; i++) {
			assert_int_equal(a[i].vmid[s], a[0].vmid[s]);
			assert_string_equal(a[i].ip[s], a[0].ip[s]);
			assert_int_equal(a[i].op_id[s], a[0].op_id[s]);
		}
	free(a);

	/* The database agrees: all distinct, the whole range used, no gateway. */
	assert_int_equal(count_allocations(f), CT_SERVERS);
	assert_int_equal(sql_int(f, "SELECT count(DISTINCT vmid) FROM zlh.allocations", NULL),
	                 CT_SERVERS);
	assert_int_equal(sql_int(f, "SELECT count(DISTINCT ip) FROM zlh.allocations", NULL),
	                 CT_SERVERS);
	assert_int_equal(sql_int(f, "SELECT count(DISTINCT hostname) FROM zlh.allocations", NULL),
	                 CT_SERVERS);
	assert_int_equal(sql_int(f, "SELECT min(vmid) FROM zlh.allocations", NULL), 6000);
	assert_int_equal(sql_int(f, "SELECT max(vmid) FROM zlh.allocations", NULL),
	                 6000 + CT_SERVERS - 1);
	assert_int_equal(sql_int(f,
	                         "SELECT count(*) FROM zlh.allocations WHERE NOT ip << "
	                         "'10.90.0.0/24' OR host(ip) IN ('10.90.0.0', '10.90.0.1', "
	                         "'10.90.0.255') OR hostname <> 'mc-paper-' || vmid",
	                         NULL),
	                 0);
	assert_int_equal(
	    sql_int(f,
	            "SELECT count(*) FROM zlh.server_status st JOIN zlh.allocations a "
	            "USING (uid) WHERE st.vmid = a.vmid AND st.ip = a.ip AND st.node = "
	            "a.node AND st.hostname = a.hostname",
	            NULL),
	    CT_SERVERS);
	/* One intent per server. */
	assert_int_equal(sql_int(f, "SELECT count(*) FROM zlh.operations", NULL), CT_SERVERS);
	assert_int_equal(sql_int(f, "SELECT count(DISTINCT uid) FROM zlh.operations", NULL),
	                 CT_SERVERS);
	/* The range is full now. */
	char extra[37];
	server_new(f, "GameServer", "owner-x", "extra", NULL, 512, extra);
	const AllocPool pool = {6000, 6000 + CT_SERVERS - 1, "10.90.0.0/24", "10.90.0.1"};
	Allocation x;
	StoreError err = {0};
	assert_int_equal(take(f, extra, "pve1", &pool, NULL, &x, &err), -ENOSPC);
}

/* --- main --------------------------------------------------------------------------------------- */

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
	return g_migrations && load_kinds() == 0 ? 0 : -1;
}

static int group_teardown(void **state)
{
	(void)state;
	free(g_migrations);
	json_decref(g_kinds);
	return 0;
}

#define T(name) cmocka_unit_test_setup_teardown(name, fix_setup, fix_teardown)

int main(void)
{
	if (!tu_pg_admin()) {
		printf(
		    "SKIP itest-alloc: ZLH_TEST_PG is not set (run through test/run-tests.sh)\n");
		return 0;
	}
	const struct CMUnitTest tests[] = {
	    T(take__first__lowest_vmid_first_host_with_intent),
	    T(take__stale_incarnation_or_no_server__refused),
	    T(take__small_network__skips_network_gateway_broadcast_then_enospc),
	    T(take__gateway_first_host_and_slash_31__edges),
	    T(take__vmid_range_exhausted__enospc_nothing_written),
	    T(hostname__spec_hostname_equals_a_default__next_vmid),
	    T(quarantine__vmid_never_handed_out_again),
	    T(release__frees_vmid_ip_hostname_for_reuse),
	    T(follow__node_changes_allocation_and_status),
	    T(reserved__sums_spec_memory_per_node),
	    T(incarnation__compare_and_set__one_winner),
	    T(stale_epoch__every_write_refused_nothing_written),
	    T(server_lock__held_elsewhere__ebusy_then_ok),
	    T(concurrent__8_threads_200_servers__unique_and_complete),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
