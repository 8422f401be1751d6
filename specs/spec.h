/* spec.h - the spec model: GameServer and DevServer documents parsed from
 * YAML (libyaml) or JSON (jansson), validated against the CRDs, defaulted,
 * put in canonical form, hashed and compared (DESIGN.md section 4).
 *
 * A document after parsing is the whole typed object
 *
 *   {"apiVersion":"zlh.dev/v1","kind":"GameServer",
 *    "metadata":{"name":..,"owner":..,"labels":{..},"annotations":{..}},
 *    "spec":{..every field, defaults filled..}}
 *
 * exactly what zlhctl sends to zlh.apply_server(doc, request_id).
 *
 * Typing follows the schema, not YAML's guessing: a plain scalar where a
 * string is wanted is the string as written (version: 1.20 is "1.20");
 * booleans are true/false only (yes, on, True are errors that say so);
 * null, ~ and an empty value are null, allowed only where nullable; numbers
 * are decimal integers ([-+]?[0-9]+) and never quoted. JSON values must
 * already have the right JSON type. YAML aliases and tags are refused.
 *
 * METADATA RULES (the one place they live; zlh.apply_server mirrors them):
 *   metadata            required, a mapping; no other keys than these four
 *   metadata.name       required string, ^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$
 *                       (a DNS label, 1..63 characters)
 *   metadata.owner      required string, ^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$
 *   metadata.labels     optional mapping string -> string, default {};
 *   metadata.annotations  same rules as labels, default {}:
 *                       at most 64 entries; keys 1..253 characters, values
 *                       0..1024 characters (characters = Unicode code
 *                       points), no NUL; values must be strings (YAML plain
 *                       scalars are taken as written; JSON needs strings).
 * The document itself: apiVersion required, exactly "zlh.dev/v1"; kind
 * required, exactly one of the CRDs' kinds (case matters); metadata and spec
 * required; no other top-level keys (status is not input).
 *
 * Bounds: 1 MiB per input, 256 documents, nesting 32, 512 entries per
 * mapping or list, 20000 values per input, 64 KiB per scalar, 100 errors. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include <jansson.h>

#include "cleanup.h"
#include "specs/crd.h"
#include "specs/errors.h"

#define SPEC_API_VERSION "zlh.dev/v1"

/* Bounds on everything the input controls (a spec is a few hundred bytes). */
#define SPEC_MAX_INPUT (1024 * 1024) /* bytes of one file or stdin */
#define SPEC_MAX_DEPTH 32 /* nesting of mappings and sequences */
#define SPEC_MAX_DOCS 256 /* documents in one input */
#define SPEC_MAX_ENTRIES 512 /* entries of one mapping or sequence */
#define SPEC_MAX_NODES 20000 /* nodes in one input */
#define SPEC_MAX_SCALAR (64 * 1024) /* bytes of one scalar */

/* Metadata limits (see METADATA RULES above). */
#define SPEC_NAME_PATTERN "^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"
#define SPEC_OWNER_PATTERN "^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$"
#define SPEC_LABELS_MAX 64
#define SPEC_LABEL_KEY_MAX 253
#define SPEC_LABEL_VALUE_MAX 1024

typedef struct SpecDoc {
	char *file; /* owned; the input's name ("-" for stdin) */
	int line; /* line where the document starts (YAML), 0 for JSON */
	json_t *doc; /* owned; the whole typed document, defaults applied */
	const Crd *crd; /* borrowed from the CrdSet used to parse */
} SpecDoc;

typedef struct SpecDocs {
	SpecDoc *items; /* owned */
	size_t n;
} SpecDocs;

void spec_docs_clear(SpecDocs *d);
static inline void spec_docs_clearp(SpecDocs *d)
{
	spec_docs_clear(d);
}
#define _cleanup_spec_docs_ _cleanup_(spec_docs_clearp)

typedef enum SpecFormat {
	SPEC_FORMAT_AUTO, /* .json -> JSON; .yaml/.yml -> YAML; else JSON if
			     the first non-blank byte is { or [, else YAML */
	SPEC_FORMAT_YAML,
	SPEC_FORMAT_JSON,
	_SPEC_FORMAT_MAX,
} SpecFormat;

/* Parses and validates every document of data (len bytes; file names it in
 * errors, borrowed). JSON input is one object, an array of objects, or
 * objects one after another. Every problem of every document goes to errs.
 * 0, -EINVAL (errors added; nothing returned: all or nothing), -ENOMEM.
 * *ret (new, clear with spec_docs_clear) set on success only. */
int spec_parse(const CrdSet *crds, const char *file, const char *data, size_t len, SpecFormat fmt,
               SpecDocs *ret, SpecErrors *errs) _must_check_;

/* Reads path ("-" = stdin) and parses it with SPEC_FORMAT_AUTO. Also
 * -ENOENT/-EACCES/... when the file cannot be read (error added). */
int spec_parse_file(const CrdSet *crds, const char *path, SpecDocs *ret,
                    SpecErrors *errs) _must_check_;

/* Validates one document given as JSON (borrowed), as the portal sends it.
 * Errors carry the field path, no line. *ret_doc (new) on success. */
int spec_validate_json(const CrdSet *crds, const char *file, const json_t *doc, json_t **ret_doc,
                       SpecErrors *errs) _must_check_;

/* Borrowed accessors into a parsed document (NULL when absent). */
const char *spec_doc_kind(const json_t *doc);
const char *spec_doc_name(const json_t *doc);
const char *spec_doc_owner(const json_t *doc);
const json_t *spec_doc_spec(const json_t *doc);

/* Canonical text of any value: keys sorted by byte order, no whitespace,
 * UTF-8 as is (jansson's escaping of " \ and control characters). New
 * string, NULL on ENOMEM. */
char *spec_canonical_json(const json_t *v);

/* Hex SHA-256 of spec_canonical_json(v) into out. 0, -ENOMEM, -EIO. */
int spec_hash(const json_t *v, char out[65]) _must_check_;

/* Renders a value as YAML that this parser reads back to the same value
 * (strings that could be mistaken for something else are quoted). New
 * string, NULL on ENOMEM. */
char *spec_to_yaml(const json_t *v);

/* --- structural diff --------------------------------------------------------- */

typedef enum SpecDiffOp {
	SPEC_DIFF_ADDED, /* "+ path: new" */
	SPEC_DIFF_REMOVED, /* "- path: old" */
	SPEC_DIFF_CHANGED, /* "~ path: old -> new" */
	_SPEC_DIFF_OP_MAX,
} SpecDiffOp;

typedef struct SpecDiffEntry {
	SpecDiffOp op;
	char *path; /* owned; "" for the root */
	json_t *old_value; /* owned; NULL when added */
	json_t *new_value; /* owned; NULL when removed */
} SpecDiffEntry;

typedef struct SpecDiff {
	SpecDiffEntry *items; /* owned; objects' keys in sorted order */
	size_t n;
} SpecDiff;

/* Lists where new differs from old (both borrowed; NULL = absent): objects
 * compared key by key, lists index by index, anything else as a whole.
 * Paths are like spec.resources.memoryMiB. 0 or -ENOMEM; *ret on success
 * (clear with spec_diff_clear); n == 0 when equal. */
int spec_diff(const json_t *old, const json_t *new, SpecDiff *ret) _must_check_;
/* Same, with every path starting with prefix (e.g. "spec"). */
int spec_diff_at(const char *prefix, const json_t *old, const json_t *new,
                 SpecDiff *ret) _must_check_;
void spec_diff_clear(SpecDiff *d);
static inline void spec_diff_clearp(SpecDiff *d)
{
	spec_diff_clear(d);
}
#define _cleanup_spec_diff_ _cleanup_(spec_diff_clearp)

/* One line per entry:
 *   ~ spec.resources.memoryMiB: 4096 -> 8192
 *   + metadata.labels.tier: "modded"
 *   - spec.restore: {"backup":"b1","requestId":"..."}            */
void spec_diff_print(const SpecDiff *d, FILE *f);
