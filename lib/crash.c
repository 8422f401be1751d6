#include "crash.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static pthread_once_t once = PTHREAD_ONCE_INIT;
static char want_action[32], want_step[16];
static long want_n = 1;
static atomic_bool armed;
static atomic_long seen;

static void crash_init(void)
{
	const char *e = getenv("ZLH_CRASH_AT");
	if (!e || !*e)
		return;
	char buf[96];
	snprintf(buf, sizeof buf, "%s", e);
	char *a = buf, *s = strchr(a, ':');
	if (!s)
		return;
	*s++ = 0;
	char *n = strchr(s, ':');
	if (n) {
		*n++ = 0;
		char *end;
		long v = strtol(n, &end, 10);
		if (*end || v < 1)
			return;
		want_n = v;
	}
	if (strlen(a) >= sizeof want_action || strlen(s) >= sizeof want_step)
		return;
	memcpy(want_action, a, strlen(a) + 1);
	memcpy(want_step, s, strlen(s) + 1);
	atomic_store(&armed, true);
}

void crash_point(const char *action, const char *step)
{
	pthread_once(&once, crash_init);
	if (!atomic_load_explicit(&armed, memory_order_relaxed))
		return;
	if (strcmp(action, want_action) != 0 || strcmp(step, want_step) != 0)
		return;
	if (atomic_fetch_add(&seen, 1) + 1 == want_n) {
		static const char msg[] = "zlh: crash point reached (ZLH_CRASH_AT)\n";
		ssize_t w = write(2, msg, sizeof msg - 1);
		(void)w;
		_exit(137);
	}
}
