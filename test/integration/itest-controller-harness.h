/* itest-controller-harness.h - starting zlh-controller processes against a
 * throwaway database for itest-controller.c and itest-lease.c.
 *
 * Each process gets its own NOTIFY_SOCKET (a unix datagram socket the test
 * binds: every sd_notify message is collected), its own log file, and the
 * probe reconciler (controller/probe.h) writing to one shared file, so a
 * test sees exactly who acted under which epoch. Waits poll with deadlines;
 * nothing sleeps blindly. */
#pragma once

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <inttypes.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <libpq-fe.h>

#include "buf.h"
#include "db/runtime.h"
#include "db/store.h"
#include "http.h"
#include "specs/crd.h"
#include "test/lib/testutil.h"
#include "util.h"

#define H_MAX_CTL 3

typedef struct Ctl {
	pid_t pid;
	bool running;
	int status; /* wait status once stopped */
	char log[600];
	char sock[600];
	int nfd;
	Buf notes; /* every notify datagram, each followed by "\n--\n" */
} Ctl;

typedef struct H {
	char *dir;
	char *db, *conninfo;
	char cfg[600];
	char probe[600];
	char secret[64];
	int metrics_port;
	PGconn *conn;
	Ctl ctl[H_MAX_CTL];
} H;

static inline int h_free_port(void)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(fd >= 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(0x7f000001)};
	assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
	socklen_t l = sizeof a;
	assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &l), 0);
	close(fd);
	return ntohs(a.sin_port);
}

static inline void h_migrate(const char *conninfo)
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
	int r = store_migrate(c, mdir, kinds, &err);
	if (r < 0)
		fail_msg("migrate: %s", err.message);
	json_decref(kinds);
	crd_set_free(set);
	spec_errors_clear(&errs);
	PQfinish(c);
}

/* Writes the controller config; controller_yaml is the inside of the
 * controller: {...} mapping (e.g. "resync: 30s"). */
static inline void h_write_config(H *h, const char *controller_yaml)
{
	char secret_path[700];
	snprintf(secret_path, sizeof secret_path, "%s/pve-token", h->dir);
	char body[700];
	snprintf(body, sizeof body, "%s\n", h->secret);
	assert_int_equal(tu_write_file(secret_path, body), 0);
	char metrics[64] = "";
	if (h->metrics_port)
		snprintf(metrics, sizeof metrics, ", metrics_listen: \"127.0.0.1:%d\"",
		         h->metrics_port);
	_cleanup_free_ char *yaml = NULL;
	assert_true(
	    asprintf(&yaml,
	             "database: \"%s\"\n"
	             "controller: {workers: 2, lease: 2s, drain_timeout: 5s%s%s%s}\n"
	             "proxmox:\n"
	             "  url: \"http://127.0.0.1:9\"\n"
	             "  token_id: \"zlh@pve!itest\"\n"
	             "  token_secret_file: %s\n"
	             "  template_vmid: 900\n"
	             "  storage: local\n"
	             "  vmid_range: [5000, 5099]\n"
	             "network: {bridge: vmbr0, cidr: \"10.0.0.0/24\", gateway: \"10.0.0.1\"}\n",
	             h->conninfo, metrics, controller_yaml ? ", " : "",
	             controller_yaml ? controller_yaml : "", secret_path) >= 0);
	snprintf(h->cfg, sizeof h->cfg, "%s/controller.yaml", h->dir);
	assert_int_equal(tu_write_file(h->cfg, yaml), 0);
}

static inline void h_setup(H *h, const char *controller_yaml, bool migrate, bool metrics)
{
	memset(h, 0, sizeof *h);
	if (!tu_pg_admin())
		skip();
	h->dir = tu_tempdir();
	assert_non_null(h->dir);
	snprintf(h->secret, sizeof h->secret, "itest-pve-secret-%d-%" PRId64, (int)getpid(),
	         now_mono_ms());
	assert_int_equal(tu_db_create(&h->db, &h->conninfo), 0);
	if (migrate)
		h_migrate(h->conninfo);
	if (metrics)
		h->metrics_port = h_free_port();
	h_write_config(h, controller_yaml);
	snprintf(h->probe, sizeof h->probe, "%s/probe.log", h->dir);
	StoreError err;
	assert_int_equal(store_connect(h->conninfo, &h->conn, &err), 0);
	for (int i = 0; i < H_MAX_CTL; i++)
		h->ctl[i].nfd = -1;
}

static inline bool h_file_contains(const char *path, const char *needle)
{
	_cleanup_free_ char *data = NULL;
	size_t len;
	if (file_read_all(path, 64 << 20, &data, &len) < 0)
		return false;
	return strstr(data, needle) != NULL;
}

/* Occurrences of needle in the file at path. */
static inline int h_count_file(const char *path, const char *needle)
{
	_cleanup_free_ char *data = NULL;
	size_t len;
	if (file_read_all(path, 64 << 20, &data, &len) < 0)
		return 0;
	int n = 0;
	for (const char *p = data; (p = strstr(p, needle)); p += strlen(needle))
		n++;
	return n;
}

static inline void h_dump_log(const Ctl *c)
{
	_cleanup_free_ char *data = NULL;
	size_t len;
	if (file_read_all(c->log, 64 << 20, &data, &len) == 0) {
		const char *tail = len > 6000 ? data + len - 6000 : data;
		fprintf(stderr, "---- %s (last part)\n%s\n----\n", c->log, tail);
	}
}

/* Starts controller i. extra_env: NULL-terminated "K=V" list or NULL. */
static inline void h_start(H *h, int i, const char *const *extra_env)
{
	Ctl *c = &h->ctl[i];
	buf_done(&c->notes);
	snprintf(c->log, sizeof c->log, "%s/controller-%d.log", h->dir, i);
	snprintf(c->sock, sizeof c->sock, "%s/notify-%d", h->dir, i);
	if (c->nfd < 0) {
		c->nfd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
		assert_true(c->nfd >= 0);
		struct sockaddr_un a = {.sun_family = AF_UNIX};
		assert_true(strlen(c->sock) < sizeof a.sun_path);
		memcpy(a.sun_path, c->sock, strlen(c->sock) + 1);
		unlink(c->sock);
		assert_int_equal(bind(c->nfd, (struct sockaddr *)&a, sizeof a), 0);
	}
	static char env[12][700];
	const char *envp[16];
	size_t n = 0;
	snprintf(env[0], sizeof env[0], "NOTIFY_SOCKET=%s", c->sock);
	snprintf(env[1], sizeof env[1], "WATCHDOG_USEC=2000000");
	snprintf(env[2], sizeof env[2], "ZLH_TEST_PROBE=%s", h->probe);
	snprintf(env[3], sizeof env[3], "ZLH_TEST_RECONCILERS=probe");
	for (n = 0; n < 4; n++)
		envp[n] = env[n];
	for (size_t k = 0; extra_env && extra_env[k] && n < 15; k++)
		envp[n++] = extra_env[k];
	envp[n] = NULL;
	_cleanup_free_ char *bin = tu_bin("zlh-controller");
	const char *argv[] = {bin, "-c", h->cfg, "--log-level", "debug", NULL};
	/* tu_spawn putenv()s in the child only; the strings must outlive the
	 * fork, which static storage does. */
	pid_t pid = tu_spawn(argv, envp, c->log);
	assert_true(pid > 0);
	c->pid = pid;
	c->running = true;
}

/* Reads every pending notify datagram of controller i. */
static inline void h_pump(Ctl *c)
{
	if (c->nfd < 0)
		return;
	char buf[4096];
	for (;;) {
		ssize_t n = recv(c->nfd, buf, sizeof buf - 1, MSG_DONTWAIT);
		if (n <= 0)
			break;
		buf[n] = 0;
		(void)!buf_puts(&c->notes, buf);
		(void)!buf_puts(&c->notes, "\n--\n");
	}
}

typedef struct NoteWait {
	Ctl *c;
	const char *needle;
} NoteWait;

static inline bool note_cond(void *ctx)
{
	NoteWait *nw = ctx;
	h_pump(nw->c);
	return nw->c->notes.data && strstr(nw->c->notes.data, nw->needle);
}

/* Waits until controller i sent a notify message containing needle. */
static inline bool h_wait_note(H *h, int i, const char *needle, int64_t timeout_ms)
{
	NoteWait nw = {&h->ctl[i], needle};
	return tu_wait_until(note_cond, &nw, timeout_ms);
}

/* Counts occurrences of needle in controller i's notify messages. */
static inline int h_count_notes(H *h, int i, const char *needle)
{
	Ctl *c = &h->ctl[i];
	h_pump(c);
	int n = 0;
	for (const char *p = c->notes.data; p && (p = strstr(p, needle)); p += strlen(needle))
		n++;
	return n;
}

typedef struct FileWait {
	const char *path;
	const char *needle;
} FileWait;

static inline bool file_cond(void *ctx)
{
	FileWait *fw = ctx;
	return h_file_contains(fw->path, fw->needle);
}

static inline bool h_wait_file(const char *path, const char *needle, int64_t timeout_ms)
{
	FileWait fw = {path, needle};
	return tu_wait_until(file_cond, &fw, timeout_ms);
}

static inline bool h_wait_log(H *h, int i, const char *needle, int64_t timeout_ms)
{
	return h_wait_file(h->ctl[i].log, needle, timeout_ms);
}

/* Stops controller i with sig (SIGTERM: clean), returns the wait status. */
static inline int h_stop(H *h, int i, int sig)
{
	Ctl *c = &h->ctl[i];
	if (!c->running)
		return c->status;
	if (sig == SIGKILL || sig == SIGTERM)
		kill(c->pid, SIGCONT); /* in case a test left it stopped */
	c->status = tu_stop(c->pid, sig, 20000);
	c->running = false;
	return c->status;
}

static inline void h_teardown(H *h)
{
	for (int i = 0; i < H_MAX_CTL; i++) {
		Ctl *c = &h->ctl[i];
		if (c->running)
			h_stop(h, i, SIGKILL);
		/* No secret ever reaches a log (DESIGN.md section 8). */
		if (c->log[0] && h->secret[0] && h_file_contains(c->log, h->secret)) {
			h_dump_log(c);
			fail_msg("the secret reached %s", c->log);
		}
		if (c->nfd >= 0)
			close(c->nfd);
		buf_done(&c->notes);
	}
	if (h->conn)
		PQfinish(h->conn);
	tu_db_drop(h->db);
	free(h->db);
	free(h->conninfo);
	tu_rmrf(h->dir);
	free(h->dir);
}

/* The lease row: holder ("" when free) and epoch. */
static inline void h_lease(H *h, char *holder, size_t n, int64_t *epoch)
{
	PGresult *res = PQexecParams(h->conn,
	                             "SELECT coalesce(holder, ''), epoch FROM zlh.controller_lease "
	                             "WHERE name = 'default'",
	                             0, NULL, NULL, NULL, NULL, 0);
	assert_int_equal(PQresultStatus(res), PGRES_TUPLES_OK);
	assert_int_equal(PQntuples(res), 1);
	snprintf(holder, n, "%s", PQgetvalue(res, 0, 0));
	assert_int_equal(parse_int64(PQgetvalue(res, 0, 1), epoch), 0);
	PQclear(res);
}

/* Applies a GameServer; *uid (37 bytes) receives its uid. */
static inline void h_apply(H *h, const char *name, bool paused, char *uid)
{
	json_t *doc = json_pack("{s:s, s:s, s:{s:s, s:s}, s:{s:s, s:s}}", "apiVersion",
	                        "zlh.dev/v1", "kind", "GameServer", "metadata", "name", name,
	                        "owner", "itest", "spec", "variant", "paper", "version", "1.21.4");
	assert_non_null(doc);
	if (paused)
		json_object_set_new(json_object_get(doc, "metadata"), "annotations",
		                    json_pack("{s:s}", RUNTIME_PAUSED_ANNOTATION, "true"));
	json_t *res = NULL;
	StoreError err = {0};
	int r = store_apply_server(h->conn, doc, NULL, &res, &err);
	if (r < 0)
		fail_msg("apply %s: %s", name, err.message);
	snprintf(uid, 37, "%s", json_string_value(json_object_get(res, "uid")));
	json_decref(res);
	json_decref(doc);
}

/* One text value of a query with one parameter (new), or NULL. */
static inline char *h_sql_text(H *h, const char *sql, const char *p1)
{
	const char *vals[] = {p1};
	PGresult *res = PQexecParams(h->conn, sql, p1 ? 1 : 0, NULL, vals, NULL, NULL, 0);
	char *out = NULL;
	if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) > 0 && !PQgetisnull(res, 0, 0))
		out = strdup(PQgetvalue(res, 0, 0));
	PQclear(res);
	return out;
}

/* GET http://127.0.0.1:<metrics_port><path>: status, body (new) in *body. */
static inline long h_http_get(H *h, const char *path, char **body)
{
	HttpOptions o = {.timeout_ms = 5000};
	HttpClient *hc = http_client_new(&o);
	assert_non_null(hc);
	char url[128];
	snprintf(url, sizeof url, "http://127.0.0.1:%d%s", h->metrics_port, path);
	HttpResponse resp = {0};
	int r = http_request(hc, "GET", url, NULL, NULL, 0, false, &resp);
	long st = r < 0 ? -1 : resp.status;
	if (body)
		*body = resp.body.data ? strdup(resp.body.data) : strdup("");
	http_response_clear(&resp);
	http_client_free(hc);
	return st;
}
