-- 002_runtime.sql - what the controller runtime needs (DESIGN.md sections 7.5
-- and 8): the leader lease with its fencing epoch, and the fenced writes of
-- status, events and finalizers. The C side is db/runtime.c.
--
-- Applied by store_migrate() in one transaction; no BEGIN/COMMIT here.
--
-- SQLSTATEs raised here (class ZL, like 001's):
--   ZL006  stale epoch: a newer lease epoch exists (db/runtime.c: -ESTALE)
--   ZL007  another transaction holds this server's runtime lock (-EBUSY)
-- Advisory lock keys (two-int form, class 0x7a4c00NN as in 001):
--   (2051801092, hashtext(uid))  runtime writes of one server, transaction
--                                level only (pg_try_advisory_xact_lock): a
--                                frozen process never holds it past its
--                                transaction.

-- One row per lease. 'default' covers every server; scale-out would
-- partition servers across more rows (DESIGN.md section 8), never two
-- holders of one row.
CREATE TABLE zlh.controller_lease (
	name        text PRIMARY KEY CHECK (name ~ '^[a-z0-9][a-z0-9_-]{0,62}$'),
	holder      text,
	epoch       bigint NOT NULL DEFAULT 0 CHECK (epoch >= 0),
	acquired_at timestamptz,
	renewed_at  timestamptz,
	expires_at  timestamptz
);
INSERT INTO zlh.controller_lease (name) VALUES ('default') ON CONFLICT (name) DO NOTHING;

-- Claims or renews a lease; one round trip, one row lock, the database's
-- clock is the only clock compared across processes.
--   p_epoch: the epoch the caller believes it holds (0: none).
-- Renewal: the caller holds the row under p_epoch and it has not expired
-- -> expires_at moves, same epoch. Takeover: the row is free or expired, or
-- the caller held it under an older epoch (it stepped down) -> epoch + 1.
-- Otherwise nothing changes and the current holder and remaining time are
-- returned (so a standby can sleep exactly until the expiry).
CREATE FUNCTION zlh.lease_claim(p_name text, p_holder text, p_epoch bigint, p_duration_ms bigint)
RETURNS TABLE (acquired boolean, epoch bigint, holder text, remaining_ms bigint)
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	cur record;
	t   timestamptz := clock_timestamp();
BEGIN
	IF p_duration_ms IS NULL OR p_duration_ms < 100 THEN
		RAISE EXCEPTION 'lease duration % ms is too short', p_duration_ms;
	END IF;
	INSERT INTO zlh.controller_lease (name) VALUES (p_name) ON CONFLICT (name) DO NOTHING;
	SELECT * INTO cur FROM zlh.controller_lease l WHERE l.name = p_name FOR UPDATE;
	IF cur.holder = p_holder AND cur.epoch = p_epoch AND p_epoch > 0 AND cur.expires_at > t THEN
		UPDATE zlh.controller_lease l
		SET renewed_at = t, expires_at = t + p_duration_ms * interval '1 millisecond'
		WHERE l.name = p_name;
		RETURN QUERY SELECT true, cur.epoch, p_holder, p_duration_ms;
		RETURN;
	END IF;
	IF cur.holder IS NULL OR cur.expires_at IS NULL OR cur.expires_at <= t
	   OR cur.holder = p_holder THEN
		UPDATE zlh.controller_lease l
		SET holder = p_holder, epoch = l.epoch + 1, acquired_at = t, renewed_at = t,
		    expires_at = t + p_duration_ms * interval '1 millisecond'
		WHERE l.name = p_name;
		RETURN QUERY SELECT true, cur.epoch + 1, p_holder, p_duration_ms;
		RETURN;
	END IF;
	RETURN QUERY SELECT false, cur.epoch, cur.holder,
		GREATEST(0, (extract(epoch FROM cur.expires_at - t) * 1000)::bigint);
END
$$;

-- Gives the lease up (clean shutdown) so a standby takes over at once: the
-- standbys LISTEN on zlh_work and claim when they see the payload
-- 'lease-released:<name>'. The epoch stays: the next holder increments it.
CREATE FUNCTION zlh.lease_release(p_name text, p_holder text, p_epoch bigint) RETURNS boolean
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
	UPDATE zlh.controller_lease l SET holder = NULL, expires_at = clock_timestamp()
	WHERE l.name = p_name AND l.holder = p_holder AND l.epoch = p_epoch;
	IF FOUND THEN
		PERFORM pg_notify('zlh_work', 'lease-released:' || p_name);
		RETURN true;
	END IF;
	RETURN false;
END
$$;

-- The fence (DESIGN.md section 7 rule 5). Call it first in every
-- transaction that writes on the leader's behalf (status, journal,
-- allocations): it locks the lease row FOR SHARE until the transaction ends,
-- so a takeover (which needs FOR UPDATE) waits for the write or the write
-- sees the newer epoch and fails with ZL006.
CREATE FUNCTION zlh.fence(p_epoch bigint, p_name text DEFAULT 'default') RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	cur bigint;
BEGIN
	SELECT l.epoch INTO cur FROM zlh.controller_lease l WHERE l.name = p_name FOR SHARE;
	IF NOT FOUND OR cur IS DISTINCT FROM p_epoch THEN
		RAISE EXCEPTION USING ERRCODE = 'ZL006',
			MESSAGE = format('stale lease epoch %s (lease %s is at epoch %s)', p_epoch, p_name,
			                 coalesce(cur::text, 'none'));
	END IF;
END
$$;

-- Takes this server's runtime lock for the rest of the transaction, or
-- fails at once with ZL007 (never waits: a worker requeues instead).
CREATE FUNCTION zlh.server_xact_lock(p_uid uuid) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
	IF NOT pg_try_advisory_xact_lock(2051801092, hashtext(p_uid::text)) THEN
		RAISE EXCEPTION USING ERRCODE = 'ZL007',
			MESSAGE = format('server %s is being written by another transaction', p_uid);
	END IF;
END
$$;

-- Writes a server's status, fenced. Returns false when the server is gone.
CREATE FUNCTION zlh.runtime_write_status(p_epoch bigint, p_uid uuid, p_observed_generation bigint,
                                         p_phase text, p_conditions jsonb, p_last_error text)
RETURNS boolean
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
	PERFORM zlh.fence(p_epoch);
	PERFORM zlh.server_xact_lock(p_uid);
	UPDATE zlh.server_status st
	SET observed_generation = p_observed_generation, phase = p_phase,
	    conditions = p_conditions, last_error = p_last_error, updated_at = clock_timestamp()
	WHERE st.uid = p_uid;
	RETURN FOUND;
END
$$;

-- Records an event, fenced and deduplicated: when the server's most recent
-- event has the same type, reason and message, it is counted (count + 1,
-- last_at) instead of inserted again. Returns the event's id.
CREATE FUNCTION zlh.runtime_record_event(p_epoch bigint, p_uid uuid, p_type text, p_reason text,
                                         p_message text)
RETURNS bigint
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	prev record;
	srv  record;
	v_id bigint;
BEGIN
	PERFORM zlh.fence(p_epoch);
	SELECT e.id, e.type, e.reason, e.message INTO prev FROM zlh.events e
	WHERE e.uid = p_uid ORDER BY e.id DESC LIMIT 1 FOR UPDATE;
	IF FOUND AND prev.type = p_type AND prev.reason = p_reason AND prev.message = p_message THEN
		UPDATE zlh.events e SET count = e.count + 1, last_at = clock_timestamp()
		WHERE e.id = prev.id;
		RETURN prev.id;
	END IF;
	SELECT s.kind, s.name, s.owner INTO srv FROM zlh.servers s WHERE s.uid = p_uid;
	INSERT INTO zlh.events (uid, kind, name, owner, type, reason, message, first_at, last_at)
	VALUES (p_uid, srv.kind, srv.name, srv.owner, p_type, p_reason, coalesce(p_message, ''),
	        clock_timestamp(), clock_timestamp())
	RETURNING id INTO v_id;
	RETURN v_id;
END
$$;

-- Adds (p_add) or removes a finalizer name, fenced. Returns the finalizers
-- after the change (NULL when the server is gone).
CREATE FUNCTION zlh.runtime_set_finalizer(p_epoch bigint, p_uid uuid, p_finalizer text,
                                          p_add boolean)
RETURNS text[]
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	res text[];
BEGIN
	PERFORM zlh.fence(p_epoch);
	PERFORM zlh.server_xact_lock(p_uid);
	IF p_add THEN
		UPDATE zlh.servers s
		SET finalizers = CASE WHEN p_finalizer = ANY (s.finalizers) THEN s.finalizers
		                      ELSE s.finalizers || p_finalizer END
		WHERE s.uid = p_uid RETURNING s.finalizers INTO res;
	ELSE
		UPDATE zlh.servers s SET finalizers = array_remove(s.finalizers, p_finalizer)
		WHERE s.uid = p_uid RETURNING s.finalizers INTO res;
	END IF;
	RETURN res;
END
$$;

-- Removes a server whose deletion was requested and whose finalizers are
-- all done (status and allocations go with it: ON DELETE CASCADE). Fenced.
-- Returns true when removed, false when absent, not being deleted, or
-- still holding finalizers.
CREATE FUNCTION zlh.runtime_remove_server(p_epoch bigint, p_uid uuid) RETURNS boolean
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
	PERFORM zlh.fence(p_epoch);
	PERFORM zlh.server_xact_lock(p_uid);
	DELETE FROM zlh.servers s
	WHERE s.uid = p_uid AND s.deletion_requested_at IS NOT NULL AND s.finalizers = '{}';
	RETURN FOUND;
END
$$;

-- Only the controller (the migrating role, or roles granted explicitly)
-- runs these; the portal role gets nothing new.
REVOKE ALL ON FUNCTION zlh.lease_claim(text, text, bigint, bigint) FROM PUBLIC;
REVOKE ALL ON FUNCTION zlh.lease_release(text, text, bigint) FROM PUBLIC;
REVOKE ALL ON FUNCTION zlh.fence(bigint, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION zlh.server_xact_lock(uuid) FROM PUBLIC;
REVOKE ALL ON FUNCTION zlh.runtime_write_status(bigint, uuid, bigint, text, jsonb, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION zlh.runtime_record_event(bigint, uuid, text, text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION zlh.runtime_set_finalizer(bigint, uuid, text, boolean) FROM PUBLIC;
REVOKE ALL ON FUNCTION zlh.runtime_remove_server(bigint, uuid) FROM PUBLIC;
