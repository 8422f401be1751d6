/* proxy.h - the proxy reconciler (recon_proxy): Velocity registrations of
 * published GameServers (DESIGN.md sections 6 and 7, issue 6). Condition
 * ProxyRegistered; finalizer "proxy".
 *
 * How the runtime drives it:
 *   observe         one GET /zpack/status per pass (ProxySnapshot); a
 *                   failed list is unknown: no plan runs on it
 *   observe_server  the journal's latest "register" and "unregister"
 *                   operations of the server (any incarnation) and its
 *                   current incarnation (ProxyObs)
 *   plan/finalize   recon_proxy_plan_input() on a PxInput built from the
 *                   server row, its stored conditions (AgentReady), the
 *                   snapshot and the obs. Pure.
 *   act             register | unregister (one Velocity call each, journaled:
 *                   intent -> call -> handle (the server name) -> done) or
 *                   settle-register | settle-unregister (store only: an open
 *                   operation whose outcome the listing has now shown).
 *
 * Ownership lives in the database: the controller unregisters only names
 * its journal says it registered for that server. A static server of
 * velocity.toml (a lobby), or anything registered by hand, is never
 * touched, even when it carries a server's hostname (that is a Conflict).
 *
 * Journal keys (db/journal.h): register "<uid>:register:<address>:<inc>",
 * unregister "<uid>:unregister:<name>:<inc>", written with
 * journal_intent_retry: an open attempt is resumed (a crash after the
 * intent), a completed one gets a new attempt (a Velocity restart forgot
 * the registration: the next pass registers again as attempt #n+1).
 * Payloads: register {"server_name","address","port"}, unregister
 * {"server_name"}; the handle of both is the server name.
 *
 * Crash points (lib/crash.h): actions "register" and "unregister", steps
 * intent, call, handle, done. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "controller/reconciler.h"
#include "db/journal.h"
#include "reconcilers/velocity.h"

extern const Reconciler recon_proxy;
#define ZLH_HAVE_RECON_PROXY 1

#define PROXY_GAME_PORT 25565

typedef struct PxSettings {
	int64_t port; /* the Minecraft port registered (25565) */
	/* A registered server whose agent stops being ready stays registered
	 * this long (a restart, a short hiccup), then is unregistered. */
	int64_t unready_grace_ms; /* 60 s */
	/* Look again this soon while waiting for the container or the agent
	 * (the agent reconciler reports AgentReady in the status). */
	int64_t wait_requeue_ms; /* 3 s */
} PxSettings;

void recon_proxy_settings_init(PxSettings *s);

/* One journal row as the plan needs it (id 0 = none). */
typedef struct PxOp {
	int64_t id;
	JournalStep step;
	char name[VELOCITY_NAME_MAX]; /* payload server_name */
	char address[VELOCITY_ADDRESS_MAX]; /* register: payload address */
	int64_t port; /* register: payload port */
} PxOp;

/* Everything the plan looks at. Pointers borrowed. */
typedef struct PxInput {
	bool game; /* kind GameServer (DevServer: NotApplicable) */
	bool deleting; /* finalize */
	bool publish; /* spec.publish (default true) */
	bool running; /* spec.power running */
	const char *hostname; /* allocated hostname, NULL = none yet */
	const char *ip; /* container IP, NULL = none yet */
	bool agent_ready; /* AgentReady True (also Disabled/NotApplicable) */
	int64_t agent_since_ms; /* wall ms of AgentReady's last transition, 0 unknown */
	int64_t now_ms; /* wall clock */
	const VelocityServer *listed; /* /zpack/status */
	size_t n_listed;
	const PxOp *reg; /* latest register op, or NULL */
	const PxOp *unreg; /* latest unregister op, or NULL */
	PxSettings settings;
} PxInput;

/* The pure plan (decision table at the top of proxy.c). Fills plan's
 * ProxyRegistered condition and actions:
 *   "register"          args {"server_name","address","port"}
 *   "unregister"        args {"server_name"}
 *   "settle-register"   args {"op","outcome":"done"|"failed","handle"?,"error"?}
 *   "settle-unregister" (same args)
 * 0, or -EINVAL (bad input). */
int recon_proxy_plan_input(const PxInput *in, Plan *plan) _must_check_;

/* AgentReady from a stored conditions array (borrowed): *ret_ready (True),
 * *ret_since_ms (its lastTransitionTime as wall ms, 0 when absent or
 * unreadable). A missing condition is not ready. */
void recon_proxy_agent_ready(const json_t *conditions, bool *ret_ready, int64_t *ret_since_ms);

/* The key of a register/unregister intent into buf: journal_key with the
 * address / name made key-safe (characters outside [A-Za-z0-9._-] become
 * '-', cut at 64). Returns the length or -errno. */
int recon_proxy_key(const char *uid, const char *action, const char *part, int64_t incarnation,
                    char *buf, size_t n) _must_check_;

/* The snapshot observe() returns and the obs of observe_server(); exposed
 * for tests that drive the reconciler without the runtime. */
typedef struct ProxySnapshot {
	VelocityServers servers;
	int64_t listed_at_ms; /* wall ms the listing was asked for */
} ProxySnapshot;

typedef struct ProxyObs {
	int64_t incarnation;
	bool has_reg, has_unreg;
	PxOp reg, unreg;
	int64_t now_ms;
} ProxyObs;

/* Fills a PxOp from a journal row (payload server_name/address/port). */
void recon_proxy_op_from_journal(const JournalOp *op, PxOp *ret);
