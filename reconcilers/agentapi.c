/* agentapi.c - the zlh-agent client (see agentapi.h).
 *
 * Layout: states and names, the payload builders (pure), the parsers
 * (pure), then the I/O: one request() every call goes through. */
#include "agentapi.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "util.h"

struct AgentClient {
	HttpClient *poll; /* GETs: short timeout, keep-alive */
	HttpClient *call; /* POSTs: fresh connection each */
	int64_t port;
	char *auth; /* "Authorization: Bearer <token>" or NULL */
};

/* --- states and names -------------------------------------------------------------------- */

static const char *const state_names[_AGENT_STATE_MAX] = {
    "idle",    "installing", "verifying", "starting", "running",
    "stopped", "crashed",    "error",     "unknown",
};

const char *agentapi_state_to_string(AgentState s)
{
	return s >= 0 && s < _AGENT_STATE_MAX ? state_names[s] : NULL;
}

AgentState agentapi_state_from_string(const char *s)
{
	if (!s || !*s)
		return _AGENT_STATE_INVALID;
	for (int i = 0; i < AGENT_STATE_UNKNOWN; i++)
		if (strcmp(state_names[i], s) == 0)
			return (AgentState)i;
	return AGENT_STATE_UNKNOWN;
}

bool agentapi_state_is_install(AgentState s)
{
	return s == AGENT_STATE_INSTALLING || s == AGENT_STATE_VERIFYING ||
	       s == AGENT_STATE_STARTING;
}

static const char *const op_names[_AGENT_OP_MAX] = {"start", "stop", "restart"};

const char *agentapi_op_to_string(AgentOp op)
{
	return op >= 0 && op < _AGENT_OP_MAX ? op_names[op] : NULL;
}

AgentOp agentapi_op_from_string(const char *s)
{
	for (int i = 0; s && i < _AGENT_OP_MAX; i++)
		if (strcmp(op_names[i], s) == 0)
			return (AgentOp)i;
	return _AGENT_OP_INVALID;
}

/* --- the payload ------------------------------------------------------------------------------- */

bool agentapi_token_valid(const char *s)
{
	if (!s || !isalnum((unsigned char)s[0]))
		return false;
	size_t l = 0;
	for (const char *p = s; *p; p++, l++) {
		unsigned char c = (unsigned char)*p;
		if (l >= 64 || c >= 0x80 ||
		    !(isalnum(c) || c == '.' || c == '_' || c == '+' || c == '-'))
			return false;
	}
	return true;
}

#define VERSION_PARTS 8

/* The leading dotted number of s into parts (missing ones 0). Returns how
 * many components were read (0: s does not start with a digit). */
static int version_parts(const char *s, int64_t parts[VERSION_PARTS])
{
	memset(parts, 0, sizeof(int64_t) * VERSION_PARTS);
	if (!s || !isdigit((unsigned char)*s))
		return 0;
	int k = 0;
	const char *p = s;
	while (k < VERSION_PARTS && isdigit((unsigned char)*p)) {
		int64_t v = 0;
		int digits = 0;
		for (; isdigit((unsigned char)*p); p++)
			if (++digits <= 9) /* bounded: a longer run saturates */
				v = v * 10 + (*p - '0');
		parts[k++] = v;
		if (*p != '.')
			break;
		p++;
	}
	return k;
}

int agentapi_version_cmp(const char *a, const char *b)
{
	int64_t pa[VERSION_PARTS], pb[VERSION_PARTS];
	version_parts(a, pa);
	version_parts(b, pb);
	for (int i = 0; i < VERSION_PARTS; i++)
		if (pa[i] != pb[i])
			return pa[i] < pb[i] ? -1 : 1;
	return 0;
}

/* "24w14a": two digits, 'w', two digits, lower-case letters. */
static bool snapshot_id(const char *s, int *ret_yyww)
{
	if (!s || strlen(s) < 6)
		return false;
	for (int i = 0; i < 5; i++)
		if (i == 2 ? s[i] != 'w' : !isdigit((unsigned char)s[i]))
			return false;
	for (const char *p = s + 5; *p; p++)
		if (!islower((unsigned char)*p))
			return false;
	*ret_yyww = ((s[0] - '0') * 10 + (s[1] - '0')) * 100 + (s[3] - '0') * 10 + (s[4] - '0');
	return true;
}

int agentapi_java_major(const char *version)
{
	if (!version || !*version)
		return 21;
	int yyww;
	if (snapshot_id(version, &yyww))
		return yyww >= 2414 ? 21 : 17;
	if (isdigit((unsigned char)version[0]))
		return agentapi_version_cmp(version, "1.20.5") >= 0 ? 21 : 17;
	/* alpha, beta, classic, pre-classic, indev/infdev */
	if ((version[0] == 'a' || version[0] == 'b' || version[0] == 'c') &&
	    isdigit((unsigned char)version[1]))
		return 17;
	if (str_startswith(version, "rd-") || str_startswith(version, "inf-") ||
	    str_startswith(version, "in-"))
		return 17;
	return 21;
}

const char *agentapi_java_path(const char *version)
{
	return agentapi_java_major(version) >= 21 ? AGENTAPI_JAVA_21 : AGENTAPI_JAVA_17;
}

int agentapi_artifact_path(const char *variant, const char *version, char *buf, size_t n)
{
	if (!variant || !agentapi_token_valid(version) || !buf)
		return -EINVAL;
	const char *file;
	if (strcmp(variant, "paper") == 0 || strcmp(variant, "purpur") == 0 ||
	    strcmp(variant, "vanilla") == 0)
		file = "server.jar";
	else if (strcmp(variant, "fabric") == 0)
		file = "fabric-server.jar";
	else if (strcmp(variant, "forge") == 0)
		file = "forge-installer.jar";
	else if (strcmp(variant, "neoforge") == 0)
		file = "neoforge-installer.jar";
	else
		return -EINVAL;
	char tmp[AGENTAPI_PATH_MAX];
	int l = snprintf(tmp, sizeof tmp, "minecraft/%s/%s/%s", variant, version, file);
	if (l < 0 || (size_t)l >= sizeof tmp || (size_t)l >= n)
		return -ENOBUFS;
	memcpy(buf, tmp, (size_t)l + 1);
	return l;
}

static bool vmid_ok(int64_t vmid)
{
	return vmid >= 100 && vmid <= 999999999;
}

static bool memory_ok(int64_t mb)
{
	return mb >= 1 && mb <= (1 << 24);
}

int agentapi_payload_game(int64_t vmid, const char *game, const char *variant, const char *version,
                          int64_t memory_mb, json_t **ret)
{
	if (!ret || !vmid_ok(vmid) || !memory_ok(memory_mb) || !game ||
	    strcmp(game, "minecraft") != 0)
		return -EINVAL;
	char artifact[AGENTAPI_PATH_MAX];
	int r = agentapi_artifact_path(variant, version, artifact, sizeof artifact);
	if (r < 0)
		return -EINVAL;
	json_t *p = json_pack("{s:I, s:s, s:s, s:s, s:s, s:s, s:[i], s:s, s:s, s:I}", "vmid",
	                      (json_int_t)vmid, "container_type", "game", "game", game, "variant",
	                      variant, "version", version, "world", AGENTAPI_WORLD, "ports",
	                      AGENTAPI_GAME_PORT, "artifact_path", artifact, "java_path",
	                      agentapi_java_path(version), "memory_mb", (json_int_t)memory_mb);
	if (!p)
		return -ENOMEM;
	*ret = p;
	return 0;
}

int agentapi_payload_dev(int64_t vmid, const char *runtime, const char *version, int64_t memory_mb,
                         json_t **ret)
{
	if (!ret || !vmid_ok(vmid) || !memory_ok(memory_mb) || !agentapi_token_valid(runtime) ||
	    !agentapi_token_valid(version))
		return -EINVAL;
	json_t *p = json_pack("{s:I, s:s, s:s, s:s, s:I}", "vmid", (json_int_t)vmid,
	                      "container_type", "dev", "runtime", runtime, "version", version,
	                      "memory_mb", (json_int_t)memory_mb);
	if (!p)
		return -ENOMEM;
	*ret = p;
	return 0;
}

int agentapi_payload_canonical(const json_t *payload, char **ret)
{
	if (!json_is_object(payload) || !ret)
		return -EINVAL;
	char *s = json_dumps(payload, JSON_COMPACT | JSON_SORT_KEYS);
	if (!s)
		return -ENOMEM;
	*ret = s;
	return 0;
}

int agentapi_payload_hash(const json_t *payload, char out[65])
{
	_cleanup_free_ char *s = NULL;
	int r = agentapi_payload_canonical(payload, &s);
	if (r < 0)
		return r;
	char hex[65];
	if (sha256_hex(s, strlen(s), hex) < 0)
		return -EIO;
	memcpy(out, hex, sizeof hex);
	return 0;
}

/* --- parsing ---------------------------------------------------------------------------------- */

int agentapi_classify(long status)
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
		return -ENOENT;
	case 409:
		return -EBUSY;
	case 429:
	case 503:
		return -EAGAIN;
	default:
		return -EREMOTEIO;
	}
}

/* Copies s into dst (n bytes): control characters become spaces, bytes
 * that are not ASCII become '?' unless utf8 (jansson's strings are valid
 * UTF-8), and a cut never splits a UTF-8 sequence. */
static void copy_clean(char *dst, size_t n, const char *s, size_t len, bool utf8)
{
	if (!n)
		return;
	size_t l = 0;
	for (; l < len && l + 1 < n; l++) {
		unsigned char c = (unsigned char)s[l];
		if (c == '\n' || c == '\r')
			break;
		dst[l] = c < 0x20 || c == 0x7f ? ' ' : (c >= 0x80 && !utf8) ? '?' : (char)c;
	}
	if (utf8 && l > 0) {
		/* The last sequence must be whole: find its lead byte. */
		size_t k = l;
		while (k > 0 && ((unsigned char)dst[k - 1] & 0xc0) == 0x80)
			k--;
		if (k > 0 && (unsigned char)dst[k - 1] >= 0xc0) {
			unsigned char lead = (unsigned char)dst[k - 1];
			size_t need = lead >= 0xf0 ? 4 : lead >= 0xe0 ? 3 : 2;
			if (l - (k - 1) < need)
				l = k - 1;
		}
	}
	dst[l] = 0;
}

/* Optional string member: absent or null -> "", a string -> copied,
 * anything else -> -EBADMSG. */
static int opt_str(const json_t *o, const char *key, char *dst, size_t n)
{
	json_t *v = json_object_get(o, key);
	dst[0] = 0;
	if (!v || json_is_null(v))
		return 0;
	if (!json_is_string(v))
		return -EBADMSG;
	copy_clean(dst, n, json_string_value(v), json_string_length(v), true);
	return 0;
}

int agentapi_parse_status(const char *body, size_t len, AgentStatus *ret)
{
	if (!body || !ret)
		return -EBADMSG;
	json_error_t e;
	_cleanup_json_ json_t *j = json_loadb(body, len, 0, &e);
	if (!json_is_object(j))
		return -EBADMSG;
	AgentStatus st = {0};
	json_t *state = json_object_get(j, "state");
	if (!json_is_string(state) || !json_string_length(state))
		return -EBADMSG;
	copy_clean(st.raw_state, sizeof st.raw_state, json_string_value(state),
	           json_string_length(state), true);
	st.state = agentapi_state_from_string(json_string_value(state));
	if (opt_str(j, "installStep", st.install_step, sizeof st.install_step) < 0 ||
	    opt_str(j, "error", st.error, sizeof st.error) < 0)
		return -EBADMSG;
	json_t *cc = json_object_get(j, "crashCount");
	if (json_is_integer(cc) && json_integer_value(cc) >= 0)
		st.crash_count = json_integer_value(cc);
	else if (cc && !json_is_null(cc))
		return -EBADMSG;
	json_t *pc = json_object_get(j, "provisioningComplete");
	if (json_is_boolean(pc))
		st.provisioning_complete = json_is_true(pc);
	else if (pc && !json_is_null(pc))
		return -EBADMSG;
	/* "restore" belongs to agentapi_backup.h; only "is one running"
	 * matters here, and a shape it does not know is not our error. */
	json_t *rs = json_object_get(json_object_get(j, "restore"), "state");
	st.restore_running = json_is_string(rs) && strcmp(json_string_value(rs), "running") == 0;
	*ret = st;
	return 0;
}

void agentapi_error_text(const char *body, size_t len, char *buf, size_t n)
{
	if (!n)
		return;
	buf[0] = 0;
	if (!body || !len)
		return;
	json_error_t e;
	_cleanup_json_ json_t *j = json_loadb(body, len, 0, &e);
	json_t *msg = json_object_get(j, "error");
	if (!json_is_string(msg))
		msg = json_object_get(j, "reason");
	if (!json_is_string(msg))
		msg = json_object_get(j, "message");
	if (json_is_string(msg)) {
		copy_clean(buf, n, json_string_value(msg), json_string_length(msg), true);
		return;
	}
	copy_clean(buf, n, body, len, false);
}

int agentapi_parse_ready(long status, const char *body, size_t len, AgentReadiness *ret)
{
	if (!ret)
		return -EINVAL;
	AgentReadiness rd = {0};
	if (status == 503) {
		agentapi_error_text(body, len, rd.reason, sizeof rd.reason);
		if (!rd.reason[0])
			snprintf(rd.reason, sizeof rd.reason, "not ready");
		*ret = rd;
		return 0;
	}
	int r = agentapi_classify(status);
	if (r < 0)
		return r;
	if (!body)
		return -EBADMSG;
	json_error_t e;
	_cleanup_json_ json_t *j = json_loadb(body, len, 0, &e);
	json_t *ready = json_object_get(j, "ready");
	if (!json_is_object(j) || !json_is_boolean(ready))
		return -EBADMSG;
	rd.ready = json_is_true(ready);
	if (opt_str(j, "source", rd.source, sizeof rd.source) < 0 ||
	    opt_str(j, "reason", rd.reason, sizeof rd.reason) < 0)
		return -EBADMSG;
	if (!rd.ready && !rd.reason[0])
		snprintf(rd.reason, sizeof rd.reason, "not ready");
	*ret = rd;
	return 0;
}

/* --- the client ---------------------------------------------------------------------------------- */

AgentClient *agentapi_client_new(const AgentClientOptions *o)
{
	if (!o || o->port < 1 || o->port > 65535)
		return NULL;
	AgentClient *c = calloc(1, sizeof *c);
	if (!c)
		return NULL;
	c->port = o->port;
	HttpOptions call = o->http;
	if (!call.timeout_ms)
		call.timeout_ms = 10000;
	if (!call.connect_timeout_ms)
		call.connect_timeout_ms = 2000;
	if (!call.max_body)
		call.max_body = AGENTAPI_MAX_BODY;
	HttpOptions poll = call;
	poll.timeout_ms = o->poll_timeout_ms > 0 ? o->poll_timeout_ms : 3000;
	poll.connect_timeout_ms = poll.timeout_ms / 3 > 250 ? poll.timeout_ms / 3 : 250;
	c->poll = http_client_new(&poll);
	c->call = http_client_new(&call);
	if (!c->poll || !c->call)
		return agentapi_client_free(c);
	if (o->token && *o->token) {
		size_t l = strlen(o->token) + sizeof "Authorization: Bearer ";
		c->auth = malloc(l);
		if (!c->auth)
			return agentapi_client_free(c);
		snprintf(c->auth, l, "Authorization: Bearer %s", o->token);
	}
	return c;
}

AgentClient *agentapi_client_free(AgentClient *c)
{
	if (!c)
		return NULL;
	http_client_free(c->poll);
	http_client_free(c->call);
	if (c->auth) {
		explicit_bzero(c->auth, strlen(c->auth));
		free(c->auth);
	}
	free(c);
	return NULL;
}

static void err_set(AgentError *err, long status, int64_t retry_after, const char *msg)
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

/* One call. On a response, *resp holds it (the caller clears); the status
 * is classified unless raw (then 0: the caller reads resp->status).
 * Transport errors come back as they are. */
static int request(AgentClient *c, const char *ip, const char *method, const char *path,
                   const char *body, bool raw, HttpResponse *resp, AgentError *err)
{
	if (!c || !ip_valid(ip)) {
		err_set(err, 0, -1, "invalid agent address");
		return -EINVAL;
	}
	char url[128];
	int n = strchr(ip, ':')
	            ? snprintf(url, sizeof url, "http://[%s]:%lld%s", ip, (long long)c->port, path)
	            : snprintf(url, sizeof url, "http://%s:%lld%s", ip, (long long)c->port, path);
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
	bool post = strcmp(method, "GET") != 0;
	/* A POST changes something: never on a reused connection. */
	int r = http_request(post ? c->call : c->poll, method, url, headers, body,
	                     body ? strlen(body) : 0, post, resp);
	if (r < 0) {
		err_set(err, 0, -1, resp->error[0] ? resp->error : strerror(-r));
		log_debug("agentapi: %s %s: transport error: %s", method, path, resp->error);
		return r;
	}
	log_debug("agentapi: %s %s -> %ld", method, path, resp->status);
	if (raw)
		return 0;
	r = agentapi_classify(resp->status);
	if (r < 0) {
		char text[200];
		agentapi_error_text(resp->body.data, resp->body.len, text, sizeof text);
		char msg[256];
		snprintf(msg, sizeof msg, "HTTP %ld: %s", resp->status, text);
		err_set(err, resp->status, resp->retry_after_s, msg);
	}
	return r;
}

int agentapi_health(AgentClient *c, const char *ip, AgentError *err)
{
	HttpResponse resp = {.retry_after_s = -1};
	int r = request(c, ip, "GET", "/health", NULL, false, &resp, err);
	http_response_clear(&resp);
	return r;
}

int agentapi_status(AgentClient *c, const char *ip, AgentStatus *ret, AgentError *err)
{
	if (!ret) {
		err_set(err, 0, -1, "invalid arguments");
		return -EINVAL;
	}
	HttpResponse resp = {.retry_after_s = -1};
	int r = request(c, ip, "GET", "/status", NULL, false, &resp, err);
	if (r == 0) {
		r = agentapi_parse_status(resp.body.data, resp.body.len, ret);
		if (r < 0)
			err_set(err, resp.status, -1, "malformed GET /status response");
	}
	http_response_clear(&resp);
	return r;
}

int agentapi_ready(AgentClient *c, const char *ip, AgentReadiness *ret, AgentError *err)
{
	if (!ret) {
		err_set(err, 0, -1, "invalid arguments");
		return -EINVAL;
	}
	HttpResponse resp = {.retry_after_s = -1};
	int r = request(c, ip, "GET", "/ready", NULL, true, &resp, err);
	if (r == 0) {
		r = agentapi_parse_ready(resp.status, resp.body.data, resp.body.len, ret);
		if (r < 0) {
			char text[200], msg[256];
			agentapi_error_text(resp.body.data, resp.body.len, text, sizeof text);
			snprintf(msg, sizeof msg, "HTTP %ld: %s", resp.status,
			         r == -EBADMSG ? "malformed GET /ready response" : text);
			err_set(err, resp.status, resp.retry_after_s, msg);
		}
	}
	http_response_clear(&resp);
	return r;
}

int agentapi_config(AgentClient *c, const char *ip, const json_t *payload, AgentError *err)
{
	_cleanup_free_ char *body = NULL;
	if (agentapi_payload_canonical(payload, &body) < 0) {
		err_set(err, 0, -1, "invalid payload");
		return -EINVAL;
	}
	HttpResponse resp = {.retry_after_s = -1};
	int r = request(c, ip, "POST", "/config", body, false, &resp, err);
	http_response_clear(&resp);
	return r;
}

int agentapi_power(AgentClient *c, const char *ip, AgentOp op, AgentError *err)
{
	const char *name = agentapi_op_to_string(op);
	if (!name) {
		err_set(err, 0, -1, "invalid operation");
		return -EINVAL;
	}
	char path[32];
	snprintf(path, sizeof path, "/%s", name);
	HttpResponse resp = {.retry_after_s = -1};
	int r = request(c, ip, "POST", path, NULL, false, &resp, err);
	http_response_clear(&resp);
	return r;
}

int agentapi_codeserver(AgentClient *c, const char *ip, AgentOp op, AgentError *err)
{
	const char *name = agentapi_op_to_string(op);
	if (!name) {
		err_set(err, 0, -1, "invalid operation");
		return -EINVAL;
	}
	char path[48];
	snprintf(path, sizeof path, "/dev/codeserver/%s", name);
	HttpResponse resp = {.retry_after_s = -1};
	int r = request(c, ip, "POST", path, NULL, false, &resp, err);
	http_response_clear(&resp);
	return r;
}
