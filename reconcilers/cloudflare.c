/* cloudflare.c - the Cloudflare DNS v4 client. See cloudflare.h for the
 * contract and the error table.
 *
 * Layout: pure helpers (types, names, comments, time), parsing (records,
 * pages, errors), bodies, then the I/O: one request() every call goes
 * through. */
#include "cloudflare.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "log.h"

struct CfClient {
	HttpClient *http;
	char *base; /* api_url + "/zones/" + zone_id + "/dns_records" */
	char *auth; /* "Authorization: Bearer ..." */
	int64_t per_page;
	int64_t max_pages;
	int64_t requests;
};

/* --- pure helpers ------------------------------------------------------------------- */

static const char *const type_names[_CF_TYPE_MAX] = {
    [CF_TYPE_A] = "A",         [CF_TYPE_SRV] = "SRV",     [CF_TYPE_AAAA] = "AAAA",
    [CF_TYPE_CNAME] = "CNAME", [CF_TYPE_OTHER] = "OTHER",
};

const char *cf_type_to_string(CfType t)
{
	return t >= 0 && t < _CF_TYPE_MAX ? type_names[t] : "INVALID";
}

CfType cf_type_from_string(const char *s)
{
	if (!s)
		return _CF_TYPE_INVALID;
	for (int t = 0; t < CF_TYPE_OTHER; t++)
		if (strcmp(type_names[t], s) == 0)
			return (CfType)t;
	return CF_TYPE_OTHER;
}

int cf_classify(long status, int code)
{
	if (status >= 200 && status < 300)
		return 0;
	if (status == 429 || status == 503)
		return -EAGAIN;
	if (status == 404)
		return -ENOENT;
	if (code == 81058 || code == 81053 || code == 81054)
		return -EEXIST;
	if (status == 401 || (status == 403 && (code == 10000 || code == 0)))
		return -EACCES;
	if (status == 403)
		return -EPERM;
	if (status >= 400 && status < 500)
		return -EINVAL;
	return -EREMOTEIO;
}

int cf_name_normalize(const char *name, char *buf, size_t n)
{
	if (!name || !*name)
		return -EINVAL;
	size_t l = strlen(name);
	if (name[l - 1] == '.')
		l--;
	if (!l)
		return -EINVAL;
	if (l >= n)
		return -ENOBUFS;
	for (size_t i = 0; i < l; i++)
		buf[i] = (char)tolower((unsigned char)name[i]);
	buf[l] = 0;
	return 0;
}

bool cf_comment_uid(const char *comment, char *buf, size_t n)
{
	static const char prefix[] = CF_COMMENT_PREFIX;
	if (!comment || strncmp(comment, prefix, sizeof prefix - 1) != 0 || !n)
		return false;
	const char *p = comment + sizeof prefix - 1;
	size_t l = strcspn(p, " \t;,");
	if (!l || l >= n)
		return false;
	for (size_t i = 0; i < l; i++)
		buf[i] = (char)tolower((unsigned char)p[i]);
	buf[l] = 0;
	return true;
}

/* "2024-08-06T12:34:56.789Z" (fraction and offset optional) -> wall ms. */
static int64_t rfc3339_ms(const char *s)
{
	if (!s)
		return 0;
	int y, mo, d, h, mi, sec, consumed = 0;
	if (sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d%n", &y, &mo, &d, &h, &mi, &sec, &consumed) != 6)
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
	} else if (*p != 'Z' && *p != 'z') {
		return 0;
	}
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

void cf_record_clear(CfRecord *r)
{
	if (!r)
		return;
	free(r->content);
	free(r->comment);
	*r = (CfRecord){0};
}

void cf_record_list_clear(CfRecordList *l)
{
	if (!l)
		return;
	for (size_t i = 0; i < l->n; i++)
		cf_record_clear(&l->items[i]);
	free(l->items);
	*l = (CfRecordList){0};
}

/* --- parsing ------------------------------------------------------------------------- */

static bool json_int_in(const json_t *v, int64_t lo, int64_t hi, int64_t *ret)
{
	double d;
	if (json_is_integer(v))
		d = (double)json_integer_value(v);
	else if (json_is_real(v))
		d = json_real_value(v);
	else
		return false;
	if (d < (double)lo || d > (double)hi || d != (double)(int64_t)d)
		return false;
	*ret = (int64_t)d;
	return true;
}

static bool id_valid(const char *id)
{
	if (!id || !*id || strlen(id) >= CF_ID_MAX)
		return false;
	for (const char *p = id; *p; p++)
		if (!isalnum((unsigned char)*p))
			return false;
	return true;
}

int cf_parse_record(const json_t *o, CfRecord *ret)
{
	if (!json_is_object(o))
		return -EBADMSG;
	const char *id = json_string_value(json_object_get(o, "id"));
	const char *type = json_string_value(json_object_get(o, "type"));
	const char *name = json_string_value(json_object_get(o, "name"));
	if (!id_valid(id) || !type || !*type || strlen(type) >= 16 || !name)
		return -EBADMSG;
	_cleanup_(cf_record_clear) CfRecord r = {0};
	snprintf(r.id, sizeof r.id, "%s", id);
	snprintf(r.type_name, sizeof r.type_name, "%s", type);
	r.type = cf_type_from_string(type);
	if (cf_name_normalize(name, r.name, sizeof r.name) < 0)
		return -EBADMSG;
	const char *content = json_string_value(json_object_get(o, "content"));
	r.content = strdup(content ? content : "");
	if (!r.content)
		return -ENOMEM;
	json_t *cj = json_object_get(o, "comment");
	if (json_is_string(cj)) {
		r.comment = strdup(json_string_value(cj));
		if (!r.comment)
			return -ENOMEM;
	} else if (cj && !json_is_null(cj)) {
		return -EBADMSG;
	}
	json_t *tj = json_object_get(o, "ttl");
	r.ttl = 1;
	if (tj && !json_int_in(tj, 1, 86400 * 7, &r.ttl))
		return -EBADMSG;
	json_t *pj = json_object_get(o, "proxied");
	if (pj && !json_is_boolean(pj))
		return -EBADMSG;
	r.proxied = json_is_true(pj);
	json_t *data = json_object_get(o, "data");
	if (r.type == CF_TYPE_SRV && json_is_object(data)) {
		const char *target = json_string_value(json_object_get(data, "target"));
		if (!json_int_in(json_object_get(data, "priority"), 0, 65535, &r.srv.priority) ||
		    !json_int_in(json_object_get(data, "weight"), 0, 65535, &r.srv.weight) ||
		    !json_int_in(json_object_get(data, "port"), 0, 65535, &r.srv.port) || !target ||
		    cf_name_normalize(target, r.srv.target, sizeof r.srv.target) < 0)
			return -EBADMSG;
		r.has_srv = true;
	}
	r.created_ms = rfc3339_ms(json_string_value(json_object_get(o, "created_on")));
	*ret = r;
	r = (CfRecord){0};
	return 0;
}

void cf_parse_error(const char *body, size_t len, int *ret_code, char *msg, size_t n)
{
	if (ret_code)
		*ret_code = 0;
	if (n)
		msg[0] = 0;
	if (!body || !len)
		return;
	json_error_t e;
	_cleanup_json_ json_t *j = json_loadb(body, len, 0, &e);
	json_t *first = json_array_get(json_object_get(j, "errors"), 0);
	json_t *code = json_object_get(first, "code");
	if (ret_code && json_is_integer(code))
		*ret_code = (int)json_integer_value(code);
	const char *m = json_string_value(json_object_get(first, "message"));
	if (m && n) {
		snprintf(msg, n, "%s", m);
		return;
	}
	size_t l = 0;
	while (l < len && l + 1 < n && body[l] != '\n') {
		unsigned char c = (unsigned char)body[l];
		msg[l] = c < ' ' ? ' ' : (char)c;
		l++;
	}
	if (n)
		msg[l < n ? l : n - 1] = 0;
}

int cf_parse_page(const char *body, size_t len, CfRecordList *list, int64_t *ret_total_pages)
{
	if (!body || !list)
		return -EBADMSG;
	json_error_t e;
	_cleanup_json_ json_t *j = json_loadb(body, len, 0, &e);
	if (!json_is_true(json_object_get(j, "success")))
		return -EBADMSG;
	json_t *arr = json_object_get(j, "result");
	if (!json_is_array(arr))
		return -EBADMSG;
	size_t n = json_array_size(arr);
	if (list->n + n > CF_MAX_RECORDS)
		return -E2BIG;
	int64_t pages = 1;
	json_t *ri = json_object_get(j, "result_info");
	if (json_is_object(ri)) {
		int64_t tp, tc, pp;
		json_t *tpj = json_object_get(ri, "total_pages");
		if (tpj) {
			if (!json_int_in(tpj, 0, INT32_MAX, &tp))
				return -EBADMSG;
			pages = tp;
		} else if (json_int_in(json_object_get(ri, "total_count"), 0, INT32_MAX, &tc) &&
		           json_int_in(json_object_get(ri, "per_page"), 1, INT32_MAX, &pp)) {
			pages = (tc + pp - 1) / pp;
		}
	}
	if (n) {
		CfRecord *items = realloc(list->items, (list->n + n) * sizeof *items);
		if (!items)
			return -ENOMEM;
		list->items = items;
	}
	for (size_t i = 0; i < n; i++) {
		CfRecord r;
		int k = cf_parse_record(json_array_get(arr, i), &r);
		if (k < 0)
			return k;
		list->items[list->n++] = r;
	}
	*ret_total_pages = pages;
	return 0;
}

/* --- bodies --------------------------------------------------------------------------- */

int cf_record_body(const CfRecordSpec *s, Buf *b)
{
	if (!s || !s->name || !*s->name || strlen(s->name) >= CF_NAME_MAX || s->ttl < 1 ||
	    s->ttl > 86400)
		return -EINVAL;
	_cleanup_json_ json_t *o = json_object();
	if (!o)
		return -ENOMEM;
	int r = 0;
	switch (s->type) {
	case CF_TYPE_A:
	case CF_TYPE_AAAA:
	case CF_TYPE_CNAME:
		if (!s->content || !*s->content)
			return -EINVAL;
		r |= json_object_set_new(o, "content", json_string(s->content));
		r |= json_object_set_new(o, "proxied", json_boolean(s->proxied));
		break;
	case CF_TYPE_SRV:
		if (!s->srv.target[0] || s->srv.priority < 0 || s->srv.priority > 65535 ||
		    s->srv.weight < 0 || s->srv.weight > 65535 || s->srv.port < 0 ||
		    s->srv.port > 65535 || s->proxied)
			return -EINVAL;
		r |= json_object_set_new(
		    o, "data",
		    json_pack("{s:I, s:I, s:I, s:s}", "priority", (json_int_t)s->srv.priority,
		              "weight", (json_int_t)s->srv.weight, "port", (json_int_t)s->srv.port,
		              "target", s->srv.target));
		break;
	default:
		return -EINVAL;
	}
	r |= json_object_set_new(o, "type", json_string(cf_type_to_string(s->type)));
	r |= json_object_set_new(o, "name", json_string(s->name));
	r |= json_object_set_new(o, "ttl", json_integer(s->ttl));
	if (s->comment)
		r |= json_object_set_new(o, "comment", json_string(s->comment));
	if (r)
		return -ENOMEM;
	_cleanup_free_ char *text = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
	if (!text)
		return -ENOMEM;
	return buf_puts(b, text);
}

bool cf_record_matches(const CfRecord *r, const CfRecordSpec *s)
{
	if (!r || !s || r->type != s->type || !s->name || strcasecmp(r->name, s->name) != 0 ||
	    r->ttl != s->ttl || r->proxied != s->proxied)
		return false;
	if ((r->comment == NULL) != (s->comment == NULL) ||
	    (s->comment && strcmp(r->comment, s->comment) != 0))
		return false;
	if (s->type == CF_TYPE_SRV)
		return r->has_srv && r->srv.priority == s->srv.priority &&
		       r->srv.weight == s->srv.weight && r->srv.port == s->srv.port &&
		       strcasecmp(r->srv.target, s->srv.target) == 0;
	return s->content && r->content && strcasecmp(r->content, s->content) == 0;
}

/* --- the client ------------------------------------------------------------------------ */

CfClient *cf_client_new(const CfClientOptions *o)
{
	if (!o || !o->api_url || !*o->api_url || !id_valid(o->zone_id) || !o->token || !*o->token ||
	    strchr(o->token, '\n') || strchr(o->token, '\r'))
		return NULL;
	CfClient *c = calloc(1, sizeof *c);
	if (!c)
		return NULL;
	HttpOptions h = o->http;
	if (!h.max_body)
		h.max_body = CF_MAX_BODY;
	c->http = http_client_new(&h);
	size_t l = strlen(o->api_url);
	while (l && o->api_url[l - 1] == '/')
		l--;
	if (asprintf(&c->base, "%.*s/zones/%s/dns_records", (int)l, o->api_url, o->zone_id) < 0)
		c->base = NULL;
	if (asprintf(&c->auth, "Authorization: Bearer %s", o->token) < 0)
		c->auth = NULL;
	if (!c->http || !c->base || !c->auth)
		return cf_client_free(c);
	c->per_page = o->per_page > 0 ? o->per_page : CF_PER_PAGE_DEFAULT;
	c->max_pages = o->max_pages > 0 ? o->max_pages : CF_MAX_PAGES;
	return c;
}

CfClient *cf_client_free(CfClient *c)
{
	if (!c)
		return NULL;
	http_client_free(c->http);
	free(c->base);
	if (c->auth) {
		explicit_bzero(c->auth, strlen(c->auth));
		free(c->auth);
	}
	free(c);
	return NULL;
}

int64_t cf_client_requests(const CfClient *c)
{
	return c ? c->requests : 0;
}

static void err_set(CfError *err, long status, int code, int64_t retry_after, const char *msg)
{
	if (!err)
		return;
	err->http_status = status;
	err->code = code;
	err->retry_after_s = retry_after;
	snprintf(err->message, sizeof err->message, "%s", msg ? msg : "");
}

/* One call: suffix is appended to the records URL ("" or "/<id>" or
 * "?page=..."). On a 2xx, *resp holds the answer (caller clears). */
static int request(CfClient *c, const char *method, const char *suffix, const char *body,
                   bool fresh, HttpResponse *resp, CfError *err)
{
	char url[2048];
	int n = snprintf(url, sizeof url, "%s%s", c->base, suffix);
	if (n < 0 || (size_t)n >= sizeof url) {
		err_set(err, 0, 0, -1, "url too long");
		return -EINVAL;
	}
	const char *headers[] = {
	    c->auth,
	    "Accept: application/json",
	    body ? "Content-Type: application/json" : NULL,
	    NULL,
	};
	c->requests++;
	int r =
	    http_request(c->http, method, url, headers, body, body ? strlen(body) : 0, fresh, resp);
	if (r < 0) {
		err_set(err, 0, 0, -1, resp->error[0] ? resp->error : strerror(-r));
		log_debug("cloudflare: %s %s: transport error: %s", method, suffix, resp->error);
		return r;
	}
	int code = 0;
	char msg[200] = "";
	if (resp->status < 200 || resp->status >= 300)
		cf_parse_error(resp->body.data, resp->body.len, &code, msg, sizeof msg);
	r = cf_classify(resp->status, code);
	log_debug("cloudflare: %s %s -> %ld (%d, code %d)", method, suffix, resp->status, r, code);
	if (r < 0) {
		char m[256];
		snprintf(m, sizeof m, "HTTP %ld (code %d): %s", resp->status, code, msg);
		err_set(err, resp->status, code, resp->status == 429 ? resp->retry_after_s : -1, m);
	}
	return r;
}

int cf_list_records(CfClient *c, int (*before_page)(void *ctx, int64_t page), void *ctx,
                    CfRecordList *ret, CfError *err)
{
	if (!c || !ret)
		return -EINVAL;
	_cleanup_(cf_record_list_clear) CfRecordList list = {0};
	int64_t total = 1;
	for (int64_t page = 1; page <= total; page++) {
		if (page > c->max_pages) {
			err_set(err, 0, 0, -1, "listing has more pages than allowed");
			return -E2BIG;
		}
		if (before_page) {
			int r = before_page(ctx, page);
			if (r < 0) {
				err_set(err, 0, 0, -1, "listing interrupted");
				return r;
			}
		}
		char q[96];
		snprintf(q, sizeof q, "?page=%" PRId64 "&per_page=%" PRId64, page, c->per_page);
		HttpResponse resp = {.retry_after_s = -1};
		int r = request(c, "GET", q, NULL, false, &resp, err);
		size_t before = list.n;
		if (r == 0) {
			r = cf_parse_page(resp.body.data, resp.body.len, &list, &total);
			if (r < 0)
				err_set(err, resp.status, 0, -1,
				        r == -E2BIG ? "listing has more records than allowed"
				                    : "malformed dns_records page");
		}
		http_response_clear(&resp);
		if (r < 0)
			return r;
		/* A page past the end (records removed meanwhile) ends it. */
		if (list.n == before && page < total && page > 1)
			break;
	}
	*ret = list;
	list = (CfRecordList){0};
	return 0;
}

/* The result object of a single-record answer into *ret_or_NULL. */
static int single_result(const HttpResponse *resp, CfRecord *ret_or_NULL, CfError *err)
{
	json_error_t e;
	_cleanup_json_ json_t *j = json_loadb(resp->body.data, resp->body.len, 0, &e);
	if (!json_is_true(json_object_get(j, "success"))) {
		err_set(err, resp->status, 0, -1, "malformed answer: success is not true");
		return -EBADMSG;
	}
	if (!ret_or_NULL)
		return 0;
	int r = cf_parse_record(json_object_get(j, "result"), ret_or_NULL);
	if (r < 0)
		err_set(err, resp->status, 0, -1, "malformed answer: no record in result");
	return r;
}

int cf_create_record(CfClient *c, const CfRecordSpec *s, CfRecord *ret_or_NULL, CfError *err)
{
	_cleanup_buf_ Buf body = BUF_INIT;
	if (!c || cf_record_body(s, &body) < 0) {
		err_set(err, 0, 0, -1, "invalid record");
		return -EINVAL;
	}
	HttpResponse resp = {.retry_after_s = -1};
	int r = request(c, "POST", "", body.data, true, &resp, err);
	if (r == 0)
		r = single_result(&resp, ret_or_NULL, err);
	http_response_clear(&resp);
	return r;
}

int cf_patch_record(CfClient *c, const char *id, const CfRecordSpec *s, CfRecord *ret_or_NULL,
                    CfError *err)
{
	_cleanup_buf_ Buf body = BUF_INIT;
	if (!c || !id_valid(id) || cf_record_body(s, &body) < 0) {
		err_set(err, 0, 0, -1, "invalid record or id");
		return -EINVAL;
	}
	char suffix[CF_ID_MAX + 2];
	snprintf(suffix, sizeof suffix, "/%s", id);
	HttpResponse resp = {.retry_after_s = -1};
	int r = request(c, "PATCH", suffix, body.data, true, &resp, err);
	if (r == 0)
		r = single_result(&resp, ret_or_NULL, err);
	http_response_clear(&resp);
	return r;
}

int cf_delete_record(CfClient *c, const char *id, CfError *err)
{
	if (!c || !id_valid(id)) {
		err_set(err, 0, 0, -1, "invalid id");
		return -EINVAL;
	}
	char suffix[CF_ID_MAX + 2];
	snprintf(suffix, sizeof suffix, "/%s", id);
	HttpResponse resp = {.retry_after_s = -1};
	int r = request(c, "DELETE", suffix, NULL, true, &resp, err);
	http_response_clear(&resp);
	if (r == -ENOENT)
		return 1;
	return r;
}
