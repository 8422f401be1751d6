/* agent.h - the agent reconciler (recon_agent): the zlh-agent inside each
 * running container is provisioned with the server's payload, its state
 * and readiness become the conditions AgentReady and Provisioned, and a
 * DevServer's code-server follows spec.codeServer (DESIGN.md sections 4, 6
 * and 7; issue 6). Order 20; no finalizer (nothing of it outlives the
 * container).
 *
 * How the runtime drives it:
 *   observe         nothing shared (a stub snapshot holding the time)
 *   init            per-process state: since when each server's agent probes
 *                   have been failing (hysteresis, AgSettings.unreachable_grace_ms)
 *   observe_server  the store (incarnation and the database clock: one
 *                   query; the latest provision / codeserver / agent-start
 *                   operation of this incarnation: one query), and - only
 *                   while spec.power is running, ContainerReady is True with
 *                   reason Running and the server has an address - the
 *                   agent: GET /health, then GET /status, then (state
 *                   running) GET /ready, each after a token of the "agent"
 *                   rate limit. A failed call is an observation
 *                   (Unreachable...), never an error of the pass.
 *   plan/finalize   recon_agent_plan_input() on an AgInput. Pure: the
 *                   clocks come in through the input.
 *   act             provision (POST /config), codeserver (POST
 *                   /dev/codeserver/start|stop), agent-start (POST /start):
 *                   journaled intent -> lease check -> call -> handle ->
 *                   done; settle-provision | settle-codeserver (store
 *                   only); event (an event on a state transition).
 *
 * The payload and its hash: recon_agent_payload() builds production's
 * payload from the spec (agentapi.h); its hash is sha256 of the compact,
 * key-sorted JSON. The agent does not say which payload it holds, so the
 * journal does: "<uid>:provision:<hash>:<incarnation>" (attempt n >= 2:
 * "#n") with payload {"hash","prev","payload"}, where prev is the hash that
 * may already be on the agent ("" on a fresh container). A new incarnation
 * (the container was made again) has no provision operation yet: the
 * payload is delivered again. Code-server: "<uid>:codeserver:<start|stop>-
 * <provision op id>:<incarnation>" with {"want","after"}; workload start:
 * "<uid>:agent-start:<provision op id>:<incarnation>".
 *
 * Crash points (lib/crash.h): action "provision", steps intent (committed,
 * POST not made), call (POST answered, handle not saved), handle (the
 * delivered hash saved as the handle), done; "codeserver" and
 * "agent-start" likewise. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "controller/reconciler.h"
#include "db/journal.h"
#include "reconcilers/agentapi.h"

extern const Reconciler recon_agent;
#define ZLH_HAVE_RECON_AGENT 1

typedef struct AgSettings {
	/* Waiting (container, install, readiness, an unreachable agent):
	 * look again after half the time waited so far, within [min, max]. */
	int64_t wait_min_ms; /* 500 */
	int64_t wait_max_ms; /* 15 s */
	/* An agent that reports idle after a delivered configuration gets
	 * this long (doubled per attempt) before the payload is posted again. */
	int64_t idle_grace_ms; /* 5 s */
	/* A refused POST (4xx) is retried after base * 2^(attempt-1), capped. */
	int64_t retry_base_ms; /* 10 s */
	int64_t retry_max_ms; /* 10 min */
	/* At most one POST /start per this long (a stopped workload). */
	int64_t start_interval_ms; /* 60 s */
	/* An agent that was Ready and stops answering stays Ready (re-checked
	 * every recheck_ms) until its probes have failed this long: one lost
	 * reply does not flip Ready, unregister it or page anyone. */
	int64_t unreachable_grace_ms; /* 3 s */
	int64_t recheck_ms; /* 1 s */
} AgSettings;

void recon_agent_settings_init(AgSettings *s);

/* One journal operation as the plan needs it (id 0 = none). */
typedef struct AgOp {
	int64_t id;
	JournalStep step;
	int64_t attempt;
	char hash[65]; /* provision: the payload's hash */
	char prev[65]; /* provision: what may have been on the agent before */
	bool want; /* codeserver: on */
	int64_t after; /* codeserver, agent-start: the provision op id it followed */
	int64_t completed_ms; /* database clock; 0 while open */
	char error[160];
} AgOp;

/* Everything the plan looks at. Pointers borrowed. */
typedef struct AgInput {
	const char *uid;
	bool dev; /* DevServer (code-server applies) */
	bool deleting;
	bool power_running; /* spec.power running */
	bool container_running; /* ContainerReady True, reason Running, and an ip */
	const char *ip;

	/* desired */
	const json_t *payload; /* NULL: it could not be built (payload_error) */
	const char *payload_error;
	const char *hash; /* the payload's hash (64 hex) */
	bool codeserver_want; /* spec.codeServer (DevServer) */

	/* the agent (probed only while the container runs) */
	bool probed;
	bool healthy; /* GET /health answered 2xx */
	const char *health_error;
	bool status_ok;
	AgentStatus status;
	const char *status_error;
	bool ready_ok; /* GET /ready answered (ready or not) */
	AgentReadiness ready;
	const char *ready_error; /* /ready did not answer */
	/* The probes failed (health, status, or /ready without an answer)
	 * in this pass; failing_for_ms: since the first failure of the current
	 * run of failures (0 on the first). Kept per process. */
	bool failing;
	int64_t failing_for_ms;

	/* the journal, this incarnation (NULL: none) */
	const AgOp *prov; /* latest "provision" */
	const AgOp *cs; /* latest "codeserver" */
	const AgOp *start; /* latest "agent-start" */

	/* the stored status */
	const char *stored_reason; /* AgentReady's reason ("" none) */
	int64_t waiting_since_ms; /* AgentReady's lastTransitionTime while not True; 0 */

	int64_t now_ms; /* controller wall clock */
	int64_t db_now_ms; /* database clock (journal times) */
	AgSettings settings;
} AgInput;

/* The pure plan (decision table at the top of agent.c). Fills AgentReady
 * and Provisioned and the actions:
 *   "provision"          {"hash","prev","payload","why"}
 *   "settle-provision"   {"op","outcome":"done"|"failed","error"?}
 *   "codeserver"         {"want","after"}
 *   "settle-codeserver"  {"op","outcome","error"?}
 *   "agent-start"        {"after"}
 *   "event"              {"type","reason","message"}
 * 0, or -EINVAL (bad input), -E2BIG. */
int recon_agent_plan_input(const AgInput *in, Plan *plan) _must_check_;

/* --- pure helpers (exposed for tests) ---------------------------------------------------- */

/* The agent payload of a server (kind "GameServer" | "DevServer", its
 * canonical spec, its vmid) as agentapi.h builds it, and its hash.
 * 0 and *ret (new) + hash, or -EINVAL with a reason in err (n bytes). */
int recon_agent_payload(const char *kind, const json_t *spec, int64_t vmid, json_t **ret,
                        char hash[65], char *err, size_t n) _must_check_;
/* How long to wait before looking again, having waited waited_ms. */
int64_t recon_agent_wait_ms(const AgSettings *s, int64_t waited_ms);
/* Fills an AgOp from a journal row. */
void recon_agent_op_from_journal(const JournalOp *op, AgOp *ret);

/* The snapshot and obs (exposed for tests driving the vtable). */
typedef struct AgentSnapshot {
	int64_t at_ms;
} AgentSnapshot;

typedef struct AgentObs {
	int64_t now_ms;
	int64_t db_now_ms;
	int64_t incarnation;
	bool probed, healthy, status_ok, ready_ok;
	bool failing;
	int64_t failing_for_ms;
	AgentStatus status;
	AgentReadiness ready;
	char health_error[256], status_error[256], ready_error[256];
	bool has_prov, has_cs, has_start;
	AgOp prov, cs, start;
} AgentObs;
