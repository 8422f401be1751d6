/* Unit tests for reconcilers/pve: the pure parts (bodies, UPIDs, tags,
 * envelope and error parsing, classification of every known Proxmox error
 * text, identity strings) and, over a loopback fake server, what the client
 * puts on the wire (token header, methods, paths, query strings). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>

#include "reconcilers/pve.h"

static const char UID[] = "3f2a9c1e-5b7d-4e8f-9a0b-1c2d3e4f5a6b";

/* --- form bodies ------------------------------------------------------------- */

static void body__create__all_params_form_encoded(void **state)
{
	(void)state;
	PveCreateParams p = {
	    .vmid = 5000,
	    .ostemplate = "local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst",
	    .hostname = "mc-paper-5000",
	    .description = "zlh:uid=abc\nzlh:owner=user-42",
	    .tags = "zlh;zlh-abc",
	    .cores = 2,
	    .memory_mib = 4096,
	    .swap_mib = 0,
	    .rootfs = "local-lvm:16",
	    .net0 = "name=eth0,bridge=vmbr3,ip=10.60.0.5/22,gw=10.60.0.1",
	    .unprivileged = true,
	    .features = "nesting=1",
	    .start = true,
	    .pool = "zlh",
	};
	_cleanup_buf_ Buf b = BUF_INIT;
	assert_int_equal(pve_create_body(&p, &b), 0);
	assert_string_equal(
	    b.data, "vmid=5000&ostemplate=local%3Avztmpl%2Fdebian-12-standard_12.7-1_amd64.tar.zst"
	            "&hostname=mc-paper-5000&description=zlh%3Auid%3Dabc%0Azlh%3Aowner%3Duser-42"
	            "&tags=zlh%3Bzlh-abc&cores=2&memory=4096&swap=0&rootfs=local-lvm%3A16"
	            "&net0=name%3Deth0%2Cbridge%3Dvmbr3%2Cip%3D10.60.0.5%2F22%2Cgw%3D10.60.0.1"
	            "&unprivileged=1&features=nesting%3D1&start=1&pool=zlh");
}

static void body__create__optional_params_omitted_booleans_explicit(void **state)
{
	(void)state;
	PveCreateParams p = {.vmid = 100, .ostemplate = "t", .swap_mib = -1};
	_cleanup_buf_ Buf b = BUF_INIT;
	assert_int_equal(pve_create_body(&p, &b), 0);
	assert_string_equal(b.data, "vmid=100&ostemplate=t&unprivileged=0&start=0");
}

static void body__create__invalid__einval(void **state)
{
	(void)state;
	_cleanup_buf_ Buf b = BUF_INIT;
	PveCreateParams p = {.vmid = 99, .ostemplate = "t", .swap_mib = -1};
	assert_int_equal(pve_create_body(&p, &b), -EINVAL); /* below 100 */
	p.vmid = 1000000000;
	assert_int_equal(pve_create_body(&p, &b), -EINVAL);
	p.vmid = 100;
	p.ostemplate = NULL;
	assert_int_equal(pve_create_body(&p, &b), -EINVAL);
	p.ostemplate = "t";
	p.memory_mib = 8; /* minimum 16 */
	assert_int_equal(pve_create_body(&p, &b), -EINVAL);
	p.memory_mib = 0;
	p.tags = "zlh;Bad Tag!";
	assert_int_equal(pve_create_body(&p, &b), -EINVAL);
	assert_int_equal(b.len, 0);
}

static void body__clone__full_is_1_not_true(void **state)
{
	(void)state;
	PveCloneParams p = {
	    .newid = 5001,
	    .hostname = "dev-5001",
	    .full = true,
	    .storage = "local-lvm",
	    .pool = "zlh",
	    .description = "zlh:uid=x y&z",
	};
	_cleanup_buf_ Buf b = BUF_INIT;
	assert_int_equal(pve_clone_body(&p, &b), 0);
	assert_string_equal(b.data, "newid=5001&hostname=dev-5001&full=1&storage=local-lvm"
	                            "&pool=zlh&description=zlh%3Auid%3Dx%20y%26z");
	assert_null(strstr(b.data, "true"));
}

static void body__clone__storage_without_full__einval(void **state)
{
	(void)state;
	PveCloneParams p = {.newid = 5001, .storage = "local-lvm"};
	_cleanup_buf_ Buf b = BUF_INIT;
	assert_int_equal(pve_clone_body(&p, &b), -EINVAL);
}

static void body__config__fields_then_digest(void **state)
{
	(void)state;
	PveConfigUpdate u = {
	    .digest = "0123456789abcdef0123456789abcdef01234567",
	    .cores = 4,
	    .memory_mib = 8192,
	    .swap_mib = -1,
	    .hostname = "survival-01",
	    .tags = "zlh;zlh-abc",
	};
	_cleanup_buf_ Buf b = BUF_INIT;
	assert_int_equal(pve_config_body(&u, &b), 0);
	assert_string_equal(b.data, "cores=4&memory=8192&hostname=survival-01&tags=zlh%3Bzlh-abc"
	                            "&digest=0123456789abcdef0123456789abcdef01234567");
}

static void body__config__delete_and_nothing(void **state)
{
	(void)state;
	_cleanup_buf_ Buf b = BUF_INIT;
	PveConfigUpdate u = {.swap_mib = -1, .digest = "d"};
	assert_int_equal(pve_config_body(&u, &b), -EINVAL); /* nothing to change */
	u.delete_keys = "tags";
	assert_int_equal(pve_config_body(&u, &b), 0);
	assert_string_equal(b.data, "delete=tags&digest=d");
}

static void form__utf8_and_reserved__percent_encoded(void **state)
{
	(void)state;
	_cleanup_buf_ Buf b = BUF_INIT;
	assert_int_equal(pve_form_add(&b, "description", "a+b c/é"), 0);
	assert_int_equal(pve_form_add_bool(&b, "full", false), 0);
	assert_int_equal(pve_form_add_int(&b, "vmid", -5), 0);
	assert_string_equal(b.data, "description=a%2Bb%20c%2F%C3%A9&full=0&vmid=-5");
}

/* --- UPIDs ----------------------------------------------------------------------- */

static void upid__create__parsed(void **state)
{
	(void)state;
	PveUpid u;
	assert_int_equal(
	    pve_upid_parse("UPID:pve1:0000ABCD:0012F3A4:65A1B2C3:vzcreate:5000:zlh@pve!controller:",
	                   &u),
	    0);
	assert_string_equal(u.node, "pve1");
	assert_int_equal(u.pid, 0xABCD);
	assert_int_equal(u.pstart, 0x12F3A4);
	assert_int_equal(u.starttime, 0x65A1B2C3);
	assert_string_equal(u.type, "vzcreate");
	assert_string_equal(u.id, "5000");
	assert_string_equal(u.user, "zlh@pve!controller");
}

static void upid__clone_carries_source_and_9_digit_pstart(void **state)
{
	(void)state;
	PveUpid u;
	assert_int_equal(
	    pve_upid_parse("UPID:node-2:00001234:1A2B3C4D5:65A1B2C3:vzclone:900:root@pam:", &u), 0);
	assert_string_equal(u.node, "node-2");
	assert_string_equal(u.type, "vzclone");
	assert_string_equal(u.id, "900");
	assert_int_equal(u.pstart, 0x1A2B3C4D5ULL);
}

static void upid__empty_id__accepted(void **state)
{
	(void)state;
	PveUpid u;
	assert_int_equal(
	    pve_upid_parse("UPID:n:00000001:00000002:00000003:aptupdate::root@pam:", &u), 0);
	assert_string_equal(u.id, "");
}

static void upid__malformed__einval_and_untouched(void **state)
{
	(void)state;
	PveUpid u = {.pid = 77};
	static const char *const bad[] = {
	    "",
	    "UPID",
	    "UPID:pve1:0000ABCD:0012F3A4:65A1B2C3:vzcreate:5000:root@pam", /* no trailing : */
	    "UPID:pve1:ABCD:0012F3A4:65A1B2C3:vzcreate:5000:root@pam:", /* short pid */
	    "UPID:pve1:0000ABCD:0012F3A4:65A1B2C3::5000:root@pam:", /* empty type */
	    "UPID:pve1:0000ABCD:0012F3A4:65A1B2C3:vzcreate:5000::", /* empty user */
	    "UPID:-pve:0000ABCD:0012F3A4:65A1B2C3:vzcreate:5000:root@pam:",
	    "UPID:pve 1:0000ABCD:0012F3A4:65A1B2C3:vzcreate:5000:root@pam:",
	    "UPID:pve1:0000ABCD:0012F3A4:65A1B2C3:vzcreate:5000:root@pam:x",
	    "UPID:pve1:0000ABCG:0012F3A4:65A1B2C3:vzcreate:5000:root@pam:",
	    "XPID:pve1:0000ABCD:0012F3A4:65A1B2C3:vzcreate:5000:root@pam:",
	};
	for (size_t i = 0; i < ELEMENTSOF(bad); i++)
		assert_int_equal(pve_upid_parse(bad[i], &u), -EINVAL);
	assert_int_equal(pve_upid_parse(NULL, &u), -EINVAL);
	assert_int_equal(u.pid, 77);
}

/* --- tags -------------------------------------------------------------------------- */

static void tags__normalize__lower_dedup_sorted_semicolons(void **state)
{
	(void)state;
	_cleanup_free_ char *t = NULL;
	assert_int_equal(pve_tags_normalize("ZLH; zlh-ABC,web  db;zlh\tWEB", &t), 0);
	assert_string_equal(t, "db;web;zlh;zlh-abc");
	free(t);
	t = NULL;
	assert_int_equal(pve_tags_normalize(NULL, &t), 0);
	assert_string_equal(t, "");
	free(t);
	t = NULL;
	assert_int_equal(pve_tags_normalize(" ;;, ", &t), 0);
	assert_string_equal(t, "");
	free(t);
	t = NULL;
	assert_int_equal(pve_tags_normalize("b;A;b;a;c;B", &t), 0);
	assert_string_equal(t, "a;b;c");
}

static void tags__normalize__bounded_and_fast_on_peer_data(void **state)
{
	(void)state;
	/* 15000 tags, mostly duplicates: sorted dedup, not quadratic */
	_cleanup_buf_ Buf in = BUF_INIT;
	for (int i = 0; i < 15000; i++)
		assert_int_equal(buf_printf(&in, "t%d;", i % 7), 0);
	_cleanup_free_ char *t = NULL;
	assert_int_equal(pve_tags_normalize(in.data, &t), 0);
	assert_string_equal(t, "t0;t1;t2;t3;t4;t5;t6");
	buf_clear(&in);
	for (int i = 0; i <= PVE_MAX_TAGS_LEN / 4; i++)
		assert_int_equal(buf_puts(&in, "abc;"), 0);
	char *big = NULL;
	assert_int_equal(pve_tags_normalize(in.data, &big), -E2BIG);
	assert_null(big);
}

static void tags__set_operations__ignore_order_case_and_duplicates(void **state)
{
	(void)state;
	assert_true(pve_tags_equal("zlh;zlh-abc", "ZLH-ABC,zlh,zlh"));
	assert_false(pve_tags_equal("zlh;zlh-abc", "zlh"));
	assert_false(pve_tags_equal("zlh", "zlh;extra"));
	assert_true(pve_tags_equal("", NULL));
	assert_true(pve_tags_contains("a;ZLH;b", "zlh"));
	assert_false(pve_tags_contains("zlh-x", "zlh"));
	assert_false(pve_tags_contains("zlhx;xzlh", "zlh"));
	assert_true(pve_tags_subset("zlh;zlh-abc", "web;zlh-abc;zlh"));
	assert_false(pve_tags_subset("zlh;zlh-abc", "web;zlh"));
	assert_true(pve_tags_subset("", "web"));

	_cleanup_free_ char *u = NULL, *r = NULL;
	assert_int_equal(pve_tags_union("web;zlh", "zlh;zlh-abc", &u), 0);
	assert_string_equal(u, "web;zlh;zlh-abc");
	assert_int_equal(pve_tags_remove("web;zlh;zlh-abc", "zlh;zlh-abc", &r), 0);
	assert_string_equal(r, "web");
	free(r);
	r = NULL;
	assert_int_equal(pve_tags_remove("zlh;ZLH-abc", "zlh;zlh-abc", &r), 0);
	assert_string_equal(r, "");
}

static void tags__valid__proxmox_pattern(void **state)
{
	(void)state;
	assert_true(pve_tag_valid("zlh"));
	assert_true(pve_tag_valid("zlh-3f2a9c1e-5b7d"));
	assert_true(pve_tag_valid("_a+b.c-d"));
	assert_true(pve_tag_valid("UPPER"));
	assert_false(pve_tag_valid(""));
	assert_false(pve_tag_valid("-lead"));
	assert_false(pve_tag_valid("a b"));
	assert_false(pve_tag_valid("a;b"));
	assert_false(pve_tag_valid("a/b"));
}

/* --- identity ---------------------------------------------------------------------- */

static void identity__tags_and_description(void **state)
{
	(void)state;
	char t[128], d[512];
	assert_int_equal(pve_identity_tags("3F2A9C1E-5B7D-4E8F-9A0B-1C2D3E4F5A6B", t, sizeof t), 0);
	assert_string_equal(t, "zlh;zlh-3f2a9c1e-5b7d-4e8f-9a0b-1c2d3e4f5a6b");
	_cleanup_free_ char *n = NULL;
	assert_int_equal(pve_tags_normalize(t, &n), 0);
	assert_string_equal(n, t); /* already in Proxmox's stored form */
	assert_int_equal(pve_identity_tags("bad uid", t, sizeof t), -EINVAL);
	assert_int_equal(pve_identity_tags(UID, t, 10), -ENOBUFS);

	assert_int_equal(pve_identity_description(UID, "user-42", "survival-01", d, sizeof d), 0);
	assert_non_null(strstr(d, "zlh:uid=3f2a9c1e-5b7d-4e8f-9a0b-1c2d3e4f5a6b\n"));
	assert_non_null(strstr(d, "zlh:owner=user-42\n"));
	assert_non_null(strstr(d, "zlh:name=survival-01\n"));
	assert_true(pve_description_has_uid(d, UID));
	assert_int_equal(pve_identity_description(UID, "a\nzlh:uid=evil", "n", d, sizeof d),
	                 -EINVAL);
}

static void identity__description_uid_whole_token_only(void **state)
{
	(void)state;
	assert_true(pve_description_has_uid("note\nzlh:uid=abc-1\n", "abc-1"));
	assert_true(pve_description_has_uid("zlh:uid=ABC-1 more", "abc-1"));
	assert_false(pve_description_has_uid("zlh:uid=abc-12", "abc-1"));
	assert_false(pve_description_has_uid("zlh:uid=abc", "abc-1"));
	assert_false(pve_description_has_uid("xzlh:uid=abc-1", "abc-1"));
	assert_false(pve_description_has_uid(NULL, "abc-1"));
	assert_false(pve_description_has_uid("zlh:uid=", ""));
	char u[64];
	assert_int_equal(pve_description_uid("hello zlh:uid=abc-1\nzlh:uid=zzz", u, sizeof u), 0);
	assert_string_equal(u, "abc-1");
	assert_int_equal(pve_description_uid("nothing", u, sizeof u), -ENOENT);
	assert_int_equal(pve_description_uid("zlh:uid=", u, sizeof u), -ENOENT);
	assert_int_equal(pve_description_uid("zlh:uid=abcdef", u, 4), -ENOBUFS);
}

static void identity__tags_uid(void **state)
{
	(void)state;
	char u[64];
	assert_int_equal(pve_tags_uid("web;zlh;zlh-ABC-1", u, sizeof u), 0);
	assert_string_equal(u, "abc-1");
	assert_int_equal(pve_tags_uid("zlh;web", u, sizeof u), -ENOENT);
	assert_int_equal(pve_tags_uid("zlh-", u, sizeof u), -ENOENT);
}

static void net0__format_and_parse(void **state)
{
	(void)state;
	char b[256];
	assert_int_equal(pve_net0_format("vmbr3", "10.60.0.5", 22, "10.60.0.1", NULL, b, sizeof b),
	                 0);
	assert_string_equal(b, "name=eth0,bridge=vmbr3,ip=10.60.0.5/22,gw=10.60.0.1");
	assert_int_equal(pve_net0_format("vmbr3", "10.60.0.5", 22, "10.60.0.1", "BC:24:11:00:00:01",
	                                 b, sizeof b),
	                 0);
	assert_string_equal(
	    b, "name=eth0,bridge=vmbr3,ip=10.60.0.5/22,gw=10.60.0.1,hwaddr=BC:24:11:00:00:01");
	assert_int_equal(pve_net0_format("vm,br", "10.60.0.5", 22, NULL, NULL, b, sizeof b),
	                 -EINVAL);
	assert_int_equal(pve_net0_format("vmbr3", "10.60.0.5", 33, NULL, NULL, b, sizeof b),
	                 -EINVAL);

	PveNet0 n;
	/* As Proxmox stores it: its own key order, hwaddr and type added. */
	assert_int_equal(
	    pve_net0_parse("name=eth0,bridge=vmbr3,gw=10.60.0.1,hwaddr=BC:24:11:AA:BB:CC,"
	                   "ip=10.60.0.5/22,type=veth",
	                   &n),
	    0);
	assert_string_equal(n.name, "eth0");
	assert_string_equal(n.bridge, "vmbr3");
	assert_string_equal(n.ip, "10.60.0.5/22");
	assert_string_equal(n.gw, "10.60.0.1");
	assert_string_equal(n.hwaddr, "BC:24:11:AA:BB:CC");
	assert_int_equal(pve_net0_parse("eth0", &n), -EINVAL);
}

static void rootfs__size__units(void **state)
{
	(void)state;
	int64_t s = 0;
	assert_int_equal(pve_rootfs_size_bytes("local-lvm:vm-5000-disk-0,size=16G", &s), 0);
	assert_int_equal(s, 16LL << 30);
	assert_int_equal(pve_rootfs_size_bytes("local:5000/vm-5000-disk-0.raw,size=512M", &s), 0);
	assert_int_equal(s, 512LL << 20);
	assert_int_equal(pve_rootfs_size_bytes("x,acl=1,size=1.5T,ro=0", &s), 0);
	assert_int_equal(s, 3LL << 39);
	assert_int_equal(pve_rootfs_size_bytes("x,size=4096", &s), 0);
	assert_int_equal(s, 4096);
	assert_int_equal(pve_rootfs_size_bytes("local-lvm:vm-5000-disk-0", &s), -ENOENT);
	assert_int_equal(pve_rootfs_size_bytes("x,size=G", &s), -EINVAL);
	assert_int_equal(pve_rootfs_size_bytes("x,size=-1G", &s), -EINVAL);
	assert_true(pve_features_nesting("keyctl=1,nesting=1"));
	assert_false(pve_features_nesting("nesting=0"));
	assert_false(pve_features_nesting(NULL));
}

/* --- envelope and errors --------------------------------------------------------- */

static int parse(long status, const char *body, PveOp op, json_t **data, PveError *err)
{
	return pve_response_parse(status, body, strlen(body), op, data, err);
}

static void response__ok__returns_data(void **state)
{
	(void)state;
	json_t *d = NULL;
	PveError e = {.http_status = 9};
	assert_int_equal(parse(200, "{\"data\":\"UPID:x\"}", PVE_OP_CREATE, &d, &e), 0);
	assert_string_equal(json_string_value(d), "UPID:x");
	assert_int_equal(e.http_status, 0);
	json_decref(d);
	d = NULL;
	assert_int_equal(parse(200, "{\"data\":null}", PVE_OP_CONFIG, &d, NULL), 0);
	assert_true(json_is_null(d));
	json_decref(d);
}

static void response__ok_but_malformed__ebadmsg(void **state)
{
	(void)state;
	json_t *d = (json_t *)0x1;
	assert_int_equal(parse(200, "not json", PVE_OP_READ, &d, NULL), -EBADMSG);
	assert_int_equal(parse(200, "{\"nodata\":1}", PVE_OP_READ, &d, NULL), -EBADMSG);
	assert_int_equal(parse(200, "[1]", PVE_OP_READ, &d, NULL), -EBADMSG);
	assert_int_equal(pve_response_parse(200, NULL, 0, PVE_OP_READ, &d, NULL), -EBADMSG);
	assert_ptr_equal(d, (json_t *)0x1);
}

static void response__param_error__einval_with_errors_map(void **state)
{
	(void)state;
	json_t *d = NULL;
	PveError e;
	assert_int_equal(
	    parse(400,
	          "{\"data\":null,\"message\":\"Parameter verification failed.\\n\","
	          "\"errors\":{\"full\":\"type check ('boolean') failed - got 'true'\\n\"}}",
	          PVE_OP_CLONE, &d, &e),
	    -EINVAL);
	assert_null(d);
	assert_int_equal(e.http_status, 400);
	assert_string_equal(e.message, "Parameter verification failed.");
	assert_string_equal(e.errors, "full: type check ('boolean') failed - got 'true'");
}

static void response__error_without_body__http_status_message(void **state)
{
	(void)state;
	json_t *d = NULL;
	PveError e;
	assert_int_equal(parse(401, "", PVE_OP_READ, &d, &e), -EACCES);
	assert_string_equal(e.message, "HTTP 401");
	assert_int_equal(parse(502, "<html>bad gateway</html>", PVE_OP_CREATE, &d, &e), -EIO);
	assert_int_equal(parse(500, "{\"data\":null,\"message\":\"boom\\nsecond line\\n\"}",
	                       PVE_OP_CREATE, &d, &e),
	                 -EREMOTEIO);
	assert_string_equal(e.message, "boom");
}

typedef struct ClassifyCase {
	long status;
	const char *message;
	PveOp op;
	int expect;
} ClassifyCase;

static void classify__every_known_proxmox_text(void **state)
{
	(void)state;
	static const ClassifyCase cases[] = {
	    {500, "CT 5000 already exists on node 'pve2'", PVE_OP_CREATE, -EEXIST},
	    {500, "VM 5000 already exists on node 'pve1'", PVE_OP_CREATE, -EEXIST},
	    {500, "CT 5000 already exists on node 'pve2'", PVE_OP_CLONE, -EEXIST},
	    {500, "Configuration file 'nodes/pve1/lxc/5000.conf' does not exist", PVE_OP_DELETE,
	     -ENOENT},
	    {500, "Configuration file 'nodes/pve1/lxc/5000.conf' does not exist", PVE_OP_CONFIG,
	     -ENOENT},
	    {500, "CT is locked (disk)", PVE_OP_CLONE, -EBUSY},
	    {500, "CT is locked (create)", PVE_OP_CONFIG, -EBUSY},
	    {500, "CT is locked (backup)", PVE_OP_DELETE, -EBUSY},
	    {500, "can't lock file '/run/lock/lxc/pve-config-5000.lock' - got timeout",
	     PVE_OP_CONFIG, -EBUSY},
	    {500, "unable to destroy CT 5000 - container is running", PVE_OP_DELETE, -EBUSY},
	    {500, "detected modified configuration - file changed by other user? Try again.",
	     PVE_OP_CONFIG, -ESTALE},
	    {500, "CT 5000 already running", PVE_OP_START, -EALREADY},
	    {500, "CT 5000 not running", PVE_OP_STOP, -EALREADY},
	    {500, "VM 5000 not running", PVE_OP_REBOOT, -ESRCH},
	    {500, "disk is already at specified size", PVE_OP_RESIZE, -EALREADY},
	    {500, "unable to shrink disk size", PVE_OP_RESIZE, -ERANGE},
	    {400, "no such task", PVE_OP_TASK, -ENOENT},
	    {400, "unable to parse worker upid 'x'", PVE_OP_TASK, -EINVAL},
	    {400, "Parameter verification failed.", PVE_OP_CREATE, -EINVAL},
	    {401, "authentication failure", PVE_OP_READ, -EACCES},
	    {403, "Permission check failed (/vms/5000, VM.Allocate)", PVE_OP_CREATE, -EPERM},
	    {404, "Not Found", PVE_OP_READ, -ENOENT},
	    {501, "Method 'GET /foo' not implemented", PVE_OP_READ, -EOPNOTSUPP},
	    {503, "Service Unavailable", PVE_OP_READ, -EAGAIN},
	    {595, "Errors during connection establishment, proxy handshake", PVE_OP_CREATE,
	     -ECONNREFUSED},
	    {596, "Connection timed out", PVE_OP_CREATE, -EIO},
	    {500, "some new failure", PVE_OP_CREATE, -EREMOTEIO},
	    {500, "CT 5000 already running", PVE_OP_DELETE, -EREMOTEIO},
	    {500, "CT 5000 not running", PVE_OP_START, -EREMOTEIO},
	};
	for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
		const ClassifyCase *c = &cases[i];
		int r = pve_error_classify(c->status, c->message, c->op);
		if (r != c->expect)
			fail_msg("case %zu '%s': got %d want %d", i, c->message, r, c->expect);
	}
	/* "does not support" must not be read as "does not exist". */
	assert_int_equal(pve_error_classify(500,
	                                    "storage 'local-lvm' does not support container "
	                                    "directories",
	                                    PVE_OP_CREATE),
	                 -EREMOTEIO);
}

/* --- resources, config, status, task ------------------------------------------------ */

static const char RESOURCES_VM[] =
    "{\"data\":["
    "{\"id\":\"lxc/5000\",\"type\":\"lxc\",\"vmid\":5000,\"node\":\"pve1\",\"status\":\"running\","
    " \"name\":\"mc-paper-5000\",\"tags\":\"zlh-ABC;zlh\",\"mem\":1048576,\"maxmem\":4294967296,"
    " \"maxdisk\":17179869184,\"maxcpu\":2,\"uptime\":1234},"
    "{\"id\":\"lxc/"
    "5001\",\"type\":\"lxc\",\"vmid\":\"5001\",\"node\":\"pve2\",\"status\":\"unknown\","
    " \"lock\":\"create\",\"maxmem\":\"1073741824\"},"
    "{\"id\":\"qemu/100\",\"type\":\"qemu\",\"vmid\":100,\"node\":\"pve1\",\"status\":\"stopped\","
    " \"template\":1,\"maxcpu\":2.0},"
    "{\"id\":\"storage/pve1/local\",\"type\":\"storage\",\"node\":\"pve1\"}"
    "]}";

static const char RESOURCES_NODE[] =
    "{\"data\":["
    "{\"id\":\"node/pve1\",\"type\":\"node\",\"node\":\"pve1\",\"status\":\"online\","
    " \"mem\":8589934592,\"maxmem\":68719476736,\"cpu\":0.1,\"maxcpu\":16},"
    "{\"id\":\"node/pve2\",\"type\":\"node\",\"node\":\"pve2\",\"status\":\"offline\"}"
    "]}";

static void resources__vm_and_node__parsed(void **state)
{
	(void)state;
	PveResources res = {0};
	json_t *d = NULL;
	assert_int_equal(parse(200, RESOURCES_VM, PVE_OP_READ, &d, NULL), 0);
	assert_int_equal(pve_parse_resources(d, &res), 0);
	json_decref(d);
	assert_int_equal(parse(200, RESOURCES_NODE, PVE_OP_READ, &d, NULL), 0);
	assert_int_equal(pve_parse_resources(d, &res), 0);
	json_decref(d);

	assert_int_equal(res.n_guests, 3);
	assert_int_equal(res.n_nodes, 2);
	const PveGuest *g = pve_resources_find_guest(&res, 5000);
	assert_non_null(g);
	assert_int_equal(g->type, PVE_GUEST_LXC);
	assert_string_equal(g->node, "pve1");
	assert_int_equal(g->status, PVE_RUN_RUNNING);
	assert_string_equal(g->name, "mc-paper-5000");
	assert_string_equal(g->tags, "zlh;zlh-abc");
	assert_string_equal(g->lock, "");
	assert_int_equal(g->maxmem, 4294967296LL);
	assert_int_equal(g->maxdisk, 17179869184LL);
	assert_int_equal(g->maxcpu, 2);
	assert_int_equal(g->uptime, 1234);

	g = pve_resources_find_guest(&res, 5001);
	assert_non_null(g);
	assert_int_equal(g->status, PVE_RUN_UNKNOWN);
	assert_null(g->name);
	assert_string_equal(g->tags, "");
	assert_string_equal(g->lock, "create");
	assert_int_equal(g->maxmem, 1073741824LL); /* Perl sent a string */
	assert_int_equal(g->maxdisk, -1);
	assert_int_equal(g->uptime, -1);

	g = pve_resources_find_guest(&res, 100);
	assert_int_equal(g->type, PVE_GUEST_QEMU);
	assert_true(g->template_);
	assert_int_equal(g->maxcpu, 2);
	assert_null(pve_resources_find_guest(&res, 4242));

	const PveNode *n = pve_resources_find_node(&res, "pve1");
	assert_non_null(n);
	assert_int_equal(n->status, PVE_NODE_ONLINE);
	assert_int_equal(n->maxmem, 68719476736LL);
	n = pve_resources_find_node(&res, "pve2");
	assert_int_equal(n->status, PVE_NODE_OFFLINE);
	assert_int_equal(n->mem, -1);
	pve_resources_clear(&res);
	pve_resources_clear(&res); /* twice is safe */
}

static void resources__malformed_entry__ebadmsg_and_untouched(void **state)
{
	(void)state;
	PveResources res = {0};
	json_t *d = NULL;
	assert_int_equal(parse(200, RESOURCES_VM, PVE_OP_READ, &d, NULL), 0);
	assert_int_equal(pve_parse_resources(d, &res), 0);
	json_decref(d);
	static const char *const bad[] = {
	    "{\"data\":[{\"type\":\"lxc\",\"vmid\":5002}]}", /* no node */
	    "{\"data\":[{\"type\":\"lxc\",\"node\":\"n\"}]}", /* no vmid */
	    "{\"data\":[{\"type\":\"lxc\",\"vmid\":99,\"node\":\"n\"}]}", /* bad vmid */
	    "{\"data\":[{\"vmid\":5002,\"node\":\"n\"}]}", /* no type */
	    "{\"data\":{\"type\":\"lxc\"}}", /* not an array */
	    "{\"data\":[{\"type\":\"node\",\"node\":\"\"}]}", /* empty node */
	    "{\"data\":[{\"type\":\"lxc\",\"vmid\":5003,\"node\":\"n\"}," /* one good, */
	    " {\"type\":\"lxc\",\"vmid\":5004,\"node\":7}]}", /* one bad */
	};
	for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
		assert_int_equal(parse(200, bad[i], PVE_OP_READ, &d, NULL), 0);
		assert_int_equal(pve_parse_resources(d, &res), -EBADMSG);
		json_decref(d);
	}
	assert_int_equal(res.n_guests, 3);
	assert_null(pve_resources_find_guest(&res, 5003));
	pve_resources_clear(&res);
}

static void resources__too_many__e2big(void **state)
{
	(void)state;
	json_t *a = json_array();
	for (int i = 0; i < PVE_MAX_NODES + 1; i++)
		json_array_append_new(a, json_pack("{s:s,s:s}", "type", "node", "node", "n"));
	PveResources res = {0};
	assert_int_equal(pve_parse_resources(a, &res), -E2BIG);
	assert_int_equal(res.n_nodes, 0);
	json_decref(a);
}

static void config__parsed_with_defaults(void **state)
{
	(void)state;
	json_t *d = NULL;
	assert_int_equal(
	    parse(200,
	          "{\"data\":{\"digest\":\"0123456789abcdef0123456789abcdef01234567\","
	          "\"description\":\"zlh:uid=abc\\nzlh:owner=o\\n\",\"tags\":\"zlh-abc;zlh\","
	          "\"hostname\":\"mc-paper-5000\",\"cores\":\"2\",\"memory\":4096,"
	          "\"net0\":\"name=eth0,bridge=vmbr3,ip=10.60.0.5/22\","
	          "\"rootfs\":\"local-lvm:vm-5000-disk-0,size=16G\",\"unprivileged\":1,"
	          "\"features\":\"nesting=1\"}}",
	          PVE_OP_READ, &d, NULL),
	    0);
	PveCtConfig c;
	assert_int_equal(pve_parse_config(d, &c), 0);
	json_decref(d);
	assert_string_equal(c.digest, "0123456789abcdef0123456789abcdef01234567");
	assert_true(pve_description_has_uid(c.description, "abc"));
	assert_string_equal(c.tags, "zlh;zlh-abc");
	assert_string_equal(c.hostname, "mc-paper-5000");
	assert_int_equal(c.cores, 2);
	assert_int_equal(c.memory, 4096);
	assert_int_equal(c.swap, 512); /* schema default */
	assert_true(c.unprivileged);
	assert_true(pve_features_nesting(c.features));
	assert_string_equal(c.lock, "");
	pve_ct_config_clear(&c);
	pve_ct_config_clear(&c);

	d = json_pack("{s:s}", "digest", "d");
	assert_int_equal(pve_parse_config(d, &c), 0);
	assert_int_equal(c.cores, 0);
	assert_null(c.description);
	assert_string_equal(c.tags, "");
	pve_ct_config_clear(&c);
	json_decref(d);
	d = json_string("x");
	assert_int_equal(pve_parse_config(d, &c), -EBADMSG);
	json_decref(d);
}

static void status__parsed(void **state)
{
	(void)state;
	json_t *d = json_pack("{s:s,s:s,s:i}", "status", "stopped", "lock", "backup", "uptime", 0);
	PveCtStatus s;
	assert_int_equal(pve_parse_status(d, &s), 0);
	assert_int_equal(s.status, PVE_RUN_STOPPED);
	assert_string_equal(s.lock, "backup");
	assert_int_equal(s.uptime, 0);
	assert_int_equal(s.maxmem, -1);
	json_decref(d);
}

static void task__running_ok_warnings_failed(void **state)
{
	(void)state;
	PveTaskStatus t;
	json_t *d = json_pack("{s:s}", "status", "running");
	assert_int_equal(pve_parse_task_status(d, &t), 0);
	assert_true(t.running);
	assert_false(t.ok);
	json_decref(d);

	d = json_pack("{s:s,s:s}", "status", "stopped", "exitstatus", "OK");
	assert_int_equal(pve_parse_task_status(d, &t), 0);
	assert_false(t.running);
	assert_true(t.ok);
	json_decref(d);

	d = json_pack("{s:s,s:s}", "status", "stopped", "exitstatus", "WARNINGS: 2");
	assert_int_equal(pve_parse_task_status(d, &t), 0);
	assert_true(t.ok);
	assert_string_equal(t.exitstatus, "WARNINGS: 2");
	json_decref(d);

	d = json_pack("{s:s,s:s}", "status", "stopped", "exitstatus",
	              "unable to create CT 5000 - no space left");
	assert_int_equal(pve_parse_task_status(d, &t), 0);
	assert_false(t.ok);
	assert_string_equal(t.exitstatus, "unable to create CT 5000 - no space left");
	json_decref(d);

	d = json_pack("{s:s}", "status", "weird");
	assert_int_equal(pve_parse_task_status(d, &t), -EBADMSG);
	json_decref(d);

	assert_true(pve_task_exitstatus_ok("OK"));
	assert_true(pve_task_exitstatus_ok("WARNINGS: 10"));
	assert_false(pve_task_exitstatus_ok("WARNINGS: "));
	assert_false(pve_task_exitstatus_ok("WARNINGS: x"));
	assert_false(pve_task_exitstatus_ok("OK but not really"));
	assert_false(pve_task_exitstatus_ok("ok"));
	assert_false(pve_task_exitstatus_ok(NULL));
}

/* --- robustness: mutated peer input never crashes, leaks or half-fills -------------- */

static uint64_t rng_next(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

static void mutate(char *buf, size_t len, uint64_t *seed)
{
	static const char alphabet[] = "{}[]\":,0123456789-.eE \\ntruefalsnul\x01\xff";
	int n = 1 + (int)(rng_next(seed) % 4);
	for (int i = 0; i < n && len; i++)
		buf[rng_next(seed) % len] = alphabet[rng_next(seed) % (sizeof alphabet - 1)];
}

static void parsers__mutated_input__no_crash_no_partial_result(void **state)
{
	(void)state;
	static const char *const seeds[] = {
	    RESOURCES_VM,
	    RESOURCES_NODE,
	    "{\"data\":{\"digest\":\"d\",\"tags\":\"a;b\",\"cores\":\"2\",\"net0\":"
	    "\"name=eth0,ip=1.2.3.4/24\",\"rootfs\":\"x,size=8G\",\"description\":\"zlh:uid=u\"}}",
	    "{\"data\":{\"status\":\"stopped\",\"exitstatus\":\"WARNINGS: 2\"}}",
	    "{\"data\":null,\"message\":\"CT 5000 already exists on node 'pve2'\\n\","
	    "\"errors\":{\"vmid\":\"bad\"}}",
	};
	uint64_t seed = 0x9E3779B97F4A7C15ULL;
	char buf[2048];
	for (int round = 0; round < 4000; round++) {
		const char *src = seeds[round % ELEMENTSOF(seeds)];
		size_t len = strlen(src);
		assert_true(len < sizeof buf);
		memcpy(buf, src, len + 1);
		mutate(buf, len, &seed);
		json_t *d = NULL;
		PveError e;
		long status = round % 3 ? 200 : 500;
		int r = pve_response_parse(status, buf, len, PVE_OP_READ, &d, &e);
		assert_true(r <= 0);
		if (r < 0) {
			assert_null(d);
			assert_true(strlen(e.message) < sizeof e.message);
			continue;
		}
		PveResources res = {0};
		if (pve_parse_resources(d, &res) < 0) {
			assert_null(res.guests);
			assert_int_equal(res.n_guests + res.n_nodes, 0);
		}
		pve_resources_clear(&res);
		PveCtConfig c;
		if (pve_parse_config(d, &c) == 0) {
			PveNet0 n;
			int64_t sz;
			assert_true(pve_net0_parse(c.net0 ? c.net0 : "", &n) <= 0);
			assert_true(pve_rootfs_size_bytes(c.rootfs, &sz) <= 0);
			(void)pve_description_has_uid(c.description, "u");
			pve_ct_config_clear(&c);
		}
		PveCtStatus st;
		assert_true(pve_parse_status(d, &st) <= 0);
		PveTaskStatus t;
		assert_true(pve_parse_task_status(d, &t) <= 0);
		json_decref(d);
	}
	/* UPIDs, tags, net0 and rootfs values from random bytes */
	for (int round = 0; round < 4000; round++) {
		char u[] = "UPID:pve1:0000ABCD:0012F3A4:65A1B2C3:vzcreate:5000:zlh@pve!c:";
		mutate(u, strlen(u), &seed);
		PveUpid up;
		assert_true(pve_upid_parse(u, &up) <= 0);
		_cleanup_free_ char *t = NULL;
		if (pve_tags_normalize(u, &t) == 0) {
			assert_true(pve_tags_equal(t, u));
			char uid[64];
			assert_true(pve_tags_uid(t, uid, sizeof uid) <= 0);
		}
		PveNet0 n;
		int64_t sz;
		assert_true(pve_net0_parse(u, &n) <= 0);
		assert_true(pve_rootfs_size_bytes(u, &sz) <= 0);
	}
}

/* --- over loopback: what the client puts on the wire ------------------------------- */

typedef struct Fake {
	struct MHD_Daemon *d;
	int port;
	pthread_mutex_t mu;
	/* the last request */
	char method[16];
	char url[512];
	char query[256];
	char auth[256];
	char ctype[128];
	Buf body;
	int requests;
	/* the canned answer */
	unsigned status;
	char reply[2048];
} Fake;

typedef struct Upload {
	Buf b;
} Upload;

static enum MHD_Result collect_arg(void *cls, enum MHD_ValueKind kind, const char *key,
                                   const char *value)
{
	(void)kind;
	Buf *q = cls;
	(void)!buf_printf(q, "%s%s=%s", q->len ? "&" : "", key, value ? value : "");
	return MHD_YES;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **con_cls)
{
	(void)version;
	Fake *f = cls;
	Upload *u = *con_cls;
	if (!u) {
		u = calloc(1, sizeof *u);
		*con_cls = u;
		return MHD_YES;
	}
	if (*upload_data_size) {
		(void)!buf_append(&u->b, upload_data, *upload_data_size);
		*upload_data_size = 0;
		return MHD_YES;
	}
	pthread_mutex_lock(&f->mu);
	f->requests++;
	snprintf(f->method, sizeof f->method, "%s", method);
	snprintf(f->url, sizeof f->url, "%s", url);
	Buf q = BUF_INIT;
	MHD_get_connection_values(conn, MHD_GET_ARGUMENT_KIND, collect_arg, &q);
	snprintf(f->query, sizeof f->query, "%s", q.data ? q.data : "");
	buf_done(&q);
	const char *a = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Authorization");
	snprintf(f->auth, sizeof f->auth, "%s", a ? a : "");
	const char *ct = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Type");
	snprintf(f->ctype, sizeof f->ctype, "%s", ct ? ct : "");
	buf_clear(&f->body);
	(void)!buf_append(&f->body, u->b.data ? u->b.data : "", u->b.len);
	struct MHD_Response *resp = MHD_create_response_from_buffer(
	    strlen(f->reply), (void *)f->reply, MHD_RESPMEM_MUST_COPY);
	unsigned st = f->status;
	pthread_mutex_unlock(&f->mu);
	enum MHD_Result ret = MHD_queue_response(conn, st, resp);
	MHD_destroy_response(resp);
	return ret;
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
	(void)cls, (void)conn, (void)toe;
	Upload *u = *con_cls;
	if (u) {
		buf_done(&u->b);
		free(u);
		*con_cls = NULL;
	}
}

static void fake_answer(Fake *f, unsigned status, const char *reply)
{
	pthread_mutex_lock(&f->mu);
	f->status = status;
	snprintf(f->reply, sizeof f->reply, "%s", reply);
	pthread_mutex_unlock(&f->mu);
}

static int fake_setup(void **state)
{
	Fake *f = calloc(1, sizeof *f);
	pthread_mutex_init(&f->mu, NULL);
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = 0};
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	f->d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD, 0, NULL, NULL, on_request, f,
	                        MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa,
	                        MHD_OPTION_NOTIFY_COMPLETED, on_completed, f, MHD_OPTION_END);
	if (!f->d)
		return -1;
	const union MHD_DaemonInfo *i = MHD_get_daemon_info(f->d, MHD_DAEMON_INFO_BIND_PORT);
	f->port = i ? i->port : 0;
	*state = f;
	return f->port ? 0 : -1;
}

static int fake_teardown(void **state)
{
	Fake *f = *state;
	MHD_stop_daemon(f->d);
	buf_done(&f->body);
	pthread_mutex_destroy(&f->mu);
	free(f);
	return 0;
}

static PveClient *fake_client(Fake *f)
{
	char url[64];
	snprintf(url, sizeof url, "http://127.0.0.1:%d/", f->port);
	PveClientOptions o = {
	    .url = url,
	    .token_id = "zlh@pve!controller",
	    .token_secret = "s3cr3t-uuid",
	    .http = {.timeout_ms = 5000},
	};
	return pve_client_new(&o);
}

#define UPID_OK "UPID:pve1:0000ABCD:0012F3A4:65A1B2C3:vzcreate:5000:zlh@pve!controller:"

static void wire__create__token_header_form_body_upid(void **state)
{
	Fake *f = *state;
	_cleanup_pve_client_ PveClient *c = fake_client(f);
	assert_non_null(c);
	fake_answer(f, 200, "{\"data\":\"" UPID_OK "\"}");
	PveCreateParams p = {.vmid = 5000,
	                     .ostemplate = "local:vztmpl/x.tar.zst",
	                     .swap_mib = 0,
	                     .tags = "zlh;zlh-abc",
	                     .unprivileged = true,
	                     .start = true};
	_cleanup_free_ char *upid = NULL;
	PveError e;
	assert_int_equal(pve_create_lxc(c, "pve1", &p, &upid, &e), 0);
	assert_string_equal(upid, UPID_OK);
	assert_string_equal(f->method, "POST");
	assert_string_equal(f->url, "/api2/json/nodes/pve1/lxc");
	assert_string_equal(f->auth, "PVEAPIToken=zlh@pve!controller=s3cr3t-uuid");
	assert_string_equal(f->ctype, "application/x-www-form-urlencoded");
	assert_string_equal(f->body.data, "vmid=5000&ostemplate=local%3Avztmpl%2Fx.tar.zst"
	                                  "&tags=zlh%3Bzlh-abc&swap=0&unprivileged=1&start=1");
}

static void wire__create_exists__eexist_with_message(void **state)
{
	Fake *f = *state;
	_cleanup_pve_client_ PveClient *c = fake_client(f);
	fake_answer(f, 500,
	            "{\"data\":null,\"message\":\"CT 5000 already exists on node 'pve2'\\n\"}");
	PveCreateParams p = {.vmid = 5000, .ostemplate = "t", .swap_mib = -1};
	char *upid = (char *)0x1;
	PveError e;
	assert_int_equal(pve_create_lxc(c, "pve1", &p, &upid, &e), -EEXIST);
	assert_ptr_equal(upid, (char *)0x1); /* untouched on failure */
	assert_int_equal(e.http_status, 500);
	assert_string_equal(e.message, "CT 5000 already exists on node 'pve2'");
}

static void wire__delete__params_in_query_string(void **state)
{
	Fake *f = *state;
	_cleanup_pve_client_ PveClient *c = fake_client(f);
	fake_answer(f, 200, "{\"data\":\"" UPID_OK "\"}");
	_cleanup_free_ char *upid = NULL;
	assert_int_equal(pve_delete(c, "pve1", 5000, false, &upid, NULL), 0);
	assert_string_equal(f->method, "DELETE");
	assert_string_equal(f->url, "/api2/json/nodes/pve1/lxc/5000");
	assert_string_equal(f->query, "purge=1");
	assert_string_equal(f->body.data, "");
	free(upid);
	upid = NULL;
	assert_int_equal(pve_delete(c, "pve1", 5000, true, &upid, NULL), 0);
	assert_string_equal(f->query, "purge=1&force=1");

	fake_answer(f, 500,
	            "{\"data\":null,\"message\":\"Configuration file 'nodes/pve1/lxc/5000.conf' "
	            "does not exist\\n\"}");
	assert_int_equal(pve_delete(c, "pve1", 5000, false, NULL, NULL), -ENOENT);
}

static void wire__task_status__upid_encoded_in_path(void **state)
{
	Fake *f = *state;
	_cleanup_pve_client_ PveClient *c = fake_client(f);
	fake_answer(f, 200, "{\"data\":{\"status\":\"stopped\",\"exitstatus\":\"OK\"}}");
	PveTaskStatus t;
	assert_int_equal(pve_task_status(c, UPID_OK, &t, NULL), 0);
	assert_true(t.ok);
	assert_string_equal(f->method, "GET");
	/* libmicrohttpd decodes the path; what matters is that it arrived whole. */
	assert_string_equal(f->url, "/api2/json/nodes/pve1/tasks/" UPID_OK "/status");
	assert_int_equal(pve_task_status(c, "UPID:garbage", &t, NULL), -EINVAL);
}

static void wire__power_and_config_calls(void **state)
{
	Fake *f = *state;
	_cleanup_pve_client_ PveClient *c = fake_client(f);
	fake_answer(f, 200, "{\"data\":\"" UPID_OK "\"}");
	_cleanup_free_ char *u1 = NULL;
	assert_int_equal(pve_shutdown(c, "pve1", 5000, 60, true, &u1, NULL), 0);
	assert_string_equal(f->url, "/api2/json/nodes/pve1/lxc/5000/status/shutdown");
	assert_string_equal(f->body.data, "timeout=60&forceStop=1");

	fake_answer(f, 500, "{\"data\":null,\"message\":\"CT 5000 not running\\n\"}");
	assert_int_equal(pve_stop(c, "pve1", 5000, NULL, NULL), -EALREADY);
	assert_int_equal(pve_reboot(c, "pve1", 5000, NULL, NULL), -ESRCH);
	fake_answer(f, 500, "{\"data\":null,\"message\":\"CT 5000 already running\\n\"}");
	assert_int_equal(pve_start(c, "pve1", 5000, NULL, NULL), -EALREADY);
	assert_string_equal(f->url, "/api2/json/nodes/pve1/lxc/5000/status/start");

	fake_answer(f, 200, "{\"data\":null}");
	PveConfigUpdate u = {.digest = "abc", .cores = 2, .swap_mib = -1};
	assert_int_equal(pve_put_config(c, "pve1", 5000, &u, NULL), 0);
	assert_string_equal(f->method, "PUT");
	assert_string_equal(f->url, "/api2/json/nodes/pve1/lxc/5000/config");
	assert_string_equal(f->body.data, "cores=2&digest=abc");

	_cleanup_free_ char *u2 = (char *)NULL;
	assert_int_equal(pve_resize(c, "pve1", 5000, 16, &u2, NULL), 0);
	assert_null(u2); /* null data: ran synchronously */
	assert_string_equal(f->body.data, "disk=rootfs&size=16G");
	fake_answer(f, 500, "{\"data\":null,\"message\":\"disk is already at specified size\\n\"}");
	assert_int_equal(pve_resize(c, "pve1", 5000, 16, NULL, NULL), -EALREADY);

	fake_answer(f, 500,
	            "{\"data\":null,\"message\":\"detected modified configuration - file "
	            "changed by other user? Try again.\\n\"}");
	assert_int_equal(pve_put_config(c, "pve1", 5000, &u, NULL), -ESTALE);
	assert_int_equal(pve_put_config(c, "bad/node", 5000, &u, NULL), -EINVAL);
}

static void wire__cluster_resources__two_typed_calls(void **state)
{
	Fake *f = *state;
	_cleanup_pve_client_ PveClient *c = fake_client(f);
	/* The fake answers both calls with the same mixed list: each is parsed
	 * by type, so guests and nodes come out twice. */
	fake_answer(f, 200,
	            "{\"data\":[{\"type\":\"lxc\",\"vmid\":5000,\"node\":\"pve1\"},"
	            "{\"type\":\"node\",\"node\":\"pve1\",\"status\":\"online\"}]}");
	int before = f->requests;
	PveResources res;
	assert_int_equal(pve_cluster_resources(c, &res, NULL), 0);
	assert_int_equal(f->requests - before, 2);
	assert_string_equal(f->query, "type=node");
	assert_int_equal(res.n_guests, 2);
	assert_int_equal(res.n_nodes, 2);
	pve_resources_clear(&res);

	fake_answer(f, 500, "{\"data\":null,\"message\":\"cluster not ready - no quorum?\\n\"}");
	PveError e;
	res = (PveResources){.n_guests = 77};
	assert_int_equal(pve_cluster_resources(c, &res, &e), -EREMOTEIO);
	assert_int_equal(res.n_guests, 77); /* a failed list is "unknown", not "empty" */
	assert_string_equal(e.message, "cluster not ready - no quorum?");
}

static void wire__unreachable__transport_error(void **state)
{
	(void)state;
	PveClientOptions o = {.url = "http://127.0.0.1:1",
	                      .token_id = "a@b!c",
	                      .token_secret = "s",
	                      .http = {.connect_timeout_ms = 2000, .timeout_ms = 3000}};
	_cleanup_pve_client_ PveClient *c = pve_client_new(&o);
	PveResources res;
	PveError e;
	int r = pve_cluster_resources(c, &res, &e);
	assert_true(r == -ECONNREFUSED || r == -EIO);
	assert_int_equal(e.http_status, 0);
	assert_true(strlen(e.message) > 0);
}

static void client__new__refuses_missing_or_injected_credentials(void **state)
{
	(void)state;
	PveClientOptions o = {
	    .url = "http://127.0.0.1:1", .token_id = "a@b!c", .token_secret = "s"};
	PveClient *c = pve_client_new(&o);
	assert_non_null(c);
	c = pve_client_free(c);
	assert_null(c);
	assert_null(pve_client_free(NULL));
	o.token_secret = "s\r\nX-Evil: 1";
	assert_null(pve_client_new(&o));
	o.token_secret = NULL;
	assert_null(pve_client_new(&o));
	o.token_secret = "s";
	o.url = NULL;
	assert_null(pve_client_new(&o));
}

int main(void)
{
	const struct CMUnitTest pure[] = {
	    cmocka_unit_test(body__create__all_params_form_encoded),
	    cmocka_unit_test(body__create__optional_params_omitted_booleans_explicit),
	    cmocka_unit_test(body__create__invalid__einval),
	    cmocka_unit_test(body__clone__full_is_1_not_true),
	    cmocka_unit_test(body__clone__storage_without_full__einval),
	    cmocka_unit_test(body__config__fields_then_digest),
	    cmocka_unit_test(body__config__delete_and_nothing),
	    cmocka_unit_test(form__utf8_and_reserved__percent_encoded),
	    cmocka_unit_test(upid__create__parsed),
	    cmocka_unit_test(upid__clone_carries_source_and_9_digit_pstart),
	    cmocka_unit_test(upid__empty_id__accepted),
	    cmocka_unit_test(upid__malformed__einval_and_untouched),
	    cmocka_unit_test(tags__normalize__lower_dedup_sorted_semicolons),
	    cmocka_unit_test(tags__normalize__bounded_and_fast_on_peer_data),
	    cmocka_unit_test(tags__set_operations__ignore_order_case_and_duplicates),
	    cmocka_unit_test(tags__valid__proxmox_pattern),
	    cmocka_unit_test(identity__tags_and_description),
	    cmocka_unit_test(identity__description_uid_whole_token_only),
	    cmocka_unit_test(identity__tags_uid),
	    cmocka_unit_test(net0__format_and_parse),
	    cmocka_unit_test(rootfs__size__units),
	    cmocka_unit_test(response__ok__returns_data),
	    cmocka_unit_test(response__ok_but_malformed__ebadmsg),
	    cmocka_unit_test(response__param_error__einval_with_errors_map),
	    cmocka_unit_test(response__error_without_body__http_status_message),
	    cmocka_unit_test(classify__every_known_proxmox_text),
	    cmocka_unit_test(resources__vm_and_node__parsed),
	    cmocka_unit_test(resources__malformed_entry__ebadmsg_and_untouched),
	    cmocka_unit_test(resources__too_many__e2big),
	    cmocka_unit_test(config__parsed_with_defaults),
	    cmocka_unit_test(status__parsed),
	    cmocka_unit_test(task__running_ok_warnings_failed),
	    cmocka_unit_test(parsers__mutated_input__no_crash_no_partial_result),
	    cmocka_unit_test(client__new__refuses_missing_or_injected_credentials),
	};
	const struct CMUnitTest wire[] = {
	    cmocka_unit_test(wire__create__token_header_form_body_upid),
	    cmocka_unit_test(wire__create_exists__eexist_with_message),
	    cmocka_unit_test(wire__delete__params_in_query_string),
	    cmocka_unit_test(wire__task_status__upid_encoded_in_path),
	    cmocka_unit_test(wire__power_and_config_calls),
	    cmocka_unit_test(wire__cluster_resources__two_typed_calls),
	    cmocka_unit_test(wire__unreachable__transport_error),
	};
	http_global_init();
	int r = cmocka_run_group_tests_name("pve-pure", pure, NULL, NULL);
	r += cmocka_run_group_tests_name("pve-wire", wire, fake_setup, fake_teardown);
	return r;
}
