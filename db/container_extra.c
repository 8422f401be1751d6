/* container_extra.c - see container_extra.h. */
#include "db/container_extra.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

static bool valid_uuid(const char *s)
{
	if (!s || strlen(s) != 36)
		return false;
	for (int i = 0; i < 36; i++) {
		char ch = s[i];
		if (i == 8 || i == 13 || i == 18 || i == 23) {
			if (ch != '-')
				return false;
		} else if (!((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f') ||
		             (ch >= 'A' && ch <= 'F'))) {
			return false;
		}
	}
	return true;
}

static int q(PGconn *c, const char *sql, int n, const char *const *vals, PGresult **ret,
             StoreError *err)
{
	if (!c)
		return store_error_set(NULL, NULL, err);
	PGresult *res = PQexecParams(c, sql, n, NULL, vals, NULL, NULL, 0);
	ExecStatusType st = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;
	if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
		int r = store_error_set(c, res, err);
		PQclear(res);
		return r;
	}
	*ret = res;
	return 0;
}

static int field_i64(const PGresult *res, int row, int col, int64_t *ret)
{
	if (PQgetisnull(res, row, col)) {
		*ret = 0;
		return 0;
	}
	return parse_int64(PQgetvalue(res, row, col), ret);
}

/* spec.restartAt is a date-time the schema checked; the regular expression
 * keeps a value the cast would refuse from failing the whole read. */
static const char view_sql[] =
    "SELECT st.incarnation,"
    " floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint,"
    " CASE WHEN s.spec->>'restartAt' ~ "
    "'^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt "
    "][0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]+)?([Zz]|[+-][0-9]{2}:[0-9]{2})$'"
    " THEN floor(extract(epoch FROM (s.spec->>'restartAt')::timestamptz) * 1000)::bigint END,"
    " (SELECT max((o.payload->>'restartAtMs')::bigint) FROM zlh.operations o"
    "   WHERE o.uid = s.uid AND o.step = 'done' AND jsonb_typeof(o.payload->'restartAtMs') = "
    "'number'),"
    " (SELECT count(*) FROM zlh.operations o"
    "   WHERE o.uid = s.uid AND o.step NOT IN ('done', 'failed'))"
    " FROM zlh.servers s JOIN zlh.server_status st ON st.uid = s.uid"
    " WHERE s.uid = $1::uuid";

int ct_store_view(PGconn *c, const char *uid, CtStoreView *ret, StoreError *err)
{
	if (!valid_uuid(uid)) {
		if (err)
			*err = (StoreError){.message = "invalid uid"};
		return -EINVAL;
	}
	const char *vals[] = {uid};
	PGresult *res = NULL;
	int r = q(c, view_sql, 1, vals, &res, err);
	if (r < 0)
		return r;
	if (PQntuples(res) != 1) {
		PQclear(res);
		if (err)
			*err = (StoreError){.message = "no such server"};
		return -ENOENT;
	}
	CtStoreView v = {0};
	if (field_i64(res, 0, 0, &v.incarnation) < 0 || field_i64(res, 0, 1, &v.db_now_ms) < 0 ||
	    field_i64(res, 0, 2, &v.restart_at_ms) < 0 ||
	    field_i64(res, 0, 3, &v.last_restart_at_ms) < 0 ||
	    field_i64(res, 0, 4, &v.open_ops) < 0) {
		PQclear(res);
		if (err)
			*err = (StoreError){.message = "malformed server view"};
		return -EIO;
	}
	PQclear(res);
	*ret = v;
	return 0;
}

int ct_store_known(PGconn *c, char ***ret_uids, int64_t **ret_vmids, StoreError *err)
{
	PGresult *res = NULL;
	int r = q(c,
	          "SELECT s.uid::text, coalesce(a.vmid, 0) FROM zlh.servers s"
	          " LEFT JOIN zlh.allocations a ON a.uid = s.uid ORDER BY s.uid",
	          0, NULL, &res, err);
	if (r < 0)
		return r;
	int n = PQntuples(res);
	_cleanup_strv_free_ char **uids = calloc((size_t)n + 1, sizeof *uids);
	_cleanup_free_ int64_t *vmids = calloc((size_t)n + 1, sizeof *vmids);
	if (!uids || !vmids) {
		PQclear(res);
		return -ENOMEM;
	}
	for (int i = 0; i < n; i++) {
		uids[i] = strdup(PQgetvalue(res, i, 0));
		if (!uids[i] || field_i64(res, i, 1, &vmids[i]) < 0) {
			PQclear(res);
			return uids[i] ? -EIO : -ENOMEM;
		}
	}
	PQclear(res);
	*ret_uids = TAKE_PTR(uids);
	*ret_vmids = TAKE_PTR(vmids);
	return n;
}
