/* reconciler.h - the interface between the controller runtime and the
 * reconcilers (DESIGN.md sections 3, 7 and 8).
 *
 * A reconciler owns one concern (container, agent, backup, proxy, dns), the
 * condition types of that concern, and optionally a finalizer. It is a
 * const Reconciler table of functions; the runtime drives it:
 *
 *   once per pass      observe(env) -> snapshot     bulk, shared by all
 *                                                   workers (one
 *                                                   /cluster/resources, one
 *                                                   /zpack/status, one DNS
 *                                                   listing); optional
 *   per server         observe_server(env, srv, snapshot) -> obs
 *                                                   the server's own state
 *                                                   (journal rows, one agent
 *                                                   GET); optional
 *                      plan(cfg, srv, snapshot, obs, &plan)
 *                                                   PURE: desired + observed
 *                                                   -> conditions + actions
 *                      act(env, srv, snapshot, obs, action, &result)
 *                                                   performs ONE action
 *                                                   through a client
 *   server deleting    finalize(cfg, srv, snapshot, obs, &plan)
 *                                                   PURE, like plan: the
 *                                                   actions that make this
 *                                                   reconciler's objects
 *                                                   absent; none = done
 *
 * How the runtime works one key (controller/loop.c):
 *   load the server (one query) -> for each enabled reconciler in `order`
 *   (finalize: in reverse order, dns -> proxy -> backup -> agent ->
 *   container): get a fresh-enough snapshot, observe_server, plan; unless
 *   the server is paused (annotation zlh.dev/paused: "true": observe and
 *   report only), perform the plan's actions in order, each after
 *     - stopping() is false (SIGTERM drain: no new acts),
 *     - lease_valid() (the leader's lease holds for the configured margin;
 *       otherwise nothing more is done for this key),
 *     - the action's system's rate-limit token,
 *   and stop at the first action that fails or asks to wait
 *   (result.requeue_after_ms > 0); an act that observed something for the
 *   plan (result.replan) makes the runtime plan again at once, up to 4
 *   rounds per pass. After a performed action the next plan of
 *   that reconciler for this server waits for a snapshot taken after the act
 *   (unless act set result.snapshot_updated): acting on a stale observation
 *   would repeat the action. Then the runtime writes the status (fenced by
 *   the lease epoch): conditions, Ready (every condition True), phase,
 *   observedGeneration, lastError; and requeues the key: with backoff when
 *   something failed, after the smallest requeue_after_ms asked, soon when
 *   an action was performed, or not at all (the next resync comes).
 *
 * Conditions: a reconciler reports each condition type it owns in every
 * plan (plan_condition). A type no enabled reconciler owns is True with
 * reason Disabled; one that does not apply to the kind is reported by its
 * reconciler as True with reason NotApplicable. lastTransitionTime changes
 * only when the status really changes.
 *
 * Finalizers: when `uses_finalizer` is set, the runtime adds the
 * reconciler's name to the server's finalizers before the first action of
 * that reconciler is performed, and removes it once finalize() returns a
 * plan without actions during deletion. The row is removed when no
 * finalizer is left. A finalizer of a reconciler that is switched off
 * blocks the removal (reported in lastError) rather than leak its objects.
 *
 * Registering: add reconcilers/NAME.c defining
 *     const Reconciler recon_NAME = { .name = "NAME", ... };
 * and reconcilers/NAME.h declaring it plus the marker macro:
 *     extern const Reconciler recon_NAME;
 *     #define ZLH_HAVE_RECON_NAME 1
 * for NAME in container, agent, backup, proxy, dns. controller/registry.c
 * includes those headers when they exist (__has_include) and lists the
 * reconcilers whose marker is defined (after adding the header to a built
 * tree, `touch controller/registry.c` or make clean: make does not know a
 * new header can change it).
 *
 * Layering: reconcilers/ sit below controller/ in the link order, so this
 * header only declares types and static inline helpers; everything the
 * runtime offers a reconciler at run time comes through RecEnv's hooks. */
#pragma once

#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <jansson.h>
#include <libpq-fe.h>

#include "controller/config.h"
#include "db/runtime.h"

/* --- conditions ---------------------------------------------------------------- */

typedef enum CondType {
	COND_ALLOCATED,
	COND_CONTAINER_READY,
	COND_AGENT_READY,
	COND_PROVISIONED,
	COND_PROXY_REGISTERED,
	COND_DNS_READY,
	COND_BACKUPS_HEALTHY,
	COND_READY, /* computed by the runtime: every other condition True */
	_COND_TYPE_MAX,
	_COND_TYPE_INVALID = -1,
} CondType;

typedef enum CondStatus {
	COND_UNKNOWN,
	COND_TRUE,
	COND_FALSE,
	_COND_STATUS_MAX,
} CondStatus;

static inline const char *cond_type_name(CondType t)
{
	static const char *const n[_COND_TYPE_MAX] = {
	    "Allocated",       "ContainerReady", "AgentReady",     "Provisioned",
	    "ProxyRegistered", "DNSReady",       "BackupsHealthy", "Ready",
	};
	return t >= 0 && t < _COND_TYPE_MAX ? n[t] : NULL;
}

static inline CondType cond_type_from_name(const char *s)
{
	for (int t = 0; s && t < _COND_TYPE_MAX; t++)
		if (strcmp(cond_type_name((CondType)t), s) == 0)
			return (CondType)t;
	return _COND_TYPE_INVALID;
}

static inline const char *cond_status_name(CondStatus s)
{
	return s == COND_TRUE ? "True" : s == COND_FALSE ? "False" : "Unknown";
}

/* What a plan reports for one condition type. */
typedef struct CondReport {
	bool set;
	CondStatus status;
	char reason[64]; /* CamelCase, e.g. Creating, TaskFailed, NotApplicable */
	char message[512];
} CondReport;

/* --- plans and actions ------------------------------------------------------------- */

typedef struct Action {
	/* What it does; also the crash-point action name of DESIGN.md 7.6
	 * ("create", "clone", "config", "register", "dns-create", ...). */
	char name[32];
	/* Rate-limit bucket: "proxmox", "agent", "velocity", "dns", or NULL. */
	const char *system;
	/* Proxmox node the action runs a task on ("" when none); the
	 * reconciler takes a task slot through hooks->task_slot_acquire. */
	char node[64];
	/* An external mutating call: the runtime checks the lease first. */
	bool mutating;
	/* Parameters for act (owned by the plan; reconciler-defined). */
	json_t *args;
	/* One line for logs, events and `zlhctl plan`. */
	char description[192];
} Action;

#define PLAN_MAX_ACTIONS 16

typedef struct Plan {
	CondReport conditions[_COND_TYPE_MAX];
	Action actions[PLAN_MAX_ACTIONS];
	size_t n_actions;
	/* Look again after this long even when nothing is to be done now
	 * (a task running, an agent not ready yet). 0 = no need. */
	int64_t requeue_after_ms;
	/* The server cannot converge without a human (e.g. the spec asks for
	 * something impossible): phase Failed, no backoff storm. */
	bool failed;
} Plan;

/* Reports one condition (the last report of a type wins). */
_printf_(5, 6) static inline void plan_condition(Plan *p, CondType t, CondStatus s,
                                                 const char *reason, const char *fmt, ...)
{
	if (t < 0 || t >= _COND_TYPE_MAX)
		return;
	CondReport *c = &p->conditions[t];
	c->set = true;
	c->status = s;
	snprintf(c->reason, sizeof c->reason, "%s", reason ? reason : "");
	c->message[0] = 0;
	if (fmt) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(c->message, sizeof c->message, fmt, ap);
		va_end(ap);
	}
}

/* Appends an action. args (takes; may be NULL). 0 or -E2BIG (plan full:
 * args is released). */
_printf_(7, 8) static inline int plan_action(Plan *p, const char *name, const char *system,
                                             const char *node, bool mutating, json_t *args,
                                             const char *fmt, ...)
{
	if (p->n_actions >= PLAN_MAX_ACTIONS) {
		json_decref(args);
		return -7; /* E2BIG */
	}
	Action *a = &p->actions[p->n_actions++];
	memset(a, 0, sizeof *a);
	snprintf(a->name, sizeof a->name, "%s", name);
	a->system = system;
	snprintf(a->node, sizeof a->node, "%s", node ? node : "");
	a->mutating = mutating;
	a->args = args;
	if (fmt) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(a->description, sizeof a->description, fmt, ap);
		va_end(ap);
	}
	return 0;
}

/* Asks for another look after ms (the smallest request wins). */
static inline void plan_requeue_after(Plan *p, int64_t ms)
{
	if (ms > 0 && (p->requeue_after_ms == 0 || ms < p->requeue_after_ms))
		p->requeue_after_ms = ms;
}

/* Releases the actions' args and empties the plan. */
static inline void plan_clear(Plan *p)
{
	for (size_t i = 0; i < p->n_actions; i++)
		json_decref(p->actions[i].args);
	memset(p, 0, sizeof *p);
}

/* The outcome of one act, besides its return value (0 done, < 0 failed:
 * the key backs off; the error text goes to status.lastError). */
typedef struct ActResult {
	/* The action started something that is not finished (a Proxmox
	 * task): look again after this long; later actions wait. */
	int64_t requeue_after_ms;
	/* act updated the snapshot itself (under its own lock): the next plan
	 * needs no fresh observation. */
	bool snapshot_updated;
	/* The action was an observation (read a config, poll a task) whose
	 * result act stored in obs: plan again now, in the same pass, instead
	 * of performing the rest of this plan (at most 4 rounds a pass). */
	bool replan;
	/* On failure: what went wrong, for lastError and the event. */
	char error[256];
} ActResult;

/* --- what the runtime offers while observing and acting ---------------------------- */

typedef struct RuntimeHooks {
	/* True while this process holds the lease for at least the
	 * configured margin. Check it right before every external mutating
	 * call an act makes (the runtime checks once before each act). */
	bool (*lease_valid)(void *ctx);
	/* Takes a token of system's rate limit, waiting for it. 0, or
	 * -ECANCELED when the controller is stopping. */
	int (*rate_wait)(void *ctx, const char *system);
	/* Proxmox task slots per node (max_tasks_per_node), held by holder
	 * (a UPID or the uid) across reconciles until released. 0 or -EBUSY
	 * (requeue_after instead of waiting). Idempotent per holder. */
	int (*task_slot_acquire)(void *ctx, const char *node, const char *holder);
	void (*task_slot_release)(void *ctx, const char *node, const char *holder);
	/* Counts one external call for the metrics: system "proxmox" |
	 * "agent" | "velocity" | "dns", method "GET"..., status the HTTP
	 * status or 0 when no response arrived. */
	void (*count_call)(void *ctx, const char *system, const char *method, long status);
	/* Records an event about srv (type "Normal" | "Warning"), fenced and
	 * deduplicated. Best effort: failures are logged by the runtime. */
	void (*event)(void *ctx, const RuntimeServer *srv, const char *type, const char *reason,
	              const char *message);
	/* True once SIGTERM arrived: finish the current call, start none. */
	bool (*stopping)(void *ctx);
} RuntimeHooks;

typedef struct RecEnv {
	const Config *cfg; /* borrowed */
	/* The worker's own connection (borrowed) for the store's journal and
	 * allocation calls; writes must carry `epoch` (zlh.fence). */
	PGconn *db;
	int64_t epoch; /* the lease epoch this worker acts under */
	void *state; /* the reconciler's per-process state (init) */
	void *wstate; /* the reconciler's per-worker state (worker_init) */
	const RuntimeHooks *hooks;
	void *hooks_ctx;
} RecEnv;

static inline bool rec_lease_valid(const RecEnv *env)
{
	return env->hooks && env->hooks->lease_valid ? env->hooks->lease_valid(env->hooks_ctx)
	                                             : false;
}

static inline int rec_rate_wait(const RecEnv *env, const char *system)
{
	return env->hooks && env->hooks->rate_wait ? env->hooks->rate_wait(env->hooks_ctx, system)
	                                           : 0;
}

static inline bool rec_stopping(const RecEnv *env)
{
	return env->hooks && env->hooks->stopping ? env->hooks->stopping(env->hooks_ctx) : false;
}

static inline void rec_count_call(const RecEnv *env, const char *system, const char *method,
                                  long status)
{
	if (env->hooks && env->hooks->count_call)
		env->hooks->count_call(env->hooks_ctx, system, method, status);
}

_printf_(5, 6) static inline void rec_event(const RecEnv *env, const RuntimeServer *srv,
                                            const char *type, const char *reason, const char *fmt,
                                            ...)
{
	if (!env->hooks || !env->hooks->event)
		return;
	char msg[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	env->hooks->event(env->hooks_ctx, srv, type, reason, msg);
}

/* --- the reconciler ------------------------------------------------------------------ */

typedef struct Reconciler {
	/* "container", "agent", "backup", "proxy", "dns": the metrics label
	 * and the finalizer name. */
	const char *name;
	/* Dependency order: lower acts first, finalizes last (container 10,
	 * agent 20, backup 30, proxy 40, dns 50). */
	int order;
	/* The condition types it reports, ended by _COND_TYPE_MAX. */
	const CondType *conditions;
	/* Add the name to servers' finalizers before the first act. */
	bool uses_finalizer;

	/* Whether the config switches it on (its section is present). */
	bool (*enabled)(const Config *cfg);

	/* Optional: per-process state (clients' shared settings). */
	int (*init)(const Config *cfg, void **ret_state);
	void (*done)(void *state);
	/* Optional: per-worker-thread state (an HttpClient: one easy handle,
	 * one keep-alive connection pool per thread). */
	int (*worker_init)(const Config *cfg, void *state, void **ret_wstate);
	void (*worker_done)(void *wstate);

	/* Optional: bulk observation (new snapshot). A failed list is
	 * "unknown", never "empty": return an error, and no plan runs on it. */
	int (*observe)(RecEnv *env, void **ret_snapshot);
	void (*snapshot_free)(void *snapshot);

	/* Optional: the server's own observation (new). */
	int (*observe_server)(RecEnv *env, const RuntimeServer *srv, const void *snapshot,
	                      void **ret_obs);
	void (*obs_free)(void *obs);

	/* Pure: no I/O, no clock reads (time comes in through obs). Fills
	 * plan's conditions and actions. 0 or -errno (the plan could not be
	 * made: the key backs off, conditions stay as they were). */
	int (*plan)(const Config *cfg, const RuntimeServer *srv, const void *snapshot,
	            const void *obs, Plan *plan);
	/* Pure, during deletion: actions that make this reconciler's objects
	 * absent; an empty plan means done (its finalizer is removed). */
	int (*finalize)(const Config *cfg, const RuntimeServer *srv, const void *snapshot,
	                const void *obs, Plan *plan);
	/* Performs one action of a plan. It may record what it saw in obs
	 * (this reconcile's own, then set res->replan to plan again) or in the
	 * snapshot under the reconciler's own lock (then set
	 * res->snapshot_updated). Journal and allocation writes go through the
	 * store on env->db carrying env->epoch (zlh.fence). */
	int (*act)(RecEnv *env, const RuntimeServer *srv, void *snapshot, void *obs,
	           const Action *action, ActResult *res);
} Reconciler;

/* The reconcilers compiled in (controller/registry.c), ordered by `order`,
 * NULL-terminated (static). */
const Reconciler *const *recon_registry(void);
