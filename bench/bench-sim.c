/* bench-sim: requests per second zlh-sim sustains on loopback for a mix
 * like the controller's: GET /cluster/resources over 1,000 containers,
 * agent GET /status and task polls, from 64 concurrent keep-alive clients.
 * Prints figures; asserts nothing about them. Built and run by
 * bench/bench-sim.sh; stops by itself (BENCH_SECONDS, default 10). */
#include <curl/curl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test/sim/simtest.h"

enum { CLIENTS = 64, CTS = 1000, TASKS = 60, LAT_MAX = 1 << 22 };

typedef struct Client {
	CURL *e;
	int kind;
	int64_t t0;
} Client;

static SimProc S;
static char upids[TASKS][160];
static char task_nodes[TASKS][8];
static struct curl_slist *h_pve, *h_agent;
static uint64_t rng = 0x9E3779B97F4A7C15ULL;
static int lat_us[LAT_MAX];
static size_t n_lat;
static long counts[3], errors;

static uint64_t next_rand(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

static size_t discard(char *p, size_t sz, size_t n, void *ud)
{
	(void)p;
	(void)ud;
	return sz * n;
}

/* One blocking request (setup only); returns the HTTP status. */
static long simple(const char *method, const char *url, struct curl_slist *h, const char *body,
                   char **ret_body)
{
	CURL *e = curl_easy_init();
	char *buf = NULL;
	size_t len = 0;
	FILE *mem = open_memstream(&buf, &len);
	curl_easy_setopt(e, CURLOPT_URL, url);
	curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, method);
	curl_easy_setopt(e, CURLOPT_HTTPHEADER, h);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, mem);
	if (body)
		curl_easy_setopt(e, CURLOPT_POSTFIELDS, body);
	long code = 0;
	if (curl_easy_perform(e) == CURLE_OK)
		curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &code);
	curl_easy_cleanup(e);
	fclose(mem);
	if (ret_body)
		*ret_body = buf;
	else
		free(buf);
	return code;
}

static void agent_ip(int i, char *out, size_t n)
{
	snprintf(out, n, "127.61.%d.%d", i / 250, i % 250 + 1);
}

static void setup(void)
{
	char url[1024], body[512];
	struct curl_slist *hj = curl_slist_append(NULL, "Content-Type: application/json");
	for (int i = 0; i < CTS; i++) {
		char ip[32];
		agent_ip(i, ip, sizeof(ip));
		snprintf(url, sizeof(url), "%s/_sim/pve/create-foreign", S.control_url);
		snprintf(body, sizeof(body),
		         "{\"vmid\":%d,\"node\":\"pve%d\",\"ip\":\"%s\",\"hostname\":\"b%d\","
		         "\"tags\":\"zlh;zlh-%08x-0000-4000-8000-000000000000\",\"memory\":1024}",
		         6000 + i, i % 3 + 1, ip, i, i);
		if (simple("POST", url, hj, body, NULL) != 200) {
			fprintf(stderr, "bench-sim: setup failed at container %d\n", i);
			exit(1);
		}
	}
	curl_slist_free_all(hj);
	/* tasks to poll: creates through the API (some still running, most done) */
	struct curl_slist *hf = curl_slist_append(NULL, S.pve_auth);
	for (int i = 0; i < TASKS; i++) {
		snprintf(task_nodes[i], sizeof(task_nodes[i]), "pve%d", i % 3 + 1);
		snprintf(url, sizeof(url), "%s/api2/json/nodes/%s/lxc", S.pve_url, task_nodes[i]);
		snprintf(
		    body, sizeof(body),
		    "vmid=%d&ostemplate=local%%3Avztmpl%%2Fdebian-12-standard_12.7-1_amd64.tar.zst"
		    "&hostname=t%d",
		    8000 + i, i);
		char *out = NULL;
		long code = simple("POST", url, hf, body, &out);
		json_t *j = out ? json_loads(out, 0, NULL) : NULL;
		const char *upid = json_string_value(json_object_get(j, "data"));
		if (code != 200 || !upid) {
			fprintf(stderr, "bench-sim: create failed: %ld %s\n", code, out ? out : "");
			exit(1);
		}
		char *esc = curl_easy_escape(NULL, upid, 0);
		snprintf(upids[i], sizeof(upids[i]), "%s", esc);
		curl_free(esc);
		json_decref(j);
		free(out);
	}
	curl_slist_free_all(hf);
}

/* The mix: 2% /cluster/resources, 60% agent /status, 38% task polls. */
static void next_request(Client *c)
{
	char url[1024];
	uint64_t r = next_rand() % 100;
	if (r < 2) {
		c->kind = 0;
		snprintf(url, sizeof(url), "%s/api2/json/cluster/resources?type=vm", S.pve_url);
		curl_easy_setopt(c->e, CURLOPT_HTTPHEADER, h_pve);
	} else if (r < 62) {
		c->kind = 1;
		char ip[32];
		agent_ip((int)(next_rand() % CTS), ip, sizeof(ip));
		snprintf(url, sizeof(url), "http://%s:%d/status", ip, S.agent_port);
		curl_easy_setopt(c->e, CURLOPT_HTTPHEADER, h_agent);
	} else {
		c->kind = 2;
		int t = (int)(next_rand() % TASKS);
		snprintf(url, sizeof(url), "%s/api2/json/nodes/%s/tasks/%s/status", S.pve_url,
		         task_nodes[t], upids[t]);
		curl_easy_setopt(c->e, CURLOPT_HTTPHEADER, h_pve);
	}
	curl_easy_setopt(c->e, CURLOPT_URL, url);
	c->t0 = simtest_now_ms() * 1000;
}

static int cmp_int(const void *a, const void *b)
{
	return *(const int *)a - *(const int *)b;
}

static int64_t now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int main(void)
{
	const char *secs_env = getenv("BENCH_SECONDS");
	long secs = secs_env ? strtol(secs_env, NULL, 10) : 10;
	if (secs < 1 || secs > 60)
		secs = 10;
	curl_global_init(CURL_GLOBAL_DEFAULT);
	const char *args[] = {"--nodes", "3", "--task-ms", "2000", "--log-capacity", "1000", NULL};
	int r = simtest_start(&S, args, 15000);
	if (r < 0) {
		fprintf(stderr, "bench-sim: cannot start zlh-sim: %s\n", strerror(-r));
		return 1;
	}
	h_pve = curl_slist_append(NULL, S.pve_auth);
	h_agent = curl_slist_append(NULL, S.agent_auth);
	int64_t ts = simtest_now_ms();
	setup();
	fprintf(stderr, "bench-sim: setup (%d containers, %d tasks) took %lld ms\n", CTS, TASKS,
	        (long long)(simtest_now_ms() - ts));

	CURLM *m = curl_multi_init();
	curl_multi_setopt(m, CURLMOPT_MAXCONNECTS, (long)CLIENTS * 4);
	Client cl[CLIENTS];
	for (int i = 0; i < CLIENTS; i++) {
		cl[i].e = curl_easy_init();
		curl_easy_setopt(cl[i].e, CURLOPT_WRITEFUNCTION, discard);
		curl_easy_setopt(cl[i].e, CURLOPT_PRIVATE, &cl[i]);
		curl_easy_setopt(cl[i].e, CURLOPT_TIMEOUT_MS, 10000L);
		next_request(&cl[i]);
		cl[i].t0 = now_us();
		curl_multi_add_handle(m, cl[i].e);
	}
	int64_t start = now_us(), end = start + secs * 1000000;
	long done = 0;
	int running = CLIENTS;
	while (running > 0) {
		curl_multi_perform(m, &running);
		CURLMsg *msg;
		int left;
		while ((msg = curl_multi_info_read(m, &left))) {
			if (msg->msg != CURLMSG_DONE)
				continue;
			Client *c;
			curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&c);
			long code = 0;
			curl_easy_getinfo(c->e, CURLINFO_RESPONSE_CODE, &code);
			if (msg->data.result != CURLE_OK || code != 200)
				errors++;
			int64_t t = now_us();
			if (n_lat < LAT_MAX)
				lat_us[n_lat++] = (int)(t - c->t0);
			counts[c->kind]++;
			done++;
			curl_multi_remove_handle(m, c->e);
			if (t < end) {
				next_request(c);
				c->t0 = now_us();
				curl_multi_add_handle(m, c->e);
				running++;
			}
		}
		if (running > 0)
			curl_multi_poll(m, NULL, 0, 50, NULL);
	}
	double elapsed = (double)(now_us() - start) / 1e6;
	qsort(lat_us, n_lat, sizeof(int), cmp_int);
	printf("zlh-sim bench: %ld requests in %.1f s = %.0f requests/s "
	       "(%d keep-alive clients; %ld /cluster/resources over %d containers, %ld agent "
	       "/status, %ld task polls; %ld errors; latency p50 %.1f ms, p99 %.1f ms)\n",
	       done, elapsed, (double)done / elapsed, CLIENTS, counts[0], CTS, counts[1], counts[2],
	       errors, n_lat ? lat_us[n_lat / 2] / 1000.0 : 0.0,
	       n_lat ? lat_us[n_lat * 99 / 100] / 1000.0 : 0.0);
	fflush(stdout);
	for (int i = 0; i < CLIENTS; i++)
		curl_easy_cleanup(cl[i].e);
	curl_multi_cleanup(m);
	curl_slist_free_all(h_pve);
	curl_slist_free_all(h_agent);
	int st = simtest_stop(&S);
	return st == 0 && errors == 0 ? 0 : 1;
}
