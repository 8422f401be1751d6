#include "testutil.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "buf.h"
#include "util.h"

extern char **environ;

const char *tu_pg_admin(void)
{
	const char *s = getenv("ZLH_TEST_PG");
	return s && *s ? s : NULL;
}

static char *pg_host(void)
{
	const char *a = tu_pg_admin();
	if (!a)
		return NULL;
	const char *h = strstr(a, "host=");
	if (!h)
		return NULL;
	h += 5;
	size_t n = strcspn(h, " ");
	return strndup(h, n);
}

char *tu_db_conninfo_as(const char *name, const char *user)
{
	_cleanup_free_ char *host = pg_host();
	if (!host)
		return NULL;
	char *s = NULL;
	if (asprintf(&s, "host=%s user=%s dbname=%s", host, user, name) < 0)
		return NULL;
	return s;
}

int tu_sql(const char *conninfo, const char *sql)
{
	PGconn *c = PQconnectdb(conninfo);
	if (PQstatus(c) != CONNECTION_OK) {
		fprintf(stderr, "tu_sql: connect: %s", PQerrorMessage(c));
		PQfinish(c);
		return -EIO;
	}
	PGresult *res = PQexec(c, sql);
	int r = 0;
	if (PQresultStatus(res) != PGRES_COMMAND_OK && PQresultStatus(res) != PGRES_TUPLES_OK) {
		fprintf(stderr, "tu_sql: %s: %s", sql, PQerrorMessage(c));
		r = -EIO;
	}
	PQclear(res);
	PQfinish(c);
	return r;
}

int tu_db_create(char **ret_name, char **ret_conninfo)
{
	static int counter;
	const char *admin = tu_pg_admin();
	if (!admin)
		return -ENOENT;
	char name[64];
	snprintf(name, sizeof name, "zlh_t_%d_%d_%d", (int)getpid(), counter++,
	         (int)(now_mono_ms() % 100000));
	char sql[128];
	snprintf(sql, sizeof sql, "CREATE DATABASE %s", name);
	int r = tu_sql(admin, sql);
	if (r < 0)
		return r;
	char *ci = tu_db_conninfo_as(name, "postgres");
	char *n = strdup(name);
	if (!ci || !n) {
		free(ci);
		free(n);
		return -ENOMEM;
	}
	*ret_name = n;
	*ret_conninfo = ci;
	return 0;
}

void tu_db_drop(const char *name)
{
	const char *admin = tu_pg_admin();
	if (!admin || !name)
		return;
	char sql[160];
	snprintf(sql, sizeof sql, "DROP DATABASE IF EXISTS %s WITH (FORCE)", name);
	(void)!tu_sql(admin, sql);
}

char *tu_bin(const char *name)
{
	const char *d = getenv("ZLH_BIN");
	char *s = NULL;
	if (asprintf(&s, "%s/%s", d ? d : "build/bin", name) < 0)
		return NULL;
	return s;
}

char *tu_src(const char *rel)
{
	const char *d = getenv("ZLH_SRC");
	char *s = NULL;
	if (asprintf(&s, "%s/%s", d ? d : ZLH_SOURCE_DIR, rel) < 0)
		return NULL;
	return s;
}

static void child_env(const char *const *env)
{
	for (size_t i = 0; env && env[i]; i++)
		putenv((char *)env[i]);
}

pid_t tu_spawn(const char *const *argv, const char *const *env, const char *log_path)
{
	pid_t pid = fork();
	if (pid < 0)
		return -errno;
	if (pid == 0) {
		setpgid(0, 0);
		child_env(env);
		if (log_path) {
			int fd = open(log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
			if (fd >= 0) {
				dup2(fd, 1);
				dup2(fd, 2);
			}
		}
		int devnull = open("/dev/null", O_RDONLY);
		if (devnull >= 0)
			dup2(devnull, 0);
		execv(argv[0], (char *const *)argv);
		_exit(127);
	}
	return pid;
}

int tu_run(const char *const *argv, const char *const *env, const char *stdin_data,
           char **ret_stdout, char **ret_stderr, int64_t timeout_ms)
{
	int in[2], out[2], err[2];
	if (pipe2(in, O_CLOEXEC) < 0)
		return -errno;
	if (pipe2(out, O_CLOEXEC) < 0 || pipe2(err, O_CLOEXEC) < 0)
		return -errno;
	pid_t pid = fork();
	if (pid < 0)
		return -errno;
	if (pid == 0) {
		child_env(env);
		dup2(in[0], 0);
		dup2(out[1], 1);
		dup2(err[1], 2);
		execv(argv[0], (char *const *)argv);
		_exit(127);
	}
	close(in[0]);
	close(out[1]);
	close(err[1]);
	if (stdin_data) {
		size_t n = strlen(stdin_data), off = 0;
		signal(SIGPIPE, SIG_IGN);
		while (off < n) {
			ssize_t w = write(in[1], stdin_data + off, n - off);
			if (w <= 0)
				break;
			off += (size_t)w;
		}
	}
	close(in[1]);
	Buf ob = BUF_INIT, eb = BUF_INIT;
	int64_t deadline = now_mono_ms() + timeout_ms;
	bool out_open = true, err_open = true;
	while (out_open || err_open) {
		int64_t left = deadline - now_mono_ms();
		if (left <= 0)
			break;
		struct pollfd p[2] = {{out_open ? out[0] : -1, POLLIN, 0},
		                      {err_open ? err[0] : -1, POLLIN, 0}};
		if (poll(p, 2, (int)(left > 1000 ? 1000 : left)) < 0 && errno != EINTR)
			break;
		char tmp[4096];
		for (int i = 0; i < 2; i++) {
			if (!(p[i].revents & (POLLIN | POLLHUP)))
				continue;
			ssize_t n = read(i ? err[0] : out[0], tmp, sizeof tmp);
			if (n <= 0) {
				if (i)
					err_open = false;
				else
					out_open = false;
			} else
				(void)!buf_append(i ? &eb : &ob, tmp, (size_t)n);
		}
	}
	close(out[0]);
	close(err[0]);
	int st = 0;
	int64_t left = deadline - now_mono_ms();
	int status = tu_stop(pid, left > 0 ? 0 : SIGKILL, left > 0 ? left : 5000);
	if (WIFEXITED(status))
		st = WEXITSTATUS(status);
	else if (WIFSIGNALED(status))
		st = 128 + WTERMSIG(status);
	else
		st = -ETIMEDOUT;
	if (ret_stdout)
		*ret_stdout = buf_steal(&ob);
	else
		buf_done(&ob);
	if (ret_stderr)
		*ret_stderr = buf_steal(&eb);
	else
		buf_done(&eb);
	return st;
}

int tu_stop(pid_t pid, int sig, int64_t timeout_ms)
{
	if (sig)
		kill(pid, sig);
	int64_t deadline = now_mono_ms() + timeout_ms;
	int status = 0;
	for (;;) {
		pid_t r = waitpid(pid, &status, WNOHANG);
		if (r == pid)
			return status;
		if (r < 0)
			return -1;
		if (now_mono_ms() > deadline) {
			kill(pid, SIGKILL);
			waitpid(pid, &status, 0);
			return status;
		}
		struct timespec ts = {0, 10 * 1000000};
		nanosleep(&ts, NULL);
	}
}

bool tu_wait_until(bool (*cond)(void *ctx), void *ctx, int64_t timeout_ms)
{
	int64_t deadline = now_mono_ms() + timeout_ms;
	long step = 10;
	for (;;) {
		if (cond(ctx))
			return true;
		if (now_mono_ms() > deadline)
			return false;
		struct timespec ts = {0, step * 1000000};
		nanosleep(&ts, NULL);
		if (step < 100)
			step += 10;
	}
}

char *tu_tempdir(void)
{
	char tmpl[] = "/tmp/zlh-test.XXXXXX";
	if (!mkdtemp(tmpl))
		return NULL;
	return strdup(tmpl);
}

void tu_rmrf(const char *path)
{
	if (!path || strncmp(path, "/tmp/", 5) != 0)
		return;
	const char *argv[] = {"/bin/rm", "-rf", path, NULL};
	(void)tu_run(argv, NULL, NULL, NULL, NULL, 30000);
}

int tu_write_file(const char *path, const char *data)
{
	FILE *f = fopen(path, "we");
	if (!f)
		return -errno;
	size_t n = strlen(data);
	int r = fwrite(data, 1, n, f) == n ? 0 : -EIO;
	if (fclose(f) != 0 && r == 0)
		r = -EIO;
	return r;
}
