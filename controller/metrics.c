/* metrics.c - see metrics.h. */
#include "controller/metrics.h"

#include <errno.h>
#include <math.h>
#include <netdb.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <microhttpd.h>

#include "log.h"

typedef enum MetricType {
	MT_COUNTER,
	MT_GAUGE,
	MT_HISTOGRAM,
} MetricType;

typedef struct Family {
	const char *name;
	MetricType type;
	const char *help;
} Family;

static const Family families[] = {
    {"zlh_reconcile_total", MT_COUNTER,
     "Reconciles per reconciler and result (ok, error, paused, lost_lease)"},
    {"zlh_reconcile_duration_seconds", MT_HISTOGRAM,
     "Time one reconciler spent on one server (observe, plan, act)"},
    {"zlh_actions_total", MT_COUNTER, "Actions performed per reconciler, action and result"},
    {"zlh_queue_depth", MT_GAUGE, "Keys ready to be worked"},
    {"zlh_queue_delayed", MT_GAUGE, "Keys waiting for a delay or a backoff"},
    {"zlh_work_in_flight", MT_GAUGE, "Keys being worked right now"},
    {"zlh_external_calls_total", MT_COUNTER,
     "Calls to external systems per system, method and HTTP status (0: no response)"},
    {"zlh_servers", MT_GAUGE, "Servers per phase"},
    {"zlh_leader", MT_GAUGE, "1 while this process holds the lease"},
    {"zlh_lease_epoch", MT_GAUGE, "The lease epoch held (0 on standby)"},
    {"zlh_last_pass_timestamp_seconds", MT_GAUGE,
     "Unix time when the last full pass (resync) completed"},
    {"zlh_resyncs_total", MT_COUNTER, "Full passes started"},
    {"zlh_notifications_total", MT_COUNTER, "NOTIFY zlh_work wake-ups received"},
    {"zlh_db_reconnects_total", MT_COUNTER, "Reconnections of the main database connection"},
    {"zlh_fenced_writes_total", MT_COUNTER, "Writes refused because a newer epoch exists"},
    {"zlh_observe_total", MT_COUNTER, "Bulk observations per reconciler and result"},
    {"zlh_events_total", MT_COUNTER, "Events recorded per type and reason"},
};

static const double buckets[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60};
#define N_BUCKETS (sizeof buckets / sizeof buckets[0])

typedef struct Series {
	const Family *fam;
	char *labels; /* rendered: k="v",k2="v2" (may be "") */
	double value; /* counter/gauge; histogram: sum */
	uint64_t count; /* histogram */
	uint64_t bucket[N_BUCKETS]; /* histogram, non-cumulative */
	struct Series *next;
} Series;

struct Metrics {
	pthread_mutex_t lock;
	Series *head, *tail;
	void (*collector)(Metrics *m, void *userdata);
	void *collector_data;
};

Metrics *metrics_new(void)
{
	Metrics *m = calloc(1, sizeof *m);
	if (!m)
		return NULL;
	pthread_mutex_init(&m->lock, NULL);
	return m;
}

Metrics *metrics_free(Metrics *m)
{
	if (!m)
		return NULL;
	Series *s = m->head;
	while (s) {
		Series *n = s->next;
		free(s->labels);
		free(s);
		s = n;
	}
	pthread_mutex_destroy(&m->lock);
	free(m);
	return NULL;
}

void metrics_set_collector(Metrics *m, void (*fn)(Metrics *m, void *userdata), void *userdata)
{
	pthread_mutex_lock(&m->lock);
	m->collector = fn;
	m->collector_data = userdata;
	pthread_mutex_unlock(&m->lock);
}

static const Family *find_family(const char *name)
{
	for (size_t i = 0; i < ELEMENTSOF(families); i++)
		if (strcmp(families[i].name, name) == 0)
			return &families[i];
	return NULL;
}

/* Renders labels with the exposition format's escapes. NULL on ENOMEM. */
static char *render_labels(const char *const *labels)
{
	Buf b = BUF_INIT;
	int r = buf_puts(&b, "");
	for (size_t i = 0; r >= 0 && labels && labels[i] && labels[i + 1]; i += 2) {
		r = buf_printf(&b, "%s%s=\"", i ? "," : "", labels[i]);
		for (const char *p = labels[i + 1]; r >= 0 && *p; p++) {
			if (*p == '\\')
				r = buf_puts(&b, "\\\\");
			else if (*p == '"')
				r = buf_puts(&b, "\\\"");
			else if (*p == '\n')
				r = buf_puts(&b, "\\n");
			else
				r = buf_append(&b, p, 1);
		}
		if (r >= 0)
			r = buf_puts(&b, "\"");
	}
	if (r < 0) {
		buf_done(&b);
		return NULL;
	}
	return buf_steal(&b);
}

/* Finds or makes a series; m locked. */
static Series *series(Metrics *m, const Family *f, const char *labels)
{
	for (Series *s = m->head; s; s = s->next)
		if (s->fam == f && strcmp(s->labels, labels) == 0)
			return s;
	Series *s = calloc(1, sizeof *s);
	if (!s)
		return NULL;
	s->labels = strdup(labels);
	if (!s->labels) {
		free(s);
		return NULL;
	}
	s->fam = f;
	/* Keep a family's series together (render order). */
	Series *after = NULL;
	for (Series *x = m->head; x; x = x->next)
		if (x->fam == f)
			after = x;
	if (after) {
		s->next = after->next;
		after->next = s;
		if (m->tail == after)
			m->tail = s;
	} else if (m->tail) {
		m->tail->next = s;
		m->tail = s;
	} else {
		m->head = m->tail = s;
	}
	return s;
}

static void update(Metrics *m, const char *name, MetricType want, const char *const *labels,
                   double v, bool set)
{
	const Family *f = find_family(name);
	if (!f || f->type != want) {
		log_debug("metrics: unknown or mistyped family %s", name);
		return;
	}
	_cleanup_free_ char *l = render_labels(labels);
	if (!l)
		return;
	pthread_mutex_lock(&m->lock);
	Series *s = series(m, f, l);
	if (s) {
		if (want == MT_HISTOGRAM) {
			s->value += v;
			s->count++;
			for (size_t i = 0; i < N_BUCKETS; i++)
				if (v <= buckets[i]) {
					s->bucket[i]++;
					break;
				}
		} else if (set) {
			s->value = v;
		} else {
			s->value += v;
		}
	}
	pthread_mutex_unlock(&m->lock);
}

void metrics_counter_add(Metrics *m, const char *name, const char *const *labels, double v)
{
	if (m && v >= 0)
		update(m, name, MT_COUNTER, labels, v, false);
}

void metrics_gauge_set(Metrics *m, const char *name, const char *const *labels, double v)
{
	if (m)
		update(m, name, MT_GAUGE, labels, v, true);
}

void metrics_gauge_reset(Metrics *m, const char *name)
{
	if (!m)
		return;
	pthread_mutex_lock(&m->lock);
	Series **pp = &m->head, *prev = NULL;
	while (*pp) {
		Series *s = *pp;
		if (strcmp(s->fam->name, name) == 0 && s->fam->type == MT_GAUGE) {
			*pp = s->next;
			if (m->tail == s)
				m->tail = prev;
			free(s->labels);
			free(s);
			continue;
		}
		prev = s;
		pp = &s->next;
	}
	pthread_mutex_unlock(&m->lock);
}

void metrics_histogram_observe(Metrics *m, const char *name, const char *const *labels,
                               double value)
{
	if (m)
		update(m, name, MT_HISTOGRAM, labels, value, false);
}

static int fmt_value(Buf *b, double v)
{
	if (isnan(v))
		return buf_puts(b, "NaN");
	if (isinf(v))
		return buf_puts(b, v > 0 ? "+Inf" : "-Inf");
	if (v == (double)(int64_t)v && fabs(v) < 1e15)
		return buf_printf(b, "%lld", (long long)v);
	return buf_printf(b, "%.17g", v);
}

int metrics_render(Metrics *m, Buf *out)
{
	void (*fn)(Metrics *, void *);
	void *ud;
	pthread_mutex_lock(&m->lock);
	fn = m->collector;
	ud = m->collector_data;
	pthread_mutex_unlock(&m->lock);
	if (fn)
		fn(m, ud);

	int r = 0;
	pthread_mutex_lock(&m->lock);
	for (size_t fi = 0; r >= 0 && fi < ELEMENTSOF(families); fi++) {
		const Family *f = &families[fi];
		r = buf_printf(out, "# HELP %s %s\n# TYPE %s %s\n", f->name, f->help, f->name,
		               f->type == MT_COUNTER ? "counter"
		               : f->type == MT_GAUGE ? "gauge"
		                                     : "histogram");
		for (Series *s = m->head; r >= 0 && s; s = s->next) {
			if (s->fam != f)
				continue;
			bool has = s->labels[0] != 0;
			if (f->type != MT_HISTOGRAM) {
				r = buf_printf(out, "%s%s%s%s ", f->name, has ? "{" : "", s->labels,
				               has ? "}" : "");
				if (r >= 0)
					r = fmt_value(out, s->value);
				if (r >= 0)
					r = buf_puts(out, "\n");
				continue;
			}
			uint64_t cum = 0;
			for (size_t i = 0; r >= 0 && i < N_BUCKETS; i++) {
				cum += s->bucket[i];
				r = buf_printf(out, "%s_bucket{%s%sle=\"%g\"} %llu\n", f->name,
				               s->labels, has ? "," : "", buckets[i],
				               (unsigned long long)cum);
			}
			if (r >= 0)
				r = buf_printf(out, "%s_bucket{%s%sle=\"+Inf\"} %llu\n", f->name,
				               s->labels, has ? "," : "",
				               (unsigned long long)s->count);
			if (r >= 0)
				r = buf_printf(out, "%s_sum%s%s%s ", f->name, has ? "{" : "",
				               s->labels, has ? "}" : "");
			if (r >= 0)
				r = fmt_value(out, s->value);
			if (r >= 0)
				r = buf_printf(out, "\n%s_count%s%s%s %llu\n", f->name,
				               has ? "{" : "", s->labels, has ? "}" : "",
				               (unsigned long long)s->count);
		}
	}
	pthread_mutex_unlock(&m->lock);
	return r < 0 ? r : 0;
}

/* --- HTTP ------------------------------------------------------------------------ */

struct MetricsServer {
	struct MHD_Daemon *d;
	Metrics *m;
	MetricsHealthFn health;
	void *userdata;
};

static enum MHD_Result reply(struct MHD_Connection *conn, unsigned code, const char *ctype,
                             const char *body, size_t len)
{
	struct MHD_Response *resp =
	    MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
	if (!resp)
		return MHD_NO;
	MHD_add_response_header(resp, "Content-Type", ctype);
	enum MHD_Result ret = MHD_queue_response(conn, code, resp);
	MHD_destroy_response(resp);
	return ret;
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *conn, const char *url,
                              const char *method, const char *version, const char *upload_data,
                              size_t *upload_data_size, void **con_cls)
{
	(void)version;
	(void)upload_data;
	(void)con_cls;
	MetricsServer *s = cls;
	if (*upload_data_size) {
		*upload_data_size = 0; /* ignore bodies */
		return MHD_YES;
	}
	if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
		return reply(conn, 405, "text/plain", "method not allowed\n", 19);
	if (strcmp(url, "/metrics") == 0) {
		_cleanup_buf_ Buf b = BUF_INIT;
		if (metrics_render(s->m, &b) < 0)
			return reply(conn, 500, "text/plain", "out of memory\n", 14);
		return reply(conn, 200, "text/plain; version=0.0.4; charset=utf-8",
		             b.data ? b.data : "", b.len);
	}
	if (strcmp(url, "/healthz") == 0) {
		char reason[256] = "ok";
		bool ok = s->health ? s->health(s->userdata, reason, sizeof reason) : true;
		char body[300];
		int n = snprintf(body, sizeof body, "%s\n", ok ? "ok" : reason);
		return reply(conn, ok ? 200 : 503, "text/plain", body,
		             (size_t)(n < (int)sizeof body ? n : (int)sizeof body - 1));
	}
	return reply(conn, 404, "text/plain", "not found\n", 10);
}

int metrics_server_start(Metrics *m, const char *listen, MetricsHealthFn health, void *userdata,
                         MetricsServer **ret)
{
	const char *colon = strrchr(listen, ':');
	if (!colon || colon == listen)
		return -EINVAL;
	char host[256];
	size_t hl = (size_t)(colon - listen);
	if (hl >= sizeof host)
		return -EINVAL;
	memcpy(host, listen, hl);
	host[hl] = 0;
	if (host[0] == '[' && hl > 2 && host[hl - 1] == ']') {
		memmove(host, host + 1, hl - 2);
		host[hl - 2] = 0;
	}
	struct addrinfo hints = {
	    .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV};
	struct addrinfo *ai = NULL;
	if (getaddrinfo(host, colon + 1, &hints, &ai) != 0 || !ai)
		return -EADDRNOTAVAIL;
	MetricsServer *s = calloc(1, sizeof *s);
	if (!s) {
		freeaddrinfo(ai);
		return -ENOMEM;
	}
	s->m = m;
	s->health = health;
	s->userdata = userdata;
	unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG;
	if (ai->ai_family == AF_INET6)
		flags |= MHD_USE_IPv6;
	s->d = MHD_start_daemon(flags, 0, NULL, NULL, handle, s, MHD_OPTION_SOCK_ADDR, ai->ai_addr,
	                        MHD_OPTION_CONNECTION_LIMIT, (unsigned)16,
	                        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)10, MHD_OPTION_END);
	freeaddrinfo(ai);
	if (!s->d) {
		free(s);
		return -EADDRINUSE;
	}
	*ret = s;
	return 0;
}

MetricsServer *metrics_server_stop(MetricsServer *s)
{
	if (!s)
		return NULL;
	if (s->d)
		MHD_stop_daemon(s->d);
	free(s);
	return NULL;
}
