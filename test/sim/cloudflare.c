/* cloudflare.c - one zone of the Cloudflare DNS v4 API
 * (cloudflare-dns-records-subset-2024-08-06.json): dns_records list with
 * filters and pagination, create, get, PUT, PATCH, delete; the
 * {success, errors, messages, result} envelope; Bearer auth; identical
 * records refused (81058), CNAME conflicts (81053/81054), every other
 * duplicate shape accepted; 429 + Retry-After past the configured rate. */
#include "sim.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "util.h"

static int64_t rl_window_start = -1;
static int64_t rl_count;
static int64_t rl_blocked_until = -1;

/* ---- envelope ----------------------------------------------------------------- */

static void cf_ok(SimResponse *resp, json_t *take_result, json_t *take_info)
{
	json_t *o = json_pack("{s:b, s:[], s:[], s:o}", "success", 1, "errors", "messages",
	                      "result", take_result ? take_result : json_null());
	if (take_info)
		json_object_set_new(o, "result_info", take_info);
	resp_json(resp, 200, o);
}

static void cf_err(SimResponse *resp, int status, int code, const char *msg)
{
	resp_json(resp, status,
	          json_pack("{s:b, s:[{s:i, s:s}], s:[], s:n}", "success", 0, "errors", "code",
	                    code, "message", msg, "messages", "result"));
}

void cf_fault_response(SimResponse *resp)
{
	cf_err(resp, 500, 10000, "zlh-sim: injected fault");
}

bool cf_rate_limited(SimResponse *resp)
{
	if (sim_opt.cf_rate_limit <= 0)
		return false;
	int64_t now = sim_now_ms();
	if (rl_blocked_until < 0 || now >= rl_blocked_until) {
		if (rl_blocked_until >= 0) {
			rl_blocked_until = -1;
			rl_window_start = -1;
		}
		if (rl_window_start < 0 || now - rl_window_start >= sim_opt.cf_rate_window_ms) {
			rl_window_start = now;
			rl_count = 0;
		}
		if (++rl_count <= sim_opt.cf_rate_limit)
			return false;
		rl_blocked_until = now + sim_opt.cf_penalty_ms;
	}
	cf_err(resp, 429, 971, "Please wait and consider throttling your request speed");
	resp->retry_after_s = (rl_blocked_until - now + 999) / 1000;
	return true;
}

void cf_rate_reset(void)
{
	rl_window_start = -1;
	rl_count = 0;
	rl_blocked_until = -1;
}

/* ---- records ------------------------------------------------------------------- */

json_t *cf_record_json(const DnsRecord *r)
{
	char c[40], m[40];
	time_format_rfc3339(r->created_wall_ms, c, sizeof(c));
	time_format_rfc3339(r->modified_wall_ms, m, sizeof(m));
	bool proxiable =
	    !strcmp(r->type, "A") || !strcmp(r->type, "AAAA") || !strcmp(r->type, "CNAME");
	json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:b, s:b, s:I, s:{}, "
	                      "s:{s:b, s:b, s:b}, s:o, s:O, s:s, s:s}",
	                      "id", r->id, "zone_id", sim_secrets.cf_zone_id, "zone_name",
	                      sim_opt.zone_name, "name", r->name, "type", r->type, "content",
	                      r->content, "proxiable", proxiable, "proxied", r->proxied, "ttl",
	                      (json_int_t)r->ttl, "settings", "meta", "auto_added", 0,
	                      "managed_by_apps", 0, "managed_by_argo_tunnel", 0, "comment",
	                      r->comment ? json_string(r->comment) : json_null(), "tags", r->tags,
	                      "created_on", c, "modified_on", m);
	if (r->data)
		json_object_set(o, "data", r->data);
	if (r->priority >= 0)
		json_object_set_new(o, "priority", json_integer(r->priority));
	return o;
}

static void record_free(DnsRecord *r)
{
	if (!r)
		return;
	free(r->name);
	free(r->type);
	free(r->content);
	free(r->comment);
	json_decref(r->data);
	json_decref(r->tags);
	free(r);
}

/* Lower-cased FQDN in the zone: "@" is the apex, a relative name gets the
 * zone appended, a trailing dot is dropped. */
static char *fqdn(const char *name)
{
	char *l = str_lower(name);
	size_t n = strlen(l);
	if (n && l[n - 1] == '.')
		l[--n] = 0;
	if (strcmp(l, "@") == 0) {
		free(l);
		return strdup(sim_opt.zone_name);
	}
	size_t z = strlen(sim_opt.zone_name);
	if (strcmp(l, sim_opt.zone_name) == 0 ||
	    (n > z && l[n - z - 1] == '.' && strcmp(l + n - z, sim_opt.zone_name) == 0))
		return l;
	char *r = NULL;
	if (asprintf(&r, "%s.%s", l, sim_opt.zone_name) < 0)
		abort();
	free(l);
	return r;
}

static DnsRecord *find(const char *id, size_t *ret_idx)
{
	for (size_t i = 0; id && i < world.n_records; i++)
		if (strcmp(world.records[i]->id, id) == 0) {
			if (ret_idx)
				*ret_idx = i;
			return world.records[i];
		}
	return NULL;
}

static bool num_in(json_t *v, double lo, double hi, double *out)
{
	if (!json_is_number(v))
		return false;
	double d = json_number_value(v);
	if (d < lo || d > hi || d != floor(d))
		return false;
	*out = d;
	return true;
}

/* Builds a record from a request body (create/PUT) or from the merge of an
 * old record and a PATCH body. On error answers and returns NULL. */
static DnsRecord *record_from(json_t *b, SimResponse *resp)
{
	const char *type = json_string_value(json_object_get(b, "type"));
	const char *name = json_string_value(json_object_get(b, "name"));
	static const char *const types[] = {"A", "AAAA", "CNAME", "TXT", "SRV", "MX", "NS", "CAA"};
	bool known = false;
	for (size_t i = 0; type && i < ELEMENTSOF(types); i++)
		known |= strcmp(types[i], type) == 0;
	if (!known) {
		cf_err(resp, 400, 9020, "Invalid DNS record type");
		return NULL;
	}
	if (!name || !*name || strlen(name) > 255) {
		cf_err(resp, 400, 9000, "DNS name is invalid.");
		return NULL;
	}
	_cleanup_free_ char *content = NULL;
	json_t *data = NULL;
	int64_t priority = -1;
	if (strcmp(type, "SRV") == 0) {
		json_t *d = json_object_get(b, "data");
		double pr, w, port;
		const char *target = json_string_value(json_object_get(d, "target"));
		if (!json_is_object(d) || !num_in(json_object_get(d, "priority"), 0, 65535, &pr) ||
		    !num_in(json_object_get(d, "weight"), 0, 65535, &w) ||
		    !num_in(json_object_get(d, "port"), 0, 65535, &port) || !target || !*target) {
			cf_err(resp, 400, 9101,
			       "SRV records need data.priority, data.weight, data.port and "
			       "data.target.");
			return NULL;
		}
		_cleanup_free_ char *t = str_lower(target);
		size_t tl = strlen(t);
		if (tl && t[tl - 1] == '.')
			t[tl - 1] = 0;
		if (asprintf(&content, "%d %d %s", (int)w, (int)port, t) < 0)
			abort();
		priority = (int64_t)pr;
		data = json_pack("{s:i, s:i, s:i, s:s}", "priority", (int)pr, "weight", (int)w,
		                 "port", (int)port, "target", t);
	} else {
		const char *c = json_string_value(json_object_get(b, "content"));
		if (!c || !*c) {
			cf_err(resp, 400, 9005, "Content is required.");
			return NULL;
		}
		struct in_addr a4;
		struct in6_addr a6;
		if (strcmp(type, "A") == 0 && inet_pton(AF_INET, c, &a4) != 1) {
			cf_err(resp, 400, 9005,
			       "Content for A record must be a valid IPv4 address.");
			return NULL;
		}
		if (strcmp(type, "AAAA") == 0 && inet_pton(AF_INET6, c, &a6) != 1) {
			cf_err(resp, 400, 9006,
			       "Content for AAAA record must be a valid IPv6 address.");
			return NULL;
		}
		content = strdup(c);
		if (strcmp(type, "MX") == 0) {
			double pr = 10;
			if (json_object_get(b, "priority") &&
			    !num_in(json_object_get(b, "priority"), 0, 65535, &pr)) {
				cf_err(resp, 400, 9100, "Invalid priority.");
				return NULL;
			}
			priority = (int64_t)pr;
		}
	}
	double ttl = 1;
	json_t *tj = json_object_get(b, "ttl");
	if (tj && (!num_in(tj, 1, 86400, &ttl) || (ttl != 1 && ttl < 60))) {
		cf_err(resp, 400, 9021,
		       "Invalid TTL. Must be between 60 and 86400 seconds, or 1 for Automatic.");
		json_decref(data);
		return NULL;
	}
	json_t *pj = json_object_get(b, "proxied");
	if (pj && !json_is_boolean(pj)) {
		cf_err(resp, 400, 9003, "Invalid 'proxied' value, must be a boolean");
		json_decref(data);
		return NULL;
	}
	bool proxied = json_is_true(pj);
	if (proxied && strcmp(type, "A") && strcmp(type, "AAAA") && strcmp(type, "CNAME")) {
		cf_err(resp, 400, 9004, "This record type cannot be proxied.");
		json_decref(data);
		return NULL;
	}
	json_t *cj = json_object_get(b, "comment");
	if (cj && !json_is_null(cj) &&
	    (!json_is_string(cj) || strlen(json_string_value(cj)) > 500)) {
		cf_err(resp, 400, 9109, "DNS record comment is invalid or too long.");
		json_decref(data);
		return NULL;
	}
	json_t *tags = json_object_get(b, "tags");
	if (tags && !json_is_array(tags)) {
		cf_err(resp, 400, 9110, "DNS record tags must be a list.");
		json_decref(data);
		return NULL;
	}
	DnsRecord *r = calloc(1, sizeof(*r));
	if (!r)
		abort();
	r->type = strdup(type);
	r->name = fqdn(name);
	r->content = TAKE_PTR(content);
	r->data = data;
	r->priority = priority;
	r->ttl = (int64_t)ttl;
	r->proxied = proxied;
	r->comment =
	    json_is_string(cj) && *json_string_value(cj) ? strdup(json_string_value(cj)) : NULL;
	r->tags = tags ? json_deep_copy(tags) : json_array();
	return r;
}

/* Identical record or CNAME conflict with any record other than self. */
static bool conflicts(const DnsRecord *r, const DnsRecord *self, SimResponse *resp)
{
	for (size_t i = 0; i < world.n_records; i++) {
		DnsRecord *o = world.records[i];
		if (o == self || strcmp(o->name, r->name) != 0)
			continue;
		if (!strcmp(o->type, r->type) && !strcasecmp(o->content, r->content) &&
		    o->priority == r->priority) {
			cf_err(resp, 400, 81058, "An identical record already exists.");
			return true;
		}
		if (!strcmp(r->type, "CNAME")) {
			cf_err(resp, 400, 81053,
			       "An A, AAAA, or CNAME record with that host already exists.");
			return true;
		}
		if (!strcmp(o->type, "CNAME")) {
			cf_err(resp, 400, 81054, "A CNAME record with that host already exists.");
			return true;
		}
	}
	return false;
}

/* ---- prologue ------------------------------------------------------------------ */

static bool enter(SimRequest *req, SimResponse *resp)
{
	const char *a = req->authorization;
	if (!a) {
		cf_err(resp, 400, 9106, "Missing X-Auth-Email header");
		return false;
	}
	if (strncmp(a, "Bearer ", 7) != 0 || strcmp(a + 7, sim_secrets.cf_token) != 0) {
		cf_err(resp, 403, 10000, "Authentication error");
		return false;
	}
	if (req->nseg >= 4 && strcmp(req->segs[3], sim_secrets.cf_zone_id) != 0) {
		char msg[256];
		snprintf(
		    msg, sizeof(msg),
		    "Could not route to /zones/%s/dns_records, perhaps your object identifier is "
		    "invalid?",
		    req->segs[3]);
		cf_err(resp, 400, 7003, msg);
		return false;
	}
	return true;
}

/* ---- handlers ------------------------------------------------------------------ */

static bool str_match(const char *have, const char *op, const char *want)
{
	if (!have)
		return false;
	size_t h = strlen(have), w = strlen(want);
	if (!strcmp(op, "exact"))
		return !strcasecmp(have, want);
	if (!strcmp(op, "contains"))
		return strcasestr(have, want) != NULL;
	if (!strcmp(op, "startswith"))
		return h >= w && !strncasecmp(have, want, w);
	if (!strcmp(op, "endswith"))
		return h >= w && !strcasecmp(have + h - w, want);
	return false;
}

static int cmp_field(const DnsRecord *a, const DnsRecord *b, const char *order)
{
	int c = 0;
	if (!strcmp(order, "name"))
		c = strcmp(a->name, b->name);
	else if (!strcmp(order, "content"))
		c = strcmp(a->content, b->content);
	else if (!strcmp(order, "ttl"))
		c = (a->ttl > b->ttl) - (a->ttl < b->ttl);
	else if (!strcmp(order, "proxied"))
		c = (int)a->proxied - (int)b->proxied;
	else
		c = strcmp(a->type, b->type);
	if (!c)
		c = strcmp(a->name, b->name);
	if (!c)
		c = (a->seq > b->seq) - (a->seq < b->seq);
	return c;
}

static const char *g_order;
static int g_dir;
static int cmp_records(const void *x, const void *y)
{
	return g_dir * cmp_field(*(DnsRecord *const *)x, *(DnsRecord *const *)y, g_order);
}

static void h_list(SimRequest *req, SimResponse *resp)
{
	if (!enter(req, resp))
		return;
	const char *match = req_query(req, "match");
	bool any = match && !strcmp(match, "any");
	int64_t page = 1, per_page = 100;
	const char *ps = req_query(req, "page"), *pps = req_query(req, "per_page");
	if ((ps && (parse_int64(ps, &page) < 0 || page < 1)) ||
	    (pps && (parse_int64(pps, &per_page) < 0 || per_page < 1 || per_page > 5000000))) {
		cf_err(resp, 400, 1004, "page must be >= 1 and per_page between 1 and 5000000");
		return;
	}
	const char *order = req_query(req, "order") ? req_query(req, "order") : "type";
	const char *dir = req_query(req, "direction");
	DnsRecord **sel = calloc(world.n_records + 1, sizeof(*sel));
	if (!sel)
		abort();
	size_t n = 0;
	for (size_t i = 0; i < world.n_records; i++) {
		DnsRecord *r = world.records[i];
		int tested = 0, passed = 0;
		const char *k;
		json_t *v;
		json_object_foreach(req->query, k, v)
		{
			const char *val = json_string_value(v);
			bool ok;
			if (!strcmp(k, "name") || !strcmp(k, "name.exact")) {
				_cleanup_free_ char *want = str_lower(val);
				if (!strcmp(want, "@")) {
					free(want);
					want = strdup(sim_opt.zone_name);
				}
				ok = !strcmp(r->name, want);
			} else if (!strncmp(k, "name.", 5)) {
				ok = str_match(r->name, k + 5, val);
			} else if (!strcmp(k, "type")) {
				ok = !strcasecmp(r->type, val);
			} else if (!strcmp(k, "content") || !strcmp(k, "content.exact")) {
				ok = !strcasecmp(r->content, val);
			} else if (!strncmp(k, "content.", 8)) {
				ok = str_match(r->content, k + 8, val);
			} else if (!strcmp(k, "proxied")) {
				ok = r->proxied == !strcmp(val, "true");
			} else if (!strcmp(k, "comment")) {
				ok = r->comment && !strcasecmp(r->comment, val);
			} else if (!strcmp(k, "comment.present")) {
				ok = r->comment != NULL;
			} else if (!strcmp(k, "comment.absent")) {
				ok = r->comment == NULL;
			} else if (!strncmp(k, "comment.", 8)) {
				ok = str_match(r->comment, k + 8, val);
			} else if (!strcmp(k, "tag") || !strcmp(k, "tag.exact") ||
			           !strcmp(k, "tag.present")) {
				ok = false;
				size_t ti;
				json_t *t;
				json_array_foreach(r->tags, ti, t)
				{
					const char *ts = json_string_value(t);
					if (!ts)
						continue;
					const char *colon = strchr(ts, ':');
					size_t nl = colon ? (size_t)(colon - ts) : strlen(ts);
					if (strchr(val, ':') && strcmp(k, "tag.present"))
						ok |= !strcasecmp(ts, val);
					else
						ok |=
						    strlen(val) == nl && !strncasecmp(ts, val, nl);
				}
			} else {
				continue; /* paging, ordering, match: not filters */
			}
			tested++;
			passed += ok;
		}
		if (!tested || (any ? passed > 0 : passed == tested))
			sel[n++] = r;
	}
	g_order = order;
	g_dir = dir && !strcmp(dir, "desc") ? -1 : 1;
	qsort(sel, n, sizeof(*sel), cmp_records);
	json_t *arr = json_array();
	size_t from = (size_t)((page - 1) * per_page);
	for (size_t i = from; i < n && i < from + (size_t)per_page; i++)
		json_array_append_new(arr, cf_record_json(sel[i]));
	free(sel);
	json_int_t pages = (json_int_t)((n + (size_t)per_page - 1) / (size_t)per_page);
	cf_ok(resp, arr,
	      json_pack("{s:I, s:I, s:I, s:I, s:I}", "page", (json_int_t)page, "per_page",
	                (json_int_t)per_page, "count", (json_int_t)json_array_size(arr),
	                "total_count", (json_int_t)n, "total_pages", pages));
}

static void h_create(SimRequest *req, SimResponse *resp)
{
	if (!enter(req, resp))
		return;
	_cleanup_json_ json_t *b = req_body_json(req);
	if (!b) {
		cf_err(resp, 400, 9207, "Request body is invalid.");
		return;
	}
	DnsRecord *r = record_from(b, resp);
	if (!r)
		return;
	if (conflicts(r, NULL, resp)) {
		record_free(r);
		return;
	}
	sim_rand_hex(r->id, 32);
	r->created_wall_ms = r->modified_wall_ms = sim_wall_ms();
	r->seq = ++world.record_seq;
	if (world.n_records == world.cap_records) {
		world.cap_records = world.cap_records ? world.cap_records * 2 : 64;
		world.records = realloc(world.records, world.cap_records * sizeof(*world.records));
		if (!world.records)
			abort();
	}
	world.records[world.n_records++] = r;
	char key[512];
	snprintf(key, sizeof(key), "%s %s", r->type, r->name);
	stats_created("dns_records_per_name_type", key);
	stats_effect("dns.create");
	stats_recount();
	cf_ok(resp, cf_record_json(r), NULL);
}

static void h_get(SimRequest *req, SimResponse *resp)
{
	if (!enter(req, resp))
		return;
	DnsRecord *r = find(req->segs[5], NULL);
	if (!r)
		cf_err(resp, 404, 81044, "Record does not exist.");
	else
		cf_ok(resp, cf_record_json(r), NULL);
}

static void h_update(SimRequest *req, SimResponse *resp)
{
	if (!enter(req, resp))
		return;
	size_t idx;
	DnsRecord *old = find(req->segs[5], &idx);
	if (!old) {
		cf_err(resp, 404, 81044, "Record does not exist.");
		return;
	}
	_cleanup_json_ json_t *b = req_body_json(req);
	if (!b) {
		cf_err(resp, 400, 9207, "Request body is invalid.");
		return;
	}
	if (!strcmp(req->method, "PATCH")) {
		json_t *merged = cf_record_json(old);
		json_object_update(merged, b);
		json_decref(b);
		b = merged;
	}
	DnsRecord *r = record_from(b, resp);
	if (!r)
		return;
	if (conflicts(r, old, resp)) {
		record_free(r);
		return;
	}
	memcpy(r->id, old->id, sizeof(r->id));
	r->created_wall_ms = old->created_wall_ms;
	r->modified_wall_ms = sim_wall_ms();
	r->seq = old->seq;
	record_free(old);
	world.records[idx] = r;
	stats_effect("dns.update");
	stats_recount();
	cf_ok(resp, cf_record_json(r), NULL);
}

static void h_delete(SimRequest *req, SimResponse *resp)
{
	if (!enter(req, resp))
		return;
	size_t idx;
	DnsRecord *r = find(req->segs[5], &idx);
	if (!r) {
		cf_err(resp, 404, 81044, "Record does not exist.");
		return;
	}
	json_t *res = json_pack("{s:s}", "id", r->id);
	record_free(r);
	memmove(world.records + idx, world.records + idx + 1,
	        (world.n_records - idx - 1) * sizeof(*world.records));
	world.n_records--;
	stats_effect("dns.delete");
	stats_recount();
	cf_ok(resp, res, NULL);
}

static void h_zone(SimRequest *req, SimResponse *resp)
{
	if (!enter(req, resp))
		return;
	cf_ok(resp,
	      json_pack("{s:s, s:s, s:s, s:b}", "id", sim_secrets.cf_zone_id, "name",
	                sim_opt.zone_name, "status", "active", "paused", 0),
	      NULL);
}

static void h_verify(SimRequest *req, SimResponse *resp)
{
	if (!enter(req, resp))
		return;
	cf_ok(resp, json_pack("{s:s, s:s}", "id", "zlh-sim-token", "status", "active"), NULL);
}

static void h_not_found(SimRequest *req, SimResponse *resp)
{
	(void)req;
	cf_err(resp, 404, 7000, "No route for that URI");
}

static bool set(SimRequest *req, const char *tmpl, SimHandler h)
{
	req->route = tmpl;
	req->handler = h;
	return true;
}

bool cf_route(SimRequest *req)
{
	const char *m = req->method;
	int n = req->nseg;
	req->route = "?";
	req->handler = h_not_found;
	if (n < 3 || strcmp(req->segs[0], "client") || strcmp(req->segs[1], "v4"))
		return false;
	if (n == 4 && !strcmp(req->segs[2], "user") && !strcmp(req->segs[3], "tokens"))
		return false;
	if (n == 5 && !strcmp(req->segs[2], "user") && !strcmp(req->segs[3], "tokens") &&
	    !strcmp(req->segs[4], "verify") && !strcmp(m, "GET"))
		return set(req, "/client/v4/user/tokens/verify", h_verify);
	if (strcmp(req->segs[2], "zones") || n < 4)
		return false;
	if (n == 4 && !strcmp(m, "GET"))
		return set(req, "/client/v4/zones/{zone_id}", h_zone);
	if (strcmp(req->segs[4 < n ? 4 : 0], "dns_records") || n < 5)
		return false;
	if (n == 5 && !strcmp(m, "GET"))
		return set(req, "/client/v4/zones/{zone_id}/dns_records", h_list);
	if (n == 5 && !strcmp(m, "POST"))
		return set(req, "/client/v4/zones/{zone_id}/dns_records", h_create);
	if (n == 6 && !strcmp(m, "GET"))
		return set(req, "/client/v4/zones/{zone_id}/dns_records/{id}", h_get);
	if (n == 6 && (!strcmp(m, "PUT") || !strcmp(m, "PATCH")))
		return set(req, "/client/v4/zones/{zone_id}/dns_records/{id}", h_update);
	if (n == 6 && !strcmp(m, "DELETE"))
		return set(req, "/client/v4/zones/{zone_id}/dns_records/{id}", h_delete);
	return false;
}
