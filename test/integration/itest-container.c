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
	return n < 5 ? 5 : n > CT_MAX_SERVERS ? CT_MAX_SERVERS : (int)n; /* scenarios use 0..4 */
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

typedef struct SideWait {
	CT *t;
	const char *name;
	int64_t want;
} SideWait;

static bool side_effect_cond(void *ctx)
{
	SideWait *sw = ctx;
	return ct_side_effect(sw->t, sw->name) >= sw->want;
}

typedef struct EventWait {
	CT *t;
	int i;
	const char *reason;
	int64_t want;
} EventWait;

static bool event_cond(void *ctx)
{
	EventWait *ew = ctx;
	return ct_events(ew->t, ew->i, ew->reason) >= ew->want;
}

typedef struct StoppedWait {
	CT *t;
	int i;
} StoppedWait;

/* Server i's one container is stopped and its ContainerReady True. */
static bool stopped_cond(void *ctx)
{
	StoppedWait *sw = ctx;
	CtWorld w;
	if (!ct_world(sw->t, &w) || w.count[sw->i] != 1 || w.running[sw->i])
		return false;
	_cleanup_free_ char *st = ct_sql_text(
	    sw->t,
	    "SELECT c->>'reason' FROM zlh.server_status st, jsonb_array_elements(st.conditions) c "
	    "WHERE st.uid = $1::uuid AND c->>'type' = 'ContainerReady' AND c->>'status' = 'True'",
	    sw->t->uid[sw->i]);
	return st && strcmp(st, "Stopped") == 0;
}

typedef struct HostWait {
	CT *t;
	int i;
	const char *hostname;
} HostWait;

static bool hostname_cond(void *ctx)
{
	HostWait *hw = ctx;
	_cleanup_json_ json_t *st = ct_sim_get(hw->t, "/_sim/state");
	size_t k;
	json_t *c;
	json_array_foreach(json_object_get(st, "containers"), k, c)
	{
		const char *uid = json_string_value(json_object_get(c, "uid"));
		const char *h =
		    json_string_value(json_object_get(json_object_get(c, "config"), "hostname"));
		if (uid && strcmp(uid, hw->t->uid[hw->i]) == 0)
			return h && strcmp(h, hw->hostname) == 0;
	}
	return false;
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

	/* spec.restartAt: exactly one reboot per new value. */
	int64_t reboots = ct_side_effect(&t, "pve.reboot");
	char rs[160];
	time_format_rfc3339(now_wall_ms(), rs, sizeof rs);
	char extra[256];
	snprintf(extra, sizeof extra, "{\"restartAt\": \"%s\"}", rs);
	ct_apply(&t, 2, extra);
	SideWait sw = {&t, "pve.reboot", reboots + 1};
	ok = tu_wait_until(side_effect_cond, &sw, 30000);
	if (!ok)
		ct_dump_log(&t);
	assert_true(ok);
	EventWait evw = {&t, 2, "Restarted", 1};
	assert_true(tu_wait_until(event_cond, &evw, 30000));
	assert_true(ct_wait_converged(&t, 0, n, n, 30000));
	/* The same restartAt again (a no-op apply) and a pass: no second reboot. */
	ct_apply(&t, 2, extra);
	int64_t seq2 = ct_log_seq(&t), mut2 = 0, lists2 = 0;
	deadline = now_mono_ms() + 20000;
	do {
		ct_sleep_ms(200);
		ct_pve_requests_since(&t, seq2, &mut2, &lists2, first, sizeof first);
	} while (lists2 < 4 && now_mono_ms() < deadline);
	assert_int_equal(ct_side_effect(&t, "pve.reboot"), reboots + 1);

	/* power: stopped -> one shutdown; running again -> one start. */
	int64_t shutdowns = ct_side_effect(&t, "pve.shutdown");
	int64_t starts = ct_side_effect(&t, "pve.start");
	snprintf(extra, sizeof extra, "{\"restartAt\": \"%s\", \"power\": \"stopped\"}", rs);
	ct_apply(&t, 3, extra);
	StoppedWait stw = {&t, 3};
	ok = tu_wait_until(stopped_cond, &stw, 30000);
	if (!ok)
		ct_dump_log(&t);
	assert_true(ok);
	assert_int_equal(ct_side_effect(&t, "pve.shutdown"), shutdowns + 1);
	ct_apply(&t, 3, NULL);
	assert_true(ct_wait_converged(&t, 0, n, n, 30000));
	assert_int_equal(ct_side_effect(&t, "pve.start"), starts + 1);
	assert_int_equal(ct_side_effect(&t, "pve.reboot"), reboots + 1);
	assert_int_equal(ct_max_per_uid(&t), 1);

	/* spec.hostname changed: the allocation follows, the container is renamed. */
	ct_apply(&t, 4, "{\"hostname\": \"renamed-04\"}");
	HostWait hw = {&t, 4, "renamed-04"};
	ok = tu_wait_until(hostname_cond, &hw, 30000);
	if (!ok)
		ct_dump_log(&t);
	assert_true(ok);
	_cleanup_free_ char *ah =
	    ct_sql_text(&t, "SELECT hostname FROM zlh.allocations WHERE uid = $1::uuid", t.uid[4]);
	assert_non_null(ah);
	assert_string_equal(ah, "renamed-04");
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

/* Clone mode (production's) with 10% HTTP 500s and 10% lost replies on
 * every mutating Proxmox call: converge without one duplicate container
 * (high-water mark), no leaked allocation; then delete everything under
 * the same faults. */
static void container__clone_mode_faults__no_duplicates_no_leaks(void **state)
{
	(void)state;
	CT t;
	const char *sim_args[] = {"--nodes", "3", "--task-ms", "200", "--seed", "7", NULL};
	ct_setup(&t, CTT_CLONE, sim_args, NULL);
	assert_int_equal(ct_sim_post(&t, "/_sim/faults",
	                             "{\"system\": \"pve\", \"method\": \"MUTATING\", "
	                             "\"error_rate\": 0.1, \"lost_rate\": 0.1}"),
	                 200);
	int n = n_servers();
	for (int i = 0; i < n; i++)
		ct_apply(&t, i, NULL);
	int64_t t0 = now_mono_ms();
	ct_start(&t, NULL);
	bool ok = ct_wait_converged(&t, 0, n, n, 120000);
	int64_t conv_ms = now_mono_ms() - t0;
	if (!ok)
		ct_dump_log(&t);
	assert_true(ok);
	ct_print_calls(&t, "clone mode, 10% errors + 10% lost: converge", n, conv_ms);
	_cleanup_json_ json_t *stats = ct_sim_get(&t, "/_sim/stats");
	json_t *faults = json_object_get(stats, "faults");
	fprintf(stderr, "#   faults injected: %" PRId64 " errors, %" PRId64 " lost\n",
	        (int64_t)json_integer_value(json_object_get(faults, "error")),
	        (int64_t)json_integer_value(json_object_get(faults, "lost")));
	assert_true(json_integer_value(json_object_get(faults, "lost")) > 0);

	assert_int_equal(ct_max_per_uid(&t), 1);
	CtWorld w;
	assert_true(ct_world(&t, &w));
	assert_int_equal(w.total, n);
	assert_int_equal(w.others, 0);
	assert_no_leaks(&t, 0, n);
	assert_int_equal(ct_sql_int(&t, "SELECT count(*) FROM zlh.allocations", NULL), n);

	for (int i = 0; i < n; i++)
		ct_delete(&t, i);
	ok = tu_wait_until(ct_no_servers_cond, &t, 120000);
	if (!ok)
		ct_dump_log(&t);
	assert_true(ok);
	assert_true(ct_world(&t, &w));
	assert_int_equal(w.total, 0);
	assert_int_equal(ct_max_per_uid(&t), 1);
	assert_int_equal(ct_sql_int(&t, "SELECT count(*) FROM zlh.allocations", NULL), 0);
	assert_int_equal(ct_sql_int(&t,
	                            "SELECT count(*) FROM zlh.operations WHERE step NOT IN "
	                            "('done', 'failed')",
	                            NULL),
	                 0);
	int st = ct_stop(&t, SIGTERM);
	assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	ct_teardown(&t);
}

/* A container nobody's controller made sits at the first VMID of the
 * range: it is reported, quarantined, never modified or deleted; the
 * servers converge on other VMIDs. */
static void container__foreign_in_range__never_touched(void **state)
{
	(void)state;
	CT t;
	const char *sim_args[] = {"--nodes", "2", "--task-ms", "100", NULL};
	ct_setup(&t, CTT_CLONE, sim_args, NULL);
	/* One template as a single number: it lives on pve2 (the list says
	 * so), so only pve2 can clone. */
	ct_config_replace(&t, "template_vmid: {pve1: 900, pve2: 901}", "template_vmid: 901");
	assert_int_equal(ct_sim_post(&t, "/_sim/pve/create-foreign",
	                             "{\"vmid\": 5000, \"node\": \"pve1\", \"hostname\": "
	                             "\"legacy\", \"running\": true, \"memory\": 2048}"),
	                 200);
	json_t *cfg0 = NULL;
	assert_int_equal(ct_pve(&t, "GET", "/nodes/pve1/lxc/5000/config", NULL, &cfg0), 200);
	const char *digest0 =
	    json_string_value(json_object_get(json_object_get(cfg0, "data"), "digest"));
	assert_non_null(digest0);
	int64_t seq = ct_log_seq(&t);
	for (int i = 0; i < 2; i++)
		ct_apply(&t, i, NULL);
	ct_apply_kind(&t, 2, "DevServer", NULL);
	ct_apply(&t, 3, "{\"deletionPolicy\": \"Orphan\"}");
	ct_start(&t, NULL);
	bool ok = ct_wait_converged(&t, 0, 4, 4, 30000);
	if (!ok)
		ct_dump_log(&t);
	assert_true(ok);
	for (int i = 0; i < 4; i++) {
		_cleanup_free_ char *node = node_of(&t, i);
		assert_non_null(node);
		assert_string_equal(node, "pve2");
	}
	int64_t orphan_vmid = vmid_of(&t, 3);
	/* The DevServer clone got nesting and its default hostname. */
	char dpath[128];
	snprintf(dpath, sizeof dpath, "/nodes/pve2/lxc/%" PRId64 "/config", vmid_of(&t, 2));
	json_t *dcfg = NULL;
	assert_int_equal(ct_pve(&t, "GET", dpath, NULL, &dcfg), 200);
	json_t *dd = json_object_get(dcfg, "data");
	const char *features = json_string_value(json_object_get(dd, "features"));
	assert_non_null(features);
	assert_non_null(strstr(features, "nesting=1"));
	char dhost[64];
	snprintf(dhost, sizeof dhost, "dev-%" PRId64, vmid_of(&t, 2));
	assert_string_equal(json_string_value(json_object_get(dd, "hostname")), dhost);
	json_decref(dcfg);
	/* Deleting the servers must not touch it either; the Orphan one is
	 * left running without our tags. */
	for (int i = 0; i < 4; i++)
		ct_delete(&t, i);
	ok = tu_wait_until(ct_no_servers_cond, &t, 30000);
	if (!ok)
		ct_dump_log(&t);
	assert_true(ok);

	json_t *cfg1 = NULL;
	assert_int_equal(ct_pve(&t, "GET", "/nodes/pve1/lxc/5000/config", NULL, &cfg1), 200);
	assert_string_equal(
	    digest0, json_string_value(json_object_get(json_object_get(cfg1, "data"), "digest")));
	json_decref(cfg0);
	json_decref(cfg1);
	/* No mutating request ever named it. */
	for (;;) {
		char path[128];
		snprintf(path, sizeof path, "/_sim/requests?system=pve&limit=5000&since=%" PRId64,
		         seq);
		_cleanup_json_ json_t *r = ct_sim_get(&t, path);
		json_t *reqs = json_object_get(r, "requests");
		if (!json_array_size(reqs))
			break;
		size_t k;
		json_t *q;
		json_array_foreach(reqs, k, q)
		{
			const char *m = json_string_value(json_object_get(q, "method"));
			const char *p = json_string_value(json_object_get(q, "path"));
			if (m && strcmp(m, "GET") != 0 && p && strstr(p, "/5000"))
				fail_msg("foreign container touched: %s %s", m, p);
			seq = json_integer_value(json_object_get(q, "seq"));
		}
	}
	CtWorld w;
	assert_true(ct_world(&t, &w));
	assert_int_equal(w.total, 2); /* the foreign one and the orphaned one */
	assert_int_equal(w.count[3], 1);
	assert_true(w.running[3]);
	assert_int_equal(w.vmid[3], orphan_vmid);
	char cpath[128];
	snprintf(cpath, sizeof cpath, "/nodes/pve2/lxc/%" PRId64 "/config", orphan_vmid);
	json_t *ocfg = NULL;
	assert_int_equal(ct_pve(&t, "GET", cpath, NULL, &ocfg), 200);
	const char *otags =
	    json_string_value(json_object_get(json_object_get(ocfg, "data"), "tags"));
	assert_true(!otags || !strstr(otags, "zlh"));
	json_decref(ocfg);
	assert_int_equal(ct_events(&t, 3, "Orphaned"), 1);
	assert_int_equal(ct_sql_int(&t, "SELECT count(*) FROM zlh.allocations", NULL), 0);
	assert_int_equal(
	    ct_sql_int(&t, "SELECT count(*) FROM zlh.quarantined_vmids WHERE vmid = 5000", NULL),
	    1);
	/* Made: the four servers only, never at 5000 (Proxmox would have
	 * refused, but we never even asked); three destroyed. */
	assert_int_equal(ct_side_effect(&t, "pve.clone"), 4);
	assert_int_equal(ct_side_effect(&t, "pve.destroy"), 3);
	int st = ct_stop(&t, SIGTERM);
	assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	assert_true(h_log_has(&t, "orphan container 5000"));
	ct_teardown(&t);
}

/* Servers deleted while they are being created (one task slot per node,
 * so most still wait with only an intent): all gone quickly - an intent
 * this process never sent is no call that may still land - with never two
 * containers for one uid and nothing leaked. */
static void container__delete_while_creating__all_gone(void **state)
{
	(void)state;
	CT t;
	const char *sim_args[] = {"--nodes", "2", "--task-ms", "300", NULL};
	ct_setup(&t, CTT_CREATE, sim_args, NULL);
	ct_config_replace(&t, "max_tasks_per_node: 4", "max_tasks_per_node: 1");
	for (int i = 0; i < 8; i++)
		ct_apply(&t, i, NULL);
	ct_start(&t, NULL);
	/* Once the first containers exist, delete everything. */
	SideWait sw = {&t, "pve.create", 2};
	assert_true(tu_wait_until(side_effect_cond, &sw, 20000));
	int64_t t0 = now_mono_ms();
	for (int i = 0; i < 8; i++)
		ct_delete(&t, i);
	bool ok = tu_wait_until(ct_no_servers_cond, &t, 40000);
	if (!ok)
		ct_dump_log(&t);
	assert_true(ok);
	fprintf(stderr, "# 8 servers deleted while creating: gone in %" PRId64 " ms\n",
	        now_mono_ms() - t0);
	CtWorld w;
	assert_true(ct_world(&t, &w));
	assert_int_equal(w.total, 0);
	assert_int_equal(ct_max_per_uid(&t), 1);
	assert_int_equal(ct_sql_int(&t, "SELECT count(*) FROM zlh.allocations", NULL), 0);
	assert_int_equal(ct_sql_int(&t,
	                            "SELECT count(*) FROM zlh.operations WHERE step NOT IN "
	                            "('done', 'failed')",
	                            NULL),
	                 0);
	int st = ct_stop(&t, SIGTERM);
	assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	ct_teardown(&t);
}

/* Kills the controller at one crash point, restarts it without, and
 * checks the server got exactly one container. */
static void crash_pair(CT *t, int i, const char *pair)
{
	ct_apply(t, i, NULL);
	char env0[96];
	snprintf(env0, sizeof env0, "ZLH_CRASH_AT=%s", pair);
	const char *env[] = {env0, NULL};
	ct_start(t, env);
	int st = tu_stop(t->ctl, 0, 30000);
	t->ctl_running = false;
	if (!(WIFEXITED(st) && WEXITSTATUS(st) == 137)) {
		ct_dump_log(t);
		fail_msg("%s: the controller did not crash (status %d)", pair, st);
	}
	ct_start(t, NULL);
	bool ok = ct_wait_converged(t, 0, i + 1, i + 1, 45000);
	if (!ok)
		ct_dump_log(t);
	assert_true(ok);
	st = ct_stop(t, SIGTERM);
	assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	CtWorld w;
	assert_true(ct_world(t, &w));
	assert_int_equal(w.count[i], 1);
	assert_int_equal(w.total, i + 1);
	assert_int_equal(ct_max_per_uid(t), 1);
	fprintf(stderr, "# crash at %s: one container after the restart\n", pair);
}

typedef struct GoneWait {
	CT *t;
	int i;
} GoneWait;

static bool gone_cond(void *ctx)
{
	GoneWait *gw = ctx;
	return ct_sql_int(gw->t, "SELECT count(*) FROM zlh.servers WHERE uid = $1::uuid",
	                  gw->t->uid[gw->i]) == 0;
}

/* Deletion with a crash point: the server is gone after the restart, its
 * container destroyed once, nothing leaked. */
static void crash_delete_pair(CT *t, int i, int keep, const char *pair)
{
	ct_apply(t, i, NULL);
	ct_start(t, NULL);
	bool ok = ct_wait_converged(t, i, i + 1, 1, 30000);
	if (!ok)
		ct_dump_log(t);
	assert_true(ok);
	int st = ct_stop(t, SIGTERM);
	assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	int64_t destroys = ct_side_effect(t, "pve.destroy");
	ct_delete(t, i);
	char env0[96];
	snprintf(env0, sizeof env0, "ZLH_CRASH_AT=%s", pair);
	const char *env[] = {env0, NULL};
	ct_start(t, env);
	st = tu_stop(t->ctl, 0, 30000);
	t->ctl_running = false;
	if (!(WIFEXITED(st) && WEXITSTATUS(st) == 137)) {
		ct_dump_log(t);
		fail_msg("%s: the controller did not crash (status %d)", pair, st);
	}
	ct_start(t, NULL);
	GoneWait gw = {t, i};
	ok = tu_wait_until(gone_cond, &gw, 45000);
	if (!ok)
		ct_dump_log(t);
	assert_true(ok);
	/* The others were not touched. */
	assert_true(ct_wait_converged(t, 0, keep, keep, 30000));
	st = ct_stop(t, SIGTERM);
	assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	CtWorld w;
	assert_true(ct_world(t, &w));
	assert_int_equal(w.count[i], 0);
	assert_int_equal(w.total, keep);
	assert_int_equal(ct_side_effect(t, "pve.destroy"), destroys + 1);
	assert_int_equal(ct_sql_int(t, "SELECT count(*) FROM zlh.allocations", NULL), keep);
	assert_int_equal(ct_max_per_uid(t), 1);
	fprintf(stderr, "# crash at %s while deleting: gone after the restart\n", pair);
}

static void crash_pairs(CtTestMode mode, const char *const *pairs, const char *const *delete_pairs)
{
	CT t;
	const char *sim_args[] = {"--nodes", "2", "--task-ms", "150", NULL};
	ct_setup(&t, mode, sim_args,
	         "workers: 2, resync: 2s, lease: 2s, drain_timeout: 5s, "
	         "rate: {proxmox: 2000}");
	int i = 0;
	for (; pairs[i]; i++)
		crash_pair(&t, i, pairs[i]);
	/* Earlier servers stay: a deletion crash must not touch them. */
	for (int k = 0; delete_pairs && delete_pairs[k]; k++)
		crash_delete_pair(&t, i + k, i, delete_pairs[k]);
	ct_teardown(&t);
}

static bool crash_all(void)
{
	const char *v = getenv("ZLH_ITEST_CRASH_ALL");
	return v && strcmp(v, "1") == 0;
}

static void container__crash_points_create_mode__one_container(void **state)
{
	(void)state;
	static const char *const all[] = {"create:intent", "create:call", "create:handle",
	                                  "create:done", NULL};
	static const char *const del_sample[] = {"destroy:call", NULL};
	static const char *const del_all[] = {"stop:intent",    "stop:call",      "stop:handle",
	                                      "stop:done",      "destroy:intent", "destroy:call",
	                                      "destroy:handle", "destroy:done",   NULL};
	crash_pairs(CTT_CREATE, all, crash_all() ? del_all : del_sample);
}

static void container__crash_points_clone_mode__one_container(void **state)
{
	(void)state;
	static const char *const sample[] = {"clone:call", "config:call", "start:handle", NULL};
	static const char *const all[] = {
	    "clone:intent",  "clone:call",    "clone:handle", "clone:done",
	    "config:intent", "config:call",   "config:done",  "resize:intent",
	    "resize:call",   "resize:handle", "resize:done",  "start:intent",
	    "start:call",    "start:handle",  "start:done",   NULL};
	crash_pairs(CTT_CLONE, crash_all() ? all : sample, NULL);
}

int main(int argc, char **argv)
{
	CT_MAIN_HOOK(argc, argv);
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(container__create_mode__converge_steady_recreate_repair_delete),
	    cmocka_unit_test(container__clone_mode_faults__no_duplicates_no_leaks),
	    cmocka_unit_test(container__foreign_in_range__never_touched),
	    cmocka_unit_test(container__delete_while_creating__all_gone),
	    cmocka_unit_test(container__crash_points_create_mode__one_container),
	    cmocka_unit_test(container__crash_points_clone_mode__one_container),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
