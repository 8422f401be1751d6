/* container_recon.c - the container reconciler's runtime adapter: state,
 * the bulk observation, the per-server observation and the plan/finalize
 * translation. The act step is container_act.c. See container_recon.h. */
#include "reconcilers/container_recon.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "reconcilers/container_recon_int.h"
#include "util.h"

static const CondType ct_conditions[] = {COND_ALLOCATED, COND_CONTAINER_READY, _COND_TYPE_MAX};

/* --- state ---------------------------------------------------------------------- */

static bool ct_enabled(const Config *cfg)
{
	return cfg->proxmox.enabled && cfg->proxmox.url;
}

static void ct_done(void *state)
{
	CtState *st = state;
	if (!st)
		return;
	pthread_mutex_destroy(&st->lock);
	free(st->templates);
	free(st->nodes);
	ct_gates_free(st);
	free(st->sent);
	json_decref(st->orphans);
	free(st);
}

static int ct_init(const Config *cfg, void **ret_state)
{
	CtState *st = calloc(1, sizeof *st);
	if (!st)
		return -ENOMEM;
	pthread_mutex_init(&st->lock, NULL);
	st->cfg = cfg;
	st->orphans = json_object();
	CtSettings *s = &st->base;
	recon_container_settings_init(s);
	if (cfg->proxmox.n_templates > 0) {
		s->mode = CT_MODE_CLONE;
		st->templates = calloc(cfg->proxmox.n_templates, sizeof *st->templates);
		if (!st->templates)
			goto oom;
		for (size_t i = 0; i < cfg->proxmox.n_templates; i++)
			st->templates[i] = (CtTemplate){.node = cfg->proxmox.templates[i].node,
			                                .vmid = cfg->proxmox.templates[i].vmid};
		st->n_templates = cfg->proxmox.n_templates;
	} else {
		s->mode = CT_MODE_CREATE;
		s->ostemplate = cfg->proxmox.ostemplate;
	}
	s->storage = cfg->proxmox.storage;
	s->pool = cfg->proxmox.pool;
	s->net = (CtNet){.bridge = cfg->network.bridge,
	                 .prefix = cfg->network.prefix,
	                 .gateway = cfg->network.gateway};
	if (cfg->has_network_dev)
		s->net_dev = (CtNet){.bridge = cfg->network_dev.bridge,
		                     .prefix = cfg->network_dev.prefix,
		                     .gateway = cfg->network_dev.gateway};
	if (cfg->proxmox.n_nodes) {
		st->nodes = calloc(cfg->proxmox.n_nodes, sizeof *st->nodes);
		if (!st->nodes)
			goto oom;
		for (size_t i = 0; i < cfg->proxmox.n_nodes; i++)
			st->nodes[i] = cfg->proxmox.nodes[i];
		s->nodes = st->nodes;
		s->n_nodes = cfg->proxmox.n_nodes;
	}
	s->vmid_min = cfg->proxmox.vmid_lo;
	s->vmid_max = cfg->proxmox.vmid_hi;
	/* The runtime polls tasks itself (container_act.c) and never blocks a
	 * worker: these are only the plan's own look-again hints. */
	s->task_poll_ms = 500;
	s->lock_wait_ms = 1000;
	s->unknown_requeue_ms = 2000;
	s->retry_backoff_ms = CT_BACKOFF_BASE_MS;
	if (!st->orphans)
		goto oom;
	*ret_state = st;
	return 0;
oom:
	ct_done(st);
	return -ENOMEM;
}

static int ct_worker_init(const Config *cfg, void *state, void **ret_wstate)
{
	(void)state;
	PveClientOptions o = {
	    .url = cfg->proxmox.url,
	    .token_id = cfg->proxmox.token_id,
	    .token_secret = cfg->proxmox.token_secret,
	    .http = {.ca_file = cfg->proxmox.ca_file,
	             .pinned_pubkey = cfg->proxmox.pinned_pubkey,
	             .insecure = cfg->proxmox.insecure,
	             .timeout_ms = 30000,
	             .connect_timeout_ms = 5000},
	};
	PveClient *c = pve_client_new(&o);
	if (!c)
		return -ENOMEM;
	*ret_wstate = c;
	return 0;
}

static void ct_worker_done(void *wstate)
{
	pve_client_free(wstate);
}

/* --- lists and snapshots -------------------------------------------------------- */

void ct_list_unref(CtList *l)
{
	if (!l || __atomic_sub_fetch(&l->refs, 1, __ATOMIC_ACQ_REL) > 0)
		return;
	pve_resources_clear(&l->res);
	free(l->templates);
	free(l->tnodes);
	free(l);
}

CtList *ct_list_ref(CtSnap *snap)
{
	pthread_mutex_lock(&snap->lock);
	CtList *l = snap->list;
	if (l)
		__atomic_add_fetch(&l->refs, 1, __ATOMIC_ACQ_REL);
	pthread_mutex_unlock(&snap->lock);
	return l;
}

void ct_snap_offer(CtSnap *snap, CtList *l)
{
	__atomic_add_fetch(&l->refs, 1, __ATOMIC_ACQ_REL);
	pthread_mutex_lock(&snap->lock);
	CtList *old = snap->list;
	if (!old || old->listed_at_wall <= l->listed_at_wall) {
		snap->list = l;
		l = old;
	}
	pthread_mutex_unlock(&snap->lock);
	ct_list_unref(l);
}

/* Templates with every node known: a single template_vmid lives on the node
 * /cluster/resources shows it on (none: no node can clone). */
static int list_resolve_templates(const CtState *st, CtList *l)
{
	if (!st->n_templates)
		return 0;
	l->templates = calloc(st->n_templates, sizeof *l->templates);
	l->tnodes = calloc(st->n_templates, sizeof *l->tnodes);
	if (!l->templates || !l->tnodes)
		return -ENOMEM;
	size_t n = 0;
	for (size_t i = 0; i < st->n_templates; i++) {
		const char *node = st->templates[i].node;
		if (!node) {
			const PveGuest *g =
			    pve_resources_find_guest(&l->res, st->templates[i].vmid);
			if (!g)
				continue;
			node = g->node;
		}
		snprintf(l->tnodes[n], PVE_NODE_MAX, "%s", node);
		l->templates[n] = (CtTemplate){.node = l->tnodes[n], .vmid = st->templates[i].vmid};
		n++;
	}
	l->n_templates = n;
	return 0;
}

int ct_list_fetch(RecEnv *env, CtList **ret, PveError *err)
{
	CtList *l = calloc(1, sizeof *l);
	if (!l)
		return -ENOMEM;
	l->refs = 1;
	l->listed_at_wall = now_wall_ms();
	int r = pve_cluster_resources(env->wstate, &l->res, err);
	rec_count_call(env, "proxmox", "GET", r < 0 ? err->http_status : 200);
	if (r >= 0)
		r = list_resolve_templates(env->state, l);
	if (r < 0) {
		ct_list_unref(l);
		return r;
	}
	*ret = l;
	return 0;
}

/* Orphans in our range: reported (a warning, once each), never touched. */
static void report_orphans(RecEnv *env, const CtList *l)
{
	CtState *st = env->state;
	_cleanup_strv_free_ char **uids = NULL;
	_cleanup_free_ int64_t *vmids = NULL;
	StoreError serr;
	int n = ct_store_known(env->db, &uids, &vmids, &serr);
	if (n < 0)
		return;
	_cleanup_free_ CtKnownServer *known = calloc((size_t)n + 1, sizeof *known);
	if (!known)
		return;
	for (int i = 0; i < n; i++)
		known[i] = (CtKnownServer){.uid = uids[i], .vmid = vmids[i]};
	_cleanup_free_ CtOrphan *orphans = NULL;
	size_t no = 0;
	if (recon_container_orphans(l->res.guests, l->res.n_guests, known, (size_t)n,
	                            st->base.vmid_min, st->base.vmid_max, &orphans, &no) < 0)
		return;
	_cleanup_json_ json_t *now = json_object();
	if (!now)
		return;
	for (size_t i = 0; i < no; i++) {
		char key[64];
		snprintf(key, sizeof key, "%" PRId64, orphans[i].vmid);
		const char *kind = recon_container_orphan_kind_to_string(orphans[i].kind);
		json_object_set_new(now, key, json_string(kind));
		pthread_mutex_lock(&st->lock);
		const char *was = json_string_value(json_object_get(st->orphans, key));
		bool fresh = !was || strcmp(was, kind) != 0;
		pthread_mutex_unlock(&st->lock);
		if (fresh)
			log_fields(LOG_WARNING,
			           LOG_F("reconciler", "container", "vmid", key, "node",
			                 orphans[i].node, "orphan", kind, "tag_uid",
			                 orphans[i].uid),
			           "orphan container %" PRId64 " on %s (%s): reported, not touched",
			           orphans[i].vmid, orphans[i].node, kind);
	}
	pthread_mutex_lock(&st->lock);
	json_decref(st->orphans);
	st->orphans = json_incref(now);
	pthread_mutex_unlock(&st->lock);
}

static void ct_snapshot_free(void *snapshot)
{
	CtSnap *s = snapshot;
	if (!s)
		return;
	ct_list_unref(s->list);
	pthread_mutex_destroy(&s->lock);
	free(s);
}

static int ct_observe(RecEnv *env, void **ret_snapshot)
{
	if (!env->wstate)
		return -ENOTCONN;
	CtSnap *s = calloc(1, sizeof *s);
	if (!s)
		return -ENOMEM;
	pthread_mutex_init(&s->lock, NULL);
	s->st = env->state;
	PveError err = {0};
	int r = ct_list_fetch(env, &s->list, &err);
	if (r < 0) {
		log_fields(LOG_WARNING, LOG_F("reconciler", "container"),
		           "/cluster/resources failed: %s (state unknown: no decisions)",
		           err.message[0] ? err.message : strerror(-r));
		ct_snapshot_free(s);
		return r;
	}
	report_orphans(env, s->list);
	*ret_snapshot = s;
	return 0;
}

/* --- the server's observation ----------------------------------------------------- */

#define SENT_KEEP_MS (10 * 60 * 1000)

void ct_sent_mark(CtState *st, int64_t op_id)
{
	int64_t now = now_mono_ms();
	pthread_mutex_lock(&st->lock);
	size_t k = 0;
	bool have = false;
	for (size_t i = 0; i < st->n_sent; i++) {
		if (now - st->sent[i][1] > SENT_KEEP_MS)
			continue;
		have = have || st->sent[i][0] == op_id;
		st->sent[k][0] = st->sent[i][0];
		st->sent[k][1] = st->sent[i][1];
		k++;
	}
	st->n_sent = k;
	if (!have) {
		int64_t(*ns)[2] = realloc(st->sent, (st->n_sent + 1) * sizeof *ns);
		if (ns) {
			st->sent = ns;
			st->sent[st->n_sent][0] = op_id;
			st->sent[st->n_sent][1] = now;
			st->n_sent++;
		}
	}
	pthread_mutex_unlock(&st->lock);
}

bool ct_sent_has(CtState *st, int64_t op_id)
{
	bool r = false;
	pthread_mutex_lock(&st->lock);
	for (size_t i = 0; i < st->n_sent && !r; i++)
		r = st->sent[i][0] == op_id;
	pthread_mutex_unlock(&st->lock);
	return r;
}

static CtOpType op_from_name(const char *s)
{
	for (int t = 0; t < _CT_OP_MAX; t++)
		if (s && strcmp(recon_container_op_to_string((CtOpType)t), s) == 0)
			return (CtOpType)t;
	return _CT_OP_MAX;
}

void ct_obs_clear_reads(CtObs *o)
{
	if (o->has_config)
		pve_ct_config_clear(&o->config);
	o->has_config = false;
	o->has_status = false;
	o->has_task = false;
	o->task_upid[0] = 0;
}

static void obs_clear_store(CtObs *o)
{
	journal_ops_free(o->jops, o->n_jops);
	o->jops = NULL;
	o->n_jops = 0;
	journal_ops_free(o->open, o->n_open);
	o->open = NULL;
	o->n_open = 0;
	free(o->reserved);
	free(o->areserved);
	o->reserved = NULL;
	o->areserved = NULL;
	o->n_reserved = 0;
	o->n_ops = 0;
	o->has_alloc = false;
}

static void ct_obs_free(void *obs)
{
	CtObs *o = obs;
	if (!o)
		return;
	obs_clear_store(o);
	ct_obs_clear_reads(o);
	free(o);
}

int ct_obs_load(RecEnv *env, const RuntimeServer *srv, CtObs *o, char *errbuf, size_t n)
{
	StoreError err = {0};
	obs_clear_store(o);
	int64_t t0 = now_wall_ms();
	int r = ct_store_view(env->db, srv->uid, &o->view, &err);
	if (r < 0)
		goto fail;
	int64_t t1 = now_wall_ms();
	o->skew_ms = o->view.db_now_ms - (t0 + t1) / 2;
	r = alloc_get(env->db, srv->uid, &o->alloc, &err);
	if (r == -ENOENT)
		o->has_alloc = false;
	else if (r < 0)
		goto fail;
	else
		o->has_alloc = true;
	r = journal_latest(env->db, srv->uid, o->view.incarnation, &o->jops, &o->n_jops, &err);
	if (r < 0)
		goto fail;
	if (o->view.open_ops > 0) {
		r = journal_list_open(env->db, srv->uid, CT_MAX_OPEN, &o->open, &o->n_open, &err);
		if (r < 0)
			goto fail;
	}
	if (!o->has_alloc) {
		r = alloc_reserved_by_node(env->db, &o->areserved, &o->n_reserved, &err);
		if (r < 0)
			goto fail;
		if (o->n_reserved) {
			o->reserved = calloc(o->n_reserved, sizeof *o->reserved);
			if (!o->reserved) {
				r = -ENOMEM;
				goto fail;
			}
			for (size_t i = 0; i < o->n_reserved; i++)
				o->reserved[i] =
				    (CtReserved){.node = o->areserved[i].node,
				                 .reserved_mib = o->areserved[i].reserved_mib};
		}
	}
	for (size_t i = 0; i < o->n_jops && o->n_ops < _CT_OP_MAX; i++) {
		const JournalOp *jo = &o->jops[i];
		CtOpType t = op_from_name(jo->action);
		if (t == _CT_OP_MAX)
			continue;
		/* A create intent written under this very lease term (by the
		 * allocation) whose call this process never sent cannot land
		 * later: no grace to wait out (D3), nothing to settle. */
		if ((t == CT_OP_CREATE || t == CT_OP_CLONE) && jo->step == JOURNAL_STEP_INTENT &&
		    jo->epoch == o->epoch && o->epoch > 0 && !ct_sent_has(o->st, jo->id))
			continue;
		CtOp *op = &o->ops[o->n_ops++];
		*op = (CtOp){.type = t,
		             .upid = jo->handle,
		             .error = jo->error,
		             .started_ms = jo->created_ms,
		             .finished_ms = jo->completed_ms};
		switch (jo->step) {
		case JOURNAL_STEP_INTENT:
			op->step = CT_STEP_INTENT;
			break;
		case JOURNAL_STEP_CALL:
			op->step = CT_STEP_CALL;
			break;
		case JOURNAL_STEP_HANDLE:
			op->step = CT_STEP_HANDLE;
			break;
		case JOURNAL_STEP_FAILED:
			op->failed = true;
			op->step = CT_STEP_DONE;
			break;
		default:
			op->step = CT_STEP_DONE;
			break;
		}
		json_t *ra = jo->payload ? json_object_get(jo->payload, "restartAtMs") : NULL;
		op->restart_at_ms = json_is_integer(ra) ? json_integer_value(ra) : 0;
	}
	return 0;
fail:
	snprintf(errbuf, n, "reading the store: %s", err.message[0] ? err.message : strerror(-r));
	obs_clear_store(o);
	return r;
}

void ct_release_slots(RecEnv *env, const RuntimeServer *srv, const CtList *l, const CtObs *o)
{
	if (env->hooks && env->hooks->task_slot_release) {
		for (size_t i = 0; l && i < l->res.n_nodes; i++)
			env->hooks->task_slot_release(env->hooks_ctx, l->res.nodes[i].node,
			                              srv->uid);
		if (o && o->has_alloc && o->alloc.node[0])
			env->hooks->task_slot_release(env->hooks_ctx, o->alloc.node, srv->uid);
	}
	ct_gate_release_uid(env->state, srv->uid, false);
}

static int ct_observe_server(RecEnv *env, const RuntimeServer *srv, const void *snapshot,
                             void **ret_obs)
{
	CtObs *o = calloc(1, sizeof *o);
	if (!o)
		return -ENOMEM;
	o->st = env->state;
	o->epoch = env->epoch;
	char why[256];
	int r = ct_obs_load(env, srv, o, why, sizeof why);
	if (r < 0) {
		log_fields(LOG_WARNING, LOG_F("uid", srv->uid, "reconciler", "container"), "%s",
		           why);
		ct_obs_free(o);
		return r;
	}
	/* Slots are held from a task's call to its recorded completion; with
	 * no task of this server open any more, nothing may stay held (a
	 * crash between, an op settled by observation). */
	bool open_task = false;
	for (size_t i = 0; i < o->n_open; i++)
		if (o->open[i].step == JOURNAL_STEP_HANDLE)
			open_task = true;
	if (!open_task) {
		CtList *l = snapshot ? ct_list_ref((CtSnap *)snapshot) : NULL;
		ct_release_slots(env, srv, l, o);
		ct_list_unref(l);
	}
	*ret_obs = o;
	return 0;
}

/* --- inputs of the pure plan -------------------------------------------------------- */

static int64_t spec_int(const json_t *obj, const char *key, int64_t dflt)
{
	const json_t *v = json_object_get(obj, key);
	return json_is_integer(v) ? json_integer_value(v) : dflt;
}

static const char *spec_str(const json_t *obj, const char *key)
{
	return json_string_value(json_object_get(obj, key));
}

void ct_hostname_prefix(const RuntimeServer *srv, char *buf, size_t n)
{
	if (srv->kind && strcmp(srv->kind, "DevServer") == 0) {
		snprintf(buf, n, "dev-");
		return;
	}
	const char *variant = spec_str(srv->spec, "variant");
	if (variant && variant[0])
		snprintf(buf, n, "mc-%s-", variant);
	else
		snprintf(buf, n, "mc-");
	for (char *p = buf; *p; p++)
		if (*p >= 'A' && *p <= 'Z')
			*p = (char)(*p - 'A' + 'a');
}

/* The backoff after a failed call or task grows with its attempts. */
static int64_t backoff_for(const CtObs *o)
{
	int64_t attempts = 1;
	for (size_t i = 0; i < o->n_jops; i++)
		if (o->jops[i].step == JOURNAL_STEP_FAILED && o->jops[i].attempt > attempts)
			attempts = o->jops[i].attempt;
	int64_t ms = CT_BACKOFF_BASE_MS;
	for (int64_t i = 1; i < attempts && ms < CT_BACKOFF_MAX_MS; i++)
		ms *= 2;
	return ms < CT_BACKOFF_MAX_MS ? ms : CT_BACKOFF_MAX_MS;
}

int ct_inputs(const RuntimeServer *srv, const CtObs *o, const CtList *l, CtInputs *ret)
{
	CtInputs in = {0};
	const json_t *spec = srv->spec;
	const json_t *res = json_object_get(spec, "resources");
	bool dev = srv->kind && strcmp(srv->kind, "DevServer") == 0;
	const char *power = spec_str(spec, "power");
	const char *policy = spec_str(spec, "deletionPolicy");
	in.d = (CtDesired){
	    .kind = dev ? CT_KIND_DEVSERVER : CT_KIND_GAMESERVER,
	    .uid = srv->uid,
	    .owner = srv->owner,
	    .name = srv->name,
	    .variant = dev ? NULL : spec_str(spec, "variant"),
	    .generation = srv->generation,
	    .cores = spec_int(res, "cores", 2),
	    .memory_mib = spec_int(res, "memoryMiB", 4096),
	    .disk_gib = spec_int(res, "diskGiB", 16),
	    .power = power && strcmp(power, "stopped") == 0 ? CT_POWER_STOPPED : CT_POWER_RUNNING,
	    .restart_at_ms = o->view.restart_at_ms,
	    .paused = srv->paused,
	    .deletion_requested = srv->deleting,
	    .earlier_finalizers_pending = false, /* the runtime orders finalizers */
	    .deletion_policy =
	        policy && strcmp(policy, "Orphan") == 0 ? CT_DELETION_ORPHAN : CT_DELETION_DELETE,
	};
	if (o->has_alloc)
		in.a = (CtAllocation){.vmid = o->alloc.vmid,
		                      .node = o->alloc.node,
		                      .ip = o->alloc.ip,
		                      .hostname = o->alloc.hostname[0] ? o->alloc.hostname : NULL};
	in.j = (CtJournal){.incarnation = o->view.incarnation,
	                   .ops = o->ops,
	                   .n_ops = o->n_ops,
	                   .last_restart_at_ms = o->view.last_restart_at_ms};
	const PveTaskStatus *task = NULL;
	if (o->has_task)
		for (size_t i = 0; i < o->n_ops; i++)
			if (o->ops[i].step == CT_STEP_HANDLE && o->ops[i].upid &&
			    strcmp(o->ops[i].upid, o->task_upid) == 0)
				task = &o->task;
	in.o = (CtObserved){
	    .known = l != NULL,
	    .listed_at_ms = l ? l->listed_at_wall + o->skew_ms : 0,
	    .guest = l && in.a.vmid ? pve_resources_find_guest(&l->res, in.a.vmid) : NULL,
	    .config = o->has_config ? &o->config : NULL,
	    .status = o->has_status ? &o->status : NULL,
	    .task = task,
	    .nodes = l ? l->res.nodes : NULL,
	    .n_nodes = l ? l->res.n_nodes : 0,
	    .reserved = o->reserved,
	    .n_reserved = o->n_reserved,
	    .now_ms = o->view.db_now_ms,
	};
	in.s = o->st->base;
	in.s.templates = l ? l->templates : NULL;
	in.s.n_templates = l ? l->n_templates : 0;
	in.s.retry_backoff_ms = backoff_for(o);
	*ret = in;
	return 0;
}

/* --- plan ------------------------------------------------------------------------------ */

static CondStatus cond_of(CtCondStatus s)
{
	return s == CT_COND_TRUE ? COND_TRUE : s == CT_COND_FALSE ? COND_FALSE : COND_UNKNOWN;
}

/* The stored condition of type t, kept when the plan could not judge. */
static void keep_condition(const RuntimeServer *srv, CondType t, Plan *plan)
{
	size_t i;
	json_t *c;
	json_array_foreach(srv->conditions, i, c)
	{
		const char *type = json_string_value(json_object_get(c, "type"));
		if (!type || strcmp(type, cond_type_name(t)) != 0)
			continue;
		const char *st = json_string_value(json_object_get(c, "status"));
		CondStatus cs = st && strcmp(st, "True") == 0    ? COND_TRUE
		                : st && strcmp(st, "False") == 0 ? COND_FALSE
		                                                 : COND_UNKNOWN;
		const char *msg = json_string_value(json_object_get(c, "message"));
		plan_condition(plan, t, cs, json_string_value(json_object_get(c, "reason")), "%s",
		               msg ? msg : "");
		return;
	}
	plan_condition(plan, t, COND_UNKNOWN, "Unknown", "not observed yet");
}

static const char *action_name(CtActionType t)
{
	switch (t) {
	case CT_ACT_READ_CONFIG:
		return "read-config";
	case CT_ACT_READ_STATUS:
		return "read-status";
	case CT_ACT_REFRESH_LIST:
		return "refresh-list";
	case CT_ACT_WAIT_TASK:
		return "wait-task";
	case CT_ACT_RECORD_TASK:
		return "record-task";
	case CT_ACT_RECORD_RESTART:
		return "record-restart";
	case CT_ACT_ALLOCATE:
		return "allocate";
	case CT_ACT_QUARANTINE_VMID:
		return "quarantine";
	case CT_ACT_RECREATE:
		return "recreate";
	case CT_ACT_FOLLOW_MIGRATION:
		return "follow-migration";
	case CT_ACT_RELEASE_ALLOCATION:
		return "release";
	case CT_ACT_CREATE:
		return "create";
	case CT_ACT_CLONE:
		return "clone";
	case CT_ACT_CONFIG:
	case CT_ACT_ADOPT_AND_TAG:
	case CT_ACT_UPDATE_CONFIG:
		return "config";
	case CT_ACT_ORPHAN_UNTAG:
		return "untag";
	case CT_ACT_RESIZE:
		return "resize";
	case CT_ACT_START:
		return "start";
	case CT_ACT_SHUTDOWN:
		return "shutdown";
	case CT_ACT_STOP:
		return "stop";
	case CT_ACT_REBOOT:
		return "reboot";
	case CT_ACT_DESTROY:
		return "destroy";
	default:
		return "nothing";
	}
}

static int add_special(Plan *plan, const char *name, bool mutating, json_t *args, const char *desc)
{
	if (!args)
		return -ENOMEM;
	return plan_action(plan, name, NULL, NULL, mutating, args, "%s", desc) < 0 ? -E2BIG : 0;
}

static bool is_task_action(CtActionType t)
{
	switch (t) {
	case CT_ACT_CREATE:
	case CT_ACT_CLONE:
	case CT_ACT_RESIZE:
	case CT_ACT_START:
	case CT_ACT_SHUTDOWN:
	case CT_ACT_STOP:
	case CT_ACT_REBOOT:
	case CT_ACT_DESTROY:
		return true;
	default:
		return false;
	}
}

/* 0 when the plan's task action may start now, else how long until its
 * turn (the node's task slots, the template). */
static int64_t gate_wait(const Config *cfg, const RuntimeServer *srv, const CtObs *o,
                         const CtPlan *cp, const CtAllocation *a)
{
	for (size_t i = 0; i < cp->n_actions; i++) {
		const CtAction *act = &cp->actions[i];
		if (!is_task_action(act->type))
			continue;
		char name[96];
		int64_t w = 0;
		/* The template first: see capacity_take() in container_act.c. */
		if (act->type == CT_ACT_CLONE) {
			snprintf(name, sizeof name, "tmpl:%" PRId64, act->template_vmid);
			w = ct_gate_check(o->st, name, 1, srv->uid);
		}
		if (w == 0) {
			snprintf(name, sizeof name, "node:%s", act->node[0] ? act->node : a->node);
			w = ct_gate_check(o->st, name, (int)cfg->proxmox.max_tasks_per_node,
			                  srv->uid);
		}
		return w;
	}
	return 0;
}

static int ct_plan_common(const Config *cfg, const RuntimeServer *srv, const void *snapshot,
                          const void *obs, Plan *plan)
{
	const CtObs *o = obs;
	if (!o || !snapshot)
		return -EINVAL;
	CtList *l = ct_list_ref((CtSnap *)snapshot);
	if (!l)
		return -EINVAL;
	CtInputs in;
	int r = ct_inputs(srv, o, l, &in);
	CtPlan cp;
	if (r >= 0)
		r = recon_container_plan(&in.d, &in.a, &in.j, &in.o, &in.s, &cp);
	int64_t listed_at = l->listed_at_wall;
	ct_list_unref(l);
	if (r < 0)
		return r;

	if (cp.conditions_valid) {
		plan_condition(plan, COND_ALLOCATED, cond_of(cp.allocated.status),
		               cp.allocated.reason ? cp.allocated.reason : "", "%s",
		               cp.allocated.message);
		plan_condition(plan, COND_CONTAINER_READY, cond_of(cp.ready.status),
		               cp.ready.reason ? cp.ready.reason : "", "%s", cp.ready.message);
	} else {
		keep_condition(srv, COND_ALLOCATED, plan);
		keep_condition(srv, COND_CONTAINER_READY, plan);
	}

	/* spec.hostname changed since the allocation: the allocation follows
	 * first (claims checked there), then the plan renames the container. */
	if (o->has_alloc && !srv->deleting) {
		const char *want = spec_str(srv->spec, "hostname");
		char dflt[PVE_HOSTNAME_MAX] = "";
		if (!want || !want[0]) {
			(void)!recon_container_default_hostname(in.d.kind, in.d.variant,
			                                        o->alloc.vmid, dflt, sizeof dflt);
			want = dflt;
		}
		if (want[0] && strcasecmp(want, o->alloc.hostname) != 0)
			return add_special(plan, "hostname", true,
			                   json_pack("{s:s}", "kind", "hostname"),
			                   "the allocation follows spec.hostname");
	}

	/* Waiting for a task slot or the template costs no call: neither the
	 * task's nor the reads that would only lead to it again. */
	if (!srv->paused) {
		int64_t w = 0;
		const CtAction *first = &cp.actions[0];
		if (first->type == CT_ACT_READ_CONFIG || first->type == CT_ACT_READ_STATUS)
			w = ct_gate_pending(o->st, srv->uid);
		if (w == 0)
			w = gate_wait(cfg, srv, o, &cp, &in.a);
		if (w > 0) {
			if (srv->deleting)
				return add_special(plan, "wait", false,
				                   json_pack("{s:s, s:I}", "kind", "wait",
				                             "requeue", (json_int_t)w),
				                   "waiting for a Proxmox task slot");
			plan_requeue_after(plan, w);
			return 0;
		}
	}

	size_t n_real = 0;
	for (size_t i = 0; i < cp.n_actions; i++)
		if (cp.actions[i].type != CT_ACT_NOTHING)
			n_real++;
	size_t k = 0;
	for (size_t i = 0; i < cp.n_actions; i++) {
		const CtAction *a = &cp.actions[i];
		if (a->type == CT_ACT_NOTHING)
			continue;
		CtActionClass cls = recon_container_action_class(a->type);
		json_t *args = ct_action_to_json(a);
		if (!args)
			return -ENOMEM;
		json_object_set_new(args, "kind", json_string("ct"));
		json_object_set_new(args, "last", json_boolean(++k == n_real));
		json_object_set_new(args, "listedAt", json_integer(listed_at));
		json_object_set_new(args, "requeue", json_integer(cp.requeue_after_ms));
		r = plan_action(
		    plan, action_name(a->type), cls == CT_CLASS_STORE ? NULL : "proxmox", a->node,
		    cls != CT_CLASS_OBSERVE, args, "%s",
		    a->message[0] ? a->message : recon_container_action_to_string(a->type));
		if (r < 0)
			return -E2BIG;
	}

	if (n_real == 0) {
		/* Converged with operations whose reply was lost: what they
		 * aimed at is observed now; complete them so no intent stays
		 * open forever (and no task slot is thought held). */
		if (cp.converged && o->n_open > 0) {
			json_t *ids = json_array();
			for (size_t i = 0; ids && i < o->n_open; i++)
				if (o->open[i].step != JOURNAL_STEP_HANDLE)
					json_array_append_new(ids, json_integer(o->open[i].id));
			if (ids && json_array_size(ids) > 0)
				return add_special(
				    plan, "settle", true,
				    json_pack("{s:s, s:o}", "kind", "settle", "ids", ids),
				    "complete operations settled by observation");
			json_decref(ids);
		}
		int64_t rq = cp.requeue_after_ms;
		if (srv->deleting && !cp.finalized) {
			/* Deleting and waiting: an empty plan would mean "done". */
			return add_special(plan, "wait", false,
			                   json_pack("{s:s, s:I}", "kind", "wait", "requeue",
			                             (json_int_t)(rq > 0 ? rq : CT_SOON_MS * 4)),
			                   cp.actions[0].message[0] ? cp.actions[0].message
			                                            : "waiting");
		}
		if (rq > 0)
			plan_requeue_after(plan, rq);
		else if (rq == 0)
			plan_requeue_after(plan, CT_SOON_MS);
	}
	return 0;
}

static int ct_plan(const Config *cfg, const RuntimeServer *srv, const void *snapshot,
                   const void *obs, Plan *plan)
{
	return ct_plan_common(cfg, srv, snapshot, obs, plan);
}

static int ct_finalize(const Config *cfg, const RuntimeServer *srv, const void *snapshot,
                       const void *obs, Plan *plan)
{
	return ct_plan_common(cfg, srv, snapshot, obs, plan);
}

const Reconciler recon_container = {
    .name = "container",
    .order = 10,
    .conditions = ct_conditions,
    .uses_finalizer = true,
    .enabled = ct_enabled,
    .init = ct_init,
    .done = ct_done,
    .worker_init = ct_worker_init,
    .worker_done = ct_worker_done,
    .observe = ct_observe,
    .snapshot_free = ct_snapshot_free,
    .observe_server = ct_observe_server,
    .obs_free = ct_obs_free,
    .plan = ct_plan,
    .finalize = ct_finalize,
    .act = ct_act,
};
