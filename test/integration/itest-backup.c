/* Integration tests of the backup reconciler (reconcilers/backup.c) and the
 * agent backup client (reconcilers/agentapi_backup.c) against zlh-sim's
 * agent and a real PostgreSQL journal: a backup taken through the acts, a
 * lost POST /backups reply settled by listing (never a second backup for
 * the slot: the sim's duplicates high-water mark stays 1), retention, a
 * restore executed exactly once per requestId, and the final backup before
 * delete with its metadata left in zlh.backups. Every wait is bounded. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "db/backups.h"
#include "reconcilers/agentapi_backup.h"
#include "reconcilers/backup.h"
#include "test/integration/itest-proxy-harness.h"

static Harness H;

#define U(n) "7c000000-0000-4000-8000-0000000000" n

static int64_t effects(const char *key)
{
	_cleanup_json_ json_t *st = h_stats(&H);
	return h_stat(st, "side_effects", key, NULL);
}

static int64_t backups_dup_max(void)
{
	_cleanup_json_ json_t *st = h_stats(&H);
	return h_stat(st, "max", "backups_per_container_name", "max");
}

/* A running container of uid at ip in the sim (its agent answers there). */
static void make_ct(int vmid, const char *uid, const char *ip)
{
	char body[512];
	snprintf(body, sizeof body,
	         "{\"vmid\":%d,\"ip\":\"%s\",\"tags\":\"zlh;zlh-%s\","
	         "\"description\":\"zlh:uid=%s\",\"running\":true}",
	         vmid, ip, uid, uid);
	assert_int_equal(h_ctl(&H, "POST", "/_sim/pve/create-foreign", body, NULL), 200);
}

/* A GameServer row whose container runs and whose agent is ready. */
static RuntimeServer *server(const char *uid, const char *name, const char *ip, const char *every,
                             int keep)
{
	RuntimeServer *s = h_server("GameServer", uid, name, ip, true);
	json_array_append_new(s->conditions, json_pack("{s:s, s:s, s:s}", "type", "ContainerReady",
	                                               "status", "True", "reason", "Running"));
	json_object_set_new(
	    s->spec, "backups",
	    json_pack("{s:s, s:i, s:b}", "every", every, "keep", keep, "beforeDelete", 1));
	return s;
}

static AgentBackupClient *client(void)
{
	AgentBackupClientOptions o = {.port = H.cfg->agent.port, .token = H.cfg->agent.token};
	AgentBackupClient *c = agentapi_backup_client_new(&o);
	assert_non_null(c);
	return c;
}

static size_t listed(const char *ip, AgentBackups *ret)
{
	_cleanup_agentapi_backup_client_ AgentBackupClient *c = client();
	AgentBackupError err = {0};
	assert_int_equal(agentapi_backup_list(c, ip, ret, &err), 0);
	return ret->n;
}

/* Passes until one plans nothing and no journal operation is open (no
 * backup, restore or delete in flight), within deadline_ms. Returns the passes that acted. */
static int settle(Recon *r, RuntimeServer *srv, int64_t deadline_ms)
{
	int64_t end = now_mono_ms() + deadline_ms;
	int acted = 0;
	for (;;) {
		void *snap = NULL, *obs = NULL;
		assert_int_equal(r->rec->observe(&r->env, &snap), 0);
		assert_int_equal(r->rec->observe_server(&r->env, srv, snap, &obs), 0);
		Plan p;
		memset(&p, 0, sizeof p);
		int k = srv->deleting ? r->rec->finalize(r->env.cfg, srv, snap, obs, &p)
		                      : r->rec->plan(r->env.cfg, srv, snap, obs, &p);
		assert_int_equal(k, 0);
		bool idle = p.n_actions == 0 && h_open_ops(&H, srv->uid) == 0;
		plan_clear(&p);
		r->rec->obs_free(obs);
		r->rec->snapshot_free(snap);
		if (idle)
			return acted;
		if (now_mono_ms() > end)
			fail_msg("backup reconciler did not settle in %" PRId64 " ms", deadline_ms);
		PassResult pr = tr_pass(r, srv);
		acted += pr.acted > 0;
		struct timespec ts = {0, 50 * 1000000};
		nanosleep(&ts, NULL); /* pacing of the poll loop, not synchronization */
	}
}

static void dump_ops(const char *uid)
{
	JournalOp *ops = NULL;
	size_t n = 0;
	StoreError err = {0};
	assert_true(journal_list(H.c, uid, 100, &ops, &n, &err) >= 0);
	for (size_t i = 0; i < n; i++)
		print_message("op %" PRId64 " %s %s step %s handle %s err %s\n", ops[i].id,
		              ops[i].action, ops[i].idem_key, journal_step_to_string(ops[i].step),
		              ops[i].handle ? ops[i].handle : "-",
		              ops[i].error ? ops[i].error : "-");
	journal_ops_free(ops, n);
}

static int test_setup(void **state)
{
	(void)state;
	g_hooks = (HookState){.lease_ok = true};
	return h_ctl(&H, "DELETE", "/_sim/faults", NULL, NULL) == 200 ? 0 : -1;
}

/* --- client ------------------------------------------------------------------------------- */

static void client__routes_against_sim(void **state)
{
	(void)state;
	make_ct(5100, U("00"), "127.61.0.10");
	_cleanup_agentapi_backup_client_ AgentBackupClient *c = client();
	AgentBackupError err = {0};
	char id[AGENTAPI_BACKUP_ID_MAX];
	assert_int_equal(agentapi_backup_create(c, "127.61.0.10", "wire-1", id, sizeof id, &err),
	                 0);
	AgentBackups l = {0};
	assert_int_equal(agentapi_backup_list(c, "127.61.0.10", &l, &err), 0);
	assert_int_equal(l.n, 1);
	assert_string_equal(l.items[0].id, id);
	assert_string_equal(l.items[0].name, "wire-1");
	assert_true(l.items[0].created_ms > 0);
	agentapi_backups_clear(&l);
	AgentRestoreStatus rs;
	assert_int_equal(agentapi_backup_restore_status(c, "127.61.0.10", &rs, &err), 0);
	assert_int_equal(rs.state, AGENT_RESTORE_NONE);
	assert_int_equal(agentapi_backup_restore(c, "127.61.0.10", "bk-nope", &err), -ENOENT);
	assert_int_equal(err.http_status, 404);
	assert_int_equal(agentapi_backup_delete(c, "127.61.0.10", id, &err), 0);
	assert_int_equal(agentapi_backup_delete(c, "127.61.0.10", id, &err), 1); /* gone */
	/* a wrong token is refused */
	AgentBackupClientOptions bad = {.port = H.cfg->agent.port, .token = "nope"};
	_cleanup_agentapi_backup_client_ AgentBackupClient *b = agentapi_backup_client_new(&bad);
	assert_int_equal(agentapi_backup_list(b, "127.61.0.10", &l, &err), -EACCES);
}

/* --- reconciler --------------------------------------------------------------------------- */

static void backup__lost_post_reply__listed_and_adopted_once(void **state)
{
	(void)state;
	Recon r;
	tr_open(&H, &recon_backup, &r);
	make_ct(5101, U("01"), "127.61.0.11");
	RuntimeServer *srv = server(U("01"), "bk-lost", "127.61.0.11", "1h", 3);
	int64_t before = effects("agent.backup_create");
	h_fault(&H, "{\"system\":\"agent\",\"route\":\"/backups\",\"method\":\"POST\","
	            "\"lost_rate\":1,\"count\":1}");

	PassResult pr = tr_pass(&r, srv);
	assert_int_equal(pr.planned, 1);
	assert_string_equal(pr.actions[0], "backup");
	assert_true(pr.failed_r < 0);
	assert_non_null(strstr(pr.error, "outcome unknown"));
	assert_int_equal(h_open_ops(&H, U("01")), 1); /* at step call */
	assert_int_equal(effects("agent.backup_create") - before, 1); /* it did land */

	/* The next pass lists, finds it by its name and adopts it. */
	pr = tr_pass(&r, srv);
	assert_int_equal(pr.planned, 1);
	assert_string_equal(pr.actions[0], "settle-backup");
	settle(&r, srv, 10000);
	dump_ops(U("01"));
	assert_int_equal(effects("agent.backup_create") - before, 1);
	assert_int_equal(backups_dup_max(), 1);
	assert_int_equal(h_open_ops(&H, U("01")), 0);
	size_t done = 0;
	assert_int_equal(h_ops_of(&H, U("01"), "backup", &done), 1);
	assert_int_equal(done, 1);

	/* Metadata kept in zlh.backups, state ok, with the agent's id. */
	AgentBackups l = {0};
	assert_int_equal(listed("127.61.0.11", &l), 1);
	BackupRecord *rows = NULL;
	size_t n = 0;
	StoreError err = {0};
	assert_int_equal(backups_list(H.c, U("01"), NULL, NULL, 0, &rows, &n, &err), 1);
	assert_string_equal(rows[0].backup_id, l.items[0].id);
	assert_string_equal(rows[0].state, "ok");
	assert_string_equal(rows[0].server_name, "bk-lost");
	assert_true(rows[0].bytes > 0 && rows[0].created_ms > 0);
	free(rows);
	agentapi_backups_clear(&l);

	/* Steady state: more passes in the same slot create nothing. */
	for (int i = 0; i < 3; i++)
		assert_int_equal(tr_pass(&r, srv).planned, 0);
	assert_int_equal(effects("agent.backup_create") - before, 1);
	runtime_server_free(srv);
	tr_close(&r);
}

static void backup__schedule_and_retention__keeps_keep(void **state)
{
	(void)state;
	Recon r;
	tr_open(&H, &recon_backup, &r);
	make_ct(5102, U("02"), "127.61.0.12");
	RuntimeServer *srv = server(U("02"), "bk-keep", "127.61.0.12", "1s", 2);
	int64_t end = now_mono_ms() + 15000;
	int64_t pruned0 = effects("agent.backup_delete");
	/* Passes for a while: a backup each 1 s slot, retention at 2. */
	while (effects("agent.backup_delete") - pruned0 < 2) {
		if (now_mono_ms() > end)
			fail_msg("no pruning within 15 s");
		tr_pass(&r, srv);
		struct timespec ts = {0, 100 * 1000000};
		nanosleep(&ts, NULL);
	}
	AgentBackups l = {0};
	size_t ok = 0;
	listed("127.61.0.12", &l);
	for (size_t i = 0; i < l.n; i++)
		ok += l.items[i].state == AGENT_BACKUP_OK;
	/* keep 2, plus at most the one of a slot that began since the prune */
	assert_true(ok >= 2 && ok <= 3);
	agentapi_backups_clear(&l);
	/* zlh.backups forgot the pruned ones */
	BackupRecord *rows = NULL;
	size_t n = 0;
	StoreError err = {0};
	assert_true(backups_list(H.c, U("02"), NULL, NULL, 0, &rows, &n, &err) >= 0);
	assert_true(n <= 4);
	free(rows);
	/* once the schedule stops (every: null), everything settles */
	json_object_set_new(json_object_get(srv->spec, "backups"), "every", json_null());
	settle(&r, srv, 5000);
	assert_int_equal(backups_dup_max(), 1);
	assert_int_equal(h_open_ops(&H, U("02")), 0);
	runtime_server_free(srv);
	tr_close(&r);
}

static void restore__executed_exactly_once(void **state)
{
	(void)state;
	Recon r;
	tr_open(&H, &recon_backup, &r);
	make_ct(5103, U("03"), "127.61.0.13");
	RuntimeServer *srv = server(U("03"), "bk-restore", "127.61.0.13", "1h", 3);
	settle(&r, srv, 10000); /* the first backup */
	AgentBackups l = {0};
	assert_int_equal(listed("127.61.0.13", &l), 1);
	char id[AGENTAPI_BACKUP_ID_MAX];
	snprintf(id, sizeof id, "%s", l.items[0].id);
	agentapi_backups_clear(&l);

	/* An unknown backup id: BackupNotFound, nothing done. */
	int64_t before = effects("agent.restore");
	json_object_set_new(srv->spec, "restore",
	                    json_pack("{s:s, s:s}", "backup", "bk-nope", "requestId",
	                              "9d2b2c3a-0000-4000-8000-00000000aaaa"));
	PassResult pr = tr_pass(&r, srv);
	assert_int_equal(pr.planned, 0);
	assert_string_equal(pr.cond.reason, "BackupNotFound");
	assert_int_equal(effects("agent.restore"), before);

	json_object_set_new(srv->spec, "restore",
	                    json_pack("{s:s, s:s}", "backup", id, "requestId",
	                              "9d2b2c3a-0000-4000-8000-00000000bbbb"));
	pr = tr_pass(&r, srv);
	assert_string_equal(pr.actions[0], "restore");
	assert_int_equal(pr.acted, 1);
	settle(&r, srv, 10000);
	assert_int_equal(effects("agent.restore") - before, 1);
	size_t done = 0;
	assert_int_equal(h_ops_of(&H, U("03"), "restore", &done), 1);
	assert_int_equal(done, 1);
	/* A restart changes nothing: a new Recon (fresh process state) plans no restore. */
	tr_close(&r);
	tr_open(&H, &recon_backup, &r);
	for (int i = 0; i < 3; i++) {
		pr = tr_pass(&r, srv);
		for (int k = 0; k < pr.planned; k++)
			assert_string_not_equal(pr.actions[k], "restore");
	}
	assert_int_equal(effects("agent.restore") - before, 1);
	runtime_server_free(srv);
	tr_close(&r);
}

static void finalize__final_backup_then_done_metadata_kept(void **state)
{
	(void)state;
	Recon r;
	tr_open(&H, &recon_backup, &r);
	make_ct(5104, U("04"), "127.61.0.14");
	RuntimeServer *srv = server(U("04"), "bk-final", "127.61.0.14", "1h", 3);
	srv->deleting = true;
	PassResult pr = tr_pass(&r, srv);
	assert_int_equal(pr.acted, 1);
	assert_string_equal(pr.actions[0], "backup");
	settle(&r, srv, 10000);
	pr = tr_pass(&r, srv);
	assert_int_equal(pr.planned, 0);
	assert_string_equal(pr.cond.reason, "FinalBackupDone");

	AgentBackups l = {0};
	assert_int_equal(listed("127.61.0.14", &l), 1);
	assert_string_equal(l.items[0].name, "zlh-7c000000-final");
	assert_int_equal(l.items[0].state, AGENT_BACKUP_OK);
	agentapi_backups_clear(&l);
	BackupRecord *rows = NULL;
	size_t n = 0;
	StoreError err = {0};
	assert_int_equal(backups_list(H.c, NULL, "user-42", "bk-final", 0, &rows, &n, &err), 1);
	assert_string_equal(rows[0].name, "zlh-7c000000-final");
	assert_string_equal(rows[0].state, "ok");
	free(rows);
	runtime_server_free(srv);
	tr_close(&r);
}

static void lease_lost__no_call(void **state)
{
	(void)state;
	Recon r;
	tr_open(&H, &recon_backup, &r);
	make_ct(5105, U("05"), "127.61.0.15");
	RuntimeServer *srv = server(U("05"), "bk-lease", "127.61.0.15", "1h", 3);
	int64_t before = effects("agent.backup_create");
	g_hooks.lease_ok = false;
	PassResult pr = tr_pass(&r, srv);
	assert_int_equal(pr.planned, 1);
	assert_int_equal(pr.acted, 0);
	assert_int_equal(effects("agent.backup_create"), before);
	runtime_server_free(srv);
	tr_close(&r);
}

int main(int argc, char **argv)
{
	(void)argc;
	(void)argv;
	const char *args[] = {"--nodes", "1", "--task-ms", "50", "--backup-ms", "150", NULL};
	if (h_setup(&H, args, "itest-backup") < 0) {
		h_teardown(&H);
		return 1;
	}
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup(client__routes_against_sim, test_setup),
	    cmocka_unit_test_setup(backup__lost_post_reply__listed_and_adopted_once, test_setup),
	    cmocka_unit_test_setup(backup__schedule_and_retention__keeps_keep, test_setup),
	    cmocka_unit_test_setup(restore__executed_exactly_once, test_setup),
	    cmocka_unit_test_setup(finalize__final_backup_then_done_metadata_kept, test_setup),
	    cmocka_unit_test_setup(lease_lost__no_call, test_setup),
	};
	int rc = cmocka_run_group_tests(tests, NULL, NULL);
	h_teardown(&H);
	return rc;
}
