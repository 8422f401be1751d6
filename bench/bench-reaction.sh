#!/usr/bin/env bash
# bench-reaction.sh - reaction latency of zlh-controller (issue 8): a spec
# written through zlh.apply_server -> the first mutating Proxmox call for it
# (POST .../lxc/{template}/clone, or POST /nodes/{node}/lxc in create mode),
# p50/p99 over BENCH_WRITES (200) writes; target p99 <= 50 ms. Prints
# figures; asserts nothing about them.
#
#   bash bench/bench-reaction.sh
#   BENCH_WRITES=200 BENCH_PACE_MS=300 BENCH_FLEET=10 BENCH_MODE=clone bash bench/bench-reaction.sh
#
# How: zlh-sim (3 nodes, 10 ms tasks, 50 ms agents, --unknown-ms 0) and the
# controller with every reconciler of the sim's config (resync 30 s, the
# default; rate limits raised to 1000/s so a token bucket emptied by the
# previous servers' convergence does not delay a new one); BENCH_FLEET
# servers are converged first (phase Ready) and the controller is idle
# (no Proxmox request for 1 s). A new server converges in one to two
# seconds, so at the default pace (300 ms) a write meets the controller
# still busy with the previous few, as a burst from the portal would
# (BENCH_PACE_MS=1000 for writes that find it nearly idle); the 30 s resync
# pass falls inside the writes about twice, and the figures are also given
# split by whether the commit fell inside a pass (from the controller's
# metrics, polled every 50 ms).
# One psql session runs a DO block that, BENCH_WRITES times, calls
# zlh.apply_server for a new GameServer, COMMITs (the NOTIFY goes out at the
# commit), records clock_timestamp() right after the COMMIT as the write's
# time, and sleeps BENCH_PACE_MS (pg_sleep). The reaction is the arrival of
# the first mutating Proxmox call after that commit in zlh-sim's request log
# (GET /_sim/requests: arrival = logged end time - handling ms).
# Pairing: zlh-sim's log has the node in the path but not the new vmid, so
# each server is paired, in the order of its clone/create intent in the
# controller's journal (zlh.operations, written right before the call), with
# the first such call on its allocated node at or after that intent that no
# earlier server took (calls on one node follow intent order). The script
# prints how many were paired and the largest intent -> call gap, and the
# commit -> intent latency (the controller's side alone) too.
# One clock: PostgreSQL's clock_timestamp() and zlh-sim's request-log time
# are both CLOCK_REALTIME of this machine (microseconds resp. milliseconds;
# the latency is rounded to whole ms, so 0 ms means under 1 ms).
#
# Environment: BENCH_WRITES (200), BENCH_PACE_MS (300), BENCH_FLEET (10),
# BENCH_TASK_MS (10), BENCH_MODE (clone|create), KEEP=1 keeps the temp dir.
# Uses $ZLH_TEST_PG when set (a superuser conninfo), else starts a throwaway
# PostgreSQL with test/pg.sh. Stops everything it started.
set -euo pipefail
cd "$(dirname "$0")/.."
B=${B:-build}
BIN="$PWD/$B/bin"
WRITES=${BENCH_WRITES:-200}
PACE_MS=${BENCH_PACE_MS:-300}
FLEET=${BENCH_FLEET:-10}
TASK_MS=${BENCH_TASK_MS:-10}
MODE=${BENCH_MODE:-clone}
OWNER=bench
if ! make --no-print-directory -j2 "$B/bin/zlh-controller" "$B/bin/zlhctl" "$B/bin/zlh-sim" \
	>/dev/null 2>&1; then
	echo "(make failed; using the binaries already built)"
fi
for b in zlh-controller zlhctl zlh-sim; do
	[ -x "$BIN/$b" ] || { echo "build first (make): $BIN/$b missing"; exit 1; }
done

tmp=$(mktemp -d /tmp/zlh-bench-reaction.XXXXXX)
sim_pid="" ctl_pid="" own_pg="" db="" poll_pid=""
cleanup() {
	set +e
	[ -n "$poll_pid" ] && kill "$poll_pid" 2>/dev/null && wait "$poll_pid" 2>/dev/null
	[ -n "$ctl_pid" ] && kill -TERM "$ctl_pid" 2>/dev/null && wait "$ctl_pid" 2>/dev/null
	[ -n "$sim_pid" ] && kill -TERM "$sim_pid" 2>/dev/null && wait "$sim_pid" 2>/dev/null
	if [ -n "${admin:-}" ] && [ -n "$db" ]; then
		psql "$admin" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1
	fi
	[ -n "$own_pg" ] && bash test/pg.sh stop "$own_pg"
	if [ -n "${KEEP:-}" ]; then echo "kept $tmp"; else rm -rf "$tmp"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

now_ms() { date +%s%3N; }
t_start=$(now_ms)

# --- PostgreSQL ---------------------------------------------------------------------------
if [ -z "${ZLH_TEST_PG:-}" ]; then
	eval "$(bash test/pg.sh start)"
	own_pg=$ZLH_TEST_PGDIR
fi
admin=$ZLH_TEST_PG
db="zlh_bench_reaction_$$"
psql "$admin" -qc "CREATE DATABASE $db" >/dev/null
conn="${admin/dbname=postgres/dbname=$db}"
[ "$conn" != "$admin" ] || conn="$admin dbname=$db"
"$BIN/zlhctl" --db "$conn" --crds crds db migrate >/dev/null
q() { psql "$conn" -XAtqc "$1"; }
q "INSERT INTO zlh.quotas (owner, max_servers, max_memory_mib) VALUES ('$OWNER', 100000, 1000000000)
   ON CONFLICT (owner) DO UPDATE SET max_servers = 100000, max_memory_mib = 1000000000" >/dev/null

# --- zlh-sim ------------------------------------------------------------------------------
"$BIN/zlh-sim" --nodes 3 --seed 1 --task-ms "$TASK_MS" --agent-ready-ms 50 --unknown-ms 0 \
	--vmid-range "5000:$((5000 + FLEET + WRITES + 99))" --node-mem-mib 1048576 \
	--state-dir "$tmp/sim" --print-config >"$tmp/sim.yaml" 2>"$tmp/sim.log" &
sim_pid=$!
deadline=$(($(now_ms) + 20000))
until grep -q '^  edge_ipv4:' "$tmp/sim.yaml" 2>/dev/null; do
	kill -0 "$sim_pid" 2>/dev/null || { echo "zlh-sim exited:"; cat "$tmp/sim.log"; exit 1; }
	[ "$(now_ms)" -lt "$deadline" ] || { echo "zlh-sim did not start"; exit 1; }
	sleep 0.05
done
control=$(sed -n 's/^# zlh-sim control: //p' "$tmp/sim.yaml")
metrics_port=""
for p in $(shuf -i 20000-45000 -n 50); do
	if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then metrics_port=$p; break; fi
done
[ -n "$metrics_port" ] || { echo "no free port for metrics"; exit 1; }
metrics="http://127.0.0.1:$metrics_port/metrics"
{
	sed -e "s|^database:.*|database: \"$conn\"|" "$tmp/sim.yaml" |
		if [ "$MODE" = create ]; then
			sed -e 's|^  template_vmid:.*|  ostemplate: "local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst"|'
		else cat; fi
	echo "controller: {workers: 8, resync: 30s, lease: 15s, drain_timeout: 5s, metrics_listen: \"127.0.0.1:$metrics_port\","
	echo "  rate: {proxmox: 1000, agent: 1000, velocity: 1000, dns: 1000}}"
} >"$tmp/controller.yaml"

doc_sql() { # SQL expression of the document of server NAME_EXPR
	echo "jsonb_build_object('apiVersion', 'zlh.dev/v1', 'kind', 'GameServer',
	  'metadata', jsonb_build_object('name', $1, 'owner', '$OWNER'),
	  'spec', jsonb_build_object('variant', 'paper', 'version', '1.21.4',
	    'resources', jsonb_build_object('cores', 1, 'memoryMiB', 512, 'diskGiB', 4)))"
}
wait_ready() { # N TIMEOUT_S
	local deadline=$(($(now_ms) + $2 * 1000)) ready
	while :; do
		ready=$(q "SELECT count(*) FROM zlh.server_status WHERE phase = 'Ready'")
		[ "$ready" -ge "$1" ] && return 0
		kill -0 "$ctl_pid" 2>/dev/null || { echo "zlh-controller exited:"; tail -n 20 "$tmp/controller.log"; exit 1; }
		[ "$(now_ms)" -lt "$deadline" ] || return 1
		sleep 0.2
	done
}

echo "bench-reaction: $WRITES writes paced ${PACE_MS} ms, fleet of $FLEET, $MODE mode;" \
	"zlh-sim 3 nodes, --task-ms $TASK_MS; $(nproc) cores"

# --- a converged, idle fleet --------------------------------------------------------------
q "SELECT count(*) FROM generate_series(1, $FLEET) i,
   LATERAL zlh.apply_server($(doc_sql "'f' || lpad(i::text, 3, '0')"), NULL) r" >/dev/null
"$BIN/zlh-controller" -c "$tmp/controller.yaml" --crds crds >"$tmp/controller.log" 2>&1 &
ctl_pid=$!
t0=$(now_ms)
wait_ready "$FLEET" 120 || { echo "the fleet did not converge in 120 s"; tail -n 20 "$tmp/controller.log"; exit 1; }
echo "fleet of $FLEET Ready in $(($(now_ms) - t0)) ms"
# Idle: no Proxmox request for a second (a resync pass may still come).
deadline=$(($(now_ms) + 30000))
while :; do
	n1=$(curl -fsS "$control/_sim/stats" | jq '.requests.by_system.pve')
	sleep 1
	n2=$(curl -fsS "$control/_sim/stats" | jq '.requests.by_system.pve')
	[ "$n1" = "$n2" ] && break
	[ "$(now_ms)" -lt "$deadline" ] || { echo "(the controller never went idle for 1 s; going on)"; break; }
done
seq0=$(curl -fsS "$control/_sim/requests?system=pve" | jq '[.requests[].seq] | max // 0')
creates0=$(curl -fsS "$control/_sim/stats" | jq '(.side_effects["pve.clone"] // 0) + (.side_effects["pve.create"] // 0)')

# --- the writes ---------------------------------------------------------------------------
q "CREATE TABLE public.bench_writes (i int PRIMARY KEY, name text, t_begin_us bigint, t_commit_us bigint)" >/dev/null
# Resync passes during the writes, from the controller's metrics every 50 ms:
# "wall_ms resyncs_total last_pass_end_s".
(
	while :; do
		curl -fsS --max-time 2 "$metrics" 2>/dev/null | awk -v t="$(now_ms)" '
			$1 == "zlh_resyncs_total" { r = $2 } $1 == "zlh_last_pass_timestamp_seconds" { e = $2 }
			END { if (r != "") printf "%s %s %s\n", t, r, e }'
		sleep 0.05
	done
) >"$tmp/passes" &
poll_pid=$!
t0=$(now_ms)
psql "$conn" -XAtq -v ON_ERROR_STOP=1 >/dev/null <<SQL
DO \$\$
DECLARE
	t0 timestamptz;
	nm text;
BEGIN
	FOR i IN 1..$WRITES LOOP
		nm := 'r' || lpad(i::text, 3, '0');
		t0 := clock_timestamp();
		PERFORM zlh.apply_server($(doc_sql nm), NULL);
		COMMIT;
		INSERT INTO public.bench_writes VALUES (i, nm,
			(extract(epoch FROM t0) * 1e6)::bigint,
			(extract(epoch FROM clock_timestamp()) * 1e6)::bigint);
		COMMIT;
		PERFORM pg_sleep($PACE_MS / 1000.0);
	END LOOP;
END
\$\$;
SQL
write_ms=$(($(now_ms) - t0))
sleep 0.2
kill "$poll_pid" 2>/dev/null || true
wait "$poll_pid" 2>/dev/null || true
poll_pid=""
# Pass intervals [start, end] in ms: start = the first sample that saw
# resyncs_total go up (up to 50 ms late: moved 25 ms back), end = the next
# zlh_last_pass_timestamp_seconds after it.
# A pass still running at the last sample ends "then" (marked open).
awk 'NR > 1 && $2 != r { s[++n] = $1 - 25 } { r = $2; e[NR] = $3 * 1000; t[NR] = $1 }
	END { for (i = 1; i <= n; i++) { x = 0; for (j = 1; j <= NR; j++) if (e[j] > s[i]) { x = e[j]; break }
		printf "%.0f %.0f %s\n", s[i], (x ? x : t[NR]), (x ? "" : "open") } }' "$tmp/passes" >"$tmp/intervals"
echo "$WRITES writes done in $write_ms ms"

# Every new server's first clone/create, then let the fleet converge (bounded).
deadline=$(($(now_ms) + 60000))
while :; do
	creates=$(curl -fsS "$control/_sim/stats" | jq '(.side_effects["pve.clone"] // 0) + (.side_effects["pve.create"] // 0)')
	[ $((creates - creates0)) -ge "$WRITES" ] && break
	[ "$(now_ms)" -lt "$deadline" ] || { echo "only $((creates - creates0)) of $WRITES containers made in 60 s"; break; }
	sleep 0.2
done
if wait_ready $((FLEET + WRITES)) 120; then
	echo "all $((FLEET + WRITES)) servers Ready $(($(now_ms) - t0)) ms after the first write"
else
	echo "NOT all Ready after 120 s: $(q "SELECT string_agg(phase || ' ' || n, ', ') FROM
	  (SELECT phase, count(*) n FROM zlh.server_status GROUP BY phase) p")"
fi

# --- correlate ----------------------------------------------------------------------------
# Per write: its commit time, the node the controller allocated, and when
# the controller wrote the clone/create intent to its journal (written
# right before the call). The sim's log names the node in the path
# (/nodes/<node>/lxc[/<template>/clone]) but not the new vmid; so, taking
# the servers in the order of their intents, each gets the first clone/
# create call on its node at or after its intent that no earlier server
# took. Calls on one node are made in intent order (clone mode: one at a
# time per template), so this pairs each call with its server.
q "SELECT w.i, w.t_commit_us, w.t_commit_us - w.t_begin_us, coalesce(a.node, '-'),
          coalesce((SELECT (extract(epoch FROM o.created_at) * 1e6)::bigint FROM zlh.operations o
                    WHERE o.uid = s.uid AND o.action IN ('clone', 'create') ORDER BY o.id LIMIT 1), 0)
   FROM public.bench_writes w
   JOIN zlh.servers s ON s.owner = '$OWNER' AND s.name = w.name
   LEFT JOIN zlh.allocations a ON a.uid = s.uid" | tr '|' ' ' | sort -k5,5n >"$tmp/writes"
curl -fsS "$control/_sim/requests?system=pve&since=$seq0" | jq -r '
	.requests[] | select(.method == "POST" and (.path | test("/lxc$|/lxc/[0-9]+/clone$"))) |
	(.time | capture("^(?<s>[^.]+)\\.(?<ms>[0-9]+)Z$")) as $t |
	"\((($t.s + "Z") | fromdateiso8601) * 1000 + ($t.ms | tonumber) - .ms) \(.status) \(.path | capture("/nodes/(?<n>[^/]+)/").n)"' \
	| sort -k1,1n >"$tmp/calls"
echo "mutating Proxmox calls seen: $(wc -l <"$tmp/calls") (clone/create; $(awk '$2 != 200' "$tmp/calls" | wc -l) not 200)"
# The log has whole milliseconds (truncated): a call may show up to 1 ms
# before the intent.
awk -v out="$tmp/lat" -v out2="$tmp/lat_intent" '
	BEGIN { n = 0 }
	FNR == NR { wi[n] = $1; cu[n] = $2; cm[n] = $3; wn[n] = $4; iu[n] = $5; n++; next }
	{ k = cnt[$3]++; ct[$3, k] = $1 }
	END {
		miss = 0; gap = 0; commit_us = 0
		for (w = 0; w < n; w++) {
			commit_us += cm[w]
			nd = wn[w]
			if (iu[w] == 0 || !(nd in cnt)) { miss++; continue }
			t = iu[w] / 1000 - 1
			p = ptr[nd] + 0
			while (p < cnt[nd] && ct[nd, p] < t) p++
			if (p >= cnt[nd]) { ptr[nd] = p; miss++; continue }
			c = ct[nd, p]
			ptr[nd] = p + 1
			l = c - cu[w] / 1000; if (l < 0) l = 0
			printf "%.0f %d %.0f\n", l, wi[w], cu[w] / 1000 > out
			li = iu[w] / 1000 - cu[w] / 1000; if (li < 0) li = 0
			printf "%.0f\n", li > out2
			g = c - iu[w] / 1000; if (g > gap) gap = g
		}
		printf "paired %d of %d writes with their call (largest intent -> call gap %.0f ms); apply_server + COMMIT took %.2f ms on average\n", n - miss, n, gap, commit_us / n / 1000
	}' "$tmp/writes" "$tmp/calls"
dups=$(curl -fsS "$control/_sim/stats" | jq '.max.containers_per_uid.max')
echo "containers per uid at most: $dups (1 = no duplicate)"

t_end=$(now_ms)
echo
echo "== bench-reaction summary ($(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, $MODE mode, fleet $FLEET," \
	"pace ${PACE_MS} ms; total $(((t_end - t_start) / 1000)) s)"
pct() { # TITLE < values
	sort -n | awk -v title="$1" '{ v[NR] = $1; s += $1 }
		function p(q) { i = int(q * NR + 0.999999); if (i < 1) i = 1; if (i > NR) i = NR; return v[i] }
		END {
			if (NR == 0) { print title ": nothing measured"; exit }
			printf "%s, %d writes:\n", title, NR
			printf "  p50 %d ms, p90 %d ms, p99 %d ms, max %d ms, min %d ms, mean %.1f ms\n",
				p(0.5), p(0.9), p(0.99), v[NR], v[1], s / NR
		}'
}
awk '{ print $1 }' "$tmp/lat" 2>/dev/null | pct "write (commit) -> first mutating Proxmox call (zlh-sim's log)"
# The same, split by whether the commit fell inside a resync pass.
awk -v dir="$tmp" 'BEGIN { n = 0 } FNR == NR { s[n] = $1; e[n] = $2; n++; next }
	{ inside = 0; for (i = 0; i < n; i++) if ($3 >= s[i] && $3 <= e[i]) inside = 1
	  print $1 > (dir (inside ? "/lat_in" : "/lat_out")) }' \
	"$tmp/intervals" "$tmp/lat" 2>/dev/null || true
echo "resync passes during the writes (each requeues every server): $(awk '{ printf "%s%.0f ms long%s", (NR > 1 ? ", " : ""), $2 - $1, ($3 == "open" ? " and still running after the last write" : "") }' "$tmp/intervals")"
[ -s "$tmp/lat_out" ] && pct "  of which committed outside a resync pass" <"$tmp/lat_out"
[ -s "$tmp/lat_in" ] && pct "  of which committed during a resync pass" <"$tmp/lat_in"
pct "write (commit) -> clone/create intent in the journal (controller side; created_at = start of the intent transaction)" <"$tmp/lat_intent" 2>/dev/null || true
slow=$(sort -k1,1nr "$tmp/lat" 2>/dev/null | head -n 3 | awk '{ printf "%s#%d %d ms", (NR > 1 ? ", " : ""), $2, $1 }')
[ -z "$slow" ] || echo "slowest writes: $slow"
echo "target: p99 <= 50 ms"
