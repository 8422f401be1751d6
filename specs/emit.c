/* emit.c - JSON values as YAML that spec.c reads back to the same values. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <yaml.h>

#include "buf.h"
#include "specs/internal.h"
#include "specs/spec.h"

static int write_cb(void *data, unsigned char *buffer, size_t size)
{
	return buf_append(data, buffer, size) == 0;
}

/* Strings that a YAML reader (ours or another) could take for something
 * other than a string are written double-quoted. */
static bool needs_quotes(const char *s, size_t len)
{
	static const char *const special[] = {
	    "null",  "Null", "NULL",  "~",    "true", "True", "TRUE", "false", "False",
	    "FALSE", "yes",  "Yes",   "YES",  "no",   "No",   "NO",   "on",    "On",
	    "ON",    "off",  "Off",   "OFF",  "y",    "Y",    "n",    "N",     ".inf",
	    ".Inf",  ".INF", "-.inf", ".nan", ".NaN", ".NAN", "<<",   "=",
	};
	if (len == 0 || memchr(s, 0, len))
		return true;
	for (size_t i = 0; i < ELEMENTSOF(special); i++)
		if (strcmp(s, special[i]) == 0)
			return true;
	/* Anything number-like: starts with a digit, or a sign or dot and a digit. */
	const char *p = s;
	if (*p == '-' || *p == '+' || *p == '.')
		p++;
	if (*p >= '0' && *p <= '9')
		return true;
	/* Leading or trailing blanks, and the characters YAML gives meaning. */
	if (s[0] == ' ' || s[len - 1] == ' ' || strchr("-?:,[]{}#&*!|>'\"%@`", s[0]))
		return true;
	for (size_t i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)s[i];
		if (ch < 0x20 || ch == 0x7f)
			return true;
		if ((ch == ':' || ch == '#') && (i + 1 == len || s[i + 1] == ' ' || ch == '#'))
			return true;
	}
	return false;
}

static int emit_scalar(yaml_emitter_t *em, const char *s, size_t len, bool plain_ok)
{
	yaml_event_t ev;
	yaml_scalar_style_t style =
	    plain_ok ? YAML_PLAIN_SCALAR_STYLE : YAML_DOUBLE_QUOTED_SCALAR_STYLE;
	if (!yaml_scalar_event_initialize(&ev, NULL, NULL, (yaml_char_t *)s, (int)len, plain_ok,
	                                  !plain_ok, style))
		return -ENOMEM;
	return yaml_emitter_emit(em, &ev) ? 0 : -EIO;
}

static int emit_value(yaml_emitter_t *em, const json_t *v, int depth)
{
	yaml_event_t ev;
	int r;
	char num[32];
	if (depth > 2 * SPEC_MAX_DEPTH)
		return -E2BIG;
	switch (json_typeof(v)) {
	case JSON_OBJECT: {
		if (!yaml_mapping_start_event_initialize(
		        &ev, NULL, NULL, 1,
		        json_object_size(v) ? YAML_BLOCK_MAPPING_STYLE : YAML_FLOW_MAPPING_STYLE))
			return -ENOMEM;
		if (!yaml_emitter_emit(em, &ev))
			return -EIO;
		/* Sorted keys: stable output. */
		size_t n = json_object_size(v), k = 0;
		_cleanup_free_ const char **keys = calloc(n ? n : 1, sizeof *keys);
		if (!keys)
			return -ENOMEM;
		const char *key;
		json_t *val;
		json_object_foreach((json_t *)v, key, val) keys[k++] = key;
		for (size_t i = 1; i < k; i++)
			for (size_t j = i; j > 0 && strcmp(keys[j - 1], keys[j]) > 0; j--) {
				const char *t = keys[j];
				keys[j] = keys[j - 1];
				keys[j - 1] = t;
			}
		for (size_t i = 0; i < k; i++) {
			r = emit_scalar(em, keys[i], strlen(keys[i]),
			                !needs_quotes(keys[i], strlen(keys[i])));
			if (r < 0)
				return r;
			r = emit_value(em, json_object_get(v, keys[i]), depth + 1);
			if (r < 0)
				return r;
		}
		yaml_mapping_end_event_initialize(&ev);
		return yaml_emitter_emit(em, &ev) ? 0 : -EIO;
	}
	case JSON_ARRAY: {
		if (!yaml_sequence_start_event_initialize(
		        &ev, NULL, NULL, 1,
		        json_array_size(v) ? YAML_BLOCK_SEQUENCE_STYLE : YAML_FLOW_SEQUENCE_STYLE))
			return -ENOMEM;
		if (!yaml_emitter_emit(em, &ev))
			return -EIO;
		size_t i;
		json_t *val;
		json_array_foreach(v, i, val)
		{
			r = emit_value(em, val, depth + 1);
			if (r < 0)
				return r;
		}
		yaml_sequence_end_event_initialize(&ev);
		return yaml_emitter_emit(em, &ev) ? 0 : -EIO;
	}
	case JSON_STRING: {
		const char *s = json_string_value(v);
		size_t len = json_string_length(v);
		return emit_scalar(em, s, len, !needs_quotes(s, len));
	}
	case JSON_INTEGER:
		snprintf(num, sizeof num, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
		return emit_scalar(em, num, strlen(num), true);
	case JSON_REAL:
		snprintf(num, sizeof num, "%.17g", json_real_value(v));
		return emit_scalar(em, num, strlen(num), true);
	case JSON_TRUE:
		return emit_scalar(em, "true", 4, true);
	case JSON_FALSE:
		return emit_scalar(em, "false", 5, true);
	default:
		return emit_scalar(em, "null", 4, true);
	}
}

char *spec_to_yaml(const json_t *v)
{
	_cleanup_buf_ Buf b = BUF_INIT;
	yaml_emitter_t em;
	yaml_event_t ev;
	int r = -ENOMEM;
	if (!v || !yaml_emitter_initialize(&em))
		return NULL;
	yaml_emitter_set_output(&em, write_cb, &b);
	yaml_emitter_set_unicode(&em, 1);
	yaml_emitter_set_width(&em, -1);
	if (!yaml_stream_start_event_initialize(&ev, YAML_UTF8_ENCODING) ||
	    !yaml_emitter_emit(&em, &ev))
		goto out;
	if (!yaml_document_start_event_initialize(&ev, NULL, NULL, NULL, 1) ||
	    !yaml_emitter_emit(&em, &ev))
		goto out;
	r = emit_value(&em, v, 0);
	if (r < 0)
		goto out;
	r = -EIO;
	if (!yaml_document_end_event_initialize(&ev, 1) || !yaml_emitter_emit(&em, &ev))
		goto out;
	if (!yaml_stream_end_event_initialize(&ev) || !yaml_emitter_emit(&em, &ev))
		goto out;
	if (!yaml_emitter_flush(&em))
		goto out;
	r = 0;
out:
	yaml_emitter_delete(&em);
	if (r < 0)
		return NULL;
	return buf_steal(&b);
}
