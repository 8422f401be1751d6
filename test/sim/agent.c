/* agent.c - the zlh-agent inside every container (DESIGN.md section 6).
 *
 * One listener serves every agent: the container is the one whose net0 IP
 * is the local address the connection arrived on (server.c reads it with
 * getsockname). An agent answers only while its container runs; otherwise
 * the connection is reset without a reply, as close as one shared socket
 * can come to an unreachable host.
 *
 * States: idle -> (POST /config) installing -> starting -> running, with
 * the ready delay --agent-ready-ms split evenly between installing and
 * starting. Backups live outside the container, keyed by the server's uid
 * (from its zlh-<uid> tag or description), so they outlive it; the agent
 * does not dedupe backup names. */
#include "sim.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

static void agent_err(SimResponse *resp, int status, const char *msg)
{
	resp_json(resp, status, json_pack("{s:s}", "error", msg));
}

void agent_fault_response(SimResponse *resp)
{
	agent_err(resp, 500, "zlh-sim: injected fault");
}

static int64_t half_ready(void)
{
	return sim_opt.agent_ready_ms / 2;
}

/* Latches what became true with time (provisioning, restores). */
static void settle(Container *ct)
{
	Agent *a = &ct->agent;
	int64_t now = sim_now_ms();
	if (a->payload && !a->complete && now >= a->complete_at_ms &&
	    a->mode != AGENT_NEVER_READY && a->mode != AGENT_CRASHED)
		a->complete = true;
	if (a->restore_id && a->restore_state == 0 && now >= a->restore_done_ms) {
		bool found = false;
		for (size_t i = 0; i < world.n_backups; i++)
			found |= strcmp(world.backups[i]->id, a->restore_id) == 0;
		a->restore_state = found ? 1 : 2;
	}
}

const char *agent_state_name(const Container *ct)
{
	const Agent *a = &ct->agent;
	int64_t now = sim_now_ms();
	if (a->mode == AGENT_CRASHED)
		return "crashed";
	if (!a->payload)
		return "idle";
	if (a->stopped)
		return "stopped";
	if (now < a->install_until_ms)
		return "installing";
	if (a->mode == AGENT_NEVER_READY || now < a->run_from_ms)
		return "starting";
	return "running";
}

static const char *install_step(const char *state)
{
	if (strcmp(state, "installing") == 0)
		return "download_artifacts";
	if (strcmp(state, "starting") == 0)
		return "start_server";
	if (strcmp(state, "running") == 0 || strcmp(state, "stopped") == 0)
		return "done";
	return "";
}

static json_t *restore_json(const Agent *a)
{
	if (!a->restore_id)
		return NULL;
	static const char *const st[] = {"running", "done", "failed"};
	return json_pack("{s:s, s:s}", "id", a->restore_id, "state", st[a->restore_state]);
}

static json_t *status_json(Container *ct)
{
	settle(ct);
	const char *state = agent_state_name(ct);
	json_t *o = json_pack(
	    "{s:s, s:s, s:s, s:i, s:b}", "state", state, "installStep", install_step(state),
	    "error", strcmp(state, "crashed") == 0 ? "server process exited" : "", "crashCount",
	    ct->agent.crash_count, "provisioningComplete", ct->agent.complete);
	json_t *r = restore_json(&ct->agent);
	if (r)
		json_object_set_new(o, "restore", r);
	return o;
}

json_t *agent_state_json(const Container *ct)
{
	const Agent *a = &ct->agent;
	json_t *o =
	    json_pack("{s:s, s:s, s:b, s:i, s:i, s:b}", "mode", agent_mode_name(a->mode), "state",
	              agent_state_name(ct), "provisioningComplete", a->complete, "configs",
	              a->configs, "crashCount", a->crash_count, "codeserver", a->codeserver);
	json_object_set_new(o, "payload", a->payload ? json_deep_copy(a->payload) : json_null());
	json_object_set_new(o, "payload_hash",
	                    a->payload_hash ? json_string(a->payload_hash) : json_null());
	json_t *r = restore_json(a);
	json_object_set_new(o, "restore", r ? r : json_null());
	return o;
}

void agent_on_ct_start(Container *ct)
{
	Agent *a = &ct->agent;
	if (!a->payload)
		return;
	a->stopped = false;
	int64_t now = sim_now_ms();
	if (a->run_from_ms < now + half_ready())
		a->run_from_ms = now + half_ready();
	if (a->install_until_ms > a->run_from_ms)
		a->run_from_ms = a->install_until_ms + half_ready();
}

static void owner_key(const Container *ct, char *out, size_t n)
{
	if (ct->uid[0])
		snprintf(out, n, "%s", ct->uid);
	else
		snprintf(out, n, "vmid:%d", ct->vmid);
}

/* ---- prologue --------------------------------------------------------------- */

/* The container this connection reached, or NULL after answering. */
static Container *enter(SimRequest *req, SimResponse *resp, bool need_auth)
{
	Container *ct = world_ct_by_ip(req->local_ip);
	if (!ct) {
		resp->drop = true;
		resp->note = "unreachable";
		return NULL;
	}
	if (ct->agent.mode == AGENT_DOWN) {
		resp->drop = true;
		resp->note = "agent_down";
		return NULL;
	}
	if (ct->agent.mode == AGENT_HANG) {
		resp->drop = true;
		resp->hang_ms = 3600 * 1000;
		resp->note = "agent_hang";
		return NULL;
	}
	if (need_auth && sim_opt.agent_auth) {
		const char *a = req->authorization;
		if (!a || strncmp(a, "Bearer ", 7) != 0 ||
		    strcmp(a + 7, sim_secrets.agent_token) != 0) {
			agent_err(resp, 401, "unauthorized");
			return NULL;
		}
	}
	settle(ct);
	return ct;
}

static void accepted(SimResponse *resp)
{
	resp_json(resp, 202, json_pack("{s:s}", "status", "accepted"));
}

/* ---- handlers ---------------------------------------------------------------- */

static void h_health(SimRequest *req, SimResponse *resp)
{
	if (enter(req, resp, false))
		resp_json(resp, 200, json_pack("{s:s}", "status", "ok"));
}

static void h_ready(SimRequest *req, SimResponse *resp)
{
	Container *ct = enter(req, resp, true);
	if (!ct)
		return;
	const char *state = agent_state_name(ct);
	if (strcmp(state, "running") == 0) {
		const char *type =
		    json_string_value(json_object_get(ct->agent.payload, "container_type"));
		resp_json(
		    resp, 200,
		    json_pack("{s:b, s:s}", "ready", 1, "source",
		              type && strcmp(type, "dev") == 0 ? "process" : "minecraft_ping"));
		return;
	}
	char reason[96];
	snprintf(reason, sizeof(reason), "server not ready (state %s)", state);
	resp_json(resp, 503, json_pack("{s:b, s:s}", "ready", 0, "reason", reason));
}

static void h_status(SimRequest *req, SimResponse *resp)
{
	Container *ct = enter(req, resp, true);
	if (ct)
		resp_json(resp, 200, status_json(ct));
}

static void h_config(SimRequest *req, SimResponse *resp)
{
	Container *ct = enter(req, resp, true);
	if (!ct)
		return;
	_cleanup_json_ json_t *body = req_body_json(req);
	if (!body) {
		agent_err(resp, 400, "body must be a JSON object");
		return;
	}
	const char *type = json_string_value(json_object_get(body, "container_type"));
	if (!type || (strcmp(type, "game") != 0 && strcmp(type, "dev") != 0)) {
		agent_err(resp, 400, "container_type must be \"game\" or \"dev\"");
		return;
	}
	Agent *a = &ct->agent;
	int64_t now = sim_now_ms();
	json_decref(a->payload);
	a->payload = json_incref(body);
	_cleanup_free_ char *canon = json_dumps(body, JSON_COMPACT | JSON_SORT_KEYS);
	char hex[65] = "";
	if (canon && sha256_hex(canon, strlen(canon), hex) < 0)
		hex[0] = 0;
	free(a->payload_hash);
	a->payload_hash = strdup(hex);
	a->install_until_ms = now + half_ready();
	a->run_from_ms = now + sim_opt.agent_ready_ms;
	a->complete_at_ms = a->run_from_ms;
	a->complete = false;
	a->stopped = false;
	a->configs++;
	stats_effect("agent.config");
	accepted(resp);
}

static void h_power(SimRequest *req, SimResponse *resp)
{
	Container *ct = enter(req, resp, true);
	if (!ct)
		return;
	Agent *a = &ct->agent;
	if (!a->payload) {
		agent_err(resp, 409, "not provisioned");
		return;
	}
	const char *op = req->segs[0];
	int64_t now = sim_now_ms();
	if (strcmp(op, "stop") == 0) {
		a->stopped = true;
		stats_effect("agent.stop");
	} else {
		bool restart = strcmp(op, "restart") == 0;
		if (restart || a->stopped) {
			a->stopped = false;
			if (a->run_from_ms < now + half_ready())
				a->run_from_ms = now + half_ready();
		}
		stats_effect(restart ? "agent.restart" : "agent.start");
	}
	accepted(resp);
}

static json_t *backup_json(const Backup *b)
{
	char ts[40];
	time_format_rfc3339(b->created_wall_ms, ts, sizeof(ts));
	const char *state = b->failed ? "failed" : sim_now_ms() < b->done_ms ? "running" : "ok";
	return json_pack("{s:s, s:s, s:s, s:I, s:s}", "id", b->id, "name", b->name, "createdAt", ts,
	                 "bytes", (json_int_t)b->bytes, "state", state);
}

static void h_backups_list(SimRequest *req, SimResponse *resp)
{
	Container *ct = enter(req, resp, true);
	if (!ct)
		return;
	char owner[80];
	owner_key(ct, owner, sizeof(owner));
	json_t *a = json_array();
	for (size_t i = 0; i < world.n_backups; i++)
		if (strcmp(world.backups[i]->owner, owner) == 0)
			json_array_append_new(a, backup_json(world.backups[i]));
	resp_json(resp, 200, json_pack("{s:o}", "backups", a));
}

static void h_backup_create(SimRequest *req, SimResponse *resp)
{
	Container *ct = enter(req, resp, true);
	if (!ct)
		return;
	_cleanup_json_ json_t *body = req_body_json(req);
	const char *name = json_string_value(json_object_get(body, "name"));
	if (!name || !*name || strlen(name) >= sizeof(((Backup *)0)->name)) {
		agent_err(resp, 400, "name is required (1..127 characters)");
		return;
	}
	Backup *b = calloc(1, sizeof(*b));
	if (!b)
		abort();
	char hex[17];
	sim_rand_hex(hex, 16);
	snprintf(b->id, sizeof(b->id), "bk-%s", hex);
	owner_key(ct, b->owner, sizeof(b->owner));
	snprintf(b->name, sizeof(b->name), "%s", name);
	b->created_wall_ms = sim_wall_ms();
	b->done_ms = sim_now_ms() + sim_opt.backup_ms;
	b->bytes = 100 * 1048576LL + (int64_t)(sim_rand() % (1024 * 1048576ULL));
	if (world.n_backups == world.cap_backups) {
		world.cap_backups = world.cap_backups ? world.cap_backups * 2 : 64;
		world.backups = realloc(world.backups, world.cap_backups * sizeof(*world.backups));
		if (!world.backups)
			abort();
	}
	world.backups[world.n_backups++] = b;
	char key[256];
	snprintf(key, sizeof(key), "%s/%s", b->owner, b->name);
	stats_created("backups_per_container_name", key);
	stats_effect("agent.backup_create");
	stats_recount();
	resp_json(resp, 202, json_pack("{s:s}", "id", b->id));
}

static Backup *find_backup(const Container *ct, const char *id, size_t *ret_idx)
{
	char owner[80];
	owner_key(ct, owner, sizeof(owner));
	for (size_t i = 0; id && i < world.n_backups; i++)
		if (strcmp(world.backups[i]->id, id) == 0 &&
		    strcmp(world.backups[i]->owner, owner) == 0) {
			if (ret_idx)
				*ret_idx = i;
			return world.backups[i];
		}
	return NULL;
}

static void h_backup_delete(SimRequest *req, SimResponse *resp)
{
	Container *ct = enter(req, resp, true);
	if (!ct)
		return;
	size_t idx;
	Backup *b = find_backup(ct, req->segs[1], &idx);
	if (!b) {
		agent_err(resp, 404, "backup not found");
		return;
	}
	free(b);
	memmove(world.backups + idx, world.backups + idx + 1,
	        (world.n_backups - idx - 1) * sizeof(*world.backups));
	world.n_backups--;
	stats_effect("agent.backup_delete");
	stats_recount();
	resp_json(resp, 200, json_pack("{s:s}", "status", "deleted"));
}

static void h_restore(SimRequest *req, SimResponse *resp)
{
	Container *ct = enter(req, resp, true);
	if (!ct)
		return;
	const char *id = req_query(req, "id");
	_cleanup_json_ json_t *body = req_body_json(req);
	if (!id)
		id = json_string_value(json_object_get(body, "id"));
	if (!id) {
		agent_err(resp, 400, "id is required");
		return;
	}
	Backup *b = find_backup(ct, id, NULL);
	if (!b) {
		agent_err(resp, 404, "backup not found");
		return;
	}
	if (b->failed || sim_now_ms() < b->done_ms) {
		agent_err(resp, 409, "backup is not complete");
		return;
	}
	Agent *a = &ct->agent;
	if (a->restore_id && a->restore_state == 0) {
		agent_err(resp, 409, "a restore is already running");
		return;
	}
	free(a->restore_id);
	a->restore_id = strdup(id);
	a->restore_state = 0;
	a->restore_done_ms = sim_now_ms() + sim_opt.backup_ms;
	if (a->payload && a->run_from_ms < a->restore_done_ms + half_ready())
		a->run_from_ms = a->restore_done_ms + half_ready();
	stats_effect("agent.restore");
	accepted(resp);
}

static void h_codeserver(SimRequest *req, SimResponse *resp)
{
	Container *ct = enter(req, resp, true);
	if (!ct)
		return;
	const char *type = json_string_value(json_object_get(ct->agent.payload, "container_type"));
	if (!type || strcmp(type, "dev") != 0) {
		agent_err(resp, 409, "code-server is only available on dev containers");
		return;
	}
	const char *op = req->segs[2];
	ct->agent.codeserver = strcmp(op, "stop") != 0;
	stats_effect(strcmp(op, "start") == 0  ? "agent.codeserver_start"
	             : strcmp(op, "stop") == 0 ? "agent.codeserver_stop"
	                                       : "agent.codeserver_restart");
	accepted(resp);
}

static void h_not_found(SimRequest *req, SimResponse *resp)
{
	if (enter(req, resp, false))
		agent_err(resp, 404, "not found");
}

/* ---- router ------------------------------------------------------------------- */

static bool set(SimRequest *req, const char *tmpl, SimHandler h)
{
	req->route = tmpl;
	req->handler = h;
	return true;
}

bool agent_route(SimRequest *req)
{
	const char *m = req->method;
	bool get = !strcmp(m, "GET"), post = !strcmp(m, "POST"), del = !strcmp(m, "DELETE");
	int n = req->nseg;
	const char *s0 = n > 0 ? req->segs[0] : "";
	req->route = "?";
	req->handler = h_not_found;
	if (n == 1 && get && !strcmp(s0, "health"))
		return set(req, "/health", h_health);
	if (n == 1 && get && !strcmp(s0, "ready"))
		return set(req, "/ready", h_ready);
	if (n == 1 && get && !strcmp(s0, "status"))
		return set(req, "/status", h_status);
	if (n == 1 && post && !strcmp(s0, "config"))
		return set(req, "/config", h_config);
	if (n == 1 && post && !strcmp(s0, "start"))
		return set(req, "/start", h_power);
	if (n == 1 && post && !strcmp(s0, "stop"))
		return set(req, "/stop", h_power);
	if (n == 1 && post && !strcmp(s0, "restart"))
		return set(req, "/restart", h_power);
	if (n == 1 && get && !strcmp(s0, "backups"))
		return set(req, "/backups", h_backups_list);
	if (n == 1 && post && !strcmp(s0, "backups"))
		return set(req, "/backups", h_backup_create);
	if (n == 2 && post && !strcmp(s0, "backups") && !strcmp(req->segs[1], "restore"))
		return set(req, "/backups/restore", h_restore);
	if (n == 2 && del && !strcmp(s0, "backups"))
		return set(req, "/backups/{id}", h_backup_delete);
	if (n == 3 && post && !strcmp(s0, "dev") && !strcmp(req->segs[1], "codeserver")) {
		const char *op = req->segs[2];
		if (!strcmp(op, "start"))
			return set(req, "/dev/codeserver/start", h_codeserver);
		if (!strcmp(op, "stop"))
			return set(req, "/dev/codeserver/stop", h_codeserver);
		if (!strcmp(op, "restart"))
			return set(req, "/dev/codeserver/restart", h_codeserver);
	}
	return false;
}
