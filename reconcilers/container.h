/* container.h - the container reconciler's types and its PURE parts:
 * the plan (desired x journal x observed -> actions + conditions), placement,
 * orphan classification, and the act-side builders of the exact Proxmox call
 * parameters. No I/O, no SQL, no clock: everything comes in as plain structs.
 * The decision table is at the top of container.c.
 *
 * How the runtime uses it, per server and pass:
 *   1. observe: one /cluster/resources per resync (shared by all servers);
 *      fill CtObserved with the guest at the allocated vmid (or NULL).
 *   2. plan = recon_container_plan(...)
 *   3. execute the actions in order; stop at the first failure. An
 *      observation (READ_CONFIG, READ_STATUS, REFRESH_LIST) ends the list:
 *      do it, put the result into CtObserved, plan again (bounded: at most
 *      4 rounds a pass). Each list holds at most ONE external (Proxmox)
 *      call, always last; store-only actions may precede it.
 *   4. WAIT_TASK: poll the UPID (pve_task_status); still running: requeue
 *      after task_poll; stopped: record done/failed + exitstatus on the op;
 *      "no such task" (-ENOENT): record done with the outcome unknown, the
 *      next observation decides.
 *   5. requeue per plan.requeue_after_ms.
 * Before every external call the runtime writes the journal intent (step
 * intent), checks its lease, calls, saves the handle (UPID), and the next
 * pass waits on it (WAIT_TASK). DESIGN.md section 7 rule 6.
 *
 * What the store has to provide (reconcilers write no SQL):
 *   - CtJournal: the current incarnation of the server's container, the
 *     LATEST operations row per action of that incarnation (zlh.operations
 *     step 'failed' maps to CT_STEP_DONE + failed), each with its handle,
 *     error, created_at (started_ms), updated_at when done (finished_ms),
 *     and for reboots the restartAt it honours (payload); plus the
 *     restartAt last honoured.
 *   - idempotency keys: create/clone "<uid>:create:<incarnation>[:<attempt>]"
 *     (retry = true -> next attempt), reboot "<uid>:reboot:<restartAt>",
 *     repeatable ops (config, resize, start, shutdown, stop, destroy,
 *     untag) "<uid>:<op>:<incarnation>:<seq>" with a new seq once the
 *     previous row is done. The generation is not part of the create key:
 *     one container per incarnation, whatever the spec says meanwhile.
 *   - ALLOCATE (one transaction): the lowest free vmid of vmid_range not
 *     quarantined, a free ip of the kind's network, the hostname
 *     (spec.hostname, else recon_container_default_hostname()), node =
 *     action.node, and the create/clone intent row.
 *   - QUARANTINE_VMID: record the vmid (zlh.quarantined_vmids), drop the
 *     allocation, incarnation = action.incarnation, event Warning Conflict;
 *     the next plan allocates anew (converge) or is finalized (deletion).
 *   - RECREATE: incarnation = action.incarnation, event Normal Recreated,
 *     same allocation.
 *   - FOLLOW_MIGRATION: allocations.node = action.node.
 *   - RELEASE_ALLOCATION: delete the allocations row.
 *   - RECORD_TASK / RECORD_RESTART: mark the op done (or failed with
 *     task_exit); record restart_at_ms as honoured.
 *   - after CREATE/CLONE/START/REBOOT succeed, record restart_at_ms (when
 *     > 0) as honoured.
 *   - CtObserved.reserved: SUM(memory) of the allocations per node. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cleanup.h"
#include "pve.h"

typedef enum CtKind {
	CT_KIND_GAMESERVER,
	CT_KIND_DEVSERVER,
	_CT_KIND_MAX,
} CtKind;

typedef enum CtPower {
	CT_POWER_RUNNING,
	CT_POWER_STOPPED,
	_CT_POWER_MAX,
} CtPower;

typedef enum CtDeletionPolicy {
	CT_DELETION_DELETE,
	CT_DELETION_ORPHAN,
	_CT_DELETION_MAX,
} CtDeletionPolicy;

typedef enum CtMode {
	CT_MODE_CREATE, /* POST /nodes/{node}/lxc with everything, start=1 */
	CT_MODE_CLONE, /* clone -> config -> resize -> start */
	_CT_MODE_MAX,
} CtMode;

/* The desired state of one server (from the servers row). All strings
 * borrowed for the duration of the call. */
typedef struct CtDesired {
	CtKind kind;
	const char *uid; /* required */
	const char *owner;
	const char *name;
	const char *variant; /* GameServer variant, for the default hostname */
	int64_t generation;
	int64_t cores;
	int64_t memory_mib;
	int64_t disk_gib;
	CtPower power;
	int64_t restart_at_ms; /* spec.restartAt as wall-clock ms; 0 = none */
	bool paused; /* annotation zlh.dev/paused: observe and report only */
	bool deletion_requested;
	bool earlier_finalizers_pending; /* dns/proxy/final backup not done yet */
	CtDeletionPolicy deletion_policy;
} CtDesired;

/* The allocation row; vmid 0 = none. Strings borrowed. */
typedef struct CtAllocation {
	int64_t vmid;
	const char *node;
	const char *ip; /* "10.60.0.5" (no prefix) */
	const char *hostname; /* the unique hostname claimed; NULL = default */
} CtAllocation;

/* Journal actions (operations.action). */
typedef enum CtOpType {
	CT_OP_CREATE,
	CT_OP_CLONE,
	CT_OP_CONFIG, /* initial config after clone, adopt-and-tag, drift repair */
	CT_OP_RESIZE,
	CT_OP_START,
	CT_OP_SHUTDOWN,
	CT_OP_STOP,
	CT_OP_REBOOT,
	CT_OP_DESTROY,
	CT_OP_UNTAG, /* deletionPolicy Orphan */
	_CT_OP_MAX,
} CtOpType;

/* Journal steps, as DESIGN.md section 7 rule 6 names them. */
typedef enum CtStep {
	CT_STEP_INTENT, /* committed; the call may or may not have been made */
	CT_STEP_CALL, /* the call returned; no handle saved */
	CT_STEP_HANDLE, /* the UPID is saved; completion not yet seen */
	CT_STEP_DONE, /* completion recorded (failed or not) */
	_CT_STEP_MAX,
} CtStep;

/* One journal row. Strings borrowed. */
typedef struct CtOp {
	CtOpType type;
	CtStep step;
	const char *upid; /* the handle, or NULL */
	bool failed; /* step DONE: the call or its task failed */
	const char *error; /* failed: exitstatus / error text, or NULL */
	int64_t started_ms; /* wall ms the intent was written */
	int64_t finished_ms; /* wall ms DONE was recorded (0 before) */
	int64_t restart_at_ms; /* REBOOT: the spec.restartAt it honours */
} CtOp;

/* The journal rows the plan needs: the LATEST row of each op type for the
 * current incarnation (at most one per type; order does not matter). */
typedef struct CtJournal {
	int64_t incarnation; /* goes up each time the container must be made again */
	const CtOp *ops; /* borrowed */
	size_t n_ops;
	int64_t last_restart_at_ms; /* spec.restartAt value last honoured; 0 none */
} CtJournal;

/* Memory the database has reserved on a node (sum of its allocations). */
typedef struct CtReserved {
	const char *node; /* borrowed */
	int64_t reserved_mib;
} CtReserved;

/* What was observed this pass. Pointers borrowed; NULL = not observed. */
typedef struct CtObserved {
	bool known; /* /cluster/resources succeeded: false = "unknown" */
	int64_t listed_at_ms; /* wall ms the /cluster/resources call was sent: an
	                         absence is only trusted when the list is newer
	                         than the journal's last activity */
	const PveGuest *guest; /* the guest at allocation.vmid (any node); NULL = absent */
	const PveCtConfig *config; /* read this pass (READ_CONFIG) */
	const PveCtStatus *status; /* read this pass (READ_STATUS) */
	const PveTaskStatus *task; /* the open op's UPID polled this pass */
	const PveNode *nodes;
	size_t n_nodes;
	const CtReserved *reserved;
	size_t n_reserved;
	int64_t now_ms; /* wall clock */
} CtObserved;

typedef struct CtTemplate {
	const char *node; /* borrowed */
	int64_t vmid;
} CtTemplate;

typedef struct CtNet {
	const char *bridge; /* borrowed; NULL = not configured */
	int prefix; /* CIDR prefix length of the network */
	const char *gateway;
} CtNet;

/* Controller settings the plan and builders need (from the config file).
 * recon_container_settings_init() fills the defaults. Strings borrowed. */
typedef struct CtSettings {
	CtMode mode;
	const char *ostemplate; /* create mode */
	const CtTemplate *templates; /* clone mode: node -> template vmid. With one
	                                 template_vmid, the runtime fills the node it
	                                 lives on (from /cluster/resources). */
	size_t n_templates;
	const char *storage;
	const char *pool; /* NULL = none */
	CtNet net; /* network.* */
	CtNet net_dev; /* network.dev.*; bridge NULL = use net */
	int64_t swap_mib; /* default 0 */
	const char *const *nodes; /* proxmox.nodes: placement limited to these */
	size_t n_nodes;
	int64_t vmid_min, vmid_max; /* proxmox.vmid_range */
	int64_t shutdown_timeout_s; /* default 60 */
	int64_t task_poll_ms; /* default 1000 */
	int64_t lock_wait_ms; /* default 5000 */
	int64_t retry_backoff_ms; /* after a failed create/clone task: 30 s */
	int64_t unknown_requeue_ms; /* list call failed: 5 s */
	int64_t unschedulable_requeue_ms; /* no node fits: 60 s */
	int64_t call_grace_ms; /* a lost call may still land: 60 s */
} CtSettings;

void recon_container_settings_init(CtSettings *s);

typedef enum CtActionType {
	CT_ACT_NOTHING,
	/* observations: do them, then plan again */
	CT_ACT_READ_CONFIG, /* GET .../config into CtObserved.config */
	CT_ACT_READ_STATUS, /* GET .../status/current into CtObserved.status */
	CT_ACT_REFRESH_LIST, /* GET /cluster/resources again: the list predates
	                        our last change (one refresh serves every server) */
	CT_ACT_WAIT_TASK, /* poll upid; running: requeue; stopped: record the
	                     result on the op (done, failed + exitstatus) */
	/* store only (no Proxmox call) */
	CT_ACT_RECORD_TASK, /* record done + task_ok/task_exit on the latest op of
	                       type op (upid set: the polled task; empty: an
	                       outcome settled by observation) */
	CT_ACT_RECORD_RESTART, /* mark the reboot for restart_at_ms done */
	CT_ACT_ALLOCATE, /* vmid + ip + hostname on node, and the create intent */
	CT_ACT_QUARANTINE_VMID, /* vmid taken by a foreign guest: quarantine it,
	                           drop this allocation (incarnation -> new one) */
	CT_ACT_RECREATE, /* container lost: incarnation -> new one, event Recreated */
	CT_ACT_FOLLOW_MIGRATION, /* allocation.node = node (the CT moved) */
	CT_ACT_RELEASE_ALLOCATION, /* free vmid/ip/hostname (the container is gone or
	                              orphaned); the next plan reports finalized */
	/* external: one Proxmox call each (journaled as op) */
	CT_ACT_CREATE,
	CT_ACT_CLONE,
	CT_ACT_CONFIG, /* clone mode: first configuration of the clone */
	CT_ACT_ADOPT_AND_TAG, /* our uid in the description, no tags: adopt */
	CT_ACT_UPDATE_CONFIG, /* drift repair */
	CT_ACT_RESIZE,
	CT_ACT_START,
	CT_ACT_SHUTDOWN,
	CT_ACT_STOP,
	CT_ACT_REBOOT,
	CT_ACT_DESTROY,
	CT_ACT_ORPHAN_UNTAG,
	_CT_ACT_MAX,
} CtActionType;

typedef enum CtActionClass {
	CT_CLASS_NONE,
	CT_CLASS_OBSERVE,
	CT_CLASS_STORE,
	CT_CLASS_EXTERNAL,
	_CT_CLASS_MAX,
} CtActionClass;

/* CtAction.config_fields */
enum {
	CT_CFG_CORES = 1 << 0,
	CT_CFG_MEMORY = 1 << 1,
	CT_CFG_SWAP = 1 << 2,
	CT_CFG_HOSTNAME = 1 << 3,
	CT_CFG_TAGS = 1 << 4,
	CT_CFG_NET0 = 1 << 5,
	CT_CFG_FEATURES = 1 << 6,
	CT_CFG_ALL = (1 << 7) - 1,
};

typedef struct CtAction {
	CtActionType type;
	CtOpType op; /* external, WAIT_TASK, RECORD_TASK: the journal op */
	const char *reason; /* static; event reason (e.g. "Recreated") */
	char message[256]; /* what and why, for events and zlhctl plan */
	char node[PVE_NODE_MAX]; /* where the call goes; ALLOCATE/FOLLOW: the node */
	int64_t vmid;
	int64_t template_vmid; /* CLONE */
	char upid[PVE_UPID_MAX]; /* WAIT_TASK, RECORD_TASK */
	bool task_ok; /* RECORD_TASK */
	char task_exit[256]; /* RECORD_TASK */
	unsigned config_fields; /* CONFIG, ADOPT_AND_TAG, UPDATE_CONFIG */
	char digest[PVE_DIGEST_MAX]; /* config changes: the digest they were computed from */
	int64_t size_gib; /* RESIZE */
	int64_t timeout_s; /* SHUTDOWN */
	bool force_stop; /* SHUTDOWN */
	bool retry; /* CREATE/CLONE: the previous attempt's task failed: new attempt */
	int64_t restart_at_ms; /* CREATE/CLONE/START/REBOOT/RECORD_RESTART: record as honoured */
	int64_t memory_mib; /* ALLOCATE: the reservation */
	int64_t incarnation; /* RECREATE, QUARANTINE_VMID: the new incarnation */
} CtAction;

typedef enum CtCondStatus {
	CT_COND_UNKNOWN,
	CT_COND_TRUE,
	CT_COND_FALSE,
	_CT_COND_STATUS_MAX,
} CtCondStatus;

typedef struct CtCondition {
	CtCondStatus status;
	const char *reason; /* static */
	char message[256];
} CtCondition;

#define CT_MAX_ACTIONS 4
#define CT_REQUEUE_NONE (-1) /* rely on the periodic resync */

typedef struct CtPlan {
	CtAction actions[CT_MAX_ACTIONS];
	size_t n_actions; /* >= 1; NOTHING when nothing is to be done */
	CtCondition allocated; /* type Allocated */
	CtCondition ready; /* type ContainerReady */
	bool conditions_valid; /* false: observation unknown, keep the stored ones */
	bool converged; /* observed matches desired; nothing pending */
	bool finalized; /* deletion: nothing of ours is left (allocation released):
	                   the container finalizer is done. A NOTHING during
	                   deletion without it means "wait", not "done". */
	int64_t requeue_after_ms; /* CT_REQUEUE_NONE, 0 = at once, > 0 = delay */
} CtPlan;

/* The plan. Pure and total: 0 and *ret filled, or -EINVAL for inputs that
 * cannot be planned (no uid, bad sizes). */
int recon_container_plan(const CtDesired *d, const CtAllocation *a, const CtJournal *j,
                         const CtObserved *o, const CtSettings *s, CtPlan *ret) _must_check_;

CtActionClass recon_container_action_class(CtActionType t);
/* Names for logs, events and zlhctl plan. Never NULL. */
const char *recon_container_action_to_string(CtActionType t);
/* The journal action name ("create", "shutdown", ...). */
const char *recon_container_op_to_string(CtOpType t);
/* The ZLH_CRASH_AT action an op belongs to ("shutdown" -> "stop",
 * "untag" -> "config"). */
const char *recon_container_op_crash_name(CtOpType t);
const char *recon_container_step_to_string(CtStep s);

/* --- placement -------------------------------------------------------------- */

/* The online node (limited to s->nodes when set; in clone mode to nodes with
 * a template) with the most memory free after memory_mib is counted, where
 * used = max(observed mem, DB-reserved). Ties go to the smaller name.
 * 0 and *ret_node (borrowed from nodes), or -ENOSPC when nothing fits. */
int recon_container_place(const CtSettings *s, const PveNode *nodes, size_t n_nodes,
                          const CtReserved *reserved, size_t n_reserved, int64_t memory_mib,
                          const char **ret_node) _must_check_;

/* --- orphans ---------------------------------------------------------------- */

typedef struct CtKnownServer {
	const char *uid; /* borrowed */
	int64_t vmid; /* allocated vmid, 0 = none */
} CtKnownServer;

typedef enum CtOrphanKind {
	CT_ORPHAN_UNKNOWN_UID, /* tagged zlh-<uid>, no spec has that uid */
	CT_ORPHAN_NO_UID, /* tagged zlh, no zlh-<uid> tag */
	CT_ORPHAN_STRAY, /* tagged with a live uid, not at that server's vmid */
	CT_ORPHAN_UNTAGGED_IN_RANGE, /* untagged guest inside vmid_range, not allocated */
	_CT_ORPHAN_KIND_MAX,
} CtOrphanKind;

typedef struct CtOrphan {
	int64_t vmid;
	char node[PVE_NODE_MAX];
	CtOrphanKind kind;
	char uid[64]; /* the tag's uid, or "" */
} CtOrphan;

/* Classifies every guest; reports, never acts. *ret new (free()), sorted by
 * vmid; *ret_n may be 0 (then *ret is NULL). */
int recon_container_orphans(const PveGuest *guests, size_t n_guests, const CtKnownServer *known,
                            size_t n_known, int64_t vmid_min, int64_t vmid_max, CtOrphan **ret,
                            size_t *ret_n) _must_check_;
const char *recon_container_orphan_kind_to_string(CtOrphanKind k);

/* --- act-side builders: the exact Proxmox parameters ------------------------ */

/* "mc-<variant>-<vmid>" (GameServer) or "dev-<vmid>" (DevServer). */
int recon_container_default_hostname(CtKind kind, const char *variant, int64_t vmid, char *buf,
                                     size_t n) _must_check_;

typedef struct CtCreateCall {
	char node[PVE_NODE_MAX];
	PveCreateParams params; /* strings point into this struct */
	char hostname[PVE_HOSTNAME_MAX];
	char description[1024];
	char tags[160];
	char rootfs[128];
	char net0[256];
} CtCreateCall;

/* Create mode: the full POST /nodes/{node}/lxc parameter set. */
int recon_container_create_call(const CtDesired *d, const CtAllocation *a, const CtSettings *s,
                                CtCreateCall *ret) _must_check_;

typedef struct CtCloneCall {
	char node[PVE_NODE_MAX];
	int64_t template_vmid;
	PveCloneParams params; /* strings point into this struct */
	char hostname[PVE_HOSTNAME_MAX];
	char description[1024];
} CtCloneCall;

/* Clone mode: POST /nodes/{node}/lxc/{template}/clone. -ENOENT when the
 * allocation's node has no template. */
int recon_container_clone_call(const CtDesired *d, const CtAllocation *a, const CtSettings *s,
                               CtCloneCall *ret) _must_check_;

typedef struct CtConfigCall {
	PveConfigUpdate update; /* strings point into this struct */
	char digest[PVE_DIGEST_MAX];
	char hostname[PVE_HOSTNAME_MAX];
	char net0[256];
	char features[256];
	char *tags; /* owned */
} CtConfigCall;

/* The PUT .../config for a CONFIG, ADOPT_AND_TAG, UPDATE_CONFIG or
 * ORPHAN_UNTAG action: only act->config_fields are set; tags are the union
 * of cfg's and ours (untag: cfg's minus ours, or delete=tags); net0 keeps
 * cfg's hwaddr; features keep cfg's other flags. cfg may be NULL (then
 * nothing is kept). *ret filled (clear with recon_container_config_call_clear). */
int recon_container_config_call(const CtAction *act, const CtDesired *d, const CtAllocation *a,
                                const CtSettings *s, const PveCtConfig *cfg,
                                CtConfigCall *ret) _must_check_;
void recon_container_config_call_clear(CtConfigCall *c);

/* What the act step records after an external call returned r (0 or a
 * negative errno from pve.h) and, on success, whether it got a UPID:
 *   DONE     success, or already in that state (-EALREADY for start, stop,
 *            shutdown, resize; -ENOENT for destroy): record done
 *   HANDLE   success with a UPID: save it (step handle); WAIT_TASK next
 *   FAILED   Proxmox refused (-EINVAL, -EREMOTEIO, -EPERM, -ERANGE, ...):
 *            record done + failed with PveError.message (backoff gate)
 *   UNKNOWN  the call may have had its effect (-ETIMEDOUT, -ECONNRESET,
 *            -EIO, -EBADMSG): leave the intent; the next pass observes
 *   RETRY    nothing happened (-EBUSY, -EAGAIN, -ECONNREFUSED,
 *            -EHOSTUNREACH, -ENOMEM): requeue with backoff, record nothing
 *   OBSERVE  the world differs from what the plan saw (-EEXIST on create,
 *            -ENOENT/-ESTALE/-ESRCH elsewhere): record nothing, plan again
 *            on a fresh observation (REFRESH_LIST) */
typedef enum CtOutcome {
	CT_OUTCOME_DONE,
	CT_OUTCOME_HANDLE,
	CT_OUTCOME_FAILED,
	CT_OUTCOME_UNKNOWN,
	CT_OUTCOME_RETRY,
	CT_OUTCOME_OBSERVE,
	_CT_OUTCOME_MAX,
} CtOutcome;

CtOutcome recon_container_outcome(CtActionType t, int r, bool got_upid);
const char *recon_container_outcome_to_string(CtOutcome o);

/* The desired net0 for this kind and allocation into buf (hwaddr may be NULL). */
int recon_container_net0(const CtDesired *d, const CtAllocation *a, const CtSettings *s,
                         const char *hwaddr, char *buf, size_t n) _must_check_;
