/* Unit tests for lib/: buffers, durations, secrets, sha256, log redaction. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <sys/wait.h>

#include "buf.h"
#include "crash.h"
#include "log.h"
#include "util.h"

static void duration__units__parse(void **state)
{
	(void)state;
	int64_t ms = 0;
	assert_int_equal(duration_parse("30s", &ms), 0);
	assert_int_equal(ms, 30000);
	assert_int_equal(duration_parse("6h", &ms), 0);
	assert_int_equal(ms, 6 * 3600000);
	assert_int_equal(duration_parse("1h30m", &ms), 0);
	assert_int_equal(ms, 5400000);
	assert_int_equal(duration_parse("250ms", &ms), 0);
	assert_int_equal(ms, 250);
	assert_int_equal(duration_parse("7d", &ms), 0);
	assert_int_equal(ms, 7LL * 86400000);
}

static void duration__garbage__einval_and_untouched(void **state)
{
	(void)state;
	int64_t ms = 42;
	assert_int_equal(duration_parse("", &ms), -EINVAL);
	assert_int_equal(duration_parse("30", &ms), -EINVAL);
	assert_int_equal(duration_parse("s", &ms), -EINVAL);
	assert_int_equal(duration_parse("-5s", &ms), -EINVAL);
	assert_int_equal(duration_parse("5x", &ms), -EINVAL);
	assert_int_equal(duration_parse("99999999999999999999s", &ms), -EINVAL);
	assert_int_equal(ms, 42);
}

static void duration__format__roundtrips(void **state)
{
	(void)state;
	char b[32];
	duration_format(6 * 3600000, b, sizeof b);
	assert_string_equal(b, "6h");
	duration_format(90000, b, sizeof b);
	assert_string_equal(b, "90s");
	duration_format(250, b, sizeof b);
	assert_string_equal(b, "250ms");
}

static void buf__max__refuses_and_keeps_content(void **state)
{
	(void)state;
	_cleanup_buf_ Buf b = {.max = 8};
	assert_int_equal(buf_puts(&b, "12345"), 0);
	assert_int_equal(buf_puts(&b, "6789"), -E2BIG);
	assert_string_equal(b.data, "12345");
	assert_int_equal(buf_printf(&b, "%d", 678), 0);
	assert_string_equal(b.data, "12345678");
}

static void secret__trailing_newline__stripped_once(void **state)
{
	(void)state;
	char path[] = "/tmp/zlh-secret-XXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "s3cr3t\n\n", 8), 8);
	close(fd);
	_cleanup_free_ char *s = NULL;
	assert_int_equal(secret_read_file(path, &s), 0);
	assert_string_equal(s, "s3cr3t\n");
	unlink(path);
	char *none = NULL;
	assert_int_equal(secret_read_file("/nonexistent/zlh", &none), -ENOENT);
	assert_null(none);
}

static void sha256__known_vector(void **state)
{
	(void)state;
	char h[65];
	assert_int_equal(sha256_hex("abc", 3, h), 0);
	assert_string_equal(h, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

static void log__secret__redacted_and_json(void **state)
{
	(void)state;
	int p[2];
	assert_int_equal(pipe(p), 0);
	log_set_fd(p[1]);
	log_set_journal(false);
	log_register_secret("hunter2-very-secret");
	log_fields(LOG_WARNING, LOG_F("uid", "abc\"d"), "token is %s", "hunter2-very-secret");
	log_set_fd(2);
	close(p[1]);
	char out[1024] = {0};
	ssize_t n = read(p[0], out, sizeof out - 1);
	close(p[0]);
	assert_true(n > 0);
	assert_null(strstr(out, "hunter2"));
	assert_non_null(strstr(out, "[redacted]"));
	assert_non_null(strstr(out, "\"level\":\"warning\""));
	assert_non_null(strstr(out, "\"uid\":\"abc\\\"d\""));
}

static int crash_child(const char *env, int calls)
{
	pid_t pid = fork();
	if (pid == 0) {
		setenv("ZLH_CRASH_AT", env, 1);
		for (int i = 0; i < calls; i++) {
			crash_point("create", "call");
			crash_point("create", "intent");
		}
		_exit(0);
	}
	int st = 0;
	waitpid(pid, &st, 0);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void crash__nth_matching_point__exits_137(void **state)
{
	(void)state;
	assert_int_equal(crash_child("create:intent", 1), 137);
	assert_int_equal(crash_child("create:intent:3", 2), 0);
	assert_int_equal(crash_child("create:intent:3", 3), 137);
	assert_int_equal(crash_child("clone:intent", 5), 0);
	assert_int_equal(crash_child("garbage", 5), 0);
	/* unset: a no-op */
	crash_point("create", "intent");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(duration__units__parse),
	    cmocka_unit_test(duration__garbage__einval_and_untouched),
	    cmocka_unit_test(duration__format__roundtrips),
	    cmocka_unit_test(buf__max__refuses_and_keeps_content),
	    cmocka_unit_test(secret__trailing_newline__stripped_once),
	    cmocka_unit_test(sha256__known_vector),
	    cmocka_unit_test(log__secret__redacted_and_json),
	    cmocka_unit_test(crash__nth_matching_point__exits_137),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
