/* dns.h - the DNS reconciler (recon_dns): the public records of published
 * GameServers in Cloudflare (DESIGN.md sections 6 and 7, issue 6).
 * Condition DNSReady; finalizer "dns".
 *
 * For each GameServer with spec.publish, in zone dns.zone_name:
 *   A    <hostname>.<zone>                  -> dns.edge_ipv4, TTL 60, not proxied
 *   SRV  _minecraft._tcp.<hostname>.<zone>  -> {priority 0, weight 0, port 25565,
 *                                               target <hostname>.<zone>}, TTL 60
 * both with the comment "zlh:uid=<uid>". The comment is the ownership:
 * records without it (www, api, mail, a hand-made record with our name)
 * are never changed or deleted; a foreign record at one of our names is a
 * Conflict (DNSReady False), never overwritten.
 *
 * How the runtime drives it:
 *   observe         one paginated listing of the zone per pass (DnsSnapshot,
 *                   indexed by our comment's uid and by name); a failed
 *                   listing (any page) is unknown, never empty. While
 *                   Cloudflare's Retry-After of a 429 runs, no call is made
 *                   at all (observe fails with -EAGAIN, acts requeue).
 *   observe_server  the server's open dns-* journal operations (DnsObs)
 *   plan/finalize   recon_dns_plan_input() (pure; decision table in dns.c)
 *   act             dns-create (POST on a fresh connection), dns-update
 *                   (PATCH), dns-delete (DELETE; 404 = gone), each
 *                   journaled intent -> call -> handle (record id) -> done;
 *                   settle-dns (store only) closes an operation whose
 *                   outcome the listing now shows - a create whose reply was
 *                   lost is adopted from the listing, never made twice.
 *
 * Journal keys (journal_intent_retry: an open attempt is resumed, a
 * completed one gets attempt #n+1): "<uid>:dns-create:<A|SRV>:0",
 * "<uid>:dns-update:<TYPE>-<record id>:0", "<uid>:dns-delete:<record id>:0".
 * Payload: the record as sent plus "type" (and "id" for update/delete).
 *
 * Crash points (lib/crash.h): dns-create, dns-update, dns-delete x intent,
 * call, handle, done. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "controller/reconciler.h"
#include "db/journal.h"
#include "reconcilers/cloudflare.h"

extern const Reconciler recon_dns;
#define ZLH_HAVE_RECON_DNS 1

#define DNS_SRV_SERVICE "_minecraft._tcp."
#define DNS_GAME_PORT 25565
#define DNS_MAX_OPS 32 /* open operations a plan looks at */
#define DNS_MAX_RECORDS 64 /* records of one server a plan looks at */

typedef struct DnsSettings {
	int64_t ttl; /* 60 */
	int64_t port; /* 25565 */
	int64_t wait_requeue_ms; /* no allocation yet: 3 s */
} DnsSettings;

void recon_dns_settings_init(DnsSettings *s);

/* An open dns-* journal operation. */
typedef struct DnsOp {
	int64_t id;
	JournalStep step;
	char action[JOURNAL_ACTION_MAX + 1]; /* dns-create | dns-update | dns-delete */
	CfType type; /* payload "type" */
	char record_id[CF_ID_MAX]; /* payload "id" (update, delete); "" for create */
} DnsOp;

/* Everything the plan looks at. Pointers borrowed. */
typedef struct DnsInput {
	bool game; /* kind GameServer */
	bool deleting; /* finalize */
	bool publish; /* spec.publish (default true) */
	const char *uid;
	const char *hostname; /* allocated hostname; NULL = none yet */
	const char *zone_name; /* dns.zone_name */
	const char *edge_ipv4; /* dns.edge_ipv4 */
	/* The server's records: those whose comment names uid, and any other
	 * record at one of the desired names (collisions). Others are ignored. */
	const CfRecord *const *records;
	size_t n_records;
	const DnsOp *ops; /* open dns-* operations of the server */
	size_t n_ops;
	DnsSettings settings;
} DnsInput;

/* The pure plan. Fills the DNSReady condition and actions:
 *   "dns-create"  args: the record (cf_record_body's fields) + "type"
 *   "dns-update"  args: the record + "id"
 *   "dns-delete"  args {"id","type","name"}
 *   "settle-dns"  args {"op","outcome":"done"|"failed","handle"?,"error"?}
 * 0 or -EINVAL. */
int recon_dns_plan_input(const DnsInput *in, Plan *plan) _must_check_;

/* The desired record of type t (CF_TYPE_A or CF_TYPE_SRV) for in into
 * *ret, its strings in name/comment/content buffers the caller gives (each
 * CF_NAME_MAX). -EINVAL when in lacks a hostname, zone or edge address. */
int recon_dns_desired(const DnsInput *in, CfType t, CfRecordSpec *ret, char *name, char *comment,
                      char *target) _must_check_;

/* Record JSON (action args) <-> CfRecordSpec. spec_from_json's strings are
 * borrowed from j. */
json_t *recon_dns_spec_to_json(const CfRecordSpec *s);
int recon_dns_spec_from_json(const json_t *j, CfRecordSpec *ret) _must_check_;

/* The snapshot observe() returns, exposed for tests that drive the
 * reconciler without the runtime. */
typedef struct DnsIndex {
	const char *key; /* uid (by_uid, in uids) or the record's name; lower-case */
	const CfRecord *rec; /* borrowed from list */
} DnsIndex;

typedef struct DnsSnapshot {
	CfRecordList list;
	char (*uids)[48]; /* the by_uid keys */
	DnsIndex *by_uid; /* records with a zlh:uid= comment, sorted by uid */
	size_t n_by_uid;
	DnsIndex *by_name; /* every record, sorted by name */
	size_t n_by_name;
	int64_t listed_at_ms;
} DnsSnapshot;

/* Builds a snapshot over list (takes its contents). 0 or -ENOMEM (list
 * released). *ret new. */
int recon_dns_snapshot_new(CfRecordList *list, DnsSnapshot **ret) _must_check_;
void recon_dns_snapshot_free(DnsSnapshot *s);

/* Collects srv's records from the snapshot (ours by uid, plus collisions
 * at the desired names) into out (at most max). Returns the count. */
size_t recon_dns_collect(const DnsSnapshot *s, const char *uid, const char *a_name,
                         const char *srv_name, const CfRecord **out, size_t max);

typedef struct DnsObs {
	DnsOp ops[DNS_MAX_OPS];
	size_t n_ops;
} DnsObs;

/* Fills a DnsOp from a journal row; false when it is not a dns-* row. */
bool recon_dns_op_from_journal(const JournalOp *op, DnsOp *ret);
