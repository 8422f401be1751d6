/* itest-controller.c - zlh-controller as a process against a real
 * PostgreSQL: the systemd notify protocol, refusing an old schema,
 * --check-config, NOTIFY wake-ups, metrics and /healthz, pause, deletion
 * through finalizers, and a PostgreSQL restart under a running controller. */
#include "itest-controller-harness.h"

/* READY=1 once the database is reachable and the schema current, WATCHDOG=1
 * from every loop iteration, STATUS= with the counts, STOPPING=1 and a
 * clean exit on SIGTERM. */
static void controller__notify_protocol__ready_watchdog_status_stopping(void **state)
{
	(void)state;
	H h;
	h_setup(&h, "resync: 1s", true, false);
	char uid[37];
	h_apply(&h, "alpha", false, uid);
	h_start(&h, 0, NULL);
	bool ok =
	    h_wait_note(&h, 0, "READY=1", 15000) &&
	    h_wait_note(&h, 0, "STATUS=leader epoch 1; 1 servers: 1 ready, 0 converging", 15000);
	if (!ok) {
		h_dump_log(&h.ctl[0]);
		fprintf(stderr, "notes: %s\n", h.ctl[0].notes.data ? h.ctl[0].notes.data : "");
	}
	assert_true(ok);
	/* WATCHDOG_USEC=2 s: pings at least every second; wait for three. */
	int64_t t0 = now_mono_ms();
	int base = h_count_notes(&h, 0, "WATCHDOG=1");
	while (h_count_notes(&h, 0, "WATCHDOG=1") < base + 3 && now_mono_ms() - t0 < 10000) {
		struct timespec ts = {0, 50 * 1000000L};
		nanosleep(&ts, NULL);
	}
	assert_true(h_count_notes(&h, 0, "WATCHDOG=1") >= base + 3);
	/* READY came before any STATUS=leader. */
	const char *notes = h.ctl[0].notes.data;
	assert_true(strstr(notes, "READY=1") < strstr(notes, "STATUS=leader"));

	int st = h_stop(&h, 0, SIGTERM);
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 0);
	assert_true(h_wait_note(&h, 0, "STOPPING=1", 1000));
	assert_true(h_file_contains(h.ctl[0].log, "lease released"));
	/* The lease was handed back: free, same epoch. */
	char holder[128];
	int64_t epoch;
	h_lease(&h, holder, sizeof holder, &epoch);
	assert_string_equal(holder, "");
	assert_int_equal(epoch, 1);
	h_teardown(&h);
}

static void controller__schema_not_migrated__refuses_to_start(void **state)
{
	(void)state;
	H h;
	h_setup(&h, NULL, false, false);
	h_start(&h, 0, NULL);
	int st = tu_stop(h.ctl[0].pid, 0, 20000);
	h.ctl[0].running = false;
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 1);
	assert_true(h_file_contains(h.ctl[0].log, "the database schema is not current"));
	h_pump(&h.ctl[0]);
	assert_true(!h.ctl[0].notes.data || !strstr(h.ctl[0].notes.data, "READY=1"));
	h_teardown(&h);
}

static void controller__check_config__ok_and_errors(void **state)
{
	(void)state;
	H h;
	h_setup(&h, NULL, false, false);
	_cleanup_free_ char *bin = tu_bin("zlh-controller");
	char *out = NULL, *err = NULL;
	const char *argv[] = {bin, "-c", h.cfg, "--check-config", NULL};
	assert_int_equal(tu_run(argv, NULL, NULL, &out, &err, 10000), 0);
	assert_non_null(strstr(out, ": OK"));
	free(out);
	free(err);

	char bad[700];
	snprintf(bad, sizeof bad, "%s/bad.yaml", h.dir);
	assert_int_equal(tu_write_file(bad, "database: x\nproxmox: {}\nnetwork: {}\nworkers: 3\n"),
	                 0);
	const char *argv2[] = {bin, "-c", bad, "--check-config", NULL};
	assert_int_equal(tu_run(argv2, NULL, NULL, &out, &err, 10000), 1);
	char want[800];
	snprintf(want, sizeof want, "%s:4: workers: unknown key", bad);
	assert_non_null(strstr(err, want));
	snprintf(want, sizeof want, "%s:2: proxmox.url: required key missing", bad);
	assert_non_null(strstr(err, want));
	free(out);
	free(err);

	/* contrib/controller.yaml, its secrets from $CREDENTIALS_DIRECTORY. */
	const char *names[] = {"pve-token", "agent-token", "velocity-secret", "cloudflare-token"};
	for (size_t i = 0; i < 4; i++) {
		char p[700];
		snprintf(p, sizeof p, "%s/%s", h.dir, names[i]);
		assert_int_equal(tu_write_file(p, "contrib-example-secret\n"), 0);
	}
	_cleanup_free_ char *example = tu_src("contrib/controller.yaml");
	char envc[700];
	snprintf(envc, sizeof envc, "CREDENTIALS_DIRECTORY=%s", h.dir);
	const char *env[] = {envc, NULL};
	const char *argv3[] = {bin, "-c", example, "--check-config", NULL};
	int rc = tu_run(argv3, env, NULL, &out, &err, 10000);
	if (rc != 0)
		fprintf(stderr, "%s", err);
	assert_int_equal(rc, 0);
	free(out);
	free(err);
	/* Without the credentials it says which file is missing. */
	const char *env2[] = {"CREDENTIALS_DIRECTORY=/nonexistent", NULL};
	assert_int_equal(tu_run(argv3, env2, NULL, &out, &err, 10000), 1);
	assert_non_null(
	    strstr(err, "proxmox.token_secret_file: cannot read secret file pve-token"));
	free(out);
	free(err);
	h_teardown(&h);
}

/* NOTIFY zlh_work wakes the leader at once: with a 30 s resync, a server
 * applied while it runs is worked within seconds. */
static void controller__notify_wakeup__new_server_worked_before_resync(void **state)
{
	(void)state;
	H h;
	h_setup(&h, "resync: 30s", true, true);
	h_start(&h, 0, NULL);
	assert_true(h_wait_note(&h, 0, "STATUS=leader epoch 1", 15000));
	/* The first pass (empty) completes. */
	assert_true(h_wait_log(&h, 0, "resync: 0 servers queued", 10000));
	char uid[37];
	int64_t t0 = now_mono_ms();
	h_apply(&h, "beta", false, uid);
	char needle[128];
	snprintf(needle, sizeof needle, "uid=%s action=probe-2", uid);
	bool ok = h_wait_file(h.probe, needle, 10000);
	if (!ok)
		h_dump_log(&h.ctl[0]);
	assert_true(ok);
	assert_true(now_mono_ms() - t0 < 10000);
	/* Status written (right after the acts): Ready, as every condition
	 * but the probe's is switched off. */
	char *phase = NULL;
	for (int64_t t1 = now_mono_ms(); now_mono_ms() - t1 < 10000;) {
		free(phase);
		phase =
		    h_sql_text(&h, "SELECT phase FROM zlh.server_status WHERE uid = $1::uuid", uid);
		if (phase && strcmp(phase, "Ready") == 0)
			break;
		struct timespec ts = {0, 20 * 1000000L};
		nanosleep(&ts, NULL);
	}
	assert_non_null(phase);
	assert_string_equal(phase, "Ready");
	free(phase);
	/* The probe's finalizer went in before its first act. */
	_cleanup_free_ char *fin =
	    h_sql_text(&h,
	               "SELECT array_to_string(finalizers, ',') FROM zlh.servers "
	               "WHERE uid = $1::uuid",
	               uid);
	assert_string_equal(fin, "probe");

	/* Metrics and health. */
	/* Phase counts are refreshed every 2 s: poll for them. */
	_cleanup_free_ char *body = NULL;
	for (int64_t t1 = now_mono_ms(); now_mono_ms() - t1 < 10000;) {
		free(body);
		body = NULL;
		assert_int_equal(h_http_get(&h, "/metrics", &body), 200);
		if (strstr(body, "zlh_servers{phase=\"Ready\"} 1"))
			break;
		struct timespec ts = {0, 100 * 1000000L};
		nanosleep(&ts, NULL);
	}
	assert_non_null(strstr(body, "zlh_leader 1"));
	assert_non_null(strstr(body, "zlh_lease_epoch 1"));
	assert_non_null(strstr(body, "zlh_reconcile_total{reconciler=\"probe\",result=\"ok\"}"));
	assert_non_null(strstr(body, "zlh_reconcile_duration_seconds_bucket{reconciler=\"probe\""));
	assert_non_null(strstr(
	    body, "zlh_external_calls_total{system=\"probe\",method=\"POST\",code=\"200\"}"));
	assert_non_null(strstr(body, "zlh_servers{phase=\"Ready\"} 1"));
	assert_non_null(strstr(body, "zlh_queue_depth"));
	assert_non_null(strstr(body, "zlh_work_in_flight"));
	assert_non_null(strstr(body, "zlh_last_pass_timestamp_seconds"));
	_cleanup_free_ char *hz = NULL;
	assert_int_equal(h_http_get(&h, "/healthz", &hz), 200);
	_cleanup_free_ char *nf = NULL;
	assert_int_equal(h_http_get(&h, "/nope", &nf), 404);

	assert_int_equal(WEXITSTATUS(h_stop(&h, 0, SIGTERM)), 0);
	h_teardown(&h);
}

/* A paused server is observed and reported, never acted on. */
static void controller__paused_server__reported_not_acted(void **state)
{
	(void)state;
	H h;
	h_setup(&h, "resync: 1s", true, false);
	char paused[37], normal[37];
	h_apply(&h, "gamma", true, paused);
	h_apply(&h, "delta", false, normal);
	h_start(&h, 0, NULL);
	char needle[128];
	snprintf(needle, sizeof needle, "uid=%s action=probe-2", normal);
	assert_true(h_wait_file(h.probe, needle, 15000));
	/* Three full passes, each working both servers. */
	int64_t t0 = now_mono_ms();
	while (h_count_file(h.ctl[0].log, "resync: 2 servers queued") < 3 &&
	       now_mono_ms() - t0 < 15000) {
		struct timespec ts = {0, 50 * 1000000L};
		nanosleep(&ts, NULL);
	}
	assert_true(h_count_file(h.ctl[0].log, "resync: 2 servers queued") >= 3);
	/* One bulk observation per pass, shared by both servers (read the
	 * observations first: resyncs only grow meanwhile). */
	char obsf[700];
	snprintf(obsf, sizeof obsf, "%s.observe", h.probe);
	int observed = h_count_file(obsf, " observe");
	int passes = h_count_file(h.ctl[0].log, "resync: 2 servers queued");
	fprintf(stderr, "%d bulk observations for %d passes of 2 servers\n", observed, passes);
	assert_true(observed >= 3);
	assert_true(observed <= passes);
	snprintf(needle, sizeof needle, "uid=%s", paused);
	assert_false(h_file_contains(h.probe, needle));
	_cleanup_free_ char *msg = h_sql_text(&h,
	                                      "SELECT c ->> 'message' FROM zlh.server_status, "
	                                      "jsonb_array_elements(conditions) c "
	                                      "WHERE uid = $1::uuid AND c ->> 'type' = 'Ready'",
	                                      paused);
	assert_non_null(msg);
	assert_non_null(strstr(msg, "paused"));
	h_teardown(&h);
}

/* Deletion: finalize (probe-cleanup), finalizer removed, row removed, an
 * event left behind. */
static void controller__delete__finalizer_then_row_removed(void **state)
{
	(void)state;
	H h;
	h_setup(&h, "resync: 30s", true, false);
	h_start(&h, 0, NULL);
	assert_true(h_wait_note(&h, 0, "STATUS=leader epoch 1", 15000));
	char uid[37];
	h_apply(&h, "epsilon", false, uid);
	char needle[128];
	snprintf(needle, sizeof needle, "uid=%s action=probe-2", uid);
	assert_true(h_wait_file(h.probe, needle, 10000));
	assert_int_equal(store_delete_server(h.conn, "itest", "epsilon", NULL, NULL), 0);
	snprintf(needle, sizeof needle, "uid=%s action=probe-cleanup", uid);
	assert_true(h_wait_file(h.probe, needle, 10000));
	bool gone = false;
	for (int64_t t0 = now_mono_ms(); now_mono_ms() - t0 < 10000;) {
		_cleanup_free_ char *n =
		    h_sql_text(&h, "SELECT count(*) FROM zlh.servers WHERE uid = $1::uuid", uid);
		if (n && strcmp(n, "0") == 0) {
			gone = true;
			break;
		}
		struct timespec ts = {0, 50 * 1000000L};
		nanosleep(&ts, NULL);
	}
	if (!gone)
		h_dump_log(&h.ctl[0]);
	assert_true(gone);
	_cleanup_free_ char *ev = h_sql_text(
	    &h, "SELECT count(*) FROM zlh.events WHERE uid = $1::uuid AND reason = 'Deleted'", uid);
	assert_string_equal(ev, "1");
	h_teardown(&h);
}

/* PostgreSQL restarted under a running controller: it notices, steps
 * down, reconnects, LISTENs again, takes the lease back (new epoch) and
 * resyncs; a NOTIFY after that still wakes it. */
static void controller__postgres_restart__reconnect_relisten_resync(void **state)
{
	(void)state;
	const char *pgdir = getenv("ZLH_TEST_PGDIR");
	if (!pgdir)
		skip();
	H h;
	h_setup(&h, "resync: 30s", true, false);
	char uid[37];
	h_apply(&h, "zeta", false, uid);
	h_start(&h, 0, NULL);
	char needle[160];
	snprintf(needle, sizeof needle, "epoch=1 uid=%s action=probe-2", uid);
	assert_true(h_wait_file(h.probe, needle, 15000));

	PQfinish(h.conn);
	h.conn = NULL;
	_cleanup_free_ char *pgsh = tu_src("test/pg.sh");
	const char *argv[] = {"/bin/bash", pgsh, "restart", pgdir, NULL};
	assert_int_equal(tu_run(argv, NULL, NULL, NULL, NULL, 60000), 0);
	StoreError err;
	assert_int_equal(store_connect(h.conninfo, &h.conn, &err), 0);

	bool ok = h_wait_log(&h, 0, "database connection lost", 15000) &&
	          h_wait_log(&h, 0, "database connected; listening on zlh_work", 20000);
	/* Resync after reconnecting: the server is worked again, new epoch. */
	snprintf(needle, sizeof needle, "epoch=2 uid=%s action=probe-2", uid);
	ok = ok && h_wait_file(h.probe, needle, 15000);
	if (!ok)
		h_dump_log(&h.ctl[0]);
	assert_true(ok);
	/* LISTEN is back: a new server is worked long before the 30 s resync. */
	char uid2[37];
	h_apply(&h, "eta", false, uid2);
	snprintf(needle, sizeof needle, "uid=%s action=probe-2", uid2);
	ok = h_wait_file(h.probe, needle, 10000);
	if (!ok)
		h_dump_log(&h.ctl[0]);
	assert_true(ok);
	assert_int_equal(WEXITSTATUS(h_stop(&h, 0, SIGTERM)), 0);
	h_teardown(&h);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(controller__notify_protocol__ready_watchdog_status_stopping),
	    cmocka_unit_test(controller__schema_not_migrated__refuses_to_start),
	    cmocka_unit_test(controller__check_config__ok_and_errors),
	    cmocka_unit_test(controller__notify_wakeup__new_server_worked_before_resync),
	    cmocka_unit_test(controller__paused_server__reported_not_acted),
	    cmocka_unit_test(controller__delete__finalizer_then_row_removed),
	    cmocka_unit_test(controller__postgres_restart__reconnect_relisten_resync),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
