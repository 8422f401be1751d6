/* queue.c - see queue.h. One mutex guards everything; the sets of
 * client-go's workqueue (queue, dirty, processing, waiting heap, failure
 * counts) are flags on one entry per key, found through a chained hash
 * table. The ready list is a FIFO of entries; the delayed set a binary
 * min-heap ordered by due time. */
#include "queue.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "util.h"

typedef struct Entry Entry;
struct Entry {
	char *key;
	Entry *hnext; /* hash chain */
	Entry *rnext; /* ready FIFO */
	bool dirty; /* needs (another) pass */
	bool processing; /* handed out, not done */
	bool in_ready; /* linked in the ready FIFO */
	size_t heap_idx; /* index in the delayed heap, or SIZE_MAX */
	int64_t due; /* when in the heap */
	int failures;
};

struct Queue {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	QueueOptions o;
	struct drand48_data rnd;

	Entry **buckets;
	size_t n_buckets;
	size_t n_entries;

	Entry *ready_head, *ready_tail;
	size_t n_ready;
	size_t n_processing;

	Entry **heap;
	size_t n_heap, cap_heap;

	bool paused;
	bool shutdown;
	int waiters;
};

static uint64_t hash_str(const char *s)
{
	uint64_t h = 1469598103934665603ULL;
	for (; *s; s++) {
		h ^= (unsigned char)*s;
		h *= 1099511628211ULL;
	}
	return h;
}

static int64_t q_now(Queue *q)
{
	return q->o.clock ? q->o.clock(q->o.userdata) : now_mono_ms();
}

static double q_random(Queue *q)
{
	if (q->o.random)
		return q->o.random(q->o.userdata);
	double d = 0;
	drand48_r(&q->rnd, &d);
	return d;
}

Queue *queue_new(const QueueOptions *opts)
{
	Queue *q = calloc(1, sizeof *q);
	if (!q)
		return NULL;
	if (opts)
		q->o = *opts;
	else
		q->o.jitter = -1;
	if (q->o.backoff_base_ms <= 0)
		q->o.backoff_base_ms = 1000;
	if (q->o.backoff_max_ms <= 0)
		q->o.backoff_max_ms = 300000;
	if (q->o.jitter < 0)
		q->o.jitter = 0.2;
	if (q->o.jitter > 1)
		q->o.jitter = 1;
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	srand48_r(ts.tv_nsec ^ (long)(uintptr_t)q, &q->rnd);
	q->n_buckets = 64;
	q->buckets = calloc(q->n_buckets, sizeof *q->buckets);
	if (!q->buckets) {
		free(q);
		return NULL;
	}
	pthread_mutex_init(&q->lock, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&q->cond, &ca);
	pthread_condattr_destroy(&ca);
	return q;
}

Queue *queue_free(Queue *q)
{
	if (!q)
		return NULL;
	for (size_t i = 0; i < q->n_buckets; i++) {
		Entry *e = q->buckets[i];
		while (e) {
			Entry *n = e->hnext;
			free(e->key);
			free(e);
			e = n;
		}
	}
	free(q->buckets);
	free(q->heap);
	pthread_cond_destroy(&q->cond);
	pthread_mutex_destroy(&q->lock);
	free(q);
	return NULL;
}

/* --- hash table ---------------------------------------------------------- */

static Entry *find(Queue *q, const char *key)
{
	for (Entry *e = q->buckets[hash_str(key) & (q->n_buckets - 1)]; e; e = e->hnext)
		if (strcmp(e->key, key) == 0)
			return e;
	return NULL;
}

static void grow(Queue *q)
{
	size_t nb = q->n_buckets * 2;
	Entry **b = calloc(nb, sizeof *b);
	if (!b)
		return; /* keep the longer chains */
	for (size_t i = 0; i < q->n_buckets; i++) {
		Entry *e = q->buckets[i];
		while (e) {
			Entry *n = e->hnext;
			size_t h = hash_str(e->key) & (nb - 1);
			e->hnext = b[h];
			b[h] = e;
			e = n;
		}
	}
	free(q->buckets);
	q->buckets = b;
	q->n_buckets = nb;
}

static Entry *find_or_make(Queue *q, const char *key)
{
	Entry *e = find(q, key);
	if (e)
		return e;
	if (q->n_entries >= q->n_buckets)
		grow(q);
	e = calloc(1, sizeof *e);
	if (!e)
		return NULL;
	e->key = strdup(key);
	if (!e->key) {
		free(e);
		return NULL;
	}
	e->heap_idx = SIZE_MAX;
	size_t h = hash_str(key) & (q->n_buckets - 1);
	e->hnext = q->buckets[h];
	q->buckets[h] = e;
	q->n_entries++;
	return e;
}

/* Drops e when nothing refers to it any more. */
static void maybe_release(Queue *q, Entry *e)
{
	if (e->dirty || e->processing || e->in_ready || e->heap_idx != SIZE_MAX || e->failures)
		return;
	Entry **pp = &q->buckets[hash_str(e->key) & (q->n_buckets - 1)];
	while (*pp && *pp != e)
		pp = &(*pp)->hnext;
	if (*pp)
		*pp = e->hnext;
	q->n_entries--;
	free(e->key);
	free(e);
}

/* --- ready FIFO ------------------------------------------------------------ */

static void ready_push(Queue *q, Entry *e)
{
	if (e->in_ready)
		return;
	e->in_ready = true;
	e->rnext = NULL;
	if (q->ready_tail)
		q->ready_tail->rnext = e;
	else
		q->ready_head = e;
	q->ready_tail = e;
	q->n_ready++;
	pthread_cond_signal(&q->cond);
}

static Entry *ready_pop(Queue *q)
{
	Entry *e = q->ready_head;
	if (!e)
		return NULL;
	q->ready_head = e->rnext;
	if (!q->ready_head)
		q->ready_tail = NULL;
	e->rnext = NULL;
	e->in_ready = false;
	q->n_ready--;
	return e;
}

/* --- delayed heap ------------------------------------------------------------ */

static void heap_swap(Queue *q, size_t a, size_t b)
{
	Entry *t = q->heap[a];
	q->heap[a] = q->heap[b];
	q->heap[b] = t;
	q->heap[a]->heap_idx = a;
	q->heap[b]->heap_idx = b;
}

static void heap_up(Queue *q, size_t i)
{
	while (i > 0) {
		size_t p = (i - 1) / 2;
		if (q->heap[p]->due <= q->heap[i]->due)
			break;
		heap_swap(q, p, i);
		i = p;
	}
}

static void heap_down(Queue *q, size_t i)
{
	for (;;) {
		size_t l = 2 * i + 1, r = l + 1, m = i;
		if (l < q->n_heap && q->heap[l]->due < q->heap[m]->due)
			m = l;
		if (r < q->n_heap && q->heap[r]->due < q->heap[m]->due)
			m = r;
		if (m == i)
			break;
		heap_swap(q, i, m);
		i = m;
	}
}

static int heap_insert(Queue *q, Entry *e, int64_t due)
{
	if (e->heap_idx != SIZE_MAX) {
		if (due >= e->due)
			return 0; /* an earlier (or equal) wake-up is already set */
		e->due = due;
		heap_up(q, e->heap_idx);
		return 0;
	}
	if (q->n_heap == q->cap_heap) {
		size_t nc = q->cap_heap ? q->cap_heap * 2 : 32;
		Entry **h = realloc(q->heap, nc * sizeof *h);
		if (!h)
			return -ENOMEM;
		q->heap = h;
		q->cap_heap = nc;
	}
	e->due = due;
	e->heap_idx = q->n_heap;
	q->heap[q->n_heap++] = e;
	heap_up(q, e->heap_idx);
	return 0;
}

static Entry *heap_remove_top(Queue *q)
{
	Entry *e = q->heap[0];
	q->n_heap--;
	if (q->n_heap > 0) {
		q->heap[0] = q->heap[q->n_heap];
		q->heap[0]->heap_idx = 0;
		heap_down(q, 0);
	}
	e->heap_idx = SIZE_MAX;
	return e;
}

/* --- the workqueue rules ------------------------------------------------------ */

static void add_locked(Queue *q, Entry *e)
{
	if (e->dirty)
		return; /* dedup */
	e->dirty = true;
	if (e->processing)
		return; /* queue_done() will make it ready again */
	ready_push(q, e);
}

/* Moves every matured delayed entry to the ready set. */
static void promote_due(Queue *q)
{
	int64_t now = q_now(q);
	while (q->n_heap > 0 && q->heap[0]->due <= now) {
		Entry *e = heap_remove_top(q);
		add_locked(q, e);
	}
}

int queue_add(Queue *q, const char *key)
{
	return queue_add_after(q, key, 0);
}

int queue_add_after(Queue *q, const char *key, int64_t delay_ms)
{
	if (!key)
		return -EINVAL;
	pthread_mutex_lock(&q->lock);
	int r = 0;
	if (q->shutdown) {
		r = -ESHUTDOWN;
		goto out;
	}
	Entry *e = find_or_make(q, key);
	if (!e) {
		r = -ENOMEM;
		goto out;
	}
	if (delay_ms <= 0) {
		add_locked(q, e);
	} else {
		r = heap_insert(q, e, q_now(q) + delay_ms);
		/* A waiter may sleep past the new, earlier due time. */
		pthread_cond_broadcast(&q->cond);
		if (r < 0)
			maybe_release(q, e);
	}
out:
	pthread_mutex_unlock(&q->lock);
	return r;
}

static int64_t backoff_for(Queue *q, int failures)
{
	int64_t d = q->o.backoff_base_ms;
	for (int i = 0; i < failures && d < q->o.backoff_max_ms; i++)
		d *= 2;
	return d > q->o.backoff_max_ms ? q->o.backoff_max_ms : d;
}

int64_t queue_add_rate_limited(Queue *q, const char *key)
{
	if (!key)
		return -EINVAL;
	pthread_mutex_lock(&q->lock);
	int64_t r;
	if (q->shutdown) {
		r = -ESHUTDOWN;
		goto out;
	}
	Entry *e = find_or_make(q, key);
	if (!e) {
		r = -ENOMEM;
		goto out;
	}
	int64_t d = backoff_for(q, e->failures);
	if (e->failures < 1000)
		e->failures++;
	d -= (int64_t)((double)d * q->o.jitter * q_random(q));
	if (d < 1)
		d = 1;
	int k = heap_insert(q, e, q_now(q) + d);
	pthread_cond_broadcast(&q->cond);
	r = k < 0 ? k : d;
out:
	pthread_mutex_unlock(&q->lock);
	return r;
}

void queue_forget(Queue *q, const char *key)
{
	pthread_mutex_lock(&q->lock);
	Entry *e = find(q, key);
	if (e) {
		e->failures = 0;
		maybe_release(q, e);
	}
	pthread_mutex_unlock(&q->lock);
}

int queue_num_requeues(Queue *q, const char *key)
{
	pthread_mutex_lock(&q->lock);
	Entry *e = find(q, key);
	int n = e ? e->failures : 0;
	pthread_mutex_unlock(&q->lock);
	return n;
}

int64_t queue_backoff_peek(Queue *q, const char *key)
{
	pthread_mutex_lock(&q->lock);
	Entry *e = find(q, key);
	int64_t d = backoff_for(q, e ? e->failures : 0);
	pthread_mutex_unlock(&q->lock);
	return d;
}

int queue_get(Queue *q, int64_t timeout_ms, char **ret_key)
{
	pthread_mutex_lock(&q->lock);
	int64_t deadline = timeout_ms < 0 ? INT64_MAX : now_mono_ms() + timeout_ms;
	int r;
	for (;;) {
		if (q->shutdown) {
			r = -ESHUTDOWN;
			break;
		}
		promote_due(q);
		if (!q->paused && q->n_ready > 0) {
			Entry *e = ready_pop(q);
			char *k = strdup(e->key);
			if (!k) {
				ready_push(q, e);
				r = -ENOMEM;
				break;
			}
			e->dirty = false;
			e->processing = true;
			q->n_processing++;
			*ret_key = k;
			r = 0;
			break;
		}
		int64_t now = now_mono_ms();
		if (now >= deadline) {
			r = -EAGAIN;
			break;
		}
		int64_t wake = deadline;
		if (!q->paused && q->n_heap > 0) {
			int64_t d = q->heap[0]->due - q_now(q);
			if (d < 0)
				d = 0;
			if (now + d < wake)
				wake = now + d;
		}
		q->waiters++;
		if (wake == INT64_MAX) {
			pthread_cond_wait(&q->cond, &q->lock);
		} else {
			struct timespec ts = {.tv_sec = wake / 1000,
			                      .tv_nsec = (long)(wake % 1000) * 1000000L};
			/* now_mono_ms is CLOCK_MONOTONIC, the condvar's clock. */
			pthread_cond_timedwait(&q->cond, &q->lock, &ts);
		}
		q->waiters--;
	}
	pthread_mutex_unlock(&q->lock);
	return r;
}

void queue_done(Queue *q, const char *key)
{
	pthread_mutex_lock(&q->lock);
	Entry *e = find(q, key);
	if (e && e->processing) {
		e->processing = false;
		q->n_processing--;
		if (e->dirty && !q->shutdown)
			ready_push(q, e);
		else if (q->shutdown)
			e->dirty = false;
		maybe_release(q, e);
	}
	pthread_mutex_unlock(&q->lock);
}

void queue_pause(Queue *q, bool paused)
{
	pthread_mutex_lock(&q->lock);
	q->paused = paused;
	pthread_cond_broadcast(&q->cond);
	pthread_mutex_unlock(&q->lock);
}

void queue_shutdown(Queue *q)
{
	pthread_mutex_lock(&q->lock);
	q->shutdown = true;
	pthread_cond_broadcast(&q->cond);
	pthread_mutex_unlock(&q->lock);
}

bool queue_is_shutdown(Queue *q)
{
	pthread_mutex_lock(&q->lock);
	bool s = q->shutdown;
	pthread_mutex_unlock(&q->lock);
	return s;
}

void queue_stats(Queue *q, QueueStats *ret)
{
	pthread_mutex_lock(&q->lock);
	promote_due(q);
	*ret = (QueueStats){.ready = q->n_ready,
	                    .processing = q->n_processing,
	                    .delayed = q->n_heap,
	                    .keys = q->n_entries};
	pthread_mutex_unlock(&q->lock);
}

int64_t queue_next_delay_ms(Queue *q)
{
	pthread_mutex_lock(&q->lock);
	int64_t d = -1;
	if (q->n_heap > 0) {
		d = q->heap[0]->due - q_now(q);
		if (d < 0)
			d = 0;
	}
	pthread_mutex_unlock(&q->lock);
	return d;
}
