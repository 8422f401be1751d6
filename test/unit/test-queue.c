/* test-queue.c - one test per work-queue rule (DESIGN.md section 8), plus
 * the rate limiter and the named semaphores. Time is a fake clock the tests
 * move; nothing sleeps. */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "controller/limits.h"
#include "controller/queue.h"

typedef struct FakeClock {
	int64_t now;
	double rnd; /* what the random function returns */
} FakeClock;

static int64_t fake_now(void *u)
{
	return ((FakeClock *)u)->now;
}

static double fake_random(void *u)
{
	return ((FakeClock *)u)->rnd;
}

static Queue *new_queue(FakeClock *fc, double jitter)
{
	QueueOptions o = {.backoff_base_ms = 1000,
	                  .backoff_max_ms = 300000,
	                  .jitter = jitter,
	                  .clock = fake_now,
	                  .random = fake_random,
	                  .userdata = fc};
	Queue *q = queue_new(&o);
	assert_non_null(q);
	return q;
}

/* Gets without waiting; returns the key (new) or NULL. */
static char *try_get(Queue *q)
{
	char *k = NULL;
	int r = queue_get(q, 0, &k);
	if (r == -EAGAIN)
		return NULL;
	assert_int_equal(r, 0);
	return k;
}

static void queue__same_key_added_twice__worked_once(void **state)
{
	(void)state;
	FakeClock fc = {0};
	_cleanup_queue_ Queue *q = new_queue(&fc, 0);
	assert_int_equal(queue_add(q, "a"), 0);
	assert_int_equal(queue_add(q, "b"), 0);
	assert_int_equal(queue_add(q, "a"), 0);
	QueueStats st;
	queue_stats(q, &st);
	assert_int_equal(st.ready, 2);

	_cleanup_free_ char *k1 = try_get(q);
	_cleanup_free_ char *k2 = try_get(q);
	assert_string_equal(k1, "a"); /* FIFO */
	assert_string_equal(k2, "b");
	assert_null(try_get(q));
	queue_done(q, "a");
	queue_done(q, "b");
	assert_null(try_get(q));
	queue_stats(q, &st);
	assert_int_equal(st.keys, 0); /* nothing left behind */
}

static void queue__key_processing__not_handed_out_again(void **state)
{
	(void)state;
	FakeClock fc = {0};
	_cleanup_queue_ Queue *q = new_queue(&fc, 0);
	assert_int_equal(queue_add(q, "a"), 0);
	_cleanup_free_ char *k = try_get(q);
	assert_string_equal(k, "a");
	/* Re-added while a worker holds it: a second worker gets nothing. */
	assert_int_equal(queue_add(q, "a"), 0);
	assert_null(try_get(q));
	QueueStats st;
	queue_stats(q, &st);
	assert_int_equal(st.processing, 1);
	assert_int_equal(st.ready, 0);
	queue_done(q, "a");
}

static void queue__readded_while_processing__worked_once_more_after(void **state)
{
	(void)state;
	FakeClock fc = {0};
	_cleanup_queue_ Queue *q = new_queue(&fc, 0);
	assert_int_equal(queue_add(q, "a"), 0);
	_cleanup_free_ char *k = try_get(q);
	assert_int_equal(queue_add(q, "a"), 0);
	assert_int_equal(queue_add(q, "a"), 0); /* still one more pass only */
	queue_done(q, "a");
	_cleanup_free_ char *k2 = try_get(q);
	assert_non_null(k2);
	assert_string_equal(k2, "a");
	assert_null(try_get(q));
	queue_done(q, "a");
	assert_null(try_get(q));
}

static void queue__not_readded__done_does_not_requeue(void **state)
{
	(void)state;
	FakeClock fc = {0};
	_cleanup_queue_ Queue *q = new_queue(&fc, 0);
	assert_int_equal(queue_add(q, "a"), 0);
	_cleanup_free_ char *k = try_get(q);
	queue_done(q, "a");
	assert_null(try_get(q));
}

static void queue__add_after__ready_only_when_due(void **state)
{
	(void)state;
	FakeClock fc = {.now = 1000};
	_cleanup_queue_ Queue *q = new_queue(&fc, 0);
	assert_int_equal(queue_add_after(q, "a", 500), 0);
	assert_int_equal(queue_add_after(q, "a", 800), 0); /* later: ignored */
	assert_int_equal(queue_next_delay_ms(q), 500);
	assert_null(try_get(q));
	fc.now += 499;
	assert_null(try_get(q));
	fc.now += 1;
	_cleanup_free_ char *k = try_get(q);
	assert_string_equal(k, "a");
	queue_done(q, "a");
	assert_int_equal(queue_next_delay_ms(q), -1);
	/* An earlier deadline replaces a later one. */
	assert_int_equal(queue_add_after(q, "b", 900), 0);
	assert_int_equal(queue_add_after(q, "b", 100), 0);
	assert_int_equal(queue_next_delay_ms(q), 100);
}

static void queue__delayed_and_immediate__worked_once(void **state)
{
	(void)state;
	FakeClock fc = {0};
	_cleanup_queue_ Queue *q = new_queue(&fc, 0);
	assert_int_equal(queue_add_after(q, "a", 100), 0);
	assert_int_equal(queue_add(q, "a"), 0);
	_cleanup_free_ char *k = try_get(q);
	assert_string_equal(k, "a");
	queue_done(q, "a");
	/* The delayed add still fires later: that is the poll the caller
	 * asked for. */
	fc.now = 100;
	_cleanup_free_ char *k2 = try_get(q);
	assert_string_equal(k2, "a");
	queue_done(q, "a");
	assert_null(try_get(q));
}

static void queue__failures__backoff_doubles_to_cap_and_resets(void **state)
{
	(void)state;
	FakeClock fc = {0};
	_cleanup_queue_ Queue *q = new_queue(&fc, 0);
	int64_t expect = 1000;
	for (int i = 0; i < 12; i++) {
		int64_t d = queue_add_rate_limited(q, "a");
		assert_int_equal(d, expect);
		assert_int_equal(queue_num_requeues(q, "a"), i + 1);
		/* Not ready a millisecond early, ready when due. */
		fc.now += d - 1;
		assert_null(try_get(q));
		fc.now += 1;
		_cleanup_free_ char *k = try_get(q);
		assert_string_equal(k, "a");
		queue_done(q, "a");
		expect = expect * 2 > 300000 ? 300000 : expect * 2;
	}
	assert_int_equal(queue_backoff_peek(q, "a"), 300000);
	queue_forget(q, "a");
	assert_int_equal(queue_num_requeues(q, "a"), 0);
	assert_int_equal(queue_add_rate_limited(q, "a"), 1000);
	/* Keys back off independently. */
	assert_int_equal(queue_add_rate_limited(q, "b"), 1000);
	assert_int_equal(queue_add_rate_limited(q, "b"), 2000);
	assert_int_equal(queue_num_requeues(q, "a"), 1);
}

static void queue__jitter__delay_within_bounds(void **state)
{
	(void)state;
	FakeClock fc = {.rnd = 0.999};
	_cleanup_queue_ Queue *q = new_queue(&fc, 0.2);
	int64_t d = queue_add_rate_limited(q, "a");
	assert_true(d >= 800 && d < 1000);
	fc.rnd = 0.0;
	d = queue_add_rate_limited(q, "a");
	assert_int_equal(d, 2000);
	fc.rnd = 0.5;
	d = queue_add_rate_limited(q, "a");
	assert_int_equal(d, 4000 - 400);
}

static void queue__paused__keeps_keys_hands_none(void **state)
{
	(void)state;
	FakeClock fc = {0};
	_cleanup_queue_ Queue *q = new_queue(&fc, 0);
	queue_pause(q, true);
	assert_int_equal(queue_add(q, "a"), 0);
	assert_null(try_get(q));
	queue_pause(q, false);
	_cleanup_free_ char *k = try_get(q);
	assert_string_equal(k, "a");
	queue_done(q, "a");
}

static void *blocked_getter(void *arg)
{
	Queue *q = arg;
	char *k = NULL;
	intptr_t r = queue_get(q, -1, &k);
	free(k);
	return (void *)r;
}

static void queue__shutdown__wakes_every_waiter(void **state)
{
	(void)state;
	_cleanup_queue_ Queue *q = queue_new(NULL);
	pthread_t t[3];
	for (int i = 0; i < 3; i++)
		assert_int_equal(pthread_create(&t[i], NULL, blocked_getter, q), 0);
	queue_shutdown(q);
	for (int i = 0; i < 3; i++) {
		void *rv;
		assert_int_equal(pthread_join(t[i], &rv), 0);
		assert_int_equal((intptr_t)rv, -ESHUTDOWN);
	}
	assert_int_equal(queue_add(q, "a"), -ESHUTDOWN);
}

static void queue__real_clock_delay__blocking_get_wakes(void **state)
{
	(void)state;
	_cleanup_queue_ Queue *q = queue_new(NULL);
	assert_int_equal(queue_add_after(q, "a", 30), 0);
	char *k = NULL;
	/* Bounded: the key matures after 30 ms, the wait allows 10 s. */
	assert_int_equal(queue_get(q, 10000, &k), 0);
	assert_string_equal(k, "a");
	free(k);
	queue_done(q, "a");
	assert_int_equal(queue_get(q, 0, &k), -EAGAIN);
}

/* Many threads, few keys, adds racing with gets: a key must never be held
 * by two workers at once, and every add is followed by a pass. */
typedef struct Stress {
	Queue *q;
	int busy[4];
	int violations;
	int passes;
	pthread_mutex_t lock;
} Stress;

static void *stress_worker(void *arg)
{
	Stress *s = arg;
	for (;;) {
		char *k = NULL;
		int r = queue_get(s->q, 2000, &k);
		if (r < 0)
			break;
		int i = k[0] - 'a';
		if (__atomic_add_fetch(&s->busy[i], 1, __ATOMIC_SEQ_CST) != 1)
			__atomic_add_fetch(&s->violations, 1, __ATOMIC_SEQ_CST);
		for (volatile int spin = 0; spin < 2000; spin++)
			;
		__atomic_sub_fetch(&s->busy[i], 1, __ATOMIC_SEQ_CST);
		__atomic_add_fetch(&s->passes, 1, __ATOMIC_SEQ_CST);
		queue_done(s->q, k);
		free(k);
	}
	return NULL;
}

static void queue__concurrent_workers__never_share_a_key(void **state)
{
	(void)state;
	Stress s = {0};
	s.q = queue_new(NULL);
	assert_non_null(s.q);
	pthread_t t[4];
	for (int i = 0; i < 4; i++)
		assert_int_equal(pthread_create(&t[i], NULL, stress_worker, &s), 0);
	const char *keys[] = {"a", "b", "c", "d"};
	for (int i = 0; i < 20000; i++)
		assert_int_equal(queue_add(s.q, keys[i % 4]), 0);
	/* Wait (bounded) until everything is worked off. */
	for (int i = 0; i < 2000; i++) {
		QueueStats st;
		queue_stats(s.q, &st);
		if (st.ready == 0 && st.processing == 0)
			break;
		struct timespec ts = {0, 5000000};
		nanosleep(&ts, NULL);
	}
	queue_shutdown(s.q);
	for (int i = 0; i < 4; i++)
		pthread_join(t[i], NULL);
	assert_int_equal(s.violations, 0);
	assert_true(s.passes >= 4);
	queue_free(s.q);
}

/* --- rate limiter ---------------------------------------------------------- */

static void ratelimit__burst_then_rate(void **state)
{
	(void)state;
	FakeClock fc = {0};
	_cleanup_(ratelimit_freep) RateLimiter *rl = ratelimit_new(10, 3, fake_now, &fc);
	assert_non_null(rl);
	/* The bucket starts full: 3 calls go at once. */
	for (int i = 0; i < 3; i++)
		assert_int_equal(ratelimit_reserve(rl), 0);
	/* Then one every 100 ms; reservations queue up behind each other. */
	assert_int_equal(ratelimit_reserve(rl), 100);
	assert_int_equal(ratelimit_reserve(rl), 200);
	assert_false(ratelimit_try(rl));
	fc.now = 200; /* both booked tokens are now due, none to spare */
	assert_false(ratelimit_try(rl));
	fc.now = 300;
	assert_true(ratelimit_try(rl));
	/* Idle time refills at most `burst` tokens. */
	fc.now = 100000;
	for (int i = 0; i < 3; i++)
		assert_true(ratelimit_try(rl));
	assert_false(ratelimit_try(rl));
}

static void ratelimit__cancelled_wait__returns_token(void **state)
{
	(void)state;
	_cleanup_(ratelimit_freep) RateLimiter *rl = ratelimit_new(0.001, 1, NULL, NULL);
	assert_non_null(rl);
	assert_true(ratelimit_try(rl));
	volatile bool cancel = true;
	assert_int_equal(ratelimit_wait(rl, &cancel), -ECANCELED);
	/* The booked token went back: the next reservation waits ~1000 s,
	 * not ~2000 s. */
	int64_t w = ratelimit_reserve(rl);
	assert_true(w > 990000 && w <= 1000000);
}

static void ratelimits__named_buckets(void **state)
{
	(void)state;
	FakeClock fc = {0};
	_cleanup_(ratelimits_freep) RateLimits *rls = ratelimits_new(fake_now, &fc);
	assert_int_equal(ratelimits_set(rls, "pve", 1, 1), 0);
	assert_int_equal(ratelimits_set(rls, "dns", 4, 4), 0);
	assert_null(ratelimits_get(rls, "agent"));
	RateLimiter *pve = ratelimits_get(rls, "pve");
	assert_true(ratelimit_try(pve));
	assert_false(ratelimit_try(pve));
	assert_true(ratelimit_try(ratelimits_get(rls, "dns")));
	assert_int_equal(ratelimits_set(rls, "x", 0, 1), -EINVAL);
}

/* --- named semaphores ---------------------------------------------------------- */

static void semset__cap_per_name__idempotent_per_holder(void **state)
{
	(void)state;
	_cleanup_(semset_freep) SemSet *s = semset_new();
	assert_int_equal(semset_acquire(s, "pve1", "upid-1", 2), 0);
	assert_int_equal(semset_acquire(s, "pve1", "upid-1", 2), 0); /* same holder */
	assert_int_equal(semset_acquire(s, "pve1", "upid-2", 2), 0);
	assert_int_equal(semset_acquire(s, "pve1", "upid-3", 2), -EBUSY);
	assert_int_equal(semset_acquire(s, "pve2", "upid-3", 2), 0); /* other node */
	assert_int_equal(semset_count(s, "pve1"), 2);
	assert_int_equal(semset_release(s, "pve1", "upid-1"), 0);
	assert_int_equal(semset_release(s, "pve1", "upid-1"), -ENOENT);
	assert_int_equal(semset_acquire(s, "pve1", "upid-3", 2), 0);
	assert_int_equal(semset_release_holder(s, "upid-3"), 2);
	assert_int_equal(semset_count(s, "pve1"), 1);
	assert_int_equal(semset_count(s, "pve2"), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(queue__same_key_added_twice__worked_once),
	    cmocka_unit_test(queue__key_processing__not_handed_out_again),
	    cmocka_unit_test(queue__readded_while_processing__worked_once_more_after),
	    cmocka_unit_test(queue__not_readded__done_does_not_requeue),
	    cmocka_unit_test(queue__add_after__ready_only_when_due),
	    cmocka_unit_test(queue__delayed_and_immediate__worked_once),
	    cmocka_unit_test(queue__failures__backoff_doubles_to_cap_and_resets),
	    cmocka_unit_test(queue__jitter__delay_within_bounds),
	    cmocka_unit_test(queue__paused__keeps_keys_hands_none),
	    cmocka_unit_test(queue__shutdown__wakes_every_waiter),
	    cmocka_unit_test(queue__real_clock_delay__blocking_get_wakes),
	    cmocka_unit_test(queue__concurrent_workers__never_share_a_key),
	    cmocka_unit_test(ratelimit__burst_then_rate),
	    cmocka_unit_test(ratelimit__cancelled_wait__returns_token),
	    cmocka_unit_test(ratelimits__named_buckets),
	    cmocka_unit_test(semset__cap_per_name__idempotent_per_holder),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
