/* velocity.c - the ZpackVelocityBridge client. See velocity.h for the
 * contract and the error table.
 *
 * Layout: pure helpers (names, classification, parsing, bodies), then the
 * I/O: one request() every call goes through. */
#include "velocity.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>

#include "log.h"

struct VelocityClient {
	HttpClient *http;
	char *url; /* without a trailing '/' */
	char header[96]; /* "X-Zpack-Secret: <hex>" */
};

/* --- pure helpers ----------------------------------------------------------------- */

void velocity_servers_clear(VelocityServers *s)
{
	if (!s)
		return;
	free(s->items);
	*s = (VelocityServers){0};
}

const VelocityServer *velocity_servers_find(const VelocityServer *items, size_t n, const char *name)
{
	if (!items || !name)
		return NULL;
	for (size_t i = 0; i < n; i++)
		if (strcasecmp(items[i].name, name) == 0)
			return &items[i];
	return NULL;
}

bool velocity_name_valid(const char *name)
{
	if (!name || !*name || strlen(name) >= VELOCITY_NAME_MAX)
		return false;
	for (const char *p = name; *p; p++) {
		char c = *p;
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '.' || c == '-' || c == '_'))
			return false;
	}
	return true;
}

/* An address we send: a host name or an IP literal, no spaces or controls. */
static bool address_valid(const char *a)
{
	if (!a || !*a || strlen(a) >= VELOCITY_ADDRESS_MAX)
		return false;
	for (const char *p = a; *p; p++)
		if ((unsigned char)*p <= ' ' || *p == '"' || *p == '\\' || *p == '/')
			return false;
	return true;
}

int velocity_classify(long status, bool unregister)
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
		return unregister ? 1 : -ENOENT;
	case 409:
		return -EEXIST;
	case 429:
	case 503:
		return -EAGAIN;
	default:
		return -EREMOTEIO;
	}
}

void velocity_error_text(const char *body, size_t len, char *buf, size_t n)
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

static int copy_field(const json_t *o, const char *key, char *dst, size_t n)
{
	const char *s = json_string_value(json_object_get(o, key));
	if (!s)
		return -EBADMSG;
	size_t l = strlen(s);
	if (!l || l >= n)
		return -EBADMSG;
	memcpy(dst, s, l + 1);
	return 0;
}

int velocity_parse_status(const char *body, size_t len, VelocityServers *ret)
{
	if (!body)
		return -EBADMSG;
	json_error_t e;
	_cleanup_json_ json_t *j = json_loadb(body, len, 0, &e);
	json_t *arr = json_object_get(j, "servers");
	if (!json_is_array(arr))
		return -EBADMSG;
	size_t n = json_array_size(arr);
	if (n > VELOCITY_MAX_SERVERS)
		return -E2BIG;
	_cleanup_free_ VelocityServer *items = n ? calloc(n, sizeof *items) : NULL;
	if (n && !items)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		json_t *o = json_array_get(arr, i);
		VelocityServer *s = &items[i];
		if (!json_is_object(o) || copy_field(o, "name", s->name, sizeof s->name) < 0 ||
		    copy_field(o, "address", s->address, sizeof s->address) < 0)
			return -EBADMSG;
		json_t *p = json_object_get(o, "port");
		json_int_t port;
		if (json_is_integer(p))
			port = json_integer_value(p);
		else
			return -EBADMSG;
		if (port < 0 || port > 65535)
			return -EBADMSG;
		s->port = (int)port;
	}
	*ret = (VelocityServers){.items = TAKE_PTR(items), .n = n};
	return 0;
}

static int dump_into(json_t *j, Buf *b)
{
	if (!j)
		return -ENOMEM;
	_cleanup_free_ char *s = json_dumps(j, JSON_COMPACT);
	json_decref(j);
	if (!s)
		return -ENOMEM;
	return buf_puts(b, s);
}

int velocity_register_body(const char *name, const char *address, int port, Buf *b)
{
	if (!velocity_name_valid(name) || !address_valid(address) || port < 1 || port > 65535)
		return -EINVAL;
	return dump_into(
	    json_pack("{s:s, s:s, s:i}", "server_name", name, "address", address, "port", port), b);
}

int velocity_unregister_body(const char *name, Buf *b)
{
	if (!velocity_name_valid(name))
		return -EINVAL;
	return dump_into(json_pack("{s:s}", "server_name", name), b);
}

/* --- the client --------------------------------------------------------------------- */

VelocityClient *velocity_client_new(const VelocityClientOptions *o)
{
	if (!o || !o->url || !*o->url || !o->secret_sha256 || !*o->secret_sha256 ||
	    strlen(o->secret_sha256) > 64)
		return NULL;
	VelocityClient *c = calloc(1, sizeof *c);
	if (!c)
		return NULL;
	HttpOptions h = o->http;
	if (!h.timeout_ms)
		h.timeout_ms = 10000;
	if (!h.max_body)
		h.max_body = VELOCITY_MAX_BODY;
	c->http = http_client_new(&h);
	c->url = strdup(o->url);
	if (!c->http || !c->url)
		return velocity_client_free(c);
	size_t l = strlen(c->url);
	while (l && c->url[l - 1] == '/')
		c->url[--l] = 0;
	snprintf(c->header, sizeof c->header, "X-Zpack-Secret: %s", o->secret_sha256);
	return c;
}

VelocityClient *velocity_client_free(VelocityClient *c)
{
	if (!c)
		return NULL;
	http_client_free(c->http);
	free(c->url);
	explicit_bzero(c->header, sizeof c->header);
	free(c);
	return NULL;
}

static void err_set(VelocityError *err, long status, int64_t retry_after, const char *msg)
{
	if (!err)
		return;
	err->http_status = status;
	err->retry_after_s = retry_after;
	snprintf(err->message, sizeof err->message, "%s", msg ? msg : "");
}

/* One call. On a response, *resp holds it (caller clears) and the status
 * is classified; transport errors come back as they are. */
static int request(VelocityClient *c, const char *method, const char *path, const char *body,
                   bool unregister, HttpResponse *resp, VelocityError *err)
{
	char url[1024];
	int n = snprintf(url, sizeof url, "%s%s", c->url, path);
	if (n < 0 || (size_t)n >= sizeof url) {
		err_set(err, 0, -1, "url too long");
		return -EINVAL;
	}
	const char *headers[] = {
	    c->header,
	    "Accept: application/json",
	    body ? "Content-Type: application/json" : NULL,
	    NULL,
	};
	/* Register and unregister change the proxy: a fresh connection, so
	 * libcurl never resends them on its own. */
	int r = http_request(c->http, method, url, headers, body, body ? strlen(body) : 0,
	                     body != NULL, resp);
	if (r < 0) {
		err_set(err, 0, -1, resp->error[0] ? resp->error : strerror(-r));
		log_debug("velocity: %s %s: transport error: %s", method, path, resp->error);
		return r;
	}
	r = velocity_classify(resp->status, unregister);
	log_debug("velocity: %s %s -> %ld (%d)", method, path, resp->status, r);
	if (r < 0) {
		char text[200];
		velocity_error_text(resp->body.data, resp->body.len, text, sizeof text);
		char msg[256];
		snprintf(msg, sizeof msg, "HTTP %ld: %s", resp->status, text);
		err_set(err, resp->status, resp->retry_after_s, msg);
	}
	return r;
}

int velocity_status(VelocityClient *c, VelocityServers *ret, VelocityError *err)
{
	if (!c || !ret)
		return -EINVAL;
	HttpResponse resp = {.retry_after_s = -1};
	int r = request(c, "GET", "/zpack/status", NULL, false, &resp, err);
	if (r == 0) {
		r = velocity_parse_status(resp.body.data, resp.body.len, ret);
		if (r < 0)
			err_set(err, resp.status, -1, "malformed /zpack/status response");
	}
	http_response_clear(&resp);
	return r < 0 ? r : 0;
}

int velocity_register(VelocityClient *c, const char *name, const char *address, int port,
                      VelocityError *err)
{
	_cleanup_buf_ Buf body = BUF_INIT;
	if (!c || velocity_register_body(name, address, port, &body) < 0) {
		err_set(err, 0, -1, "invalid register arguments");
		return -EINVAL;
	}
	HttpResponse resp = {.retry_after_s = -1};
	int r = request(c, "POST", "/zpack/register", body.data, false, &resp, err);
	http_response_clear(&resp);
	return r < 0 ? r : 0;
}

int velocity_unregister(VelocityClient *c, const char *name, VelocityError *err)
{
	_cleanup_buf_ Buf body = BUF_INIT;
	if (!c || velocity_unregister_body(name, &body) < 0) {
		err_set(err, 0, -1, "invalid unregister arguments");
		return -EINVAL;
	}
	HttpResponse resp = {.retry_after_s = -1};
	int r = request(c, "POST", "/zpack/unregister", body.data, true, &resp, err);
	http_response_clear(&resp);
	return r;
}
