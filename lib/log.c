#include "log.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <systemd/sd-journal.h>

#include "buf.h"
#include "util.h"

static int log_level = LOG_INFO;
static int log_fd = 2;
static int log_journal = -1; /* -1 = detect */
static pthread_mutex_t secrets_lock = PTHREAD_MUTEX_INITIALIZER;
static char *secrets[16];
static size_t n_secrets;

void log_set_level(int level)
{
	log_level = level;
}

int log_get_level(void)
{
	return log_level;
}

int log_level_parse(const char *s, int *ret_level)
{
	static const struct {
		const char *name;
		int level;
	} t[] = {{"debug", LOG_DEBUG},     {"info", LOG_INFO},    {"notice", LOG_NOTICE},
	         {"warning", LOG_WARNING}, {"warn", LOG_WARNING}, {"error", LOG_ERR},
	         {"err", LOG_ERR}};
	for (size_t i = 0; i < ELEMENTSOF(t); i++)
		if (strcmp(s, t[i].name) == 0) {
			*ret_level = t[i].level;
			return 0;
		}
	return -EINVAL;
}

void log_set_journal(bool on)
{
	log_journal = on;
}

void log_set_fd(int fd)
{
	log_fd = fd;
}

void log_register_secret(const char *secret)
{
	if (!secret || strlen(secret) < 4)
		return;
	pthread_mutex_lock(&secrets_lock);
	if (n_secrets < ELEMENTSOF(secrets)) {
		char *c = strdup(secret);
		if (c)
			secrets[n_secrets++] = c;
	}
	pthread_mutex_unlock(&secrets_lock);
}

static bool detect_journal(void)
{
	const char *e = getenv("JOURNAL_STREAM");
	if (!e)
		return false;
	unsigned long long dev, ino;
	if (sscanf(e, "%llu:%llu", &dev, &ino) != 2)
		return false;
	struct stat st;
	if (fstat(log_fd, &st) < 0)
		return false;
	return (unsigned long long)st.st_dev == dev && (unsigned long long)st.st_ino == ino;
}

static const char *level_name(int level)
{
	switch (level) {
	case LOG_EMERG:
	case LOG_ALERT:
	case LOG_CRIT:
	case LOG_ERR:
		return "error";
	case LOG_WARNING:
		return "warning";
	case LOG_NOTICE:
		return "notice";
	case LOG_INFO:
		return "info";
	default:
		return "debug";
	}
}

/* Appends s as a JSON string body (without quotes). */
static int json_escape(Buf *b, const char *s)
{
	int r = 0;
	for (const unsigned char *p = (const unsigned char *)s; *p && r >= 0; p++) {
		switch (*p) {
		case '"':
			r = buf_puts(b, "\\\"");
			break;
		case '\\':
			r = buf_puts(b, "\\\\");
			break;
		case '\n':
			r = buf_puts(b, "\\n");
			break;
		case '\r':
			r = buf_puts(b, "\\r");
			break;
		case '\t':
			r = buf_puts(b, "\\t");
			break;
		default:
			if (*p < 0x20)
				r = buf_printf(b, "\\u%04x", *p);
			else
				r = buf_append(b, p, 1);
		}
	}
	return r;
}

/* Replaces every registered secret inside b's data by [redacted]. */
static void redact(Buf *b);

/* Sends one record to journald with native fields: MESSAGE, PRIORITY and
 * each field as an upper-cased key (ZLH_UID=...), secrets redacted. */
static void journal_send(int level, const char *const *fields, Buf *msg)
{
	struct iovec iov[34];
	char *owned[34];
	size_t n = 0;
	Buf m = BUF_INIT;
	if (buf_printf(&m, "MESSAGE=%s", msg->data ? msg->data : "") < 0)
		return;
	redact(&m);
	owned[n] = buf_steal(&m);
	iov[n].iov_base = owned[n];
	iov[n].iov_len = owned[n] ? strlen(owned[n]) : 0;
	n++;
	char prio[16];
	snprintf(prio, sizeof prio, "PRIORITY=%d", level);
	owned[n] = strdup(prio);
	iov[n].iov_base = owned[n];
	iov[n].iov_len = owned[n] ? strlen(owned[n]) : 0;
	n++;
	for (size_t i = 0; fields && fields[i] && fields[i + 1] && n < ELEMENTSOF(iov); i += 2) {
		Buf f = BUF_INIT;
		(void)!buf_puts(&f, "ZLH_");
		for (const char *k = fields[i]; *k; k++) {
			char ch = *k;
			if (ch >= 'a' && ch <= 'z')
				ch = (char)(ch - 'a' + 'A');
			else if (!((ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9')))
				ch = '_';
			(void)!buf_append(&f, &ch, 1);
		}
		(void)!buf_printf(&f, "=%s", fields[i + 1]);
		redact(&f);
		owned[n] = buf_steal(&f);
		iov[n].iov_base = owned[n];
		iov[n].iov_len = owned[n] ? strlen(owned[n]) : 0;
		n++;
	}
	sd_journal_sendv(iov, (int)n);
	for (size_t i = 0; i < n; i++)
		free(owned[i]);
}
static void redact(Buf *b)
{
	pthread_mutex_lock(&secrets_lock);
	for (size_t i = 0; i < n_secrets; i++) {
		size_t sl = strlen(secrets[i]);
		char *hit;
		while (b->data && (hit = strstr(b->data, secrets[i]))) {
			static const char rep[] = "[redacted]";
			size_t off = (size_t)(hit - b->data);
			size_t tail = b->len - off - sl;
			if (sl >= sizeof rep - 1) {
				memcpy(hit, rep, sizeof rep - 1);
				memmove(hit + sizeof rep - 1, hit + sl, tail + 1);
				b->len -= sl - (sizeof rep - 1);
			} else {
				memset(hit, '*', sl);
			}
		}
	}
	pthread_mutex_unlock(&secrets_lock);
}

void log_fields(int level, const char *const *fields, const char *fmt, ...)
{
	if (level > log_level)
		return;
	int saved_errno = errno;
	if (log_journal < 0)
		log_journal = detect_journal();

	_cleanup_buf_ Buf msg = BUF_INIT;
	_cleanup_buf_ Buf line = BUF_INIT;
	va_list ap;
	va_start(ap, fmt);
	int r = buf_vprintf(&msg, fmt, ap);
	va_end(ap);
	if (r < 0)
		goto out;

	if (log_journal) {
		journal_send(level, fields, &msg);
		goto out;
	}
	{
		char ts[40];
		time_format_rfc3339(now_wall_ms(), ts, sizeof ts);
		r = buf_printf(&line, "{\"ts\":\"%s\",\"level\":\"%s\",\"msg\":\"", ts,
		               level_name(level));
		if (r >= 0)
			r = json_escape(&line, msg.data ? msg.data : "");
		if (r >= 0)
			r = buf_puts(&line, "\"");
		for (size_t i = 0; r >= 0 && fields && fields[i]; i += 2) {
			const char *v = fields[i + 1];
			if (!v)
				break;
			r = buf_puts(&line, ",\"");
			if (r >= 0)
				r = json_escape(&line, fields[i]);
			if (r >= 0)
				r = buf_puts(&line, "\":\"");
			if (r >= 0)
				r = json_escape(&line, v);
			if (r >= 0)
				r = buf_puts(&line, "\"");
		}
		if (r >= 0)
			r = buf_puts(&line, "}");
	}
	if (r >= 0)
		r = buf_puts(&line, "\n");
	if (r < 0)
		goto out;
	redact(&line);
	ssize_t w = write(log_fd, line.data, line.len);
	(void)w;
out:
	errno = saved_errno;
}
