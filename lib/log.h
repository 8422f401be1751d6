/* log.h - the log sink: one JSON object per line on stderr, or native journald
 * fields when stderr is the journal ($JOURNAL_STREAM matches).
 *
 * Levels are syslog's (LOG_ERR ... LOG_DEBUG). lib/, specs/, db/ and the
 * clients log at debug only; controller/ and the reconcilers' entry points
 * log at info and above (CONVENTIONS.md).
 *
 * Fields are a NULL-terminated array of key, value pairs:
 *   log_fields(LOG_INFO, LOG_F("uid", uid, "name", name), "created %d", n);
 * Thread-safe: each record is written with one write(2).
 * Secret values registered with log_register_secret() are replaced by
 * "[redacted]" wherever they would appear. */
#pragma once

#include <stdbool.h>
#include <syslog.h>

#include "cleanup.h"

#define LOG_F(...) ((const char *const[]){__VA_ARGS__, NULL})

void log_set_level(int level);
int log_get_level(void);
/* Parses "debug|info|notice|warning|error". 0 or -EINVAL. */
int log_level_parse(const char *s, int *ret_level) _must_check_;
/* Use journald native fields (true) or JSON lines (false). Default: detected
 * from $JOURNAL_STREAM against stderr's device and inode. */
void log_set_journal(bool on);
/* Redirects output to fd (tests). Default 2. */
void log_set_fd(int fd);
/* Registers a secret (borrowed: copied) that must never reach the log. */
void log_register_secret(const char *secret);

void log_fields(int level, const char *const *fields, const char *fmt, ...) _printf_(3, 4);

#define log_debug(...) log_fields(LOG_DEBUG, NULL, __VA_ARGS__)
#define log_info(...) log_fields(LOG_INFO, NULL, __VA_ARGS__)
#define log_notice(...) log_fields(LOG_NOTICE, NULL, __VA_ARGS__)
#define log_warning(...) log_fields(LOG_WARNING, NULL, __VA_ARGS__)
#define log_error(...) log_fields(LOG_ERR, NULL, __VA_ARGS__)
