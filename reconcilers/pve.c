/* pve.c - the Proxmox VE client. See pve.h for the contract and the error
 * table; contracts/README.md for the facts it is built on.
 *
 * Layout: pure helpers (strings, tags, identity, UPIDs), pure parsing
 * (envelope, errors, resources, config, status, tasks), form bodies, and
 * last the I/O: one request() that every call goes through. */
#include "pve.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "util.h"

/* --- small string helpers --------------------------------------------------- */

/* Copies src into dst (n bytes). 0 or -ENOBUFS (dst untouched then). */
static int copy_str(char *dst, size_t n, const char *src)
{
	size_t l = strlen(src);
	if (l >= n)
		return -ENOBUFS;
	memcpy(dst, src, l + 1);
	return 0;
}

/* Like copy_str but truncates (for messages). */
static void copy_trunc(char *dst, size_t n, const char *src, size_t len)
{
	if (!n)
		return;
	if (len >= n)
		len = n - 1;
	memcpy(dst, src, len);
	dst[len] = 0;
}

static int snprintf_checked(char *buf, size_t n, const char *fmt, ...) _printf_(3, 4);
static int snprintf_checked(char *buf, size_t n, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int r = vsnprintf(buf, n, fmt, ap);
	va_end(ap);
	if (r < 0)
		return -EINVAL;
	if ((size_t)r >= n)
		return -ENOBUFS;
	return 0;
}

const char *pve_run_state_to_string(PveRunState s)
{
	switch (s) {
	case PVE_RUN_RUNNING:
		return "running";
	case PVE_RUN_STOPPED:
		return "stopped";
	case PVE_RUN_OTHER:
		return "other";
	default:
		return "unknown";
	}
}

const char *pve_guest_type_to_string(PveGuestType t)
{
	switch (t) {
	case PVE_GUEST_LXC:
		return "lxc";
	case PVE_GUEST_QEMU:
		return "qemu";
	default:
		return "other";
	}
}

static PveRunState run_state_parse(const char *s)
{
	if (!s || !*s || strcmp(s, "unknown") == 0)
		return PVE_RUN_UNKNOWN;
	if (strcmp(s, "running") == 0)
		return PVE_RUN_RUNNING;
	if (strcmp(s, "stopped") == 0)
		return PVE_RUN_STOPPED;
	return PVE_RUN_OTHER;
}

/* --- tags ------------------------------------------------------------------- */

static bool is_tag_sep(char c)
{
	return c == ';' || c == ',' || c == ' ' || c == '\t' || c == '\n' || c == '\r' ||
	       c == '\v' || c == '\f';
}

/* Iterates the tags of a list: returns false at the end. */
static bool next_tag(const char **p, const char **ret_start, size_t *ret_len)
{
	const char *s = *p;
	while (*s && is_tag_sep(*s))
		s++;
	if (!*s) {
		*p = s;
		return false;
	}
	const char *e = s;
	while (*e && !is_tag_sep(*e))
		e++;
	*ret_start = s;
	*ret_len = (size_t)(e - s);
	*p = e;
	return true;
}

static bool tag_eq(const char *a, size_t alen, const char *b, size_t blen)
{
	return alen == blen && strncasecmp(a, b, alen) == 0;
}

bool pve_tag_valid(const char *tag)
{
	if (!tag || !*tag)
		return false;
	unsigned char c = (unsigned char)tolower((unsigned char)tag[0]);
	if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_'))
		return false;
	for (const char *p = tag + 1; *p; p++) {
		c = (unsigned char)tolower((unsigned char)*p);
		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-' ||
		      c == '+' || c == '.'))
			return false;
	}
	return true;
}

static int cmp_strp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

int pve_tags_normalize(const char *tags, char **ret)
{
	if (!tags)
		tags = "";
	size_t in_len = strlen(tags);
	if (in_len > PVE_MAX_TAGS_LEN)
		return -E2BIG;
	/* At most one tag per two input bytes. */
	size_t cap = in_len / 2 + 1, n = 0;
	_cleanup_free_ char **v = calloc(cap, sizeof *v);
	_cleanup_free_ char *store = malloc(in_len + 1);
	if (!v || !store)
		return -ENOMEM;
	char *w = store;
	const char *p = tags, *s;
	size_t l;
	while (next_tag(&p, &s, &l)) {
		for (size_t i = 0; i < l; i++)
			w[i] = (char)tolower((unsigned char)s[i]);
		w[l] = 0;
		if (n < cap)
			v[n++] = w;
		w += l + 1;
	}
	/* Sort, then drop duplicates (neighbours): O(n log n) on peer data. */
	qsort(v, n, sizeof *v, cmp_strp);
	Buf b = BUF_INIT;
	int r = buf_puts(&b, "");
	for (size_t i = 0; i < n && r >= 0; i++) {
		if (i && strcmp(v[i], v[i - 1]) == 0)
			continue;
		if (b.len)
			r = buf_puts(&b, ";");
		if (r >= 0)
			r = buf_puts(&b, v[i]);
	}
	if (r < 0) {
		buf_done(&b);
		return r;
	}
	*ret = buf_steal(&b);
	return *ret ? 0 : -ENOMEM;
}

static bool tags_contains_n(const char *tags, const char *tag, size_t tlen)
{
	const char *p = tags ? tags : "", *s;
	size_t l;
	while (next_tag(&p, &s, &l))
		if (tag_eq(s, l, tag, tlen))
			return true;
	return false;
}

bool pve_tags_contains(const char *tags, const char *tag)
{
	return tag && tags_contains_n(tags, tag, strlen(tag));
}

bool pve_tags_subset(const char *sub, const char *tags)
{
	const char *p = sub ? sub : "", *s;
	size_t l;
	while (next_tag(&p, &s, &l))
		if (!tags_contains_n(tags, s, l))
			return false;
	return true;
}

bool pve_tags_equal(const char *a, const char *b)
{
	return pve_tags_subset(a, b) && pve_tags_subset(b, a);
}

int pve_tags_union(const char *a, const char *b, char **ret)
{
	_cleanup_buf_ Buf t = BUF_INIT;
	int r = buf_printf(&t, "%s;%s", a ? a : "", b ? b : "");
	if (r < 0)
		return r;
	return pve_tags_normalize(t.data, ret);
}

int pve_tags_remove(const char *tags, const char *remove, char **ret)
{
	_cleanup_buf_ Buf t = BUF_INIT;
	int r = buf_puts(&t, "");
	if (r < 0)
		return r;
	const char *p = tags ? tags : "", *s;
	size_t l;
	while (next_tag(&p, &s, &l)) {
		if (tags_contains_n(remove, s, l))
			continue;
		r = buf_append(&t, s, l);
		if (r >= 0)
			r = buf_puts(&t, ";");
		if (r < 0)
			return r;
	}
	return pve_tags_normalize(t.data, ret);
}

/* --- identity --------------------------------------------------------------- */

static bool is_uid_char(char c)
{
	return isalnum((unsigned char)c) || c == '-' || c == '_';
}

int pve_identity_uid_tag(const char *uid, char *buf, size_t n)
{
	if (!uid || !*uid)
		return -EINVAL;
	for (const char *p = uid; *p; p++)
		if (!is_uid_char(*p))
			return -EINVAL;
	int r = snprintf_checked(buf, n, "%s-%s", PVE_TAG_MANAGED, uid);
	if (r < 0)
		return r;
	for (char *p = buf; *p; p++)
		*p = (char)tolower((unsigned char)*p);
	return pve_tag_valid(buf) ? 0 : -EINVAL;
}

int pve_identity_tags(const char *uid, char *buf, size_t n)
{
	char t[128];
	int r = pve_identity_uid_tag(uid, t, sizeof t);
	if (r < 0)
		return r;
	return snprintf_checked(buf, n, "%s;%s", PVE_TAG_MANAGED, t);
}

static bool single_line(const char *s)
{
	return s && !strpbrk(s, "\r\n");
}

int pve_identity_description(const char *uid, const char *owner, const char *name, char *buf,
                             size_t n)
{
	if (!uid || !*uid || !single_line(uid) || !single_line(owner) || !single_line(name))
		return -EINVAL;
	for (const char *p = uid; *p; p++)
		if (!is_uid_char(*p))
			return -EINVAL;
	return snprintf_checked(buf, n,
	                        PVE_DESC_UID_KEY "%s\nzlh:owner=%s\nzlh:name=%s\n"
	                                         "managed by zlh-controller\n",
	                        uid, owner, name);
}

/* Finds the next "zlh:uid=" token that starts at a boundary. */
static const char *find_uid_key(const char *desc)
{
	const size_t kl = strlen(PVE_DESC_UID_KEY);
	for (const char *p = desc; (p = strstr(p, PVE_DESC_UID_KEY)); p += kl)
		if (p == desc || !is_uid_char(p[-1]))
			return p + kl;
	return NULL;
}

bool pve_description_has_uid(const char *desc, const char *uid)
{
	if (!desc || !uid || !*uid)
		return false;
	size_t ul = strlen(uid);
	for (const char *p = desc; (p = find_uid_key(p));) {
		size_t l = 0;
		while (is_uid_char(p[l]))
			l++;
		if (l == ul && strncasecmp(p, uid, ul) == 0)
			return true;
	}
	return false;
}

int pve_description_uid(const char *desc, char *buf, size_t n)
{
	const char *p = desc ? find_uid_key(desc) : NULL;
	if (!p)
		return -ENOENT;
	size_t l = 0;
	while (is_uid_char(p[l]))
		l++;
	if (!l)
		return -ENOENT;
	if (l >= n)
		return -ENOBUFS;
	memcpy(buf, p, l);
	buf[l] = 0;
	return 0;
}

int pve_tags_uid(const char *tags, char *buf, size_t n)
{
	const char *p = tags ? tags : "", *s;
	size_t l;
	const size_t pl = strlen(PVE_TAG_MANAGED "-");
	while (next_tag(&p, &s, &l)) {
		if (l <= pl || strncasecmp(s, PVE_TAG_MANAGED "-", pl) != 0)
			continue;
		if (l - pl >= n)
			return -ENOBUFS;
		for (size_t i = 0; i < l - pl; i++)
			buf[i] = (char)tolower((unsigned char)s[pl + i]);
		buf[l - pl] = 0;
		return 0;
	}
	return -ENOENT;
}

int pve_net0_format(const char *bridge, const char *ip, int prefix, const char *gw,
                    const char *hwaddr, char *buf, size_t n)
{
	if (!bridge || !*bridge || !ip || !*ip || prefix < 0 || prefix > 32)
		return -EINVAL;
	for (const char *s = bridge; *s; s++)
		if (*s == ',' || *s == '=')
			return -EINVAL;
	char gwpart[80] = "", hwpart[48] = "";
	int r;
	if (gw && *gw && (r = snprintf_checked(gwpart, sizeof gwpart, ",gw=%s", gw)) < 0)
		return r;
	if (hwaddr && *hwaddr &&
	    (r = snprintf_checked(hwpart, sizeof hwpart, ",hwaddr=%s", hwaddr)) < 0)
		return r;
	return snprintf_checked(buf, n, "name=eth0,bridge=%s,ip=%s/%d%s%s", bridge, ip, prefix,
	                        gwpart, hwpart);
}

int pve_net0_parse(const char *net0, PveNet0 *ret)
{
	if (!net0)
		return -EINVAL;
	PveNet0 out = {0};
	const char *p = net0;
	while (*p) {
		const char *e = strchr(p, ',');
		size_t l = e ? (size_t)(e - p) : strlen(p);
		const char *eq = memchr(p, '=', l);
		if (!eq)
			return -EINVAL;
		size_t kl = (size_t)(eq - p), vl = l - kl - 1;
		char *dst = NULL;
		size_t dn = 0;
		if (kl == 4 && !strncmp(p, "name", 4))
			dst = out.name, dn = sizeof out.name;
		else if (kl == 6 && !strncmp(p, "bridge", 6))
			dst = out.bridge, dn = sizeof out.bridge;
		else if (kl == 2 && !strncmp(p, "ip", 2))
			dst = out.ip, dn = sizeof out.ip;
		else if (kl == 2 && !strncmp(p, "gw", 2))
			dst = out.gw, dn = sizeof out.gw;
		else if (kl == 6 && !strncmp(p, "hwaddr", 6))
			dst = out.hwaddr, dn = sizeof out.hwaddr;
		if (dst) {
			if (vl >= dn)
				return -EINVAL;
			memcpy(dst, eq + 1, vl);
			dst[vl] = 0;
		}
		p += l;
		if (*p == ',')
			p++;
	}
	*ret = out;
	return 0;
}

int pve_rootfs_size_bytes(const char *rootfs, int64_t *ret)
{
	if (!rootfs)
		return -ENOENT;
	const char *p = rootfs;
	const char *v = NULL;
	while (*p) {
		const char *e = strchr(p, ',');
		size_t l = e ? (size_t)(e - p) : strlen(p);
		if (l > 5 && strncmp(p, "size=", 5) == 0) {
			v = p + 5;
			break;
		}
		p += l;
		if (*p == ',')
			p++;
	}
	if (!v)
		return -ENOENT;
	char num[32];
	size_t l = strcspn(v, ",");
	if (l == 0 || l >= sizeof num)
		return -EINVAL;
	memcpy(num, v, l);
	num[l] = 0;
	double mult = 1;
	switch (num[l - 1]) {
	case 'K':
		mult = 1024.0;
		break;
	case 'M':
		mult = 1024.0 * 1024;
		break;
	case 'G':
		mult = 1024.0 * 1024 * 1024;
		break;
	case 'T':
		mult = 1024.0 * 1024 * 1024 * 1024;
		break;
	}
	if (mult != 1)
		num[--l] = 0;
	if (!l)
		return -EINVAL;
	for (size_t i = 0; i < l; i++)
		if (!isdigit((unsigned char)num[i]) && num[i] != '.')
			return -EINVAL;
	char *end;
	double d = strtod(num, &end);
	if (*end || d < 0 || d * mult > 9.0e18)
		return -EINVAL;
	*ret = (int64_t)llround(d * mult);
	return 0;
}

bool pve_features_nesting(const char *features)
{
	const char *p = features ? features : "";
	while (*p) {
		size_t l = strcspn(p, ",");
		if (l == 9 && strncmp(p, "nesting=1", 9) == 0)
			return true;
		p += l;
		if (*p == ',')
			p++;
	}
	return false;
}

/* --- UPID ------------------------------------------------------------------- */

/* Reads exactly-or-range hex digits up to ':'; returns the end or NULL. */
static const char *upid_hex(const char *p, size_t min, size_t max, uint64_t *ret)
{
	size_t l = 0;
	uint64_t v = 0;
	while (isxdigit((unsigned char)p[l])) {
		int c = tolower((unsigned char)p[l]);
		v = v * 16 + (uint64_t)(c <= '9' ? c - '0' : c - 'a' + 10);
		l++;
		if (l > max)
			return NULL;
	}
	if (l < min || p[l] != ':')
		return NULL;
	*ret = v;
	return p + l + 1;
}

/* Reads a field of [^:\s] (at least min chars) up to ':' into buf. */
static const char *upid_field(const char *p, size_t min, char *buf, size_t n)
{
	size_t l = 0;
	while (p[l] && p[l] != ':' && !isspace((unsigned char)p[l]))
		l++;
	if (l < min || p[l] != ':' || l >= n)
		return NULL;
	memcpy(buf, p, l);
	buf[l] = 0;
	return p + l + 1;
}

int pve_upid_parse(const char *upid, PveUpid *ret)
{
	if (!upid || strncmp(upid, "UPID:", 5) != 0)
		return -EINVAL;
	PveUpid u = {0};
	const char *p = upid + 5;
	/* node: [a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])? */
	size_t l = 0;
	while (isalnum((unsigned char)p[l]) || p[l] == '-')
		l++;
	if (!l || p[l] != ':' || l >= sizeof u.node || p[0] == '-' || p[l - 1] == '-')
		return -EINVAL;
	memcpy(u.node, p, l);
	p += l + 1;
	uint64_t pid, pstart, st;
	if (!(p = upid_hex(p, 8, 8, &pid)) || !(p = upid_hex(p, 8, 9, &pstart)) ||
	    !(p = upid_hex(p, 8, 8, &st)))
		return -EINVAL;
	if (!(p = upid_field(p, 1, u.type, sizeof u.type)) ||
	    !(p = upid_field(p, 0, u.id, sizeof u.id)) ||
	    !(p = upid_field(p, 1, u.user, sizeof u.user)))
		return -EINVAL;
	if (*p)
		return -EINVAL;
	u.pid = (uint32_t)pid;
	u.pstart = pstart;
	u.starttime = (int64_t)st;
	*ret = u;
	return 0;
}

bool pve_task_exitstatus_ok(const char *s)
{
	if (!s)
		return false;
	if (strcmp(s, "OK") == 0)
		return true;
	static const char w[] = "WARNINGS: ";
	if (strncmp(s, w, sizeof w - 1) != 0)
		return false;
	const char *n = s + sizeof w - 1;
	if (!*n)
		return false;
	for (; *n; n++)
		if (!isdigit((unsigned char)*n))
			return false;
	return true;
}

/* --- errors ----------------------------------------------------------------- */

static bool has(const char *m, const char *needle)
{
	return m && strstr(m, needle);
}

int pve_error_classify(long status, const char *m, PveOp op)
{
	if (!m)
		m = "";
	/* Texts first: Proxmox says most things with HTTP 500. */
	if (has(m, "already exists on node") ||
	    ((op == PVE_OP_CREATE || op == PVE_OP_CLONE) && has(m, "already exists")))
		return -EEXIST;
	if (has(m, "does not exist") || has(m, "no such task"))
		return -ENOENT;
	if (has(m, "detected modified configuration"))
		return -ESTALE;
	if (has(m, "disk is already at specified size"))
		return -EALREADY;
	if (has(m, "unable to shrink disk size"))
		return -ERANGE;
	if (has(m, " is locked") || has(m, "got timeout") || has(m, "container is running"))
		return -EBUSY;
	if (op == PVE_OP_START && has(m, "already running"))
		return -EALREADY;
	if (has(m, "not running")) {
		if (op == PVE_OP_STOP)
			return -EALREADY;
		if (op == PVE_OP_REBOOT)
			return -ESRCH;
	}
	switch (status) {
	case 400:
		return -EINVAL;
	case 401:
		return -EACCES;
	case 403:
		return -EPERM;
	case 404:
		return -ENOENT;
	case 429:
	case 503:
		return -EAGAIN;
	case 501:
		return -EOPNOTSUPP;
	case 595: /* pveproxy could not connect to the node: nothing was sent */
		return -ECONNREFUSED;
	case 502:
	case 504:
	case 596:
	case 597:
	case 599:
		return -EIO; /* a proxy lost the answer: outcome unknown */
	default:
		return -EREMOTEIO;
	}
}

static void err_reset(PveError *err)
{
	if (err)
		*err = (PveError){0};
}

static void err_set(PveError *err, long status, const char *msg)
{
	if (!err)
		return;
	*err = (PveError){.http_status = status};
	if (msg)
		copy_trunc(err->message, sizeof err->message, msg, strcspn(msg, "\n"));
}

int pve_response_parse(long status, const char *body, size_t len, PveOp op, json_t **ret_data,
                       PveError *err)
{
	json_error_t je;
	_cleanup_json_ json_t *root =
	    body && len ? json_loadb(body, len, JSON_DECODE_ANY, &je) : NULL;
	if (status >= 200 && status < 300) {
		json_t *data = json_is_object(root) ? json_object_get(root, "data") : NULL;
		if (!data) {
			err_set(err, status, "malformed response: no JSON object with \"data\"");
			return -EBADMSG;
		}
		err_reset(err);
		*ret_data = json_incref(data);
		return 0;
	}
	const char *msg = NULL;
	json_t *errors = NULL;
	if (json_is_object(root)) {
		msg = json_string_value(json_object_get(root, "message"));
		errors = json_object_get(root, "errors");
	}
	char fallback[64];
	if (!msg || !*msg || *msg == '\n') {
		if (json_is_object(errors) && json_object_size(errors))
			msg = "Parameter verification failed.";
		else {
			snprintf(fallback, sizeof fallback, "HTTP %ld", status);
			msg = fallback;
		}
	}
	err_set(err, status, msg);
	if (err && json_is_object(errors)) {
		Buf b = {.max = sizeof err->errors - 1};
		const char *k;
		json_t *v;
		json_object_foreach(errors, k, v)
		{
			const char *vs = json_string_value(v);
			size_t vl = vs ? strcspn(vs, "\n") : 0;
			if (buf_printf(&b, "%s%s: %.*s", b.len ? "; " : "", k, (int)vl,
			               vs ? vs : "") < 0)
				break;
		}
		if (b.data)
			copy_trunc(err->errors, sizeof err->errors, b.data, b.len);
		buf_done(&b);
	}
	/* Classify on the first line only. */
	char first[512];
	copy_trunc(first, sizeof first, msg, strcspn(msg, "\n"));
	return pve_error_classify(status, first, op);
}

/* --- JSON field readers (lenient about Perl's number/string typing) --------- */

static bool json_get_int(const json_t *o, const char *key, int64_t *ret)
{
	const json_t *v = json_object_get(o, key);
	if (json_is_integer(v)) {
		*ret = json_integer_value(v);
		return true;
	}
	if (json_is_real(v)) {
		double d = json_real_value(v);
		if (!isfinite(d) || d > 9.0e18 || d < -9.0e18)
			return false;
		*ret = (int64_t)llround(d);
		return true;
	}
	if (json_is_string(v))
		return parse_int64(json_string_value(v), ret) == 0;
	return false;
}

static int64_t json_int_or(const json_t *o, const char *key, int64_t dflt)
{
	int64_t v;
	return json_get_int(o, key, &v) ? v : dflt;
}

static bool json_bool_or(const json_t *o, const char *key, bool dflt)
{
	const json_t *v = json_object_get(o, key);
	if (json_is_boolean(v))
		return json_is_true(v);
	int64_t i;
	if (json_get_int(o, key, &i))
		return i != 0;
	return dflt;
}

static const char *json_str(const json_t *o, const char *key)
{
	return json_string_value(json_object_get(o, key));
}

/* Copies an optional string field into a fixed buffer; too long = -EBADMSG. */
static int jfield_copy(const json_t *o, const char *key, char *dst, size_t n)
{
	const char *s = json_str(o, key);
	if (!s) {
		dst[0] = 0;
		return 0;
	}
	return copy_str(dst, n, s) < 0 ? -EBADMSG : 0;
}

/* Duplicates an optional string field (bounded); absent = NULL. */
static int jfield_dup(const json_t *o, const char *key, size_t max, char **ret)
{
	const char *s = json_str(o, key);
	*ret = NULL;
	if (!s)
		return 0;
	if (strlen(s) > max)
		return -EBADMSG;
	*ret = strdup(s);
	return *ret ? 0 : -ENOMEM;
}

/* --- resources ---------------------------------------------------------------- */

static void guest_clear(PveGuest *g)
{
	free(g->name);
	free(g->tags);
	*g = (PveGuest){0};
}

void pve_resources_clear(PveResources *res)
{
	if (!res)
		return;
	for (size_t i = 0; i < res->n_guests; i++)
		guest_clear(&res->guests[i]);
	free(res->guests);
	free(res->nodes);
	*res = (PveResources){0};
}

static int parse_guest(const json_t *o, PveGuestType type, PveGuest *ret)
{
	PveGuest g = {.type = type};
	int r;
	if (!json_get_int(o, "vmid", &g.vmid)) {
		/* "id" is "lxc/100" */
		const char *id = json_str(o, "id");
		const char *slash = id ? strchr(id, '/') : NULL;
		if (!slash || parse_int64(slash + 1, &g.vmid) < 0)
			return -EBADMSG;
	}
	if (g.vmid < PVE_VMID_MIN || g.vmid > PVE_VMID_MAX)
		return -EBADMSG;
	if (!json_str(o, "node") || (r = jfield_copy(o, "node", g.node, sizeof g.node)) < 0)
		return -EBADMSG;
	g.status = run_state_parse(json_str(o, "status"));
	if ((r = jfield_copy(o, "lock", g.lock, sizeof g.lock)) < 0)
		return r;
	g.template_ = json_bool_or(o, "template", false);
	g.mem = json_int_or(o, "mem", -1);
	g.maxmem = json_int_or(o, "maxmem", -1);
	g.maxdisk = json_int_or(o, "maxdisk", -1);
	g.maxcpu = json_int_or(o, "maxcpu", -1);
	g.uptime = json_int_or(o, "uptime", -1);
	if ((r = jfield_dup(o, "name", 1024, &g.name)) < 0)
		return r;
	r = pve_tags_normalize(json_str(o, "tags"), &g.tags);
	if (r < 0) {
		free(g.name);
		return r == -ENOMEM ? r : -EBADMSG;
	}
	*ret = g;
	return 0;
}

static int parse_node(const json_t *o, PveNode *ret)
{
	PveNode n = {0};
	const char *name = json_str(o, "node");
	if (!name || !*name || copy_str(n.node, sizeof n.node, name) < 0)
		return -EBADMSG;
	const char *st = json_str(o, "status");
	n.status = !st                          ? PVE_NODE_UNKNOWN
	           : strcmp(st, "online") == 0  ? PVE_NODE_ONLINE
	           : strcmp(st, "offline") == 0 ? PVE_NODE_OFFLINE
	                                        : PVE_NODE_UNKNOWN;
	n.mem = json_int_or(o, "mem", -1);
	n.maxmem = json_int_or(o, "maxmem", -1);
	*ret = n;
	return 0;
}

int pve_parse_resources(const json_t *data, PveResources *res)
{
	if (!json_is_array(data))
		return -EBADMSG;
	size_t n_g = 0, n_n = 0, i;
	const json_t *o;
	json_array_foreach(data, i, o)
	{
		const char *t = json_str(o, "type");
		if (!t)
			return -EBADMSG;
		if (!strcmp(t, "lxc") || !strcmp(t, "qemu"))
			n_g++;
		else if (!strcmp(t, "node"))
			n_n++;
	}
	if (res->n_guests + n_g > PVE_MAX_GUESTS || res->n_nodes + n_n > PVE_MAX_NODES)
		return -E2BIG;
	PveGuest *g = calloc(res->n_guests + n_g + 1, sizeof *g);
	PveNode *nd = calloc(res->n_nodes + n_n + 1, sizeof *nd);
	if (!g || !nd) {
		free(g);
		free(nd);
		return -ENOMEM;
	}
	size_t ng = 0, nn = 0;
	int r = 0;
	json_array_foreach(data, i, o)
	{
		const char *t = json_str(o, "type");
		if (!strcmp(t, "lxc") || !strcmp(t, "qemu"))
			r = parse_guest(o, t[0] == 'l' ? PVE_GUEST_LXC : PVE_GUEST_QEMU,
			                &g[res->n_guests + ng++]);
		else if (!strcmp(t, "node"))
			r = parse_node(o, &nd[res->n_nodes + nn++]);
		if (r < 0) {
			if (t[0] == 'l' || t[0] == 'q')
				ng--;
			break;
		}
	}
	if (r < 0) {
		for (size_t k = 0; k < ng; k++)
			guest_clear(&g[res->n_guests + k]);
		free(g);
		free(nd);
		return r;
	}
	/* Move the old entries over (shallow: ownership moves with them). */
	if (res->n_guests)
		memcpy(g, res->guests, res->n_guests * sizeof *g);
	if (res->n_nodes)
		memcpy(nd, res->nodes, res->n_nodes * sizeof *nd);
	free(res->guests);
	free(res->nodes);
	res->guests = g;
	res->nodes = nd;
	res->n_guests += ng;
	res->n_nodes += nn;
	return 0;
}

const PveGuest *pve_resources_find_guest(const PveResources *res, int64_t vmid)
{
	for (size_t i = 0; res && i < res->n_guests; i++)
		if (res->guests[i].vmid == vmid)
			return &res->guests[i];
	return NULL;
}

const PveNode *pve_resources_find_node(const PveResources *res, const char *node)
{
	for (size_t i = 0; res && node && i < res->n_nodes; i++)
		if (strcmp(res->nodes[i].node, node) == 0)
			return &res->nodes[i];
	return NULL;
}

/* --- config, status, task ----------------------------------------------------- */

void pve_ct_config_clear(PveCtConfig *c)
{
	if (!c)
		return;
	free(c->description);
	free(c->tags);
	free(c->net0);
	free(c->rootfs);
	free(c->features);
	*c = (PveCtConfig){0};
}

int pve_parse_config(const json_t *data, PveCtConfig *ret)
{
	if (!json_is_object(data))
		return -EBADMSG;
	_cleanup_(pve_ct_config_clear) PveCtConfig c = {0};
	int r;
	if ((r = jfield_copy(data, "digest", c.digest, sizeof c.digest)) < 0 ||
	    (r = jfield_copy(data, "hostname", c.hostname, sizeof c.hostname)) < 0 ||
	    (r = jfield_copy(data, "lock", c.lock, sizeof c.lock)) < 0 ||
	    (r = jfield_dup(data, "description", 65536, &c.description)) < 0 ||
	    (r = jfield_dup(data, "net0", 4096, &c.net0)) < 0 ||
	    (r = jfield_dup(data, "rootfs", 4096, &c.rootfs)) < 0 ||
	    (r = jfield_dup(data, "features", 1024, &c.features)) < 0)
		return r;
	r = pve_tags_normalize(json_str(data, "tags"), &c.tags);
	if (r < 0)
		return r == -ENOMEM ? r : -EBADMSG;
	c.cores = json_int_or(data, "cores", 0);
	c.memory = json_int_or(data, "memory", 512);
	c.swap = json_int_or(data, "swap", 512);
	c.unprivileged = json_bool_or(data, "unprivileged", false);
	c.template_ = json_bool_or(data, "template", false);
	*ret = c;
	c = (PveCtConfig){0};
	return 0;
}

int pve_parse_status(const json_t *data, PveCtStatus *ret)
{
	if (!json_is_object(data))
		return -EBADMSG;
	PveCtStatus s = {0};
	int r = jfield_copy(data, "lock", s.lock, sizeof s.lock);
	if (r < 0)
		return r;
	s.status = run_state_parse(json_str(data, "status"));
	s.uptime = json_int_or(data, "uptime", -1);
	s.maxmem = json_int_or(data, "maxmem", -1);
	*ret = s;
	return 0;
}

int pve_parse_task_status(const json_t *data, PveTaskStatus *ret)
{
	if (!json_is_object(data))
		return -EBADMSG;
	const char *st = json_str(data, "status");
	if (!st)
		return -EBADMSG;
	PveTaskStatus t = {0};
	if (strcmp(st, "running") == 0) {
		t.running = true;
	} else if (strcmp(st, "stopped") == 0) {
		const char *ex = json_str(data, "exitstatus");
		if (!ex)
			ex = "unknown (no exitstatus)";
		copy_trunc(t.exitstatus, sizeof t.exitstatus, ex, strlen(ex));
		t.ok = pve_task_exitstatus_ok(ex);
	} else
		return -EBADMSG;
	*ret = t;
	return 0;
}

/* --- form bodies ---------------------------------------------------------------- */

int pve_form_add(Buf *b, const char *key, const char *value)
{
	int r = 0;
	if (b->len)
		r = buf_puts(b, "&");
	if (r >= 0)
		r = http_urlencode(b, key);
	if (r >= 0)
		r = buf_puts(b, "=");
	if (r >= 0)
		r = http_urlencode(b, value);
	return r;
}

int pve_form_add_int(Buf *b, const char *key, int64_t value)
{
	char v[32];
	snprintf(v, sizeof v, "%" PRId64, value);
	return pve_form_add(b, key, v);
}

int pve_form_add_bool(Buf *b, const char *key, bool value)
{
	return pve_form_add(b, key, value ? "1" : "0");
}

static bool vmid_ok(int64_t v)
{
	return v >= PVE_VMID_MIN && v <= PVE_VMID_MAX;
}

/* Adds key=value when value is non-NULL. */
static int form_opt(Buf *b, const char *key, const char *value)
{
	return value ? pve_form_add(b, key, value) : 0;
}

static int tags_ok(const char *tags)
{
	if (!tags)
		return 0;
	const char *p = tags, *s;
	size_t l;
	char t[256];
	while (next_tag(&p, &s, &l)) {
		if (l >= sizeof t)
			return -EINVAL;
		memcpy(t, s, l);
		t[l] = 0;
		if (!pve_tag_valid(t))
			return -EINVAL;
	}
	return 0;
}

int pve_create_body(const PveCreateParams *p, Buf *b)
{
	if (!vmid_ok(p->vmid) || !p->ostemplate || !*p->ostemplate || p->cores < 0 ||
	    (p->memory_mib && p->memory_mib < 16) || tags_ok(p->tags) < 0 ||
	    (p->description && strlen(p->description) > PVE_MAX_DESCRIPTION))
		return -EINVAL;
	int r;
	if ((r = pve_form_add_int(b, "vmid", p->vmid)) < 0 ||
	    (r = pve_form_add(b, "ostemplate", p->ostemplate)) < 0 ||
	    (r = form_opt(b, "hostname", p->hostname)) < 0 ||
	    (r = form_opt(b, "description", p->description)) < 0 ||
	    (r = form_opt(b, "tags", p->tags)) < 0)
		return r;
	if (p->cores && (r = pve_form_add_int(b, "cores", p->cores)) < 0)
		return r;
	if (p->memory_mib && (r = pve_form_add_int(b, "memory", p->memory_mib)) < 0)
		return r;
	if (p->swap_mib >= 0 && (r = pve_form_add_int(b, "swap", p->swap_mib)) < 0)
		return r;
	if ((r = form_opt(b, "rootfs", p->rootfs)) < 0 || (r = form_opt(b, "net0", p->net0)) < 0 ||
	    (r = pve_form_add_bool(b, "unprivileged", p->unprivileged)) < 0 ||
	    (r = form_opt(b, "features", p->features)) < 0 ||
	    (r = pve_form_add_bool(b, "start", p->start)) < 0 ||
	    (r = form_opt(b, "pool", p->pool)) < 0)
		return r;
	return 0;
}

int pve_clone_body(const PveCloneParams *p, Buf *b)
{
	if (!vmid_ok(p->newid) || (p->storage && !p->full) ||
	    (p->description && strlen(p->description) > PVE_MAX_DESCRIPTION))
		return -EINVAL;
	int r;
	if ((r = pve_form_add_int(b, "newid", p->newid)) < 0 ||
	    (r = form_opt(b, "hostname", p->hostname)) < 0 ||
	    (r = pve_form_add_bool(b, "full", p->full)) < 0 ||
	    (r = form_opt(b, "storage", p->storage)) < 0 ||
	    (r = form_opt(b, "pool", p->pool)) < 0 ||
	    (r = form_opt(b, "description", p->description)) < 0)
		return r;
	return 0;
}

int pve_config_body(const PveConfigUpdate *u, Buf *b)
{
	if (u->cores < 0 || (u->memory_mib && u->memory_mib < 16) || tags_ok(u->tags) < 0 ||
	    (u->description && strlen(u->description) > PVE_MAX_DESCRIPTION) ||
	    (u->digest && strlen(u->digest) > 40))
		return -EINVAL;
	if (!u->cores && !u->memory_mib && u->swap_mib < 0 && !u->hostname && !u->tags &&
	    !u->description && !u->net0 && !u->features && !u->delete_keys)
		return -EINVAL; /* nothing to change */
	int r;
	if (u->cores && (r = pve_form_add_int(b, "cores", u->cores)) < 0)
		return r;
	if (u->memory_mib && (r = pve_form_add_int(b, "memory", u->memory_mib)) < 0)
		return r;
	if (u->swap_mib >= 0 && (r = pve_form_add_int(b, "swap", u->swap_mib)) < 0)
		return r;
	if ((r = form_opt(b, "hostname", u->hostname)) < 0 ||
	    (r = form_opt(b, "tags", u->tags)) < 0 ||
	    (r = form_opt(b, "description", u->description)) < 0 ||
	    (r = form_opt(b, "net0", u->net0)) < 0 ||
	    (r = form_opt(b, "features", u->features)) < 0 ||
	    (r = form_opt(b, "delete", u->delete_keys)) < 0 ||
	    (r = form_opt(b, "digest", u->digest)) < 0)
		return r;
	return 0;
}

/* --- the client ------------------------------------------------------------------ */

struct PveClient {
	HttpClient *http;
	char *base; /* "<url>/api2/json" */
	char *auth; /* "Authorization: PVEAPIToken=..." (secret: never logged) */
};

PveClient *pve_client_free(PveClient *c)
{
	if (!c)
		return NULL;
	http_client_free(c->http);
	free(c->base);
	if (c->auth) {
		explicit_bzero(c->auth, strlen(c->auth));
		free(c->auth);
	}
	free(c);
	return NULL;
}

PveClient *pve_client_new(const PveClientOptions *opts)
{
	if (!opts || !opts->url || !*opts->url || !opts->token_id || !*opts->token_id ||
	    !opts->token_secret || !*opts->token_secret || strpbrk(opts->token_id, "\r\n") ||
	    strpbrk(opts->token_secret, "\r\n"))
		return NULL;
	_cleanup_(pve_client_freep) PveClient *c = calloc(1, sizeof *c);
	if (!c)
		return NULL;
	HttpOptions ho = opts->http;
	if (!ho.max_body)
		ho.max_body = PVE_MAX_BODY;
	c->http = http_client_new(&ho);
	size_t ul = strlen(opts->url);
	while (ul && opts->url[ul - 1] == '/')
		ul--;
	if (asprintf(&c->base, "%.*s/api2/json", (int)ul, opts->url) < 0)
		c->base = NULL;
	if (asprintf(&c->auth, "Authorization: PVEAPIToken=%s=%s", opts->token_id,
	             opts->token_secret) < 0)
		c->auth = NULL;
	if (!c->http || !c->base || !c->auth)
		return NULL;
	return TAKE_PTR(c);
}

/* Performs one call. path is already encoded; query (GET/DELETE) and body
 * (POST/PUT) may be NULL. *ret_data new on success. */
static int request(PveClient *c, const char *method, const char *path, const char *query,
                   const char *body, PveOp op, json_t **ret_data, PveError *err)
{
	_cleanup_free_ char *url = NULL;
	if (asprintf(&url, "%s%s%s%s", c->base, path, query && *query ? "?" : "",
	             query ? query : "") < 0)
		return -ENOMEM;
	bool mutating = strcmp(method, "GET") != 0;
	const char *headers[] = {
	    c->auth,
	    "Accept: application/json",
	    body ? "Content-Type: application/x-www-form-urlencoded" : NULL,
	    NULL,
	};
	HttpResponse resp = {.retry_after_s = -1};
	int r = http_request(c->http, method, url, headers, body, body ? strlen(body) : 0, mutating,
	                     &resp);
	if (r < 0) {
		err_set(err, 0, resp.error[0] ? resp.error : strerror(-r));
		log_debug("pve: %s %s: transport error: %s", method, path, resp.error);
		http_response_clear(&resp);
		return r;
	}
	json_t *data = NULL;
	r = pve_response_parse(resp.status, resp.body.data, resp.body.len, op, &data, err);
	log_debug("pve: %s %s -> %ld (%d)", method, path, resp.status, r);
	http_response_clear(&resp);
	if (r < 0)
		return r;
	*ret_data = data;
	return 0;
}

/* Encodes a node name for a path; refuses what cannot be a node. */
static int node_ok(const char *node)
{
	if (!node || !*node || strlen(node) >= PVE_NODE_MAX)
		return -EINVAL;
	for (const char *p = node; *p; p++)
		if (!isalnum((unsigned char)*p) && *p != '-' && *p != '.')
			return -EINVAL;
	return 0;
}

/* Calls that return a UPID string. */
static int upid_call(PveClient *c, const char *method, const char *path, const char *query,
                     const char *body, PveOp op, bool null_ok, char **ret_upid, PveError *err)
{
	_cleanup_json_ json_t *data = NULL;
	int r = request(c, method, path, query, body, op, &data, err);
	if (r < 0)
		return r;
	if (json_is_null(data) && null_ok) {
		if (ret_upid)
			*ret_upid = NULL;
		return 0;
	}
	const char *s = json_string_value(data);
	PveUpid u;
	if (!s || strlen(s) >= PVE_UPID_MAX || pve_upid_parse(s, &u) < 0) {
		err_set(err, 200, "malformed response: data is not a UPID");
		return -EBADMSG;
	}
	if (ret_upid) {
		char *d = strdup(s);
		if (!d)
			return -ENOMEM;
		*ret_upid = d;
	}
	return 0;
}

static int fail_einval(PveError *err, const char *what)
{
	err_set(err, 0, what);
	return -EINVAL;
}

int pve_cluster_resources(PveClient *c, PveResources *ret, PveError *err)
{
	PveResources res = {0};
	static const char *const types[] = {"type=vm", "type=node"};
	for (size_t i = 0; i < ELEMENTSOF(types); i++) {
		_cleanup_json_ json_t *data = NULL;
		int r = request(c, "GET", "/cluster/resources", types[i], NULL, PVE_OP_READ, &data,
		                err);
		if (r >= 0) {
			r = pve_parse_resources(data, &res);
			if (r < 0)
				err_set(err, 200, "malformed /cluster/resources entry");
		}
		if (r < 0) {
			pve_resources_clear(&res);
			return r;
		}
	}
	*ret = res;
	return 0;
}

int pve_create_lxc(PveClient *c, const char *node, const PveCreateParams *p, char **ret_upid,
                   PveError *err)
{
	_cleanup_buf_ Buf body = BUF_INIT;
	char path[128];
	if (node_ok(node) < 0 || pve_create_body(p, &body) < 0)
		return fail_einval(err, "invalid create parameters");
	snprintf(path, sizeof path, "/nodes/%s/lxc", node);
	return upid_call(c, "POST", path, NULL, body.data, PVE_OP_CREATE, false, ret_upid, err);
}

int pve_clone_lxc(PveClient *c, const char *node, int64_t template_vmid, const PveCloneParams *p,
                  char **ret_upid, PveError *err)
{
	_cleanup_buf_ Buf body = BUF_INIT;
	char path[160];
	if (node_ok(node) < 0 || !vmid_ok(template_vmid) || pve_clone_body(p, &body) < 0)
		return fail_einval(err, "invalid clone parameters");
	snprintf(path, sizeof path, "/nodes/%s/lxc/%" PRId64 "/clone", node, template_vmid);
	return upid_call(c, "POST", path, NULL, body.data, PVE_OP_CLONE, false, ret_upid, err);
}

int pve_get_config(PveClient *c, const char *node, int64_t vmid, PveCtConfig *ret, PveError *err)
{
	char path[160];
	if (node_ok(node) < 0 || !vmid_ok(vmid))
		return fail_einval(err, "invalid node or vmid");
	snprintf(path, sizeof path, "/nodes/%s/lxc/%" PRId64 "/config", node, vmid);
	_cleanup_json_ json_t *data = NULL;
	int r = request(c, "GET", path, NULL, NULL, PVE_OP_READ, &data, err);
	if (r < 0)
		return r;
	r = pve_parse_config(data, ret);
	if (r < 0)
		err_set(err, 200, "malformed config response");
	return r;
}

int pve_put_config(PveClient *c, const char *node, int64_t vmid, const PveConfigUpdate *u,
                   PveError *err)
{
	_cleanup_buf_ Buf body = BUF_INIT;
	char path[160];
	if (node_ok(node) < 0 || !vmid_ok(vmid) || pve_config_body(u, &body) < 0)
		return fail_einval(err, "invalid config parameters");
	snprintf(path, sizeof path, "/nodes/%s/lxc/%" PRId64 "/config", node, vmid);
	_cleanup_json_ json_t *data = NULL;
	return request(c, "PUT", path, NULL, body.data, PVE_OP_CONFIG, &data, err);
}

int pve_resize(PveClient *c, const char *node, int64_t vmid, int64_t size_gib, char **ret_upid,
               PveError *err)
{
	_cleanup_buf_ Buf body = BUF_INIT;
	char path[160], size[32];
	if (node_ok(node) < 0 || !vmid_ok(vmid) || size_gib <= 0 || size_gib > (1 << 20))
		return fail_einval(err, "invalid resize parameters");
	snprintf(size, sizeof size, "%" PRId64 "G", size_gib);
	if (pve_form_add(&body, "disk", "rootfs") < 0 || pve_form_add(&body, "size", size) < 0)
		return -ENOMEM;
	snprintf(path, sizeof path, "/nodes/%s/lxc/%" PRId64 "/resize", node, vmid);
	return upid_call(c, "PUT", path, NULL, body.data, PVE_OP_RESIZE, true, ret_upid, err);
}

int pve_status_current(PveClient *c, const char *node, int64_t vmid, PveCtStatus *ret,
                       PveError *err)
{
	char path[160];
	if (node_ok(node) < 0 || !vmid_ok(vmid))
		return fail_einval(err, "invalid node or vmid");
	snprintf(path, sizeof path, "/nodes/%s/lxc/%" PRId64 "/status/current", node, vmid);
	_cleanup_json_ json_t *data = NULL;
	int r = request(c, "GET", path, NULL, NULL, PVE_OP_READ, &data, err);
	if (r < 0)
		return r;
	r = pve_parse_status(data, ret);
	if (r < 0)
		err_set(err, 200, "malformed status response");
	return r;
}

static int power_call(PveClient *c, const char *node, int64_t vmid, const char *what,
                      const char *body, PveOp op, char **ret_upid, PveError *err)
{
	char path[160];
	if (node_ok(node) < 0 || !vmid_ok(vmid))
		return fail_einval(err, "invalid node or vmid");
	snprintf(path, sizeof path, "/nodes/%s/lxc/%" PRId64 "/status/%s", node, vmid, what);
	return upid_call(c, "POST", path, NULL, body ? body : "", op, false, ret_upid, err);
}

int pve_start(PveClient *c, const char *node, int64_t vmid, char **ret_upid, PveError *err)
{
	return power_call(c, node, vmid, "start", NULL, PVE_OP_START, ret_upid, err);
}

int pve_shutdown(PveClient *c, const char *node, int64_t vmid, int64_t timeout_s, bool force_stop,
                 char **ret_upid, PveError *err)
{
	_cleanup_buf_ Buf body = BUF_INIT;
	if (timeout_s < 0)
		return fail_einval(err, "invalid shutdown timeout");
	if (pve_form_add_int(&body, "timeout", timeout_s) < 0 ||
	    pve_form_add_bool(&body, "forceStop", force_stop) < 0)
		return -ENOMEM;
	return power_call(c, node, vmid, "shutdown", body.data, PVE_OP_STOP, ret_upid, err);
}

int pve_stop(PveClient *c, const char *node, int64_t vmid, char **ret_upid, PveError *err)
{
	return power_call(c, node, vmid, "stop", NULL, PVE_OP_STOP, ret_upid, err);
}

int pve_reboot(PveClient *c, const char *node, int64_t vmid, char **ret_upid, PveError *err)
{
	return power_call(c, node, vmid, "reboot", NULL, PVE_OP_REBOOT, ret_upid, err);
}

int pve_delete(PveClient *c, const char *node, int64_t vmid, bool force, char **ret_upid,
               PveError *err)
{
	char path[160];
	if (node_ok(node) < 0 || !vmid_ok(vmid))
		return fail_einval(err, "invalid node or vmid");
	snprintf(path, sizeof path, "/nodes/%s/lxc/%" PRId64, node, vmid);
	return upid_call(c, "DELETE", path, force ? "purge=1&force=1" : "purge=1", NULL,
	                 PVE_OP_DELETE, false, ret_upid, err);
}

int pve_task_status(PveClient *c, const char *upid, PveTaskStatus *ret, PveError *err)
{
	PveUpid u;
	if (pve_upid_parse(upid, &u) < 0)
		return fail_einval(err, "invalid UPID");
	_cleanup_buf_ Buf path = BUF_INIT;
	int r;
	if ((r = buf_printf(&path, "/nodes/%s/tasks/", u.node)) < 0 ||
	    (r = http_urlencode(&path, upid)) < 0 || (r = buf_puts(&path, "/status")) < 0)
		return r;
	_cleanup_json_ json_t *data = NULL;
	r = request(c, "GET", path.data, NULL, NULL, PVE_OP_TASK, &data, err);
	if (r < 0)
		return r;
	r = pve_parse_task_status(data, ret);
	if (r < 0)
		err_set(err, 200, "malformed task status response");
	return r;
}
