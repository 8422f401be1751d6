/* test-status.c - conditions, Ready and phase from the reconcilers'
 * reports (controller/status.c), and the plan helpers of reconciler.h. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "controller/status.h"

static const char *T0 = "2026-01-01T00:00:00.000Z";
static const char *T1 = "2026-01-01T00:01:00.000Z";

static json_t *cond(const json_t *arr, const char *type)
{
	size_t i;
	json_t *c;
	json_array_foreach(arr, i, c)
	{
		if (strcmp(json_string_value(json_object_get(c, "type")), type) == 0)
			return c;
	}
	return NULL;
}

static const char *field(const json_t *arr, const char *type, const char *key)
{
	return json_string_value(json_object_get(cond(arr, type), key));
}

static void report(StatusInput *in, CondType t, CondStatus s, const char *reason)
{
	in->owned[t] = true;
	in->planned[t] = true;
	in->reports[t] = (CondReport){.set = true, .status = s};
	snprintf(in->reports[t].reason, sizeof in->reports[t].reason, "%s", reason);
}

static void status__nothing_enabled__all_disabled_true_and_ready(void **state)
{
	(void)state;
	StatusInput in = {.now = T0};
	_cleanup_json_ json_t *c = NULL;
	bool ready = false;
	assert_int_equal(status_build_conditions(&in, &c, &ready), 0);
	assert_true(ready);
	assert_int_equal(json_array_size(c), _COND_TYPE_MAX);
	for (int t = 0; t < COND_READY; t++) {
		assert_string_equal(field(c, cond_type_name(t), "status"), "True");
		assert_string_equal(field(c, cond_type_name(t), "reason"), "Disabled");
	}
	/* Ready comes last. */
	assert_string_equal(
	    json_string_value(json_object_get(json_array_get(c, COND_READY), "type")), "Ready");
	assert_string_equal(field(c, "Ready", "status"), "True");
	assert_string_equal(field(c, "Ready", "lastTransitionTime"), T0);
}

static void status__one_false__not_ready_and_says_why(void **state)
{
	(void)state;
	StatusInput in = {.now = T0};
	report(&in, COND_ALLOCATED, COND_TRUE, "Allocated");
	report(&in, COND_CONTAINER_READY, COND_FALSE, "Creating");
	in.owned[COND_AGENT_READY] = true;
	in.planned[COND_AGENT_READY] = true; /* planned, not reported */
	_cleanup_json_ json_t *c = NULL;
	bool ready = true;
	assert_int_equal(status_build_conditions(&in, &c, &ready), 0);
	assert_false(ready);
	assert_string_equal(field(c, "ContainerReady", "status"), "False");
	assert_string_equal(field(c, "AgentReady", "status"), "Unknown");
	assert_string_equal(field(c, "AgentReady", "reason"), "NotReported");
	assert_string_equal(field(c, "Ready", "status"), "False");
	assert_non_null(strstr(field(c, "Ready", "message"), "ContainerReady (Creating)"));
	assert_non_null(strstr(field(c, "Ready", "message"), "AgentReady (NotReported)"));
}

static void status__transition_time__moves_only_on_status_change(void **state)
{
	(void)state;
	StatusInput in = {.now = T0};
	report(&in, COND_CONTAINER_READY, COND_FALSE, "Creating");
	_cleanup_json_ json_t *c0 = NULL;
	assert_int_equal(status_build_conditions(&in, &c0, NULL), 0);

	/* Same status, another reason: time kept. */
	StatusInput in1 = {.now = T1, .old_conditions = c0};
	report(&in1, COND_CONTAINER_READY, COND_FALSE, "Starting");
	_cleanup_json_ json_t *c1 = NULL;
	assert_int_equal(status_build_conditions(&in1, &c1, NULL), 0);
	assert_string_equal(field(c1, "ContainerReady", "lastTransitionTime"), T0);
	assert_string_equal(field(c1, "ContainerReady", "reason"), "Starting");
	assert_string_equal(field(c1, "Ready", "lastTransitionTime"), T0);

	/* False -> True: time moves, for Ready too. */
	StatusInput in2 = {.now = T1, .old_conditions = c1};
	report(&in2, COND_CONTAINER_READY, COND_TRUE, "Running");
	_cleanup_json_ json_t *c2 = NULL;
	bool ready = false;
	assert_int_equal(status_build_conditions(&in2, &c2, &ready), 0);
	assert_true(ready);
	assert_string_equal(field(c2, "ContainerReady", "lastTransitionTime"), T1);
	assert_string_equal(field(c2, "Ready", "lastTransitionTime"), T1);
	/* Unchanged conditions compare equal (no status write needed). */
	StatusInput in3 = {.now = "2026-01-01T00:02:00.000Z", .old_conditions = c2};
	report(&in3, COND_CONTAINER_READY, COND_TRUE, "Running");
	_cleanup_json_ json_t *c3 = NULL;
	assert_int_equal(status_build_conditions(&in3, &c3, NULL), 0);
	assert_true(status_conditions_equal(c2, c3));
}

static void status__plan_failed__keeps_stored_condition(void **state)
{
	(void)state;
	StatusInput in = {.now = T0};
	report(&in, COND_DNS_READY, COND_TRUE, "Published");
	_cleanup_json_ json_t *c0 = NULL;
	assert_int_equal(status_build_conditions(&in, &c0, NULL), 0);
	/* Next pass the dns observation failed: owned, not planned. */
	StatusInput in1 = {.now = T1, .old_conditions = c0};
	in1.owned[COND_DNS_READY] = true;
	in1.owned[COND_PROXY_REGISTERED] = true; /* never observed yet */
	_cleanup_json_ json_t *c1 = NULL;
	bool ready = true;
	assert_int_equal(status_build_conditions(&in1, &c1, &ready), 0);
	assert_string_equal(field(c1, "DNSReady", "status"), "True");
	assert_string_equal(field(c1, "DNSReady", "reason"), "Published");
	assert_string_equal(field(c1, "DNSReady", "lastTransitionTime"), T0);
	assert_string_equal(field(c1, "ProxyRegistered", "status"), "Unknown");
	assert_string_equal(field(c1, "ProxyRegistered", "reason"), "NotObserved");
	assert_false(ready);
}

static void status__paused__said_in_ready_message(void **state)
{
	(void)state;
	StatusInput in = {.now = T0, .paused = true};
	_cleanup_json_ json_t *c = NULL;
	assert_int_equal(status_build_conditions(&in, &c, NULL), 0);
	assert_non_null(strstr(field(c, "Ready", "message"), "paused"));
}

static json_t *conds_with_allocated(const char *st)
{
	return json_pack("[{s:s, s:s}]", "type", "Allocated", "status", st);
}

static void status_phase__rules(void **state)
{
	(void)state;
	_cleanup_json_ json_t *spec_run = json_pack("{s:s}", "power", "running");
	_cleanup_json_ json_t *spec_stop = json_pack("{s:s}", "power", "stopped");
	_cleanup_json_ json_t *alloc_t = conds_with_allocated("True");
	_cleanup_json_ json_t *alloc_f = conds_with_allocated("False");
	RuntimeServer s = {.spec = spec_run, .phase = PHASE_PENDING};

	assert_int_equal(status_phase(&s, alloc_t, true, false), PHASE_READY);
	assert_int_equal(status_phase(&s, alloc_f, false, false), PHASE_PENDING);
	assert_int_equal(status_phase(&s, alloc_t, false, false), PHASE_PROVISIONING);
	assert_int_equal(status_phase(&s, alloc_t, false, true), PHASE_FAILED);
	s.phase = PHASE_READY; /* was up once: now degraded */
	assert_int_equal(status_phase(&s, alloc_t, false, false), PHASE_DEGRADED);
	s.spec = spec_stop;
	assert_int_equal(status_phase(&s, alloc_t, true, false), PHASE_STOPPED);
	s.deleting = true;
	assert_int_equal(status_phase(&s, alloc_t, true, true), PHASE_DELETING);
}

static void plan_helpers__conditions_actions_requeue(void **state)
{
	(void)state;
	Plan p;
	memset(&p, 0, sizeof p);
	plan_condition(&p, COND_AGENT_READY, COND_FALSE, "Installing", "step %d of %d", 2, 5);
	assert_true(p.conditions[COND_AGENT_READY].set);
	assert_string_equal(p.conditions[COND_AGENT_READY].message, "step 2 of 5");
	for (int i = 0; i < PLAN_MAX_ACTIONS; i++)
		assert_int_equal(plan_action(&p, "config", "proxmox", "pve1", true,
		                             json_pack("{s:i}", "i", i), "config %d", i),
		                 0);
	assert_int_not_equal(plan_action(&p, "x", NULL, NULL, false, json_object(), NULL), 0);
	assert_int_equal(p.n_actions, PLAN_MAX_ACTIONS);
	assert_string_equal(p.actions[3].description, "config 3");
	assert_string_equal(p.actions[3].node, "pve1");
	plan_requeue_after(&p, 5000);
	plan_requeue_after(&p, 2000);
	plan_requeue_after(&p, 9000);
	assert_int_equal(p.requeue_after_ms, 2000);
	plan_clear(&p);
	assert_int_equal(p.n_actions, 0);
	assert_int_equal(cond_type_from_name("DNSReady"), COND_DNS_READY);
	assert_int_equal(cond_type_from_name("Nope"), _COND_TYPE_INVALID);
	assert_string_equal(runtime_phase_to_string(PHASE_DEGRADED), "Degraded");
	assert_int_equal(runtime_phase_from_string("Stopped"), PHASE_STOPPED);
	assert_int_equal(runtime_phase_from_string("stopped"), _PHASE_INVALID);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(status__nothing_enabled__all_disabled_true_and_ready),
	    cmocka_unit_test(status__one_false__not_ready_and_says_why),
	    cmocka_unit_test(status__transition_time__moves_only_on_status_change),
	    cmocka_unit_test(status__plan_failed__keeps_stored_condition),
	    cmocka_unit_test(status__paused__said_in_ready_message),
	    cmocka_unit_test(status_phase__rules),
	    cmocka_unit_test(plan_helpers__conditions_actions_requeue),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
