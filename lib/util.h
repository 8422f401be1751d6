/* util.h - durations, clocks, secret files, checked number parsing. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cleanup.h"

/* Parses "250ms", "30s", "5m", "6h", "7d" (one or more number+unit pairs,
 * e.g. "1h30m") into milliseconds. 0 or -EINVAL; *ret_ms set on success. */
int duration_parse(const char *s, int64_t *ret_ms) _must_check_;
/* Formats ms as the shortest exact unit form ("6h", "90s", "250ms") into buf. */
void duration_format(int64_t ms, char *buf, size_t n);

/* Monotonic and wall clocks in milliseconds. */
int64_t now_mono_ms(void);
int64_t now_wall_ms(void);
/* Formats a wall-clock ms timestamp as RFC 3339 UTC with milliseconds. */
void time_format_rfc3339(int64_t wall_ms, char *buf, size_t n);

/* Reads a secret file into a new string, dropping one trailing newline.
 * A relative path is looked up in $CREDENTIALS_DIRECTORY first, when set.
 * Bounded to 64 KiB. 0 or -errno; *ret set only on success (new). */
int secret_read_file(const char *path, char **ret) _must_check_;

/* Reads a whole file (max bytes) into a new NUL-terminated string. */
int file_read_all(const char *path, size_t max, char **ret, size_t *ret_len) _must_check_;

/* strtoll with full checks: the whole string, no overflow. 0 or -EINVAL/-ERANGE. */
int parse_int64(const char *s, int64_t *ret) _must_check_;

/* True when s starts with / ends with the given string. */
bool str_startswith(const char *s, const char *prefix);
bool str_endswith(const char *s, const char *suffix);

/* Hex SHA-256 of data (65 bytes incl. NUL written to out). 0 or -EIO. */
int sha256_hex(const void *data, size_t n, char out[65]) _must_check_;
