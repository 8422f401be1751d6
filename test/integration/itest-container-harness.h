/* itest-container-harness.h - the container reconciler against zlh-sim and
 * a real PostgreSQL, for itest-container*.c and bench/.
 *
 * The controller is the real $ZLH_BIN/zlh-controller (its registry lists
 * the container reconciler); the config keeps only the proxmox and network
 * sections, so the other reconcilers are switched off. ZLH_CRASH_AT makes
 * it _exit(137) at a crash point. With $ZLH_ITEST_SELF_CONTROLLER=1 the
 * test binary runs the controller itself instead (`<test binary>
 * --as-controller CONFIG`, CT_MAIN_HOOK in main): the same Controller as
 * zlh-controller's main with only the container reconciler, whatever the
 * registry lists.
 *
 * Every wait is bounded by a deadline; nothing sleeps blindly. */
#pragma once

#include <errno.h>
#include <inttypes.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>
#include <libpq-fe.h>

#include "buf.h"
#include "controller/config.h"
#include "controller/loop.h"
#include "db/journal.h"
#include "db/store.h"
#include "http.h"
#include "log.h"
#include "reconcilers/container_recon.h"
#include "specs/crd.h"
#include "test/lib/testutil.h"
#include "test/sim/simtest.h"
#include "util.h"

#define CT_MAX_SERVERS 512

typedef enum CtTestMode {
	CTT_CREATE,
	CTT_CLONE,
} CtTestMode;

typedef struct CT {
	SimProc sim;
	bool sim_up;
	char *dir, *db, *conninfo;
	PGconn *conn;
	char cfg[700];
	char log[700];
	pid_t ctl;
	bool ctl_running;
	int starts;
	HttpClient *http;
	char owner[32];
	int n;
	char uid[CT_MAX_SERVERS][37];
	char name[CT_MAX_SERVERS][32];
} CT;

/* --- the controller as a child of the test binary ---------------------------------- */

static inline int ct_as_controller(const char *path)
{
	log_set_level(LOG_INFO);
	_cleanup_config_ Config *cfg = NULL;
	_cleanup_free_ char *errors = NULL;
	if (config_load(path, 0, &cfg, &errors) < 0) {
		fputs(errors ? errors : "invalid configuration\n", stderr);
		return 1;
	}
	sigset_t mask;
	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGHUP);
	if (pthread_sigmask(SIG_BLOCK, &mask, NULL) != 0)
		return 1;
	int sigfd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
	if (sigfd < 0)
		return 1;
	signal(SIGPIPE, SIG_IGN);
	http_global_init();
	PGconn *conn = NULL;
	StoreError err;
	if (store_connect(cfg->database, &conn, &err) < 0) {
		fprintf(stderr, "database: %s\n", err.message);
		return 1;
	}
	static const Reconciler *const recs[] = {&recon_container, NULL};
	ControllerOptions o = {.cfg = cfg, .reconcilers = recs, .conn = conn, .signal_fd = sigfd};
	Controller *ctl = NULL;
	if (controller_new(&o, &ctl) < 0)
		return 1;
	int st = controller_run(ctl);
	controller_free(ctl);
	close(sigfd);
	return st;
}

/* Call first thing in main: runs the controller when asked to. */
#define CT_MAIN_HOOK(argc, argv)                                              \
	do {                                                                  \
		if ((argc) >= 3 && strcmp((argv)[1], "--as-controller") == 0) \
			return ct_as_controller((argv)[2]);                   \
	} while (0)

/* --- small helpers --------------------------------------------------------------------- */

static inline void ct_sleep_ms(int64_t ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
	nanosleep(&ts, NULL);
}

static inline int64_t ct_env_int(const char *name, int64_t dflt)
{
	const char *v = getenv(name);
	int64_t x;
	return v && parse_int64(v, &x) == 0 ? x : dflt;
}

/* GET/POST/PUT/DELETE url; JSON answer (new) in *ret (NULL when not JSON).
 * Returns the HTTP status or a negative errno. */
static inline long ct_http(CT *t, const char *method, const char *url, const char *auth,
                           const char *ctype, const char *body, json_t **ret)
{
	const char *headers[3] = {NULL, NULL, NULL};
	int k = 0;
	if (auth)
		headers[k++] = auth;
	if (ctype)
		headers[k++] = ctype;
	HttpResponse resp = {0};
	int r =
	    http_request(t->http, method, url, headers, body, body ? strlen(body) : 0, true, &resp);
	long st = r < 0 ? r : resp.status;
	if (ret) {
		*ret = NULL;
		if (r == 0 && resp.body.data)
			*ret = json_loads(resp.body.data, 0, NULL);
	}
	http_response_clear(&resp);
	return st;
}

static inline json_t *ct_sim_get(CT *t, const char *path)
{
	char url[512];
	snprintf(url, sizeof url, "%s%s", t->sim.control_url, path);
	json_t *j = NULL;
	long st = ct_http(t, "GET", url, NULL, NULL, NULL, &j);
	if (st != 200) {
		json_decref(j);
		return NULL;
	}
	return j;
}

static inline long ct_sim_post(CT *t, const char *path, const char *body)
{
	char url[512];
	snprintf(url, sizeof url, "%s%s", t->sim.control_url, path);
	return ct_http(t, "POST", url, NULL, "Content-Type: application/json", body, NULL);
}

static inline long ct_pve(CT *t, const char *method, const char *path, const char *form,
                          json_t **ret)
{
	char url[512];
	snprintf(url, sizeof url, "%s/api2/json%s", t->sim.pve_url, path);
	return ct_http(t, method, url, t->sim.pve_auth,
	               form ? "Content-Type: application/x-www-form-urlencoded" : NULL, form, ret);
}

static inline int64_t ct_sql_int(CT *t, const char *sql, const char *p1)
{
	const char *vals[] = {p1};
	PGresult *res = PQexecParams(t->conn, sql, p1 ? 1 : 0, NULL, vals, NULL, NULL, 0);
	int64_t v = -1;
	if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) > 0 && !PQgetisnull(res, 0, 0))
		(void)!parse_int64(PQgetvalue(res, 0, 0), &v);
	else if (PQresultStatus(res) != PGRES_TUPLES_OK)
		fprintf(stderr, "sql: %s: %s\n", sql, PQerrorMessage(t->conn));
	PQclear(res);
	return v;
}

static inline char *ct_sql_text(CT *t, const char *sql, const char *p1)
{
	const char *vals[] = {p1};
	PGresult *res = PQexecParams(t->conn, sql, p1 ? 1 : 0, NULL, vals, NULL, NULL, 0);
	char *out = NULL;
	if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) > 0 && !PQgetisnull(res, 0, 0))
		out = strdup(PQgetvalue(res, 0, 0));
	PQclear(res);
	return out;
}

static inline bool h_log_has(CT *t, const char *needle)
{
	_cleanup_free_ char *data = NULL;
	size_t len;
	return file_read_all(t->log, 64 << 20, &data, &len) == 0 && strstr(data, needle);
}

static inline void ct_dump_log(CT *t)
{
	_cleanup_free_ char *data = NULL;
	size_t len;
	if (file_read_all(t->log, 64 << 20, &data, &len) == 0) {
		const char *tail = len > 8000 ? data + len - 8000 : data;
		fprintf(stderr, "---- %s (last part)\n%s\n----\n", t->log, tail);
	}
}

/* --- setup --------------------------------------------------------------------------------- */

static inline void ct_migrate(const char *conninfo)
{
	PGconn *c = NULL;
	StoreError err = {0};
	if (store_connect(conninfo, &c, &err) < 0)
		fail_msg("connect: %s", err.message);
	_cleanup_free_ char *crds = NULL, *mdir = NULL;
	assert_int_equal(crd_dir_find(NULL, &crds), 0);
	CrdSet *set = NULL;
	SpecErrors errs = {0};
	assert_int_equal(crd_set_load(crds, &set, &errs), 0);
	json_t *kinds = crd_set_to_json(set);
	assert_non_null(kinds);
	assert_int_equal(store_migrations_dir_find(NULL, &mdir), 0);
	if (store_migrate(c, mdir, kinds, &err) < 0)
		fail_msg("migrate: %s", err.message);
	json_decref(kinds);
	crd_set_free(set);
	spec_errors_clear(&errs);
	PQfinish(c);
}

/* Writes the controller config from the sim's: our database, the
 * controller section, only proxmox and network (the container
 * reconciler's), create or clone mode. */
static inline void ct_write_config(CT *t, CtTestMode mode, const char *controller_yaml)
{
	Buf b = BUF_INIT;
	assert_true(buf_printf(&b, "database: \"%s\"\ncontroller: {%s}\n", t->conninfo,
	                       controller_yaml) >= 0);
	const char *p = strstr(t->sim.config, "\nproxmox:");
	const char *end = strstr(t->sim.config, "\nagent:");
	assert_non_null(p);
	assert_non_null(end);
	p++;
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t l = nl ? (size_t)(nl - p) : (size_t)(end - p);
		if (mode == CTT_CREATE && l > 16 && strncmp(p, "  template_vmid:", 16) == 0)
			assert_true(
			    buf_puts(&b,
			             "  ostemplate: "
			             "\"local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst\"") >=
			    0);
		else
			assert_true(buf_append(&b, p, l) >= 0);
		assert_true(buf_puts(&b, "\n") >= 0);
		p += l + 1;
	}
	snprintf(t->cfg, sizeof t->cfg, "%s/controller.yaml", t->dir);
	assert_int_equal(tu_write_file(t->cfg, b.data), 0);
	buf_done(&b);
}

/* sim_args: NULL-terminated extra zlh-sim flags (or NULL). */
static inline void ct_setup(CT *t, CtTestMode mode, const char *const *sim_args,
                            const char *controller_yaml)
{
	memset(t, 0, sizeof *t);
	if (!tu_pg_admin())
		skip();
	t->dir = tu_tempdir();
	assert_non_null(t->dir);
	assert_int_equal(tu_db_create(&t->db, &t->conninfo), 0);
	ct_migrate(t->conninfo);
	StoreError err;
	assert_int_equal(store_connect(t->conninfo, &t->conn, &err), 0);
	HttpOptions ho = {.timeout_ms = 10000};
	t->http = http_client_new(&ho);
	assert_non_null(t->http);
	char simlog[720];
	snprintf(simlog, sizeof simlog, "%s/sim.log", t->dir);
	const char *slog = getenv("ZLH_SIM_LOG") ? getenv("ZLH_SIM_LOG") : simlog;
	assert_int_equal(simtest_start_log(&t->sim, sim_args, 20000, slog), 0);
	t->sim_up = true;
	ct_write_config(t, mode,
	                controller_yaml ? controller_yaml
	                                : "workers: 4, resync: 2s, lease: 2s, drain_timeout: 5s, "
	                                  "rate: {proxmox: 2000}");
	snprintf(t->owner, sizeof t->owner, "itest-%d", (int)getpid());
	/* Enough quota for the scale knob. */
	PGresult *res = PQexecParams(
	    t->conn,
	    "INSERT INTO zlh.quotas (owner, max_servers, max_memory_mib) VALUES ($1, 1000, "
	    "10000000) ON CONFLICT (owner) DO UPDATE SET max_servers = 1000, "
	    "max_memory_mib = 10000000",
	    1, NULL, (const char *const[]){t->owner}, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_COMMAND_OK)
		fprintf(stderr, "quota: %s\n", PQerrorMessage(t->conn));
	PQclear(res);
}

/* Replaces the first occurrence of from in the controller config. */
static inline void ct_config_replace(CT *t, const char *from, const char *to)
{
	_cleanup_free_ char *data = NULL;
	size_t len;
	assert_int_equal(file_read_all(t->cfg, 1 << 20, &data, &len), 0);
	char *p = strstr(data, from);
	assert_non_null(p);
	Buf b = BUF_INIT;
	assert_true(buf_append(&b, data, (size_t)(p - data)) >= 0);
	assert_true(buf_puts(&b, to) >= 0);
	assert_true(buf_puts(&b, p + strlen(from)) >= 0);
	assert_int_equal(tu_write_file(t->cfg, b.data), 0);
	buf_done(&b);
}

/* Starts the controller (env: NULL-terminated "K=V" list or NULL). */
static inline void ct_start(CT *t, const char *const *env)
{
	assert_false(t->ctl_running);
	snprintf(t->log, sizeof t->log, "%s/controller-%d.log", t->dir, t->starts++);
	char self[1024];
	ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
	assert_true(n > 0);
	self[n] = 0;
	_cleanup_free_ char *real = tu_bin("zlh-controller");
	const char *v = getenv("ZLH_ITEST_SELF_CONTROLLER");
	bool use_real = !(v && strcmp(v, "1") == 0);
	const char *argv_self[] = {self, "--as-controller", t->cfg, NULL};
	const char *argv_real[] = {real, "-c", t->cfg, NULL};
	pid_t pid = tu_spawn(use_real ? argv_real : argv_self, env, t->log);
	assert_true(pid > 0);
	t->ctl = pid;
	t->ctl_running = true;
}

/* Stops it with sig; returns the wait status. */
static inline int ct_stop(CT *t, int sig)
{
	if (!t->ctl_running)
		return 0;
	int st = tu_stop(t->ctl, sig, 20000);
	t->ctl_running = false;
	return st;
}

static inline void ct_teardown(CT *t)
{
	if (t->ctl_running)
		ct_stop(t, SIGKILL);
	if (t->sim_up)
		simtest_stop(&t->sim);
	http_client_free(t->http);
	if (t->conn)
		PQfinish(t->conn);
	if (t->db)
		tu_db_drop(t->db);
	free(t->db);
	free(t->conninfo);
	if (t->dir && getenv("ZLH_ITEST_KEEP"))
		fprintf(stderr, "# kept %s\n", t->dir);
	else if (t->dir)
		tu_rmrf(t->dir);
	free(t->dir);
}

/* --- servers ------------------------------------------------------------------------------- */

/* Applies server i (name s<i>) of kind "GameServer" or "DevServer"; extra:
 * JSON object merged into spec (or NULL). */
static inline void ct_apply_kind(CT *t, int i, const char *kind, const char *spec_extra)
{
	assert_true(i < CT_MAX_SERVERS);
	snprintf(t->name[i], sizeof t->name[i], "s%03d", i);
	bool dev = strcmp(kind, "DevServer") == 0;
	json_t *doc = json_pack("{s:s, s:s, s:{s:s, s:s}, s:{s:s, s:s, s:{s:i, s:i, s:i}}}",
	                        "apiVersion", "zlh.dev/v1", "kind", kind, "metadata", "name",
	                        t->name[i], "owner", t->owner, "spec", dev ? "runtime" : "variant",
	                        dev ? "node" : "paper", "version", dev ? "22" : "1.21.4",
	                        "resources", "cores", 1, "memoryMiB", 1024, "diskGiB", 8);
	assert_non_null(doc);
	if (spec_extra) {
		json_t *x = json_loads(spec_extra, 0, NULL);
		assert_non_null(x);
		json_object_update(json_object_get(doc, "spec"), x);
		json_decref(x);
	}
	json_t *res = NULL;
	StoreError err = {0};
	if (store_apply_server(t->conn, doc, NULL, &res, &err) < 0)
		fail_msg("apply %s: %s", t->name[i], err.message);
	snprintf(t->uid[i], 37, "%s", json_string_value(json_object_get(res, "uid")));
	json_decref(res);
	json_decref(doc);
	if (i >= t->n)
		t->n = i + 1;
}

static inline void ct_apply(CT *t, int i, const char *spec_extra)
{
	ct_apply_kind(t, i, "GameServer", spec_extra);
}

static inline void ct_delete(CT *t, int i)
{
	StoreError err = {0};
	if (store_delete_server(t->conn, t->owner, t->name[i], NULL, &err) < 0)
		fail_msg("delete %s: %s", t->name[i], err.message);
}

/* The sim's non-template containers by uid: count[i] for t->uid[i], and
 * running[i]; *others: containers of no uid we know (foreign or strays). */
typedef struct CtWorld {
	int count[CT_MAX_SERVERS];
	bool running[CT_MAX_SERVERS];
	int64_t vmid[CT_MAX_SERVERS];
	int64_t memory[CT_MAX_SERVERS];
	int others;
	int total; /* non-template containers */
} CtWorld;

static inline bool ct_world(CT *t, CtWorld *w)
{
	memset(w, 0, sizeof *w);
	_cleanup_json_ json_t *st = ct_sim_get(t, "/_sim/state");
	if (!st)
		return false;
	size_t k;
	json_t *c;
	json_array_foreach(json_object_get(st, "containers"), k, c)
	{
		if (json_is_true(json_object_get(c, "template")))
			continue;
		w->total++;
		const char *uid = json_string_value(json_object_get(c, "uid"));
		int found = -1;
		for (int i = 0; uid && i < t->n; i++)
			if (strcmp(t->uid[i], uid) == 0)
				found = i;
		if (found < 0) {
			w->others++;
			continue;
		}
		w->count[found]++;
		const char *status = json_string_value(json_object_get(c, "status"));
		const char *lock = json_string_value(json_object_get(c, "lock"));
		w->running[found] = status && strcmp(status, "running") == 0 && !lock;
		w->vmid[found] = json_integer_value(json_object_get(c, "vmid"));
		w->memory[found] =
		    json_integer_value(json_object_get(json_object_get(c, "config"), "memory"));
	}
	return true;
}

/* Servers [from, to) whose ContainerReady is True. */
static inline int64_t ct_ready_count(CT *t)
{
	return ct_sql_int(t,
	                  "SELECT count(*) FROM zlh.servers s JOIN zlh.server_status st USING (uid)"
	                  " WHERE s.owner = $1 AND EXISTS (SELECT 1 FROM "
	                  "jsonb_array_elements(st.conditions) c WHERE c->>'type' = "
	                  "'ContainerReady' AND c->>'status' = 'True')",
	                  t->owner);
}

typedef struct ConvWait {
	CT *t;
	int from, to; /* servers that must each have one running container */
	int64_t ready; /* ContainerReady True count wanted */
} ConvWait;

static inline bool ct_converged_cond(void *ctx)
{
	ConvWait *cw = ctx;
	CtWorld w;
	if (!ct_world(cw->t, &w))
		return false;
	for (int i = cw->from; i < cw->to; i++)
		if (w.count[i] != 1 || !w.running[i])
			return false;
	return ct_ready_count(cw->t) >= cw->ready;
}

/* Waits until servers [from, to) each have exactly one running container
 * and `ready` servers report ContainerReady True. */
static inline bool ct_wait_converged(CT *t, int from, int to, int64_t ready, int64_t timeout_ms)
{
	ConvWait cw = {t, from, to, ready};
	return tu_wait_until(ct_converged_cond, &cw, timeout_ms);
}

static inline bool ct_no_servers_cond(void *ctx)
{
	CT *t = ctx;
	return ct_sql_int(t, "SELECT count(*) FROM zlh.servers WHERE owner = $1", t->owner) == 0;
}

/* stats.max.containers_per_uid.max: the most containers one uid ever had. */
static inline int64_t ct_max_per_uid(CT *t)
{
	_cleanup_json_ json_t *s = ct_sim_get(t, "/_sim/stats");
	json_t *m = json_object_get(
	    json_object_get(json_object_get(s, "max"), "containers_per_uid"), "max");
	return json_is_integer(m) ? json_integer_value(m) : -1;
}

static inline int64_t ct_side_effect(CT *t, const char *name)
{
	_cleanup_json_ json_t *s = ct_sim_get(t, "/_sim/stats");
	return json_integer_value(json_object_get(json_object_get(s, "side_effects"), name));
}

/* Events of server i with reason. */
static inline int64_t ct_events(CT *t, int i, const char *reason)
{
	const char *vals[] = {t->uid[i], reason};
	PGresult *res = PQexecParams(
	    t->conn, "SELECT count(*) FROM zlh.events WHERE uid = $1::uuid AND reason = $2", 2,
	    NULL, vals, NULL, NULL, 0);
	int64_t v = -1;
	if (PQresultStatus(res) == PGRES_TUPLES_OK)
		(void)!parse_int64(PQgetvalue(res, 0, 0), &v);
	PQclear(res);
	return v;
}

/* The highest request-log sequence number so far. */
static inline int64_t ct_log_seq(CT *t)
{
	_cleanup_json_ json_t *s = ct_sim_get(t, "/_sim/stats");
	return json_integer_value(json_object_get(json_object_get(s, "requests"), "total"));
}

/* Proxmox requests after seq: *ret_mutating the non-GET ones, *ret_lists
 * the /cluster/resources GETs; the first mutating path into first (may be NULL). */
static inline void ct_pve_requests_since(CT *t, int64_t seq, int64_t *ret_mutating,
                                         int64_t *ret_lists, char *first, size_t n)
{
	*ret_mutating = 0;
	*ret_lists = 0;
	if (first)
		first[0] = 0;
	for (;;) {
		char path[128];
		snprintf(path, sizeof path, "/_sim/requests?system=pve&limit=5000&since=%" PRId64,
		         seq);
		_cleanup_json_ json_t *r = ct_sim_get(t, path);
		json_t *reqs = json_object_get(r, "requests");
		if (!json_array_size(reqs))
			return;
		size_t k;
		json_t *q;
		json_array_foreach(reqs, k, q)
		{
			const char *m = json_string_value(json_object_get(q, "method"));
			const char *p = json_string_value(json_object_get(q, "path"));
			if (m && strcmp(m, "GET") != 0) {
				if (first && !first[0])
					snprintf(first, n, "%s %s", m, p ? p : "");
				(*ret_mutating)++;
			} else if (p && strstr(p, "/cluster/resources")) {
				(*ret_lists)++;
			}
			int64_t s = json_integer_value(json_object_get(q, "seq"));
			if (s > seq)
				seq = s;
		}
	}
}

/* Prints Proxmox calls per server by route (figures, not assertions). */
static inline void ct_print_calls(CT *t, const char *what, int servers, int64_t ms)
{
	_cleanup_json_ json_t *s = ct_sim_get(t, "/_sim/stats");
	json_t *routes = json_object_get(json_object_get(s, "requests"), "by_route");
	fprintf(stderr, "# %s: %d servers in %" PRId64 " ms; Proxmox calls per server:\n", what,
	        servers, ms);
	const char *k;
	json_t *v;
	json_object_foreach(routes, k, v)
	{
		if (strncmp(k, "pve ", 4) != 0 || json_integer_value(v) == 0)
			continue;
		fprintf(stderr, "#   %-58s %7.2f\n", k + 4,
		        (double)json_integer_value(v) / (servers ? servers : 1));
	}
}
