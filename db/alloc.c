/* alloc.c - allocations and incarnations; see alloc.h. The transactions are
 * SQL functions of db/migrations/003_container.sql (zlh.alloc_take,
 * zlh.alloc_quarantine, ...), one round trip each, fenced inside. */
#include "db/alloc.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

DEFINE_TRIVIAL_CLEANUP_FUNC(PGresult *, PQclear)
#define _cleanup_res_ _cleanup_(PQclearp)

static void err_msg(StoreError *err, const char *msg)
{
	if (!err)
		return;
	err->sqlstate[0] = 0;
	snprintf(err->message, sizeof err->message, "%s", msg);
	err->detail[0] = 0;
}

/* store_error_set plus 003's SQLSTATEs. */
static int fail(PGconn *c, const PGresult *res, StoreError *err)
{
	int r = store_error_set(c, res, err);
	const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
	if (state && c && PQstatus(c) == CONNECTION_OK) {
		if (strcmp(state, "ZL010") == 0)
			return -EALREADY;
		if (strcmp(state, "ZL011") == 0)
			return -ENOSPC;
		if (strcmp(state, "ZL012") == 0)
			return -EEXIST;
		/* spec.hostname held by another allocation: nothing to retry */
		const char *con = PQresultErrorField(res, PG_DIAG_CONSTRAINT_NAME);
		if (strcmp(state, "23505") == 0 && con &&
		    strcmp(con, "allocations_hostname_key") == 0)
			return -EADDRINUSE;
	}
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

static bool valid_uuid(const char *s)
{
	if (!s || strlen(s) != 36)
		return false;
	for (int i = 0; i < 36; i++) {
		char ch = s[i];
		if (i == 8 || i == 13 || i == 18 || i == 23) {
			if (ch != '-')
				return false;
		} else if (!((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f'))) {
			return false;
		}
	}
	return true;
}

static int bad(StoreError *err, const char *msg)
{
	err_msg(err, msg);
	return -EINVAL;
}

/* One value of a one-row result, as text. */
static const char *one(const PGresult *res)
{
	if (PQntuples(res) != 1 || PQnfields(res) < 1 || PQgetisnull(res, 0, 0))
		return NULL;
	return PQgetvalue(res, 0, 0);
}

static int copy_member(const json_t *j, const char *k, char *buf, size_t n)
{
	const json_t *v = json_object_get(j, k);
	if (!v || json_is_null(v)) {
		buf[0] = 0;
		return 0;
	}
	if (!json_is_string(v) || strlen(json_string_value(v)) >= n)
		return -EIO;
	snprintf(buf, n, "%s", json_string_value(v));
	return 0;
}

/* zlh.alloc_json's object into *ret. */
static int alloc_from_json(const json_t *j, Allocation *ret)
{
	Allocation a = {0};
	const json_t *vmid = json_object_get(j, "vmid");
	const json_t *mem = json_object_get(j, "memoryMiB");
	if (!json_is_object(j) || !json_is_integer(vmid) || !json_is_integer(mem))
		return -EIO;
	a.vmid = json_integer_value(vmid);
	a.memory_mib = json_integer_value(mem);
	if (copy_member(j, "uid", a.uid, sizeof a.uid) < 0 ||
	    copy_member(j, "node", a.node, sizeof a.node) < 0 ||
	    copy_member(j, "ip", a.ip, sizeof a.ip) < 0 ||
	    copy_member(j, "hostname", a.hostname, sizeof a.hostname) < 0 || !a.uid[0])
		return -EIO;
	*ret = a;
	return 0;
}

static int parse_text(const char *text, json_t **ret, StoreError *err)
{
	json_error_t jerr;
	json_t *j = text ? json_loads(text, 0, &jerr) : NULL;
	if (!j) {
		err_msg(err, "allocations: the database returned malformed JSON");
		return -EIO;
	}
	*ret = j;
	return 0;
}

/* --- take ------------------------------------------------------------------------ */

int alloc_take(PGconn *c, int64_t epoch, const char *uid, const char *node, const AllocPool *pool,
               const char *hostname_or_NULL, const char *hostname_prefix, int64_t memory_mib,
               const AllocIntent *intent_or_NULL, Allocation *ret, JournalOp *ret_op_or_NULL,
               StoreError *err)
{
	if (!valid_uuid(uid) || !ret)
		return bad(err, "allocation: bad uid");
	if (!node || !*node || strlen(node) >= ALLOC_NODE_MAX)
		return bad(err, "allocation: bad node name");
	if (!pool || !pool->cidr || !pool->gateway || pool->vmid_min < 100 ||
	    pool->vmid_max > 999999999 || pool->vmid_min > pool->vmid_max)
		return bad(err, "allocation: bad pool (vmid range 100..999999999, cidr, gateway)");
	if (hostname_or_NULL &&
	    (!*hostname_or_NULL || strlen(hostname_or_NULL) >= ALLOC_HOSTNAME_MAX))
		return bad(err, "allocation: bad hostname");
	if (!hostname_or_NULL && (!hostname_prefix || strlen(hostname_prefix) > 41))
		return bad(err, "allocation: bad hostname prefix");
	if (memory_mib < 0)
		return bad(err, "allocation: negative memory");

	const AllocIntent *in = intent_or_NULL;
	_cleanup_free_ char *payload = NULL;
	if (in) {
		if (!in->action || !in->idem_key || in->incarnation <= 0)
			return bad(
			    err,
			    "allocation: the intent needs an action, a key and an incarnation");
		if (in->payload) {
			payload = json_dumps(in->payload, JSON_COMPACT | JSON_ENCODE_ANY);
			if (!payload)
				return -ENOMEM;
			if (strlen(payload) > JOURNAL_PAYLOAD_MAX)
				return bad(err, "allocation: intent payload larger than 64 KiB");
		}
	}

	char e[24], lo[24], hi[24], mem[24], inc[24];
	snprintf(e, sizeof e, "%" PRId64, epoch);
	snprintf(lo, sizeof lo, "%" PRId64, pool->vmid_min);
	snprintf(hi, sizeof hi, "%" PRId64, pool->vmid_max);
	snprintf(mem, sizeof mem, "%" PRId64, memory_mib);
	snprintf(inc, sizeof inc, "%" PRId64, in ? in->incarnation : 0);
	const char *vals[] = {e,
	                      uid,
	                      node,
	                      lo,
	                      hi,
	                      pool->cidr,
	                      pool->gateway,
	                      hostname_or_NULL,
	                      hostname_or_NULL ? NULL : hostname_prefix,
	                      mem,
	                      in ? in->action : NULL,
	                      in ? in->idem_key : NULL,
	                      payload,
	                      in ? inc : NULL};
	_cleanup_res_ PGresult *res = NULL;
	int r = q(c,
	          "SELECT zlh.alloc_take($1::bigint, $2::uuid, $3, $4::integer, $5::integer, "
	          "$6::inet, $7::inet, $8, $9, $10::bigint, $11, $12, $13::jsonb, $14::bigint)",
	          14, vals, &res, err);
	if (r < 0)
		return r;
	_cleanup_json_ json_t *j = NULL;
	r = parse_text(one(res), &j, err);
	if (r < 0)
		return r;

	Allocation a;
	if (alloc_from_json(json_object_get(j, "allocation"), &a) < 0) {
		err_msg(err, "zlh.alloc_take returned an unexpected allocation");
		return -EIO;
	}
	JournalOp op = {0};
	if (in && ret_op_or_NULL) {
		r = journal_op_from_json(json_object_get(j, "op"), &op);
		if (r < 0) {
			err_msg(err, "zlh.alloc_take returned an unexpected operation");
			return r;
		}
		op.existed = json_is_true(json_object_get(j, "existed"));
		*ret_op_or_NULL = op;
	}
	*ret = a;
	return json_is_true(json_object_get(j, "created")) ? 1 : 0;
}

/* --- reads ------------------------------------------------------------------------- */

int alloc_get(PGconn *c, const char *uid, Allocation *ret, StoreError *err)
{
	if (!valid_uuid(uid) || !ret)
		return bad(err, "allocation: bad uid");
	const char *vals[] = {uid};
	_cleanup_res_ PGresult *res = NULL;
	int r = q(c, "SELECT zlh.alloc_json(a) FROM zlh.allocations a WHERE a.uid = $1::uuid", 1,
	          vals, &res, err);
	if (r < 0)
		return r;
	if (PQntuples(res) == 0) {
		err_msg(err, "the server has no allocation");
		return -ENOENT;
	}
	_cleanup_json_ json_t *j = NULL;
	r = parse_text(one(res), &j, err);
	if (r < 0)
		return r;
	Allocation a;
	if (alloc_from_json(j, &a) < 0) {
		err_msg(err, "allocations: unexpected row");
		return -EIO;
	}
	*ret = a;
	return 0;
}

int alloc_incarnation(PGconn *c, const char *uid, int64_t *ret, StoreError *err)
{
	if (!valid_uuid(uid) || !ret)
		return bad(err, "allocation: bad uid");
	const char *vals[] = {uid};
	_cleanup_res_ PGresult *res = NULL;
	int r = q(c, "SELECT st.incarnation FROM zlh.server_status st WHERE st.uid = $1::uuid", 1,
	          vals, &res, err);
	if (r < 0)
		return r;
	if (PQntuples(res) == 0) {
		err_msg(err, "no such server");
		return -ENOENT;
	}
	int64_t v;
	if (parse_int64(PQgetvalue(res, 0, 0), &v) < 0)
		return -EIO;
	*ret = v;
	return 0;
}

int alloc_list_all(PGconn *c, Allocation **ret, size_t *ret_n, StoreError *err)
{
	if (!ret || !ret_n)
		return -EINVAL;
	_cleanup_res_ PGresult *res = NULL;
	int r = q(c, "SELECT zlh.alloc_json(a) FROM zlh.allocations a ORDER BY a.vmid", 0, NULL,
	          &res, err);
	if (r < 0)
		return r;
	int n = PQntuples(res);
	_cleanup_free_ Allocation *v = n > 0 ? calloc((size_t)n, sizeof *v) : NULL;
	if (n > 0 && !v)
		return -ENOMEM;
	for (int i = 0; i < n; i++) {
		_cleanup_json_ json_t *j = NULL;
		r = parse_text(PQgetvalue(res, i, 0), &j, err);
		if (r < 0)
			return r;
		if (alloc_from_json(j, &v[i]) < 0) {
			err_msg(err, "allocations: unexpected row");
			return -EIO;
		}
	}
	*ret = TAKE_PTR(v);
	*ret_n = (size_t)n;
	return n;
}

int alloc_reserved_by_node(PGconn *c, AllocReserved **ret, size_t *ret_n, StoreError *err)
{
	if (!ret || !ret_n)
		return -EINVAL;
	_cleanup_res_ PGresult *res = NULL;
	int r = q(c, "SELECT node, reserved_mib, servers FROM zlh.alloc_reserved()", 0, NULL, &res,
	          err);
	if (r < 0)
		return r;
	int n = PQntuples(res);
	_cleanup_free_ AllocReserved *v = n > 0 ? calloc((size_t)n, sizeof *v) : NULL;
	if (n > 0 && !v)
		return -ENOMEM;
	for (int i = 0; i < n; i++) {
		const char *node = PQgetvalue(res, i, 0);
		if (strlen(node) >= sizeof v[i].node ||
		    parse_int64(PQgetvalue(res, i, 1), &v[i].reserved_mib) < 0 ||
		    parse_int64(PQgetvalue(res, i, 2), &v[i].servers) < 0) {
			err_msg(err, "allocations: unexpected reserved row");
			return -EIO;
		}
		snprintf(v[i].node, sizeof v[i].node, "%s", node);
	}
	*ret = TAKE_PTR(v);
	*ret_n = (size_t)n;
	return n;
}

int alloc_quarantined_list(PGconn *c, AllocQuarantined **ret, size_t *ret_n, StoreError *err)
{
	if (!ret || !ret_n)
		return -EINVAL;
	_cleanup_res_ PGresult *res = NULL;
	int r = q(c,
	          "SELECT q.vmid, coalesce(q.node, ''), coalesce(q.reason, ''),"
	          " zlh.wall_ms(q.created_at), zlh.wall_ms(q.seen_at)"
	          " FROM zlh.quarantined_vmids q ORDER BY q.vmid",
	          0, NULL, &res, err);
	if (r < 0)
		return r;
	int n = PQntuples(res);
	_cleanup_free_ AllocQuarantined *v = n > 0 ? calloc((size_t)n, sizeof *v) : NULL;
	if (n > 0 && !v)
		return -ENOMEM;
	for (int i = 0; i < n; i++) {
		const char *node = PQgetvalue(res, i, 1);
		if (strlen(node) >= sizeof v[i].node ||
		    parse_int64(PQgetvalue(res, i, 0), &v[i].vmid) < 0 ||
		    parse_int64(PQgetvalue(res, i, 3), &v[i].created_ms) < 0 ||
		    parse_int64(PQgetvalue(res, i, 4), &v[i].seen_ms) < 0) {
			err_msg(err, "allocations: unexpected quarantine row");
			return -EIO;
		}
		snprintf(v[i].node, sizeof v[i].node, "%s", node);
		snprintf(v[i].reason, sizeof v[i].reason, "%.*s", (int)sizeof v[i].reason - 1,
		         PQgetvalue(res, i, 2));
	}
	*ret = TAKE_PTR(v);
	*ret_n = (size_t)n;
	return n;
}

/* --- writes ------------------------------------------------------------------------ */

int alloc_bump_incarnation(PGconn *c, int64_t epoch, const char *uid, int64_t expected,
                           int64_t *ret_new, StoreError *err)
{
	if (!valid_uuid(uid) || expected <= 0 || !ret_new)
		return bad(err, "incarnation: bad uid or expected value");
	char e[24], x[24];
	snprintf(e, sizeof e, "%" PRId64, epoch);
	snprintf(x, sizeof x, "%" PRId64, expected);
	const char *vals[] = {e, uid, x};
	_cleanup_res_ PGresult *res = NULL;
	int r = q(c, "SELECT zlh.alloc_bump_incarnation($1::bigint, $2::uuid, $3::bigint)", 3, vals,
	          &res, err);
	if (r < 0)
		return r;
	int64_t v;
	const char *t = one(res);
	if (!t || parse_int64(t, &v) < 0) {
		err_msg(err, "zlh.alloc_bump_incarnation returned no value");
		return -EIO;
	}
	*ret_new = v;
	return 0;
}

int alloc_quarantine(PGconn *c, int64_t epoch, const char *uid_or_NULL, int64_t vmid,
                     const char *node_or_NULL, const char *reason_or_NULL,
                     int64_t expected_incarnation, int64_t *ret_incarnation, StoreError *err)
{
	if ((uid_or_NULL && !valid_uuid(uid_or_NULL)) || vmid <= 0 || vmid > 999999999)
		return bad(err, "quarantine: bad uid or vmid");
	char e[24], v[24], x[24], reason[512];
	snprintf(e, sizeof e, "%" PRId64, epoch);
	snprintf(v, sizeof v, "%" PRId64, vmid);
	snprintf(x, sizeof x, "%" PRId64, expected_incarnation);
	if (reason_or_NULL)
		snprintf(reason, sizeof reason, "%s", reason_or_NULL);
	const char *vals[] = {e,
	                      uid_or_NULL,
	                      v,
	                      node_or_NULL,
	                      reason_or_NULL ? reason : NULL,
	                      expected_incarnation > 0 ? x : NULL};
	_cleanup_res_ PGresult *res = NULL;
	int r = q(c,
	          "SELECT zlh.alloc_quarantine($1::bigint, $2::uuid, $3::integer, $4, $5, "
	          "$6::bigint)",
	          6, vals, &res, err);
	if (r < 0)
		return r;
	_cleanup_json_ json_t *j = NULL;
	r = parse_text(one(res), &j, err);
	if (r < 0)
		return r;
	const json_t *inc = json_object_get(j, "incarnation");
	if (ret_incarnation)
		*ret_incarnation = json_is_integer(inc) ? json_integer_value(inc) : 0;
	return json_is_true(json_object_get(j, "dropped")) ? 1 : 0;
}

int alloc_follow_node(PGconn *c, int64_t epoch, const char *uid, const char *node, StoreError *err)
{
	if (!valid_uuid(uid) || !node || !*node || strlen(node) >= ALLOC_NODE_MAX)
		return bad(err, "follow: bad uid or node");
	char e[24];
	snprintf(e, sizeof e, "%" PRId64, epoch);
	const char *vals[] = {e, uid, node};
	_cleanup_res_ PGresult *res = NULL;
	int r = q(c, "SELECT zlh.alloc_follow_node($1::bigint, $2::uuid, $3)", 3, vals, &res, err);
	if (r < 0)
		return r;
	const char *t = one(res);
	if (!t || t[0] != 't') {
		err_msg(err, "the server has no allocation");
		return -ENOENT;
	}
	return 0;
}

int alloc_release(PGconn *c, int64_t epoch, const char *uid, int64_t vmid, StoreError *err)
{
	if (!valid_uuid(uid) || vmid < 0 || vmid > 999999999)
		return bad(err, "release: bad uid or vmid");
	char e[24], v[24];
	snprintf(e, sizeof e, "%" PRId64, epoch);
	snprintf(v, sizeof v, "%" PRId64, vmid);
	const char *vals[] = {e, uid, vmid > 0 ? v : NULL};
	_cleanup_res_ PGresult *res = NULL;
	int r =
	    q(c, "SELECT zlh.alloc_release($1::bigint, $2::uuid, $3::integer)", 3, vals, &res, err);
	if (r < 0)
		return r;
	const char *t = one(res);
	return t && t[0] == 't' ? 1 : 0;
}

int alloc_set_hostname(PGconn *c, int64_t epoch, const char *uid, const char *hostname_or_NULL,
                       const char *hostname_prefix, Allocation *ret_or_NULL, StoreError *err)
{
	if (!valid_uuid(uid))
		return bad(err, "hostname: bad uid");
	if (hostname_or_NULL &&
	    (!*hostname_or_NULL || strlen(hostname_or_NULL) >= ALLOC_HOSTNAME_MAX))
		return bad(err, "hostname: bad hostname");
	if (!hostname_or_NULL && (!hostname_prefix || strlen(hostname_prefix) > 41))
		return bad(err, "hostname: bad hostname prefix");
	char e[24];
	snprintf(e, sizeof e, "%" PRId64, epoch);
	const char *vals[] = {e, uid, hostname_or_NULL, hostname_or_NULL ? NULL : hostname_prefix};
	_cleanup_res_ PGresult *res = NULL;
	int r =
	    q(c, "SELECT zlh.alloc_set_hostname($1::bigint, $2::uuid, $3, $4)", 4, vals, &res, err);
	if (r < 0)
		return r;
	_cleanup_json_ json_t *j = NULL;
	r = parse_text(one(res), &j, err);
	if (r < 0)
		return r;
	const json_t *aj = json_object_get(j, "allocation");
	if (!aj) {
		err_msg(err, "the server has no allocation");
		return -ENOENT;
	}
	Allocation a;
	if (alloc_from_json(aj, &a) < 0) {
		err_msg(err, "zlh.alloc_set_hostname returned an unexpected allocation");
		return -EIO;
	}
	if (ret_or_NULL)
		*ret_or_NULL = a;
	return json_is_true(json_object_get(j, "changed")) ? 1 : 0;
}
