-- 001_schema.sql - the zlh schema: desired state, status, allocations, the
-- intent journal, events, quotas, kinds, request idempotency, backups; the
-- portal role; zlh.apply_server / zlh.delete_server (DESIGN.md section 5).
--
-- Run by store_migrate() (db/store.c) inside ONE transaction, under a session
-- advisory lock, and recorded in zlh.schema_migrations. This file must not
-- contain BEGIN/COMMIT. Never edit it once released: add NNN_*.sql instead
-- (the runner refuses a changed checksum).
--
-- Advisory lock keys used by this schema (two-int form, class = 0x7a4c00NN,
-- "zL"), so other code can avoid them:
--   (2051801088, 0)                 store_migrate, whole run (session lock)
--   (2051801089, hashtext(owner))   apply_server: per-owner serialization
--   (2051801090, hashtext(host))    hostname claims (apply_server and the
--                                   allocations trigger)
--   (2051801091, hashtext(reqid))   apply_server: one request id at a time
--
-- Lock order inside apply_server: request id -> owner -> hostname.

CREATE SCHEMA IF NOT EXISTS zlh;

-- Functions created by the migrating role are not executable by PUBLIC
-- unless granted explicitly (zlh_portal may call two functions, nothing else).
ALTER DEFAULT PRIVILEGES REVOKE EXECUTE ON FUNCTIONS FROM PUBLIC;

-- Roles are cluster-wide: create only if missing; tolerate a concurrent
-- migration of another database creating it at the same moment.
DO $$
BEGIN
	IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'zlh_portal') THEN
		BEGIN
			CREATE ROLE zlh_portal NOLOGIN;
		EXCEPTION WHEN duplicate_object OR unique_violation THEN
			NULL;
		END;
	END IF;
END
$$;

-- ---------------------------------------------------------------------------
-- Kinds: the CRDs (crds/*.yaml), upserted by store_migrate from crd_set_to_json.
CREATE TABLE zlh.kinds (
	kind        text PRIMARY KEY,
	api_version text NOT NULL,
	plural      text NOT NULL UNIQUE,
	short       text,
	schema      jsonb NOT NULL CHECK (jsonb_typeof(schema) = 'object'),
	updated_at  timestamptz NOT NULL DEFAULT now()
);

-- ---------------------------------------------------------------------------
-- Desired state. spec is canonical (defaults filled by zlh.apply_server).
CREATE TABLE zlh.servers (
	uid                   uuid PRIMARY KEY DEFAULT gen_random_uuid(),
	kind                  text NOT NULL REFERENCES zlh.kinds (kind),
	owner                 text NOT NULL CHECK (owner ~ '^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$'),
	name                  text NOT NULL CHECK (name ~ '^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$'),
	generation            bigint NOT NULL DEFAULT 1 CHECK (generation > 0),
	spec                  jsonb NOT NULL CHECK (jsonb_typeof(spec) = 'object'),
	spec_hash             text NOT NULL,
	labels                jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(labels) = 'object'),
	annotations           jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(annotations) = 'object'),
	created_at            timestamptz NOT NULL DEFAULT now(),
	updated_at            timestamptz NOT NULL DEFAULT now(),
	deletion_requested_at timestamptz,
	finalizers            text[] NOT NULL DEFAULT '{}',
	UNIQUE (owner, name)
);
CREATE INDEX servers_name_idx ON zlh.servers (name);
-- spec.hostname is globally unique among servers (and among allocated
-- hostnames: see zlh.apply_server and the allocations trigger).
CREATE UNIQUE INDEX servers_hostname_key ON zlh.servers ((spec ->> 'hostname'))
	WHERE spec ->> 'hostname' IS NOT NULL;

-- Observed state, one row per server, created with it (never null).
CREATE TABLE zlh.server_status (
	uid                 uuid PRIMARY KEY REFERENCES zlh.servers (uid) ON DELETE CASCADE,
	observed_generation bigint NOT NULL DEFAULT 0,
	phase               text NOT NULL DEFAULT 'Pending' CHECK (phase IN
		('Pending', 'Provisioning', 'Ready', 'Degraded', 'Stopped', 'Deleting', 'Failed')),
	conditions          jsonb NOT NULL DEFAULT '[]' CHECK (jsonb_typeof(conditions) = 'array'),
	vmid                integer,
	node                text,
	ip                  inet,
	hostname            text,
	last_error          text,
	updated_at          timestamptz NOT NULL DEFAULT now()
);

CREATE FUNCTION zlh.servers_status_row() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
	INSERT INTO zlh.server_status (uid) VALUES (NEW.uid) ON CONFLICT (uid) DO NOTHING;
	RETURN NULL;
END
$$;
CREATE TRIGGER servers_status_row AFTER INSERT ON zlh.servers
	FOR EACH ROW EXECUTE FUNCTION zlh.servers_status_row();

-- ---------------------------------------------------------------------------
-- Allocations: taken in the same transaction as the intent that uses them.
CREATE TABLE zlh.allocations (
	uid        uuid PRIMARY KEY REFERENCES zlh.servers (uid) ON DELETE CASCADE,
	vmid       integer NOT NULL UNIQUE CHECK (vmid > 0),
	ip         inet UNIQUE,
	hostname   text UNIQUE,
	node       text,
	created_at timestamptz NOT NULL DEFAULT now()
);

-- VMIDs in our range held by something that is not ours: never allocated.
CREATE TABLE zlh.quarantined_vmids (
	vmid       integer PRIMARY KEY CHECK (vmid > 0),
	node       text,
	reason     text,
	created_at timestamptz NOT NULL DEFAULT now(),
	seen_at    timestamptz NOT NULL DEFAULT now()
);

-- An allocated hostname must not be claimed by another server's
-- spec.hostname (same lock as zlh.apply_server takes for the claim).
CREATE FUNCTION zlh.allocations_hostname_check() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
	IF NEW.hostname IS NOT NULL THEN
		PERFORM pg_advisory_xact_lock(2051801090, hashtext(NEW.hostname));
		IF EXISTS (SELECT 1 FROM zlh.servers s
		           WHERE s.spec ->> 'hostname' = NEW.hostname AND s.uid <> NEW.uid) THEN
			RAISE EXCEPTION USING ERRCODE = 'ZL005',
				MESSAGE = format('hostname %s is claimed by another server''s spec.hostname',
				                 NEW.hostname);
		END IF;
	END IF;
	RETURN NEW;
END
$$;
CREATE TRIGGER allocations_hostname_check BEFORE INSERT OR UPDATE OF hostname ON zlh.allocations
	FOR EACH ROW EXECUTE FUNCTION zlh.allocations_hostname_check();

-- ---------------------------------------------------------------------------
-- The intent journal: one row per external side effect, written before the
-- call (DESIGN.md section 7.6). No foreign key: it outlives the server row.
CREATE TABLE zlh.operations (
	id         bigserial PRIMARY KEY,
	uid        uuid NOT NULL,
	action     text NOT NULL,
	idem_key   text NOT NULL UNIQUE,
	step       text NOT NULL DEFAULT 'intent'
		CHECK (step IN ('intent', 'call', 'handle', 'done', 'failed')),
	handle     text,
	payload    jsonb,
	result     jsonb,
	error      text,
	epoch      bigint NOT NULL,
	created_at timestamptz NOT NULL DEFAULT now(),
	updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX operations_uid_idx ON zlh.operations (uid, id);
CREATE INDEX operations_open_idx ON zlh.operations (uid) WHERE step NOT IN ('done', 'failed');

-- Events for operators and the portal (notifications, uptime history).
-- No foreign key: history outlives the server.
CREATE TABLE zlh.events (
	id       bigserial PRIMARY KEY,
	uid      uuid,
	kind     text,
	name     text,
	owner    text,
	type     text NOT NULL CHECK (type IN ('Normal', 'Warning')),
	reason   text NOT NULL,
	message  text NOT NULL DEFAULT '',
	count    integer NOT NULL DEFAULT 1 CHECK (count > 0),
	first_at timestamptz NOT NULL DEFAULT now(),
	last_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX events_uid_idx ON zlh.events (uid, id);

-- Quotas per owner; the row '*' is the default for owners without a row.
CREATE TABLE zlh.quotas (
	owner          text PRIMARY KEY
		CHECK (owner = '*' OR owner ~ '^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$'),
	max_servers    integer NOT NULL CHECK (max_servers >= 0),
	max_memory_mib bigint NOT NULL CHECK (max_memory_mib >= 0),
	updated_at     timestamptz NOT NULL DEFAULT now()
);
INSERT INTO zlh.quotas (owner, max_servers, max_memory_mib) VALUES ('*', 50, 262144)
	ON CONFLICT (owner) DO NOTHING;

-- Request-id idempotency of zlh.apply_server: the first answer, verbatim.
CREATE TABLE zlh.requests (
	request_id uuid PRIMARY KEY,
	doc_hash   text NOT NULL,
	response   jsonb NOT NULL,
	created_at timestamptz NOT NULL DEFAULT now()
);

-- Backups outlive their server (the agent stores them by uid).
CREATE TABLE zlh.backups (
	uid         uuid NOT NULL,
	backup_id   text NOT NULL,
	name        text,
	owner       text,
	server_name text,
	created_at  timestamptz,
	bytes       bigint,
	state       text NOT NULL DEFAULT 'running' CHECK (state IN ('running', 'ok', 'failed')),
	updated_at  timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (uid, backup_id)
);

-- ---------------------------------------------------------------------------
-- Helpers of apply_server. Not granted to anybody: they run as the owner
-- through the SECURITY DEFINER entry points.

CREATE FUNCTION zlh.invalid(path text, msg text) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
	RAISE EXCEPTION USING ERRCODE = 'ZL001',
		MESSAGE = CASE WHEN path = '' THEN msg ELSE path || ': ' || msg END;
END
$$;

-- Formats of the schema language, exactly as specs/validate.c checks them
-- (spec_is_duration = lib duration_parse, spec_is_datetime).
CREATE FUNCTION zlh.is_duration(s text) RETURNS boolean
LANGUAGE plpgsql IMMUTABLE STRICT SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	m     text[];
	total numeric := 0;
	v     numeric;
BEGIN
	IF s !~ '^([0-9]+(ms|s|m|h|d))+$' THEN
		RETURN false;
	END IF;
	FOR m IN SELECT regexp_matches(s, '([0-9]+)(ms|s|m|h|d)', 'g') LOOP
		v := m[1]::numeric;
		IF v > 106751991167 THEN -- INT64_MAX / 86400000: duration_parse's bound
			RETURN false;
		END IF;
		total := total + v * CASE m[2] WHEN 'ms' THEN 1 WHEN 's' THEN 1000
			WHEN 'm' THEN 60000 WHEN 'h' THEN 3600000 ELSE 86400000 END;
	END LOOP;
	RETURN total <= 9223372036854775807;
END
$$;

-- RFC 3339: YYYY-MM-DDTHH:MM:SS[.frac](Z|+HH:MM|-HH:MM), T and Z in either
-- case, real calendar dates, seconds up to 60 (leap second).
CREATE FUNCTION zlh.is_datetime(s text) RETURNS boolean
LANGUAGE plpgsql IMMUTABLE STRICT SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	m   text[];
	y   integer;
	mo  integer;
	d   integer;
	dim integer;
BEGIN
	m := regexp_match(s, '^([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt]([0-9]{2}):([0-9]{2}):([0-9]{2})(\.[0-9]+)?([Zz]|[+-]([0-9]{2}):([0-9]{2}))$');
	IF m IS NULL THEN
		RETURN false;
	END IF;
	y := m[1]::integer;
	mo := m[2]::integer;
	d := m[3]::integer;
	IF mo < 1 OR mo > 12 OR d < 1 THEN
		RETURN false;
	END IF;
	dim := (ARRAY[31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31])[mo];
	IF mo = 2 AND ((y % 4 = 0 AND y % 100 <> 0) OR y % 400 = 0) THEN
		dim := 29;
	END IF;
	IF d > dim OR m[4]::integer > 23 OR m[5]::integer > 59 OR m[6]::integer > 60 THEN
		RETURN false;
	END IF;
	IF m[9] IS NOT NULL AND (m[9]::integer > 23 OR m[10]::integer > 59) THEN
		RETURN false;
	END IF;
	RETURN true;
END
$$;

-- The canonical text of a JSON value, byte for byte what specs'
-- spec_canonical_json (jansson, JSON_COMPACT | JSON_SORT_KEYS) prints:
-- keys sorted by byte order, no whitespace, UTF-8 as is, only " \ and
-- control characters escaped (\b \f \n \r \t, else \u00XX upper case).
-- servers.spec_hash is the hex SHA-256 of canonical_json(spec), so it equals
-- spec_hash() computed in C.
CREATE FUNCTION zlh.json_string(s text) RETURNS text
LANGUAGE plpgsql IMMUTABLE STRICT SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	out text := '"';
	c   text;
	n   integer;
BEGIN
	IF s !~ '[\x01-\x1f]' THEN
		RETURN to_json(s)::text; -- escapes only " and \ then
	END IF;
	FOREACH c IN ARRAY regexp_split_to_array(s, '') LOOP
		n := ascii(c);
		out := out || CASE
			WHEN c = '"' THEN '\"'
			WHEN c = '\' THEN '\\'
			WHEN n = 8 THEN '\b'
			WHEN n = 12 THEN '\f'
			WHEN n = 10 THEN '\n'
			WHEN n = 13 THEN '\r'
			WHEN n = 9 THEN '\t'
			WHEN n < 32 THEN '\u' || upper(lpad(to_hex(n), 4, '0'))
			ELSE c END;
	END LOOP;
	RETURN out || '"';
END
$$;

CREATE FUNCTION zlh.canonical_json(v jsonb) RETURNS text
LANGUAGE plpgsql IMMUTABLE STRICT SET search_path = pg_catalog, pg_temp AS $$
BEGIN
	CASE jsonb_typeof(v)
	WHEN 'object' THEN
		RETURN '{' || coalesce((SELECT string_agg(zlh.json_string(e.key) || ':' ||
		                                          zlh.canonical_json(e.value), ','
		                                          ORDER BY e.key COLLATE "C")
		                        FROM jsonb_each(v) e), '') || '}';
	WHEN 'array' THEN
		RETURN '[' || coalesce((SELECT string_agg(zlh.canonical_json(a.value), ','
		                                          ORDER BY a.i)
		                        FROM jsonb_array_elements(v) WITH ORDINALITY a(value, i)),
		                       '') || ']';
	WHEN 'string' THEN
		RETURN zlh.json_string(v #>> '{}');
	ELSE
		RETURN v::text; -- integer, boolean, null
	END CASE;
END
$$;

CREATE FUNCTION zlh.json_hash(v jsonb) RETURNS text
LANGUAGE sql IMMUTABLE STRICT SET search_path = pg_catalog, pg_temp AS $$
	SELECT encode(sha256(convert_to(zlh.canonical_json(v), 'UTF8')), 'hex')
$$;

-- Validates val (never SQL NULL) against one node of a kind's schema (the
-- language described at the top of crds/gameserver.yaml) and returns it
-- with defaults filled: an absent property with a default gets the default,
-- itself filled (an object default {} gets its children's defaults). Raises
-- ZL001 naming the path on the first error (properties in key order).
CREATE FUNCTION zlh.schema_apply(sch jsonb, val jsonb, path text) RETURNS jsonb
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	t    text := sch ->> 'type';
	vt   text := jsonb_typeof(val);
	res  jsonb;
	k    text;
	sub  jsonb;
	s    text;
	n    numeric;
	i    integer;
	len  integer;
BEGIN
	IF vt = 'null' THEN
		IF coalesce(sch -> 'nullable' = 'true'::jsonb, false) THEN
			RETURN val;
		END IF;
		PERFORM zlh.invalid(path, 'must not be null');
	END IF;

	IF t IS NOT NULL AND NOT (
		(t = 'object' AND vt = 'object') OR (t = 'array' AND vt = 'array') OR
		(t = 'string' AND vt = 'string') OR (t = 'boolean' AND vt = 'boolean') OR
		(t = 'integer' AND vt = 'number' AND val::text ~ '^-?[0-9]+$')) THEN
		IF t NOT IN ('object', 'array', 'string', 'boolean', 'integer') THEN
			RAISE EXCEPTION 'zlh.kinds schema at %: unsupported type %', path, t;
		END IF;
		PERFORM zlh.invalid(path, format('expected %s, got %s', t,
			CASE WHEN vt = 'number' THEN 'number ' || val::text ELSE vt END));
	END IF;

	IF sch ? 'enum' AND NOT EXISTS (
		SELECT 1 FROM jsonb_array_elements(sch -> 'enum') e WHERE e = val) THEN
		PERFORM zlh.invalid(path, format('%s is not one of %s', val::text,
			(SELECT string_agg(e #>> '{}', ', ') FROM jsonb_array_elements(sch -> 'enum') e)));
	END IF;

	IF vt = 'object' THEN
		FOR k IN SELECT key FROM jsonb_each(val) ORDER BY key LOOP
			IF NOT coalesce(sch -> 'properties', '{}') ? k THEN
				PERFORM zlh.invalid(path || '.' || k, 'unknown field');
			END IF;
		END LOOP;
		res := '{}';
		FOR k, sub IN SELECT key, value FROM jsonb_each(coalesce(sch -> 'properties', '{}'))
		              ORDER BY key LOOP
			IF val ? k THEN
				res := res || jsonb_build_object(k,
					zlh.schema_apply(sub, val -> k, path || '.' || k));
			ELSIF sub ? 'default' THEN
				res := res || jsonb_build_object(k,
					zlh.schema_apply(sub, sub -> 'default', path || '.' || k));
			ELSIF coalesce(sch -> 'required', '[]') ? k THEN
				PERFORM zlh.invalid(path || '.' || k, 'required field is missing');
			END IF;
		END LOOP;
		RETURN res;
	END IF;

	IF vt = 'array' THEN
		len := jsonb_array_length(val);
		IF sch ? 'maxItems' AND len > (sch ->> 'maxItems')::integer THEN
			PERFORM zlh.invalid(path, format('%s items exceed maxItems %s', len,
			                                 sch ->> 'maxItems'));
		END IF;
		IF NOT sch ? 'items' THEN
			RETURN val;
		END IF;
		res := '[]';
		FOR i IN 0 .. len - 1 LOOP
			res := res || jsonb_build_array(
				zlh.schema_apply(sch -> 'items', val -> i, format('%s[%s]', path, i)));
		END LOOP;
		RETURN res;
	END IF;

	IF vt = 'string' THEN
		s := val #>> '{}';
		len := char_length(s);
		IF sch ? 'minLength' AND len < (sch ->> 'minLength')::integer THEN
			PERFORM zlh.invalid(path, format('length %s is below minLength %s', len,
			                                 sch ->> 'minLength'));
		END IF;
		IF sch ? 'maxLength' AND len > (sch ->> 'maxLength')::integer THEN
			PERFORM zlh.invalid(path, format('length %s exceeds maxLength %s', len,
			                                 sch ->> 'maxLength'));
		END IF;
		IF sch ? 'pattern' AND s !~ (sch ->> 'pattern') THEN
			PERFORM zlh.invalid(path, format('%s does not match the pattern %s', val::text,
			                                 sch ->> 'pattern'));
		END IF;
		CASE sch ->> 'format'
		WHEN 'duration' THEN
			IF NOT zlh.is_duration(s) THEN
				PERFORM zlh.invalid(path, format(
					'%s is not a duration (like 30s, 5m, 6h, 1h30m)', val::text));
			END IF;
		WHEN 'uuid' THEN
			IF s !~ '^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$' THEN
				PERFORM zlh.invalid(path, format(
					'%s is not a UUID (like 0b4c3a52-7f0e-4d55-9d0f-2f1c8e4b6a10)',
					val::text));
			END IF;
		WHEN 'date-time' THEN
			IF NOT zlh.is_datetime(s) THEN
				PERFORM zlh.invalid(path, format(
					'%s is not an RFC 3339 date-time (like 2025-01-31T12:00:00Z)',
					val::text));
			END IF;
		ELSE
			NULL;
		END CASE;
		RETURN val;
	END IF;

	IF vt = 'number' THEN
		n := val::text::numeric;
		IF sch ? 'minimum' AND n < (sch ->> 'minimum')::numeric THEN
			PERFORM zlh.invalid(path, format('%s is below the minimum %s', val::text,
			                                 sch ->> 'minimum'));
		END IF;
		IF sch ? 'maximum' AND n > (sch ->> 'maximum')::numeric THEN
			PERFORM zlh.invalid(path, format('%s is above the maximum %s', val::text,
			                                 sch ->> 'maximum'));
		END IF;
	END IF;
	RETURN val;
END
$$;

-- labels / annotations: an object of strings (absent = {}), the METADATA
-- RULES of specs/spec.h: at most 64 entries, keys 1..253 characters, values
-- 0..1024 characters.
CREATE FUNCTION zlh.string_map(val jsonb, path text) RETURNS jsonb
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	k text;
	v jsonb;
BEGIN
	IF val IS NULL THEN
		RETURN '{}';
	END IF;
	IF jsonb_typeof(val) <> 'object' THEN
		PERFORM zlh.invalid(path, format('expected a mapping of strings to strings, got %s',
		                                 jsonb_typeof(val)));
	END IF;
	IF (SELECT count(*) FROM jsonb_object_keys(val)) > 64 THEN
		PERFORM zlh.invalid(path, format('%s entries are more than the maximum 64',
		                                 (SELECT count(*) FROM jsonb_object_keys(val))));
	END IF;
	FOR k, v IN SELECT e.key, e.value FROM jsonb_each(val) e ORDER BY e.key LOOP
		IF char_length(k) < 1 OR char_length(k) > 253 THEN
			PERFORM zlh.invalid(path || '.' || k, 'keys are 1 to 253 characters long');
		END IF;
		IF jsonb_typeof(v) <> 'string' THEN
			PERFORM zlh.invalid(path || '.' || k,
				format('expected string, got %s', jsonb_typeof(v)));
		END IF;
		IF char_length(v #>> '{}') > 1024 THEN
			PERFORM zlh.invalid(path || '.' || k, format(
				'length %s exceeds maxLength 1024', char_length(v #>> '{}')));
		END IF;
	END LOOP;
	RETURN val;
END
$$;

-- ---------------------------------------------------------------------------
-- zlh.apply_server(doc, request_id): the one place that decides a spec's
-- canonical form. Returns {"uid","generation","created","changed"}.
--   generation: 1 on create, +1 iff the stored canonical spec changes.
--   changed: anything stored changed (spec, labels or annotations); labels
--            and annotations are stored but never bump the generation.
--   request_id: a repeat with the same document returns the first answer
--               verbatim; with another document raises ZL003.
-- Errors (SQLSTATE): ZL001 invalid document (message "path: what"; also a
-- server whose deletion was requested, and a kind change), ZL002 quota,
-- ZL003 request id reused, ZL005 hostname taken.
-- Notifies zlh_work with the uid when created or changed.
CREATE FUNCTION zlh.apply_server(doc jsonb, request_id uuid) RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	doc_hash  text;
	prev      record;
	k         text;
	meta      jsonb;
	v_kind    text;
	v_schema  jsonb;
	v_name    text;
	v_owner   text;
	v_labels  jsonb;
	v_annot   jsonb;
	v_spec    jsonb;
	v_host    text;
	cur       record;
	q         record;
	v_use     record;
	new_mem   bigint;
	old_mem   bigint := 0;
	v_uid     uuid;
	v_gen     bigint;
	v_created boolean := false;
	v_changed boolean := false;
	result    jsonb;
BEGIN
	-- The per-owner lock below only works when each statement sees what the
	-- previous lock holder committed.
	IF current_setting('transaction_isolation') = 'repeatable read' THEN
		RAISE EXCEPTION USING ERRCODE = 'invalid_transaction_state',
			MESSAGE = 'zlh.apply_server needs READ COMMITTED or SERIALIZABLE isolation';
	END IF;
	IF doc IS NULL OR jsonb_typeof(doc) <> 'object' THEN
		PERFORM zlh.invalid('', 'the document must be a JSON object');
	END IF;
	IF octet_length(doc::text) > 262144 THEN
		PERFORM zlh.invalid('', 'the document is larger than 256 KiB');
	END IF;

	-- Request idempotency first: a repeat answers as the first call did.
	IF request_id IS NOT NULL THEN
		doc_hash := encode(sha256(convert_to(doc::text, 'UTF8')), 'hex');
		PERFORM pg_advisory_xact_lock(2051801091, hashtext(request_id::text));
		SELECT r.doc_hash, r.response INTO prev FROM zlh.requests r
		WHERE r.request_id = apply_server.request_id;
		IF FOUND THEN
			IF prev.doc_hash <> doc_hash THEN
				RAISE EXCEPTION USING ERRCODE = 'ZL003',
					MESSAGE = format('request_id %s was already used with a different document',
					                 request_id);
			END IF;
			RETURN prev.response;
		END IF;
	END IF;

	-- Envelope.
	FOR k IN SELECT key FROM jsonb_each(doc) ORDER BY key LOOP
		IF k NOT IN ('apiVersion', 'kind', 'metadata', 'spec') THEN
			PERFORM zlh.invalid(k, 'unknown field');
		END IF;
	END LOOP;
	IF NOT doc ? 'apiVersion' THEN
		PERFORM zlh.invalid('apiVersion', 'required field is missing');
	END IF;
	IF doc -> 'apiVersion' IS DISTINCT FROM '"zlh.dev/v1"'::jsonb THEN
		PERFORM zlh.invalid('apiVersion', format('must be "zlh.dev/v1", got %s',
		                                         (doc -> 'apiVersion')::text));
	END IF;
	IF NOT doc ? 'kind' THEN
		PERFORM zlh.invalid('kind', 'required field is missing');
	END IF;
	IF jsonb_typeof(doc -> 'kind') <> 'string' THEN
		PERFORM zlh.invalid('kind', format('expected string, got %s', jsonb_typeof(doc -> 'kind')));
	END IF;
	v_kind := doc ->> 'kind';
	SELECT kd.schema INTO v_schema FROM zlh.kinds kd
	WHERE kd.kind = v_kind AND kd.api_version = 'zlh.dev/v1';
	IF NOT FOUND THEN
		PERFORM zlh.invalid('kind', format('unknown kind %s (known: %s)', to_jsonb(v_kind)::text,
			coalesce((SELECT string_agg(kd.kind, ', ' ORDER BY kd.kind) FROM zlh.kinds kd), 'none')));
	END IF;

	-- Metadata.
	meta := doc -> 'metadata';
	IF meta IS NULL THEN
		PERFORM zlh.invalid('metadata', 'required field is missing');
	END IF;
	IF jsonb_typeof(meta) <> 'object' THEN
		PERFORM zlh.invalid('metadata', format('expected object, got %s', jsonb_typeof(meta)));
	END IF;
	FOR k IN SELECT key FROM jsonb_each(meta) ORDER BY key LOOP
		IF k NOT IN ('name', 'owner', 'labels', 'annotations') THEN
			PERFORM zlh.invalid('metadata.' || k, 'unknown field');
		END IF;
	END LOOP;
	IF NOT meta ? 'name' THEN
		PERFORM zlh.invalid('metadata.name', 'required field is missing');
	END IF;
	IF jsonb_typeof(meta -> 'name') <> 'string' THEN
		PERFORM zlh.invalid('metadata.name', format('expected string, got %s',
		                                            jsonb_typeof(meta -> 'name')));
	END IF;
	v_name := meta ->> 'name';
	IF v_name !~ '^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$' THEN
		PERFORM zlh.invalid('metadata.name', format(
			'%s is not a DNS label (1-63 of a-z, 0-9 and -, starting and ending alphanumeric)',
			(meta -> 'name')::text));
	END IF;
	IF NOT meta ? 'owner' THEN
		PERFORM zlh.invalid('metadata.owner', 'required field is missing');
	END IF;
	IF jsonb_typeof(meta -> 'owner') <> 'string' THEN
		PERFORM zlh.invalid('metadata.owner', format('expected string, got %s',
		                                             jsonb_typeof(meta -> 'owner')));
	END IF;
	v_owner := meta ->> 'owner';
	IF v_owner !~ '^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$' THEN
		PERFORM zlh.invalid('metadata.owner', format(
			'%s is not a valid owner (1-64 of A-Z, a-z, 0-9, _, ., @, -, starting alphanumeric)',
			(meta -> 'owner')::text));
	END IF;
	v_labels := zlh.string_map(meta -> 'labels', 'metadata.labels');
	v_annot := zlh.string_map(meta -> 'annotations', 'metadata.annotations');

	-- Spec: defaults filled, everything re-checked.
	IF NOT doc ? 'spec' THEN
		PERFORM zlh.invalid('spec', 'required field is missing');
	END IF;
	v_spec := zlh.schema_apply(v_schema, doc -> 'spec', 'spec');
	IF jsonb_typeof(v_spec) <> 'object' THEN
		PERFORM zlh.invalid('spec', format('expected object, got %s', jsonb_typeof(v_spec)));
	END IF;
	v_host := v_spec ->> 'hostname';

	-- One owner's applies are serialized: the quota check below sees every
	-- committed server of that owner (READ COMMITTED: each statement after
	-- the lock takes a fresh snapshot).
	PERFORM pg_advisory_xact_lock(2051801089, hashtext(v_owner));

	SELECT s.uid, s.kind, s.generation, s.spec, s.labels, s.annotations,
	       s.deletion_requested_at
	INTO cur FROM zlh.servers s WHERE s.owner = v_owner AND s.name = v_name FOR UPDATE;

	IF FOUND THEN
		IF cur.deletion_requested_at IS NOT NULL THEN
			PERFORM zlh.invalid('metadata.name', format(
				'%s/%s is being deleted; apply it again once it is gone', v_owner, v_name));
		END IF;
		IF cur.kind <> v_kind THEN
			PERFORM zlh.invalid('kind', format('%s/%s is a %s; the kind of a server cannot change',
			                                   v_owner, v_name, cur.kind));
		END IF;
		old_mem := coalesce((cur.spec #>> '{resources,memoryMiB}')::bigint, 0);
	END IF;

	-- Quota (the owner's row, else the '*' default; no row at all: no limit).
	new_mem := coalesce((v_spec #>> '{resources,memoryMiB}')::bigint, 0);
	SELECT qq.max_servers, qq.max_memory_mib INTO q FROM zlh.quotas qq
	WHERE qq.owner IN (v_owner, '*') ORDER BY (qq.owner = '*') LIMIT 1;
	IF FOUND AND (cur.uid IS NULL OR new_mem > old_mem) THEN
		SELECT count(*) AS n,
		       coalesce(sum(coalesce((s.spec #>> '{resources,memoryMiB}')::bigint, 0)), 0) AS mem
		INTO v_use FROM zlh.servers s
		WHERE s.owner = v_owner AND s.uid IS DISTINCT FROM cur.uid;
		IF cur.uid IS NULL AND v_use.n + 1 > q.max_servers THEN
			RAISE EXCEPTION USING ERRCODE = 'ZL002', MESSAGE = format(
				'quota exceeded: owner %s has %s servers, the limit is %s',
				v_owner, v_use.n, q.max_servers);
		END IF;
		IF v_use.mem + new_mem > q.max_memory_mib THEN
			RAISE EXCEPTION USING ERRCODE = 'ZL002', MESSAGE = format(
				'quota exceeded: owner %s would use %s MiB of memory, the limit is %s MiB',
				v_owner, v_use.mem + new_mem, q.max_memory_mib);
		END IF;
	END IF;

	-- Hostname: globally unique among servers' specs and allocated hostnames.
	IF v_host IS NOT NULL AND (cur.uid IS NULL OR v_host IS DISTINCT FROM cur.spec ->> 'hostname') THEN
		PERFORM pg_advisory_xact_lock(2051801090, hashtext(v_host));
		IF EXISTS (SELECT 1 FROM zlh.servers s
		           WHERE s.spec ->> 'hostname' = v_host AND s.uid IS DISTINCT FROM cur.uid)
		   OR EXISTS (SELECT 1 FROM zlh.allocations a
		              WHERE a.hostname = v_host AND a.uid IS DISTINCT FROM cur.uid) THEN
			RAISE EXCEPTION USING ERRCODE = 'ZL005',
				MESSAGE = format('spec.hostname: %s is already taken', v_host);
		END IF;
	END IF;

	IF cur.uid IS NULL THEN
		INSERT INTO zlh.servers (kind, owner, name, generation, spec, spec_hash, labels, annotations)
		VALUES (v_kind, v_owner, v_name, 1, v_spec,
		        zlh.json_hash(v_spec), v_labels, v_annot)
		RETURNING uid, generation INTO v_uid, v_gen;
		v_created := true;
		v_changed := true;
	ELSE
		v_uid := cur.uid;
		v_gen := cur.generation;
		IF v_spec <> cur.spec THEN
			v_gen := v_gen + 1;
			v_changed := true;
		END IF;
		IF v_labels <> cur.labels OR v_annot <> cur.annotations THEN
			v_changed := true;
		END IF;
		IF v_changed THEN
			UPDATE zlh.servers SET generation = v_gen, spec = v_spec,
				spec_hash = zlh.json_hash(v_spec),
				labels = v_labels, annotations = v_annot, updated_at = now()
			WHERE uid = v_uid;
		END IF;
	END IF;

	IF v_changed THEN
		PERFORM pg_notify('zlh_work', v_uid::text);
	END IF;

	result := jsonb_build_object('uid', v_uid, 'generation', v_gen,
	                             'created', v_created, 'changed', v_changed);
	IF request_id IS NOT NULL THEN
		INSERT INTO zlh.requests (request_id, doc_hash, response)
		VALUES (request_id, doc_hash, result);
	END IF;
	RETURN result;
END
$$;

-- zlh.delete_server(owner, name): requests deletion (idempotent; the
-- controller runs the finalizers and removes the row). Returns
-- {"uid","deletionRequested":true}; ZL004 when there is no such server.
CREATE FUNCTION zlh.delete_server(owner text, name text) RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	v_uid uuid;
BEGIN
	UPDATE zlh.servers s
	SET deletion_requested_at = coalesce(s.deletion_requested_at, now()),
	    updated_at = CASE WHEN s.deletion_requested_at IS NULL THEN now() ELSE s.updated_at END
	WHERE s.owner = delete_server.owner AND s.name = delete_server.name
	RETURNING s.uid INTO v_uid;
	IF NOT FOUND THEN
		RAISE EXCEPTION USING ERRCODE = 'ZL004',
			MESSAGE = format('no such server: %s/%s', owner, name);
	END IF;
	PERFORM pg_notify('zlh_work', v_uid::text);
	RETURN jsonb_build_object('uid', v_uid, 'deletionRequested', true);
END
$$;

-- ---------------------------------------------------------------------------
-- Privileges: zlh_portal calls the two entry points and reads three tables.
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA zlh FROM PUBLIC;
GRANT USAGE ON SCHEMA zlh TO zlh_portal;
GRANT EXECUTE ON FUNCTION zlh.apply_server(jsonb, uuid) TO zlh_portal;
GRANT EXECUTE ON FUNCTION zlh.delete_server(text, text) TO zlh_portal;
GRANT SELECT ON zlh.servers, zlh.server_status, zlh.events TO zlh_portal;
