/* zlh-sim - the outside world of zlh-controller on loopback (DESIGN.md
 * section 10): Proxmox VE, the agents, the Velocity bridge, Cloudflare DNS,
 * fault injection and accounting.
 *
 *   zlh-sim [--nodes N] [--seed S] [--task-ms MS] [--state-dir DIR]
 *           [--port-base P] [--print-config] [more options: --help]
 *
 * With --print-config it prints, once every listener is up, a controller
 * config pointing at itself; the first line is
 * "# zlh-sim control: http://127.0.0.1:<port>". It serves until SIGTERM or
 * SIGINT. */
#include "sim.h"

#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "util.h"

static const char usage[] =
    "usage: zlh-sim [options]\n"
    "  --nodes N              Proxmox nodes pve1..pveN (3)\n"
    "  --seed S               seed of every random choice (1)\n"
    "  --task-ms MS           duration of every Proxmox task (200)\n"
    "  --state-dir DIR        where the secret files go (a fresh temp dir)\n"
    "  --port-base P          pve P, agent P+1, velocity P+2, cloudflare P+3, control P+4\n"
    "                         (ephemeral ports by default)\n"
    "  --print-config         print a controller config once listening\n"
    "  --unknown-ms MS        'status: unknown' window after create (500)\n"
    "  --agent-ready-ms MS    agent provisioning/boot -> running (300)\n"
    "  --backup-ms MS         agent backup and restore duration (= task-ms)\n"
    "  --node-mem-mib MIB     memory of each node (65536)\n"
    "  --node-cpus N          cpus of each node (16)\n"
    "  --strict-mem           refuse starts beyond a node's memory\n"
    "  --vmid-range A:B       printed proxmox.vmid_range (5000:5999)\n"
    "  --template-base VMID   template vmid of pve1; pveN gets +N-1 (900)\n"
    "  --no-agent-auth        agents accept requests without the Bearer token\n"
    "  --cf-rate-limit N      Cloudflare requests per window, then 429 (0 = off)\n"
    "  --cf-rate-window-ms MS rate window (300000); --cf-penalty-ms MS (= window)\n"
    "  --zone-name NAME       DNS zone (sim.zlh.test); --edge-ipv4 A (203.0.113.10)\n"
    "  --fault JSON           a fault rule (repeatable), as POST /_sim/faults takes\n"
    "  --latency-ms MS --jitter-ms MS --error-rate R --lost-rate R\n"
    "                         one rule for all systems (lost: mutating calls only)\n"
    "  --log-capacity N       request log entries kept (200000)\n";

enum {
	OPT_NODES = 256,
	OPT_SEED,
	OPT_TASK_MS,
	OPT_STATE_DIR,
	OPT_PORT_BASE,
	OPT_PRINT_CONFIG,
	OPT_UNKNOWN_MS,
	OPT_AGENT_READY_MS,
	OPT_BACKUP_MS,
	OPT_NODE_MEM,
	OPT_NODE_CPUS,
	OPT_STRICT_MEM,
	OPT_VMID_RANGE,
	OPT_TEMPLATE_BASE,
	OPT_NO_AGENT_AUTH,
	OPT_CF_RATE,
	OPT_CF_WINDOW,
	OPT_CF_PENALTY,
	OPT_ZONE,
	OPT_EDGE,
	OPT_FAULT,
	OPT_LATENCY,
	OPT_JITTER,
	OPT_ERROR_RATE,
	OPT_LOST_RATE,
	OPT_LOG_CAP,
	OPT_HELP,
};

static const char *const secret_files[] = {"pve-token", "agent-token", "velocity-secret",
                                           "cloudflare-token", "controller.yaml"};

static int num_arg(const char *name, const char *s, int64_t min, int64_t max, int64_t *out)
{
	int64_t v;
	if (parse_int64(s, &v) < 0 || v < min || v > max) {
		fprintf(stderr, "zlh-sim: %s: expected an integer in [%lld, %lld], got '%s'\n",
		        name, (long long)min, (long long)max, s);
		return -EINVAL;
	}
	*out = v;
	return 0;
}

static int rate_arg(const char *name, const char *s, double *out)
{
	char *end;
	double d = strtod(s, &end);
	if (end == s || *end || d < 0 || d > 1) {
		fprintf(stderr, "zlh-sim: %s: expected a number in [0, 1], got '%s'\n", name, s);
		return -EINVAL;
	}
	*out = d;
	return 0;
}

static int write_secret(const char *dir, const char *name, const char *value)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	FILE *f = fopen(path, "we");
	if (!f)
		return -errno;
	fchmod(fileno(f), 0600);
	fprintf(f, "%s\n", value);
	return fclose(f) == 0 ? 0 : -EIO;
}

static char *rand_secret(size_t n)
{
	char *s = malloc(n + 1);
	if (!s)
		abort();
	sim_rand_hex(s, n);
	return s;
}

static char *build_config(const char *dir, int ports[SYS__MAX])
{
	Buf b = BUF_INIT;
	(void)!buf_printf(&b, "# zlh-sim control: http://127.0.0.1:%d\n", ports[SYS_CONTROL]);
	(void)!buf_printf(&b, "# zlh-sim: %d nodes, seed %llu, state dir %s\n", sim_opt.nodes,
	                  (unsigned long long)sim_opt.seed, dir);
	(void)!buf_puts(&b, "database: \"dbname=zlh\"\n");
	(void)!buf_printf(&b,
	                  "proxmox:\n"
	                  "  url: \"http://127.0.0.1:%d\"\n"
	                  "  token_id: \"%s\"\n"
	                  "  token_secret_file: \"%s/pve-token\"\n"
	                  "  template_vmid: {",
	                  ports[SYS_PVE], sim_secrets.pve_token_id, dir);
	for (int i = 0; i < world.n_nodes; i++)
		(void)!buf_printf(&b, "%s%s: %d", i ? ", " : "", world.nodes[i],
		                  sim_opt.template_base + i);
	(void)!buf_printf(
	    &b,
	    "}\n"
	    "  # or, for create mode instead of clones:\n"
	    "  # ostemplate: \"local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst\"\n"
	    "  storage: local-lvm\n"
	    "  vmid_range: [%d, %d]\n"
	    "  max_tasks_per_node: 4\n",
	    sim_opt.vmid_min, sim_opt.vmid_max);
	(void)!buf_puts(&b, "network:\n"
	                    "  bridge: vmbr0\n"
	                    "  cidr: \"127.60.0.0/16\"\n"
	                    "  gateway: \"127.60.0.1\"\n");
	(void)!buf_printf(&b, "agent: {port: %d, token_file: \"%s/agent-token\"}\n",
	                  ports[SYS_AGENT], dir);
	(void)!buf_printf(&b,
	                  "velocity: {url: \"http://127.0.0.1:%d\", secret_file: "
	                  "\"%s/velocity-secret\"}\n",
	                  ports[SYS_VELOCITY], dir);
	(void)!buf_printf(&b,
	                  "dns:\n"
	                  "  provider: cloudflare\n"
	                  "  api_url: \"http://127.0.0.1:%d/client/v4\"\n"
	                  "  zone_id: \"%s\"\n"
	                  "  token_file: \"%s/cloudflare-token\"\n"
	                  "  zone_name: \"%s\"\n"
	                  "  edge_ipv4: \"%s\"\n",
	                  ports[SYS_CLOUDFLARE], sim_secrets.cf_zone_id, dir, sim_opt.zone_name,
	                  sim_opt.edge_ipv4);
	return buf_steal(&b);
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"nodes", required_argument, NULL, OPT_NODES},
	    {"seed", required_argument, NULL, OPT_SEED},
	    {"task-ms", required_argument, NULL, OPT_TASK_MS},
	    {"state-dir", required_argument, NULL, OPT_STATE_DIR},
	    {"port-base", required_argument, NULL, OPT_PORT_BASE},
	    {"print-config", no_argument, NULL, OPT_PRINT_CONFIG},
	    {"unknown-ms", required_argument, NULL, OPT_UNKNOWN_MS},
	    {"agent-ready-ms", required_argument, NULL, OPT_AGENT_READY_MS},
	    {"backup-ms", required_argument, NULL, OPT_BACKUP_MS},
	    {"node-mem-mib", required_argument, NULL, OPT_NODE_MEM},
	    {"node-cpus", required_argument, NULL, OPT_NODE_CPUS},
	    {"strict-mem", no_argument, NULL, OPT_STRICT_MEM},
	    {"vmid-range", required_argument, NULL, OPT_VMID_RANGE},
	    {"template-base", required_argument, NULL, OPT_TEMPLATE_BASE},
	    {"no-agent-auth", no_argument, NULL, OPT_NO_AGENT_AUTH},
	    {"cf-rate-limit", required_argument, NULL, OPT_CF_RATE},
	    {"cf-rate-window-ms", required_argument, NULL, OPT_CF_WINDOW},
	    {"cf-penalty-ms", required_argument, NULL, OPT_CF_PENALTY},
	    {"zone-name", required_argument, NULL, OPT_ZONE},
	    {"edge-ipv4", required_argument, NULL, OPT_EDGE},
	    {"fault", required_argument, NULL, OPT_FAULT},
	    {"latency-ms", required_argument, NULL, OPT_LATENCY},
	    {"jitter-ms", required_argument, NULL, OPT_JITTER},
	    {"error-rate", required_argument, NULL, OPT_ERROR_RATE},
	    {"lost-rate", required_argument, NULL, OPT_LOST_RATE},
	    {"log-capacity", required_argument, NULL, OPT_LOG_CAP},
	    {"help", no_argument, NULL, OPT_HELP},
	    {NULL, 0, NULL, 0},
	};
	sim_opt = (SimOptions){.nodes = 3,
	                       .seed = 1,
	                       .task_ms = 200,
	                       .unknown_ms = 500,
	                       .agent_ready_ms = 300,
	                       .backup_ms = -1,
	                       .node_mem_mib = 65536,
	                       .node_cpus = 16,
	                       .vmid_min = 5000,
	                       .vmid_max = 5999,
	                       .template_base = 900,
	                       .agent_auth = true,
	                       .cf_rate_window_ms = 300000,
	                       .cf_penalty_ms = -1,
	                       .log_capacity = 200000};
	const char *state_dir = NULL;
	int64_t port_base = 0, v;
	bool print_config = false;
	double latency = 0, jitter = 0, error_rate = 0, lost_rate = 0;
	_cleanup_json_ json_t *fault_rules = json_array();
	int c;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case OPT_NODES:
			if (num_arg("--nodes", optarg, 1, 64, &v) < 0)
				return 2;
			sim_opt.nodes = (int)v;
			break;
		case OPT_SEED:
			if (num_arg("--seed", optarg, 0, INT64_MAX, &v) < 0)
				return 2;
			sim_opt.seed = (uint64_t)v;
			break;
		case OPT_TASK_MS:
			if (num_arg("--task-ms", optarg, 0, 3600000, &sim_opt.task_ms) < 0)
				return 2;
			break;
		case OPT_STATE_DIR:
			state_dir = optarg;
			break;
		case OPT_PORT_BASE:
			if (num_arg("--port-base", optarg, 1, 65530, &port_base) < 0)
				return 2;
			break;
		case OPT_PRINT_CONFIG:
			print_config = true;
			break;
		case OPT_UNKNOWN_MS:
			if (num_arg("--unknown-ms", optarg, 0, 3600000, &sim_opt.unknown_ms) < 0)
				return 2;
			break;
		case OPT_AGENT_READY_MS:
			if (num_arg("--agent-ready-ms", optarg, 0, 3600000,
			            &sim_opt.agent_ready_ms) < 0)
				return 2;
			break;
		case OPT_BACKUP_MS:
			if (num_arg("--backup-ms", optarg, 0, 3600000, &sim_opt.backup_ms) < 0)
				return 2;
			break;
		case OPT_NODE_MEM:
			if (num_arg("--node-mem-mib", optarg, 256, 1 << 30, &sim_opt.node_mem_mib) <
			    0)
				return 2;
			break;
		case OPT_NODE_CPUS:
			if (num_arg("--node-cpus", optarg, 1, 4096, &v) < 0)
				return 2;
			sim_opt.node_cpus = (int)v;
			break;
		case OPT_STRICT_MEM:
			sim_opt.strict_mem = true;
			break;
		case OPT_VMID_RANGE: {
			int a, b2;
			char tail;
			if (sscanf(optarg, "%d:%d%c", &a, &b2, &tail) != 2 || a < 100 || b2 < a) {
				fprintf(stderr, "zlh-sim: --vmid-range: expected A:B, got '%s'\n",
				        optarg);
				return 2;
			}
			sim_opt.vmid_min = a;
			sim_opt.vmid_max = b2;
			break;
		}
		case OPT_TEMPLATE_BASE:
			if (num_arg("--template-base", optarg, 100, 999999000, &v) < 0)
				return 2;
			sim_opt.template_base = (int)v;
			break;
		case OPT_NO_AGENT_AUTH:
			sim_opt.agent_auth = false;
			break;
		case OPT_CF_RATE:
			if (num_arg("--cf-rate-limit", optarg, 0, INT64_MAX,
			            &sim_opt.cf_rate_limit) < 0)
				return 2;
			break;
		case OPT_CF_WINDOW:
			if (num_arg("--cf-rate-window-ms", optarg, 1, INT64_MAX,
			            &sim_opt.cf_rate_window_ms) < 0)
				return 2;
			break;
		case OPT_CF_PENALTY:
			if (num_arg("--cf-penalty-ms", optarg, 0, INT64_MAX,
			            &sim_opt.cf_penalty_ms) < 0)
				return 2;
			break;
		case OPT_ZONE:
			sim_opt.zone_name = str_lower(optarg);
			break;
		case OPT_EDGE:
			if (!ip_parse(optarg)) {
				fprintf(stderr, "zlh-sim: --edge-ipv4: not an IPv4 address\n");
				return 2;
			}
			sim_opt.edge_ipv4 = strdup(optarg);
			break;
		case OPT_FAULT: {
			json_t *r = json_loads(optarg, 0, NULL);
			if (!json_is_object(r)) {
				fprintf(stderr, "zlh-sim: --fault: expected a JSON object\n");
				json_decref(r);
				return 2;
			}
			json_array_append_new(fault_rules, r);
			break;
		}
		case OPT_LATENCY:
		case OPT_JITTER:
			if (num_arg(c == OPT_LATENCY ? "--latency-ms" : "--jitter-ms", optarg, 0,
			            3600000, &v) < 0)
				return 2;
			*(c == OPT_LATENCY ? &latency : &jitter) = (double)v;
			break;
		case OPT_ERROR_RATE:
			if (rate_arg("--error-rate", optarg, &error_rate) < 0)
				return 2;
			break;
		case OPT_LOST_RATE:
			if (rate_arg("--lost-rate", optarg, &lost_rate) < 0)
				return 2;
			break;
		case OPT_LOG_CAP:
			if (num_arg("--log-capacity", optarg, 1, 100000000, &v) < 0)
				return 2;
			sim_opt.log_capacity = (size_t)v;
			break;
		case OPT_HELP:
		case 'h':
			fputs(usage, stdout);
			return 0;
		default:
			fputs(usage, stderr);
			return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "zlh-sim: unexpected argument '%s'\n", argv[optind]);
		return 2;
	}
	if (sim_opt.backup_ms < 0)
		sim_opt.backup_ms = sim_opt.task_ms;
	if (sim_opt.cf_penalty_ms < 0)
		sim_opt.cf_penalty_ms = sim_opt.cf_rate_window_ms;
	if (!sim_opt.zone_name)
		sim_opt.zone_name = strdup("sim.zlh.test");
	if (!sim_opt.edge_ipv4)
		sim_opt.edge_ipv4 = strdup("203.0.113.10");

	/* secrets and ids: all from the seed */
	sim_now_ms();
	sim_rand_seed(sim_opt.seed);
	char hex[33];
	sim_rand_hex(hex, 32);
	sim_secrets.pve_token_id = strdup("zlh@pve!controller");
	if (asprintf(&sim_secrets.pve_token_secret, "%.8s-%.4s-4%.3s-a%.3s-%.12s", hex, hex + 8,
	             hex + 12, hex + 15, hex + 18) < 0)
		return 1;
	sim_secrets.agent_token = rand_secret(32);
	sim_secrets.velocity_secret = rand_secret(32);
	sim_secrets.cf_token = rand_secret(40);
	sim_secrets.cf_zone_id = rand_secret(32);
	char vh[65];
	if (sha256_hex(sim_secrets.velocity_secret, strlen(sim_secrets.velocity_secret), vh) < 0)
		return 1;
	sim_secrets.velocity_secret_hash = strdup(vh);

	/* the state dir */
	char tmpl[] = "/tmp/zlh-sim-XXXXXX";
	bool own_dir = false;
	if (!state_dir) {
		const char *td = getenv("TMPDIR");
		static char buf[4096];
		if (td && *td) {
			snprintf(buf, sizeof(buf), "%s/zlh-sim-XXXXXX", td);
			state_dir = mkdtemp(buf);
		}
		if (!state_dir)
			state_dir = mkdtemp(tmpl);
		if (!state_dir) {
			fprintf(stderr, "zlh-sim: cannot make a temp dir: %s\n", strerror(errno));
			return 1;
		}
		own_dir = true;
	} else if (mkdir(state_dir, 0700) < 0 && errno != EEXIST) {
		fprintf(stderr, "zlh-sim: cannot make %s: %s\n", state_dir, strerror(errno));
		return 1;
	}
	_cleanup_free_ char *dir = realpath(state_dir, NULL);
	if (!dir) {
		fprintf(stderr, "zlh-sim: %s: %s\n", state_dir, strerror(errno));
		return 1;
	}
	if (write_secret(dir, "pve-token", sim_secrets.pve_token_secret) < 0 ||
	    write_secret(dir, "agent-token", sim_secrets.agent_token) < 0 ||
	    write_secret(dir, "velocity-secret", sim_secrets.velocity_secret) < 0 ||
	    write_secret(dir, "cloudflare-token", sim_secrets.cf_token) < 0) {
		fprintf(stderr, "zlh-sim: cannot write the secret files in %s\n", dir);
		return 1;
	}

	if (stats_init() < 0 || pveschema_init() < 0 || world_init() < 0) {
		fprintf(stderr, "zlh-sim: out of memory or bad embedded schema\n");
		return 1;
	}
	velocity_init_static();
	stats_recount();
	size_t i;
	json_t *r;
	json_array_foreach(fault_rules, i, r)
	{
		const char *err = NULL;
		if (faults_add(r, &err) < 0) {
			fprintf(stderr, "zlh-sim: --fault: %s\n", err);
			return 2;
		}
	}
	if (latency > 0 || jitter > 0 || error_rate > 0) {
		json_t *g = json_pack("{s:s, s:f, s:f, s:f}", "system", "*", "latency_ms", latency,
		                      "jitter_ms", jitter, "error_rate", error_rate);
		const char *err = NULL;
		if (faults_add(g, &err) < 0)
			return 2;
		json_decref(g);
	}
	if (lost_rate > 0) {
		json_t *g = json_pack("{s:s, s:s, s:f}", "system", "*", "method", "MUTATING",
		                      "lost_rate", lost_rate);
		const char *err = NULL;
		if (faults_add(g, &err) < 0)
			return 2;
		json_decref(g);
	}

	/* one thread and one socket per connection: take every descriptor allowed */
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		(void)setrlimit(RLIMIT_NOFILE, &rl);
	}

	/* signals: handled synchronously by this thread; listener threads inherit the mask */
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);

	static const char *const addrs[SYS__MAX] = {"127.0.0.1", "0.0.0.0", "127.0.0.1",
	                                            "127.0.0.1", "127.0.0.1"};
	static const int offsets[SYS__MAX] = {0, 1, 2, 3, 4};
	SimListener *ls[SYS__MAX] = {0};
	int ports[SYS__MAX];
	int rc = 0;
	for (int s = 0; s < SYS__MAX; s++) {
		int port = port_base ? (int)port_base + offsets[s] : 0;
		int e = server_start(s, addrs[s], port, &ls[s]);
		if (e < 0) {
			fprintf(stderr, "zlh-sim: cannot listen for %s on %s:%d: %s\n",
			        sim_system_name(s), addrs[s], port, strerror(-e));
			rc = 1;
			goto out;
		}
		ports[s] = server_port(ls[s]);
	}
	world_lock();
	control_config_text = build_config(dir, ports);
	world_unlock();
	{
		char path[4096];
		snprintf(path, sizeof(path), "%s/controller.yaml", dir);
		FILE *f = fopen(path, "we");
		if (f) {
			fputs(control_config_text, f);
			fclose(f);
		}
	}
	if (print_config) {
		fputs(control_config_text, stdout);
		fflush(stdout);
	}
	fprintf(stderr,
	        "zlh-sim: listening: pve %d, agent %d, velocity %d, cloudflare %d, control %d; "
	        "state %s\n",
	        ports[SYS_PVE], ports[SYS_AGENT], ports[SYS_VELOCITY], ports[SYS_CLOUDFLARE],
	        ports[SYS_CONTROL], dir);

	int sig = 0;
	while (sigwait(&set, &sig) != 0)
		;
	fprintf(stderr, "zlh-sim: signal %d, stopping\n", sig);
out:
	sim_stopping = 1;
	for (int s = 0; s < SYS__MAX; s++)
		server_stop(ls[s]);
	world_lock();
	faults_clear();
	world_free();
	stats_free();
	pveschema_free();
	world_unlock();
	if (own_dir) {
		for (size_t k = 0; k < ELEMENTSOF(secret_files); k++) {
			char path[4096];
			snprintf(path, sizeof(path), "%s/%s", dir, secret_files[k]);
			unlink(path);
		}
		rmdir(dir);
	}
	free(control_config_text);
	free(sim_opt.zone_name);
	free(sim_opt.edge_ipv4);
	free(sim_secrets.pve_token_id);
	free(sim_secrets.pve_token_secret);
	free(sim_secrets.agent_token);
	free(sim_secrets.velocity_secret);
	free(sim_secrets.velocity_secret_hash);
	free(sim_secrets.cf_token);
	free(sim_secrets.cf_zone_id);
	return rc;
}
