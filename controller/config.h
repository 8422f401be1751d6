/* config.h - the controller's configuration file (DESIGN.md section 8).
 *
 * One YAML file. Each section is described by one declarative table of
 * ConfigKey rows (config.c): key, type, where the value is stored, default,
 * limits, validator and a line of documentation. The same tables drive the
 * parser, --check-config and the reference printed by config_print_reference
 * (zlh-controller --help-config), from which contrib/controller.yaml is
 * written. Errors name the file, the line and the dotted key:
 *
 *   controller.yaml:7: proxmox.tokn_id: unknown key
 *
 * A section left out (or written as `dns:` with nothing under it) switches
 * its reconciler off. `database`, `proxmox` and `network` are required.
 * Secrets are read from the files the *_file keys name (relative names from
 * $CREDENTIALS_DIRECTORY first, i.e. systemd's LoadCredential=), with one
 * trailing newline dropped, and registered with log_register_secret() so they
 * never reach a log. A secret file that cannot be read is a config error:
 * --check-config says so (the service could not start with it). */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "cleanup.h"

typedef struct ConfigNet {
	char *bridge;
	char *cidr; /* "10.60.0.0/22" as written */
	char *gateway;
	uint32_t net; /* parsed, host byte order */
	int prefix;
	uint32_t gw;
} ConfigNet;

typedef struct ConfigTemplate {
	char *node; /* NULL when template_vmid was one number */
	int64_t vmid;
} ConfigTemplate;

typedef struct Config {
	char *path; /* the file read */
	char *database; /* libpq conninfo or URI */

	struct {
		int64_t workers;
		int64_t resync_ms;
		int64_t lease_ms;
		int64_t lease_margin_ms; /* lease_valid() margin before a call */
		int64_t drain_timeout_ms; /* SIGTERM: how long in-flight work may run */
		char *metrics_listen; /* "host:port" or NULL (no metrics) */
		struct { /* requests per second per external system */
			int64_t proxmox, agent, velocity, dns;
		} rate;
	} controller;

	struct {
		bool enabled; /* always true once loaded: the section is required */
		char *url;
		char *token_id;
		char *token_secret_file;
		char *token_secret; /* read from token_secret_file */
		char *ca_file;
		char *pinned_pubkey;
		bool insecure;
		ConfigTemplate *templates; /* clone mode: n_templates >= 1 */
		size_t n_templates;
		char *ostemplate; /* create mode */
		char *storage;
		char *pool;
		int64_t vmid_lo, vmid_hi; /* vmid_range [lo, hi] */
		int64_t max_tasks_per_node;
		char **nodes; /* NULL-terminated, or NULL: every node */
		size_t n_nodes;
	} proxmox;

	ConfigNet network;
	bool has_network_dev; /* network.dev given */
	ConfigNet network_dev; /* DevServer override */

	struct {
		bool enabled;
		int64_t port;
		char *token_file;
		char *token; /* NULL when token_file is not set */
	} agent;

	struct {
		bool enabled;
		char *url;
		char *secret_file;
		char *secret;
		char secret_sha256[65]; /* what X-Zpack-Secret carries */
	} velocity;

	struct {
		bool enabled;
		char *provider; /* "cloudflare" */
		char *api_url;
		char *zone_id;
		char *token_file;
		char *token;
		char *zone_name;
		char *edge_ipv4;
	} dns;
} Config;

enum {
	/* Do not read secret files (only check that the keys are there).
	 * For tools that read the config but need no secrets. */
	CONFIG_SKIP_SECRETS = 1 << 0,
};

/* Reads and validates path. On success *ret (new) is the config. On failure
 * returns -EINVAL (invalid content), -ENOENT/-EACCES/... (unreadable file)
 * and, when ret_errors is not NULL, *ret_errors (new) holds one line per
 * problem, each "FILE:LINE: KEY: message". */
int config_load(const char *path, unsigned flags, Config **ret, char **ret_errors) _must_check_;
/* Same, from a string; name is used in messages. */
int config_load_string(const char *name, const char *yaml, unsigned flags, Config **ret,
                       char **ret_errors) _must_check_;

Config *config_free(Config *c);
DEFINE_TRIVIAL_CLEANUP_FUNC(Config *, config_free)
#define _cleanup_config_ _cleanup_(config_freep)

/* The template VMID to clone on node (borrowed), or -1: a map lists the
 * nodes that can clone, a single number means "the node that holds it"
 * (any node, as far as the config knows). */
int64_t config_template_for_node(const Config *c, const char *node);
/* The network for a kind ("GameServer"/"DevServer"), borrowed. */
const ConfigNet *config_network_for_kind(const Config *c, const char *kind);

/* Prints every key of every table: dotted name, type, default, whether
 * required, limits and its documentation. */
void config_print_reference(FILE *f);
/* Calls fn for each dotted key name the tables know (for tests that check
 * the example config documents every key). */
void config_foreach_key(void (*fn)(const char *dotted, void *userdata), void *userdata);
