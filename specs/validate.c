/* validate.c - converts located nodes to typed JSON as a schema says, and
 * reports every problem with its place. The schema language is documented
 * at the top of crds/gameserver.yaml; crd.c checks schemas before they get
 * here, so this file can trust their shape. */
#include <ctype.h>
#include <inttypes.h>
#include <strings.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "specs/internal.h"
#include "util.h"

/* --- small helpers ------------------------------------------------------ */

size_t spec_utf8_len(const char *s, size_t len)
{
	size_t n = 0;
	for (size_t i = 0; i < len; i++)
		if (((unsigned char)s[i] & 0xC0) != 0x80)
			n++;
	return n;
}

#define REPR_MAX 60

char *spec_text_repr(const char *s, size_t len)
{
	size_t cut = len;
	bool cutted = false;
	if (spec_utf8_len(s, len) > REPR_MAX) {
		size_t chars = 0;
		for (cut = 0; cut < len; cut++) {
			if (((unsigned char)s[cut] & 0xC0) != 0x80 && chars++ == REPR_MAX)
				break;
		}
		cutted = true;
	}
	_cleanup_json_ json_t *j = json_stringn_nocheck(s, cut);
	if (!j)
		return NULL;
	_cleanup_free_ char *q = json_dumps(j, JSON_ENCODE_ANY | JSON_COMPACT);
	if (!q || !cutted)
		return TAKE_PTR(q);
	_cleanup_buf_ Buf b = BUF_INIT;
	if (buf_printf(&b, "%.*s...\"", (int)(strlen(q) - 1), q) < 0)
		return NULL;
	return buf_steal(&b);
}

char *spec_value_repr(const json_t *v)
{
	if (json_is_string(v))
		return spec_text_repr(json_string_value(v), json_string_length(v));
	_cleanup_free_ char *d = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT | JSON_SORT_KEYS);
	if (!d)
		return NULL;
	if (strlen(d) <= REPR_MAX + 2)
		return TAKE_PTR(d);
	_cleanup_buf_ Buf b = BUF_INIT;
	if (buf_printf(&b, "%.*s...", REPR_MAX, d) < 0)
		return NULL;
	return buf_steal(&b);
}

static bool all_digits(const char *s, size_t n)
{
	if (n == 0)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!isdigit((unsigned char)s[i]))
			return false;
	return true;
}

bool spec_is_uuid(const char *s)
{
	/* 8-4-4-4-12 hexadecimal digits, either case. */
	static const int groups[] = {8, 4, 4, 4, 12};
	for (size_t g = 0; g < ELEMENTSOF(groups); g++) {
		for (int i = 0; i < groups[g]; i++, s++)
			if (!isxdigit((unsigned char)*s))
				return false;
		if (g + 1 < ELEMENTSOF(groups) && *s++ != '-')
			return false;
	}
	return *s == 0;
}

static int num(const char *s, int n)
{
	int v = 0;
	for (int i = 0; i < n; i++)
		v = v * 10 + (s[i] - '0');
	return v;
}

bool spec_is_datetime(const char *s)
{
	/* RFC 3339 date-time: YYYY-MM-DDTHH:MM:SS[.frac](Z|+HH:MM|-HH:MM);
	 * T and Z in either case. */
	size_t len = strlen(s);
	if (len < 20 || !all_digits(s, 4) || s[4] != '-' || !all_digits(s + 5, 2) || s[7] != '-' ||
	    !all_digits(s + 8, 2) || (s[10] != 'T' && s[10] != 't') || !all_digits(s + 11, 2) ||
	    s[13] != ':' || !all_digits(s + 14, 2) || s[16] != ':' || !all_digits(s + 17, 2))
		return false;
	int y = num(s, 4), mo = num(s + 5, 2), d = num(s + 8, 2);
	int h = num(s + 11, 2), mi = num(s + 14, 2), se = num(s + 17, 2);
	static const int mdays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
	if (mo < 1 || mo > 12 || d < 1)
		return false;
	int dim = mdays[mo - 1];
	if (mo == 2 && ((y % 4 == 0 && y % 100 != 0) || y % 400 == 0))
		dim = 29;
	if (d > dim || h > 23 || mi > 59 || se > 60)
		return false;
	const char *p = s + 19;
	if (*p == '.') {
		p++;
		if (!isdigit((unsigned char)*p))
			return false;
		while (isdigit((unsigned char)*p))
			p++;
	}
	if ((*p == 'Z' || *p == 'z') && p[1] == 0)
		return true;
	if ((*p == '+' || *p == '-') && all_digits(p + 1, 2) && p[3] == ':' &&
	    all_digits(p + 4, 2) && p[6] == 0)
		return num(p + 1, 2) <= 23 && num(p + 4, 2) <= 59;
	return false;
}

bool spec_is_duration(const char *s)
{
	int64_t ms;
	return duration_parse(s, &ms) == 0;
}

/* --- regex cache ---------------------------------------------------------- */

int spec_regex_add(RegexCache *c, const char *pattern, char **ret_err)
{
	if (spec_regex_get(c, pattern))
		return 0;
	RegexEntry *items = realloc(c->items, (c->n + 1) * sizeof *items);
	if (!items)
		return -ENOMEM;
	c->items = items;
	RegexEntry *e = &c->items[c->n];
	e->pattern = strdup(pattern);
	if (!e->pattern)
		return -ENOMEM;
	int r = regcomp(&e->re, pattern, REG_EXTENDED | REG_NOSUB);
	if (r != 0) {
		if (ret_err) {
			char msg[256];
			regerror(r, &e->re, msg, sizeof msg);
			*ret_err = strdup(msg);
		}
		free(e->pattern);
		return -EINVAL;
	}
	c->n++;
	return 0;
}

const regex_t *spec_regex_get(const RegexCache *c, const char *pattern)
{
	if (!c)
		return NULL;
	for (size_t i = 0; i < c->n; i++)
		if (strcmp(c->items[i].pattern, pattern) == 0)
			return &c->items[i].re;
	return NULL;
}

void spec_regex_clear(RegexCache *c)
{
	if (!c)
		return;
	for (size_t i = 0; i < c->n; i++) {
		regfree(&c->items[i].re);
		free(c->items[i].pattern);
	}
	free(c->items);
	c->items = NULL;
	c->n = 0;
}

/* --- errors ----------------------------------------------------------------- */

void spec_conv_error(Conv *c, const Node *n, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	if (spec_errors_addv(c->errs, c->file, n ? n->line : 0, n ? n->col : 0, c->path.s, fmt,
	                     ap) < 0)
		c->oom = 1;
	va_end(ap);
}

/* What a node is, for "expected X, got Y" (new string). */
static char *node_desc(const Node *n)
{
	_cleanup_buf_ Buf b = BUF_INIT;
	int r = 0;
	if (n->type == NODE_MAP)
		r = buf_puts(&b, "a mapping");
	else if (n->type == NODE_SEQ)
		r = buf_puts(&b, "a list");
	else if (n->json) {
		_cleanup_free_ char *rep = spec_value_repr(n->json);
		const char *what = json_is_string(n->json)    ? "string"
		                   : json_is_integer(n->json) ? "integer"
		                   : json_is_real(n->json)    ? "number"
		                   : json_is_boolean(n->json) ? "boolean"
		                                              : "null";
		r = buf_printf(&b, "%s %s", what, rep ? rep : "?");
	} else {
		_cleanup_free_ char *rep = spec_text_repr(n->text, n->len);
		r = buf_printf(&b, "%s%s", n->plain ? "" : "the quoted string ", rep ? rep : "?");
	}
	if (r < 0)
		return NULL;
	return buf_steal(&b);
}

static void type_error(Conv *c, const Node *n, const char *want, const char *hint)
{
	_cleanup_free_ char *d = node_desc(n);
	spec_conv_error(c, n, "expected %s, got %s%s", want, d ? d : "?", hint ? hint : "");
}

/* --- typing ------------------------------------------------------------------- */

static bool node_is_null(const Node *n)
{
	if (n->type != NODE_SCALAR)
		return false;
	if (n->json)
		return json_is_null(n->json);
	return n->plain &&
	       (n->len == 0 || strcmp(n->text, "~") == 0 || strcmp(n->text, "null") == 0);
}

static const json_t *kw(const json_t *schema, const char *k)
{
	return json_object_get(schema, k);
}

static bool check_enum(Conv *c, const Node *n, const json_t *v, const json_t *schema)
{
	const json_t *en = kw(schema, "enum");
	if (!en)
		return true;
	size_t i;
	const json_t *e;
	json_array_foreach(en, i, e) if (json_equal(e, v)) return true;
	_cleanup_buf_ Buf b = BUF_INIT;
	json_array_foreach(en, i, e)
	{
		_cleanup_free_ char *d = json_dumps(e, JSON_ENCODE_ANY | JSON_COMPACT);
		const char *txt = json_is_string(e) ? json_string_value(e) : d;
		if (buf_printf(&b, "%s%s", i ? ", " : "", txt ? txt : "?") < 0)
			c->oom = 1;
	}
	_cleanup_free_ char *rep = spec_value_repr(v);
	spec_conv_error(c, n, "%s is not one of %s", rep ? rep : "?", b.data ? b.data : "");
	return false;
}

bool spec_check_string(Conv *c, const Node *n, const char *s, size_t len, const json_t *schema)
{
	bool ok = true;
	if (memchr(s, 0, len)) {
		spec_conv_error(c, n, "strings must not contain NUL characters");
		return false;
	}
	size_t chars = spec_utf8_len(s, len);
	const json_t *j;
	if ((j = kw(schema, "minLength")) && (json_int_t)chars < json_integer_value(j)) {
		_cleanup_free_ char *rep = spec_text_repr(s, len);
		spec_conv_error(c, n, "%s is shorter than the minimum length %" JSON_INTEGER_FORMAT,
		                rep ? rep : "?", json_integer_value(j));
		ok = false;
	}
	if ((j = kw(schema, "maxLength")) && (json_int_t)chars > json_integer_value(j)) {
		_cleanup_free_ char *rep = spec_text_repr(s, len);
		spec_conv_error(c, n,
		                "%s is longer than the maximum length %" JSON_INTEGER_FORMAT
		                " (%zu characters)",
		                rep ? rep : "?", json_integer_value(j), chars);
		ok = false;
	}
	if ((j = kw(schema, "pattern"))) {
		const regex_t *re = spec_regex_get(c->rx, json_string_value(j));
		if (!re)
			re = spec_regex_get(c->rx2, json_string_value(j));
		if (!re || regexec(re, s, 0, NULL, 0) != 0) {
			_cleanup_free_ char *rep = spec_text_repr(s, len);
			spec_conv_error(c, n, "%s does not match %s", rep ? rep : "?",
			                json_string_value(j));
			ok = false;
		}
	}
	if ((j = kw(schema, "format"))) {
		const char *f = json_string_value(j);
		const char *bad = NULL;
		if (strcmp(f, "duration") == 0 && !spec_is_duration(s))
			bad = "is not a duration (like 30s, 5m, 6h, 1h30m)";
		else if (strcmp(f, "uuid") == 0 && !spec_is_uuid(s))
			bad = "is not a UUID (like 0b4c3a52-7f0e-4d55-9d0f-2f1c8e4b6a10)";
		else if (strcmp(f, "date-time") == 0 && !spec_is_datetime(s))
			bad = "is not an RFC 3339 date-time (like 2025-01-31T12:00:00Z)";
		if (bad) {
			_cleanup_free_ char *rep = spec_text_repr(s, len);
			spec_conv_error(c, n, "%s %s", rep ? rep : "?", bad);
			ok = false;
		}
	}
	return ok;
}

static json_t *conv_string(Conv *c, const Node *n, const json_t *schema)
{
	_cleanup_json_ json_t *v = NULL;
	if (n->type != NODE_SCALAR || (n->json && !json_is_string(n->json))) {
		type_error(c, n, "string", NULL);
		return NULL;
	}
	if (n->json)
		v = json_incref(n->json);
	else {
		if (memchr(n->text, 0, n->len)) {
			spec_conv_error(c, n, "strings must not contain NUL characters");
			return NULL;
		}
		v = json_stringn(n->text, n->len);
		if (!v) {
			/* libyaml only hands out valid UTF-8; this is ENOMEM. */
			c->oom = 1;
			return NULL;
		}
	}
	bool ok = spec_check_string(c, n, json_string_value(v), json_string_length(v), schema);
	if (!check_enum(c, n, v, schema) || !ok)
		return NULL;
	return TAKE_PTR(v);
}

static bool plain_integer(const char *s, size_t len, int64_t *ret)
{
	/* YAML 1.2 core schema decimal integers: [-+]?[0-9]+ */
	size_t i = 0;
	if (len > 0 && (s[0] == '-' || s[0] == '+'))
		i = 1;
	if (!all_digits(s + i, len - i) || len > 30)
		return false;
	return parse_int64(s, ret) == 0;
}

static json_t *conv_integer(Conv *c, const Node *n, const json_t *schema)
{
	int64_t iv;
	if (n->type != NODE_SCALAR) {
		type_error(c, n, "integer", NULL);
		return NULL;
	}
	if (n->json) {
		if (!json_is_integer(n->json)) {
			type_error(c, n, "integer", NULL);
			return NULL;
		}
		iv = json_integer_value(n->json);
	} else if (!n->plain) {
		type_error(c, n, "integer", " (write numbers without quotes)");
		return NULL;
	} else if (!plain_integer(n->text, n->len, &iv)) {
		size_t i = (n->len > 0 && (n->text[0] == '-' || n->text[0] == '+')) ? 1 : 0;
		if (n->len <= 30 && all_digits(n->text + i, n->len - i))
			type_error(c, n, "integer", " (out of range)");
		else
			type_error(c, n, "integer", NULL);
		return NULL;
	}
	bool ok = true;
	const json_t *j;
	if ((j = kw(schema, "minimum")) && iv < json_integer_value(j)) {
		spec_conv_error(c, n, "%" PRId64 " is below the minimum %" JSON_INTEGER_FORMAT, iv,
		                json_integer_value(j));
		ok = false;
	}
	if ((j = kw(schema, "maximum")) && iv > json_integer_value(j)) {
		spec_conv_error(c, n, "%" PRId64 " is above the maximum %" JSON_INTEGER_FORMAT, iv,
		                json_integer_value(j));
		ok = false;
	}
	_cleanup_json_ json_t *v = json_integer(iv);
	if (!v) {
		c->oom = 1;
		return NULL;
	}
	if (!check_enum(c, n, v, schema) || !ok)
		return NULL;
	return TAKE_PTR(v);
}

static const char *const yaml11_bools[] = {
    "y",  "Y",  "yes", "Yes", "YES", "n",   "N",    "no",   "No",    "NO",
    "on", "On", "ON",  "off", "Off", "OFF", "True", "TRUE", "False", "FALSE",
};

static json_t *conv_boolean(Conv *c, const Node *n, const json_t *schema)
{
	(void)schema;
	if (n->type != NODE_SCALAR) {
		type_error(c, n, "boolean", NULL);
		return NULL;
	}
	if (n->json) {
		if (!json_is_boolean(n->json)) {
			type_error(c, n, "boolean", NULL);
			return NULL;
		}
		return json_incref(n->json);
	}
	if (n->plain && strcmp(n->text, "true") == 0)
		return json_true();
	if (n->plain && strcmp(n->text, "false") == 0)
		return json_false();
	if (!n->plain) {
		type_error(c, n, "boolean", " (write true or false without quotes)");
		return NULL;
	}
	for (size_t i = 0; i < ELEMENTSOF(yaml11_bools); i++)
		if (strcmp(n->text, yaml11_bools[i]) == 0) {
			_cleanup_free_ char *rep = spec_text_repr(n->text, n->len);
			spec_conv_error(c, n,
			                "%s is not a boolean here: write true or false (YAML 1.1 "
			                "booleans like yes/no/on/off are not accepted)",
			                rep ? rep : "?");
			return NULL;
		}
	type_error(c, n, "boolean", " (write true or false)");
	return NULL;
}

/* Case-insensitive match among the properties, for "did you mean". */
static const char *suggest(const json_t *props, const char *k)
{
	const char *pk;
	const json_t *pv;
	json_object_foreach((json_t *)props, pk, pv)
	{
		(void)pv;
		if (strcasecmp(pk, k) == 0)
			return pk;
	}
	return NULL;
}

/* The key of a map node as a C string, or NULL if it holds a NUL. */
static const char *key_text(const Node *k)
{
	if (k->json)
		return json_is_string(k->json) ? json_string_value(k->json) : NULL;
	return strlen(k->text) == k->len ? k->text : NULL;
}

int spec_apply_defaults(json_t *v, const json_t *schema)
{
	const json_t *props = kw(schema, "properties");
	const char *k;
	json_t *sub;
	if (!json_is_object(v))
		return 0;
	json_object_foreach((json_t *)props, k, sub)
	{
		const json_t *def = kw(sub, "default");
		if (!def || json_object_get(v, k))
			continue;
		_cleanup_json_ json_t *copy = json_deep_copy(def);
		if (!copy)
			return -ENOMEM;
		if (json_is_object(copy)) {
			int r = spec_apply_defaults(copy, sub);
			if (r < 0)
				return r;
		}
		if (json_object_set(v, k, copy) < 0)
			return -ENOMEM;
	}
	return 0;
}

static json_t *conv_object(Conv *c, const Node *n, const Node *key, const json_t *schema)
{
	if (n->type != NODE_MAP) {
		type_error(c, n, "a mapping (object)", NULL);
		return NULL;
	}
	const json_t *props = kw(schema, "properties");
	_cleanup_json_ json_t *obj = json_object();
	if (!obj) {
		c->oom = 1;
		return NULL;
	}
	bool ok = true;
	for (size_t i = 0; i < n->n; i++) {
		const Node *kn = n->keys[i];
		const char *k = key_text(kn);
		size_t saved = spec_path_push_key(&c->path, k ? k : "?");
		const json_t *sub = k ? json_object_get(props, k) : NULL;
		if (!sub) {
			const char *s = k ? suggest(props, k) : NULL;
			if (s)
				spec_conv_error(c, kn, "unknown field (did you mean %s?)", s);
			else
				spec_conv_error(c, kn, "unknown field");
			ok = false;
		} else {
			json_t *v = spec_convert(c, n->vals[i], kn, sub);
			if (!v || json_object_set_new(obj, k, v) < 0)
				ok = false;
		}
		spec_path_pop(&c->path, saved);
	}
	const json_t *req = kw(schema, "required");
	size_t i;
	const json_t *r;
	json_array_foreach(req, i, r)
	{
		const char *rk = json_string_value(r);
		bool present = false;
		for (size_t j = 0; j < n->n && !present; j++) {
			const char *k = key_text(n->keys[j]);
			present = k && strcmp(k, rk) == 0;
		}
		if (present)
			continue;
		size_t saved = spec_path_push_key(&c->path, rk);
		spec_conv_error(c, key ? key : n, "required field is missing");
		spec_path_pop(&c->path, saved);
		ok = false;
	}
	if (!ok)
		return NULL;
	if (c->apply_defaults && spec_apply_defaults(obj, schema) < 0) {
		c->oom = 1;
		return NULL;
	}
	return TAKE_PTR(obj);
}

static json_t *conv_array(Conv *c, const Node *n, const json_t *schema)
{
	if (n->type != NODE_SEQ) {
		type_error(c, n, "a list", NULL);
		return NULL;
	}
	const json_t *j = kw(schema, "maxItems");
	if (j && (json_int_t)n->n > json_integer_value(j)) {
		spec_conv_error(c, n, "%zu items are more than the maximum %" JSON_INTEGER_FORMAT,
		                n->n, json_integer_value(j));
		return NULL;
	}
	const json_t *items = kw(schema, "items");
	_cleanup_json_ json_t *arr = json_array();
	if (!arr) {
		c->oom = 1;
		return NULL;
	}
	bool ok = true;
	for (size_t i = 0; i < n->n; i++) {
		size_t saved = spec_path_push_index(&c->path, i);
		json_t *v = spec_convert(c, n->vals[i], NULL, items);
		if (!v || json_array_append_new(arr, v) < 0)
			ok = false;
		spec_path_pop(&c->path, saved);
	}
	if (!ok)
		return NULL;
	return TAKE_PTR(arr);
}

json_t *spec_convert(Conv *c, const Node *n, const Node *key, const json_t *schema)
{
	const char *type = json_string_value(kw(schema, "type"));
	if (!type)
		type = "";
	if (node_is_null(n)) {
		if (json_is_true(kw(schema, "nullable")))
			return json_null();
		if (kw(schema, "default"))
			spec_conv_error(c, n,
			                "must not be null (leave the field out to get the "
			                "default)");
		else
			spec_conv_error(c, n, "must not be null");
		return NULL;
	}
	if (strcmp(type, "string") == 0)
		return conv_string(c, n, schema);
	if (strcmp(type, "integer") == 0)
		return conv_integer(c, n, schema);
	if (strcmp(type, "boolean") == 0)
		return conv_boolean(c, n, schema);
	if (strcmp(type, "object") == 0)
		return conv_object(c, n, key, schema);
	if (strcmp(type, "array") == 0)
		return conv_array(c, n, schema);
	spec_conv_error(c, n, "schema has no usable type");
	return NULL;
}
