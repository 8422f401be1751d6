/* Unit tests for reconcilers/cloudflare: the pure parts of the Cloudflare
 * DNS v4 client - record and page parsing (pagination info, whole or
 * nothing), error envelopes and their classification, request bodies,
 * names, the ownership comment, record comparison - without any network.
 * The wire is covered against zlh-sim by test/integration/itest-dns.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "reconcilers/cloudflare.h"

#define UID "3f2a9c1e-5b7d-4e8f-9a0b-1c2d3e4f5a6b"

static const char A_REC[] =
    "{\"id\":\"372e67954025e0ba6aaa6d586b9e0b59\",\"zone_id\":\"023e105f4ecef8ad9ca31a8372d0c353\","
    "\"zone_name\":\"example.net\",\"name\":\"Survival-01.Example.NET.\",\"type\":\"A\","
    "\"content\":\"203.0.113.10\",\"proxiable\":true,\"proxied\":false,\"ttl\":60,"
    "\"settings\":{},\"meta\":{\"auto_added\":false},\"comment\":\"zlh:uid=" UID "\","
    "\"tags\":[],\"created_on\":\"2024-08-06T10:00:01.500Z\","
    "\"modified_on\":\"2024-08-06T10:00:01.500Z\"}";

static const char SRV_REC[] =
    "{\"id\":\"aaaa67954025e0ba6aaa6d586b9e0b59\",\"name\":\"_minecraft._tcp.survival-01.example."
    "net\","
    "\"type\":\"SRV\",\"content\":\"0 25565 survival-01.example.net\",\"proxied\":false,"
    "\"ttl\":60,\"comment\":null,\"priority\":0,"
    "\"data\":{\"priority\":0,\"weight\":0,\"port\":25565,\"target\":\"Survival-01.example.net.\"},"
    "\"created_on\":\"2024-08-06T10:00:00Z\"}";

static json_t *jl(const char *s)
{
	json_error_t e;
	json_t *j = json_loads(s, 0, &e);
	if (!j)
		fail_msg("bad test JSON: %s", e.text);
	return j;
}

/* --- records ------------------------------------------------------------------- */

static void record__a__parsed_and_normalized(void **state)
{
	(void)state;
	json_t *j = jl(A_REC);
	CfRecord r;
	assert_int_equal(cf_parse_record(j, &r), 0);
	assert_string_equal(r.id, "372e67954025e0ba6aaa6d586b9e0b59");
	assert_int_equal(r.type, CF_TYPE_A);
	assert_string_equal(r.type_name, "A");
	assert_string_equal(r.name, "survival-01.example.net"); /* lower-case, no dot */
	assert_string_equal(r.content, "203.0.113.10");
	assert_string_equal(r.comment, "zlh:uid=" UID);
	assert_int_equal(r.ttl, 60);
	assert_false(r.proxied);
	assert_false(r.has_srv);
	assert_int_equal(r.created_ms, 1722938401500LL);
	cf_record_clear(&r);
	cf_record_clear(&r);
	json_decref(j);
}

static void record__srv__data_parsed_comment_null(void **state)
{
	(void)state;
	json_t *j = jl(SRV_REC);
	CfRecord r;
	assert_int_equal(cf_parse_record(j, &r), 0);
	assert_int_equal(r.type, CF_TYPE_SRV);
	assert_true(r.has_srv);
	assert_int_equal(r.srv.priority, 0);
	assert_int_equal(r.srv.weight, 0);
	assert_int_equal(r.srv.port, 25565);
	assert_string_equal(r.srv.target, "survival-01.example.net");
	assert_null(r.comment);
	assert_int_equal(r.created_ms, 1722938400000LL);
	cf_record_clear(&r);
	json_decref(j);
}

static void record__other_types__kept_as_other(void **state)
{
	(void)state;
	json_t *j = jl("{\"id\":\"abc1\",\"name\":\"example.net\",\"type\":\"TXT\","
	               "\"content\":\"v=spf1 -all\",\"ttl\":1}");
	CfRecord r;
	assert_int_equal(cf_parse_record(j, &r), 0);
	assert_int_equal(r.type, CF_TYPE_OTHER);
	assert_string_equal(r.type_name, "TXT");
	assert_int_equal(r.ttl, 1);
	cf_record_clear(&r);
	json_decref(j);
	assert_int_equal(cf_type_from_string("CNAME"), CF_TYPE_CNAME);
	assert_int_equal(cf_type_from_string("AAAA"), CF_TYPE_AAAA);
	assert_int_equal(cf_type_from_string("a"), CF_TYPE_OTHER);
	assert_int_equal(cf_type_from_string(NULL), _CF_TYPE_INVALID);
	assert_string_equal(cf_type_to_string(CF_TYPE_SRV), "SRV");
}

static void record__malformed__ebadmsg(void **state)
{
	(void)state;
	static const char *const bad[] = {
	    "[]",
	    "{\"name\":\"a\",\"type\":\"A\"}", /* no id */
	    "{\"id\":\"a/b\",\"name\":\"a\",\"type\":\"A\"}", /* id not a path segment */
	    "{\"id\":\"ab\",\"type\":\"A\"}", /* no name */
	    "{\"id\":\"ab\",\"name\":\"a\"}", /* no type */
	    "{\"id\":\"ab\",\"name\":\"\",\"type\":\"A\"}", /* empty name */
	    "{\"id\":\"ab\",\"name\":\"a\",\"type\":\"A\",\"ttl\":\"60\"}",
	    "{\"id\":\"ab\",\"name\":\"a\",\"type\":\"A\",\"proxied\":1}",
	    "{\"id\":\"ab\",\"name\":\"a\",\"type\":\"A\",\"comment\":5}",
	    "{\"id\":\"ab\",\"name\":\"a\",\"type\":\"SRV\",\"data\":{\"priority\":0,"
	    "\"weight\":0,\"port\":70000,\"target\":\"x\"}}",
	    "{\"id\":\"ab\",\"name\":\"a\",\"type\":\"SRV\",\"data\":{\"priority\":0,"
	    "\"weight\":0,\"port\":1}}",
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		json_t *j = jl(bad[i]);
		CfRecord r = {.ttl = 777};
		if (cf_parse_record(j, &r) != -EBADMSG)
			fail_msg("case %zu accepted: %s", i, bad[i]);
		assert_int_equal(r.ttl, 777);
		json_decref(j);
	}
}

/* --- pages ----------------------------------------------------------------------- */

static void page__result_info__total_pages_followed(void **state)
{
	(void)state;
	char body[4096];
	snprintf(body, sizeof body,
	         "{\"success\":true,\"errors\":[],\"messages\":[],\"result\":[%s,%s],"
	         "\"result_info\":{\"page\":1,\"per_page\":2,\"count\":2,\"total_count\":5,"
	         "\"total_pages\":3}}",
	         A_REC, SRV_REC);
	CfRecordList l = {0};
	int64_t pages = 0;
	assert_int_equal(cf_parse_page(body, strlen(body), &l, &pages), 0);
	assert_int_equal(pages, 3);
	assert_int_equal(l.n, 2);
	/* A second page appends. */
	assert_int_equal(cf_parse_page(body, strlen(body), &l, &pages), 0);
	assert_int_equal(l.n, 4);
	assert_int_equal(l.items[2].type, CF_TYPE_A);
	cf_record_list_clear(&l);
	cf_record_list_clear(&l);
}

static void page__no_total_pages__computed_from_count(void **state)
{
	(void)state;
	const char *b = "{\"success\":true,\"result\":[],\"result_info\":{\"page\":1,"
	                "\"per_page\":100,\"count\":0,\"total_count\":250}}";
	CfRecordList l = {0};
	int64_t pages = 0;
	assert_int_equal(cf_parse_page(b, strlen(b), &l, &pages), 0);
	assert_int_equal(pages, 3);
	const char *none = "{\"success\":true,\"result\":[]}";
	assert_int_equal(cf_parse_page(none, strlen(none), &l, &pages), 0);
	assert_int_equal(pages, 1);
	assert_int_equal(l.n, 0);
}

static void page__failure_or_malformed__ebadmsg(void **state)
{
	(void)state;
	static const char *const bad[] = {
	    "",
	    "{\"success\":false,\"errors\":[{\"code\":10000,\"message\":\"Authentication "
	    "error\"}],\"result\":null}",
	    "{\"success\":true,\"result\":{}}",
	    "{\"result\":[]}",
	    "{\"success\":true,\"result\":[],\"result_info\":{\"total_pages\":\"3\"}}",
	    "{\"success\":true,\"result\":[{\"id\":\"x\"}]}",
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		CfRecordList l = {0};
		int64_t pages = -7;
		if (cf_parse_page(bad[i], strlen(bad[i]), &l, &pages) != -EBADMSG)
			fail_msg("case %zu accepted", i);
		assert_int_equal(pages, -7);
		cf_record_list_clear(&l);
	}
}

/* --- errors ----------------------------------------------------------------------------- */

static void error__envelope__code_and_message(void **state)
{
	(void)state;
	const char *b = "{\"success\":false,\"errors\":[{\"code\":81058,\"message\":\"An identical "
	                "record already exists.\"}],\"messages\":[],\"result\":null}";
	int code = 0;
	char msg[128];
	cf_parse_error(b, strlen(b), &code, msg, sizeof msg);
	assert_int_equal(code, 81058);
	assert_string_equal(msg, "An identical record already exists.");
	cf_parse_error("Bad gateway\n<html>", 18, &code, msg, sizeof msg);
	assert_int_equal(code, 0);
	assert_string_equal(msg, "Bad gateway");
	cf_parse_error(NULL, 0, &code, msg, sizeof msg);
	assert_string_equal(msg, "");
}

static void classify__statuses_and_codes__errno_table(void **state)
{
	(void)state;
	assert_int_equal(cf_classify(200, 0), 0);
	assert_int_equal(cf_classify(429, 971), -EAGAIN);
	assert_int_equal(cf_classify(503, 0), -EAGAIN);
	assert_int_equal(cf_classify(404, 81044), -ENOENT);
	assert_int_equal(cf_classify(400, 81058), -EEXIST);
	assert_int_equal(cf_classify(400, 81053), -EEXIST);
	assert_int_equal(cf_classify(400, 81054), -EEXIST);
	assert_int_equal(cf_classify(403, 10000), -EACCES);
	assert_int_equal(cf_classify(401, 0), -EACCES);
	assert_int_equal(cf_classify(403, 9109), -EPERM);
	assert_int_equal(cf_classify(400, 9106), -EINVAL);
	assert_int_equal(cf_classify(400, 7003), -EINVAL);
	assert_int_equal(cf_classify(500, 10000), -EREMOTEIO);
	assert_int_equal(cf_classify(502, 0), -EREMOTEIO);
}

/* --- names, comments ---------------------------------------------------------------------- */

static void comment__ours__uid_extracted(void **state)
{
	(void)state;
	char uid[64];
	assert_true(cf_comment_uid("zlh:uid=" UID, uid, sizeof uid));
	assert_string_equal(uid, UID);
	assert_true(cf_comment_uid("zlh:uid=ABC; made by zlh", uid, sizeof uid));
	assert_string_equal(uid, "abc");
	assert_false(cf_comment_uid("uid=" UID, uid, sizeof uid));
	assert_false(cf_comment_uid("Domain verification record", uid, sizeof uid));
	assert_false(cf_comment_uid("zlh:uid=", uid, sizeof uid));
	assert_false(cf_comment_uid(NULL, uid, sizeof uid));
	assert_false(cf_comment_uid(" zlh:uid=" UID, uid, sizeof uid));
	char small[8];
	assert_false(cf_comment_uid("zlh:uid=" UID, small, sizeof small));
}

static void name__normalize__lower_no_trailing_dot(void **state)
{
	(void)state;
	char b[32];
	assert_int_equal(cf_name_normalize("MC1.Example.NET.", b, sizeof b), 0);
	assert_string_equal(b, "mc1.example.net");
	assert_int_equal(cf_name_normalize("", b, sizeof b), -EINVAL);
	assert_int_equal(cf_name_normalize(".", b, sizeof b), -EINVAL);
	assert_int_equal(cf_name_normalize("a-very-long-name.example.net", b, 8), -ENOBUFS);
}

/* --- bodies and matching ---------------------------------------------------------------------- */

static CfRecordSpec a_spec(void)
{
	return (CfRecordSpec){.type = CF_TYPE_A,
	                      .name = "survival-01.example.net",
	                      .content = "203.0.113.10",
	                      .ttl = 60,
	                      .proxied = false,
	                      .comment = "zlh:uid=" UID};
}

static CfRecordSpec srv_spec(void)
{
	CfRecordSpec s = {.type = CF_TYPE_SRV,
	                  .name = "_minecraft._tcp.survival-01.example.net",
	                  .ttl = 60,
	                  .comment = "zlh:uid=" UID,
	                  .srv = {.priority = 0, .weight = 0, .port = 25565}};
	snprintf(s.srv.target, sizeof s.srv.target, "survival-01.example.net");
	return s;
}

static void body__a_and_srv__contract_fields(void **state)
{
	(void)state;
	CfRecordSpec a = a_spec();
	_cleanup_buf_ Buf b = BUF_INIT;
	assert_int_equal(cf_record_body(&a, &b), 0);
	assert_string_equal(b.data, "{\"comment\":\"zlh:uid=" UID "\",\"content\":\"203.0.113.10\","
	                            "\"name\":\"survival-01.example.net\",\"proxied\":false,"
	                            "\"ttl\":60,\"type\":\"A\"}");
	CfRecordSpec s = srv_spec();
	_cleanup_buf_ Buf c = BUF_INIT;
	assert_int_equal(cf_record_body(&s, &c), 0);
	assert_string_equal(
	    c.data, "{\"comment\":\"zlh:uid=" UID "\",\"data\":{\"port\":25565,\"priority\":0,"
	            "\"target\":\"survival-01.example.net\",\"weight\":0},"
	            "\"name\":\"_minecraft._tcp.survival-01.example.net\",\"ttl\":60,"
	            "\"type\":\"SRV\"}");
	_cleanup_buf_ Buf x = BUF_INIT;
	CfRecordSpec bad = a;
	bad.content = NULL;
	assert_int_equal(cf_record_body(&bad, &x), -EINVAL);
	bad = a;
	bad.ttl = 0;
	assert_int_equal(cf_record_body(&bad, &x), -EINVAL);
	bad = s;
	bad.srv.target[0] = 0;
	assert_int_equal(cf_record_body(&bad, &x), -EINVAL);
	bad = s;
	bad.proxied = true; /* SRV cannot be proxied */
	assert_int_equal(cf_record_body(&bad, &x), -EINVAL);
	bad = a;
	bad.type = CF_TYPE_OTHER;
	assert_int_equal(cf_record_body(&bad, &x), -EINVAL);
	assert_int_equal(x.len, 0);
}

static void matches__each_field__compared(void **state)
{
	(void)state;
	json_t *ja = jl(A_REC), *js = jl(SRV_REC);
	CfRecord a, s;
	assert_int_equal(cf_parse_record(ja, &a), 0);
	assert_int_equal(cf_parse_record(js, &s), 0);
	CfRecordSpec as = a_spec(), ss = srv_spec();
	assert_true(cf_record_matches(&a, &as));
	CfRecordSpec x = as;
	x.content = "203.0.113.11";
	assert_false(cf_record_matches(&a, &x));
	x = as;
	x.ttl = 1;
	assert_false(cf_record_matches(&a, &x));
	x = as;
	x.proxied = true;
	assert_false(cf_record_matches(&a, &x));
	x = as;
	x.name = "other.example.net";
	assert_false(cf_record_matches(&a, &x));
	x = as;
	x.comment = "zlh:uid=someone-else";
	assert_false(cf_record_matches(&a, &x));
	assert_false(cf_record_matches(&a, &ss)); /* type */
	/* The SRV record lacks our comment. */
	assert_false(cf_record_matches(&s, &ss));
	x = ss;
	x.comment = NULL;
	assert_true(cf_record_matches(&s, &x));
	x.srv.port = 25566;
	assert_false(cf_record_matches(&s, &x));
	cf_record_clear(&a);
	cf_record_clear(&s);
	json_decref(ja);
	json_decref(js);
}

static void client__options__validated(void **state)
{
	(void)state;
	CfClientOptions o = {.api_url = "http://127.0.0.1:1/client/v4/",
	                     .zone_id = "023e105f4ecef8ad9ca31a8372d0c353",
	                     .token = "t"};
	CfClient *c = cf_client_new(&o);
	assert_non_null(c);
	CfRecordList l = {0};
	CfError err = {0};
	int r = cf_list_records(c, NULL, NULL, &l, &err);
	assert_true(r == -ECONNREFUSED || r == -EHOSTUNREACH);
	assert_int_equal(cf_client_requests(c), 1);
	assert_int_equal(cf_delete_record(c, "../x", &err), -EINVAL);
	assert_int_equal(cf_client_requests(c), 1); /* refused before any request */
	cf_client_free(c);
	o.zone_id = "../zones";
	assert_null(cf_client_new(&o));
	o.zone_id = "abc";
	o.token = "a\nb";
	assert_null(cf_client_new(&o));
	assert_null(cf_client_free(NULL));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(record__a__parsed_and_normalized),
	    cmocka_unit_test(record__srv__data_parsed_comment_null),
	    cmocka_unit_test(record__other_types__kept_as_other),
	    cmocka_unit_test(record__malformed__ebadmsg),
	    cmocka_unit_test(page__result_info__total_pages_followed),
	    cmocka_unit_test(page__no_total_pages__computed_from_count),
	    cmocka_unit_test(page__failure_or_malformed__ebadmsg),
	    cmocka_unit_test(error__envelope__code_and_message),
	    cmocka_unit_test(classify__statuses_and_codes__errno_table),
	    cmocka_unit_test(comment__ours__uid_extracted),
	    cmocka_unit_test(name__normalize__lower_no_trailing_dot),
	    cmocka_unit_test(body__a_and_srv__contract_fields),
	    cmocka_unit_test(matches__each_field__compared),
	    cmocka_unit_test(client__options__validated),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
