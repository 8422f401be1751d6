/* libFuzzer target: arbitrary bytes through the YAML and JSON readers, the
 * validator, canonical form, hash, diff and the YAML writer. Whatever the
 * input, nothing may crash, leak or hang; whatever parses must read back
 * the same from its own YAML rendering. */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "specs/crd.h"
#include "specs/spec.h"

static const CrdSet *crds;
static CrdSet *repo_crds;

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	char *dir = NULL;
	SpecErrors e = SPEC_ERRORS_INIT;
	if (crd_dir_find(NULL, &dir) < 0 || crd_set_load(dir, &repo_crds, &e) < 0) {
		spec_errors_print(&e, stderr);
		fprintf(stderr, "fuzz-spec: cannot load the CRDs\n");
		abort();
	}
	crds = repo_crds;
	free(dir);
	spec_errors_clear(&e);
	return 0;
}

static void check_docs(const SpecDocs *docs)
{
	for (size_t i = 0; i < docs->n; i++) {
		const json_t *doc = docs->items[i].doc;
		char h[65];
		if (spec_hash(doc, h) < 0)
			abort();
		char *y = spec_to_yaml(doc);
		if (!y)
			abort();
		/* Round trip: our YAML reads back to the same document. */
		SpecDocs again = {0};
		SpecErrors e = SPEC_ERRORS_INIT;
		if (spec_parse(crds, "rt.yaml", y, strlen(y), SPEC_FORMAT_YAML, &again, &e) < 0 ||
		    again.n != 1 || !json_equal(again.items[0].doc, doc)) {
			fprintf(stderr, "round trip failed:\n%s\n", y);
			spec_errors_print(&e, stderr);
			abort();
		}
		SpecDiff d = {0};
		if (spec_diff(docs->items[0].doc, doc, &d) < 0)
			abort();
		FILE *devnull = fopen("/dev/null", "w");
		if (devnull) {
			spec_diff_print(&d, devnull);
			fclose(devnull);
		}
		spec_diff_clear(&d);
		spec_docs_clear(&again);
		spec_errors_clear(&e);
		free(y);
	}
}

/* Input starting with "#crd\n": the rest is a CRD file; when it loads, a
 * document of its kind with an empty spec (defaults only) is checked. */
static void fuzz_crd(const char *data, size_t size)
{
	char *text = malloc(size + 1);
	if (!text)
		return;
	memcpy(text, data, size);
	text[size] = 0;
	const char *files[] = {"fuzz-crd.yaml"};
	const char *datas[] = {text};
	CrdSet *set = NULL;
	SpecErrors e = SPEC_ERRORS_INIT;
	if (crd_set_load_data(files, datas, 1, &set, &e) == 0) {
		json_t *j = crd_set_to_json(set);
		if (!j)
			abort();
		json_decref(j);
		char doc[512];
		snprintf(doc, sizeof doc,
		         "apiVersion: zlh.dev/v1\nkind: %s\nmetadata: {name: a, owner: b}\n"
		         "spec: {}\n",
		         set->items[0].kind);
		SpecDocs docs = {0};
		SpecErrors e2 = SPEC_ERRORS_INIT;
		if (spec_parse(set, "d.yaml", doc, strlen(doc), SPEC_FORMAT_YAML, &docs, &e2) ==
		    0) {
			const CrdSet *saved = crds;
			crds = set;
			check_docs(&docs);
			crds = saved;
		}
		spec_docs_clear(&docs);
		spec_errors_clear(&e2);
	} else if (e.n == 0)
		abort();
	crd_set_free(set);
	spec_errors_clear(&e);
	free(text);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size >= 5 && memcmp(data, "#crd\n", 5) == 0) {
		if (!memchr(data, 0, size))
			fuzz_crd((const char *)data + 5, size - 5);
		return 0;
	}
	static const SpecFormat formats[] = {SPEC_FORMAT_YAML, SPEC_FORMAT_JSON};
	for (size_t f = 0; f < 2; f++) {
		SpecDocs docs = {0};
		SpecErrors e = SPEC_ERRORS_INIT;
		int r = spec_parse(crds, "fuzz", (const char *)data, size, formats[f], &docs, &e);
		if (r == 0)
			check_docs(&docs);
		else if (e.n == 0 && r != -ENOMEM)
			abort(); /* every failure says why */
		FILE *devnull = fopen("/dev/null", "w");
		if (devnull) {
			spec_errors_print(&e, devnull);
			fclose(devnull);
		}
		spec_docs_clear(&docs);
		spec_errors_clear(&e);
	}
	return 0;
}
