/* cleanup.h - scope-bound cleanup helpers in the style of systemd's.
 *
 *   _cleanup_free_ char *s = strdup("x");        freed at scope exit
 *   return TAKE_PTR(s);                           hand ownership out
 *
 * Every helper accepts NULL. */
#pragma once

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define _cleanup_(f) __attribute__((cleanup(f)))
#define _unused_ __attribute__((unused))
#define _must_check_ __attribute__((warn_unused_result))
#define _printf_(a, b) __attribute__((format(printf, a, b)))

/* Returns the pointer held in *p and sets *p to NULL. */
#define TAKE_PTR(p)                            \
	({                                     \
		__typeof__(p) _take_tmp = (p); \
		(p) = NULL;                    \
		_take_tmp;                     \
	})

#define ELEMENTSOF(a) (sizeof(a) / sizeof((a)[0]))

/* Defines static inline void NAMEp(TYPE *p) { if (*p) FUNC(*p); } */
#define DEFINE_TRIVIAL_CLEANUP_FUNC(type, func) \
	static inline void func##p(type *p)     \
	{                                       \
		if (*p)                         \
			func(*p);               \
	}

static inline void freep(void *p)
{
	free(*(void **)p);
}
#define _cleanup_free_ _cleanup_(freep)

DEFINE_TRIVIAL_CLEANUP_FUNC(FILE *, fclose)
#define _cleanup_fclose_ _cleanup_(fclosep)

static inline void closep(int *fd)
{
	if (*fd >= 0)
		close(*fd);
}
#define _cleanup_close_ _cleanup_(closep)

/* jansson (>= 2.9) ships json_decrefp; json_decref accepts NULL. */
#include <jansson.h>
#define _cleanup_json_ _cleanup_(json_decrefp)

/* Frees a NULL-terminated array of strings and the array. */
static inline void strv_free(char **v)
{
	if (!v)
		return;
	for (char **i = v; *i; i++)
		free(*i);
	free(v);
}
DEFINE_TRIVIAL_CLEANUP_FUNC(char **, strv_free)
#define _cleanup_strv_free_ _cleanup_(strv_freep)
