/* pvect.c - the Proxmox container model: config, net0 and tags as Proxmox
 * prints them, the uid a container carries, digests, and the container and
 * node entries of /cluster/resources (the one big answer, written straight
 * into a buffer). The API handlers are in pve.c. */
#include "sim.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

static void new_hwaddr(char *out, size_t n)
{
	uint64_t r = sim_rand();
	snprintf(out, n, "BC:24:11:%02X:%02X:%02X", (unsigned)(r & 255), (unsigned)((r >> 8) & 255),
	         (unsigned)((r >> 16) & 255));
}

/* Prints a net property string as Proxmox does: name first, then the other
 * keys sorted; hwaddr and type=veth filled in when absent. */
char *pve_net_normalize(const char *s, const char *old_hwaddr)
{
	_cleanup_json_ json_t *p = pve_propstr_parse(s, NULL);
	if (!json_object_get(p, "hwaddr")) {
		char mac[32];
		if (old_hwaddr)
			snprintf(mac, sizeof(mac), "%s", old_hwaddr);
		else
			new_hwaddr(mac, sizeof(mac));
		json_object_set_new(p, "hwaddr", json_string(mac));
	}
	if (!json_object_get(p, "type"))
		json_object_set_new(p, "type", json_string("veth"));
	Buf b = BUF_INIT;
	const char *name = json_string_value(json_object_get(p, "name"));
	(void)!buf_printf(&b, "name=%s", name ? name : "eth0");
	const char **keys = calloc(json_object_size(p) + 1, sizeof(char *));
	size_t n = 0;
	const char *k;
	json_t *v;
	json_object_foreach(p, k, v)
	{
		if (strcmp(k, "name") != 0)
			keys[n++] = k;
	}
	for (size_t i = 1; i < n; i++)
		for (size_t j = i; j > 0 && strcmp(keys[j - 1], keys[j]) > 0; j--) {
			const char *t = keys[j];
			keys[j] = keys[j - 1];
			keys[j - 1] = t;
		}
	for (size_t i = 0; i < n; i++)
		(void)!buf_printf(&b, ",%s=%s", keys[i],
		                  json_string_value(json_object_get(p, keys[i])));
	free(keys);
	return buf_steal(&b);
}

uint32_t pve_net_ip(const char *net0)
{
	_cleanup_json_ json_t *p = pve_propstr_parse(net0, NULL);
	const char *ip = json_string_value(json_object_get(p, "ip"));
	if (!ip)
		return 0;
	char a[64];
	snprintf(a, sizeof(a), "%s", ip);
	char *slash = strchr(a, '/');
	if (slash)
		*slash = 0;
	return ip_parse(a);
}

static bool uid_char(char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F') ||
	       c == '-';
}

bool pve_ct_uid(json_t *conf, char *out, size_t n)
{
	const char *tags = json_string_value(json_object_get(conf, "tags"));
	if (tags) {
		_cleanup_free_ char *c = strdup(tags);
		for (char *save = NULL, *t = strtok_r(c, ";", &save); t;
		     t = strtok_r(NULL, ";", &save))
			if (strncmp(t, "zlh-", 4) == 0 && t[4]) {
				snprintf(out, n, "%s", t + 4);
				return true;
			}
	}
	const char *d = json_string_value(json_object_get(conf, "description"));
	if (!d)
		return false;
	/* "uid=<uuid>", "uid: <uuid>", or the first UUID-shaped token */
	const char *u = strstr(d, "uid");
	while (u) {
		const char *p = u + 3;
		while (*p == '=' || *p == ':' || *p == ' ' || *p == '"')
			p++;
		size_t len = 0;
		while (uid_char(p[len]))
			len++;
		if (len >= 8 && p > u + 3) {
			_cleanup_free_ char *l = strndup(p, len);
			_cleanup_free_ char *low = str_lower(l);
			snprintf(out, n, "%s", low);
			return true;
		}
		u = strstr(u + 3, "uid");
	}
	for (const char *p = d; *p; p++) {
		size_t len = 0;
		while (uid_char(p[len]))
			len++;
		if (len == 36 && p[8] == '-' && p[13] == '-' && p[18] == '-' && p[23] == '-') {
			_cleanup_free_ char *l = strndup(p, len);
			_cleanup_free_ char *low = str_lower(l);
			snprintf(out, n, "%s", low);
			return true;
		}
		if (len)
			p += len - 1;
	}
	return false;
}

Container *pve_make_ct(int vmid, const char *node, const char *hostname, json_t *extra)
{
	Container *ct = calloc(1, sizeof(*ct));
	if (!ct)
		return NULL;
	ct->vmid = vmid;
	snprintf(ct->node, sizeof(ct->node), "%s", node);
	ct->created_ms = sim_now_ms();
	char rootfs[96], mac[32], net[160];
	snprintf(rootfs, sizeof(rootfs), "local-lvm:vm-%d-disk-0,size=4G", vmid);
	new_hwaddr(mac, sizeof(mac));
	snprintf(net, sizeof(net), "name=eth0,bridge=vmbr0,hwaddr=%s,ip=dhcp,type=veth", mac);
	ct->conf = json_pack("{s:s, s:i, s:s, s:i, s:s, s:s, s:i, s:s, s:i}", "arch", "amd64",
	                     "cores", 1, "hostname", hostname, "memory", 512, "net0", net, "ostype",
	                     "debian", "swap", 512, "rootfs", rootfs, "unprivileged", 1);
	if (extra)
		json_object_update(ct->conf, extra);
	return ct;
}

int64_t pve_rootfs_size(const Container *ct)
{
	const char *rootfs = json_string_value(json_object_get(ct->conf, "rootfs"));
	_cleanup_json_ json_t *p = pve_propstr_parse(rootfs ? rootfs : "", "volume");
	const char *s = json_string_value(json_object_get(p, "size"));
	int64_t v = s ? pve_parse_size(s) : 0;
	return v > 0 ? v : 0;
}

char *pve_config_digest(const Container *ct)
{
	_cleanup_free_ char *d = json_dumps(ct->conf, JSON_COMPACT | JSON_SORT_KEYS);
	_cleanup_buf_ Buf b = BUF_INIT;
	(void)!buf_printf(&b, "%s|%s", d ? d : "", ct->lock ? ct->lock : "");
	char hex[65];
	if (sha256_hex(b.data, b.len, hex) < 0)
		return strdup("0");
	hex[40] = 0; /* Proxmox digests are sha1-long */
	return strdup(hex);
}

json_t *pve_config_json(const Container *ct)
{
	json_t *o = json_deep_copy(ct->conf);
	const char *desc = json_string_value(json_object_get(o, "description"));
	if (desc) {
		/* stored as comment lines: each line comes back with its newline */
		size_t n = strlen(desc);
		while (n && desc[n - 1] == '\n')
			n--;
		char *d = NULL;
		if (n && asprintf(&d, "%.*s\n", (int)n, desc) >= 0) {
			json_object_set_new(o, "description", json_string(d));
			free(d);
		} else if (!n) {
			json_object_del(o, "description");
		}
	}
	if (ct->lock)
		json_object_set_new(o, "lock", json_string(ct->lock));
	_cleanup_free_ char *dg = pve_config_digest(ct);
	json_object_set_new(o, "digest", json_string(dg));
	return o;
}

static bool stats_known(const Container *ct)
{
	return sim_now_ms() - ct->created_ms >= sim_opt.unknown_ms;
}

json_t *pve_vm_resource(const Container *ct)
{
	char id[32];
	snprintf(id, sizeof(id), "lxc/%d", ct->vmid);
	json_t *o = json_pack("{s:s, s:s, s:i, s:s}", "id", id, "type", "lxc", "vmid", ct->vmid,
	                      "node", ct->node);
	const char *tags = json_string_value(json_object_get(ct->conf, "tags"));
	if (tags && *tags)
		json_object_set_new(o, "tags", json_string(tags));
	if (ct->lock)
		json_object_set_new(o, "lock", json_string(ct->lock));
	if (!stats_known(ct)) {
		json_object_set_new(o, "status", json_string("unknown"));
		return o;
	}
	int64_t mem = json_integer_value(json_object_get(ct->conf, "memory")) * 1048576LL;
	int64_t cores = json_integer_value(json_object_get(ct->conf, "cores"));
	json_object_set_new(o, "name",
	                    json_string(json_string_value(json_object_get(ct->conf, "hostname"))));
	json_object_set_new(o, "status", json_string(ct->running ? "running" : "stopped"));
	json_object_set_new(o, "template", json_integer(ct->is_template));
	json_object_set_new(o, "maxmem", json_integer(mem));
	json_object_set_new(o, "mem", json_integer(ct->running ? mem / 4 : 0));
	json_object_set_new(o, "maxcpu", json_integer(cores ? cores : sim_opt.node_cpus));
	json_object_set_new(o, "cpu", json_real(ct->running ? 0.01 : 0));
	json_object_set_new(o, "maxdisk", json_integer(pve_rootfs_size(ct)));
	json_object_set_new(o, "disk", json_integer(ct->running ? pve_rootfs_size(ct) / 8 : 0));
	json_object_set_new(o, "uptime",
	                    json_integer(ct->running ? (sim_now_ms() - ct->started_ms) / 1000 : 0));
	json_object_set_new(o, "netin", json_integer(0));
	json_object_set_new(o, "netout", json_integer(0));
	json_object_set_new(o, "diskread", json_integer(0));
	json_object_set_new(o, "diskwrite", json_integer(0));
	const char *pool = json_string_value(json_object_get(ct->conf, "pool"));
	if (pool)
		json_object_set_new(o, "pool", json_string(pool));
	return o;
}

/* JSON string literal of s into b (escaping quotes, backslashes, controls). */
static void buf_json_str(Buf *b, const char *s)
{
	(void)!buf_puts(b, "\"");
	for (const unsigned char *p = (const unsigned char *)(s ? s : ""); *p; p++) {
		if (*p == '"' || *p == '\\')
			(void)!buf_printf(b, "\\%c", *p);
		else if (*p < 0x20)
			(void)!buf_printf(b, "\\u%04x", *p);
		else
			(void)!buf_append(b, p, 1);
	}
	(void)!buf_puts(b, "\"");
}

/* pve_vm_resource() written straight into b: /cluster/resources is the one big
 * answer (every container of the cluster), built without a tree of objects. */
void pve_vm_resource_buf(Buf *b, const Container *ct)
{
	(void)!buf_printf(b, "{\"id\":\"lxc/%d\",\"type\":\"lxc\",\"vmid\":%d,\"node\":", ct->vmid,
	                  ct->vmid);
	buf_json_str(b, ct->node);
	const char *tags = json_string_value(json_object_get(ct->conf, "tags"));
	if (tags && *tags) {
		(void)!buf_puts(b, ",\"tags\":");
		buf_json_str(b, tags);
	}
	if (ct->lock) {
		(void)!buf_puts(b, ",\"lock\":");
		buf_json_str(b, ct->lock);
	}
	if (!stats_known(ct)) {
		(void)!buf_puts(b, ",\"status\":\"unknown\"}");
		return;
	}
	long long mem =
	    (long long)json_integer_value(json_object_get(ct->conf, "memory")) * 1048576LL;
	long long cores = (long long)json_integer_value(json_object_get(ct->conf, "cores"));
	long long disk = (long long)pve_rootfs_size(ct);
	(void)!buf_puts(b, ",\"name\":");
	buf_json_str(b, json_string_value(json_object_get(ct->conf, "hostname")));
	(void)!buf_printf(
	    b,
	    ",\"status\":\"%s\",\"template\":%d,\"maxmem\":%lld,\"mem\":%lld,"
	    "\"maxcpu\":%lld,\"cpu\":%s,\"maxdisk\":%lld,\"disk\":%lld,\"uptime\":%lld,"
	    "\"netin\":0,\"netout\":0,\"diskread\":0,\"diskwrite\":0",
	    ct->running ? "running" : "stopped", ct->is_template ? 1 : 0, mem,
	    ct->running ? mem / 4 : 0, cores ? cores : (long long)sim_opt.node_cpus,
	    ct->running ? "0.01" : "0", disk, ct->running ? disk / 8 : 0,
	    ct->running ? (long long)((sim_now_ms() - ct->started_ms) / 1000) : 0LL);
	const char *pool = json_string_value(json_object_get(ct->conf, "pool"));
	if (pool) {
		(void)!buf_puts(b, ",\"pool\":");
		buf_json_str(b, pool);
	}
	(void)!buf_puts(b, "}");
}

json_t *pve_node_resource(int i)
{
	char id[48];
	snprintf(id, sizeof(id), "node/%s", world.nodes[i]);
	return json_pack("{s:s, s:s, s:s, s:s, s:I, s:I, s:f, s:i, s:I, s:I, s:I, s:s}", "id", id,
	                 "type", "node", "node", world.nodes[i], "status", "online", "mem",
	                 (json_int_t)world_node_mem(i), "maxmem", (json_int_t)world_node_maxmem(),
	                 "cpu", 0.02, "maxcpu", sim_opt.node_cpus, "disk", (json_int_t)8 << 30,
	                 "maxdisk", (json_int_t)100 << 30, "uptime",
	                 (json_int_t)(sim_now_ms() / 1000 + 86400), "level", "");
}

json_t *pve_ct_state_json(const Container *ct)
{
	json_t *o = json_pack(
	    "{s:i, s:s, s:b, s:s, s:o, s:s, s:b}", "vmid", ct->vmid, "node", ct->node, "template",
	    ct->is_template, "status", ct->running ? "running" : "stopped", "lock",
	    ct->lock ? json_string(ct->lock) : json_null(), "uid", ct->uid, "foreign", ct->foreign);
	char ip[32] = "";
	if (ct->ip)
		ip_format(ct->ip, ip, sizeof(ip));
	json_object_set_new(o, "ip", json_string(ip));
	json_object_set_new(o, "hostname",
	                    json_string(json_string_value(json_object_get(ct->conf, "hostname"))));
	json_object_set_new(o, "config", json_deep_copy(ct->conf));
	json_object_set_new(o, "agent", agent_state_json(ct));
	return o;
}
