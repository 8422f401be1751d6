/* runtime.c - the runtime's SQL; see runtime.h. */
#include "db/runtime.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

DEFINE_TRIVIAL_CLEANUP_FUNC(PGresult *, PQclear)
#define _cleanup_res_ _cleanup_(PQclearp)

static const char *const phase_names[_PHASE_MAX] = {
    [PHASE_PENDING] = "Pending", [PHASE_PROVISIONING] = "Provisioning",
    [PHASE_READY] = "Ready",     [PHASE_DEGRADED] = "Degraded",
    [PHASE_STOPPED] = "Stopped", [PHASE_DELETING] = "Deleting",
    [PHASE_FAILED] = "Failed",
};

const char *runtime_phase_to_string(ServerPhase p)
{
	if (p < 0 || p >= _PHASE_MAX)
		return NULL;
	return phase_names[p];
}

ServerPhase runtime_phase_from_string(const char *s)
{
	if (!s)
		return _PHASE_INVALID;
	for (int i = 0; i < _PHASE_MAX; i++)
		if (strcmp(s, phase_names[i]) == 0)
			return (ServerPhase)i;
	return _PHASE_INVALID;
}

static void err_msg(StoreError *err, const char *msg)
{
	if (!err)
		return;
	err->sqlstate[0] = 0;
	snprintf(err->message, sizeof err->message, "%s", msg);
	err->detail[0] = 0;
}

/* store_error_set plus the runtime's own SQLSTATEs. */
static int fail(PGconn *c, const PGresult *res, StoreError *err)
{
	int r = store_error_set(c, res, err);
	const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
	if (state && PQstatus(c) == CONNECTION_OK) {
		if (strcmp(state, "ZL006") == 0)
			return -ESTALE;
		if (strcmp(state, "ZL007") == 0)
			return -EBUSY;
	}
	return r;
}

/* One statement with text parameters; *ret (new) on success. */
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

static bool get_bool(const PGresult *res, int row, int col)
{
	return !PQgetisnull(res, row, col) && PQgetvalue(res, row, col)[0] == 't';
}

static int get_int64(const PGresult *res, int row, int col, int64_t *ret)
{
	if (PQgetisnull(res, row, col))
		return -ENODATA;
	return parse_int64(PQgetvalue(res, row, col), ret);
}

static int get_str(const PGresult *res, int row, int col, char **ret)
{
	if (PQgetisnull(res, row, col)) {
		*ret = NULL;
		return 0;
	}
	char *s = strdup(PQgetvalue(res, row, col));
	if (!s)
		return -ENOMEM;
	*ret = s;
	return 0;
}

static int get_json(const PGresult *res, int row, int col, json_t **ret)
{
	if (PQgetisnull(res, row, col)) {
		*ret = NULL;
		return 0;
	}
	json_error_t jerr;
	json_t *j = json_loads(PQgetvalue(res, row, col), JSON_DECODE_ANY, &jerr);
	if (!j)
		return -EIO;
	*ret = j;
	return 0;
}

/* --- lease ------------------------------------------------------------------ */

int runtime_lease_claim(PGconn *c, const char *lease, const char *holder, int64_t epoch,
                        int64_t duration_ms, LeaseClaim *ret, StoreError *err)
{
	char e[24], d[24];
	snprintf(e, sizeof e, "%" PRId64, epoch);
	snprintf(d, sizeof d, "%" PRId64, duration_ms);
	const char *vals[] = {lease, holder, e, d};
	_cleanup_res_ PGresult *res = NULL;
	int r = q(c,
	          "SELECT acquired, epoch, holder, remaining_ms "
	          "FROM zlh.lease_claim($1, $2, $3::bigint, $4::bigint)",
	          4, vals, &res, err);
	if (r < 0)
		return r;
	LeaseClaim lc = {0};
	if (PQntuples(res) != 1 || get_int64(res, 0, 1, &lc.epoch) < 0 ||
	    get_int64(res, 0, 3, &lc.remaining_ms) < 0) {
		err_msg(err, "zlh.lease_claim returned an unexpected row");
		return -EIO;
	}
	lc.acquired = get_bool(res, 0, 0);
	if (!PQgetisnull(res, 0, 2))
		snprintf(lc.holder, sizeof lc.holder, "%s", PQgetvalue(res, 0, 2));
	*ret = lc;
	return 0;
}

int runtime_lease_release(PGconn *c, const char *lease, const char *holder, int64_t epoch,
                          StoreError *err)
{
	char e[24];
	snprintf(e, sizeof e, "%" PRId64, epoch);
	const char *vals[] = {lease, holder, e};
	_cleanup_res_ PGresult *res = NULL;
	int r = q(c, "SELECT zlh.lease_release($1, $2, $3::bigint)", 3, vals, &res, err);
	if (r < 0)
		return r;
	return PQntuples(res) == 1 && get_bool(res, 0, 0) ? 1 : 0;
}

int runtime_fence(PGconn *c, int64_t epoch, StoreError *err)
{
	char e[24];
	snprintf(e, sizeof e, "%" PRId64, epoch);
	const char *vals[] = {e};
	_cleanup_res_ PGresult *res = NULL;
	return q(c, "SELECT zlh.fence($1::bigint)", 1, vals, &res, err);
}

/* --- reading ------------------------------------------------------------------- */

RuntimeServer *runtime_server_free(RuntimeServer *s)
{
	if (!s)
		return NULL;
	free(s->kind);
	free(s->owner);
	free(s->name);
	json_decref(s->spec);
	json_decref(s->labels);
	json_decref(s->annotations);
	strv_free(s->finalizers);
	json_decref(s->conditions);
	free(s->node);
	free(s->ip);
	free(s->hostname);
	free(s->last_error);
	free(s);
	return NULL;
}

bool runtime_server_has_finalizer(const RuntimeServer *s, const char *name)
{
	for (char **f = s->finalizers; f && *f; f++)
		if (strcmp(*f, name) == 0)
			return true;
	return false;
}

static bool valid_uuid(const char *s)
{
	if (!s || strlen(s) != 36)
		return false;
	for (int i = 0; i < 36; i++) {
		bool dash = i == 8 || i == 13 || i == 18 || i == 23;
		if (dash ? s[i] != '-' : !strchr("0123456789abcdefABCDEF", s[i]))
			return false;
	}
	return true;
}

int runtime_server_load(PGconn *c, const char *uid, RuntimeServer **ret, StoreError *err)
{
	if (!valid_uuid(uid)) {
		err_msg(err, "not a uid");
		return -EINVAL;
	}
	const char *vals[] = {uid};
	_cleanup_res_ PGresult *res = NULL;
	/* finalizers come back as a JSON array: no text[] literal parsing. */
	int r = q(c,
	          "SELECT s.uid, s.kind, s.owner, s.name, s.generation, s.spec, s.labels, "
	          "       s.annotations, s.deletion_requested_at IS NOT NULL, "
	          "       to_jsonb(s.finalizers), "
	          "       coalesce(st.observed_generation, 0), coalesce(st.phase, 'Pending'), "
	          "       coalesce(st.conditions, '[]'::jsonb), st.vmid, st.node, host(st.ip), "
	          "       st.hostname, st.last_error "
	          "FROM zlh.servers s LEFT JOIN zlh.server_status st ON st.uid = s.uid "
	          "WHERE s.uid = $1::uuid",
	          1, vals, &res, err);
	if (r < 0)
		return r;
	if (PQntuples(res) == 0) {
		err_msg(err, "no such server");
		return -ENOENT;
	}
	_cleanup_runtime_server_ RuntimeServer *s = calloc(1, sizeof *s);
	if (!s)
		return -ENOMEM;
	snprintf(s->uid, sizeof s->uid, "%s", PQgetvalue(res, 0, 0));
	_cleanup_json_ json_t *fin = NULL;
	r = 0;
	if (get_str(res, 0, 1, &s->kind) < 0 || get_str(res, 0, 2, &s->owner) < 0 ||
	    get_str(res, 0, 3, &s->name) < 0 || get_str(res, 0, 14, &s->node) < 0 ||
	    get_str(res, 0, 15, &s->ip) < 0 || get_str(res, 0, 16, &s->hostname) < 0 ||
	    get_str(res, 0, 17, &s->last_error) < 0)
		return -ENOMEM;
	if (get_int64(res, 0, 4, &s->generation) < 0 ||
	    get_int64(res, 0, 10, &s->observed_generation) < 0 ||
	    get_json(res, 0, 5, &s->spec) < 0 || get_json(res, 0, 6, &s->labels) < 0 ||
	    get_json(res, 0, 7, &s->annotations) < 0 || get_json(res, 0, 9, &fin) < 0 ||
	    get_json(res, 0, 12, &s->conditions) < 0 || !json_is_object(s->spec) ||
	    !json_is_array(s->conditions)) {
		err_msg(err, "malformed server row");
		return -EIO;
	}
	if (get_int64(res, 0, 13, &s->vmid) < 0)
		s->vmid = -1;
	s->deleting = get_bool(res, 0, 8);
	s->phase = runtime_phase_from_string(PQgetvalue(res, 0, 11));
	if (s->phase == _PHASE_INVALID)
		s->phase = PHASE_PENDING;
	if (!s->labels)
		s->labels = json_object();
	if (!s->annotations)
		s->annotations = json_object();
	const char *paused =
	    json_string_value(json_object_get(s->annotations, RUNTIME_PAUSED_ANNOTATION));
	s->paused = paused && strcmp(paused, "true") == 0;

	size_t n = json_is_array(fin) ? json_array_size(fin) : 0;
	s->finalizers = calloc(n + 1, sizeof(char *));
	if (!s->finalizers)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		const char *f = json_string_value(json_array_get(fin, i));
		s->finalizers[i] = strdup(f ? f : "");
		if (!s->finalizers[i])
			return -ENOMEM;
	}
	*ret = TAKE_PTR(s);
	return 0;
}

int runtime_server_keys(PGconn *c, char ***ret_uids, StoreError *err)
{
	_cleanup_res_ PGresult *res = NULL;
	int r = q(c, "SELECT uid FROM zlh.servers ORDER BY uid", 0, NULL, &res, err);
	if (r < 0)
		return r;
	int n = PQntuples(res);
	_cleanup_strv_free_ char **v = calloc((size_t)n + 1, sizeof(char *));
	if (!v)
		return -ENOMEM;
	for (int i = 0; i < n; i++) {
		v[i] = strdup(PQgetvalue(res, i, 0));
		if (!v[i])
			return -ENOMEM;
	}
	*ret_uids = TAKE_PTR(v);
	return n;
}

int runtime_phase_counts(PGconn *c, PhaseCounts *ret, StoreError *err)
{
	_cleanup_res_ PGresult *res = NULL;
	int r = q(c,
	          "SELECT coalesce(st.phase, 'Pending'), count(*) "
	          "FROM zlh.servers s LEFT JOIN zlh.server_status st ON st.uid = s.uid "
	          "GROUP BY 1",
	          0, NULL, &res, err);
	if (r < 0)
		return r;
	PhaseCounts pc = {0};
	for (int i = 0; i < PQntuples(res); i++) {
		int64_t n;
		if (get_int64(res, i, 1, &n) < 0)
			continue;
		ServerPhase p = runtime_phase_from_string(PQgetvalue(res, i, 0));
		if (p != _PHASE_INVALID)
			pc.by_phase[p] += n;
		pc.total += n;
	}
	*ret = pc;
	return 0;
}

/* --- fenced writes ------------------------------------------------------------------ */

int runtime_status_write(PGconn *c, int64_t epoch, const char *uid, int64_t observed_generation,
                         ServerPhase phase, const json_t *conditions, const char *last_error,
                         StoreError *err)
{
	const char *ph = runtime_phase_to_string(phase);
	if (!ph || !json_is_array(conditions) || !valid_uuid(uid)) {
		err_msg(err, "invalid status");
		return -EINVAL;
	}
	_cleanup_free_ char *cj = json_dumps(conditions, JSON_COMPACT);
	if (!cj)
		return -ENOMEM;
	char e[24], g[24];
	snprintf(e, sizeof e, "%" PRId64, epoch);
	snprintf(g, sizeof g, "%" PRId64, observed_generation);
	const char *vals[] = {e, uid, g, ph, cj, last_error};
	_cleanup_res_ PGresult *res = NULL;
	int r = q(c,
	          "SELECT zlh.runtime_write_status($1::bigint, $2::uuid, $3::bigint, $4, "
	          "$5::jsonb, $6)",
	          6, vals, &res, err);
	if (r < 0)
		return r;
	if (PQntuples(res) != 1 || !get_bool(res, 0, 0)) {
		err_msg(err, "no such server");
		return -ENOENT;
	}
	return 0;
}

int64_t runtime_event_record(PGconn *c, int64_t epoch, const char *uid, const char *type,
                             const char *reason, const char *message, StoreError *err)
{
	if (!valid_uuid(uid) || !type || !reason ||
	    (strcmp(type, "Normal") != 0 && strcmp(type, "Warning") != 0)) {
		err_msg(err, "invalid event");
		return -EINVAL;
	}
	char e[24];
	snprintf(e, sizeof e, "%" PRId64, epoch);
	/* Bounded: a peer's error text can be long. */
	char msg[2048];
	snprintf(msg, sizeof msg, "%s", message ? message : "");
	const char *vals[] = {e, uid, type, reason, msg};
	_cleanup_res_ PGresult *res = NULL;
	int r = q(c, "SELECT zlh.runtime_record_event($1::bigint, $2::uuid, $3, $4, $5)", 5, vals,
	          &res, err);
	if (r < 0)
		return r;
	int64_t id;
	if (PQntuples(res) != 1 || get_int64(res, 0, 0, &id) < 0) {
		err_msg(err, "zlh.runtime_record_event returned no id");
		return -EIO;
	}
	return id;
}

int runtime_finalizer_set(PGconn *c, int64_t epoch, const char *uid, const char *name, bool add,
                          StoreError *err)
{
	if (!valid_uuid(uid) || !name || !*name) {
		err_msg(err, "invalid finalizer");
		return -EINVAL;
	}
	char e[24];
	snprintf(e, sizeof e, "%" PRId64, epoch);
	const char *vals[] = {e, uid, name, add ? "true" : "false"};
	_cleanup_res_ PGresult *res = NULL;
	int r = q(c, "SELECT zlh.runtime_set_finalizer($1::bigint, $2::uuid, $3, $4::boolean)", 4,
	          vals, &res, err);
	if (r < 0)
		return r;
	if (PQntuples(res) != 1 || PQgetisnull(res, 0, 0)) {
		err_msg(err, "no such server");
		return -ENOENT;
	}
	return 0;
}

int runtime_server_remove(PGconn *c, int64_t epoch, const char *uid, StoreError *err)
{
	if (!valid_uuid(uid)) {
		err_msg(err, "not a uid");
		return -EINVAL;
	}
	char e[24];
	snprintf(e, sizeof e, "%" PRId64, epoch);
	const char *vals[] = {e, uid};
	_cleanup_res_ PGresult *res = NULL;
	int r = q(c, "SELECT zlh.runtime_remove_server($1::bigint, $2::uuid)", 2, vals, &res, err);
	if (r < 0)
		return r;
	return PQntuples(res) == 1 && get_bool(res, 0, 0) ? 1 : 0;
}

/* --- connections -------------------------------------------------------------------- */

int runtime_session_setup(PGconn *c, int64_t statement_timeout_ms, const char *application_name,
                          StoreError *err)
{
	char t[24];
	snprintf(t, sizeof t, "%" PRId64, statement_timeout_ms > 0 ? statement_timeout_ms : 0);
	const char *vals[] = {t, application_name ? application_name : "zlh-controller"};
	_cleanup_res_ PGresult *res = NULL;
	return q(c,
	         "SELECT set_config('statement_timeout', $1, false), "
	         "set_config('application_name', $2, false)",
	         2, vals, &res, err);
}

/* --- notifications -------------------------------------------------------------------- */

int runtime_listen(PGconn *c, StoreError *err)
{
	_cleanup_res_ PGresult *res = NULL;
	return q(c, "LISTEN " RUNTIME_NOTIFY_CHANNEL, 0, NULL, &res, err);
}

int runtime_notifies(PGconn *c, size_t max, char ***ret, StoreError *err)
{
	if (!c || PQstatus(c) != CONNECTION_OK || !PQconsumeInput(c) ||
	    PQstatus(c) != CONNECTION_OK) {
		if (err)
			err_msg(err, c ? PQerrorMessage(c) : "not connected");
		return -ECONNRESET;
	}
	size_t n = 0, cap = 0;
	_cleanup_strv_free_ char **v = NULL;
	PGnotify *nf;
	while ((nf = PQnotifies(c))) {
		if (n < max && strcmp(nf->relname, RUNTIME_NOTIFY_CHANNEL) == 0) {
			if (n + 1 >= cap) {
				size_t nc = cap ? cap * 2 : 16;
				char **nv = realloc(v, nc * sizeof *nv);
				if (!nv) {
					PQfreemem(nf);
					return -ENOMEM;
				}
				v = nv;
				cap = nc;
			}
			v[n] = strdup(nf->extra ? nf->extra : "");
			if (!v[n]) {
				PQfreemem(nf);
				return -ENOMEM;
			}
			v[++n] = NULL;
		}
		PQfreemem(nf);
	}
	if (!v) {
		v = calloc(1, sizeof(char *));
		if (!v)
			return -ENOMEM;
	}
	*ret = TAKE_PTR(v);
	return (int)n;
}
