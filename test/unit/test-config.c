/* test-config.c - the configuration file: every kind of error names the
 * file, the line and the key; defaults, optional sections, secrets. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "controller/config.h"
#include "log.h"
#include "test/lib/testutil.h"
#include "util.h"

static char *tmpdir;
static char secret_path[512];

static int setup(void **state)
{
	(void)state;
	tmpdir = tu_tempdir();
	assert_non_null(tmpdir);
	snprintf(secret_path, sizeof secret_path, "%s/pve-token", tmpdir);
	assert_int_equal(tu_write_file(secret_path, "pve-secret-0123456789\n"), 0);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	tu_rmrf(tmpdir);
	free(tmpdir);
	return 0;
}

/* A minimal valid file; `extra` is appended (more sections). */
__attribute__((noinline)) static char *minimal(const char *extra)
{
	char *s = NULL;
	assert_true(asprintf(&s,
	                     "database: \"host=/run/postgresql dbname=zlh\"\n" /* 1 */
	                     "proxmox:\n" /* 2 */
	                     "  url: \"http://127.0.0.1:8006\"\n" /* 3 */
	                     "  token_id: \"zlh@pve!controller\"\n" /* 4 */
	                     "  token_secret_file: %s\n" /* 5 */
	                     "  template_vmid: 900\n" /* 6 */
	                     "  storage: local-lvm\n" /* 7 */
	                     "  vmid_range: [5000, 5999]\n" /* 8 */
	                     "network:\n" /* 9 */
	                     "  bridge: vmbr3\n" /* 10 */
	                     "  cidr: \"10.60.0.0/22\"\n" /* 11 */
	                     "  gateway: \"10.60.0.1\"\n" /* 12 */
	                     "%s",
	                     secret_path, extra ? extra : "") >= 0);
	return s;
}

/* Loads yaml, expects failure, and checks the first error line contains
 * want (which should carry "FILE:LINE: KEY: "). */
static void expect_error(const char *yaml, const char *want)
{
	Config *c = NULL;
	_cleanup_free_ char *errs = NULL;
	int r = config_load_string("t.yaml", yaml, 0, &c, &errs);
	if (r == 0 || !errs || !strstr(errs, want))
		fprintf(stderr, "want: %s\ngot (%d): %s\n", want, r, errs ? errs : "(none)");
	assert_int_equal(r, -EINVAL);
	assert_null(c);
	assert_non_null(errs);
	assert_non_null(strstr(errs, want));
}

/* Replaces the first occurrence of `from` in the minimal file by `to`. */
static char *minimal_with(const char *from, const char *to, const char *extra)
{
	_cleanup_free_ char *m = minimal(extra);
	const char *hit = strstr(m, from);
	assert_non_null(hit);
	size_t off = (size_t)(hit - m);
	char *out = NULL;
	assert_true(asprintf(&out, "%.*s%s%s", (int)off, m, to, m + off + strlen(from)) >= 0);
	return out;
}

static void config__minimal__defaults_and_optional_sections_off(void **state)
{
	(void)state;
	_cleanup_free_ char *y = minimal(NULL);
	_cleanup_config_ Config *c = NULL;
	_cleanup_free_ char *errs = NULL;
	assert_int_equal(config_load_string("t.yaml", y, 0, &c, &errs), 0);
	assert_string_equal(c->database, "host=/run/postgresql dbname=zlh");
	assert_int_equal(c->controller.workers, 8);
	assert_int_equal(c->controller.resync_ms, 30000);
	assert_int_equal(c->controller.lease_ms, 15000);
	assert_int_equal(c->controller.lease_margin_ms, 15000 / 4);
	assert_int_equal(c->controller.drain_timeout_ms, 20000);
	assert_int_equal(c->controller.rate.proxmox, 20);
	assert_int_equal(c->controller.rate.dns, 4);
	assert_null(c->controller.metrics_listen);
	assert_true(c->proxmox.enabled);
	assert_string_equal(c->proxmox.token_secret, "pve-secret-0123456789"); /* newline dropped */
	assert_int_equal(c->proxmox.n_templates, 1);
	assert_null(c->proxmox.templates[0].node);
	assert_int_equal(config_template_for_node(c, "pve7"), 900);
	assert_int_equal(c->proxmox.vmid_lo, 5000);
	assert_int_equal(c->proxmox.vmid_hi, 5999);
	assert_int_equal(c->proxmox.max_tasks_per_node, 4);
	assert_false(c->proxmox.insecure);
	assert_null(c->proxmox.nodes);
	assert_int_equal(c->network.prefix, 22);
	assert_int_equal(c->network.net, 0x0a3c0000);
	assert_int_equal(c->network.gw, 0x0a3c0001);
	assert_false(c->has_network_dev);
	assert_ptr_equal(config_network_for_kind(c, "DevServer"), &c->network);
	assert_false(c->agent.enabled);
	assert_int_equal(c->agent.port, 18888); /* defaults even when off */
	assert_false(c->velocity.enabled);
	assert_false(c->dns.enabled);
}

static void config__full_design_example__every_section_on(void **state)
{
	(void)state;
	char extra[2048];
	snprintf(extra, sizeof extra,
	         "  dev: {bridge: vmbr2, cidr: \"10.70.0.0/22\", gateway: \"10.70.0.1\"}\n"
	         "controller: {workers: 3, resync: 1m30s, lease: 2s, metrics_listen: "
	         "\"127.0.0.1:9464\", rate: {dns: 2}}\n"
	         "agent: {port: 18889, token_file: %s}\n"
	         "velocity: {url: \"http://10.60.0.2:8081\", secret_file: %s}\n"
	         "dns:\n"
	         "  provider: cloudflare\n"
	         "  api_url: \"https://api.cloudflare.com/client/v4\"\n"
	         "  zone_id: \"023e105f4ecef8ad9ca31a8372d0c353\"\n"
	         "  token_file: %s\n"
	         "  zone_name: \"example.net\"\n"
	         "  edge_ipv4: \"203.0.113.10\"\n",
	         secret_path, secret_path, secret_path);
	_cleanup_free_ char *y =
	    minimal_with("  template_vmid: 900\n",
	                 "  template_vmid: {pve1: 900, pve2: 901}\n  nodes: [pve1, pve2]\n"
	                 "  pool: zlh\n  insecure: true\n",
	                 extra);
	_cleanup_config_ Config *c = NULL;
	_cleanup_free_ char *errs = NULL;
	int r = config_load_string("t.yaml", y, 0, &c, &errs);
	if (r < 0)
		fprintf(stderr, "%s", errs);
	assert_int_equal(r, 0);
	assert_int_equal(c->controller.workers, 3);
	assert_int_equal(c->controller.resync_ms, 90000);
	assert_int_equal(c->controller.lease_ms, 2000);
	assert_int_equal(c->controller.lease_margin_ms, 500);
	assert_string_equal(c->controller.metrics_listen, "127.0.0.1:9464");
	assert_int_equal(c->controller.rate.dns, 2);
	assert_int_equal(c->controller.rate.proxmox, 20); /* rest of the section defaults */
	assert_int_equal(c->proxmox.n_templates, 2);
	assert_int_equal(config_template_for_node(c, "pve2"), 901);
	assert_int_equal(config_template_for_node(c, "pve3"), -1);
	assert_int_equal(c->proxmox.n_nodes, 2);
	assert_string_equal(c->proxmox.nodes[1], "pve2");
	assert_null(c->proxmox.nodes[2]);
	assert_string_equal(c->proxmox.pool, "zlh");
	assert_true(c->proxmox.insecure);
	assert_true(c->has_network_dev);
	assert_string_equal(config_network_for_kind(c, "DevServer")->bridge, "vmbr2");
	assert_string_equal(config_network_for_kind(c, "GameServer")->bridge, "vmbr3");
	assert_true(c->agent.enabled);
	assert_int_equal(c->agent.port, 18889);
	assert_string_equal(c->agent.token, "pve-secret-0123456789");
	assert_true(c->velocity.enabled);
	assert_int_equal(strlen(c->velocity.secret_sha256), 64);
	assert_true(c->dns.enabled);
	assert_string_equal(c->dns.edge_ipv4, "203.0.113.10");
}

static void config__unknown_key__names_file_line_key(void **state)
{
	(void)state;
	_cleanup_free_ char *y = minimal_with("  storage:", "  storag:", NULL);
	expect_error(y, "t.yaml:7: proxmox.storag: unknown key");
	_cleanup_free_ char *y2 =
	    minimal("velocity: {url: \"http://x\", secret_file: s, colour: red}\n");
	expect_error(y2, "t.yaml:13: velocity.colour: unknown key");
	_cleanup_free_ char *y3 = minimal("databse: x\n");
	expect_error(y3, "t.yaml:13: databse: unknown key");
}

static void config__wrong_type__names_file_line_key(void **state)
{
	(void)state;
	_cleanup_free_ char *y = minimal("controller:\n  workers: eight\n");
	expect_error(y, "t.yaml:14: controller.workers: expected an integer, got \"eight\"");
	_cleanup_free_ char *y2 = minimal("controller:\n  workers: \"8\"\n");
	expect_error(y2, "t.yaml:14: controller.workers: expected an integer");
	_cleanup_free_ char *y3 = minimal_with("  bridge: vmbr3", "  bridge: [vmbr3]", NULL);
	expect_error(y3, "t.yaml:10: network.bridge: expected a string, got a list");
	_cleanup_free_ char *y4 = minimal("agent: 18888\n");
	expect_error(y4, "t.yaml:13: agent: expected a mapping, got a scalar");
	_cleanup_free_ char *y5 =
	    minimal_with("  storage: local-lvm\n", "  storage: local-lvm\n  insecure: yes\n", NULL);
	expect_error(y5, "t.yaml:8: proxmox.insecure: expected true or false, got \"yes\"");
	_cleanup_free_ char *y6 = minimal("controller: {workers: 0}\n");
	expect_error(y6, "t.yaml:13: controller.workers: 0 is out of range [1, 256]");
}

static void config__missing_required__names_section_line_and_key(void **state)
{
	(void)state;
	_cleanup_free_ char *y = minimal_with("  url: \"http://127.0.0.1:8006\"\n", "", NULL);
	expect_error(y, "t.yaml:2: proxmox.url: required key missing");
	_cleanup_free_ char *y2 =
	    minimal_with("database: \"host=/run/postgresql dbname=zlh\"\n", "", NULL);
	expect_error(y2, "t.yaml:1: database: required key missing");
	_cleanup_free_ char *y3 = minimal("velocity: {url: \"http://x:1\"}\n");
	expect_error(y3, "t.yaml:13: velocity.secret_file: required key missing");
	expect_error("database: x\nproxmox: {}\n", "network: required section missing");
}

static void config__durations__need_units(void **state)
{
	(void)state;
	_cleanup_free_ char *y = minimal("controller: {resync: 30}\n");
	expect_error(y, "t.yaml:13: controller.resync: a duration needs a unit (\"30s\"");
	_cleanup_free_ char *y2 = minimal("controller: {lease: soon}\n");
	expect_error(y2, "t.yaml:13: controller.lease: expected a duration such as 30s");
	_cleanup_free_ char *y3 = minimal("controller: {lease: 100ms}\n");
	expect_error(y3, "t.yaml:13: controller.lease: 100ms is out of range [1s, 10m]");
	_cleanup_free_ char *y4 = minimal("controller: {lease: 10s, lease_margin: 6s}\n");
	expect_error(y4, "controller.lease_margin: must be at most half of controller.lease");
}

static void config__template_and_ostemplate__error(void **state)
{
	(void)state;
	_cleanup_free_ char *y = minimal_with(
	    "  storage:", "  ostemplate: \"local:vztmpl/debian.tar.zst\"\n  storage:", NULL);
	expect_error(y, "t.yaml:7: proxmox.ostemplate: set either template_vmid (clone mode) or "
	                "ostemplate (create mode), not both");
	_cleanup_free_ char *y2 = minimal_with("  template_vmid: 900\n", "", NULL);
	expect_error(y2, "t.yaml:2: proxmox.template_vmid: one of template_vmid");
	_cleanup_free_ char *y3 =
	    minimal_with("  template_vmid: 900\n", "  template_vmid: 5100\n", NULL);
	expect_error(y3, "t.yaml:6: proxmox.template_vmid: template 5100 lies inside vmid_range");
	_cleanup_free_ char *y4 =
	    minimal_with("  template_vmid: 900\n", "  template_vmid: {pve1: 90}\n", NULL);
	expect_error(y4, "t.yaml:6: proxmox.template_vmid.pve1: VMID 90 is out of range");
	_cleanup_free_ char *y5 =
	    minimal_with("  template_vmid: 900\n",
	                 "  template_vmid: {pve1: 900, pve3: 901}\n  nodes: [pve1, pve2]\n", NULL);
	expect_error(y5, "proxmox.template_vmid: node pve3 is not in proxmox.nodes");
}

static void config__vmid_range__shape_and_order(void **state)
{
	(void)state;
	_cleanup_free_ char *y = minimal_with("[5000, 5999]", "[5999, 5000]", NULL);
	expect_error(y, "t.yaml:8: proxmox.vmid_range: low end 5999 is above high end 5000");
	_cleanup_free_ char *y2 = minimal_with("[5000, 5999]", "[5000]", NULL);
	expect_error(y2, "t.yaml:8: proxmox.vmid_range: expected a list of two VMIDs");
	_cleanup_free_ char *y3 = minimal_with("[5000, 5999]", "5000-5999", NULL);
	expect_error(y3, "t.yaml:8: proxmox.vmid_range: expected a list of two VMIDs");
}

static void config__network__cidr_and_gateway_checked(void **state)
{
	(void)state;
	_cleanup_free_ char *y = minimal_with("\"10.60.0.1\"", "\"10.61.0.1\"", NULL);
	expect_error(y, "t.yaml:12: network.gateway: 10.61.0.1 is not inside 10.60.0.0/22");
	_cleanup_free_ char *y2 = minimal_with("\"10.60.0.0/22\"", "\"10.60.0.5/22\"", NULL);
	expect_error(y2, "t.yaml:11: network.cidr: has host bits set");
	_cleanup_free_ char *y3 = minimal("  dev: {bridge: vmbr2, cidr: \"10.70.0.0/22\"}\n");
	expect_error(y3, "t.yaml:13: network.dev.gateway: required key missing");
}

static void config__yaml_syntax_error__line_and_column(void **state)
{
	(void)state;
	expect_error("database: x\nproxmox: [unclosed\n", "t.yaml:3:1: YAML syntax error");
	expect_error("- a\n- b\n", "t.yaml:1: (top level): expected a mapping of sections");
	expect_error("", "t.yaml:1: (top level): the file is empty");
	_cleanup_free_ char *y = minimal("database: y\n");
	expect_error(y, "t.yaml:13: database: duplicate key");
}

static void config__section_left_out_or_empty__off(void **state)
{
	(void)state;
	_cleanup_free_ char *y = minimal("dns:\nvelocity: ~\n");
	_cleanup_config_ Config *c = NULL;
	assert_int_equal(config_load_string("t.yaml", y, 0, &c, NULL), 0);
	assert_false(c->dns.enabled);
	assert_false(c->velocity.enabled);
	assert_string_equal(c->dns.provider, "cloudflare");
}

static void config__secret_file__missing_is_an_error(void **state)
{
	(void)state;
	_cleanup_free_ char *y = minimal("agent: {token_file: /nonexistent/agent-token}\n");
	expect_error(y, "t.yaml:13: agent.token_file: cannot read secret file "
	                "/nonexistent/agent-token: No such file or directory");
	/* ... unless secrets are skipped (tools that need none). */
	_cleanup_config_ Config *c = NULL;
	assert_int_equal(config_load_string("t.yaml", y, CONFIG_SKIP_SECRETS, &c, NULL), 0);
	assert_null(c->agent.token);
}

static void config__secret_relative__from_credentials_directory(void **state)
{
	(void)state;
	char p[600];
	snprintf(p, sizeof p, "%s/velocity-secret", tmpdir);
	assert_int_equal(tu_write_file(p, "velo-shared-secret-42\n"), 0);
	setenv("CREDENTIALS_DIRECTORY", tmpdir, 1);
	_cleanup_free_ char *y =
	    minimal("velocity: {url: \"http://127.0.0.1:8081\", secret_file: velocity-secret}\n");
	_cleanup_config_ Config *c = NULL;
	_cleanup_free_ char *errs = NULL;
	int r = config_load_string("t.yaml", y, 0, &c, &errs);
	unsetenv("CREDENTIALS_DIRECTORY");
	assert_int_equal(r, 0);
	assert_string_equal(c->velocity.secret, "velo-shared-secret-42");
	char want[65];
	assert_int_equal(sha256_hex("velo-shared-secret-42", 21, want), 0);
	assert_string_equal(c->velocity.secret_sha256, want);
}

static void config__secrets__never_reach_the_log(void **state)
{
	(void)state;
	_cleanup_free_ char *y = minimal(NULL);
	_cleanup_config_ Config *c = NULL;
	assert_int_equal(config_load_string("t.yaml", y, 0, &c, NULL), 0);
	int fds[2];
	assert_int_equal(pipe(fds), 0);
	log_set_fd(fds[1]);
	log_set_journal(false);
	log_fields(LOG_WARNING, LOG_F("token", c->proxmox.token_secret), "leak %s?",
	           c->proxmox.token_secret);
	log_set_fd(2);
	close(fds[1]);
	char buf[4096] = {0};
	ssize_t n = read(fds[0], buf, sizeof buf - 1);
	close(fds[0]);
	assert_true(n > 0);
	assert_null(strstr(buf, "pve-secret-0123456789"));
	assert_non_null(strstr(buf, "[redacted]"));
}

static void config__file__unreadable_and_errors_carry_path(void **state)
{
	(void)state;
	Config *c = NULL;
	_cleanup_free_ char *errs = NULL;
	assert_int_equal(config_load("/nonexistent/controller.yaml", 0, &c, &errs), -ENOENT);
	assert_non_null(strstr(errs, "/nonexistent/controller.yaml: cannot read"));
	char p[600];
	snprintf(p, sizeof p, "%s/bad.yaml", tmpdir);
	assert_int_equal(tu_write_file(p, "database: x\nproxmox: {}\nnetwork: {}\nfoo: 1\n"), 0);
	_cleanup_free_ char *errs2 = NULL;
	assert_int_equal(config_load(p, 0, &c, &errs2), -EINVAL);
	char want[700];
	snprintf(want, sizeof want, "%s:4: foo: unknown key", p);
	assert_non_null(strstr(errs2, want));
}

/* contrib/controller.yaml is valid and documents every key of the tables. */
typedef struct KeyCheck {
	const char *text;
	int missing;
} KeyCheck;

static void check_key_documented(const char *dotted, void *userdata)
{
	KeyCheck *kc = userdata;
	const char *last = strrchr(dotted, '.');
	last = last ? last + 1 : dotted;
	char pat[96];
	snprintf(pat, sizeof pat, "%s:", last);
	if (!strstr(kc->text, pat)) {
		fprintf(stderr, "contrib/controller.yaml does not mention %s\n", dotted);
		kc->missing++;
	}
}

static void config__contrib_example__valid_and_documents_every_key(void **state)
{
	(void)state;
	_cleanup_free_ char *path = tu_src("contrib/controller.yaml");
	_cleanup_free_ char *text = NULL;
	size_t len;
	if (file_read_all(path, 1 << 20, &text, &len) == -ENOENT) {
		skip();
		return;
	}
	KeyCheck kc = {.text = text};
	config_foreach_key(check_key_documented, &kc);
	assert_int_equal(kc.missing, 0);
	/* Its secrets are credential names, found in $CREDENTIALS_DIRECTORY. */
	const char *names[] = {"pve-token", "agent-token", "velocity-secret", "cloudflare-token"};
	for (size_t i = 0; i < 4; i++) {
		char p[600];
		snprintf(p, sizeof p, "%s/%s", tmpdir, names[i]);
		assert_int_equal(tu_write_file(p, "example-secret-value\n"), 0);
	}
	setenv("CREDENTIALS_DIRECTORY", tmpdir, 1);
	_cleanup_config_ Config *c = NULL;
	_cleanup_free_ char *errs = NULL;
	int r = config_load(path, 0, &c, &errs);
	unsetenv("CREDENTIALS_DIRECTORY");
	if (r < 0)
		fprintf(stderr, "%s", errs);
	assert_int_equal(r, 0);
	assert_true(c->agent.enabled && c->velocity.enabled && c->dns.enabled);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(config__minimal__defaults_and_optional_sections_off),
	    cmocka_unit_test(config__full_design_example__every_section_on),
	    cmocka_unit_test(config__unknown_key__names_file_line_key),
	    cmocka_unit_test(config__wrong_type__names_file_line_key),
	    cmocka_unit_test(config__missing_required__names_section_line_and_key),
	    cmocka_unit_test(config__durations__need_units),
	    cmocka_unit_test(config__template_and_ostemplate__error),
	    cmocka_unit_test(config__vmid_range__shape_and_order),
	    cmocka_unit_test(config__network__cidr_and_gateway_checked),
	    cmocka_unit_test(config__yaml_syntax_error__line_and_column),
	    cmocka_unit_test(config__section_left_out_or_empty__off),
	    cmocka_unit_test(config__secret_file__missing_is_an_error),
	    cmocka_unit_test(config__secret_relative__from_credentials_directory),
	    cmocka_unit_test(config__secrets__never_reach_the_log),
	    cmocka_unit_test(config__file__unreadable_and_errors_carry_path),
	    cmocka_unit_test(config__contrib_example__valid_and_documents_every_key),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
