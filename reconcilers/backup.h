/* backup.h - the backup reconciler (recon_backup): scheduled world backups
 * of GameServers, retention, restore exactly once per request, and a final
 * backup before delete (DESIGN.md sections 4, 6 and 7, issue 7). Condition
 * BackupsHealthy; finalizer "backup" (order 30: finalized after dns and
 * proxy, before agent and container).
 *
 * How the runtime drives it:
 *   observe         nothing shared (a stub snapshot holding the time)
 *   observe_server  the journal (latest "backup" operation, consecutive
 *                   failures, open "backup-delete" operations, the final
 *                   backup's and the restore request's operations), and -
 *                   only while ContainerReady is True/Running and the server
 *                   has an address - one GET /backups and one GET /status of
 *                   its agent (BackupObs). A failed agent call leaves the
 *                   listing unknown: the plan then decides nothing.
 *   plan/finalize   recon_backup_plan_input() on a BkInput. Pure: the clock
 *                   comes in as now_ms.
 *   act             backup | restore | backup-delete (one agent call each,
 *                   journaled intent -> call -> handle -> done), or
 *                   settle-backup | settle-restore | settle-delete (store
 *                   only: an open operation whose outcome the observation
 *                   now shows).
 *
 * Journal keys (db/journal.h), incarnation always 0 (backups outlive the
 * container): "<uid>:backup:<slot>:0" (attempt n >= 2: "#n"),
 * "<uid>:backup:final:0", "<uid>:restore:<requestId>:0",
 * "<uid>:backup-delete:<backup id>:0". Backup names: "zlh-<uid8>-<slot>"
 * (attempt n >= 2: "zlh-<uid8>-<slot>-<n>"), final "zlh-<uid8>-final".
 *
 * Crash points (lib/crash.h): actions "backup", "restore",
 * "backup-delete"; steps intent, call, handle, done. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "controller/reconciler.h"
#include "db/journal.h"
#include "reconcilers/agentapi_backup.h"

extern const Reconciler recon_backup;
#define ZLH_HAVE_RECON_BACKUP 1

#define BACKUP_SLOT_FINAL (-1)

typedef struct BkSettings {
	/* BackupsHealthy turns False after this many consecutive failures. */
	int fail_threshold; /* 3 */
	/* First backup: the agent must have been ready this long. 0 =
	 * min(60 s, every / 2). */
	int64_t first_grace_ms;
	/* Polling a running backup or restore. 0 = clamp(every / 10, 200 ms,
	 * 5 s). */
	int64_t poll_ms;
	/* Retry after a failure: base * 2^(failures-1), capped at every and at
	 * backoff_max_ms. base 0 = clamp(every / 8, 250 ms, 30 s). */
	int64_t backoff_base_ms;
	int64_t backoff_max_ms; /* 1 h */
	/* Look again this soon while waiting for the container or agent. */
	int64_t wait_requeue_ms; /* 5 s */
} BkSettings;

void recon_backup_settings_init(BkSettings *s);

/* One journal operation as the plan needs it (id 0 = none). */
typedef struct BkOp {
	int64_t id;
	JournalStep step;
	int64_t attempt;
	int64_t slot; /* payload slot (BACKUP_SLOT_FINAL for the final one) */
	bool final;
	char name[AGENTAPI_BACKUP_NAME_MAX]; /* payload name (backup) */
	char target[AGENTAPI_BACKUP_ID_MAX]; /* restore: payload backup; delete: payload id */
	char handle[AGENTAPI_BACKUP_ID_MAX]; /* "" until saved */
	char error[128];
	int64_t completed_ms;
} BkOp;

#define BK_MAX_OPEN_DELETES 8

/* Everything the plan looks at. Pointers borrowed. */
typedef struct BkInput {
	const char *uid;
	bool game; /* GameServer (DevServer: NotApplicable) */
	bool deleting; /* finalize */
	bool power_running; /* spec.power running */
	bool container_running; /* ContainerReady True, reason Running */
	bool agent_ready; /* AgentReady True (Disabled counts as ready) */
	int64_t agent_since_ms; /* wall ms AgentReady last changed, 0 unknown */
	int64_t now_ms; /* wall clock */

	/* spec.backups / spec.restore */
	int64_t every_ms; /* 0: no schedule (every: null) */
	int64_t keep; /* 0: keep everything */
	bool before_delete;
	const char *restore_backup; /* NULL: no restore asked */
	const char *restore_request;

	/* the agent (observed only while the container runs) */
	bool observed; /* the listing and /status were read */
	const AgentBackup *listed;
	size_t n_listed;
	AgentRestoreStatus restore_status;

	/* the journal */
	const BkOp *latest; /* latest "backup" operation (scheduled or final) */
	int consecutive_failures; /* "backup" ops failed since the last done */
	int64_t last_failure_ms; /* completion of the latest failed one */
	const BkOp *final; /* the final backup's latest attempt */
	const BkOp *restore; /* the operation of restore_request */
	const BkOp *deletes; /* open "backup-delete" operations */
	size_t n_deletes;

	BkSettings settings;
} BkInput;

/* The pure plan (decision table at the top of backup.c). Fills plan's
 * BackupsHealthy condition and actions:
 *   "backup"         {"name","slot","attempt","final"}
 *   "restore"        {"backup","request"}
 *   "backup-delete"  {"id","name"}
 *   "settle-backup"  {"op","outcome":"done"|"failed"|"handle","id"?,"name",
 *                     "createdMs"?,"bytes"?,"error"?}
 *   "settle-restore" {"op","outcome":"done"|"failed","error"?}
 *   "settle-delete"  {"op","outcome":"done"|"failed","error"?}
 * 0, or -EINVAL (bad input). */
int recon_backup_plan_input(const BkInput *in, Plan *plan) _must_check_;

/* --- pure helpers (exposed for tests) ------------------------------------------------ */

/* The uid's schedule offset in [0, every): stable (FNV-1a of the uid),
 * spreading servers made together over the period. 0 when every <= 0. */
int64_t recon_backup_jitter(const char *uid, int64_t every_ms);
/* floor((now - jitter) / every): the schedule slot now lies in. */
int64_t recon_backup_slot(const char *uid, int64_t every_ms, int64_t now_ms);
/* The wall ms the slot starts at. */
int64_t recon_backup_slot_start(const char *uid, int64_t every_ms, int64_t slot);
/* "zlh-<uid8>-<slot>" / "zlh-<uid8>-final", with "-<attempt>" for attempt
 * >= 2, into buf. Returns the length or -EINVAL / -ENOBUFS. */
int recon_backup_name(const char *uid, int64_t slot, int64_t attempt, char *buf, size_t n);
/* True when name is one of this server's backups ("zlh-<uid8>-" prefix). */
bool recon_backup_is_ours(const char *uid, const char *name);

/* Fills a BkOp from a journal row. */
void recon_backup_op_from_journal(const JournalOp *op, BkOp *ret);

/* The snapshot and obs (exposed for tests driving the vtable). */
typedef struct BackupSnapshot {
	int64_t at_ms;
} BackupSnapshot;

typedef struct BackupObs {
	int64_t now_ms;
	bool observed;
	char observe_error[256];
	AgentBackups listed;
	AgentRestoreStatus restore_status;
	bool has_latest, has_final, has_restore;
	BkOp latest, final, restore;
	int consecutive_failures;
	int64_t last_failure_ms;
	BkOp deletes[BK_MAX_OPEN_DELETES];
	size_t n_deletes;
} BackupObs;
