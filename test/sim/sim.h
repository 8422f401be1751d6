/* sim.h - zlh-sim internals shared by its modules.
 *
 * zlh-sim plays the outside world of zlh-controller on loopback: a Proxmox
 * VE cluster (pve.c, pveschema.c), one agent per container (agent.c), the
 * Velocity bridge (velocity.c), a Cloudflare zone (cloudflare.c), fault
 * injection (faults.c) and a control endpoint (control.c). server.c is the
 * libmicrohttpd glue; state.c holds the world, the clock, the PRNG and the
 * accounting.
 *
 * Concurrency: one global mutex (world_lock) guards everything in the world,
 * the stats, the request log, the fault rules and the PRNG. Handlers always
 * run with it held and never sleep; sleeping (latency, hangs) happens in
 * server.c with the lock released.
 *
 * The sim links lib/ only (DESIGN.md section 3): nothing here may use the
 * controller's clients, specs or store. */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "cleanup.h"

/* ---- systems ---------------------------------------------------------- */

typedef enum SimSystem {
	SYS_PVE,
	SYS_AGENT,
	SYS_VELOCITY,
	SYS_CLOUDFLARE,
	SYS_CONTROL,
	SYS__MAX
} SimSystem;

const char *sim_system_name(SimSystem s);
/* -1 when unknown; accepts "pve", "agent", "velocity", "cloudflare"/"dns", "control". */
int sim_system_parse(const char *s);

/* ---- options ---------------------------------------------------------- */

typedef struct SimOptions {
	int nodes;
	uint64_t seed;
	int64_t task_ms; /* duration of every PVE task */
	int64_t unknown_ms; /* "status: unknown" window after create */
	int64_t agent_ready_ms; /* POST /config or boot -> running */
	int64_t backup_ms; /* agent backup / restore duration */
	int64_t node_mem_mib;
	int node_cpus;
	int vmid_min, vmid_max; /* printed vmid_range */
	int template_base; /* template vmid of the first node (900) */
	bool agent_auth; /* require the agent Bearer token */
	int64_t cf_rate_limit; /* requests per window; 0 = off */
	int64_t cf_rate_window_ms;
	int64_t cf_penalty_ms;
	bool strict_mem; /* refuse starts beyond a node's maxmem */
	size_t log_capacity; /* request log entries kept */
	char *zone_name;
	char *edge_ipv4;
} SimOptions;

extern SimOptions sim_opt;

/* Secrets and ids, fixed at start (new strings owned by the sim). */
typedef struct SimSecrets {
	char *pve_token_id; /* "zlh@pve!controller" */
	char *pve_token_secret;
	char *agent_token;
	char *velocity_secret;
	char *velocity_secret_hash; /* hex sha256 */
	char *cf_token;
	char *cf_zone_id;
} SimSecrets;

extern SimSecrets sim_secrets;

/* ---- the global lock, clock and PRNG ------------------------------------ */

void world_lock(void);
void world_unlock(void);

/* Milliseconds since the sim started (monotonic). */
int64_t sim_now_ms(void);
/* Wall clock, ms since the epoch. */
int64_t sim_wall_ms(void);

/* splitmix64 seeded from --seed; call with the world lock held. */
void sim_rand_seed(uint64_t seed);
uint64_t sim_rand(void);
/* Uniform in [0, 1). */
double sim_rand_unit(void);
/* n lowercase hex digits from the PRNG into out (n+1 bytes). */
void sim_rand_hex(char *out, size_t n);

/* Set once shutdown begins: sleeping handlers give up. */
extern volatile int sim_stopping;
/* Sleeps ms in small steps, returning early when the sim stops. */
void sim_sleep_ms(int64_t ms);

/* ---- requests and responses -------------------------------------------- */

#define SIM_MAX_SEGS 16

struct MHD_Connection;
typedef struct SimRequest SimRequest;
typedef struct SimResponse SimResponse;
typedef void (*SimHandler)(SimRequest *req, SimResponse *resp);

struct SimRequest {
	SimSystem sys;
	const char *method; /* borrowed */
	const char *path; /* borrowed: URL path without query */
	char *segs[SIM_MAX_SEGS]; /* owned: path split on '/' (percent-decoded) */
	int nseg;
	json_t *query; /* owned: object of query arguments (strings) */
	const char *body; /* borrowed, NUL-terminated, may be "" */
	size_t body_len;
	const char *content_type; /* borrowed, may be NULL */
	const char *authorization; /* borrowed, may be NULL */
	const char *zpack_secret; /* borrowed, may be NULL */
	uint32_t local_ip; /* host order; agent listener only */
	struct MHD_Connection *conn;
	/* set by the router */
	const char *route; /* static path template, "/api2/json/nodes/{node}/lxc" */
	SimHandler handler;
	bool mutating;
};

struct SimResponse {
	int status;
	char *body; /* owned */
	const char *content_type; /* static */
	int64_t retry_after_s; /* -1 = none */
	bool drop; /* close the connection without any reply */
	int64_t hang_ms; /* sleep (lock released) before replying/dropping */
	const char *note; /* static; shown in the request log ("lost", "fault") */
};

/* Helpers for handlers. take: the json value is consumed. */
void resp_json(SimResponse *resp, int status, json_t *take);
void resp_text(SimResponse *resp, int status, const char *text);
/* Query argument or NULL (borrowed). */
const char *req_query(const SimRequest *req, const char *key);
/* The body parsed as a JSON object (new) or NULL. */
json_t *req_body_json(const SimRequest *req);
/* Body parameters: a form or a JSON object body, as an object (new); never NULL
 * unless out of memory. *ret_bad set when the body could not be parsed. */
json_t *req_body_params(const SimRequest *req, bool *ret_bad);

/* Routers: fill req->route/handler/mutating. Return false when no route
 * matches (the system's own "not found" handler is then set). */
bool pve_route(SimRequest *req);
bool agent_route(SimRequest *req);
bool velocity_route(SimRequest *req);
bool cf_route(SimRequest *req);
bool control_route(SimRequest *req);

/* Per-system responses for injected 500s. */
void pve_fault_response(SimResponse *resp);
void agent_fault_response(SimResponse *resp);
void velocity_fault_response(SimResponse *resp);
void cf_fault_response(SimResponse *resp);
/* Cloudflare rate limit gate (world lock held); true = answered 429. */
bool cf_rate_limited(SimResponse *resp);
/* Velocity restart window: connections are dropped while down. */
bool velocity_is_down(void);
void velocity_restart(int64_t down_ms);

/* ---- listeners (server.c) ------------------------------------------------ */

typedef struct SimListener SimListener;
/* Starts a listener for sys on addr:port (port 0 = ephemeral). */
int server_start(SimSystem sys, const char *addr, int port, SimListener **ret);
int server_port(const SimListener *l);
void server_stop(SimListener *l);

/* ---- faults (faults.c) ----------------------------------------------------- */

typedef struct FaultDecision {
	int64_t delay_ms; /* latency + jitter */
	int64_t hang_ms;
	bool error; /* 500 before any side effect */
	bool lost; /* side effect done, reply dropped */
	int rule_id; /* first rule that fired, or 0 */
} FaultDecision;

/* Adds a rule from JSON; returns its id (> 0) or -EINVAL with *ret_err set (static). */
int faults_add(json_t *rule, const char **ret_err);
void faults_clear(void);
json_t *faults_list(void); /* new */
/* Decides the faults for one request (world lock held). */
void faults_decide(const SimRequest *req, FaultDecision *ret);

/* ---- the world (state.c) -------------------------------------------------- */

typedef enum AgentMode {
	AGENT_NORMAL,
	AGENT_DOWN,
	AGENT_NEVER_READY,
	AGENT_CRASHED,
	AGENT_HANG,
	AGENT__MAX
} AgentMode;

const char *agent_mode_name(AgentMode m);
int agent_mode_parse(const char *s);

typedef struct Agent {
	AgentMode mode;
	json_t *payload; /* last POST /config body, or NULL (idle) */
	char *payload_hash;
	int64_t install_until_ms;
	int64_t run_from_ms;
	int64_t complete_at_ms; /* provisioningComplete from here on */
	bool complete; /* provisioningComplete (latched) */
	bool stopped; /* POST /stop */
	int crash_count;
	bool codeserver;
	char *restore_id;
	int64_t restore_done_ms;
	int restore_state; /* 0 running, 1 done, 2 failed */
	int configs; /* POST /config count */
} Agent;

typedef struct Container {
	int vmid;
	char node[32];
	bool is_template;
	json_t *conf; /* config keys (no digest, no lock), typed as PVE returns them */
	char *lock; /* NULL or "create", "disk", "destroyed" ... */
	bool running;
	int64_t created_ms;
	int64_t started_ms;
	uint32_t ip; /* from net0 ip=, host order; 0 = none */
	char uid[64]; /* from tag zlh-<uid> or the description; "" = none */
	bool foreign; /* made through /_sim/pve/create-foreign */
	Agent agent;
} Container;

typedef enum TaskKind {
	TASK_CREATE,
	TASK_CLONE,
	TASK_START,
	TASK_STOP,
	TASK_SHUTDOWN,
	TASK_REBOOT,
	TASK_DESTROY,
	TASK_RESIZE,
	TASK__MAX
} TaskKind;

typedef struct Task {
	char upid[192];
	char node[32];
	char type[16];
	char id[16];
	TaskKind kind;
	uint32_t pid, pstart;
	int64_t starttime; /* wall seconds */
	int64_t end_ms; /* sim ms when it finishes */
	bool done;
	char *exitstatus; /* when done */
	int vmid; /* container acted on (new CT for create/clone) */
	int src_vmid; /* clone source */
	bool start_after; /* create ... start=1 */
	int64_t new_size; /* resize, bytes */
	Buf log;
} Task;

typedef struct Backup {
	char id[40];
	char owner[80]; /* uid, or "vmid:<n>" */
	char name[128];
	int64_t created_wall_ms;
	int64_t done_ms;
	int64_t bytes;
	bool failed;
} Backup;

typedef struct VelocityServer {
	char *name;
	char *address;
	int port;
	bool is_static;
} VelocityServer;

typedef struct DnsRecord {
	char id[40];
	char *name;
	char *type;
	char *content;
	json_t *data; /* SRV etc., or NULL */
	int64_t ttl;
	bool proxied;
	int64_t priority; /* -1 = none */
	char *comment; /* may be NULL */
	json_t *tags; /* array of strings */
	int64_t created_wall_ms, modified_wall_ms;
	uint64_t seq; /* creation order */
} DnsRecord;

typedef struct World {
	char **nodes; /* names pve1..pveN */
	int n_nodes;
	Container **cts; /* sorted by vmid */
	size_t n_cts, cap_cts;
	Task **tasks;
	size_t n_tasks, cap_tasks;
	Backup **backups;
	size_t n_backups, cap_backups;
	VelocityServer **vservers;
	size_t n_vservers, cap_vservers;
	DnsRecord **records;
	size_t n_records, cap_records;
	uint64_t record_seq;
	uint32_t task_pid;
	size_t first_pending; /* tasks before it are all done */
} World;

extern World world;

int world_init(void);
void world_free(void);
/* Advances time: finishes due tasks, settles backups. Lock held. */
void world_tick(void);

Container *world_ct(int vmid);
int world_node_index(const char *node); /* -1 when unknown */
/* Adds a container (takes ct); keeps order; recomputes derived fields. */
void world_ct_add(Container *ct);
/* Frees a container that is not in the world; accepts NULL. */
void world_ct_free(Container *ct);
/* Removes and frees the container. */
void world_ct_remove(int vmid);
/* Re-derives ip and uid after a config change. */
void world_ct_update(Container *ct);
Container *world_ct_by_ip(uint32_t ip); /* running container with that ip */
/* Node memory in bytes (sum of running containers + base). */
int64_t world_node_mem(int node);
int64_t world_node_maxmem(void);

Task *world_task_new(TaskKind kind, const char *node, const char *type, int id_vmid, int ct_vmid);
Task *world_task_find(const char *upid);

/* Accounting (stats.c). */
void stats_request(SimSystem sys, const char *route, int status, const char *note,
                   const char *method, const char *path, int64_t ms, uint32_t agent_ip);
void stats_effect(const char *name);
void stats_created(const char *kind, const char *key);
/* Recomputes the duplicates report after any change to the world. */
void stats_recount(void);
json_t *stats_json(void); /* new */
json_t *stats_requests_json(uint64_t since, size_t limit, int sys); /* new */
json_t *world_state_json(void); /* new */
int stats_init(void);
void stats_free(void);

/* Cloudflare and Velocity state for /_sim/state (new). */
void cf_rate_reset(void);
void velocity_init_static(void);
extern char *control_config_text; /* the printed config, for GET /_sim/config */
json_t *cf_record_json(const DnsRecord *r);
json_t *velocity_servers_json(void);

/* Agent helpers (agent.c). */
void agent_on_ct_start(Container *ct);
json_t *agent_state_json(const Container *ct); /* new */
const char *agent_state_name(const Container *ct);

/* PVE helpers (pve.c / pveschema.c). */
int pveschema_init(void);
void pveschema_free(void);
/* Validates params against the schema of (path template, method). Returns 0
 * with *ret_norm (new, typed values) or -EINVAL with *ret_errors (new). */
int pveschema_check(const char *tmpl, const char *method, json_t *params, json_t **ret_norm,
                    json_t **ret_errors);
/* Normalizes a tag list as Proxmox stores it (new) or NULL when invalid. */
char *pve_tags_normalize(const char *tags);
/* Parses "key=val,key=val" into an object (new), first key default_key. */
json_t *pve_propstr_parse(const char *s, const char *default_key);
/* PVE::JSONSchema::parse_size: bytes, or -1 when invalid. */
int64_t pve_parse_size(const char *s);
/* net0's ip= as host-order address, 0 when none. */
uint32_t pve_net_ip(const char *net0);
/* Extracts the zlh uid from tags or description into out; false when none. */
bool pve_ct_uid(json_t *conf, char *out, size_t n);
/* pvect.c: net0 printed as Proxmox prints it (new), hwaddr kept or made. */
char *pve_net_normalize(const char *s, const char *old_hwaddr);
int64_t pve_rootfs_size(const Container *ct);
char *pve_config_digest(const Container *ct); /* new */
json_t *pve_config_json(const Container *ct); /* new: GET .../config's data */
json_t *pve_vm_resource(const Container *ct); /* new */
void pve_vm_resource_buf(Buf *b, const Container *ct);
json_t *pve_node_resource(int node); /* new */
/* Creates a container (not yet in the world; also out of band, control.c). */
Container *pve_make_ct(int vmid, const char *node, const char *hostname, json_t *extra_conf);
json_t *pve_ct_state_json(const Container *ct); /* new */

/* Small string helpers (state.c). */
char *str_lower(const char *s); /* new */
bool str_ieq(const char *a, const char *b);
/* "a.b.c.d" -> host order; 0 when invalid. */
uint32_t ip_parse(const char *s);
void ip_format(uint32_t ip, char *out, size_t n);
