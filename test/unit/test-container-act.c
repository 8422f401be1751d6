/* Unit tests for the pure helpers around the container plan: the act-side
 * builders of the exact Proxmox parameters (checked against the facts of
 * contracts/pve-apidata-subset.json: parameter names, 1/0 booleans, memory
 * in MiB, rootfs "<storage>:<GiB>", tags "zlh;zlh-<uid>"), placement, and
 * orphan classification. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "reconcilers/container.h"

#define MIB ((int64_t)1024 * 1024)
#define GIB ((int64_t)1024 * 1024 * 1024)

static const char UID[] = "3f2a9c1e-5b7d-4e8f-9a0b-1c2d3e4f5a6b";
#define DIGEST "0123456789abcdef0123456789abcdef01234567"

/* Parameter names the schema (PVE 9.1 apidata) allows, for the ones the
 * controller sends. A builder that sends anything else would be refused
 * ("property is not defined in schema"). */
static const char *const CREATE_PARAMS[] = {
    "vmid",   "ostemplate", "hostname",     "description", "tags",  "cores", "memory",  "swap",
    "rootfs", "net0",       "unprivileged", "features",    "start", "pool",  "storage", NULL,
};
static const char *const CLONE_PARAMS[] = {
    "newid", "hostname", "full", "storage", "pool", "description", "target", "snapname", NULL,
};
static const char *const CONFIG_PARAMS[] = {
    "cores", "memory",   "swap",   "hostname", "tags", "description",
    "net0",  "features", "delete", "digest",   NULL,
};
static const char *const BOOL_PARAMS[] = {"unprivileged", "start", "full", NULL};

static bool in_list(const char *const *l, const char *k, size_t kl)
{
	for (; *l; l++)
		if (strlen(*l) == kl && strncmp(*l, k, kl) == 0)
			return true;
	return false;
}

/* Every key of a form body is allowed, and every boolean is 1 or 0. */
static void assert_schema_ok(const char *body, const char *const *allowed)
{
	const char *p = body;
	while (*p) {
		size_t l = strcspn(p, "&");
		const char *eq = memchr(p, '=', l);
		assert_non_null(eq);
		size_t kl = (size_t)(eq - p);
		if (!in_list(allowed, p, kl))
			fail_msg("parameter '%.*s' is not in the schema", (int)kl, p);
		if (in_list(BOOL_PARAMS, p, kl)) {
			size_t vl = l - kl - 1;
			if (!(vl == 1 && (eq[1] == '0' || eq[1] == '1')))
				fail_msg("boolean '%.*s' is not 1/0", (int)l, p);
		}
		p += l;
		if (*p == '&')
			p++;
	}
}

typedef struct Fx {
	CtDesired d;
	CtAllocation a;
	CtSettings s;
	CtTemplate tpl[2];
	PveCtConfig cfg;
	char ctags[160];
	char cnet0[200];
} Fx;

static int setup(void **state)
{
	Fx *f = calloc(1, sizeof *f);
	f->d = (CtDesired){.kind = CT_KIND_GAMESERVER,
	                   .uid = UID,
	                   .owner = "user-42",
	                   .name = "survival-01",
	                   .variant = "paper",
	                   .cores = 2,
	                   .memory_mib = 4096,
	                   .disk_gib = 16,
	                   .power = CT_POWER_RUNNING};
	f->a = (CtAllocation){.vmid = 5000, .node = "pve1", .ip = "10.60.0.5"};
	recon_container_settings_init(&f->s);
	f->s.ostemplate = "local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst";
	f->s.storage = "local-lvm";
	f->s.net = (CtNet){.bridge = "vmbr3", .prefix = 22, .gateway = "10.60.0.1"};
	f->s.net_dev = (CtNet){.bridge = "vmbr2", .prefix = 22, .gateway = "10.70.0.1"};
	f->tpl[0] = (CtTemplate){.node = "pve1", .vmid = 900};
	f->tpl[1] = (CtTemplate){.node = "pve2", .vmid = 901};
	snprintf(f->ctags, sizeof f->ctags, "template;web");
	snprintf(f->cnet0, sizeof f->cnet0,
	         "name=eth0,bridge=vmbr0,hwaddr=BC:24:11:AA:BB:CC,ip=dhcp,type=veth");
	f->cfg = (PveCtConfig){.tags = f->ctags,
	                       .net0 = f->cnet0,
	                       .cores = 1,
	                       .memory = 512,
	                       .swap = 512,
	                       .features = "keyctl=1,nesting=0"};
	snprintf(f->cfg.digest, sizeof f->cfg.digest, "%s", DIGEST);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	free(*state);
	return 0;
}

/* --- create ------------------------------------------------------------------------ */

static void create_call__gameserver__exact_params(void **state)
{
	Fx *f = *state;
	CtCreateCall c;
	assert_int_equal(recon_container_create_call(&f->d, &f->a, &f->s, &c), 0);
	assert_string_equal(c.node, "pve1");
	assert_int_equal(c.params.vmid, 5000);
	assert_string_equal(c.params.hostname, "mc-paper-5000");
	assert_string_equal(c.params.tags, "zlh;zlh-3f2a9c1e-5b7d-4e8f-9a0b-1c2d3e4f5a6b");
	assert_string_equal(c.params.rootfs, "local-lvm:16");
	assert_string_equal(c.params.net0, "name=eth0,bridge=vmbr3,ip=10.60.0.5/22,gw=10.60.0.1");
	assert_int_equal(c.params.memory_mib, 4096);
	assert_int_equal(c.params.swap_mib, 0);
	assert_true(c.params.unprivileged);
	assert_true(c.params.start);
	assert_null(c.params.features);
	assert_true(pve_description_has_uid(c.params.description, UID));
	assert_non_null(strstr(c.params.description, "zlh:owner=user-42"));

	_cleanup_buf_ Buf b = BUF_INIT;
	assert_int_equal(pve_create_body(&c.params, &b), 0);
	assert_schema_ok(b.data, CREATE_PARAMS);
	assert_string_equal(
	    b.data,
	    "vmid=5000&ostemplate=local%3Avztmpl%2Fdebian-12-standard_12.7-1_amd64.tar.zst"
	    "&hostname=mc-paper-5000"
	    "&description=zlh%3Auid%3D3f2a9c1e-5b7d-4e8f-9a0b-1c2d3e4f5a6b%0Azlh%3Aowner%3Duser-42"
	    "%0Azlh%3Aname%3Dsurvival-01%0Amanaged%20by%20zlh-controller%0A"
	    "&tags=zlh%3Bzlh-3f2a9c1e-5b7d-4e8f-9a0b-1c2d3e4f5a6b&cores=2&memory=4096&swap=0"
	    "&rootfs=local-lvm%3A16"
	    "&net0=name%3Deth0%2Cbridge%3Dvmbr3%2Cip%3D10.60.0.5%2F22%2Cgw%3D10.60.0.1"
	    "&unprivileged=1&start=1");
}

static void create_call__devserver__nesting_dev_network_pool(void **state)
{
	Fx *f = *state;
	f->d.kind = CT_KIND_DEVSERVER;
	f->d.power = CT_POWER_STOPPED;
	f->s.pool = "zlh";
	f->s.swap_mib = 512;
	f->a.ip = "10.70.0.9";
	CtCreateCall c;
	assert_int_equal(recon_container_create_call(&f->d, &f->a, &f->s, &c), 0);
	assert_string_equal(c.params.hostname, "dev-5000");
	assert_string_equal(c.params.features, "nesting=1");
	assert_string_equal(c.params.net0, "name=eth0,bridge=vmbr2,ip=10.70.0.9/22,gw=10.70.0.1");
	assert_false(c.params.start);
	assert_string_equal(c.params.pool, "zlh");
	assert_int_equal(c.params.swap_mib, 512);
	_cleanup_buf_ Buf b = BUF_INIT;
	assert_int_equal(pve_create_body(&c.params, &b), 0);
	assert_schema_ok(b.data, CREATE_PARAMS);
	assert_non_null(strstr(b.data, "&features=nesting%3D1&start=0&pool=zlh"));
}

static void create_call__allocated_hostname_wins(void **state)
{
	Fx *f = *state;
	f->a.hostname = "survival-01";
	CtCreateCall c;
	assert_int_equal(recon_container_create_call(&f->d, &f->a, &f->s, &c), 0);
	assert_string_equal(c.params.hostname, "survival-01");
}

static void create_call__wrong_mode_or_missing_settings__einval(void **state)
{
	Fx *f = *state;
	CtCreateCall c = {.node = "untouched"};
	f->s.mode = CT_MODE_CLONE;
	assert_int_equal(recon_container_create_call(&f->d, &f->a, &f->s, &c), -EINVAL);
	f->s.mode = CT_MODE_CREATE;
	f->s.ostemplate = NULL;
	assert_int_equal(recon_container_create_call(&f->d, &f->a, &f->s, &c), -EINVAL);
	f->s.ostemplate = "t";
	f->s.net.bridge = NULL;
	assert_int_equal(recon_container_create_call(&f->d, &f->a, &f->s, &c), -EINVAL);
	f->s.net.bridge = "vmbr3";
	f->a.vmid = 0;
	assert_int_equal(recon_container_create_call(&f->d, &f->a, &f->s, &c), -EINVAL);
	assert_string_equal(c.node, "untouched");
}

/* --- clone -------------------------------------------------------------------------- */

static void clone_call__template_of_node_full_1(void **state)
{
	Fx *f = *state;
	f->s.mode = CT_MODE_CLONE;
	f->s.templates = f->tpl;
	f->s.n_templates = 2;
	f->s.pool = "zlh";
	f->a.node = "pve2";
	CtCloneCall c;
	assert_int_equal(recon_container_clone_call(&f->d, &f->a, &f->s, &c), 0);
	assert_int_equal(c.template_vmid, 901);
	assert_string_equal(c.node, "pve2");
	assert_int_equal(c.params.newid, 5000);
	assert_true(c.params.full);
	_cleanup_buf_ Buf b = BUF_INIT;
	assert_int_equal(pve_clone_body(&c.params, &b), 0);
	assert_schema_ok(b.data, CLONE_PARAMS);
	assert_non_null(strstr(b.data, "newid=5000&hostname=mc-paper-5000&full=1&storage=local-lvm"
	                               "&pool=zlh&description=zlh%3Auid%3D3f2a9c1e"));
}

static void clone_call__no_template_on_node__enoent(void **state)
{
	Fx *f = *state;
	f->s.mode = CT_MODE_CLONE;
	f->s.templates = f->tpl;
	f->s.n_templates = 1;
	f->a.node = "pve2";
	CtCloneCall c;
	assert_int_equal(recon_container_clone_call(&f->d, &f->a, &f->s, &c), -ENOENT);
}

/* --- config --------------------------------------------------------------------------- */

static void config_call__clone_config__all_fields_kept_hwaddr_and_tags(void **state)
{
	Fx *f = *state;
	f->d.kind = CT_KIND_DEVSERVER;
	f->a.ip = "10.70.0.9";
	CtAction act = {.type = CT_ACT_CONFIG, .config_fields = CT_CFG_ALL};
	snprintf(act.digest, sizeof act.digest, "%s", DIGEST);
	_cleanup_(recon_container_config_call_clear) CtConfigCall c = {0};
	assert_int_equal(recon_container_config_call(&act, &f->d, &f->a, &f->s, &f->cfg, &c), 0);
	assert_int_equal(c.update.cores, 2);
	assert_int_equal(c.update.memory_mib, 4096);
	assert_int_equal(c.update.swap_mib, 0);
	assert_string_equal(c.update.hostname, "dev-5000");
	assert_string_equal(c.update.tags,
	                    "template;web;zlh;zlh-3f2a9c1e-5b7d-4e8f-9a0b-1c2d3e4f5a6b");
	assert_string_equal(c.update.net0, "name=eth0,bridge=vmbr2,ip=10.70.0.9/22,gw=10.70.0.1,"
	                                   "hwaddr=BC:24:11:AA:BB:CC");
	assert_string_equal(c.update.features, "keyctl=1,nesting=1");
	assert_string_equal(c.update.digest, DIGEST);
	assert_null(c.update.delete_keys);
	_cleanup_buf_ Buf b = BUF_INIT;
	assert_int_equal(pve_config_body(&c.update, &b), 0);
	assert_schema_ok(b.data, CONFIG_PARAMS);
	assert_true(strstr(b.data, "&digest=" DIGEST) ==
	            b.data + b.len - strlen("&digest=" DIGEST));
}

static void config_call__drift_repair__only_drifted_fields(void **state)
{
	Fx *f = *state;
	CtAction act = {.type = CT_ACT_UPDATE_CONFIG, .config_fields = CT_CFG_MEMORY};
	snprintf(act.digest, sizeof act.digest, "%s", DIGEST);
	_cleanup_(recon_container_config_call_clear) CtConfigCall c = {0};
	assert_int_equal(recon_container_config_call(&act, &f->d, &f->a, &f->s, &f->cfg, &c), 0);
	_cleanup_buf_ Buf b = BUF_INIT;
	assert_int_equal(pve_config_body(&c.update, &b), 0);
	assert_string_equal(b.data, "memory=4096&digest=" DIGEST);
}

static void config_call__adopt_without_config__tags_only_ours(void **state)
{
	Fx *f = *state;
	CtAction act = {.type = CT_ACT_ADOPT_AND_TAG, .config_fields = CT_CFG_TAGS};
	_cleanup_(recon_container_config_call_clear) CtConfigCall c = {0};
	assert_int_equal(recon_container_config_call(&act, &f->d, &f->a, &f->s, NULL, &c), 0);
	assert_string_equal(c.update.tags, "zlh;zlh-3f2a9c1e-5b7d-4e8f-9a0b-1c2d3e4f5a6b");
	assert_null(c.update.digest);
}

static void config_call__orphan_untag__removes_only_ours(void **state)
{
	Fx *f = *state;
	snprintf(f->ctags, sizeof f->ctags, "web;zlh;zlh-%s", UID);
	CtAction act = {.type = CT_ACT_ORPHAN_UNTAG};
	snprintf(act.digest, sizeof act.digest, "%s", DIGEST);
	_cleanup_(recon_container_config_call_clear) CtConfigCall c = {0};
	assert_int_equal(recon_container_config_call(&act, &f->d, &f->a, &f->s, &f->cfg, &c), 0);
	_cleanup_buf_ Buf b = BUF_INIT;
	assert_int_equal(pve_config_body(&c.update, &b), 0);
	assert_string_equal(b.data, "tags=web&digest=" DIGEST);

	/* nothing left: delete the setting */
	recon_container_config_call_clear(&c);
	snprintf(f->ctags, sizeof f->ctags, "zlh;zlh-%s", UID);
	assert_int_equal(recon_container_config_call(&act, &f->d, &f->a, &f->s, &f->cfg, &c), 0);
	buf_clear(&b);
	assert_int_equal(pve_config_body(&c.update, &b), 0);
	assert_string_equal(b.data, "delete=tags&digest=" DIGEST);
	assert_schema_ok(b.data, CONFIG_PARAMS);
}

static void config_call__wrong_action__einval(void **state)
{
	Fx *f = *state;
	CtAction act = {.type = CT_ACT_START};
	CtConfigCall c = {.tags = NULL};
	assert_int_equal(recon_container_config_call(&act, &f->d, &f->a, &f->s, &f->cfg, &c),
	                 -EINVAL);
	act.type = CT_ACT_UPDATE_CONFIG; /* no fields */
	assert_int_equal(recon_container_config_call(&act, &f->d, &f->a, &f->s, &f->cfg, &c),
	                 -EINVAL);
	act.type = CT_ACT_ORPHAN_UNTAG; /* needs the config */
	assert_int_equal(recon_container_config_call(&act, &f->d, &f->a, &f->s, NULL, &c), -EINVAL);
	assert_null(c.tags);
}

static void default_hostname__per_kind(void **state)
{
	(void)state;
	char b[64];
	assert_int_equal(
	    recon_container_default_hostname(CT_KIND_GAMESERVER, "Paper", 5000, b, sizeof b), 0);
	assert_string_equal(b, "mc-paper-5000");
	assert_int_equal(
	    recon_container_default_hostname(CT_KIND_DEVSERVER, "x", 5001, b, sizeof b), 0);
	assert_string_equal(b, "dev-5001");
	assert_int_equal(
	    recon_container_default_hostname(CT_KIND_GAMESERVER, NULL, 5002, b, sizeof b), 0);
	assert_string_equal(b, "mc-5002");
	assert_int_equal(recon_container_default_hostname(CT_KIND_DEVSERVER, NULL, 5001, b, 4),
	                 -ENOBUFS);
	assert_int_equal(recon_container_default_hostname(CT_KIND_DEVSERVER, NULL, 42, b, sizeof b),
	                 -EINVAL);
}

/* --- placement ------------------------------------------------------------------------ */

static void place__most_free_after_counting_reservations(void **state)
{
	Fx *f = *state;
	PveNode n[] = {
	    {.node = "pve1", .status = PVE_NODE_ONLINE, .mem = 8 * GIB, .maxmem = 64 * GIB},
	    {.node = "pve2", .status = PVE_NODE_ONLINE, .mem = 2 * GIB, .maxmem = 64 * GIB},
	    {.node = "pve3", .status = PVE_NODE_OFFLINE, .mem = 0, .maxmem = 512 * GIB},
	    {.node = "pve4", .status = PVE_NODE_ONLINE, .mem = 0, .maxmem = -1},
	};
	const char *node = NULL;
	assert_int_equal(recon_container_place(&f->s, n, 4, NULL, 0, 4096, &node), 0);
	assert_string_equal(node, "pve2");
	/* pve2's observed mem lags: 40 GiB already reserved there */
	CtReserved r[] = {{.node = "pve2", .reserved_mib = 30 * 1024},
	                  {.node = "pve2", .reserved_mib = 10 * 1024}};
	assert_int_equal(recon_container_place(&f->s, n, 4, r, 2, 4096, &node), 0);
	assert_string_equal(node, "pve1");
}

static void place__ties_to_smaller_name_and_limits(void **state)
{
	Fx *f = *state;
	PveNode n[] = {
	    {.node = "b", .status = PVE_NODE_ONLINE, .mem = 0, .maxmem = 16 * GIB},
	    {.node = "a", .status = PVE_NODE_ONLINE, .mem = 0, .maxmem = 16 * GIB},
	};
	const char *node = NULL;
	assert_int_equal(recon_container_place(&f->s, n, 2, NULL, 0, 1024, &node), 0);
	assert_string_equal(node, "a");
	/* proxmox.nodes limits placement */
	const char *const allowed[] = {"b"};
	f->s.nodes = allowed;
	f->s.n_nodes = 1;
	assert_int_equal(recon_container_place(&f->s, n, 2, NULL, 0, 1024, &node), 0);
	assert_string_equal(node, "b");
	/* clone mode: only nodes with a template */
	f->s.nodes = NULL;
	f->s.n_nodes = 0;
	f->s.mode = CT_MODE_CLONE;
	CtTemplate t[] = {{.node = "b", .vmid = 900}};
	f->s.templates = t;
	f->s.n_templates = 1;
	assert_int_equal(recon_container_place(&f->s, n, 2, NULL, 0, 1024, &node), 0);
	assert_string_equal(node, "b");
}

static void place__nothing_fits__enospc(void **state)
{
	Fx *f = *state;
	PveNode n[] = {
	    {.node = "pve1", .status = PVE_NODE_ONLINE, .mem = 15 * GIB, .maxmem = 16 * GIB},
	};
	const char *node = "untouched";
	assert_int_equal(recon_container_place(&f->s, n, 1, NULL, 0, 2048, &node), -ENOSPC);
	assert_string_equal(node, "untouched");
	/* exactly full fits */
	assert_int_equal(recon_container_place(&f->s, n, 1, NULL, 0, 1024, &node), 0);
	assert_int_equal(recon_container_place(&f->s, NULL, 0, NULL, 0, 1024, &node), -ENOSPC);
}

/* --- orphans ---------------------------------------------------------------------------- */

static void orphans__classified_and_sorted_never_ours(void **state)
{
	(void)state;
	char t_ours[96], t_stray[96];
	snprintf(t_ours, sizeof t_ours, "zlh;zlh-%s", UID);
	snprintf(t_stray, sizeof t_stray, "zlh-%s;zlh", UID);
	PveGuest g[] = {
	    {.vmid = 5003, .node = "pve1", .tags = "zlh;zlh-deadbeef"}, /* unknown uid */
	    {.vmid = 5000, .node = "pve1", .tags = t_ours}, /* ours: fine */
	    {.vmid = 5001, .node = "pve2", .tags = "zlh"}, /* no uid */
	    {.vmid = 5007, .node = "pve2", .tags = t_stray}, /* uid known, wrong vmid */
	    {.vmid = 5005, .node = "pve1", .tags = ""}, /* untagged in range */
	    {.vmid = 5006, .node = "pve1", .tags = "", .type = PVE_GUEST_QEMU}, /* VM in range */
	    {.vmid = 5002, .node = "pve1", .tags = ""}, /* untagged, allocated: mid-clone */
	    {.vmid = 100, .node = "pve1", .tags = "web"}, /* outside the range */
	    {.vmid = 900, .node = "pve1", .tags = "template"}, /* the template */
	};
	CtKnownServer k[] = {
	    {.uid = UID, .vmid = 5000},
	    {.uid = "other-uid", .vmid = 5002},
	    {.uid = "no-alloc", .vmid = 0},
	};
	CtOrphan *o = NULL;
	size_t n = 0;
	assert_int_equal(
	    recon_container_orphans(g, ELEMENTSOF(g), k, ELEMENTSOF(k), 5000, 5999, &o, &n), 0);
	assert_int_equal(n, 5);
	assert_int_equal(o[0].vmid, 5001);
	assert_int_equal(o[0].kind, CT_ORPHAN_NO_UID);
	assert_int_equal(o[1].vmid, 5003);
	assert_int_equal(o[1].kind, CT_ORPHAN_UNKNOWN_UID);
	assert_string_equal(o[1].uid, "deadbeef");
	assert_int_equal(o[2].vmid, 5005);
	assert_int_equal(o[2].kind, CT_ORPHAN_UNTAGGED_IN_RANGE);
	assert_int_equal(o[3].vmid, 5006);
	assert_int_equal(o[3].kind, CT_ORPHAN_UNTAGGED_IN_RANGE);
	assert_int_equal(o[4].vmid, 5007);
	assert_int_equal(o[4].kind, CT_ORPHAN_STRAY);
	assert_string_equal(o[4].uid, UID);
	assert_string_equal(o[4].node, "pve2");
	assert_string_equal(recon_container_orphan_kind_to_string(o[4].kind), "stray");
	free(o);
}

static void orphans__none__null_and_zero(void **state)
{
	(void)state;
	CtOrphan *o = (CtOrphan *)0x1;
	size_t n = 9;
	assert_int_equal(recon_container_orphans(NULL, 0, NULL, 0, 5000, 5999, &o, &n), 0);
	assert_null(o);
	assert_int_equal(n, 0);
}

static void names__every_action_and_op_named(void **state)
{
	(void)state;
	for (int t = 0; t < _CT_ACT_MAX; t++)
		assert_string_not_equal(recon_container_action_to_string((CtActionType)t),
		                        "INVALID");
	for (int t = 0; t < _CT_OP_MAX; t++)
		assert_string_not_equal(recon_container_op_to_string((CtOpType)t), "invalid");
	assert_string_equal(recon_container_op_crash_name(CT_OP_SHUTDOWN), "stop");
	assert_string_equal(recon_container_op_crash_name(CT_OP_CLONE), "clone");
	assert_string_equal(recon_container_step_to_string(CT_STEP_HANDLE), "handle");
	assert_int_equal(recon_container_action_class(CT_ACT_CREATE), CT_CLASS_EXTERNAL);
	assert_int_equal(recon_container_action_class(CT_ACT_ALLOCATE), CT_CLASS_STORE);
	assert_int_equal(recon_container_action_class(CT_ACT_WAIT_TASK), CT_CLASS_OBSERVE);
}

typedef struct OutcomeCase {
	CtActionType t;
	int r;
	bool upid;
	CtOutcome want;
} OutcomeCase;

static void outcome__every_call_result(void **state)
{
	(void)state;
	static const OutcomeCase cases[] = {
	    {CT_ACT_CREATE, 0, true, CT_OUTCOME_HANDLE},
	    {CT_ACT_UPDATE_CONFIG, 0, false, CT_OUTCOME_DONE},
	    {CT_ACT_RESIZE, 0, false, CT_OUTCOME_DONE}, /* ran synchronously */
	    {CT_ACT_CREATE, -EEXIST, false, CT_OUTCOME_OBSERVE},
	    {CT_ACT_CLONE, -EEXIST, false, CT_OUTCOME_OBSERVE},
	    {CT_ACT_CLONE, -EBUSY, false, CT_OUTCOME_RETRY}, /* template locked (disk) */
	    {CT_ACT_CREATE, -ENOENT, false, CT_OUTCOME_FAILED},
	    {CT_ACT_CREATE, -EREMOTEIO, false, CT_OUTCOME_FAILED},
	    {CT_ACT_CREATE, -EINVAL, false, CT_OUTCOME_FAILED},
	    {CT_ACT_CREATE, -ETIMEDOUT, false, CT_OUTCOME_UNKNOWN},
	    {CT_ACT_CREATE, -ECONNRESET, false, CT_OUTCOME_UNKNOWN},
	    {CT_ACT_CREATE, -EIO, false, CT_OUTCOME_UNKNOWN},
	    {CT_ACT_CREATE, -EBADMSG, false, CT_OUTCOME_UNKNOWN},
	    {CT_ACT_CREATE, -ECONNREFUSED, false, CT_OUTCOME_RETRY},
	    {CT_ACT_START, -EALREADY, false, CT_OUTCOME_DONE},
	    {CT_ACT_STOP, -EALREADY, false, CT_OUTCOME_DONE},
	    {CT_ACT_SHUTDOWN, -EALREADY, false, CT_OUTCOME_DONE},
	    {CT_ACT_RESIZE, -EALREADY, false, CT_OUTCOME_DONE},
	    {CT_ACT_RESIZE, -ERANGE, false, CT_OUTCOME_FAILED},
	    {CT_ACT_REBOOT, -ESRCH, false, CT_OUTCOME_OBSERVE},
	    {CT_ACT_DESTROY, -ENOENT, false, CT_OUTCOME_DONE},
	    {CT_ACT_DESTROY, -EBUSY, false, CT_OUTCOME_RETRY}, /* still running */
	    {CT_ACT_START, -ENOENT, false, CT_OUTCOME_OBSERVE}, /* deleted by hand */
	    {CT_ACT_UPDATE_CONFIG, -ESTALE, false, CT_OUTCOME_OBSERVE},
	    {CT_ACT_ORPHAN_UNTAG, -EPERM, false, CT_OUTCOME_FAILED},
	    {CT_ACT_START, -EAGAIN, false, CT_OUTCOME_RETRY},
	};
	for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
		const OutcomeCase *c = &cases[i];
		CtOutcome o = recon_container_outcome(c->t, c->r, c->upid);
		if (o != c->want)
			fail_msg("%s r=%d: got %s want %s", recon_container_action_to_string(c->t),
			         c->r, recon_container_outcome_to_string(o),
			         recon_container_outcome_to_string(c->want));
	}
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
	    T(create_call__gameserver__exact_params),
	    T(create_call__devserver__nesting_dev_network_pool),
	    T(create_call__allocated_hostname_wins),
	    T(create_call__wrong_mode_or_missing_settings__einval),
	    T(clone_call__template_of_node_full_1),
	    T(clone_call__no_template_on_node__enoent),
	    T(config_call__clone_config__all_fields_kept_hwaddr_and_tags),
	    T(config_call__drift_repair__only_drifted_fields),
	    T(config_call__adopt_without_config__tags_only_ours),
	    T(config_call__orphan_untag__removes_only_ours),
	    T(config_call__wrong_action__einval),
	    T(default_hostname__per_kind),
	    T(place__most_free_after_counting_reservations),
	    T(place__ties_to_smaller_name_and_limits),
	    T(place__nothing_fits__enospc),
	    T(orphans__classified_and_sorted_never_ours),
	    T(orphans__none__null_and_zero),
	    T(names__every_action_and_op_named),
	    T(outcome__every_call_result),
	};
	return cmocka_run_group_tests_name("container-act", tests, NULL, NULL);
}
