/* server.c - libmicrohttpd glue: listeners, request assembly, fault
 * application, dropped connections, accounting of every request.
 *
 * Each listener is an MHD daemon with a thread per connection, so a handler
 * that must wait (latency, a hang, an agent that never answers) blocks only
 * its own connection. A dropped reply ("lost" fault, an unreachable agent)
 * is done by arming SO_LINGER 0 and returning MHD_NO: the kernel resets the
 * connection and the client sees no byte of a reply. */
#include "sim.h"

#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"
#include "util.h"

#define MAX_BODY (1024 * 1024)

struct SimListener {
	SimSystem sys;
	struct MHD_Daemon *d;
	int fd;
	int port;
};

typedef struct Req {
	Buf body;
	bool too_big;
	int64_t t0;
} Req;

/* ---- response helpers ------------------------------------------------------ */

void resp_json(SimResponse *resp, int status, json_t *take)
{
	resp->status = status;
	free(resp->body);
	resp->body = take ? json_dumps(take, JSON_COMPACT | JSON_ENCODE_ANY) : strdup("null");
	resp->content_type = "application/json;charset=UTF-8";
	json_decref(take);
}

void resp_text(SimResponse *resp, int status, const char *text)
{
	resp->status = status;
	free(resp->body);
	resp->body = strdup(text ? text : "");
	resp->content_type = "text/plain;charset=UTF-8";
}

const char *req_query(const SimRequest *req, const char *key)
{
	return json_string_value(json_object_get(req->query, key));
}

json_t *req_body_json(const SimRequest *req)
{
	if (!req->body_len)
		return NULL;
	json_t *j = json_loadb(req->body, req->body_len, 0, NULL);
	if (j && !json_is_object(j)) {
		json_decref(j);
		return NULL;
	}
	return j;
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Decodes %XX (and '+' as a space when plus) of [s, s+n) into a new string. */
static char *url_decode(const char *s, size_t n, bool plus)
{
	char *out = malloc(n + 1);
	if (!out)
		abort();
	size_t j = 0;
	for (size_t i = 0; i < n; i++) {
		if (plus && s[i] == '+') {
			out[j++] = ' ';
		} else if (s[i] == '%' && i + 2 < n && hexval(s[i + 1]) >= 0 &&
		           hexval(s[i + 2]) >= 0) {
			out[j++] = (char)(hexval(s[i + 1]) * 16 + hexval(s[i + 2]));
			i += 2;
		} else {
			out[j++] = s[i];
		}
	}
	out[j] = 0;
	return out;
}

json_t *req_body_params(const SimRequest *req, bool *ret_bad)
{
	*ret_bad = false;
	if (req->content_type && strstr(req->content_type, "application/json")) {
		if (!req->body_len)
			return json_object();
		json_t *j = json_loadb(req->body, req->body_len, 0, NULL);
		if (!j || !json_is_object(j)) {
			json_decref(j);
			*ret_bad = true;
			return json_object();
		}
		return j;
	}
	json_t *o = json_object();
	const char *p = req->body, *end = req->body + req->body_len;
	while (p < end) {
		const char *amp = memchr(p, '&', (size_t)(end - p));
		const char *stop = amp ? amp : end;
		if (stop > p) {
			const char *eq = memchr(p, '=', (size_t)(stop - p));
			_cleanup_free_ char *k =
			    url_decode(p, (size_t)((eq ? eq : stop) - p), true);
			_cleanup_free_ char *v =
			    eq ? url_decode(eq + 1, (size_t)(stop - eq - 1), true) : strdup("");
			if (*k)
				json_object_set_new(o, k, json_string(v ? v : ""));
		}
		p = stop + 1;
	}
	return o;
}

/* ---- request processing ------------------------------------------------------ */

static enum MHD_Result collect_arg(void *cls, enum MHD_ValueKind kind, const char *key,
                                   const char *value)
{
	(void)kind;
	if (key)
		json_object_set_new(cls, key, json_string(value ? value : ""));
	return MHD_YES;
}

static void split_path(SimRequest *req)
{
	const char *p = req->path;
	while (*p && req->nseg < SIM_MAX_SEGS) {
		while (*p == '/')
			p++;
		if (!*p)
			break;
		const char *e = strchr(p, '/');
		size_t n = e ? (size_t)(e - p) : strlen(p);
		req->segs[req->nseg++] = url_decode(p, n, false);
		p += n;
	}
}

static void arm_reset(struct MHD_Connection *conn)
{
	const union MHD_ConnectionInfo *ci =
	    MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
	if (!ci)
		return;
	struct linger lg = {.l_onoff = 1, .l_linger = 0};
	(void)setsockopt(ci->connect_fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
}

static uint32_t local_ip(struct MHD_Connection *conn)
{
	const union MHD_ConnectionInfo *ci =
	    MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
	if (!ci)
		return 0;
	struct sockaddr_in sa;
	socklen_t len = sizeof(sa);
	if (getsockname(ci->connect_fd, (struct sockaddr *)&sa, &len) < 0 ||
	    sa.sin_family != AF_INET)
		return 0;
	return ntohl(sa.sin_addr.s_addr);
}

static bool route(SimRequest *req)
{
	switch (req->sys) {
	case SYS_PVE:
		return pve_route(req);
	case SYS_AGENT:
		return agent_route(req);
	case SYS_VELOCITY:
		return velocity_route(req);
	case SYS_CLOUDFLARE:
		return cf_route(req);
	default:
		return control_route(req);
	}
}

static void fault_response(SimSystem sys, SimResponse *resp)
{
	switch (sys) {
	case SYS_PVE:
		pve_fault_response(resp);
		break;
	case SYS_AGENT:
		agent_fault_response(resp);
		break;
	case SYS_VELOCITY:
		velocity_fault_response(resp);
		break;
	default:
		cf_fault_response(resp);
	}
}

static enum MHD_Result process(SimListener *l, Req *r, struct MHD_Connection *conn, const char *url,
                               const char *method)
{
	SimRequest req = {.sys = l->sys, .method = method, .path = url, .conn = conn};
	SimResponse resp = {.status = 500, .retry_after_s = -1};
	enum MHD_Result ret = MHD_YES;

	req.query = json_object();
	MHD_get_connection_values(conn, MHD_GET_ARGUMENT_KIND, collect_arg, req.query);
	split_path(&req);
	req.body = r->body.data ? r->body.data : "";
	req.body_len = r->body.len;
	req.content_type = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Type");
	req.authorization = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Authorization");
	req.zpack_secret = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "X-Zpack-Secret");
	if (l->sys == SYS_AGENT)
		req.local_ip = local_ip(conn);
	req.mutating = strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0;
	route(&req);

	FaultDecision fd = {0};
	world_lock();
	world_tick();
	if (l->sys != SYS_CONTROL)
		faults_decide(&req, &fd);
	world_unlock();

	if (fd.delay_ms > 0)
		sim_sleep_ms(fd.delay_ms);
	if (fd.hang_ms > 0)
		sim_sleep_ms(fd.hang_ms);

	const char *note = NULL;
	world_lock();
	world_tick();
	if (r->too_big) {
		resp_text(&resp, 413, "request body too large");
	} else if (fd.error) {
		fault_response(l->sys, &resp);
		note = "error";
	} else if (l->sys == SYS_CLOUDFLARE && cf_rate_limited(&resp)) {
		note = "rate_limited";
	} else {
		req.handler(&req, &resp);
	}
	if (fd.lost && !fd.error && !resp.drop) {
		resp.drop = true;
		note = "lost";
	} else if (resp.drop) {
		note = resp.note ? resp.note : "dropped";
	} else if (!note && fd.hang_ms > 0) {
		note = "hang";
	}
	stats_request(l->sys, req.route, resp.drop ? 0 : resp.status, note, method, url,
	              now_mono_ms() - r->t0, req.local_ip);
	world_unlock();

	if (resp.hang_ms > 0)
		sim_sleep_ms(resp.hang_ms);

	if (resp.drop || sim_stopping) {
		arm_reset(conn);
		ret = MHD_NO;
		goto out;
	}

	{
		size_t len = resp.body ? strlen(resp.body) : 0;
		struct MHD_Response *mr = MHD_create_response_from_buffer(
		    len, resp.body ? resp.body : (char *)"",
		    resp.body ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_PERSISTENT);
		if (!mr) {
			ret = MHD_NO;
			goto out;
		}
		resp.body = NULL; /* owned by the response now */
		MHD_add_response_header(mr, "Content-Type",
		                        resp.content_type ? resp.content_type : "application/json");
		if (resp.retry_after_s >= 0) {
			char ra[32];
			snprintf(ra, sizeof(ra), "%lld", (long long)resp.retry_after_s);
			MHD_add_response_header(mr, "Retry-After", ra);
		}
		ret = MHD_queue_response(conn, (unsigned)resp.status, mr);
		MHD_destroy_response(mr);
	}
out:
	free(resp.body);
	for (int i = 0; i < req.nseg; i++)
		free(req.segs[i]);
	json_decref(req.query);
	return ret;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **ctx)
{
	(void)version;
	SimListener *l = cls;
	Req *r = *ctx;
	if (!r) {
		r = calloc(1, sizeof(*r));
		if (!r)
			return MHD_NO;
		r->t0 = now_mono_ms();
		*ctx = r;
		return MHD_YES;
	}
	if (*upload_data_size) {
		if (r->body.len + *upload_data_size > MAX_BODY)
			r->too_big = true;
		else if (buf_append(&r->body, upload_data, *upload_data_size) < 0)
			r->too_big = true;
		*upload_data_size = 0;
		return MHD_YES;
	}
	return process(l, r, conn, url, method);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **ctx,
                         enum MHD_RequestTerminationCode toe)
{
	(void)cls;
	(void)conn;
	(void)toe;
	Req *r = *ctx;
	if (!r)
		return;
	buf_done(&r->body);
	free(r);
	*ctx = NULL;
}

/* The agent listener binds every address but serves loopback only. */
static enum MHD_Result on_accept(void *cls, const struct sockaddr *addr, socklen_t addrlen)
{
	(void)cls;
	if (addrlen < sizeof(struct sockaddr_in) || addr->sa_family != AF_INET)
		return MHD_NO;
	const struct sockaddr_in *sin = (const struct sockaddr_in *)addr;
	return (ntohl(sin->sin_addr.s_addr) >> 24) == 127 ? MHD_YES : MHD_NO;
}

int server_start(SimSystem sys, const char *addr, int port, SimListener **ret)
{
	SimListener *l = calloc(1, sizeof(*l));
	if (!l)
		return -ENOMEM;
	l->sys = sys;
	l->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (l->fd < 0) {
		free(l);
		return -errno;
	}
	int one = 1;
	(void)setsockopt(l->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	if (inet_pton(AF_INET, addr, &sa.sin_addr) != 1 ||
	    bind(l->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(l->fd, 1024) < 0) {
		int e = -errno;
		close(l->fd);
		free(l);
		return e ? e : -EINVAL;
	}
	socklen_t len = sizeof(sa);
	if (getsockname(l->fd, (struct sockaddr *)&sa, &len) < 0) {
		int e = -errno;
		close(l->fd);
		free(l);
		return e;
	}
	l->port = ntohs(sa.sin_port);
	l->d = MHD_start_daemon(MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD |
	                            MHD_USE_POLL | MHD_USE_ITC,
	                        0, sys == SYS_AGENT ? on_accept : NULL, NULL, on_request, l,
	                        MHD_OPTION_LISTEN_SOCKET, l->fd, MHD_OPTION_NOTIFY_COMPLETED,
	                        on_completed, NULL, MHD_OPTION_CONNECTION_LIMIT, (unsigned)4000,
	                        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)120,
	                        MHD_OPTION_THREAD_STACK_SIZE, (size_t)(512 * 1024), MHD_OPTION_END);
	if (!l->d) {
		close(l->fd);
		free(l);
		return -EIO;
	}
	*ret = l;
	return 0;
}

int server_port(const SimListener *l)
{
	return l->port;
}

void server_stop(SimListener *l)
{
	if (!l)
		return;
	MHD_stop_daemon(l->d);
	close(l->fd);
	free(l);
}
