/* journal.h - the intent journal (zlh.operations): one row per external side
 * effect, written BEFORE the call under a unique idempotency key, then moved
 * step by step as DESIGN.md section 7 rule 6 says:
 *
 *   intent --> call --> handle --> done
 *      \         \        \-----> failed
 *       `---------`-------------> done | failed
 *
 *   intent  committed; the call may or may not have been made (a crash here
 *           is settled by observation, never by a blind repeat)
 *   call    the call returned without a handle (or its handle is unknown)
 *   handle  the handle (UPID, backup id, record id) is saved; completion is
 *           not yet seen: a restart waits on it
 *   done    completion observed (result may hold details)
 *   failed  the call or its task failed (error holds why); 001's CHECK has
 *           a 'failed' step, so failure is a step of its own. The container
 *           glue maps it to CtStep DONE + failed.
 *
 * Idempotency keys are "uid:action:gen:inc" (journal_key): the server, the
 * action, the spec generation or a request id, and the container's
 * incarnation (db/alloc.h). Writing an intent whose key exists returns the
 * existing row unchanged (JournalOp.existed): a retry after a crash resumes
 * it instead of making a second one. A deliberate new attempt after a
 * failure (backoff gate, "retry") uses journal_intent_retry: when the key's
 * latest attempt completed, attempt n+1 is written as "<key>#<n+1>";
 * while it is open, it is returned (so a crash after the retry's intent
 * resumes that retry, never a third).
 *
 * Every write takes the lease epoch and runs zlh.fence(epoch) in its own
 * transaction (db/migrations/003_container.sql): a newer epoch refuses it
 * with -ESTALE and nothing is written. A call inside the caller's
 * transaction (store_begin) joins it.
 *
 * Conventions of db/store.h: a borrowed PGconn, PQexecParams only, 0 or a
 * positive count on success, a negative errno on failure, err (may be NULL)
 * filled on failure only, ret_ parameters written on success only. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>
#include <libpq-fe.h>

#include "cleanup.h"
#include "db/store.h"

#define JOURNAL_KEY_MAX 400 /* bytes of a key (without "#<attempt>") */
#define JOURNAL_ACTION_MAX 32 /* [a-z0-9][a-z0-9-]{0,31} */
#define JOURNAL_PAYLOAD_MAX 65536 /* bytes of payload / result JSON */

typedef enum JournalStep {
	JOURNAL_STEP_INTENT,
	JOURNAL_STEP_CALL,
	JOURNAL_STEP_HANDLE,
	JOURNAL_STEP_DONE,
	JOURNAL_STEP_FAILED,
	_JOURNAL_STEP_MAX,
	_JOURNAL_STEP_INVALID = -1,
} JournalStep;

/* "intent", "call", "handle", "done", "failed" (static), or NULL. */
const char *journal_step_to_string(JournalStep s);
/* The step named s, or _JOURNAL_STEP_INVALID. */
JournalStep journal_step_from_string(const char *s);
/* True for intent, call and handle: not completed. */
bool journal_step_is_open(JournalStep s);

/* One journal row. Strings and JSON are new (owned by the struct; free with
 * journal_op_clear). */
typedef struct JournalOp {
	int64_t id;
	char uid[37];
	char *action; /* "create", "clone", "register", ... */
	char *idem_key; /* this row's key: base_key, or "<base_key>#<attempt>" */
	char *base_key; /* the key the caller gave */
	int64_t attempt; /* 1, 2, ... (journal_intent_retry) */
	JournalStep step;
	char *handle; /* UPID / backup id / record id, NULL until saved */
	json_t *payload; /* what the intent carried, NULL when none */
	json_t *result; /* what done/failed recorded, NULL when none */
	char *error; /* failed: why; else NULL */
	int64_t incarnation;
	int64_t epoch; /* the lease epoch of the last write */
	int64_t created_ms; /* wall-clock ms (database clock) of the intent */
	int64_t updated_ms; /* of the last step */
	int64_t completed_ms; /* of done/failed; 0 while open */
	bool existed; /* journal_intent*, alloc_take: the row was already there */
} JournalOp;

/* Frees the contents and zeroes *op (safe twice, accepts NULL). */
void journal_op_clear(JournalOp *op);
/* Clears n ops and frees the array (accepts NULL). */
void journal_ops_free(JournalOp *ops, size_t n);
/* Reads zlh.op_json's object (borrowed) into *ret (its contents new).
 * For db/ modules whose SQL returns operations (db/alloc.c). 0 or -EIO,
 * -ENOMEM; *ret untouched on failure. */
int journal_op_from_json(const json_t *j, JournalOp *ret) _must_check_;

/* --- keys (pure) --------------------------------------------------------------- */

/* Writes "uid:action:gen_or_request:incarnation" into buf (n bytes).
 * uid: a UUID (lower-case hex); action: [a-z0-9][a-z0-9-]{0,31};
 * gen_or_request: 1..64 of [A-Za-z0-9._-] (a generation "7", a request id,
 * a slot); incarnation >= 0. Returns the length, -EINVAL (a bad part) or
 * -ENOBUFS (buf too small; JOURNAL_KEY_MAX always fits). buf untouched on
 * failure. */
int journal_key(const char *uid, const char *action, const char *gen_or_request,
                int64_t incarnation, char *buf, size_t n) _must_check_;
/* journal_key with a generation number (>= 0). */
int journal_key_gen(const char *uid, const char *action, int64_t generation, int64_t incarnation,
                    char *buf, size_t n) _must_check_;

/* --- writes (fenced) --------------------------------------------------------------- */

/* Writes the intent (step intent) of `action` for server uid under
 * idem_key (no '#'), with payload (borrowed, may be NULL) and the
 * incarnation. When the key exists, *ret is that row, unchanged (payload
 * included), with ret->existed = true: resume it. *ret (contents new) on
 * success. Returns 1 when written, 0 when it existed, or -ESTALE (newer
 * epoch; nothing written), -EEXIST (the key belongs to another server or
 * action), -EINVAL, -errno. */
int journal_intent(PGconn *c, int64_t epoch, const char *uid, const char *action,
                   const char *idem_key, const json_t *payload_or_NULL, int64_t incarnation,
                   JournalOp *ret, StoreError *err) _must_check_;

/* Like journal_intent, for a deliberate new attempt: when the key's latest
 * attempt completed (done or failed), writes attempt n+1 ("<key>#<n+1>",
 * ret->existed false); when it is open, returns it (existed true); when
 * there is none, writes attempt 1 under the key itself. */
int journal_intent_retry(PGconn *c, int64_t epoch, const char *uid, const char *action,
                         const char *idem_key, const json_t *payload_or_NULL, int64_t incarnation,
                         JournalOp *ret, StoreError *err) _must_check_;

/* The call returned without a handle: intent -> call. 1 changed, 0 already
 * at call or handle, -EALREADY completed, -ENOENT no such op, -ESTALE. */
int journal_mark_call(PGconn *c, int64_t epoch, int64_t op_id, StoreError *err) _must_check_;

/* Saves the handle (borrowed, not empty): intent/call -> handle. 1 changed,
 * 0 the same handle was already saved (also after completion), -EEXIST
 * another handle is saved, -EALREADY completed, -ENOENT, -ESTALE. */
int journal_set_handle(PGconn *c, int64_t epoch, int64_t op_id, const char *handle,
                       StoreError *err) _must_check_;

/* Completion observed: -> done with result (borrowed, may be NULL). 1
 * changed, 0 already done (result kept as first recorded), -EALREADY
 * failed, -ENOENT, -ESTALE. */
int journal_done(PGconn *c, int64_t epoch, int64_t op_id, const json_t *result_or_NULL,
                 StoreError *err) _must_check_;

/* The call or its task failed: -> failed with error (borrowed, required;
 * a task's exitstatus, an API message). 1 changed, 0 already failed,
 * -EALREADY done, -ENOENT, -ESTALE. */
int journal_fail(PGconn *c, int64_t epoch, int64_t op_id, const char *error,
                 StoreError *err) _must_check_;

/* --- reads (not fenced) ---------------------------------------------------------- */

/* The row of idem_key: a key with "#<n>" names that attempt exactly; a key
 * without names its latest attempt. -ENOENT when absent. *ret (contents
 * new). */
int journal_get(PGconn *c, const char *idem_key, JournalOp *ret, StoreError *err) _must_check_;
/* The row with this id. -ENOENT when absent. */
int journal_get_id(PGconn *c, int64_t op_id, JournalOp *ret, StoreError *err) _must_check_;

/* The latest row (highest id) of each action of server uid in one
 * incarnation (incarnation < 0: over all incarnations) - what the
 * container plan's CtJournal holds. *ret_ops (new, journal_ops_free; NULL
 * when none) ordered by action; returns the count. */
int journal_latest(PGconn *c, const char *uid, int64_t incarnation, JournalOp **ret_ops,
                   size_t *ret_n, StoreError *err) _must_check_;

/* Operations not completed (intent, call, handle), of one server or of all
 * (uid NULL), oldest first; at most `limit` (<= 0: 1000). Returns the
 * count. */
int journal_list_open(PGconn *c, const char *uid_or_NULL, int limit, JournalOp **ret_ops,
                      size_t *ret_n, StoreError *err) _must_check_;

/* How many operations are not completed (of one server, or all). The chaos
 * test's "every journal intent completed" is this being 0. */
int journal_open_count(PGconn *c, const char *uid_or_NULL, int64_t *ret,
                       StoreError *err) _must_check_;

/* A server's most recent operations, newest first, at most limit (<= 0:
 * 100, capped at 1000), for zlhctl describe. Returns the count. */
int journal_list(PGconn *c, const char *uid, int limit, JournalOp **ret_ops, size_t *ret_n,
                 StoreError *err) _must_check_;

/* The largest integer payload[key] among server uid's operations that
 * completed done (not failed), any incarnation; 0 when none. E.g. the
 * spec.restartAt last honoured (CtJournal.last_restart_at_ms) when the
 * start/reboot intents carry {"restartAtMs": n}. */
int journal_payload_max(PGconn *c, const char *uid, const char *key, int64_t *ret,
                        StoreError *err) _must_check_;
