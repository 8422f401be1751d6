/* crash.h - test-only crash points (DESIGN.md section 7 rule 6).
 *
 * ZLH_CRASH_AT=<action>:<step>[:<n>] makes the n-th (default first) call of
 * crash_point(action, step) in this process _exit(137) at once — no
 * cleanup, no flush, exactly like a SIGKILL at that moment. Steps:
 *   intent  the intent is committed, the call not made
 *   call    the call returned, its handle not saved
 *   handle  the handle is saved, completion not seen
 *   done    completion recorded
 * Without the variable crash_point() does nothing (one relaxed load). */
#pragma once

#define CRASH_STEP_INTENT "intent"
#define CRASH_STEP_CALL "call"
#define CRASH_STEP_HANDLE "handle"
#define CRASH_STEP_DONE "done"

void crash_point(const char *action, const char *step);
