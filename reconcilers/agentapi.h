/* agentapi.h - the zlh-agent client (DESIGN.md section 6): health,
 * readiness, status, the provisioning payload and its delivery, workload
 * power and code-server. The backup routes are reconcilers/agentapi_backup.h.
 *
 *   GET  /health                    -> 2xx while the agent runs (no auth needed)
 *   GET  /ready                     -> 200 {"ready":true,"source":"minecraft_ping"}
 *                                      503 {"ready":false,"reason":"..."}
 *   GET  /status                    -> {"state":"idle|installing|verifying|
 *                                      starting|running|stopped|crashed|error",
 *                                      "installStep","error","crashCount",
 *                                      "provisioningComplete", "restore"?}
 *   POST /config {payload}          -> 2xx (202): installs and starts
 *                                      asynchronously
 *   POST /start | /stop | /restart  -> 2xx (409 before any config)
 *   POST /dev/codeserver/start|stop|restart -> 2xx (409 on a game server)
 *
 * The agent is at http://{ip}:{agent.port}, plain HTTP, with
 * `Authorization: Bearer <token>` on every call when agent.token_file is
 * configured. Every POST goes on a fresh connection (libcurl silently
 * resends a request on a reused connection that died before the reply: a
 * second POST /config would reinstall). Polls (GETs) use their own handle
 * with a short timeout (AgentClientOptions.poll_timeout_ms), so an agent
 * that hangs costs a worker at most that long.
 *
 * Errors are translated at this edge into a negative errno plus an
 * AgentError the caller can log:
 *   -EINVAL     400, or arguments this client refuses to send
 *   -EACCES     401; -EPERM 403; -ENOENT 404
 *   -EBUSY      409 (not provisioned yet, wrong container type)
 *   -EAGAIN     429 / 503 (err.retry_after_s when given); /ready's 503 is
 *               not an error (it is the "not ready" answer)
 *   -EREMOTEIO  another status (500 ...)
 *   -EBADMSG    an answer that is not the documented shape
 *   transport errors of http_request() as they are (-ETIMEDOUT,
 *   -ECONNRESET, -EIO: outcome unknown; -ECONNREFUSED, -EHOSTUNREACH:
 *   nothing was sent).
 *
 * The payload builders and the parsers are pure (unit-tested on strings).
 * Logs at debug only; the token is never logged, nor a payload. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "cleanup.h"
#include "http.h"

#define AGENTAPI_MAX_BODY (1u << 20)
#define AGENTAPI_GAME_PORT 25565
#define AGENTAPI_WORLD "world"
#define AGENTAPI_JAVA_17 "java/17/OpenJDK17.tar.gz"
#define AGENTAPI_JAVA_21 "java/21/OpenJDK21.tar.gz"
#define AGENTAPI_PATH_MAX 160 /* bytes of an artifact path incl. NUL */

/* --- the agent's states -------------------------------------------------------------- */

typedef enum AgentState {
	AGENT_STATE_IDLE,
	AGENT_STATE_INSTALLING,
	AGENT_STATE_VERIFYING,
	AGENT_STATE_STARTING,
	AGENT_STATE_RUNNING,
	AGENT_STATE_STOPPED,
	AGENT_STATE_CRASHED,
	AGENT_STATE_ERROR,
	AGENT_STATE_UNKNOWN, /* a state this client does not know (AgentStatus.raw_state) */
	_AGENT_STATE_MAX,
	_AGENT_STATE_INVALID = -1,
} AgentState;

/* "idle", ... "unknown" (static), or NULL. */
const char *agentapi_state_to_string(AgentState s);
/* The state named s; AGENT_STATE_UNKNOWN for any other non-empty string;
 * _AGENT_STATE_INVALID for NULL or "". */
AgentState agentapi_state_from_string(const char *s);
/* installing, verifying, starting: the agent works toward running. */
bool agentapi_state_is_install(AgentState s);

/* GET /status. Strings the peer sent are truncated to fit and stripped of
 * control characters (they end up in condition messages). */
typedef struct AgentStatus {
	AgentState state;
	char raw_state[32]; /* the state as sent (truncated) */
	char install_step[128]; /* "" when absent */
	char error[256]; /* "" when absent */
	int64_t crash_count; /* 0 when absent */
	bool provisioning_complete;
	bool restore_running; /* "restore":{"state":"running"} */
} AgentStatus;

/* GET /ready. */
typedef struct AgentReadiness {
	bool ready;
	char source[64]; /* ready: what proved it ("minecraft_ping", "process") */
	char reason[256]; /* not ready: why */
} AgentReadiness;

typedef enum AgentOp {
	AGENT_OP_START,
	AGENT_OP_STOP,
	AGENT_OP_RESTART,
	_AGENT_OP_MAX,
	_AGENT_OP_INVALID = -1,
} AgentOp;

/* "start", "stop", "restart" (static) or NULL; and back. */
const char *agentapi_op_to_string(AgentOp op);
AgentOp agentapi_op_from_string(const char *s);

/* Details of a failed call. Fixed buffers: nothing to free. */
typedef struct AgentError {
	long http_status; /* 0 when no response arrived */
	int64_t retry_after_s; /* Retry-After of a 429/503, or -1 */
	char message[256]; /* the agent's "error" text, or the transport error */
} AgentError;

/* --- pure: the provisioning payload ---------------------------------------------------- */

/* A version or name we put into a path or payload: 1..64 bytes of
 * [0-9A-Za-z._+-], starting with a letter or digit (the CRD's pattern). */
bool agentapi_token_valid(const char *s);

/* The Java major version production installs for a Minecraft version:
 * 21 for 1.20.5 and later, else 17. Compared numerically, component by
 * component ("1.20.10" > "1.20.5", "1.21" > "1.20.5", "26.1" > "1.20.5"),
 * on the leading dotted number: a suffix after it ("1.20.5-pre1",
 * "1.20.1-47.2.0" of Forge, "1.21-rc1") does not count. Non-numeric
 * versions, as chosen here:
 *   weekly snapshots "YYwWWx" (e.g. "24w14a"): 21 from 24w14a on (the
 *     first snapshot that required Java 21), else 17;
 *   old alpha/beta/classic ids ("a1.2.6", "b1.7.3", "c0.30", "rd-132211",
 *     "inf-20100618"): 17;
 *   anything else ("latest", a future naming scheme): 21 - an unknown
 *     name is far more likely new than old, and Java 21 runs the old
 *     servers that Java 17 runs, while the reverse is false.
 * Returns 17 or 21; NULL gives 21. */
int agentapi_java_major(const char *version);
/* The java_path for version: AGENTAPI_JAVA_21 or AGENTAPI_JAVA_17 (static). */
const char *agentapi_java_path(const char *version);
/* Compares two dotted numeric versions (missing components are 0; each
 * stops at the first character that is not a digit or a dot). <0, 0, >0. */
int agentapi_version_cmp(const char *a, const char *b);

/* artifact_path as production derives it into buf (n bytes):
 *   paper | purpur | vanilla  minecraft/<variant>/<version>/server.jar
 *   fabric                    minecraft/fabric/<version>/fabric-server.jar
 *   forge                     minecraft/forge/<version>/forge-installer.jar
 *   neoforge                  minecraft/neoforge/<version>/neoforge-installer.jar
 * Returns the length, -EINVAL (unknown variant, bad version) or -ENOBUFS. */
int agentapi_artifact_path(const char *variant, const char *version, char *buf,
                           size_t n) _must_check_;

/* The GameServer payload (new): {"vmid","container_type":"game","game",
 * "variant","version","world":"world","ports":[25565],"artifact_path",
 * "java_path","memory_mb"}. 0 and *ret, or -EINVAL (bad vmid, memory,
 * game, variant or version), -ENOMEM. */
int agentapi_payload_game(int64_t vmid, const char *game, const char *variant, const char *version,
                          int64_t memory_mb, json_t **ret) _must_check_;
/* The DevServer payload (new): {"vmid","container_type":"dev","runtime",
 * "version","memory_mb"}. 0 and *ret, or -EINVAL, -ENOMEM. */
int agentapi_payload_dev(int64_t vmid, const char *runtime, const char *version, int64_t memory_mb,
                         json_t **ret) _must_check_;
/* The canonical text of a payload (new): compact JSON, keys sorted. The
 * bytes that are posted and hashed. 0 or -EINVAL, -ENOMEM. */
int agentapi_payload_canonical(const json_t *payload, char **ret) _must_check_;
/* sha256_hex of the canonical text into out. 0 or -EINVAL, -ENOMEM, -EIO. */
int agentapi_payload_hash(const json_t *payload, char out[65]) _must_check_;

/* --- pure: parsing ---------------------------------------------------------------------- */

/* The errno of an HTTP status (table above); 2xx is 0. */
int agentapi_classify(long status);
/* Parses a GET /status body. 0 and *ret, or -EBADMSG (not an object, no
 * "state" string, a member of the wrong type). */
int agentapi_parse_status(const char *body, size_t len, AgentStatus *ret) _must_check_;
/* Parses a GET /ready answer (status and body). 200 -> ready per the body
 * ("ready" true; "source" optional); 503 -> not ready, reason from the
 * body (JSON "reason", else its first line). 0 and *ret; -EBADMSG for a
 * 200 whose body is not an object with a boolean "ready"; another status
 * -> its agentapi_classify() error. */
int agentapi_parse_ready(long status, const char *body, size_t len,
                         AgentReadiness *ret) _must_check_;
/* The error text of an error body ({"error"} or {"message"}), else its
 * first line (bounded, control characters replaced); "" when empty. */
void agentapi_error_text(const char *body, size_t len, char *buf, size_t n);

/* --- the client ---------------------------------------------------------------------------- */

typedef struct AgentClient AgentClient;

typedef struct AgentClientOptions {
	int64_t port; /* agent.port */
	const char *token; /* borrowed, copied; NULL or "" = no Authorization; never logged */
	HttpOptions http; /* copied; POSTs: timeout 0 = 10 s, connect 0 = 2 s */
	int64_t poll_timeout_ms; /* GETs: 0 = 3 s (connect: a third of it, >= 250 ms) */
} AgentClientOptions;

/* A new client, or NULL (out of memory, or port outside 1..65535). One per
 * thread. */
AgentClient *agentapi_client_new(const AgentClientOptions *o);
AgentClient *agentapi_client_free(AgentClient *c);
DEFINE_TRIVIAL_CLEANUP_FUNC(AgentClient *, agentapi_client_free)
#define _cleanup_agentapi_client_ _cleanup_(agentapi_client_freep)

/* ip: the container's address (borrowed), an IPv4 (or IPv6) literal. err
 * (may be NULL) is filled on failure. */

/* GET /health. 0 healthy, or -errno. */
int agentapi_health(AgentClient *c, const char *ip, AgentError *err) _must_check_;
/* GET /status. 0 and *ret, or -errno. */
int agentapi_status(AgentClient *c, const char *ip, AgentStatus *ret, AgentError *err) _must_check_;
/* GET /ready. 0 and *ret (ready or not), or -errno. */
int agentapi_ready(AgentClient *c, const char *ip, AgentReadiness *ret,
                   AgentError *err) _must_check_;
/* POST /config with the canonical text of payload (borrowed), on a fresh
 * connection. 0 accepted, or -errno (after -ETIMEDOUT/-ECONNRESET/-EIO the
 * outcome is unknown: observe before posting again). */
int agentapi_config(AgentClient *c, const char *ip, const json_t *payload,
                    AgentError *err) _must_check_;
/* POST /start|/stop|/restart, on a fresh connection. 0 or -errno. */
int agentapi_power(AgentClient *c, const char *ip, AgentOp op, AgentError *err) _must_check_;
/* POST /dev/codeserver/start|stop|restart, on a fresh connection. */
int agentapi_codeserver(AgentClient *c, const char *ip, AgentOp op, AgentError *err) _must_check_;
