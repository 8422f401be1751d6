/* velocity.h - the client of the Velocity proxy's ZpackVelocityBridge
 * (DESIGN.md section 6, contracts/README.md "Velocity facts").
 *
 *   GET  /zpack/status      -> {"servers":[{"name","address","port"}]}
 *   POST /zpack/register    {"server_name","address","port"}
 *   POST /zpack/unregister  {"server_name"}            (404 = already gone)
 *
 * Every call carries `X-Zpack-Secret: <hex sha256 of the shared secret>`
 * (config.h: velocity.secret_sha256). Velocity keys servers by name,
 * case-insensitively; registering the same name and address again is a
 * no-op, another address is refused (unregister first). Registrations live
 * in the proxy's memory and vanish when it restarts.
 *
 * Errors are translated at this edge into a negative errno plus a
 * VelocityError the caller can log:
 *   -EEXIST     409: the name is registered with another address
 *   -EINVAL     400 (or arguments this client refuses to send)
 *   -EACCES     401; -EPERM 403
 *   -ENOENT     404 on anything but unregister
 *   -EAGAIN     429 / 503 (try later; err.retry_after_s when given)
 *   -EREMOTEIO  another status: refused or failed on the peer (500 ...)
 *   -EBADMSG    a 2xx answer that is not the documented shape
 *   transport errors from http_request() as they are (-ETIMEDOUT,
 *   -ECONNRESET, -EIO: outcome unknown; -ECONNREFUSED, -EHOSTUNREACH:
 *   nothing sent).
 * Register and unregister go on a fresh connection (the rule for calls
 * that change something). One VelocityClient per thread.
 *
 * The parsing half (velocity_parse_status, velocity_classify, the body
 * builders) is pure: unit tests feed it strings. Logs at debug only. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "cleanup.h"
#include "http.h"

/* Bounds on what the peer controls. */
#define VELOCITY_MAX_SERVERS 100000
#define VELOCITY_MAX_BODY (16u << 20)
#define VELOCITY_NAME_MAX 256 /* bytes incl. NUL */
#define VELOCITY_ADDRESS_MAX 256

typedef struct VelocityClient VelocityClient;

typedef struct VelocityClientOptions {
	const char *url; /* borrowed, copied: "http://10.60.0.2:8081" (no trailing path) */
	const char *secret_sha256; /* borrowed, copied: 64 hex; never logged */
	HttpOptions http; /* copied; timeout 0 = 10 s; max_body 0 = VELOCITY_MAX_BODY */
} VelocityClientOptions;

/* Details of a failed call. Fixed buffers: nothing to free. */
typedef struct VelocityError {
	long http_status; /* 0 when no response arrived */
	int64_t retry_after_s; /* Retry-After of a 429/503, or -1 */
	char message[256]; /* the bridge's "error" text, or the transport error */
} VelocityError;

/* One registration as /zpack/status lists it. */
typedef struct VelocityServer {
	char name[VELOCITY_NAME_MAX];
	char address[VELOCITY_ADDRESS_MAX];
	int port;
} VelocityServer;

typedef struct VelocityServers {
	VelocityServer *items; /* owned */
	size_t n;
} VelocityServers;

void velocity_servers_clear(VelocityServers *s);

/* The entry named name (case-insensitive), or NULL. Borrowed from s. */
const VelocityServer *velocity_servers_find(const VelocityServer *items, size_t n,
                                            const char *name);

/* True when name is one Velocity accepts and this client sends: 1..255
 * bytes of [A-Za-z0-9._-]. */
bool velocity_name_valid(const char *name);

/* --- pure parsing and building ----------------------------------------------- */

/* The errno of an HTTP status (table above); unregister: 404 is 1
 * ("already gone": success). 2xx is 0. */
int velocity_classify(long status, bool unregister);

/* Parses a /zpack/status body. 0 and *ret (new) on success; -EBADMSG when
 * the body or any entry is not the documented shape (a list that cannot be
 * read whole is unknown, never partial); -E2BIG past VELOCITY_MAX_SERVERS. */
int velocity_parse_status(const char *body, size_t len, VelocityServers *ret) _must_check_;

/* The error text of an error body ({"error":"..."}) into buf, else the
 * body's first line (bounded); "" when empty. */
void velocity_error_text(const char *body, size_t len, char *buf, size_t n);

/* JSON bodies of register/unregister into b (appended). -EINVAL for a bad
 * name, address or port. */
int velocity_register_body(const char *name, const char *address, int port, Buf *b) _must_check_;
int velocity_unregister_body(const char *name, Buf *b) _must_check_;

/* --- the client ------------------------------------------------------------------- */

/* A new client, or NULL (-ENOMEM or invalid options: url and secret
 * required). */
VelocityClient *velocity_client_new(const VelocityClientOptions *o);
VelocityClient *velocity_client_free(VelocityClient *c);
DEFINE_TRIVIAL_CLEANUP_FUNC(VelocityClient *, velocity_client_free)
#define _cleanup_velocity_client_ _cleanup_(velocity_client_freep)

/* GET /zpack/status. 0 and *ret (new) or -errno (err filled when given). */
int velocity_status(VelocityClient *c, VelocityServers *ret, VelocityError *err) _must_check_;

/* POST /zpack/register. 0 registered (or already so, same address), or
 * -EEXIST (another address holds the name), -errno. */
int velocity_register(VelocityClient *c, const char *name, const char *address, int port,
                      VelocityError *err) _must_check_;

/* POST /zpack/unregister. 0 unregistered, 1 it was not registered (404),
 * or -errno. */
int velocity_unregister(VelocityClient *c, const char *name, VelocityError *err) _must_check_;
