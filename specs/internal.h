/* internal.h - what the files of specs/ share and nobody else uses: the
 * located node tree both readers (YAML via libyaml, JSON via jansson)
 * produce, and the schema-driven converter from nodes to typed JSON. */
#pragma once

#include <regex.h>
#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#include "specs/crd.h"
#include "specs/errors.h"
#include "specs/spec.h"

typedef enum NodeType {
	NODE_SCALAR,
	NODE_MAP,
	NODE_SEQ,
	_NODE_TYPE_MAX,
} NodeType;

typedef struct Node Node;
struct Node {
	NodeType type;
	int line, col; /* 1-based, 0 = unknown (JSON) */
	/* NODE_SCALAR from YAML: text (owned, NUL-terminated; len bytes, may
	 * hold a NUL) and plain (unquoted, so "null", "true", "12" may mean
	 * more than text). From JSON: json (owned reference), text NULL. */
	char *text;
	size_t len;
	bool plain;
	json_t *json;
	/* NODE_MAP: keys[i] (scalars) -> vals[i]; NODE_SEQ: vals[i]. Owned. */
	Node **keys;
	Node **vals;
	size_t n;
	size_t cap;
};

Node *spec_node_free(Node *n);
DEFINE_TRIVIAL_CLEANUP_FUNC(Node *, spec_node_free)
#define _cleanup_node_ _cleanup_(spec_node_freep)

/* A parsed stream: one root node per document (NULL for an empty document),
 * with the line where each document starts. */
typedef struct NodeDocs {
	Node **roots;
	int *lines;
	size_t n;
} NodeDocs;
void spec_node_docs_clear(NodeDocs *d);

/* Reads a YAML stream. Syntax errors and unsupported features (aliases,
 * tags) are added to errs located at file:line:col. 0, -EINVAL (errors
 * added), -ENOMEM. *ret set on success only. */
int spec_yaml_read(const char *file, const char *data, size_t len, NodeDocs *ret, SpecErrors *errs);

/* Reads JSON: one object, an array of objects or a stream of objects.
 * doc_per_element: set when the top level was an array (paths get "[i]").
 * 0, -EINVAL (errors added), -ENOMEM. */
int spec_json_read(const char *file, const char *data, size_t len, NodeDocs *ret, bool *ret_array,
                   SpecErrors *errs);

/* Builds a node tree from a JSON value (borrowed; scalars referenced). */
int spec_node_from_json(const json_t *v, Node **ret);

/* Compiled patterns of a schema, looked up by pattern text. */
typedef struct RegexEntry {
	char *pattern;
	regex_t re;
} RegexEntry;
typedef struct RegexCache {
	RegexEntry *items;
	size_t n;
} RegexCache;
/* Compiles pattern unless cached. 0, -EINVAL (bad pattern; message in
 * ret_err if non-NULL, new), -ENOMEM. */
int spec_regex_add(RegexCache *c, const char *pattern, char **ret_err);
const regex_t *spec_regex_get(const RegexCache *c, const char *pattern);
void spec_regex_clear(RegexCache *c);

/* Field paths: "spec.resources.memoryMiB", "spec.items[0]", keys with
 * other characters than [A-Za-z0-9_-] as ["a.b"]. Bounded, truncated. */
#define SPEC_PATH_MAX 512
typedef struct Path {
	char s[SPEC_PATH_MAX];
	size_t len;
} Path;
size_t spec_path_push_key(Path *p, const char *key);
size_t spec_path_push_index(Path *p, size_t i);
void spec_path_pop(Path *p, size_t saved);

/* Converts a node to typed JSON as the schema says, adding every problem
 * to errs. */
typedef struct Conv {
	const char *file;
	SpecErrors *errs;
	const RegexCache *rx; /* patterns are looked up here, */
	const RegexCache *rx2; /* then here (may be NULL) */
	bool apply_defaults;
	Path path;
	int oom; /* set when an allocation failed */
} Conv;
/* Returns the new value, or NULL after adding errors (or on ENOMEM, with
 * c->oom set). key: the key node naming this value (for locating errors
 * about a missing child), may be NULL. */
json_t *spec_convert(Conv *c, const Node *n, const Node *key, const json_t *schema);

/* Fills defaults of the object schema into v (an object) recursively. */
int spec_apply_defaults(json_t *v, const json_t *schema);

/* Adds an error located at node n (or at the current path only). */
void spec_conv_error(Conv *c, const Node *n, const char *fmt, ...) _printf_(3, 4);

/* Checks a string value against the string keywords of schema. true = ok. */
bool spec_check_string(Conv *c, const Node *n, const char *s, size_t len, const json_t *schema);

/* Characters (UTF-8 code points) in s. */
size_t spec_utf8_len(const char *s, size_t len);

/* Short printable form of a value for messages (new): strings quoted and
 * cut at 60 characters. */
char *spec_value_repr(const json_t *v);
char *spec_text_repr(const char *s, size_t len);

/* Format checks. */
bool spec_is_uuid(const char *s);
bool spec_is_datetime(const char *s);
bool spec_is_duration(const char *s);
