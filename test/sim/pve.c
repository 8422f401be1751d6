/* pve.c - the Proxmox VE API (/api2/json) as pve-manager, pve-container and
 * pve-cluster behave: token auth, the {"data": ...} envelope, parameter
 * verification, cluster-wide VMIDs, tasks with real-format UPIDs, config
 * locks and digests, the exact error texts (../shared/contracts/README.md). */
#include "sim.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

#define API "/api2/json"

static const char *const storages[] = {"local", "local-lvm"};

/* ---- responses ----------------------------------------------------------------- */

static void pve_ok(SimResponse *resp, json_t *take)
{
	resp_json(resp, 200, json_pack("{s:o}", "data", take ? take : json_null()));
}

static void pve_err(SimResponse *resp, int status, const char *fmt, ...) _printf_(3, 4);
static void pve_err(SimResponse *resp, int status, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	size_t n = strlen(msg);
	if (n + 1 < sizeof(msg) && (n == 0 || msg[n - 1] != '\n'))
		msg[n] = '\n', msg[n + 1] = 0;
	resp_json(resp, status, json_pack("{s:n, s:s}", "data", "message", msg));
}

static void pve_param_err(SimResponse *resp, json_t *take_errors)
{
	resp_json(resp, 400,
	          json_pack("{s:n, s:s, s:o}", "data", "message",
	                    "Parameter verification failed.\n", "errors", take_errors));
}

void pve_fault_response(SimResponse *resp)
{
	pve_err(resp, 500, "zlh-sim: injected fault");
}

static void ct_missing(SimResponse *resp, const char *node, int vmid)
{
	pve_err(resp, 500, "Configuration file 'nodes/%s/lxc/%d.conf' does not exist", node, vmid);
}

static bool locked(SimResponse *resp, const Container *ct)
{
	if (!ct->lock)
		return false;
	pve_err(resp, 500, "CT is locked (%s)", ct->lock);
	return true;
}

/* ---- request prologue --------------------------------------------------------------- */

typedef struct PveCtx {
	json_t *p; /* validated, typed params (owned) */
	const char *node; /* borrowed from p */
	int vmid;
	Container *ct;
} PveCtx;

static void ctx_done(PveCtx *c)
{
	json_decref(c->p);
}

static bool auth_ok(const SimRequest *req)
{
	const char *a = req->authorization;
	if (!a || strncmp(a, "PVEAPIToken=", 12) != 0)
		return false;
	a += 12;
	size_t idl = strlen(sim_secrets.pve_token_id);
	return strncmp(a, sim_secrets.pve_token_id, idl) == 0 && a[idl] == '=' &&
	       strcmp(a + idl + 1, sim_secrets.pve_token_secret) == 0;
}

/* Auth, parameters (query + body + path), schema validation, node check;
 * with need_ct, the container must exist on that node. false = answered. */
static bool begin(SimRequest *req, SimResponse *resp, PveCtx *c, bool need_ct)
{
	memset(c, 0, sizeof(*c));
	if (!auth_ok(req)) {
		resp_json(resp, 401,
		          json_pack("{s:n, s:s}", "data", "message",
		                    req->authorization ? "invalid token value!\n" : "No ticket\n"));
		return false;
	}
	bool bad = false;
	_cleanup_json_ json_t *params = req_body_params(req, &bad);
	if (bad) {
		pve_err(resp, 400, "unable to parse JSON request body");
		return false;
	}
	const char *k;
	json_t *v;
	json_object_foreach(req->query, k, v)
	{
		json_object_set(params, k, v);
	}
	if (req->nseg > 3 && strcmp(req->segs[2], "nodes") == 0)
		json_object_set_new(params, "node", json_string(req->segs[3]));
	if (req->nseg > 5 && strcmp(req->segs[4], "lxc") == 0)
		json_object_set_new(params, "vmid", json_string(req->segs[5]));
	if (req->nseg > 5 && strcmp(req->segs[4], "tasks") == 0)
		json_object_set_new(params, "upid", json_string(req->segs[5]));
	json_t *errors = NULL;
	if (pveschema_check(req->route + strlen(API), req->method, params, &c->p, &errors) < 0) {
		pve_param_err(resp, errors);
		return false;
	}
	c->node = json_string_value(json_object_get(c->p, "node"));
	if (c->node && world_node_index(c->node) < 0) {
		pve_err(resp, 500,
		        "hostname lookup '%s' failed - failed to get address info for: %s: Name or "
		        "service not known",
		        c->node, c->node);
		ctx_done(c);
		return false;
	}
	c->vmid = (int)json_integer_value(json_object_get(c->p, "vmid"));
	if (need_ct) {
		c->ct = world_ct(c->vmid);
		if (!c->ct || strcmp(c->ct->node, c->node) != 0) {
			ct_missing(resp, c->node, c->vmid);
			ctx_done(c);
			return false;
		}
	}
	return true;
}

static const char *pstr(PveCtx *c, const char *k)
{
	return json_string_value(json_object_get(c->p, k));
}

static bool pbool(PveCtx *c, const char *k)
{
	return json_integer_value(json_object_get(c->p, k)) != 0;
}

static bool vmid_taken(SimResponse *resp, int vmid)
{
	Container *ex = world_ct(vmid);
	if (!ex)
		return false;
	pve_err(resp, 500, "CT %d already exists on node '%s'", vmid, ex->node);
	return true;
}

static bool storage_ok(SimResponse *resp, const char *s)
{
	for (size_t i = 0; i < ELEMENTSOF(storages); i++)
		if (strcmp(storages[i], s) == 0)
			return true;
	pve_err(resp, 500, "storage '%s' does not exist", s);
	return false;
}

static void task_reply(SimResponse *resp, Task *t, const char *line)
{
	if (line) {
		(void)!buf_puts(&t->log, line);
		(void)!buf_puts(&t->log, "\n");
	}
	pve_ok(resp, json_string(t->upid));
}

/* Config keys a create/update stores; the rest are accepted and dropped. */
static bool stored_key(const char *k)
{
	static const char *const keys[] = {
	    "arch",        "cmode",    "console",    "cores",        "cpulimit", "cpuunits",
	    "description", "features", "hookscript", "hostname",     "memory",   "nameserver",
	    "onboot",      "ostype",   "protection", "searchdomain", "startup",  "swap",
	    "tags",        "timezone", "tty",        "unprivileged", "rootfs",   "template",
	    "entrypoint",  "env",      "debug"};
	for (size_t i = 0; i < ELEMENTSOF(keys); i++)
		if (strcmp(keys[i], k) == 0)
			return true;
	size_t n = strlen(k);
	while (n && k[n - 1] >= '0' && k[n - 1] <= '9')
		n--;
	return n < strlen(k) && (strncmp(k, "net", n) == 0 || strncmp(k, "mp", n) == 0 ||
	                         strncmp(k, "dev", n) == 0 || strncmp(k, "unused", n) == 0);
}

/* Applies one validated parameter to a config. false = answered (error). */
static bool apply_key(SimResponse *resp, Container *ct, const char *k, json_t *v)
{
	if (strcmp(k, "tags") == 0) {
		_cleanup_free_ char *t = pve_tags_normalize(json_string_value(v));
		if (!t) {
			pve_err(resp, 400, "invalid tags");
			return false;
		}
		if (*t)
			json_object_set_new(ct->conf, "tags", json_string(t));
		else
			json_object_del(ct->conf, "tags");
		return true;
	}
	if (strncmp(k, "net", 3) == 0 && k[3] >= '0' && k[3] <= '9') {
		const char *old = json_string_value(json_object_get(ct->conf, k));
		_cleanup_json_ json_t *op = pve_propstr_parse(old ? old : "", NULL);
		_cleanup_free_ char *n = pve_net_normalize(
		    json_string_value(v), json_string_value(json_object_get(op, "hwaddr")));
		json_object_set_new(ct->conf, k, json_string(n));
		return true;
	}
	if (stored_key(k))
		json_object_set(ct->conf, k, v);
	return true;
}

/* ---- handlers: cluster -------------------------------------------------------------- */

static void h_version(SimRequest *req, SimResponse *resp)
{
	PveCtx c;
	if (!begin(req, resp, &c, false))
		return;
	pve_ok(resp, json_pack("{s:s, s:s, s:s}", "version", "9.1.1", "release", "9.1", "repoid",
	                       "5e1f6a2b"));
	ctx_done(&c);
}

static void h_nodes(SimRequest *req, SimResponse *resp)
{
	PveCtx c;
	if (!begin(req, resp, &c, false))
		return;
	json_t *a = json_array();
	for (int i = 0; i < world.n_nodes; i++)
		json_array_append_new(a, pve_node_resource(i));
	pve_ok(resp, a);
	ctx_done(&c);
}

static void h_resources(SimRequest *req, SimResponse *resp)
{
	PveCtx c;
	if (!begin(req, resp, &c, false))
		return;
	const char *type = pstr(&c, "type");
	Buf b = BUF_INIT;
	bool first = true;
	(void)!buf_puts(&b, "{\"data\":[");
	if (!type || strcmp(type, "vm") == 0)
		for (size_t i = 0; i < world.n_cts; i++) {
			if (!first)
				(void)!buf_puts(&b, ",");
			first = false;
			pve_vm_resource_buf(&b, world.cts[i]);
		}
	json_t *rest = json_array();
	if (!type || strcmp(type, "node") == 0)
		for (int i = 0; i < world.n_nodes; i++)
			json_array_append_new(rest, pve_node_resource(i));
	if (!type || strcmp(type, "storage") == 0)
		for (int i = 0; i < world.n_nodes; i++)
			for (size_t s = 0; s < ELEMENTSOF(storages); s++) {
				char id[96];
				snprintf(id, sizeof(id), "storage/%s/%s", world.nodes[i],
				         storages[s]);
				json_array_append_new(
				    rest,
				    json_pack("{s:s, s:s, s:s, s:s, s:s, s:I, s:I, s:i}", "id", id,
				              "type", "storage", "node", world.nodes[i], "storage",
				              storages[s], "status", "available", "disk",
				              (json_int_t)10 << 30, "maxdisk",
				              (json_int_t)500 << 30, "shared", 0));
			}
	size_t i;
	json_t *it;
	json_array_foreach(rest, i, it)
	{
		_cleanup_free_ char *d = json_dumps(it, JSON_COMPACT);
		(void)!buf_printf(&b, "%s%s", first ? "" : ",", d ? d : "{}");
		first = false;
	}
	json_decref(rest);
	(void)!buf_puts(&b, "]}");
	resp->status = 200;
	free(resp->body);
	resp->body = buf_steal(&b);
	resp->content_type = "application/json;charset=UTF-8";
	ctx_done(&c);
}

static void h_nextid(SimRequest *req, SimResponse *resp)
{
	PveCtx c;
	if (!begin(req, resp, &c, false))
		return;
	json_t *v = json_object_get(c.p, "vmid");
	if (v) {
		if (world_ct((int)json_integer_value(v))) {
			char msg[64];
			snprintf(msg, sizeof(msg), "VM %d already exists",
			         (int)json_integer_value(v));
			pve_param_err(resp, json_pack("{s:s}", "vmid", msg));
		} else {
			char s[16];
			snprintf(s, sizeof(s), "%d", (int)json_integer_value(v));
			pve_ok(resp, json_string(s));
		}
		ctx_done(&c);
		return;
	}
	int id = 100;
	while (world_ct(id))
		id++;
	char s[16];
	snprintf(s, sizeof(s), "%d", id);
	pve_ok(resp, json_string(s)); /* reserves nothing */
	ctx_done(&c);
}

/* ---- handlers: containers ----------------------------------------------------------- */

static void h_lxc_list(SimRequest *req, SimResponse *resp)
{
	PveCtx c;
	if (!begin(req, resp, &c, false))
		return;
	json_t *a = json_array();
	for (size_t i = 0; i < world.n_cts; i++) {
		Container *ct = world.cts[i];
		if (strcmp(ct->node, c.node) != 0)
			continue;
		json_t *o = pve_vm_resource(ct);
		char v[16];
		snprintf(v, sizeof(v), "%d", ct->vmid);
		json_object_set_new(o, "vmid", json_string(v));
		json_object_del(o, "id");
		json_object_del(o, "node");
		if (json_object_get(o, "status") &&
		    strcmp(json_string_value(json_object_get(o, "status")), "unknown") == 0)
			json_object_set_new(o, "status",
			                    json_string(ct->running ? "running" : "stopped"));
		json_array_append_new(a, o);
	}
	pve_ok(resp, a);
	ctx_done(&c);
}

static void h_create(SimRequest *req, SimResponse *resp)
{
	PveCtx c;
	_cleanup_json_ json_t *rp = NULL;
	if (!begin(req, resp, &c, false))
		return;
	if (vmid_taken(resp, c.vmid))
		goto out;
	const char *ostemplate = pstr(&c, "ostemplate");
	const char *colon = strchr(ostemplate, ':');
	if (!colon || strncmp(ostemplate, "local:", 6) != 0 ||
	    strncmp(colon + 1, "vztmpl/", 7) != 0 || !colon[8]) {
		pve_err(resp, 500, "volume '%s' does not exist", ostemplate);
		goto out;
	}
	const char *storage = pstr(&c, "storage") ? pstr(&c, "storage") : "local";
	if (!storage_ok(resp, storage))
		goto out;
	/* rootfs "STORAGE:GIB[,opts]" allocates a new volume */
	char rootfs[256];
	const char *rf = pstr(&c, "rootfs");
	rp = pve_propstr_parse(rf ? rf : "", "volume");
	const char *vol = json_string_value(json_object_get(rp, "volume"));
	char st[64] = "";
	double gib = 4;
	if (vol) {
		const char *cc = strchr(vol, ':');
		if (!cc || (size_t)(cc - vol) >= sizeof(st)) {
			pve_err(resp, 500, "unable to parse rootfs volume '%s'", vol);
			goto out;
		}
		memcpy(st, vol, (size_t)(cc - vol));
		st[cc - vol] = 0;
		char *end;
		gib = strtod(cc + 1, &end);
		if (end == cc + 1 || *end || gib <= 0) {
			pve_err(resp, 500, "unable to parse rootfs volume '%s'", vol);
			goto out;
		}
	} else {
		snprintf(st, sizeof(st), "%s", storage);
	}
	if (!storage_ok(resp, st))
		goto out;
	int64_t mib = (int64_t)(gib * 1024);
	if (mib % 1024 == 0)
		snprintf(rootfs, sizeof(rootfs), "%s:vm-%d-disk-0,size=%lldG", st, c.vmid,
		         (long long)(mib / 1024));
	else
		snprintf(rootfs, sizeof(rootfs), "%s:vm-%d-disk-0,size=%lldM", st, c.vmid,
		         (long long)mib);
	const char *k;
	json_t *v;
	json_object_foreach(rp, k, v)
	{
		if (strcmp(k, "volume") != 0 && strcmp(k, "size") != 0) {
			size_t n = strlen(rootfs);
			snprintf(rootfs + n, sizeof(rootfs) - n, ",%s=%s", k, json_string_value(v));
		}
	}
	char host[64];
	snprintf(host, sizeof(host), "CT%d", c.vmid);
	Container *ct =
	    pve_make_ct(c.vmid, c.node, pstr(&c, "hostname") ? pstr(&c, "hostname") : host, NULL);
	json_object_del(ct->conf, "net0");
	json_object_del(ct->conf, "cores");
	json_object_del(ct->conf, "unprivileged");
	const char *file = colon + 8;
	const char *oss[] = {"debian", "ubuntu", "alpine", "centos", "fedora", "archlinux"};
	for (size_t i = 0; i < ELEMENTSOF(oss); i++)
		if (strncmp(file, oss[i], strlen(oss[i])) == 0)
			json_object_set_new(ct->conf, "ostype", json_string(oss[i]));
	json_object_foreach(c.p, k, v)
	{
		if (strcmp(k, "rootfs") == 0 || strcmp(k, "vmid") == 0 || strcmp(k, "node") == 0)
			continue;
		if (!apply_key(resp, ct, k, v)) {
			world_ct_free(ct);
			goto out;
		}
	}
	json_object_set_new(ct->conf, "rootfs", json_string(rootfs));
	if (pstr(&c, "pool"))
		json_object_set_new(ct->conf, "pool", json_string(pstr(&c, "pool")));
	ct->lock = strdup("create");
	world_ct_add(ct);
	Task *t = world_task_new(TASK_CREATE, c.node, "vzcreate", c.vmid, c.vmid);
	t->start_after = pbool(&c, "start");
	stats_effect("pve.create");
	stats_created("containers_per_uid", ct->uid);
	char line[512];
	snprintf(line, sizeof(line), "extracting archive '/var/lib/vz/template/cache/%s'", file);
	task_reply(resp, t, line);
out:
	ctx_done(&c);
}

static void h_clone(SimRequest *req, SimResponse *resp)
{
	PveCtx c;
	_cleanup_json_ json_t *rp = NULL;
	if (!begin(req, resp, &c, true))
		return;
	int newid = (int)json_integer_value(json_object_get(c.p, "newid"));
	Container *src = c.ct;
	if (vmid_taken(resp, newid))
		goto out;
	const char *target = pstr(&c, "target");
	if (target && strcmp(target, c.node) != 0) {
		pve_err(resp, 500, "can't clone to node '%s' (CT uses local storage)", target);
		goto out;
	}
	if (!src->is_template && !pbool(&c, "full") && json_object_get(c.p, "full")) {
		/* explicit full=0 on a plain container */
		pve_err(resp, 500, "linked clone feature for 'local-lvm' is not available");
		goto out;
	}
	if (src->running && !src->is_template) {
		pve_err(resp, 500, "cloning a running container is only possible from a snapshot");
		goto out;
	}
	const char *storage = pstr(&c, "storage");
	if (storage && !storage_ok(resp, storage))
		goto out;
	if (locked(resp, src))
		goto out;
	const char *srcroot = json_string_value(json_object_get(src->conf, "rootfs"));
	rp = pve_propstr_parse(srcroot ? srcroot : "", "volume");
	const char *srcvol = json_string_value(json_object_get(rp, "volume"));
	char st[64] = "local-lvm";
	if (storage)
		snprintf(st, sizeof(st), "%s", storage);
	else if (srcvol && strchr(srcvol, ':'))
		snprintf(st, sizeof(st), "%.*s", (int)(strchr(srcvol, ':') - srcvol), srcvol);
	const char *size = json_string_value(json_object_get(rp, "size"));
	char rootfs[160];
	snprintf(rootfs, sizeof(rootfs), "%s:vm-%d-disk-0,size=%s", st, newid, size ? size : "4G");

	Container *ct = calloc(1, sizeof(*ct));
	if (!ct)
		abort();
	ct->vmid = newid;
	snprintf(ct->node, sizeof(ct->node), "%s", c.node);
	ct->created_ms = sim_now_ms();
	ct->conf = json_deep_copy(src->conf);
	json_object_del(ct->conf, "template");
	json_object_set_new(ct->conf, "rootfs", json_string(rootfs));
	const char *k;
	json_t *v;
	json_object_foreach(ct->conf, k, v)
	{
		if (strncmp(k, "net", 3) == 0 && k[3] >= '0' && k[3] <= '9') {
			_cleanup_json_ json_t *np = pve_propstr_parse(json_string_value(v), NULL);
			json_object_del(np, "hwaddr");
			Buf b = BUF_INIT;
			const char *nk;
			json_t *nv;
			json_object_foreach(np, nk, nv)
			{
				(void)!buf_printf(&b, "%s%s=%s", b.len ? "," : "", nk,
				                  json_string_value(nv));
			}
			_cleanup_free_ char *raw = buf_steal(&b);
			_cleanup_free_ char *n = pve_net_normalize(raw, NULL);
			json_object_set_new(ct->conf, k, json_string(n));
		}
	}
	if (pstr(&c, "hostname"))
		json_object_set_new(ct->conf, "hostname", json_string(pstr(&c, "hostname")));
	if (pstr(&c, "description"))
		json_object_set_new(ct->conf, "description", json_string(pstr(&c, "description")));
	if (pstr(&c, "pool"))
		json_object_set_new(ct->conf, "pool", json_string(pstr(&c, "pool")));
	ct->lock = strdup("create");
	free(src->lock);
	src->lock = strdup("disk");
	world_ct_add(ct);
	Task *t = world_task_new(TASK_CLONE, c.node, "vzclone", src->vmid, newid);
	t->src_vmid = src->vmid;
	stats_effect("pve.clone");
	stats_created("containers_per_uid", ct->uid);
	char line[256];
	snprintf(line, sizeof(line), "create full clone of mountpoint rootfs (%s)",
	         srcvol ? srcvol : "");
	task_reply(resp, t, line);
out:
	ctx_done(&c);
}

static void h_ct_index(SimRequest *req, SimResponse *resp)
{
	PveCtx c;
	if (!begin(req, resp, &c, true))
		return;
	json_t *a = json_array();
	const char *subs[] = {"config", "status", "clone", "resize", "interfaces", "rrd"};
	for (size_t i = 0; i < ELEMENTSOF(subs); i++)
		json_array_append_new(a, json_pack("{s:s}", "subdir", subs[i]));
	pve_ok(resp, a);
	ctx_done(&c);
}

static void h_config_get(SimRequest *req, SimResponse *resp)
{
	PveCtx c;
	if (!begin(req, resp, &c, true))
		return;
	pve_ok(resp, pve_config_json(c.ct));
	ctx_done(&c);
}

static bool digest_ok(SimResponse *resp, PveCtx *c)
{
	const char *want = pstr(c, "digest");
	if (!want)
		return true;
	_cleanup_free_ char *cur = pve_config_digest(c->ct);
	if (strcmp(want, cur) == 0)
		return true;
	pve_err(resp, 500,
	        "detected modified configuration - file changed by other user? Try "
	        "again.");
	return false;
}

static void h_config_put(SimRequest *req, SimResponse *resp)
{
	PveCtx c;
	_cleanup_json_ json_t *saved = NULL;
	if (!begin(req, resp, &c, true))
		return;
	Container *ct = c.ct;
	if (locked(resp, ct) || !digest_ok(resp, &c))
		goto out;
	if (ct->running && json_object_get(c.p, "unprivileged")) {
		pve_err(resp, 500, "unable to modify read-only option: 'unprivileged'");
		goto out;
	}
	/* all or nothing: work on a copy */
	saved = json_deep_copy(ct->conf);
	const char *del = pstr(&c, "delete");
	if (del) {
		_cleanup_free_ char *d = strdup(del);
		for (char *save = NULL, *t = strtok_r(d, ",; ", &save); t;
		     t = strtok_r(NULL, ",; ", &save))
			json_object_del(ct->conf, t);
	}
	const char *k;
	json_t *v;
	json_object_foreach(c.p, k, v)
	{
		if (!strcmp(k, "node") || !strcmp(k, "vmid") || !strcmp(k, "digest") ||
		    !strcmp(k, "delete") || !strcmp(k, "revert"))
			continue;
		if (strcmp(k, "lock") == 0) {
			free(ct->lock);
			ct->lock = strdup(json_string_value(v));
			continue;
		}
		if (!apply_key(resp, ct, k, v)) {
			json_decref(ct->conf);
			ct->conf = json_incref(saved);
			goto out;
		}
	}
	world_ct_update(ct);
	stats_recount();
	stats_effect("pve.config");
	pve_ok(resp, NULL);
out:
	ctx_done(&c);
}

static void h_resize(SimRequest *req, SimResponse *resp)
{
	PveCtx c;
	if (!begin(req, resp, &c, true))
		return;
	Container *ct = c.ct;
	if (locked(resp, ct) || !digest_ok(resp, &c))
		goto out;
	const char *disk = pstr(&c, "disk");
	if (strcmp(disk, "rootfs") != 0 && !json_object_get(ct->conf, disk)) {
		pve_err(resp, 500, "unable to parse mount point '%s'", disk);
		goto out;
	}
	const char *size = pstr(&c, "size");
	bool inc = size[0] == '+';
	int64_t n = pve_parse_size(size + inc);
	int64_t cur = pve_rootfs_size(ct);
	int64_t want = inc ? cur + n : n;
	if (want < cur) {
		pve_err(resp, 500, "unable to shrink disk size");
		goto out;
	}
	if (want == cur) {
		pve_err(resp, 500, "disk is already at specified size");
		goto out;
	}
	Task *t = world_task_new(TASK_RESIZE, c.node, "resize", c.vmid, c.vmid);
	t->new_size = want;
	stats_effect("pve.resize");
	task_reply(resp, t, NULL);
out:
	ctx_done(&c);
}

static void h_interfaces(SimRequest *req, SimResponse *resp)
{
	PveCtx c;
	if (!begin(req, resp, &c, true))
		return;
	json_t *a = json_array();
	if (c.ct->running) {
		json_array_append_new(a, json_pack("{s:s, s:s, s:s}", "name", "lo", "hwaddr",
		                                   "00:00:00:00:00:00", "inet", "127.0.0.1/8"));
		const char *net0 = json_string_value(json_object_get(c.ct->conf, "net0"));
		_cleanup_json_ json_t *np = pve_propstr_parse(net0 ? net0 : "", NULL);
		json_t *o = json_pack("{s:s, s:s}", "name", "eth0", "hwaddr",
		                      json_string_value(json_object_get(np, "hwaddr")) ?: "");
		if (json_object_get(np, "ip"))
			json_object_set(o, "inet", json_object_get(np, "ip"));
		json_array_append_new(a, o);
	}
	pve_ok(resp, a);
	ctx_done(&c);
}

static void h_status_current(SimRequest *req, SimResponse *resp)
{
	PveCtx c;
	if (!begin(req, resp, &c, true))
		return;
	Container *ct = c.ct;
	int64_t mem = json_integer_value(json_object_get(ct->conf, "memory")) * 1048576LL;
	int64_t swap = json_integer_value(json_object_get(ct->conf, "swap")) * 1048576LL;
	json_t *o = json_pack(
	    "{s:i, s:s, s:s, s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:f, s:i, s:I, s:{s:i}}", "vmid",
	    ct->vmid, "name", json_string_value(json_object_get(ct->conf, "hostname")) ?: "",
	    "status", ct->running ? "running" : "stopped", "type", "lxc", "maxmem", (json_int_t)mem,
	    "mem", (json_int_t)(ct->running ? mem / 4 : 0), "maxswap", (json_int_t)swap, "swap",
	    (json_int_t)0, "maxdisk", (json_int_t)pve_rootfs_size(ct), "disk",
	    (json_int_t)(ct->running ? pve_rootfs_size(ct) / 8 : 0), "cpu",
	    ct->running ? 0.01 : 0.0, "cpus",
	    (int)(json_integer_value(json_object_get(ct->conf, "cores")) ?: sim_opt.node_cpus),
	    "uptime", (json_int_t)(ct->running ? (sim_now_ms() - ct->started_ms) / 1000 : 0), "ha",
	    "managed", 0);
	if (ct->running)
		json_object_set_new(o, "pid", json_integer(100000 + ct->vmid));
	if (ct->lock)
		json_object_set_new(o, "lock", json_string(ct->lock));
	if (ct->is_template)
		json_object_set_new(o, "template", json_integer(1));
	const char *tags = json_string_value(json_object_get(ct->conf, "tags"));
	if (tags)
		json_object_set_new(o, "tags", json_string(tags));
	pve_ok(resp, o);
	ctx_done(&c);
}

static void h_power(SimRequest *req, SimResponse *resp)
{
	PveCtx c;
	if (!begin(req, resp, &c, true))
		return;
	Container *ct = c.ct;
	const char *op = req->segs[req->nseg - 1];
	if (!pbool(&c, "skiplock") && locked(resp, ct))
		goto out;
	Task *t;
	if (strcmp(op, "start") == 0) {
		if (ct->running) {
			pve_err(resp, 500, "CT %d already running", ct->vmid);
			goto out;
		}
		if (ct->is_template) {
			pve_err(resp, 500, "CT %d is a template", ct->vmid);
			goto out;
		}
		t = world_task_new(TASK_START, c.node, "vzstart", c.vmid, c.vmid);
		stats_effect("pve.start");
	} else if (strcmp(op, "reboot") == 0) {
		if (!ct->running) {
			pve_err(resp, 500, "VM %d not running", ct->vmid);
			goto out;
		}
		t = world_task_new(TASK_REBOOT, c.node, "vzreboot", c.vmid, c.vmid);
		stats_effect("pve.reboot");
	} else {
		bool stop = strcmp(op, "stop") == 0;
		if (!ct->running) {
			pve_err(resp, 500, "CT %d not running", ct->vmid);
			goto out;
		}
		t = world_task_new(stop ? TASK_STOP : TASK_SHUTDOWN, c.node,
		                   stop ? "vzstop" : "vzshutdown", c.vmid, c.vmid);
		stats_effect(stop ? "pve.stop" : "pve.shutdown");
	}
	task_reply(resp, t, NULL);
out:
	ctx_done(&c);
}

static void h_destroy(SimRequest *req, SimResponse *resp)
{
	PveCtx c;
	if (!begin(req, resp, &c, true))
		return;
	Container *ct = c.ct;
	if (locked(resp, ct))
		goto out;
	if (ct->running && !pbool(&c, "force")) {
		pve_err(resp, 500, "unable to destroy CT %d - container is running", ct->vmid);
		goto out;
	}
	if (json_integer_value(json_object_get(ct->conf, "protection"))) {
		pve_err(resp, 500, "can't remove CT %d - protection mode enabled", ct->vmid);
		goto out;
	}
	ct->running = false;
	ct->lock = strdup("destroyed");
	Task *t = world_task_new(TASK_DESTROY, c.node, "vzdestroy", c.vmid, c.vmid);
	stats_effect("pve.destroy");
	task_reply(resp, t, NULL);
out:
	ctx_done(&c);
}

/* ---- handlers: tasks ------------------------------------------------------------------- */

static json_t *task_json(const Task *t)
{
	char user[128];
	snprintf(user, sizeof(user), "%s", sim_secrets.pve_token_id);
	char *bang = strchr(user, '!');
	const char *tokenid = bang ? bang + 1 : NULL;
	if (bang)
		*bang = 0;
	json_t *o = json_pack("{s:s, s:s, s:i, s:i, s:I, s:s, s:s, s:s, s:s}", "upid", t->upid,
	                      "node", t->node, "pid", (int)t->pid, "pstart", (int)t->pstart,
	                      "starttime", (json_int_t)t->starttime, "type", t->type, "id", t->id,
	                      "user", user, "status", t->done ? "stopped" : "running");
	if (tokenid)
		json_object_set_new(o, "tokenid", json_string(tokenid));
	if (t->done)
		json_object_set_new(o, "exitstatus", json_string(t->exitstatus));
	return o;
}

static Task *task_lookup(SimResponse *resp, PveCtx *c)
{
	const char *upid = pstr(c, "upid");
	if (strncmp(upid, "UPID:", 5) != 0 || upid[strlen(upid) - 1] != ':') {
		pve_err(resp, 400, "unable to parse worker upid '%s'", upid);
		return NULL;
	}
	Task *t = world_task_find(upid);
	if (!t || strcmp(t->node, c->node) != 0) {
		pve_err(resp, 400, "no such task '%s'", upid);
		return NULL;
	}
	return t;
}

static void h_task_status(SimRequest *req, SimResponse *resp)
{
	PveCtx c;
	if (!begin(req, resp, &c, false))
		return;
	Task *t = task_lookup(resp, &c);
	if (t)
		pve_ok(resp, task_json(t));
	ctx_done(&c);
}

static void h_task_index(SimRequest *req, SimResponse *resp)
{
	PveCtx c;
	if (!begin(req, resp, &c, false))
		return;
	Task *t = task_lookup(resp, &c);
	if (t)
		pve_ok(resp, json_pack("[{s:s}, {s:s}]", "name", "log", "name", "status"));
	ctx_done(&c);
}

static void h_task_log(SimRequest *req, SimResponse *resp)
{
	PveCtx c;
	if (!begin(req, resp, &c, false))
		return;
	Task *t = task_lookup(resp, &c);
	if (!t)
		goto out;
	int64_t start = json_integer_value(json_object_get(c.p, "start"));
	int64_t limit =
	    json_object_get(c.p, "limit") ? json_integer_value(json_object_get(c.p, "limit")) : 50;
	json_t *a = json_array();
	int64_t n = 0, total = 0;
	const char *p = t->log.data ? t->log.data : "";
	while (*p) {
		const char *nl = strchr(p, '\n');
		size_t len = nl ? (size_t)(nl - p) : strlen(p);
		if (total >= start && (limit <= 0 || n < limit)) {
			_cleanup_free_ char *line = strndup(p, len);
			json_array_append_new(
			    a, json_pack("{s:I, s:s}", "n", (json_int_t)(total + 1), "t", line));
			n++;
		}
		total++;
		p += len + (nl ? 1 : 0);
	}
	resp_json(resp, 200, json_pack("{s:o, s:I}", "data", a, "total", (json_int_t)total));
out:
	ctx_done(&c);
}

static void h_tasks(SimRequest *req, SimResponse *resp)
{
	PveCtx c;
	if (!begin(req, resp, &c, false))
		return;
	int64_t limit =
	    json_object_get(c.p, "limit") ? json_integer_value(json_object_get(c.p, "limit")) : 50;
	json_t *vm = json_object_get(c.p, "vmid");
	const char *source = pstr(&c, "source");
	json_t *a = json_array();
	for (size_t i = world.n_tasks; i-- > 0 && (int64_t)json_array_size(a) < limit;) {
		Task *t = world.tasks[i];
		if (strcmp(t->node, c.node) != 0)
			continue;
		if (vm && strtoll(t->id, NULL, 10) != json_integer_value(vm))
			continue;
		if (source && strcmp(source, "active") == 0 && t->done)
			continue;
		if ((!source || strcmp(source, "archive") == 0) && !t->done)
			continue;
		json_t *o = task_json(t);
		if (t->done) {
			json_object_set_new(o, "status", json_string(t->exitstatus));
			json_object_set_new(o, "endtime",
			                    json_integer(t->starttime + sim_opt.task_ms / 1000));
		}
		json_array_append_new(a, o);
	}
	pve_ok(resp, a);
	ctx_done(&c);
}

static void h_not_impl(SimRequest *req, SimResponse *resp)
{
	if (!auth_ok(req)) {
		resp_json(resp, 401, json_pack("{s:n}", "data"));
		return;
	}
	pve_err(resp, 501, "Method '%s %s' not implemented", req->method, req->path);
}

/* ---- router ------------------------------------------------------------------------- */

static bool set(SimRequest *req, const char *tmpl, SimHandler h)
{
	req->route = tmpl;
	req->handler = h;
	return true;
}

static bool is(const SimRequest *req, int i, const char *s)
{
	return i < req->nseg && strcmp(req->segs[i], s) == 0;
}

bool pve_route(SimRequest *req)
{
	const char *m = req->method;
	bool get = !strcmp(m, "GET"), post = !strcmp(m, "POST"), put = !strcmp(m, "PUT"),
	     del = !strcmp(m, "DELETE");
	int n = req->nseg;
	req->route = "?";
	req->handler = h_not_impl;
	if (n < 3 || !is(req, 0, "api2") || !is(req, 1, "json"))
		return false;
	if (n == 3 && get && is(req, 2, "version"))
		return set(req, API "/version", h_version);
	if (n == 3 && get && is(req, 2, "nodes"))
		return set(req, API "/nodes", h_nodes);
	if (n == 4 && get && is(req, 2, "cluster") && is(req, 3, "resources"))
		return set(req, API "/cluster/resources", h_resources);
	if (n == 4 && get && is(req, 2, "cluster") && is(req, 3, "nextid"))
		return set(req, API "/cluster/nextid", h_nextid);
	if (n < 5 || !is(req, 2, "nodes"))
		return false;
	if (is(req, 4, "lxc")) {
		if (n == 5 && get)
			return set(req, API "/nodes/{node}/lxc", h_lxc_list);
		if (n == 5 && post)
			return set(req, API "/nodes/{node}/lxc", h_create);
		if (n == 6 && get)
			return set(req, API "/nodes/{node}/lxc/{vmid}", h_ct_index);
		if (n == 6 && del)
			return set(req, API "/nodes/{node}/lxc/{vmid}", h_destroy);
		if (n == 7 && post && is(req, 6, "clone"))
			return set(req, API "/nodes/{node}/lxc/{vmid}/clone", h_clone);
		if (n == 7 && get && is(req, 6, "config"))
			return set(req, API "/nodes/{node}/lxc/{vmid}/config", h_config_get);
		if (n == 7 && put && is(req, 6, "config"))
			return set(req, API "/nodes/{node}/lxc/{vmid}/config", h_config_put);
		if (n == 7 && put && is(req, 6, "resize"))
			return set(req, API "/nodes/{node}/lxc/{vmid}/resize", h_resize);
		if (n == 7 && get && is(req, 6, "interfaces"))
			return set(req, API "/nodes/{node}/lxc/{vmid}/interfaces", h_interfaces);
		if (n == 8 && get && is(req, 6, "status") && is(req, 7, "current"))
			return set(req, API "/nodes/{node}/lxc/{vmid}/status/current",
			           h_status_current);
		if (n == 8 && post && is(req, 6, "status")) {
			if (is(req, 7, "start"))
				return set(req, API "/nodes/{node}/lxc/{vmid}/status/start",
				           h_power);
			if (is(req, 7, "stop"))
				return set(req, API "/nodes/{node}/lxc/{vmid}/status/stop",
				           h_power);
			if (is(req, 7, "shutdown"))
				return set(req, API "/nodes/{node}/lxc/{vmid}/status/shutdown",
				           h_power);
			if (is(req, 7, "reboot"))
				return set(req, API "/nodes/{node}/lxc/{vmid}/status/reboot",
				           h_power);
		}
	} else if (is(req, 4, "tasks")) {
		if (n == 5 && get)
			return set(req, API "/nodes/{node}/tasks", h_tasks);
		if (n == 6 && get)
			return set(req, API "/nodes/{node}/tasks/{upid}", h_task_index);
		if (n == 7 && get && is(req, 6, "status"))
			return set(req, API "/nodes/{node}/tasks/{upid}/status", h_task_status);
		if (n == 7 && get && is(req, 6, "log"))
			return set(req, API "/nodes/{node}/tasks/{upid}/log", h_task_log);
	}
	return false;
}
