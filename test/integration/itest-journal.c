/* Integration tests of db/journal.c: the intent journal against the real
 * PostgreSQL of $ZLH_TEST_PG (test/run-tests.sh) - idempotent intents (also
 * from concurrent writers), step transitions and their idempotent repeats,
 * attempts, the latest row per action and incarnation, open operations,
 * fencing with a stale epoch; and the pure key helper. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

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
static char *g_db, *g_conninfo;
static int64_t g_epoch; /* the lease epoch the tests write with */
static PGconn *g_c; /* shared connection of the main thread */

#define UID_A "0a000000-0000-4000-8000-00000000000a"
#define UID_B "0b000000-0000-4000-8000-00000000000b"

/* --- helpers --------------------------------------------------------------- */

static int64_t sql_int(const char *sql, const char *p1)
{
	const char *vals[] = {p1};
	_cleanup_pgresult_ PGresult *res =
	    PQexecParams(g_c, sql, p1 ? 1 : 0, NULL, vals, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_TUPLES_OK)
		fail_msg("%s: %s", sql, PQerrorMessage(g_c));
	int64_t v = 0;
	assert_int_equal(parse_int64(PQgetvalue(res, 0, 0), &v), 0);
	return v;
}

static int64_t rows_of_key(const char *base_key)
{
	return sql_int("SELECT count(*) FROM zlh.operations WHERE base_key = $1", base_key);
}

static json_t *jq(const char *s)
{
	json_error_t e;
	json_t *j = json_loads(s, 0, &e);
	if (!j)
		fail_msg("bad test JSON %s: %s", s, e.text);
	return j;
}

/* An intent that must succeed; returns its id (op cleared). */
static int64_t intent_ok(const char *uid, const char *action, const char *key, int64_t inc)
{
	JournalOp op = {0};
	StoreError err = {0};
	int r = journal_intent(g_c, g_epoch, uid, action, key, NULL, inc, &op, &err);
	if (r < 0)
		fail_msg("intent %s: %d %s", key, r, err.message);
	int64_t id = op.id;
	journal_op_clear(&op);
	return id;
}

/* --- keys (pure) ---------------------------------------------------------------- */

static void key__parts__uid_action_gen_inc(void **state)
{
	(void)state;
	char buf[JOURNAL_KEY_MAX];
	int n = journal_key(UID_A, "create", "3", 2, buf, sizeof buf);
	assert_int_equal(n, (int)strlen(UID_A ":create:3:2"));
	assert_string_equal(buf, UID_A ":create:3:2");
	assert_true(journal_key_gen(UID_A, "dns-create", 17, 1, buf, sizeof buf) > 0);
	assert_string_equal(buf, UID_A ":dns-create:17:1");
	/* A request id or a slot in place of the generation. */
	assert_true(journal_key(UID_A, "restore", "6f1c2d3e-aaaa-4bbb-8ccc-0123456789ab", 1, buf,
	                        sizeof buf) > 0);
	assert_string_equal(buf, UID_A ":restore:6f1c2d3e-aaaa-4bbb-8ccc-0123456789ab:1");
	assert_true(journal_key(UID_A, "backup", "zlh-0a000000-17", 0, buf, sizeof buf) > 0);

	/* Exactly fitting, one byte short; buf untouched on failure. */
	char small[64];
	memset(small, 'x', sizeof small);
	size_t need = strlen(UID_A ":create:3:2") + 1;
	assert_int_equal(journal_key(UID_A, "create", "3", 2, small, need - 1), -ENOBUFS);
	assert_int_equal(small[0], 'x');
	assert_int_equal(journal_key(UID_A, "create", "3", 2, small, need), (int)need - 1);

	/* Bad parts: a colon or '#' would make keys ambiguous. */
	assert_int_equal(journal_key("nope", "create", "3", 1, buf, sizeof buf), -EINVAL);
	assert_int_equal(
	    journal_key("0A000000-0000-4000-8000-00000000000A", "create", "3", 1, buf, sizeof buf),
	    -EINVAL);
	assert_int_equal(journal_key(UID_A, "Create", "3", 1, buf, sizeof buf), -EINVAL);
	assert_int_equal(journal_key(UID_A, "-x", "3", 1, buf, sizeof buf), -EINVAL);
	assert_int_equal(journal_key(UID_A, "", "3", 1, buf, sizeof buf), -EINVAL);
	assert_int_equal(journal_key(UID_A, "create", "a:b", 1, buf, sizeof buf), -EINVAL);
	assert_int_equal(journal_key(UID_A, "create", "a#b", 1, buf, sizeof buf), -EINVAL);
	assert_int_equal(journal_key(UID_A, "create", "", 1, buf, sizeof buf), -EINVAL);
	assert_int_equal(journal_key(UID_A, "create", NULL, 1, buf, sizeof buf), -EINVAL);
	assert_int_equal(journal_key(UID_A, "create", "3", -1, buf, sizeof buf), -EINVAL);
	assert_int_equal(journal_key_gen(UID_A, "create", -1, 1, buf, sizeof buf), -EINVAL);
	char longp[80];
	memset(longp, 'g', sizeof longp - 1);
	longp[sizeof longp - 1] = 0;
	assert_int_equal(journal_key(UID_A, "create", longp, 1, buf, sizeof buf), -EINVAL);
}

static void step__names__round_trip(void **state)
{
	(void)state;
	for (int s = 0; s < _JOURNAL_STEP_MAX; s++)
		assert_int_equal(journal_step_from_string(journal_step_to_string((JournalStep)s)),
		                 s);
	assert_null(journal_step_to_string(_JOURNAL_STEP_MAX));
	assert_int_equal(journal_step_from_string("bogus"), _JOURNAL_STEP_INVALID);
	assert_true(journal_step_is_open(JOURNAL_STEP_HANDLE));
	assert_false(journal_step_is_open(JOURNAL_STEP_FAILED));
}

/* --- intents ----------------------------------------------------------------------- */

static void intent__same_key_twice__one_row_existed_second(void **state)
{
	(void)state;
	char key[JOURNAL_KEY_MAX];
	assert_true(journal_key_gen(UID_A, "create", 1, 1, key, sizeof key) > 0);
	_cleanup_json_ json_t *p1 = jq("{\"vmid\": 5000, \"node\": \"pve1\"}");
	_cleanup_json_ json_t *p2 = jq("{\"vmid\": 5999}");
	StoreError err = {0};
	JournalOp a = {0}, b = {0};

	int64_t before = now_wall_ms();
	assert_int_equal(journal_intent(g_c, g_epoch, UID_A, "create", key, p1, 1, &a, &err), 1);
	assert_false(a.existed);
	assert_true(a.id > 0);
	assert_string_equal(a.uid, UID_A);
	assert_string_equal(a.action, "create");
	assert_string_equal(a.idem_key, key);
	assert_string_equal(a.base_key, key);
	assert_int_equal(a.attempt, 1);
	assert_int_equal(a.step, JOURNAL_STEP_INTENT);
	assert_null(a.handle);
	assert_null(a.result);
	assert_null(a.error);
	assert_int_equal(a.incarnation, 1);
	assert_int_equal(a.epoch, g_epoch);
	assert_true(json_equal(a.payload, p1));
	/* Database clock vs ours: the same machine, allow a little. */
	assert_true(a.created_ms >= before - 5000 && a.created_ms <= now_wall_ms() + 5000);
	assert_int_equal(a.completed_ms, 0);

	/* The retry after a crash: the same key, even with another payload,
	 * resumes the row as it was. */
	assert_int_equal(journal_intent(g_c, g_epoch, UID_A, "create", key, p2, 1, &b, &err), 0);
	assert_true(b.existed);
	assert_int_equal(b.id, a.id);
	assert_true(json_equal(b.payload, p1));
	assert_int_equal(b.created_ms, a.created_ms);
	assert_int_equal(rows_of_key(key), 1);

	/* The key belongs to this server and action only. */
	JournalOp x = {0};
	assert_int_equal(journal_intent(g_c, g_epoch, UID_B, "create", key, NULL, 1, &x, &err),
	                 -EEXIST);
	assert_int_equal(journal_intent(g_c, g_epoch, UID_A, "clone", key, NULL, 1, &x, &err),
	                 -EEXIST);
	assert_int_equal(x.id, 0); /* untouched on failure */
	assert_int_equal(rows_of_key(key), 1);

	journal_op_clear(&a);
	journal_op_clear(&b);
	journal_op_clear(&b); /* safe twice */
}

static void intent__bad_arguments__einval_nothing_written(void **state)
{
	(void)state;
	JournalOp op = {0};
	StoreError err = {0};
	int64_t n = sql_int("SELECT count(*) FROM zlh.operations", NULL);
	assert_int_equal(
	    journal_intent(g_c, g_epoch, "nope", "create", "k-bad-1", NULL, 1, &op, &err), -EINVAL);
	assert_int_equal(
	    journal_intent(g_c, g_epoch, UID_A, "Bad Action", "k-bad-1", NULL, 1, &op, &err),
	    -EINVAL);
	assert_int_equal(journal_intent(g_c, g_epoch, UID_A, "create", "k#2", NULL, 1, &op, &err),
	                 -EINVAL);
	assert_int_equal(journal_intent(g_c, g_epoch, UID_A, "create", "", NULL, 1, &op, &err),
	                 -EINVAL);
	assert_int_equal(
	    journal_intent(g_c, g_epoch, UID_A, "create", "k-bad-1", NULL, -1, &op, &err), -EINVAL);
	/* A payload beyond 64 KiB is refused before it reaches the server. */
	_cleanup_free_ char *big = malloc(70000);
	assert_non_null(big);
	memset(big, 'a', 69999);
	big[69999] = 0;
	_cleanup_json_ json_t *pl = json_pack("{s:s}", "x", big);
	assert_int_equal(journal_intent(g_c, g_epoch, UID_A, "create", "k-bad-1", pl, 1, &op, &err),
	                 -EINVAL);
	assert_int_equal(sql_int("SELECT count(*) FROM zlh.operations", NULL), n);
}

typedef struct RaceArg {
	pthread_barrier_t *barrier;
	const char *key;
	int r;
	int64_t id;
	StoreError err;
} RaceArg;

static void *race_thread(void *p)
{
	RaceArg *a = p;
	PGconn *c = NULL;
	a->r = store_connect(g_conninfo, &c, &a->err);
	pthread_barrier_wait(a->barrier);
	if (a->r >= 0) {
		JournalOp op = {0};
		a->r = journal_intent(c, g_epoch, UID_B, "register", a->key, NULL, 1, &op, &a->err);
		a->id = op.id;
		journal_op_clear(&op);
	}
	PQfinish(c);
	return NULL;
}

static void intent__8_concurrent_writers_one_key__one_row(void **state)
{
	(void)state;
	enum { N = 8 };
	char key[JOURNAL_KEY_MAX];
	assert_true(journal_key_gen(UID_B, "register", 4, 1, key, sizeof key) > 0);
	pthread_barrier_t barrier;
	pthread_barrier_init(&barrier, NULL, N);
	RaceArg a[N];
	pthread_t t[N];
	for (int i = 0; i < N; i++) {
		a[i] = (RaceArg){.barrier = &barrier, .key = key};
		assert_int_equal(pthread_create(&t[i], NULL, race_thread, &a[i]), 0);
	}
	for (int i = 0; i < N; i++)
		pthread_join(t[i], NULL);
	pthread_barrier_destroy(&barrier);
	int written = 0;
	for (int i = 0; i < N; i++) {
		if (a[i].r < 0)
			fail_msg("writer %d: %d %s", i, a[i].r, a[i].err.message);
		written += a[i].r;
		assert_int_equal(a[i].id, a[0].id);
	}
	assert_int_equal(written, 1);
	assert_int_equal(rows_of_key(key), 1);
}

static void intent__inside_rolled_back_transaction__not_written(void **state)
{
	(void)state;
	StoreError err = {0};
	JournalOp op = {0};
	assert_int_equal(store_begin(g_c, &err), 0);
	assert_int_equal(
	    journal_intent(g_c, g_epoch, UID_A, "config", "k-rollback", NULL, 1, &op, &err), 1);
	journal_op_clear(&op);
	assert_int_equal(store_rollback(g_c, &err), 0);
	assert_int_equal(journal_get(g_c, "k-rollback", &op, &err), -ENOENT);
	assert_int_equal(rows_of_key("k-rollback"), 0);
}

/* --- steps ----------------------------------------------------------------------------- */

static void steps__call_handle_done__idempotent_repeats(void **state)
{
	(void)state;
	StoreError err = {0};
	int64_t id = intent_ok(UID_A, "clone", "k-steps-1", 1);

	assert_int_equal(journal_mark_call(g_c, g_epoch, id, &err), 1);
	assert_int_equal(journal_mark_call(g_c, g_epoch, id, &err), 0);
	assert_int_equal(journal_set_handle(g_c, g_epoch, id, "UPID:pve1:0001:clone", &err), 1);
	assert_int_equal(journal_set_handle(g_c, g_epoch, id, "UPID:pve1:0001:clone", &err), 0);
	assert_int_equal(journal_set_handle(g_c, g_epoch, id, "UPID:pve1:0002:other", &err),
	                 -EEXIST);
	assert_int_equal(journal_mark_call(g_c, g_epoch, id, &err), 0); /* already past call */

	JournalOp op = {0};
	assert_int_equal(journal_get_id(g_c, id, &op, &err), 0);
	assert_int_equal(op.step, JOURNAL_STEP_HANDLE);
	assert_string_equal(op.handle, "UPID:pve1:0001:clone");
	assert_int_equal(op.completed_ms, 0);
	assert_true(op.updated_ms >= op.created_ms);
	journal_op_clear(&op);

	_cleanup_json_ json_t *res1 = jq("{\"exitstatus\": \"OK\"}");
	_cleanup_json_ json_t *res2 = jq("{\"exitstatus\": \"other\"}");
	assert_int_equal(journal_done(g_c, g_epoch, id, res1, &err), 1);
	assert_int_equal(journal_done(g_c, g_epoch, id, res2, &err), 0); /* first result kept */
	assert_int_equal(journal_fail(g_c, g_epoch, id, "late failure", &err), -EALREADY);
	assert_int_equal(journal_mark_call(g_c, g_epoch, id, &err), -EALREADY);
	assert_int_equal(journal_set_handle(g_c, g_epoch, id, "UPID:pve1:0001:clone", &err), 0);
	assert_int_equal(journal_set_handle(g_c, g_epoch, id, "UPID:pve1:0003:x", &err), -EEXIST);

	assert_int_equal(journal_get(g_c, "k-steps-1", &op, &err), 0);
	assert_int_equal(op.id, id);
	assert_int_equal(op.step, JOURNAL_STEP_DONE);
	assert_true(json_equal(op.result, res1));
	assert_null(op.error);
	assert_true(op.completed_ms >= op.created_ms);
	assert_false(op.existed);
	journal_op_clear(&op);

	/* Straight from intent to handle (no call step) and to done. */
	int64_t id2 = intent_ok(UID_A, "start", "k-steps-2", 1);
	assert_int_equal(journal_set_handle(g_c, g_epoch, id2, "UPID:pve1:0004:start", &err), 1);
	assert_int_equal(journal_done(g_c, g_epoch, id2, NULL, &err), 1);
	int64_t id3 = intent_ok(UID_A, "stop", "k-steps-3", 1);
	assert_int_equal(journal_done(g_c, g_epoch, id3, NULL, &err), 1);
	assert_int_equal(journal_get_id(g_c, id3, &op, &err), 0);
	assert_null(op.handle);
	assert_null(op.result);
	journal_op_clear(&op);
}

static void steps__fail__error_recorded_terminal(void **state)
{
	(void)state;
	StoreError err = {0};
	int64_t id = intent_ok(UID_A, "resize", "k-fail-1", 1);
	assert_int_equal(journal_set_handle(g_c, g_epoch, id, "UPID:pve1:0010:resize", &err), 1);
	assert_int_equal(
	    journal_fail(g_c, g_epoch, id, "command 'resize' failed: exit code 1", &err), 1);
	assert_int_equal(journal_fail(g_c, g_epoch, id, "again", &err), 0);
	assert_int_equal(journal_done(g_c, g_epoch, id, NULL, &err), -EALREADY);
	assert_non_null(strstr(err.message, "already completed"));
	JournalOp op = {0};
	assert_int_equal(journal_get_id(g_c, id, &op, &err), 0);
	assert_int_equal(op.step, JOURNAL_STEP_FAILED);
	assert_string_equal(op.error, "command 'resize' failed: exit code 1");
	assert_string_equal(op.handle, "UPID:pve1:0010:resize");
	assert_true(op.completed_ms > 0);
	journal_op_clear(&op);

	/* Unknown ids, bad arguments. */
	assert_int_equal(journal_done(g_c, g_epoch, 999999999, NULL, &err), -ENOENT);
	assert_int_equal(journal_mark_call(g_c, g_epoch, 999999999, &err), -ENOENT);
	assert_int_equal(journal_fail(g_c, g_epoch, id, NULL, &err), -EINVAL);
	assert_int_equal(journal_set_handle(g_c, g_epoch, id, "", &err), -EINVAL);
	assert_int_equal(journal_done(g_c, g_epoch, 0, NULL, &err), -EINVAL);
	assert_int_equal(journal_get_id(g_c, 999999999, &op, &err), -ENOENT);
	assert_int_equal(journal_get(g_c, "k-no-such-key", &op, &err), -ENOENT);
}

/* --- attempts ---------------------------------------------------------------------------- */

static void retry__new_attempt_only_after_completion(void **state)
{
	(void)state;
	StoreError err = {0};
	JournalOp a = {0}, b = {0}, c = {0}, d = {0}, e = {0};
	const char *key = UID_A ":destroy:1:1";

	/* No row yet: attempt 1 under the key itself. */
	assert_int_equal(
	    journal_intent_retry(g_c, g_epoch, UID_A, "destroy", key, NULL, 1, &a, &err), 1);
	assert_int_equal(a.attempt, 1);
	assert_string_equal(a.idem_key, key);
	/* Still open: a crash after the intent resumes it. */
	assert_int_equal(
	    journal_intent_retry(g_c, g_epoch, UID_A, "destroy", key, NULL, 1, &b, &err), 0);
	assert_int_equal(b.id, a.id);
	assert_true(b.existed);

	assert_int_equal(journal_fail(g_c, g_epoch, a.id, "CT is locked (disk)", &err), 1);
	/* The plain intent never makes a new attempt: it returns the failed one. */
	assert_int_equal(journal_intent(g_c, g_epoch, UID_A, "destroy", key, NULL, 1, &c, &err), 0);
	assert_int_equal(c.id, a.id);
	assert_int_equal(c.step, JOURNAL_STEP_FAILED);
	/* The deliberate retry does: attempt 2. */
	assert_int_equal(
	    journal_intent_retry(g_c, g_epoch, UID_A, "destroy", key, NULL, 1, &d, &err), 1);
	assert_int_equal(d.attempt, 2);
	assert_false(d.existed);
	assert_string_equal(d.base_key, key);
	assert_string_equal(d.idem_key, UID_A ":destroy:1:1#2");
	assert_true(d.id > a.id);
	/* ... and only once while it is open, whichever writer asks. */
	assert_int_equal(
	    journal_intent_retry(g_c, g_epoch, UID_A, "destroy", key, NULL, 1, &e, &err), 0);
	assert_int_equal(e.id, d.id);
	journal_op_clear(&e);
	assert_int_equal(journal_intent(g_c, g_epoch, UID_A, "destroy", key, NULL, 1, &e, &err), 0);
	assert_int_equal(e.id, d.id);
	journal_op_clear(&e);

	/* journal_get: a base key names its latest attempt, "#n" that one. */
	assert_int_equal(journal_get(g_c, key, &e, &err), 0);
	assert_int_equal(e.id, d.id);
	journal_op_clear(&e);
	assert_int_equal(journal_get(g_c, UID_A ":destroy:1:1#2", &e, &err), 0);
	assert_int_equal(e.id, d.id);
	journal_op_clear(&e);
	assert_int_equal(rows_of_key(key), 2);

	/* Done also completes: the next retry is attempt 3. */
	assert_int_equal(journal_done(g_c, g_epoch, d.id, NULL, &err), 1);
	assert_int_equal(
	    journal_intent_retry(g_c, g_epoch, UID_A, "destroy", key, NULL, 1, &e, &err), 1);
	assert_int_equal(e.attempt, 3);
	journal_op_clear(&e);

	journal_op_clear(&a);
	journal_op_clear(&b);
	journal_op_clear(&c);
	journal_op_clear(&d);
}

/* --- reads --------------------------------------------------------------------------------- */

#define UID_L "0c000000-0000-4000-8000-00000000000c"

static const JournalOp *find_action(const JournalOp *ops, size_t n, const char *action)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(ops[i].action, action) == 0)
			return &ops[i];
	return NULL;
}

static void latest__one_row_per_action_of_the_incarnation(void **state)
{
	(void)state;
	StoreError err = {0};
	JournalOp op = {0};
	/* incarnation 1: create done, start failed then retried (open). */
	int64_t create1 = intent_ok(UID_L, "create", UID_L ":create:1:1", 1);
	assert_int_equal(journal_done(g_c, g_epoch, create1, NULL, &err), 1);
	int64_t start1 = intent_ok(UID_L, "start", UID_L ":start:1:1", 1);
	assert_int_equal(journal_fail(g_c, g_epoch, start1, "boom", &err), 1);
	assert_int_equal(journal_intent_retry(g_c, g_epoch, UID_L, "start", UID_L ":start:1:1",
	                                      NULL, 1, &op, &err),
	                 1);
	int64_t start2 = op.id;
	journal_op_clear(&op);
	/* incarnation 2: the container was lost; a new create. */
	int64_t create2 = intent_ok(UID_L, "create", UID_L ":create:1:2", 2);

	JournalOp *ops = NULL;
	size_t n = 99;
	assert_int_equal(journal_latest(g_c, UID_L, 1, &ops, &n, &err), 2);
	assert_int_equal(n, 2);
	assert_string_equal(ops[0].action, "create"); /* ordered by action */
	assert_int_equal(find_action(ops, n, "create")->id, create1);
	assert_int_equal(find_action(ops, n, "create")->step, JOURNAL_STEP_DONE);
	assert_int_equal(find_action(ops, n, "start")->id, start2);
	assert_int_equal(find_action(ops, n, "start")->attempt, 2);
	journal_ops_free(ops, n);

	assert_int_equal(journal_latest(g_c, UID_L, 2, &ops, &n, &err), 1);
	assert_int_equal(ops[0].id, create2);
	assert_int_equal(ops[0].incarnation, 2);
	journal_ops_free(ops, n);

	assert_int_equal(journal_latest(g_c, UID_L, -1, &ops, &n, &err), 2);
	assert_int_equal(find_action(ops, n, "create")->id, create2);
	assert_int_equal(find_action(ops, n, "start")->id, start2);
	journal_ops_free(ops, n);

	assert_int_equal(journal_latest(g_c, UID_L, 7, &ops, &n, &err), 0);
	assert_null(ops);
	assert_int_equal(n, 0);
	assert_int_equal(journal_latest(g_c, "bad", 1, &ops, &n, &err), -EINVAL);

	/* Open operations: start attempt 2 and create of incarnation 2. */
	int64_t open = -1;
	assert_int_equal(journal_open_count(g_c, UID_L, &open, &err), 0);
	assert_int_equal(open, 2);
	assert_int_equal(journal_list_open(g_c, UID_L, 0, &ops, &n, &err), 2);
	assert_int_equal(ops[0].id, start2); /* oldest first */
	assert_int_equal(ops[1].id, create2);
	journal_ops_free(ops, n);
	assert_int_equal(journal_list_open(g_c, UID_L, 1, &ops, &n, &err), 1);
	journal_ops_free(ops, n);
	int64_t all = -1;
	assert_int_equal(journal_open_count(g_c, NULL, &all, &err), 0);
	assert_int_equal(all, sql_int("SELECT count(*) FROM zlh.operations "
	                              "WHERE step IN ('intent', 'call', 'handle')",
	                              NULL));
	assert_true(all >= 2);
	assert_int_equal(journal_list_open(g_c, NULL, 0, &ops, &n, &err), (int)all);
	journal_ops_free(ops, n);

	/* Completing them empties the server's open list. */
	assert_int_equal(journal_done(g_c, g_epoch, start2, NULL, &err), 1);
	assert_int_equal(journal_fail(g_c, g_epoch, create2, "gone", &err), 1);
	assert_int_equal(journal_open_count(g_c, UID_L, &open, &err), 0);
	assert_int_equal(open, 0);
	assert_int_equal(journal_list_open(g_c, UID_L, 0, &ops, &n, &err), 0);
	assert_null(ops);

	/* History, newest first. */
	assert_int_equal(journal_list(g_c, UID_L, 0, &ops, &n, &err), 4);
	assert_int_equal(ops[0].id, create2);
	assert_int_equal(ops[3].id, create1);
	journal_ops_free(ops, n);
	assert_int_equal(journal_list(g_c, UID_L, 2, &ops, &n, &err), 2);
	journal_ops_free(ops, n);
}

#define UID_R "0d000000-0000-4000-8000-00000000000d"

static void payload_max__only_done_ops_count(void **state)
{
	(void)state;
	StoreError err = {0};
	int64_t v = -1;
	assert_int_equal(journal_payload_max(g_c, UID_R, "restartAtMs", &v, &err), 0);
	assert_int_equal(v, 0);

	struct {
		const char *action, *key, *payload, *end;
	} rows[] = {
	    {"start", "k-r-1", "{\"restartAtMs\": 100}", "done"},
	    {"reboot", "k-r-2", "{\"restartAtMs\": 250}", "done"},
	    {"reboot", "k-r-3", "{\"restartAtMs\": 999}", "failed"},
	    {"reboot", "k-r-4", "{\"restartAtMs\": 500}", NULL}, /* open */
	    {"reboot", "k-r-5", "{\"restartAtMs\": \"7000\"}", "done"}, /* not a number */
	    {"config", "k-r-6", "{\"other\": 3}", "done"},
	};
	for (size_t i = 0; i < ELEMENTSOF(rows); i++) {
		_cleanup_json_ json_t *p = jq(rows[i].payload);
		JournalOp op = {0};
		assert_int_equal(journal_intent(g_c, g_epoch, UID_R, rows[i].action, rows[i].key, p,
		                                1, &op, &err),
		                 1);
		if (rows[i].end && strcmp(rows[i].end, "done") == 0)
			assert_int_equal(journal_done(g_c, g_epoch, op.id, NULL, &err), 1);
		else if (rows[i].end)
			assert_int_equal(journal_fail(g_c, g_epoch, op.id, "x", &err), 1);
		journal_op_clear(&op);
	}
	assert_int_equal(journal_payload_max(g_c, UID_R, "restartAtMs", &v, &err), 0);
	assert_int_equal(v, 250);
	assert_int_equal(journal_payload_max(g_c, UID_R, "", &v, &err), -EINVAL);
}

/* --- fencing ------------------------------------------------------------------------------- */

static void stale_epoch__every_write_refused_nothing_written(void **state)
{
	(void)state;
	StoreError err = {0};
	int64_t id = intent_ok(UID_B, "unregister", "k-stale-1", 1);
	int64_t done_id = intent_ok(UID_B, "dns-create", "k-stale-2", 1);
	int64_t rows = sql_int("SELECT count(*) FROM zlh.operations", NULL);
	int64_t changed = sql_int("SELECT max(extract(epoch FROM updated_at) * 1e6)::bigint "
	                          "FROM zlh.operations",
	                          NULL);

	/* Another controller takes the lease over: epoch + 1. */
	LeaseClaim lc = {0};
	assert_int_equal(
	    runtime_lease_release(g_c, RUNTIME_LEASE_DEFAULT, "itest-journal", g_epoch, &err), 1);
	assert_int_equal(runtime_lease_claim(g_c, RUNTIME_LEASE_DEFAULT, "itest-journal-b", 0,
	                                     600000, &lc, &err),
	                 0);
	assert_true(lc.acquired);
	assert_int_equal(lc.epoch, g_epoch + 1);
	int64_t old = g_epoch;

	JournalOp op = {0};
	_cleanup_json_ json_t *res = jq("{}");
	assert_int_equal(
	    journal_intent(g_c, old, UID_B, "register", "k-stale-3", NULL, 1, &op, &err), -ESTALE);
	assert_string_equal(err.sqlstate, "ZL006");
	assert_int_equal(
	    journal_intent(g_c, old, UID_B, "unregister", "k-stale-1", NULL, 1, &op, &err),
	    -ESTALE); /* even the idempotent repeat */
	assert_int_equal(
	    journal_intent_retry(g_c, old, UID_B, "register", "k-stale-3", NULL, 1, &op, &err),
	    -ESTALE);
	assert_int_equal(journal_mark_call(g_c, old, id, &err), -ESTALE);
	assert_int_equal(journal_set_handle(g_c, old, id, "h", &err), -ESTALE);
	assert_int_equal(journal_done(g_c, old, id, res, &err), -ESTALE);
	assert_int_equal(journal_fail(g_c, old, done_id, "x", &err), -ESTALE);
	assert_int_equal(op.id, 0);
	/* A future epoch is no better. */
	assert_int_equal(journal_done(g_c, lc.epoch + 1, id, res, &err), -ESTALE);

	assert_int_equal(sql_int("SELECT count(*) FROM zlh.operations", NULL), rows);
	assert_int_equal(sql_int("SELECT max(extract(epoch FROM updated_at) * 1e6)::bigint "
	                         "FROM zlh.operations",
	                         NULL),
	                 changed);
	assert_int_equal(journal_get_id(g_c, id, &op, &err), 0);
	assert_int_equal(op.step, JOURNAL_STEP_INTENT);
	journal_op_clear(&op);

	/* The new holder writes; the row records its epoch. */
	g_epoch = lc.epoch;
	assert_int_equal(journal_done(g_c, g_epoch, id, res, &err), 1);
	assert_int_equal(journal_get_id(g_c, id, &op, &err), 0);
	assert_int_equal(op.epoch, g_epoch);
	journal_op_clear(&op);
}

/* --- main -------------------------------------------------------------------------------------- */

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
	if (!g_migrations || load_kinds() < 0 || tu_db_create(&g_db, &g_conninfo) < 0)
		return -1;
	StoreError err = {0};
	if (store_connect(g_conninfo, &g_c, &err) < 0 ||
	    store_migrate(g_c, g_migrations, g_kinds, &err) < 0) {
		fprintf(stderr, "setup: %s\n", err.message);
		return -1;
	}
	LeaseClaim lc = {0};
	if (runtime_lease_claim(g_c, RUNTIME_LEASE_DEFAULT, "itest-journal", 0, 600000, &lc, &err) <
	        0 ||
	    !lc.acquired) {
		fprintf(stderr, "lease: %s\n", err.message);
		return -1;
	}
	g_epoch = lc.epoch;
	return 0;
}

static int group_teardown(void **state)
{
	(void)state;
	PQfinish(g_c);
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
		printf(
		    "SKIP itest-journal: ZLH_TEST_PG is not set (run through test/run-tests.sh)\n");
		return 0;
	}
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(key__parts__uid_action_gen_inc),
	    cmocka_unit_test(step__names__round_trip),
	    cmocka_unit_test(intent__same_key_twice__one_row_existed_second),
	    cmocka_unit_test(intent__bad_arguments__einval_nothing_written),
	    cmocka_unit_test(intent__8_concurrent_writers_one_key__one_row),
	    cmocka_unit_test(intent__inside_rolled_back_transaction__not_written),
	    cmocka_unit_test(steps__call_handle_done__idempotent_repeats),
	    cmocka_unit_test(steps__fail__error_recorded_terminal),
	    cmocka_unit_test(retry__new_attempt_only_after_completion),
	    cmocka_unit_test(latest__one_row_per_action_of_the_incarnation),
	    cmocka_unit_test(payload_max__only_done_ops_count),
	    cmocka_unit_test(stale_epoch__every_write_refused_nothing_written),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
