/* status.c - see status.h. */
#include "controller/status.h"

#include <errno.h>
#include <string.h>

#include "buf.h"

static json_t *find_cond(const json_t *arr, const char *type)
{
	size_t i;
	json_t *c;
	if (!json_is_array(arr))
		return NULL;
	json_array_foreach(arr, i, c)
	{
		const char *t = json_string_value(json_object_get(c, "type"));
		if (t && strcmp(t, type) == 0)
			return c;
	}
	return NULL;
}

static json_t *make_cond(const char *type, const char *status, const char *reason,
                         const char *message, const char *ltt)
{
	return json_pack("{s:s, s:s, s:s, s:s, s:s}", "type", type, "status", status, "reason",
	                 reason ? reason : "", "message", message ? message : "",
	                 "lastTransitionTime", ltt);
}

static bool was_disabled(const json_t *c)
{
	const char *r = json_string_value(json_object_get(c, "reason"));
	return r && strcmp(r, "Disabled") == 0;
}

/* The lastTransitionTime for type going to status: the stored one when
 * the status is unchanged, else now. */
static const char *transition_time(const StatusInput *in, const char *type, const char *status)
{
	json_t *old = find_cond(in->old_conditions, type);
	const char *os = json_string_value(json_object_get(old, "status"));
	const char *ot = json_string_value(json_object_get(old, "lastTransitionTime"));
	if (os && ot && strcmp(os, status) == 0)
		return ot;
	return in->now;
}

int status_build_conditions(const StatusInput *in, json_t **ret, bool *ret_ready)
{
	_cleanup_json_ json_t *arr = json_array();
	if (!arr)
		return -ENOMEM;
	_cleanup_buf_ Buf waiting = BUF_INIT;
	bool ready = true;

	for (int t = 0; t < COND_READY; t++) {
		const char *type = cond_type_name((CondType)t);
		const char *status, *reason, *message;
		json_t *old = NULL;
		if (!in->owned[t]) {
			status = "True";
			reason = "Disabled";
			message = "the reconciler of this condition is switched off";
		} else if (in->planned[t] && in->reports[t].set) {
			status = cond_status_name(in->reports[t].status);
			reason = in->reports[t].reason;
			message = in->reports[t].message;
		} else if (in->planned[t]) {
			status = "Unknown";
			reason = "NotReported";
			message = "the reconciler did not report this condition";
		} else if ((old = find_cond(in->old_conditions, type)) && !was_disabled(old)) {
			/* The plan could not run: keep what was known (a
			 * condition reported while its reconciler was off says
			 * nothing about it now). */
			if (json_array_append(arr, old) < 0)
				return -ENOMEM;
			const char *os = json_string_value(json_object_get(old, "status"));
			if (!os || strcmp(os, "True") != 0) {
				ready = false;
				const char *orr = json_string_value(json_object_get(old, "reason"));
				if (buf_printf(&waiting, "%s%s (%s)", waiting.len ? ", " : "", type,
				               orr ? orr : "") < 0)
					return -ENOMEM;
			}
			continue;
		} else {
			status = "Unknown";
			reason = "NotObserved";
			message = "not observed yet";
		}
		if (strcmp(status, "True") != 0) {
			ready = false;
			if (buf_printf(&waiting, "%s%s (%s)", waiting.len ? ", " : "", type,
			               reason) < 0)
				return -ENOMEM;
		}
		json_t *c =
		    make_cond(type, status, reason, message, transition_time(in, type, status));
		if (!c || json_array_append_new(arr, c) < 0)
			return -ENOMEM;
	}

	char msg[768];
	const char *rstatus = ready ? "True" : "False";
	if (ready)
		snprintf(msg, sizeof msg, "%sall conditions are True",
		         in->paused ? "paused (zlh.dev/paused): observing only; " : "");
	else
		snprintf(msg, sizeof msg, "%swaiting for %s",
		         in->paused ? "paused (zlh.dev/paused): observing only; " : "",
		         waiting.data ? waiting.data : "");
	json_t *rc = make_cond("Ready", rstatus, ready ? "AllConditionsTrue" : "NotReady", msg,
	                       transition_time(in, "Ready", rstatus));
	if (!rc || json_array_append_new(arr, rc) < 0)
		return -ENOMEM;
	*ret = TAKE_PTR(arr);
	if (ret_ready)
		*ret_ready = ready;
	return 0;
}

ServerPhase status_phase(const RuntimeServer *srv, const json_t *conditions, bool ready,
                         bool failed)
{
	if (srv->deleting)
		return PHASE_DELETING;
	if (failed)
		return PHASE_FAILED;
	const char *power = json_string_value(json_object_get(srv->spec, "power"));
	bool want_stopped = power && strcmp(power, "stopped") == 0;
	if (ready)
		return want_stopped ? PHASE_STOPPED : PHASE_READY;
	json_t *alloc = find_cond(conditions, "Allocated");
	const char *as = json_string_value(json_object_get(alloc, "status"));
	if (!as || strcmp(as, "True") != 0)
		return PHASE_PENDING;
	if (srv->phase == PHASE_READY || srv->phase == PHASE_DEGRADED ||
	    srv->phase == PHASE_STOPPED)
		return PHASE_DEGRADED;
	return PHASE_PROVISIONING;
}

bool status_conditions_equal(const json_t *a, const json_t *b)
{
	return json_equal((json_t *)a, (json_t *)b);
}
