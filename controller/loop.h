/* loop.h - the controller runtime: the main loop (lease, LISTEN/NOTIFY,
 * resync, systemd notifications, metrics) and the worker threads that
 * reconcile one server at a time (DESIGN.md section 8).
 *
 * Threads, not an event loop: each worker owns one PostgreSQL connection
 * and (through the reconcilers' worker_init) one curl easy handle, and
 * runs a reconcile as straight-line blocking code. Reconcilers stay simple
 * sequential functions (observe, plan, act) that are easy to test and to
 * read in a crash journal; the long waits of this domain (Proxmox tasks,
 * agents installing) are not held by a worker but handed back to the queue
 * (requeue_after), so a handful of threads keep up with thousands of
 * servers, and a per-thread libpq connection gives each reconcile its own
 * transactions. An event loop with curl multi and async libpq would need
 * every reconciler written as a state machine across callbacks, for no
 * throughput the external APIs' rate limits would let us use.
 *
 * The main thread never blocks on anything but poll() and its own short
 * queries (statement_timeout), so its iterations drive the watchdog: a
 * wedged main loop stops the pings and systemd restarts the service; a
 * healthy standby keeps pinging. */
#pragma once

#include <libpq-fe.h>

#include "cleanup.h"
#include "controller/config.h"
#include "controller/reconciler.h"

typedef struct Controller Controller;

typedef struct ControllerOptions {
	const Config *cfg; /* borrowed; outlives the controller */
	/* NULL-terminated, ordered by `order` (borrowed); NULL: the
	 * registry (recon_registry()). Only the enabled ones run. */
	const Reconciler *const *reconcilers;
	const char *holder; /* lease holder id (borrowed); NULL: host:pid:random */
	PGconn *conn; /* takes: the main connection, schema already checked */
	int signal_fd; /* signalfd delivering SIGTERM, SIGINT, SIGHUP (borrowed) */
} ControllerOptions;

int controller_new(const ControllerOptions *o, Controller **ret) _must_check_;
/* Runs until SIGTERM/SIGINT, then drains. Returns the process exit status
 * (0 after a clean stop). */
int controller_run(Controller *c);
/* Frees everything; when the drain left workers running (timeout), it
 * frees nothing they could still touch (the process is about to exit). */
Controller *controller_free(Controller *c);
