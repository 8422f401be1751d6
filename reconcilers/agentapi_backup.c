/* agentapi_backup.c - the agent's backup routes (see agentapi_backup.h).
 *
 * Layout: pure helpers (validation, classification, parsing, bodies), then
 * the I/O: one request() every call goes through. */
#include "agentapi_backup.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "log.h"

struct AgentBackupClient {
	HttpClient *http;
	int64_t port;
	char *auth; /* "Authorization: Bearer <token>" or NULL */
};

/* --- pure helpers ---------------------------------------------------------------------- */

const char *agentapi_backup_state_to_string(AgentBackupState s)
{
	static const char *const n[_AGENT_BACKUP_STATE_MAX] = {"running", "ok", "failed"};
	return s >= 0 && s < _AGENT_BACKUP_STATE_MAX ? n[s] : NULL;
}

AgentBackupState agentapi_backup_state_from_string(const char *s)
{
	for (int i = 0; s && i < _AGENT_BACKUP_STATE_MAX; i++)
		if (strcmp(agentapi_backup_state_to_string((AgentBackupState)i), s) == 0)
			return (AgentBackupState)i;
	return _AGENT_BACKUP_STATE_INVALID;
}

const char *agentapi_restore_state_to_string(AgentRestoreState s)
{
	static const char *const n[_AGENT_RESTORE_STATE_MAX] = {"none", "running", "done",
	                                                        "failed"};
	return s >= 0 && s < _AGENT_RESTORE_STATE_MAX ? n[s] : NULL;
}

void agentapi_backups_clear(AgentBackups *b)
{
	if (!b)
		return;
	free(b->items);
	*b = (AgentBackups){0};
}

const AgentBackup *agentapi_backups_find_id(const AgentBackup *items, size_t n, const char *id)
{
	for (size_t i = 0; items && id && i < n; i++)
		if (strcmp(items[i].id, id) == 0)
			return &items[i];
	return NULL;
}

const AgentBackup *agentapi_backups_find_name(const AgentBackup *items, size_t n, const char *name)
{
	for (size_t i = 0; items && name && i < n; i++)
		if (strcmp(items[i].name, name) == 0)
			return &items[i];
	return NULL;
}

bool agentapi_backup_id_valid(const char *id)
{
	if (!id || !*id || strlen(id) >= AGENTAPI_BACKUP_ID_MAX)
		return false;
	for (const char *p = id; *p; p++) {
		char c = *p;
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '.' || c == '-' || c == '_'))
			return false;
	}
	return true;
}

bool agentapi_backup_name_valid(const char *name)
{
	if (!name || !*name || strlen(name) >= AGENTAPI_BACKUP_NAME_MAX)
		return false;
	for (const char *p = name; *p; p++)
		if ((unsigned char)*p < ' ' || *p == 0x7f || *p == '"' || *p == '\\')
			return false;
	return true;
}

int agentapi_backup_classify(long status, bool is_delete)
{
	if (status >= 200 && status < 300)
		return 0;
	switch (status) {
	case 400:
		return -EINVAL;
	case 401:
		return -EACCES;
	case 403:
		return -EPERM;
	case 404:
		return is_delete ? 1 : -ENOENT;
	case 409:
		return -EBUSY;
	case 429:
	case 503:
		return -EAGAIN;
	default:
		return -EREMOTEIO;
	}
}

int64_t agentapi_backup_parse_time(const char *s)
{
	if (!s)
		return 0;
	int y, mo, d, h, mi, sec, consumed = 0;
	if (sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d%n", &y, &mo, &d, &h, &mi, &sec, &consumed) != 6 ||
	    mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 60 || y < 1970)
		return 0;
	const char *p = s + consumed;
	int64_t frac_ms = 0;
	if (*p == '.') {
		int64_t scale = 100;
		for (p++; isdigit((unsigned char)*p); p++) {
			frac_ms += (*p - '0') * scale;
			scale /= 10;
		}
	}
	int64_t off_s = 0;
	if (*p == '+' || *p == '-') {
		int oh = 0, om = 0;
		if (sscanf(p + 1, "%2d:%2d", &oh, &om) != 2)
			return 0;
		off_s = (int64_t)(oh * 3600 + om * 60) * (*p == '-' ? -1 : 1);
		p += 6;
	} else if (*p == 'Z' || *p == 'z') {
		p++;
	} else {
		return 0;
	}
	if (*p)
		return 0;
	struct tm tm = {.tm_year = y - 1900,
	                .tm_mon = mo - 1,
	                .tm_mday = d,
	                .tm_hour = h,
	                .tm_min = mi,
	                .tm_sec = sec};
	time_t t = timegm(&tm);
	if (t == (time_t)-1)
		return 0;
	return ((int64_t)t - off_s) * 1000 + frac_ms;
}

static int copy_str(const json_t *o, const char *key, char *dst, size_t n, bool required)
{
	json_t *v = json_object_get(o, key);
	if (!v || json_is_null(v)) {
		if (required)
			return -EBADMSG;
		dst[0] = 0;
		return 0;
	}
	const char *s = json_string_value(v);
	if (!s)
		return -EBADMSG;
	size_t l = strlen(s);
	if ((required && !l) || l >= n)
		return -EBADMSG;
	memcpy(dst, s, l + 1);
	return 0;
}

int agentapi_backup_parse_list(const char *body, size_t len, AgentBackups *ret)
{
	if (!body || !ret)
		return -EBADMSG;
	json_error_t e;
	_cleanup_json_ json_t *j = json_loadb(body, len, 0, &e);
	json_t *arr = json_object_get(j, "backups");
	if (!json_is_array(arr))
		return -EBADMSG;
	size_t n = json_array_size(arr);
	if (n > AGENTAPI_BACKUP_MAX)
		return -E2BIG;
	_cleanup_free_ AgentBackup *items = n ? calloc(n, sizeof *items) : NULL;
	if (n && !items)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		json_t *o = json_array_get(arr, i);
		AgentBackup *b = &items[i];
		char state[16];
		char created[64];
		if (!json_is_object(o) || copy_str(o, "id", b->id, sizeof b->id, true) < 0 ||
		    copy_str(o, "name", b->name, sizeof b->name, false) < 0 ||
		    copy_str(o, "state", state, sizeof state, true) < 0 ||
		    copy_str(o, "createdAt", created, sizeof created, false) < 0)
			return -EBADMSG;
		b->state = agentapi_backup_state_from_string(state);
		if (b->state == _AGENT_BACKUP_STATE_INVALID)
			return -EBADMSG;
		b->created_ms = agentapi_backup_parse_time(created);
		json_t *bytes = json_object_get(o, "bytes");
		if (json_is_integer(bytes) && json_integer_value(bytes) >= 0)
			b->bytes = json_integer_value(bytes);
		else if (!bytes || json_is_null(bytes))
			b->bytes = -1;
		else
			return -EBADMSG;
	}
	*ret = (AgentBackups){.items = TAKE_PTR(items), .n = n};
	return 0;
}

int agentapi_backup_parse_created(const char *body, size_t len, char *buf, size_t n)
{
	if (!body || !buf || !n)
		return -EBADMSG;
	json_error_t e;
	_cleanup_json_ json_t *j = json_loadb(body, len, 0, &e);
	const char *id = json_string_value(json_object_get(j, "id"));
	if (!agentapi_backup_id_valid(id) || strlen(id) >= n)
		return -EBADMSG;
	memcpy(buf, id, strlen(id) + 1);
	return 0;
}

int agentapi_backup_parse_restore(const char *body, size_t len, AgentRestoreStatus *ret)
{
	if (!body || !ret)
		return -EBADMSG;
	json_error_t e;
	_cleanup_json_ json_t *j = json_loadb(body, len, 0, &e);
	if (!json_is_object(j))
		return -EBADMSG;
	json_t *r = json_object_get(j, "restore");
	AgentRestoreStatus st = {.state = AGENT_RESTORE_NONE};
	if (r && !json_is_null(r)) {
		const char *id = json_string_value(json_object_get(r, "id"));
		const char *s = json_string_value(json_object_get(r, "state"));
		if (!json_is_object(r) || !id || !*id || strlen(id) >= sizeof st.id || !s)
			return -EBADMSG;
		if (strcmp(s, "running") == 0)
			st.state = AGENT_RESTORE_RUNNING;
		else if (strcmp(s, "done") == 0)
			st.state = AGENT_RESTORE_DONE;
		else if (strcmp(s, "failed") == 0)
			st.state = AGENT_RESTORE_FAILED;
		else
			return -EBADMSG;
		memcpy(st.id, id, strlen(id) + 1);
	}
	*ret = st;
	return 0;
}

void agentapi_backup_error_text(const char *body, size_t len, char *buf, size_t n)
{
	if (!n)
		return;
	buf[0] = 0;
	if (!body || !len)
		return;
	json_error_t e;
	_cleanup_json_ json_t *j = json_loadb(body, len, 0, &e);
	const char *msg = json_string_value(json_object_get(j, "error"));
	if (!msg)
		msg = json_string_value(json_object_get(j, "message"));
	if (msg) {
		snprintf(buf, n, "%s", msg);
		return;
	}
	size_t l = 0;
	while (l < len && body[l] != '\n' && body[l] != '\r' && l + 1 < n) {
		unsigned char c = (unsigned char)body[l];
		buf[l] = c < ' ' ? ' ' : (char)c;
		l++;
	}
	buf[l] = 0;
}

int agentapi_backup_create_body(const char *name, Buf *b)
{
	if (!agentapi_backup_name_valid(name) || !b)
		return -EINVAL;
	_cleanup_json_ json_t *j = json_pack("{s:s}", "name", name);
	if (!j)
		return -ENOMEM;
	_cleanup_free_ char *s = json_dumps(j, JSON_COMPACT);
	if (!s)
		return -ENOMEM;
	return buf_puts(b, s);
}

/* --- the client ---------------------------------------------------------------------------- */

AgentBackupClient *agentapi_backup_client_new(const AgentBackupClientOptions *o)
{
	if (!o || o->port < 1 || o->port > 65535)
		return NULL;
	AgentBackupClient *c = calloc(1, sizeof *c);
	if (!c)
		return NULL;
	HttpOptions h = o->http;
	if (!h.timeout_ms)
		h.timeout_ms = 10000;
	if (!h.max_body)
		h.max_body = AGENTAPI_BACKUP_MAX_BODY;
	c->port = o->port;
	c->http = http_client_new(&h);
	if (!c->http)
		return agentapi_backup_client_free(c);
	if (o->token && *o->token) {
		size_t l = strlen(o->token) + sizeof "Authorization: Bearer ";
		c->auth = malloc(l);
		if (!c->auth)
			return agentapi_backup_client_free(c);
		snprintf(c->auth, l, "Authorization: Bearer %s", o->token);
	}
	return c;
}

AgentBackupClient *agentapi_backup_client_free(AgentBackupClient *c)
{
	if (!c)
		return NULL;
	http_client_free(c->http);
	if (c->auth) {
		explicit_bzero(c->auth, strlen(c->auth));
		free(c->auth);
	}
	free(c);
	return NULL;
}

static void err_set(AgentBackupError *err, long status, int64_t retry_after, const char *msg)
{
	if (!err)
		return;
	err->http_status = status;
	err->retry_after_s = retry_after;
	snprintf(err->message, sizeof err->message, "%s", msg ? msg : "");
}

static bool ip_valid(const char *ip)
{
	if (!ip || !*ip || strlen(ip) > 45)
		return false;
	for (const char *p = ip; *p; p++)
		if (!isxdigit((unsigned char)*p) && *p != '.' && *p != ':')
			return false;
	return true;
}

/* One call. On a response, *resp holds it (the caller clears) and the
 * status is classified; transport errors come back as they are. */
static int request(AgentBackupClient *c, const char *ip, const char *method, const char *path,
                   const char *body, bool fresh, bool is_delete, HttpResponse *resp,
                   AgentBackupError *err)
{
	if (!ip_valid(ip)) {
		err_set(err, 0, -1, "invalid agent address");
		return -EINVAL;
	}
	char url[512];
	int n = snprintf(url, sizeof url, "http://%s:%lld%s", ip, (long long)c->port, path);
	if (n < 0 || (size_t)n >= sizeof url) {
		err_set(err, 0, -1, "url too long");
		return -EINVAL;
	}
	const char *headers[4];
	size_t h = 0;
	if (c->auth)
		headers[h++] = c->auth;
	headers[h++] = "Accept: application/json";
	if (body)
		headers[h++] = "Content-Type: application/json";
	headers[h] = NULL;
	int r =
	    http_request(c->http, method, url, headers, body, body ? strlen(body) : 0, fresh, resp);
	if (r < 0) {
		err_set(err, 0, -1, resp->error[0] ? resp->error : strerror(-r));
		log_debug("agentapi_backup: %s %s: transport error: %s", method, path, resp->error);
		return r;
	}
	r = agentapi_backup_classify(resp->status, is_delete);
	log_debug("agentapi_backup: %s %s -> %ld (%d)", method, path, resp->status, r);
	if (r < 0) {
		char text[200];
		agentapi_backup_error_text(resp->body.data, resp->body.len, text, sizeof text);
		char msg[256];
		snprintf(msg, sizeof msg, "HTTP %ld: %s", resp->status, text);
		err_set(err, resp->status, resp->retry_after_s, msg);
	}
	return r;
}

int agentapi_backup_list(AgentBackupClient *c, const char *ip, AgentBackups *ret,
                         AgentBackupError *err)
{
	if (!c || !ret)
		return -EINVAL;
	HttpResponse resp = {.retry_after_s = -1};
	int r = request(c, ip, "GET", "/backups", NULL, false, false, &resp, err);
	if (r == 0) {
		r = agentapi_backup_parse_list(resp.body.data, resp.body.len, ret);
		if (r < 0)
			err_set(err, resp.status, -1, "malformed GET /backups response");
	}
	http_response_clear(&resp);
	return r < 0 ? r : 0;
}

int agentapi_backup_create(AgentBackupClient *c, const char *ip, const char *name, char *ret_id,
                           size_t n, AgentBackupError *err)
{
	_cleanup_buf_ Buf body = BUF_INIT;
	if (!c || !ret_id || !n || agentapi_backup_create_body(name, &body) < 0) {
		err_set(err, 0, -1, "invalid backup create arguments");
		return -EINVAL;
	}
	HttpResponse resp = {.retry_after_s = -1};
	/* Not idempotent: a fresh connection, so libcurl never resends it. */
	int r = request(c, ip, "POST", "/backups", body.data, true, false, &resp, err);
	if (r == 0) {
		char id[AGENTAPI_BACKUP_ID_MAX];
		r = agentapi_backup_parse_created(resp.body.data, resp.body.len, id, sizeof id);
		if (r < 0)
			err_set(err, resp.status, -1, "malformed POST /backups response (no id)");
		else if (strlen(id) >= n)
			r = -ENOBUFS;
		else
			memcpy(ret_id, id, strlen(id) + 1);
	}
	http_response_clear(&resp);
	return r < 0 ? r : 0;
}

int agentapi_backup_restore(AgentBackupClient *c, const char *ip, const char *id,
                            AgentBackupError *err)
{
	if (!c || !agentapi_backup_id_valid(id)) {
		err_set(err, 0, -1, "invalid restore arguments");
		return -EINVAL;
	}
	char path[64 + AGENTAPI_BACKUP_ID_MAX];
	snprintf(path, sizeof path, "/backups/restore?id=%s", id);
	HttpResponse resp = {.retry_after_s = -1};
	int r = request(c, ip, "POST", path, NULL, true, false, &resp, err);
	http_response_clear(&resp);
	return r < 0 ? r : 0;
}

int agentapi_backup_delete(AgentBackupClient *c, const char *ip, const char *id,
                           AgentBackupError *err)
{
	if (!c || !agentapi_backup_id_valid(id)) {
		err_set(err, 0, -1, "invalid delete arguments");
		return -EINVAL;
	}
	char path[64 + AGENTAPI_BACKUP_ID_MAX];
	snprintf(path, sizeof path, "/backups/%s", id);
	HttpResponse resp = {.retry_after_s = -1};
	int r = request(c, ip, "DELETE", path, NULL, true, true, &resp, err);
	http_response_clear(&resp);
	return r;
}

int agentapi_backup_restore_status(AgentBackupClient *c, const char *ip, AgentRestoreStatus *ret,
                                   AgentBackupError *err)
{
	if (!c || !ret)
		return -EINVAL;
	HttpResponse resp = {.retry_after_s = -1};
	int r = request(c, ip, "GET", "/status", NULL, false, false, &resp, err);
	if (r == 0) {
		r = agentapi_backup_parse_restore(resp.body.data, resp.body.len, ret);
		if (r < 0)
			err_set(err, resp.status, -1, "malformed GET /status response");
	}
	http_response_clear(&resp);
	return r < 0 ? r : 0;
}
