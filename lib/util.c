#include "util.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <openssl/evp.h>

#include "buf.h"

int duration_parse(const char *s, int64_t *ret_ms)
{
	if (!s || !*s)
		return -EINVAL;
	int64_t total = 0;
	const char *p = s;
	while (*p) {
		if (!isdigit((unsigned char)*p))
			return -EINVAL;
		errno = 0;
		char *end;
		unsigned long long v = strtoull(p, &end, 10);
		if (errno || end == p || v > (unsigned long long)INT64_MAX / 86400000ULL)
			return -EINVAL;
		int64_t mult;
		if (strncmp(end, "ms", 2) == 0) {
			mult = 1;
			end += 2;
		} else if (*end == 's') {
			mult = 1000;
			end++;
		} else if (*end == 'm') {
			mult = 60000;
			end++;
		} else if (*end == 'h') {
			mult = 3600000;
			end++;
		} else if (*end == 'd') {
			mult = 86400000;
			end++;
		} else
			return -EINVAL;
		int64_t add = (int64_t)v * mult;
		if (total > INT64_MAX - add)
			return -EINVAL;
		total += add;
		p = end;
	}
	*ret_ms = total;
	return 0;
}

void duration_format(int64_t ms, char *buf, size_t n)
{
	if (ms % 86400000 == 0 && ms)
		snprintf(buf, n, "%lldd", (long long)(ms / 86400000));
	else if (ms % 3600000 == 0 && ms)
		snprintf(buf, n, "%lldh", (long long)(ms / 3600000));
	else if (ms % 60000 == 0 && ms)
		snprintf(buf, n, "%lldm", (long long)(ms / 60000));
	else if (ms % 1000 == 0)
		snprintf(buf, n, "%llds", (long long)(ms / 1000));
	else
		snprintf(buf, n, "%lldms", (long long)ms);
}

int64_t now_mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t now_wall_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void time_format_rfc3339(int64_t wall_ms, char *buf, size_t n)
{
	time_t t = (time_t)(wall_ms / 1000);
	struct tm tm;
	gmtime_r(&t, &tm);
	char tmp[32];
	strftime(tmp, sizeof tmp, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(buf, n, "%s.%03dZ", tmp, (int)(wall_ms % 1000));
}

int file_read_all(const char *path, size_t max, char **ret, size_t *ret_len)
{
	_cleanup_fclose_ FILE *f = fopen(path, "re");
	if (!f)
		return -errno;
	_cleanup_buf_ Buf b = {.max = max};
	char chunk[4096];
	size_t got;
	while ((got = fread(chunk, 1, sizeof chunk, f)) > 0) {
		int r = buf_append(&b, chunk, got);
		if (r < 0)
			return r;
	}
	if (ferror(f))
		return -EIO;
	if (ret_len)
		*ret_len = b.len;
	char *d = buf_steal(&b);
	if (!d)
		return -ENOMEM;
	*ret = d;
	return 0;
}

int secret_read_file(const char *path, char **ret)
{
	if (!path || !*path)
		return -EINVAL;
	_cleanup_free_ char *data = NULL;
	size_t len = 0;
	int r = -ENOENT;
	const char *creds = getenv("CREDENTIALS_DIRECTORY");
	if (creds && *creds && path[0] != '/') {
		char p[PATH_MAX];
		snprintf(p, sizeof p, "%s/%s", creds, path);
		r = file_read_all(p, 65536, &data, &len);
	}
	if (r < 0)
		r = file_read_all(path, 65536, &data, &len);
	if (r < 0)
		return r;
	if (len > 0 && data[len - 1] == '\n') {
		data[--len] = 0;
		if (len > 0 && data[len - 1] == '\r')
			data[--len] = 0;
	}
	if (strlen(data) != len)
		return -EINVAL; /* embedded NUL */
	*ret = TAKE_PTR(data);
	return 0;
}

int parse_int64(const char *s, int64_t *ret)
{
	if (!s || !*s)
		return -EINVAL;
	errno = 0;
	char *end;
	long long v = strtoll(s, &end, 10);
	if (errno == ERANGE)
		return -ERANGE;
	if (errno || *end || end == s)
		return -EINVAL;
	*ret = v;
	return 0;
}

bool str_startswith(const char *s, const char *prefix)
{
	return strncmp(s, prefix, strlen(prefix)) == 0;
}

bool str_endswith(const char *s, const char *suffix)
{
	size_t a = strlen(s), b = strlen(suffix);
	return a >= b && memcmp(s + a - b, suffix, b) == 0;
}

int sha256_hex(const void *data, size_t n, char out[65])
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;
	if (!EVP_Digest(data, n, md, &mdlen, EVP_sha256(), NULL) || mdlen != 32)
		return -EIO;
	static const char hex[] = "0123456789abcdef";
	for (unsigned i = 0; i < 32; i++) {
		out[2 * i] = hex[md[i] >> 4];
		out[2 * i + 1] = hex[md[i] & 15];
	}
	out[64] = 0;
	return 0;
}
