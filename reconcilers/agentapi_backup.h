/* agentapi_backup.h - the backup routes of the zlh-agent client (DESIGN.md
 * section 6). The rest of the agent client (health, ready, status, config)
 * is reconcilers/agentapi.h; this module is separate so the backup
 * reconciler does not depend on it.
 *
 *   GET    /backups                -> {"backups":[{"id","name","createdAt",
 *                                      "bytes","state":"running|ok|failed"}]}
 *   POST   /backups {"name"}       -> 202 {"id"}      NOT idempotent: the
 *                                      agent makes one more backup per call
 *   POST   /backups/restore?id=ID  -> 202             progress in GET /status
 *   DELETE /backups/{id}           -> 2xx; 404 = already gone (success)
 *   GET    /status                 -> {..., "restore":{"id","state":
 *                                      "running|done|failed"}}
 *
 * The agent is at http://{ip}:{agent.port}, plain HTTP, with
 * `Authorization: Bearer <token>` when agent.token_file is configured.
 * Create and restore go on a fresh connection (libcurl silently resends a
 * request on a reused connection that died before the reply, which would
 * make a second backup or restore), and so does delete (harmless, but it
 * changes something).
 *
 * Errors are translated at this edge into a negative errno plus an
 * AgentBackupError the caller can log:
 *   -ENOENT     404 (delete: returns 1 instead, "already gone")
 *   -EBUSY      409 (a restore already runs, the backup is not complete)
 *   -EINVAL     400, or arguments this client refuses to send
 *   -EACCES     401; -EPERM 403
 *   -EAGAIN     429 / 503 (err.retry_after_s when given)
 *   -EREMOTEIO  another status (500 ...): refused or failed on the peer
 *   -EBADMSG    a 2xx answer that is not the documented shape
 *   transport errors of http_request() as they are (-ETIMEDOUT,
 *   -ECONNRESET, -EIO: outcome unknown; -ECONNREFUSED, -EHOSTUNREACH:
 *   nothing was sent).
 *
 * The parsing half is pure: unit tests feed it strings. Logs at debug
 * only; the token is never logged. One AgentBackupClient per thread. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "cleanup.h"
#include "http.h"

/* Bounds on what the peer controls. */
#define AGENTAPI_BACKUP_MAX 10000 /* entries of one listing */
#define AGENTAPI_BACKUP_MAX_BODY (4u << 20)
#define AGENTAPI_BACKUP_ID_MAX 129 /* bytes incl. NUL */
#define AGENTAPI_BACKUP_NAME_MAX 128 /* bytes incl. NUL (the agent takes 1..127) */

typedef enum AgentBackupState {
	AGENT_BACKUP_RUNNING,
	AGENT_BACKUP_OK,
	AGENT_BACKUP_FAILED,
	_AGENT_BACKUP_STATE_MAX,
	_AGENT_BACKUP_STATE_INVALID = -1,
} AgentBackupState;

typedef enum AgentRestoreState {
	AGENT_RESTORE_NONE, /* /status has no "restore" */
	AGENT_RESTORE_RUNNING,
	AGENT_RESTORE_DONE,
	AGENT_RESTORE_FAILED,
	_AGENT_RESTORE_STATE_MAX,
	_AGENT_RESTORE_STATE_INVALID = -1,
} AgentRestoreState;

/* "running", "ok", "failed" (static) or NULL; and back. */
const char *agentapi_backup_state_to_string(AgentBackupState s);
AgentBackupState agentapi_backup_state_from_string(const char *s);
/* "none", "running", "done", "failed" (static) or NULL. */
const char *agentapi_restore_state_to_string(AgentRestoreState s);

/* One backup as GET /backups lists it. */
typedef struct AgentBackup {
	char id[AGENTAPI_BACKUP_ID_MAX];
	char name[AGENTAPI_BACKUP_NAME_MAX];
	int64_t created_ms; /* wall ms of createdAt; 0 when absent/unreadable */
	int64_t bytes; /* -1 when absent */
	AgentBackupState state;
} AgentBackup;

typedef struct AgentBackups {
	AgentBackup *items; /* owned */
	size_t n;
} AgentBackups;

void agentapi_backups_clear(AgentBackups *b);

/* The entry with this id / this name, or NULL (borrowed from items). */
const AgentBackup *agentapi_backups_find_id(const AgentBackup *items, size_t n, const char *id);
const AgentBackup *agentapi_backups_find_name(const AgentBackup *items, size_t n, const char *name);

/* The restore progress of GET /status. */
typedef struct AgentRestoreStatus {
	AgentRestoreState state;
	char id[AGENTAPI_BACKUP_ID_MAX]; /* "" when state NONE */
} AgentRestoreStatus;

/* Details of a failed call. Fixed buffers: nothing to free. */
typedef struct AgentBackupError {
	long http_status; /* 0 when no response arrived */
	int64_t retry_after_s; /* Retry-After of a 429/503, or -1 */
	char message[256]; /* the agent's "error" text, or the transport error */
} AgentBackupError;

/* --- pure ------------------------------------------------------------------------------ */

/* A backup id we put into a URL path or query: 1..128 bytes of
 * [A-Za-z0-9._-]. A name we send: 1..127 printable bytes, no '"' or '\'. */
bool agentapi_backup_id_valid(const char *id);
bool agentapi_backup_name_valid(const char *name);

/* The errno of an HTTP status (table above); is_delete: 404 is 1. 2xx 0. */
int agentapi_backup_classify(long status, bool is_delete);

/* RFC 3339 ("2024-08-06T12:34:56.789Z", fraction and offset optional) ->
 * wall ms, or 0 when unreadable. */
int64_t agentapi_backup_parse_time(const char *s);

/* Parses a GET /backups body. 0 and *ret (new); -EBADMSG when the body or
 * any entry is not the documented shape (id, name and state required; a
 * list that cannot be read whole is unknown, never partial); -E2BIG past
 * AGENTAPI_BACKUP_MAX. */
int agentapi_backup_parse_list(const char *body, size_t len, AgentBackups *ret) _must_check_;
/* Parses the 202 body of POST /backups: {"id"} into buf (n bytes).
 * 0 or -EBADMSG. */
int agentapi_backup_parse_created(const char *body, size_t len, char *buf, size_t n) _must_check_;
/* Parses the "restore" member of a GET /status body. 0 and *ret (state
 * NONE when absent or null) or -EBADMSG. */
int agentapi_backup_parse_restore(const char *body, size_t len,
                                  AgentRestoreStatus *ret) _must_check_;
/* The error text of an error body ({"error":"..."}) into buf, else the
 * body's first line (bounded); "" when empty. */
void agentapi_backup_error_text(const char *body, size_t len, char *buf, size_t n);
/* The create body {"name"} into b (appended). -EINVAL for a bad name. */
int agentapi_backup_create_body(const char *name, Buf *b) _must_check_;

/* --- the client ------------------------------------------------------------------------- */

typedef struct AgentBackupClient AgentBackupClient;

typedef struct AgentBackupClientOptions {
	int64_t port; /* agent.port */
	const char *token; /* borrowed, copied; NULL = no Authorization; never logged */
	HttpOptions http; /* copied; timeout 0 = 10 s; max_body 0 = AGENTAPI_BACKUP_MAX_BODY */
} AgentBackupClientOptions;

/* A new client, or NULL (out of memory, or port outside 1..65535). */
AgentBackupClient *agentapi_backup_client_new(const AgentBackupClientOptions *o);
AgentBackupClient *agentapi_backup_client_free(AgentBackupClient *c);
DEFINE_TRIVIAL_CLEANUP_FUNC(AgentBackupClient *, agentapi_backup_client_free)
#define _cleanup_agentapi_backup_client_ _cleanup_(agentapi_backup_client_freep)

/* ip: the container's address (borrowed), an IPv4 literal. */

/* GET /backups. 0 and *ret (new) or -errno (err filled when given). */
int agentapi_backup_list(AgentBackupClient *c, const char *ip, AgentBackups *ret,
                         AgentBackupError *err) _must_check_;
/* POST /backups {"name"} on a fresh connection. 0 and the new backup's id
 * in ret_id (n bytes), or -errno. After an unknown outcome the caller
 * lists before it creates again. */
int agentapi_backup_create(AgentBackupClient *c, const char *ip, const char *name, char *ret_id,
                           size_t n, AgentBackupError *err) _must_check_;
/* POST /backups/restore?id=ID on a fresh connection. 0 accepted, or
 * -ENOENT (no such backup), -EBUSY (a restore runs / backup incomplete),
 * -errno. */
int agentapi_backup_restore(AgentBackupClient *c, const char *ip, const char *id,
                            AgentBackupError *err) _must_check_;
/* DELETE /backups/{id}. 0 deleted, 1 it was already gone (404), -errno. */
int agentapi_backup_delete(AgentBackupClient *c, const char *ip, const char *id,
                           AgentBackupError *err) _must_check_;
/* GET /status, its "restore" member. 0 and *ret, or -errno. */
int agentapi_backup_restore_status(AgentBackupClient *c, const char *ip, AgentRestoreStatus *ret,
                                   AgentBackupError *err) _must_check_;
