/* Unit tests for the agent reconciler's pure plan (reconcilers/agent.c):
 * one test per row of its decision table (row ids in comments), the
 * payload built from a spec, the waiting delays, journal rows read into
 * AgOps, and the reconciler table. No I/O, no clock: now is a constant. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "reconcilers/agent.h"

#define UID "3f2a9c1e-5b7d-4e8f-9a0b-1c2d3e4f5a6b"
#define NOW 1722938400000LL /* 2024-08-06T10:00:00Z */
#define OLD_HASH "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"

static json_t *g_payload;
static char g_hash[65];

static int group_setup(void **state)
{
	(void)state;
	json_t *spec = json_pack("{s:s, s:s, s:s, s:{s:i}}", "game", "minecraft", "variant",
	                         "paper", "version", "1.21.4", "resources", "memoryMiB", 4096);
	char err[128];
	int r = recon_agent_payload("GameServer", spec, 5000, &g_payload, g_hash, err, sizeof err);
	json_decref(spec);
	return r;
}

static int group_teardown(void **state)
{
	(void)state;
	json_decref(g_payload);
	return 0;
}

static AgOp prov_op(int64_t id, JournalStep step, const char *hash, const char *prev)
{
	AgOp o = {.id = id, .step = step, .attempt = 1};
	snprintf(o.hash, sizeof o.hash, "%s", hash);
	snprintf(o.prev, sizeof o.prev, "%s", prev ? prev : "");
	if (!journal_step_is_open(step))
		o.completed_ms = NOW - 60000;
	return o;
}

static AgentStatus status(AgentState s, bool complete)
{
	AgentStatus st = {.state = s, .provisioning_complete = complete};
	snprintf(st.raw_state, sizeof st.raw_state, "%s", agentapi_state_to_string(s));
	return st;
}

/* A running GameServer whose agent runs payload D (delivered) and is ready. */
static AgInput base(const AgOp *prov)
{
	AgInput in = {
	    .uid = UID,
	    .power_running = true,
	    .container_running = true,
	    .ip = "10.60.0.5",
	    .payload = g_payload,
	    .hash = g_hash,
	    .codeserver_want = true,
	    .probed = true,
	    .healthy = true,
	    .status_ok = true,
	    .status = status(AGENT_STATE_RUNNING, true),
	    .ready_ok = true,
	    .ready = {.ready = true, .source = "minecraft_ping"},
	    .prov = prov,
	    .stored_reason = "Ready",
	    .now_ms = NOW,
	    .db_now_ms = NOW,
	};
	recon_agent_settings_init(&in.settings);
	return in;
}

static Plan run(const AgInput *in)
{
	Plan p;
	memset(&p, 0, sizeof p);
	assert_int_equal(recon_agent_plan_input(in, &p), 0);
	return p;
}

static const Action *find(const Plan *p, const char *name)
{
	for (size_t i = 0; i < p->n_actions; i++)
		if (strcmp(p->actions[i].name, name) == 0)
			return &p->actions[i];
	return NULL;
}

static size_t mutating(const Plan *p)
{
	size_t n = 0;
	for (size_t i = 0; i < p->n_actions; i++)
		n += p->actions[i].mutating;
	return n;
}

static void cond_is(const Plan *p, CondType t, CondStatus st, const char *reason)
{
	const CondReport *c = &p->conditions[t];
	assert_true(c->set);
	if (c->status != st || strcmp(c->reason, reason) != 0)
		fail_msg("%s: got %s/%s (%s), want %s/%s", cond_type_name(t),
		         cond_status_name(c->status), c->reason, c->message, cond_status_name(st),
		         reason);
}

static const char *arg_str(const Action *a, const char *k)
{
	return json_string_value(json_object_get(a->args, k));
}

static int64_t arg_int(const Action *a, const char *k)
{
	return json_integer_value(json_object_get(a->args, k));
}

/* --- N, W, X ------------------------------------------------------------------------------- */

static void plan__deleting__nothing(void **state) /* N1 */
{
	(void)state;
	AgOp p = prov_op(1, JOURNAL_STEP_DONE, g_hash, NULL);
	AgInput in = base(&p);
	in.deleting = true;
	Plan pl = run(&in);
	assert_int_equal(pl.n_actions, 0);
	cond_is(&pl, COND_AGENT_READY, COND_FALSE, "Deleting");
	cond_is(&pl, COND_PROVISIONED, COND_FALSE, "Deleting");
	plan_clear(&pl);
}

static void plan__power_stopped__true_stopped_no_calls(void **state) /* N2 */
{
	(void)state;
	AgInput in = base(NULL);
	in.power_running = false;
	in.probed = in.healthy = in.status_ok = false;
	Plan pl = run(&in);
	assert_int_equal(pl.n_actions, 0);
	cond_is(&pl, COND_AGENT_READY, COND_TRUE, "Stopped");
	cond_is(&pl, COND_PROVISIONED, COND_TRUE, "Stopped");
	assert_int_equal(pl.requeue_after_ms, 0);
	plan_clear(&pl);
}

static void plan__container_not_running__waits_growing(void **state) /* W1 */
{
	(void)state;
	AgInput in = base(NULL);
	in.container_running = false;
	in.probed = false;
	in.stored_reason = "WaitingForContainer";
	int64_t prev = 0;
	const int64_t waited[] = {0, 2000, 10000, 60000, 3600000};
	const int64_t want[] = {500, 1000, 5000, 15000, 15000};
	for (size_t i = 0; i < sizeof waited / sizeof waited[0]; i++) {
		in.waiting_since_ms = waited[i] ? NOW - waited[i] : 0;
		Plan pl = run(&in);
		assert_int_equal(pl.n_actions, 0);
		cond_is(&pl, COND_AGENT_READY, COND_FALSE, "WaitingForContainer");
		cond_is(&pl, COND_PROVISIONED, COND_FALSE, "WaitingForContainer");
		assert_int_equal(pl.requeue_after_ms, want[i]);
		assert_true(pl.requeue_after_ms >= prev);
		prev = pl.requeue_after_ms;
		plan_clear(&pl);
	}
	/* no address: the same */
	in.container_running = true;
	in.ip = NULL;
	Plan pl = run(&in);
	cond_is(&pl, COND_AGENT_READY, COND_FALSE, "WaitingForContainer");
	assert_int_equal(pl.n_actions, 0);
	plan_clear(&pl);
}

static void plan__agent_unreachable__condition_event_once(void **state) /* W2 */
{
	(void)state;
	AgOp p = prov_op(1, JOURNAL_STEP_DONE, g_hash, NULL);
	AgInput in = base(&p);
	in.healthy = false;
	in.status_ok = false;
	in.health_error = "Connection reset by peer";
	Plan pl = run(&in); /* it was Ready: one event */
	cond_is(&pl, COND_AGENT_READY, COND_FALSE, "Unreachable");
	cond_is(&pl, COND_PROVISIONED, COND_UNKNOWN, "Unreachable");
	assert_non_null(strstr(pl.conditions[COND_AGENT_READY].message, "Connection reset"));
	assert_int_equal(mutating(&pl), 0);
	const Action *ev = find(&pl, "event");
	assert_non_null(ev);
	assert_string_equal(arg_str(ev, "reason"), "AgentUnreachable");
	assert_true(pl.requeue_after_ms > 0);
	plan_clear(&pl);
	in.stored_reason = "Unreachable"; /* next pass: no new event */
	in.waiting_since_ms = NOW - 20000;
	pl = run(&in);
	assert_int_equal(pl.n_actions, 0);
	assert_int_equal(pl.requeue_after_ms, 10000);
	plan_clear(&pl);
}

static void plan__was_ready_one_probe_failed__stays_ready_rechecks(void **state) /* W0 */
{
	(void)state;
	AgOp p = prov_op(1, JOURNAL_STEP_DONE, g_hash, NULL);
	AgInput in = base(&p);
	in.healthy = false;
	in.status_ok = false;
	in.health_error = "Connection reset by peer";
	in.failing = true;
	in.failing_for_ms = 0;
	Plan pl = run(&in);
	assert_int_equal(pl.n_actions, 0); /* no event, nothing */
	cond_is(&pl, COND_AGENT_READY, COND_TRUE, "Ready");
	assert_non_null(strstr(pl.conditions[COND_AGENT_READY].message, "re-checking"));
	cond_is(&pl, COND_PROVISIONED, COND_TRUE, "Provisioned");
	assert_int_equal(pl.requeue_after_ms, 1000);
	plan_clear(&pl);
	/* 2.5 s into the failures: re-check when the grace ends */
	in.failing_for_ms = 2500;
	pl = run(&in);
	cond_is(&pl, COND_AGENT_READY, COND_TRUE, "Ready");
	assert_int_equal(pl.requeue_after_ms, 500);
	plan_clear(&pl);
	/* past the grace: Unreachable with its event (W2) */
	in.failing_for_ms = 3000;
	pl = run(&in);
	cond_is(&pl, COND_AGENT_READY, COND_FALSE, "Unreachable");
	assert_non_null(find(&pl, "event"));
	plan_clear(&pl);
	/* /status failing, /health fine: the same */
	in.healthy = true;
	in.status_error = "HTTP 500: boom";
	in.failing_for_ms = 100;
	pl = run(&in);
	cond_is(&pl, COND_AGENT_READY, COND_TRUE, "Ready");
	plan_clear(&pl);
	/* /ready unanswered while running */
	in.status_ok = true;
	in.ready_ok = false;
	in.ready_error = "Operation timed out";
	pl = run(&in);
	cond_is(&pl, COND_AGENT_READY, COND_TRUE, "Ready");
	assert_non_null(strstr(pl.conditions[COND_AGENT_READY].message, "timed out"));
	plan_clear(&pl);
	/* not Ready before: no grace */
	in.stored_reason = "Starting";
	in.healthy = false;
	pl = run(&in);
	cond_is(&pl, COND_AGENT_READY, COND_FALSE, "Unreachable");
	plan_clear(&pl);
}

static void plan__status_unavailable__unknown(void **state) /* W3 */
{
	(void)state;
	AgInput in = base(NULL);
	in.status_ok = false;
	in.status_error = "malformed GET /status response";
	Plan pl = run(&in);
	assert_int_equal(pl.n_actions, 0); /* decides nothing, not even a POST */
	cond_is(&pl, COND_AGENT_READY, COND_UNKNOWN, "StatusUnavailable");
	cond_is(&pl, COND_PROVISIONED, COND_UNKNOWN, "StatusUnavailable");
	assert_true(pl.requeue_after_ms > 0);
	plan_clear(&pl);
}

static void plan__invalid_spec__failed(void **state) /* X1 */
{
	(void)state;
	AgInput in = base(NULL);
	in.payload = NULL;
	in.hash = NULL;
	in.payload_error = "cannot build the agent payload";
	Plan pl = run(&in);
	assert_int_equal(pl.n_actions, 0);
	assert_true(pl.failed);
	cond_is(&pl, COND_PROVISIONED, COND_FALSE, "InvalidSpec");
	plan_clear(&pl);
}

/* --- P: provisioning -------------------------------------------------------------------------- */

static void plan__new_container__provisions(void **state) /* P7 */
{
	(void)state;
	AgInput in = base(NULL);
	in.status = status(AGENT_STATE_IDLE, false);
	in.ready_ok = false;
	in.stored_reason = "WaitingForContainer";
	Plan pl = run(&in);
	assert_int_equal(pl.n_actions, 1);
	const Action *a = find(&pl, "provision");
	assert_non_null(a);
	assert_true(a->mutating);
	assert_string_equal(a->system, "agent");
	assert_string_equal(arg_str(a, "hash"), g_hash);
	assert_string_equal(arg_str(a, "prev"), "");
	assert_string_equal(arg_str(a, "why"), "new");
	assert_true(json_equal(json_object_get(a->args, "payload"), g_payload));
	cond_is(&pl, COND_AGENT_READY, COND_FALSE, "Provisioning");
	cond_is(&pl, COND_PROVISIONED, COND_FALSE, "Provisioning");
	plan_clear(&pl);
	/* whatever the agent reports: nothing of ours was delivered here */
	in.status = status(AGENT_STATE_RUNNING, true);
	pl = run(&in);
	assert_non_null(find(&pl, "provision"));
	plan_clear(&pl);
}

static void plan__hash_unchanged__no_post(void **state) /* S2 */
{
	(void)state;
	AgOp p = prov_op(7, JOURNAL_STEP_DONE, g_hash, NULL);
	AgInput in = base(&p);
	Plan pl = run(&in);
	assert_int_equal(pl.n_actions, 0);
	cond_is(&pl, COND_AGENT_READY, COND_TRUE, "Ready");
	assert_non_null(strstr(pl.conditions[COND_AGENT_READY].message, "minecraft_ping"));
	cond_is(&pl, COND_PROVISIONED, COND_TRUE, "Provisioned");
	assert_int_equal(pl.requeue_after_ms, 0);
	plan_clear(&pl);
}

static void plan__hash_changed__provisions_again(void **state) /* P7 */
{
	(void)state;
	AgOp p = prov_op(7, JOURNAL_STEP_DONE, OLD_HASH, NULL);
	AgInput in = base(&p);
	Plan pl = run(&in);
	assert_int_equal(pl.n_actions, 1);
	const Action *a = find(&pl, "provision");
	assert_non_null(a);
	assert_string_equal(arg_str(a, "prev"), OLD_HASH);
	assert_string_equal(arg_str(a, "why"), "changed");
	plan_clear(&pl);
	/* a refused old payload never landed: prev is what was before it */
	p = prov_op(7, JOURNAL_STEP_FAILED, OLD_HASH, "bbbb");
	pl = run(&in);
	a = find(&pl, "provision");
	assert_non_null(a);
	assert_string_equal(arg_str(a, "prev"), "bbbb");
	plan_clear(&pl);
}

static void plan__open_superseded__settled_then_provisions(void **state) /* P1 */
{
	(void)state;
	AgOp p = prov_op(9, JOURNAL_STEP_CALL, OLD_HASH, "");
	AgInput in = base(&p);
	Plan pl = run(&in);
	assert_int_equal(pl.n_actions, 2);
	assert_string_equal(pl.actions[0].name, "settle-provision");
	assert_false(pl.actions[0].mutating);
	assert_int_equal(arg_int(&pl.actions[0], "op"), 9);
	assert_string_equal(arg_str(&pl.actions[0], "outcome"), "failed");
	assert_string_equal(pl.actions[1].name, "provision");
	/* the superseded one may have landed */
	assert_string_equal(arg_str(&pl.actions[1], "prev"), OLD_HASH);
	plan_clear(&pl);
}

static void plan__open_at_handle__settled_done(void **state) /* P2 */
{
	(void)state;
	AgOp p = prov_op(9, JOURNAL_STEP_HANDLE, g_hash, "");
	AgInput in = base(&p);
	in.status = status(AGENT_STATE_IDLE, false); /* whatever it says */
	Plan pl = run(&in);
	assert_int_equal(pl.n_actions, 1);
	assert_string_equal(pl.actions[0].name, "settle-provision");
	assert_string_equal(arg_str(&pl.actions[0], "outcome"), "done");
	assert_int_equal(mutating(&pl), 0);
	plan_clear(&pl);
}

static void plan__open_intent_agent_idle__resumes(void **state) /* P3 */
{
	(void)state;
	AgOp p = prov_op(9, JOURNAL_STEP_INTENT, g_hash, "");
	AgInput in = base(&p);
	in.status = status(AGENT_STATE_IDLE, false);
	Plan pl = run(&in);
	assert_int_equal(pl.n_actions, 1);
	const Action *a = find(&pl, "provision");
	assert_non_null(a);
	assert_string_equal(arg_str(a, "why"), "resume");
	assert_string_equal(arg_str(a, "prev"), "");
	plan_clear(&pl);
	/* step call (an unknown outcome) and idle: the same */
	p.step = JOURNAL_STEP_CALL;
	pl = run(&in);
	assert_non_null(find(&pl, "provision"));
	plan_clear(&pl);
}

static void plan__open_redelivery_running_complete__resumes(void **state) /* P3 */
{
	(void)state;
	AgOp p = prov_op(9, JOURNAL_STEP_CALL, g_hash, OLD_HASH);
	AgInput in = base(&p);
	Plan pl = run(&in); /* running, complete: the old payload or ours? post again */
	assert_int_equal(pl.n_actions, 1);
	const Action *a = find(&pl, "provision");
	assert_non_null(a);
	assert_string_equal(arg_str(a, "prev"), OLD_HASH);
	plan_clear(&pl);
}

static void plan__open_first_delivery_agent_busy__adopted(void **state) /* P4 */
{
	(void)state;
	AgOp p = prov_op(9, JOURNAL_STEP_INTENT, g_hash, "");
	AgInput in = base(&p);
	const AgentState states[] = {AGENT_STATE_INSTALLING, AGENT_STATE_STARTING,
	                             AGENT_STATE_RUNNING, AGENT_STATE_CRASHED};
	for (size_t i = 0; i < sizeof states / sizeof states[0]; i++) {
		in.status = status(states[i], states[i] == AGENT_STATE_RUNNING);
		Plan pl = run(&in);
		assert_int_equal(pl.n_actions, 1);
		assert_string_equal(pl.actions[0].name, "settle-provision");
		assert_string_equal(arg_str(&pl.actions[0], "outcome"), "done");
		assert_int_equal(mutating(&pl), 0);
		plan_clear(&pl);
	}
}

static void plan__open_redelivery_installing__adopted(void **state) /* P4 */
{
	(void)state;
	AgOp p = prov_op(9, JOURNAL_STEP_CALL, g_hash, OLD_HASH);
	AgInput in = base(&p);
	in.status = status(AGENT_STATE_INSTALLING, false);
	Plan pl = run(&in);
	assert_int_equal(pl.n_actions, 1);
	assert_string_equal(pl.actions[0].name, "settle-provision");
	plan_clear(&pl);
	in.status = status(AGENT_STATE_RUNNING, false); /* not complete: a config is in */
	pl = run(&in);
	assert_string_equal(pl.actions[0].name, "settle-provision");
	plan_clear(&pl);
}

static void plan__open_unknown_state__waits(void **state) /* S7 before P3/P4 */
{
	(void)state;
	AgOp p = prov_op(9, JOURNAL_STEP_INTENT, g_hash, "");
	AgInput in = base(&p);
	in.status = status(AGENT_STATE_UNKNOWN, false);
	snprintf(in.status.raw_state, sizeof in.status.raw_state, "hibernating");
	Plan pl = run(&in);
	assert_int_equal(pl.n_actions, 0);
	cond_is(&pl, COND_AGENT_READY, COND_UNKNOWN, "UnknownState");
	plan_clear(&pl);
}

static void plan__refused__backoff_then_retry(void **state) /* P5, P6 */
{
	(void)state;
	AgOp p = prov_op(9, JOURNAL_STEP_FAILED, g_hash, "");
	snprintf(p.error, sizeof p.error, "HTTP 400: bad payload");
	p.completed_ms = NOW - 3000; /* attempt 1: base 10 s */
	AgInput in = base(&p);
	in.status = status(AGENT_STATE_IDLE, false);
	Plan pl = run(&in);
	assert_int_equal(pl.n_actions, 0);
	cond_is(&pl, COND_PROVISIONED, COND_FALSE, "ConfigRejected");
	assert_non_null(strstr(pl.conditions[COND_PROVISIONED].message, "bad payload"));
	assert_int_equal(pl.requeue_after_ms, 7000);
	plan_clear(&pl);
	p.attempt = 3; /* 40 s after the third */
	p.completed_ms = NOW - 30000;
	pl = run(&in);
	assert_int_equal(pl.n_actions, 0);
	assert_int_equal(pl.requeue_after_ms, 10000);
	plan_clear(&pl);
	p.completed_ms = NOW - 40000;
	pl = run(&in);
	const Action *a = find(&pl, "provision");
	assert_non_null(a);
	assert_string_equal(arg_str(a, "why"), "retry");
	plan_clear(&pl);
}

static void plan__agent_idle__reprovisions(void **state) /* P8, P9 */
{
	(void)state;
	AgOp p = prov_op(9, JOURNAL_STEP_DONE, g_hash, "");
	p.completed_ms = NOW - 2000; /* within the 5 s grace */
	AgInput in = base(&p);
	in.status = status(AGENT_STATE_IDLE, false);
	in.ready_ok = false;
	Plan pl = run(&in);
	assert_int_equal(pl.n_actions, 0);
	cond_is(&pl, COND_PROVISIONED, COND_FALSE, "AgentIdle");
	assert_int_equal(pl.requeue_after_ms, 3000);
	plan_clear(&pl);

	p.completed_ms = NOW - 5000;
	pl = run(&in);
	assert_int_equal(pl.n_actions, 2);
	assert_string_equal(pl.actions[0].name, "event");
	assert_string_equal(arg_str(&pl.actions[0], "reason"), "AgentReset");
	assert_string_equal(arg_str(&pl.actions[0], "type"), "Warning");
	assert_string_equal(pl.actions[1].name, "provision");
	assert_string_equal(arg_str(&pl.actions[1], "prev"), g_hash);
	assert_string_equal(arg_str(&pl.actions[1], "why"), "agent idle");
	plan_clear(&pl);

	/* an agent that keeps dropping it is given longer each time */
	p.attempt = 4; /* 40 s */
	p.completed_ms = NOW - 30000;
	pl = run(&in);
	assert_int_equal(pl.n_actions, 0);
	assert_int_equal(pl.requeue_after_ms, 10000);
	plan_clear(&pl);
}

/* --- S: the delivered payload's state ------------------------------------------------------------- */

static void plan__installing__reports_step(void **state) /* S1 */
{
	(void)state;
	AgOp p = prov_op(9, JOURNAL_STEP_DONE, g_hash, "");
	AgInput in = base(&p);
	in.status = status(AGENT_STATE_INSTALLING, false);
	snprintf(in.status.install_step, sizeof in.status.install_step, "download_artifacts");
	in.ready_ok = false;
	in.stored_reason = "Provisioning";
	in.waiting_since_ms = NOW - 4000;
	Plan pl = run(&in);
	assert_int_equal(pl.n_actions, 0);
	cond_is(&pl, COND_AGENT_READY, COND_FALSE, "Installing");
	cond_is(&pl, COND_PROVISIONED, COND_FALSE, "Installing");
	assert_non_null(strstr(pl.conditions[COND_PROVISIONED].message, "download_artifacts"));
	assert_non_null(strstr(pl.conditions[COND_AGENT_READY].message, "download_artifacts"));
	assert_int_equal(pl.requeue_after_ms, 2000);
	plan_clear(&pl);
	in.status = status(AGENT_STATE_VERIFYING, false);
	pl = run(&in);
	cond_is(&pl, COND_AGENT_READY, COND_FALSE, "Installing");
	plan_clear(&pl);
}

static void plan__starting_after_reboot__provisioned_true(void **state) /* S1 */
{
	(void)state;
	AgOp p = prov_op(9, JOURNAL_STEP_DONE, g_hash, "");
	AgInput in = base(&p);
	in.status = status(AGENT_STATE_STARTING, true);
	snprintf(in.status.install_step, sizeof in.status.install_step, "start_server");
	Plan pl = run(&in);
	assert_int_equal(pl.n_actions, 0);
	cond_is(&pl, COND_AGENT_READY, COND_FALSE, "Starting");
	cond_is(&pl, COND_PROVISIONED, COND_TRUE, "Provisioned");
	plan_clear(&pl);
}

static void plan__running_not_ready__not_ready(void **state) /* S3 */
{
	(void)state;
	AgOp p = prov_op(9, JOURNAL_STEP_DONE, g_hash, "");
	AgInput in = base(&p);
	in.ready = (AgentReadiness){.ready = false, .reason = "server not ready (state starting)"};
	Plan pl = run(&in);
	assert_int_equal(pl.n_actions, 0);
	cond_is(&pl, COND_AGENT_READY, COND_FALSE, "NotReady");
	assert_non_null(strstr(pl.conditions[COND_AGENT_READY].message, "server not ready"));
	cond_is(&pl, COND_PROVISIONED, COND_TRUE, "Provisioned");
	assert_true(pl.requeue_after_ms > 0);
	plan_clear(&pl);
	/* /ready did not answer: still not ready, with its error */
	in.ready_ok = false;
	in.ready_error = "Operation timed out";
	pl = run(&in);
	cond_is(&pl, COND_AGENT_READY, COND_FALSE, "NotReady");
	assert_non_null(strstr(pl.conditions[COND_AGENT_READY].message, "timed out"));
	plan_clear(&pl);
}

static void plan__ready_transition__event_once(void **state) /* S2 */
{
	(void)state;
	AgOp p = prov_op(9, JOURNAL_STEP_DONE, g_hash, "");
	AgInput in = base(&p);
	in.stored_reason = "Starting";
	Plan pl = run(&in);
	assert_int_equal(pl.n_actions, 1);
	assert_string_equal(arg_str(&pl.actions[0], "reason"), "AgentReady");
	assert_int_equal(mutating(&pl), 0);
	plan_clear(&pl);
	in.stored_reason = "Crashed";
	pl = run(&in);
	assert_string_equal(arg_str(&pl.actions[0], "reason"), "AgentRecovered");
	plan_clear(&pl);
	in.stored_reason = "Ready";
	pl = run(&in);
	assert_int_equal(pl.n_actions, 0);
	plan_clear(&pl);
}

static void plan__agent_crashed__degraded_no_restart(void **state) /* S5 */
{
	(void)state;
	AgOp p = prov_op(9, JOURNAL_STEP_DONE, g_hash, "");
	AgInput in = base(&p);
	in.status = status(AGENT_STATE_CRASHED, true);
	in.status.crash_count = 3;
	snprintf(in.status.error, sizeof in.status.error, "server process exited");
	in.ready_ok = false;
	Plan pl = run(&in);
	assert_int_equal(mutating(&pl), 0); /* no POST /restart, no /config */
	assert_null(find(&pl, "provision"));
	assert_null(find(&pl, "agent-start"));
	const Action *ev = find(&pl, "event");
	assert_non_null(ev);
	assert_string_equal(arg_str(ev, "type"), "Warning");
	assert_string_equal(arg_str(ev, "reason"), "AgentCrashed");
	cond_is(&pl, COND_AGENT_READY, COND_FALSE, "Crashed");
	assert_non_null(strstr(pl.conditions[COND_AGENT_READY].message, "crash count 3"));
	assert_non_null(strstr(pl.conditions[COND_AGENT_READY].message, "server process exited"));
	cond_is(&pl, COND_PROVISIONED, COND_TRUE, "Provisioned");
	assert_int_equal(pl.requeue_after_ms, 15000);
	plan_clear(&pl);
	/* next pass (stored Crashed): nothing at all */
	in.stored_reason = "Crashed";
	pl = run(&in);
	assert_int_equal(pl.n_actions, 0);
	plan_clear(&pl);
	/* crashed before the install completed */
	in.status.provisioning_complete = false;
	pl = run(&in);
	cond_is(&pl, COND_PROVISIONED, COND_FALSE, "InstallFailed");
	assert_int_equal(pl.n_actions, 0);
	plan_clear(&pl);
}

static void plan__agent_error__reported(void **state) /* S6 */
{
	(void)state;
	AgOp p = prov_op(9, JOURNAL_STEP_DONE, g_hash, "");
	AgInput in = base(&p);
	in.status = status(AGENT_STATE_ERROR, false);
	snprintf(in.status.error, sizeof in.status.error, "artifact download failed");
	in.stored_reason = "Installing";
	Plan pl = run(&in);
	assert_int_equal(mutating(&pl), 0);
	cond_is(&pl, COND_AGENT_READY, COND_FALSE, "Error");
	cond_is(&pl, COND_PROVISIONED, COND_FALSE, "Error");
	assert_non_null(strstr(pl.conditions[COND_PROVISIONED].message, "artifact download"));
	assert_string_equal(arg_str(find(&pl, "event"), "reason"), "AgentError");
	plan_clear(&pl);
}

static void plan__stopped_workload__started_once_per_interval(void **state) /* S4 */
{
	(void)state;
	AgOp p = prov_op(9, JOURNAL_STEP_DONE, g_hash, "");
	AgInput in = base(&p);
	in.status = status(AGENT_STATE_STOPPED, true);
	in.ready_ok = false;
	Plan pl = run(&in);
	const Action *a = find(&pl, "agent-start");
	assert_non_null(a);
	assert_true(a->mutating);
	assert_int_equal(arg_int(a, "after"), 9);
	cond_is(&pl, COND_AGENT_READY, COND_FALSE, "Stopped");
	plan_clear(&pl);
	/* started 20 s ago: wait out the minute */
	AgOp s = {.id = 11,
	          .step = JOURNAL_STEP_DONE,
	          .attempt = 1,
	          .after = 9,
	          .completed_ms = NOW - 20000};
	in.start = &s;
	pl = run(&in);
	assert_int_equal(pl.n_actions, 0);
	assert_true(pl.requeue_after_ms > 0 && pl.requeue_after_ms <= 40000);
	plan_clear(&pl);
	s.completed_ms = NOW - 61000;
	pl = run(&in);
	assert_non_null(find(&pl, "agent-start"));
	plan_clear(&pl);
	/* during a restore the agent stops the workload itself */
	in.status.restore_running = true;
	pl = run(&in);
	assert_int_equal(pl.n_actions, 0);
	cond_is(&pl, COND_AGENT_READY, COND_FALSE, "Restoring");
	plan_clear(&pl);
}

static void plan__unknown_state__unknown(void **state) /* S7 */
{
	(void)state;
	AgOp p = prov_op(9, JOURNAL_STEP_DONE, g_hash, "");
	AgInput in = base(&p);
	in.status = status(AGENT_STATE_UNKNOWN, false);
	snprintf(in.status.raw_state, sizeof in.status.raw_state, "migrating");
	Plan pl = run(&in);
	assert_int_equal(pl.n_actions, 0);
	cond_is(&pl, COND_AGENT_READY, COND_UNKNOWN, "UnknownState");
	assert_non_null(strstr(pl.conditions[COND_AGENT_READY].message, "migrating"));
	plan_clear(&pl);
}

/* --- C: code-server ------------------------------------------------------------------------------- */

static AgInput dev_base(const AgOp *prov, const AgOp *cs)
{
	AgInput in = base(prov);
	in.dev = true;
	in.ready.source[0] = 0;
	snprintf(in.ready.source, sizeof in.ready.source, "process");
	in.cs = cs;
	return in;
}

static void plan__codeserver_wanted__started_once(void **state) /* C1 */
{
	(void)state;
	AgOp p = prov_op(9, JOURNAL_STEP_DONE, g_hash, "");
	AgInput in = dev_base(&p, NULL);
	Plan pl = run(&in);
	const Action *a = find(&pl, "codeserver");
	assert_non_null(a);
	assert_true(a->mutating);
	assert_true(json_is_true(json_object_get(a->args, "want")));
	assert_int_equal(arg_int(a, "after"), 9);
	cond_is(&pl, COND_PROVISIONED, COND_FALSE, "CodeServer");
	cond_is(&pl, COND_AGENT_READY, COND_TRUE, "Ready");
	plan_clear(&pl);
	/* asked and done after this provisioning: nothing more */
	AgOp cs = {.id = 12, .step = JOURNAL_STEP_DONE, .want = true, .after = 9};
	in.cs = &cs;
	pl = run(&in);
	assert_int_equal(pl.n_actions, 0);
	cond_is(&pl, COND_PROVISIONED, COND_TRUE, "Provisioned");
	assert_non_null(strstr(pl.conditions[COND_PROVISIONED].message, "code-server on"));
	plan_clear(&pl);
	/* re-provisioned since (a new provision op): asked again */
	cs.after = 8;
	pl = run(&in);
	assert_non_null(find(&pl, "codeserver"));
	plan_clear(&pl);
	/* not while the agent is not running our payload */
	cs.after = 9;
	in.cs = NULL;
	in.status = status(AGENT_STATE_INSTALLING, false);
	pl = run(&in);
	assert_null(find(&pl, "codeserver"));
	plan_clear(&pl);
}

static void plan__codeserver_unwanted__stopped_only_if_asked_on(void **state) /* C2 */
{
	(void)state;
	AgOp p = prov_op(9, JOURNAL_STEP_DONE, g_hash, "");
	AgInput in = dev_base(&p, NULL);
	in.codeserver_want = false;
	Plan pl = run(&in); /* never asked on: a fresh agent runs none */
	assert_int_equal(pl.n_actions, 0);
	cond_is(&pl, COND_PROVISIONED, COND_TRUE, "Provisioned");
	plan_clear(&pl);
	AgOp cs = {.id = 12, .step = JOURNAL_STEP_DONE, .want = true, .after = 9};
	in.cs = &cs;
	pl = run(&in);
	const Action *a = find(&pl, "codeserver");
	assert_non_null(a);
	assert_true(json_is_false(json_object_get(a->args, "want")));
	plan_clear(&pl);
	cs.want = false; /* the stop is done */
	pl = run(&in);
	assert_int_equal(pl.n_actions, 0);
	plan_clear(&pl);
}

static void plan__codeserver_open__resumed_or_superseded(void **state) /* C3, C4 */
{
	(void)state;
	AgOp p = prov_op(9, JOURNAL_STEP_DONE, g_hash, "");
	AgOp cs = {.id = 12, .step = JOURNAL_STEP_INTENT, .want = true, .after = 9};
	AgInput in = dev_base(&p, &cs);
	Plan pl = run(&in);
	assert_int_equal(pl.n_actions, 1);
	assert_string_equal(pl.actions[0].name, "codeserver");
	plan_clear(&pl);
	in.codeserver_want = false; /* changed while the start was open */
	pl = run(&in);
	assert_int_equal(pl.n_actions, 2);
	assert_string_equal(pl.actions[0].name, "settle-codeserver");
	assert_string_equal(arg_str(&pl.actions[0], "outcome"), "failed");
	assert_string_equal(pl.actions[1].name, "codeserver");
	assert_true(json_is_false(json_object_get(pl.actions[1].args, "want")));
	plan_clear(&pl);
}

static void plan__codeserver_failed__backoff(void **state) /* C5 */
{
	(void)state;
	AgOp p = prov_op(9, JOURNAL_STEP_DONE, g_hash, "");
	AgOp cs = {.id = 12,
	           .step = JOURNAL_STEP_FAILED,
	           .want = true,
	           .after = 9,
	           .attempt = 1,
	           .completed_ms = NOW - 4000};
	snprintf(cs.error, sizeof cs.error, "HTTP 409: busy");
	AgInput in = dev_base(&p, &cs);
	Plan pl = run(&in);
	assert_int_equal(pl.n_actions, 0);
	cond_is(&pl, COND_PROVISIONED, COND_FALSE, "CodeServerFailed");
	assert_int_equal(pl.requeue_after_ms, 6000);
	plan_clear(&pl);
	cs.completed_ms = NOW - 10000;
	pl = run(&in);
	assert_non_null(find(&pl, "codeserver"));
	plan_clear(&pl);
}

static void plan__gameserver__no_codeserver(void **state)
{
	(void)state;
	AgOp p = prov_op(9, JOURNAL_STEP_DONE, g_hash, "");
	AgInput in = base(&p);
	in.codeserver_want = true;
	Plan pl = run(&in);
	assert_null(find(&pl, "codeserver"));
	plan_clear(&pl);
}

static void plan__bad_input__einval(void **state)
{
	(void)state;
	Plan pl;
	memset(&pl, 0, sizeof pl);
	assert_int_equal(recon_agent_plan_input(NULL, &pl), -EINVAL);
	AgInput in = base(NULL);
	assert_int_equal(recon_agent_plan_input(&in, NULL), -EINVAL);
	in.hash = "short";
	assert_int_equal(recon_agent_plan_input(&in, &pl), -EINVAL);
	in = base(NULL);
	in.uid = NULL;
	assert_int_equal(recon_agent_plan_input(&in, &pl), -EINVAL);
	assert_int_equal(pl.n_actions, 0);
}

/* --- helpers ---------------------------------------------------------------------------------------- */

static void payload__from_spec(void **state)
{
	(void)state;
	char hash[65], err[200];
	json_t *p = NULL;
	/* canonical spec of a GameServer */
	json_t *spec = json_pack("{s:s, s:s, s:s, s:{s:i, s:i, s:i}, s:s}", "game", "minecraft",
	                         "variant", "fabric", "version", "1.20.4", "resources", "cores", 2,
	                         "memoryMiB", 6144, "diskGiB", 16, "power", "running");
	assert_int_equal(recon_agent_payload("GameServer", spec, 5042, &p, hash, err, sizeof err),
	                 0);
	assert_string_equal(json_string_value(json_object_get(p, "artifact_path")),
	                    "minecraft/fabric/1.20.4/fabric-server.jar");
	assert_string_equal(json_string_value(json_object_get(p, "java_path")),
	                    "java/17/OpenJDK17.tar.gz");
	assert_int_equal(json_integer_value(json_object_get(p, "memory_mb")), 6144);
	assert_int_equal(json_integer_value(json_object_get(p, "vmid")), 5042);
	char h2[65];
	assert_int_equal(agentapi_payload_hash(p, h2), 0);
	assert_string_equal(hash, h2);
	json_decref(p);
	/* the hash follows the vmid (a re-made container elsewhere) */
	char h3[65];
	assert_int_equal(recon_agent_payload("GameServer", spec, 5043, &p, h3, err, sizeof err), 0);
	assert_string_not_equal(hash, h3);
	json_decref(p);
	/* no variant: refused with a reason */
	json_object_del(spec, "variant");
	p = NULL;
	assert_int_equal(recon_agent_payload("GameServer", spec, 5042, &p, hash, err, sizeof err),
	                 -EINVAL);
	assert_null(p);
	assert_non_null(strstr(err, "variant -"));
	json_decref(spec);

	spec = json_pack("{s:s, s:s, s:b, s:{s:i}}", "runtime", "python", "version", "3.12",
	                 "codeServer", 1, "resources", "memoryMiB", 8192);
	assert_int_equal(recon_agent_payload("DevServer", spec, 5100, &p, hash, err, sizeof err),
	                 0);
	assert_string_equal(json_string_value(json_object_get(p, "container_type")), "dev");
	assert_string_equal(json_string_value(json_object_get(p, "runtime")), "python");
	assert_int_equal(json_object_size(p), 5);
	json_decref(p);
	assert_int_equal(recon_agent_payload("Other", spec, 5100, &p, hash, err, sizeof err),
	                 -EINVAL);
	json_decref(spec);
}

static void op_from_journal__payload_read(void **state)
{
	(void)state;
	JournalOp op = {.id = 5, .step = JOURNAL_STEP_FAILED, .attempt = 2, .completed_ms = 77};
	op.payload = json_pack("{s:s, s:s, s:b, s:I}", "hash", OLD_HASH, "prev", "bb", "want", 1,
	                       "after", (json_int_t)4);
	op.error = strdup("HTTP 400: nope");
	AgOp a;
	recon_agent_op_from_journal(&op, &a);
	assert_int_equal(a.id, 5);
	assert_int_equal(a.step, JOURNAL_STEP_FAILED);
	assert_int_equal(a.attempt, 2);
	assert_string_equal(a.hash, OLD_HASH);
	assert_string_equal(a.prev, "bb");
	assert_true(a.want);
	assert_int_equal(a.after, 4);
	assert_int_equal(a.completed_ms, 77);
	assert_string_equal(a.error, "HTTP 400: nope");
	journal_op_clear(&op);
}

static void recon__table(void **state)
{
	(void)state;
	assert_string_equal(recon_agent.name, "agent");
	assert_int_equal(recon_agent.order, 20);
	assert_false(recon_agent.uses_finalizer);
	assert_int_equal(recon_agent.conditions[0], COND_AGENT_READY);
	assert_int_equal(recon_agent.conditions[1], COND_PROVISIONED);
	assert_int_equal(recon_agent.conditions[2], _COND_TYPE_MAX);
	Config cfg;
	memset(&cfg, 0, sizeof cfg);
	assert_false(recon_agent.enabled(&cfg));
	cfg.agent.enabled = true;
	assert_true(recon_agent.enabled(&cfg));
	assert_non_null(recon_agent.observe_server);
	assert_non_null(recon_agent.plan);
	assert_non_null(recon_agent.finalize);
	assert_non_null(recon_agent.act);
	AgSettings s;
	recon_agent_settings_init(&s);
	assert_int_equal(recon_agent_wait_ms(&s, 0), s.wait_min_ms);
	assert_int_equal(recon_agent_wait_ms(&s, 4000), 2000);
	assert_int_equal(recon_agent_wait_ms(&s, 1000000), s.wait_max_ms);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(plan__deleting__nothing),
	    cmocka_unit_test(plan__power_stopped__true_stopped_no_calls),
	    cmocka_unit_test(plan__container_not_running__waits_growing),
	    cmocka_unit_test(plan__agent_unreachable__condition_event_once),
	    cmocka_unit_test(plan__was_ready_one_probe_failed__stays_ready_rechecks),
	    cmocka_unit_test(plan__status_unavailable__unknown),
	    cmocka_unit_test(plan__invalid_spec__failed),
	    cmocka_unit_test(plan__new_container__provisions),
	    cmocka_unit_test(plan__hash_unchanged__no_post),
	    cmocka_unit_test(plan__hash_changed__provisions_again),
	    cmocka_unit_test(plan__open_superseded__settled_then_provisions),
	    cmocka_unit_test(plan__open_at_handle__settled_done),
	    cmocka_unit_test(plan__open_intent_agent_idle__resumes),
	    cmocka_unit_test(plan__open_redelivery_running_complete__resumes),
	    cmocka_unit_test(plan__open_first_delivery_agent_busy__adopted),
	    cmocka_unit_test(plan__open_redelivery_installing__adopted),
	    cmocka_unit_test(plan__open_unknown_state__waits),
	    cmocka_unit_test(plan__refused__backoff_then_retry),
	    cmocka_unit_test(plan__agent_idle__reprovisions),
	    cmocka_unit_test(plan__installing__reports_step),
	    cmocka_unit_test(plan__starting_after_reboot__provisioned_true),
	    cmocka_unit_test(plan__running_not_ready__not_ready),
	    cmocka_unit_test(plan__ready_transition__event_once),
	    cmocka_unit_test(plan__agent_crashed__degraded_no_restart),
	    cmocka_unit_test(plan__agent_error__reported),
	    cmocka_unit_test(plan__stopped_workload__started_once_per_interval),
	    cmocka_unit_test(plan__unknown_state__unknown),
	    cmocka_unit_test(plan__codeserver_wanted__started_once),
	    cmocka_unit_test(plan__codeserver_unwanted__stopped_only_if_asked_on),
	    cmocka_unit_test(plan__codeserver_open__resumed_or_superseded),
	    cmocka_unit_test(plan__codeserver_failed__backoff),
	    cmocka_unit_test(plan__gameserver__no_codeserver),
	    cmocka_unit_test(plan__bad_input__einval),
	    cmocka_unit_test(payload__from_spec),
	    cmocka_unit_test(op_from_journal__payload_read),
	    cmocka_unit_test(recon__table),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
