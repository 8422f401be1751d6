/* runtime.h - the SQL of the controller runtime (DESIGN.md sections 7.5, 8):
 * the leader lease, listing servers, loading one server for a reconcile,
 * and the fenced writes (status, events, finalizers, final removal).
 *
 * The lease and the fenced writes are SQL functions of
 * db/migrations/002_runtime.sql; this module calls them, one round trip
 * each. Every fenced write runs zlh.fence(epoch) first in its transaction:
 * the lease row is locked FOR SHARE until the transaction ends, and a newer
 * epoch makes the write fail with -ESTALE. Other db/ modules writing for the
 * leader (journal, allocations) fence the same way: `SELECT zlh.fence($1)`
 * as the first statement of their transaction, or runtime_fence().
 *
 * Conventions of db/store.h: a borrowed PGconn, PQexecParams only, 0 (or a
 * count) or a negative errno, err (may be NULL) filled on failure only.
 * Errnos beyond store.h's table:
 *   -ESTALE  a newer lease epoch exists (SQLSTATE ZL006): step down
 *   -EBUSY   another transaction holds the server's runtime lock (ZL007)
 * Connection loss is -ECONNRESET (store_errno_is_connection()). */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>
#include <libpq-fe.h>

#include "cleanup.h"
#include "db/store.h"

#define RUNTIME_LEASE_DEFAULT "default"
#define RUNTIME_NOTIFY_CHANNEL "zlh_work"
#define RUNTIME_PAUSED_ANNOTATION "zlh.dev/paused"

typedef enum ServerPhase {
	PHASE_PENDING,
	PHASE_PROVISIONING,
	PHASE_READY,
	PHASE_DEGRADED,
	PHASE_STOPPED,
	PHASE_DELETING,
	PHASE_FAILED,
	_PHASE_MAX,
	_PHASE_INVALID = -1,
} ServerPhase;

/* "Pending", ... (static), or NULL for an invalid value. */
const char *runtime_phase_to_string(ServerPhase p);
/* The phase named s, or _PHASE_INVALID. */
ServerPhase runtime_phase_from_string(const char *s);

/* --- lease ----------------------------------------------------------------- */

typedef struct LeaseClaim {
	bool acquired; /* the caller holds the lease now */
	int64_t epoch; /* the lease's epoch (the caller's when acquired) */
	char holder[128]; /* the current holder ("" when free) */
	int64_t remaining_ms; /* acquired: the duration; else until expiry */
} LeaseClaim;

/* zlh.lease_claim: renews when the caller holds `lease` under epoch
 * (epoch > 0) and it has not expired; takes it over with epoch + 1 when it
 * is free, expired, or held by the caller under another epoch; otherwise
 * reports the holder. lease/holder borrowed. 0 and *ret filled, or -errno. */
int runtime_lease_claim(PGconn *c, const char *lease, const char *holder, int64_t epoch,
                        int64_t duration_ms, LeaseClaim *ret, StoreError *err) _must_check_;
/* Gives the lease up (clean shutdown). 1 released, 0 not held, or -errno. */
int runtime_lease_release(PGconn *c, const char *lease, const char *holder, int64_t epoch,
                          StoreError *err);
/* Inside the caller's transaction: locks the default lease row FOR SHARE
 * and checks epoch. 0 or -ESTALE (the transaction is then failed: roll it
 * back), -errno. */
int runtime_fence(PGconn *c, int64_t epoch, StoreError *err) _must_check_;

/* --- reading ----------------------------------------------------------------- */

/* A server row with its status, for one reconcile. All strings new. */
typedef struct RuntimeServer {
	char uid[37];
	char *kind; /* "GameServer" | "DevServer" */
	char *owner;
	char *name;
	int64_t generation;
	json_t *spec; /* object */
	json_t *labels; /* object */
	json_t *annotations; /* object */
	bool paused; /* annotations["zlh.dev/paused"] == "true" */
	bool deleting; /* deletion_requested_at is set */
	char **finalizers; /* NULL-terminated, never NULL */

	/* status */
	int64_t observed_generation;
	ServerPhase phase;
	json_t *conditions; /* array, as stored */
	int64_t vmid; /* -1 when NULL */
	char *node; /* NULL when not allocated */
	char *ip;
	char *hostname;
	char *last_error;
} RuntimeServer;

RuntimeServer *runtime_server_free(RuntimeServer *s);
DEFINE_TRIVIAL_CLEANUP_FUNC(RuntimeServer *, runtime_server_free)
#define _cleanup_runtime_server_ _cleanup_(runtime_server_freep)
/* True when s has the finalizer name. */
bool runtime_server_has_finalizer(const RuntimeServer *s, const char *name);

/* Loads one server and its status in one query. -ENOENT when it does not
 * exist (any more). *ret (new) set on success. */
int runtime_server_load(PGconn *c, const char *uid, RuntimeServer **ret,
                        StoreError *err) _must_check_;

/* Every server's uid (a resync requeues them all), NULL-terminated (new).
 * Returns the count. */
int runtime_server_keys(PGconn *c, char ***ret_uids, StoreError *err) _must_check_;

typedef struct PhaseCounts {
	int64_t total;
	int64_t by_phase[_PHASE_MAX];
} PhaseCounts;
/* Servers per phase (STATUS= and metrics). */
int runtime_phase_counts(PGconn *c, PhaseCounts *ret, StoreError *err) _must_check_;

/* --- fenced writes --------------------------------------------------------------- */

/* Writes observed_generation, phase, conditions (borrowed, an array) and
 * last_error (NULL clears it). 0, -ENOENT (server gone), -ESTALE, -EBUSY,
 * -errno. */
int runtime_status_write(PGconn *c, int64_t epoch, const char *uid, int64_t observed_generation,
                         ServerPhase phase, const json_t *conditions, const char *last_error,
                         StoreError *err) _must_check_;

/* Records an event (type "Normal" | "Warning"); the same type, reason and
 * message as the server's latest event is counted, not inserted again.
 * Returns the event id (> 0) or -ESTALE, -errno. */
int64_t runtime_event_record(PGconn *c, int64_t epoch, const char *uid, const char *type,
                             const char *reason, const char *message, StoreError *err);

/* Adds (add = true) or removes a finalizer name. 0, -ENOENT, -ESTALE,
 * -EBUSY, -errno. */
int runtime_finalizer_set(PGconn *c, int64_t epoch, const char *uid, const char *name, bool add,
                          StoreError *err) _must_check_;

/* Removes a server being deleted whose finalizers are all gone (its status
 * and allocations with it). 1 removed, 0 not removable (absent, not being
 * deleted, finalizers left), -ESTALE, -EBUSY, -errno. */
int runtime_server_remove(PGconn *c, int64_t epoch, const char *uid, StoreError *err) _must_check_;

/* --- connections --------------------------------------------------------------------- */

/* Per-connection settings: statement_timeout (ms, 0 = none) so no query
 * can wedge a thread, and application_name (borrowed) for pg_stat_activity. */
int runtime_session_setup(PGconn *c, int64_t statement_timeout_ms, const char *application_name,
                          StoreError *err) _must_check_;

/* --- notifications ------------------------------------------------------------------ */

/* LISTEN zlh_work on c. */
int runtime_listen(PGconn *c, StoreError *err) _must_check_;
/* Reads what arrived on c's socket and returns the payloads of pending
 * zlh_work notifications (new, NULL-terminated; at most max) in *ret.
 * Returns the count, or -ECONNRESET when the connection is lost. */
int runtime_notifies(PGconn *c, size_t max, char ***ret, StoreError *err) _must_check_;
