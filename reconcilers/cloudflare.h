/* cloudflare.h - the Cloudflare DNS v4 client (DESIGN.md section 6,
 * contracts/README.md "Cloudflare DNS v4 facts" and
 * contracts/cloudflare-dns-records-subset-2024-08-06.json).
 *
 *   GET    /zones/{zone}/dns_records?page=N&per_page=M   (every page, bounded)
 *   POST   /zones/{zone}/dns_records                      (fresh connection)
 *   PATCH  /zones/{zone}/dns_records/{id}
 *   DELETE /zones/{zone}/dns_records/{id}                 (404 = already gone)
 *
 * `Authorization: Bearer <token>`; envelope {success, errors:[{code,
 * message}], messages, result, result_info}. Errors are translated at this
 * edge into a negative errno plus a CfError:
 *   -EAGAIN     429 (rate limited: err.retry_after_s from Retry-After), 503
 *   -ENOENT     404 (81044 "Record does not exist"); delete: 1 (gone)
 *   -EEXIST     400 81058 (an identical record exists), 81053/81054 (CNAME
 *               conflicts): the record, or one in its way, is there
 *   -EACCES     401, 403 (bad token); -EPERM 403 without code 10000
 *   -EINVAL     other 4xx (a request the API refused as invalid)
 *   -EREMOTEIO  5xx: failed on the peer (a create may still have landed:
 *               callers treat it as an unknown outcome)
 *   -EBADMSG    a 2xx answer that is not the documented shape
 *   -E2BIG      the listing exceeds the page or record bound
 *   transport errors from http_request() as they are.
 * A create is not idempotent: it goes on a fresh connection (libcurl would
 * otherwise resend it by itself on a reused connection that died), and an
 * unknown outcome is settled by the next listing, never by a blind repeat.
 *
 * The parsing half (cf_parse_*, cf_classify, cf_record_body) is pure. Logs at
 * debug only; the token is never logged. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "buf.h"
#include "cleanup.h"
#include "http.h"

#define CF_MAX_RECORDS 200000 /* records of one listing */
#define CF_MAX_PAGES 400 /* pages of one listing */
#define CF_PER_PAGE_DEFAULT 500
#define CF_MAX_BODY (32u << 20)
#define CF_ID_MAX 64 /* record ids are 32 hex */
#define CF_NAME_MAX 256 /* a DNS name: 253 + NUL, with room */
#define CF_COMMENT_PREFIX "zlh:uid="

typedef enum CfType {
	CF_TYPE_A,
	CF_TYPE_SRV,
	CF_TYPE_AAAA,
	CF_TYPE_CNAME,
	CF_TYPE_OTHER,
	_CF_TYPE_MAX,
	_CF_TYPE_INVALID = -1,
} CfType;

/* "A", "SRV", ... (static). */
const char *cf_type_to_string(CfType t);
/* The type named s (case-sensitive, as the API writes it); CF_TYPE_OTHER for
 * a type this client does not model. */
CfType cf_type_from_string(const char *s);

typedef struct CfSrvData {
	int64_t priority, weight, port;
	char target[CF_NAME_MAX]; /* lower-case, no trailing dot */
} CfSrvData;

/* One DNS record. Fixed buffers plus two owned strings. */
typedef struct CfRecord {
	char id[CF_ID_MAX];
	CfType type;
	char type_name[16]; /* as listed ("TXT" for CF_TYPE_OTHER) */
	char name[CF_NAME_MAX]; /* FQDN, lower-case, no trailing dot */
	char *content; /* owned; "" when absent */
	char *comment; /* owned; NULL when none */
	int64_t ttl; /* 1 = automatic */
	bool proxied;
	bool has_srv; /* SRV: data below was given */
	CfSrvData srv;
	int64_t created_ms; /* created_on as wall ms, 0 unknown (ordering only) */
} CfRecord;

void cf_record_clear(CfRecord *r);

typedef struct CfRecordList {
	CfRecord *items; /* owned */
	size_t n;
} CfRecordList;

void cf_record_list_clear(CfRecordList *l);

/* What a create or an update writes. Strings borrowed. */
typedef struct CfRecordSpec {
	CfType type; /* CF_TYPE_A or CF_TYPE_SRV (AAAA, CNAME take content too) */
	const char *name; /* FQDN */
	const char *content; /* A/AAAA/CNAME */
	CfSrvData srv; /* SRV */
	int64_t ttl;
	bool proxied;
	const char *comment; /* NULL = none */
} CfRecordSpec;

/* Details of a failed call. */
typedef struct CfError {
	long http_status; /* 0 when no response arrived */
	int code; /* the first errors[].code, 0 when none */
	int64_t retry_after_s; /* 429: Retry-After, or -1 */
	char message[256];
} CfError;

/* --- pure -------------------------------------------------------------------------- */

/* The errno of a failed answer (status, first error code); 0 for 2xx. */
int cf_classify(long status, int code);

/* Lower-cases name into buf and drops one trailing dot. -ENOBUFS, -EINVAL
 * (empty). */
int cf_name_normalize(const char *name, char *buf, size_t n) _must_check_;

/* The uid named by a comment "zlh:uid=<uid>" (prefix, then the uid up to
 * the end, a space, ';' or ','): true and the uid in buf (lower-case), or
 * false when the comment is not ours. */
bool cf_comment_uid(const char *comment, char *buf, size_t n);

/* Parses one record object (borrowed) into *ret (contents new). -EBADMSG. */
int cf_parse_record(const json_t *o, CfRecord *ret) _must_check_;

/* Parses one page of a listing: appends the records to *list (growing it,
 * at most CF_MAX_RECORDS) and reports result_info.total_pages (computed
 * from total_count and per_page when absent; 1 when there is no
 * result_info). The envelope must say success. 0, -EBADMSG, -E2BIG. On
 * failure *list keeps the records of earlier pages (the caller drops the
 * whole listing). */
int cf_parse_page(const char *body, size_t len, CfRecordList *list,
                  int64_t *ret_total_pages) _must_check_;

/* Reads an error envelope: the first errors[] code and message. */
void cf_parse_error(const char *body, size_t len, int *ret_code, char *msg, size_t n);

/* The JSON body of a create/PUT (or PATCH: the same fields) into b. */
int cf_record_body(const CfRecordSpec *s, Buf *b) _must_check_;

/* True when r already has what s asks (type, name, content or SRV data,
 * ttl, proxied, comment). */
bool cf_record_matches(const CfRecord *r, const CfRecordSpec *s);

/* --- the client ---------------------------------------------------------------------- */

typedef struct CfClient CfClient;

typedef struct CfClientOptions {
	const char *api_url; /* borrowed, copied: ".../client/v4" */
	const char *zone_id; /* borrowed, copied */
	const char *token; /* borrowed, copied; never logged */
	HttpOptions http; /* copied; timeout 0 = 30 s; max_body 0 = CF_MAX_BODY */
	int64_t per_page; /* 0 = CF_PER_PAGE_DEFAULT */
	int64_t max_pages; /* 0 = CF_MAX_PAGES */
} CfClientOptions;

CfClient *cf_client_new(const CfClientOptions *o);
CfClient *cf_client_free(CfClient *c);
DEFINE_TRIVIAL_CLEANUP_FUNC(CfClient *, cf_client_free)
#define _cleanup_cf_client_ _cleanup_(cf_client_freep)

/* Number of HTTP requests the client made (every page counts). */
int64_t cf_client_requests(const CfClient *c);

/* Lists every record of the zone, following result_info.total_pages (at
 * most max_pages; more is -E2BIG). before_page (may be NULL) is called
 * before each page with its number (a request budget: rate limiting); a
 * negative return ends the listing with that error. 0 and *ret (new), or
 * -errno: a listing that failed on any page is unknown, never partial. */
int cf_list_records(CfClient *c, int (*before_page)(void *ctx, int64_t page), void *ctx,
                    CfRecordList *ret, CfError *err) _must_check_;

/* POST (fresh connection). 0 and *ret_or_NULL (contents new: the created
 * record, with its id) or -errno. */
int cf_create_record(CfClient *c, const CfRecordSpec *s, CfRecord *ret_or_NULL,
                     CfError *err) _must_check_;

/* PATCH id (borrowed) with every field of s. 0 and *ret_or_NULL, or -errno
 * (-ENOENT: the record is gone). */
int cf_patch_record(CfClient *c, const char *id, const CfRecordSpec *s, CfRecord *ret_or_NULL,
                    CfError *err) _must_check_;

/* DELETE id. 0 deleted, 1 it did not exist (404), or -errno. */
int cf_delete_record(CfClient *c, const char *id, CfError *err) _must_check_;
