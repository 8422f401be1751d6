/* Unit tests for specs/spec.h: parsing, typing, validation with located
 * errors, defaults, canonical form, hash, JSON input, diff, YAML output. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "specs/crd.h"
#include "specs/spec.h"
#include "util.h"

static CrdSet *crds;

static int group_setup(void **state)
{
	(void)state;
	_cleanup_free_ char *dir = NULL;
	SpecErrors e = SPEC_ERRORS_INIT;
	if (crd_dir_find(NULL, &dir) < 0)
		return -1;
	int r = crd_set_load(dir, &crds, &e);
	spec_errors_print(&e, stderr);
	spec_errors_clear(&e);
	return r < 0 ? -1 : 0;
}

static int group_teardown(void **state)
{
	(void)state;
	crds = crd_set_free(crds);
	return 0;
}

/* All errors, one per line (new). */
static char *errors_text(const SpecErrors *e)
{
	Buf b = BUF_INIT;
	for (size_t i = 0; i < e->n; i++) {
		_cleanup_free_ char *s = spec_error_format(&e->items[i]);
		assert_non_null(s);
		assert_int_equal(buf_printf(&b, "%s\n", s), 0);
	}
	if (!b.data)
		return strdup("");
	return buf_steal(&b);
}

/* Parses text that must fail; returns every error (new). */
static char *parse_errors(const char *file, const char *text)
{
	SpecDocs docs = {0};
	SpecErrors e = SPEC_ERRORS_INIT;
	int r = spec_parse(crds, file, text, strlen(text), SPEC_FORMAT_AUTO, &docs, &e);
	assert_int_equal(r, -EINVAL);
	assert_int_equal(docs.n, 0);
	assert_null(docs.items);
	char *s = errors_text(&e);
	spec_errors_clear(&e);
	return s;
}

/* Parses text that must succeed with n documents. */
static void parse_ok(const char *file, const char *text, size_t n, SpecDocs *ret)
{
	SpecErrors e = SPEC_ERRORS_INIT;
	int r = spec_parse(crds, file, text, strlen(text), SPEC_FORMAT_AUTO, ret, &e);
	if (r < 0) {
		spec_errors_print(&e, stderr);
		fail_msg("parse failed: %d", r);
	}
	assert_int_equal(e.n, 0);
	assert_int_equal(ret->n, n);
	spec_errors_clear(&e);
}

/* Canonical JSON of one parsed document (new). */
static char *canon1(const char *file, const char *text)
{
	SpecDocs docs = {0};
	parse_ok(file, text, 1, &docs);
	char *c = spec_canonical_json(docs.items[0].doc);
	spec_docs_clear(&docs);
	return c;
}

#define ASSERT_ERRORS(file, text, want)                               \
	do {                                                          \
		_cleanup_free_ char *_got = parse_errors(file, text); \
		assert_string_equal(_got, want);                      \
	} while (0)

/* Lines 1-6; the first spec field is on line 7. */
#define HEAD                       \
	"apiVersion: zlh.dev/v1\n" \
	"kind: GameServer\n"       \
	"metadata:\n"              \
	"  name: s1\n"             \
	"  owner: u1\n"            \
	"spec:\n"
#define MIN HEAD "  variant: paper\n  version: \"1.21.4\"\n"

/* --- typing ---------------------------------------------------------------- */

static void typing__plain_version__stays_string_as_written(void **state)
{
	(void)state;
	SpecDocs docs = {0};
	parse_ok("t.yaml", HEAD "  variant: paper\n  version: 1.20\n", 1, &docs);
	const json_t *spec = spec_doc_spec(docs.items[0].doc);
	assert_string_equal(json_string_value(json_object_get(spec, "version")), "1.20");
	spec_docs_clear(&docs);

	parse_ok("t.yaml", HEAD "  variant: paper\n  version: 1.10\n", 1, &docs);
	spec = spec_doc_spec(docs.items[0].doc);
	assert_string_equal(json_string_value(json_object_get(spec, "version")), "1.10");
	spec_docs_clear(&docs);

	/* A string field takes true/null-looking plain text only where it is not
	 * null: `true` is the string "true". */
	parse_ok("t.yaml", HEAD "  variant: paper\n  version: 1e3\n", 1, &docs);
	spec = spec_doc_spec(docs.items[0].doc);
	assert_string_equal(json_string_value(json_object_get(spec, "version")), "1e3");
	spec_docs_clear(&docs);
}

static void typing__yes_for_boolean__rejected_with_hint(void **state)
{
	(void)state;
	ASSERT_ERRORS("t.yaml", MIN "  publish: yes\n",
	              "t.yaml:9:12: spec.publish: \"yes\" is not a boolean here: write true or "
	              "false (YAML 1.1 booleans like yes/no/on/off are not accepted)\n");
	ASSERT_ERRORS("t.yaml", MIN "  publish: True\n",
	              "t.yaml:9:12: spec.publish: \"True\" is not a boolean here: write true or "
	              "false (YAML 1.1 booleans like yes/no/on/off are not accepted)\n");
}

static void typing__quoted_true_for_boolean__rejected(void **state)
{
	(void)state;
	ASSERT_ERRORS("t.yaml", MIN "  publish: \"true\"\n",
	              "t.yaml:9:12: spec.publish: expected boolean, got the quoted string "
	              "\"true\" (write true or false without quotes)\n");
}

static void typing__quoted_number_for_integer__rejected(void **state)
{
	(void)state;
	ASSERT_ERRORS("t.yaml", MIN "  resources:\n    memoryMiB: \"4096\"\n",
	              "t.yaml:10:16: spec.resources.memoryMiB: expected integer, got the quoted "
	              "string \"4096\" (write numbers without quotes)\n");
	ASSERT_ERRORS("t.yaml", MIN "  resources:\n    memoryMiB: 4096.0\n",
	              "t.yaml:10:16: spec.resources.memoryMiB: expected integer, got \"4096.0\"\n");
	ASSERT_ERRORS("t.yaml", MIN "  resources:\n    memoryMiB: 99999999999999999999999\n",
	              "t.yaml:10:16: spec.resources.memoryMiB: expected integer, got "
	              "\"99999999999999999999999\" (out of range)\n");
}

static void typing__null__only_where_nullable(void **state)
{
	(void)state;
	SpecDocs docs = {0};
	parse_ok("t.yaml", MIN "  hostname: ~\n  restartAt: null\n  restore:\n", 1, &docs);
	const json_t *spec = spec_doc_spec(docs.items[0].doc);
	assert_true(json_is_null(json_object_get(spec, "hostname")));
	assert_true(json_is_null(json_object_get(spec, "restartAt")));
	assert_true(json_is_null(json_object_get(spec, "restore")));
	spec_docs_clear(&docs);

	ASSERT_ERRORS("t.yaml", MIN "  power: null\n",
	              "t.yaml:9:10: spec.power: must not be null (leave the field out to get the "
	              "default)\n");
	ASSERT_ERRORS("t.yaml", HEAD "  variant: ~\n  version: 1.2\n",
	              "t.yaml:7:12: spec.variant: must not be null\n");
	/* Quoted "null" is a string. */
	ASSERT_ERRORS("t.yaml", MIN "  hostname: \"null\"\n  power: \"~\"\n",
	              "t.yaml:10:10: spec.power: \"~\" is not one of running, stopped\n");
}

static void typing__strings_with_nul__rejected(void **state)
{
	(void)state;
	ASSERT_ERRORS("t.yaml", MIN "  hostname: \"a\\0b\"\n",
	              "t.yaml:9:13: spec.hostname: strings must not contain NUL characters\n");
}

/* --- schema rules ---------------------------------------------------------- */

static void rule__type__mapping_expected(void **state)
{
	(void)state;
	ASSERT_ERRORS("t.yaml", MIN "  resources: 5\n",
	              "t.yaml:9:14: spec.resources: expected a mapping (object), got \"5\"\n");
	ASSERT_ERRORS("t.yaml", HEAD "  variant: paper\n  version: [1]\n",
	              "t.yaml:8:12: spec.version: expected string, got a list\n");
}

static void rule__required__located_at_parent_key(void **state)
{
	(void)state;
	ASSERT_ERRORS("t.yaml", HEAD "  variant: paper\n",
	              "t.yaml:6:1: spec.version: required field is missing\n");
	ASSERT_ERRORS("t.yaml", MIN "  restore: {backup: b1}\n",
	              "t.yaml:9:3: spec.restore.requestId: required field is missing\n");
}

static void rule__enum__lists_choices(void **state)
{
	(void)state;
	ASSERT_ERRORS("t.yaml", HEAD "  variant: papr\n  version: \"1\"\n",
	              "t.yaml:7:12: spec.variant: \"papr\" is not one of vanilla, paper, purpur, "
	              "fabric, forge, neoforge\n");
}

static void rule__minimum_maximum(void **state)
{
	(void)state;
	ASSERT_ERRORS("survival.yaml", MIN "  resources:\n    memoryMiB: 100\n",
	              "survival.yaml:10:16: spec.resources.memoryMiB: 100 is below the minimum "
	              "512\n");
	ASSERT_ERRORS("t.yaml", MIN "  resources: {cores: 64}\n",
	              "t.yaml:9:22: spec.resources.cores: 64 is above the maximum 32\n");
	ASSERT_ERRORS("t.yaml", MIN "  resources: {cores: -1}\n",
	              "t.yaml:9:22: spec.resources.cores: -1 is below the minimum 1\n");
}

static void rule__min_max_length(void **state)
{
	(void)state;
	ASSERT_ERRORS("t.yaml", HEAD "  variant: paper\n  version: \"\"\n",
	              "t.yaml:8:12: spec.version: \"\" is shorter than the minimum length 1\n"
	              "t.yaml:8:12: spec.version: \"\" does not match "
	              "^[0-9A-Za-z][0-9A-Za-z._+-]*$\n");
	char host[64 + 1];
	memset(host, 'a', 64);
	host[64] = 0;
	char doc[512];
	snprintf(doc, sizeof doc, MIN "  hostname: %s\n", host);
	ASSERT_ERRORS("t.yaml", doc,
	              "t.yaml:9:13: spec.hostname: "
	              "\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa...\" is "
	              "longer than the maximum length 63 (64 characters)\n");
	/* Characters, not bytes: 63 two-byte characters fit a 63 limit but not
	 * the pattern; check length counting on version (max 32). */
	ASSERT_ERRORS(
	    "t.yaml",
	    HEAD "  variant: paper\n  version: "
	         "\"\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
	         "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
	         "\xc3\xa9\"\n",
	    "t.yaml:8:12: spec.version: \"\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
	    "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
	    "\xc3\xa9\xc3\xa9\" does not match ^[0-9A-Za-z][0-9A-Za-z._+-]*$\n");
}

static void rule__pattern(void **state)
{
	(void)state;
	ASSERT_ERRORS("t.yaml", MIN "  hostname: Bad_Host\n",
	              "t.yaml:9:13: spec.hostname: \"Bad_Host\" does not match "
	              "^[a-z0-9]([a-z0-9-]*[a-z0-9])?$\n");
}

static void rule__format_duration_uuid_datetime(void **state)
{
	(void)state;
	ASSERT_ERRORS("t.yaml", MIN "  backups: {every: 6x}\n",
	              "t.yaml:9:20: spec.backups.every: \"6x\" is not a duration (like 30s, 5m, "
	              "6h, 1h30m)\n");
	ASSERT_ERRORS("t.yaml", MIN "  restore: {backup: b1, requestId: not-a-uuid}\n",
	              "t.yaml:9:36: spec.restore.requestId: \"not-a-uuid\" is not a UUID (like "
	              "0b4c3a52-7f0e-4d55-9d0f-2f1c8e4b6a10)\n");
	ASSERT_ERRORS("t.yaml", MIN "  restartAt: 2025-13-01T00:00:00Z\n",
	              "t.yaml:9:14: spec.restartAt: \"2025-13-01T00:00:00Z\" is not an RFC 3339 "
	              "date-time (like 2025-01-31T12:00:00Z)\n");
	static const char *const bad_times[] = {
	    "2025-02-29T00:00:00Z", "2025-01-01 00:00:00Z",     "2025-01-01T24:00:00Z",
	    "2025-01-01T00:00:00",  "2025-01-01T00:00:00+0100", "2025-01-01T00:00:00.Z",
	};
	for (size_t i = 0; i < ELEMENTSOF(bad_times); i++) {
		char doc[256];
		snprintf(doc, sizeof doc, MIN "  restartAt: \"%s\"\n", bad_times[i]);
		_cleanup_free_ char *got = parse_errors("t.yaml", doc);
		assert_non_null(strstr(got, "is not an RFC 3339 date-time"));
	}
	static const char *const good_times[] = {
	    "2024-02-29T23:59:60Z",
	    "2025-01-31t12:00:00.123456z",
	    "2025-06-30T12:00:00+02:00",
	    "2025-06-30T12:00:00-23:59",
	};
	for (size_t i = 0; i < ELEMENTSOF(good_times); i++) {
		char doc[256];
		SpecDocs docs = {0};
		snprintf(doc, sizeof doc, MIN "  restartAt: %s\n", good_times[i]);
		parse_ok("t.yaml", doc, 1, &docs);
		spec_docs_clear(&docs);
	}
	SpecDocs docs = {0};
	parse_ok("t.yaml",
	         MIN "  backups: {every: 1h30m}\n  restore: {backup: b1, requestId: "
	             "0B4C3A52-7f0e-4d55-9d0f-2f1c8e4b6a10}\n",
	         1, &docs);
	spec_docs_clear(&docs);
}

static void rule__unknown_field__at_key(void **state)
{
	(void)state;
	ASSERT_ERRORS("t.yaml", MIN "  colour: red\n  resources: {ram: 4}\n",
	              "t.yaml:9:3: spec.colour: unknown field\n"
	              "t.yaml:10:15: spec.resources.ram: unknown field\n");
	ASSERT_ERRORS("t.yaml", MIN "  Publish: true\n",
	              "t.yaml:9:3: spec.Publish: unknown field (did you mean publish?)\n");
	ASSERT_ERRORS("t.yaml", MIN "status: {phase: Ready}\n",
	              "t.yaml:9:1: status: unknown field (status is written by the controller, "
	              "not applied)\n");
}

static void rule__many_errors__all_reported(void **state)
{
	(void)state;
	ASSERT_ERRORS("t.yaml",
	              "apiVersion: zlh.dev/v1\n"
	              "kind: GameServer\n"
	              "metadata:\n"
	              "  name: Bad_Name\n"
	              "  owner: u1\n"
	              "spec:\n"
	              "  variant: papr\n"
	              "  resources: {cores: 0, memoryMiB: 100, diskGiB: 9999}\n"
	              "  power: on\n"
	              "  publish: yes\n"
	              "  extra: 1\n",
	              "t.yaml:4:9: metadata.name: \"Bad_Name\" does not match "
	              "^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$\n"
	              "t.yaml:7:12: spec.variant: \"papr\" is not one of vanilla, paper, purpur, "
	              "fabric, forge, neoforge\n"
	              "t.yaml:8:22: spec.resources.cores: 0 is below the minimum 1\n"
	              "t.yaml:8:36: spec.resources.memoryMiB: 100 is below the minimum 512\n"
	              "t.yaml:8:50: spec.resources.diskGiB: 9999 is above the maximum 2048\n"
	              "t.yaml:9:10: spec.power: \"on\" is not one of running, stopped\n"
	              "t.yaml:10:12: spec.publish: \"yes\" is not a boolean here: write true or "
	              "false (YAML 1.1 booleans like yes/no/on/off are not accepted)\n"
	              "t.yaml:11:3: spec.extra: unknown field\n"
	              "t.yaml:6:1: spec.version: required field is missing\n");
}

static void errors__many__capped(void **state)
{
	(void)state;
	Buf b = BUF_INIT;
	assert_int_equal(buf_puts(&b, HEAD "  variant: paper\n  version: x\n  resources: {"), 0);
	for (int i = 0; i < 300; i++)
		assert_int_equal(buf_printf(&b, "%sf%d: 1", i ? ", " : "", i), 0);
	assert_int_equal(buf_puts(&b, "}\n"), 0);
	SpecDocs docs = {0};
	SpecErrors e = SPEC_ERRORS_INIT;
	assert_int_equal(spec_parse(crds, "t.yaml", b.data, b.len, SPEC_FORMAT_YAML, &docs, &e),
	                 -EINVAL);
	assert_int_equal(e.n, SPEC_ERRORS_MAX);
	assert_true(e.truncated);
	assert_string_equal(e.items[SPEC_ERRORS_MAX - 1].message, "too many errors; stopping");
	spec_errors_clear(&e);
	buf_done(&b);
}

/* --- defaults, canonical form, hash ------------------------------------------ */

static void defaults__filled_nested(void **state)
{
	(void)state;
	_cleanup_free_ char *c = canon1("t.yaml", MIN "  resources: {cores: 4}\n");
	assert_string_equal(c, "{\"apiVersion\":\"zlh.dev/v1\",\"kind\":\"GameServer\","
	                       "\"metadata\":{\"annotations\":{},\"labels\":{},\"name\":\"s1\","
	                       "\"owner\":\"u1\"},\"spec\":{\"backups\":{\"beforeDelete\":true,"
	                       "\"every\":\"6h\",\"keep\":7},\"deletionPolicy\":\"Delete\","
	                       "\"game\":\"minecraft\",\"hostname\":null,\"power\":\"running\","
	                       "\"publish\":true,\"resources\":{\"cores\":4,\"diskGiB\":16,"
	                       "\"memoryMiB\":4096},\"restartAt\":null,\"restore\":null,"
	                       "\"variant\":\"paper\",\"version\":\"1.21.4\"}}");
}

static void defaults__explicit_and_omitted__same_canonical_and_hash(void **state)
{
	(void)state;
	_cleanup_free_ char *a = canon1("a.yaml", MIN);
	_cleanup_free_ char *c = canon1(
	    "c.yaml", HEAD "  variant: paper\n  version: \"1.21.4\"\n  game: minecraft\n"
	                   "  hostname: null\n  resources: {}\n  power: running\n  restartAt: ~\n"
	                   "  publish: true\n  backups: {}\n  restore: null\n  deletionPolicy: "
	                   "Delete\n");
	assert_string_equal(a, c);
	SpecDocs d1 = {0}, d2 = {0};
	parse_ok("a.yaml", MIN, 1, &d1);
	parse_ok("c.yaml", MIN "  resources: {cores: 2}\n  backups: {keep: 7}\n", 1, &d2);
	char h1[65], h2[65];
	assert_int_equal(spec_hash(d1.items[0].doc, h1), 0);
	assert_int_equal(spec_hash(d2.items[0].doc, h2), 0);
	assert_string_equal(h1, h2);
	assert_int_equal(strlen(h1), 64);
	spec_docs_clear(&d1);
	spec_docs_clear(&d2);
}

static void hash__key_order_and_whitespace__stable(void **state)
{
	(void)state;
	_cleanup_free_ char *a = canon1("a.yaml", MIN "  resources: {cores: 3, diskGiB: 20}\n");
	_cleanup_free_ char *b = canon1("b.yaml", "spec:\n"
	                                          "    resources:\n"
	                                          "        diskGiB:    20\n"
	                                          "        cores: 3   # comment\n"
	                                          "    version: '1.21.4'\n"
	                                          "    variant: paper\n"
	                                          "kind: GameServer\n"
	                                          "\n"
	                                          "metadata: {owner: u1, name: s1}\n"
	                                          "apiVersion: zlh.dev/v1\n");
	assert_string_equal(a, b);
	_cleanup_json_ json_t *j1 =
	    json_loads("{\"b\":1,\"a\":{\"y\":2,\"x\":[3,{\"q\":1,\"p\":2}]}}", 0, NULL);
	_cleanup_json_ json_t *j2 = json_loads("{ \"a\" : { \"x\" : [ 3 , { \"p\" : 2 , \"q\" : 1 "
	                                       "} ] , \"y\" : 2 } ,\n \"b\" : 1 }",
	                                       0, NULL);
	char h1[65], h2[65];
	assert_int_equal(spec_hash(j1, h1), 0);
	assert_int_equal(spec_hash(j2, h2), 0);
	assert_string_equal(h1, h2);
	_cleanup_free_ char *c = spec_canonical_json(j1);
	assert_string_equal(c, "{\"a\":{\"x\":[3,{\"p\":2,\"q\":1}],\"y\":2},\"b\":1}");
	/* sha256 of the canonical text, not of some other rendering. */
	char h3[65];
	assert_int_equal(sha256_hex(c, strlen(c), h3), 0);
	assert_string_equal(h1, h3);
}

/* --- JSON input ----------------------------------------------------------------- */

static const char JSON_DOC[] = "{\"apiVersion\":\"zlh.dev/v1\",\"kind\":\"GameServer\","
                               "\"metadata\":{\"name\":\"s1\",\"owner\":\"u1\"},"
                               "\"spec\":{\"variant\":\"paper\",\"version\":\"1.21.4\","
                               "\"resources\":{\"cores\":3}}}";

static void json__same_document_as_yaml(void **state)
{
	(void)state;
	_cleanup_free_ char *y = canon1("a.yaml", MIN "  resources: {cores: 3}\n");
	_cleanup_free_ char *j = canon1("a.json", JSON_DOC);
	assert_string_equal(y, j);
	/* Sniffed from content when the name says nothing. */
	_cleanup_free_ char *s = canon1("-", JSON_DOC);
	assert_string_equal(y, s);
	/* spec_validate_json: the portal's path. */
	_cleanup_json_ json_t *in = json_loads(JSON_DOC, 0, NULL);
	_cleanup_json_ json_t *out = NULL;
	SpecErrors e = SPEC_ERRORS_INIT;
	assert_int_equal(spec_validate_json(crds, "portal", in, &out, &e), 0);
	_cleanup_free_ char *v = spec_canonical_json(out);
	assert_string_equal(y, v);
}

static void json__errors_carry_path_not_line(void **state)
{
	(void)state;
	ASSERT_ERRORS("a.json",
	              "{\"apiVersion\":\"zlh.dev/v1\",\"kind\":\"GameServer\","
	              "\"metadata\":{\"name\":\"s1\",\"owner\":\"u1\"},"
	              "\"spec\":{\"variant\":\"paper\",\"version\":1.2,"
	              "\"publish\":\"true\",\"resources\":{\"memoryMiB\":100,\"cores\":\"2\"}}}",
	              "a.json: spec.version: expected string, got number 1.2\n"
	              "a.json: spec.publish: expected boolean, got string \"true\"\n"
	              "a.json: spec.resources.memoryMiB: 100 is below the minimum 512\n"
	              "a.json: spec.resources.cores: expected integer, got string \"2\"\n");
}

static void json__syntax_error_has_line_and_column(void **state)
{
	(void)state;
	ASSERT_ERRORS("a.json", "{\"apiVersion\": \"zlh.dev/v1\",\n  \"kind\": GameServer}\n",
	              "a.json:2:20: JSON syntax error: invalid token near 'GameServer'\n");
	ASSERT_ERRORS("a.json", "{\"a\":1,\"a\":2}",
	              "a.json:1:10: JSON syntax error: duplicate object key near '\"a\"'\n");
}

static void json__array_and_stream__several_documents(void **state)
{
	(void)state;
	Buf b = BUF_INIT;
	assert_int_equal(buf_printf(&b, "[%s,\n%s]", JSON_DOC, JSON_DOC), 0);
	SpecDocs docs = {0};
	parse_ok("a.json", b.data, 2, &docs);
	spec_docs_clear(&docs);
	buf_clear(&b);
	assert_int_equal(buf_printf(&b, "%s\n%s\n", JSON_DOC, JSON_DOC), 0);
	parse_ok("a.json", b.data, 2, &docs);
	spec_docs_clear(&docs);
	buf_done(&b);
	ASSERT_ERRORS("a.json", "[{\"kind\":\"GameServer\"}]",
	              "a.json: [0].apiVersion: required field is missing\n"
	              "a.json: [0].metadata: required field is missing\n"
	              "a.json: [0].spec: required field is missing\n");
}

/* --- the envelope and metadata ----------------------------------------------- */

static void doc__missing_kind__located(void **state)
{
	(void)state;
	ASSERT_ERRORS("t.yaml",
	              "# first\n"
	              "apiVersion: zlh.dev/v1\n"
	              "metadata: {name: s1, owner: u1}\n"
	              "spec: {variant: paper, version: '1'}\n",
	              "t.yaml:2:1: kind: required field is missing\n");
}

static void doc__unknown_kind__names_known_ones(void **state)
{
	(void)state;
	ASSERT_ERRORS("t.yaml",
	              "apiVersion: zlh.dev/v1\nkind: Pod\nmetadata: {name: s1, owner: u1}\n"
	              "spec: {}\n",
	              "t.yaml:2:7: kind: unknown kind \"Pod\" (known: DevServer, GameServer)\n");
}

static void doc__wrong_api_version_and_kind_case(void **state)
{
	(void)state;
	ASSERT_ERRORS("t.yaml",
	              "apiVersion: zlh.dev/v2\nkind: gameserver\nmetadata: {name: s1, owner: u1}\n"
	              "spec: {}\n",
	              "t.yaml:1:13: apiVersion: \"zlh.dev/v2\" is not zlh.dev/v1\n"
	              "t.yaml:2:7: kind: unknown kind \"gameserver\" (did you mean GameServer?)\n");
}

static void doc__not_a_mapping(void **state)
{
	(void)state;
	ASSERT_ERRORS("t.yaml", "- a\n- b\n",
	              "t.yaml:1:1: a document must be a mapping with apiVersion, kind, metadata "
	              "and spec\n");
}

static void metadata__rules(void **state)
{
	(void)state;
	ASSERT_ERRORS("t.yaml",
	              "apiVersion: zlh.dev/v1\nkind: DevServer\nmetadata:\n  name: -bad\n"
	              "  owner: \"u 1\"\n  uid: x\nspec: {runtime: go, version: '1.22'}\n",
	              "t.yaml:4:9: metadata.name: \"-bad\" does not match "
	              "^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$\n"
	              "t.yaml:5:10: metadata.owner: \"u 1\" does not match "
	              "^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$\n"
	              "t.yaml:6:3: metadata.uid: unknown field\n");
	ASSERT_ERRORS("t.yaml",
	              "apiVersion: zlh.dev/v1\nkind: DevServer\nmetadata:\n  name: ok\n"
	              "spec: {runtime: go, version: '1.22'}\n",
	              "t.yaml:3:1: metadata.owner: required field is missing\n");
	/* 63 characters is the longest name. */
	char doc[512];
	snprintf(doc, sizeof doc,
	         "apiVersion: zlh.dev/v1\nkind: DevServer\nmetadata: {name: %.63s, owner: "
	         "a@b.c_d-e}\nspec: {runtime: go, version: '1.22'}\n",
	         "a123456789b123456789c123456789d123456789e123456789f123456789g123456789");
	SpecDocs docs = {0};
	parse_ok("t.yaml", doc, 1, &docs);
	spec_docs_clear(&docs);
	snprintf(doc, sizeof doc,
	         "apiVersion: zlh.dev/v1\nkind: DevServer\nmetadata: {name: %.64s, owner: "
	         "u}\nspec: {runtime: go, version: '1.22'}\n",
	         "a123456789b123456789c123456789d123456789e123456789f123456789g123456789");
	_cleanup_free_ char *got = parse_errors("t.yaml", doc);
	assert_non_null(strstr(got, "metadata.name:"));
}

static void metadata__labels_and_annotations(void **state)
{
	(void)state;
	SpecDocs docs = {0};
	parse_ok("t.yaml",
	         "apiVersion: zlh.dev/v1\nkind: DevServer\nmetadata:\n  name: a\n  owner: u\n"
	         "  labels: {tier: 1, on: yes, empty: ''}\n"
	         "  annotations: {\"zlh.dev/note\": \"x: y\"}\n"
	         "spec: {runtime: go, version: '1.22'}\n",
	         1, &docs);
	const json_t *md = json_object_get(docs.items[0].doc, "metadata");
	_cleanup_free_ char *c = spec_canonical_json(md);
	assert_string_equal(c, "{\"annotations\":{\"zlh.dev/note\":\"x: y\"},\"labels\":{"
	                       "\"empty\":\"\",\"on\":\"yes\",\"tier\":\"1\"},\"name\":\"a\","
	                       "\"owner\":\"u\"}");
	spec_docs_clear(&docs);

	char key[300];
	memset(key, 'k', 254);
	key[254] = 0;
	char doc[1024];
	snprintf(doc, sizeof doc,
	         "apiVersion: zlh.dev/v1\nkind: DevServer\nmetadata:\n  name: a\n  owner: u\n"
	         "  labels:\n    %s: v\n    x: [1]\n    y: ~\n"
	         "spec: {runtime: go, version: '1.22'}\n",
	         key);
	_cleanup_free_ char *got = parse_errors("t.yaml", doc);
	assert_non_null(strstr(got, "t.yaml:7:5: metadata.labels.kkkk"));
	assert_non_null(strstr(got, "is longer than the maximum length 253 (254 characters)\n"));
	assert_non_null(
	    strstr(got, "t.yaml:8:8: metadata.labels.x: expected string, got a list\n"));
	assert_non_null(strstr(got, "t.yaml:9:8: metadata.labels.y: must not be null\n"));

	Buf b = BUF_INIT;
	assert_int_equal(buf_puts(&b, "apiVersion: zlh.dev/v1\nkind: DevServer\nmetadata:\n  name: "
	                              "a\n  owner: u\n  labels:\n"),
	                 0);
	for (int i = 0; i < SPEC_LABELS_MAX + 1; i++)
		assert_int_equal(buf_printf(&b, "    l%d: v\n", i), 0);
	assert_int_equal(buf_puts(&b, "spec: {runtime: go, version: '1.22'}\n"), 0);
	_cleanup_free_ char *got2 = parse_errors("t.yaml", b.data);
	assert_string_equal(
	    got2, "t.yaml:7:5: metadata.labels: 65 entries are more than the maximum 64\n");
	buf_done(&b);

	ASSERT_ERRORS(
	    "a.json",
	    "{\"apiVersion\":\"zlh.dev/v1\",\"kind\":\"DevServer\",\"metadata\":{\"name\":"
	    "\"a\",\"owner\":\"u\",\"labels\":{\"n\":1}},\"spec\":{\"runtime\":\"go\","
	    "\"version\":\"1\"}}",
	    "a.json: metadata.labels.n: expected string, got integer 1\n");
}

/* --- YAML reading -------------------------------------------------------------------- */

static void yaml__syntax_error_located(void **state)
{
	(void)state;
	ASSERT_ERRORS("t.yaml", MIN "  resources: {cores: 2\n",
	              "t.yaml:10:1: YAML syntax error: did not find expected ',' or '}' while "
	              "parsing a flow mapping\n");
}

static void yaml__aliases_tags_duplicates_refused(void **state)
{
	(void)state;
	ASSERT_ERRORS("t.yaml", MIN "  hostname: &h abc\n  power: *h\n",
	              "t.yaml:10:10: YAML aliases (*h) are not supported\n");
	ASSERT_ERRORS("t.yaml", MIN "  hostname: !!str abc\n",
	              "t.yaml:9:13: YAML tags (tag:yaml.org,2002:str) are not supported\n");
	ASSERT_ERRORS("t.yaml", MIN "  variant: forge\n",
	              "t.yaml:9:3: duplicate key \"variant\" (first at line 7)\n");
}

static void yaml__multi_document__lines_and_empty_docs(void **state)
{
	(void)state;
	SpecDocs docs = {0};
	parse_ok("t.yaml",
	         "---\n# nothing here\n---\n" MIN "---\n"
	         "apiVersion: zlh.dev/v1\nkind: DevServer\nmetadata: {name: d, owner: u}\n"
	         "spec: {runtime: node, version: '22'}\n...\n---\n",
	         2, &docs);
	assert_int_equal(docs.items[0].line, 4);
	assert_int_equal(docs.items[1].line, 13);
	assert_string_equal(docs.items[0].file, "t.yaml");
	assert_string_equal(docs.items[0].crd->kind, "GameServer");
	assert_string_equal(docs.items[1].crd->kind, "DevServer");
	assert_string_equal(spec_doc_name(docs.items[1].doc), "d");
	assert_string_equal(spec_doc_owner(docs.items[1].doc), "u");
	assert_string_equal(spec_doc_kind(docs.items[1].doc), "DevServer");
	spec_docs_clear(&docs);

	/* An error in the second document, all or nothing. */
	ASSERT_ERRORS("t.yaml", MIN "---\n" MIN "  power: off\n",
	              "t.yaml:18:10: spec.power: \"off\" is not one of running, stopped\n");
	ASSERT_ERRORS("t.yaml", "# only a comment\n", "t.yaml: no documents\n");
	ASSERT_ERRORS("t.yaml", "", "t.yaml: no documents\n");
}

static void yaml__bounds(void **state)
{
	(void)state;
	/* Nesting. */
	Buf b = BUF_INIT;
	for (int i = 0; i < 40; i++)
		assert_int_equal(buf_puts(&b, "["), 0);
	_cleanup_free_ char *got = parse_errors("t.yaml", b.data);
	assert_string_equal(got, "t.yaml:1:33: nested deeper than 32 levels\n");
	buf_done(&b);
	/* Documents. */
	for (int i = 0; i < SPEC_MAX_DOCS + 1; i++)
		assert_int_equal(buf_puts(&b, "---\na: 1\n"), 0);
	_cleanup_free_ char *got2 = parse_errors("t.yaml", b.data);
	assert_string_equal(got2, "t.yaml:513:1: more than 256 documents\n");
	buf_done(&b);
	/* Size. */
	size_t big = 1024 * 1024 + 1;
	char *huge = malloc(big + 1);
	assert_non_null(huge);
	memset(huge, '#', big);
	huge[big] = 0;
	_cleanup_free_ char *got3 = parse_errors("t.yaml", huge);
	assert_string_equal(got3, "t.yaml: input larger than 1048576 bytes\n");
	free(huge);
}

static void yaml__output_reads_back_the_same(void **state)
{
	(void)state;
	static const char doc[] =
	    "apiVersion: zlh.dev/v1\nkind: GameServer\nmetadata:\n  name: s1\n  owner: u1\n"
	    "  labels: {a: 'yes', b: '1.5', c: '', d: 'null', e: 'a: b', f: '#x', g: '~',"
	    " h: ' x', i: \"l1\\nl2\", j: '-', k: '0x1f', l: true, m: '\xc3\xa9', n: '- x',"
	    " o: 'a #b', p: '[x]', q: '\"', r: '*a', s: '&a', t: '!x', u: '%x', v: '@x'}\n"
	    "  annotations: {\"k: y\": v, \" \": e}\n"
	    "spec:\n  variant: paper\n  version: 1.20\n  hostname: ab\n"
	    "  restore: {backup: '007', requestId: 0b4c3a52-7f0e-4d55-9d0f-2f1c8e4b6a10}\n";
	SpecDocs docs = {0};
	SpecDocs again = {0};
	parse_ok("t.yaml", doc, 1, &docs);
	_cleanup_free_ char *y = spec_to_yaml(docs.items[0].doc);
	assert_non_null(y);
	parse_ok("again.yaml", y, 1, &again);
	_cleanup_free_ char *c1 = spec_canonical_json(docs.items[0].doc);
	_cleanup_free_ char *c2 = spec_canonical_json(again.items[0].doc);
	assert_string_equal(c1, c2);
	assert_non_null(strstr(y, "  version: \"1.20\"\n"));
	assert_non_null(strstr(y, "  publish: true\n"));
	assert_non_null(strstr(y, "    memoryMiB: 4096\n"));
	spec_docs_clear(&docs);
	spec_docs_clear(&again);
	/* A generic YAML reader agrees too: no string looks like a bool/number. */
	_cleanup_json_ json_t *v = json_pack("{s:s,s:s,s:s,s:i,s:b,s:n,s:[],s:{}}", "a", "yes", "b",
	                                     "1.5", "c", "", "d", 7, "e", 1, "f", "g", "h");
	_cleanup_free_ char *y2 = spec_to_yaml(v);
	assert_string_equal(y2, "a: \"yes\"\nb: \"1.5\"\nc: \"\"\nd: 7\ne: true\nf: null\ng: []\n"
	                        "h: {}\n");
}

/* --- diff ------------------------------------------------------------------------------------ */

static char *diff_text(const SpecDiff *d)
{
	char *s = NULL;
	size_t n = 0;
	FILE *f = open_memstream(&s, &n);
	assert_non_null(f);
	spec_diff_print(d, f);
	fclose(f);
	return s;
}

static void diff__changes_additions_removals(void **state)
{
	(void)state;
	_cleanup_json_ json_t *a = json_loads(
	    "{\"spec\":{\"resources\":{\"memoryMiB\":4096,\"cores\":2},\"hostname\":\"h\","
	    "\"restore\":null,\"list\":[1,2,3]}}",
	    0, NULL);
	_cleanup_json_ json_t *b = json_loads(
	    "{\"spec\":{\"resources\":{\"memoryMiB\":8192,\"cores\":2},\"power\":\"stopped\","
	    "\"restore\":{\"backup\":\"b1\"},\"list\":[1,5]}}",
	    0, NULL);
	SpecDiff d = {0};
	assert_int_equal(spec_diff(a, b, &d), 0);
	_cleanup_free_ char *t = diff_text(&d);
	assert_string_equal(t, "- spec.hostname: \"h\"\n"
	                       "~ spec.list[1]: 2 -> 5\n"
	                       "- spec.list[2]: 3\n"
	                       "+ spec.power: \"stopped\"\n"
	                       "~ spec.resources.memoryMiB: 4096 -> 8192\n"
	                       "~ spec.restore: null -> {\"backup\":\"b1\"}\n");
	assert_int_equal(d.n, 6);
	assert_int_equal(d.items[4].op, SPEC_DIFF_CHANGED);
	assert_string_equal(d.items[4].path, "spec.resources.memoryMiB");
	assert_int_equal(json_integer_value(d.items[4].old_value), 4096);
	assert_int_equal(json_integer_value(d.items[4].new_value), 8192);
	assert_null(d.items[3].old_value);
	assert_null(d.items[0].new_value);
	spec_diff_clear(&d);
	spec_diff_clear(&d); /* twice is fine */

	assert_int_equal(spec_diff(a, a, &d), 0);
	assert_int_equal(d.n, 0);
	spec_diff_clear(&d);
}

static void diff__absent_side_and_prefix(void **state)
{
	(void)state;
	_cleanup_json_ json_t *b = json_loads("{\"cores\":2,\"x\":{\"y\":1}}", 0, NULL);
	SpecDiff d = {0};
	assert_int_equal(spec_diff_at("spec", NULL, b, &d), 0);
	_cleanup_free_ char *t = diff_text(&d);
	assert_string_equal(t, "+ spec.cores: 2\n+ spec.x: {\"y\":1}\n");
	spec_diff_clear(&d);
	assert_int_equal(spec_diff_at("spec", b, NULL, &d), 0);
	_cleanup_free_ char *t2 = diff_text(&d);
	assert_string_equal(t2, "- spec.cores: 2\n- spec.x: {\"y\":1}\n");
	spec_diff_clear(&d);
	_cleanup_json_ json_t *one = json_integer(1), *two = json_string("2");
	assert_int_equal(spec_diff(one, two, &d), 0);
	_cleanup_free_ char *t3 = diff_text(&d);
	assert_string_equal(t3, "~ (root): 1 -> \"2\"\n");
	spec_diff_clear(&d);
	/* Keys that are not identifiers are quoted in paths. */
	_cleanup_json_ json_t *l1 = json_loads("{\"labels\":{\"zlh.dev/a\":\"1\"}}", 0, NULL);
	_cleanup_json_ json_t *l2 = json_loads("{\"labels\":{\"zlh.dev/a\":\"2\"}}", 0, NULL);
	assert_int_equal(spec_diff_at("metadata", l1, l2, &d), 0);
	_cleanup_free_ char *t4 = diff_text(&d);
	assert_string_equal(t4, "~ metadata.labels[\"zlh.dev/a\"]: \"1\" -> \"2\"\n");
	spec_diff_clear(&d);
}

static void diff__parsed_documents(void **state)
{
	(void)state;
	SpecDocs d1 = {0}, d2 = {0};
	parse_ok("a.yaml", MIN, 1, &d1);
	parse_ok("b.yaml", MIN "  resources: {memoryMiB: 8192}\n  power: stopped\n", 1, &d2);
	SpecDiff d = {0};
	assert_int_equal(spec_diff(d1.items[0].doc, d2.items[0].doc, &d), 0);
	_cleanup_free_ char *t = diff_text(&d);
	assert_string_equal(t, "~ spec.power: \"running\" -> \"stopped\"\n"
	                       "~ spec.resources.memoryMiB: 4096 -> 8192\n");
	spec_diff_clear(&d);
	spec_docs_clear(&d1);
	spec_docs_clear(&d2);
}

/* --- files --------------------------------------------------------------------------- */

static void files__examples_parse(void **state)
{
	(void)state;
	static const char *const ex[] = {"survival-01.yaml", "creative.yaml", "lobby-dev.yaml"};
	static const size_t n[] = {1, 1, 2};
	for (size_t i = 0; i < ELEMENTSOF(ex); i++) {
		char p[1024];
		snprintf(p, sizeof p, "%s/contrib/examples/%s", ZLH_SOURCE_DIR, ex[i]);
		SpecDocs docs = {0};
		SpecErrors e = SPEC_ERRORS_INIT;
		int r = spec_parse_file(crds, p, &docs, &e);
		spec_errors_print(&e, stderr);
		assert_int_equal(r, 0);
		assert_int_equal(docs.n, n[i]);
		for (size_t j = 0; j < docs.n; j++)
			assert_string_equal(spec_doc_owner(docs.items[j].doc), "demo");
		spec_docs_clear(&docs);
		spec_errors_clear(&e);
	}
	SpecDocs docs = {0};
	SpecErrors e = SPEC_ERRORS_INIT;
	assert_int_equal(spec_parse_file(crds, "/nonexistent/x.yaml", &docs, &e), -ENOENT);
	_cleanup_free_ char *t = errors_text(&e);
	assert_string_equal(t, "/nonexistent/x.yaml: cannot read: No such file or directory\n");
	spec_errors_clear(&e);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(typing__plain_version__stays_string_as_written),
	    cmocka_unit_test(typing__yes_for_boolean__rejected_with_hint),
	    cmocka_unit_test(typing__quoted_true_for_boolean__rejected),
	    cmocka_unit_test(typing__quoted_number_for_integer__rejected),
	    cmocka_unit_test(typing__null__only_where_nullable),
	    cmocka_unit_test(typing__strings_with_nul__rejected),
	    cmocka_unit_test(rule__type__mapping_expected),
	    cmocka_unit_test(rule__required__located_at_parent_key),
	    cmocka_unit_test(rule__enum__lists_choices),
	    cmocka_unit_test(rule__minimum_maximum),
	    cmocka_unit_test(rule__min_max_length),
	    cmocka_unit_test(rule__pattern),
	    cmocka_unit_test(rule__format_duration_uuid_datetime),
	    cmocka_unit_test(rule__unknown_field__at_key),
	    cmocka_unit_test(rule__many_errors__all_reported),
	    cmocka_unit_test(errors__many__capped),
	    cmocka_unit_test(defaults__filled_nested),
	    cmocka_unit_test(defaults__explicit_and_omitted__same_canonical_and_hash),
	    cmocka_unit_test(hash__key_order_and_whitespace__stable),
	    cmocka_unit_test(json__same_document_as_yaml),
	    cmocka_unit_test(json__errors_carry_path_not_line),
	    cmocka_unit_test(json__syntax_error_has_line_and_column),
	    cmocka_unit_test(json__array_and_stream__several_documents),
	    cmocka_unit_test(doc__missing_kind__located),
	    cmocka_unit_test(doc__unknown_kind__names_known_ones),
	    cmocka_unit_test(doc__wrong_api_version_and_kind_case),
	    cmocka_unit_test(doc__not_a_mapping),
	    cmocka_unit_test(metadata__rules),
	    cmocka_unit_test(metadata__labels_and_annotations),
	    cmocka_unit_test(yaml__syntax_error_located),
	    cmocka_unit_test(yaml__aliases_tags_duplicates_refused),
	    cmocka_unit_test(yaml__multi_document__lines_and_empty_docs),
	    cmocka_unit_test(yaml__bounds),
	    cmocka_unit_test(yaml__output_reads_back_the_same),
	    cmocka_unit_test(diff__changes_additions_removals),
	    cmocka_unit_test(diff__absent_side_and_prefix),
	    cmocka_unit_test(diff__parsed_documents),
	    cmocka_unit_test(files__examples_parse),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
