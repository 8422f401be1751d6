/* config.c - table-driven YAML configuration; see config.h.
 *
 * The file is loaded with libyaml's document API (every node keeps its
 * line), then each mapping is walked against its table. Every problem is
 * collected as one line "FILE:LINE: KEY: message"; nothing is half-applied
 * because a failed load frees the whole Config. */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <yaml.h>

#include "buf.h"
#include "log.h"
#include "util.h"

typedef enum ConfigType {
	CFG_STRING,
	CFG_INT,
	CFG_BOOL,
	CFG_DURATION,
	CFG_SECRET_FILE, /* a path; the secret read from it goes to offset2 */
	CFG_FILE, /* a path that must be readable */
	CFG_CUSTOM,
	CFG_SECTION, /* a nested mapping; offset2 = its `enabled` flag or NONE */
	CFG_TYPE_MAX,
} ConfigType;

#define NONE SIZE_MAX

typedef struct Parser Parser;
typedef struct ConfigKey ConfigKey;

/* Parses node into the field; reports its own errors. */
typedef void (*ConfigParseFn)(Parser *p, const ConfigKey *k, const char *dotted, yaml_node_t *node);
/* Checks a parsed value; returns NULL when fine, else a message (static). */
typedef const char *(*ConfigCheckFn)(const Config *c, const ConfigKey *k);
/* Cross-key checks of a section once all its keys are parsed. */
typedef void (*ConfigFinishFn)(Parser *p, Config *c);

struct ConfigKey {
	const char *name;
	ConfigType type;
	size_t offset; /* into Config */
	size_t offset2;
	const char *def; /* default, written as in YAML; NULL = none */
	bool required;
	int64_t min, max; /* CFG_INT; CFG_DURATION in ms; 0,0 = no limit */
	ConfigParseFn parse; /* CFG_CUSTOM */
	ConfigCheckFn check;
	const ConfigKey *sub; /* CFG_SECTION */
	ConfigFinishFn finish; /* CFG_SECTION */
	const char *type_doc; /* CFG_CUSTOM: how the value is written */
	const char *doc;
};

#define KEY_LINES_MAX 128

struct Parser {
	const char *file;
	unsigned flags;
	Config *cfg;
	Buf errors;
	int n_errors;
	struct {
		char *key;
		int line;
	} lines[KEY_LINES_MAX];
	size_t n_lines;
};

#define OFF(field) offsetof(Config, field)

_printf_(4, 5) static void perr(Parser *p, int line, const char *key, const char *fmt, ...)
{
	va_list ap;
	int r = buf_printf(&p->errors, "%s:%d: %s: ", p->file, line, key);
	va_start(ap, fmt);
	if (r >= 0)
		r = buf_vprintf(&p->errors, fmt, ap);
	va_end(ap);
	if (r >= 0)
		(void)!buf_puts(&p->errors, "\n");
	p->n_errors++;
}

static void note_line(Parser *p, const char *dotted, int line)
{
	if (p->n_lines >= KEY_LINES_MAX)
		return;
	char *k = strdup(dotted);
	if (!k)
		return;
	p->lines[p->n_lines].key = k;
	p->lines[p->n_lines++].line = line;
}

/* Line where dotted was written, or where the nearest written parent was,
 * or 1. */
static int key_line(Parser *p, const char *dotted)
{
	char buf[128];
	snprintf(buf, sizeof buf, "%s", dotted);
	for (;;) {
		for (size_t i = 0; i < p->n_lines; i++)
			if (strcmp(p->lines[i].key, buf) == 0)
				return p->lines[i].line;
		char *dot = strrchr(buf, '.');
		if (!dot)
			return 1;
		*dot = 0;
	}
}

static int node_line(const yaml_node_t *n)
{
	return (int)n->start_mark.line + 1;
}

static char **field_str(Config *c, size_t off)
{
	return (char **)((char *)c + off);
}

static int64_t *field_int(Config *c, size_t off)
{
	return (int64_t *)((char *)c + off);
}

static bool *field_bool(Config *c, size_t off)
{
	return (bool *)((char *)c + off);
}

static const char *scalar(yaml_node_t *n)
{
	return (const char *)n->data.scalar.value;
}

static bool is_plain(yaml_node_t *n)
{
	return n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
}

static bool is_null(yaml_node_t *n)
{
	if (!n)
		return true;
	if (n->type != YAML_SCALAR_NODE || !is_plain(n))
		return false;
	const char *s = scalar(n);
	return !*s || strcmp(s, "~") == 0 || strcmp(s, "null") == 0 || strcmp(s, "Null") == 0 ||
	       strcmp(s, "NULL") == 0;
}

static const char *node_kind(yaml_node_t *n)
{
	switch (n->type) {
	case YAML_MAPPING_NODE:
		return "a mapping";
	case YAML_SEQUENCE_NODE:
		return "a list";
	default:
		return "a scalar";
	}
}

/* --- value parsers ----------------------------------------------------------- */

/* Parses one scalar value s (plain when written without quotes) of key k
 * into its field. Used for written values and for defaults alike. */
static void parse_scalar_value(Parser *p, const ConfigKey *k, const char *dotted, int line,
                               const char *s, bool plain)
{
	Config *c = p->cfg;
	switch (k->type) {
	case CFG_STRING:
	case CFG_SECRET_FILE:
	case CFG_FILE: {
		if (!*s) {
			perr(p, line, dotted, "must not be empty");
			return;
		}
		if (strlen(s) > 4096) {
			perr(p, line, dotted, "value too long");
			return;
		}
		char *d = strdup(s);
		if (!d) {
			perr(p, line, dotted, "out of memory");
			return;
		}
		free(*field_str(c, k->offset));
		*field_str(c, k->offset) = d;
		return;
	}
	case CFG_INT: {
		int64_t v;
		if (!plain || parse_int64(s, &v) < 0) {
			perr(p, line, dotted, "expected an integer, got \"%s\"", s);
			return;
		}
		if ((k->min || k->max) && (v < k->min || v > k->max)) {
			perr(p, line, dotted, "%lld is out of range [%lld, %lld]", (long long)v,
			     (long long)k->min, (long long)k->max);
			return;
		}
		*field_int(c, k->offset) = v;
		return;
	}
	case CFG_BOOL:
		if (plain && strcmp(s, "true") == 0)
			*field_bool(c, k->offset) = true;
		else if (plain && strcmp(s, "false") == 0)
			*field_bool(c, k->offset) = false;
		else
			perr(p, line, dotted, "expected true or false, got \"%s\"", s);
		return;
	case CFG_DURATION: {
		int64_t ms;
		if (duration_parse(s, &ms) < 0) {
			int64_t dummy;
			if (parse_int64(s, &dummy) == 0)
				perr(p, line, dotted, "a duration needs a unit (\"%ss\", \"%sm\")",
				     s, s);
			else
				perr(p, line, dotted,
				     "expected a duration such as 30s, 5m or 6h, got \"%s\"", s);
			return;
		}
		if ((k->min || k->max) && (ms < k->min || ms > k->max)) {
			char a[32], b[32], v[32];
			duration_format(ms, v, sizeof v);
			duration_format(k->min, a, sizeof a);
			duration_format(k->max, b, sizeof b);
			perr(p, line, dotted, "%s is out of range [%s, %s]", v, a, b);
			return;
		}
		*field_int(c, k->offset) = ms;
		return;
	}
	default:
		perr(p, line, dotted, "internal error: no scalar parser");
	}
}

static void parse_map(Parser *p, const ConfigKey *table, const char *prefix, yaml_document_t *doc,
                      yaml_node_t *map);

static void apply_defaults(Parser *p, const ConfigKey *table, const char *prefix, int line);

static void parse_key(Parser *p, const ConfigKey *k, const char *dotted, yaml_document_t *doc,
                      yaml_node_t *v)
{
	int line = node_line(v);
	Config *c = p->cfg;
	if (k->type == CFG_SECTION) {
		if (is_null(v)) {
			/* "dns:" with nothing under it: left out. */
			if (k->required)
				perr(p, line, dotted, "required section is empty");
			return;
		}
		if (v->type != YAML_MAPPING_NODE) {
			perr(p, line, dotted, "expected a mapping, got %s", node_kind(v));
			return;
		}
		if (k->offset2 != NONE)
			*field_bool(c, k->offset2) = true;
		parse_map(p, k->sub, dotted, doc, v);
		return;
	}
	if (k->type == CFG_CUSTOM) {
		k->parse(p, k, dotted, v);
		return;
	}
	if (v->type != YAML_SCALAR_NODE) {
		perr(p, line, dotted, "expected %s, got %s",
		     k->type == CFG_INT        ? "an integer"
		     : k->type == CFG_BOOL     ? "true or false"
		     : k->type == CFG_DURATION ? "a duration"
		                               : "a string",
		     node_kind(v));
		return;
	}
	if (is_null(v)) {
		if (k->required)
			perr(p, line, dotted, "a value is required");
		else if (k->def)
			parse_scalar_value(p, k, dotted, line, k->def, true);
		return;
	}
	int before = p->n_errors;
	parse_scalar_value(p, k, dotted, line, scalar(v), is_plain(v));
	if (p->n_errors == before && k->check) {
		const char *m = k->check(c, k);
		if (m)
			perr(p, line, dotted, "%s", m);
	}
}

static void parse_map(Parser *p, const ConfigKey *table, const char *prefix, yaml_document_t *doc,
                      yaml_node_t *map)
{
	int section_line = prefix[0] ? key_line(p, prefix) : 1;
	size_t n_keys = 0;
	while (table[n_keys].name)
		n_keys++;
	bool seen[64] = {0};

	for (yaml_node_pair_t *pair = map->data.mapping.pairs.start;
	     pair < map->data.mapping.pairs.top; pair++) {
		yaml_node_t *kn = yaml_document_get_node(doc, pair->key);
		yaml_node_t *vn = yaml_document_get_node(doc, pair->value);
		if (!kn || !vn)
			continue;
		if (kn->type != YAML_SCALAR_NODE) {
			perr(p, node_line(kn), prefix[0] ? prefix : "(top level)",
			     "keys must be plain names");
			continue;
		}
		char dotted[128];
		snprintf(dotted, sizeof dotted, "%s%s%s", prefix, prefix[0] ? "." : "", scalar(kn));
		size_t i;
		for (i = 0; i < n_keys; i++)
			if (strcmp(table[i].name, scalar(kn)) == 0)
				break;
		if (i == n_keys) {
			perr(p, node_line(kn), dotted, "unknown key");
			continue;
		}
		if (seen[i]) {
			perr(p, node_line(kn), dotted, "duplicate key");
			continue;
		}
		seen[i] = true;
		note_line(p, dotted, node_line(kn));
		parse_key(p, &table[i], dotted, doc, vn);
	}

	for (size_t i = 0; i < n_keys; i++) {
		if (seen[i])
			continue;
		const ConfigKey *k = &table[i];
		char dotted[128];
		snprintf(dotted, sizeof dotted, "%s%s%s", prefix, prefix[0] ? "." : "", k->name);
		if (k->required) {
			perr(p, section_line, dotted, "required %s missing",
			     k->type == CFG_SECTION ? "section" : "key");
			continue;
		}
		if (k->type == CFG_SECTION) {
			/* Left out: an optional section with an enabled flag is
			 * switched off; one without (controller) takes its
			 * defaults. */
			if (k->offset2 == NONE)
				apply_defaults(p, k->sub, dotted, section_line);
			continue;
		}
		if (k->def)
			parse_scalar_value(p, k, dotted, section_line, k->def, true);
	}
}

/* Sets every default of a table (for sections that are off, so the struct
 * still holds sane values). */
static void apply_defaults(Parser *p, const ConfigKey *table, const char *prefix, int line)
{
	for (const ConfigKey *k = table; k->name; k++) {
		char dotted[128];
		snprintf(dotted, sizeof dotted, "%s%s%s", prefix, prefix[0] ? "." : "", k->name);
		if (k->type == CFG_SECTION) {
			if (k->offset2 == NONE)
				apply_defaults(p, k->sub, dotted, line);
			continue;
		}
		if (k->def && k->type != CFG_CUSTOM && k->type != CFG_SECTION)
			parse_scalar_value(p, k, dotted, line, k->def, true);
	}
}

/* --- custom parsers ---------------------------------------------------------- */

static bool parse_vmid(Parser *p, const char *dotted, yaml_node_t *n, int64_t *ret)
{
	int64_t v;
	if (n->type != YAML_SCALAR_NODE || !is_plain(n) || parse_int64(scalar(n), &v) < 0) {
		perr(p, node_line(n), dotted, "expected a VMID (an integer), got %s",
		     n->type == YAML_SCALAR_NODE ? scalar(n) : node_kind(n));
		return false;
	}
	if (v < 100 || v > 999999999) {
		perr(p, node_line(n), dotted, "VMID %lld is out of range [100, 999999999]",
		     (long long)v);
		return false;
	}
	*ret = v;
	return true;
}

/* document currently being parsed (custom parsers need it to follow
 * node references; set by config_load_string, one parse per thread). */
static _Thread_local yaml_document_t *cur_doc;

static void parse_template_vmid(Parser *p, const ConfigKey *k, const char *dotted, yaml_node_t *n)
{
	(void)k;
	Config *c = p->cfg;
	if (n->type == YAML_SCALAR_NODE) {
		int64_t v;
		if (!parse_vmid(p, dotted, n, &v))
			return;
		c->proxmox.templates = calloc(1, sizeof(ConfigTemplate));
		if (!c->proxmox.templates) {
			perr(p, node_line(n), dotted, "out of memory");
			return;
		}
		c->proxmox.templates[0].vmid = v;
		c->proxmox.n_templates = 1;
		return;
	}
	if (n->type != YAML_MAPPING_NODE) {
		perr(p, node_line(n), dotted, "expected a VMID or a mapping node: VMID, got %s",
		     node_kind(n));
		return;
	}
	size_t cnt = (size_t)(n->data.mapping.pairs.top - n->data.mapping.pairs.start);
	if (cnt == 0 || cnt > 256) {
		perr(p, node_line(n), dotted, "expected 1 to 256 node: VMID pairs");
		return;
	}
	c->proxmox.templates = calloc(cnt, sizeof(ConfigTemplate));
	if (!c->proxmox.templates) {
		perr(p, node_line(n), dotted, "out of memory");
		return;
	}
	for (yaml_node_pair_t *pair = n->data.mapping.pairs.start; pair < n->data.mapping.pairs.top;
	     pair++) {
		yaml_node_t *kn = yaml_document_get_node(cur_doc, pair->key);
		yaml_node_t *vn = yaml_document_get_node(cur_doc, pair->value);
		if (!kn || !vn)
			continue;
		if (kn->type != YAML_SCALAR_NODE || !*scalar(kn)) {
			perr(p, node_line(kn), dotted, "node names must be strings");
			continue;
		}
		char sub[160];
		snprintf(sub, sizeof sub, "%s.%s", dotted, scalar(kn));
		for (size_t i = 0; i < c->proxmox.n_templates; i++)
			if (strcmp(c->proxmox.templates[i].node, scalar(kn)) == 0) {
				perr(p, node_line(kn), sub, "duplicate node");
				goto next;
			}
		int64_t v;
		if (!parse_vmid(p, sub, vn, &v))
			continue;
		char *node = strdup(scalar(kn));
		if (!node) {
			perr(p, node_line(kn), sub, "out of memory");
			continue;
		}
		c->proxmox.templates[c->proxmox.n_templates].node = node;
		c->proxmox.templates[c->proxmox.n_templates++].vmid = v;
	next:;
	}
}

static void parse_vmid_range(Parser *p, const ConfigKey *k, const char *dotted, yaml_node_t *n)
{
	(void)k;
	Config *c = p->cfg;
	if (n->type != YAML_SEQUENCE_NODE ||
	    n->data.sequence.items.top - n->data.sequence.items.start != 2) {
		perr(p, node_line(n), dotted, "expected a list of two VMIDs [low, high]");
		return;
	}
	int64_t lo, hi;
	yaml_node_t *a = yaml_document_get_node(cur_doc, n->data.sequence.items.start[0]);
	yaml_node_t *b = yaml_document_get_node(cur_doc, n->data.sequence.items.start[1]);
	if (!a || !b || !parse_vmid(p, dotted, a, &lo) || !parse_vmid(p, dotted, b, &hi))
		return;
	if (lo > hi) {
		perr(p, node_line(n), dotted, "low end %lld is above high end %lld", (long long)lo,
		     (long long)hi);
		return;
	}
	c->proxmox.vmid_lo = lo;
	c->proxmox.vmid_hi = hi;
}

static bool valid_node_name(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n > 63)
		return false;
	for (size_t i = 0; i < n; i++) {
		char ch = s[i];
		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		      (ch >= '0' && ch <= '9') || ch == '-' || ch == '_' || ch == '.'))
			return false;
	}
	return true;
}

static void parse_nodes(Parser *p, const ConfigKey *k, const char *dotted, yaml_node_t *n)
{
	(void)k;
	Config *c = p->cfg;
	if (n->type != YAML_SEQUENCE_NODE) {
		perr(p, node_line(n), dotted, "expected a list of node names, got %s",
		     node_kind(n));
		return;
	}
	size_t cnt = (size_t)(n->data.sequence.items.top - n->data.sequence.items.start);
	if (cnt == 0 || cnt > 256) {
		perr(p, node_line(n), dotted, "expected 1 to 256 node names");
		return;
	}
	c->proxmox.nodes = calloc(cnt + 1, sizeof(char *));
	if (!c->proxmox.nodes) {
		perr(p, node_line(n), dotted, "out of memory");
		return;
	}
	for (size_t i = 0; i < cnt; i++) {
		yaml_node_t *it = yaml_document_get_node(cur_doc, n->data.sequence.items.start[i]);
		if (!it)
			continue;
		if (it->type != YAML_SCALAR_NODE || !valid_node_name(scalar(it))) {
			perr(p, node_line(it), dotted, "invalid node name %s",
			     it->type == YAML_SCALAR_NODE ? scalar(it) : node_kind(it));
			continue;
		}
		for (size_t j = 0; j < c->proxmox.n_nodes; j++)
			if (strcmp(c->proxmox.nodes[j], scalar(it)) == 0) {
				perr(p, node_line(it), dotted, "node %s listed twice", scalar(it));
				goto next;
			}
		c->proxmox.nodes[c->proxmox.n_nodes] = strdup(scalar(it));
		if (!c->proxmox.nodes[c->proxmox.n_nodes]) {
			perr(p, node_line(it), dotted, "out of memory");
			continue;
		}
		c->proxmox.n_nodes++;
	next:;
	}
}

/* --- validators ------------------------------------------------------------------- */

static const char *check_url(const Config *c, const ConfigKey *k)
{
	const char *s = *field_str((Config *)c, k->offset);
	if (!str_startswith(s, "http://") && !str_startswith(s, "https://"))
		return "must start with http:// or https://";
	const char *host = strstr(s, "://") + 3;
	size_t hl = strcspn(host, "/?#");
	if (hl == 0)
		return "has no host";
	if (memchr(host, '@', hl))
		return "must not carry credentials (use the *_file keys)";
	for (const char *q = s; *q; q++)
		if ((unsigned char)*q <= ' ')
			return "must not contain spaces or control characters";
	return NULL;
}

static const char *check_token_id(const Config *c, const ConfigKey *k)
{
	const char *s = *field_str((Config *)c, k->offset);
	const char *at = strchr(s, '@'), *bang = strchr(s, '!');
	if (!at || !bang || at > bang || at == s || bang[1] == 0 || bang == at + 1)
		return "expected USER@REALM!TOKENID";
	for (const char *q = s; *q; q++)
		if ((unsigned char)*q <= ' ' || *q == '=')
			return "must not contain spaces, control characters or '='";
	return NULL;
}

static const char *check_pinned(const Config *c, const ConfigKey *k)
{
	const char *s = *field_str((Config *)c, k->offset);
	if (!str_startswith(s, "sha256//") || strlen(s) < 16)
		return "expected sha256//<base64 of the public key's SHA-256>";
	return NULL;
}

static bool parse_ipv4(const char *s, uint32_t *ret)
{
	struct in_addr a;
	if (inet_pton(AF_INET, s, &a) != 1)
		return false;
	*ret = ntohl(a.s_addr);
	return true;
}

static bool parse_cidr(const char *s, uint32_t *ret_net, int *ret_prefix)
{
	const char *slash = strchr(s, '/');
	if (!slash || slash - s > 15)
		return false;
	char ip[16];
	memcpy(ip, s, (size_t)(slash - s));
	ip[slash - s] = 0;
	int64_t pfx;
	uint32_t a;
	if (!parse_ipv4(ip, &a) || parse_int64(slash + 1, &pfx) < 0 || pfx < 8 || pfx > 30)
		return false;
	*ret_net = a;
	*ret_prefix = (int)pfx;
	return true;
}

static const char *check_cidr(const Config *c, const ConfigKey *k)
{
	const char *s = *field_str((Config *)c, k->offset);
	uint32_t net;
	int pfx;
	if (!parse_cidr(s, &net, &pfx))
		return "expected an IPv4 network such as 10.60.0.0/22 (prefix 8 to 30)";
	uint32_t mask = pfx == 0 ? 0 : 0xffffffffu << (32 - pfx);
	if (net & ~mask)
		return "has host bits set (write the network address)";
	return NULL;
}

static const char *check_ipv4(const Config *c, const ConfigKey *k)
{
	uint32_t a;
	if (!parse_ipv4(*field_str((Config *)c, k->offset), &a))
		return "expected an IPv4 address";
	return NULL;
}

static const char *check_listen(const Config *c, const ConfigKey *k)
{
	const char *s = *field_str((Config *)c, k->offset);
	const char *colon = strrchr(s, ':');
	if (!colon || colon == s)
		return "expected HOST:PORT, e.g. 127.0.0.1:9464";
	int64_t port;
	if (parse_int64(colon + 1, &port) < 0 || port < 1 || port > 65535)
		return "port must be 1 to 65535";
	return NULL;
}

static const char *check_provider(const Config *c, const ConfigKey *k)
{
	if (strcmp(*field_str((Config *)c, k->offset), "cloudflare") != 0)
		return "the only provider is cloudflare";
	return NULL;
}

static const char *check_dns_name(const Config *c, const ConfigKey *k)
{
	const char *s = *field_str((Config *)c, k->offset);
	size_t n = strlen(s);
	if (n > 253 || s[0] == '.' || s[n - 1] == '.' || !strchr(s, '.'))
		return "expected a DNS zone name such as example.net";
	for (const char *q = s; *q; q++)
		if (!((*q >= 'a' && *q <= 'z') || (*q >= '0' && *q <= '9') || *q == '-' ||
		      *q == '.'))
			return "expected a lower-case DNS zone name";
	return NULL;
}

static const char *check_zone_id(const Config *c, const ConfigKey *k)
{
	const char *s = *field_str((Config *)c, k->offset);
	if (strlen(s) != 32 || strspn(s, "0123456789abcdef") != 32)
		return "expected 32 lower-case hex digits";
	return NULL;
}

static const char *check_file_readable(const Config *c, const ConfigKey *k)
{
	const char *s = *field_str((Config *)c, k->offset);
	if (access(s, R_OK) < 0)
		return "file cannot be read";
	return NULL;
}

/* --- section finishers (cross-key rules) ------------------------------------------- */

static void finish_controller(Parser *p, Config *c)
{
	if (c->controller.lease_margin_ms == 0)
		c->controller.lease_margin_ms = c->controller.lease_ms / 4;
	if (c->controller.lease_margin_ms * 2 > c->controller.lease_ms)
		perr(p, key_line(p, "controller.lease_margin"), "controller.lease_margin",
		     "must be at most half of controller.lease");
}

static void finish_proxmox(Parser *p, Config *c)
{
	int line = key_line(p, "proxmox");
	if (c->proxmox.n_templates > 0 && c->proxmox.ostemplate) {
		perr(p, key_line(p, "proxmox.ostemplate"), "proxmox.ostemplate",
		     "set either template_vmid (clone mode) or ostemplate (create mode), not both");
		return;
	}
	if (c->proxmox.n_templates == 0 && !c->proxmox.ostemplate) {
		perr(p, line, "proxmox.template_vmid",
		     "one of template_vmid (clone mode) or ostemplate (create mode) is required");
		return;
	}
	for (size_t i = 0; i < c->proxmox.n_templates; i++) {
		int64_t v = c->proxmox.templates[i].vmid;
		if (c->proxmox.vmid_hi && v >= c->proxmox.vmid_lo && v <= c->proxmox.vmid_hi)
			perr(p, key_line(p, "proxmox.template_vmid"), "proxmox.template_vmid",
			     "template %lld lies inside vmid_range [%lld, %lld]", (long long)v,
			     (long long)c->proxmox.vmid_lo, (long long)c->proxmox.vmid_hi);
		if (c->proxmox.nodes && c->proxmox.templates[i].node) {
			bool found = false;
			for (size_t j = 0; j < c->proxmox.n_nodes; j++)
				found |=
				    strcmp(c->proxmox.nodes[j], c->proxmox.templates[i].node) == 0;
			if (!found)
				perr(p, key_line(p, "proxmox.template_vmid"),
				     "proxmox.template_vmid", "node %s is not in proxmox.nodes",
				     c->proxmox.templates[i].node);
		}
	}
}

static void finish_net(Parser *p, ConfigNet *n, const char *prefix)
{
	if (!n->cidr || !n->gateway)
		return;
	char key[64];
	if (!parse_cidr(n->cidr, &n->net, &n->prefix))
		return; /* reported by check_cidr */
	snprintf(key, sizeof key, "%s.gateway", prefix);
	if (!parse_ipv4(n->gateway, &n->gw))
		return;
	uint32_t mask = 0xffffffffu << (32 - n->prefix);
	if ((n->gw & mask) != n->net)
		perr(p, key_line(p, key), key, "%s is not inside %s", n->gateway, n->cidr);
	else if (n->gw == n->net || n->gw == (n->net | ~mask))
		perr(p, key_line(p, key), key, "%s is the network or broadcast address of %s",
		     n->gateway, n->cidr);
}

static void finish_network(Parser *p, Config *c)
{
	finish_net(p, &c->network, "network");
}

static void finish_network_dev(Parser *p, Config *c)
{
	finish_net(p, &c->network_dev, "network.dev");
}

static void finish_velocity(Parser *p, Config *c)
{
	(void)p;
	if (c->velocity.secret && sha256_hex(c->velocity.secret, strlen(c->velocity.secret),
	                                     c->velocity.secret_sha256) == 0)
		log_register_secret(c->velocity.secret_sha256);
}

/* --- the tables ------------------------------------------------------------------- */

#define MS_S 1000LL
#define MS_M (60 * MS_S)
#define MS_H (60 * MS_M)

static const ConfigKey rate_keys[] = {
    {.name = "proxmox",
     .type = CFG_INT,
     .offset = OFF(controller.rate.proxmox),
     .def = "20",
     .min = 1,
     .max = 10000,
     .doc = "Proxmox API requests per second (token bucket, burst = rate)"},
    {.name = "agent",
     .type = CFG_INT,
     .offset = OFF(controller.rate.agent),
     .def = "50",
     .min = 1,
     .max = 10000,
     .doc = "agent requests per second, all agents together"},
    {.name = "velocity",
     .type = CFG_INT,
     .offset = OFF(controller.rate.velocity),
     .def = "20",
     .min = 1,
     .max = 10000,
     .doc = "Velocity bridge requests per second"},
    {.name = "dns",
     .type = CFG_INT,
     .offset = OFF(controller.rate.dns),
     .def = "4",
     .min = 1,
     .max = 10000,
     .doc = "DNS API requests per second (Cloudflare allows 1200 per 5 minutes)"},
    {0},
};

static const ConfigKey controller_keys[] = {
    {.name = "workers",
     .type = CFG_INT,
     .offset = OFF(controller.workers),
     .def = "8",
     .min = 1,
     .max = 256,
     .doc = "worker threads; each has its own database connection and HTTP handles"},
    {.name = "resync",
     .type = CFG_DURATION,
     .offset = OFF(controller.resync_ms),
     .def = "30s",
     .min = MS_S,
     .max = 24 * MS_H,
     .doc = "period of the full pass: bulk observation, every server requeued"},
    {.name = "lease",
     .type = CFG_DURATION,
     .offset = OFF(controller.lease_ms),
     .def = "15s",
     .min = MS_S,
     .max = 10 * MS_M,
     .doc = "leader lease duration; renewed every third of it, a standby takes over when "
            "it expires"},
    {.name = "lease_margin",
     .type = CFG_DURATION,
     .offset = OFF(controller.lease_margin_ms),
     .min = 0,
     .max = 5 * MS_M,
     .doc = "no external mutating call is made unless the lease is still valid for this "
            "long (default: a quarter of lease)"},
    {.name = "drain_timeout",
     .type = CFG_DURATION,
     .offset = OFF(controller.drain_timeout_ms),
     .def = "20s",
     .min = 0,
     .max = 10 * MS_M,
     .doc = "on SIGTERM, how long in-flight work may finish (no new work starts)"},
    {.name = "metrics_listen",
     .type = CFG_STRING,
     .offset = OFF(controller.metrics_listen),
     .check = check_listen,
     .doc = "HOST:PORT for /metrics and /healthz; left out: no listener"},
    {.name = "rate",
     .type = CFG_SECTION,
     .offset2 = NONE,
     .sub = rate_keys,
     .doc = "global rate limits per external system"},
    {0},
};

static const ConfigKey proxmox_keys[] = {
    {.name = "url",
     .type = CFG_STRING,
     .offset = OFF(proxmox.url),
     .required = true,
     .check = check_url,
     .doc = "Proxmox VE API base, e.g. https://pve1.example.net:8006 (http:// allowed for "
            "tests)"},
    {.name = "token_id",
     .type = CFG_STRING,
     .offset = OFF(proxmox.token_id),
     .required = true,
     .check = check_token_id,
     .doc = "API token id, USER@REALM!TOKENID"},
    {.name = "token_secret_file",
     .type = CFG_SECRET_FILE,
     .offset = OFF(proxmox.token_secret_file),
     .offset2 = OFF(proxmox.token_secret),
     .required = true,
     .doc = "file holding the token secret (relative: from $CREDENTIALS_DIRECTORY)"},
    {.name = "ca_file",
     .type = CFG_FILE,
     .offset = OFF(proxmox.ca_file),
     .check = check_file_readable,
     .doc = "PEM CA bundle that signed the API's certificate"},
    {.name = "pinned_pubkey",
     .type = CFG_STRING,
     .offset = OFF(proxmox.pinned_pubkey),
     .check = check_pinned,
     .doc = "or pin the API's public key: sha256//BASE64"},
    {.name = "insecure",
     .type = CFG_BOOL,
     .offset = OFF(proxmox.insecure),
     .def = "false",
     .doc = "skip TLS verification (tests only)"},
    {.name = "template_vmid",
     .type = CFG_CUSTOM,
     .parse = parse_template_vmid,
     .type_doc = "VMID | {node: VMID, ...}",
     .doc = "clone mode: the template container (agent baked in), one VMID or one per node"},
    {.name = "ostemplate",
     .type = CFG_STRING,
     .offset = OFF(proxmox.ostemplate),
     .doc = "create mode: an OS template volume, e.g. local:vztmpl/debian-12-standard_12.7-1_"
            "amd64.tar.zst (not together with template_vmid)"},
    {.name = "storage",
     .type = CFG_STRING,
     .offset = OFF(proxmox.storage),
     .required = true,
     .doc = "storage for root disks"},
    {.name = "pool",
     .type = CFG_STRING,
     .offset = OFF(proxmox.pool),
     .doc = "resource pool for new containers"},
    {.name = "vmid_range",
     .type = CFG_CUSTOM,
     .parse = parse_vmid_range,
     .required = true,
     .type_doc = "[low, high]",
     .doc = "VMIDs the controller may allocate (inclusive)"},
    {.name = "max_tasks_per_node",
     .type = CFG_INT,
     .offset = OFF(proxmox.max_tasks_per_node),
     .def = "4",
     .min = 1,
     .max = 64,
     .doc = "Proxmox tasks the controller runs at once on one node"},
    {.name = "nodes",
     .type = CFG_CUSTOM,
     .parse = parse_nodes,
     .type_doc = "[node, ...]",
     .doc = "limit placement to these nodes (default: every online node)"},
    {0},
};

static const ConfigKey network_dev_keys[] = {
    {.name = "bridge",
     .type = CFG_STRING,
     .offset = OFF(network_dev.bridge),
     .required = true,
     .doc = "bridge for DevServer containers"},
    {.name = "cidr",
     .type = CFG_STRING,
     .offset = OFF(network_dev.cidr),
     .required = true,
     .check = check_cidr,
     .doc = "DevServer address pool"},
    {.name = "gateway",
     .type = CFG_STRING,
     .offset = OFF(network_dev.gateway),
     .required = true,
     .check = check_ipv4,
     .doc = "DevServer default gateway"},
    {0},
};

static const ConfigKey network_keys[] = {
    {.name = "bridge",
     .type = CFG_STRING,
     .offset = OFF(network.bridge),
     .required = true,
     .doc = "Proxmox bridge for net0"},
    {.name = "cidr",
     .type = CFG_STRING,
     .offset = OFF(network.cidr),
     .required = true,
     .check = check_cidr,
     .doc = "static address pool, allocated in the database"},
    {.name = "gateway",
     .type = CFG_STRING,
     .offset = OFF(network.gateway),
     .required = true,
     .check = check_ipv4,
     .doc = "default gateway (never allocated)"},
    {.name = "dev",
     .type = CFG_SECTION,
     .offset2 = OFF(has_network_dev),
     .sub = network_dev_keys,
     .finish = finish_network_dev,
     .doc = "optional override for DevServer: {bridge, cidr, gateway}"},
    {0},
};

static const ConfigKey agent_keys[] = {
    {.name = "port",
     .type = CFG_INT,
     .offset = OFF(agent.port),
     .def = "18888",
     .min = 1,
     .max = 65535,
     .doc = "the in-container agent's HTTP port"},
    {.name = "token_file",
     .type = CFG_SECRET_FILE,
     .offset = OFF(agent.token_file),
     .offset2 = OFF(agent.token),
     .doc = "bearer token for the agent (optional)"},
    {0},
};

static const ConfigKey velocity_keys[] = {
    {.name = "url",
     .type = CFG_STRING,
     .offset = OFF(velocity.url),
     .required = true,
     .check = check_url,
     .doc = "ZpackVelocityBridge base URL"},
    {.name = "secret_file",
     .type = CFG_SECRET_FILE,
     .offset = OFF(velocity.secret_file),
     .offset2 = OFF(velocity.secret),
     .required = true,
     .doc = "shared secret (X-Zpack-Secret carries its hex SHA-256)"},
    {0},
};

static const ConfigKey dns_keys[] = {
    {.name = "provider",
     .type = CFG_STRING,
     .offset = OFF(dns.provider),
     .def = "cloudflare",
     .check = check_provider,
     .doc = "DNS provider (cloudflare)"},
    {.name = "api_url",
     .type = CFG_STRING,
     .offset = OFF(dns.api_url),
     .def = "https://api.cloudflare.com/client/v4",
     .check = check_url,
     .doc = "API base URL"},
    {.name = "zone_id",
     .type = CFG_STRING,
     .offset = OFF(dns.zone_id),
     .required = true,
     .check = check_zone_id,
     .doc = "Cloudflare zone id"},
    {.name = "token_file",
     .type = CFG_SECRET_FILE,
     .offset = OFF(dns.token_file),
     .offset2 = OFF(dns.token),
     .required = true,
     .doc = "API token with DNS edit rights on the zone"},
    {.name = "zone_name",
     .type = CFG_STRING,
     .offset = OFF(dns.zone_name),
     .required = true,
     .check = check_dns_name,
     .doc = "the zone's name; records are <hostname>.<zone_name>"},
    {.name = "edge_ipv4",
     .type = CFG_STRING,
     .offset = OFF(dns.edge_ipv4),
     .required = true,
     .check = check_ipv4,
     .doc = "A record content: the public edge (Velocity) address"},
    {0},
};

static const ConfigKey top_keys[] = {
    {.name = "database",
     .type = CFG_STRING,
     .offset = OFF(database),
     .required = true,
     .doc = "libpq conninfo or URI (no password here: use ~/.pgpass or PGPASSFILE)"},
    {.name = "controller",
     .type = CFG_SECTION,
     .offset2 = NONE,
     .sub = controller_keys,
     .finish = finish_controller,
     .doc = "the runtime"},
    {.name = "proxmox",
     .type = CFG_SECTION,
     .offset2 = OFF(proxmox.enabled),
     .required = true,
     .sub = proxmox_keys,
     .finish = finish_proxmox,
     .doc = "the Proxmox VE cluster (container reconciler)"},
    {.name = "network",
     .type = CFG_SECTION,
     .offset2 = NONE,
     .required = true,
     .sub = network_keys,
     .finish = finish_network,
     .doc = "static IPs for containers"},
    {.name = "agent",
     .type = CFG_SECTION,
     .offset2 = OFF(agent.enabled),
     .sub = agent_keys,
     .doc = "the in-container agent (agent and backup reconcilers); left out: off"},
    {.name = "velocity",
     .type = CFG_SECTION,
     .offset2 = OFF(velocity.enabled),
     .sub = velocity_keys,
     .finish = finish_velocity,
     .doc = "the Velocity bridge (proxy reconciler); left out: off"},
    {.name = "dns",
     .type = CFG_SECTION,
     .offset2 = OFF(dns.enabled),
     .sub = dns_keys,
     .doc = "public DNS (dns reconciler); left out: off"},
    {0},
};

/* --- secrets and section post-processing ---------------------------------------------- */

/* Walks table again for sections that were parsed: reads secret files,
 * runs finishers, fills defaults of optional sections left out. */
static void post_process(Parser *p, const ConfigKey *table, const char *prefix)
{
	Config *c = p->cfg;
	for (const ConfigKey *k = table; k->name; k++) {
		char dotted[128];
		snprintf(dotted, sizeof dotted, "%s%s%s", prefix, prefix[0] ? "." : "", k->name);
		if (k->type == CFG_SECTION) {
			bool on = k->offset2 == NONE ? true : *field_bool(c, k->offset2);
			if (!on) {
				/* Off: sane defaults so the struct never holds zeros
				 * that look like settings. */
				apply_defaults(p, k->sub, dotted, 1);
				continue;
			}
			post_process(p, k->sub, dotted);
			if (k->finish)
				k->finish(p, c);
			continue;
		}
		if (k->type == CFG_SECRET_FILE && *field_str(c, k->offset) &&
		    !(p->flags & CONFIG_SKIP_SECRETS)) {
			char *secret = NULL;
			const char *path = *field_str(c, k->offset);
			int r = secret_read_file(path, &secret);
			if (r < 0) {
				perr(p, key_line(p, dotted), dotted,
				     "cannot read secret file %s: %s", path, strerror(-r));
				continue;
			}
			if (!*secret) {
				free(secret);
				perr(p, key_line(p, dotted), dotted, "secret file %s is empty",
				     path);
				continue;
			}
			log_register_secret(secret);
			*field_str(c, k->offset2) = secret;
		}
	}
}

/* Frees every string a table owns. */
static void free_table(Config *c, const ConfigKey *table)
{
	for (const ConfigKey *k = table; k->name; k++) {
		switch (k->type) {
		case CFG_SECTION:
			free_table(c, k->sub);
			break;
		case CFG_SECRET_FILE:
			if (*field_str(c, k->offset2)) {
				char *s = *field_str(c, k->offset2);
				explicit_bzero(s, strlen(s));
				free(s);
				*field_str(c, k->offset2) = NULL;
			}
			/* fallthrough */
		case CFG_STRING:
		case CFG_FILE:
			free(*field_str(c, k->offset));
			*field_str(c, k->offset) = NULL;
			break;
		default:
			break;
		}
	}
}

Config *config_free(Config *c)
{
	if (!c)
		return NULL;
	free_table(c, top_keys);
	for (size_t i = 0; i < c->proxmox.n_templates; i++)
		free(c->proxmox.templates[i].node);
	free(c->proxmox.templates);
	strv_free(c->proxmox.nodes);
	explicit_bzero(c->velocity.secret_sha256, sizeof c->velocity.secret_sha256);
	free(c->path);
	free(c);
	return NULL;
}

static const char *yaml_problem(yaml_parser_t *yp)
{
	return yp->problem ? yp->problem : "invalid YAML";
}

int config_load_string(const char *name, const char *yaml, unsigned flags, Config **ret,
                       char **ret_errors)
{
	Parser p = {.file = name, .flags = flags};
	yaml_parser_t yp;
	yaml_document_t doc;
	bool have_doc = false;
	int r = -EINVAL;

	p.cfg = calloc(1, sizeof(Config));
	if (!p.cfg)
		return -ENOMEM;
	p.cfg->path = strdup(name);

	if (!yaml_parser_initialize(&yp)) {
		config_free(p.cfg);
		return -ENOMEM;
	}
	yaml_parser_set_input_string(&yp, (const unsigned char *)yaml, strlen(yaml));
	if (!yaml_parser_load(&yp, &doc)) {
		(void)!buf_printf(&p.errors, "%s:%zu:%zu: YAML syntax error: %s\n", name,
		                  yp.problem_mark.line + 1, yp.problem_mark.column + 1,
		                  yaml_problem(&yp));
		p.n_errors++;
		goto out;
	}
	have_doc = true;
	yaml_node_t *root = yaml_document_get_root_node(&doc);
	if (!root) {
		perr(&p, 1, "(top level)", "the file is empty");
		goto out;
	}
	/* A second document is a mistake, not something to ignore. */
	yaml_document_t extra;
	if (yaml_parser_load(&yp, &extra)) {
		if (yaml_document_get_root_node(&extra))
			perr(&p, (int)yp.mark.line, "(top level)",
			     "only one YAML document is allowed");
		yaml_document_delete(&extra);
	} else {
		(void)!buf_printf(&p.errors, "%s:%zu:%zu: YAML syntax error: %s\n", name,
		                  yp.problem_mark.line + 1, yp.problem_mark.column + 1,
		                  yaml_problem(&yp));
		p.n_errors++;
	}
	if (root->type != YAML_MAPPING_NODE) {
		perr(&p, node_line(root), "(top level)", "expected a mapping of sections, got %s",
		     node_kind(root));
		goto out;
	}
	cur_doc = &doc;
	parse_map(&p, top_keys, "", &doc, root);
	if (p.n_errors == 0)
		post_process(&p, top_keys, "");
	cur_doc = NULL;
	if (p.n_errors == 0)
		r = 0;
out:
	if (have_doc)
		yaml_document_delete(&doc);
	yaml_parser_delete(&yp);
	for (size_t i = 0; i < p.n_lines; i++)
		free(p.lines[i].key);
	if (r < 0) {
		config_free(p.cfg);
		if (ret_errors)
			*ret_errors = buf_steal(&p.errors);
		buf_done(&p.errors);
		return r;
	}
	buf_done(&p.errors);
	*ret = p.cfg;
	return 0;
}

int config_load(const char *path, unsigned flags, Config **ret, char **ret_errors)
{
	_cleanup_free_ char *data = NULL;
	size_t len;
	int r = file_read_all(path, 1 << 20, &data, &len);
	if (r < 0) {
		if (ret_errors) {
			char *m = NULL;
			if (asprintf(&m, "%s: cannot read: %s\n", path, strerror(-r)) >= 0)
				*ret_errors = m;
		}
		return r;
	}
	if (strlen(data) != len) {
		if (ret_errors) {
			char *m = NULL;
			if (asprintf(&m, "%s:1: (top level): file contains a NUL byte\n", path) >=
			    0)
				*ret_errors = m;
		}
		return -EINVAL;
	}
	return config_load_string(path, data, flags, ret, ret_errors);
}

int64_t config_template_for_node(const Config *c, const char *node)
{
	for (size_t i = 0; i < c->proxmox.n_templates; i++) {
		const ConfigTemplate *t = &c->proxmox.templates[i];
		if (!t->node || (node && strcmp(t->node, node) == 0))
			return t->vmid;
	}
	return -1;
}

const ConfigNet *config_network_for_kind(const Config *c, const char *kind)
{
	if (c->has_network_dev && kind && strcmp(kind, "DevServer") == 0)
		return &c->network_dev;
	return &c->network;
}

/* --- reference ------------------------------------------------------------------------ */

static const char *type_name(const ConfigKey *k)
{
	switch (k->type) {
	case CFG_STRING:
		return "string";
	case CFG_INT:
		return "integer";
	case CFG_BOOL:
		return "true|false";
	case CFG_DURATION:
		return "duration";
	case CFG_SECRET_FILE:
		return "secret file";
	case CFG_FILE:
		return "file";
	case CFG_CUSTOM:
		return k->type_doc;
	case CFG_SECTION:
		return "section";
	default:
		return "?";
	}
}

static void print_table(FILE *f, const ConfigKey *table, const char *prefix)
{
	for (const ConfigKey *k = table; k->name; k++) {
		char dotted[128];
		snprintf(dotted, sizeof dotted, "%s%s%s", prefix, prefix[0] ? "." : "", k->name);
		fprintf(f, "%-30s %s", dotted, type_name(k));
		if (k->required)
			fprintf(f, ", required");
		if (k->def)
			fprintf(f, ", default %s", k->def);
		if (k->type == CFG_INT && (k->min || k->max))
			fprintf(f, ", %lld..%lld", (long long)k->min, (long long)k->max);
		if (k->type == CFG_DURATION && k->max) {
			char a[32], b[32];
			duration_format(k->min, a, sizeof a);
			duration_format(k->max, b, sizeof b);
			fprintf(f, ", %s..%s", a, b);
		}
		fprintf(f, "\n%-30s   %s\n", "", k->doc);
		if (k->type == CFG_SECTION)
			print_table(f, k->sub, dotted);
	}
}

void config_print_reference(FILE *f)
{
	print_table(f, top_keys, "");
}

static void walk_keys(const ConfigKey *table, const char *prefix,
                      void (*fn)(const char *dotted, void *userdata), void *userdata)
{
	for (const ConfigKey *k = table; k->name; k++) {
		char dotted[128];
		snprintf(dotted, sizeof dotted, "%s%s%s", prefix, prefix[0] ? "." : "", k->name);
		fn(dotted, userdata);
		if (k->type == CFG_SECTION)
			walk_keys(k->sub, dotted, fn, userdata);
	}
}

void config_foreach_key(void (*fn)(const char *dotted, void *userdata), void *userdata)
{
	walk_keys(top_keys, "", fn, userdata);
}
