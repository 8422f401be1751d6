/* testutil.h - helpers for integration tests: throwaway databases on the
 * PostgreSQL that test/run-tests.sh started ($ZLH_TEST_PG), child processes,
 * and bounded polling. Every wait has a deadline; nothing sleeps blindly. */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "cleanup.h"

/* Admin conninfo from $ZLH_TEST_PG (borrowed), or NULL when unset. */
const char *tu_pg_admin(void);

/* Creates a fresh, empty database. *ret_conninfo (new) connects to it as the
 * superuser; *ret_name (new) is its name. 0 or -errno. */
int tu_db_create(char **ret_name, char **ret_conninfo) _must_check_;
/* Drops it (terminating its connections). */
void tu_db_drop(const char *name);
/* conninfo for the same database as another user (new). */
char *tu_db_conninfo_as(const char *name, const char *user);
/* Runs one SQL statement as superuser on conninfo; 0 or -EIO. */
int tu_sql(const char *conninfo, const char *sql) _must_check_;

/* Path of a built binary ($ZLH_BIN/name), new string. */
char *tu_bin(const char *name);
/* Path of a source-tree file ($ZLH_SRC/rel), new string. */
char *tu_src(const char *rel);

/* Starts argv[0] with argv; extra env "K=V" strings (may be NULL) added to
 * the current environment; stdout/stderr appended to log_path (or inherited
 * when NULL). Returns the pid or -errno. */
pid_t tu_spawn(const char *const *argv, const char *const *env, const char *log_path);
/* Runs a command to completion, capturing stdout (new, may be NULL) and
 * returning its exit status (or -errno / 128+signal). stdin_data may be NULL.
 * Bounded by timeout_ms. */
int tu_run(const char *const *argv, const char *const *env, const char *stdin_data,
           char **ret_stdout, char **ret_stderr, int64_t timeout_ms);
/* Sends sig and reaps the child, waiting at most timeout_ms (then SIGKILL).
 * Returns the wait status. */
int tu_stop(pid_t pid, int sig, int64_t timeout_ms);

/* Polls cond(ctx) every 10..100 ms until it returns true or timeout_ms
 * passes. Returns true when the condition held. */
bool tu_wait_until(bool (*cond)(void *ctx), void *ctx, int64_t timeout_ms);

/* A temp dir (new path), removed by tu_rmrf. */
char *tu_tempdir(void);
void tu_rmrf(const char *path);
/* Writes a file; 0 or -errno. */
int tu_write_file(const char *path, const char *data) _must_check_;
