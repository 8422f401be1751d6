/* limits.h - the runtime's two throttles (DESIGN.md section 8):
 *
 * RateLimiter: one token bucket per external system ("pve", "agent",
 *   "velocity", "dns"), shared by every worker: `rate` tokens per second,
 *   at most `burst` saved up. ratelimit_reserve() takes a token now or books
 *   the next one and says how long to wait for it (like golang.org/x/time/
 *   rate's Reserve), so a waiting worker never holds a lock.
 *
 * SemSet: counting semaphores by name with named holders, for "at most N
 *   Proxmox tasks running on node X" (and "one clone at a time from template
 *   T"). A Proxmox task outlives the reconcile that started it, so a slot is
 *   held by a holder id (the task's UPID or the server's uid), not by a
 *   thread: acquire is idempotent per holder, release frees that holder's
 *   slot, and nothing blocks (a caller that gets -EBUSY requeues the key
 *   with a delay instead of parking a worker).
 *
 * Both take the same injectable millisecond clock as the queue, and are
 * thread-safe. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cleanup.h"
#include "queue.h"

typedef struct RateLimiter RateLimiter;

/* rate: tokens per second (> 0); burst: bucket size (>= 1). clock may be
 * NULL (now_mono_ms). Returns new or NULL. The bucket starts full. */
RateLimiter *ratelimit_new(double rate, int burst, QueueClockFn clock, void *userdata);
RateLimiter *ratelimit_free(RateLimiter *rl);
DEFINE_TRIVIAL_CLEANUP_FUNC(RateLimiter *, ratelimit_free)

/* Takes one token. Returns 0 when it was available now, else the number of
 * milliseconds until the token booked for the caller is due (the caller must
 * wait that long before its call). Never fails. */
int64_t ratelimit_reserve(RateLimiter *rl);
/* Takes a token only when one is available now: true when taken. */
bool ratelimit_try(RateLimiter *rl);
/* Reserves a token and sleeps (real monotonic time) until it is due, but
 * not past *cancel becoming true (checked every 50 ms; cancel may be NULL).
 * 0 or -ECANCELED. */
int ratelimit_wait(RateLimiter *rl, const volatile bool *cancel) _must_check_;

/* A set of rate limiters by system name (borrowed strings: static). */
typedef struct RateLimits RateLimits;
RateLimits *ratelimits_new(QueueClockFn clock, void *userdata);
RateLimits *ratelimits_free(RateLimits *rls);
DEFINE_TRIVIAL_CLEANUP_FUNC(RateLimits *, ratelimits_free)
/* Sets (or replaces) system's bucket. 0 or -ENOMEM. */
int ratelimits_set(RateLimits *rls, const char *system, double rate, int burst) _must_check_;
/* The bucket for system (borrowed, valid while rls lives), or NULL when the
 * system is not limited. */
RateLimiter *ratelimits_get(RateLimits *rls, const char *system);

typedef struct SemSet SemSet;
SemSet *semset_new(void);
SemSet *semset_free(SemSet *s);
DEFINE_TRIVIAL_CLEANUP_FUNC(SemSet *, semset_free)

/* Takes one of `limit` slots of `name` for `holder` (both borrowed:
 * copied). 0 when taken or when holder already holds a slot of name;
 * -EBUSY when all slots are held by others; -ENOMEM. */
int semset_acquire(SemSet *s, const char *name, const char *holder, int limit) _must_check_;
/* Frees holder's slot of name; 0, or -ENOENT when it held none. */
int semset_release(SemSet *s, const char *name, const char *holder);
/* Frees every slot holder holds, under any name. Returns how many. */
int semset_release_holder(SemSet *s, const char *holder);
/* Slots of name in use. */
int semset_count(SemSet *s, const char *name);
