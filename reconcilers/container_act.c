/* container_act.c - the container reconciler's act step: one action of the
 * plan, through the Proxmox client and the store, with the journal steps of
 * DESIGN.md section 7 rule 6 and the crash points of lib/crash.h. See
 * container_recon.h. */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "crash.h"
#include "log.h"
#include "reconcilers/container_recon.h"
#include "reconcilers/container_recon_int.h"
#include "util.h"

DEFINE_TRIVIAL_CLEANUP_FUNC(CtList *, ct_list_unref)

/* --- CtAction <-> JSON ---------------------------------------------------------- */

json_t *ct_action_to_json(const CtAction *a)
{
	return json_pack("{s:i, s:i, s:s, s:s, s:I, s:I, s:s, s:b, s:s, s:i, s:s, s:I, s:I, s:b,"
	                 " s:b, s:I, s:I, s:I}",
	                 "type", (int)a->type, "op", (int)a->op, "message", a->message, "node",
	                 a->node, "vmid", (json_int_t)a->vmid, "templateVmid",
	                 (json_int_t)a->template_vmid, "upid", a->upid, "taskOk", a->task_ok,
	                 "taskExit", a->task_exit, "configFields", (int)a->config_fields, "digest",
	                 a->digest, "sizeGiB", (json_int_t)a->size_gib, "timeoutS",
	                 (json_int_t)a->timeout_s, "forceStop", a->force_stop, "retry", a->retry,
	                 "restartAtMs", (json_int_t)a->restart_at_ms, "memoryMiB",
	                 (json_int_t)a->memory_mib, "incarnation", (json_int_t)a->incarnation);
}

static int64_t jint(const json_t *j, const char *k)
{
	return json_integer_value(json_object_get(j, k));
}

static void jstr(const json_t *j, const char *k, char *buf, size_t n)
{
	const char *s = json_string_value(json_object_get(j, k));
	snprintf(buf, n, "%s", s ? s : "");
}

int ct_action_from_json(const json_t *j, CtAction *ret)
{
	if (!json_is_object(j))
		return -EINVAL;
	int64_t t = jint(j, "type"), op = jint(j, "op");
	if (t < 0 || t >= _CT_ACT_MAX || op < 0 || op >= _CT_OP_MAX)
		return -EINVAL;
	CtAction a = {.type = (CtActionType)t, .op = (CtOpType)op};
	jstr(j, "message", a.message, sizeof a.message);
	jstr(j, "node", a.node, sizeof a.node);
	jstr(j, "upid", a.upid, sizeof a.upid);
	jstr(j, "taskExit", a.task_exit, sizeof a.task_exit);
	jstr(j, "digest", a.digest, sizeof a.digest);
	a.vmid = jint(j, "vmid");
	a.template_vmid = jint(j, "templateVmid");
	a.task_ok = json_is_true(json_object_get(j, "taskOk"));
	a.config_fields = (unsigned)jint(j, "configFields");
	a.size_gib = jint(j, "sizeGiB");
	a.timeout_s = jint(j, "timeoutS");
	a.force_stop = json_is_true(json_object_get(j, "forceStop"));
	a.retry = json_is_true(json_object_get(j, "retry"));
	a.restart_at_ms = jint(j, "restartAtMs");
	a.memory_mib = jint(j, "memoryMiB");
	a.incarnation = jint(j, "incarnation");
	*ret = a;
	return 0;
}

/* --- small helpers ------------------------------------------------------------------ */

typedef struct Ctx {
	RecEnv *env;
	const RuntimeServer *srv;
	CtSnap *snap;
	CtObs *o;
	ActResult *res;
	bool last; /* the plan's last action */
	int64_t requeue; /* the plan's requeue_after_ms */
} Ctx;

static void log_ct(const Ctx *x, int level, const char *fmt, ...) _printf_(3, 4);
static void log_ct(const Ctx *x, int level, const char *fmt, ...)
{
	char msg[768];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	log_fields(level,
	           LOG_F("uid", x->srv->uid, "name", x->srv->name ? x->srv->name : "", "reconciler",
	                 "container"),
	           "%s", msg);
}

static int fail(Ctx *x, int r, const char *fmt, ...) _printf_(3, 4);
static int fail(Ctx *x, int r, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(x->res->error, sizeof x->res->error, fmt, ap);
	va_end(ap);
	return r < 0 ? r : -EIO;
}

static int64_t jitter(int64_t ms)
{
	/* Spread servers that wait for the same thing (a slot, a template). */
	static __thread uint64_t s;
	if (!s)
		s = (uint64_t)now_mono_ms() ^ (uint64_t)(uintptr_t)&s;
	s ^= s << 13;
	s ^= s >> 7;
	s ^= s << 17;
	return ms + (int64_t)(s % (uint64_t)(ms / 2 + 1));
}

/* Reloads the store part of obs after a store write. */
static int reload(Ctx *x)
{
	char why[256];
	int r = ct_obs_load(x->env, x->srv, x->o, why, sizeof why);
	return r < 0 ? fail(x, r, "%s", why) : 0;
}

/* A store action is done: the rest of the plan goes on with the reloaded
 * journal; after the plan's last action, plan again at once (same list). */
static int store_done(Ctx *x)
{
	int r = reload(x);
	if (r < 0)
		return r;
	x->res->snapshot_updated = true; /* nothing changed in Proxmox */
	if (x->last) {
		if (x->requeue == 0)
			x->res->replan = true;
		else if (x->requeue > 0)
			x->res->requeue_after_ms = x->requeue;
	}
	return 0;
}

static int store_err(Ctx *x, int r, const StoreError *err, const char *what)
{
	return fail(x, r, "%s: %s", what, err->message[0] ? err->message : strerror(-r));
}

static const JournalOp *latest_op(const CtObs *o, CtOpType t)
{
	const char *name = recon_container_op_to_string(t);
	for (size_t i = 0; i < o->n_jops; i++)
		if (o->jops[i].action && strcmp(o->jops[i].action, name) == 0)
			return &o->jops[i];
	return NULL;
}

static bool is_task_op(CtOpType t)
{
	return t != CT_OP_CONFIG && t != CT_OP_UNTAG;
}

static int slot_take(Ctx *x, const char *node)
{
	const RecEnv *env = x->env;
	if (!env->hooks || !env->hooks->task_slot_acquire)
		return 0;
	return env->hooks->task_slot_acquire(env->hooks_ctx, node, x->srv->uid);
}

static void slot_give(Ctx *x, const char *node)
{
	const RecEnv *env = x->env;
	if (env->hooks && env->hooks->task_slot_release && node && node[0])
		env->hooks->task_slot_release(env->hooks_ctx, node, x->srv->uid);
}

/* The node's task slot (our gate and the runtime's count) and, for a
 * clone, the template. false: wait (nothing taken). */
static bool capacity_take(Ctx *x, const char *node, int64_t template_vmid)
{
	CtState *st = x->env->state;
	int cap = (int)x->env->cfg->proxmox.max_tasks_per_node;
	char g[96], tg[96];
	/* The scarcer one first: a server waiting for its template must not
	 * hold a place in the node's queue (head-of-line blocking). */
	snprintf(tg, sizeof tg, "tmpl:%" PRId64, template_vmid);
	if (template_vmid > 0 && !ct_gate_take(st, tg, 1, x->srv->uid))
		return false;
	snprintf(g, sizeof g, "node:%s", node);
	if (!ct_gate_take(st, g, cap, x->srv->uid)) {
		if (template_vmid > 0)
			ct_gate_release(st, tg, x->srv->uid, false);
		return false;
	}
	if (slot_take(x, node) == -EBUSY) {
		ct_gate_release_uid(st, x->srv->uid, false);
		return false;
	}
	return true;
}

/* measure: a task really ran to its end (its time feeds the gates). */
static void release_all(Ctx *x, const char *node, bool measure)
{
	slot_give(x, node);
	ct_gate_release_uid(x->env->state, x->srv->uid, measure);
}

/* The event of a completed operation. */
static const char *done_reason(CtActionType t, CtOpType op)
{
	switch (t) {
	case CT_ACT_CONFIG:
		return "Configured";
	case CT_ACT_ADOPT_AND_TAG:
		return "Adopted";
	case CT_ACT_UPDATE_CONFIG:
		return "DriftRepaired";
	case CT_ACT_ORPHAN_UNTAG:
		return "Orphaned";
	default:
		break;
	}
	switch (op) {
	case CT_OP_CREATE:
	case CT_OP_CLONE:
		return "Created";
	case CT_OP_CONFIG:
		return "Configured";
	case CT_OP_RESIZE:
		return "Resized";
	case CT_OP_START:
		return "Started";
	case CT_OP_SHUTDOWN:
	case CT_OP_STOP:
		return "Stopped";
	case CT_OP_REBOOT:
		return "Restarted";
	case CT_OP_DESTROY:
		return "Destroyed";
	case CT_OP_UNTAG:
		return "Orphaned";
	default:
		return "Done";
	}
}

/* The idempotency key of op for this server's incarnation. */
static int op_key(const Ctx *x, CtOpType t, int64_t restart_at_ms, char *buf, size_t n)
{
	const char *name = recon_container_op_to_string(t);
	int64_t inc = x->o->view.incarnation;
	switch (t) {
	case CT_OP_CREATE:
	case CT_OP_CLONE:
		return journal_key(x->srv->uid, name, "ct", inc, buf, n);
	case CT_OP_REBOOT: {
		char ra[24];
		snprintf(ra, sizeof ra, "%" PRId64, restart_at_ms);
		return journal_key(x->srv->uid, name, ra, inc, buf, n);
	}
	default:
		return journal_key(x->srv->uid, name, "r", inc, buf, n);
	}
}

/* --- observations ---------------------------------------------------------------------- */

static int refresh_list(Ctx *x, int64_t seen_listed_at)
{
	CtList *cur = ct_list_ref(x->snap);
	bool fresh = cur && cur->listed_at_wall > seen_listed_at;
	ct_list_unref(cur);
	if (!fresh) {
		CtList *l = NULL;
		PveError perr = {0};
		int r = ct_list_fetch(x->env, &l, &perr);
		if (r < 0)
			return fail(x, r, "/cluster/resources failed: %s",
			            perr.message[0] ? perr.message : strerror(-r));
		ct_snap_offer(x->snap, l);
		ct_list_unref(l);
	}
	x->res->snapshot_updated = true;
	x->res->replan = true;
	return 0;
}

static int act_read_config(Ctx *x, const CtAction *a, int64_t listed_at)
{
	PveCtConfig cfg;
	PveError perr = {0};
	int r = pve_get_config(x->env->wstate, a->node, a->vmid, &cfg, &perr);
	rec_count_call(x->env, "proxmox", "GET", r < 0 ? perr.http_status : 200);
	if (r == -ENOENT) /* gone since the list: look again */
		return refresh_list(x, listed_at);
	if (r < 0)
		return fail(x, r, "reading the config of %" PRId64 ": %s", a->vmid, perr.message);
	if (x->o->has_config)
		pve_ct_config_clear(&x->o->config);
	x->o->config = cfg;
	x->o->has_config = true;
	x->res->snapshot_updated = true;
	x->res->replan = true;
	return 0;
}

static int act_read_status(Ctx *x, const CtAction *a, int64_t listed_at)
{
	PveCtStatus st;
	PveError perr = {0};
	int r = pve_status_current(x->env->wstate, a->node, a->vmid, &st, &perr);
	rec_count_call(x->env, "proxmox", "GET", r < 0 ? perr.http_status : 200);
	if (r == -ENOENT)
		return refresh_list(x, listed_at);
	if (r < 0)
		return fail(x, r, "reading the status of %" PRId64 ": %s", a->vmid, perr.message);
	x->o->status = st;
	x->o->has_status = true;
	x->res->snapshot_updated = true;
	x->res->replan = true;
	return 0;
}

static const JournalOp *op_by_handle(const CtObs *o, const char *upid)
{
	for (size_t i = 0; i < o->n_jops; i++)
		if (o->jops[i].handle && strcmp(o->jops[i].handle, upid) == 0)
			return &o->jops[i];
	for (size_t i = 0; i < o->n_open; i++)
		if (o->open[i].handle && strcmp(o->open[i].handle, upid) == 0)
			return &o->open[i];
	return NULL;
}

static int act_wait_task(Ctx *x, const CtAction *a)
{
	PveTaskStatus ts;
	PveError perr = {0};
	int r = pve_task_status(x->env->wstate, a->upid, &ts, &perr);
	rec_count_call(x->env, "proxmox", "GET", r < 0 ? perr.http_status : 200);
	const JournalOp *op = op_by_handle(x->o, a->upid);
	if (r == -ENOENT || r == -EINVAL) {
		/* Proxmox does not know the task (a node reinstalled, the log
		 * rotated): its outcome is unknown; the next observation decides. */
		if (op) {
			_cleanup_json_ json_t *result = json_pack(
			    "{s:s}", "outcome", "unknown: the task is not known to Proxmox");
			StoreError err = {0};
			int w = journal_done(x->env->db, x->env->epoch, op->id, result, &err);
			if (w < 0 && w != -EALREADY)
				return store_err(x, w, &err, "recording an unknown task");
			crash_point(recon_container_op_crash_name(a->op), CRASH_STEP_DONE);
		}
		log_ct(x, LOG_WARNING, "task %s is unknown to Proxmox (%s): observing", a->upid,
		       perr.message);
		release_all(x, a->node, false);
		x->res->requeue_after_ms = CT_SOON_MS;
		return 0;
	}
	if (r < 0)
		return fail(x, r, "polling task %s: %s", a->upid, perr.message);
	x->res->snapshot_updated = true;
	int64_t age = op ? x->o->view.db_now_ms - op->updated_ms : 0; /* since the call */
	int64_t next = ct_task_polled(x->env->state, a->op, a->upid, ts.running, age);
	if (ts.running) {
		x->res->requeue_after_ms = next;
		return 0;
	}
	x->o->task = ts;
	x->o->has_task = true;
	snprintf(x->o->task_upid, sizeof x->o->task_upid, "%s", a->upid);
	x->res->replan = true;
	return 0;
}

/* --- store actions ----------------------------------------------------------------------- */

static int act_record_task(Ctx *x, const CtAction *a)
{
	const JournalOp *op = latest_op(x->o, a->op);
	if (!op || (a->upid[0] && (!op->handle || strcmp(op->handle, a->upid) != 0)))
		return store_done(x); /* the journal moved on: plan again */
	StoreError err = {0};
	int r;
	if (a->task_ok) {
		_cleanup_json_ json_t *result = json_pack("{s:s}", "exitstatus", a->task_exit);
		r = journal_done(x->env->db, x->env->epoch, op->id, result, &err);
	} else {
		r = journal_fail(x->env->db, x->env->epoch, op->id,
		                 a->task_exit[0] ? a->task_exit : "task failed", &err);
	}
	if (r < 0 && r != -EALREADY)
		return store_err(x, r, &err, "recording the task");
	crash_point(recon_container_op_crash_name(a->op), CRASH_STEP_DONE);
	release_all(x, a->node[0] ? a->node : x->o->alloc.node, true);
	const char *what = recon_container_op_to_string(a->op);
	if (r > 0 || r == 0) {
		if (a->task_ok)
			rec_event(x->env, x->srv, "Normal", done_reason(CT_ACT_NOTHING, a->op),
			          "%s of container %" PRId64 " on %s done%s", what, a->vmid,
			          a->node[0] ? a->node : x->o->alloc.node,
			          a->upid[0] ? "" : " (settled by observation)");
		else
			rec_event(x->env, x->srv, "Warning", "TaskFailed",
			          "%s of container %" PRId64 " failed: %s", what, a->vmid,
			          a->task_exit);
	}
	if (x->last) {
		/* What the task changed shows in the next list only. */
		int w = reload(x);
		if (w < 0)
			return w;
		x->res->requeue_after_ms = CT_SOON_MS;
		return 0;
	}
	return store_done(x);
}

static int act_record_restart(Ctx *x, const CtAction *a)
{
	const JournalOp *op = latest_op(x->o, CT_OP_REBOOT);
	if (op && journal_step_is_open(op->step)) {
		_cleanup_json_ json_t *result =
		    json_pack("{s:s, s:I}", "outcome", "settled by observation (uptime)",
		              "restartAtMs", (json_int_t)a->restart_at_ms);
		StoreError err = {0};
		int r = journal_done(x->env->db, x->env->epoch, op->id, result, &err);
		if (r < 0 && r != -EALREADY)
			return store_err(x, r, &err, "recording the restart");
		crash_point("reboot", CRASH_STEP_DONE);
		rec_event(x->env, x->srv, "Normal", "Restarted",
		          "container %" PRId64 " restarted (restartAt %" PRId64 ")", a->vmid,
		          a->restart_at_ms);
	}
	return store_done(x);
}

static int act_allocate(Ctx *x, const CtAction *a, const CtInputs *in)
{
	const Config *cfg = x->env->cfg;
	bool dev = in->d.kind == CT_KIND_DEVSERVER;
	const ConfigNet *net = dev && cfg->has_network_dev ? &cfg->network_dev : &cfg->network;
	AllocPool pool = {.vmid_min = cfg->proxmox.vmid_lo,
	                  .vmid_max = cfg->proxmox.vmid_hi,
	                  .cidr = net->cidr,
	                  .gateway = net->gateway};
	const char *hostname = json_string_value(json_object_get(x->srv->spec, "hostname"));
	if (hostname && !hostname[0])
		hostname = NULL;
	char prefix[64];
	ct_hostname_prefix(x->srv, prefix, sizeof prefix);
	CtOpType t = in->s.mode == CT_MODE_CLONE ? CT_OP_CLONE : CT_OP_CREATE;
	char key[JOURNAL_KEY_MAX + 1];
	if (op_key(x, t, 0, key, sizeof key) < 0)
		return fail(x, -EINVAL, "cannot make the %s key", recon_container_op_to_string(t));
	_cleanup_json_ json_t *payload = json_object();
	if (!payload)
		return -ENOMEM;
	if (in->d.restart_at_ms > in->j.last_restart_at_ms)
		json_object_set_new(payload, "restartAtMs", json_integer(in->d.restart_at_ms));
	AllocIntent intent = {.action = recon_container_op_to_string(t),
	                      .idem_key = key,
	                      .payload = payload,
	                      .incarnation = x->o->view.incarnation};
	Allocation al;
	JournalOp op = {0};
	StoreError err = {0};
	int r = alloc_take(x->env->db, x->env->epoch, x->srv->uid, a->node, &pool, hostname, prefix,
	                   a->memory_mib, &intent, &al, &op, &err);
	journal_op_clear(&op);
	if (r == -EALREADY)
		return store_done(x); /* another pass moved the incarnation */
	if (r == -EBUSY) {
		x->res->snapshot_updated = true;
		x->res->requeue_after_ms = jitter(CT_SLOT_WAIT_MS);
		return 0;
	}
	if (r == -ENOSPC)
		return store_err(x, r, &err, "allocation");
	if (r == -EADDRINUSE)
		return fail(x, r, "hostname %s is taken by another server",
		            hostname ? hostname : "");
	if (r < 0)
		return store_err(x, r, &err, "allocation");
	if (r == 1)
		rec_event(x->env, x->srv, "Normal", "Allocated",
		          "vmid %" PRId64 ", ip %s, hostname %s on %s", al.vmid, al.ip, al.hostname,
		          al.node);
	return store_done(x);
}

static int act_quarantine(Ctx *x, const CtAction *a)
{
	StoreError err = {0};
	int64_t inc = 0;
	int r = alloc_quarantine(x->env->db, x->env->epoch, x->srv->uid, a->vmid,
	                         a->node[0] ? a->node : NULL, a->message, x->o->view.incarnation,
	                         &inc, &err);
	if (r == -EALREADY)
		return store_done(x);
	if (r < 0)
		return store_err(x, r, &err, "quarantining the vmid");
	rec_event(x->env, x->srv, "Warning", "Quarantined",
	          "vmid %" PRId64 " holds a guest that is not ours: quarantined, never touched; "
	          "allocating another",
	          a->vmid);
	return store_done(x);
}

static int act_recreate(Ctx *x, const CtAction *a)
{
	StoreError err = {0};
	int64_t inc = 0;
	int r = alloc_bump_incarnation(x->env->db, x->env->epoch, x->srv->uid,
	                               x->o->view.incarnation, &inc, &err);
	if (r == -EALREADY)
		return store_done(x);
	if (r < 0)
		return store_err(x, r, &err, "recording the recreation");
	rec_event(x->env, x->srv, "Normal", "Recreated",
	          "container %" PRId64 " was lost; making it again (incarnation %" PRId64 ")",
	          a->vmid, inc);
	return store_done(x);
}

static int act_follow(Ctx *x, const CtAction *a)
{
	StoreError err = {0};
	int r = alloc_follow_node(x->env->db, x->env->epoch, x->srv->uid, a->node, &err);
	if (r < 0)
		return store_err(x, r, &err, "following the migration");
	rec_event(x->env, x->srv, "Normal", "Migrated", "%s", a->message);
	return store_done(x);
}

/* Completes the server's open operations: their objects are gone or what
 * they aimed at is observed. ids NULL: every open one. */
static int settle(Ctx *x, const json_t *ids, const char *why)
{
	_cleanup_json_ json_t *result = json_pack("{s:s}", "outcome", why);
	for (size_t i = 0; i < x->o->n_open; i++) {
		const JournalOp *op = &x->o->open[i];
		bool want = !ids;
		size_t k;
		json_t *v;
		json_array_foreach(ids, k, v) if (json_integer_value(v) == op->id) want = true;
		if (!want)
			continue;
		StoreError err = {0};
		int r = journal_done(x->env->db, x->env->epoch, op->id, result, &err);
		if (r < 0 && r != -EALREADY)
			return store_err(x, r, &err, "completing an operation");
	}
	return 0;
}

static int act_release(Ctx *x, const CtAction *a)
{
	int r = settle(x, NULL, "settled by observation: the container is gone");
	if (r < 0)
		return r;
	StoreError err = {0};
	r = alloc_release(x->env->db, x->env->epoch, x->srv->uid, a->vmid, &err);
	if (r < 0)
		return store_err(x, r, &err, "releasing the allocation");
	if (r == 1)
		rec_event(x->env, x->srv, "Normal", "Released",
		          "vmid %" PRId64 " and its address and hostname are free (%s)", a->vmid,
		          a->message);
	release_all(x, x->o->alloc.node, false);
	return store_done(x);
}

static int act_settle(Ctx *x, const json_t *args)
{
	int r = settle(x, json_object_get(args, "ids"), "settled by observation");
	if (r < 0)
		return r;
	r = reload(x);
	x->res->snapshot_updated = true;
	return r;
}

static int act_hostname(Ctx *x)
{
	const char *want = json_string_value(json_object_get(x->srv->spec, "hostname"));
	if (want && !want[0])
		want = NULL;
	char prefix[64];
	ct_hostname_prefix(x->srv, prefix, sizeof prefix);
	StoreError err = {0};
	int r =
	    alloc_set_hostname(x->env->db, x->env->epoch, x->srv->uid, want, prefix, NULL, &err);
	if (r == -EADDRINUSE)
		return fail(x, r, "hostname %s is taken by another server", want ? want : "");
	if (r < 0)
		return store_err(x, r, &err, "changing the allocated hostname");
	x->last = true;
	x->requeue = 0;
	return store_done(x);
}

/* --- external calls ------------------------------------------------------------------------ */

typedef struct Call {
	CtCreateCall create;
	CtCloneCall clone;
	CtConfigCall config;
} Call;

static void call_clear(Call *c)
{
	recon_container_config_call_clear(&c->config);
}

static int build_call(Ctx *x, const CtAction *a, const CtInputs *in, Call *c)
{
	int r = 0;
	switch (a->type) {
	case CT_ACT_CREATE:
		r = recon_container_create_call(&in->d, &in->a, &in->s, &c->create);
		break;
	case CT_ACT_CLONE:
		r = recon_container_clone_call(&in->d, &in->a, &in->s, &c->clone);
		break;
	case CT_ACT_CONFIG:
	case CT_ACT_ADOPT_AND_TAG:
	case CT_ACT_UPDATE_CONFIG:
	case CT_ACT_ORPHAN_UNTAG:
		r = recon_container_config_call(
		    a, &in->d, &in->a, &in->s, x->o->has_config ? &x->o->config : NULL, &c->config);
		break;
	default:
		break;
	}
	if (r < 0)
		return fail(x, r, "cannot build the %s call: %s",
		            recon_container_action_to_string(a->type), strerror(-r));
	return 0;
}

static int do_call(Ctx *x, const CtAction *a, Call *c, const char *node, char **upid,
                   PveError *perr, const char **method)
{
	PveClient *pc = x->env->wstate;
	*method = "POST";
	switch (a->type) {
	case CT_ACT_CREATE:
		return pve_create_lxc(pc, c->create.node, &c->create.params, upid, perr);
	case CT_ACT_CLONE:
		return pve_clone_lxc(pc, c->clone.node, c->clone.template_vmid, &c->clone.params,
		                     upid, perr);
	case CT_ACT_CONFIG:
	case CT_ACT_ADOPT_AND_TAG:
	case CT_ACT_UPDATE_CONFIG:
	case CT_ACT_ORPHAN_UNTAG:
		*method = "PUT";
		return pve_put_config(pc, node, a->vmid, &c->config.update, perr);
	case CT_ACT_RESIZE:
		*method = "PUT";
		return pve_resize(pc, node, a->vmid, a->size_gib, upid, perr);
	case CT_ACT_START:
		return pve_start(pc, node, a->vmid, upid, perr);
	case CT_ACT_SHUTDOWN:
		return pve_shutdown(pc, node, a->vmid, a->timeout_s, a->force_stop, upid, perr);
	case CT_ACT_STOP:
		return pve_stop(pc, node, a->vmid, upid, perr);
	case CT_ACT_REBOOT:
		return pve_reboot(pc, node, a->vmid, upid, perr);
	case CT_ACT_DESTROY:
		*method = "DELETE";
		return pve_delete(pc, node, a->vmid, false, upid, perr);
	default:
		return -EINVAL;
	}
}

static int act_external(Ctx *x, const CtAction *a, const CtInputs *in)
{
	CtOpType t = a->op;
	const char *crash = recon_container_op_crash_name(t);
	const char *opname = recon_container_op_to_string(t);
	const char *node = a->node[0] ? a->node : in->a.node;
	bool task = is_task_op(t);
	RecEnv *env = x->env;

	_cleanup_(call_clear) Call call = {0};
	int r = build_call(x, a, in, &call);
	if (r < 0)
		return r;

	/* Capacity first: nothing is written while we only wait. */
	if (task &&
	    !capacity_take(x, node, a->type == CT_ACT_CLONE ? call.clone.template_vmid : 0)) {
		x->res->snapshot_updated = true;
		x->res->requeue_after_ms = jitter(CT_SLOT_WAIT_MS / 4);
		return 0;
	}

	/* The intent, durable before the call. */
	char key[JOURNAL_KEY_MAX + 1];
	if (op_key(x, t, a->restart_at_ms, key, sizeof key) < 0) {
		release_all(x, node, false);
		return fail(x, -EINVAL, "cannot make the %s key", opname);
	}
	_cleanup_json_ json_t *payload =
	    json_pack("{s:I, s:s}", "vmid", (json_int_t)a->vmid, "node", node);
	if (!payload) {
		release_all(x, node, false);
		return -ENOMEM;
	}
	if (a->restart_at_ms > 0)
		json_object_set_new(payload, "restartAtMs", json_integer(a->restart_at_ms));
	if (a->config_fields)
		json_object_set_new(payload, "fields", json_integer(a->config_fields));
	bool new_attempt = (t != CT_OP_CREATE && t != CT_OP_CLONE && t != CT_OP_REBOOT) || a->retry;
	JournalOp op = {0};
	StoreError err = {0};
	r = new_attempt ? journal_intent_retry(env->db, env->epoch, x->srv->uid, opname, key,
	                                       payload, x->o->view.incarnation, &op, &err)
	                : journal_intent(env->db, env->epoch, x->srv->uid, opname, key, payload,
	                                 x->o->view.incarnation, &op, &err);
	if (r < 0) {
		release_all(x, node, false);
		return store_err(x, r, &err, "writing the intent");
	}
	int64_t op_id = op.id;
	bool has_handle = op.handle != NULL;
	bool completed = !journal_step_is_open(op.step);
	journal_op_clear(&op);
	if (has_handle || completed) {
		/* The journal is ahead of this plan (a task already runs, or
		 * the op completed): plan again on what it says. */
		release_all(x, node, false);
		x->res->snapshot_updated = true;
		x->res->requeue_after_ms = CT_SOON_MS;
		return reload(x);
	}
	crash_point(crash, CRASH_STEP_INTENT);

	/* Right before the call: a paused leader makes no stale call. */
	if (!rec_lease_valid(env)) {
		release_all(x, node, false);
		return fail(x, -ESTALE, "lease not valid: %s not sent", opname);
	}
	_cleanup_free_ char *upid = NULL;
	PveError perr = {0};
	const char *method = "POST";
	if (t == CT_OP_CREATE || t == CT_OP_CLONE)
		ct_sent_mark(env->state, op_id);
	r = do_call(x, a, &call, node, &upid, &perr, &method);
	rec_count_call(env, "proxmox", method, r < 0 ? perr.http_status : 200);
	crash_point(crash, CRASH_STEP_CALL);

	CtOutcome oc = recon_container_outcome(a->type, r, upid != NULL);
	switch (oc) {
	case CT_OUTCOME_HANDLE: {
		int w = journal_set_handle(env->db, env->epoch, op_id, upid, &err);
		if (w < 0)
			/* The task runs but its UPID is not saved: the next pass
			 * finds the container locked and waits (lock create),
			 * or observes the effect. */
			return store_err(x, w, &err, "saving the UPID");
		crash_point(crash, CRASH_STEP_HANDLE);
		/* The next step is polling this UPID: no fresh list needed. */
		x->res->snapshot_updated = true;
		x->res->requeue_after_ms = ct_task_first_poll(env->state, t);
		return 0;
	}
	case CT_OUTCOME_DONE: {
		_cleanup_json_ json_t *result =
		    json_pack("{s:s}", "outcome", r < 0 ? perr.message : "OK");
		int w = journal_done(env->db, env->epoch, op_id, result, &err);
		if (w < 0 && w != -EALREADY) {
			release_all(x, node, false);
			return store_err(x, w, &err, "recording completion");
		}
		crash_point(crash, CRASH_STEP_DONE);
		release_all(x, node, false);
		rec_event(env, x->srv, "Normal", done_reason(a->type, t),
		          "%s of container %" PRId64 " on %s done%s%s", opname, a->vmid, node,
		          r < 0 ? ": " : "", r < 0 ? perr.message : "");
		if (a->type == CT_ACT_UPDATE_CONFIG)
			rec_event(env, x->srv, "Normal", "DriftRepaired",
			          "container %" PRId64 ": %s", a->vmid, a->message);
		/* What the call changed shows in the next list. */
		x->res->requeue_after_ms = CT_SOON_MS;
		return 0;
	}
	case CT_OUTCOME_FAILED: {
		char msg[1040];
		snprintf(msg, sizeof msg, "%s%s%s", perr.message, perr.errors[0] ? ": " : "",
		         perr.errors);
		int w = journal_fail(env->db, env->epoch, op_id, msg[0] ? msg : strerror(-r), &err);
		release_all(x, node, false);
		if (w < 0 && w != -EALREADY)
			return store_err(x, w, &err, "recording the failure");
		rec_event(env, x->srv, "Warning", "ProxmoxRefused",
		          "%s of container %" PRId64 " on %s refused: %s", opname, a->vmid, node,
		          msg[0] ? msg : strerror(-r));
		/* The plan's backoff gate decides when to try again. */
		x->res->snapshot_updated = true;
		x->res->requeue_after_ms = CT_SOON_MS;
		return 0;
	}
	case CT_OUTCOME_UNKNOWN:
		log_ct(x, LOG_WARNING,
		       "%s of container %" PRId64 ": outcome unknown (%s); observing before "
		       "anything else",
		       opname, a->vmid, perr.message[0] ? perr.message : strerror(-r));
		release_all(x, node, false);
		x->res->requeue_after_ms = jitter(CT_POLL_MIN_MS);
		return 0;
	case CT_OUTCOME_RETRY:
		log_ct(x, LOG_INFO, "%s of container %" PRId64 " not done (%s); trying later",
		       opname, a->vmid, perr.message[0] ? perr.message : strerror(-r));
		release_all(x, node, false);
		x->res->snapshot_updated = true;
		x->res->requeue_after_ms = jitter(CT_RETRY_MS);
		return 0;
	case CT_OUTCOME_OBSERVE:
	default:
		log_ct(x, LOG_INFO, "%s of container %" PRId64 ": %s; observing again", opname,
		       a->vmid, perr.message[0] ? perr.message : strerror(-r));
		release_all(x, node, false);
		x->res->requeue_after_ms = CT_SOON_MS;
		return 0;
	}
}

/* --- entry ------------------------------------------------------------------------------------ */

int ct_act(RecEnv *env, const RuntimeServer *srv, void *snapshot, void *obs, const Action *action,
           ActResult *res)
{
	CtSnap *snap = snapshot;
	CtObs *o = obs;
	const json_t *args = action->args;
	const char *kind = json_string_value(json_object_get(args, "kind"));
	if (!snap || !o || !kind || !env->wstate)
		return -EINVAL;
	Ctx x = {.env = env, .srv = srv, .snap = snap, .o = o, .res = res};
	if (strcmp(kind, "wait") == 0) {
		res->snapshot_updated = true;
		res->requeue_after_ms = jint(args, "requeue");
		return 0;
	}
	if (strcmp(kind, "settle") == 0)
		return act_settle(&x, args);
	if (strcmp(kind, "hostname") == 0)
		return act_hostname(&x);

	CtAction a;
	if (ct_action_from_json(args, &a) < 0)
		return -EINVAL;
	x.last = json_is_true(json_object_get(args, "last"));
	x.requeue = jint(args, "requeue");
	int64_t listed_at = jint(args, "listedAt");

	_cleanup_(ct_list_unrefp) CtList *l = ct_list_ref(snap);
	CtInputs in;
	int r = ct_inputs(srv, o, l, &in);
	if (r < 0)
		return r;

	switch (a.type) {
	case CT_ACT_READ_CONFIG:
		return act_read_config(&x, &a, listed_at);
	case CT_ACT_READ_STATUS:
		return act_read_status(&x, &a, listed_at);
	case CT_ACT_REFRESH_LIST:
		return refresh_list(&x, listed_at);
	case CT_ACT_WAIT_TASK:
		return act_wait_task(&x, &a);
	case CT_ACT_RECORD_TASK:
		return act_record_task(&x, &a);
	case CT_ACT_RECORD_RESTART:
		return act_record_restart(&x, &a);
	case CT_ACT_ALLOCATE:
		return act_allocate(&x, &a, &in);
	case CT_ACT_QUARANTINE_VMID:
		return act_quarantine(&x, &a);
	case CT_ACT_RECREATE:
		return act_recreate(&x, &a);
	case CT_ACT_FOLLOW_MIGRATION:
		return act_follow(&x, &a);
	case CT_ACT_RELEASE_ALLOCATION:
		return act_release(&x, &a);
	case CT_ACT_CREATE:
	case CT_ACT_CLONE:
	case CT_ACT_CONFIG:
	case CT_ACT_ADOPT_AND_TAG:
	case CT_ACT_UPDATE_CONFIG:
	case CT_ACT_RESIZE:
	case CT_ACT_START:
	case CT_ACT_SHUTDOWN:
	case CT_ACT_STOP:
	case CT_ACT_REBOOT:
	case CT_ACT_DESTROY:
	case CT_ACT_ORPHAN_UNTAG:
		return act_external(&x, &a, &in);
	default:
		return 0;
	}
}
