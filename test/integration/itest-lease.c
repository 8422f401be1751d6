/* itest-lease.c - the leader lease and fencing (DESIGN.md section 7 rule 5):
 * first at the SQL level (db/runtime.c against a real PostgreSQL), then
 * with controller processes: exactly one leader, failover after kill -9
 * within one lease period, and a SIGSTOPped leader that resumes after its
 * lease ran out is fenced and does not act. */
#include "itest-controller-harness.h"

static PGconn *connect_or_fail(const char *conninfo)
{
	PGconn *c = NULL;
	StoreError err = {0};
	if (store_connect(conninfo, &c, &err) < 0)
		fail_msg("connect: %s", err.message);
	return c;
}

/* Waits until the lease row's expiry has passed (database clock). */
static bool lease_expired(void *ctx)
{
	PGconn *c = ctx;
	PGresult *res = PQexec(c, "SELECT expires_at < clock_timestamp() FROM zlh.controller_lease "
	                          "WHERE name = 'default'");
	bool e = PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1 &&
	         PQgetvalue(res, 0, 0)[0] == 't';
	PQclear(res);
	return e;
}

static void lease_sql__claim_renew_takeover_fence(void **state)
{
	(void)state;
	H h;
	h_setup(&h, NULL, true, false);
	PGconn *c = h.conn;
	LeaseClaim a, b;
	StoreError err;

	/* A takes the free lease: epoch 1. B cannot. */
	assert_int_equal(runtime_lease_claim(c, "default", "A", 0, 300, &a, &err), 0);
	assert_true(a.acquired);
	assert_int_equal(a.epoch, 1);
	assert_int_equal(runtime_lease_claim(c, "default", "B", 0, 300, &b, &err), 0);
	assert_false(b.acquired);
	assert_string_equal(b.holder, "A");
	assert_true(b.remaining_ms > 0 && b.remaining_ms <= 300);
	/* A renews: same epoch. */
	assert_int_equal(runtime_lease_claim(c, "default", "A", 1, 300, &a, &err), 0);
	assert_true(a.acquired);
	assert_int_equal(a.epoch, 1);

	/* A server to write for. */
	char uid[37];
	h_apply(&h, "lease-sql", false, uid);
	_cleanup_json_ json_t *conds = json_array();
	assert_int_equal(runtime_status_write(c, 1, uid, 1, PHASE_PROVISIONING, conds, NULL, &err),
	                 0);

	/* A stalls past its lease; B takes over with epoch 2. */
	assert_true(tu_wait_until(lease_expired, c, 5000));
	assert_int_equal(runtime_lease_claim(c, "default", "B", 0, 5000, &b, &err), 0);
	assert_true(b.acquired);
	assert_int_equal(b.epoch, 2);
	/* A's late renewal fails; its writes are fenced. */
	assert_int_equal(runtime_lease_claim(c, "default", "A", 1, 300, &a, &err), 0);
	assert_false(a.acquired);
	assert_int_equal(runtime_status_write(c, 1, uid, 1, PHASE_READY, conds, NULL, &err),
	                 -ESTALE);
	assert_non_null(strstr(err.message, "stale lease epoch 1"));
	assert_int_equal(runtime_event_record(c, 1, uid, "Normal", "X", "y", &err), -ESTALE);
	assert_int_equal(runtime_finalizer_set(c, 1, uid, "probe", true, &err), -ESTALE);
	assert_int_equal(runtime_server_remove(c, 1, uid, &err), -ESTALE);
	/* B's go through. */
	assert_int_equal(runtime_status_write(c, 2, uid, 1, PHASE_READY, conds, "boom", &err), 0);
	_cleanup_free_ char *phase =
	    h_sql_text(&h,
	               "SELECT phase || ':' || last_error FROM zlh.server_status "
	               "WHERE uid = $1::uuid",
	               uid);
	assert_string_equal(phase, "Ready:boom");

	/* Events: the same reason and message are counted, not repeated. */
	int64_t e1 = runtime_event_record(c, 2, uid, "Warning", "TaskFailed", "exit 1", &err);
	int64_t e2 = runtime_event_record(c, 2, uid, "Warning", "TaskFailed", "exit 1", &err);
	int64_t e3 = runtime_event_record(c, 2, uid, "Warning", "TaskFailed", "exit 2", &err);
	assert_true(e1 > 0);
	assert_int_equal(e1, e2);
	assert_true(e3 > e1);
	char id[24];
	snprintf(id, sizeof id, "%" PRId64, e1);
	_cleanup_free_ char *count =
	    h_sql_text(&h, "SELECT count FROM zlh.events WHERE id = $1::bigint", id);
	assert_string_equal(count, "2");
	assert_int_equal(runtime_event_record(c, 2, uid, "Bogus", "X", "y", &err), -EINVAL);

	/* Finalizers and removal: only a deleting server without finalizers. */
	assert_int_equal(runtime_finalizer_set(c, 2, uid, "probe", true, &err), 0);
	assert_int_equal(runtime_finalizer_set(c, 2, uid, "probe", true, &err), 0); /* idempotent */
	assert_int_equal(runtime_server_remove(c, 2, uid, &err), 0); /* not deleting */
	assert_int_equal(store_delete_server(c, "itest", "lease-sql", NULL, NULL), 0);
	assert_int_equal(runtime_server_remove(c, 2, uid, &err), 0); /* finalizer left */
	_cleanup_runtime_server_ RuntimeServer *srv = NULL;
	assert_int_equal(runtime_server_load(c, uid, &srv, &err), 0);
	assert_true(srv->deleting);
	assert_true(runtime_server_has_finalizer(srv, "probe"));
	assert_int_equal(srv->phase, PHASE_READY);
	assert_string_equal(srv->last_error, "boom");
	assert_int_equal(runtime_finalizer_set(c, 2, uid, "probe", false, &err), 0);
	assert_int_equal(runtime_server_remove(c, 2, uid, &err), 1);
	RuntimeServer *gone = NULL;
	assert_int_equal(runtime_server_load(c, uid, &gone, &err), -ENOENT);
	assert_int_equal(runtime_status_write(c, 2, uid, 1, PHASE_READY, conds, NULL, &err),
	                 -ENOENT);

	/* Release: free at once, the next holder gets epoch 3. */
	assert_int_equal(runtime_lease_release(c, "default", "B", 2, &err), 1);
	assert_int_equal(runtime_lease_release(c, "default", "B", 2, &err), 0);
	assert_int_equal(runtime_lease_claim(c, "default", "C", 0, 5000, &a, &err), 0);
	assert_true(a.acquired);
	assert_int_equal(a.epoch, 3);
	h_teardown(&h);
}

/* The fence holds the lease row FOR SHARE until the writing transaction
 * ends: a takeover waits for it, so no write of the old epoch can commit
 * after a new epoch exists. */
static void lease_sql__fence_blocks_takeover_until_commit(void **state)
{
	(void)state;
	H h;
	h_setup(&h, NULL, true, false);
	LeaseClaim a;
	StoreError err;
	assert_int_equal(runtime_lease_claim(h.conn, "default", "A", 0, 200, &a, &err), 0);
	assert_true(tu_wait_until(lease_expired, h.conn, 5000));

	/* A (expired, nobody took over yet) writes: fence passes, row locked. */
	PGconn *w = connect_or_fail(h.conninfo);
	PGresult *res = PQexec(w, "BEGIN");
	assert_int_equal(PQresultStatus(res), PGRES_COMMAND_OK);
	PQclear(res);
	assert_int_equal(runtime_fence(w, 1, &err), 0);

	/* B's takeover on another connection must wait. */
	PGconn *b = connect_or_fail(h.conninfo);
	const char *vals[] = {"default", "B", "0", "5000"};
	assert_int_equal(PQsendQueryParams(b,
	                                   "SELECT acquired, epoch FROM zlh.lease_claim($1, $2, "
	                                   "$3::bigint, $4::bigint)",
	                                   4, NULL, vals, NULL, NULL, 0),
	                 1);
	int64_t t0 = now_mono_ms();
	bool finished_early = false;
	while (now_mono_ms() - t0 < 500) {
		assert_int_equal(PQconsumeInput(b), 1);
		if (!PQisBusy(b)) {
			finished_early = true;
			break;
		}
		struct timespec ts = {0, 20 * 1000000L};
		nanosleep(&ts, NULL);
	}
	assert_false(finished_early);
	res = PQexec(w, "COMMIT");
	assert_int_equal(PQresultStatus(res), PGRES_COMMAND_OK);
	PQclear(res);
	res = PQgetResult(b);
	assert_int_equal(PQresultStatus(res), PGRES_TUPLES_OK);
	assert_string_equal(PQgetvalue(res, 0, 0), "t");
	assert_string_equal(PQgetvalue(res, 0, 1), "2");
	PQclear(res);
	while ((res = PQgetResult(b)))
		PQclear(res);
	/* From now on A's fence fails. */
	res = PQexec(w, "BEGIN");
	PQclear(res);
	assert_int_equal(runtime_fence(w, 1, &err), -ESTALE);
	res = PQexec(w, "ROLLBACK");
	PQclear(res);
	PQfinish(w);
	PQfinish(b);
	h_teardown(&h);
}

/* --- processes --------------------------------------------------------------------- */

static int leader_index(H *h, int n)
{
	char holder[128];
	int64_t epoch;
	h_lease(h, holder, sizeof holder, &epoch);
	for (int i = 0; i < n; i++) {
		char pid[32];
		snprintf(pid, sizeof pid, ":%d:", (int)h->ctl[i].pid);
		if (h->ctl[i].running && strstr(holder, pid))
			return i;
	}
	return -1;
}

typedef struct LeaderWait {
	H *h;
	int n;
	int64_t min_epoch;
	int found;
} LeaderWait;

static bool leader_cond(void *ctx)
{
	LeaderWait *lw = ctx;
	char holder[128];
	int64_t epoch;
	h_lease(lw->h, holder, sizeof holder, &epoch);
	if (epoch < lw->min_epoch)
		return false;
	lw->found = leader_index(lw->h, lw->n);
	return lw->found >= 0;
}

static void lease__two_controllers__exactly_one_leader(void **state)
{
	(void)state;
	H h;
	h_setup(&h, "resync: 1s", true, false);
	char uid[37];
	h_apply(&h, "one", false, uid);
	h_start(&h, 0, NULL);
	h_start(&h, 1, NULL);
	LeaderWait lw = {&h, 2, 1, -1};
	assert_true(tu_wait_until(leader_cond, &lw, 15000));
	int L = lw.found, S = 1 - L;
	assert_true(h_wait_note(&h, L, "STATUS=leader epoch 1", 10000));
	assert_true(h_wait_note(&h, S, "STATUS=standby", 10000));
	/* Several passes later: still one leader, and only it acted. */
	char mine[64], other[64];
	snprintf(mine, sizeof mine, "pid=%d epoch=1", (int)h.ctl[L].pid);
	snprintf(other, sizeof other, "pid=%d ", (int)h.ctl[S].pid);
	int64_t t0 = now_mono_ms();
	while (h_count_file(h.probe, mine) < 6 && now_mono_ms() - t0 < 15000) {
		struct timespec ts = {0, 50 * 1000000L};
		nanosleep(&ts, NULL);
	}
	assert_true(h_count_file(h.probe, mine) >= 6);
	assert_false(h_file_contains(h.probe, other));
	assert_int_equal(h_count_notes(&h, S, "STATUS=leader"), 0);
	assert_int_equal(leader_index(&h, 2), L);
	/* The standby keeps the watchdog fed. */
	assert_true(h_count_notes(&h, S, "WATCHDOG=1") >= 2);

	/* A clean stop hands over at once (release + NOTIFY), no expiry wait. */
	int64_t t1 = now_mono_ms();
	assert_int_equal(WEXITSTATUS(h_stop(&h, L, SIGTERM)), 0);
	assert_true(h_wait_note(&h, S, "STATUS=leader epoch 2", 10000));
	int64_t handover = now_mono_ms() - t1;
	fprintf(stderr, "clean handover: %" PRId64 " ms (lease 2000 ms)\n", handover);
	assert_true(handover < 2000);
	h_teardown(&h);
}

static void lease__leader_killed__standby_takes_over_within_lease(void **state)
{
	(void)state;
	H h;
	h_setup(&h, "resync: 1s", true, false);
	char uid[37];
	h_apply(&h, "two", false, uid);
	h_start(&h, 0, NULL);
	h_start(&h, 1, NULL);
	LeaderWait lw = {&h, 2, 1, -1};
	assert_true(tu_wait_until(leader_cond, &lw, 15000));
	int L = lw.found, S = 1 - L;
	char needle[64];
	snprintf(needle, sizeof needle, "pid=%d epoch=1", (int)h.ctl[L].pid);
	assert_true(h_wait_file(h.probe, needle, 10000));
	assert_true(h_wait_note(&h, S, "STATUS=standby", 10000));

	int64_t t0 = now_mono_ms();
	h_stop(&h, L, SIGKILL);
	bool ok = h_wait_note(&h, S, "STATUS=leader epoch 2", 10000);
	int64_t failover = now_mono_ms() - t0;
	fprintf(stderr, "failover after kill -9: %" PRId64 " ms (lease 2000 ms)\n", failover);
	if (!ok)
		h_dump_log(&h.ctl[S]);
	assert_true(ok);
	/* Within one lease period (plus scheduling slack for a loaded CI). */
	assert_true(failover <= 2000 + 500);
	snprintf(needle, sizeof needle, "pid=%d epoch=2 uid=%s", (int)h.ctl[S].pid, uid);
	assert_true(h_wait_file(h.probe, needle, 10000));
	h_teardown(&h);
}

/* A leader frozen (SIGSTOP) in the middle of an external call, past its
 * lease: the standby takes over; when the old leader resumes, its next
 * fenced write is refused (-ESTALE), it makes no further call, and it
 * becomes a standby. */
static void lease__stopped_leader_resumes__fenced_and_does_not_act(void **state)
{
	(void)state;
	H h;
	h_setup(&h, "resync: 30s", true, false);
	const char *hold[] = {"ZLH_TEST_PROBE_HOLD_MS=1500", NULL};
	h_start(&h, 0, hold);
	assert_true(h_wait_note(&h, 0, "STATUS=leader epoch 1", 15000));
	h_start(&h, 1, NULL);
	assert_true(h_wait_note(&h, 1, "STATUS=standby", 15000));

	char uid[37];
	h_apply(&h, "three", false, uid);
	char a1[160];
	snprintf(a1, sizeof a1, "pid=%d epoch=1 uid=%s action=probe-1", (int)h.ctl[0].pid, uid);
	assert_true(h_wait_file(h.probe, a1, 10000));
	/* A is now inside probe-1's 1.5 s hold: freeze it there. */
	assert_int_equal(kill(h.ctl[0].pid, SIGSTOP), 0);

	char b1[160];
	snprintf(b1, sizeof b1, "pid=%d epoch=2 uid=%s action=probe-2", (int)h.ctl[1].pid, uid);
	bool ok =
	    h_wait_note(&h, 1, "STATUS=leader epoch 2", 10000) && h_wait_file(h.probe, b1, 10000);
	if (!ok)
		h_dump_log(&h.ctl[1]);
	assert_true(ok);

	assert_int_equal(kill(h.ctl[0].pid, SIGCONT), 0);
	ok = h_wait_log(&h, 0, "fenced", 10000) && h_wait_note(&h, 0, "STATUS=standby", 10000);
	if (!ok)
		h_dump_log(&h.ctl[0]);
	assert_true(ok);
	/* A never acted again: no line of A's after B's first one, and no
	 * probe-2 of A at all (its lease check stopped it). */
	_cleanup_free_ char *data = NULL;
	size_t len;
	assert_int_equal(file_read_all(h.probe, 1 << 20, &data, &len), 0);
	char apid[32];
	snprintf(apid, sizeof apid, "pid=%d ", (int)h.ctl[0].pid);
	const char *first_b = strstr(data, "epoch=2");
	assert_non_null(first_b);
	assert_null(strstr(first_b, apid));
	char a2[160];
	snprintf(a2, sizeof a2, "pid=%d epoch=1 uid=%s action=probe-2", (int)h.ctl[0].pid, uid);
	assert_null(strstr(data, a2));
	/* Still exactly one leader: B. */
	assert_int_equal(leader_index(&h, 2), 1);
	assert_int_equal(WEXITSTATUS(h_stop(&h, 0, SIGTERM)), 0);
	h_teardown(&h);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(lease_sql__claim_renew_takeover_fence),
	    cmocka_unit_test(lease_sql__fence_blocks_takeover_until_commit),
	    cmocka_unit_test(lease__two_controllers__exactly_one_leader),
	    cmocka_unit_test(lease__leader_killed__standby_takes_over_within_lease),
	    cmocka_unit_test(lease__stopped_leader_resumes__fenced_and_does_not_act),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
