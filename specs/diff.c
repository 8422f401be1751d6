/* diff.c - structural differences between two JSON values (spec.h). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "specs/internal.h"
#include "specs/spec.h"

static int add(SpecDiff *d, SpecDiffOp op, const Path *p, const json_t *old, const json_t *new)
{
	SpecDiffEntry *items = realloc(d->items, (d->n + 1) * sizeof *items);
	if (!items)
		return -ENOMEM;
	d->items = items;
	SpecDiffEntry *e = &d->items[d->n];
	e->op = op;
	e->path = strdup(p->s);
	if (!e->path)
		return -ENOMEM;
	e->old_value = old ? json_incref((json_t *)old) : NULL;
	e->new_value = new ? json_incref((json_t *)new) : NULL;
	d->n++;
	return 0;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int diff_rec(SpecDiff *d, Path *p, const json_t *a, const json_t *b);

static int diff_objects(SpecDiff *d, Path *p, const json_t *a, const json_t *b)
{
	size_t n = json_object_size(a) + json_object_size(b), k = 0;
	_cleanup_free_ const char **keys = calloc(n ? n : 1, sizeof *keys);
	if (!keys)
		return -ENOMEM;
	const char *key;
	json_t *v;
	json_object_foreach((json_t *)a, key, v) keys[k++] = key;
	json_object_foreach((json_t *)b, key, v) if (!json_object_get(a, key)) keys[k++] = key;
	qsort(keys, k, sizeof *keys, cmp_str);
	for (size_t i = 0; i < k; i++) {
		size_t saved = spec_path_push_key(p, keys[i]);
		int r = diff_rec(d, p, json_object_get(a, keys[i]), json_object_get(b, keys[i]));
		spec_path_pop(p, saved);
		if (r < 0)
			return r;
	}
	return 0;
}

static int diff_rec(SpecDiff *d, Path *p, const json_t *a, const json_t *b)
{
	if (!a && !b)
		return 0;
	if (!a)
		return add(d, SPEC_DIFF_ADDED, p, NULL, b);
	if (!b)
		return add(d, SPEC_DIFF_REMOVED, p, a, NULL);
	if (json_equal(a, b))
		return 0;
	if (json_is_object(a) && json_is_object(b))
		return diff_objects(d, p, a, b);
	if (json_is_array(a) && json_is_array(b)) {
		size_t na = json_array_size(a), nb = json_array_size(b);
		for (size_t i = 0; i < na || i < nb; i++) {
			size_t saved = spec_path_push_index(p, i);
			int r = diff_rec(d, p, json_array_get(a, i), json_array_get(b, i));
			spec_path_pop(p, saved);
			if (r < 0)
				return r;
		}
		return 0;
	}
	return add(d, SPEC_DIFF_CHANGED, p, a, b);
}

int spec_diff_at(const char *prefix, const json_t *old, const json_t *new, SpecDiff *ret)
{
	SpecDiff d = {0};
	Path p = {.len = 0};
	p.s[0] = 0;
	if (prefix && *prefix)
		spec_path_push_key(&p, prefix);
	/* An absent side is an empty object when the other is an object, so a
	 * new document lists its fields rather than one blob. */
	_cleanup_json_ json_t *empty = json_object();
	if (!empty)
		return -ENOMEM;
	if (!old && json_is_object(new))
		old = empty;
	if (!new &&json_is_object(old))
		new = empty;
	int r = diff_rec(&d, &p, old, new);
	if (r < 0) {
		spec_diff_clear(&d);
		return r;
	}
	*ret = d;
	return 0;
}

int spec_diff(const json_t *old, const json_t *new, SpecDiff *ret)
{
	return spec_diff_at(NULL, old, new, ret);
}

void spec_diff_clear(SpecDiff *d)
{
	if (!d)
		return;
	for (size_t i = 0; i < d->n; i++) {
		free(d->items[i].path);
		json_decref(d->items[i].old_value);
		json_decref(d->items[i].new_value);
	}
	free(d->items);
	*d = (SpecDiff){0};
}

void spec_diff_print(const SpecDiff *d, FILE *f)
{
	for (size_t i = 0; i < d->n; i++) {
		const SpecDiffEntry *e = &d->items[i];
		_cleanup_free_ char *o = e->old_value ? spec_canonical_json(e->old_value) : NULL;
		_cleanup_free_ char *n = e->new_value ? spec_canonical_json(e->new_value) : NULL;
		const char *path = *e->path ? e->path : "(root)";
		switch (e->op) {
		case SPEC_DIFF_ADDED:
			fprintf(f, "+ %s: %s\n", path, n ? n : "?");
			break;
		case SPEC_DIFF_REMOVED:
			fprintf(f, "- %s: %s\n", path, o ? o : "?");
			break;
		default:
			fprintf(f, "~ %s: %s -> %s\n", path, o ? o : "?", n ? n : "?");
			break;
		}
	}
}
