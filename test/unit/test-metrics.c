/* test-metrics.c - the Prometheus exposition (controller/metrics.c) and the
 * /metrics and /healthz endpoints on a loopback port. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "controller/metrics.h"
#include "http.h"

static char *render(Metrics *m)
{
	Buf b = BUF_INIT;
	assert_int_equal(metrics_render(m, &b), 0);
	return buf_steal(&b);
}

static void metrics__counters_gauges__text_format(void **state)
{
	(void)state;
	_cleanup_(metrics_freep) Metrics *m = metrics_new();
	assert_non_null(m);
	metrics_counter_add(m, "zlh_external_calls_total",
	                    METRIC_L("system", "proxmox", "method", "POST", "code", "200"), 1);
	metrics_counter_add(m, "zlh_external_calls_total",
	                    METRIC_L("system", "proxmox", "method", "POST", "code", "200"), 2);
	metrics_counter_add(m, "zlh_external_calls_total",
	                    METRIC_L("system", "dns", "method", "GET", "code", "0"), 1);
	metrics_counter_add(m, "zlh_external_calls_total", NULL, -5); /* counters never go down */
	metrics_gauge_set(m, "zlh_leader", NULL, 1);
	metrics_gauge_set(m, "zlh_leader", NULL, 0);
	metrics_gauge_set(m, "zlh_servers", METRIC_L("phase", "Ready"), 118);
	metrics_counter_add(m, "zlh_no_such_family", NULL, 1); /* ignored */
	metrics_gauge_set(m, "zlh_external_calls_total", NULL, 9); /* wrong type: ignored */
	_cleanup_free_ char *t = render(m);
	assert_non_null(strstr(t, "# TYPE zlh_external_calls_total counter\n"));
	assert_non_null(strstr(
	    t, "zlh_external_calls_total{system=\"proxmox\",method=\"POST\",code=\"200\"} 3\n"));
	assert_non_null(
	    strstr(t, "zlh_external_calls_total{system=\"dns\",method=\"GET\",code=\"0\"} 1\n"));
	assert_non_null(strstr(t, "# TYPE zlh_leader gauge\nzlh_leader 0\n"));
	assert_non_null(strstr(t, "zlh_servers{phase=\"Ready\"} 118\n"));
	assert_null(strstr(t, "zlh_no_such_family"));
	assert_null(strstr(t, "zlh_external_calls_total 9"));
	metrics_gauge_reset(m, "zlh_servers");
	_cleanup_free_ char *t2 = render(m);
	assert_null(strstr(t2, "zlh_servers{"));
	assert_non_null(strstr(t2, "zlh_leader 0"));
}

static void metrics__label_values__escaped(void **state)
{
	(void)state;
	_cleanup_(metrics_freep) Metrics *m = metrics_new();
	metrics_counter_add(m, "zlh_events_total",
	                    METRIC_L("type", "Warning", "reason", "a\"b\\c\nd"), 1);
	_cleanup_free_ char *t = render(m);
	assert_non_null(
	    strstr(t, "zlh_events_total{type=\"Warning\",reason=\"a\\\"b\\\\c\\nd\"} 1\n"));
}

static void metrics__histogram__cumulative_buckets_sum_count(void **state)
{
	(void)state;
	_cleanup_(metrics_freep) Metrics *m = metrics_new();
	const char *const *l = METRIC_L("reconciler", "container", "result", "ok");
	metrics_histogram_observe(m, "zlh_reconcile_duration_seconds", l, 0.003);
	metrics_histogram_observe(m, "zlh_reconcile_duration_seconds", l, 0.2);
	metrics_histogram_observe(m, "zlh_reconcile_duration_seconds", l, 0.2);
	metrics_histogram_observe(m, "zlh_reconcile_duration_seconds", l, 100);
	_cleanup_free_ char *t = render(m);
	const char *p =
	    "zlh_reconcile_duration_seconds_bucket{reconciler=\"container\",result=\"ok\",";
	char want[256];
	snprintf(want, sizeof want, "%sle=\"0.005\"} 1\n", p);
	assert_non_null(strstr(t, want));
	snprintf(want, sizeof want, "%sle=\"0.1\"} 1\n", p);
	assert_non_null(strstr(t, want));
	snprintf(want, sizeof want, "%sle=\"0.25\"} 3\n", p);
	assert_non_null(strstr(t, want));
	snprintf(want, sizeof want, "%sle=\"60\"} 3\n", p);
	assert_non_null(strstr(t, want));
	snprintf(want, sizeof want, "%sle=\"+Inf\"} 4\n", p);
	assert_non_null(strstr(t, want));
	assert_non_null(strstr(t, "zlh_reconcile_duration_seconds_count{reconciler=\"container\","
	                          "result=\"ok\"} 4\n"));
	assert_non_null(strstr(t, "zlh_reconcile_duration_seconds_sum{reconciler=\"container\","
	                          "result=\"ok\"} 100.403"));
}

static void collector(Metrics *m, void *userdata)
{
	(*(int *)userdata)++;
	metrics_gauge_set(m, "zlh_queue_depth", NULL, 42);
}

static bool healthy;

static bool health(void *userdata, char *reason, size_t n)
{
	(void)userdata;
	if (!healthy)
		snprintf(reason, n, "last pass completed 99 s ago");
	return healthy;
}

static int free_port(void)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(0x7f000001)};
	assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
	socklen_t l = sizeof a;
	assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &l), 0);
	close(fd);
	return ntohs(a.sin_port);
}

static long get(int port, const char *path, char **body)
{
	HttpOptions o = {.timeout_ms = 5000};
	HttpClient *c = http_client_new(&o);
	char url[128];
	snprintf(url, sizeof url, "http://127.0.0.1:%d%s", port, path);
	HttpResponse r = {0};
	assert_int_equal(http_request(c, "GET", url, NULL, NULL, 0, false, &r), 0);
	long st = r.status;
	*body = strdup(r.body.data ? r.body.data : "");
	http_response_clear(&r);
	http_client_free(c);
	return st;
}

static void metrics_server__metrics_and_healthz(void **state)
{
	(void)state;
	_cleanup_(metrics_freep) Metrics *m = metrics_new();
	int calls = 0;
	metrics_set_collector(m, collector, &calls);
	int port = free_port();
	char listen[32];
	snprintf(listen, sizeof listen, "127.0.0.1:%d", port);
	MetricsServer *s = NULL;
	assert_int_equal(metrics_server_start(m, listen, health, NULL, &s), 0);
	char *b = NULL;
	assert_int_equal(get(port, "/metrics", &b), 200);
	assert_non_null(strstr(b, "zlh_queue_depth 42\n"));
	assert_true(calls >= 1);
	free(b);
	healthy = true;
	assert_int_equal(get(port, "/healthz", &b), 200);
	assert_string_equal(b, "ok\n");
	free(b);
	healthy = false;
	assert_int_equal(get(port, "/healthz", &b), 503);
	assert_non_null(strstr(b, "last pass completed 99 s ago"));
	free(b);
	assert_int_equal(get(port, "/", &b), 404);
	free(b);
	/* The port is taken now: a second listener fails cleanly. */
	MetricsServer *s2 = NULL;
	assert_true(metrics_server_start(m, listen, NULL, NULL, &s2) < 0);
	metrics_server_stop(s);
	assert_true(metrics_server_start(m, "nonsense", NULL, NULL, &s2) < 0);
}

int main(void)
{
	http_global_init();
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(metrics__counters_gauges__text_format),
	    cmocka_unit_test(metrics__label_values__escaped),
	    cmocka_unit_test(metrics__histogram__cumulative_buckets_sum_count),
	    cmocka_unit_test(metrics_server__metrics_and_healthz),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
