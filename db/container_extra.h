/* container_extra.h - the container reconciler's reads that db/journal.h and
 * db/alloc.h do not cover, in one round trip per reconcile.
 *
 * Conventions of db/store.h: a borrowed PGconn, PQexecParams only, 0 or a
 * negative errno, err (may be NULL) filled on failure only, ret_ written on
 * success only. Reads only: nothing here is fenced. */
#pragma once

#include <stdint.h>

#include <libpq-fe.h>

#include "cleanup.h"
#include "db/store.h"

typedef struct CtStoreView {
	int64_t incarnation; /* server_status.incarnation */
	int64_t db_now_ms; /* the database's wall clock (clock_timestamp), ms */
	int64_t restart_at_ms; /* spec.restartAt as wall ms (parsed by the database); 0 = none */
	int64_t last_restart_at_ms; /* the largest payload restartAtMs of a done operation; 0 */
	int64_t open_ops; /* operations of the server not completed (intent, call, handle) */
} CtStoreView;

/* Reads the view of server uid (borrowed). -ENOENT when the server is gone,
 * -EINVAL for a bad uid, -errno. */
int ct_store_view(PGconn *c, const char *uid, CtStoreView *ret, StoreError *err) _must_check_;

/* Every server's uid and allocated vmid (0 = none), for orphan
 * classification: *ret_uids (new, NULL-terminated strv) and *ret_vmids (new,
 * same order). Returns the count. */
int ct_store_known(PGconn *c, char ***ret_uids, int64_t **ret_vmids, StoreError *err) _must_check_;
