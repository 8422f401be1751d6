/* backups.h - the zlh.backups table (db/migrations/001_schema.sql): the
 * metadata of every backup the controller took (id, name, time, size,
 * state), kept after the server is gone so an operator can still find its
 * backups (the agent keeps them outside the container, by uid).
 *
 * Restore requests are bookkept in the intent journal (db/journal.h,
 * action "restore", key "<uid>:restore:<requestId>:0"): a request id whose
 * operation is done is never executed again. This module holds only the
 * metadata table.
 *
 * Writes are fenced: `SELECT zlh.fence($epoch)` runs first in the same
 * statement's transaction (a newer lease epoch refuses the write with
 * -ESTALE, nothing written). Conventions of db/store.h: a borrowed
 * PGconn, PQexecParams only, 0 or a count, a negative errno, err (may be
 * NULL) filled on failure only. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <libpq-fe.h>

#include "cleanup.h"
#include "db/store.h"

#define BACKUPS_ID_MAX 129
#define BACKUPS_NAME_MAX 128

/* One row. Fixed buffers: nothing to free. */
typedef struct BackupRecord {
	char uid[37];
	char backup_id[BACKUPS_ID_MAX];
	char name[BACKUPS_NAME_MAX]; /* "" when unknown */
	char owner[128]; /* "" when unknown */
	char server_name[128]; /* "" when unknown */
	int64_t created_ms; /* wall ms; 0 = unknown (NULL) */
	int64_t bytes; /* -1 = unknown (NULL) */
	char state[8]; /* "running" | "ok" | "failed" */
	int64_t updated_ms;
} BackupRecord;

/* Inserts or updates the row (uid, backup_id) with everything else in
 * *rec (borrowed); an empty owner/server_name/name or an unknown time or
 * size does not overwrite a known one. 0, -ESTALE, -EINVAL (bad uid,
 * state or id), -errno. */
int backups_record(PGconn *c, int64_t epoch, const BackupRecord *rec, StoreError *err) _must_check_;

/* Removes the row (the backup was deleted by retention). 1 removed, 0 there
 * was none, -ESTALE, -errno. */
int backups_forget(PGconn *c, int64_t epoch, const char *uid, const char *backup_id,
                   StoreError *err) _must_check_;

/* The rows of one server (uid), or of every server named server_name
 * (owner may be NULL: any owner), newest first; at most limit (<= 0: 1000).
 * *ret (new, free()) and *ret_n; returns the count. */
int backups_list(PGconn *c, const char *uid_or_NULL, const char *owner_or_NULL,
                 const char *server_name_or_NULL, int limit, BackupRecord **ret, size_t *ret_n,
                 StoreError *err) _must_check_;
