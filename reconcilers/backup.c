/* backup.c - the backup reconciler (see backup.h).
 *
 * DECISION TABLE of recon_backup_plan_input(). Rows are checked top down;
 * the S rows settle or resume the latest backup operation, the R rows the
 * restore request, the D rows open deletes, then B (schedule) and P
 * (retention). Each row id is named in test/unit/test-backup-plan.c.
 *
 * Words: "listed" = GET /backups of the server's agent; "ours" = a listed
 * backup named zlh-<uid8>-*; "op" = the latest "backup" operation of the
 * journal; "open" = step intent, call or handle; "ro" = the operation of
 * spec.restore.requestId; "slot" = floor((now - jitter(uid)) / every).
 *
 * id   when                                        actions                 BackupsHealthy / requeue
 * ---- ------------------------------------------- ----------------------- -----------------------
 * N1   not a GameServer                            none                    T NotApplicable
 * N2   deleting, beforeDelete false (or done: F1)  none                    T Deleting
 * W1   not observed: container not running         none                    T Stopped (power
 *                                                                          stopped) | U Waiting
 *                                                                          ForContainer / wait
 * W2   not observed: the agent did not answer      none                    U AgentUnreachable / wait
 * S1   op open, handle, listed running             none (in flight)        (below) / poll
 * S2   op open, handle, listed ok                  SETTLE-BACKUP done      T BackedUp
 * S3   op open, handle, listed failed              SETTLE-BACKUP failed    (below)
 * S4   op open, handle, not listed                 SETTLE-BACKUP failed    (below)
 * S5   op open, no handle, listed by op's name     SETTLE-BACKUP (adopt:   (below)
 *      (a lost reply or a crash after the call)    handle/done/failed)
 * S6   op open, no handle, name not listed         BACKUP (resume the      (below)
 *      (the call never landed), agent ready        same op and name)
 * R1   ro done                                     none (never again)      (below)
 * R2   ro failed                                   none                    F RestoreFailed
 * R3   ro open, /status restore of its backup      none                    F Restoring / poll
 *      running
 * R4   ro open, /status restore done | failed      SETTLE-RESTORE          F Restoring
 * R5   ro open at intent/call, /status shows       RESTORE (resume)        F Restoring
 *      no restore of its backup (never landed)
 * R6   ro at handle, /status forgot it             SETTLE-RESTORE failed   F RestoreFailed
 *      (never restore twice)
 * R7   no ro, backup listed ok, agent ready,       RESTORE                 F Restoring
 *      nothing in flight
 * R8   no ro, backup listed running                none                    F WaitingForBackup / poll
 * R9   no ro, backup listed failed                 none                    F BackupFailed
 * R10  no ro, backup not listed                    none (nothing done)     F BackupNotFound
 * D1   open delete, its backup not listed          SETTLE-DELETE done      (below)
 * D2   open delete, listed, not pruned by P now    SETTLE-DELETE failed    (below)
 * F0   deleting, container not running (stopped,   none: finalizer done    T FinalBackupSkipped
 *      never made, gone): nothing to back up
 * F4   deleting, container runs, agent unreachable none                    F AgentUnreachable/wait
 * F1   deleting, final op done                     none: finalizer done    T FinalBackupDone
 * F2   deleting, final failed, within backoff      none                    F FinalBackupFailed/wait
 * F3   deleting, no final op or retry due          BACKUP(final)           F FinalBackup
 * B0   every null | not agent ready | restoring    none                    (below)
 * B1   a backup is in flight (listed running)      none                    T BackingUp / poll
 * B2   ours ok/running created in this slot, or    none                    T BackedUp / next slot
 *      listed by this slot's name
 * B3   no ok backup of ours yet, agent ready for   none                    T Scheduled / rest of
 *      less than the first grace                                           grace
 * B4   the last attempt failed, backoff not over   none                    (below) / rest
 * B5   due                                         BACKUP(slot name)       T BackingUp
 * P0   keep 0, restoring, deleting, in flight      none                    -
 * P1   newest of ours failed                       none (no rotation of    -
 *                                                  good for bad)
 * P2   ours ok beyond the newest `keep` (never     BACKUP-DELETE each      -
 *      the newest; never the backup a pending
 *      restore names); failed older than the
 *      newest ok
 *
 * BackupsHealthy: False BackupFailing once consecutive failures reach
 * fail_threshold (3) - it wins over every True above; otherwise the row's. */
#include "backup.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crash.h"
#include "db/backups.h"
#include "log.h"
#include "util.h"

void recon_backup_settings_init(BkSettings *s)
{
	*s = (BkSettings){
	    .fail_threshold = 3,
	    .backoff_max_ms = 3600 * 1000,
	    .wait_requeue_ms = 5000,
	};
}

/* --- pure helpers -------------------------------------------------------------------------- */

static int64_t clamp64(int64_t v, int64_t lo, int64_t hi)
{
	return v < lo ? lo : v > hi ? hi : v;
}

int64_t recon_backup_jitter(const char *uid, int64_t every_ms)
{
	if (!uid || every_ms <= 0)
		return 0;
	uint64_t h = 1469598103934665603ULL;
	for (const char *p = uid; *p; p++) {
		h ^= (unsigned char)*p;
		h *= 1099511628211ULL;
	}
	return (int64_t)(h % (uint64_t)every_ms);
}

static int64_t floordiv(int64_t a, int64_t b)
{
	int64_t q = a / b;
	return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

int64_t recon_backup_slot(const char *uid, int64_t every_ms, int64_t now_ms)
{
	if (every_ms <= 0)
		return 0;
	return floordiv(now_ms - recon_backup_jitter(uid, every_ms), every_ms);
}

int64_t recon_backup_slot_start(const char *uid, int64_t every_ms, int64_t slot)
{
	return slot * every_ms + recon_backup_jitter(uid, every_ms);
}

int recon_backup_name(const char *uid, int64_t slot, int64_t attempt, char *buf, size_t n)
{
	if (!uid || strlen(uid) < 8 || attempt < 1 || (slot < 0 && slot != BACKUP_SLOT_FINAL))
		return -EINVAL;
	char tmp[AGENTAPI_BACKUP_NAME_MAX];
	int l;
	if (slot == BACKUP_SLOT_FINAL)
		l = snprintf(tmp, sizeof tmp, "zlh-%.8s-final", uid);
	else
		l = snprintf(tmp, sizeof tmp, "zlh-%.8s-%" PRId64, uid, slot);
	if (attempt > 1)
		l += snprintf(tmp + l, sizeof tmp - (size_t)l, "-%" PRId64, attempt);
	if (l < 0 || (size_t)l >= n)
		return -ENOBUFS;
	memcpy(buf, tmp, (size_t)l + 1);
	return l;
}

bool recon_backup_is_ours(const char *uid, const char *name)
{
	if (!uid || !name || strlen(uid) < 8)
		return false;
	char prefix[16];
	snprintf(prefix, sizeof prefix, "zlh-%.8s-", uid);
	return str_startswith(name, prefix);
}

void recon_backup_op_from_journal(const JournalOp *op, BkOp *ret)
{
	*ret = (BkOp){.id = op->id, .step = op->step, .attempt = op->attempt};
	json_t *p = op->payload;
	const char *name = json_string_value(json_object_get(p, "name"));
	const char *target = json_string_value(json_object_get(p, "backup"));
	if (!target)
		target = json_string_value(json_object_get(p, "id"));
	json_t *slot = json_object_get(p, "slot");
	ret->slot = json_is_integer(slot) ? json_integer_value(slot) : 0;
	ret->final = json_is_true(json_object_get(p, "final"));
	snprintf(ret->name, sizeof ret->name, "%s", name ? name : "");
	snprintf(ret->target, sizeof ret->target, "%s", target ? target : "");
	snprintf(ret->handle, sizeof ret->handle, "%s", op->handle ? op->handle : "");
	snprintf(ret->error, sizeof ret->error, "%s", op->error ? op->error : "");
	ret->completed_ms = op->completed_ms;
}

/* --- the plan ------------------------------------------------------------------------------------ */

static bool op_open(const BkOp *op)
{
	return op && op->id > 0 && journal_step_is_open(op->step);
}

static bool op_is(const BkOp *op, JournalStep s)
{
	return op && op->id > 0 && op->step == s;
}

typedef struct Ctx {
	const BkInput *in;
	Plan *plan;
	int64_t every, poll, backoff_base, grace;
	/* what the condition says when no row overrides it */
	CondStatus st;
	char reason[64];
	char msg[400];
	bool failing; /* consecutive failures >= threshold */
} Ctx;

static void say(Ctx *c, CondStatus st, const char *reason, const char *fmt, ...) _printf_(4, 5);
static void say(Ctx *c, CondStatus st, const char *reason, const char *fmt, ...)
{
	c->st = st;
	snprintf(c->reason, sizeof c->reason, "%s", reason);
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(c->msg, sizeof c->msg, fmt, ap);
	va_end(ap);
}

static json_t *settle_backup_args(const BkOp *op, const char *outcome, const AgentBackup *b,
                                  const char *error)
{
	json_t *a = json_pack("{s:I, s:s, s:s, s:b}", "op", (json_int_t)op->id, "outcome", outcome,
	                      "name", op->name, "final", op->final);
	if (a && b) {
		json_object_set_new(a, "id", json_string(b->id));
		json_object_set_new(a, "createdMs", json_integer(b->created_ms));
		json_object_set_new(a, "bytes", json_integer(b->bytes));
	} else if (a && op->handle[0]) {
		json_object_set_new(a, "id", json_string(op->handle));
	}
	if (a && error)
		json_object_set_new(a, "error", json_string(error));
	return a;
}

static json_t *settle_args(int64_t op_id, bool done, const char *error)
{
	json_t *a =
	    json_pack("{s:I, s:s}", "op", (json_int_t)op_id, "outcome", done ? "done" : "failed");
	if (a && error)
		json_object_set_new(a, "error", json_string(error));
	return a;
}

static int plan_backup(Ctx *c, int64_t slot, int64_t attempt, const char *name)
{
	const char *uid = c->in->uid;
	char buf[AGENTAPI_BACKUP_NAME_MAX];
	if (!name) {
		int r = recon_backup_name(uid, slot, attempt, buf, sizeof buf);
		if (r < 0)
			return r;
		name = buf;
	}
	return plan_action(c->plan, "backup", "agent", NULL, true,
	                   json_pack("{s:s, s:I, s:I, s:b}", "name", name, "slot", (json_int_t)slot,
	                             "attempt", (json_int_t)attempt, "final",
	                             slot == BACKUP_SLOT_FINAL),
	                   "back up the world as %s", name);
}

/* S rows on the latest backup op. *in_flight: a backup runs or is being
 * made; *acted: an action was planned. */
static int settle_latest(Ctx *c, bool *in_flight, bool *acted)
{
	const BkInput *in = c->in;
	const BkOp *op = in->latest;
	int r = 0;
	*in_flight = false;
	*acted = false;
	if (!op_open(op))
		return 0;
	*in_flight = true;
	const AgentBackup *b = op->handle[0]
	                           ? agentapi_backups_find_id(in->listed, in->n_listed, op->handle)
	                           : agentapi_backups_find_name(in->listed, in->n_listed, op->name);
	if (op->handle[0]) {
		if (b && b->state == AGENT_BACKUP_RUNNING) { /* S1 */
			plan_requeue_after(c->plan, c->poll);
			say(c, COND_TRUE, "BackingUp", "backup %s (%s) running", op->name, b->id);
			return 0;
		}
		*acted = true;
		if (b && b->state == AGENT_BACKUP_OK) /* S2 */
			r = plan_action(c->plan, "settle-backup", NULL, NULL, false,
			                settle_backup_args(op, "done", b, NULL),
			                "record: backup %s (%s) succeeded", op->name, b->id);
		else /* S3, S4 */
			r = plan_action(
			    c->plan, "settle-backup", NULL, NULL, false,
			    settle_backup_args(op, "failed", b,
			                       b ? "the agent reports the backup failed"
			                         : "the backup vanished from the agent"),
			    "record: backup %s failed", op->name);
		return r;
	}
	if (b) { /* S5: adopt what the call made */
		*acted = true;
		const char *outcome = b->state == AGENT_BACKUP_OK       ? "done"
		                      : b->state == AGENT_BACKUP_FAILED ? "failed"
		                                                        : "handle";
		return plan_action(c->plan, "settle-backup", NULL, NULL, false,
		                   settle_backup_args(op, outcome, b,
		                                      b->state == AGENT_BACKUP_FAILED
		                                          ? "the agent reports the backup failed"
		                                          : NULL),
		                   "record: adopt backup %s (%s, %s)", op->name, b->id,
		                   agentapi_backup_state_to_string(b->state));
	}
	/* S6: the listing shows no such backup: the call never landed. */
	if (!in->agent_ready && !in->deleting) {
		plan_requeue_after(c->plan, in->settings.wait_requeue_ms);
		say(c, COND_UNKNOWN, "WaitingForAgent",
		    "backup %s pending until the agent is ready", op->name);
		return 0;
	}
	*acted = true;
	return plan_backup(c, op->final ? BACKUP_SLOT_FINAL : op->slot, op->attempt, op->name);
}

/* Retention: the ids to delete into out (at most max). */
static size_t prune_set(const BkInput *in, const AgentBackup **out, size_t max)
{
	if (in->keep <= 0 || !in->uid)
		return 0;
	const AgentBackup *newest = NULL, *newest_ok = NULL;
	size_t n_ok = 0;
	for (size_t i = 0; i < in->n_listed; i++) {
		const AgentBackup *b = &in->listed[i];
		if (!recon_backup_is_ours(in->uid, b->name))
			continue;
		if (!newest || b->created_ms > newest->created_ms)
			newest = b;
		if (b->state == AGENT_BACKUP_OK) {
			n_ok++;
			if (!newest_ok || b->created_ms > newest_ok->created_ms)
				newest_ok = b;
		}
	}
	if (!newest || newest->state == AGENT_BACKUP_FAILED || !newest_ok) /* P1 */
		return 0;
	size_t n = 0;
	for (size_t i = 0; i < in->n_listed && n < max; i++) {
		const AgentBackup *b = &in->listed[i];
		if (!recon_backup_is_ours(in->uid, b->name) || b == newest_ok)
			continue;
		if (in->restore_backup && strcmp(in->restore_backup, b->id) == 0)
			continue; /* a restore names it */
		bool drop = false;
		if (b->state == AGENT_BACKUP_OK) {
			/* rank among ok backups, newest first (ties by id) */
			size_t newer = 0;
			for (size_t j = 0; j < in->n_listed; j++) {
				const AgentBackup *o = &in->listed[j];
				if (o != b && o->state == AGENT_BACKUP_OK &&
				    recon_backup_is_ours(in->uid, o->name) &&
				    (o->created_ms > b->created_ms ||
				     (o->created_ms == b->created_ms && strcmp(o->id, b->id) > 0)))
					newer++;
			}
			drop = newer >= (size_t)in->keep;
		} else if (b->state == AGENT_BACKUP_FAILED) {
			drop = b->created_ms < newest_ok->created_ms;
		}
		if (drop)
			out[n++] = b;
	}
	(void)n_ok;
	return n;
}

static const AgentBackup *newest_ours_ok(const BkInput *in)
{
	const AgentBackup *best = NULL;
	for (size_t i = 0; i < in->n_listed; i++) {
		const AgentBackup *b = &in->listed[i];
		if (b->state == AGENT_BACKUP_OK && recon_backup_is_ours(in->uid, b->name) &&
		    (!best || b->created_ms > best->created_ms))
			best = b;
	}
	return best;
}

static int64_t backoff_ms(const Ctx *c, int failures)
{
	int64_t d = c->backoff_base;
	for (int i = 1; i < failures && d < c->in->settings.backoff_max_ms; i++)
		d *= 2;
	int64_t cap = c->in->settings.backoff_max_ms;
	if (c->every > 0 && c->every < cap)
		cap = c->every;
	return d < cap ? d : cap;
}

static void last_backup_text(const BkInput *in, char *buf, size_t n)
{
	const AgentBackup *b = newest_ours_ok(in);
	if (!b) {
		snprintf(buf, n, "no backup yet");
		return;
	}
	char ts[40];
	time_format_rfc3339(b->created_ms, ts, sizeof ts);
	snprintf(buf, n, "last backup %s at %s (%" PRId64 " bytes)", b->id, ts, b->bytes);
}

static int finalize_rows(Ctx *c)
{
	const BkInput *in = c->in;
	Plan *plan = c->plan;
	if (!in->before_delete) { /* N2 */
		plan_condition(plan, COND_BACKUPS_HEALTHY, COND_TRUE, "Deleting",
		               "no final backup asked (beforeDelete false)");
		return 0;
	}
	if (op_is(in->final, JOURNAL_STEP_DONE)) { /* F1 */
		plan_condition(plan, COND_BACKUPS_HEALTHY, COND_TRUE, "FinalBackupDone",
		               "final backup %s (%s) taken", in->final->name, in->final->handle);
		return 0;
	}
	if (!in->observed && !in->container_running) { /* F0 */
		plan_condition(plan, COND_BACKUPS_HEALTHY, COND_TRUE, "FinalBackupSkipped",
		               "the container is not running: no final backup can be taken");
		return 0;
	}
	if (!in->observed) { /* F4 */
		plan_requeue_after(plan, in->settings.wait_requeue_ms);
		plan_condition(plan, COND_BACKUPS_HEALTHY, COND_FALSE, "AgentUnreachable",
		               "the final backup waits for the agent to answer");
		return 0;
	}
	bool in_flight = false, acted = false;
	int r = settle_latest(c, &in_flight, &acted);
	if (r < 0 || acted || in_flight) {
		plan_condition(plan, COND_BACKUPS_HEALTHY, COND_FALSE, "FinalBackup",
		               "taking the final backup before deletion");
		return r;
	}
	int64_t attempt = 1;
	if (op_is(in->final, JOURNAL_STEP_FAILED)) { /* F2 */
		int64_t wait =
		    in->final->completed_ms + backoff_ms(c, in->consecutive_failures) - in->now_ms;
		if (wait > 0) {
			plan_requeue_after(plan, wait);
			plan_condition(plan, COND_BACKUPS_HEALTHY, COND_FALSE, "FinalBackupFailed",
			               "final backup failed (%s); retrying", in->final->error);
			return 0;
		}
		attempt = in->final->attempt + 1;
	}
	/* F3 */
	plan_condition(plan, COND_BACKUPS_HEALTHY, COND_FALSE, "FinalBackup",
	               "taking the final backup before deletion");
	return plan_backup(c, BACKUP_SLOT_FINAL, attempt, NULL);
}

int recon_backup_plan_input(const BkInput *in, Plan *plan)
{
	if (!in || !plan || !in->uid || strlen(in->uid) < 8 || (in->n_listed && !in->listed) ||
	    (in->n_deletes && !in->deletes) || in->every_ms < 0)
		return -EINVAL;
	const CondType ct = COND_BACKUPS_HEALTHY;
	int r;
	if (!in->game) { /* N1 */
		plan_condition(plan, ct, COND_TRUE, "NotApplicable",
		               "only GameServers have world backups");
		return 0;
	}
	Ctx c = {.in = in, .plan = plan, .every = in->every_ms};
	const BkSettings *s = &in->settings;
	int64_t base = c.every > 0 ? c.every : 6 * 3600 * 1000LL;
	c.poll = s->poll_ms > 0 ? s->poll_ms : clamp64(base / 10, 200, 5000);
	c.backoff_base =
	    s->backoff_base_ms > 0 ? s->backoff_base_ms : clamp64(base / 8, 250, 30000);
	c.grace = s->first_grace_ms > 0 ? s->first_grace_ms : clamp64(base / 2, 0, 60000);
	c.failing = s->fail_threshold > 0 && in->consecutive_failures >= s->fail_threshold;

	if (in->deleting)
		return finalize_rows(&c);

	if (!in->observed) {
		if (!in->container_running && !in->power_running) { /* W1 */
			plan_condition(plan, ct, c.failing ? COND_FALSE : COND_TRUE,
			               c.failing ? "BackupFailing" : "Stopped",
			               "power is stopped: no backups are taken");
			return 0;
		}
		plan_requeue_after(plan, s->wait_requeue_ms);
		plan_condition(plan, ct, COND_UNKNOWN,
		               in->container_running ? "AgentUnreachable" : "WaitingForContainer",
		               "%s",
		               in->container_running ? "the agent's backups cannot be listed"
		                                     : "waiting for the container to run");
		return 0;
	}

	char last[200];
	last_backup_text(in, last, sizeof last);
	say(&c, COND_TRUE, in->every_ms > 0 ? "Scheduled" : "NotConfigured", "%s", last);

	/* S */
	bool in_flight = false, acted = false;
	r = settle_latest(&c, &in_flight, &acted);
	if (r < 0)
		return r;
	for (size_t i = 0; i < in->n_listed && !in_flight; i++)
		in_flight = in->listed[i].state == AGENT_BACKUP_RUNNING; /* B1 (anyone's) */

	/* R */
	bool restoring = false, restore_blocks = false;
	if (in->restore_backup && in->restore_request) {
		const BkOp *ro = in->restore && in->restore->id > 0 ? in->restore : NULL;
		const char *bid = in->restore_backup;
		const AgentRestoreStatus *rs = &in->restore_status;
		bool shows = rs->state != AGENT_RESTORE_NONE && strcmp(rs->id, bid) == 0;
		const AgentBackup *b = agentapi_backups_find_id(in->listed, in->n_listed, bid);
		if (ro && ro->step == JOURNAL_STEP_DONE) { /* R1 */
		} else if (ro && ro->step == JOURNAL_STEP_FAILED) { /* R2 */
			say(&c, COND_FALSE, "RestoreFailed",
			    "restore of %s (request %s) failed: %s", bid, in->restore_request,
			    ro->error);
		} else if (ro) {
			restoring = true;
			if (shows && rs->state == AGENT_RESTORE_RUNNING) { /* R3 */
				plan_requeue_after(plan, c.poll);
			} else if (shows) { /* R4 */
				bool done = rs->state == AGENT_RESTORE_DONE;
				r = plan_action(
				    plan, "settle-restore", NULL, NULL, false,
				    settle_args(ro->id, done,
				                done ? NULL : "the agent reports failure"),
				    "record: restore of %s %s", bid, done ? "done" : "failed");
				if (r < 0)
					return r;
				acted = true;
			} else if (ro->step != JOURNAL_STEP_HANDLE) { /* R5 */
				r = plan_action(plan, "restore", "agent", NULL, true,
				                json_pack("{s:s, s:s}", "backup", bid, "request",
				                          in->restore_request),
				                "restore the world from %s", bid);
				if (r < 0)
					return r;
				acted = true;
			} else { /* R6 */
				r = plan_action(
				    plan, "settle-restore", NULL, NULL, false,
				    settle_args(ro->id, false,
				                "the agent no longer reports the restore"),
				    "record: restore of %s lost", bid);
				if (r < 0)
					return r;
				acted = true;
			}
			if (restoring)
				say(&c, COND_FALSE, "Restoring", "restoring from %s (request %s)",
				    bid, in->restore_request);
		} else if (!b) { /* R10 */
			restore_blocks = true;
			say(&c, COND_FALSE, "BackupNotFound",
			    "spec.restore.backup %s is not a backup of this server", bid);
		} else if (b->state == AGENT_BACKUP_FAILED) { /* R9 */
			restore_blocks = true;
			say(&c, COND_FALSE, "BackupFailed",
			    "backup %s failed: it cannot be restored", bid);
		} else if (b->state == AGENT_BACKUP_RUNNING) { /* R8 */
			restore_blocks = true;
			plan_requeue_after(plan, c.poll);
			say(&c, COND_FALSE, "WaitingForBackup",
			    "restore waits for backup %s to finish", bid);
		} else if (!in->agent_ready || in_flight || acted) { /* R7, not yet */
			restoring = true;
			plan_requeue_after(plan, in_flight ? c.poll : s->wait_requeue_ms);
			say(&c, COND_FALSE, "Restoring", "restore from %s waits for %s", bid,
			    in_flight || acted ? "the running backup" : "the agent");
		} else { /* R7 */
			restoring = true;
			r = plan_action(
			    plan, "restore", "agent", NULL, true,
			    json_pack("{s:s, s:s}", "backup", bid, "request", in->restore_request),
			    "restore the world from %s", bid);
			if (r < 0)
				return r;
			acted = true;
			say(&c, COND_FALSE, "Restoring", "restoring from %s (request %s)", bid,
			    in->restore_request);
		}
	}
	(void)restore_blocks;
	if (in->restore_status.state == AGENT_RESTORE_RUNNING)
		restoring = true;

	/* D + P */
	const AgentBackup *prune[PLAN_MAX_ACTIONS];
	size_t n_prune = 0;
	if (!restoring && !in_flight && !acted)
		n_prune = prune_set(in, prune, PLAN_MAX_ACTIONS / 2);
	for (size_t i = 0; i < in->n_deletes; i++) {
		const BkOp *d = &in->deletes[i];
		if (!op_open(d))
			continue;
		const AgentBackup *b =
		    agentapi_backups_find_id(in->listed, in->n_listed, d->target);
		bool pruned = false;
		for (size_t k = 0; k < n_prune; k++)
			pruned |= b == prune[k];
		if (!b) /* D1 */
			r = plan_action(plan, "settle-delete", NULL, NULL, false,
			                settle_args(d->id, true, NULL),
			                "record: backup %s is deleted", d->target);
		else if (!pruned && !restoring && !in_flight && !acted) /* D2 */
			r = plan_action(plan, "settle-delete", NULL, NULL, false,
			                settle_args(d->id, false, "superseded: retention keeps it"),
			                "record: delete of %s superseded", d->target);
		else
			r = 0;
		if (r < 0)
			return r;
	}

	/* B */
	if (!acted && !restoring && in->every_ms > 0 && in->agent_ready) {
		const char *uid = in->uid;
		int64_t slot = recon_backup_slot(uid, c.every, in->now_ms);
		int64_t start = recon_backup_slot_start(uid, c.every, slot);
		char base_name[AGENTAPI_BACKUP_NAME_MAX];
		r = recon_backup_name(uid, slot, 1, base_name, sizeof base_name);
		if (r < 0)
			return r;
		size_t bl = strlen(base_name);
		bool taken = false;
		for (size_t i = 0; i < in->n_listed; i++) {
			const AgentBackup *b = &in->listed[i];
			if (!recon_backup_is_ours(uid, b->name) || b->state == AGENT_BACKUP_FAILED)
				continue;
			bool this_slot = strncmp(b->name, base_name, bl) == 0 &&
			                 (b->name[bl] == 0 || b->name[bl] == '-');
			if (this_slot || b->created_ms >= start)
				taken = true;
		}
		const AgentBackup *newest_ok = newest_ours_ok(in);
		bool last_failed =
		    op_is(in->latest, JOURNAL_STEP_FAILED) && in->consecutive_failures > 0;
		int64_t retry_at =
		    last_failed ? in->last_failure_ms + backoff_ms(&c, in->consecutive_failures)
		                : 0;
		if (in_flight) { /* B1 */
			plan_requeue_after(plan, c.poll);
			if (c.st == COND_TRUE)
				say(&c, COND_TRUE, "BackingUp", "a backup is running; %s", last);
		} else if (taken) { /* B2 */
			plan_requeue_after(plan, start + c.every - in->now_ms);
			if (c.st == COND_TRUE)
				say(&c, COND_TRUE, "BackedUp", "%s", last);
		} else if (!newest_ok && in->agent_since_ms > 0 &&
		           in->now_ms - in->agent_since_ms < c.grace) { /* B3 */
			plan_requeue_after(plan, in->agent_since_ms + c.grace - in->now_ms);
		} else if (last_failed && in->now_ms < retry_at) { /* B4 */
			plan_requeue_after(plan, retry_at - in->now_ms);
		} else { /* B5 */
			int64_t attempt = 1;
			if (last_failed && !in->latest->final && in->latest->slot == slot)
				attempt = in->latest->attempt + 1;
			r = plan_backup(&c, slot, attempt, NULL);
			if (r < 0)
				return r;
			if (c.st == COND_TRUE)
				say(&c, COND_TRUE, "BackingUp",
				    "taking the backup of slot %" PRId64, slot);
		}
	}

	/* P2 */
	for (size_t i = 0; i < n_prune; i++) {
		r = plan_action(plan, "backup-delete", "agent", NULL, true,
		                json_pack("{s:s, s:s}", "id", prune[i]->id, "name", prune[i]->name),
		                "delete backup %s (%s): retention keeps %" PRId64, prune[i]->name,
		                prune[i]->id, in->keep);
		if (r < 0)
			return r;
	}

	if (c.failing && c.st == COND_TRUE)
		say(&c, COND_FALSE, "BackupFailing", "%d consecutive backups failed; %s",
		    in->consecutive_failures, last);
	plan_condition(plan, ct, c.st, c.reason, "%s", c.msg);
	return 0;
}

/* --- the runtime glue ------------------------------------------------------------------------- */

typedef struct BackupWorker {
	AgentBackupClient *client;
} BackupWorker;

static const CondType backup_conditions[] = {COND_BACKUPS_HEALTHY, _COND_TYPE_MAX};

static bool backup_enabled(const Config *cfg)
{
	return cfg && cfg->agent.enabled;
}

static int backup_worker_init(const Config *cfg, void *state, void **ret_wstate)
{
	(void)state;
	if (!cfg)
		return -EINVAL;
	BackupWorker *w = calloc(1, sizeof *w);
	if (!w)
		return -ENOMEM;
	AgentBackupClientOptions o = {.port = cfg->agent.port, .token = cfg->agent.token};
	w->client = agentapi_backup_client_new(&o);
	if (!w->client) {
		free(w);
		return -ENOMEM;
	}
	*ret_wstate = w;
	return 0;
}

static void backup_worker_done(void *wstate)
{
	BackupWorker *w = wstate;
	if (!w)
		return;
	agentapi_backup_client_free(w->client);
	free(w);
}

static int backup_observe(RecEnv *env, void **ret_snapshot)
{
	(void)env;
	BackupSnapshot *s = calloc(1, sizeof *s);
	if (!s)
		return -ENOMEM;
	s->at_ms = now_wall_ms();
	*ret_snapshot = s;
	return 0;
}

static void backup_snapshot_free(void *snapshot)
{
	free(snapshot);
}

static void backup_obs_free(void *obs)
{
	BackupObs *o = obs;
	if (!o)
		return;
	agentapi_backups_clear(&o->listed);
	free(o);
}

/* Condition type of a stored conditions array: status True and, when
 * reason is given, that reason. *ret_since_ms its lastTransitionTime. */
static bool cond_true(const json_t *conditions, const char *type, const char *reason,
                      int64_t *ret_since_ms)
{
	size_t i;
	json_t *c;
	if (!json_is_array(conditions))
		return false;
	json_array_foreach(conditions, i, c)
	{
		const char *t = json_string_value(json_object_get(c, "type"));
		if (!t || strcmp(t, type) != 0)
			continue;
		const char *st = json_string_value(json_object_get(c, "status"));
		const char *re = json_string_value(json_object_get(c, "reason"));
		if (ret_since_ms)
			*ret_since_ms = agentapi_backup_parse_time(
			    json_string_value(json_object_get(c, "lastTransitionTime")));
		return st && strcmp(st, "True") == 0 &&
		       (!reason ||
		        (re && (strcmp(re, reason) == 0 || strcmp(re, "Disabled") == 0)));
	}
	return false;
}

static bool is_game(const RuntimeServer *srv)
{
	return srv && srv->kind && strcmp(srv->kind, "GameServer") == 0;
}

static const char *restore_field(const RuntimeServer *srv, const char *key)
{
	json_t *r = json_object_get(srv->spec, "restore");
	return json_is_object(r) ? json_string_value(json_object_get(r, key)) : NULL;
}

static int key_of(const char *uid, const char *action, const char *part, char *buf, size_t n)
{
	char safe[65];
	size_t l = 0;
	for (const char *p = part; p && *p && l < sizeof safe - 1; p++) {
		char ch = *p;
		bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		          (ch >= '0' && ch <= '9') || ch == '.' || ch == '_' || ch == '-';
		safe[l++] = ok ? ch : '-';
	}
	safe[l] = 0;
	return journal_key(uid, action, safe, 0, buf, n);
}

static int backup_observe_server(RecEnv *env, const RuntimeServer *srv, const void *snapshot,
                                 void **ret_obs)
{
	(void)snapshot;
	BackupWorker *w = env->wstate;
	BackupObs *o = calloc(1, sizeof *o);
	if (!o)
		return -ENOMEM;
	o->now_ms = now_wall_ms();
	if (!is_game(srv)) {
		*ret_obs = o;
		return 0;
	}
	StoreError err = {0};
	int r;
	if (env->db) {
		JournalOp *ops = NULL;
		size_t n = 0;
		r = journal_list(env->db, srv->uid, 200, &ops, &n, &err);
		if (r < 0) {
			backup_obs_free(o);
			return r;
		}
		bool streak = true; /* counting failures back to the last done */
		for (size_t i = 0; i < n; i++) { /* newest first */
			const JournalOp *op = &ops[i];
			if (strcmp(op->action, "backup") == 0) {
				if (!o->has_latest) {
					recon_backup_op_from_journal(op, &o->latest);
					o->has_latest = true;
				}
				if (streak && op->step == JOURNAL_STEP_FAILED) {
					if (!o->consecutive_failures)
						o->last_failure_ms = op->completed_ms;
					o->consecutive_failures++;
				} else if (op->step == JOURNAL_STEP_DONE) {
					streak = false;
				}
			} else if (strcmp(op->action, "backup-delete") == 0 &&
			           journal_step_is_open(op->step) &&
			           o->n_deletes < BK_MAX_OPEN_DELETES) {
				recon_backup_op_from_journal(op, &o->deletes[o->n_deletes++]);
			}
		}
		journal_ops_free(ops, n);

		char key[JOURNAL_KEY_MAX];
		JournalOp op = {0};
		if (key_of(srv->uid, "backup", "final", key, sizeof key) >= 0 &&
		    journal_get(env->db, key, &op, &err) >= 0) {
			recon_backup_op_from_journal(&op, &o->final);
			o->has_final = true;
		}
		journal_op_clear(&op);
		const char *req = restore_field(srv, "requestId");
		if (req && key_of(srv->uid, "restore", req, key, sizeof key) >= 0 &&
		    journal_get(env->db, key, &op, &err) >= 0) {
			recon_backup_op_from_journal(&op, &o->restore);
			o->has_restore = true;
		}
		journal_op_clear(&op);
	}

	if (w && w->client && srv->ip && *srv->ip &&
	    cond_true(srv->conditions, "ContainerReady", "Running", NULL)) {
		AgentBackupError aerr = {0};
		r = rec_rate_wait(env, "agent");
		if (r >= 0) {
			r = agentapi_backup_list(w->client, srv->ip, &o->listed, &aerr);
			rec_count_call(env, "agent", "GET",
			               aerr.http_status ? aerr.http_status
			               : r < 0          ? 0
			                                : 200);
		}
		if (r >= 0) {
			r = agentapi_backup_restore_status(w->client, srv->ip, &o->restore_status,
			                                   &aerr);
			rec_count_call(env, "agent", "GET",
			               aerr.http_status ? aerr.http_status
			               : r < 0          ? 0
			                                : 200);
		}
		if (r >= 0)
			o->observed = true;
		else {
			agentapi_backups_clear(&o->listed);
			snprintf(o->observe_error, sizeof o->observe_error, "%s", aerr.message);
			log_debug("backup: %s: agent observation failed: %s", srv->uid,
			          aerr.message);
		}
	}
	*ret_obs = o;
	return 0;
}

static int backup_plan_common(const Config *cfg, const RuntimeServer *srv, const void *snapshot,
                              const void *obs, bool deleting, Plan *plan)
{
	(void)cfg;
	(void)snapshot;
	const BackupObs *o = obs;
	if (!srv)
		return -EINVAL;
	BkInput in = {
	    .uid = srv->uid,
	    .game = is_game(srv),
	    .deleting = deleting || srv->deleting,
	};
	recon_backup_settings_init(&in.settings);
	if (!in.game || !o)
		return recon_backup_plan_input(&in, plan);
	const char *power = json_string_value(json_object_get(srv->spec, "power"));
	in.power_running = !power || strcmp(power, "running") == 0;
	in.container_running = cond_true(srv->conditions, "ContainerReady", "Running", NULL);
	in.agent_ready = cond_true(srv->conditions, "AgentReady", NULL, &in.agent_since_ms);
	in.now_ms = o->now_ms;
	json_t *b = json_object_get(srv->spec, "backups");
	json_t *every = json_object_get(b, "every");
	int64_t ms = 6 * 3600 * 1000LL;
	if (json_is_null(every))
		ms = 0;
	else if (json_is_string(every) && duration_parse(json_string_value(every), &ms) < 0)
		return -EINVAL;
	in.every_ms = ms;
	json_t *keep = json_object_get(b, "keep");
	in.keep = json_is_integer(keep) ? json_integer_value(keep) : 7;
	json_t *bd = json_object_get(b, "beforeDelete");
	in.before_delete = json_is_boolean(bd) ? json_is_true(bd) : true;
	in.restore_backup = restore_field(srv, "backup");
	in.restore_request = restore_field(srv, "requestId");
	in.observed = o->observed;
	in.listed = o->listed.items;
	in.n_listed = o->listed.n;
	in.restore_status = o->restore_status;
	in.latest = o->has_latest ? &o->latest : NULL;
	in.consecutive_failures = o->consecutive_failures;
	in.last_failure_ms = o->last_failure_ms;
	in.final = o->has_final ? &o->final : NULL;
	in.restore = o->has_restore ? &o->restore : NULL;
	in.deletes = o->deletes;
	in.n_deletes = o->n_deletes;
	return recon_backup_plan_input(&in, plan);
}

static int backup_plan(const Config *cfg, const RuntimeServer *srv, const void *snapshot,
                       const void *obs, Plan *plan)
{
	return backup_plan_common(cfg, srv, snapshot, obs, false, plan);
}

static int backup_finalize(const Config *cfg, const RuntimeServer *srv, const void *snapshot,
                           const void *obs, Plan *plan)
{
	return backup_plan_common(cfg, srv, snapshot, obs, true, plan);
}

/* --- acts -------------------------------------------------------------------------------------- */

static int act_fail(ActResult *res, int r, const char *fmt, ...) _printf_(3, 4);
static int act_fail(ActResult *res, int r, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(res->error, sizeof res->error, fmt, ap);
	va_end(ap);
	return r;
}

static int64_t poll_of(const RuntimeServer *srv)
{
	json_t *every = json_object_get(json_object_get(srv->spec, "backups"), "every");
	int64_t ms = 6 * 3600 * 1000LL;
	if (json_is_string(every) && duration_parse(json_string_value(every), &ms) < 0)
		ms = 6 * 3600 * 1000LL;
	return clamp64(ms / 10, 200, 5000);
}

static void count(RecEnv *env, const char *method, const AgentBackupError *e, int r)
{
	rec_count_call(env, "agent", method, e->http_status ? e->http_status : r < 0 ? 0 : 200);
}

/* Metadata of a backup into zlh.backups (best effort: logged). */
static void record_meta(RecEnv *env, const RuntimeServer *srv, const char *id, const char *name,
                        int64_t created_ms, int64_t bytes, const char *state)
{
	if (!id || !*id)
		return;
	BackupRecord rec = {.created_ms = created_ms, .bytes = bytes};
	snprintf(rec.uid, sizeof rec.uid, "%s", srv->uid);
	snprintf(rec.backup_id, sizeof rec.backup_id, "%s", id);
	snprintf(rec.name, sizeof rec.name, "%s", name ? name : "");
	snprintf(rec.owner, sizeof rec.owner, "%s", srv->owner ? srv->owner : "");
	snprintf(rec.server_name, sizeof rec.server_name, "%s", srv->name ? srv->name : "");
	snprintf(rec.state, sizeof rec.state, "%s", state);
	StoreError err = {0};
	if (backups_record(env->db, env->epoch, &rec, &err) < 0)
		log_debug("backup: %s: recording metadata of %s: %s", srv->uid, id, err.message);
}

static int act_backup(RecEnv *env, const RuntimeServer *srv, const Action *a, ActResult *res)
{
	BackupWorker *w = env->wstate;
	const char *name = json_string_value(json_object_get(a->args, "name"));
	json_int_t slot = json_integer_value(json_object_get(a->args, "slot"));
	json_int_t attempt = json_integer_value(json_object_get(a->args, "attempt"));
	bool final = json_is_true(json_object_get(a->args, "final"));
	if (!w || !name || attempt < 1 || !srv->ip)
		return act_fail(res, -EINVAL, "backup: bad arguments");
	char part[32], key[JOURNAL_KEY_MAX];
	if (final)
		snprintf(part, sizeof part, "final");
	else
		snprintf(part, sizeof part, "%" PRId64, (int64_t)slot);
	int r = key_of(srv->uid, "backup", part, key, sizeof key);
	if (r < 0)
		return act_fail(res, r, "backup: cannot build the journal key");
	StoreError serr = {0};
	JournalOp op = {0};
	r = journal_intent_retry(env->db, env->epoch, srv->uid, "backup", key, a->args, 0, &op,
	                         &serr);
	if (r < 0)
		return act_fail(res, r, "backup: journal intent: %s", serr.message);
	int64_t op_id = op.id;
	const char *pname = json_string_value(json_object_get(op.payload, "name"));
	bool same = op.attempt == attempt && pname && strcmp(pname, name) == 0;
	journal_op_clear(&op);
	if (!same)
		return act_fail(res, -ESTALE, "backup %s: the journal moved on (replan)", name);
	crash_point("backup", CRASH_STEP_INTENT);

	if (!rec_lease_valid(env))
		return act_fail(res, -ESTALE, "backup: lease not valid: no call made");
	AgentBackupError aerr = {.retry_after_s = -1};
	char id[AGENTAPI_BACKUP_ID_MAX];
	r = agentapi_backup_create(w->client, srv->ip, name, id, sizeof id, &aerr);
	count(env, "POST", &aerr, r);
	if (r >= 0) {
		crash_point("backup", CRASH_STEP_CALL);
		int k = journal_set_handle(env->db, env->epoch, op_id, id, &serr);
		if (k < 0 && k != -EEXIST)
			return act_fail(res, k, "backup: journal handle: %s", serr.message);
		crash_point("backup", CRASH_STEP_HANDLE);
		record_meta(env, srv, id, name, now_wall_ms(), -1, "running");
		rec_event(env, srv, "Normal", final ? "FinalBackupStarted" : "BackupStarted",
		          "backup %s started (%s)", name, id);
		res->requeue_after_ms = poll_of(srv);
		return 0;
	}
	bool answered = aerr.http_status != 0;
	bool unknown = answered ? (r == -EREMOTEIO || r == -EAGAIN) : http_outcome_unknown(r);
	if (unknown) {
		int k = journal_mark_call(env->db, env->epoch, op_id, &serr);
		if (k < 0 && k != -EALREADY)
			log_debug("backup: journal mark_call: %s", serr.message);
		return act_fail(res, r, "backup %s: outcome unknown (%s); the next listing decides",
		                name, aerr.message);
	}
	if (!answered) /* nothing was sent: the op stays at intent, resumed later */
		return act_fail(res, r, "backup %s: %s", name, aerr.message);
	int k = journal_fail(env->db, env->epoch, op_id, aerr.message, &serr);
	if (k < 0 && k != -EALREADY)
		log_debug("backup: journal fail: %s", serr.message);
	rec_event(env, srv, "Warning", "BackupFailed", "backup %s refused: %s", name, aerr.message);
	return act_fail(res, r, "backup %s: %s", name, aerr.message);
}

static int act_settle_backup(RecEnv *env, const RuntimeServer *srv, const Action *a, ActResult *res)
{
	json_t *args = a->args;
	json_int_t op_id = json_integer_value(json_object_get(args, "op"));
	const char *outcome = json_string_value(json_object_get(args, "outcome"));
	const char *id = json_string_value(json_object_get(args, "id"));
	const char *name = json_string_value(json_object_get(args, "name"));
	const char *error = json_string_value(json_object_get(args, "error"));
	bool final = json_is_true(json_object_get(args, "final"));
	json_t *cm = json_object_get(args, "createdMs");
	json_t *by = json_object_get(args, "bytes");
	int64_t created = json_is_integer(cm) ? json_integer_value(cm) : 0;
	int64_t bytes = json_is_integer(by) ? json_integer_value(by) : -1;
	if (op_id <= 0 || !outcome)
		return act_fail(res, -EINVAL, "settle-backup: bad arguments");
	StoreError serr = {0};
	int r;
	if (id && *id) {
		r = journal_set_handle(env->db, env->epoch, op_id, id, &serr);
		if (r < 0 && r != -EALREADY && r != -EEXIST)
			return act_fail(res, r, "journal: %s", serr.message);
	}
	if (strcmp(outcome, "handle") == 0) {
		record_meta(env, srv, id, name, created, bytes, "running");
		res->requeue_after_ms = poll_of(srv);
		return 0;
	}
	if (strcmp(outcome, "done") == 0) {
		_cleanup_json_ json_t *result =
		    json_pack("{s:s?, s:s?, s:I, s:I}", "id", id, "name", name, "createdMs",
		              (json_int_t)created, "bytes", (json_int_t)bytes);
		r = journal_done(env->db, env->epoch, op_id, result, &serr);
		if (r < 0 && r != -EALREADY)
			return act_fail(res, r, "journal: %s", serr.message);
		record_meta(env, srv, id, name, created, bytes, "ok");
		crash_point("backup", CRASH_STEP_DONE);
		rec_event(env, srv, "Normal", final ? "FinalBackupSucceeded" : "BackupSucceeded",
		          "backup %s (%s) succeeded, %" PRId64 " bytes", name ? name : "?",
		          id ? id : "?", bytes);
		return 0;
	}
	r = journal_fail(env->db, env->epoch, op_id, error ? error : "failed", &serr);
	if (r < 0 && r != -EALREADY)
		return act_fail(res, r, "journal: %s", serr.message);
	record_meta(env, srv, id, name, created, bytes, "failed");
	rec_event(env, srv, "Warning", final ? "FinalBackupFailed" : "BackupFailed",
	          "backup %s failed: %s", name ? name : "?", error ? error : "failed");
	return 0;
}

static int act_restore(RecEnv *env, const RuntimeServer *srv, const Action *a, ActResult *res)
{
	BackupWorker *w = env->wstate;
	const char *bid = json_string_value(json_object_get(a->args, "backup"));
	const char *req = json_string_value(json_object_get(a->args, "request"));
	if (!w || !bid || !req || !srv->ip)
		return act_fail(res, -EINVAL, "restore: bad arguments");
	char key[JOURNAL_KEY_MAX];
	int r = key_of(srv->uid, "restore", req, key, sizeof key);
	if (r < 0)
		return act_fail(res, r, "restore: cannot build the journal key");
	StoreError serr = {0};
	JournalOp op = {0};
	r = journal_intent(env->db, env->epoch, srv->uid, "restore", key, a->args, 0, &op, &serr);
	if (r < 0)
		return act_fail(res, r, "restore: journal intent: %s", serr.message);
	int64_t op_id = op.id;
	JournalStep step = op.step;
	journal_op_clear(&op);
	if (!journal_step_is_open(step) || step == JOURNAL_STEP_HANDLE)
		return 0; /* exactly once: completed or accepted already */
	crash_point("restore", CRASH_STEP_INTENT);

	if (!rec_lease_valid(env))
		return act_fail(res, -ESTALE, "restore: lease not valid: no call made");
	AgentBackupError aerr = {.retry_after_s = -1};
	r = agentapi_backup_restore(w->client, srv->ip, bid, &aerr);
	count(env, "POST", &aerr, r);
	if (r >= 0) {
		crash_point("restore", CRASH_STEP_CALL);
		int k = journal_set_handle(env->db, env->epoch, op_id, bid, &serr);
		if (k < 0 && k != -EEXIST)
			return act_fail(res, k, "restore: journal handle: %s", serr.message);
		crash_point("restore", CRASH_STEP_HANDLE);
		rec_event(env, srv, "Normal", "RestoreStarted", "restoring the world from %s", bid);
		res->requeue_after_ms = poll_of(srv);
		return 0;
	}
	bool answered = aerr.http_status != 0;
	if (r == -ENOENT) {
		int k = journal_fail(env->db, env->epoch, op_id, "BackupNotFound", &serr);
		if (k < 0 && k != -EALREADY)
			log_debug("backup: journal fail: %s", serr.message);
		rec_event(env, srv, "Warning", "RestoreFailed", "restore from %s: no such backup",
		          bid);
		return act_fail(res, r, "restore from %s: no such backup", bid);
	}
	if (answered ? (r == -EREMOTEIO || r == -EAGAIN) : http_outcome_unknown(r)) {
		int k = journal_mark_call(env->db, env->epoch, op_id, &serr);
		if (k < 0 && k != -EALREADY)
			log_debug("backup: journal mark_call: %s", serr.message);
		return act_fail(res, r, "restore from %s: outcome unknown (%s); /status decides",
		                bid, aerr.message);
	}
	/* Refused (409 busy, 400...) or not sent: nothing happened; the op
	 * stays open at intent and the next pass tries again. */
	return act_fail(res, r, "restore from %s: %s", bid, aerr.message);
}

static int act_settle_restore(RecEnv *env, const RuntimeServer *srv, const Action *a,
                              ActResult *res)
{
	json_int_t op_id = json_integer_value(json_object_get(a->args, "op"));
	const char *outcome = json_string_value(json_object_get(a->args, "outcome"));
	const char *error = json_string_value(json_object_get(a->args, "error"));
	const char *bid = restore_field(srv, "backup");
	if (op_id <= 0 || !outcome)
		return act_fail(res, -EINVAL, "settle-restore: bad arguments");
	StoreError serr = {0};
	int r;
	if (strcmp(outcome, "done") == 0) {
		r = journal_done(env->db, env->epoch, op_id, NULL, &serr);
		if (r < 0 && r != -EALREADY)
			return act_fail(res, r, "journal: %s", serr.message);
		crash_point("restore", CRASH_STEP_DONE);
		rec_event(env, srv, "Normal", "Restored", "world restored from %s",
		          bid ? bid : "?");
		return 0;
	}
	r = journal_fail(env->db, env->epoch, op_id, error ? error : "failed", &serr);
	if (r < 0 && r != -EALREADY)
		return act_fail(res, r, "journal: %s", serr.message);
	rec_event(env, srv, "Warning", "RestoreFailed", "restore from %s failed: %s",
	          bid ? bid : "?", error ? error : "failed");
	return 0;
}

static int act_delete(RecEnv *env, const RuntimeServer *srv, const Action *a, ActResult *res)
{
	BackupWorker *w = env->wstate;
	const char *id = json_string_value(json_object_get(a->args, "id"));
	const char *name = json_string_value(json_object_get(a->args, "name"));
	if (!w || !id || !srv->ip)
		return act_fail(res, -EINVAL, "backup-delete: bad arguments");
	char key[JOURNAL_KEY_MAX];
	int r = key_of(srv->uid, "backup-delete", id, key, sizeof key);
	if (r < 0)
		return act_fail(res, r, "backup-delete: cannot build the journal key");
	StoreError serr = {0};
	JournalOp op = {0};
	r = journal_intent_retry(env->db, env->epoch, srv->uid, "backup-delete", key, a->args, 0,
	                         &op, &serr);
	if (r < 0)
		return act_fail(res, r, "backup-delete: journal intent: %s", serr.message);
	int64_t op_id = op.id;
	journal_op_clear(&op);
	crash_point("backup-delete", CRASH_STEP_INTENT);

	if (!rec_lease_valid(env))
		return act_fail(res, -ESTALE, "backup-delete: lease not valid: no call made");
	AgentBackupError aerr = {.retry_after_s = -1};
	r = agentapi_backup_delete(w->client, srv->ip, id, &aerr);
	count(env, "DELETE", &aerr, r);
	if (r < 0) {
		/* Delete is idempotent: the op stays open; the next listing
		 * settles it or deletes again. */
		int k = journal_mark_call(env->db, env->epoch, op_id, &serr);
		if (k < 0 && k != -EALREADY)
			log_debug("backup: journal mark_call: %s", serr.message);
		return act_fail(res, r, "delete backup %s: %s", id, aerr.message);
	}
	crash_point("backup-delete", CRASH_STEP_CALL);
	int k = journal_set_handle(env->db, env->epoch, op_id, id, &serr);
	if (k < 0 && k != -EEXIST && k != -EALREADY)
		return act_fail(res, k, "backup-delete: journal handle: %s", serr.message);
	crash_point("backup-delete", CRASH_STEP_HANDLE);
	k = journal_done(env->db, env->epoch, op_id, NULL, &serr);
	if (k < 0 && k != -EALREADY)
		return act_fail(res, k, "backup-delete: journal done: %s", serr.message);
	if (backups_forget(env->db, env->epoch, srv->uid, id, &serr) < 0)
		log_debug("backup: forgetting %s: %s", id, serr.message);
	crash_point("backup-delete", CRASH_STEP_DONE);
	rec_event(env, srv, "Normal", "BackupPruned", "deleted backup %s (%s) by retention",
	          name ? name : "?", id);
	return 0;
}

static int act_settle_delete(RecEnv *env, const Action *a, ActResult *res)
{
	json_int_t op_id = json_integer_value(json_object_get(a->args, "op"));
	const char *outcome = json_string_value(json_object_get(a->args, "outcome"));
	const char *error = json_string_value(json_object_get(a->args, "error"));
	if (op_id <= 0 || !outcome)
		return act_fail(res, -EINVAL, "settle-delete: bad arguments");
	StoreError serr = {0};
	int r = strcmp(outcome, "done") == 0
	            ? journal_done(env->db, env->epoch, op_id, NULL, &serr)
	            : journal_fail(env->db, env->epoch, op_id, error ? error : "failed", &serr);
	if (r < 0 && r != -EALREADY)
		return act_fail(res, r, "journal: %s", serr.message);
	return 0;
}

static int backup_act(RecEnv *env, const RuntimeServer *srv, void *snapshot, void *obs,
                      const Action *action, ActResult *res)
{
	(void)snapshot;
	(void)obs;
	if (!env || !srv || !action || !res)
		return -EINVAL;
	if (!env->db)
		return act_fail(res, -ENOTCONN, "no database connection");
	const char *n = action->name;
	if (strcmp(n, "backup") == 0)
		return act_backup(env, srv, action, res);
	if (strcmp(n, "settle-backup") == 0)
		return act_settle_backup(env, srv, action, res);
	if (strcmp(n, "restore") == 0)
		return act_restore(env, srv, action, res);
	if (strcmp(n, "settle-restore") == 0)
		return act_settle_restore(env, srv, action, res);
	if (strcmp(n, "backup-delete") == 0)
		return act_delete(env, srv, action, res);
	if (strcmp(n, "settle-delete") == 0)
		return act_settle_delete(env, action, res);
	return act_fail(res, -EINVAL, "unknown action %s", n);
}

const Reconciler recon_backup = {
    .name = "backup",
    .order = 30,
    .conditions = backup_conditions,
    .uses_finalizer = true,
    .enabled = backup_enabled,
    .worker_init = backup_worker_init,
    .worker_done = backup_worker_done,
    .observe = backup_observe,
    .snapshot_free = backup_snapshot_free,
    .observe_server = backup_observe_server,
    .obs_free = backup_obs_free,
    .plan = backup_plan,
    .finalize = backup_finalize,
    .act = backup_act,
};
