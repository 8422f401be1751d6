/* itest-container.c - the container reconciler in a running controller
 * against zlh-sim and a real PostgreSQL (issue 5): convergence with exactly
 * one create per server, a steady state without mutating calls, a
 * hand-deleted container recreated once, a hand-resized one repaired, a
 * foreign container never touched, faults (500s and lost replies on every
 * mutating call) without duplicates or leaked allocations, deletion of
 * everything, and crash points (ZLH_CRASH_AT) followed by a restart.
 *
 * Knobs: ZLH_ITEST_SERVERS (default 20) servers per convergence test;
 * ZLH_ITEST_CRASH_ALL=1 runs every (action, step) crash pair of both modes
 * instead of a sample. */
#include "itest-container-harness.h"

static int n_servers(void)
{
	int64_t n = ct_env_int("ZLH_ITEST_SERVERS", 20);
	return n < 1 ? 1 : n > CT_MAX_SERVERS ? CT_MAX_SERVERS : (int)n;
}

static int64_t vmid_of(CT *t, int i)
{
	return ct_sql_int(t, "SELECT vmid FROM zlh.allocations WHERE uid = $1::uuid", t->uid[i]);
}

static char *node_of(CT *t, int i)
{
	return ct_sql_text(t, "SELECT node FROM zlh.allocations WHERE uid = $1::uuid", t->uid[i]);
}

/* Every server's allocation names a container of that uid; no allocation
 * without a server. */
static void assert_no_leaks(CT *t, int from, int to)
{
	CtWorld w;
	assert_true(ct_world(t, &w));
	for (int i = from; i < to; i++) {
		int64_t v = vmid_of(t, i);
		assert_true(v > 0);
		assert_int_equal(w.vmid[i], v);
	}
	assert_int_equal(ct_sql_int(t,
	                            "SELECT count(*) FROM zlh.allocations a WHERE NOT EXISTS "
	                            "(SELECT 1 FROM zlh.servers s WHERE s.uid = a.uid)",
	                            NULL),
	                 0);
}

typedef struct WorldWait {
	CT *t;
	int i;
	int64_t memory; /* wanted memory of server i, or 0 */
	int64_t created; /* wanted created count of server i, or 0 */
} WorldWait;

static bool memory_cond(void *ctx)
{
	WorldWait *ww = ctx;
	CtWorld w;
	return ct_world(ww->t, &w) && w.count[ww->i] == 1 && w.memory[ww->i] == ww->memory;
}

static bool recreated_cond(void *ctx)
{
	WorldWait *ww = ctx;
	CtWorld w;
	if (!ct_world(ww->t, &w) || w.count[ww->i] != 1 || !w.running[ww->i])
		return false;
	_cleanup_json_ json_t *s = ct_sim_get(ww->t, "/_sim/stats");
	json_t *c =
	    json_object_get(json_object_get(json_object_get(s, "created"), "containers_per_uid"),
	                    ww->t->uid[ww->i]);
	return json_integer_value(c) == ww->created;
}

/* Create mode, one controller through the whole life of N servers. */
static void container__create_mode__converge_steady_recreate_repair_delete(void **state)
{
	(void)state;
	CT t;
	const char *sim_args[] = {"--nodes", "3", "--task-ms", "200", NULL};
	ct_setup(&t, CTT_CREATE, sim_args, NULL);
	int n = n_servers();
	for (int i = 0; i < n; i++)
		ct_apply(&t, i, NULL);

	int64_t t0 = now_mono_ms();
	ct_start(&t, NULL);
	bool ok = ct_wait_converged(&t, 0, n, n, 60000);
	int64_t conv_ms = now_mono_ms() - t0;
	if (!ok)
		ct_dump_log(&t);
	assert_true(ok);
	ct_print_calls(&t, "create mode: converge", n, conv_ms);

	/* Exactly one create per server, never two containers for one uid. */
	assert_int_equal(ct_side_effect(&t, "pve.create"), n);
	assert_int_equal(ct_max_per_uid(&t), 1);
	for (int i = 0; i < n; i++)
		assert_int_equal(ct_events(&t, i, "Created"), 1);
	assert_no_leaks(&t, 0, n);
	char *ready = ct_sql_text(&t,
	                          "SELECT phase FROM zlh.server_status st JOIN zlh.servers s "
	                          "USING (uid) WHERE s.name = 's000' AND s.owner = $1",
	                          t.owner);
	assert_non_null(ready);
	assert_string_equal(ready, "Ready");
	free(ready);

	/* Steady state: passes over converged servers make no mutating call.
	 * Wait (bounded) for two more full passes (each one list). */
	int64_t seq = ct_log_seq(&t), mut = 0, lists = 0;
	char first[256];
	int64_t deadline = now_mono_ms() + 20000;
	do {
		ct_sleep_ms(200);
		ct_pve_requests_since(&t, seq, &mut, &lists, first, sizeof first);
	} while (lists < 4 && mut == 0 && now_mono_ms() < deadline);
	if (mut)
		fprintf(stderr, "mutating call in the steady state: %s\n", first);
	assert_int_equal(mut, 0);
	assert_true(lists >= 4);

	/* Deleted by hand: made again exactly once, with event Recreated. */
	char body[128];
	snprintf(body, sizeof body, "{\"vmid\": %" PRId64 "}", vmid_of(&t, 0));
	assert_int_equal(ct_sim_post(&t, "/_sim/pve/delete", body), 200);
	WorldWait ww = {.t = &t, .i = 0, .created = 2};
	ok = tu_wait_until(recreated_cond, &ww, 30000);
	if (!ok)
		ct_dump_log(&t);
	assert_true(ok);
	assert_true(ct_wait_converged(&t, 0, n, n, 30000));
	assert_int_equal(ct_events(&t, 0, "Recreated"), 1);
	assert_int_equal(ct_side_effect(&t, "pve.create"), n + 1);
	assert_int_equal(ct_max_per_uid(&t), 1);

	/* Resized by hand: repaired (config drift). */
	_cleanup_free_ char *node1 = node_of(&t, 1);
	assert_non_null(node1);
	char path[128];
	snprintf(path, sizeof path, "/nodes/%s/lxc/%" PRId64 "/config", node1, vmid_of(&t, 1));
	assert_int_equal(ct_pve(&t, "PUT", path, "memory=3072", NULL), 200);
	ww = (WorldWait){.t = &t, .i = 1, .memory = 1024};
	ok = tu_wait_until(memory_cond, &ww, 30000);
	if (!ok)
		ct_dump_log(&t);
	assert_true(ok);
	assert_true(ct_events(&t, 1, "DriftRepaired") >= 1);
	assert_int_equal(ct_max_per_uid(&t), 1);

	/* Delete everything: containers gone, allocations free, rows removed. */
	for (int i = 0; i < n; i++)
		ct_delete(&t, i);
	ok = tu_wait_until(ct_no_servers_cond, &t, 60000);
	if (!ok)
		ct_dump_log(&t);
	assert_true(ok);
	CtWorld w;
	assert_true(ct_world(&t, &w));
	assert_int_equal(w.total, 0);
	assert_int_equal(ct_sql_int(&t, "SELECT count(*) FROM zlh.allocations", NULL), 0);
	assert_int_equal(ct_sql_int(&t,
	                            "SELECT count(*) FROM zlh.operations WHERE step NOT IN "
	                            "('done', 'failed')",
	                            NULL),
	                 0);
	assert_int_equal(ct_side_effect(&t, "pve.destroy"), n);

	int st = ct_stop(&t, SIGTERM);
	assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	ct_teardown(&t);
}

int main(int argc, char **argv)
{
	CT_MAIN_HOOK(argc, argv);
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(container__create_mode__converge_steady_recreate_repair_delete),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
