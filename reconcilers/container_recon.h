/* container_recon.h - the container reconciler as the controller runtime
 * drives it (controller/reconciler.h): the adapter between the runtime and
 * the pure plan of container.h, and the act step that performs one action
 * through the Proxmox client (pve.h) and the store (db/journal.h,
 * db/alloc.h, db/container_extra.h).
 *
 *   name "container", order 10, conditions Allocated + ContainerReady,
 *   finalizer "container".
 *
 * observe (once per pass, shared): one /cluster/resources (guests and
 *   nodes); with one template_vmid the node that holds it; orphans in the
 *   VMID range are reported (log, once each) and never touched.
 * observe_server: the server's store view (incarnation, the database clock,
 *   spec.restartAt, the restartAt last honoured), its allocation, the latest
 *   journal row per action of its incarnation, its open operations, and the
 *   memory reserved per node (placement) when it has no allocation yet.
 * plan / finalize: recon_container_plan() on those, each CtAction carried to
 *   act as JSON in Action.args.
 * act: DESIGN.md section 7 rule 6 for every Proxmox side effect:
 *   task slot (max_tasks_per_node; clone: one clone per template) ->
 *   journal intent (fenced, idempotency key) -> crash_point(intent) ->
 *   lease check -> the call (fresh connection) -> crash_point(call) ->
 *   handle saved -> crash_point(handle) -> later passes poll the UPID
 *   (requeue_after, no worker blocks) -> completion recorded ->
 *   crash_point(done). An uncertain outcome leaves the intent open and the
 *   next pass observes; "already exists" is settled by identity.
 *
 * Idempotency keys (journal_key): create/clone "<uid>:<create|clone>:ct:<inc>"
 * (a retry after a failed task: "#<attempt>"), reboot
 * "<uid>:reboot:<restartAtMs>:<inc>", every other operation
 * "<uid>:<op>:r:<inc>" with a new attempt once the previous one completed.
 * The create/clone intent is written by the allocation's transaction
 * (alloc_take); start/create/clone/reboot intents carry {"restartAtMs"} so
 * that the restart they satisfy is recorded as honoured when they complete.
 *
 * Capacity (container_gate.c): a task action is emitted only when the
 * node has a free task slot (max_tasks_per_node) and, for a clone, the
 * template is free (one clone at a time per template); otherwise the plan
 * asks to be looked at again when the server's turn in the queue is likely.
 * Waiting costs neither a Proxmox call nor a status write. The act takes
 * the slot (and the runtime's task_slot_acquire) before the intent and
 * holds it until the task's completion is recorded.
 *
 * Clocks: the journal's times are the database's; the list's time is
 * converted with the skew measured in each observe_server.
 *
 * What the plan does not see: a create/clone intent written in this lease
 * term whose call this process never sent (the allocation wrote it, the
 * server then waited for a slot) is left out of the journal rows given to
 * the plan, so a deletion does not wait out call_grace for a call that
 * cannot land. Converged servers complete open operations whose outcome
 * was lost (step "settle"); RELEASE_ALLOCATION completes all of them.
 *
 * Test hooks (environment): none besides ZLH_CRASH_AT (lib/crash.h). */
#pragma once

#include "controller/reconciler.h"

extern const Reconciler recon_container;
#define ZLH_HAVE_RECON_CONTAINER 1
