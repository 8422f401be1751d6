/* queue.h - the work queue, in the style of client-go's workqueue
 * (rate-limiting + delaying queue) and DESIGN.md section 8:
 *
 *   - dedup: a key added many times before a worker takes it is worked once;
 *   - a key is never handed to two workers at once: while one works it, the
 *     key is "processing" and a second get cannot return it;
 *   - a key re-added while processing is "dirty": queue_done() puts it back,
 *     so it is worked once more afterwards (the change is not lost);
 *   - queue_add_after(): the key becomes ready after a delay (polling waits:
 *     a Proxmox task still running, an agent not ready yet); an earlier
 *     deadline for the same key wins, a later one is ignored;
 *   - queue_add_rate_limited(): per-key exponential backoff with jitter,
 *     base * 2^failures capped at max (1 s .. 5 min by default);
 *     queue_forget() resets it after a success;
 *   - queue_pause(): ready keys are kept but not handed out (standby);
 *   - queue_shutdown(): every waiter wakes up with -ESHUTDOWN.
 *
 * Time comes from an injectable clock (milliseconds, monotonic), so unit
 * tests drive it without sleeping; blocking waits use CLOCK_MONOTONIC.
 * All functions are thread-safe. Keys are strings (a server's uid),
 * copied on add. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cleanup.h"

typedef struct Queue Queue;

typedef int64_t (*QueueClockFn)(void *userdata);
/* Returns a uniformly distributed double in [0, 1). */
typedef double (*QueueRandomFn)(void *userdata);

typedef struct QueueOptions {
	int64_t backoff_base_ms; /* 0 = 1000 */
	int64_t backoff_max_ms; /* 0 = 300000 */
	/* Fraction of the delay removed at random: the delay is drawn from
	 * [d * (1 - jitter), d]. 0 = no jitter; negative = default 0.2. */
	double jitter;
	QueueClockFn clock; /* NULL = now_mono_ms */
	QueueRandomFn random; /* NULL = drand48_r on a private seed */
	void *userdata; /* borrowed; passed to clock and random */
} QueueOptions;

/* Returns a new queue or NULL (out of memory). opts may be NULL (defaults). */
Queue *queue_new(const QueueOptions *opts);
/* Frees the queue (accepts NULL; must have no waiters); returns NULL. */
Queue *queue_free(Queue *q);
DEFINE_TRIVIAL_CLEANUP_FUNC(Queue *, queue_free)
#define _cleanup_queue_ _cleanup_(queue_freep)

/* Marks key (borrowed: copied) as needing work. 0, or -ENOMEM, or
 * -ESHUTDOWN after queue_shutdown(). */
int queue_add(Queue *q, const char *key) _must_check_;
/* Adds key once delay_ms have passed (delay <= 0: at once). */
int queue_add_after(Queue *q, const char *key, int64_t delay_ms) _must_check_;
/* Counts a failure for key and adds it after its backoff delay. Returns the
 * delay chosen (>= 0) or a negative errno. */
int64_t queue_add_rate_limited(Queue *q, const char *key) _must_check_;
/* Resets key's failure count (call after a success). A pending delayed add
 * is kept. */
void queue_forget(Queue *q, const char *key);
/* Number of failures counted for key since the last forget. */
int queue_num_requeues(Queue *q, const char *key);
/* The backoff delay (without jitter) the next failure of key would get. */
int64_t queue_backoff_peek(Queue *q, const char *key);

/* Takes the next ready key (new string, in *ret_key), waiting for one.
 * timeout_ms < 0 waits without limit. Returns 0, -EAGAIN on timeout, or
 * -ESHUTDOWN once the queue is shut down. The key stays "processing"
 * until queue_done(). */
int queue_get(Queue *q, int64_t timeout_ms, char **ret_key) _must_check_;
/* Marks key as no longer processing; if it was re-added meanwhile it
 * becomes ready again at once. */
void queue_done(Queue *q, const char *key);

/* Paused: keys still accumulate (and delayed keys mature) but queue_get
 * hands none out. */
void queue_pause(Queue *q, bool paused);
/* Wakes every waiter; later adds fail with -ESHUTDOWN, gets return
 * -ESHUTDOWN. Keys being processed may still be marked done. */
void queue_shutdown(Queue *q);
bool queue_is_shutdown(Queue *q);

typedef struct QueueStats {
	size_t ready; /* waiting to be handed out */
	size_t processing; /* handed out, not yet done */
	size_t delayed; /* waiting for their time */
	size_t keys; /* keys the queue tracks (incl. failure counts) */
} QueueStats;
void queue_stats(Queue *q, QueueStats *ret);
/* Milliseconds until the earliest delayed key matures (per the queue's
 * clock), or -1 when none is delayed. */
int64_t queue_next_delay_ms(Queue *q);
