/* container_gate.c - capacity gates of the container reconciler: Proxmox
 * task slots per node (max_tasks_per_node) and one clone at a time per
 * template. A gate has holders (a server from its call to the recorded end
 * of its task) and a FIFO of waiters. The plan wrapper asks before it
 * emits a task action: a server that would only wait gets no action and is
 * looked at again when its turn is likely (its position in the queue times
 * the measured holding time), so a waiting server costs neither a Proxmox
 * call nor a status write, and the next one starts right after a task ends.
 * The act takes the gate for real (and the runtime's task slot) right
 * before the intent. Per process: a restarted controller starts empty and
 * the journal's open tasks are waited on without a gate (Proxmox refuses
 * what would collide: "CT is locked"). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "reconcilers/container_recon_int.h"
#include "util.h"

#define GATE_EWMA_INIT_MS 300
#define GATE_WAIT_MIN_MS 20
#define GATE_WAIT_MAX_MS 2000
#define GATE_WAITER_GRACE_MS 1500 /* a waiter that did not come back is dropped */
#define GATE_RECENT 16
#define GATE_WAIT_UNSURE_MS 400

typedef struct GateMember {
	char uid[40];
	int64_t t; /* holder: since; waiter: when it will ask again */
} GateMember;

struct CtGate {
	char name[96];
	GateMember *holders;
	size_t n_holders;
	GateMember *waiters;
	size_t n_waiters;
	int capacity;
	int64_t ewma_ms;
	int64_t recent[GATE_RECENT]; /* the last holding times (ring) */
	size_t n_recent;
};

/* The holding time waiters are scheduled by: the lower quartile of the
 * recent ones (an early guess costs one cheap look, a late one keeps a
 * slot idle; the first holds also carry the start-up queue). */
static int64_t hold_estimate(const CtGate *g)
{
	size_t n = g->n_recent < GATE_RECENT ? g->n_recent : GATE_RECENT;
	if (n == 0)
		return g->ewma_ms;
	int64_t v[GATE_RECENT];
	memcpy(v, g->recent, n * sizeof *v);
	for (size_t i = 1; i < n; i++)
		for (size_t j = i; j > 0 && v[j - 1] > v[j]; j--) {
			int64_t x = v[j];
			v[j] = v[j - 1];
			v[j - 1] = x;
		}
	return v[n / 4];
}

static CtGate *gate_get(CtState *st, const char *name)
{
	for (size_t i = 0; i < st->n_gates; i++)
		if (strcmp(st->gates[i]->name, name) == 0)
			return st->gates[i];
	CtGate **ng = realloc(st->gates, (st->n_gates + 1) * sizeof *ng);
	if (!ng)
		return NULL;
	st->gates = ng;
	CtGate *g = calloc(1, sizeof *g);
	if (!g)
		return NULL;
	snprintf(g->name, sizeof g->name, "%s", name);
	g->ewma_ms = GATE_EWMA_INIT_MS;
	g->capacity = 1;
	st->gates[st->n_gates++] = g;
	return g;
}

void ct_gates_free(CtState *st)
{
	for (size_t i = 0; i < st->n_gates; i++) {
		free(st->gates[i]->holders);
		free(st->gates[i]->waiters);
		free(st->gates[i]);
	}
	free(st->gates);
	st->gates = NULL;
	st->n_gates = 0;
}

static ssize_t find(const GateMember *m, size_t n, const char *uid)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(m[i].uid, uid) == 0)
			return (ssize_t)i;
	return -1;
}

static void drop(GateMember *m, size_t *n, size_t i)
{
	memmove(&m[i], &m[i + 1], (*n - i - 1) * sizeof *m);
	(*n)--;
}

static int add(GateMember **m, size_t *n, const char *uid, int64_t t)
{
	GateMember *nm = realloc(*m, (*n + 1) * sizeof *nm);
	if (!nm)
		return -ENOMEM;
	*m = nm;
	snprintf(nm[*n].uid, sizeof nm[*n].uid, "%s", uid);
	nm[*n].t = t;
	(*n)++;
	return 0;
}

static void prune(CtGate *g, int64_t now)
{
	for (size_t i = 0; i < g->n_waiters;)
		if (now > g->waiters[i].t + GATE_WAITER_GRACE_MS)
			drop(g->waiters, &g->n_waiters, i);
		else
			i++;
}

/* Waiters ahead of position p that are awake (due to ask now or soon): a
 * waiter asleep until its estimated turn does not keep a free slot idle;
 * when it wakes it is still ahead of everyone behind it. */
static size_t ahead_due(const CtGate *g, size_t p, int64_t now)
{
	size_t n = 0;
	for (size_t i = 0; i < p && i < g->n_waiters; i++)
		if (g->waiters[i].t <= now + GATE_WAIT_MIN_MS)
			n++;
	return n;
}

/* 0 when the waiter at position p may go now, else when to ask again: the
 * next round (the first free slot) is asked for often, later rounds one
 * holding time per round after the earliest expected end. */
static int64_t estimate(const CtGate *g, size_t p, int64_t now)
{
	size_t cap = (size_t)g->capacity;
	size_t free_slots = g->n_holders < cap ? cap - g->n_holders : 0;
	if (ahead_due(g, p, now) < free_slots)
		return 0;
	if (p < free_slots)
		p = free_slots; /* awake ones ahead take the free slots: next round */
	int64_t hold = hold_estimate(g);
	int64_t first = INT64_MAX;
	for (size_t i = 0; i < g->n_holders; i++)
		if (g->holders[i].t + hold < first)
			first = g->holders[i].t + hold;
	int64_t to_first = first == INT64_MAX ? 0 : first - now;
	size_t round = (p - free_slots) / cap;
	int64_t wait;
	if (round == 0) {
		wait = hold / 4;
		if (to_first > 0 && to_first < wait)
			wait = to_first;
	} else {
		/* A little early: the estimate is looked at again then. */
		wait = (to_first + (int64_t)round * hold - hold / 2) * 4 / 5;
	}
	/* Few measurements yet (the first ones carry the start-up queue):
	 * look again soon rather than trust the estimate. */
	int64_t max = g->n_recent < GATE_RECENT / 2 ? GATE_WAIT_UNSURE_MS
	              : 4 * hold > GATE_WAIT_MAX_MS ? 4 * hold
	                                            : GATE_WAIT_MAX_MS;
	return wait < GATE_WAIT_MIN_MS ? GATE_WAIT_MIN_MS : wait > max ? max : wait;
}

int64_t ct_gate_check(CtState *st, const char *name, int capacity, const char *uid)
{
	if (capacity < 1)
		capacity = 1;
	int64_t now = now_mono_ms(), wait = 0;
	pthread_mutex_lock(&st->lock);
	CtGate *g = gate_get(st, name);
	if (!g || find(g->holders, g->n_holders, uid) >= 0)
		goto out;
	g->capacity = capacity;
	prune(g, now);
	ssize_t p = find(g->waiters, g->n_waiters, uid);
	if (p < 0) {
		if (add(&g->waiters, &g->n_waiters, uid, now) < 0)
			goto out;
		p = (ssize_t)g->n_waiters - 1;
	}
	wait = estimate(g, (size_t)p, now);
	/* A waiter that may go keeps its place while it acts. */
	g->waiters[p].t = now + (wait ? wait : GATE_WAIT_MIN_MS * 10);
out:
	pthread_mutex_unlock(&st->lock);
	return wait;
}

bool ct_gate_take(CtState *st, const char *name, int capacity, const char *uid)
{
	if (capacity < 1)
		capacity = 1;
	int64_t now = now_mono_ms();
	bool ok = false;
	pthread_mutex_lock(&st->lock);
	CtGate *g = gate_get(st, name);
	if (!g)
		goto out;
	g->capacity = capacity;
	if (find(g->holders, g->n_holders, uid) >= 0) {
		ok = true;
		goto out;
	}
	prune(g, now);
	size_t free_slots = g->n_holders < (size_t)capacity ? (size_t)capacity - g->n_holders : 0;
	ssize_t p = find(g->waiters, g->n_waiters, uid);
	size_t before = ahead_due(g, p < 0 ? g->n_waiters : (size_t)p, now);
	if (before >= free_slots || add(&g->holders, &g->n_holders, uid, now) < 0)
		goto out;
	if (p >= 0)
		drop(g->waiters, &g->n_waiters, (size_t)p);
	ok = true;
out:
	pthread_mutex_unlock(&st->lock);
	return ok;
}

static void release_in(CtGate *g, const char *uid, int64_t now, bool measure)
{
	ssize_t p = find(g->holders, g->n_holders, uid);
	if (p < 0)
		return;
	int64_t held = now - g->holders[p].t;
	if (measure && held > 0) {
		g->ewma_ms = (g->ewma_ms * 7 + held * 3) / 10;
		g->recent[g->n_recent++ % GATE_RECENT] = held;
	}
	drop(g->holders, &g->n_holders, (size_t)p);
}

void ct_gate_release(CtState *st, const char *name, const char *uid, bool measure)
{
	int64_t now = now_mono_ms();
	pthread_mutex_lock(&st->lock);
	for (size_t i = 0; i < st->n_gates; i++)
		if (strcmp(st->gates[i]->name, name) == 0)
			release_in(st->gates[i], uid, now, measure);
	pthread_mutex_unlock(&st->lock);
}

void ct_gate_release_uid(CtState *st, const char *uid, bool measure)
{
	int64_t now = now_mono_ms();
	pthread_mutex_lock(&st->lock);
	for (size_t i = 0; i < st->n_gates; i++)
		release_in(st->gates[i], uid, now, measure);
	pthread_mutex_unlock(&st->lock);
}

bool ct_gate_holds(CtState *st, const char *uid)
{
	bool r = false;
	pthread_mutex_lock(&st->lock);
	for (size_t i = 0; i < st->n_gates && !r; i++)
		r = find(st->gates[i]->holders, st->gates[i]->n_holders, uid) >= 0;
	pthread_mutex_unlock(&st->lock);
	return r;
}

int64_t ct_gate_pending(CtState *st, const char *uid)
{
	int64_t now = now_mono_ms(), wait = 0;
	pthread_mutex_lock(&st->lock);
	for (size_t i = 0; i < st->n_gates; i++) {
		CtGate *g = st->gates[i];
		prune(g, now);
		ssize_t p = find(g->waiters, g->n_waiters, uid);
		if (p < 0)
			continue;
		int64_t w = estimate(g, (size_t)p, now);
		if (w > wait)
			wait = w;
	}
	pthread_mutex_unlock(&st->lock);
	return wait;
}

static uint64_t upid_hash(const char *s)
{
	uint64_t h = 1469598103934665603ULL;
	for (; *s; s++)
		h = (h ^ (uint8_t)*s) * 1099511628211ULL;
	return h ? h : 1;
}

/* The first poll's delay follows the tasks' duration from both sides: a
 * task found done at its first poll moves the next first poll earlier, one
 * found still running moves it later. It settles around the typical
 * duration (about half the tasks take one poll, the rest two). */
int64_t ct_task_polled(CtState *st, CtOpType t, const char *upid, bool running, int64_t age_ms)
{
	if (t < 0 || t >= _CT_OP_MAX || !upid)
		return CT_POLL_MIN_MS;
	uint64_t h = upid_hash(upid);
	pthread_mutex_lock(&st->lock);
	bool seen = false;
	for (size_t i = 0; i < 64 && i < st->n_polled; i++)
		seen = seen || st->polled[i] == h;
	int64_t *fp = &st->first_poll[t];
	if (!seen) {
		int64_t cur = *fp ? *fp : CT_POLL_MIN_MS;
		if (running) {
			cur = cur * 11 / 10 + 1;
			if (cur < age_ms)
				cur = age_ms;
			st->polled[st->n_polled++ % 64] = h;
		} else {
			cur = cur * 85 / 100;
		}
		*fp = cur < CT_POLL_MIN_MS / 4 ? CT_POLL_MIN_MS / 4 : cur > 60000 ? 60000 : cur;
	}
	pthread_mutex_unlock(&st->lock);
	/* Running: it ends soon after its age so far, or so it seems. */
	int64_t d = seen ? age_ms / 4 : age_ms / 8;
	return d < CT_POLL_MIN_MS / 6 ? CT_POLL_MIN_MS / 6
	       : d > CT_POLL_MAX_MS   ? CT_POLL_MAX_MS
	                              : d;
}

int64_t ct_task_first_poll(CtState *st, CtOpType t)
{
	if (t < 0 || t >= _CT_OP_MAX)
		return CT_POLL_MIN_MS;
	pthread_mutex_lock(&st->lock);
	int64_t d = st->first_poll[t];
	pthread_mutex_unlock(&st->lock);
	return d ? d : CT_POLL_MIN_MS;
}
