/* probe.c - see probe.h. */
#include "controller/probe.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "util.h"

static const CondType probe_conditions[] = {_COND_TYPE_MAX};

static bool probe_enabled(const Config *cfg)
{
	(void)cfg;
	return getenv("ZLH_TEST_PROBE") != NULL;
}

/* The bulk observation: appends "pid=<pid> observe" to FILE.observe, so
 * tests can count how often one pass observed (once per pass, shared by
 * every server, is the contract). The snapshot itself is a dummy. */
static int probe_observe(RecEnv *env, void **ret_snapshot)
{
	(void)env;
	char path[4096];
	snprintf(path, sizeof path, "%s.observe", getenv("ZLH_TEST_PROBE"));
	int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
	if (fd < 0)
		return -errno;
	char line[64];
	int n = snprintf(line, sizeof line, "pid=%d observe\n", (int)getpid());
	ssize_t w = write(fd, line, (size_t)n);
	close(fd);
	if (w != n)
		return -EIO;
	int *snap = malloc(sizeof *snap);
	if (!snap)
		return -ENOMEM;
	*snap = 1;
	*ret_snapshot = snap;
	return 0;
}

static void probe_snapshot_free(void *snapshot)
{
	free(snapshot);
}

/* obs: a bool, "cleanup already recorded for this uid". */
static int probe_observe_server(RecEnv *env, const RuntimeServer *srv, const void *snapshot,
                                void **ret_obs)
{
	(void)env;
	(void)snapshot;
	bool *done = calloc(1, sizeof *done);
	if (!done)
		return -ENOMEM;
	_cleanup_free_ char *data = NULL;
	size_t len;
	if (file_read_all(getenv("ZLH_TEST_PROBE"), 16 << 20, &data, &len) == 0) {
		char pat[96];
		snprintf(pat, sizeof pat, "uid=%s action=probe-cleanup", srv->uid);
		*done = strstr(data, pat) != NULL;
	}
	*ret_obs = done;
	return 0;
}

static int probe_plan(const Config *cfg, const RuntimeServer *srv, const void *snapshot,
                      const void *obs, Plan *plan)
{
	(void)cfg;
	(void)obs;
	if (!snapshot || *(const int *)snapshot != 1)
		return -EINVAL; /* the runtime must hand the snapshot over */
	int r =
	    plan_action(plan, "probe-1", "probe", NULL, true, NULL, "probe %s step 1", srv->name);
	if (r == 0)
		r = plan_action(plan, "probe-2", "probe", NULL, true, NULL, "probe %s step 2",
		                srv->name);
	return r;
}

static int probe_finalize(const Config *cfg, const RuntimeServer *srv, const void *snapshot,
                          const void *obs, Plan *plan)
{
	(void)cfg;
	(void)snapshot;
	if (obs && *(const bool *)obs)
		return 0;
	return plan_action(plan, "probe-cleanup", "probe", NULL, true, NULL, "probe %s cleanup",
	                   srv->name);
}

static int probe_act(RecEnv *env, const RuntimeServer *srv, void *snapshot, void *obs,
                     const Action *action, ActResult *res)
{
	(void)snapshot;
	(void)obs;
	const char *path = getenv("ZLH_TEST_PROBE");
	if (!path)
		return -ENOENT;
	/* The real thing checks right before its call, too. */
	if (!rec_lease_valid(env)) {
		snprintf(res->error, sizeof res->error, "lease not valid");
		return -ESTALE;
	}
	char line[256];
	int n = snprintf(line, sizeof line, "pid=%d epoch=%" PRId64 " uid=%s action=%s\n",
	                 (int)getpid(), env->epoch, srv->uid, action->name);
	int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
	if (fd < 0) {
		snprintf(res->error, sizeof res->error, "open %s: %s", path, strerror(errno));
		return -errno;
	}
	ssize_t w = write(fd, line, (size_t)n);
	close(fd);
	if (w != n)
		return -EIO;
	rec_count_call(env, "probe", "POST", 200);
	res->snapshot_updated = true;
	if (strcmp(action->name, "probe-1") == 0) {
		const char *hold = getenv("ZLH_TEST_PROBE_HOLD_MS");
		int64_t ms = 0;
		if (hold && parse_int64(hold, &ms) == 0 && ms > 0) {
			/* A slow external call: SIGSTOP lands here in the tests. */
			int64_t until = now_mono_ms() + ms;
			while (now_mono_ms() < until) {
				struct timespec ts = {0, 20 * 1000000L};
				nanosleep(&ts, NULL);
			}
		}
		/* The call returned: record it, fenced like a journal write. */
		rec_event(env, srv, "Normal", "ProbeDone", "probe-1 done");
	} else if (strcmp(action->name, "probe-2") == 0) {
		res->requeue_after_ms = 3600 * 1000;
	}
	return 0;
}

static void probe_obs_free(void *obs)
{
	free(obs);
}

const Reconciler recon_probe = {
    .name = "probe",
    .order = 1,
    .conditions = probe_conditions,
    .uses_finalizer = true,
    .enabled = probe_enabled,
    .observe = probe_observe,
    .snapshot_free = probe_snapshot_free,
    .observe_server = probe_observe_server,
    .obs_free = probe_obs_free,
    .plan = probe_plan,
    .finalize = probe_finalize,
    .act = probe_act,
};
