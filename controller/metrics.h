/* metrics.h - Prometheus metrics (text format 0.0.4) and the /metrics and
 * /healthz endpoints (libmicrohttpd), DESIGN.md section 8.
 *
 * Families are declared once in metrics.c (name, type, help); series are
 * created on first use, keyed by their label values. Labels are given as a
 * NULL-terminated list of name, value pairs:
 *   metrics_counter_add(m, "zlh_external_calls_total",
 *                       METRIC_L("system", "proxmox", "method", "POST",
 *                                "code", "200"), 1);
 * Thread-safe. Values that are cheaper to read than to push (queue depth,
 * leader flag) are filled by a collector callback just before rendering. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "buf.h"
#include "cleanup.h"

#define METRIC_L(...) ((const char *const[]){__VA_ARGS__, NULL})

typedef struct Metrics Metrics;

Metrics *metrics_new(void);
Metrics *metrics_free(Metrics *m);
DEFINE_TRIVIAL_CLEANUP_FUNC(Metrics *, metrics_free)

/* Unknown family names are ignored (a bug, logged at debug). */
void metrics_counter_add(Metrics *m, const char *name, const char *const *labels, double v);
void metrics_gauge_set(Metrics *m, const char *name, const char *const *labels, double v);
/* Drops every series of a gauge family (before re-filling it). */
void metrics_gauge_reset(Metrics *m, const char *name);
void metrics_histogram_observe(Metrics *m, const char *name, const char *const *labels,
                               double value);

/* Called (with m unlocked) before each render. */
void metrics_set_collector(Metrics *m, void (*fn)(Metrics *m, void *userdata), void *userdata);

/* Appends the whole exposition to out. 0 or -ENOMEM. */
int metrics_render(Metrics *m, Buf *out) _must_check_;

/* Health for /healthz: true = 200; false = 503 with reason (static or
 * written into buf). */
typedef bool (*MetricsHealthFn)(void *userdata, char *reason, size_t n);

typedef struct MetricsServer MetricsServer;
/* Serves /metrics and /healthz on listen ("HOST:PORT", numeric host or
 * "localhost") from libmicrohttpd's own thread. 0 or -errno. */
int metrics_server_start(Metrics *m, const char *listen, MetricsHealthFn health, void *userdata,
                         MetricsServer **ret) _must_check_;
MetricsServer *metrics_server_stop(MetricsServer *s);
