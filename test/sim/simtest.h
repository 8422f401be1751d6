/* simtest.h - start and stop zlh-sim from a C test (header only, so any
 * itest can include it: #include "test/sim/simtest.h").
 *
 *   SimProc s;
 *   const char *args[] = {"--nodes", "3", "--task-ms", "100", NULL};
 *   assert_int_equal(simtest_start(&s, args, 10000), 0);
 *   ... s.pve_url, s.pve_auth, s.control_url, s.agent_port ...
 *   assert_int_equal(simtest_stop(&s), 0);   // SIGTERM, exit status 0
 *
 * The sim runs with --print-config; the printed config (s.config) is what a
 * controller would be given, its "database:" line a placeholder. stderr of
 * the sim goes to log_path when set, else to $ZLH_SIM_LOG, else /dev/null. */
#pragma once

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

typedef struct SimProc {
	pid_t pid;
	int out_fd;
	char *config; /* the printed config, whole */
	char control_url[64]; /* http://127.0.0.1:P */
	char pve_url[64]; /* http://127.0.0.1:P (append /api2/json/...) */
	char velocity_url[64];
	char cf_url[96]; /* .../client/v4 */
	char zone_id[64];
	char zone_name[128];
	char state_dir[512];
	int agent_port;
	char pve_auth[320]; /* "Authorization: PVEAPIToken=..." */
	char agent_auth[320]; /* "Authorization: Bearer ..." */
	char zpack_header[128]; /* "X-Zpack-Secret: <hex sha256>" (filled by the caller) */
	char velocity_secret[96];
	char cf_auth[320];
} SimProc;

static inline int64_t simtest_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Copies the text after key up to the closing quote (or end of line). */
static inline int simtest_find(const char *config, const char *key, char *out, size_t n)
{
	const char *p = strstr(config, key);
	if (!p)
		return -ENOENT;
	p += strlen(key);
	size_t i = 0;
	while (p[i] && p[i] != '"' && p[i] != '\n' && p[i] != '}' && p[i] != ',' && i + 1 < n) {
		out[i] = p[i];
		i++;
	}
	out[i] = 0;
	return 0;
}

static inline int simtest_read_file(const char *dir, const char *name, char *out, size_t n)
{
	char path[1024];
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	FILE *f = fopen(path, "re");
	if (!f)
		return -errno;
	size_t len = fread(out, 1, n - 1, f);
	fclose(f);
	out[len] = 0;
	if (len && out[len - 1] == '\n')
		out[len - 1] = 0;
	return 0;
}

/* Returns the exit status (or 128+signal), killing it after timeout_ms. */
static inline int simtest_stop(SimProc *s)
{
	if (!s || s->pid <= 0)
		return -ESRCH;
	kill(s->pid, SIGTERM);
	int st = 0;
	int64_t deadline = simtest_now_ms() + 10000;
	for (;;) {
		pid_t r = waitpid(s->pid, &st, WNOHANG);
		if (r == s->pid)
			break;
		if (r < 0 || simtest_now_ms() > deadline) {
			kill(s->pid, SIGKILL);
			waitpid(s->pid, &st, 0);
			break;
		}
		struct timespec ts = {0, 10 * 1000000};
		nanosleep(&ts, NULL);
	}
	s->pid = 0;
	if (s->out_fd >= 0)
		close(s->out_fd);
	s->out_fd = -1;
	free(s->config);
	s->config = NULL;
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* Starts $ZLH_BIN/zlh-sim --print-config [args...] and waits (bounded) for
 * the whole config. 0 or -errno (-ETIMEDOUT). */
static inline int simtest_start_log(SimProc *s, const char *const *args, int64_t timeout_ms,
                                    const char *log_path)
{
	memset(s, 0, sizeof(*s));
	s->out_fd = -1;
	const char *bin_dir = getenv("ZLH_BIN");
	char bin[1024];
	snprintf(bin, sizeof(bin), "%s/zlh-sim", bin_dir && *bin_dir ? bin_dir : "build/bin");
	const char *argv[64] = {bin, "--print-config"};
	int argc = 2;
	for (int i = 0; args && args[i] && argc < 62; i++)
		argv[argc++] = args[i];
	argv[argc] = NULL;
	int pfd[2];
	if (pipe2(pfd, O_CLOEXEC) < 0)
		return -errno;
	pid_t pid = fork();
	if (pid < 0) {
		close(pfd[0]);
		close(pfd[1]);
		return -errno;
	}
	if (pid == 0) {
		dup2(pfd[1], 1);
		if (!log_path)
			log_path = getenv("ZLH_SIM_LOG");
		int e =
		    open(log_path ? log_path : "/dev/null", O_WRONLY | O_CREAT | O_APPEND, 0644);
		if (e >= 0)
			dup2(e, 2);
		execv(bin, (char *const *)argv);
		_exit(127);
	}
	close(pfd[1]);
	s->pid = pid;
	s->out_fd = pfd[0];
	size_t cap = 8192, len = 0;
	s->config = calloc(1, cap);
	int64_t deadline = simtest_now_ms() + timeout_ms;
	while (!strstr(s->config, "edge_ipv4:") || s->config[len - 1] != '\n') {
		int left = (int)(deadline - simtest_now_ms());
		if (left <= 0) {
			simtest_stop(s);
			return -ETIMEDOUT;
		}
		struct pollfd p = {.fd = s->out_fd, .events = POLLIN};
		if (poll(&p, 1, left) <= 0)
			continue;
		ssize_t n = read(s->out_fd, s->config + len, cap - len - 1);
		if (n <= 0) {
			simtest_stop(s);
			return -EIO;
		}
		len += (size_t)n;
		s->config[len] = 0;
		if (len + 1 >= cap) {
			simtest_stop(s);
			return -E2BIG;
		}
	}
	char port[16], tmp[512];
	if (strncmp(s->config, "# zlh-sim control: http://127.0.0.1:", 36) != 0 ||
	    simtest_find(s->config, "# zlh-sim control: ", s->control_url, sizeof(s->control_url)) <
	        0 ||
	    simtest_find(s->config, "  url: \"", s->pve_url, sizeof(s->pve_url)) < 0 ||
	    simtest_find(s->config, "velocity: {url: \"", s->velocity_url,
	                 sizeof(s->velocity_url)) < 0 ||
	    simtest_find(s->config, "api_url: \"", s->cf_url, sizeof(s->cf_url)) < 0 ||
	    simtest_find(s->config, "zone_id: \"", s->zone_id, sizeof(s->zone_id)) < 0 ||
	    simtest_find(s->config, "zone_name: \"", s->zone_name, sizeof(s->zone_name)) < 0 ||
	    simtest_find(s->config, "agent: {port: ", port, sizeof(port)) < 0 ||
	    simtest_find(s->config, "token_secret_file: \"", tmp, sizeof(tmp)) < 0) {
		simtest_stop(s);
		return -EBADMSG;
	}
	s->agent_port = (int)strtol(port, NULL, 10);
	char *slash = strrchr(tmp, '/');
	if (!slash) {
		simtest_stop(s);
		return -EBADMSG;
	}
	*slash = 0;
	snprintf(s->state_dir, sizeof(s->state_dir), "%s", tmp);
	char sec[256];
	if (simtest_read_file(s->state_dir, "pve-token", sec, sizeof(sec)) < 0) {
		simtest_stop(s);
		return -ENOENT;
	}
	snprintf(s->pve_auth, sizeof(s->pve_auth),
	         "Authorization: PVEAPIToken=zlh@pve!controller=%s", sec);
	if (simtest_read_file(s->state_dir, "agent-token", sec, sizeof(sec)) < 0) {
		simtest_stop(s);
		return -ENOENT;
	}
	snprintf(s->agent_auth, sizeof(s->agent_auth), "Authorization: Bearer %s", sec);
	if (simtest_read_file(s->state_dir, "cloudflare-token", sec, sizeof(sec)) < 0) {
		simtest_stop(s);
		return -ENOENT;
	}
	snprintf(s->cf_auth, sizeof(s->cf_auth), "Authorization: Bearer %s", sec);
	if (simtest_read_file(s->state_dir, "velocity-secret", s->velocity_secret,
	                      sizeof(s->velocity_secret)) < 0) {
		simtest_stop(s);
		return -ENOENT;
	}
	return 0;
}

static inline int simtest_start(SimProc *s, const char *const *args, int64_t timeout_ms)
{
	return simtest_start_log(s, args, timeout_ms, NULL);
}
