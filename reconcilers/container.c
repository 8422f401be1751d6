/* container.c - the container reconciler's pure plan.
 *
 * DECISION TABLE of recon_container_plan(). Rows are tried top to bottom;
 * the first that matches decides. Each row id is named in the unit test
 * that covers it (test/unit/test-container-plan.c).
 *
 * Words: "guest" = the /cluster/resources entry at allocation.vmid (any
 * node). "ours" = the guest carries the tag zlh-<uid> (config's tags when
 * the config was read, else the live tags in /cluster/resources).
 * "ours-untagged" = an LXC without any zlh-<x> tag whose config description
 * holds zlh:uid=<uid> (a crash between clone and config, or tags removed by
 * hand). "foreign" = anything else at that vmid: another zlh-<x> tag, a VM,
 * a template, or no uid of ours in the description. Foreign guests are never
 * modified or deleted. "create op" = the journal's latest CREATE or CLONE
 * row of the current incarnation. "status" = status/current when read this
 * pass, else the /cluster/resources status (a lagging hint). "backoff gate":
 * an action whose latest op of the same type is DONE+failed less than
 * retry_backoff ago is not retried yet (ContainerReady False TaskFailed,
 * requeue after the rest of the backoff); after it, it is retried with
 * retry = true.
 *
 * id   when                                        actions                      ContainerReady / requeue
 * ---- ------------------------------------------- ---------------------------- -------------------------
 * U1   list call failed (observed.known false)     NOTHING                      unchanged (conditions_valid
 *                                                                               false) / unknown_requeue
 * P1   paused                                      rows below are evaluated,    as computed / none
 *                                                  then only READ_CONFIG,
 *                                                  READ_STATUS, REFRESH_LIST
 *                                                  are kept, else NOTHING
 * S1   (checked inside D4, the D rows after a      REFRESH_LIST                 by row / 0
 *      DONE destroy, and C1) the list is not newer
 *      than the journal activity the row relies on
 * T1   an op holds a UPID at step handle,          WAIT_TASK(upid)              by op / 0
 *      task not polled this pass
 * T2   ... polled: running                         WAIT_TASK(upid)              by op / task_poll
 * T3   ... polled: stopped                         RECORD_TASK(ok, exitstatus)  by op / 0
 *  -- deletion requested --
 * D1   earlier finalizers (dns, proxy, backup)     NOTHING                      F Deleting / none
 *      still pending
 * D2   no allocation                               NOTHING, finalized           F Deleted / none
 * D3   guest absent, create op at intent/call      NOTHING                      F Deleting / rest of grace
 *      younger than call_grace (may still land)
 * D4   guest absent                                RELEASE_ALLOCATION           F Deleting / 0
 * D5   guest lock=create (UPID lost)               NOTHING                      F Deleting / lock_wait
 * D6   guest has no zlh-<x> tag, config not read   READ_CONFIG                  F Deleting / 0
 * D7   guest foreign                               QUARANTINE_VMID,             F Deleting / 0
 *                                                  RELEASE_ALLOCATION
 * D8   guest locked (backup, migrate, ...)         NOTHING                      F Deleting / lock_wait
 * D9   Orphan policy, a zlh tag on it,             READ_CONFIG                  F Deleting / 0
 *      config not read
 * D10  Orphan policy, a zlh tag on it              ORPHAN_UNTAG(digest)         F Deleting / 0
 * D11  Orphan policy, no zlh tag left              RELEASE_ALLOCATION           F Deleting / 0
 * D12  status/current not read                     READ_STATUS                  F Deleting / 0
 * D13  not stopped, last SHUTDOWN failed, or its   STOP                         F Deleting / 0
 *      outcome lost past shutdown_timeout+grace
 * D14  not stopped                                 SHUTDOWN(timeout,forceStop)  F Deleting / 0
 * D15  stopped                                     DESTROY(purge=1) [gate]      F Deleting / 0
 *  -- converge --
 * A1   no allocation, a node fits                  ALLOCATE(node, memory)       F Creating, Allocated
 *                                                                               F Pending / 0
 * A2   no allocation, no node fits                 NOTHING                      F Unschedulable, Allocated
 *                                                                               F Unschedulable / unsched
 * C1   guest absent, create op DONE ok             RECREATE(incarnation+1)      F Creating / 0
 *      (the container was lost by hand)
 * C2   guest absent, create op failed, in backoff  NOTHING                      F TaskFailed / rest
 * C3   guest absent, clone mode, no template for   NOTHING                      F NoTemplate / unsched
 *      the allocated node
 * C4   guest absent (no create op, or at intent/   CREATE | CLONE (same vmid;   F Creating (TaskFailed
 *      call: Proxmox refuses a second one; after   retry after C2's backoff)    after a failure) / 0
 *      a failure)
 * C5   guest lock=create (UPID lost, or a create   NOTHING                      F Creating / lock_wait
 *      that is not ours yet)
 * C6   guest has no zlh-<x> tag, config not read   READ_CONFIG                  F Creating / 0
 * C7   guest foreign                               QUARANTINE_VMID(inc+1)       F Conflict, Allocated
 *                                                                               F Conflict / 0
 * C8   guest locked (backup, migrate, disk, ...)   NOTHING                      by status / lock_wait
 * C9   guest on another node than allocated        FOLLOW_MIGRATION(node),
 *                                                  then the rows below on that
 *                                                  node (never a recreate)
 * C9b  ours or ours-untagged, create op outcome    RECORD_TASK(create op, ok),
 *      lost (intent/call, no UPID): settled by      then the rows below
 *      observation
 * C10  ours-untagged, clone op DONE ok             CONFIG(all, digest) [gate]   F Creating / 0
 * C11  ours-untagged otherwise                     ADOPT_AND_TAG(all, digest)   F Creating / 0
 * C12  ours, config not read, and a hint (tags,    READ_CONFIG                  by status / 0
 *      name, maxmem, maxcpu, maxdisk) is missing
 *      or differs
 * C13  ours, config drift: cores, memory, swap,    UPDATE_CONFIG(fields,        by status / 0
 *      hostname, tags, net0, DevServer nesting     digest) [gate]
 * C14  ours, root disk smaller than diskGiB        RESIZE(diskGiB) [gate]       by status / 0
 * C15  power differs or a restart is due, and      READ_STATUS                  by status / 0
 *      status/current not read
 * C16  want running, not running                   START(records restartAt)     F Stopped / 0
 *                                                  [gate]
 * C17  want stopped, not stopped, last SHUTDOWN    STOP [gate]                  F Running / 0
 *      failed or lost past shutdown_timeout+grace
 * C18  want stopped, not stopped                   SHUTDOWN(timeout,forceStop)  F Running / 0
 * C19  restart due, the REBOOT op for this         RECORD_RESTART               T Running / 0
 *      restartAt is done, or lost its outcome and
 *      uptime shows a boot after its intent
 * C20  restart due (restartAt > last honoured)     REBOOT(restartAt) [gate]     T Running / 0
 * C21  otherwise                                   NOTHING, converged           T Running | T Stopped /
 *                                                                               none
 *
 * "restart due" = spec.restartAt > journal.last_restart_at and power is
 * running. CREATE, CLONE and START carry restart_at_ms so that the act
 * records it as honoured: a restart requested before a (re)start is
 * satisfied by that start, never by a second one. With power stopped a due
 * restart waits for the next START. */
#include "container.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#define MIB ((int64_t)1024 * 1024)
#define GIB ((int64_t)1024 * 1024 * 1024)

void recon_container_settings_init(CtSettings *s)
{
	*s = (CtSettings){
	    .mode = CT_MODE_CREATE,
	    .swap_mib = 0,
	    .vmid_min = 5000,
	    .vmid_max = 5999,
	    .shutdown_timeout_s = 60,
	    .task_poll_ms = 1000,
	    .lock_wait_ms = 5000,
	    .retry_backoff_ms = 30000,
	    .unknown_requeue_ms = 5000,
	    .unschedulable_requeue_ms = 60000,
	    .call_grace_ms = 60000,
	};
}

/* --- the plan under construction ------------------------------------------- */

typedef struct Ctx {
	const CtDesired *d;
	const CtAllocation *a;
	const CtJournal *j;
	const CtObserved *o;
	const CtSettings *s;
	CtPlan *p;
	char hostname[PVE_HOSTNAME_MAX]; /* desired */
	char uid_tag[128]; /* zlh-<uid> */
	char identity_tags[160]; /* zlh;zlh-<uid> */
	const char *node; /* where the guest is (after FOLLOW_MIGRATION) */
} Ctx;

static void cond_set(CtCondition *c, CtCondStatus st, const char *reason, const char *fmt, ...)
    _printf_(4, 5);
static void cond_set(CtCondition *c, CtCondStatus st, const char *reason, const char *fmt, ...)
{
	c->status = st;
	c->reason = reason;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(c->message, sizeof c->message, fmt, ap);
	va_end(ap);
}

static CtAction *add(Ctx *x, CtActionType t, const char *reason, const char *fmt, ...)
    _printf_(4, 5);
static CtAction *add(Ctx *x, CtActionType t, const char *reason, const char *fmt, ...)
{
	CtPlan *p = x->p;
	/* The table never emits more than CT_MAX_ACTIONS; keep the last slot
	 * rather than overflow if it ever did. */
	CtAction *act =
	    &p->actions[p->n_actions < CT_MAX_ACTIONS ? p->n_actions++ : CT_MAX_ACTIONS - 1];
	*act = (CtAction){.type = t, .reason = reason};
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(act->message, sizeof act->message, fmt, ap);
	va_end(ap);
	act->vmid = x->a ? x->a->vmid : 0;
	if (x->node)
		snprintf(act->node, sizeof act->node, "%s", x->node);
	return act;
}

static void requeue(Ctx *x, int64_t ms)
{
	x->p->requeue_after_ms = ms < 0 ? CT_REQUEUE_NONE : ms;
}

static void nothing(Ctx *x, int64_t requeue_ms, const char *fmt, ...) _printf_(3, 4);
static void nothing(Ctx *x, int64_t requeue_ms, const char *fmt, ...)
{
	CtAction *act = add(x, CT_ACT_NOTHING, NULL, "%s", "");
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(act->message, sizeof act->message, fmt, ap);
	va_end(ap);
	requeue(x, requeue_ms);
}

static const CtOp *op_find(const CtJournal *j, CtOpType t)
{
	for (size_t i = 0; j && i < j->n_ops; i++)
		if (j->ops[i].type == t)
			return &j->ops[i];
	return NULL;
}

static const CtOp *create_op(const Ctx *x)
{
	const CtOp *c = op_find(x->j, CT_OP_CREATE), *k = op_find(x->j, CT_OP_CLONE);
	if (c && k)
		return c->started_ms >= k->started_ms ? c : k;
	return c ? c : k;
}

static bool op_failed(const CtOp *op)
{
	return op && op->step == CT_STEP_DONE && op->failed;
}

static bool op_done_ok(const CtOp *op)
{
	return op && op->step == CT_STEP_DONE && !op->failed;
}

static bool op_outcome_lost(const CtOp *op)
{
	return op && (op->step == CT_STEP_INTENT || op->step == CT_STEP_CALL ||
	              (op->step == CT_STEP_HANDLE && !op->upid));
}

/* The backoff gate: true (and the plan set to wait) when the latest op of
 * this type failed less than retry_backoff ago. */
static bool gated(Ctx *x, CtOpType t, bool *ret_retry)
{
	const CtOp *op = op_find(x->j, t);
	*ret_retry = op_failed(op);
	if (!op_failed(op))
		return false;
	int64_t left = op->finished_ms + x->s->retry_backoff_ms - x->o->now_ms;
	cond_set(&x->p->ready, CT_COND_FALSE, "TaskFailed", "%s failed: %s",
	         recon_container_op_to_string(t), op->error ? op->error : "unknown error");
	if (left <= 0)
		return false;
	nothing(x, left, "%s failed %" PRId64 " ms ago; retrying after the backoff",
	        recon_container_op_to_string(t), x->o->now_ms - op->finished_ms);
	return true;
}

static PveRunState status_of(const Ctx *x)
{
	if (x->o->status)
		return x->o->status->status;
	return x->o->guest ? x->o->guest->status : PVE_RUN_UNKNOWN;
}

/* The freshest lock: status/current, then the config, then the list. */
static const char *lock_of(const Ctx *x)
{
	if (x->o->status)
		return x->o->status->lock;
	if (x->o->config)
		return x->o->config->lock;
	return x->o->guest ? x->o->guest->lock : "";
}

/* The last moment the journal shows us touching Proxmox. */
static int64_t last_activity(const Ctx *x)
{
	int64_t t = 0;
	for (size_t i = 0; x->j && i < x->j->n_ops; i++) {
		if (x->j->ops[i].started_ms > t)
			t = x->j->ops[i].started_ms;
		if (x->j->ops[i].finished_ms > t)
			t = x->j->ops[i].finished_ms;
	}
	return t;
}

/* S1: an absence (or a presence after a destroy) seen in a list that is not
 * newer than t proves nothing. */
static bool list_older_than(Ctx *x, int64_t t)
{
	if (x->o->listed_at_ms > t)
		return false;
	add(x, CT_ACT_REFRESH_LIST, NULL, "the cluster list predates our last change");
	requeue(x, 0);
	return true;
}

/* ContainerReady from the observed power state. */
static void ready_by_status(Ctx *x)
{
	PveRunState st = status_of(x);
	bool want_run = x->d->power == CT_POWER_RUNNING;
	CtCondition *c = &x->p->ready;
	if (st == PVE_RUN_RUNNING)
		cond_set(c, want_run ? CT_COND_TRUE : CT_COND_FALSE, "Running",
		         want_run ? "container %" PRId64 " is running on %s"
		                  : "container %" PRId64 " is running on %s; stopping",
		         x->a->vmid, x->node);
	else if (st == PVE_RUN_STOPPED)
		cond_set(c, want_run ? CT_COND_FALSE : CT_COND_TRUE, "Stopped",
		         want_run ? "container %" PRId64 " is stopped on %s; starting"
		                  : "container %" PRId64 " is stopped on %s",
		         x->a->vmid, x->node);
	else
		cond_set(c, CT_COND_UNKNOWN, "Unknown", "container %" PRId64 " state is %s on %s",
		         x->a->vmid, pve_run_state_to_string(st), x->node);
}

/* --- identity ------------------------------------------------------------------ */

typedef enum Ident {
	ID_OURS,
	ID_OURS_UNTAGGED,
	ID_FOREIGN,
	ID_NEED_CONFIG,
} Ident;

static Ident identify(const Ctx *x)
{
	const PveGuest *g = x->o->guest;
	const PveCtConfig *cfg = x->o->config;
	if (g->type != PVE_GUEST_LXC || g->template_ || (cfg && cfg->template_))
		return ID_FOREIGN;
	const char *tags = cfg ? cfg->tags : g->tags;
	if (pve_tags_contains(tags, x->uid_tag))
		return ID_OURS;
	char other[64];
	if (pve_tags_uid(tags, other, sizeof other) != -ENOENT)
		return ID_FOREIGN; /* another server's container (or an odd tag) */
	if (!cfg)
		return ID_NEED_CONFIG;
	return pve_description_has_uid(cfg->description, x->d->uid) ? ID_OURS_UNTAGGED : ID_FOREIGN;
}

static bool has_zlh_tags(const char *tags, const char *uid_tag)
{
	return pve_tags_contains(tags, PVE_TAG_MANAGED) || pve_tags_contains(tags, uid_tag);
}

/* --- drift ------------------------------------------------------------------------ */

typedef struct Drift {
	unsigned fields;
	bool disk_small;
	bool disk_large;
	int64_t disk_bytes;
	char what[160];
} Drift;

static void drift_note(Drift *dr, const char *fmt, ...) _printf_(2, 3);
static void drift_note(Drift *dr, const char *fmt, ...)
{
	size_t l = strlen(dr->what);
	if (l + 3 >= sizeof dr->what)
		return;
	if (l) {
		memcpy(dr->what + l, ", ", 3);
		l += 2;
	}
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(dr->what + l, sizeof dr->what - l, fmt, ap);
	va_end(ap);
}

/* True when /cluster/resources alone shows nothing to change. */
static bool hints_match(const Ctx *x)
{
	const PveGuest *g = x->o->guest;
	return pve_tags_subset(x->identity_tags, g->tags) && g->name &&
	       strcasecmp(g->name, x->hostname) == 0 && g->maxmem == x->d->memory_mib * MIB &&
	       g->maxcpu == x->d->cores && g->maxdisk >= 0 && g->maxdisk >= x->d->disk_gib * GIB;
}

static bool net0_matches(const Ctx *x, const char *net0)
{
	char want[256];
	PveNet0 have, w;
	if (!net0 || recon_container_net0(x->d, x->a, x->s, NULL, want, sizeof want) < 0 ||
	    pve_net0_parse(net0, &have) < 0 || pve_net0_parse(want, &w) < 0)
		return false;
	return strcmp(have.name, w.name) == 0 && strcmp(have.bridge, w.bridge) == 0 &&
	       strcmp(have.ip, w.ip) == 0 && strcmp(have.gw, w.gw) == 0;
}

static void config_drift(const Ctx *x, Drift *dr)
{
	const PveCtConfig *c = x->o->config;
	const CtDesired *d = x->d;
	*dr = (Drift){0};
	if (c->cores != d->cores) {
		dr->fields |= CT_CFG_CORES;
		drift_note(dr, "cores %" PRId64 "->%" PRId64, c->cores, d->cores);
	}
	if (c->memory != d->memory_mib) {
		dr->fields |= CT_CFG_MEMORY;
		drift_note(dr, "memory %" PRId64 "->%" PRId64 " MiB", c->memory, d->memory_mib);
	}
	if (c->swap != x->s->swap_mib) {
		dr->fields |= CT_CFG_SWAP;
		drift_note(dr, "swap %" PRId64 "->%" PRId64 " MiB", c->swap, x->s->swap_mib);
	}
	if (strcasecmp(c->hostname, x->hostname) != 0) {
		dr->fields |= CT_CFG_HOSTNAME;
		drift_note(dr, "hostname %s->%s", c->hostname[0] ? c->hostname : "(none)",
		           x->hostname);
	}
	if (!pve_tags_subset(x->identity_tags, c->tags)) {
		dr->fields |= CT_CFG_TAGS;
		drift_note(dr, "tags");
	}
	if (!net0_matches(x, c->net0)) {
		dr->fields |= CT_CFG_NET0;
		drift_note(dr, "net0");
	}
	if (d->kind == CT_KIND_DEVSERVER && !pve_features_nesting(c->features)) {
		dr->fields |= CT_CFG_FEATURES;
		drift_note(dr, "features nesting=1");
	}
	int64_t size;
	if (pve_rootfs_size_bytes(c->rootfs, &size) == 0) {
		dr->disk_bytes = size;
		dr->disk_small = size < d->disk_gib * GIB;
		dr->disk_large = size > d->disk_gib * GIB;
	} else {
		dr->disk_bytes = -1;
	}
}

/* --- rows ------------------------------------------------------------------------------ */

/* T1-T3. True when an open task decided the pass. */
static bool open_task(Ctx *x)
{
	const CtOp *open = NULL;
	for (size_t i = 0; x->j && i < x->j->n_ops; i++)
		if (x->j->ops[i].step == CT_STEP_HANDLE && x->j->ops[i].upid &&
		    x->j->ops[i].upid[0]) {
			open = &x->j->ops[i];
			break;
		}
	if (!open)
		return false;
	PveUpid u;
	const char *node = pve_upid_parse(open->upid, &u) == 0 ? u.node : x->node;
	const char *what = recon_container_op_to_string(open->type);
	CtCondition *c = &x->p->ready;
	if (x->d->deletion_requested)
		cond_set(c, CT_COND_FALSE, "Deleting", "waiting for the %s task", what);
	else if (open->type == CT_OP_CREATE || open->type == CT_OP_CLONE)
		cond_set(c, CT_COND_FALSE, "Creating", "waiting for the %s task", what);
	else if (open->type == CT_OP_START)
		cond_set(c, CT_COND_FALSE, "Stopped", "waiting for the start task");
	else if (x->o->guest)
		ready_by_status(x);
	else
		cond_set(c, CT_COND_FALSE, "Creating", "waiting for the %s task", what);

	const PveTaskStatus *t = x->o->task;
	CtAction *act;
	if (t && !t->running) {
		act = add(x, CT_ACT_RECORD_TASK, NULL, "%s task finished: %s", what, t->exitstatus);
		act->task_ok = t->ok;
		snprintf(act->task_exit, sizeof act->task_exit, "%s", t->exitstatus);
		requeue(x, 0);
	} else {
		act = add(x, CT_ACT_WAIT_TASK, NULL, "waiting for the %s task", what);
		requeue(x, t ? x->s->task_poll_ms : 0);
	}
	act->op = open->type;
	snprintf(act->upid, sizeof act->upid, "%s", open->upid);
	snprintf(act->node, sizeof act->node, "%s", node ? node : "");
	return true;
}

/* D13/C17 versus D14/C18: after a failed or lost shutdown, stop. */
static bool shutdown_failed_or_lost(const Ctx *x)
{
	const CtOp *sop = op_find(x->j, CT_OP_SHUTDOWN);
	if (op_failed(sop))
		return true;
	return op_outcome_lost(sop) && x->o->now_ms - sop->started_ms >
	                                   x->s->shutdown_timeout_s * 1000 + x->s->call_grace_ms;
}

static void plan_delete(Ctx *x)
{
	const CtDesired *d = x->d;
	const CtAllocation *a = x->a;
	const CtObserved *o = x->o;
	CtPlan *p = x->p;
	cond_set(&p->ready, CT_COND_FALSE, "Deleting", "deleting");

	if (d->earlier_finalizers_pending) /* D1 */
		return nothing(x, CT_REQUEUE_NONE,
		               "waiting for the dns, proxy and backup finalizers");
	if (!a->vmid) { /* D2 */
		x->p->finalized = true;
		cond_set(&p->ready, CT_COND_FALSE, "Deleted", "the container is gone");
		return nothing(x, CT_REQUEUE_NONE, "nothing of ours is left: finalizer done");
	}
	const PveGuest *g = o->guest;
	if (!g) {
		const CtOp *cop = create_op(x);
		if (op_outcome_lost(cop) && o->now_ms - cop->started_ms < x->s->call_grace_ms)
			return nothing(x, cop->started_ms + x->s->call_grace_ms - o->now_ms,
			               "a %s call for %" PRId64 " may still land; waiting",
			               recon_container_op_to_string(cop->type), a->vmid); /* D3 */
		if (list_older_than(x, last_activity(x))) /* S1 */
			return;
		add(x, CT_ACT_RELEASE_ALLOCATION, "Deleted", "container %" PRId64 " is absent",
		    a->vmid); /* D4 */
		return requeue(x, 0);
	}
	const CtOp *dop = op_find(x->j, CT_OP_DESTROY);
	if (op_done_ok(dop) && list_older_than(x, dop->finished_ms)) /* S1 */
		return;
	if (strcmp(lock_of(x), "create") == 0) /* D5 */
		return nothing(x, x->s->lock_wait_ms, "container %" PRId64 " is being created",
		               a->vmid);
	Ident id = identify(x);
	if (id == ID_NEED_CONFIG) { /* D6 */
		add(x, CT_ACT_READ_CONFIG, NULL, "identify the guest at %" PRId64, a->vmid);
		return requeue(x, 0);
	}
	if (id == ID_FOREIGN) { /* D7 */
		CtAction *q =
		    add(x, CT_ACT_QUARANTINE_VMID, "Conflict",
		        "vmid %" PRId64 " on %s holds a guest that is not ours", a->vmid, g->node);
		q->incarnation = x->j->incarnation + 1;
		add(x, CT_ACT_RELEASE_ALLOCATION, "Deleted",
		    "our container is gone; vmid %" PRId64 " is quarantined", a->vmid);
		return requeue(x, 0);
	}
	const char *lock = lock_of(x);
	if (lock[0]) /* D8 */
		return nothing(x, x->s->lock_wait_ms, "container %" PRId64 " is locked (%s)",
		               a->vmid, lock);
	if (d->deletion_policy == CT_DELETION_ORPHAN) {
		const char *tags = o->config ? o->config->tags : g->tags;
		if (!has_zlh_tags(tags, x->uid_tag)) { /* D11 */
			add(x, CT_ACT_RELEASE_ALLOCATION, "Orphaned",
			    "container %" PRId64 " left running without our tags", a->vmid);
			return requeue(x, 0);
		}
		if (!o->config) { /* D9 */
			add(x, CT_ACT_READ_CONFIG, NULL, "read the tags to remove");
			return requeue(x, 0);
		}
		CtAction *u = add(x, CT_ACT_ORPHAN_UNTAG, "Orphaning",
		                  "deletionPolicy Orphan: removing the zlh tags"); /* D10 */
		u->op = CT_OP_UNTAG;
		snprintf(u->digest, sizeof u->digest, "%s", o->config->digest);
		return requeue(x, 0);
	}
	if (!o->status) { /* D12 */
		add(x, CT_ACT_READ_STATUS, NULL, "confirm the power state before deleting");
		return requeue(x, 0);
	}
	bool retry;
	if (status_of(x) != PVE_RUN_STOPPED) {
		if (shutdown_failed_or_lost(x)) { /* D13 */
			if (gated(x, CT_OP_STOP, &retry))
				return;
			CtAction *s = add(x, CT_ACT_STOP, "Stopping",
			                  "shutdown did not stop %" PRId64 "; stopping", a->vmid);
			s->op = CT_OP_STOP;
			s->retry = retry;
		} else { /* D14 */
			CtAction *s = add(x, CT_ACT_SHUTDOWN, "Stopping",
			                  "shutting down %" PRId64 " before deleting it", a->vmid);
			s->op = CT_OP_SHUTDOWN;
			s->timeout_s = x->s->shutdown_timeout_s;
			s->force_stop = true;
		}
		cond_set(&p->ready, CT_COND_FALSE, "Deleting", "stopping the container");
		return requeue(x, 0);
	}
	if (gated(x, CT_OP_DESTROY, &retry))
		return;
	CtAction *del = add(x, CT_ACT_DESTROY, "Destroying",
	                    "destroying container %" PRId64 " (purge)", a->vmid); /* D15 */
	del->op = CT_OP_DESTROY;
	del->retry = retry;
	cond_set(&p->ready, CT_COND_FALSE, "Deleting", "destroying the container");
	requeue(x, 0);
}

static int64_t restart_due(const Ctx *x)
{
	const CtDesired *d = x->d;
	if (d->restart_at_ms > 0 && d->restart_at_ms > x->j->last_restart_at_ms)
		return d->restart_at_ms;
	return 0;
}

/* C1-C4: no guest at our vmid. */
static void plan_absent(Ctx *x)
{
	const CtAllocation *a = x->a;
	const CtOp *cop = create_op(x);
	CtPlan *p = x->p;
	if (op_done_ok(cop)) { /* C1 */
		if (list_older_than(x, cop->finished_ms)) /* S1 */
			return;
		CtAction *r =
		    add(x, CT_ACT_RECREATE, "Recreated",
		        "container %" PRId64 " was lost; making it again (incarnation %" PRId64 ")",
		        a->vmid, x->j->incarnation + 1);
		r->incarnation = x->j->incarnation + 1;
		cond_set(&p->ready, CT_COND_FALSE, "Creating", "container %" PRId64 " was lost",
		         a->vmid);
		return requeue(x, 0);
	}
	cond_set(&p->ready, CT_COND_FALSE, "Creating", "creating container %" PRId64 " on %s",
	         a->vmid, a->node);
	bool clone = x->s->mode == CT_MODE_CLONE;
	CtOpType t = clone ? CT_OP_CLONE : CT_OP_CREATE;
	/* A failure of the other mode's op (the config changed) gates nothing. */
	bool retry;
	if (gated(x, t, &retry)) /* C2 */
		return;
	CtAction *c;
	if (clone) {
		int64_t tvmid = 0;
		for (size_t i = 0; i < x->s->n_templates; i++)
			if (x->s->templates[i].node &&
			    strcmp(x->s->templates[i].node, a->node) == 0)
				tvmid = x->s->templates[i].vmid;
		if (!tvmid) { /* C3 */
			cond_set(&p->ready, CT_COND_FALSE, "NoTemplate",
			         "no template to clone on node %s", a->node);
			return nothing(x, x->s->unschedulable_requeue_ms,
			               "no template configured on %s", a->node);
		}
		c = add(x, CT_ACT_CLONE, "Creating",
		        "cloning template %" PRId64 " to %" PRId64 " on %s", tvmid, a->vmid,
		        a->node); /* C4 */
		c->template_vmid = tvmid;
	} else {
		c = add(x, CT_ACT_CREATE, "Creating", "creating container %" PRId64 " on %s",
		        a->vmid, a->node); /* C4 */
	}
	c->op = t;
	c->retry = retry;
	c->restart_at_ms = x->d->restart_at_ms > x->j->last_restart_at_ms ? x->d->restart_at_ms : 0;
	snprintf(c->node, sizeof c->node, "%s", a->node);
	requeue(x, 0);
}

/* C12-C21 for a guest that is ours (tagged). */
static void plan_ours(Ctx *x)
{
	const CtDesired *d = x->d;
	const CtObserved *o = x->o;
	const CtAllocation *a = x->a;
	CtPlan *p = x->p;
	ready_by_status(x);

	Drift dr = {.disk_bytes = -1};
	if (!o->config) {
		if (!hints_match(x)) { /* C12 */
			add(x, CT_ACT_READ_CONFIG, NULL, "the cluster list differs from the spec");
			return requeue(x, 0);
		}
	} else {
		config_drift(x, &dr);
	}
	bool retry;
	if (dr.fields) { /* C13 */
		if (gated(x, CT_OP_CONFIG, &retry))
			return;
		CtAction *u =
		    add(x, CT_ACT_UPDATE_CONFIG, "DriftRepaired", "repairing drift: %s", dr.what);
		u->op = CT_OP_CONFIG;
		u->config_fields = dr.fields;
		u->retry = retry;
		snprintf(u->digest, sizeof u->digest, "%s", o->config->digest);
		return requeue(x, 0);
	}
	if (dr.disk_small) { /* C14 */
		if (gated(x, CT_OP_RESIZE, &retry))
			return;
		CtAction *r = add(x, CT_ACT_RESIZE, "Resizing",
		                  "growing the root disk from %" PRId64 " MiB to %" PRId64 " GiB",
		                  dr.disk_bytes / MIB, d->disk_gib);
		r->op = CT_OP_RESIZE;
		r->size_gib = d->disk_gib;
		r->retry = retry;
		return requeue(x, 0);
	}

	bool want_run = d->power == CT_POWER_RUNNING;
	PveRunState st = status_of(x);
	int64_t due = want_run ? restart_due(x) : 0;
	bool power_ok = want_run ? st == PVE_RUN_RUNNING : st == PVE_RUN_STOPPED;
	if ((!power_ok || due) && !o->status) { /* C15 */
		add(x, CT_ACT_READ_STATUS, NULL, "confirm the power state");
		return requeue(x, 0);
	}
	if (want_run && st != PVE_RUN_RUNNING) { /* C16 */
		if (gated(x, CT_OP_START, &retry))
			return;
		CtAction *s =
		    add(x, CT_ACT_START, "Starting", "starting container %" PRId64, a->vmid);
		s->op = CT_OP_START;
		s->retry = retry;
		s->restart_at_ms = due ? due : restart_due(x);
		return requeue(x, 0);
	}
	if (!want_run && st != PVE_RUN_STOPPED) {
		if (shutdown_failed_or_lost(x)) { /* C17 */
			if (gated(x, CT_OP_STOP, &retry))
				return;
			CtAction *s = add(x, CT_ACT_STOP, "Stopping",
			                  "shutdown did not stop %" PRId64 "; stopping", a->vmid);
			s->op = CT_OP_STOP;
			s->retry = retry;
		} else { /* C18 */
			CtAction *s =
			    add(x, CT_ACT_SHUTDOWN, "Stopping", "shutting down %" PRId64, a->vmid);
			s->op = CT_OP_SHUTDOWN;
			s->timeout_s = x->s->shutdown_timeout_s;
			s->force_stop = true;
		}
		return requeue(x, 0);
	}
	if (due) {
		const CtOp *rop = op_find(x->j, CT_OP_REBOOT);
		int64_t uptime =
		    o->status && o->status->uptime >= 0 ? o->status->uptime : o->guest->uptime;
		if (rop && rop->restart_at_ms == due &&
		    (op_done_ok(rop) || (op_outcome_lost(rop) && uptime >= 0 &&
		                         o->now_ms - uptime * 1000 > rop->started_ms))) {
			CtAction *r =
			    add(x, CT_ACT_RECORD_RESTART, NULL,
			        "the restart for restartAt %" PRId64 " happened", due); /* C19 */
			r->op = CT_OP_REBOOT;
			r->restart_at_ms = due;
			return requeue(x, 0);
		}
		if (gated(x, CT_OP_REBOOT, &retry))
			return;
		CtAction *r = add(x, CT_ACT_REBOOT, "Restarting",
		                  "restart requested (restartAt %" PRId64 ")", due); /* C20 */
		r->op = CT_OP_REBOOT;
		r->restart_at_ms = due;
		r->retry = retry;
		return requeue(x, 0);
	}
	/* C21 */
	if (dr.disk_large)
		snprintf(p->ready.message, sizeof p->ready.message,
		         "container %" PRId64 " is %s; its root disk (%" PRId64
		         " MiB) is larger than diskGiB %" PRId64 " and cannot shrink",
		         a->vmid, want_run ? "running" : "stopped", dr.disk_bytes / MIB,
		         d->disk_gib);
	nothing(x, CT_REQUEUE_NONE, "converged");
	p->converged = true;
}

static void plan_converge(Ctx *x)
{
	const CtDesired *d = x->d;
	const CtAllocation *a = x->a;
	const CtObserved *o = x->o;
	CtPlan *p = x->p;

	if (!a->vmid) {
		const char *node = NULL;
		if (recon_container_place(x->s, o->nodes, o->n_nodes, o->reserved, o->n_reserved,
		                          d->memory_mib, &node) < 0) { /* A2 */
			cond_set(&p->allocated, CT_COND_FALSE, "Unschedulable",
			         "no online node has %" PRId64 " MiB free", d->memory_mib);
			cond_set(&p->ready, CT_COND_FALSE, "Unschedulable",
			         "no online node has %" PRId64 " MiB free", d->memory_mib);
			return nothing(x, x->s->unschedulable_requeue_ms, "unschedulable");
		}
		CtAction *al = add(x, CT_ACT_ALLOCATE, "Allocating",
		                   "allocating a vmid and an ip on %s", node); /* A1 */
		snprintf(al->node, sizeof al->node, "%s", node);
		al->memory_mib = d->memory_mib;
		cond_set(&p->allocated, CT_COND_FALSE, "Pending", "allocating on %s", node);
		cond_set(&p->ready, CT_COND_FALSE, "Creating", "waiting for an allocation");
		return requeue(x, 0);
	}
	const PveGuest *g = o->guest;
	if (!g)
		return plan_absent(x);

	if (strcmp(lock_of(x), "create") == 0) { /* C5 */
		cond_set(&p->ready, CT_COND_FALSE, "Creating",
		         "container %" PRId64 " is being created", a->vmid);
		return nothing(x, x->s->lock_wait_ms, "lock create without a saved UPID: waiting");
	}
	Ident id = identify(x);
	if (id == ID_NEED_CONFIG) { /* C6 */
		cond_set(&p->ready, CT_COND_FALSE, "Creating", "identifying the guest at %" PRId64,
		         a->vmid);
		add(x, CT_ACT_READ_CONFIG, NULL, "identify the guest at %" PRId64, a->vmid);
		return requeue(x, 0);
	}
	if (id == ID_FOREIGN) { /* C7 */
		CtAction *q =
		    add(x, CT_ACT_QUARANTINE_VMID, "Conflict",
		        "vmid %" PRId64 " on %s holds a guest that is not ours; quarantined",
		        a->vmid, g->node);
		q->incarnation = x->j->incarnation + 1;
		snprintf(q->node, sizeof q->node, "%s", g->node);
		cond_set(&p->allocated, CT_COND_FALSE, "Conflict",
		         "vmid %" PRId64 " is taken by a guest that is not ours", a->vmid);
		cond_set(&p->ready, CT_COND_FALSE, "Conflict",
		         "vmid %" PRId64 " is taken by a guest that is not ours", a->vmid);
		return requeue(x, 0);
	}
	const char *lock = lock_of(x);
	if (lock[0]) { /* C8 */
		ready_by_status(x);
		snprintf(p->ready.message, sizeof p->ready.message,
		         "container %" PRId64 " is locked (%s)", a->vmid, lock);
		return nothing(x, x->s->lock_wait_ms, "locked (%s): waiting", lock);
	}
	if (strcmp(g->node, a->node) != 0) { /* C9 */
		CtAction *m =
		    add(x, CT_ACT_FOLLOW_MIGRATION, "Migrated",
		        "container %" PRId64 " moved from %s to %s", a->vmid, a->node, g->node);
		snprintf(m->node, sizeof m->node, "%s", g->node);
	}
	const CtOp *cop = create_op(x);
	if (op_outcome_lost(cop)) { /* C9b */
		CtAction *r = add(x, CT_ACT_RECORD_TASK, NULL,
		                  "the %s of %" PRId64 " lost its reply; the container exists",
		                  recon_container_op_to_string(cop->type), a->vmid);
		r->op = cop->type;
		r->task_ok = true;
		snprintf(r->task_exit, sizeof r->task_exit, "OK (settled by observation)");
	}
	if (id == ID_OURS_UNTAGGED) {
		bool clone_done = op_done_ok(op_find(x->j, CT_OP_CLONE));
		bool retry;
		cond_set(&p->ready, CT_COND_FALSE, "Creating",
		         clone_done ? "configuring the clone" : "adopting container %" PRId64,
		         a->vmid);
		if (gated(x, CT_OP_CONFIG, &retry))
			return;
		CtAction *c = clone_done ? add(x, CT_ACT_CONFIG, "Configuring",
		                               "configuring clone %" PRId64, a->vmid) /* C10 */
		                         : add(x, CT_ACT_ADOPT_AND_TAG, "Adopted",
		                               "container %" PRId64 " carries our uid but no tags; "
		                               "adopting it",
		                               a->vmid); /* C11 */
		c->op = CT_OP_CONFIG;
		c->config_fields = CT_CFG_ALL;
		c->retry = retry;
		if (d->kind != CT_KIND_DEVSERVER)
			c->config_fields &= ~(unsigned)CT_CFG_FEATURES;
		snprintf(c->digest, sizeof c->digest, "%s", o->config->digest);
		return requeue(x, 0);
	}
	plan_ours(x);
}

static bool valid_input(const CtDesired *d, const CtAllocation *a, const CtJournal *j,
                        const CtObserved *o, const CtSettings *s)
{
	if (!d || !a || !j || !o || !s || !d->uid || !d->uid[0])
		return false;
	if (d->cores < 1 || d->memory_mib < 16 || d->disk_gib < 1)
		return false;
	if (a->vmid &&
	    (a->vmid < PVE_VMID_MIN || a->vmid > PVE_VMID_MAX || !a->node || !a->node[0] || !a->ip))
		return false;
	if (j->n_ops && !j->ops)
		return false;
	return true;
}

int recon_container_plan(const CtDesired *d, const CtAllocation *a, const CtJournal *j,
                         const CtObserved *o, const CtSettings *s, CtPlan *ret)
{
	if (!valid_input(d, a, j, o, s))
		return -EINVAL;
	CtPlan p = {.conditions_valid = true, .requeue_after_ms = CT_REQUEUE_NONE};
	Ctx x = {.d = d, .a = a, .j = j, .o = o, .s = s, .p = &p};
	if (pve_identity_uid_tag(d->uid, x.uid_tag, sizeof x.uid_tag) < 0 ||
	    pve_identity_tags(d->uid, x.identity_tags, sizeof x.identity_tags) < 0)
		return -EINVAL;
	if (a->vmid) {
		if (a->hostname && a->hostname[0])
			snprintf(x.hostname, sizeof x.hostname, "%s", a->hostname);
		else if (recon_container_default_hostname(d->kind, d->variant, a->vmid, x.hostname,
		                                          sizeof x.hostname) < 0)
			return -EINVAL;
		x.node = o->guest ? o->guest->node : a->node;
		cond_set(&p.allocated, CT_COND_TRUE, "Allocated",
		         "vmid %" PRId64 " on %s, ip %s, hostname %s", a->vmid, a->node, a->ip,
		         x.hostname);
	} else {
		cond_set(&p.allocated, CT_COND_FALSE, "Pending", "not allocated yet");
	}
	cond_set(&p.ready, CT_COND_UNKNOWN, "Unknown", "not observed yet");

	if (!o->known) { /* U1 */
		p.conditions_valid = false;
		nothing(&x, s->unknown_requeue_ms, "the cluster list failed: state unknown");
		*ret = p;
		return 0;
	}
	if (!open_task(&x)) {
		if (d->deletion_requested)
			plan_delete(&x);
		else
			plan_converge(&x);
	}
	if (d->paused) { /* P1: observe and report only */
		size_t k = 0;
		bool dropped = false;
		for (size_t i = 0; i < p.n_actions; i++) {
			CtActionType t = p.actions[i].type;
			if (recon_container_action_class(t) == CT_CLASS_OBSERVE &&
			    t != CT_ACT_WAIT_TASK)
				p.actions[k++] = p.actions[i];
			else if (t != CT_ACT_NOTHING)
				dropped = true;
		}
		p.n_actions = k;
		if (k)
			p.requeue_after_ms = 0;
		else
			nothing(&x, CT_REQUEUE_NONE, "paused: observe and report only%s",
			        dropped ? " (changes pending)" : "");
	}
	*ret = p;
	return 0;
}
