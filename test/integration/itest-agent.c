/* Integration tests of the agent reconciler (reconcilers/agent.c) and the
 * agent client (reconcilers/agentapi.c) against zlh-sim and a real
 * PostgreSQL journal. Containers are made through the sim's Proxmox API
 * (create with start=1), so each agent answers at its container's 127.x
 * address; the server rows are real (zlh.apply_server) and the container
 * facts the runtime would hold (ip, vmid, ContainerReady) are set on the
 * loaded row. A miniature runtime drives the reconciler through its
 * vtable (observe -> observe_server -> plan -> act) and writes the
 * reported conditions back onto the row, as controller/loop.c does.
 *
 * Covered: the client's routes and auth; one provisioning through the
 * acts up to Ready, then passes without any POST (request log); a spec
 * change posts exactly once more; a re-made container (new incarnation)
 * and an agent that lost its configuration are provisioned again; a
 * hanging agent costs a bounded pass, one failed probe keeps Ready for a
 * grace, an unreachable agent is a condition (never an error); a
 * crashed agent is reported with one event and never restarted; a
 * DevServer's code-server follows spec.codeServer; no call without the
 * lease; ZLH_CRASH_AT at every step of "provision" converges with one
 * POST /config. Every wait is bounded. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "db/alloc.h"
#include "reconcilers/agent.h"
#include "reconcilers/agentapi.h"
#include "test/integration/itest-proxy-harness.h"

static Harness H;
static int g_next = 0; /* per-test container numbers */

/* --- the world ----------------------------------------------------------------------------- */

static long pve_post(const char *path, const char *form, json_t **ret)
{
	char url[256];
	snprintf(url, sizeof url, "%s/api2/json%s", H.sim.pve_url, path);
	const char *hdr[] = {H.sim.pve_auth, "Content-Type: application/x-www-form-urlencoded",
	                     NULL};
	HttpResponse resp = {.retry_after_s = -1};
	int r = http_request(H.ctl, "POST", url, hdr, form, strlen(form), true, &resp);
	long st = r < 0 ? r : resp.status;
	if (ret) {
		json_error_t e;
		*ret = json_loadb(resp.body.data, resp.body.len, 0, &e);
	}
	http_response_clear(&resp);
	return st;
}

static AgentClient *client(const char *token)
{
	AgentClientOptions o = {.port = H.cfg->agent.port, .token = token};
	AgentClient *c = agentapi_client_new(&o);
	assert_non_null(c);
	return c;
}

/* Waits (bounded) until the agent at ip answers /health. */
static void wait_agent(const char *ip, int64_t deadline_ms)
{
	_cleanup_agentapi_client_ AgentClient *c = client(NULL);
	int64_t end = now_mono_ms() + deadline_ms;
	for (;;) {
		AgentError e = {0};
		if (agentapi_health(c, ip, &e) == 0)
			return;
		if (now_mono_ms() > end)
			fail_msg("the agent at %s did not answer within %" PRId64 " ms: %s", ip,
			         deadline_ms, e.message);
		struct timespec ts = {0, 20 * 1000000};
		nanosleep(&ts, NULL); /* pacing of a bounded poll */
	}
}

/* A container of uid made through the Proxmox API (one create task with
 * start=1); returns when its agent answers. */
static void pve_create(int vmid, const char *uid, const char *ip)
{
	char form[1024];
	snprintf(form, sizeof form,
	         "vmid=%d&ostemplate=local%%3Avztmpl%%2Fdebian-12-standard_12.7-1_amd64.tar.zst"
	         "&hostname=agt%d&tags=zlh%%3Bzlh-%s&description=zlh%%3Auid%%3D%s"
	         "&net0=name%%3Deth0%%2Cbridge%%3Dvmbr0%%2Cip%%3D%s%%2F16%%2Cgw%%3D127.60.0.1"
	         "&rootfs=local-lvm%%3A8&memory=2048&cores=2&unprivileged=1&start=1",
	         vmid, vmid, uid, uid, ip);
	json_t *res = NULL;
	long st = pve_post("/nodes/pve1/lxc", form, &res);
	if (st != 200)
		fail_msg("create %d: HTTP %ld", vmid, st);
	json_decref(res);
	wait_agent(ip, 10000);
}

static void pve_delete_oob(int vmid)
{
	char body[64];
	snprintf(body, sizeof body, "{\"vmid\":%d}", vmid);
	assert_int_equal(h_ctl(&H, "POST", "/_sim/pve/delete", body, NULL), 200);
}

static void agent_mode(const char *ip, const char *mode)
{
	char body[128];
	snprintf(body, sizeof body, "{\"ip\":\"%s\",\"mode\":\"%s\"}", ip, mode);
	assert_int_equal(h_ctl(&H, "POST", "/_sim/agent", body, NULL), 200);
}

static int64_t effects(const char *key)
{
	_cleanup_json_ json_t *st = h_stats(&H);
	return h_stat(st, "side_effects", key, NULL);
}

/* Requests the sim's agent listener saw for ip with method and path
 * (path NULL: any), from the ordered request log. */
static int agent_requests(const char *ip, const char *method, const char *path)
{
	_cleanup_json_ json_t *j = NULL;
	assert_int_equal(h_ctl(&H, "GET", "/_sim/requests?system=agent&limit=100000", NULL, &j),
	                 200);
	json_t *arr = json_object_get(j, "requests"), *e;
	size_t i;
	int n = 0;
	json_array_foreach(arr, i, e)
	{
		const char *m = json_string_value(json_object_get(e, "method"));
		const char *p = json_string_value(json_object_get(e, "path"));
		const char *a = json_string_value(json_object_get(e, "ip"));
		if (m && strcmp(m, method) == 0 && (!path || (p && strcmp(p, path) == 0)) && a &&
		    strcmp(a, ip) == 0)
			n++;
	}
	return n;
}

/* The agent's record in /_sim/state (new), by vmid. */
static json_t *sim_agent(int vmid)
{
	_cleanup_json_ json_t *st = NULL;
	assert_int_equal(h_ctl(&H, "GET", "/_sim/state", NULL, &st), 200);
	json_t *cts = json_object_get(st, "containers"), *ct;
	size_t i;
	json_array_foreach(cts, i, ct)
	{
		if (json_integer_value(json_object_get(ct, "vmid")) == vmid)
			return json_incref(json_object_get(ct, "agent"));
	}
	return NULL;
}

/* --- servers -------------------------------------------------------------------------------- */

typedef struct TSrv {
	RuntimeServer *s;
	int vmid;
	char ip[32];
} TSrv;

static void replace_str(char **dst, const char *v)
{
	free(*dst);
	*dst = v ? strdup(v) : NULL;
}

/* Sets condition type on the row (lastTransitionTime kept while the
 * status does not change), as the runtime's status write would. */
static void set_cond(RuntimeServer *s, const char *type, const char *status, const char *reason,
                     const char *message)
{
	char now[40];
	time_format_rfc3339(now_wall_ms(), now, sizeof now);
	size_t i;
	json_t *c;
	json_array_foreach(s->conditions, i, c)
	{
		const char *t = json_string_value(json_object_get(c, "type"));
		if (t && strcmp(t, type) == 0) {
			const char *old = json_string_value(json_object_get(c, "status"));
			if (!old || strcmp(old, status) != 0)
				json_object_set_new(c, "lastTransitionTime", json_string(now));
			json_object_set_new(c, "status", json_string(status));
			json_object_set_new(c, "reason", json_string(reason));
			json_object_set_new(c, "message", json_string(message));
			return;
		}
	}
	json_array_append_new(s->conditions,
	                      json_pack("{s:s, s:s, s:s, s:s, s:s}", "type", type, "status", status,
	                                "reason", reason, "message", message, "lastTransitionTime",
	                                now));
}

static const char *cond_reason(const RuntimeServer *s, const char *type, const char **status)
{
	size_t i;
	json_t *c;
	json_array_foreach(s->conditions, i, c)
	{
		if (strcmp(json_string_value(json_object_get(c, "type")), type) == 0) {
			if (status)
				*status = json_string_value(json_object_get(c, "status"));
			return json_string_value(json_object_get(c, "reason"));
		}
	}
	return NULL;
}

static const char *cond_message(const RuntimeServer *s, const char *type)
{
	size_t i;
	json_t *c;
	json_array_foreach(s->conditions, i, c)
	{
		if (strcmp(json_string_value(json_object_get(c, "type")), type) == 0)
			return json_string_value(json_object_get(c, "message"));
	}
	return NULL;
}

/* Applies a server (spec: new, taken), loads its row and gives it the
 * container facts: vmid, pve1, ip, ContainerReady True/Running. */
static RuntimeServer *load_server(const char *uid, int vmid, const char *ip)
{
	RuntimeServer *s = NULL;
	StoreError err = {0};
	assert_int_equal(runtime_server_load(H.c, uid, &s, &err), 0);
	s->vmid = vmid;
	replace_str(&s->node, "pve1");
	replace_str(&s->ip, ip);
	if (!json_is_array(s->conditions)) {
		json_decref(s->conditions);
		s->conditions = json_array();
	}
	set_cond(s, "ContainerReady", "True", "Running", "running");
	return s;
}

static TSrv server_new(const char *kind, json_t *spec, bool make_container)
{
	TSrv t = {.vmid = 5200 + g_next};
	snprintf(t.ip, sizeof t.ip, "127.62.0.%d", 10 + g_next);
	char name[32];
	snprintf(name, sizeof name, "agt-%d", g_next);
	g_next++;
	_cleanup_json_ json_t *doc =
	    json_pack("{s:s, s:s, s:{s:s, s:s}, s:o}", "apiVersion", "zlh.dev/v1", "kind", kind,
	              "metadata", "name", name, "owner", "user-7", "spec", spec);
	_cleanup_json_ json_t *res = NULL;
	StoreError err = {0};
	if (store_apply_server(H.c, doc, NULL, &res, &err) < 0)
		fail_msg("apply: %s", err.message);
	const char *uid = json_string_value(json_object_get(res, "uid"));
	if (make_container)
		pve_create(t.vmid, uid, t.ip);
	t.s = load_server(uid, t.vmid, t.ip);
	return t;
}

static TSrv game_new(const char *version)
{
	return server_new("GameServer",
	                  json_pack("{s:s, s:s, s:{s:i}}", "variant", "paper", "version", version,
	                            "resources", "memoryMiB", 2048),
	                  true);
}

static void tsrv_free(TSrv *t)
{
	t->s = runtime_server_free(t->s);
}

/* --- the miniature runtime ----------------------------------------------------------------------- */

typedef struct APass {
	int planned, acted, failed_r, mutating;
	char error[256];
	int64_t requeue_after_ms;
	CondReport ready, prov;
	int64_t ms; /* how long the pass took */
} APass;

static APass apass(Recon *r, RuntimeServer *srv)
{
	APass pr;
	memset(&pr, 0, sizeof pr);
	int64_t t0 = now_mono_ms();
	const Reconciler *rec = r->rec;
	void *snap = NULL, *obs = NULL;
	assert_int_equal(rec->observe(&r->env, &snap), 0);
	assert_int_equal(rec->observe_server(&r->env, srv, snap, &obs), 0);
	Plan plan;
	memset(&plan, 0, sizeof plan);
	assert_int_equal(srv->deleting ? rec->finalize(r->env.cfg, srv, snap, obs, &plan)
	                               : rec->plan(r->env.cfg, srv, snap, obs, &plan),
	                 0);
	pr.planned = (int)plan.n_actions;
	pr.requeue_after_ms = plan.requeue_after_ms;
	pr.ready = plan.conditions[COND_AGENT_READY];
	pr.prov = plan.conditions[COND_PROVISIONED];
	for (size_t i = 0; i < plan.n_actions; i++) {
		const Action *a = &plan.actions[i];
		pr.mutating += a->mutating;
		if (a->mutating && !rec_lease_valid(&r->env))
			break;
		ActResult res = {0};
		int k = rec->act(&r->env, srv, snap, obs, a, &res);
		if (k < 0) {
			pr.failed_r = k;
			snprintf(pr.error, sizeof pr.error, "%s", res.error);
			break;
		}
		pr.acted++;
		if (res.requeue_after_ms > 0) {
			pr.requeue_after_ms = res.requeue_after_ms;
			break;
		}
	}
	/* the status write */
	if (pr.ready.set)
		set_cond(srv, "AgentReady", cond_status_name(pr.ready.status), pr.ready.reason,
		         pr.ready.message);
	if (pr.prov.set)
		set_cond(srv, "Provisioned", cond_status_name(pr.prov.status), pr.prov.reason,
		         pr.prov.message);
	plan_clear(&plan);
	rec->obs_free(obs);
	rec->snapshot_free(snap);
	pr.ms = now_mono_ms() - t0;
	return pr;
}

static void pace(int64_t ms)
{
	if (ms <= 0 || ms > 100)
		ms = 100;
	struct timespec ts = {0, (long)ms * 1000000};
	nanosleep(&ts, NULL); /* pacing of the bounded loop, not synchronization */
}

/* Passes until AgentReady is True and a pass plans nothing, within
 * deadline_ms. Returns the passes that performed an action. */
static int drive_ready(Recon *r, RuntimeServer *srv, int64_t deadline_ms)
{
	int64_t end = now_mono_ms() + deadline_ms;
	int acted = 0;
	for (;;) {
		APass p = apass(r, srv);
		if (p.failed_r)
			print_message("pass failed: %s\n", p.error);
		acted += p.acted > 0;
		const char *st = NULL;
		const char *reason = cond_reason(srv, "AgentReady", &st);
		if (p.planned == 0 && st && strcmp(st, "True") == 0)
			return acted;
		if (now_mono_ms() > end)
			fail_msg("not ready in %" PRId64 " ms: AgentReady %s %s (%s)", deadline_ms,
			         st ? st : "-", reason ? reason : "-",
			         cond_message(srv, "AgentReady"));
		pace(p.requeue_after_ms);
	}
}

/* Passes until AgentReady has reason want (bounded). */
static APass drive_reason(Recon *r, RuntimeServer *srv, const char *want, int64_t deadline_ms)
{
	int64_t end = now_mono_ms() + deadline_ms;
	for (;;) {
		APass p = apass(r, srv);
		if (p.ready.set && strcmp(p.ready.reason, want) == 0)
			return p;
		if (now_mono_ms() > end)
			fail_msg("AgentReady never became %s: last %s (%s)", want, p.ready.reason,
			         p.ready.message);
		pace(p.requeue_after_ms);
	}
}

static size_t ops_of(const char *uid, const char *action, size_t *ret_done)
{
	return h_ops_of(&H, uid, action, ret_done);
}

static Recon g_rec;

static int test_setup(void **state)
{
	(void)state;
	g_hooks = (HookState){.lease_ok = true};
	tr_open(&H, &recon_agent, &g_rec);
	return h_ctl(&H, "DELETE", "/_sim/faults", NULL, NULL) == 200 ? 0 : -1;
}

static int test_teardown(void **state)
{
	(void)state;
	tr_close(&g_rec);
	return 0;
}

/* --- client --------------------------------------------------------------------------------------- */

static void client__routes_against_sim(void **state)
{
	(void)state;
	TSrv t = game_new("1.21.4");
	_cleanup_agentapi_client_ AgentClient *c = client(H.cfg->agent.token);
	AgentError e = {0};
	AgentStatus st;
	AgentReadiness rd;
	assert_int_equal(agentapi_health(c, t.ip, &e), 0);
	assert_int_equal(agentapi_status(c, t.ip, &st, &e), 0);
	assert_int_equal(st.state, AGENT_STATE_IDLE);
	assert_int_equal(agentapi_ready(c, t.ip, &rd, &e), 0);
	assert_false(rd.ready);
	assert_non_null(strstr(rd.reason, "idle"));
	/* 409 before any config */
	assert_int_equal(agentapi_power(c, t.ip, AGENT_OP_START, &e), -EBUSY);
	assert_int_equal(e.http_status, 409);

	json_t *p = NULL;
	char hash[65];
	assert_int_equal(agentapi_payload_game(t.vmid, "minecraft", "paper", "1.21.4", 2048, &p),
	                 0);
	assert_int_equal(agentapi_payload_hash(p, hash), 0);
	assert_int_equal(agentapi_config(c, t.ip, p, &e), 0);
	json_decref(p);
	assert_int_equal(agentapi_status(c, t.ip, &st, &e), 0);
	assert_true(agentapi_state_is_install(st.state) || st.state == AGENT_STATE_RUNNING);
	/* the sim hashes what it received the same way: byte-identical payload */
	_cleanup_json_ json_t *ag = sim_agent(t.vmid);
	assert_string_equal(json_string_value(json_object_get(ag, "payload_hash")), hash);
	assert_string_equal(
	    json_string_value(json_object_get(json_object_get(ag, "payload"), "java_path")),
	    "java/21/OpenJDK21.tar.gz");

	/* running and ready within the sim's ready delay (bounded poll) */
	int64_t end = now_mono_ms() + 10000;
	do {
		assert_int_equal(agentapi_ready(c, t.ip, &rd, &e), 0);
		if (!rd.ready)
			pace(50);
	} while (!rd.ready && now_mono_ms() < end);
	assert_true(rd.ready);
	assert_string_equal(rd.source, "minecraft_ping");
	assert_int_equal(agentapi_status(c, t.ip, &st, &e), 0);
	assert_int_equal(st.state, AGENT_STATE_RUNNING);
	assert_true(st.provisioning_complete);

	assert_int_equal(agentapi_power(c, t.ip, AGENT_OP_STOP, &e), 0);
	assert_int_equal(agentapi_status(c, t.ip, &st, &e), 0);
	assert_int_equal(st.state, AGENT_STATE_STOPPED);
	assert_int_equal(agentapi_power(c, t.ip, AGENT_OP_START, &e), 0);
	assert_int_equal(agentapi_power(c, t.ip, AGENT_OP_RESTART, &e), 0);
	assert_int_equal(effects("agent.stop"), 1);
	/* code-server on a game server: 409 */
	assert_int_equal(agentapi_codeserver(c, t.ip, AGENT_OP_START, &e), -EBUSY);

	/* without the token: /health answers, /status is 401 */
	_cleanup_agentapi_client_ AgentClient *anon = client(NULL);
	assert_int_equal(agentapi_health(anon, t.ip, &e), 0);
	assert_int_equal(agentapi_status(anon, t.ip, &st, &e), -EACCES);
	assert_int_equal(e.http_status, 401);
	/* nobody at this address: a transport error, not a hang */
	int64_t t0 = now_mono_ms();
	int r = agentapi_health(c, "127.62.9.9", &e);
	assert_true(r < 0);
	assert_int_equal(e.http_status, 0);
	assert_true(now_mono_ms() - t0 < 3500);
	tsrv_free(&t);
}

/* --- reconciler ------------------------------------------------------------------------------------ */

static void provision__once_then_ready_then_no_post(void **state)
{
	(void)state;
	TSrv t = game_new("1.21.4");
	int64_t configs0 = effects("agent.config");
	drive_ready(&g_rec, t.s, 15000);
	assert_int_equal(effects("agent.config") - configs0, 1);
	assert_int_equal(agent_requests(t.ip, "POST", "/config"), 1);

	const char *st = NULL;
	assert_string_equal(cond_reason(t.s, "AgentReady", &st), "Ready");
	assert_string_equal(st, "True");
	assert_non_null(strstr(cond_message(t.s, "AgentReady"), "minecraft_ping"));
	assert_string_equal(cond_reason(t.s, "Provisioned", &st), "Provisioned");
	assert_string_equal(st, "True");

	/* the journal: one provision op, done, keyed by the payload's hash */
	size_t done = 0;
	assert_int_equal(ops_of(t.s->uid, "provision", &done), 1);
	assert_int_equal(done, 1);
	assert_int_equal(h_open_ops(&H, t.s->uid), 0);
	_cleanup_json_ json_t *ag = sim_agent(t.vmid);
	const char *sim_hash = json_string_value(json_object_get(ag, "payload_hash"));
	JournalOp *ops = NULL;
	size_t n = 0;
	StoreError err = {0};
	assert_true(journal_list(H.c, t.s->uid, 10, &ops, &n, &err) >= 0);
	assert_int_equal(n, 1);
	assert_non_null(strstr(ops[0].idem_key, sim_hash));
	assert_string_equal(ops[0].handle, sim_hash);
	journal_ops_free(ops, n);
	/* the events: delivered, then ready */
	assert_true(g_hooks.events >= 2);
	assert_string_equal(g_hooks.last_event_reason, "AgentReady");

	/* steady state: more passes make only GETs */
	int posts = agent_requests(t.ip, "POST", NULL);
	int gets = agent_requests(t.ip, "GET", NULL);
	for (int i = 0; i < 3; i++) {
		APass p = apass(&g_rec, t.s);
		assert_int_equal(p.planned, 0);
		assert_int_equal(p.requeue_after_ms, 0);
	}
	assert_int_equal(agent_requests(t.ip, "POST", NULL), posts);
	assert_int_equal(agent_requests(t.ip, "GET", NULL), gets + 9); /* health, status, ready */
	assert_int_equal(agent_requests(t.ip, "POST", "/config"), 1);
	tsrv_free(&t);
}

static void version_change__exactly_one_new_post(void **state)
{
	(void)state;
	TSrv t = game_new("1.20.4");
	drive_ready(&g_rec, t.s, 15000);
	_cleanup_json_ json_t *a1 = sim_agent(t.vmid);
	assert_string_equal(
	    json_string_value(json_object_get(json_object_get(a1, "payload"), "java_path")),
	    "java/17/OpenJDK17.tar.gz");
	/* spec.version changes (what a new generation's row carries) */
	json_object_set_new(t.s->spec, "version", json_string("1.20.5"));
	drive_ready(&g_rec, t.s, 15000);
	assert_int_equal(agent_requests(t.ip, "POST", "/config"), 2);
	_cleanup_json_ json_t *a2 = sim_agent(t.vmid);
	json_t *p = json_object_get(a2, "payload");
	assert_string_equal(json_string_value(json_object_get(p, "version")), "1.20.5");
	assert_string_equal(json_string_value(json_object_get(p, "java_path")),
	                    "java/21/OpenJDK21.tar.gz");
	assert_string_equal(json_string_value(json_object_get(p, "artifact_path")),
	                    "minecraft/paper/1.20.5/server.jar");
	/* no container change was needed for it; and no further POST */
	for (int i = 0; i < 2; i++)
		assert_int_equal(apass(&g_rec, t.s).planned, 0);
	assert_int_equal(agent_requests(t.ip, "POST", "/config"), 2);
	size_t done = 0;
	assert_int_equal(ops_of(t.s->uid, "provision", &done), 2);
	assert_int_equal(done, 2);
	tsrv_free(&t);
}

static void remade_container__new_incarnation__provisioned_again(void **state)
{
	(void)state;
	TSrv t = game_new("1.21.4");
	drive_ready(&g_rec, t.s, 15000);
	/* the container is lost and made again (RECREATE bumps the incarnation) */
	pve_delete_oob(t.vmid);
	APass p = apass(&g_rec, t.s); /* one failed probe: still Ready, re-checking */
	assert_string_equal(p.ready.reason, "Ready");
	assert_non_null(strstr(p.ready.message, "re-checking"));
	assert_int_equal(p.mutating, 0);
	int64_t inc = 0, inc2 = 0;
	StoreError err = {0};
	assert_int_equal(alloc_incarnation(H.c, t.s->uid, &inc, &err), 0);
	assert_int_equal(alloc_bump_incarnation(H.c, H.epoch, t.s->uid, inc, &inc2, &err), 0);
	pve_create(t.vmid, t.s->uid, t.ip);
	drive_ready(&g_rec, t.s, 15000);
	assert_int_equal(agent_requests(t.ip, "POST", "/config"), 2);
	size_t done = 0;
	assert_int_equal(ops_of(t.s->uid, "provision", &done), 2);
	assert_int_equal(done, 2);
	tsrv_free(&t);
}

static void agent_lost_config__reprovisioned_after_grace(void **state)
{
	(void)state;
	TSrv t = game_new("1.21.4");
	drive_ready(&g_rec, t.s, 15000);
	/* the same container (same incarnation) comes back with an idle agent */
	pve_delete_oob(t.vmid);
	pve_create(t.vmid, t.s->uid, t.ip);
	int64_t events0 = g_hooks.events;
	APass p = apass(&g_rec, t.s); /* within the grace: waits, no POST */
	assert_string_equal(p.prov.reason, "AgentIdle");
	assert_int_equal(p.mutating, 0);
	assert_true(p.requeue_after_ms > 0 && p.requeue_after_ms <= 5000);
	drive_ready(&g_rec, t.s, 20000);
	assert_int_equal(agent_requests(t.ip, "POST", "/config"), 2);
	assert_true(g_hooks.events > events0);
	size_t done = 0;
	assert_int_equal(ops_of(t.s->uid, "provision", &done), 2); /* attempt #2 of the key */
	assert_int_equal(done, 2);
	tsrv_free(&t);
}

static void unreachable_and_hang__conditions_bounded(void **state)
{
	(void)state;
	TSrv t = game_new("1.21.4");
	drive_ready(&g_rec, t.s, 15000);
	/* hang: accepted, never answered: the pass is bounded by the poll
	 * timeout, and one failed probe keeps Ready (re-checked soon) */
	agent_mode(t.ip, "hang");
	APass p = apass(&g_rec, t.s);
	assert_true(p.ms < 5000);
	assert_string_equal(p.ready.reason, "Ready");
	assert_non_null(strstr(p.ready.message, "re-checking"));
	assert_true(p.requeue_after_ms > 0 && p.requeue_after_ms <= 1000);
	assert_int_equal(p.failed_r, 0);
	/* down: Unreachable once the failures outlast the grace, never an
	 * error of the pass, one event */
	agent_mode(t.ip, "down");
	int ev0 = g_hooks.events;
	p = drive_reason(&g_rec, t.s, "Unreachable", 10000);
	assert_int_equal(p.failed_r, 0);
	assert_int_equal(p.mutating, 0);
	assert_true(p.ms < 2000);
	assert_int_equal(g_hooks.events, ev0 + 1);
	assert_string_equal(g_hooks.last_event_reason, "AgentUnreachable");
	assert_true(p.requeue_after_ms >= 500);
	/* growing delay while it stays unreachable (the waited time is from
	 * lastTransitionTime, moved back here instead of sleeping) */
	size_t i;
	json_t *c;
	char past[40];
	time_format_rfc3339(now_wall_ms() - 20000, past, sizeof past);
	json_array_foreach(t.s->conditions, i, c)
	{
		if (strcmp(json_string_value(json_object_get(c, "type")), "AgentReady") == 0)
			json_object_set_new(c, "lastTransitionTime", json_string(past));
	}
	APass p2 = apass(&g_rec, t.s);
	assert_string_equal(p2.ready.reason, "Unreachable");
	assert_true(p2.requeue_after_ms > p.requeue_after_ms);
	assert_int_equal(g_hooks.events, ev0 + 1);
	agent_mode(t.ip, "normal");
	drive_ready(&g_rec, t.s, 15000);
	assert_string_equal(g_hooks.last_event_reason, "AgentRecovered");
	assert_int_equal(agent_requests(t.ip, "POST", "/config"), 1);
	tsrv_free(&t);
}

static void crashed__degraded_event_once_no_restart(void **state)
{
	(void)state;
	TSrv t = game_new("1.21.4");
	drive_ready(&g_rec, t.s, 15000);
	int posts = agent_requests(t.ip, "POST", NULL);
	agent_mode(t.ip, "crashed");
	int ev0 = g_hooks.events;
	APass p = apass(&g_rec, t.s);
	assert_string_equal(p.ready.reason, "Crashed");
	assert_non_null(strstr(p.ready.message, "crash count 1"));
	assert_string_equal(g_hooks.last_event_reason, "AgentCrashed");
	assert_int_equal(g_hooks.events, ev0 + 1);
	for (int k = 0; k < 3; k++) {
		p = apass(&g_rec, t.s);
		assert_int_equal(p.planned, 0);
	}
	assert_int_equal(g_hooks.events, ev0 + 1); /* one event, not one per pass */
	assert_int_equal(agent_requests(t.ip, "POST", NULL), posts); /* no restart storm */
	const char *st = NULL;
	assert_string_equal(cond_reason(t.s, "Provisioned", &st), "Provisioned");
	agent_mode(t.ip, "normal");
	tsrv_free(&t);
}

static void never_ready__waits_without_posting(void **state)
{
	(void)state;
	TSrv t = game_new("1.21.4");
	agent_mode(t.ip, "never_ready");
	APass p = drive_reason(&g_rec, t.s, "Starting", 10000);
	assert_int_equal(p.mutating, 0);
	for (int k = 0; k < 3; k++) {
		p = apass(&g_rec, t.s);
		assert_string_equal(p.ready.reason, "Starting");
		assert_int_equal(p.planned, 0);
		assert_true(p.requeue_after_ms >= 500);
	}
	assert_int_equal(agent_requests(t.ip, "POST", "/config"), 1);
	agent_mode(t.ip, "normal");
	drive_ready(&g_rec, t.s, 15000);
	assert_int_equal(agent_requests(t.ip, "POST", "/config"), 1);
	tsrv_free(&t);
}

static void devserver__codeserver_follows_spec(void **state)
{
	(void)state;
	TSrv t = server_new("DevServer",
	                    json_pack("{s:s, s:s, s:{s:i}}", "runtime", "node", "version", "22",
	                              "resources", "memoryMiB", 2048),
	                    true);
	int64_t start0 = effects("agent.codeserver_start");
	int64_t stop0 = effects("agent.codeserver_stop");
	drive_ready(&g_rec, t.s, 15000);
	const char *st = NULL;
	assert_string_equal(cond_reason(t.s, "Provisioned", &st), "Provisioned");
	assert_non_null(strstr(cond_message(t.s, "AgentReady"), "process"));
	assert_int_equal(effects("agent.codeserver_start") - start0, 1);
	_cleanup_json_ json_t *a1 = sim_agent(t.vmid);
	assert_true(json_is_true(json_object_get(a1, "codeserver")));
	assert_string_equal(
	    json_string_value(json_object_get(json_object_get(a1, "payload"), "container_type")),
	    "dev");
	for (int k = 0; k < 2; k++)
		assert_int_equal(apass(&g_rec, t.s).planned, 0);
	json_object_set_new(t.s->spec, "codeServer", json_false());
	drive_ready(&g_rec, t.s, 15000);
	assert_int_equal(effects("agent.codeserver_stop") - stop0, 1);
	assert_int_equal(effects("agent.codeserver_start") - start0, 1);
	_cleanup_json_ json_t *a2 = sim_agent(t.vmid);
	assert_false(json_is_true(json_object_get(a2, "codeserver")));
	assert_int_equal(apass(&g_rec, t.s).planned, 0);
	tsrv_free(&t);
}

static void lease_lost__no_call(void **state)
{
	(void)state;
	TSrv t = game_new("1.21.4");
	g_hooks.lease_ok = false;
	/* the act's own check (the runtime's one is bypassed here on purpose) */
	const Reconciler *rec = g_rec.rec;
	void *snap = NULL, *obs = NULL;
	assert_int_equal(rec->observe(&g_rec.env, &snap), 0);
	assert_int_equal(rec->observe_server(&g_rec.env, t.s, snap, &obs), 0);
	Plan plan;
	memset(&plan, 0, sizeof plan);
	assert_int_equal(rec->plan(g_rec.env.cfg, t.s, snap, obs, &plan), 0);
	const Action *a = NULL;
	for (size_t i = 0; i < plan.n_actions; i++)
		if (strcmp(plan.actions[i].name, "provision") == 0)
			a = &plan.actions[i];
	assert_non_null(a);
	ActResult res = {0};
	assert_int_equal(rec->act(&g_rec.env, t.s, snap, obs, a, &res), -ESTALE);
	plan_clear(&plan);
	rec->obs_free(obs);
	rec->snapshot_free(snap);
	assert_int_equal(agent_requests(t.ip, "POST", "/config"), 0);
	/* the intent stays open and is resumed by the next leader: one POST */
	g_hooks.lease_ok = true;
	drive_ready(&g_rec, t.s, 15000);
	assert_int_equal(agent_requests(t.ip, "POST", "/config"), 1);
	size_t done = 0;
	assert_int_equal(ops_of(t.s->uid, "provision", &done), 1);
	assert_int_equal(done, 1);
	tsrv_free(&t);
}

static void lost_reply__settled_by_observation_one_config(void **state)
{
	(void)state;
	TSrv t = game_new("1.21.4");
	char rule[256];
	snprintf(rule, sizeof rule,
	         "{\"system\":\"agent\",\"method\":\"POST\",\"route\":\"/config\",\"ip\":\"%s\","
	         "\"lost_rate\":1,\"count\":1}",
	         t.ip);
	h_fault(&H, rule);
	APass p = apass(&g_rec, t.s);
	assert_true(p.failed_r < 0); /* no reply: the outcome is unknown */
	assert_int_equal(h_open_ops(&H, t.s->uid), 1);
	drive_ready(&g_rec, t.s, 15000);
	assert_int_equal(effects("agent.config") >= 1, 1);
	assert_int_equal(agent_requests(t.ip, "POST", "/config"), 1); /* adopted, not reposted */
	_cleanup_json_ json_t *ag = sim_agent(t.vmid);
	assert_int_equal(json_integer_value(json_object_get(ag, "configs")), 1);
	assert_int_equal(h_open_ops(&H, t.s->uid), 0);
	tsrv_free(&t);
}

/* --- crash points --------------------------------------------------------------------------------- */

/* argv: --child CONFIG CONNINFO EPOCH UID VMID IP PASSES */
static int child_main(int argc, char **argv)
{
	if (argc < 9)
		return 2;
	http_global_init();
	memset(&H, 0, sizeof H);
	_cleanup_free_ char *errors = NULL;
	if (config_load(argv[2], 0, &H.cfg, &errors) < 0)
		return 3;
	StoreError err = {0};
	int64_t vmid = 0, passes = 0;
	if (store_connect(argv[3], &H.c, &err) < 0 || parse_int64(argv[4], &H.epoch) < 0 ||
	    parse_int64(argv[6], &vmid) < 0 || parse_int64(argv[8], &passes) < 0)
		return 4;
	RuntimeServer *s = NULL;
	if (runtime_server_load(H.c, argv[5], &s, &err) < 0)
		return 5;
	s->vmid = vmid;
	replace_str(&s->ip, argv[7]);
	if (!json_is_array(s->conditions)) {
		json_decref(s->conditions);
		s->conditions = json_array();
	}
	set_cond(s, "ContainerReady", "True", "Running", "running");
	Recon r;
	tr_open(&H, &recon_agent, &r);
	for (int64_t i = 0; i < passes; i++)
		(void)apass(&r, s);
	tr_close(&r);
	runtime_server_free(s);
	PQfinish(H.c);
	config_free(H.cfg);
	return 0;
}

static int run_child(const TSrv *t, const char *crash_at, int passes)
{
	char self[1024];
	ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
	assert_true(n > 0);
	self[n] = 0;
	char epoch[32], vmid[16], np[16];
	snprintf(epoch, sizeof epoch, "%" PRId64, H.epoch);
	snprintf(vmid, sizeof vmid, "%d", t->vmid);
	snprintf(np, sizeof np, "%d", passes);
	const char *argv[] = {self,      "--child", H.cfg_path, H.conninfo, epoch,
	                      t->s->uid, vmid,      t->ip,      np,         NULL};
	char env[128];
	snprintf(env, sizeof env, "ZLH_CRASH_AT=%s", crash_at ? crash_at : "");
	const char *envv[] = {env, NULL};
	return tu_run(argv, envv, NULL, NULL, NULL, 20000);
}

static void crash_points__provision__one_config_each(void **state)
{
	(void)state;
	static const char *const steps[] = {"intent", "call", "handle", "done"};
	for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++) {
		TSrv t = game_new("1.21.4");
		char at[64];
		snprintf(at, sizeof at, "provision:%s", steps[i]);
		int st = run_child(&t, at, 3);
		if (st != 137)
			fail_msg("%s: the child exited %d, not at the crash point", at, st);
		int posted = agent_requests(t.ip, "POST", "/config");
		assert_int_equal(posted, strcmp(steps[i], "intent") == 0 ? 0 : 1);
		drive_ready(&g_rec, t.s, 15000);
		if (agent_requests(t.ip, "POST", "/config") != 1)
			fail_msg("%s: %d POST /config", at,
			         agent_requests(t.ip, "POST", "/config"));
		assert_int_equal(h_open_ops(&H, t.s->uid), 0);
		size_t done = 0;
		assert_int_equal(ops_of(t.s->uid, "provision", &done), 1);
		assert_int_equal(done, 1);
		tsrv_free(&t);
	}
}

static int group_setup(void **state)
{
	(void)state;
	const char *args[] = {"--nodes", "1", "--task-ms", "30", "--unknown-ms", "50", NULL};
	return h_setup(&H, args, "itest-agent");
}

static int group_teardown(void **state)
{
	(void)state;
	h_teardown(&H);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc > 1 && strcmp(argv[1], "--child") == 0)
		return child_main(argc, argv);
	if (!tu_pg_admin()) {
		fprintf(stderr, "itest-agent: $ZLH_TEST_PG not set, skipping\n");
		return 0;
	}
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(client__routes_against_sim, test_setup, test_teardown),
	    cmocka_unit_test_setup_teardown(provision__once_then_ready_then_no_post, test_setup,
	                                    test_teardown),
	    cmocka_unit_test_setup_teardown(version_change__exactly_one_new_post, test_setup,
	                                    test_teardown),
	    cmocka_unit_test_setup_teardown(remade_container__new_incarnation__provisioned_again,
	                                    test_setup, test_teardown),
	    cmocka_unit_test_setup_teardown(agent_lost_config__reprovisioned_after_grace,
	                                    test_setup, test_teardown),
	    cmocka_unit_test_setup_teardown(unreachable_and_hang__conditions_bounded, test_setup,
	                                    test_teardown),
	    cmocka_unit_test_setup_teardown(crashed__degraded_event_once_no_restart, test_setup,
	                                    test_teardown),
	    cmocka_unit_test_setup_teardown(never_ready__waits_without_posting, test_setup,
	                                    test_teardown),
	    cmocka_unit_test_setup_teardown(devserver__codeserver_follows_spec, test_setup,
	                                    test_teardown),
	    cmocka_unit_test_setup_teardown(lease_lost__no_call, test_setup, test_teardown),
	    cmocka_unit_test_setup_teardown(lost_reply__settled_by_observation_one_config,
	                                    test_setup, test_teardown),
	    cmocka_unit_test_setup_teardown(crash_points__provision__one_config_each, test_setup,
	                                    test_teardown),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
