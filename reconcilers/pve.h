/* pve.h - the Proxmox VE client (DESIGN.md section 6, contracts/README.md).
 *
 * Everything here speaks the real /api2/json API: API-token header, form
 * bodies (booleans 1/0), DELETE parameters in the query string, the
 * {"data": ...} envelope. Errors are translated at this edge into a negative
 * errno plus a PveError the caller can log:
 *
 *   -EEXIST    "CT <vmid> already exists on node '<node>'" (or "VM ...")
 *   -ENOENT    "Configuration file '...' does not exist", "no such task", 404
 *   -EBUSY     "CT is locked (<lock>)", config lock timeouts,
 *              "unable to destroy CT <vmid> - container is running"
 *   -EALREADY  start: "already running"; shutdown/stop: "not running";
 *              resize: "disk is already at specified size"
 *              (the object is already in the requested state)
 *   -ESRCH     reboot of a CT that is not running
 *   -ESTALE    stale digest ("detected modified configuration ...")
 *   -ERANGE    resize would shrink the disk
 *   -EINVAL    HTTP 400 (parameter verification failed, bad UPID)
 *   -EACCES    HTTP 401; -EPERM HTTP 403
 *   -EREMOTEIO Proxmox answered with an error this table does not know
 *              (the call was refused: nothing happened)
 *   -EAGAIN    HTTP 503 / 429 (not handled; try later)
 *   -EBADMSG   a 2xx answer whose body is not the documented shape
 *   transport errors from http_request() as they are: -ETIMEDOUT,
 *   -ECONNRESET, -EIO (outcome unknown, see http_outcome_unknown()),
 *   -ECONNREFUSED, -EHOSTUNREACH (nothing sent); 502/504/596 from a proxy
 *   in front of the handler are reported as -EIO (outcome unknown).
 *
 * Non-idempotent calls (every POST, PUT and DELETE) go on a fresh
 * connection. One PveClient per thread (it owns one HttpClient).
 *
 * The parsing half (pve_parse_*, pve_error_classify, pve_*_body, tags,
 * UPIDs, identity strings) is pure and needs no client: the unit tests feed
 * it strings. Clients and helpers log at debug only. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "buf.h"
#include "cleanup.h"
#include "http.h"

/* Bounds on what a peer controls. */
#define PVE_MAX_GUESTS 65536
#define PVE_MAX_NODES 1024
#define PVE_MAX_BODY (32u << 20) /* ~65536 guests of /cluster/resources */
#define PVE_MAX_TAGS_LEN 65536
#define PVE_MAX_DESCRIPTION 8192 /* the schema's maxLength */
#define PVE_VMID_MIN 100
#define PVE_VMID_MAX 999999999

#define PVE_NODE_MAX 64 /* node names are DNS labels: 63 chars + NUL */
#define PVE_LOCK_MAX 32
#define PVE_UPID_MAX 256
#define PVE_DIGEST_MAX 48 /* SHA1 hex = 40 */
#define PVE_HOSTNAME_MAX 256

typedef struct PveClient PveClient;

typedef struct PveClientOptions {
	const char *url; /* borrowed, copied: "https://host:8006" (no path) */
	const char *token_id; /* borrowed, copied: "USER@REALM!TOKENID" */
	const char *token_secret; /* borrowed, copied; never logged */
	HttpOptions http; /* copied; http.max_body 0 = PVE_MAX_BODY */
} PveClientOptions;

/* Details of a failed call. Plain fixed buffers: nothing to free. */
typedef struct PveError {
	long http_status; /* 0 when no response arrived */
	char message[512]; /* first line of Proxmox's message, or the transport error */
	char errors[512]; /* "param: msg; param: msg" from the errors map, or "" */
} PveError;

typedef enum PveGuestType {
	PVE_GUEST_LXC,
	PVE_GUEST_QEMU,
	PVE_GUEST_OTHER,
	_PVE_GUEST_TYPE_MAX,
} PveGuestType;

typedef enum PveRunState {
	PVE_RUN_UNKNOWN, /* "unknown" (stats daemon not reporting yet) or absent */
	PVE_RUN_RUNNING,
	PVE_RUN_STOPPED,
	PVE_RUN_OTHER, /* "paused", "suspended", ... */
	_PVE_RUN_STATE_MAX,
} PveRunState;

typedef enum PveNodeState {
	PVE_NODE_UNKNOWN,
	PVE_NODE_ONLINE,
	PVE_NODE_OFFLINE,
	_PVE_NODE_STATE_MAX,
} PveNodeState;

/* One /cluster/resources?type=vm entry. */
typedef struct PveGuest {
	int64_t vmid;
	char node[PVE_NODE_MAX];
	PveGuestType type;
	PveRunState status;
	char *name; /* owned; may be NULL (a just-created CT has none) */
	char *tags; /* owned; normalized (pve_tags_normalize); "" when none */
	char lock[PVE_LOCK_MAX]; /* "" when not locked */
	bool template_;
	int64_t mem, maxmem; /* bytes; -1 when absent */
	int64_t maxdisk; /* bytes; -1 when absent */
	int64_t maxcpu; /* cores (LXC: the configured cores); -1 when absent */
	int64_t uptime; /* seconds; -1 when absent */
} PveGuest;

/* One /cluster/resources?type=node entry. */
typedef struct PveNode {
	char node[PVE_NODE_MAX];
	PveNodeState status;
	int64_t mem, maxmem; /* bytes; -1 when absent */
} PveNode;

typedef struct PveResources {
	PveGuest *guests; /* owned */
	size_t n_guests;
	PveNode *nodes; /* owned */
	size_t n_nodes;
} PveResources;

/* GET /nodes/{node}/lxc/{vmid}/config (pending values applied). */
typedef struct PveCtConfig {
	char digest[PVE_DIGEST_MAX];
	char *description; /* owned; NULL when unset */
	char *tags; /* owned; normalized; "" when unset */
	char hostname[PVE_HOSTNAME_MAX];
	int64_t cores; /* 0 when unset (all host cores) */
	int64_t memory; /* MiB; 512 when unset (the schema default) */
	int64_t swap; /* MiB; 512 when unset (the schema default) */
	char *net0; /* owned; NULL when unset */
	char *rootfs; /* owned; NULL when unset */
	char *features; /* owned; NULL when unset */
	char lock[PVE_LOCK_MAX];
	bool unprivileged;
	bool template_;
} PveCtConfig;

/* GET .../status/current */
typedef struct PveCtStatus {
	PveRunState status;
	char lock[PVE_LOCK_MAX];
	int64_t uptime; /* seconds; -1 when absent */
	int64_t maxmem; /* bytes; -1 when absent */
} PveCtStatus;

typedef struct PveTaskStatus {
	bool running; /* status "running" */
	bool ok; /* stopped with "OK" or "WARNINGS: n"; false while running */
	char exitstatus[256]; /* "" while running */
} PveTaskStatus;

/* UPID:<node>:<pid %08X>:<pstart %08X>:<starttime %08X>:<type>:<id>:<user>: */
typedef struct PveUpid {
	char node[PVE_NODE_MAX];
	uint32_t pid;
	uint64_t pstart;
	int64_t starttime;
	char type[32];
	char id[64]; /* may be "" */
	char user[128];
} PveUpid;

/* POST /nodes/{node}/lxc (create mode). Strings borrowed; NULL = omitted. */
typedef struct PveCreateParams {
	int64_t vmid;
	const char *ostemplate; /* required */
	const char *hostname;
	const char *description;
	const char *tags;
	int64_t cores; /* 0 = omitted */
	int64_t memory_mib; /* 0 = omitted */
	int64_t swap_mib; /* < 0 = omitted */
	const char *rootfs; /* "<storage>:<GiB>" */
	const char *net0;
	bool unprivileged;
	const char *features; /* "nesting=1" */
	bool start;
	const char *pool;
} PveCreateParams;

/* POST /nodes/{node}/lxc/{template}/clone. Strings borrowed; NULL = omitted. */
typedef struct PveCloneParams {
	int64_t newid;
	const char *hostname;
	bool full;
	const char *storage;
	const char *pool;
	const char *description;
} PveCloneParams;

/* PUT /nodes/{node}/lxc/{vmid}/config. Strings borrowed; NULL = unchanged. */
typedef struct PveConfigUpdate {
	const char *digest; /* the digest the change was computed from */
	int64_t cores; /* 0 = unchanged */
	int64_t memory_mib; /* 0 = unchanged */
	int64_t swap_mib; /* < 0 = unchanged */
	const char *hostname;
	const char *tags;
	const char *description;
	const char *net0;
	const char *features;
	const char *delete_keys; /* "tags" or "a,b": settings to remove */
} PveConfigUpdate;

/* Which call a response belongs to: the same Proxmox text means different
 * things to different calls ("not running" is done for a stop, not for a
 * reboot). */
typedef enum PveOp {
	PVE_OP_OTHER,
	PVE_OP_READ,
	PVE_OP_CREATE,
	PVE_OP_CLONE,
	PVE_OP_CONFIG,
	PVE_OP_RESIZE,
	PVE_OP_START,
	PVE_OP_STOP, /* stop and shutdown */
	PVE_OP_REBOOT,
	PVE_OP_DELETE,
	PVE_OP_TASK,
	_PVE_OP_MAX,
} PveOp;

/* --- the client ------------------------------------------------------------- */

/* Returns a new client or NULL (-ENOMEM / missing url or token). */
PveClient *pve_client_new(const PveClientOptions *opts);
/* Frees the client; accepts NULL; returns NULL. */
PveClient *pve_client_free(PveClient *c);
DEFINE_TRIVIAL_CLEANUP_FUNC(PveClient *, pve_client_free)
#define _cleanup_pve_client_ _cleanup_(pve_client_freep)

/* In every call below, err (may be NULL) is filled on failure and zeroed on
 * success; ret_* are written only on success. */

/* GET /cluster/resources?type=vm and ?type=node. *ret is filled (new: clear
 * with pve_resources_clear). A failure is "unknown", never "empty". */
int pve_cluster_resources(PveClient *c, PveResources *ret, PveError *err) _must_check_;

/* POST /nodes/{node}/lxc. *ret_upid new. */
int pve_create_lxc(PveClient *c, const char *node, const PveCreateParams *p, char **ret_upid,
                   PveError *err) _must_check_;
/* POST /nodes/{node}/lxc/{template_vmid}/clone. *ret_upid new. */
int pve_clone_lxc(PveClient *c, const char *node, int64_t template_vmid, const PveCloneParams *p,
                  char **ret_upid, PveError *err) _must_check_;
/* GET .../config. *ret filled (new: pve_ct_config_clear). */
int pve_get_config(PveClient *c, const char *node, int64_t vmid, PveCtConfig *ret,
                   PveError *err) _must_check_;
/* PUT .../config (synchronous). */
int pve_put_config(PveClient *c, const char *node, int64_t vmid, const PveConfigUpdate *u,
                   PveError *err) _must_check_;
/* PUT .../resize disk=rootfs size=<gib>G. *ret_upid new, or NULL when the
 * server ran it synchronously (older releases return null). -EALREADY when
 * the disk already has that size. ret_upid may be NULL. */
int pve_resize(PveClient *c, const char *node, int64_t vmid, int64_t size_gib, char **ret_upid,
               PveError *err) _must_check_;
/* GET .../status/current. */
int pve_status_current(PveClient *c, const char *node, int64_t vmid, PveCtStatus *ret,
                       PveError *err) _must_check_;
/* POST .../status/start|shutdown|stop|reboot. *ret_upid new. */
int pve_start(PveClient *c, const char *node, int64_t vmid, char **ret_upid,
              PveError *err) _must_check_;
int pve_shutdown(PveClient *c, const char *node, int64_t vmid, int64_t timeout_s, bool force_stop,
                 char **ret_upid, PveError *err) _must_check_;
int pve_stop(PveClient *c, const char *node, int64_t vmid, char **ret_upid,
             PveError *err) _must_check_;
int pve_reboot(PveClient *c, const char *node, int64_t vmid, char **ret_upid,
               PveError *err) _must_check_;
/* DELETE /nodes/{node}/lxc/{vmid}?purge=1[&force=1]. *ret_upid new.
 * -ENOENT means it is absent: the caller treats that as done. */
int pve_delete(PveClient *c, const char *node, int64_t vmid, bool force, char **ret_upid,
               PveError *err) _must_check_;
/* GET /nodes/{node}/tasks/{upid}/status; node taken from the UPID. */
int pve_task_status(PveClient *c, const char *upid, PveTaskStatus *ret, PveError *err) _must_check_;

/* --- pure parsing (no I/O) --------------------------------------------------- */

/* Unwraps one response. On 2xx: *ret_data = the "data" member (new reference,
 * may be JSON null) and 0; a body that is not a JSON object with "data" is
 * -EBADMSG. On any other status: the classified negative errno and err filled.
 * body is borrowed (len bytes, need not be NUL-terminated). */
int pve_response_parse(long status, const char *body, size_t len, PveOp op, json_t **ret_data,
                       PveError *err) _must_check_;
/* Maps an HTTP status and Proxmox's message (first line) to a negative errno
 * (table at the top of this file). Never returns 0. */
int pve_error_classify(long status, const char *message, PveOp op);
/* Parses the "data" array (borrowed) of /cluster/resources (either type, or
 * both mixed; other types are skipped). Appends to *res (which the caller
 * zeroed; entries are owned by res).
 * -EBADMSG on a malformed entry, -E2BIG past the bounds. On failure *res is
 * left as it was before the call. */
int pve_parse_resources(const json_t *data, PveResources *res) _must_check_;
void pve_resources_clear(PveResources *res);
/* Returns the guest with this vmid (borrowed from res) or NULL. */
const PveGuest *pve_resources_find_guest(const PveResources *res, int64_t vmid);
const PveNode *pve_resources_find_node(const PveResources *res, const char *node);

/* data borrowed. *ret written only on success: its strings are new (clear
 * with pve_ct_config_clear). -EBADMSG for a shape that is not a config. */
int pve_parse_config(const json_t *data, PveCtConfig *ret) _must_check_;
void pve_ct_config_clear(PveCtConfig *cfg);
/* data borrowed; *ret (plain values) written only on success. */
int pve_parse_status(const json_t *data, PveCtStatus *ret) _must_check_;
int pve_parse_task_status(const json_t *data, PveTaskStatus *ret) _must_check_;
/* "OK" and "WARNINGS: <n>" are success. */
bool pve_task_exitstatus_ok(const char *exitstatus);
/* Parses a UPID exactly as PVE::Tools::upid_decode does. 0 or -EINVAL. */
int pve_upid_parse(const char *upid, PveUpid *ret) _must_check_;

/* Form bodies (application/x-www-form-urlencoded), appended to b. */
int pve_create_body(const PveCreateParams *p, Buf *b) _must_check_;
int pve_clone_body(const PveCloneParams *p, Buf *b) _must_check_;
int pve_config_body(const PveConfigUpdate *u, Buf *b) _must_check_;
/* Appends "&"-separated key=value with both URL-encoded (no leading '&' when
 * b is empty). Booleans as 1/0. */
int pve_form_add(Buf *b, const char *key, const char *value) _must_check_;
int pve_form_add_int(Buf *b, const char *key, int64_t value) _must_check_;
int pve_form_add_bool(Buf *b, const char *key, bool value) _must_check_;

/* --- tags -------------------------------------------------------------------- */

/* Normalizes a tag list as Proxmox stores it: split on ';', ',' and
 * whitespace, lower-cased, de-duplicated, sorted, joined with ';'.
 * *ret new ("" for no tags). -E2BIG past PVE_MAX_TAGS_LEN. */
int pve_tags_normalize(const char *tags, char **ret) _must_check_;
/* True when one tag matches Proxmox's pattern [a-z0-9_][a-z0-9_\-+.]*. */
bool pve_tag_valid(const char *tag);
/* Set membership / equality on tag lists (normalized or not). */
bool pve_tags_contains(const char *tags, const char *tag);
bool pve_tags_equal(const char *a, const char *b);
/* True when every tag of sub is in tags. */
bool pve_tags_subset(const char *sub, const char *tags);
/* *ret new: normalized union / tags minus the tags of remove. */
int pve_tags_union(const char *a, const char *b, char **ret) _must_check_;
int pve_tags_remove(const char *tags, const char *remove, char **ret) _must_check_;

/* --- the server's identity on Proxmox ----------------------------------------- */

#define PVE_TAG_MANAGED "zlh"
#define PVE_DESC_UID_KEY "zlh:uid="

/* "zlh;zlh-<uid>" (uid lower-cased) into buf. 0 or -ENOBUFS / -EINVAL. */
int pve_identity_tags(const char *uid, char *buf, size_t n) _must_check_;
/* "zlh-<uid>" into buf. */
int pve_identity_uid_tag(const char *uid, char *buf, size_t n) _must_check_;
/* The description the creating call writes:
 *   "zlh:uid=<uid>\nzlh:owner=<owner>\nzlh:name=<name>\nmanaged by zlh-controller\n" */
int pve_identity_description(const char *uid, const char *owner, const char *name, char *buf,
                             size_t n) _must_check_;
/* True when desc carries "zlh:uid=<uid>" as a whole token. */
bool pve_description_has_uid(const char *desc, const char *uid);
/* Copies the uid of the first "zlh:uid=" token into buf. 0, -ENOENT, -ENOBUFS. */
int pve_description_uid(const char *desc, char *buf, size_t n) _must_check_;
/* Copies <x> of the first tag "zlh-<x>" into buf. 0, -ENOENT, -ENOBUFS. */
int pve_tags_uid(const char *tags, char *buf, size_t n) _must_check_;

/* "name=eth0,bridge=<br>,ip=<ip>/<prefix>,gw=<gw>[,hwaddr=<mac>]" (hwaddr
 * NULL = omitted; gw NULL = omitted). */
int pve_net0_format(const char *bridge, const char *ip, int prefix, const char *gw,
                    const char *hwaddr, char *buf, size_t n) _must_check_;

/* The parts of a net0 value the controller cares about. */
typedef struct PveNet0 {
	char name[32];
	char bridge[64];
	char ip[64]; /* "10.60.0.5/22", "dhcp", or "" */
	char gw[64];
	char hwaddr[32];
} PveNet0;
/* Parses "k=v,k=v". Unknown keys are ignored. 0 or -EINVAL. */
int pve_net0_parse(const char *net0, PveNet0 *ret) _must_check_;

/* The root disk size of a rootfs value ("local-lvm:vm-5000-disk-0,size=16G")
 * in bytes. 0 or -ENOENT (no size=) / -EINVAL. */
int pve_rootfs_size_bytes(const char *rootfs, int64_t *ret) _must_check_;
/* True when the features value has nesting=1. */
bool pve_features_nesting(const char *features);

/* Names for logs. Never NULL. */
const char *pve_run_state_to_string(PveRunState s);
const char *pve_guest_type_to_string(PveGuestType t);
