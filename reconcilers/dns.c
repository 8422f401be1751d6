/* dns.c - the DNS reconciler: Cloudflare records of published GameServers
 * (see dns.h).
 *
 * DECISION TABLE of recon_dns_plan_input(). The J rows settle open journal
 * operations (store only); the X rows decide each record type T (A, SRV)
 * independently. Each row id is named in test/unit/test-dns-plan.c.
 *
 * Words: "ours" = records whose comment is "zlh:uid=<this uid>" (any name,
 * any type); ours[T] those of type T. "desired" = the server is a
 * GameServer, publishing, not deleting, and has a hostname (then A and SRV
 * are desired, as dns.h says). "unwanted" = not a GameServer, not
 * publishing, or deleting. "collision[T]" = a record that is not ours at
 * T's desired name, of type T or CNAME (a foreign record, or another
 * server's). "keep[T]" = among ours[T] the one that matches the desired
 * record exactly, else the oldest (created_on, then id).
 *
 * id   when                                           actions                  DNSReady
 * ---- ---------------------------------------------- ------------------------ ---------------------
 * J1   open dns-create of T, ours[T] not empty        SETTLE(done, keep id)    (rows below)
 *      (a create whose reply was lost: adopted)
 * J2   open dns-create of T, ours[T] empty, X3 does   SETTLE(failed: not       (rows below)
 *      not resume it                                  observed)
 * J3   open dns-update of record R: R not among ours  SETTLE(failed: gone)     (rows below)
 * J4   ... R now matches the desired record           SETTLE(done)             (rows below)
 * J5   ... otherwise, X5 not planned for R            SETTLE(failed:           (rows below)
 *                                                     superseded)
 * J6   open dns-delete of record R: R not among ours  SETTLE(done)             (rows below)
 * J7   ... R still there, X1/X4 not planned for R     SETTLE(failed:           (rows below)
 *                                                     superseded)
 *      (an open op whose action is planned again is resumed by that act)
 * X0   ours of a type other than A/SRV                DELETE each              (as below)
 * X1   unwanted: ours[T]                              DELETE each              F Deleting | F Unpublishing
 *                                                                              -> T Deleted | T NotApplicable
 * W1   not unwanted, no hostname yet                  none (records untouched) F WaitingForAllocation / wait
 * X2   desired, ours[T] empty, collision[T]           none (never touched)     F Conflict
 * X3   desired, ours[T] empty                         CREATE(T)                F Creating
 * X4   desired, ours[T] > 1 (a lost create that       DELETE all but keep[T]   F RemovingDuplicates
 *      landed twice, or a race)
 * X5   desired, keep[T] differs (content, name after  UPDATE(keep[T]) (PATCH)  F Updating
 *      a hostname change, ttl, proxied, SRV data)
 * X6   desired, collision[T] while ours[T] exists     none (no X5 rename onto  F Conflict
 *                                                     the foreign name)
 * X7   otherwise                                      none                     T Ready
 *
 * The condition is the first that applies of: Conflict (X2/X6), then the
 * first pending action's reason, then Ready. A plan holds at most
 * PLAN_MAX_ACTIONS actions; what does not fit is planned on the next pass. */
#include "dns.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "crash.h"
#include "log.h"
#include "util.h"

void recon_dns_settings_init(DnsSettings *s)
{
	*s = (DnsSettings){
	    .ttl = 60,
	    .port = DNS_GAME_PORT,
	    .wait_requeue_ms = 3000,
	};
}

/* --- desired records ----------------------------------------------------------------- */

int recon_dns_desired(const DnsInput *in, CfType t, CfRecordSpec *ret, char *name, char *comment,
                      char *target)
{
	if (!in || !in->uid || !in->hostname || !*in->hostname || !in->zone_name ||
	    !*in->zone_name || (t != CF_TYPE_A && t != CF_TYPE_SRV))
		return -EINVAL;
	if (t == CF_TYPE_A && (!in->edge_ipv4 || !*in->edge_ipv4))
		return -EINVAL;
	char fqdn[CF_NAME_MAX * 2];
	snprintf(fqdn, sizeof fqdn, "%s.%s", in->hostname, in->zone_name);
	int r = cf_name_normalize(fqdn, target, CF_NAME_MAX);
	if (r < 0)
		return r;
	if (t == CF_TYPE_A) {
		snprintf(name, CF_NAME_MAX, "%s", target);
	} else {
		char srv[CF_NAME_MAX * 2];
		snprintf(srv, sizeof srv, "%s%s", DNS_SRV_SERVICE, target);
		if ((r = cf_name_normalize(srv, name, CF_NAME_MAX)) < 0)
			return r;
	}
	r = snprintf(comment, CF_NAME_MAX, "%s%s", CF_COMMENT_PREFIX, in->uid);
	if (r < 0 || r >= CF_NAME_MAX)
		return -EINVAL;
	*ret = (CfRecordSpec){
	    .type = t,
	    .name = name,
	    .content = t == CF_TYPE_A ? in->edge_ipv4 : NULL,
	    .ttl = in->settings.ttl,
	    .proxied = false,
	    .comment = comment,
	};
	if (t == CF_TYPE_SRV) {
		ret->srv.priority = 0;
		ret->srv.weight = 0;
		ret->srv.port = in->settings.port;
		snprintf(ret->srv.target, sizeof ret->srv.target, "%s", target);
	}
	return 0;
}

json_t *recon_dns_spec_to_json(const CfRecordSpec *s)
{
	_cleanup_buf_ Buf b = BUF_INIT;
	if (!s || cf_record_body(s, &b) < 0)
		return NULL;
	json_error_t e;
	return json_loadb(b.data, b.len, 0, &e);
}

int recon_dns_spec_from_json(const json_t *j, CfRecordSpec *ret)
{
	if (!json_is_object(j))
		return -EINVAL;
	CfRecordSpec s = {0};
	const char *type = json_string_value(json_object_get(j, "type"));
	s.type = cf_type_from_string(type);
	s.name = json_string_value(json_object_get(j, "name"));
	s.content = json_string_value(json_object_get(j, "content"));
	s.comment = json_string_value(json_object_get(j, "comment"));
	json_t *ttl = json_object_get(j, "ttl");
	s.ttl = json_is_integer(ttl) ? json_integer_value(ttl) : 1;
	s.proxied = json_is_true(json_object_get(j, "proxied"));
	if (!s.name || (s.type != CF_TYPE_A && s.type != CF_TYPE_SRV && s.type != CF_TYPE_AAAA &&
	                s.type != CF_TYPE_CNAME))
		return -EINVAL;
	if (s.type == CF_TYPE_SRV) {
		json_t *d = json_object_get(j, "data");
		const char *target = json_string_value(json_object_get(d, "target"));
		if (!json_is_object(d) || !target || strlen(target) >= sizeof s.srv.target)
			return -EINVAL;
		s.srv.priority = json_integer_value(json_object_get(d, "priority"));
		s.srv.weight = json_integer_value(json_object_get(d, "weight"));
		s.srv.port = json_integer_value(json_object_get(d, "port"));
		snprintf(s.srv.target, sizeof s.srv.target, "%s", target);
	} else if (!s.content) {
		return -EINVAL;
	}
	*ret = s;
	return 0;
}

/* --- the plan ------------------------------------------------------------------------------ */

static json_t *settle_args(int64_t op_id, bool done, const char *handle, const char *error)
{
	json_t *a =
	    json_pack("{s:I, s:s}", "op", (json_int_t)op_id, "outcome", done ? "done" : "failed");
	if (a && handle && *handle)
		json_object_set_new(a, "handle", json_string(handle));
	if (a && error)
		json_object_set_new(a, "error", json_string(error));
	return a;
}

static bool older(const CfRecord *a, const CfRecord *b)
{
	int64_t ca = a->created_ms > 0 ? a->created_ms : INT64_MAX;
	int64_t cb = b->created_ms > 0 ? b->created_ms : INT64_MAX;
	if (ca != cb)
		return ca < cb;
	return strcmp(a->id, b->id) < 0;
}

enum { T_A, T_SRV, T_N };
static const CfType plan_types[T_N] = {CF_TYPE_A, CF_TYPE_SRV};

typedef struct TypePlan {
	bool desired;
	CfRecordSpec spec;
	char name[CF_NAME_MAX], comment[CF_NAME_MAX], target[CF_NAME_MAX];
	const CfRecord *ours[DNS_MAX_RECORDS];
	size_t n_ours;
	const CfRecord *collision;
	const CfRecord *keep;
	bool create, update, conflict;
} TypePlan;

static const CfRecord *find_ours_id(const CfRecord *const *ours, size_t n, const char *id)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(ours[i]->id, id) == 0)
			return ours[i];
	return NULL;
}

/* Adds an action; a full plan is not an error (the rest waits a pass). */
static int add(Plan *plan, bool *full, const char *name, const char *system, bool mutating,
               json_t *args, const char *fmt, ...) _printf_(7, 8);
static int add(Plan *plan, bool *full, const char *name, const char *system, bool mutating,
               json_t *args, const char *fmt, ...)
{
	if (*full || plan->n_actions >= PLAN_MAX_ACTIONS) {
		*full = true;
		json_decref(args);
		return 0;
	}
	if (!args)
		return -ENOMEM;
	char desc[192];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(desc, sizeof desc, fmt, ap);
	va_end(ap);
	return plan_action(plan, name, system, NULL, mutating, args, "%s", desc);
}

static json_t *delete_args(const CfRecord *r)
{
	return json_pack("{s:s, s:s, s:s}", "id", r->id, "type", r->type_name, "name", r->name);
}

int recon_dns_plan_input(const DnsInput *in, Plan *plan)
{
	if (!in || !plan || !in->uid || (in->n_records && !in->records) || (in->n_ops && !in->ops))
		return -EINVAL;
	CondType ct = COND_DNS_READY;
	bool unwanted = !in->game || !in->publish || in->deleting;
	bool have_alloc = in->hostname && *in->hostname && in->zone_name && *in->zone_name &&
	                  in->edge_ipv4 && *in->edge_ipv4;
	bool waiting = !unwanted && !have_alloc; /* W1 */

	TypePlan tp[T_N];
	memset(tp, 0, sizeof tp);
	for (int t = 0; t < T_N; t++) {
		if (have_alloc) {
			int r = recon_dns_desired(in, plan_types[t], &tp[t].spec, tp[t].name,
			                          tp[t].comment, tp[t].target);
			if (r < 0)
				return r;
		}
		tp[t].desired = !unwanted && have_alloc;
	}

	/* Classify. */
	const CfRecord *other[DNS_MAX_RECORDS];
	const CfRecord *all_ours[DNS_MAX_RECORDS];
	size_t n_other = 0, n_all_ours = 0;
	for (size_t i = 0; i < in->n_records; i++) {
		const CfRecord *rec = in->records[i];
		if (!rec)
			continue;
		char uid[64];
		bool ours =
		    cf_comment_uid(rec->comment, uid, sizeof uid) && strcasecmp(uid, in->uid) == 0;
		if (ours) {
			if (n_all_ours < DNS_MAX_RECORDS)
				all_ours[n_all_ours++] = rec;
			int t = rec->type == CF_TYPE_A     ? T_A
			        : rec->type == CF_TYPE_SRV ? T_SRV
			                                   : -1;
			if (t < 0) {
				if (n_other < DNS_MAX_RECORDS)
					other[n_other++] = rec;
			} else if (tp[t].n_ours < DNS_MAX_RECORDS) {
				tp[t].ours[tp[t].n_ours++] = rec;
			}
			continue;
		}
		for (int t = 0; t < T_N; t++)
			if (have_alloc && strcasecmp(rec->name, tp[t].name) == 0 &&
			    (rec->type == plan_types[t] || rec->type == CF_TYPE_CNAME) &&
			    !tp[t].collision)
				tp[t].collision = rec;
	}

	/* Decide each type (X1-X6). */
	for (int t = 0; t < T_N; t++) {
		TypePlan *x = &tp[t];
		if (!x->desired || !x->n_ours)
			continue;
		for (size_t i = 0; i < x->n_ours; i++) {
			const CfRecord *rec = x->ours[i];
			bool m = cf_record_matches(rec, &x->spec);
			bool km = x->keep && cf_record_matches(x->keep, &x->spec);
			if (!x->keep || (m && !km) || (m == km && older(rec, x->keep)))
				x->keep = rec;
		}
		x->conflict = x->collision != NULL; /* X6 */
		/* Never rename ours onto a name a foreign record holds. */
		x->update = !cf_record_matches(x->keep, &x->spec) &&
		            !(x->conflict && strcasecmp(x->keep->name, x->spec.name) != 0);
	}
	for (int t = 0; t < T_N; t++) {
		TypePlan *x = &tp[t];
		if (x->desired && !x->n_ours) {
			x->conflict = x->collision != NULL; /* X2 */
			x->create = !x->conflict; /* X3 */
		}
	}
	/* Is record r deleted by this plan (X0, X1, X4)? */
#define DELETED(rec, t) \
	(!waiting && ((t) < 0 || !tp[(t)].desired || (tp[(t)].keep && (rec) != tp[(t)].keep)))

	bool full = false;
	int r;
	/* J rows */
	for (size_t i = 0; i < in->n_ops; i++) {
		const DnsOp *op = &in->ops[i];
		if (!journal_step_is_open(op->step) || op->id <= 0)
			continue;
		int t = op->type == CF_TYPE_A ? T_A : op->type == CF_TYPE_SRV ? T_SRV : -1;
		r = 0;
		if (strcmp(op->action, "dns-create") == 0) {
			if (t >= 0 && tp[t].n_ours) { /* J1 */
				const CfRecord *k = tp[t].keep ? tp[t].keep : tp[t].ours[0];
				r = add(plan, &full, "settle-dns", NULL, false,
				        settle_args(op->id, true, k->id, NULL),
				        "record: the %s record %s exists (id %s)",
				        cf_type_to_string(op->type), k->name, k->id);
			} else if (t < 0 || !tp[t].create) { /* J2 */
				if (!waiting)
					r = add(plan, &full, "settle-dns", NULL, false,
					        settle_args(op->id, false, NULL,
					                    "no record after the call (observed)"),
					        "record: the %s create was not observed",
					        cf_type_to_string(op->type));
			}
		} else if (strcmp(op->action, "dns-update") == 0) {
			const CfRecord *rec =
			    t >= 0 ? find_ours_id(tp[t].ours, tp[t].n_ours, op->record_id) : NULL;
			if (!rec) /* J3 */
				r = add(plan, &full, "settle-dns", NULL, false,
				        settle_args(op->id, false, NULL, "record gone"),
				        "record: update of %s: the record is gone", op->record_id);
			else if (tp[t].desired && cf_record_matches(rec, &tp[t].spec)) /* J4 */
				r = add(plan, &full, "settle-dns", NULL, false,
				        settle_args(op->id, true, rec->id, NULL),
				        "record: %s %s is up to date", rec->type_name, rec->name);
			else if (!(tp[t].update && tp[t].keep == rec) && !waiting) /* J5 */
				r = add(plan, &full, "settle-dns", NULL, false,
				        settle_args(op->id, false, NULL, "superseded"),
				        "record: update of %s superseded", op->record_id);
		} else if (strcmp(op->action, "dns-delete") == 0) {
			const CfRecord *rec = find_ours_id(all_ours, n_all_ours, op->record_id);
			int rt = rec ? (rec->type == CF_TYPE_A     ? T_A
			                : rec->type == CF_TYPE_SRV ? T_SRV
			                                           : -1)
			             : -1;
			if (!rec) /* J6 */
				r = add(plan, &full, "settle-dns", NULL, false,
				        settle_args(op->id, true, op->record_id, NULL),
				        "record: %s is deleted", op->record_id);
			else if (!DELETED(rec, rt) && !waiting) /* J7 */
				r = add(plan, &full, "settle-dns", NULL, false,
				        settle_args(op->id, false, NULL, "superseded"),
				        "record: delete of %s superseded", op->record_id);
		}
		if (r < 0)
			return r;
	}

	/* X0, X1, X4: deletes. */
	bool deleting_any = false, dup_any = false;
	if (!waiting) {
		for (size_t i = 0; i < n_other; i++) {
			r = add(plan, &full, "dns-delete", "dns", true, delete_args(other[i]),
			        "delete our %s record %s (id %s)", other[i]->type_name,
			        other[i]->name, other[i]->id);
			if (r < 0)
				return r;
			deleting_any = true;
		}
		for (int t = 0; t < T_N; t++)
			for (size_t i = 0; i < tp[t].n_ours; i++) {
				const CfRecord *rec = tp[t].ours[i];
				if (!DELETED(rec, t))
					continue;
				r = add(plan, &full, "dns-delete", "dns", true, delete_args(rec),
				        "delete %s %s record %s (id %s)",
				        tp[t].desired ? "duplicate" : "our", rec->type_name,
				        rec->name, rec->id);
				if (r < 0)
					return r;
				deleting_any = true;
				dup_any |= tp[t].desired;
			}
	}
#undef DELETED

	/* X5, X3 */
	bool updating = false, creating = false;
	for (int t = 0; t < T_N; t++) {
		TypePlan *x = &tp[t];
		if (x->desired && x->update && x->keep) {
			json_t *args = recon_dns_spec_to_json(&x->spec);
			if (args)
				json_object_set_new(args, "id", json_string(x->keep->id));
			r = add(plan, &full, "dns-update", "dns", true, args,
			        "update %s record %s (id %s)", cf_type_to_string(x->spec.type),
			        x->spec.name, x->keep->id);
			if (r < 0)
				return r;
			updating = true;
		}
	}
	for (int t = 0; t < T_N; t++) {
		TypePlan *x = &tp[t];
		if (!x->create)
			continue;
		r = add(plan, &full, "dns-create", "dns", true, recon_dns_spec_to_json(&x->spec),
		        "create %s record %s", cf_type_to_string(x->spec.type), x->spec.name);
		if (r < 0)
			return r;
		creating = true;
	}
	if (full)
		plan_requeue_after(plan, 1);

	/* The condition. */
	if (!in->game) {
		plan_condition(plan, ct, deleting_any ? COND_FALSE : COND_TRUE,
		               deleting_any ? "Unpublishing" : "NotApplicable", "%s",
		               deleting_any
		                   ? "removing records of a server that is not a GameServer"
		                   : "only GameServers get DNS records");
		return 0;
	}
	if (in->deleting) {
		plan_condition(plan, ct, deleting_any ? COND_FALSE : COND_TRUE,
		               deleting_any ? "Deleting" : "Deleted", "%s",
		               deleting_any ? "deleting the records before the server"
		                            : "no records left");
		return 0;
	}
	if (!in->publish) {
		plan_condition(plan, ct, deleting_any ? COND_FALSE : COND_TRUE,
		               deleting_any ? "Unpublishing" : "NotApplicable", "%s",
		               deleting_any ? "spec.publish is false: removing the records"
		                            : "spec.publish is false");
		return 0;
	}
	if (waiting) {
		plan_condition(plan, ct, COND_FALSE, "WaitingForAllocation",
		               "no hostname allocated yet");
		plan_requeue_after(plan, in->settings.wait_requeue_ms);
		return 0;
	}
	for (int t = 0; t < T_N; t++)
		if (tp[t].conflict) {
			const CfRecord *c = tp[t].collision;
			char uid[64];
			bool zlh = cf_comment_uid(c->comment, uid, sizeof uid);
			plan_condition(plan, ct, COND_FALSE, "Conflict",
			               "%s record %s (id %s) %s; it is never touched", c->type_name,
			               c->name, c->id,
			               zlh ? "belongs to another server" : "was not made by zlh");
			return 0;
		}
	if (dup_any)
		plan_condition(plan, ct, COND_FALSE, "RemovingDuplicates",
		               "more than one record of a type carries our comment");
	else if (deleting_any)
		plan_condition(plan, ct, COND_FALSE, "Updating", "removing a stale record");
	else if (updating)
		plan_condition(plan, ct, COND_FALSE, "Updating", "updating records");
	else if (creating)
		plan_condition(plan, ct, COND_FALSE, "Creating", "creating records");
	else
		plan_condition(plan, ct, COND_TRUE, "Ready", "A %s -> %s; SRV %s -> %s:%" PRId64,
		               tp[T_A].spec.name, tp[T_A].spec.content, tp[T_SRV].spec.name,
		               tp[T_SRV].spec.srv.target, tp[T_SRV].spec.srv.port);
	return 0;
}

/* --- the snapshot ------------------------------------------------------------------------------ */

static int cmp_index(const void *a, const void *b)
{
	return strcmp(((const DnsIndex *)a)->key, ((const DnsIndex *)b)->key);
}

void recon_dns_snapshot_free(DnsSnapshot *s)
{
	if (!s)
		return;
	cf_record_list_clear(&s->list);
	free(s->uids);
	free(s->by_uid);
	free(s->by_name);
	free(s);
}

int recon_dns_snapshot_new(CfRecordList *list, DnsSnapshot **ret)
{
	DnsSnapshot *s = calloc(1, sizeof *s);
	if (!s) {
		cf_record_list_clear(list);
		return -ENOMEM;
	}
	s->list = *list;
	*list = (CfRecordList){0};
	size_t n = s->list.n, n_ours = 0;
	char uid[48];
	for (size_t i = 0; i < n; i++)
		n_ours += cf_comment_uid(s->list.items[i].comment, uid, sizeof uid);
	if (n) {
		s->by_name = calloc(n, sizeof *s->by_name);
		s->by_uid = n_ours ? calloc(n_ours, sizeof *s->by_uid) : NULL;
		s->uids = n_ours ? calloc(n_ours, sizeof *s->uids) : NULL;
		if (!s->by_name || (n_ours && (!s->by_uid || !s->uids))) {
			recon_dns_snapshot_free(s);
			return -ENOMEM;
		}
	}
	for (size_t i = 0; i < n; i++) {
		const CfRecord *r = &s->list.items[i];
		if (s->n_by_uid < n_ours &&
		    cf_comment_uid(r->comment, s->uids[s->n_by_uid], sizeof s->uids[0])) {
			s->by_uid[s->n_by_uid] = (DnsIndex){.key = s->uids[s->n_by_uid], .rec = r};
			s->n_by_uid++;
		}
		s->by_name[s->n_by_name++] = (DnsIndex){.key = r->name, .rec = r};
	}
	if (s->n_by_uid)
		qsort(s->by_uid, s->n_by_uid, sizeof *s->by_uid, cmp_index);
	if (s->n_by_name)
		qsort(s->by_name, s->n_by_name, sizeof *s->by_name, cmp_index);
	*ret = s;
	return 0;
}

/* Index of the first entry with key, or n. */
static size_t lower_bound(const DnsIndex *ix, size_t n, const char *key)
{
	size_t lo = 0, hi = n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (strcmp(ix[mid].key, key) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static size_t collect_key(const DnsIndex *ix, size_t n, const char *key, const CfRecord **out,
                          size_t k, size_t max)
{
	char low[CF_NAME_MAX];
	if (!key || cf_name_normalize(key, low, sizeof low) < 0)
		return k;
	for (size_t i = lower_bound(ix, n, low); i < n && strcmp(ix[i].key, low) == 0 && k < max;
	     i++) {
		bool dup = false;
		for (size_t j = 0; j < k && !dup; j++)
			dup = out[j] == ix[i].rec;
		if (!dup)
			out[k++] = ix[i].rec;
	}
	return k;
}

size_t recon_dns_collect(const DnsSnapshot *s, const char *uid, const char *a_name,
                         const char *srv_name, const CfRecord **out, size_t max)
{
	if (!s)
		return 0;
	size_t k = collect_key(s->by_uid, s->n_by_uid, uid, out, 0, max);
	k = collect_key(s->by_name, s->n_by_name, a_name, out, k, max);
	return collect_key(s->by_name, s->n_by_name, srv_name, out, k, max);
}

bool recon_dns_op_from_journal(const JournalOp *op, DnsOp *ret)
{
	if (!op || !op->action || strncmp(op->action, "dns-", 4) != 0)
		return false;
	*ret = (DnsOp){.id = op->id, .step = op->step};
	snprintf(ret->action, sizeof ret->action, "%s", op->action);
	const char *type = json_string_value(json_object_get(op->payload, "type"));
	ret->type = type ? cf_type_from_string(type) : CF_TYPE_OTHER;
	const char *id = json_string_value(json_object_get(op->payload, "id"));
	snprintf(ret->record_id, sizeof ret->record_id, "%s", id ? id : "");
	return true;
}

/* --- the runtime glue ------------------------------------------------------------------------ */

typedef struct DnsState {
	pthread_mutex_t lock;
	int64_t blocked_until_ms; /* monotonic: Cloudflare said 429 until then */
} DnsState;

typedef struct DnsWorker {
	CfClient *client;
} DnsWorker;

static const CondType dns_conditions[] = {COND_DNS_READY, _COND_TYPE_MAX};

static bool dns_enabled(const Config *cfg)
{
	return cfg && cfg->dns.enabled;
}

static int dns_init(const Config *cfg, void **ret_state)
{
	(void)cfg;
	DnsState *st = calloc(1, sizeof *st);
	if (!st)
		return -ENOMEM;
	pthread_mutex_init(&st->lock, NULL);
	*ret_state = st;
	return 0;
}

static void dns_done(void *state)
{
	DnsState *st = state;
	if (!st)
		return;
	pthread_mutex_destroy(&st->lock);
	free(st);
}

/* Milliseconds Cloudflare still refuses us, 0 when not blocked. */
static int64_t blocked_left(RecEnv *env)
{
	DnsState *st = env->state;
	if (!st)
		return 0;
	pthread_mutex_lock(&st->lock);
	int64_t left = st->blocked_until_ms - now_mono_ms();
	pthread_mutex_unlock(&st->lock);
	return left > 0 ? left : 0;
}

static void block_for(RecEnv *env, int64_t retry_after_s)
{
	DnsState *st = env->state;
	if (!st)
		return;
	int64_t ms = (retry_after_s > 0 ? retry_after_s : 1) * 1000;
	if (ms > 600000)
		ms = 600000; /* bound what a peer can ask */
	pthread_mutex_lock(&st->lock);
	int64_t until = now_mono_ms() + ms;
	if (until > st->blocked_until_ms)
		st->blocked_until_ms = until;
	pthread_mutex_unlock(&st->lock);
}

static int dns_worker_init(const Config *cfg, void *state, void **ret_wstate)
{
	(void)state;
	if (!cfg || !cfg->dns.api_url || !cfg->dns.zone_id || !cfg->dns.token)
		return -EINVAL;
	DnsWorker *w = calloc(1, sizeof *w);
	if (!w)
		return -ENOMEM;
	CfClientOptions o = {
	    .api_url = cfg->dns.api_url,
	    .zone_id = cfg->dns.zone_id,
	    .token = cfg->dns.token,
	};
	w->client = cf_client_new(&o);
	if (!w->client) {
		free(w);
		return -EINVAL;
	}
	*ret_wstate = w;
	return 0;
}

static void dns_worker_done(void *wstate)
{
	DnsWorker *w = wstate;
	if (!w)
		return;
	cf_client_free(w->client);
	free(w);
}

static void dns_snapshot_free(void *snapshot)
{
	recon_dns_snapshot_free(snapshot);
}

static int before_page(void *ctx, int64_t page)
{
	RecEnv *env = ctx;
	/* The first page is the pass's observation; later pages take the
	 * request budget like any call. */
	if (page > 1)
		return rec_rate_wait(env, "dns");
	return 0;
}

static int dns_observe(RecEnv *env, void **ret_snapshot)
{
	DnsWorker *w = env->wstate;
	if (!w || !w->client)
		return -EINVAL;
	if (blocked_left(env) > 0)
		return -EAGAIN; /* Retry-After still runs: no call at all */
	int64_t t0 = now_wall_ms();
	int64_t before = cf_client_requests(w->client);
	CfRecordList list = {0};
	CfError err = {.retry_after_s = -1};
	int r = cf_list_records(w->client, before_page, env, &list, &err);
	int64_t calls = cf_client_requests(w->client) - before;
	for (int64_t i = 0; i < calls; i++)
		rec_count_call(env, "dns", "GET", i + 1 < calls || r >= 0 ? 200 : err.http_status);
	if (r < 0) {
		if (r == -EAGAIN && err.http_status == 429)
			block_for(env, err.retry_after_s);
		log_debug("dns: listing failed: %s", err.message);
		return r;
	}
	DnsSnapshot *s = NULL;
	r = recon_dns_snapshot_new(&list, &s);
	if (r < 0)
		return r;
	s->listed_at_ms = t0;
	*ret_snapshot = s;
	return 0;
}

static void dns_obs_free(void *obs)
{
	free(obs);
}

static int dns_observe_server(RecEnv *env, const RuntimeServer *srv, const void *snapshot,
                              void **ret_obs)
{
	(void)snapshot;
	DnsObs *o = calloc(1, sizeof *o);
	if (!o)
		return -ENOMEM;
	if (env->db) {
		JournalOp *ops = NULL;
		size_t n = 0;
		StoreError err = {0};
		int r = journal_list_open(env->db, srv->uid, 100, &ops, &n, &err);
		if (r < 0) {
			free(o);
			return r;
		}
		for (size_t i = 0; i < n && o->n_ops < DNS_MAX_OPS; i++)
			if (recon_dns_op_from_journal(&ops[i], &o->ops[o->n_ops]))
				o->n_ops++;
		journal_ops_free(ops, n);
	}
	*ret_obs = o;
	return 0;
}

static bool spec_bool(const json_t *spec, const char *key, bool dflt)
{
	json_t *v = json_object_get(spec, key);
	return json_is_boolean(v) ? json_is_true(v) : dflt;
}

static int dns_plan_common(const Config *cfg, const RuntimeServer *srv, const void *snapshot,
                           const void *obs, bool deleting, Plan *plan)
{
	const DnsSnapshot *snap = snapshot;
	const DnsObs *o = obs;
	if (!cfg || !srv || !snap)
		return -ENODATA; /* never plan on an unknown listing */
	DnsInput in = {
	    .game = srv->kind && strcmp(srv->kind, "GameServer") == 0,
	    .deleting = deleting || srv->deleting,
	    .publish = spec_bool(srv->spec, "publish", true),
	    .uid = srv->uid,
	    .hostname = srv->hostname,
	    .zone_name = cfg->dns.zone_name,
	    .edge_ipv4 = cfg->dns.edge_ipv4,
	    .ops = o ? o->ops : NULL,
	    .n_ops = o ? o->n_ops : 0,
	};
	recon_dns_settings_init(&in.settings);
	char a_name[CF_NAME_MAX] = "", srv_name[CF_NAME_MAX] = "", comment[CF_NAME_MAX],
	     target[CF_NAME_MAX];
	CfRecordSpec spec;
	if (recon_dns_desired(&in, CF_TYPE_A, &spec, a_name, comment, target) < 0)
		a_name[0] = 0;
	if (recon_dns_desired(&in, CF_TYPE_SRV, &spec, srv_name, comment, target) < 0)
		srv_name[0] = 0;
	const CfRecord *recs[DNS_MAX_RECORDS];
	size_t n = recon_dns_collect(snap, srv->uid, a_name[0] ? a_name : NULL,
	                             srv_name[0] ? srv_name : NULL, recs, DNS_MAX_RECORDS);
	in.records = recs;
	in.n_records = n;
	return recon_dns_plan_input(&in, plan);
}

static int dns_plan(const Config *cfg, const RuntimeServer *srv, const void *snapshot,
                    const void *obs, Plan *plan)
{
	return dns_plan_common(cfg, srv, snapshot, obs, false, plan);
}

static int dns_finalize(const Config *cfg, const RuntimeServer *srv, const void *snapshot,
                        const void *obs, Plan *plan)
{
	return dns_plan_common(cfg, srv, snapshot, obs, true, plan);
}

/* --- acts ---------------------------------------------------------------------------------------- */

static int act_fail(ActResult *res, int r, const char *fmt, ...) _printf_(3, 4);
static int act_fail(ActResult *res, int r, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(res->error, sizeof res->error, fmt, ap);
	va_end(ap);
	return r;
}

static int act_settle(RecEnv *env, const Action *a, ActResult *res)
{
	json_int_t id = json_integer_value(json_object_get(a->args, "op"));
	const char *outcome = json_string_value(json_object_get(a->args, "outcome"));
	const char *handle = json_string_value(json_object_get(a->args, "handle"));
	const char *error = json_string_value(json_object_get(a->args, "error"));
	if (id <= 0 || !outcome)
		return act_fail(res, -EINVAL, "settle: bad arguments");
	StoreError err = {0};
	int r;
	if (strcmp(outcome, "done") == 0) {
		if (handle && *handle) {
			r = journal_set_handle(env->db, env->epoch, id, handle, &err);
			if (r < 0 && r != -EALREADY && r != -EEXIST)
				return act_fail(res, r, "journal: %s", err.message);
		}
		r = journal_done(env->db, env->epoch, id, NULL, &err);
	} else {
		r = journal_fail(env->db, env->epoch, id, error ? error : "failed", &err);
	}
	if (r < 0 && r != -EALREADY)
		return act_fail(res, r, "journal: %s", err.message);
	res->snapshot_updated = true; /* nothing changed in Cloudflare */
	return 0;
}

typedef enum DnsCall { CALL_CREATE, CALL_UPDATE, CALL_DELETE } DnsCall;

static int act_call(RecEnv *env, const RuntimeServer *srv, const Action *a, ActResult *res,
                    DnsCall kind)
{
	DnsWorker *w = env->wstate;
	static const char *const names[] = {"dns-create", "dns-update", "dns-delete"};
	static const char *const methods[] = {"POST", "PATCH", "DELETE"};
	const char *action = names[kind];
	if (!w || !w->client)
		return act_fail(res, -EINVAL, "%s: no client", action);
	CfRecordSpec spec = {0};
	const char *id = json_string_value(json_object_get(a->args, "id"));
	const char *type = json_string_value(json_object_get(a->args, "type"));
	if (kind != CALL_DELETE && recon_dns_spec_from_json(a->args, &spec) < 0)
		return act_fail(res, -EINVAL, "%s: bad record", action);
	if (kind != CALL_CREATE && (!id || !*id))
		return act_fail(res, -EINVAL, "%s: no record id", action);
	if (!type)
		return act_fail(res, -EINVAL, "%s: no type", action);

	/* Retry-After runs: no intent, no call; come back when it ends. */
	int64_t left = blocked_left(env);
	if (left > 0) {
		res->requeue_after_ms = left;
		return 0;
	}

	char part[CF_ID_MAX + 16];
	if (kind == CALL_CREATE)
		snprintf(part, sizeof part, "%s", type);
	else if (kind == CALL_UPDATE)
		snprintf(part, sizeof part, "%s-%s", type, id);
	else
		snprintf(part, sizeof part, "%s", id);
	char key[JOURNAL_KEY_MAX];
	int r = journal_key(srv->uid, action, part, 0, key, sizeof key);
	if (r < 0)
		r = journal_key(srv->uid, action, type, 0, key, sizeof key);
	if (r < 0)
		return act_fail(res, r, "%s: cannot build the journal key", action);
	StoreError serr = {0};
	JournalOp op = {0};
	r = journal_intent_retry(env->db, env->epoch, srv->uid, action, key, a->args, 0, &op,
	                         &serr);
	if (r < 0)
		return act_fail(res, r, "%s: journal intent: %s", action, serr.message);
	int64_t op_id = op.id;
	journal_op_clear(&op);
	crash_point(action, CRASH_STEP_INTENT);

	if (!rec_lease_valid(env))
		return act_fail(res, -ESTALE, "%s: lease not valid: no call made", action);
	CfError err = {.retry_after_s = -1};
	_cleanup_(cf_record_clear) CfRecord made = {0};
	switch (kind) {
	case CALL_CREATE:
		r = cf_create_record(w->client, &spec, &made, &err);
		break;
	case CALL_UPDATE:
		r = cf_patch_record(w->client, id, &spec, &made, &err);
		break;
	default:
		r = cf_delete_record(w->client, id, &err);
		break;
	}
	rec_count_call(env, "dns", methods[kind],
	               err.http_status ? err.http_status
	               : r >= 0        ? 200
	                               : 0);

	if (r >= 0) {
		crash_point(action, CRASH_STEP_CALL);
		const char *handle = kind == CALL_DELETE ? id : made.id;
		int k = journal_set_handle(env->db, env->epoch, op_id, handle, &serr);
		if (k < 0 && k != -EEXIST)
			return act_fail(res, k, "%s: journal handle: %s", action, serr.message);
		crash_point(action, CRASH_STEP_HANDLE);
		_cleanup_json_ json_t *result =
		    kind == CALL_DELETE ? json_pack("{s:s, s:b}", "id", id, "absent_before", r == 1)
		                        : json_pack("{s:s}", "id", made.id);
		k = journal_done(env->db, env->epoch, op_id, result, &serr);
		if (k < 0)
			return act_fail(res, k, "%s: journal done: %s", action, serr.message);
		crash_point(action, CRASH_STEP_DONE);
		const char *name = kind == CALL_DELETE
		                       ? json_string_value(json_object_get(a->args, "name"))
		                       : spec.name;
		rec_event(env, srv, "Normal",
		          kind == CALL_CREATE   ? "DNSRecordCreated"
		          : kind == CALL_UPDATE ? "DNSRecordUpdated"
		                                : "DNSRecordDeleted",
		          "%s record %s (id %s)", type, name ? name : "", handle);
		return 0;
	}

	if (r == -EAGAIN && err.http_status == 429) {
		/* Refused before anything happened: wait as asked; the
		 * intent stays open and is resumed then. */
		block_for(env, err.retry_after_s);
		res->requeue_after_ms = blocked_left(env);
		if (res->requeue_after_ms <= 0)
			res->requeue_after_ms = 1000;
		rec_event(env, srv, "Warning", "RateLimited",
		          "Cloudflare rate limit: waiting %" PRId64 " s", err.retry_after_s);
		return 0;
	}
	if (kind == CALL_UPDATE && r == -ENOENT) {
		/* The record vanished: the next listing decides (create). */
		int k = journal_fail(env->db, env->epoch, op_id, "record does not exist", &serr);
		if (k < 0 && k != -EALREADY)
			log_debug("dns: journal fail: %s", serr.message);
		return 0;
	}
	/* No answer: the request may have landed (unknown), or never left
	 * (refused connection). An answer that does not say "refused": a 5xx,
	 * a 503, a malformed 2xx, or "an identical record exists" (ours, from
	 * a resend, or a foreign one): the next listing decides. */
	bool answered = err.http_status != 0;
	bool unknown = answered ? (r == -EREMOTEIO || r == -EAGAIN || r == -EBADMSG || r == -EEXIST)
	                        : http_outcome_unknown(r);
	if (unknown || !answered) {
		if (unknown) {
			int k = journal_mark_call(env->db, env->epoch, op_id, &serr);
			if (k < 0 && k != -EALREADY)
				log_debug("dns: journal mark_call: %s", serr.message);
		}
		return act_fail(res, r, "%s %s: %s%s", action, spec.name ? spec.name : id,
		                err.message,
		                unknown ? " (outcome unknown: the next listing decides)" : "");
	}
	int k = journal_fail(env->db, env->epoch, op_id, err.message, &serr);
	if (k < 0 && k != -EALREADY)
		log_debug("dns: journal fail: %s", serr.message);
	rec_event(env, srv, "Warning", "DNSCallFailed", "%s %s: %s", action,
	          spec.name ? spec.name : id, err.message);
	return act_fail(res, r, "%s %s: %s", action, spec.name ? spec.name : id, err.message);
}

static int dns_act(RecEnv *env, const RuntimeServer *srv, void *snapshot, void *obs,
                   const Action *action, ActResult *res)
{
	(void)snapshot;
	(void)obs;
	if (!env || !srv || !action)
		return -EINVAL;
	if (!env->db)
		return act_fail(res, -ENOTCONN, "no database connection");
	if (strcmp(action->name, "dns-create") == 0)
		return act_call(env, srv, action, res, CALL_CREATE);
	if (strcmp(action->name, "dns-update") == 0)
		return act_call(env, srv, action, res, CALL_UPDATE);
	if (strcmp(action->name, "dns-delete") == 0)
		return act_call(env, srv, action, res, CALL_DELETE);
	if (strcmp(action->name, "settle-dns") == 0)
		return act_settle(env, action, res);
	return act_fail(res, -EINVAL, "unknown action %s", action->name);
}

const Reconciler recon_dns = {
    .name = "dns",
    .order = 50,
    .conditions = dns_conditions,
    .uses_finalizer = true,
    .enabled = dns_enabled,
    .init = dns_init,
    .done = dns_done,
    .worker_init = dns_worker_init,
    .worker_done = dns_worker_done,
    .observe = dns_observe,
    .snapshot_free = dns_snapshot_free,
    .observe_server = dns_observe_server,
    .obs_free = dns_obs_free,
    .plan = dns_plan,
    .finalize = dns_finalize,
    .act = dns_act,
};
