/* Unit tests for the DNS reconciler's pure plan (reconcilers/dns.c): one
 * test per row of its decision table (row ids in comments), the snapshot
 * index and collection, the desired records, the server-row glue and the
 * reconciler table. No I/O. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "reconcilers/dns.h"

#define UID "3f2a9c1e-5b7d-4e8f-9a0b-1c2d3e4f5a6b"
#define UID2 "0b000000-0000-4000-8000-00000000000b"
#define ZONE "example.net"
#define EDGE "203.0.113.10"
#define A_NAME "survival-01.example.net"
#define SRV_NAME "_minecraft._tcp.survival-01.example.net"

/* Records live in a static pool so tests can hand out pointers. */
static CfRecord pool[64];
static size_t n_pool;

static CfRecord *rec(const char *id, CfType t, const char *name, const char *content,
                     const char *comment)
{
	assert_true(n_pool < 64);
	CfRecord *r = &pool[n_pool++];
	memset(r, 0, sizeof *r);
	snprintf(r->id, sizeof r->id, "%s", id);
	r->type = t;
	snprintf(r->type_name, sizeof r->type_name, "%s",
	         t == CF_TYPE_OTHER ? "TXT" : cf_type_to_string(t));
	snprintf(r->name, sizeof r->name, "%s", name);
	r->content = strdup(content ? content : "");
	r->comment = comment ? strdup(comment) : NULL;
	r->ttl = 60;
	r->created_ms = 1000 + (int64_t)n_pool;
	return r;
}

static CfRecord *our_a(const char *id)
{
	return rec(id, CF_TYPE_A, A_NAME, EDGE, "zlh:uid=" UID);
}

static CfRecord *our_srv(const char *id)
{
	CfRecord *r = rec(id, CF_TYPE_SRV, SRV_NAME, "0 25565 " A_NAME, "zlh:uid=" UID);
	r->has_srv = true;
	r->srv.port = 25565;
	snprintf(r->srv.target, sizeof r->srv.target, "%s", A_NAME);
	return r;
}

static int teardown(void **state)
{
	(void)state;
	for (size_t i = 0; i < n_pool; i++)
		cf_record_clear(&pool[i]);
	n_pool = 0;
	return 0;
}

static DnsInput base(const CfRecord *const *recs, size_t n)
{
	DnsInput in = {
	    .game = true,
	    .publish = true,
	    .uid = UID,
	    .hostname = "survival-01",
	    .zone_name = ZONE,
	    .edge_ipv4 = EDGE,
	    .records = recs,
	    .n_records = n,
	};
	recon_dns_settings_init(&in.settings);
	return in;
}

static DnsOp dop(int64_t id, JournalStep step, const char *action, CfType t, const char *rid)
{
	DnsOp o = {.id = id, .step = step, .type = t};
	snprintf(o.action, sizeof o.action, "%s", action);
	snprintf(o.record_id, sizeof o.record_id, "%s", rid ? rid : "");
	return o;
}

static Plan run(const DnsInput *in)
{
	Plan p;
	memset(&p, 0, sizeof p);
	assert_int_equal(recon_dns_plan_input(in, &p), 0);
	return p;
}

static void assert_cond(const Plan *p, CondStatus st, const char *reason)
{
	const CondReport *c = &p->conditions[COND_DNS_READY];
	assert_true(c->set);
	if (c->status != st || strcmp(c->reason, reason) != 0)
		fail_msg("condition %s %s (%s), want %s %s", cond_status_name(c->status), c->reason,
		         c->message, cond_status_name(st), reason);
}

static const char *arg(const Plan *p, size_t i, const char *key)
{
	return json_string_value(json_object_get(p->actions[i].args, key));
}

static void assert_action(const Plan *p, size_t i, const char *name)
{
	if (i >= p->n_actions)
		fail_msg("no action %zu (have %zu)", i, p->n_actions);
	assert_string_equal(p->actions[i].name, name);
	bool ext = strncmp(name, "dns-", 4) == 0;
	assert_int_equal(p->actions[i].mutating, ext);
	if (ext)
		assert_string_equal(p->actions[i].system, "dns");
}

static void assert_delete(const Plan *p, size_t i, const char *id)
{
	assert_action(p, i, "dns-delete");
	assert_string_equal(arg(p, i, "id"), id);
}

static void assert_settle(const Plan *p, size_t i, int64_t op_id, const char *outcome)
{
	assert_action(p, i, "settle-dns");
	assert_int_equal(json_integer_value(json_object_get(p->actions[i].args, "op")), op_id);
	assert_string_equal(arg(p, i, "outcome"), outcome);
}

/* No action may ever name a record that is not ours. */
static void assert_never_touches(const Plan *p, const CfRecord *foreign)
{
	for (size_t i = 0; i < p->n_actions; i++) {
		const char *id = arg(p, i, "id");
		const char *h = arg(p, i, "handle");
		if ((id && strcmp(id, foreign->id) == 0) || (h && strcmp(h, foreign->id) == 0))
			fail_msg("action %zu (%s) touches foreign record %s", i, p->actions[i].name,
			         foreign->id);
	}
}

/* --- rows ------------------------------------------------------------------------------- */

/* X3 x2 */
static void plan__no_records__creates_a_and_srv(void **state)
{
	(void)state;
	DnsInput in = base(NULL, 0);
	Plan p = run(&in);
	assert_int_equal(p.n_actions, 2);
	assert_action(&p, 0, "dns-create");
	assert_string_equal(arg(&p, 0, "type"), "A");
	assert_string_equal(arg(&p, 0, "name"), A_NAME);
	assert_string_equal(arg(&p, 0, "content"), EDGE);
	assert_string_equal(arg(&p, 0, "comment"), "zlh:uid=" UID);
	assert_int_equal(json_integer_value(json_object_get(p.actions[0].args, "ttl")), 60);
	assert_true(json_is_false(json_object_get(p.actions[0].args, "proxied")));
	assert_action(&p, 1, "dns-create");
	assert_string_equal(arg(&p, 1, "type"), "SRV");
	assert_string_equal(arg(&p, 1, "name"), SRV_NAME);
	json_t *d = json_object_get(p.actions[1].args, "data");
	assert_int_equal(json_integer_value(json_object_get(d, "priority")), 0);
	assert_int_equal(json_integer_value(json_object_get(d, "weight")), 0);
	assert_int_equal(json_integer_value(json_object_get(d, "port")), 25565);
	assert_string_equal(json_string_value(json_object_get(d, "target")), A_NAME);
	assert_cond(&p, COND_FALSE, "Creating");
	plan_clear(&p);
}

/* X7 */
static void plan__records_in_place__ready(void **state)
{
	(void)state;
	const CfRecord *r[] = {our_a("a1"), our_srv("s1")};
	DnsInput in = base(r, 2);
	Plan p = run(&in);
	assert_int_equal(p.n_actions, 0);
	assert_cond(&p, COND_TRUE, "Ready");
	plan_clear(&p);
}

/* J1: a create whose reply was lost landed: adopt, never create again. */
static void plan__lost_create_reply__adopted_not_recreated(void **state)
{
	(void)state;
	const CfRecord *r[] = {our_a("a1")};
	DnsOp ops[] = {dop(11, JOURNAL_STEP_CALL, "dns-create", CF_TYPE_A, NULL),
	               dop(12, JOURNAL_STEP_INTENT, "dns-create", CF_TYPE_SRV, NULL)};
	DnsInput in = base(r, 1);
	in.ops = ops;
	in.n_ops = 2;
	Plan p = run(&in);
	/* A adopted; the SRV create (no record) is resumed by its create. */
	assert_int_equal(p.n_actions, 2);
	assert_settle(&p, 0, 11, "done");
	assert_string_equal(arg(&p, 0, "handle"), "a1");
	assert_action(&p, 1, "dns-create");
	assert_string_equal(arg(&p, 1, "type"), "SRV");
	plan_clear(&p);
}

/* J2: an open create with no record, no longer wanted. */
static void plan__open_create_unpublished__settled_failed(void **state)
{
	(void)state;
	DnsOp ops[] = {dop(11, JOURNAL_STEP_CALL, "dns-create", CF_TYPE_A, NULL)};
	DnsInput in = base(NULL, 0);
	in.ops = ops;
	in.n_ops = 1;
	in.publish = false;
	Plan p = run(&in);
	assert_int_equal(p.n_actions, 1);
	assert_settle(&p, 0, 11, "failed");
	assert_cond(&p, COND_TRUE, "NotApplicable");
	plan_clear(&p);
}

/* X4: a lost create that landed twice: keep one, delete the extra. */
static void plan__duplicate_records__extras_deleted_keep_oldest(void **state)
{
	(void)state;
	CfRecord *a1 = our_a("a1"), *a2 = our_a("a2"), *s1 = our_srv("s1");
	a1->created_ms = 5000;
	a2->created_ms = 4000; /* older */
	const CfRecord *r[] = {a1, s1, a2};
	DnsInput in = base(r, 3);
	Plan p = run(&in);
	assert_int_equal(p.n_actions, 1);
	assert_delete(&p, 0, "a1");
	assert_cond(&p, COND_FALSE, "RemovingDuplicates");
	plan_clear(&p);
}

/* X4: the exact match is kept even when younger; the other is deleted, no
 * update needed. */
static void plan__duplicates_one_matching__matching_kept(void **state)
{
	(void)state;
	CfRecord *old = our_a("a1"), *good = our_a("a2");
	old->created_ms = 1;
	free(old->content);
	old->content = strdup("198.51.100.1");
	const CfRecord *r[] = {old, good, our_srv("s1")};
	DnsInput in = base(r, 3);
	Plan p = run(&in);
	assert_int_equal(p.n_actions, 1);
	assert_delete(&p, 0, "a1");
	plan_clear(&p);
}

/* X5: the edge address changed. */
static void plan__wrong_content__patched(void **state)
{
	(void)state;
	CfRecord *a = our_a("a1");
	free(a->content);
	a->content = strdup("198.51.100.1");
	const CfRecord *r[] = {a, our_srv("s1")};
	DnsInput in = base(r, 2);
	Plan p = run(&in);
	assert_int_equal(p.n_actions, 1);
	assert_action(&p, 0, "dns-update");
	assert_string_equal(arg(&p, 0, "id"), "a1");
	assert_string_equal(arg(&p, 0, "content"), EDGE);
	assert_cond(&p, COND_FALSE, "Updating");
	plan_clear(&p);
}

/* X5: ttl, proxied and SRV data drift. */
static void plan__drifted_fields__patched(void **state)
{
	(void)state;
	CfRecord *a = our_a("a1"), *s = our_srv("s1");
	a->proxied = true;
	s->srv.port = 25566;
	const CfRecord *r[] = {a, s};
	DnsInput in = base(r, 2);
	Plan p = run(&in);
	assert_int_equal(p.n_actions, 2);
	assert_action(&p, 0, "dns-update");
	assert_action(&p, 1, "dns-update");
	assert_string_equal(arg(&p, 1, "id"), "s1");
	plan_clear(&p);
	a->proxied = false;
	s->srv.port = 25565;
	a->ttl = 1;
	in.n_records = 1;
	p = run(&in);
	assert_int_equal(p.n_actions, 2); /* A ttl patched, SRV created */
	assert_action(&p, 0, "dns-update");
	assert_action(&p, 1, "dns-create");
	plan_clear(&p);
}

/* X5: a new hostname: our records are renamed (PATCH), not duplicated. */
static void plan__hostname_changed__records_renamed(void **state)
{
	(void)state;
	const CfRecord *r[] = {our_a("a1"), our_srv("s1")};
	DnsInput in = base(r, 2);
	in.hostname = "creative-02";
	Plan p = run(&in);
	assert_int_equal(p.n_actions, 2);
	assert_action(&p, 0, "dns-update");
	assert_string_equal(arg(&p, 0, "name"), "creative-02.example.net");
	assert_action(&p, 1, "dns-update");
	assert_string_equal(arg(&p, 1, "name"), "_minecraft._tcp.creative-02.example.net");
	plan_clear(&p);
}

/* X2: a foreign record at our A name: never touched, no A created, SRV
 * still made; Conflict. */
static void plan__foreign_record_at_our_name__conflict_untouched(void **state)
{
	(void)state;
	CfRecord *f = rec("f1", CF_TYPE_A, A_NAME, "192.0.2.1", NULL);
	const CfRecord *r[] = {f};
	DnsInput in = base(r, 1);
	Plan p = run(&in);
	assert_int_equal(p.n_actions, 1);
	assert_action(&p, 0, "dns-create");
	assert_string_equal(arg(&p, 0, "type"), "SRV");
	assert_cond(&p, COND_FALSE, "Conflict");
	assert_non_null(strstr(p.conditions[COND_DNS_READY].message, "f1"));
	assert_never_touches(&p, f);
	plan_clear(&p);
	/* Even an identical foreign record (same content) is not adopted. */
	free(f->content);
	f->content = strdup(EDGE);
	p = run(&in);
	assert_never_touches(&p, f);
	assert_cond(&p, COND_FALSE, "Conflict");
	plan_clear(&p);
	/* A foreign CNAME at the name blocks the A too. */
	f->type = CF_TYPE_CNAME;
	p = run(&in);
	assert_cond(&p, COND_FALSE, "Conflict");
	assert_int_equal(p.n_actions, 1);
	plan_clear(&p);
	/* ... and another server's record at our name. */
	f->type = CF_TYPE_A;
	free(f->comment);
	f->comment = strdup("zlh:uid=" UID2);
	p = run(&in);
	assert_cond(&p, COND_FALSE, "Conflict");
	assert_non_null(strstr(p.conditions[COND_DNS_READY].message, "another server"));
	assert_never_touches(&p, f);
	plan_clear(&p);
}

/* X6: a foreign record appeared beside ours: reported, both untouched. */
static void plan__foreign_beside_ours__conflict_ours_kept(void **state)
{
	(void)state;
	CfRecord *f = rec("f1", CF_TYPE_A, A_NAME, "192.0.2.1", "set by hand");
	const CfRecord *r[] = {our_a("a1"), our_srv("s1"), f};
	DnsInput in = base(r, 3);
	Plan p = run(&in);
	assert_int_equal(p.n_actions, 0);
	assert_cond(&p, COND_FALSE, "Conflict");
	plan_clear(&p);
}

/* X6: a hostname change onto a name a foreign record holds: ours is not
 * renamed onto it. */
static void plan__rename_onto_foreign_name__not_renamed(void **state)
{
	(void)state;
	CfRecord *f = rec("f1", CF_TYPE_A, "creative-02.example.net", "192.0.2.1", NULL);
	const CfRecord *r[] = {our_a("a1"), our_srv("s1"), f};
	DnsInput in = base(r, 3);
	in.hostname = "creative-02";
	Plan p = run(&in);
	assert_int_equal(p.n_actions, 1); /* only the SRV is renamed */
	assert_action(&p, 0, "dns-update");
	assert_string_equal(arg(&p, 0, "id"), "s1");
	assert_cond(&p, COND_FALSE, "Conflict");
	assert_never_touches(&p, f);
	plan_clear(&p);
}

/* Foreign records elsewhere in the zone (www, api, mail) are never
 * touched, whatever the server does. */
static void plan__foreign_zone_records__never_touched(void **state)
{
	(void)state;
	CfRecord *www = rec("w1", CF_TYPE_CNAME, "www.example.net", "example.net", NULL);
	CfRecord *api = rec("p1", CF_TYPE_A, "api.example.net", "192.0.2.2", "prod api");
	CfRecord *mx = rec("m1", CF_TYPE_OTHER, "example.net", "mail.example.net", NULL);
	const CfRecord *r[] = {www, api, mx, our_a("a1")};
	DnsInput in = base(r, 4);
	in.deleting = true;
	Plan p = run(&in);
	assert_int_equal(p.n_actions, 1);
	assert_delete(&p, 0, "a1");
	assert_never_touches(&p, www);
	assert_never_touches(&p, api);
	assert_never_touches(&p, mx);
	plan_clear(&p);
}

/* X1: the finalizer deletes ours, then is done. */
static void plan__deleting__deletes_ours_then_done(void **state)
{
	(void)state;
	const CfRecord *r[] = {our_a("a1"), our_srv("s1")};
	DnsInput in = base(r, 2);
	in.deleting = true;
	Plan p = run(&in);
	assert_int_equal(p.n_actions, 2);
	assert_delete(&p, 0, "a1");
	assert_delete(&p, 1, "s1");
	assert_cond(&p, COND_FALSE, "Deleting");
	plan_clear(&p);
	in.n_records = 0;
	p = run(&in);
	assert_int_equal(p.n_actions, 0);
	assert_cond(&p, COND_TRUE, "Deleted");
	plan_clear(&p);
	/* Deleting without an allocation still deletes what carries our uid. */
	in.n_records = 2;
	in.hostname = NULL;
	p = run(&in);
	assert_int_equal(p.n_actions, 2);
	plan_clear(&p);
}

/* X1: not publishing. */
static void plan__unpublished__deletes_ours(void **state)
{
	(void)state;
	const CfRecord *r[] = {our_a("a1")};
	DnsInput in = base(r, 1);
	in.publish = false;
	Plan p = run(&in);
	assert_int_equal(p.n_actions, 1);
	assert_delete(&p, 0, "a1");
	assert_cond(&p, COND_FALSE, "Unpublishing");
	plan_clear(&p);
	in.n_records = 0;
	p = run(&in);
	assert_int_equal(p.n_actions, 0);
	assert_cond(&p, COND_TRUE, "NotApplicable");
	plan_clear(&p);
}

/* X1 for a kind without records. */
static void plan__devserver__not_applicable(void **state)
{
	(void)state;
	DnsInput in = base(NULL, 0);
	in.game = false;
	Plan p = run(&in);
	assert_int_equal(p.n_actions, 0);
	assert_cond(&p, COND_TRUE, "NotApplicable");
	plan_clear(&p);
}

/* W1: no hostname yet: records untouched. */
static void plan__no_allocation__waits_records_untouched(void **state)
{
	(void)state;
	const CfRecord *r[] = {our_a("a1")};
	DnsOp ops[] = {dop(3, JOURNAL_STEP_INTENT, "dns-delete", CF_TYPE_A, "a1")};
	DnsInput in = base(r, 1);
	in.hostname = NULL;
	in.ops = ops;
	in.n_ops = 1;
	Plan p = run(&in);
	assert_int_equal(p.n_actions, 0);
	assert_cond(&p, COND_FALSE, "WaitingForAllocation");
	assert_int_equal(p.requeue_after_ms, in.settings.wait_requeue_ms);
	plan_clear(&p);
}

/* X0: a record of ours of an unexpected type goes. */
static void plan__ours_other_type__deleted(void **state)
{
	(void)state;
	CfRecord *t = rec("t1", CF_TYPE_OTHER, A_NAME, "hello", "zlh:uid=" UID);
	const CfRecord *r[] = {our_a("a1"), our_srv("s1"), t};
	DnsInput in = base(r, 3);
	Plan p = run(&in);
	assert_int_equal(p.n_actions, 1);
	assert_delete(&p, 0, "t1");
	plan_clear(&p);
}

/* J3, J4, J5 */
static void plan__open_updates__settled_by_observation(void **state)
{
	(void)state;
	CfRecord *a = our_a("a1");
	const CfRecord *r[] = {a, our_srv("s1")};
	DnsOp ops[] = {dop(21, JOURNAL_STEP_CALL, "dns-update", CF_TYPE_A, "a1"),
	               dop(22, JOURNAL_STEP_CALL, "dns-update", CF_TYPE_SRV, "gone1")};
	DnsInput in = base(r, 2);
	in.ops = ops;
	in.n_ops = 2;
	Plan p = run(&in);
	assert_int_equal(p.n_actions, 2);
	assert_settle(&p, 0, 21, "done"); /* J4: it matches now */
	assert_settle(&p, 1, 22, "failed"); /* J3: record gone */
	assert_cond(&p, COND_TRUE, "Ready");
	plan_clear(&p);
	/* Still differs and planned: resumed by the update itself. */
	free(a->content);
	a->content = strdup("198.51.100.1");
	in.n_ops = 1;
	p = run(&in);
	assert_int_equal(p.n_actions, 1);
	assert_action(&p, 0, "dns-update");
	plan_clear(&p);
	/* Differs but not planned any more (unpublished): superseded. */
	in.publish = false;
	p = run(&in);
	assert_settle(&p, 0, 21, "failed");
	assert_delete(&p, 1, "a1");
	plan_clear(&p);
}

/* J6, J7 */
static void plan__open_deletes__settled_by_observation(void **state)
{
	(void)state;
	const CfRecord *r[] = {our_a("a1"), our_srv("s1")};
	DnsOp ops[] = {dop(31, JOURNAL_STEP_CALL, "dns-delete", CF_TYPE_A, "gone2"),
	               dop(32, JOURNAL_STEP_INTENT, "dns-delete", CF_TYPE_A, "a1")};
	DnsInput in = base(r, 2);
	in.ops = ops;
	in.n_ops = 2;
	Plan p = run(&in);
	assert_int_equal(p.n_actions, 2);
	assert_settle(&p, 0, 31, "done"); /* J6 */
	assert_settle(&p, 1, 32, "failed"); /* J7: a1 is the one we keep */
	plan_clear(&p);
	in.deleting = true; /* now a1 is to be deleted: resumed */
	p = run(&in);
	assert_settle(&p, 0, 31, "done");
	assert_delete(&p, 1, "a1");
	assert_delete(&p, 2, "s1");
	assert_int_equal(p.n_actions, 3);
	plan_clear(&p);
}

/* Names compare case-insensitively; record names are lower-cased by the
 * client, the hostname may not be. */
static void plan__names_case_insensitive(void **state)
{
	(void)state;
	const CfRecord *r[] = {our_a("a1"), our_srv("s1")};
	DnsInput in = base(r, 2);
	in.hostname = "Survival-01";
	in.zone_name = "Example.NET";
	Plan p = run(&in);
	assert_int_equal(p.n_actions, 0);
	assert_cond(&p, COND_TRUE, "Ready");
	plan_clear(&p);
}

/* More work than one plan holds: the rest waits for the next pass. */
static void plan__many_duplicates__bounded_plan(void **state)
{
	(void)state;
	const CfRecord *r[40];
	for (int i = 0; i < 40; i++) {
		char id[16];
		snprintf(id, sizeof id, "a%02d", i);
		r[i] = our_a(id);
	}
	DnsInput in = base(r, 40);
	Plan p = run(&in);
	assert_int_equal(p.n_actions, PLAN_MAX_ACTIONS);
	for (size_t i = 0; i < p.n_actions; i++)
		assert_action(&p, i, "dns-delete");
	assert_true(p.requeue_after_ms > 0);
	plan_clear(&p);
}

static void plan__bad_input__einval(void **state)
{
	(void)state;
	Plan p;
	memset(&p, 0, sizeof p);
	assert_int_equal(recon_dns_plan_input(NULL, &p), -EINVAL);
	DnsInput in = base(NULL, 2);
	assert_int_equal(recon_dns_plan_input(&in, &p), -EINVAL);
	in = base(NULL, 0);
	in.uid = NULL;
	assert_int_equal(recon_dns_plan_input(&in, &p), -EINVAL);
}

/* --- snapshot, desired, glue -------------------------------------------------------------- */

static void snapshot__indexes__collect_ours_and_collisions(void **state)
{
	(void)state;
	CfRecordList l = {.n = 5, .items = calloc(5, sizeof(CfRecord))};
	assert_non_null(l.items);
	const char *names[] = {A_NAME, SRV_NAME, A_NAME, "www.example.net", "old.example.net"};
	const char *comments[] = {"zlh:uid=" UID, "zlh:uid=" UID, NULL, NULL, "zlh:uid=" UID};
	for (int i = 0; i < 5; i++) {
		snprintf(l.items[i].id, sizeof l.items[i].id, "r%d", i);
		snprintf(l.items[i].name, sizeof l.items[i].name, "%s", names[i]);
		l.items[i].type = CF_TYPE_A;
		l.items[i].content = strdup("x");
		l.items[i].comment = comments[i] ? strdup(comments[i]) : NULL;
	}
	DnsSnapshot *s = NULL;
	assert_int_equal(recon_dns_snapshot_new(&l, &s), 0);
	assert_null(l.items);
	assert_int_equal(s->n_by_uid, 3);
	assert_int_equal(s->n_by_name, 5);
	const CfRecord *out[8];
	size_t n = recon_dns_collect(s, UID, "Survival-01.example.net.", SRV_NAME, out, 8);
	assert_int_equal(n, 4); /* r0, r1, r4 (ours), r2 (collision); no duplicates */
	bool seen[5] = {0};
	for (size_t i = 0; i < n; i++)
		seen[out[i]->id[1] - '0'] = true;
	assert_true(seen[0] && seen[1] && seen[2] && seen[4]);
	assert_false(seen[3]);
	/* Bounded. */
	assert_int_equal(recon_dns_collect(s, UID, A_NAME, SRV_NAME, out, 2), 2);
	assert_int_equal(recon_dns_collect(s, UID2, NULL, NULL, out, 8), 0);
	recon_dns_snapshot_free(s);
	recon_dns_snapshot_free(NULL);
}

static void desired__records_built(void **state)
{
	(void)state;
	DnsInput in = base(NULL, 0);
	CfRecordSpec s;
	char name[CF_NAME_MAX], comment[CF_NAME_MAX], target[CF_NAME_MAX];
	assert_int_equal(recon_dns_desired(&in, CF_TYPE_A, &s, name, comment, target), 0);
	assert_string_equal(s.name, A_NAME);
	assert_string_equal(s.content, EDGE);
	assert_string_equal(s.comment, "zlh:uid=" UID);
	assert_int_equal(s.ttl, 60);
	assert_false(s.proxied);
	json_t *j = recon_dns_spec_to_json(&s);
	CfRecordSpec back;
	assert_int_equal(recon_dns_spec_from_json(j, &back), 0);
	assert_int_equal(back.type, CF_TYPE_A);
	assert_string_equal(back.content, EDGE);
	json_decref(j);
	assert_int_equal(recon_dns_desired(&in, CF_TYPE_SRV, &s, name, comment, target), 0);
	assert_string_equal(s.name, SRV_NAME);
	assert_string_equal(s.srv.target, A_NAME);
	assert_int_equal(s.srv.port, 25565);
	j = recon_dns_spec_to_json(&s);
	assert_int_equal(recon_dns_spec_from_json(j, &back), 0);
	assert_int_equal(back.srv.port, 25565);
	assert_string_equal(back.srv.target, A_NAME);
	json_decref(j);
	in.hostname = NULL;
	assert_int_equal(recon_dns_desired(&in, CF_TYPE_A, &s, name, comment, target), -EINVAL);
	in = base(NULL, 0);
	assert_int_equal(recon_dns_desired(&in, CF_TYPE_AAAA, &s, name, comment, target), -EINVAL);
}

static void op_from_journal__dns_rows_only(void **state)
{
	(void)state;
	JournalOp j = {.id = 4, .step = JOURNAL_STEP_CALL, .action = "dns-delete"};
	j.payload = json_pack("{s:s, s:s}", "type", "SRV", "id", "abc123");
	DnsOp o;
	assert_true(recon_dns_op_from_journal(&j, &o));
	assert_int_equal(o.id, 4);
	assert_string_equal(o.action, "dns-delete");
	assert_int_equal(o.type, CF_TYPE_SRV);
	assert_string_equal(o.record_id, "abc123");
	j.action = "register";
	assert_false(recon_dns_op_from_journal(&j, &o));
	json_decref(j.payload);
}

static void recon__plan_reads_server_row_and_config(void **state)
{
	(void)state;
	assert_string_equal(recon_dns.name, "dns");
	assert_int_equal(recon_dns.order, 50);
	assert_true(recon_dns.uses_finalizer);
	assert_int_equal(recon_dns.conditions[0], COND_DNS_READY);
	Config cfg = {0};
	assert_false(recon_dns.enabled(&cfg));
	cfg.dns.enabled = true;
	cfg.dns.zone_name = ZONE;
	cfg.dns.edge_ipv4 = EDGE;
	assert_true(recon_dns.enabled(&cfg));

	CfRecordList l = {.n = 1, .items = calloc(1, sizeof(CfRecord))};
	snprintf(l.items[0].id, sizeof l.items[0].id, "a1");
	snprintf(l.items[0].name, sizeof l.items[0].name, A_NAME);
	l.items[0].type = CF_TYPE_A;
	l.items[0].content = strdup(EDGE);
	l.items[0].comment = strdup("zlh:uid=" UID);
	l.items[0].ttl = 60;
	DnsSnapshot *snap = NULL;
	assert_int_equal(recon_dns_snapshot_new(&l, &snap), 0);
	json_error_t e;
	char *fin[] = {NULL};
	RuntimeServer srv = {
	    .uid = UID,
	    .kind = "GameServer",
	    .spec = json_loads("{}", 0, &e),
	    .finalizers = fin,
	    .hostname = "survival-01",
	};
	DnsObs obs = {0};
	Plan p;
	memset(&p, 0, sizeof p);
	assert_true(recon_dns.plan(&cfg, &srv, NULL, &obs, &p) < 0); /* unknown listing */
	assert_int_equal(recon_dns.plan(&cfg, &srv, snap, &obs, &p), 0);
	assert_int_equal(p.n_actions, 1); /* A in place, SRV created */
	assert_action(&p, 0, "dns-create");
	assert_string_equal(arg(&p, 0, "type"), "SRV");
	plan_clear(&p);
	assert_int_equal(recon_dns.finalize(&cfg, &srv, snap, &obs, &p), 0);
	assert_int_equal(p.n_actions, 1);
	assert_delete(&p, 0, "a1");
	plan_clear(&p);
	json_object_set_new(srv.spec, "publish", json_false());
	assert_int_equal(recon_dns.plan(&cfg, &srv, snap, &obs, &p), 0);
	assert_delete(&p, 0, "a1");
	plan_clear(&p);
	json_decref(srv.spec);
	recon_dns_snapshot_free(snap);
}

#define T(f) cmocka_unit_test_teardown(f, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
	    T(plan__no_records__creates_a_and_srv),
	    T(plan__records_in_place__ready),
	    T(plan__lost_create_reply__adopted_not_recreated),
	    T(plan__open_create_unpublished__settled_failed),
	    T(plan__duplicate_records__extras_deleted_keep_oldest),
	    T(plan__duplicates_one_matching__matching_kept),
	    T(plan__wrong_content__patched),
	    T(plan__drifted_fields__patched),
	    T(plan__hostname_changed__records_renamed),
	    T(plan__foreign_record_at_our_name__conflict_untouched),
	    T(plan__foreign_beside_ours__conflict_ours_kept),
	    T(plan__rename_onto_foreign_name__not_renamed),
	    T(plan__foreign_zone_records__never_touched),
	    T(plan__deleting__deletes_ours_then_done),
	    T(plan__unpublished__deletes_ours),
	    T(plan__devserver__not_applicable),
	    T(plan__no_allocation__waits_records_untouched),
	    T(plan__ours_other_type__deleted),
	    T(plan__open_updates__settled_by_observation),
	    T(plan__open_deletes__settled_by_observation),
	    T(plan__names_case_insensitive),
	    T(plan__many_duplicates__bounded_plan),
	    T(plan__bad_input__einval),
	    T(snapshot__indexes__collect_ours_and_collisions),
	    T(desired__records_built),
	    T(op_from_journal__dns_rows_only),
	    T(recon__plan_reads_server_row_and_config),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
