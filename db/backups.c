/* backups.c - the zlh.backups metadata table; see backups.h. */
#include "db/backups.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

DEFINE_TRIVIAL_CLEANUP_FUNC(PGresult *, PQclear)
#define _cleanup_res_ _cleanup_(PQclearp)

static int fail(PGconn *c, const PGresult *res, StoreError *err)
{
	int r = store_error_set(c, res, err);
	const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
	if (state && strcmp(state, "ZL006") == 0)
		return -ESTALE;
	return r;
}

static int q(PGconn *c, const char *sql, int n, const char *const *vals, PGresult **ret,
             StoreError *err)
{
	if (!c)
		return store_error_set(NULL, NULL, err);
	PGresult *res = PQexecParams(c, sql, n, NULL, vals, NULL, NULL, 0);
	ExecStatusType st = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;
	if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
		int r = fail(c, res, err);
		PQclear(res);
		return r;
	}
	*ret = res;
	return 0;
}

static bool uid_valid(const char *uid)
{
	if (!uid || strlen(uid) != 36)
		return false;
	for (int i = 0; i < 36; i++) {
		char ch = uid[i];
		bool dash = i == 8 || i == 13 || i == 18 || i == 23;
		if (dash ? ch != '-'
		         : !((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f') ||
		             (ch >= 'A' && ch <= 'F')))
			return false;
	}
	return true;
}

static const char *nz(const char *s)
{
	return s && *s ? s : NULL;
}

int backups_record(PGconn *c, int64_t epoch, const BackupRecord *rec, StoreError *err)
{
	if (!rec || !uid_valid(rec->uid) || !rec->backup_id[0] ||
	    (strcmp(rec->state, "running") != 0 && strcmp(rec->state, "ok") != 0 &&
	     strcmp(rec->state, "failed") != 0))
		return -EINVAL;
	char ep[24], created[24], bytes[24];
	snprintf(ep, sizeof ep, "%" PRId64, epoch);
	snprintf(created, sizeof created, "%" PRId64, rec->created_ms);
	snprintf(bytes, sizeof bytes, "%" PRId64, rec->bytes);
	const char *vals[] = {
	    ep,
	    rec->uid,
	    rec->backup_id,
	    nz(rec->name),
	    nz(rec->owner),
	    nz(rec->server_name),
	    rec->created_ms > 0 ? created : NULL,
	    rec->bytes >= 0 ? bytes : NULL,
	    rec->state,
	};
	/* The fence runs first (the INSERT reads from it): the lease row is
	 * locked FOR SHARE until this statement's transaction ends. */
	_cleanup_res_ PGresult *res = NULL;
	return q(c,
	         "WITH f AS (SELECT zlh.fence($1::bigint))\n"
	         "INSERT INTO zlh.backups AS b (uid, backup_id, name, owner, server_name,\n"
	         "        created_at, bytes, state, updated_at)\n"
	         "SELECT $2::uuid, $3, $4, $5, $6,\n"
	         "       to_timestamp($7::bigint / 1000.0), $8::bigint, $9, now() FROM f\n"
	         "ON CONFLICT (uid, backup_id) DO UPDATE SET\n"
	         "    name = coalesce(EXCLUDED.name, b.name),\n"
	         "    owner = coalesce(EXCLUDED.owner, b.owner),\n"
	         "    server_name = coalesce(EXCLUDED.server_name, b.server_name),\n"
	         "    created_at = coalesce(EXCLUDED.created_at, b.created_at),\n"
	         "    bytes = coalesce(EXCLUDED.bytes, b.bytes),\n"
	         "    state = EXCLUDED.state, updated_at = now()",
	         9, vals, &res, err);
}

int backups_forget(PGconn *c, int64_t epoch, const char *uid, const char *backup_id,
                   StoreError *err)
{
	if (!uid_valid(uid) || !backup_id || !*backup_id)
		return -EINVAL;
	char ep[24];
	snprintf(ep, sizeof ep, "%" PRId64, epoch);
	const char *vals[] = {ep, uid, backup_id};
	_cleanup_res_ PGresult *res = NULL;
	/* Data-modifying CTEs always run; the fence is read by the outer
	 * SELECT, and when it refuses, the whole statement is rolled back. */
	int r = q(c,
	          "WITH f AS (SELECT zlh.fence($1::bigint)),\n"
	          "     d AS (DELETE FROM zlh.backups WHERE uid = $2::uuid AND backup_id = $3\n"
	          "           RETURNING 1)\n"
	          "SELECT (SELECT count(*) FROM f), (SELECT count(*) FROM d)",
	          3, vals, &res, err);
	if (r < 0)
		return r;
	return PQntuples(res) == 1 && strcmp(PQgetvalue(res, 0, 1), "0") != 0 ? 1 : 0;
}

static void copy_col(const PGresult *res, int row, int col, char *dst, size_t n)
{
	const char *v = PQgetisnull(res, row, col) ? "" : PQgetvalue(res, row, col);
	snprintf(dst, n, "%s", v);
}

static int64_t int_col(const PGresult *res, int row, int col, int64_t dflt)
{
	int64_t v;
	if (PQgetisnull(res, row, col) || parse_int64(PQgetvalue(res, row, col), &v) < 0)
		return dflt;
	return v;
}

int backups_list(PGconn *c, const char *uid_or_NULL, const char *owner_or_NULL,
                 const char *server_name_or_NULL, int limit, BackupRecord **ret, size_t *ret_n,
                 StoreError *err)
{
	if (!ret || !ret_n || (uid_or_NULL && !uid_valid(uid_or_NULL)) ||
	    (!uid_or_NULL && !server_name_or_NULL))
		return -EINVAL;
	if (limit <= 0 || limit > 1000)
		limit = 1000;
	char lim[16];
	snprintf(lim, sizeof lim, "%d", limit);
	const char *vals[] = {uid_or_NULL, owner_or_NULL, server_name_or_NULL, lim};
	_cleanup_res_ PGresult *res = NULL;
	int r = q(c,
	          "SELECT uid::text, backup_id, name, owner, server_name,\n"
	          "       (extract(epoch FROM created_at) * 1000)::bigint, bytes, state,\n"
	          "       (extract(epoch FROM updated_at) * 1000)::bigint\n"
	          "FROM zlh.backups\n"
	          "WHERE ($1::uuid IS NULL OR uid = $1::uuid)\n"
	          "  AND ($2::text IS NULL OR owner = $2)\n"
	          "  AND ($3::text IS NULL OR server_name = $3)\n"
	          "ORDER BY created_at DESC NULLS LAST, backup_id LIMIT $4::int",
	          4, vals, &res, err);
	if (r < 0)
		return r;
	int n = PQntuples(res);
	BackupRecord *items = n ? calloc((size_t)n, sizeof *items) : NULL;
	if (n && !items)
		return -ENOMEM;
	for (int i = 0; i < n; i++) {
		BackupRecord *b = &items[i];
		copy_col(res, i, 0, b->uid, sizeof b->uid);
		copy_col(res, i, 1, b->backup_id, sizeof b->backup_id);
		copy_col(res, i, 2, b->name, sizeof b->name);
		copy_col(res, i, 3, b->owner, sizeof b->owner);
		copy_col(res, i, 4, b->server_name, sizeof b->server_name);
		b->created_ms = int_col(res, i, 5, 0);
		b->bytes = int_col(res, i, 6, -1);
		copy_col(res, i, 7, b->state, sizeof b->state);
		b->updated_ms = int_col(res, i, 8, 0);
	}
	*ret = items;
	*ret_n = (size_t)n;
	return n;
}
