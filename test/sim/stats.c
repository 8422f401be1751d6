/* stats.c - accounting: request counts, the ordered request log, side
 * effects, and the duplicates report with high-water marks.
 *
 * The duplicates report is recomputed from the world after every change
 * (stats_recount(), called with the lock held by whatever changed it), so
 * the "max" of a key is the most objects that ever existed at one instant,
 * not an end count. */
#include "sim.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

typedef struct LogEntry {
	uint64_t seq;
	int64_t t_ms;
	int64_t wall_ms;
	SimSystem sys;
	char method[8];
	char *path;
	int status;
	const char *note;
	int64_t dur_ms;
	uint32_t ip; /* agent requests: the address reached */
} LogEntry;

enum {
	DUP_CT_UID,
	DUP_CT_HOSTNAME,
	DUP_CT_IP,
	DUP_REG_NAME,
	DUP_DNS_NAME_TYPE,
	DUP_BACKUP_NAME,
	DUP__MAX
};

static const char *const dup_names[DUP__MAX] = {
    "containers_per_uid",     "containers_per_hostname",   "containers_per_ip",
    "registrations_per_name", "dns_records_per_name_type", "backups_per_container_name",
};

static struct {
	uint64_t total;
	uint64_t by_system[SYS__MAX];
	json_t *by_route; /* "sys METHOD template" -> n */
	json_t *by_status; /* sys -> {"200": n} */
	json_t *faults; /* note -> n */
	json_t *effects; /* name -> n */
	json_t *created; /* kind -> {key -> n} */
	json_t *dup_max[DUP__MAX]; /* key -> max */
	json_t *dup_now[DUP__MAX]; /* key -> now */
	LogEntry *log;
	size_t log_cap, log_head, log_len;
	uint64_t seq;
} st;

int stats_init(void)
{
	st.by_route = json_object();
	st.by_status = json_object();
	st.faults = json_object();
	st.effects = json_object();
	st.created = json_object();
	for (int i = 0; i < DUP__MAX; i++) {
		st.dup_max[i] = json_object();
		st.dup_now[i] = json_object();
	}
	st.log_cap = sim_opt.log_capacity ? sim_opt.log_capacity : 200000;
	st.log = calloc(st.log_cap, sizeof(*st.log));
	if (!st.log || !st.by_route || !st.created)
		return -ENOMEM;
	return 0;
}

void stats_free(void)
{
	json_decref(st.by_route);
	json_decref(st.by_status);
	json_decref(st.faults);
	json_decref(st.effects);
	json_decref(st.created);
	for (int i = 0; i < DUP__MAX; i++) {
		json_decref(st.dup_max[i]);
		json_decref(st.dup_now[i]);
	}
	for (size_t i = 0; i < st.log_cap && st.log; i++)
		free(st.log[i].path);
	free(st.log);
	memset(&st, 0, sizeof(st));
}

static void counter_add(json_t *obj, const char *key, json_int_t n)
{
	json_t *v = json_object_get(obj, key);
	if (v)
		json_integer_set(v, json_integer_value(v) + n);
	else
		json_object_set_new(obj, key, json_integer(n));
}

void stats_request(SimSystem sys, const char *route, int status, const char *note,
                   const char *method, const char *path, int64_t ms, uint32_t agent_ip)
{
	st.total++;
	st.by_system[sys]++;
	char key[256];
	snprintf(key, sizeof(key), "%s %s %s", sim_system_name(sys), method, route ? route : "?");
	counter_add(st.by_route, key, 1);
	json_t *s = json_object_get(st.by_status, sim_system_name(sys));
	if (!s) {
		s = json_object();
		json_object_set_new(st.by_status, sim_system_name(sys), s);
	}
	char code[16];
	snprintf(code, sizeof(code), "%d", status);
	counter_add(s, code, 1);
	if (note)
		counter_add(st.faults, note, 1);

	LogEntry *e;
	if (st.log_len < st.log_cap) {
		e = &st.log[(st.log_head + st.log_len) % st.log_cap];
		st.log_len++;
	} else {
		e = &st.log[st.log_head];
		st.log_head = (st.log_head + 1) % st.log_cap;
	}
	free(e->path);
	e->seq = ++st.seq;
	e->t_ms = sim_now_ms();
	e->wall_ms = sim_wall_ms();
	e->sys = sys;
	snprintf(e->method, sizeof(e->method), "%s", method);
	e->path = strdup(path ? path : "");
	e->status = status;
	e->note = note;
	e->dur_ms = ms;
	e->ip = agent_ip;
}

void stats_effect(const char *name)
{
	counter_add(st.effects, name, 1);
}

void stats_created(const char *kind, const char *key)
{
	if (!key || !*key)
		return;
	json_t *k = json_object_get(st.created, kind);
	if (!k) {
		k = json_object();
		json_object_set_new(st.created, kind, k);
	}
	counter_add(k, key, 1);
}

static void dup_bump(int kind, const char *key)
{
	if (key && *key)
		counter_add(st.dup_now[kind], key, 1);
}

/* The first DNS label, lower-cased: "MC1.example.net" and "mc1" are one
 * Velocity server name (production registered one and unregistered the
 * other). */
static void reg_key(const char *name, char *out, size_t n)
{
	size_t i = 0;
	for (; name[i] && name[i] != '.' && i + 1 < n; i++)
		out[i] = (char)(name[i] >= 'A' && name[i] <= 'Z' ? name[i] + 32 : name[i]);
	out[i] = 0;
}

void stats_recount(void)
{
	if (!st.dup_now[0])
		return;
	for (int i = 0; i < DUP__MAX; i++)
		json_object_clear(st.dup_now[i]);
	char key[512];
	for (size_t i = 0; i < world.n_cts; i++) {
		Container *ct = world.cts[i];
		if (ct->is_template)
			continue;
		dup_bump(DUP_CT_UID, ct->uid);
		const char *h = json_string_value(json_object_get(ct->conf, "hostname"));
		if (h) {
			_cleanup_free_ char *l = str_lower(h);
			dup_bump(DUP_CT_HOSTNAME, l);
		}
		if (ct->ip) {
			ip_format(ct->ip, key, sizeof(key));
			dup_bump(DUP_CT_IP, key);
		}
	}
	for (size_t i = 0; i < world.n_vservers; i++) {
		reg_key(world.vservers[i]->name, key, sizeof(key));
		dup_bump(DUP_REG_NAME, key);
	}
	for (size_t i = 0; i < world.n_records; i++) {
		DnsRecord *r = world.records[i];
		snprintf(key, sizeof(key), "%s %s", r->type, r->name);
		dup_bump(DUP_DNS_NAME_TYPE, key);
	}
	for (size_t i = 0; i < world.n_backups; i++) {
		Backup *b = world.backups[i];
		snprintf(key, sizeof(key), "%s/%s", b->owner, b->name);
		dup_bump(DUP_BACKUP_NAME, key);
	}
	for (int i = 0; i < DUP__MAX; i++) {
		const char *k;
		json_t *v;
		json_object_foreach(st.dup_now[i], k, v)
		{
			json_t *m = json_object_get(st.dup_max[i], k);
			if (!m)
				json_object_set_new(st.dup_max[i], k,
				                    json_integer(json_integer_value(v)));
			else if (json_integer_value(v) > json_integer_value(m))
				json_integer_set(m, json_integer_value(v));
		}
	}
}

json_t *stats_json(void)
{
	json_t *o = json_object();
	json_object_set_new(o, "uptime_ms", json_integer(sim_now_ms()));
	json_object_set_new(o, "seed", json_integer((json_int_t)sim_opt.seed));

	json_t *req = json_object();
	json_object_set_new(req, "total", json_integer((json_int_t)st.total));
	json_t *bs = json_object();
	for (int i = 0; i < SYS__MAX; i++)
		json_object_set_new(bs, sim_system_name(i),
		                    json_integer((json_int_t)st.by_system[i]));
	json_object_set_new(req, "by_system", bs);
	json_object_set_new(req, "by_route", json_deep_copy(st.by_route));
	json_object_set_new(req, "by_status", json_deep_copy(st.by_status));
	json_object_set_new(o, "requests", req);
	json_object_set_new(o, "faults", json_deep_copy(st.faults));
	json_object_set_new(o, "side_effects", json_deep_copy(st.effects));
	json_object_set_new(o, "created", json_deep_copy(st.created));

	json_t *dups = json_object();
	json_t *summary = json_object();
	for (int i = 0; i < DUP__MAX; i++) {
		json_t *d = json_object();
		json_int_t max_now = 0, max_ever = 0, over_now = 0, over_ever = 0;
		const char *k;
		json_t *m;
		json_object_foreach(st.dup_max[i], k, m)
		{
			json_int_t now = json_integer_value(json_object_get(st.dup_now[i], k));
			json_int_t mx = json_integer_value(m);
			json_object_set_new(d, k, json_pack("{s:I, s:I}", "now", now, "max", mx));
			if (now > max_now)
				max_now = now;
			if (mx > max_ever)
				max_ever = mx;
			over_now += now > 1;
			over_ever += mx > 1;
		}
		json_object_set_new(dups, dup_names[i], d);
		json_object_set_new(summary, dup_names[i],
		                    json_pack("{s:I, s:I, s:I, s:I}", "now", max_now, "max",
		                              max_ever, "keys_over_1_now", over_now,
		                              "keys_over_1_ever", over_ever));
	}
	json_object_set_new(o, "duplicates", dups);
	json_object_set_new(o, "max", summary);

	size_t running = 0, cts = 0, tasks_running = 0;
	for (size_t i = 0; i < world.n_cts; i++) {
		if (world.cts[i]->is_template)
			continue;
		cts++;
		running += world.cts[i]->running;
	}
	for (size_t i = world.first_pending; i < world.n_tasks; i++)
		tasks_running += !world.tasks[i]->done;
	json_object_set_new(
	    o, "world",
	    json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "containers", (json_int_t)cts,
	              "running", (json_int_t)running, "tasks", (json_int_t)world.n_tasks,
	              "tasks_running", (json_int_t)tasks_running, "registrations",
	              (json_int_t)world.n_vservers, "dns_records", (json_int_t)world.n_records,
	              "backups", (json_int_t)world.n_backups));
	return o;
}

json_t *stats_requests_json(uint64_t since, size_t limit, int sys)
{
	json_t *arr = json_array();
	size_t n = 0;
	for (size_t i = 0; i < st.log_len && (!limit || n < limit); i++) {
		LogEntry *e = &st.log[(st.log_head + i) % st.log_cap];
		if (e->seq <= since || (sys >= 0 && (int)e->sys != sys))
			continue;
		char ts[40];
		time_format_rfc3339(e->wall_ms, ts, sizeof(ts));
		json_t *j = json_pack(
		    "{s:I, s:I, s:s, s:s, s:s, s:s, s:i, s:I}", "seq", (json_int_t)e->seq, "t_ms",
		    (json_int_t)e->t_ms, "time", ts, "system", sim_system_name(e->sys), "method",
		    e->method, "path", e->path, "status", e->status, "ms", (json_int_t)e->dur_ms);
		if (e->note)
			json_object_set_new(j, "fault", json_string(e->note));
		if (e->ip) {
			char ip[32];
			ip_format(e->ip, ip, sizeof(ip));
			json_object_set_new(j, "ip", json_string(ip));
		}
		json_array_append_new(arr, j);
		n++;
	}
	return arr;
}
