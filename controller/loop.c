/* loop.c - the controller runtime; see loop.h and reconciler.h. */
#include "controller/loop.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>

#include <systemd/sd-daemon.h>

#include "buf.h"
#include "controller/lease.h"
#include "controller/limits.h"
#include "controller/metrics.h"
#include "controller/queue.h"
#include "controller/status.h"
#include "db/runtime.h"
#include "log.h"
#include "util.h"

#define MAX_RECS 16
#define ACT_REQUEUE_MS 250 /* look again this soon after an action */
#define MAX_REPLAN_ROUNDS 4 /* plan -> act rounds per reconciler and pass */
#define STATUS_BUSY_RETRY_MS 1000
#define COUNTS_EVERY_MS 2000
#define OBSERVE_FAIL_HOLD_MS 1000 /* a failed bulk observation is reused this long */

typedef struct Worker Worker;

/* One reconciler's shared bulk observation. */
typedef struct Snap {
	void *data;
	int64_t taken_at; /* mono ms when the observation started */
	int refs;
} Snap;

typedef struct SnapCache {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	Snap *cur;
	int64_t min_fresh; /* resync: older snapshots are stale for everyone */
	bool observing;
	int64_t observing_since;
	int last_error;
	int64_t last_error_at;
	char error[256];
} SnapCache;

struct Worker {
	Controller *c;
	int idx;
	pthread_t thread;
	bool started;
	atomic_bool finished;
	PGconn *db;
	int64_t epoch; /* the epoch of the reconcile in progress */
	void *wstate[MAX_RECS];
	bool wstate_ok[MAX_RECS];
	bool fenced; /* the current reconcile hit -ESTALE */
};

struct Controller {
	const Config *cfg;
	const Reconciler *recs[MAX_RECS]; /* enabled, ordered */
	size_t n_recs;
	void *rec_state[MAX_RECS];
	SnapCache snaps[MAX_RECS];

	Lease lease;
	Queue *queue;
	RateLimits *rates;
	SemSet *tasks;
	Metrics *metrics;
	MetricsServer *msrv;

	PGconn *main_conn;
	int sigfd;
	atomic_bool stopping;
	volatile bool stop_flag; /* the same, for ratelimit_wait() */
	bool drained;

	Worker *workers;
	size_t n_workers;

	/* uid -> [per reconciler: mono ms after which its snapshot must have
	 * been taken] (after an act). */
	pthread_mutex_t fresh_lock;
	json_t *fresh;

	/* For STATUS=, metrics and /healthz (main thread writes). */
	pthread_mutex_t stat_lock;
	PhaseCounts counts;
	bool counts_ok;
	atomic_int_fast64_t last_loop_mono;
	atomic_int_fast64_t last_pass_mono;
	atomic_int_fast64_t last_pass_wall;
	atomic_int_fast64_t leader_since_mono;
	atomic_bool db_up;
	atomic_int in_flight;
	bool pass_pending;
};

/* --- small helpers ---------------------------------------------------------------- */

static bool stopping(const Controller *c)
{
	return atomic_load(&((Controller *)c)->stopping);
}

static void log_srv(int level, const RuntimeServer *s, const char *rec, const char *action,
                    const char *fmt, ...) _printf_(5, 6);
static void log_srv(int level, const RuntimeServer *s, const char *rec, const char *action,
                    const char *fmt, ...)
{
	char msg[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	log_fields(level,
	           LOG_F("uid", s->uid, "name", s->name ? s->name : "", "owner",
	                 s->owner ? s->owner : "", "reconciler", rec ? rec : "", "action",
	                 action ? action : ""),
	           "%s", msg);
}

static size_t strv_len(char *const *v)
{
	size_t n = 0;
	while (v && v[n])
		n++;
	return n;
}

static int64_t fresh_get(Controller *c, const char *uid, size_t rec)
{
	pthread_mutex_lock(&c->fresh_lock);
	json_t *a = json_object_get(c->fresh, uid);
	int64_t v = json_integer_value(json_array_get(a, rec));
	pthread_mutex_unlock(&c->fresh_lock);
	return v;
}

static void fresh_set(Controller *c, const char *uid, size_t rec, int64_t when)
{
	pthread_mutex_lock(&c->fresh_lock);
	json_t *a = json_object_get(c->fresh, uid);
	if (!a) {
		a = json_array();
		for (size_t i = 0; a && i < c->n_recs; i++)
			json_array_append_new(a, json_integer(0));
		if (a)
			json_object_set_new(c->fresh, uid, a);
	}
	if (a)
		json_array_set_new(a, rec, json_integer(when));
	pthread_mutex_unlock(&c->fresh_lock);
}

static void fresh_drop(Controller *c, const char *uid)
{
	pthread_mutex_lock(&c->fresh_lock);
	json_object_del(c->fresh, uid);
	pthread_mutex_unlock(&c->fresh_lock);
}

/* --- runtime hooks (ctx = Worker) ------------------------------------------------------ */

static bool hook_lease_valid(void *ctx)
{
	Worker *w = ctx;
	return lease_valid_for(&w->c->lease, w->epoch, -1);
}

static int hook_rate_wait(void *ctx, const char *system)
{
	Worker *w = ctx;
	RateLimiter *rl = ratelimits_get(w->c->rates, system);
	if (!rl)
		return 0;
	return ratelimit_wait(rl, &w->c->stop_flag);
}

static int hook_task_acquire(void *ctx, const char *node, const char *holder)
{
	Worker *w = ctx;
	return semset_acquire(w->c->tasks, node, holder,
	                      (int)w->c->cfg->proxmox.max_tasks_per_node);
}

static void hook_task_release(void *ctx, const char *node, const char *holder)
{
	Worker *w = ctx;
	(void)semset_release(w->c->tasks, node, holder);
}

static void hook_count_call(void *ctx, const char *system, const char *method, long status)
{
	Worker *w = ctx;
	char code[16];
	snprintf(code, sizeof code, "%ld", status);
	metrics_counter_add(
	    w->c->metrics, "zlh_external_calls_total",
	    METRIC_L("system", system ? system : "", "method", method ? method : "", "code", code),
	    1);
}

static void record_event(Worker *w, const RuntimeServer *srv, const char *type, const char *reason,
                         const char *message)
{
	if (!w->db)
		return;
	StoreError err;
	int64_t r = runtime_event_record(w->db, w->epoch, srv->uid, type, reason, message, &err);
	if (r == -ESTALE) {
		log_srv(LOG_WARNING, srv, NULL, NULL,
		        "event write fenced: a newer lease epoch exists than %" PRId64, w->epoch);
		w->fenced = true;
		return;
	}
	if (r < 0) {
		log_srv(LOG_WARNING, srv, NULL, NULL, "recording event %s failed: %s", reason,
		        err.message);
		return;
	}
	metrics_counter_add(w->c->metrics, "zlh_events_total",
	                    METRIC_L("type", type, "reason", reason), 1);
}

static void hook_event(void *ctx, const RuntimeServer *srv, const char *type, const char *reason,
                       const char *message)
{
	record_event(ctx, srv, type, reason, message);
}

static bool hook_stopping(void *ctx)
{
	Worker *w = ctx;
	return stopping(w->c);
}

static const RuntimeHooks hooks = {
    .lease_valid = hook_lease_valid,
    .rate_wait = hook_rate_wait,
    .task_slot_acquire = hook_task_acquire,
    .task_slot_release = hook_task_release,
    .count_call = hook_count_call,
    .event = hook_event,
    .stopping = hook_stopping,
};

static RecEnv make_env(Worker *w, size_t i)
{
	return (RecEnv){.cfg = w->c->cfg,
	                .db = w->db,
	                .epoch = w->epoch,
	                .state = w->c->rec_state[i],
	                .wstate = w->wstate[i],
	                .hooks = &hooks,
	                .hooks_ctx = w};
}

/* --- snapshots ------------------------------------------------------------------------ */

static void snap_unref(Controller *c, size_t i, Snap *s)
{
	if (!s)
		return;
	SnapCache *sc = &c->snaps[i];
	pthread_mutex_lock(&sc->lock);
	bool last = --s->refs == 0;
	pthread_mutex_unlock(&sc->lock);
	if (last) {
		if (c->recs[i]->snapshot_free && s->data)
			c->recs[i]->snapshot_free(s->data);
		free(s);
	}
}

/* A snapshot of reconciler i taken at or after `need` (mono ms), observing
 * when none is: one observer at a time; the others wait for its result. */
static int snap_get(Worker *w, size_t i, int64_t need, Snap **ret, char *err, size_t errlen)
{
	Controller *c = w->c;
	SnapCache *sc = &c->snaps[i];
	const Reconciler *rec = c->recs[i];
	pthread_mutex_lock(&sc->lock);
	for (;;) {
		int64_t want = need > sc->min_fresh ? need : sc->min_fresh;
		if (sc->cur && sc->cur->taken_at >= want) {
			sc->cur->refs++;
			*ret = sc->cur;
			pthread_mutex_unlock(&sc->lock);
			return 0;
		}
		int64_t now = now_mono_ms();
		if (sc->last_error && sc->last_error_at >= want &&
		    now - sc->last_error_at < OBSERVE_FAIL_HOLD_MS) {
			int r = sc->last_error;
			snprintf(err, errlen, "%s", sc->error);
			pthread_mutex_unlock(&sc->lock);
			return r;
		}
		if (sc->observing) {
			pthread_cond_wait(&sc->cond, &sc->lock);
			continue;
		}
		sc->observing = true;
		sc->observing_since = now;
		pthread_mutex_unlock(&sc->lock);

		RecEnv env = make_env(w, i);
		void *data = NULL;
		int64_t t0 = now_mono_ms();
		int r = rec->observe(&env, &data);
		metrics_counter_add(
		    c->metrics, "zlh_observe_total",
		    METRIC_L("reconciler", rec->name, "result", r < 0 ? "error" : "ok"), 1);
		Snap *s = NULL;
		if (r >= 0) {
			s = calloc(1, sizeof *s);
			if (!s) {
				if (rec->snapshot_free && data)
					rec->snapshot_free(data);
				r = -ENOMEM;
			} else {
				s->data = data;
				s->taken_at = t0;
				s->refs = 1;
			}
		}
		pthread_mutex_lock(&sc->lock);
		sc->observing = false;
		if (s) {
			Snap *old = sc->cur;
			sc->cur = s;
			sc->last_error = 0;
			if (old && --old->refs == 0) {
				pthread_mutex_unlock(&sc->lock);
				if (rec->snapshot_free && old->data)
					rec->snapshot_free(old->data);
				free(old);
				pthread_mutex_lock(&sc->lock);
			}
		} else {
			sc->last_error = r;
			sc->last_error_at = t0;
			snprintf(sc->error, sizeof sc->error, "observe failed: %s", strerror(-r));
			log_fields(LOG_WARNING, LOG_F("reconciler", rec->name),
			           "bulk observation failed: %s", strerror(-r));
		}
		pthread_cond_broadcast(&sc->cond);
	}
}

/* Marks every snapshot stale (a resync pass). */
static void snaps_invalidate(Controller *c)
{
	int64_t now = now_mono_ms();
	for (size_t i = 0; i < c->n_recs; i++) {
		pthread_mutex_lock(&c->snaps[i].lock);
		c->snaps[i].min_fresh = now;
		pthread_mutex_unlock(&c->snaps[i].lock);
	}
}

/* --- one reconcile --------------------------------------------------------------------- */

typedef enum Outcome {
	OUT_DONE, /* forget; requeue only if asked */
	OUT_RETRY, /* backoff */
	OUT_GONE, /* the server no longer exists */
	OUT_NOT_LEADER, /* lease lost or fenced: drop the key */
} Outcome;

static bool db_ok(Worker *w)
{
	if (w->db && PQstatus(w->db) == CONNECTION_OK)
		return true;
	if (w->db) {
		PQfinish(w->db);
		w->db = NULL;
	}
	StoreError err;
	int r = store_connect(w->c->cfg->database, &w->db, &err);
	if (r < 0) {
		log_fields(LOG_WARNING, NULL, "worker %d: database connection failed: %s", w->idx,
		           err.message);
		return false;
	}
	char app[64];
	snprintf(app, sizeof app, "zlh-controller worker %d", w->idx);
	if (runtime_session_setup(w->db, 30000, app, &err) < 0) {
		log_fields(LOG_WARNING, NULL, "worker %d: session setup failed: %s", w->idx,
		           err.message);
		PQfinish(w->db);
		w->db = NULL;
		return false;
	}
	return true;
}

static void db_error(Worker *w, int r)
{
	if (store_errno_is_connection(r) || (w->db && PQstatus(w->db) != CONNECTION_OK)) {
		PQfinish(w->db);
		w->db = NULL;
	}
}

static void set_error(char *buf, size_t n, const char *fmt, ...) _printf_(3, 4);
static void set_error(char *buf, size_t n, const char *fmt, ...)
{
	if (buf[0])
		return; /* keep the first */
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, n, fmt, ap);
	va_end(ap);
}

typedef struct RunState {
	char last_error[512];
	bool failed; /* something failed: back off */
	bool acted;
	bool lost; /* lease lost or fenced: stop, write nothing */
	bool plan_failed; /* a plan could not be made: observedGeneration stays */
	bool phase_failed; /* a plan set failed */
	bool act_asked; /* an act said when to look again */
	int64_t requeue_ms;
} RunState;

static void requeue_min(RunState *st, int64_t ms)
{
	if (ms > 0 && (st->requeue_ms == 0 || ms < st->requeue_ms))
		st->requeue_ms = ms;
}

typedef enum PerformResult {
	PERFORM_DONE, /* every action done */
	PERFORM_STOPPED, /* failed, waiting, stopping or the lease is gone */
	PERFORM_REPLAN, /* an act observed something: plan again now */
} PerformResult;

/* Performs plan's actions for reconciler i, in order. */
static PerformResult perform(Worker *w, size_t i, RuntimeServer *srv, Snap *snap, void *obs,
                             Plan *plan, RunState *st)
{
	Controller *c = w->c;
	const Reconciler *rec = c->recs[i];
	for (size_t a = 0; a < plan->n_actions; a++) {
		const Action *ac = &plan->actions[a];
		if (stopping(c))
			return PERFORM_STOPPED;
		if (ac->mutating && !lease_valid_for(&c->lease, w->epoch, -1)) {
			log_srv(LOG_WARNING, srv, rec->name, ac->name,
			        "lease not valid (epoch %" PRId64 "): not acting", w->epoch);
			st->lost = true;
			return PERFORM_STOPPED;
		}
		/* The finalizer goes in before anything exists to clean up. */
		if (rec->uses_finalizer && !srv->deleting &&
		    !runtime_server_has_finalizer(srv, rec->name)) {
			StoreError err;
			int r =
			    runtime_finalizer_set(w->db, w->epoch, srv->uid, rec->name, true, &err);
			if (r == -ESTALE) {
				w->fenced = true;
				st->lost = true;
				return PERFORM_STOPPED;
			}
			if (r < 0) {
				db_error(w, r);
				st->failed = true;
				set_error(st->last_error, sizeof st->last_error,
				          "adding finalizer %s: %s", rec->name, err.message);
				return PERFORM_STOPPED;
			}
			char **nf = realloc(srv->finalizers,
			                    (strv_len(srv->finalizers) + 2) * sizeof(char *));
			if (nf) {
				size_t n = strv_len(nf);
				nf[n] = strdup(rec->name);
				nf[n + 1] = NULL;
				srv->finalizers = nf;
			}
		}
		if (ac->system && hook_rate_wait(w, ac->system) < 0)
			return PERFORM_STOPPED; /* stopping */
		if (ac->mutating && !lease_valid_for(&c->lease, w->epoch, -1)) {
			st->lost = true;
			return PERFORM_STOPPED;
		}
		RecEnv env = make_env(w, i);
		ActResult res = {0};
		int64_t t0 = now_mono_ms();
		int r = rec->act(&env, srv, snap ? snap->data : NULL, obs, ac, &res);
		int64_t dt = now_mono_ms() - t0;
		st->acted = true;
		if (!res.snapshot_updated && rec->observe)
			fresh_set(c, srv->uid, i, now_mono_ms());
		metrics_counter_add(c->metrics, "zlh_actions_total",
		                    METRIC_L("reconciler", rec->name, "action", ac->name, "result",
		                             r < 0 ? "error" : "ok"),
		                    1);
		char dms[24];
		snprintf(dms, sizeof dms, "%" PRId64, dt);
		if (r < 0) {
			const char *why = res.error[0] ? res.error : strerror(-r);
			log_fields(LOG_WARNING,
			           LOG_F("uid", srv->uid, "name", srv->name, "reconciler",
			                 rec->name, "action", ac->name, "duration_ms", dms),
			           "%s failed: %s", ac->description[0] ? ac->description : ac->name,
			           why);
			st->failed = true;
			set_error(st->last_error, sizeof st->last_error, "%s: %s: %s", rec->name,
			          ac->name, why);
			if (w->fenced)
				st->lost = true;
			return PERFORM_STOPPED;
		}
		log_fields(LOG_INFO,
		           LOG_F("uid", srv->uid, "name", srv->name, "reconciler", rec->name,
		                 "action", ac->name, "duration_ms", dms),
		           "%s", ac->description[0] ? ac->description : ac->name);
		if (w->fenced) {
			st->lost = true;
			return PERFORM_STOPPED;
		}
		if (res.requeue_after_ms > 0) {
			requeue_min(st, res.requeue_after_ms);
			st->act_asked = true;
			return PERFORM_STOPPED;
		}
		if (res.replan)
			return PERFORM_REPLAN;
	}
	return PERFORM_DONE;
}

static const char *outcome_name(const RunState *st, bool paused)
{
	if (st->lost)
		return "lost_lease";
	if (st->failed)
		return "error";
	return paused ? "paused" : "ok";
}

static Outcome reconcile_key(Worker *w, const char *uid)
{
	Controller *c = w->c;
	w->epoch = lease_epoch(&c->lease);
	w->fenced = false;
	if (!lease_valid_for(&c->lease, w->epoch, 0))
		return OUT_NOT_LEADER;
	if (!db_ok(w))
		return OUT_RETRY;

	_cleanup_runtime_server_ RuntimeServer *srv = NULL;
	StoreError err;
	int r = runtime_server_load(w->db, uid, &srv, &err);
	if (r == -ENOENT || r == -EINVAL) {
		fresh_drop(c, uid);
		return OUT_GONE;
	}
	if (r < 0) {
		db_error(w, r);
		log_fields(LOG_WARNING, LOG_F("uid", uid), "loading server failed: %s",
		           err.message);
		return OUT_RETRY;
	}

	RunState st = {0};
	StatusInput in = {.old_conditions = srv->conditions, .paused = srv->paused};
	bool all_finalized = true;

	for (size_t k = 0; k < c->n_recs && !st.lost; k++) {
		/* Deletion runs the finalizers in reverse dependency order. */
		size_t i = srv->deleting ? c->n_recs - 1 - k : k;
		const Reconciler *rec = c->recs[i];
		for (const CondType *t = rec->conditions; t && *t != _COND_TYPE_MAX; t++)
			if (*t >= 0 && *t < _COND_TYPE_MAX)
				in.owned[*t] = true;
		if (srv->deleting && !all_finalized)
			continue; /* a later step waits for this one */
		if (srv->deleting && rec->uses_finalizer &&
		    !runtime_server_has_finalizer(srv, rec->name))
			continue; /* nothing of it to clean up */

		int64_t t0 = now_mono_ms();
		Snap *snap = NULL;
		void *obs = NULL;
		Plan plan;
		memset(&plan, 0, sizeof plan);
		char why[256] = "";
		bool ok = true;

		if (rec->observe) {
			r = snap_get(w, i, fresh_get(c, uid, i), &snap, why, sizeof why);
			if (r < 0) {
				ok = false;
				set_error(st.last_error, sizeof st.last_error, "%s: %s", rec->name,
				          why);
			}
		}
		if (ok && rec->observe_server) {
			RecEnv env = make_env(w, i);
			r = rec->observe_server(&env, srv, snap ? snap->data : NULL, &obs);
			if (r < 0) {
				ok = false;
				set_error(st.last_error, sizeof st.last_error, "%s: observing: %s",
				          rec->name, strerror(-r));
			}
		}
		/* plan -> act, again while an act asks to re-plan on what it
		 * just observed (bounded). */
		for (int round = 0; ok; round++) {
			if (srv->deleting)
				r = rec->finalize
				        ? rec->finalize(c->cfg, srv, snap ? snap->data : NULL, obs,
				                        &plan)
				        : 0;
			else
				r = rec->plan(c->cfg, srv, snap ? snap->data : NULL, obs, &plan);
			if (r < 0) {
				ok = false;
				set_error(st.last_error, sizeof st.last_error, "%s: plan: %s",
				          rec->name, strerror(-r));
				break;
			}
			if (srv->paused || plan.n_actions == 0)
				break;
			if (perform(w, i, srv, snap, obs, &plan, &st) != PERFORM_REPLAN)
				break;
			if (round + 1 >= MAX_REPLAN_ROUNDS) {
				requeue_min(&st, ACT_REQUEUE_MS);
				break;
			}
			plan_clear(&plan);
		}
		if (!ok) {
			st.failed = true;
			st.plan_failed = true;
			if (srv->deleting)
				all_finalized = false;
		} else {
			for (const CondType *t = rec->conditions; t && *t != _COND_TYPE_MAX; t++)
				if (*t >= 0 && *t < COND_READY) {
					in.planned[*t] = true;
					in.reports[*t] = plan.conditions[*t];
				}
			if (plan.failed)
				st.phase_failed = true;
			requeue_min(&st, plan.requeue_after_ms);
			if (srv->deleting) {
				if (plan.n_actions > 0 || srv->paused) {
					all_finalized = false;
				} else if (rec->uses_finalizer &&
				           runtime_server_has_finalizer(srv, rec->name)) {
					r = runtime_finalizer_set(w->db, w->epoch, srv->uid,
					                          rec->name, false, &err);
					if (r == -ESTALE) {
						w->fenced = true;
						st.lost = true;
					} else if (r < 0) {
						db_error(w, r);
						st.failed = true;
						all_finalized = false;
						set_error(st.last_error, sizeof st.last_error,
						          "removing finalizer %s: %s", rec->name,
						          err.message);
					} else {
						/* Drop it from the local copy too. */
						for (char **f = srv->finalizers; *f; f++)
							if (strcmp(*f, rec->name) == 0) {
								free(*f);
								do
									f[0] = f[1];
								while (*++f);
								break;
							}
						log_srv(LOG_INFO, srv, rec->name, NULL,
						        "finalizer done");
					}
				}
			}
		}
		plan_clear(&plan);
		if (obs && rec->obs_free)
			rec->obs_free(obs);
		snap_unref(c, i, snap);

		double secs = (double)(now_mono_ms() - t0) / 1000.0;
		const char *res = outcome_name(&st, srv->paused);
		metrics_counter_add(c->metrics, "zlh_reconcile_total",
		                    METRIC_L("reconciler", rec->name, "result", res), 1);
		metrics_histogram_observe(c->metrics, "zlh_reconcile_duration_seconds",
		                          METRIC_L("reconciler", rec->name, "result", res), secs);
	}
	if (w->fenced)
		st.lost = true;
	if (st.lost)
		return OUT_NOT_LEADER;

	/* Deletion complete: the row goes (status and allocations with it). */
	if (srv->deleting && all_finalized && !st.failed) {
		bool blocked = false;
		for (char **f = srv->finalizers; *f; f++) {
			set_error(st.last_error, sizeof st.last_error,
			          "waiting for finalizer %s, whose reconciler is not enabled", *f);
			blocked = true;
		}
		if (!blocked) {
			r = runtime_server_remove(w->db, w->epoch, srv->uid, &err);
			if (r == -ESTALE) {
				w->fenced = true;
				return OUT_NOT_LEADER;
			}
			if (r == 1) {
				log_srv(LOG_NOTICE, srv, NULL, NULL, "deleted");
				record_event(w, srv, "Normal", "Deleted",
				             "every finalizer is done");
				fresh_drop(c, uid);
				return OUT_GONE;
			}
			if (r < 0) {
				db_error(w, r);
				st.failed = true;
				set_error(st.last_error, sizeof st.last_error,
				          "removing the server: %s", err.message);
			}
			/* r == 0: a finalizer appeared meanwhile; next pass. */
		}
	}

	char now[40];
	time_format_rfc3339(now_wall_ms(), now, sizeof now);
	in.now = now;
	_cleanup_json_ json_t *conds = NULL;
	bool ready = false;
	if (status_build_conditions(&in, &conds, &ready) < 0)
		return OUT_RETRY;
	ServerPhase phase = status_phase(srv, conds, ready, st.phase_failed);
	int64_t observed = st.plan_failed ? srv->observed_generation : srv->generation;
	const char *last_error = st.last_error[0] ? st.last_error : NULL;
	bool changed = st.acted || phase != srv->phase || observed != srv->observed_generation ||
	               !status_conditions_equal(conds, srv->conditions) ||
	               (last_error == NULL) != (srv->last_error == NULL) ||
	               (last_error && srv->last_error && strcmp(last_error, srv->last_error) != 0);
	if (changed) {
		r = runtime_status_write(w->db, w->epoch, srv->uid, observed, phase, conds,
		                         last_error, &err);
		if (r == -ESTALE) {
			log_srv(LOG_WARNING, srv, NULL, NULL,
			        "status write fenced: a newer lease epoch exists than %" PRId64
			        "; stepping down",
			        w->epoch);
			w->fenced = true;
			return OUT_NOT_LEADER;
		}
		if (r == -ENOENT) {
			fresh_drop(c, uid);
			return OUT_GONE;
		}
		if (r == -EBUSY) {
			requeue_min(&st, STATUS_BUSY_RETRY_MS);
		} else if (r < 0) {
			db_error(w, r);
			log_srv(LOG_WARNING, srv, NULL, NULL, "status write failed: %s",
			        err.message);
			return OUT_RETRY;
		}
	}
	if (phase != srv->phase) {
		const char *from = runtime_phase_to_string(srv->phase);
		const char *to = runtime_phase_to_string(phase);
		json_t *rc = json_array_get(conds, json_array_size(conds) - 1);
		const char *rmsg = json_string_value(json_object_get(rc, "message"));
		char msg[1024];
		snprintf(msg, sizeof msg, "%s -> %s: %s", from, to, rmsg ? rmsg : "");
		log_srv(phase == PHASE_DEGRADED || phase == PHASE_FAILED ? LOG_WARNING : LOG_NOTICE,
		        srv, NULL, NULL, "phase %s", msg);
		record_event(
		    w, srv, phase == PHASE_DEGRADED || phase == PHASE_FAILED ? "Warning" : "Normal",
		    to, msg);
	}
	if (st.failed && last_error &&
	    (!srv->last_error || strcmp(last_error, srv->last_error) != 0))
		record_event(w, srv, "Warning", "ReconcileError", last_error);
	if (w->fenced)
		return OUT_NOT_LEADER;

	if (st.failed)
		return OUT_RETRY;
	if (st.acted && !st.act_asked)
		requeue_min(&st, ACT_REQUEUE_MS);
	if (st.requeue_ms > 0)
		(void)!queue_add_after(c->queue, uid, st.requeue_ms);
	return OUT_DONE;
}

/* --- workers -------------------------------------------------------------------------- */

static void *worker_main(void *arg)
{
	Worker *w = arg;
	Controller *c = w->c;
	for (size_t i = 0; i < c->n_recs; i++) {
		const Reconciler *rec = c->recs[i];
		if (!rec->worker_init) {
			w->wstate_ok[i] = true;
			continue;
		}
		int r = rec->worker_init(c->cfg, c->rec_state[i], &w->wstate[i]);
		if (r < 0)
			log_fields(LOG_ERR, LOG_F("reconciler", rec->name),
			           "worker %d: reconciler setup failed: %s", w->idx, strerror(-r));
		else
			w->wstate_ok[i] = true;
	}
	for (;;) {
		char *key = NULL;
		int r = queue_get(c->queue, -1, &key);
		if (r == -ESHUTDOWN)
			break;
		if (r < 0)
			continue;
		atomic_fetch_add(&c->in_flight, 1);
		Outcome o = reconcile_key(w, key);
		atomic_fetch_sub(&c->in_flight, 1);
		switch (o) {
		case OUT_DONE:
		case OUT_GONE:
			queue_forget(c->queue, key);
			break;
		case OUT_NOT_LEADER:
			queue_forget(c->queue, key);
			/* Only the margin ran short (a late renewal) and no newer
			 * epoch was seen: look again soon. Otherwise the next
			 * term's full resync brings the key back. */
			if (!w->fenced && lease_epoch(&c->lease) == w->epoch && w->epoch != 0)
				(void)!queue_add_after(c->queue, key, 1000);
			break;
		case OUT_RETRY: {
			int64_t d = queue_add_rate_limited(c->queue, key);
			if (d >= 0)
				log_fields(LOG_DEBUG, LOG_F("uid", key), "retry in %" PRId64 " ms",
				           d);
			break;
		}
		}
		if (w->fenced) {
			/* A newer epoch exists: this process is not the leader,
			 * whatever its clock says. */
			lease_step_down(&c->lease);
			metrics_counter_add(c->metrics, "zlh_fenced_writes_total", NULL, 1);
		}
		queue_done(c->queue, key);
		free(key);
	}
	for (size_t i = 0; i < c->n_recs; i++)
		if (w->wstate[i] && c->recs[i]->worker_done)
			c->recs[i]->worker_done(w->wstate[i]);
	if (w->db)
		PQfinish(w->db);
	w->db = NULL;
	atomic_store(&w->finished, true);
	return NULL;
}

/* --- metrics and health ------------------------------------------------------------------ */

static void collect(Metrics *m, void *userdata)
{
	Controller *c = userdata;
	QueueStats qs;
	queue_stats(c->queue, &qs);
	metrics_gauge_set(m, "zlh_queue_depth", NULL, (double)qs.ready);
	metrics_gauge_set(m, "zlh_queue_delayed", NULL, (double)qs.delayed);
	metrics_gauge_set(m, "zlh_work_in_flight", NULL, (double)atomic_load(&c->in_flight));
	bool leader = lease_is_leader(&c->lease);
	metrics_gauge_set(m, "zlh_leader", NULL, leader ? 1 : 0);
	metrics_gauge_set(m, "zlh_lease_epoch", NULL, leader ? (double)lease_epoch(&c->lease) : 0);
	metrics_gauge_set(m, "zlh_last_pass_timestamp_seconds", NULL,
	                  (double)atomic_load(&c->last_pass_wall) / 1000.0);
	pthread_mutex_lock(&c->stat_lock);
	PhaseCounts pc = c->counts;
	bool ok = c->counts_ok;
	pthread_mutex_unlock(&c->stat_lock);
	if (ok)
		for (int p = 0; p < _PHASE_MAX; p++)
			metrics_gauge_set(m, "zlh_servers",
			                  METRIC_L("phase", runtime_phase_to_string(p)),
			                  (double)pc.by_phase[p]);
}

static bool health(void *userdata, char *reason, size_t n)
{
	Controller *c = userdata;
	int64_t now = now_mono_ms();
	int64_t slack = 3 * c->cfg->controller.resync_ms + 10000;
	if (stopping(c)) {
		snprintf(reason, n, "stopping");
		return false;
	}
	if (now - atomic_load(&c->last_loop_mono) > 10000 + c->cfg->controller.lease_ms) {
		snprintf(reason, n, "main loop stalled");
		return false;
	}
	if (!atomic_load(&c->db_up)) {
		snprintf(reason, n, "database connection lost");
		return false;
	}
	if (!lease_is_leader(&c->lease)) {
		snprintf(reason, n, "ok (standby)");
		return true;
	}
	int64_t last = atomic_load(&c->last_pass_mono);
	int64_t since = atomic_load(&c->leader_since_mono);
	if (last < since) {
		if (now - since > slack) {
			snprintf(reason, n, "no pass completed in %" PRId64 " s as leader",
			         (now - since) / 1000);
			return false;
		}
		return true;
	}
	if (now - last > slack) {
		snprintf(reason, n, "last pass completed %" PRId64 " s ago", (now - last) / 1000);
		return false;
	}
	return true;
}

/* --- the main loop ---------------------------------------------------------------------- */

static void format_status(Controller *c, char *buf, size_t n)
{
	pthread_mutex_lock(&c->stat_lock);
	PhaseCounts pc = c->counts;
	bool ok = c->counts_ok;
	pthread_mutex_unlock(&c->stat_lock);
	if (!atomic_load(&c->db_up)) {
		snprintf(buf, n, "%s; database unreachable, reconnecting",
		         lease_is_leader(&c->lease) ? "leader" : "standby");
		return;
	}
	if (!lease_is_leader(&c->lease)) {
		if (c->lease.other[0])
			snprintf(buf, n, "standby; leader is %s", c->lease.other);
		else
			snprintf(buf, n, "standby");
		return;
	}
	int len = snprintf(buf, n, "leader epoch %" PRId64, lease_epoch(&c->lease));
	if (!ok || len < 0 || (size_t)len >= n)
		return;
	int64_t conv = pc.by_phase[PHASE_PENDING] + pc.by_phase[PHASE_PROVISIONING];
	len += snprintf(buf + len, n - (size_t)len,
	                "; %" PRId64 " servers: %" PRId64 " ready, %" PRId64 " converging",
	                pc.total, pc.by_phase[PHASE_READY], conv);
	static const struct {
		ServerPhase p;
		const char *word;
	} extra[] = {{PHASE_STOPPED, "stopped"},
	             {PHASE_DEGRADED, "degraded"},
	             {PHASE_FAILED, "failed"},
	             {PHASE_DELETING, "deleting"}};
	for (size_t i = 0; i < ELEMENTSOF(extra) && len > 0 && (size_t)len < n; i++)
		if (pc.by_phase[extra[i].p] > 0)
			len += snprintf(buf + len, n - (size_t)len, ", %" PRId64 " %s",
			                pc.by_phase[extra[i].p], extra[i].word);
}

static void main_conn_lost(Controller *c, const char *why)
{
	if (c->main_conn) {
		PQfinish(c->main_conn);
		c->main_conn = NULL;
	}
	if (atomic_load(&c->db_up))
		log_warning("database connection lost: %s", why);
	atomic_store(&c->db_up, false);
	if (lease_epoch(&c->lease) != 0) {
		log_warning("stepping down: the lease cannot be renewed without the database");
		lease_step_down(&c->lease);
	}
	queue_pause(c->queue, true);
}

static int main_conn_open(Controller *c)
{
	StoreError err;
	PGconn *conn = NULL;
	int r = store_connect(c->cfg->database, &conn, &err);
	if (r < 0) {
		log_debug("database reconnect failed: %s", err.message);
		return r;
	}
	int64_t st = c->cfg->controller.lease_ms / 3;
	if ((r = runtime_session_setup(conn, st > 1000 ? st : 1000, "zlh-controller main", &err)) <
	        0 ||
	    (r = runtime_listen(conn, &err)) < 0) {
		log_warning("database session setup failed: %s", err.message);
		PQfinish(conn);
		return r;
	}
	c->main_conn = conn;
	atomic_store(&c->db_up, true);
	return 0;
}

static void resync(Controller *c)
{
	_cleanup_strv_free_ char **uids = NULL;
	StoreError err;
	int n = runtime_server_keys(c->main_conn, &uids, &err);
	if (n < 0) {
		if (store_errno_is_connection(n) || PQstatus(c->main_conn) != CONNECTION_OK)
			main_conn_lost(c, err.message);
		else
			log_warning("resync: listing servers failed: %s", err.message);
		return;
	}
	snaps_invalidate(c);
	for (int i = 0; i < n; i++)
		(void)!queue_add(c->queue, uids[i]);
	c->pass_pending = true;
	metrics_counter_add(c->metrics, "zlh_resyncs_total", NULL, 1);
	log_debug("resync: %d servers queued", n);
}

static void refresh_counts(Controller *c)
{
	PhaseCounts pc;
	StoreError err;
	int r = runtime_phase_counts(c->main_conn, &pc, &err);
	if (r < 0) {
		if (store_errno_is_connection(r) || PQstatus(c->main_conn) != CONNECTION_OK)
			main_conn_lost(c, err.message);
		return;
	}
	pthread_mutex_lock(&c->stat_lock);
	c->counts = pc;
	c->counts_ok = true;
	pthread_mutex_unlock(&c->stat_lock);
}

/* Handles pending NOTIFY zlh_work payloads: a uid queues that server, an
 * empty payload asks for a full pass, lease-released:<name> makes a standby
 * claim at once. false when the connection is lost. */
static bool drain_notifies(Controller *c, int64_t *next_resync)
{
	_cleanup_strv_free_ char **payloads = NULL;
	StoreError err;
	int k = runtime_notifies(c->main_conn, 100000, &payloads, &err);
	if (k < 0) {
		main_conn_lost(c, err.message);
		return false;
	}
	for (int j = 0; j < k; j++) {
		metrics_counter_add(c->metrics, "zlh_notifications_total", NULL, 1);
		if (str_startswith(payloads[j], "lease-released:")) {
			if (!lease_is_leader(&c->lease))
				lease_tick_soon(&c->lease);
		} else if (lease_is_leader(&c->lease)) {
			if (payloads[j][0])
				(void)!queue_add(c->queue, payloads[j]);
			else
				*next_resync = 0;
		}
	}
	return true;
}

static bool handle_signal(Controller *c)
{
	struct signalfd_siginfo si;
	bool stop = false;
	while (read(c->sigfd, &si, sizeof si) == (ssize_t)sizeof si) {
		if (si.ssi_signo == SIGTERM || si.ssi_signo == SIGINT) {
			log_notice("%s received: stopping",
			           si.ssi_signo == SIGTERM ? "SIGTERM" : "SIGINT");
			stop = true;
		} else if (si.ssi_signo == SIGHUP) {
			log_notice(
			    "SIGHUP: the configuration is read at start only; restart the service "
			    "to apply changes");
		}
	}
	return stop;
}

int controller_run(Controller *c)
{
	int64_t wd_usec = 0;
	uint64_t usec = 0;
	if (sd_watchdog_enabled(0, &usec) > 0)
		wd_usec = (int64_t)usec;
	int64_t wd_ms = wd_usec / 1000;
	int64_t ping_every = wd_ms > 0 ? (wd_ms / 4 > 0 ? wd_ms / 4 : 1) : 0;
	if (ping_every > 1000)
		ping_every = 1000;

	for (size_t i = 0; i < c->n_workers; i++) {
		Worker *w = &c->workers[i];
		if (pthread_create(&w->thread, NULL, worker_main, w) != 0) {
			log_error("cannot start worker %zu", i);
			return 1;
		}
		w->started = true;
	}
	if (c->cfg->controller.metrics_listen) {
		int r = metrics_server_start(c->metrics, c->cfg->controller.metrics_listen, health,
		                             c, &c->msrv);
		if (r < 0) {
			log_error("cannot serve metrics on %s: %s",
			          c->cfg->controller.metrics_listen, strerror(-r));
			atomic_store(&c->stopping, true);
			queue_shutdown(c->queue);
			for (size_t i = 0; i < c->n_workers; i++)
				pthread_join(c->workers[i].thread, NULL);
			c->drained = true;
			return 1;
		}
	}

	atomic_store(&c->last_loop_mono, now_mono_ms());
	sd_notify(0, "READY=1\nSTATUS=starting");
	log_notice("zlh-controller running: %zu reconciler(s), %zu worker(s), lease holder %s",
	           c->n_recs, c->n_workers, c->lease.holder);

	int64_t next_resync = 0, next_counts = 0, reconnect_at = 0, reconnect_delay = 500;
	int64_t last_ping = 0;
	char last_status[256] = "";
	bool was_leader = false;

	for (;;) {
		int64_t now = now_mono_ms();
		atomic_store(&c->last_loop_mono, now);

		/* Reconnect (then LISTEN again; leadership and a full resync
		 * follow through the lease). */
		if (!c->main_conn && now >= reconnect_at) {
			if (main_conn_open(c) == 0) {
				log_notice(
				    "database connected; listening on " RUNTIME_NOTIFY_CHANNEL);
				metrics_counter_add(c->metrics, "zlh_db_reconnects_total", NULL, 1);
				reconnect_delay = 500;
				lease_tick_soon(&c->lease);
				next_counts = 0;
			} else {
				reconnect_at = now + reconnect_delay;
				reconnect_delay =
				    reconnect_delay * 2 > 5000 ? 5000 : reconnect_delay * 2;
			}
		}

		/* The lease. */
		if (c->main_conn && lease_next_tick_ms(&c->lease) == 0) {
			bool changed = false;
			StoreError err;
			int r = lease_tick(&c->lease, c->main_conn, &changed, &err);
			if (r < 0) {
				if (store_errno_is_connection(r) ||
				    PQstatus(c->main_conn) != CONNECTION_OK)
					main_conn_lost(c, err.message);
				else
					log_warning("lease renewal failed: %s; stepping down",
					            err.message);
			}
		}
		bool leader = lease_is_leader(&c->lease);
		if (leader && !was_leader) {
			log_notice("leader: holding the lease at epoch %" PRId64,
			           lease_epoch(&c->lease));
			atomic_store(&c->leader_since_mono, now_mono_ms());
			queue_pause(c->queue, false);
			next_resync = 0;
		} else if (!leader && was_leader) {
			log_warning("standby: the lease is lost%s%s",
			            c->lease.other[0] ? "; leader is " : "", c->lease.other);
			queue_pause(c->queue, true);
		}
		was_leader = leader;

		/* The full pass. */
		now = now_mono_ms();
		if (leader && c->main_conn && now >= next_resync) {
			resync(c);
			next_resync = now + c->cfg->controller.resync_ms;
		}
		if (c->pass_pending && leader) {
			QueueStats qs;
			queue_stats(c->queue, &qs);
			if (qs.ready == 0 && qs.processing == 0) {
				c->pass_pending = false;
				atomic_store(&c->last_pass_mono, now_mono_ms());
				atomic_store(&c->last_pass_wall, now_wall_ms());
			}
		}
		if (c->main_conn && now >= next_counts) {
			refresh_counts(c);
			next_counts = now + COUNTS_EVERY_MS;
		}

		/* systemd. */
		now = now_mono_ms();
		if (ping_every > 0 && now - last_ping >= (ping_every < 100 ? ping_every : 100)) {
			sd_notify(0, "WATCHDOG=1");
			last_ping = now;
		}
		char status[256];
		format_status(c, status, sizeof status);
		if (strcmp(status, last_status) != 0) {
			sd_notifyf(0, "STATUS=%s", status);
			snprintf(last_status, sizeof last_status, "%s", status);
		}

		if (c->main_conn && !drain_notifies(c, &next_resync))
			continue;

		/* Wait for the next thing to do. */
		int64_t timeout = 1000;
		if (c->main_conn) {
			int64_t t = lease_next_tick_ms(&c->lease);
			timeout = t < timeout ? t : timeout;
		} else {
			int64_t t = reconnect_at - now;
			timeout = t < timeout ? t : timeout;
		}
		if (leader) {
			int64_t t = next_resync - now;
			timeout = t < timeout ? t : timeout;
			if (c->pass_pending && timeout > 100)
				timeout = 100;
		}
		if (ping_every > 0 && ping_every < timeout)
			timeout = ping_every;
		if (timeout < 0)
			timeout = 0;
		struct pollfd p[2] = {{c->sigfd, POLLIN, 0}, {-1, POLLIN, 0}};
		if (c->main_conn)
			p[1].fd = PQsocket(c->main_conn);
		int n = poll(p, 2, (int)timeout);
		if (n < 0 && errno != EINTR) {
			log_error("poll: %s", strerror(errno));
			break;
		}
		if (n > 0 && (p[0].revents & POLLIN) && handle_signal(c))
			break;
		/* Notifications: also those libpq read off the socket while
		 * the loop ran its own queries (they sit in libpq's queue and
		 * would not make the socket readable again). */
		if (c->main_conn && !drain_notifies(c, &next_resync))
			continue;
	}

	/* SIGTERM: no new work, a bounded drain, then hand the lease over. */
	sd_notify(0, "STOPPING=1\nSTATUS=stopping: draining in-flight work");
	atomic_store(&c->stopping, true);
	c->stop_flag = true;
	queue_shutdown(c->queue);
	struct timespec dl;
	clock_gettime(CLOCK_REALTIME, &dl);
	int64_t ms = c->cfg->controller.drain_timeout_ms;
	dl.tv_sec += ms / 1000;
	dl.tv_nsec += (ms % 1000) * 1000000L;
	if (dl.tv_nsec >= 1000000000L) {
		dl.tv_sec++;
		dl.tv_nsec -= 1000000000L;
	}
	size_t left = 0;
	for (size_t i = 0; i < c->n_workers; i++) {
		Worker *w = &c->workers[i];
		if (!w->started)
			continue;
		if (pthread_timedjoin_np(w->thread, NULL, &dl) == 0)
			w->started = false;
		else
			left++;
	}
	c->drained = left == 0;
	if (!c->drained)
		log_warning("drain timed out after %" PRId64 " ms: %zu worker(s) still busy", ms,
		            left);
	/* Step down locally first: a straggler's next lease check fails. */
	StoreError err;
	int64_t epoch = lease_epoch(&c->lease);
	int r = lease_release(&c->lease, c->main_conn, &err);
	if (r > 0)
		log_notice("lease released (epoch %" PRId64 ")", epoch);
	else if (r < 0)
		log_warning("releasing the lease failed: %s", err.message);
	c->msrv = metrics_server_stop(c->msrv);
	log_notice("stopped");
	return 0;
}

/* --- setup ------------------------------------------------------------------------------- */

int controller_new(const ControllerOptions *o, Controller **ret)
{
	const Config *cfg = o->cfg;
	Controller *c = calloc(1, sizeof *c);
	if (!c) {
		PQfinish(o->conn);
		return -ENOMEM;
	}
	c->cfg = cfg;
	c->sigfd = o->signal_fd;
	c->main_conn = o->conn;
	atomic_store(&c->db_up, o->conn != NULL);
	pthread_mutex_init(&c->fresh_lock, NULL);
	pthread_mutex_init(&c->stat_lock, NULL);
	c->fresh = json_object();
	c->queue = queue_new(NULL);
	c->rates = ratelimits_new(NULL, NULL);
	c->tasks = semset_new();
	c->metrics = metrics_new();
	int r = -ENOMEM;
	if (!c->fresh || !c->queue || !c->rates || !c->tasks || !c->metrics)
		goto fail;
	queue_pause(c->queue, true); /* standby until the lease is held */
	struct {
		const char *system;
		int64_t rate;
	} rates[] = {{"proxmox", cfg->controller.rate.proxmox},
	             {"agent", cfg->controller.rate.agent},
	             {"velocity", cfg->controller.rate.velocity},
	             {"dns", cfg->controller.rate.dns}};
	for (size_t i = 0; i < ELEMENTSOF(rates); i++)
		if (rates[i].rate > 0 &&
		    (r = ratelimits_set(c->rates, rates[i].system, (double)rates[i].rate,
		                        (int)rates[i].rate)) < 0)
			goto fail;
	metrics_set_collector(c->metrics, collect, c);

	const Reconciler *const *all = o->reconcilers ? o->reconcilers : recon_registry();
	for (size_t i = 0; all && all[i]; i++) {
		const Reconciler *rec = all[i];
		bool on = rec->enabled ? rec->enabled(cfg) : true;
		if (!on) {
			log_info("reconciler %s: switched off by the configuration", rec->name);
			continue;
		}
		if (c->n_recs == MAX_RECS) {
			r = -E2BIG;
			goto fail;
		}
		if (!rec->plan || !rec->act) {
			log_error("reconciler %s: plan and act are required", rec->name);
			r = -EINVAL;
			goto fail;
		}
		size_t k = c->n_recs;
		pthread_mutex_init(&c->snaps[k].lock, NULL);
		pthread_cond_init(&c->snaps[k].cond, NULL);
		c->recs[c->n_recs++] = rec;
		if (rec->init && (r = rec->init(cfg, &c->rec_state[k])) < 0) {
			log_error("reconciler %s: setup failed: %s", rec->name, strerror(-r));
			goto fail;
		}
		log_info("reconciler %s: enabled", rec->name);
	}

	lease_init(&c->lease, RUNTIME_LEASE_DEFAULT, o->holder, cfg->controller.lease_ms,
	           cfg->controller.lease_margin_ms);
	c->n_workers = (size_t)cfg->controller.workers;
	c->workers = calloc(c->n_workers, sizeof *c->workers);
	if (!c->workers)
		goto fail;
	for (size_t i = 0; i < c->n_workers; i++) {
		c->workers[i].c = c;
		c->workers[i].idx = (int)i;
	}
	if (c->main_conn) {
		StoreError err;
		int64_t st = cfg->controller.lease_ms / 3;
		if (runtime_session_setup(c->main_conn, st > 1000 ? st : 1000,
		                          "zlh-controller main", &err) < 0 ||
		    runtime_listen(c->main_conn, &err) < 0) {
			log_warning("database session setup failed: %s", err.message);
			PQfinish(c->main_conn);
			c->main_conn = NULL;
			atomic_store(&c->db_up, false);
		}
	}
	*ret = c;
	return 0;
fail:
	controller_free(c);
	return r;
}

Controller *controller_free(Controller *c)
{
	if (!c)
		return NULL;
	bool busy = false;
	for (size_t i = 0; c->workers && i < c->n_workers; i++) {
		Worker *w = &c->workers[i];
		if (w->started && !atomic_load(&w->finished))
			busy = true;
		else if (w->started)
			pthread_join(w->thread, NULL);
	}
	if (busy)
		return NULL; /* stragglers may still use everything: the process exits */
	free(c->workers);
	for (size_t i = 0; i < c->n_recs; i++) {
		if (c->snaps[i].cur) {
			if (c->recs[i]->snapshot_free && c->snaps[i].cur->data)
				c->recs[i]->snapshot_free(c->snaps[i].cur->data);
			free(c->snaps[i].cur);
		}
		pthread_mutex_destroy(&c->snaps[i].lock);
		pthread_cond_destroy(&c->snaps[i].cond);
		if (c->recs[i]->done)
			c->recs[i]->done(c->rec_state[i]);
	}
	metrics_server_stop(c->msrv);
	metrics_free(c->metrics);
	semset_free(c->tasks);
	ratelimits_free(c->rates);
	queue_free(c->queue);
	json_decref(c->fresh);
	if (c->main_conn)
		PQfinish(c->main_conn);
	pthread_mutex_destroy(&c->fresh_lock);
	pthread_mutex_destroy(&c->stat_lock);
	free(c);
	return NULL;
}
