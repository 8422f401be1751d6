/* probe.h - a test reconciler, registered only when $ZLH_TEST_PROBE names a
 * file (controller/registry.c). It stands in for an external system: every
 * act appends one line to that file,
 *     pid=<pid> epoch=<epoch> uid=<uid> action=<name>
 * so integration tests can see who acted, when, and under which epoch.
 *
 * plan: two mutating actions per reconcile, probe-1 then probe-2 (the
 *   second asks to be looked at again only after an hour, so each pass acts
 *   once per server). $ZLH_TEST_PROBE_HOLD_MS makes probe-1 hold that long
 *   after writing its line (a slow call to stall a process in).
 * After the hold probe-1 records an event (a fenced write, like a journal
 * write after a call returns).
 * finalize: one action, probe-cleanup, until the file shows it was done.
 * observe (bulk, once per pass): appends "pid=<pid> observe" to FILE.observe.
 * It owns no condition and uses a finalizer ("probe"). */
#pragma once

#include "controller/reconciler.h"

extern const Reconciler recon_probe;
