/* yaml.c - the two readers: YAML (libyaml events) and JSON (jansson) into
 * one located node tree (internal.h). Neither reader types anything: a
 * YAML plain scalar stays text until the schema says what it must be. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <yaml.h>

#include "buf.h"
#include "specs/internal.h"

Node *spec_node_free(Node *n)
{
	if (!n)
		return NULL;
	for (size_t i = 0; i < n->n; i++) {
		if (n->keys)
			spec_node_free(n->keys[i]);
		spec_node_free(n->vals[i]);
	}
	free(n->keys);
	free(n->vals);
	free(n->text);
	json_decref(n->json);
	free(n);
	return NULL;
}

void spec_node_docs_clear(NodeDocs *d)
{
	if (!d)
		return;
	for (size_t i = 0; i < d->n; i++)
		spec_node_free(d->roots[i]);
	free(d->roots);
	free(d->lines);
	*d = (NodeDocs){0};
}

static int node_new(NodeType type, int line, int col, Node **ret)
{
	Node *n = calloc(1, sizeof *n);
	if (!n)
		return -ENOMEM;
	n->type = type;
	n->line = line;
	n->col = col;
	*ret = n;
	return 0;
}

/* Appends (key, val) to a map or val to a sequence; takes both on success. */
static int node_push(Node *parent, Node *key, Node *val)
{
	if (parent->n == parent->cap) {
		size_t cap = parent->cap ? parent->cap * 2 : 4;
		Node **vals = realloc(parent->vals, cap * sizeof *vals);
		if (!vals)
			return -ENOMEM;
		parent->vals = vals;
		if (parent->type == NODE_MAP) {
			Node **keys = realloc(parent->keys, cap * sizeof *keys);
			if (!keys)
				return -ENOMEM;
			parent->keys = keys;
		}
		parent->cap = cap;
	}
	if (parent->type == NODE_MAP)
		parent->keys[parent->n] = key;
	parent->vals[parent->n++] = val;
	return 0;
}

static int docs_push(NodeDocs *d, Node *root, int line)
{
	Node **roots = realloc(d->roots, (d->n + 1) * sizeof *roots);
	if (!roots)
		return -ENOMEM;
	d->roots = roots;
	int *lines = realloc(d->lines, (d->n + 1) * sizeof *lines);
	if (!lines)
		return -ENOMEM;
	d->lines = lines;
	d->roots[d->n] = root;
	d->lines[d->n++] = line;
	return 0;
}

/* --- paths --------------------------------------------------------------- */

static void path_append(Path *p, const char *s, size_t n)
{
	size_t room = SPEC_PATH_MAX - 1 - p->len;
	if (n > room) {
		/* Truncated: end in "..." so nobody mistakes it for a real path. */
		n = room;
		memcpy(p->s + p->len, s, n);
		p->len += n;
		if (p->len >= 3)
			memcpy(p->s + p->len - 3, "...", 3);
	} else {
		memcpy(p->s + p->len, s, n);
		p->len += n;
	}
	p->s[p->len] = 0;
}

static bool key_is_simple(const char *k)
{
	if (!*k)
		return false;
	for (const char *c = k; *c; c++)
		if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') ||
		      (*c >= '0' && *c <= '9') || *c == '_' || *c == '-'))
			return false;
	return true;
}

size_t spec_path_push_key(Path *p, const char *key)
{
	size_t saved = p->len;
	if (key_is_simple(key)) {
		if (p->len > 0)
			path_append(p, ".", 1);
		path_append(p, key, strlen(key));
	} else {
		_cleanup_json_ json_t *k = json_string(key);
		_cleanup_free_ char *q = k ? json_dumps(k, JSON_ENCODE_ANY | JSON_COMPACT) : NULL;
		path_append(p, "[", 1);
		if (q)
			path_append(p, q, strlen(q));
		path_append(p, "]", 1);
	}
	return saved;
}

size_t spec_path_push_index(Path *p, size_t i)
{
	size_t saved = p->len;
	char b[32];
	int n = snprintf(b, sizeof b, "[%zu]", i);
	path_append(p, b, (size_t)n);
	return saved;
}

void spec_path_pop(Path *p, size_t saved)
{
	p->len = saved;
	p->s[saved] = 0;
}

/* --- YAML ------------------------------------------------------------------ */

typedef struct YamlReader {
	yaml_parser_t parser;
	const char *file;
	SpecErrors *errs;
	size_t nodes;
	bool failed; /* an error was reported; stop */
} YamlReader;

_printf_(3, 4) static void yaml_error_at(YamlReader *y, const yaml_mark_t *m, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	spec_errors_addv(y->errs, y->file, (int)m->line + 1, (int)m->column + 1, NULL, fmt, ap);
	va_end(ap);
	y->failed = true;
}

static void yaml_syntax_error(YamlReader *y)
{
	yaml_parser_t *p = &y->parser;
	const char *problem = p->problem ? p->problem : "syntax error";
	if (p->error == YAML_MEMORY_ERROR) {
		spec_errors_add(y->errs, y->file, 0, 0, NULL, "out of memory reading YAML");
	} else if (p->context)
		spec_errors_add(y->errs, y->file, (int)p->problem_mark.line + 1,
		                (int)p->problem_mark.column + 1, NULL, "YAML syntax error: %s %s",
		                problem, p->context);
	else
		spec_errors_add(y->errs, y->file, (int)p->problem_mark.line + 1,
		                (int)p->problem_mark.column + 1, NULL, "YAML syntax error: %s",
		                problem);
	y->failed = true;
}

/* Reads the next event; false (and an error reported) on failure. */
static bool yaml_next(YamlReader *y, yaml_event_t *ev)
{
	if (!yaml_parser_parse(&y->parser, ev)) {
		yaml_syntax_error(y);
		return false;
	}
	return true;
}

static int yaml_node(YamlReader *y, yaml_event_t *ev, int depth, Node **ret);

/* Builds the node that starts with ev (consumed). 0 with *ret set; -EINVAL
 * after reporting; -ENOMEM. */
static int yaml_node(YamlReader *y, yaml_event_t *ev, int depth, Node **ret)
{
	const yaml_mark_t *m = &ev->start_mark;
	int line = (int)m->line + 1, col = (int)m->column + 1;
	_cleanup_node_ Node *n = NULL;
	int r;

	if (++y->nodes > SPEC_MAX_NODES) {
		yaml_error_at(y, m, "too many values in one input (more than %s)", "20000");
		return -EINVAL;
	}
	switch (ev->type) {
	case YAML_ALIAS_EVENT:
		yaml_error_at(y, m, "YAML aliases (*%.60s) are not supported",
		              (const char *)ev->data.alias.anchor);
		return -EINVAL;
	case YAML_SCALAR_EVENT:
		if (ev->data.scalar.tag) {
			yaml_error_at(y, m, "YAML tags (%.60s) are not supported",
			              (const char *)ev->data.scalar.tag);
			return -EINVAL;
		}
		if (ev->data.scalar.length > SPEC_MAX_SCALAR) {
			yaml_error_at(y, m, "value longer than %s bytes", "65536");
			return -EINVAL;
		}
		r = node_new(NODE_SCALAR, line, col, &n);
		if (r < 0)
			return r;
		n->len = ev->data.scalar.length;
		n->text = malloc(n->len + 1);
		if (!n->text)
			return -ENOMEM;
		memcpy(n->text, ev->data.scalar.value, n->len);
		n->text[n->len] = 0;
		n->plain = ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
		*ret = TAKE_PTR(n);
		return 0;
	case YAML_SEQUENCE_START_EVENT:
	case YAML_MAPPING_START_EVENT: {
		bool map = ev->type == YAML_MAPPING_START_EVENT;
		const yaml_char_t *tag =
		    map ? ev->data.mapping_start.tag : ev->data.sequence_start.tag;
		if (tag) {
			yaml_error_at(y, m, "YAML tags (%.60s) are not supported",
			              (const char *)tag);
			return -EINVAL;
		}
		if (depth >= SPEC_MAX_DEPTH) {
			yaml_error_at(y, m, "nested deeper than %s levels", "32");
			return -EINVAL;
		}
		r = node_new(map ? NODE_MAP : NODE_SEQ, line, col, &n);
		if (r < 0)
			return r;
		for (;;) {
			yaml_event_t kev;
			if (!yaml_next(y, &kev))
				return -EINVAL;
			if (kev.type == YAML_MAPPING_END_EVENT ||
			    kev.type == YAML_SEQUENCE_END_EVENT) {
				yaml_event_delete(&kev);
				break;
			}
			if (n->n >= SPEC_MAX_ENTRIES) {
				yaml_error_at(y, &kev.start_mark, "more than %s entries", "512");
				yaml_event_delete(&kev);
				return -EINVAL;
			}
			_cleanup_node_ Node *key = NULL, *val = NULL;
			if (map) {
				if (kev.type != YAML_SCALAR_EVENT && kev.type != YAML_ALIAS_EVENT) {
					yaml_error_at(y, &kev.start_mark, "%s",
					              "mapping keys must be strings");
					yaml_event_delete(&kev);
					return -EINVAL;
				}
				r = yaml_node(y, &kev, depth + 1, &key);
				yaml_event_delete(&kev);
				if (r < 0)
					return r;
				for (size_t i = 0; i < n->n; i++)
					if (n->keys[i]->len == key->len &&
					    memcmp(n->keys[i]->text, key->text, key->len) == 0) {
						_cleanup_free_ char *rep =
						    spec_text_repr(key->text, key->len);
						spec_errors_add(
						    y->errs, y->file, key->line, key->col, NULL,
						    "duplicate key %s (first at line %d)",
						    rep ? rep : "?", n->keys[i]->line);
						y->failed = true;
						return -EINVAL;
					}
				if (!yaml_next(y, &kev))
					return -EINVAL;
			}
			r = yaml_node(y, &kev, depth + 1, &val);
			yaml_event_delete(&kev);
			if (r < 0)
				return r;
			r = node_push(n, key, val);
			if (r < 0)
				return r;
			key = val = NULL;
		}
		*ret = TAKE_PTR(n);
		return 0;
	}
	default:
		yaml_error_at(y, m, "%s", "unexpected YAML event");
		return -EINVAL;
	}
}

static bool is_empty_root(const Node *n)
{
	return n && n->type == NODE_SCALAR && n->plain &&
	       (n->len == 0 || strcmp(n->text, "~") == 0 || strcmp(n->text, "null") == 0);
}

int spec_yaml_read(const char *file, const char *data, size_t len, NodeDocs *ret, SpecErrors *errs)
{
	YamlReader y = {.file = file, .errs = errs};
	_cleanup_(spec_node_docs_clear) NodeDocs docs = {0};
	int r = 0;

	if (len > SPEC_MAX_INPUT) {
		spec_errors_add(errs, file, 0, 0, NULL, "input larger than %d bytes",
		                SPEC_MAX_INPUT);
		return -EINVAL;
	}
	if (!yaml_parser_initialize(&y.parser))
		return -ENOMEM;
	yaml_parser_set_input_string(&y.parser, (const unsigned char *)data, len);

	for (;;) {
		yaml_event_t ev;
		if (!yaml_next(&y, &ev)) {
			r = -EINVAL;
			break;
		}
		yaml_event_type_t t = ev.type;
		if (t == YAML_STREAM_END_EVENT) {
			yaml_event_delete(&ev);
			break;
		}
		if (t != YAML_DOCUMENT_START_EVENT) {
			/* STREAM_START, or nothing else the parser emits here. */
			yaml_event_delete(&ev);
			continue;
		}
		int line = (int)ev.start_mark.line + 1;
		yaml_event_delete(&ev);
		if (docs.n >= SPEC_MAX_DOCS) {
			spec_errors_add(errs, file, line, 1, NULL, "more than %d documents",
			                SPEC_MAX_DOCS);
			r = -EINVAL;
			break;
		}
		_cleanup_node_ Node *root = NULL;
		if (!yaml_next(&y, &ev)) {
			r = -EINVAL;
			break;
		}
		r = yaml_node(&y, &ev, 0, &root);
		yaml_event_delete(&ev);
		if (r < 0)
			break;
		if (!yaml_next(&y, &ev)) { /* DOCUMENT_END */
			r = -EINVAL;
			break;
		}
		yaml_event_delete(&ev);
		if (is_empty_root(root))
			continue; /* "---" alone, comments only: not a document */
		if (root->type == NODE_MAP && root->n > 0)
			line = root->line;
		r = docs_push(&docs, root, line);
		if (r < 0)
			break;
		root = NULL;
	}
	yaml_parser_delete(&y.parser);
	if (r == 0 && y.failed)
		r = -EINVAL;
	if (r < 0)
		return r;
	*ret = docs;
	docs = (NodeDocs){0};
	return 0;
}

/* --- JSON ------------------------------------------------------------------ */

static int json_node(const json_t *v, int depth, size_t *count, Node **ret)
{
	_cleanup_node_ Node *n = NULL;
	int r;
	if (depth > SPEC_MAX_DEPTH || ++*count > SPEC_MAX_NODES)
		return -E2BIG;
	if (json_is_object(v)) {
		if (json_object_size(v) > SPEC_MAX_ENTRIES)
			return -E2BIG;
		r = node_new(NODE_MAP, 0, 0, &n);
		if (r < 0)
			return r;
		const char *k;
		json_t *val;
		json_object_foreach((json_t *)v, k, val)
		{
			_cleanup_node_ Node *kn = NULL, *vn = NULL;
			r = node_new(NODE_SCALAR, 0, 0, &kn);
			if (r < 0)
				return r;
			kn->text = strdup(k);
			if (!kn->text)
				return -ENOMEM;
			kn->len = strlen(k);
			r = json_node(val, depth + 1, count, &vn);
			if (r < 0)
				return r;
			r = node_push(n, kn, vn);
			if (r < 0)
				return r;
			kn = vn = NULL;
		}
	} else if (json_is_array(v)) {
		if (json_array_size(v) > SPEC_MAX_ENTRIES)
			return -E2BIG;
		r = node_new(NODE_SEQ, 0, 0, &n);
		if (r < 0)
			return r;
		size_t i;
		json_t *val;
		json_array_foreach(v, i, val)
		{
			_cleanup_node_ Node *vn = NULL;
			r = json_node(val, depth + 1, count, &vn);
			if (r < 0)
				return r;
			r = node_push(n, NULL, vn);
			if (r < 0)
				return r;
			vn = NULL;
		}
	} else {
		r = node_new(NODE_SCALAR, 0, 0, &n);
		if (r < 0)
			return r;
		n->json = json_incref((json_t *)v);
	}
	*ret = TAKE_PTR(n);
	return 0;
}

int spec_node_from_json(const json_t *v, Node **ret)
{
	size_t count = 0;
	return json_node(v, 0, &count, ret);
}

static int json_add_doc(NodeDocs *docs, const char *file, const json_t *v, SpecErrors *errs)
{
	_cleanup_node_ Node *n = NULL;
	if (docs->n >= SPEC_MAX_DOCS) {
		spec_errors_add(errs, file, 0, 0, NULL, "more than %d documents", SPEC_MAX_DOCS);
		return -EINVAL;
	}
	int r = spec_node_from_json(v, &n);
	if (r == -E2BIG) {
		spec_errors_add(errs, file, 0, 0, NULL,
		                "document nested deeper than %d levels or larger than %d values",
		                SPEC_MAX_DEPTH, SPEC_MAX_NODES);
		return -EINVAL;
	}
	if (r < 0)
		return r;
	r = docs_push(docs, n, 0);
	if (r < 0)
		return r;
	n = NULL;
	return 0;
}

static size_t skip_space(const char *data, size_t len, size_t pos)
{
	while (pos < len &&
	       (data[pos] == ' ' || data[pos] == '\t' || data[pos] == '\n' || data[pos] == '\r'))
		pos++;
	return pos;
}

int spec_json_read(const char *file, const char *data, size_t len, NodeDocs *ret, bool *ret_array,
                   SpecErrors *errs)
{
	_cleanup_(spec_node_docs_clear) NodeDocs docs = {0};
	bool array = false;
	size_t pos = skip_space(data, len, 0);
	int r;

	if (len > SPEC_MAX_INPUT) {
		spec_errors_add(errs, file, 0, 0, NULL, "input larger than %d bytes",
		                SPEC_MAX_INPUT);
		return -EINVAL;
	}
	while (pos < len) {
		json_error_t jerr;
		_cleanup_json_ json_t *v = json_loadb(
		    data + pos, len - pos, JSON_REJECT_DUPLICATES | JSON_DISABLE_EOF_CHECK, &jerr);
		if (!v) {
			/* jansson counts lines within the slice; our slices start
			 * after whitespace that follows a complete value. */
			int line = jerr.line, col = jerr.column;
			if (line > 0) {
				for (size_t i = 0; i < pos; i++)
					if (data[i] == '\n')
						line++;
				if (jerr.line == 1) {
					size_t ls = pos;
					while (ls > 0 && data[ls - 1] != '\n')
						ls--;
					col += (int)(pos - ls);
				}
			}
			spec_errors_add(errs, file, line, col > 0 ? col : 0, NULL,
			                "JSON syntax error: %s", jerr.text);
			return -EINVAL;
		}
		if (json_is_array(v) && pos == skip_space(data, len, 0) && docs.n == 0) {
			size_t i;
			json_t *el;
			array = true;
			json_array_foreach(v, i, el)
			{
				r = json_add_doc(&docs, file, el, errs);
				if (r < 0)
					return r;
			}
		} else {
			if (array) {
				spec_errors_add(errs, file, 0, 0, NULL,
				                "JSON: nothing may follow a top-level array");
				return -EINVAL;
			}
			r = json_add_doc(&docs, file, v, errs);
			if (r < 0)
				return r;
		}
		pos = skip_space(data, len, pos + jerr.position);
	}
	*ret = docs;
	docs = (NodeDocs){0};
	if (ret_array)
		*ret_array = array;
	return 0;
}
