/* proxy.c - the proxy reconciler: Velocity registrations (see proxy.h).
 *
 * DECISION TABLE of recon_proxy_plan_input(). The J rows settle journal
 * operations whose outcome the listing now shows (store only, no call);
 * then C, then the first R/W row that matches decides the registration.
 * Each row id is named in test/unit/test-proxy-plan.c.
 *
 * Words: "listed(N)" = the /zpack/status entry named N (case-insensitive).
 * "reg" / "unreg" = the journal's latest register / unregister operation
 * of this server; "open" = step intent, call or handle; "landed" = reg is
 * open and listed(reg.name) is at reg's address:port. "owned" = the names
 * the journal says this controller registered for this server and has not
 * seen unregistered: reg.name when reg is done, at handle, or landed, and
 * no newer unreg of the same name is done; unreg.name while unreg is not
 * done. An open register that did not land owns nothing (it may never have
 * reached Velocity; R3 resumes it or J2 closes it). "wanted" = (hostname,
 * ip, port) when the server is a GameServer, not deleting, publishing,
 * power running, hostname and ip are allocated, and AgentReady is True - or
 * it is registered as wanted under an owned name and AgentReady turned
 * not-True less than unready_grace ago.
 *
 * id   when                                          actions                   ProxyRegistered / requeue
 * ---- --------------------------------------------- ------------------------- ------------------------
 * N1   not a GameServer                              none                      T NotApplicable / none
 * J1   reg landed                                    SETTLE-REGISTER(done)     (rows below)
 * J2   reg open, not landed, and R3 does not resume  SETTLE-REGISTER(failed:   (rows below)
 *      it (not the wanted registration, or R1/R2)    not observed)
 * J3   unreg open, unreg.name not listed             SETTLE-UNREGISTER(done)   (rows below)
 * J4   unreg open, listed, C1 does not unregister    SETTLE-UNREGISTER(failed: (rows below)
 *      it (wanted again at its listed address)       superseded)
 * C1   an owned name is listed and is not wanted     UNREGISTER(name)          F Unregistering / 0
 *      as listed (no wanted registration, another    (each such name; an open
 *      name, another address or port)                unreg op is resumed)
 *  -- nothing wanted --
 * W1   deleting                                      (C1 only)                 F Deleting | T Unregistered
 * W2   spec.publish false                            (C1 only)                 T NotApplicable
 * W3   power stopped                                 (C1 only)                 T Stopped
 * W4   hostname or ip not allocated yet              none                      F WaitingForContainer / wait
 * W5   AgentReady not True (past the grace, or       (C1 only)                 F WaitingForAgent / wait
 *      never registered)
 *  -- wanted --
 * R1   listed(hostname) at ip:port                   none                      T Registered / none
 *      (within the unready grace: message says so)                             (/ rest of grace)
 * R2   listed(hostname) elsewhere, name not owned    none                      F Conflict / none
 *      (velocity.toml or a hand registration holds
 *      our hostname: never touched)
 * R3   not listed, or C1 unregisters it first        REGISTER(hostname, ip,    F Registering / 0
 *      (Velocity restarted: registered again)        port)
 *
 * A row that plans actions reports False with the reason of the first
 * pending action (Unregistering, Registering) unless a W row says True
 * after them is false: while C1 runs, W2/W3 report F Unregistering. */
#include "proxy.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "crash.h"
#include "db/alloc.h"
#include "log.h"
#include "util.h"

void recon_proxy_settings_init(PxSettings *s)
{
	*s = (PxSettings){
	    .port = PROXY_GAME_PORT,
	    .unready_grace_ms = 60000,
	    .wait_requeue_ms = 3000,
	};
}

/* --- pure helpers -------------------------------------------------------------------- */

static bool step_open(const PxOp *op)
{
	return op && op->id > 0 && journal_step_is_open(op->step);
}

static bool name_eq(const char *a, const char *b)
{
	return a && b && strcasecmp(a, b) == 0;
}

/* "2024-08-06T12:34:56.789Z" (fraction and offset optional) -> wall ms, 0. */
static int64_t rfc3339_ms(const char *s)
{
	if (!s)
		return 0;
	int y, mo, d, h, mi, sec, consumed = 0;
	if (sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d%n", &y, &mo, &d, &h, &mi, &sec, &consumed) != 6)
		return 0;
	const char *p = s + consumed;
	int64_t frac_ms = 0;
	if (*p == '.') {
		int64_t scale = 100;
		for (p++; isdigit((unsigned char)*p); p++) {
			frac_ms += (*p - '0') * scale;
			scale /= 10;
		}
	}
	int64_t off_s = 0;
	if (*p == '+' || *p == '-') {
		int oh = 0, om = 0;
		if (sscanf(p + 1, "%2d:%2d", &oh, &om) != 2)
			return 0;
		off_s = (int64_t)(oh * 3600 + om * 60) * (*p == '-' ? -1 : 1);
	} else if (*p != 'Z' && *p != 'z') {
		return 0;
	}
	struct tm tm = {.tm_year = y - 1900,
	                .tm_mon = mo - 1,
	                .tm_mday = d,
	                .tm_hour = h,
	                .tm_min = mi,
	                .tm_sec = sec};
	time_t t = timegm(&tm);
	if (t == (time_t)-1)
		return 0;
	return ((int64_t)t - off_s) * 1000 + frac_ms;
}

void recon_proxy_agent_ready(const json_t *conditions, bool *ret_ready, int64_t *ret_since_ms)
{
	bool ready = false;
	int64_t since = 0;
	size_t i;
	json_t *c;
	if (json_is_array(conditions)) {
		json_array_foreach(conditions, i, c)
		{
			const char *t = json_string_value(json_object_get(c, "type"));
			if (!t || strcmp(t, "AgentReady") != 0)
				continue;
			const char *st = json_string_value(json_object_get(c, "status"));
			ready = st && strcmp(st, "True") == 0;
			since =
			    rfc3339_ms(json_string_value(json_object_get(c, "lastTransitionTime")));
		}
	}
	*ret_ready = ready;
	*ret_since_ms = since;
}

int recon_proxy_key(const char *uid, const char *action, const char *part, int64_t incarnation,
                    char *buf, size_t n)
{
	if (!part || !*part)
		return -EINVAL;
	char safe[65];
	size_t l = 0;
	for (const char *p = part; *p && l < sizeof safe - 1; p++) {
		char c = *p;
		bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		          (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
		safe[l++] = ok ? c : '-';
	}
	safe[l] = 0;
	return journal_key(uid, action, safe, incarnation, buf, n);
}

void recon_proxy_op_from_journal(const JournalOp *op, PxOp *ret)
{
	*ret = (PxOp){.id = op->id, .step = op->step};
	const char *name = json_string_value(json_object_get(op->payload, "server_name"));
	const char *addr = json_string_value(json_object_get(op->payload, "address"));
	json_t *port = json_object_get(op->payload, "port");
	snprintf(ret->name, sizeof ret->name, "%s", name ? name : "");
	snprintf(ret->address, sizeof ret->address, "%s", addr ? addr : "");
	ret->port = json_is_integer(port) ? json_integer_value(port) : 0;
}

/* --- the plan ------------------------------------------------------------------------------ */

static json_t *settle_args(int64_t op_id, bool done, const char *handle, const char *error)
{
	json_t *a =
	    json_pack("{s:I, s:s}", "op", (json_int_t)op_id, "outcome", done ? "done" : "failed");
	if (a && handle && *handle)
		json_object_set_new(a, "handle", json_string(handle));
	if (a && error)
		json_object_set_new(a, "error", json_string(error));
	return a;
}

/* Whether listed entry v is exactly (name, address, port). */
static bool listed_as(const VelocityServer *v, const char *address, int64_t port)
{
	return v && address && strcasecmp(v->address, address) == 0 && v->port == port;
}

int recon_proxy_plan_input(const PxInput *in, Plan *plan)
{
	if (!in || !plan || (in->n_listed && !in->listed))
		return -EINVAL;
	const PxSettings *s = &in->settings;
	CondType ct = COND_PROXY_REGISTERED;
	int r;

	if (!in->game) { /* N1 */
		plan_condition(plan, ct, COND_TRUE, "NotApplicable",
		               "only GameServers are registered with Velocity");
		return 0;
	}

	const PxOp *reg = in->reg && in->reg->id > 0 ? in->reg : NULL;
	const PxOp *unreg = in->unreg && in->unreg->id > 0 ? in->unreg : NULL;
	bool have_alloc = in->hostname && *in->hostname && in->ip && *in->ip;
	bool base_wanted = !in->deleting && in->publish && in->running && have_alloc;
	const VelocityServer *cur =
	    have_alloc ? velocity_servers_find(in->listed, in->n_listed, in->hostname) : NULL;
	bool cur_as_wanted = cur && listed_as(cur, in->ip, s->port);
	bool reg_is_wanted_shape = reg && have_alloc && name_eq(reg->name, in->hostname) &&
	                           strcasecmp(reg->address, in->ip) == 0 && reg->port == s->port;

	/* J1: an open register whose registration is listed landed. */
	bool reg_landed = false;
	if (step_open(reg)) {
		const VelocityServer *v =
		    velocity_servers_find(in->listed, in->n_listed, reg->name);
		reg_landed = listed_as(v, reg->address, reg->port);
	}

	/* Owned names: a register seen to complete (or to land), not
	 * unregistered since; an unregister not seen to complete. */
	const char *owned[2] = {NULL, NULL};
	size_t n_owned = 0;
	bool reg_owned =
	    reg && reg->name[0] &&
	    (reg->step == JOURNAL_STEP_DONE || reg->step == JOURNAL_STEP_HANDLE || reg_landed) &&
	    !(unreg && unreg->id > reg->id && name_eq(unreg->name, reg->name) &&
	      unreg->step == JOURNAL_STEP_DONE);
	if (reg_owned)
		owned[n_owned++] = reg->name;
	if (unreg && unreg->step != JOURNAL_STEP_DONE && unreg->name[0] &&
	    !(n_owned && name_eq(owned[0], unreg->name)))
		owned[n_owned++] = unreg->name;

	/* The agent: ready, or registered as wanted by us and within the
	 * grace since AgentReady left True. */
	bool within_grace = false;
	int64_t grace_left = 0;
	if (base_wanted && !in->agent_ready && cur_as_wanted && reg_owned &&
	    name_eq(reg->name, in->hostname) && in->agent_since_ms > 0) {
		int64_t age = in->now_ms - in->agent_since_ms;
		if (age >= 0 && age < s->unready_grace_ms) {
			within_grace = true;
			grace_left = s->unready_grace_ms - age;
		}
	}
	bool wanted = base_wanted && (in->agent_ready || within_grace);

	/* C1: owned, listed, and not the wanted registration as listed. */
	bool unregister[2] = {false, false};
	bool unregistering = false, unregisters_wanted_name = false;
	for (size_t i = 0; i < n_owned; i++) {
		const VelocityServer *v = velocity_servers_find(in->listed, in->n_listed, owned[i]);
		if (!v)
			continue;
		bool keep =
		    wanted && name_eq(owned[i], in->hostname) && listed_as(v, in->ip, s->port);
		unregister[i] = !keep;
		unregistering |= !keep;
		if (!keep && have_alloc && name_eq(owned[i], in->hostname))
			unregisters_wanted_name = true;
	}
	bool owned_hostname = false;
	for (size_t i = 0; i < n_owned; i++)
		owned_hostname |= have_alloc && name_eq(owned[i], in->hostname);

	/* What R decides (R1 none, R2 conflict, R3 register). */
	bool conflict = wanted && cur && !cur_as_wanted && !owned_hostname;
	bool will_register = wanted && !conflict && (!cur || unregisters_wanted_name);

	/* J1 / J2 */
	if (step_open(reg)) {
		if (reg_landed)
			r = plan_action(plan, "settle-register", NULL, NULL, false,
			                settle_args(reg->id, true, reg->name, NULL),
			                "record: %s is registered at %s:%" PRId64, reg->name,
			                reg->address, reg->port);
		else if (!(will_register && reg_is_wanted_shape))
			r = plan_action(plan, "settle-register", NULL, NULL, false,
			                settle_args(reg->id, false, NULL,
			                            "not registered after the call (observed)"),
			                "record: register %s at %s was not observed", reg->name,
			                reg->address);
		else
			r = 0; /* R3 resumes it */
		if (r < 0)
			return r;
	}

	/* J3 / J4 */
	if (step_open(unreg)) {
		const VelocityServer *v =
		    velocity_servers_find(in->listed, in->n_listed, unreg->name);
		bool planned = false;
		for (size_t i = 0; i < n_owned; i++)
			planned |= unregister[i] && name_eq(owned[i], unreg->name);
		r = 0;
		if (!v)
			r = plan_action(plan, "settle-unregister", NULL, NULL, false,
			                settle_args(unreg->id, true, unreg->name, NULL),
			                "record: %s is not registered any more", unreg->name);
		else if (!planned)
			r = plan_action(plan, "settle-unregister", NULL, NULL, false,
			                settle_args(unreg->id, false, NULL, "superseded"),
			                "record: unregister %s superseded", unreg->name);
		if (r < 0)
			return r;
	}

	/* C1 */
	for (size_t i = 0; i < n_owned; i++) {
		if (!unregister[i])
			continue;
		r = plan_action(plan, "unregister", "velocity", NULL, true,
		                json_pack("{s:s}", "server_name", owned[i]),
		                "unregister %s from Velocity", owned[i]);
		if (r < 0)
			return r;
	}

	if (!wanted) {
		if (in->deleting) /* W1 */
			plan_condition(plan, ct, unregistering ? COND_FALSE : COND_TRUE,
			               unregistering ? "Deleting" : "Unregistered", "%s",
			               unregistering ? "unregistering before deletion"
			                             : "not registered with Velocity");
		else if (unregistering)
			plan_condition(plan, ct, COND_FALSE, "Unregistering", "%s",
			               !in->publish   ? "spec.publish is false: unregistering"
			               : !in->running ? "power is stopped: unregistering"
			               : !have_alloc  ? "no allocation: unregistering"
			                              : "agent not ready: unregistering");
		else if (!in->publish) /* W2 */
			plan_condition(plan, ct, COND_TRUE, "NotApplicable",
			               "spec.publish is false");
		else if (!in->running) /* W3 */
			plan_condition(plan, ct, COND_TRUE, "Stopped",
			               "power is stopped: not registered");
		else if (!have_alloc) { /* W4 */
			plan_condition(plan, ct, COND_FALSE, "WaitingForContainer",
			               "no hostname and address allocated yet");
			plan_requeue_after(plan, s->wait_requeue_ms);
		} else { /* W5 */
			plan_condition(plan, ct, COND_FALSE, "WaitingForAgent",
			               "registered once AgentReady is True");
			plan_requeue_after(plan, s->wait_requeue_ms);
		}
		return 0;
	}

	if (conflict) { /* R2 */
		plan_condition(plan, ct, COND_FALSE, "Conflict",
		               "Velocity has %s at %s:%d, not registered by this controller",
		               cur->name, cur->address, cur->port);
		return 0;
	}
	if (!will_register) { /* R1 */
		if (unregistering)
			plan_condition(plan, ct, COND_FALSE, "Unregistering",
			               "%s registered; removing a stale registration",
			               in->hostname);
		else if (within_grace) {
			plan_condition(plan, ct, COND_TRUE, "Registered",
			               "%s -> %s:%" PRId64
			               " (agent not ready: unregistered in %" PRId64 " s)",
			               in->hostname, in->ip, s->port, (grace_left + 999) / 1000);
			plan_requeue_after(plan, grace_left);
		} else
			plan_condition(plan, ct, COND_TRUE, "Registered", "%s -> %s:%" PRId64,
			               in->hostname, in->ip, s->port);
		return 0;
	}
	/* R3 */
	r = plan_action(plan, "register", "velocity", NULL, true,
	                json_pack("{s:s, s:s, s:I}", "server_name", in->hostname, "address", in->ip,
	                          "port", (json_int_t)s->port),
	                "register %s at %s:%" PRId64 " with Velocity", in->hostname, in->ip,
	                s->port);
	if (r < 0)
		return r;
	plan_condition(plan, ct, COND_FALSE, unregistering ? "Unregistering" : "Registering",
	               "registering %s at %s:%" PRId64, in->hostname, in->ip, s->port);
	return 0;
}

/* --- the runtime glue ------------------------------------------------------------------------ */

typedef struct ProxyState {
	PxSettings settings;
} ProxyState;

typedef struct ProxyWorker {
	VelocityClient *client;
} ProxyWorker;

static const CondType proxy_conditions[] = {COND_PROXY_REGISTERED, _COND_TYPE_MAX};

static bool proxy_enabled(const Config *cfg)
{
	return cfg && cfg->velocity.enabled;
}

static int proxy_init(const Config *cfg, void **ret_state)
{
	(void)cfg;
	ProxyState *st = calloc(1, sizeof *st);
	if (!st)
		return -ENOMEM;
	recon_proxy_settings_init(&st->settings);
	*ret_state = st;
	return 0;
}

static void proxy_done(void *state)
{
	free(state);
}

static int proxy_worker_init(const Config *cfg, void *state, void **ret_wstate)
{
	(void)state;
	if (!cfg || !cfg->velocity.url || !cfg->velocity.secret_sha256[0])
		return -EINVAL;
	ProxyWorker *w = calloc(1, sizeof *w);
	if (!w)
		return -ENOMEM;
	VelocityClientOptions o = {
	    .url = cfg->velocity.url,
	    .secret_sha256 = cfg->velocity.secret_sha256,
	};
	w->client = velocity_client_new(&o);
	if (!w->client) {
		free(w);
		return -ENOMEM;
	}
	*ret_wstate = w;
	return 0;
}

static void proxy_worker_done(void *wstate)
{
	ProxyWorker *w = wstate;
	if (!w)
		return;
	velocity_client_free(w->client);
	free(w);
}

static void proxy_snapshot_free(void *snapshot)
{
	ProxySnapshot *s = snapshot;
	if (!s)
		return;
	velocity_servers_clear(&s->servers);
	free(s);
}

static int proxy_observe(RecEnv *env, void **ret_snapshot)
{
	ProxyWorker *w = env->wstate;
	if (!w || !w->client)
		return -EINVAL;
	ProxySnapshot *s = calloc(1, sizeof *s);
	if (!s)
		return -ENOMEM;
	s->listed_at_ms = now_wall_ms();
	VelocityError err = {0};
	int r = velocity_status(w->client, &s->servers, &err);
	rec_count_call(env, "velocity", "GET", err.http_status ? err.http_status : r < 0 ? 0 : 200);
	if (r < 0) {
		log_debug("proxy: /zpack/status failed: %s", err.message);
		free(s);
		return r;
	}
	*ret_snapshot = s;
	return 0;
}

static void proxy_obs_free(void *obs)
{
	free(obs);
}

static int proxy_observe_server(RecEnv *env, const RuntimeServer *srv, const void *snapshot,
                                void **ret_obs)
{
	(void)snapshot;
	ProxyObs *o = calloc(1, sizeof *o);
	if (!o)
		return -ENOMEM;
	o->now_ms = now_wall_ms();
	if (env->db) {
		StoreError err = {0};
		int64_t inc = 0;
		int r = alloc_incarnation(env->db, srv->uid, &inc, &err);
		if (r < 0 && r != -ENOENT) {
			free(o);
			return r;
		}
		o->incarnation = r < 0 ? 0 : inc;
		JournalOp *ops = NULL;
		size_t n = 0;
		r = journal_latest(env->db, srv->uid, -1, &ops, &n, &err);
		if (r < 0) {
			free(o);
			return r;
		}
		for (size_t i = 0; i < n; i++) {
			if (strcmp(ops[i].action, "register") == 0) {
				recon_proxy_op_from_journal(&ops[i], &o->reg);
				o->has_reg = true;
			} else if (strcmp(ops[i].action, "unregister") == 0) {
				recon_proxy_op_from_journal(&ops[i], &o->unreg);
				o->has_unreg = true;
			}
		}
		journal_ops_free(ops, n);
	}
	*ret_obs = o;
	return 0;
}

static bool spec_bool(const json_t *spec, const char *key, bool dflt)
{
	json_t *v = json_object_get(spec, key);
	return json_is_boolean(v) ? json_is_true(v) : dflt;
}

static int proxy_plan_common(const Config *cfg, const RuntimeServer *srv, const void *snapshot,
                             const void *obs, bool deleting, Plan *plan)
{
	(void)cfg;
	const ProxySnapshot *snap = snapshot;
	const ProxyObs *o = obs;
	if (!srv || !snap)
		return -ENODATA; /* a plan never runs on an unknown listing */
	PxInput in = {
	    .game = srv->kind && strcmp(srv->kind, "GameServer") == 0,
	    .deleting = deleting || srv->deleting,
	    .publish = spec_bool(srv->spec, "publish", true),
	    .hostname = srv->hostname,
	    .ip = srv->ip,
	    .now_ms = o ? o->now_ms : 0,
	    .listed = snap->servers.items,
	    .n_listed = snap->servers.n,
	    .reg = o && o->has_reg ? &o->reg : NULL,
	    .unreg = o && o->has_unreg ? &o->unreg : NULL,
	};
	const char *power = json_string_value(json_object_get(srv->spec, "power"));
	in.running = !power || strcmp(power, "running") == 0;
	recon_proxy_agent_ready(srv->conditions, &in.agent_ready, &in.agent_since_ms);
	recon_proxy_settings_init(&in.settings);
	return recon_proxy_plan_input(&in, plan);
}

static int proxy_plan(const Config *cfg, const RuntimeServer *srv, const void *snapshot,
                      const void *obs, Plan *plan)
{
	return proxy_plan_common(cfg, srv, snapshot, obs, false, plan);
}

static int proxy_finalize(const Config *cfg, const RuntimeServer *srv, const void *snapshot,
                          const void *obs, Plan *plan)
{
	return proxy_plan_common(cfg, srv, snapshot, obs, true, plan);
}

/* --- acts ---------------------------------------------------------------------------------- */

static int act_fail(ActResult *res, int r, const char *fmt, ...) _printf_(3, 4);
static int act_fail(ActResult *res, int r, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(res->error, sizeof res->error, fmt, ap);
	va_end(ap);
	return r;
}

static int act_settle(RecEnv *env, const Action *a, ActResult *res)
{
	json_t *args = a->args;
	json_int_t id = json_integer_value(json_object_get(args, "op"));
	const char *outcome = json_string_value(json_object_get(args, "outcome"));
	const char *handle = json_string_value(json_object_get(args, "handle"));
	const char *error = json_string_value(json_object_get(args, "error"));
	if (id <= 0 || !outcome)
		return act_fail(res, -EINVAL, "settle: bad arguments");
	StoreError err = {0};
	int r;
	if (strcmp(outcome, "done") == 0) {
		if (handle && *handle) {
			r = journal_set_handle(env->db, env->epoch, id, handle, &err);
			if (r < 0 && r != -EALREADY && r != -EEXIST)
				return act_fail(res, r, "journal: %s", err.message);
		}
		r = journal_done(env->db, env->epoch, id, NULL, &err);
	} else {
		r = journal_fail(env->db, env->epoch, id, error ? error : "failed", &err);
	}
	if (r < 0 && r != -EALREADY)
		return act_fail(res, r, "journal: %s", err.message);
	/* Nothing changed in Velocity: the snapshot stays valid. */
	res->snapshot_updated = true;
	return 0;
}

/* The journaled call shared by register and unregister. */
static int act_call(RecEnv *env, const RuntimeServer *srv, const ProxyObs *o, const Action *a,
                    ActResult *res, bool reg)
{
	ProxyWorker *w = env->wstate;
	const char *action = reg ? "register" : "unregister";
	const char *name = json_string_value(json_object_get(a->args, "server_name"));
	const char *address = json_string_value(json_object_get(a->args, "address"));
	json_int_t port = json_integer_value(json_object_get(a->args, "port"));
	if (!w || !w->client || !name || (reg && (!address || port <= 0 || port > 65535)))
		return act_fail(res, -EINVAL, "%s: bad arguments", action);
	int64_t inc = o ? o->incarnation : 0;

	char key[JOURNAL_KEY_MAX];
	int r = recon_proxy_key(srv->uid, action, reg ? address : name, inc, key, sizeof key);
	if (r < 0)
		return act_fail(res, r, "%s: cannot build the journal key", action);
	StoreError serr = {0};
	JournalOp op = {0};
	r = journal_intent_retry(env->db, env->epoch, srv->uid, action, key, a->args, inc, &op,
	                         &serr);
	if (r < 0)
		return act_fail(res, r, "%s: journal intent: %s", action, serr.message);
	int64_t op_id = op.id;
	journal_op_clear(&op);
	crash_point(action, CRASH_STEP_INTENT);

	if (!rec_lease_valid(env))
		return act_fail(res, -ESTALE, "%s: lease not valid: no call made", action);
	VelocityError verr = {.retry_after_s = -1};
	r = reg ? velocity_register(w->client, name, address, (int)port, &verr)
	        : velocity_unregister(w->client, name, &verr);
	rec_count_call(env, "velocity", "POST",
	               verr.http_status ? verr.http_status
	               : r >= 0         ? 200
	                                : 0);

	if (r >= 0) {
		crash_point(action, CRASH_STEP_CALL);
		int k = journal_set_handle(env->db, env->epoch, op_id, name, &serr);
		if (k < 0 && k != -EEXIST)
			return act_fail(res, k, "%s: journal handle: %s", action, serr.message);
		crash_point(action, CRASH_STEP_HANDLE);
		_cleanup_json_ json_t *result =
		    json_pack("{s:b}", reg ? "registered" : "absent_before", reg ? 1 : r == 1);
		k = journal_done(env->db, env->epoch, op_id, result, &serr);
		if (k < 0)
			return act_fail(res, k, "%s: journal done: %s", action, serr.message);
		crash_point(action, CRASH_STEP_DONE);
		if (reg)
			rec_event(env, srv, "Normal", "Registered",
			          "registered %s at %s:%d with Velocity", name, address, (int)port);
		else
			rec_event(env, srv, "Normal", "Unregistered",
			          "unregistered %s from Velocity%s", name,
			          r == 1 ? " (it was already gone)" : "");
		return 0;
	}

	/* No answer: the call may have landed (unknown) or never left. An
	 * answer that does not say "refused" (5xx, 503, 429): unknown too. */
	bool answered = verr.http_status != 0;
	bool unknown = answered ? (r == -EREMOTEIO || r == -EAGAIN) : http_outcome_unknown(r);
	if (unknown) {
		int k = journal_mark_call(env->db, env->epoch, op_id, &serr);
		if (k < 0 && k != -EALREADY)
			log_debug("proxy: journal mark_call: %s", serr.message);
		if (r == -EAGAIN && verr.retry_after_s > 0) {
			res->requeue_after_ms = verr.retry_after_s * 1000;
			return 0;
		}
		return act_fail(res, r, "%s %s: outcome unknown (%s); the next listing decides",
		                action, name, verr.message);
	}
	if (!answered)
		return act_fail(res, r, "%s %s: %s", action, name, verr.message);
	/* Refused: a definite answer, nothing happened. */
	int k = journal_fail(env->db, env->epoch, op_id, verr.message, &serr);
	if (k < 0 && k != -EALREADY)
		log_debug("proxy: journal fail: %s", serr.message);
	rec_event(env, srv, "Warning", reg ? "RegisterFailed" : "UnregisterFailed", "%s %s: %s",
	          action, name, verr.message);
	return act_fail(res, r, "%s %s: %s", action, name, verr.message);
}

static int proxy_act(RecEnv *env, const RuntimeServer *srv, void *snapshot, void *obs,
                     const Action *action, ActResult *res)
{
	(void)snapshot;
	if (!env || !srv || !action)
		return -EINVAL;
	if (!env->db)
		return act_fail(res, -ENOTCONN, "no database connection");
	if (strcmp(action->name, "register") == 0)
		return act_call(env, srv, obs, action, res, true);
	if (strcmp(action->name, "unregister") == 0)
		return act_call(env, srv, obs, action, res, false);
	if (strcmp(action->name, "settle-register") == 0 ||
	    strcmp(action->name, "settle-unregister") == 0)
		return act_settle(env, action, res);
	return act_fail(res, -EINVAL, "unknown action %s", action->name);
}

const Reconciler recon_proxy = {
    .name = "proxy",
    .order = 40,
    .conditions = proxy_conditions,
    .uses_finalizer = true,
    .enabled = proxy_enabled,
    .init = proxy_init,
    .done = proxy_done,
    .worker_init = proxy_worker_init,
    .worker_done = proxy_worker_done,
    .observe = proxy_observe,
    .snapshot_free = proxy_snapshot_free,
    .observe_server = proxy_observe_server,
    .obs_free = proxy_obs_free,
    .plan = proxy_plan,
    .finalize = proxy_finalize,
    .act = proxy_act,
};
