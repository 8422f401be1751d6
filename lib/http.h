/* http.h - the libcurl wrapper every client (pve, agentapi, velocity,
 * cloudflare) uses. One HttpClient per thread: it owns one easy handle, so
 * keep-alive connections are reused between calls of that thread.
 *
 * Lost responses: libcurl resends a request by itself when a reused
 * connection dies before any reply byte arrived. Non-idempotent calls must
 * therefore pass fresh_connect = true (DESIGN.md section 6). */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "cleanup.h"

typedef struct HttpClient HttpClient;

typedef struct HttpOptions {
	const char *ca_file; /* borrowed; NULL = system store */
	const char *pinned_pubkey; /* borrowed; "sha256//..." or NULL */
	bool insecure; /* skip TLS verification (tests only) */
	int64_t timeout_ms; /* whole request; 0 = 30 s */
	int64_t connect_timeout_ms; /* 0 = 5 s */
	size_t max_body; /* 0 = 16 MiB */
} HttpOptions;

typedef struct HttpResponse {
	long status; /* HTTP status; 0 when no response arrived */
	Buf body; /* owned; freed by http_response_clear() */
	int64_t retry_after_s; /* from Retry-After, or -1 */
	char error[256]; /* libcurl's message on transport failure */
} HttpResponse;

/* Returns a new client or NULL (out of memory). opts is copied. */
HttpClient *http_client_new(const HttpOptions *opts);
/* Frees the client; accepts NULL; returns NULL. */
HttpClient *http_client_free(HttpClient *c);
DEFINE_TRIVIAL_CLEANUP_FUNC(HttpClient *, http_client_free)
#define _cleanup_http_client_ _cleanup_(http_client_freep)

void http_response_clear(HttpResponse *r);

/* Performs one request. url: full URL (borrowed). headers: NULL-terminated
 * "Name: value" strings (borrowed) or NULL. body may be NULL.
 * Returns 0 when a response arrived (any status, in resp->status), or
 *   -ETIMEDOUT   the request timed out (outcome unknown),
 *   -ECONNRESET  the connection broke after the request was sent (unknown),
 *   -ECONNREFUSED / -EHOSTUNREACH  nothing was sent,
 *   -EIO         other transport error, -E2BIG body too large.
 * resp is cleared first and always safe to clear afterwards. */
int http_request(HttpClient *c, const char *method, const char *url, const char *const *headers,
                 const char *body, size_t body_len, bool fresh_connect,
                 HttpResponse *resp) _must_check_;

/* URL-encodes s into b (RFC 3986 unreserved kept). */
int http_urlencode(Buf *b, const char *s) _must_check_;

/* True when the error means the request may have had its effect. */
static inline bool http_outcome_unknown(int r)
{
	return r == -110 /* ETIMEDOUT */ || r == -104 /* ECONNRESET */ || r == -5 /* EIO */;
}

/* Calls curl_global_init once; call from main before threads start. */
void http_global_init(void);
