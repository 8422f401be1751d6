/* Unit tests for recon_container_plan(): every row of the decision table at
 * the top of reconcilers/container.c (row ids in the comments). Each test
 * starts from a converged world (a GameServer running as it should) and
 * changes what the row is about. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "reconcilers/container.h"

#define MIB ((int64_t)1024 * 1024)
#define GIB ((int64_t)1024 * 1024 * 1024)
#define NOW ((int64_t)10000000)

static const char UID[] = "3f2a9c1e-5b7d-4e8f-9a0b-1c2d3e4f5a6b";
static const char OTHER_UID[] = "aaaaaaaa-5b7d-4e8f-9a0b-1c2d3e4f5a6b";
static const char DIGEST[] = "0123456789abcdef0123456789abcdef01234567";
static const char UPID_CREATE[] = "UPID:pve1:0000ABCD:0012F3A4:65A1B2C3:vzcreate:5000:zlh@pve!c:";

typedef struct W {
	CtDesired d;
	CtAllocation a;
	CtOp ops[8];
	CtJournal j;
	CtObserved o;
	CtSettings s;
	PveGuest g;
	PveCtConfig cfg;
	PveCtStatus st;
	PveTaskStatus task;
	PveNode nodes[3];
	CtReserved res[2];
	CtTemplate tpl[2];
	char gtags[160], gname[64];
	char ctags[160], cdesc[512], cnet0[160], crootfs[80];
	CtPlan p;
} W;

static int setup(void **state)
{
	W *w = calloc(1, sizeof *w);
	w->d = (CtDesired){
	    .kind = CT_KIND_GAMESERVER,
	    .uid = UID,
	    .owner = "user-42",
	    .name = "survival-01",
	    .variant = "paper",
	    .generation = 1,
	    .cores = 2,
	    .memory_mib = 4096,
	    .disk_gib = 16,
	    .power = CT_POWER_RUNNING,
	};
	w->a = (CtAllocation){.vmid = 5000, .node = "pve1", .ip = "10.60.0.5"};
	w->ops[0] = (CtOp){.type = CT_OP_CREATE,
	                   .step = CT_STEP_DONE,
	                   .upid = UPID_CREATE,
	                   .started_ms = 1000,
	                   .finished_ms = 2000};
	w->j = (CtJournal){.incarnation = 0, .ops = w->ops, .n_ops = 1};
	recon_container_settings_init(&w->s);
	w->s.mode = CT_MODE_CREATE;
	w->s.ostemplate = "local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst";
	w->s.storage = "local-lvm";
	w->s.net = (CtNet){.bridge = "vmbr3", .prefix = 22, .gateway = "10.60.0.1"};
	w->s.net_dev = (CtNet){.bridge = "vmbr2", .prefix = 22, .gateway = "10.70.0.1"};
	w->tpl[0] = (CtTemplate){.node = "pve1", .vmid = 900};
	w->tpl[1] = (CtTemplate){.node = "pve2", .vmid = 901};

	snprintf(w->gtags, sizeof w->gtags, "zlh;zlh-%s", UID);
	snprintf(w->gname, sizeof w->gname, "mc-paper-5000");
	w->g = (PveGuest){
	    .vmid = 5000,
	    .node = "pve1",
	    .type = PVE_GUEST_LXC,
	    .status = PVE_RUN_RUNNING,
	    .name = w->gname,
	    .tags = w->gtags,
	    .mem = 1 * GIB,
	    .maxmem = 4096 * MIB,
	    .maxdisk = 16 * GIB,
	    .maxcpu = 2,
	    .uptime = 3600,
	};
	snprintf(w->ctags, sizeof w->ctags, "zlh;zlh-%s", UID);
	snprintf(w->cdesc, sizeof w->cdesc, "zlh:uid=%s\nzlh:owner=user-42\nzlh:name=survival-01\n",
	         UID);
	snprintf(w->cnet0, sizeof w->cnet0,
	         "name=eth0,bridge=vmbr3,gw=10.60.0.1,hwaddr=BC:24:11:00:00:01,ip=10.60.0.5/22,"
	         "type=veth");
	snprintf(w->crootfs, sizeof w->crootfs, "local-lvm:vm-5000-disk-0,size=16G");
	w->cfg = (PveCtConfig){
	    .description = w->cdesc,
	    .tags = w->ctags,
	    .hostname = "mc-paper-5000",
	    .cores = 2,
	    .memory = 4096,
	    .swap = 0,
	    .net0 = w->cnet0,
	    .rootfs = w->crootfs,
	    .unprivileged = true,
	};
	snprintf(w->cfg.digest, sizeof w->cfg.digest, "%s", DIGEST);
	w->st = (PveCtStatus){.status = PVE_RUN_RUNNING, .uptime = 3600, .maxmem = 4096 * MIB};
	w->nodes[0] = (PveNode){
	    .node = "pve1", .status = PVE_NODE_ONLINE, .mem = 8 * GIB, .maxmem = 64 * GIB};
	w->nodes[1] = (PveNode){
	    .node = "pve2", .status = PVE_NODE_ONLINE, .mem = 4 * GIB, .maxmem = 64 * GIB};
	w->nodes[2] =
	    (PveNode){.node = "pve3", .status = PVE_NODE_OFFLINE, .mem = 0, .maxmem = 256 * GIB};
	w->o = (CtObserved){
	    .known = true,
	    .listed_at_ms = NOW - 100,
	    .guest = &w->g,
	    .nodes = w->nodes,
	    .n_nodes = 3,
	    .reserved = w->res,
	    .n_reserved = 0,
	    .now_ms = NOW,
	};
	*state = w;
	return 0;
}

static int teardown(void **state)
{
	free(*state);
	return 0;
}

static CtOp *add_op(W *w, CtOpType t, CtStep step)
{
	assert_true(w->j.n_ops < ELEMENTSOF(w->ops));
	CtOp *op = &w->ops[w->j.n_ops++];
	*op = (CtOp){.type = t, .step = step, .started_ms = NOW - 5000};
	if (step == CT_STEP_DONE)
		op->finished_ms = NOW - 4000;
	return op;
}

static void no_ops(W *w)
{
	w->j.n_ops = 0;
}

static void with_config(W *w)
{
	w->o.config = &w->cfg;
}

static void with_status(W *w, PveRunState s)
{
	w->st.status = s;
	w->o.status = &w->st;
}

static const CtPlan *plan(W *w)
{
	assert_int_equal(recon_container_plan(&w->d, &w->a, &w->j, &w->o, &w->s, &w->p), 0);
	return &w->p;
}

/* Asserts the exact action list. */
static void expect_actions(const CtPlan *p, size_t n, ...)
{
	va_list ap;
	va_start(ap, n);
	char got[256] = "";
	for (size_t i = 0; i < p->n_actions; i++) {
		size_t l = strlen(got);
		snprintf(got + l, sizeof got - l, "%s%s", i ? "," : "",
		         recon_container_action_to_string(p->actions[i].type));
	}
	if (p->n_actions != n)
		fail_msg("expected %zu actions, got [%s]", n, got);
	for (size_t i = 0; i < n; i++) {
		CtActionType t = va_arg(ap, CtActionType);
		if (p->actions[i].type != t)
			fail_msg("action %zu: expected %s, got [%s]", i,
			         recon_container_action_to_string(t), got);
	}
	va_end(ap);
}

static void expect_ready(const CtPlan *p, CtCondStatus st, const char *reason)
{
	assert_true(p->conditions_valid);
	if (p->ready.status != st || strcmp(p->ready.reason, reason) != 0)
		fail_msg("ContainerReady: expected %d %s, got %d %s (%s)", st, reason,
		         p->ready.status, p->ready.reason, p->ready.message);
}

static bool any_external(const CtPlan *p)
{
	for (size_t i = 0; i < p->n_actions; i++)
		if (recon_container_action_class(p->actions[i].type) == CT_CLASS_EXTERNAL)
			return true;
	return false;
}

/* --- U1, P1 -------------------------------------------------------------------- */

static void plan__list_unknown__no_mutation_conditions_kept(void **state) /* U1 */
{
	W *w = *state;
	w->o.known = false;
	w->o.guest = NULL; /* a failed list is not an empty one */
	const CtPlan *p = plan(w);
	expect_actions(p, 1, CT_ACT_NOTHING);
	assert_false(p->conditions_valid);
	assert_int_equal(p->requeue_after_ms, w->s.unknown_requeue_ms);

	w->d.deletion_requested = true;
	p = plan(w);
	expect_actions(p, 1, CT_ACT_NOTHING);
	w->a.vmid = 0;
	w->d.deletion_requested = false;
	p = plan(w);
	expect_actions(p, 1, CT_ACT_NOTHING); /* no ALLOCATE on unknown capacity */
}

static void plan__paused_with_drift__reports_only(void **state) /* P1 */
{
	W *w = *state;
	w->d.paused = true;
	with_config(w);
	w->cfg.memory = 2048;
	const CtPlan *p = plan(w);
	expect_actions(p, 1, CT_ACT_NOTHING);
	assert_false(p->converged);
	assert_int_equal(p->requeue_after_ms, CT_REQUEUE_NONE);
	expect_ready(p, CT_COND_TRUE, "Running");

	w->o.guest = NULL; /* lost: would be RECREATE */
	p = plan(w);
	expect_actions(p, 1, CT_ACT_NOTHING);
	expect_ready(p, CT_COND_FALSE, "Creating");

	w->d.deletion_requested = true;
	p = plan(w);
	expect_actions(p, 1, CT_ACT_NOTHING);
}

static void plan__paused_needs_observation__still_reads(void **state) /* P1 */
{
	W *w = *state;
	w->d.paused = true;
	w->g.maxmem = 2048 * MIB; /* hint differs: READ_CONFIG is an observation */
	const CtPlan *p = plan(w);
	expect_actions(p, 1, CT_ACT_READ_CONFIG);
	assert_int_equal(p->requeue_after_ms, 0);
}

static void plan__paused_converged__still_converged(void **state) /* P1 */
{
	W *w = *state;
	w->d.paused = true;
	const CtPlan *p = plan(w);
	expect_actions(p, 1, CT_ACT_NOTHING);
	assert_true(p->converged);
}

/* --- T1-T3 ------------------------------------------------------------------------- */

static void plan__open_task_not_polled__waits_on_saved_upid(void **state) /* T1 */
{
	W *w = *state;
	w->ops[0].step = CT_STEP_HANDLE;
	w->g.lock[0] = 0;
	snprintf(w->g.lock, sizeof w->g.lock, "create");
	const CtPlan *p = plan(w);
	expect_actions(p, 1, CT_ACT_WAIT_TASK);
	assert_string_equal(p->actions[0].upid, UPID_CREATE);
	assert_string_equal(p->actions[0].node, "pve1"); /* from the UPID */
	assert_int_equal(p->actions[0].op, CT_OP_CREATE);
	assert_int_equal(p->requeue_after_ms, 0);
	expect_ready(p, CT_COND_FALSE, "Creating");

	/* The create task is waited on even when the guest is not listed yet
	 * or a deletion came in meanwhile. */
	w->o.guest = NULL;
	w->d.deletion_requested = true;
	p = plan(w);
	expect_actions(p, 1, CT_ACT_WAIT_TASK);
	expect_ready(p, CT_COND_FALSE, "Deleting");
}

static void plan__open_task_running__waits_poll_interval(void **state) /* T2 */
{
	W *w = *state;
	CtOp *op = add_op(w, CT_OP_RESIZE, CT_STEP_HANDLE);
	op->upid = "UPID:pve1:00000001:00000002:00000003:resize:5000:zlh@pve!c:";
	w->task = (PveTaskStatus){.running = true};
	w->o.task = &w->task;
	const CtPlan *p = plan(w);
	expect_actions(p, 1, CT_ACT_WAIT_TASK);
	assert_int_equal(p->actions[0].op, CT_OP_RESIZE);
	assert_int_equal(p->requeue_after_ms, w->s.task_poll_ms);
	expect_ready(p, CT_COND_TRUE, "Running");
}

static void plan__open_task_stopped__records_exitstatus(void **state) /* T3 */
{
	W *w = *state;
	w->ops[0].step = CT_STEP_HANDLE;
	w->o.guest = NULL;
	w->task = (PveTaskStatus){.running = false, .ok = false};
	snprintf(w->task.exitstatus, sizeof w->task.exitstatus,
	         "unable to create CT 5000 - no space left on device");
	w->o.task = &w->task;
	const CtPlan *p = plan(w);
	expect_actions(p, 1, CT_ACT_RECORD_TASK);
	assert_false(p->actions[0].task_ok);
	assert_string_equal(p->actions[0].task_exit,
	                    "unable to create CT 5000 - no space left on device");
	assert_string_equal(p->actions[0].upid, UPID_CREATE);
	assert_int_equal(p->requeue_after_ms, 0);
}

/* --- D1-D15 --------------------------------------------------------------------------- */

static void plan__delete_earlier_finalizers_pending__waits(void **state) /* D1 */
{
	W *w = *state;
	w->d.deletion_requested = true;
	w->d.earlier_finalizers_pending = true;
	const CtPlan *p = plan(w);
	expect_actions(p, 1, CT_ACT_NOTHING);
	expect_ready(p, CT_COND_FALSE, "Deleting");
	assert_int_equal(p->requeue_after_ms, CT_REQUEUE_NONE);
	assert_false(p->finalized); /* waiting is not done */
}

static void plan__delete_without_allocation__finalized(void **state) /* D2 */
{
	W *w = *state;
	w->d.deletion_requested = true;
	w->a = (CtAllocation){0};
	w->o.guest = NULL;
	no_ops(w);
	const CtPlan *p = plan(w);
	expect_actions(p, 1, CT_ACT_NOTHING);
	assert_true(p->finalized);
	expect_ready(p, CT_COND_FALSE, "Deleted");
	assert_int_equal(p->requeue_after_ms, CT_REQUEUE_NONE);
}

static void plan__delete_absent_create_call_may_land__waits_grace(void **state) /* D3 */
{
	W *w = *state;
	w->d.deletion_requested = true;
	w->o.guest = NULL;
	w->ops[0] = (CtOp){.type = CT_OP_CREATE, .step = CT_STEP_INTENT, .started_ms = NOW - 10000};
	const CtPlan *p = plan(w);
	expect_actions(p, 1, CT_ACT_NOTHING);
	assert_int_equal(p->requeue_after_ms, w->s.call_grace_ms - 10000);
	expect_ready(p, CT_COND_FALSE, "Deleting");
}

static void plan__delete_absent__releases_allocation(void **state) /* D4 */
{
	W *w = *state;
	w->d.deletion_requested = true;
	w->o.guest = NULL;
	const CtPlan *p = plan(w);
	expect_actions(p, 1, CT_ACT_RELEASE_ALLOCATION);
	/* an intent older than the grace no longer holds the release */
	w->ops[0] = (CtOp){
	    .type = CT_OP_CLONE, .step = CT_STEP_CALL, .started_ms = NOW - w->s.call_grace_ms - 1};
	p = plan(w);
	expect_actions(p, 1, CT_ACT_RELEASE_ALLOCATION);
}

static void plan__delete_lock_create_upid_lost__waits(void **state) /* D5 */
{
	W *w = *state;
	w->d.deletion_requested = true;
	snprintf(w->g.lock, sizeof w->g.lock, "create");
	w->ops[0].step = CT_STEP_INTENT;
	const CtPlan *p = plan(w);
	expect_actions(p, 1, CT_ACT_NOTHING);
	assert_int_equal(p->requeue_after_ms, w->s.lock_wait_ms);
}

static void plan__delete_untagged_guest__reads_config_first(void **state) /* D6 */
{
	W *w = *state;
	w->d.deletion_requested = true;
	w->gtags[0] = 0;
	const CtPlan *p = plan(w);
	expect_actions(p, 1, CT_ACT_READ_CONFIG);
}

static void plan__delete_foreign_at_vmid__quarantines_never_destroys(void **state) /* D7 */
{
	W *w = *state;
	w->d.deletion_requested = true;
	w->gtags[0] = 0;
	with_config(w);
	w->ctags[0] = 0;
	snprintf(w->cdesc, sizeof w->cdesc, "someone's database");
	const CtPlan *p = plan(w);
	expect_actions(p, 2, CT_ACT_QUARANTINE_VMID, CT_ACT_RELEASE_ALLOCATION);
	assert_false(any_external(p));
	assert_int_equal(p->actions[0].vmid, 5000);
	assert_int_equal(p->actions[0].incarnation, 1);
}

static void plan__delete_locked_backup__waits(void **state) /* D8 */
{
	W *w = *state;
	w->d.deletion_requested = true;
	snprintf(w->g.lock, sizeof w->g.lock, "backup");
	const CtPlan *p = plan(w);
	expect_actions(p, 1, CT_ACT_NOTHING);
	assert_int_equal(p->requeue_after_ms, w->s.lock_wait_ms);
	expect_ready(p, CT_COND_FALSE, "Deleting");
}

static void plan__delete_orphan_policy_config_not_read__reads_config(void **state) /* D9 */
{
	W *w = *state;
	w->d.deletion_requested = true;
	w->d.deletion_policy = CT_DELETION_ORPHAN;
	const CtPlan *p = plan(w);
	expect_actions(p, 1, CT_ACT_READ_CONFIG);
}

static void plan__delete_orphan_policy__untags_and_leaves_it_running(void **state) /* D10 */
{
	W *w = *state;
	w->d.deletion_requested = true;
	w->d.deletion_policy = CT_DELETION_ORPHAN;
	with_config(w);
	const CtPlan *p = plan(w);
	expect_actions(p, 1, CT_ACT_ORPHAN_UNTAG);
	assert_string_equal(p->actions[0].digest, DIGEST);
	assert_int_equal(p->actions[0].op, CT_OP_UNTAG);
	for (size_t i = 0; i < p->n_actions; i++) {
		assert_int_not_equal(p->actions[i].type, CT_ACT_SHUTDOWN);
		assert_int_not_equal(p->actions[i].type, CT_ACT_DESTROY);
	}
}

static void plan__delete_orphan_policy_untagged__releases(void **state) /* D11 */
{
	W *w = *state;
	w->d.deletion_requested = true;
	w->d.deletion_policy = CT_DELETION_ORPHAN;
	snprintf(w->gtags, sizeof w->gtags, "web");
	with_config(w);
	snprintf(w->ctags, sizeof w->ctags, "web"); /* our uid still in the description */
	const CtPlan *p = plan(w);
	expect_actions(p, 1, CT_ACT_RELEASE_ALLOCATION);
}

static void plan__delete_status_unconfirmed__reads_status(void **state) /* D12 */
{
	W *w = *state;
	w->d.deletion_requested = true;
	w->g.status = PVE_RUN_STOPPED; /* a hint: confirm before destroying */
	const CtPlan *p = plan(w);
	expect_actions(p, 1, CT_ACT_READ_STATUS);
}

static void plan__delete_shutdown_failed_or_lost__stops(void **state) /* D13 */
{
	W *w = *state;
	w->d.deletion_requested = true;
	with_status(w, PVE_RUN_RUNNING);
	CtOp *s = add_op(w, CT_OP_SHUTDOWN, CT_STEP_DONE);
	s->failed = true;
	s->error = "shutdown timed out";
	const CtPlan *p = plan(w);
	expect_actions(p, 1, CT_ACT_STOP);
	assert_int_equal(p->actions[0].op, CT_OP_STOP);

	/* a shutdown whose reply was lost, long past its timeout */
	*s = (CtOp){.type = CT_OP_SHUTDOWN,
	            .step = CT_STEP_INTENT,
	            .started_ms = NOW - w->s.shutdown_timeout_s * 1000 - w->s.call_grace_ms - 1};
	p = plan(w);
	expect_actions(p, 1, CT_ACT_STOP);
	/* ... but not while it may still be running */
	s->started_ms = NOW - 1000;
	p = plan(w);
	expect_actions(p, 1, CT_ACT_SHUTDOWN);
}

static void plan__delete_running__shuts_down_with_force_stop(void **state) /* D14 */
{
	W *w = *state;
	w->d.deletion_requested = true;
	with_status(w, PVE_RUN_RUNNING);
	const CtPlan *p = plan(w);
	expect_actions(p, 1, CT_ACT_SHUTDOWN);
	assert_true(p->actions[0].force_stop);
	assert_int_equal(p->actions[0].timeout_s, 60);
	assert_string_equal(p->actions[0].node, "pve1");
	expect_ready(p, CT_COND_FALSE, "Deleting");
}

static void plan__delete_stopped__destroys_with_purge(void **state) /* D15 */
{
	W *w = *state;
	w->d.deletion_requested = true;
	with_status(w, PVE_RUN_STOPPED);
	const CtPlan *p = plan(w);
	expect_actions(p, 1, CT_ACT_DESTROY);
	assert_int_equal(p->actions[0].vmid, 5000);
	assert_int_equal(p->actions[0].op, CT_OP_DESTROY);
	assert_false(p->actions[0].retry);

	/* a migrated container is destroyed where it is */
	snprintf(w->g.node, sizeof w->g.node, "pve2");
	p = plan(w);
	expect_actions(p, 1, CT_ACT_DESTROY);
	assert_string_equal(p->actions[0].node, "pve2");
}

static void plan__delete_destroy_failed_recently__backs_off(void **state) /* D15 gate */
{
	W *w = *state;
	w->d.deletion_requested = true;
	with_status(w, PVE_RUN_STOPPED);
	CtOp *op = add_op(w, CT_OP_DESTROY, CT_STEP_DONE);
	op->failed = true;
	op->error = "zfs error: dataset is busy";
	op->finished_ms = NOW - 1000;
	const CtPlan *p = plan(w);
	expect_actions(p, 1, CT_ACT_NOTHING);
	assert_int_equal(p->requeue_after_ms, w->s.retry_backoff_ms - 1000);
	expect_ready(p, CT_COND_FALSE, "TaskFailed");
	assert_non_null(strstr(p->ready.message, "dataset is busy"));
	op->finished_ms = NOW - w->s.retry_backoff_ms;
	p = plan(w);
	expect_actions(p, 1, CT_ACT_DESTROY);
	assert_true(p->actions[0].retry);
}

/* --- S1 ------------------------------------------------------------------------------ */

static void plan__lost_seen_in_list_older_than_create__refreshes_no_recreate(void **state) /* S1 */
{
	W *w = *state;
	w->o.guest = NULL;
	w->ops[0].finished_ms = NOW - 50; /* the create finished after the list was taken */
	const CtPlan *p = plan(w);
	expect_actions(p, 1, CT_ACT_REFRESH_LIST);
	assert_int_equal(p->requeue_after_ms, 0);
	w->o.listed_at_ms = NOW - 10;
	p = plan(w);
	expect_actions(p, 1, CT_ACT_RECREATE);
}

static void plan__delete_absent_in_stale_list__refreshes_before_release(void **state) /* S1 */
{
	W *w = *state;
	w->d.deletion_requested = true;
	w->o.guest = NULL;
	CtOp *op = add_op(w, CT_OP_START, CT_STEP_DONE);
	op->finished_ms = NOW - 50;
	const CtPlan *p = plan(w);
	expect_actions(p, 1, CT_ACT_REFRESH_LIST);
	w->o.listed_at_ms = NOW;
	p = plan(w);
	expect_actions(p, 1, CT_ACT_RELEASE_ALLOCATION);
}

static void plan__delete_present_after_destroy_done__refreshes(void **state) /* S1 */
{
	W *w = *state;
	w->d.deletion_requested = true;
	CtOp *op = add_op(w, CT_OP_DESTROY, CT_STEP_DONE);
	op->finished_ms = NOW - 50;
	const CtPlan *p = plan(w);
	expect_actions(p, 1, CT_ACT_REFRESH_LIST);
	w->o.listed_at_ms = NOW;
	w->o.guest = NULL;
	p = plan(w);
	expect_actions(p, 1, CT_ACT_RELEASE_ALLOCATION);
}

static void plan__paused_stale_list__still_refreshes(void **state) /* P1 + S1 */
{
	W *w = *state;
	w->d.paused = true;
	w->o.guest = NULL;
	w->ops[0].finished_ms = NOW - 50;
	const CtPlan *p = plan(w);
	expect_actions(p, 1, CT_ACT_REFRESH_LIST);
}

/* --- A1, A2 ------------------------------------------------------------------------ */

static void plan__no_allocation__allocates_on_node_with_most_free_memory(void **state) /* A1 */
{
	W *w = *state;
	w->a = (CtAllocation){0};
	w->o.guest = NULL;
	no_ops(w);
	const CtPlan *p = plan(w);
	expect_actions(p, 1, CT_ACT_ALLOCATE);
	assert_string_equal(p->actions[0].node, "pve2"); /* 60 GiB free vs 56 */
	assert_int_equal(p->actions[0].memory_mib, 4096);
	assert_int_equal(p->allocated.status, CT_COND_FALSE);
	assert_string_equal(p->allocated.reason, "Pending");
	assert_int_equal(p->requeue_after_ms, 0);

	/* reservations the stats daemon does not show yet count */
	w->res[0] = (CtReserved){.node = "pve2", .reserved_mib = 20 * 1024};
	w->o.n_reserved = 1;
	p = plan(w);
	assert_string_equal(p->actions[0].node, "pve1");
}

static void plan__no_allocation_nothing_fits__unschedulable(void **state) /* A2 */
{
	W *w = *state;
	w->a = (CtAllocation){0};
	w->o.guest = NULL;
	no_ops(w);
	w->d.memory_mib = 200 * 1024; /* fits only on the offline node */
	const CtPlan *p = plan(w);
	expect_actions(p, 1, CT_ACT_NOTHING);
	assert_int_equal(p->allocated.status, CT_COND_FALSE);
	assert_string_equal(p->allocated.reason, "Unschedulable");
	expect_ready(p, CT_COND_FALSE, "Unschedulable");
	assert_int_equal(p->requeue_after_ms, w->s.unschedulable_requeue_ms);
}

/* --- C1-C4: absent ------------------------------------------------------------------- */

static void plan__container_lost_by_hand__recreates_new_incarnation(void **state) /* C1 */
{
	W *w = *state;
	w->o.guest = NULL;
	w->j.incarnation = 2;
	const CtPlan *p = plan(w);
	expect_actions(p, 1, CT_ACT_RECREATE);
	assert_string_equal(p->actions[0].reason, "Recreated");
	assert_int_equal(p->actions[0].incarnation, 3);
	assert_false(any_external(p));
	expect_ready(p, CT_COND_FALSE, "Creating");
}

static void plan__create_task_failed_in_backoff__waits_task_failed(void **state) /* C2 */
{
	W *w = *state;
	w->o.guest = NULL;
	w->ops[0].failed = true;
	w->ops[0].error = "unable to create CT 5000 - storage full";
	w->ops[0].finished_ms = NOW - 5000;
	const CtPlan *p = plan(w);
	expect_actions(p, 1, CT_ACT_NOTHING);
	expect_ready(p, CT_COND_FALSE, "TaskFailed");
	assert_non_null(strstr(p->ready.message, "storage full"));
	assert_int_equal(p->requeue_after_ms, w->s.retry_backoff_ms - 5000);
}

static void plan__clone_mode_no_template_on_node__reports(void **state) /* C3 */
{
	W *w = *state;
	w->o.guest = NULL;
	no_ops(w);
	w->s.mode = CT_MODE_CLONE;
	w->s.templates = w->tpl;
	w->s.n_templates = 1;
	w->a.node = "pve2";
	const CtPlan *p = plan(w);
	expect_actions(p, 1, CT_ACT_NOTHING);
	expect_ready(p, CT_COND_FALSE, "NoTemplate");
}

static void plan__absent_never_created__creates_with_same_vmid(void **state) /* C4 */
{
	W *w = *state;
	w->o.guest = NULL;
	no_ops(w);
	const CtPlan *p = plan(w);
	expect_actions(p, 1, CT_ACT_CREATE);
	assert_int_equal(p->actions[0].vmid, 5000);
	assert_string_equal(p->actions[0].node, "pve1");
	assert_int_equal(p->actions[0].op, CT_OP_CREATE);
	assert_false(p->actions[0].retry);
	expect_ready(p, CT_COND_FALSE, "Creating");
}

static void plan__absent_intent_outcome_lost__creates_again_same_vmid(void **state) /* C4 */
{
	W *w = *state;
	w->o.guest = NULL;
	w->ops[0] = (CtOp){.type = CT_OP_CREATE, .step = CT_STEP_INTENT, .started_ms = NOW - 10};
	const CtPlan *p = plan(w);
	expect_actions(p, 1, CT_ACT_CREATE);
	assert_int_equal(p->actions[0].vmid, 5000);
	w->ops[0].step = CT_STEP_CALL;
	p = plan(w);
	expect_actions(p, 1, CT_ACT_CREATE);
	w->ops[0].step = CT_STEP_HANDLE; /* "handle" without a UPID: nothing to wait on */
	p = plan(w);
	expect_actions(p, 1, CT_ACT_CREATE);
}

static void plan__absent_failed_backoff_over__retries(void **state) /* C4 after C2 */
{
	W *w = *state;
	w->o.guest = NULL;
	w->ops[0].failed = true;
	w->ops[0].error = "boom";
	w->ops[0].finished_ms = NOW - w->s.retry_backoff_ms;
	const CtPlan *p = plan(w);
	expect_actions(p, 1, CT_ACT_CREATE);
	assert_true(p->actions[0].retry);
	expect_ready(p, CT_COND_FALSE, "TaskFailed");
}

static void plan__absent_clone_mode__clones_template_of_the_node(void **state) /* C4 */
{
	W *w = *state;
	w->o.guest = NULL;
	no_ops(w);
	w->s.mode = CT_MODE_CLONE;
	w->s.templates = w->tpl;
	w->s.n_templates = 2;
	w->a.node = "pve2";
	w->d.restart_at_ms = 12345; /* requested before it existed: the start honours it */
	const CtPlan *p = plan(w);
	expect_actions(p, 1, CT_ACT_CLONE);
	assert_int_equal(p->actions[0].template_vmid, 901);
	assert_string_equal(p->actions[0].node, "pve2");
	assert_int_equal(p->actions[0].op, CT_OP_CLONE);
	assert_int_equal(p->actions[0].restart_at_ms, 12345);
}

/* --- C5-C11: present, identity ------------------------------------------------------- */

static void plan__lock_create_without_upid__waits(void **state) /* C5 */
{
	W *w = *state;
	w->ops[0].step = CT_STEP_INTENT;
	snprintf(w->g.lock, sizeof w->g.lock, "create");
	w->gtags[0] = 0;
	w->g.name = NULL;
	w->g.status = PVE_RUN_UNKNOWN;
	const CtPlan *p = plan(w);
	expect_actions(p, 1, CT_ACT_NOTHING);
	assert_int_equal(p->requeue_after_ms, w->s.lock_wait_ms);
	expect_ready(p, CT_COND_FALSE, "Creating");
}

static void plan__untagged_guest__reads_config_to_identify(void **state) /* C6 */
{
	W *w = *state;
	w->gtags[0] = 0;
	const CtPlan *p = plan(w);
	expect_actions(p, 1, CT_ACT_READ_CONFIG);
	assert_false(any_external(p));
}

static void plan__vmid_taken_by_foreign_ct__quarantines(void **state) /* C7 */
{
	W *w = *state;
	w->gtags[0] = 0;
	with_config(w);
	w->ctags[0] = 0;
	snprintf(w->cdesc, sizeof w->cdesc, "ops: legacy mail relay");
	const CtPlan *p = plan(w);
	expect_actions(p, 1, CT_ACT_QUARANTINE_VMID);
	assert_int_equal(p->actions[0].vmid, 5000);
	assert_int_equal(p->actions[0].incarnation, 1);
	assert_string_equal(p->actions[0].reason, "Conflict");
	assert_false(any_external(p));
	expect_ready(p, CT_COND_FALSE, "Conflict");
	assert_int_equal(p->allocated.status, CT_COND_FALSE);
	assert_string_equal(p->allocated.reason, "Conflict");
}

static void plan__vmid_taken_by_other_servers_ct__quarantines(void **state) /* C7 */
{
	W *w = *state;
	snprintf(w->gtags, sizeof w->gtags, "zlh;zlh-%s", OTHER_UID);
	const CtPlan *p = plan(w);
	expect_actions(p, 1, CT_ACT_QUARANTINE_VMID);
}

static void plan__vmid_taken_by_vm_or_template__quarantines(void **state) /* C7 */
{
	W *w = *state;
	w->g.type = PVE_GUEST_QEMU;
	const CtPlan *p = plan(w);
	expect_actions(p, 1, CT_ACT_QUARANTINE_VMID);
	w->g.type = PVE_GUEST_LXC;
	w->g.template_ = true;
	p = plan(w);
	expect_actions(p, 1, CT_ACT_QUARANTINE_VMID);
}

static void plan__locked_backup__waits_ready_by_status(void **state) /* C8 */
{
	W *w = *state;
	snprintf(w->g.lock, sizeof w->g.lock, "backup");
	w->g.maxmem = 1; /* even with drift: nothing while locked */
	const CtPlan *p = plan(w);
	expect_actions(p, 1, CT_ACT_NOTHING);
	assert_int_equal(p->requeue_after_ms, w->s.lock_wait_ms);
	expect_ready(p, CT_COND_TRUE, "Running");
	assert_non_null(strstr(p->ready.message, "locked (backup)"));
	snprintf(w->g.lock, sizeof w->g.lock, "migrate");
	p = plan(w);
	expect_actions(p, 1, CT_ACT_NOTHING);
}

static void plan__migrated_to_other_node__follows_no_recreate(void **state) /* C9 */
{
	W *w = *state;
	snprintf(w->g.node, sizeof w->g.node, "pve2");
	const CtPlan *p = plan(w);
	expect_actions(p, 2, CT_ACT_FOLLOW_MIGRATION, CT_ACT_NOTHING);
	assert_string_equal(p->actions[0].node, "pve2");
	assert_true(p->converged);

	/* and later actions go to the node it is on */
	with_config(w);
	w->cfg.cores = 1;
	p = plan(w);
	expect_actions(p, 2, CT_ACT_FOLLOW_MIGRATION, CT_ACT_UPDATE_CONFIG);
	assert_string_equal(p->actions[1].node, "pve2");
}

static void plan__clone_done_untagged__configures_all_fields(void **state) /* C10 */
{
	W *w = *state;
	w->ops[0].type = CT_OP_CLONE;
	w->s.mode = CT_MODE_CLONE;
	w->s.templates = w->tpl;
	w->s.n_templates = 2;
	snprintf(w->gtags, sizeof w->gtags, "template-base");
	with_config(w);
	snprintf(w->ctags, sizeof w->ctags, "template-base");
	w->cfg.cores = 1;
	w->cfg.memory = 512;
	w->cfg.net0 = NULL;
	w->g.status = PVE_RUN_STOPPED;
	const CtPlan *p = plan(w);
	expect_actions(p, 1, CT_ACT_CONFIG);
	assert_int_equal(p->actions[0].config_fields, CT_CFG_ALL & ~(unsigned)CT_CFG_FEATURES);
	assert_string_equal(p->actions[0].digest, DIGEST);
	assert_int_equal(p->actions[0].op, CT_OP_CONFIG);
	expect_ready(p, CT_COND_FALSE, "Creating");

	w->d.kind = CT_KIND_DEVSERVER;
	p = plan(w);
	assert_int_equal(p->actions[0].config_fields, CT_CFG_ALL);
}

static void plan__our_uid_in_description_no_tags__adopts_and_tags(void **state) /* C11 */
{
	W *w = *state;
	/* crash between clone and config: the clone op never saw "done" */
	w->ops[0] = (CtOp){.type = CT_OP_CLONE, .step = CT_STEP_INTENT, .started_ms = NOW - 9000};
	w->s.mode = CT_MODE_CLONE;
	w->s.templates = w->tpl;
	w->s.n_templates = 2;
	w->gtags[0] = 0;
	with_config(w);
	w->ctags[0] = 0;
	const CtPlan *p = plan(w);
	/* the lost clone is settled by what is observed, then adopted */
	expect_actions(p, 2, CT_ACT_RECORD_TASK, CT_ACT_ADOPT_AND_TAG);
	assert_int_equal(p->actions[0].op, CT_OP_CLONE);
	assert_string_equal(p->actions[1].reason, "Adopted");
	assert_true(p->actions[1].config_fields & CT_CFG_TAGS);
	assert_string_equal(p->actions[1].digest, DIGEST);

	/* tags removed by hand from a created one: adopted back the same way */
	w->ops[0] = (CtOp){.type = CT_OP_CREATE, .step = CT_STEP_DONE};
	w->s.mode = CT_MODE_CREATE;
	p = plan(w);
	expect_actions(p, 1, CT_ACT_ADOPT_AND_TAG);
}

static void plan__create_reply_lost_container_ours__records_create_done(void **state) /* C9b */
{
	W *w = *state;
	w->ops[0] = (CtOp){.type = CT_OP_CREATE, .step = CT_STEP_INTENT, .started_ms = NOW - 9000};
	const CtPlan *p = plan(w);
	expect_actions(p, 2, CT_ACT_RECORD_TASK, CT_ACT_NOTHING);
	assert_int_equal(p->actions[0].op, CT_OP_CREATE);
	assert_true(p->actions[0].task_ok);
	assert_string_equal(p->actions[0].upid, "");
	assert_true(p->converged);

	/* with drift as well: the record comes first, the call last */
	with_config(w);
	w->cfg.cores = 1;
	p = plan(w);
	expect_actions(p, 2, CT_ACT_RECORD_TASK, CT_ACT_UPDATE_CONFIG);
}

/* --- C12-C21: ours ---------------------------------------------------------------------- */

static void plan__hints_differ_or_missing__reads_config(void **state) /* C12 */
{
	W *w = *state;
	w->g.maxmem = 8192 * MIB; /* memory changed by hand */
	const CtPlan *p = plan(w);
	expect_actions(p, 1, CT_ACT_READ_CONFIG);
	w->g.maxmem = 4096 * MIB;
	w->g.name = NULL; /* just created: the stats daemon has not reported */
	p = plan(w);
	expect_actions(p, 1, CT_ACT_READ_CONFIG);
	w->g.name = w->gname;
	w->g.maxdisk = -1;
	p = plan(w);
	expect_actions(p, 1, CT_ACT_READ_CONFIG);
	w->g.maxdisk = 16 * GIB;
	snprintf(w->gtags, sizeof w->gtags, "zlh-%s", UID); /* "zlh" removed by hand */
	p = plan(w);
	expect_actions(p, 1, CT_ACT_READ_CONFIG);
}

static void plan__memory_changed_by_hand__updates_config_with_digest(void **state) /* C13 */
{
	W *w = *state;
	with_config(w);
	w->cfg.memory = 8192;
	const CtPlan *p = plan(w);
	expect_actions(p, 1, CT_ACT_UPDATE_CONFIG);
	assert_int_equal(p->actions[0].config_fields, CT_CFG_MEMORY);
	assert_string_equal(p->actions[0].digest, DIGEST);
	assert_string_equal(p->actions[0].reason, "DriftRepaired");
	assert_non_null(strstr(p->actions[0].message, "memory 8192->4096"));
	expect_ready(p, CT_COND_TRUE, "Running");
}

static void plan__config_drift__each_field(void **state) /* C13 */
{
	W *w = *state;
	with_config(w);
	w->cfg.cores = 4;
	w->cfg.swap = 512;
	snprintf(w->cfg.hostname, sizeof w->cfg.hostname, "renamed");
	snprintf(w->ctags, sizeof w->ctags, "web;zlh-%s", UID); /* "zlh" removed */
	snprintf(w->cnet0, sizeof w->cnet0, "name=eth0,bridge=vmbr0,ip=dhcp,type=veth");
	const CtPlan *p = plan(w);
	expect_actions(p, 1, CT_ACT_UPDATE_CONFIG);
	assert_int_equal(p->actions[0].config_fields,
	                 CT_CFG_CORES | CT_CFG_SWAP | CT_CFG_HOSTNAME | CT_CFG_TAGS | CT_CFG_NET0);
}

static void plan__devserver_without_nesting__updates_features(void **state) /* C13 */
{
	W *w = *state;
	/* a DevServer needs nesting=1; a GameServer does not care */
	with_config(w);
	w->d.kind = CT_KIND_DEVSERVER;
	w->a.hostname = "mc-paper-5000";
	snprintf(w->cnet0, sizeof w->cnet0, "name=eth0,bridge=vmbr2,gw=10.70.0.1,ip=10.60.0.5/22");
	const CtPlan *p = plan(w);
	expect_actions(p, 1, CT_ACT_UPDATE_CONFIG);
	assert_int_equal(p->actions[0].config_fields, CT_CFG_FEATURES);
	w->cfg.features = "nesting=1";
	p = plan(w);
	expect_actions(p, 1, CT_ACT_NOTHING);
	assert_true(p->converged);

	/* extra tags an operator added are not drift */
	snprintf(w->ctags, sizeof w->ctags, "mine;zlh;zlh-%s", UID);
	p = plan(w);
	expect_actions(p, 1, CT_ACT_NOTHING);
}

static void plan__config_repair_failed__backs_off(void **state) /* C13 gate */
{
	W *w = *state;
	with_config(w);
	w->cfg.cores = 4;
	CtOp *op = add_op(w, CT_OP_CONFIG, CT_STEP_DONE);
	op->failed = true;
	op->error = "Parameter verification failed.";
	op->finished_ms = NOW - 10;
	const CtPlan *p = plan(w);
	expect_actions(p, 1, CT_ACT_NOTHING);
	expect_ready(p, CT_COND_FALSE, "TaskFailed");
}

static void plan__disk_smaller__resizes(void **state) /* C14 */
{
	W *w = *state;
	with_config(w);
	w->d.disk_gib = 32;
	const CtPlan *p = plan(w);
	expect_actions(p, 1, CT_ACT_RESIZE);
	assert_int_equal(p->actions[0].size_gib, 32);
	assert_int_equal(p->actions[0].op, CT_OP_RESIZE);
}

static void plan__disk_larger__converged_and_reported(void **state) /* C14 / C21 */
{
	W *w = *state;
	with_config(w);
	w->d.disk_gib = 8;
	const CtPlan *p = plan(w);
	expect_actions(p, 1, CT_ACT_NOTHING);
	assert_true(p->converged);
	assert_non_null(strstr(p->ready.message, "cannot shrink"));
	/* hints alone (maxdisk >= diskGiB) need no config read */
	w->o.config = NULL;
	p = plan(w);
	expect_actions(p, 1, CT_ACT_NOTHING);
}

static void plan__power_differs_unconfirmed__reads_status(void **state) /* C15 */
{
	W *w = *state;
	w->g.status = PVE_RUN_STOPPED;
	const CtPlan *p = plan(w);
	expect_actions(p, 1, CT_ACT_READ_STATUS);
	/* the hint was stale: status/current says running */
	with_status(w, PVE_RUN_RUNNING);
	p = plan(w);
	expect_actions(p, 1, CT_ACT_NOTHING);
	assert_true(p->converged);
	/* "unknown" (a just-created CT) is confirmed the same way */
	w->o.status = NULL;
	w->g.status = PVE_RUN_UNKNOWN;
	p = plan(w);
	expect_actions(p, 1, CT_ACT_READ_STATUS);
}

static void plan__want_running_stopped__starts(void **state) /* C16 */
{
	W *w = *state;
	with_status(w, PVE_RUN_STOPPED);
	w->d.restart_at_ms = 777;
	const CtPlan *p = plan(w);
	expect_actions(p, 1, CT_ACT_START);
	assert_int_equal(p->actions[0].op, CT_OP_START);
	assert_int_equal(p->actions[0].restart_at_ms, 777); /* the start is the restart */
	expect_ready(p, CT_COND_FALSE, "Stopped");
}

static void plan__want_stopped_shutdown_failed__stops(void **state) /* C17 */
{
	W *w = *state;
	w->d.power = CT_POWER_STOPPED;
	with_status(w, PVE_RUN_RUNNING);
	CtOp *op = add_op(w, CT_OP_SHUTDOWN, CT_STEP_DONE);
	op->failed = true;
	op->error = "command 'lxc-stop' failed";
	const CtPlan *p = plan(w);
	expect_actions(p, 1, CT_ACT_STOP);
	expect_ready(p, CT_COND_FALSE, "Running");
}

static void plan__want_stopped_running__shuts_down(void **state) /* C18 */
{
	W *w = *state;
	w->d.power = CT_POWER_STOPPED;
	with_status(w, PVE_RUN_RUNNING);
	const CtPlan *p = plan(w);
	expect_actions(p, 1, CT_ACT_SHUTDOWN);
	assert_true(p->actions[0].force_stop);
	assert_int_equal(p->actions[0].timeout_s, w->s.shutdown_timeout_s);
	/* stopped as wanted: converged, ContainerReady True Stopped */
	with_status(w, PVE_RUN_STOPPED);
	w->g.status = PVE_RUN_STOPPED;
	p = plan(w);
	expect_actions(p, 1, CT_ACT_NOTHING);
	assert_true(p->converged);
	expect_ready(p, CT_COND_TRUE, "Stopped");
}

static void plan__reboot_outcome_lost_uptime_shows_boot__records_restart(void **state) /* C19 */
{
	W *w = *state;
	w->d.restart_at_ms = 5555;
	w->j.last_restart_at_ms = 1111;
	with_status(w, PVE_RUN_RUNNING);
	CtOp *op = add_op(w, CT_OP_REBOOT, CT_STEP_INTENT);
	op->restart_at_ms = 5555;
	op->started_ms = NOW - 60000;
	w->st.uptime = 30; /* booted 30 s ago, after the intent */
	const CtPlan *p = plan(w);
	expect_actions(p, 1, CT_ACT_RECORD_RESTART);
	assert_int_equal(p->actions[0].restart_at_ms, 5555);
	assert_false(any_external(p));

	/* the reboot task done but last_restart not updated yet: record, no 2nd reboot */
	op->step = CT_STEP_DONE;
	w->st.uptime = 3600;
	p = plan(w);
	expect_actions(p, 1, CT_ACT_RECORD_RESTART);
}

static void plan__restart_at_newer__reboots_exactly_once(void **state) /* C20 */
{
	W *w = *state;
	w->d.restart_at_ms = 5555;
	w->j.last_restart_at_ms = 1111;
	const CtPlan *p = plan(w);
	expect_actions(p, 1, CT_ACT_READ_STATUS); /* confirm running first */
	with_status(w, PVE_RUN_RUNNING);
	p = plan(w);
	expect_actions(p, 1, CT_ACT_REBOOT);
	assert_int_equal(p->actions[0].restart_at_ms, 5555);
	assert_int_equal(p->actions[0].op, CT_OP_REBOOT);

	/* the reboot intent lost its reply and uptime predates it: reboot again */
	CtOp *op = add_op(w, CT_OP_REBOOT, CT_STEP_INTENT);
	op->restart_at_ms = 5555;
	op->started_ms = NOW - 60000;
	w->st.uptime = 3600;
	p = plan(w);
	expect_actions(p, 1, CT_ACT_REBOOT);

	/* once recorded as honoured, never again */
	w->j.last_restart_at_ms = 5555;
	p = plan(w);
	expect_actions(p, 1, CT_ACT_NOTHING);
	assert_true(p->converged);

	/* an older restartAt than the one honoured does nothing either */
	w->d.restart_at_ms = 4000;
	p = plan(w);
	expect_actions(p, 1, CT_ACT_NOTHING);
}

static void plan__restart_due_while_stopped__waits_for_start(void **state) /* C20 */
{
	W *w = *state;
	w->d.power = CT_POWER_STOPPED;
	w->d.restart_at_ms = 5555;
	w->g.status = PVE_RUN_STOPPED;
	const CtPlan *p = plan(w);
	expect_actions(p, 1, CT_ACT_NOTHING);
	assert_true(p->converged);
}

static void plan__converged__nothing_no_reads(void **state) /* C21 */
{
	W *w = *state;
	const CtPlan *p = plan(w);
	expect_actions(p, 1, CT_ACT_NOTHING);
	assert_true(p->converged);
	assert_int_equal(p->requeue_after_ms, CT_REQUEUE_NONE);
	expect_ready(p, CT_COND_TRUE, "Running");
	assert_int_equal(p->allocated.status, CT_COND_TRUE);
	assert_string_equal(p->allocated.reason, "Allocated");
	assert_non_null(strstr(p->allocated.message, "mc-paper-5000"));

	/* with the config read it is still nothing */
	with_config(w);
	p = plan(w);
	expect_actions(p, 1, CT_ACT_NOTHING);
	assert_true(p->converged);
}

static void plan__invalid_input__einval(void **state)
{
	W *w = *state;
	CtPlan p = {.n_actions = 42};
	w->d.uid = NULL;
	assert_int_equal(recon_container_plan(&w->d, &w->a, &w->j, &w->o, &w->s, &p), -EINVAL);
	w->d.uid = "bad uid";
	assert_int_equal(recon_container_plan(&w->d, &w->a, &w->j, &w->o, &w->s, &p), -EINVAL);
	w->d.uid = UID;
	w->d.memory_mib = 0;
	assert_int_equal(recon_container_plan(&w->d, &w->a, &w->j, &w->o, &w->s, &p), -EINVAL);
	w->d.memory_mib = 4096;
	w->a.vmid = 99;
	assert_int_equal(recon_container_plan(&w->d, &w->a, &w->j, &w->o, &w->s, &p), -EINVAL);
	assert_int_equal(p.n_actions, 42);
	assert_int_equal(recon_container_plan(&w->d, &w->a, &w->j, NULL, &w->s, &p), -EINVAL);
}

/* Every plan holds at most one external call, and it is the last action. */
static void plan__invariant__at_most_one_external_call_last(void **state)
{
	W *w = *state;
	snprintf(w->g.node, sizeof w->g.node, "pve2");
	with_config(w);
	w->cfg.cores = 1;
	const CtPlan *p = plan(w);
	size_t ext = 0;
	for (size_t i = 0; i < p->n_actions; i++)
		if (recon_container_action_class(p->actions[i].type) == CT_CLASS_EXTERNAL) {
			ext++;
			assert_int_equal(i, p->n_actions - 1);
		}
	assert_int_equal(ext, 1);
}

/* Over a grid of worlds, the structural promises hold for every plan:
 * 1..CT_MAX_ACTIONS actions; at most one external call and it is last; an
 * observation or NOTHING is last; nothing mutating on an unknown list or
 * while paused; never a create on a present guest; never an external call
 * while a foreign guest sits at the vmid; never a destroy unless deleting;
 * never a stop or destroy under deletionPolicy Orphan. */
static void plan__grid__structural_invariants_hold(void **state)
{
	W *w = *state;
	W base = *w;
	char other_tags[96];
	snprintf(other_tags, sizeof other_tags, "zlh;zlh-%s", OTHER_UID);
	static const char *const locks[] = {"", "create", "backup"};
	static const CtStep steps[] = {CT_STEP_INTENT, CT_STEP_HANDLE, CT_STEP_DONE};
	/* One loop over a mixed-radix combination index: known, guest (absent,
	 * ours, untagged-ours, foreign), lock, status (running, stopped,
	 * unknown), power, deletion (no, Delete, Orphan), paused, create-op
	 * step, failed, config read, mode. */
	static const size_t radix[] = {2, 4, ELEMENTSOF(locks), 3, 2, 3, 2, ELEMENTSOF(steps), 2,
	                               2, 2};
	size_t total = 1;
	for (size_t i = 0; i < ELEMENTSOF(radix); i++)
		total *= radix[i];
	size_t n_plans = 0;
	for (size_t combo = 0; combo < total; combo++) {
		size_t v[ELEMENTSOF(radix)], rest = combo;
		for (size_t i = 0; i < ELEMENTSOF(radix); i++) {
			v[i] = rest % radix[i];
			rest /= radix[i];
		}
		bool known = v[0], paused = v[6], failed = v[8], cfg = v[9], mode = v[10];
		size_t guest = v[1], lk = v[2], st = v[3], power = v[4], del = v[5], sp = v[7];

		*w = base;
		w->j.ops = w->ops;
		w->o.known = known;
		w->o.guest = guest ? &w->g : NULL;
		w->g.tags = guest == 1 ? w->gtags : guest == 2 ? "" : other_tags;
		w->cfg.tags = guest == 1 ? w->ctags : guest == 2 ? "" : other_tags;
		snprintf(w->g.lock, sizeof w->g.lock, "%s", locks[lk]);
		w->g.status = st == 0   ? PVE_RUN_RUNNING
		              : st == 1 ? PVE_RUN_STOPPED
		                        : PVE_RUN_UNKNOWN;
		w->o.config = cfg ? &w->cfg : NULL;
		w->d.power = power ? CT_POWER_STOPPED : CT_POWER_RUNNING;
		w->d.deletion_requested = del != 0;
		w->d.deletion_policy = del == 2 ? CT_DELETION_ORPHAN : CT_DELETION_DELETE;
		w->d.paused = paused;
		w->d.restart_at_ms = 99;
		w->ops[0].type = mode ? CT_OP_CLONE : CT_OP_CREATE;
		w->ops[0].step = steps[sp];
		w->ops[0].failed = failed && steps[sp] == CT_STEP_DONE;
		w->ops[0].finished_ms = steps[sp] == CT_STEP_DONE ? NOW - 100000 : 0;
		w->s.mode = mode ? CT_MODE_CLONE : CT_MODE_CREATE;
		w->s.templates = w->tpl;
		w->s.n_templates = 2;
		const CtPlan *p = plan(w);
		n_plans++;

		assert_true(p->n_actions >= 1 && p->n_actions <= CT_MAX_ACTIONS);
		size_t ext = 0;
		for (size_t i = 0; i < p->n_actions; i++) {
			CtActionType t = p->actions[i].type;
			CtActionClass c = recon_container_action_class(t);
			bool last = i == p->n_actions - 1;
			if (c == CT_CLASS_EXTERNAL) {
				ext++;
				assert_true(last);
				assert_true(known && !paused);
				assert_true(guest != 3); /* never touch a foreign guest */
				if (t == CT_ACT_CREATE || t == CT_ACT_CLONE)
					assert_null(w->o.guest);
				if (t == CT_ACT_SHUTDOWN || t == CT_ACT_STOP)
					assert_true(del != 2);
				if (t == CT_ACT_DESTROY)
					assert_int_equal(del, 1);
			}
			if (c == CT_CLASS_OBSERVE || t == CT_ACT_NOTHING)
				assert_true(last);
			if (c == CT_CLASS_STORE)
				assert_false(paused);
		}
		assert_true(ext <= 1);
		if (p->finalized) {
			assert_true(w->d.deletion_requested);
			assert_int_equal(p->n_actions, 1);
			assert_int_equal(p->actions[0].type, CT_ACT_NOTHING);
		}
		if (!known) {
			assert_int_equal(p->n_actions, 1);
			assert_int_equal(p->actions[0].type, CT_ACT_NOTHING);
			assert_false(p->conditions_valid);
		}
	}
	assert_true(n_plans > 5000);
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
	    T(plan__list_unknown__no_mutation_conditions_kept),
	    T(plan__paused_with_drift__reports_only),
	    T(plan__paused_needs_observation__still_reads),
	    T(plan__paused_converged__still_converged),
	    T(plan__open_task_not_polled__waits_on_saved_upid),
	    T(plan__open_task_running__waits_poll_interval),
	    T(plan__open_task_stopped__records_exitstatus),
	    T(plan__delete_earlier_finalizers_pending__waits),
	    T(plan__delete_without_allocation__finalized),
	    T(plan__delete_absent_create_call_may_land__waits_grace),
	    T(plan__delete_absent__releases_allocation),
	    T(plan__delete_lock_create_upid_lost__waits),
	    T(plan__delete_untagged_guest__reads_config_first),
	    T(plan__delete_foreign_at_vmid__quarantines_never_destroys),
	    T(plan__delete_locked_backup__waits),
	    T(plan__delete_orphan_policy_config_not_read__reads_config),
	    T(plan__delete_orphan_policy__untags_and_leaves_it_running),
	    T(plan__delete_orphan_policy_untagged__releases),
	    T(plan__delete_status_unconfirmed__reads_status),
	    T(plan__delete_shutdown_failed_or_lost__stops),
	    T(plan__delete_running__shuts_down_with_force_stop),
	    T(plan__delete_stopped__destroys_with_purge),
	    T(plan__delete_destroy_failed_recently__backs_off),
	    T(plan__lost_seen_in_list_older_than_create__refreshes_no_recreate),
	    T(plan__delete_absent_in_stale_list__refreshes_before_release),
	    T(plan__delete_present_after_destroy_done__refreshes),
	    T(plan__paused_stale_list__still_refreshes),
	    T(plan__no_allocation__allocates_on_node_with_most_free_memory),
	    T(plan__no_allocation_nothing_fits__unschedulable),
	    T(plan__container_lost_by_hand__recreates_new_incarnation),
	    T(plan__create_task_failed_in_backoff__waits_task_failed),
	    T(plan__clone_mode_no_template_on_node__reports),
	    T(plan__absent_never_created__creates_with_same_vmid),
	    T(plan__absent_intent_outcome_lost__creates_again_same_vmid),
	    T(plan__absent_failed_backoff_over__retries),
	    T(plan__absent_clone_mode__clones_template_of_the_node),
	    T(plan__lock_create_without_upid__waits),
	    T(plan__untagged_guest__reads_config_to_identify),
	    T(plan__vmid_taken_by_foreign_ct__quarantines),
	    T(plan__vmid_taken_by_other_servers_ct__quarantines),
	    T(plan__vmid_taken_by_vm_or_template__quarantines),
	    T(plan__locked_backup__waits_ready_by_status),
	    T(plan__migrated_to_other_node__follows_no_recreate),
	    T(plan__clone_done_untagged__configures_all_fields),
	    T(plan__our_uid_in_description_no_tags__adopts_and_tags),
	    T(plan__create_reply_lost_container_ours__records_create_done),
	    T(plan__hints_differ_or_missing__reads_config),
	    T(plan__memory_changed_by_hand__updates_config_with_digest),
	    T(plan__config_drift__each_field),
	    T(plan__devserver_without_nesting__updates_features),
	    T(plan__config_repair_failed__backs_off),
	    T(plan__disk_smaller__resizes),
	    T(plan__disk_larger__converged_and_reported),
	    T(plan__power_differs_unconfirmed__reads_status),
	    T(plan__want_running_stopped__starts),
	    T(plan__want_stopped_shutdown_failed__stops),
	    T(plan__want_stopped_running__shuts_down),
	    T(plan__reboot_outcome_lost_uptime_shows_boot__records_restart),
	    T(plan__restart_at_newer__reboots_exactly_once),
	    T(plan__restart_due_while_stopped__waits_for_start),
	    T(plan__converged__nothing_no_reads),
	    T(plan__invalid_input__einval),
	    T(plan__invariant__at_most_one_external_call_last),
	    T(plan__grid__structural_invariants_hold),
	};
	return cmocka_run_group_tests_name("container-plan", tests, NULL, NULL);
}
