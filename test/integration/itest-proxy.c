/* Integration tests of the proxy reconciler (reconcilers/proxy.c) and the
 * Velocity client against zlh-sim's bridge and a real PostgreSQL journal:
 * registration, re-registration after a Velocity restart (exactly one per
 * server, every server back in one pass), lost replies settled by
 * observation, stop/unpublish/delete unregistering only what the journal
 * says we registered (the static lobby and foreign names untouched), crash
 * points at every step converging without a second side effect, a lost
 * lease making no call, an unreachable bridge making no decision. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "reconcilers/proxy.h"
#include "reconcilers/velocity.h"
#include "test/integration/itest-proxy-harness.h"

static Harness H;

#define U(n) "7a000000-0000-4000-8000-0000000000" n

static int64_t reg_max(const char *name)
{
	_cleanup_json_ json_t *st = h_stats(&H);
	json_t *d = json_object_get(json_object_get(st, "duplicates"), "registrations_per_name");
	return json_integer_value(json_object_get(json_object_get(d, name), "max"));
}

static int64_t effects(const char *key)
{
	_cleanup_json_ json_t *st = h_stats(&H);
	return h_stat(st, "side_effects", key, NULL);
}

/* The bridge's view, read with our own client. */
static const char *listed_address(const char *name, char *buf, size_t n)
{
	VelocityClientOptions o = {.url = H.cfg->velocity.url,
	                           .secret_sha256 = H.cfg->velocity.secret_sha256};
	_cleanup_velocity_client_ VelocityClient *c = velocity_client_new(&o);
	assert_non_null(c);
	VelocityServers s = {0};
	VelocityError err = {0};
	assert_int_equal(velocity_status(c, &s, &err), 0);
	const VelocityServer *v = velocity_servers_find(s.items, s.n, name);
	const char *ret = NULL;
	if (v) {
		int k = snprintf(buf, n, "%.60s:%d", v->address, v->port);
		(void)k;
		ret = buf;
	}
	velocity_servers_clear(&s);
	return ret;
}

static int test_setup(void **state)
{
	(void)state;
	g_hooks = (HookState){.lease_ok = true};
	long st = h_ctl(&H, "DELETE", "/_sim/faults", NULL, NULL);
	return st == 200 ? 0 : -1;
}

/* --- client ------------------------------------------------------------------------------- */

static void client__wire__secret_header_and_errors(void **state)
{
	(void)state;
	VelocityClientOptions o = {.url = H.cfg->velocity.url,
	                           .secret_sha256 = H.cfg->velocity.secret_sha256};
	_cleanup_velocity_client_ VelocityClient *c = velocity_client_new(&o);
	VelocityServers s = {0};
	VelocityError err = {0};
	assert_int_equal(velocity_status(c, &s, &err), 0);
	assert_non_null(velocity_servers_find(s.items, s.n, "lobby")); /* velocity.toml */
	velocity_servers_clear(&s);
	assert_int_equal(velocity_register(c, "wire-1", "127.60.0.77", 25565, &err), 0);
	assert_int_equal(velocity_register(c, "WIRE-1", "127.60.0.77", 25565, &err), 0); /* no-op */
	assert_int_equal(velocity_register(c, "wire-1", "127.60.0.78", 25565, &err), -EEXIST);
	assert_int_equal(err.http_status, 409);
	assert_int_equal(velocity_unregister(c, "Wire-1", &err), 0);
	assert_int_equal(velocity_unregister(c, "wire-1", &err), 1); /* 404: already gone */

	VelocityClientOptions bad = {.url = H.cfg->velocity.url, .secret_sha256 = "00"};
	_cleanup_velocity_client_ VelocityClient *b = velocity_client_new(&bad);
	assert_int_equal(velocity_status(b, &s, &err), -EACCES);
	assert_int_equal(err.http_status, 401);
}

/* --- reconciler --------------------------------------------------------------------------------- */

static void proxy__register_then_velocity_restart__reregistered_once(void **state)
{
	(void)state;
	Recon r;
	tr_open(&H, &recon_proxy, &r);
	RuntimeServer *srv = h_server("GameServer", U("01"), "px-restart", "127.60.0.11", true);

	PassResult pr = tr_pass(&r, srv);
	assert_int_equal(pr.observe_r, 0);
	assert_int_equal(pr.acted, 1);
	assert_string_equal(pr.actions[0], "register");
	char buf[64];
	assert_string_equal(listed_address("px-restart", buf, sizeof buf), "127.60.0.11:25565");
	assert_int_equal(tr_converge(&r, srv, 3, &pr), 0);
	assert_int_equal(pr.cond.status, COND_TRUE);
	assert_string_equal(pr.cond.reason, "Registered");

	/* Velocity restarts and forgets: the next pass registers again. */
	assert_int_equal(h_ctl(&H, "POST", "/_sim/velocity/restart", "{}", NULL), 200);
	assert_null(listed_address("px-restart", buf, sizeof buf));
	pr = tr_pass(&r, srv);
	assert_int_equal(pr.acted, 1);
	assert_string_equal(pr.actions[0], "register");
	assert_string_equal(listed_address("px-restart", buf, sizeof buf), "127.60.0.11:25565");
	assert_int_equal(tr_converge(&r, srv, 3, NULL), 0);

	/* At most one registration at any instant; the lobby never touched. */
	assert_int_equal(reg_max("px-restart"), 1);
	assert_int_equal(effects("velocity.unregister_static"), 0);
	size_t done = 0;
	assert_int_equal(h_ops_of(&H, U("01"), "register", &done), 2); /* attempt 1 and #2 */
	assert_int_equal(done, 2);
	assert_int_equal(h_open_ops(&H, U("01")), 0);
	runtime_server_free(srv);
	tr_close(&r);
}

/* Many servers: after a restart one pass each brings every one back. */
static void proxy__restart_with_many_servers__all_back_in_one_pass(void **state)
{
	(void)state;
	enum { N = 20 };
	Recon r;
	tr_open(&H, &recon_proxy, &r);
	RuntimeServer *srv[N];
	for (int i = 0; i < N; i++) {
		char uid[64], host[32], ip[32];
		snprintf(uid, sizeof uid, "7b000000-0000-4000-8000-0000000000%02d", i);
		snprintf(host, sizeof host, "px-many-%02d", i);
		snprintf(ip, sizeof ip, "127.60.1.%d", 10 + i);
		srv[i] = h_server("GameServer", uid, host, ip, true);
		assert_int_equal(tr_pass(&r, srv[i]).acted, 1);
	}
	assert_int_equal(h_ctl(&H, "POST", "/_sim/velocity/restart", "{}", NULL), 200);
	int64_t t0 = now_mono_ms();
	for (int i = 0; i < N; i++) {
		PassResult pr = tr_pass(&r, srv[i]);
		assert_int_equal(pr.acted, 1);
		assert_string_equal(pr.actions[0], "register");
	}
	int64_t dt = now_mono_ms() - t0;
	print_message("proxy: %d registrations back %" PRId64 " ms after a Velocity restart "
	              "(one pass per server, one /zpack/status each)\n",
	              N, dt);
	char buf[64];
	for (int i = 0; i < N; i++) {
		assert_non_null(listed_address(srv[i]->hostname, buf, sizeof buf));
		assert_int_equal(reg_max(srv[i]->hostname), 1);
		assert_int_equal(tr_converge(&r, srv[i], 2, NULL), 0);
		runtime_server_free(srv[i]);
	}
	tr_close(&r);
}

static void proxy__lost_register_reply__settled_by_listing_not_repeated(void **state)
{
	(void)state;
	Recon r;
	tr_open(&H, &recon_proxy, &r);
	RuntimeServer *srv = h_server("GameServer", U("02"), "px-lost", "127.60.0.12", true);
	int64_t before = effects("velocity.register");
	int64_t noop = effects("velocity.register_noop");
	h_fault(&H, "{\"system\":\"velocity\",\"method\":\"POST\",\"route\":\"/zpack/register\","
	            "\"lost_rate\":1,\"count\":1}");
	PassResult pr = tr_pass(&r, srv);
	assert_int_equal(pr.acted, 0);
	assert_true(pr.failed_r < 0);
	assert_non_null(strstr(pr.error, "outcome unknown"));
	assert_int_equal(h_open_ops(&H, U("02")), 1); /* at step call */

	/* The next pass observes the registration and records it. */
	pr = tr_pass(&r, srv);
	assert_int_equal(pr.planned, 1);
	assert_string_equal(pr.actions[0], "settle-register");
	assert_int_equal(pr.cond.status, COND_TRUE);
	assert_int_equal(h_open_ops(&H, U("02")), 0);
	assert_int_equal(tr_converge(&r, srv, 2, NULL), 0);
	assert_int_equal(effects("velocity.register") - before, 1);
	assert_int_equal(effects("velocity.register_noop"), noop);
	runtime_server_free(srv);
	tr_close(&r);
}

static void proxy__stop_unpublish_delete__unregisters_only_ours(void **state)
{
	(void)state;
	Recon r;
	tr_open(&H, &recon_proxy, &r);
	RuntimeServer *srv = h_server("GameServer", U("03"), "px-stop", "127.60.0.13", true);
	char buf[64];
	assert_int_equal(tr_converge(&r, srv, 4, NULL) >= 0, 1);
	assert_non_null(listed_address("px-stop", buf, sizeof buf));

	/* stop -> unregistered */
	json_object_set_new(srv->spec, "power", json_string("stopped"));
	PassResult pr = tr_pass(&r, srv);
	assert_string_equal(pr.actions[0], "unregister");
	assert_null(listed_address("px-stop", buf, sizeof buf));
	assert_int_equal(tr_converge(&r, srv, 2, &pr), 0);
	assert_string_equal(pr.cond.reason, "Stopped");

	/* running again -> registered; unpublished -> unregistered */
	json_object_set_new(srv->spec, "power", json_string("running"));
	assert_true(tr_converge(&r, srv, 3, NULL) >= 0);
	assert_non_null(listed_address("px-stop", buf, sizeof buf));
	json_object_set_new(srv->spec, "publish", json_false());
	assert_true(tr_converge(&r, srv, 3, &pr) >= 0);
	assert_string_equal(pr.cond.reason, "NotApplicable");
	assert_null(listed_address("px-stop", buf, sizeof buf));

	/* published again, then deleted: the finalizer unregisters; someone
	 * removing it first (404) is fine too. */
	json_object_set_new(srv->spec, "publish", json_true());
	assert_true(tr_converge(&r, srv, 3, NULL) >= 0);
	srv->deleting = true;
	pr = tr_pass(&r, srv);
	assert_string_equal(pr.actions[0], "unregister");
	assert_int_equal(pr.acted, 1);
	assert_int_equal(tr_converge(&r, srv, 2, &pr), 0); /* finalizer done */
	assert_null(listed_address("px-stop", buf, sizeof buf));
	assert_non_null(listed_address("lobby", buf, sizeof buf));
	assert_int_equal(effects("velocity.unregister_static"), 0);
	assert_int_equal(h_open_ops(&H, U("03")), 0);
	runtime_server_free(srv);
	tr_close(&r);
}

static void proxy__foreign_registration_with_our_name__conflict_untouched(void **state)
{
	(void)state;
	/* Someone registered our hostname by hand. */
	VelocityClientOptions o = {.url = H.cfg->velocity.url,
	                           .secret_sha256 = H.cfg->velocity.secret_sha256};
	_cleanup_velocity_client_ VelocityClient *c = velocity_client_new(&o);
	VelocityError err = {0};
	assert_int_equal(velocity_register(c, "px-foreign", "127.60.0.99", 25565, &err), 0);

	Recon r;
	tr_open(&H, &recon_proxy, &r);
	RuntimeServer *srv = h_server("GameServer", U("04"), "px-foreign", "127.60.0.14", true);
	PassResult pr;
	assert_int_equal(tr_converge(&r, srv, 2, &pr), 0);
	assert_int_equal(pr.cond.status, COND_FALSE);
	assert_string_equal(pr.cond.reason, "Conflict");
	/* Deleting the server never removes a registration it did not make. */
	srv->deleting = true;
	assert_int_equal(tr_converge(&r, srv, 2, &pr), 0);
	char buf[64];
	assert_string_equal(listed_address("px-foreign", buf, sizeof buf), "127.60.0.99:25565");
	/* A server named like the static lobby: the same. */
	RuntimeServer *lob = h_server("GameServer", U("05"), "LOBBY", "127.60.0.15", true);
	assert_int_equal(tr_converge(&r, lob, 2, &pr), 0);
	assert_string_equal(pr.cond.reason, "Conflict");
	assert_int_equal(effects("velocity.unregister_static"), 0);
	assert_int_equal(velocity_unregister(c, "px-foreign", &err), 0);
	runtime_server_free(lob);
	runtime_server_free(srv);
	tr_close(&r);
}

static void proxy__lease_lost__no_call_made(void **state)
{
	(void)state;
	Recon r;
	tr_open(&H, &recon_proxy, &r);
	RuntimeServer *srv = h_server("GameServer", U("06"), "px-lease", "127.60.0.16", true);
	int64_t before = effects("velocity.register");
	/* The runtime checked before the act; the lease expires during it:
	 * the act's own check right before the call refuses it. */
	Recon *rp = &r;
	void *snap = NULL, *obs = NULL;
	assert_int_equal(rp->rec->observe(&rp->env, &snap), 0);
	assert_int_equal(rp->rec->observe_server(&rp->env, srv, snap, &obs), 0);
	Plan p;
	memset(&p, 0, sizeof p);
	assert_int_equal(rp->rec->plan(H.cfg, srv, snap, obs, &p), 0);
	assert_int_equal(p.n_actions, 1);
	g_hooks.lease_ok = false;
	ActResult res = {0};
	assert_int_equal(rp->rec->act(&rp->env, srv, snap, obs, &p.actions[0], &res), -ESTALE);
	assert_int_equal(effects("velocity.register"), before);
	g_hooks.lease_ok = true;
	plan_clear(&p);
	rp->rec->obs_free(obs);
	rp->rec->snapshot_free(snap);
	/* The intent stays open and is resumed once the lease holds. */
	assert_int_equal(h_open_ops(&H, U("06")), 1);
	assert_true(tr_converge(&r, srv, 3, NULL) >= 0);
	assert_int_equal(h_ops_of(&H, U("06"), "register", NULL), 1);
	assert_int_equal(h_open_ops(&H, U("06")), 0);
	assert_int_equal(effects("velocity.register"), before + 1);
	runtime_server_free(srv);
	tr_close(&r);
}

static void proxy__bridge_down__unknown_no_decision(void **state)
{
	(void)state;
	Recon r;
	tr_open(&H, &recon_proxy, &r);
	RuntimeServer *srv = h_server("GameServer", U("07"), "px-down", "127.60.0.17", true);
	assert_true(tr_converge(&r, srv, 3, NULL) >= 0);
	srv->deleting = true;
	assert_int_equal(h_ctl(&H, "POST", "/_sim/velocity/restart", "{\"down_ms\":60000}", NULL),
	                 200);
	PassResult pr = tr_pass(&r, srv);
	assert_true(pr.observe_r < 0); /* unknown, not "empty" */
	assert_int_equal(pr.planned, 0);
	/* Back up (a restart without downtime): nothing of ours to remove, the
	 * finalizer completes. */
	assert_int_equal(h_ctl(&H, "POST", "/_sim/velocity/restart", "{}", NULL), 200);
	assert_int_equal(tr_converge(&r, srv, 2, &pr), 0);
	assert_string_equal(pr.cond.reason, "Unregistered");
	runtime_server_free(srv);
	tr_close(&r);
}

/* A crash (ZLH_CRASH_AT, _exit(137)) between every pair of steps: the next
 * controller converges with exactly one registration and no open intent. */
static void proxy__crash_points__converge_without_second_side_effect(void **state)
{
	(void)state;
	static const char *const steps[] = {"intent", "call", "handle", "done"};
	for (size_t i = 0; i < 4; i++) {
		char uid[64], host[32], ip[32], at[48];
		snprintf(uid, sizeof uid, "7c000000-0000-4000-8000-0000000000%02zu", i);
		snprintf(host, sizeof host, "px-crash-%zu", i);
		snprintf(ip, sizeof ip, "127.60.2.%zu", 10 + i);
		snprintf(at, sizeof at, "register:%s", steps[i]);
		int64_t before = effects("velocity.register");
		int64_t noop = effects("velocity.register_noop");
		int st = h_run_child(&H, "proxy", at, "GameServer", uid, host, ip, 1, false);
		assert_int_equal(st, 137);
		/* intent: no call made yet; the others: the registration landed. */
		assert_int_equal(effects("velocity.register") - before, i == 0 ? 0 : 1);
		Recon r;
		tr_open(&H, &recon_proxy, &r);
		RuntimeServer *srv = h_server("GameServer", uid, host, ip, true);
		PassResult pr;
		assert_true(tr_converge(&r, srv, 4, &pr) >= 0);
		assert_int_equal(pr.cond.status, COND_TRUE);
		assert_int_equal(effects("velocity.register") - before, 1);
		assert_int_equal(effects("velocity.register_noop"), noop);
		assert_int_equal(reg_max(host), 1);
		assert_int_equal(h_ops_of(&H, uid, "register", NULL), 1);
		assert_int_equal(h_open_ops(&H, uid), 0);

		/* And the same for unregister, during deletion. */
		snprintf(at, sizeof at, "unregister:%s", steps[i]);
		int64_t ub = effects("velocity.unregister");
		st = h_run_child(&H, "proxy", at, "GameServer", uid, host, ip, 1, true);
		assert_int_equal(st, 137);
		srv->deleting = true;
		assert_true(tr_converge(&r, srv, 4, &pr) >= 0);
		assert_string_equal(pr.cond.reason, "Unregistered");
		assert_int_equal(effects("velocity.unregister") - ub, 1);
		assert_int_equal(h_open_ops(&H, uid), 0);
		char buf[64];
		assert_null(listed_address(host, buf, sizeof buf));
		runtime_server_free(srv);
		tr_close(&r);
	}
}

static int group_setup(void **state)
{
	(void)state;
	const char *args[] = {"--nodes", "1", NULL};
	return h_setup(&H, args, "itest-proxy");
}

static int group_teardown(void **state)
{
	(void)state;
	h_teardown(&H);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc > 1 && strcmp(argv[1], "--child") == 0)
		return h_child_main(argc, argv, &recon_proxy);
	if (!tu_pg_admin()) {
		fprintf(stderr, "itest-proxy: $ZLH_TEST_PG not set, skipping\n");
		return 0;
	}
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup(client__wire__secret_header_and_errors, test_setup),
	    cmocka_unit_test_setup(proxy__register_then_velocity_restart__reregistered_once,
	                           test_setup),
	    cmocka_unit_test_setup(proxy__restart_with_many_servers__all_back_in_one_pass,
	                           test_setup),
	    cmocka_unit_test_setup(proxy__lost_register_reply__settled_by_listing_not_repeated,
	                           test_setup),
	    cmocka_unit_test_setup(proxy__stop_unpublish_delete__unregisters_only_ours, test_setup),
	    cmocka_unit_test_setup(proxy__foreign_registration_with_our_name__conflict_untouched,
	                           test_setup),
	    cmocka_unit_test_setup(proxy__lease_lost__no_call_made, test_setup),
	    cmocka_unit_test_setup(proxy__bridge_down__unknown_no_decision, test_setup),
	    cmocka_unit_test_setup(proxy__crash_points__converge_without_second_side_effect,
	                           test_setup),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
