/* itest-proxy-harness.h - what itest-proxy*.c and itest-dns*.c share: a
 * zlh-sim, a fresh migrated database holding the lease, the sim's config
 * loaded as the controller would load it, and a miniature runtime that
 * drives ONE reconciler through its vtable the way controller/loop.c does
 * for one key: observe (bulk) -> observe_server -> plan | finalize -> act
 * each action in order, stopping at the first failure or wait.
 *
 * A test binary that includes it can also run as a child ("--child ..."):
 * one or more passes in a separate process, so ZLH_CRASH_AT can kill it
 * at a crash point (lib/crash.h) while the parent keeps its sim and
 * database. Every wait is bounded. */
#pragma once

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>
#include <libpq-fe.h>

#include "controller/config.h"
#include "controller/reconciler.h"
#include "db/journal.h"
#include "db/runtime.h"
#include "db/store.h"
#include "http.h"
#include "specs/crd.h"
#include "specs/spec.h"
#include "test/lib/testutil.h"
#include "test/sim/simtest.h"
#include "util.h"

typedef struct Harness {
	SimProc sim;
	char *db, *conninfo;
	PGconn *c;
	int64_t epoch;
	Config *cfg;
	HttpClient *ctl; /* the sim's control endpoint */
	char cfg_path[600]; /* the config written for children */
} Harness;

/* --- hooks: the runtime's services, as tests want them ------------------------------- */

typedef struct HookState {
	bool lease_ok;
	int calls; /* count_call */
	int calls_by_status[6]; /* 0: no answer, 2: 2xx, 4: 4xx, 5: 5xx */
	int events;
	char last_event_reason[64];
	int rate_waits;
} HookState;

static HookState g_hooks = {.lease_ok = true};

static inline bool h_lease_valid(void *ctx)
{
	return ((HookState *)ctx)->lease_ok;
}

static inline int h_rate_wait(void *ctx, const char *system)
{
	(void)system;
	((HookState *)ctx)->rate_waits++;
	return 0;
}

static inline void h_count_call(void *ctx, const char *system, const char *method, long status)
{
	(void)system;
	(void)method;
	HookState *h = ctx;
	h->calls++;
	int k = (int)(status / 100);
	h->calls_by_status[k >= 0 && k < 6 ? k : 0]++;
}

static inline void h_event(void *ctx, const RuntimeServer *srv, const char *type,
                           const char *reason, const char *message)
{
	(void)srv;
	(void)type;
	(void)message;
	HookState *h = ctx;
	h->events++;
	snprintf(h->last_event_reason, sizeof h->last_event_reason, "%s", reason);
}

static inline bool h_stopping(void *ctx)
{
	(void)ctx;
	return false;
}

static const RuntimeHooks g_runtime_hooks = {
    .lease_valid = h_lease_valid,
    .rate_wait = h_rate_wait,
    .count_call = h_count_call,
    .event = h_event,
    .stopping = h_stopping,
};

/* --- setup ------------------------------------------------------------------------------- */

static inline int h_load_kinds(json_t **ret)
{
	_cleanup_free_ char *dir = NULL;
	if (crd_dir_find(NULL, &dir) < 0)
		return -ENOENT;
	_cleanup_spec_errors_ SpecErrors errs = SPEC_ERRORS_INIT;
	_cleanup_crd_set_ CrdSet *set = NULL;
	int r = crd_set_load(dir, &set, &errs);
	if (r < 0) {
		spec_errors_print(&errs, stderr);
		return r;
	}
	*ret = crd_set_to_json(set);
	return *ret ? 0 : -ENOMEM;
}

/* Database (migrated, lease held) and config of an already started sim. */
static inline int h_open_world(Harness *h, const char *holder)
{
	_cleanup_free_ char *mig = tu_src("db/migrations");
	_cleanup_json_ json_t *kinds = NULL;
	StoreError err = {0};
	if (!mig || h_load_kinds(&kinds) < 0 || tu_db_create(&h->db, &h->conninfo) < 0)
		return -EIO;
	if (store_connect(h->conninfo, &h->c, &err) < 0 ||
	    store_migrate(h->c, mig, kinds, &err) < 0) {
		fprintf(stderr, "setup: %s\n", err.message);
		return -EIO;
	}
	LeaseClaim lc = {0};
	if (runtime_lease_claim(h->c, RUNTIME_LEASE_DEFAULT, holder, 0, 600000, &lc, &err) < 0 ||
	    !lc.acquired) {
		fprintf(stderr, "lease: %s\n", err.message);
		return -EIO;
	}
	h->epoch = lc.epoch;
	_cleanup_free_ char *errors = NULL;
	if (config_load_string("zlh-sim", h->sim.config, 0, &h->cfg, &errors) < 0) {
		fprintf(stderr, "config: %s\n", errors ? errors : "?");
		return -EINVAL;
	}
	snprintf(h->cfg_path, sizeof h->cfg_path, "%s/itest-controller.yaml", h->sim.state_dir);
	if (tu_write_file(h->cfg_path, h->sim.config) < 0)
		return -EIO;
	HttpOptions o = {.timeout_ms = 10000};
	h->ctl = http_client_new(&o);
	return h->ctl ? 0 : -ENOMEM;
}

static inline int h_setup(Harness *h, const char *const *sim_args, const char *holder)
{
	memset(h, 0, sizeof *h);
	http_global_init();
	if (simtest_start(&h->sim, sim_args, 15000) < 0) {
		fprintf(stderr, "zlh-sim did not start\n");
		return -EIO;
	}
	return h_open_world(h, holder);
}

static inline void h_teardown(Harness *h)
{
	h->ctl = http_client_free(h->ctl);
	h->cfg = config_free(h->cfg);
	if (h->c)
		PQfinish(h->c);
	h->c = NULL;
	if (h->db)
		tu_db_drop(h->db);
	free(h->db);
	free(h->conninfo);
	h->db = h->conninfo = NULL;
	if (h->sim.pid > 0)
		simtest_stop(&h->sim);
}

/* --- the sim's control endpoint ------------------------------------------------------------ */

/* A control call; *ret_or_NULL (new) the JSON answer. Returns the HTTP
 * status or -errno. */
static inline long h_ctl(Harness *h, const char *method, const char *path, const char *body,
                         json_t **ret_or_NULL)
{
	char url[256];
	snprintf(url, sizeof url, "%s%s", h->sim.control_url, path);
	const char *hdr[] = {"Content-Type: application/json", NULL};
	HttpResponse resp = {.retry_after_s = -1};
	int r = http_request(h->ctl, method, url, hdr, body, body ? strlen(body) : 0, false, &resp);
	if (r < 0) {
		http_response_clear(&resp);
		return r;
	}
	long st = resp.status;
	if (ret_or_NULL) {
		json_error_t e;
		*ret_or_NULL = json_loadb(resp.body.data, resp.body.len, 0, &e);
	}
	http_response_clear(&resp);
	return st;
}

static inline json_t *h_stats(Harness *h)
{
	json_t *j = NULL;
	if (h_ctl(h, "GET", "/_sim/stats", NULL, &j) != 200 || !j)
		fail_msg("GET /_sim/stats failed");
	return j;
}

/* stats[a][b][c]... as an integer (0 when absent). */
static inline int64_t h_stat(const json_t *stats, const char *a, const char *b, const char *c)
{
	json_t *v = json_object_get(stats, a);
	if (b)
		v = json_object_get(v, b);
	if (c)
		v = json_object_get(v, c);
	return json_is_integer(v) ? json_integer_value(v) : 0;
}

static inline void h_fault(Harness *h, const char *rule)
{
	long st = h_ctl(h, "POST", "/_sim/faults", rule, NULL);
	if (st != 200)
		fail_msg("POST /_sim/faults %s: %ld", rule, st);
}

static inline void h_faults_clear(Harness *h)
{
	assert_int_equal(h_ctl(h, "DELETE", "/_sim/faults", NULL, NULL), 200);
}

/* --- servers --------------------------------------------------------------------------------- */

/* A server row as runtime_server_load would return it (new). */
static inline RuntimeServer *h_server(const char *kind, const char *uid, const char *hostname,
                                      const char *ip, bool agent_ready)
{
	RuntimeServer *s = calloc(1, sizeof *s);
	assert_non_null(s);
	snprintf(s->uid, sizeof s->uid, "%s", uid);
	s->kind = strdup(kind);
	s->owner = strdup("user-42");
	s->name = strdup(hostname ? hostname : "x");
	s->generation = 1;
	s->spec = json_pack("{s:b, s:s}", "publish", 1, "power", "running");
	s->labels = json_object();
	s->annotations = json_object();
	s->finalizers = calloc(1, sizeof(char *));
	char now[40];
	time_format_rfc3339(now_wall_ms() - 3600000, now, sizeof now);
	s->conditions = json_pack("[{s:s, s:s, s:s, s:s, s:s}]", "type", "AgentReady", "status",
	                          agent_ready ? "True" : "False", "reason", "Test", "message", "",
	                          "lastTransitionTime", now);
	s->vmid = 5000;
	s->node = strdup("pve1");
	s->ip = ip ? strdup(ip) : NULL;
	s->hostname = hostname ? strdup(hostname) : NULL;
	return s;
}

/* --- the miniature runtime --------------------------------------------------------------------- */

typedef struct Recon {
	const Reconciler *rec;
	void *state, *wstate;
	RecEnv env;
} Recon;

static inline void tr_open(Harness *h, const Reconciler *rec, Recon *r)
{
	memset(r, 0, sizeof *r);
	r->rec = rec;
	assert_true(rec->enabled(h->cfg));
	if (rec->init)
		assert_int_equal(rec->init(h->cfg, &r->state), 0);
	if (rec->worker_init)
		assert_int_equal(rec->worker_init(h->cfg, r->state, &r->wstate), 0);
	r->env = (RecEnv){
	    .cfg = h->cfg,
	    .db = h->c,
	    .epoch = h->epoch,
	    .state = r->state,
	    .wstate = r->wstate,
	    .hooks = &g_runtime_hooks,
	    .hooks_ctx = &g_hooks,
	};
}

static inline void tr_close(Recon *r)
{
	if (r->rec->worker_done)
		r->rec->worker_done(r->wstate);
	if (r->rec->done)
		r->rec->done(r->state);
	memset(r, 0, sizeof *r);
}

typedef struct PassResult {
	int observe_r; /* < 0: the bulk observation failed (no plan ran) */
	int planned; /* actions the plan held */
	int acted; /* actions performed (returned 0) */
	int failed_r; /* the failing act's return (0 when none) */
	char error[256];
	int64_t requeue_after_ms; /* asked by an act */
	CondReport cond; /* the plan's report of the reconciler's condition */
	char actions[PLAN_MAX_ACTIONS][32];
} PassResult;

/* One pass over srv, like controller/loop.c for one reconciler. */
static inline PassResult tr_pass(Recon *r, RuntimeServer *srv)
{
	PassResult pr;
	memset(&pr, 0, sizeof pr);
	const Reconciler *rec = r->rec;
	void *snap = NULL, *obs = NULL;
	pr.observe_r = rec->observe(&r->env, &snap);
	if (pr.observe_r < 0)
		return pr;
	if (rec->observe_server)
		assert_int_equal(rec->observe_server(&r->env, srv, snap, &obs), 0);
	Plan plan;
	memset(&plan, 0, sizeof plan);
	int k = srv->deleting ? rec->finalize(r->env.cfg, srv, snap, obs, &plan)
	                      : rec->plan(r->env.cfg, srv, snap, obs, &plan);
	assert_int_equal(k, 0);
	pr.planned = (int)plan.n_actions;
	pr.cond = plan.conditions[rec->conditions[0]];
	for (size_t i = 0; i < plan.n_actions; i++) {
		const Action *a = &plan.actions[i];
		snprintf(pr.actions[i], sizeof pr.actions[i], "%s", a->name);
		if (a->mutating && !rec_lease_valid(&r->env))
			break; /* the runtime checks before each act */
		ActResult res = {0};
		k = rec->act(&r->env, srv, snap, obs, a, &res);
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
	plan_clear(&plan);
	if (obs && rec->obs_free)
		rec->obs_free(obs);
	if (snap && rec->snapshot_free)
		rec->snapshot_free(snap);
	return pr;
}

/* Passes until one plans nothing (converged); at most max. Returns the
 * number of passes that acted, or -1 when it never converged. *last gets
 * the converged pass. */
static inline int tr_converge(Recon *r, RuntimeServer *srv, int max, PassResult *last)
{
	for (int i = 0; i < max; i++) {
		PassResult pr = tr_pass(r, srv);
		if (last)
			*last = pr;
		if (pr.observe_r >= 0 && pr.planned == 0)
			return i;
	}
	return -1;
}

static inline int64_t h_open_ops(Harness *h, const char *uid)
{
	int64_t n = -1;
	StoreError err = {0};
	assert_int_equal(journal_open_count(h->c, uid, &n, &err), 0);
	return n;
}

/* How many operations of action the server has (any step). */
static inline size_t h_ops_of(Harness *h, const char *uid, const char *action, size_t *ret_done)
{
	JournalOp *ops = NULL;
	size_t n = 0, k = 0, done = 0;
	StoreError err = {0};
	assert_true(journal_list(h->c, uid, 1000, &ops, &n, &err) >= 0);
	for (size_t i = 0; i < n; i++)
		if (strcmp(ops[i].action, action) == 0) {
			k++;
			done += ops[i].step == JOURNAL_STEP_DONE;
		}
	journal_ops_free(ops, n);
	if (ret_done)
		*ret_done = done;
	return k;
}

/* --- child mode: passes in a process of their own (crash points) ------------------------------ */

/* argv: --child CONFIG CONNINFO EPOCH RECONCILER KIND UID HOSTNAME IP PASSES [deleting]
 * Exits 0 after the passes (137 when a crash point fired). */
static inline int h_child_main(int argc, char **argv, const Reconciler *rec)
{
	if (argc < 11)
		return 2;
	http_global_init();
	Harness h;
	memset(&h, 0, sizeof h);
	_cleanup_free_ char *errors = NULL;
	if (config_load(argv[2], 0, &h.cfg, &errors) < 0)
		return 3;
	StoreError err = {0};
	if (store_connect(argv[3], &h.c, &err) < 0 || parse_int64(argv[4], &h.epoch) < 0)
		return 4;
	int64_t passes = 1;
	if (parse_int64(argv[10], &passes) < 0)
		return 5;
	RuntimeServer *srv = h_server(argv[6], argv[7], argv[8], argv[9], true);
	srv->deleting = argc > 11 && strcmp(argv[11], "deleting") == 0;
	Recon r;
	tr_open(&h, rec, &r);
	for (int64_t i = 0; i < passes; i++)
		tr_pass(&r, srv);
	tr_close(&r);
	runtime_server_free(srv);
	PQfinish(h.c);
	config_free(h.cfg);
	return 0;
}

/* Runs passes of the reconciler named rec_name in a child under
 * ZLH_CRASH_AT=crash_at (NULL: none). Returns the exit status. */
static inline int h_run_child(Harness *h, const char *rec_name, const char *crash_at,
                              const char *kind, const char *uid, const char *hostname,
                              const char *ip, int passes, bool deleting)
{
	char self[1024];
	ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
	assert_true(n > 0);
	self[n] = 0;
	char epoch[32], np[16];
	snprintf(epoch, sizeof epoch, "%" PRId64, h->epoch);
	snprintf(np, sizeof np, "%d", passes);
	const char *argv[] = {self,     "--child", h->cfg_path, h->conninfo,
	                      epoch,    rec_name,  kind,        uid,
	                      hostname, ip,        np,          deleting ? "deleting" : NULL,
	                      NULL};
	char env[128];
	snprintf(env, sizeof env, "ZLH_CRASH_AT=%s", crash_at ? crash_at : "");
	const char *envv[] = {env, NULL};
	return tu_run(argv, envv, NULL, NULL, NULL, 20000);
}
