/* agent.c - the agent reconciler (see agent.h).
 *
 * DECISION TABLE of recon_agent_plan_input(). Rows are checked top down;
 * each row id is named in test/unit/test-agent-plan.c.
 *
 * Words: "P" = the latest "provision" operation of this incarnation; "D" =
 * the desired payload's hash; "open" = step intent, call or handle;
 * "delivered" = P done with hash D; "st" = GET /status's state; "wait" =
 * requeue after recon_agent_wait_ms(time AgentReady has not been True).
 *
 * id   when                                      actions                    AgentReady / Provisioned / requeue
 * ---- ----------------------------------------- -------------------------- ----------------------------------
 * N1   deleting                                  none                       F Deleting / F Deleting
 * N2   spec.power stopped                        none (no call at all)      T Stopped / T Stopped
 * W1   ContainerReady not True+Running, or no ip none (no call at all)      F WaitingForContainer (both) / wait
 * W0   it was Ready, GET /health or /status (or  none                       T Ready "re-checking" / T if
 *      /ready, S3) failed, failing for less                                 delivered else F Provisioning /
 *      than unreachable_grace (hysteresis)                                  recheck
 * W2   GET /health failed                        EVENT AgentUnreachable     F Unreachable / U Unreachable / wait
 *                                                when it was Ready
 * W3   GET /status failed or unreadable          none                       U StatusUnavailable (both) / wait
 * X1   the payload cannot be built from the spec none; plan failed          F InvalidSpec (both)
 * P1   P open with another hash (superseded)     SETTLE-PROVISION failed,   F Provisioning (both)
 *                                                PROVISION D
 * P2   P open at handle, hash D (the POST was    SETTLE-PROVISION done      F Provisioning (both)
 *      answered; a crash before done)
 * P3   P open at intent/call, hash D, and st     PROVISION (resume P)       F Provisioning (both)
 *      idle, or a re-delivery (P.prev set) to an
 *      agent running with provisioning complete
 *      (ambiguous: posting the same payload
 *      again is safe, keeping an old one is not)
 * P4   P open at intent/call, hash D, st shows   SETTLE-PROVISION done      F Provisioning (both)
 *      a configuration (first delivery: only    (adopt: it landed)
 *      ours can be there; or installing / not
 *      complete)
 * P5   P failed (refused), hash D, within        none                       F ConfigRejected (both) / rest
 *      retry_base * 2^(attempt-1)
 * P6   P failed, hash D, backoff over            PROVISION (attempt n+1)    F Provisioning (both)
 * P7   no P, or P completed with another hash    PROVISION D                F Provisioning (both)
 *      (new container / incarnation, spec change)
 * P8   delivered, st idle, within idle_grace *   none                       F Provisioning / F AgentIdle / rest
 *      2^(attempt-1) of P's completion
 * P9   delivered, st idle, past that (the agent  EVENT AgentReset,          F Provisioning (both)
 *      lost its configuration)                   PROVISION (attempt n+1)
 * S1   delivered, st installing/verifying/       none                       F Installing|Starting (installStep)
 *      starting                                                             / T if provisioningComplete else
 *                                                                           F Installing / wait
 * S2   delivered, st running, /ready ready       EVENT AgentReady|          T Ready "(source X)" / T Provisioned
 *                                                AgentRecovered when it
 *                                                was not Ready; C rows
 * S3   delivered, st running, not ready          C rows                     F NotReady (reason) / T / wait
 * S4   delivered, st stopped (power running),    AGENT-START, at most one   F Stopped / T / wait
 *      no restore running                        per start_interval
 * S5   delivered, st crashed                     EVENT AgentCrashed when it F Crashed (crashCount, error) /
 *                                                was not Crashed; NO       T if complete else F InstallFailed /
 *                                                restart (the agent owns    wait_max
 *                                                crash recovery)
 * S6   delivered, st error                       EVENT AgentError likewise  F Error (error) / as S5
 * S7   delivered, st unknown                     none                       U UnknownState (both) / wait
 * C1   DevServer, st running, want on, no        CODESERVER start           Provisioned F CodeServer
 *      done "on" ask after P
 * C2   DevServer, want off, the last ask was on  CODESERVER stop            Provisioned F CodeServer
 *      (or an off ask did not complete)
 * C3   the last ask open, same want, after P     CODESERVER (resume)        Provisioned F CodeServer
 * C4   the last ask open, otherwise              SETTLE-CODESERVER failed,  Provisioned F CodeServer
 *                                                then C1/C2
 * C5   the last ask failed, same want, after P,  none                       Provisioned F CodeServerFailed /
 *      within backoff                                                       rest
 *
 * A fresh agent is assumed to run without code-server: want off with no
 * ask in this incarnation does nothing. */
#include "agent.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crash.h"
#include "db/container_extra.h"
#include "log.h"
#include "reconcilers/agentapi_backup.h"
#include "util.h"

void recon_agent_settings_init(AgSettings *s)
{
	*s = (AgSettings){
	    .wait_min_ms = 500,
	    .wait_max_ms = 15000,
	    .idle_grace_ms = 5000,
	    .retry_base_ms = 10000,
	    .retry_max_ms = 600000,
	    .start_interval_ms = 60000,
	    .unreachable_grace_ms = 3000,
	    .recheck_ms = 1000,
	};
}

int64_t recon_agent_wait_ms(const AgSettings *s, int64_t waited_ms)
{
	int64_t d = waited_ms > 0 ? waited_ms / 2 : 0;
	if (d < s->wait_min_ms)
		d = s->wait_min_ms;
	if (d > s->wait_max_ms)
		d = s->wait_max_ms;
	return d;
}

/* base * 2^(attempt-1), capped. */
static int64_t backoff(int64_t base, int64_t attempt, int64_t cap)
{
	int64_t d = base > 0 ? base : 1;
	for (int64_t i = 1; i < attempt && d < cap; i++)
		d *= 2;
	return d < cap ? d : cap;
}

void recon_agent_op_from_journal(const JournalOp *op, AgOp *ret)
{
	*ret = (AgOp){.id = op->id,
	              .step = op->step,
	              .attempt = op->attempt,
	              .completed_ms = op->completed_ms};
	json_t *p = op->payload;
	const char *hash = json_string_value(json_object_get(p, "hash"));
	const char *prev = json_string_value(json_object_get(p, "prev"));
	json_t *after = json_object_get(p, "after");
	snprintf(ret->hash, sizeof ret->hash, "%s", hash ? hash : "");
	snprintf(ret->prev, sizeof ret->prev, "%s", prev ? prev : "");
	ret->want = json_is_true(json_object_get(p, "want"));
	ret->after = json_is_integer(after) ? json_integer_value(after) : 0;
	snprintf(ret->error, sizeof ret->error, "%s", op->error ? op->error : "");
}

/* --- the payload ---------------------------------------------------------------------------- */

int recon_agent_payload(const char *kind, const json_t *spec, int64_t vmid, json_t **ret,
                        char hash[65], char *err, size_t n)
{
	char dummy[8];
	if (!err || !n) {
		err = dummy;
		n = sizeof dummy;
	}
	err[0] = 0;
	if (!kind || !json_is_object(spec) || !ret || !hash) {
		snprintf(err, n, "no spec");
		return -EINVAL;
	}
	json_t *mem = json_object_get(json_object_get(spec, "resources"), "memoryMiB");
	int64_t memory = json_is_integer(mem) ? json_integer_value(mem) : 4096;
	const char *version = json_string_value(json_object_get(spec, "version"));
	_cleanup_json_ json_t *p = NULL;
	int r;
	if (strcmp(kind, "GameServer") == 0) {
		const char *game = json_string_value(json_object_get(spec, "game"));
		const char *variant = json_string_value(json_object_get(spec, "variant"));
		if (!game)
			game = "minecraft";
		r = agentapi_payload_game(vmid, game, variant, version, memory, &p);
		if (r < 0) {
			snprintf(err, n,
			         "cannot build the agent payload (vmid %" PRId64
			         ", game %s, variant %s, version %s, memoryMiB %" PRId64 ")",
			         vmid, game, variant ? variant : "-", version ? version : "-",
			         memory);
			return r;
		}
	} else if (strcmp(kind, "DevServer") == 0) {
		const char *runtime = json_string_value(json_object_get(spec, "runtime"));
		r = agentapi_payload_dev(vmid, runtime, version, memory, &p);
		if (r < 0) {
			snprintf(err, n,
			         "cannot build the agent payload (vmid %" PRId64
			         ", runtime %s, version %s, memoryMiB %" PRId64 ")",
			         vmid, runtime ? runtime : "-", version ? version : "-", memory);
			return r;
		}
	} else {
		snprintf(err, n, "unknown kind %s", kind);
		return -EINVAL;
	}
	char h[65];
	r = agentapi_payload_hash(p, h);
	if (r < 0) {
		snprintf(err, n, "cannot hash the agent payload");
		return r;
	}
	memcpy(hash, h, sizeof h);
	*ret = TAKE_PTR(p);
	return 0;
}

/* --- the plan ------------------------------------------------------------------------------------ */

typedef struct Ctx {
	const AgInput *in;
	Plan *plan;
	int64_t wait;
	char h8[9];
} Ctx;

static bool op_open(const AgOp *op)
{
	return op && op->id > 0 && journal_step_is_open(op->step);
}

static bool reason_is(const char *stored, const char *reason)
{
	return stored && strcmp(stored, reason) == 0;
}

static int both(Ctx *c, CondStatus st, const char *reason, const char *msg)
{
	plan_condition(c->plan, COND_AGENT_READY, st, reason, "%s", msg);
	plan_condition(c->plan, COND_PROVISIONED, st, reason, "%s", msg);
	return 0;
}

static int add_event(Ctx *c, const char *type, const char *reason, const char *msg)
{
	return plan_action(
	    c->plan, "event", NULL, NULL, false,
	    json_pack("{s:s, s:s, s:s}", "type", type, "reason", reason, "message", msg),
	    "event %s: %s", reason, msg);
}

static int settle(Ctx *c, const char *action, const AgOp *op, bool done, const char *error)
{
	json_t *a =
	    json_pack("{s:I, s:s}", "op", (json_int_t)op->id, "outcome", done ? "done" : "failed");
	if (a && error)
		json_object_set_new(a, "error", json_string(error));
	return plan_action(c->plan, action, NULL, NULL, false, a,
	                   "record: %s op %" PRId64 " %s%s%s", action + strlen("settle-"), op->id,
	                   done ? "done" : "failed", error ? ": " : "", error ? error : "");
}

static int provision(Ctx *c, const char *prev, const char *why)
{
	const AgInput *in = c->in;
	char msg[200];
	snprintf(msg, sizeof msg, "delivering configuration %s to the agent (%s)", c->h8, why);
	both(c, COND_FALSE, "Provisioning", msg);
	return plan_action(c->plan, "provision", "agent", NULL, true,
	                   json_pack("{s:s, s:s, s:O, s:s}", "hash", in->hash, "prev",
	                             prev ? prev : "", "payload", in->payload, "why", why),
	                   "POST /config %s (%s)", c->h8, why);
}

/* The C rows: code-server of a DevServer whose agent runs payload P.
 * *ret_pending: an ask is planned or waits. */
static int codeserver_rows(Ctx *c, const AgOp *p, bool *ret_pending, char *note, size_t n)
{
	const AgInput *in = c->in;
	const AgSettings *s = &in->settings;
	const AgOp *l = in->cs && in->cs->id > 0 ? in->cs : NULL;
	bool want = in->codeserver_want;
	int r;
	*ret_pending = false;
	snprintf(note, n, "; code-server %s", want ? "on" : "off");
	if (l && op_open(l)) {
		if (l->want == want && l->after == p->id) { /* C3 */
			*ret_pending = true;
			return plan_action(
			    c->plan, "codeserver", "agent", NULL, true,
			    json_pack("{s:b, s:I}", "want", want, "after", (json_int_t)p->id),
			    "code-server %s (resume)", want ? "start" : "stop");
		}
		/* C4 */
		r = settle(c, "settle-codeserver", l, false, "superseded");
		if (r < 0)
			return r;
	}
	bool need;
	if (want)
		need = !(l && l->step == JOURNAL_STEP_DONE && l->want && l->after == p->id);
	else
		need = l && (l->want || l->step != JOURNAL_STEP_DONE);
	if (!need)
		return 0;
	*ret_pending = true;
	if (l && l->step == JOURNAL_STEP_FAILED && l->want == want &&
	    (!want || l->after == p->id)) {
		int64_t at =
		    l->completed_ms + backoff(s->retry_base_ms, l->attempt, s->retry_max_ms);
		if (in->db_now_ms < at) { /* C5 */
			plan_requeue_after(c->plan, at - in->db_now_ms);
			snprintf(note, n, "; code-server %s failed: %s", want ? "start" : "stop",
			         l->error);
			return 1;
		}
	}
	/* C1, C2 */
	return plan_action(c->plan, "codeserver", "agent", NULL, true,
	                   json_pack("{s:b, s:I}", "want", want, "after", (json_int_t)p->id),
	                   "code-server %s", want ? "start" : "stop");
}

/* W0: the agent was Ready and one probe failed: keep Ready a moment and
 * look again soon (hysteresis). */
static void still_ready(Ctx *c, const char *why, bool delivered)
{
	const AgInput *in = c->in;
	const AgSettings *s = &in->settings;
	plan_condition(c->plan, COND_AGENT_READY, COND_TRUE, "Ready",
	               "ready; the last probe failed (%s), re-checking", why ? why : "?");
	if (delivered)
		plan_condition(c->plan, COND_PROVISIONED, COND_TRUE, "Provisioned",
		               "configuration %s installed", c->h8);
	else
		plan_condition(c->plan, COND_PROVISIONED, COND_FALSE, "Provisioning",
		               "configuration %s not delivered yet; the agent does not answer",
		               c->h8);
	int64_t left = s->unreachable_grace_ms - in->failing_for_ms;
	plan_requeue_after(c->plan, left < s->recheck_ms ? (left > 0 ? left : 1) : s->recheck_ms);
}

/* S rows: the payload is delivered; the agent's state decides. */
static int state_rows(Ctx *c, const AgOp *p)
{
	const AgInput *in = c->in;
	const AgSettings *s = &in->settings;
	const AgentStatus *st = &in->status;
	Plan *plan = c->plan;
	char msg[512];
	int r = 0;
	bool complete = st->provisioning_complete;

	switch (st->state) {
	case AGENT_STATE_INSTALLING:
	case AGENT_STATE_VERIFYING:
	case AGENT_STATE_STARTING: { /* S1 */
		const char *reason = st->state == AGENT_STATE_STARTING ? "Starting" : "Installing";
		snprintf(msg, sizeof msg, "%s%s%s", st->raw_state, st->install_step[0] ? ": " : "",
		         st->install_step);
		plan_condition(plan, COND_AGENT_READY, COND_FALSE, reason, "%s", msg);
		if (complete)
			plan_condition(plan, COND_PROVISIONED, COND_TRUE, "Provisioned",
			               "configuration %s installed", c->h8);
		else
			plan_condition(plan, COND_PROVISIONED, COND_FALSE, "Installing",
			               "installing configuration %s: %s", c->h8, msg);
		plan_requeue_after(plan, c->wait);
		return 0;
	}
	case AGENT_STATE_RUNNING: {
		bool ready = in->ready_ok && in->ready.ready;
		if (ready) { /* S2 */
			const char *src = in->ready.source[0] ? in->ready.source : "unspecified";
			plan_condition(plan, COND_AGENT_READY, COND_TRUE, "Ready",
			               "ready (source %s)", src);
			if (!reason_is(in->stored_reason, "Ready")) {
				bool back = reason_is(in->stored_reason, "Crashed") ||
				            reason_is(in->stored_reason, "Error") ||
				            reason_is(in->stored_reason, "Unreachable");
				snprintf(msg, sizeof msg, "the agent reports ready (source %s)",
				         src);
				r = add_event(c, "Normal", back ? "AgentRecovered" : "AgentReady",
				              msg);
				if (r < 0)
					return r;
			}
		} else if (!in->ready_ok && in->failing && reason_is(in->stored_reason, "Ready") &&
		           in->failing_for_ms < s->unreachable_grace_ms) { /* W0 (/ready) */
			still_ready(c, in->ready_error, true);
		} else { /* S3 */
			plan_condition(plan, COND_AGENT_READY, COND_FALSE, "NotReady",
			               "running, not ready: %s",
			               in->ready_ok ? in->ready.reason
			                            : (in->ready_error ? in->ready_error : "?"));
			plan_requeue_after(plan, c->wait);
		}
		char note[200] = "";
		bool pending = false;
		if (in->dev) {
			r = codeserver_rows(c, p, &pending, note, sizeof note);
			if (r < 0)
				return r;
		}
		if (pending)
			plan_condition(plan, COND_PROVISIONED, COND_FALSE,
			               r == 1 ? "CodeServerFailed" : "CodeServer",
			               "configuration %s installed%s", c->h8, note);
		else
			plan_condition(plan, COND_PROVISIONED, COND_TRUE, "Provisioned",
			               "configuration %s installed%s", c->h8, note);
		return 0;
	}
	case AGENT_STATE_STOPPED: { /* S4 */
		plan_condition(plan, COND_PROVISIONED, COND_TRUE, "Provisioned",
		               "configuration %s installed", c->h8);
		plan_requeue_after(plan, c->wait);
		if (st->restore_running) {
			plan_condition(plan, COND_AGENT_READY, COND_FALSE, "Restoring",
			               "the workload is stopped while a restore runs");
			return 0;
		}
		plan_condition(plan, COND_AGENT_READY, COND_FALSE, "Stopped",
		               "the workload is stopped; starting it");
		const AgOp *l = in->start && in->start->id > 0 ? in->start : NULL;
		if (l && !op_open(l) && l->after == p->id &&
		    in->db_now_ms - l->completed_ms < s->start_interval_ms) {
			plan_requeue_after(plan,
			                   l->completed_ms + s->start_interval_ms - in->db_now_ms);
			plan_condition(plan, COND_AGENT_READY, COND_FALSE, "Stopped",
			               "the workload is stopped; started less than %" PRId64
			               " s ago, waiting",
			               s->start_interval_ms / 1000);
			return 0;
		}
		return plan_action(plan, "agent-start", "agent", NULL, true,
		                   json_pack("{s:I}", "after", (json_int_t)p->id),
		                   "POST /start (the workload is stopped)");
	}
	case AGENT_STATE_CRASHED:
	case AGENT_STATE_ERROR: { /* S5, S6 */
		bool crashed = st->state == AGENT_STATE_CRASHED;
		const char *reason = crashed ? "Crashed" : "Error";
		if (crashed)
			snprintf(msg, sizeof msg, "crashed (crash count %" PRId64 ")%s%s",
			         st->crash_count, st->error[0] ? ": " : "", st->error);
		else
			snprintf(msg, sizeof msg, "error%s%s", st->error[0] ? ": " : "", st->error);
		plan_condition(plan, COND_AGENT_READY, COND_FALSE, reason, "%s", msg);
		if (complete)
			plan_condition(plan, COND_PROVISIONED, COND_TRUE, "Provisioned",
			               "configuration %s installed", c->h8);
		else
			plan_condition(plan, COND_PROVISIONED, COND_FALSE,
			               crashed ? "InstallFailed" : "Error", "configuration %s: %s",
			               c->h8, msg);
		plan_requeue_after(plan, s->wait_max_ms);
		if (!reason_is(in->stored_reason, reason))
			return add_event(c, "Warning", crashed ? "AgentCrashed" : "AgentError",
			                 msg);
		return 0;
	}
	default: /* S7 */
		snprintf(msg, sizeof msg, "the agent reports an unknown state \"%s\"",
		         st->raw_state);
		both(c, COND_UNKNOWN, "UnknownState", msg);
		plan_requeue_after(plan, c->wait);
		return 0;
	}
}

int recon_agent_plan_input(const AgInput *in, Plan *plan)
{
	if (!in || !plan || !in->uid || (in->payload && (!in->hash || strlen(in->hash) != 64)))
		return -EINVAL;
	const AgSettings *s = &in->settings;
	int64_t waited = in->waiting_since_ms > 0 && in->now_ms > in->waiting_since_ms
	                     ? in->now_ms - in->waiting_since_ms
	                     : 0;
	Ctx c = {.in = in, .plan = plan, .wait = recon_agent_wait_ms(s, waited)};
	snprintf(c.h8, sizeof c.h8, "%.8s", in->hash ? in->hash : "");
	char msg[512];
	int r;

	if (in->deleting) /* N1 */
		return both(&c, COND_FALSE, "Deleting", "the server is being deleted");
	if (!in->power_running) /* N2 */
		return both(&c, COND_TRUE, "Stopped", "spec.power is stopped");
	if (!in->container_running || !in->ip) { /* W1 */
		plan_requeue_after(plan, c.wait);
		return both(&c, COND_FALSE, "WaitingForContainer",
		            "waiting for the container to run");
	}
	const AgOp *p = in->prov && in->prov->id > 0 ? in->prov : NULL;
	bool delivered =
	    p && p->step == JOURNAL_STEP_DONE && in->hash && strcmp(p->hash, in->hash) == 0;
	bool suspect = in->failing && reason_is(in->stored_reason, "Ready") &&
	               in->failing_for_ms < s->unreachable_grace_ms;
	if (suspect && (!in->probed || !in->healthy || !in->status_ok)) { /* W0 */
		still_ready(&c, !in->healthy ? in->health_error : in->status_error, delivered);
		return 0;
	}
	if (!in->probed || !in->healthy) { /* W2 */
		snprintf(msg, sizeof msg, "the agent at %s does not answer: %s", in->ip,
		         in->health_error ? in->health_error : "not probed");
		plan_condition(plan, COND_AGENT_READY, COND_FALSE, "Unreachable", "%s", msg);
		plan_condition(plan, COND_PROVISIONED, COND_UNKNOWN, "Unreachable", "%s", msg);
		plan_requeue_after(plan, c.wait);
		if (reason_is(in->stored_reason, "Ready"))
			return add_event(&c, "Warning", "AgentUnreachable", msg);
		return 0;
	}
	if (!in->status_ok) { /* W3 */
		snprintf(msg, sizeof msg, "GET /status: %s",
		         in->status_error ? in->status_error : "?");
		plan_requeue_after(plan, c.wait);
		return both(&c, COND_UNKNOWN, "StatusUnavailable", msg);
	}
	if (!in->payload) { /* X1 */
		plan->failed = true;
		return both(&c, COND_FALSE, "InvalidSpec",
		            in->payload_error ? in->payload_error : "no agent payload");
	}

	const AgentStatus *st = &in->status;
	bool same = p && strcmp(p->hash, in->hash) == 0;

	if (op_open(p) && !same) { /* P1 */
		r = settle(&c, "settle-provision", p, false, "superseded by a newer payload");
		if (r < 0)
			return r;
		return provision(&c, p->hash, "changed");
	}
	if (op_open(p)) {
		if (p->step == JOURNAL_STEP_HANDLE) { /* P2 */
			both(&c, COND_FALSE, "Provisioning",
			     "configuration delivered; recording it");
			return settle(&c, "settle-provision", p, true, NULL);
		}
		if (st->state == AGENT_STATE_UNKNOWN) { /* S7 before deciding */
			snprintf(msg, sizeof msg, "the agent reports an unknown state \"%s\"",
			         st->raw_state);
			plan_requeue_after(plan, c.wait);
			return both(&c, COND_UNKNOWN, "UnknownState", msg);
		}
		bool shows = st->state != AGENT_STATE_IDLE &&
		             (!p->prev[0] || agentapi_state_is_install(st->state) ||
		              !st->provisioning_complete);
		if (shows) { /* P4 */
			both(&c, COND_FALSE, "Provisioning",
			     "the configuration landed (the agent is past idle); recording it");
			return settle(&c, "settle-provision", p, true, NULL);
		}
		return provision(&c, p->prev, "resume"); /* P3 */
	}
	if (same && p->step == JOURNAL_STEP_FAILED) {
		int64_t at =
		    p->completed_ms + backoff(s->retry_base_ms, p->attempt, s->retry_max_ms);
		if (in->db_now_ms < at) { /* P5 */
			plan_requeue_after(plan, at - in->db_now_ms);
			snprintf(msg, sizeof msg,
			         "the agent refused configuration %s: %s; retrying in %" PRId64
			         " s",
			         c.h8, p->error, (at - in->db_now_ms + 999) / 1000);
			return both(&c, COND_FALSE, "ConfigRejected", msg);
		}
		return provision(&c, p->prev, "retry"); /* P6 */
	}
	if (!same) { /* P7 */
		const char *prev = !p ? "" : p->step == JOURNAL_STEP_FAILED ? p->prev : p->hash;
		return provision(&c, prev, p ? "changed" : "new");
	}
	/* delivered */
	if (st->state == AGENT_STATE_IDLE) {
		int64_t at =
		    p->completed_ms + backoff(s->idle_grace_ms, p->attempt, s->retry_max_ms);
		if (in->db_now_ms < at) { /* P8 */
			plan_requeue_after(plan, at - in->db_now_ms);
			plan_condition(plan, COND_AGENT_READY, COND_FALSE, "Provisioning",
			               "configuration %s delivered; the agent is still idle", c.h8);
			plan_condition(plan, COND_PROVISIONED, COND_FALSE, "AgentIdle",
			               "configuration %s delivered; the agent is still idle", c.h8);
			return 0;
		}
		/* P9 */
		snprintf(msg, sizeof msg,
		         "the agent reports idle: it lost configuration %s; delivering it again",
		         c.h8);
		r = add_event(&c, "Warning", "AgentReset", msg);
		if (r < 0)
			return r;
		return provision(&c, p->hash, "agent idle");
	}
	return state_rows(&c, p);
}

/* --- the runtime glue ------------------------------------------------------------------------- */

typedef struct AgentWorker {
	AgentClient *client;
} AgentWorker;

static const CondType agent_conditions[] = {COND_AGENT_READY, COND_PROVISIONED, _COND_TYPE_MAX};

static bool agent_enabled(const Config *cfg)
{
	return cfg && cfg->agent.enabled;
}

/* Per-process state: since when each server's probes have been failing
 * (monotonic ms). Only failing servers have an entry. */
typedef struct FailEntry {
	char uid[37];
	int64_t since_ms;
} FailEntry;

typedef struct AgentProc {
	pthread_mutex_t lock;
	FailEntry *fails;
	size_t n, cap;
} AgentProc;

#define AGENT_FAILS_MAX 100000

static int agent_init(const Config *cfg, void **ret_state)
{
	(void)cfg;
	AgentProc *p = calloc(1, sizeof *p);
	if (!p)
		return -ENOMEM;
	pthread_mutex_init(&p->lock, NULL);
	*ret_state = p;
	return 0;
}

static void agent_done(void *state)
{
	AgentProc *p = state;
	if (!p)
		return;
	pthread_mutex_destroy(&p->lock);
	free(p->fails);
	free(p);
}

/* Records this pass's probe outcome of uid; returns how long its probes
 * have been failing (0: the first failure, or none). */
static int64_t fail_track(AgentProc *p, const char *uid, bool failing, int64_t now)
{
	if (!p)
		return 0;
	int64_t d = 0;
	pthread_mutex_lock(&p->lock);
	size_t i = 0;
	while (i < p->n && strcmp(p->fails[i].uid, uid) != 0)
		i++;
	if (!failing) {
		if (i < p->n)
			p->fails[i] = p->fails[--p->n];
	} else if (i < p->n) {
		d = now - p->fails[i].since_ms;
	} else if (p->n < AGENT_FAILS_MAX) {
		if (p->n == p->cap) {
			size_t cap = p->cap ? p->cap * 2 : 16;
			FailEntry *f = realloc(p->fails, cap * sizeof *f);
			if (f) {
				p->fails = f;
				p->cap = cap;
			}
		}
		if (p->n < p->cap) {
			snprintf(p->fails[p->n].uid, sizeof p->fails[p->n].uid, "%s", uid);
			p->fails[p->n++].since_ms = now;
		}
	}
	pthread_mutex_unlock(&p->lock);
	return d > 0 ? d : 0;
}

static int agent_worker_init(const Config *cfg, void *state, void **ret_wstate)
{
	(void)state;
	if (!cfg)
		return -EINVAL;
	AgentWorker *w = calloc(1, sizeof *w);
	if (!w)
		return -ENOMEM;
	AgentClientOptions o = {.port = cfg->agent.port, .token = cfg->agent.token};
	w->client = agentapi_client_new(&o);
	if (!w->client) {
		free(w);
		return -ENOMEM;
	}
	*ret_wstate = w;
	return 0;
}

static void agent_worker_done(void *wstate)
{
	AgentWorker *w = wstate;
	if (!w)
		return;
	agentapi_client_free(w->client);
	free(w);
}

static int agent_observe(RecEnv *env, void **ret_snapshot)
{
	(void)env;
	AgentSnapshot *s = calloc(1, sizeof *s);
	if (!s)
		return -ENOMEM;
	s->at_ms = now_wall_ms();
	*ret_snapshot = s;
	return 0;
}

static void agent_snapshot_free(void *snapshot)
{
	free(snapshot);
}

static void agent_obs_free(void *obs)
{
	free(obs);
}

/* The stored condition of type: *ret_status ("True"...), *ret_reason,
 * *ret_since_ms (lastTransitionTime). False when absent. */
static bool stored_cond(const RuntimeServer *srv, const char *type, const char **ret_status,
                        const char **ret_reason, int64_t *ret_since_ms)
{
	size_t i;
	json_t *c;
	if (!json_is_array(srv->conditions))
		return false;
	json_array_foreach(srv->conditions, i, c)
	{
		const char *t = json_string_value(json_object_get(c, "type"));
		if (!t || strcmp(t, type) != 0)
			continue;
		const char *st = json_string_value(json_object_get(c, "status"));
		const char *re = json_string_value(json_object_get(c, "reason"));
		*ret_status = st ? st : "";
		*ret_reason = re ? re : "";
		*ret_since_ms = agentapi_backup_parse_time(
		    json_string_value(json_object_get(c, "lastTransitionTime")));
		return true;
	}
	return false;
}

static bool power_running(const RuntimeServer *srv)
{
	const char *p = json_string_value(json_object_get(srv->spec, "power"));
	return !p || strcmp(p, "stopped") != 0;
}

static bool container_running(const RuntimeServer *srv)
{
	const char *st = NULL, *re = NULL;
	int64_t since = 0;
	return srv->ip && *srv->ip && stored_cond(srv, "ContainerReady", &st, &re, &since) &&
	       strcmp(st, "True") == 0 && strcmp(re, "Running") == 0;
}

static bool is_dev(const RuntimeServer *srv)
{
	return srv->kind && strcmp(srv->kind, "DevServer") == 0;
}

static void count(RecEnv *env, const char *method, const AgentError *e, int r)
{
	rec_count_call(env, "agent", method, e->http_status ? e->http_status : r < 0 ? 0 : 200);
}

typedef enum Probe {
	PROBE_HEALTH,
	PROBE_STATUS,
	PROBE_READY,
} Probe;

/* One GET of the agent, after a token of the "agent" rate limit (the cap
 * on concurrent agent polls), tried once more at once when it failed
 * quickly (a reset connection, a 5xx): one lost packet or one failing
 * request should not flip AgentReady. A timeout is not tried again (a
 * hung agent would hold the worker twice as long). -ECANCELED when the
 * controller is stopping. */
static int probe(RecEnv *env, AgentWorker *w, const char *ip, Probe what, AgentObs *o,
                 AgentError *e)
{
	int r = -EIO;
	for (int attempt = 0; attempt < 2; attempt++) {
		if (rec_rate_wait(env, "agent") < 0)
			return -ECANCELED;
		*e = (AgentError){.retry_after_s = -1};
		long st;
		if (what == PROBE_HEALTH) {
			r = agentapi_health(w->client, ip, e);
			st = r < 0 ? e->http_status : 200;
		} else if (what == PROBE_STATUS) {
			r = agentapi_status(w->client, ip, &o->status, e);
			st = r < 0 ? e->http_status : 200;
		} else {
			r = agentapi_ready(w->client, ip, &o->ready, e);
			st = r < 0 ? e->http_status : o->ready.ready ? 200 : 503;
		}
		rec_count_call(env, "agent", "GET", st);
		bool transient = r == -ECONNRESET || r == -EREMOTEIO || r == -EAGAIN || r == -EIO;
		if (r >= 0 || !transient)
			break;
	}
	return r;
}

static int agent_observe_server(RecEnv *env, const RuntimeServer *srv, const void *snapshot,
                                void **ret_obs)
{
	(void)snapshot;
	AgentWorker *w = env->wstate;
	_cleanup_free_ AgentObs *o = calloc(1, sizeof *o);
	if (!o)
		return -ENOMEM;
	o->now_ms = now_wall_ms();
	o->db_now_ms = o->now_ms;
	int r;
	if (env->db) {
		StoreError err = {0};
		CtStoreView v;
		r = ct_store_view(env->db, srv->uid, &v, &err);
		if (r < 0) {
			log_debug("agent: %s: store view: %s", srv->uid, err.message);
			return r;
		}
		o->incarnation = v.incarnation;
		o->db_now_ms = v.db_now_ms;
		JournalOp *ops = NULL;
		size_t n = 0;
		r = journal_latest(env->db, srv->uid, v.incarnation, &ops, &n, &err);
		if (r < 0) {
			log_debug("agent: %s: journal: %s", srv->uid, err.message);
			return r;
		}
		for (size_t i = 0; i < n; i++) {
			const JournalOp *op = &ops[i];
			if (strcmp(op->action, "provision") == 0) {
				recon_agent_op_from_journal(op, &o->prov);
				o->has_prov = true;
			} else if (strcmp(op->action, "codeserver") == 0) {
				recon_agent_op_from_journal(op, &o->cs);
				o->has_cs = true;
			} else if (strcmp(op->action, "agent-start") == 0) {
				recon_agent_op_from_journal(op, &o->start);
				o->has_start = true;
			}
		}
		journal_ops_free(ops, n);
	}
	if (srv->deleting || !power_running(srv) || !container_running(srv) || !w) {
		fail_track(env->state, srv->uid, false, 0);
		*ret_obs = TAKE_PTR(o);
		return 0;
	}

	/* /health, then /status, then /ready. */
	o->probed = true;
	AgentError e;
	r = probe(env, w, srv->ip, PROBE_HEALTH, o, &e);
	if (r == -ECANCELED)
		return r;
	if (r < 0) {
		snprintf(o->health_error, sizeof o->health_error, "%s", e.message);
		o->failing = true;
		o->failing_for_ms = fail_track(env->state, srv->uid, true, now_mono_ms());
		*ret_obs = TAKE_PTR(o);
		return 0;
	}
	o->healthy = true;
	r = probe(env, w, srv->ip, PROBE_STATUS, o, &e);
	if (r == -ECANCELED)
		return r;
	if (r < 0) {
		snprintf(o->status_error, sizeof o->status_error, "%s", e.message);
		o->failing = true;
		o->failing_for_ms = fail_track(env->state, srv->uid, true, now_mono_ms());
		*ret_obs = TAKE_PTR(o);
		return 0;
	}
	o->status_ok = true;
	if (o->status.state == AGENT_STATE_RUNNING) {
		r = probe(env, w, srv->ip, PROBE_READY, o, &e);
		if (r == -ECANCELED)
			return r;
		if (r < 0)
			snprintf(o->ready_error, sizeof o->ready_error, "%s", e.message);
		else
			o->ready_ok = true;
	}
	o->failing = !o->status_ok || (o->status.state == AGENT_STATE_RUNNING && !o->ready_ok);
	o->failing_for_ms = fail_track(env->state, srv->uid, o->failing, now_mono_ms());
	*ret_obs = TAKE_PTR(o);
	return 0;
}

static int plan_common(const Config *cfg, const RuntimeServer *srv, const void *obs_v,
                       bool deleting, Plan *plan)
{
	(void)cfg;
	const AgentObs *obs = obs_v;
	if (!srv || !obs || !plan)
		return -EINVAL;
	char hash[65] = "", perr[256] = "";
	_cleanup_json_ json_t *payload = NULL;
	if (!deleting && recon_agent_payload(srv->kind, srv->spec, srv->vmid, &payload, hash, perr,
	                                     sizeof perr) < 0)
		payload = NULL;
	AgInput in = {
	    .uid = srv->uid,
	    .dev = is_dev(srv),
	    .deleting = deleting,
	    .power_running = power_running(srv),
	    .container_running = container_running(srv),
	    .ip = srv->ip,
	    .payload = payload,
	    .payload_error = perr,
	    .hash = payload ? hash : NULL,
	    .codeserver_want = !json_is_false(json_object_get(srv->spec, "codeServer")),
	    .probed = obs->probed,
	    .healthy = obs->healthy,
	    .health_error = obs->health_error,
	    .status_ok = obs->status_ok,
	    .status = obs->status,
	    .status_error = obs->status_error,
	    .ready_ok = obs->ready_ok,
	    .ready = obs->ready,
	    .ready_error = obs->ready_error,
	    .failing = obs->failing,
	    .failing_for_ms = obs->failing_for_ms,
	    .prov = obs->has_prov ? &obs->prov : NULL,
	    .cs = obs->has_cs ? &obs->cs : NULL,
	    .start = obs->has_start ? &obs->start : NULL,
	    .stored_reason = "",
	    .now_ms = obs->now_ms,
	    .db_now_ms = obs->db_now_ms,
	};
	recon_agent_settings_init(&in.settings);
	const char *st = NULL, *re = NULL;
	int64_t since = 0;
	if (stored_cond(srv, "AgentReady", &st, &re, &since)) {
		in.stored_reason = re;
		if (strcmp(st, "True") != 0)
			in.waiting_since_ms = since;
	}
	return recon_agent_plan_input(&in, plan);
}

static int agent_plan(const Config *cfg, const RuntimeServer *srv, const void *snapshot,
                      const void *obs, Plan *plan)
{
	(void)snapshot;
	return plan_common(cfg, srv, obs, false, plan);
}

static int agent_finalize(const Config *cfg, const RuntimeServer *srv, const void *snapshot,
                          const void *obs, Plan *plan)
{
	(void)snapshot;
	return plan_common(cfg, srv, obs, true, plan);
}

/* --- act --------------------------------------------------------------------------------------------- */

_printf_(3, 4) static int act_fail(ActResult *res, int r, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(res->error, sizeof res->error, fmt, ap);
	va_end(ap);
	return r < 0 ? r : -EIO;
}

/* A refusal the agent answered (nothing happened, and it will not happen
 * by repeating at once): the op is failed. An unknown outcome (no reply,
 * 5xx, 429/503) leaves it open at "call": the next observation decides.
 * Nothing sent: it stays at "intent". */
static void record_error(RecEnv *env, int64_t op_id, int r, const AgentError *e, bool *ret_refused)
{
	StoreError serr = {0};
	bool answered = e->http_status != 0;
	bool refused = answered &&
	               (r == -EINVAL || r == -EACCES || r == -EPERM || r == -ENOENT || r == -EBUSY);
	int k = 0;
	if (refused)
		k = journal_fail(env->db, env->epoch, op_id, e->message, &serr);
	else if (answered || http_outcome_unknown(r))
		k = journal_mark_call(env->db, env->epoch, op_id, &serr);
	if (k < 0 && k != -EALREADY)
		log_debug("agent: journal op %" PRId64 ": %s", op_id, serr.message);
	*ret_refused = refused;
}

static int key_of(const char *uid, const char *action, const char *part, int64_t inc, char *buf,
                  size_t n)
{
	return journal_key(uid, action, part, inc, buf, n);
}

static int act_provision(RecEnv *env, const RuntimeServer *srv, const AgentObs *obs,
                         const Action *a, ActResult *res)
{
	AgentWorker *w = env->wstate;
	const char *hash = json_string_value(json_object_get(a->args, "hash"));
	const char *prev = json_string_value(json_object_get(a->args, "prev"));
	const char *why = json_string_value(json_object_get(a->args, "why"));
	json_t *payload = json_object_get(a->args, "payload");
	if (!w || !hash || !json_is_object(payload) || !srv->ip)
		return act_fail(res, -EINVAL, "provision: bad arguments");
	char key[JOURNAL_KEY_MAX];
	int r = key_of(srv->uid, "provision", hash, obs->incarnation, key, sizeof key);
	if (r < 0)
		return act_fail(res, r, "provision: cannot build the journal key");
	_cleanup_json_ json_t *ip = json_pack("{s:s, s:s, s:O}", "hash", hash, "prev",
	                                      prev ? prev : "", "payload", payload);
	if (!ip)
		return act_fail(res, -ENOMEM, "provision: out of memory");
	StoreError serr = {0};
	JournalOp op = {0};
	r = journal_intent_retry(env->db, env->epoch, srv->uid, "provision", key, ip,
	                         obs->incarnation, &op, &serr);
	if (r < 0)
		return act_fail(res, r, "provision: journal intent: %s", serr.message);
	int64_t op_id = op.id;
	JournalStep step = op.step;
	journal_op_clear(&op);
	res->snapshot_updated = true;
	if (step == JOURNAL_STEP_HANDLE)
		return 0; /* answered already; the next plan records it */
	crash_point("provision", CRASH_STEP_INTENT);

	if (!rec_lease_valid(env))
		return act_fail(res, -ESTALE, "provision: lease not valid: no call made");
	AgentError e = {.retry_after_s = -1};
	r = agentapi_config(w->client, srv->ip, payload, &e);
	count(env, "POST", &e, r);
	if (r < 0) {
		bool refused = false;
		record_error(env, op_id, r, &e, &refused);
		if (refused)
			rec_event(env, srv, "Warning", "ConfigRejected",
			          "the agent refused configuration %.8s: %s", hash, e.message);
		return act_fail(res, r, "POST /config %.8s: %s%s", hash, e.message,
		                refused ? "" : " (the next observation decides)");
	}
	crash_point("provision", CRASH_STEP_CALL);
	r = journal_set_handle(env->db, env->epoch, op_id, hash, &serr);
	if (r < 0 && r != -EALREADY)
		return act_fail(res, r, "provision: journal handle: %s", serr.message);
	crash_point("provision", CRASH_STEP_HANDLE);
	_cleanup_json_ json_t *result = json_pack("{s:s}", "why", why ? why : "");
	r = journal_done(env->db, env->epoch, op_id, result, &serr);
	if (r < 0 && r != -EALREADY)
		return act_fail(res, r, "provision: journal done: %s", serr.message);
	crash_point("provision", CRASH_STEP_DONE);
	rec_event(env, srv, "Normal", "ConfigDelivered",
	          "configuration %.8s delivered to the agent (%s)", hash, why ? why : "");
	AgSettings s;
	recon_agent_settings_init(&s);
	res->requeue_after_ms = s.wait_min_ms;
	return 0;
}

static int act_settle(RecEnv *env, const char *crash_action, const Action *a, ActResult *res)
{
	json_int_t op_id = json_integer_value(json_object_get(a->args, "op"));
	const char *outcome = json_string_value(json_object_get(a->args, "outcome"));
	const char *error = json_string_value(json_object_get(a->args, "error"));
	if (op_id <= 0 || !outcome)
		return act_fail(res, -EINVAL, "%s: bad arguments", a->name);
	StoreError serr = {0};
	bool done = strcmp(outcome, "done") == 0;
	int r = done ? journal_done(env->db, env->epoch, op_id, NULL, &serr)
	             : journal_fail(env->db, env->epoch, op_id, error ? error : "failed", &serr);
	if (r < 0 && r != -EALREADY)
		return act_fail(res, r, "journal: %s", serr.message);
	if (done)
		crash_point(crash_action, CRASH_STEP_DONE);
	res->snapshot_updated = true;
	return 0;
}

/* codeserver and agent-start: one POST each, journaled like provision. */
static int act_simple(RecEnv *env, const RuntimeServer *srv, const AgentObs *obs, const Action *a,
                      ActResult *res)
{
	AgentWorker *w = env->wstate;
	bool cs = strcmp(a->name, "codeserver") == 0;
	bool want = json_is_true(json_object_get(a->args, "want"));
	json_int_t after = json_integer_value(json_object_get(a->args, "after"));
	if (!w || !srv->ip || after <= 0)
		return act_fail(res, -EINVAL, "%s: bad arguments", a->name);
	char part[48];
	if (cs)
		snprintf(part, sizeof part, "%s-%" PRId64, want ? "start" : "stop", (int64_t)after);
	else
		snprintf(part, sizeof part, "%" PRId64, (int64_t)after);
	char key[JOURNAL_KEY_MAX];
	int r = key_of(srv->uid, a->name, part, obs->incarnation, key, sizeof key);
	if (r < 0)
		return act_fail(res, r, "%s: cannot build the journal key", a->name);
	_cleanup_json_ json_t *ip = cs ? json_pack("{s:b, s:I}", "want", want, "after", after)
	                               : json_pack("{s:I}", "after", after);
	StoreError serr = {0};
	JournalOp op = {0};
	r = journal_intent_retry(env->db, env->epoch, srv->uid, a->name, key, ip, obs->incarnation,
	                         &op, &serr);
	if (r < 0)
		return act_fail(res, r, "%s: journal intent: %s", a->name, serr.message);
	int64_t op_id = op.id;
	journal_op_clear(&op);
	res->snapshot_updated = true;
	crash_point(a->name, CRASH_STEP_INTENT);

	if (!rec_lease_valid(env))
		return act_fail(res, -ESTALE, "%s: lease not valid: no call made", a->name);
	AgentError e = {.retry_after_s = -1};
	AgentOp aop = cs && !want ? AGENT_OP_STOP : AGENT_OP_START;
	r = cs ? agentapi_codeserver(w->client, srv->ip, aop, &e)
	       : agentapi_power(w->client, srv->ip, aop, &e);
	count(env, "POST", &e, r);
	if (r < 0) {
		bool refused = false;
		record_error(env, op_id, r, &e, &refused);
		return act_fail(res, r, "%s: %s", a->description, e.message);
	}
	crash_point(a->name, CRASH_STEP_CALL);
	r = journal_set_handle(env->db, env->epoch, op_id, agentapi_op_to_string(aop), &serr);
	if (r < 0 && r != -EALREADY && r != -EEXIST)
		return act_fail(res, r, "%s: journal handle: %s", a->name, serr.message);
	crash_point(a->name, CRASH_STEP_HANDLE);
	r = journal_done(env->db, env->epoch, op_id, NULL, &serr);
	if (r < 0 && r != -EALREADY)
		return act_fail(res, r, "%s: journal done: %s", a->name, serr.message);
	crash_point(a->name, CRASH_STEP_DONE);
	if (cs)
		rec_event(env, srv, "Normal", want ? "CodeServerStarted" : "CodeServerStopped",
		          "code-server %s", want ? "started" : "stopped");
	else
		rec_event(env, srv, "Normal", "WorkloadStarted",
		          "the workload was stopped while spec.power is running: started");
	return 0;
}

static int act_event(RecEnv *env, const RuntimeServer *srv, const Action *a, ActResult *res)
{
	const char *type = json_string_value(json_object_get(a->args, "type"));
	const char *reason = json_string_value(json_object_get(a->args, "reason"));
	const char *message = json_string_value(json_object_get(a->args, "message"));
	if (!type || !reason)
		return act_fail(res, -EINVAL, "event: bad arguments");
	rec_event(env, srv, type, reason, "%s", message ? message : "");
	res->snapshot_updated = true;
	return 0;
}

static int agent_act(RecEnv *env, const RuntimeServer *srv, void *snapshot, void *obs_v,
                     const Action *action, ActResult *res)
{
	(void)snapshot;
	const AgentObs *obs = obs_v;
	if (!env || !srv || !action || !res || !obs)
		return -EINVAL;
	const char *n = action->name;
	if (strcmp(n, "event") == 0)
		return act_event(env, srv, action, res);
	if (!env->db)
		return act_fail(res, -ENOTCONN, "no database connection");
	if (strcmp(n, "provision") == 0)
		return act_provision(env, srv, obs, action, res);
	if (strcmp(n, "settle-provision") == 0)
		return act_settle(env, "provision", action, res);
	if (strcmp(n, "codeserver") == 0 || strcmp(n, "agent-start") == 0)
		return act_simple(env, srv, obs, action, res);
	if (strcmp(n, "settle-codeserver") == 0)
		return act_settle(env, "codeserver", action, res);
	return act_fail(res, -EINVAL, "unknown action %s", n);
}

const Reconciler recon_agent = {
    .name = "agent",
    .order = 20,
    .conditions = agent_conditions,
    .uses_finalizer = false,
    .enabled = agent_enabled,
    .init = agent_init,
    .done = agent_done,
    .worker_init = agent_worker_init,
    .worker_done = agent_worker_done,
    .observe = agent_observe,
    .snapshot_free = agent_snapshot_free,
    .observe_server = agent_observe_server,
    .obs_free = agent_obs_free,
    .plan = agent_plan,
    .finalize = agent_finalize,
    .act = agent_act,
};
