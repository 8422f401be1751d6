/* alloc.h - allocations (vmid, IP, hostname, node) and each server's
 * incarnation (DESIGN.md sections 5, 6 and 7 rule 2; issue 5).
 *
 * An allocation is taken in ONE transaction with the intent that uses it
 * (alloc_take): fence, the server's runtime lock, the lowest free vmid of
 * the range (not allocated, not quarantined), the lowest free IPv4 address
 * of the network (not the network, gateway or broadcast address), the
 * hostname (spec.hostname, or the default "<prefix><vmid>": "mc-paper-5003",
 * "dev-5004"), the journal intent, and the status's vmid/node/ip/hostname.
 * UNIQUE constraints on vmid, ip and hostname make a double allocation
 * impossible even with two writers racing; allocations also pick and
 * insert one at a time under a transaction-level pool lock. A default
 * hostname that another server claims as its spec.hostname moves on to the
 * next vmid.
 *
 * The incarnation (server_status.incarnation, 1 for a new server) goes up
 * each time the server's container must be made again: it was lost
 * (RECREATE: alloc_bump_incarnation), or its vmid turned out to be taken by
 * a foreign guest (QUARANTINE_VMID: alloc_quarantine). Journal keys carry
 * it (db/journal.h), so the new container's create is a new intent.
 *
 * Every write takes the lease epoch and fences in its own transaction
 * (-ESTALE: a newer epoch exists, nothing written), and takes the server's
 * runtime lock of 002 (-EBUSY: another transaction is writing this server;
 * requeue). Errnos beyond db/store.h's and db/runtime.h's:
 *   -ENOSPC     no free vmid in the range, or no free address in the network
 *   -EALREADY   the incarnation is not the one the caller planned with:
 *               another pass moved it; plan again
 *   -EADDRINUSE the server's spec.hostname is allocated to another server
 *   -EAGAIN     allocation kept colliding (bounded retries); try again
 *
 * Conventions of db/store.h: a borrowed PGconn, PQexecParams only, 0 or a
 * positive count, a negative errno, err (may be NULL) filled on failure
 * only, ret_ parameters written on success only. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>
#include <libpq-fe.h>

#include "cleanup.h"
#include "db/journal.h"
#include "db/store.h"

#define ALLOC_NODE_MAX 64 /* node names: up to 63 bytes */
#define ALLOC_IP_MAX 64
#define ALLOC_HOSTNAME_MAX 64 /* a DNS label: up to 63 bytes */

typedef struct Allocation {
	char uid[37];
	int64_t vmid;
	char node[ALLOC_NODE_MAX]; /* "" when unknown */
	char ip[ALLOC_IP_MAX]; /* "10.60.0.5" (no prefix); "" when none */
	char hostname[ALLOC_HOSTNAME_MAX]; /* the hostname claimed; "" when none */
	int64_t memory_mib; /* reserved when taken */
} Allocation;

/* Where allocations come from (the controller's proxmox.vmid_range and
 * network.cidr / network.gateway). Strings borrowed. */
typedef struct AllocPool {
	int64_t vmid_min, vmid_max; /* inclusive, 100..999999999 */
	const char *cidr; /* IPv4 network, "10.60.0.0/24" */
	const char *gateway; /* "10.60.0.1" (never handed out) */
} AllocPool;

/* The intent written in the allocation's transaction. Borrowed. */
typedef struct AllocIntent {
	const char *action; /* "create" | "clone" */
	const char *idem_key; /* journal_key(uid, action, generation, incarnation) */
	const json_t *payload; /* may be NULL */
	int64_t incarnation; /* must be the server's current one (-EALREADY) */
} AllocIntent;

/* Takes the server's allocation on node (borrowed) from pool, or returns
 * the one it has (then node, pool, hostname and memory are not looked at).
 * The intent is written either way: after RECREATE (incarnation bumped,
 * same allocation) this is how the new create intent is written with the
 * allocation it uses.
 * hostname_or_NULL: spec.hostname; NULL: "<hostname_prefix><vmid>"
 * (prefix "mc-<variant>-" or "dev-"). memory_mib: the reservation.
 * intent_or_NULL: written (or found: ret_op->existed) in the same
 * transaction. *ret, and *ret_op_or_NULL when intent_or_NULL is given
 * (contents new: journal_op_clear), on success. Returns 1 when a new
 * allocation was taken, 0 when it existed, or -ENOSPC, -EALREADY, -ENOENT
 * (no such server), -EADDRINUSE, -EAGAIN, -EINVAL, -ESTALE, -EBUSY, -errno. */
int alloc_take(PGconn *c, int64_t epoch, const char *uid, const char *node, const AllocPool *pool,
               const char *hostname_or_NULL, const char *hostname_prefix, int64_t memory_mib,
               const AllocIntent *intent_or_NULL, Allocation *ret, JournalOp *ret_op_or_NULL,
               StoreError *err) _must_check_;

/* The server's allocation. -ENOENT when it has none. */
int alloc_get(PGconn *c, const char *uid, Allocation *ret, StoreError *err) _must_check_;

/* The server's current incarnation. -ENOENT when the server is gone. */
int alloc_incarnation(PGconn *c, const char *uid, int64_t *ret, StoreError *err) _must_check_;

/* Compare-and-set: expected -> expected + 1 (*ret_new). Two passes that
 * planned with the same incarnation cannot both bump it: the second gets
 * -EALREADY. -ENOENT server gone, -ESTALE, -EBUSY. */
int alloc_bump_incarnation(PGconn *c, int64_t epoch, const char *uid, int64_t expected,
                           int64_t *ret_new, StoreError *err) _must_check_;

/* Records vmid (on node_or_NULL, for reason_or_NULL) as quarantined: never
 * allocated again (a repeat refreshes when it was seen). When it is server
 * uid's allocated vmid, the allocation is dropped (status vmid/node/ip/
 * hostname cleared) and the incarnation bumped - compare-and-set against
 * expected_incarnation when > 0 (-EALREADY, nothing written, not even the
 * quarantine) - so the next pass allocates anew under a new incarnation.
 * When it is not (a repeat after a crash), the incarnation is left alone. uid_or_NULL: record only.
 * Returns 1 when the allocation was dropped, 0 otherwise; *ret_incarnation
 * (may be NULL) the server's incarnation afterwards (0 with no uid).
 * -ENOENT (server gone), -ESTALE, -EBUSY. */
int alloc_quarantine(PGconn *c, int64_t epoch, const char *uid_or_NULL, int64_t vmid,
                     const char *node_or_NULL, const char *reason_or_NULL,
                     int64_t expected_incarnation, int64_t *ret_incarnation,
                     StoreError *err) _must_check_;

/* The container moved to node (borrowed): the allocation and status follow.
 * 0, -ENOENT (no allocation, or server gone), -ESTALE, -EBUSY. */
int alloc_follow_node(PGconn *c, int64_t epoch, const char *uid, const char *node,
                      StoreError *err) _must_check_;

/* Sets the allocated hostname to hostname_or_NULL (the new spec.hostname)
 * or, when NULL, back to "<hostname_prefix><vmid>"; the status follows.
 * *ret_or_NULL the allocation afterwards. 1 changed, 0 already so,
 * -ENOENT (no allocation, or server gone), -EADDRINUSE (another server
 * claims or holds the name), -ESTALE, -EBUSY. */
int alloc_set_hostname(PGconn *c, int64_t epoch, const char *uid, const char *hostname_or_NULL,
                       const char *hostname_prefix, Allocation *ret_or_NULL,
                       StoreError *err) _must_check_;

/* Frees the server's allocation - only once its container is really gone -
 * and clears vmid/node/ip/hostname in its status. vmid > 0: only when the
 * allocation is still that vmid (a stale plan never frees a newer one).
 * 1 freed, 0 nothing to free (idempotent), -ESTALE, -EBUSY. */
int alloc_release(PGconn *c, int64_t epoch, const char *uid, int64_t vmid,
                  StoreError *err) _must_check_;

typedef struct AllocReserved {
	char node[ALLOC_NODE_MAX];
	int64_t reserved_mib; /* sum of the allocated servers' spec memory */
	int64_t servers; /* how many allocations on the node */
} AllocReserved;

/* Memory the database has reserved per node: the sum of every allocated
 * server's spec.resources.memoryMiB (the allocation's memory when the spec
 * has none), what placement counts besides the observed use
 * (CtReserved). *ret (new, free(); NULL when none) ordered by node;
 * returns the count. */
int alloc_reserved_by_node(PGconn *c, AllocReserved **ret, size_t *ret_n,
                           StoreError *err) _must_check_;

/* Every allocation (orphan detection: vmid -> uid), ordered by vmid.
 * *ret (new, free(); NULL when none); returns the count. */
int alloc_list_all(PGconn *c, Allocation **ret, size_t *ret_n, StoreError *err) _must_check_;

typedef struct AllocQuarantined {
	int64_t vmid;
	char node[ALLOC_NODE_MAX]; /* "" when unknown */
	char reason[256]; /* truncated */
	int64_t created_ms; /* wall ms first quarantined */
	int64_t seen_ms; /* wall ms last reported */
} AllocQuarantined;

/* Every quarantined vmid, ordered by vmid. *ret (new, free(); NULL when
 * none); returns the count. */
int alloc_quarantined_list(PGconn *c, AllocQuarantined **ret, size_t *ret_n,
                           StoreError *err) _must_check_;
