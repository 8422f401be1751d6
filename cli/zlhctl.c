/* zlhctl - the operator's command (DESIGN.md section 9).
 *
 *   zlhctl [--db CONNINFO | -c CONFIG] [--crds DIR] COMMAND ...
 *
 * Exit codes: 0 ok, 1 invalid input, 2 usage, 3 database unreachable,
 * 4 not found, 5 refused (quota, hostname taken, request id reused). */
#include <errno.h>
#include <dirent.h>
#include <getopt.h>
#include <sys/stat.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <libpq-fe.h>
#include <yaml.h>

#include "buf.h"
#include "cleanup.h"
#include "db/store.h"
#include "specs/crd.h"
#include "specs/errors.h"
#include "specs/spec.h"
#include "util.h"

enum {
	EXIT_OK = 0,
	EXIT_INVALID = 1,
	EXIT_USAGE = 2,
	EXIT_DB = 3,
	EXIT_NOTFOUND = 4,
	EXIT_REFUSED = 5,
};

typedef struct Ctx {
	const char *db_flag;
	const char *config;
	const char *crds_flag;
	const char *owner;
	const char *output;
	bool dry_run;
	bool follow;
	bool exit_code;
	char **files; /* -f arguments, borrowed from argv */
	size_t n_files;
	char **expanded; /* files after directory expansion (new) */
	size_t n_expanded;
	PGconn *conn;
	CrdSet *crds;
} Ctx;

static void ctx_done(Ctx *c)
{
	if (c->conn)
		PQfinish(c->conn);
	crd_set_free(c->crds);
	free(c->files);
	for (size_t i = 0; i < c->n_expanded; i++)
		free(c->expanded[i]);
	free(c->expanded);
}

static int usage(FILE *f)
{
	fputs("usage: zlhctl [--db CONNINFO | -c CONFIG] [--crds DIR] COMMAND [ARGS]\n"
	      "\n"
	      "commands:\n"
	      "  apply -f FILE|- [-f ...] [--dry-run]   create or update servers (all or nothing)\n"
	      "  diff -f FILE|- [--exit-code]           what apply would change\n"
	      "  get [KIND] [-o wide|json|yaml]         list servers\n"
	      "  describe NAME [--owner O]              spec, status, conditions, events\n"
	      "  delete NAME [--owner O]                request deletion\n"
	      "  events [NAME] [--owner O] [--follow]   recent events\n"
	      "  quota set OWNER --servers N --memory-mib M\n"
	      "  db migrate                             apply migrations, load crds/\n"
	      "\n"
	      "database: --db, else $ZLH_DATABASE, else `database:` of the -c config file.\n"
	      "exit codes: 0 ok, 1 invalid input, 2 usage, 3 database unreachable,\n"
	      "            4 not found, 5 refused\n",
	      f);
	return EXIT_USAGE;
}

/* --- database ------------------------------------------------------------ */

/* Reads the top-level `database:` scalar of a controller config file. */
static int config_database(const char *path, char **ret)
{
	_cleanup_fclose_ FILE *f = fopen(path, "re");
	if (!f)
		return -errno;
	yaml_parser_t p;
	yaml_document_t d;
	if (!yaml_parser_initialize(&p))
		return -ENOMEM;
	yaml_parser_set_input_file(&p, f);
	int r = -ENOENT;
	if (!yaml_parser_load(&p, &d)) {
		yaml_parser_delete(&p);
		return -EINVAL;
	}
	yaml_node_t *root = yaml_document_get_root_node(&d);
	if (root && root->type == YAML_MAPPING_NODE) {
		for (yaml_node_pair_t *pr = root->data.mapping.pairs.start;
		     pr < root->data.mapping.pairs.top; pr++) {
			yaml_node_t *k = yaml_document_get_node(&d, pr->key);
			yaml_node_t *v = yaml_document_get_node(&d, pr->value);
			if (k && v && k->type == YAML_SCALAR_NODE && v->type == YAML_SCALAR_NODE &&
			    strcmp((char *)k->data.scalar.value, "database") == 0) {
				char *s = strdup((char *)v->data.scalar.value);
				r = s ? 0 : -ENOMEM;
				if (s)
					*ret = s;
				break;
			}
		}
	}
	yaml_document_delete(&d);
	yaml_parser_delete(&p);
	return r;
}

static int db_open(Ctx *c)
{
	if (c->conn)
		return 0;
	_cleanup_free_ char *from_config = NULL;
	const char *ci = c->db_flag;
	if (!ci)
		ci = getenv("ZLH_DATABASE");
	if ((!ci || !*ci) && c->config) {
		int r = config_database(c->config, &from_config);
		if (r < 0) {
			fprintf(stderr, "zlhctl: %s: no usable `database:` key (%s)\n", c->config,
			        strerror(-r));
			return EXIT_USAGE;
		}
		ci = from_config;
	}
	if (!ci || !*ci) {
		fprintf(stderr, "zlhctl: no database: give --db, $ZLH_DATABASE or -c CONFIG\n");
		return EXIT_USAGE;
	}
	StoreError err = {0};
	int r = store_connect(ci, &c->conn, &err);
	if (r < 0) {
		fprintf(stderr, "zlhctl: database unreachable: %s\n",
		        err.message[0] ? err.message : strerror(-r));
		return EXIT_DB;
	}
	return 0;
}

static int crds_open(Ctx *c)
{
	if (c->crds)
		return 0;
	_cleanup_free_ char *dir = NULL;
	int r = crd_dir_find(c->crds_flag, &dir);
	if (r < 0) {
		fprintf(stderr, "zlhctl: crds directory not found (--crds, $ZLH_CRDS_DIR)\n");
		return EXIT_USAGE;
	}
	_cleanup_spec_errors_ SpecErrors errs = SPEC_ERRORS_INIT;
	r = crd_set_load(dir, &c->crds, &errs);
	if (r < 0) {
		spec_errors_print(&errs, stderr);
		fprintf(stderr, "zlhctl: cannot load crds from %s\n", dir);
		return EXIT_INVALID;
	}
	return 0;
}

/* Maps a store failure to an exit code and prints it. */
static int store_fail(const char *what, int r, const StoreError *err)
{
	const char *msg = err && err->message[0] ? err->message : strerror(-r);
	fprintf(stderr, "zlhctl: %s: %s\n", what, msg);
	if (err && err->sqlstate[0]) {
		if (strcmp(err->sqlstate, "ZL001") == 0)
			return EXIT_INVALID;
		if (strcmp(err->sqlstate, "ZL004") == 0)
			return EXIT_NOTFOUND;
		if (strncmp(err->sqlstate, "ZL", 2) == 0)
			return EXIT_REFUSED;
		if (strncmp(err->sqlstate, "08", 2) == 0)
			return EXIT_DB;
	}
	if (r == -ENOENT)
		return EXIT_NOTFOUND;
	if (r == -ENOTUNIQ)
		return EXIT_USAGE;
	if (r == -ECONNREFUSED || r == -EHOSTDOWN || r == -ECONNRESET || r == -ENOTCONN)
		return EXIT_DB;
	return EXIT_INVALID;
}

/* --- output -------------------------------------------------------------- */

static const char *jstr(const json_t *o, const char *key)
{
	const char *s = json_string_value(json_object_get(o, key));
	return s ? s : "";
}

/* Prints v as block YAML (specs' emitter, which reads back to the same
 * value), every line indented by indent spaces. */
static void yaml_print(FILE *f, const json_t *v, int indent)
{
	_cleanup_free_ char *y = spec_to_yaml(v);
	if (!y)
		return;
	for (char *line = y, *nl; *line; line = nl + 1) {
		nl = strchrnul(line, '\n');
		fprintf(f, "%*s%.*s\n", indent, "", (int)(nl - line), line);
		if (!*nl)
			break;
	}
}

/* A table whose columns are as wide as their widest cell, like kubectl's. */
typedef struct Table {
	size_t cols;
	size_t rows;
	char **cells; /* rows * cols, owned */
} Table;

static void table_add(Table *t, const char *const *cells)
{
	char **n = realloc(t->cells, (t->rows + 1) * t->cols * sizeof(char *));
	if (!n)
		return;
	t->cells = n;
	for (size_t i = 0; i < t->cols; i++)
		t->cells[t->rows * t->cols + i] = strdup(cells[i] ? cells[i] : "");
	t->rows++;
}

static void table_print(Table *t, FILE *f)
{
	size_t w[16] = {0};
	for (size_t r = 0; r < t->rows; r++)
		for (size_t c = 0; c < t->cols && c < 16; c++) {
			const char *s = t->cells[r * t->cols + c];
			size_t l = s ? strlen(s) : 0;
			if (l > w[c])
				w[c] = l;
		}
	for (size_t r = 0; r < t->rows; r++) {
		for (size_t c = 0; c < t->cols; c++) {
			const char *s = t->cells[r * t->cols + c];
			if (c + 1 == t->cols)
				fprintf(f, "%s\n", s ? s : "");
			else
				fprintf(f, "%-*s   ", (int)w[c], s ? s : "");
		}
	}
	for (size_t i = 0; i < t->rows * t->cols; i++)
		free(t->cells[i]);
	free(t->cells);
	t->cells = NULL;
	t->rows = 0;
}

static void format_age(const char *ts, char *out, size_t n)
{
	struct tm tm = {0};
	if (!ts || !*ts || !strptime(ts, "%Y-%m-%dT%H:%M:%S", &tm)) {
		snprintf(out, n, "-");
		return;
	}
	time_t t = timegm(&tm);
	long d = (long)(time(NULL) - t);
	if (d < 0)
		d = 0;
	if (d < 120)
		snprintf(out, n, "%lds", d);
	else if (d < 7200)
		snprintf(out, n, "%ldm", d / 60);
	else if (d < 172800)
		snprintf(out, n, "%ldh", d / 3600);
	else
		snprintf(out, n, "%ldd", d / 86400);
}

/* "3/8" style: conditions True / all. */
static void ready_count(const json_t *status, char *out, size_t n)
{
	const json_t *conds = json_object_get(status, "conditions");
	size_t ok = 0, all = 0, i;
	json_t *c;
	json_array_foreach(conds, i, c)
	{
		all++;
		if (strcmp(jstr(c, "status"), "True") == 0)
			ok++;
	}
	snprintf(out, n, "%zu/%zu", ok, all);
}

static void int_or_dash(const json_t *v, char *out, size_t n)
{
	if (json_is_integer(v))
		snprintf(out, n, "%lld", (long long)json_integer_value(v));
	else if (json_is_string(v) && *json_string_value(v))
		snprintf(out, n, "%s", json_string_value(v));
	else
		snprintf(out, n, "-");
}

/* --- get / describe -------------------------------------------------------- */

static int resolve_kind(Ctx *c, const char *arg, const char **ret_kind)
{
	if (!arg) {
		*ret_kind = NULL;
		return 0;
	}
	int r = crds_open(c);
	if (r)
		return r;
	const Crd *crd = crd_set_find(c->crds, arg);
	if (!crd) {
		/* singular forms: gameserver, devserver */
		for (size_t i = 0; i < c->crds->n && !crd; i++)
			if (strcasecmp(c->crds->items[i].kind, arg) == 0)
				crd = &c->crds->items[i];
	}
	if (!crd) {
		fprintf(stderr, "zlhctl: unknown kind \"%s\"\n", arg);
		return EXIT_USAGE;
	}
	*ret_kind = crd->kind;
	return 0;
}

static int cmd_get(Ctx *c, int argc, char **argv)
{
	if (argc > 1)
		return usage(stderr);
	const char *kind = NULL;
	int r = resolve_kind(c, argc ? argv[0] : NULL, &kind);
	if (r)
		return r;
	const char *o = c->output ? c->output : "";
	if (*o && strcmp(o, "wide") && strcmp(o, "json") && strcmp(o, "yaml")) {
		fprintf(stderr, "zlhctl: -o must be wide, json or yaml\n");
		return EXIT_USAGE;
	}
	r = db_open(c);
	if (r)
		return r;
	_cleanup_json_ json_t *list = NULL;
	r = store_list_servers(c->conn, kind, &list);
	if (r < 0)
		return store_fail("get", r, NULL);
	if (strcmp(o, "json") == 0) {
		_cleanup_free_ char *s = json_dumps(list, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
		puts(s ? s : "[]");
		return 0;
	}
	if (strcmp(o, "yaml") == 0) {
		if (json_array_size(list) == 0)
			puts("[]");
		else
			yaml_print(stdout, list, 0);
		return 0;
	}
	bool wide = strcmp(o, "wide") == 0;
	Table t = {.cols = wide ? 11 : 7};
	if (wide)
		table_add(&t,
		          (const char *const[]){"KIND", "NAME", "OWNER", "PHASE", "READY", "VMID",
		                                "NODE", "IP", "HOSTNAME", "GEN", "AGE"});
	else
		table_add(&t, (const char *const[]){"KIND", "NAME", "OWNER", "PHASE", "READY",
		                                    "VMID", "AGE"});
	size_t i;
	json_t *s;
	json_array_foreach(list, i, s)
	{
		json_t *md = json_object_get(s, "metadata"), *st = json_object_get(s, "status");
		char ready[32], vmid[32], age[32], gen[64];
		ready_count(st, ready, sizeof ready);
		int_or_dash(json_object_get(st, "vmid"), vmid, sizeof vmid);
		format_age(jstr(md, "createdAt"), age, sizeof age);
		snprintf(gen, sizeof gen, "%lld/%lld",
		         (long long)json_integer_value(json_object_get(md, "generation")),
		         (long long)json_integer_value(json_object_get(st, "observedGeneration")));
		const char *phase = *jstr(st, "phase") ? jstr(st, "phase") : "-";
		if (wide)
			table_add(
			    &t, (const char *const[]){
			            jstr(s, "kind"), jstr(md, "name"), jstr(md, "owner"), phase,
			            ready, vmid, *jstr(st, "node") ? jstr(st, "node") : "-",
			            *jstr(st, "ip") ? jstr(st, "ip") : "-",
			            *jstr(st, "hostname") ? jstr(st, "hostname") : "-", gen, age});
		else
			table_add(&t, (const char *const[]){jstr(s, "kind"), jstr(md, "name"),
			                                    jstr(md, "owner"), phase, ready, vmid,
			                                    age});
	}
	if (t.rows == 1) {
		fprintf(stderr, "No servers found.\n");
		t.rows = 0; /* no header alone, like kubectl */
		for (size_t k = 0; k < t.cols; k++)
			free(t.cells[k]);
	}
	table_print(&t, stdout);
	return 0;
}

static int get_one(Ctx *c, const char *name, json_t **ret)
{
	int r = db_open(c);
	if (r)
		return r;
	StoreError err = {0};
	r = store_get_server(c->conn, c->owner, name, ret, &err);
	if (r == -ENOENT) {
		fprintf(stderr, "zlhctl: server \"%s\" not found%s%s\n", name,
		        c->owner ? " for owner " : "", c->owner ? c->owner : "");
		return EXIT_NOTFOUND;
	}
	if (r == -ENOTUNIQ) {
		fprintf(stderr, "zlhctl: several owners have a server \"%s\": give --owner\n",
		        name);
		return EXIT_USAGE;
	}
	if (r < 0)
		return store_fail(name, r, &err);
	return 0;
}

static void print_events(json_t *events, FILE *f)
{
	Table t = {.cols = 5};
	table_add(&t, (const char *const[]){"LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"});
	size_t i;
	json_t *e;
	json_array_foreach(events, i, e)
	{
		char age[32], obj[160];
		format_age(jstr(e, "lastAt"), age, sizeof age);
		long long count = (long long)json_integer_value(json_object_get(e, "count"));
		if (count > 1) {
			size_t l = strlen(age);
			snprintf(age + l, sizeof age - l, " (x%lld)", count);
		}
		snprintf(obj, sizeof obj, "%s/%s", jstr(e, "kind"), jstr(e, "name"));
		table_add(&t, (const char *const[]){age, jstr(e, "type"), jstr(e, "reason"), obj,
		                                    jstr(e, "message")});
	}
	table_print(&t, f);
}

static int cmd_describe(Ctx *c, int argc, char **argv)
{
	if (argc != 1)
		return usage(stderr);
	_cleanup_json_ json_t *s = NULL;
	int r = get_one(c, argv[0], &s);
	if (r)
		return r;
	json_t *md = json_object_get(s, "metadata"), *st = json_object_get(s, "status");
	printf("Name:         %s\n", jstr(md, "name"));
	printf("Owner:        %s\n", jstr(md, "owner"));
	printf("Kind:         %s\n", jstr(s, "kind"));
	printf("UID:          %s\n", jstr(md, "uid"));
	printf("Generation:   %lld (observed %lld)\n",
	       (long long)json_integer_value(json_object_get(md, "generation")),
	       (long long)json_integer_value(json_object_get(st, "observedGeneration")));
	if (*jstr(md, "deletionRequestedAt"))
		printf("Deleting:     since %s\n", jstr(md, "deletionRequestedAt"));
	json_t *labels = json_object_get(md, "labels");
	if (json_object_size(labels)) {
		printf("Labels:\n");
		yaml_print(stdout, labels, 2);
	}
	json_t *ann = json_object_get(md, "annotations");
	if (json_object_size(ann)) {
		printf("Annotations:\n");
		yaml_print(stdout, ann, 2);
	}
	printf("Spec:\n");
	yaml_print(stdout, json_object_get(s, "spec"), 2);
	char vmid[32];
	int_or_dash(json_object_get(st, "vmid"), vmid, sizeof vmid);
	printf("Status:\n  Phase:      %s\n  VMID:       %s\n  Node:       %s\n"
	       "  IP:         %s\n  Hostname:   %s\n",
	       *jstr(st, "phase") ? jstr(st, "phase") : "-", vmid,
	       *jstr(st, "node") ? jstr(st, "node") : "-", *jstr(st, "ip") ? jstr(st, "ip") : "-",
	       *jstr(st, "hostname") ? jstr(st, "hostname") : "-");
	if (*jstr(st, "lastError"))
		printf("  Last error: %s\n", jstr(st, "lastError"));
	printf("Conditions:\n");
	Table t = {.cols = 5};
	table_add(&t, (const char *const[]){"  TYPE", "STATUS", "REASON", "SINCE", "MESSAGE"});
	size_t i;
	json_t *cd;
	json_array_foreach(json_object_get(st, "conditions"), i, cd)
	{
		char age[32], type[64];
		format_age(jstr(cd, "lastTransitionTime"), age, sizeof age);
		snprintf(type, sizeof type, "  %s", jstr(cd, "type"));
		table_add(&t, (const char *const[]){type, jstr(cd, "status"), jstr(cd, "reason"),
		                                    age, jstr(cd, "message")});
	}
	table_print(&t, stdout);
	_cleanup_json_ json_t *events = NULL;
	StoreError err = {0};
	r = store_list_events(c->conn, jstr(md, "uid"), -1, 20, &events, &err);
	if (r < 0)
		return store_fail("events", r, &err);
	printf("Events:\n");
	if (json_array_size(events) == 0)
		printf("  <none>\n");
	else
		print_events(events, stdout);
	return 0;
}

static int cmd_delete(Ctx *c, int argc, char **argv)
{
	if (argc != 1)
		return usage(stderr);
	int r = db_open(c);
	if (r)
		return r;
	_cleanup_json_ json_t *res = NULL;
	StoreError err = {0};
	r = store_delete_server(c->conn, c->owner, argv[0], &res, &err);
	if (r == -ENOENT) {
		fprintf(stderr, "zlhctl: server \"%s\" not found\n", argv[0]);
		return EXIT_NOTFOUND;
	}
	if (r == -ENOTUNIQ) {
		fprintf(stderr, "zlhctl: several owners have a server \"%s\": give --owner\n",
		        argv[0]);
		return EXIT_USAGE;
	}
	if (r < 0)
		return store_fail("delete", r, &err);
	printf("%s deletion requested (uid %s)\n", argv[0], jstr(res, "uid"));
	return 0;
}

static volatile sig_atomic_t interrupted;
static void on_sigint(int sig)
{
	(void)sig;
	interrupted = 1;
}

static int cmd_events(Ctx *c, int argc, char **argv)
{
	if (argc > 1)
		return usage(stderr);
	_cleanup_free_ char *uid = NULL;
	if (argc == 1) {
		_cleanup_json_ json_t *s = NULL;
		int r = get_one(c, argv[0], &s);
		if (r)
			return r;
		uid = strdup(jstr(json_object_get(s, "metadata"), "uid"));
		if (!uid)
			return EXIT_INVALID;
	}
	int r = db_open(c);
	if (r)
		return r;
	int64_t after = -1;
	bool header = true;
	signal(SIGINT, on_sigint);
	signal(SIGTERM, on_sigint);
	do {
		_cleanup_json_ json_t *events = NULL;
		StoreError err = {0};
		r = store_list_events(c->conn, uid, after, c->follow ? 500 : 100, &events, &err);
		if (r < 0)
			return store_fail("events", r, &err);
		size_t i;
		json_t *e;
		json_array_foreach(events, i, e)
		{
			int64_t id = json_integer_value(json_object_get(e, "id"));
			if (id > after)
				after = id;
		}
		if (json_array_size(events) || (header && !c->follow)) {
			if (header || json_array_size(events))
				print_events(events, stdout);
			header = false;
		}
		fflush(stdout);
		for (int k = 0; c->follow && k < 10 && !interrupted; k++)
			usleep(100 * 1000);
	} while (c->follow && !interrupted);
	return 0;
}

static int cmd_quota(Ctx *c, int argc, char **argv)
{
	/* quota set OWNER --servers N --memory-mib M (options parsed here) */
	if (argc < 2 || strcmp(argv[0], "set") != 0)
		return usage(stderr);
	const char *owner = argv[1];
	int64_t servers = -1, mem = -1;
	for (int i = 2; i < argc; i++) {
		int64_t *dst = NULL;
		if (strcmp(argv[i], "--servers") == 0)
			dst = &servers;
		else if (strcmp(argv[i], "--memory-mib") == 0)
			dst = &mem;
		if (!dst || i + 1 >= argc || parse_int64(argv[i + 1], dst) < 0 || *dst < 0) {
			fprintf(stderr, "zlhctl: quota set OWNER --servers N --memory-mib M\n");
			return EXIT_USAGE;
		}
		i++;
	}
	if (servers < 0 && mem < 0) {
		fprintf(stderr, "zlhctl: quota set needs --servers and/or --memory-mib\n");
		return EXIT_USAGE;
	}
	int r = db_open(c);
	if (r)
		return r;
	StoreError err = {0};
	r = store_quota_set(c->conn, owner, servers, mem, &err);
	if (r < 0)
		return store_fail("quota set", r, &err);
	printf("quota for %s set\n", owner);
	return 0;
}

static int cmd_db(Ctx *c, int argc, char **argv)
{
	if (argc != 1 || strcmp(argv[0], "migrate") != 0)
		return usage(stderr);
	int r = crds_open(c);
	if (r)
		return r;
	r = db_open(c);
	if (r)
		return r;
	_cleanup_free_ char *dir = NULL;
	r = store_migrations_dir_find(NULL, &dir);
	if (r < 0) {
		fprintf(stderr, "zlhctl: migrations directory not found ($ZLH_MIGRATIONS_DIR)\n");
		return EXIT_USAGE;
	}
	_cleanup_json_ json_t *kinds = crd_set_to_json(c->crds);
	if (!kinds)
		return EXIT_INVALID;
	StoreError err = {0};
	r = store_migrate(c->conn, dir, kinds, &err);
	if (r < 0)
		return store_fail("db migrate", r, &err);
	printf("migrations applied: %d; kinds loaded: %zu\n", r, c->crds->n);
	return 0;
}

/* --- apply / diff ------------------------------------------------------------ */

static void lower(char *s)
{
	for (; *s; s++)
		if (*s >= 'A' && *s <= 'Z')
			*s = (char)(*s - 'A' + 'a');
}

static int apply_docs(Ctx *c, const SpecDocs *files, size_t n_docs, const SpecErrors *errs,
                      bool diff);

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Expands each -f argument that is a directory into its *.yaml, *.yml and
 * *.json files, sorted by name (not recursive). The result (new, strings
 * new) replaces c->files. */
static int expand_files(Ctx *c)
{
	size_t n = 0, cap = 16;
	char **out = calloc(cap, sizeof(char *));
	if (!out)
		return -ENOMEM;
	for (size_t i = 0; i < c->n_files; i++) {
		const char *f = c->files[i];
		struct stat st;
		if (strcmp(f, "-") == 0 || stat(f, &st) < 0 || !S_ISDIR(st.st_mode)) {
			if (n + 1 >= cap) {
				char **x = realloc(out, (cap *= 2) * sizeof(char *));
				if (!x)
					goto oom;
				out = x;
			}
			if (!(out[n++] = strdup(f)))
				goto oom;
			continue;
		}
		DIR *d = opendir(f);
		if (!d)
			continue;
		size_t first = n;
		struct dirent *de;
		while ((de = readdir(d))) {
			if (de->d_name[0] == '.' || !(str_endswith(de->d_name, ".yaml") ||
			                              str_endswith(de->d_name, ".yml") ||
			                              str_endswith(de->d_name, ".json")))
				continue;
			if (n + 1 >= cap) {
				char **x = realloc(out, (cap *= 2) * sizeof(char *));
				if (!x) {
					closedir(d);
					goto oom;
				}
				out = x;
			}
			if (asprintf(&out[n], "%s%s%s", f, str_endswith(f, "/") ? "" : "/",
			             de->d_name) < 0) {
				closedir(d);
				goto oom;
			}
			n++;
		}
		closedir(d);
		qsort(out + first, n - first, sizeof(char *), cmp_str);
	}
	c->expanded = out;
	c->n_expanded = n;
	return 0;
oom:
	for (size_t i = 0; i < n; i++)
		free(out[i]);
	free(out);
	return -ENOMEM;
}

/* apply (diff = false) or diff (diff = true). */
static int cmd_apply(Ctx *c, int argc, char **argv, bool diff)
{
	/* Positional arguments are files too (zlhctl apply -f a.yaml b.yaml). */
	for (int i = 0; i < argc; i++)
		c->files[c->n_files++] = argv[i];
	if (c->n_files == 0) {
		fprintf(stderr, "zlhctl: %s needs -f FILE (or -f - for stdin)\n",
		        diff ? "diff" : "apply");
		return EXIT_USAGE;
	}
	int rc = crds_open(c);
	if (rc)
		return rc;
	if (expand_files(c) < 0)
		return EXIT_INVALID;
	_cleanup_spec_errors_ SpecErrors errs = SPEC_ERRORS_INIT;
	/* One SpecDocs per file; every file is parsed so every error is shown. */
	SpecDocs *files = calloc(c->n_expanded + 1, sizeof(SpecDocs));
	if (!files)
		return EXIT_INVALID;
	size_t n_docs = 0;
	for (size_t i = 0; i < c->n_expanded; i++)
		if (spec_parse_file(c->crds, c->expanded[i], &files[i], &errs) == 0)
			n_docs += files[i].n;
	rc = apply_docs(c, files, n_docs, &errs, diff);
	for (size_t i = 0; i < c->n_expanded; i++)
		spec_docs_clear(&files[i]);
	free(files);
	return rc;
}

static int apply_docs(Ctx *c, const SpecDocs *files, size_t n_docs, const SpecErrors *errs,
                      bool diff)
{
	int r;
	if (errs->n > 0) {
		spec_errors_print(errs, stderr);
		fprintf(stderr, "zlhctl: %zu error%s; nothing applied\n", errs->n,
		        errs->n == 1 ? "" : "s");
		return EXIT_INVALID;
	}
	if (n_docs == 0) {
		fprintf(stderr, "zlhctl: no documents in input\n");
		return EXIT_INVALID;
	}
	r = db_open(c);
	if (r)
		return r;
	bool write = !diff && !c->dry_run;
	StoreError err = {0};
	r = store_begin(c->conn, &err);
	if (r < 0)
		return store_fail("begin", r, &err);
	int rc = 0;
	bool any_change = false;
	for (size_t k = 0, i = 0; k < c->n_expanded && rc == 0; k++)
		for (i = 0; i < files[k].n && rc == 0; i++) {
			const SpecDoc *d = &files[k].items[i];
			json_t *md = json_object_get(d->doc, "metadata");
			const char *name = jstr(md, "name"), *owner = jstr(md, "owner");
			char kind[64];
			snprintf(kind, sizeof kind, "%s", jstr(d->doc, "kind"));
			lower(kind);
			_cleanup_json_ json_t *before = NULL, *after = NULL, *res = NULL;
			if (!write) {
				r = store_get_server(c->conn, owner, name, &before, &err);
				if (r < 0 && r != -ENOENT) {
					rc = store_fail(name, r, &err);
					break;
				}
			}
			r = store_apply_server(c->conn, d->doc, NULL, &res, &err);
			if (r < 0) {
				fprintf(stderr, "%s:%d: %s/%s: ", d->file, d->line, kind, name);
				rc = store_fail("refused", r, &err);
				break;
			}
			bool created = json_is_true(json_object_get(res, "created"));
			bool changed = json_is_true(json_object_get(res, "changed"));
			long long gen =
			    (long long)json_integer_value(json_object_get(res, "generation"));
			any_change |= created || changed;
			const char *verb = created   ? "created"
			                   : changed ? "configured"
			                             : "unchanged";
			if (diff) {
				if (created)
					printf("+ %s/%s (new, owner %s)\n", kind, name, owner);
				else if (changed)
					printf("~ %s/%s (owner %s)\n", kind, name, owner);
			} else
				printf("%s/%s %s%s (generation %lld)\n", kind, name,
				       c->dry_run ? "would be " : "", verb, gen);
			if (!write && (created || changed)) {
				r = store_get_server(c->conn, owner, name, &after, &err);
				if (r < 0) {
					rc = store_fail(name, r, &err);
					break;
				}
				_cleanup_spec_diff_ SpecDiff df = {0};
				r = spec_diff_at("spec",
				                 before ? json_object_get(before, "spec") : NULL,
				                 json_object_get(after, "spec"), &df);
				if (r >= 0)
					spec_diff_print(&df, stdout);
			}
		}
	if (rc == 0 && write)
		r = store_commit(c->conn, &err);
	else
		r = store_rollback(c->conn, &err);
	if (rc == 0 && r < 0)
		rc = store_fail("commit", r, &err);
	if (rc == 0 && diff && any_change && c->exit_code)
		rc = 1;
	return rc;
}

/* --- main ----------------------------------------------------------------- */

int main(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"db", required_argument, NULL, 'D'},
	    {"config", required_argument, NULL, 'c'},
	    {"crds", required_argument, NULL, 'C'},
	    {"owner", required_argument, NULL, 'O'},
	    {"output", required_argument, NULL, 'o'},
	    {"filename", required_argument, NULL, 'f'},
	    {"dry-run", no_argument, NULL, 'n'},
	    {"follow", no_argument, NULL, 'w'},
	    {"exit-code", no_argument, NULL, 'x'},
	    {"help", no_argument, NULL, 'h'},
	    {0},
	};
	_cleanup_(ctx_done) Ctx c = {0};
	/* Options may come before or after the command (getopt permutes). The
	 * quota command's own flags (--servers, --memory-mib) are passed through. */
	int subargc = 0;
	char **subargv = calloc((size_t)argc + 1, sizeof(char *));
	c.files = calloc((size_t)argc + 1, sizeof(char *));
	if (!subargv || !c.files) {
		free(subargv);
		return EXIT_INVALID;
	}
	/* Split argv: options (and their values) go to getopt, the rest is the
	 * command and its arguments. */
	int oargc = 1;
	char **oargv = calloc((size_t)argc + 1, sizeof(char *));
	if (!oargv) {
		free(subargv);
		return EXIT_INVALID;
	}
	oargv[0] = argv[0];
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		bool takes = false;
		if (strcmp(a, "--servers") == 0 || strcmp(a, "--memory-mib") == 0) {
			subargv[subargc++] = argv[i];
			if (i + 1 < argc)
				subargv[subargc++] = argv[++i];
			continue;
		}
		if (a[0] == '-' && a[1] && strcmp(a, "--") != 0) {
			oargv[oargc++] = argv[i];
			for (const struct option *o = opts; o->name; o++)
				if (o->has_arg && strncmp(a + 2, o->name, strlen(o->name)) == 0 &&
				    a[1] == '-' && a[2 + strlen(o->name)] == 0)
					takes = true;
			if (a[1] != '-' && strchr("cfo", a[1]) && a[2] == 0)
				takes = true;
			if (takes && i + 1 < argc)
				oargv[oargc++] = argv[++i];
			continue;
		}
		subargv[subargc++] = argv[i];
	}
	int opt, rc = 0;
	optind = 1;
	while ((opt = getopt_long(oargc, oargv, "c:f:o:h", opts, NULL)) != -1) {
		switch (opt) {
		case 'D':
			c.db_flag = optarg;
			break;
		case 'c':
			c.config = optarg;
			break;
		case 'C':
			c.crds_flag = optarg;
			break;
		case 'O':
			c.owner = optarg;
			break;
		case 'o':
			c.output = optarg;
			break;
		case 'f':
			c.files[c.n_files++] = optarg;
			break;
		case 'n':
			c.dry_run = true;
			break;
		case 'w':
			c.follow = true;
			break;
		case 'x':
			c.exit_code = true;
			break;
		case 'h':
			free(oargv);
			free(subargv);
			usage(stdout);
			return 0;
		default:
			free(oargv);
			free(subargv);
			return usage(stderr);
		}
	}
	free(oargv);
	if (subargc == 0) {
		free(subargv);
		return usage(stderr);
	}
	const char *cmd = subargv[0];
	int n = subargc - 1;
	char **rest = subargv + 1;
	if (strcmp(cmd, "apply") == 0)
		rc = cmd_apply(&c, n, rest, false);
	else if (strcmp(cmd, "diff") == 0)
		rc = cmd_apply(&c, n, rest, true);
	else if (strcmp(cmd, "get") == 0)
		rc = cmd_get(&c, n, rest);
	else if (strcmp(cmd, "describe") == 0)
		rc = cmd_describe(&c, n, rest);
	else if (strcmp(cmd, "delete") == 0)
		rc = cmd_delete(&c, n, rest);
	else if (strcmp(cmd, "events") == 0)
		rc = cmd_events(&c, n, rest);
	else if (strcmp(cmd, "quota") == 0)
		rc = cmd_quota(&c, n, rest);
	else if (strcmp(cmd, "db") == 0)
		rc = cmd_db(&c, n, rest);
	else if (strcmp(cmd, "plan") == 0 || strcmp(cmd, "orphans") == 0 ||
	         strcmp(cmd, "backups") == 0) {
		fprintf(stderr, "zlhctl %s: not built yet (arrives with the reconcilers)\n", cmd);
		rc = EXIT_USAGE;
	} else {
		fprintf(stderr, "zlhctl: unknown command \"%s\"\n", cmd);
		rc = usage(stderr);
	}
	free(subargv);
	return rc;
}
