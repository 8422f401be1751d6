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
#define GATE_WAIT_MAX_MS 5000
#define GATE_WAITER_GRACE_MS 1500 /* a waiter that did not come back is dropped */

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
};

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

/* Waiters ahead of uid (all of them when uid does not wait). */
static size_t ahead(const CtGate *g, const char *uid)
{
	ssize_t p = find(g->waiters, g->n_waiters, uid);
	return p < 0 ? g->n_waiters : (size_t)p;
}

/* 0 when the waiter at position p may go now, else when to ask again: the
 * next round (the first free slot) is asked for often, later rounds one
 * holding time per round after the earliest expected end. */
static int64_t estimate(const CtGate *g, size_t p, int64_t now)
{
	size_t cap = (size_t)g->capacity;
	size_t free_slots = g->n_holders < cap ? cap - g->n_holders : 0;
	if (p < free_slots)
		return 0;
	int64_t first = INT64_MAX;
	for (size_t i = 0; i < g->n_holders; i++)
		if (g->holders[i].t + g->ewma_ms < first)
			first = g->holders[i].t + g->ewma_ms;
	int64_t to_first = first == INT64_MAX ? 0 : first - now;
	size_t round = (p - free_slots) / cap;
	int64_t wait;
	if (round == 0) {
		wait = g->ewma_ms / 4;
		if (to_first > 0 && to_first < wait)
			wait = to_first;
	} else {
		wait = to_first + (int64_t)round * g->ewma_ms - g->ewma_ms / 2;
	}
	return wait < GATE_WAIT_MIN_MS   ? GATE_WAIT_MIN_MS
	       : wait > GATE_WAIT_MAX_MS ? GATE_WAIT_MAX_MS
	                                 : wait;
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
	if (ahead(g, uid) >= free_slots || add(&g->holders, &g->n_holders, uid, now) < 0)
		goto out;
	ssize_t p = find(g->waiters, g->n_waiters, uid);
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
	if (measure && held > 0)
		g->ewma_ms = (g->ewma_ms * 7 + held * 3) / 10;
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
