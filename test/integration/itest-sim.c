/* itest-sim: zlh-sim itself, over real HTTP through lib/http.h.
 *
 * One sim (3 nodes, short tasks) serves the route tests in order; the
 * determinism, concurrency and shutdown tests start their own. Every wait
 * is bounded; nothing sleeps for synchronization. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cmocka.h>
#include <curl/curl.h>
#include <jansson.h>

#include "http.h"
#include "test/sim/simtest.h"
#include "util.h"

#define UID1 "0b8e4bc2-1111-4222-8333-444455556666"
#define UID2 "7f00aa01-2222-4333-8444-555566667777"
#define UID3 "3c00aa01-3333-4444-8555-666677778888"

static SimProc S;
static HttpClient *H;

typedef struct Res {
	int err; /* http_request's result */
	long status;
	json_t *j; /* parsed body or NULL */
	char *body;
	int64_t retry_after;
} Res;

static void res_free(Res *r)
{
	json_decref(r->j);
	free(r->body);
	memset(r, 0, sizeof(*r));
}

static Res call_c(HttpClient *c, const char *method, const char *url, const char *auth,
                  const char *ctype, const char *body, bool fresh)
{
	Res r = {0};
	char ct[128];
	const char *hdrs[4] = {0};
	int n = 0;
	if (auth)
		hdrs[n++] = auth;
	if (ctype) {
		snprintf(ct, sizeof(ct), "Content-Type: %s", ctype);
		hdrs[n++] = ct;
	}
	HttpResponse hr = {0};
	r.err = http_request(c, method, url, hdrs, body, body ? strlen(body) : 0, fresh, &hr);
	r.status = hr.status;
	r.retry_after = hr.retry_after_s;
	if (hr.body.data) {
		r.body = strdup(hr.body.data);
		r.j = json_loads(hr.body.data, 0, NULL);
	}
	http_response_clear(&hr);
	return r;
}

static Res call(const char *method, const char *url, const char *auth, const char *ctype,
                const char *body)
{
	return call_c(H, method, url, auth, ctype, body, false);
}

static Res pve(const char *method, const char *path, const char *form)
{
	char url[1024];
	snprintf(url, sizeof(url), "%s/api2/json%s", S.pve_url, path);
	return call(method, url, S.pve_auth, form ? "application/x-www-form-urlencoded" : NULL,
	            form);
}

static Res ctl(const char *method, const char *path, const char *json)
{
	char url[512];
	snprintf(url, sizeof(url), "%s%s", S.control_url, path);
	return call(method, url, NULL, json ? "application/json" : NULL, json);
}

static Res agent_c(HttpClient *c, const char *ip, const char *method, const char *path,
                   const char *json)
{
	char url[512];
	snprintf(url, sizeof(url), "http://%s:%d%s", ip, S.agent_port, path);
	return call_c(c, method, url, S.agent_auth, json ? "application/json" : NULL, json, true);
}

static Res agent(const char *ip, const char *method, const char *path, const char *json)
{
	return agent_c(H, ip, method, path, json);
}

static Res vel(const char *method, const char *path, const char *json)
{
	char url[512];
	snprintf(url, sizeof(url), "%s%s", S.velocity_url, path);
	return call(method, url, S.zpack_header, json ? "application/json" : NULL, json);
}

static Res cf(const char *method, const char *path, const char *json)
{
	char url[512];
	snprintf(url, sizeof(url), "%s/zones/%s%s", S.cf_url, S.zone_id, path);
	return call(method, url, S.cf_auth, json ? "application/json" : NULL, json);
}

static const char *jstr(json_t *j, const char *path)
{
	/* "a.b.c" into objects */
	char buf[256];
	snprintf(buf, sizeof(buf), "%s", path);
	json_t *cur = j;
	for (char *save = NULL, *k = strtok_r(buf, ".", &save); k && cur;
	     k = strtok_r(NULL, ".", &save))
		cur = json_object_get(cur, k);
	return json_string_value(cur);
}

static json_int_t jint(json_t *j, const char *path)
{
	char buf[256];
	snprintf(buf, sizeof(buf), "%s", path);
	json_t *cur = j;
	for (char *save = NULL, *k = strtok_r(buf, ".", &save); k && cur;
	     k = strtok_r(NULL, ".", &save))
		cur = json_object_get(cur, k);
	return json_integer_value(cur);
}

static bool contains(const char *hay, const char *needle)
{
	return hay && strstr(hay, needle);
}

static void sleep_ms(int ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
	nanosleep(&ts, NULL);
}

/* Polls the task until it stops; returns its exitstatus (new) or NULL. */
static char *wait_task(const char *node, const char *upid)
{
	_cleanup_buf_ Buf enc = BUF_INIT;
	assert_int_equal(http_urlencode(&enc, upid), 0);
	char path[512];
	snprintf(path, sizeof(path), "/nodes/%s/tasks/%s/status", node, enc.data);
	int64_t deadline = now_mono_ms() + 10000;
	while (now_mono_ms() < deadline) {
		Res r = pve("GET", path, NULL);
		if (r.status != 200) {
			res_free(&r);
			return NULL;
		}
		if (!strcmp(jstr(r.j, "data.status"), "stopped")) {
			char *e = strdup(jstr(r.j, "data.exitstatus"));
			res_free(&r);
			return e;
		}
		res_free(&r);
		sleep_ms(20);
	}
	return NULL;
}

static void expect_ok_task(Res *r, const char *node)
{
	assert_int_equal(r->status, 200);
	const char *upid = jstr(r->j, "data");
	assert_non_null(upid);
	_cleanup_free_ char *ex = wait_task(node, upid);
	assert_non_null(ex);
	assert_string_equal(ex, "OK");
}

static json_t *stats(void)
{
	Res r = ctl("GET", "/_sim/stats", NULL);
	assert_int_equal(r.status, 200);
	json_t *j = json_incref(r.j);
	res_free(&r);
	return j;
}

static json_t *find_ct(json_t *state, int vmid)
{
	size_t i;
	json_t *c;
	json_array_foreach(json_object_get(state, "containers"), i, c)
	{
		if (json_integer_value(json_object_get(c, "vmid")) == vmid)
			return c;
	}
	return NULL;
}

static bool ct_exists(int vmid)
{
	Res r = ctl("GET", "/_sim/state", NULL);
	bool found = find_ct(r.j, vmid) != NULL;
	res_free(&r);
	return found;
}

/* Creates a running container at vmid with ip 127.60.0.<last>, waits. */
static void make_running(int vmid, const char *node, int last, const char *uid)
{
	char form[1024];
	snprintf(
	    form, sizeof(form),
	    "vmid=%d&ostemplate=local%%3Avztmpl%%2Fdebian-12-standard_12.7-1_amd64.tar.zst"
	    "&hostname=ct%d&net0=name%%3Deth0%%2Cbridge%%3Dvmbr0%%2Cip%%3D127.60.0.%d%%2F16"
	    "&tags=zlh%%3Bzlh-%s&description=uid%%3D%s&memory=1024&start=1&rootfs=local-lvm%%3A4",
	    vmid, vmid, last, uid, uid);
	char path[64];
	snprintf(path, sizeof(path), "/nodes/%s/lxc", node);
	Res r = pve("POST", path, form);
	expect_ok_task(&r, node);
	res_free(&r);
}

/* ---- setup ------------------------------------------------------------------ */

static int group_setup(void **state)
{
	(void)state;
	http_global_init();
	/* tasks, the unknown window, agent phases and backups last long enough
	 * that "right after the call" checks hold on a loaded machine */
	const char *args[] = {"--nodes",
	                      "3",
	                      "--task-ms",
	                      "400",
	                      "--unknown-ms",
	                      "1000",
	                      "--agent-ready-ms",
	                      "600",
	                      "--backup-ms",
	                      "400",
	                      "--seed",
	                      "7",
	                      NULL};
	int r = simtest_start(&S, args, 15000);
	if (r < 0) {
		fprintf(stderr, "cannot start zlh-sim: %s\n", strerror(-r));
		return -1;
	}
	char hex[65];
	if (sha256_hex(S.velocity_secret, strlen(S.velocity_secret), hex) < 0)
		return -1;
	snprintf(S.zpack_header, sizeof(S.zpack_header), "X-Zpack-Secret: %s", hex);
	HttpOptions o = {.timeout_ms = 10000};
	H = http_client_new(&o);
	return H ? 0 : -1;
}

static int group_teardown(void **state)
{
	(void)state;
	http_client_free(H);
	int st = simtest_stop(&S);
	return st == 0 ? 0 : -1;
}

/* ---- config contract -------------------------------------------------------- */

static void config__printed__has_the_contract_keys(void **state)
{
	(void)state;
	const char *c = S.config;
	assert_true(!strncmp(c, "# zlh-sim control: http://127.0.0.1:", 36));
	const char *keys[] = {"database: \"dbname=zlh\"",
	                      "proxmox:",
	                      "token_id: \"zlh@pve!controller\"",
	                      "template_vmid: {pve1: 900, pve2: 901, pve3: 902}",
	                      "storage: local-lvm",
	                      "vmid_range: [5000, 5999]",
	                      "max_tasks_per_node: 4",
	                      "bridge: vmbr0",
	                      "cidr: \"127.60.0.0/16\"",
	                      "gateway: \"127.60.0.1\"",
	                      "provider: cloudflare",
	                      "edge_ipv4: \"203.0.113.10\""};
	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
		if (!strstr(c, keys[i]))
			fail_msg("config lacks %s:\n%s", keys[i], c);
	struct stat st;
	char p[1024];
	snprintf(p, sizeof(p), "%s/pve-token", S.state_dir);
	assert_int_equal(stat(p, &st), 0);
	assert_int_equal(st.st_mode & 077, 0);
	Res r = ctl("GET", "/_sim/config", NULL);
	assert_int_equal(r.status, 200);
	assert_string_equal(r.body, S.config);
	res_free(&r);
}

/* ---- Proxmox ------------------------------------------------------------------ */

static void pve__auth__401_without_or_with_a_wrong_token(void **state)
{
	(void)state;
	char url[256];
	snprintf(url, sizeof(url), "%s/api2/json/version", S.pve_url);
	Res r = call("GET", url, NULL, NULL, NULL);
	assert_int_equal(r.status, 401);
	res_free(&r);
	r = call("GET", url, "Authorization: PVEAPIToken=zlh@pve!controller=wrong", NULL, NULL);
	assert_int_equal(r.status, 401);
	res_free(&r);
	r = pve("GET", "/version", NULL);
	assert_int_equal(r.status, 200);
	assert_non_null(jstr(r.j, "data.version"));
	res_free(&r);
}

static void pve__nodes_and_resources__list_nodes_with_memory(void **state)
{
	(void)state;
	Res r = pve("GET", "/nodes", NULL);
	assert_int_equal(r.status, 200);
	assert_int_equal(json_array_size(json_object_get(r.j, "data")), 3);
	res_free(&r);
	r = pve("GET", "/cluster/resources?type=node", NULL);
	assert_int_equal(r.status, 200);
	json_t *n0 = json_array_get(json_object_get(r.j, "data"), 0);
	assert_string_equal(jstr(n0, "node"), "pve1");
	assert_string_equal(jstr(n0, "status"), "online");
	assert_true(jint(n0, "maxmem") > jint(n0, "mem"));
	res_free(&r);
	r = pve("GET", "/cluster/resources?type=bogus", NULL);
	assert_int_equal(r.status, 400);
	assert_true(contains(jstr(r.j, "errors.type"), "does not have a value in the enumeration"));
	res_free(&r);
}

static void pve__create__upid_lock_unknown_then_running(void **state)
{
	(void)state;
	Res r = pve("POST", "/nodes/pve1/lxc",
	            "vmid=5000&ostemplate=local%3Avztmpl%2Fdebian-12-standard_12.7-1_amd64.tar.zst"
	            "&hostname=mc1&tags=ZLH%3Bzlh-" UID1 "%3Bzlh"
	            "&description=zlh%20uid%3D" UID1 "&net0=name%3Deth0%2Cbridge%3Dvmbr0%2Cip%3D"
	            "127.60.0.5%2F16%2Cgw%3D127.60.0.1&rootfs=local-lvm%3A8&memory=2048&cores=2"
	            "&swap=512&unprivileged=1&features=nesting%3D1&start=1");
	assert_int_equal(r.status, 200);
	const char *upid = jstr(r.j, "data");
	assert_true(!strncmp(upid, "UPID:pve1:", 10));
	assert_true(contains(upid, ":vzcreate:5000:zlh@pve!controller:"));
	assert_int_equal(upid[strlen(upid) - 1], ':');
	char *up = strdup(upid);
	res_free(&r);

	/* at once: lock create, tags normalized, status unknown and no name */
	r = pve("GET", "/cluster/resources?type=vm", NULL);
	json_t *e = NULL, *it;
	size_t i;
	json_array_foreach(json_object_get(r.j, "data"), i, it)
	{
		if (jint(it, "vmid") == 5000)
			e = it;
	}
	assert_non_null(e);
	assert_string_equal(jstr(e, "lock"), "create");
	assert_string_equal(jstr(e, "tags"), "zlh;zlh-" UID1);
	assert_string_equal(jstr(e, "status"), "unknown");
	assert_null(json_object_get(e, "name"));
	res_free(&r);

	_cleanup_free_ char *ex = wait_task("pve1", up);
	free(up);
	assert_string_equal(ex, "OK");

	r = pve("GET", "/nodes/pve1/lxc/5000/status/current", NULL);
	assert_int_equal(r.status, 200);
	assert_string_equal(jstr(r.j, "data.status"), "running");
	assert_null(json_object_get(json_object_get(r.j, "data"), "lock"));
	res_free(&r);

	r = pve("GET", "/nodes/pve1/lxc/5000/config", NULL);
	assert_int_equal(r.status, 200);
	assert_string_equal(jstr(r.j, "data.description"), "zlh uid=" UID1 "\n");
	assert_string_equal(jstr(r.j, "data.hostname"), "mc1");
	assert_int_equal(jint(r.j, "data.memory"), 2048);
	assert_true(contains(jstr(r.j, "data.net0"), "ip=127.60.0.5/16"));
	assert_true(contains(jstr(r.j, "data.net0"), "hwaddr=BC:24:11:"));
	assert_true(!strncmp(jstr(r.j, "data.net0"), "name=eth0,", 10));
	assert_string_equal(jstr(r.j, "data.rootfs"), "local-lvm:vm-5000-disk-0,size=8G");
	assert_int_equal(strlen(jstr(r.j, "data.digest")), 40);
	res_free(&r);

	/* the stats daemon catches up */
	int64_t deadline = now_mono_ms() + 5000;
	bool named = false;
	while (!named && now_mono_ms() < deadline) {
		r = pve("GET", "/cluster/resources?type=vm", NULL);
		json_array_foreach(json_object_get(r.j, "data"), i, it)
		{
			if (jint(it, "vmid") == 5000 && jstr(it, "name"))
				named = !strcmp(jstr(it, "status"), "running");
		}
		res_free(&r);
		if (!named)
			sleep_ms(20);
	}
	assert_true(named);
}

static void pve__create__existing_vmid_fails_as_proxmox_does(void **state)
{
	(void)state;
	Res r =
	    pve("POST", "/nodes/pve2/lxc",
	        "vmid=5000&ostemplate=local%3Avztmpl%2Fdebian-12-standard_12.7-1_amd64.tar.zst");
	assert_int_equal(r.status, 500);
	assert_string_equal(jstr(r.j, "message"), "CT 5000 already exists on node 'pve1'\n");
	assert_true(json_is_null(json_object_get(r.j, "data")));
	res_free(&r);
	/* a template's vmid too */
	r = pve("POST", "/nodes/pve1/lxc",
	        "vmid=901&ostemplate=local%3Avztmpl%2Fdebian-12-standard_12.7-1_amd64.tar.zst");
	assert_int_equal(r.status, 500);
	assert_string_equal(jstr(r.j, "message"), "CT 901 already exists on node 'pve2'\n");
	res_free(&r);
	r = pve("POST", "/nodes/pve9/lxc",
	        "vmid=5009&ostemplate=local%3Avztmpl%2Fdebian-12-standard_12.7-1_amd64.tar.zst");
	assert_int_equal(r.status, 500);
	assert_true(contains(jstr(r.j, "message"), "hostname lookup 'pve9' failed"));
	res_free(&r);
	r = pve("POST", "/nodes/pve1/lxc",
	        "vmid=5009&ostemplate=local%3Avztmpl%2Fnope.tar.zst"
	        "&rootfs=nostore%3A4");
	assert_int_equal(r.status, 500);
	assert_string_equal(jstr(r.j, "message"), "storage 'nostore' does not exist\n");
	res_free(&r);
	assert_false(ct_exists(5009));
}

static void pve__params__verified_as_proxmox_does(void **state)
{
	(void)state;
	Res r = pve("POST", "/nodes/pve1/lxc",
	            "vmid=99&ostemplate=local%3Avztmpl%2Fx.tar.zst&start=true&bogus=1"
	            "&net0=name%3Deth0%2Cip%3Dfoo&tags=ok%3Bbad%21tag&memory=8");
	assert_int_equal(r.status, 400);
	assert_string_equal(jstr(r.j, "message"), "Parameter verification failed.\n");
	json_t *e = json_object_get(r.j, "errors");
	assert_string_equal(jstr(e, "vmid"),
	                    "invalid format - value does not look like a valid VM ID\n");
	assert_string_equal(jstr(e, "start"), "type check ('boolean') failed - got 'true'");
	assert_string_equal(jstr(e, "bogus"),
	                    "property is not defined in schema and the schema does "
	                    "not allow additional properties");
	assert_true(contains(jstr(e, "net0"),
	                     "net0.ip: invalid format - value does not look like a "
	                     "valid ipv4 network configuration"));
	assert_string_equal(jstr(e, "tags"), "invalid format - invalid characters in tag\n");
	assert_string_equal(jstr(e, "memory"), "value must have a minimum value of 16");
	res_free(&r);
	r = pve("POST", "/nodes/pve1/lxc", "vmid=5009");
	assert_int_equal(r.status, 400);
	assert_string_equal(jstr(r.j, "errors.ostemplate"),
	                    "property is missing and it is not optional");
	res_free(&r);
	assert_false(ct_exists(5009));

	/* a JSON body takes JSON booleans and numbers */
	char url[256];
	snprintf(url, sizeof(url), "%s/api2/json/nodes/pve2/lxc", S.pve_url);
	r = call("POST", url, S.pve_auth, "application/json",
	         "{\"vmid\":5001,\"ostemplate\":\"local:vztmpl/"
	         "debian-12-standard_12.7-1_amd64.tar.zst\","
	         "\"hostname\":\"json-ct\",\"start\":false,\"memory\":512,\"tags\":\"b;a;A\"}");
	expect_ok_task(&r, "pve2");
	res_free(&r);
	r = pve("GET", "/nodes/pve2/lxc/5001/config", NULL);
	assert_string_equal(jstr(r.j, "data.tags"), "a;b");
	res_free(&r);
	r = pve("GET", "/nodes/pve2/lxc/5001/status/current", NULL);
	assert_string_equal(jstr(r.j, "data.status"), "stopped");
	res_free(&r);
}

static void pve__clone__locks_template_for_the_whole_task(void **state)
{
	(void)state;
	Res r = pve("POST", "/nodes/pve3/lxc/902/clone",
	            "newid=5002&hostname=cl1&full=1&storage=local-lvm&description=uid%3D" UID2);
	assert_int_equal(r.status, 200);
	const char *upid = jstr(r.j, "data");
	assert_true(contains(upid, ":vzclone:902:"));
	char *up = strdup(upid);
	res_free(&r);

	/* a second clone of the same template fails at once */
	r = pve("POST", "/nodes/pve3/lxc/902/clone", "newid=5003&hostname=cl2&full=1");
	assert_int_equal(r.status, 500);
	assert_string_equal(jstr(r.j, "message"), "CT is locked (disk)\n");
	res_free(&r);
	assert_false(ct_exists(5003));
	/* the new CT is locked create: config changes refused */
	r = pve("PUT", "/nodes/pve3/lxc/5002/config", "memory=1024");
	assert_int_equal(r.status, 500);
	assert_string_equal(jstr(r.j, "message"), "CT is locked (create)\n");
	res_free(&r);
	/* full=true is not a boolean Proxmox takes */
	r = pve("POST", "/nodes/pve1/lxc/900/clone", "newid=5004&full=true");
	assert_int_equal(r.status, 400);
	assert_string_equal(jstr(r.j, "errors.full"), "type check ('boolean') failed - got 'true'");
	res_free(&r);

	_cleanup_free_ char *ex = wait_task("pve3", up);
	free(up);
	assert_string_equal(ex, "OK");

	r = pve("GET", "/nodes/pve3/lxc/5002/config", NULL);
	assert_int_equal(r.status, 200);
	assert_null(json_object_get(json_object_get(r.j, "data"), "lock"));
	assert_null(json_object_get(json_object_get(r.j, "data"), "template"));
	assert_string_equal(jstr(r.j, "data.hostname"), "cl1");
	assert_string_equal(jstr(r.j, "data.description"), "uid=" UID2 "\n");
	char digest[64];
	snprintf(digest, sizeof(digest), "%s", jstr(r.j, "data.digest"));
	res_free(&r);

	/* PUT config with the digest; a stale digest is refused */
	char form[512];
	snprintf(
	    form, sizeof(form),
	    "cores=2&memory=2048&net0=name%%3Deth0%%2Cbridge%%3Dvmbr0%%2Cip%%3D127.60.0.6%%2F16"
	    "&tags=zlh%%3Bzlh-%s&digest=%s",
	    UID2, digest);
	r = pve("PUT", "/nodes/pve3/lxc/5002/config", form);
	assert_int_equal(r.status, 200);
	res_free(&r);
	r = pve("PUT", "/nodes/pve3/lxc/5002/config", form);
	assert_int_equal(r.status, 500);
	assert_string_equal(jstr(r.j, "message"),
	                    "detected modified configuration - file changed by other user? Try "
	                    "again.\n");
	res_free(&r);
	r = pve("GET", "/nodes/pve3/lxc/5002/config", NULL);
	assert_int_equal(jint(r.j, "data.memory"), 2048);
	assert_string_equal(jstr(r.j, "data.tags"), "zlh;zlh-" UID2);
	res_free(&r);

	/* resize: a task; the same size again is refused */
	r = pve("PUT", "/nodes/pve3/lxc/5002/resize", "disk=rootfs&size=%2B4G");
	expect_ok_task(&r, "pve3");
	res_free(&r);
	r = pve("PUT", "/nodes/pve3/lxc/5002/resize", "disk=rootfs&size=8G");
	assert_int_equal(r.status, 500);
	assert_string_equal(jstr(r.j, "message"), "disk is already at specified size\n");
	res_free(&r);
	r = pve("PUT", "/nodes/pve3/lxc/5002/resize", "disk=rootfs&size=2G");
	assert_int_equal(r.status, 500);
	res_free(&r);

	/* the template is free again */
	r = pve("POST", "/nodes/pve3/lxc/902/clone", "newid=5003&hostname=cl2&full=1");
	expect_ok_task(&r, "pve3");
	res_free(&r);
	json_t *st = stats();
	json_t *se = json_object_get(st, "side_effects");
	assert_int_equal(json_integer_value(json_object_get(se, "pve.clone")), 2);
	assert_int_equal(json_integer_value(json_object_get(se, "pve.resize")), 1);
	json_decref(st);
}

static void pve__power__tasks_and_exact_errors(void **state)
{
	(void)state;
	Res r = pve("POST", "/nodes/pve3/lxc/5002/status/start", "");
	expect_ok_task(&r, "pve3");
	res_free(&r);
	r = pve("POST", "/nodes/pve3/lxc/5002/status/start", "");
	assert_int_equal(r.status, 500);
	assert_string_equal(jstr(r.j, "message"), "CT 5002 already running\n");
	res_free(&r);
	r = pve("POST", "/nodes/pve3/lxc/5002/status/reboot", "");
	expect_ok_task(&r, "pve3");
	res_free(&r);
	r = pve("POST", "/nodes/pve3/lxc/5002/status/shutdown", "timeout=30&forceStop=1");
	expect_ok_task(&r, "pve3");
	res_free(&r);
	r = pve("POST", "/nodes/pve3/lxc/5002/status/stop", "");
	assert_int_equal(r.status, 500);
	assert_string_equal(jstr(r.j, "message"), "CT 5002 not running\n");
	res_free(&r);
	r = pve("POST", "/nodes/pve3/lxc/5002/status/shutdown", "");
	assert_string_equal(jstr(r.j, "message"), "CT 5002 not running\n");
	res_free(&r);
	r = pve("POST", "/nodes/pve3/lxc/5002/status/reboot", "");
	assert_int_equal(r.status, 500);
	assert_string_equal(jstr(r.j, "message"), "VM 5002 not running\n");
	res_free(&r);
	r = pve("POST", "/nodes/pve1/lxc/5002/status/start", "");
	assert_int_equal(r.status, 500);
	assert_string_equal(jstr(r.j, "message"),
	                    "Configuration file 'nodes/pve1/lxc/5002.conf' does not exist\n");
	res_free(&r);
}

static void pve__delete__running_refused_missing_is_config_error(void **state)
{
	(void)state;
	Res r = pve("DELETE", "/nodes/pve1/lxc/5000?purge=1", NULL);
	assert_int_equal(r.status, 500);
	assert_string_equal(jstr(r.j, "message"),
	                    "unable to destroy CT 5000 - container is running\n");
	res_free(&r);
	r = pve("DELETE", "/nodes/pve3/lxc/5003?purge=1&destroy-unreferenced-disks=1", NULL);
	assert_int_equal(r.status, 200);
	char *up = strdup(jstr(r.j, "data"));
	res_free(&r);
	r = pve("DELETE", "/nodes/pve3/lxc/5003?purge=1", NULL);
	assert_int_equal(r.status, 500);
	assert_string_equal(jstr(r.j, "message"), "CT is locked (destroyed)\n");
	res_free(&r);
	_cleanup_free_ char *ex = wait_task("pve3", up);
	free(up);
	assert_string_equal(ex, "OK");
	assert_false(ct_exists(5003));
	r = pve("DELETE", "/nodes/pve3/lxc/5003?purge=1", NULL);
	assert_int_equal(r.status, 500);
	assert_string_equal(jstr(r.j, "message"),
	                    "Configuration file 'nodes/pve3/lxc/5003.conf' does not exist\n");
	res_free(&r);
	r = pve("DELETE", "/nodes/pve3/lxc/5003?purge=true", NULL);
	assert_int_equal(r.status, 400);
	res_free(&r);
}

static void pve__nextid_and_tasks__reserve_nothing_unknown_upid_400(void **state)
{
	(void)state;
	Res a = pve("GET", "/cluster/nextid", NULL);
	Res b = pve("GET", "/cluster/nextid", NULL);
	assert_int_equal(a.status, 200);
	assert_string_equal(jstr(a.j, "data"), "100");
	assert_string_equal(jstr(a.j, "data"), jstr(b.j, "data"));
	res_free(&a);
	res_free(&b);
	a = pve("GET", "/cluster/nextid?vmid=5000", NULL);
	assert_int_equal(a.status, 400);
	res_free(&a);
	a = pve("GET",
	        "/nodes/pve1/tasks/"
	        "UPID%3Apve1%3A0000FFFF%3A00000001%3A00000001%3Avzstart%3A1%3Ax%40pve%3A/status",
	        NULL);
	assert_int_equal(a.status, 400);
	res_free(&a);
	a = pve("GET", "/nodes/pve1/tasks/garbage/status", NULL);
	assert_int_equal(a.status, 400);
	res_free(&a);
	a = pve("GET", "/nodes/pve1/tasks?source=all&vmid=5000", NULL);
	assert_int_equal(a.status, 200);
	json_t *t0 = json_array_get(json_object_get(a.j, "data"), 0);
	assert_non_null(t0);
	char *up = strdup(jstr(t0, "upid"));
	res_free(&a);
	/* a raw (not percent-encoded) UPID in the path works too */
	char path[512];
	snprintf(path, sizeof(path), "/nodes/pve1/tasks/%s/log", up);
	free(up);
	a = pve("GET", path, NULL);
	assert_int_equal(a.status, 200);
	assert_true(jint(a.j, "total") >= 1);
	res_free(&a);
}

/* ---- agents ------------------------------------------------------------------- */

static bool agent_state_is(const char *ip, const char *want)
{
	Res r = agent(ip, "GET", "/status", NULL);
	bool ok = r.status == 200 && !strcmp(jstr(r.j, "state") ?: "", want);
	res_free(&r);
	return ok;
}

static bool wait_agent_state(const char *ip, const char *want)
{
	int64_t deadline = now_mono_ms() + 5000;
	while (now_mono_ms() < deadline) {
		if (agent_state_is(ip, want))
			return true;
		sleep_ms(20);
	}
	return false;
}

static void agent__provision__idle_installing_running_ready(void **state)
{
	(void)state;
	const char *ip = "127.60.0.5"; /* CT 5000, running */
	Res r = agent(ip, "GET", "/health", NULL);
	assert_int_equal(r.status, 200);
	res_free(&r);
	r = agent(ip, "GET", "/status", NULL);
	assert_int_equal(r.status, 200);
	assert_string_equal(jstr(r.j, "state"), "idle");
	assert_false(json_is_true(json_object_get(r.j, "provisioningComplete")));
	res_free(&r);
	r = agent(ip, "GET", "/ready", NULL);
	assert_int_equal(r.status, 503);
	assert_false(json_is_true(json_object_get(r.j, "ready")));
	res_free(&r);
	/* no token: 401 */
	char url[128];
	snprintf(url, sizeof(url), "http://%s:%d/status", ip, S.agent_port);
	r = call("GET", url, NULL, NULL, NULL);
	assert_int_equal(r.status, 401);
	res_free(&r);

	r = agent(ip, "POST", "/config",
	          "{\"vmid\":5000,\"container_type\":\"game\",\"game\":\"minecraft\",\"variant\":"
	          "\"paper\",\"version\":\"1.21.4\",\"world\":\"world\",\"ports\":[25565],"
	          "\"artifact_path\":\"minecraft/paper/1.21.4/server.jar\",\"java_path\":"
	          "\"java/21/OpenJDK21.tar.gz\",\"memory_mb\":2048}");
	assert_int_equal(r.status, 202);
	res_free(&r);
	r = agent(ip, "GET", "/status", NULL);
	assert_string_equal(jstr(r.j, "state"), "installing");
	res_free(&r);
	assert_true(wait_agent_state(ip, "running"));
	r = agent(ip, "GET", "/ready", NULL);
	assert_int_equal(r.status, 200);
	assert_true(json_is_true(json_object_get(r.j, "ready")));
	assert_string_equal(jstr(r.j, "source"), "minecraft_ping");
	res_free(&r);
	r = agent(ip, "GET", "/status", NULL);
	assert_true(json_is_true(json_object_get(r.j, "provisioningComplete")));
	res_free(&r);
	r = agent(ip, "POST", "/config", "{\"container_type\":\"nope\"}");
	assert_int_equal(r.status, 400);
	res_free(&r);
	/* stop / start of the workload */
	r = agent(ip, "POST", "/stop", NULL);
	assert_int_equal(r.status, 202);
	res_free(&r);
	assert_true(agent_state_is(ip, "stopped"));
	r = agent(ip, "POST", "/start", NULL);
	assert_int_equal(r.status, 202);
	res_free(&r);
	assert_true(wait_agent_state(ip, "running"));
}

static void agent__backups__not_deduped_restore_progress_outlive_ct(void **state)
{
	(void)state;
	const char *ip = "127.60.0.5";
	Res a = agent(ip, "POST", "/backups", "{\"name\":\"zlh-0b8e4bc2-1\"}");
	Res b = agent(ip, "POST", "/backups", "{\"name\":\"zlh-0b8e4bc2-1\"}");
	assert_int_equal(a.status, 202);
	assert_int_equal(b.status, 202);
	assert_string_not_equal(jstr(a.j, "id"), jstr(b.j, "id"));
	char id1[64];
	snprintf(id1, sizeof(id1), "%s", jstr(a.j, "id"));
	char id2[64];
	snprintf(id2, sizeof(id2), "%s", jstr(b.j, "id"));
	res_free(&a);
	res_free(&b);
	json_t *st = stats();
	json_t *d = json_object_get(
	    json_object_get(json_object_get(st, "duplicates"), "backups_per_container_name"),
	    UID1 "/zlh-0b8e4bc2-1");
	assert_int_equal(jint(d, "now"), 2);
	assert_int_equal(jint(d, "max"), 2);
	assert_int_equal(jint(st, "max.backups_per_container_name.max"), 2);
	json_decref(st);
	/* once the backup is done, a restore reports progress in /status */
	Res r = agent(ip, "GET", "/backups", NULL);
	assert_int_equal(json_array_size(json_object_get(r.j, "backups")), 2);
	res_free(&r);
	char path[128];
	snprintf(path, sizeof(path), "/backups/%s", id2);
	r = agent(ip, "DELETE", path, NULL);
	assert_int_equal(r.status, 200);
	res_free(&r);
	r = agent(ip, "DELETE", path, NULL);
	assert_int_equal(r.status, 404);
	res_free(&r);
	st = stats();
	d = json_object_get(
	    json_object_get(json_object_get(st, "duplicates"), "backups_per_container_name"),
	    UID1 "/zlh-0b8e4bc2-1");
	assert_int_equal(jint(d, "now"), 1);
	assert_int_equal(jint(d, "max"), 2);
	json_decref(st);
	int64_t deadline = now_mono_ms() + 5000;
	bool ok = false;
	while (!ok && now_mono_ms() < deadline) {
		r = agent(ip, "GET", "/backups", NULL);
		ok = !strcmp(
		    jstr(json_array_get(json_object_get(r.j, "backups"), 0), "state") ?: "", "ok");
		res_free(&r);
		if (!ok)
			sleep_ms(20);
	}
	assert_true(ok);
	snprintf(path, sizeof(path), "/backups/restore?id=%s", id1);
	r = agent(ip, "POST", path, NULL);
	assert_int_equal(r.status, 202);
	res_free(&r);
	r = agent(ip, "GET", "/status", NULL);
	assert_string_equal(jstr(r.j, "restore.id"), id1);
	assert_string_equal(jstr(r.j, "restore.state"), "running");
	res_free(&r);
	deadline = now_mono_ms() + 5000;
	ok = false;
	while (!ok && now_mono_ms() < deadline) {
		r = agent(ip, "GET", "/status", NULL);
		ok = !strcmp(jstr(r.j, "restore.state") ?: "", "done");
		res_free(&r);
		if (!ok)
			sleep_ms(20);
	}
	assert_true(ok);
	r = agent(ip, "POST", "/backups/restore?id=bk-nope", NULL);
	assert_int_equal(r.status, 404);
	res_free(&r);
}

static void agent__reachability__only_while_ct_runs_and_modes(void **state)
{
	(void)state;
	/* an address no container has: reset */
	Res r = agent("127.60.9.9", "GET", "/health", NULL);
	assert_int_equal(r.err, -ECONNRESET);
	res_free(&r);
	/* CT 5001 (127.x none) is stopped; make 5004 running with an ip, then stop it */
	make_running(5004, "pve2", 20, UID3);
	r = agent("127.60.0.20", "GET", "/health", NULL);
	assert_int_equal(r.status, 200);
	res_free(&r);
	r = ctl("POST", "/_sim/agent", "{\"vmid\":5004,\"mode\":\"never_ready\"}");
	assert_int_equal(r.status, 200);
	res_free(&r);
	r = agent("127.60.0.20", "POST", "/config",
	          "{\"container_type\":\"dev\",\"runtime\":\"node\"}");
	assert_int_equal(r.status, 202);
	res_free(&r);
	assert_true(wait_agent_state("127.60.0.20", "starting"));
	sleep_ms(700); /* well past --agent-ready-ms: still not ready */
	r = agent("127.60.0.20", "GET", "/ready", NULL);
	assert_int_equal(r.status, 503);
	res_free(&r);
	r = ctl("POST", "/_sim/agent", "{\"ip\":\"127.60.0.20\",\"mode\":\"crashed\"}");
	assert_int_equal(r.status, 200);
	res_free(&r);
	r = agent("127.60.0.20", "GET", "/status", NULL);
	assert_string_equal(jstr(r.j, "state"), "crashed");
	assert_int_equal(jint(r.j, "crashCount"), 1);
	res_free(&r);
	r = ctl("POST", "/_sim/agent", "{\"vmid\":5004,\"mode\":\"down\"}");
	res_free(&r);
	r = agent("127.60.0.20", "GET", "/health", NULL);
	assert_int_equal(r.err, -ECONNRESET);
	res_free(&r);
	r = ctl("POST", "/_sim/agent", "{\"vmid\":5004,\"mode\":\"hang\"}");
	res_free(&r);
	HttpOptions o = {.timeout_ms = 300};
	HttpClient *quick = http_client_new(&o);
	int64_t t0 = now_mono_ms();
	r = agent_c(quick, "127.60.0.20", "GET", "/health", NULL);
	assert_int_equal(r.err, -ETIMEDOUT);
	assert_true(now_mono_ms() - t0 >= 250);
	res_free(&r);
	http_client_free(quick);
	r = ctl("POST", "/_sim/agent", "{\"vmid\":5004,\"mode\":\"normal\"}");
	res_free(&r);
	assert_true(wait_agent_state("127.60.0.20", "running"));
	r = agent("127.60.0.20", "POST", "/dev/codeserver/start", NULL);
	assert_int_equal(r.status, 202);
	res_free(&r);
	/* stopped container: no agent */
	r = pve("POST", "/nodes/pve2/lxc/5004/status/stop", "");
	expect_ok_task(&r, "pve2");
	res_free(&r);
	r = agent("127.60.0.20", "GET", "/health", NULL);
	assert_int_equal(r.err, -ECONNRESET);
	res_free(&r);
	/* back up: the agent keeps its provisioning and boots to running */
	r = pve("POST", "/nodes/pve2/lxc/5004/status/start", "");
	expect_ok_task(&r, "pve2");
	res_free(&r);
	assert_true(wait_agent_state("127.60.0.20", "running"));
}

/* ---- Velocity ------------------------------------------------------------------- */

static void velocity__register__case_insensitive_refuses_other_address(void **state)
{
	(void)state;
	char url[256];
	snprintf(url, sizeof(url), "%s/zpack/status", S.velocity_url);
	Res r = call("GET", url, "X-Zpack-Secret: 00", NULL, NULL);
	assert_int_equal(r.status, 401);
	res_free(&r);
	r = vel("POST", "/zpack/register",
	        "{\"server_name\":\"mc1\",\"address\":\"127.60.0.5\",\"port\":25565}");
	assert_int_equal(r.status, 200);
	res_free(&r);
	r = vel("POST", "/zpack/register",
	        "{\"server_name\":\"MC1\",\"address\":\"127.60.0.5\",\"port\":25565}");
	assert_int_equal(r.status, 200);
	res_free(&r);
	r = vel("POST", "/zpack/register",
	        "{\"server_name\":\"mc1\",\"address\":\"127.60.0.6\",\"port\":25565}");
	assert_int_equal(r.status, 409);
	res_free(&r);
	r = vel("GET", "/zpack/status", NULL);
	assert_int_equal(r.status, 200);
	json_t *servers = json_object_get(r.j, "servers");
	assert_int_equal(json_array_size(servers), 2); /* lobby + mc1 */
	res_free(&r);
	json_t *st = stats();
	json_t *se = json_object_get(st, "side_effects");
	assert_int_equal(json_integer_value(json_object_get(se, "velocity.register")), 1);
	assert_int_equal(json_integer_value(json_object_get(se, "velocity.register_noop")), 1);
	json_decref(st);
	/* the FQDN is a second registration of the same first label */
	r = vel("POST", "/zpack/register",
	        "{\"server_name\":\"mc1.sim.zlh.test\",\"address\":\"127.60.0.5\",\"port\":25565}");
	assert_int_equal(r.status, 200);
	res_free(&r);
	st = stats();
	assert_int_equal(
	    jint(json_object_get(json_object_get(st, "duplicates"), "registrations_per_name"),
	         "mc1.max"),
	    2);
	json_decref(st);
	r = vel("POST", "/zpack/unregister", "{\"server_name\":\"MC1.sim.zlh.test\"}");
	assert_int_equal(r.status, 200);
	res_free(&r);
	r = vel("POST", "/zpack/unregister", "{\"server_name\":\"mc1.sim.zlh.test\"}");
	assert_int_equal(r.status, 404);
	res_free(&r);
	/* a restart forgets every registration but the static lobby */
	r = ctl("POST", "/_sim/velocity/restart", "{\"down_ms\":1000}");
	assert_int_equal(r.status, 200);
	res_free(&r);
	r = vel("GET", "/zpack/status", NULL);
	assert_int_equal(r.err, -ECONNRESET);
	res_free(&r);
	int64_t deadline = now_mono_ms() + 5000;
	do {
		sleep_ms(20);
		r = vel("GET", "/zpack/status", NULL);
		if (r.status == 200)
			break;
		res_free(&r);
	} while (now_mono_ms() < deadline);
	assert_int_equal(r.status, 200);
	servers = json_object_get(r.j, "servers");
	assert_int_equal(json_array_size(servers), 1);
	assert_string_equal(jstr(json_array_get(servers, 0), "name"), "lobby");
	res_free(&r);
}

/* ---- Cloudflare ------------------------------------------------------------------ */

static void cf__records__crud_filters_pages_duplicates(void **state)
{
	(void)state;
	char url[256];
	snprintf(url, sizeof(url), "%s/zones/%s/dns_records", S.cf_url, S.zone_id);
	Res r = call("GET", url, "Authorization: Bearer nope", NULL, NULL);
	assert_int_equal(r.status, 403);
	assert_false(json_is_true(json_object_get(r.j, "success")));
	res_free(&r);
	const char *a =
	    "{\"type\":\"A\",\"name\":\"mc1.sim.zlh.test\",\"content\":\"203.0.113.10\","
	    "\"ttl\":60,\"proxied\":false,\"comment\":\"zlh:uid=" UID1 "\"}";
	r = cf("POST", "/dns_records", a);
	assert_int_equal(r.status, 200);
	assert_true(json_is_true(json_object_get(r.j, "success")));
	assert_int_equal(strlen(jstr(r.j, "result.id")), 32);
	char id[40];
	snprintf(id, sizeof(id), "%s", jstr(r.j, "result.id"));
	res_free(&r);
	r = cf("POST", "/dns_records", a);
	assert_int_equal(r.status, 400);
	assert_int_equal(jint(json_array_get(json_object_get(r.j, "errors"), 0), "code"), 81058);
	res_free(&r);
	/* a different content at the same name+type is accepted: a duplicate */
	r = cf("POST", "/dns_records",
	       "{\"type\":\"A\",\"name\":\"mc1\",\"content\":\"203.0.113.11\",\"ttl\":60,"
	       "\"comment\":\"zlh:uid=" UID1 "\"}");
	assert_int_equal(r.status, 200);
	assert_string_equal(jstr(r.j, "result.name"), "mc1.sim.zlh.test");
	char id2[40];
	snprintf(id2, sizeof(id2), "%s", jstr(r.j, "result.id"));
	res_free(&r);
	r = cf(
	    "POST", "/dns_records",
	    "{\"type\":\"SRV\",\"name\":\"_minecraft._tcp.mc1.sim.zlh.test\",\"ttl\":60,"
	    "\"data\":{\"priority\":0,\"weight\":0,\"port\":25565,\"target\":\"mc1.sim.zlh.test\"},"
	    "\"comment\":\"zlh:uid=" UID1 "\"}");
	assert_int_equal(r.status, 200);
	assert_string_equal(jstr(r.j, "result.content"), "0 25565 mc1.sim.zlh.test");
	res_free(&r);
	r = cf("POST", "/dns_records", "{\"type\":\"A\",\"name\":\"x\",\"content\":\"nope\"}");
	assert_int_equal(r.status, 400);
	res_free(&r);
	r = cf("POST", "/dns_records",
	       "{\"type\":\"TXT\",\"name\":\"www\",\"content\":\"not ours\",\"ttl\":30}");
	assert_int_equal(r.status, 400);
	res_free(&r);

	json_t *st = stats();
	json_t *d = json_object_get(
	    json_object_get(json_object_get(st, "duplicates"), "dns_records_per_name_type"),
	    "A mc1.sim.zlh.test");
	assert_int_equal(jint(d, "max"), 2);
	json_decref(st);

	r = cf("GET", "/dns_records?name=mc1.sim.zlh.test&type=A&per_page=1", NULL);
	assert_int_equal(r.status, 200);
	assert_int_equal(json_array_size(json_object_get(r.j, "result")), 1);
	assert_int_equal(jint(r.j, "result_info.total_count"), 2);
	assert_int_equal(jint(r.j, "result_info.total_pages"), 2);
	assert_int_equal(jint(r.j, "result_info.count"), 1);
	res_free(&r);
	r = cf("GET", "/dns_records?comment=zlh%3Auid%3D" UID1 "&page=2&per_page=2", NULL);
	assert_int_equal(jint(r.j, "result_info.total_count"), 3);
	assert_int_equal(json_array_size(json_object_get(r.j, "result")), 1);
	res_free(&r);
	r = cf("GET", "/dns_records?comment.startswith=zlh%3A&type=SRV", NULL);
	assert_int_equal(jint(r.j, "result_info.total_count"), 1);
	res_free(&r);

	char path[128];
	snprintf(path, sizeof(path), "/dns_records/%s", id2);
	r = cf("PATCH", path, "{\"content\":\"203.0.113.12\"}");
	assert_int_equal(r.status, 200);
	assert_string_equal(jstr(r.j, "result.content"), "203.0.113.12");
	assert_string_equal(jstr(r.j, "result.comment"), "zlh:uid=" UID1);
	res_free(&r);
	r = cf("PUT", path,
	       "{\"type\":\"A\",\"name\":\"mc1.sim.zlh.test\",\"content\":\"203.0.113.10\"}");
	assert_int_equal(r.status, 400); /* identical to the first */
	res_free(&r);
	r = cf("DELETE", path, NULL);
	assert_int_equal(r.status, 200);
	assert_string_equal(jstr(r.j, "result.id"), id2);
	res_free(&r);
	r = cf("DELETE", path, NULL);
	assert_int_equal(r.status, 404);
	assert_int_equal(jint(json_array_get(json_object_get(r.j, "errors"), 0), "code"), 81044);
	res_free(&r);
	snprintf(path, sizeof(path), "/dns_records/%s", id);
	r = cf("GET", path, NULL);
	assert_int_equal(r.status, 200);
	res_free(&r);
}

static void cf__rate_limit__429_with_retry_after(void **state)
{
	(void)state;
	Res r = ctl("POST", "/_sim/cloudflare/ratelimit",
	            "{\"limit\":3,\"window_ms\":60000,\"penalty_ms\":2000}");
	assert_int_equal(r.status, 200);
	res_free(&r);
	for (int i = 0; i < 3; i++) {
		r = cf("GET", "/dns_records", NULL);
		assert_int_equal(r.status, 200);
		res_free(&r);
	}
	r = cf("GET", "/dns_records", NULL);
	assert_int_equal(r.status, 429);
	assert_true(r.retry_after >= 1 && r.retry_after <= 2);
	res_free(&r);
	r = ctl("POST", "/_sim/cloudflare/ratelimit", "{\"limit\":0}");
	res_free(&r);
	r = cf("GET", "/dns_records", NULL);
	assert_int_equal(r.status, 200);
	res_free(&r);
}

/* ---- faults ------------------------------------------------------------------- */

static void faults__error__500_before_any_side_effect(void **state)
{
	(void)state;
	Res r = ctl("POST", "/_sim/faults",
	            "{\"system\":\"pve\",\"method\":\"POST\",\"route\":\"*/nodes/{node}/lxc\","
	            "\"error_rate\":1,\"count\":1}");
	assert_int_equal(r.status, 200);
	res_free(&r);
	const char *form = "vmid=5100&ostemplate=local%3Avztmpl%2Fdebian-12-standard_12.7-1_amd64."
	                   "tar.zst&hostname=f1";
	r = pve("POST", "/nodes/pve1/lxc", form);
	assert_int_equal(r.status, 500);
	res_free(&r);
	assert_false(ct_exists(5100));
	r = pve("POST", "/nodes/pve1/lxc", form); /* count exhausted */
	expect_ok_task(&r, "pve1");
	res_free(&r);
	assert_true(ct_exists(5100));
	r = ctl("DELETE", "/_sim/faults", NULL);
	assert_int_equal(r.status, 200);
	res_free(&r);
}

static void faults__lost__effect_done_reply_dropped(void **state)
{
	(void)state;
	Res r = ctl("POST", "/_sim/faults",
	            "[{\"system\":\"pve\",\"method\":\"POST\",\"route\":\"*/nodes/{node}/lxc\","
	            "\"lost_rate\":1,\"count\":1},{\"system\":\"cloudflare\",\"method\":\"POST\","
	            "\"lost_rate\":1,\"count\":1}]");
	assert_int_equal(r.status, 200);
	assert_int_equal(json_array_size(json_object_get(r.j, "ids")), 2);
	res_free(&r);
	char url[256];
	snprintf(url, sizeof(url), "%s/api2/json/nodes/pve1/lxc", S.pve_url);
	r = call_c(H, "POST", url, S.pve_auth, "application/x-www-form-urlencoded",
	           "vmid=5101&ostemplate=local%3Avztmpl%2Fdebian-12-standard_12.7-1_amd64.tar.zst",
	           true);
	assert_int_equal(r.err, -ECONNRESET);
	assert_int_equal(r.status, 0);
	res_free(&r);
	assert_true(ct_exists(5101)); /* the side effect happened */
	/* the retry a client would make: already exists, for its own CT */
	r = pve("POST", "/nodes/pve1/lxc",
	        "vmid=5101&ostemplate=local%3Avztmpl%2Fdebian-12-standard_12.7-1_amd64.tar.zst");
	assert_int_equal(r.status, 500);
	assert_string_equal(jstr(r.j, "message"), "CT 5101 already exists on node 'pve1'\n");
	res_free(&r);
	snprintf(url, sizeof(url), "%s/zones/%s/dns_records", S.cf_url, S.zone_id);
	r = call_c(H, "POST", url, S.cf_auth, "application/json",
	           "{\"type\":\"A\",\"name\":\"lost\",\"content\":\"203.0.113.10\"}", true);
	assert_int_equal(r.err, -ECONNRESET);
	res_free(&r);
	r = cf("GET", "/dns_records?name=lost.sim.zlh.test", NULL);
	assert_int_equal(jint(r.j, "result_info.total_count"), 1);
	res_free(&r);
	json_t *st = stats();
	assert_int_equal(jint(st, "faults.lost"), 2);
	json_decref(st);

	/* on a reused keep-alive connection libcurl resends by itself: the
	 * caller sees "already exists" for its own container */
	r = pve("GET", "/version", NULL); /* warm the connection */
	res_free(&r);
	r = ctl("POST", "/_sim/faults",
	        "{\"system\":\"pve\",\"method\":\"POST\",\"route\":\"*/nodes/{node}/lxc\","
	        "\"lost_rate\":1,\"count\":1}");
	res_free(&r);
	r = pve("POST", "/nodes/pve1/lxc",
	        "vmid=5102&ostemplate=local%3Avztmpl%2Fdebian-12-standard_12.7-1_amd64.tar.zst");
	assert_int_equal(r.err, 0);
	assert_int_equal(r.status, 500);
	assert_string_equal(jstr(r.j, "message"), "CT 5102 already exists on node 'pve1'\n");
	res_free(&r);
	st = stats();
	assert_int_equal(jint(st, "faults.lost"), 3);
	json_decref(st);
	/* the request log shows the dropped replies with status 0 */
	r = ctl("GET", "/_sim/requests?system=pve", NULL);
	json_t *reqs = json_object_get(r.j, "requests");
	bool seen = false;
	uint64_t prev = 0;
	size_t i;
	json_t *e;
	json_array_foreach(reqs, i, e)
	{
		assert_true((uint64_t)jint(e, "seq") > prev);
		prev = (uint64_t)jint(e, "seq");
		if (jstr(e, "fault") && !strcmp(jstr(e, "fault"), "lost")) {
			seen = true;
			assert_int_equal(jint(e, "status"), 0);
			assert_string_equal(jstr(e, "method"), "POST");
		}
	}
	assert_true(seen);
	res_free(&r);
	r = ctl("DELETE", "/_sim/faults", NULL);
	res_free(&r);
}

static void faults__latency_and_hang__delay_replies(void **state)
{
	(void)state;
	Res r = ctl("POST", "/_sim/faults",
	            "{\"system\":\"velocity\",\"route\":\"/zpack/status\",\"latency_ms\":150,"
	            "\"jitter_ms\":50,\"count\":1}");
	assert_int_equal(r.status, 200);
	res_free(&r);
	int64_t t0 = now_mono_ms();
	r = vel("GET", "/zpack/status", NULL);
	assert_int_equal(r.status, 200);
	assert_true(now_mono_ms() - t0 >= 150);
	res_free(&r);
	r = ctl("POST", "/_sim/faults",
	        "{\"system\":\"pve\",\"route\":\"/version\",\"hang_ms\":600,"
	        "\"count\":1}");
	res_free(&r);
	HttpOptions o = {.timeout_ms = 200};
	HttpClient *quick = http_client_new(&o);
	char url[256];
	snprintf(url, sizeof(url), "%s/api2/json/version", S.pve_url);
	r = call_c(quick, "GET", url, S.pve_auth, NULL, NULL, true);
	assert_int_equal(r.err, -ETIMEDOUT);
	res_free(&r);
	http_client_free(quick);
	r = ctl("POST", "/_sim/faults", "{\"system\":\"nope\"}");
	assert_int_equal(r.status, 400);
	res_free(&r);
	r = ctl("POST", "/_sim/faults", "{\"error_rate\":2}");
	assert_int_equal(r.status, 400);
	res_free(&r);
	r = ctl("DELETE", "/_sim/faults", NULL);
	res_free(&r);
}

static void faults__vmid_filter__only_that_container(void **state)
{
	(void)state;
	/* CT 5000 (127.60.0.5) and CT 5004 (127.60.0.20) both run agents */
	Res r = ctl("POST", "/_sim/faults",
	            "{\"system\":\"agent\",\"vmid\":5004,\"route\":\"/status\",\"error_rate\":1}");
	assert_int_equal(r.status, 200);
	res_free(&r);
	r = agent("127.60.0.20", "GET", "/status", NULL);
	assert_int_equal(r.status, 500);
	res_free(&r);
	r = agent("127.60.0.5", "GET", "/status", NULL);
	assert_int_equal(r.status, 200);
	res_free(&r);
	r = agent("127.60.0.20", "GET", "/health", NULL);
	assert_int_equal(r.status, 200);
	res_free(&r);
	r = ctl("GET", "/_sim/faults", NULL);
	assert_int_equal(jint(json_array_get(json_object_get(r.j, "faults"), 0), "matched"), 1);
	res_free(&r);
	r = ctl("DELETE", "/_sim/faults", NULL);
	res_free(&r);
	r = agent("127.60.0.20", "GET", "/status", NULL);
	assert_int_equal(r.status, 200);
	res_free(&r);
}

/* ---- control: out of band --------------------------------------------------------- */

static void control__out_of_band__foreign_delete_stop_lock(void **state)
{
	(void)state;
	Res r = ctl("POST", "/_sim/pve/create-foreign",
	            "{\"vmid\":5500,\"node\":\"pve2\",\"hostname\":\"www\",\"ip\":\"127.60.1.1\"}");
	assert_int_equal(r.status, 200);
	res_free(&r);
	r = ctl("POST", "/_sim/pve/create-foreign", "{\"vmid\":5500}");
	assert_int_equal(r.status, 409);
	res_free(&r);
	r = pve("GET", "/nodes/pve2/lxc/5500/status/current", NULL);
	assert_string_equal(jstr(r.j, "data.status"), "running");
	assert_null(json_object_get(json_object_get(r.j, "data"), "tags"));
	res_free(&r);
	r = ctl("POST", "/_sim/pve/stop", "{\"vmid\":5500}");
	assert_int_equal(r.status, 200);
	res_free(&r);
	r = pve("GET", "/nodes/pve2/lxc/5500/status/current", NULL);
	assert_string_equal(jstr(r.j, "data.status"), "stopped");
	res_free(&r);
	r = ctl("POST", "/_sim/pve/lock", "{\"vmid\":5500,\"lock\":\"backup\"}");
	res_free(&r);
	r = pve("PUT", "/nodes/pve2/lxc/5500/config", "memory=1024");
	assert_string_equal(jstr(r.j, "message"), "CT is locked (backup)\n");
	res_free(&r);
	r = ctl("POST", "/_sim/pve/delete", "{\"vmid\":5500}");
	assert_int_equal(r.status, 200);
	res_free(&r);
	assert_false(ct_exists(5500));
	r = ctl("POST", "/_sim/pve/delete", "{\"vmid\":5500}");
	assert_int_equal(r.status, 404);
	res_free(&r);
	json_t *st = stats();
	json_t *se = json_object_get(st, "side_effects");
	assert_int_equal(json_integer_value(json_object_get(se, "sim.pve.delete")), 1);
	assert_int_equal(jint(st, "max.containers_per_uid.max"), 1);
	assert_int_equal(
	    jint(json_object_get(json_object_get(st, "created"), "containers_per_uid"), UID1), 1);
	json_decref(st);
}

/* ---- determinism ------------------------------------------------------------------- */

static char *seeded_run(const char *seed)
{
	SimProc p;
	const char *args[] = {"--seed", seed, "--fault",
	                      "{\"system\":\"pve\",\"route\":\"/version\",\"error_rate\":0.5}",
	                      NULL};
	assert_int_equal(simtest_start(&p, args, 15000), 0);
	HttpOptions o = {.timeout_ms = 5000};
	HttpClient *c = http_client_new(&o);
	Buf out = BUF_INIT;
	char url[256];
	snprintf(url, sizeof(url), "%s/api2/json/version", p.pve_url);
	for (int i = 0; i < 40; i++) {
		Res r = call_c(c, "GET", url, p.pve_auth, NULL, NULL, false);
		assert_int_equal(buf_printf(&out, "%ld,", r.status), 0);
		res_free(&r);
	}
	snprintf(url, sizeof(url), "%s/zones/%s/dns_records", p.cf_url, p.zone_id);
	for (int i = 0; i < 3; i++) {
		char body[128];
		snprintf(body, sizeof(body),
		         "{\"type\":\"A\",\"name\":\"d%d\",\"content\":\"192.0.2.1\"}", i);
		Res r = call_c(c, "POST", url, p.cf_auth, "application/json", body, true);
		assert_int_equal(r.status, 200);
		assert_int_equal(buf_printf(&out, "%s,", jstr(r.j, "result.id")), 0);
		res_free(&r);
	}
	assert_int_equal(buf_printf(&out, "%s", p.zone_id), 0);
	http_client_free(c);
	assert_int_equal(simtest_stop(&p), 0);
	return buf_steal(&out);
}

static void determinism__same_seed__same_faults_and_ids(void **state)
{
	(void)state;
	_cleanup_free_ char *a = seeded_run("42");
	_cleanup_free_ char *b = seeded_run("42");
	_cleanup_free_ char *c = seeded_run("43");
	assert_string_equal(a, b);
	assert_string_not_equal(a, c);
	assert_true(contains(a, "500,") && contains(a, "200,"));
}

/* ---- concurrency --------------------------------------------------------------------- */

static void concurrency__1000_requests_at_once__all_answered(void **state)
{
	(void)state;
	enum { N = 1000 };
	CURLM *m = curl_multi_init();
	CURL *e[N];
	struct curl_slist *hp = curl_slist_append(NULL, S.pve_auth);
	struct curl_slist *ha = curl_slist_append(NULL, S.agent_auth);
	struct curl_slist *hv = curl_slist_append(NULL, S.zpack_header);
	struct curl_slist *hc = curl_slist_append(NULL, S.cf_auth);
	curl_multi_setopt(m, CURLMOPT_MAX_TOTAL_CONNECTIONS, 0L);
	for (int i = 0; i < N; i++) {
		char url[256];
		struct curl_slist *h;
		switch (i % 5) {
		case 0:
			snprintf(url, sizeof(url), "%s/api2/json/cluster/resources", S.pve_url);
			h = hp;
			break;
		case 1:
			snprintf(url, sizeof(url), "http://127.60.0.5:%d/status", S.agent_port);
			h = ha;
			break;
		case 2:
			snprintf(url, sizeof(url), "%s/zpack/status", S.velocity_url);
			h = hv;
			break;
		case 3:
			snprintf(url, sizeof(url), "%s/zones/%s/dns_records", S.cf_url, S.zone_id);
			h = hc;
			break;
		default:
			snprintf(url, sizeof(url),
			         "%s/api2/json/nodes/pve1/lxc/5000/status/current", S.pve_url);
			h = hp;
		}
		e[i] = curl_easy_init();
		curl_easy_setopt(e[i], CURLOPT_URL, url);
		curl_easy_setopt(e[i], CURLOPT_HTTPHEADER, h);
		curl_easy_setopt(e[i], CURLOPT_TIMEOUT_MS, 30000L);
		curl_easy_setopt(e[i], CURLOPT_FRESH_CONNECT, 1L);
		curl_easy_setopt(e[i], CURLOPT_WRITEFUNCTION, fwrite);
		FILE *null = fopen("/dev/null", "we");
		curl_easy_setopt(e[i], CURLOPT_WRITEDATA, null);
		curl_easy_setopt(e[i], CURLOPT_PRIVATE, null);
		curl_multi_add_handle(m, e[i]);
	}
	int running = 1;
	int64_t deadline = now_mono_ms() + 40000;
	while (running && now_mono_ms() < deadline) {
		curl_multi_perform(m, &running);
		if (running)
			curl_multi_poll(m, NULL, 0, 100, NULL);
	}
	int ok = 0;
	for (int i = 0; i < N; i++) {
		long code = 0;
		curl_easy_getinfo(e[i], CURLINFO_RESPONSE_CODE, &code);
		ok += code == 200;
		FILE *null;
		curl_easy_getinfo(e[i], CURLINFO_PRIVATE, (char **)&null);
		fclose(null);
		curl_multi_remove_handle(m, e[i]);
		curl_easy_cleanup(e[i]);
	}
	curl_multi_cleanup(m);
	curl_slist_free_all(hp);
	curl_slist_free_all(ha);
	curl_slist_free_all(hv);
	curl_slist_free_all(hc);
	assert_int_equal(ok, N);
	Res r = pve("GET", "/version", NULL);
	assert_int_equal(r.status, 200);
	res_free(&r);
}

/* ---- shutdown -------------------------------------------------------------------------- */

static void shutdown__sigterm__exit_0_and_temp_dir_removed(void **state)
{
	(void)state;
	SimProc p;
	assert_int_equal(simtest_start(&p, NULL, 15000), 0);
	char dir[512];
	snprintf(dir, sizeof(dir), "%s", p.state_dir);
	struct stat st;
	assert_int_equal(stat(dir, &st), 0);
	assert_int_equal(simtest_stop(&p), 0);
	assert_int_not_equal(stat(dir, &st), 0);
	/* bad flags: exit 2 */
	const char *bad[] = {"--nodes", "zero", NULL};
	assert_int_not_equal(simtest_start(&p, bad, 5000), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(config__printed__has_the_contract_keys),
	    cmocka_unit_test(pve__auth__401_without_or_with_a_wrong_token),
	    cmocka_unit_test(pve__nodes_and_resources__list_nodes_with_memory),
	    cmocka_unit_test(pve__create__upid_lock_unknown_then_running),
	    cmocka_unit_test(pve__create__existing_vmid_fails_as_proxmox_does),
	    cmocka_unit_test(pve__params__verified_as_proxmox_does),
	    cmocka_unit_test(pve__clone__locks_template_for_the_whole_task),
	    cmocka_unit_test(pve__power__tasks_and_exact_errors),
	    cmocka_unit_test(pve__delete__running_refused_missing_is_config_error),
	    cmocka_unit_test(pve__nextid_and_tasks__reserve_nothing_unknown_upid_400),
	    cmocka_unit_test(agent__provision__idle_installing_running_ready),
	    cmocka_unit_test(agent__backups__not_deduped_restore_progress_outlive_ct),
	    cmocka_unit_test(agent__reachability__only_while_ct_runs_and_modes),
	    cmocka_unit_test(velocity__register__case_insensitive_refuses_other_address),
	    cmocka_unit_test(cf__records__crud_filters_pages_duplicates),
	    cmocka_unit_test(cf__rate_limit__429_with_retry_after),
	    cmocka_unit_test(faults__error__500_before_any_side_effect),
	    cmocka_unit_test(faults__lost__effect_done_reply_dropped),
	    cmocka_unit_test(faults__latency_and_hang__delay_replies),
	    cmocka_unit_test(faults__vmid_filter__only_that_container),
	    cmocka_unit_test(control__out_of_band__foreign_delete_stop_lock),
	    cmocka_unit_test(concurrency__1000_requests_at_once__all_answered),
	    cmocka_unit_test(determinism__same_seed__same_faults_and_ids),
	    cmocka_unit_test(shutdown__sigterm__exit_0_and_temp_dir_removed),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
