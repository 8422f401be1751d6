-- 003_container.sql - the intent journal's steps and the container
-- reconciler's allocations (DESIGN.md sections 5, 6 and 7 rules 2, 5, 6).
-- The C side is db/journal.c and db/alloc.c.
--
-- Applied by store_migrate() in one transaction; no BEGIN/COMMIT here.
--
-- What this adds:
--   server_status.incarnation  goes up each time the server's container must
--                              be made again (lost by hand, or its vmid was
--                              quarantined); part of the journal's keys
--   allocations.memory_mib     the memory reserved when the allocation was
--                              taken (fallback of zlh.alloc_reserved)
--   operations.incarnation     the incarnation an operation belongs to
--   operations.base_key,       a key written again after its previous
--   operations.attempt         attempt completed (a retry) is stored as
--                              "<base_key>#<attempt>"; attempt 1 is the key
--   operations.completed_at    when done / failed was recorded
--
-- Every writing function fences first (zlh.fence: the lease row FOR SHARE
-- until the transaction ends; ZL006 on a stale epoch, nothing written).
--
-- SQLSTATEs raised here (class ZL; ZL001..ZL007 are 001's and 002's):
--   ZL004  no such server                          (-ENOENT)
--   ZL010  the incarnation is not the expected one  (db/*.c: -EALREADY)
--   ZL011  pool exhausted: no free vmid or address  (-ENOSPC)
--   ZL012  an idempotency key is already used by another server or action
--                                                   (-EEXIST)
--   22023  invalid parameter                        (-EINVAL)
--   40001  allocation kept colliding (bounded retries): retry (-EAGAIN)
-- Advisory lock keys (two-int form, class 0x7a4c00NN as in 001/002):
--   (2051801093, 0)  the allocation pool: one allocation at a time picks
--                    and inserts (transaction level, held until commit)
-- Lock order of zlh.alloc_take: lease row (FOR SHARE) -> server runtime lock
-- (002, try) -> pool lock -> hostname lock (001's allocations trigger).

ALTER TABLE zlh.server_status
	ADD COLUMN incarnation bigint NOT NULL DEFAULT 1 CHECK (incarnation > 0);

ALTER TABLE zlh.allocations
	ADD COLUMN memory_mib bigint NOT NULL DEFAULT 0 CHECK (memory_mib >= 0);

ALTER TABLE zlh.operations
	ADD COLUMN incarnation  bigint NOT NULL DEFAULT 0 CHECK (incarnation >= 0),
	ADD COLUMN base_key     text,
	ADD COLUMN attempt      integer NOT NULL DEFAULT 1 CHECK (attempt > 0),
	ADD COLUMN completed_at timestamptz;
UPDATE zlh.operations SET base_key = idem_key WHERE base_key IS NULL;

-- A row written without base_key is attempt 1 of its own key.
CREATE FUNCTION zlh.operations_base_key() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
	IF NEW.base_key IS NULL THEN
		NEW.base_key := NEW.idem_key;
		NEW.attempt := 1;
	END IF;
	RETURN NEW;
END
$$;
CREATE TRIGGER operations_base_key BEFORE INSERT ON zlh.operations
	FOR EACH ROW EXECUTE FUNCTION zlh.operations_base_key();
ALTER TABLE zlh.operations ALTER COLUMN base_key SET NOT NULL;

CREATE UNIQUE INDEX operations_attempt_key ON zlh.operations (base_key, attempt);
-- The latest row of each action of one incarnation (journal_latest).
CREATE INDEX operations_latest_idx ON zlh.operations (uid, incarnation, action, id);

-- ---------------------------------------------------------------------------
-- The journal.

CREATE FUNCTION zlh.wall_ms(t timestamptz) RETURNS bigint
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
	SELECT floor(extract(epoch FROM t) * 1000)::bigint
$$;

-- One operation as the JSON that db/journal.c reads.
CREATE FUNCTION zlh.op_json(o zlh.operations) RETURNS jsonb
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
	SELECT jsonb_build_object(
		'id', o.id, 'uid', o.uid, 'action', o.action, 'idemKey', o.idem_key,
		'baseKey', o.base_key, 'attempt', o.attempt, 'step', o.step, 'handle', o.handle,
		'payload', o.payload, 'result', o.result, 'error', o.error,
		'incarnation', o.incarnation, 'epoch', o.epoch,
		'createdMs', zlh.wall_ms(o.created_at), 'updatedMs', zlh.wall_ms(o.updated_at),
		'completedMs', zlh.wall_ms(o.completed_at))
$$;

-- Writes the intent of one side effect (step 'intent'), fenced, or finds it.
-- p_key is the idempotency key ("uid:action:gen:inc", no '#').
--   The key's latest attempt exists and (p_new_attempt is false or it is
--   still open: intent, call, handle): it is returned unchanged,
--   existed = true. A retry after a crash resumes it.
--   It exists, p_new_attempt is true and it completed (done, failed): the
--   next attempt "<key>#<n>" is written (existed = false).
--   Otherwise attempt 1 is written under p_key itself.
-- Concurrent writers of one key: one row, the others get it (existed).
-- Returns {"op": zlh.op_json, "existed": bool}. ZL012 when the key belongs
-- to another server or action.
CREATE FUNCTION zlh.journal_intent(p_epoch bigint, p_uid uuid, p_action text, p_key text,
                                   p_payload jsonb, p_incarnation bigint,
                                   p_new_attempt boolean)
RETURNS jsonb
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	cur       zlh.operations;
	v_key     text := p_key;
	v_attempt integer := 1;
BEGIN
	PERFORM zlh.fence(p_epoch);
	IF p_uid IS NULL OR p_action IS NULL OR p_action !~ '^[a-z0-9][a-z0-9-]{0,31}$' THEN
		RAISE EXCEPTION USING ERRCODE = '22023',
			MESSAGE = format('journal intent: bad uid or action %L', p_action);
	END IF;
	IF p_key IS NULL OR char_length(p_key) NOT BETWEEN 1 AND 400 OR strpos(p_key, '#') > 0 THEN
		RAISE EXCEPTION USING ERRCODE = '22023',
			MESSAGE = format('journal intent: bad idempotency key %L', p_key);
	END IF;
	IF p_incarnation IS NULL OR p_incarnation < 0 THEN
		RAISE EXCEPTION USING ERRCODE = '22023',
			MESSAGE = format('journal intent: bad incarnation %s', p_incarnation);
	END IF;
	IF p_payload IS NOT NULL AND octet_length(p_payload::text) > 65536 THEN
		RAISE EXCEPTION USING ERRCODE = '22023',
			MESSAGE = 'journal intent: payload larger than 64 KiB';
	END IF;

	SELECT * INTO cur FROM zlh.operations o WHERE o.base_key = p_key
	ORDER BY o.attempt DESC LIMIT 1;
	IF FOUND THEN
		IF cur.uid <> p_uid OR cur.action <> p_action THEN
			RAISE EXCEPTION USING ERRCODE = 'ZL012',
				MESSAGE = format('idempotency key %s belongs to %s %s', p_key, cur.uid,
				                 cur.action);
		END IF;
		IF NOT coalesce(p_new_attempt, false) OR cur.step NOT IN ('done', 'failed') THEN
			RETURN jsonb_build_object('op', zlh.op_json(cur), 'existed', true);
		END IF;
		v_attempt := cur.attempt + 1;
		v_key := p_key || '#' || v_attempt;
	END IF;

	INSERT INTO zlh.operations (uid, action, idem_key, base_key, attempt, step, payload,
	                            incarnation, epoch, created_at, updated_at)
	VALUES (p_uid, p_action, v_key, p_key, v_attempt, 'intent', p_payload, p_incarnation,
	        p_epoch, clock_timestamp(), clock_timestamp())
	ON CONFLICT DO NOTHING
	RETURNING * INTO cur;
	IF FOUND THEN
		RETURN jsonb_build_object('op', zlh.op_json(cur), 'existed', false);
	END IF;

	-- A concurrent transaction wrote this attempt and committed (ON CONFLICT
	-- waited for it); this statement's snapshot sees it.
	SELECT * INTO cur FROM zlh.operations o WHERE o.idem_key = v_key;
	IF NOT FOUND OR cur.uid <> p_uid OR cur.action <> p_action THEN
		RAISE EXCEPTION USING ERRCODE = 'ZL012',
			MESSAGE = format('idempotency key %s is used by another operation', v_key);
	END IF;
	RETURN jsonb_build_object('op', zlh.op_json(cur), 'existed', true);
END
$$;

-- Moves an operation to a later step, fenced. p_step:
--   'call'    intent -> call (the call returned without a handle); at call
--             or handle: nothing to do
--   'handle'  intent/call -> handle (p_handle saved); the same handle again:
--             nothing to do; another handle: 'conflict'
--   'done'    intent/call/handle -> done (p_result); done again: nothing
--   'failed'  intent/call/handle -> failed (p_error, p_result); failed again:
--             nothing
-- Returns 'ok' (changed), 'same' (already so: an idempotent repeat),
-- 'missing' (no such id), 'completed' (done/failed already, the other way,
-- or a step before the current one), 'conflict' (another handle).
CREATE FUNCTION zlh.journal_step(p_epoch bigint, p_id bigint, p_step text, p_handle text,
                                 p_result jsonb, p_error text)
RETURNS text
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	cur zlh.operations;
BEGIN
	PERFORM zlh.fence(p_epoch);
	IF p_step NOT IN ('call', 'handle', 'done', 'failed') OR
	   (p_step = 'handle' AND (p_handle IS NULL OR p_handle = '')) OR
	   (p_step = 'failed' AND p_error IS NULL) THEN
		RAISE EXCEPTION USING ERRCODE = '22023',
			MESSAGE = format('journal step: bad step %L (handle %L, error %L)', p_step,
			                 p_handle, p_error);
	END IF;
	IF p_result IS NOT NULL AND octet_length(p_result::text) > 65536 THEN
		RAISE EXCEPTION USING ERRCODE = '22023',
			MESSAGE = 'journal step: result larger than 64 KiB';
	END IF;
	SELECT * INTO cur FROM zlh.operations o WHERE o.id = p_id FOR UPDATE;
	IF NOT FOUND THEN
		RETURN 'missing';
	END IF;

	IF p_step = 'call' THEN
		IF cur.step = 'intent' THEN
			UPDATE zlh.operations o SET step = 'call', epoch = p_epoch,
				updated_at = clock_timestamp()
			WHERE o.id = p_id;
			RETURN 'ok';
		END IF;
		RETURN CASE WHEN cur.step IN ('call', 'handle') THEN 'same' ELSE 'completed' END;
	END IF;

	IF p_step = 'handle' THEN
		IF cur.handle IS NOT NULL AND cur.handle <> p_handle THEN
			RETURN 'conflict';
		END IF;
		IF cur.step IN ('intent', 'call') THEN
			UPDATE zlh.operations o SET step = 'handle', handle = p_handle, epoch = p_epoch,
				updated_at = clock_timestamp()
			WHERE o.id = p_id;
			RETURN 'ok';
		END IF;
		RETURN CASE WHEN cur.handle = p_handle THEN 'same' ELSE 'completed' END;
	END IF;

	-- done / failed
	IF cur.step = p_step THEN
		RETURN 'same';
	END IF;
	IF cur.step IN ('done', 'failed') THEN
		RETURN 'completed';
	END IF;
	UPDATE zlh.operations o
	SET step = p_step, result = p_result,
	    error = CASE WHEN p_step = 'failed' THEN p_error ELSE NULL END,
	    epoch = p_epoch, updated_at = clock_timestamp(), completed_at = clock_timestamp()
	WHERE o.id = p_id;
	RETURN 'ok';
END
$$;

-- ---------------------------------------------------------------------------
-- Allocations.

-- One allocation as the JSON that db/alloc.c reads (ip without prefix).
CREATE FUNCTION zlh.alloc_json(a zlh.allocations) RETURNS jsonb
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
	SELECT jsonb_build_object('uid', a.uid, 'vmid', a.vmid, 'node', a.node,
		'ip', host(a.ip), 'hostname', a.hostname, 'memoryMiB', a.memory_mib)
$$;

-- The server's incarnation under its runtime lock; ZL004 when it is gone.
CREATE FUNCTION zlh.alloc_lock_server(p_uid uuid) RETURNS bigint
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	v_inc bigint;
BEGIN
	PERFORM zlh.server_xact_lock(p_uid);
	SELECT st.incarnation INTO v_inc FROM zlh.server_status st WHERE st.uid = p_uid FOR UPDATE;
	IF NOT FOUND THEN
		RAISE EXCEPTION USING ERRCODE = 'ZL004', MESSAGE = format('no such server: %s', p_uid);
	END IF;
	RETURN v_inc;
END
$$;

-- Takes (or returns) a server's allocation and writes the intent that uses
-- it, in one transaction (DESIGN.md section 7 rule 2).
--   An allocation exists: it is returned as is ("created": false).
--   Else the lowest vmid of [p_vmid_lo, p_vmid_hi] that is neither
--   allocated nor quarantined, the lowest IPv4 address of p_cidr that is
--   not the network, broadcast or gateway address nor allocated, and the
--   hostname p_hostname (spec.hostname) or p_prefix || vmid are inserted on
--   node p_node with p_memory_mib; the status gets vmid, node, ip, hostname.
--   A default hostname claimed elsewhere (ZL005 from 001's trigger, or
--   another allocation's) skips to the next vmid; a collision on a unique
--   constraint skips to the next candidate (bounded: 40001 after 32).
-- Then, when p_key is not NULL, zlh.journal_intent(p_action, p_key,
-- p_payload, p_incarnation) (existing key: that row). p_incarnation must be
-- the server's current incarnation (ZL010 otherwise: the plan is stale).
-- Returns {"allocation": zlh.alloc_json, "created": bool, "op": op_json or
-- null, "existed": bool}. ZL011 when a pool is exhausted.
CREATE FUNCTION zlh.alloc_take(p_epoch bigint, p_uid uuid, p_node text, p_vmid_lo integer,
                               p_vmid_hi integer, p_cidr inet, p_gateway inet,
                               p_hostname text, p_prefix text, p_memory_mib bigint,
                               p_action text, p_key text, p_payload jsonb,
                               p_incarnation bigint)
RETURNS jsonb
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	cur       zlh.allocations;
	v_inc     bigint;
	v_found   boolean;
	v_created boolean := false;
	v_vmid    integer;
	v_ip      inet;
	v_host    text;
	v_first   inet;
	v_last    inet;
	v_gw      inet;
	v_skip_v  integer[] := '{}';
	v_skip_ip inet[] := '{}';
	v_con     text;
	v_op      jsonb;
	i         integer;
BEGIN
	PERFORM zlh.fence(p_epoch);
	v_inc := zlh.alloc_lock_server(p_uid);
	IF p_key IS NOT NULL AND p_incarnation IS DISTINCT FROM v_inc THEN
		RAISE EXCEPTION USING ERRCODE = 'ZL010', MESSAGE = format(
			'server %s is at incarnation %s, not %s', p_uid, v_inc, p_incarnation);
	END IF;

	SELECT * INTO cur FROM zlh.allocations a WHERE a.uid = p_uid;
	v_found := FOUND;
	IF NOT v_found THEN
		IF p_node IS NULL OR p_node = '' OR p_vmid_lo IS NULL OR p_vmid_hi IS NULL OR
		   p_vmid_lo < 100 OR p_vmid_hi > 999999999 OR p_vmid_lo > p_vmid_hi THEN
			RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = format(
				'allocation: bad node %L or vmid range %s..%s', p_node, p_vmid_lo, p_vmid_hi);
		END IF;
		IF p_cidr IS NULL OR family(p_cidr) <> 4 OR p_gateway IS NULL OR family(p_gateway) <> 4 THEN
			RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = format(
				'allocation: %s / gateway %s: only IPv4 networks are supported', p_cidr, p_gateway);
		END IF;
		IF p_hostname IS NULL AND (p_prefix IS NULL OR p_prefix !~ '^[a-z0-9][a-z0-9-]{0,40}$') THEN
			RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = format(
				'allocation: bad hostname prefix %L', p_prefix);
		END IF;
		IF p_memory_mib IS NULL OR p_memory_mib < 0 THEN
			RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = format(
				'allocation: bad memory %s', p_memory_mib);
		END IF;
		v_first := set_masklen(network(p_cidr)::inet, 32) + 1;
		v_last := set_masklen(broadcast(p_cidr), 32) - 1;
		v_gw := set_masklen(p_gateway, 32);

		-- One allocation picks and inserts at a time: the candidates below
		-- are free when inserted (READ COMMITTED: each statement sees what
		-- the previous holder committed).
		PERFORM pg_advisory_xact_lock(2051801093, 0);

		FOR i IN 1 .. 32 LOOP
			-- The lowest free vmid is the range's start or one past a taken one.
			SELECT min(c.v) INTO v_vmid FROM (
				SELECT p_vmid_lo AS v
				UNION ALL SELECT a.vmid + 1 FROM zlh.allocations a
				          WHERE a.vmid BETWEEN p_vmid_lo AND p_vmid_hi
				UNION ALL SELECT q.vmid + 1 FROM zlh.quarantined_vmids q
				          WHERE q.vmid BETWEEN p_vmid_lo AND p_vmid_hi
				UNION ALL SELECT s.v + 1 FROM unnest(v_skip_v) s(v)) c
			WHERE c.v BETWEEN p_vmid_lo AND p_vmid_hi
			  AND NOT EXISTS (SELECT 1 FROM zlh.allocations a WHERE a.vmid = c.v)
			  AND NOT EXISTS (SELECT 1 FROM zlh.quarantined_vmids q WHERE q.vmid = c.v)
			  AND c.v <> ALL (v_skip_v);
			IF v_vmid IS NULL THEN
				RAISE EXCEPTION USING ERRCODE = 'ZL011', MESSAGE = format(
					'no free vmid in %s..%s', p_vmid_lo, p_vmid_hi);
			END IF;

			-- The lowest free address likewise (all compared as /32).
			SELECT min(c.ip) INTO v_ip FROM (
				SELECT v_first AS ip
				UNION ALL SELECT set_masklen(a.ip, 32) + 1 FROM zlh.allocations a
				          WHERE a.ip <<= network(p_cidr) AND set_masklen(a.ip, 32) <= v_last
				UNION ALL SELECT v_gw + 1 WHERE v_gw >= v_first AND v_gw <= v_last
				UNION ALL SELECT s.ip + 1 FROM unnest(v_skip_ip) s(ip)) c
			WHERE c.ip >= v_first AND c.ip <= v_last AND c.ip <> v_gw
			  AND NOT EXISTS (SELECT 1 FROM zlh.allocations a WHERE set_masklen(a.ip, 32) = c.ip)
			  AND c.ip <> ALL (v_skip_ip);
			IF v_ip IS NULL THEN
				RAISE EXCEPTION USING ERRCODE = 'ZL011', MESSAGE = format(
					'no free address in %s (gateway %s)', network(p_cidr), host(p_gateway));
			END IF;

			v_host := coalesce(p_hostname, p_prefix || v_vmid);
			BEGIN
				INSERT INTO zlh.allocations (uid, vmid, ip, hostname, node, memory_mib)
				VALUES (p_uid, v_vmid, v_ip, v_host, p_node, p_memory_mib)
				RETURNING * INTO cur;
				v_created := true;
			EXCEPTION
			WHEN unique_violation THEN
				GET STACKED DIAGNOSTICS v_con = CONSTRAINT_NAME;
				IF v_con = 'allocations_ip_key' THEN
					v_skip_ip := v_skip_ip || v_ip;
				ELSIF v_con = 'allocations_vmid_key' OR
				      (v_con = 'allocations_hostname_key' AND p_hostname IS NULL) THEN
					v_skip_v := v_skip_v || v_vmid;
				ELSE
					RAISE; -- the server's own row, or its spec.hostname: no retry helps
				END IF;
			WHEN SQLSTATE 'ZL005' THEN
				IF p_hostname IS NOT NULL THEN
					RAISE;
				END IF;
				v_skip_v := v_skip_v || v_vmid;
			END;
			EXIT WHEN v_created;
		END LOOP;
		IF NOT v_created THEN
			RAISE EXCEPTION USING ERRCODE = '40001', MESSAGE = format(
				'allocation for %s kept colliding; try again', p_uid);
		END IF;

		UPDATE zlh.server_status st
		SET vmid = cur.vmid, node = cur.node, ip = cur.ip, hostname = cur.hostname,
		    updated_at = clock_timestamp()
		WHERE st.uid = p_uid;
	END IF;

	IF p_key IS NOT NULL THEN
		v_op := zlh.journal_intent(p_epoch, p_uid, p_action, p_key, p_payload, p_incarnation,
		                           false);
	END IF;
	RETURN jsonb_build_object('allocation', zlh.alloc_json(cur), 'created', v_created,
	                          'op', v_op -> 'op', 'existed', coalesce(v_op -> 'existed', 'false'));
END
$$;

-- Compare-and-set of a server's incarnation: expected -> expected + 1.
-- Returns the new incarnation; ZL010 when it is not p_expected (another
-- pass moved it), ZL004 when the server is gone.
CREATE FUNCTION zlh.alloc_bump_incarnation(p_epoch bigint, p_uid uuid, p_expected bigint)
RETURNS bigint
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	v_inc bigint;
BEGIN
	PERFORM zlh.fence(p_epoch);
	v_inc := zlh.alloc_lock_server(p_uid);
	IF v_inc IS DISTINCT FROM p_expected THEN
		RAISE EXCEPTION USING ERRCODE = 'ZL010', MESSAGE = format(
			'server %s is at incarnation %s, not %s', p_uid, v_inc, p_expected);
	END IF;
	UPDATE zlh.server_status st SET incarnation = v_inc + 1, updated_at = clock_timestamp()
	WHERE st.uid = p_uid;
	RETURN v_inc + 1;
END
$$;

-- Records p_vmid as quarantined (never allocated again; a repeat refreshes
-- seen_at and the reason) and, when it is this server's allocated vmid,
-- drops the allocation, clears vmid/node/ip/hostname in its status and
-- bumps the incarnation (compare-and-set on p_expected when not NULL:
-- ZL010, and nothing is written). Returns {"dropped": bool,
-- "incarnation": n}. A server that is gone (ZL004) is an error: the
-- quarantine of a vmid that is no server's is recorded by p_uid NULL.
CREATE FUNCTION zlh.alloc_quarantine(p_epoch bigint, p_uid uuid, p_vmid integer, p_node text,
                                     p_reason text, p_expected bigint)
RETURNS jsonb
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	v_inc     bigint;
	v_dropped boolean := false;
BEGIN
	PERFORM zlh.fence(p_epoch);
	IF p_vmid IS NULL OR p_vmid <= 0 THEN
		RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = format('quarantine: bad vmid %s', p_vmid);
	END IF;
	IF p_uid IS NOT NULL THEN
		v_inc := zlh.alloc_lock_server(p_uid);
	END IF;
	INSERT INTO zlh.quarantined_vmids AS q (vmid, node, reason)
	VALUES (p_vmid, p_node, p_reason)
	ON CONFLICT (vmid) DO UPDATE
	SET seen_at = now(), node = coalesce(EXCLUDED.node, q.node),
	    reason = coalesce(EXCLUDED.reason, q.reason);
	IF p_uid IS NOT NULL THEN
		DELETE FROM zlh.allocations a WHERE a.uid = p_uid AND a.vmid = p_vmid;
		v_dropped := FOUND;
		IF v_dropped THEN
			IF p_expected IS NOT NULL AND p_expected IS DISTINCT FROM v_inc THEN
				RAISE EXCEPTION USING ERRCODE = 'ZL010', MESSAGE = format(
					'server %s is at incarnation %s, not %s', p_uid, v_inc, p_expected);
			END IF;
			v_inc := v_inc + 1;
			UPDATE zlh.server_status st
			SET vmid = NULL, node = NULL, ip = NULL, hostname = NULL, incarnation = v_inc,
			    updated_at = clock_timestamp()
			WHERE st.uid = p_uid;
		END IF;
	END IF;
	RETURN jsonb_build_object('dropped', v_dropped, 'incarnation', v_inc);
END
$$;

-- The container moved (migration): the allocation and the status follow.
-- Returns false when the server has no allocation.
CREATE FUNCTION zlh.alloc_follow_node(p_epoch bigint, p_uid uuid, p_node text) RETURNS boolean
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
	PERFORM zlh.fence(p_epoch);
	IF p_node IS NULL OR p_node = '' THEN
		RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = 'follow: empty node';
	END IF;
	PERFORM zlh.alloc_lock_server(p_uid);
	UPDATE zlh.allocations a SET node = p_node WHERE a.uid = p_uid;
	IF NOT FOUND THEN
		RETURN false;
	END IF;
	UPDATE zlh.server_status st SET node = p_node, updated_at = clock_timestamp()
	WHERE st.uid = p_uid;
	RETURN true;
END
$$;

-- Sets the allocated hostname to p_hostname (spec.hostname) or, when NULL,
-- to the default p_prefix || vmid (spec.hostname changed or was removed).
-- 001's trigger refuses a name another server claims (ZL005); another
-- allocation's name violates allocations_hostname_key. Returns
-- {"allocation": zlh.alloc_json, "changed": bool}, or {} when the server
-- has no allocation.
CREATE FUNCTION zlh.alloc_set_hostname(p_epoch bigint, p_uid uuid, p_hostname text, p_prefix text)
RETURNS jsonb
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	cur       zlh.allocations;
	v_changed boolean;
BEGIN
	PERFORM zlh.fence(p_epoch);
	IF p_hostname IS NULL AND (p_prefix IS NULL OR p_prefix !~ '^[a-z0-9][a-z0-9-]{0,40}$') THEN
		RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = format(
			'allocation: bad hostname prefix %L', p_prefix);
	END IF;
	PERFORM zlh.alloc_lock_server(p_uid);
	UPDATE zlh.allocations a SET hostname = coalesce(p_hostname, p_prefix || a.vmid)
	WHERE a.uid = p_uid AND a.hostname IS DISTINCT FROM coalesce(p_hostname, p_prefix || a.vmid);
	v_changed := FOUND;
	SELECT * INTO cur FROM zlh.allocations a WHERE a.uid = p_uid;
	IF NOT FOUND THEN
		RETURN '{}';
	END IF;
	UPDATE zlh.server_status st SET hostname = cur.hostname, updated_at = clock_timestamp()
	WHERE st.uid = p_uid AND st.hostname IS DISTINCT FROM cur.hostname;
	RETURN jsonb_build_object('allocation', zlh.alloc_json(cur), 'changed', v_changed);
END
$$;

-- Frees a server's allocation (only once its container is really gone) and
-- clears vmid/node/ip/hostname in its status. p_vmid not NULL: only when
-- the allocation is still that vmid. Returns true when one was freed. A
-- server that is gone has nothing left to free (false).
CREATE FUNCTION zlh.alloc_release(p_epoch bigint, p_uid uuid, p_vmid integer) RETURNS boolean
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
	PERFORM zlh.fence(p_epoch);
	PERFORM zlh.server_xact_lock(p_uid);
	DELETE FROM zlh.allocations a
	WHERE a.uid = p_uid AND (p_vmid IS NULL OR a.vmid = p_vmid);
	IF NOT FOUND THEN
		RETURN false;
	END IF;
	UPDATE zlh.server_status st
	SET vmid = NULL, node = NULL, ip = NULL, hostname = NULL, updated_at = clock_timestamp()
	WHERE st.uid = p_uid;
	RETURN true;
END
$$;

-- Memory reserved per node: every allocated server's spec memory (the
-- allocation's own memory_mib when the spec has none).
CREATE FUNCTION zlh.alloc_reserved() RETURNS TABLE (node text, reserved_mib bigint, servers bigint)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
	SELECT a.node,
	       sum(coalesce((s.spec #>> '{resources,memoryMiB}')::bigint, a.memory_mib))::bigint,
	       count(*)
	FROM zlh.allocations a JOIN zlh.servers s ON s.uid = a.uid
	WHERE a.node IS NOT NULL
	GROUP BY a.node
	ORDER BY a.node
$$;

REVOKE ALL ON FUNCTION zlh.wall_ms(timestamptz) FROM PUBLIC;
REVOKE ALL ON FUNCTION zlh.op_json(zlh.operations) FROM PUBLIC;
REVOKE ALL ON FUNCTION zlh.journal_intent(bigint, uuid, text, text, jsonb, bigint, boolean) FROM PUBLIC;
REVOKE ALL ON FUNCTION zlh.journal_step(bigint, bigint, text, text, jsonb, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION zlh.alloc_json(zlh.allocations) FROM PUBLIC;
REVOKE ALL ON FUNCTION zlh.alloc_lock_server(uuid) FROM PUBLIC;
REVOKE ALL ON FUNCTION zlh.alloc_take(bigint, uuid, text, integer, integer, inet, inet, text, text,
                                      bigint, text, text, jsonb, bigint) FROM PUBLIC;
REVOKE ALL ON FUNCTION zlh.alloc_bump_incarnation(bigint, uuid, bigint) FROM PUBLIC;
REVOKE ALL ON FUNCTION zlh.alloc_quarantine(bigint, uuid, integer, text, text, bigint) FROM PUBLIC;
REVOKE ALL ON FUNCTION zlh.alloc_follow_node(bigint, uuid, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION zlh.alloc_release(bigint, uuid, integer) FROM PUBLIC;
REVOKE ALL ON FUNCTION zlh.alloc_set_hostname(bigint, uuid, text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION zlh.alloc_reserved() FROM PUBLIC;
REVOKE ALL ON FUNCTION zlh.operations_base_key() FROM PUBLIC;
