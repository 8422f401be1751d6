/* bench-container.c - how fast the container reconciler converges N servers
 * against zlh-sim (3 nodes, max_tasks_per_node 4, 200 ms tasks), in create
 * mode and in clone mode, next to the physical limit of each mode, and the
 * Proxmox calls it made per server by route. Prints figures; asserts only
 * that the servers converged with one container each.
 *
 *   create mode: one task per server over nodes x max_tasks_per_node slots
 *                -> N x task / (nodes x 4)
 *   clone mode:  one clone at a time per template (one per node)
 *                -> N x task / nodes (config, resize and start overlap)
 *
 * Environment: BENCH_SERVERS (200), BENCH_TASK_MS (200), BENCH_MODES
 * ("create,clone"). Built and run by bench/bench-container.sh. */
#include "test/integration/itest-container-harness.h"

static void run_mode(CtTestMode mode)
{
	int n = (int)ct_env_int("BENCH_SERVERS", 200);
	if (n > CT_MAX_SERVERS)
		n = CT_MAX_SERVERS;
	int64_t task_ms = ct_env_int("BENCH_TASK_MS", 200);
	char task[24];
	snprintf(task, sizeof task, "%" PRId64, task_ms);
	const char *sim_args[] = {"--nodes", "3",      "--task-ms", task, "--node-mem-mib",
	                          "1048576", "--seed", "3",         NULL};
	CT t;
	ct_setup(&t, mode, sim_args,
	         "workers: 8, resync: 30s, lease: 5s, drain_timeout: 5s, rate: {proxmox: 5000}");
	for (int i = 0; i < n; i++)
		ct_apply(&t, i, NULL);
	int64_t t0 = now_mono_ms();
	ct_start(&t, NULL);
	bool ok = ct_wait_converged(&t, 0, n, n, 300000);
	int64_t ms = now_mono_ms() - t0;
	if (!ok)
		ct_dump_log(&t);
	assert_true(ok);
	assert_int_equal(ct_max_per_uid(&t), 1);
	double limit = mode == CTT_CREATE ? (double)n * (double)task_ms / (3.0 * 4.0)
	                                  : (double)n * (double)task_ms / 3.0;
	fprintf(stderr,
	        "# %s mode: %d servers converged in %.2f s; physical limit %.2f s "
	        "(%s); ratio %.2f\n",
	        mode == CTT_CREATE ? "create" : "clone", n, (double)ms / 1000.0, limit / 1000.0,
	        mode == CTT_CREATE ? "N x task / (3 nodes x 4 slots)"
	                           : "N x task / 3 templates, one clone at a time each",
	        (double)ms / limit);
	ct_print_calls(&t, mode == CTT_CREATE ? "create mode" : "clone mode", n, ms);
	int st = ct_stop(&t, SIGTERM);
	assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	ct_teardown(&t);
}

static bool mode_on(const char *m)
{
	const char *v = getenv("BENCH_MODES");
	return !v || strstr(v, m);
}

static void bench__create_mode(void **state)
{
	(void)state;
	if (!mode_on("create"))
		skip();
	run_mode(CTT_CREATE);
}

static void bench__clone_mode(void **state)
{
	(void)state;
	if (!mode_on("clone"))
		skip();
	run_mode(CTT_CLONE);
}

int main(int argc, char **argv)
{
	CT_MAIN_HOOK(argc, argv);
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(bench__create_mode),
	    cmocka_unit_test(bench__clone_mode),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
