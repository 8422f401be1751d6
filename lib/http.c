#include "http.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

struct HttpClient {
	CURL *curl;
	HttpOptions opts;
	char *ca_file;
	char *pinned_pubkey;
};

void http_global_init(void)
{
	curl_global_init(CURL_GLOBAL_DEFAULT);
}

HttpClient *http_client_new(const HttpOptions *opts)
{
	HttpClient *c = calloc(1, sizeof *c);
	if (!c)
		return NULL;
	if (opts)
		c->opts = *opts;
	if (c->opts.ca_file)
		c->ca_file = strdup(c->opts.ca_file);
	if (c->opts.pinned_pubkey)
		c->pinned_pubkey = strdup(c->opts.pinned_pubkey);
	c->opts.ca_file = c->ca_file;
	c->opts.pinned_pubkey = c->pinned_pubkey;
	if (!c->opts.timeout_ms)
		c->opts.timeout_ms = 30000;
	if (!c->opts.connect_timeout_ms)
		c->opts.connect_timeout_ms = 5000;
	if (!c->opts.max_body)
		c->opts.max_body = 16u << 20;
	c->curl = curl_easy_init();
	if (!c->curl)
		return http_client_free(c);
	return c;
}

HttpClient *http_client_free(HttpClient *c)
{
	if (!c)
		return NULL;
	if (c->curl)
		curl_easy_cleanup(c->curl);
	free(c->ca_file);
	free(c->pinned_pubkey);
	free(c);
	return NULL;
}

void http_response_clear(HttpResponse *r)
{
	buf_done(&r->body);
	r->status = 0;
	r->retry_after_s = -1;
	r->error[0] = 0;
}

static size_t on_body(char *p, size_t sz, size_t n, void *ud)
{
	HttpResponse *r = ud;
	if (buf_append(&r->body, p, sz * n) < 0)
		return 0; /* aborts the transfer: CURLE_WRITE_ERROR */
	return sz * n;
}

static size_t on_header(char *p, size_t sz, size_t n, void *ud)
{
	HttpResponse *r = ud;
	size_t len = sz * n;
	static const char ra[] = "retry-after:";
	if (len > sizeof ra - 1 && strncasecmp(p, ra, sizeof ra - 1) == 0) {
		char tmp[32];
		size_t l = len - (sizeof ra - 1);
		if (l >= sizeof tmp)
			l = sizeof tmp - 1;
		memcpy(tmp, p + sizeof ra - 1, l);
		tmp[l] = 0;
		char *end;
		long v = strtol(tmp, &end, 10);
		if (end != tmp && v >= 0)
			r->retry_after_s = v;
	}
	return len;
}

int http_request(HttpClient *c, const char *method, const char *url, const char *const *headers,
                 const char *body, size_t body_len, bool fresh_connect, HttpResponse *resp)
{
	http_response_clear(resp);
	resp->body.max = c->opts.max_body;
	CURL *h = c->curl;
	curl_easy_reset(h);
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)c->opts.timeout_ms);
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, (long)c->opts.connect_timeout_ms);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, resp);
	curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(h, CURLOPT_HEADERDATA, resp);
	curl_easy_setopt(h, CURLOPT_ERRORBUFFER, resp->error);
	if (c->opts.ca_file)
		curl_easy_setopt(h, CURLOPT_CAINFO, c->opts.ca_file);
	if (c->opts.pinned_pubkey)
		curl_easy_setopt(h, CURLOPT_PINNEDPUBLICKEY, c->opts.pinned_pubkey);
	if (c->opts.insecure) {
		curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 0L);
		curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 0L);
	}
	if (fresh_connect) {
		curl_easy_setopt(h, CURLOPT_FRESH_CONNECT, 1L);
		curl_easy_setopt(h, CURLOPT_FORBID_REUSE, 1L);
	}
	if (strcmp(method, "GET") == 0)
		curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
	else {
		curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
		if (body || strcmp(method, "POST") == 0 || strcmp(method, "PUT") == 0 ||
		    strcmp(method, "PATCH") == 0) {
			curl_easy_setopt(h, CURLOPT_POSTFIELDS, body ? body : "");
			curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE,
			                 (curl_off_t)(body ? body_len : 0));
		}
	}
	struct curl_slist *hl = NULL;
	/* No "Expect: 100-continue" round trip. */
	hl = curl_slist_append(hl, "Expect:");
	for (size_t i = 0; headers && headers[i]; i++) {
		struct curl_slist *n = curl_slist_append(hl, headers[i]);
		if (!n) {
			curl_slist_free_all(hl);
			return -ENOMEM;
		}
		hl = n;
	}
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, hl);
	CURLcode cc = curl_easy_perform(h);
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, NULL);
	curl_slist_free_all(hl);
	if (cc == CURLE_OK) {
		curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &resp->status);
		if (!resp->body.data)
			(void)!buf_puts(&resp->body, "");
		return 0;
	}
	if (!resp->error[0])
		snprintf(resp->error, sizeof resp->error, "%s", curl_easy_strerror(cc));
	resp->status = 0;
	switch (cc) {
	case CURLE_OPERATION_TIMEDOUT:
		return -ETIMEDOUT;
	case CURLE_COULDNT_CONNECT:
		return -ECONNREFUSED;
	case CURLE_COULDNT_RESOLVE_HOST:
		return -EHOSTUNREACH;
	case CURLE_WRITE_ERROR:
		return -E2BIG;
	case CURLE_GOT_NOTHING:
	case CURLE_RECV_ERROR:
	case CURLE_SEND_ERROR:
	case CURLE_PARTIAL_FILE:
		return -ECONNRESET;
	default:
		return -EIO;
	}
}

int http_urlencode(Buf *b, const char *s)
{
	static const char hex[] = "0123456789ABCDEF";
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		int r;
		if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		    (*p >= '0' && *p <= '9') || *p == '-' || *p == '_' || *p == '.' || *p == '~')
			r = buf_append(b, p, 1);
		else {
			char e[3] = {'%', hex[*p >> 4], hex[*p & 15]};
			r = buf_append(b, e, 3);
		}
		if (r < 0)
			return r;
	}
	return 0;
}
