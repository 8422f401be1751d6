/* errors.c - located error lists (see errors.h). */
#include "specs/errors.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"

int spec_errors_addv(SpecErrors *e, const char *file, int line, int col, const char *path,
                     const char *fmt, va_list ap)
{
	if (e->n >= SPEC_ERRORS_MAX) {
		e->truncated = 1;
		return 0;
	}
	if (e->n == e->cap) {
		size_t cap = e->cap ? e->cap * 2 : 8;
		SpecError *items = realloc(e->items, cap * sizeof *items);
		if (!items)
			return -ENOMEM;
		e->items = items;
		e->cap = cap;
	}
	_cleanup_buf_ Buf msg = BUF_INIT;
	if (e->n == SPEC_ERRORS_MAX - 1) {
		/* The last slot says why the list ends here. */
		e->truncated = 1;
		if (buf_puts(&msg, "too many errors; stopping") < 0)
			return -ENOMEM;
		path = NULL;
	} else if (buf_vprintf(&msg, fmt, ap) < 0)
		return -ENOMEM;
	SpecError *err = &e->items[e->n];
	err->file = strdup(file ? file : "");
	err->path = strdup(path ? path : "");
	err->message = buf_steal(&msg);
	if (!err->file || !err->path || !err->message) {
		free(err->file);
		free(err->path);
		free(err->message);
		return -ENOMEM;
	}
	err->line = line > 0 ? line : 0;
	err->col = col > 0 ? col : 0;
	e->n++;
	return 0;
}

int spec_errors_add(SpecErrors *e, const char *file, int line, int col, const char *path,
                    const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int r = spec_errors_addv(e, file, line, col, path, fmt, ap);
	va_end(ap);
	return r;
}

void spec_errors_clear(SpecErrors *e)
{
	if (!e)
		return;
	for (size_t i = 0; i < e->n; i++) {
		free(e->items[i].file);
		free(e->items[i].path);
		free(e->items[i].message);
	}
	free(e->items);
	*e = (SpecErrors)SPEC_ERRORS_INIT;
}

char *spec_error_format(const SpecError *err)
{
	_cleanup_buf_ Buf b = BUF_INIT;
	int r = buf_puts(&b, err->file && *err->file ? err->file : "<input>");
	if (r >= 0 && err->line > 0)
		r = err->col > 0 ? buf_printf(&b, ":%d:%d", err->line, err->col)
		                 : buf_printf(&b, ":%d", err->line);
	if (r >= 0)
		r = buf_puts(&b, ": ");
	if (r >= 0 && err->path && *err->path)
		r = buf_printf(&b, "%s: ", err->path);
	if (r >= 0)
		r = buf_puts(&b, err->message ? err->message : "");
	if (r < 0)
		return NULL;
	return buf_steal(&b);
}

void spec_errors_print(const SpecErrors *e, FILE *f)
{
	for (size_t i = 0; i < e->n; i++) {
		_cleanup_free_ char *s = spec_error_format(&e->items[i]);
		if (s)
			fprintf(f, "%s\n", s);
	}
}

int spec_errors_append(SpecErrors *dst, const SpecErrors *src)
{
	for (size_t i = 0; i < src->n; i++) {
		const SpecError *s = &src->items[i];
		int r = spec_errors_add(dst, s->file, s->line, s->col, s->path, "%s", s->message);
		if (r < 0)
			return r;
	}
	return 0;
}
