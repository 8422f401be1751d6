/* crd.c - loads the YAML files in crds/: the kinds and their spec schemas (crd.h).
 *
 * A schema is read with the same YAML reader and typing rules as specs,
 * and checked as it is read, so a mistake in a CRD is a located error at
 * start-up rather than a strange verdict on some later document. */
#include "specs/crd.h"

#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "specs/internal.h"
#include "util.h"

#ifndef ZLH_SOURCE_DIR
#define ZLH_SOURCE_DIR "."
#endif
#ifndef ZLH_PREFIX
#define ZLH_PREFIX "/usr/local"
#endif

#define CRD_API_VERSION "zlh.dev/v1"
#define CRD_MAX_FILES 64

DEFINE_TRIVIAL_CLEANUP_FUNC(DIR *, closedir)

static bool is_dir(const char *p)
{
	struct stat st;
	return p && stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

int crd_dir_find(const char *flag_dir, char **ret_dir)
{
	const char *pick = NULL;
	const char *env = getenv("ZLH_CRDS_DIR");
	if (flag_dir) {
		if (!is_dir(flag_dir))
			return -ENOENT;
		pick = flag_dir;
	} else if (env && *env) {
		if (!is_dir(env))
			return -ENOENT;
		pick = env;
	} else if (is_dir(ZLH_SOURCE_DIR "/crds"))
		pick = ZLH_SOURCE_DIR "/crds";
	else if (is_dir(ZLH_PREFIX "/share/zlh-controller/crds"))
		pick = ZLH_PREFIX "/share/zlh-controller/crds";
	else
		return -ENOENT;
	char *d = strdup(pick);
	if (!d)
		return -ENOMEM;
	*ret_dir = d;
	return 0;
}

/* --- the schema of schemas -------------------------------------------------- */

/* Keywords whose value has a fixed type, as schemas in the language itself.
 * properties, items, enum and default are handled by hand. */
static const char META_JSON[] =
    "{"
    "\"type\":{\"type\":\"string\",\"enum\":[\"object\",\"string\",\"integer\","
    "\"boolean\",\"array\"]},"
    "\"nullable\":{\"type\":\"boolean\"},"
    "\"required\":{\"type\":\"array\",\"items\":{\"type\":\"string\"}},"
    "\"additionalProperties\":{\"type\":\"boolean\"},"
    "\"minimum\":{\"type\":\"integer\"},"
    "\"maximum\":{\"type\":\"integer\"},"
    "\"minLength\":{\"type\":\"integer\",\"minimum\":0},"
    "\"maxLength\":{\"type\":\"integer\",\"minimum\":0},"
    "\"maxItems\":{\"type\":\"integer\",\"minimum\":0},"
    "\"pattern\":{\"type\":\"string\",\"minLength\":1,\"maxLength\":1024},"
    "\"format\":{\"type\":\"string\",\"enum\":[\"duration\",\"uuid\",\"date-time\"]},"
    "\"description\":{\"type\":\"string\"}"
    "}";

/* Which keywords each type allows (besides type, nullable, default,
 * description, enum where noted). */
static bool keyword_fits(const char *type, const char *k)
{
	static const struct {
		const char *kw, *type;
	} only[] = {
	    {"properties", "object"}, {"required", "object"}, {"additionalProperties", "object"},
	    {"minimum", "integer"},   {"maximum", "integer"}, {"minLength", "string"},
	    {"maxLength", "string"},  {"pattern", "string"},  {"format", "string"},
	    {"items", "array"},       {"maxItems", "array"},
	};
	for (size_t i = 0; i < ELEMENTSOF(only); i++)
		if (strcmp(only[i].kw, k) == 0)
			return strcmp(only[i].type, type) == 0;
	if (strcmp(k, "enum") == 0)
		return strcmp(type, "string") == 0 || strcmp(type, "integer") == 0;
	return true;
}

typedef struct Loader {
	Conv conv; /* file, errs, rx (writable below), path */
	RegexCache *rx;
	json_t *meta;
} Loader;

static json_t *compile_schema(Loader *l, const Node *n, const Node *key);

#define crd_error(l, n, ...) spec_conv_error(&(l)->conv, (n), __VA_ARGS__)

static json_t *compile_properties(Loader *l, const Node *n, const Node *key)
{
	if (n->type != NODE_MAP) {
		crd_error(l, n, "%s", "properties must be a mapping of field name to schema");
		return NULL;
	}
	(void)key;
	_cleanup_json_ json_t *props = json_object();
	bool ok = props != NULL;
	for (size_t i = 0; i < n->n; i++) {
		const Node *kn = n->keys[i];
		if (kn->json || strlen(kn->text) != kn->len || kn->len == 0) {
			crd_error(l, kn, "%s", "bad property name");
			ok = false;
			continue;
		}
		size_t saved = spec_path_push_key(&l->conv.path, kn->text);
		json_t *s = compile_schema(l, n->vals[i], kn);
		if (!s || json_object_set_new(props, kn->text, s) < 0)
			ok = false;
		spec_path_pop(&l->conv.path, saved);
	}
	return ok ? TAKE_PTR(props) : NULL;
}

/* Reads one schema node; NULL after reporting. */
static json_t *compile_schema(Loader *l, const Node *n, const Node *key)
{
	Conv *c = &l->conv;
	if (n->type != NODE_MAP) {
		crd_error(l, n, "%s", "a schema must be a mapping");
		return NULL;
	}
	_cleanup_json_ json_t *s = json_object();
	if (!s) {
		c->oom = 1;
		return NULL;
	}
	bool ok = true;
	const Node *enum_n = NULL, *default_n = NULL, *enum_k = NULL, *default_k = NULL;
	const Node *type_k = NULL;
	for (size_t i = 0; i < n->n; i++) {
		const Node *kn = n->keys[i], *vn = n->vals[i];
		const char *k = kn->text;
		size_t saved = spec_path_push_key(&c->path, k);
		const json_t *meta = json_object_get(l->meta, k);
		json_t *v = NULL;
		if (strcmp(k, "enum") == 0) {
			enum_n = vn;
			enum_k = kn;
		} else if (strcmp(k, "default") == 0) {
			default_n = vn;
			default_k = kn;
		} else if (strcmp(k, "properties") == 0) {
			v = compile_properties(l, vn, kn);
			ok = ok && v;
		} else if (strcmp(k, "items") == 0) {
			v = compile_schema(l, vn, kn);
			ok = ok && v;
		} else if (meta) {
			v = spec_convert(c, vn, kn, meta);
			ok = ok && v;
			if (strcmp(k, "type") == 0)
				type_k = kn;
		} else {
			crd_error(l, kn, "%s", "unknown schema keyword");
			ok = false;
		}
		if (v && json_object_set_new(s, k, v) < 0)
			ok = false;
		if (v && strcmp(k, "pattern") == 0) {
			_cleanup_free_ char *msg = NULL;
			int r = spec_regex_add(l->rx, json_string_value(v), &msg);
			if (r == -ENOMEM)
				c->oom = 1;
			if (r < 0) {
				crd_error(l, vn, "pattern does not compile: %s", msg ? msg : "?");
				ok = false;
			}
		}
		spec_path_pop(&c->path, saved);
	}
	if (!ok)
		return NULL;

	const char *type = json_string_value(json_object_get(s, "type"));
	if (!type) {
		crd_error(l, key ? key : n, "%s", "schema has no type");
		return NULL;
	}
	const char *k;
	json_t *v;
	for (size_t i = 0; i < n->n; i++) {
		k = n->keys[i]->text;
		if (!keyword_fits(type, k)) {
			size_t saved = spec_path_push_key(&c->path, k);
			spec_conv_error(c, n->keys[i], "%s does not apply to type %s", k, type);
			spec_path_pop(&c->path, saved);
			ok = false;
		}
	}
	if (!ok)
		return NULL;
	(void)type_k;
	if (json_is_true(json_object_get(s, "additionalProperties"))) {
		crd_error(l, n, "%s",
		          "additionalProperties: true is not supported (objects are closed)");
		return NULL;
	}
	if (strcmp(type, "object") == 0 && !json_object_get(s, "properties")) {
		json_t *empty = json_object();
		if (!empty || json_object_set_new(s, "properties", empty) < 0) {
			c->oom = 1;
			return NULL;
		}
	}
	if (strcmp(type, "array") == 0 && !json_object_get(s, "items")) {
		crd_error(l, key ? key : n, "%s", "an array schema needs items");
		return NULL;
	}
	size_t i;
	json_array_foreach(json_object_get(s, "required"), i, v)
	{
		const json_t *p =
		    json_object_get(json_object_get(s, "properties"), json_string_value(v));
		if (!p) {
			spec_conv_error(c, n, "required field %s is not among the properties",
			                json_string_value(v));
			ok = false;
		} else if (json_object_get(p, "default")) {
			spec_conv_error(c, n,
			                "required field %s has a default, which never applies",
			                json_string_value(v));
			ok = false;
		}
	}
	json_int_t lo, hi;
	if (json_object_get(s, "minimum") && json_object_get(s, "maximum") &&
	    (lo = json_integer_value(json_object_get(s, "minimum"))) >
	        (hi = json_integer_value(json_object_get(s, "maximum")))) {
		crd_error(l, n, "%s", "minimum is above maximum");
		ok = false;
	}
	if (json_object_get(s, "minLength") && json_object_get(s, "maxLength") &&
	    json_integer_value(json_object_get(s, "minLength")) >
	        json_integer_value(json_object_get(s, "maxLength"))) {
		crd_error(l, n, "%s", "minLength is above maxLength");
		ok = false;
	}
	if (!ok)
		return NULL;

	/* enum values and the default are typed by the schema read so far. */
	if (enum_n) {
		size_t saved = spec_path_push_key(&c->path, "enum");
		if (enum_n->type != NODE_SEQ || enum_n->n == 0) {
			crd_error(l, enum_n, "%s", "enum must be a non-empty list");
			ok = false;
		} else {
			_cleanup_json_ json_t *en = json_array();
			for (size_t j = 0; en && j < enum_n->n; j++) {
				size_t s2 = spec_path_push_index(&c->path, j);
				json_t *ev = spec_convert(c, enum_n->vals[j], enum_k, s);
				if (!ev || json_array_append_new(en, ev) < 0)
					ok = false;
				spec_path_pop(&c->path, s2);
			}
			if (ok && (!en || json_object_set(s, "enum", en) < 0))
				c->oom = 1;
		}
		spec_path_pop(&c->path, saved);
	}
	if (default_n && ok) {
		size_t saved = spec_path_push_key(&c->path, "default");
		bool prev = c->apply_defaults;
		c->apply_defaults = false; /* defaults are kept as written */
		json_t *dv = spec_convert(c, default_n, default_k, s);
		c->apply_defaults = prev;
		if (!dv)
			ok = false;
		else if (json_object_set_new(s, "default", dv) < 0)
			c->oom = 1;
		spec_path_pop(&c->path, saved);
	}
	if (!ok || c->oom)
		return NULL;
	(void)k;
	return TAKE_PTR(s);
}

/* --- documents ---------------------------------------------------------------- */

static void crd_clear(Crd *c)
{
	free(c->kind);
	free(c->plural);
	free(c->short_name);
	free(c->api_version);
	json_decref(c->schema);
	if (c->regex) {
		spec_regex_clear(c->regex);
		free(c->regex);
	}
	*c = (Crd){0};
}

CrdSet *crd_set_free(CrdSet *s)
{
	if (!s)
		return NULL;
	for (size_t i = 0; i < s->n; i++)
		crd_clear(&s->items[i]);
	free(s->items);
	free(s);
	return NULL;
}

static const struct {
	const char *key;
	const char *pattern;
	size_t off;
} crd_fields[] = {
    {"apiVersion", "^zlh\\.dev/v1$", offsetof(Crd, api_version)},
    {"kind", "^[A-Z][A-Za-z0-9]{0,62}$", offsetof(Crd, kind)},
    {"plural", "^[a-z][a-z0-9]{0,62}$", offsetof(Crd, plural)},
    {"short", "^[a-z][a-z0-9]{0,15}$", offsetof(Crd, short_name)},
};

static bool present(const Node *map, const char *key)
{
	for (size_t i = 0; i < map->n; i++)
		if (strcmp(map->keys[i]->text, key) == 0)
			return true;
	return false;
}

static int load_one(const char *file, const char *data, size_t len, Crd *ret, SpecErrors *errs)
{
	_cleanup_(spec_node_docs_clear) NodeDocs docs = {0};
	int r = spec_yaml_read(file, data, len, &docs, errs);
	if (r < 0)
		return r;
	if (docs.n != 1) {
		spec_errors_add(errs, file, docs.n ? docs.lines[1] : 0, 0, NULL,
		                "a CRD file holds exactly one document (found %zu)", docs.n);
		return -EINVAL;
	}
	const Node *root = docs.roots[0];
	_cleanup_json_ json_t *meta = json_loads(META_JSON, 0, NULL);
	if (!meta)
		return -ENOMEM;
	Crd crd = {0};
	RegexCache *rx = calloc(1, sizeof *rx);
	if (!rx)
		return -ENOMEM;
	crd.regex = rx;
	Loader l = {.conv = {.file = file, .errs = errs, .rx = rx}, .rx = rx, .meta = meta};
	/* The fields' own patterns live in a throwaway cache. */
	RegexCache fieldrx = {0};
	bool ok = true;
	if (root->type != NODE_MAP) {
		spec_conv_error(&l.conv, root, "a CRD must be a mapping");
		ok = false;
	}
	bool seen[ELEMENTSOF(crd_fields)] = {0};
	bool seen_schema = false;
	for (size_t i = 0; root->type == NODE_MAP && i < root->n; i++) {
		const Node *kn = root->keys[i], *vn = root->vals[i];
		size_t saved = spec_path_push_key(&l.conv.path, kn->text);
		size_t f;
		for (f = 0; f < ELEMENTSOF(crd_fields); f++)
			if (strcmp(kn->text, crd_fields[f].key) == 0)
				break;
		if (f < ELEMENTSOF(crd_fields)) {
			_cleanup_json_ json_t *fs = json_pack("{s:s,s:s}", "type", "string",
			                                      "pattern", crd_fields[f].pattern);
			if (!fs || spec_regex_add(&fieldrx, crd_fields[f].pattern, NULL) < 0) {
				l.conv.oom = 1;
				ok = false;
			} else {
				l.conv.rx = &fieldrx;
				_cleanup_json_ json_t *v = spec_convert(&l.conv, vn, kn, fs);
				l.conv.rx = rx;
				char **dst = (char **)((char *)&crd + crd_fields[f].off);
				if (v) {
					*dst = strdup(json_string_value(v));
					if (!*dst)
						l.conv.oom = 1;
					seen[f] = true;
				} else
					ok = false;
			}
		} else if (strcmp(kn->text, "schema") == 0) {
			json_t *s = compile_schema(&l, vn, kn);
			if (s) {
				crd.schema = s;
				seen_schema = true;
				if (strcmp(json_string_value(json_object_get(s, "type")),
				           "object") != 0) {
					spec_conv_error(&l.conv, vn,
					                "the spec schema must be of "
					                "type object");
					ok = false;
				}
			} else
				ok = false;
		} else {
			spec_conv_error(&l.conv, kn, "unknown field");
			ok = false;
		}
		spec_path_pop(&l.conv.path, saved);
	}
	for (size_t f = 0; root->type == NODE_MAP && f < ELEMENTSOF(crd_fields); f++)
		if (!seen[f] && !present(root, crd_fields[f].key)) {
			size_t saved = spec_path_push_key(&l.conv.path, crd_fields[f].key);
			spec_conv_error(&l.conv, root, "required field is missing");
			spec_path_pop(&l.conv.path, saved);
			ok = false;
		}
	if (root->type == NODE_MAP && !seen_schema && !present(root, "schema")) {
		size_t saved = spec_path_push_key(&l.conv.path, "schema");
		spec_conv_error(&l.conv, root, "required field is missing");
		spec_path_pop(&l.conv.path, saved);
		ok = false;
	}
	spec_regex_clear(&fieldrx);
	if (l.conv.oom || !ok) {
		crd_clear(&crd);
		return l.conv.oom ? -ENOMEM : -EINVAL;
	}
	*ret = crd;
	return 0;
}

static int cmp_crd(const void *a, const void *b)
{
	return strcmp(((const Crd *)a)->kind, ((const Crd *)b)->kind);
}

int crd_set_load_data(const char *const *files, const char *const *datas, size_t n, CrdSet **ret,
                      SpecErrors *errs)
{
	CrdSet *set = calloc(1, sizeof *set);
	_cleanup_(crd_set_freep) CrdSet *s = set;
	if (!s)
		return -ENOMEM;
	s->items = calloc(n ? n : 1, sizeof *s->items);
	if (!s->items)
		return -ENOMEM;
	bool failed = false;
	for (size_t i = 0; i < n; i++) {
		Crd crd;
		int r = load_one(files[i], datas[i], strlen(datas[i]), &crd, errs);
		if (r == -ENOMEM)
			return r;
		if (r < 0) {
			failed = true;
			continue;
		}
		/* Names must be unique across kinds, whatever their role. */
		const char *mine[] = {crd.kind, crd.plural, crd.short_name};
		bool dup = false;
		for (size_t j = 0; j < s->n && !dup; j++) {
			const Crd *o = &s->items[j];
			const char *theirs[] = {o->kind, o->plural, o->short_name};
			for (size_t a = 0; a < 3 && !dup; a++)
				for (size_t b = 0; b < 3 && !dup; b++)
					if (strcasecmp(mine[a], theirs[b]) == 0) {
						spec_errors_add(
						    errs, files[i], 0, 0, NULL,
						    "name %s is already used by kind %s", mine[a],
						    o->kind);
						dup = true;
					}
		}
		if (dup) {
			crd_clear(&crd);
			failed = true;
			continue;
		}
		s->items[s->n++] = crd;
	}
	if (failed)
		return -EINVAL;
	qsort(s->items, s->n, sizeof *s->items, cmp_crd);
	*ret = TAKE_PTR(s);
	return 0;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

int crd_set_load(const char *dir, CrdSet **ret, SpecErrors *errs)
{
	_cleanup_(closedirp) DIR *d = NULL;
	char *names[CRD_MAX_FILES];
	char *datas[CRD_MAX_FILES];
	size_t n = 0;
	int r = 0;

	d = opendir(dir);
	if (!d)
		return -errno;
	struct dirent *de;
	while ((de = readdir(d))) {
		if (de->d_name[0] == '.' || !str_endswith(de->d_name, ".yaml"))
			continue;
		if (n == CRD_MAX_FILES) {
			spec_errors_add(errs, dir, 0, 0, NULL, "more than %d CRD files",
			                CRD_MAX_FILES);
			r = -EINVAL;
			goto out;
		}
		size_t l = strlen(dir) + 1 + strlen(de->d_name) + 1;
		names[n] = malloc(l);
		if (!names[n]) {
			r = -ENOMEM;
			goto out;
		}
		snprintf(names[n], l, "%s/%s", dir, de->d_name);
		datas[n] = NULL;
		n++;
	}
	if (n == 0) {
		spec_errors_add(errs, dir, 0, 0, NULL, "no *.yaml CRD files");
		r = -ENOENT;
		goto out;
	}
	qsort(names, n, sizeof *names, cmp_str);
	for (size_t i = 0; i < n; i++) {
		size_t len;
		r = file_read_all(names[i], SPEC_MAX_INPUT, &datas[i], &len);
		if (r < 0) {
			spec_errors_add(errs, names[i], 0, 0, NULL, "cannot read: %s",
			                strerror(-r));
			goto out;
		}
		if (strlen(datas[i]) != len) {
			spec_errors_add(errs, names[i], 0, 0, NULL, "file contains NUL bytes");
			r = -EINVAL;
			goto out;
		}
	}
	r = crd_set_load_data((const char *const *)names, (const char *const *)datas, n, ret, errs);
out:
	for (size_t i = 0; i < n; i++) {
		free(names[i]);
		free(datas[i]);
	}
	return r;
}

const Crd *crd_set_find(const CrdSet *s, const char *name)
{
	if (!s || !name)
		return NULL;
	for (size_t i = 0; i < s->n; i++) {
		const Crd *c = &s->items[i];
		if (strcasecmp(c->kind, name) == 0 || strcasecmp(c->plural, name) == 0 ||
		    strcasecmp(c->short_name, name) == 0)
			return c;
	}
	return NULL;
}

const Crd *crd_set_find_kind(const CrdSet *s, const char *kind)
{
	if (!s || !kind)
		return NULL;
	for (size_t i = 0; i < s->n; i++)
		if (strcmp(s->items[i].kind, kind) == 0)
			return &s->items[i];
	return NULL;
}

json_t *crd_set_to_json(const CrdSet *s)
{
	_cleanup_json_ json_t *arr = json_array();
	if (!arr)
		return NULL;
	for (size_t i = 0; s && i < s->n; i++) {
		const Crd *c = &s->items[i];
		json_t *o = json_pack("{s:s,s:s,s:s,s:s,s:O}", "kind", c->kind, "apiVersion",
		                      c->api_version, "plural", c->plural, "short", c->short_name,
		                      "schema", c->schema);
		if (!o || json_array_append_new(arr, o) < 0)
			return NULL;
	}
	return TAKE_PTR(arr);
}
