/* Unit tests for the backup reconciler's pure plan (reconcilers/backup.c):
 * one test per row of its decision table (row ids in comments), slots and
 * jitter, names, and the reconciler table. No I/O, no clock: now is a
 * constant. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "reconcilers/backup.h"

#define UID "3f2a9c1e-5b7d-4e8f-9a0b-1c2d3e4f5a6b"
#define REQ "9d2b2c3a-0000-4000-8000-00000000aaaa"
#define NOW 1722938400000LL /* 2024-08-06T10:00:00Z */
#define HOUR 3600000LL
#define EVERY (6 * HOUR)

static AgentBackup bk(const char *id, const char *name, int64_t created, AgentBackupState st)
{
	AgentBackup b = {.created_ms = created, .bytes = 1000, .state = st};
	snprintf(b.id, sizeof b.id, "%s", id);
	snprintf(b.name, sizeof b.name, "%s", name);
	return b;
}

static const char *slot_name(int64_t slot, int64_t attempt)
{
	static char buf[4][64];
	static int k;
	char *b = buf[k++ % 4];
	assert_true(recon_backup_name(UID, slot, attempt, b, 64) > 0);
	return b;
}

static int64_t cur_slot(void)
{
	return recon_backup_slot(UID, EVERY, NOW);
}

static BkOp op(int64_t id, JournalStep step, int64_t slot, int64_t attempt, const char *handle)
{
	BkOp o = {.id = id, .step = step, .slot = slot, .attempt = attempt};
	o.final = slot == BACKUP_SLOT_FINAL;
	snprintf(o.name, sizeof o.name, "%s", slot_name(slot, attempt));
	snprintf(o.handle, sizeof o.handle, "%s", handle ? handle : "");
	return o;
}

/* A running GameServer with a ready agent, observed, every 6h keep 2. */
static BkInput base(const AgentBackup *listed, size_t n)
{
	BkInput in = {
	    .uid = UID,
	    .game = true,
	    .power_running = true,
	    .container_running = true,
	    .agent_ready = true,
	    .agent_since_ms = NOW - 10 * HOUR,
	    .now_ms = NOW,
	    .every_ms = EVERY,
	    .keep = 2,
	    .before_delete = true,
	    .observed = true,
	    .listed = listed,
	    .n_listed = n,
	};
	recon_backup_settings_init(&in.settings);
	return in;
}

static Plan run(const BkInput *in)
{
	Plan p;
	memset(&p, 0, sizeof p);
	assert_int_equal(recon_backup_plan_input(in, &p), 0);
	assert_true(p.conditions[COND_BACKUPS_HEALTHY].set);
	return p;
}

static const CondReport *cond(const Plan *p)
{
	return &p->conditions[COND_BACKUPS_HEALTHY];
}

static void assert_cond(const Plan *p, CondStatus st, const char *reason)
{
	if (cond(p)->status != st || strcmp(cond(p)->reason, reason) != 0)
		fail_msg("condition %s %s (%s), wanted %s %s", cond_status_name(cond(p)->status),
		         cond(p)->reason, cond(p)->message, cond_status_name(st), reason);
}

static size_t count_actions(const Plan *p, const char *name)
{
	size_t n = 0;
	for (size_t i = 0; i < p->n_actions; i++)
		n += strcmp(p->actions[i].name, name) == 0;
	return n;
}

static const char *arg(const Plan *p, size_t i, const char *key)
{
	return json_string_value(json_object_get(p->actions[i].args, key));
}

/* --- helpers ---------------------------------------------------------------------------- */

static void slots__jitter_stable_and_spread(void **state)
{
	(void)state;
	int64_t j = recon_backup_jitter(UID, EVERY);
	assert_true(j >= 0 && j < EVERY);
	assert_int_equal(recon_backup_jitter(UID, EVERY), j); /* stable */
	/* 100 servers made together: their slot starts spread over the period */
	int buckets[6] = {0};
	for (int i = 0; i < 100; i++) {
		char uid[40];
		snprintf(uid, sizeof uid, "7a000000-0000-4000-8000-%012d", i);
		buckets[recon_backup_jitter(uid, EVERY) / HOUR]++;
	}
	for (int b = 0; b < 6; b++)
		assert_true(buckets[b] >= 5 && buckets[b] <= 35);
	int64_t s = cur_slot();
	int64_t start = recon_backup_slot_start(UID, EVERY, s);
	assert_true(start <= NOW && NOW < start + EVERY);
	assert_int_equal(recon_backup_slot(UID, EVERY, start), s);
	assert_int_equal(recon_backup_slot(UID, EVERY, start - 1), s - 1);
	assert_int_equal(recon_backup_jitter(UID, 0), 0);
}

static void names__deterministic_and_ours(void **state)
{
	(void)state;
	char b[64];
	assert_int_equal(recon_backup_name(UID, 42, 1, b, sizeof b), 15);
	assert_string_equal(b, "zlh-3f2a9c1e-42");
	assert_true(recon_backup_name(UID, 42, 3, b, sizeof b) > 0);
	assert_string_equal(b, "zlh-3f2a9c1e-42-3");
	assert_true(recon_backup_name(UID, BACKUP_SLOT_FINAL, 1, b, sizeof b) > 0);
	assert_string_equal(b, "zlh-3f2a9c1e-final");
	assert_int_equal(recon_backup_name(UID, 42, 0, b, sizeof b), -EINVAL);
	assert_int_equal(recon_backup_name(UID, 42, 1, b, 5), -ENOBUFS);
	assert_true(recon_backup_is_ours(UID, "zlh-3f2a9c1e-42"));
	assert_false(recon_backup_is_ours(UID, "zlh-00000000-42"));
	assert_false(recon_backup_is_ours(UID, "manual-before-update"));
}

/* --- rows --------------------------------------------------------------------------------- */

static void plan__devserver__not_applicable(void **state) /* N1 */
{
	(void)state;
	BkInput in = base(NULL, 0);
	in.game = false;
	Plan p = run(&in);
	assert_int_equal(p.n_actions, 0);
	assert_cond(&p, COND_TRUE, "NotApplicable");
}

static void plan__stopped__no_backup_true(void **state) /* W1 */
{
	(void)state;
	BkInput in = base(NULL, 0);
	in.observed = false;
	in.container_running = false;
	in.power_running = false;
	Plan p = run(&in);
	assert_int_equal(p.n_actions, 0);
	assert_cond(&p, COND_TRUE, "Stopped");
	in.power_running = true; /* starting: wait */
	p = run(&in);
	assert_cond(&p, COND_UNKNOWN, "WaitingForContainer");
	assert_true(p.requeue_after_ms > 0);
}

static void plan__agent_unreachable__decides_nothing(void **state) /* W2 */
{
	(void)state;
	BkOp latest = op(5, JOURNAL_STEP_CALL, cur_slot(), 1, NULL);
	BkInput in = base(NULL, 0);
	in.observed = false;
	in.latest = &latest;
	Plan p = run(&in);
	assert_int_equal(p.n_actions, 0);
	assert_cond(&p, COND_UNKNOWN, "AgentUnreachable");
	assert_true(p.requeue_after_ms > 0);
}

static void plan__no_backup_yet__creates_slot_name(void **state) /* B5 */
{
	(void)state;
	BkInput in = base(NULL, 0);
	Plan p = run(&in);
	assert_int_equal(p.n_actions, 1);
	assert_string_equal(p.actions[0].name, "backup");
	assert_true(p.actions[0].mutating);
	assert_string_equal(p.actions[0].system, "agent");
	assert_string_equal(arg(&p, 0, "name"), slot_name(cur_slot(), 1));
	assert_int_equal(json_integer_value(json_object_get(p.actions[0].args, "slot")),
	                 cur_slot());
	assert_cond(&p, COND_TRUE, "BackingUp");
	plan_clear(&p);
}

static void plan__slot_already_listed__no_create(void **state) /* B2 */
{
	(void)state;
	int64_t s = cur_slot();
	/* listed by this slot's name, created long ago per its clock: still taken */
	AgentBackup l[] = {bk("bk-1", slot_name(s, 1), NOW - 7 * HOUR, AGENT_BACKUP_OK)};
	BkInput in = base(l, 1);
	Plan p = run(&in);
	assert_int_equal(count_actions(&p, "backup"), 0);
	assert_cond(&p, COND_TRUE, "BackedUp");
	int64_t next = recon_backup_slot_start(UID, EVERY, s + 1) - NOW;
	assert_int_equal(p.requeue_after_ms, next);
	/* or made within this slot under another of our names */
	AgentBackup l2[] = {bk("bk-2", "zlh-3f2a9c1e-final", NOW - 1000, AGENT_BACKUP_OK)};
	in = base(l2, 1);
	p = run(&in);
	assert_int_equal(count_actions(&p, "backup"), 0);
}

static void plan__previous_slot_only__creates(void **state) /* B5 */
{
	(void)state;
	int64_t s = cur_slot();
	int64_t start = recon_backup_slot_start(UID, EVERY, s);
	AgentBackup l[] = {bk("bk-1", slot_name(s - 1, 1), start - 1, AGENT_BACKUP_OK)};
	BkInput in = base(l, 1);
	Plan p = run(&in);
	assert_int_equal(count_actions(&p, "backup"), 1);
	assert_string_equal(arg(&p, 0, "name"), slot_name(s, 1));
	plan_clear(&p);
}

static void plan__foreign_backup_in_slot__ignored(void **state) /* B5, invariant 4 */
{
	(void)state;
	AgentBackup l[] = {bk("bk-9", "manual-before-update", NOW - 1000, AGENT_BACKUP_OK)};
	BkInput in = base(l, 1);
	Plan p = run(&in);
	assert_int_equal(count_actions(&p, "backup"), 1);
	assert_int_equal(count_actions(&p, "backup-delete"), 0);
	plan_clear(&p);
}

static void plan__backup_running__polls_one_in_flight(void **state) /* S1, B1 */
{
	(void)state;
	int64_t s = cur_slot();
	AgentBackup l[] = {bk("bk-1", slot_name(s, 1), NOW - 1000, AGENT_BACKUP_RUNNING)};
	BkOp latest = op(5, JOURNAL_STEP_HANDLE, s, 1, "bk-1");
	BkInput in = base(l, 1);
	in.latest = &latest;
	Plan p = run(&in);
	assert_int_equal(p.n_actions, 0);
	assert_true(p.requeue_after_ms > 0 && p.requeue_after_ms <= 5000);
	assert_cond(&p, COND_TRUE, "BackingUp");
	/* anyone's running backup also blocks a new one (B1) */
	AgentBackup l2[] = {bk("bk-7", "manual", NOW - 1000, AGENT_BACKUP_RUNNING)};
	in = base(l2, 1);
	p = run(&in);
	assert_int_equal(p.n_actions, 0);
	assert_true(p.requeue_after_ms > 0);
}

static void plan__backup_ok__settled_done(void **state) /* S2 */
{
	(void)state;
	int64_t s = cur_slot();
	AgentBackup l[] = {bk("bk-1", slot_name(s, 1), NOW - 1000, AGENT_BACKUP_OK)};
	BkOp latest = op(5, JOURNAL_STEP_HANDLE, s, 1, "bk-1");
	BkInput in = base(l, 1);
	in.latest = &latest;
	Plan p = run(&in);
	assert_int_equal(p.n_actions, 1);
	assert_string_equal(p.actions[0].name, "settle-backup");
	assert_false(p.actions[0].mutating);
	assert_string_equal(arg(&p, 0, "outcome"), "done");
	assert_string_equal(arg(&p, 0, "id"), "bk-1");
	assert_int_equal(json_integer_value(json_object_get(p.actions[0].args, "bytes")), 1000);
	plan_clear(&p);
}

static void plan__backup_failed_or_vanished__settled_failed(void **state) /* S3, S4 */
{
	(void)state;
	int64_t s = cur_slot();
	AgentBackup l[] = {bk("bk-1", slot_name(s, 1), NOW - 1000, AGENT_BACKUP_FAILED)};
	BkOp latest = op(5, JOURNAL_STEP_HANDLE, s, 1, "bk-1");
	BkInput in = base(l, 1);
	in.latest = &latest;
	Plan p = run(&in);
	assert_int_equal(p.n_actions, 1);
	assert_string_equal(arg(&p, 0, "outcome"), "failed");
	plan_clear(&p);
	in = base(NULL, 0);
	in.latest = &latest;
	p = run(&in);
	assert_int_equal(p.n_actions, 1);
	assert_string_equal(p.actions[0].name, "settle-backup");
	assert_string_equal(arg(&p, 0, "outcome"), "failed");
	plan_clear(&p);
}

static void plan__lost_reply_listed__adopted_not_created(void **state) /* S5 */
{
	(void)state;
	int64_t s = cur_slot();
	BkOp latest = op(5, JOURNAL_STEP_CALL, s, 1, NULL); /* reply lost */
	AgentBackup l[] = {bk("bk-1", slot_name(s, 1), NOW - 1000, AGENT_BACKUP_RUNNING)};
	BkInput in = base(l, 1);
	in.latest = &latest;
	Plan p = run(&in);
	assert_int_equal(p.n_actions, 1);
	assert_string_equal(p.actions[0].name, "settle-backup");
	assert_string_equal(arg(&p, 0, "outcome"), "handle");
	assert_string_equal(arg(&p, 0, "id"), "bk-1");
	assert_int_equal(count_actions(&p, "backup"), 0);
	plan_clear(&p);
	l[0].state = AGENT_BACKUP_OK; /* finished meanwhile */
	p = run(&in);
	assert_string_equal(arg(&p, 0, "outcome"), "done");
	plan_clear(&p);
}

static void plan__open_intent_not_listed__resumed_same_name(void **state) /* S6 */
{
	(void)state;
	int64_t s = cur_slot();
	BkOp latest = op(5, JOURNAL_STEP_INTENT, s - 1, 1, NULL); /* crash before the call */
	BkInput in = base(NULL, 0);
	in.latest = &latest;
	Plan p = run(&in);
	assert_int_equal(p.n_actions, 1);
	assert_string_equal(p.actions[0].name, "backup");
	assert_string_equal(arg(&p, 0, "name"), slot_name(s - 1, 1)); /* the op's, not now's */
	plan_clear(&p);
	in.agent_ready = false; /* only with a ready agent */
	p = run(&in);
	assert_int_equal(p.n_actions, 0);
}

static void plan__failed_within_backoff__waits(void **state) /* B4 */
{
	(void)state;
	int64_t s = cur_slot();
	BkOp latest = op(5, JOURNAL_STEP_FAILED, s, 1, "bk-1");
	AgentBackup l[] = {bk("bk-1", slot_name(s, 1), NOW - 2000, AGENT_BACKUP_FAILED)};
	BkInput in = base(l, 1);
	in.latest = &latest;
	in.consecutive_failures = 1;
	in.last_failure_ms = NOW - 1000;
	Plan p = run(&in);
	assert_int_equal(p.n_actions, 0);
	assert_true(p.requeue_after_ms > 0);
	assert_cond(&p, COND_TRUE, "Scheduled");
	/* after the backoff: attempt 2 under its own name */
	in.last_failure_ms = NOW - HOUR;
	p = run(&in);
	assert_int_equal(count_actions(&p, "backup"), 1);
	assert_string_equal(arg(&p, 0, "name"), slot_name(s, 2));
	assert_int_equal(json_integer_value(json_object_get(p.actions[0].args, "attempt")), 2);
	plan_clear(&p);
}

static void plan__three_failures__unhealthy_still_retries(void **state)
{
	(void)state;
	int64_t s = cur_slot();
	BkOp latest = op(7, JOURNAL_STEP_FAILED, s, 3, "bk-3");
	AgentBackup l[] = {bk("bk-3", slot_name(s, 3), NOW - 2000, AGENT_BACKUP_FAILED)};
	BkInput in = base(l, 1);
	in.latest = &latest;
	in.consecutive_failures = 3;
	in.last_failure_ms = NOW - HOUR;
	Plan p = run(&in);
	assert_cond(&p, COND_FALSE, "BackupFailing");
	assert_int_equal(count_actions(&p, "backup"), 1);
	assert_string_equal(arg(&p, 0, "name"), slot_name(s, 4));
	plan_clear(&p);
	in.consecutive_failures = 2;
	p = run(&in);
	assert_int_equal(cond(&p)->status, COND_TRUE);
	plan_clear(&p);
}

static void plan__first_backup_within_grace__waits(void **state) /* B3 */
{
	(void)state;
	BkInput in = base(NULL, 0);
	in.agent_since_ms = NOW - 1000;
	Plan p = run(&in);
	assert_int_equal(p.n_actions, 0);
	assert_int_equal(p.requeue_after_ms, 59000);
}

static void plan__agent_not_ready__no_new_backup(void **state) /* B0 */
{
	(void)state;
	BkInput in = base(NULL, 0);
	in.agent_ready = false;
	Plan p = run(&in);
	assert_int_equal(p.n_actions, 0);
	in = base(NULL, 0);
	in.every_ms = 0; /* every: null */
	p = run(&in);
	assert_int_equal(p.n_actions, 0);
	assert_cond(&p, COND_TRUE, "NotConfigured");
}

static void plan__retention__keeps_newest_keep(void **state) /* P2 */
{
	(void)state;
	int64_t s = cur_slot();
	AgentBackup l[] = {
	    bk("bk-a", slot_name(s - 3, 1), NOW - 18 * HOUR, AGENT_BACKUP_OK),
	    bk("bk-b", slot_name(s - 2, 1), NOW - 12 * HOUR, AGENT_BACKUP_OK),
	    bk("bk-c", slot_name(s, 1), NOW - 1000, AGENT_BACKUP_OK),
	    bk("bk-d", slot_name(s - 1, 1), NOW - 6 * HOUR, AGENT_BACKUP_OK),
	    bk("bk-m", "manual", NOW - 30 * HOUR, AGENT_BACKUP_OK), /* not ours */
	};
	BkInput in = base(l, 5);
	Plan p = run(&in);
	assert_int_equal(count_actions(&p, "backup"), 0);
	assert_int_equal(count_actions(&p, "backup-delete"), 2);
	assert_string_equal(arg(&p, 0, "id"), "bk-a");
	assert_string_equal(arg(&p, 1, "id"), "bk-b");
	plan_clear(&p);
	in.keep = 0; /* 0 keeps everything */
	p = run(&in);
	assert_int_equal(count_actions(&p, "backup-delete"), 0);
	in.keep = 1;
	p = run(&in);
	assert_int_equal(count_actions(&p, "backup-delete"), 3); /* never bk-c, the newest */
	for (size_t i = 0; i < p.n_actions; i++)
		assert_string_not_equal(arg(&p, i, "id"), "bk-c");
	plan_clear(&p);
}

static void plan__newest_failed__no_prune(void **state) /* P1 */
{
	(void)state;
	int64_t s = cur_slot();
	AgentBackup l[] = {
	    bk("bk-a", slot_name(s - 3, 1), NOW - 18 * HOUR, AGENT_BACKUP_OK),
	    bk("bk-b", slot_name(s - 2, 1), NOW - 12 * HOUR, AGENT_BACKUP_OK),
	    bk("bk-d", slot_name(s - 1, 1), NOW - 6 * HOUR, AGENT_BACKUP_OK),
	    bk("bk-f", slot_name(s, 1), NOW - 1000, AGENT_BACKUP_FAILED),
	};
	BkOp latest = op(9, JOURNAL_STEP_FAILED, s, 1, "bk-f");
	BkInput in = base(l, 4);
	in.latest = &latest;
	in.consecutive_failures = 1;
	in.last_failure_ms = NOW - 500;
	Plan p = run(&in);
	assert_int_equal(count_actions(&p, "backup-delete"), 0);
}

static void plan__failed_older_than_newest_ok__pruned(void **state) /* P2 */
{
	(void)state;
	int64_t s = cur_slot();
	AgentBackup l[] = {
	    bk("bk-f", slot_name(s - 1, 1), NOW - 7 * HOUR, AGENT_BACKUP_FAILED),
	    bk("bk-c", slot_name(s, 1), NOW - 1000, AGENT_BACKUP_OK),
	};
	BkInput in = base(l, 2);
	Plan p = run(&in);
	assert_int_equal(count_actions(&p, "backup-delete"), 1);
	assert_string_equal(arg(&p, 0, "id"), "bk-f");
	plan_clear(&p);
}

static void plan__restore_running__no_prune_no_backup(void **state) /* R3, P0 */
{
	(void)state;
	int64_t s = cur_slot();
	AgentBackup l[] = {
	    bk("bk-a", slot_name(s - 3, 1), NOW - 18 * HOUR, AGENT_BACKUP_OK),
	    bk("bk-b", slot_name(s - 2, 1), NOW - 12 * HOUR, AGENT_BACKUP_OK),
	    bk("bk-d", slot_name(s - 1, 1), NOW - 6 * HOUR, AGENT_BACKUP_OK),
	};
	BkOp ro = {.id = 3, .step = JOURNAL_STEP_HANDLE, .attempt = 1};
	snprintf(ro.handle, sizeof ro.handle, "bk-a");
	BkInput in = base(l, 3);
	in.restore_backup = "bk-a";
	in.restore_request = REQ;
	in.restore = &ro;
	in.restore_status = (AgentRestoreStatus){.state = AGENT_RESTORE_RUNNING, .id = "bk-a"};
	Plan p = run(&in);
	assert_int_equal(p.n_actions, 0);
	assert_cond(&p, COND_FALSE, "Restoring");
	assert_true(p.requeue_after_ms > 0);
}

static void plan__restore_requested__restores_once(void **state) /* R7 */
{
	(void)state;
	int64_t s = cur_slot();
	AgentBackup l[] = {bk("bk-c", slot_name(s, 1), NOW - 1000, AGENT_BACKUP_OK)};
	BkInput in = base(l, 1);
	in.restore_backup = "bk-c";
	in.restore_request = REQ;
	Plan p = run(&in);
	assert_int_equal(p.n_actions, 1);
	assert_string_equal(p.actions[0].name, "restore");
	assert_true(p.actions[0].mutating);
	assert_string_equal(arg(&p, 0, "backup"), "bk-c");
	assert_string_equal(arg(&p, 0, "request"), REQ);
	assert_cond(&p, COND_FALSE, "Restoring");
	plan_clear(&p);
}

static void plan__restore_done__never_again(void **state) /* R1 */
{
	(void)state;
	int64_t s = cur_slot();
	AgentBackup l[] = {bk("bk-c", slot_name(s, 1), NOW - 1000, AGENT_BACKUP_OK)};
	BkOp ro = {.id = 3, .step = JOURNAL_STEP_DONE, .attempt = 1};
	BkInput in = base(l, 1);
	in.restore_backup = "bk-c";
	in.restore_request = REQ;
	in.restore = &ro;
	/* even when the agent forgot (a restart) or shows an old restore */
	Plan p = run(&in);
	assert_int_equal(count_actions(&p, "restore"), 0);
	assert_int_equal(cond(&p)->status, COND_TRUE);
	in.restore_status = (AgentRestoreStatus){.state = AGENT_RESTORE_DONE, .id = "bk-c"};
	p = run(&in);
	assert_int_equal(count_actions(&p, "restore"), 0);
	assert_int_equal(count_actions(&p, "settle-restore"), 0);
}

static void plan__restore_finished__settled(void **state) /* R4 */
{
	(void)state;
	AgentBackup l[] = {bk("bk-c", "zlh-3f2a9c1e-1", NOW - HOUR, AGENT_BACKUP_OK)};
	BkOp ro = {.id = 3, .step = JOURNAL_STEP_HANDLE, .attempt = 1};
	BkInput in = base(l, 1);
	in.restore_backup = "bk-c";
	in.restore_request = REQ;
	in.restore = &ro;
	in.restore_status = (AgentRestoreStatus){.state = AGENT_RESTORE_DONE, .id = "bk-c"};
	Plan p = run(&in);
	assert_int_equal(p.n_actions, 1);
	assert_string_equal(p.actions[0].name, "settle-restore");
	assert_string_equal(arg(&p, 0, "outcome"), "done");
	plan_clear(&p);
	in.restore_status.state = AGENT_RESTORE_FAILED;
	p = run(&in);
	assert_string_equal(arg(&p, 0, "outcome"), "failed");
	plan_clear(&p);
}

static void plan__restore_intent_not_landed__resumed(void **state) /* R5 */
{
	(void)state;
	AgentBackup l[] = {bk("bk-c", "zlh-3f2a9c1e-1", NOW - HOUR, AGENT_BACKUP_OK)};
	BkOp ro = {.id = 3, .step = JOURNAL_STEP_INTENT, .attempt = 1};
	BkInput in = base(l, 1);
	in.restore_backup = "bk-c";
	in.restore_request = REQ;
	in.restore = &ro;
	Plan p = run(&in);
	assert_int_equal(count_actions(&p, "restore"), 1);
	plan_clear(&p);
}

static void plan__restore_accepted_then_forgotten__failed_not_repeated(void **state) /* R6 */
{
	(void)state;
	AgentBackup l[] = {bk("bk-c", "zlh-3f2a9c1e-1", NOW - HOUR, AGENT_BACKUP_OK)};
	BkOp ro = {.id = 3, .step = JOURNAL_STEP_HANDLE, .attempt = 1};
	BkInput in = base(l, 1);
	in.restore_backup = "bk-c";
	in.restore_request = REQ;
	in.restore = &ro;
	Plan p = run(&in);
	assert_int_equal(count_actions(&p, "restore"), 0);
	assert_int_equal(p.n_actions, 1);
	assert_string_equal(arg(&p, 0, "outcome"), "failed");
	plan_clear(&p);
	ro.step = JOURNAL_STEP_FAILED; /* R2 */
	p = run(&in);
	assert_cond(&p, COND_FALSE, "RestoreFailed");
	assert_int_equal(count_actions(&p, "restore"), 0);
}

static void plan__restore_unknown_backup__backup_not_found(void **state) /* R10, R9, R8 */
{
	(void)state;
	AgentBackup l[] = {bk("bk-c", "zlh-3f2a9c1e-1", NOW - HOUR, AGENT_BACKUP_OK)};
	BkInput in = base(l, 1);
	in.restore_backup = "bk-nope";
	in.restore_request = REQ;
	Plan p = run(&in);
	assert_int_equal(count_actions(&p, "restore"), 0);
	assert_cond(&p, COND_FALSE, "BackupNotFound");
	l[0].state = AGENT_BACKUP_FAILED;
	in.restore_backup = "bk-c";
	p = run(&in);
	assert_int_equal(count_actions(&p, "restore"), 0);
	assert_cond(&p, COND_FALSE, "BackupFailed");
	plan_clear(&p);
	l[0].state = AGENT_BACKUP_RUNNING;
	p = run(&in);
	assert_int_equal(p.n_actions, 0);
	assert_cond(&p, COND_FALSE, "WaitingForBackup");
}

static void plan__restore_waits_for_running_backup(void **state) /* R7 not yet */
{
	(void)state;
	int64_t s = cur_slot();
	AgentBackup l[] = {bk("bk-a", slot_name(s - 1, 1), NOW - 7 * HOUR, AGENT_BACKUP_OK),
	                   bk("bk-c", slot_name(s, 1), NOW - 1000, AGENT_BACKUP_RUNNING)};
	BkOp latest = op(5, JOURNAL_STEP_HANDLE, s, 1, "bk-c");
	BkInput in = base(l, 2);
	in.latest = &latest;
	in.restore_backup = "bk-a";
	in.restore_request = REQ;
	Plan p = run(&in);
	assert_int_equal(p.n_actions, 0);
	assert_cond(&p, COND_FALSE, "Restoring");
}

static void plan__restore_target_never_pruned(void **state) /* P2 */
{
	(void)state;
	int64_t s = cur_slot();
	AgentBackup l[] = {
	    bk("bk-a", slot_name(s - 3, 1), NOW - 18 * HOUR, AGENT_BACKUP_OK),
	    bk("bk-b", slot_name(s - 2, 1), NOW - 12 * HOUR, AGENT_BACKUP_OK),
	    bk("bk-c", slot_name(s, 1), NOW - 1000, AGENT_BACKUP_OK),
	};
	BkOp ro = {.id = 3, .step = JOURNAL_STEP_DONE, .attempt = 1};
	BkInput in = base(l, 3);
	in.keep = 1;
	in.restore_backup = "bk-a";
	in.restore_request = REQ;
	in.restore = &ro;
	Plan p = run(&in);
	assert_int_equal(count_actions(&p, "backup-delete"), 1);
	assert_string_equal(arg(&p, 0, "id"), "bk-b");
	plan_clear(&p);
}

static void plan__open_delete__settled_or_superseded(void **state) /* D1, D2 */
{
	(void)state;
	int64_t s = cur_slot();
	AgentBackup l[] = {bk("bk-c", slot_name(s, 1), NOW - 1000, AGENT_BACKUP_OK),
	                   bk("bk-d", slot_name(s - 1, 1), NOW - 6 * HOUR, AGENT_BACKUP_OK)};
	BkOp dels[2] = {{.id = 11, .step = JOURNAL_STEP_CALL, .target = "bk-gone"},
	                {.id = 12, .step = JOURNAL_STEP_INTENT, .target = "bk-d"}};
	BkInput in = base(l, 2);
	in.deletes = dels;
	in.n_deletes = 2;
	Plan p = run(&in);
	assert_int_equal(count_actions(&p, "settle-delete"), 2);
	assert_string_equal(arg(&p, 0, "outcome"), "done");
	assert_string_equal(arg(&p, 1, "outcome"), "failed"); /* keep 2 keeps bk-d */
	plan_clear(&p);
	in.keep = 1; /* now retention deletes bk-d: the delete resumes */
	p = run(&in);
	assert_int_equal(count_actions(&p, "settle-delete"), 1);
	assert_int_equal(count_actions(&p, "backup-delete"), 1);
	plan_clear(&p);
}

static void plan__deleting__final_backup_then_done(void **state) /* F3, F1 */
{
	(void)state;
	BkInput in = base(NULL, 0);
	in.deleting = true;
	in.agent_ready = false; /* the final backup does not need /ready */
	Plan p = run(&in);
	assert_int_equal(p.n_actions, 1);
	assert_string_equal(p.actions[0].name, "backup");
	assert_string_equal(arg(&p, 0, "name"), "zlh-3f2a9c1e-final");
	assert_true(json_is_true(json_object_get(p.actions[0].args, "final")));
	assert_cond(&p, COND_FALSE, "FinalBackup");
	plan_clear(&p);

	BkOp fin = op(20, JOURNAL_STEP_HANDLE, BACKUP_SLOT_FINAL, 1, "bk-f");
	AgentBackup l[] = {bk("bk-f", "zlh-3f2a9c1e-final", NOW - 10, AGENT_BACKUP_RUNNING)};
	in = base(l, 1);
	in.deleting = true;
	in.latest = &fin;
	in.final = &fin;
	p = run(&in);
	assert_int_equal(p.n_actions, 0); /* waits: the finalizer stays */
	assert_true(p.requeue_after_ms > 0);
	l[0].state = AGENT_BACKUP_OK;
	p = run(&in);
	assert_int_equal(count_actions(&p, "settle-backup"), 1);
	plan_clear(&p);
	fin.step = JOURNAL_STEP_DONE;
	p = run(&in);
	assert_int_equal(p.n_actions, 0);
	assert_int_equal(p.requeue_after_ms, 0);
	assert_cond(&p, COND_TRUE, "FinalBackupDone");
}

static void plan__deleting__running_backup_first(void **state) /* S1 in finalize */
{
	(void)state;
	int64_t s = cur_slot();
	BkOp latest = op(5, JOURNAL_STEP_HANDLE, s, 1, "bk-1");
	AgentBackup l[] = {bk("bk-1", slot_name(s, 1), NOW - 10, AGENT_BACKUP_RUNNING)};
	BkInput in = base(l, 1);
	in.deleting = true;
	in.latest = &latest;
	Plan p = run(&in);
	assert_int_equal(p.n_actions, 0);
	assert_true(p.requeue_after_ms > 0);
}

static void plan__deleting__final_failed_retried_after_backoff(void **state) /* F2 */
{
	(void)state;
	BkOp fin = op(20, JOURNAL_STEP_FAILED, BACKUP_SLOT_FINAL, 1, "bk-f");
	fin.completed_ms = NOW - 100;
	BkInput in = base(NULL, 0);
	in.deleting = true;
	in.latest = &fin;
	in.final = &fin;
	in.consecutive_failures = 1;
	in.last_failure_ms = fin.completed_ms;
	Plan p = run(&in);
	assert_int_equal(p.n_actions, 0);
	assert_cond(&p, COND_FALSE, "FinalBackupFailed");
	fin.completed_ms = NOW - HOUR;
	p = run(&in);
	assert_int_equal(p.n_actions, 1);
	assert_string_equal(arg(&p, 0, "name"), "zlh-3f2a9c1e-final-2");
	plan_clear(&p);
}

static void plan__deleting__no_before_delete_or_not_running__done(void **state) /* N2, F0, F4 */
{
	(void)state;
	BkInput in = base(NULL, 0);
	in.deleting = true;
	in.before_delete = false;
	Plan p = run(&in);
	assert_int_equal(p.n_actions, 0);
	assert_cond(&p, COND_TRUE, "Deleting");
	in.before_delete = true;
	in.observed = false;
	in.container_running = false;
	p = run(&in);
	assert_int_equal(p.n_actions, 0);
	assert_int_equal(p.requeue_after_ms, 0);
	assert_cond(&p, COND_TRUE, "FinalBackupSkipped");
	in.container_running = true; /* running, agent silent: wait */
	p = run(&in);
	assert_int_equal(p.n_actions, 0);
	assert_true(p.requeue_after_ms > 0);
	assert_cond(&p, COND_FALSE, "AgentUnreachable");
}

static void plan__bad_input__einval(void **state)
{
	(void)state;
	Plan p;
	memset(&p, 0, sizeof p);
	BkInput in = base(NULL, 3);
	assert_int_equal(recon_backup_plan_input(&in, &p), -EINVAL);
	in = base(NULL, 0);
	in.uid = NULL;
	assert_int_equal(recon_backup_plan_input(&in, &p), -EINVAL);
	assert_int_equal(recon_backup_plan_input(NULL, &p), -EINVAL);
}

static void op_from_journal__payload_read(void **state)
{
	(void)state;
	JournalOp j = {.id = 4, .step = JOURNAL_STEP_HANDLE, .attempt = 2, .completed_ms = 0};
	j.payload = json_pack("{s:s, s:i, s:b}", "name", "zlh-3f2a9c1e-7-2", "slot", 7, "final", 0);
	j.handle = strdup("bk-9");
	BkOp o;
	recon_backup_op_from_journal(&j, &o);
	assert_int_equal(o.id, 4);
	assert_int_equal(o.slot, 7);
	assert_int_equal(o.attempt, 2);
	assert_false(o.final);
	assert_string_equal(o.name, "zlh-3f2a9c1e-7-2");
	assert_string_equal(o.handle, "bk-9");
	json_decref(j.payload);
	free(j.handle);
}

static void recon__table(void **state)
{
	(void)state;
	assert_string_equal(recon_backup.name, "backup");
	assert_int_equal(recon_backup.order, 30);
	assert_true(recon_backup.uses_finalizer);
	assert_int_equal(recon_backup.conditions[0], COND_BACKUPS_HEALTHY);
	assert_int_equal(recon_backup.conditions[1], _COND_TYPE_MAX);
	assert_non_null(recon_backup.plan);
	assert_non_null(recon_backup.finalize);
	assert_non_null(recon_backup.act);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(slots__jitter_stable_and_spread),
	    cmocka_unit_test(names__deterministic_and_ours),
	    cmocka_unit_test(plan__devserver__not_applicable),
	    cmocka_unit_test(plan__stopped__no_backup_true),
	    cmocka_unit_test(plan__agent_unreachable__decides_nothing),
	    cmocka_unit_test(plan__no_backup_yet__creates_slot_name),
	    cmocka_unit_test(plan__slot_already_listed__no_create),
	    cmocka_unit_test(plan__previous_slot_only__creates),
	    cmocka_unit_test(plan__foreign_backup_in_slot__ignored),
	    cmocka_unit_test(plan__backup_running__polls_one_in_flight),
	    cmocka_unit_test(plan__backup_ok__settled_done),
	    cmocka_unit_test(plan__backup_failed_or_vanished__settled_failed),
	    cmocka_unit_test(plan__lost_reply_listed__adopted_not_created),
	    cmocka_unit_test(plan__open_intent_not_listed__resumed_same_name),
	    cmocka_unit_test(plan__failed_within_backoff__waits),
	    cmocka_unit_test(plan__three_failures__unhealthy_still_retries),
	    cmocka_unit_test(plan__first_backup_within_grace__waits),
	    cmocka_unit_test(plan__agent_not_ready__no_new_backup),
	    cmocka_unit_test(plan__retention__keeps_newest_keep),
	    cmocka_unit_test(plan__newest_failed__no_prune),
	    cmocka_unit_test(plan__failed_older_than_newest_ok__pruned),
	    cmocka_unit_test(plan__restore_running__no_prune_no_backup),
	    cmocka_unit_test(plan__restore_requested__restores_once),
	    cmocka_unit_test(plan__restore_done__never_again),
	    cmocka_unit_test(plan__restore_finished__settled),
	    cmocka_unit_test(plan__restore_intent_not_landed__resumed),
	    cmocka_unit_test(plan__restore_accepted_then_forgotten__failed_not_repeated),
	    cmocka_unit_test(plan__restore_unknown_backup__backup_not_found),
	    cmocka_unit_test(plan__restore_waits_for_running_backup),
	    cmocka_unit_test(plan__restore_target_never_pruned),
	    cmocka_unit_test(plan__open_delete__settled_or_superseded),
	    cmocka_unit_test(plan__deleting__final_backup_then_done),
	    cmocka_unit_test(plan__deleting__running_backup_first),
	    cmocka_unit_test(plan__deleting__final_failed_retried_after_backoff),
	    cmocka_unit_test(plan__deleting__no_before_delete_or_not_running__done),
	    cmocka_unit_test(plan__bad_input__einval),
	    cmocka_unit_test(op_from_journal__payload_read),
	    cmocka_unit_test(recon__table),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
