/* container_plan.c - the pure helpers around the container plan: names,
 * placement, orphan classification, and the act-side builders that turn an
 * action into the exact Proxmox call parameters. */
#include "container.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define MIB ((int64_t)1024 * 1024)

/* --- names ------------------------------------------------------------------- */

static const char *const action_names[_CT_ACT_MAX] = {
    [CT_ACT_NOTHING] = "NOTHING",
    [CT_ACT_READ_CONFIG] = "READ_CONFIG",
    [CT_ACT_READ_STATUS] = "READ_STATUS",
    [CT_ACT_REFRESH_LIST] = "REFRESH_LIST",
    [CT_ACT_WAIT_TASK] = "WAIT_TASK",
    [CT_ACT_RECORD_TASK] = "RECORD_TASK",
    [CT_ACT_RECORD_RESTART] = "RECORD_RESTART",
    [CT_ACT_ALLOCATE] = "ALLOCATE",
    [CT_ACT_QUARANTINE_VMID] = "QUARANTINE_VMID",
    [CT_ACT_RECREATE] = "RECREATE",
    [CT_ACT_FOLLOW_MIGRATION] = "FOLLOW_MIGRATION",
    [CT_ACT_RELEASE_ALLOCATION] = "RELEASE_ALLOCATION",
    [CT_ACT_CREATE] = "CREATE",
    [CT_ACT_CLONE] = "CLONE",
    [CT_ACT_CONFIG] = "CONFIG",
    [CT_ACT_ADOPT_AND_TAG] = "ADOPT_AND_TAG",
    [CT_ACT_UPDATE_CONFIG] = "UPDATE_CONFIG",
    [CT_ACT_RESIZE] = "RESIZE",
    [CT_ACT_START] = "START",
    [CT_ACT_SHUTDOWN] = "SHUTDOWN",
    [CT_ACT_STOP] = "STOP",
    [CT_ACT_REBOOT] = "REBOOT",
    [CT_ACT_DESTROY] = "DESTROY",
    [CT_ACT_ORPHAN_UNTAG] = "ORPHAN_UNTAG",
};

const char *recon_container_action_to_string(CtActionType t)
{
	return t >= 0 && t < _CT_ACT_MAX && action_names[t] ? action_names[t] : "INVALID";
}

CtActionClass recon_container_action_class(CtActionType t)
{
	switch (t) {
	case CT_ACT_NOTHING:
		return CT_CLASS_NONE;
	case CT_ACT_READ_CONFIG:
	case CT_ACT_READ_STATUS:
	case CT_ACT_REFRESH_LIST:
	case CT_ACT_WAIT_TASK:
		return CT_CLASS_OBSERVE;
	case CT_ACT_RECORD_TASK:
	case CT_ACT_RECORD_RESTART:
	case CT_ACT_ALLOCATE:
	case CT_ACT_QUARANTINE_VMID:
	case CT_ACT_RECREATE:
	case CT_ACT_FOLLOW_MIGRATION:
	case CT_ACT_RELEASE_ALLOCATION:
		return CT_CLASS_STORE;
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
		return CT_CLASS_EXTERNAL;
	default:
		return CT_CLASS_NONE;
	}
}

static const char *const op_names[_CT_OP_MAX] = {
    [CT_OP_CREATE] = "create", [CT_OP_CLONE] = "clone",   [CT_OP_CONFIG] = "config",
    [CT_OP_RESIZE] = "resize", [CT_OP_START] = "start",   [CT_OP_SHUTDOWN] = "shutdown",
    [CT_OP_STOP] = "stop",     [CT_OP_REBOOT] = "reboot", [CT_OP_DESTROY] = "destroy",
    [CT_OP_UNTAG] = "untag",
};

const char *recon_container_op_to_string(CtOpType t)
{
	return t >= 0 && t < _CT_OP_MAX ? op_names[t] : "invalid";
}

const char *recon_container_op_crash_name(CtOpType t)
{
	switch (t) {
	case CT_OP_SHUTDOWN:
		return "stop";
	case CT_OP_UNTAG:
		return "config";
	default:
		return recon_container_op_to_string(t);
	}
}

const char *recon_container_step_to_string(CtStep s)
{
	static const char *const n[_CT_STEP_MAX] = {"intent", "call", "handle", "done"};
	return s >= 0 && s < _CT_STEP_MAX ? n[s] : "invalid";
}

const char *recon_container_orphan_kind_to_string(CtOrphanKind k)
{
	static const char *const n[_CT_ORPHAN_KIND_MAX] = {
	    [CT_ORPHAN_UNKNOWN_UID] = "unknown-uid",
	    [CT_ORPHAN_NO_UID] = "tag-without-uid",
	    [CT_ORPHAN_STRAY] = "stray",
	    [CT_ORPHAN_UNTAGGED_IN_RANGE] = "untagged-in-range",
	};
	return k >= 0 && k < _CT_ORPHAN_KIND_MAX ? n[k] : "invalid";
}

/* --- outcomes ------------------------------------------------------------------- */

CtOutcome recon_container_outcome(CtActionType t, int r, bool got_upid)
{
	if (r >= 0)
		return got_upid ? CT_OUTCOME_HANDLE : CT_OUTCOME_DONE;
	bool create = t == CT_ACT_CREATE || t == CT_ACT_CLONE;
	switch (r) {
	case -EALREADY:
		if (t == CT_ACT_START || t == CT_ACT_SHUTDOWN || t == CT_ACT_STOP ||
		    t == CT_ACT_RESIZE)
			return CT_OUTCOME_DONE;
		return CT_OUTCOME_OBSERVE;
	case -ENOENT:
		if (t == CT_ACT_DESTROY)
			return CT_OUTCOME_DONE; /* delete is "make absent" */
		/* create/clone: a template, storage or node that does not exist */
		return create ? CT_OUTCOME_FAILED : CT_OUTCOME_OBSERVE;
	case -EEXIST:
		/* Proxmox refused a second guest at the vmid: ours (a lost reply
		 * libcurl resent) or foreign; identity decides. */
		return CT_OUTCOME_OBSERVE;
	case -ESTALE:
	case -ESRCH:
		return CT_OUTCOME_OBSERVE;
	case -ETIMEDOUT:
	case -ECONNRESET:
	case -EIO:
	case -EBADMSG:
		return CT_OUTCOME_UNKNOWN;
	case -EBUSY:
	case -EAGAIN:
	case -ECONNREFUSED:
	case -EHOSTUNREACH:
	case -ENOMEM:
		return CT_OUTCOME_RETRY;
	default:
		return CT_OUTCOME_FAILED;
	}
}

const char *recon_container_outcome_to_string(CtOutcome o)
{
	static const char *const n[_CT_OUTCOME_MAX] = {"done",    "handle", "failed",
	                                               "unknown", "retry",  "observe"};
	return o >= 0 && o < _CT_OUTCOME_MAX ? n[o] : "invalid";
}

/* --- placement ------------------------------------------------------------------ */

static bool node_allowed(const CtSettings *s, const char *node)
{
	if (s->n_nodes) {
		bool found = false;
		for (size_t i = 0; i < s->n_nodes && !found; i++)
			found = s->nodes[i] && strcmp(s->nodes[i], node) == 0;
		if (!found)
			return false;
	}
	if (s->mode == CT_MODE_CLONE) {
		for (size_t i = 0; i < s->n_templates; i++)
			if (s->templates[i].node && strcmp(s->templates[i].node, node) == 0)
				return true;
		return false;
	}
	return true;
}

int recon_container_place(const CtSettings *s, const PveNode *nodes, size_t n_nodes,
                          const CtReserved *reserved, size_t n_reserved, int64_t memory_mib,
                          const char **ret_node)
{
	if (!s || memory_mib <= 0)
		return -EINVAL;
	const char *best = NULL;
	int64_t best_free = 0;
	for (size_t i = 0; nodes && i < n_nodes; i++) {
		const PveNode *n = &nodes[i];
		if (n->status != PVE_NODE_ONLINE || n->maxmem <= 0 || !node_allowed(s, n->node))
			continue;
		int64_t res_mib = 0;
		for (size_t k = 0; reserved && k < n_reserved; k++)
			if (reserved[k].node && strcmp(reserved[k].node, n->node) == 0)
				res_mib += reserved[k].reserved_mib;
		/* Observed mem lags behind what was just placed; the reservations
		 * do not know what else runs on the node: count the larger. */
		int64_t used = n->mem > 0 ? n->mem : 0;
		if (res_mib * MIB > used)
			used = res_mib * MIB;
		int64_t free_after = n->maxmem - used - memory_mib * MIB;
		if (free_after < 0)
			continue;
		if (!best || free_after > best_free ||
		    (free_after == best_free && strcmp(n->node, best) < 0)) {
			best = n->node;
			best_free = free_after;
		}
	}
	if (!best)
		return -ENOSPC;
	*ret_node = best;
	return 0;
}

/* --- orphans ---------------------------------------------------------------------- */

static int cmp_known_uid(const void *a, const void *b)
{
	return strcasecmp(((const CtKnownServer *)a)->uid, ((const CtKnownServer *)b)->uid);
}

static int cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
	return (x > y) - (x < y);
}

static int cmp_orphan(const void *a, const void *b)
{
	return cmp_i64(&((const CtOrphan *)a)->vmid, &((const CtOrphan *)b)->vmid);
}

int recon_container_orphans(const PveGuest *guests, size_t n_guests, const CtKnownServer *known,
                            size_t n_known, int64_t vmid_min, int64_t vmid_max, CtOrphan **ret,
                            size_t *ret_n)
{
	if ((n_guests && !guests) || (n_known && !known) || n_guests > PVE_MAX_GUESTS)
		return -EINVAL;
	_cleanup_free_ CtKnownServer *by_uid = NULL;
	_cleanup_free_ int64_t *vmids = NULL;
	size_t nk = 0, nv = 0;
	if (n_known) {
		by_uid = calloc(n_known, sizeof *by_uid);
		vmids = calloc(n_known, sizeof *vmids);
		if (!by_uid || !vmids)
			return -ENOMEM;
		for (size_t i = 0; i < n_known; i++) {
			if (known[i].uid)
				by_uid[nk++] = known[i];
			if (known[i].vmid)
				vmids[nv++] = known[i].vmid;
		}
		qsort(by_uid, nk, sizeof *by_uid, cmp_known_uid);
		qsort(vmids, nv, sizeof *vmids, cmp_i64);
	}
	_cleanup_free_ CtOrphan *out = n_guests ? calloc(n_guests, sizeof *out) : NULL;
	if (n_guests && !out)
		return -ENOMEM;
	size_t n = 0;
	for (size_t i = 0; i < n_guests; i++) {
		const PveGuest *g = &guests[i];
		char uid[64] = "";
		int r = pve_tags_uid(g->tags, uid, sizeof uid);
		CtOrphanKind kind;
		if (r == 0 || r == -ENOBUFS) {
			CtKnownServer key = {.uid = uid};
			const CtKnownServer *k =
			    r == 0 && nk ? bsearch(&key, by_uid, nk, sizeof *by_uid, cmp_known_uid)
			                 : NULL;
			if (!k)
				kind = CT_ORPHAN_UNKNOWN_UID;
			else if (k->vmid != g->vmid)
				kind = CT_ORPHAN_STRAY;
			else
				continue;
		} else if (pve_tags_contains(g->tags, PVE_TAG_MANAGED)) {
			kind = CT_ORPHAN_NO_UID;
		} else if (g->vmid >= vmid_min && g->vmid <= vmid_max &&
		           !(nv && bsearch(&g->vmid, vmids, nv, sizeof *vmids, cmp_i64))) {
			kind = CT_ORPHAN_UNTAGGED_IN_RANGE;
		} else {
			continue;
		}
		CtOrphan *o = &out[n++];
		o->vmid = g->vmid;
		o->kind = kind;
		snprintf(o->node, sizeof o->node, "%s", g->node);
		snprintf(o->uid, sizeof o->uid, "%s", uid);
	}
	if (n)
		qsort(out, n, sizeof *out, cmp_orphan);
	*ret = n ? TAKE_PTR(out) : NULL;
	*ret_n = n;
	return 0;
}

/* --- builders ------------------------------------------------------------------------ */

int recon_container_default_hostname(CtKind kind, const char *variant, int64_t vmid, char *buf,
                                     size_t n)
{
	int r;
	if (vmid < PVE_VMID_MIN || vmid > PVE_VMID_MAX)
		return -EINVAL;
	if (kind == CT_KIND_DEVSERVER)
		r = snprintf(buf, n, "dev-%" PRId64, vmid);
	else if (variant && variant[0])
		r = snprintf(buf, n, "mc-%s-%" PRId64, variant, vmid);
	else
		r = snprintf(buf, n, "mc-%" PRId64, vmid);
	if (r < 0)
		return -EINVAL;
	if ((size_t)r >= n)
		return -ENOBUFS;
	for (char *p = buf; *p; p++)
		if (*p >= 'A' && *p <= 'Z')
			*p = (char)(*p - 'A' + 'a');
	return 0;
}

static int hostname_of(const CtDesired *d, const CtAllocation *a, char *buf, size_t n)
{
	if (a->hostname && a->hostname[0]) {
		int r = snprintf(buf, n, "%s", a->hostname);
		return r < 0 ? -EINVAL : (size_t)r >= n ? -ENOBUFS : 0;
	}
	return recon_container_default_hostname(d->kind, d->variant, a->vmid, buf, n);
}

int recon_container_net0(const CtDesired *d, const CtAllocation *a, const CtSettings *s,
                         const char *hwaddr, char *buf, size_t n)
{
	const CtNet *net =
	    d->kind == CT_KIND_DEVSERVER && s->net_dev.bridge ? &s->net_dev : &s->net;
	if (!net->bridge || !a->ip)
		return -EINVAL;
	return pve_net0_format(net->bridge, a->ip, net->prefix, net->gateway, hwaddr, buf, n);
}

static bool alloc_ok(const CtAllocation *a)
{
	return a && a->vmid >= PVE_VMID_MIN && a->vmid <= PVE_VMID_MAX && a->node && a->node[0] &&
	       strlen(a->node) < PVE_NODE_MAX && a->ip;
}

int recon_container_create_call(const CtDesired *d, const CtAllocation *a, const CtSettings *s,
                                CtCreateCall *ret)
{
	if (!d || !s || !alloc_ok(a) || s->mode != CT_MODE_CREATE || !s->ostemplate ||
	    !s->storage || !s->storage[0] || d->disk_gib < 1)
		return -EINVAL;
	CtCreateCall c = {0};
	int r;
	snprintf(c.node, sizeof c.node, "%s", a->node);
	if ((r = hostname_of(d, a, c.hostname, sizeof c.hostname)) < 0 ||
	    (r = pve_identity_description(d->uid, d->owner ? d->owner : "", d->name ? d->name : "",
	                                  c.description, sizeof c.description)) < 0 ||
	    (r = pve_identity_tags(d->uid, c.tags, sizeof c.tags)) < 0 ||
	    (r = recon_container_net0(d, a, s, NULL, c.net0, sizeof c.net0)) < 0)
		return r;
	r = snprintf(c.rootfs, sizeof c.rootfs, "%s:%" PRId64, s->storage, d->disk_gib);
	if (r < 0 || (size_t)r >= sizeof c.rootfs)
		return -EINVAL;
	*ret = c;
	ret->params = (PveCreateParams){
	    .vmid = a->vmid,
	    .ostemplate = s->ostemplate,
	    .hostname = ret->hostname,
	    .description = ret->description,
	    .tags = ret->tags,
	    .cores = d->cores,
	    .memory_mib = d->memory_mib,
	    .swap_mib = s->swap_mib,
	    .rootfs = ret->rootfs,
	    .net0 = ret->net0,
	    .unprivileged = true,
	    .features = d->kind == CT_KIND_DEVSERVER ? "nesting=1" : NULL,
	    .start = d->power == CT_POWER_RUNNING,
	    .pool = s->pool,
	};
	return 0;
}

int recon_container_clone_call(const CtDesired *d, const CtAllocation *a, const CtSettings *s,
                               CtCloneCall *ret)
{
	if (!d || !s || !alloc_ok(a) || s->mode != CT_MODE_CLONE || !s->storage || !s->storage[0])
		return -EINVAL;
	int64_t tvmid = 0;
	for (size_t i = 0; i < s->n_templates; i++)
		if (s->templates[i].node && strcmp(s->templates[i].node, a->node) == 0)
			tvmid = s->templates[i].vmid;
	if (!tvmid)
		return -ENOENT;
	CtCloneCall c = {.template_vmid = tvmid};
	int r;
	snprintf(c.node, sizeof c.node, "%s", a->node);
	if ((r = hostname_of(d, a, c.hostname, sizeof c.hostname)) < 0 ||
	    (r = pve_identity_description(d->uid, d->owner ? d->owner : "", d->name ? d->name : "",
	                                  c.description, sizeof c.description)) < 0)
		return r;
	*ret = c;
	ret->params = (PveCloneParams){
	    .newid = a->vmid,
	    .hostname = ret->hostname,
	    .full = true,
	    .storage = s->storage,
	    .pool = s->pool,
	    .description = ret->description,
	};
	return 0;
}

void recon_container_config_call_clear(CtConfigCall *c)
{
	if (!c)
		return;
	free(c->tags);
	*c = (CtConfigCall){0};
}

/* cfg's features with nesting=1 (other flags kept, nesting=0 replaced). */
static int features_with_nesting(const char *have, char *buf, size_t n)
{
	Buf b = BUF_INIT;
	int r = buf_puts(&b, "");
	const char *p = have ? have : "";
	while (*p && r >= 0) {
		size_t l = strcspn(p, ",");
		if (l && !(l >= 8 && strncmp(p, "nesting=", 8) == 0)) {
			r = buf_append(&b, p, l);
			if (r >= 0)
				r = buf_puts(&b, ",");
		}
		p += l;
		if (*p == ',')
			p++;
	}
	if (r >= 0)
		r = buf_puts(&b, "nesting=1");
	if (r >= 0 && b.len >= n)
		r = -ENOBUFS;
	if (r >= 0)
		memcpy(buf, b.data, b.len + 1);
	buf_done(&b);
	return r;
}

int recon_container_config_call(const CtAction *act, const CtDesired *d, const CtAllocation *a,
                                const CtSettings *s, const PveCtConfig *cfg, CtConfigCall *ret)
{
	if (!act || !d || !s || !alloc_ok(a))
		return -EINVAL;
	_cleanup_(recon_container_config_call_clear) CtConfigCall c = {0};
	char ident[160];
	int r = pve_identity_tags(d->uid, ident, sizeof ident);
	if (r < 0)
		return r;
	const char *digest = act->digest[0] ? act->digest : cfg ? cfg->digest : "";
	snprintf(c.digest, sizeof c.digest, "%s", digest);
	bool delete_tags = false;
	unsigned f = act->config_fields;

	switch (act->type) {
	case CT_ACT_CONFIG:
	case CT_ACT_ADOPT_AND_TAG:
	case CT_ACT_UPDATE_CONFIG:
		if (!f)
			return -EINVAL;
		if ((f & CT_CFG_HOSTNAME) &&
		    (r = hostname_of(d, a, c.hostname, sizeof c.hostname)) < 0)
			return r;
		if (f & CT_CFG_TAGS) {
			r = pve_tags_union(cfg ? cfg->tags : "", ident, &c.tags);
			if (r < 0)
				return r;
		}
		if (f & CT_CFG_NET0) {
			PveNet0 have = {0};
			if (cfg && cfg->net0 && pve_net0_parse(cfg->net0, &have) < 0)
				have = (PveNet0){0};
			r = recon_container_net0(d, a, s, have.hwaddr[0] ? have.hwaddr : NULL,
			                         c.net0, sizeof c.net0);
			if (r < 0)
				return r;
		}
		if ((f & CT_CFG_FEATURES) &&
		    (r = features_with_nesting(cfg ? cfg->features : NULL, c.features,
		                               sizeof c.features)) < 0)
			return r;
		break;
	case CT_ACT_ORPHAN_UNTAG:
		if (!cfg)
			return -EINVAL;
		r = pve_tags_remove(cfg->tags, ident, &c.tags);
		if (r < 0)
			return r;
		/* Nothing left: remove the setting rather than write "". */
		if (!c.tags[0]) {
			delete_tags = true;
			free(c.tags);
			c.tags = NULL;
		}
		f = 0;
		break;
	default:
		return -EINVAL;
	}

	*ret = c;
	ret->update = (PveConfigUpdate){
	    .digest = ret->digest[0] ? ret->digest : NULL,
	    .cores = (f & CT_CFG_CORES) ? d->cores : 0,
	    .memory_mib = (f & CT_CFG_MEMORY) ? d->memory_mib : 0,
	    .swap_mib = (f & CT_CFG_SWAP) ? s->swap_mib : -1,
	    .hostname = (f & CT_CFG_HOSTNAME) ? ret->hostname : NULL,
	    .tags = ret->tags,
	    .net0 = (f & CT_CFG_NET0) ? ret->net0 : NULL,
	    .features = (f & CT_CFG_FEATURES) ? ret->features : NULL,
	    .delete_keys = delete_tags ? "tags" : NULL,
	};
	c = (CtConfigCall){0};
	return 0;
}
