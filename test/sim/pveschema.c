/* pveschema.c - request validation against the Proxmox VE API schema, as
 * PVE::JSONSchema does it: the same order of checks (missing, type, format,
 * pattern, length, range, enum), the same messages, 400 "Parameter
 * verification failed." with "errors" per parameter, property strings
 * ("name=eth0,bridge=vmbr0,ip=...") parsed and checked key by key.
 *
 * The schema is pve-apidata-subset.json, embedded by gen-pve-schema.sh. */
#include "sim.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern const char pveschema_json[];

static json_t *schema;

typedef struct RxCache {
	const char *pat; /* borrowed from the schema */
	regex_t rx;
	bool ok;
} RxCache;
static RxCache rx_cache[64];
static size_t n_rx;

int pveschema_init(void)
{
	json_error_t err;
	schema = json_loads(pveschema_json, 0, &err);
	return schema ? 0 : -EINVAL;
}

void pveschema_free(void)
{
	for (size_t i = 0; i < n_rx; i++)
		if (rx_cache[i].ok)
			regfree(&rx_cache[i].rx);
	n_rx = 0;
	json_decref(schema);
	schema = NULL;
}

/* ---- small matchers ----------------------------------------------------------- */

static bool all_chars(const char *s, const char *set, bool alnum)
{
	for (; *s; s++)
		if (!(alnum && isalnum((unsigned char)*s)) && !strchr(set, *s))
			return false;
	return true;
}

static bool is_integer(const char *s)
{
	if (*s == '+' || *s == '-')
		s++;
	if (!*s)
		return false;
	for (; *s; s++)
		if (!isdigit((unsigned char)*s))
			return false;
	return true;
}

static bool is_number(const char *s)
{
	if (*s == '+' || *s == '-')
		s++;
	size_t a = 0, b = 0;
	while (isdigit((unsigned char)*s))
		s++, a++;
	if (*s == '.') {
		s++;
		while (isdigit((unsigned char)*s))
			s++, b++;
	}
	if (!a && !b)
		return false;
	if (*s == 'e' || *s == 'E') {
		s++;
		if (*s == '+' || *s == '-')
			s++;
		if (!isdigit((unsigned char)*s))
			return false;
		while (isdigit((unsigned char)*s))
			s++;
	}
	return *s == 0;
}

/* [a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])? */
static bool is_label(const char *s, size_t n)
{
	if (!n || !isalnum((unsigned char)s[0]) || !isalnum((unsigned char)s[n - 1]))
		return false;
	for (size_t i = 0; i < n; i++)
		if (!isalnum((unsigned char)s[i]) && s[i] != '-')
			return false;
	return true;
}

static bool is_dns_name(const char *s)
{
	for (;;) {
		const char *dot = strchr(s, '.');
		size_t n = dot ? (size_t)(dot - s) : strlen(s);
		if (!is_label(s, n))
			return false;
		if (!dot)
			return true;
		s = dot + 1;
	}
}

static bool is_ipv4(const char *s)
{
	struct in_addr a;
	return inet_pton(AF_INET, s, &a) == 1;
}

static bool is_ipv6(const char *s)
{
	struct in6_addr a;
	return inet_pton(AF_INET6, s, &a) == 1;
}

static bool is_cidr(const char *s, bool v6)
{
	const char *slash = strchr(s, '/');
	if (!slash || !is_integer(slash + 1) || slash[1] == '+' || slash[1] == '-')
		return false;
	long bits = strtol(slash + 1, NULL, 10);
	char addr[64];
	size_t n = (size_t)(slash - s);
	if (n >= sizeof(addr))
		return false;
	memcpy(addr, s, n);
	addr[n] = 0;
	if (v6)
		return is_ipv6(addr) && bits > 7 && bits <= 128;
	return is_ipv4(addr) && bits > 7 && bits <= 32;
}

/* PVE::JSONSchema::parse_size; -1 when invalid. */
static int64_t parse_size(const char *s)
{
	char *end;
	if (!isdigit((unsigned char)*s))
		return -1;
	double v = strtod(s, &end);
	if (end == s)
		return -1;
	const char *dot = strchr(s, '.');
	if (dot && dot < end && !isdigit((unsigned char)dot[1]))
		return -1;
	double mult = 1;
	if (*end == 'K')
		mult = 1024.0, end++;
	else if (*end == 'M')
		mult = 1048576.0, end++;
	else if (*end == 'G')
		mult = 1073741824.0, end++;
	else if (*end == 'T')
		mult = 1099511627776.0, end++;
	if (*end)
		return -1;
	return (int64_t)(v * mult);
}

static bool is_tag(const char *s)
{
	if (!*s || !(isalnum((unsigned char)*s) || *s == '_'))
		return false;
	return all_chars(s, "_-+.", true);
}

/* ---- formats -------------------------------------------------------------- */

/* Checks one value against a named format; NULL when valid, else the
 * message Proxmox dies with (including the trailing newline) in buf. */
static const char *check_named(const char *fmt, const char *v, char *buf, size_t n)
{
	if (strcmp(fmt, "pve-vmid") == 0) {
		size_t len = strlen(v);
		if (len < 3 || len > 9 || v[0] < '1' || v[0] > '9' ||
		    !all_chars(v, "0123456789", false))
			return "value does not look like a valid VM ID\n";
	} else if (strcmp(fmt, "pve-node") == 0) {
		if (!is_label(v, strlen(v)))
			return "value does not look like a valid node name\n";
	} else if (strcmp(fmt, "pve-storage-id") == 0 || strcmp(fmt, "pve-configid") == 0) {
		size_t len = strlen(v);
		bool ok = len >= 2 && isalpha((unsigned char)v[0]) &&
		          all_chars(v, strcmp(fmt, "pve-configid") == 0 ? "_-" : "-_.", true) &&
		          (strcmp(fmt, "pve-configid") == 0 || isalnum((unsigned char)v[len - 1]));
		if (!ok) {
			if (strcmp(fmt, "pve-configid") == 0)
				snprintf(buf, n, "invalid configuration ID '%s'\n", v);
			else
				snprintf(buf, n, "storage ID '%s' contains illegal characters\n",
				         v);
			return buf;
		}
	} else if (strcmp(fmt, "pve-poolid") == 0) {
		if (!*v || !all_chars(v, ".-_", true)) {
			snprintf(buf, n, "invalid pool ID '%s'\n", v);
			return buf;
		}
	} else if (strcmp(fmt, "dns-name") == 0) {
		if (!is_dns_name(v))
			return "value does not look like a valid DNS name\n";
	} else if (strcmp(fmt, "pve-tag") == 0) {
		if (!is_tag(v))
			return "invalid characters in tag\n";
	} else if (strcmp(fmt, "pve-volume-id") == 0) {
		const char *c = strchr(v, ':');
		bool ok = c && c > v && c[1] && isalpha((unsigned char)v[0]) &&
		          isalnum((unsigned char)c[-1]);
		for (const char *p = v; ok && p < c; p++)
			ok = isalnum((unsigned char)*p) || strchr("-_.", *p);
		if (!ok) {
			snprintf(buf, n, "unable to parse volume ID '%s'\n", v);
			return buf;
		}
	} else if (strcmp(fmt, "disk-size") == 0) {
		if (parse_size(v) < 0) {
			snprintf(buf, n, "value does not look like a valid disk size: %s\n", v);
			return buf;
		}
	} else if (strcmp(fmt, "ipv4") == 0) {
		if (!is_ipv4(v))
			return "value does not look like a valid IPv4 address\n";
	} else if (strcmp(fmt, "ipv6") == 0) {
		if (!is_ipv6(v))
			return "value does not look like a valid IPv6 address\n";
	} else if (strcmp(fmt, "ip") == 0 || strcmp(fmt, "address") == 0) {
		if (!is_ipv4(v) && !is_ipv6(v) && (strcmp(fmt, "ip") == 0 || !is_dns_name(v)))
			return "value does not look like a valid IP address\n";
	} else if (strcmp(fmt, "mac-addr") == 0) {
		bool ok =
		    strlen(v) == 17 && isxdigit((unsigned char)v[0]) && strchr("02468aceACE", v[1]);
		for (int i = 2; ok && i < 17; i++)
			ok = (i % 3 == 2) ? v[i] == ':' : isxdigit((unsigned char)v[i]) != 0;
		if (!ok)
			return "value does not look like a valid unicast MAC address\n";
	} else if (strcmp(fmt, "pve-ipv4-config") == 0) {
		if (strcmp(v, "dhcp") != 0 && strcmp(v, "manual") != 0 && !is_cidr(v, false))
			return "value does not look like a valid ipv4 network configuration\n";
	} else if (strcmp(fmt, "pve-ipv6-config") == 0) {
		if (strcmp(v, "auto") != 0 && strcmp(v, "dhcp") != 0 && strcmp(v, "manual") != 0 &&
		    !is_cidr(v, true))
			return "value does not look like a valid ipv6 network configuration\n";
	} else if (strcmp(fmt, "pve-startup-order") == 0) {
		_cleanup_free_ char *c = strdup(v);
		bool ok = *v != 0;
		for (char *save = NULL, *p = strtok_r(c, ",", &save); ok && p;
		     p = strtok_r(NULL, ",", &save)) {
			const char *num = p;
			if (strncmp(p, "order=", 6) == 0 || strncmp(p, "up=", 3) == 0 ||
			    strncmp(p, "down=", 5) == 0)
				num = strchr(p, '=') + 1;
			ok = *num && all_chars(num, "0123456789", false);
		}
		if (!ok)
			return "unable to parse startup options\n";
	}
	/* other formats (pve-lxc-mp-string, timezones, ...) are not checked */
	return NULL;
}

/* PVE::Tools::split_list */
static json_t *split_list(const char *s)
{
	json_t *a = json_array();
	_cleanup_free_ char *c = strdup(s);
	for (char *p = c; *p; p++)
		if (*p == ',' || *p == ';' || isspace((unsigned char)*p))
			*p = ' ';
	for (char *save = NULL, *t = strtok_r(c, " ", &save); t; t = strtok_r(NULL, " ", &save))
		json_array_append_new(a, json_string(t));
	return a;
}

static const char *check_format_name(const char *fmt, const char *v, char *buf, size_t n)
{
	size_t len = strlen(fmt);
	char base[64];
	if (len > 5 && len < sizeof(base) && strcmp(fmt + len - 5, "-list") == 0) {
		memcpy(base, fmt, len - 5);
		base[len - 5] = 0;
		_cleanup_json_ json_t *items = split_list(v);
		size_t i;
		json_t *it;
		json_array_foreach(items, i, it)
		{
			const char *e = check_named(base, json_string_value(it), buf, n);
			if (e)
				return e;
		}
		return NULL;
	}
	if (len > 4 && len < sizeof(base) && strcmp(fmt + len - 4, "-opt") == 0) {
		memcpy(base, fmt, len - 4);
		base[len - 4] = 0;
		return *v ? check_named(base, v, buf, n) : NULL;
	}
	return check_named(fmt, v, buf, n);
}

/* Perl regex -> POSIX ERE for the simple patterns the schema uses; false
 * when the pattern uses something we do not translate (then not checked). */
static bool perl_to_ere(const char *p, Buf *out)
{
	bool in_br = false, br_dash = false;
	if (buf_puts(out, "^(") < 0)
		return false;
	for (; *p; p++) {
		const char *add = NULL;
		char one[2] = {*p, 0};
		if (!in_br && strncmp(p, "(?^:", 4) == 0) {
			add = "(";
			p += 3;
		} else if (!in_br && strncmp(p, "(?:", 3) == 0) {
			add = "(";
			p += 2;
		} else if (*p == '\\') {
			char c = p[1];
			p++;
			if (c == 'd')
				add = in_br ? "0-9" : "[0-9]";
			else if (c == 'w')
				add = in_br ? "A-Za-z0-9_" : "[A-Za-z0-9_]";
			else if (c == 's')
				add = in_br ? "[:space:]" : "[[:space:]]";
			else if (c == 'x' || c == '0' || !c)
				return false;
			else if (in_br && c == '-') {
				br_dash = true;
				add = "";
			} else if (in_br) {
				one[0] = c;
				add = one;
			} else {
				char esc[3] = {'\\', c, 0};
				if (buf_puts(out, esc) < 0)
					return false;
				continue;
			}
		} else if (!in_br && *p == '[') {
			in_br = true;
			br_dash = false;
			add = "[";
			if (p[1] == '^') {
				if (buf_puts(out, "[^") < 0)
					return false;
				p++;
				continue;
			}
		} else if (in_br && *p == ']') {
			in_br = false;
			add = br_dash ? "-]" : "]";
		} else {
			add = one;
		}
		if (buf_puts(out, add) < 0)
			return false;
	}
	return !in_br && buf_puts(out, ")$") >= 0;
}

static bool pattern_ok(const char *pat, const char *v)
{
	RxCache *c = NULL;
	for (size_t i = 0; i < n_rx; i++)
		if (rx_cache[i].pat == pat)
			c = &rx_cache[i];
	if (!c) {
		if (n_rx == ELEMENTSOF(rx_cache))
			return true;
		c = &rx_cache[n_rx++];
		c->pat = pat;
		_cleanup_buf_ Buf ere = BUF_INIT;
		c->ok = perl_to_ere(pat, &ere) &&
		        regcomp(&c->rx, ere.data, REG_EXTENDED | REG_NOSUB) == 0;
	}
	if (!c->ok)
		return true;
	return regexec(&c->rx, v, 0, NULL, 0) == 0;
}

/* ---- property checks ------------------------------------------------------- */

static void add_error(json_t *errors, const char *path, const char *msg)
{
	json_t *prev = json_object_get(errors, path);
	if (prev) {
		char *j = NULL;
		if (asprintf(&j, "%s\\n%s", json_string_value(prev), msg) >= 0) {
			json_object_set_new(errors, path, json_string(j));
			free(j);
		}
	} else {
		json_object_set_new(errors, path, json_string(msg));
	}
}

static double num_of(json_t *v)
{
	if (json_is_number(v))
		return json_number_value(v);
	if (json_is_string(v))
		return strtod(json_string_value(v), NULL);
	return 0;
}

static bool check_prop(json_t *value, json_t *sch, const char *path, json_t *errors,
                       json_t **ret_norm);

/* parse_property_string + check_object; returns NULL or the message. */
static char *check_propstr(json_t *fmt, const char *v, const char *path)
{
	_cleanup_json_ json_t *res = json_object();
	_cleanup_free_ char *copy = strdup(v);
	char *m = NULL;
	const char *default_key = NULL;
	for (char *save = NULL, *part = strtok_r(copy, ",", &save); part;
	     part = strtok_r(NULL, ",", &save)) {
		bool blank = true;
		for (char *q = part; *q; q++)
			blank &= isspace((unsigned char)*q) != 0;
		if (blank)
			continue;
		char *eq = strchr(part, '=');
		if (eq && eq > part && eq[1]) {
			*eq = 0;
			const char *k = part, *val = eq + 1;
			if (json_object_get(res, k)) {
				(void)!asprintf(
				    &m, "duplicate key in comma-separated list property: %s\n", k);
				return m;
			}
			json_t *ks = json_object_get(fmt, k);
			if (!ks) {
				(void)!asprintf(
				    &m, "invalid key in comma-separated list property: %s\n", k);
				return m;
			}
			const char *t = json_string_value(json_object_get(ks, "type"));
			if (t && strcmp(t, "boolean") == 0) {
				if (!strcasecmp(val, "1") || !strcasecmp(val, "on") ||
				    !strcasecmp(val, "yes") || !strcasecmp(val, "true"))
					val = "1";
				else if (!strcasecmp(val, "0") || !strcasecmp(val, "off") ||
				         !strcasecmp(val, "no") || !strcasecmp(val, "false"))
					val = "0";
			}
			json_object_set_new(res, k, json_string(val));
		} else if (!eq) {
			if (default_key)
				return strdup("duplicate key in comma-separated list property\n");
			const char *k;
			json_t *ks;
			json_object_foreach(fmt, k, ks)
			{
				if (json_is_true(json_object_get(ks, "default_key")) ||
				    json_integer_value(json_object_get(ks, "default_key")) == 1) {
					default_key = k;
					break;
				}
			}
			if (!default_key)
				return strdup("value without key, but schema does not define a "
				              "default key\n");
			json_object_set_new(res, default_key, json_string(part));
		} else {
			return strdup("missing key in comma-separated list property\n");
		}
	}
	_cleanup_json_ json_t *errors = json_object();
	const char *k;
	json_t *ks;
	json_object_foreach(fmt, k, ks)
	{
		char sub[256];
		snprintf(sub, sizeof(sub), "%s.%s", path, k);
		check_prop(json_object_get(res, k), ks, sub, errors, NULL);
	}
	if (json_object_size(errors) == 0)
		return NULL;
	Buf b = BUF_INIT;
	(void)!buf_puts(&b, "format error\n");
	json_object_foreach(errors, k, ks)
	{
		(void)!buf_printf(&b, "%s: %s\n", k, json_string_value(ks));
	}
	return buf_steal(&b);
}

/* check_prop for a value that is present (or NULL = missing). On success
 * *ret_norm (if asked) receives the typed value (new). */
static bool check_prop(json_t *value, json_t *sch, const char *path, json_t *errors,
                       json_t **ret_norm)
{
	if (!value || json_is_null(value)) {
		if (!json_integer_value(json_object_get(sch, "optional")) &&
		    !json_is_true(json_object_get(sch, "optional")))
			add_error(errors, path, "property is missing and it is not optional");
		return false;
	}
	const char *type = json_string_value(json_object_get(sch, "type"));
	char sval[64];
	const char *v;
	char msg[512];
	if (json_is_string(value)) {
		v = json_string_value(value);
	} else if (json_is_integer(value)) {
		snprintf(sval, sizeof(sval), "%lld", (long long)json_integer_value(value));
		v = sval;
	} else if (json_is_real(value)) {
		snprintf(sval, sizeof(sval), "%.15g", json_real_value(value));
		v = sval;
	} else if (json_is_boolean(value)) {
		if (type && strcmp(type, "boolean") == 0) {
			if (ret_norm)
				*ret_norm = json_integer(json_is_true(value));
			return true;
		}
		snprintf(msg, sizeof(msg), "type check ('%s') failed - got JSON::PP::Boolean",
		         type ? type : "string");
		add_error(errors, path, msg);
		return false;
	} else {
		snprintf(msg, sizeof(msg), "type check ('%s') failed - got %s",
		         type ? type : "string", json_is_array(value) ? "ARRAY" : "HASH");
		add_error(errors, path, msg);
		return false;
	}

	if (type) {
		bool ok = true;
		if (strcmp(type, "boolean") == 0)
			ok = strcmp(v, "1") == 0 || strcmp(v, "0") == 0;
		else if (strcmp(type, "integer") == 0)
			ok = is_integer(v);
		else if (strcmp(type, "number") == 0)
			ok = is_number(v);
		if (!ok) {
			snprintf(msg, sizeof(msg), "type check ('%s') failed - got '%s'", type, v);
			add_error(errors, path, msg);
			return false;
		}
	}

	json_t *fmt = json_object_get(sch, "format");
	if (json_is_string(fmt)) {
		char buf[256];
		const char *e = check_format_name(json_string_value(fmt), v, buf, sizeof(buf));
		if (e) {
			snprintf(msg, sizeof(msg), "invalid format - %s", e);
			add_error(errors, path, msg);
			return false;
		}
	} else if (json_is_object(fmt)) {
		_cleanup_free_ char *e = check_propstr(fmt, v, path);
		if (e) {
			_cleanup_free_ char *full = NULL;
			if (asprintf(&full, "invalid format - %s", e) >= 0)
				add_error(errors, path, full);
			return false;
		}
	}
	const char *pat = json_string_value(json_object_get(sch, "pattern"));
	if (pat && !pattern_ok(pat, v)) {
		add_error(errors, path, "value does not match the regex pattern");
		return false;
	}
	json_t *maxl = json_object_get(sch, "maxLength");
	if (maxl && strlen(v) > (size_t)num_of(maxl)) {
		snprintf(msg, sizeof(msg), "value may only be %lld characters long",
		         (long long)num_of(maxl));
		add_error(errors, path, msg);
		return false;
	}
	json_t *minl = json_object_get(sch, "minLength");
	if (minl && strlen(v) < (size_t)num_of(minl)) {
		snprintf(msg, sizeof(msg), "value must be at least %lld characters long",
		         (long long)num_of(minl));
		add_error(errors, path, msg);
		return false;
	}
	if (is_number(v)) {
		double d = strtod(v, NULL);
		json_t *mx = json_object_get(sch, "maximum");
		json_t *mn = json_object_get(sch, "minimum");
		if (mx && d > num_of(mx)) {
			snprintf(msg, sizeof(msg), "value must have a maximum value of %.15g",
			         num_of(mx));
			add_error(errors, path, msg);
			return false;
		}
		if (mn && d < num_of(mn)) {
			snprintf(msg, sizeof(msg), "value must have a minimum value of %.15g",
			         num_of(mn));
			add_error(errors, path, msg);
			return false;
		}
	}
	json_t *en = json_object_get(sch, "enum");
	if (json_is_array(en)) {
		bool found = false;
		Buf all = BUF_INIT;
		size_t i;
		json_t *e;
		json_array_foreach(en, i, e)
		{
			found |= strcmp(json_string_value(e) ? json_string_value(e) : "", v) == 0;
			(void)!buf_printf(&all, "%s%s", i ? ", " : "", json_string_value(e));
		}
		if (!found) {
			snprintf(msg, sizeof(msg),
			         "value '%s' does not have a value in the enumeration '%s'", v,
			         all.data ? all.data : "");
			add_error(errors, path, msg);
		}
		buf_done(&all);
		if (!found)
			return false;
	}
	if (ret_norm) {
		if (type && (strcmp(type, "boolean") == 0 || strcmp(type, "integer") == 0))
			*ret_norm = json_integer(strtoll(v, NULL, 10));
		else if (type && strcmp(type, "number") == 0)
			*ret_norm = json_real(strtod(v, NULL));
		else
			*ret_norm = json_string(v);
	}
	return true;
}

/* The schema entry for a parameter: exact name, or "net[n]" for "net0". */
static json_t *param_schema(json_t *props, const char *name)
{
	json_t *s = json_object_get(props, name);
	if (s)
		return s;
	size_t n = strlen(name), d = n;
	while (d > 0 && isdigit((unsigned char)name[d - 1]))
		d--;
	if (d == n || d == 0 || n - d > 3)
		return NULL;
	char key[80];
	snprintf(key, sizeof(key), "%.*s[n]", (int)d, name);
	return json_object_get(props, key);
}

int pveschema_check(const char *tmpl, const char *method, json_t *params, json_t **ret_norm,
                    json_t **ret_errors)
{
	json_t *m = json_object_get(json_object_get(schema, tmpl), method);
	json_t *props = json_object_get(m, "properties");
	json_t *errors = json_object();
	json_t *norm = json_object();
	const char *k;
	json_t *s, *v;
	if (!m) {
		*ret_norm = norm;
		json_decref(errors);
		return 0;
	}
	json_object_foreach(props, k, s)
	{
		if (strstr(k, "[n]"))
			continue;
		json_t *n = NULL;
		if (check_prop(json_object_get(params, k), s, k, errors, &n))
			json_object_set_new(norm, k, n);
	}
	json_object_foreach(params, k, v)
	{
		s = param_schema(props, k);
		if (!s) {
			add_error(errors, k,
			          "property is not defined in schema and the schema does not allow "
			          "additional properties");
			continue;
		}
		const char *req = json_string_value(json_object_get(s, "requires"));
		if (req && !json_object_get(params, req)) {
			char msg[256];
			snprintf(msg, sizeof(msg), "missing property - '%s' requires this property",
			         k);
			add_error(errors, req, msg);
		}
		if (json_object_get(props, k))
			continue; /* checked above */
		json_t *n = NULL;
		if (check_prop(v, s, k, errors, &n))
			json_object_set_new(norm, k, n);
	}
	if (json_object_size(errors)) {
		json_decref(norm);
		*ret_errors = errors;
		return -EINVAL;
	}
	json_decref(errors);
	*ret_norm = norm;
	return 0;
}

/* ---- helpers for pve.c --------------------------------------------------------- */

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

char *pve_tags_normalize(const char *tags)
{
	_cleanup_json_ json_t *items = split_list(tags ? tags : "");
	size_t n = json_array_size(items);
	char **v = calloc(n + 1, sizeof(char *));
	if (!v)
		abort();
	size_t m = 0;
	for (size_t i = 0; i < n; i++) {
		const char *t = json_string_value(json_array_get(items, i));
		if (!is_tag(t)) {
			for (size_t j = 0; j < m; j++)
				free(v[j]);
			free(v);
			return NULL;
		}
		v[m++] = str_lower(t);
	}
	qsort(v, m, sizeof(char *), cmp_str);
	Buf b = BUF_INIT;
	(void)!buf_puts(&b, "");
	for (size_t i = 0; i < m; i++) {
		if (i && strcmp(v[i], v[i - 1]) == 0)
			continue;
		(void)!buf_printf(&b, "%s%s", b.len ? ";" : "", v[i]);
	}
	for (size_t i = 0; i < m; i++)
		free(v[i]);
	free(v);
	return buf_steal(&b);
}

json_t *pve_propstr_parse(const char *s, const char *default_key)
{
	json_t *o = json_object();
	_cleanup_free_ char *c = strdup(s ? s : "");
	for (char *save = NULL, *part = strtok_r(c, ",", &save); part;
	     part = strtok_r(NULL, ",", &save)) {
		char *eq = strchr(part, '=');
		if (eq) {
			*eq = 0;
			json_object_set_new(o, part, json_string(eq + 1));
		} else if (default_key) {
			json_object_set_new(o, default_key, json_string(part));
		}
	}
	return o;
}

int64_t pve_parse_size(const char *s)
{
	return parse_size(s);
}
