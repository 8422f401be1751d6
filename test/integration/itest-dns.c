/* Integration tests of the DNS reconciler (reconcilers/dns.c) and the
 * Cloudflare client against zlh-sim's zone and a real PostgreSQL journal:
 * the A and SRV records of the contract, pagination, lost create replies
 * (adopted from the listing: exactly one record of each type, by the sim's
 * high-water marks), many servers under lost replies, foreign records and
 * a colliding name never touched, duplicates removed, drift patched, 429
 * with Retry-After honoured without further calls, an unknown listing
 * deciding nothing, crash points at every step. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "reconcilers/cloudflare.h"
#include "reconcilers/dns.h"
#include "test/integration/itest-proxy-harness.h"

static Harness H;

#define U(n) "8a000000-0000-4000-8000-0000000000" n

static CfClient *client(int64_t per_page)
{
	CfClientOptions o = {.api_url = H.cfg->dns.api_url,
	                     .zone_id = H.cfg->dns.zone_id,
	                     .token = H.cfg->dns.token,
	                     .per_page = per_page};
	CfClient *c = cf_client_new(&o);
	assert_non_null(c);
	return c;
}

static CfRecordList list_all(void)
{
	_cleanup_cf_client_ CfClient *c = client(0);
	CfRecordList l = {0};
	CfError err = {0};
	assert_int_equal(cf_list_records(c, NULL, NULL, &l, &err), 0);
	return l;
}

/* Records of type t named name (case-insensitive) whose comment is
 * "zlh:uid=<uid>" (uid NULL: any comment). */
static int count_records(const char *type, const char *name, const char *uid)
{
	CfRecordList l = list_all();
	int n = 0;
	char want[128];
	snprintf(want, sizeof want, "zlh:uid=%s", uid ? uid : "");
	for (size_t i = 0; i < l.n; i++)
		if (strcmp(l.items[i].type_name, type) == 0 &&
		    strcasecmp(l.items[i].name, name) == 0 &&
		    (!uid || (l.items[i].comment && strcmp(l.items[i].comment, want) == 0)))
			n++;
	cf_record_list_clear(&l);
	return n;
}

static void fqdn(const char *host, char *a, char *srv, size_t n)
{
	snprintf(a, n, "%s.%s", host, H.cfg->dns.zone_name);
	snprintf(srv, n, "_minecraft._tcp.%s.%s", host, H.cfg->dns.zone_name);
}

/* The sim's high-water mark of records of "<TYPE> <fqdn>". */
static int64_t rec_max(const char *type, const char *name)
{
	_cleanup_json_ json_t *st = h_stats(&H);
	char key[300];
	snprintf(key, sizeof key, "%s %s", type, name);
	json_t *d = json_object_get(json_object_get(st, "duplicates"), "dns_records_per_name_type");
	return json_integer_value(json_object_get(json_object_get(d, key), "max"));
}

static int64_t effects(const char *key)
{
	_cleanup_json_ json_t *st = h_stats(&H);
	return h_stat(st, "side_effects", key, NULL);
}

static int64_t cf_requests(void)
{
	_cleanup_json_ json_t *st = h_stats(&H);
	return h_stat(st, "requests", "by_system", "cloudflare");
}

static void make_foreign(CfType t, const char *name, const char *content, const char *comment,
                         char *ret_id)
{
	_cleanup_cf_client_ CfClient *c = client(0);
	CfRecordSpec s = {
	    .type = t, .name = name, .content = content, .ttl = 300, .comment = comment};
	CfRecord r = {0};
	CfError err = {0};
	int k = cf_create_record(c, &s, &r, &err);
	if (k < 0)
		fail_msg("create %s: %d %s", name, k, err.message);
	if (ret_id)
		snprintf(ret_id, CF_ID_MAX, "%s", r.id);
	cf_record_clear(&r);
}

/* Every converged pass of a published server: both records, exactly one
 * each, ever. */
static void assert_published_once(const char *uid, const char *host)
{
	char a[256], srv[256];
	fqdn(host, a, srv, sizeof a);
	assert_int_equal(count_records("A", a, uid), 1);
	assert_int_equal(count_records("SRV", srv, uid), 1);
	assert_int_equal(rec_max("A", a), 1);
	assert_int_equal(rec_max("SRV", srv), 1);
	assert_int_equal(h_open_ops(&H, uid), 0);
}

static int test_setup(void **state)
{
	(void)state;
	g_hooks = (HookState){.lease_ok = true};
	long st = h_ctl(&H, "DELETE", "/_sim/faults", NULL, NULL);
	return st == 200 ? 0 : -1;
}

/* --- client ------------------------------------------------------------------------------------ */

static int count_page(void *ctx, int64_t page)
{
	(void)page;
	(*(int *)ctx)++;
	return 0;
}

static void client__pagination__every_page_followed(void **state)
{
	(void)state;
	for (int i = 0; i < 7; i++) {
		char name[64];
		snprintf(name, sizeof name, "page-%d.%s", i, H.cfg->dns.zone_name);
		make_foreign(CF_TYPE_A, name, "192.0.2.7", NULL, NULL);
	}
	CfRecordList all = list_all();
	assert_true(all.n >= 7);
	_cleanup_cf_client_ CfClient *c = client(3);
	CfRecordList l = {0};
	CfError err = {0};
	int pages = 0;
	assert_int_equal(cf_list_records(c, count_page, &pages, &l, &err), 0);
	assert_int_equal(l.n, all.n);
	assert_int_equal(pages, (int)((all.n + 2) / 3));
	assert_int_equal(cf_client_requests(c), pages);
	cf_record_list_clear(&l);
	cf_record_list_clear(&all);

	/* A wrong token is an error, never an empty zone. */
	CfClientOptions o = {
	    .api_url = H.cfg->dns.api_url, .zone_id = H.cfg->dns.zone_id, .token = "wrong"};
	_cleanup_cf_client_ CfClient *b = cf_client_new(&o);
	assert_int_equal(cf_list_records(b, NULL, NULL, &l, &err), -EACCES);
	assert_int_equal(err.http_status, 403);
	/* Delete of a record that does not exist: already gone. */
	assert_int_equal(cf_delete_record(c, "0123456789abcdef0123456789abcdef", &err), 1);
}

/* --- reconciler ------------------------------------------------------------------------------------ */

static void dns__published_server__a_and_srv_ready(void **state)
{
	(void)state;
	Recon r;
	tr_open(&H, &recon_dns, &r);
	RuntimeServer *srv = h_server("GameServer", U("01"), "dns-one", "127.60.0.21", false);
	PassResult pr = tr_pass(&r, srv);
	assert_int_equal(pr.acted, 2);
	assert_string_equal(pr.actions[0], "dns-create");
	assert_string_equal(pr.actions[1], "dns-create");
	assert_int_equal(tr_converge(&r, srv, 2, &pr), 0);
	assert_int_equal(pr.cond.status, COND_TRUE);
	assert_string_equal(pr.cond.reason, "Ready");
	assert_published_once(U("01"), "dns-one");

	/* The records are the contract's. */
	char a[256], s[256];
	fqdn("dns-one", a, s, sizeof a);
	CfRecordList l = list_all();
	for (size_t i = 0; i < l.n; i++) {
		CfRecord *x = &l.items[i];
		if (strcmp(x->name, a) == 0 && x->type == CF_TYPE_A) {
			assert_string_equal(x->content, H.cfg->dns.edge_ipv4);
			assert_int_equal(x->ttl, 60);
			assert_false(x->proxied);
		}
		if (strcmp(x->name, s) == 0) {
			assert_int_equal(x->type, CF_TYPE_SRV);
			assert_true(x->has_srv);
			assert_int_equal(x->srv.priority, 0);
			assert_int_equal(x->srv.weight, 0);
			assert_int_equal(x->srv.port, 25565);
			assert_string_equal(x->srv.target, a);
		}
	}
	cf_record_list_clear(&l);

	/* Delete: the finalizer removes ours, then is done. */
	srv->deleting = true;
	pr = tr_pass(&r, srv);
	assert_int_equal(pr.acted, 2);
	assert_int_equal(tr_converge(&r, srv, 2, &pr), 0);
	assert_string_equal(pr.cond.reason, "Deleted");
	assert_int_equal(count_records("A", a, NULL), 0);
	assert_int_equal(count_records("SRV", s, NULL), 0);
	runtime_server_free(srv);
	tr_close(&r);
}

static void dns__lost_create_replies__adopted_exactly_one_each(void **state)
{
	(void)state;
	Recon r;
	tr_open(&H, &recon_dns, &r);
	RuntimeServer *srv = h_server("GameServer", U("02"), "dns-lost", "127.60.0.22", false);
	int64_t before = effects("dns.create");
	h_fault(&H, "{\"system\":\"cloudflare\",\"method\":\"POST\",\"lost_rate\":1,\"count\":2}");
	PassResult pr = tr_pass(&r, srv);
	assert_int_equal(pr.acted, 0);
	assert_true(pr.failed_r < 0);
	assert_non_null(strstr(pr.error, "outcome unknown"));
	pr = tr_pass(&r, srv); /* A adopted from the listing, SRV reply lost */
	assert_string_equal(pr.actions[0], "settle-dns");
	assert_string_equal(pr.actions[1], "dns-create");
	assert_true(pr.failed_r < 0);
	pr = tr_pass(&r, srv); /* SRV adopted */
	assert_int_equal(pr.planned, 1);
	assert_string_equal(pr.actions[0], "settle-dns");
	assert_int_equal(tr_converge(&r, srv, 2, &pr), 0);
	assert_string_equal(pr.cond.reason, "Ready");
	assert_int_equal(effects("dns.create") - before, 2);
	assert_published_once(U("02"), "dns-lost");
	size_t done = 0;
	assert_int_equal(h_ops_of(&H, U("02"), "dns-create", &done), 2);
	assert_int_equal(done, 2);
	runtime_server_free(srv);
	tr_close(&r);
}

static void dns__many_servers_with_lost_replies__one_record_per_type(void **state)
{
	(void)state;
	enum { N = 10 };
	Recon r;
	tr_open(&H, &recon_dns, &r);
	h_fault(&H, "{\"system\":\"cloudflare\",\"method\":\"POST\",\"lost_rate\":0.3}");
	RuntimeServer *srv[N];
	char uids[N][64];
	for (int i = 0; i < N; i++) {
		char host[32], ip[32];
		snprintf(uids[i], sizeof uids[i], "8b000000-0000-4000-8000-0000000000%02d", i);
		snprintf(host, sizeof host, "dns-many-%02d", i);
		snprintf(ip, sizeof ip, "127.60.3.%d", 10 + i);
		srv[i] = h_server("GameServer", uids[i], host, ip, false);
	}
	/* Round-robin passes, like a resync over every server. */
	bool all = false;
	for (int round = 0; round < 12 && !all; round++) {
		all = true;
		for (int i = 0; i < N; i++) {
			PassResult pr = tr_pass(&r, srv[i]);
			all &= pr.planned == 0 && pr.cond.status == COND_TRUE;
		}
	}
	assert_true(all);
	_cleanup_json_ json_t *st = h_stats(&H);
	assert_true(h_stat(st, "faults", "lost", NULL) > 0);
	for (int i = 0; i < N; i++) {
		assert_published_once(uids[i], srv[i]->hostname);
		runtime_server_free(srv[i]);
	}
	tr_close(&r);
}

static void dns__foreign_records__never_touched(void **state)
{
	(void)state;
	char a[256], s[256], n1[256], n2[256];
	fqdn("dns-foreign", a, s, sizeof a);
	snprintf(n1, sizeof n1, "www.%s", H.cfg->dns.zone_name);
	snprintf(n2, sizeof n2, "api.%s", H.cfg->dns.zone_name);
	char www[CF_ID_MAX], api[CF_ID_MAX], col[CF_ID_MAX];
	make_foreign(CF_TYPE_CNAME, n1, H.cfg->dns.zone_name, NULL, www);
	make_foreign(CF_TYPE_A, n2, "192.0.2.10", "production api", api);
	/* A hand-made record at the server's own name. */
	make_foreign(CF_TYPE_A, a, "192.0.2.99", NULL, col);
	CfRecordList before = list_all();

	Recon r;
	tr_open(&H, &recon_dns, &r);
	RuntimeServer *srv = h_server("GameServer", U("03"), "dns-foreign", "127.60.0.23", false);
	PassResult pr;
	assert_true(tr_converge(&r, srv, 3, &pr) >= 0);
	assert_int_equal(pr.cond.status, COND_FALSE);
	assert_string_equal(pr.cond.reason, "Conflict");
	assert_non_null(strstr(pr.cond.message, col));
	assert_int_equal(count_records("A", a, U("03")), 0); /* not created beside it */
	assert_int_equal(count_records("SRV", s, U("03")), 1);

	srv->deleting = true;
	assert_true(tr_converge(&r, srv, 3, &pr) >= 0);
	assert_string_equal(pr.cond.reason, "Deleted");
	assert_int_equal(count_records("SRV", s, NULL), 0);

	/* Every record that existed before is there, unchanged. */
	CfRecordList after = list_all();
	for (size_t i = 0; i < before.n; i++) {
		const CfRecord *b = &before.items[i];
		bool found = false;
		for (size_t j = 0; j < after.n && !found; j++) {
			const CfRecord *x = &after.items[j];
			if (strcmp(b->id, x->id) != 0)
				continue;
			found = true;
			assert_string_equal(b->name, x->name);
			assert_string_equal(b->content, x->content);
			assert_int_equal(b->ttl, x->ttl);
		}
		if (!found)
			fail_msg("record %s (%s) vanished", b->id, b->name);
	}
	cf_record_list_clear(&before);
	cf_record_list_clear(&after);
	runtime_server_free(srv);
	tr_close(&r);
}

static void dns__duplicates_and_drift__converge_to_one_correct(void **state)
{
	(void)state;
	char a[256], s[256], comment[80];
	fqdn("dns-dup", a, s, sizeof a);
	snprintf(comment, sizeof comment, "zlh:uid=%s", U("04"));
	/* Two A records carrying our comment (different content: the API
	 * refuses identical ones). */
	make_foreign(CF_TYPE_A, a, "198.51.100.1", comment, NULL);
	make_foreign(CF_TYPE_A, a, "198.51.100.2", comment, NULL);

	Recon r;
	tr_open(&H, &recon_dns, &r);
	RuntimeServer *srv = h_server("GameServer", U("04"), "dns-dup", "127.60.0.24", false);
	PassResult pr = tr_pass(&r, srv);
	assert_string_equal(pr.actions[0], "dns-delete");
	assert_string_equal(pr.actions[1], "dns-update");
	assert_string_equal(pr.actions[2], "dns-create");
	assert_int_equal(tr_converge(&r, srv, 3, &pr), 0);
	assert_string_equal(pr.cond.reason, "Ready");
	assert_int_equal(count_records("A", a, U("04")), 1);
	assert_int_equal(count_records("SRV", s, U("04")), 1);

	/* The edge address changes: the record is patched in place. */
	char *old = H.cfg->dns.edge_ipv4;
	H.cfg->dns.edge_ipv4 = strdup("203.0.113.77");
	pr = tr_pass(&r, srv);
	assert_int_equal(pr.acted, 1);
	assert_string_equal(pr.actions[0], "dns-update");
	assert_int_equal(tr_converge(&r, srv, 2, NULL), 0);
	CfRecordList l = list_all();
	int seen = 0;
	for (size_t i = 0; i < l.n; i++)
		if (strcmp(l.items[i].name, a) == 0) {
			assert_string_equal(l.items[i].content, "203.0.113.77");
			seen++;
		}
	assert_int_equal(seen, 1);
	cf_record_list_clear(&l);
	free(H.cfg->dns.edge_ipv4);
	H.cfg->dns.edge_ipv4 = old;
	srv->deleting = true;
	assert_true(tr_converge(&r, srv, 3, NULL) >= 0);
	assert_int_equal(h_open_ops(&H, U("04")), 0);
	runtime_server_free(srv);
	tr_close(&r);
}

static void dns__rate_limited__retry_after_honoured(void **state)
{
	(void)state;
	Recon r;
	tr_open(&H, &recon_dns, &r);
	RuntimeServer *srv = h_server("GameServer", U("05"), "dns-429", "127.60.0.25", false);
	/* Two requests, then 429 with Retry-After: 1 for 1.5 s. */
	assert_int_equal(h_ctl(&H, "POST", "/_sim/cloudflare/ratelimit",
	                       "{\"limit\":2,\"window_ms\":600000,\"penalty_ms\":1500}", NULL),
	                 200);
	int64_t t0 = now_mono_ms();
	PassResult pr = tr_pass(&r, srv); /* list (1), create A (2), create SRV: 429 */
	assert_int_equal(pr.observe_r, 0);
	assert_int_equal(pr.acted, 2);
	assert_true(pr.requeue_after_ms > 0 && pr.requeue_after_ms <= 2000);
	assert_int_equal(h_ctl(&H, "POST", "/_sim/cloudflare/ratelimit", "{\"limit\":0}", NULL),
	                 200);
	/* While Retry-After runs: no call at all, no decision. */
	int64_t calls = cf_requests();
	pr = tr_pass(&r, srv);
	if (now_mono_ms() - t0 < 1000) {
		assert_int_equal(pr.observe_r, -EAGAIN);
		assert_int_equal(cf_requests(), calls);
	}
	/* After it: converges (bounded wait). */
	int64_t deadline = now_mono_ms() + 5000;
	int passes = -1;
	while (now_mono_ms() < deadline && passes < 0) {
		passes = tr_converge(&r, srv, 3, &pr);
		if (passes < 0) {
			struct timespec ts = {0, 100 * 1000000L};
			nanosleep(&ts, NULL);
		}
	}
	assert_true(passes >= 0);
	assert_true(now_mono_ms() - t0 >= 1000); /* Retry-After: 1 s */
	assert_string_equal(pr.cond.reason, "Ready");
	assert_published_once(U("05"), "dns-429");
	runtime_server_free(srv);
	tr_close(&r);
}

static void dns__listing_fails__no_decision(void **state)
{
	(void)state;
	Recon r;
	tr_open(&H, &recon_dns, &r);
	RuntimeServer *srv = h_server("GameServer", U("06"), "dns-unknown", "127.60.0.26", false);
	assert_true(tr_converge(&r, srv, 3, NULL) >= 0);
	srv->deleting = true;
	h_fault(&H, "{\"system\":\"cloudflare\",\"method\":\"GET\",\"error_rate\":1,\"count\":1}");
	int64_t del = effects("dns.delete");
	PassResult pr = tr_pass(&r, srv);
	assert_true(pr.observe_r < 0); /* unknown, never "empty" */
	assert_int_equal(pr.planned, 0);
	assert_int_equal(effects("dns.delete"), del);
	assert_true(tr_converge(&r, srv, 3, &pr) >= 0);
	assert_int_equal(effects("dns.delete") - del, 2);
	runtime_server_free(srv);
	tr_close(&r);
}

static void dns__lease_lost__no_call_made(void **state)
{
	(void)state;
	Recon r;
	tr_open(&H, &recon_dns, &r);
	RuntimeServer *srv = h_server("GameServer", U("07"), "dns-lease", "127.60.0.27", false);
	void *snap = NULL, *obs = NULL;
	assert_int_equal(r.rec->observe(&r.env, &snap), 0);
	assert_int_equal(r.rec->observe_server(&r.env, srv, snap, &obs), 0);
	Plan p;
	memset(&p, 0, sizeof p);
	assert_int_equal(r.rec->plan(H.cfg, srv, snap, obs, &p), 0);
	assert_int_equal(p.n_actions, 2);
	int64_t before = effects("dns.create");
	g_hooks.lease_ok = false;
	ActResult res = {0};
	assert_int_equal(r.rec->act(&r.env, srv, snap, obs, &p.actions[0], &res), -ESTALE);
	assert_int_equal(effects("dns.create"), before);
	g_hooks.lease_ok = true;
	plan_clear(&p);
	r.rec->obs_free(obs);
	r.rec->snapshot_free(snap);
	assert_true(tr_converge(&r, srv, 3, NULL) >= 0);
	assert_int_equal(effects("dns.create") - before, 2);
	assert_int_equal(h_ops_of(&H, U("07"), "dns-create", NULL), 2); /* the open one resumed */
	assert_published_once(U("07"), "dns-lease");
	runtime_server_free(srv);
	tr_close(&r);
}

/* A crash (ZLH_CRASH_AT) between every pair of steps of a create and of a
 * delete: the next controller adopts or resumes, never makes a second. */
static void dns__crash_points__converge_without_second_record(void **state)
{
	(void)state;
	static const char *const steps[] = {"intent", "call", "handle", "done"};
	for (size_t i = 0; i < 4; i++) {
		char uid[64], host[32], at[48], a[256], s[256];
		snprintf(uid, sizeof uid, "8c000000-0000-4000-8000-0000000000%02zu", i);
		snprintf(host, sizeof host, "dns-crash-%zu", i);
		fqdn(host, a, s, sizeof a);
		snprintf(at, sizeof at, "dns-create:%s", steps[i]);
		int64_t before = effects("dns.create");
		int st =
		    h_run_child(&H, "dns", at, "GameServer", uid, host, "127.60.4.1", 1, false);
		assert_int_equal(st, 137);
		assert_int_equal(effects("dns.create") - before, i == 0 ? 0 : 1);
		Recon r;
		tr_open(&H, &recon_dns, &r);
		RuntimeServer *srv = h_server("GameServer", uid, host, "127.60.4.1", false);
		PassResult pr;
		assert_true(tr_converge(&r, srv, 4, &pr) >= 0);
		assert_string_equal(pr.cond.reason, "Ready");
		assert_int_equal(effects("dns.create") - before, 2);
		assert_published_once(uid, host);

		snprintf(at, sizeof at, "dns-delete:%s", steps[i]);
		int64_t del = effects("dns.delete");
		st = h_run_child(&H, "dns", at, "GameServer", uid, host, "127.60.4.1", 1, true);
		assert_int_equal(st, 137);
		srv->deleting = true;
		assert_true(tr_converge(&r, srv, 4, &pr) >= 0);
		assert_string_equal(pr.cond.reason, "Deleted");
		assert_int_equal(effects("dns.delete") - del, 2);
		assert_int_equal(count_records("A", a, NULL), 0);
		assert_int_equal(count_records("SRV", s, NULL), 0);
		assert_int_equal(h_open_ops(&H, uid), 0);
		runtime_server_free(srv);
		tr_close(&r);
	}
}

static int group_setup(void **state)
{
	(void)state;
	const char *args[] = {"--nodes", "1", "--seed", "7", NULL};
	return h_setup(&H, args, "itest-dns");
}

static int group_teardown(void **state)
{
	(void)state;
	h_teardown(&H);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc > 1 && strcmp(argv[1], "--child") == 0)
		return h_child_main(argc, argv, &recon_dns);
	if (!tu_pg_admin()) {
		fprintf(stderr, "itest-dns: $ZLH_TEST_PG not set, skipping\n");
		return 0;
	}
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup(client__pagination__every_page_followed, test_setup),
	    cmocka_unit_test_setup(dns__published_server__a_and_srv_ready, test_setup),
	    cmocka_unit_test_setup(dns__lost_create_replies__adopted_exactly_one_each, test_setup),
	    cmocka_unit_test_setup(dns__many_servers_with_lost_replies__one_record_per_type,
	                           test_setup),
	    cmocka_unit_test_setup(dns__foreign_records__never_touched, test_setup),
	    cmocka_unit_test_setup(dns__duplicates_and_drift__converge_to_one_correct, test_setup),
	    cmocka_unit_test_setup(dns__rate_limited__retry_after_honoured, test_setup),
	    cmocka_unit_test_setup(dns__listing_fails__no_decision, test_setup),
	    cmocka_unit_test_setup(dns__lease_lost__no_call_made, test_setup),
	    cmocka_unit_test_setup(dns__crash_points__converge_without_second_record, test_setup),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
