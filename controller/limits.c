/* limits.c - token buckets and named semaphores; see limits.h. */
#include "limits.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "util.h"

struct RateLimiter {
	pthread_mutex_t lock;
	double rate; /* tokens per ms */
	double burst;
	double tokens; /* may go negative: tokens booked ahead */
	int64_t last;
	QueueClockFn clock;
	void *userdata;
};

static int64_t rl_now(RateLimiter *rl)
{
	return rl->clock ? rl->clock(rl->userdata) : now_mono_ms();
}

RateLimiter *ratelimit_new(double rate, int burst, QueueClockFn clock, void *userdata)
{
	if (rate <= 0 || burst < 1)
		return NULL;
	RateLimiter *rl = calloc(1, sizeof *rl);
	if (!rl)
		return NULL;
	pthread_mutex_init(&rl->lock, NULL);
	rl->rate = rate / 1000.0;
	rl->burst = burst;
	rl->tokens = burst;
	rl->clock = clock;
	rl->userdata = userdata;
	rl->last = rl_now(rl);
	return rl;
}

RateLimiter *ratelimit_free(RateLimiter *rl)
{
	if (!rl)
		return NULL;
	pthread_mutex_destroy(&rl->lock);
	free(rl);
	return NULL;
}

static void refill(RateLimiter *rl)
{
	int64_t now = rl_now(rl);
	if (now > rl->last) {
		rl->tokens += (double)(now - rl->last) * rl->rate;
		if (rl->tokens > rl->burst)
			rl->tokens = rl->burst;
		rl->last = now;
	}
}

int64_t ratelimit_reserve(RateLimiter *rl)
{
	pthread_mutex_lock(&rl->lock);
	refill(rl);
	rl->tokens -= 1;
	int64_t wait = 0;
	if (rl->tokens < 0) {
		double w = -rl->tokens / rl->rate;
		wait = (int64_t)w;
		if ((double)wait < w)
			wait++;
	}
	pthread_mutex_unlock(&rl->lock);
	return wait;
}

bool ratelimit_try(RateLimiter *rl)
{
	pthread_mutex_lock(&rl->lock);
	refill(rl);
	bool ok = rl->tokens >= 1;
	if (ok)
		rl->tokens -= 1;
	pthread_mutex_unlock(&rl->lock);
	return ok;
}

int ratelimit_wait(RateLimiter *rl, const volatile bool *cancel)
{
	int64_t wait = ratelimit_reserve(rl);
	int64_t until = now_mono_ms() + wait;
	for (;;) {
		if (cancel && *cancel) {
			/* Give the booked token back. */
			pthread_mutex_lock(&rl->lock);
			rl->tokens += 1;
			if (rl->tokens > rl->burst)
				rl->tokens = rl->burst;
			pthread_mutex_unlock(&rl->lock);
			return -ECANCELED;
		}
		int64_t left = until - now_mono_ms();
		if (left <= 0)
			return 0;
		if (left > 50)
			left = 50;
		struct timespec ts = {.tv_sec = 0, .tv_nsec = left * 1000000L};
		nanosleep(&ts, NULL);
	}
}

/* --- RateLimits ------------------------------------------------------------ */

typedef struct RlEntry {
	char *system;
	RateLimiter *rl;
} RlEntry;

struct RateLimits {
	pthread_mutex_t lock;
	RlEntry items[16];
	size_t n;
	QueueClockFn clock;
	void *userdata;
};

RateLimits *ratelimits_new(QueueClockFn clock, void *userdata)
{
	RateLimits *r = calloc(1, sizeof *r);
	if (!r)
		return NULL;
	pthread_mutex_init(&r->lock, NULL);
	r->clock = clock;
	r->userdata = userdata;
	return r;
}

RateLimits *ratelimits_free(RateLimits *rls)
{
	if (!rls)
		return NULL;
	for (size_t i = 0; i < rls->n; i++) {
		free(rls->items[i].system);
		ratelimit_free(rls->items[i].rl);
	}
	pthread_mutex_destroy(&rls->lock);
	free(rls);
	return NULL;
}

int ratelimits_set(RateLimits *rls, const char *system, double rate, int burst)
{
	RateLimiter *rl = ratelimit_new(rate, burst, rls->clock, rls->userdata);
	if (!rl)
		return rate <= 0 || burst < 1 ? -EINVAL : -ENOMEM;
	int r = 0;
	pthread_mutex_lock(&rls->lock);
	for (size_t i = 0; i < rls->n; i++)
		if (strcmp(rls->items[i].system, system) == 0) {
			/* Replaced limiters are kept alive until free: a worker
			 * may still hold the old pointer. Swap the contents. */
			pthread_mutex_lock(&rls->items[i].rl->lock);
			rls->items[i].rl->rate = rl->rate;
			rls->items[i].rl->burst = rl->burst;
			if (rls->items[i].rl->tokens > rl->burst)
				rls->items[i].rl->tokens = rl->burst;
			pthread_mutex_unlock(&rls->items[i].rl->lock);
			ratelimit_free(rl);
			goto out;
		}
	if (rls->n == ELEMENTSOF(rls->items)) {
		ratelimit_free(rl);
		r = -ENOSPC;
		goto out;
	}
	rls->items[rls->n].system = strdup(system);
	if (!rls->items[rls->n].system) {
		ratelimit_free(rl);
		r = -ENOMEM;
		goto out;
	}
	rls->items[rls->n++].rl = rl;
out:
	pthread_mutex_unlock(&rls->lock);
	return r;
}

RateLimiter *ratelimits_get(RateLimits *rls, const char *system)
{
	if (!rls || !system)
		return NULL;
	RateLimiter *rl = NULL;
	pthread_mutex_lock(&rls->lock);
	for (size_t i = 0; i < rls->n; i++)
		if (strcmp(rls->items[i].system, system) == 0) {
			rl = rls->items[i].rl;
			break;
		}
	pthread_mutex_unlock(&rls->lock);
	return rl;
}

/* --- SemSet ------------------------------------------------------------------- */

typedef struct Slot {
	char *name;
	char *holder;
} Slot;

struct SemSet {
	pthread_mutex_t lock;
	Slot *slots;
	size_t n, cap;
};

SemSet *semset_new(void)
{
	SemSet *s = calloc(1, sizeof *s);
	if (!s)
		return NULL;
	pthread_mutex_init(&s->lock, NULL);
	return s;
}

SemSet *semset_free(SemSet *s)
{
	if (!s)
		return NULL;
	for (size_t i = 0; i < s->n; i++) {
		free(s->slots[i].name);
		free(s->slots[i].holder);
	}
	free(s->slots);
	pthread_mutex_destroy(&s->lock);
	free(s);
	return NULL;
}

int semset_acquire(SemSet *s, const char *name, const char *holder, int limit)
{
	if (!name || !holder || limit < 1)
		return -EINVAL;
	int r = 0, used = 0;
	pthread_mutex_lock(&s->lock);
	for (size_t i = 0; i < s->n; i++) {
		if (strcmp(s->slots[i].name, name) != 0)
			continue;
		if (strcmp(s->slots[i].holder, holder) == 0)
			goto out; /* already held: idempotent */
		used++;
	}
	if (used >= limit) {
		r = -EBUSY;
		goto out;
	}
	if (s->n == s->cap) {
		size_t nc = s->cap ? s->cap * 2 : 16;
		Slot *ns = realloc(s->slots, nc * sizeof *ns);
		if (!ns) {
			r = -ENOMEM;
			goto out;
		}
		s->slots = ns;
		s->cap = nc;
	}
	char *n = strdup(name), *h = strdup(holder);
	if (!n || !h) {
		free(n);
		free(h);
		r = -ENOMEM;
		goto out;
	}
	s->slots[s->n++] = (Slot){n, h};
out:
	pthread_mutex_unlock(&s->lock);
	return r;
}

static void drop_slot(SemSet *s, size_t i)
{
	free(s->slots[i].name);
	free(s->slots[i].holder);
	s->slots[i] = s->slots[--s->n];
}

int semset_release(SemSet *s, const char *name, const char *holder)
{
	int r = -ENOENT;
	pthread_mutex_lock(&s->lock);
	for (size_t i = 0; i < s->n; i++)
		if (strcmp(s->slots[i].name, name) == 0 &&
		    strcmp(s->slots[i].holder, holder) == 0) {
			drop_slot(s, i);
			r = 0;
			break;
		}
	pthread_mutex_unlock(&s->lock);
	return r;
}

int semset_release_holder(SemSet *s, const char *holder)
{
	int n = 0;
	pthread_mutex_lock(&s->lock);
	for (size_t i = 0; i < s->n;) {
		if (strcmp(s->slots[i].holder, holder) == 0) {
			drop_slot(s, i);
			n++;
		} else {
			i++;
		}
	}
	pthread_mutex_unlock(&s->lock);
	return n;
}

int semset_count(SemSet *s, const char *name)
{
	int n = 0;
	pthread_mutex_lock(&s->lock);
	for (size_t i = 0; i < s->n; i++)
		if (strcmp(s->slots[i].name, name) == 0)
			n++;
	pthread_mutex_unlock(&s->lock);
	return n;
}
