/* spec.c - documents: envelope and metadata rules, parsing entry points,
 * canonical form and hash (spec.h). */
#include "specs/spec.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "buf.h"
#include "specs/internal.h"
#include "util.h"

void spec_docs_clear(SpecDocs *d)
{
	if (!d)
		return;
	for (size_t i = 0; i < d->n; i++) {
		free(d->items[i].file);
		json_decref(d->items[i].doc);
	}
	free(d->items);
	*d = (SpecDocs){0};
}

/* --- metadata ------------------------------------------------------------------ */

/* A map of string to string (labels, annotations); see METADATA RULES. */
static json_t *conv_string_map(Conv *c, const Node *n)
{
	static const char key_schema[] = "{\"type\":\"string\",\"minLength\":1,\"maxLength\":253}";
	static const char val_schema[] = "{\"type\":\"string\",\"maxLength\":1024}";
	if (n->type != NODE_MAP) {
		spec_conv_error(c, n, "expected a mapping of strings to strings");
		return NULL;
	}
	if (n->n > SPEC_LABELS_MAX) {
		spec_conv_error(c, n, "%zu entries are more than the maximum %d", n->n,
		                SPEC_LABELS_MAX);
		return NULL;
	}
	_cleanup_json_ json_t *ks = json_loads(key_schema, 0, NULL);
	_cleanup_json_ json_t *vs = json_loads(val_schema, 0, NULL);
	_cleanup_json_ json_t *obj = json_object();
	if (!ks || !vs || !obj) {
		c->oom = 1;
		return NULL;
	}
	bool ok = true;
	for (size_t i = 0; i < n->n; i++) {
		const Node *kn = n->keys[i];
		const char *k = kn->json ? json_string_value(kn->json) : kn->text;
		size_t klen = kn->json ? json_string_length(kn->json) : kn->len;
		size_t saved = spec_path_push_key(&c->path, k && strlen(k) == klen ? k : "?");
		if (!k || !spec_check_string(c, kn, k, klen, ks))
			ok = false;
		else {
			json_t *v = spec_convert(c, n->vals[i], kn, vs);
			if (!v || json_object_set_new(obj, k, v) < 0)
				ok = false;
		}
		spec_path_pop(&c->path, saved);
	}
	return ok ? TAKE_PTR(obj) : NULL;
}

static json_t *conv_metadata(Conv *c, const Node *n, const Node *key)
{
	static const char name_schema[] =
	    "{\"type\":\"string\",\"pattern\":\"" SPEC_NAME_PATTERN "\"}";
	static const char owner_schema[] =
	    "{\"type\":\"string\",\"pattern\":\"" SPEC_OWNER_PATTERN "\"}";
	if (n->type != NODE_MAP) {
		spec_conv_error(c, n, "expected a mapping with name and owner");
		return NULL;
	}
	_cleanup_json_ json_t *nsch = json_loads(name_schema, 0, NULL);
	_cleanup_json_ json_t *osch = json_loads(owner_schema, 0, NULL);
	_cleanup_json_ json_t *obj = json_object();
	if (!nsch || !osch || !obj) {
		c->oom = 1;
		return NULL;
	}
	bool ok = true, seen_name = false, seen_owner = false;
	for (size_t i = 0; i < n->n; i++) {
		const Node *kn = n->keys[i];
		const char *k = kn->json ? json_string_value(kn->json) : kn->text;
		if (k && !kn->json && strlen(k) != kn->len)
			k = NULL;
		size_t saved = spec_path_push_key(&c->path, k ? k : "?");
		json_t *v = NULL;
		if (k && strcmp(k, "name") == 0) {
			seen_name = true;
			v = spec_convert(c, n->vals[i], kn, nsch);
		} else if (k && strcmp(k, "owner") == 0) {
			seen_owner = true;
			v = spec_convert(c, n->vals[i], kn, osch);
		} else if (k && (strcmp(k, "labels") == 0 || strcmp(k, "annotations") == 0))
			v = conv_string_map(c, n->vals[i]);
		else {
			spec_conv_error(c, kn, "unknown field");
			ok = false;
			spec_path_pop(&c->path, saved);
			continue;
		}
		if (!v || json_object_set_new(obj, k, v) < 0)
			ok = false;
		spec_path_pop(&c->path, saved);
	}
	static const char *const req[] = {"name", "owner"};
	bool seen[] = {seen_name, seen_owner};
	for (size_t i = 0; i < ELEMENTSOF(req); i++) {
		if (seen[i])
			continue;
		size_t saved = spec_path_push_key(&c->path, req[i]);
		spec_conv_error(c, key ? key : n, "required field is missing");
		spec_path_pop(&c->path, saved);
		ok = false;
	}
	if (!ok)
		return NULL;
	for (size_t i = 0; i < 2; i++) {
		const char *k = i ? "annotations" : "labels";
		if (json_object_get(obj, k))
			continue;
		json_t *e = json_object();
		if (!e || json_object_set_new(obj, k, e) < 0) {
			c->oom = 1;
			return NULL;
		}
	}
	return TAKE_PTR(obj);
}

/* --- the document -------------------------------------------------------------- */

static const char *node_key(const Node *kn)
{
	if (kn->json)
		return json_string_value(kn->json);
	return strlen(kn->text) == kn->len ? kn->text : NULL;
}

/* Converts one document root; NULL after adding errors. */
static json_t *conv_doc(Conv *c, const CrdSet *crds, const Node *root, const Crd **ret_crd)
{
	if (root->type != NODE_MAP) {
		spec_conv_error(c, root,
		                "a document must be a mapping with apiVersion, kind, metadata "
		                "and spec");
		return NULL;
	}
	const Node *api = NULL, *kind = NULL, *meta = NULL, *spec = NULL;
	const Node *meta_k = NULL, *spec_k = NULL;
	bool ok = true;
	for (size_t i = 0; i < root->n; i++) {
		const Node *kn = root->keys[i];
		const char *k = node_key(kn);
		if (k && strcmp(k, "apiVersion") == 0)
			api = root->vals[i];
		else if (k && strcmp(k, "kind") == 0)
			kind = root->vals[i];
		else if (k && strcmp(k, "metadata") == 0) {
			meta = root->vals[i];
			meta_k = kn;
		} else if (k && strcmp(k, "spec") == 0) {
			spec = root->vals[i];
			spec_k = kn;
		} else {
			size_t saved = spec_path_push_key(&c->path, k ? k : "?");
			if (k && strcmp(k, "status") == 0)
				spec_conv_error(c, kn,
				                "unknown field (status is written by the "
				                "controller, not applied)");
			else
				spec_conv_error(c, kn, "unknown field");
			spec_path_pop(&c->path, saved);
			ok = false;
		}
	}

	static const char str_schema[] = "{\"type\":\"string\"}";
	_cleanup_json_ json_t *ssch = json_loads(str_schema, 0, NULL);
	_cleanup_json_ json_t *doc = json_object();
	if (!ssch || !doc) {
		c->oom = 1;
		return NULL;
	}
	const struct {
		const char *name;
		const Node *n;
	} parts[] = {{"apiVersion", api}, {"kind", kind}, {"metadata", meta}, {"spec", spec}};
	for (size_t i = 0; i < ELEMENTSOF(parts); i++)
		if (!parts[i].n) {
			size_t saved = spec_path_push_key(&c->path, parts[i].name);
			spec_conv_error(c, root, "required field is missing");
			spec_path_pop(&c->path, saved);
			ok = false;
		}

	if (api) {
		size_t saved = spec_path_push_key(&c->path, "apiVersion");
		_cleanup_json_ json_t *v = spec_convert(c, api, NULL, ssch);
		if (!v)
			ok = false;
		else if (strcmp(json_string_value(v), SPEC_API_VERSION) != 0) {
			_cleanup_free_ char *rep = spec_value_repr(v);
			spec_conv_error(c, api, "%s is not %s", rep ? rep : "?", SPEC_API_VERSION);
			ok = false;
		} else if (json_object_set(doc, "apiVersion", v) < 0)
			c->oom = 1;
		spec_path_pop(&c->path, saved);
	}

	const Crd *crd = NULL;
	if (kind) {
		size_t saved = spec_path_push_key(&c->path, "kind");
		_cleanup_json_ json_t *v = spec_convert(c, kind, NULL, ssch);
		if (!v)
			ok = false;
		else {
			const char *ks = json_string_value(v);
			crd = crd_set_find_kind(crds, ks);
			if (!crd) {
				_cleanup_free_ char *rep = spec_value_repr(v);
				const Crd *near = crd_set_find(crds, ks);
				_cleanup_buf_ Buf known = BUF_INIT;
				for (size_t i = 0; crds && i < crds->n; i++)
					if (buf_printf(&known, "%s%s", i ? ", " : "",
					               crds->items[i].kind) < 0)
						c->oom = 1;
				if (near)
					spec_conv_error(c, kind,
					                "unknown kind %s (did you mean %s?)",
					                rep ? rep : "?", near->kind);
				else
					spec_conv_error(c, kind, "unknown kind %s (known: %s)",
					                rep ? rep : "?",
					                known.data ? known.data : "none");
				ok = false;
			} else if (json_object_set(doc, "kind", v) < 0)
				c->oom = 1;
		}
		spec_path_pop(&c->path, saved);
	}

	if (meta) {
		size_t saved = spec_path_push_key(&c->path, "metadata");
		json_t *m = conv_metadata(c, meta, meta_k);
		if (!m || json_object_set_new(doc, "metadata", m) < 0)
			ok = false;
		spec_path_pop(&c->path, saved);
	}

	if (spec && crd) {
		size_t saved = spec_path_push_key(&c->path, "spec");
		c->rx2 = crd->regex;
		json_t *s = spec_convert(c, spec, spec_k, crd->schema);
		if (!s || json_object_set_new(doc, "spec", s) < 0)
			ok = false;
		spec_path_pop(&c->path, saved);
	}
	if (!ok || c->oom)
		return NULL;
	*ret_crd = crd;
	return TAKE_PTR(doc);
}

/* Patterns of the metadata rules, compiled once per call. */
static int meta_regex(RegexCache *rx)
{
	int r = spec_regex_add(rx, SPEC_NAME_PATTERN, NULL);
	if (r >= 0)
		r = spec_regex_add(rx, SPEC_OWNER_PATTERN, NULL);
	return r;
}

static int convert_all(const CrdSet *crds, const char *file, const NodeDocs *nd, bool array,
                       SpecDocs *ret, SpecErrors *errs)
{
	RegexCache mrx = {0};
	int r = meta_regex(&mrx);
	if (r < 0) {
		spec_regex_clear(&mrx);
		return r == -EINVAL ? -EIO : r;
	}
	_cleanup_spec_docs_ SpecDocs docs = {0};
	docs.items = calloc(nd->n ? nd->n : 1, sizeof *docs.items);
	if (!docs.items) {
		r = -ENOMEM;
		goto out;
	}

	bool failed = false;
	for (size_t i = 0; i < nd->n; i++) {
		Conv c = {.file = file, .errs = errs, .rx = &mrx, .apply_defaults = true};
		if (array)
			spec_path_push_index(&c.path, i);
		const Crd *crd = NULL;
		json_t *doc = conv_doc(&c, crds, nd->roots[i], &crd);
		if (c.oom) {
			json_decref(doc);
			r = -ENOMEM;
			goto out;
		}
		if (!doc) {
			failed = true;
			continue;
		}
		SpecDoc *d = &docs.items[docs.n];
		d->file = strdup(file);
		if (!d->file) {
			json_decref(doc);
			r = -ENOMEM;
			goto out;
		}
		d->doc = doc;
		d->line = nd->lines[i];
		d->crd = crd;
		docs.n++;
	}
	if (failed) {
		r = -EINVAL;
		goto out;
	}
	*ret = docs;
	docs = (SpecDocs){0};
	r = 0;
out:
	spec_regex_clear(&mrx);
	return r;
}

static SpecFormat detect(const char *file, const char *data, size_t len)
{
	if (file && str_endswith(file, ".json"))
		return SPEC_FORMAT_JSON;
	if (file && (str_endswith(file, ".yaml") || str_endswith(file, ".yml")))
		return SPEC_FORMAT_YAML;
	for (size_t i = 0; i < len; i++) {
		char ch = data[i];
		if (ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r')
			continue;
		return ch == '{' || ch == '[' ? SPEC_FORMAT_JSON : SPEC_FORMAT_YAML;
	}
	return SPEC_FORMAT_YAML;
}

int spec_parse(const CrdSet *crds, const char *file, const char *data, size_t len, SpecFormat fmt,
               SpecDocs *ret, SpecErrors *errs)
{
	_cleanup_(spec_node_docs_clear) NodeDocs nd = {0};
	bool array = false;
	int r;
	if (!file)
		file = "<input>";
	if (fmt == SPEC_FORMAT_AUTO)
		fmt = detect(file, data, len);
	if (fmt == SPEC_FORMAT_JSON)
		r = spec_json_read(file, data, len, &nd, &array, errs);
	else
		r = spec_yaml_read(file, data, len, &nd, errs);
	if (r < 0)
		return r;
	if (nd.n == 0) {
		spec_errors_add(errs, file, 0, 0, NULL, "no documents");
		return -EINVAL;
	}
	return convert_all(crds, file, &nd, array, ret, errs);
}

int spec_parse_file(const CrdSet *crds, const char *path, SpecDocs *ret, SpecErrors *errs)
{
	_cleanup_free_ char *data = NULL;
	size_t len = 0;
	int r;
	if (strcmp(path, "-") == 0) {
		_cleanup_buf_ Buf b = {.max = SPEC_MAX_INPUT};
		char chunk[8192];
		size_t n;
		while ((n = fread(chunk, 1, sizeof chunk, stdin)) > 0) {
			r = buf_append(&b, chunk, n);
			if (r == -E2BIG) {
				spec_errors_add(errs, "-", 0, 0, NULL, "input larger than %d bytes",
				                SPEC_MAX_INPUT);
				return -EINVAL;
			}
			if (r < 0)
				return r;
		}
		if (ferror(stdin)) {
			spec_errors_add(errs, "-", 0, 0, NULL, "cannot read standard input");
			return -EIO;
		}
		len = b.len;
		data = buf_steal(&b);
		if (!data)
			return -ENOMEM;
	} else {
		r = file_read_all(path, SPEC_MAX_INPUT, &data, &len);
		if (r < 0) {
			if (r == -E2BIG || r == -EFBIG)
				spec_errors_add(errs, path, 0, 0, NULL,
				                "input larger than %d bytes", SPEC_MAX_INPUT);
			else
				spec_errors_add(errs, path, 0, 0, NULL, "cannot read: %s",
				                strerror(-r));
			return r == -E2BIG || r == -EFBIG ? -EINVAL : r;
		}
	}
	return spec_parse(crds, path, data, len, SPEC_FORMAT_AUTO, ret, errs);
}

int spec_validate_json(const CrdSet *crds, const char *file, const json_t *doc, json_t **ret_doc,
                       SpecErrors *errs)
{
	_cleanup_node_ Node *root = NULL;
	if (!file)
		file = "<input>";
	int r = spec_node_from_json(doc, &root);
	if (r == -E2BIG) {
		spec_errors_add(errs, file, 0, 0, NULL,
		                "document nested deeper than %d levels or larger than %d values",
		                SPEC_MAX_DEPTH, SPEC_MAX_NODES);
		return -EINVAL;
	}
	if (r < 0)
		return r;
	Node *roots[1] = {root};
	int lines[1] = {0};
	NodeDocs one = {.roots = roots, .lines = lines, .n = 1};
	_cleanup_spec_docs_ SpecDocs docs = {0};
	r = convert_all(crds, file, &one, false, &docs, errs);
	if (r < 0)
		return r;
	*ret_doc = TAKE_PTR(docs.items[0].doc);
	return 0;
}

const char *spec_doc_kind(const json_t *doc)
{
	return json_string_value(json_object_get(doc, "kind"));
}

const char *spec_doc_name(const json_t *doc)
{
	return json_string_value(json_object_get(json_object_get(doc, "metadata"), "name"));
}

const char *spec_doc_owner(const json_t *doc)
{
	return json_string_value(json_object_get(json_object_get(doc, "metadata"), "owner"));
}

const json_t *spec_doc_spec(const json_t *doc)
{
	return json_object_get(doc, "spec");
}

/* --- canonical form and hash ------------------------------------------------------ */

char *spec_canonical_json(const json_t *v)
{
	if (!v)
		return NULL;
	return json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
}

int spec_hash(const json_t *v, char out[65])
{
	_cleanup_free_ char *s = spec_canonical_json(v);
	if (!s)
		return -ENOMEM;
	return sha256_hex(s, strlen(s), out);
}
