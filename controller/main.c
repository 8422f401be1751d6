/* main.c - zlh-controller: reads the config, connects, refuses to start
 * on a database whose migrations are not current, then runs the controller
 * (controller/loop.c) until SIGTERM.
 *
 *   zlh-controller -c FILE [--check-config] [--log-level LEVEL] [--crds DIR]
 *                  [--migrations DIR]
 *   zlh-controller --help-config
 *
 * Exit status: 0 clean stop (or valid config with --check-config), 1 invalid
 * config or a database that cannot be used, 2 usage. */
#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <systemd/sd-daemon.h>

#include "controller/config.h"
#include "controller/loop.h"
#include "db/runtime.h"
#include "db/store.h"
#include "http.h"
#include "log.h"
#include "specs/crd.h"
#include "util.h"

static void usage(FILE *f)
{
	fprintf(f,
	        "usage: zlh-controller -c FILE [--check-config] [--log-level LEVEL]\n"
	        "                      [--crds DIR] [--migrations DIR]\n"
	        "       zlh-controller --help-config\n"
	        "\n"
	        "  -c, --config FILE     the configuration (e.g. /etc/zlh/controller.yaml)\n"
	        "      --check-config    validate FILE (and read its secret files), then exit\n"
	        "      --log-level L     debug | info | notice | warning | error (default info)\n"
	        "      --crds DIR        the kinds' schemas (default: $ZLH_CRDS_DIR, the\n"
	        "                        source tree, then PREFIX/share/zlh-controller/crds)\n"
	        "      --migrations DIR  the schema migrations to compare the database with\n"
	        "      --help-config     print every configuration key and exit\n");
}

/* Waits up to ms for a stop signal on sigfd: true when one came. */
static bool wait_stop(int sigfd, int64_t ms)
{
	struct pollfd p = {sigfd, POLLIN, 0};
	if (poll(&p, 1, (int)ms) <= 0)
		return false;
	struct signalfd_siginfo si;
	bool stop = false;
	while (read(sigfd, &si, sizeof si) == (ssize_t)sizeof si)
		if (si.ssi_signo == SIGTERM || si.ssi_signo == SIGINT)
			stop = true;
	return stop;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"config", required_argument, NULL, 'c'},
	    {"check-config", no_argument, NULL, 'C'},
	    {"log-level", required_argument, NULL, 'l'},
	    {"crds", required_argument, NULL, 'K'},
	    {"migrations", required_argument, NULL, 'M'},
	    {"help-config", no_argument, NULL, 'H'},
	    {"help", no_argument, NULL, 'h'},
	    {0},
	};
	const char *config_path = NULL, *crds_flag = NULL, *migrations_flag = NULL;
	bool check_only = false;
	int c;
	while ((c = getopt_long(argc, argv, "c:h", opts, NULL)) != -1) {
		switch (c) {
		case 'c':
			config_path = optarg;
			break;
		case 'C':
			check_only = true;
			break;
		case 'l': {
			int level;
			if (log_level_parse(optarg, &level) < 0) {
				fprintf(stderr, "zlh-controller: --log-level: unknown level %s\n",
				        optarg);
				return 2;
			}
			log_set_level(level);
			break;
		}
		case 'K':
			crds_flag = optarg;
			break;
		case 'M':
			migrations_flag = optarg;
			break;
		case 'H':
			config_print_reference(stdout);
			return 0;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind < argc || !config_path) {
		if (!config_path)
			fprintf(stderr, "zlh-controller: -c FILE is required\n");
		usage(stderr);
		return 2;
	}

	_cleanup_config_ Config *cfg = NULL;
	_cleanup_free_ char *errors = NULL;
	int r = config_load(config_path, 0, &cfg, &errors);
	if (r < 0) {
		fputs(errors ? errors : "invalid configuration\n", stderr);
		return 1;
	}
	if (check_only) {
		printf("%s: OK\n", config_path);
		return 0;
	}

	_cleanup_free_ char *crds_dir = NULL;
	r = crd_dir_find(crds_flag, &crds_dir);
	if (r < 0) {
		log_error(
		    "cannot find the kinds' schemas (crds/): give --crds DIR or $ZLH_CRDS_DIR");
		return 1;
	}
	{
		CrdSet *set = NULL;
		SpecErrors errs = {0};
		r = crd_set_load(crds_dir, &set, &errs);
		if (r < 0) {
			log_error("cannot load the kinds' schemas from %s: %s", crds_dir,
			          strerror(-r));
			return 1;
		}
		crd_set_free(set);
		spec_errors_clear(&errs);
	}

	sigset_t mask;
	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGHUP);
	if (pthread_sigmask(SIG_BLOCK, &mask, NULL) != 0) {
		log_error("cannot block signals");
		return 1;
	}
	_cleanup_close_ int sigfd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
	if (sigfd < 0) {
		log_error("signalfd: %s", strerror(errno));
		return 1;
	}
	signal(SIGPIPE, SIG_IGN);
	http_global_init();

	/* The database may come up after us (boot order): retry, bounded by
	 * systemd's TimeoutStartSec. */
	PGconn *conn = NULL;
	StoreError err;
	for (int64_t delay = 500;; delay = delay * 2 > 10000 ? 10000 : delay * 2) {
		r = store_connect(cfg->database, &conn, &err);
		if (r == 0)
			break;
		if (r == -EINVAL) {
			log_error("database: invalid connection string: %s", err.message);
			return 1;
		}
		log_warning("database unreachable (%s); retrying in %lld ms", err.message,
		            (long long)delay);
		sd_notifyf(0, "STATUS=waiting for the database: %s", err.message);
		if (wait_stop(sigfd, delay)) {
			log_notice("stopped before the database was reachable");
			return 0;
		}
	}

	_cleanup_free_ char *mdir = NULL;
	r = store_migrations_dir_find(migrations_flag, &mdir);
	if (r < 0) {
		log_error(
		    "cannot find the schema migrations (db/migrations): give --migrations DIR");
		PQfinish(conn);
		return 1;
	}
	int pending = 0;
	r = store_migrations_pending(conn, mdir, &pending, &err);
	if (r < 0 || pending > 0) {
		if (r == -EBADMSG)
			log_error("refusing to start: a migration already applied to the database "
			          "differs "
			          "from %s: %s",
			          mdir, err.message);
		else if (r < 0)
			log_error("refusing to start: cannot read the schema version: %s",
			          err.message);
		else
			log_error("refusing to start: the database schema is not current (%d "
			          "migration(s) "
			          "of %s pending); run `zlhctl db migrate`",
			          pending, mdir);
		sd_notify(0, "STATUS=refusing to start: database schema not current");
		PQfinish(conn);
		return 1;
	}

	ControllerOptions o = {.cfg = cfg, .conn = conn, .signal_fd = sigfd};
	Controller *ctl = NULL;
	r = controller_new(&o, &ctl);
	if (r < 0) {
		log_error("cannot start: %s", strerror(-r));
		return 1;
	}
	int status = controller_run(ctl);
	controller_free(ctl);
	return status;
}
