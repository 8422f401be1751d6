/* status.h - turning the reconcilers' reports into a server's status:
 * conditions (with lastTransitionTime that moves only on a real
 * transition), Ready, and the phase. Pure functions: the clock comes in as
 * a string. */
#pragma once

#include <stdbool.h>

#include <jansson.h>

#include "controller/reconciler.h"

typedef struct StatusInput {
	const json_t *old_conditions; /* borrowed: the stored array (may be NULL) */
	CondReport reports[_COND_TYPE_MAX]; /* what this reconcile's plans reported */
	bool owned[_COND_TYPE_MAX]; /* an enabled reconciler owns the type */
	bool planned[_COND_TYPE_MAX]; /* ... and its plan ran this time */
	bool paused;
	const char *now; /* RFC 3339, borrowed */
} StatusInput;

/* Builds the conditions array (new, in CondType order, Ready last):
 *   not owned by an enabled reconciler   True, Disabled
 *   owned, planned, reported             as reported
 *   owned, planned, not reported         Unknown, NotReported
 *   owned, not planned (plan failed)     the stored condition, else Unknown
 *   Ready                                True when every other one is True
 * lastTransitionTime is kept from the stored condition of the same type
 * when its status did not change. *ret_ready says whether Ready is True. */
int status_build_conditions(const StatusInput *in, json_t **ret, bool *ret_ready) _must_check_;

/* The phase: Deleting while deletion runs; Failed when a plan said so;
 * Ready (Stopped when spec.power is "stopped") when ready; else Pending
 * until Allocated is True, Degraded once the server had been up (previous
 * phase Ready, Degraded or Stopped), Provisioning before that. */
ServerPhase status_phase(const RuntimeServer *srv, const json_t *conditions, bool ready,
                         bool failed);

/* True when the two condition arrays differ in anything but order of keys. */
bool status_conditions_equal(const json_t *a, const json_t *b);
