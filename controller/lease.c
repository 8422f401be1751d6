/* lease.c - see lease.h. */
#include "controller/lease.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "db/runtime.h"
#include "log.h"

int64_t lease_clock_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_BOOTTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t load(const int64_t *p)
{
	return __atomic_load_n(p, __ATOMIC_SEQ_CST);
}

static void store(int64_t *p, int64_t v)
{
	__atomic_store_n(p, v, __ATOMIC_SEQ_CST);
}

void lease_init(Lease *l, const char *name, const char *holder, int64_t duration_ms,
                int64_t margin_ms)
{
	memset(l, 0, sizeof *l);
	snprintf(l->name, sizeof l->name, "%s", name ? name : RUNTIME_LEASE_DEFAULT);
	if (holder) {
		snprintf(l->holder, sizeof l->holder, "%s", holder);
	} else {
		char host[64] = "localhost";
		gethostname(host, sizeof host - 1);
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		unsigned rnd = (unsigned)(ts.tv_nsec ^ (getpid() << 16)) & 0xffffu;
		snprintf(l->holder, sizeof l->holder, "%s:%d:%04x", host, (int)getpid(), rnd);
	}
	l->duration_ms = duration_ms;
	l->margin_ms = margin_ms;
	l->next_tick = lease_clock_ms();
}

void lease_step_down(Lease *l)
{
	store(&l->valid_until, 0);
	store(&l->epoch, 0);
}

int lease_tick(Lease *l, PGconn *c, bool *ret_changed, StoreError *err)
{
	int64_t old_epoch = load(&l->epoch);
	int64_t t0 = lease_clock_ms();
	LeaseClaim lc;
	int r = runtime_lease_claim(c, l->name, l->holder, old_epoch, l->duration_ms, &lc, err);
	int64_t third = l->duration_ms / 3 > 0 ? l->duration_ms / 3 : 1;
	if (r < 0) {
		lease_step_down(l);
		l->next_tick = lease_clock_ms() + (third < 1000 ? third : 1000);
		if (ret_changed)
			*ret_changed = old_epoch != 0;
		return r;
	}
	if (lc.acquired) {
		if (lc.epoch != old_epoch) {
			/* A new term: invalidate the old one before publishing the
			 * new epoch, so no worker pairs old epoch + new validity. */
			store(&l->valid_until, 0);
			store(&l->epoch, lc.epoch);
		}
		/* Valid from the moment the claim was sent: never later than
		 * the database's expiry. */
		store(&l->valid_until, t0 + l->duration_ms);
		l->next_tick = t0 + third;
		l->other[0] = 0;
		if (ret_changed)
			*ret_changed = lc.epoch != old_epoch;
		return LEASE_LEADER;
	}
	lease_step_down(l);
	snprintf(l->other, sizeof l->other, "%s", lc.holder);
	int64_t wait = lc.remaining_ms + 20;
	if (wait > third)
		wait = third;
	l->next_tick = lease_clock_ms() + wait;
	if (ret_changed)
		*ret_changed = old_epoch != 0;
	return LEASE_STANDBY;
}

int64_t lease_next_tick_ms(const Lease *l)
{
	int64_t d = l->next_tick - lease_clock_ms();
	return d > 0 ? d : 0;
}

void lease_tick_soon(Lease *l)
{
	l->next_tick = lease_clock_ms();
}

int lease_release(Lease *l, PGconn *c, StoreError *err)
{
	int64_t epoch = load(&l->epoch);
	lease_step_down(l);
	if (epoch == 0 || !c)
		return 0;
	return runtime_lease_release(c, l->name, l->holder, epoch, err);
}

bool lease_is_leader(const Lease *l)
{
	return load(&l->epoch) != 0 && lease_clock_ms() < load(&l->valid_until);
}

int64_t lease_epoch(const Lease *l)
{
	return load(&l->epoch);
}

bool lease_valid_for(const Lease *l, int64_t epoch, int64_t margin_ms)
{
	if (margin_ms < 0)
		margin_ms = l->margin_ms;
	int64_t e = load(&l->epoch);
	int64_t until = load(&l->valid_until);
	/* Re-read the epoch: a new term may have started in between. */
	return e != 0 && e == epoch && lease_clock_ms() + margin_ms < until &&
	       load(&l->epoch) == epoch;
}
