/* Unit tests for the agent backup client's pure half
 * (reconcilers/agentapi_backup.c): listing, create and /status parsing,
 * classification, validation and bodies. No network. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <string.h>

#include "reconcilers/agentapi_backup.h"

#define S(x) x, strlen(x)

static void parse_list__documented_shape(void **state)
{
	(void)state;
	AgentBackups b = {0};
	assert_int_equal(
	    agentapi_backup_parse_list(
	        S("{\"backups\":[{\"id\":\"bk-1\",\"name\":\"zlh-3f2a9c1e-7\",\"createdAt\":"
	          "\"2024-08-06T10:00:00.250Z\",\"bytes\":1048576,\"state\":\"ok\"},"
	          "{\"id\":\"bk-2\",\"name\":\"x\",\"state\":\"running\"}]}"),
	        &b),
	    0);
	assert_int_equal(b.n, 2);
	assert_string_equal(b.items[0].id, "bk-1");
	assert_int_equal(b.items[0].created_ms, 1722938400250LL);
	assert_int_equal(b.items[0].bytes, 1048576);
	assert_int_equal(b.items[0].state, AGENT_BACKUP_OK);
	assert_int_equal(b.items[1].state, AGENT_BACKUP_RUNNING);
	assert_int_equal(b.items[1].bytes, -1);
	assert_int_equal(b.items[1].created_ms, 0);
	assert_ptr_equal(agentapi_backups_find_id(b.items, b.n, "bk-2"), &b.items[1]);
	assert_ptr_equal(agentapi_backups_find_name(b.items, b.n, "zlh-3f2a9c1e-7"), &b.items[0]);
	assert_null(agentapi_backups_find_id(b.items, b.n, "bk-3"));
	agentapi_backups_clear(&b);
	assert_int_equal(agentapi_backup_parse_list(S("{\"backups\":[]}"), &b), 0);
	assert_int_equal(b.n, 0);
}

static void parse_list__malformed__unknown_not_partial(void **state)
{
	(void)state;
	AgentBackups b = {0};
	assert_int_equal(agentapi_backup_parse_list(S("{}"), &b), -EBADMSG);
	assert_int_equal(agentapi_backup_parse_list(S("not json"), &b), -EBADMSG);
	assert_int_equal(agentapi_backup_parse_list(
	                     S("{\"backups\":[{\"id\":\"a\",\"name\":\"n\",\"state\":\"ok\"},"
	                       "{\"name\":\"n\",\"state\":\"ok\"}]}"),
	                     &b),
	                 -EBADMSG); /* no id */
	assert_int_equal(
	    agentapi_backup_parse_list(
	        S("{\"backups\":[{\"id\":\"a\",\"name\":\"n\",\"state\":\"weird\"}]}"), &b),
	    -EBADMSG);
	assert_int_equal(
	    agentapi_backup_parse_list(
	        S("{\"backups\":[{\"id\":\"a\",\"name\":\"n\",\"state\":\"ok\",\"bytes\":\"1\"}]}"),
	        &b),
	    -EBADMSG);
	assert_null(b.items);
}

static void parse_created_and_restore(void **state)
{
	(void)state;
	char id[AGENTAPI_BACKUP_ID_MAX];
	assert_int_equal(agentapi_backup_parse_created(S("{\"id\":\"bk-9\"}"), id, sizeof id), 0);
	assert_string_equal(id, "bk-9");
	assert_int_equal(
	    agentapi_backup_parse_created(S("{\"status\":\"accepted\"}"), id, sizeof id), -EBADMSG);
	assert_int_equal(agentapi_backup_parse_created(S("{\"id\":\"../x\"}"), id, sizeof id),
	                 -EBADMSG);
	AgentRestoreStatus r;
	assert_int_equal(agentapi_backup_parse_restore(S("{\"state\":\"running\"}"), &r), 0);
	assert_int_equal(r.state, AGENT_RESTORE_NONE);
	assert_int_equal(agentapi_backup_parse_restore(
	                     S("{\"state\":\"running\",\"restore\":{\"id\":\"bk-1\",\"state\":"
	                       "\"done\"}}"),
	                     &r),
	                 0);
	assert_int_equal(r.state, AGENT_RESTORE_DONE);
	assert_string_equal(r.id, "bk-1");
	assert_int_equal(agentapi_backup_parse_restore(S("{\"restore\":null}"), &r), 0);
	assert_int_equal(r.state, AGENT_RESTORE_NONE);
	assert_int_equal(
	    agentapi_backup_parse_restore(S("{\"restore\":{\"id\":\"a\",\"state\":\"x\"}}"), &r),
	    -EBADMSG);
	assert_int_equal(agentapi_backup_parse_restore(S("[]"), &r), -EBADMSG);
}

static void classify__statuses(void **state)
{
	(void)state;
	assert_int_equal(agentapi_backup_classify(202, false), 0);
	assert_int_equal(agentapi_backup_classify(404, false), -ENOENT);
	assert_int_equal(agentapi_backup_classify(404, true), 1);
	assert_int_equal(agentapi_backup_classify(409, false), -EBUSY);
	assert_int_equal(agentapi_backup_classify(401, false), -EACCES);
	assert_int_equal(agentapi_backup_classify(503, false), -EAGAIN);
	assert_int_equal(agentapi_backup_classify(500, false), -EREMOTEIO);
}

static void validation_and_body(void **state)
{
	(void)state;
	assert_true(agentapi_backup_id_valid("bk-1faab275ad0dab0d"));
	assert_false(agentapi_backup_id_valid("a/b"));
	assert_false(agentapi_backup_id_valid("a?b"));
	assert_false(agentapi_backup_id_valid(""));
	assert_true(agentapi_backup_name_valid("zlh-3f2a9c1e-7"));
	assert_false(agentapi_backup_name_valid("a\"b"));
	char big[200];
	memset(big, 'a', sizeof big - 1);
	big[sizeof big - 1] = 0;
	assert_false(agentapi_backup_name_valid(big));
	_cleanup_buf_ Buf b = BUF_INIT;
	assert_int_equal(agentapi_backup_create_body("zlh-3f2a9c1e-7", &b), 0);
	assert_string_equal(b.data, "{\"name\":\"zlh-3f2a9c1e-7\"}");
	assert_int_equal(agentapi_backup_create_body("a\nb", &b), -EINVAL);
	char t[64];
	agentapi_backup_error_text(S("{\"error\":\"backup not found\"}"), t, sizeof t);
	assert_string_equal(t, "backup not found");
	assert_int_equal(agentapi_backup_parse_time("2024-08-06T12:00:00+02:00"), 1722938400000LL);
	assert_int_equal(agentapi_backup_parse_time("2024-08-06"), 0);
	assert_int_equal(agentapi_backup_parse_time("2024-08-06T10:00:00Zjunk"), 0);
	AgentBackupClientOptions o = {.port = 0};
	assert_null(agentapi_backup_client_new(&o));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(parse_list__documented_shape),
	    cmocka_unit_test(parse_list__malformed__unknown_not_partial),
	    cmocka_unit_test(parse_created_and_restore),
	    cmocka_unit_test(classify__statuses),
	    cmocka_unit_test(validation_and_body),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
