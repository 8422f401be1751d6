/* Unit tests for the zlh-agent client (reconcilers/agentapi.c) without
 * network: the provisioning payload in production's exact shape (each
 * variant's artifact_path, java_path around 1.20.5, memory_mb, dev
 * payloads), the canonical text and its hash, /status and /ready parsing
 * (shapes, bounds, hostile strings), error classification, and the client's
 * argument checks. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "reconcilers/agentapi.h"
#include "util.h"

#define S(x) x, strlen(x)

/* --- payload ------------------------------------------------------------------------------ */

static void artifact__each_variant(void **state)
{
	(void)state;
	char b[AGENTAPI_PATH_MAX];
	static const struct {
		const char *variant, *want;
	} rows[] = {
	    {"paper", "minecraft/paper/1.21.4/server.jar"},
	    {"purpur", "minecraft/purpur/1.21.4/server.jar"},
	    {"vanilla", "minecraft/vanilla/1.21.4/server.jar"},
	    {"fabric", "minecraft/fabric/1.21.4/fabric-server.jar"},
	    {"forge", "minecraft/forge/1.21.4/forge-installer.jar"},
	    {"neoforge", "minecraft/neoforge/1.21.4/neoforge-installer.jar"},
	};
	for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
		int l = agentapi_artifact_path(rows[i].variant, "1.21.4", b, sizeof b);
		assert_int_equal(l, (int)strlen(rows[i].want));
		assert_string_equal(b, rows[i].want);
	}
}

static void artifact__bad_input__refused(void **state)
{
	(void)state;
	char b[AGENTAPI_PATH_MAX] = "untouched";
	assert_int_equal(agentapi_artifact_path("bukkit", "1.21.4", b, sizeof b), -EINVAL);
	assert_int_equal(agentapi_artifact_path(NULL, "1.21.4", b, sizeof b), -EINVAL);
	assert_int_equal(agentapi_artifact_path("paper", "../etc", b, sizeof b), -EINVAL);
	assert_int_equal(agentapi_artifact_path("paper", "1.21/../../x", b, sizeof b), -EINVAL);
	assert_int_equal(agentapi_artifact_path("paper", "", b, sizeof b), -EINVAL);
	assert_int_equal(agentapi_artifact_path("paper", NULL, b, sizeof b), -EINVAL);
	assert_string_equal(b, "untouched");
	char small[10] = "untouched";
	assert_int_equal(agentapi_artifact_path("paper", "1.21.4", small, sizeof small), -ENOBUFS);
	assert_string_equal(small, "untouched");
	/* forge's own version scheme is a valid token */
	assert_true(agentapi_artifact_path("forge", "1.20.1-47.2.0", b, sizeof b) > 0);
	assert_string_equal(b, "minecraft/forge/1.20.1-47.2.0/forge-installer.jar");
}

static void java__boundaries(void **state)
{
	(void)state;
	static const struct {
		const char *v;
		int major;
	} rows[] = {
	    {"1.20.4", 17},        {"1.20.5", 21},        {"1.21", 21},       {"1.20.10", 21},
	    {"1.20", 17},          {"1.20.0", 17},        {"1.19.4", 17},     {"1.8.9", 17},
	    {"1.21.4", 21},        {"1.20.5-pre1", 21},   {"1.20.4-rc1", 17}, {"1.21-rc1", 21},
	    {"1.20.1-47.2.0", 17}, {"2.0", 21},           {"26.1", 21},       {"1", 17},
	    {"24w14a", 21},        {"24w13a", 17},        {"23w51b", 17},     {"25w02a", 21},
	    {"b1.7.3", 17},        {"a1.2.6", 17},        {"c0.30", 17},      {"rd-132211", 17},
	    {"inf-20100618", 17},  {"latest", 21},        {"", 21},           {"1.20.5.1", 21},
	    {"1.020.5", 21},       {"99999999999.1", 21},
	};
	for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
		int m = agentapi_java_major(rows[i].v);
		if (m != rows[i].major)
			fail_msg("java_major(%s) = %d, want %d", rows[i].v, m, rows[i].major);
	}
	assert_int_equal(agentapi_java_major(NULL), 21);
	assert_string_equal(agentapi_java_path("1.20.4"), "java/17/OpenJDK17.tar.gz");
	assert_string_equal(agentapi_java_path("1.20.5"), "java/21/OpenJDK21.tar.gz");
	assert_string_equal(agentapi_java_path("1.21"), "java/21/OpenJDK21.tar.gz");
}

static void version_cmp__numeric(void **state)
{
	(void)state;
	assert_true(agentapi_version_cmp("1.20.10", "1.20.5") > 0);
	assert_true(agentapi_version_cmp("1.21", "1.20.5") > 0);
	assert_true(agentapi_version_cmp("1.20", "1.20.0") == 0);
	assert_true(agentapi_version_cmp("1.9", "1.10") < 0);
	assert_true(agentapi_version_cmp("1.20.5-pre1", "1.20.5") == 0);
	assert_true(agentapi_version_cmp("x", "0") == 0);
}

static void payload__game_exact_shape(void **state)
{
	(void)state;
	json_t *p = NULL;
	assert_int_equal(agentapi_payload_game(5000, "minecraft", "paper", "1.21.4", 4096, &p), 0);
	_cleanup_free_ char *s = NULL;
	assert_int_equal(agentapi_payload_canonical(p, &s), 0);
	assert_string_equal(
	    s, "{\"artifact_path\":\"minecraft/paper/1.21.4/server.jar\",\"container_type\":"
	       "\"game\",\"game\":\"minecraft\",\"java_path\":\"java/21/OpenJDK21.tar.gz\","
	       "\"memory_mb\":4096,\"ports\":[25565],\"variant\":\"paper\",\"version\":"
	       "\"1.21.4\",\"vmid\":5000,\"world\":\"world\"}");
	assert_int_equal(json_object_size(p), 10);
	assert_true(json_is_integer(json_object_get(p, "vmid")));
	assert_true(json_is_integer(json_object_get(p, "memory_mb")));
	json_decref(p);

	/* memory_mb is the spec's MiB as given; java 17 below 1.20.5 */
	assert_int_equal(agentapi_payload_game(5123, "minecraft", "forge", "1.20.1", 6144, &p), 0);
	assert_int_equal(json_integer_value(json_object_get(p, "memory_mb")), 6144);
	assert_int_equal(json_integer_value(json_object_get(p, "vmid")), 5123);
	assert_string_equal(json_string_value(json_object_get(p, "java_path")),
	                    "java/17/OpenJDK17.tar.gz");
	assert_string_equal(json_string_value(json_object_get(p, "artifact_path")),
	                    "minecraft/forge/1.20.1/forge-installer.jar");
	json_decref(p);
}

static void payload__dev_exact_shape(void **state)
{
	(void)state;
	json_t *p = NULL;
	assert_int_equal(agentapi_payload_dev(5001, "node", "22", 8192, &p), 0);
	_cleanup_free_ char *s = NULL;
	assert_int_equal(agentapi_payload_canonical(p, &s), 0);
	assert_string_equal(s, "{\"container_type\":\"dev\",\"memory_mb\":8192,\"runtime\":"
	                       "\"node\",\"version\":\"22\",\"vmid\":5001}");
	json_decref(p);
}

static void payload__bad_input__einval(void **state)
{
	(void)state;
	json_t *p = (json_t *)0x1;
	assert_int_equal(agentapi_payload_game(99, "minecraft", "paper", "1.21", 1024, &p),
	                 -EINVAL);
	assert_int_equal(agentapi_payload_game(5000, "minecraft", "paper", "1.21", 0, &p), -EINVAL);
	assert_int_equal(agentapi_payload_game(5000, "terraria", "paper", "1.21", 1024, &p),
	                 -EINVAL);
	assert_int_equal(agentapi_payload_game(5000, "minecraft", "spigot", "1.21", 1024, &p),
	                 -EINVAL);
	assert_int_equal(agentapi_payload_game(5000, "minecraft", "paper", "1 21", 1024, &p),
	                 -EINVAL);
	assert_int_equal(agentapi_payload_dev(5000, "no de", "22", 1024, &p), -EINVAL);
	assert_int_equal(agentapi_payload_dev(5000, "node", NULL, 1024, &p), -EINVAL);
	assert_ptr_equal(p, (json_t *)0x1); /* untouched on failure */
}

static void payload__hash_is_canonical(void **state)
{
	(void)state;
	json_t *a = NULL;
	assert_int_equal(agentapi_payload_game(5000, "minecraft", "paper", "1.21.4", 4096, &a), 0);
	/* the same members in another insertion order hash the same */
	json_t *b = json_pack("{s:I, s:I, s:s, s:[i], s:s, s:s, s:s, s:s, s:s, s:s}", "memory_mb",
	                      (json_int_t)4096, "vmid", (json_int_t)5000, "world", "world", "ports",
	                      25565, "java_path", "java/21/OpenJDK21.tar.gz", "artifact_path",
	                      "minecraft/paper/1.21.4/server.jar", "version", "1.21.4", "variant",
	                      "paper", "game", "minecraft", "container_type", "game");
	char ha[65], hb[65], hc[65];
	assert_int_equal(agentapi_payload_hash(a, ha), 0);
	assert_int_equal(agentapi_payload_hash(b, hb), 0);
	assert_string_equal(ha, hb);
	assert_int_equal(strlen(ha), 64);
	/* it is sha256 of the canonical text */
	_cleanup_free_ char *s = NULL;
	assert_int_equal(agentapi_payload_canonical(a, &s), 0);
	assert_int_equal(sha256_hex(s, strlen(s), hc), 0);
	assert_string_equal(ha, hc);
	/* any change changes it */
	json_object_set_new(b, "memory_mb", json_integer(4097));
	assert_int_equal(agentapi_payload_hash(b, hb), 0);
	assert_string_not_equal(ha, hb);
	assert_int_equal(agentapi_payload_hash(NULL, hb), -EINVAL);
	json_decref(a);
	json_decref(b);
}

/* --- parsing ---------------------------------------------------------------------------------- */

static void status__full(void **state)
{
	(void)state;
	AgentStatus st;
	const char *body = "{\"state\":\"installing\",\"installStep\":\"download_artifacts\","
	                   "\"error\":\"\",\"crashCount\":2,\"provisioningComplete\":false,"
	                   "\"restore\":{\"id\":\"bk-1\",\"state\":\"running\"}}";
	assert_int_equal(agentapi_parse_status(S(body), &st), 0);
	assert_int_equal(st.state, AGENT_STATE_INSTALLING);
	assert_string_equal(st.raw_state, "installing");
	assert_string_equal(st.install_step, "download_artifacts");
	assert_string_equal(st.error, "");
	assert_int_equal(st.crash_count, 2);
	assert_false(st.provisioning_complete);
	assert_true(st.restore_running);
	assert_true(agentapi_state_is_install(st.state));
}

static void status__every_state(void **state)
{
	(void)state;
	static const char *const names[] = {"idle",    "installing", "verifying", "starting",
	                                    "running", "stopped",    "crashed",   "error"};
	for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
		char body[80];
		snprintf(body, sizeof body, "{\"state\":\"%s\"}", names[i]);
		AgentStatus st;
		assert_int_equal(agentapi_parse_status(S(body), &st), 0);
		assert_int_equal(st.state, (AgentState)i);
		assert_string_equal(agentapi_state_to_string(st.state), names[i]);
	}
	AgentStatus st;
	assert_int_equal(agentapi_parse_status(S("{\"state\":\"hibernating\"}"), &st), 0);
	assert_int_equal(st.state, AGENT_STATE_UNKNOWN);
	assert_string_equal(st.raw_state, "hibernating");
	/* minimal: optional members absent or null */
	assert_int_equal(agentapi_parse_status(S("{\"state\":\"running\",\"installStep\":null,"
	                                         "\"crashCount\":null,\"restore\":null}"),
	                                       &st),
	                 0);
	assert_int_equal(st.crash_count, 0);
	assert_false(st.restore_running);
}

static void status__malformed__ebadmsg(void **state)
{
	(void)state;
	static const char *const bad[] = {
	    "",
	    "not json",
	    "[]",
	    "{}",
	    "{\"state\":\"\"}",
	    "{\"state\":7}",
	    "{\"state\":\"running\",\"crashCount\":\"2\"}",
	    "{\"state\":\"running\",\"crashCount\":-1}",
	    "{\"state\":\"running\",\"provisioningComplete\":\"yes\"}",
	    "{\"state\":\"running\",\"installStep\":5}",
	    "{\"state\":\"running\",\"error\":{}}",
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		AgentStatus st = {.state = AGENT_STATE_CRASHED};
		if (agentapi_parse_status(S(bad[i]), &st) != -EBADMSG)
			fail_msg("accepted: %s", bad[i]);
		assert_int_equal(st.state, AGENT_STATE_CRASHED); /* untouched */
	}
	AgentStatus st;
	assert_int_equal(agentapi_parse_status(NULL, 0, &st), -EBADMSG);
}

static void status__hostile_strings__bounded_and_clean(void **state)
{
	(void)state;
	/* a 2800-byte error with control characters and multi-byte text */
	char body[4096];
	size_t l = (size_t)snprintf(body, sizeof body, "{\"state\":\"error\",\"error\":\"");
	for (int i = 0; i < 200; i++)
		l += (size_t)snprintf(body + l, sizeof body - l, "\\u00e9\\t\\u0001");
	l += (size_t)snprintf(body + l, sizeof body - l, "\"}");
	AgentStatus st;
	assert_int_equal(agentapi_parse_status(body, l, &st), 0);
	assert_true(strlen(st.error) > 200 && strlen(st.error) < sizeof st.error);
	/* no control characters remain */
	for (const char *p = st.error; *p; p++)
		assert_true((unsigned char)*p >= 0x20);
	/* what is left is valid UTF-8 (jansson accepts it back) */
	json_t *j = json_string(st.error);
	assert_non_null(j);
	json_decref(j);

	/* a cut inside a multi-byte sequence backs off to its start */
	char big[1024];
	l = (size_t)snprintf(big, sizeof big, "{\"state\":\"running\",\"installStep\":\"");
	for (int i = 0; i < 100; i++)
		l += (size_t)snprintf(big + l, sizeof big - l, "\xe2\x82\xac"); /* euro sign */
	l += (size_t)snprintf(big + l, sizeof big - l, "\"}");
	assert_int_equal(agentapi_parse_status(big, l, &st), 0);
	assert_int_equal(strlen(st.install_step) % 3, 0);
	j = json_string(st.install_step);
	assert_non_null(j);
	json_decref(j);
}

static void ready__answers(void **state)
{
	(void)state;
	AgentReadiness r;
	assert_int_equal(
	    agentapi_parse_ready(200, S("{\"ready\":true,\"source\":\"minecraft_ping\"}"), &r), 0);
	assert_true(r.ready);
	assert_string_equal(r.source, "minecraft_ping");
	assert_int_equal(
	    agentapi_parse_ready(503, S("{\"ready\":false,\"reason\":\"no ping\"}"), &r), 0);
	assert_false(r.ready);
	assert_string_equal(r.reason, "no ping");
	/* 503 with a non-JSON body: its first line */
	assert_int_equal(agentapi_parse_ready(503, S("warming up\nmore"), &r), 0);
	assert_false(r.ready);
	assert_string_equal(r.reason, "warming up");
	assert_int_equal(agentapi_parse_ready(503, NULL, 0, &r), 0);
	assert_string_equal(r.reason, "not ready");
	/* a 200 that says false */
	assert_int_equal(agentapi_parse_ready(200, S("{\"ready\":false}"), &r), 0);
	assert_false(r.ready);
	/* malformed 200, other statuses */
	assert_int_equal(agentapi_parse_ready(200, S("{\"ready\":\"yes\"}"), &r), -EBADMSG);
	assert_int_equal(agentapi_parse_ready(200, S("ok"), &r), -EBADMSG);
	assert_int_equal(agentapi_parse_ready(401, S("{}"), &r), -EACCES);
	assert_int_equal(agentapi_parse_ready(500, S("{}"), &r), -EREMOTEIO);
}

static void classify__table(void **state)
{
	(void)state;
	assert_int_equal(agentapi_classify(200), 0);
	assert_int_equal(agentapi_classify(202), 0);
	assert_int_equal(agentapi_classify(400), -EINVAL);
	assert_int_equal(agentapi_classify(401), -EACCES);
	assert_int_equal(agentapi_classify(403), -EPERM);
	assert_int_equal(agentapi_classify(404), -ENOENT);
	assert_int_equal(agentapi_classify(409), -EBUSY);
	assert_int_equal(agentapi_classify(429), -EAGAIN);
	assert_int_equal(agentapi_classify(503), -EAGAIN);
	assert_int_equal(agentapi_classify(500), -EREMOTEIO);
	assert_int_equal(agentapi_classify(302), -EREMOTEIO);
}

static void error_text__shapes(void **state)
{
	(void)state;
	char b[32];
	agentapi_error_text(S("{\"error\":\"not provisioned\"}"), b, sizeof b);
	assert_string_equal(b, "not provisioned");
	agentapi_error_text(S("{\"message\":\"m\"}"), b, sizeof b);
	assert_string_equal(b, "m");
	agentapi_error_text(S("plain\x01text\r\nsecond"), b, sizeof b);
	assert_string_equal(b, "plain text");
	agentapi_error_text(S("\xff\xfe binary"), b, sizeof b);
	assert_string_equal(b, "?? binary");
	agentapi_error_text(NULL, 0, b, sizeof b);
	assert_string_equal(b, "");
	agentapi_error_text(S("0123456789012345678901234567890123456789"), b, sizeof b);
	assert_int_equal(strlen(b), sizeof b - 1);
}

static void names__round_trip(void **state)
{
	(void)state;
	for (int i = 0; i < _AGENT_OP_MAX; i++)
		assert_int_equal(agentapi_op_from_string(agentapi_op_to_string((AgentOp)i)), i);
	assert_int_equal(agentapi_op_from_string("reboot"), _AGENT_OP_INVALID);
	assert_int_equal(agentapi_state_from_string(NULL), _AGENT_STATE_INVALID);
	assert_int_equal(agentapi_state_from_string(""), _AGENT_STATE_INVALID);
	assert_null(agentapi_state_to_string(_AGENT_STATE_MAX));
	assert_true(agentapi_token_valid("1.21.4"));
	assert_false(agentapi_token_valid("-1"));
	assert_false(agentapi_token_valid("a/b"));
	assert_false(agentapi_token_valid(
	    "01234567890123456789012345678901234567890123456789012345678901234"));
}

/* --- client argument checks (no network) ----------------------------------------------------- */

static void client__refuses_bad_arguments(void **state)
{
	(void)state;
	AgentClientOptions bad = {.port = 0};
	assert_null(agentapi_client_new(&bad));
	bad.port = 70000;
	assert_null(agentapi_client_new(&bad));
	assert_null(agentapi_client_new(NULL));
	AgentClientOptions o = {.port = 18888, .token = "s3cret"};
	_cleanup_agentapi_client_ AgentClient *c = agentapi_client_new(&o);
	assert_non_null(c);
	AgentError e = {0};
	assert_int_equal(agentapi_health(c, "10.0.0.1/evil", &e), -EINVAL);
	assert_string_equal(e.message, "invalid agent address");
	assert_int_equal(agentapi_health(c, NULL, &e), -EINVAL);
	assert_int_equal(agentapi_health(c, "host name", &e), -EINVAL);
	AgentStatus st;
	assert_int_equal(agentapi_status(c, "", &st, &e), -EINVAL);
	assert_int_equal(agentapi_config(c, "10.0.0.1", NULL, &e), -EINVAL);
	assert_int_equal(agentapi_power(c, "10.0.0.1", _AGENT_OP_MAX, &e), -EINVAL);
	assert_int_equal(agentapi_codeserver(c, "10.0.0.1", _AGENT_OP_INVALID, &e), -EINVAL);
	assert_null(agentapi_client_free(NULL));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(artifact__each_variant),
	    cmocka_unit_test(artifact__bad_input__refused),
	    cmocka_unit_test(java__boundaries),
	    cmocka_unit_test(version_cmp__numeric),
	    cmocka_unit_test(payload__game_exact_shape),
	    cmocka_unit_test(payload__dev_exact_shape),
	    cmocka_unit_test(payload__bad_input__einval),
	    cmocka_unit_test(payload__hash_is_canonical),
	    cmocka_unit_test(status__full),
	    cmocka_unit_test(status__every_state),
	    cmocka_unit_test(status__malformed__ebadmsg),
	    cmocka_unit_test(status__hostile_strings__bounded_and_clean),
	    cmocka_unit_test(ready__answers),
	    cmocka_unit_test(classify__table),
	    cmocka_unit_test(error_text__shapes),
	    cmocka_unit_test(names__round_trip),
	    cmocka_unit_test(client__refuses_bad_arguments),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
