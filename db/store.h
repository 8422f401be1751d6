/* store.h - the PostgreSQL store: connection, migrations, and the operator
 * and portal side of desired state (apply, delete, list, get, events, quotas).
 * All SQL of those lives in db/ (DESIGN.md sections 3 and 5); the schema is
 * db/migrations/NNN_*.sql.
 *
 * Every function takes a borrowed PGconn (the caller owns it and closes it
 * with PQfinish) and returns 0 (or a count) on success, a negative errno on
 * failure. When err is not NULL it is filled on failure only, from the
 * server's error fields (sqlstate, primary message, detail) or from libpq.
 * Values are always sent as parameters (PQexecParams), never spliced into SQL.
 *
 * Errno mapping of server errors (store_errno_from_sqlstate):
 *   ZL001 invalid document              -EINVAL     (zlhctl exit 1)
 *   ZL002 quota exceeded                -EDQUOT     (exit 5)
 *   ZL003 request_id reused             -EEXIST     (exit 5)
 *   ZL004 no such server                -ENOENT     (exit 4)
 *   ZL005 hostname taken                -EADDRINUSE (exit 5)
 *   ZL006 stale lease epoch (002)       -ESTALE
 *   ZL007 server locked elsewhere (002) -EBUSY
 *   class 08 / connection lost          -ECONNRESET (exit 3)
 *   40001, 40P01 (serialization, deadlock) -EAGAIN  (retry the transaction)
 *   57014 (statement timeout, cancel)   -ETIMEDOUT
 *   42501 (permission denied)           -EPERM
 *   3F000, 42P01, 42883 (schema/table/function missing: not migrated) -ENOPKG
 *   23505 (unique violation)            -EEXIST
 *   class 22, 23 (other)                -EINVAL
 *   anything else                       -EIO
 * store_errno_is_connection() tells whether a value means "database
 * unreachable" (zlhctl exit 3). */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>
#include <libpq-fe.h>

#include "cleanup.h"

typedef struct StoreError {
	char sqlstate[6]; /* "ZL001", "" when the error did not come from the server */
	char message[1024]; /* primary message (for ZL001: "spec.x.y: what is wrong") */
	char detail[1024]; /* detail, or "" */
} StoreError;

DEFINE_TRIVIAL_CLEANUP_FUNC(PGconn *, PQfinish)
#define _cleanup_pgconn_ _cleanup_(PQfinishp)

/* The errno of a SQLSTATE (table above); sqlstate may be NULL (-EIO). */
int store_errno_from_sqlstate(const char *sqlstate);
/* True for the errnos that mean the database could not be reached or the
 * connection broke: -ECONNREFUSED, -ECONNRESET, -EHOSTDOWN, -EHOSTUNREACH,
 * -ETIMEDOUT (from store_connect only), -EACCES, -ENOTCONN. */
bool store_errno_is_connection(int r);

/* Fills err (may be NULL) from a failed result (res may be NULL: the
 * connection's message is used) and returns the errno of the failure. For
 * other db/ modules that run their own queries. */
int store_error_set(PGconn *conn, const PGresult *res, StoreError *err);

/* Connects (conninfo: libpq keyword string or URI; connect_timeout defaults
 * to 10 s; client_encoding UTF8). Every failure is a connection failure:
 * -ECONNREFUSED (nothing listens / no socket), -EACCES (authentication
 * rejected), -ETIMEDOUT, -EHOSTDOWN (anything else, including an unknown
 * database), -ENOMEM. *ret (new, PQfinish it) set on success only. */
int store_connect(const char *conninfo, PGconn **ret, StoreError *err) _must_check_;

/* --- migrations -------------------------------------------------------------
 * Files are db/migrations/NNN_name.sql (NNN: the version, digits; applied in
 * version order). Each is applied in one transaction and recorded in
 * zlh.schema_migrations (version, name, checksum = sha256 of the file,
 * applied_at). A file must not contain BEGIN/COMMIT. */

/* Finds the migrations directory: flag (when not NULL; must be a directory),
 * else $ZLH_MIGRATIONS_DIR (when set and not empty; must be a directory),
 * else ZLH_SOURCE_DIR "/db/migrations", else
 * ZLH_PREFIX "/share/zlh-controller/migrations" (the first that is a
 * directory). 0 or -ENOENT/-ENOMEM; *ret (new) set on success. */
int store_migrations_dir_find(const char *flag, char **ret) _must_check_;

/* Applies every migration of dir not yet recorded, in order, then upserts
 * kinds (may be NULL: kinds untouched) into zlh.kinds in one transaction.
 * kinds (borrowed) is crd_set_to_json()'s array:
 *   [{"kind","apiVersion","plural","short"(optional),"schema"}].
 * Safe to run twice and concurrently: the whole run holds a session advisory
 * lock (released before returning). Returns the number of migrations
 * applied by this call (0 when current), or -EBADMSG (a recorded migration's
 * file changed: checksum mismatch), -EINVAL (bad file name or kinds JSON,
 * a duplicated version), -ENOENT (no such directory or no migration in it),
 * a server error's errno (err names the file). Stops at the first failure;
 * migrations applied before it stay applied. */
int store_migrate(PGconn *conn, const char *migrations_dir, const json_t *kinds,
                  StoreError *err) _must_check_;

/* Counts the migrations of dir that the database has not recorded (all of
 * them when zlh.schema_migrations does not exist). 0 or -EBADMSG (a recorded
 * migration's file changed), -ENOENT, -errno; *ret_pending set on success.
 * The controller refuses to start unless this is 0. */
int store_migrations_pending(PGconn *conn, const char *migrations_dir, int *ret_pending,
                             StoreError *err) _must_check_;

/* --- transactions ---------------------------------------------------------- */
int store_begin(PGconn *conn, StoreError *err) _must_check_;
int store_commit(PGconn *conn, StoreError *err) _must_check_;
/* Rolls back (also after a failed statement); harmless outside a transaction. */
int store_rollback(PGconn *conn, StoreError *err);

/* --- desired state ----------------------------------------------------------- */

/* Calls zlh.apply_server(doc, request_id): doc (borrowed) is one whole
 * document {"apiVersion","kind","metadata":{name,owner,labels,annotations},
 * "spec"}; request_id_or_NULL a UUID string (-EINVAL when malformed). Works
 * inside a transaction (store_begin) so several documents apply
 * all-or-nothing; outside one it is its own transaction. *ret_result (new):
 *   {"uid":"...","generation":N,"created":bool,"changed":bool}
 * generation is bumped iff the canonical spec changed; "changed" is true when
 * anything stored changed (spec, labels or annotations), "created" on insert.
 * Errors: -EINVAL (ZL001; err->message is "field.path: what"; also a server
 * whose deletion was requested, or a kind change), -EDQUOT, -EEXIST,
 * -EADDRINUSE, -EAGAIN (deadlock between multi-document transactions: retry),
 * connection errors. */
int store_apply_server(PGconn *conn, const json_t *doc, const char *request_id_or_NULL,
                       json_t **ret_result, StoreError *err) _must_check_;

/* Requests deletion of owner/name (zlh.delete_server; idempotent). With
 * owner NULL the name must belong to exactly one owner: -ENOTUNIQ when
 * several owners use it. -ENOENT when absent. *ret_result (new, may be NULL
 * to ignore): {"uid":"...","deletionRequested":true}. */
int store_delete_server(PGconn *conn, const char *owner_or_NULL, const char *name,
                        json_t **ret_result, StoreError *err) _must_check_;

/* Every server (of one kind when kind_or_NULL is given: the kind, its plural
 * or its short name, ignoring case; an unknown kind gives an empty array),
 * ordered by owner then name, as the `zlhctl get -o json` array (new):
 *   {"kind","metadata":{"name","owner","uid","generation","labels"},
 *    "spec":{...},"status":{"phase","observedGeneration","vmid","node","ip",
 *    "hostname","conditions":[...]}}
 * (vmid, node, ip, hostname are null until allocated). */
int store_list_servers(PGconn *conn, const char *kind_or_NULL, json_t **ret) _must_check_;

/* One server, same shape plus metadata.annotations, metadata.createdAt,
 * metadata.deletionRequestedAt (RFC 3339 or null) and status.lastError,
 * status.updatedAt. owner NULL: -ENOTUNIQ when several owners use the name.
 * -ENOENT when absent. *ret (new). */
int store_get_server(PGconn *conn, const char *owner_or_NULL, const char *name, json_t **ret,
                     StoreError *err) _must_check_;

/* Events (of one server when uid_or_NULL is given), ascending by id, as a
 * new JSON array of {"id","uid","kind","name","owner","type","reason",
 * "message","count","firstAt","lastAt"}. after_id >= 0: the first `limit`
 * events with id > after_id (for --follow: pass the last id seen);
 * after_id < 0: the most recent `limit` events. limit <= 0 means 100;
 * capped at 1000. */
int store_list_events(PGconn *conn, const char *uid_or_NULL, int64_t after_id, int limit,
                      json_t **ret, StoreError *err) _must_check_;

/* Sets an owner's quota (owner "*" is the default for owners without a
 * row). -EINVAL for a bad owner or negative limits. */
int store_quota_set(PGconn *conn, const char *owner, int64_t max_servers, int64_t max_memory_mib,
                    StoreError *err) _must_check_;
