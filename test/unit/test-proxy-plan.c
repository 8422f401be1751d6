/* Unit tests for the proxy reconciler's pure plan (reconcilers/proxy.c):
 * one test per row of its decision table (row ids in the names' comments),
 * plus the glue that reads a RuntimeServer (AgentReady from the stored
 * conditions, spec.publish/power), the journal key helper, and the
 * reconciler table itself. No I/O. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "reconcilers/proxy.h"

#define UID "3f2a9c1e-5b7d-4e8f-9a0b-1c2d3e4f5a6b"
#define NOW 1722938400000LL /* 2024-08-06T10:00:00Z */

static VelocityServer vs(const char *name, const char *addr, int port)
{
	VelocityServer v = {.port = port};
	snprintf(v.name, sizeof v.name, "%s", name);
	snprintf(v.address, sizeof v.address, "%s", addr);
	return v;
}

static PxOp op(int64_t id, JournalStep step, const char *name, const char *addr, int64_t port)
{
	PxOp o = {.id = id, .step = step, .port = port};
	snprintf(o.name, sizeof o.name, "%s", name);
	snprintf(o.address, sizeof o.address, "%s", addr ? addr : "");
	return o;
}

/* A published, running GameServer whose agent is ready, nothing listed
 * but the static lobby, no journal. */
static PxInput base(const VelocityServer *listed, size_t n)
{
	PxInput in = {
	    .game = true,
	    .publish = true,
	    .running = true,
	    .hostname = "mc1",
	    .ip = "10.60.0.5",
	    .agent_ready = true,
	    .agent_since_ms = NOW - 3600000,
	    .now_ms = NOW,
	    .listed = listed,
	    .n_listed = n,
	};
	recon_proxy_settings_init(&in.settings);
	return in;
}

static const CondReport *cond(const Plan *p)
{
	const CondReport *c = &p->conditions[COND_PROXY_REGISTERED];
	assert_true(c->set);
	return c;
}

static void assert_cond(const Plan *p, CondStatus st, const char *reason)
{
	const CondReport *c = cond(p);
	if (c->status != st || strcmp(c->reason, reason) != 0)
		fail_msg("condition %s %s (%s), want %s %s", cond_status_name(c->status), c->reason,
		         c->message, cond_status_name(st), reason);
}

static const char *arg(const Action *a, const char *key)
{
	return json_string_value(json_object_get(a->args, key));
}

static void assert_action(const Plan *p, size_t i, const char *name, const char *server_name)
{
	if (i >= p->n_actions)
		fail_msg("no action %zu (have %zu)", i, p->n_actions);
	const Action *a = &p->actions[i];
	assert_string_equal(a->name, name);
	if (server_name)
		assert_string_equal(arg(a, "server_name"), server_name);
	bool external = strcmp(name, "register") == 0 || strcmp(name, "unregister") == 0;
	assert_int_equal(a->mutating, external);
	if (external)
		assert_string_equal(a->system, "velocity");
	else
		assert_null(a->system);
}

static void assert_settle(const Plan *p, size_t i, const char *name, int64_t op_id,
                          const char *outcome)
{
	assert_action(p, i, name, NULL);
	const Action *a = &p->actions[i];
	assert_int_equal(json_integer_value(json_object_get(a->args, "op")), op_id);
	assert_string_equal(arg(a, "outcome"), outcome);
}

static Plan run(const PxInput *in)
{
	Plan p;
	memset(&p, 0, sizeof p);
	assert_int_equal(recon_proxy_plan_input(in, &p), 0);
	return p;
}

/* --- rows ----------------------------------------------------------------------------- */

/* N1 */
static void plan__devserver__not_applicable(void **state)
{
	(void)state;
	PxInput in = base(NULL, 0);
	in.game = false;
	Plan p = run(&in);
	assert_int_equal(p.n_actions, 0);
	assert_cond(&p, COND_TRUE, "NotApplicable");
	plan_clear(&p);
}

/* R3 */
static void plan__agent_ready_not_listed__registers(void **state)
{
	(void)state;
	VelocityServer l[] = {vs("lobby", "127.0.0.1", 25566)};
	PxInput in = base(l, 1);
	Plan p = run(&in);
	assert_int_equal(p.n_actions, 1);
	assert_action(&p, 0, "register", "mc1");
	assert_string_equal(arg(&p.actions[0], "address"), "10.60.0.5");
	assert_int_equal(json_integer_value(json_object_get(p.actions[0].args, "port")), 25565);
	assert_cond(&p, COND_FALSE, "Registering");
	plan_clear(&p);
}

/* R1 */
static void plan__registered_as_wanted__nothing(void **state)
{
	(void)state;
	VelocityServer l[] = {vs("lobby", "127.0.0.1", 25566), vs("MC1", "10.60.0.5", 25565)};
	PxOp reg = op(7, JOURNAL_STEP_DONE, "mc1", "10.60.0.5", 25565);
	PxInput in = base(l, 2);
	in.reg = &reg;
	Plan p = run(&in);
	assert_int_equal(p.n_actions, 0);
	assert_cond(&p, COND_TRUE, "Registered");
	assert_int_equal(p.requeue_after_ms, 0);
	plan_clear(&p);
}

/* R3: Velocity restarted and forgot every registration. */
static void plan__velocity_restarted__reregisters(void **state)
{
	(void)state;
	VelocityServer l[] = {vs("lobby", "127.0.0.1", 25566)};
	PxOp reg = op(7, JOURNAL_STEP_DONE, "mc1", "10.60.0.5", 25565);
	PxInput in = base(l, 1);
	in.reg = &reg;
	Plan p = run(&in);
	assert_int_equal(p.n_actions, 1);
	assert_action(&p, 0, "register", "mc1");
	assert_cond(&p, COND_FALSE, "Registering");
	plan_clear(&p);
}

/* C1 + R3: the container got another address. */
static void plan__address_changed__unregister_then_register(void **state)
{
	(void)state;
	VelocityServer l[] = {vs("mc1", "10.60.0.9", 25565)};
	PxOp reg = op(7, JOURNAL_STEP_DONE, "mc1", "10.60.0.9", 25565);
	PxInput in = base(l, 1);
	in.reg = &reg;
	Plan p = run(&in);
	assert_int_equal(p.n_actions, 2);
	assert_action(&p, 0, "unregister", "mc1");
	assert_action(&p, 1, "register", "mc1");
	assert_string_equal(arg(&p.actions[1], "address"), "10.60.0.5");
	assert_cond(&p, COND_FALSE, "Unregistering");
	plan_clear(&p);
}

/* R2: a static entry (velocity.toml) or a hand registration holds our
 * hostname: reported, never touched. */
static void plan__name_held_by_foreign_registration__conflict_untouched(void **state)
{
	(void)state;
	VelocityServer l[] = {vs("lobby", "127.0.0.1", 25566)};
	PxInput in = base(l, 1);
	in.hostname = "LOBBY";
	Plan p = run(&in);
	assert_int_equal(p.n_actions, 0);
	assert_cond(&p, COND_FALSE, "Conflict");
	plan_clear(&p);
	/* Also when the server is deleted: nothing of the lobby is touched. */
	in.deleting = true;
	p = run(&in);
	assert_int_equal(p.n_actions, 0);
	assert_cond(&p, COND_TRUE, "Unregistered");
	plan_clear(&p);
}

/* W3 with C1 */
static void plan__stopped__unregisters_owned(void **state)
{
	(void)state;
	VelocityServer l[] = {vs("lobby", "127.0.0.1", 25566), vs("mc1", "10.60.0.5", 25565)};
	PxOp reg = op(7, JOURNAL_STEP_DONE, "mc1", "10.60.0.5", 25565);
	PxInput in = base(l, 2);
	in.reg = &reg;
	in.running = false;
	Plan p = run(&in);
	assert_int_equal(p.n_actions, 1);
	assert_action(&p, 0, "unregister", "mc1");
	assert_cond(&p, COND_FALSE, "Unregistering");
	plan_clear(&p);
	/* Once gone: True Stopped, nothing to do. */
	VelocityServer l2[] = {vs("lobby", "127.0.0.1", 25566)};
	PxOp un = op(8, JOURNAL_STEP_DONE, "mc1", NULL, 0);
	in.listed = l2;
	in.n_listed = 1;
	in.unreg = &un;
	p = run(&in);
	assert_int_equal(p.n_actions, 0);
	assert_cond(&p, COND_TRUE, "Stopped");
	plan_clear(&p);
}

/* W2 */
static void plan__not_publishing__unregisters_then_not_applicable(void **state)
{
	(void)state;
	VelocityServer l[] = {vs("mc1", "10.60.0.5", 25565)};
	PxOp reg = op(7, JOURNAL_STEP_DONE, "mc1", "10.60.0.5", 25565);
	PxInput in = base(l, 1);
	in.reg = &reg;
	in.publish = false;
	Plan p = run(&in);
	assert_int_equal(p.n_actions, 1);
	assert_action(&p, 0, "unregister", "mc1");
	assert_cond(&p, COND_FALSE, "Unregistering");
	plan_clear(&p);
	in.listed = NULL;
	in.n_listed = 0;
	p = run(&in);
	assert_int_equal(p.n_actions, 0);
	assert_cond(&p, COND_TRUE, "NotApplicable");
	plan_clear(&p);
}

/* W2: a registration under our name that the journal does not know is not
 * ours: never unregistered. */
static void plan__not_owned__never_unregistered(void **state)
{
	(void)state;
	VelocityServer l[] = {vs("mc1", "10.60.0.5", 25565)};
	PxInput in = base(l, 1);
	in.publish = false;
	Plan p = run(&in);
	assert_int_equal(p.n_actions, 0);
	assert_cond(&p, COND_TRUE, "NotApplicable");
	plan_clear(&p);
	/* A register that failed (refused) owns nothing either. */
	PxOp reg = op(7, JOURNAL_STEP_FAILED, "mc1", "10.60.0.5", 25565);
	in.reg = &reg;
	p = run(&in);
	assert_int_equal(p.n_actions, 0);
	plan_clear(&p);
	/* Unregistered since (done): not ours any more. */
	PxOp reg2 = op(7, JOURNAL_STEP_DONE, "mc1", "10.60.0.5", 25565);
	PxOp un = op(9, JOURNAL_STEP_DONE, "MC1", NULL, 0);
	in.reg = &reg2;
	in.unreg = &un;
	p = run(&in);
	assert_int_equal(p.n_actions, 0);
	plan_clear(&p);
}

/* W1: the finalizer. */
static void plan__deleting__unregisters_then_done(void **state)
{
	(void)state;
	VelocityServer l[] = {vs("lobby", "127.0.0.1", 25566), vs("Mc1", "10.60.0.5", 25565)};
	PxOp reg = op(7, JOURNAL_STEP_DONE, "mc1", "10.60.0.5", 25565);
	PxInput in = base(l, 2);
	in.reg = &reg;
	in.deleting = true;
	Plan p = run(&in);
	assert_int_equal(p.n_actions, 1);
	assert_action(&p, 0, "unregister", "mc1");
	assert_cond(&p, COND_FALSE, "Deleting");
	plan_clear(&p);
	in.n_listed = 1; /* only the lobby left */
	p = run(&in);
	assert_int_equal(p.n_actions, 0); /* finalizer done */
	assert_cond(&p, COND_TRUE, "Unregistered");
	plan_clear(&p);
}

/* W4 */
static void plan__no_allocation__waits(void **state)
{
	(void)state;
	PxInput in = base(NULL, 0);
	in.ip = NULL;
	Plan p = run(&in);
	assert_int_equal(p.n_actions, 0);
	assert_cond(&p, COND_FALSE, "WaitingForContainer");
	assert_int_equal(p.requeue_after_ms, in.settings.wait_requeue_ms);
	plan_clear(&p);
}

/* W5 */
static void plan__agent_not_ready__waits_without_registering(void **state)
{
	(void)state;
	PxInput in = base(NULL, 0);
	in.agent_ready = false;
	in.agent_since_ms = NOW - 1000;
	Plan p = run(&in);
	assert_int_equal(p.n_actions, 0);
	assert_cond(&p, COND_FALSE, "WaitingForAgent");
	assert_int_equal(p.requeue_after_ms, in.settings.wait_requeue_ms);
	plan_clear(&p);
}

/* R1 within the grace, then W5 + C1 after it. */
static void plan__agent_unready_within_grace__stays_registered(void **state)
{
	(void)state;
	VelocityServer l[] = {vs("mc1", "10.60.0.5", 25565)};
	PxOp reg = op(7, JOURNAL_STEP_DONE, "mc1", "10.60.0.5", 25565);
	PxInput in = base(l, 1);
	in.reg = &reg;
	in.agent_ready = false;
	in.agent_since_ms = NOW - 20000;
	Plan p = run(&in);
	assert_int_equal(p.n_actions, 0);
	assert_cond(&p, COND_TRUE, "Registered");
	assert_int_equal(p.requeue_after_ms, in.settings.unready_grace_ms - 20000);
	plan_clear(&p);

	in.agent_since_ms = NOW - in.settings.unready_grace_ms;
	p = run(&in);
	assert_int_equal(p.n_actions, 1);
	assert_action(&p, 0, "unregister", "mc1");
	assert_cond(&p, COND_FALSE, "Unregistering");
	plan_clear(&p);

	/* An unknown transition time is past the grace. */
	in.agent_since_ms = 0;
	p = run(&in);
	assert_int_equal(p.n_actions, 1);
	plan_clear(&p);
}

/* J1: a register whose reply was lost but which landed. */
static void plan__lost_register_reply_landed__settled_done(void **state)
{
	(void)state;
	VelocityServer l[] = {vs("mc1", "10.60.0.5", 25565)};
	PxOp reg = op(7, JOURNAL_STEP_CALL, "mc1", "10.60.0.5", 25565);
	PxInput in = base(l, 1);
	in.reg = &reg;
	Plan p = run(&in);
	assert_int_equal(p.n_actions, 1);
	assert_settle(&p, 0, "settle-register", 7, "done");
	assert_string_equal(arg(&p.actions[0], "handle"), "mc1");
	assert_cond(&p, COND_TRUE, "Registered");
	plan_clear(&p);
}

/* R3 resumes an open register that did not land (J2 does not apply). */
static void plan__open_register_not_landed__resumed(void **state)
{
	(void)state;
	PxOp reg = op(7, JOURNAL_STEP_INTENT, "mc1", "10.60.0.5", 25565);
	PxInput in = base(NULL, 0);
	in.reg = &reg;
	Plan p = run(&in);
	assert_int_equal(p.n_actions, 1);
	assert_action(&p, 0, "register", "mc1");
	plan_clear(&p);
}

/* J2: an open register that did not land and is no longer wanted. */
static void plan__open_register_no_longer_wanted__settled_failed(void **state)
{
	(void)state;
	PxOp reg = op(7, JOURNAL_STEP_CALL, "mc1", "10.60.0.9", 25565);
	PxInput in = base(NULL, 0);
	in.reg = &reg;
	Plan p = run(&in);
	assert_int_equal(p.n_actions, 2);
	assert_settle(&p, 0, "settle-register", 7, "failed");
	assert_action(&p, 1, "register", "mc1");
	assert_string_equal(arg(&p.actions[1], "address"), "10.60.0.5");
	plan_clear(&p);
	/* ... and when the server stopped meanwhile. */
	in.running = false;
	p = run(&in);
	assert_int_equal(p.n_actions, 1);
	assert_settle(&p, 0, "settle-register", 7, "failed");
	assert_cond(&p, COND_TRUE, "Stopped");
	plan_clear(&p);
}

/* J3: an unregister whose reply was lost, the name is gone. */
static void plan__lost_unregister_reply__settled_done(void **state)
{
	(void)state;
	PxOp reg = op(7, JOURNAL_STEP_DONE, "mc1", "10.60.0.5", 25565);
	PxOp un = op(8, JOURNAL_STEP_CALL, "mc1", NULL, 0);
	PxInput in = base(NULL, 0);
	in.reg = &reg;
	in.unreg = &un;
	in.running = false;
	Plan p = run(&in);
	assert_int_equal(p.n_actions, 1);
	assert_settle(&p, 0, "settle-unregister", 8, "done");
	assert_cond(&p, COND_TRUE, "Stopped");
	plan_clear(&p);
}

/* C1 resumes an open unregister whose name is still listed. */
static void plan__open_unregister_still_listed__resumed(void **state)
{
	(void)state;
	VelocityServer l[] = {vs("mc1", "10.60.0.5", 25565)};
	PxOp reg = op(7, JOURNAL_STEP_DONE, "mc1", "10.60.0.5", 25565);
	PxOp un = op(8, JOURNAL_STEP_INTENT, "mc1", NULL, 0);
	PxInput in = base(l, 1);
	in.reg = &reg;
	in.unreg = &un;
	in.running = false;
	Plan p = run(&in);
	assert_int_equal(p.n_actions, 1);
	assert_action(&p, 0, "unregister", "mc1");
	plan_clear(&p);
}

/* J4: an open unregister whose name is wanted again as listed. */
static void plan__open_unregister_wanted_again__superseded(void **state)
{
	(void)state;
	VelocityServer l[] = {vs("mc1", "10.60.0.5", 25565)};
	PxOp reg = op(7, JOURNAL_STEP_DONE, "mc1", "10.60.0.5", 25565);
	PxOp un = op(8, JOURNAL_STEP_INTENT, "mc1", NULL, 0);
	PxInput in = base(l, 1);
	in.reg = &reg;
	in.unreg = &un;
	Plan p = run(&in);
	assert_int_equal(p.n_actions, 1);
	assert_settle(&p, 0, "settle-unregister", 8, "failed");
	assert_cond(&p, COND_TRUE, "Registered");
	plan_clear(&p);
}

/* C1: a name the server had before (hostname changed) is removed, the new
 * one registered. */
static void plan__hostname_changed__old_name_unregistered(void **state)
{
	(void)state;
	VelocityServer l[] = {vs("old-name", "10.60.0.5", 25565)};
	PxOp reg = op(7, JOURNAL_STEP_DONE, "old-name", "10.60.0.5", 25565);
	PxInput in = base(l, 1);
	in.reg = &reg;
	Plan p = run(&in);
	assert_int_equal(p.n_actions, 2);
	assert_action(&p, 0, "unregister", "old-name");
	assert_action(&p, 1, "register", "mc1");
	plan_clear(&p);
}

/* C1: an unregister the bridge refused (failed) still owns the name. */
static void plan__failed_unregister__retried(void **state)
{
	(void)state;
	VelocityServer l[] = {vs("mc1", "10.60.0.5", 25565)};
	PxOp reg = op(7, JOURNAL_STEP_DONE, "mc1", "10.60.0.5", 25565);
	PxOp un = op(8, JOURNAL_STEP_FAILED, "mc1", NULL, 0);
	PxInput in = base(l, 1);
	in.reg = &reg;
	in.unreg = &un;
	in.deleting = true;
	Plan p = run(&in);
	assert_int_equal(p.n_actions, 1);
	assert_action(&p, 0, "unregister", "mc1");
	plan_clear(&p);
}

static void plan__bad_input__einval(void **state)
{
	(void)state;
	Plan p;
	memset(&p, 0, sizeof p);
	assert_int_equal(recon_proxy_plan_input(NULL, &p), -EINVAL);
	PxInput in = base(NULL, 3);
	assert_int_equal(recon_proxy_plan_input(&in, &p), -EINVAL);
}

/* --- the glue ------------------------------------------------------------------------------ */

static void agent_ready__from_conditions(void **state)
{
	(void)state;
	json_error_t e;
	json_t *c = json_loads(
	    "[{\"type\":\"ContainerReady\",\"status\":\"True\",\"lastTransitionTime\":"
	    "\"2024-08-06T09:00:00.000Z\"},{\"type\":\"AgentReady\",\"status\":\"False\","
	    "\"reason\":\"Crashed\",\"lastTransitionTime\":\"2024-08-06T10:00:00.250Z\"}]",
	    0, &e);
	assert_non_null(c);
	bool ready = true;
	int64_t since = 0;
	recon_proxy_agent_ready(c, &ready, &since);
	assert_false(ready);
	assert_int_equal(since, NOW + 250);
	json_object_set_new(json_array_get(c, 1), "status", json_string("True"));
	json_object_set_new(json_array_get(c, 1), "lastTransitionTime",
	                    json_string("2024-08-06T12:00:00+02:00"));
	recon_proxy_agent_ready(c, &ready, &since);
	assert_true(ready);
	assert_int_equal(since, NOW);
	json_decref(c);
	recon_proxy_agent_ready(NULL, &ready, &since);
	assert_false(ready);
	assert_int_equal(since, 0);
}

static void key__address_made_safe(void **state)
{
	(void)state;
	char k[JOURNAL_KEY_MAX];
	assert_true(recon_proxy_key(UID, "register", "10.60.0.5", 2, k, sizeof k) > 0);
	assert_string_equal(k, UID ":register:10.60.0.5:2");
	assert_true(recon_proxy_key(UID, "register", "fd00::5", 1, k, sizeof k) > 0);
	assert_string_equal(k, UID ":register:fd00--5:1");
	assert_true(recon_proxy_key(UID, "unregister", "mc-paper-5001", 1, k, sizeof k) > 0);
	assert_string_equal(k, UID ":unregister:mc-paper-5001:1");
	assert_int_equal(recon_proxy_key(UID, "register", "", 1, k, sizeof k), -EINVAL);
}

static void op_from_journal__payload_read(void **state)
{
	(void)state;
	JournalOp j = {.id = 5, .step = JOURNAL_STEP_HANDLE};
	j.payload = json_pack("{s:s, s:s, s:i}", "server_name", "mc1", "address", "10.60.0.5",
	                      "port", 25565);
	PxOp o;
	recon_proxy_op_from_journal(&j, &o);
	assert_int_equal(o.id, 5);
	assert_int_equal(o.step, JOURNAL_STEP_HANDLE);
	assert_string_equal(o.name, "mc1");
	assert_string_equal(o.address, "10.60.0.5");
	assert_int_equal(o.port, 25565);
	json_decref(j.payload);
}

/* The reconciler's plan on a RuntimeServer as the runtime hands it over. */
static void recon__plan_reads_server_row(void **state)
{
	(void)state;
	assert_string_equal(recon_proxy.name, "proxy");
	assert_int_equal(recon_proxy.order, 40);
	assert_true(recon_proxy.uses_finalizer);
	assert_int_equal(recon_proxy.conditions[0], COND_PROXY_REGISTERED);
	assert_int_equal(recon_proxy.conditions[1], _COND_TYPE_MAX);
	Config cfg = {0};
	assert_false(recon_proxy.enabled(&cfg));
	cfg.velocity.enabled = true;
	assert_true(recon_proxy.enabled(&cfg));

	json_error_t e;
	char *fin[] = {NULL};
	RuntimeServer srv = {
	    .uid = UID,
	    .kind = "GameServer",
	    .name = "survival",
	    .spec = json_loads("{\"power\":\"running\"}", 0, &e), /* publish by default */
	    .conditions = json_loads("[{\"type\":\"AgentReady\",\"status\":\"True\","
	                             "\"lastTransitionTime\":\"2024-08-06T10:00:00Z\"}]",
	                             0, &e),
	    .finalizers = fin,
	    .ip = "10.60.0.5",
	    .hostname = "survival-01",
	};
	ProxySnapshot snap = {0};
	ProxyObs obs = {.now_ms = NOW};
	Plan p;
	memset(&p, 0, sizeof p);
	/* No snapshot: the listing is unknown, no plan. */
	assert_true(recon_proxy.plan(&cfg, &srv, NULL, &obs, &p) < 0);
	assert_int_equal(recon_proxy.plan(&cfg, &srv, &snap, &obs, &p), 0);
	assert_int_equal(p.n_actions, 1);
	assert_action(&p, 0, "register", "survival-01");
	plan_clear(&p);

	/* publish false in the spec. */
	json_object_set_new(srv.spec, "publish", json_false());
	assert_int_equal(recon_proxy.plan(&cfg, &srv, &snap, &obs, &p), 0);
	assert_int_equal(p.n_actions, 0);
	assert_cond(&p, COND_TRUE, "NotApplicable");
	plan_clear(&p);

	/* power stopped. */
	json_object_set_new(srv.spec, "publish", json_true());
	json_object_set_new(srv.spec, "power", json_string("stopped"));
	assert_int_equal(recon_proxy.plan(&cfg, &srv, &snap, &obs, &p), 0);
	assert_cond(&p, COND_TRUE, "Stopped");
	plan_clear(&p);

	/* finalize: owned and listed -> unregister. */
	VelocityServer l[] = {vs("survival-01", "10.60.0.5", 25565)};
	snap.servers.items = l;
	snap.servers.n = 1;
	obs.has_reg = true;
	obs.reg = op(3, JOURNAL_STEP_DONE, "survival-01", "10.60.0.5", 25565);
	assert_int_equal(recon_proxy.finalize(&cfg, &srv, &snap, &obs, &p), 0);
	assert_int_equal(p.n_actions, 1);
	assert_action(&p, 0, "unregister", "survival-01");
	plan_clear(&p);

	/* A DevServer. */
	srv.kind = "DevServer";
	assert_int_equal(recon_proxy.plan(&cfg, &srv, &snap, &obs, &p), 0);
	assert_int_equal(p.n_actions, 0);
	assert_cond(&p, COND_TRUE, "NotApplicable");
	plan_clear(&p);
	json_decref(srv.spec);
	json_decref(srv.conditions);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(plan__devserver__not_applicable),
	    cmocka_unit_test(plan__agent_ready_not_listed__registers),
	    cmocka_unit_test(plan__registered_as_wanted__nothing),
	    cmocka_unit_test(plan__velocity_restarted__reregisters),
	    cmocka_unit_test(plan__address_changed__unregister_then_register),
	    cmocka_unit_test(plan__name_held_by_foreign_registration__conflict_untouched),
	    cmocka_unit_test(plan__stopped__unregisters_owned),
	    cmocka_unit_test(plan__not_publishing__unregisters_then_not_applicable),
	    cmocka_unit_test(plan__not_owned__never_unregistered),
	    cmocka_unit_test(plan__deleting__unregisters_then_done),
	    cmocka_unit_test(plan__no_allocation__waits),
	    cmocka_unit_test(plan__agent_not_ready__waits_without_registering),
	    cmocka_unit_test(plan__agent_unready_within_grace__stays_registered),
	    cmocka_unit_test(plan__lost_register_reply_landed__settled_done),
	    cmocka_unit_test(plan__open_register_not_landed__resumed),
	    cmocka_unit_test(plan__open_register_no_longer_wanted__settled_failed),
	    cmocka_unit_test(plan__lost_unregister_reply__settled_done),
	    cmocka_unit_test(plan__open_unregister_still_listed__resumed),
	    cmocka_unit_test(plan__open_unregister_wanted_again__superseded),
	    cmocka_unit_test(plan__hostname_changed__old_name_unregistered),
	    cmocka_unit_test(plan__failed_unregister__retried),
	    cmocka_unit_test(plan__bad_input__einval),
	    cmocka_unit_test(agent_ready__from_conditions),
	    cmocka_unit_test(key__address_made_safe),
	    cmocka_unit_test(op_from_journal__payload_read),
	    cmocka_unit_test(recon__plan_reads_server_row),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
