/* errors.h - located errors of the spec model (files, lines, columns, paths).
 *
 * One SpecError per problem; a parse or a validation reports every problem of
 * a document, not only the first. Printed one per line as
 *
 *   survival.yaml:12:7: spec.resources.memoryMiB: 100 is below the minimum 512
 *
 * with ":line:col" left out when unknown (JSON input past its syntax, which is
 * all jansson can locate) and "path: " left out when the error is about the
 * input as a whole (a YAML syntax error, "no documents"). */
#pragma once

#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>

#include "cleanup.h"

/* At most this many errors are kept; the last one kept then says
 * "too many errors; stopping" and further ones are dropped. */
#define SPEC_ERRORS_MAX 100

typedef struct SpecError {
	char *file; /* owned; "" when unknown */
	int line; /* 1-based; 0 = unknown */
	int col; /* 1-based; 0 = unknown */
	char *path; /* owned; field path like spec.resources.memoryMiB, "" = none */
	char *message; /* owned */
} SpecError;

typedef struct SpecErrors {
	SpecError *items; /* owned */
	size_t n;
	size_t cap;
	int truncated; /* errors were dropped past SPEC_ERRORS_MAX */
} SpecErrors;

#define SPEC_ERRORS_INIT \
	{                \
		0        \
	}

/* Appends one error (file, path borrowed and copied; NULL = ""). Returns 0,
 * or -ENOMEM (the error is then lost but the list stays consistent). Past
 * SPEC_ERRORS_MAX errors, nothing is added and 0 is returned. */
int spec_errors_add(SpecErrors *e, const char *file, int line, int col, const char *path,
                    const char *fmt, ...) _printf_(6, 7);
int spec_errors_addv(SpecErrors *e, const char *file, int line, int col, const char *path,
                     const char *fmt, va_list ap) _printf_(6, 0);

/* Frees every error and empties the list; the SpecErrors itself is the
 * caller's (usually on the stack). Safe to call twice. */
void spec_errors_clear(SpecErrors *e);

/* Formats one error as one line without a newline (new string, NULL on ENOMEM). */
char *spec_error_format(const SpecError *err);

/* Prints every error, one per line, to f. */
void spec_errors_print(const SpecErrors *e, FILE *f);

/* Copies every error of src to the end of dst. 0 or -ENOMEM. */
int spec_errors_append(SpecErrors *dst, const SpecErrors *src);

static inline void spec_errors_clearp(SpecErrors *e)
{
	spec_errors_clear(e);
}
#define _cleanup_spec_errors_ _cleanup_(spec_errors_clearp)
