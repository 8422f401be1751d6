/* buf.h - a growable byte buffer, always NUL-terminated. */
#pragma once

#include <stdarg.h>
#include <stddef.h>

#include "cleanup.h"

typedef struct Buf {
	char *data; /* owned; NUL-terminated when len > 0 or after any append */
	size_t len;
	size_t cap;
	size_t max; /* 0 = unbounded; appends past it fail with -E2BIG */
} Buf;

#define BUF_INIT  \
	{         \
		0 \
	}

/* Appends n bytes. 0 or -ENOMEM / -E2BIG; on failure the buffer is unchanged. */
int buf_append(Buf *b, const void *p, size_t n) _must_check_;
int buf_puts(Buf *b, const char *s) _must_check_;
int buf_printf(Buf *b, const char *fmt, ...) _printf_(2, 3) _must_check_;
int buf_vprintf(Buf *b, const char *fmt, va_list ap) _must_check_;
/* Empties the buffer, keeping its memory. */
void buf_clear(Buf *b);
/* Frees the memory; the Buf itself is caller's (stack). */
void buf_done(Buf *b);
/* Returns the data (new; caller frees) and resets the buffer. Never NULL
 * unless out of memory. */
char *buf_steal(Buf *b);

static inline void buf_donep(Buf *b)
{
	buf_done(b);
}
#define _cleanup_buf_ _cleanup_(buf_donep)
