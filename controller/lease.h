/* lease.h - the leader lease as this process sees it (DESIGN.md sections
 * 7.5 and 8). The row lives in zlh.controller_lease (db/runtime.c); this
 * module keeps the local side:
 *
 *   - lease_tick() claims or renews; the main loop calls it when
 *     lease_next_tick_ms() says so: every third of the lease while leader;
 *     on standby at the holder's expiry (+20 ms) or every third of the
 *     lease, whichever comes first, so a dead leader is replaced right
 *     after its lease runs out;
 *   - a failed renewal or a lost connection steps down at once
 *     (lease_step_down());
 *   - validity is kept on CLOCK_BOOTTIME (monotonic, and counting a
 *     suspended machine): a claim sent at t is valid until t + duration,
 *     never later than the database's own expiry. lease_valid_for() is what
 *     workers call right before an external mutating call; a process that
 *     was stopped (SIGSTOP, a VM pause) past its lease finds it invalid
 *     the moment it resumes, before any renewal is attempted.
 *
 * The epoch and the validity are read by worker threads without a lock
 * (atomics); only the main thread ticks, steps down and releases. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include <libpq-fe.h>

#include "db/store.h"

typedef struct Lease {
	char name[64];
	char holder[128]; /* this process: host:pid:random */
	int64_t duration_ms;
	int64_t margin_ms;
	int64_t epoch; /* atomic; 0 = not leader */
	int64_t valid_until; /* atomic; boottime ms */
	int64_t next_tick; /* boottime ms */
	char other[128]; /* the holder seen while on standby */
} Lease;

/* Milliseconds on CLOCK_BOOTTIME. */
int64_t lease_clock_ms(void);

/* holder NULL: "hostname:pid:random". */
void lease_init(Lease *l, const char *name, const char *holder, int64_t duration_ms,
                int64_t margin_ms);

enum {
	LEASE_STANDBY = 0,
	LEASE_LEADER = 1,
};

/* Claims or renews on c. Returns LEASE_LEADER or LEASE_STANDBY, or a
 * negative errno (database error: the lease is stepped down). *ret_changed
 * (may be NULL) is set when leadership or the epoch changed. */
int lease_tick(Lease *l, PGconn *c, bool *ret_changed, StoreError *err);
/* Milliseconds until lease_tick() should run again (>= 0). */
int64_t lease_next_tick_ms(const Lease *l);
/* Makes the next lease_tick() due now. */
void lease_tick_soon(Lease *l);

/* Drops leadership locally at once (the row expires by itself). */
void lease_step_down(Lease *l);
/* Steps down and gives the row up so a standby takes over now. 1 released,
 * 0 not held, -errno. */
int lease_release(Lease *l, PGconn *c, StoreError *err);

bool lease_is_leader(const Lease *l);
int64_t lease_epoch(const Lease *l);
/* True while the lease is held under epoch and stays valid for at least
 * margin_ms (negative: the configured margin). */
bool lease_valid_for(const Lease *l, int64_t epoch, int64_t margin_ms);
