/* faults.c - fault rules, set by flags or POST /_sim/faults.
 *
 * A rule: {"system": "pve|agent|velocity|cloudflare|*", "method": "POST|...|
 * MUTATING|*", "route": "<substring or glob>", "vmid": n, "ip": "a.b.c.d",
 * "latency_ms": n, "jitter_ms": n, "error_rate": 0..1, "lost_rate": 0..1,
 * "hang_ms": n, "count": n}.
 *
 * route matches the URL path or the route template ("/nodes/{node}/lxc"):
 * as a glob when it holds * ? or [, else as a substring. vmid narrows a rule
 * to one container (agent: the container reached; pve: a path segment).
 * count is how many matching requests the rule still applies to (absent or
 * 0 = unlimited); each match draws once from the seeded PRNG: below
 * error_rate -> HTTP 500 before any side effect; below error_rate +
 * lost_rate -> the request takes effect and the reply is dropped. Latency
 * (plus uniform jitter) and hang_ms delay every matched request; a hang
 * then goes on normally, so a client with a shorter timeout sees a timeout
 * whose side effect still happens. */
#include "sim.h"

#include <errno.h>
#include <fnmatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct Rule {
	int id;
	int sys; /* -1 = any */
	char method[16]; /* "" = any */
	char *route; /* NULL = any */
	int vmid; /* 0 = any */
	uint32_t ip; /* 0 = any */
	int64_t latency_ms, jitter_ms, hang_ms;
	double error_rate, lost_rate;
	int64_t count; /* remaining; -1 = unlimited */
	int64_t matched;
	json_t *src; /* the rule as given */
} Rule;

static Rule **rules;
static size_t n_rules;
static int next_id = 1;

static void rule_free(Rule *r)
{
	if (!r)
		return;
	free(r->route);
	json_decref(r->src);
	free(r);
}

static bool get_num(json_t *rule, const char *key, double min, double max, double *out)
{
	json_t *v = json_object_get(rule, key);
	if (!v)
		return true;
	if (!json_is_number(v))
		return false;
	double d = json_number_value(v);
	if (d < min || d > max)
		return false;
	*out = d;
	return true;
}

int faults_add(json_t *rule, const char **ret_err)
{
	static const char *const keys[] = {"system",    "method",     "route",     "vmid",
	                                   "ip",        "latency_ms", "jitter_ms", "error_rate",
	                                   "lost_rate", "hang_ms",    "count",     "comment"};
	if (!json_is_object(rule)) {
		*ret_err = "a rule is a JSON object";
		return -EINVAL;
	}
	const char *k;
	json_t *v;
	json_object_foreach(rule, k, v)
	{
		bool ok = false;
		for (size_t i = 0; i < ELEMENTSOF(keys); i++)
			ok |= strcmp(k, keys[i]) == 0;
		if (!ok) {
			*ret_err = "unknown key in fault rule";
			return -EINVAL;
		}
	}
	Rule *r = calloc(1, sizeof(*r));
	if (!r)
		abort();
	r->sys = -1;
	const char *s = json_string_value(json_object_get(rule, "system"));
	if (s && strcmp(s, "*") != 0 && (r->sys = sim_system_parse(s)) < 0) {
		*ret_err = "unknown system (pve, agent, velocity, cloudflare, *)";
		rule_free(r);
		return -EINVAL;
	}
	if (r->sys == SYS_CONTROL) {
		*ret_err = "the control endpoint takes no faults";
		rule_free(r);
		return -EINVAL;
	}
	s = json_string_value(json_object_get(rule, "method"));
	if (s && strcmp(s, "*") != 0)
		snprintf(r->method, sizeof(r->method), "%s", s);
	s = json_string_value(json_object_get(rule, "route"));
	if (s && *s && strcmp(s, "*") != 0)
		r->route = strdup(s);
	s = json_string_value(json_object_get(rule, "ip"));
	if (s && !(r->ip = ip_parse(s))) {
		*ret_err = "ip is not an IPv4 address";
		rule_free(r);
		return -EINVAL;
	}
	double d = 0, lat = 0, jit = 0, hang = 0, cnt = 0, vmid = 0;
	if (!get_num(rule, "latency_ms", 0, 3600000, &lat) ||
	    !get_num(rule, "jitter_ms", 0, 3600000, &jit) ||
	    !get_num(rule, "hang_ms", 0, 3600000, &hang) ||
	    !get_num(rule, "count", 0, 1e12, &cnt) || !get_num(rule, "vmid", 0, 1e9, &vmid)) {
		*ret_err =
		    "latency_ms, jitter_ms, hang_ms (0..3600000), count, vmid must be numbers";
		rule_free(r);
		return -EINVAL;
	}
	d = 0;
	if (!get_num(rule, "error_rate", 0, 1, &d)) {
		*ret_err = "error_rate must be a number in [0, 1]";
		rule_free(r);
		return -EINVAL;
	}
	r->error_rate = d;
	d = 0;
	if (!get_num(rule, "lost_rate", 0, 1, &d)) {
		*ret_err = "lost_rate must be a number in [0, 1]";
		rule_free(r);
		return -EINVAL;
	}
	r->lost_rate = d;
	r->latency_ms = (int64_t)lat;
	r->jitter_ms = (int64_t)jit;
	r->hang_ms = (int64_t)hang;
	r->vmid = (int)vmid;
	r->count = cnt > 0 ? (int64_t)cnt : -1;
	r->id = next_id++;
	r->src = json_deep_copy(rule);
	rules = realloc(rules, (n_rules + 1) * sizeof(*rules));
	if (!rules)
		abort();
	rules[n_rules++] = r;
	return r->id;
}

void faults_clear(void)
{
	for (size_t i = 0; i < n_rules; i++)
		rule_free(rules[i]);
	free(rules);
	rules = NULL;
	n_rules = 0;
}

json_t *faults_list(void)
{
	json_t *a = json_array();
	for (size_t i = 0; i < n_rules; i++) {
		json_t *o = json_deep_copy(rules[i]->src);
		json_object_set_new(o, "id", json_integer(rules[i]->id));
		json_object_set_new(o, "matched", json_integer(rules[i]->matched));
		json_object_set_new(o, "remaining",
		                    rules[i]->count < 0 ? json_null()
		                                        : json_integer(rules[i]->count));
		json_array_append_new(a, o);
	}
	return a;
}

static bool match_pattern(const char *pat, const char *s)
{
	if (!s)
		return false;
	if (strpbrk(pat, "*?["))
		return fnmatch(pat, s, 0) == 0;
	return strstr(s, pat) != NULL;
}

static bool rule_matches(const Rule *r, const SimRequest *req)
{
	if (r->count == 0)
		return false;
	if (r->sys >= 0 && r->sys != (int)req->sys)
		return false;
	if (r->method[0]) {
		if (strcmp(r->method, "MUTATING") == 0) {
			if (!req->mutating)
				return false;
		} else if (strcasecmp(r->method, req->method) != 0) {
			return false;
		}
	}
	if (r->route && !match_pattern(r->route, req->path) && !match_pattern(r->route, req->route))
		return false;
	if (r->ip && req->local_ip != r->ip)
		return false;
	if (r->vmid) {
		if (req->sys == SYS_AGENT) {
			Container *ct = world_ct_by_ip(req->local_ip);
			if (!ct || ct->vmid != r->vmid)
				return false;
		} else {
			char v[16];
			snprintf(v, sizeof(v), "%d", r->vmid);
			bool seen = false;
			for (int i = 0; i < req->nseg; i++)
				seen |= strcmp(req->segs[i], v) == 0;
			if (!seen)
				return false;
		}
	}
	return true;
}

void faults_decide(const SimRequest *req, FaultDecision *ret)
{
	memset(ret, 0, sizeof(*ret));
	for (size_t i = 0; i < n_rules; i++) {
		Rule *r = rules[i];
		if (!rule_matches(r, req))
			continue;
		r->matched++;
		if (r->count > 0)
			r->count--;
		ret->delay_ms += r->latency_ms;
		if (r->jitter_ms > 0)
			ret->delay_ms += (int64_t)(sim_rand() % (uint64_t)(r->jitter_ms + 1));
		ret->hang_ms += r->hang_ms;
		if (r->error_rate > 0 || r->lost_rate > 0) {
			double u = sim_rand_unit();
			if (u < r->error_rate && !ret->lost) {
				ret->error = true;
				if (!ret->rule_id)
					ret->rule_id = r->id;
			} else if (u < r->error_rate + r->lost_rate && !ret->error) {
				ret->lost = true;
				if (!ret->rule_id)
					ret->rule_id = r->id;
			}
		}
	}
}
