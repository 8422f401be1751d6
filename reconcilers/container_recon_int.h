/* container_recon_int.h - what container_recon.c (observe, plan) and
 * container_act.c (act) share. Not for other modules. */
#pragma once

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "controller/reconciler.h"
#include "db/alloc.h"
#include "db/container_extra.h"
#include "db/journal.h"
#include "reconcilers/container.h"
#include "reconcilers/pve.h"

#define CT_POLL_MIN_MS 150 /* first task poll after the call */
#define CT_POLL_MAX_MS 3000
#define CT_SOON_MS 50 /* look again soon (a fresh list is needed) */
#define CT_SLOT_WAIT_MS 200 /* a task slot or the template is busy */
#define CT_RETRY_MS 1000 /* nothing happened (refused connection, 503) */
#define CT_BACKOFF_BASE_MS 2000 /* first retry after a failed call/task */
#define CT_BACKOFF_MAX_MS 30000
#define CT_MAX_OPEN 64

typedef struct CtGate CtGate;

/* Per process (init). Strings borrowed from the Config. */
typedef struct CtState {
	const Config *cfg;
	CtSettings base;
	CtTemplate *templates; /* from the config; node NULL: resolved per list */
	size_t n_templates;
	const char **nodes; /* proxmox.nodes */
	pthread_mutex_t lock; /* gates, orphans, sent */
	CtGate **gates;
	size_t n_gates;
	int64_t (*sent)[2]; /* {op id, mono ms}: create/clone calls this process sent */
	size_t n_sent;
	/* Per operation type, when to poll a new task first (ms after the
	 * call; 0 = not learned yet), and the tasks polled once already. */
	int64_t first_poll[_CT_OP_MAX];
	uint64_t polled[64]; /* hashes of UPIDs seen running (ring) */
	size_t n_polled;
	json_t *orphans; /* "vmid" -> kind, reported */
} CtState;

/* One /cluster/resources observation (refcounted: a refresh swaps it). */
typedef struct CtList {
	int refs;
	PveResources res;
	int64_t listed_at_wall; /* local wall ms the guest list was asked for */
	CtTemplate *templates; /* resolved: every node filled */
	size_t n_templates;
	char (*tnodes)[PVE_NODE_MAX];
} CtList;

/* The runtime's snapshot: the current list, replaced by REFRESH_LIST. */
typedef struct CtSnap {
	CtState *st;
	pthread_mutex_t lock;
	CtList *list;
} CtSnap;

/* One reconcile's own observation. */
typedef struct CtObs {
	CtState *st;
	int64_t epoch; /* the lease epoch of this reconcile */
	CtStoreView view;
	int64_t skew_ms; /* database wall clock - local wall clock */
	bool has_alloc;
	Allocation alloc;
	JournalOp *jops; /* latest row per action of view.incarnation */
	size_t n_jops;
	CtOp ops[_CT_OP_MAX];
	size_t n_ops;
	JournalOp *open; /* open rows of the server (any incarnation) */
	size_t n_open;
	CtReserved *reserved;
	AllocReserved *areserved;
	size_t n_reserved;
	bool has_config;
	PveCtConfig config;
	bool has_status;
	PveCtStatus status;
	bool has_task;
	PveTaskStatus task;
	char task_upid[PVE_UPID_MAX];
} CtObs;

/* Everything the plan and the builders take, borrowed from srv, obs and
 * list (valid while those are). */
typedef struct CtInputs {
	CtDesired d;
	CtAllocation a;
	CtJournal j;
	CtObserved o;
	CtSettings s;
} CtInputs;

CtList *ct_list_ref(CtSnap *snap);
void ct_list_unref(CtList *l);
/* A new list from Proxmox (count_call'ed). 0 or -errno, err filled. */
int ct_list_fetch(RecEnv *env, CtList **ret, PveError *err);
/* Puts l (takes a reference) into snap when it is newer. */
void ct_snap_offer(CtSnap *snap, CtList *l);

/* (Re)loads the store part of obs (view, allocation, journal, reserved). */
int ct_obs_load(RecEnv *env, const RuntimeServer *srv, CtObs *o, char *errbuf, size_t n);
void ct_obs_clear_reads(CtObs *o);

int ct_inputs(const RuntimeServer *srv, const CtObs *o, const CtList *l, CtInputs *ret);

/* Releases what srv holds: its task slots on every node, its gates. */
void ct_release_slots(RecEnv *env, const RuntimeServer *srv, const CtList *l, const CtObs *o);

/* Capacity gates (container_gate.c): "node:<node>" with max_tasks_per_node
 * holders, "tmpl:<vmid>" with one. check: 0 = uid may go now, else the
 * milliseconds until its turn is likely (uid queued as a waiter). take:
 * true when uid holds it now. release: measure = a task really ran (its
 * holding time feeds the estimate). */
int64_t ct_gate_check(CtState *st, const char *name, int capacity, const char *uid);
bool ct_gate_take(CtState *st, const char *name, int capacity, const char *uid);
void ct_gate_release(CtState *st, const char *name, const char *uid, bool measure);
void ct_gate_release_uid(CtState *st, const char *uid, bool measure);
bool ct_gate_holds(CtState *st, const char *uid);
/* How long until uid's turn at a gate it waits at (0: none, or now). */
int64_t ct_gate_pending(CtState *st, const char *uid);
void ct_gates_free(CtState *st);

/* The hostname prefix of the default hostname ("mc-paper-", "dev-"). */
void ct_hostname_prefix(const RuntimeServer *srv, char *buf, size_t n);

/* Task timing: a poll of upid (type t) saw it running or done; returns
 * when to poll again (running). The delay of the first poll after a call. */
int64_t ct_task_polled(CtState *st, CtOpType t, const char *upid, bool running, int64_t age_ms);
int64_t ct_task_first_poll(CtState *st, CtOpType t);

/* A create/clone call of op id is about to be sent (or was): its intent
 * is no longer "certainly unsent". */
void ct_sent_mark(CtState *st, int64_t op_id);
bool ct_sent_has(CtState *st, int64_t op_id);

/* The act entry point (container_act.c). */
int ct_act(RecEnv *env, const RuntimeServer *srv, void *snapshot, void *obs, const Action *action,
           ActResult *res);

/* CtAction <-> Action.args */
json_t *ct_action_to_json(const CtAction *a);
int ct_action_from_json(const json_t *j, CtAction *ret);
