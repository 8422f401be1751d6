/* velocity.c - the ZpackVelocityBridge HTTP API of the Velocity proxy.
 *
 * Every call carries X-Zpack-Secret: <hex sha256 of the shared secret>.
 * Servers are keyed by name, case-insensitively: registering the same name
 * and address again is a no-op, the same name with another address is
 * refused (unregister first), unregistering an absent name is 404.
 * Registrations live in proxy memory only: /_sim/velocity/restart forgets
 * all of them except the static servers of velocity.toml (a "lobby"), and
 * can keep the proxy unreachable for a while. */
#include "sim.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static int64_t down_until_ms = -1;

static void v_err(SimResponse *resp, int status, const char *msg)
{
	resp_json(resp, status, json_pack("{s:s}", "error", msg));
}

void velocity_fault_response(SimResponse *resp)
{
	v_err(resp, 500, "zlh-sim: injected fault");
}

bool velocity_is_down(void)
{
	return down_until_ms >= 0 && sim_now_ms() < down_until_ms;
}

static void server_free(VelocityServer *s)
{
	free(s->name);
	free(s->address);
	free(s);
}

static void add_server(const char *name, const char *address, int port, bool is_static)
{
	VelocityServer *s = calloc(1, sizeof(*s));
	if (!s)
		abort();
	s->name = strdup(name);
	s->address = strdup(address);
	s->port = port;
	s->is_static = is_static;
	if (world.n_vservers == world.cap_vservers) {
		world.cap_vservers = world.cap_vservers ? world.cap_vservers * 2 : 32;
		world.vservers =
		    realloc(world.vservers, world.cap_vservers * sizeof(*world.vservers));
		if (!world.vservers)
			abort();
	}
	world.vservers[world.n_vservers++] = s;
}

void velocity_restart(int64_t down_ms)
{
	size_t j = 0;
	for (size_t i = 0; i < world.n_vservers; i++) {
		if (world.vservers[i]->is_static)
			world.vservers[j++] = world.vservers[i];
		else
			server_free(world.vservers[i]);
	}
	world.n_vservers = j;
	down_until_ms = down_ms > 0 ? sim_now_ms() + down_ms : -1;
	stats_effect("sim.velocity.restart");
	stats_recount();
}

void velocity_init_static(void)
{
	add_server("lobby", "127.0.0.1", 25566, true);
}

json_t *velocity_servers_json(void)
{
	json_t *a = json_array();
	for (size_t i = 0; i < world.n_vservers; i++) {
		VelocityServer *s = world.vservers[i];
		json_array_append_new(a, json_pack("{s:s, s:s, s:i}", "name", s->name, "address",
		                                   s->address, "port", s->port));
	}
	return a;
}

static ssize_t find(const char *name)
{
	for (size_t i = 0; i < world.n_vservers; i++)
		if (strcasecmp(world.vservers[i]->name, name) == 0)
			return (ssize_t)i;
	return -1;
}

/* Down, then the secret. false = answered (or dropped). */
static bool enter(SimRequest *req, SimResponse *resp)
{
	if (velocity_is_down()) {
		resp->drop = true;
		resp->note = "velocity_down";
		return false;
	}
	if (!req->zpack_secret || strcasecmp(req->zpack_secret, sim_secrets.velocity_secret_hash)) {
		v_err(resp, 401, "unauthorized");
		return false;
	}
	return true;
}

static void h_status(SimRequest *req, SimResponse *resp)
{
	if (enter(req, resp))
		resp_json(resp, 200, json_pack("{s:o}", "servers", velocity_servers_json()));
}

static void h_register(SimRequest *req, SimResponse *resp)
{
	if (!enter(req, resp))
		return;
	_cleanup_json_ json_t *b = req_body_json(req);
	const char *name = json_string_value(json_object_get(b, "server_name"));
	const char *address = json_string_value(json_object_get(b, "address"));
	json_t *pj = json_object_get(b, "port");
	long port = json_is_integer(pj)  ? (long)json_integer_value(pj)
	            : json_is_string(pj) ? strtol(json_string_value(pj), NULL, 10)
	                                 : 0;
	if (!name || !*name || !address || !*address || port < 1 || port > 65535) {
		v_err(resp, 400, "server_name, address and port (1..65535) are required");
		return;
	}
	ssize_t i = find(name);
	if (i >= 0) {
		VelocityServer *s = world.vservers[i];
		if (strcasecmp(s->address, address) == 0 && s->port == port) {
			stats_effect("velocity.register_noop");
			resp_json(resp, 200, json_pack("{s:s}", "status", "already registered"));
			return;
		}
		char msg[512];
		snprintf(msg, sizeof(msg),
		         "server '%s' is already registered with a different address (%s:%d)",
		         s->name, s->address, s->port);
		v_err(resp, 409, msg);
		return;
	}
	add_server(name, address, (int)port, false);
	_cleanup_free_ char *low = str_lower(name);
	char *dot = strchr(low, '.');
	if (dot)
		*dot = 0;
	stats_created("registrations_per_name", low);
	stats_effect("velocity.register");
	stats_recount();
	resp_json(resp, 200, json_pack("{s:s}", "status", "registered"));
}

static void h_unregister(SimRequest *req, SimResponse *resp)
{
	if (!enter(req, resp))
		return;
	_cleanup_json_ json_t *b = req_body_json(req);
	const char *name = json_string_value(json_object_get(b, "server_name"));
	if (!name || !*name) {
		v_err(resp, 400, "server_name is required");
		return;
	}
	ssize_t i = find(name);
	if (i < 0) {
		v_err(resp, 404, "server not found");
		return;
	}
	stats_effect(world.vservers[i]->is_static ? "velocity.unregister_static"
	                                          : "velocity.unregister");
	server_free(world.vservers[i]);
	memmove(world.vservers + i, world.vservers + i + 1,
	        (world.n_vservers - (size_t)i - 1) * sizeof(*world.vservers));
	world.n_vservers--;
	stats_recount();
	resp_json(resp, 200, json_pack("{s:s}", "status", "unregistered"));
}

static void h_not_found(SimRequest *req, SimResponse *resp)
{
	if (enter(req, resp))
		v_err(resp, 404, "not found");
}

bool velocity_route(SimRequest *req)
{
	bool get = !strcmp(req->method, "GET"), post = !strcmp(req->method, "POST");
	req->route = "?";
	req->handler = h_not_found;
	if (req->nseg != 2 || strcmp(req->segs[0], "zpack") != 0)
		return false;
	const char *op = req->segs[1];
	if (get && !strcmp(op, "status")) {
		req->route = "/zpack/status";
		req->handler = h_status;
	} else if (post && !strcmp(op, "register")) {
		req->route = "/zpack/register";
		req->handler = h_register;
	} else if (post && !strcmp(op, "unregister")) {
		req->route = "/zpack/unregister";
		req->handler = h_unregister;
	} else {
		return false;
	}
	return true;
}
