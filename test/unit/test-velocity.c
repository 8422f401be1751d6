/* Unit tests for reconcilers/velocity: the pure parts of the Velocity bridge
 * client - /zpack/status parsing (whole or nothing), status classification,
 * request bodies, names, error texts - without any network. The wire is
 * covered against zlh-sim by test/integration/itest-proxy.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "reconcilers/velocity.h"

static int parse(const char *s, VelocityServers *ret)
{
	return velocity_parse_status(s, strlen(s), ret);
}

static void status__documented_shape__parsed(void **state)
{
	(void)state;
	VelocityServers s = {0};
	assert_int_equal(parse("{\"servers\":[{\"name\":\"lobby\",\"address\":\"127.0.0.1\","
	                       "\"port\":25566},{\"name\":\"MC1\",\"address\":\"10.60.0.5\","
	                       "\"port\":25565}]}",
	                       &s),
	                 0);
	assert_int_equal(s.n, 2);
	assert_string_equal(s.items[0].name, "lobby");
	assert_string_equal(s.items[0].address, "127.0.0.1");
	assert_int_equal(s.items[0].port, 25566);
	assert_string_equal(s.items[1].name, "MC1");
	assert_int_equal(s.items[1].port, 25565);
	/* Names compare case-insensitively, as Velocity keys them. */
	assert_ptr_equal(velocity_servers_find(s.items, s.n, "mc1"), &s.items[1]);
	assert_ptr_equal(velocity_servers_find(s.items, s.n, "LOBBY"), &s.items[0]);
	assert_null(velocity_servers_find(s.items, s.n, "mc2"));
	assert_null(velocity_servers_find(s.items, s.n, NULL));
	velocity_servers_clear(&s);
	velocity_servers_clear(&s); /* twice is safe */
	assert_null(s.items);
}

static void status__empty_list__zero_servers(void **state)
{
	(void)state;
	VelocityServers s = {0};
	assert_int_equal(parse("{\"servers\":[]}", &s), 0);
	assert_int_equal(s.n, 0);
	assert_null(s.items);
	/* Extra fields are fine. */
	assert_int_equal(parse("{\"servers\":[{\"name\":\"a\",\"address\":\"b\",\"port\":1,"
	                       "\"players\":3}],\"version\":\"3.3\"}",
	                       &s),
	                 0);
	assert_int_equal(s.n, 1);
	velocity_servers_clear(&s);
}

static void status__malformed__unknown_not_partial(void **state)
{
	(void)state;
	static const char *const bad[] = {
	    "",
	    "not json",
	    "[]",
	    "{}",
	    "{\"servers\":{}}",
	    "{\"servers\":null}",
	    "{\"servers\":[1]}",
	    /* one bad entry spoils the whole list: no partial observation */
	    "{\"servers\":[{\"name\":\"a\",\"address\":\"b\",\"port\":1},{\"name\":\"c\"}]}",
	    "{\"servers\":[{\"name\":\"\",\"address\":\"b\",\"port\":1}]}",
	    "{\"servers\":[{\"name\":\"a\",\"address\":\"\",\"port\":1}]}",
	    "{\"servers\":[{\"name\":\"a\",\"address\":\"b\",\"port\":\"25565\"}]}",
	    "{\"servers\":[{\"name\":\"a\",\"address\":\"b\",\"port\":70000}]}",
	    "{\"servers\":[{\"name\":\"a\",\"address\":\"b\",\"port\":-1}]}",
	    "{\"servers\":[{\"name\":7,\"address\":\"b\",\"port\":1}]}",
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		VelocityServers s = {.n = 99};
		int r = velocity_parse_status(bad[i], strlen(bad[i]), &s);
		if (r != -EBADMSG)
			fail_msg("case %zu (%s): %d", i, bad[i], r);
		assert_int_equal(s.n, 99); /* untouched on failure */
	}
	VelocityServers s = {0};
	assert_int_equal(velocity_parse_status(NULL, 0, &s), -EBADMSG);
	/* A name longer than the bound. */
	char big[600];
	char name[300];
	memset(name, 'a', sizeof name - 1);
	name[sizeof name - 1] = 0;
	snprintf(big, sizeof big, "{\"servers\":[{\"name\":\"%s\",\"address\":\"b\",\"port\":1}]}",
	         name);
	assert_int_equal(parse(big, &s), -EBADMSG);
}

static void status__too_many__e2big(void **state)
{
	(void)state;
	size_t n = VELOCITY_MAX_SERVERS + 1;
	const char *one = "{\"name\":\"a\",\"address\":\"b\",\"port\":1},";
	size_t cap = n * strlen(one) + 64;
	char *s = malloc(cap);
	assert_non_null(s);
	size_t len = (size_t)snprintf(s, cap, "{\"servers\":[");
	for (size_t i = 0; i < n; i++) {
		memcpy(s + len, one, strlen(one));
		len += strlen(one);
	}
	s[len - 1] = ']';
	s[len++] = '}';
	s[len] = 0;
	VelocityServers v = {0};
	assert_int_equal(velocity_parse_status(s, len, &v), -E2BIG);
	free(s);
}

static void classify__statuses__errno_table(void **state)
{
	(void)state;
	assert_int_equal(velocity_classify(200, false), 0);
	assert_int_equal(velocity_classify(204, true), 0);
	assert_int_equal(velocity_classify(400, false), -EINVAL);
	assert_int_equal(velocity_classify(401, false), -EACCES);
	assert_int_equal(velocity_classify(403, false), -EPERM);
	assert_int_equal(velocity_classify(404, false), -ENOENT);
	/* unregister: 404 = already gone = success */
	assert_int_equal(velocity_classify(404, true), 1);
	assert_int_equal(velocity_classify(409, false), -EEXIST);
	assert_int_equal(velocity_classify(429, false), -EAGAIN);
	assert_int_equal(velocity_classify(503, false), -EAGAIN);
	assert_int_equal(velocity_classify(500, false), -EREMOTEIO);
	assert_int_equal(velocity_classify(302, false), -EREMOTEIO);
}

static void body__register_unregister__json(void **state)
{
	(void)state;
	_cleanup_buf_ Buf b = BUF_INIT;
	assert_int_equal(velocity_register_body("mc-paper-5001", "10.60.0.5", 25565, &b), 0);
	json_error_t e;
	json_t *j = json_loads(b.data, 0, &e);
	assert_non_null(j);
	assert_string_equal(json_string_value(json_object_get(j, "server_name")), "mc-paper-5001");
	assert_string_equal(json_string_value(json_object_get(j, "address")), "10.60.0.5");
	assert_int_equal(json_integer_value(json_object_get(j, "port")), 25565);
	assert_int_equal(json_object_size(j), 3);
	json_decref(j);

	_cleanup_buf_ Buf u = BUF_INIT;
	assert_int_equal(velocity_unregister_body("mc1", &u), 0);
	assert_string_equal(u.data, "{\"server_name\":\"mc1\"}");

	_cleanup_buf_ Buf x = BUF_INIT;
	assert_int_equal(velocity_register_body("", "1.2.3.4", 1, &x), -EINVAL);
	assert_int_equal(velocity_register_body("a b", "1.2.3.4", 1, &x), -EINVAL);
	assert_int_equal(velocity_register_body("a\"b", "1.2.3.4", 1, &x), -EINVAL);
	assert_int_equal(velocity_register_body("mc1", "", 1, &x), -EINVAL);
	assert_int_equal(velocity_register_body("mc1", "1.2.3.4 x", 1, &x), -EINVAL);
	assert_int_equal(velocity_register_body("mc1", "1.2.3.4", 0, &x), -EINVAL);
	assert_int_equal(velocity_register_body("mc1", "1.2.3.4", 65536, &x), -EINVAL);
	assert_int_equal(velocity_unregister_body(NULL, &x), -EINVAL);
	assert_int_equal(x.len, 0);
}

static void name__valid__label_chars_only(void **state)
{
	(void)state;
	assert_true(velocity_name_valid("mc-paper-5001"));
	assert_true(velocity_name_valid("Survival_01.example.net"));
	assert_false(velocity_name_valid(""));
	assert_false(velocity_name_valid(NULL));
	assert_false(velocity_name_valid("a/b"));
	assert_false(velocity_name_valid("a\nb"));
	char big[VELOCITY_NAME_MAX + 1];
	memset(big, 'a', sizeof big - 1);
	big[sizeof big - 1] = 0;
	assert_false(velocity_name_valid(big));
}

static void error_text__json_or_first_line(void **state)
{
	(void)state;
	char buf[64];
	const char *j = "{\"error\":\"server 'mc1' is already registered\"}";
	velocity_error_text(j, strlen(j), buf, sizeof buf);
	assert_string_equal(buf, "server 'mc1' is already registered");
	const char *t = "Internal Server Error\nstack...";
	velocity_error_text(t, strlen(t), buf, sizeof buf);
	assert_string_equal(buf, "Internal Server Error");
	velocity_error_text(NULL, 0, buf, sizeof buf);
	assert_string_equal(buf, "");
	char small[8];
	velocity_error_text(t, strlen(t), small, sizeof small);
	assert_string_equal(small, "Interna");
}

static void client__options__validated(void **state)
{
	(void)state;
	VelocityClientOptions o = {.url = "http://127.0.0.1:1/", .secret_sha256 = "abc"};
	VelocityClient *c = velocity_client_new(&o);
	assert_non_null(c);
	velocity_client_free(c);
	assert_null(velocity_client_free(NULL));
	o.secret_sha256 = "";
	assert_null(velocity_client_new(&o));
	o.secret_sha256 = "abc";
	o.url = NULL;
	assert_null(velocity_client_new(&o));
	assert_null(velocity_client_new(NULL));
}

static void client__unreachable__transport_error_nothing_sent(void **state)
{
	(void)state;
	/* Port 1 on loopback: nothing listens; connect is refused. */
	VelocityClientOptions o = {.url = "http://127.0.0.1:1", .secret_sha256 = "abc"};
	VelocityClient *c = velocity_client_new(&o);
	assert_non_null(c);
	VelocityServers s = {0};
	VelocityError err = {0};
	int r = velocity_status(c, &s, &err);
	assert_true(r == -ECONNREFUSED || r == -EHOSTUNREACH);
	assert_int_equal(err.http_status, 0);
	assert_int_equal(velocity_register(c, "bad name", "1.2.3.4", 25565, &err), -EINVAL);
	velocity_client_free(c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(status__documented_shape__parsed),
	    cmocka_unit_test(status__empty_list__zero_servers),
	    cmocka_unit_test(status__malformed__unknown_not_partial),
	    cmocka_unit_test(status__too_many__e2big),
	    cmocka_unit_test(classify__statuses__errno_table),
	    cmocka_unit_test(body__register_unregister__json),
	    cmocka_unit_test(name__valid__label_chars_only),
	    cmocka_unit_test(error_text__json_or_first_line),
	    cmocka_unit_test(client__options__validated),
	    cmocka_unit_test(client__unreachable__transport_error_nothing_sent),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
