/* journal.c - the intent journal; see journal.h. The steps and their rules
 * are SQL functions of db/migrations/003_container.sql (zlh.journal_intent,
 * zlh.journal_step), one round trip each, fenced inside. */
#include "db/journal.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

DEFINE_TRIVIAL_CLEANUP_FUNC(PGresult *, PQclear)
#define _cleanup_res_ _cleanup_(PQclearp)

static const char *const step_names[_JOURNAL_STEP_MAX] = {
    [JOURNAL_STEP_INTENT] = "intent", [JOURNAL_STEP_CALL] = "call",
    [JOURNAL_STEP_HANDLE] = "handle", [JOURNAL_STEP_DONE] = "done",
    [JOURNAL_STEP_FAILED] = "failed",
};

const char *journal_step_to_string(JournalStep s)
{
	if (s < 0 || s >= _JOURNAL_STEP_MAX)
		return NULL;
	return step_names[s];
}

JournalStep journal_step_from_string(const char *s)
{
	if (!s)
		return _JOURNAL_STEP_INVALID;
	for (int i = 0; i < _JOURNAL_STEP_MAX; i++)
		if (strcmp(s, step_names[i]) == 0)
			return (JournalStep)i;
	return _JOURNAL_STEP_INVALID;
}

bool journal_step_is_open(JournalStep s)
{
	return s == JOURNAL_STEP_INTENT || s == JOURNAL_STEP_CALL || s == JOURNAL_STEP_HANDLE;
}

/* --- errors and queries ------------------------------------------------------- */

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
	}
	return r;
}

/* One statement with text parameters (NULL = SQL NULL); *ret (new). */
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

static bool valid_action(const char *s)
{
	if (!s || !*s || strlen(s) > JOURNAL_ACTION_MAX)
		return false;
	for (const char *p = s; *p; p++) {
		bool ok =
		    (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || (*p == '-' && p != s);
		if (!ok)
			return false;
	}
	return true;
}

static bool valid_part(const char *s)
{
	size_t n = s ? strlen(s) : 0;
	if (n < 1 || n > 64)
		return false;
	for (const char *p = s; *p; p++) {
		bool ok = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		          (*p >= '0' && *p <= '9') || *p == '.' || *p == '_' || *p == '-';
		if (!ok)
			return false;
	}
	return true;
}

/* JSON text of v (borrowed) for a jsonb parameter; *ret NULL for NULL. */
static int json_param(const json_t *v, char **ret, StoreError *err)
{
	if (!v) {
		*ret = NULL;
		return 0;
	}
	char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
	if (!s) {
		err_msg(err, "out of memory encoding JSON");
		return -ENOMEM;
	}
	if (strlen(s) > JOURNAL_PAYLOAD_MAX) {
		free(s);
		err_msg(err, "JSON larger than 64 KiB");
		return -EINVAL;
	}
	*ret = s;
	return 0;
}

/* --- ops ------------------------------------------------------------------------- */

void journal_op_clear(JournalOp *op)
{
	if (!op)
		return;
	free(op->action);
	free(op->idem_key);
	free(op->base_key);
	free(op->handle);
	json_decref(op->payload);
	json_decref(op->result);
	free(op->error);
	*op = (JournalOp){0};
}

void journal_ops_free(JournalOp *ops, size_t n)
{
	if (!ops)
		return;
	for (size_t i = 0; i < n; i++)
		journal_op_clear(&ops[i]);
	free(ops);
}

/* A string member: NULL/null -> NULL; else a new copy. */
static int member_str(const json_t *j, const char *k, bool required, char **ret)
{
	const json_t *v = json_object_get(j, k);
	if (!v || json_is_null(v)) {
		if (required)
			return -EIO;
		*ret = NULL;
		return 0;
	}
	if (!json_is_string(v))
		return -EIO;
	char *s = strdup(json_string_value(v));
	if (!s)
		return -ENOMEM;
	*ret = s;
	return 0;
}

/* An integer member; null -> 0 unless required. */
static int member_int(const json_t *j, const char *k, bool required, int64_t *ret)
{
	const json_t *v = json_object_get(j, k);
	if (!v || json_is_null(v)) {
		if (required)
			return -EIO;
		*ret = 0;
		return 0;
	}
	if (!json_is_integer(v))
		return -EIO;
	*ret = (int64_t)json_integer_value(v);
	return 0;
}

static json_t *member_json(const json_t *j, const char *k)
{
	json_t *v = json_object_get(j, k);
	if (!v || json_is_null(v))
		return NULL;
	return json_incref(v);
}

int journal_op_from_json(const json_t *j, JournalOp *ret)
{
	if (!json_is_object(j))
		return -EIO;
	JournalOp op = {0};
	int r;
	const char *uid = json_string_value(json_object_get(j, "uid"));
	const char *step = json_string_value(json_object_get(j, "step"));
	if (!uid || strlen(uid) >= sizeof op.uid || !step)
		return -EIO;
	snprintf(op.uid, sizeof op.uid, "%s", uid);
	op.step = journal_step_from_string(step);
	if (op.step == _JOURNAL_STEP_INVALID)
		return -EIO;
	if ((r = member_int(j, "id", true, &op.id)) < 0 ||
	    (r = member_int(j, "attempt", true, &op.attempt)) < 0 ||
	    (r = member_int(j, "incarnation", true, &op.incarnation)) < 0 ||
	    (r = member_int(j, "epoch", true, &op.epoch)) < 0 ||
	    (r = member_int(j, "createdMs", true, &op.created_ms)) < 0 ||
	    (r = member_int(j, "updatedMs", true, &op.updated_ms)) < 0 ||
	    (r = member_int(j, "completedMs", false, &op.completed_ms)) < 0 ||
	    (r = member_str(j, "action", true, &op.action)) < 0 ||
	    (r = member_str(j, "idemKey", true, &op.idem_key)) < 0 ||
	    (r = member_str(j, "baseKey", true, &op.base_key)) < 0 ||
	    (r = member_str(j, "handle", false, &op.handle)) < 0 ||
	    (r = member_str(j, "error", false, &op.error)) < 0) {
		journal_op_clear(&op);
		return r;
	}
	op.payload = member_json(j, "payload");
	op.result = member_json(j, "result");
	*ret = op;
	return 0;
}

/* Parses the JSON text of one op; existed_or_NULL as the intent said. */
static int op_parse_text(const char *text, JournalOp *ret, StoreError *err)
{
	json_error_t jerr;
	_cleanup_json_ json_t *j = json_loads(text, 0, &jerr);
	if (!j) {
		err_msg(err, "the journal returned malformed JSON");
		return -EIO;
	}
	const json_t *op = json_object_get(j, "op");
	int r = journal_op_from_json(op ? op : j, ret);
	if (r < 0) {
		err_msg(err, "the journal returned an unexpected operation");
		return r;
	}
	if (op)
		ret->existed = json_is_true(json_object_get(j, "existed"));
	return 0;
}

/* Rows of one text column, each zlh.op_json, into a new array. */
static int ops_from_result(const PGresult *res, JournalOp **ret_ops, size_t *ret_n, StoreError *err)
{
	int n = PQntuples(res);
	if (n == 0) {
		*ret_ops = NULL;
		*ret_n = 0;
		return 0;
	}
	JournalOp *ops = calloc((size_t)n, sizeof *ops);
	if (!ops)
		return -ENOMEM;
	for (int i = 0; i < n; i++) {
		int r = op_parse_text(PQgetvalue(res, i, 0), &ops[i], err);
		if (r < 0) {
			journal_ops_free(ops, (size_t)i);
			return r;
		}
	}
	*ret_ops = ops;
	*ret_n = (size_t)n;
	return n;
}

/* --- keys --------------------------------------------------------------------------- */

int journal_key(const char *uid, const char *action, const char *gen_or_request,
                int64_t incarnation, char *buf, size_t n)
{
	if (!valid_uuid(uid) || !valid_action(action) || !valid_part(gen_or_request) ||
	    incarnation < 0 || !buf)
		return -EINVAL;
	char tmp[JOURNAL_KEY_MAX + 1];
	int len = snprintf(tmp, sizeof tmp, "%s:%s:%s:%" PRId64, uid, action, gen_or_request,
	                   incarnation);
	if (len < 0 || (size_t)len >= sizeof tmp)
		return -EINVAL;
	if ((size_t)len >= n)
		return -ENOBUFS;
	memcpy(buf, tmp, (size_t)len + 1);
	return len;
}

int journal_key_gen(const char *uid, const char *action, int64_t generation, int64_t incarnation,
                    char *buf, size_t n)
{
	if (generation < 0)
		return -EINVAL;
	char g[24];
	snprintf(g, sizeof g, "%" PRId64, generation);
	return journal_key(uid, action, g, incarnation, buf, n);
}

/* --- writes ------------------------------------------------------------------------ */

static int intent(PGconn *c, int64_t epoch, const char *uid, const char *action,
                  const char *idem_key, const json_t *payload, int64_t incarnation,
                  bool new_attempt, JournalOp *ret, StoreError *err)
{
	if (!valid_uuid(uid) || !valid_action(action) || !idem_key || !*idem_key ||
	    strlen(idem_key) > JOURNAL_KEY_MAX || strchr(idem_key, '#') || incarnation < 0 ||
	    !ret) {
		err_msg(err, "journal intent: bad uid, action, key or incarnation");
		return -EINVAL;
	}
	_cleanup_free_ char *p = NULL;
	int r = json_param(payload, &p, err);
	if (r < 0)
		return r;
	char e[24], inc[24];
	snprintf(e, sizeof e, "%" PRId64, epoch);
	snprintf(inc, sizeof inc, "%" PRId64, incarnation);
	const char *vals[] = {e, uid, action, idem_key, p, inc, new_attempt ? "true" : "false"};
	_cleanup_res_ PGresult *res = NULL;
	r = q(c,
	      "SELECT zlh.journal_intent($1::bigint, $2::uuid, $3, $4, $5::jsonb, $6::bigint, "
	      "$7::boolean)",
	      7, vals, &res, err);
	if (r < 0)
		return r;
	if (PQntuples(res) != 1 || PQgetisnull(res, 0, 0)) {
		err_msg(err, "zlh.journal_intent returned no row");
		return -EIO;
	}
	JournalOp op;
	r = op_parse_text(PQgetvalue(res, 0, 0), &op, err);
	if (r < 0)
		return r;
	*ret = op;
	return op.existed ? 0 : 1;
}

int journal_intent(PGconn *c, int64_t epoch, const char *uid, const char *action,
                   const char *idem_key, const json_t *payload_or_NULL, int64_t incarnation,
                   JournalOp *ret, StoreError *err)
{
	return intent(c, epoch, uid, action, idem_key, payload_or_NULL, incarnation, false, ret,
	              err);
}

int journal_intent_retry(PGconn *c, int64_t epoch, const char *uid, const char *action,
                         const char *idem_key, const json_t *payload_or_NULL, int64_t incarnation,
                         JournalOp *ret, StoreError *err)
{
	return intent(c, epoch, uid, action, idem_key, payload_or_NULL, incarnation, true, ret,
	              err);
}

/* zlh.journal_step; maps its answer to 1 / 0 / -errno. */
static int step(PGconn *c, int64_t epoch, int64_t op_id, const char *to, const char *handle,
                const json_t *result, const char *error, StoreError *err)
{
	if (op_id <= 0) {
		err_msg(err, "journal: bad operation id");
		return -EINVAL;
	}
	_cleanup_free_ char *res_text = NULL;
	int r = json_param(result, &res_text, err);
	if (r < 0)
		return r;
	char e[24], id[24];
	snprintf(e, sizeof e, "%" PRId64, epoch);
	snprintf(id, sizeof id, "%" PRId64, op_id);
	const char *vals[] = {e, id, to, handle, res_text, error};
	_cleanup_res_ PGresult *res = NULL;
	r = q(c, "SELECT zlh.journal_step($1::bigint, $2::bigint, $3, $4, $5::jsonb, $6)", 6, vals,
	      &res, err);
	if (r < 0)
		return r;
	const char *ans = PQntuples(res) == 1 ? PQgetvalue(res, 0, 0) : "";
	if (strcmp(ans, "ok") == 0)
		return 1;
	if (strcmp(ans, "same") == 0)
		return 0;
	char msg[160];
	if (strcmp(ans, "missing") == 0) {
		snprintf(msg, sizeof msg, "no journal operation %" PRId64, op_id);
		err_msg(err, msg);
		return -ENOENT;
	}
	if (strcmp(ans, "completed") == 0) {
		snprintf(msg, sizeof msg, "journal operation %" PRId64 " is already completed",
		         op_id);
		err_msg(err, msg);
		return -EALREADY;
	}
	if (strcmp(ans, "conflict") == 0) {
		snprintf(msg, sizeof msg, "journal operation %" PRId64 " holds another handle",
		         op_id);
		err_msg(err, msg);
		return -EEXIST;
	}
	err_msg(err, "zlh.journal_step returned an unexpected answer");
	return -EIO;
}

int journal_mark_call(PGconn *c, int64_t epoch, int64_t op_id, StoreError *err)
{
	return step(c, epoch, op_id, "call", NULL, NULL, NULL, err);
}

int journal_set_handle(PGconn *c, int64_t epoch, int64_t op_id, const char *handle, StoreError *err)
{
	if (!handle || !*handle || strlen(handle) > 1024) {
		err_msg(err, "journal: empty or oversized handle");
		return -EINVAL;
	}
	return step(c, epoch, op_id, "handle", handle, NULL, NULL, err);
}

int journal_done(PGconn *c, int64_t epoch, int64_t op_id, const json_t *result_or_NULL,
                 StoreError *err)
{
	return step(c, epoch, op_id, "done", NULL, result_or_NULL, NULL, err);
}

int journal_fail(PGconn *c, int64_t epoch, int64_t op_id, const char *error, StoreError *err)
{
	if (!error) {
		err_msg(err, "journal: a failure needs an error text");
		return -EINVAL;
	}
	/* Bounded: an API may answer with a whole page. */
	char buf[2048];
	snprintf(buf, sizeof buf, "%s", error);
	return step(c, epoch, op_id, "failed", NULL, NULL, buf, err);
}

/* --- reads ------------------------------------------------------------------------------ */

static int get_one(PGconn *c, const char *sql, const char *param, JournalOp *ret, StoreError *err)
{
	const char *vals[] = {param};
	_cleanup_res_ PGresult *res = NULL;
	int r = q(c, sql, 1, vals, &res, err);
	if (r < 0)
		return r;
	if (PQntuples(res) == 0) {
		err_msg(err, "no such journal operation");
		return -ENOENT;
	}
	JournalOp op;
	r = op_parse_text(PQgetvalue(res, 0, 0), &op, err);
	if (r < 0)
		return r;
	*ret = op;
	return 0;
}

int journal_get(PGconn *c, const char *idem_key, JournalOp *ret, StoreError *err)
{
	if (!idem_key || !*idem_key || strlen(idem_key) > JOURNAL_KEY_MAX + 24 || !ret)
		return -EINVAL;
	if (strchr(idem_key, '#'))
		return get_one(c,
		               "SELECT zlh.op_json(o) FROM zlh.operations o WHERE o.idem_key = $1",
		               idem_key, ret, err);
	return get_one(c,
	               "SELECT zlh.op_json(o) FROM zlh.operations o WHERE o.base_key = $1 "
	               "ORDER BY o.attempt DESC LIMIT 1",
	               idem_key, ret, err);
}

int journal_get_id(PGconn *c, int64_t op_id, JournalOp *ret, StoreError *err)
{
	if (op_id <= 0 || !ret)
		return -EINVAL;
	char id[24];
	snprintf(id, sizeof id, "%" PRId64, op_id);
	return get_one(c, "SELECT zlh.op_json(o) FROM zlh.operations o WHERE o.id = $1::bigint", id,
	               ret, err);
}

static int list(PGconn *c, const char *sql, int n, const char *const *vals, JournalOp **ret_ops,
                size_t *ret_n, StoreError *err)
{
	_cleanup_res_ PGresult *res = NULL;
	int r = q(c, sql, n, vals, &res, err);
	if (r < 0)
		return r;
	return ops_from_result(res, ret_ops, ret_n, err);
}

int journal_latest(PGconn *c, const char *uid, int64_t incarnation, JournalOp **ret_ops,
                   size_t *ret_n, StoreError *err)
{
	if (!valid_uuid(uid) || !ret_ops || !ret_n) {
		err_msg(err, "journal: bad uid");
		return -EINVAL;
	}
	char inc[24];
	snprintf(inc, sizeof inc, "%" PRId64, incarnation < 0 ? -1 : incarnation);
	const char *vals[] = {uid, inc};
	return list(c,
	            "SELECT zlh.op_json(o) FROM ("
	            " SELECT DISTINCT ON (x.action) x.* FROM zlh.operations x"
	            " WHERE x.uid = $1::uuid AND ($2::bigint < 0 OR x.incarnation = $2::bigint)"
	            " ORDER BY x.action, x.id DESC) o ORDER BY o.action",
	            2, vals, ret_ops, ret_n, err);
}

int journal_list_open(PGconn *c, const char *uid_or_NULL, int limit, JournalOp **ret_ops,
                      size_t *ret_n, StoreError *err)
{
	if ((uid_or_NULL && !valid_uuid(uid_or_NULL)) || !ret_ops || !ret_n) {
		err_msg(err, "journal: bad uid");
		return -EINVAL;
	}
	char lim[24];
	snprintf(lim, sizeof lim, "%d", limit <= 0 || limit > 1000 ? 1000 : limit);
	const char *vals[] = {uid_or_NULL, lim};
	return list(c,
	            "SELECT zlh.op_json(o) FROM zlh.operations o"
	            " WHERE o.step NOT IN ('done', 'failed')"
	            " AND ($1::uuid IS NULL OR o.uid = $1::uuid)"
	            " ORDER BY o.id LIMIT $2::integer",
	            2, vals, ret_ops, ret_n, err);
}

int journal_open_count(PGconn *c, const char *uid_or_NULL, int64_t *ret, StoreError *err)
{
	if ((uid_or_NULL && !valid_uuid(uid_or_NULL)) || !ret) {
		err_msg(err, "journal: bad uid");
		return -EINVAL;
	}
	const char *vals[] = {uid_or_NULL};
	_cleanup_res_ PGresult *res = NULL;
	int r = q(c,
	          "SELECT count(*) FROM zlh.operations o WHERE o.step NOT IN ('done', 'failed')"
	          " AND ($1::uuid IS NULL OR o.uid = $1::uuid)",
	          1, vals, &res, err);
	if (r < 0)
		return r;
	int64_t n;
	if (PQntuples(res) != 1 || parse_int64(PQgetvalue(res, 0, 0), &n) < 0) {
		err_msg(err, "journal: unexpected count");
		return -EIO;
	}
	*ret = n;
	return 0;
}

int journal_list(PGconn *c, const char *uid, int limit, JournalOp **ret_ops, size_t *ret_n,
                 StoreError *err)
{
	if (!valid_uuid(uid) || !ret_ops || !ret_n) {
		err_msg(err, "journal: bad uid");
		return -EINVAL;
	}
	char lim[24];
	snprintf(lim, sizeof lim, "%d", limit <= 0 ? 100 : limit > 1000 ? 1000 : limit);
	const char *vals[] = {uid, lim};
	return list(c,
	            "SELECT zlh.op_json(o) FROM zlh.operations o WHERE o.uid = $1::uuid"
	            " ORDER BY o.id DESC LIMIT $2::integer",
	            2, vals, ret_ops, ret_n, err);
}

int journal_payload_max(PGconn *c, const char *uid, const char *key, int64_t *ret, StoreError *err)
{
	if (!valid_uuid(uid) || !key || !*key || strlen(key) > 64 || !ret) {
		err_msg(err, "journal: bad uid or key");
		return -EINVAL;
	}
	const char *vals[] = {uid, key};
	_cleanup_res_ PGresult *res = NULL;
	int r = q(c,
	          "SELECT coalesce(max((o.payload ->> $2)::bigint), 0) FROM zlh.operations o"
	          " WHERE o.uid = $1::uuid AND o.step = 'done'"
	          " AND jsonb_typeof(o.payload -> $2) = 'number'"
	          " AND (o.payload ->> $2) ~ '^-?[0-9]{1,18}$'",
	          2, vals, &res, err);
	if (r < 0)
		return r;
	int64_t v;
	if (PQntuples(res) != 1 || parse_int64(PQgetvalue(res, 0, 0), &v) < 0) {
		err_msg(err, "journal: unexpected maximum");
		return -EIO;
	}
	*ret = v;
	return 0;
}
