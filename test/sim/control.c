/* control.c - the /_sim control endpoint (its own port, never faulted):
 * accounting, the world dump, the request log, fault rules and the
 * out-of-band events tests need (a Velocity restart, a container deleted,
 * stopped or made by hand, an agent that misbehaves, a rate limit). */
#include "sim.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

char *control_config_text; /* the printed config (main.c) */

static void c_err(SimResponse *resp, int status, const char *msg)
{
	resp_json(resp, status, json_pack("{s:s}", "error", msg));
}

static void c_ok(SimResponse *resp, json_t *take_extra)
{
	json_t *o = take_extra ? take_extra : json_object();
	json_object_set_new(o, "ok", json_true());
	resp_json(resp, 200, o);
}

/* The JSON body, or an answer of 400 and NULL. */
static json_t *body(SimRequest *req, SimResponse *resp)
{
	if (!req->body_len)
		return json_object();
	json_t *b = req_body_json(req);
	if (!b)
		c_err(resp, 400, "body must be a JSON object");
	return b;
}

static Container *body_ct(json_t *b, SimResponse *resp)
{
	json_t *v = json_object_get(b, "vmid");
	if (!json_is_integer(v)) {
		c_err(resp, 400, "vmid (integer) is required");
		return NULL;
	}
	Container *ct = world_ct((int)json_integer_value(v));
	if (!ct)
		c_err(resp, 404, "no such container");
	return ct;
}

static void h_stats(SimRequest *req, SimResponse *resp)
{
	(void)req;
	resp_json(resp, 200, stats_json());
}

static void h_state(SimRequest *req, SimResponse *resp)
{
	(void)req;
	json_t *o = json_object();
	json_t *nodes = json_array();
	for (int i = 0; i < world.n_nodes; i++)
		json_array_append_new(nodes, json_pack("{s:s, s:I, s:I}", "node", world.nodes[i],
		                                       "mem", (json_int_t)world_node_mem(i),
		                                       "maxmem", (json_int_t)world_node_maxmem()));
	json_object_set_new(o, "nodes", nodes);
	json_t *cts = json_array();
	for (size_t i = 0; i < world.n_cts; i++)
		json_array_append_new(cts, pve_ct_state_json(world.cts[i]));
	json_object_set_new(o, "containers", cts);
	json_t *tasks = json_array();
	for (size_t i = 0; i < world.n_tasks; i++) {
		Task *t = world.tasks[i];
		json_array_append_new(
		    tasks,
		    json_pack("{s:s, s:s, s:i, s:s, s:o}", "upid", t->upid, "type", t->type, "vmid",
		              t->vmid, "status", t->done ? "stopped" : "running", "exitstatus",
		              t->exitstatus ? json_string(t->exitstatus) : json_null()));
	}
	json_object_set_new(o, "tasks", tasks);
	json_object_set_new(o, "velocity",
	                    json_pack("{s:o, s:b}", "servers", velocity_servers_json(), "down",
	                              velocity_is_down()));
	json_t *recs = json_array();
	for (size_t i = 0; i < world.n_records; i++)
		json_array_append_new(recs, cf_record_json(world.records[i]));
	json_object_set_new(o, "dns_records", recs);
	json_t *bks = json_array();
	for (size_t i = 0; i < world.n_backups; i++) {
		Backup *b = world.backups[i];
		json_array_append_new(bks, json_pack("{s:s, s:s, s:s, s:I, s:s}", "id", b->id,
		                                     "owner", b->owner, "name", b->name, "bytes",
		                                     (json_int_t)b->bytes, "state",
		                                     b->failed                   ? "failed"
		                                     : sim_now_ms() < b->done_ms ? "running"
		                                                                 : "ok"));
	}
	json_object_set_new(o, "backups", bks);
	json_object_set_new(o, "faults", faults_list());
	resp_json(resp, 200, o);
}

static void h_requests(SimRequest *req, SimResponse *resp)
{
	int64_t since = 0, limit = 0;
	const char *s = req_query(req, "since"), *l = req_query(req, "limit");
	const char *sys = req_query(req, "system");
	int sysi = sys ? sim_system_parse(sys) : -1;
	if ((s && parse_int64(s, &since) < 0) || (l && parse_int64(l, &limit) < 0) ||
	    (sys && sysi < 0)) {
		c_err(resp, 400, "since, limit: integers; system: pve|agent|velocity|cloudflare");
		return;
	}
	resp_json(resp, 200,
	          json_pack("{s:o}", "requests",
	                    stats_requests_json((uint64_t)since, (size_t)limit, sysi)));
}

static void h_faults_get(SimRequest *req, SimResponse *resp)
{
	(void)req;
	resp_json(resp, 200, json_pack("{s:o}", "faults", faults_list()));
}

static void h_faults_add(SimRequest *req, SimResponse *resp)
{
	json_t *b = req_body_json(req);
	if (!b && req->body_len)
		b = json_loadb(req->body, req->body_len, 0, NULL); /* an array of rules */
	if (!b) {
		c_err(resp, 400, "body must be a rule object or an array of rules");
		return;
	}
	json_t *ids = json_array();
	const char *err = NULL;
	if (json_is_array(b)) {
		size_t i;
		json_t *r;
		json_array_foreach(b, i, r)
		{
			int id = faults_add(r, &err);
			if (id < 0)
				break;
			json_array_append_new(ids, json_integer(id));
		}
	} else {
		int id = faults_add(b, &err);
		if (id > 0)
			json_array_append_new(ids, json_integer(id));
	}
	json_decref(b);
	if (err) {
		json_decref(ids);
		c_err(resp, 400, err);
		return;
	}
	c_ok(resp, json_pack("{s:o}", "ids", ids));
}

static void h_faults_clear(SimRequest *req, SimResponse *resp)
{
	(void)req;
	faults_clear();
	c_ok(resp, NULL);
}

static void h_velocity_restart(SimRequest *req, SimResponse *resp)
{
	_cleanup_json_ json_t *b = body(req, resp);
	if (!b)
		return;
	velocity_restart(json_integer_value(json_object_get(b, "down_ms")));
	c_ok(resp, NULL);
}

static void h_pve_delete(SimRequest *req, SimResponse *resp)
{
	_cleanup_json_ json_t *b = body(req, resp);
	Container *ct = b ? body_ct(b, resp) : NULL;
	if (!ct)
		return;
	world_ct_remove(ct->vmid);
	stats_effect("sim.pve.delete");
	c_ok(resp, NULL);
}

static void h_pve_stop(SimRequest *req, SimResponse *resp)
{
	_cleanup_json_ json_t *b = body(req, resp);
	Container *ct = b ? body_ct(b, resp) : NULL;
	if (!ct)
		return;
	ct->running = false;
	stats_effect("sim.pve.stop");
	c_ok(resp, NULL);
}

static void h_pve_start(SimRequest *req, SimResponse *resp)
{
	_cleanup_json_ json_t *b = body(req, resp);
	Container *ct = b ? body_ct(b, resp) : NULL;
	if (!ct)
		return;
	if (!ct->running) {
		ct->running = true;
		ct->started_ms = sim_now_ms();
		agent_on_ct_start(ct);
	}
	stats_effect("sim.pve.start");
	c_ok(resp, NULL);
}

static void h_pve_lock(SimRequest *req, SimResponse *resp)
{
	_cleanup_json_ json_t *b = body(req, resp);
	Container *ct = b ? body_ct(b, resp) : NULL;
	if (!ct)
		return;
	const char *lock = json_string_value(json_object_get(b, "lock"));
	free(ct->lock);
	ct->lock = lock && *lock ? strdup(lock) : NULL;
	stats_effect("sim.pve.lock");
	c_ok(resp, NULL);
}

static void h_pve_foreign(SimRequest *req, SimResponse *resp)
{
	_cleanup_json_ json_t *b = body(req, resp);
	if (!b)
		return;
	json_t *v = json_object_get(b, "vmid");
	if (!json_is_integer(v) || json_integer_value(v) < 100 ||
	    json_integer_value(v) > 999999999) {
		c_err(resp, 400, "vmid (integer >= 100) is required");
		return;
	}
	int vmid = (int)json_integer_value(v);
	if (world_ct(vmid)) {
		c_err(resp, 409, "vmid in use");
		return;
	}
	const char *node = json_string_value(json_object_get(b, "node"));
	if (!node)
		node = world.nodes[0];
	if (world_node_index(node) < 0) {
		c_err(resp, 400, "unknown node");
		return;
	}
	char host[64];
	snprintf(host, sizeof(host), "foreign-%d", vmid);
	const char *hostname = json_string_value(json_object_get(b, "hostname"));
	Container *ct = pve_make_ct(vmid, node, hostname ? hostname : host, NULL);
	if (!ct)
		abort();
	const char *ip = json_string_value(json_object_get(b, "ip"));
	if (ip) {
		char net[160];
		snprintf(net, sizeof(net),
		         "name=eth0,bridge=vmbr0,hwaddr=BC:24:11:00:%02X:%02X,ip=%s/16,type=veth",
		         (vmid >> 8) & 255, vmid & 255, ip);
		json_object_set_new(ct->conf, "net0", json_string(net));
	}
	const char *desc = json_string_value(json_object_get(b, "description"));
	if (desc)
		json_object_set_new(ct->conf, "description", json_string(desc));
	const char *tags = json_string_value(json_object_get(b, "tags"));
	if (tags) {
		_cleanup_free_ char *t = pve_tags_normalize(tags);
		if (t && *t)
			json_object_set_new(ct->conf, "tags", json_string(t));
	}
	json_t *mem = json_object_get(b, "memory");
	if (json_is_integer(mem))
		json_object_set_new(ct->conf, "memory", json_integer(json_integer_value(mem)));
	json_t *run = json_object_get(b, "running");
	ct->running = !run || json_is_true(run);
	ct->started_ms = sim_now_ms();
	ct->created_ms = sim_now_ms() - sim_opt.unknown_ms;
	ct->foreign = true;
	world_ct_add(ct);
	stats_effect("sim.pve.create_foreign");
	c_ok(resp, json_pack("{s:i, s:s}", "vmid", vmid, "node", node));
}

static void h_agent(SimRequest *req, SimResponse *resp)
{
	_cleanup_json_ json_t *b = body(req, resp);
	if (!b)
		return;
	int mode = agent_mode_parse(json_string_value(json_object_get(b, "mode")));
	if (mode < 0) {
		c_err(resp, 400, "mode: normal|down|never_ready|crashed|hang");
		return;
	}
	Container *ct = NULL;
	const char *ip = json_string_value(json_object_get(b, "ip"));
	if (ip) {
		uint32_t a = ip_parse(ip);
		for (size_t i = 0; a && i < world.n_cts && !ct; i++)
			if (world.cts[i]->ip == a)
				ct = world.cts[i];
		if (!ct) {
			c_err(resp, 404, "no container with that ip");
			return;
		}
	} else if (!(ct = body_ct(b, resp))) {
		return;
	}
	if (mode == AGENT_CRASHED && ct->agent.mode != AGENT_CRASHED)
		ct->agent.crash_count++;
	if (mode == AGENT_NORMAL && ct->agent.mode == AGENT_CRASHED && ct->agent.payload)
		agent_on_ct_start(ct); /* the agent restarts the server */
	ct->agent.mode = (AgentMode)mode;
	stats_effect("sim.agent.mode");
	c_ok(resp, json_pack("{s:i}", "vmid", ct->vmid));
}

static void h_ratelimit(SimRequest *req, SimResponse *resp)
{
	_cleanup_json_ json_t *b = body(req, resp);
	if (!b)
		return;
	json_t *l = json_object_get(b, "limit");
	if (!json_is_integer(l) || json_integer_value(l) < 0) {
		c_err(resp, 400, "limit (integer >= 0; 0 = off) is required");
		return;
	}
	sim_opt.cf_rate_limit = json_integer_value(l);
	if (json_is_integer(json_object_get(b, "window_ms")))
		sim_opt.cf_rate_window_ms = json_integer_value(json_object_get(b, "window_ms"));
	sim_opt.cf_penalty_ms = json_is_integer(json_object_get(b, "penalty_ms"))
	                            ? json_integer_value(json_object_get(b, "penalty_ms"))
	                            : sim_opt.cf_rate_window_ms;
	cf_rate_reset();
	c_ok(resp, NULL);
}

static void h_health(SimRequest *req, SimResponse *resp)
{
	(void)req;
	c_ok(resp, NULL);
}

static void h_config(SimRequest *req, SimResponse *resp)
{
	(void)req;
	resp_text(resp, 200, control_config_text ? control_config_text : "");
	resp->content_type = "application/yaml";
}

static void h_not_found(SimRequest *req, SimResponse *resp)
{
	(void)req;
	c_err(resp, 404, "no such control route");
}

bool control_route(SimRequest *req)
{
	static const struct {
		const char *method;
		const char *path;
		SimHandler h;
	} routes[] = {
	    {"GET", "/_sim/stats", h_stats},
	    {"GET", "/_sim/state", h_state},
	    {"GET", "/_sim/requests", h_requests},
	    {"GET", "/_sim/faults", h_faults_get},
	    {"POST", "/_sim/faults", h_faults_add},
	    {"DELETE", "/_sim/faults", h_faults_clear},
	    {"POST", "/_sim/velocity/restart", h_velocity_restart},
	    {"POST", "/_sim/pve/delete", h_pve_delete},
	    {"POST", "/_sim/pve/stop", h_pve_stop},
	    {"POST", "/_sim/pve/start", h_pve_start},
	    {"POST", "/_sim/pve/lock", h_pve_lock},
	    {"POST", "/_sim/pve/create-foreign", h_pve_foreign},
	    {"POST", "/_sim/agent", h_agent},
	    {"POST", "/_sim/cloudflare/ratelimit", h_ratelimit},
	    {"GET", "/_sim/health", h_health},
	    {"GET", "/_sim/config", h_config},
	};
	for (size_t i = 0; i < ELEMENTSOF(routes); i++)
		if (!strcmp(req->method, routes[i].method) && !strcmp(req->path, routes[i].path)) {
			req->route = routes[i].path;
			req->handler = routes[i].h;
			return true;
		}
	req->route = "?";
	req->handler = h_not_found;
	return false;
}
