/* Unit tests for specs/crd.h: finding the CRD directory, loading the real
 * CRDs, lookups, the JSON handed to the database, and located errors in bad
 * schemas. */
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
#include "test/lib/testutil.h"

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

/* Loads one CRD text that must fail; returns every error (new). */
static char *crd_errors(const char *text)
{
	const char *files[] = {"x.yaml"};
	const char *datas[] = {text};
	CrdSet *s = NULL;
	SpecErrors e = SPEC_ERRORS_INIT;
	assert_int_equal(crd_set_load_data(files, datas, 1, &s, &e), -EINVAL);
	assert_null(s);
	char *t = errors_text(&e);
	spec_errors_clear(&e);
	return t;
}

#define ASSERT_CRD_ERRORS(text, want)                         \
	do {                                                  \
		_cleanup_free_ char *_got = crd_errors(text); \
		assert_string_equal(_got, want);              \
	} while (0)

#define CRD_HEAD                   \
	"apiVersion: zlh.dev/v1\n" \
	"kind: Thing\n"            \
	"plural: things\n"         \
	"short: th\n"              \
	"schema:\n"                \
	"  type: object\n"         \
	"  properties:\n"

/* --- finding the directory -------------------------------------------------- */

static void dir__flag_env_and_builtin(void **state)
{
	(void)state;
	_cleanup_free_ char *saved_env =
	    getenv("ZLH_CRDS_DIR") ? strdup(getenv("ZLH_CRDS_DIR")) : NULL;
	_cleanup_free_ char *tmp = tu_tempdir();
	assert_non_null(tmp);
	char *d = NULL;

	assert_int_equal(crd_dir_find(tmp, &d), 0);
	assert_string_equal(d, tmp);
	free(d);
	d = NULL;
	assert_int_equal(crd_dir_find("/nonexistent/crds", &d), -ENOENT);
	assert_null(d);

	assert_int_equal(setenv("ZLH_CRDS_DIR", tmp, 1), 0);
	assert_int_equal(crd_dir_find(NULL, &d), 0);
	assert_string_equal(d, tmp);
	free(d);
	d = NULL;
	assert_int_equal(setenv("ZLH_CRDS_DIR", "/nonexistent/crds", 1), 0);
	assert_int_equal(crd_dir_find(NULL, &d), -ENOENT);
	assert_null(d);

	assert_int_equal(unsetenv("ZLH_CRDS_DIR"), 0);
	assert_int_equal(crd_dir_find(NULL, &d), 0);
	assert_string_equal(d, ZLH_SOURCE_DIR "/crds");
	free(d);
	/* Empty counts as unset. */
	assert_int_equal(setenv("ZLH_CRDS_DIR", "", 1), 0);
	d = NULL;
	assert_int_equal(crd_dir_find(NULL, &d), 0);
	assert_string_equal(d, ZLH_SOURCE_DIR "/crds");
	free(d);

	if (saved_env)
		assert_int_equal(setenv("ZLH_CRDS_DIR", saved_env, 1), 0);
	else
		assert_int_equal(unsetenv("ZLH_CRDS_DIR"), 0);
	tu_rmrf(tmp);
}

/* --- the real CRDs ------------------------------------------------------------ */

static void load__repo_crds__two_kinds_and_lookups(void **state)
{
	(void)state;
	CrdSet *s = NULL;
	SpecErrors e = SPEC_ERRORS_INIT;
	assert_int_equal(crd_set_load(ZLH_SOURCE_DIR "/crds", &s, &e), 0);
	assert_int_equal(e.n, 0);
	assert_int_equal(s->n, 2);
	assert_string_equal(s->items[0].kind, "DevServer");
	assert_string_equal(s->items[1].kind, "GameServer");

	const Crd *gs = crd_set_find(s, "gs");
	assert_non_null(gs);
	assert_string_equal(gs->kind, "GameServer");
	assert_ptr_equal(crd_set_find(s, "GAMESERVERS"), gs);
	assert_ptr_equal(crd_set_find(s, "gameserver"), gs);
	assert_ptr_equal(crd_set_find(s, "ds"), &s->items[0]);
	assert_null(crd_set_find(s, "pods"));
	assert_null(crd_set_find(s, NULL));
	assert_ptr_equal(crd_set_find_kind(s, "GameServer"), gs);
	assert_null(crd_set_find_kind(s, "gameserver"));
	assert_string_equal(gs->plural, "gameservers");
	assert_string_equal(gs->short_name, "gs");
	assert_string_equal(gs->api_version, "zlh.dev/v1");

	/* Typed schema: integers are integers, defaults typed by their schema. */
	const json_t *mem = json_object_get(
	    json_object_get(json_object_get(json_object_get(gs->schema, "properties"), "resources"),
	                    "properties"),
	    "memoryMiB");
	assert_true(json_is_integer(json_object_get(mem, "minimum")));
	assert_int_equal(json_integer_value(json_object_get(mem, "default")), 4096);
	const json_t *every = json_object_get(
	    json_object_get(json_object_get(json_object_get(gs->schema, "properties"), "backups"),
	                    "properties"),
	    "every");
	assert_string_equal(json_string_value(json_object_get(every, "default")), "6h");
	const json_t *res = json_object_get(json_object_get(gs->schema, "properties"), "resources");
	_cleanup_free_ char *rd = spec_canonical_json(json_object_get(res, "default"));
	assert_string_equal(rd, "{}"); /* kept as written; children filled at use */

	_cleanup_json_ json_t *j = crd_set_to_json(s);
	assert_true(json_is_array(j));
	assert_int_equal(json_array_size(j), 2);
	const json_t *g = json_array_get(j, 1);
	assert_string_equal(json_string_value(json_object_get(g, "kind")), "GameServer");
	assert_string_equal(json_string_value(json_object_get(g, "apiVersion")), "zlh.dev/v1");
	assert_string_equal(json_string_value(json_object_get(g, "plural")), "gameservers");
	assert_string_equal(json_string_value(json_object_get(g, "short")), "gs");
	assert_true(json_equal(json_object_get(g, "schema"), gs->schema));

	s = crd_set_free(s);
	assert_null(s);
	assert_null(crd_set_free(NULL));
}

static void load__empty_or_missing_dir__enoent(void **state)
{
	(void)state;
	_cleanup_free_ char *tmp = tu_tempdir();
	CrdSet *s = NULL;
	SpecErrors e = SPEC_ERRORS_INIT;
	assert_int_equal(crd_set_load(tmp, &s, &e), -ENOENT);
	assert_null(s);
	spec_errors_clear(&e);
	assert_int_equal(crd_set_load("/nonexistent/crds", &s, &e), -ENOENT);
	spec_errors_clear(&e);

	/* A broken file among good ones is reported with its name and line. */
	char p[1024];
	snprintf(p, sizeof p, "%s/a.yaml", tmp);
	assert_int_equal(tu_write_file(p, CRD_HEAD "    x: {type: strin}\n"), 0);
	snprintf(p, sizeof p, "%s/notes.txt", tmp);
	assert_int_equal(tu_write_file(p, "ignored"), 0);
	assert_int_equal(crd_set_load(tmp, &s, &e), -EINVAL);
	_cleanup_free_ char *t = errors_text(&e);
	char want[1200];
	snprintf(want, sizeof want,
	         "%s/a.yaml:8:15: schema.properties.x.type: \"strin\" is not one of object, "
	         "string, integer, boolean, array\n",
	         tmp);
	assert_string_equal(t, want);
	spec_errors_clear(&e);
	tu_rmrf(tmp);
}

/* --- schema checks --------------------------------------------------------------- */

static void schema__unknown_keyword_and_misplaced_ones(void **state)
{
	(void)state;
	ASSERT_CRD_ERRORS(CRD_HEAD "    a: {type: string, minimun: 3}\n",
	                  "x.yaml:8:23: schema.properties.a.minimun: unknown schema keyword\n");
	ASSERT_CRD_ERRORS(CRD_HEAD "    a: {type: string, minimum: 3}\n",
	                  "x.yaml:8:23: schema.properties.a.minimum: minimum does not apply to "
	                  "type string\n");
	ASSERT_CRD_ERRORS(CRD_HEAD "    a: {type: boolean, enum: [true]}\n",
	                  "x.yaml:8:24: schema.properties.a.enum: enum does not apply to type "
	                  "boolean\n");
	ASSERT_CRD_ERRORS(CRD_HEAD "    a: {maxLength: 3}\n",
	                  "x.yaml:8:5: schema.properties.a: schema has no type\n");
}

static void schema__values_typed_and_checked(void **state)
{
	(void)state;
	ASSERT_CRD_ERRORS(CRD_HEAD "    a: {type: integer, default: abc}\n",
	                  "x.yaml:8:33: schema.properties.a.default: expected integer, got "
	                  "\"abc\"\n");
	ASSERT_CRD_ERRORS(CRD_HEAD "    a: {type: integer, minimum: 5, default: 3}\n",
	                  "x.yaml:8:45: schema.properties.a.default: 3 is below the minimum 5\n");
	ASSERT_CRD_ERRORS(CRD_HEAD "    a: {type: integer, enum: [1, x]}\n",
	                  "x.yaml:8:34: schema.properties.a.enum[1]: expected integer, got "
	                  "\"x\"\n");
	ASSERT_CRD_ERRORS(CRD_HEAD "    a: {type: string, enum: [x], default: y}\n",
	                  "x.yaml:8:43: schema.properties.a.default: \"y\" is not one of x\n");
	ASSERT_CRD_ERRORS(CRD_HEAD "    a: {type: string, default: null}\n",
	                  "x.yaml:8:32: schema.properties.a.default: must not be null\n");
	{
		/* The reason is the C library's wording. */
		_cleanup_free_ char *got =
		    crd_errors(CRD_HEAD "    a: {type: string, pattern: \"a[\"}\n");
		static const char pre[] =
		    "x.yaml:8:32: schema.properties.a.pattern: pattern does not compile: ";
		assert_true(strncmp(got, pre, strlen(pre)) == 0);
	}
	ASSERT_CRD_ERRORS(CRD_HEAD "    a: {type: string, format: email}\n",
	                  "x.yaml:8:31: schema.properties.a.format: \"email\" is not one of "
	                  "duration, uuid, date-time\n");
	ASSERT_CRD_ERRORS(CRD_HEAD "    a: {type: integer, minimum: 5, maximum: 4}\n",
	                  "x.yaml:8:8: schema.properties.a: minimum is above maximum\n");
	ASSERT_CRD_ERRORS(CRD_HEAD "    a: {type: string, nullable: yes}\n",
	                  "x.yaml:8:33: schema.properties.a.nullable: \"yes\" is not a boolean "
	                  "here: write true or false (YAML 1.1 booleans like yes/no/on/off are not "
	                  "accepted)\n");
}

static void schema__objects_closed_required_known(void **state)
{
	(void)state;
	ASSERT_CRD_ERRORS(CRD_HEAD "    a: {type: string}\n  additionalProperties: true\n",
	                  "x.yaml:6:3: schema: additionalProperties: true is not supported "
	                  "(objects are closed)\n");
	ASSERT_CRD_ERRORS(CRD_HEAD "    a: {type: string}\n  required: [b]\n",
	                  "x.yaml:6:3: schema: required field b is not among the properties\n");
	ASSERT_CRD_ERRORS(CRD_HEAD "    a: {type: string, default: x}\n  required: [a]\n",
	                  "x.yaml:6:3: schema: required field a has a default, which never "
	                  "applies\n");
	ASSERT_CRD_ERRORS(CRD_HEAD "    a: {type: array}\n",
	                  "x.yaml:8:5: schema.properties.a: an array schema needs items\n");
	ASSERT_CRD_ERRORS("apiVersion: zlh.dev/v1\nkind: Thing\nplural: things\nshort: th\n"
	                  "schema: {type: string}\n",
	                  "x.yaml:5:9: schema: the spec schema must be of type object\n");
	/* additionalProperties: false is fine and the default anyway. */
	const char *files[] = {"x.yaml"};
	const char *datas[] = {CRD_HEAD "    a: {type: string}\n  additionalProperties: false\n"};
	CrdSet *s = NULL;
	SpecErrors e = SPEC_ERRORS_INIT;
	assert_int_equal(crd_set_load_data(files, datas, 1, &s, &e), 0);
	crd_set_free(s);
}

static void schema__envelope_fields(void **state)
{
	(void)state;
	ASSERT_CRD_ERRORS("apiVersion: zlh.dev/v2\nkind: thing\nplural: Things\nshort: th\n"
	                  "extra: 1\nschema: {type: object}\n",
	                  "x.yaml:1:13: apiVersion: \"zlh.dev/v2\" does not match ^zlh\\.dev/v1$\n"
	                  "x.yaml:2:7: kind: \"thing\" does not match ^[A-Z][A-Za-z0-9]{0,62}$\n"
	                  "x.yaml:3:9: plural: \"Things\" does not match ^[a-z][a-z0-9]{0,62}$\n"
	                  "x.yaml:5:1: extra: unknown field\n");
	ASSERT_CRD_ERRORS("apiVersion: zlh.dev/v1\nkind: Thing\nplural: things\n"
	                  "schema: {type: object}\n",
	                  "x.yaml:1:1: short: required field is missing\n");
	ASSERT_CRD_ERRORS("apiVersion: zlh.dev/v1\n---\nkind: Thing\n",
	                  "x.yaml:3: a CRD file holds exactly one document (found 2)\n");
}

static void schema__names_unique_across_kinds(void **state)
{
	(void)state;
	const char *files[] = {"a.yaml", "b.yaml"};
	const char *datas[] = {
	    "apiVersion: zlh.dev/v1\nkind: Thing\nplural: things\nshort: th\n"
	    "schema: {type: object}\n",
	    "apiVersion: zlh.dev/v1\nkind: Other\nplural: others\nshort: things\n"
	    "schema: {type: object}\n",
	};
	CrdSet *s = NULL;
	SpecErrors e = SPEC_ERRORS_INIT;
	assert_int_equal(crd_set_load_data(files, datas, 2, &s, &e), -EINVAL);
	assert_null(s);
	_cleanup_free_ char *t = errors_text(&e);
	assert_string_equal(t, "b.yaml: name things is already used by kind Thing\n");
	spec_errors_clear(&e);
}

static void schema__arrays_validate(void **state)
{
	(void)state;
	/* The language's array support, exercised through a document. */
	const char *files[] = {"x.yaml"};
	const char *datas[] = {CRD_HEAD "    tags:\n      type: array\n      maxItems: 2\n"
	                                "      items: {type: string, maxLength: 3}\n"
	                                "      default: []\n"};
	CrdSet *s = NULL;
	SpecErrors e = SPEC_ERRORS_INIT;
	assert_int_equal(crd_set_load_data(files, datas, 1, &s, &e), 0);
	SpecDocs docs = {0};
	static const char ok[] = "apiVersion: zlh.dev/v1\nkind: Thing\nmetadata: {name: a, "
	                         "owner: b}\nspec: {tags: [x, 1.5]}\n";
	assert_int_equal(spec_parse(s, "d.yaml", ok, strlen(ok), SPEC_FORMAT_YAML, &docs, &e), 0);
	_cleanup_free_ char *c = spec_canonical_json(spec_doc_spec(docs.items[0].doc));
	assert_string_equal(c, "{\"tags\":[\"x\",\"1.5\"]}");
	spec_docs_clear(&docs);
	static const char empty[] = "apiVersion: zlh.dev/v1\nkind: Thing\nmetadata: {name: a, "
	                            "owner: b}\nspec: {}\n";
	assert_int_equal(spec_parse(s, "d.yaml", empty, strlen(empty), SPEC_FORMAT_YAML, &docs, &e),
	                 0);
	_cleanup_free_ char *c2 = spec_canonical_json(spec_doc_spec(docs.items[0].doc));
	assert_string_equal(c2, "{\"tags\":[]}");
	spec_docs_clear(&docs);
	static const char bad[] = "apiVersion: zlh.dev/v1\nkind: Thing\nmetadata: {name: a, "
	                          "owner: b}\nspec: {tags: [x, toolong]}\n---\n"
	                          "apiVersion: zlh.dev/v1\nkind: Thing\nmetadata: {name: a, "
	                          "owner: b}\nspec: {tags: [a, b, c]}\n";
	assert_int_equal(spec_parse(s, "d.yaml", bad, strlen(bad), SPEC_FORMAT_YAML, &docs, &e),
	                 -EINVAL);
	_cleanup_free_ char *t = errors_text(&e);
	assert_string_equal(t, "d.yaml:4:18: spec.tags[1]: \"toolong\" is longer than the "
	                       "maximum length 3 (7 characters)\n"
	                       "d.yaml:9:14: spec.tags: 3 items are more than the maximum 2\n");
	spec_errors_clear(&e);
	crd_set_free(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(dir__flag_env_and_builtin),
	    cmocka_unit_test(load__repo_crds__two_kinds_and_lookups),
	    cmocka_unit_test(load__empty_or_missing_dir__enoent),
	    cmocka_unit_test(schema__unknown_keyword_and_misplaced_ones),
	    cmocka_unit_test(schema__values_typed_and_checked),
	    cmocka_unit_test(schema__objects_closed_required_known),
	    cmocka_unit_test(schema__envelope_fields),
	    cmocka_unit_test(schema__names_unique_across_kinds),
	    cmocka_unit_test(schema__arrays_validate),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
