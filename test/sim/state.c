/* state.c - the simulated world: lock, clock, PRNG, containers, tasks.
 *
 * Time is lazy: tasks and agent states carry the sim time at which they
 * change, and world_tick() (called under the lock before every request)
 * applies whatever became due, in order. Nothing runs in the background, so
 * a replay with the same --seed and the same request sequence sees the same
 * world. */
#include "sim.h"

#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "util.h"

SimOptions sim_opt;
SimSecrets sim_secrets;
World world;
volatile int sim_stopping;

static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static int64_t g_start_mono;
static uint64_t g_rand_state;

void world_lock(void)
{
	pthread_mutex_lock(&g_lock);
}

void world_unlock(void)
{
	pthread_mutex_unlock(&g_lock);
}

int64_t sim_now_ms(void)
{
	if (!g_start_mono)
		g_start_mono = now_mono_ms();
	return now_mono_ms() - g_start_mono;
}

int64_t sim_wall_ms(void)
{
	return now_wall_ms();
}

void sim_sleep_ms(int64_t ms)
{
	int64_t end = now_mono_ms() + ms;
	while (!sim_stopping) {
		int64_t left = end - now_mono_ms();
		if (left <= 0)
			break;
		if (left > 20)
			left = 20;
		struct timespec ts = {.tv_sec = 0, .tv_nsec = left * 1000000};
		nanosleep(&ts, NULL);
	}
}

void sim_rand_seed(uint64_t seed)
{
	g_rand_state = seed;
}

uint64_t sim_rand(void)
{
	/* splitmix64 */
	uint64_t z = (g_rand_state += 0x9E3779B97F4A7C15ULL);
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
	return z ^ (z >> 31);
}

double sim_rand_unit(void)
{
	return (double)(sim_rand() >> 11) * (1.0 / 9007199254740992.0);
}

void sim_rand_hex(char *out, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	uint64_t v = 0;
	for (size_t i = 0; i < n; i++) {
		if (i % 16 == 0)
			v = sim_rand();
		out[i] = hex[v & 15];
		v >>= 4;
	}
	out[n] = 0;
}

const char *sim_system_name(SimSystem s)
{
	static const char *const names[SYS__MAX] = {"pve", "agent", "velocity", "cloudflare",
	                                            "control"};
	return s < SYS__MAX ? names[s] : "?";
}

int sim_system_parse(const char *s)
{
	if (!s)
		return -1;
	for (int i = 0; i < SYS__MAX; i++)
		if (strcmp(s, sim_system_name(i)) == 0)
			return i;
	if (strcmp(s, "dns") == 0 || strcmp(s, "cf") == 0)
		return SYS_CLOUDFLARE;
	if (strcmp(s, "proxmox") == 0)
		return SYS_PVE;
	return -1;
}

const char *agent_mode_name(AgentMode m)
{
	static const char *const names[AGENT__MAX] = {"normal", "down", "never_ready", "crashed",
	                                              "hang"};
	return m < AGENT__MAX ? names[m] : "?";
}

int agent_mode_parse(const char *s)
{
	if (!s)
		return -1;
	for (int i = 0; i < AGENT__MAX; i++)
		if (strcmp(s, agent_mode_name(i)) == 0)
			return i;
	return -1;
}

/* ---- strings and addresses ------------------------------------------------ */

char *str_lower(const char *s)
{
	char *r = strdup(s ? s : "");
	if (!r)
		abort();
	for (char *p = r; *p; p++)
		*p = (char)tolower((unsigned char)*p);
	return r;
}

bool str_ieq(const char *a, const char *b)
{
	return a && b && strcasecmp(a, b) == 0;
}

uint32_t ip_parse(const char *s)
{
	unsigned a, b, c, d;
	char tail;
	if (!s || sscanf(s, "%u.%u.%u.%u%c", &a, &b, &c, &d, &tail) != 4)
		return 0;
	if (a > 255 || b > 255 || c > 255 || d > 255)
		return 0;
	return (a << 24) | (b << 16) | (c << 8) | d;
}

void ip_format(uint32_t ip, char *out, size_t n)
{
	snprintf(out, n, "%u.%u.%u.%u", ip >> 24, (ip >> 16) & 255, (ip >> 8) & 255, ip & 255);
}

/* ---- world ------------------------------------------------------------------- */

#define GROW(arr, n, cap)                                                 \
	do {                                                              \
		if ((n) == (cap)) {                                       \
			size_t nc_ = (cap) ? (cap)*2 : 64;                \
			void *np_ = realloc((arr), nc_ * sizeof(*(arr))); \
			if (!np_)                                         \
				abort();                                  \
			(arr) = np_;                                      \
			(cap) = nc_;                                      \
		}                                                         \
	} while (0)

int world_init(void)
{
	world.n_nodes = sim_opt.nodes;
	world.nodes = calloc((size_t)world.n_nodes, sizeof(char *));
	if (!world.nodes)
		return -ENOMEM;
	for (int i = 0; i < world.n_nodes; i++) {
		char name[32];
		snprintf(name, sizeof(name), "pve%d", i + 1);
		world.nodes[i] = strdup(name);
		if (!world.nodes[i])
			return -ENOMEM;
	}
	world.task_pid = 0x1000;
	/* one template container per node, the agent baked in */
	for (int i = 0; i < world.n_nodes; i++) {
		int vmid = sim_opt.template_base + i;
		char host[64];
		snprintf(host, sizeof(host), "zlh-template-%s", world.nodes[i]);
		json_t *extra = json_pack("{s:i, s:s}", "template", 1, "rootfs", "");
		char rootfs[96];
		snprintf(rootfs, sizeof(rootfs), "local-lvm:base-%d-disk-0,size=4G", vmid);
		json_object_set_new(extra, "rootfs", json_string(rootfs));
		Container *ct = pve_make_ct(vmid, world.nodes[i], host, extra);
		json_decref(extra);
		if (!ct)
			return -ENOMEM;
		ct->is_template = true;
		ct->created_ms = -1000000; /* long known to the stats daemon */
		world_ct_add(ct);
	}
	return 0;
}

static void agent_clear(Agent *a)
{
	json_decref(a->payload);
	free(a->payload_hash);
	free(a->restore_id);
	memset(a, 0, sizeof(*a));
}

void world_ct_free(Container *ct)
{
	if (!ct)
		return;
	json_decref(ct->conf);
	free(ct->lock);
	agent_clear(&ct->agent);
	free(ct);
}

void world_free(void)
{
	for (size_t i = 0; i < world.n_cts; i++)
		world_ct_free(world.cts[i]);
	free(world.cts);
	for (size_t i = 0; i < world.n_tasks; i++) {
		free(world.tasks[i]->exitstatus);
		buf_done(&world.tasks[i]->log);
		free(world.tasks[i]);
	}
	free(world.tasks);
	for (size_t i = 0; i < world.n_backups; i++)
		free(world.backups[i]);
	free(world.backups);
	for (size_t i = 0; i < world.n_vservers; i++) {
		free(world.vservers[i]->name);
		free(world.vservers[i]->address);
		free(world.vservers[i]);
	}
	free(world.vservers);
	for (size_t i = 0; i < world.n_records; i++) {
		DnsRecord *r = world.records[i];
		free(r->name);
		free(r->type);
		free(r->content);
		free(r->comment);
		json_decref(r->data);
		json_decref(r->tags);
		free(r);
	}
	free(world.records);
	for (int i = 0; i < world.n_nodes; i++)
		free(world.nodes[i]);
	free(world.nodes);
	memset(&world, 0, sizeof(world));
}

int world_node_index(const char *node)
{
	for (int i = 0; i < world.n_nodes; i++)
		if (node && strcmp(world.nodes[i], node) == 0)
			return i;
	return -1;
}

static size_t ct_lower_bound(int vmid)
{
	size_t lo = 0, hi = world.n_cts;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		if (world.cts[mid]->vmid < vmid)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

Container *world_ct(int vmid)
{
	size_t i = ct_lower_bound(vmid);
	if (i < world.n_cts && world.cts[i]->vmid == vmid)
		return world.cts[i];
	return NULL;
}

void world_ct_update(Container *ct)
{
	const char *net0 = json_string_value(json_object_get(ct->conf, "net0"));
	ct->ip = net0 ? pve_net_ip(net0) : 0;
	if (!pve_ct_uid(ct->conf, ct->uid, sizeof(ct->uid)))
		ct->uid[0] = 0;
}

void world_ct_add(Container *ct)
{
	GROW(world.cts, world.n_cts, world.cap_cts);
	size_t i = ct_lower_bound(ct->vmid);
	memmove(world.cts + i + 1, world.cts + i, (world.n_cts - i) * sizeof(*world.cts));
	world.cts[i] = ct;
	world.n_cts++;
	world_ct_update(ct);
	stats_recount();
}

void world_ct_remove(int vmid)
{
	size_t i = ct_lower_bound(vmid);
	if (i >= world.n_cts || world.cts[i]->vmid != vmid)
		return;
	world_ct_free(world.cts[i]);
	memmove(world.cts + i, world.cts + i + 1, (world.n_cts - i - 1) * sizeof(*world.cts));
	world.n_cts--;
	stats_recount();
}

Container *world_ct_by_ip(uint32_t ip)
{
	for (size_t i = 0; i < world.n_cts; i++) {
		Container *ct = world.cts[i];
		if (ct->ip == ip && ct->running)
			return ct;
	}
	return NULL;
}

int64_t world_node_maxmem(void)
{
	return sim_opt.node_mem_mib * 1048576LL;
}

int64_t world_node_mem(int node)
{
	int64_t mem = 1024LL * 1048576LL; /* the host itself */
	for (size_t i = 0; i < world.n_cts; i++) {
		Container *ct = world.cts[i];
		if (!ct->running || strcmp(ct->node, world.nodes[node]) != 0)
			continue;
		mem += json_integer_value(json_object_get(ct->conf, "memory")) * 1048576LL;
	}
	return mem;
}

/* ---- tasks ---------------------------------------------------------------------- */

Task *world_task_new(TaskKind kind, const char *node, const char *type, int id_vmid, int ct_vmid)
{
	Task *t = calloc(1, sizeof(*t));
	if (!t)
		abort();
	t->kind = kind;
	snprintf(t->node, sizeof(t->node), "%s", node);
	snprintf(t->type, sizeof(t->type), "%s", type);
	snprintf(t->id, sizeof(t->id), "%d", id_vmid);
	t->vmid = ct_vmid;
	t->pid = world.task_pid++;
	t->pstart = (uint32_t)(100000 + (sim_rand() % 9000000));
	t->starttime = sim_wall_ms() / 1000;
	t->end_ms = sim_now_ms() + sim_opt.task_ms;
	/* UPID:<node>:<pid>:<pstart>:<starttime>:<type>:<id>:<user>: */
	snprintf(t->upid, sizeof(t->upid), "UPID:%s:%08X:%08X:%08X:%s:%s:%s:", node, t->pid,
	         t->pstart, (uint32_t)t->starttime, type, t->id, sim_secrets.pve_token_id);
	GROW(world.tasks, world.n_tasks, world.cap_tasks);
	world.tasks[world.n_tasks++] = t;
	return t;
}

Task *world_task_find(const char *upid)
{
	/* the pid field indexes the task table directly */
	if (!upid || strncmp(upid, "UPID:", 5) != 0)
		return NULL;
	const char *p = strchr(upid + 5, ':');
	if (!p)
		return NULL;
	char *end;
	unsigned long pid = strtoul(p + 1, &end, 16);
	if (end != p + 9 || *end != ':' || pid < 0x1000)
		return NULL;
	size_t idx = pid - 0x1000;
	if (idx >= world.n_tasks)
		return NULL;
	Task *t = world.tasks[idx];
	return strcmp(t->upid, upid) == 0 ? t : NULL;
}

static void task_log(Task *t, const char *line)
{
	(void)!buf_puts(&t->log, line);
	(void)!buf_puts(&t->log, "\n");
}

static void task_finish(Task *t, const char *error)
{
	t->done = true;
	free(t->exitstatus);
	t->exitstatus = strdup(error ? error : "OK");
	if (error) {
		char line[512];
		snprintf(line, sizeof(line), "TASK ERROR: %s", error);
		task_log(t, line);
	} else {
		task_log(t, "TASK OK");
	}
}

static void task_complete(Task *t)
{
	Container *ct = world_ct(t->vmid);
	switch (t->kind) {
	case TASK_CREATE:
	case TASK_CLONE:
		if (t->kind == TASK_CLONE) {
			Container *src = world_ct(t->src_vmid);
			if (src && src->lock && strcmp(src->lock, "disk") == 0) {
				free(src->lock);
				src->lock = NULL;
			}
		}
		if (!ct) {
			task_finish(t, "container vanished during the task");
			return;
		}
		free(ct->lock);
		ct->lock = NULL;
		task_finish(t, NULL);
		if (t->start_after) {
			Task *st =
			    world_task_new(TASK_START, ct->node, "vzstart", ct->vmid, ct->vmid);
			st->end_ms = sim_now_ms();
			ct->running = true;
			ct->started_ms = sim_now_ms();
			agent_on_ct_start(ct);
			task_finish(st, NULL);
			stats_effect("pve.start");
		}
		break;
	case TASK_START:
		if (!ct) {
			task_finish(t, "Configuration file does not exist");
			return;
		}
		if (ct->running) {
			char msg[64];
			snprintf(msg, sizeof(msg), "CT %d already running", ct->vmid);
			task_finish(t, msg);
			return;
		}
		if (sim_opt.strict_mem) {
			int ni = world_node_index(ct->node);
			int64_t need =
			    json_integer_value(json_object_get(ct->conf, "memory")) * 1048576LL;
			if (ni >= 0 && world_node_mem(ni) + need > world_node_maxmem()) {
				char msg[96];
				snprintf(msg, sizeof(msg), "startup for container '%d' failed",
				         ct->vmid);
				task_finish(t, msg);
				return;
			}
		}
		ct->running = true;
		ct->started_ms = sim_now_ms();
		agent_on_ct_start(ct);
		task_finish(t, NULL);
		break;
	case TASK_STOP:
	case TASK_SHUTDOWN:
		if (ct)
			ct->running = false;
		task_finish(t, NULL);
		break;
	case TASK_REBOOT:
		if (ct && ct->running) {
			ct->started_ms = sim_now_ms();
			agent_on_ct_start(ct);
		}
		task_finish(t, NULL);
		break;
	case TASK_DESTROY:
		if (ct)
			world_ct_remove(t->vmid);
		task_finish(t, NULL);
		break;
	case TASK_RESIZE:
		if (ct) {
			const char *rootfs = json_string_value(json_object_get(ct->conf, "rootfs"));
			_cleanup_json_ json_t *p =
			    pve_propstr_parse(rootfs ? rootfs : "", "volume");
			const char *vol = json_string_value(json_object_get(p, "volume"));
			char nv[256];
			int64_t gib = t->new_size / (1024LL * 1048576LL);
			if (gib * 1024LL * 1048576LL == t->new_size)
				snprintf(nv, sizeof(nv), "%s,size=%lldG", vol ? vol : "",
				         (long long)gib);
			else
				snprintf(nv, sizeof(nv), "%s,size=%lldM", vol ? vol : "",
				         (long long)(t->new_size / 1048576LL));
			json_object_set_new(ct->conf, "rootfs", json_string(nv));
		}
		task_finish(t, NULL);
		break;
	default:
		task_finish(t, NULL);
	}
}

void world_tick(void)
{
	int64_t now = sim_now_ms();
	/* tasks finish in order of their end time, then creation order */
	for (;;) {
		while (world.first_pending < world.n_tasks &&
		       world.tasks[world.first_pending]->done)
			world.first_pending++;
		Task *next = NULL;
		for (size_t i = world.first_pending; i < world.n_tasks; i++) {
			Task *t = world.tasks[i];
			if (t->done || t->end_ms > now)
				continue;
			if (!next || t->end_ms < next->end_ms)
				next = t;
		}
		if (!next)
			break;
		task_complete(next);
		stats_recount();
	}
}
